/* TLS passthrough with SNI routing through the public API: the ClientHello's server name
 * picks the route's pool, the hello (split over several reads here) and everything after
 * it reach the backend byte for byte, a hello without a name goes to the default route,
 * and without one the client is closed. */
#include <signal.h>

#include "ferry.h"
#include "http_backend.h"

/* A minimal TLS 1.2 ClientHello record carrying server_name `name` (or none). */
static size_t client_hello(const char *name, unsigned char *out) {
    unsigned char body[512];
    size_t n = 0;
    body[n++] = 0x03, body[n++] = 0x03;      /* client_version */
    for (int i = 0; i < 32; i++) body[n++] = (unsigned char)i; /* random */
    body[n++] = 0;                           /* session id */
    body[n++] = 0, body[n++] = 2, body[n++] = 0x13, body[n++] = 0x01; /* one suite */
    body[n++] = 1, body[n++] = 0;            /* compression: null */
    size_t ext_len_at = n;
    n += 2;
    if (name) {
        size_t len = strlen(name);
        body[n++] = 0, body[n++] = 0;        /* server_name */
        body[n++] = 0, body[n++] = (unsigned char)(len + 5);
        body[n++] = 0, body[n++] = (unsigned char)(len + 3);
        body[n++] = 0;                       /* host_name */
        body[n++] = 0, body[n++] = (unsigned char)len;
        memcpy(body + n, name, len);
        n += len;
    }
    size_t ext_len = n - ext_len_at - 2;
    body[ext_len_at] = (unsigned char)(ext_len >> 8), body[ext_len_at + 1] = (unsigned char)ext_len;
    size_t m = 0;
    out[m++] = 0x16, out[m++] = 0x03, out[m++] = 0x01;
    out[m++] = (unsigned char)((n + 4) >> 8), out[m++] = (unsigned char)(n + 4);
    out[m++] = 1, out[m++] = 0, out[m++] = (unsigned char)(n >> 8), out[m++] = (unsigned char)n;
    memcpy(out + m, body, n);
    return m + n;
}

typedef struct raw_backend {
    int fd;
    uint16_t port;
    pthread_t thread;
    atomic_int connections;
    unsigned char got[1024];
    size_t len;
} raw_backend;

static void *raw_accept(void *arg) {
    raw_backend *b = arg;
    for (;;) {
        int c = accept(b->fd, NULL, NULL);
        if (c < 0) return NULL;
        atomic_fetch_add(&b->connections, 1);
        struct timeval tv = {5, 0};
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        b->len = 0;
        for (;;) {
            ssize_t n = recv(c, b->got + b->len, sizeof b->got - b->len, 0);
            if (n <= 0) break;
            b->len += (size_t)n;
            if (b->len >= 4 && memcmp(b->got + b->len - 4, "DONE", 4) == 0) break;
        }
        send(c, "server-says-hi", 14, MSG_NOSIGNAL);
        close(c);
    }
}

static void raw_start(raw_backend *b) {
    memset(b, 0, sizeof *b);
    b->fd = listen_loopback(&b->port);
    ck_assert_int_ge(b->fd, 0);
    pthread_create(&b->thread, NULL, raw_accept, b);
}

static void raw_stop(raw_backend *b) {
    shutdown(b->fd, SHUT_RDWR);
    close(b->fd);
    pthread_join(b->thread, NULL);
}

static ferry_pool *pool_for(ferry_engine *e, const char *name, uint16_t port) {
    ferry_pool *p;
    char addr[32];
    ck_assert_int_eq(ferry_pool_new(e, name, &p), FERRY_OK);
    snprintf(addr, sizeof addr, "127.0.0.1:%u", port);
    ck_assert_int_eq(ferry_pool_add(p, addr, 1, NULL), FERRY_OK);
    return p;
}

static void route(ferry_router *r, const char *host, ferry_pool *p) {
    ferry_route_opts o;
    ferry_route_opts_init(&o);
    o.host = host;
    o.pool = p;
    char err[128];
    ck_assert_int_eq(ferry_router_add(r, &o, err, sizeof err), FERRY_OK);
}

/* Send the hello in three pieces, then app data; returns what the server answered. */
static size_t tls_client(uint16_t port, const char *name, char *answer, size_t size) {
    unsigned char hello[600];
    size_t n = client_hello(name, hello);
    int fd = connect_loopback(port);
    send(fd, hello, 3, MSG_NOSIGNAL);
    usleep(20000);
    send(fd, hello + 3, 20, MSG_NOSIGNAL);
    usleep(20000);
    send(fd, hello + 23, n - 23, MSG_NOSIGNAL);
    send(fd, "\x17\x03\x03opaqueDONE", 13, MSG_NOSIGNAL);
    ssize_t got = recv(fd, answer, size - 1, MSG_WAITALL);
    close(fd);
    answer[got > 0 ? got : 0] = '\0';
    return got > 0 ? (size_t)got : 0;
}

START_TEST(sni_routes_and_passes_bytes_untouched) {
    signal(SIGPIPE, SIG_IGN);
    raw_backend a, b, d;
    raw_start(&a);
    raw_start(&b);
    raw_start(&d);
    ferry_engine *e;
    ck_assert_int_eq(ferry_engine_new(NULL, &e), FERRY_OK);
    ferry_router *r;
    ck_assert_int_eq(ferry_router_new(NULL, &r), FERRY_OK);
    route(r, "a.test", pool_for(e, "a", a.port));
    route(r, "*.b.test", pool_for(e, "b", b.port));
    route(r, NULL, pool_for(e, "default", d.port));
    ferry_listener_opts lo;
    ferry_listener_opts_init(&lo);
    lo.address = "127.0.0.1:0";
    lo.protocol = FERRY_PROTO_SNI;
    lo.direction = ferry_direction_router();
    lo.direction_data = r;
    ferry_listener *l;
    ck_assert_int_eq(ferry_engine_listen(e, &lo, &l), FERRY_OK);
    ck_assert_int_eq(ferry_engine_start(e), FERRY_OK);
    uint16_t port = ferry_listener_port(l);
    char answer[64];
    unsigned char want[700];

    ck_assert_uint_eq(tls_client(port, "A.test", answer, 15), 14);
    ck_assert_str_eq(answer, "server-says-hi");
    size_t n = client_hello("A.test", want);
    memcpy(want + n, "\x17\x03\x03opaqueDONE", 13);
    ck_assert_uint_eq(a.len, n + 13);
    ck_assert(memcmp(a.got, want, n + 13) == 0); /* byte for byte */

    ck_assert_uint_eq(tls_client(port, "x.b.test", answer, 15), 14);
    ck_assert_int_eq(atomic_load(&b.connections), 1);
    ck_assert_uint_eq(tls_client(port, NULL, answer, 15), 14); /* no name: default */
    ck_assert_uint_eq(tls_client(port, "other.test", answer, 15), 14);
    ck_assert_int_eq(atomic_load(&d.connections), 2);
    ck_assert_int_eq(atomic_load(&a.connections), 1);

    /* Not TLS at all: still routed by "no name", i.e. to the default pool. */
    int fd = connect_loopback(port);
    send(fd, "GET / HTTP/1.1\r\n\r\nDONE", 22, MSG_NOSIGNAL);
    ck_assert_int_eq(recv(fd, answer, 14, MSG_WAITALL), 14);
    close(fd);
    ck_assert_int_eq(atomic_load(&d.connections), 3);
    ferry_engine_free(e);
    ferry_router_free(r);

    /* Without a default route a nameless hello is closed without reaching anyone. */
    ck_assert_int_eq(ferry_engine_new(NULL, &e), FERRY_OK);
    ck_assert_int_eq(ferry_router_new(NULL, &r), FERRY_OK);
    route(r, "a.test", pool_for(e, "a", a.port));
    lo.direction_data = r;
    ck_assert_int_eq(ferry_engine_listen(e, &lo, &l), FERRY_OK);
    ck_assert_int_eq(ferry_engine_start(e), FERRY_OK);
    ck_assert_uint_eq(tls_client(ferry_listener_port(l), NULL, answer, 15), 0);
    ck_assert_int_eq(atomic_load(&a.connections), 1);
    ferry_engine_free(e);
    ferry_router_free(r);
    raw_stop(&a);
    raw_stop(&b);
    raw_stop(&d);
}
END_TEST

int main(void) {
    Suite *s = suite_create("sni_engine");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, sni_routes_and_passes_bytes_untouched);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
