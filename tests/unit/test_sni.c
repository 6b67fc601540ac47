/* Tests for the ClientHello SNI parser (lib/sni.c).
 *
 * Golden inputs are real hellos (openssl s_client and curl, captured by
 * tools/capture-client-hellos) and hand-written hello bodies. Every input is also fed as
 * each of its prefixes, from a heap buffer that ends where the prefix does (so ASan
 * catches a read past len): a prefix must give "need more" or already the whole input's
 * answer. Every hello is re-framed over two records split at each byte (and the captured
 * ones over three records, and over records of a few bytes) and must give the same
 * answer: fragmentation is invisible to the result. */
#define _GNU_SOURCE /* memmem */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sni.h"
#include "testutil.h"

#define R(x) FERRY__SNI_##x
/* ck_assert records every passing check through a pipe, far too slow for the millions of
 * checks the prefix and re-framing loops make; this reports failures only. */
#define REQUIRE(cond, ...)                                                                 \
    do {                                                                                   \
        if (!(cond)) ck_abort_msg(__VA_ARGS__);                                            \
    } while (0)

/* Captured by tools/capture-client-hellos. */
/* openssl s_client -servername example.test: 318 bytes */
static const char openssl_tls13[] =
    "\x16\x03\x01\x01\x39\x01\x00\x01\x35\x03\x03\xc0\x05\xc0\xec\xfc\x8f\x35\x0d\x27\x66\x83"
    "\xb2\x15\xe8\xb7\xd9\x42\x87\x80\x66\x4f\x6f\x5c\xc5\x3c\x64\x30\xf9\x82\x58\xd8\xbb\x20"
    "\x46\x5c\x2f\xa9\x49\x5b\x5d\xb0\x08\xe7\x9f\xba\xfd\x47\x26\xfd\x32\x2d\xa6\xe8\xdc\x07"
    "\x04\x0e\x7a\x8a\x58\x04\x6f\x5a\xaa\xc9\x00\x3e\x13\x02\x13\x03\x13\x01\xc0\x2c\xc0\x30"
    "\x00\x9f\xcc\xa9\xcc\xa8\xcc\xaa\xc0\x2b\xc0\x2f\x00\x9e\xc0\x24\xc0\x28\x00\x6b\xc0\x23"
    "\xc0\x27\x00\x67\xc0\x0a\xc0\x14\x00\x39\xc0\x09\xc0\x13\x00\x33\x00\x9d\x00\x9c\x00\x3d"
    "\x00\x3c\x00\x35\x00\x2f\x00\xff\x01\x00\x00\xae\x00\x00\x00\x11\x00\x0f\x00\x00\x0c\x65"
    "\x78\x61\x6d\x70\x6c\x65\x2e\x74\x65\x73\x74\x00\x0b\x00\x04\x03\x00\x01\x02\x00\x0a\x00"
    "\x16\x00\x14\x00\x1d\x00\x17\x00\x1e\x00\x19\x00\x18\x01\x00\x01\x01\x01\x02\x01\x03\x01"
    "\x04\x00\x23\x00\x00\x00\x16\x00\x00\x00\x17\x00\x00\x00\x0d\x00\x2a\x00\x28\x04\x03\x05"
    "\x03\x06\x03\x08\x07\x08\x08\x08\x09\x08\x0a\x08\x0b\x08\x04\x08\x05\x08\x06\x04\x01\x05"
    "\x01\x06\x01\x03\x03\x03\x01\x03\x02\x04\x02\x05\x02\x06\x02\x00\x2b\x00\x09\x08\x03\x04"
    "\x03\x03\x03\x02\x03\x01\x00\x2d\x00\x02\x01\x01\x00\x33\x00\x26\x00\x24\x00\x1d\x00\x20"
    "\x86\xd6\x0c\xb6\x6e\x31\x3b\xe3\x8b\x97\xf9\x32\x7a\xc4\x38\xe1\x23\x26\x7a\xe8\x65\xb9"
    "\x54\xcc\x3b\x6e\x3c\xea\xae\x69\xd9\x31"
    ;
/* openssl s_client -noservername: 297 bytes */
static const char openssl_no_sni[] =
    "\x16\x03\x01\x01\x24\x01\x00\x01\x20\x03\x03\xd9\x18\x81\x77\x49\xb1\x24\x65\x87\x8c\x3b"
    "\xea\xec\xa2\x07\x69\x77\x03\x78\x52\x83\x21\xa8\x52\xe9\xea\xd2\x79\x8b\xfe\x2f\x58\x20"
    "\x2e\x48\x5c\xcf\xf5\x6e\xa2\xf8\xbc\x12\x4e\x17\xaa\x02\xb7\xc8\xd7\x1b\x45\x60\x9d\xf5"
    "\x0b\xe2\xb2\x52\xac\x80\x0f\x05\x99\x55\x00\x3e\x13\x02\x13\x03\x13\x01\xc0\x2c\xc0\x30"
    "\x00\x9f\xcc\xa9\xcc\xa8\xcc\xaa\xc0\x2b\xc0\x2f\x00\x9e\xc0\x24\xc0\x28\x00\x6b\xc0\x23"
    "\xc0\x27\x00\x67\xc0\x0a\xc0\x14\x00\x39\xc0\x09\xc0\x13\x00\x33\x00\x9d\x00\x9c\x00\x3d"
    "\x00\x3c\x00\x35\x00\x2f\x00\xff\x01\x00\x00\x99\x00\x0b\x00\x04\x03\x00\x01\x02\x00\x0a"
    "\x00\x16\x00\x14\x00\x1d\x00\x17\x00\x1e\x00\x19\x00\x18\x01\x00\x01\x01\x01\x02\x01\x03"
    "\x01\x04\x00\x23\x00\x00\x00\x16\x00\x00\x00\x17\x00\x00\x00\x0d\x00\x2a\x00\x28\x04\x03"
    "\x05\x03\x06\x03\x08\x07\x08\x08\x08\x09\x08\x0a\x08\x0b\x08\x04\x08\x05\x08\x06\x04\x01"
    "\x05\x01\x06\x01\x03\x03\x03\x01\x03\x02\x04\x02\x05\x02\x06\x02\x00\x2b\x00\x09\x08\x03"
    "\x04\x03\x03\x03\x02\x03\x01\x00\x2d\x00\x02\x01\x01\x00\x33\x00\x26\x00\x24\x00\x1d\x00"
    "\x20\x8b\xf7\x23\xf8\x86\x4f\x3e\xa1\xc2\xad\x6b\x7d\xc7\xd8\xa8\x80\x1e\xd5\x55\x6f\xfe"
    "\xf9\x4a\xe5\x95\xd3\x99\x42\xcb\x9f\x45\x77"
    ;
/* curl https://api.example.test/ (TLS 1.3, ALPN h2, http/1.1): 517 bytes */
static const char curl_tls13[] =
    "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x78\xd2\x54\xd6\x48\xd9\xe2\x49\x29\x04\x78"
    "\xa8\xca\x6c\x12\x52\xba\xcf\x5d\xc4\xc3\x93\x3d\xdd\xec\xb0\x23\xbc\x22\x33\x0c\x92\x20"
    "\x0c\xe2\x47\x17\xd9\xfe\x11\x17\x00\x44\x1e\x79\x6a\xe3\x10\x31\x37\xd8\x14\x07\x76\xb9"
    "\x92\x17\xd1\x85\x8a\x23\x76\xcc\xa0\x92\x00\x3e\x13\x02\x13\x03\x13\x01\xc0\x2c\xc0\x30"
    "\x00\x9f\xcc\xa9\xcc\xa8\xcc\xaa\xc0\x2b\xc0\x2f\x00\x9e\xc0\x24\xc0\x28\x00\x6b\xc0\x23"
    "\xc0\x27\x00\x67\xc0\x0a\xc0\x14\x00\x39\xc0\x09\xc0\x13\x00\x33\x00\x9d\x00\x9c\x00\x3d"
    "\x00\x3c\x00\x35\x00\x2f\x00\xff\x01\x00\x01\x75\x00\x00\x00\x15\x00\x13\x00\x00\x10\x61"
    "\x70\x69\x2e\x65\x78\x61\x6d\x70\x6c\x65\x2e\x74\x65\x73\x74\x00\x0b\x00\x04\x03\x00\x01"
    "\x02\x00\x0a\x00\x16\x00\x14\x00\x1d\x00\x17\x00\x1e\x00\x19\x00\x18\x01\x00\x01\x01\x01"
    "\x02\x01\x03\x01\x04\x00\x10\x00\x0e\x00\x0c\x02\x68\x32\x08\x68\x74\x74\x70\x2f\x31\x2e"
    "\x31\x00\x16\x00\x00\x00\x17\x00\x00\x00\x31\x00\x00\x00\x0d\x00\x2a\x00\x28\x04\x03\x05"
    "\x03\x06\x03\x08\x07\x08\x08\x08\x09\x08\x0a\x08\x0b\x08\x04\x08\x05\x08\x06\x04\x01\x05"
    "\x01\x06\x01\x03\x03\x03\x01\x03\x02\x04\x02\x05\x02\x06\x02\x00\x2b\x00\x09\x08\x03\x04"
    "\x03\x03\x03\x02\x03\x01\x00\x2d\x00\x02\x01\x01\x00\x33\x00\x26\x00\x24\x00\x1d\x00\x20"
    "\x21\xfe\xe6\xe3\x08\x49\xc9\xa7\xd3\xcb\x17\xfa\x65\xfd\xf0\x3c\xc4\xe2\x64\x20\xaf\x2e"
    "\x35\x49\xd8\x0b\x25\xc9\x7f\x28\xe2\x3b\x00\x15\x00\xad\x00\x00\x00\x00\x00\x00\x00\x00"
    "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    ;
/* curl --tls-max 1.2 https://h.example.test/ (TLS 1.2, ALPN): 225 bytes */
static const char curl_tls12[] =
    "\x16\x03\x01\x00\xdc\x01\x00\x00\xd8\x03\x03\x58\x2d\x74\xe5\x22\xb5\x90\x62\x3e\x65\x8a"
    "\xd5\x7f\x8c\xcd\x3d\xae\xa1\xde\xd6\x1a\xb7\x11\x43\x90\xbf\xc9\x40\x38\x71\x5b\x9d\x00"
    "\x00\x38\xc0\x2c\xc0\x30\x00\x9f\xcc\xa9\xcc\xa8\xcc\xaa\xc0\x2b\xc0\x2f\x00\x9e\xc0\x24"
    "\xc0\x28\x00\x6b\xc0\x23\xc0\x27\x00\x67\xc0\x0a\xc0\x14\x00\x39\xc0\x09\xc0\x13\x00\x33"
    "\x00\x9d\x00\x9c\x00\x3d\x00\x3c\x00\x35\x00\x2f\x00\xff\x01\x00\x00\x77\x00\x00\x00\x13"
    "\x00\x11\x00\x00\x0e\x68\x2e\x65\x78\x61\x6d\x70\x6c\x65\x2e\x74\x65\x73\x74\x00\x0b\x00"
    "\x04\x03\x00\x01\x02\x00\x0a\x00\x0c\x00\x0a\x00\x1d\x00\x17\x00\x1e\x00\x19\x00\x18\x00"
    "\x10\x00\x0e\x00\x0c\x02\x68\x32\x08\x68\x74\x74\x70\x2f\x31\x2e\x31\x00\x16\x00\x00\x00"
    "\x17\x00\x00\x00\x0d\x00\x2a\x00\x28\x04\x03\x05\x03\x06\x03\x08\x07\x08\x08\x08\x09\x08"
    "\x0a\x08\x0b\x08\x04\x08\x05\x08\x06\x04\x01\x05\x01\x06\x01\x03\x03\x03\x01\x03\x02\x04"
    "\x02\x05\x02\x06\x02"
    ;

#define CAPTURE(a) .bytes = a, .len = sizeof(a) - 1

static const struct capture {
    const char *name;
    const char *bytes;
    size_t len;
    const char *shown;
} captures[] = {
    {"openssl tls 1.3", CAPTURE(openssl_tls13), "example.test"},
    {"openssl without sni", CAPTURE(openssl_no_sni), "-"},
    {"curl tls 1.3", CAPTURE(curl_tls13), "api.example.test alpn=h2,http/1.1"},
    {"curl tls 1.2", CAPTURE(curl_tls12), "h.example.test alpn=h2,http/1.1"},
};
enum { NCAPTURES = sizeof captures / sizeof captures[0] };

enum { BIG = 70000 }; /* room for the largest input built here */

/* ---- running the parser ---- */

typedef struct outcome {
    int r;
    char shown[800];   /* FOUND/NO_SNI: the name ("-" without one), then any ALPN list */
    long name_at;      /* offset of the name in the input; -1 when it came in name_buf */
    size_t end;
    uint16_t record_version, hello_version;
} outcome;

/* Is the view inside [base, base + n)? */
static int inside(ferry_view v, const void *base, size_t n) {
    const char *b = base;
    return v.ptr >= b && v.len <= n && v.ptr - b <= (long)(n - v.len);
}

/* Runs the parser on an exact-size heap copy of buf; *out starts as garbage. */
static outcome run(const unsigned char *buf, size_t len, size_t max) {
    outcome o;
    memset(&o, 0, sizeof o);
    unsigned char *copy = malloc(len ? len : 1);
    REQUIRE(copy, "out of memory");
    memcpy(copy, buf, len);
    ferry__sni_hello h;
    memset(&h, 0xa5, sizeof h);
    o.r = ferry__sni_parse((const char *)copy, len, max, &h);
    o.name_at = -2;
    if (o.r == R(FOUND) || o.r == R(NO_SNI)) {
        REQUIRE(h.end <= len, "end %zu past %zu", h.end, len);
        o.end = h.end;
        o.record_version = h.record_version;
        o.hello_version = h.hello_version;
        if (o.r == R(FOUND)) {
            REQUIRE(inside(h.server_name, copy, len) ||
                        inside(h.server_name, h.name_buf, sizeof h.name_buf),
                    "name outside the input and name_buf");
            REQUIRE(h.server_name.len > 0, "empty name");
            o.name_at = inside(h.server_name, copy, len) ? h.server_name.ptr - (char *)copy : -1;
            snprintf(o.shown, sizeof o.shown, "%.*s", (int)h.server_name.len, h.server_name.ptr);
        } else {
            REQUIRE(!h.server_name.ptr, "a name without FOUND");
            snprintf(o.shown, sizeof o.shown, "-");
        }
        if (h.alpn_offered) {
            strcat(o.shown, " alpn=");
            if (!h.alpn.ptr) strcat(o.shown, "?");
            REQUIRE(!h.alpn.ptr || inside(h.alpn, copy, len) ||
                        inside(h.alpn, h.alpn_buf, sizeof h.alpn_buf),
                    "alpn outside the input and alpn_buf");
            ferry_view list = h.alpn, proto;
            for (int i = 0; ferry__sni_alpn_next(&list, &proto); i++)
                snprintf(o.shown + strlen(o.shown), sizeof o.shown - strlen(o.shown), "%s%.*s",
                         i ? "," : "", (int)proto.len, proto.ptr);
            REQUIRE(list.len == 0, "alpn list left over");
        } else {
            REQUIRE(!h.alpn.ptr, "alpn view without the extension");
        }
    }
    free(copy);
    return o;
}

/* The whole input must give want (and shown, for FOUND/NO_SNI); each prefix must give
 * NEED_MORE or exactly the whole input's outcome, name position included. */
static outcome check_input(const char *label, const unsigned char *buf, size_t len, size_t max,
                           int want, const char *shown) {
    outcome whole = run(buf, len, max);
    REQUIRE(whole.r == want, "%s: got \"%s\", want \"%s\"", label,
            ferry__sni_result_text(whole.r), ferry__sni_result_text(want));
    if (shown)
        REQUIRE(strcmp(whole.shown, shown) == 0, "%s: got \"%s\", want \"%s\"", label,
                whole.shown, shown);
    for (size_t k = 0; k < len; k++) {
        outcome part = run(buf, k, max);
        int same = part.r == whole.r && strcmp(part.shown, whole.shown) == 0 &&
                   part.name_at == whole.name_at && part.end == whole.end;
        REQUIRE(part.r == R(NEED_MORE) || same, "%s: prefix %zu of %zu gave \"%s\"", label, k,
                len, ferry__sni_result_text(part.r));
        REQUIRE(part.r == R(NEED_MORE) || k >= whole.end, "%s: answer before the end", label);
    }
    return whole;
}

/* ---- building inputs ---- */

/* The handshake message msg[0..n) as handshake records (version 3.1) ending at each of the
 * ascending message offsets cuts[0..ncuts) and at n. Returns the length written. */
static size_t frame(const unsigned char *msg, size_t n, const size_t *cuts, size_t ncuts,
                    unsigned char *out) {
    size_t o = 0, from = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t to = i < ncuts ? cuts[i] : n;
        memcpy(out + o, "\x16\x03\x01", 3);
        out[o + 3] = (unsigned char)((to - from) >> 8);
        out[o + 4] = (unsigned char)(to - from);
        memcpy(out + o + 5, msg + from, to - from);
        o += 5 + to - from;
        from = to;
    }
    return o;
}

/* Hello bodies are written with "{...}" for a block behind its 2-byte length and "<...>"
 * for one behind its 1-byte length; every other byte stands for itself. The result is the
 * whole ClientHello message: type 1 and the 3-byte length first. */
static size_t message(const char *s, size_t n, unsigned char *out) {
    size_t open[8], depth = 0, o = 4;
    int wide[8];
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '{' || c == '<') {
            REQUIRE(depth < 8, "blocks nested too deep");
            wide[depth] = c == '{';
            open[depth++] = o;
            o += c == '{' ? 2 : 1;
        } else if (c == '}' || c == '>') {
            REQUIRE(depth > 0, "unbalanced block");
            depth--;
            size_t at = open[depth], l = o - at - (wide[depth] ? 2 : 1);
            if (wide[depth]) out[at++] = (unsigned char)(l >> 8);
            out[at] = (unsigned char)l;
        } else {
            out[o++] = (unsigned char)c;
        }
    }
    REQUIRE(depth == 0, "unclosed block");
    out[0] = 1;
    out[1] = (unsigned char)((o - 4) >> 16);
    out[2] = (unsigned char)((o - 4) >> 8);
    out[3] = (unsigned char)(o - 4);
    return o;
}

#define R8 "RRRRRRRR"
#define RND R8 R8 R8 R8 /* 32-byte random */
/* Version, random, no session id, one suite, null compression. */
#define PRE "\x03\x03" RND "<>{\x13\x01}<\x00>"
#define STD(exts) PRE "{" exts "}"
#define SNI(name) "\x00\x00{{\x00{" name "}}}"
#define ALPN(protos) "\x00\x10{{" protos "}}"
#define EMS "\x00\x17{}" /* extended_master_secret, empty */
#define L62 "abcdefghijklmnopqrstuvwxyz-abcdefghijklmnopqrstuvwxyz-abcdefgh"
#define N255 L62 "h." L62 "h." L62 "h." L62 "h"
_Static_assert(sizeof N255 - 1 == 255, "N255 is 255 bytes");
#define BODY(s) .body = s, .body_len = sizeof(s) - 1

typedef struct body_case {
    const char *name;
    const char *body; /* in the notation of message() */
    size_t body_len;
    int want;
    const char *shown; /* for FOUND and NO_SNI */
} body_case;

static const body_case body_cases[] = {
    /* ---- valid ---- */
    {"host name only", BODY(STD(SNI("example.test"))), R(FOUND), "example.test"},
    {"among other extensions, with alpn", BODY(STD(EMS "\x00\x0b{<\x00>}" SNI("a.b")
                                                   ALPN("<h2><http/1.1>"))),
     R(FOUND), "a.b alpn=h2,http/1.1"},
    {"alpn first", BODY(STD(ALPN("<acme-tls/1>") SNI("x.test"))), R(FOUND),
     "x.test alpn=acme-tls/1"},
    {"trailing dot dropped", BODY(STD(SNI("example.test."))), R(FOUND), "example.test"},
    {"letters, digits, dash, underscore", BODY(STD(SNI("_srv-1.Ex-AMPLE.t3st"))), R(FOUND),
     "_srv-1.Ex-AMPLE.t3st"},
    {"single label", BODY(STD(SNI("localhost"))), R(FOUND), "localhost"},
    {"255 bytes", BODY(STD(SNI(N255))), R(FOUND), N255},
    {"255 bytes with the trailing dot", BODY(STD(SNI(L62 "h." L62 "h." L62 "h." L62 "."))),
     R(FOUND), L62 "h." L62 "h." L62 "h." L62},
    {"other name types skipped", BODY(STD("\x00\x00{{\x01{opaque}\x00{host.test}\x02{}}}")),
     R(FOUND), "host.test"},
    {"unknown extensions with data", BODY(STD("\xfe\xfe{abc}\x00\x15{\x00\x00\x00}" SNI("p.t"))),
     R(FOUND), "p.t"},
    {"session id of 32", BODY("\x03\x03" RND "<" RND ">{\x13\x01}<\x00>{" SNI("s.test") "}"),
     R(FOUND), "s.test"},
    {"three suites, two compression methods",
     BODY("\x03\x03" RND "<>{\x13\x01\x13\x02\xc0\x2f}<\x01\x00>{" SNI("c.test") "}"), R(FOUND),
     "c.test"},
    {"tls 1.0 hello", BODY("\x03\x01" RND "<>{\x00\x2f}<\x00>{" SNI("old.test") "}"), R(FOUND),
     "old.test"},
    {"no extensions at all", BODY(PRE), R(NO_SNI), "-"},
    {"empty extension block", BODY(STD("")), R(NO_SNI), "-"},
    {"server_name without host_name", BODY(STD("\x00\x00{{\x01{x}}}")), R(NO_SNI), "-"},
    {"alpn without sni", BODY(STD(ALPN("<h2>") EMS)), R(NO_SNI), "- alpn=h2"},

    /* ---- hello framing ---- */
    {"hello version 2.0", BODY("\x02\x00" RND "<>{\x13\x01}<\x00>{" SNI("v.test") "}"),
     R(MALFORMED)},
    {"empty body", BODY(""), R(MALFORMED)},
    {"body ends in the random", BODY("\x03\x03RRRR"), R(MALFORMED)},
    {"body ends before the session id", BODY("\x03\x03" RND), R(MALFORMED)},
    {"session id of 33", BODY("\x03\x03" RND "<" RND "R>{\x13\x01}<\x00>"), R(MALFORMED)},
    {"session id past the body", BODY("\x03\x03" RND "\x20RR"), R(MALFORMED)},
    {"odd cipher suites length", BODY("\x03\x03" RND "<>{\x13\x01\x13}<\x00>{}"), R(MALFORMED)},
    {"no cipher suites", BODY("\x03\x03" RND "<>{}<\x00>{}"), R(MALFORMED)},
    {"cipher suites past the body", BODY("\x03\x03" RND "<>\x10\x00\x13\x01"), R(MALFORMED)},
    {"no compression method", BODY("\x03\x03" RND "<>{\x13\x01}<>{}"), R(MALFORMED)},
    {"one byte for the extensions length", BODY(PRE "\x00"), R(MALFORMED)},
    {"extensions length too long", BODY(PRE "\x00\x05" EMS), R(MALFORMED)},
    {"extensions length too short", BODY(PRE "\x00\x03" EMS), R(MALFORMED)},
    {"extension past the block", BODY(STD("\x00\x17\x00\x05\x00")), R(MALFORMED)},
    {"extension header cut", BODY(STD("\x00\x17\x00")), R(MALFORMED)},

    /* ---- server_name ---- */
    {"two server_name extensions", BODY(STD(SNI("a.test") SNI("b.test"))), R(MALFORMED)},
    {"second server_name without host_name", BODY(STD(SNI("a.test") "\x00\x00{{\x01{x}}}")),
     R(MALFORMED)},
    {"two host_names in one list", BODY(STD("\x00\x00{{\x00{a.test}\x00{b.test}}}")),
     R(MALFORMED)},
    {"empty server_name data", BODY(STD("\x00\x00{}")), R(MALFORMED)},
    {"server_name data of one byte", BODY(STD("\x00\x00{\x00}")), R(MALFORMED)},
    {"empty name list", BODY(STD("\x00\x00{{}}")), R(MALFORMED)},
    {"list longer than the extension", BODY(STD("\x00\x00{\x00\x06\x00{ab}}")), R(MALFORMED)},
    {"list shorter than the extension", BODY(STD("\x00\x00{\x00\x04\x00{ab}}")), R(MALFORMED)},
    {"entry header cut", BODY(STD("\x00\x00{{\x00\x00}}")), R(MALFORMED)},
    {"name past the list", BODY(STD("\x00\x00{{\x00\x00\x09" "ab}}")), R(MALFORMED)},
    {"skipped entry past the list", BODY(STD("\x00\x00{{\x01\x00\x09" "ab}}")), R(MALFORMED)},
    {"empty host_name", BODY(STD(SNI(""))), R(MALFORMED)},
    {"256 bytes", BODY(STD(SNI(N255 "x"))), R(MALFORMED)},
    {"space", BODY(STD(SNI("exa mple.test"))), R(MALFORMED)},
    {"slash", BODY(STD(SNI("a.test/x"))), R(MALFORMED)},
    {"port", BODY(STD(SNI("a.test:443"))), R(MALFORMED)},
    {"wildcard", BODY(STD(SNI("*.test"))), R(MALFORMED)},
    {"at sign", BODY(STD(SNI("user@a.test"))), R(MALFORMED)},
    {"nul", BODY(STD(SNI("a.test\0evil.test"))), R(MALFORMED)},
    {"trailing nul", BODY(STD(SNI("a.test\0"))), R(MALFORMED)},
    {"crlf", BODY(STD(SNI("a.test\r\nX"))), R(MALFORMED)},
    {"del", BODY(STD(SNI("a\x7f" "b"))), R(MALFORMED)},
    {"utf-8", BODY(STD(SNI("b\xc3\xbc" "cher.test"))), R(MALFORMED)},
    {"ip literal brackets", BODY(STD(SNI("[::1]"))), R(MALFORMED)},
    {"dot only", BODY(STD(SNI("."))), R(MALFORMED)},
    {"two dots", BODY(STD(SNI(".."))), R(MALFORMED)},
    {"leading dot", BODY(STD(SNI(".a.test"))), R(MALFORMED)},
    {"empty label", BODY(STD(SNI("a..test"))), R(MALFORMED)},
    {"two trailing dots", BODY(STD(SNI("a.test.."))), R(MALFORMED)},

    /* ---- alpn ---- */
    {"empty alpn list", BODY(STD(ALPN(""))), R(MALFORMED)},
    {"empty protocol", BODY(STD(ALPN("<h2><>"))), R(MALFORMED)},
    {"protocol past the list", BODY(STD("\x00\x10{{\x05h2}}")), R(MALFORMED)},
    {"alpn list length mismatch", BODY(STD("\x00\x10{\x00\x05<h2>}")), R(MALFORMED)},
    {"alpn data of one byte", BODY(STD("\x00\x10{\x00}")), R(MALFORMED)},
    {"two alpn extensions", BODY(STD(SNI("a.test") ALPN("<h2>") ALPN("<h2>"))), R(MALFORMED)},
};
enum { NBODY = sizeof body_cases / sizeof body_cases[0] };

#define RAW(s) .raw = s, .raw_len = sizeof(s) - 1

/* Inputs given byte for byte: the record layer and what is not TLS at all. */
static const struct raw_case {
    const char *name;
    const char *raw;
    size_t raw_len;
    int want;
} raw_cases[] = {
    {"nothing yet", RAW(""), R(NEED_MORE)},
    {"record header cut", RAW("\x16\x03\x01\x00"), R(NEED_MORE)},
    {"handshake header cut", RAW("\x16\x03\x01\x01\x00\x01\x00"), R(NEED_MORE)},
    {"record of 2^14 coming", RAW("\x16\x03\x01\x40\x00\x01\x00\x3f\xfc\x03\x03"), R(NEED_MORE)},
    {"http request", RAW("GET / HTTP/1.1\r\nHost: a.test\r\n\r\n"), R(NOT_TLS)},
    {"sslv2 hello", RAW("\x80\x2e\x01\x00\x02\x00\x15\x00\x00\x00\x10"), R(NOT_TLS)},
    {"socks5", RAW("\x05\x01\x00"), R(NOT_TLS)},
    {"record version 2", RAW("\x16\x02\x00\x00\x10"), R(NOT_TLS)},
    {"record version 4", RAW("\x16\x04"), R(NOT_TLS)},
    {"alert", RAW("\x15\x03\x01\x00\x02\x02\x28"), R(NOT_TLS)},
    {"application data", RAW("\x17\x03\x03\x00\x05hello"), R(NOT_TLS)},
    {"server hello", RAW("\x16\x03\x03\x00\x04\x02\x00\x00\x00"), R(NOT_TLS)},
    {"hello request", RAW("\x16\x03\x01\x00\x04\x00\x00\x00\x00"), R(NOT_TLS)},
    {"empty first record", RAW("\x16\x03\x01\x00\x00"), R(MALFORMED)},
    {"empty first record, then the hello", RAW("\x16\x03\x01\x00\x00\x16\x03\x01\x00\x01\x01"),
     R(MALFORMED)},
    {"record of 2^14 + 1", RAW("\x16\x03\x01\x40\x01\x01"), R(MALFORMED)},
    {"record of 2^16 - 1", RAW("\x16\x03\x03\xff\xff"), R(MALFORMED)},
    {"hello of 2^24 - 1", RAW("\x16\x03\x01\x40\x00\x01\xff\xff\xff"), R(TOO_LARGE)},
    {"hello length across records", RAW("\x16\x03\x01\x00\x02\x01\x00\x16\x03\x01\x00\x02\xff\xff"),
     R(TOO_LARGE)},
    {"alert inside the hello header", RAW("\x16\x03\x01\x00\x02\x01\x00\x15\x03\x01\x00\x02"),
     R(MALFORMED)},
    {"version 2 record inside the hello header", RAW("\x16\x03\x01\x00\x02\x01\x00\x16\x02"),
     R(MALFORMED)},
};
enum { NRAW = sizeof raw_cases / sizeof raw_cases[0] };

/* ---- tests ---- */

/* The name's offset in the capture (-1 if it has none). */
static long capture_name_at(const struct capture *c) {
    size_t n = strcspn(c->shown, " ");
    if (strcmp(c->shown, "-") == 0) return -1;
    const char *at = memmem(c->bytes, c->len, c->shown, n);
    ck_assert_ptr_nonnull(at);
    return at - c->bytes;
}

START_TEST(captured) {
    const struct capture *c = &captures[_i];
    const unsigned char *b = (const unsigned char *)c->bytes;
    int want = strcmp(c->shown, "-") == 0 ? R(NO_SNI) : R(FOUND);
    outcome o = check_input(c->name, b, c->len, 0, want, c->shown);
    ck_assert_uint_eq(o.end, c->len);
    ck_assert_uint_eq(o.record_version, 0x0301);
    ck_assert_uint_eq(o.hello_version, 0x0303);
    if (want == R(FOUND)) ck_assert_int_eq(o.name_at, capture_name_at(c));

    /* What follows the hello is not looked at: later records, or the rest of the last. */
    static unsigned char more[BIG];
    memcpy(more, b, c->len);
    memcpy(more + c->len, "\x14\x03\x03\x00\x01\x01\x17\x03\x03\x00\x02xy", 13);
    o = check_input(c->name, more, c->len + 13, 0, want, c->shown);
    ck_assert_uint_eq(o.end, c->len);
    size_t rec = (size_t)(b[3] << 8 | b[4]) + 3;
    more[3] = (unsigned char)(rec >> 8);
    more[4] = (unsigned char)rec;
    o = check_input(c->name, more, c->len + 3, 0, want, c->shown);
    ck_assert_uint_eq(o.end, c->len);

    /* The caller's bound counts input bytes up to the hello's end. */
    ck_assert_int_eq(run(b, c->len, c->len).r, want);
    check_input(c->name, b, c->len, c->len - 1, R(TOO_LARGE), NULL);
}
END_TEST

START_TEST(captured_two_records) {
    const struct capture *c = &captures[_i];
    const unsigned char *msg = (const unsigned char *)c->bytes + 5;
    size_t n = c->len - 5;
    int want = strcmp(c->shown, "-") == 0 ? R(NO_SNI) : R(FOUND);
    long at = capture_name_at(c);
    size_t name_len = strcspn(c->shown, " ");
    static unsigned char in[BIG];
    char label[128];
    for (size_t cut = 1; cut < n; cut++) {
        size_t len = frame(msg, n, &cut, 1, in);
        snprintf(label, sizeof label, "%s cut at %zu", c->name, cut);
        outcome o = check_input(label, in, len, 0, want, c->shown);
        REQUIRE(o.end == len, "%s: end %zu", label, o.end);
        if (want != R(FOUND)) continue;
        /* In place unless the cut falls inside the name. */
        size_t name_msg = (size_t)at - 5;
        long expect = cut <= name_msg ? at + 5 : cut >= name_msg + name_len ? at : -1;
        REQUIRE(o.name_at == expect, "%s: name at %ld, want %ld", label, o.name_at, expect);
    }
}
END_TEST

START_TEST(captured_three_records) {
    const struct capture *c = &captures[_i];
    const unsigned char *msg = (const unsigned char *)c->bytes + 5;
    size_t n = c->len - 5;
    static unsigned char in[BIG];
    int want = strcmp(c->shown, "-") == 0 ? R(NO_SNI) : R(FOUND);
    for (size_t a = 1; a < n; a++)
        for (size_t b = a + 1; b < n; b++) {
            size_t cuts[2] = {a, b};
            size_t len = frame(msg, n, cuts, 2, in);
            outcome o = run(in, len, 0);
            REQUIRE(o.r == want && strcmp(o.shown, c->shown) == 0 && o.end == len,
                    "%s cut at %zu and %zu: %s \"%s\"", c->name, a, b,
                    ferry__sni_result_text(o.r), o.shown);
        }
}
END_TEST

/* Records of 1 to 7 bytes each: the extreme of fragmentation, every field split. */
START_TEST(captured_tiny_records) {
    const struct capture *c = &captures[_i];
    const unsigned char *msg = (const unsigned char *)c->bytes + 5;
    size_t n = c->len - 5;
    static unsigned char in[BIG];
    static size_t cuts[BIG];
    int want = strcmp(c->shown, "-") == 0 ? R(NO_SNI) : R(FOUND);
    for (size_t size = 1; size <= 7; size++) {
        size_t ncuts = 0;
        for (size_t at = size; at < n; at += size) cuts[ncuts++] = at;
        size_t len = frame(msg, n, cuts, ncuts, in);
        outcome o = size == 1 ? check_input(c->name, in, len, 0, want, c->shown) : run(in, len, 0);
        ck_assert_msg(o.r == want && strcmp(o.shown, c->shown) == 0 && o.end == len,
                      "%s in %zu-byte records: %s", c->name, size, ferry__sni_result_text(o.r));
        ck_assert_int_eq(run(in, len, len).r, want);
        ck_assert_int_eq(run(in, len, len - 1).r, R(TOO_LARGE));
    }
}
END_TEST

START_TEST(bodies) {
    const body_case *tc = &body_cases[_i];
    static unsigned char msg[BIG], in[BIG];
    size_t n = message(tc->body, tc->body_len, msg);
    size_t len = frame(msg, n, NULL, 0, in);
    check_input(tc->name, in, len, 0, tc->want, tc->shown);
    char label[160];
    for (size_t cut = 1; cut < n; cut++) {
        len = frame(msg, n, &cut, 1, in);
        snprintf(label, sizeof label, "%s, cut at %zu", tc->name, cut);
        check_input(label, in, len, 0, tc->want, tc->shown);
    }
}
END_TEST

START_TEST(raw) {
    const struct raw_case *tc = &raw_cases[_i];
    check_input(tc->name, (const unsigned char *)tc->raw, tc->raw_len, 0, tc->want, NULL);
}
END_TEST

/* A hello cut in two whose second record is not a clean handshake record. */
START_TEST(bad_continuation) {
    static const char *const bad_headers[] = {
        "\x17\x03\x03\x00\x10", /* application data */
        "\x15\x03\x03\x00\x02", /* alert */
        "\x14\x03\x03\x00\x01", /* change_cipher_spec */
        "\x18\x03\x03\x00\x10", /* heartbeat */
        "\x16\x02\x00\x00\x10", /* version 2 */
        "\x16\x03\x01\x00\x00", /* empty */
        "\x16\x03\x01\x40\x01", /* 2^14 + 1 */
    };
    const struct capture *c = &captures[2];
    const unsigned char *msg = (const unsigned char *)c->bytes + 5;
    size_t n = c->len - 5, name_msg = (size_t)capture_name_at(c) - 5;
    const size_t cuts[] = {1, 2, 4, 50, name_msg - 2, name_msg + 3, n - 1};
    static unsigned char in[BIG];
    char label[128];
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        size_t len = frame(msg, n, &cuts[i], 1, in), second = 5 + cuts[i];
        for (size_t h = 0; h < sizeof bad_headers / sizeof bad_headers[0]; h++) {
            /* In place of the real header, then in front of it. */
            static unsigned char bad[BIG];
            memcpy(bad, in, len);
            memcpy(bad + second, bad_headers[h], 5);
            snprintf(label, sizeof label, "cut at %zu, header %zu", cuts[i], h);
            check_input(label, bad, len, 0, R(MALFORMED), NULL);
            memcpy(bad + second, bad_headers[h], 5);
            memcpy(bad + second + 5, in + second, len - second);
            check_input(label, bad, len + 5, 0, R(MALFORMED), NULL);
        }
    }
}
END_TEST

/* A hello of exactly total message bytes (a padding extension makes up the size) with
 * the name split off from the padding, in records cut at cuts. */
static size_t padded(size_t total, const size_t *cuts, size_t ncuts, unsigned char *in) {
    static const char base[] = STD(SNI("big.test") "\x00\x15{}");
    static char body[BIG];
    static unsigned char msg[BIG];
    size_t short_len = message(base, sizeof base - 1, msg);
    size_t pad = total - short_len;
    memcpy(body, base, sizeof base - 3);
    memset(body + sizeof base - 3, 'P', pad);
    memcpy(body + sizeof base - 3 + pad, "}}", 2);
    size_t n = message(body, sizeof base - 1 + pad, msg);
    ck_assert_uint_eq(n, total);
    return frame(msg, n, cuts, ncuts, in);
}

START_TEST(limits) {
    static unsigned char in[BIG];
    /* A record of exactly 2^14 bytes: the largest one-record hello. */
    size_t len = padded(16384, NULL, 0, in);
    ck_assert_uint_eq(len, 16389);
    check_input("2^14 record", in, len, 0, R(FOUND), "big.test");
    ck_assert_int_eq(run(in, len, len).r, R(FOUND));
    check_input("2^14 record, bound one short", in, len, len - 1, R(TOO_LARGE), NULL);
    /* One byte more must take a second record. */
    len = padded(16385, NULL, 0, in);
    check_input("2^14 + 1 record", in, len, 0, R(MALFORMED), NULL);
    size_t cut = 16384;
    len = padded(16385, &cut, 1, in);
    ck_assert_uint_eq(len, 16395);
    ck_assert_int_eq(run(in, len, 0).r, R(FOUND));
    ck_assert_int_eq(run(in, len, len).r, R(FOUND));
    check_input("2^14 + 1 in two, bound one short", in, len, len - 1, R(TOO_LARGE), NULL);
    /* Past the default bound: refused as soon as the lengths say so. */
    cut = 10000;
    len = padded(20000, &cut, 1, in);
    ck_assert_int_eq(run(in, len, 0).r, R(TOO_LARGE));
    ck_assert_int_eq(run(in, 9, 0).r, R(TOO_LARGE));
    ck_assert_int_eq(run(in, len, len).r, R(FOUND));
    ck_assert_int_eq(run(in, len, len - 1).r, R(TOO_LARGE));
    ck_assert_int_eq(run(in, len, 1).r, R(TOO_LARGE));
    /* The hello needs a second header it cannot fit, known before it comes. */
    ck_assert_int_eq(run(in, 9, 20000 + 5).r, R(TOO_LARGE));
    ck_assert_int_eq(run(in, 9, 20000 + 10).r, R(NEED_MORE));
}
END_TEST

/* ALPN lists split across records: copied when they fit alpn_buf, else only flagged. */
START_TEST(alpn_split) {
    static unsigned char msg[BIG], in[BIG];
    static const char short_list[] = STD(ALPN("<h2><http/1.1>") SNI("s.test"));
    /* 20 protocols of 8 bytes: 180 bytes, more than alpn_buf holds. */
#define P8 "<proto-xx>"
#define P40 P8 P8 P8 P8 P8
    static const char long_list[] = STD(ALPN(P40 P40 P40 P40) SNI("l.test"));
    const char *long_shown = "l.test alpn=proto-xx,proto-xx,proto-xx,proto-xx,proto-xx,"
                             "proto-xx,proto-xx,proto-xx,proto-xx,proto-xx,proto-xx,proto-xx,"
                             "proto-xx,proto-xx,proto-xx,proto-xx,proto-xx,proto-xx,proto-xx,"
                             "proto-xx";
    /* The list starts after type, length, version, random, session id, suites,
     * compression, the extensions length, the ALPN header and its list length. */
    size_t list_at = 4 + 2 + 32 + 1 + 4 + 2 + 2 + 4 + 2;
    size_t n = message(short_list, sizeof short_list - 1, msg);
    size_t cut = list_at + 5, len = frame(msg, n, &cut, 1, in);
    check_input("short list split", in, len, 0, R(FOUND), "s.test alpn=h2,http/1.1");
    n = message(long_list, sizeof long_list - 1, msg);
    len = frame(msg, n, NULL, 0, in);
    check_input("long list whole", in, len, 0, R(FOUND), long_shown);
    cut = list_at + 5;
    len = frame(msg, n, &cut, 1, in);
    check_input("long list split", in, len, 0, R(FOUND), "l.test alpn=?");
    cut = list_at;
    len = frame(msg, n, &cut, 1, in);
    check_input("long list in the second record", in, len, 0, R(FOUND), long_shown);
    /* A bad length late in a list too long to keep is still found. */
    static const char bad_long[] = STD(ALPN(P40 P40 P40 P40 "<>") SNI("l.test"));
    n = message(bad_long, sizeof bad_long - 1, msg);
    cut = list_at + 5;
    len = frame(msg, n, &cut, 1, in);
    check_input("bad long list split", in, len, 0, R(MALFORMED), NULL);
}
END_TEST

START_TEST(alpn_next) {
    ferry_view list = {"\x02h2\x08http/1.1", 12}, proto;
    ck_assert_int_eq(ferry__sni_alpn_next(&list, &proto), 1);
    ck_assert_uint_eq(proto.len, 2);
    ck_assert_int_eq(memcmp(proto.ptr, "h2", 2), 0);
    ck_assert_int_eq(ferry__sni_alpn_next(&list, &proto), 1);
    ck_assert_uint_eq(proto.len, 8);
    ck_assert_int_eq(memcmp(proto.ptr, "http/1.1", 8), 0);
    ck_assert_int_eq(ferry__sni_alpn_next(&list, &proto), 0);
    /* A list that overstates its last length stops there. */
    ferry_view lying = {"\x02h2\x09http/1.1", 12};
    ck_assert_int_eq(ferry__sni_alpn_next(&lying, &proto), 1);
    ck_assert_int_eq(ferry__sni_alpn_next(&lying, &proto), 0);
    ferry_view empty = {NULL, 0};
    ck_assert_int_eq(ferry__sni_alpn_next(&empty, &proto), 0);
}
END_TEST

START_TEST(versions) {
    static unsigned char msg[BIG], in[BIG];
    static const char tls10[] = "\x03\x01" RND "<>{\x00\x2f}<\x00>{" SNI("old.test") "}";
    size_t n = message(tls10, sizeof tls10 - 1, msg);
    size_t len = frame(msg, n, NULL, 0, in);
    in[2] = 0; /* SSL 3.0 record version, as some clients still send first */
    outcome o = run(in, len, 0);
    ck_assert_int_eq(o.r, R(FOUND));
    ck_assert_uint_eq(o.record_version, 0x0300);
    ck_assert_uint_eq(o.hello_version, 0x0301);
}
END_TEST

START_TEST(result_texts) {
    const int all[] = {R(NEED_MORE), R(FOUND), R(NO_SNI), R(NOT_TLS), R(MALFORMED), R(TOO_LARGE)};
    const char *unknown = ferry__sni_result_text(42);
    for (size_t i = 0; i < 6; i++) {
        ck_assert_str_ne(ferry__sni_result_text(all[i]), unknown);
        for (size_t j = 0; j < i; j++)
            ck_assert_str_ne(ferry__sni_result_text(all[i]), ferry__sni_result_text(all[j]));
    }
    ck_assert_str_eq(ferry__sni_result_text(R(MALFORMED)), "malformed ClientHello");
    ck_assert_str_eq(ferry__sni_result_text(-4), unknown);
}
END_TEST

int main(void) {
    Suite *s = suite_create("sni");
    TCase *tc = tcase_create("captured");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, captured, 0, NCAPTURES);
    tcase_add_loop_test(tc, captured_two_records, 0, NCAPTURES);
    tcase_add_loop_test(tc, captured_three_records, 0, NCAPTURES);
    tcase_add_loop_test(tc, captured_tiny_records, 0, NCAPTURES);
    suite_add_tcase(s, tc);
    TCase *crafted = tcase_create("crafted");
    tcase_set_timeout(crafted, 60);
    tcase_add_loop_test(crafted, bodies, 0, NBODY);
    tcase_add_loop_test(crafted, raw, 0, NRAW);
    tcase_add_test(crafted, bad_continuation);
    tcase_add_test(crafted, limits);
    tcase_add_test(crafted, alpn_split);
    tcase_add_test(crafted, alpn_next);
    tcase_add_test(crafted, versions);
    tcase_add_test(crafted, result_texts);
    suite_add_tcase(s, crafted);
    return run_suite(s);
}
