/* Fuzz target: the PROXY protocol decoder (lib/proxy_proto.c). The input is the byte
 * stream a listener receives, given from an exact-size heap copy. Checked on every input:
 * - the result is in range: a length no larger than the input, 0, or a known error, and
 *   the output is written on success only;
 * - a success agrees with the bytes, judged apart from the decoder: v1 is "PROXY " up to
 *   the first CRLF within 107 bytes, v2 is the signature plus its length field, and the
 *   ALPN/authority views lie inside the header;
 * - addresses round-trip: a PROXY header over IPv4/IPv6 re-encoded as v1 and as v2 decodes
 *   to the same addresses, and comes out byte for byte as it went in when the input was
 *   already canonical (v1 TCP4; v2 STREAM without TLVs);
 * - every prefix shorter than the length used is "need more", and every prefix of a
 *   refused input is "need more" or that very error;
 * - a v2 header is accepted with max_v2 equal to its length and refused one byte under;
 * - decoding again into an output holding other garbage gives the same answer. */
#include <arpa/inet.h>
#include <string.h>

#include "fuzz.h"
#include "proxy_proto.h"

#define E(x) FERRY__PROXY_E_##x

static const char V2_SIG[] = "\r\n\r\n\0\r\nQUIT\n";

/* Prefixes checked one by one: all the short ones, and the last few before the answer
 * (in between, a v2 header is only waiting for its announced length). */
enum { SHORT_PREFIXES = 300, LAST_PREFIXES = 16 };

static int decode(const uint8_t *data, size_t len, size_t max_v2, int fill,
                  ferry__proxy_header *h) {
    char *buf = malloc(len ? len : 1);
    FUZZ_CHECK(buf != NULL);
    if (len) memcpy(buf, data, len);
    ferry__proxy_header garbage;
    memset(h, fill, sizeof *h);
    memset(&garbage, fill, sizeof garbage);
    int r = ferry__proxy_decode(buf, len, max_v2, h);
    if (r <= 0) FUZZ_CHECK(memcmp(h, &garbage, sizeof garbage) == 0);
    /* Views point into buf: rebase them onto data so callers can check them. */
    if (r > 0 && h->alpn.ptr) h->alpn.ptr = (const char *)data + (h->alpn.ptr - buf);
    if (r > 0 && h->authority.ptr) h->authority.ptr = (const char *)data + (h->authority.ptr - buf);
    free(buf);
    return r;
}

static int same_addr(const ferry__sockaddr *a, const ferry__sockaddr *b) {
    if (a->sa.sa_family != b->sa.sa_family) return 0;
    if (a->sa.sa_family == AF_INET)
        return a->in.sin_port == b->in.sin_port &&
               memcmp(&a->in.sin_addr, &b->in.sin_addr, sizeof a->in.sin_addr) == 0;
    if (a->sa.sa_family == AF_INET6)
        return a->in6.sin6_port == b->in6.sin6_port &&
               memcmp(&a->in6.sin6_addr, &b->in6.sin6_addr, sizeof a->in6.sin6_addr) == 0;
    return 1;
}

static void check_same(int r, const ferry__proxy_header *a, const ferry__proxy_header *b) {
    if (r <= 0) return;
    FUZZ_CHECK(a->version == b->version && a->command == b->command &&
               a->transport == b->transport && a->len == b->len);
    FUZZ_CHECK(same_addr(&a->src, &b->src) && same_addr(&a->dst, &b->dst));
    FUZZ_CHECK(a->alpn.ptr == b->alpn.ptr && a->alpn.len == b->alpn.len);
    FUZZ_CHECK(a->authority.ptr == b->authority.ptr && a->authority.len == b->authority.len);
}

static void check_view(ferry_view v, const uint8_t *m, size_t n) {
    FUZZ_CHECK(v.ptr == NULL || fuzz_inside(v.ptr, v.len, (const char *)m + 16, n - 16));
}

static void check_success(const ferry__proxy_header *h, const uint8_t *m, size_t n) {
    FUZZ_CHECK(h->len == n && h->command <= FERRY__PROXY_PROXY &&
               h->transport <= FERRY__PROXY_DGRAM);
    int family = h->src.sa.sa_family;
    FUZZ_CHECK(family == h->dst.sa.sa_family);
    FUZZ_CHECK(family == AF_UNSPEC || family == AF_INET || family == AF_INET6);
    FUZZ_CHECK(family == AF_UNSPEC || h->command == FERRY__PROXY_PROXY);
    if (h->version == 1) {
        FUZZ_CHECK(n <= FERRY__PROXY_V1_MAX && memcmp(m, "PROXY ", 6) == 0);
        FUZZ_CHECK(m[n - 2] == '\r' && m[n - 1] == '\n' && !memchr(m, '\n', n - 1));
        FUZZ_CHECK(h->command == FERRY__PROXY_PROXY && !h->alpn.ptr && !h->authority.ptr);
        FUZZ_CHECK(h->transport == (family == AF_UNSPEC ? FERRY__PROXY_UNSPEC : FERRY__PROXY_STREAM));
    } else {
        FUZZ_CHECK(h->version == 2 && n >= 16 && memcmp(m, V2_SIG, 12) == 0);
        FUZZ_CHECK(n == 16 + (size_t)(m[14] << 8 | m[15]) && m[12] == (0x20 | h->command));
        check_view(h->alpn, m, n);
        check_view(h->authority, m, n);
    }
    if (family == AF_UNSPEC) return;

    char out[FERRY__PROXY_ENCODE_MAX];
    ferry__proxy_header back;
    size_t len1 = ferry__proxy_encode_v1(&h->src, &h->dst, out, sizeof out);
    FUZZ_CHECK(len1 > 0 && ferry__proxy_decode(out, len1, 0, &back) == (int)len1);
    FUZZ_CHECK(back.version == 1 && back.transport == FERRY__PROXY_STREAM);
    FUZZ_CHECK(same_addr(&back.src, &h->src) && same_addr(&back.dst, &h->dst));
    if (h->version == 1 && family == AF_INET) FUZZ_CHECK(len1 == n && memcmp(out, m, n) == 0);

    size_t len2 = ferry__proxy_encode_v2(&h->src, &h->dst, out, sizeof out);
    FUZZ_CHECK(len2 == (family == AF_INET ? 28u : 52u));
    FUZZ_CHECK(ferry__proxy_decode(out, len2, len2, &back) == (int)len2);
    FUZZ_CHECK(back.version == 2 && back.command == FERRY__PROXY_PROXY &&
               back.transport == FERRY__PROXY_STREAM);
    FUZZ_CHECK(same_addr(&back.src, &h->src) && same_addr(&back.dst, &h->dst));
    if (h->version == 2 && h->transport == FERRY__PROXY_STREAM && n == len2)
        FUZZ_CHECK(memcmp(out, m, n) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ferry__proxy_header first, again, part;
    int r = decode(data, size, 0, 0x00, &first);
    if (r > 0) {
        FUZZ_CHECK((size_t)r <= size && (size_t)r <= FERRY__PROXY_V2_MAX);
        check_success(&first, data, (size_t)r);
    } else {
        FUZZ_CHECK(r <= 0 && r >= E(TLV));
        FUZZ_CHECK(r != 0 || size < FERRY__PROXY_V2_MAX);
    }
    FUZZ_CHECK(decode(data, size, 0, 0xff, &again) == r);
    check_same(r, &first, &again);

    size_t stop = r > 0 ? (size_t)r : size;
    for (size_t k = 0; k < stop; k++) {
        if (k == SHORT_PREFIXES && stop > SHORT_PREFIXES + LAST_PREFIXES)
            k = stop - LAST_PREFIXES;
        int pr = decode(data, k, 0, 0x5a, &part);
        FUZZ_CHECK(pr == 0 || (r < 0 && pr == r));
    }
    if (r > 0) {
        FUZZ_CHECK(decode(data, (size_t)r, 0, 0x5a, &part) == r);
        check_same(r, &first, &part);
    }
    if (r > 0 && first.version == 2) {
        FUZZ_CHECK(decode(data, size, (size_t)r, 0x5a, &part) == r);
        FUZZ_CHECK(decode(data, size, (size_t)r - 1, 0x5a, &part) == E(TOO_LONG));
    }
    return 0;
}
