/* The engine through its public API: TCP reverse proxying over real loopback sockets. */
#include <signal.h>
#include <stdlib.h>

#include "ferry.h"
#include "netutil.h"
#include "testutil.h"

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- a log collector, shared by the hooks below ---- */

typedef struct log_sink {
    pthread_mutex_t lock;
    int records, closes;
    int verdict_counts[5];
    uint64_t bytes_up, bytes_down;
    ferry_err last_error;
    unsigned last_attempts;
    int reject_all;
} log_sink;

static const char *const verdicts[] = {"relayed", "rejected", "no-upstream", "drained", "error"};

static void sink_log(void *ud, const ferry_log_record *r) {
    log_sink *k = ud;
    pthread_mutex_lock(&k->lock);
    k->records++;
    for (int i = 0; i < 5; i++)
        if (strcmp(r->verdict, verdicts[i]) == 0) k->verdict_counts[i]++;
    k->bytes_up += r->bytes_from_client;
    k->bytes_down += r->bytes_to_client;
    k->last_error = r->error;
    k->last_attempts = r->connect_attempts;
    pthread_mutex_unlock(&k->lock);
}

static void sink_close(void *ud, const ferry_session_info *s) {
    (void)s;
    log_sink *k = ud;
    pthread_mutex_lock(&k->lock);
    k->closes++;
    pthread_mutex_unlock(&k->lock);
}

static ferry_verdict sink_accept(void *ud, const ferry_session_info *s) {
    log_sink *k = ud;
    ck_assert_str_eq(s->client_addr, "127.0.0.1");
    ck_assert_int_eq(s->client_family, AF_INET);
    return k->reject_all ? FERRY_REJECT : FERRY_CONTINUE;
}

static const ferry_hook_ops sink_ops = {
    .on_accept = sink_accept, .on_close = sink_close, .on_log = sink_log};

static void wait_for_records(log_sink *k, int n) {
    for (int i = 0; i < 500; i++) {
        pthread_mutex_lock(&k->lock);
        int have = k->closes;
        pthread_mutex_unlock(&k->lock);
        if (have >= n) return;
        usleep(10000);
    }
}

/* ---- fixture: engine + pool ---- */

typedef struct proxy {
    ferry_engine *engine;
    ferry_pool *pool;
    ferry_listener *listener;
    uint16_t port;
    log_sink sink;
} proxy;

/* A proxy on 127.0.0.1:0 that takes over `previous`'s listening socket (NULL: binds). */
static void proxy_start_after(proxy *p, ferry_engine *previous, unsigned workers,
                              const uint16_t *backends, int nbackends,
                              unsigned connect_timeout_ms) {
    memset(p, 0, sizeof *p);
    pthread_mutex_init(&p->sink.lock, NULL);
    ferry_engine_opts eo;
    ferry_engine_opts_init(&eo);
    eo.workers = workers;
    ck_assert_int_eq(ferry_engine_new(&eo, &p->engine), FERRY_OK);
    if (previous) ck_assert_int_eq(ferry_engine_take_listeners(p->engine, previous), FERRY_OK);
    ck_assert_int_eq(ferry_pool_new(p->engine, "backends", &p->pool), FERRY_OK);
    for (int i = 0; i < nbackends; i++) {
        char addr[32];
        snprintf(addr, sizeof addr, "127.0.0.1:%u", backends[i]);
        ck_assert_int_eq(ferry_pool_add(p->pool, addr, 1, NULL), FERRY_OK);
    }
    ferry_listener_opts lo;
    ferry_listener_opts_init(&lo);
    lo.address = "127.0.0.1:0";
    lo.direction = ferry_direction_reverse();
    lo.direction_data = p->pool;
    lo.hooks = (ferry_hooks){&sink_ops, &p->sink};
    lo.connect_timeout_ms = connect_timeout_ms;
    ck_assert_int_eq(ferry_engine_listen(p->engine, &lo, &p->listener), FERRY_OK);
    p->port = ferry_listener_port(p->listener);
    ck_assert_uint_gt(p->port, 0);
    ck_assert_int_eq(ferry_engine_start(p->engine), FERRY_OK);
}

static void proxy_start(proxy *p, unsigned workers, const uint16_t *backends, int nbackends,
                        unsigned connect_timeout_ms) {
    proxy_start_after(p, NULL, workers, backends, nbackends, connect_timeout_ms);
}

static int sink_closes(log_sink *k) {
    pthread_mutex_lock(&k->lock);
    int n = k->closes;
    pthread_mutex_unlock(&k->lock);
    return n;
}

static void proxy_free(proxy *p) {
    ferry_engine_free(p->engine);
    pthread_mutex_destroy(&p->sink.lock);
}

/* ---- 32 parallel clients x 4 MiB ---- */

typedef struct client_job {
    uint16_t port;
    uint32_t seed;
    size_t bytes;
    stream_result result;
} client_job;

static void *client_main(void *arg) {
    client_job *j = arg;
    int fd = connect_loopback(j->port);
    if (fd < 0) {
        j->result.error = errno;
        return NULL;
    }
    stream_echo(fd, j->bytes, j->seed, 1, &j->result);
    close(fd);
    return NULL;
}

static void run_clients(uint16_t port, int n, size_t bytes) {
    client_job *jobs = calloc((size_t)n, sizeof *jobs);
    pthread_t *threads = calloc((size_t)n, sizeof *threads);
    for (int i = 0; i < n; i++) {
        jobs[i] = (client_job){.port = port, .seed = (uint32_t)i * 7919u + 1, .bytes = bytes};
        ck_assert_int_eq(pthread_create(&threads[i], NULL, client_main, &jobs[i]), 0);
    }
    for (int i = 0; i < n; i++) pthread_join(threads[i], NULL);
    for (int i = 0; i < n; i++) {
        ck_assert_msg(jobs[i].result.error == 0, "client %d: %s", i, strerror(jobs[i].result.error));
        ck_assert_uint_eq(jobs[i].result.sent, bytes);
        ck_assert_uint_eq(jobs[i].result.received, bytes);
        ck_assert_msg(jobs[i].result.sent_hash == jobs[i].result.recv_hash, "client %d: bytes differ", i);
    }
    free(jobs);
    free(threads);
}

START_TEST(parallel_clients_are_relayed_byte_exact_over_two_backends) {
    echo_server a, b;
    ck_assert_int_eq(echo_start(&a), 0);
    ck_assert_int_eq(echo_start(&b), 0);
    uint16_t backends[] = {a.port, b.port};
    proxy p;
    proxy_start(&p, 2, backends, 2, 2000);
    const size_t bytes = 4u << 20;
    run_clients(p.port, 32, bytes);
    wait_for_records(&p.sink, 32);
    ck_assert_int_eq(p.sink.records, 32);
    ck_assert_int_eq(p.sink.verdict_counts[0], 32);
    ck_assert_uint_eq(p.sink.bytes_up, 32 * (uint64_t)bytes);
    ck_assert_uint_eq(p.sink.bytes_down, 32 * (uint64_t)bytes);
    /* Round-robin: the two backends share the sessions evenly. */
    ck_assert_int_eq(atomic_load(&a.connections), 16);
    ck_assert_int_eq(atomic_load(&b.connections), 16);
    ck_assert_uint_eq(ferry_engine_sessions(p.engine), 0);
    proxy_free(&p);
    echo_stop(&a);
    echo_stop(&b);
}
END_TEST

START_TEST(a_dead_backend_is_skipped) {
    echo_server live;
    ck_assert_int_eq(echo_start(&live), 0);
    uint16_t backends[] = {dead_port(), live.port};
    proxy p;
    proxy_start(&p, 1, backends, 2, 2000);
    run_clients(p.port, 10, 1024);
    wait_for_records(&p.sink, 10);
    ck_assert_int_eq(p.sink.verdict_counts[0], 10);
    ck_assert_int_eq(atomic_load(&live.connections), 10);
    proxy_free(&p);
    echo_stop(&live);
}
END_TEST

START_TEST(all_backends_dead_closes_clients_promptly) {
    uint16_t backends[] = {dead_port(), dead_port(), dead_port()};
    const unsigned connect_timeout_ms = 1500;
    proxy p;
    proxy_start(&p, 1, backends, 3, connect_timeout_ms);
    for (int round = 0; round < 3; round++) {
        int fd = connect_loopback(p.port);
        ck_assert_int_ge(fd, 0);
        uint64_t t0 = now_ms();
        char c;
        ssize_t n = recv(fd, &c, 1, 0); /* EOF or reset, not data and not a hang */
        ck_assert_int_le(n, 0);
        ck_assert_uint_lt(now_ms() - t0, connect_timeout_ms);
        close(fd);
    }
    wait_for_records(&p.sink, 3);
    ck_assert_int_eq(p.sink.verdict_counts[2], 3);
    ck_assert_int_eq(p.sink.last_error, FERRY_ENOUPSTREAM);
    proxy_free(&p);
}
END_TEST

START_TEST(half_close_still_delivers_the_whole_reply) {
    echo_server e;
    ck_assert_int_eq(echo_start(&e), 0);
    uint16_t backends[] = {e.port};
    proxy p;
    proxy_start(&p, 1, backends, 1, 2000);
    int fd = connect_loopback(p.port);
    ck_assert_int_ge(fd, 0);
    /* Send everything, close our write side, only then read: the reply must still come. */
    static char msg[200000];
    for (size_t i = 0; i < sizeof msg; i++) msg[i] = (char)('a' + i % 26);
    for (size_t off = 0; off < sizeof msg;) {
        ssize_t w = send(fd, msg + off, sizeof msg - off, MSG_NOSIGNAL);
        ck_assert_int_gt(w, 0);
        off += (size_t)w;
    }
    ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
    static char got[sizeof msg];
    size_t have = 0;
    for (;;) {
        ssize_t n = recv(fd, got + have, sizeof got - have, 0);
        ck_assert_int_ge(n, 0);
        if (n == 0) break;
        have += (size_t)n;
    }
    ck_assert_uint_eq(have, sizeof msg);
    ck_assert_int_eq(memcmp(got, msg, sizeof msg), 0);
    close(fd);
    wait_for_records(&p.sink, 1);
    ck_assert_int_eq(p.sink.verdict_counts[0], 1);
    proxy_free(&p);
    echo_stop(&e);
}
END_TEST

START_TEST(on_accept_can_reject) {
    echo_server e;
    ck_assert_int_eq(echo_start(&e), 0);
    uint16_t backends[] = {e.port};
    proxy p;
    proxy_start(&p, 1, backends, 1, 2000);
    p.sink.reject_all = 1;
    int fd = connect_loopback(p.port);
    ck_assert_int_ge(fd, 0);
    char c;
    ck_assert_int_le(recv(fd, &c, 1, 0), 0);
    close(fd);
    wait_for_records(&p.sink, 1);
    ck_assert_int_eq(p.sink.verdict_counts[1], 1);
    ck_assert_int_eq(p.sink.last_error, FERRY_EREJECTED);
    ck_assert_int_eq(atomic_load(&e.connections), 0); /* nothing reached the backend */
    proxy_free(&p);
    echo_stop(&e);
}
END_TEST

/* ---- a user-written direction policy ---- */

typedef struct my_policy {
    uint16_t ports[2];
    const char *hosts[2];
    atomic_int picks, connected_ok, connected_failed;
} my_policy;

/* Sends odd session ids to the second target; fails over to the other one. */
static ferry_err my_pick(void *data, const ferry_session_info *s, unsigned attempt,
                         uintptr_t *state, ferry_target *t) {
    (void)state;
    my_policy *m = data;
    if (attempt >= 2) return FERRY_ENOUPSTREAM;
    atomic_fetch_add(&m->picks, 1);
    unsigned which = (unsigned)((s->id + attempt) % 2);
    snprintf(t->host, sizeof t->host, "%s", m->hosts[which]);
    t->port = m->ports[which];
    return FERRY_OK;
}

static void my_connect_result(void *data, const ferry_target *t, ferry_err result) {
    (void)t;
    my_policy *m = data;
    atomic_fetch_add(result == FERRY_OK ? &m->connected_ok : &m->connected_failed, 1);
}

static ferry_error_answer my_answer(void *data, const ferry_session_info *s, ferry_err err) {
    (void)data;
    (void)s;
    (void)err;
    return FERRY_ANSWER_RESET;
}

static const ferry_direction_ops my_direction = {
    .name = "test-policy", .pick = my_pick, .connect_result = my_connect_result,
    .answer_error = my_answer};

START_TEST(a_custom_direction_policy_routes_sessions) {
    echo_server e;
    ck_assert_int_eq(echo_start(&e), 0);
    /* One target is a name (goes through the async resolver), one a dead literal. */
    my_policy m = {.ports = {e.port, dead_port()}, .hosts = {"localhost", "127.0.0.1"}};
    ferry_engine *engine;
    ck_assert_int_eq(ferry_engine_new(NULL, &engine), FERRY_OK);
    ferry_listener_opts lo;
    ferry_listener_opts_init(&lo);
    lo.address = "127.0.0.1:0";
    lo.direction = &my_direction;
    lo.direction_data = &m;
    ferry_listener *l;
    ck_assert_int_eq(ferry_engine_listen(engine, &lo, &l), FERRY_OK);
    ck_assert_int_eq(ferry_engine_start(engine), FERRY_OK);
    run_clients(ferry_listener_port(l), 6, 50000);
    /* Every session ends up on the live target; odd ones after a failover. */
    ck_assert_int_eq(atomic_load(&e.connections), 6);
    ck_assert_int_eq(atomic_load(&m.connected_ok), 6);
    ck_assert_int_eq(atomic_load(&m.connected_failed), 3);
    ck_assert_int_eq(atomic_load(&m.picks), 9);
    ferry_engine_free(engine);
    echo_stop(&e);
}
END_TEST

START_TEST(policy_answer_reset_resets_the_client) {
    my_policy m = {.ports = {dead_port(), dead_port()}, .hosts = {"127.0.0.1", "127.0.0.1"}};
    ferry_engine *engine;
    ck_assert_int_eq(ferry_engine_new(NULL, &engine), FERRY_OK);
    ferry_listener_opts lo;
    ferry_listener_opts_init(&lo);
    lo.address = "127.0.0.1:0";
    lo.direction = &my_direction;
    lo.direction_data = &m;
    ferry_listener *l;
    ck_assert_int_eq(ferry_engine_listen(engine, &lo, &l), FERRY_OK);
    ck_assert_int_eq(ferry_engine_start(engine), FERRY_OK);
    int fd = connect_loopback(ferry_listener_port(l));
    char c;
    errno = 0;
    ck_assert_int_eq(recv(fd, &c, 1, 0), -1);
    ck_assert_int_eq(errno, ECONNRESET);
    close(fd);
    ferry_engine_free(engine);
}
END_TEST

/* ---- lifecycle ---- */

START_TEST(freeing_the_engine_returns_every_fd) {
    echo_server e;
    ck_assert_int_eq(echo_start(&e), 0);
    int before = count_open_fds();
    uint16_t backends[] = {e.port};
    proxy p;
    proxy_start(&p, 2, backends, 1, 2000);
    run_clients(p.port, 4, 300000);
    /* One session still open when the engine goes away. */
    int fd = connect_loopback(p.port);
    ck_assert_int_eq(send(fd, "x", 1, 0), 1);
    char c;
    ck_assert_int_eq(recv(fd, &c, 1, 0), 1);
    proxy_free(&p);
    close(fd);
    ck_assert_int_eq(count_open_fds(), before);
    echo_stop(&e);
}
END_TEST

START_TEST(stop_drains_then_closes_live_sessions) {
    echo_server e;
    ck_assert_int_eq(echo_start(&e), 0);
    uint16_t backends[] = {e.port};
    proxy p;
    proxy_start(&p, 1, backends, 1, 2000);
    int fd = connect_loopback(p.port);
    ck_assert_int_eq(send(fd, "x", 1, 0), 1);
    char c;
    ck_assert_int_eq(recv(fd, &c, 1, 0), 1);
    uint64_t t0 = now_ms();
    ck_assert_int_eq(ferry_engine_stop(p.engine, 300), FERRY_OK);
    /* New clients are refused at once; the live one keeps working during the drain. */
    usleep(50000);
    ck_assert_int_lt(connect_loopback(p.port), 0);
    ck_assert_int_eq(send(fd, "y", 1, 0), 1);
    ck_assert_int_eq(recv(fd, &c, 1, 0), 1);
    ck_assert_int_eq(c, 'y');
    ck_assert_int_eq(ferry_engine_wait(p.engine), FERRY_OK);
    uint64_t took = now_ms() - t0;
    ck_assert_uint_ge(took, 250);
    ck_assert_uint_lt(took, 3000);
    ck_assert_int_le(recv(fd, &c, 1, 0), 0); /* closed by the drain deadline */
    ck_assert_int_eq(p.sink.verdict_counts[3], 1);
    close(fd);
    proxy_free(&p);
    echo_stop(&e);
}
END_TEST

START_TEST(listening_on_a_port_in_use_fails_cleanly) {
    uint16_t port = 0;
    int fd = listen_loopback(&port);
    ck_assert_int_ge(fd, 0);
    ferry_engine *engine;
    ck_assert_int_eq(ferry_engine_new(NULL, &engine), FERRY_OK);
    ferry_listener_opts lo;
    ferry_listener_opts_init(&lo);
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", port);
    lo.address = addr;
    lo.direction = ferry_direction_reverse();
    ck_assert_int_eq(ferry_engine_listen(engine, &lo, NULL), FERRY_EADDRINUSE);
    lo.address = "127.0.0.1";
    ck_assert_int_eq(ferry_engine_listen(engine, &lo, NULL), FERRY_EADDR);
    lo.address = "localhost:0"; /* listeners take IP literals only */
    ck_assert_int_eq(ferry_engine_listen(engine, &lo, NULL), FERRY_EADDR);
    ferry_engine_free(engine);
    close(fd);
    ferry_engine_free(NULL);
}
END_TEST

START_TEST(engines_are_independent) {
    echo_server e;
    ck_assert_int_eq(echo_start(&e), 0);
    uint16_t backends[] = {e.port};
    proxy p1, p2;
    proxy_start(&p1, 1, backends, 1, 2000);
    proxy_start(&p2, 1, backends, 1, 2000);
    run_clients(p1.port, 2, 10000);
    proxy_free(&p1); /* the other engine keeps serving */
    run_clients(p2.port, 2, 10000);
    proxy_free(&p2);
    echo_stop(&e);
}
END_TEST

/* ---- reload: a successor engine takes the listening socket over ---- */

typedef struct hammer {
    uint16_t port;
    atomic_int stop;
    int done, failed, first_errno;
} hammer;

/* Short connections one after another, each echoing a few bytes; bounded in count. */
static void *hammer_main(void *arg) {
    hammer *h = arg;
    for (int i = 0; i < 20000 && !atomic_load(&h->stop); i++) {
        int fd = connect_loopback(h->port);
        char buf[8];
        int ok = fd >= 0 && send(fd, "ping", 4, 0) == 4 && recv(fd, buf, 4, MSG_WAITALL) == 4 &&
                 memcmp(buf, "ping", 4) == 0;
        if (!ok && !h->failed++) h->first_errno = errno;
        h->done++;
        if (fd >= 0) close(fd);
    }
    return NULL;
}

START_TEST(a_successor_engine_takes_the_listener_over_without_losing_a_client) {
    echo_server e;
    ck_assert_int_eq(echo_start(&e), 0);
    uint16_t backends[] = {e.port};
    proxy old, next;
    proxy_start(&old, 2, backends, 1, 2000);
    int live = connect_loopback(old.port); /* a session of the old engine, kept open */
    char c;
    ck_assert_int_eq(send(live, "a", 1, 0), 1);
    ck_assert_int_eq(recv(live, &c, 1, 0), 1);

    hammer h = {.port = old.port};
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, hammer_main, &h), 0);
    usleep(100000);
    proxy_start_after(&next, old.engine, 2, backends, 1, 2000);
    ck_assert_uint_eq(next.port, old.port); /* the same socket, not a new bind */
    ck_assert_int_eq(ferry_engine_stop(old.engine, 5000), FERRY_OK);
    usleep(200000);
    /* The old engine's live session still works; new clients reach the successor. */
    ck_assert_int_eq(send(live, "b", 1, 0), 1);
    ck_assert_int_eq(recv(live, &c, 1, 0), 1);
    ck_assert_int_eq(c, 'b');
    int served_by_next = sink_closes(&next.sink);
    usleep(100000);
    ck_assert_int_gt(sink_closes(&next.sink), served_by_next);
    close(live);
    ck_assert_int_eq(ferry_engine_wait(old.engine), FERRY_OK);
    proxy_free(&old); /* closes its copy of the socket only */
    usleep(100000);
    atomic_store(&h.stop, 1);
    pthread_join(t, NULL);
    ck_assert_msg(h.failed == 0, "%d of %d clients failed (first: %s)", h.failed, h.done,
                  strerror(h.first_errno));
    ck_assert_int_gt(h.done, 50);
    int fd = connect_loopback(next.port);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(send(fd, "z", 1, 0), 1);
    ck_assert_int_eq(recv(fd, &c, 1, 0), 1);
    close(fd);
    proxy_free(&next);
    echo_stop(&e);
}
END_TEST

START_TEST(a_failed_successor_leaves_the_running_engine_as_it_was) {
    echo_server e;
    ck_assert_int_eq(echo_start(&e), 0);
    uint16_t backends[] = {e.port};
    proxy p;
    proxy_start(&p, 1, backends, 1, 2000);
    ck_assert_int_eq(ferry_engine_take_listeners(p.engine, p.engine), FERRY_EINVAL);
    ck_assert_int_eq(ferry_engine_take_listeners(NULL, p.engine), FERRY_EINVAL);
    ck_assert_int_eq(ferry_engine_take_listeners(NULL, NULL), FERRY_EINVAL);
    ferry_engine *started = p.engine;
    ferry_engine *other;
    ck_assert_int_eq(ferry_engine_new(NULL, &other), FERRY_OK);
    ck_assert_int_eq(ferry_engine_take_listeners(started, other), FERRY_ESTATE);
    /* A successor that shares the socket, then is given up before it starts. */
    ck_assert_int_eq(ferry_engine_take_listeners(other, p.engine), FERRY_OK);
    ferry_listener_opts lo;
    ferry_listener_opts_init(&lo);
    lo.address = "127.0.0.1:0";
    lo.direction = ferry_direction_reverse();
    lo.direction_data = p.pool;
    ferry_listener *l;
    ck_assert_int_eq(ferry_engine_listen(other, &lo, &l), FERRY_OK);
    ck_assert_uint_eq(ferry_listener_port(l), p.port);
    ck_assert_int_eq(ferry_engine_listen(other, &lo, &l), FERRY_OK); /* nothing left: binds */
    ck_assert_uint_ne(ferry_listener_port(l), p.port);
    ferry_engine_free(other);
    /* A successor that gives the predecessor up (NULL) binds its own sockets. */
    ck_assert_int_eq(ferry_engine_new(NULL, &other), FERRY_OK);
    ck_assert_int_eq(ferry_engine_take_listeners(other, p.engine), FERRY_OK);
    ck_assert_int_eq(ferry_engine_take_listeners(other, NULL), FERRY_OK);
    ck_assert_int_eq(ferry_engine_listen(other, &lo, &l), FERRY_OK);
    ck_assert_uint_ne(ferry_listener_port(l), p.port);
    ferry_engine_free(other);
    run_clients(p.port, 2, 10000);
    /* ... and a later successor can still take it. */
    proxy next;
    proxy_start_after(&next, p.engine, 1, backends, 1, 2000);
    ck_assert_uint_eq(next.port, p.port);
    proxy_free(&p);
    run_clients(next.port, 2, 10000);
    proxy_free(&next);
    echo_stop(&e);
}
END_TEST

/* ---- the allocator hook ---- */

typedef struct counting_alloc {
    atomic_long live, total;
    atomic_long fail_after; /* allocations left before failing; -1: never fail */
} counting_alloc;

static int should_fail(counting_alloc *c) {
    if (atomic_load(&c->fail_after) < 0) return 0;
    return atomic_fetch_sub(&c->fail_after, 1) <= 0;
}
static void *ca_malloc(void *ud, size_t n) {
    counting_alloc *c = ud;
    if (should_fail(c)) return NULL;
    void *p = malloc(n);
    if (p) {
        atomic_fetch_add(&c->live, 1);
        atomic_fetch_add(&c->total, 1);
    }
    return p;
}
static void *ca_realloc(void *ud, void *old, size_t n) {
    counting_alloc *c = ud;
    if (should_fail(c)) return NULL;
    void *p = realloc(old, n);
    if (p && !old) {
        atomic_fetch_add(&c->live, 1);
        atomic_fetch_add(&c->total, 1);
    }
    return p;
}
static void ca_free(void *ud, void *p) {
    counting_alloc *c = ud;
    if (p) atomic_fetch_sub(&c->live, 1);
    free(p);
}

START_TEST(the_engine_allocates_only_through_its_hook_and_frees_everything) {
    echo_server e;
    ck_assert_int_eq(echo_start(&e), 0);
    counting_alloc c = {.fail_after = -1};
    ferry_allocator a = {ca_malloc, ca_realloc, ca_free, &c};
    ferry_engine_opts eo;
    ferry_engine_opts_init(&eo);
    eo.allocator = &a;
    eo.workers = 2;
    ferry_engine *engine;
    ck_assert_int_eq(ferry_engine_new(&eo, &engine), FERRY_OK);
    ferry_pool *pool;
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", e.port);
    ck_assert_int_eq(ferry_pool_new(engine, "p", &pool), FERRY_OK);
    ck_assert_int_eq(ferry_pool_add(pool, addr, 1, NULL), FERRY_OK);
    ferry_listener_opts lo;
    ferry_listener_opts_init(&lo);
    lo.address = "127.0.0.1:0";
    lo.direction = ferry_direction_reverse();
    lo.direction_data = pool;
    ferry_listener *l;
    ck_assert_int_eq(ferry_engine_listen(engine, &lo, &l), FERRY_OK);
    ck_assert_int_eq(ferry_engine_start(engine), FERRY_OK);
    long before = atomic_load(&c.total);
    run_clients(ferry_listener_port(l), 4, 100000);
    ck_assert_int_gt(atomic_load(&c.total), before); /* sessions used the hook */
    ferry_engine_free(engine);
    ck_assert_int_eq(atomic_load(&c.live), 0);
    echo_stop(&e);
}
END_TEST

START_TEST(out_of_memory_during_setup_is_an_error_not_a_crash) {
    int fds = count_open_fds();
    int succeeded = 0;
    for (long k = 0; k < 200 && !succeeded; k++) {
        counting_alloc c = {.fail_after = k};
        ferry_allocator a = {ca_malloc, ca_realloc, ca_free, &c};
        ferry_engine_opts eo;
        ferry_engine_opts_init(&eo);
        eo.allocator = &a;
        eo.workers = 2;
        ferry_engine *engine = NULL;
        ferry_err err = ferry_engine_new(&eo, &engine);
        if (err == FERRY_OK) {
            ferry_pool *pool = NULL;
            ferry_listener_opts lo;
            ferry_listener_opts_init(&lo);
            lo.address = "127.0.0.1:0";
            lo.direction = ferry_direction_reverse();
            err = ferry_pool_new(engine, "p", &pool);
            if (!err) err = ferry_pool_add(pool, "127.0.0.1:9", 1, NULL);
            lo.direction_data = pool;
            if (!err) err = ferry_engine_listen(engine, &lo, NULL);
            succeeded = err == FERRY_OK;
            ferry_engine_free(engine);
        }
        if (!succeeded) ck_assert_int_eq(err, FERRY_ENOMEM);
        ck_assert_int_eq(atomic_load(&c.live), 0);
        ck_assert_int_eq(count_open_fds(), fds);
    }
    ck_assert(succeeded);
}
END_TEST

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    Suite *s = suite_create("engine_tcp");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, parallel_clients_are_relayed_byte_exact_over_two_backends);
    tcase_add_test(tc, a_dead_backend_is_skipped);
    tcase_add_test(tc, all_backends_dead_closes_clients_promptly);
    tcase_add_test(tc, half_close_still_delivers_the_whole_reply);
    tcase_add_test(tc, on_accept_can_reject);
    tcase_add_test(tc, a_custom_direction_policy_routes_sessions);
    tcase_add_test(tc, policy_answer_reset_resets_the_client);
    tcase_add_test(tc, freeing_the_engine_returns_every_fd);
    tcase_add_test(tc, stop_drains_then_closes_live_sessions);
    tcase_add_test(tc, listening_on_a_port_in_use_fails_cleanly);
    tcase_add_test(tc, engines_are_independent);
    tcase_add_test(tc, a_successor_engine_takes_the_listener_over_without_losing_a_client);
    tcase_add_test(tc, a_failed_successor_leaves_the_running_engine_as_it_was);
    tcase_add_test(tc, the_engine_allocates_only_through_its_hook_and_frees_everything);
    tcase_add_test(tc, out_of_memory_during_setup_is_an_error_not_a_crash);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
