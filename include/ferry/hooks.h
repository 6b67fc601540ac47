/* Callbacks into user code. A listener carries one ferry_hooks: a const ops table plus
 * user_data. Every callback runs on the worker thread that owns the session and must not
 * block; any member of the ops table may be NULL. Later protocol phases (HTTP) extend
 * this table; existing members keep their meaning. */
#ifndef FERRY_HOOKS_H
#define FERRY_HOOKS_H

#include "ferry/http.h"
#include "ferry/session.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What a hook wants done. */
typedef enum ferry_verdict {
    FERRY_CONTINUE = 0, /* go on as planned */
    FERRY_REJECT = 1,   /* stop here: TCP closes the client; HTTP answers the reject status
                         * (403 unless ferry_txn_set_reject_status() chose another) */
    FERRY_RESPOND = 2,  /* HTTP on_request only: send the answer given to ferry_txn_respond() */
    FERRY_PAUSE = 3     /* HTTP on_request only, after ferry_txn_pause(): decide later with
                         * ferry_txn_resume() from any thread */
} ferry_verdict;

typedef struct ferry_hook_ops {
    /* A client connected. FERRY_REJECT closes it before any upstream work. */
    ferry_verdict (*on_accept)(void *user_data, const ferry_session_info *session);
    /* The direction policy picked `target` (attempt 0 = first try, then failovers).
     * The hook may rewrite it (e.g. point at another host:port, or another backend).
     * FERRY_REJECT closes the client. */
    ferry_verdict (*on_route)(void *user_data, const ferry_session_info *session,
                              unsigned attempt, ferry_target *target);
    /* The session ended; called once, after on_log. */
    void (*on_close)(void *user_data, const ferry_session_info *session);
    /* Per-session summary (TCP) or per-request summary (HTTP); called once per accepted
     * session or received request, also for rejected ones. */
    void (*on_log)(void *user_data, const ferry_log_record *record);
    /* HTTP: a request head arrived and passed the strict checks. May inspect and edit the
     * request headers, answer locally (ferry_txn_respond + FERRY_RESPOND) or reject. */
    ferry_verdict (*on_request)(void *user_data, ferry_txn *txn);
    /* HTTP: last chance to edit the request headers before they are sent upstream (after
     * ferry added its forwarding headers). FERRY_REJECT answers the reject status. */
    ferry_verdict (*on_upstream_request)(void *user_data, ferry_txn *txn);
    /* HTTP: a response head arrived from upstream; may edit response headers. FERRY_REJECT
     * answers 502 instead (or the status given to ferry_txn_set_reject_status()). */
    ferry_verdict (*on_response)(void *user_data, ferry_txn *txn);
    /* HTTP, optional streaming filter over identity-coded bodies (no Content-Encoding).
     * Called per piece of the request body (part FERRY_TXN_REQUEST) and of the response
     * body (FERRY_TXN_RESPONSE), in order, and once more with last = 1 (data may be empty).
     * The piece passes unchanged unless the hook calls ferry_txn_body_write() during the
     * call: then what it wrote (possibly nothing) replaces the piece. Because lengths may
     * change, a filtered body is re-framed chunked (close-delimited for HTTP/1.0 clients).
     * FERRY_REJECT ends the transaction: the connection closes. Setting this hook costs a
     * call per piece; bodies of other transactions of the listener are filtered too. */
    ferry_verdict (*on_body)(void *user_data, ferry_txn *txn, ferry_txn_part part,
                             ferry_view data, int last);
    /* Forward listeners: check credentials the client presented (HTTP Proxy-Authorization
     * Basic, SOCKS5 username/password; a SOCKS4 user id comes with password ""). user is
     * NULL when the client sent none. FERRY_CONTINUE accepts, FERRY_REJECT refuses (407 /
     * SOCKS failure). Setting this hook makes credentials required on the listener and
     * replaces the policy's own check. Credentials are never forwarded nor logged. */
    ferry_verdict (*on_auth)(void *user_data, const ferry_session_info *session,
                             const char *user, const char *password);
} ferry_hook_ops;

typedef struct ferry_hooks {
    const ferry_hook_ops *ops; /* NULL: no hooks */
    void *user_data;
} ferry_hooks;

#ifdef __cplusplus
}
#endif
#endif
