/* Backend pools for the reverse direction. */
#ifndef FERRY_POOL_H
#define FERRY_POOL_H

#include "ferry/export.h"
#include "ferry/error.h"
#include "ferry/session.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ferry_engine ferry_engine;
typedef struct ferry_pool ferry_pool;

/* Create an empty pool owned by `engine`; it is freed with the engine. `name` is copied.
 * Call from the thread that owns the engine, before ferry_engine_start(). */
FERRY_API ferry_err ferry_pool_new(ferry_engine *engine, const char *name, ferry_pool **out);

/* Add a backend "IP:PORT", "[IPv6]:PORT" or "NAME:PORT" (a name is resolved once, here,
 * on the calling thread; never call this from a worker thread). `weight` 0 means 1.
 * Before ferry_engine_start() only. *out (may be NULL) receives the backend handle. */
FERRY_API ferry_err ferry_pool_add(ferry_pool *pool, const char *address, unsigned weight,
                                   ferry_backend **out);

/* How long a backend whose connect failed is skipped by the balancer (default 2000 ms;
 * 0 disables passive marking). Before ferry_engine_start() only. */
FERRY_API ferry_err ferry_pool_set_down_time(ferry_pool *pool, unsigned ms);

FERRY_API unsigned ferry_pool_size(const ferry_pool *pool);

/* The backend's address as given to ferry_pool_add(). Thread-safe. */
FERRY_API const char *ferry_backend_address(const ferry_backend *backend);

/* 1 while the backend is marked down after a failed connect, else 0. Thread-safe. */
FERRY_API int ferry_backend_is_down(const ferry_backend *backend);

#ifdef __cplusplus
}
#endif
#endif
