/* Who the client is, as backends learn it: PROXY protocol on listeners (accept_proxy, from
 * trusted sources only) and towards upstreams (send_proxy), in TCP and HTTP mode, and the
 * forwarding headers (X-Forwarded-*, Forwarded, Via) with trusted forwarders. */
#include <signal.h>

#include "ferry.h"
#include "http_backend.h"

typedef struct seen {
    pthread_mutex_t lock;
    char client[FERRY_ADDRSTR_MAX];
    uint16_t port;
} seen;

static ferry_verdict record_client(void *ud, const ferry_session_info *s) {
    seen *v = ud;
    pthread_mutex_lock(&v->lock);
    snprintf(v->client, sizeof v->client, "%s", s->client_addr);
    v->port = s->client_port;
    pthread_mutex_unlock(&v->lock);
    return FERRY_CONTINUE;
}
static const ferry_hook_ops record_hooks = {.on_accept = record_client};

static ferry_engine *start(ferry_protocol proto, uint16_t backend_port, int accept_proxy,
                           const char *trusted, int send_proxy, seen *v, uint16_t *port) {
    ferry_listener_opts lo;
    ferry_listener_opts_init(&lo);
    lo.protocol = proto;
    lo.hooks = (ferry_hooks){&record_hooks, v};
    lo.accept_proxy = accept_proxy;
    lo.proxy_trusted = trusted;
    lo.send_proxy = send_proxy;
    lo.header_timeout_ms = 2000;
    return proxy_to_backend(backend_port, lo, port);
}

/* A TCP backend that keeps the first bytes of one connection. */
typedef struct raw_backend {
    int fd;
    uint16_t port;
    pthread_t thread;
    char got[512];
    size_t len;
} raw_backend;

static void *raw_accept(void *arg) {
    raw_backend *b = arg;
    int c = accept(b->fd, NULL, NULL);
    if (c < 0) return NULL;
    struct timeval tv = {5, 0};
    setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    for (;;) {
        ssize_t n = recv(c, b->got + b->len, sizeof b->got - 1 - b->len, 0);
        if (n <= 0) break;
        b->len += (size_t)n;
        b->got[b->len] = '\0';
        if (strstr(b->got, "END")) break;
    }
    send(c, "bye", 3, MSG_NOSIGNAL);
    close(c);
    return NULL;
}

START_TEST(tcp_accept_and_send_v1) {
    signal(SIGPIPE, SIG_IGN);
    raw_backend b = {0};
    b.fd = listen_loopback(&b.port);
    ck_assert_int_ge(b.fd, 0);
    pthread_create(&b.thread, NULL, raw_accept, &b);
    seen v = {.lock = PTHREAD_MUTEX_INITIALIZER};
    uint16_t port;
    ferry_engine *e = start(FERRY_PROTO_TCP, b.port, 1, NULL, 1, &v, &port);
    int fd = connect_loopback(port);
    /* The header arrives in two pieces, the data right behind it. */
    const char *h1 = "PROXY TCP4 192.0.2.7 198.51.", *h2 = "100.9 40000 443\r\nhello END";
    send(fd, h1, strlen(h1), MSG_NOSIGNAL);
    usleep(50000);
    send(fd, h2, strlen(h2), MSG_NOSIGNAL);
    char buf[16] = "";
    ck_assert_int_eq(recv(fd, buf, sizeof buf, 0), 3);
    close(fd);
    pthread_join(b.thread, NULL);
    pthread_mutex_lock(&v.lock);
    ck_assert_str_eq(v.client, "192.0.2.7"); /* the client as the header names it */
    ck_assert_uint_eq(v.port, 40000);
    pthread_mutex_unlock(&v.lock);
    /* Upstream: our own header for that client, then the data, the client's header gone. */
    char want[128];
    snprintf(want, sizeof want, "PROXY TCP4 192.0.2.7 127.0.0.1 40000 %u\r\nhello END", port);
    ck_assert_str_eq(b.got, want);
    ferry_engine_free(e);
    close(b.fd);
}
END_TEST

START_TEST(untrusted_and_malformed_headers_are_refused) {
    signal(SIGPIPE, SIG_IGN);
    echo_server echo;
    ck_assert_int_eq(echo_start(&echo), 0);
    seen v = {.lock = PTHREAD_MUTEX_INITIALIZER};
    uint16_t port;
    ferry_engine *e = start(FERRY_PROTO_TCP, echo.port, 1, "10.0.0.0/8, 192.168.0.0/16", 0, &v, &port);
    int fd = connect_loopback(port); /* loopback is not trusted here */
    send(fd, "PROXY TCP4 192.0.2.7 198.51.100.9 40000 443\r\nx", 46, MSG_NOSIGNAL);
    char buf[8];
    ck_assert_int_le(recv(fd, buf, sizeof buf, 0), 0);
    close(fd);
    ferry_engine_free(e);

    e = start(FERRY_PROTO_TCP, echo.port, 1, NULL, 0, &v, &port);
    const char *bad[] = {"GET / HTTP/1.1\r\n\r\n", "PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
                         "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"};
    for (int i = 0; i < 3; i++) {
        fd = connect_loopback(port);
        send(fd, bad[i], strlen(bad[i]), MSG_NOSIGNAL);
        ck_assert_msg(recv(fd, buf, sizeof buf, 0) <= 0, "case %d relayed", i);
        close(fd);
    }
    /* A valid v2 LOCAL header (a balancer's health check) keeps the socket's address. */
    static const unsigned char local[16] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51,
                                            0x55, 0x49, 0x54, 0x0A, 0x20, 0x00, 0x00, 0x00};
    fd = connect_loopback(port);
    send(fd, local, sizeof local, MSG_NOSIGNAL);
    send(fd, "ping", 4, MSG_NOSIGNAL);
    ck_assert_int_eq(recv(fd, buf, 4, MSG_WAITALL), 4);
    ck_assert(memcmp(buf, "ping", 4) == 0);
    close(fd);
    pthread_mutex_lock(&v.lock);
    ck_assert_str_eq(v.client, "127.0.0.1");
    pthread_mutex_unlock(&v.lock);
    ck_assert_int_eq(atomic_load(&echo.connections), 1);
    ferry_engine_free(e);
    echo_stop(&echo);
}
END_TEST

START_TEST(http_accept_v2_and_send_v1) {
    signal(SIGPIPE, SIG_IGN);
    http_backend b;
    backend_start(&b);
    seen v = {.lock = PTHREAD_MUTEX_INITIALIZER};
    uint16_t port;
    ferry_engine *e = start(FERRY_PROTO_HTTP, b.port, 1, "127.0.0.1", 1, &v, &port);
    /* v2 PROXY TCP over IPv4: 203.0.113.5:5000 -> 198.51.100.1:80, then two requests. */
    static const unsigned char v2[28] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49,
                                         0x54, 0x0A, 0x21, 0x11, 0x00, 0x0C, 203, 0, 113, 5,
                                         198, 51, 100, 1, 0x13, 0x88, 0x00, 0x50};
    int fd = connect_loopback(port);
    const char *req = "GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
    send(fd, v2, sizeof v2, MSG_NOSIGNAL);
    send(fd, req, strlen(req), MSG_NOSIGNAL);
    static char out[8192];
    size_t have = 0;
    for (;;) {
        ssize_t n = recv(fd, out + have, sizeof out - 1 - have, 0);
        if (n <= 0) break;
        have += (size_t)n;
    }
    out[have] = '\0';
    close(fd);
    ck_assert_msg(strstr(out, "HTTP/1.1 200") && strstr(strstr(out, "HTTP/1.1 200") + 1, "HTTP/1.1 200"),
                  "%s", out);
    pthread_mutex_lock(&b.lock);
    /* One upstream connection per client, opened with its PROXY line; the client address
     * reaches X-Forwarded-For too. */
    ck_assert_msg(strncmp(b.last_head, "PROXY TCP4 203.0.113.5 127.0.0.1 5000 ", 38) == 0 &&
                      strstr(b.last_head, "\r\nGET /b HTTP/1.1\r\n") != NULL,
                  "%s", b.last_head);
    ck_assert_int_eq(atomic_load(&b.connections), 2); /* never pooled across requests */
    ck_assert_ptr_nonnull(strstr(b.last_head, "X-Forwarded-For: 203.0.113.5\r\n"));
    pthread_mutex_unlock(&b.lock);
    pthread_mutex_lock(&v.lock);
    ck_assert_str_eq(v.client, "203.0.113.5");
    pthread_mutex_unlock(&v.lock);
    ferry_engine_free(e);
    backend_stop(&b);
}
END_TEST

static void forwarding_case(const char *trusted, const char *want_xff, const char *want_proto,
                            const char *want_fwd, const char *want_via) {
    http_backend b;
    backend_start(&b);
    ferry_engine *e;
    ck_assert_int_eq(ferry_engine_new(NULL, &e), FERRY_OK);
    ferry_pool *pool;
    ck_assert_int_eq(ferry_pool_new(e, "b", &pool), FERRY_OK);
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", b.port);
    ck_assert_int_eq(ferry_pool_add(pool, addr, 1, NULL), FERRY_OK);
    ferry_listener_opts lo;
    ferry_listener_opts_init(&lo);
    lo.address = "127.0.0.1:0";
    lo.protocol = FERRY_PROTO_HTTP;
    lo.direction = ferry_direction_reverse();
    lo.direction_data = pool;
    lo.trusted_forwarders = trusted;
    lo.forwarded_rfc7239 = 1;
    lo.add_via = 1;
    ferry_listener *l;
    ck_assert_int_eq(ferry_engine_listen(e, &lo, &l), FERRY_OK);
    ck_assert_int_eq(ferry_engine_start(e), FERRY_OK);
    static char out[8192];
    exchange(ferry_listener_port(l),
             "GET / HTTP/1.1\r\nHost: pub.test\r\nX-Forwarded-For: 198.51.100.7\r\n"
             "X-Forwarded-Proto: https\r\nForwarded: for=198.51.100.7;proto=https\r\n"
             "Via: 1.0 edge\r\n\r\n",
             out, sizeof out);
    ck_assert_msg(atoi(out + 9) == 200, "%s", out);
    pthread_mutex_lock(&b.lock);
    const char *h = b.last_head;
    char line[256];
    snprintf(line, sizeof line, "\r\nX-Forwarded-For: %s\r\n", want_xff);
    ck_assert_msg(strstr(h, line), "want %s in %s", line, h);
    snprintf(line, sizeof line, "\r\nX-Forwarded-Proto: %s\r\n", want_proto);
    ck_assert_msg(strstr(h, line), "want %s in %s", line, h);
    snprintf(line, sizeof line, "\r\nForwarded: %s\r\n", want_fwd);
    ck_assert_msg(strstr(h, line), "want %s in %s", line, h);
    snprintf(line, sizeof line, "\r\nVia: %s\r\n", want_via);
    ck_assert_msg(strstr(h, line), "want %s in %s", line, h);
    ck_assert_ptr_nonnull(strstr(h, "\r\nX-Forwarded-Host: pub.test\r\n"));
    /* Each header once: the client's own copies were folded in or dropped. */
    ck_assert_ptr_null(strstr(strstr(h, "X-Forwarded-For:") + 1, "X-Forwarded-For:"));
    ck_assert_ptr_null(strstr(strstr(h, "Forwarded: ") + 1, "\r\nForwarded:"));
    pthread_mutex_unlock(&b.lock);
    ferry_engine_free(e);
    backend_stop(&b);
}

START_TEST(forwarding_headers_trust_only_trusted_forwarders) {
    signal(SIGPIPE, SIG_IGN);
    /* Loopback is not trusted: the client's claims are replaced. */
    forwarding_case("10.0.0.0/8", "127.0.0.1", "http", "for=127.0.0.1;proto=http",
                    "1.0 edge, 1.1 ferry");
    forwarding_case(NULL, "127.0.0.1", "http", "for=127.0.0.1;proto=http", "1.0 edge, 1.1 ferry");
    /* A trusted forwarder's chain is extended, its scheme believed. */
    forwarding_case("127.0.0.0/8", "198.51.100.7, 127.0.0.1", "https",
                    "for=198.51.100.7;proto=https, for=127.0.0.1;proto=http", "1.0 edge, 1.1 ferry");
}
END_TEST

int main(void) {
    Suite *s = suite_create("proxy_protocol");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, tcp_accept_and_send_v1);
    tcase_add_test(tc, untrusted_and_malformed_headers_are_refused);
    tcase_add_test(tc, http_accept_v2_and_send_v1);
    tcase_add_test(tc, forwarding_headers_trust_only_trusted_forwarders);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
