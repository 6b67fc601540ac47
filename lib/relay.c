#define _GNU_SOURCE
#include "relay.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

/* How many read/write rounds one readiness event may drive before yielding to other
 * connections on the same loop. */
enum { MAX_ROUNDS = 8 };

static size_t pending(const ferry__relay_dir *d) { return d->in_pipe + (d->len - d->off); }

size_t ferry__relay_pending(const ferry__relay *r, int d) { return pending(&r->dir[d]); }

/* A buffered direction can never hold more than one buffer, whatever high_water says. */
static size_t read_limit(const ferry__relay *r, const ferry__relay_dir *d) {
    size_t limit = r->high_water;
    if ((!r->splice || d->buf) && r->pool->buf_size < limit) limit = r->pool->buf_size;
    return limit;
}

static int can_read(const ferry__relay *r, const ferry__relay_dir *d) {
    return !d->eof && !d->pipe_full && pending(d) < read_limit(r, d);
}

static void release_idle(ferry__relay *r, ferry__relay_dir *d) {
    if (pending(d)) return;
    if (d->buf) {
        ferry__buf_put(r->pool, d->buf);
        d->buf = NULL;
        d->off = d->len = 0;
    }
    if (d->pipe[0] >= 0) ferry__pipe_put(r->pool, d->pipe);
}

/* ---- buffered mode ---- */

static ferry_err fill_buffer(ferry__relay *r, ferry__relay_dir *d, size_t *moved) {
    size_t size = r->pool->buf_size;
    if (!d->buf) {
        d->buf = ferry__buf_get(r->pool);
        if (!d->buf) return FERRY_ENOMEM;
        d->off = d->len = 0;
    } else if (d->off == d->len) {
        d->off = d->len = 0;
    } else if (d->len == size) {
        memmove(d->buf, d->buf + d->off, d->len - d->off);
        d->len -= d->off;
        d->off = 0;
    }
    size_t space = size - d->len;
    size_t room = read_limit(r, d) - pending(d);
    if (room < space) space = room;
    ssize_t n;
    do n = recv(d->from, d->buf + d->len, space, 0);
    while (n < 0 && errno == EINTR);
    if (n > 0) {
        d->len += (uint32_t)n;
        *moved += (size_t)n;
    } else if (n == 0) {
        d->eof = 1;
    } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
        return ferry__err_from_errno(errno);
    }
    return FERRY_OK;
}

static ferry_err flush_buffer(ferry__relay_dir *d, size_t *moved) {
    ssize_t n;
    do n = send(d->to, d->buf + d->off, d->len - d->off, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n > 0) {
        d->off += (uint32_t)n;
        d->bytes += (uint64_t)n;
        *moved += (size_t)n;
    } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
        return ferry__err_from_errno(errno);
    }
    return FERRY_OK;
}

/* ---- splice mode ---- */

#ifdef __linux__
long ferry__splice_move(int from, int to, size_t max) {
    ssize_t n;
    do n = splice(from, NULL, to, NULL, max, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    while (n < 0 && errno == EINTR);
    if (n < 0) return errno == EAGAIN ? -1 : -2;
    return (long)n;
}

static ferry_err fill_pipe(ferry__relay *r, ferry__relay_dir *d, size_t *moved) {
    if (d->pipe[0] < 0 && ferry__pipe_get(r->pool, d->pipe) < 0) {
        r->splice = 0; /* no pipe to be had (fd limit): relay through a buffer instead */
        return fill_buffer(r, d, moved);
    }
    long n = ferry__splice_move(d->from, d->pipe[1], r->high_water - pending(d));
    if (n > 0) {
        d->in_pipe += (size_t)n;
        *moved += (size_t)n;
    } else if (n == 0) {
        d->eof = 1;
    } else if (n == -1) {
        /* Either the socket is empty or the pipe has no free slot (slots, not bytes, can run
         * out first). If the pipe holds bytes, wait for the writer to drain it before reading
         * again: re-reading now could spin. */
        if (d->in_pipe) d->pipe_full = 1;
    } else if ((errno == EINVAL || errno == ENOSYS) && d->in_pipe == 0) {
        r->splice = 0; /* this pair of fds cannot splice: relay through a buffer instead */
        ferry__pipe_put(r->pool, d->pipe);
        return fill_buffer(r, d, moved);
    } else {
        return ferry__err_from_errno(errno);
    }
    return FERRY_OK;
}

static ferry_err flush_pipe(ferry__relay_dir *d, size_t *moved) {
    long n = ferry__splice_move(d->pipe[0], d->to, d->in_pipe);
    if (n > 0) {
        d->in_pipe -= (size_t)n;
        d->bytes += (uint64_t)n;
        d->pipe_full = 0;
        *moved += (size_t)n;
    } else if (n == -2) {
        return ferry__err_from_errno(errno);
    }
    return FERRY_OK;
}
#endif

static ferry_err fill(ferry__relay *r, ferry__relay_dir *d, size_t *moved) {
#ifdef __linux__
    /* A direction that still holds buffered bytes keeps using its buffer until it drains. */
    if (r->splice && !d->buf) return fill_pipe(r, d, moved);
#endif
    return fill_buffer(r, d, moved);
}

static ferry_err flush(ferry__relay_dir *d, size_t *moved) {
#ifdef __linux__
    if (d->in_pipe) return flush_pipe(d, moved);
#endif
    return flush_buffer(d, moved);
}

/* Move bytes one way until nothing more can move now. */
static ferry_err pump(ferry__relay *r, ferry__relay_dir *d) {
    ferry_err err = FERRY_OK;
    for (int round = 0; round < MAX_ROUNDS && !err; round++) {
        size_t moved = 0;
        if (pending(d)) err = flush(d, &moved);
        if (!err && can_read(r, d)) err = fill(r, d, &moved);
        if (!err && pending(d) && moved) err = flush(d, &moved);
        if (moved) r->last_progress_ms = ferry__loop_now(r->loop);
        if (!moved) break;
    }
    if (err) return err;
    if (d->eof && !pending(d) && !d->shut) {
        /* ENOTCONN here means the peer is gone entirely; the other direction will see it. */
        shutdown(d->to, SHUT_WR);
        d->shut = 1;
    }
    release_idle(r, d);
    return FERRY_OK;
}

/* ---- events ---- */

static void on_io(ferry__loop *loop, int fd, void *user_data, int mask);

static ferry_err update_interest(ferry__relay *r) {
    ferry__relay_dir *up = &r->dir[0], *down = &r->dir[1];
    int mask_client = (can_read(r, up) ? FERRY__READABLE : 0) | (pending(down) ? FERRY__WRITABLE : 0);
    int mask_server = (can_read(r, down) ? FERRY__READABLE : 0) | (pending(up) ? FERRY__WRITABLE : 0);
    ferry_err err = ferry__loop_watch(r->loop, up->from, mask_client, on_io, r);
    if (!err) err = ferry__loop_watch(r->loop, up->to, mask_server, on_io, r);
    return err;
}

static void finish(ferry__relay *r, ferry_err err) {
    ferry__relay_stop(r);
    r->done(r, r->user_data, err);
}

static void on_io(ferry__loop *loop, int fd, void *user_data, int mask) {
    (void)loop;
    ferry__relay *r = user_data;
    int client = fd == r->dir[0].from;
    ferry_err err = FERRY_OK;
    if (mask & FERRY__READABLE) err = pump(r, &r->dir[client ? 0 : 1]);
    if (!err && (mask & FERRY__WRITABLE)) err = pump(r, &r->dir[client ? 1 : 0]);
    if (!err && r->dir[0].shut && r->dir[1].shut) {
        finish(r, FERRY_OK);
        return;
    }
    if (!err) err = update_interest(r);
    if (err) finish(r, err);
}

static void on_idle_timer(ferry__loop *loop, void *user_data) {
    ferry__relay *r = user_data;
    uint64_t now = ferry__loop_now(loop), quiet = now - r->last_progress_ms;
    if (quiet >= r->idle_ms) {
        finish(r, FERRY_ETIMEDOUT);
        return;
    }
    /* Progress resets no timer on the hot path; the timer re-arms for what is left. */
    if (ferry__timer_start(loop, &r->idle_timer, r->idle_ms - quiet, on_idle_timer, r) != FERRY_OK)
        finish(r, FERRY_ENOMEM);
}

ferry_err ferry__relay_start(ferry__relay *r, ferry__loop *loop, ferry__bufpool *pool,
                             int fd_down, int fd_up, const ferry__relay_opts *opts,
                             ferry__relay_done_fn *done, void *user_data) {
    memset(r, 0, sizeof *r);
    r->loop = loop;
    r->pool = pool;
#ifdef __linux__
    r->splice = opts->splice ? 1 : 0;
#endif
    size_t hw = opts->high_water ? opts->high_water : (r->splice ? pool->pipe_size : pool->buf_size);
    r->high_water = (uint32_t)(hw > UINT32_MAX ? UINT32_MAX : hw);
    r->idle_ms = opts->idle_ms;
    r->done = done;
    r->user_data = user_data;
    r->dir[0] = (ferry__relay_dir){.from = fd_down, .to = fd_up, .pipe = {-1, -1}};
    r->dir[1] = (ferry__relay_dir){.from = fd_up, .to = fd_down, .pipe = {-1, -1}};
    r->last_progress_ms = ferry__loop_now(loop);
    r->running = 1;
    ferry_err err = FERRY_OK;
    if (r->idle_ms)
        err = ferry__timer_start(loop, &r->idle_timer, r->idle_ms, on_idle_timer, r);
    if (!err) err = update_interest(r);
    if (err) ferry__relay_stop(r);
    return err;
}

static void drop_dir(ferry__relay *r, ferry__relay_dir *d) {
    if (d->buf) ferry__buf_put(r->pool, d->buf);
    d->buf = NULL;
    d->off = d->len = 0;
    if (d->pipe[0] >= 0) ferry__pipe_drop(r->pool, d->pipe, d->in_pipe);
    d->in_pipe = 0;
}

void ferry__relay_stop(ferry__relay *r) {
    if (!r->running) return;
    r->running = 0;
    ferry__loop_unwatch(r->loop, r->dir[0].from);
    ferry__loop_unwatch(r->loop, r->dir[0].to);
    ferry__timer_stop(r->loop, &r->idle_timer);
    drop_dir(r, &r->dir[0]);
    drop_dir(r, &r->dir[1]);
}
