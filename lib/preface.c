/* What comes before the protocol on a connection: a PROXY protocol header (listeners with
 * accept_proxy), then, on HTTP+SOCKS listeners, the first byte that tells the two apart —
 * a SOCKS client speaks first with its version byte, 4 or 5, which no HTTP request line
 * starts with. Both wait (bounded by the header timeout) without taking a byte that
 * belongs to the protocol: the header is read exactly to its end, the first byte is only
 * peeked at. Then the connection is handed on as if it came from the client the header
 * names. */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "acl.h"
#include "engine_int.h"
#include "proxy_proto.h"
#include "session_int.h"

/* A PROXY header longer than this (v2 with many TLVs) is refused. */
enum { HEADER_MAX = 1024 };

typedef struct preface {
    ferry__conn base;
    int fd;
    uint8_t header_done;
    ferry__sockaddr peer; /* the client: the socket's peer, or the header's source */
    ferry__timer timer;
    size_t have;          /* PROXY header bytes taken so far */
    char header[HEADER_MAX];
} preface;

/* handed_on: the fd now belongs to (and is watched by) its protocol's connection. */
static void preface_free(preface *c, int handed_on) {
    ferry__worker *w = c->base.worker;
    ferry__timer_stop(w->loop, &c->timer);
    if (!handed_on) {
        ferry__loop_unwatch(w->loop, c->fd);
        close(c->fd);
    }
    ferry__conn_unlink(&c->base);
    ferry__free(&w->engine->alloc, c);
}

static void preface_abort(ferry__conn *base, ferry_err why) {
    (void)why;
    preface_free((preface *)base, 0);
}

/* Shutdown: nothing started yet, so nothing to finish. */
static void preface_drain(ferry__conn *base) { preface_free((preface *)base, 0); }

static void preface_expired(ferry__loop *loop, void *ud) {
    (void)loop;
    preface *c = ud;
    ferry__log(c->base.worker->engine, FERRY_LOG_INFO, "%s: no %s from a client in time",
               c->base.listener->name, c->header_done ? "request" : "PROXY header");
    preface_free(c, 0);
}

static void refuse(preface *c, const char *why) {
    char addr[FERRY_ADDRSTR_MAX];
    ferry__addr_format(&c->peer, 0, addr, sizeof addr);
    ferry__log(c->base.worker->engine, FERRY_LOG_WARN, "%s: %s: %s", c->base.listener->name,
               addr, why);
    preface_free(c, 0);
}

/* Take the PROXY header: peek, and read only the bytes that belong to it (bytes of a
 * partial header all do). 1 done, 0 more needed, -1 refused (c is gone). */
static int read_header(preface *c) {
    size_t room = sizeof c->header - c->have;
    ssize_t n;
    do n = recv(c->fd, c->header + c->have, room, MSG_PEEK);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    if (n <= 0) {
        preface_free(c, 0);
        return -1;
    }
    ferry__proxy_header h;
    int len = ferry__proxy_decode(c->header, c->have + (size_t)n, sizeof c->header, &h);
    if (len < 0 || (len == 0 && (size_t)n == room)) {
        refuse(c, len < 0 ? ferry__proxy_error_text(len) : "PROXY header too long");
        return -1;
    }
    size_t take = len > 0 ? (size_t)len - c->have : (size_t)n;
    if (recv(c->fd, c->header + c->have, take, 0) != (ssize_t)take) {
        preface_free(c, 0);
        return -1;
    }
    c->have += take;
    if (len == 0) return 0;
    /* LOCAL (a health check from the balancer) and UNKNOWN keep the socket's peer. */
    if (h.command == FERRY__PROXY_PROXY && h.src.sa.sa_family != AF_UNSPEC) {
        if (h.transport == FERRY__PROXY_DGRAM) {
            refuse(c, "PROXY header for a datagram stream on a TCP listener");
            return -1;
        }
        c->peer = h.src;
    }
    c->header_done = 1;
    return 1;
}

static void hand_on(preface *c) {
    ferry__worker *w = c->base.worker;
    ferry_listener *l = c->base.listener;
    ferry__sockaddr peer = c->peer;
    ferry__loop_unwatch(w->loop, c->fd);
    /* The new owner links itself before this one unlinks, so a draining worker never
     * sees zero connections in between. */
    ferry__protocol_accept(w, l, c->fd, &peer);
    preface_free(c, 1);
}

static void preface_io(ferry__loop *loop, int fd, void *ud, int mask) {
    (void)loop;
    (void)mask;
    preface *c = ud;
    if (!c->header_done) {
        int r = read_header(c);
        if (r <= 0) return;
        if (c->base.listener->opts.protocol != FERRY_PROTO_HTTP_SOCKS) {
            hand_on(c);
            return;
        }
    }
    unsigned char first;
    ssize_t n;
    do n = recv(fd, &first, 1, MSG_PEEK);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0) {
        preface_free(c, 0);
        return;
    }
    hand_on(c);
}

static int trusted(const ferry_listener *l, const ferry__sockaddr *peer) {
    ferry__ip ip;
    if (ferry__ip_from_sockaddr(&peer->sa, &ip) != 0) return 0;
    for (unsigned i = 0; i < l->ntrusted; i++)
        if (ferry__cidr_contains(&l->trusted[i], &ip)) return 1;
    return 0;
}

static void start(ferry__worker *w, ferry_listener *l, int fd, const ferry__sockaddr *peer,
                  int header_done);

void ferry__protocol_accept(ferry__worker *w, ferry_listener *l, int fd, const ferry__sockaddr *peer) {
    switch (l->opts.protocol) {
    case FERRY_PROTO_HTTP: ferry__http_accept(w, l, fd, peer); break;
    case FERRY_PROTO_SOCKS: ferry__socks_accept(w, l, fd, peer); break;
    case FERRY_PROTO_SNI: ferry__sni_accept(w, l, fd, peer); break;
    case FERRY_PROTO_HTTP_SOCKS: {
        unsigned char first;
        ssize_t n = recv(fd, &first, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n == 1) {
            if (first == 4 || first == 5)
                ferry__socks_accept(w, l, fd, peer);
            else
                ferry__http_accept(w, l, fd, peer);
            break;
        }
        start(w, l, fd, peer, 1); /* wait for the first byte */
        break;
    }
    default: ferry__session_accept(w, l, fd, peer); break;
    }
}

static void start(ferry__worker *w, ferry_listener *l, int fd, const ferry__sockaddr *peer,
                  int header_done) {
    preface *c = ferry__calloc(&w->engine->alloc, sizeof *c);
    if (!c) {
        close(fd);
        ferry__log(w->engine, FERRY_LOG_ERROR, "%s: out of memory accepting a client", l->name);
        return;
    }
    c->fd = fd;
    c->peer = *peer;
    c->header_done = (uint8_t)header_done;
    c->base.listener = l;
    c->base.abort = preface_abort;
    c->base.drain = preface_drain;
    ferry__conn_link(w, &c->base);
    if (!c->header_done && !trusted(l, peer)) {
        refuse(c, "PROXY header from an untrusted address");
        return;
    }
    ferry_err err = ferry__loop_watch(w->loop, fd, FERRY__READABLE, preface_io, c);
    if (!err) err = ferry__timer_start(w->loop, &c->timer, l->opts.header_timeout_ms, preface_expired, c);
    if (err) preface_free(c, 0);
}

void ferry__preface_accept(ferry__worker *w, ferry_listener *l, int fd, const ferry__sockaddr *peer) {
    start(w, l, fd, peer, !l->opts.accept_proxy);
}

size_t ferry__proxy_header_for(const ferry_session_info *info, int client_fd, int version,
                               char *out, size_t size) {
    ferry__sockaddr src, dst;
    memset(&src, 0, sizeof src);
    if (info->client_family == AF_INET6) {
        src.in6.sin6_family = AF_INET6;
        memcpy(&src.in6.sin6_addr, info->client_ip, 16);
        src.in6.sin6_port = htons(info->client_port);
    } else {
        src.in.sin_family = AF_INET;
        memcpy(&src.in.sin_addr, info->client_ip, 4);
        src.in.sin_port = htons(info->client_port);
    }
    socklen_t len = sizeof dst;
    if (getsockname(client_fd, &dst.sa, &len) < 0) memset(&dst, 0, sizeof dst);
    return version == 1 ? ferry__proxy_encode_v1(&src, &dst, out, size)
                        : ferry__proxy_encode_v2(&src, &dst, out, size);
}
