/* Direction policies: who the proxy acts for. A listener is given one policy (ops table +
 * policy data). The policy decides where each session goes and what happens when that
 * fails; the relay engine does the rest. ferry ships `reverse` (acts for servers: spreads
 * sessions over a pool of backends) and `forward` (acts for clients: the client names the
 * destination; see ferry/forward.h). Users may write their own.
 *
 * All members are called on the worker thread owning the session; they must not block and
 * must be thread-safe with respect to policy_data, which every worker shares. */
#ifndef FERRY_DIRECTION_H
#define FERRY_DIRECTION_H

#include <stdint.h>
#include "ferry/export.h"
#include "ferry/hooks.h"
#include "ferry/http.h"
#include "ferry/session.h"

struct sockaddr;

#ifdef __cplusplus
extern "C" {
#endif

/* How the client is told that no upstream could be reached. */
typedef enum ferry_error_answer {
    FERRY_ANSWER_CLOSE = 0, /* orderly close (FIN) */
    FERRY_ANSWER_RESET = 1  /* abortive close (RST), so the client fails fast and loudly */
} ferry_error_answer;

typedef struct ferry_direction_ops {
    const char *name;
    /* Required. Pick the upstream for `attempt` (0 first; 1, 2, ... after failed connects).
     * `state` is one word per session, 0 at attempt 0, kept between attempts.
     * Return FERRY_OK with *target filled, or FERRY_ENOUPSTREAM when nothing is left to try. */
    ferry_err (*pick)(void *policy_data, const ferry_session_info *session, unsigned attempt,
                      uintptr_t *state, ferry_target *target);
    /* Optional. The connect to `target` ended with `result` (FERRY_OK or the error);
     * policies use it to mark backends down or up. */
    void (*connect_result)(void *policy_data, const ferry_target *target, ferry_err result);
    /* Optional. How to answer the client when the session fails with `err` before any
     * byte was relayed. NULL means FERRY_ANSWER_CLOSE. */
    ferry_error_answer (*answer_error)(void *policy_data, const ferry_session_info *session,
                                       ferry_err err);

    /* ---- forward-style policies: the client names the destination ---- */

    /* 1: clients name their destination (HTTP absolute-form and CONNECT, SOCKS); HTTP
     * listeners then answer origin-form requests 400. 0: reverse (origin-form only). */
    int client_names_destination;
    /* Optional. May this client use the proxy at all? Called at accept. FERRY_OK, or
     * FERRY_EREJECTED (the connection is refused). *reason names the rule, for the log. */
    ferry_err (*admit_client)(void *policy_data, const ferry_session_info *session,
                              const char **reason);
    /* Optional. Check credentials (user NULL: the client sent none). FERRY_OK when they
     * are good or none are needed; FERRY_EAUTH when they are required or wrong. Not
     * called when the listener has an on_auth hook. */
    ferry_err (*authenticate)(void *policy_data, const ferry_session_info *session,
                              const char *user, const char *password);
    /* Optional. May this request go on? session->dest_*, method, user and proxy_protocol
     * are filled; called before any DNS lookup. FERRY_OK (allowed, or undecided until the
     * address is known) or FERRY_EREJECTED with *reason (a string the policy owns). */
    ferry_err (*admit)(void *policy_data, const ferry_session_info *session, const char **reason);
    /* Optional. A direct (no parent) target resolved to `addr`: may ferry connect to it?
     * This is where destination-address rules are checked, on the address actually used,
     * so that DNS answers cannot steer around them. FERRY_OK or FERRY_EREJECTED. */
    ferry_err (*admit_address)(void *policy_data, const ferry_session_info *session,
                               const struct sockaddr *addr, const char **reason);
    /* Optional. HTTP forward requests: edit the request headers (anonymity) before the
     * on_upstream_request hook sees them. */
    void (*edit_request)(void *policy_data, ferry_txn *txn);

    /* Optional. HTTP listeners: the request passed the on_request hook and is about to be
     * routed. The policy may edit it (ferry_txn_set_target(), headers, limits), remember
     * its choice for pick (ferry_txn_set_route_data()), answer it (ferry_txn_respond() and
     * FERRY_RESPOND) or refuse it (FERRY_REJECT, with ferry_txn_set_reject_status(), e.g.
     * 404). FERRY_PAUSE is not allowed here (answered 500). */
    ferry_verdict (*route_request)(void *policy_data, ferry_txn *txn);

    /* ---- load accounting (pool backends) ---- */

    /* Optional. A session (TCP) or request (HTTP) started using `backend` (a new or a
     * pooled connection to it): least-connections balancers count it. */
    void (*attached)(void *policy_data, ferry_backend *backend);
    /* Optional. ... and stopped using it; called exactly once after each attached. */
    void (*detached)(void *policy_data, ferry_backend *backend);
} ferry_direction_ops;

/* The built-in reverse policy. Its policy_data is a ferry_pool* (see ferry/pool.h): the
 * pool's balancer (weighted round-robin by default) over its backends, skipping backends
 * marked down or draining, failing over to the next backend when a connect fails. Its
 * route_request reads (and removes) the pool's sticky cookie: a policy wrapping this one
 * calls it too. For several pools chosen by host and path, see ferry/router.h. Static
 * table; thread-safe. */
FERRY_API const ferry_direction_ops *ferry_direction_reverse(void);

#ifdef __cplusplus
}
#endif
#endif
