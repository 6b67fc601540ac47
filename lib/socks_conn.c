/* SOCKS client connections: the handshake (SOCKS4/4a, SOCKS5 with RFC 1929 credentials)
 * in front of an ordinary TCP session. Bytes accumulate across reads until a whole
 * message is there; the policy is asked at each step (client, credentials, destination);
 * then session.c connects and calls back here for the reply before relaying. */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "route.h"
#include "session_int.h"
#include "socks.h"
#include "socks_udp.h"

enum phase {
    P_FIRST,    /* SOCKS4 request or SOCKS5 greeting */
    P_USERPASS, /* RFC 1929 sub-negotiation */
    P_REQUEST,  /* SOCKS5 request */
    P_ROUTING,  /* connecting upstream: the client waits for our reply */
    P_UDP       /* UDP ASSOCIATE: the TCP connection only holds the association */
};

/* A handshake message is at most 513 bytes (RFC 1929) or 520 (SOCKS4a). */
enum { HANDSHAKE_MAX = 1024 };

struct ferry__socks {
    uint8_t phase;
    uint8_t version;
    ferry__socks_request req;
    char user[FERRY__SOCKS_CRED_MAX]; /* the authenticated user; info.user points here */
    char buf[HANDSHAKE_MAX];
    size_t len;
    ferry__timer timer; /* the whole handshake must fit in the header timeout */
    ferry__socks_udp *udp;
};

static void socks_io(ferry__loop *loop, int fd, void *ud, int mask);

/* Replies are a few bytes on a socket we have not written to yet: the kernel takes them
 * whole, so a short send means the connection is broken. */
static int send_reply(ferry__session *s, const char *p, size_t n) {
    ssize_t sent;
    do sent = send(s->cfd, p, n, MSG_NOSIGNAL);
    while (sent < 0 && errno == EINTR);
    return sent == (ssize_t)n ? 0 : -1;
}

static void end_handshake(ferry__session *s, ferry_err err) {
    ferry__socks_refuse(s, err);
    ferry__session_end(s, err == FERRY_EREJECTED || err == FERRY_EAUTH ? "rejected" : "error", err);
}

static uint8_t socks5_code(ferry_err err) {
    switch (err) {
    case FERRY_EREJECTED:
    case FERRY_EAUTH: return FERRY__SOCKS5_NOT_ALLOWED;
    case FERRY_ECONNREFUSED: return FERRY__SOCKS5_REFUSED;
    case FERRY_ETIMEDOUT:
    case FERRY_ERESOLVE: return FERRY__SOCKS5_HOST_UNREACHABLE;
    case FERRY_ENOTSUP: return FERRY__SOCKS5_CMD_UNSUPPORTED;
    default: return FERRY__SOCKS5_FAILURE;
    }
}

void ferry__socks_refuse(ferry__session *s, ferry_err err) {
    ferry__socks *k = s->socks;
    char reply[FERRY__SOCKS5_REPLY_MAX];
    size_t n;
    if (k->version == 4 && (k->phase == P_FIRST || k->phase == P_ROUTING))
        n = ferry__socks4_reply(FERRY__SOCKS4_REJECTED, reply);
    else if (k->version == 5 && (k->phase == P_REQUEST || k->phase == P_ROUTING))
        n = ferry__socks5_reply(socks5_code(err), NULL, reply);
    else
        return; /* nothing the client is waiting for can say it */
    send_reply(s, reply, n);
}

ferry_err ferry__socks_granted(ferry__session *s) {
    ferry__socks *k = s->socks;
    char reply[FERRY__SOCKS5_REPLY_MAX];
    size_t n;
    if (k->version == 4) {
        n = ferry__socks4_reply(FERRY__SOCKS4_GRANTED, reply);
    } else {
        ferry__sockaddr bound;
        socklen_t len = sizeof bound;
        if (getsockname(s->ufd, &bound.sa, &len) < 0) memset(&bound, 0, sizeof bound);
        n = ferry__socks5_reply(FERRY__SOCKS5_OK, bound.sa.sa_family ? &bound : NULL, reply);
    }
    /* Bytes the client sent after its request belong upstream, ahead of the relay; the
     * fresh upstream socket takes them whole. */
    int broken = send_reply(s, reply, n);
    if (!broken && k->len) broken = send(s->ufd, k->buf, k->len, MSG_NOSIGNAL) != (ssize_t)k->len;
    if (broken) {
        ferry__session_end(s, "error", FERRY_ECLOSED);
        return FERRY_ECLOSED;
    }
    s->early_bytes += k->len;
    k->len = 0;
    return FERRY_OK;
}

static void handshake_expired(ferry__loop *loop, void *ud) {
    (void)loop;
    ferry__session_end(ud, "error", FERRY_ETIMEDOUT);
}

static void consume(ferry__socks *k, size_t n) {
    memmove(k->buf, k->buf + n, k->len - n);
    k->len -= n;
}

/* The destination is known and the client is who it says: ask the policy, then connect
 * (or open the UDP relay). */
static void start_request(ferry__session *s) {
    ferry__socks *k = s->socks;
    ferry_session_info *info = &s->info;
    info->dest_host = k->req.host;
    info->dest_port = k->req.port;
    info->proxy_protocol = k->version == 4 ? FERRY_PROXY_SOCKS4 : FERRY_PROXY_SOCKS5;
    if (k->req.cmd == FERRY__SOCKS_BIND) {
        ferry__log(s->worker->engine, FERRY_LOG_INFO, "%s: %s: SOCKS BIND is not supported",
                   s->listener->name, info->client_addr);
        end_handshake(s, FERRY_ENOTSUP);
        return;
    }
    if (k->req.cmd == FERRY__SOCKS_UDP_ASSOCIATE) {
        ferry_err err = ferry__socks_udp_start(s, &k->udp);
        if (err) {
            end_handshake(s, err);
            return;
        }
        ferry__timer_stop(s->worker->loop, &k->timer);
        k->phase = P_UDP;
        return;
    }
    ferry_err err = ferry__route_admit_request(s->listener, info);
    if (err) {
        end_handshake(s, err);
        return;
    }
    k->phase = P_ROUTING;
    ferry__timer_stop(s->worker->loop, &k->timer);
    ferry__loop_unwatch(s->worker->loop, s->cfd); /* the client waits for our reply */
    ferry__session_route(s);
}

static void socks4_request(ferry__session *s, size_t used) {
    ferry__socks *k = s->socks;
    consume(k, used);
    if (ferry__route_admit_client(s->listener, &s->info)) {
        end_handshake(s, FERRY_EREJECTED);
        return;
    }
    /* SOCKS4 carries a user id but no password: it passes only where a hook accepts it. */
    if (ferry__route_auth_required(s->listener, &s->info)) {
        memcpy(k->user, k->req.user, sizeof k->user);
        if (ferry__route_auth(s->listener, &s->info, k->user[0] ? k->user : NULL, "")) {
            end_handshake(s, FERRY_EAUTH);
            return;
        }
    }
    start_request(s);
}

/* Both sub-steps return 0 to go on, -1 when the session was ended (s is gone). */
static int socks5_greeting(ferry__session *s, unsigned methods) {
    ferry__socks *k = s->socks;
    char reply[2];
    uint8_t method = FERRY__SOCKS5_NO_METHOD;
    if (ferry__route_admit_client(s->listener, &s->info) == FERRY_OK) {
        int required = ferry__route_auth_required(s->listener, &s->info);
        int offers_none = (methods & (1u << FERRY__SOCKS5_NO_AUTH)) != 0;
        int offers_userpass = (methods & (1u << FERRY__SOCKS5_USERPASS)) != 0;
        if (offers_userpass && (required || !offers_none))
            method = FERRY__SOCKS5_USERPASS;
        else if (offers_none && !required)
            method = FERRY__SOCKS5_NO_AUTH;
        else
            ferry__log(s->worker->engine, FERRY_LOG_INFO,
                       "%s: %s: SOCKS5 client offers no acceptable authentication method",
                       s->listener->name, s->info.client_addr);
    }
    if (send_reply(s, reply, ferry__socks5_method_reply(method, reply)) ||
        method == FERRY__SOCKS5_NO_METHOD) {
        ferry__session_end(s, "rejected", FERRY_EAUTH);
        return -1;
    }
    k->phase = method == FERRY__SOCKS5_USERPASS ? P_USERPASS : P_REQUEST;
    return 0;
}

static int socks5_userpass(ferry__session *s, size_t used, const char *password) {
    ferry__socks *k = s->socks;
    consume(k, used);
    char reply[2];
    ferry_err err = ferry__route_auth(s->listener, &s->info, k->user, password);
    if (send_reply(s, reply, ferry__socks5_auth_reply(err ? 1 : 0, reply)) || err) {
        ferry__session_end(s, "rejected", FERRY_EAUTH);
        return -1;
    }
    k->phase = P_REQUEST;
    return 0;
}

/* Handle every whole message in the buffer. 0: wait for more; -1: the session ended. */
static int process(ferry__session *s) {
    ferry__socks *k = s->socks;
    while (k->len && k->phase < P_ROUTING) {
        int r;
        if (k->phase == P_FIRST && k->buf[0] == 4) {
            k->version = 4;
            r = ferry__socks4_parse_request(k->buf, k->len, &k->req);
            if (r > 0) {
                socks4_request(s, (size_t)r);
                return -1; /* handed on (or ended): the caller must not touch s */
            }
        } else if (k->phase == P_FIRST) {
            k->version = 5;
            unsigned methods = 0;
            r = ferry__socks5_parse_greeting(k->buf, k->len, &methods);
            if (r > 0) {
                consume(k, (size_t)r);
                if (socks5_greeting(s, methods)) return -1;
                continue;
            }
        } else if (k->phase == P_USERPASS) {
            char password[FERRY__SOCKS_CRED_MAX];
            r = ferry__socks5_parse_userpass(k->buf, k->len, k->user, password);
            if (r > 0) {
                int ended = socks5_userpass(s, (size_t)r, password);
                memset(password, 0, sizeof password);
                if (ended) return -1;
                continue;
            }
        } else {
            r = ferry__socks5_parse_request(k->buf, k->len, &k->req);
            if (r > 0) {
                consume(k, (size_t)r);
                start_request(s);
                return -1; /* handed on (or ended): the caller must not touch s */
            }
        }
        if (r == 0) return 0;
        ferry__log(s->worker->engine, FERRY_LOG_INFO, "%s: %s: bad SOCKS%u handshake: %s",
                   s->listener->name, s->info.client_addr, k->version,
                   ferry__socks_error_text(r));
        ferry_err err = r == FERRY__SOCKS_E_COMMAND ? FERRY_ENOTSUP : FERRY_EPROTO;
        if (k->version == 5 && k->phase == P_REQUEST) {
            char reply[FERRY__SOCKS5_REPLY_MAX];
            uint8_t code = r == FERRY__SOCKS_E_COMMAND ? FERRY__SOCKS5_CMD_UNSUPPORTED
                           : r == FERRY__SOCKS_E_ATYP  ? FERRY__SOCKS5_ATYP_UNSUPPORTED
                                                       : FERRY__SOCKS5_FAILURE;
            send_reply(s, reply, ferry__socks5_reply(code, NULL, reply));
            ferry__session_end(s, "rejected", err);
        } else {
            end_handshake(s, err);
        }
        return -1;
    }
    return 0;
}

static void socks_io(ferry__loop *loop, int fd, void *ud, int mask) {
    (void)loop;
    (void)mask;
    ferry__session *s = ud;
    ferry__socks *k = s->socks;
    if (k->phase == P_UDP) { /* the association lives as long as this connection */
        char sink[256];
        ssize_t n = recv(fd, sink, sizeof sink, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            ferry__session_end(s, "relayed", FERRY_OK);
        return;
    }
    if (k->len == sizeof k->buf) { /* no message is this long: not SOCKS */
        end_handshake(s, FERRY_EPROTO);
        return;
    }
    ssize_t n;
    do n = recv(fd, k->buf + k->len, sizeof k->buf - k->len, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0) {
        ferry__session_end(s, "error", n == 0 ? FERRY_ECLOSED : ferry__err_from_errno(errno));
        return;
    }
    k->len += (size_t)n;
    process(s);
}

void ferry__socks_accept(ferry__worker *w, ferry_listener *l, int fd, const ferry__sockaddr *peer) {
    ferry__session *s = ferry__session_new(w, l, fd, peer);
    if (!s) return;
    s->socks = ferry__calloc(&w->engine->alloc, sizeof *s->socks);
    if (!s->socks) {
        ferry__session_end(s, "error", FERRY_ENOMEM);
        return;
    }
    ferry_err err = ferry__loop_watch(w->loop, fd, FERRY__READABLE, socks_io, s);
    if (!err)
        err = ferry__timer_start(w->loop, &s->socks->timer, l->opts.header_timeout_ms,
                                 handshake_expired, s);
    if (err) ferry__session_end(s, "error", err);
}

void ferry__socks_free(ferry__session *s) {
    ferry__socks *k = s->socks;
    if (!k) return;
    ferry__timer_stop(s->worker->loop, &k->timer);
    ferry__socks_udp_free(s, k->udp);
    ferry__free(&s->worker->engine->alloc, k);
    s->socks = NULL;
}
