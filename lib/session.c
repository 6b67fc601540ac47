/* A TCP session: accept -> on_accept -> pick (direction) -> on_route -> resolve -> connect
 * (with failover) -> relay -> log/close. One worker owns it from start to end. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "engine_int.h"

/* State that exists only while an upstream is being chosen and connected, so that a
 * relaying session carries none of it. */
typedef struct connect_state {
    ferry_target target;
    ferry__addrs addrs;
    unsigned next_addr;
    ferry__resolve_req *resolve;
    ferry__timer timer;
    uintptr_t policy_state;
    ferry_err last_error;
} connect_state;

typedef struct ferry__session {
    ferry__conn base;
    ferry__worker *worker;
    ferry_listener *listener;
    int cfd, ufd;
    unsigned attempts;
    ferry_session_info info;
    uint64_t start_us, connect_start_us, connect_us;
    int64_t start_wall_us;
    connect_state *cs;
    char *target_text; /* owned unless it points at a backend's address */
    int target_owned;
    ferry__relay relay;
} ferry__session;

static const ferry_hook_ops *hooks_of(const ferry__session *s) {
    return s->listener->opts.hooks.ops;
}

/* ---- ending ---- */

static void set_target_text(ferry__session *s, const ferry_target *t) {
    ferry_engine *e = s->worker->engine;
    if (s->target_owned) ferry__free(&e->alloc, s->target_text);
    s->target_text = NULL;
    s->target_owned = 0;
    if (t->backend) {
        s->target_text = t->backend->address;
        return;
    }
    char buf[FERRY_HOST_MAX + 16];
    snprintf(buf, sizeof buf, strchr(t->host, ':') ? "[%s]:%u" : "%s:%u", t->host, (unsigned)t->port);
    s->target_text = ferry__strdup(&e->alloc, buf);
    s->target_owned = s->target_text != NULL;
}

static void free_connect_state(ferry__session *s) {
    connect_state *cs = s->cs;
    if (!cs) return;
    if (cs->resolve) ferry__resolve_cancel(cs->resolve);
    ferry__timer_stop(s->worker->loop, &cs->timer);
    ferry__free(&s->worker->engine->alloc, cs);
    s->cs = NULL;
}

static void end_session(ferry__session *s, const char *verdict, ferry_err err) {
    ferry__worker *w = s->worker;
    ferry_engine *e = w->engine;
    ferry_listener *l = s->listener;
    const ferry_hook_ops *ops = hooks_of(s);
    void *hud = l->opts.hooks.user_data;

    ferry__relay_stop(&s->relay);
    if (s->ufd >= 0) ferry__loop_unwatch(w->loop, s->ufd);
    ferry__loop_unwatch(w->loop, s->cfd);
    free_connect_state(s);

    ferry_log_record rec = {
        .session = &s->info,
        .target = s->target_text ? s->target_text : "",
        .verdict = verdict,
        .error = err,
        .bytes_from_client = s->relay.dir[0].bytes,
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
    ferry__conn_unlink(&s->base);
    ferry__free(&e->alloc, s);
}

/* Failure before any byte was relayed: answer as the direction policy says. */
static void fail_session(ferry__session *s, const char *verdict, ferry_err err) {
    const ferry_direction_ops *d = s->listener->opts.direction;
    if (d->answer_error &&
        d->answer_error(s->listener->opts.direction_data, &s->info, err) == FERRY_ANSWER_RESET) {
        struct linger lg = {1, 0}; /* close() then sends RST */
        setsockopt(s->cfd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    end_session(s, verdict, err);
}

static void abort_session(ferry__conn *c, ferry_err err) {
    end_session((ferry__session *)c, "drained", err);
}

/* ---- relaying ---- */

static void on_relay_done(ferry__relay *r, void *user_data, ferry_err err) {
    (void)r;
    ferry__session *s = user_data;
    end_session(s, err == FERRY_OK ? "relayed" : "error", err);
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
    if (err) end_session(s, "error", err);
}

/* ---- choosing and connecting ---- */

static void next_attempt(ferry__session *s);
static void try_next_address(ferry__session *s);

static void report_connect(ferry__session *s, ferry_err result) {
    const ferry_direction_ops *d = s->listener->opts.direction;
    if (d->connect_result) d->connect_result(s->listener->opts.direction_data, &s->cs->target, result);
}

static void connect_failed(ferry__session *s, ferry_err err) {
    ferry__loop_unwatch(s->worker->loop, s->ufd);
    close(s->ufd);
    s->ufd = -1;
    ferry__timer_stop(s->worker->loop, &s->cs->timer);
    s->cs->last_error = err;
    if (s->cs->next_addr < s->cs->addrs.count) {
        try_next_address(s);
        return;
    }
    report_connect(s, err);
    ferry__log(s->worker->engine, FERRY_LOG_WARN, "%s: connect to %s failed: %s",
               s->listener->name, s->target_text ? s->target_text : "?", ferry_strerror(err));
    next_attempt(s);
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
    ferry__loop_unwatch(s->worker->loop, fd);
    s->connect_us = ferry__now_us() - s->connect_start_us;
    report_connect(s, FERRY_OK);
    free_connect_state(s);
    start_relay(s);
}

static void try_next_address(ferry__session *s) {
    connect_state *cs = s->cs;
    ferry__sockaddr *a = &cs->addrs.addr[cs->next_addr++];
    int fd = socket(a->sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        cs->last_error = ferry__err_from_errno(errno);
        if (cs->next_addr < cs->addrs.count)
            try_next_address(s);
        else
            next_attempt(s);
        return;
    }
    s->ufd = fd;
    s->connect_start_us = ferry__now_us();
    int rc;
    do rc = connect(fd, &a->sa, ferry__sockaddr_len(a));
    while (rc < 0 && errno == EINTR);
    if (rc < 0 && errno != EINPROGRESS) {
        connect_failed(s, ferry__err_from_errno(errno));
        return;
    }
    ferry_err err = ferry__loop_watch(s->worker->loop, fd, FERRY__WRITABLE, on_upstream_writable, s);
    if (!err)
        err = ferry__timer_start(s->worker->loop, &cs->timer, s->listener->opts.connect_timeout_ms,
                                 on_connect_timeout, s);
    if (err) fail_session(s, "error", err);
}

static void on_resolved(void *user_data, ferry_err result, const ferry__addrs *addrs) {
    ferry__session *s = user_data;
    s->cs->resolve = NULL;
    if (result) {
        s->cs->last_error = result;
        report_connect(s, result);
        ferry__log(s->worker->engine, FERRY_LOG_WARN, "%s: cannot resolve %s: %s",
                   s->listener->name, s->target_text ? s->target_text : "?", ferry_strerror(result));
        next_attempt(s);
        return;
    }
    s->cs->addrs = *addrs;
    s->cs->next_addr = 0;
    try_next_address(s);
}

/* Ask the direction (then on_route) for the next upstream and start connecting to it. */
static void next_attempt(ferry__session *s) {
    ferry_listener *l = s->listener;
    ferry_engine *e = s->worker->engine;
    connect_state *cs = s->cs;
    const ferry_hook_ops *ops = hooks_of(s);
    unsigned max = l->opts.max_connect_attempts;
    for (;;) {
        if (max && s->attempts >= max) break;
        memset(&cs->target, 0, sizeof cs->target);
        ferry_err err = l->opts.direction->pick(l->opts.direction_data, &s->info, s->attempts,
                                                &cs->policy_state, &cs->target);
        if (err) {
            if (err != FERRY_ENOUPSTREAM) {
                fail_session(s, "error", err);
                return;
            }
            break;
        }
        if (ops && ops->on_route &&
            ops->on_route(l->opts.hooks.user_data, &s->info, s->attempts, &cs->target) == FERRY_REJECT) {
            fail_session(s, "rejected", FERRY_EREJECTED);
            return;
        }
        s->attempts++;
        set_target_text(s, &cs->target);
        cs->addrs.count = 0;
        cs->next_addr = 0;
        if (cs->target.backend) {
            cs->addrs.count = 1;
            cs->addrs.addr[0] = cs->target.backend->addr;
        } else {
            cs->target.host[FERRY_HOST_MAX - 1] = '\0';
            ferry__resolve_req *pending = NULL;
            err = ferry__resolve(e->resolver, s->worker->loop, cs->target.host, cs->target.port,
                                 on_resolved, s, &pending, &cs->addrs);
            if (err == FERRY_OK && pending) {
                cs->resolve = pending;
                return;
            }
            if (err) {
                cs->last_error = err;
                report_connect(s, err);
                continue;
            }
        }
        try_next_address(s);
        return;
    }
    ferry__log(e, FERRY_LOG_WARN, "%s: no upstream available for %s after %u attempt(s)%s%s",
               l->name, s->info.client_addr, s->attempts, cs->last_error ? "; last error: " : "",
               cs->last_error ? ferry_strerror(cs->last_error) : "");
    fail_session(s, "no-upstream", FERRY_ENOUPSTREAM);
}

/* ---- accepting ---- */

void ferry__session_accept(ferry__worker *w, ferry_listener *l, int fd, const ferry__sockaddr *peer) {
    ferry_engine *e = w->engine;
    ferry__session *s = ferry__calloc(&e->alloc, sizeof *s);
    if (!s) {
        close(fd);
        ferry__log(e, FERRY_LOG_ERROR, "%s: out of memory accepting a client", l->name);
        return;
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
        end_session(s, "rejected", FERRY_EREJECTED);
        return;
    }
    s->cs = ferry__calloc(&e->alloc, sizeof *s->cs);
    if (!s->cs) {
        end_session(s, "error", FERRY_ENOMEM);
        return;
    }
    next_attempt(s);
}
