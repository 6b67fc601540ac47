#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"
#include "relay.h"
#include "testutil.h"

/* Topology: test client `c` <-> relay fd `down` ... relay fd `up` <-> test server `s`.
 * The relay runs on a loop pumped by the test itself. _i selects splice (1) or buffered (0). */
typedef struct fixture {
    ferry_allocator alloc;
    ferry__loop *loop;
    ferry__bufpool pool;
    ferry__relay relay;
    int c, down, up, s;
    int done;
    ferry_err result;
} fixture;

static void nonblock(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

static void on_done(ferry__relay *r, void *ud, ferry_err err) {
    (void)r;
    fixture *f = ud;
    f->done++;
    f->result = err;
}

static void setup(fixture *f, int splice, size_t high_water, unsigned idle_ms) {
    memset(f, 0, sizeof *f);
    signal(SIGPIPE, SIG_IGN);
    ferry__allocator_init(&f->alloc, NULL);
    f->loop = ferry__loop_new(&f->alloc, FERRY_POLLER_DEFAULT);
    ck_assert_ptr_nonnull(f->loop);
    ck_assert(ferry__bufpool_init(&f->pool, &f->alloc, 16384, 65536, 4, 4));
    int a[2], b[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, a), 0);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, b), 0);
    f->c = a[0];
    f->down = a[1];
    f->up = b[0];
    f->s = b[1];
    nonblock(f->c);
    nonblock(f->down);
    nonblock(f->up);
    nonblock(f->s);
    ferry__relay_opts o = {.high_water = high_water, .idle_ms = idle_ms, .splice = splice};
    ck_assert_int_eq(ferry__relay_start(&f->relay, f->loop, &f->pool, f->down, f->up, &o,
                                        on_done, f),
                     FERRY_OK);
}

static void teardown(fixture *f) {
    ferry__relay_stop(&f->relay);
    close(f->c);
    close(f->down);
    close(f->up);
    close(f->s);
    ferry__bufpool_destroy(&f->pool);
    ferry__loop_free(f->loop);
}

static uint8_t pattern(size_t i) { return (uint8_t)(i * 31u + (i >> 11)); }

/* Push `total` patterned bytes from `from` and check they arrive intact at `to`. */
static void transfer(fixture *f, int from, int to, size_t total) {
    static uint8_t out[8192], in[8192];
    size_t sent = 0, got = 0;
    for (int iter = 0; iter < 200000 && got < total; iter++) {
        if (sent < total) {
            size_t n = total - sent < sizeof out ? total - sent : sizeof out;
            for (size_t k = 0; k < n; k++) out[k] = pattern(sent + k);
            ssize_t w = write(from, out, n);
            if (w > 0) sent += (size_t)w;
        }
        ferry__loop_run_once(f->loop, 0);
        ssize_t r;
        while ((r = read(to, in, sizeof in)) > 0) {
            /* One assertion per chunk: Check records every assertion, so per byte is slow. */
            ssize_t bad = -1;
            for (ssize_t k = 0; k < r && bad < 0; k++)
                if (in[k] != pattern(got + (size_t)k)) bad = k;
            ck_assert_msg(bad < 0, "byte %zu differs", got + (size_t)bad);
            got += (size_t)r;
        }
    }
    ck_assert_uint_eq(got, total);
}

START_TEST(bytes_flow_both_ways_intact) {
    fixture f;
    setup(&f, _i, 0, 0);
    transfer(&f, f.c, f.s, 3u << 20);
    transfer(&f, f.s, f.c, 1u << 20);
    ck_assert_uint_eq(f.relay.dir[0].bytes, 3u << 20);
    ck_assert_uint_eq(f.relay.dir[1].bytes, 1u << 20);
    ck_assert_int_eq(f.done, 0);
    /* Nothing in flight: no buffer or pipe is held. */
    ck_assert_ptr_null(f.relay.dir[0].buf);
    ck_assert_int_eq(f.relay.dir[0].pipe[0], -1);
    ck_assert_int_eq(f.relay.dir[1].pipe[0], -1);
    teardown(&f);
}
END_TEST

START_TEST(a_slow_reader_stops_the_relay_reading) {
    fixture f;
    const size_t high_water = 8192;
    setup(&f, _i, high_water, 0);
    /* Shrink the upstream socket buffers so the server side fills up quickly. */
    int small = 4096;
    setsockopt(f.up, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    setsockopt(f.s, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    static uint8_t chunk[4096];
    size_t sent = 0;
    int blocked_rounds = 0;
    for (int iter = 0; iter < 20000 && blocked_rounds < 50; iter++) {
        ssize_t w = write(f.c, chunk, sizeof chunk);
        if (w > 0)
            sent += (size_t)w;
        else
            blocked_rounds++;
        ferry__loop_run_once(f.loop, 0);
        ck_assert_uint_le(ferry__relay_pending(&f.relay, 0), high_water);
    }
    /* The client cannot write any more: the relay stopped reading it. */
    ck_assert_int_ge(blocked_rounds, 50);
    ck_assert_int_eq(ferry__loop_mask(f.loop, f.down) & FERRY__READABLE, 0);
    ck_assert_uint_gt(ferry__relay_pending(&f.relay, 0), 0);
    /* Draining the server side lets everything through. */
    size_t got = 0;
    uint8_t in[8192];
    for (int iter = 0; iter < 100000 && got < sent; iter++) {
        ssize_t r = read(f.s, in, sizeof in);
        if (r > 0) got += (size_t)r;
        ferry__loop_run_once(f.loop, 0);
    }
    ck_assert_uint_eq(got, sent);
    ck_assert_int_eq(f.done, 0);
    teardown(&f);
}
END_TEST

START_TEST(half_close_propagates_and_the_reply_still_flows) {
    fixture f;
    setup(&f, _i, 0, 0);
    ck_assert_int_eq(write(f.c, "request", 7), 7);
    ck_assert_int_eq(shutdown(f.c, SHUT_WR), 0);
    char buf[64];
    size_t got = 0;
    int eof = 0;
    for (int iter = 0; iter < 1000 && !eof; iter++) {
        ferry__loop_run_once(f.loop, 5);
        ssize_t r = read(f.s, buf + got, sizeof buf - got);
        if (r > 0) got += (size_t)r;
        if (r == 0) eof = 1;
    }
    ck_assert_int_eq(eof, 1); /* the server saw the client's EOF */
    ck_assert_uint_eq(got, 7);
    ck_assert_int_eq(f.done, 0); /* the other direction is still open */
    transfer(&f, f.s, f.c, 256u << 10);
    ck_assert_int_eq(shutdown(f.s, SHUT_WR), 0);
    for (int iter = 0; iter < 1000 && !f.done; iter++) ferry__loop_run_once(f.loop, 5);
    ck_assert_int_eq(f.done, 1);
    ck_assert_int_eq(f.result, FERRY_OK);
    ck_assert_int_eq(read(f.c, buf, sizeof buf), 0); /* the client sees EOF after the reply */
    teardown(&f);
}
END_TEST

START_TEST(idle_relays_time_out) {
    fixture f;
    const unsigned idle_ms = 200;
    setup(&f, _i, 0, idle_ms);
    uint64_t t0 = ferry__now_ms();
    /* Activity every ~20 ms keeps it alive for well past one idle period. */
    while (ferry__now_ms() - t0 < 2 * idle_ms) {
        ck_assert_int_eq(write(f.c, "x", 1), 1);
        for (int iter = 0; iter < 2; iter++) ferry__loop_run_once(f.loop, 10);
        char b;
        while (read(f.s, &b, 1) == 1) {
        }
    }
    ck_assert_int_eq(f.done, 0);
    uint64_t quiet_from = ferry__now_ms();
    for (int iter = 0; iter < 1000 && !f.done; iter++) ferry__loop_run_once(f.loop, 10);
    ck_assert_int_eq(f.done, 1);
    ck_assert_int_eq(f.result, FERRY_ETIMEDOUT);
    ck_assert_uint_ge(ferry__now_ms() - quiet_from, idle_ms - 30);
    teardown(&f);
}
END_TEST

START_TEST(a_reset_peer_ends_the_relay_with_an_error) {
    fixture f;
    setup(&f, _i, 0, 0);
    close(f.s);
    f.s = -1;
    static uint8_t chunk[4096];
    for (int iter = 0; iter < 1000 && !f.done; iter++) {
        (void)!write(f.c, chunk, sizeof chunk);
        ferry__loop_run_once(f.loop, 1);
    }
    ck_assert_int_eq(f.done, 1);
    ck_assert_int_ne(f.result, FERRY_OK);
    teardown(&f);
}
END_TEST

int main(void) {
    Suite *s = suite_create("relay");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, bytes_flow_both_ways_intact, 0, 2);
    tcase_add_loop_test(tc, a_slow_reader_stops_the_relay_reading, 0, 2);
    tcase_add_loop_test(tc, half_close_propagates_and_the_reply_still_flows, 0, 2);
    tcase_add_loop_test(tc, idle_relays_time_out, 0, 2);
    tcase_add_loop_test(tc, a_reset_peer_ends_the_relay_with_an_error, 0, 2);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
