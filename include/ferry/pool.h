/* Backend pools for the reverse direction: load-balancing, run-time membership changes,
 * background re-resolution of named backends and active health checks.
 *
 * Backend handles (ferry_backend *) stay valid until ferry_engine_free(), even after
 * ferry_pool_remove(): sessions still using a removed backend keep pointing at it. */
#ifndef FERRY_POOL_H
#define FERRY_POOL_H

#include "ferry/export.h"
#include "ferry/error.h"
#include "ferry/session.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ferry_engine ferry_engine;
typedef struct ferry_pool ferry_pool;

/* Create an empty pool owned by `engine`; it is freed with the engine. `name` is copied.
 * Call from the thread that owns the engine, before ferry_engine_start(). */
FERRY_API ferry_err ferry_pool_new(ferry_engine *engine, const char *name, ferry_pool **out);

/* Add a backend "IP:PORT", "[IPv6]:PORT" or "NAME:PORT" with `weight` 1-1000 (0 means 1).
 * A name is resolved here, synchronously, on the calling thread, then again in the
 * background (see ferry_pool_set_resolve_interval()). Also while the engine runs: the
 * backend takes new sessions at once (and is health-checked if the pool is). Any thread
 * but a worker thread (hooks and policies must not call it: it may block on DNS).
 * *out (may be NULL) receives the backend handle. FERRY_ELIMIT past 65535 backends, or
 * when a consistent-hash ring would exceed 2^21 points (160 per unit of weight). */
FERRY_API ferry_err ferry_pool_add(ferry_pool *pool, const char *address, unsigned weight,
                                   ferry_backend **out);

/* Take `backend` out of the pool: it gets no new session; sessions using it finish
 * normally. The handle stays valid (see above) but cannot be put back: add the address
 * again instead. FERRY_EINVAL if it belongs to another pool, FERRY_ESTATE if already
 * removed. Any thread, also while the engine runs. */
FERRY_API ferry_err ferry_pool_remove(ferry_pool *pool, ferry_backend *backend);

/* How long a backend whose connect failed is skipped by the balancer (default 2000 ms;
 * 0 disables passive marking). Before ferry_engine_start() only. */
FERRY_API ferry_err ferry_pool_set_down_time(ferry_pool *pool, unsigned ms);

/* What passive checks count as a backend's failures (flags, combined with |). */
typedef enum ferry_passive_flags {
    FERRY_PASSIVE_CONNECT = 1,   /* failed connects (always counted) */
    FERRY_PASSIVE_RESPONSES = 2, /* HTTP requests without a usable response: the backend
                                  * closed or timed out before a whole response head, or
                                  * sent a malformed one */
    FERRY_PASSIVE_5XX = 4        /* HTTP responses with a 5xx status */
} ferry_passive_flags;

/* Passive checks, what live traffic says about a backend (nginx's max_fails, HAProxy's
 * observe + error-limit): after `max_fails` (1-1000; default 1) consecutive failures of
 * the kinds in `flags` (default FERRY_PASSIVE_CONNECT), the backend is skipped for the
 * down time and the error log says why. A successful connect ends a run of failed
 * connects; a response (below 500 when 5xx count) ends a run of response failures.
 * Before ferry_engine_start() only. FERRY_EINVAL for a bad count or unknown flags. */
FERRY_API ferry_err ferry_pool_set_passive_checks(ferry_pool *pool, unsigned max_fails,
                                                  unsigned flags);

/* Load-balancing algorithms. Every one skips backends that are down or draining, and on
 * failover (attempt 1, 2, ...) walks on to the next backend in the order they were added. */
typedef enum ferry_balance {
    /* Smooth weighted round-robin (nginx's): proportional to weights, without bursts. */
    FERRY_BALANCE_ROUND_ROBIN = 0,
    /* Fewest active sessions (TCP) or requests (HTTP) relative to weight; ties go
     * round-robin (weighted). */
    FERRY_BALANCE_LEAST_CONN = 1,
    /* Power of two choices: two distinct backends drawn at random in proportion to their
     * weights, the less loaded (active / weight) of the two wins. */
    FERRY_BALANCE_RANDOM2 = 2,
    /* Consistent hashing (a ketama ring, 160 points per unit of weight, placed by the
     * backend's address string): a key keeps its backend while that backend is up, and
     * adding or removing a backend moves only the keys that land on it. Keys of a backend
     * that is down or draining go to the next backend on the ring, and come back. */
    FERRY_BALANCE_HASH_CLIENT = 3, /* the client's IP address */
    FERRY_BALANCE_HASH_URI = 4,    /* the request target (path and query); HTTP only */
    FERRY_BALANCE_HASH_HEADER = 5, /* the value of request header `key`; HTTP only */
    FERRY_BALANCE_HASH_COOKIE = 6  /* the value of cookie `key`; HTTP only */
} ferry_balance;

/* Choose the pool's balancer. `key` names the header or cookie for HASH_HEADER and
 * HASH_COOKIE (copied; required) and must be NULL or "" otherwise. Requests without the
 * key (TCP sessions for the HTTP-only kinds, a missing header or cookie) are balanced
 * round-robin. Before ferry_engine_start() only; from the engine's owning thread. */
FERRY_API ferry_err ferry_pool_set_balancer(ferry_pool *pool, ferry_balance kind, const char *key);

/* Cookie stickiness for HTTP requests (HAProxy's "cookie NAME insert indirect nocache",
 * nginx Plus's "sticky cookie NAME"). A request balanced over the pool that carries cookie
 * `name` naming a backend of the pool goes to that backend while it is not down (passive
 * marking or health check) or removed; a draining backend keeps its sticky clients (that
 * is what draining lets finish) and gets no new ones. Otherwise the balancer picks as
 * usual, and failover after a failed connect walks on as usual. The response then gets
 * "Set-Cookie: NAME=VALUE; Path=/; HttpOnly" naming the backend that served it (none when
 * the request's cookie already named it), with "Cache-Control: private" so that shared
 * caches do not hand that cookie to other clients. Unknown, malformed or stale values are
 * ignored (balanced, cookie set again). The cookie is removed from the request before it
 * goes upstream (other cookies are kept as sent; a Cookie header left empty is dropped):
 * backends never see it; on_request hooks do.
 *
 * VALUE is 16 hex digits: SipHash-2-4, under a key derived from `secret`, of the pool's
 * name and the backend's address as given to ferry_pool_add(). It never shows the address,
 * and it is the same in every worker and every engine configured with the same pool name,
 * address and secret (a restart or a reload keeps clients where they are); changing one
 * of the three moves the clients once. Without a secret (NULL or "") someone who knows the
 * pool's name can test guessed addresses against a value: set one where that matters.
 *
 * `name`: an RFC 6265 cookie name (a token) of 1-256 bytes, else FERRY_EINVAL; NULL or ""
 * turns stickiness off. Strings are copied. TCP and SNI sessions through the pool are
 * balanced as usual. Before ferry_engine_start() only; from the engine's owning thread. */
FERRY_API ferry_err ferry_pool_set_sticky_cookie(ferry_pool *pool, const char *name,
                                                 const char *secret);

/* How often backends given by name are resolved again in the background, through the
 * engine's asynchronous resolver, on a worker loop; the new address is used by sessions
 * started afterwards (live ones keep theirs). When the name still resolves to the
 * address in use, it is kept. Default: the engine's dns_ttl_ms (30000 ms if that is 0);
 * 0 disables re-resolution. Before ferry_engine_start() only. */
FERRY_API ferry_err ferry_pool_set_resolve_interval(ferry_pool *pool, unsigned ms);

typedef enum ferry_health_kind {
    FERRY_HEALTH_NONE = 0, /* no active checks (passive marking only) */
    FERRY_HEALTH_TCP = 1,  /* a connect that succeeds within the timeout passes */
    FERRY_HEALTH_HTTP = 2  /* "GET path HTTP/1.1" answered with a status in range passes */
} ferry_health_kind;

typedef struct ferry_health_opts {
    ferry_health_kind kind;
    const char *path;     /* HTTP: request target, must start with '/'; default "/" */
    const char *host;     /* HTTP: Host header; NULL: the backend's address as added */
    unsigned interval_ms; /* from one check's start to the next one's; default 2000 */
    unsigned timeout_ms;  /* per check (connect + answer); a check still running when the
                           * next one is due delays it; default 1000 */
    unsigned rise;        /* consecutive passes that bring a backend back up; default 2 */
    unsigned fall;        /* consecutive failures that mark it down; default 3 */
    int status_min;       /* HTTP: passing statuses; default 200-399 */
    int status_max;
} ferry_health_opts;

/* Fill opts with the defaults (kind FERRY_HEALTH_NONE). */
FERRY_API void ferry_health_opts_init(ferry_health_opts *opts);

/* Actively check every backend of the pool: checks run on the engine's first worker
 * loop with non-blocking sockets, each backend on its own schedule. Backends start up;
 * `fall` failed checks in a row mark one down (logged as a warning) until `rise` passes
 * in a row (logged as info). A backend down by its check, or by passive marking, gets no
 * session; when every backend is down clients are answered at once (HTTP 503, TCP
 * close). opts NULL or kind FERRY_HEALTH_NONE: no checks. Strings are copied. Before
 * ferry_engine_start() only; from the engine's owning thread. */
FERRY_API ferry_err ferry_pool_set_health_check(ferry_pool *pool, const ferry_health_opts *opts);

/* Backends in the pool now (draining ones included, removed ones not). Thread-safe. */
FERRY_API unsigned ferry_pool_size(const ferry_pool *pool);

/* The backend's address as given to ferry_pool_add(). Thread-safe. */
FERRY_API const char *ferry_backend_address(const ferry_backend *backend);

/* 1 while the backend is down (marked after a failed connect, or by its health check),
 * else 0. Thread-safe. */
FERRY_API int ferry_backend_is_down(const ferry_backend *backend);

/* Drain (draining 1): the backend gets no new session while live ones finish; it stays in
 * the pool and is still health-checked. Draining 0 puts it back in service. FERRY_ESTATE
 * once removed. Any thread, also while the engine runs. */
FERRY_API ferry_err ferry_backend_set_draining(ferry_backend *backend, int draining);

/* 1 while draining, else 0. Thread-safe. */
FERRY_API int ferry_backend_is_draining(const ferry_backend *backend);

/* Change the weight (1-1000) of a backend in service; consistent-hash rings are rebuilt
 * (only keys of this backend move). FERRY_ESTATE once removed. Any thread, also while
 * the engine runs. */
FERRY_API ferry_err ferry_backend_set_weight(ferry_backend *backend, unsigned weight);

FERRY_API unsigned ferry_backend_weight(const ferry_backend *backend);

/* Sessions (TCP) or requests (HTTP) using the backend right now: what least-connections
 * counts; 0 after a drain or removal means it is safe to stop the server. Thread-safe. */
FERRY_API unsigned ferry_backend_active(const ferry_backend *backend);

#ifdef __cplusplus
}
#endif
#endif
