/* Backend pools: membership and run-time changes (add, remove, drain, re-weight). The
 * balancers are in balance.c; health checks and re-resolution in health.c.
 *
 * Changes hold pool->config_lock, build the new member array (and hash ring) without
 * pool->lock, then swap them in under it: picks, which read them under pool->lock, never
 * wait for an allocation or a ring build. Old arrays are freed right after the swap (only
 * lock holders ever read them). Backends themselves are freed only with the engine. */
#include <netdb.h>
#include <stdio.h>

#include "engine_int.h"
#include "sticky.h"

enum { WEIGHT_MAX = 1000, MEMBERS_MAX = 0xffff };
#define ADDR_WORDS FERRY__ARRAY_LEN(((ferry_backend *)0)->addr_words)

_Static_assert(sizeof(ferry__sockaddr) <= sizeof(((ferry_backend *)0)->addr_words),
               "a sockaddr fits the backend's address words");

/* ---- the address seqlock (C11 fences as in Boehm, "Can seqlocks get along with
 * programming language memory models?") ---- */

void ferry__backend_addr(const ferry_backend *cb, ferry__sockaddr *out) {
    ferry_backend *b = (ferry_backend *)cb; /* atomic loads want non-const pointers */
    uint64_t w[ADDR_WORDS];
    unsigned before, after;
    do {
        before = atomic_load_explicit(&b->addr_seq, memory_order_acquire);
        for (size_t i = 0; i < ADDR_WORDS; i++)
            w[i] = atomic_load_explicit(&b->addr_words[i], memory_order_relaxed);
        atomic_thread_fence(memory_order_acquire);
        after = atomic_load_explicit(&b->addr_seq, memory_order_relaxed);
    } while ((before & 1u) || before != after);
    memcpy(out, w, sizeof *out);
}

void ferry__backend_set_addr(ferry_backend *b, const ferry__sockaddr *a) {
    uint64_t w[ADDR_WORDS] = {0};
    memcpy(w, a, sizeof *a);
    unsigned seq = atomic_load_explicit(&b->addr_seq, memory_order_relaxed);
    atomic_store_explicit(&b->addr_seq, seq + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    for (size_t i = 0; i < ADDR_WORDS; i++)
        atomic_store_explicit(&b->addr_words[i], w[i], memory_order_relaxed);
    atomic_store_explicit(&b->addr_seq, seq + 2, memory_order_release);
}

/* ---- pools ---- */

ferry_err ferry_pool_new(ferry_engine *e, const char *name, ferry_pool **out) {
    if (!e || !name || !out) return FERRY_EINVAL;
    if (atomic_load(&e->state) != ENGINE_NEW) return FERRY_ESTATE;
    ferry_pool *p = ferry__calloc(&e->alloc, sizeof *p);
    if (!p) return FERRY_ENOMEM;
    p->name = ferry__strdup(&e->alloc, name);
    if (!p->name) {
        ferry__free(&e->alloc, p);
        return FERRY_ENOMEM;
    }
    int have_lock = 0;
    if (!(have_lock = pthread_mutex_init(&p->lock, NULL) == 0) ||
        pthread_mutex_init(&p->config_lock, NULL) != 0) {
        if (have_lock) pthread_mutex_destroy(&p->lock);
        ferry__free(&e->alloc, p->name);
        ferry__free(&e->alloc, p);
        return FERRY_ESYS;
    }
    p->engine = e;
    p->down_ms = 2000;
    p->max_fails = 1;
    p->passive = FERRY_PASSIVE_CONNECT;
    p->balance = FERRY_BALANCE_ROUND_ROBIN;
    p->resolve_ms = e->opts.dns_ttl_ms ? e->opts.dns_ttl_ms : 30000;
    ferry_health_opts_init(&p->health);
    p->next = e->pools;
    e->pools = p;
    *out = p;
    return FERRY_OK;
}

/* Resolve a backend name once, on the configuring thread (never a loop thread). */
static ferry_err resolve_now(const char *host, uint16_t port, ferry__sockaddr *out, int *is_name) {
    *is_name = 0;
    if (ferry__addr_from_literal(host, port, out) == 0) return FERRY_OK;
    *is_name = 1;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    if (getaddrinfo(host, NULL, &hints, &res) != 0 || !res) return FERRY_ERESOLVE;
    memset(out, 0, sizeof *out);
    memcpy(out, res->ai_addr, res->ai_addrlen < sizeof *out ? res->ai_addrlen : sizeof *out);
    if (out->sa.sa_family == AF_INET6)
        out->in6.sin6_port = htons(port);
    else
        out->in.sin_port = htons(port);
    freeaddrinfo(res);
    return FERRY_OK;
}

static void backend_free(ferry_engine *e, ferry_backend *b) {
    ferry__free(&e->alloc, b->address);
    ferry__free(&e->alloc, b->host);
    ferry__free(&e->alloc, b);
}

static ferry_backend *backend_new(ferry_pool *p, const char *address, const char *host,
                                  uint16_t port, unsigned weight, const ferry__sockaddr *sa,
                                  int is_name) {
    ferry_engine *e = p->engine;
    ferry_backend *b = ferry__calloc(&e->alloc, sizeof *b);
    if (!b) return NULL;
    b->address = ferry__strdup(&e->alloc, address);
    b->host = ferry__strdup(&e->alloc, host);
    if (!b->address || !b->host) {
        backend_free(e, b);
        return NULL;
    }
    b->pool = p;
    b->port = port;
    b->is_name = (uint8_t)is_name;
    b->check_fd = -1;
    atomic_init(&b->weight, weight);
    ferry__backend_set_addr(b, sa);
    return b;
}

/* Swap in a new member array (and ring, when `ring_changed`), then free the old ones.
 * Under config_lock. */
static void publish(ferry_pool *p, ferry_backend **members, unsigned n, int ring_changed,
                    ferry__ring *ring) {
    ferry__ring *old_ring = NULL;
    pthread_mutex_lock(&p->lock);
    ferry_backend **old = p->members;
    p->members = members;
    p->nmembers = n;
    if (ring_changed) {
        old_ring = p->ring;
        p->ring = ring;
    }
    pthread_mutex_unlock(&p->lock);
    if (old != members) ferry__free(&p->engine->alloc, old);
    ferry__ring_free(p->engine, old_ring);
}

ferry_err ferry_pool_add(ferry_pool *p, const char *address, unsigned weight, ferry_backend **out) {
    if (!p || !address) return FERRY_EINVAL;
    ferry_engine *e = p->engine;
    if (weight == 0) weight = 1;
    if (weight > WEIGHT_MAX) return FERRY_EINVAL;
    char host[FERRY_HOST_MAX];
    uint16_t port;
    ferry__sockaddr sa;
    int is_name = 0;
    ferry_err err = ferry__addr_split(address, host, sizeof host, &port);
    if (!err && port == 0) err = FERRY_EADDR;
    if (!err) err = resolve_now(host, port, &sa, &is_name);
    if (err) return err;
    ferry_backend *b = backend_new(p, address, host, port, weight, &sa, is_name);
    if (!b) return FERRY_ENOMEM;

    ferry_backend **members = NULL;
    ferry__ring *ring = NULL;
    pthread_mutex_lock(&p->config_lock);
    unsigned n = p->nmembers;
    if (n >= MEMBERS_MAX || p->next_id >= (1ull << FERRY__BACKEND_ID_BITS) - 2) err = FERRY_ELIMIT;
    if (!err && !(members = ferry__malloc(&e->alloc, (n + 1) * sizeof *members)))
        err = FERRY_ENOMEM;
    if (!err) {
        b->id = p->next_id;
        if (p->sticky_name) b->sticky_id = ferry__sticky_id(p->sticky_key, p->name, b->address);
        err = ferry__ring_change(p, NULL, b, weight, &ring);
    }
    if (!err) {
        if (n) memcpy(members, p->members, n * sizeof *members);
        members[n] = b; /* ids ascend: the array stays sorted by id */
        p->next_id++;
        b->next_all = p->all;
        p->all = b;
        publish(p, members, n + 1, ring != NULL, ring);
    }
    pthread_mutex_unlock(&p->config_lock);
    if (err) {
        ferry__free(&e->alloc, members);
        backend_free(e, b);
        return err;
    }
    if (atomic_load(&e->state) == ENGINE_RUNNING) {
        ferry__log(e, FERRY_LOG_INFO, "pool %s: backend %s added", p->name, b->address);
        ferry__backend_watch(b);
    }
    if (out) *out = b;
    return FERRY_OK;
}

ferry_err ferry_pool_remove(ferry_pool *p, ferry_backend *b) {
    if (!p || !b || b->pool != p) return FERRY_EINVAL;
    ferry_engine *e = p->engine;
    ferry_err err = FERRY_OK;
    ferry_backend **members = NULL;
    ferry__ring *ring = NULL;
    pthread_mutex_lock(&p->config_lock);
    unsigned n = p->nmembers;
    if (atomic_load(&b->admin) == FERRY__BACKEND_REMOVED) err = FERRY_ESTATE;
    if (!err && n > 1 && !(members = ferry__malloc(&e->alloc, (n - 1) * sizeof *members)))
        err = FERRY_ENOMEM;
    if (!err) err = ferry__ring_change(p, b, NULL, 0, &ring);
    if (!err) {
        unsigned k = 0;
        for (unsigned i = 0; i < n; i++)
            if (p->members[i] != b) members[k++] = p->members[i];
        /* Picks skip it from here on, even before the swap. */
        atomic_store(&b->admin, FERRY__BACKEND_REMOVED);
        publish(p, members, k, ring != NULL, ring);
    }
    pthread_mutex_unlock(&p->config_lock);
    if (err) {
        ferry__free(&e->alloc, members);
        return err;
    }
    if (atomic_load(&e->state) == ENGINE_RUNNING)
        ferry__log(e, FERRY_LOG_INFO, "pool %s: backend %s removed (%u active)", p->name,
                   b->address, atomic_load(&b->active));
    return FERRY_OK;
}

ferry_err ferry_pool_set_down_time(ferry_pool *p, unsigned ms) {
    if (!p) return FERRY_EINVAL;
    if (atomic_load(&p->engine->state) != ENGINE_NEW) return FERRY_ESTATE;
    p->down_ms = ms;
    return FERRY_OK;
}

ferry_err ferry_pool_set_passive_checks(ferry_pool *p, unsigned max_fails, unsigned flags) {
    const unsigned known = FERRY_PASSIVE_CONNECT | FERRY_PASSIVE_RESPONSES | FERRY_PASSIVE_5XX;
    if (!p || max_fails < 1 || max_fails > 1000 || (flags & ~known)) return FERRY_EINVAL;
    if (atomic_load(&p->engine->state) != ENGINE_NEW) return FERRY_ESTATE;
    p->max_fails = max_fails;
    p->passive = flags | FERRY_PASSIVE_CONNECT;
    return FERRY_OK;
}

unsigned ferry_pool_size(const ferry_pool *cp) {
    if (!cp) return 0;
    ferry_pool *p = (ferry_pool *)cp; /* the lock is not part of the pool's value */
    pthread_mutex_lock(&p->lock);
    unsigned n = p->nmembers;
    pthread_mutex_unlock(&p->lock);
    return n;
}

/* ---- backends ---- */

const char *ferry_backend_address(const ferry_backend *b) { return b ? b->address : NULL; }

int ferry_backend_is_down(const ferry_backend *cb) {
    ferry_backend *b = (ferry_backend *)cb;
    return b && (atomic_load(&b->check_down) || atomic_load(&b->down_until_ms) > ferry__now_ms());
}

ferry_err ferry_backend_set_draining(ferry_backend *b, int draining) {
    if (!b) return FERRY_EINVAL;
    int from = draining ? FERRY__BACKEND_ACTIVE : FERRY__BACKEND_DRAINING;
    int to = draining ? FERRY__BACKEND_DRAINING : FERRY__BACKEND_ACTIVE;
    if (!atomic_compare_exchange_strong(&b->admin, &from, to)) {
        if (from == FERRY__BACKEND_REMOVED) return FERRY_ESTATE;
        return FERRY_OK; /* already so */
    }
    ferry_engine *e = b->pool->engine;
    if (atomic_load(&e->state) == ENGINE_RUNNING)
        ferry__log(e, FERRY_LOG_INFO, "pool %s: backend %s %s (%u active)", b->pool->name,
                   b->address, draining ? "draining" : "back in service", atomic_load(&b->active));
    return FERRY_OK;
}

int ferry_backend_is_draining(const ferry_backend *b) {
    return b && atomic_load(&((ferry_backend *)b)->admin) == FERRY__BACKEND_DRAINING;
}

ferry_err ferry_backend_set_weight(ferry_backend *b, unsigned weight) {
    if (!b || weight == 0 || weight > WEIGHT_MAX) return FERRY_EINVAL;
    ferry_pool *p = b->pool;
    ferry__ring *ring = NULL;
    pthread_mutex_lock(&p->config_lock);
    ferry_err err = atomic_load(&b->admin) == FERRY__BACKEND_REMOVED ? FERRY_ESTATE : FERRY_OK;
    if (!err) err = ferry__ring_change(p, b, b, weight, &ring);
    if (!err) {
        atomic_store(&b->weight, weight);
        if (ring) publish(p, p->members, p->nmembers, 1, ring);
    }
    pthread_mutex_unlock(&p->config_lock);
    return err;
}

unsigned ferry_backend_weight(const ferry_backend *b) {
    return b ? atomic_load(&((ferry_backend *)b)->weight) : 0;
}

unsigned ferry_backend_active(const ferry_backend *b) {
    return b ? atomic_load(&((ferry_backend *)b)->active) : 0;
}

void ferry__pools_free(ferry_engine *e) {
    for (ferry_pool *p = e->pools, *next; p; p = next) {
        next = p->next;
        for (ferry_backend *b = p->all, *bn; b; b = bn) {
            bn = b->next_all;
            backend_free(e, b);
        }
        ferry__free(&e->alloc, p->members);
        ferry__ring_free(e, p->ring);
        ferry__free(&e->alloc, p->balance_key);
        ferry__free(&e->alloc, p->sticky_name);
        ferry__free(&e->alloc, (char *)p->health.path);
        ferry__free(&e->alloc, (char *)p->health.host);
        pthread_mutex_destroy(&p->config_lock);
        pthread_mutex_destroy(&p->lock);
        ferry__free(&e->alloc, p->name);
        ferry__free(&e->alloc, p);
    }
    e->pools = NULL;
}
