/* Fuzz target: ferry__chunked_decode. The input is a chunked body; it is decoded in one
 * piece, byte by byte, and in random splits derived from the input itself, with default and
 * tiny limits. Every way must give the same data, result, error and consumed count, and
 * every call must keep *consumed and *data inside what it was given. */
#include <string.h>

#include "fuzz.h"
#include "http1.h"

typedef struct outcome {
    int result;            /* NEED_MORE, DONE or ERROR */
    ferry__http_error err;
    size_t consumed;
    uint8_t *body;         /* decoded data, at most the input's size */
    size_t body_len;
} outcome;

/* xorshift64*, seeded from the input, for reproducible splits. */
static uint64_t next_rand(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

/* Feed one piece from its own exact-size copy. Returns 0 once the decoder stopped. */
static int feed(ferry__chunked *c, outcome *o, const uint8_t *piece, size_t len) {
    char *buf = malloc(len ? len : 1);
    FUZZ_CHECK(buf != NULL);
    if (len) memcpy(buf, piece, len);
    size_t off = 0;
    int go = 0;
    for (;;) {
        size_t used = SIZE_MAX;
        ferry_view data = {NULL, 0};
        ferry__http_error err = FERRY__HTTP_E_COUNT;
        int r = ferry__chunked_decode(c, buf + off, len - off, &used, &data, &err);
        FUZZ_CHECK(used <= len - off);
        off += used;
        o->consumed += used;
        o->result = r;
        if (r == FERRY__CHUNKED_DATA) {
            FUZZ_CHECK(data.len > 0 && data.ptr >= buf && data.ptr + data.len == buf + off);
            memcpy(o->body + o->body_len, data.ptr, data.len);
            o->body_len += data.len;
            continue;
        }
        if (r == FERRY__CHUNKED_NEED_MORE) {
            FUZZ_CHECK(off == len);
            go = 1;
        } else if (r == FERRY__CHUNKED_ERROR) {
            FUZZ_CHECK(err > FERRY__HTTP_E_NONE && err < FERRY__HTTP_E_COUNT);
            o->err = err;
        } else {
            FUZZ_CHECK(r == FERRY__CHUNKED_DONE);
        }
        break;
    }
    free(buf);
    return go;
}

/* mode 0: one piece; 1: byte by byte; 2+: random pieces from the seed. */
static void decode(const uint8_t *data, size_t size, size_t max_line, size_t max_trailer,
                   int mode, uint64_t seed, outcome *o) {
    ferry__chunked c;
    ferry__chunked_init(&c);
    if (max_line) c.max_line = max_line;
    if (max_trailer) c.max_trailer = max_trailer;
    o->result = FERRY__CHUNKED_NEED_MORE;
    o->err = FERRY__HTTP_E_NONE;
    o->consumed = o->body_len = 0;
    size_t at = 0;
    while (at < size) {
        size_t n = size - at;
        if (mode == 1) n = 1;
        if (mode >= 2) {
            uint64_t x = next_rand(&seed);
            size_t want = (x & 3) == 0 ? (size_t)(x >> 8) % 64 : (size_t)(x >> 8) % 8;
            if (want < n) n = want; /* empty pieces too */
        }
        if (!feed(&c, o, data + at, n)) break;
        at += n;
    }
    /* What was decoded came from the input, and framing costs at least 5 bytes ("0\r\n\r\n"). */
    FUZZ_CHECK(o->body_len <= o->consumed && o->consumed <= size);
    if (o->result == FERRY__CHUNKED_DONE) FUZZ_CHECK(o->consumed >= o->body_len + 5);
}

static void same(const outcome *a, const outcome *b) {
    FUZZ_CHECK(a->result == b->result && a->err == b->err && a->consumed == b->consumed);
    FUZZ_CHECK(a->body_len == b->body_len && memcmp(a->body, b->body, a->body_len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint64_t seed = 1469598103934665603ull;
    for (size_t i = 0; i < size; i++) seed = (seed ^ data[i]) * 1099511628211ull;
    if (seed == 0) seed = 1;
    static const size_t limits[2][2] = {{0, 0}, {8, 16}}; /* default, tiny */
    outcome first[2], other;
    other.body = malloc(size + 1);
    FUZZ_CHECK(other.body != NULL);
    for (size_t li = 0; li < 2; li++) {
        size_t ml = limits[li][0], mt = limits[li][1];
        first[li].body = malloc(size + 1);
        FUZZ_CHECK(first[li].body != NULL);
        decode(data, size, ml, mt, 0, seed, &first[li]);
        for (int mode = 1; mode < 5; mode++) {
            decode(data, size, ml, mt, mode, seed + (uint64_t)mode, &other);
            same(&first[li], &other);
        }
    }
    /* Tighter limits only add refusals. */
    if (first[1].result != FERRY__CHUNKED_ERROR) same(&first[0], &first[1]);
    if (first[0].result == FERRY__CHUNKED_ERROR) FUZZ_CHECK(first[1].result == FERRY__CHUNKED_ERROR);
    free(first[0].body);
    free(first[1].body);
    free(other.body);
    return 0;
}
