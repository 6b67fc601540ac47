/* Cookie stickiness for reverse pools (ferry_pool_set_sticky_cookie): a request whose
 * sticky cookie names a usable backend of its pool goes there; a response served by a
 * backend the request's cookie did not name gets a Set-Cookie naming it. The cookie is
 * taken out of requests before they go upstream, so backends never see it. */
#ifndef FERRY__STICKY_H
#define FERRY__STICKY_H

#include <stddef.h>
#include <stdint.h>

#include "ferry/error.h"
#include "ferry/view.h"

/* ---- pure functions over views: no I/O, no allocation ---- */

enum {
    FERRY__STICKY_NAME_MAX = 256, /* longest cookie name accepted */
    FERRY__STICKY_HEX = 16        /* the value: a 64-bit id in lower-case hex */
};

/* Is `name` an RFC 6265 cookie name (an RFC 9110 token) of 1-FERRY__STICKY_NAME_MAX bytes? */
int ferry__cookie_name_ok(const char *name);

/* The value of the first cookie called `name` (case-sensitive) in a Cookie header value
 * ("a=1; b=2"), without surrounding spaces. 1 if found, else 0. */
int ferry__cookie_find(ferry_view header, ferry_view name, ferry_view *value);

/* Copy a Cookie header value into out (at least header.len bytes) without any cookie
 * called `name`; the other pairs keep their bytes and the separators in front of them
 * (spaces and empty pairs at either end go). Returns the new length; 0: no cookie is
 * left, drop the header. */
size_t ferry__cookie_remove(ferry_view header, ferry_view name, char *out);

/* SipHash-2-4 (Aumasson and Bernstein) of data under a 128-bit key. */
uint64_t ferry__siphash(const uint64_t key[2], const void *data, size_t len);

/* The pool's hashing key, derived from its secret (NULL or "": none). */
void ferry__sticky_key(const char *secret, uint64_t key[2]);

/* A backend's cookie value: the key's SipHash of the pool's name and the backend's address
 * as added. Depends on nothing else, so every worker, and every engine built from the same
 * configuration (a restart, a reload), agrees on it. */
uint64_t ferry__sticky_id(const uint64_t key[2], const char *pool, const char *address);

/* Parse a cookie value made by ferry__sticky_set_cookie(); 1 if it is one, else 0. */
int ferry__sticky_parse(ferry_view value, uint64_t *id);

/* "NAME=VALUE; Path=/; HttpOnly" into out; returns its length (as snprintf: out holds it
 * only when the result is below size). */
size_t ferry__sticky_set_cookie(const char *name, uint64_t id, char *out, size_t size);

/* ---- the engine's side ---- */

typedef struct ferry_pool ferry_pool;
typedef struct ferry_backend ferry_backend;
typedef struct ferry_txn ferry_txn;

/* An HTTP request about to be balanced over pool p (the direction's route_request): when
 * p is sticky, note which backend the request's cookie names and remove the cookie from
 * the request. FERRY_ENOMEM on failure. Loop thread. */
ferry_err ferry__sticky_request(const ferry_pool *p, ferry_txn *t);

/* Is the request bound by p's cookie? *id: the backend id it names. Loop thread. */
int ferry__sticky_wanted(const ferry_txn *t, const ferry_pool *p, uint64_t *id);

/* The response to a request ferry__sticky_request() saw, from `served` (NULL: not a pool
 * backend): add the Set-Cookie naming it when the request's cookie did not, and keep
 * shared caches from storing that response. FERRY_ENOMEM on failure. Loop thread. */
ferry_err ferry__sticky_response(ferry_txn *t, const ferry_backend *served);

#endif
