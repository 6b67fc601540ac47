/* Unit tests for lib/router.c: the reverse routing table's matching order, path rewriting,
 * per-route headers and limits, and configuration errors. Requests are hand-made
 * transactions; the chosen route is observed through pick (which backend it gives). */
#include <stdio.h>
#include <string.h>

#include "ferry.h"
#include "http_int.h"
#include "testutil.h"

static ferry_allocator libc_alloc;
static ferry_engine *engine;
static ferry_pool *pools[4]; /* backends 127.0.0.1:1001 .. :1004 */
static ferry_router *router;

static void add(const char *host, ferry_path_match m, const char *path, const char *methods,
                int pool) {
    ferry_route_opts o;
    ferry_route_opts_init(&o);
    o.host = host;
    o.match = m;
    o.path = path;
    o.methods = methods;
    o.pool = pools[pool];
    char err[256] = "";
    ck_assert_msg(ferry_router_add(router, &o, err, sizeof err) == FERRY_OK, "%s", err);
}

static void setup(void) {
    ferry__allocator_init(&libc_alloc, NULL);
    ck_assert_int_eq(ferry_engine_new(NULL, &engine), FERRY_OK);
    for (int i = 0; i < 4; i++) {
        char name[8], addr[32];
        snprintf(name, sizeof name, "p%d", i);
        snprintf(addr, sizeof addr, "127.0.0.1:%d", 1001 + i);
        ck_assert_int_eq(ferry_pool_new(engine, name, &pools[i]), FERRY_OK);
        ck_assert_int_eq(ferry_pool_add(pools[i], addr, 1, NULL), FERRY_OK);
    }
    ck_assert_int_eq(ferry_router_new(NULL, &router), FERRY_OK);
}

static void teardown(void) {
    ferry_router_free(router);
    ferry_engine_free(engine);
}

static void txn_make(ferry_txn *t, const char *method, const char *target, const char *host) {
    ferry__txn_init(t, NULL, &libc_alloc);
    t->req.headers = libc_alloc.malloc(NULL, 4 * sizeof *t->req.headers);
    ck_assert_ptr_nonnull(t->req.headers);
    unsigned n = 0;
    if (host) t->req.headers[n++] = (ferry_http_header){{"Host", 4}, {host, strlen(host)}};
    t->req.headers[n++] = (ferry_http_header){{"X-Old", 5}, {"1", 1}};
    t->req.nheaders = n;
    t->req.method = (ferry_view){method, strlen(method)};
    t->req.target = (ferry_view){target, strlen(target)};
    ck_assert_int_eq(ferry__txn_take_request(t), FERRY_OK);
}

/* The backend port the request goes to, or the status it is refused with. */
static int route_of(const char *method, const char *target, const char *host) {
    const ferry_direction_ops *d = ferry_direction_router();
    ferry_txn t;
    txn_make(&t, method, target, host);
    int result;
    if (d->route_request(router, &t) != FERRY_CONTINUE) {
        result = t.reject_status;
    } else {
        ferry_session_info s = {.txn = &t, .dest_host = "", .method = "", .user = ""};
        uintptr_t state = 0;
        ferry_target tg;
        memset(&tg, 0, sizeof tg);
        ck_assert_int_eq(d->pick(router, &s, 0, &state, &tg), FERRY_OK);
        const char *a = ferry_backend_address(tg.backend);
        result = atoi(strrchr(a, ':') + 1);
    }
    ferry__txn_free(&t);
    return result;
}

START_TEST(matching_order) {
    add("example.com", FERRY_PATH_PREFIX, "/", NULL, 0);
    add("example.com", FERRY_PATH_PREFIX, "/api/", NULL, 1);
    add("example.com", FERRY_PATH_EXACT, "/api/health", NULL, 2);
    add("example.com", FERRY_PATH_REGEX, "\\.php$", NULL, 3);
    add("*.example.com", FERRY_PATH_PREFIX, "/", NULL, 1);
    add("*.b.example.com", FERRY_PATH_PREFIX, "/", NULL, 2);
    add(NULL, FERRY_PATH_PREFIX, "/static", "GET,HEAD", 3);
    static const struct {
        const char *method, *target, *host;
        int want;
    } cases[] = {
        {"GET", "/", "example.com", 1001},
        {"GET", "/api", "example.com", 1002},           /* the prefix's trailing slash is moot */
        {"GET", "/api/x?y=1", "example.com", 1002},
        {"GET", "/apix", "example.com", 1001},          /* whole segments only */
        {"GET", "/api/health", "example.com", 1003},    /* exact wins */
        {"GET", "/api/health?full=1", "example.com", 1003},
        {"GET", "/api/health/", "example.com", 1002},
        {"GET", "/x.php", "example.com", 1004},         /* an expression beats a prefix */
        {"GET", "/api/x.php", "example.com", 1004},     /* ... even the longest one */
        {"GET", "/x.php?a=.php", "example.com", 1004},
        {"GET", "/x.phps", "example.com", 1001},
        {"GET", "/", "EXAMPLE.com:8080", 1001},         /* case, port and dot ignored */
        {"GET", "/", "example.com.", 1001},
        {"GET", "/", "a.example.com", 1002},            /* wildcard */
        {"GET", "/", "x.b.example.com", 1003},          /* the longer suffix wins */
        {"GET", "/", "b.example.com", 1002},
        {"GET", "/static/a.css", "example.org", 1004},  /* any host */
        {"HEAD", "/static", "example.org", 1004},
        {"POST", "/static/a.css", "example.org", 404},  /* method filter */
        {"GET", "/", "example.org", 404},               /* no route */
        {"GET", "/", NULL, 404},
        /* A host with its own routes never falls back to the any-host ones. */
        {"GET", "/static/a.css", "example.com", 1001},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        ck_assert_msg(route_of(cases[i].method, cases[i].target, cases[i].host) == cases[i].want,
                      "%s %s Host %s: got %d, want %d", cases[i].method, cases[i].target,
                      cases[i].host ? cases[i].host : "-",
                      route_of(cases[i].method, cases[i].target, cases[i].host), cases[i].want);
    ck_assert_uint_eq(ferry_router_size(router), 7);
}
END_TEST

/* Apply a route with options to one request; returns the upstream target. */
static const char *rewritten(const ferry_route_opts *o, const char *target, ferry_txn *t) {
    static char out[256];
    char err[256] = "";
    ck_assert_msg(ferry_router_add(router, o, err, sizeof err) == FERRY_OK, "%s", err);
    txn_make(t, "GET", target, "h");
    ck_assert_int_eq(ferry_direction_router()->route_request(router, t), FERRY_CONTINUE);
    ferry_view v = t->upstream_target.len ? t->upstream_target : t->req.target;
    snprintf(out, sizeof out, "%.*s", (int)v.len, v.ptr);
    return out;
}

START_TEST(path_prefixes_are_rewritten) {
    ferry_route_opts o;
    ferry_route_opts_init(&o);
    o.path = "/api";
    o.pool = pools[0];
    o.strip_prefix = "/api/";
    o.add_prefix = "/v2";
    static const char *const in[] = {"/api/users?q=1", "/api", "/api?q"};
    static const char *const want[] = {"/v2/users?q=1", "/v2", "/v2?q"};
    for (int i = 0; i < 3; i++) {
        ferry_txn t;
        ck_assert_str_eq(rewritten(&o, in[i], &t), want[i]);
        ferry__txn_free(&t);
    }
    /* Stripping alone never leaves an empty path. */
    ferry_router_free(router);
    ck_assert_int_eq(ferry_router_new(NULL, &router), FERRY_OK);
    o.add_prefix = NULL;
    ferry_txn t;
    ck_assert_str_eq(rewritten(&o, "/api", &t), "/");
    ferry__txn_free(&t);
    ck_assert_str_eq(rewritten(&o, "/api?q=1", &t), "/?q=1");
    ferry__txn_free(&t);
    ck_assert_str_eq(rewritten(&o, "/api/x", &t), "/x");
    ferry__txn_free(&t);
}
END_TEST

START_TEST(headers_and_limits) {
    ferry_route_opts o;
    ferry_route_opts_init(&o);
    o.pool = pools[0];
    o.set_headers = "X-Team: blue\nX-Env:  prod ";
    o.remove_headers = "x-old, X-Absent";
    o.backend_host = 1;
    o.connect_timeout_ms = 111;
    o.response_timeout_ms = 222;
    o.max_body_bytes = 333;
    ferry_txn t;
    rewritten(&o, "/", &t);
    ferry_view v;
    ck_assert_int_eq(ferry_txn_header_get(&t, FERRY_TXN_REQUEST, "x-team", &v), FERRY_OK);
    ck_assert(v.len == 4 && memcmp(v.ptr, "blue", 4) == 0);
    ck_assert_int_eq(ferry_txn_header_get(&t, FERRY_TXN_REQUEST, "x-env", &v), FERRY_OK);
    ck_assert(v.len == 4 && memcmp(v.ptr, "prod", 4) == 0);
    ck_assert_int_eq(ferry_txn_header_get(&t, FERRY_TXN_REQUEST, "x-old", &v), FERRY_EINVAL);
    ck_assert_uint_eq(t.connect_timeout_ms, 111);
    ck_assert_uint_eq(t.response_timeout_ms, 222);
    ck_assert_uint_eq(t.max_body_bytes, 333);
    ck_assert_uint_eq(t.backend_host, 1);
    ferry__txn_free(&t);
}
END_TEST

START_TEST(configuration_errors) {
    ferry_route_opts o;
    ferry_route_opts_init(&o);
    char err[256];
    ck_assert_int_eq(ferry_router_add(router, &o, err, sizeof err), FERRY_EINVAL); /* no pool */
    o.pool = pools[0];
    static const struct {
        const char *host, *path, *methods, *set, *remove;
        ferry_path_match match;
        const char *needle;
    } bad[] = {
        {"*foo.com", NULL, NULL, NULL, NULL, FERRY_PATH_PREFIX, "bad host pattern"},
        {"a b", NULL, NULL, NULL, NULL, FERRY_PATH_PREFIX, "bad host pattern"},
        {NULL, "api", NULL, NULL, NULL, FERRY_PATH_PREFIX, "must start with '/'"},
        {NULL, "([", NULL, NULL, NULL, FERRY_PATH_REGEX, "bad regular expression"},
        {NULL, NULL, "GET,PO ST", NULL, NULL, FERRY_PATH_PREFIX, "bad method"},
        {NULL, NULL, NULL, "NoColon", NULL, FERRY_PATH_PREFIX, "bad header line"},
        {NULL, NULL, NULL, "X-A: a\rb", NULL, FERRY_PATH_PREFIX, "control byte"},
        {NULL, NULL, NULL, NULL, "X:Y", FERRY_PATH_PREFIX, "bad header name"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        o.host = bad[i].host;
        o.path = bad[i].path;
        o.methods = bad[i].methods;
        o.set_headers = bad[i].set;
        o.remove_headers = bad[i].remove;
        o.match = bad[i].match;
        err[0] = '\0';
        ck_assert_int_eq(ferry_router_add(router, &o, err, sizeof err), FERRY_ECONFIG);
        ck_assert_msg(strstr(err, bad[i].needle), "case %zu: %s", i, err);
    }
    ck_assert_uint_eq(ferry_router_size(router), 0);
    ferry_router_free(NULL);
}
END_TEST

int main(void) {
    Suite *s = suite_create("router");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, matching_order);
    tcase_add_test(tc, path_prefixes_are_rewritten);
    tcase_add_test(tc, headers_and_limits);
    tcase_add_test(tc, configuration_errors);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
