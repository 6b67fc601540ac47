/* Internal asynchronous resolver: getaddrinfo on a small pthread pool, results delivered
 * on the requesting loop's thread (through ferry__loop_post), cancellable, with a positive
 * and negative cache. No loop thread ever blocks on DNS. */
#ifndef FERRY__RESOLVER_H
#define FERRY__RESOLVER_H

#include <netdb.h>
#include <netinet/in.h>
#include <stdint.h>
#include <sys/socket.h>
#include "ferry/alloc.h"
#include "ferry/error.h"
#include "addr.h"
#include "loop.h"

enum { FERRY__ADDRS_MAX = 8 };

typedef struct ferry__addrs {
    unsigned count;
    ferry__sockaddr addr[FERRY__ADDRS_MAX];
} ferry__addrs;

typedef struct ferry__resolver ferry__resolver;
typedef struct ferry__resolve_req ferry__resolve_req;

/* Runs on the requesting loop's thread. result is FERRY_OK (addrs has >= 1 entry) or
 * FERRY_ERESOLVE. addrs is only valid during the call. */
typedef void ferry__resolve_fn(void *user_data, ferry_err result, const ferry__addrs *addrs);

/* Replaceable for tests; same contract as getaddrinfo/freeaddrinfo. */
typedef int ferry__getaddrinfo_fn(const char *node, const char *service,
                                  const struct addrinfo *hints, struct addrinfo **res);

typedef struct ferry__resolver_opts {
    unsigned threads;         /* 0: 2 */
    unsigned ttl_ms;          /* positive cache lifetime; 0 disables positive caching */
    unsigned negative_ttl_ms; /* negative cache lifetime; 0 disables negative caching */
    unsigned cache_max;       /* entries; 0: 1024 */
    ferry__getaddrinfo_fn *getaddrinfo; /* NULL: libc getaddrinfo */
    void (*freeaddrinfo)(struct addrinfo *res); /* NULL: libc freeaddrinfo */
} ferry__resolver_opts;

ferry__resolver *ferry__resolver_new(const ferry_allocator *a, const ferry__resolver_opts *opts);
/* Joins the threads; requests still outstanding are freed and never called back. Call
 * only once no loop runs anymore (loops themselves may still exist). */
void ferry__resolver_free(ferry__resolver *r);

/* Look up host:port (TCP). Loop thread of `loop`.
 * - FERRY_OK and *pending == NULL: answered now (IP literal or fresh cache entry), *addrs filled.
 * - FERRY_OK and *pending != NULL: fn will be called later on loop's thread, unless
 *   ferry__resolve_cancel(*pending) is called first.
 * - FERRY_ERESOLVE: answered now from the negative cache (or the host is empty/too long).
 * - FERRY_ENOMEM. */
ferry_err ferry__resolve(ferry__resolver *r, ferry__loop *loop, const char *host, uint16_t port,
                         ferry__resolve_fn *fn, void *user_data, ferry__resolve_req **pending,
                         ferry__addrs *addrs);

/* Drop a pending request: fn will not be called. Requesting loop's thread only. */
void ferry__resolve_cancel(ferry__resolve_req *req);

/* getaddrinfo calls made so far (cache misses). Any thread. */
uint64_t ferry__resolver_lookups(const ferry__resolver *r);

#endif
