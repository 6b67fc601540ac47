#define _GNU_SOURCE
#include "socks_udp.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "route.h"
#include "socks.h"

/* Answers are accepted only from destinations the client sent to recently. */
enum { PEERS = 8, READS_PER_WAKE = 64 };

struct ferry__socks_udp {
    ferry__session *s;
    int fd;
    ferry__sockaddr client; /* where the client sends from; port 0 until learned */
    ferry__sockaddr peers[PEERS];
    unsigned npeers, next_peer;
    ferry__timer idle;
    ferry__resolve_req *resolving;
    char *pending; /* one datagram (whole, header included) waiting for its name */
    size_t pending_len;
    char *buf;     /* udp_max_datagram + header + 1, to notice oversized datagrams */
    size_t buf_size;
};

static const ferry_allocator *alloc_of(const ferry__socks_udp *u) {
    return &u->s->worker->engine->alloc;
}

static int same_ip(const ferry__sockaddr *a, const ferry__sockaddr *b) {
    if (a->sa.sa_family != b->sa.sa_family) return 0;
    if (a->sa.sa_family == AF_INET) return a->in.sin_addr.s_addr == b->in.sin_addr.s_addr;
    return memcmp(&a->in6.sin6_addr, &b->in6.sin6_addr, 16) == 0;
}

static int same_addr(const ferry__sockaddr *a, const ferry__sockaddr *b) {
    return same_ip(a, b) && ferry__addr_port(a) == ferry__addr_port(b);
}

static void idle_expired(ferry__loop *loop, void *ud) {
    (void)loop;
    ferry__session_end(ud, "relayed", FERRY_OK);
}

static void remember_peer(ferry__socks_udp *u, const ferry__sockaddr *a) {
    for (unsigned i = 0; i < u->npeers; i++)
        if (same_addr(&u->peers[i], a)) return;
    u->peers[u->next_peer] = *a;
    u->next_peer = (u->next_peer + 1) % PEERS;
    if (u->npeers < PEERS) u->npeers++;
}

static void send_to_destination(ferry__socks_udp *u, const char *data, size_t n,
                                const ferry__sockaddr *to) {
    ferry__session *s = u->s;
    if (ferry__route_admit_address(s->listener, &s->info, to)) return; /* logged */
    if (sendto(u->fd, data, n, MSG_NOSIGNAL, &to->sa, ferry__sockaddr_len(to)) == (ssize_t)n) {
        s->relay.dir[0].bytes += n;
        remember_peer(u, to);
    }
}

static void on_resolved(void *ud, ferry_err result, const ferry__addrs *addrs);

/* A datagram from the client: header -> policy -> address -> send. `resolved` is NULL on
 * arrival and the name's addresses once the resolver answered. Datagrams are dropped (as
 * UDP allows) when malformed, refused, or while another name is being resolved. */
static void forward_datagram(ferry__socks_udp *u, const char *dgram, size_t len,
                             const ferry__addrs *resolved) {
    ferry__session *s = u->s;
    ferry__socks_request req;
    int hdr = ferry__socks5_parse_udp(dgram, len, &req);
    if (hdr <= 0 || req.port == 0) return;
    const char *data = dgram + hdr;
    size_t n = len - (size_t)hdr;
    s->info.dest_host = req.host; /* what the policy (and its log lines) see, for this call */
    s->info.dest_port = req.port;
    s->info.proxy_protocol = FERRY_PROXY_SOCKS5_UDP;
    if (ferry__route_admit_request(s->listener, &s->info) == FERRY_OK) {
        ferry__addrs addrs;
        ferry__resolve_req *pending = NULL;
        if (resolved) {
            send_to_destination(u, data, n, &resolved->addr[0]);
        } else if (!u->resolving &&
                   ferry__resolve(s->worker->engine->resolver, s->worker->loop, req.host, req.port,
                                  on_resolved, u, &pending, &addrs) == FERRY_OK) {
            if (!pending) {
                send_to_destination(u, data, n, &addrs.addr[0]);
            } else if ((u->pending = ferry__malloc(alloc_of(u), len)) != NULL) {
                memcpy(u->pending, dgram, len);
                u->pending_len = len;
                u->resolving = pending;
            } else {
                ferry__resolve_cancel(pending);
            }
        }
    }
    s->info.dest_host = "";
    s->info.dest_port = 0;
    s->info.proxy_protocol = FERRY_PROXY_SOCKS5;
}

static void on_resolved(void *ud, ferry_err result, const ferry__addrs *addrs) {
    ferry__socks_udp *u = ud;
    char *d = u->pending;
    u->resolving = NULL;
    u->pending = NULL;
    if (result == FERRY_OK) forward_datagram(u, d, u->pending_len, addrs);
    ferry__free(alloc_of(u), d);
}

/* An answer from a destination the client talked to: wrap it and hand it back. */
static void return_datagram(ferry__socks_udp *u, const char *data, size_t n,
                            const ferry__sockaddr *from) {
    int known = 0;
    for (unsigned i = 0; i < u->npeers && !known; i++) known = same_addr(&u->peers[i], from);
    if (!known || !ferry__addr_port(&u->client)) return;
    char hdr[FERRY__SOCKS_UDP_HEADER_MAX];
    size_t h = ferry__socks5_udp_header(from, hdr);
    struct iovec iov[2] = {{hdr, h}, {(void *)data, n}};
    struct msghdr msg = {.msg_name = &u->client.sa,
                         .msg_namelen = ferry__sockaddr_len(&u->client),
                         .msg_iov = iov,
                         .msg_iovlen = 2};
    if (sendmsg(u->fd, &msg, MSG_NOSIGNAL) == (ssize_t)(h + n)) u->s->relay.dir[1].bytes += n;
}

static void udp_io(ferry__loop *loop, int fd, void *ud, int mask) {
    (void)loop;
    (void)mask;
    ferry__socks_udp *u = ud;
    ferry__session *s = u->s;
    const ferry_listener_opts *o = &s->listener->opts;
    for (int i = 0; i < READS_PER_WAKE; i++) {
        ferry__sockaddr from;
        socklen_t flen = sizeof from;
        ssize_t n = recvfrom(fd, u->buf, u->buf_size, MSG_TRUNC, &from.sa, &flen);
        if (n < 0) break; /* EAGAIN, or an ICMP error for an earlier send: nothing to do */
        if ((size_t)n >= u->buf_size) continue; /* larger than the configured bound: dropped */
        ferry__timer_start(s->worker->loop, &u->idle, o->udp_idle_timeout_ms, idle_expired, s);
        /* The client is the TCP client's address; its port is learned from its first
         * datagram when the request did not say it. */
        if (same_ip(&from, &u->client) &&
            (!ferry__addr_port(&u->client) || same_addr(&from, &u->client))) {
            u->client = from;
            forward_datagram(u, u->buf, (size_t)n, NULL);
        } else {
            return_datagram(u, u->buf, (size_t)n, &from);
        }
    }
}

ferry_err ferry__socks_udp_start(ferry__session *s, ferry__socks_udp **out) {
    const ferry_listener_opts *o = &s->listener->opts;
    ferry__socks_udp *u = ferry__calloc(&s->worker->engine->alloc, sizeof *u);
    if (!u) return FERRY_ENOMEM;
    u->s = s;
    u->fd = -1;
    u->buf_size = (size_t)o->udp_max_datagram + FERRY__SOCKS_UDP_HEADER_MAX + 1;
    u->buf = ferry__malloc(alloc_of(u), u->buf_size);
    /* The client reaches the relay at the address it reached us on. */
    ferry__sockaddr local, peer;
    socklen_t llen = sizeof local, plen = sizeof peer;
    ferry_err err = FERRY_ENOMEM;
    if (u->buf && getsockname(s->cfd, &local.sa, &llen) == 0 &&
        getpeername(s->cfd, &peer.sa, &plen) == 0) {
        err = FERRY_OK;
        /* A port the client announced fixes where datagrams must come from. */
        if (peer.sa.sa_family == AF_INET)
            peer.in.sin_port = htons(s->info.dest_port);
        else
            peer.in6.sin6_port = htons(s->info.dest_port);
        u->client = peer;
        if (local.sa.sa_family == AF_INET)
            local.in.sin_port = 0;
        else
            local.in6.sin6_port = 0;
        u->fd = socket(local.sa.sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (u->fd < 0 || bind(u->fd, &local.sa, ferry__sockaddr_len(&local)) < 0 ||
            getsockname(u->fd, &local.sa, &llen) < 0)
            err = ferry__err_from_errno(errno);
    } else if (u->buf) {
        err = ferry__err_from_errno(errno);
    }
    if (!err) err = ferry__loop_watch(s->worker->loop, u->fd, FERRY__READABLE, udp_io, u);
    if (!err)
        err = ferry__timer_start(s->worker->loop, &u->idle, o->udp_idle_timeout_ms, idle_expired, s);
    char reply[FERRY__SOCKS5_REPLY_MAX];
    size_t n = ferry__socks5_reply(FERRY__SOCKS5_OK, &local, reply);
    if (!err && send(s->cfd, reply, n, MSG_NOSIGNAL) != (ssize_t)n) err = FERRY_ECLOSED;
    if (err) {
        ferry__socks_udp_free(s, u);
        return err;
    }
    s->info.dest_host = "";
    s->info.dest_port = 0;
    *out = u;
    return FERRY_OK;
}

void ferry__socks_udp_free(ferry__session *s, ferry__socks_udp *u) {
    if (!u) return;
    const ferry_allocator *a = &s->worker->engine->alloc;
    if (u->resolving) ferry__resolve_cancel(u->resolving);
    ferry__timer_stop(s->worker->loop, &u->idle);
    if (u->fd >= 0) {
        ferry__loop_unwatch(s->worker->loop, u->fd);
        close(u->fd);
    }
    ferry__free(a, u->pending);
    ferry__free(a, u->buf);
    ferry__free(a, u);
}
