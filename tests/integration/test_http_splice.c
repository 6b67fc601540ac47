/* Large response bodies with a Content-Length pass through a pipe inside the kernel
 * (splice) when nothing needs to see them: the body must arrive byte for byte, the pooled
 * upstream connection must not be read past the body (the next request reuses it), a body
 * the backend cuts short must reach the client as a closed connection, and a client that
 * goes away in the middle must not leave the upstream connection in the pool. Each test
 * runs with splice on (_i = 1) and off (_i = 0): both paths must behave alike. */
#include <signal.h>
#include <stdlib.h>
#include <time.h>

#include "ferry.h"
#include "http_backend.h"

enum { BIG = 300000 }; /* more than a 256 KiB pipe holds */

static unsigned char pattern_byte(size_t i) { return (unsigned char)(i * 7 + i / 251); }

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A backend answering every request with `announced` body bytes in its Content-Length,
 * of which it sends `sent` (fewer: it then closes), the first 1000 alone and the rest
 * after `pause_ms`, so the proxy has read the head before the body arrives. */
typedef struct big_backend {
    int fd;
    uint16_t port;
    pthread_t thread;
    atomic_int stop, connections, requests, dropped; /* dropped: by the proxy */
    size_t announced, sent;
    int pause_ms;
} big_backend;

static int send_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w <= 0) return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

static void *big_serve(void *arg) {
    conn_arg *bc = arg;
    big_backend *b = bc->owner;
    int fd = bc->fd;
    free(bc);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    unsigned char *body = malloc(b->sent);
    for (size_t i = 0; i < b->sent; i++) body[i] = pattern_byte(i);
    char buf[8192];
    size_t have = 0;
    for (;;) {
        ssize_t n = recv(fd, buf + have, sizeof buf - 1 - have, 0);
        if (n <= 0) {
            atomic_fetch_add(&b->dropped, 1);
            break;
        }
        have += (size_t)n;
        buf[have] = '\0';
        if (!strstr(buf, "\r\n\r\n")) continue;
        have = 0;
        atomic_fetch_add(&b->requests, 1);
        char head[128];
        int len = snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n",
                           b->announced);
        size_t first = b->sent < 1000 ? b->sent : 1000;
        if (send_all(fd, head, (size_t)len) || send_all(fd, body, first)) {
            atomic_fetch_add(&b->dropped, 1);
            break;
        }
        sleep_ms(b->pause_ms);
        if (send_all(fd, body + first, b->sent - first)) {
            atomic_fetch_add(&b->dropped, 1);
            break;
        }
        if (b->sent < b->announced) break; /* cut short */
    }
    free(body);
    close(fd);
    return NULL;
}

static void *big_accept(void *arg) {
    big_backend *b = arg;
    accept_each(b->fd, &b->stop, &b->connections, big_serve, b);
    return NULL;
}

static void big_start(big_backend *b, size_t announced, size_t sent, int pause_ms) {
    memset(b, 0, sizeof *b);
    b->announced = announced;
    b->sent = sent;
    b->pause_ms = pause_ms;
    b->fd = listen_loopback(&b->port);
    ck_assert_int_ge(b->fd, 0);
    ck_assert_int_eq(pthread_create(&b->thread, NULL, big_accept, b), 0);
}

static void big_stop(big_backend *b) {
    atomic_store(&b->stop, 1);
    pthread_join(b->thread, NULL);
    close(b->fd);
}

static ferry_engine *start_proxy(uint16_t backend_port, int splice, uint16_t *port) {
    ferry_listener_opts lo;
    ferry_listener_opts_init(&lo);
    lo.protocol = FERRY_PROTO_HTTP;
    lo.splice = splice;
    return proxy_to_backend(backend_port, lo, port);
}

/* Read one response head from fd; returns its Content-Length, or -1 if none came. */
static long read_head(int fd) {
    char head[4096];
    size_t have = 0;
    while (have < sizeof head - 1) {
        ssize_t n = recv(fd, head + have, 1, 0); /* byte by byte: the body stays unread */
        if (n <= 0) return -1;
        have++;
        if (have >= 4 && memcmp(head + have - 4, "\r\n\r\n", 4) == 0) break;
    }
    head[have] = '\0';
    ck_assert_msg(strncmp(head, "HTTP/1.1 200 ", 13) == 0, "head: %s", head);
    const char *cl = strstr(head, "Content-Length: ");
    return cl ? atol(cl + 16) : -1;
}

/* Read up to `want` body bytes and check them against the pattern; returns how many came
 * before the connection closed. */
static size_t read_body(int fd, size_t want) {
    static unsigned char buf[65536];
    size_t got = 0;
    while (got < want) {
        size_t ask = want - got < sizeof buf ? want - got : sizeof buf;
        ssize_t n = recv(fd, buf, ask, 0);
        if (n <= 0) break;
        ssize_t i = 0;
        while (i < n && buf[i] == pattern_byte(got + (size_t)i)) i++; /* one check per piece: */
        ck_assert_msg(i == n, "byte %zu differs", got + (size_t)i);   /* each is logged */
        got += (size_t)n;
    }
    return got;
}

static void send_get(int fd, const char *path) {
    char req[128];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: a\r\n\r\n", path);
    ck_assert_int_eq(send(fd, req, (size_t)n, MSG_NOSIGNAL), n);
}

START_TEST(a_large_body_passes_whole_and_the_upstream_connection_is_reused) {
    signal(SIGPIPE, SIG_IGN);
    big_backend b;
    big_start(&b, BIG, BIG, 20);
    uint16_t port;
    ferry_engine *e = start_proxy(b.port, _i, &port);
    int fd = connect_loopback(port);
    ck_assert_int_ge(fd, 0);
    int small = 16384;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    /* The first response is read at once; the second only after a pause, so the pipe (or
     * the buffer) fills and the proxy must wait for the client. */
    for (int round = 0; round < 2; round++) {
        send_get(fd, round ? "/second" : "/first");
        ck_assert_int_eq(read_head(fd), BIG);
        if (round) sleep_ms(200);
        ck_assert_uint_eq(read_body(fd, BIG), BIG);
    }
    /* Nothing past the two bodies: the connection is idle, not closed, not fed more. */
    struct pollfd p = {.fd = fd, .events = POLLIN};
    ck_assert_int_eq(poll(&p, 1, 100), 0);
    close(fd);
    ck_assert_int_eq(atomic_load(&b.requests), 2);
    ck_assert_int_eq(atomic_load(&b.connections), 1);
    ferry_engine_free(e);
    big_stop(&b);
}
END_TEST

START_TEST(a_body_cut_short_by_the_backend_closes_the_client_connection) {
    signal(SIGPIPE, SIG_IGN);
    big_backend b;
    big_start(&b, BIG, BIG / 2, 20);
    uint16_t port;
    ferry_engine *e = start_proxy(b.port, _i, &port);
    int fd = connect_loopback(port);
    ck_assert_int_ge(fd, 0);
    send_get(fd, "/cut");
    ck_assert_int_eq(read_head(fd), BIG);
    /* What the backend sent arrives, then the close: never a complete-looking body. */
    size_t got = read_body(fd, BIG);
    ck_assert_uint_le(got, BIG / 2);
    close(fd);
    /* The proxy goes on serving, on a fresh upstream connection. */
    fd = connect_loopback(port);
    ck_assert_int_ge(fd, 0);
    send_get(fd, "/again");
    ck_assert_int_eq(read_head(fd), BIG);
    ck_assert_uint_le(read_body(fd, BIG), BIG / 2);
    close(fd);
    ck_assert_int_eq(atomic_load(&b.connections), 2);
    ferry_engine_free(e);
    big_stop(&b);
}
END_TEST

START_TEST(a_client_gone_mid_body_does_not_leave_the_upstream_connection_pooled) {
    signal(SIGPIPE, SIG_IGN);
    big_backend b;
    /* Big enough that the backend is still sending when the proxy drops it. */
    big_start(&b, 16 * BIG, 16 * BIG, 50);
    uint16_t port;
    ferry_engine *e = start_proxy(b.port, _i, &port);
    int fd = connect_loopback(port);
    ck_assert_int_ge(fd, 0);
    send_get(fd, "/leave");
    ck_assert_int_eq(read_head(fd), 16 * BIG);
    ck_assert_uint_eq(read_body(fd, 5000), 5000);
    close(fd);
    /* The proxy closes its upstream side: the backend's sending or reading fails. */
    for (int i = 0; i < 500 && !atomic_load(&b.dropped); i++) sleep_ms(10);
    ck_assert_int_eq(atomic_load(&b.dropped), 1);
    /* A new request gets a whole body on a new upstream connection. */
    fd = connect_loopback(port);
    ck_assert_int_ge(fd, 0);
    send_get(fd, "/next");
    ck_assert_int_eq(read_head(fd), 16 * BIG);
    ck_assert_uint_eq(read_body(fd, 16 * BIG), 16 * BIG);
    close(fd);
    ck_assert_int_eq(atomic_load(&b.connections), 2);
    ferry_engine_free(e);
    big_stop(&b);
}
END_TEST

int main(void) {
    Suite *s = suite_create("http_splice");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, a_large_body_passes_whole_and_the_upstream_connection_is_reused, 0, 2);
    tcase_add_loop_test(tc, a_body_cut_short_by_the_backend_closes_the_client_connection, 0, 2);
    tcase_add_loop_test(tc, a_client_gone_mid_body_does_not_leave_the_upstream_connection_pooled,
                        0, 2);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
