/* Cookie stickiness (lib/sticky.c): the pure pieces (cookie names, finding and removing a
 * cookie, SipHash, the value), then a sticky pool driven through the reverse and router
 * policies' ops tables on parsed requests, without sockets. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry.h"
#include "http_int.h"
#include "sticky.h"
#include "testutil.h"

static ferry_view V(const char *s) { return (ferry_view){s, strlen(s)}; }

/* ---- pure functions ---- */

START_TEST(cookie_names_are_tokens) {
    static const char *const good[] = {"SRV", "s", "__Host-srv", "a!#$%&'*+-.^_`|~9"};
    static const char *const bad[] = {"", "a b", "a=b", "a;b", "a,b", "\"q\"", "a/b", "a\tb",
                                      "a:b", "(x)", "caf\xc3\xa9", "a\x7f"};
    for (size_t i = 0; i < FERRY__ARRAY_LEN(good); i++)
        ck_assert_msg(ferry__cookie_name_ok(good[i]), "%s", good[i]);
    for (size_t i = 0; i < FERRY__ARRAY_LEN(bad); i++)
        ck_assert_msg(!ferry__cookie_name_ok(bad[i]), "%s", bad[i]);
    char longest[FERRY__STICKY_NAME_MAX + 2];
    memset(longest, 'n', sizeof longest - 1);
    longest[FERRY__STICKY_NAME_MAX] = '\0';
    ck_assert(ferry__cookie_name_ok(longest));
    longest[FERRY__STICKY_NAME_MAX] = 'n';
    longest[FERRY__STICKY_NAME_MAX + 1] = '\0';
    ck_assert(!ferry__cookie_name_ok(longest));
}
END_TEST

START_TEST(cookies_are_found_by_exact_name) {
    static const struct {
        const char *header, *want; /* want NULL: not found */
    } cases[] = {
        {"SRV=abc", "abc"},
        {"a=1; SRV=abc; b=2", "abc"},
        {"a=1;SRV=abc  ;b=2", "abc"},
        {"  SRV=abc", "abc"},
        {"SRV=", ""},
        {"SRV=1; SRV=2", "1"},
        {"srv=1; XSRV=2; SRVX=3; SRV", NULL}, /* case-sensitive, whole names */
        {"SRV =1", NULL},
        {"", NULL},
        {";;", NULL},
    };
    for (size_t i = 0; i < FERRY__ARRAY_LEN(cases); i++) {
        ferry_view v = {NULL, 0};
        int found = ferry__cookie_find(V(cases[i].header), V("SRV"), &v);
        ck_assert_msg(found == (cases[i].want != NULL), "%s", cases[i].header);
        if (found) ck_assert_msg(v.len == strlen(cases[i].want) &&
                                 memcmp(v.ptr, cases[i].want, v.len) == 0, "%s", cases[i].header);
    }
}
END_TEST

START_TEST(cookie_removal_keeps_the_others_as_sent) {
    static const struct {
        const char *header, *want;
    } cases[] = {
        {"SRV=abc", ""},
        {"a=1; SRV=abc; b=2", "a=1; b=2"},
        {"SRV=abc; a=1", "a=1"},
        {"a=1; SRV=abc", "a=1"},
        {"a=1;SRV=x;b=2", "a=1;b=2"},
        {"a=1 ;  SRV=x ; b=2 ", "a=1 ; b=2"},
        {"SRVX=1; SRV=2; XSRV=3", "SRVX=1; XSRV=3"},
        {"a=1; SRV=1; SRV=2", "a=1"},
        {"srv=1; SRV=2", "srv=1"},
        {"flag; SRV=2; q=\"x y\"", "flag; q=\"x y\""},
        {"a=1;; SRV=2", "a=1"},
        {" SRV=1 ; ", ""},
        {"a=1; b=2", "a=1; b=2"},
    };
    for (size_t i = 0; i < FERRY__ARRAY_LEN(cases); i++) {
        char out[64];
        size_t n = ferry__cookie_remove(V(cases[i].header), V("SRV"), out);
        ck_assert_uint_le(n, strlen(cases[i].header));
        ck_assert_msg(n == strlen(cases[i].want) && memcmp(out, cases[i].want, n) == 0,
                      "'%s' gave '%.*s'", cases[i].header, (int)n, out);
    }
}
END_TEST

/* The reference vectors of SipHash-2-4 (key 00..0f, message 00..len-1). */
START_TEST(siphash_matches_the_reference) {
    const uint64_t key[2] = {0x0706050403020100ull, 0x0f0e0d0c0b0a0908ull};
    static const struct {
        size_t len;
        uint64_t want;
    } vectors[] = {{0, 0x726fdb47dd0e0e31ull}, {1, 0x74f839c593dc67fdull},
                   {7, 0xab0200f58b01d137ull}, {8, 0x93f5f5799a932462ull},
                   {15, 0xa129ca6149be45e5ull}, {63, 0x958a324ceb064572ull}};
    unsigned char msg[64];
    for (unsigned i = 0; i < sizeof msg; i++) msg[i] = (unsigned char)i;
    for (size_t i = 0; i < FERRY__ARRAY_LEN(vectors); i++)
        ck_assert_msg(ferry__siphash(key, msg, vectors[i].len) == vectors[i].want,
                      "length %zu: %016llx", vectors[i].len,
                      (unsigned long long)ferry__siphash(key, msg, vectors[i].len));
}
END_TEST

/* Values depend on the secret, the pool's name and the address only: the same in every
 * engine (restarts and reloads keep clients where they are), and pinned here so that a
 * change of the derivation, which would move every client once, is a decision. */
START_TEST(values_are_stable_and_hide_the_address) {
    uint64_t k[2], k2[2], none[2];
    ferry__sticky_key("s3cret", k);
    ferry__sticky_key("s3cret", k2);
    ferry__sticky_key(NULL, none);
    ck_assert(k[0] == k2[0] && k[1] == k2[1]);
    uint64_t empty[2];
    ferry__sticky_key("", empty);
    ck_assert(empty[0] == none[0] && empty[1] == none[1]);
    uint64_t id = ferry__sticky_id(k, "app", "10.0.0.1:8080");
    ck_assert(id == ferry__sticky_id(k2, "app", "10.0.0.1:8080"));
    ck_assert(id != ferry__sticky_id(none, "app", "10.0.0.1:8080"));
    ck_assert(id != ferry__sticky_id(k, "ap", "p10.0.0.1:8080"));
    ck_assert(id != ferry__sticky_id(k, "app", "10.0.0.2:8080"));
    ck_assert(id != ferry__sticky_id(k, "web", "10.0.0.1:8080"));
    char v[64];
    ck_assert_uint_eq(ferry__sticky_set_cookie("SRV", id, v, sizeof v), strlen(v));
    ck_assert_str_eq(v, "SRV=ebcc3ed9d2de8fb0; Path=/; HttpOnly");
    ck_assert_uint_eq(ferry__sticky_id(none, "app", "10.0.0.1:8080"), 0x487f7f625c3866ffull);
    ferry_view value = {v + 4, FERRY__STICKY_HEX};
    uint64_t back = 0;
    ck_assert(ferry__sticky_parse(value, &back) && back == id);
    ck_assert_uint_eq(ferry__sticky_set_cookie("SRV", 255, v, sizeof v), 38);
    ck_assert_str_eq(v, "SRV=00000000000000ff; Path=/; HttpOnly");
    static const char *const bad[] = {"", "00000000000000f", "00000000000000fff",
                                      "00000000000000FF", "0000000000000x00", "10.0.0.1:8080"};
    for (size_t i = 0; i < FERRY__ARRAY_LEN(bad); i++)
        ck_assert_msg(!ferry__sticky_parse(V(bad[i]), &back), "%s", bad[i]);
    ck_assert_uint_eq(ferry__sticky_set_cookie("SRV", 1, v, 8), 38); /* as snprintf */
}
END_TEST

/* ---- a sticky pool on parsed requests ---- */

enum { NB = 3 };

typedef struct fixture {
    ferry_engine *engine;
    ferry_pool *pool;
    ferry_backend *b[NB];
    char cookie[NB][64]; /* "SRV=..." naming each backend */
} fixture;

static void setup(fixture *f, const char *pool_name, const char *secret) {
    memset(f, 0, sizeof *f);
    ck_assert_int_eq(ferry_engine_new(NULL, &f->engine), FERRY_OK);
    ck_assert_int_eq(ferry_pool_new(f->engine, pool_name, &f->pool), FERRY_OK);
    ck_assert_int_eq(ferry_pool_add(f->pool, "127.0.0.1:81", 1, &f->b[0]), FERRY_OK);
    /* backends added before and after the cookie is set get the same kind of value */
    ck_assert_int_eq(ferry_pool_set_sticky_cookie(f->pool, "SRV", secret), FERRY_OK);
    ck_assert_int_eq(ferry_pool_add(f->pool, "127.0.0.1:82", 1, &f->b[1]), FERRY_OK);
    ck_assert_int_eq(ferry_pool_add(f->pool, "127.0.0.1:83", 1, &f->b[2]), FERRY_OK);
    uint64_t key[2];
    ferry__sticky_key(secret, key);
    for (int i = 0; i < NB; i++) {
        uint64_t id = ferry__sticky_id(key, pool_name, ferry_backend_address(f->b[i]));
        snprintf(f->cookie[i], sizeof f->cookie[i], "SRV=%016llx", (unsigned long long)id);
    }
}

static int index_of(const fixture *f, const ferry_backend *b) {
    for (int i = 0; i < NB; i++)
        if (b == f->b[i]) return i;
    return -1;
}

static ferry_allocator test_alloc;

/* A request as the HTTP engine leaves it after parsing, with up to two Cookie headers. */
static void txn_make(ferry_txn *t, const char *cookie1, const char *cookie2) {
    ferry__allocator_init(&test_alloc, NULL);
    ferry__txn_init(t, NULL, &test_alloc);
    t->req.headers = test_alloc.malloc(NULL, 4 * sizeof *t->req.headers);
    ck_assert_ptr_nonnull(t->req.headers);
    unsigned n = 0;
    t->req.headers[n++] = (ferry_http_header){V("Host"), V("h.test")};
    if (cookie1) t->req.headers[n++] = (ferry_http_header){V("Cookie"), V(cookie1)};
    t->req.headers[n++] = (ferry_http_header){V("Accept"), V("*/*")};
    if (cookie2) t->req.headers[n++] = (ferry_http_header){V("cookie"), V(cookie2)};
    t->req.nheaders = n;
    t->req.method = V("GET");
    t->req.target = V("/");
    ck_assert_int_eq(ferry__txn_take_request(t), FERRY_OK);
}

/* The request's upstream Cookie headers, joined by '|' ("" when none is left). */
static const char *upstream_cookies(ferry_txn *t) {
    static char out[256];
    size_t n = 0;
    out[0] = '\0';
    for (unsigned i = 0; i < t->req_headers.count; i++) {
        ferry_http_header h = t->req_headers.items[i];
        if (!ferry__view_ieq(h.name, "cookie")) continue;
        n += (size_t)snprintf(out + n, sizeof out - n, "%s%.*s", n ? "|" : "", (int)h.value.len,
                              h.value.ptr);
    }
    return out;
}

typedef struct outcome {
    int backend;       /* index, -1 for none */
    char cookies[256]; /* what went upstream */
    char set[128];     /* the response's Set-Cookie, "" for none */
    int no_store;      /* Cache-Control: private came with it */
} outcome;

/* One request through `d` (data `dd`): route_request, pick (attempt 0, then `failovers`
 * more), the response of the backend picked last. */
static outcome request_via(const fixture *f, const ferry_direction_ops *d, void *dd,
                           const char *cookie1, const char *cookie2, unsigned failovers) {
    outcome o = {.backend = -1};
    ferry_txn t;
    txn_make(&t, cookie1, cookie2);
    ck_assert_int_eq(d->route_request(dd, &t), FERRY_CONTINUE);
    snprintf(o.cookies, sizeof o.cookies, "%s", upstream_cookies(&t));
    ferry_session_info info = {0};
    info.txn = &t;
    uintptr_t state = 0;
    ferry_target target;
    for (unsigned a = 0; a <= failovers; a++) {
        memset(&target, 0, sizeof target);
        if (d->pick(dd, &info, a, &state, &target) != FERRY_OK) {
            ferry__txn_free(&t);
            return o;
        }
    }
    o.backend = index_of(f, target.backend);
    t.resp.status = 200;
    ck_assert_int_eq(ferry__sticky_response(&t, target.backend), FERRY_OK);
    ferry_view v;
    if (ferry_txn_header_get(&t, FERRY_TXN_RESPONSE, "Set-Cookie", &v) == FERRY_OK)
        snprintf(o.set, sizeof o.set, "%.*s", (int)v.len, v.ptr);
    o.no_store = ferry_txn_header_get(&t, FERRY_TXN_RESPONSE, "Cache-Control", &v) == FERRY_OK &&
                 v.len == 7 && memcmp(v.ptr, "private", 7) == 0;
    ferry__txn_free(&t);
    return o;
}

static outcome request(const fixture *f, const char *cookie1, const char *cookie2) {
    return request_via(f, ferry_direction_reverse(), f->pool, cookie1, cookie2, 0);
}

/* "SRV=...; Path=/; HttpOnly" for backend i. */
static const char *set_cookie_for(const fixture *f, int i) {
    static char out[128];
    snprintf(out, sizeof out, "%s; Path=/; HttpOnly", f->cookie[i]);
    return out;
}

START_TEST(cookies_bind_requests_to_their_backend) {
    fixture f;
    setup(&f, "app", "k");
    /* no cookie: round-robin, and the response names the backend that served */
    for (int k = 0; k < 2 * NB; k++) {
        outcome o = request(&f, NULL, NULL);
        ck_assert_int_eq(o.backend, k % NB);
        ck_assert_str_eq(o.set, set_cookie_for(&f, o.backend));
        ck_assert(o.no_store);
        ck_assert_str_eq(o.cookies, "");
    }
    /* the cookie wins over round-robin; it is not re-set, and never goes upstream */
    char c[256];
    snprintf(c, sizeof c, "theme=dark; %s; lang=en", f.cookie[1]);
    for (int k = 0; k < 10; k++) {
        outcome o = request(&f, c, NULL);
        ck_assert_int_eq(o.backend, 1);
        ck_assert_str_eq(o.set, "");
        ck_assert(!o.no_store);
        ck_assert_str_eq(o.cookies, "theme=dark; lang=en");
    }
    /* alone in its header, the header goes; in a second Cookie header too */
    outcome o = request(&f, f.cookie[2], NULL);
    ck_assert_int_eq(o.backend, 2);
    ck_assert_str_eq(o.cookies, "");
    o = request(&f, "a=1", f.cookie[0]);
    ck_assert_int_eq(o.backend, 0);
    ck_assert_str_eq(o.cookies, "a=1");
    ck_assert_str_eq(o.set, "");
    /* the first of two values counts; both are removed */
    snprintf(c, sizeof c, "%s; b=2; %s", f.cookie[2], f.cookie[0]);
    o = request(&f, c, NULL);
    ck_assert_int_eq(o.backend, 2);
    ck_assert_str_eq(o.cookies, "b=2");
    /* round-robin went on where it was: sticky requests do not move it */
    ck_assert_int_eq(request(&f, NULL, NULL).backend, 0);
    ferry_engine_free(f.engine);
}
END_TEST

START_TEST(bad_and_stale_values_are_balanced_and_set_again) {
    fixture f;
    setup(&f, "app", NULL);
    fixture other; /* same addresses, another pool name: other values */
    setup(&other, "web", NULL);
    static const char *const bad[] = {"SRV=", "SRV=zzzz", "SRV=127.0.0.1:82",
                                      "SRV=00000000000000ff", "SRV=\"0123456789abcdef\""};
    for (size_t i = 0; i < FERRY__ARRAY_LEN(bad); i++) {
        outcome o = request(&f, bad[i], "x=1");
        ck_assert_int_ge(o.backend, 0);
        ck_assert_str_eq(o.set, set_cookie_for(&f, o.backend));
        ck_assert_str_eq(o.cookies, "x=1");
    }
    for (int i = 0; i < NB; i++) {
        outcome o = request(&f, other.cookie[i], NULL);
        ck_assert_str_eq(o.set, set_cookie_for(&f, o.backend));
    }
    /* a removed backend's clients move, and are told */
    ck_assert_int_eq(ferry_pool_remove(f.pool, f.b[1]), FERRY_OK);
    for (int k = 0; k < 4; k++) {
        outcome o = request(&f, f.cookie[1], NULL);
        ck_assert(o.backend == 0 || o.backend == 2);
        ck_assert_str_eq(o.set, set_cookie_for(&f, o.backend));
    }
    ferry_engine_free(f.engine);
    ferry_engine_free(other.engine);
}
END_TEST

/* Draining keeps sticky clients (and only them); down moves them, with a new cookie;
 * failover after a failed connect walks on from the sticky backend. */
START_TEST(draining_keeps_clients_down_moves_them) {
    fixture f;
    setup(&f, "app", "k");
    ck_assert_int_eq(ferry_backend_set_draining(f.b[1], 1), FERRY_OK);
    for (int k = 0; k < 6; k++) {
        ck_assert_int_eq(request(&f, f.cookie[1], NULL).backend, 1);
        ck_assert_int_ne(request(&f, NULL, NULL).backend, 1);
    }
    ck_assert_int_eq(ferry_backend_set_draining(f.b[1], 0), FERRY_OK);
    /* passively down after a failed connect */
    const ferry_direction_ops *d = ferry_direction_reverse();
    ferry_target t = {.backend = f.b[1]};
    d->connect_result(f.pool, &t, FERRY_ECONNREFUSED);
    ck_assert(ferry_backend_is_down(f.b[1]));
    int moved_to = -1;
    for (int k = 0; k < 4; k++) {
        outcome o = request(&f, f.cookie[1], NULL);
        ck_assert(o.backend == 0 || o.backend == 2);
        ck_assert_str_eq(o.set, set_cookie_for(&f, o.backend));
        moved_to = o.backend;
    }
    /* and the new cookie holds */
    ck_assert_int_eq(request(&f, f.cookie[moved_to], NULL).backend, moved_to);
    d->connect_result(f.pool, &t, FERRY_OK);
    ck_assert_int_eq(request(&f, f.cookie[1], NULL).backend, 1);
    /* failover: the next attempt after the sticky one goes to the next backend added */
    outcome o = request_via(&f, d, f.pool, f.cookie[1], NULL, 1);
    ck_assert_int_eq(o.backend, 2);
    ck_assert_str_eq(o.set, set_cookie_for(&f, 2));
    ferry_engine_free(f.engine);
}
END_TEST

/* TCP sessions (no request), and pools without a sticky cookie: no stickiness at all. */
START_TEST(tcp_sessions_and_plain_pools_are_balanced_as_usual) {
    fixture f;
    setup(&f, "app", NULL);
    const ferry_direction_ops *d = ferry_direction_reverse();
    ferry_session_info tcp = {0};
    for (int k = 0; k < 2 * NB; k++) {
        uintptr_t state = 0;
        ferry_target t;
        memset(&t, 0, sizeof t);
        ck_assert_int_eq(d->pick(f.pool, &tcp, 0, &state, &t), FERRY_OK);
        ck_assert_int_eq(index_of(&f, t.backend), k % NB);
    }
    ck_assert_int_eq(ferry_pool_set_sticky_cookie(f.pool, NULL, NULL), FERRY_OK);
    for (int k = 0; k < NB; k++) {
        outcome o = request(&f, f.cookie[0], NULL);
        ck_assert_int_eq(o.backend, k % NB);
        ck_assert_str_eq(o.set, "");
        ck_assert_str_eq(o.cookies, f.cookie[0]); /* not ours: sent on untouched */
    }
    ferry_engine_free(f.engine);
}
END_TEST

/* The router reads the cookie of the route's pool before the route's header edits. */
START_TEST(routes_to_sticky_pools_are_sticky) {
    fixture f;
    setup(&f, "app", "k");
    ferry_router *r;
    ck_assert_int_eq(ferry_router_new(NULL, &r), FERRY_OK);
    ferry_route_opts ro;
    ferry_route_opts_init(&ro);
    ro.pool = f.pool;
    ro.remove_headers = "Cookie";
    ck_assert_int_eq(ferry_router_add(r, &ro, NULL, 0), FERRY_OK);
    const ferry_direction_ops *d = ferry_direction_router();
    for (int k = 0; k < 4; k++) {
        outcome o = request_via(&f, d, r, f.cookie[2], NULL, 0);
        ck_assert_int_eq(o.backend, 2);
        ck_assert_str_eq(o.set, "");
        ck_assert_str_eq(o.cookies, "");
    }
    outcome o = request_via(&f, d, r, "a=1", NULL, 0);
    ck_assert_str_eq(o.set, set_cookie_for(&f, o.backend));
    ferry_engine_free(f.engine);
    ferry_router_free(r);
}
END_TEST

START_TEST(configuration_is_checked) {
    ferry_engine *e;
    ferry_pool *p;
    ck_assert_int_eq(ferry_engine_new(NULL, &e), FERRY_OK);
    ck_assert_int_eq(ferry_pool_new(e, "p", &p), FERRY_OK);
    ck_assert_int_eq(ferry_pool_set_sticky_cookie(NULL, "SRV", NULL), FERRY_EINVAL);
    static const char *const bad[] = {"a b", "a=b", "x;", "\"x\""};
    for (size_t i = 0; i < FERRY__ARRAY_LEN(bad); i++)
        ck_assert_int_eq(ferry_pool_set_sticky_cookie(p, bad[i], NULL), FERRY_EINVAL);
    ck_assert_int_eq(ferry_pool_set_sticky_cookie(p, "SRV", "secret"), FERRY_OK);
    ck_assert_int_eq(ferry_pool_set_sticky_cookie(p, "", NULL), FERRY_OK);
    ferry_engine_free(e);
}
END_TEST

int main(void) {
    Suite *s = suite_create("sticky");
    TCase *pure = tcase_create("pure");
    tcase_add_test(pure, cookie_names_are_tokens);
    tcase_add_test(pure, cookies_are_found_by_exact_name);
    tcase_add_test(pure, cookie_removal_keeps_the_others_as_sent);
    tcase_add_test(pure, siphash_matches_the_reference);
    tcase_add_test(pure, values_are_stable_and_hide_the_address);
    suite_add_tcase(s, pure);
    TCase *pool = tcase_create("pool");
    tcase_add_test(pool, cookies_bind_requests_to_their_backend);
    tcase_add_test(pool, bad_and_stale_values_are_balanced_and_set_again);
    tcase_add_test(pool, draining_keeps_clients_down_moves_them);
    tcase_add_test(pool, tcp_sessions_and_plain_pools_are_balanced_as_usual);
    tcase_add_test(pool, routes_to_sticky_pools_are_sticky);
    tcase_add_test(pool, configuration_is_checked);
    suite_add_tcase(s, pool);
    return run_suite(s);
}
