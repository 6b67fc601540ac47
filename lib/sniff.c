/* One port for HTTP and SOCKS: a SOCKS client speaks first with its version byte, 4 or 5,
 * which no HTTP request line starts with. The connection waits (bounded by the header
 * timeout) for that first byte, peeks at it and is handed to the protocol it names. */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "engine_int.h"

typedef struct sniff {
    ferry__conn base;
    int fd;
    ferry__sockaddr peer;
    ferry__timer timer;
} sniff;

/* handed_on: the fd now belongs (and is watched by) its protocol's connection. */
static void sniff_free(sniff *c, int handed_on) {
    ferry__worker *w = c->base.worker;
    ferry__timer_stop(w->loop, &c->timer);
    if (!handed_on) {
        ferry__loop_unwatch(w->loop, c->fd);
        close(c->fd);
    }
    ferry__conn_unlink(&c->base);
    ferry__free(&w->engine->alloc, c);
}

static void sniff_abort(ferry__conn *base, ferry_err why) {
    (void)why;
    sniff_free((sniff *)base, 0);
}

/* Shutdown: nothing started yet, so nothing to finish. */
static void sniff_drain(ferry__conn *base) { sniff_free((sniff *)base, 0); }

static void sniff_expired(ferry__loop *loop, void *ud) {
    (void)loop;
    sniff_free(ud, 0);
}

static void sniff_io(ferry__loop *loop, int fd, void *ud, int mask) {
    (void)loop;
    (void)mask;
    sniff *c = ud;
    unsigned char first;
    ssize_t n;
    do n = recv(fd, &first, 1, MSG_PEEK);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0) {
        sniff_free(c, 0);
        return;
    }
    ferry__worker *w = c->base.worker;
    ferry_listener *l = c->base.listener;
    ferry__sockaddr peer = c->peer;
    ferry__loop_unwatch(w->loop, fd);
    /* The new owner links itself before this one unlinks, so a draining worker never
     * sees zero connections in between. */
    if (first == 4 || first == 5)
        ferry__socks_accept(w, l, fd, &peer);
    else
        ferry__http_accept(w, l, fd, &peer);
    sniff_free(c, 1);
}

void ferry__sniff_accept(ferry__worker *w, ferry_listener *l, int fd, const ferry__sockaddr *peer) {
    sniff *c = ferry__calloc(&w->engine->alloc, sizeof *c);
    if (!c) {
        close(fd);
        ferry__log(w->engine, FERRY_LOG_ERROR, "%s: out of memory accepting a client", l->name);
        return;
    }
    c->fd = fd;
    c->peer = *peer;
    c->base.listener = l;
    c->base.abort = sniff_abort;
    c->base.drain = sniff_drain;
    ferry__conn_link(w, &c->base);
    ferry_err err = ferry__loop_watch(w->loop, fd, FERRY__READABLE, sniff_io, c);
    if (!err) err = ferry__timer_start(w->loop, &c->timer, l->opts.header_timeout_ms, sniff_expired, c);
    if (err) sniff_free(c, 0);
}
