/* The forward policy inside a running engine, through the public API: a forward and a
 * reverse listener on one engine (client -> forward -> reverse -> backend), the on_auth
 * hook, time windows under an injected clock, parents chosen by on_route (HTTP with
 * credentials, CONNECT, SOCKS5) and failover from a dead parent. */
#define _GNU_SOURCE
#include <signal.h>
#include <time.h>

#include "ferry.h"
#include "http_backend.h"

typedef struct engine_fixture {
    ferry_engine *engine;
    ferry_pool *pool;
    ferry_forward *fwd;   /* policy of the first forward listener */
    ferry_forward *fwd_b; /* policy of the second one (a parent for the first) */
    uint16_t fwd_port, fwd_b_port, rev_port;
    atomic_int b_requests; /* requests the second forward listener handled */
} engine_fixture;

static ferry_listener *listen_forward(ferry_engine *e, ferry_forward *fwd, ferry_hooks h) {
    ferry_listener_opts lo;
    ferry_listener_opts_init(&lo);
    lo.address = "127.0.0.1:0";
    lo.protocol = FERRY_PROTO_HTTP_SOCKS;
    lo.direction = ferry_direction_forward();
    lo.direction_data = fwd;
    lo.hooks = h;
    lo.connect_timeout_ms = 1000;
    ferry_listener *l;
    ck_assert_int_eq(ferry_engine_listen(e, &lo, &l), FERRY_OK);
    return l;
}

static ferry_forward *new_policy(uint16_t open_port) {
    ferry_forward *fwd;
    ck_assert_int_eq(ferry_forward_new(NULL, &fwd), FERRY_OK);
    ck_assert_int_eq(ferry_forward_allow_dest(fwd, "127.0.0.0/8"), FERRY_OK);
    char ports[16];
    snprintf(ports, sizeof ports, "%u", open_port);
    ck_assert_int_eq(ferry_forward_set_connect_ports(fwd, ports), FERRY_OK);
    return fwd;
}

static void on_log_b(void *ud, const ferry_log_record *r) {
    (void)r;
    atomic_fetch_add(&((engine_fixture *)ud)->b_requests, 1);
}
static const ferry_hook_ops b_hooks = {.on_log = on_log_b};

/* One engine: forward listener A (hooks h), forward listener B, reverse listener R in
 * front of the backend. Not started. */
static void fixture_init(engine_fixture *f, uint16_t backend_port, ferry_hooks h) {
    memset(f, 0, sizeof *f);
    ck_assert_int_eq(ferry_engine_new(NULL, &f->engine), FERRY_OK);
    ck_assert_int_eq(ferry_pool_new(f->engine, "b", &f->pool), FERRY_OK);
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", backend_port);
    ck_assert_int_eq(ferry_pool_add(f->pool, addr, 1, NULL), FERRY_OK);
    ferry_listener_opts lo;
    ferry_listener_opts_init(&lo);
    lo.address = "127.0.0.1:0";
    lo.protocol = FERRY_PROTO_HTTP;
    lo.direction = ferry_direction_reverse();
    lo.direction_data = f->pool;
    ferry_listener *rev;
    ck_assert_int_eq(ferry_engine_listen(f->engine, &lo, &rev), FERRY_OK);
    f->rev_port = ferry_listener_port(rev);
    f->fwd = new_policy(backend_port);
    f->fwd_b = new_policy(backend_port);
    f->fwd_port = ferry_listener_port(listen_forward(f->engine, f->fwd, h));
    f->fwd_b_port = ferry_listener_port(listen_forward(f->engine, f->fwd_b, (ferry_hooks){&b_hooks, f}));
}

static void fixture_free(engine_fixture *f) {
    ferry_engine_free(f->engine);
    ferry_forward_free(f->fwd);
    ferry_forward_free(f->fwd_b);
}

static int status_of(const char *resp) { return atoi(resp + 9); }

START_TEST(forward_and_reverse_on_one_engine) {
    signal(SIGPIPE, SIG_IGN);
    http_backend b;
    backend_start(&b);
    engine_fixture f;
    fixture_init(&f, b.port, (ferry_hooks){0});
    ck_assert_int_eq(ferry_engine_start(f.engine), FERRY_OK);
    static char out[16384], req[512];
    snprintf(req, sizeof req,
             "GET http://127.0.0.1:%u/through?x=1 HTTP/1.1\r\nHost: ignored\r\n"
             "Via: 1.1 client-side\r\nX-Forwarded-For: 10.9.9.9\r\nConnection: close\r\n\r\n",
             f.rev_port);
    exchange(f.fwd_port, req, out, sizeof out);
    ck_assert_msg(status_of(out) == 200 && strstr(out, "\r\n\r\nok"), "got: %s", out);
    pthread_mutex_lock(&b.lock);
    /* Origin-form upstream, Host from the target; anonymous: the client's Via and XFF are
     * gone (the reverse listener then adds its own X-Forwarded-For, naming loopback). */
    ck_assert_msg(strncmp(b.last_head, "GET /through?x=1 HTTP/1.1\r\n", 27) == 0, "%s", b.last_head);
    char host[64];
    snprintf(host, sizeof host, "Host: 127.0.0.1:%u\r\n", f.rev_port);
    ck_assert_msg(strstr(b.last_head, host) != NULL, "%s", b.last_head);
    ck_assert_ptr_null(strstr(b.last_head, "client-side"));
    ck_assert_ptr_null(strstr(b.last_head, "10.9.9.9"));
    pthread_mutex_unlock(&b.lock);

    /* Origin-form to the forward listener is not a proxy request. */
    exchange(f.fwd_port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", out, sizeof out);
    ck_assert_int_eq(status_of(out), 400);
    /* Only 127/8 is lifted from the refused ranges: the metadata address stays refused. */
    exchange(f.fwd_port, "GET http://169.254.169.254/latest/meta-data HTTP/1.1\r\nHost: x\r\n\r\n",
             out, sizeof out);
    ck_assert_int_eq(status_of(out), 403);
    fixture_free(&f);
    backend_stop(&b);
}
END_TEST

/* ---- on_auth ---- */

typedef struct auth_state {
    atomic_int calls;
    char seen_user[64]; /* session->user in on_request */
} auth_state;

static ferry_verdict check_auth(void *ud, const ferry_session_info *s, const char *user,
                                const char *password) {
    (void)s;
    atomic_fetch_add(&((auth_state *)ud)->calls, 1);
    return user && strcmp(user, "alice") == 0 && strcmp(password, "good") == 0 ? FERRY_CONTINUE
                                                                               : FERRY_REJECT;
}

static ferry_verdict record_user(void *ud, ferry_txn *txn) {
    auth_state *a = ud;
    snprintf(a->seen_user, sizeof a->seen_user, "%s", ferry_txn_session(txn)->user);
    return FERRY_CONTINUE;
}

static const ferry_hook_ops auth_hooks = {.on_auth = check_auth, .on_request = record_user};

START_TEST(on_auth_hook_decides) {
    signal(SIGPIPE, SIG_IGN);
    http_backend b;
    backend_start(&b);
    auth_state a = {0};
    engine_fixture f;
    fixture_init(&f, b.port, (ferry_hooks){&auth_hooks, &a});
    ck_assert_int_eq(ferry_engine_start(f.engine), FERRY_OK);
    static char out[16384], req[512];
    const char *creds[] = {"", "Proxy-Authorization: Basic YWxpY2U6YmFk\r\n" /* alice:bad */,
                           "Proxy-Authorization: basic YWxpY2U6Z29vZA==\r\n" /* alice:good */};
    int want[] = {407, 407, 200};
    for (int i = 0; i < 3; i++) {
        snprintf(req, sizeof req, "GET http://127.0.0.1:%u/a HTTP/1.1\r\nHost: x\r\n%s\r\n", b.port,
                 creds[i]);
        exchange(f.fwd_port, req, out, sizeof out);
        ck_assert_msg(status_of(out) == want[i], "request %d got: %s", i, out);
        if (want[i] == 407)
            ck_assert_ptr_nonnull(strstr(out, "Proxy-Authenticate: Basic realm=\"ferry\"\r\n"));
    }
    ck_assert_int_eq(atomic_load(&a.calls), 2); /* no credentials: asked for, not checked */
    ck_assert_str_eq(a.seen_user, "alice");
    ck_assert_int_eq(atomic_load(&b.requests), 1);
    pthread_mutex_lock(&b.lock);
    ck_assert_ptr_null(strcasestr(b.last_head, "proxy-authorization"));
    ck_assert_ptr_null(strstr(b.last_head, "Z29vZA"));
    pthread_mutex_unlock(&b.lock);
    fixture_free(&f);
    backend_stop(&b);
}
END_TEST

/* ---- time windows ---- */

static int64_t fake_now(void *ud) { return atomic_load((_Atomic int64_t *)ud); }

static int64_t utc(int year, int mon, int day, int hour, int min) {
    struct tm tm = {.tm_year = year - 1900, .tm_mon = mon - 1, .tm_mday = day, .tm_hour = hour,
                    .tm_min = min};
    return (int64_t)timegm(&tm);
}

START_TEST(time_window_with_injected_clock) {
    signal(SIGPIPE, SIG_IGN);
    http_backend b;
    backend_start(&b);
    engine_fixture f;
    fixture_init(&f, b.port, (ferry_hooks){0});
    _Atomic int64_t now = utc(2026, 11, 25, 10, 30); /* a Wednesday */
    ferry_forward_set_clock(f.fwd, fake_now, &now);
    char err[128];
    ck_assert_int_eq(ferry_forward_add_rule(f.fwd, "deny time mon-fri 09:00-17:00 utc", err, sizeof err),
                     FERRY_OK);
    ck_assert_int_eq(ferry_engine_start(f.engine), FERRY_OK);
    static char out[16384], req[256];
    snprintf(req, sizeof req, "GET http://127.0.0.1:%u/ HTTP/1.1\r\nHost: x\r\n\r\n", b.port);
    exchange(f.fwd_port, req, out, sizeof out);
    ck_assert_int_eq(status_of(out), 403); /* business hours */
    atomic_store(&now, utc(2026, 11, 25, 17, 0)); /* the window ends at 17:00 */
    exchange(f.fwd_port, req, out, sizeof out);
    ck_assert_int_eq(status_of(out), 200);
    atomic_store(&now, utc(2026, 11, 28, 10, 30)); /* Saturday */
    exchange(f.fwd_port, req, out, sizeof out);
    ck_assert_int_eq(status_of(out), 200);
    ck_assert_int_eq(atomic_load(&b.requests), 2);
    fixture_free(&f);
    backend_stop(&b);
}
END_TEST

/* ---- parents ---- */

typedef struct parent_choice {
    ferry_forward *fwd;
    const char *name; /* the parent on_route puts on every request */
} parent_choice;

static ferry_verdict choose_parent(void *ud, const ferry_session_info *s, unsigned attempt,
                                   ferry_target *t) {
    (void)s;
    (void)attempt;
    parent_choice *pc = ud;
    t->parent = ferry_forward_parent(pc->fwd, pc->name);
    return t->parent ? FERRY_CONTINUE : FERRY_REJECT;
}
static const ferry_hook_ops route_hooks = {.on_route = choose_parent};

/* CONNECT through listener A, then a request over the tunnel. */
static void connect_and_get(uint16_t proxy_port, uint16_t backend_port, char *out, size_t size) {
    int fd = connect_loopback(proxy_port);
    ck_assert_int_ge(fd, 0);
    char req[256];
    int n = snprintf(req, sizeof req,
                     "CONNECT 127.0.0.1:%u HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n\r\n"
                     "GET /tunnelled HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                     backend_port, backend_port);
    ck_assert_int_eq(send(fd, req, (size_t)n, MSG_NOSIGNAL), n);
    size_t have = 0;
    for (;;) {
        ssize_t r = recv(fd, out + have, size - 1 - have, 0);
        if (r <= 0) break;
        have += (size_t)r;
        out[have] = '\0';
        if (strstr(out, "\r\n\r\nok")) break;
    }
    out[have] = '\0';
    close(fd);
}

static void check_parent_path(const char *url, int requires_auth) {
    http_backend b;
    backend_start(&b);
    parent_choice pc = {.name = "up"};
    engine_fixture f;
    fixture_init(&f, b.port, (ferry_hooks){&route_hooks, &pc});
    pc.fwd = f.fwd;
    char full[128], err[128];
    snprintf(full, sizeof full, url, f.fwd_b_port);
    ck_assert_int_eq(ferry_forward_add_parent(f.fwd, "up", full, err, sizeof err), FERRY_OK);
    if (requires_auth) ck_assert_int_eq(ferry_forward_add_user(f.fwd_b, "pu", "pp"), FERRY_OK);
    ck_assert_int_eq(ferry_engine_start(f.engine), FERRY_OK);
    static char out[16384], req[256];
    snprintf(req, sizeof req, "GET http://127.0.0.1:%u/via HTTP/1.1\r\nHost: x\r\n\r\n", b.port);
    exchange(f.fwd_port, req, out, sizeof out);
    ck_assert_msg(status_of(out) == 200, "%s: got %s", url, out);
    connect_and_get(f.fwd_port, b.port, out, sizeof out);
    ck_assert_msg(strncmp(out, "HTTP/1.1 200 Connection established\r\n\r\nHTTP/1.1 200 ", 52) == 0,
                  "%s: got %s", url, out);
    ck_assert_int_eq(atomic_load(&b.requests), 2);
    /* Both went through the parent; the tunnel is logged when it closes, just after. */
    for (int i = 0; i < 200 && atomic_load(&f.b_requests) < 2; i++) usleep(10000);
    ck_assert_int_eq(atomic_load(&f.b_requests), 2);
    pthread_mutex_lock(&b.lock);
    ck_assert_ptr_null(strcasestr(b.last_head, "proxy-authorization"));
    pthread_mutex_unlock(&b.lock);
    fixture_free(&f);
    backend_stop(&b);
}

START_TEST(parent_http_chosen_by_on_route) {
    signal(SIGPIPE, SIG_IGN);
    check_parent_path("http://127.0.0.1:%u", 0);
}
END_TEST

START_TEST(parent_http_with_credentials) {
    signal(SIGPIPE, SIG_IGN);
    check_parent_path("http://pu:pp@127.0.0.1:%u", 1);
}
END_TEST

START_TEST(parent_socks5_with_credentials) {
    signal(SIGPIPE, SIG_IGN);
    check_parent_path("socks5://pu:pp@127.0.0.1:%u", 1);
}
END_TEST

START_TEST(dead_parent_fails_over) {
    signal(SIGPIPE, SIG_IGN);
    http_backend b;
    backend_start(&b);
    engine_fixture f;
    fixture_init(&f, b.port, (ferry_hooks){0});
    char url[64], err[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u", dead_port());
    ck_assert_int_eq(ferry_forward_add_parent(f.fwd, "dead", url, err, sizeof err), FERRY_OK);
    snprintf(url, sizeof url, "http://127.0.0.1:%u", f.fwd_b_port);
    ck_assert_int_eq(ferry_forward_add_parent(f.fwd, "live", url, err, sizeof err), FERRY_OK);
    ck_assert_int_eq(ferry_forward_add_route(f.fwd, "*", "dead,live", err, sizeof err), FERRY_OK);
    ck_assert_int_eq(ferry_engine_start(f.engine), FERRY_OK);
    static char out[16384], req[256];
    snprintf(req, sizeof req, "GET http://127.0.0.1:%u/ HTTP/1.1\r\nHost: x\r\n\r\n", b.port);
    for (int i = 0; i < 3; i++) { /* the first fails over; later ones skip the dead parent */
        exchange(f.fwd_port, req, out, sizeof out);
        ck_assert_msg(status_of(out) == 200, "request %d: %s", i, out);
    }
    ck_assert_int_eq(atomic_load(&f.b_requests), 3);
    fixture_free(&f);
    backend_stop(&b);
}
END_TEST

int main(void) {
    Suite *s = suite_create("forward_engine");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, forward_and_reverse_on_one_engine);
    tcase_add_test(tc, on_auth_hook_decides);
    tcase_add_test(tc, time_window_with_injected_clock);
    tcase_add_test(tc, parent_http_chosen_by_on_route);
    tcase_add_test(tc, parent_http_with_credentials);
    tcase_add_test(tc, parent_socks5_with_credentials);
    tcase_add_test(tc, dead_parent_fails_over);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
