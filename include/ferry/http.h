/* HTTP transactions as hooks see them. A ferry_txn is one request and its response on an
 * HTTP listener. It is valid only inside the hook call that receives it, on that worker's
 * thread. Header views point into ferry's buffers and are valid until the hook returns.
 * Request headers are there in on_request and on_upstream_request (once sent upstream
 * they are gone: on_response sees the response's headers, and the method and target). */
#ifndef FERRY_HTTP_H
#define FERRY_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include "ferry/export.h"
#include "ferry/error.h"
#include "ferry/session.h"
#include "ferry/view.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ferry_txn ferry_txn;

/* Which message of the transaction a header call works on. */
typedef enum ferry_txn_part {
    FERRY_TXN_REQUEST = 0,
    FERRY_TXN_RESPONSE = 1
} ferry_txn_part;

FERRY_API const ferry_session_info *ferry_txn_session(const ferry_txn *txn);
FERRY_API ferry_view ferry_txn_method(const ferry_txn *txn);
/* The request target as received (origin-form "/path?q" on a reverse listener). */
FERRY_API ferry_view ferry_txn_target(const ferry_txn *txn);
/* The response status, 0 before a response exists. */
FERRY_API int ferry_txn_status(const ferry_txn *txn);

FERRY_API unsigned ferry_txn_header_count(const ferry_txn *txn, ferry_txn_part part);
/* The i-th header (0-based, in order); FERRY_EINVAL when out of range. */
FERRY_API ferry_err ferry_txn_header_at(const ferry_txn *txn, ferry_txn_part part, unsigned i,
                                        ferry_http_header *out);
/* First header named `name` (case-insensitive). FERRY_OK and *value, or FERRY_EINVAL if
 * there is none. */
FERRY_API ferry_err ferry_txn_header_get(const ferry_txn *txn, ferry_txn_part part,
                                         const char *name, ferry_view *value);
/* Replace every `name` header by one with `value` (added if absent). Name must be a token,
 * value free of CR, LF, NUL and other controls: else FERRY_EINVAL and nothing changes.
 * Framing and hop-by-hop headers (Content-Length, Transfer-Encoding, Connection, ...)
 * are ferry's to write: setting them is refused with FERRY_EINVAL. Strings are copied. */
FERRY_API ferry_err ferry_txn_header_set(ferry_txn *txn, ferry_txn_part part, const char *name,
                                         const char *value);
/* Append a header (same rules as set). */
FERRY_API ferry_err ferry_txn_header_add(ferry_txn *txn, ferry_txn_part part, const char *name,
                                         const char *value);
/* Remove every header named `name`; FERRY_OK even if none was there. */
FERRY_API ferry_err ferry_txn_header_remove(ferry_txn *txn, ferry_txn_part part, const char *name);

/* From on_request: answer locally instead of proxying. The hook then returns
 * FERRY_RESPOND. content_type may be NULL (no Content-Type); body is copied. */
FERRY_API ferry_err ferry_txn_respond(ferry_txn *txn, int status, const char *content_type,
                                      const char *body, size_t body_len);
/* The status answered when the hook returns FERRY_REJECT (default: 403 from on_request and
 * on_upstream_request, 502 from on_response). 400-599, else FERRY_EINVAL. */
FERRY_API ferry_err ferry_txn_set_reject_status(ferry_txn *txn, int status);

/* Replace the request target sent upstream: origin-form ("/path?query"), at most 8192
 * bytes, no spaces or control bytes; else FERRY_EINVAL. Copied. From on_request,
 * on_upstream_request or a policy's route_request. */
FERRY_API ferry_err ferry_txn_set_target(ferry_txn *txn, const char *target);
/* Per-request upstream limits, overriding the listener's; 0 keeps the listener's value.
 * Before the request is routed (on_request, route_request). */
FERRY_API ferry_err ferry_txn_set_upstream_limits(ferry_txn *txn, unsigned connect_timeout_ms,
                                                  unsigned response_timeout_ms,
                                                  uint64_t max_body_bytes);
/* 1: the request goes upstream with Host set to the chosen backend's address; 0 (default):
 * with the client's Host. */
FERRY_API ferry_err ferry_txn_set_backend_host(ferry_txn *txn, int on);
/* A pointer a direction policy keeps with the request between route_request and pick. */
FERRY_API void ferry_txn_set_route_data(ferry_txn *txn, void *data);
FERRY_API void *ferry_txn_route_data(const ferry_txn *txn);

/* From on_body only: emit bytes in place of the current piece (may be called several
 * times; bytes are copied). FERRY_EINVAL outside on_body. */
FERRY_API ferry_err ferry_txn_body_write(ferry_txn *txn, const char *data, size_t len);

/* Asynchronous verdicts. In on_request, take a ticket and return FERRY_PAUSE; later, from
 * any thread, call ferry_txn_resume() exactly once with FERRY_CONTINUE or FERRY_REJECT
 * (status 400-599, 0 for the txn's reject status). The txn itself must not be touched
 * after the hook returns. If the client goes away or the pause outlasts the listener's
 * response_timeout_ms (answered 504), the resume is accepted and does nothing. Resume
 * every ticket before ferry_engine_free(). NULL if called outside on_request, twice, or on
 * OOM. */
typedef struct ferry_txn_ticket ferry_txn_ticket;
FERRY_API ferry_txn_ticket *ferry_txn_pause(ferry_txn *txn);
FERRY_API ferry_err ferry_txn_resume(ferry_txn_ticket *ticket, int verdict, int status);

#ifdef __cplusplus
}
#endif
#endif
