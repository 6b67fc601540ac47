#include <arpa/inet.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "loop.h"
#include "resolver.h"
#include "testutil.h"

/* ---- counting allocator: proves no leaks and injects OOM ---- */

typedef struct counting {
    pthread_mutex_t mu;
    long live;     /* outstanding blocks */
    long skip;     /* once failures are armed, let this many succeed first */
    long fail;     /* then fail this many */
} counting;

static int should_fail(counting *c) {
    pthread_mutex_lock(&c->mu);
    int f = 0;
    if (c->fail > 0) {
        if (c->skip > 0)
            c->skip--;
        else
            c->fail--, f = 1;
    }
    pthread_mutex_unlock(&c->mu);
    return f;
}

static void adjust_live(counting *c, long d) {
    pthread_mutex_lock(&c->mu);
    c->live += d;
    pthread_mutex_unlock(&c->mu);
}

static void *count_malloc(void *ud, size_t n) {
    counting *c = ud;
    if (should_fail(c)) return NULL;
    void *p = malloc(n);
    if (p) adjust_live(c, 1);
    return p;
}
static void *count_realloc(void *ud, void *p, size_t n) {
    counting *c = ud;
    if (should_fail(c)) return NULL;
    void *q = realloc(p, n);
    if (q && !p) adjust_live(c, 1);
    return q;
}
static void count_free(void *ud, void *p) {
    counting *c = ud;
    if (p) adjust_live(c, -1);
    free(p);
}

static ferry_allocator counting_allocator(counting *c) {
    *c = (counting){.live = 0};
    pthread_mutex_init(&c->mu, NULL);
    return (ferry_allocator){count_malloc, count_realloc, count_free, c};
}

static void arm_failures(counting *c, long skip, long fail) {
    pthread_mutex_lock(&c->mu);
    c->skip = skip;
    c->fail = fail;
    pthread_mutex_unlock(&c->mu);
}

static long live_blocks(counting *c) {
    pthread_mutex_lock(&c->mu);
    long n = c->live;
    pthread_mutex_unlock(&c->mu);
    return n;
}

static long failures_left(counting *c) {
    pthread_mutex_lock(&c->mu);
    long n = c->fail;
    pthread_mutex_unlock(&c->mu);
    return n;
}

/* ---- fake getaddrinfo: "good*" -> 127.0.0.1, "missing*" -> EAI_NONAME, "block*" waits for
 * the gate, then answers 127.0.0.1. Statics are reset by every test (CK_FORK=no). ---- */

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int open;    /* gate released */
    int blocked; /* calls currently waiting at the gate */
    atomic_int calls;
    atomic_int good_calls;
} fake = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0};

static void fake_reset(void) {
    pthread_mutex_lock(&fake.mu);
    fake.open = 0;
    fake.blocked = 0;
    pthread_mutex_unlock(&fake.mu);
    atomic_store(&fake.calls, 0);
    atomic_store(&fake.good_calls, 0);
}

static void gate_release(void) {
    pthread_mutex_lock(&fake.mu);
    fake.open = 1;
    pthread_cond_broadcast(&fake.cv);
    pthread_mutex_unlock(&fake.mu);
}

/* Bounded wait until `want` calls sit at the gate. */
static int gate_wait_blocked(int want) {
    int ok = 0;
    for (int i = 0; i < 500 && !ok; i++) {
        pthread_mutex_lock(&fake.mu);
        ok = fake.blocked >= want;
        pthread_mutex_unlock(&fake.mu);
        if (!ok) usleep(10 * 1000);
    }
    return ok;
}

static int fake_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                            struct addrinfo **res) {
    (void)hints;
    atomic_fetch_add(&fake.calls, 1);
    if (strncmp(node, "missing", 7) == 0) return EAI_NONAME;
    if (strncmp(node, "block", 5) == 0) {
        pthread_mutex_lock(&fake.mu);
        fake.blocked++;
        pthread_cond_broadcast(&fake.cv);
        while (!fake.open) pthread_cond_wait(&fake.cv, &fake.mu);
        fake.blocked--;
        pthread_mutex_unlock(&fake.mu);
    } else if (strncmp(node, "good", 4) == 0) {
        atomic_fetch_add(&fake.good_calls, 1);
    } else {
        return EAI_NONAME;
    }
    struct {
        struct addrinfo ai;
        struct sockaddr_in sin;
    } *blk = calloc(1, sizeof *blk);
    if (!blk) return EAI_MEMORY;
    blk->sin.sin_family = AF_INET;
    blk->sin.sin_port = htons((uint16_t)atoi(service));
    blk->sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    blk->ai.ai_family = AF_INET;
    blk->ai.ai_socktype = SOCK_STREAM;
    blk->ai.ai_addrlen = sizeof blk->sin;
    blk->ai.ai_addr = (struct sockaddr *)&blk->sin;
    *res = &blk->ai;
    return 0;
}

static void fake_freeaddrinfo(struct addrinfo *res) { free(res); }

/* ---- fixtures ---- */

/* Long enough for a hit under sanitizers or valgrind, short enough to wait out. */
enum { SHORT_TTL_MS = 250 };

typedef struct result_log {
    int calls;
    ferry_err result;
    ferry__addrs addrs;
    int on_loop_thread;
} result_log;

static pthread_t loop_thread;

static void on_resolved(void *ud, ferry_err result, const ferry__addrs *addrs) {
    result_log *log = ud;
    log->calls++;
    log->result = result;
    if (result == FERRY_OK) log->addrs = *addrs;
    log->on_loop_thread = pthread_equal(pthread_self(), loop_thread);
}

static void pump_until(ferry__loop *loop, const int *calls, int want) {
    for (int i = 0; i < 500 && *calls < want; i++) ferry__loop_run_once(loop, 10);
}

static ferry__loop *new_loop(const ferry_allocator *a) {
    ferry__loop *loop = ferry__loop_new(a, FERRY_POLLER_DEFAULT);
    ck_assert_ptr_nonnull(loop);
    loop_thread = pthread_self();
    return loop;
}

static ferry__resolver *new_fake_resolver(const ferry_allocator *a, unsigned threads,
                                          unsigned ttl, unsigned negative_ttl) {
    fake_reset();
    ferry__resolver_opts o = {.threads = threads, .ttl_ms = ttl, .negative_ttl_ms = negative_ttl,
                              .getaddrinfo = fake_getaddrinfo,
                              .freeaddrinfo = fake_freeaddrinfo};
    ferry__resolver *r = ferry__resolver_new(a, &o);
    ck_assert_ptr_nonnull(r);
    return r;
}

/* Starts an asynchronous lookup and asserts it really is asynchronous. */
static ferry__resolve_req *start(ferry__resolver *r, ferry__loop *loop, const char *host,
                                 uint16_t port, result_log *log) {
    ferry__resolve_req *req = NULL;
    ferry__addrs addrs;
    ck_assert_int_eq(ferry__resolve(r, loop, host, port, on_resolved, log, &req, &addrs), FERRY_OK);
    ck_assert_ptr_nonnull(req);
    return req;
}

static int is_loopback(const ferry__sockaddr *a) {
    if (a->sa.sa_family == AF_INET) return (ntohl(a->in.sin_addr.s_addr) >> 24) == 127;
    if (a->sa.sa_family == AF_INET6) return IN6_IS_ADDR_LOOPBACK(&a->in6.sin6_addr);
    return 0;
}

/* ---- success ---- */

START_TEST(localhost_resolves_asynchronously_on_the_loop_thread) {
    counting c;
    ferry_allocator a = counting_allocator(&c);
    ferry__loop *loop = new_loop(&a);
    ferry__resolver *r = ferry__resolver_new(&a, NULL);
    ck_assert_ptr_nonnull(r);
    result_log log = {0};
    start(r, loop, "localhost", 8080, &log);
    pump_until(loop, &log.calls, 1);
    ck_assert_int_eq(log.calls, 1);
    ck_assert_int_eq(log.result, FERRY_OK);
    ck_assert(log.on_loop_thread);
    ck_assert_uint_ge(log.addrs.count, 1);
    for (unsigned i = 0; i < log.addrs.count; i++) {
        ck_assert(is_loopback(&log.addrs.addr[i]));
        ck_assert_uint_eq(ferry__addr_port(&log.addrs.addr[i]), 8080);
    }
    ck_assert_uint_eq(ferry__resolver_lookups(r), 1);
    ferry__resolver_free(r);
    ferry__loop_free(loop);
    ck_assert_int_eq(live_blocks(&c), 0);
}
END_TEST

START_TEST(ip_literals_answer_synchronously) {
    ferry_allocator a;
    ferry__allocator_init(&a, NULL);
    ferry__loop *loop = new_loop(&a);
    ferry__resolver *r = ferry__resolver_new(NULL, NULL); /* NULL: libc allocator, defaults */
    ck_assert_ptr_nonnull(r);
    const char *hosts[] = {"127.0.0.1", "::1"};
    for (int k = 0; k < 2; k++) {
        result_log log = {0};
        ferry__resolve_req *req = (ferry__resolve_req *)&log; /* must be cleared */
        ferry__addrs addrs = {0};
        ck_assert_int_eq(ferry__resolve(r, loop, hosts[k], 443, on_resolved, &log, &req, &addrs),
                         FERRY_OK);
        ck_assert_ptr_null(req);
        ck_assert_uint_eq(addrs.count, 1);
        ck_assert(is_loopback(&addrs.addr[0]));
        ck_assert_int_eq(addrs.addr[0].sa.sa_family, k == 0 ? AF_INET : AF_INET6);
        ck_assert_uint_eq(ferry__addr_port(&addrs.addr[0]), 443);
        ferry__loop_run_once(loop, 0);
        ck_assert_int_eq(log.calls, 0);
    }
    ck_assert_uint_eq(ferry__resolver_lookups(r), 0);
    ferry__resolver_free(r);
    ferry__loop_free(loop);
}
END_TEST

START_TEST(empty_or_overlong_hosts_fail_synchronously) {
    ferry_allocator a;
    ferry__allocator_init(&a, NULL);
    ferry__loop *loop = new_loop(&a);
    ferry__resolver *r = new_fake_resolver(&a, 1, 1000, 1000);
    char longest[257];
    memset(longest, 'o', sizeof longest - 1);
    memcpy(longest, "good", 4); /* the fake answers "good*" */
    longest[256] = '\0';
    ferry__resolve_req *req = NULL;
    ferry__addrs addrs;
    result_log log = {0};
    ck_assert_int_eq(ferry__resolve(r, loop, "", 80, on_resolved, &log, &req, &addrs),
                     FERRY_ERESOLVE);
    ck_assert_ptr_null(req);
    ck_assert_int_eq(ferry__resolve(r, loop, longest, 80, on_resolved, &log, &req, &addrs),
                     FERRY_ERESOLVE);
    ck_assert_ptr_null(req);
    longest[255] = '\0'; /* exactly 255 is allowed */
    start(r, loop, longest, 80, &log);
    pump_until(loop, &log.calls, 1);
    ck_assert_int_eq(log.result, FERRY_OK);
    ck_assert_uint_eq(ferry__resolver_lookups(r), 1);
    ferry__resolver_free(r);
    ferry__loop_free(loop);
}
END_TEST

/* ---- failure and negative cache ---- */

START_TEST(failures_are_delivered_and_negatively_cached) {
    counting c;
    ferry_allocator a = counting_allocator(&c);
    ferry__loop *loop = new_loop(&a);
    ferry__resolver *r = new_fake_resolver(&a, 2, 1000, SHORT_TTL_MS);
    result_log log = {0};
    start(r, loop, "missing.test", 80, &log);
    pump_until(loop, &log.calls, 1);
    ck_assert_int_eq(log.calls, 1);
    ck_assert_int_eq(log.result, FERRY_ERESOLVE);
    ck_assert(log.on_loop_thread);
    ck_assert_int_eq(atomic_load(&fake.calls), 1);

    ferry__resolve_req *req = NULL;
    ferry__addrs addrs;
    ck_assert_int_eq(ferry__resolve(r, loop, "MISSING.test", 80, on_resolved, &log, &req, &addrs),
                     FERRY_ERESOLVE);
    ck_assert_ptr_null(req);
    ck_assert_int_eq(atomic_load(&fake.calls), 1);
    ck_assert_uint_eq(ferry__resolver_lookups(r), 1);

    usleep((SHORT_TTL_MS + 100) * 1000); /* past negative_ttl */
    start(r, loop, "missing.test", 80, &log);
    pump_until(loop, &log.calls, 2);
    ck_assert_int_eq(log.calls, 2);
    ck_assert_int_eq(log.result, FERRY_ERESOLVE);
    ck_assert_int_eq(atomic_load(&fake.calls), 2);
    ck_assert_uint_eq(ferry__resolver_lookups(r), 2);
    ferry__resolver_free(r);
    ferry__loop_free(loop);
    ck_assert_int_eq(live_blocks(&c), 0);
}
END_TEST

/* ---- positive cache ---- */

START_TEST(cache_hits_are_synchronous_until_the_ttl_expires) {
    counting c;
    ferry_allocator a = counting_allocator(&c);
    ferry__loop *loop = new_loop(&a);
    ferry__resolver *r = new_fake_resolver(&a, 2, SHORT_TTL_MS, SHORT_TTL_MS);
    result_log log = {0};
    start(r, loop, "good.test", 80, &log);
    pump_until(loop, &log.calls, 1);
    ck_assert_int_eq(log.result, FERRY_OK);
    ck_assert_uint_eq(ferry__resolver_lookups(r), 1);

    /* Same name (any case) and port: answered now, no new lookup. */
    ferry__resolve_req *req = NULL;
    ferry__addrs addrs = {0};
    ck_assert_int_eq(ferry__resolve(r, loop, "Good.TEST", 80, on_resolved, &log, &req, &addrs),
                     FERRY_OK);
    ck_assert_ptr_null(req);
    ck_assert_uint_eq(addrs.count, 1);
    ck_assert_mem_eq(&addrs.addr[0], &log.addrs.addr[0], sizeof addrs.addr[0]);
    ck_assert_uint_eq(ferry__resolver_lookups(r), 1);

    /* Another port is another key. */
    start(r, loop, "good.test", 81, &log);
    pump_until(loop, &log.calls, 2);
    ck_assert_uint_eq(ferry__addr_port(&log.addrs.addr[0]), 81);
    ck_assert_uint_eq(ferry__resolver_lookups(r), 2);

    usleep((SHORT_TTL_MS + 100) * 1000); /* past ttl */
    start(r, loop, "good.test", 80, &log);
    pump_until(loop, &log.calls, 3);
    ck_assert_int_eq(log.calls, 3);
    ck_assert_int_eq(log.result, FERRY_OK);
    ck_assert_uint_eq(ferry__resolver_lookups(r), 3);
    ck_assert_int_eq(atomic_load(&fake.good_calls), 3);
    ferry__resolver_free(r);
    ferry__loop_free(loop);
    ck_assert_int_eq(live_blocks(&c), 0);
}
END_TEST

START_TEST(ttl_zero_disables_caching) {
    ferry_allocator a;
    ferry__allocator_init(&a, NULL);
    ferry__loop *loop = new_loop(&a);
    ferry__resolver *r = new_fake_resolver(&a, 2, 0, 0);
    result_log log = {0};
    for (int k = 1; k <= 3; k++) {
        start(r, loop, k % 2 ? "good.test" : "missing.test", 80, &log);
        pump_until(loop, &log.calls, k);
        ck_assert_int_eq(log.calls, k);
        ck_assert_uint_eq(ferry__resolver_lookups(r), (uint64_t)k);
    }
    start(r, loop, "missing.test", 80, &log);
    pump_until(loop, &log.calls, 4);
    ck_assert_uint_eq(ferry__resolver_lookups(r), 4);
    ferry__resolver_free(r);
    ferry__loop_free(loop);
}
END_TEST

START_TEST(a_full_cache_evicts_instead_of_growing) {
    counting c;
    ferry_allocator a = counting_allocator(&c);
    ferry__loop *loop = new_loop(&a);
    fake_reset();
    ferry__resolver_opts o = {.threads = 2, .ttl_ms = 10000, .negative_ttl_ms = 10000,
                              .cache_max = 4, .getaddrinfo = fake_getaddrinfo,
                              .freeaddrinfo = fake_freeaddrinfo};
    ferry__resolver *r = ferry__resolver_new(&a, &o);
    ck_assert_ptr_nonnull(r);
    result_log log = {0};
    for (int k = 0; k < 20; k++) {
        start(r, loop, "good.test", (uint16_t)(1000 + k), &log);
        pump_until(loop, &log.calls, k + 1);
        ck_assert_int_eq(log.calls, k + 1);
    }
    long with_cache = live_blocks(&c);
    /* The four newest are cached, the oldest are gone. */
    ferry__resolve_req *req = NULL;
    ferry__addrs addrs;
    ck_assert_int_eq(ferry__resolve(r, loop, "good.test", 1019, on_resolved, &log, &req, &addrs),
                     FERRY_OK);
    ck_assert_ptr_null(req);
    start(r, loop, "good.test", 1000, &log);
    pump_until(loop, &log.calls, 21);
    ck_assert_int_le(live_blocks(&c), with_cache);
    ferry__resolver_free(r);
    ferry__loop_free(loop);
    ck_assert_int_eq(live_blocks(&c), 0);
}
END_TEST

/* ---- cancel ---- */

START_TEST(canceling_a_running_lookup_suppresses_the_callback) {
    counting c;
    ferry_allocator a = counting_allocator(&c);
    ferry__loop *loop = new_loop(&a);
    ferry__resolver *r = new_fake_resolver(&a, 1, 0, 0);
    result_log canceled = {0}, after = {0};
    ferry__resolve_req *req = start(r, loop, "block.test", 80, &canceled);
    ck_assert(gate_wait_blocked(1));
    ferry__resolve_cancel(req);
    gate_release();
    /* One worker, FIFO posts: once the next lookup is delivered, so was the canceled one. */
    start(r, loop, "good.test", 80, &after);
    pump_until(loop, &after.calls, 1);
    ck_assert_int_eq(after.calls, 1);
    for (int i = 0; i < 5; i++) ferry__loop_run_once(loop, 10);
    ck_assert_int_eq(canceled.calls, 0);
    ck_assert_uint_eq(ferry__resolver_lookups(r), 2);
    ferry__resolver_free(r);
    ferry__loop_free(loop);
    ck_assert_int_eq(live_blocks(&c), 0);
}
END_TEST

START_TEST(canceling_a_queued_lookup_drops_it) {
    counting c;
    ferry_allocator a = counting_allocator(&c);
    ferry__loop *loop = new_loop(&a);
    ferry__resolver *r = new_fake_resolver(&a, 1, 0, 0);
    result_log first = {0}, dropped = {0}, last = {0};
    start(r, loop, "block.test", 80, &first);
    ck_assert(gate_wait_blocked(1));
    ferry__resolve_req *req = start(r, loop, "good.test", 80, &dropped);
    ferry__resolve_cancel(req);
    gate_release();
    start(r, loop, "good2.test", 80, &last);
    pump_until(loop, &last.calls, 1);
    ck_assert_int_eq(first.calls, 1);
    ck_assert_int_eq(last.calls, 1);
    ck_assert_int_eq(dropped.calls, 0);
    ck_assert_int_eq(atomic_load(&fake.good_calls), 1); /* only good2: the dropped one never ran */
    ck_assert_uint_eq(ferry__resolver_lookups(r), 2);
    ferry__resolver_free(r);
    ferry__loop_free(loop);
    ck_assert_int_eq(live_blocks(&c), 0);
}
END_TEST

/* ---- teardown and OOM ---- */

START_TEST(freeing_with_requests_outstanding_leaks_nothing) {
    counting c;
    ferry_allocator a = counting_allocator(&c);
    ferry__loop *loop = new_loop(&a);
    ferry__resolver *r = new_fake_resolver(&a, 2, 1000, 1000);
    result_log log = {0};
    /* Finished and posted, never pumped. */
    start(r, loop, "good.test", 80, &log);
    for (int i = 0; i < 500 && ferry__resolver_lookups(r) < 1; i++) usleep(1000);
    usleep(20 * 1000);
    /* Both workers stuck, two more queued, one of those canceled. */
    start(r, loop, "block1.test", 80, &log);
    start(r, loop, "block2.test", 80, &log);
    ck_assert(gate_wait_blocked(2));
    start(r, loop, "good3.test", 80, &log);
    ferry__resolve_cancel(start(r, loop, "good4.test", 80, &log));
    gate_release();
    ferry__resolver_free(r);
    ferry__loop_free(loop);
    ck_assert_int_eq(log.calls, 0);
    ck_assert_int_eq(live_blocks(&c), 0);
}
END_TEST

START_TEST(allocation_failures_are_reported_not_fatal) {
    counting c;
    ferry_allocator a = counting_allocator(&c);
    ferry__loop *loop = new_loop(&a);
    ferry__resolver *r = new_fake_resolver(&a, 1, 1000, 1000);
    result_log log = {0};
    ferry__resolve_req *req = NULL;
    ferry__addrs addrs;
    arm_failures(&c, 0, 1);
    ck_assert_int_eq(ferry__resolve(r, loop, "good.test", 80, on_resolved, &log, &req, &addrs),
                     FERRY_ENOMEM);
    ck_assert_ptr_null(req);
    /* Literals need no memory. */
    arm_failures(&c, 0, 100);
    ck_assert_int_eq(ferry__resolve(r, loop, "10.0.0.1", 80, on_resolved, &log, &req, &addrs),
                     FERRY_OK);
    arm_failures(&c, 0, 0);

    /* The worker's cache insert and its first two posts fail: the answer still arrives
     * (the post is retried), it just is not cached. */
    start(r, loop, "block.test", 80, &log);
    ck_assert(gate_wait_blocked(1));
    arm_failures(&c, 0, 3);
    gate_release();
    pump_until(loop, &log.calls, 1);
    ck_assert_int_eq(log.calls, 1);
    ck_assert_int_eq(log.result, FERRY_OK);
    ck_assert_int_eq(failures_left(&c), 0);
    start(r, loop, "block.test", 80, &log);
    pump_until(loop, &log.calls, 2);
    ck_assert_int_eq(log.calls, 2);
    ck_assert_uint_eq(ferry__resolver_lookups(r), 2);
    ferry__resolver_free(r);
    ferry__loop_free(loop);
    ck_assert_int_eq(live_blocks(&c), 0);
}
END_TEST

START_TEST(resolver_new_survives_every_allocation_failure) {
    counting c;
    ferry_allocator a = counting_allocator(&c);
    ferry__resolver_opts o = {.threads = 3, .ttl_ms = 1000};
    ferry__resolver *r = ferry__resolver_new(&a, &o);
    ck_assert_ptr_nonnull(r);
    long needed = live_blocks(&c);
    ferry__resolver_free(r);
    ck_assert_int_ge(needed, 3);
    for (long k = 0; k < needed; k++) {
        arm_failures(&c, k, 1);
        ck_assert_ptr_null(ferry__resolver_new(&a, &o));
        ck_assert_int_eq(live_blocks(&c), 0);
    }
    arm_failures(&c, 0, 0);
}
END_TEST

int main(void) {
    Suite *s = suite_create("resolver");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, localhost_resolves_asynchronously_on_the_loop_thread);
    tcase_add_test(tc, ip_literals_answer_synchronously);
    tcase_add_test(tc, empty_or_overlong_hosts_fail_synchronously);
    tcase_add_test(tc, failures_are_delivered_and_negatively_cached);
    tcase_add_test(tc, cache_hits_are_synchronous_until_the_ttl_expires);
    tcase_add_test(tc, ttl_zero_disables_caching);
    tcase_add_test(tc, a_full_cache_evicts_instead_of_growing);
    tcase_add_test(tc, canceling_a_running_lookup_suppresses_the_callback);
    tcase_add_test(tc, canceling_a_queued_lookup_drops_it);
    tcase_add_test(tc, freeing_with_requests_outstanding_leaks_nothing);
    tcase_add_test(tc, allocation_failures_are_reported_not_fatal);
    tcase_add_test(tc, resolver_new_survives_every_allocation_failure);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
