/* Per-worker pools of relay buffers and splice pipes. Relays take them only while bytes are
 * in flight and give them back as soon as they drain, so an idle connection holds none.
 * Loop thread only; no locks. */
#ifndef FERRY__BUFPOOL_H
#define FERRY__BUFPOOL_H

#include <stddef.h>
#include "ferry/alloc.h"

typedef struct ferry__bufpool {
    ferry_allocator alloc;
    size_t buf_size;
    size_t pipe_size; /* what F_SETPIPE_SZ was asked for; the kernel may round it */
    void **bufs;
    unsigned nbufs, max_bufs;
    int (*pipes)[2];
    unsigned npipes, max_pipes;
} ferry__bufpool;

/* max_bufs/max_pipes bound what is kept for reuse; more can be out at once. 0 on OOM. */
int ferry__bufpool_init(ferry__bufpool *p, const ferry_allocator *a, size_t buf_size,
                        size_t pipe_size, unsigned max_bufs, unsigned max_pipes);
void ferry__bufpool_destroy(ferry__bufpool *p);

void *ferry__buf_get(ferry__bufpool *p);
void ferry__buf_put(ferry__bufpool *p, void *buf);

/* A non-blocking pipe pair; -1 with errno on failure. */
int ferry__pipe_get(ferry__bufpool *p, int fds[2]);
/* Give back an EMPTY pipe (callers must only return drained pipes). */
void ferry__pipe_put(ferry__bufpool *p, int fds[2]);
/* Give back a pipe that may still hold `held` bytes: kept if empty, closed otherwise. */
void ferry__pipe_drop(ferry__bufpool *p, int fds[2], size_t held);

#endif
