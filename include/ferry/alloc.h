/* Allocator hook. Each engine takes its own; NULL means libc malloc/realloc/free. */
#ifndef FERRY_ALLOC_H
#define FERRY_ALLOC_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* All three are called from any of the engine's threads, concurrently: they must be
 * thread-safe. malloc/realloc return NULL on failure; ferry then fails the operation
 * with FERRY_ENOMEM and never aborts. free(ud, NULL) must be a no-op. */
typedef struct ferry_allocator {
    void *(*malloc)(void *user_data, size_t size);
    void *(*realloc)(void *user_data, void *ptr, size_t size);
    void (*free)(void *user_data, void *ptr);
    void *user_data;
} ferry_allocator;

#ifdef __cplusplus
}
#endif
#endif
