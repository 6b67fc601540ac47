#include "route.h"

#include <stdio.h>

static void tell_policy(ferry__route *rt, ferry_listener *l, ferry_err result) {
    const ferry_direction_ops *d = l->opts.direction;
    if (d->connect_result) d->connect_result(l->opts.direction_data, &rt->target, result);
}

static void describe_target(ferry__route *rt) {
    const ferry_target *t = &rt->target;
    if (t->backend)
        snprintf(rt->target_text, sizeof rt->target_text, "%s", ferry_backend_address(t->backend));
    else
        snprintf(rt->target_text, sizeof rt->target_text, strchr(t->host, ':') ? "[%s]:%u" : "%s:%u",
                 t->host, (unsigned)t->port);
}

ferry__route_step ferry__route_next(ferry__route *rt, ferry__worker *w, ferry_listener *l,
                                    const ferry_session_info *info, ferry__resolve_fn *on_resolved,
                                    void *ud, const ferry__sockaddr **addr) {
    if (rt->next_addr < rt->addrs.count) {
        *addr = &rt->addrs.addr[rt->next_addr++];
        return FERRY__ROUTE_ADDRESS;
    }
    const ferry_listener_opts *o = &l->opts;
    const ferry_hook_ops *ops = o->hooks.ops;
    while (!o->max_connect_attempts || rt->attempts < o->max_connect_attempts) {
        memset(&rt->target, 0, sizeof rt->target);
        ferry_err err = o->direction->pick(o->direction_data, info, rt->attempts, &rt->policy_state,
                                           &rt->target);
        if (err) {
            if (err != FERRY_ENOUPSTREAM) rt->last_error = err;
            break;
        }
        if (ops && ops->on_route &&
            ops->on_route(o->hooks.user_data, info, rt->attempts, &rt->target) == FERRY_REJECT)
            return FERRY__ROUTE_REJECTED;
        rt->attempts++;
        rt->target.host[FERRY_HOST_MAX - 1] = '\0';
        describe_target(rt);
        rt->addrs.count = 0;
        rt->next_addr = 0;
        if (rt->target.backend) {
            rt->addrs.count = 1;
            rt->addrs.addr[0] = rt->target.backend->addr;
        } else {
            ferry__resolve_req *pending = NULL;
            err = ferry__resolve(w->engine->resolver, w->loop, rt->target.host, rt->target.port,
                                 on_resolved, ud, &pending, &rt->addrs);
            if (err == FERRY_OK && pending) {
                rt->resolve = pending;
                return FERRY__ROUTE_PENDING;
            }
            if (err) {
                ferry__route_resolved(rt, l, err, NULL);
                continue;
            }
        }
        *addr = &rt->addrs.addr[rt->next_addr++];
        return FERRY__ROUTE_ADDRESS;
    }
    ferry__log(w->engine, FERRY_LOG_WARN, "%s: no upstream available for %s after %u attempt(s)%s%s",
               l->name, info->client_addr, rt->attempts, rt->last_error ? "; last error: " : "",
               rt->last_error ? ferry_strerror(rt->last_error) : "");
    return FERRY__ROUTE_NONE;
}

void ferry__route_resolved(ferry__route *rt, ferry_listener *l, ferry_err result,
                           const ferry__addrs *addrs) {
    rt->resolve = NULL;
    rt->next_addr = 0;
    if (result) {
        rt->addrs.count = 0;
        rt->last_error = result;
        tell_policy(rt, l, result);
        ferry__log(l->engine, FERRY_LOG_WARN, "%s: cannot resolve %s: %s", l->name,
                   rt->target_text, ferry_strerror(result));
        return;
    }
    rt->addrs = *addrs;
}

void ferry__route_connected(ferry__route *rt, ferry__worker *w, ferry_listener *l, ferry_err result) {
    (void)w;
    if (result == FERRY_OK) {
        tell_policy(rt, l, FERRY_OK);
        return;
    }
    rt->last_error = result;
    if (rt->next_addr < rt->addrs.count) return; /* the target has more addresses */
    tell_policy(rt, l, result);
    ferry__log(l->engine, FERRY_LOG_WARN, "%s: connect to %s failed: %s", l->name, rt->target_text,
               ferry_strerror(result));
}

void ferry__route_cancel(ferry__route *rt) {
    if (rt->resolve) ferry__resolve_cancel(rt->resolve);
    rt->resolve = NULL;
}
