/* Upstream HTTP connections and each worker's pool of idle ones, keyed by address. An
 * idle connection stays registered for readability: the server closing it (or sending
 * anything unasked) removes it from the pool. Loop thread only. */
#include <unistd.h>

#include "http_int.h"

void ferry__http_upstream_free(ferry__worker *w, ferry__http_upstream *u) {
    const ferry_allocator *a = &w->engine->alloc;
    ferry__loop_unwatch(w->loop, u->fd);
    ferry__timer_stop(w->loop, &u->idle_timer);
    ferry__free(a, u->handshake);
    close(u->fd);
    ferry__bytes_free(&u->in, &w->bytes);
    ferry__bytes_free(&u->out, &w->bytes);
    ferry__free(a, u);
}

static void idle_unlink(ferry__worker *w, ferry__http_upstream *u) {
    if (u->prev)
        u->prev->next = u->next;
    else
        w->http_idle = u->next;
    if (u->next) u->next->prev = u->prev;
    u->prev = u->next = NULL;
    w->http_idle_count--;
}

/* An idle pooled connection became readable: the server closed it (or sent garbage). */
static void idle_io(ferry__loop *loop, int fd, void *ud, int mask) {
    (void)loop;
    (void)fd;
    (void)mask;
    ferry__http_upstream *u = ud;
    idle_unlink(u->worker, u);
    ferry__http_upstream_free(u->worker, u);
}

static void idle_expired(ferry__loop *loop, void *ud) {
    (void)loop;
    ferry__http_upstream *u = ud;
    idle_unlink(u->worker, u);
    ferry__http_upstream_free(u->worker, u);
}

void ferry__http_pool_put(ferry__worker *w, const ferry_listener_opts *o, ferry__http_upstream *u) {
    u->uses++;
    ferry__bytes_free(&u->in, &w->bytes);
    ferry__bytes_free(&u->out, &w->bytes);
    if (w->stopping || w->http_idle_count >= o->upstream_max_idle ||
        ferry__loop_watch(w->loop, u->fd, FERRY__READABLE, idle_io, u) != FERRY_OK ||
        ferry__timer_start(w->loop, &u->idle_timer, o->upstream_idle_timeout_ms, idle_expired, u)) {
        ferry__http_upstream_free(w, u);
        return;
    }
    u->next = w->http_idle;
    u->prev = NULL;
    if (w->http_idle) w->http_idle->prev = u;
    w->http_idle = u;
    w->http_idle_count++;
}

static int same_addr(const ferry__sockaddr *a, const ferry__sockaddr *b) {
    if (a->sa.sa_family != b->sa.sa_family) return 0;
    if (a->sa.sa_family == AF_INET)
        return a->in.sin_port == b->in.sin_port && a->in.sin_addr.s_addr == b->in.sin_addr.s_addr;
    return a->in6.sin6_port == b->in6.sin6_port &&
           memcmp(&a->in6.sin6_addr, &b->in6.sin6_addr, 16) == 0;
}

ferry__http_upstream *ferry__http_pool_take(ferry__worker *w, const ferry__sockaddr *addr,
                                            const ferry_parent *via) {
    for (ferry__http_upstream *u = w->http_idle; u; u = u->next) {
        if (u->via != via || !same_addr(&u->addr, addr)) continue;
        idle_unlink(w, u);
        ferry__timer_stop(w->loop, &u->idle_timer);
        /* Still registered: the next watch only changes its mask (one epoll_ctl, not two). */
        return u;
    }
    return NULL;
}

void ferry__http_pool_clear(ferry__worker *w) {
    while (w->http_idle) {
        ferry__http_upstream *u = w->http_idle;
        idle_unlink(w, u);
        ferry__http_upstream_free(w, u);
    }
}
