/* Reverse listeners: the response headers in which a backend names itself, rewritten to
 * the address the client used (lib/rewrite.c does the pure work), and the pool's sticky
 * cookie (lib/sticky.c). */
#include "addr.h"
#include "http_int.h"
#include "rewrite.h"
#include "route.h"
#include "sticky.h"

typedef ferry__rewrite_status rewrite_fn(const ferry__rewrite_map *, ferry_view, char *, size_t,
                                         size_t *);

static rewrite_fn *rewriter_for(ferry_view name) {
    switch (name.len) { /* asked of every response field: the length decides most */
    case 7: return ferry__view_ieq(name, "refresh") ? ferry__rewrite_refresh : NULL;
    case 8: return ferry__view_ieq(name, "location") ? ferry__rewrite_location : NULL;
    case 10: return ferry__view_ieq(name, "set-cookie") ? ferry__rewrite_set_cookie : NULL;
    case 16: return ferry__view_ieq(name, "content-location") ? ferry__rewrite_location : NULL;
    default: return NULL;
    }
}

/* Rewrite one value into the transaction's arena; FERRY_OK also when it stays as it is. */
static ferry_err rewrite_value(ferry_txn *t, rewrite_fn *fn, const ferry__rewrite_map *m,
                               ferry_view *value) {
    char small[1024];
    size_t len = 0;
    ferry__rewrite_status st = fn(m, *value, small, sizeof small, &len);
    if (st == FERRY__REWRITE_DONE) {
        char *copy = ferry__txn_strdup(t, small, len);
        if (!copy) return FERRY_ENOMEM;
        *value = (ferry_view){copy, len};
    } else if (st == FERRY__REWRITE_TOO_LONG) {
        char *big = ferry__txn_alloc(t, len);
        if (!big) return FERRY_ENOMEM;
        if (fn(m, *value, big, len + 1, &len) == FERRY__REWRITE_DONE) *value = (ferry_view){big, len};
    }
    return FERRY_OK; /* unchanged or malformed: as the backend sent it */
}

static void hide_identity(ferry__header_list *l) {
    unsigned kept = 0;
    for (unsigned i = 0; i < l->count; i++)
        if (!ferry__rewrite_is_identity_header(l->items[i].name)) l->items[kept++] = l->items[i];
    l->count = kept;
}

/* Location and friends name `backend` ("host:port"): make them name the public address. */
static ferry_err rewrite_urls(ferry_txn *t, const char *backend, const ferry_listener_opts *o) {
    ferry__header_list *l = &t->resp_headers;
    if (!t->host.len) return FERRY_OK;
    unsigned first = 0; /* most responses name nothing: no map to build for them */
    while (first < l->count && !rewriter_for(l->items[first].name)) first++;
    if (first == l->count) return FERRY_OK;
    char host[FERRY_HOST_MAX];
    uint16_t port;
    if (ferry__addr_split(backend, host, sizeof host, &port) != FERRY_OK) return FERRY_OK;
    ferry__rewrite_backend b = {{host, strlen(host)}, port};
    const char *scheme = o->public_scheme ? o->public_scheme : "http";
    ferry__rewrite_map m = {
        .backends = &b,
        .n_backends = 1,
        .public_scheme = {scheme, strlen(scheme)},
        .public_authority = t->host,
        .backend_prefix = t->backend_prefix,
        .public_prefix = t->public_prefix,
        .cookie_domain = t->cookie_domain,
        .public_domain = t->public_domain,
    };
    for (unsigned i = first; i < l->count; i++) {
        rewrite_fn *fn = rewriter_for(l->items[i].name);
        if (fn && rewrite_value(t, fn, &m, &l->items[i].value)) return FERRY_ENOMEM;
    }
    return FERRY_OK;
}

ferry_err ferry__http_rewrite_response(ferry_txn *t, const ferry__route *rt,
                                       const ferry_listener_opts *o) {
    if (o->hide_backend_headers) hide_identity(&t->resp_headers);
    if (o->rewrite_responses && rewrite_urls(t, rt->target_text, o)) return FERRY_ENOMEM;
    /* Last: ferry's own cookie is not the backend's to be rewritten. */
    return ferry__sticky_response(t, rt->target.backend);
}
