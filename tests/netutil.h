/* Loopback helpers for integration tests: echo backends on threads, clients, hashing. */
#ifndef FERRY_NETUTIL_H
#define FERRY_NETUTIL_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* A listening socket on 127.0.0.1 with a kernel-chosen port. */
static inline int listen_loopback(uint16_t *port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 128) < 0) {
        close(fd);
        return -1;
    }
    socklen_t len = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &len);
    *port = ntohs(a.sin_port);
    return fd;
}

/* A port with nothing listening on it (bound then closed; refused on connect). */
static inline uint16_t dead_port(void) {
    uint16_t port = 0;
    int fd = listen_loopback(&port);
    close(fd);
    return port;
}

static inline int connect_loopback(uint16_t port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        close(fd);
        return -1;
    }
    struct timeval tv = {10, 0}; /* no test read may hang forever */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return fd;
}

/* ---- echo backend: one thread accepting, one thread per connection ---- */

typedef struct echo_server {
    int fd;
    uint16_t port;
    pthread_t thread;
    atomic_int connections;
    atomic_int active;
    atomic_int stop;
} echo_server;

static inline void *echo_conn(void *arg) {
    int fd = (int)(intptr_t)arg;
    char buf[65536];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = send(fd, buf + off, (size_t)(n - off), MSG_NOSIGNAL);
            if (w <= 0) goto out;
            off += w;
        }
    }
    shutdown(fd, SHUT_WR); /* echo the half-close too */
out:
    close(fd);
    return NULL;
}

static inline void *echo_accept(void *arg) {
    echo_server *s = arg;
    while (!atomic_load(&s->stop)) {
        struct pollfd p = {.fd = s->fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0) continue;
        int c = accept(s->fd, NULL, NULL);
        if (c < 0) continue;
        atomic_fetch_add(&s->connections, 1);
        pthread_t t;
        if (pthread_create(&t, NULL, echo_conn, (void *)(intptr_t)c) == 0)
            pthread_detach(t);
        else
            close(c);
    }
    return NULL;
}

static inline int echo_start(echo_server *s) {
    memset(s, 0, sizeof *s);
    s->fd = listen_loopback(&s->port);
    if (s->fd < 0) return -1;
    return pthread_create(&s->thread, NULL, echo_accept, s) == 0 ? 0 : -1;
}

static inline void echo_stop(echo_server *s) {
    atomic_store(&s->stop, 1);
    pthread_join(s->thread, NULL);
    close(s->fd);
}

/* ---- streams ---- */

static inline uint64_t fnv1a(uint64_t h, const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}
#define FNV_OFFSET 14695981039346656037ull

/* Send `total` pseudo-random bytes (seeded) while reading everything echoed back; returns 0
 * when the echoed stream hashes the same as the sent one. */
typedef struct stream_result {
    uint64_t sent_hash, recv_hash;
    size_t sent, received;
    int error;
} stream_result;

static inline void stream_echo(int fd, size_t total, uint32_t seed, int half_close,
                               stream_result *r) {
    uint8_t out[16384], in[65536];
    size_t out_off = 0, out_len = 0, generated = 0;
    memset(r, 0, sizeof *r);
    r->sent_hash = r->recv_hash = FNV_OFFSET;
    uint32_t x = seed | 1;
    int wr_done = 0;
    while (r->received < total || !wr_done) {
        struct pollfd p = {.fd = fd, .events = POLLIN | (r->sent < total ? POLLOUT : 0)};
        if (poll(&p, 1, 10000) <= 0) {
            r->error = ETIMEDOUT;
            return;
        }
        if ((p.revents & POLLOUT) && r->sent < total) {
            if (out_off == out_len) { /* next chunk of the pseudo-random stream */
                size_t n = total - generated < sizeof out ? total - generated : sizeof out;
                for (size_t i = 0; i < n; i++) {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    out[i] = (uint8_t)x;
                }
                r->sent_hash = fnv1a(r->sent_hash, out, n);
                generated += n;
                out_off = 0;
                out_len = n;
            }
            /* Never block on send: the echo comes back only if we keep reading. */
            ssize_t w = send(fd, out + out_off, out_len - out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w < 0 && errno != EAGAIN) {
                r->error = errno;
                return;
            }
            if (w > 0) {
                out_off += (size_t)w;
                r->sent += (size_t)w;
            }
        }
        if (r->sent == total && !wr_done) {
            wr_done = 1;
            if (half_close) shutdown(fd, SHUT_WR);
        }
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t n = recv(fd, in, sizeof in, MSG_DONTWAIT);
            if (n == 0) break;
            if (n < 0 && errno != EAGAIN) {
                r->error = errno;
                return;
            }
            if (n > 0) {
                r->recv_hash = fnv1a(r->recv_hash, in, (size_t)n);
                r->received += (size_t)n;
            }
        }
    }
}

#endif
