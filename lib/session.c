/* A TCP session: accept -> on_accept -> pick (direction) -> on_route -> resolve -> connect
 * (with failover) -> [parent tunnel] -> relay -> log/close. One worker owns it from start
 * to end. SOCKS sessions (socks_conn.c) put their handshake in front of the pick and their
 * reply between connect and relay. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "route.h"
#include "session_int.h"
#include "tunnel.h"

/* State that exists only while an upstream is being chosen and connected, so that a
 * relaying session carries none of it. */
struct ferry__connect_state {
    ferry__route route;
    ferry__timer timer;       /* connect timeout (the parent's tunnel included) */
    ferry__tunnel *handshake; /* while asking a parent proxy for the tunnel */
};

static const ferry_hook_ops *hooks_of(const ferry__session *s) {
    return s->listener->opts.hooks.ops;
}

/* ---- ending ---- */

/* The log needs the target after the connect state is freed: keep a short copy (or point
 * at the backend's own address string). */
static void keep_target_text(ferry__session *s) {
    ferry__route *rt = &s->cs->route;
    ferry_engine *e = s->worker->engine;
    if (s->target_owned) ferry__free(&e->alloc, s->target_text);
    s->target_owned = 0;
    s->attempts = rt->attempts;
    if (!rt->attempts) {
        s->target_text = NULL;
    } else if (rt->target.backend) {
        s->target_text = rt->target.backend->address;
    } else {
        s->target_text = ferry__strdup(&e->alloc, rt->target_text);
        s->target_owned = s->target_text != NULL;
    }
}

static void free_connect_state(ferry__session *s) {
    ferry__connect_state *cs = s->cs;
    if (!cs) return;
    keep_target_text(s);
    ferry__route_cancel(&cs->route);
    ferry__timer_stop(s->worker->loop, &cs->timer);
    ferry__free(&s->worker->engine->alloc, cs->handshake);
    ferry__free(&s->worker->engine->alloc, cs);
    s->cs = NULL;
}

void ferry__session_end(ferry__session *s, const char *verdict, ferry_err err) {
    ferry__worker *w = s->worker;
    ferry_engine *e = w->engine;
    ferry_listener *l = s->listener;
    const ferry_hook_ops *ops = hooks_of(s);
    void *hud = l->opts.hooks.user_data;

    ferry__relay_stop(&s->relay);
    const ferry_direction_ops *d = l->opts.direction;
    if (s->attached && d->detached) d->detached(l->opts.direction_data, s->attached);
    if (s->ufd >= 0) ferry__loop_unwatch(w->loop, s->ufd);
    ferry__loop_unwatch(w->loop, s->cfd);
    free_connect_state(s);

    ferry_log_record rec = {
        .session = &s->info,
        .target = s->target_text ? s->target_text : "",
        .verdict = verdict,
        .error = err,
        .bytes_from_client = s->relay.dir[0].bytes + s->early_bytes,
        .bytes_to_client = s->relay.dir[1].bytes,
        .connect_us = s->connect_us,
        .duration_us = ferry__now_us() - s->start_us,
        .start_unix_us = s->start_wall_us,
        .connect_attempts = s->attempts,
    };
    if (ops && ops->on_log) ops->on_log(hud, &rec);
    if (l->opts.access_log) {
        char line[1024];
        size_t n = ferry_access_format_record((ferry_access_format)l->opts.access_format, &rec,
                                              line, sizeof line);
        ferry_logger_write(l->opts.access_log, line, n < sizeof line ? n : sizeof line - 1);
    }
    if (ops && ops->on_close) ops->on_close(hud, &s->info);

    if (s->ufd >= 0) close(s->ufd);
    close(s->cfd);
    if (s->target_owned) ferry__free(&e->alloc, s->target_text);
    ferry__socks_free(s);
    ferry__sni_free(s);
    ferry__free(&e->alloc, s->prefix);
    ferry__conn_unlink(&s->base);
    ferry__free(&e->alloc, s);
}

/* Failure before any byte was relayed: answer as the protocol or the direction policy
 * says. */
static void fail_session(ferry__session *s, const char *verdict, ferry_err err) {
    const ferry_direction_ops *d = s->listener->opts.direction;
    if (s->socks) {
        ferry__socks_refuse(s, err);
    } else if (d->answer_error &&
        d->answer_error(s->listener->opts.direction_data, &s->info, err) == FERRY_ANSWER_RESET) {
        struct linger lg = {1, 0}; /* close() then sends RST */
        setsockopt(s->cfd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    ferry__session_end(s, verdict, err);
}

static void abort_session(ferry__conn *c, ferry_err err) {
    ferry__session_end((ferry__session *)c, "drained", err);
}

/* ---- relaying ---- */

static void on_relay_done(ferry__relay *r, void *user_data, ferry_err err) {
    (void)r;
    ferry__session *s = user_data;
    ferry__session_end(s, err == FERRY_OK ? "relayed" : "error", err);
}

static void start_relay(ferry__session *s) {
    ferry_listener *l = s->listener;
    int one = 1;
    setsockopt(s->cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(s->ufd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ferry__relay_opts ro = {.high_water = l->opts.high_water,
                            .idle_ms = l->opts.idle_timeout_ms,
                            .splice = l->opts.splice};
    ferry_err err = ferry__relay_start(&s->relay, s->worker->loop, &s->worker->pool, s->cfd, s->ufd,
                                       &ro, on_relay_done, s);
    if (err) ferry__session_end(s, "error", err);
}

/* ---- choosing and connecting ---- */

static void connect_next(ferry__session *s);

/* Bytes read from the client before routing go upstream first; the relay starts once
 * they are all out (a fresh socket usually takes them in one send). */
static void flush_prefix(ferry__loop *loop, int fd, void *user_data, int mask) {
    (void)mask;
    ferry__session *s = user_data;
    while (s->prefix_off < s->prefix_len) {
        ssize_t n = send(fd, s->prefix + s->prefix_off, s->prefix_len - s->prefix_off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            ferry_err err = ferry__loop_watch(loop, fd, FERRY__WRITABLE, flush_prefix, s);
            if (err) ferry__session_end(s, "error", err);
            return;
        }
        if (n < 0) {
            ferry__session_end(s, "error", ferry__err_from_errno(errno));
            return;
        }
        s->prefix_off += (size_t)n;
    }
    if (s->prefix) {
        ferry__loop_unwatch(loop, fd);
        s->early_bytes += s->prefix_len;
        ferry__free(&s->worker->engine->alloc, s->prefix);
        s->prefix = NULL;
    }
    start_relay(s);
}

static void upstream_ready(ferry__session *s) {
    free_connect_state(s);
    int version = s->listener->opts.send_proxy;
    if (version) { /* a fresh socket takes these few bytes whole */
        char header[128];
        size_t n = ferry__proxy_header_for(&s->info, s->cfd, version, header, sizeof header);
        if (!n || send(s->ufd, header, n, MSG_NOSIGNAL) != (ssize_t)n) {
            ferry__session_end(s, "error", FERRY_EUPSTREAM);
            return;
        }
    }
    if (s->socks && ferry__socks_granted(s) != FERRY_OK) return; /* ended there */
    flush_prefix(s->worker->loop, s->ufd, s, 0);
}

static void connect_failed(ferry__session *s, ferry_err err) {
    ferry__loop_unwatch(s->worker->loop, s->ufd);
    close(s->ufd);
    s->ufd = -1;
    ferry__timer_stop(s->worker->loop, &s->cs->timer);
    ferry__route_connected(&s->cs->route, s->worker, s->listener, err);
    connect_next(s);
}

static void handshake_io(ferry__loop *loop, int fd, void *user_data, int mask) {
    (void)loop;
    (void)fd;
    (void)mask;
    ferry__session *s = user_data;
    ferry_err err = FERRY_OK;
    ferry__tunnel_want want = ferry__tunnel_step(s->cs->handshake, s->ufd, &err);
    if (want == FERRY__TUNNEL_FAILED) {
        connect_failed(s, err);
        return;
    }
    if (want == FERRY__TUNNEL_DONE) {
        ferry__loop_unwatch(s->worker->loop, s->ufd);
        upstream_ready(s);
        return;
    }
    err = ferry__loop_watch(s->worker->loop, s->ufd,
                            want == FERRY__TUNNEL_READ ? FERRY__READABLE : FERRY__WRITABLE,
                            handshake_io, s);
    if (err) fail_session(s, "error", err);
}

static void on_connect_timeout(ferry__loop *loop, void *user_data) {
    (void)loop;
    connect_failed(user_data, FERRY_ETIMEDOUT);
}

static void on_upstream_writable(ferry__loop *loop, int fd, void *user_data, int mask) {
    (void)loop;
    (void)mask;
    ferry__session *s = user_data;
    int soerr = 0;
    socklen_t len = sizeof soerr;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0) soerr = errno;
    if (soerr) {
        connect_failed(s, ferry__err_from_errno(soerr));
        return;
    }
    s->connect_us = ferry__now_us() - s->connect_start_us;
    ferry__route_connected(&s->cs->route, s->worker, s->listener, FERRY_OK);
    const ferry_target *t = &s->cs->route.target;
    const ferry_direction_ops *d = s->listener->opts.direction;
    if (t->backend && d->attached) {
        s->attached = t->backend;
        d->attached(s->listener->opts.direction_data, t->backend);
    }
    if (t->parent) { /* the connect timer keeps running over the parent's answer */
        ferry__connect_state *cs = s->cs;
        if (!cs->handshake) cs->handshake = ferry__malloc(&s->worker->engine->alloc, sizeof *cs->handshake);
        if (!cs->handshake) {
            fail_session(s, "error", FERRY_ENOMEM);
            return;
        }
        if (ferry__tunnel_init(cs->handshake, t->parent, t->host, t->port)) {
            fail_session(s, "error", FERRY_EINVAL);
            return;
        }
        handshake_io(s->worker->loop, fd, s, 0);
        return;
    }
    ferry__loop_unwatch(s->worker->loop, fd);
    upstream_ready(s);
}

static void on_resolved(void *user_data, ferry_err result, const ferry__addrs *addrs) {
    ferry__session *s = user_data;
    ferry__route_resolved(&s->cs->route, s->listener, result, addrs);
    connect_next(s);
}

/* Connect to the next address the route offers; failures come back here until the
 * route has nothing left. */
static void connect_next(ferry__session *s) {
    for (;;) {
        const ferry__sockaddr *a = NULL;
        ferry__route_step step = ferry__route_next(&s->cs->route, s->worker, s->listener, &s->info,
                                                   on_resolved, s, &a);
        if (step == FERRY__ROUTE_PENDING) return;
        if (step == FERRY__ROUTE_REJECTED) {
            fail_session(s, "rejected", FERRY_EREJECTED);
            return;
        }
        if (step == FERRY__ROUTE_NONE) { /* logged with the last error by the route */
            if (s->cs->route.last_error == FERRY_EREJECTED) /* the address is refused */
                fail_session(s, "rejected", FERRY_EREJECTED);
            else
                fail_session(s, "no-upstream", FERRY_ENOUPSTREAM);
            return;
        }
        int fd = socket(a->sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            ferry__route_connected(&s->cs->route, s->worker, s->listener, ferry__err_from_errno(errno));
            continue;
        }
        s->ufd = fd;
        s->connect_start_us = ferry__now_us();
        int rc;
        do rc = connect(fd, &a->sa, ferry__sockaddr_len(a));
        while (rc < 0 && errno == EINTR);
        if (rc < 0 && errno != EINPROGRESS) {
            ferry_err err = ferry__err_from_errno(errno);
            ferry__loop_unwatch(s->worker->loop, fd);
            close(fd);
            s->ufd = -1;
            ferry__route_connected(&s->cs->route, s->worker, s->listener, err);
            continue;
        }
        ferry_err err = ferry__loop_watch(s->worker->loop, fd, FERRY__WRITABLE, on_upstream_writable, s);
        if (!err)
            err = ferry__timer_start(s->worker->loop, &s->cs->timer,
                                     s->listener->opts.connect_timeout_ms, on_connect_timeout, s);
        if (err) fail_session(s, "error", err);
        return;
    }
}

void ferry__session_route(ferry__session *s) {
    s->cs = ferry__calloc(&s->worker->engine->alloc, sizeof *s->cs);
    if (!s->cs) {
        ferry__session_end(s, "error", FERRY_ENOMEM);
        return;
    }
    connect_next(s);
}

/* ---- accepting ---- */

ferry__session *ferry__session_new(ferry__worker *w, ferry_listener *l, int fd,
                                   const ferry__sockaddr *peer) {
    ferry_engine *e = w->engine;
    ferry__session *s = ferry__calloc(&e->alloc, sizeof *s);
    if (!s) {
        close(fd);
        ferry__log(e, FERRY_LOG_ERROR, "%s: out of memory accepting a client", l->name);
        return NULL;
    }
    s->worker = w;
    s->listener = l;
    s->cfd = fd;
    s->ufd = -1;
    s->start_us = ferry__now_us();
    s->start_wall_us = ferry__wall_us();
    ferry__session_info_fill(w, l, peer, &s->info);
    s->base.listener = l;
    s->base.abort = abort_session;
    ferry__conn_link(w, &s->base);

    const ferry_hook_ops *ops = hooks_of(s);
    if (ops && ops->on_accept && ops->on_accept(l->opts.hooks.user_data, &s->info) == FERRY_REJECT) {
        ferry__session_end(s, "rejected", FERRY_EREJECTED);
        return NULL;
    }
    return s;
}

void ferry__session_accept(ferry__worker *w, ferry_listener *l, int fd, const ferry__sockaddr *peer) {
    ferry__session *s = ferry__session_new(w, l, fd, peer);
    if (s) ferry__session_route(s);
}
