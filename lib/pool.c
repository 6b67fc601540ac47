/* Backend pools and the built-in reverse direction policy: round-robin over weighted
 * backends, skipping backends marked down after a failed connect, failing over in order. */
#include <netdb.h>
#include <stdio.h>

#include "engine_int.h"

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
    if (pthread_mutex_init(&p->lock, NULL) != 0) {
        ferry__free(&e->alloc, p->name);
        ferry__free(&e->alloc, p);
        return FERRY_ESYS;
    }
    p->engine = e;
    p->down_ms = 2000;
    p->next = e->pools;
    e->pools = p;
    *out = p;
    return FERRY_OK;
}

/* Resolve a backend name once, on the configuring thread (never a loop thread). */
static ferry_err resolve_now(const char *host, uint16_t port, ferry__sockaddr *out) {
    if (ferry__addr_from_literal(host, port, out) == 0) return FERRY_OK;
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

ferry_err ferry_pool_add(ferry_pool *p, const char *address, unsigned weight, ferry_backend **out) {
    if (!p || !address) return FERRY_EINVAL;
    ferry_engine *e = p->engine;
    if (atomic_load(&e->state) != ENGINE_NEW) return FERRY_ESTATE;
    if (weight == 0) weight = 1;
    if (weight > 1000) return FERRY_EINVAL;
    char host[FERRY_HOST_MAX];
    uint16_t port;
    ferry__sockaddr sa;
    ferry_err err = ferry__addr_split(address, host, sizeof host, &port);
    if (!err && port == 0) err = FERRY_EADDR;
    if (!err) err = resolve_now(host, port, &sa);
    if (err) return err;
    if (p->nbackends >= 0xffff) return FERRY_ELIMIT;
    ferry_backend *b = ferry__calloc(&e->alloc, sizeof *b);
    ferry_backend **distinct = ferry__realloc(&e->alloc, p->distinct, (p->nbackends + 1) * sizeof *distinct);
    if (distinct) p->distinct = distinct;
    if (!b || !distinct || !(b->address = ferry__strdup(&e->alloc, address))) {
        ferry__free(&e->alloc, b);
        return FERRY_ENOMEM;
    }
    b->pool = p;
    b->addr = sa;
    b->weight = weight;
    b->index = p->nbackends;
    p->distinct[p->nbackends++] = b;
    if (out) *out = b;
    return FERRY_OK;
}

ferry_err ferry_pool_set_down_time(ferry_pool *p, unsigned ms) {
    if (!p) return FERRY_EINVAL;
    if (atomic_load(&p->engine->state) != ENGINE_NEW) return FERRY_ESTATE;
    p->down_ms = ms;
    return FERRY_OK;
}

unsigned ferry_pool_size(const ferry_pool *p) { return p ? p->nbackends : 0; }
const char *ferry_backend_address(const ferry_backend *b) { return b ? b->address : NULL; }

int ferry_backend_is_down(const ferry_backend *b) {
    return b && atomic_load(&((ferry_backend *)b)->down_until_ms) > ferry__now_ms();
}

void ferry__pools_free(ferry_engine *e) {
    for (ferry_pool *p = e->pools, *next; p; p = next) {
        next = p->next;
        for (unsigned i = 0; i < p->nbackends; i++) {
            ferry__free(&e->alloc, p->distinct[i]->address);
            ferry__free(&e->alloc, p->distinct[i]);
        }
        ferry__free(&e->alloc, p->distinct);
        pthread_mutex_destroy(&p->lock);
        ferry__free(&e->alloc, p->name);
        ferry__free(&e->alloc, p);
    }
    e->pools = NULL;
}

/* ---- the reverse direction ---- */

/* Smooth weighted round-robin (as nginx does it): every backend that is up gains its
 * weight, the richest is picked and pays the total back. Weights 5,1,1 give
 * a a b a c a a: proportional, and without bursts. NULL when every backend is down. */
static ferry_backend *smooth_pick(ferry_pool *p, uint64_t now) {
    ferry_backend *best = NULL;
    int64_t total = 0;
    pthread_mutex_lock(&p->lock);
    for (unsigned i = 0; i < p->nbackends; i++) {
        ferry_backend *b = p->distinct[i];
        if (atomic_load(&b->down_until_ms) > now) continue;
        b->current += b->weight;
        total += b->weight;
        if (!best || b->current > best->current) best = b;
    }
    if (best) best->current -= total;
    pthread_mutex_unlock(&p->lock);
    return best;
}

/* Per-session state: low 16 bits = index of the first backend + 1, the rest = how many
 * backends after it were considered. Attempt 0 is the smooth weighted round-robin's pick;
 * each failover moves on to the next backend (in the order added) not marked down.
 * When every backend is marked down the answer is immediate (no upstream), not a wait for
 * timeouts; marks expire after the pool's down time, and the backend is tried again. */
static ferry_err reverse_pick(void *data, const ferry_session_info *s, unsigned attempt,
                              uintptr_t *state, ferry_target *target) {
    (void)s;
    (void)attempt; /* the state word says how far this session got */
    ferry_pool *p = data;
    if (!p || p->nbackends == 0) return FERRY_ENOUPSTREAM;
    uint64_t now = ferry__now_ms();
    unsigned start, considered;
    ferry_backend *pick = NULL;
    if (*state == 0) {
        pick = smooth_pick(p, now);
        if (!pick) return FERRY_ENOUPSTREAM;
        start = pick->index;
        considered = 1;
    } else {
        start = (unsigned)(*state & 0xffffu) - 1;
        considered = (unsigned)(*state >> 16);
    }
    while (!pick && considered < p->nbackends) {
        ferry_backend *b = p->distinct[(start + considered) % p->nbackends];
        considered++;
        if (atomic_load(&b->down_until_ms) <= now) pick = b;
    }
    if (!pick) return FERRY_ENOUPSTREAM;
    *state = ((uintptr_t)considered << 16) | (start + 1);
    target->backend = pick;
    snprintf(target->host, sizeof target->host, "%s", pick->address);
    return FERRY_OK;
}

static void reverse_connect_result(void *data, const ferry_target *t, ferry_err result) {
    ferry_pool *p = data;
    ferry_backend *b = t->backend;
    if (!b || b->pool != p || p->down_ms == 0) return;
    atomic_store(&b->down_until_ms, result == FERRY_OK ? 0 : ferry__now_ms() + p->down_ms);
}

static const ferry_direction_ops reverse_ops = {
    .name = "reverse",
    .pick = reverse_pick,
    .connect_result = reverse_connect_result,
    .answer_error = NULL,
};

const ferry_direction_ops *ferry_direction_reverse(void) { return &reverse_ops; }
