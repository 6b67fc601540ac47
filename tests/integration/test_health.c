/* Backend pools through the public API over real loopback sockets: active health checks
 * (HTTP and TCP), all-down answers, run-time add/remove/drain/re-weight while requests
 * flow, and header hashing on live requests. */
#include <signal.h>
#include <stdlib.h>
#include <time.h>

#include "ferry.h"
#include "http_backend.h"

/* A dead backend refuses connects at once: ejection does not wait for the timeout, which
 * stays generous so that slow checks on a loaded machine still pass. */
enum { INTERVAL_MS = 50, TIMEOUT_MS = 2000, RISE = 2, FALL = 2, SLACK_MS = 400, MAXB = 4 };

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- what the proxy reports: engine log lines, and requests per backend port ---- */

typedef struct sink {
    pthread_mutex_t lock;
    char log[32768];
    size_t log_len;
    uint16_t ports[MAXB];
    int served[MAXB]; /* requests answered 2xx through each backend */
} sink;

static void sink_engine_log(void *ud, ferry_log_level level, const char *msg) {
    sink *k = ud;
    pthread_mutex_lock(&k->lock);
    int n = snprintf(k->log + k->log_len, sizeof k->log - k->log_len, "%d %s\n", (int)level, msg);
    if (n > 0 && (size_t)n < sizeof k->log - k->log_len) k->log_len += (size_t)n;
    pthread_mutex_unlock(&k->lock);
}

static void sink_record(void *ud, const ferry_log_record *r) {
    sink *k = ud;
    const char *colon = strrchr(r->target, ':');
    int port = colon ? atoi(colon + 1) : 0;
    pthread_mutex_lock(&k->lock);
    for (int i = 0; i < MAXB; i++)
        if (k->ports[i] && k->ports[i] == port && r->status / 100 == 2) k->served[i]++;
    pthread_mutex_unlock(&k->lock);
}

static const ferry_hook_ops sink_ops = {.on_log = sink_record};

/* The log so far, for failure messages. */
static const char *log_copy(sink *k) {
    static char copy[sizeof k->log];
    pthread_mutex_lock(&k->lock);
    memcpy(copy, k->log, sizeof copy);
    pthread_mutex_unlock(&k->lock);
    return copy;
}

static int log_has(sink *k, const char *level_and_text) {
    pthread_mutex_lock(&k->lock);
    int found = strstr(k->log, level_and_text) != NULL;
    pthread_mutex_unlock(&k->lock);
    return found;
}

static int served(sink *k, int i) {
    pthread_mutex_lock(&k->lock);
    int n = k->served[i];
    pthread_mutex_unlock(&k->lock);
    return n;
}

/* ---- backends that can die and come back on the same port ---- */

static http_backend backends[MAXB]; /* static: their connection threads may outlive a test */

static void backend_revive(http_backend *b) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(b->port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(listen(fd, 128), 0);
    b->fd = fd;
    atomic_store(&b->stop, 0);
    ck_assert_int_eq(pthread_create(&b->thread, NULL, backend_accept, b), 0);
}

/* ---- the proxy ---- */

typedef struct proxy {
    ferry_engine *engine;
    ferry_pool *pool;
    ferry_backend *b[MAXB];
    uint16_t port;
    sink sink;
} proxy;

/* The proxy, configured but not started: a test may change its pool first. */
static void proxy_build(proxy *p, ferry_protocol proto, const uint16_t *ports, int n,
                        const ferry_health_opts *health, ferry_balance balance, const char *key) {
    memset(p, 0, sizeof *p);
    pthread_mutex_init(&p->sink.lock, NULL);
    ferry_engine_opts eo;
    ferry_engine_opts_init(&eo);
    eo.workers = 2;
    eo.log = sink_engine_log;
    eo.log_user_data = &p->sink;
    ck_assert_int_eq(ferry_engine_new(&eo, &p->engine), FERRY_OK);
    ck_assert_int_eq(ferry_pool_new(p->engine, "web", &p->pool), FERRY_OK);
    ck_assert_int_eq(ferry_pool_set_down_time(p->pool, 0), FERRY_OK); /* active checks only */
    ck_assert_int_eq(ferry_pool_set_balancer(p->pool, balance, key), FERRY_OK);
    if (health) ck_assert_int_eq(ferry_pool_set_health_check(p->pool, health), FERRY_OK);
    for (int i = 0; i < n; i++) {
        char addr[32];
        snprintf(addr, sizeof addr, "127.0.0.1:%u", ports[i]);
        ck_assert_int_eq(ferry_pool_add(p->pool, addr, 1, &p->b[i]), FERRY_OK);
        p->sink.ports[i] = ports[i];
    }
    ferry_listener_opts lo;
    ferry_listener_opts_init(&lo);
    lo.address = "127.0.0.1:0";
    lo.protocol = proto;
    lo.direction = ferry_direction_reverse();
    lo.direction_data = p->pool;
    lo.hooks = (ferry_hooks){&sink_ops, &p->sink};
    lo.connect_timeout_ms = 3000; /* an all-down answer must not wait for this */
    ferry_listener *l;
    ck_assert_int_eq(ferry_engine_listen(p->engine, &lo, &l), FERRY_OK);
    p->port = ferry_listener_port(l);
}

static void proxy_start(proxy *p, ferry_protocol proto, const uint16_t *ports, int n,
                        const ferry_health_opts *health, ferry_balance balance, const char *key) {
    proxy_build(p, proto, ports, n, health, balance, key);
    ck_assert_int_eq(ferry_engine_start(p->engine), FERRY_OK);
}

static void proxy_free(proxy *p) {
    ferry_engine_free(p->engine);
    pthread_mutex_destroy(&p->sink.lock);
}

static void health_opts(ferry_health_opts *h, ferry_health_kind kind) {
    ferry_health_opts_init(h);
    h->kind = kind;
    h->path = "/healthz";
    h->interval_ms = INTERVAL_MS;
    h->timeout_ms = TIMEOUT_MS;
    h->rise = RISE;
    h->fall = FALL;
}

/* Poll until the backend's down state is `down`; the time it took, or -1. */
static int64_t wait_down(ferry_backend *b, int down, int limit_ms) {
    uint64_t start = now_ms();
    while (now_ms() - start < (uint64_t)limit_ms) {
        if (ferry_backend_is_down(b) == down) return (int64_t)(now_ms() - start);
        usleep(2000);
    }
    return -1;
}

static int get_status(uint16_t port, const char *extra_header) {
    char req[256], out[4096];
    snprintf(req, sizeof req, "GET /page HTTP/1.1\r\nHost: t\r\n%sConnection: close\r\n\r\n",
             extra_header ? extra_header : "");
    size_t n = exchange(port, req, out, sizeof out);
    if (n < 12 || strncmp(out, "HTTP/1.1 ", 9) != 0) return 0;
    return atoi(out + 9);
}

static void start_backends(int n, uint16_t *ports) {
    for (int i = 0; i < n; i++) {
        backend_start(&backends[i]);
        ports[i] = backends[i].port;
    }
}

static void stop_backends(int n) {
    for (int i = 0; i < n; i++)
        if (!atomic_load(&backends[i].stop)) backend_stop(&backends[i]);
}

/* ---- tests ---- */

START_TEST(dead_backend_is_ejected_then_returns) {
    signal(SIGPIPE, SIG_IGN);
    uint16_t ports[3];
    start_backends(3, ports);
    ferry_health_opts h;
    health_opts(&h, FERRY_HEALTH_HTTP);
    proxy p;
    proxy_start(&p, FERRY_PROTO_HTTP, ports, 3, &h, FERRY_BALANCE_ROUND_ROBIN, NULL);
    for (int k = 0; k < 30; k++) ck_assert_int_eq(get_status(p.port, NULL), 200);
    for (int i = 0; i < 3; i++) ck_assert_int_gt(served(&p.sink, i), 0);

    backend_stop(&backends[1]);
    int64_t took = wait_down(p.b[1], 1, 3000);
    ck_assert_int_ge(took, 0);
    ck_assert_int_le(took, INTERVAL_MS * FALL + SLACK_MS);
    char line[128];
    snprintf(line, sizeof line, "1 pool web: backend 127.0.0.1:%u is down", ports[1]);
    ck_assert_msg(log_has(&p.sink, line), "no warning: %s", log_copy(&p.sink));
    int before = served(&p.sink, 1);
    for (int k = 0; k < 30; k++) ck_assert_int_eq(get_status(p.port, NULL), 200);
    ck_assert_int_eq(served(&p.sink, 1), before); /* ejected: nothing reaches it */

    backend_revive(&backends[1]);
    took = wait_down(p.b[1], 0, 3000);
    ck_assert_int_ge(took, 0);
    ck_assert_int_le(took, INTERVAL_MS * RISE + SLACK_MS);
    snprintf(line, sizeof line, "2 pool web: backend 127.0.0.1:%u is up", ports[1]);
    ck_assert_msg(log_has(&p.sink, line), "no info line: %s", log_copy(&p.sink));
    for (int k = 0; k < 30; k++) ck_assert_int_eq(get_status(p.port, NULL), 200);
    ck_assert_int_gt(served(&p.sink, 1), before);
    proxy_free(&p);
    stop_backends(3);
}
END_TEST

START_TEST(all_down_answers_503_at_once) {
    signal(SIGPIPE, SIG_IGN);
    uint16_t ports[2];
    start_backends(2, ports);
    ferry_health_opts h;
    health_opts(&h, FERRY_HEALTH_HTTP);
    proxy p;
    proxy_start(&p, FERRY_PROTO_HTTP, ports, 2, &h, FERRY_BALANCE_LEAST_CONN, NULL);
    ck_assert_int_eq(get_status(p.port, NULL), 200);
    backend_stop(&backends[0]);
    backend_stop(&backends[1]);
    ck_assert_int_ge(wait_down(p.b[0], 1, 3000), 0);
    ck_assert_int_ge(wait_down(p.b[1], 1, 3000), 0);
    for (int k = 0; k < 5; k++) {
        uint64_t start = now_ms();
        ck_assert_int_eq(get_status(p.port, NULL), 503);
        ck_assert_uint_lt(now_ms() - start, 200); /* not the 3 s connect timeout */
    }
    proxy_free(&p);
}
END_TEST

/* Passive checks: 5xx answers in a row take a backend out for the down time. */
START_TEST(passive_checks_eject_a_backend_answering_5xx) {
    signal(SIGPIPE, SIG_IGN);
    uint16_t ports[2];
    start_backends(2, ports);
    proxy p;
    proxy_build(&p, FERRY_PROTO_HTTP, ports, 2, NULL, FERRY_BALANCE_ROUND_ROBIN, NULL);
    ck_assert_int_eq(ferry_pool_set_down_time(p.pool, 1000), FERRY_OK);
    ck_assert_int_eq(ferry_pool_set_passive_checks(p.pool, 3, FERRY_PASSIVE_5XX), FERRY_OK);
    ck_assert_int_eq(ferry_engine_start(p.engine), FERRY_OK);
    atomic_store(&backends[1].status, 503);
    int failed = 0;
    for (int k = 0; k < 6; k++) failed += get_status(p.port, NULL) == 503;
    ck_assert_int_eq(failed, 3); /* round-robin: every other request, until the third */
    ck_assert(ferry_backend_is_down(p.b[1]));
    char line[160];
    snprintf(line, sizeof line,
             "1 pool web: backend 127.0.0.1:%u skipped for 1000 ms after 3 5xx responses in a row",
             ports[1]);
    ck_assert_msg(log_has(&p.sink, line), "no warning: %s", log_copy(&p.sink));
    for (int k = 0; k < 20; k++) ck_assert_int_eq(get_status(p.port, NULL), 200);
    atomic_store(&backends[1].status, 200); /* mended: back after the down time */
    ck_assert_int_ge(wait_down(p.b[1], 0, 3000), 0);
    for (int k = 0; k < 10; k++) ck_assert_int_eq(get_status(p.port, NULL), 200);
    ck_assert_int_gt(served(&p.sink, 1), 0);
    proxy_free(&p);
    stop_backends(2);
}
END_TEST

/* Statuses outside the expected range fail the check. */
START_TEST(http_check_wants_a_status_in_range) {
    signal(SIGPIPE, SIG_IGN);
    uint16_t ports[1];
    start_backends(1, ports);
    ferry_health_opts h;
    health_opts(&h, FERRY_HEALTH_HTTP);
    h.status_min = 300; /* the backend answers 200 */
    h.status_max = 399;
    proxy p;
    proxy_start(&p, FERRY_PROTO_HTTP, ports, 1, &h, FERRY_BALANCE_ROUND_ROBIN, NULL);
    ck_assert_int_ge(wait_down(p.b[0], 1, 3000), 0);
    ck_assert_msg(log_has(&p.sink, "last: status 200"), "log: %s", log_copy(&p.sink));
    ck_assert_int_eq(get_status(p.port, NULL), 503);
    pthread_mutex_lock(&backends[0].lock);
    ck_assert_msg(strstr(backends[0].last_head, "GET /healthz HTTP/1.1\r\n") != NULL, "%s",
                  backends[0].last_head);
    pthread_mutex_unlock(&backends[0].lock);
    proxy_free(&p);
    stop_backends(1);
}
END_TEST

/* TCP checks in front of echo servers; with every backend down a client is closed at once. */
START_TEST(tcp_checks_and_immediate_close) {
    signal(SIGPIPE, SIG_IGN);
    static echo_server echo[2];
    uint16_t ports[2];
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(echo_start(&echo[i]), 0);
        ports[i] = echo[i].port;
    }
    ferry_health_opts h;
    health_opts(&h, FERRY_HEALTH_TCP);
    proxy p;
    proxy_start(&p, FERRY_PROTO_TCP, ports, 2, &h, FERRY_BALANCE_RANDOM2, NULL);
    /* checks connect without sending a byte */
    for (int i = 0; i < 100 && atomic_load(&echo[0].connections) < 2; i++) usleep(10000);
    ck_assert_int_ge(atomic_load(&echo[0].connections), 2);
    echo_stop(&echo[0]);
    int64_t took = wait_down(p.b[0], 1, 3000);
    ck_assert_int_ge(took, 0);
    ck_assert_int_le(took, INTERVAL_MS * FALL + SLACK_MS);
    ck_assert(!ferry_backend_is_down(p.b[1]));
    for (int k = 0; k < 10; k++) { /* every session reaches the live one */
        int fd = connect_loopback(p.port);
        ck_assert_int_ge(fd, 0);
        stream_result r;
        stream_echo(fd, 4096, (uint32_t)k + 1, 1, &r);
        ck_assert_int_eq(r.error, 0);
        ck_assert_uint_eq(r.received, 4096);
        close(fd);
    }
    echo_stop(&echo[1]);
    ck_assert_int_ge(wait_down(p.b[1], 1, 3000), 0);
    uint64_t start = now_ms();
    int fd = connect_loopback(p.port);
    ck_assert_int_ge(fd, 0);
    char c;
    ck_assert_int_le(recv(fd, &c, 1, 0), 0); /* closed, not left waiting */
    ck_assert_uint_lt(now_ms() - start, 200);
    close(fd);
    proxy_free(&p);
}
END_TEST

START_TEST(backend_added_at_run_time_gets_traffic) {
    signal(SIGPIPE, SIG_IGN);
    uint16_t ports[2];
    start_backends(2, ports);
    ferry_health_opts h;
    health_opts(&h, FERRY_HEALTH_HTTP);
    proxy p;
    proxy_start(&p, FERRY_PROTO_HTTP, ports, 1, &h, FERRY_BALANCE_ROUND_ROBIN, NULL);
    for (int k = 0; k < 4; k++) ck_assert_int_eq(get_status(p.port, NULL), 200);
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", ports[1]);
    ck_assert_int_eq(ferry_pool_add(p.pool, addr, 1, &p.b[1]), FERRY_OK);
    p.sink.ports[1] = ports[1]; /* before any request can name it */
    ck_assert_uint_eq(ferry_pool_size(p.pool), 2);
    for (int k = 0; k < 20; k++) ck_assert_int_eq(get_status(p.port, NULL), 200);
    ck_assert_int_ge(served(&p.sink, 1), 9); /* round-robin: about half */
    /* and it is health-checked: a check request arrives */
    for (int i = 0; i < 100; i++) {
        pthread_mutex_lock(&backends[1].lock);
        int checked = strstr(backends[1].last_head, "GET /healthz ") != NULL;
        pthread_mutex_unlock(&backends[1].lock);
        if (checked) break;
        ck_assert_int_lt(i, 99);
        usleep(10000);
    }
    proxy_free(&p);
    stop_backends(2);
}
END_TEST

typedef struct client_job {
    uint16_t port;
    atomic_int *stop;
    int ok, failed, last_status;
} client_job;

static void *client_loop(void *arg) {
    client_job *j = arg;
    while (!atomic_load(j->stop)) {
        int status = get_status(j->port, NULL);
        if (status == 200)
            j->ok++;
        else
            j->failed++, j->last_status = status;
    }
    return NULL;
}

START_TEST(remove_drain_and_reweight_lose_no_request) {
    signal(SIGPIPE, SIG_IGN);
    uint16_t ports[4];
    start_backends(4, ports);
    ferry_health_opts h;
    health_opts(&h, FERRY_HEALTH_HTTP);
    proxy p;
    proxy_start(&p, FERRY_PROTO_HTTP, ports, 3, &h, FERRY_BALANCE_LEAST_CONN, NULL);
    p.sink.ports[3] = ports[3];
    atomic_int stop = 0;
    client_job jobs[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (client_job){.port = p.port, .stop = &stop};
        ck_assert_int_eq(pthread_create(&t[i], NULL, client_loop, &jobs[i]), 0);
    }
    usleep(150000);
    ck_assert_int_eq(ferry_backend_set_draining(p.b[0], 1), FERRY_OK);
    usleep(100000);
    ck_assert_int_eq(ferry_pool_remove(p.pool, p.b[1]), FERRY_OK);
    ck_assert_int_eq(ferry_pool_add(p.pool, "127.0.0.1:0", 1, NULL), FERRY_EADDR);
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", ports[3]);
    ck_assert_int_eq(ferry_pool_add(p.pool, addr, 2, &p.b[3]), FERRY_OK);
    ck_assert_int_eq(ferry_backend_set_weight(p.b[2], 3), FERRY_OK);
    usleep(100000);
    /* in-flight requests to the drained and the removed backend have finished by now */
    for (int i = 0; i < 100 && (ferry_backend_active(p.b[0]) || ferry_backend_active(p.b[1])); i++)
        usleep(10000);
    ck_assert_uint_eq(ferry_backend_active(p.b[0]), 0);
    ck_assert_uint_eq(ferry_backend_active(p.b[1]), 0);
    int drained = served(&p.sink, 0), removed = served(&p.sink, 1), added = served(&p.sink, 3);
    int hits_removed = atomic_load(&backends[1].requests); /* requests and health checks */
    usleep(150000);
    atomic_store(&stop, 1);
    int ok = 0, failed = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        ok += jobs[i].ok;
        failed += jobs[i].failed;
    }
    ck_assert_msg(failed == 0, "%d failed (status %d); log: %s", failed, jobs[0].last_status,
                  log_copy(&p.sink));
    ck_assert_int_gt(ok, 40);
    ck_assert_int_eq(served(&p.sink, 0), drained); /* nothing new once drained */
    ck_assert_int_eq(served(&p.sink, 1), removed);
    ck_assert_int_gt(served(&p.sink, 3), added);
    ck_assert_int_gt(served(&p.sink, 2), 0);
    /* the removed backend is no longer even checked; its handle still reads */
    ck_assert_int_eq(atomic_load(&backends[1].requests), hits_removed);
    ck_assert_uint_eq(ferry_backend_active(p.b[1]), 0);
    proxy_free(&p);
    stop_backends(4);
}
END_TEST

/* The request's header reaches the balancer: each user sticks to one backend. */
START_TEST(hash_header_pins_users_to_backends) {
    signal(SIGPIPE, SIG_IGN);
    uint16_t ports[3];
    start_backends(3, ports);
    proxy p;
    proxy_start(&p, FERRY_PROTO_HTTP, ports, 3, NULL, FERRY_BALANCE_HASH_HEADER, "X-User");
    int used[3] = {0};
    for (int user = 0; user < 12; user++) {
        char header[64];
        snprintf(header, sizeof header, "X-User: user-%d\r\n", user);
        int before[3], where = -1;
        for (int i = 0; i < 3; i++) before[i] = served(&p.sink, i);
        for (int k = 0; k < 5; k++) ck_assert_int_eq(get_status(p.port, header), 200);
        for (int i = 0; i < 3; i++) {
            int got = served(&p.sink, i) - before[i];
            ck_assert(got == 0 || got == 5);
            if (got == 5) where = i;
        }
        ck_assert_int_ge(where, 0);
        used[where] = 1;
    }
    ck_assert_int_ge(used[0] + used[1] + used[2], 2);
    proxy_free(&p);
    stop_backends(3);
}
END_TEST

int main(void) {
    Suite *s = suite_create("health");
    TCase *tc = tcase_create("health");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, dead_backend_is_ejected_then_returns);
    tcase_add_test(tc, all_down_answers_503_at_once);
    tcase_add_test(tc, passive_checks_eject_a_backend_answering_5xx);
    tcase_add_test(tc, http_check_wants_a_status_in_range);
    tcase_add_test(tc, tcp_checks_and_immediate_close);
    tcase_add_test(tc, backend_added_at_run_time_gets_traffic);
    tcase_add_test(tc, remove_drain_and_reweight_lose_no_request);
    tcase_add_test(tc, hash_header_pins_users_to_backends);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
