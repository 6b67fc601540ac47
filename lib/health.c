/* Active health checks and background re-resolution of named backends, for every pool,
 * on worker 0's loop: non-blocking sockets, timers and the engine's asynchronous
 * resolver, never a blocking call. A backend's check and lookup state is touched only on
 * that thread; what picks read of it (check_down, the address) is atomic. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "engine_int.h"

enum { CHECK_IDLE, CHECK_CONNECTING, CHECK_SENDING, CHECK_READING };
enum { PATH_MAX_LEN = 1024, REQUEST_MAX = PATH_MAX_LEN + 2 * FERRY_HOST_MAX + 128,
       STATUS_LINE_MIN = 12 /* "HTTP/1.1 200" */, HEALTH_COUNT_MAX = 1000 };

void ferry_health_opts_init(ferry_health_opts *o) {
    memset(o, 0, sizeof *o);
    o->kind = FERRY_HEALTH_NONE;
    o->interval_ms = 2000;
    o->timeout_ms = 1000;
    o->rise = 2;
    o->fall = 3;
    o->status_min = 200;
    o->status_max = 399;
}

/* Visible ASCII only, so that it can go into a request line or header as is. */
static int visible(const char *s, size_t max) {
    size_t n = 0;
    for (; s[n]; n++)
        if (n >= max || s[n] <= 0x20 || s[n] >= 0x7f) return 0;
    return n > 0;
}

ferry_err ferry_pool_set_health_check(ferry_pool *p, const ferry_health_opts *opts) {
    if (!p) return FERRY_EINVAL;
    ferry_health_opts o;
    if (opts)
        o = *opts;
    else
        ferry_health_opts_init(&o);
    if ((unsigned)o.kind > FERRY_HEALTH_HTTP) return FERRY_EINVAL;
    if (o.kind != FERRY_HEALTH_NONE &&
        (o.interval_ms == 0 || o.timeout_ms == 0 || o.rise == 0 || o.fall == 0 ||
         o.rise > HEALTH_COUNT_MAX || o.fall > HEALTH_COUNT_MAX))
        return FERRY_EINVAL;
    if (o.kind == FERRY_HEALTH_HTTP) {
        if (!o.path) o.path = "/";
        if (o.path[0] != '/' || !visible(o.path, PATH_MAX_LEN) ||
            (o.host && !visible(o.host, FERRY_HOST_MAX)) || o.status_min < 100 ||
            o.status_max > 599 || o.status_min > o.status_max)
            return FERRY_EINVAL;
    } else {
        o.path = o.host = NULL;
    }
    ferry_engine *e = p->engine;
    if (atomic_load(&e->state) != ENGINE_NEW) return FERRY_ESTATE;
    char *path = o.path ? ferry__strdup(&e->alloc, o.path) : NULL;
    char *host = o.host ? ferry__strdup(&e->alloc, o.host) : NULL;
    if ((o.path && !path) || (o.host && !host)) {
        ferry__free(&e->alloc, path);
        ferry__free(&e->alloc, host);
        return FERRY_ENOMEM;
    }
    ferry__free(&e->alloc, (char *)p->health.path);
    ferry__free(&e->alloc, (char *)p->health.host);
    o.path = path;
    o.host = host;
    p->health = o;
    return FERRY_OK;
}

ferry_err ferry_pool_set_resolve_interval(ferry_pool *p, unsigned ms) {
    if (!p) return FERRY_EINVAL;
    if (atomic_load(&p->engine->state) != ENGINE_NEW) return FERRY_ESTATE;
    p->resolve_ms = ms;
    return FERRY_OK;
}

static ferry__loop *health_loop(const ferry_pool *p) { return p->engine->workers[0].loop; }

/* ---- health checks ---- */

/* A verdict: `fall` failures in a row take an up backend down, `rise` passes in a row
 * bring a down one back. */
static void record(ferry_backend *b, int passed, const char *why) {
    ferry_pool *p = b->pool;
    int down = atomic_load(&b->check_down);
    if (passed ? !down : down) {
        b->check_streak = 0;
        return;
    }
    if (++b->check_streak < (down ? p->health.rise : p->health.fall)) return;
    b->check_streak = 0;
    atomic_store(&b->check_down, !down);
    if (down) {
        atomic_store(&b->down_until_ms, 0); /* fresher news than a passive mark */
        ferry__log(p->engine, FERRY_LOG_INFO, "pool %s: backend %s is up (%u health checks passed)",
                   p->name, b->address, p->health.rise);
    } else {
        ferry__log(p->engine, FERRY_LOG_WARN,
                   "pool %s: backend %s is down (%u health checks failed; last: %s)", p->name,
                   b->address, p->health.fall, why ? why : "?");
    }
}

static void check_start(ferry__loop *loop, void *ud);

/* The check is over: passed 1, failed 0, or -1 for no verdict (our own OOM). The next
 * one starts an interval after this one started. */
static void check_end(ferry__loop *loop, ferry_backend *b, int passed, const char *why) {
    ferry_pool *p = b->pool;
    if (b->check_fd >= 0) {
        ferry__loop_unwatch(loop, b->check_fd);
        close(b->check_fd);
        b->check_fd = -1;
    }
    b->check_phase = CHECK_IDLE;
    if (passed >= 0) record(b, passed, why);
    if (atomic_load(&b->admin) == FERRY__BACKEND_REMOVED) {
        ferry__timer_stop(loop, &b->check_timer);
        return;
    }
    uint64_t next = b->check_started_ms + p->health.interval_ms, now = ferry__loop_now(loop);
    if (ferry__timer_start(loop, &b->check_timer, next > now ? next - now : 0, check_start, b))
        ferry__log(p->engine, FERRY_LOG_ERROR,
                   "pool %s: health checks of %s stopped: out of memory", p->name, b->address);
}

static void check_failed(ferry__loop *loop, ferry_backend *b, int err) {
    check_end(loop, b, 0, ferry_strerror(ferry__err_from_errno(err)));
}

static size_t check_request(const ferry_backend *b, char *buf, size_t size) {
    const ferry_health_opts *h = &b->pool->health;
    int n = snprintf(buf, size,
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: ferry-health-check\r\n"
                     "Connection: close\r\n\r\n",
                     h->path, h->host ? h->host : b->address);
    return n < 0 ? 0 : (size_t)n < size ? (size_t)n : size - 1;
}

/* "HTTP/1.x NNN": the status, or -1. */
static int parse_status(const char *s, size_t n) {
    if (n < STATUS_LINE_MIN || memcmp(s, "HTTP/1.", 7) != 0 || s[8] != ' ') return -1;
    int status = 0;
    for (int i = 9; i < 12; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        status = status * 10 + (s[i] - '0');
    }
    return status;
}

static void check_read(ferry__loop *loop, int fd, ferry_backend *b) {
    const ferry_health_opts *h = &b->pool->health;
    ssize_t r = recv(fd, b->check_buf + b->check_got, sizeof b->check_buf - 1 - b->check_got, 0);
    if (r < 0) {
        if (errno != EAGAIN && errno != EINTR) check_failed(loop, b, errno);
        return;
    }
    b->check_got += (size_t)r;
    if (r > 0 && b->check_got < STATUS_LINE_MIN) return;
    int status = parse_status(b->check_buf, b->check_got);
    char why[32];
    if (status < 0) {
        check_end(loop, b, 0, r == 0 ? "closed before answering" : "not an HTTP response");
    } else if (status < h->status_min || status > h->status_max) {
        snprintf(why, sizeof why, "status %d", status);
        check_end(loop, b, 0, why);
    } else {
        check_end(loop, b, 1, NULL);
    }
}

static void check_io(ferry__loop *loop, int fd, void *ud, int mask) {
    (void)mask;
    ferry_backend *b = ud;
    if (b->check_phase == CHECK_READING) {
        check_read(loop, fd, b);
        return;
    }
    if (b->check_phase == CHECK_CONNECTING) {
        int soerr = 0;
        socklen_t len = sizeof soerr;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0) soerr = errno;
        if (soerr) {
            check_failed(loop, b, soerr);
            return;
        }
        if (b->pool->health.kind == FERRY_HEALTH_TCP) {
            check_end(loop, b, 1, NULL);
            return;
        }
        b->check_phase = CHECK_SENDING;
    }
    char req[REQUEST_MAX];
    size_t n = check_request(b, req, sizeof req);
    ssize_t w = send(fd, req + b->check_sent, n - b->check_sent, MSG_NOSIGNAL);
    if (w < 0) {
        if (errno != EAGAIN && errno != EINTR) check_failed(loop, b, errno);
        return;
    }
    b->check_sent += (size_t)w;
    if (b->check_sent < n) return;
    b->check_phase = CHECK_READING;
    if (ferry__loop_watch(loop, fd, FERRY__READABLE, check_io, b) != FERRY_OK)
        check_end(loop, b, -1, NULL);
}

static void check_timeout(ferry__loop *loop, void *ud) { check_end(loop, ud, 0, "timed out"); }

static void check_start(ferry__loop *loop, void *ud) {
    ferry_backend *b = ud;
    if (atomic_load(&b->admin) == FERRY__BACKEND_REMOVED) return; /* checks end with it */
    b->check_started_ms = ferry__loop_now(loop);
    b->check_sent = b->check_got = 0;
    ferry__sockaddr a;
    ferry__backend_addr(b, &a);
    int fd = socket(a.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        check_failed(loop, b, errno);
        return;
    }
    b->check_fd = fd;
    int rc;
    do rc = connect(fd, &a.sa, ferry__sockaddr_len(&a));
    while (rc < 0 && errno == EINTR);
    if (rc < 0 && errno != EINPROGRESS) {
        check_failed(loop, b, errno);
        return;
    }
    b->check_phase = CHECK_CONNECTING;
    if (ferry__loop_watch(loop, fd, FERRY__WRITABLE, check_io, b) != FERRY_OK ||
        ferry__timer_start(loop, &b->check_timer, b->pool->health.timeout_ms, check_timeout, b))
        check_end(loop, b, -1, NULL);
}

/* ---- re-resolution ---- */

static int same_addr(const ferry__sockaddr *a, const ferry__sockaddr *b) {
    if (a->sa.sa_family != b->sa.sa_family) return 0;
    if (a->sa.sa_family == AF_INET6)
        return a->in6.sin6_port == b->in6.sin6_port &&
               memcmp(&a->in6.sin6_addr, &b->in6.sin6_addr, sizeof a->in6.sin6_addr) == 0;
    return a->in.sin_port == b->in.sin_port && a->in.sin_addr.s_addr == b->in.sin_addr.s_addr;
}

static void resolve_tick(ferry__loop *loop, void *ud);

/* Keep the address in use while the name still resolves to it (round-robin DNS
 * reorders answers); else take the first answer. Failures keep it too. */
static void resolve_done(ferry_backend *b, ferry_err result, const ferry__addrs *addrs) {
    ferry_pool *p = b->pool;
    ferry__sockaddr cur;
    ferry__backend_addr(b, &cur);
    char was[FERRY_ADDRSTR_MAX], now[FERRY_ADDRSTR_MAX];
    ferry__addr_format(&cur, 1, was, sizeof was);
    int found = 0;
    for (unsigned i = 0; result == FERRY_OK && i < addrs->count && !found; i++)
        found = same_addr(&addrs->addr[i], &cur);
    if (result != FERRY_OK) {
        ferry__log(p->engine, FERRY_LOG_WARN,
                   "pool %s: cannot re-resolve backend %s (%s); keeping %s", p->name, b->address,
                   ferry_strerror(result), was);
    } else if (!found) {
        ferry__backend_set_addr(b, &addrs->addr[0]);
        ferry__addr_format(&addrs->addr[0], 1, now, sizeof now);
        ferry__log(p->engine, FERRY_LOG_INFO, "pool %s: backend %s now resolves to %s (was %s)",
                   p->name, b->address, now, was);
    }
    if (atomic_load(&b->admin) != FERRY__BACKEND_REMOVED &&
        ferry__timer_start(health_loop(p), &b->resolve_timer, p->resolve_ms, resolve_tick, b))
        ferry__log(p->engine, FERRY_LOG_ERROR,
                   "pool %s: re-resolution of %s stopped: out of memory", p->name, b->address);
}

static void resolved(void *ud, ferry_err result, const ferry__addrs *addrs) {
    ferry_backend *b = ud;
    b->resolving = NULL;
    resolve_done(b, result, addrs);
}

static void resolve_tick(ferry__loop *loop, void *ud) {
    ferry_backend *b = ud;
    if (atomic_load(&b->admin) == FERRY__BACKEND_REMOVED) return;
    ferry__addrs addrs;
    ferry__resolve_req *pending = NULL;
    ferry_err err = ferry__resolve(b->pool->engine->resolver, loop, b->host, b->port, resolved, b,
                                   &pending, &addrs);
    if (err == FERRY_OK && pending) {
        b->resolving = pending;
        return;
    }
    resolve_done(b, err, &addrs);
}

/* ---- scheduling ---- */

static void watch(ferry__loop *loop, ferry_backend *b) {
    ferry_pool *p = b->pool;
    if (b->watched || atomic_load(&b->admin) == FERRY__BACKEND_REMOVED) return;
    b->watched = 1;
    ferry_err err = FERRY_OK;
    if (p->health.kind != FERRY_HEALTH_NONE)
        err = ferry__timer_start(loop, &b->check_timer, 0, check_start, b);
    if (!err && b->is_name && p->resolve_ms)
        err = ferry__timer_start(loop, &b->resolve_timer, p->resolve_ms, resolve_tick, b);
    if (err)
        ferry__log(p->engine, FERRY_LOG_ERROR, "pool %s: cannot watch backend %s: %s", p->name,
                   b->address, ferry_strerror(err));
}

static void unwatch(ferry__loop *loop, ferry_backend *b) {
    ferry__timer_stop(loop, &b->check_timer);
    ferry__timer_stop(loop, &b->resolve_timer);
    if (b->check_fd >= 0) {
        ferry__loop_unwatch(loop, b->check_fd);
        close(b->check_fd);
        b->check_fd = -1;
    }
    ferry__resolve_cancel(b->resolving);
    b->resolving = NULL;
    b->check_phase = CHECK_IDLE;
    b->watched = 0;
}

void ferry__pools_watch(ferry__worker *w) {
    for (ferry_pool *p = w->engine->pools; p; p = p->next) {
        p->watching = 1;
        pthread_mutex_lock(&p->config_lock);
        for (ferry_backend *b = p->all; b; b = b->next_all) watch(w->loop, b);
        pthread_mutex_unlock(&p->config_lock);
    }
}

void ferry__pools_unwatch(ferry__worker *w) {
    for (ferry_pool *p = w->engine->pools; p; p = p->next) {
        p->watching = 0;
        pthread_mutex_lock(&p->config_lock);
        for (ferry_backend *b = p->all; b; b = b->next_all) unwatch(w->loop, b);
        pthread_mutex_unlock(&p->config_lock);
    }
}

static void watch_posted(ferry__loop *loop, void *ud) {
    ferry_backend *b = ud;
    if (b->pool->watching) watch(loop, b);
}

void ferry__backend_watch(ferry_backend *b) {
    ferry_pool *p = b->pool;
    if (p->health.kind == FERRY_HEALTH_NONE && !(b->is_name && p->resolve_ms)) return;
    if (ferry__loop_post(health_loop(p), watch_posted, b) != FERRY_OK)
        ferry__log(p->engine, FERRY_LOG_ERROR, "pool %s: cannot watch backend %s: out of memory",
                   p->name, b->address);
}
