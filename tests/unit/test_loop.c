#include <pthread.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "loop.h"
#include "testutil.h"

/* Each test runs once per backend: _i = 0 epoll, 1 poll. */
static const ferry_poller backends[] = {FERRY_POLLER_EPOLL, FERRY_POLLER_POLL};

static ferry__loop *new_loop(int i) {
    ferry_allocator a;
    ferry__allocator_init(&a, NULL);
    ferry__loop *loop = ferry__loop_new(&a, backends[i]);
    ck_assert_ptr_nonnull(loop);
    ck_assert_str_eq(ferry__loop_backend(loop), i == 0 ? "epoll" : "poll");
    return loop;
}

typedef struct fired_log {
    int order[64];
    int n;
} fired_log;

typedef struct tagged_timer {
    ferry__timer t;
    fired_log *log;
    int tag;
} tagged_timer;

static void record_fire(ferry__loop *loop, void *ud) {
    (void)loop;
    tagged_timer *tt = ud;
    tt->log->order[tt->log->n++] = tt->tag;
}

static void run_until(ferry__loop *loop, int *flag, int want, int max_iterations) {
    for (int i = 0; i < max_iterations && *flag < want; i++) ferry__loop_run_once(loop, 20);
}

START_TEST(timers_fire_in_deadline_order) {
    ferry__loop *loop = new_loop(_i);
    fired_log log = {0};
    /* Deadlines given out of order, with duplicates, to exercise the heap. */
    const int delays[] = {30, 5, 20, 5, 0, 25, 10, 15, 1, 40};
    tagged_timer timers[10] = {0};
    for (int k = 0; k < 10; k++) {
        timers[k].log = &log;
        timers[k].tag = delays[k];
        ck_assert_int_eq(ferry__timer_start(loop, &timers[k].t, (uint64_t)delays[k], record_fire,
                                            &timers[k]),
                         FERRY_OK);
    }
    run_until(loop, &log.n, 10, 200);
    ck_assert_int_eq(log.n, 10);
    for (int k = 1; k < 10; k++) ck_assert_int_le(log.order[k - 1], log.order[k]);
    ferry__loop_free(loop);
}
END_TEST

START_TEST(stopped_timers_never_fire_and_restart_moves_deadline) {
    ferry__loop *loop = new_loop(_i);
    fired_log log = {0};
    tagged_timer timers[50] = {0};
    for (int k = 0; k < 50; k++) {
        timers[k].log = &log;
        timers[k].tag = k;
        ferry__timer_start(loop, &timers[k].t, (uint64_t)(k % 7), record_fire, &timers[k]);
    }
    /* Cancel every odd timer (from the middle of the heap as well as the top). */
    for (int k = 1; k < 50; k += 2) {
        ferry__timer_stop(loop, &timers[k].t);
        ck_assert(!ferry__timer_active(&timers[k].t));
    }
    ferry__timer_stop(loop, &timers[1].t); /* stopping twice is harmless */
    /* Re-arming an armed timer moves it rather than adding it twice. */
    ferry__timer_start(loop, &timers[0].t, 30, record_fire, &timers[0]);
    run_until(loop, &log.n, 25, 200);
    ck_assert_int_eq(log.n, 25);
    for (int k = 0; k < log.n; k++) ck_assert_int_eq(log.order[k] % 2, 0);
    ck_assert_int_eq(log.order[24], 0); /* the moved timer fired last */
    ferry__loop_free(loop);
}
END_TEST

typedef struct io_state {
    int reads, writes;
    char buf[16];
} io_state;

static void on_io(ferry__loop *loop, int fd, void *ud, int mask) {
    io_state *st = ud;
    if (mask & FERRY__READABLE) {
        ssize_t n = read(fd, st->buf, sizeof st->buf);
        if (n > 0) st->reads++;
    }
    if (mask & FERRY__WRITABLE) {
        st->writes++;
        ferry__loop_watch(loop, fd, FERRY__READABLE, on_io, ud); /* once is enough */
    }
}

START_TEST(readiness_is_reported_and_interest_changes) {
    ferry__loop *loop = new_loop(_i);
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    io_state st = {0};
    ck_assert_int_eq(ferry__loop_watch(loop, sv[0], FERRY__READABLE | FERRY__WRITABLE, on_io, &st),
                     FERRY_OK);
    ferry__loop_run_once(loop, 100);
    ck_assert_int_eq(st.writes, 1);
    ck_assert_int_eq(st.reads, 0);
    ck_assert_int_eq(ferry__loop_mask(loop, sv[0]), FERRY__READABLE);
    ck_assert_int_eq(write(sv[1], "hi", 2), 2);
    ferry__loop_run_once(loop, 100);
    ck_assert_int_eq(st.reads, 1);
    ck_assert_str_eq(st.buf, "hi");
    ferry__loop_unwatch(loop, sv[0]);
    ck_assert_int_eq(write(sv[1], "x", 1), 1);
    ferry__loop_run_once(loop, 10);
    ck_assert_int_eq(st.reads, 1);
    close(sv[0]);
    close(sv[1]);
    ferry__loop_free(loop);
}
END_TEST

typedef struct arm_on_read {
    ferry__timer timer;
    int fired;
} arm_on_read;

static void mark_fired(ferry__loop *loop, void *ud) {
    (void)loop;
    ((arm_on_read *)ud)->fired = 1;
}

static void arm_timer_on_read(ferry__loop *loop, int fd, void *ud, int mask) {
    (void)mask;
    char b;
    (void)!read(fd, &b, 1);
    arm_on_read *a = ud;
    ferry__timer_start(loop, &a->timer, 100, mark_fired, a);
}

START_TEST(timers_armed_by_a_handler_count_from_after_the_wait) {
    ferry__loop *loop = new_loop(_i);
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    arm_on_read a = {0};
    ferry__loop_watch(loop, sv[0], FERRY__READABLE, arm_timer_on_read, &a);
    /* The loop sleeps 150 ms (longer than the timer) before the byte arrives. */
    pid_t pid = fork();
    if (pid == 0) {
        usleep(150 * 1000);
        (void)!write(sv[1], "x", 1);
        _exit(0);
    }
    ferry__loop_run_once(loop, 2000);
    ck_assert(ferry__timer_active(&a.timer));
    ferry__loop_run_once(loop, 0);
    ck_assert_int_eq(a.fired, 0); /* not already expired */
    waitpid(pid, NULL, 0);
    close(sv[0]);
    close(sv[1]);
    ferry__loop_free(loop);
}
END_TEST

typedef struct poster {
    ferry__loop *loop;
    int count;
    int *received;
} poster;

static void count_post(ferry__loop *loop, void *ud) {
    (void)loop;
    (*(int *)ud)++;
}

static void *post_many(void *arg) {
    poster *p = arg;
    for (int k = 0; k < p->count; k++) ferry__loop_post(p->loop, count_post, p->received);
    return NULL;
}

static void stop_loop(ferry__loop *loop, void *ud) {
    (void)ud;
    ferry__loop_stop(loop);
}

START_TEST(posts_from_other_threads_run_on_the_loop) {
    ferry__loop *loop = new_loop(_i);
    int received = 0;
    poster p = {loop, 1000, &received};
    pthread_t th[2];
    for (int k = 0; k < 2; k++) ck_assert_int_eq(pthread_create(&th[k], NULL, post_many, &p), 0);
    run_until(loop, &received, 2000, 5000);
    for (int k = 0; k < 2; k++) pthread_join(th[k], NULL);
    run_until(loop, &received, 2000, 100);
    ck_assert_int_eq(received, 2000);
    ferry__loop_free(loop);
}
END_TEST

static void *wake_later(void *arg) {
    usleep(50 * 1000);
    ferry__loop_post(arg, stop_loop, NULL);
    return NULL;
}

START_TEST(a_blocked_loop_is_woken_by_another_thread) {
    ferry__loop *loop = new_loop(_i);
    pthread_t th;
    uint64_t t0 = ferry__now_ms();
    ck_assert_int_eq(pthread_create(&th, NULL, wake_later, loop), 0);
    ck_assert_int_eq(ferry__loop_run(loop), 0); /* waits forever unless woken */
    pthread_join(th, NULL);
    ck_assert_uint_ge(ferry__now_ms() - t0, 40);
    ferry__loop_free(loop);
}
END_TEST

START_TEST(freeing_with_pending_posts_does_not_leak_or_run_them) {
    ferry__loop *loop = new_loop(_i);
    int ran = 0;
    for (int k = 0; k < 10; k++) ferry__loop_post(loop, count_post, &ran);
    ferry__loop_free(loop);
    ck_assert_int_eq(ran, 0);
}
END_TEST

int main(void) {
    Suite *s = suite_create("loop");
    TCase *tc = tcase_create("core");
    tcase_add_loop_test(tc, timers_fire_in_deadline_order, 0, 2);
    tcase_add_loop_test(tc, stopped_timers_never_fire_and_restart_moves_deadline, 0, 2);
    tcase_add_loop_test(tc, readiness_is_reported_and_interest_changes, 0, 2);
    tcase_add_loop_test(tc, timers_armed_by_a_handler_count_from_after_the_wait, 0, 2);
    tcase_add_loop_test(tc, posts_from_other_threads_run_on_the_loop, 0, 2);
    tcase_add_loop_test(tc, a_blocked_loop_is_woken_by_another_thread, 0, 2);
    tcase_add_loop_test(tc, freeing_with_pending_posts_does_not_leak_or_run_them, 0, 2);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
