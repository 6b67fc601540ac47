/* Fuzz target: the ClientHello SNI parser (lib/sni.c). The input is the byte stream a
 * listener receives, given from an exact-size heap copy. Checked on every input:
 * - the result is one of the six, and NOT_TLS only when the first record header or the
 *   handshake type says so;
 * - FOUND and NO_SNI agree with the bytes, judged apart from the parser: the name is a
 *   non-empty plain DNS name inside the input (or name_buf), the ALPN view inside the input
 *   (or alpn_buf) walks to its end in non-empty protocols, and the hello's end lies within
 *   the input and the bound;
 * - the bound is exact: the same input is accepted with max equal to the hello's end and
 *   refused as TOO_LARGE one byte under; with no bound to speak of, only TOO_LARGE changes;
 * - fragmentation is invisible: a hello reassembled here from its records and framed again
 *   as one record, and as records of a few bytes, gives the same name and ALPN list;
 * - every prefix is NEED_MORE or exactly the whole input's answer;
 * - parsing again into an output holding other garbage gives the same answer. */
#include <string.h>

#include "fuzz.h"
#include "sni.h"

#define R(x) FERRY__SNI_##x

typedef struct result {
    int r;
    ferry__sni_hello h;
    char name[FERRY__SNI_NAME_MAX + 1];
    char alpn[1024]; /* the protocols joined by ',', "?" when not kept */
    long name_at;    /* name offset in the input, -1 when in name_buf */
} result;

static int inside(ferry_view v, const void *base, size_t n) {
    return fuzz_inside(v.ptr, v.len, base, n);
}

/* Parses data[0..len) copied to the end of area[0..cap), so that a read past len runs off
 * the heap block (caught by ASan) while prefixes share one allocation. */
static void parse_in(char *area, size_t cap, const uint8_t *data, size_t len, size_t max,
                     int fill, result *o) {
    char *buf = area + cap - len;
    if (len) memmove(buf, data, len);
    memset(&o->h, fill, sizeof o->h);
    o->r = ferry__sni_parse(buf, len, max, &o->h);
    o->name[0] = o->alpn[0] = '\0';
    o->name_at = -2;
    if (o->r == R(FOUND) || o->r == R(NO_SNI)) {
        ferry_view n = o->h.server_name, a = o->h.alpn, list = a, proto;
        FUZZ_CHECK(o->h.end <= len && o->h.end <= (max ? max : FERRY__SNI_MAX_DEFAULT));
        FUZZ_CHECK(o->h.end >= 5 + 4 + 2 + 32 + 1 + 2 + 2 + 1);
        if (o->r == R(FOUND)) {
            FUZZ_CHECK(inside(n, buf, len) || inside(n, o->h.name_buf, sizeof o->h.name_buf));
            FUZZ_CHECK(n.len >= 1 && n.len <= FERRY__SNI_NAME_MAX);
            memcpy(o->name, n.ptr, n.len);
            o->name[n.len] = '\0';
            o->name_at = inside(n, buf, len) ? n.ptr - buf : -1;
        } else {
            FUZZ_CHECK(n.ptr == NULL && n.len == 0);
        }
        FUZZ_CHECK(o->h.alpn_offered == 0 || o->h.alpn_offered == 1);
        if (!o->h.alpn_offered) FUZZ_CHECK(a.ptr == NULL && a.len == 0);
        if (o->h.alpn_offered && !a.ptr) strcpy(o->alpn, "?");
        if (a.ptr) {
            FUZZ_CHECK(inside(a, buf, len) || inside(a, o->h.alpn_buf, sizeof o->h.alpn_buf));
            FUZZ_CHECK(a.len >= 2);
            size_t at = 0;
            while (ferry__sni_alpn_next(&list, &proto)) {
                FUZZ_CHECK(proto.len >= 1);
                if (at + proto.len + 1 < sizeof o->alpn) {
                    memcpy(o->alpn + at, proto.ptr, proto.len);
                    at += proto.len;
                    o->alpn[at++] = ',';
                    o->alpn[at] = '\0';
                }
            }
            FUZZ_CHECK(list.len == 0);
        }
    }
}

static void parse(const uint8_t *data, size_t len, size_t max, int fill, result *o) {
    char *area = malloc(len ? len : 1);
    FUZZ_CHECK(area != NULL);
    parse_in(area, len, data, len, max, fill, o);
    free(area);
}

/* Letters, digits, '-', '_', labels joined by single dots, no dot at either end. */
static int plain_name(const char *s) {
    static const char ok[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.";
    size_t n = strlen(s);
    return n > 0 && strspn(s, ok) == n && s[0] != '.' && s[n - 1] != '.' && !strstr(s, "..");
}

static int same(const result *a, const result *b) {
    return a->r == b->r && strcmp(a->name, b->name) == 0 && strcmp(a->alpn, b->alpn) == 0 &&
           a->name_at == b->name_at &&
           (a->r != R(FOUND) && a->r != R(NO_SNI) ?
                1 :
                a->h.end == b->h.end && a->h.hello_version == b->h.hello_version &&
                    a->h.record_version == b->h.record_version);
}

/* The handshake message the records carry, reassembled without the parser: records of
 * type 22 until 4 + its length bytes are in. Returns its length, 0 if it is not there. */
static size_t reassemble(const uint8_t *data, size_t len, uint8_t *msg, size_t cap) {
    size_t pos = 0, have = 0, need = 4;
    while (have < need) {
        if (len - pos < 5 || data[pos] != 22) return 0;
        size_t n = (size_t)data[pos + 3] << 8 | data[pos + 4];
        if (n > len - pos - 5) n = len - pos - 5;
        if (n > cap - have) return 0;
        memcpy(msg + have, data + pos + 5, n);
        have += n;
        pos += 5 + n;
        if (have >= 4) need = 4 + ((size_t)msg[1] << 16 | (size_t)msg[2] << 8 | msg[3]);
    }
    return need;
}

/* msg as records of at most size bytes, with the first record's version bytes. */
static size_t frame(const uint8_t *msg, size_t n, size_t size, const uint8_t version[2],
                    uint8_t *out) {
    size_t o = 0;
    for (size_t from = 0; from < n; from += size) {
        size_t k = n - from < size ? n - from : size;
        out[o] = 22;
        memcpy(out + o + 1, version, 2);
        out[o + 3] = (uint8_t)(k >> 8);
        out[o + 4] = (uint8_t)k;
        memcpy(out + o + 5, msg + from, k);
        o += 5 + k;
    }
    return o;
}

static void check_reframed(const uint8_t *data, size_t len, const result *first) {
    enum { CAP = 1 << 16 };
    static uint8_t msg[CAP], again[CAP * 6];
    size_t n = reassemble(data, len, msg, CAP);
    FUZZ_CHECK(n > 0); /* the parser found a whole hello; so must this */
    const size_t sizes[] = {16384, 1, 2, 3, 5, 64 + len % 64};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        if (n > CAP || (n + 4) / sizes[i] * 6 + 16 > sizeof again) continue;
        size_t out_len = frame(msg, n, sizes[i], data + 1, again);
        result r;
        parse(again, out_len, SIZE_MAX, 0x3c, &r);
        FUZZ_CHECK(r.r == first->r && strcmp(r.name, first->name) == 0);
        FUZZ_CHECK(r.h.alpn_offered == first->h.alpn_offered);
        if (r.alpn[0] != '?' && first->alpn[0] != '?') FUZZ_CHECK(strcmp(r.alpn, first->alpn) == 0);
        FUZZ_CHECK(r.h.end == out_len && r.h.hello_version == first->h.hello_version);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static result first, again, part;
    parse(data, size, 0, 0x00, &first);
    int r = first.r;
    FUZZ_CHECK(r >= R(TOO_LARGE) && r <= R(NO_SNI));
    if (r == R(NOT_TLS))
        FUZZ_CHECK(data[0] != 22 || (size >= 2 && data[1] != 3) || (size >= 6 && data[5] != 1));
    if (size >= 1 && data[0] != 22) FUZZ_CHECK(r == R(NOT_TLS));
    if (r == R(FOUND)) FUZZ_CHECK(plain_name(first.name));

    parse(data, size, 0, 0xff, &again);
    FUZZ_CHECK(same(&first, &again));

    parse(data, size, SIZE_MAX, 0x11, &again);
    FUZZ_CHECK(r == R(TOO_LARGE) ? again.r != R(TOO_LARGE) : same(&first, &again));
    if (r == R(FOUND) || r == R(NO_SNI)) {
        parse(data, size, first.h.end, 0x22, &again);
        FUZZ_CHECK(same(&first, &again));
        parse(data, size, first.h.end - 1, 0x33, &again);
        FUZZ_CHECK(again.r == R(TOO_LARGE));
        check_reframed(data, size, &first);
    }

    char *area = malloc(size ? size : 1);
    FUZZ_CHECK(area != NULL);
    for (size_t k = 0; k < size; k++) {
        parse_in(area, size, data, k, 0, 0x5a, &part);
        FUZZ_CHECK(part.r == R(NEED_MORE) || same(&first, &part));
    }
    free(area);
    return 0;
}
