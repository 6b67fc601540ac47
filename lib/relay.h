/* Bidirectional byte relay between a downstream (client) and an upstream socket.
 * - Backpressure: a side is read only while less than high_water bytes wait to be written
 *   to the other side.
 * - Half-close: EOF from one side becomes shutdown(SHUT_WR) on the other once everything
 *   read has been written; the other direction keeps flowing until it ends too.
 * - Zero copy: with splice enabled, bytes go socket -> pipe -> socket inside the kernel; if
 *   the kernel refuses (EINVAL), the relay falls back to read/write on a buffer.
 * - Idle timeout: no progress either way for idle_ms ends the relay with FERRY_ETIMEDOUT.
 * Buffers and pipes come from the worker's pool and go back as soon as they drain.
 * Loop thread only. The relay never closes the fds; its owner does, after done. */
#ifndef FERRY__RELAY_H
#define FERRY__RELAY_H

#include <stddef.h>
#include <stdint.h>
#include "bufpool.h"
#include "loop.h"

typedef struct ferry__relay ferry__relay;

/* Called once when both directions are finished (err FERRY_OK) or on the first error. The
 * relay is already stopped; the callee may free the memory holding it. */
typedef void ferry__relay_done_fn(ferry__relay *relay, void *user_data, ferry_err err);

typedef struct ferry__relay_dir {
    int from, to;
    char *buf; /* buffered mode: bytes [off, len) wait to be written */
    uint32_t off, len;
    int pipe[2];     /* splice mode: bytes wait in the pipe; -1 when none is held */
    size_t in_pipe;
    uint64_t bytes;  /* relayed (written to `to`) */
    uint8_t eof;     /* `from` reached end of stream */
    uint8_t shut;    /* `to` was shut down for writing */
    uint8_t pipe_full; /* splice into the pipe would block while it holds bytes */
} ferry__relay_dir;

struct ferry__relay {
    ferry__loop *loop;
    ferry__bufpool *pool;
    ferry__relay_dir dir[2]; /* [0]: downstream -> upstream, [1]: upstream -> downstream */
    ferry__timer idle_timer;
    uint64_t last_progress_ms;
    uint32_t high_water;
    uint32_t idle_ms;
    uint8_t splice;
    uint8_t running;
    ferry__relay_done_fn *done;
    void *user_data;
};

typedef struct ferry__relay_opts {
    size_t high_water; /* 0: the pool's buffer size (buffered) or pipe size (splice) */
    unsigned idle_ms;  /* 0: no idle timeout */
    int splice;
} ferry__relay_opts;

ferry_err ferry__relay_start(ferry__relay *r, ferry__loop *loop, ferry__bufpool *pool,
                             int fd_down, int fd_up, const ferry__relay_opts *opts,
                             ferry__relay_done_fn *done, void *user_data);

/* Stop watching, release buffers and pipes; no callback. Safe to call twice. */
void ferry__relay_stop(ferry__relay *r);

#ifdef __linux__
/* One non-blocking splice(2) of at most `max` bytes, socket -> pipe's write end or pipe's
 * read end -> socket, also for users that move bytes one way under their own framing
 * (HTTP bodies of known length): bytes moved, 0 at the end of the stream (socket -> pipe
 * only), -1 EAGAIN (an empty socket, a pipe with no free slot, or a full socket), -2 error
 * (errno set). */
long ferry__splice_move(int from, int to, size_t max);
#endif

/* Bytes waiting towards the other side in direction d (0 or 1). For tests and stats. */
size_t ferry__relay_pending(const ferry__relay *r, int d);

#endif
