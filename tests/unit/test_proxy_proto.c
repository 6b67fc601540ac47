/* Golden tests for the PROXY protocol decoder and encoders (lib/proxy_proto.c).
 *
 * Each decode row is a raw input and the exact expected outcome, the header rendered as
 * one string. Every row is also replayed on each of its prefixes, from a heap buffer that
 * ends exactly where the prefix does (so ASan catches a read past `len`): a prefix must
 * give "need more" or the very error of the whole input, never success early or another
 * error. Encoders are checked byte for byte and round-tripped through the decoder. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy_proto.h"
#include "testutil.h"

#define E(x) FERRY__PROXY_E_##x
#define BIN(s) .raw = s, .raw_len = sizeof(s) - 1 /* a literal that may hold NULs */

#define SIG "\r\n\r\n\0\r\nQUIT\n"
#define V4_BLOCK "\xc0\xa8\x00\x01\xc0\xa8\x00\x0b\xdc\x04\x01\xbb" /* 192.168.0.1:56324 > .11:443 */
#define V4_SHOWN "192.168.0.1:56324 > 192.168.0.11:443"
#define IP6_1 "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x01" /* 2001:db8::1 */
#define IP6_2 "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x02" /* 2001:db8::2 */
#define V6_BLOCK IP6_1 IP6_2 "\x30\x39\x20\xfb"             /* ports 12345, 8443 */
#define V6_SHOWN "[2001:db8::1]:12345 > [2001:db8::2]:8443"
#define FFFF "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"       /* longest IPv6 text */
#define X8 "xxxxxxxx"
#define X64 X8 X8 X8 X8 X8 X8 X8 X8
#define Z8 "\0\0\0\0\0\0\0\0"
#define Z216 Z8 Z8 Z8 Z8 Z8 Z8 Z8 Z8 Z8 Z8 Z8 Z8 Z8 Z8 Z8 Z8 Z8 Z8 Z8 Z8 Z8 Z8 Z8 Z8 Z8 Z8 Z8

static void show_addr(const ferry__sockaddr *a, char *buf, size_t cap) {
    if (a->sa.sa_family == AF_UNSPEC)
        snprintf(buf, cap, "-");
    else
        ferry__addr_format(a, 1, buf, cap);
}

static void show_view(const char *name, ferry_view v, char *buf, size_t cap) {
    size_t at = strlen(buf);
    if (v.ptr) snprintf(buf + at, cap - at, " %s=%.*s", name, (int)v.len, v.ptr);
}

/* Decodes a fresh exact-size copy of buf and renders the header. The output starts as
 * garbage, so nothing may rely on it being zeroed, and must stay so on anything but
 * success. */
static int run(const char *buf, size_t len, size_t max_v2, char *shown, size_t cap) {
    char *copy = malloc(len ? len : 1);
    memcpy(copy, buf, len);
    ferry__proxy_header h, garbage;
    memset(&h, 0xa5, sizeof h);
    memset(&garbage, 0xa5, sizeof garbage);
    int r = ferry__proxy_decode(copy, len, max_v2, &h);
    shown[0] = '\0';
    if (r <= 0) {
        ck_assert_msg(memcmp(&h, &garbage, sizeof h) == 0, "output written on %d", r);
        free(copy);
        return r;
    }
    static const char *const commands[] = {"local", "proxy"};
    static const char *const transports[] = {"unspec", "stream", "dgram"};
    char src[64], dst[64];
    show_addr(&h.src, src, sizeof src);
    show_addr(&h.dst, dst, sizeof dst);
    ck_assert_uint_le(h.command, 1);
    ck_assert_uint_le(h.transport, 2);
    snprintf(shown, cap, "v%u %s %s %s > %s", h.version, commands[h.command],
             transports[h.transport], src, dst);
    show_view("alpn", h.alpn, shown, cap);
    show_view("authority", h.authority, shown, cap);
    ck_assert_uint_eq(h.len, (size_t)r);
    free(copy);
    return r;
}

typedef struct decode_case {
    const char *name;
    const char *raw;
    size_t raw_len;  /* 0: strlen(raw) */
    size_t max_v2;   /* passed through; 0: no cap of ours */
    int err;         /* 0: must decode (or need more, with .more) */
    int more;        /* a valid but incomplete header */
    int used;        /* expected length; 0: the whole input */
    const char *out; /* rendered header, as run() shows it */
} decode_case;

static const decode_case cases[] = {
    /* ---- v1 ---- */
    {"v1 tcp4", BIN("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"), .out = "v1 proxy stream " V4_SHOWN},
    {"v1 tcp4, request follows", BIN("PROXY TCP4 10.0.0.1 10.0.0.2 1 80\r\nGET / HTTP/1.1\r\n"), .used = 35,
     .out = "v1 proxy stream 10.0.0.1:1 > 10.0.0.2:80"},
    {"v1 tcp4 ports 0 and 65535", BIN("PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n"),
     .out = "v1 proxy stream 0.0.0.0:0 > 255.255.255.255:65535"},
    {"v1 tcp6", BIN("PROXY TCP6 2001:db8::1 2001:db8::2 12345 8443\r\n"), .out = "v1 proxy stream " V6_SHOWN},
    {"v1 tcp6 long forms", BIN("PROXY TCP6 2001:0db8:0000:0000:0000:0000:0000:0001 ::ffff:10.0.0.1 1 2\r\n"),
     .out = "v1 proxy stream [2001:db8::1]:1 > [::ffff:10.0.0.1]:2"},
    {"v1 tcp6 longest", BIN("PROXY TCP6 " FFFF " " FFFF " 65535 65535\r\n"),
     .out = "v1 proxy stream [" FFFF "]:65535 > [" FFFF "]:65535"},
    {"v1 unknown", BIN("PROXY UNKNOWN\r\n"), .out = "v1 proxy unspec - > -"},
    {"v1 unknown, rest ignored", BIN("PROXY UNKNOWN  whatever\t\r 1.2.3.4\r\nX"), .used = 35,
     .out = "v1 proxy unspec - > -"},
    {"v1 unknown 107 bytes", BIN("PROXY UNKNOWN " FFFF " " FFFF " 65535 65535\r\n"),
     .out = "v1 proxy unspec - > -"},
    {"v1 empty", BIN(""), .more = 1},
    {"v1 magic cut", BIN("PROX"), .more = 1},
    {"v1 no CRLF yet", BIN("PROXY TCP4 1.2.3.4 5.6.7.8 1 2"), .more = 1},
    {"v1 CR without LF yet", BIN("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r"), .more = 1},
    {"v1 106 bytes without LF", BIN("PROXY UNKNOWN " X64 "xxxxxxxxxxxxxxxxxxxxxxxxxxx\r"), .more = 1},
    {"v1 107 bytes without LF", BIN("PROXY UNKNOWN " X64 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r"), .err = E(TOO_LONG)},
    {"v1 108-byte line", BIN("PROXY UNKNOWN " X64 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n"), .err = E(TOO_LONG)},
    {"plain http", BIN("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), .err = E(SIGNATURE)},
    {"plain http post", BIN("POST / HTTP/1.1\r\n"), .err = E(SIGNATURE)},
    {"plain http propfind", BIN("PROPFIND / HTTP/1.1\r\n"), .err = E(SIGNATURE)},
    {"tls client hello", BIN("\x16\x03\x01\x02\x00\x01"), .err = E(SIGNATURE)},
    {"v1 lower case", BIN("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), .err = E(SIGNATURE)},
    {"v1 no space after PROXY", BIN("PROXY\r\n"), .err = E(SIGNATURE)},
    {"v1 empty protocol", BIN("PROXY \r\n"), .err = E(LINE)},
    {"v1 double space before protocol", BIN("PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), .err = E(LINE)},
    {"v1 double space between addresses", BIN("PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n"), .err = E(LINE)},
    {"v1 double space before port", BIN("PROXY TCP4 1.2.3.4 5.6.7.8  1 2\r\n"), .err = E(LINE)},
    {"v1 trailing space", BIN("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n"), .err = E(LINE)},
    {"v1 tab separator", BIN("PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n"), .err = E(LINE)},
    {"v1 missing port", BIN("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"), .err = E(LINE)},
    {"v1 extra field", BIN("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"), .err = E(LINE)},
    {"v1 protocol only", BIN("PROXY TCP4\r\n"), .err = E(LINE)},
    {"v1 bare LF", BIN("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\nGET"), .err = E(LINE)},
    {"v1 bare LF after unknown", BIN("PROXY UNKNOWN\n"), .err = E(LINE)},
    {"v1 CR inside the line", BIN("PROXY TCP4 1.2.3.4\r5.6.7.8 1 2\r\n"), .err = E(LINE)},
    {"v1 tcp5", BIN("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n"), .err = E(PROTOCOL)},
    {"v1 udp4", BIN("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n"), .err = E(PROTOCOL)},
    {"v1 lower-case tcp4", BIN("PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n"), .err = E(PROTOCOL)},
    {"v1 tcp", BIN("PROXY TCP 1.2.3.4 5.6.7.8 1 2\r\n"), .err = E(PROTOCOL)},
    {"v1 unknownx", BIN("PROXY UNKNOWNX\r\n"), .err = E(PROTOCOL)},
    {"v1 octet 256", BIN("PROXY TCP4 256.1.1.1 5.6.7.8 1 2\r\n"), .err = E(ADDRESS)},
    {"v1 three octets", BIN("PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n"), .err = E(ADDRESS)},
    {"v1 leading zero octet", BIN("PROXY TCP4 1.2.3.4 05.6.7.8 1 2\r\n"), .err = E(ADDRESS)},
    {"v1 tcp4 with ipv6", BIN("PROXY TCP4 ::1 ::2 1 2\r\n"), .err = E(ADDRESS)},
    {"v1 tcp6 with ipv4", BIN("PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n"), .err = E(ADDRESS)},
    {"v1 tcp6 zone", BIN("PROXY TCP6 fe80::1%eth0 ::2 1 2\r\n"), .err = E(ADDRESS)},
    {"v1 tcp6 group of five digits", BIN("PROXY TCP6 0000:0000:0000:0000:0000:0000:0000:00001 ::2 1 2\r\n"), .err = E(ADDRESS)},
    {"v1 nul after address", BIN("PROXY TCP4 1.2.3.4\0x 5.6.7.8 1 2\r\n"), .err = E(ADDRESS)},
    {"v1 hostname", BIN("PROXY TCP4 localhost 5.6.7.8 1 2\r\n"), .err = E(ADDRESS)},
    {"v1 port 65536", BIN("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n"), .err = E(PORT)},
    {"v1 port 99999", BIN("PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n"), .err = E(PORT)},
    {"v1 port six digits", BIN("PROXY TCP4 1.2.3.4 5.6.7.8 100000 2\r\n"), .err = E(PORT)},
    {"v1 port plus", BIN("PROXY TCP4 1.2.3.4 5.6.7.8 +80 2\r\n"), .err = E(PORT)},
    {"v1 port minus", BIN("PROXY TCP4 1.2.3.4 5.6.7.8 1 -1\r\n"), .err = E(PORT)},
    {"v1 port leading zero", BIN("PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n"), .err = E(PORT)},
    {"v1 port 00", BIN("PROXY TCP4 1.2.3.4 5.6.7.8 00 2\r\n"), .err = E(PORT)},
    {"v1 port hex", BIN("PROXY TCP4 1.2.3.4 5.6.7.8 0x50 2\r\n"), .err = E(PORT)},

    /* ---- v2 ---- */
    {"v2 tcp4", BIN(SIG "\x21\x11\x00\x0c" V4_BLOCK), .out = "v2 proxy stream " V4_SHOWN},
    {"v2 tcp4, data follows", BIN(SIG "\x21\x11\x00\x0c" V4_BLOCK "\x16\x03\x01"), .used = 28,
     .out = "v2 proxy stream " V4_SHOWN},
    {"v2 tcp6", BIN(SIG "\x21\x21\x00\x24" V6_BLOCK), .out = "v2 proxy stream " V6_SHOWN},
    {"v2 udp4 reported", BIN(SIG "\x21\x12\x00\x0c" V4_BLOCK), .out = "v2 proxy dgram " V4_SHOWN},
    {"v2 udp6 reported", BIN(SIG "\x21\x22\x00\x24" V6_BLOCK), .out = "v2 proxy dgram " V6_SHOWN},
    {"v2 local", BIN(SIG "\x20\x00\x00\x00"), .out = "v2 local unspec - > -"},
    {"v2 local with addresses ignored", BIN(SIG "\x20\x11\x00\x0c" V4_BLOCK), .out = "v2 local unspec - > -"},
    {"v2 local, family byte ignored", BIN(SIG "\x20\xff\x00\x03xyz"), .out = "v2 local unspec - > -"},
    {"v2 proxy unspec", BIN(SIG "\x21\x00\x00\x00"), .out = "v2 proxy unspec - > -"},
    {"v2 proxy unspec, block skipped", BIN(SIG "\x21\x00\x00\x02\x01\x05"), .out = "v2 proxy unspec - > -"},
    {"v2 unix falls back to unspec", BIN(SIG "\x21\x31\x00\xd8" Z216), .out = "v2 proxy stream - > -"},
    {"v2 tlvs", BIN(SIG "\x21\x11\x00\x28" V4_BLOCK "\x01\x00\x02h2\x02\x00\x0b" "example.com"
                    "\x04\x00\x00\xea\x00\x03vpc"),
     .out = "v2 proxy stream " V4_SHOWN " alpn=h2 authority=example.com"},
    {"v2 empty alpn", BIN(SIG "\x21\x11\x00\x0f" V4_BLOCK "\x01\x00\x00"), .out = "v2 proxy stream " V4_SHOWN " alpn="},
    {"v2 tlvs after unix", BIN(SIG "\x21\x32\x00\xdd" Z216 "\x02\x00\x02" "ab"),
     .out = "v2 proxy dgram - > - authority=ab"},
    {"v2 at max", BIN(SIG "\x21\x11\x00\x0f" V4_BLOCK "\x04\x00\x00"), .max_v2 = 31,
     .out = "v2 proxy stream " V4_SHOWN},
    {"v2 signature cut", BIN("\r\n\r\n\0\r"), .more = 1},
    {"v2 fixed part cut", BIN(SIG "\x21\x11\x00"), .more = 1},
    {"v2 address block cut", BIN(SIG "\x21\x11\x00\x0c\xc0\xa8\x00\x01\xc0\xa8"), .more = 1},
    {"v2 tlv cut", BIN(SIG "\x21\x11\x00\x11" V4_BLOCK "\x01\x00\x02h"), .more = 1},
    {"v2 bad signature", BIN("\r\n\r\n\0\r\nQUIT\r\x21\x11\x00\x0c" V4_BLOCK), .err = E(SIGNATURE)},
    {"v2 signature CRCR", BIN("\r\r"), .err = E(SIGNATURE)},
    {"v2 signature CRLF then HTTP", BIN("\r\nGET / HTTP/1.1\r\n"), .err = E(SIGNATURE)},
    {"v2 version 1", BIN(SIG "\x11\x11\x00\x0c" V4_BLOCK), .err = E(VERSION)},
    {"v2 version 3", BIN(SIG "\x31\x11\x00\x0c" V4_BLOCK), .err = E(VERSION)},
    {"v2 version 0", BIN(SIG "\x01"), .err = E(VERSION)},
    {"v2 command 2", BIN(SIG "\x22\x11\x00\x0c" V4_BLOCK), .err = E(COMMAND)},
    {"v2 command f", BIN(SIG "\x2f"), .err = E(COMMAND)},
    {"v2 family 4", BIN(SIG "\x21\x41\x00\x0c" V4_BLOCK), .err = E(FAMILY)},
    {"v2 transport 3", BIN(SIG "\x21\x13\x00\x0c" V4_BLOCK), .err = E(FAMILY)},
    {"v2 inet without transport", BIN(SIG "\x21\x10\x00\x0c" V4_BLOCK), .err = E(FAMILY)},
    {"v2 unspec with stream", BIN(SIG "\x21\x01\x00\x00"), .err = E(FAMILY)},
    {"v2 tcp4 length 11", BIN(SIG "\x21\x11\x00\x0b" V4_BLOCK), .err = E(LENGTH)},
    {"v2 tcp6 with tcp4 length", BIN(SIG "\x21\x21\x00\x0c" V4_BLOCK), .err = E(LENGTH)},
    {"v2 unix length 215", BIN(SIG "\x21\x31\x00\xd7"), .err = E(LENGTH)},
    {"v2 over max", BIN(SIG "\x21\x11\x00\x0f" V4_BLOCK "\x04\x00\x00"), .max_v2 = 30, .err = E(TOO_LONG)},
    {"v2 over max, judged at 16 bytes", BIN(SIG "\x21\x11\xff\xff"), .max_v2 = 16384, .err = E(TOO_LONG)},
    {"v2 local over max", BIN(SIG "\x20\x00\x00\x01"), .max_v2 = 16, .err = E(TOO_LONG)},
    {"v2 tlv past the block", BIN(SIG "\x21\x11\x00\x11" V4_BLOCK "\x01\x00\x05h2"), .err = E(TLV)},
    {"v2 tlv header cut", BIN(SIG "\x21\x11\x00\x0e" V4_BLOCK "\x01\x00"), .err = E(TLV)},
    {"v2 tlv one byte", BIN(SIG "\x21\x21\x00\x25" V6_BLOCK "\x04"), .err = E(TLV)},
    {"v2 alpn twice", BIN(SIG "\x21\x11\x00\x14" V4_BLOCK "\x01\x00\x01" "a\x01\x00\x01" "b"), .err = E(TLV)},
    {"v2 authority twice", BIN(SIG "\x21\x11\x00\x12" V4_BLOCK "\x02\x00\x00\x02\x00\x00"), .err = E(TLV)},
};

enum { NCASES = sizeof cases / sizeof cases[0] };

/* Every prefix must be "need more" or the whole input's error. */
static const char *check_prefixes(const decode_case *tc, size_t n, int want) {
    static char why[128];
    char shown[256];
    size_t stop = want > 0 ? (size_t)want : n;
    for (size_t k = 0; k < stop; k++) {
        int r = run(tc->raw, k, tc->max_v2, shown, sizeof shown);
        if (r != 0 && (want > 0 || r != want)) {
            snprintf(why, sizeof why, "prefix %zu of %zu gave %d (whole: %d)", k, n, r, want);
            return why;
        }
    }
    return NULL;
}

START_TEST(decode_golden) {
    const decode_case *tc = &cases[_i];
    size_t n = tc->raw_len;
    char shown[256];
    int want = tc->err ? tc->err : tc->more ? 0 : tc->used ? tc->used : (int)n;
    int r = run(tc->raw, n, tc->max_v2, shown, sizeof shown);
    ck_assert_msg(r == want, "[%s] got %d (%s), want %d", tc->name, r, ferry__proxy_error_text(r), want);
    if (want > 0)
        ck_assert_msg(strcmp(shown, tc->out) == 0, "[%s] got \"%s\", want \"%s\"", tc->name,
                      shown, tc->out);
    const char *bad = check_prefixes(tc, n, want);
    ck_assert_msg(bad == NULL, "[%s] %s", tc->name, bad);
    /* Stateless: the same input gives the same answer again. */
    char again[256];
    ck_assert_int_eq(run(tc->raw, n, tc->max_v2, again, sizeof again), r);
    ck_assert_str_eq(again, shown);
}
END_TEST

/* A listener expecting PROXY refuses anything else before reading more. */
START_TEST(foreign_first_byte) {
    char shown[256];
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        int r = run(&c, 1, 0, shown, sizeof shown);
        ck_assert_int_eq(r, b == 'P' || b == '\r' ? 0 : E(SIGNATURE));
    }
}
END_TEST

/* The length field at its largest, with and without a cap. */
START_TEST(largest_v2) {
    size_t n = FERRY__PROXY_V2_MAX;
    char *buf = malloc(n);
    memcpy(buf, SIG "\x21\x11\xff\xff" V4_BLOCK, 28);
    /* One NOOP TLV fills the rest: 65535 - 12 - 3 bytes of value. */
    memcpy(buf + 28, "\x04\xff\xf0", 3);
    memset(buf + 31, 0, n - 31);
    char shown[256];
    ck_assert_int_eq(run(buf, n, 0, shown, sizeof shown), (int)n);
    ck_assert_str_eq(shown, "v2 proxy stream " V4_SHOWN);
    ck_assert_int_eq(run(buf, n, n, shown, sizeof shown), (int)n);
    ck_assert_int_eq(run(buf, n - 1, 0, shown, sizeof shown), 0);
    ck_assert_int_eq(run(buf, n, n - 1, shown, sizeof shown), E(TOO_LONG));
    ck_assert_int_eq(run(buf, 16, 16384, shown, sizeof shown), E(TOO_LONG));
    free(buf);
}
END_TEST

START_TEST(every_error_reached) {
    for (int e = E(SIGNATURE); e >= E(TLV); e--) {
        int seen = 0;
        for (size_t i = 0; i < NCASES; i++) seen |= cases[i].err == e;
        ck_assert_msg(seen, "no case yields error %d (%s)", e, ferry__proxy_error_text(e));
    }
}
END_TEST

START_TEST(error_texts) {
    for (int e = E(SIGNATURE); e >= E(TLV); e--) {
        const char *t = ferry__proxy_error_text(e);
        ck_assert_str_ne(t, ferry__proxy_error_text(0));
        for (int o = e + 1; o <= E(SIGNATURE); o++) ck_assert_str_ne(t, ferry__proxy_error_text(o));
    }
    ck_assert_str_eq(ferry__proxy_error_text(0), "unknown PROXY protocol error");
    ck_assert_str_eq(ferry__proxy_error_text(E(TLV) - 1), "unknown PROXY protocol error");
    ck_assert_str_eq(ferry__proxy_error_text(E(SIGNATURE)), "not a PROXY protocol header");
}
END_TEST

/* ---- encoders ---- */

static void assert_bytes(const char *what, const char *got, size_t n, const char *want,
                         size_t want_len) {
    ck_assert_msg(n == want_len, "%s: length %zu, want %zu", what, n, want_len);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(got[i] == want[i], "%s: byte %zu is %#x, want %#x", what, i,
                      (unsigned char)got[i], (unsigned char)want[i]);
}
#define ASSERT_BYTES(what, got, n, lit) assert_bytes(what, got, n, lit, sizeof(lit) - 1)

static ferry__sockaddr literal(const char *host, uint16_t port) {
    ferry__sockaddr a;
    ck_assert_int_eq(ferry__addr_from_literal(host, port, &a), 0);
    return a;
}

START_TEST(encode_v1) {
    char out[FERRY__PROXY_ENCODE_MAX];
    ferry__sockaddr s4 = literal("192.168.0.1", 56324), d4 = literal("192.168.0.11", 443);
    ferry__sockaddr s6 = literal("2001:db8::1", 12345), d6 = literal("2001:db8::2", 8443);
    ferry__sockaddr unix_addr;
    memset(&unix_addr, 0, sizeof unix_addr);
    unix_addr.sa.sa_family = AF_UNIX;
    ASSERT_BYTES("tcp4", out, ferry__proxy_encode_v1(&s4, &d4, out, sizeof out),
                 "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n");
    ASSERT_BYTES("tcp6", out, ferry__proxy_encode_v1(&s6, &d6, out, sizeof out),
                 "PROXY TCP6 2001:db8::1 2001:db8::2 12345 8443\r\n");
    ASSERT_BYTES("mixed", out, ferry__proxy_encode_v1(&s4, &d6, out, sizeof out),
                 "PROXY TCP6 ::ffff:192.168.0.1 2001:db8::2 56324 8443\r\n");
    ASSERT_BYTES("mixed the other way", out, ferry__proxy_encode_v1(&s6, &d4, out, sizeof out),
                 "PROXY TCP6 2001:db8::1 ::ffff:192.168.0.11 12345 443\r\n");
    ASSERT_BYTES("not ip", out, ferry__proxy_encode_v1(&s4, &unix_addr, out, sizeof out),
                 "PROXY UNKNOWN\r\n");
    ASSERT_BYTES("null", out, ferry__proxy_encode_v1(NULL, &d4, out, sizeof out), "PROXY UNKNOWN\r\n");
    ASSERT_BYTES("unix", out, ferry__proxy_encode_v1(&unix_addr, &unix_addr, out, sizeof out),
                 "PROXY UNKNOWN\r\n");
    ferry__sockaddr big = literal(FFFF, 65535);
    ASSERT_BYTES("longest", out, ferry__proxy_encode_v1(&big, &big, out, 104),
                 "PROXY TCP6 " FFFF " " FFFF " 65535 65535\r\n");
    ck_assert_uint_eq(ferry__proxy_encode_v1(&big, &big, out, 103), 0);
    ck_assert_uint_eq(ferry__proxy_encode_v1(NULL, &d6, out, 14), 0);
    ck_assert_uint_eq(ferry__proxy_encode_v1(NULL, &d6, out, 15), 15);
}
END_TEST

START_TEST(encode_v2) {
    char out[FERRY__PROXY_ENCODE_MAX];
    ferry__sockaddr s4 = literal("192.168.0.1", 56324), d4 = literal("192.168.0.11", 443);
    ferry__sockaddr s6 = literal("2001:db8::1", 12345), d6 = literal("2001:db8::2", 8443);
    ASSERT_BYTES("tcp4", out, ferry__proxy_encode_v2(&s4, &d4, out, sizeof out),
                 SIG "\x21\x11\x00\x0c" V4_BLOCK);
    ASSERT_BYTES("tcp6", out, ferry__proxy_encode_v2(&s6, &d6, out, sizeof out),
                 SIG "\x21\x21\x00\x24" V6_BLOCK);
    ASSERT_BYTES("mixed", out, ferry__proxy_encode_v2(&s6, &d4, out, sizeof out),
                 SIG "\x21\x21\x00\x24"
                 "\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01"
                 "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff\xc0\xa8\x00\x0b"
                 "\x30\x39\x01\xbb");
    ASSERT_BYTES("null", out, ferry__proxy_encode_v2(&s6, NULL, out, sizeof out), SIG "\x21\x00\x00\x00");
    ASSERT_BYTES("local", out, ferry__proxy_encode_v2_local(out, sizeof out), SIG "\x20\x00\x00\x00");
    ck_assert_uint_eq(ferry__proxy_encode_v2(&s4, &d4, out, 27), 0);
    ck_assert_uint_eq(ferry__proxy_encode_v2(&s4, &d4, out, 28), 28);
    ck_assert_uint_eq(ferry__proxy_encode_v2(&s6, &d6, out, 51), 0);
    ck_assert_uint_eq(ferry__proxy_encode_v2(&s6, &d6, out, 52), 52);
    ck_assert_uint_eq(ferry__proxy_encode_v2(&s4, &d6, out, 51), 0);
    ck_assert_uint_eq(ferry__proxy_encode_v2(&s4, &d6, out, 52), 52);
    ck_assert_uint_eq(ferry__proxy_encode_v2(NULL, &d6, out, 15), 0);
    ck_assert_uint_eq(ferry__proxy_encode_v2_local(out, 15), 0);
    ck_assert_uint_eq(ferry__proxy_encode_v2_local(out, 16), 16);
}
END_TEST

/* What the encoders write, the decoder reads back, with the payload left after it. */
START_TEST(round_trips) {
    /* source, destination, and the source as it travels (mixed families: IPv4-mapped) */
    static const char *const pairs[][3] = {
        {"203.0.113.9", "10.1.2.3", NULL}, {"::1", "fe80::1:2", NULL},
        {"::ffff:1.2.3.4", FFFF, NULL}, {"0.0.0.0", "255.255.255.255", NULL},
        {"10.0.0.1", "::1", "::ffff:10.0.0.1"},
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        ferry__sockaddr src = literal(pairs[i][0], 40000), dst = literal(pairs[i][1], 0);
        ferry__sockaddr sent = pairs[i][2] ? literal(pairs[i][2], 40000) : src;
        for (int version = 1; version <= 2; version++) {
            char out[FERRY__PROXY_ENCODE_MAX + 4];
            size_t n = version == 1 ? ferry__proxy_encode_v1(&src, &dst, out, FERRY__PROXY_ENCODE_MAX)
                                    : ferry__proxy_encode_v2(&src, &dst, out, FERRY__PROXY_ENCODE_MAX);
            ck_assert_uint_gt(n, 0);
            memcpy(out + n, "data", 4);
            ferry__proxy_header h;
            ck_assert_int_eq(ferry__proxy_decode(out, n + 4, 0, &h), (int)n);
            ck_assert_uint_eq(h.version, version);
            ck_assert_uint_eq(h.command, FERRY__PROXY_PROXY);
            ck_assert_uint_eq(h.transport, FERRY__PROXY_STREAM);
            ck_assert_ptr_null(h.alpn.ptr);
            ck_assert_ptr_null(h.authority.ptr);
            char want[64], got[64];
            show_addr(&sent, want, sizeof want);
            show_addr(&h.src, got, sizeof got);
            ck_assert_str_eq(got, want);
            show_addr(&dst, want, sizeof want);
            show_addr(&h.dst, got, sizeof got);
            ck_assert_str_eq(got, want);
        }
    }
    char out[16];
    ferry__proxy_header h;
    ck_assert_int_eq(ferry__proxy_decode(out, ferry__proxy_encode_v2_local(out, sizeof out), 0, &h), 16);
    ck_assert_uint_eq(h.command, FERRY__PROXY_LOCAL);
    ck_assert_uint_eq(h.src.sa.sa_family, AF_UNSPEC);
}
END_TEST

int main(void) {
    Suite *s = suite_create("proxy_proto");
    TCase *tc = tcase_create("decoder");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, decode_golden, 0, NCASES);
    tcase_add_test(tc, foreign_first_byte);
    tcase_add_test(tc, largest_v2);
    tcase_add_test(tc, every_error_reached);
    tcase_add_test(tc, error_texts);
    suite_add_tcase(s, tc);
    TCase *enc = tcase_create("encoders");
    tcase_add_test(enc, encode_v1);
    tcase_add_test(enc, encode_v2);
    tcase_add_test(enc, round_trips);
    suite_add_tcase(s, enc);
    return run_suite(s);
}
