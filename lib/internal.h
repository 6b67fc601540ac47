/* Internal helpers shared by every module: allocation through the engine's hook, clocks. */
#ifndef FERRY__INTERNAL_H
#define FERRY__INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include "ferry/alloc.h"
#include "ferry/error.h"

#define FERRY__ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* An allocator with every member filled (libc defaults where the user gave none). */
void ferry__allocator_init(ferry_allocator *dst, const ferry_allocator *user);

static inline void *ferry__malloc(const ferry_allocator *a, size_t n) {
    return a->malloc(a->user_data, n);
}
static inline void *ferry__calloc(const ferry_allocator *a, size_t n) {
    void *p = a->malloc(a->user_data, n);
    if (p) memset(p, 0, n);
    return p;
}
static inline void *ferry__realloc(const ferry_allocator *a, void *p, size_t n) {
    return a->realloc(a->user_data, p, n);
}
static inline void ferry__free(const ferry_allocator *a, void *p) {
    if (p) a->free(a->user_data, p);
}
char *ferry__strdup(const ferry_allocator *a, const char *s);

/* Monotonic clock in milliseconds / microseconds. */
static inline uint64_t ferry__now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}
static inline uint64_t ferry__now_ms(void) { return ferry__now_us() / 1000u; }
static inline int64_t ferry__wall_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* errno -> ferry_err for socket calls. */
ferry_err ferry__err_from_errno(int e);

#endif
