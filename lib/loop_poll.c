/* Portable poll(2) backend: a dense pollfd array plus an fd -> index map. */
#include <errno.h>
#include <poll.h>
#include <string.h>

#include "internal.h"
#include "loop.h"

typedef struct poll_state {
    struct pollfd *pfds;
    int count, cap;
    int *index_of; /* fd -> index in pfds, -1 if absent */
    int index_cap;
} poll_state;

static void *poll_create_state(const ferry_allocator *a) {
    return ferry__calloc(a, sizeof(poll_state));
}

static void poll_destroy_state(const ferry_allocator *a, void *state) {
    poll_state *st = state;
    ferry__free(a, st->pfds);
    ferry__free(a, st->index_of);
    ferry__free(a, st);
}

static short poll_events(int mask) {
    short ev = 0;
    if (mask & FERRY__READABLE) ev |= POLLIN;
    if (mask & FERRY__WRITABLE) ev |= POLLOUT;
    return ev;
}

static int poll_update(const ferry_allocator *a, void *state, int fd, int old_mask, int new_mask) {
    (void)old_mask;
    poll_state *st = state;
    if (fd >= st->index_cap) {
        int cap = st->index_cap ? st->index_cap : 64;
        while (cap <= fd) cap *= 2;
        int *m = ferry__realloc(a, st->index_of, (size_t)cap * sizeof *m);
        if (!m) {
            errno = ENOMEM;
            return -1;
        }
        for (int i = st->index_cap; i < cap; i++) m[i] = -1;
        st->index_of = m;
        st->index_cap = cap;
    }
    int idx = st->index_of[fd];
    if (new_mask == 0) {
        if (idx < 0) return 0;
        /* Move the last entry into the hole. */
        st->pfds[idx] = st->pfds[--st->count];
        st->index_of[st->pfds[idx].fd] = idx;
        st->index_of[fd] = -1;
        return 0;
    }
    if (idx < 0) {
        if (st->count == st->cap) {
            int cap = st->cap ? st->cap * 2 : 64;
            struct pollfd *p = ferry__realloc(a, st->pfds, (size_t)cap * sizeof *p);
            if (!p) {
                errno = ENOMEM;
                return -1;
            }
            st->pfds = p;
            st->cap = cap;
        }
        idx = st->count++;
        st->pfds[idx].fd = fd;
        st->index_of[fd] = idx;
    }
    st->pfds[idx].events = poll_events(new_mask);
    st->pfds[idx].revents = 0;
    return 0;
}

static int poll_wait_ready(void *state, int timeout_ms, ferry__loop *loop,
                           void (*report)(ferry__loop *loop, int fd, int mask)) {
    poll_state *st = state;
    int n = poll(st->pfds, (nfds_t)st->count, timeout_ms);
    if (n <= 0) return n < 0 ? -1 : 0;
    /* Callbacks may add or remove fds (swapping entries), so walk a snapshot of the ready set
     * by fd, not by index. Each revents is cleared as it is consumed. */
    for (int i = 0; i < st->count && n > 0; i++) {
        struct pollfd *p = &st->pfds[i];
        if (!p->revents) continue;
        n--;
        int fd = p->fd, mask = 0;
        short r = p->revents;
        p->revents = 0;
        if (r & POLLIN) mask |= FERRY__READABLE;
        if (r & POLLOUT) mask |= FERRY__WRITABLE;
        if (r & (POLLERR | POLLHUP | POLLNVAL)) mask |= FERRY__READABLE | FERRY__WRITABLE;
        report(loop, fd, mask);
    }
    return 0;
}

const ferry__poller_ops ferry__poller_poll = {
    .name = "poll",
    .create = poll_create_state,
    .destroy = poll_destroy_state,
    .update = poll_update,
    .wait = poll_wait_ready,
};
