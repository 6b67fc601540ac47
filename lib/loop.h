/* Internal event loop: one per worker thread (ae-style). Level-triggered readiness on file
 * descriptors, a timer min-heap, and a thread-safe post queue woken through an eventfd.
 * Everything here runs on the loop's own thread except ferry__loop_post() and
 * ferry__loop_wake(), which any thread may call. */
#ifndef FERRY__LOOP_H
#define FERRY__LOOP_H

#include <stddef.h>
#include <stdint.h>
#include "ferry/alloc.h"
#include "ferry/engine.h"

enum {
    FERRY__READABLE = 1,
    FERRY__WRITABLE = 2,
    /* Registration flag (not reported): wake only one of the loops sharing this fd (a
     * listening socket watched by every worker). Honoured by epoll, ignored by poll. */
    FERRY__EXCLUSIVE = 4
};

typedef struct ferry__loop ferry__loop;

/* mask: FERRY__READABLE | FERRY__WRITABLE; errors and hang-ups are reported as both, so
 * the handler's next read or write sees them. */
typedef void ferry__io_fn(ferry__loop *loop, int fd, void *user_data, int mask);
typedef void ferry__timer_fn(ferry__loop *loop, void *user_data);
typedef void ferry__post_fn(ferry__loop *loop, void *user_data);

/* Intrusive timer: embed it, no allocation per start. Zero-initialise before first use. */
typedef struct ferry__timer {
    uint64_t deadline_ms;
    size_t heap_index; /* 0 when not armed; else position + 1 */
    ferry__timer_fn *fn;
    void *user_data;
} ferry__timer;

/* Readiness backend, selected at loop creation. */
typedef struct ferry__poller_ops {
    const char *name;
    void *(*create)(const ferry_allocator *a);
    void (*destroy)(const ferry_allocator *a, void *state);
    /* Interest in fd changes from old_mask to new_mask (0 means remove). */
    int (*update)(const ferry_allocator *a, void *state, int fd, int old_mask, int new_mask);
    /* Wait up to timeout_ms (-1: forever) and call report(loop, fd, mask) per ready fd. */
    int (*wait)(void *state, int timeout_ms, ferry__loop *loop,
                void (*report)(ferry__loop *loop, int fd, int mask));
} ferry__poller_ops;

extern const ferry__poller_ops ferry__poller_poll;
#ifdef __linux__
extern const ferry__poller_ops ferry__poller_epoll;
#endif

const ferry__poller_ops *ferry__poller_pick(ferry_poller which);

ferry__loop *ferry__loop_new(const ferry_allocator *a, ferry_poller which);
void ferry__loop_free(ferry__loop *loop);
/* An opaque pointer for whoever runs the loop (the engine's worker). */
void ferry__loop_set_owner(ferry__loop *loop, void *owner);
void *ferry__loop_owner(const ferry__loop *loop);
const char *ferry__loop_backend(const ferry__loop *loop);

/* Watch fd with mask (replaces the previous interest); mask 0 removes it. */
ferry_err ferry__loop_watch(ferry__loop *loop, int fd, int mask, ferry__io_fn *fn, void *user_data);
void ferry__loop_unwatch(ferry__loop *loop, int fd);
int ferry__loop_mask(const ferry__loop *loop, int fd);

/* (Re)arm t to fire once after_ms from the loop's current time. FERRY_ENOMEM leaves it
 * disarmed. */
ferry_err ferry__timer_start(ferry__loop *loop, ferry__timer *t, uint64_t after_ms,
                             ferry__timer_fn *fn, void *user_data);
void ferry__timer_stop(ferry__loop *loop, ferry__timer *t);
static inline int ferry__timer_active(const ferry__timer *t) { return t->heap_index != 0; }

/* Run fn(loop, user_data) on the loop's thread soon. Any thread. FERRY_ENOMEM on OOM. */
ferry_err ferry__loop_post(ferry__loop *loop, ferry__post_fn *fn, void *user_data);
/* Interrupt a wait without posting anything. Async-signal-safe: paired with an atomic flag
 * and ferry__loop_on_wake(), it is how a signal handler reaches a loop. */
void ferry__loop_wake(ferry__loop *loop);
/* fn runs on the loop thread after each wakeup (ferry__loop_wake or a post). */
void ferry__loop_on_wake(ferry__loop *loop, ferry__post_fn *fn, void *user_data);

/* Cached time of the current iteration. */
uint64_t ferry__loop_now(const ferry__loop *loop);

/* Run until ferry__loop_stop(); returns 0, or -1 if the backend failed. */
int ferry__loop_run(ferry__loop *loop);
/* Process ready events and due timers once, waiting at most timeout_ms. For tests. */
int ferry__loop_run_once(ferry__loop *loop, int timeout_ms);
/* Make ferry__loop_run() return after the current iteration. Loop thread only. */
void ferry__loop_stop(ferry__loop *loop);

#endif
