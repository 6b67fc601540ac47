#include "bytes.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "internal.h"

int ferry__bytes_pool_init(ferry__bytes_pool *p, const ferry_allocator *a, size_t block, unsigned max) {
    *p = (ferry__bytes_pool){.alloc = *a, .block = block, .max = max};
    p->blocks = ferry__malloc(a, (max ? max : 1) * sizeof *p->blocks);
    return p->blocks != NULL;
}

void ferry__bytes_pool_destroy(ferry__bytes_pool *p) {
    for (unsigned i = 0; i < p->count; i++) ferry__free(&p->alloc, p->blocks[i]);
    ferry__free(&p->alloc, p->blocks);
    p->blocks = NULL;
    p->count = 0;
}

ferry_err ferry__bytes_reserve(ferry__bytes *b, ferry__bytes_pool *a, size_t extra) {
    if (b->off && b->off == b->len) b->off = b->len = 0;
    if (b->cap - b->len >= extra) return FERRY_OK;
    if (!b->data && extra <= a->block) { /* the common case: one cached block */
        b->data = a->count ? a->blocks[--a->count] : ferry__malloc(&a->alloc, a->block);
        if (!b->data) return FERRY_ENOMEM;
        b->cap = a->block;
        return FERRY_OK;
    }
    if (b->off) { /* slide pending bytes to the front before growing */
        memmove(b->data, b->data + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
        if (b->cap - b->len >= extra) return FERRY_OK;
    }
    size_t cap = b->cap ? b->cap : a->block;
    while (cap - b->len < extra) cap *= 2;
    char *d = ferry__realloc(&a->alloc, b->data, cap);
    if (!d) return FERRY_ENOMEM;
    b->data = d;
    b->cap = cap;
    return FERRY_OK;
}

ferry_err ferry__bytes_append(ferry__bytes *b, ferry__bytes_pool *a, const void *p, size_t n) {
    ferry_err err = ferry__bytes_reserve(b, a, n);
    if (err) return err;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return FERRY_OK;
}

ferry_err ferry__bytes_append_str(ferry__bytes *b, ferry__bytes_pool *a, const char *s) {
    return ferry__bytes_append(b, a, s, strlen(s));
}

ferry_err ferry__bytes_append_u64(ferry__bytes *b, ferry__bytes_pool *a, unsigned long long v,
                                  int hex) {
    char tmp[24];
    size_t n = 0;
    unsigned base = hex ? 16 : 10;
    do {
        tmp[sizeof tmp - 1 - n++] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v);
    return ferry__bytes_append(b, a, tmp + sizeof tmp - n, n);
}

void ferry__bytes_consume(ferry__bytes *b, size_t n) {
    b->off += n;
    if (b->off >= b->len) b->off = b->len = 0;
}

void ferry__bytes_trim(ferry__bytes *b, ferry__bytes_pool *a) {
    if (b->off != b->len) return;
    ferry__bytes_free(b, a);
}

void ferry__bytes_free(ferry__bytes *b, ferry__bytes_pool *a) {
    if (b->data && b->cap == a->block && a->count < a->max)
        a->blocks[a->count++] = b->data;
    else
        ferry__free(&a->alloc, b->data);
    *b = (ferry__bytes){0};
}

long ferry__bytes_recv(ferry__bytes *b, ferry__bytes_pool *a, int fd, size_t max) {
    if (ferry__bytes_reserve(b, a, max) != FERRY_OK) {
        errno = ENOMEM;
        return -2;
    }
    ssize_t n;
    do n = recv(fd, b->data + b->len, b->cap - b->len < max ? b->cap - b->len : max, 0);
    while (n < 0 && errno == EINTR);
    if (n > 0) b->len += (size_t)n;
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? -1 : -2;
    return (long)n;
}

long ferry__bytes_recv_inplace(ferry__bytes *b, int fd) {
    if (b->cap == b->len) return -1;
    ssize_t n;
    do n = recv(fd, b->data + b->len, b->cap - b->len, 0);
    while (n < 0 && errno == EINTR);
    if (n > 0) b->len += (size_t)n;
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? -1 : -2;
    return (long)n;
}

long ferry__bytes_send(ferry__bytes *b, int fd) { return ferry__bytes_send_flags(b, fd, 0); }

long ferry__bytes_send_flags(ferry__bytes *b, int fd, int flags) {
    ssize_t n;
    do n = send(fd, b->data + b->off, b->len - b->off, MSG_NOSIGNAL | flags);
    while (n < 0 && errno == EINTR);
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? -1 : -2;
    ferry__bytes_consume(b, (size_t)n);
    return (long)n;
}
