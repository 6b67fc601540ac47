/* epoll backend (Linux). Level-triggered, so handlers may leave data unread. */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "internal.h"
#include "loop.h"

enum { BATCH = 256 };

typedef struct epoll_state {
    int epfd;
    struct epoll_event events[BATCH];
} epoll_state;

static void *epoll_create_state(const ferry_allocator *a) {
    epoll_state *st = ferry__malloc(a, sizeof *st);
    if (!st) return NULL;
    st->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (st->epfd < 0) {
        ferry__free(a, st);
        return NULL;
    }
    return st;
}

static void epoll_destroy_state(const ferry_allocator *a, void *state) {
    epoll_state *st = state;
    close(st->epfd);
    ferry__free(a, st);
}

static int epoll_update(const ferry_allocator *a, void *state, int fd, int old_mask, int new_mask) {
    (void)a;
    epoll_state *st = state;
    struct epoll_event ev = {0};
    ev.data.fd = fd;
    if (new_mask & FERRY__READABLE)
        ev.events |= (new_mask & FERRY__EXCLUSIVE) ? EPOLLIN : EPOLLIN | EPOLLRDHUP;
    if (new_mask & FERRY__WRITABLE) ev.events |= EPOLLOUT;
    if (new_mask == 0) return epoll_ctl(st->epfd, EPOLL_CTL_DEL, fd, &ev);
    if (old_mask == 0) {
        if (new_mask & FERRY__EXCLUSIVE) ev.events |= EPOLLEXCLUSIVE;
        return epoll_ctl(st->epfd, EPOLL_CTL_ADD, fd, &ev);
    }
    if (new_mask & FERRY__EXCLUSIVE) {
        /* EPOLLEXCLUSIVE cannot be modified in place, nor combined with EPOLLRDHUP. */
        epoll_ctl(st->epfd, EPOLL_CTL_DEL, fd, &ev);
        ev.events |= EPOLLEXCLUSIVE;
        return epoll_ctl(st->epfd, EPOLL_CTL_ADD, fd, &ev);
    }
    return epoll_ctl(st->epfd, EPOLL_CTL_MOD, fd, &ev);
}

static int epoll_wait_ready(void *state, int timeout_ms, ferry__loop *loop,
                            void (*report)(ferry__loop *loop, int fd, int mask)) {
    epoll_state *st = state;
    int n = epoll_wait(st->epfd, st->events, BATCH, timeout_ms);
    for (int i = 0; i < n; i++) {
        uint32_t e = st->events[i].events;
        int mask = 0;
        if (e & (EPOLLIN | EPOLLRDHUP)) mask |= FERRY__READABLE;
        if (e & EPOLLOUT) mask |= FERRY__WRITABLE;
        if (e & (EPOLLERR | EPOLLHUP)) mask |= FERRY__READABLE | FERRY__WRITABLE;
        report(loop, st->events[i].data.fd, mask);
    }
    return n < 0 ? -1 : 0;
}

const ferry__poller_ops ferry__poller_epoll = {
    .name = "epoll",
    .create = epoll_create_state,
    .destroy = epoll_destroy_state,
    .update = epoll_update,
    .wait = epoll_wait_ready,
};
