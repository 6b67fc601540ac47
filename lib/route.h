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
/* Forward listeners: the policy's checks, in this order. Denials are logged.
 * May this client use the proxy at all? FERRY_OK or FERRY_EREJECTED. */
ferry_err ferry__route_admit_client(ferry_listener *l, const ferry_session_info *info);
/* Must clients of this listener authenticate (an on_auth hook, or the policy says so)? */
int ferry__route_auth_required(ferry_listener *l, const ferry_session_info *info);
/* Check credentials (user NULL: none were sent) with the on_auth hook or the policy.
 * On success info->user points at `user` (the caller's storage). FERRY_OK or FERRY_EAUTH. */
ferry_err ferry__route_auth(ferry_listener *l, ferry_session_info *info, const char *user,
                            const char *password);
/* The rules decidable before DNS, for a request whose dest_*, method and proxy_protocol
 * are filled. FERRY_OK or FERRY_EREJECTED. */
ferry_err ferry__route_admit_request(ferry_listener *l, const ferry_session_info *info);
/* The address a direct destination resolved to (destination-address rules and the refused
 * ranges). FERRY_OK or FERRY_EREJECTED. */
ferry_err ferry__route_admit_address(ferry_listener *l, const ferry_session_info *info,
                                     const ferry__sockaddr *a);
/* All three, for HTTP requests (each carries its own credentials). */
ferry_err ferry__route_admit(ferry_listener *l, ferry_session_info *info, const char *user,
                             const char *password);
/* Cancel a pending resolution (the callback will not come). */
void ferry__route_cancel(ferry__route *rt);

#endif
