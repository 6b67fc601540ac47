#include "route.h"

#include <stdio.h>
#include <string.h>

static void tell_policy(ferry__route *rt, ferry_listener *l, ferry_err result) {
    const ferry_direction_ops *d = l->opts.direction;
    if (d->connect_result) d->connect_result(l->opts.direction_data, &rt->target, result);
}

static void describe_target(ferry__route *rt) {
    const ferry_target *t = &rt->target;
    if (t->backend) { /* once per request: a plain copy, not snprintf */
        const char *a = ferry_backend_address(t->backend);
        size_t n = strnlen(a, sizeof rt->target_text - 1);
        memcpy(rt->target_text, a, n);
        rt->target_text[n] = '\0';
        return;
    }
    int n = snprintf(rt->target_text, sizeof rt->target_text,
                     strchr(t->host, ':') ? "[%s]:%u" : "%s:%u", t->host, (unsigned)t->port);
    if (t->parent && n > 0 && (size_t)n < sizeof rt->target_text)
        snprintf(rt->target_text + n, sizeof rt->target_text - (size_t)n, ";via=%s", t->parent->name);
}

static const char *protocol_name(int p) {
    static const char *const names[] = {"-", "http", "connect", "socks4", "socks5", "socks5-udp"};
    return p >= 0 && p < (int)FERRY__ARRAY_LEN(names) ? names[p] : "?";
}

static void log_denied(ferry_listener *l, const ferry_session_info *info, const char *what,
                       const char *reason) {
    ferry__log(l->engine, FERRY_LOG_INFO, "%s: %s %s: %s %s:%u: %s", l->name, what,
               info->client_addr, protocol_name(info->proxy_protocol), info->dest_host,
               (unsigned)info->dest_port, reason ? reason : "denied by policy");
}

ferry_err ferry__route_admit_client(ferry_listener *l, const ferry_session_info *info) {
    const ferry_direction_ops *d = l->opts.direction;
    const char *reason = NULL;
    if (d->admit_client && d->admit_client(l->opts.direction_data, info, &reason) != FERRY_OK) {
        ferry__log(l->engine, FERRY_LOG_INFO, "%s: client %s refused: %s", l->name,
                   info->client_addr, reason ? reason : "denied by policy");
        return FERRY_EREJECTED;
    }
    return FERRY_OK;
}

int ferry__route_auth_required(ferry_listener *l, const ferry_session_info *info) {
    const ferry_direction_ops *d = l->opts.direction;
    const ferry_hook_ops *ops = l->opts.hooks.ops;
    if (ops && ops->on_auth) return 1;
    return d->authenticate && d->authenticate(l->opts.direction_data, info, NULL, NULL) != FERRY_OK;
}

ferry_err ferry__route_auth(ferry_listener *l, ferry_session_info *info, const char *user,
                            const char *password) {
    const ferry_direction_ops *d = l->opts.direction;
    const ferry_hook_ops *ops = l->opts.hooks.ops;
    ferry_err auth = FERRY_OK;
    if (!password) password = "";
    if (ops && ops->on_auth)
        auth = user && ops->on_auth(l->opts.hooks.user_data, info, user, password) == FERRY_CONTINUE
                   ? FERRY_OK
                   : FERRY_EAUTH;
    else if (d->authenticate)
        auth = d->authenticate(l->opts.direction_data, info, user, user ? password : NULL);
    if (auth != FERRY_OK) {
        /* A client that sent nothing is asked for credentials; wrong ones are worth a line. */
        if (user) {
            /* The name is the client's bytes: only printable ones reach the log. */
            char shown[64];
            size_t n = 0;
            for (const char *p = user; *p && n < sizeof shown - 1; p++)
                shown[n++] = *p > 0x20 && *p < 0x7f ? *p : '?';
            shown[n] = '\0';
            ferry__log(l->engine, FERRY_LOG_INFO, "%s: authentication failed for %s from %s",
                       l->name, shown, info->client_addr);
        }
        return FERRY_EAUTH;
    }
    if (user) info->user = user;
    return FERRY_OK;
}

ferry_err ferry__route_admit_request(ferry_listener *l, const ferry_session_info *info) {
    const ferry_direction_ops *d = l->opts.direction;
    const char *reason = NULL;
    if (d->admit && d->admit(l->opts.direction_data, info, &reason) != FERRY_OK) {
        log_denied(l, info, "denied", reason);
        return FERRY_EREJECTED;
    }
    return FERRY_OK;
}

ferry_err ferry__route_admit(ferry_listener *l, ferry_session_info *info, const char *user,
                             const char *password) {
    ferry_err err = ferry__route_admit_client(l, info);
    if (!err) err = ferry__route_auth(l, info, user, password);
    if (!err) err = ferry__route_admit_request(l, info);
    return err;
}

ferry_err ferry__route_admit_address(ferry_listener *l, const ferry_session_info *info,
                                     const ferry__sockaddr *a) {
    const ferry_direction_ops *d = l->opts.direction;
    const char *reason = NULL;
    if (!d->admit_address || d->admit_address(l->opts.direction_data, info, &a->sa, &reason) == FERRY_OK)
        return FERRY_OK;
    char text[FERRY_ADDRSTR_MAX];
    ferry__addr_format(a, 0, text, sizeof text);
    ferry__log(l->engine, FERRY_LOG_INFO, "%s: denied %s: %s %s:%u (%s): %s", l->name,
               info->client_addr, protocol_name(info->proxy_protocol), info->dest_host,
               (unsigned)info->dest_port, text, reason ? reason : "denied by policy");
    return FERRY_EREJECTED;
}

/* Destination-address rules, on the address about to be used; parents and pool backends
 * are the operator's choice, not the client's, so only direct targets are checked. */
static int address_refused(ferry__route *rt, ferry_listener *l, const ferry_session_info *info,
                           const ferry__sockaddr *a) {
    if (rt->target.backend || rt->target.parent) return 0;
    if (ferry__route_admit_address(l, info, a) == FERRY_OK) return 0;
    rt->last_error = FERRY_EREJECTED;
    return 1;
}

ferry__route_step ferry__route_next(ferry__route *rt, ferry__worker *w, ferry_listener *l,
                                    const ferry_session_info *info, ferry__resolve_fn *on_resolved,
                                    void *ud, const ferry__sockaddr **addr) {
    while (rt->next_addr < rt->addrs.count) {
        const ferry__sockaddr *a = &rt->addrs.addr[rt->next_addr++];
        if (address_refused(rt, l, info, a)) continue;
        *addr = a;
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
            ferry__backend_addr(rt->target.backend, &rt->addrs.addr[0]); /* re-resolution may swap it */
        } else {
            /* Through a parent, the parent is what we connect to (and it resolves the rest). */
            const ferry_parent *p = rt->target.parent;
            ferry__resolve_req *pending = NULL;
            err = ferry__resolve(w->engine->resolver, w->loop, p ? p->host : rt->target.host,
                                 p ? p->port : rt->target.port, on_resolved, ud, &pending,
                                 &rt->addrs);
            if (err == FERRY_OK && pending) {
                rt->resolve = pending;
                return FERRY__ROUTE_PENDING;
            }
            if (err) {
                ferry__route_resolved(rt, l, err, NULL);
                continue;
            }
        }
        while (rt->next_addr < rt->addrs.count) {
            const ferry__sockaddr *a = &rt->addrs.addr[rt->next_addr++];
            if (address_refused(rt, l, info, a)) continue;
            *addr = a;
            return FERRY__ROUTE_ADDRESS;
        }
    }
    if (rt->last_error == FERRY_EREJECTED) return FERRY__ROUTE_NONE; /* each refusal was logged */
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
