#define _GNU_SOURCE
#include "tunnel.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "http_forward.h"
#include "internal.h"
#include "socks.h"

enum phase {
    HTTP_SEND,
    HTTP_READ,
    S5_GREETING_SEND,
    S5_METHOD_READ,
    S5_AUTH_SEND,
    S5_AUTH_READ,
    S5_CONNECT_SEND,
    S5_REPLY_READ
};

static ferry_err build_connect(ferry__tunnel *t) {
    char auth[FERRY__TUNNEL_BUF / 2];
    const ferry_parent *p = t->parent;
    int v6 = strchr(t->host, ':') != NULL;
    int n;
    if (p->user[0]) {
        if (!ferry__basic_encode(p->user, p->password, auth, sizeof auth)) return FERRY_EINVAL;
        n = snprintf(t->out, sizeof t->out,
                     v6 ? "CONNECT [%s]:%u HTTP/1.1\r\nHost: [%s]:%u\r\nProxy-Authorization: %s\r\n\r\n"
                        : "CONNECT %s:%u HTTP/1.1\r\nHost: %s:%u\r\nProxy-Authorization: %s\r\n\r\n",
                     t->host, (unsigned)t->port, t->host, (unsigned)t->port, auth);
    } else {
        n = snprintf(t->out, sizeof t->out,
                     v6 ? "CONNECT [%s]:%u HTTP/1.1\r\nHost: [%s]:%u\r\n\r\n"
                        : "CONNECT %s:%u HTTP/1.1\r\nHost: %s:%u\r\n\r\n",
                     t->host, (unsigned)t->port, t->host, (unsigned)t->port);
    }
    if (n < 0 || (size_t)n >= sizeof t->out) return FERRY_EINVAL;
    t->out_len = (size_t)n;
    return FERRY_OK;
}

ferry_err ferry__tunnel_init(ferry__tunnel *t, const ferry_parent *parent, const char *host,
                             uint16_t port) {
    memset(t, 0, sizeof *t);
    size_t n = strlen(host);
    if (n >= sizeof t->host) return FERRY_EINVAL;
    memcpy(t->host, host, n + 1);
    t->parent = parent;
    t->port = port;
    if (parent->kind == FERRY_PARENT_HTTP) {
        t->phase = HTTP_SEND;
        return build_connect(t);
    }
    t->phase = S5_GREETING_SEND;
    t->out_len = ferry__socks5_client_greeting(parent->user[0] != '\0', t->out);
    return FERRY_OK;
}

/* Status of a complete CONNECT response head: "HTTP/1.x NNN ...". */
static int http_status(const char *p, size_t n) {
    if (n < 12 || memcmp(p, "HTTP/1.", 7) != 0 || p[8] != ' ') return -1;
    int s = 0;
    for (int i = 9; i < 12; i++) {
        if (p[i] < '0' || p[i] > '9') return -1;
        s = s * 10 + (p[i] - '0');
    }
    return s;
}

/* Length of the complete reply at the start of in[0..n), 0 if partial, -1 if malformed. */
static long reply_length(const ferry__tunnel *t, const char *in, size_t n) {
    uint8_t byte = 0;
    switch (t->phase) {
    case HTTP_READ: {
        const char *end = memmem(in, n, "\r\n\r\n", 4);
        return end ? (long)(end - in) + 4 : 0;
    }
    case S5_METHOD_READ: return ferry__socks5_client_parse_method(in, n, &byte);
    case S5_AUTH_READ: return ferry__socks5_client_parse_auth(in, n, &byte);
    default: return ferry__socks5_client_parse_reply(in, n, &byte);
    }
}

/* Read exactly one reply into t->in: peek, and take only the bytes that belong to it.
 * 1: complete; 0: more needed; -1: *err set. */
static int read_reply(ferry__tunnel *t, int fd, ferry_err *err) {
    size_t room = sizeof t->in - t->in_len;
    if (room == 0) {
        *err = FERRY_EPROTO; /* a reply this long is not one we asked for */
        return -1;
    }
    ssize_t n;
    do n = recv(fd, t->in + t->in_len, room, MSG_PEEK);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
        *err = ferry__err_from_errno(errno);
        return -1;
    }
    if (n == 0) {
        *err = FERRY_ECLOSED;
        return -1;
    }
    long len = reply_length(t, t->in, t->in_len + (size_t)n);
    if (len < 0) {
        *err = FERRY_EPROTO;
        return -1;
    }
    size_t take = len > 0 ? (size_t)len - t->in_len : (size_t)n;
    ssize_t got;
    do got = recv(fd, t->in + t->in_len, take, 0);
    while (got < 0 && errno == EINTR);
    if (got != (ssize_t)take) { /* peeked bytes are there: anything else is a broken socket */
        *err = got < 0 ? ferry__err_from_errno(errno) : FERRY_EPROTO;
        return -1;
    }
    t->in_len += take;
    return len > 0;
}

/* 1: sent; 0: the socket is full; -1: *err set. */
static int send_out(ferry__tunnel *t, int fd, ferry_err *err) {
    while (t->out_off < t->out_len) {
        ssize_t n = send(fd, t->out + t->out_off, t->out_len - t->out_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
            *err = ferry__err_from_errno(errno);
            return -1;
        }
        t->out_off += (size_t)n;
    }
    t->out_off = t->out_len = 0;
    return 1;
}

/* A complete reply is in t->in: decide, and prepare the next message if there is one. */
static ferry__tunnel_want on_reply(ferry__tunnel *t, ferry_err *err) {
    uint8_t code = 0;
    size_t n = t->in_len;
    t->in_len = 0;
    switch (t->phase) {
    case HTTP_READ: {
        int status = http_status(t->in, n);
        if (status >= 200 && status <= 299) return FERRY__TUNNEL_DONE;
        *err = status == 407 ? FERRY_EAUTH : status == 403 ? FERRY_EREJECTED : FERRY_EUPSTREAM;
        if (status < 0) *err = FERRY_EPROTO;
        return FERRY__TUNNEL_FAILED;
    }
    case S5_METHOD_READ:
        ferry__socks5_client_parse_method(t->in, n, &code);
        if (code == FERRY__SOCKS5_USERPASS && t->parent->user[0]) {
            t->out_len = ferry__socks5_client_userpass(t->parent->user, t->parent->password, t->out,
                                                       sizeof t->out);
            if (!t->out_len) {
                *err = FERRY_EINVAL;
                return FERRY__TUNNEL_FAILED;
            }
            t->phase = S5_AUTH_SEND;
            return FERRY__TUNNEL_WRITE;
        }
        if (code != FERRY__SOCKS5_NO_AUTH) {
            *err = FERRY_EAUTH; /* no method we can speak */
            return FERRY__TUNNEL_FAILED;
        }
        break;
    case S5_AUTH_READ:
        ferry__socks5_client_parse_auth(t->in, n, &code);
        if (code != 0) {
            *err = FERRY_EAUTH;
            return FERRY__TUNNEL_FAILED;
        }
        break;
    default:
        ferry__socks5_client_parse_reply(t->in, n, &code);
        if (code == FERRY__SOCKS5_OK) return FERRY__TUNNEL_DONE;
        *err = code == FERRY__SOCKS5_NOT_ALLOWED ? FERRY_EREJECTED
               : code == FERRY__SOCKS5_REFUSED   ? FERRY_ECONNREFUSED
                                                 : FERRY_EUPSTREAM;
        return FERRY__TUNNEL_FAILED;
    }
    t->out_len = ferry__socks5_client_connect(t->host, t->port, t->out, sizeof t->out);
    if (!t->out_len) {
        *err = FERRY_EINVAL;
        return FERRY__TUNNEL_FAILED;
    }
    t->phase = S5_CONNECT_SEND;
    return FERRY__TUNNEL_WRITE;
}

ferry__tunnel_want ferry__tunnel_step(ferry__tunnel *t, int fd, ferry_err *err) {
    for (;;) {
        int r;
        switch (t->phase) {
        case HTTP_SEND:
        case S5_GREETING_SEND:
        case S5_AUTH_SEND:
        case S5_CONNECT_SEND:
            r = send_out(t, fd, err);
            if (r < 0) return FERRY__TUNNEL_FAILED;
            if (r == 0) return FERRY__TUNNEL_WRITE;
            t->phase++; /* each send phase is followed by its read phase */
            break;
        default:
            r = read_reply(t, fd, err);
            if (r < 0) return FERRY__TUNNEL_FAILED;
            if (r == 0) return FERRY__TUNNEL_READ;
            ferry__tunnel_want next = on_reply(t, err);
            if (next != FERRY__TUNNEL_WRITE) return next;
            break;
        }
    }
}
