/* Direction policies: who the proxy acts for. A listener is given one policy (ops table +
 * policy data). The policy decides where each session goes and what happens when that
 * fails; the relay engine does the rest. ferry ships `reverse` (acts for servers: spreads
 * sessions over a pool of backends); the `forward` policy (acts for clients: the client
 * names the destination) arrives with the forward-proxy protocols. Users may write their own.
 *
 * All members are called on the worker thread owning the session; they must not block and
 * must be thread-safe with respect to policy_data, which every worker shares. */
#ifndef FERRY_DIRECTION_H
#define FERRY_DIRECTION_H

#include <stdint.h>
#include "ferry/export.h"
#include "ferry/session.h"

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
} ferry_direction_ops;

/* The built-in reverse policy. Its policy_data is a ferry_pool* (see ferry/pool.h):
 * round-robin over the pool's backends, skipping backends marked down, failing over to the
 * next backend when a connect fails. Returns a static table; thread-safe. */
FERRY_API const ferry_direction_ops *ferry_direction_reverse(void);

#ifdef __cplusplus
}
#endif
#endif
