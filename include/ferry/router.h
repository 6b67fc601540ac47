/* The reverse proxy's routing table: virtual hosts, then path rules, then an optional
 * method filter; each route sends its requests to a pool with its own options. Used as
 * the direction of HTTP listeners: ferry_direction_router() with a ferry_router* as
 * direction_data.
 *
 * Matching order, as nginx does it:
 *   1. the virtual host: routes for the exact Host (port and trailing dot ignored, case
 *      insensitive) win over wildcard routes ("*.example.com", the longest suffix first),
 *      which win over routes for any host (host NULL or "*");
 *   2. among that host's routes, a path route: an exact path match wins at once; else
 *      the regular expressions in the order they were added, first match; else the
 *      longest matching prefix. Paths are matched without the query string. Prefixes
 *      match whole segments ("/app" matches "/app", "/app/x" and "/app?q", not "/apple");
 *   3. a route with a method list only matches those methods.
 * No route: 404, answered by ferry.
 *
 * A router is configured on one thread, then shared read-only by every worker; it must
 * outlive the engines using it (like ferry_forward). */
#ifndef FERRY_ROUTER_H
#define FERRY_ROUTER_H

#include <stddef.h>
#include <stdint.h>
#include "ferry/export.h"
#include "ferry/alloc.h"
#include "ferry/direction.h"
#include "ferry/error.h"
#include "ferry/pool.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ferry_router ferry_router;

typedef enum ferry_path_match {
    FERRY_PATH_PREFIX = 0, /* whole-segment prefix */
    FERRY_PATH_EXACT = 1,
    FERRY_PATH_REGEX = 2   /* POSIX extended regular expression, case-sensitive */
} ferry_path_match;

typedef struct ferry_route_opts {
    const char *host;            /* "example.com", "*.example.com", or NULL / "*" for any */
    ferry_path_match match;
    const char *path;            /* the prefix, exact path or expression; NULL: prefix "/" */
    const char *methods;         /* "GET,HEAD"; NULL: every method */
    ferry_pool *pool;            /* required */
    const char *strip_prefix;    /* removed from the start of the path (whole segments) */
    const char *add_prefix;      /* then put in front of it */
    int backend_host;            /* 1: Host becomes the backend's address; 0 (default):
                                  * the client's Host goes upstream */
    const char *set_headers;     /* "Name: value" lines separated by '\n', set upstream */
    const char *remove_headers;  /* "Name,Name", removed from the request upstream */
    unsigned connect_timeout_ms; /* 0: the listener's */
    unsigned response_timeout_ms;/* 0: the listener's */
    uint64_t max_body_bytes;     /* 0: the listener's */
    const char *name;            /* for logs; NULL: "route N" */
    /* Set-Cookie Domain rewriting (with the listener's rewrite_responses): the backend's
     * cookie domain, and the public one ("" or NULL removes the attribute). Paths under
     * add_prefix in Location and Set-Cookie Path are mapped back under strip_prefix. */
    const char *cookie_domain;
    const char *public_cookie_domain;
    /* Text substitution in response bodies (as nginx's sub_filter): "from=>to" pairs, one
     * per line; from is 1-256 bytes. Applied to identity-coded text bodies (text, JSON,
     * JavaScript, XML), correctly across read boundaries; requests of the route then ask
     * the backend for identity encoding. Such bodies are re-framed chunked, and the
     * on_body hook does not see them. NULL: none. */
    const char *substitutions;
    int substitute_icase;        /* 1: ASCII case-insensitive matching */
} ferry_route_opts;

FERRY_API void ferry_route_opts_init(ferry_route_opts *opts);

/* The built-in router direction (HTTP listeners only). Static table. */
FERRY_API const ferry_direction_ops *ferry_direction_router(void);

/* allocator NULL: libc (copied). */
FERRY_API ferry_err ferry_router_new(const ferry_allocator *allocator, ferry_router **out);
/* NULL is a no-op. After every engine using it is freed. */
FERRY_API void ferry_router_free(ferry_router *router);

/* Append a route (strings are copied). FERRY_ECONFIG with a message in err (may be NULL)
 * for a bad host pattern, path, expression, method list or header line. */
FERRY_API ferry_err ferry_router_add(ferry_router *router, const ferry_route_opts *opts,
                                     char *err, size_t err_size);

FERRY_API unsigned ferry_router_size(const ferry_router *router);

#ifdef __cplusplus
}
#endif
#endif
