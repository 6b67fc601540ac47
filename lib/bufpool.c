#define _GNU_SOURCE
#include "bufpool.h"

#include <fcntl.h>
#include <unistd.h>

#include "internal.h"

int ferry__bufpool_init(ferry__bufpool *p, const ferry_allocator *a, size_t buf_size,
                        size_t pipe_size, unsigned max_bufs, unsigned max_pipes) {
    *p = (ferry__bufpool){.alloc = *a, .buf_size = buf_size, .pipe_size = pipe_size,
                          .max_bufs = max_bufs, .max_pipes = max_pipes};
    p->bufs = ferry__malloc(a, (max_bufs ? max_bufs : 1) * sizeof *p->bufs);
    p->pipes = ferry__malloc(a, (max_pipes ? max_pipes : 1) * sizeof *p->pipes);
    if (!p->bufs || !p->pipes) {
        ferry__bufpool_destroy(p);
        return 0;
    }
    return 1;
}

void ferry__bufpool_destroy(ferry__bufpool *p) {
    for (unsigned i = 0; i < p->nbufs; i++) ferry__free(&p->alloc, p->bufs[i]);
    for (unsigned i = 0; i < p->npipes; i++) {
        close(p->pipes[i][0]);
        close(p->pipes[i][1]);
    }
    ferry__free(&p->alloc, p->bufs);
    ferry__free(&p->alloc, p->pipes);
    p->bufs = NULL;
    p->pipes = NULL;
    p->nbufs = p->npipes = 0;
}

void *ferry__buf_get(ferry__bufpool *p) {
    if (p->nbufs) return p->bufs[--p->nbufs];
    return ferry__malloc(&p->alloc, p->buf_size);
}

void ferry__buf_put(ferry__bufpool *p, void *buf) {
    if (p->nbufs < p->max_bufs)
        p->bufs[p->nbufs++] = buf;
    else
        ferry__free(&p->alloc, buf);
}

int ferry__pipe_get(ferry__bufpool *p, int fds[2]) {
    if (p->npipes) {
        p->npipes--;
        fds[0] = p->pipes[p->npipes][0];
        fds[1] = p->pipes[p->npipes][1];
        return 0;
    }
#ifdef __linux__
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0) return -1;
    /* A larger pipe moves more bytes per splice call; failure just keeps the default. */
    if (p->pipe_size > 65536) (void)fcntl(fds[0], F_SETPIPE_SZ, (int)p->pipe_size);
    return 0;
#else
    (void)fds;
    return -1;
#endif
}

void ferry__pipe_put(ferry__bufpool *p, int fds[2]) {
    if (p->npipes < p->max_pipes) {
        p->pipes[p->npipes][0] = fds[0];
        p->pipes[p->npipes][1] = fds[1];
        p->npipes++;
    } else {
        close(fds[0]);
        close(fds[1]);
    }
    fds[0] = fds[1] = -1;
}

void ferry__pipe_drop(ferry__bufpool *p, int fds[2], size_t held) {
    if (!held) {
        ferry__pipe_put(p, fds);
        return;
    }
    /* Bytes left inside belong to a stream that ended: the pipe cannot be reused. */
    close(fds[0]);
    close(fds[1]);
    fds[0] = fds[1] = -1;
}
