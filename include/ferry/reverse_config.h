/* The reverse proxy's configuration file (format: doc/reverse-config.md): backend pools,
 * listeners (http, tcp, sni) with their options and routes, and the engine-wide settings.
 *
 * Reading happens in two steps, because the engine-wide settings (workers, drain,
 * error-log) are options of the engine that the pools are then made on:
 *
 *     ferry_reverse_config *cfg;
 *     ferry_reverse_config_load("reverse.conf", NULL, &cfg, err, sizeof err);
 *     ferry_engine_opts eo;
 *     ferry_engine_opts_init(&eo);
 *     ferry_reverse_config_engine_opts(cfg, &eo, err, sizeof err);  workers, drain, error log
 *     ferry_engine_new(&eo, &engine);
 *     ferry_reverse_config_apply(cfg, engine, err, sizeof err);     pools, routers, listeners
 *     ferry_engine_run(engine); ...
 *     ferry_engine_free(engine);
 *     ferry_reverse_config_free(cfg);                               after the engine
 *
 * and ferry_reverse_config_check() validates a configuration without a caller's engine,
 * without binding a port and without opening a log file (a daemon's --check-config).
 *
 * Errors: FERRY_ECONFIG with "path:line: message" in err (err may be NULL), FERRY_ENOMEM,
 * and from apply the code of what failed, such as FERRY_EADDRINUSE from binding, again
 * with the line of the directive.
 *
 * Threads: a handle is read, checked and applied on one thread (the engine's owning thread
 * for apply); these calls block on file I/O and DNS (backend names): configuration time
 * only. Once apply has returned the handle is not changed any more, and the getters may be
 * called from any thread. */
#ifndef FERRY_REVERSE_CONFIG_H
#define FERRY_REVERSE_CONFIG_H

#include <stddef.h>
#include "ferry/export.h"
#include "ferry/alloc.h"
#include "ferry/engine.h"
#include "ferry/error.h"
#include "ferry/pool.h"
#include "ferry/router.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ferry_reverse_config ferry_reverse_config;

/* Read the file at `path` into a new handle (*out; NULL on error), owned by the caller
 * (ferry_reverse_config_free()). Checks the syntax, every value, and that each pool a
 * listener or route names exists; nothing is created yet. allocator NULL: libc (copied;
 * used for everything the handle, check and apply allocate). */
FERRY_API ferry_err ferry_reverse_config_load(const char *path, const ferry_allocator *allocator,
                                              ferry_reverse_config **out, char *err,
                                              size_t err_size);

/* The same from text in memory; `name` stands for the path in messages. */
FERRY_API ferry_err ferry_reverse_config_parse(const char *text, size_t len, const char *name,
                                               const ferry_allocator *allocator,
                                               ferry_reverse_config **out, char *err,
                                               size_t err_size);

/* Before ferry_engine_new(): set the engine options the file gives (workers, drain,
 * max-connections) in opts, which the caller initialised; with error-log, also open that
 * log (owned by the handle, opened once however often this is called) and set opts->log
 * and log_user_data to it. Fields the file does not mention keep their values. */
FERRY_API ferry_err ferry_reverse_config_engine_opts(ferry_reverse_config *config,
                                                     ferry_engine_opts *opts, char *err,
                                                     size_t err_size);

/* Everything apply does, on a private engine that is freed again, except binding the
 * listeners and opening log files (they are checked for being writable instead): backend
 * names are resolved, balancers, health checks and routes are built. Only what depends on
 * the moment (a port in use, a backend gone from DNS) can still fail in apply. */
FERRY_API ferry_err ferry_reverse_config_check(const ferry_reverse_config *config, char *err,
                                               size_t err_size);

/* Build the configuration on `engine`, which has not started: the pools (owned by the
 * engine), a router for each http and sni listener and the access logs (owned by the
 * handle), then the listeners, bound here so that a port in use is reported with the line
 * of its listen directive. Once per handle (FERRY_ESTATE after). On error what was built
 * stays built; treat any error as fatal and free the engine, then the handle. */
FERRY_API ferry_err ferry_reverse_config_apply(ferry_reverse_config *config, ferry_engine *engine,
                                               char *err, size_t err_size);

/* Listeners in the file, in file order. */
FERRY_API unsigned ferry_reverse_config_listener_count(const ferry_reverse_config *config);

/* The options apply passes to ferry_engine_listen() for listener `index` (NULL if out of
 * range); they live as long as the handle. Before apply a program may change fields the
 * file has no directive for, such as hooks; strings it sets there must stay valid until
 * apply returns. apply sets direction, direction_data and access_log. */
FERRY_API ferry_listener_opts *ferry_reverse_config_listener_opts(ferry_reverse_config *config,
                                                                  unsigned index);

/* After apply: the engine's listener (ferry_listener_port() gives the bound port), and the
 * router of an http or sni listener (NULL for tcp listeners). NULL before apply. */
FERRY_API ferry_listener *ferry_reverse_config_listener(const ferry_reverse_config *config,
                                                        unsigned index);
FERRY_API ferry_router *ferry_reverse_config_router(const ferry_reverse_config *config,
                                                    unsigned index);

/* After apply: the pool declared as `name`, for run-time changes (ferry_pool_add(),
 * ferry_backend_set_draining(), ...). NULL before apply or for an unknown name. */
FERRY_API ferry_pool *ferry_reverse_config_pool(const ferry_reverse_config *config,
                                                const char *name);

/* Free the routers and close the logs the handle owns. NULL is a no-op. After
 * ferry_engine_free() of the engine it was applied to: its listeners use them. */
FERRY_API void ferry_reverse_config_free(ferry_reverse_config *config);

#ifdef __cplusplus
}
#endif
#endif
