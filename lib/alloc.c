#include <errno.h>
#include <stdlib.h>

#include "internal.h"

static void *libc_malloc(void *ud, size_t n) {
    (void)ud;
    return malloc(n);
}
static void *libc_realloc(void *ud, void *p, size_t n) {
    (void)ud;
    return realloc(p, n);
}
static void libc_free(void *ud, void *p) {
    (void)ud;
    free(p);
}

void ferry__allocator_init(ferry_allocator *dst, const ferry_allocator *user) {
    if (user && user->malloc && user->realloc && user->free) {
        *dst = *user;
        return;
    }
    *dst = (ferry_allocator){libc_malloc, libc_realloc, libc_free, NULL};
}

char *ferry__strdup(const ferry_allocator *a, const char *s) {
    size_t n = strlen(s) + 1;
    char *d = ferry__malloc(a, n);
    if (d) memcpy(d, s, n);
    return d;
}

ferry_err ferry__err_from_errno(int e) {
    switch (e) {
    case 0: return FERRY_OK;
    case ENOMEM:
    case ENOBUFS: return FERRY_ENOMEM;
    case EADDRINUSE: return FERRY_EADDRINUSE;
    case ETIMEDOUT: return FERRY_ETIMEDOUT;
    case ECONNREFUSED: return FERRY_ECONNREFUSED;
    case ECONNRESET:
    case EPIPE: return FERRY_ECONNRESET;
    case EMFILE:
    case ENFILE: return FERRY_ELIMIT;
    case EINVAL: return FERRY_EINVAL;
    case EHOSTUNREACH:
    case ENETUNREACH:
    case EADDRNOTAVAIL: return FERRY_EUPSTREAM;
    default: return FERRY_ESYS;
    }
}
