/* The built-in reverse policy's balancing, driven through its public ops table. */
#include <stdio.h>
#include <string.h>

#include "ferry.h"
#include "testutil.h"

typedef struct fixture {
    ferry_engine *engine;
    ferry_pool *pool;
    ferry_backend *b[3];
} fixture;

static void setup(fixture *f, const unsigned *weights, int n) {
    ck_assert_int_eq(ferry_engine_new(NULL, &f->engine), FERRY_OK);
    ck_assert_int_eq(ferry_pool_new(f->engine, "p", &f->pool), FERRY_OK);
    for (int i = 0; i < n; i++) {
        char addr[32];
        snprintf(addr, sizeof addr, "127.0.0.%d:80", i + 1);
        ck_assert_int_eq(ferry_pool_add(f->pool, addr, weights[i], &f->b[i]), FERRY_OK);
    }
}

static int pick_index(fixture *f, int n) {
    const ferry_direction_ops *ops = ferry_direction_reverse();
    ferry_session_info info = {0};
    uintptr_t state = 0;
    ferry_target t;
    memset(&t, 0, sizeof t);
    if (ops->pick(f->pool, &info, 0, &state, &t) != FERRY_OK) return -1;
    for (int i = 0; i < n; i++)
        if (t.backend == f->b[i]) return i;
    return -2;
}

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

int main(void) {
    Suite *s = suite_create("pool");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, weights_are_honoured_smoothly);
    tcase_add_test(tc, backends_marked_down_are_skipped_then_none_is_left);
    tcase_add_test(tc, failover_walks_every_backend_once);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
