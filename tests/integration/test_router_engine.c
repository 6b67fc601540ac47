/* The routing table in a running engine: requests reach the pool their route names, with
 * the route's path rewriting, headers, Host and body limit; unmatched requests get 404
 * without touching any backend. */
#include <signal.h>

#include "ferry.h"
#include "http_backend.h"

static int status_of(const char *resp) { return atoi(resp + 9); }

START_TEST(routes_reach_their_pools) {
    signal(SIGPIPE, SIG_IGN);
    http_backend web, api;
    backend_start(&web);
    backend_start(&api);
    ferry_engine *engine;
    ck_assert_int_eq(ferry_engine_new(NULL, &engine), FERRY_OK);
    ferry_pool *pw, *pa;
    char addr[32];
    ck_assert_int_eq(ferry_pool_new(engine, "web", &pw), FERRY_OK);
    snprintf(addr, sizeof addr, "127.0.0.1:%u", web.port);
    ck_assert_int_eq(ferry_pool_add(pw, addr, 1, NULL), FERRY_OK);
    ck_assert_int_eq(ferry_pool_new(engine, "api", &pa), FERRY_OK);
    snprintf(addr, sizeof addr, "127.0.0.1:%u", api.port);
    ck_assert_int_eq(ferry_pool_add(pa, addr, 1, NULL), FERRY_OK);

    ferry_router *router;
    ck_assert_int_eq(ferry_router_new(NULL, &router), FERRY_OK);
    ferry_route_opts o;
    ferry_route_opts_init(&o);
    o.host = "www.test";
    o.pool = pw;
    char err[256];
    ck_assert_int_eq(ferry_router_add(router, &o, err, sizeof err), FERRY_OK);
    ferry_route_opts_init(&o);
    o.host = "www.test";
    o.path = "/api";
    o.pool = pa;
    o.strip_prefix = "/api";
    o.add_prefix = "/v1";
    o.set_headers = "X-Route: api";
    o.remove_headers = "Cookie";
    o.backend_host = 1;
    o.max_body_bytes = 10;
    ck_assert_int_eq(ferry_router_add(router, &o, err, sizeof err), FERRY_OK);

    ferry_listener_opts lo;
    ferry_listener_opts_init(&lo);
    lo.address = "127.0.0.1:0";
    lo.protocol = FERRY_PROTO_HTTP;
    lo.direction = ferry_direction_router();
    lo.direction_data = router;
    ferry_listener *l;
    ck_assert_int_eq(ferry_engine_listen(engine, &lo, &l), FERRY_OK);
    ck_assert_int_eq(ferry_engine_start(engine), FERRY_OK);
    uint16_t port = ferry_listener_port(l);
    static char out[16384];

    exchange(port, "GET /index.html HTTP/1.1\r\nHost: www.test\r\nCookie: a=1\r\n\r\n", out, sizeof out);
    ck_assert_msg(status_of(out) == 200, "%s", out);
    pthread_mutex_lock(&web.lock);
    ck_assert_msg(strncmp(web.last_head, "GET /index.html HTTP/1.1\r\n", 26) == 0, "%s", web.last_head);
    ck_assert_ptr_nonnull(strstr(web.last_head, "Host: www.test\r\n")); /* the client's Host */
    ck_assert_ptr_nonnull(strstr(web.last_head, "Cookie: a=1\r\n"));
    pthread_mutex_unlock(&web.lock);

    exchange(port, "GET /api/users?x=1 HTTP/1.1\r\nHost: WWW.test:80\r\nCookie: a=1\r\n\r\n", out,
             sizeof out);
    ck_assert_msg(status_of(out) == 200, "%s", out);
    pthread_mutex_lock(&api.lock);
    ck_assert_msg(strncmp(api.last_head, "GET /v1/users?x=1 HTTP/1.1\r\n", 28) == 0, "%s", api.last_head);
    snprintf(addr, sizeof addr, "Host: 127.0.0.1:%u\r\n", api.port);
    ck_assert_msg(strstr(api.last_head, addr) != NULL, "%s", api.last_head); /* the backend's */
    ck_assert_ptr_nonnull(strstr(api.last_head, "X-Route: api\r\n"));
    ck_assert_ptr_null(strstr(api.last_head, "Cookie"));
    pthread_mutex_unlock(&api.lock);

    /* The route's own body limit. */
    exchange(port, "POST /api/x HTTP/1.1\r\nHost: www.test\r\nContent-Length: 11\r\n\r\nhello world",
             out, sizeof out);
    ck_assert_int_eq(status_of(out), 413);
    exchange(port, "POST /x HTTP/1.1\r\nHost: www.test\r\nContent-Length: 11\r\n\r\nhello world",
             out, sizeof out);
    ck_assert_int_eq(status_of(out), 200);

    /* Nothing matches: 404, and no backend hears of it. */
    int before = atomic_load(&web.requests) + atomic_load(&api.requests);
    exchange(port, "GET / HTTP/1.1\r\nHost: other.test\r\n\r\n", out, sizeof out);
    ck_assert_int_eq(status_of(out), 404);
    ck_assert_int_eq(atomic_load(&web.requests) + atomic_load(&api.requests), before);

    ferry_engine_free(engine);
    ferry_router_free(router);
    backend_stop(&web);
    backend_stop(&api);
}
END_TEST

START_TEST(responses_name_the_public_address) {
    signal(SIGPIPE, SIG_IGN);
    http_backend api;
    backend_start(&api);
    static char extra[512];
    snprintf(extra, sizeof extra,
             "Location: http://127.0.0.1:%u/v1/next?a=1\r\n"
             "Content-Location: http://elsewhere.test/v1/x\r\n"
             "Refresh: 3; url=http://127.0.0.1:%u/v1/later\r\n"
             "Set-Cookie: s=1; Path=/v1/cart; Domain=.backend.internal; HttpOnly\r\n"
             "X-Powered-By: secret-framework\r\n",
             api.port, api.port);
    api.extra_headers = extra;
    ferry_engine *engine;
    ck_assert_int_eq(ferry_engine_new(NULL, &engine), FERRY_OK);
    ferry_pool *pa;
    char addr[32];
    ck_assert_int_eq(ferry_pool_new(engine, "api", &pa), FERRY_OK);
    snprintf(addr, sizeof addr, "127.0.0.1:%u", api.port);
    ck_assert_int_eq(ferry_pool_add(pa, addr, 1, NULL), FERRY_OK);
    ferry_router *router;
    ck_assert_int_eq(ferry_router_new(NULL, &router), FERRY_OK);
    ferry_route_opts o;
    ferry_route_opts_init(&o);
    o.path = "/shop";
    o.pool = pa;
    o.strip_prefix = "/shop";
    o.add_prefix = "/v1";
    o.cookie_domain = "backend.internal";
    o.public_cookie_domain = "www.example.test";
    char err[256];
    ck_assert_int_eq(ferry_router_add(router, &o, err, sizeof err), FERRY_OK);
    ferry_listener_opts lo;
    ferry_listener_opts_init(&lo);
    lo.address = "127.0.0.1:0";
    lo.protocol = FERRY_PROTO_HTTP;
    lo.direction = ferry_direction_router();
    lo.direction_data = router;
    lo.public_scheme = "https";
    lo.hide_backend_headers = 1;
    ferry_listener *l;
    ck_assert_int_eq(ferry_engine_listen(engine, &lo, &l), FERRY_OK);
    ck_assert_int_eq(ferry_engine_start(engine), FERRY_OK);
    static char out[16384];
    exchange(ferry_listener_port(l), "GET /shop/cart HTTP/1.1\r\nHost: www.example.test\r\n\r\n",
             out, sizeof out);
    ck_assert_msg(status_of(out) == 200, "%s", out);
    ck_assert_msg(strstr(out, "\r\nLocation: https://www.example.test/shop/next?a=1\r\n"), "%s", out);
    ck_assert_msg(strstr(out, "\r\nContent-Location: http://elsewhere.test/v1/x\r\n"), "%s", out);
    ck_assert_msg(strstr(out, "\r\nRefresh: 3; url=https://www.example.test/shop/later\r\n"), "%s", out);
    ck_assert_msg(strstr(out, "\r\nSet-Cookie: s=1; Path=/shop/cart; Domain=.www.example.test; HttpOnly\r\n"),
                  "%s", out);
    ck_assert_ptr_null(strstr(out, "secret")); /* Server and X-Powered-By are gone */
    ferry_engine_free(engine);
    ferry_router_free(router);
    backend_stop(&api);
}
END_TEST

/* The body of a chunked response, decoded (sizes are trusted: ferry wrote them). */
static const char *dechunk(const char *resp) {
    static char body[8192];
    const char *p = strstr(resp, "\r\n\r\n");
    size_t n = 0;
    for (p = p ? p + 4 : resp;;) {
        unsigned long size = strtoul(p, NULL, 16);
        p = strstr(p, "\r\n");
        if (!size || !p || n + size >= sizeof body) break;
        memcpy(body + n, p + 2, size);
        n += size;
        p += 2 + size + 2;
    }
    body[n] = '\0';
    return body;
}

START_TEST(text_bodies_are_substituted) {
    signal(SIGPIPE, SIG_IGN);
    http_backend api;
    backend_start(&api);
    api.extra_headers = "Content-Type: text/html; charset=utf-8\r\n";
    /* The pattern straddles the boundary between the head's read and the body's pieces. */
    api.body = "<a href=\"http://internal.lan/x\">INTERNAL.LAN</a> internal.la";
    ferry_engine *engine;
    ck_assert_int_eq(ferry_engine_new(NULL, &engine), FERRY_OK);
    ferry_pool *pa;
    char addr[32];
    ck_assert_int_eq(ferry_pool_new(engine, "api", &pa), FERRY_OK);
    snprintf(addr, sizeof addr, "127.0.0.1:%u", api.port);
    ck_assert_int_eq(ferry_pool_add(pa, addr, 1, NULL), FERRY_OK);
    ferry_router *router;
    ck_assert_int_eq(ferry_router_new(NULL, &router), FERRY_OK);
    ferry_route_opts o;
    ferry_route_opts_init(&o);
    o.pool = pa;
    o.substitutions = "internal.lan=>www.example.test\nhref=>HREF";
    o.substitute_icase = 1;
    char err[256];
    ck_assert_msg(ferry_router_add(router, &o, err, sizeof err) == FERRY_OK, "%s", err);
    o.substitutions = "no-arrow";
    ck_assert_int_eq(ferry_router_add(router, &o, err, sizeof err), FERRY_ECONFIG);
    ck_assert_ptr_nonnull(strstr(err, "bad substitution"));
    ferry_listener_opts lo;
    ferry_listener_opts_init(&lo);
    lo.address = "127.0.0.1:0";
    lo.protocol = FERRY_PROTO_HTTP;
    lo.direction = ferry_direction_router();
    lo.direction_data = router;
    ferry_listener *l;
    ck_assert_int_eq(ferry_engine_listen(engine, &lo, &l), FERRY_OK);
    ck_assert_int_eq(ferry_engine_start(engine), FERRY_OK);
    static char out[16384];
    exchange(ferry_listener_port(l), "GET / HTTP/1.1\r\nHost: h\r\nAccept-Encoding: gzip\r\n\r\n",
             out, sizeof out);
    ck_assert_msg(status_of(out) == 200, "%s", out);
    ck_assert_msg(strstr(out, "Transfer-Encoding: chunked\r\n"), "%s", out); /* re-framed */
    ck_assert_str_eq(dechunk(out), "<a HREF=\"http://www.example.test/x\">www.example.test</a> internal.la");
    pthread_mutex_lock(&api.lock);
    ck_assert_ptr_nonnull(strstr(api.last_head, "Accept-Encoding: identity\r\n"));
    pthread_mutex_unlock(&api.lock);

    /* Not text: untouched, length kept. */
    api.extra_headers = "Content-Type: image/png\r\n";
    exchange(ferry_listener_port(l), "GET / HTTP/1.1\r\nHost: h\r\n\r\n", out, sizeof out);
    ck_assert_msg(strstr(out, "href=\"http://internal.lan/x\""), "%s", out);
    ck_assert_ptr_nonnull(strstr(out, "Content-Length: "));
    ferry_engine_free(engine);
    ferry_router_free(router);
    backend_stop(&api);
}
END_TEST

int main(void) {
    Suite *s = suite_create("router_engine");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, routes_reach_their_pools);
    tcase_add_test(tc, responses_name_the_public_address);
    tcase_add_test(tc, text_bodies_are_substituted);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
