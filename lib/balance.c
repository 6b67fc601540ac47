/* The built-in reverse direction: balancers over a pool's members (smooth weighted
 * round-robin, least-connections, power of two random choices, consistent hashing),
 * failover, passive down-marking and load accounting.
 *
 * Consistent hashing is a ketama ring rather than a Maglev table: removing a backend moves
 * exactly the keys that were on it (Maglev also shuffles a few percent of the others,
 * which caches behind the proxy pay for), and a change only merges or filters one
 * backend's points, O(ring), instead of refilling a whole table. The price is balance:
 * 160 points per unit of weight (nginx's choice) keep shares within a few percent. */
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#include "engine_int.h"
#include "ferry/http.h"
#include "sticky.h"

enum { POINTS_PER_WEIGHT = 160, RING_MAX_POINTS = 1 << 21 };

#define FNV64_OFFSET 14695981039346656037ull
#define FNV64_PRIME 1099511628211ull

typedef struct ring_point {
    uint64_t pos;
    ferry_backend *b;
} ring_point;

struct ferry__ring {
    unsigned n;
    ring_point pts[];
};

/* ---- hashing ---- */

static uint64_t fnv1a(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * FNV64_PRIME;
    return h;
}

/* MurmurHash3's finaliser: FNV-1a alone spreads short, similar keys poorly. */
static uint64_t mix64(uint64_t h) {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    return h ^ (h >> 33);
}

static uint64_t hash_view(ferry_view v) { return mix64(fnv1a(FNV64_OFFSET, v.ptr, v.len)); }

/* ---- the ring ---- */

static int point_cmp(const void *pa, const void *pb) {
    const ring_point *a = pa, *b = pb;
    if (a->pos != b->pos) return a->pos < b->pos ? -1 : 1;
    return a->b->id < b->b->id ? -1 : a->b->id > b->b->id; /* equal addresses: by age */
}

/* A backend's points depend only on its address string and weight, so a backend lands
 * in the same places whatever else the pool holds (and in every proxy with the same
 * configuration), and raising its weight only adds points. */
static void fill_points(ring_point *dst, ferry_backend *b, unsigned weight) {
    uint64_t base = fnv1a(FNV64_OFFSET, b->address, strlen(b->address));
    for (unsigned i = 0; i < weight * POINTS_PER_WEIGHT; i++) {
        unsigned char idx[4] = {(unsigned char)i, (unsigned char)(i >> 8),
                                (unsigned char)(i >> 16), (unsigned char)(i >> 24)};
        dst[i] = (ring_point){mix64(fnv1a(base, idx, sizeof idx)), b};
    }
    qsort(dst, weight * POINTS_PER_WEIGHT, sizeof *dst, point_cmp);
}

static int hashing(int balance) { return balance >= FERRY_BALANCE_HASH_CLIENT; }

void ferry__ring_free(ferry_engine *e, ferry__ring *r) { ferry__free(&e->alloc, r); }

ferry_err ferry__ring_change(ferry_pool *p, const ferry_backend *drop, const ferry_backend *add,
                             unsigned weight, ferry__ring **out) {
    *out = NULL;
    if (!hashing(p->balance)) return FERRY_OK;
    const ferry__ring *old = p->ring;
    size_t keep = 0, extra = add ? (size_t)weight * POINTS_PER_WEIGHT : 0;
    for (unsigned i = 0; old && i < old->n; i++) keep += old->pts[i].b != drop;
    if (keep + extra > RING_MAX_POINTS) return FERRY_ELIMIT;
    ferry__ring *r = ferry__malloc(&p->engine->alloc, sizeof *r + (keep + extra) * sizeof *r->pts);
    if (!r) return FERRY_ENOMEM;
    r->n = (unsigned)(keep + extra);
    /* The new points go, sorted, at the front; merging from the back, the write position
     * stays above the new points not yet read (it is past them by the old ones left). */
    if (add) fill_points(r->pts, (ferry_backend *)add, weight);
    size_t i = old ? old->n : 0, j = extra, k = keep + extra;
    while (k > 0) {
        while (i > 0 && old->pts[i - 1].b == drop) i--;
        if (i > 0 && (j == 0 || point_cmp(&old->pts[i - 1], &r->pts[j - 1]) > 0))
            r->pts[--k] = old->pts[--i];
        else
            r->pts[--k] = r->pts[--j];
    }
    *out = r;
    return FERRY_OK;
}

static ferry_err ring_build(ferry_pool *p, ferry__ring **out) {
    *out = NULL;
    if (!hashing(p->balance)) return FERRY_OK;
    size_t total = 0;
    for (unsigned i = 0; i < p->nmembers; i++)
        total += (size_t)atomic_load(&p->members[i]->weight) * POINTS_PER_WEIGHT;
    if (total > RING_MAX_POINTS) return FERRY_ELIMIT;
    ferry__ring *r = ferry__malloc(&p->engine->alloc, sizeof *r + total * sizeof *r->pts);
    if (!r) return FERRY_ENOMEM;
    r->n = 0;
    for (unsigned i = 0; i < p->nmembers; i++) {
        unsigned w = atomic_load(&p->members[i]->weight);
        fill_points(r->pts + r->n, p->members[i], w);
        r->n += w * POINTS_PER_WEIGHT;
    }
    qsort(r->pts, r->n, sizeof *r->pts, point_cmp);
    *out = r;
    return FERRY_OK;
}

ferry_err ferry_pool_set_balancer(ferry_pool *p, ferry_balance kind, const char *key) {
    if (!p || (unsigned)kind > FERRY_BALANCE_HASH_COOKIE) return FERRY_EINVAL;
    int keyed = kind == FERRY_BALANCE_HASH_HEADER || kind == FERRY_BALANCE_HASH_COOKIE;
    if (keyed != (key && *key)) return FERRY_EINVAL;
    /* A header or cookie name: no spaces, controls or separators. */
    for (const char *c = keyed ? key : ""; *c; c++)
        if (*c <= 0x20 || *c >= 0x7f || *c == ':' || *c == ';' || *c == '=') return FERRY_EINVAL;
    ferry_engine *e = p->engine;
    if (atomic_load(&e->state) != ENGINE_NEW) return FERRY_ESTATE;
    char *copy = keyed ? ferry__strdup(&e->alloc, key) : NULL;
    if (keyed && !copy) return FERRY_ENOMEM;
    pthread_mutex_lock(&p->config_lock);
    int was = p->balance;
    p->balance = (int)kind;
    ferry__ring *ring = NULL;
    ferry_err err = ring_build(p, &ring);
    if (err) {
        p->balance = was;
        ferry__free(&e->alloc, copy);
    } else {
        ferry__free(&e->alloc, p->balance_key);
        p->balance_key = copy;
        pthread_mutex_lock(&p->lock);
        ferry__ring *old = p->ring;
        p->ring = ring;
        pthread_mutex_unlock(&p->lock);
        ferry__ring_free(e, old);
    }
    pthread_mutex_unlock(&p->config_lock);
    return err;
}

/* ---- hash keys ---- */

/* The value of cookie `name` in the request's Cookie headers ("a=1; b=2"). */
static int cookie_value(const ferry_txn *t, const char *name, ferry_view *out) {
    ferry_view n = {name, strlen(name)};
    unsigned count = ferry_txn_header_count(t, FERRY_TXN_REQUEST);
    for (unsigned i = 0; i < count; i++) {
        ferry_http_header h;
        if (ferry_txn_header_at(t, FERRY_TXN_REQUEST, i, &h) == FERRY_OK && h.name.len == 6 &&
            strncasecmp(h.name.ptr, "cookie", 6) == 0 && ferry__cookie_find(h.value, n, out))
            return 1;
    }
    return 0;
}

/* The session's hash key for the pool's balancer; 0 when it has none. */
static int request_key(const ferry_pool *p, const ferry_session_info *s, uint64_t *out) {
    ferry_view v = {NULL, 0};
    const ferry_txn *t = s ? s->txn : NULL;
    switch (p->balance) {
    case FERRY_BALANCE_HASH_CLIENT:
        if (!s) return 0;
        v = (ferry_view){(const char *)s->client_ip, s->client_family == AF_INET6 ? 16u : 4u};
        break;
    case FERRY_BALANCE_HASH_URI:
        if (!t || !(v = ferry_txn_target(t)).len) return 0;
        break;
    case FERRY_BALANCE_HASH_HEADER:
        if (!t || ferry_txn_header_get(t, FERRY_TXN_REQUEST, p->balance_key, &v) != FERRY_OK)
            return 0;
        break;
    case FERRY_BALANCE_HASH_COOKIE:
        if (!t || !cookie_value(t, p->balance_key, &v)) return 0;
        break;
    default: return 0;
    }
    *out = hash_view(v);
    return 1;
}

/* ---- picks (under pool->lock) ---- */

static int pickable(ferry_backend *b, uint64_t now) {
    return atomic_load(&b->admin) == FERRY__BACKEND_ACTIVE && !atomic_load(&b->check_down) &&
           atomic_load(&b->down_until_ms) <= now;
}

/* a's load (active / weight) compared with b's: <0, 0, >0, without division. */
static int load_cmp(ferry_backend *a, ferry_backend *b) {
    uint64_t la = (uint64_t)atomic_load(&a->active) * atomic_load(&b->weight);
    uint64_t lb = (uint64_t)atomic_load(&b->active) * atomic_load(&a->weight);
    return la < lb ? -1 : la > lb;
}

/* Smooth weighted round-robin (as nginx does it): every candidate gains its weight, the
 * richest is picked and pays the total back. Weights 5,1,1 give a a b a c a a:
 * proportional, without bursts. Candidates: pickable members, and with `as_loaded` only
 * those exactly as loaded as it (least-connections' ties). */
static ferry_backend *smooth_pick(ferry_pool *p, uint64_t now, ferry_backend *as_loaded) {
    ferry_backend *best = NULL;
    int64_t total = 0;
    for (unsigned i = 0; i < p->nmembers; i++) {
        ferry_backend *b = p->members[i];
        if (!pickable(b, now) || (as_loaded && load_cmp(b, as_loaded) != 0)) continue;
        int64_t w = atomic_load(&b->weight);
        b->current += w;
        total += w;
        if (!best || b->current > best->current) best = b;
    }
    if (best) best->current -= total;
    return best;
}

static ferry_backend *least_conn_pick(ferry_pool *p, uint64_t now) {
    ferry_backend *least = NULL;
    for (unsigned i = 0; i < p->nmembers; i++) {
        ferry_backend *b = p->members[i];
        if (pickable(b, now) && (!least || load_cmp(b, least) < 0)) least = b;
    }
    if (!least) return NULL;
    ferry_backend *pick = smooth_pick(p, now, least);
    return pick ? pick : least; /* counts moved between the passes: no tie left */
}

/* xorshift64*, one generator per thread: no shared state, no lock, no contention. */
static uint64_t random_u64(void) {
    static _Thread_local uint64_t state;
    if (!state) state = mix64(ferry__now_us() ^ (uint64_t)(uintptr_t)&state) | 1;
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return state * 0x2545f4914f6cdd1dull;
}

/* The pickable member (but `skip`) at weight offset r; the last one if weights changed
 * since the total was taken. */
static ferry_backend *weighted_at(ferry_pool *p, uint64_t now, uint64_t r, ferry_backend *skip) {
    ferry_backend *last = NULL;
    for (unsigned i = 0; i < p->nmembers; i++) {
        ferry_backend *b = p->members[i];
        if (b == skip || !pickable(b, now)) continue;
        uint64_t w = atomic_load(&b->weight);
        if (r < w) return b;
        r -= w;
        last = b;
    }
    return last;
}

static ferry_backend *random2_pick(ferry_pool *p, uint64_t now) {
    uint64_t total = 0;
    for (unsigned i = 0; i < p->nmembers; i++)
        if (pickable(p->members[i], now)) total += atomic_load(&p->members[i]->weight);
    if (!total) return NULL;
    ferry_backend *a = weighted_at(p, now, random_u64() % total, NULL);
    uint64_t wa = a ? atomic_load(&a->weight) : 0;
    if (!a || wa >= total) return a;
    ferry_backend *b = weighted_at(p, now, random_u64() % (total - wa), a);
    return b && load_cmp(b, a) < 0 ? b : a;
}

/* The first point at or after `key`, walking on past backends that cannot be picked. */
static ferry_backend *ring_pick(const ferry__ring *r, uint64_t key, uint64_t now) {
    if (!r || !r->n) return NULL;
    unsigned lo = 0, hi = r->n;
    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        if (r->pts[mid].pos < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    ferry_backend *prev = NULL;
    for (unsigned k = 0; k < r->n; k++) {
        ferry_backend *b = r->pts[(lo + k) % r->n].b;
        if (b != prev && pickable(b, now)) return b;
        prev = b;
    }
    return NULL;
}

/* The member the request's sticky cookie names, if it may still take it: sticky clients
 * stay with a draining backend (as in HAProxy and nginx Plus: draining lets their
 * sessions end), not with one that is down or removed. */
static ferry_backend *sticky_pick(ferry_pool *p, uint64_t id, uint64_t now) {
    for (unsigned i = 0; i < p->nmembers; i++) {
        ferry_backend *b = p->members[i];
        if (b->sticky_id == id && atomic_load(&b->admin) != FERRY__BACKEND_REMOVED &&
            !atomic_load(&b->check_down) && atomic_load(&b->down_until_ms) <= now)
            return b;
    }
    return NULL;
}

/* keyed: the session has a hash key (hash balancers only). */
static ferry_backend *first_pick(ferry_pool *p, int keyed, uint64_t key, uint64_t now) {
    switch (p->balance) {
    case FERRY_BALANCE_LEAST_CONN: return least_conn_pick(p, now);
    case FERRY_BALANCE_RANDOM2: return random2_pick(p, now);
    default: return keyed ? ring_pick(p->ring, key, now) : smooth_pick(p, now, NULL);
    }
}

/* Index of the first member whose id is above `id`, wrapping to 0. */
static unsigned member_after(const ferry_pool *p, uint32_t id) {
    unsigned lo = 0, hi = p->nmembers;
    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        if (p->members[mid]->id <= id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo == p->nmembers ? 0 : lo;
}

/* Per-session state: low half = id of the last backend handed out + 1, high half = how
 * many members were considered. Attempt 0 is the balancer's pick; each failover walks on
 * to the next member by id (the order added), skipping down and draining ones, until
 * every member was considered once. Ids survive membership changes between attempts, so
 * the walk stays bounded and visits nobody twice. When every backend is down the answer
 * is immediate (no upstream), not a wait for timeouts. */
static ferry_err reverse_pick(void *data, const ferry_session_info *s, unsigned attempt,
                              uintptr_t *state, ferry_target *target) {
    (void)attempt; /* the state word says how far this session got */
    ferry_pool *p = data;
    if (!p) return FERRY_ENOUPSTREAM;
    const uintptr_t id_mask = ((uintptr_t)1 << FERRY__BACKEND_ID_BITS) - 1;
    uint64_t now = ferry__now_ms();
    ferry_backend *pick = NULL;
    uint32_t last = 0;
    unsigned considered = 1;
    uint64_t key = 0;
    /* Read before locking: parsing headers or cookies needs none of the pool's state. */
    int keyed = *state == 0 && hashing(p->balance) && request_key(p, s, &key);
    uint64_t sticky = 0;
    int stuck = *state == 0 && s && ferry__sticky_wanted(s->txn, p, &sticky);
    pthread_mutex_lock(&p->lock);
    if (*state == 0) {
        if (stuck) pick = sticky_pick(p, sticky, now);
        if (!pick) pick = first_pick(p, keyed, key, now);
        if (pick) last = pick->id;
    } else {
        last = (uint32_t)((*state & id_mask) - 1);
        considered = (unsigned)(*state >> FERRY__BACKEND_ID_BITS);
        while (!pick && considered < p->nmembers) {
            ferry_backend *b = p->members[member_after(p, last)];
            considered++;
            last = b->id;
            if (pickable(b, now)) pick = b;
        }
    }
    pthread_mutex_unlock(&p->lock);
    if (!pick) return FERRY_ENOUPSTREAM;
    *state = ((uintptr_t)considered << FERRY__BACKEND_ID_BITS) | ((uintptr_t)last + 1);
    target->backend = pick;
    snprintf(target->host, sizeof target->host, "%s", pick->address);
    return FERRY_OK;
}

/* HTTP requests: the pool's sticky cookie is read, and taken out, before the pick. */
static ferry_verdict reverse_route_request(void *data, ferry_txn *t) {
    if (ferry__sticky_request(data, t) == FERRY_OK) return FERRY_CONTINUE;
    ferry_txn_set_reject_status(t, 500);
    return FERRY_REJECT;
}

/* One more failure in a run counted by `fails`: the run's max_fails-th marks b down. */
static void count_failure(ferry_backend *b, atomic_uint *fails, const char *what) {
    ferry_pool *p = b->pool;
    if (atomic_fetch_add(fails, 1) + 1 < p->max_fails) return;
    atomic_store(fails, 0);
    atomic_store(&b->down_until_ms, ferry__now_ms() + p->down_ms);
    if (p->max_fails > 1)
        ferry__log(p->engine, FERRY_LOG_WARN,
                   "pool %s: backend %s skipped for %u ms after %u %s in a row", p->name,
                   b->address, p->down_ms, p->max_fails, what);
}

static void reverse_connect_result(void *data, const ferry_target *t, ferry_err result) {
    ferry_pool *p = data;
    ferry_backend *b = t->backend;
    if (!b || b->pool != p || p->down_ms == 0) return;
    if (result != FERRY_OK) {
        count_failure(b, &b->connect_fails, "failed connects");
        return;
    }
    atomic_store(&b->connect_fails, 0);
    atomic_store(&b->down_until_ms, 0);
}

void ferry__backend_observe(ferry_backend *b, int status) {
    ferry_pool *p = b->pool;
    if (p->down_ms == 0) return;
    int failed = status == 0 ? (p->passive & FERRY_PASSIVE_RESPONSES) != 0
                             : status >= 500 && (p->passive & FERRY_PASSIVE_5XX);
    if (failed)
        count_failure(b, &b->response_fails,
                      status ? "5xx responses" : "requests without a usable response");
    else if (status)
        atomic_store(&b->response_fails, 0);
}

static void reverse_attached(void *data, ferry_backend *b) {
    (void)data;
    atomic_fetch_add(&b->active, 1);
}

static void reverse_detached(void *data, ferry_backend *b) {
    (void)data;
    atomic_fetch_sub(&b->active, 1);
}

static const ferry_direction_ops reverse_ops = {
    .name = "reverse",
    .pick = reverse_pick,
    .connect_result = reverse_connect_result,
    .answer_error = NULL,
    .route_request = reverse_route_request,
    .attached = reverse_attached,
    .detached = reverse_detached,
};

const ferry_direction_ops *ferry_direction_reverse(void) { return &reverse_ops; }
