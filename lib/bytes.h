/* A growable byte buffer with a read offset: bytes [off, len) are pending. Used for HTTP
 * heads and bodies in flight. Memory comes from the engine's allocator and is released
 * as soon as the buffer drains, so idle connections hold none. Loop thread only. */
#ifndef FERRY__BYTES_H
#define FERRY__BYTES_H

#include <stddef.h>
#include "ferry/alloc.h"
#include "ferry/error.h"

typedef struct ferry__bytes {
    char *data;
    size_t off, len, cap;
} ferry__bytes;

/* Where buffers come from: the allocator plus a per-worker cache of fixed-size blocks, so
 * that a busy connection does not malloc/free (and fault in) a large buffer per request. */
typedef struct ferry__bytes_pool {
    ferry_allocator alloc;
    size_t block;
    void **blocks;
    unsigned count, max;
} ferry__bytes_pool;

/* 0 on OOM. */
int ferry__bytes_pool_init(ferry__bytes_pool *p, const ferry_allocator *a, size_t block, unsigned max);
void ferry__bytes_pool_destroy(ferry__bytes_pool *p);

static inline size_t ferry__bytes_pending(const ferry__bytes *b) { return b->len - b->off; }
static inline const char *ferry__bytes_head(const ferry__bytes *b) { return b->data + b->off; }

/* Make room for at least `extra` more bytes after len (compacting first). */
ferry_err ferry__bytes_reserve(ferry__bytes *b, ferry__bytes_pool *a, size_t extra);
ferry_err ferry__bytes_append(ferry__bytes *b, ferry__bytes_pool *a, const void *p, size_t n);
/* printf-free helpers for heads */
ferry_err ferry__bytes_append_str(ferry__bytes *b, ferry__bytes_pool *a, const char *s);
ferry_err ferry__bytes_append_u64(ferry__bytes *b, ferry__bytes_pool *a, unsigned long long v,
                                  int hex);
void ferry__bytes_consume(ferry__bytes *b, size_t n);
/* Free the memory if nothing is pending. */
void ferry__bytes_trim(ferry__bytes *b, ferry__bytes_pool *a);
void ferry__bytes_free(ferry__bytes *b, ferry__bytes_pool *a);

/* recv() into the buffer (up to `max` bytes, growing it as needed): >0 bytes, 0 EOF,
 * -1 EAGAIN, -2 error (errno set). */
long ferry__bytes_recv(ferry__bytes *b, ferry__bytes_pool *a, int fd, size_t max);
/* recv() into the free space after len without moving or growing the buffer (views into
 * it stay valid): like ferry__bytes_recv; -1 also when there is no free space. */
long ferry__bytes_recv_inplace(ferry__bytes *b, int fd);
/* send() pending bytes: returns bytes sent, -1 EAGAIN, -2 error (errno set). */
long ferry__bytes_send(ferry__bytes *b, int fd);
/* The same with extra send() flags (MSG_MORE when more bytes follow at once). */
long ferry__bytes_send_flags(ferry__bytes *b, int fd, int flags);

#endif
