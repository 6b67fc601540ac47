/* A minimal threaded HTTP/1.1 backend for the C integration tests (records the last
 * request head and body, answers 200 "ok"), and a one-shot client exchange. */
#ifndef FERRY_TEST_HTTP_BACKEND_H
#define FERRY_TEST_HTTP_BACKEND_H

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry.h"
#include "netutil.h"
#include "testutil.h"

typedef struct http_backend {
    int fd;
    uint16_t port;
    pthread_t thread;
    atomic_int stop, connections, requests;
    pthread_mutex_t lock;
    char last_head[8192];
    char last_body[8192]; /* the request body as it arrived, framing included */
    int drop_second;      /* close a connection, unanswered, when its 2nd request arrives */
    const char *extra_headers; /* whole "Name: value\r\n" lines added to every response */
    const char *body;          /* the response body; NULL: "ok" */
    atomic_int status;         /* the response status; 0: 200 */
} http_backend;

static inline void *backend_conn(void *arg);

/* What a connection thread of accept_each() gets (malloc'ed; the thread frees it). */
typedef struct conn_arg {
    void *owner;
    int fd;
} conn_arg;

/* Until *stop: accept on `fd` and run serve(conn_arg) on a detached thread per connection,
 * counting them in *connections. */
static inline void accept_each(int fd, atomic_int *stop, atomic_int *connections,
                               void *(*serve)(void *), void *owner) {
    while (!atomic_load(stop)) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0) continue;
        int c = accept(fd, NULL, NULL);
        if (c < 0) continue;
        atomic_fetch_add(connections, 1);
        conn_arg *ca = malloc(sizeof *ca);
        ca->owner = owner;
        ca->fd = c;
        pthread_t t;
        pthread_create(&t, NULL, serve, ca);
        pthread_detach(t);
    }
}

static inline void *backend_accept(void *arg) {
    http_backend *b = arg;
    accept_each(b->fd, &b->stop, &b->connections, backend_conn, b);
    return NULL;
}

/* Bytes of body framing that must follow the head before the request is complete: the
 * end of a chunked body, or Content-Length bytes. 0 if complete. */
static inline int body_incomplete(const char *head, const char *body, size_t have) {
    if (strstr(head, "Transfer-Encoding: chunked")) {
        char tmp[8192];
        size_t n = have < sizeof tmp - 1 ? have : sizeof tmp - 1;
        memcpy(tmp, body, n);
        tmp[n] = '\0';
        return strstr(tmp, "0\r\n\r\n") == NULL;
    }
    const char *cl = strstr(head, "Content-Length: ");
    return cl && have < (size_t)atoi(cl + 16);
}

static inline void *backend_conn(void *arg) {
    conn_arg *ca = arg;
    http_backend *b = ca->owner;
    int fd = ca->fd;
    free(ca);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[16384];
    size_t have = 0;
    int served = 0;
    for (;;) {
        ssize_t n = recv(fd, buf + have, sizeof buf - 1 - have, 0);
        if (n <= 0) break;
        have += (size_t)n;
        buf[have] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        if (!end) continue;
        size_t head = (size_t)(end + 4 - buf);
        char head_copy[8192];
        snprintf(head_copy, sizeof head_copy, "%.*s", (int)head, buf);
        if (body_incomplete(head_copy, buf + head, have - head)) continue;
        if (b->drop_second && ++served == 2) break; /* as a server that timed the connection out */
        pthread_mutex_lock(&b->lock);
        memcpy(b->last_head, head_copy, sizeof head_copy);
        snprintf(b->last_body, sizeof b->last_body, "%.*s", (int)(have - head), buf + head);
        pthread_mutex_unlock(&b->lock);
        atomic_fetch_add(&b->requests, 1);
        char resp[4096];
        const char *body = b->body ? b->body : "ok";
        int status = atomic_load(&b->status) ? atomic_load(&b->status) : 200;
        int len = snprintf(resp, sizeof resp,
                           "HTTP/1.1 %d %s\r\nContent-Length: %zu\r\nServer: secret-backend\r\n%s\r\n%s",
                           status, status == 200 ? "OK" : "Not OK", strlen(body),
                           b->extra_headers ? b->extra_headers : "", body);
        send(fd, resp, (size_t)len, MSG_NOSIGNAL);
        have = 0; /* one request per read burst is enough for these tests */
    }
    close(fd);
    return NULL;
}

static inline void backend_start(http_backend *b) {
    memset(b, 0, sizeof *b);
    pthread_mutex_init(&b->lock, NULL);
    b->fd = listen_loopback(&b->port);
    ck_assert_int_ge(b->fd, 0);
    ck_assert_int_eq(pthread_create(&b->thread, NULL, backend_accept, b), 0);
}

static inline void backend_stop(http_backend *b) {
    atomic_store(&b->stop, 1);
    pthread_join(b->thread, NULL);
    close(b->fd);
}

/* A started engine whose one listener relays to one backend with the built-in reverse
 * policy. lo: the caller's listener options; address, direction and pool are set here. */
static inline ferry_engine *proxy_to_backend(uint16_t backend_port, ferry_listener_opts lo,
                                             uint16_t *port) {
    ferry_engine *engine;
    ck_assert_int_eq(ferry_engine_new(NULL, &engine), FERRY_OK);
    ferry_pool *pool;
    ck_assert_int_eq(ferry_pool_new(engine, "b", &pool), FERRY_OK);
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", backend_port);
    ck_assert_int_eq(ferry_pool_add(pool, addr, 1, NULL), FERRY_OK);
    lo.address = "127.0.0.1:0";
    lo.direction = ferry_direction_reverse();
    lo.direction_data = pool;
    ferry_listener *l;
    ck_assert_int_eq(ferry_engine_listen(engine, &lo, &l), FERRY_OK);
    *port = ferry_listener_port(l);
    ck_assert_int_eq(ferry_engine_start(engine), FERRY_OK);
    return engine;
}

/* Send `req`, read until the peer closes or `want_responses` complete heads+bodies arrived
 * (Content-Length bodies only). Returns the bytes read. */
static inline size_t exchange(uint16_t port, const char *req, char *out, size_t size) {
    int fd = connect_loopback(port);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(send(fd, req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
    shutdown(fd, SHUT_WR);
    size_t have = 0;
    for (;;) {
        ssize_t n = recv(fd, out + have, size - 1 - have, 0);
        if (n <= 0) break;
        have += (size_t)n;
    }
    out[have] = '\0';
    close(fd);
    return have;
}

#endif
