/* Resolver: a FIFO job queue served by a few pthreads calling getaddrinfo, results posted
 * back to the requesting loop, and a hashed TTL cache shared by all loops.
 *
 * Locking: `lock` guards the queue, the list of live requests and `shutdown`; `cache_lock`
 * guards the cache. A request's `canceled` flag is touched only on its loop's thread
 * (cancel and delivery both run there), so it needs no lock. */
#define _GNU_SOURCE
#include "resolver.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

#include "internal.h"

enum {
    HOST_MAX = 255,
    DEFAULT_THREADS = 2,
    DEFAULT_CACHE_MAX = 1024,
    BUCKETS_MAX = 1 << 16,
    POST_RETRY_MS = 10
};

struct ferry__resolve_req {
    ferry__resolver *r;
    ferry__loop *loop;
    ferry__resolve_fn *fn;
    void *user_data;
    struct ferry__resolve_req *live_prev, *live_next; /* every request not yet freed */
    struct ferry__resolve_req *q_prev, *q_next;       /* the job queue, while queued */
    int queued;   /* under r->lock: still in the queue, no thread has taken it */
    int canceled; /* loop thread only */
    ferry_err result;
    ferry__addrs addrs;
    uint16_t port;
    char host[HOST_MAX + 1];
};

typedef struct cache_entry {
    struct cache_entry *chain;        /* bucket chain */
    struct cache_entry *older, *newer; /* insertion order, for eviction */
    uint32_t hash;
    uint64_t expires_ms;
    ferry_err result; /* FERRY_OK or FERRY_ERESOLVE (negative entry) */
    ferry__addrs addrs;
    uint16_t port;
    char host[];
} cache_entry;

struct ferry__resolver {
    ferry_allocator alloc;
    ferry__getaddrinfo_fn *gai;
    void (*freeai)(struct addrinfo *res);
    unsigned ttl_ms, negative_ttl_ms, cache_max;

    pthread_mutex_t lock;
    pthread_cond_t work;
    int shutdown;
    ferry__resolve_req *q_head, *q_tail;
    ferry__resolve_req *live;

    pthread_t *threads;
    unsigned nthreads; /* started */

    pthread_mutex_t cache_lock;
    cache_entry **buckets;
    uint32_t bucket_mask;
    cache_entry *oldest, *newest;
    unsigned cache_len;

    _Atomic uint64_t lookups;
};

/* ---- host keys: ASCII case-insensitive, locale-independent ---- */

static unsigned char lower(char c) {
    unsigned char u = (unsigned char)c;
    return u >= 'A' && u <= 'Z' ? (unsigned char)(u + ('a' - 'A')) : u;
}

static uint32_t key_hash(const char *host, uint16_t port) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const char *p = host; *p; p++) h = (h ^ lower(*p)) * 16777619u;
    h = (h ^ (port & 0xffu)) * 16777619u;
    return (h ^ (uint32_t)(port >> 8)) * 16777619u;
}

static int host_eq(const char *a, const char *b) {
    for (; *a && lower(*a) == lower(*b); a++, b++) {
    }
    return *a == '\0' && *b == '\0';
}

/* ---- cache (all under cache_lock) ---- */

static cache_entry **cache_slot(ferry__resolver *r, uint32_t hash, const char *host,
                                uint16_t port) {
    cache_entry **p = &r->buckets[hash & r->bucket_mask];
    for (; *p; p = &(*p)->chain)
        if ((*p)->hash == hash && (*p)->port == port && host_eq((*p)->host, host)) return p;
    return p;
}

static void age_unlink(ferry__resolver *r, cache_entry *e) {
    if (e->older)
        e->older->newer = e->newer;
    else
        r->oldest = e->newer;
    if (e->newer)
        e->newer->older = e->older;
    else
        r->newest = e->older;
    e->older = e->newer = NULL;
}

static void age_append(ferry__resolver *r, cache_entry *e) {
    e->older = r->newest;
    e->newer = NULL;
    if (r->newest)
        r->newest->newer = e;
    else
        r->oldest = e;
    r->newest = e;
}

/* Unlinks e and returns it for freeing once the lock is dropped. */
static cache_entry *cache_remove(ferry__resolver *r, cache_entry *e) {
    cache_entry **p = cache_slot(r, e->hash, e->host, e->port);
    *p = e->chain;
    age_unlink(r, e);
    r->cache_len--;
    e->chain = NULL;
    return e;
}

/* Make room for one entry: expired ones go first, else the oldest. Victims are chained
 * onto *garbage so they are freed outside the lock. */
static void cache_make_room(ferry__resolver *r, uint64_t now, cache_entry **garbage) {
    if (r->cache_len < r->cache_max) return;
    for (cache_entry *e = r->oldest, *next; e; e = next) {
        next = e->newer;
        if (e->expires_ms <= now) {
            cache_remove(r, e)->chain = *garbage;
            *garbage = e;
        }
    }
    if (r->cache_len >= r->cache_max && r->oldest) {
        cache_entry *e = cache_remove(r, r->oldest);
        e->chain = *garbage;
        *garbage = e;
    }
}

static void free_chain(ferry__resolver *r, cache_entry *e) {
    for (cache_entry *next; e; e = next) {
        next = e->chain;
        ferry__free(&r->alloc, e);
    }
}

/* 1: fresh entry found and copied; 0: miss (an expired entry is dropped on the way). */
static int cache_get(ferry__resolver *r, const char *host, uint16_t port, ferry_err *result,
                     ferry__addrs *addrs) {
    if (!r->buckets) return 0;
    uint32_t hash = key_hash(host, port);
    uint64_t now = ferry__now_ms();
    cache_entry *stale = NULL;
    int hit = 0;
    pthread_mutex_lock(&r->cache_lock);
    cache_entry *e = *cache_slot(r, hash, host, port);
    if (e && e->expires_ms > now) {
        *result = e->result;
        if (e->result == FERRY_OK) *addrs = e->addrs;
        hit = 1;
    } else if (e) {
        stale = cache_remove(r, e);
    }
    pthread_mutex_unlock(&r->cache_lock);
    ferry__free(&r->alloc, stale);
    return hit;
}

static void cache_put(ferry__resolver *r, const ferry__resolve_req *req) {
    unsigned ttl = req->result == FERRY_OK ? r->ttl_ms : r->negative_ttl_ms;
    if (!r->buckets || ttl == 0) return;
    size_t hlen = strlen(req->host) + 1;
    /* Allocated before locking; on OOM the answer simply is not cached. */
    cache_entry *fresh = ferry__malloc(&r->alloc, sizeof *fresh + hlen);
    if (!fresh) return;
    uint64_t now = ferry__now_ms();
    *fresh = (cache_entry){.hash = key_hash(req->host, req->port), .expires_ms = now + ttl,
                           .result = req->result, .addrs = req->addrs, .port = req->port};
    memcpy(fresh->host, req->host, hlen);
    cache_entry *garbage = NULL;
    pthread_mutex_lock(&r->cache_lock);
    cache_entry **slot = cache_slot(r, fresh->hash, fresh->host, fresh->port);
    if (*slot) {
        garbage = cache_remove(r, *slot); /* a concurrent lookup of the same name */
        slot = cache_slot(r, fresh->hash, fresh->host, fresh->port);
    } else {
        cache_make_room(r, now, &garbage);
        slot = cache_slot(r, fresh->hash, fresh->host, fresh->port); /* chain may have moved */
    }
    *slot = fresh;
    age_append(r, fresh);
    r->cache_len++;
    pthread_mutex_unlock(&r->cache_lock);
    free_chain(r, garbage);
}

/* ---- request bookkeeping (under lock) ---- */

static void live_link(ferry__resolver *r, ferry__resolve_req *req) {
    req->live_prev = NULL;
    req->live_next = r->live;
    if (r->live) r->live->live_prev = req;
    r->live = req;
}

static void live_unlink(ferry__resolver *r, ferry__resolve_req *req) {
    if (req->live_prev)
        req->live_prev->live_next = req->live_next;
    else
        r->live = req->live_next;
    if (req->live_next) req->live_next->live_prev = req->live_prev;
}

static void queue_push(ferry__resolver *r, ferry__resolve_req *req) {
    req->q_next = NULL;
    req->q_prev = r->q_tail;
    if (r->q_tail)
        r->q_tail->q_next = req;
    else
        r->q_head = req;
    r->q_tail = req;
    req->queued = 1;
}

static void queue_unlink(ferry__resolver *r, ferry__resolve_req *req) {
    if (req->q_prev)
        req->q_prev->q_next = req->q_next;
    else
        r->q_head = req->q_next;
    if (req->q_next)
        req->q_next->q_prev = req->q_prev;
    else
        r->q_tail = req->q_prev;
    req->q_prev = req->q_next = NULL;
    req->queued = 0;
}

/* ---- worker side ---- */

static void copy_addrs(const struct addrinfo *res, uint16_t port, ferry__addrs *out) {
    out->count = 0;
    for (const struct addrinfo *ai = res; ai && out->count < FERRY__ADDRS_MAX; ai = ai->ai_next) {
        ferry__sockaddr *dst = &out->addr[out->count];
        memset(dst, 0, sizeof *dst);
        if (ai->ai_family == AF_INET && ai->ai_addrlen >= sizeof dst->in) {
            memcpy(&dst->in, ai->ai_addr, sizeof dst->in);
            dst->in.sin_port = htons(port); /* a replacement getaddrinfo may leave it 0 */
        } else if (ai->ai_family == AF_INET6 && ai->ai_addrlen >= sizeof dst->in6) {
            memcpy(&dst->in6, ai->ai_addr, sizeof dst->in6);
            dst->in6.sin6_port = htons(port);
        } else {
            continue;
        }
        out->count++;
    }
}

/* Only "the name has no address" is worth remembering; transient failures (EAI_AGAIN,
 * EAI_MEMORY, EAI_SYSTEM...) are retried on the next lookup. */
static int is_definitive(int rc) {
    switch (rc) {
    case 0:
    case EAI_NONAME:
#ifdef EAI_NODATA
    case EAI_NODATA:
#endif
#ifdef EAI_ADDRFAMILY
    case EAI_ADDRFAMILY:
#endif
        return 1;
    default: return 0;
    }
}

static void run_lookup(ferry__resolver *r, ferry__resolve_req *req) {
    char service[8];
    snprintf(service, sizeof service, "%u", (unsigned)req->port);
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    struct addrinfo *res = NULL;
    atomic_fetch_add(&r->lookups, 1);
    int rc = r->gai(req->host, service, &hints, &res);
    req->addrs.count = 0;
    if (rc == 0 && res) copy_addrs(res, req->port, &req->addrs);
    if (res) r->freeai(res);
    req->result = req->addrs.count ? FERRY_OK : FERRY_ERESOLVE;
    if (is_definitive(rc)) cache_put(r, req);
}

/* Loop thread. The request leaves the live list before the callback, which may start
 * new lookups. */
static void deliver(ferry__loop *loop, void *ud) {
    (void)loop;
    ferry__resolve_req *req = ud;
    ferry__resolver *r = req->r;
    pthread_mutex_lock(&r->lock);
    live_unlink(r, req);
    pthread_mutex_unlock(&r->lock);
    if (!req->canceled) req->fn(req->user_data, req->result, &req->addrs);
    ferry__free(&r->alloc, req);
}

static int shutting_down(ferry__resolver *r) {
    pthread_mutex_lock(&r->lock);
    int s = r->shutdown;
    pthread_mutex_unlock(&r->lock);
    return s;
}

/* A post can only fail on OOM: retry until memory returns rather than leave the caller
 * waiting forever. At shutdown give up; the request stays live and resolver_free frees it.
 * req must not be touched once posted: the loop may already have freed it. */
static void post_result(ferry__resolver *r, ferry__resolve_req *req) {
    while (!shutting_down(r)) {
        if (ferry__loop_post(req->loop, deliver, req) == FERRY_OK) return;
        struct timespec ts = {0, POST_RETRY_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static void *worker_main(void *arg) {
    ferry__resolver *r = arg;
    pthread_mutex_lock(&r->lock);
    for (;;) {
        while (!r->shutdown && !r->q_head) pthread_cond_wait(&r->work, &r->lock);
        if (r->shutdown) break;
        ferry__resolve_req *req = r->q_head;
        queue_unlink(r, req); /* from here on cancel only flags it */
        pthread_mutex_unlock(&r->lock);
        run_lookup(r, req);
        post_result(r, req);
        pthread_mutex_lock(&r->lock);
    }
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

/* ---- lifecycle ---- */

static void stop_threads(ferry__resolver *r) {
    pthread_mutex_lock(&r->lock);
    r->shutdown = 1;
    pthread_cond_broadcast(&r->work);
    pthread_mutex_unlock(&r->lock);
    for (unsigned i = 0; i < r->nthreads; i++) pthread_join(r->threads[i], NULL);
    r->nthreads = 0;
}

/* Workers block every signal so process signals land on the application's threads. */
static int start_threads(ferry__resolver *r, unsigned n) {
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = 0;
    for (; r->nthreads < n; r->nthreads++)
        if ((rc = pthread_create(&r->threads[r->nthreads], NULL, worker_main, r)) != 0) break;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

static int init_cache(ferry__resolver *r) {
    if (r->ttl_ms == 0 && r->negative_ttl_ms == 0) return 0;
    uint32_t n = 16;
    while (n < r->cache_max && n < BUCKETS_MAX) n *= 2;
    r->buckets = ferry__calloc(&r->alloc, n * sizeof *r->buckets);
    if (!r->buckets) return -1;
    r->bucket_mask = n - 1;
    return 0;
}

ferry__resolver *ferry__resolver_new(const ferry_allocator *a, const ferry__resolver_opts *opts) {
    ferry_allocator alloc;
    ferry__allocator_init(&alloc, a);
    ferry__resolver_opts o = opts ? *opts : (ferry__resolver_opts){0};
    ferry__resolver *r = ferry__calloc(&alloc, sizeof *r);
    if (!r) return NULL;
    r->alloc = alloc;
    r->gai = o.getaddrinfo ? o.getaddrinfo : getaddrinfo;
    r->freeai = o.freeaddrinfo ? o.freeaddrinfo : freeaddrinfo;
    r->ttl_ms = o.ttl_ms;
    r->negative_ttl_ms = o.negative_ttl_ms;
    r->cache_max = o.cache_max ? o.cache_max : DEFAULT_CACHE_MAX;
    atomic_init(&r->lookups, 0);
    unsigned n = o.threads ? o.threads : DEFAULT_THREADS;

    int have_lock = 0, have_work = 0, have_cache_lock = 0;
    if (init_cache(r) < 0) goto fail;
    r->threads = ferry__calloc(&r->alloc, n * sizeof *r->threads);
    if (!r->threads) goto fail;
    if (!(have_lock = pthread_mutex_init(&r->lock, NULL) == 0)) goto fail;
    if (!(have_work = pthread_cond_init(&r->work, NULL) == 0)) goto fail;
    if (!(have_cache_lock = pthread_mutex_init(&r->cache_lock, NULL) == 0)) goto fail;
    if (start_threads(r, n) != 0) goto fail;
    return r;
fail:
    if (have_work) stop_threads(r);
    if (have_cache_lock) pthread_mutex_destroy(&r->cache_lock);
    if (have_work) pthread_cond_destroy(&r->work);
    if (have_lock) pthread_mutex_destroy(&r->lock);
    ferry__free(&r->alloc, r->threads);
    ferry__free(&r->alloc, r->buckets);
    ferry__free(&alloc, r);
    return NULL;
}

void ferry__resolver_free(ferry__resolver *r) {
    if (!r) return;
    stop_threads(r);
    /* Queued, finished-but-undelivered and posted-but-not-run requests are all live; the
     * loops drop their post nodes without running them. */
    for (ferry__resolve_req *req = r->live, *next; req; req = next) {
        next = req->live_next;
        ferry__free(&r->alloc, req);
    }
    for (cache_entry *e = r->oldest, *next; e; e = next) {
        next = e->newer;
        ferry__free(&r->alloc, e);
    }
    pthread_mutex_destroy(&r->cache_lock);
    pthread_cond_destroy(&r->work);
    pthread_mutex_destroy(&r->lock);
    ferry__free(&r->alloc, r->threads);
    ferry__free(&r->alloc, r->buckets);
    ferry__free(&r->alloc, r);
}

uint64_t ferry__resolver_lookups(const ferry__resolver *r) { return atomic_load(&r->lookups); }

/* ---- requests ---- */

ferry_err ferry__resolve(ferry__resolver *r, ferry__loop *loop, const char *host, uint16_t port,
                         ferry__resolve_fn *fn, void *user_data, ferry__resolve_req **pending,
                         ferry__addrs *addrs) {
    *pending = NULL;
    size_t len = host ? strnlen(host, HOST_MAX + 1) : 0;
    if (len == 0 || len > HOST_MAX) return FERRY_ERESOLVE;
    if (ferry__addr_from_literal(host, port, &addrs->addr[0]) == 0) {
        addrs->count = 1;
        return FERRY_OK;
    }
    ferry_err cached;
    if (cache_get(r, host, port, &cached, addrs)) return cached;

    ferry__resolve_req *req = ferry__calloc(&r->alloc, sizeof *req);
    if (!req) return FERRY_ENOMEM;
    req->r = r;
    req->loop = loop;
    req->fn = fn;
    req->user_data = user_data;
    req->port = port;
    memcpy(req->host, host, len + 1);
    pthread_mutex_lock(&r->lock);
    live_link(r, req);
    queue_push(r, req);
    pthread_cond_signal(&r->work);
    pthread_mutex_unlock(&r->lock);
    *pending = req;
    return FERRY_OK;
}

void ferry__resolve_cancel(ferry__resolve_req *req) {
    if (!req) return;
    ferry__resolver *r = req->r;
    pthread_mutex_lock(&r->lock);
    int was_queued = req->queued;
    if (was_queued) {
        queue_unlink(r, req);
        live_unlink(r, req);
    }
    pthread_mutex_unlock(&r->lock);
    if (was_queued)
        ferry__free(&r->alloc, req);
    else
        req->canceled = 1; /* a worker has it; deliver() frees it without calling back */
}
