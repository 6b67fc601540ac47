/* Choosing an upstream, shared by TCP sessions and HTTP requests: ask the direction policy
 * (then the on_route hook) for a target, resolve it when it is a name, and hand out its
 * addresses one at a time, failing over to the policy's next target when they run out.
 * Loop thread only. */
#ifndef FERRY__ROUTE_H
#define FERRY__ROUTE_H

#include "engine_int.h"

typedef struct ferry__route {
    ferry_target target;
    ferry__addrs addrs;
    unsigned next_addr;
    ferry__resolve_req *resolve;
    uintptr_t policy_state;
    unsigned attempts;    /* targets tried */
    ferry_err last_error; /* why the last target failed; FERRY_OK if none did */
    char target_text[FERRY_HOST_MAX + 16]; /* "host:port" of the current target */
} ferry__route;

typedef enum ferry__route_step {
    FERRY__ROUTE_ADDRESS,  /* connect to *addr */
    FERRY__ROUTE_PENDING,  /* a name is being resolved: the callback continues */
    FERRY__ROUTE_REJECTED, /* on_route refused */
    FERRY__ROUTE_NONE      /* nothing left to try (logged); see last_error */
} ferry__route_step;

/* The next address to try for this session. on_resolved(ud, ...) is the resolver callback
 * used when the target is a name; it must call ferry__route_resolved() and then this again. */
ferry__route_step ferry__route_next(ferry__route *rt, ferry__worker *w, ferry_listener *l,
                                    const ferry_session_info *info, ferry__resolve_fn *on_resolved,
                                    void *ud, const ferry__sockaddr **addr);
void ferry__route_resolved(ferry__route *rt, ferry_listener *l, ferry_err result,
                           const ferry__addrs *addrs);
/* The connect to the address last handed out ended with `result`. The policy hears of
 * the target's outcome once: on success, or when its last address failed. */
void ferry__route_connected(ferry__route *rt, ferry__worker *w, ferry_listener *l, ferry_err result);
/* Cancel a pending resolution (the callback will not come). */
void ferry__route_cancel(ferry__route *rt);

#endif
