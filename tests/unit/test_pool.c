/* The built-in reverse policy's balancers, driven through its public ops table, and the
 * pool's run-time changes, address swaps and re-resolution. */
#include <arpa/inet.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ferry.h"
#include "engine_int.h"
#include "http_int.h"
#include "testutil.h"

enum { MAXB = 8, PICKS = 10000 };

typedef struct fixture {
    ferry_engine *engine;
    ferry_pool *pool;
    ferry_backend *b[MAXB];
    int n;
} fixture;

static void setup_kind(fixture *f, const unsigned *weights, int n, ferry_balance kind,
                       const char *key) {
    memset(f, 0, sizeof *f);
    ck_assert_int_eq(ferry_engine_new(NULL, &f->engine), FERRY_OK);
    ck_assert_int_eq(ferry_pool_new(f->engine, "p", &f->pool), FERRY_OK);
    ck_assert_int_eq(ferry_pool_set_balancer(f->pool, kind, key), FERRY_OK);
    for (int i = 0; i < n; i++) {
        char addr[32];
        snprintf(addr, sizeof addr, "127.0.0.%d:80", i + 1);
        ck_assert_int_eq(ferry_pool_add(f->pool, addr, weights[i], &f->b[i]), FERRY_OK);
    }
    f->n = n;
}

static void setup(fixture *f, const unsigned *weights, int n) {
    setup_kind(f, weights, n, FERRY_BALANCE_ROUND_ROBIN, NULL);
}

static int index_of(const fixture *f, const ferry_backend *b) {
    for (int i = 0; i < f->n; i++)
        if (b == f->b[i]) return i;
    return -2;
}

static ferry_backend *pick_with(ferry_pool *pool, const ferry_session_info *info) {
    const ferry_direction_ops *ops = ferry_direction_reverse();
    uintptr_t state = 0;
    ferry_target t;
    memset(&t, 0, sizeof t);
    if (ops->pick(pool, info, 0, &state, &t) != FERRY_OK) return NULL;
    ck_assert_ptr_nonnull(t.backend);
    ck_assert_str_eq(t.host, ferry_backend_address(t.backend));
    return t.backend;
}

static int pick_index(fixture *f, int n) {
    (void)n;
    ferry_session_info info = {0};
    ferry_backend *b = pick_with(f->pool, &info);
    return b ? index_of(f, b) : -1;
}

static void set_client(ferry_session_info *info, uint32_t ip) {
    memset(info, 0, sizeof *info);
    info->client_family = AF_INET;
    uint32_t be = htonl(ip);
    memcpy(info->client_ip, &be, 4);
}

static void attach(ferry_pool *pool, ferry_backend *b, int times) {
    const ferry_direction_ops *ops = ferry_direction_reverse();
    for (int i = 0; i < times; i++) ops->attached(pool, b);
}

static void detach(ferry_pool *pool, ferry_backend *b, int times) {
    const ferry_direction_ops *ops = ferry_direction_reverse();
    for (int i = 0; i < times; i++) ops->detached(pool, b);
}

/* counts[i] within tol (fraction of PICKS) of PICKS * weights[i] / sum. */
static void assert_shares(const int *counts, const unsigned *weights, int n, double tol) {
    unsigned sum = 0;
    for (int i = 0; i < n; i++) sum += weights[i];
    for (int i = 0; i < n; i++) {
        double want = (double)PICKS * weights[i] / sum, got = counts[i];
        if (got < want - tol * PICKS || got > want + tol * PICKS)
            ck_abort_msg("backend %d: %d picks, want %.0f +- %.0f", i, counts[i], want,
                         tol * PICKS);
    }
}

/* ---- smooth weighted round-robin ---- */

START_TEST(weights_are_honoured_smoothly) {
    fixture f;
    const unsigned weights[] = {5, 1, 1};
    setup(&f, weights, 3);
    int counts[3] = {0}, run = 0, longest_run = 0, last = -1;
    for (int k = 0; k < 7000; k++) {
        int i = pick_index(&f, 3);
        ck_assert_int_ge(i, 0);
        counts[i]++;
        run = i == last ? run + 1 : 1;
        if (run > longest_run) longest_run = run;
        last = i;
    }
    ck_assert_int_eq(counts[0], 5000); /* exact over whole cycles */
    ck_assert_int_eq(counts[1], 1000);
    ck_assert_int_eq(counts[2], 1000);
    ck_assert_int_lt(longest_run, 5); /* a a b a c a a (4 across cycles), never a burst of 5 */
    ferry_engine_free(f.engine);
}
END_TEST

START_TEST(backends_marked_down_are_skipped_then_none_is_left) {
    fixture f;
    const unsigned weights[] = {1, 1, 1};
    setup(&f, weights, 3);
    const ferry_direction_ops *ops = ferry_direction_reverse();
    ferry_target t = {.backend = f.b[1]};
    ops->connect_result(f.pool, &t, FERRY_ECONNREFUSED);
    ck_assert(ferry_backend_is_down(f.b[1]));
    for (int k = 0; k < 300; k++) ck_assert_int_ne(pick_index(&f, 3), 1);
    t.backend = f.b[0];
    ops->connect_result(f.pool, &t, FERRY_ETIMEDOUT);
    t.backend = f.b[2];
    ops->connect_result(f.pool, &t, FERRY_ECONNREFUSED);
    ck_assert_int_eq(pick_index(&f, 3), -1); /* all down: no upstream at once */
    t.backend = f.b[2];
    ops->connect_result(f.pool, &t, FERRY_OK); /* a success brings it back */
    ck_assert_int_eq(pick_index(&f, 3), 2);
    ferry_engine_free(f.engine);
}
END_TEST

START_TEST(passive_checks_count_consecutive_failures) {
    fixture f;
    const unsigned weights[] = {1, 1};
    setup(&f, weights, 2);
    const ferry_direction_ops *ops = ferry_direction_reverse();
    ck_assert_int_eq(ferry_pool_set_passive_checks(f.pool, 3, FERRY_PASSIVE_5XX), FERRY_OK);
    ferry_target t = {.backend = f.b[0]};
    /* Connects: two failures, a success (the run ends), then three in a row. */
    ops->connect_result(f.pool, &t, FERRY_ECONNREFUSED);
    ops->connect_result(f.pool, &t, FERRY_ECONNREFUSED);
    ops->connect_result(f.pool, &t, FERRY_OK);
    ops->connect_result(f.pool, &t, FERRY_ECONNREFUSED);
    ops->connect_result(f.pool, &t, FERRY_ECONNREFUSED);
    ck_assert(!ferry_backend_is_down(f.b[0]));
    ops->connect_result(f.pool, &t, FERRY_ETIMEDOUT);
    ck_assert(ferry_backend_is_down(f.b[0]));
    for (int k = 0; k < 100; k++) ck_assert_int_eq(pick_index(&f, 2), 1);
    /* Responses: 5xx count (they are flagged), a good status ends the run, and no usable
     * response does not count (FERRY_PASSIVE_RESPONSES is not). */
    ferry__backend_observe(f.b[1], 503);
    ferry__backend_observe(f.b[1], 500);
    ferry__backend_observe(f.b[1], 404);
    ferry__backend_observe(f.b[1], 502);
    ferry__backend_observe(f.b[1], 0);
    ferry__backend_observe(f.b[1], 504);
    ck_assert(!ferry_backend_is_down(f.b[1]));
    ferry__backend_observe(f.b[1], 500);
    ck_assert(ferry_backend_is_down(f.b[1]));
    ferry_engine_free(f.engine);

    setup(&f, weights, 2); /* the default: connect failures only, the first one marks */
    t.backend = f.b[0];
    for (int k = 0; k < 10; k++) ferry__backend_observe(f.b[0], k % 2 ? 0 : 500);
    ck_assert(!ferry_backend_is_down(f.b[0]));
    ops->connect_result(f.pool, &t, FERRY_ECONNREFUSED);
    ck_assert(ferry_backend_is_down(f.b[0]));
    ferry_engine_free(f.engine);

    setup(&f, weights, 2); /* responses: closed, timed out or malformed */
    ck_assert_int_eq(ferry_pool_set_passive_checks(f.pool, 2, FERRY_PASSIVE_RESPONSES), FERRY_OK);
    ferry__backend_observe(f.b[0], 0);
    ferry__backend_observe(f.b[0], 500); /* a status, even 5xx, is an answer here */
    ferry__backend_observe(f.b[0], 0);
    ck_assert(!ferry_backend_is_down(f.b[0]));
    ferry__backend_observe(f.b[0], 0);
    ck_assert(ferry_backend_is_down(f.b[0]));
    ferry_engine_free(f.engine);
}
END_TEST

START_TEST(failover_walks_every_backend_once) {
    fixture f;
    const unsigned weights[] = {1, 2, 1};
    setup(&f, weights, 3);
    const ferry_direction_ops *ops = ferry_direction_reverse();
    ferry_session_info info = {0};
    uintptr_t state = 0;
    int seen[3] = {0};
    for (unsigned attempt = 0; attempt < 3; attempt++) {
        ferry_target t;
        memset(&t, 0, sizeof t);
        ck_assert_int_eq(ops->pick(f.pool, &info, attempt, &state, &t), FERRY_OK);
        for (int i = 0; i < 3; i++) seen[i] += t.backend == f.b[i];
    }
    ferry_target t;
    ck_assert_int_eq(ops->pick(f.pool, &info, 3, &state, &t), FERRY_ENOUPSTREAM);
    for (int i = 0; i < 3; i++) ck_assert_int_eq(seen[i], 1);
    ferry_engine_free(f.engine);
}
END_TEST

/* Every balancer fails over to the next different backend, skipping drained and down
 * ones, and a backend removed between attempts does not derail the walk. */
START_TEST(failover_skips_drained_down_and_removed) {
    const unsigned weights[] = {1, 1, 1, 1, 1};
    const ferry_direction_ops *ops = ferry_direction_reverse();
    for (int kind = FERRY_BALANCE_ROUND_ROBIN; kind <= FERRY_BALANCE_HASH_CLIENT; kind++) {
        fixture f;
        setup_kind(&f, weights, 5, (ferry_balance)kind, NULL);
        ck_assert_int_eq(ferry_backend_set_draining(f.b[1], 1), FERRY_OK);
        ferry_target down = {.backend = f.b[3]};
        ops->connect_result(f.pool, &down, FERRY_ECONNREFUSED);
        for (int round = 0; round < 20; round++) {
            ferry_session_info info;
            set_client(&info, 0x0a000000u + (uint32_t)round);
            uintptr_t state = 0;
            int seen[5] = {0}, got = 0;
            for (unsigned attempt = 0;; attempt++) {
                ferry_target t;
                memset(&t, 0, sizeof t);
                if (ops->pick(f.pool, &info, attempt, &state, &t) != FERRY_OK) break;
                int i = index_of(&f, t.backend);
                ck_assert_int_ge(i, 0);
                seen[i]++;
                got++;
                ck_assert_int_le(got, 5);
            }
            ck_assert_int_eq(got, 3);
            ck_assert_int_eq(seen[0] + seen[2] + seen[4], 3);
            ck_assert_int_eq(seen[0] * seen[2] * seen[4], 1);
        }
        /* a removal between attempts: the walk continues and ends */
        ferry_session_info info = {0};
        uintptr_t state = 0;
        ferry_target t;
        memset(&t, 0, sizeof t);
        ck_assert_int_eq(ops->pick(f.pool, &info, 0, &state, &t), FERRY_OK);
        ck_assert_int_eq(ferry_pool_remove(f.pool, t.backend), FERRY_OK);
        int more = 0;
        for (unsigned attempt = 1; ops->pick(f.pool, &info, attempt, &state, &t) == FERRY_OK;
             attempt++) {
            ck_assert_int_eq(ferry_backend_is_draining(t.backend), 0);
            ck_assert_int_le(++more, 4);
        }
        ferry_engine_free(f.engine);
    }
}
END_TEST

/* ---- least connections ---- */

START_TEST(least_conn_follows_attached_counts) {
    fixture f;
    const unsigned weights[] = {1, 1, 1};
    setup_kind(&f, weights, 3, FERRY_BALANCE_LEAST_CONN, NULL);
    attach(f.pool, f.b[0], 2);
    attach(f.pool, f.b[1], 1);
    for (int k = 0; k < 50; k++) ck_assert_int_eq(pick_index(&f, 3), 2);
    attach(f.pool, f.b[2], 3);
    for (int k = 0; k < 50; k++) ck_assert_int_eq(pick_index(&f, 3), 1);
    ck_assert_uint_eq(ferry_backend_active(f.b[2]), 3);
    detach(f.pool, f.b[0], 2);
    for (int k = 0; k < 50; k++) ck_assert_int_eq(pick_index(&f, 3), 0);
    /* equal loads: round-robin among the tied */
    detach(f.pool, f.b[1], 1);
    detach(f.pool, f.b[2], 3);
    int counts[3] = {0};
    for (int k = 0; k < 300; k++) counts[pick_index(&f, 3)]++;
    for (int i = 0; i < 3; i++) ck_assert_int_eq(counts[i], 100);
    ferry_engine_free(f.engine);
}
END_TEST

START_TEST(least_conn_is_weighted) {
    fixture f;
    const unsigned weights[] = {5, 1, 1};
    setup_kind(&f, weights, 3, FERRY_BALANCE_LEAST_CONN, NULL);
    int counts[3] = {0};
    for (int k = 0; k < PICKS; k++) counts[pick_index(&f, 3)]++;
    assert_shares(counts, weights, 3, 0.01); /* idle: weighted round-robin */
    /* 4 sessions on a weight-5 backend load it less than 1 on a weight-1 one */
    attach(f.pool, f.b[0], 4);
    attach(f.pool, f.b[1], 1);
    for (int k = 0; k < 50; k++) ck_assert_int_eq(pick_index(&f, 3), 2);
    attach(f.pool, f.b[2], 1);
    for (int k = 0; k < 50; k++) ck_assert_int_eq(pick_index(&f, 3), 0);
    ferry_engine_free(f.engine);
}
END_TEST

/* ---- power of two choices ---- */

START_TEST(random2_spreads_and_honours_weights) {
    fixture f;
    const unsigned weights[] = {1, 2, 3, 4};
    setup_kind(&f, weights, 4, FERRY_BALANCE_RANDOM2, NULL);
    int counts[4] = {0};
    for (int k = 0; k < PICKS; k++) counts[pick_index(&f, 4)]++;
    assert_shares(counts, weights, 4, 0.03);
    /* the most loaded of the four is never the less loaded of two distinct choices */
    attach(f.pool, f.b[3], 100);
    memset(counts, 0, sizeof counts);
    for (int k = 0; k < PICKS; k++) counts[pick_index(&f, 4)]++;
    ck_assert_int_eq(counts[3], 0);
    ck_assert_int_gt(counts[0], 0);
    ck_assert_int_gt(counts[1], counts[0]);
    ck_assert_int_gt(counts[2], counts[1]);
    ferry_engine_free(f.engine);
}
END_TEST

typedef struct rng_job {
    ferry_pool *pool;
    ferry_backend *first;
    int firsts;
} rng_job;

static void *rng_thread(void *arg) {
    rng_job *j = arg;
    ferry_session_info info = {0};
    for (int k = 0; k < 1000; k++) j->firsts += pick_with(j->pool, &info) == j->first;
    return NULL;
}

/* Each thread has its own generator, and they are not in lockstep. */
START_TEST(random2_threads_draw_independently) {
    fixture f;
    const unsigned weights[] = {1, 1};
    setup_kind(&f, weights, 2, FERRY_BALANCE_RANDOM2, NULL);
    rng_job jobs[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (rng_job){f.pool, f.b[0], 0};
        ck_assert_int_eq(pthread_create(&t[i], NULL, rng_thread, &jobs[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        ck_assert_int_gt(jobs[i].firsts, 400);
        ck_assert_int_lt(jobs[i].firsts, 600);
    }
    ferry_engine_free(f.engine);
}
END_TEST

/* ---- consistent hashing ---- */

START_TEST(hash_client_is_stable_and_balanced) {
    fixture f;
    const unsigned weights[] = {1, 2, 1};
    setup_kind(&f, weights, 3, FERRY_BALANCE_HASH_CLIENT, NULL);
    int counts[3] = {0};
    for (uint32_t k = 0; k < PICKS; k++) {
        ferry_session_info info;
        set_client(&info, 0xc0a80000u + k * 7919u);
        int i = index_of(&f, pick_with(f.pool, &info));
        ck_assert_int_ge(i, 0);
        counts[i]++;
        for (int again = 0; again < 3; again++) ck_assert_ptr_eq(pick_with(f.pool, &info), f.b[i]);
    }
    assert_shares(counts, weights, 3, 0.03); /* ketama at 160 points per weight spreads a bit */
    ferry_engine_free(f.engine);
}
END_TEST

enum { NKEYS = 10000 };

static void map_keys(fixture *f, ferry_backend **out) {
    for (uint32_t k = 0; k < NKEYS; k++) {
        ferry_session_info info;
        set_client(&info, 0x0a000000u + k);
        out[k] = pick_with(f->pool, &info);
        ck_assert_ptr_nonnull(out[k]);
    }
}

START_TEST(hash_removal_moves_only_the_removed_backends_keys) {
    fixture f;
    const unsigned weights[] = {1, 1, 1, 1, 1};
    setup_kind(&f, weights, 5, FERRY_BALANCE_HASH_CLIENT, NULL);
    static ferry_backend *before[NKEYS], *after[NKEYS];
    map_keys(&f, before);
    ck_assert_int_eq(ferry_pool_remove(f.pool, f.b[2]), FERRY_OK);
    map_keys(&f, after);
    int moved = 0;
    for (int k = 0; k < NKEYS; k++) {
        if (before[k] == after[k]) continue;
        ck_assert_ptr_eq(before[k], f.b[2]); /* only its keys move */
        ck_assert_ptr_ne(after[k], f.b[2]);
        moved++;
    }
    ck_assert_int_gt(moved, 0);
    ck_assert_int_le(moved, NKEYS / 5 + NKEYS / 20); /* 1/N + 5% */
    /* adding a backend takes keys only onto itself */
    ferry_backend *added;
    ck_assert_int_eq(ferry_pool_add(f.pool, "127.0.0.9:80", 1, &added), FERRY_OK);
    map_keys(&f, before);
    moved = 0;
    for (int k = 0; k < NKEYS; k++) {
        if (before[k] == after[k]) continue;
        ck_assert_ptr_eq(before[k], added);
        moved++;
    }
    ck_assert_int_gt(moved, NKEYS / 10); /* about 1/6 */
    ck_assert_int_le(moved, NKEYS / 5);
    ferry_engine_free(f.engine);
}
END_TEST

/* Down and draining backends lend their keys to the next on the ring and get them back;
 * a weight change moves keys to or from that backend only. */
START_TEST(hash_keys_return_after_down_and_drain) {
    fixture f;
    const unsigned weights[] = {1, 1, 1, 1};
    setup_kind(&f, weights, 4, FERRY_BALANCE_HASH_CLIENT, NULL);
    static ferry_backend *before[NKEYS], *during[NKEYS], *after[NKEYS];
    map_keys(&f, before);
    const ferry_direction_ops *ops = ferry_direction_reverse();
    ferry_target t = {.backend = f.b[1]};
    ops->connect_result(f.pool, &t, FERRY_ECONNREFUSED);
    ck_assert_int_eq(ferry_backend_set_draining(f.b[3], 1), FERRY_OK);
    map_keys(&f, during);
    for (int k = 0; k < NKEYS; k++) {
        ck_assert(during[k] == f.b[0] || during[k] == f.b[2]);
        if (before[k] == f.b[0] || before[k] == f.b[2]) ck_assert_ptr_eq(during[k], before[k]);
    }
    ops->connect_result(f.pool, &t, FERRY_OK);
    ck_assert_int_eq(ferry_backend_set_draining(f.b[3], 0), FERRY_OK);
    map_keys(&f, after);
    for (int k = 0; k < NKEYS; k++) ck_assert_ptr_eq(after[k], before[k]);
    ck_assert_int_eq(ferry_backend_set_weight(f.b[0], 3), FERRY_OK);
    ck_assert_uint_eq(ferry_backend_weight(f.b[0]), 3);
    map_keys(&f, after);
    int gained = 0;
    for (int k = 0; k < NKEYS; k++) {
        if (after[k] == before[k]) continue;
        ck_assert_ptr_eq(after[k], f.b[0]);
        gained++;
    }
    ck_assert_int_gt(gained, NKEYS / 8); /* from about 1/4 to about 1/2 */
    ferry_engine_free(f.engine);
}
END_TEST

/* A request as the HTTP engine leaves it after parsing. */
static ferry_allocator test_alloc;

static void txn_make(ferry_txn *t, const char *target, const char *name, const char *value) {
    ferry__allocator_init(&test_alloc, NULL);
    ferry__txn_init(t, NULL, &test_alloc);
    unsigned n = name ? 2 : 1;
    t->req.headers = test_alloc.malloc(NULL, n * sizeof *t->req.headers);
    ck_assert_ptr_nonnull(t->req.headers);
    t->req.headers[0] = (ferry_http_header){{"Host", 4}, {"h.test", 6}};
    if (name)
        t->req.headers[1] = (ferry_http_header){{name, strlen(name)}, {value, strlen(value)}};
    t->req.nheaders = n;
    t->req.method = (ferry_view){"GET", 3};
    t->req.target = (ferry_view){target, strlen(target)};
    ck_assert_int_eq(ferry__txn_take_request(t), FERRY_OK);
}

static ferry_backend *pick_txn(ferry_pool *pool, const char *target, const char *name,
                               const char *value) {
    ferry_txn t;
    txn_make(&t, target, name, value);
    ferry_session_info info = {0};
    info.txn = &t;
    ferry_backend *b = pick_with(pool, &info);
    ferry__txn_free(&t);
    return b;
}

/* The same header value, URI or cookie value lands on the same backend (the ring places
 * backends by address: pools with the same backends agree); without the key, the
 * request is balanced round-robin. */
START_TEST(hash_uri_header_and_cookie) {
    const unsigned weights[] = {1, 1, 1};
    fixture uri, hdr, cookie;
    setup_kind(&uri, weights, 3, FERRY_BALANCE_HASH_URI, NULL);
    setup_kind(&hdr, weights, 3, FERRY_BALANCE_HASH_HEADER, "X-Key");
    setup_kind(&cookie, weights, 3, FERRY_BALANCE_HASH_COOKIE, "sid");
    int counts[3] = {0};
    for (int k = 0; k < 3000; k++) {
        char v[32], c[96];
        snprintf(v, sizeof v, "/item/%d", k);
        int u = index_of(&uri, pick_txn(uri.pool, v, NULL, NULL));
        ck_assert_int_ge(u, 0);
        ck_assert_int_eq(index_of(&uri, pick_txn(uri.pool, v, "X-Other", "1")), u);
        counts[u]++;
        int h = index_of(&hdr, pick_txn(hdr.pool, "/", "x-key", v));
        ck_assert_int_eq(index_of(&hdr, pick_txn(hdr.pool, "/other", "X-KEY", v)), h);
        snprintf(c, sizeof c, "theme=dark; sid=%s ; lang=en", v);
        ck_assert_int_eq(index_of(&cookie, pick_txn(cookie.pool, "/x", "Cookie", c)), h);
        snprintf(c, sizeof c, "sid=%s", v);
        ck_assert_int_eq(index_of(&cookie, pick_txn(cookie.pool, "/y", "cookie", c)), h);
        ck_assert_int_eq(index_of(&uri, pick_txn(uri.pool, v, NULL, NULL)), u);
    }
    for (int i = 0; i < 3; i++) ck_assert_int_gt(counts[i], 800);
    /* no key: round-robin, exactly */
    memset(counts, 0, sizeof counts);
    for (int k = 0; k < 300; k++) {
        counts[index_of(&hdr, pick_txn(hdr.pool, "/", "X-Nope", "1"))]++;
        ck_assert_ptr_nonnull(pick_txn(cookie.pool, "/", "Cookie", "sidx=1; s=2"));
    }
    for (int i = 0; i < 3; i++) ck_assert_int_eq(counts[i], 100);
    /* TCP sessions (no txn) of an HTTP-keyed pool: round-robin too */
    ferry_session_info tcp = {0};
    memset(counts, 0, sizeof counts);
    for (int k = 0; k < 300; k++) counts[index_of(&uri, pick_with(uri.pool, &tcp))]++;
    for (int i = 0; i < 3; i++) ck_assert_int_eq(counts[i], 100);
    ferry_engine_free(uri.engine);
    ferry_engine_free(hdr.engine);
    ferry_engine_free(cookie.engine);
}
END_TEST

/* ---- drains, removals, weights ---- */

START_TEST(drained_backends_get_no_new_picks) {
    const unsigned weights[] = {2, 1, 1};
    for (int kind = FERRY_BALANCE_ROUND_ROBIN; kind <= FERRY_BALANCE_HASH_CLIENT; kind++) {
        fixture f;
        setup_kind(&f, weights, 3, (ferry_balance)kind, NULL);
        ck_assert_int_eq(ferry_backend_set_draining(f.b[0], 1), FERRY_OK);
        ck_assert_int_eq(ferry_backend_set_draining(f.b[0], 1), FERRY_OK); /* idempotent */
        ck_assert(ferry_backend_is_draining(f.b[0]));
        ck_assert_uint_eq(ferry_pool_size(f.pool), 3);
        int counts[3] = {0};
        for (uint32_t k = 0; k < 3000; k++) {
            ferry_session_info info;
            set_client(&info, k * 2654435761u);
            counts[index_of(&f, pick_with(f.pool, &info))]++;
        }
        ck_assert_int_eq(counts[0], 0);
        ck_assert_int_gt(counts[1], 0);
        ck_assert_int_gt(counts[2], 0);
        ck_assert_int_eq(ferry_backend_set_draining(f.b[0], 0), FERRY_OK);
        int back = 0;
        for (uint32_t k = 0; k < 3000; k++) {
            ferry_session_info info;
            set_client(&info, k * 2654435761u);
            back += pick_with(f.pool, &info) == f.b[0];
        }
        ck_assert_int_gt(back, 0);
        ferry_engine_free(f.engine);
    }
}
END_TEST

START_TEST(removed_backends_stay_valid_and_get_nothing) {
    fixture f;
    const unsigned weights[] = {1, 1};
    setup(&f, weights, 2);
    attach(f.pool, f.b[0], 1);
    ck_assert_int_eq(ferry_pool_remove(f.pool, f.b[0]), FERRY_OK);
    ck_assert_uint_eq(ferry_pool_size(f.pool), 1);
    for (int k = 0; k < 50; k++) ck_assert_int_eq(pick_index(&f, 2), 1);
    /* an in-flight session still holds it */
    ck_assert_str_eq(ferry_backend_address(f.b[0]), "127.0.0.1:80");
    ck_assert_uint_eq(ferry_backend_active(f.b[0]), 1);
    detach(f.pool, f.b[0], 1);
    ck_assert_uint_eq(ferry_backend_active(f.b[0]), 0);
    ck_assert_int_eq(ferry_pool_remove(f.pool, f.b[0]), FERRY_ESTATE);
    ck_assert_int_eq(ferry_backend_set_draining(f.b[0], 1), FERRY_ESTATE);
    ck_assert_int_eq(ferry_backend_set_weight(f.b[0], 2), FERRY_ESTATE);
    ck_assert_int_eq(ferry_pool_remove(f.pool, f.b[1]), FERRY_OK);
    ck_assert_int_eq(pick_index(&f, 2), -1); /* empty pool: no upstream */
    /* the same address may come back as a new backend */
    ferry_backend *again;
    ck_assert_int_eq(ferry_pool_add(f.pool, "127.0.0.1:80", 1, &again), FERRY_OK);
    ck_assert_ptr_ne(again, f.b[0]);
    ferry_session_info info = {0};
    ck_assert_ptr_eq(pick_with(f.pool, &info), again);
    /* another pool's backend */
    fixture g;
    setup(&g, weights, 1);
    ck_assert_int_eq(ferry_pool_remove(f.pool, g.b[0]), FERRY_EINVAL);
    ferry_engine_free(g.engine);
    ferry_engine_free(f.engine);
}
END_TEST

START_TEST(reweight_changes_round_robin_shares) {
    fixture f;
    const unsigned weights[] = {1, 1, 1};
    setup(&f, weights, 3);
    ck_assert_int_eq(ferry_backend_set_weight(f.b[2], 8), FERRY_OK);
    ck_assert_int_eq(ferry_backend_set_weight(f.b[2], 0), FERRY_EINVAL);
    ck_assert_int_eq(ferry_backend_set_weight(f.b[2], 1001), FERRY_EINVAL);
    int counts[3] = {0};
    for (int k = 0; k < PICKS; k++) counts[pick_index(&f, 3)]++;
    const unsigned now[] = {1, 1, 8};
    assert_shares(counts, now, 3, 0.01);
    ferry_engine_free(f.engine);
}
END_TEST

START_TEST(configuration_is_checked) {
    ferry_engine *e;
    ferry_pool *p;
    ck_assert_int_eq(ferry_engine_new(NULL, &e), FERRY_OK);
    ck_assert_int_eq(ferry_pool_new(e, "p", &p), FERRY_OK);
    ck_assert_int_eq(ferry_pool_set_balancer(p, FERRY_BALANCE_HASH_HEADER, NULL), FERRY_EINVAL);
    ck_assert_int_eq(ferry_pool_set_balancer(p, FERRY_BALANCE_HASH_COOKIE, ""), FERRY_EINVAL);
    ck_assert_int_eq(ferry_pool_set_balancer(p, FERRY_BALANCE_HASH_HEADER, "X Key"), FERRY_EINVAL);
    ck_assert_int_eq(ferry_pool_set_balancer(p, FERRY_BALANCE_RANDOM2, "x"), FERRY_EINVAL);
    ck_assert_int_eq(ferry_pool_set_balancer(p, (ferry_balance)7, NULL), FERRY_EINVAL);
    ck_assert_int_eq(ferry_pool_set_balancer(p, FERRY_BALANCE_LEAST_CONN, ""), FERRY_OK);
    ck_assert_int_eq(ferry_pool_add(p, "127.0.0.1:80", 1001, NULL), FERRY_EINVAL);
    ck_assert_int_eq(ferry_pool_add(p, "127.0.0.1:0", 1, NULL), FERRY_EADDR);
    /* a ring past 2^21 points */
    ck_assert_int_eq(ferry_pool_set_balancer(p, FERRY_BALANCE_HASH_URI, NULL), FERRY_OK);
    ferry_err err = FERRY_OK;
    for (int i = 0; i < 20 && !err; i++) err = ferry_pool_add(p, "127.0.0.1:80", 1000, NULL);
    ck_assert_int_eq(err, FERRY_ELIMIT);
    ck_assert_uint_eq(ferry_pool_size(p), 13);

    ferry_health_opts h;
    ferry_health_opts_init(&h);
    ck_assert_int_eq(h.interval_ms, 2000);
    ck_assert_int_eq(h.rise, 2);
    ck_assert_int_eq(h.fall, 3);
    ck_assert_int_eq(h.status_min, 200);
    ck_assert_int_eq(h.status_max, 399);
    ck_assert_int_eq(ferry_pool_set_health_check(p, &h), FERRY_OK); /* kind none */
    h.kind = FERRY_HEALTH_HTTP;
    h.path = "health";
    ck_assert_int_eq(ferry_pool_set_health_check(p, &h), FERRY_EINVAL);
    h.path = "/a b";
    ck_assert_int_eq(ferry_pool_set_health_check(p, &h), FERRY_EINVAL);
    h.path = "/healthz";
    h.status_min = 500;
    h.status_max = 400;
    ck_assert_int_eq(ferry_pool_set_health_check(p, &h), FERRY_EINVAL);
    h.status_min = 200;
    h.status_max = 299;
    h.fall = 0;
    ck_assert_int_eq(ferry_pool_set_health_check(p, &h), FERRY_EINVAL);
    h.fall = 1;
    ck_assert_int_eq(ferry_pool_set_health_check(p, &h), FERRY_OK);
    ck_assert_int_eq(ferry_pool_set_health_check(p, NULL), FERRY_OK);
    ck_assert_int_eq(ferry_pool_set_resolve_interval(p, 0), FERRY_OK);
    ck_assert_int_eq(ferry_pool_set_passive_checks(p, 0, 0), FERRY_EINVAL);
    ck_assert_int_eq(ferry_pool_set_passive_checks(p, 1001, 0), FERRY_EINVAL);
    ck_assert_int_eq(ferry_pool_set_passive_checks(p, 2, 8), FERRY_EINVAL);
    ck_assert_int_eq(ferry_pool_set_passive_checks(NULL, 2, 0), FERRY_EINVAL);
    ck_assert_int_eq(ferry_pool_set_passive_checks(p, 1000, FERRY_PASSIVE_5XX), FERRY_OK);

    ck_assert_int_eq(ferry_engine_start(e), FERRY_OK);
    ck_assert_int_eq(ferry_pool_set_passive_checks(p, 2, 0), FERRY_ESTATE);
    ck_assert_int_eq(ferry_pool_set_balancer(p, FERRY_BALANCE_ROUND_ROBIN, NULL), FERRY_ESTATE);
    ck_assert_int_eq(ferry_pool_set_health_check(p, NULL), FERRY_ESTATE);
    ck_assert_int_eq(ferry_pool_set_resolve_interval(p, 10), FERRY_ESTATE);
    ck_assert_int_eq(ferry_pool_set_down_time(p, 10), FERRY_ESTATE);
    ferry_engine_free(e);
}
END_TEST

/* ---- out of memory: every change either happens or fails with FERRY_ENOMEM ---- */

typedef struct counting_alloc {
    atomic_long live;
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
    if (p) atomic_fetch_add(&c->live, 1);
    return p;
}
static void *ca_realloc(void *ud, void *old, size_t n) {
    counting_alloc *c = ud;
    if (should_fail(c)) return NULL;
    void *p = realloc(old, n);
    if (p && !old) atomic_fetch_add(&c->live, 1);
    return p;
}
static void ca_free(void *ud, void *p) {
    counting_alloc *c = ud;
    if (p) atomic_fetch_sub(&c->live, 1);
    free(p);
}

static void expect(ferry_err got, int *failures) {
    if (got == FERRY_ENOMEM)
        ++*failures;
    else
        ck_assert_int_eq(got, FERRY_OK);
}

START_TEST(changes_fail_cleanly_without_memory) {
    counting_alloc c = {.fail_after = -1};
    ferry_allocator a = {ca_malloc, ca_realloc, ca_free, &c};
    ferry_engine_opts eo;
    ferry_engine_opts_init(&eo);
    eo.allocator = &a;
    int clean_run = 0;
    for (long k = 0; k < 200 && !clean_run; k++) {
        ferry_engine *e;
        ferry_pool *p;
        atomic_store(&c.fail_after, -1);
        ck_assert_int_eq(ferry_engine_new(&eo, &e), FERRY_OK);
        ck_assert_int_eq(ferry_pool_new(e, "p", &p), FERRY_OK);
        atomic_store(&c.fail_after, k);
        int failures = 0;
        expect(ferry_pool_set_balancer(p, FERRY_BALANCE_HASH_COOKIE, "sid"), &failures);
        ferry_backend *b[3] = {0};
        unsigned size = 0;
        for (int i = 0; i < 3; i++) {
            char addr[32];
            snprintf(addr, sizeof addr, "127.0.0.%d:80", i + 1);
            ferry_err err = ferry_pool_add(p, addr, 1, &b[i]);
            expect(err, &failures);
            size += err == FERRY_OK;
            ck_assert_uint_eq(ferry_pool_size(p), size);
        }
        if (b[0]) {
            expect(ferry_backend_set_weight(b[0], 2), &failures);
            ferry_err err = ferry_pool_remove(p, b[0]);
            expect(err, &failures);
            size -= err == FERRY_OK;
            ck_assert_uint_eq(ferry_pool_size(p), size);
        }
        ferry_health_opts h;
        ferry_health_opts_init(&h);
        h.kind = FERRY_HEALTH_HTTP;
        h.host = "h.test";
        expect(ferry_pool_set_health_check(p, &h), &failures);
        clean_run = failures == 0;
        atomic_store(&c.fail_after, -1);
        ferry_session_info info = {0};
        if (size) ck_assert_ptr_nonnull(pick_with(p, &info));
        ferry_engine_free(e);
        ck_assert_int_eq(atomic_load(&c.live), 0);
    }
    ck_assert(clean_run);
}
END_TEST

/* ---- concurrency: picks on several threads while another changes the pool ---- */

typedef struct stress {
    ferry_pool *pool;
    ferry_backend *anchor; /* never removed nor drained: picks always succeed */
    atomic_int stop;
    atomic_long picks;
} stress;

static void *stress_picker(void *arg) {
    stress *s = arg;
    const ferry_direction_ops *ops = ferry_direction_reverse();
    ferry_session_info info;
    for (uint32_t k = 0; !atomic_load(&s->stop); k++) {
        set_client(&info, k);
        uintptr_t state = 0;
        ferry_target t;
        memset(&t, 0, sizeof t);
        ck_assert_int_eq(ops->pick(s->pool, &info, 0, &state, &t), FERRY_OK);
        ops->attached(s->pool, t.backend);
        ck_assert_ptr_nonnull(ferry_backend_address(t.backend));
        ops->connect_result(s->pool, &t, FERRY_OK);
        ops->detached(s->pool, t.backend);
        atomic_fetch_add(&s->picks, 1);
    }
    return NULL;
}

START_TEST(runtime_changes_while_picking) {
    for (int kind = FERRY_BALANCE_ROUND_ROBIN; kind <= FERRY_BALANCE_HASH_CLIENT; kind++) {
        ferry_engine_opts eo;
        ferry_engine_opts_init(&eo);
        ferry_engine *e;
        ferry_pool *p;
        ck_assert_int_eq(ferry_engine_new(&eo, &e), FERRY_OK);
        ck_assert_int_eq(ferry_pool_new(e, "p", &p), FERRY_OK);
        ck_assert_int_eq(ferry_pool_set_balancer(p, (ferry_balance)kind, NULL), FERRY_OK);
        stress s = {.pool = p};
        ck_assert_int_eq(ferry_pool_add(p, "127.0.0.1:80", 2, &s.anchor), FERRY_OK);
        ck_assert_int_eq(ferry_engine_start(e), FERRY_OK);
        pthread_t t[3];
        for (int i = 0; i < 3; i++)
            ck_assert_int_eq(pthread_create(&t[i], NULL, stress_picker, &s), 0);
        ferry_backend *live[6] = {0};
        /* At least 150 changes, and on until the pickers have done some work. */
        for (int round = 0; round < 150 || (atomic_load(&s.picks) < 5000 && round < 200000);
             round++) {
            int i = round % 6;
            char addr[32];
            snprintf(addr, sizeof addr, "127.0.1.%d:80", round % 200 + 1);
            if (live[i]) {
                if (round % 4 == 1)
                    ck_assert_int_eq(ferry_backend_set_draining(live[i], 1), FERRY_OK);
                if (round % 3 == 0)
                    ck_assert_int_eq(ferry_backend_set_weight(live[i], 3), FERRY_OK);
                ck_assert_int_eq(ferry_pool_remove(p, live[i]), FERRY_OK);
            }
            unsigned weight = (unsigned)(round % 5 + 1);
            ck_assert_int_eq(ferry_pool_add(p, addr, weight, &live[i]), FERRY_OK);
        }
        atomic_store(&s.stop, 1);
        for (int i = 0; i < 3; i++) pthread_join(t[i], NULL);
        ck_assert_int_gt(atomic_load(&s.picks), 0);
        ck_assert_uint_eq(ferry_pool_size(p), 7);
        ck_assert_uint_eq(ferry_backend_active(s.anchor), 0);
        ferry_engine_free(e);
    }
}
END_TEST

/* ---- addresses ---- */

typedef struct addr_race {
    ferry_backend *b;
    ferry__sockaddr a, c;
    atomic_int stop;
    long torn;
} addr_race;

static void *addr_reader(void *arg) {
    addr_race *r = arg;
    while (!atomic_load(&r->stop)) {
        ferry__sockaddr got;
        ferry__backend_addr(r->b, &got);
        if (memcmp(&got, &r->a, sizeof got) != 0 && memcmp(&got, &r->c, sizeof got) != 0) r->torn++;
    }
    return NULL;
}

/* One writer swapping between an IPv4 and an IPv6 address; readers see one or the other. */
START_TEST(address_swaps_are_never_torn) {
    fixture f;
    const unsigned weights[] = {1};
    setup(&f, weights, 1);
    addr_race r = {.b = f.b[0]};
    ck_assert_int_eq(ferry__addr_from_literal("10.1.2.3", 1111, &r.a), 0);
    ck_assert_int_eq(ferry__addr_from_literal("fd00::1:2:3:4", 2222, &r.c), 0);
    ferry__backend_set_addr(r.b, &r.a);
    pthread_t t[2];
    for (int i = 0; i < 2; i++) ck_assert_int_eq(pthread_create(&t[i], NULL, addr_reader, &r), 0);
    for (int k = 0; k < 200000; k++) ferry__backend_set_addr(r.b, k & 1 ? &r.c : &r.a);
    atomic_store(&r.stop, 1);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    ck_assert_int_eq(r.torn, 0);
    ferry_engine_free(f.engine);
}
END_TEST

/* A getaddrinfo whose answers the test changes: "localhost" -> fake_answer[0..fake_count),
 * no answer when fake_answer[0] is empty. */
static pthread_mutex_t fake_mu = PTHREAD_MUTEX_INITIALIZER;
static char fake_answer[2][16] = {"127.0.0.1", ""};
static int fake_count = 1;
static atomic_int fake_calls;

static int fake_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                            struct addrinfo **res) {
    (void)hints;
    atomic_fetch_add(&fake_calls, 1);
    pthread_mutex_lock(&fake_mu);
    int none = strcmp(node, "localhost") != 0 || !fake_answer[0][0];
    pthread_mutex_unlock(&fake_mu);
    if (none) return EAI_NONAME;
    struct blk {
        struct addrinfo ai;
        struct sockaddr_in sin;
    } *blk = calloc(2, sizeof *blk);
    if (!blk) return EAI_MEMORY;
    pthread_mutex_lock(&fake_mu);
    for (int i = 0; i < fake_count; i++) {
        blk[i].sin.sin_family = AF_INET;
        blk[i].sin.sin_port = htons((uint16_t)atoi(service));
        inet_pton(AF_INET, fake_answer[i], &blk[i].sin.sin_addr);
        blk[i].ai.ai_family = AF_INET;
        blk[i].ai.ai_socktype = SOCK_STREAM;
        blk[i].ai.ai_addrlen = sizeof blk[i].sin;
        blk[i].ai.ai_addr = (struct sockaddr *)&blk[i].sin;
        blk[i].ai.ai_next = i + 1 < fake_count ? &blk[i + 1].ai : NULL;
    }
    pthread_mutex_unlock(&fake_mu);
    *res = &blk[0].ai;
    return 0;
}

static void fake_freeaddrinfo(struct addrinfo *res) { free(res); }

static void fake_set(const char *a, const char *b) {
    pthread_mutex_lock(&fake_mu);
    snprintf(fake_answer[0], sizeof fake_answer[0], "%s", a);
    snprintf(fake_answer[1], sizeof fake_answer[1], "%s", b ? b : "");
    fake_count = b ? 2 : 1;
    pthread_mutex_unlock(&fake_mu);
}

static int wait_addr(ferry_backend *b, const char *want, int ms) {
    char got[64] = "";
    for (int i = 0; i < ms / 5; i++) {
        ferry__sockaddr a;
        ferry__backend_addr(b, &a);
        ferry__addr_format(&a, 1, got, sizeof got);
        if (strcmp(got, want) == 0) return 1;
        usleep(5000);
    }
    fprintf(stderr, "address is %s, not %s\n", got, want);
    return 0;
}

/* Named backends are looked up again in the background, through the engine's resolver. */
START_TEST(names_are_re_resolved_in_the_background) {
    ferry_engine_opts eo;
    ferry_engine_opts_init(&eo);
    eo.dns_ttl_ms = 0; /* no cache between the test's changes */
    eo.dns_negative_ttl_ms = 0;
    ferry_engine *e;
    ferry_pool *p;
    ck_assert_int_eq(ferry_engine_new(&eo, &e), FERRY_OK);
    ferry__resolver_free(e->resolver);
    ferry__resolver_opts ro = {.threads = 1, .getaddrinfo = fake_getaddrinfo,
                               .freeaddrinfo = fake_freeaddrinfo};
    e->resolver = ferry__resolver_new(&e->alloc, &ro);
    ck_assert_ptr_nonnull(e->resolver);
    ck_assert_int_eq(ferry_pool_new(e, "p", &p), FERRY_OK);
    ck_assert_int_eq(ferry_pool_set_resolve_interval(p, 20), FERRY_OK);
    ferry_backend *named, *literal;
    /* the first lookup is synchronous, with the system's resolver */
    ck_assert_int_eq(ferry_pool_add(p, "localhost:8080", 1, &named), FERRY_OK);
    ck_assert_int_eq(ferry_pool_add(p, "127.0.0.7:8080", 1, &literal), FERRY_OK);
    ck_assert_int_eq(ferry_pool_add(p, "no-such-host.invalid:80", 1, NULL), FERRY_ERESOLVE);
    fake_set("127.0.0.9", NULL);
    ck_assert_int_eq(ferry_engine_start(e), FERRY_OK);
    ck_assert(wait_addr(named, "127.0.0.9:8080", 2000));
    /* the address in use stays while the name still resolves to it */
    fake_set("127.0.0.10", "127.0.0.9");
    int base = atomic_load(&fake_calls);
    while (atomic_load(&fake_calls) < base + 3) usleep(5000);
    ck_assert(wait_addr(named, "127.0.0.9:8080", 10));
    /* a failed lookup keeps it too */
    fake_set("", NULL);
    base = atomic_load(&fake_calls);
    while (atomic_load(&fake_calls) < base + 3) usleep(5000);
    ck_assert(wait_addr(named, "127.0.0.9:8080", 10));
    fake_set("127.0.0.11", NULL);
    ck_assert(wait_addr(named, "127.0.0.11:8080", 2000));
    ck_assert(wait_addr(literal, "127.0.0.7:8080", 10));
    /* picks hand out the new address through ferry_target.backend */
    ferry_session_info info = {0};
    ferry_backend *b = pick_with(p, &info);
    ck_assert(b == named || b == literal);
    ck_assert_str_eq(ferry_backend_address(named), "localhost:8080");
    ferry_engine_free(e);
}
END_TEST

int main(void) {
    Suite *s = suite_create("pool");
    TCase *tc = tcase_create("balance");
    tcase_add_test(tc, weights_are_honoured_smoothly);
    tcase_add_test(tc, backends_marked_down_are_skipped_then_none_is_left);
    tcase_add_test(tc, passive_checks_count_consecutive_failures);
    tcase_add_test(tc, failover_walks_every_backend_once);
    tcase_add_test(tc, failover_skips_drained_down_and_removed);
    tcase_add_test(tc, least_conn_follows_attached_counts);
    tcase_add_test(tc, least_conn_is_weighted);
    tcase_add_test(tc, random2_spreads_and_honours_weights);
    tcase_add_test(tc, random2_threads_draw_independently);
    tcase_add_test(tc, hash_client_is_stable_and_balanced);
    tcase_add_test(tc, hash_removal_moves_only_the_removed_backends_keys);
    tcase_add_test(tc, hash_keys_return_after_down_and_drain);
    tcase_add_test(tc, hash_uri_header_and_cookie);
    suite_add_tcase(s, tc);
    TCase *changes = tcase_create("changes");
    tcase_add_test(changes, drained_backends_get_no_new_picks);
    tcase_add_test(changes, removed_backends_stay_valid_and_get_nothing);
    tcase_add_test(changes, reweight_changes_round_robin_shares);
    tcase_add_test(changes, configuration_is_checked);
    tcase_add_test(changes, changes_fail_cleanly_without_memory);
    tcase_add_test(changes, runtime_changes_while_picking);
    tcase_add_test(changes, address_swaps_are_never_torn);
    tcase_add_test(changes, names_are_re_resolved_in_the_background);
    tcase_set_timeout(changes, 60);
    suite_add_tcase(s, changes);
    return run_suite(s);
}
