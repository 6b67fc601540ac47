/* Event loop: fd table indexed by fd, a timer min-heap, and a post queue for other threads. */
#define _GNU_SOURCE
#include "loop.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/eventfd.h>
#endif

#include "internal.h"

typedef struct fd_slot {
    int mask;
    ferry__io_fn *fn;
    void *user_data;
} fd_slot;

typedef struct post_node {
    struct post_node *next;
    ferry__post_fn *fn;
    void *user_data;
} post_node;

struct ferry__loop {
    ferry_allocator alloc;
    const ferry__poller_ops *poller;
    void *poller_state;

    fd_slot *fds; /* indexed by fd */
    int fds_cap;

    ferry__timer **heap;
    size_t heap_len, heap_cap;

    uint64_t now_ms;
    int now_stale; /* set while waiting: the first ready fd refreshes now_ms */
    int stopping;

    /* Cross-thread wakeup: eventfd on Linux (one fd for both ends), else a pipe. */
    int wake_read, wake_write;
    atomic_int wake_pending;
    ferry__post_fn *on_wake; /* run on the loop thread after every cross-thread wakeup */
    void *on_wake_data;
    void *owner;
    pthread_mutex_t post_lock;
    post_node *post_head, *post_tail;
};

const ferry__poller_ops *ferry__poller_pick(ferry_poller which) {
#ifdef __linux__
    if (which == FERRY_POLLER_EPOLL) return &ferry__poller_epoll;
#endif
    if (which == FERRY_POLLER_POLL) return &ferry__poller_poll;
#if defined(FERRY_DEFAULT_POLLER_EPOLL) && defined(__linux__)
    return &ferry__poller_epoll;
#else
    return &ferry__poller_poll;
#endif
}

/* ---- wakeup ---- */

static void drain_wakeup(ferry__loop *loop, int fd, void *ud, int mask) {
    (void)ud;
    (void)mask;
    char buf[64];
    while (read(fd, buf, sizeof buf) > 0) {
    }
    if (loop->on_wake) loop->on_wake(loop, loop->on_wake_data);
}

void ferry__loop_on_wake(ferry__loop *loop, ferry__post_fn *fn, void *user_data) {
    loop->on_wake = fn;
    loop->on_wake_data = user_data;
}

void ferry__loop_wake(ferry__loop *loop) {
    /* Only the first waker since the last drain pays for the syscall. */
    if (atomic_exchange(&loop->wake_pending, 1)) return;
#ifdef __linux__
    uint64_t one = 1;
    ssize_t n = write(loop->wake_write, &one, sizeof one);
#else
    char one = 1;
    ssize_t n = write(loop->wake_write, &one, 1);
#endif
    (void)n; /* EAGAIN means a wakeup is already pending: fine */
}

static int open_wakeup(ferry__loop *loop) {
#ifdef __linux__
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0) return -1;
    loop->wake_read = loop->wake_write = fd;
#else
    int p[2];
    if (pipe(p) < 0) return -1;
    for (int i = 0; i < 2; i++) {
        fcntl(p[i], F_SETFL, fcntl(p[i], F_GETFL) | O_NONBLOCK);
        fcntl(p[i], F_SETFD, FD_CLOEXEC);
    }
    loop->wake_read = p[0];
    loop->wake_write = p[1];
#endif
    return 0;
}

/* ---- lifecycle ---- */

ferry__loop *ferry__loop_new(const ferry_allocator *a, ferry_poller which) {
    ferry__loop *loop = ferry__calloc(a, sizeof *loop);
    if (!loop) return NULL;
    loop->alloc = *a;
    loop->wake_read = loop->wake_write = -1;
    loop->poller = ferry__poller_pick(which);
    loop->poller_state = loop->poller->create(a);
    if (!loop->poller_state || open_wakeup(loop) < 0) goto fail;
    if (pthread_mutex_init(&loop->post_lock, NULL) != 0) goto fail;
    loop->now_ms = ferry__now_ms();
    if (ferry__loop_watch(loop, loop->wake_read, FERRY__READABLE, drain_wakeup, NULL) != FERRY_OK) {
        pthread_mutex_destroy(&loop->post_lock);
        goto fail;
    }
    return loop;
fail:
    if (loop->poller_state) loop->poller->destroy(a, loop->poller_state);
    if (loop->wake_read >= 0) close(loop->wake_read);
    if (loop->wake_write >= 0 && loop->wake_write != loop->wake_read) close(loop->wake_write);
    ferry__free(&loop->alloc, loop->fds);
    ferry__free(a, loop);
    return NULL;
}

void ferry__loop_free(ferry__loop *loop) {
    if (!loop) return;
    ferry__loop_unwatch(loop, loop->wake_read);
    close(loop->wake_read);
    if (loop->wake_write != loop->wake_read) close(loop->wake_write);
    /* Posts not run by now are dropped: their owners free what they carry. */
    for (post_node *n = loop->post_head, *next; n; n = next) {
        next = n->next;
        ferry__free(&loop->alloc, n);
    }
    pthread_mutex_destroy(&loop->post_lock);
    loop->poller->destroy(&loop->alloc, loop->poller_state);
    ferry__free(&loop->alloc, loop->heap);
    ferry__free(&loop->alloc, loop->fds);
    ferry__free(&loop->alloc, loop);
}

void ferry__loop_set_owner(ferry__loop *loop, void *owner) { loop->owner = owner; }
void *ferry__loop_owner(const ferry__loop *loop) { return loop->owner; }
const char *ferry__loop_backend(const ferry__loop *loop) { return loop->poller->name; }
uint64_t ferry__loop_now(const ferry__loop *loop) { return loop->now_ms; }
void ferry__loop_stop(ferry__loop *loop) { loop->stopping = 1; }

/* ---- file descriptors ---- */

static int grow_fds(ferry__loop *loop, int fd) {
    int cap = loop->fds_cap ? loop->fds_cap : 64;
    while (cap <= fd) cap *= 2;
    fd_slot *n = ferry__realloc(&loop->alloc, loop->fds, (size_t)cap * sizeof *n);
    if (!n) return -1;
    memset(n + loop->fds_cap, 0, (size_t)(cap - loop->fds_cap) * sizeof *n);
    loop->fds = n;
    loop->fds_cap = cap;
    return 0;
}

ferry_err ferry__loop_watch(ferry__loop *loop, int fd, int mask, ferry__io_fn *fn, void *user_data) {
    if (fd < 0) return FERRY_EINVAL;
    if (mask == 0) {
        ferry__loop_unwatch(loop, fd);
        return FERRY_OK;
    }
    if (fd >= loop->fds_cap && grow_fds(loop, fd) < 0) return FERRY_ENOMEM;
    fd_slot *s = &loop->fds[fd];
    if (s->mask != mask &&
        loop->poller->update(&loop->alloc, loop->poller_state, fd, s->mask, mask) < 0)
        return errno == ENOMEM ? FERRY_ENOMEM : FERRY_ESYS;
    s->mask = mask;
    s->fn = fn;
    s->user_data = user_data;
    return FERRY_OK;
}

void ferry__loop_unwatch(ferry__loop *loop, int fd) {
    if (fd < 0 || fd >= loop->fds_cap || loop->fds[fd].mask == 0) return;
    loop->poller->update(&loop->alloc, loop->poller_state, fd, loop->fds[fd].mask, 0);
    loop->fds[fd] = (fd_slot){0};
}

int ferry__loop_mask(const ferry__loop *loop, int fd) {
    if (fd < 0 || fd >= loop->fds_cap) return 0;
    return loop->fds[fd].mask & (FERRY__READABLE | FERRY__WRITABLE);
}

static void report_ready(ferry__loop *loop, int fd, int mask) {
    /* Handlers start timers relative to now: it must be the time after the wait. */
    if (loop->now_stale) {
        loop->now_ms = ferry__now_ms();
        loop->now_stale = 0;
    }
    /* The slot is re-read here: an earlier callback in this batch may have unwatched fd. */
    if (fd >= loop->fds_cap) return;
    fd_slot *s = &loop->fds[fd];
    int want = s->mask & (FERRY__READABLE | FERRY__WRITABLE);
    if (!(mask & want) || !s->fn) return;
    s->fn(loop, fd, s->user_data, mask & want);
}

/* ---- timers: binary min-heap of pointers; each timer knows its index ---- */

static int timer_before(const ferry__timer *a, const ferry__timer *b) {
    return a->deadline_ms < b->deadline_ms;
}

static void heap_place(ferry__loop *loop, size_t i, ferry__timer *t) {
    loop->heap[i] = t;
    t->heap_index = i + 1;
}

static void heap_up(ferry__loop *loop, size_t i) {
    ferry__timer *t = loop->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!timer_before(t, loop->heap[parent])) break;
        heap_place(loop, i, loop->heap[parent]);
        i = parent;
    }
    heap_place(loop, i, t);
}

static void heap_down(ferry__loop *loop, size_t i) {
    ferry__timer *t = loop->heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= loop->heap_len) break;
        if (child + 1 < loop->heap_len && timer_before(loop->heap[child + 1], loop->heap[child]))
            child++;
        if (!timer_before(loop->heap[child], t)) break;
        heap_place(loop, i, loop->heap[child]);
        i = child;
    }
    heap_place(loop, i, t);
}

void ferry__timer_stop(ferry__loop *loop, ferry__timer *t) {
    if (!t->heap_index) return;
    size_t i = t->heap_index - 1;
    t->heap_index = 0;
    loop->heap_len--;
    if (i == loop->heap_len) return;
    ferry__timer *last = loop->heap[loop->heap_len];
    heap_place(loop, i, last);
    heap_down(loop, i);
    heap_up(loop, last->heap_index - 1);
}

ferry_err ferry__timer_start(ferry__loop *loop, ferry__timer *t, uint64_t after_ms,
                             ferry__timer_fn *fn, void *user_data) {
    ferry__timer_stop(loop, t);
    if (loop->heap_len == loop->heap_cap) {
        size_t cap = loop->heap_cap ? loop->heap_cap * 2 : 64;
        ferry__timer **h = ferry__realloc(&loop->alloc, loop->heap, cap * sizeof *h);
        if (!h) return FERRY_ENOMEM;
        loop->heap = h;
        loop->heap_cap = cap;
    }
    t->deadline_ms = loop->now_ms + after_ms;
    t->fn = fn;
    t->user_data = user_data;
    heap_place(loop, loop->heap_len++, t);
    heap_up(loop, loop->heap_len - 1);
    return FERRY_OK;
}

static void run_timers(ferry__loop *loop) {
    while (loop->heap_len && loop->heap[0]->deadline_ms <= loop->now_ms) {
        ferry__timer *t = loop->heap[0];
        ferry__timer_stop(loop, t);
        t->fn(loop, t->user_data);
    }
}

static int next_timeout(const ferry__loop *loop, int cap_ms) {
    if (!loop->heap_len) return cap_ms;
    uint64_t d = loop->heap[0]->deadline_ms;
    uint64_t wait = d > loop->now_ms ? d - loop->now_ms : 0;
    if (cap_ms >= 0 && wait > (uint64_t)cap_ms) return cap_ms;
    return wait > INT32_MAX ? INT32_MAX : (int)wait;
}

/* ---- posts from other threads ---- */

ferry_err ferry__loop_post(ferry__loop *loop, ferry__post_fn *fn, void *user_data) {
    post_node *n = ferry__malloc(&loop->alloc, sizeof *n);
    if (!n) return FERRY_ENOMEM;
    n->next = NULL;
    n->fn = fn;
    n->user_data = user_data;
    pthread_mutex_lock(&loop->post_lock);
    if (loop->post_tail)
        loop->post_tail->next = n;
    else
        loop->post_head = n;
    loop->post_tail = n;
    pthread_mutex_unlock(&loop->post_lock);
    ferry__loop_wake(loop);
    return FERRY_OK;
}

static void run_posts(ferry__loop *loop) {
    atomic_store(&loop->wake_pending, 0);
    pthread_mutex_lock(&loop->post_lock);
    post_node *n = loop->post_head;
    loop->post_head = loop->post_tail = NULL;
    pthread_mutex_unlock(&loop->post_lock);
    while (n) {
        post_node *next = n->next;
        ferry__post_fn *fn = n->fn;
        void *ud = n->user_data;
        ferry__free(&loop->alloc, n);
        fn(loop, ud);
        n = next;
    }
}

/* ---- running ---- */

int ferry__loop_run_once(ferry__loop *loop, int timeout_ms) {
    loop->now_ms = ferry__now_ms();
    int wait = next_timeout(loop, timeout_ms);
    if (atomic_load(&loop->wake_pending)) wait = 0;
    loop->now_stale = 1;
    if (loop->poller->wait(loop->poller_state, wait, loop, report_ready) < 0 && errno != EINTR)
        return -1;
    loop->now_ms = ferry__now_ms();
    loop->now_stale = 0;
    run_posts(loop);
    run_timers(loop);
    return 0;
}

int ferry__loop_run(ferry__loop *loop) {
    loop->stopping = 0;
    while (!loop->stopping)
        if (ferry__loop_run_once(loop, -1) < 0) return -1;
    return 0;
}
