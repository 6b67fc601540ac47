/* Cookie stickiness through a running engine over real loopback sockets: the first answer
 * sets the cookie, requests carrying it stay with their backend while others go
 * round-robin, backends never see it, unknown values are balanced and set again, a
 * draining backend keeps its clients, a dead one's clients move and are told. */
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "ferry.h"
#include "http_backend.h"

enum { NB = 3 };

static http_backend backends[NB]; /* static: their connection threads may outlive a test */

typedef struct proxy {
    ferry_engine *engine;
    ferry_pool *pool;
    ferry_backend *b[NB];
    uint16_t port;
} proxy;

static void proxy_start(proxy *p) {
    memset(p, 0, sizeof *p);
    ferry_engine_opts eo;
    ferry_engine_opts_init(&eo);
    eo.workers = 2;
    ck_assert_int_eq(ferry_engine_new(&eo, &p->engine), FERRY_OK);
    ck_assert_int_eq(ferry_pool_new(p->engine, "web", &p->pool), FERRY_OK);
    ck_assert_int_eq(ferry_pool_set_sticky_cookie(p->pool, "SRV", "test secret"), FERRY_OK);
    /* TCP checks: they send nothing, so the backends' last request stays a real one */
    ferry_health_opts h;
    ferry_health_opts_init(&h);
    h.kind = FERRY_HEALTH_TCP;
    h.interval_ms = 50;
    h.timeout_ms = 2000;
    h.rise = h.fall = 2;
    ck_assert_int_eq(ferry_pool_set_health_check(p->pool, &h), FERRY_OK);
    for (int i = 0; i < NB; i++) {
        char addr[32];
        snprintf(addr, sizeof addr, "127.0.0.1:%u", backends[i].port);
        ck_assert_int_eq(ferry_pool_add(p->pool, addr, 1, &p->b[i]), FERRY_OK);
    }
    ferry_listener_opts lo;
    ferry_listener_opts_init(&lo);
    lo.address = "127.0.0.1:0";
    lo.protocol = FERRY_PROTO_HTTP;
    lo.direction = ferry_direction_reverse();
    lo.direction_data = p->pool;
    ferry_listener *l;
    ck_assert_int_eq(ferry_engine_listen(p->engine, &lo, &l), FERRY_OK);
    p->port = ferry_listener_port(l);
    ck_assert_int_eq(ferry_engine_start(p->engine), FERRY_OK);
}

typedef struct reply {
    int status;
    int backend;       /* its X-Backend, -1 if none */
    char value[64];    /* the SRV value of its Set-Cookie, "" if none */
    char set[128];     /* the whole Set-Cookie */
    int private_cache; /* Cache-Control: private */
} reply;

/* The value of response header `name` ("Name: "), into out; 0 if absent. */
static int header_of(const char *resp, const char *name, char *out, size_t size) {
    const char *end = strstr(resp, "\r\n\r\n");
    const char *h = strstr(resp, name);
    if (!h || !end || h > end) return 0;
    h += strlen(name);
    size_t n = strcspn(h, "\r");
    snprintf(out, size, "%.*s", (int)n, h);
    return 1;
}

/* GET / with Cookie: `cookie` (NULL: none). */
static reply get(const proxy *p, const char *cookie) {
    char req[512], resp[4096], v[128];
    snprintf(req, sizeof req, "GET / HTTP/1.1\r\nHost: t\r\n%s%s%sConnection: close\r\n\r\n",
             cookie ? "Cookie: " : "", cookie ? cookie : "", cookie ? "\r\n" : "");
    exchange(p->port, req, resp, sizeof resp);
    reply r = {.backend = -1};
    if (strncmp(resp, "HTTP/1.1 ", 9) == 0) r.status = atoi(resp + 9);
    if (header_of(resp, "\r\nX-Backend: ", v, sizeof v)) r.backend = atoi(v);
    if (header_of(resp, "\r\nSet-Cookie: ", r.set, sizeof r.set) && strncmp(r.set, "SRV=", 4) == 0)
        snprintf(r.value, sizeof r.value, "%.*s", (int)strcspn(r.set + 4, ";"), r.set + 4);
    r.private_cache = header_of(resp, "\r\nCache-Control: ", v, sizeof v) && !strcmp(v, "private");
    return r;
}

/* The request head backend i received last. */
static void last_head(int i, char *out, size_t size) {
    pthread_mutex_lock(&backends[i].lock);
    snprintf(out, size, "%s", backends[i].last_head);
    pthread_mutex_unlock(&backends[i].lock);
}

static void assert_cookie_shape(const reply *r) {
    char want[128];
    snprintf(want, sizeof want, "SRV=%s; Path=/; HttpOnly", r->value);
    ck_assert_str_eq(r->set, want);
    ck_assert_uint_eq(strlen(r->value), 16);
    ck_assert_uint_eq(strspn(r->value, "0123456789abcdef"), 16);
    ck_assert(r->private_cache);
}

START_TEST(sticky_cookie_end_to_end) {
    signal(SIGPIPE, SIG_IGN);
    static const char *const names[NB] = {"X-Backend: 0\r\n", "X-Backend: 1\r\n",
                                          "X-Backend: 2\r\n"};
    for (int i = 0; i < NB; i++) {
        backend_start(&backends[i]);
        backends[i].extra_headers = names[i];
    }
    proxy p;
    proxy_start(&p);

    /* the first answer sets the cookie, which says nothing of the address */
    reply first = get(&p, NULL);
    ck_assert_int_eq(first.status, 200);
    ck_assert_int_ge(first.backend, 0);
    assert_cookie_shape(&first);
    int home = first.backend;

    /* with it, every request goes home (across both workers), without a new cookie,
     * and the backend sees the other cookies only, as sent */
    char cookie[256], head[8192];
    snprintf(cookie, sizeof cookie, "a=1; SRV=%s; b=\"x y\"", first.value);
    for (int k = 0; k < 12; k++) {
        reply r = get(&p, cookie);
        ck_assert_int_eq(r.status, 200);
        ck_assert_int_eq(r.backend, home);
        ck_assert_str_eq(r.set, "");
        ck_assert(!r.private_cache);
        last_head(home, head, sizeof head);
        ck_assert_msg(strstr(head, "\r\nCookie: a=1; b=\"x y\"\r\n") && !strstr(head, "SRV"),
                      "%s", head);
    }

    /* without it, round-robin goes on alternating, each answer naming its backend */
    int seen[NB] = {0};
    char values[NB][64];
    for (int k = 0; k < NB; k++) {
        reply r = get(&p, NULL);
        ck_assert_int_ge(r.backend, 0);
        assert_cookie_shape(&r);
        ck_assert_int_eq(seen[r.backend]++, 0);
        snprintf(values[r.backend], sizeof values[r.backend], "%s", r.value);
    }
    ck_assert_str_eq(values[home], first.value);
    ck_assert_str_ne(values[0], values[1]);
    ck_assert_str_ne(values[1], values[2]);
    ck_assert_str_ne(values[0], values[2]);

    /* an unknown value: balanced, set again; its Cookie header goes, being empty */
    reply r = get(&p, "SRV=0123456789abcdef");
    ck_assert_int_ge(r.backend, 0);
    assert_cookie_shape(&r);
    ck_assert_str_eq(r.value, values[r.backend]);
    last_head(r.backend, head, sizeof head);
    ck_assert_msg(!strstr(head, "Cookie"), "%s", head);

    /* draining: sticky clients stay, new ones go elsewhere */
    ck_assert_int_eq(ferry_backend_set_draining(p.b[home], 1), FERRY_OK);
    for (int k = 0; k < 6; k++) {
        ck_assert_int_eq(get(&p, cookie).backend, home);
        reply o = get(&p, NULL);
        ck_assert_int_ge(o.backend, 0);
        ck_assert_int_ne(o.backend, home);
    }
    ck_assert_int_eq(ferry_backend_set_draining(p.b[home], 0), FERRY_OK);

    /* down (its health check fails): its clients move, and get the new backend's cookie */
    backend_stop(&backends[home]);
    for (int k = 0; k < 300 && !ferry_backend_is_down(p.b[home]); k++) usleep(10000);
    ck_assert(ferry_backend_is_down(p.b[home]));
    r = get(&p, cookie);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_ge(r.backend, 0);
    ck_assert_int_ne(r.backend, home);
    assert_cookie_shape(&r);
    ck_assert_str_eq(r.value, values[r.backend]);
    int moved = r.backend;
    snprintf(cookie, sizeof cookie, "SRV=%s", r.value);
    for (int k = 0; k < 4; k++) {
        reply s = get(&p, cookie);
        ck_assert_int_eq(s.backend, moved);
        ck_assert_str_eq(s.set, "");
    }

    ferry_engine_free(p.engine);
    for (int i = 0; i < NB; i++)
        if (!atomic_load(&backends[i].stop)) backend_stop(&backends[i]);
}
END_TEST

int main(void) {
    Suite *s = suite_create("sticky_engine");
    TCase *tc = tcase_create("sticky");
    tcase_add_test(tc, sticky_cookie_end_to_end);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
