/* The reverse routing table (see ferry/router.h): the route is chosen in route_request,
 * where the request is at hand, kept with the transaction, and its pool asked in pick. */
#define _GNU_SOURCE
#include <regex.h>
#include <stdio.h>
#include <strings.h>

#include "acl.h"
#include "engine_int.h"
#include "ferry/router.h"
#include "http_int.h"
#include "rewrite.h"
#include "sticky.h"

enum host_kind { HOST_ANY = 0, HOST_WILDCARD = 1, HOST_EXACT = 2 };
enum { METHODS_MAX = 16, HEADERS_MAX = 32, PATH_MAX_LEN = 8192 };

typedef struct set_header {
    char *name, *value;
} set_header;

typedef struct route {
    unsigned index;
    char *name;
    uint8_t host_kind;
    char *host;        /* lower case; for wildcards the suffix with its dot: ".example.com" */
    size_t host_len;
    uint8_t match;
    char *path;
    size_t path_len;
    regex_t re;
    uint8_t has_re;
    char *methods[METHODS_MAX];
    unsigned nmethods;
    ferry_pool *pool;
    char *strip, *add;
    size_t strip_len;
    int backend_host;
    set_header set[HEADERS_MAX];
    unsigned nset;
    char *remove[HEADERS_MAX];
    unsigned nremove;
    unsigned connect_timeout_ms, response_timeout_ms;
    uint64_t max_body_bytes;
    char *cookie_domain, *public_domain;
    ferry__sub_rule subs[HEADERS_MAX];
    unsigned nsubs;
    int sub_icase;
} route;

struct ferry_router {
    ferry_allocator alloc;
    route **routes;
    unsigned nroutes;
};

void ferry_route_opts_init(ferry_route_opts *o) {
    if (o) memset(o, 0, sizeof *o);
}

ferry_err ferry_router_new(const ferry_allocator *a, ferry_router **out) {
    if (!out) return FERRY_EINVAL;
    ferry_allocator al;
    ferry__allocator_init(&al, a);
    ferry_router *r = ferry__calloc(&al, sizeof *r);
    if (!r) return FERRY_ENOMEM;
    r->alloc = al;
    *out = r;
    return FERRY_OK;
}

static void route_free(const ferry_allocator *a, route *rt) {
    if (!rt) return;
    if (rt->has_re) regfree(&rt->re);
    ferry__free(a, rt->name);
    ferry__free(a, rt->host);
    ferry__free(a, rt->path);
    ferry__free(a, rt->strip);
    ferry__free(a, rt->add);
    ferry__free(a, rt->cookie_domain);
    for (unsigned i = 0; i < rt->nsubs; i++) {
        ferry__free(a, (char *)rt->subs[i].pattern.ptr);
        ferry__free(a, (char *)rt->subs[i].replacement.ptr);
    }
    ferry__free(a, rt->public_domain);
    for (unsigned i = 0; i < rt->nmethods; i++) ferry__free(a, rt->methods[i]);
    for (unsigned i = 0; i < rt->nset; i++) {
        ferry__free(a, rt->set[i].name);
        ferry__free(a, rt->set[i].value);
    }
    for (unsigned i = 0; i < rt->nremove; i++) ferry__free(a, rt->remove[i]);
    ferry__free(a, rt);
}

void ferry_router_free(ferry_router *r) {
    if (!r) return;
    for (unsigned i = 0; i < r->nroutes; i++) route_free(&r->alloc, r->routes[i]);
    ferry__free(&r->alloc, r->routes);
    ferry__free(&r->alloc, r);
}

unsigned ferry_router_size(const ferry_router *r) { return r ? r->nroutes : 0; }

static char *dup_n(const ferry_allocator *a, const char *p, size_t n) {
    char *d = ferry__malloc(a, n + 1);
    if (d) {
        memcpy(d, p, n);
        d[n] = '\0';
    }
    return d;
}

static char *dup_lower(const ferry_allocator *a, const char *p, size_t n) {
    char *d = dup_n(a, p, n);
    for (size_t i = 0; d && i < n; i++)
        if (d[i] >= 'A' && d[i] <= 'Z') d[i] = (char)(d[i] + 32);
    return d;
}

static int host_char(char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '.' || ch == '_' || ch == ':' || ch == '[' || ch == ']';
}

static ferry_err parse_host(route *rt, const ferry_allocator *a, const char *host, char *err,
                            size_t n) {
    if (!host || strcmp(host, "*") == 0) return FERRY_OK; /* HOST_ANY */
    const char *name = host;
    rt->host_kind = HOST_EXACT;
    if (strncmp(host, "*.", 2) == 0) {
        rt->host_kind = HOST_WILDCARD;
        name = host + 1; /* keep the dot: ".example.com" */
    }
    size_t len = strlen(name);
    while (len && name[len - 1] == '.' && rt->host_kind == HOST_EXACT) len--;
    if (len == 0 || len > 253 || (rt->host_kind == HOST_WILDCARD && len < 2))
        return ferry__config_error(err, n, "bad host pattern '%s'", host);
    for (size_t i = rt->host_kind == HOST_WILDCARD ? 1 : 0; i < len; i++)
        if (!host_char(name[i]))
            return ferry__config_error(err, n, "bad host pattern '%s' (only *.suffix wildcards)", host);
    rt->host = dup_lower(a, name, len);
    rt->host_len = len;
    return rt->host ? FERRY_OK : FERRY_ENOMEM;
}

static ferry_err parse_path(route *rt, const ferry_allocator *a, const ferry_route_opts *o,
                            char *err, size_t n) {
    const char *path = o->path ? o->path : "/";
    rt->match = (uint8_t)o->match;
    if (o->match == FERRY_PATH_REGEX) {
        int rc = regcomp(&rt->re, path, REG_EXTENDED | REG_NOSUB);
        if (rc != 0) {
            char why[128];
            regerror(rc, &rt->re, why, sizeof why);
            return ferry__config_error(err, n, "bad regular expression '%s': %s", path, why);
        }
        rt->has_re = 1;
    } else if (o->match != FERRY_PATH_PREFIX && o->match != FERRY_PATH_EXACT) {
        return ferry__config_error(err, n, "unknown path match kind %d", (int)o->match);
    } else if (path[0] != '/') {
        return ferry__config_error(err, n, "path '%s' must start with '/'", path);
    }
    size_t len = strlen(path);
    if (len > PATH_MAX_LEN) return ferry__config_error(err, n, "path too long");
    /* A prefix matches whole segments, so its trailing slash says nothing more. */
    if (o->match == FERRY_PATH_PREFIX)
        while (len > 1 && path[len - 1] == '/') len--;
    rt->path = dup_n(a, path, len);
    rt->path_len = len;
    return rt->path ? FERRY_OK : FERRY_ENOMEM;
}

/* Split a separated list, calling take(piece) for each non-empty trimmed piece. */
static ferry_err split_list(const char *list, char sep, route *rt, const ferry_allocator *a,
                            ferry_err (*take)(route *, const ferry_allocator *, const char *,
                                              size_t, char *, size_t),
                            char *err, size_t n) {
    const char *p = list;
    while (p && *p) {
        const char *end = strchr(p, sep);
        if (!end) end = p + strlen(p);
        const char *b = p, *e = end;
        while (b < e && (*b == ' ' || *b == '\t')) b++;
        while (e > b && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r')) e--;
        if (e > b) {
            ferry_err r = take(rt, a, b, (size_t)(e - b), err, n);
            if (r) return r;
        }
        p = *end ? end + 1 : end;
    }
    return FERRY_OK;
}

static int token_ok(const char *p, size_t len) {
    if (!len) return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char b = (unsigned char)p[i];
        if (b <= 0x20 || b >= 0x7f || strchr("\"(),/:;<=>?@[\\]{}", b)) return 0;
    }
    return 1;
}

static ferry_err take_method(route *rt, const ferry_allocator *a, const char *p, size_t len,
                             char *err, size_t n) {
    if (!token_ok(p, len)) return ferry__config_error(err, n, "bad method '%.*s'", (int)len, p);
    if (rt->nmethods == METHODS_MAX) return ferry__config_error(err, n, "too many methods");
    if (!(rt->methods[rt->nmethods] = dup_n(a, p, len))) return FERRY_ENOMEM;
    rt->nmethods++;
    return FERRY_OK;
}

static ferry_err take_remove(route *rt, const ferry_allocator *a, const char *p, size_t len,
                             char *err, size_t n) {
    if (!token_ok(p, len)) return ferry__config_error(err, n, "bad header name '%.*s'", (int)len, p);
    if (rt->nremove == HEADERS_MAX) return ferry__config_error(err, n, "too many headers");
    if (!(rt->remove[rt->nremove] = dup_n(a, p, len))) return FERRY_ENOMEM;
    rt->nremove++;
    return FERRY_OK;
}

static ferry_err take_set(route *rt, const ferry_allocator *a, const char *p, size_t len,
                          char *err, size_t n) {
    const char *colon = memchr(p, ':', len);
    if (!colon || !token_ok(p, (size_t)(colon - p)))
        return ferry__config_error(err, n, "bad header line '%.*s' (Name: value)", (int)len, p);
    const char *v = colon + 1, *end = p + len;
    while (v < end && (*v == ' ' || *v == '\t')) v++;
    for (const char *q = v; q < end; q++)
        if ((unsigned char)*q < 0x20 && *q != '\t')
            return ferry__config_error(err, n, "control byte in header '%.*s'", (int)(colon - p), p);
    if (rt->nset == HEADERS_MAX) return ferry__config_error(err, n, "too many headers");
    set_header *h = &rt->set[rt->nset];
    h->name = dup_n(a, p, (size_t)(colon - p));
    h->value = dup_n(a, v, (size_t)(end - v));
    if (!h->name || !h->value) {
        ferry__free(a, h->name);
        ferry__free(a, h->value);
        return FERRY_ENOMEM;
    }
    rt->nset++;
    return FERRY_OK;
}

static ferry_err take_sub(route *rt, const ferry_allocator *a, const char *p, size_t len,
                          char *err, size_t n) {
    const char *arrow = memmem(p, len, "=>", 2);
    size_t from = arrow ? (size_t)(arrow - p) : 0;
    if (!arrow || from == 0 || from > FERRY__SUB_PATTERN_MAX)
        return ferry__config_error(err, n, "bad substitution '%.*s' (from=>to, from 1-%d bytes)",
                                   (int)len, p, FERRY__SUB_PATTERN_MAX);
    if (rt->nsubs == HEADERS_MAX) return ferry__config_error(err, n, "too many substitutions");
    ferry__sub_rule *r = &rt->subs[rt->nsubs];
    char *pat = dup_n(a, p, from), *rep = dup_n(a, arrow + 2, len - from - 2);
    if (!pat || !rep) {
        ferry__free(a, pat);
        ferry__free(a, rep);
        return FERRY_ENOMEM;
    }
    *r = (ferry__sub_rule){{pat, from}, {rep, len - from - 2}};
    rt->nsubs++;
    return FERRY_OK;
}

static ferry_err prefix_opt(const ferry_allocator *a, const char *in, char **out, size_t *len,
                            char *err, size_t n) {
    if (!in || !*in) return FERRY_OK;
    if (in[0] != '/') return ferry__config_error(err, n, "prefix '%s' must start with '/'", in);
    size_t l = strlen(in);
    while (l > 1 && in[l - 1] == '/') l--;
    if (l == 1) return FERRY_OK; /* "/" strips or adds nothing */
    *out = dup_n(a, in, l);
    if (len) *len = l;
    return *out ? FERRY_OK : FERRY_ENOMEM;
}

ferry_err ferry_router_add(ferry_router *r, const ferry_route_opts *o, char *err, size_t n) {
    if (!r || !o || !o->pool) return FERRY_EINVAL;
    const ferry_allocator *a = &r->alloc;
    route *rt = ferry__calloc(a, sizeof *rt);
    if (!rt) return FERRY_ENOMEM;
    rt->index = r->nroutes;
    rt->pool = o->pool;
    rt->backend_host = o->backend_host != 0;
    rt->connect_timeout_ms = o->connect_timeout_ms;
    rt->response_timeout_ms = o->response_timeout_ms;
    rt->max_body_bytes = o->max_body_bytes;
    char fallback[32];
    snprintf(fallback, sizeof fallback, "route %u", r->nroutes + 1);
    const char *name = o->name ? o->name : fallback;
    ferry_err e = (rt->name = dup_n(a, name, strlen(name))) ? FERRY_OK : FERRY_ENOMEM;
    if (!e) e = parse_host(rt, a, o->host, err, n);
    if (!e) e = parse_path(rt, a, o, err, n);
    if (!e) e = split_list(o->methods, ',', rt, a, take_method, err, n);
    if (!e) e = split_list(o->remove_headers, ',', rt, a, take_remove, err, n);
    if (!e) e = split_list(o->set_headers, '\n', rt, a, take_set, err, n);
    if (!e) e = prefix_opt(a, o->strip_prefix, &rt->strip, &rt->strip_len, err, n);
    if (!e) e = prefix_opt(a, o->add_prefix, &rt->add, NULL, err, n);
    if (!e) e = split_list(o->substitutions, '\n', rt, a, take_sub, err, n);
    rt->sub_icase = o->substitute_icase != 0;
    if (!e && o->cookie_domain && *o->cookie_domain) {
        const char *pub = o->public_cookie_domain ? o->public_cookie_domain : "";
        rt->cookie_domain = dup_lower(a, o->cookie_domain, strlen(o->cookie_domain));
        rt->public_domain = dup_lower(a, pub, strlen(pub));
        if (!rt->cookie_domain || !rt->public_domain) e = FERRY_ENOMEM;
    }
    route **grown = e ? NULL : ferry__realloc(a, r->routes, (r->nroutes + 1) * sizeof *grown);
    if (!e && !grown) e = FERRY_ENOMEM;
    if (e) {
        route_free(a, rt);
        return e;
    }
    r->routes = grown;
    r->routes[r->nroutes++] = rt;
    return FERRY_OK;
}

/* ---- matching ---- */

/* How well the route's host pattern fits `host` (lower case, no port): 0 not at all. */
static size_t host_score(const route *rt, const char *host, size_t len) {
    switch (rt->host_kind) {
    case HOST_EXACT:
        return len == rt->host_len && memcmp(host, rt->host, len) == 0 ? 1000 : 0;
    case HOST_WILDCARD: /* ".example.com" matches "a.example.com", not "example.com" */
        return len > rt->host_len && memcmp(host + len - rt->host_len, rt->host, rt->host_len) == 0
                   ? 1 + rt->host_len
                   : 0;
    default: return 1;
    }
}

/* Does `prefix` match the start of `path` on a segment boundary? */
static int segment_prefix(const char *path, size_t plen, const char *prefix, size_t len) {
    if (len == 1) return 1; /* "/" */
    return plen >= len && memcmp(path, prefix, len) == 0 && (plen == len || path[len] == '/');
}

static int method_ok(const route *rt, ferry_view method) {
    if (!rt->nmethods) return 1;
    for (unsigned i = 0; i < rt->nmethods; i++)
        if (strlen(rt->methods[i]) == method.len && memcmp(rt->methods[i], method.ptr, method.len) == 0)
            return 1;
    return 0;
}

/* The request's host, lower case, without port or trailing dot. */
static size_t request_host(const ferry_txn *t, char *out, size_t size) {
    ferry_view h;
    if (ferry_txn_header_get(t, FERRY_TXN_REQUEST, "host", &h) != FERRY_OK) return 0;
    size_t n = h.len;
    if (n && h.ptr[0] == '[') {
        const char *close = memchr(h.ptr, ']', n);
        n = close ? (size_t)(close - h.ptr) + 1 : n;
    } else {
        const char *colon = memchr(h.ptr, ':', n);
        if (colon) n = (size_t)(colon - h.ptr);
    }
    while (n && h.ptr[n - 1] == '.') n--;
    if (n >= size) return 0;
    for (size_t i = 0; i < n; i++) out[i] = h.ptr[i] >= 'A' && h.ptr[i] <= 'Z' ? (char)(h.ptr[i] + 32) : h.ptr[i];
    out[n] = '\0';
    return n;
}

static const route *match(const ferry_router *r, const ferry_txn *t) {
    char host[256];
    size_t hlen = request_host(t, host, sizeof host);
    size_t best_host = 0;
    for (unsigned i = 0; i < r->nroutes; i++) {
        size_t sc = host_score(r->routes[i], host, hlen);
        if (sc > best_host) best_host = sc;
    }
    if (!best_host) return NULL;
    ferry_view target = ferry_txn_target(t), method = ferry_txn_method(t);
    const char *q = memchr(target.ptr, '?', target.len);
    size_t plen = q ? (size_t)(q - target.ptr) : target.len;
    const route *prefix = NULL;
    for (unsigned pass = 0; pass < 2; pass++) { /* exact and prefixes, then expressions */
        for (unsigned i = 0; i < r->nroutes; i++) {
            const route *rt = r->routes[i];
            if (host_score(rt, host, hlen) != best_host || !method_ok(rt, method)) continue;
            if (pass == 0 && rt->match == FERRY_PATH_EXACT && plen == rt->path_len &&
                memcmp(target.ptr, rt->path, plen) == 0)
                return rt;
            if (pass == 0 && rt->match == FERRY_PATH_PREFIX &&
                segment_prefix(target.ptr, plen, rt->path, rt->path_len) &&
                (!prefix || rt->path_len > prefix->path_len))
                prefix = rt;
            if (pass == 1 && rt->match == FERRY_PATH_REGEX) {
                regmatch_t m = {.rm_so = 0, .rm_eo = (regoff_t)plen};
                if (regexec(&rt->re, target.ptr, 1, &m, REG_STARTEND) == 0) return rt;
            }
        }
    }
    return prefix;
}

/* ---- the direction ---- */

/* The path upstream: strip_prefix removed (whole segments), add_prefix put in front —
 * applied to the target an on_request hook chose, if it chose one. */
static ferry_err rewrite_path(const route *rt, ferry_txn *t) {
    if (!rt->strip && !rt->add) return FERRY_OK;
    ferry_view target = t->upstream_target.len ? t->upstream_target : ferry_txn_target(t);
    const char *q = memchr(target.ptr, '?', target.len);
    size_t plen = q ? (size_t)(q - target.ptr) : target.len;
    size_t skip = 0;
    if (rt->strip && segment_prefix(target.ptr, plen, rt->strip, rt->strip_len)) skip = rt->strip_len;
    char out[PATH_MAX_LEN + 1];
    size_t alen = rt->add ? strlen(rt->add) : 0, rest = target.len - skip;
    if (alen + rest + 1 > sizeof out) return FERRY_ELIMIT;
    memcpy(out, rt->add ? rt->add : "", alen);
    memcpy(out + alen, target.ptr + skip, rest);
    size_t n = alen + rest;
    if (n == 0 || out[0] != '/') { /* "/app" stripped to "" or "?q": the path is "/" */
        memmove(out + 1, out, n);
        out[0] = '/';
        n++;
    }
    out[n] = '\0';
    return ferry_txn_set_target(t, out);
}

static ferry_verdict router_route_request(void *data, ferry_txn *t) {
    const ferry_router *r = data;
    const route *rt = match(r, t);
    if (!rt) {
        ferry_txn_set_reject_status(t, 404);
        return FERRY_REJECT;
    }
    ferry_txn_set_route_data(t, (void *)rt);
    ferry_txn_set_upstream_limits(t, rt->connect_timeout_ms, rt->response_timeout_ms, rt->max_body_bytes);
    if (rt->backend_host) ferry_txn_set_backend_host(t, 1); /* else the hook's choice stands */
    /* What the backend calls add_prefix is strip_prefix to the client. */
    t->backend_prefix = rt->add ? (ferry_view){rt->add, strlen(rt->add)} : (ferry_view){"/", 1};
    t->public_prefix = rt->strip ? (ferry_view){rt->strip, rt->strip_len} : (ferry_view){"/", 1};
    if (rt->cookie_domain) {
        t->cookie_domain = (ferry_view){rt->cookie_domain, strlen(rt->cookie_domain)};
        t->public_domain = (ferry_view){rt->public_domain, strlen(rt->public_domain)};
    }
    if (rt->nsubs) { /* substituting needs the text as it is */
        t->sub_rules = rt->subs;
        t->n_sub_rules = rt->nsubs;
        t->sub_icase = (uint8_t)rt->sub_icase;
        if (ferry_txn_header_set(t, FERRY_TXN_REQUEST, "Accept-Encoding", "identity")) {
            ferry_txn_set_reject_status(t, 500);
            return FERRY_REJECT;
        }
    }
    ferry_err e = rewrite_path(rt, t);
    /* The client's cookies as sent, before the route's header edits. */
    if (!e) e = ferry__sticky_request(rt->pool, t);
    for (unsigned i = 0; !e && i < rt->nremove; i++)
        e = ferry_txn_header_remove(t, FERRY_TXN_REQUEST, rt->remove[i]);
    for (unsigned i = 0; !e && i < rt->nset; i++)
        e = ferry_txn_header_set(t, FERRY_TXN_REQUEST, rt->set[i].name, rt->set[i].value);
    if (e) { /* no memory, or a path past the limit */
        ferry_txn_set_reject_status(t, e == FERRY_ELIMIT ? 414 : 500);
        return FERRY_REJECT;
    }
    return FERRY_CONTINUE;
}

/* TCP sessions with a name (TLS passthrough: the ClientHello's server name): the routes
 * of the best-fitting host, first one added; paths and methods do not apply. */
static const route *match_name(const ferry_router *r, const char *name) {
    char host[256];
    size_t n = strlen(name);
    while (n && name[n - 1] == '.') n--;
    if (n >= sizeof host) return NULL;
    for (size_t i = 0; i < n; i++) host[i] = name[i] >= 'A' && name[i] <= 'Z' ? (char)(name[i] + 32) : name[i];
    host[n] = '\0';
    const route *best = NULL;
    size_t best_score = 0;
    for (unsigned i = 0; i < r->nroutes; i++) {
        /* No name at all fits only the routes for any host: the default pool. */
        size_t sc = n || r->routes[i]->host_kind == HOST_ANY ? host_score(r->routes[i], host, n) : 0;
        if (sc > best_score) {
            best = r->routes[i];
            best_score = sc;
        }
    }
    return best;
}

static ferry_err router_pick(void *data, const ferry_session_info *s, unsigned attempt,
                             uintptr_t *state, ferry_target *target) {
    const route *rt = s->txn ? ferry_txn_route_data(s->txn) : match_name(data, s->dest_host);
    if (!rt) return FERRY_ENOUPSTREAM;
    return ferry_direction_reverse()->pick(rt->pool, s, attempt, state, target);
}

/* The pool's own accounting, reached through the backend it belongs to. */
static void router_connect_result(void *data, const ferry_target *t, ferry_err result) {
    (void)data;
    const ferry_direction_ops *rev = ferry_direction_reverse();
    if (t->backend && rev->connect_result) rev->connect_result(t->backend->pool, t, result);
}

static void router_attached(void *data, ferry_backend *b) {
    (void)data;
    const ferry_direction_ops *rev = ferry_direction_reverse();
    if (rev->attached) rev->attached(b->pool, b);
}

static void router_detached(void *data, ferry_backend *b) {
    (void)data;
    const ferry_direction_ops *rev = ferry_direction_reverse();
    if (rev->detached) rev->detached(b->pool, b);
}

static const ferry_direction_ops router_ops = {
    .name = "router",
    .pick = router_pick,
    .connect_result = router_connect_result,
    .route_request = router_route_request,
    .attached = router_attached,
    .detached = router_detached,
};

const ferry_direction_ops *ferry_direction_router(void) { return &router_ops; }
