/* Cookie stickiness (see sticky.h and ferry_pool_set_sticky_cookie()).
 *
 * The cookie's value is a keyed hash, not the backend's address or its index: clients
 * must not learn where backends are, and the value must mean the same backend in every
 * worker and in every engine built from the same configuration, so nothing random per
 * engine may go into it. SipHash-2-4 is a keyed PRF made for short inputs; under a
 * secret, values cannot be matched to guessed addresses. The value selects, it does not
 * authorise: a forged one can only name a backend the balancer might have chosen anyway. */
#include <stdio.h>

#include "http_int.h"
#include "sticky.h"

/* ---- cookies ---- */

int ferry__cookie_name_ok(const char *name) {
    size_t n = 0;
    for (; name[n]; n++) {
        unsigned char c = (unsigned char)name[n];
        if (c <= 0x20 || c >= 0x7f || strchr("()<>@,;:\\\"/[]?={}", c)) return 0;
    }
    return n > 0 && n <= FERRY__STICKY_NAME_MAX;
}

static int blank(char c) { return c == ' ' || c == '\t'; }

/* The next "name=value" pair of a Cookie header at or after *pos, without the spaces
 * around it; 0 when none is left. *pos moves past it. */
static int next_pair(ferry_view h, size_t *pos, ferry_view *pair) {
    size_t i = *pos;
    while (i < h.len && (blank(h.ptr[i]) || h.ptr[i] == ';')) i++;
    if (i == h.len) return 0;
    size_t start = i;
    while (i < h.len && h.ptr[i] != ';') i++;
    size_t end = i;
    while (end > start && blank(h.ptr[end - 1])) end--;
    *pos = i;
    *pair = (ferry_view){h.ptr + start, end - start};
    return 1;
}

static int pair_named(ferry_view pair, ferry_view name) {
    return pair.len > name.len && pair.ptr[name.len] == '=' &&
           memcmp(pair.ptr, name.ptr, name.len) == 0;
}

int ferry__cookie_find(ferry_view header, ferry_view name, ferry_view *value) {
    size_t pos = 0;
    ferry_view pair;
    while (next_pair(header, &pos, &pair)) {
        if (!pair_named(pair, name)) continue;
        *value = (ferry_view){pair.ptr + name.len + 1, pair.len - name.len - 1};
        return 1;
    }
    return 0;
}

size_t ferry__cookie_remove(ferry_view header, ferry_view name, char *out) {
    size_t pos = 0, n = 0;
    const char *prev_end = header.ptr; /* where the pair before the current one ended */
    ferry_view pair;
    while (next_pair(header, &pos, &pair)) {
        if (!pair_named(pair, name)) {
            if (n) { /* the separator that stood in front of this pair */
                memcpy(out + n, prev_end, (size_t)(pair.ptr - prev_end));
                n += (size_t)(pair.ptr - prev_end);
            }
            memcpy(out + n, pair.ptr, pair.len);
            n += pair.len;
        }
        prev_end = pair.ptr + pair.len;
    }
    return n;
}

/* ---- the value ---- */

static uint64_t rotl(uint64_t x, int b) { return (x << b) | (x >> (64 - b)); }

typedef struct sip {
    uint64_t v0, v1, v2, v3;
    uint64_t tail; /* bytes not yet compressed, little-endian */
    size_t len;
} sip;

static void sip_round(sip *s) {
    s->v0 += s->v1;
    s->v1 = rotl(s->v1, 13) ^ s->v0;
    s->v0 = rotl(s->v0, 32);
    s->v2 += s->v3;
    s->v3 = rotl(s->v3, 16) ^ s->v2;
    s->v0 += s->v3;
    s->v3 = rotl(s->v3, 21) ^ s->v0;
    s->v2 += s->v1;
    s->v1 = rotl(s->v1, 17) ^ s->v2;
    s->v2 = rotl(s->v2, 32);
}

static void sip_compress(sip *s, uint64_t m) {
    s->v3 ^= m;
    sip_round(s);
    sip_round(s);
    s->v0 ^= m;
}

static void sip_init(sip *s, const uint64_t key[2]) {
    *s = (sip){key[0] ^ 0x736f6d6570736575ull, key[1] ^ 0x646f72616e646f6dull,
               key[0] ^ 0x6c7967656e657261ull, key[1] ^ 0x7465646279746573ull, 0, 0};
}

static void sip_update(sip *s, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        s->tail |= (uint64_t)p[i] << (8 * (s->len % 8));
        if (++s->len % 8 == 0) {
            sip_compress(s, s->tail);
            s->tail = 0;
        }
    }
}

static uint64_t sip_final(sip *s) {
    sip_compress(s, s->tail | (uint64_t)s->len << 56);
    s->v2 ^= 0xff;
    for (int i = 0; i < 4; i++) sip_round(s);
    return s->v0 ^ s->v1 ^ s->v2 ^ s->v3;
}

uint64_t ferry__siphash(const uint64_t key[2], const void *data, size_t len) {
    sip s;
    sip_init(&s, key);
    sip_update(&s, data, len);
    return sip_final(&s);
}

void ferry__sticky_key(const char *secret, uint64_t key[2]) {
    /* Two fixed keys (the bytes of "ferry-sticky-key" and "ferry-sticky-k2!") stretch any
     * secret into 128 bits; without one, values are still stable, only guessable. */
    static const uint64_t fixed[2][2] = {{0x66657272792d7374ull, 0x69636b792d6b6579ull},
                                         {0x66657272792d7374ull, 0x69636b792d6b3221ull}};
    size_t n = secret ? strlen(secret) : 0;
    key[0] = ferry__siphash(fixed[0], secret ? secret : "", n);
    key[1] = ferry__siphash(fixed[1], secret ? secret : "", n);
}

uint64_t ferry__sticky_id(const uint64_t key[2], const char *pool, const char *address) {
    sip s;
    sip_init(&s, key);
    sip_update(&s, pool, strlen(pool) + 1); /* the NUL keeps ("ab", "c") apart from ("a", "bc") */
    sip_update(&s, address, strlen(address));
    return sip_final(&s);
}

int ferry__sticky_parse(ferry_view value, uint64_t *id) {
    if (value.len != FERRY__STICKY_HEX) return 0;
    uint64_t v = 0;
    for (size_t i = 0; i < value.len; i++) {
        char c = value.ptr[i];
        unsigned d = c >= '0' && c <= '9' ? (unsigned)(c - '0')
                     : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10) : 16u;
        if (d == 16) return 0;
        v = v << 4 | d;
    }
    *id = v;
    return 1;
}

size_t ferry__sticky_set_cookie(const char *name, uint64_t id, char *out, size_t size) {
    int n = snprintf(out, size, "%s=%016llx; Path=/; HttpOnly", name, (unsigned long long)id);
    return n > 0 ? (size_t)n : 0;
}

/* ---- configuration ---- */

ferry_err ferry_pool_set_sticky_cookie(ferry_pool *p, const char *name, const char *secret) {
    if (!p || (name && *name && !ferry__cookie_name_ok(name))) return FERRY_EINVAL;
    ferry_engine *e = p->engine;
    if (atomic_load(&e->state) != ENGINE_NEW) return FERRY_ESTATE;
    char *copy = name && *name ? ferry__strdup(&e->alloc, name) : NULL;
    if (name && *name && !copy) return FERRY_ENOMEM;
    pthread_mutex_lock(&p->config_lock);
    ferry__free(&e->alloc, p->sticky_name);
    p->sticky_name = copy;
    ferry__sticky_key(secret, p->sticky_key);
    /* Backends added from here on get theirs in ferry_pool_add(). */
    for (ferry_backend *b = p->all; b; b = b->next_all)
        b->sticky_id = ferry__sticky_id(p->sticky_key, p->name, b->address);
    pthread_mutex_unlock(&p->config_lock);
    return FERRY_OK;
}

/* ---- requests and responses ---- */

ferry_err ferry__sticky_request(const ferry_pool *p, ferry_txn *t) {
    if (!p || !p->sticky_name) return FERRY_OK;
    t->sticky_pool = p;
    ferry_view name = {p->sticky_name, strlen(p->sticky_name)};
    ferry__header_list *l = &t->req_headers;
    unsigned kept = 0;
    for (unsigned i = 0; i < l->count; i++) {
        ferry_http_header h = l->items[i];
        ferry_view v;
        if (ferry__view_ieq(h.name, "cookie") && ferry__cookie_find(h.value, name, &v)) {
            /* The first one counts, as for every other cookie reader. */
            if (!t->sticky_named) t->sticky_named = (uint8_t)ferry__sticky_parse(v, &t->sticky_id);
            char *rest = ferry__txn_alloc(t, h.value.len);
            if (!rest) return FERRY_ENOMEM;
            h.value = (ferry_view){rest, ferry__cookie_remove(h.value, name, rest)};
            if (!h.value.len) continue; /* nothing else in it: no empty Cookie header */
        }
        l->items[kept++] = h;
    }
    l->count = kept;
    return FERRY_OK;
}

int ferry__sticky_wanted(const ferry_txn *t, const ferry_pool *p, uint64_t *id) {
    if (!t || !t->sticky_named || t->sticky_pool != p) return 0;
    *id = t->sticky_id;
    return 1;
}

ferry_err ferry__sticky_response(ferry_txn *t, const ferry_backend *served) {
    if (!served || !t->sticky_pool || served->pool != t->sticky_pool) return FERRY_OK;
    if (t->sticky_named && t->sticky_id == served->sticky_id) return FERRY_OK;
    char value[FERRY__STICKY_NAME_MAX + FERRY__STICKY_HEX + 32];
    ferry__sticky_set_cookie(served->pool->sticky_name, served->sticky_id, value, sizeof value);
    /* HAProxy's "nocache": a shared cache replaying this Set-Cookie would bind every
     * client it serves to one backend. */
    ferry_err err = ferry_txn_header_add(t, FERRY_TXN_RESPONSE, "Set-Cookie", value);
    if (!err) err = ferry_txn_header_add(t, FERRY_TXN_RESPONSE, "Cache-Control", "private");
    return err;
}
