/* Golden tests for the HTTP/1 head parsers and the chunked decoder (lib/http1.c).
 *
 * Each table row is a raw input and the exact expected outcome. Every row is also replayed
 * incrementally: each prefix is parsed from a heap buffer that ends exactly where the
 * prefix does (so ASan catches a read past `len`), and must give "need more" or the very
 * outcome of the whole input, never success early or another error. Chunked rows are also
 * fed byte by byte and split at every position. Per-byte checks only set a failure note;
 * each row asserts once. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http1.h"
#include "testutil.h"

#define E(x) FERRY__HTTP_E_##x
#define BIN(s) .raw = s, .raw_len = sizeof(s) - 1 /* a literal that may hold NULs */

enum { LIM_DEFAULT = 0, LIM_TINY = 1 };

static ferry__http_limits limits_for(int profile) {
    ferry__http_limits l;
    ferry__http_limits_init(&l);
    if (profile == LIM_TINY) {
        l.max_line = 32;
        l.max_head = 128;
        l.max_headers = 4;
    }
    return l;
}

static const char *const error_names[] = {
#define ERROR_NAME(name, status, text) #name,
    FERRY__HTTP_ERRORS(ERROR_NAME)
#undef ERROR_NAME
};

static const char *ename(ferry__http_error e) {
    return (unsigned)e < FERRY__HTTP_E_COUNT ? error_names[e] : "?";
}

static size_t raw_size(const char *raw, size_t raw_len) { return raw_len ? raw_len : strlen(raw); }

/* "name:value|name:value", values as the parser trimmed them. */
static void render_headers(const ferry__http_msg *m, char *out, size_t cap) {
    size_t n = 0;
    out[0] = '\0';
    for (unsigned i = 0; i < m->nheaders && n < cap; i++) {
        int w = snprintf(out + n, cap - n, "%s%.*s:%.*s", i ? "|" : "",
                         (int)m->headers[i].name.len, m->headers[i].name.ptr,
                         (int)m->headers[i].value.len, m->headers[i].value.ptr);
        if (w < 0) break;
        n += (size_t)w;
    }
}

static int view_is(ferry_view v, const char *s) {
    return v.len == strlen(s) && memcmp(v.ptr, s, v.len) == 0;
}

/* ======================================================================================
 * Requests
 * ====================================================================================== */

typedef struct req_case {
    const char *name;
    const char *raw;
    size_t raw_len;         /* 0: strlen(raw) */
    ferry__http_error err;  /* NONE: must parse (or need more, with .more) */
    int more;               /* the input is a valid but incomplete head */
    size_t head;            /* expected head length; 0: the whole input */
    const char *method;     /* NULL: "GET" */
    const char *target;     /* NULL: "/" */
    int form, v10, body;
    uint64_t cl;
    unsigned flags;
    int host;               /* expected host_index (-1: none) */
    const char *headers;    /* NULL: unchecked */
    int lim;
} req_case;

#define H "Host: example.com\r\n"
#define GET11 "GET / HTTP/1.1\r\n"
#define CLOSE FERRY__HTTP_CONN_CLOSE
#define KEEP FERRY__HTTP_CONN_KEEP_ALIVE
#define UPG FERRY__HTTP_CONN_UPGRADE
#define EXPECT FERRY__HTTP_EXPECT_CONTINUE
#define LEN FERRY__BODY_LENGTH
#define CHUNKED FERRY__BODY_CHUNKED
#define UNTIL_CLOSE FERRY__BODY_UNTIL_CLOSE

/* 32 bytes: exactly the tiny max_line */
#define LINE32 "GET /aaaaaaaaaaaaaaaaaa HTTP/1.1"

static const req_case req_cases[] = {
    /* ---- valid messages ---- */
    {.name = "simple get", .raw = GET11 H "\r\n", .headers = "Host:example.com"},
    {.name = "body bytes follow", .raw = "POST / HTTP/1.1\r\n" H "Content-Length: 3\r\n\r\nabc", .head = 57,
     .method = "POST", .body = LEN, .cl = 3},
    {.name = "pipelined request follows", .raw = GET11 H "\r\n" GET11 H "\r\n", .head = 37},
    {.name = "leading crlfs skipped and counted", .raw = "\r\n\r\n" GET11 H "\r\n"},
    {.name = "http/1.0 without host", .raw = "GET / HTTP/1.0\r\n\r\n", .v10 = 1, .flags = CLOSE, .host = -1},
    {.name = "http/1.0 keep-alive", .raw = "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", .v10 = 1,
     .flags = KEEP, .host = -1},
    {.name = "http/1.0 empty host", .raw = "GET / HTTP/1.0\r\nHost:\r\n\r\n", .v10 = 1, .flags = CLOSE,
     .headers = "Host:"},
    {.name = "http/1.0 host", .raw = "GET / HTTP/1.0\r\n" H "\r\n", .v10 = 1, .flags = CLOSE},
    {.name = "content-length", .raw = "POST /f HTTP/1.1\r\n" H "Content-Length: 5\r\n\r\n", .method = "POST",
     .target = "/f", .body = LEN, .cl = 5},
    {.name = "content-length zero", .raw = "POST / HTTP/1.1\r\n" H "Content-Length: 0\r\n\r\n",
     .method = "POST", .body = LEN, .cl = 0},
    {.name = "content-length leading zeros", .raw = "PUT / HTTP/1.1\r\n" H "Content-Length: 007\r\n\r\n",
     .method = "PUT", .body = LEN, .cl = 7},
    {.name = "content-length 2^63-1", .raw = "PUT / HTTP/1.1\r\n" H "Content-Length: 9223372036854775807\r\n\r\n",
     .method = "PUT", .body = LEN, .cl = 9223372036854775807ull},
    {.name = "content-length ows", .raw = "PUT / HTTP/1.1\r\n" H "Content-Length: \t 42 \t\r\n\r\n",
     .method = "PUT", .body = LEN, .cl = 42, .headers = "Host:example.com|Content-Length:42"},
    {.name = "content-length name case", .raw = "PUT / HTTP/1.1\r\n" H "content-LENGTH: 3\r\n\r\n",
     .method = "PUT", .body = LEN, .cl = 3},
    {.name = "chunked", .raw = "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\n\r\n", .method = "POST",
     .body = CHUNKED},
    {.name = "chunked case-insensitive", .raw = "POST / HTTP/1.1\r\n" H "transfer-encoding: ChUnKeD\r\n\r\n",
     .method = "POST", .body = CHUNKED},
    {.name = "chunked ows", .raw = "POST / HTTP/1.1\r\n" H "Transfer-Encoding:   chunked  \r\n\r\n",
     .method = "POST", .body = CHUNKED},
    {.name = "chunked and close", .raw = "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
     .method = "POST", .body = CHUNKED, .flags = CLOSE},
    {.name = "connection close", .raw = GET11 H "Connection: close\r\n\r\n", .flags = CLOSE},
    {.name = "connection close case", .raw = GET11 H "Connection: CLOSE\r\n\r\n", .flags = CLOSE},
    {.name = "connection keep-alive 1.1", .raw = GET11 H "Connection: keep-alive\r\n\r\n", .flags = KEEP},
    {.name = "connection list with empties", .raw = GET11 H "Connection: , close ,\r\n\r\n", .flags = CLOSE},
    {.name = "connection close and keep-alive", .raw = GET11 H "Connection: keep-alive, close\r\n\r\n",
     .flags = CLOSE | KEEP},
    {.name = "upgrade", .raw = GET11 H "Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n", .flags = UPG},
    {.name = "upgrade header first", .raw = GET11 H "Upgrade: h2c\r\nConnection: upgrade\r\n\r\n", .flags = UPG},
    {.name = "connection upgrade without upgrade header", .raw = GET11 H "Connection: upgrade\r\n\r\n"},
    {.name = "upgrade header without connection", .raw = GET11 H "Upgrade: websocket\r\n\r\n"},
    {.name = "upgrade and keep-alive", .raw = GET11 H "Connection: keep-alive, Upgrade\r\nUpgrade: ws\r\n\r\n",
     .flags = KEEP | UPG},
    {"connection over two lines",
     GET11 H "Connection: close\r\nConnection: upgrade\r\nUpgrade: ws\r\n\r\n",
     .flags = CLOSE | UPG},
    {"upgrade ignored in 1.0",
     "GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: ws\r\n\r\n", .v10 = 1, .flags = CLOSE,
     .host = -1},
    {.name = "expect 100-continue", .raw = "PUT / HTTP/1.1\r\n" H "Expect: 100-continue\r\nContent-Length: 1\r\n\r\n",
     .method = "PUT", .body = LEN, .cl = 1, .flags = EXPECT},
    {.name = "expect case-insensitive", .raw = "PUT / HTTP/1.1\r\n" H "expect:  100-Continue \r\n\r\n",
     .method = "PUT", .flags = EXPECT},
    {.name = "expect ignored in 1.0", .raw = "PUT / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n", .method = "PUT",
     .v10 = 1, .flags = CLOSE, .host = -1},
    {.name = "expect other", .raw = GET11 H "Expect: 200-ok\r\n\r\n"},
    {.name = "value trimmed", .raw = GET11 H "X:  a b  \r\n\r\n", .headers = "Host:example.com|X:a b"},
    {.name = "empty value", .raw = GET11 H "X:\r\n\r\n", .headers = "Host:example.com|X:"},
    {.name = "whitespace-only value", .raw = GET11 H "X: \t \r\n\r\n", .headers = "Host:example.com|X:"},
    {.name = "tab inside value", .raw = GET11 H "X: a\tb\r\n\r\n", .headers = "Host:example.com|X:a\tb"},
    {.name = "obs-text value", .raw = GET11 H "X: caf\xc3\xa9\r\n\r\n", .headers = "Host:example.com|X:caf\xc3\xa9"},
    {.name = "tchar name", .raw = GET11 H "X-!#$%&'*+.^_`|~1: v\r\n\r\n",
     .headers = "Host:example.com|X-!#$%&'*+.^_`|~1:v"},
    {.name = "repeated ordinary header", .raw = GET11 H "X: 1\r\nX: 2\r\n\r\n",
     .headers = "Host:example.com|X:1|X:2"},
    {.name = "host not first", .raw = GET11 "X: 1\r\n" H "\r\n", .host = 1},
    {.name = "host name case", .raw = GET11 "HOST: example.com\r\n\r\n"},
    {.name = "origin with query", .raw = "GET /a/b?x=1&y=%20;z HTTP/1.1\r\n" H "\r\n", .target = "/a/b?x=1&y=%20;z"},
    {.name = "origin double slash", .raw = "GET //x HTTP/1.1\r\n" H "\r\n", .target = "//x"},
    {.name = "origin odd vchars", .raw = "GET /[a]{b}|\"c\"<d>^~ HTTP/1.1\r\n" H "\r\n",
     .target = "/[a]{b}|\"c\"<d>^~"},
    {.name = "absolute", .raw = "GET http://example.com/p?q HTTP/1.1\r\n" H "\r\n",
     .target = "http://example.com/p?q", .form = FERRY__TARGET_ABSOLUTE},
    {.name = "absolute with port", .raw = "GET http://example.com:8080/ HTTP/1.1\r\n" H "\r\n",
     .target = "http://example.com:8080/", .form = FERRY__TARGET_ABSOLUTE},
    {.name = "absolute without path", .raw = "GET http://example.com HTTP/1.1\r\n" H "\r\n",
     .target = "http://example.com", .form = FERRY__TARGET_ABSOLUTE},
    {.name = "absolute query without path", .raw = "GET http://example.com?x HTTP/1.1\r\n" H "\r\n",
     .target = "http://example.com?x", .form = FERRY__TARGET_ABSOLUTE},
    {.name = "absolute ipv6", .raw = "GET http://[::1]:8080/ HTTP/1.1\r\n" H "\r\n",
     .target = "http://[::1]:8080/", .form = FERRY__TARGET_ABSOLUTE},
    {.name = "absolute https", .raw = "GET HTTPS://a.example/ HTTP/1.1\r\n" H "\r\n",
     .target = "HTTPS://a.example/", .form = FERRY__TARGET_ABSOLUTE},
    {.name = "absolute scheme chars", .raw = "GET svn+ssh.x-y://a/ HTTP/1.1\r\n" H "\r\n",
     .target = "svn+ssh.x-y://a/", .form = FERRY__TARGET_ABSOLUTE},
    {.name = "connect", .raw = "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
     .method = "CONNECT", .target = "example.com:443", .form = FERRY__TARGET_AUTHORITY},
    {.name = "connect ipv6", .raw = "CONNECT [2001:db8::1]:443 HTTP/1.1\r\nHost: [2001:db8::1]:443\r\n\r\n",
     .method = "CONNECT", .target = "[2001:db8::1]:443", .form = FERRY__TARGET_AUTHORITY},
    {.name = "connect ipv4", .raw = "CONNECT 192.0.2.1:8443 HTTP/1.1\r\nHost: 192.0.2.1:8443\r\n\r\n",
     .method = "CONNECT", .target = "192.0.2.1:8443", .form = FERRY__TARGET_AUTHORITY},
    {.name = "options asterisk", .raw = "OPTIONS * HTTP/1.1\r\n" H "\r\n", .method = "OPTIONS", .target = "*",
     .form = FERRY__TARGET_ASTERISK},
    {.name = "options origin", .raw = "OPTIONS /x HTTP/1.1\r\n" H "\r\n", .method = "OPTIONS", .target = "/x"},
    {.name = "options absolute", .raw = "OPTIONS http://a/ HTTP/1.1\r\n" H "\r\n", .method = "OPTIONS",
     .target = "http://a/", .form = FERRY__TARGET_ABSOLUTE},
    {.name = "extension method", .raw = "PURGE /x HTTP/1.1\r\n" H "\r\n", .method = "PURGE", .target = "/x"},
    {.name = "tchar method", .raw = "M-SEARCH * HTTP/1.1\r\n" H "\r\n", .err = E(BAD_TARGET)},
    {.name = "tchar method origin", .raw = "M-SEARCH / HTTP/1.1\r\n" H "\r\n", .method = "M-SEARCH"},
    {.name = "lowercase connect is not connect", .raw = "connect /x HTTP/1.1\r\n" H "\r\n", .method = "connect",
     .target = "/x"},
    {.name = "host with port", .raw = GET11 "Host: example.com:8080\r\n\r\n"},
    {.name = "host ipv4", .raw = GET11 "Host: 192.0.2.1\r\n\r\n"},
    {.name = "host ipv4 port", .raw = GET11 "Host: 192.0.2.1:80\r\n\r\n"},
    {.name = "host ipv6", .raw = GET11 "Host: [2001:db8::1]:80\r\n\r\n"},
    {.name = "host ipv6 full", .raw = GET11 "Host: [1:2:3:4:5:6:7:8]\r\n\r\n"},
    {.name = "host ipv6 v4 tail", .raw = GET11 "Host: [::ffff:192.0.2.1]\r\n\r\n"},
    {.name = "host ipv6 any", .raw = GET11 "Host: [::]\r\n\r\n"},
    {.name = "host trailing dot", .raw = GET11 "Host: example.com.\r\n\r\n"},
    {.name = "host underscore tilde", .raw = GET11 "Host: a_b~c.example\r\n\r\n"},
    {.name = "host punycode", .raw = GET11 "Host: xn--bcher-kva.example\r\n\r\n"},
    {.name = "host single label", .raw = GET11 "Host: localhost\r\n\r\n"},
    {.name = "host digits then letters", .raw = GET11 "Host: 1.2.3.4.example\r\n\r\n"},
    {.name = "host label starting with digits", .raw = GET11 "Host: 123abc\r\n\r\n"},
    {.name = "tiny: four headers", .raw = GET11 "Host: a\r\nB: 1\r\nC: 2\r\nD: 3\r\n\r\n", .lim = LIM_TINY},
    {.name = "tiny: line of exactly max_line", .raw = LINE32 "\r\nHost: a\r\n\r\n", .target = "/aaaaaaaaaaaaaaaaaa",
     .lim = LIM_TINY},
    {.name = "tiny: empty lines are not the request line", .raw = "\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n" LINE32 "\r\nHost: a\r\n\r\n",
     .target = "/aaaaaaaaaaaaaaaaaa", .lim = LIM_TINY},
    {"tiny: head of exactly max_head",
     GET11 "Host: a\r\nX: 012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345\r\n\r\n",
     .lim = LIM_TINY},
    {"tiny: header lines may exceed max_line",
     GET11 "Host: a\r\nX: 0123456789012345678901234567890123456789\r\n\r\n", .lim = LIM_TINY},
    {.name = "incomplete line", .raw = "GET / HTT", .more = 1},
    {.name = "incomplete after headers", .raw = GET11 H, .more = 1},
    {.name = "incomplete final cr", .raw = GET11 H "\r", .more = 1},
    {.name = "only crlfs", .raw = "\r\n\r\n", .more = 1},
    {.name = "empty input", .raw = "", .more = 1},

    /* ---- request line ---- */
    {.name = "empty method", .raw = " / HTTP/1.1\r\n" H "\r\n", .err = E(BAD_METHOD)},
    {.name = "method separator char", .raw = "G(T / HTTP/1.1\r\n" H "\r\n", .err = E(BAD_METHOD)},
    {.name = "method then tab", .raw = "GET\t/ HTTP/1.1\r\n" H "\r\n", .err = E(BAD_METHOD)},
    {.name = "method only", .raw = "GET\r\n\r\n", .err = E(BAD_METHOD)},
    {.name = "method nul", BIN("GE\0T / HTTP/1.1\r\n" H "\r\n"), .err = E(BAD_METHOD)},
    {.name = "method non-ascii", .raw = "\x80GET / HTTP/1.1\r\n" H "\r\n", .err = E(BAD_METHOD)},
    {.name = "method with slash", .raw = "GET/ / HTTP/1.1\r\n" H "\r\n", .err = E(BAD_METHOD)},
    {.name = "double space", .raw = "GET  / HTTP/1.1\r\n" H "\r\n", .err = E(BAD_TARGET)},
    {.name = "target del", .raw = "GET /\x7f HTTP/1.1\r\n" H "\r\n", .err = E(BAD_TARGET)},
    {.name = "target non-ascii", .raw = "GET /caf\xc3\xa9 HTTP/1.1\r\n" H "\r\n", .err = E(BAD_TARGET)},
    {.name = "target tab", .raw = "GET /\t HTTP/1.1\r\n" H "\r\n", .err = E(BAD_TARGET)},
    {.name = "target nul", BIN("GET /\0 HTTP/1.1\r\n" H "\r\n"), .err = E(BAD_TARGET)},
    {.name = "target fragment", .raw = "GET /#frag HTTP/1.1\r\n" H "\r\n", .err = E(BAD_TARGET)},
    {.name = "http/0.9 style", .raw = "GET /\r\n\r\n", .err = E(BAD_TARGET)},
    {.name = "asterisk with get", .raw = "GET * HTTP/1.1\r\n" H "\r\n", .err = E(BAD_TARGET)},
    {.name = "asterisk plus", .raw = "OPTIONS *x HTTP/1.1\r\n" H "\r\n", .err = E(BAD_TARGET)},
    {.name = "authority form with get", .raw = "GET example.com:80 HTTP/1.1\r\n" H "\r\n", .err = E(BAD_TARGET)},
    {.name = "connect origin", .raw = "CONNECT / HTTP/1.1\r\n" H "\r\n", .err = E(BAD_TARGET)},
    {.name = "connect without port", .raw = "CONNECT example.com HTTP/1.1\r\n" H "\r\n", .err = E(BAD_TARGET)},
    {.name = "connect empty port", .raw = "CONNECT example.com: HTTP/1.1\r\n" H "\r\n", .err = E(BAD_TARGET)},
    {.name = "connect port too big", .raw = "CONNECT example.com:65536 HTTP/1.1\r\n" H "\r\n", .err = E(BAD_TARGET)},
    {.name = "connect absolute", .raw = "CONNECT http://a:80/ HTTP/1.1\r\n" H "\r\n", .err = E(BAD_TARGET)},
    {.name = "connect userinfo", .raw = "CONNECT u@a:80 HTTP/1.1\r\n" H "\r\n", .err = E(BAD_TARGET)},
    {.name = "absolute userinfo", .raw = "GET http://user:pw@a/ HTTP/1.1\r\n" H "\r\n", .err = E(BAD_TARGET)},
    {.name = "absolute single slash", .raw = "GET http:/a HTTP/1.1\r\n" H "\r\n", .err = E(BAD_TARGET)},
    {.name = "absolute empty host", .raw = "GET http:///x HTTP/1.1\r\n" H "\r\n", .err = E(BAD_TARGET)},
    {.name = "absolute bad scheme", .raw = "GET 1http://a/ HTTP/1.1\r\n" H "\r\n", .err = E(BAD_TARGET)},
    {.name = "absolute unclosed ipv6", .raw = "GET http://[::1/ HTTP/1.1\r\n" H "\r\n", .err = E(BAD_TARGET)},
    {.name = "absolute bad port", .raw = "GET http://a:8x/ HTTP/1.1\r\n" H "\r\n", .err = E(BAD_TARGET)},
    {.name = "absolute numeric host", .raw = "GET http://127.1/ HTTP/1.1\r\n" H "\r\n", .err = E(BAD_TARGET)},
    {.name = "urn is not absolute-form", .raw = "GET urn:x HTTP/1.1\r\n" H "\r\n", .err = E(BAD_TARGET)},
    {.name = "version garbage after", .raw = "GET / HTTP/1.1x\r\n" H "\r\n", .err = E(BAD_VERSION)},
    {.name = "version lowercase", .raw = "GET / http/1.1\r\n" H "\r\n", .err = E(BAD_VERSION)},
    {.name = "version trailing space", .raw = "GET / HTTP/1.1 \r\n" H "\r\n", .err = E(BAD_VERSION)},
    {.name = "version no dot", .raw = "GET / HTTP/11\r\n" H "\r\n", .err = E(BAD_VERSION)},
    {.name = "version short", .raw = "GET / HTTP/1.\r\n" H "\r\n", .err = E(BAD_VERSION)},
    {.name = "version two-digit minor", .raw = "GET / HTTP/1.10\r\n" H "\r\n", .err = E(BAD_VERSION)},
    {.name = "version letter", .raw = "GET / HTTP/a.1\r\n" H "\r\n", .err = E(BAD_VERSION)},
    {.name = "space in target", .raw = "GET /a b HTTP/1.1\r\n" H "\r\n", .err = E(BAD_VERSION)},
    {.name = "version missing", .raw = "GET / \r\n" H "\r\n", .err = E(BAD_VERSION)},
    {.name = "http/2.0", .raw = "GET / HTTP/2.0\r\n" H "\r\n", .err = E(VERSION_NOT_SUPPORTED)},
    {.name = "http/0.9 version", .raw = "GET / HTTP/0.9\r\n" H "\r\n", .err = E(VERSION_NOT_SUPPORTED)},
    {.name = "http/1.2", .raw = "GET / HTTP/1.2\r\n" H "\r\n", .err = E(VERSION_NOT_SUPPORTED)},
    {.name = "http/9.9", .raw = "GET / HTTP/9.9\r\n" H "\r\n", .err = E(VERSION_NOT_SUPPORTED)},

    /* ---- limits ---- */
    {.name = "tiny: line one too long", .raw = "GET /aaaaaaaaaaaaaaaaaaa HTTP/1.1\r\nHost: a\r\n\r\n",
     .err = E(LINE_TOO_LONG), .lim = LIM_TINY},
    {.name = "tiny: incomplete long line", .raw = "GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
     .err = E(LINE_TOO_LONG), .lim = LIM_TINY},
    {.name = "tiny: long method", .raw = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", .err = E(LINE_TOO_LONG),
     .lim = LIM_TINY},
    {.name = "tiny: bad byte before the limit wins", .raw = "G\x01TAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
     .err = E(BAD_METHOD), .lim = LIM_TINY},
    {"tiny: head one too large",
     GET11 "Host: a\r\nX: 0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456\r\n\r\n",
     .err = E(HEAD_TOO_LARGE), .lim = LIM_TINY},
    {"tiny: incomplete head too large",
     GET11 "Host: a\r\nX: 01234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789",
     .err = E(HEAD_TOO_LARGE), .lim = LIM_TINY},
    {.name = "tiny: endless crlfs", .raw = "\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n",
     .err = E(HEAD_TOO_LARGE), .lim = LIM_TINY},
    {.name = "tiny: five headers", .raw = GET11 "Host: a\r\nB: 1\r\nC: 2\r\nD: 3\r\nE: 4\r\n\r\n",
     .err = E(TOO_MANY_HEADERS), .lim = LIM_TINY},
    {.name = "tiny: fifth header starting", .raw = GET11 "Host: a\r\nB: 1\r\nC: 2\r\nD: 3\r\nE",
     .err = E(TOO_MANY_HEADERS), .lim = LIM_TINY},

    /* ---- line endings ---- */
    {.name = "bare cr in target", .raw = "GET /\r HTTP/1.1\r\n" H "\r\n", .err = E(BARE_CR)},
    {.name = "bare cr ends request line", .raw = "GET / HTTP/1.1\rHost: a\r\n\r\n", .err = E(BARE_CR)},
    {.name = "bare cr leading", .raw = "\rGET / HTTP/1.1\r\n" H "\r\n", .err = E(BARE_CR)},
    {.name = "bare cr in value", .raw = GET11 "X: a\rb\r\n" H "\r\n", .err = E(BARE_CR)},
    {.name = "bare cr before crlf", .raw = GET11 H "X: a\r\r\n\r\n", .err = E(BARE_CR)},
    {.name = "bare cr in name", .raw = GET11 "X\r: a\r\n" H "\r\n", .err = E(BARE_CR)},
    {.name = "bare cr final line", .raw = GET11 H "\rX", .err = E(BARE_CR)},
    {.name = "bare lf everywhere", .raw = "GET / HTTP/1.1\nHost: a\n\n", .err = E(BARE_LF)},
    {.name = "bare lf leading", .raw = "\nGET / HTTP/1.1\r\n" H "\r\n", .err = E(BARE_LF)},
    {.name = "bare lf after header", .raw = GET11 "Host: a\n\r\n", .err = E(BARE_LF)},
    {.name = "bare lf final line", .raw = GET11 H "\n", .err = E(BARE_LF)},
    {.name = "bare lf in value", .raw = GET11 "X: a\nb\r\n" H "\r\n", .err = E(BARE_LF)},
    {.name = "bare lf in method", .raw = "GET\n", .err = E(BARE_LF)},
    {.name = "bare lf in name", .raw = GET11 "X\n" H "\r\n", .err = E(BARE_LF)},

    /* ---- field syntax ---- */
    {.name = "empty name", .raw = GET11 ": a\r\n" H "\r\n", .err = E(BAD_HEADER_NAME)},
    {.name = "name with paren", .raw = GET11 "X(: a\r\n" H "\r\n", .err = E(BAD_HEADER_NAME)},
    {.name = "name with nul", BIN(GET11 "X\0: a\r\n" H "\r\n"), .err = E(BAD_HEADER_NAME)},
    {.name = "name with del", .raw = GET11 "X\x7f: a\r\n" H "\r\n", .err = E(BAD_HEADER_NAME)},
    {.name = "name without colon", .raw = GET11 "Foo\r\n" H "\r\n", .err = E(BAD_HEADER_NAME)},
    {.name = "name with space inside", .raw = GET11 "X y: a\r\n" H "\r\n", .err = E(BAD_HEADER_NAME)},
    {.name = "name non-ascii", .raw = GET11 "\x80X: a\r\n" H "\r\n", .err = E(BAD_HEADER_NAME)},
    {.name = "name with at", .raw = GET11 "X@: y\r\n" H "\r\n", .err = E(BAD_HEADER_NAME)},
    {.name = "name with braces", .raw = GET11 "{X}: y\r\n" H "\r\n", .err = E(BAD_HEADER_NAME)},
    {.name = "space before colon", .raw = GET11 "Host : example.com\r\n\r\n", .err = E(WS_BEFORE_COLON)},
    {.name = "tab before colon", .raw = GET11 "X\t: a\r\n" H "\r\n", .err = E(WS_BEFORE_COLON)},
    {.name = "spaces before colon", .raw = GET11 "Transfer-Encoding  : chunked\r\n" H "\r\n",
     .err = E(WS_BEFORE_COLON)},
    {.name = "obs-fold space", .raw = GET11 H "X: a\r\n b\r\n\r\n", .err = E(OBS_FOLD)},
    {.name = "obs-fold tab", .raw = GET11 H "X: a\r\n\tb\r\n\r\n", .err = E(OBS_FOLD)},
    {.name = "whitespace before first field", .raw = GET11 " Host: a\r\n\r\n", .err = E(OBS_FOLD)},
    {.name = "value nul", BIN(GET11 H "X: a\0b\r\n\r\n"), .err = E(BAD_HEADER_VALUE)},
    {.name = "value soh", .raw = GET11 H "X: \x01\r\n\r\n", .err = E(BAD_HEADER_VALUE)},
    {.name = "value del", .raw = GET11 H "X: a\x7f\r\n\r\n", .err = E(BAD_HEADER_VALUE)},
    {.name = "value escape", .raw = GET11 H "X: \x1b[31m\r\n\r\n", .err = E(BAD_HEADER_VALUE)},
    {.name = "value vertical tab", .raw = GET11 H "X: a\x0b\r\n\r\n", .err = E(BAD_HEADER_VALUE)},
    {.name = "value form feed", .raw = GET11 H "X: \x0c" "a\r\n\r\n", .err = E(BAD_HEADER_VALUE)},

    /* ---- framing ---- */
    {.name = "cl then te", .raw = "POST / HTTP/1.1\r\n" H "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
     .err = E(CL_AND_TE)},
    {.name = "te then cl", .raw = "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
     .err = E(CL_AND_TE)},
    {.name = "cl zero and te", .raw = "POST / HTTP/1.1\r\n" H "Content-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n",
     .err = E(CL_AND_TE)},
    {.name = "duplicate cl equal", .raw = "POST / HTTP/1.1\r\n" H "Content-Length: 5\r\nContent-Length: 5\r\n\r\n",
     .err = E(DUPLICATE_CL)},
    {.name = "duplicate cl different", .raw = "POST / HTTP/1.1\r\n" H "Content-Length: 5\r\ncontent-length: 6\r\n\r\n",
     .err = E(DUPLICATE_CL)},
    {.name = "cl negative", .raw = "POST / HTTP/1.1\r\n" H "Content-Length: -5\r\n\r\n", .err = E(BAD_CL)},
    {.name = "cl plus", .raw = "POST / HTTP/1.1\r\n" H "Content-Length: +5\r\n\r\n", .err = E(BAD_CL)},
    {.name = "cl empty", .raw = "POST / HTTP/1.1\r\n" H "Content-Length:\r\n\r\n", .err = E(BAD_CL)},
    {.name = "cl blank", .raw = "POST / HTTP/1.1\r\n" H "Content-Length:   \r\n\r\n", .err = E(BAD_CL)},
    {.name = "cl trailing letter", .raw = "POST / HTTP/1.1\r\n" H "Content-Length: 5a\r\n\r\n", .err = E(BAD_CL)},
    {.name = "cl hex", .raw = "POST / HTTP/1.1\r\n" H "Content-Length: 0x5\r\n\r\n", .err = E(BAD_CL)},
    {.name = "cl inner space", .raw = "POST / HTTP/1.1\r\n" H "Content-Length: 5 5\r\n\r\n", .err = E(BAD_CL)},
    {.name = "cl list", .raw = "POST / HTTP/1.1\r\n" H "Content-Length: 5,5\r\n\r\n", .err = E(BAD_CL)},
    {.name = "cl decimal point", .raw = "POST / HTTP/1.1\r\n" H "Content-Length: 1.0\r\n\r\n", .err = E(BAD_CL)},
    {.name = "cl 2^63", .raw = "POST / HTTP/1.1\r\n" H "Content-Length: 9223372036854775808\r\n\r\n",
     .err = E(BAD_CL)},
    {.name = "cl 2^64", .raw = "POST / HTTP/1.1\r\n" H "Content-Length: 18446744073709551616\r\n\r\n",
     .err = E(BAD_CL)},
    {.name = "cl huge", .raw = "POST / HTTP/1.1\r\n" H "Content-Length: 999999999999999999999999999999\r\n\r\n",
     .err = E(BAD_CL)},
    {.name = "cl arabic digit", .raw = "POST / HTTP/1.1\r\n" H "Content-Length: \xd9\xa3\r\n\r\n", .err = E(BAD_CL)},
    {.name = "te trailing comma", .raw = "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked,\r\n\r\n", .err = E(BAD_TE)},
    {.name = "te leading comma", .raw = "POST / HTTP/1.1\r\n" H "Transfer-Encoding: ,chunked\r\n\r\n", .err = E(BAD_TE)},
    {.name = "te space separated", .raw = "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked chunked\r\n\r\n",
     .err = E(BAD_TE)},
    {.name = "te empty", .raw = "POST / HTTP/1.1\r\n" H "Transfer-Encoding:\r\n\r\n", .err = E(BAD_TE)},
    {.name = "te chunked twice", .raw = "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked, chunked\r\n\r\n",
     .err = E(BAD_TE)},
    {"te chunked on two lines",
     "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
     .err = E(BAD_TE)},
    {.name = "te with parameter", .raw = "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked;q=1\r\n\r\n",
     .err = E(BAD_TE)},
    {.name = "te quoted", .raw = "POST / HTTP/1.1\r\n" H "Transfer-Encoding: \"chunked\"\r\n\r\n", .err = E(BAD_TE)},
    {.name = "te obs-text", .raw = "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked\xff\r\n\r\n", .err = E(BAD_TE)},
    {.name = "te in http/1.0", .raw = "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", .err = E(BAD_TE)},
    {.name = "te in http/1.0 with cl", .raw = "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
     .err = E(BAD_TE)},
    {.name = "te gzip", .raw = "POST / HTTP/1.1\r\n" H "Transfer-Encoding: gzip\r\n\r\n", .err = E(TE_NOT_CHUNKED)},
    {.name = "te chunked then gzip", .raw = "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked, gzip\r\n\r\n",
     .err = E(TE_NOT_CHUNKED)},
    {.name = "te gzip then chunked", .raw = "POST / HTTP/1.1\r\n" H "Transfer-Encoding: gzip, chunked\r\n\r\n",
     .err = E(TE_NOT_CHUNKED)},
    {.name = "te identity", .raw = "POST / HTTP/1.1\r\n" H "Transfer-Encoding: identity\r\n\r\n",
     .err = E(TE_NOT_CHUNKED)},
    {.name = "te split over lines", .raw = "POST / HTTP/1.1\r\n" H "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
     .err = E(TE_NOT_CHUNKED)},

    /* ---- Host ---- */
    {.name = "missing host", .raw = GET11 "\r\n", .err = E(MISSING_HOST)},
    {.name = "missing host with fields", .raw = GET11 "Accept: */*\r\nX-Host: a\r\n\r\n", .err = E(MISSING_HOST)},
    {.name = "two hosts", .raw = GET11 H "Host: other.example\r\n\r\n", .err = E(MULTIPLE_HOST)},
    {.name = "two equal hosts", .raw = GET11 H H "\r\n", .err = E(MULTIPLE_HOST)},
    {.name = "two hosts in 1.0", .raw = "GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n", .err = E(MULTIPLE_HOST)},
    {.name = "empty host in 1.1", .raw = GET11 "Host:\r\n\r\n", .err = E(BAD_HOST)},
    {.name = "blank host in 1.1", .raw = GET11 "Host:   \r\n\r\n", .err = E(BAD_HOST)},
    {.name = "host with space", .raw = GET11 "Host: a b\r\n\r\n", .err = E(BAD_HOST)},
    {.name = "host with userinfo", .raw = GET11 "Host: u@a\r\n\r\n", .err = E(BAD_HOST)},
    {.name = "host empty port", .raw = GET11 "Host: a:\r\n\r\n", .err = E(BAD_HOST)},
    {.name = "host port too big", .raw = GET11 "Host: a:99999\r\n\r\n", .err = E(BAD_HOST)},
    {.name = "host port six digits", .raw = GET11 "Host: a:000080\r\n\r\n", .err = E(BAD_HOST)},
    {.name = "host port letter", .raw = GET11 "Host: a:8x\r\n\r\n", .err = E(BAD_HOST)},
    {.name = "host two ports", .raw = GET11 "Host: a:80:80\r\n\r\n", .err = E(BAD_HOST)},
    {.name = "host port only", .raw = GET11 "Host: :80\r\n\r\n", .err = E(BAD_HOST)},
    {.name = "host with path", .raw = GET11 "Host: a/b\r\n\r\n", .err = E(BAD_HOST)},
    {.name = "host percent", .raw = GET11 "Host: a%2eb\r\n\r\n", .err = E(BAD_HOST)},
    {.name = "host unclosed ipv6", .raw = GET11 "Host: [::1\r\n\r\n", .err = E(BAD_HOST)},
    {.name = "host bad ipv6 digit", .raw = GET11 "Host: [::g]\r\n\r\n", .err = E(BAD_HOST)},
    {.name = "host short ipv6", .raw = GET11 "Host: [1:2]\r\n\r\n", .err = E(BAD_HOST)},
    {.name = "host ipv6 nine groups", .raw = GET11 "Host: [1:2:3:4:5:6:7:8:9]\r\n\r\n", .err = E(BAD_HOST)},
    {.name = "host ipv6 two elisions", .raw = GET11 "Host: [1::2::3]\r\n\r\n", .err = E(BAD_HOST)},
    {.name = "host ipv6 five hex digits", .raw = GET11 "Host: [12345::]\r\n\r\n", .err = E(BAD_HOST)},
    {.name = "host ipv6 zone", .raw = GET11 "Host: [fe80::1%25eth0]\r\n\r\n", .err = E(BAD_HOST)},
    {.name = "host ipvfuture", .raw = GET11 "Host: [v1.x]\r\n\r\n", .err = E(BAD_HOST)},
    {.name = "host bare ipv6", .raw = GET11 "Host: ::1\r\n\r\n", .err = E(BAD_HOST)},
    {.name = "host ipv6 junk after bracket", .raw = GET11 "Host: [::1]x\r\n\r\n", .err = E(BAD_HOST)},
    {.name = "host ipv4 octet too big", .raw = GET11 "Host: 1.2.3.256\r\n\r\n", .err = E(BAD_HOST)},
    {.name = "host ipv4 leading zero", .raw = GET11 "Host: 1.2.3.04\r\n\r\n", .err = E(BAD_HOST)},
    {.name = "host short ipv4", .raw = GET11 "Host: 127.1\r\n\r\n", .err = E(BAD_HOST)},
    {.name = "host hex ipv4", .raw = GET11 "Host: 0x7f.0.0.1\r\n\r\n", .err = E(BAD_HOST)},
    {.name = "host integer ipv4", .raw = GET11 "Host: 2130706433\r\n\r\n", .err = E(BAD_HOST)},
    {.name = "host numeric last label", .raw = GET11 "Host: example.123\r\n\r\n", .err = E(BAD_HOST)},
    {.name = "host ipv4 trailing dot", .raw = GET11 "Host: 1.2.3.4.\r\n\r\n", .err = E(BAD_HOST)},
};

static const char *check_request_fields(const req_case *tc, const ferry__http_msg *m) {
    static char why[2200];
    char hdrs[1024];
    if (!view_is(m->method, tc->method ? tc->method : "GET")) return "method";
    if (!view_is(m->target, tc->target ? tc->target : "/")) return "target";
    if (m->target_form != tc->form) return "target_form";
    if (m->version_minor != (tc->v10 ? 0 : 1)) return "version_minor";
    if (m->body != tc->body) return "body";
    if ((m->body == LEN || tc->cl) && m->content_length != tc->cl) return "content_length";
    if (m->flags != tc->flags) {
        snprintf(why, sizeof why, "flags %#x, want %#x", m->flags, tc->flags);
        return why;
    }
    if (m->host_index != tc->host) {
        snprintf(why, sizeof why, "host_index %d, want %d", m->host_index, tc->host);
        return why;
    }
    if (m->host_index >= 0 && !ferry__view_ieq(m->headers[m->host_index].name, "host"))
        return "host_index names no Host";
    if (tc->headers) {
        render_headers(m, hdrs, sizeof hdrs);
        if (strcmp(hdrs, tc->headers) != 0) {
            snprintf(why, sizeof why, "headers [%s], want [%s]", hdrs, tc->headers);
            return why;
        }
    }
    return NULL;
}

/* Parse every prefix of raw from a buffer that ends where the prefix does. `want` and
 * `want_err` are the whole input's outcome. Returns a failure note or NULL. */
static const char *check_request_prefixes(const char *raw, size_t n, const ferry__http_limits *l,
                                          int want, ferry__http_error want_err) {
    static char why[256];
    char *buf = malloc(n ? n : 1);
    ferry_http_header hdrs[128];
    ferry__http_msg m = {.headers = hdrs};
    const char *fail = NULL;
    int seen = 0;
    for (size_t k = 0; k < n && !fail; k++) {
        char *p = buf + n - k;
        memcpy(p, raw, k);
        ferry__http_error err = E(NONE);
        int r = ferry__http_parse_request(p, k, l, &m, &err);
        int ok = want > 0 ? r == ((size_t)want <= k ? want : 0)
                          : r == 0 ? !seen : r == -1 && err == want_err;
        seen |= r != 0;
        if (!ok) {
            snprintf(why, sizeof why, "prefix %zu: got %d %s", k, r, ename(err));
            fail = why;
        }
    }
    free(buf);
    return fail;
}

START_TEST(request_golden) {
    const req_case *tc = &req_cases[_i];
    size_t n = raw_size(tc->raw, tc->raw_len);
    ferry__http_limits l = limits_for(tc->lim);
    ferry_http_header hdrs[128];
    ferry__http_msg m = {.headers = hdrs};
    ferry__http_error err = E(NONE);
    char *buf = malloc(n ? n : 1);
    memcpy(buf, tc->raw, n);
    int r = ferry__http_parse_request(buf, n, &l, &m, &err);
    int want = tc->err != E(NONE) ? -1 : tc->more ? 0 : (int)(tc->head ? tc->head : n);
    ck_assert_msg(r == want && err == tc->err, "[%s] got %d %s, want %d %s", tc->name, r,
                  ename(err), want, ename(tc->err));
    if (want > 0) {
        const char *bad = check_request_fields(tc, &m);
        ck_assert_msg(bad == NULL, "[%s] %s", tc->name, bad);
    }
    const char *bad = check_request_prefixes(buf, n, &l, want, tc->err);
    ck_assert_msg(bad == NULL, "[%s] %s", tc->name, bad);
    free(buf);
}
END_TEST

/* ======================================================================================
 * Responses
 * ====================================================================================== */

typedef struct resp_case {
    const char *name;
    const char *raw;
    size_t raw_len;
    const char *method; /* of the request; NULL: "GET" */
    ferry__http_error err;
    int more;
    size_t head;
    int status;
    const char *reason; /* NULL: unchecked */
    int v10, body;
    uint64_t cl;
    unsigned flags;
    const char *headers;
    int lim;
} resp_case;

static const resp_case resp_cases[] = {
    {.name = "content-length", .raw = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", .head = 38,
     .status = 200, .reason = "OK", .body = LEN, .cl = 5, .headers = "Content-Length:5"},
    {.name = "chunked", .raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", .status = 200,
     .body = CHUNKED},
    {.name = "until close", .raw = "HTTP/1.1 200 OK\r\nServer: x\r\n\r\n", .status = 200, .body = UNTIL_CLOSE},
    {.name = "no fields", .raw = "HTTP/1.1 200 OK\r\n\r\n", .status = 200, .body = UNTIL_CLOSE},
    {.name = "204", .raw = "HTTP/1.1 204 No Content\r\n\r\n", .status = 204, .reason = "No Content"},
    {.name = "304 keeps its length", .raw = "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
     .status = 304, .cl = 10},
    {.name = "head response", .raw = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", .method = "HEAD",
     .status = 200, .cl = 100},
    {.name = "head response chunked", .raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
     .method = "HEAD", .status = 200},
    {.name = "head response 404", .raw = "HTTP/1.1 404 Not Found\r\n\r\n", .method = "HEAD", .status = 404},
    {.name = "100 continue", .raw = "HTTP/1.1 100 Continue\r\n\r\n", .status = 100, .reason = "Continue"},
    {.name = "100 with length ignored", .raw = "HTTP/1.1 100 Continue\r\nContent-Length: 5\r\n\r\n",
     .status = 100, .cl = 5},
    {"101 upgrade",
     "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
     .status = 101, .flags = UPG},
    {.name = "103 early hints", .raw = "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n",
     .status = 103},
    {.name = "199", .raw = "HTTP/1.1 199 X\r\n\r\n", .status = 199},
    {.name = "connect 200", .raw = "HTTP/1.1 200 Connection established\r\n\r\n", .method = "CONNECT",
     .status = 200, .reason = "Connection established"},
    {"connect 200 ignores framing",
     "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
     .method = "CONNECT", .status = 200},
    {.name = "connect 200 ignores bad length", .raw = "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
     .method = "CONNECT", .status = 200},
    {.name = "connect 299", .raw = "HTTP/1.1 299 X\r\n\r\n", .method = "CONNECT", .status = 299},
    {.name = "connect 407 has a body", .raw = "HTTP/1.1 407 Proxy Auth\r\nContent-Length: 4\r\n\r\n",
     .method = "CONNECT", .status = 407, .body = LEN, .cl = 4},
    {.name = "connect 300", .raw = "HTTP/1.1 300 X\r\n\r\n", .method = "CONNECT", .status = 300,
     .body = UNTIL_CLOSE},
    {.name = "missing reason and space", .raw = "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", .status = 200,
     .reason = "", .body = LEN},
    {.name = "empty reason", .raw = "HTTP/1.1 200 \r\n\r\n", .status = 200, .reason = "", .body = UNTIL_CLOSE},
    {.name = "reason with spaces and tab", .raw = "HTTP/1.1 404 Not  Found\t!\r\n\r\n", .status = 404,
     .reason = "Not  Found\t!", .body = UNTIL_CLOSE},
    {.name = "reason obs-text", .raw = "HTTP/1.1 200 \xc3\x9c" "ber\r\n\r\n", .status = 200,
     .reason = "\xc3\x9c" "ber", .body = UNTIL_CLOSE},
    {.name = "http/1.0", .raw = "HTTP/1.0 200 OK\r\n\r\n", .status = 200, .v10 = 1, .body = UNTIL_CLOSE,
     .flags = CLOSE},
    {.name = "http/1.0 keep-alive", .raw = "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n",
     .status = 200, .v10 = 1, .body = LEN, .cl = 2, .flags = KEEP},
    {.name = "te gzip until close", .raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", .status = 200,
     .body = UNTIL_CLOSE},
    {.name = "te chunked then gzip until close", .raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
     .status = 200, .body = UNTIL_CLOSE},
    {.name = "te gzip then chunked", .raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
     .status = 200, .body = CHUNKED},
    {.name = "te over two lines", .raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
     .status = 200, .body = CHUNKED},
    {.name = "connection close", .raw = "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
     .status = 200, .body = LEN, .flags = CLOSE},
    {.name = "status 999", .raw = "HTTP/1.1 999 Odd\r\n\r\n", .status = 999, .body = UNTIL_CLOSE},
    {.name = "status 600", .raw = "HTTP/1.1 600 X\r\n\r\n", .status = 600, .body = UNTIL_CLOSE},
    {.name = "values trimmed", .raw = "HTTP/1.1 200 OK\r\nX:  a  \r\nY:\r\n\r\n", .status = 200,
     .body = UNTIL_CLOSE, .headers = "X:a|Y:"},
    {.name = "hosts are not checked", .raw = "HTTP/1.1 200 OK\r\nHost: a\r\nHost: b b\r\n\r\n", .status = 200,
     .body = UNTIL_CLOSE},
    {.name = "expect is not a response flag", .raw = "HTTP/1.1 200 OK\r\nExpect: 100-continue\r\n\r\n",
     .status = 200, .body = UNTIL_CLOSE},
    {.name = "upgrade without 101", .raw = "HTTP/1.1 200 OK\r\nConnection: upgrade\r\nUpgrade: x\r\nContent-Length: 0\r\n\r\n",
     .status = 200, .body = LEN, .flags = UPG},
    {.name = "tiny: four fields", .raw = "HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n",
     .status = 200, .body = UNTIL_CLOSE, .lim = LIM_TINY},
    {.name = "incomplete", .raw = "HTTP/1.1 200 OK\r\nContent-Le", .more = 1},
    {.name = "incomplete status", .raw = "HTTP/1.1 20", .more = 1},

    {.name = "two-digit status", .raw = "HTTP/1.1 20 OK\r\n\r\n", .err = E(BAD_STATUS)},
    {.name = "four-digit status", .raw = "HTTP/1.1 2000 OK\r\n\r\n", .err = E(BAD_STATUS)},
    {.name = "status below 100", .raw = "HTTP/1.1 099 X\r\n\r\n", .err = E(BAD_STATUS)},
    {.name = "status letters", .raw = "HTTP/1.1 abc X\r\n\r\n", .err = E(BAD_STATUS)},
    {.name = "double space", .raw = "HTTP/1.1  200 OK\r\n\r\n", .err = E(BAD_STATUS)},
    {.name = "http/2 short", .raw = "HTTP/2 200\r\n\r\n", .err = E(BAD_STATUS)},
    {.name = "http/2.0", .raw = "HTTP/2.0 200 OK\r\n\r\n", .err = E(BAD_STATUS)},
    {.name = "http/1.2", .raw = "HTTP/1.2 200 OK\r\n\r\n", .err = E(BAD_STATUS)},
    {.name = "lowercase protocol", .raw = "http/1.1 200 OK\r\n\r\n", .err = E(BAD_STATUS)},
    {.name = "ctl in reason", .raw = "HTTP/1.1 200 O\x01K\r\n\r\n", .err = E(BAD_STATUS)},
    {.name = "no status", .raw = "HTTP/1.1\r\n\r\n", .err = E(BAD_STATUS)},
    {.name = "icy", .raw = "ICY 200 OK\r\n\r\n", .err = E(BAD_STATUS)},
    {.name = "leading crlf", .raw = "\r\nHTTP/1.1 200 OK\r\n\r\n", .err = E(BAD_STATUS)},
    {.name = "http/0.9 body", .raw = "<html>", .err = E(BAD_STATUS)},
    {.name = "tiny: status line too long", .raw = "HTTP/1.1 200 OKOKOKOKOKOKOKOKOKOKOK\r\n\r\n",
     .err = E(BAD_STATUS), .lim = LIM_TINY},
    {.name = "bare lf", .raw = "HTTP/1.1 200 OK\n\n", .err = E(BARE_LF)},
    {.name = "bare lf after status", .raw = "HTTP/1.1 200\n\n", .err = E(BARE_LF)},
    {.name = "bare cr", .raw = "HTTP/1.1 200 OK\r\r\n\r\n", .err = E(BARE_CR)},
    {.name = "cl and te", .raw = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
     .err = E(CL_AND_TE)},
    {.name = "cl and te on 204", .raw = "HTTP/1.1 204 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n",
     .err = E(CL_AND_TE)},
    {.name = "cl and non-chunked te", .raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\n",
     .err = E(CL_AND_TE)},
    {.name = "duplicate cl", .raw = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
     .err = E(DUPLICATE_CL)},
    {.name = "bad cl", .raw = "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", .err = E(BAD_CL)},
    {.name = "bad cl on head response", .raw = "HTTP/1.1 200 OK\r\nContent-Length: 1e3\r\n\r\n",
     .method = "HEAD", .err = E(BAD_CL)},
    {.name = "bad te", .raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", .err = E(BAD_TE)},
    {.name = "te empty element", .raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip,,chunked\r\n\r\n",
     .err = E(BAD_TE)},
    {.name = "te in http/1.0", .raw = "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", .err = E(BAD_TE)},
    {.name = "obs-fold", .raw = "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", .err = E(OBS_FOLD)},
    {.name = "ws before colon", .raw = "HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\n", .err = E(WS_BEFORE_COLON)},
    {.name = "bad name", .raw = "HTTP/1.1 200 OK\r\nX[]: a\r\n\r\n", .err = E(BAD_HEADER_NAME)},
    {.name = "bad value", BIN("HTTP/1.1 200 OK\r\nX: \0\r\n\r\n"), .err = E(BAD_HEADER_VALUE)},
    {.name = "tiny: five fields", .raw = "HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n",
     .err = E(TOO_MANY_HEADERS), .lim = LIM_TINY},
    {"tiny: head too large",
     "HTTP/1.1 200 OK\r\nX: 01234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789\r\n\r\n",
     .err = E(HEAD_TOO_LARGE), .lim = LIM_TINY},
};

static const char *check_response_fields(const resp_case *tc, const ferry__http_msg *m) {
    static char why[2200];
    char hdrs[1024];
    if (m->status != tc->status) {
        snprintf(why, sizeof why, "status %d, want %d", m->status, tc->status);
        return why;
    }
    if (tc->reason && !view_is(m->reason, tc->reason)) return "reason";
    if (m->version_minor != (tc->v10 ? 0 : 1)) return "version_minor";
    if (m->body != tc->body) {
        snprintf(why, sizeof why, "body %d, want %d", m->body, tc->body);
        return why;
    }
    if ((m->body == LEN || tc->cl) && m->content_length != tc->cl) return "content_length";
    if (m->flags != tc->flags) {
        snprintf(why, sizeof why, "flags %#x, want %#x", m->flags, tc->flags);
        return why;
    }
    if (m->host_index != -1) return "host_index";
    if (tc->headers) {
        render_headers(m, hdrs, sizeof hdrs);
        if (strcmp(hdrs, tc->headers) != 0) {
            snprintf(why, sizeof why, "headers [%s], want [%s]", hdrs, tc->headers);
            return why;
        }
    }
    return NULL;
}

static const char *check_response_prefixes(const char *raw, size_t n, const ferry__http_limits *l,
                                           ferry_view method, int want, ferry__http_error want_err) {
    static char why[256];
    char *buf = malloc(n ? n : 1);
    ferry_http_header hdrs[128];
    ferry__http_msg m = {.headers = hdrs};
    const char *fail = NULL;
    int seen = 0;
    for (size_t k = 0; k < n && !fail; k++) {
        char *p = buf + n - k;
        memcpy(p, raw, k);
        ferry__http_error err = E(NONE);
        int r = ferry__http_parse_response(p, k, l, method, &m, &err);
        int ok = want > 0 ? r == ((size_t)want <= k ? want : 0)
                          : r == 0 ? !seen : r == -1 && err == want_err;
        seen |= r != 0;
        if (!ok) {
            snprintf(why, sizeof why, "prefix %zu: got %d %s", k, r, ename(err));
            fail = why;
        }
    }
    free(buf);
    return fail;
}

START_TEST(response_golden) {
    const resp_case *tc = &resp_cases[_i];
    size_t n = raw_size(tc->raw, tc->raw_len);
    ferry__http_limits l = limits_for(tc->lim);
    const char *method = tc->method ? tc->method : "GET";
    ferry_view mv = {method, strlen(method)};
    ferry_http_header hdrs[128];
    ferry__http_msg m = {.headers = hdrs};
    ferry__http_error err = E(NONE);
    char *buf = malloc(n ? n : 1);
    memcpy(buf, tc->raw, n);
    int r = ferry__http_parse_response(buf, n, &l, mv, &m, &err);
    int want = tc->err != E(NONE) ? -1 : tc->more ? 0 : (int)(tc->head ? tc->head : n);
    ck_assert_msg(r == want && err == tc->err, "[%s] got %d %s, want %d %s", tc->name, r,
                  ename(err), want, ename(tc->err));
    if (want > 0) {
        const char *bad = check_response_fields(tc, &m);
        ck_assert_msg(bad == NULL, "[%s] %s", tc->name, bad);
    }
    const char *bad = check_response_prefixes(buf, n, &l, mv, want, tc->err);
    ck_assert_msg(bad == NULL, "[%s] %s", tc->name, bad);
    free(buf);
}
END_TEST

/* ======================================================================================
 * Chunked
 * ====================================================================================== */

typedef struct chunk_case {
    const char *name;
    const char *raw;
    size_t raw_len;
    ferry__http_error err; /* NONE: must finish (or need more, with .more) */
    int more;
    const char *body;      /* decoded data (before DONE, NEED_MORE or the error) */
    size_t body_len;       /* 0: strlen(body) */
    size_t done_at;        /* where DONE is reported; 0: the whole input */
    size_t max_line, max_trailer; /* 0: defaults */
} chunk_case;

#define CBODY(s) .body = s, .body_len = sizeof(s) - 1

static const chunk_case chunk_cases[] = {
    {.name = "one chunk", .raw = "5\r\nhello\r\n0\r\n\r\n", .body = "hello"},
    {.name = "two chunks", .raw = "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", .body = "hello world"},
    {.name = "uppercase hex", .raw = "A\r\n0123456789\r\n0\r\n\r\n", .body = "0123456789"},
    {.name = "lowercase hex", .raw = "a\r\n0123456789\r\n0\r\n\r\n", .body = "0123456789"},
    {.name = "two hex digits", .raw = "1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n",
     .body = "abcdefghijklmnopqrstuvwxyz"},
    {.name = "leading zeros", .raw = "0005\r\nhello\r\n0\r\n\r\n", .body = "hello"},
    {.name = "sixteen digits", .raw = "0000000000000005\r\nhello\r\n0\r\n\r\n", .body = "hello"},
    {.name = "empty body", .raw = "0\r\n\r\n", .body = ""},
    {.name = "zero with zeros", .raw = "000\r\n\r\n", .body = ""},
    {.name = "extension", .raw = "5;name=value\r\nhello\r\n0\r\n\r\n", .body = "hello"},
    {.name = "extension without value", .raw = "5;flag\r\nhello\r\n0\r\n\r\n", .body = "hello"},
    {.name = "several extensions", .raw = "5;a=1;b;c=\"q\"\r\nhello\r\n0\r\n\r\n", .body = "hello"},
    {.name = "quoted extension with escapes", .raw = "5;a=\"x\\\"y\\\\\"\r\nhello\r\n0\r\n\r\n", .body = "hello"},
    {.name = "quoted extension with tab and obs-text", .raw = "5;a=\"\t \xff;=\"\r\nhello\r\n0\r\n\r\n",
     .body = "hello"},
    {.name = "extension bws", .raw = "5 ; a = b ;c\t=\t\"d\"\r\nhello\r\n0\r\n\r\n", .body = "hello"},
    {.name = "extension tchar value", .raw = "5;a=!#$%&'*+-.^_`|~\r\nhello\r\n0\r\n\r\n", .body = "hello"},
    {.name = "last chunk extension", .raw = "0;x=y\r\n\r\n", .body = ""},
    {.name = "trailer", .raw = "0\r\nX-Sum: abc\r\n\r\n", .body = ""},
    {.name = "trailers", .raw = "3\r\nabc\r\n0\r\nA: 1\r\nB:\r\nC:  x y \r\n\r\n", .body = "abc"},
    {.name = "trailer obs-text", .raw = "0\r\nX: \xc3\xa9\r\n\r\n", .body = ""},
    {.name = "data holding crlfs", .raw = "4\r\n\r\n\r\n\r\n0\r\n\r\n", .body = "\r\n\r\n"},
    {.name = "binary data", BIN("3\r\n\0\n\r\r\n0\r\n\r\n"), CBODY("\0\n\r")},
    {.name = "next message follows", .raw = "1\r\nx\r\n0\r\n\r\nGET / HTTP/1.1\r\n", .body = "x", .done_at = 11},
    {.name = "line of exactly max_line", .raw = "5;aaaaaa\r\nhello\r\n0\r\n\r\n", .body = "hello", .max_line = 8},
    {.name = "trailer of exactly max_trailer", .raw = "0\r\nX: 1234\r\n\r\n", .body = "", .max_trailer = 9},
    {.name = "incomplete data", .raw = "5\r\nhel", .more = 1, .body = "hel"},
    {.name = "incomplete size", .raw = "5", .more = 1, .body = ""},
    {.name = "incomplete after data", .raw = "5\r\nhello\r", .more = 1, .body = "hello"},
    {.name = "incomplete in trailer", .raw = "0\r\nX: a", .more = 1, .body = ""},
    {.name = "incomplete final lf", .raw = "0\r\n\r", .more = 1, .body = ""},
    {.name = "huge size, little data", .raw = "7fffffffffffffff\r\nabc", .more = 1, .body = "abc"},

    {.name = "empty size line", .raw = "\r\n", .err = E(BAD_CHUNK_SIZE), .body = ""},
    {.name = "negative size", .raw = "-5\r\nhello\r\n0\r\n\r\n", .err = E(BAD_CHUNK_SIZE), .body = ""},
    {.name = "plus sign", .raw = "+5\r\nhello\r\n0\r\n\r\n", .err = E(BAD_CHUNK_SIZE), .body = ""},
    {.name = "0x prefix", .raw = "0x5\r\nhello\r\n0\r\n\r\n", .err = E(BAD_CHUNK_SIZE), .body = ""},
    {.name = "not hex", .raw = "g\r\n", .err = E(BAD_CHUNK_SIZE), .body = ""},
    {.name = "leading space", .raw = " 5\r\nhello\r\n", .err = E(BAD_CHUNK_SIZE), .body = ""},
    {.name = "seventeen digits", .raw = "00000000000000005\r\nhello\r\n", .err = E(BAD_CHUNK_SIZE), .body = ""},
    {.name = "2^64", .raw = "10000000000000000\r\n", .err = E(BAD_CHUNK_SIZE), .body = ""},
    {.name = "2^63", .raw = "8000000000000000\r\n", .err = E(BAD_CHUNK_SIZE), .body = ""},
    {.name = "2^64-1", .raw = "ffffffffffffffff\r\n", .err = E(BAD_CHUNK_SIZE), .body = ""},
    {.name = "extension without size", .raw = ";a\r\n", .err = E(BAD_CHUNK_SIZE), .body = ""},
    {.name = "size then junk", .raw = "5x\r\nhello\r\n", .err = E(BAD_CHUNK_SIZE), .body = ""},
    {.name = "size line too long in digits", .raw = "123\r\n", .err = E(BAD_CHUNK_SIZE), .body = "",
     .max_line = 2},
    {.name = "second size bad", .raw = "1\r\na\r\nz\r\n", .err = E(BAD_CHUNK_SIZE), .body = "a"},
    {.name = "empty extension", .raw = "5;\r\nhello\r\n", .err = E(BAD_CHUNK_EXT), .body = ""},
    {.name = "extension without name", .raw = "5;=a\r\nhello\r\n", .err = E(BAD_CHUNK_EXT), .body = ""},
    {.name = "extension empty value", .raw = "5;a=\r\nhello\r\n", .err = E(BAD_CHUNK_EXT), .body = ""},
    {.name = "extension two words", .raw = "5;a b\r\nhello\r\n", .err = E(BAD_CHUNK_EXT), .body = ""},
    {.name = "trailing bws after size", .raw = "5 \r\nhello\r\n", .err = E(BAD_CHUNK_EXT), .body = ""},
    {.name = "trailing bws after name", .raw = "5;a \r\nhello\r\n", .err = E(BAD_CHUNK_EXT), .body = ""},
    {.name = "unterminated quote", .raw = "5;a=\"x\r\nhello\r\n", .err = E(BAD_CHUNK_EXT), .body = ""},
    {.name = "junk after quote", .raw = "5;a=\"x\"y\r\nhello\r\n", .err = E(BAD_CHUNK_EXT), .body = ""},
    {.name = "value with space", .raw = "5;a=b c\r\nhello\r\n", .err = E(BAD_CHUNK_EXT), .body = ""},
    {.name = "ctl in extension", .raw = "5;a=\x01\r\nhello\r\n", .err = E(BAD_CHUNK_EXT), .body = ""},
    {.name = "ctl in quoted", .raw = "5;a=\"\x01\"\r\nhello\r\n", .err = E(BAD_CHUNK_EXT), .body = ""},
    {.name = "quoted name", .raw = "5;\"q\"\r\nhello\r\n", .err = E(BAD_CHUNK_EXT), .body = ""},
    {.name = "size line too long in extension", .raw = "5;aaaaaaa\r\nhello\r\n", .err = E(BAD_CHUNK_EXT),
     .body = "", .max_line = 8},
    {.name = "endless extension", .raw = "5;aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
     .err = E(BAD_CHUNK_EXT), .body = "", .max_line = 16},
    {.name = "data too long", .raw = "5\r\nhelloX\r\n0\r\n\r\n", .err = E(BAD_CHUNK_END), .body = "hello"},
    {.name = "data too short", .raw = "5\r\nhel\r\n0\r\n\r\n", .err = E(BAD_CHUNK_END), .body = "hel\r\n"},
    {.name = "bare lf framing", .raw = "5\nhello\n0\n\n", .err = E(BARE_LF), .body = ""},
    {.name = "bare lf after data", .raw = "5\r\nhello\n0\r\n\r\n", .err = E(BARE_LF), .body = "hello"},
    {.name = "bare lf ends message", .raw = "0\r\n\n", .err = E(BARE_LF), .body = ""},
    {.name = "bare lf in trailer", .raw = "0\r\nX: a\n\r\n", .err = E(BARE_LF), .body = ""},
    {.name = "bare lf in extension", .raw = "5;a\nhello", .err = E(BARE_LF), .body = ""},
    {.name = "bare lf in quoted", .raw = "5;a=\"\n\"\r\n", .err = E(BARE_LF), .body = ""},
    {.name = "bare cr size line", .raw = "5\rhello\r\n", .err = E(BARE_CR), .body = ""},
    {.name = "bare cr after data", .raw = "5\r\nhello\rX0\r\n\r\n", .err = E(BARE_CR), .body = "hello"},
    {.name = "bare cr ends message", .raw = "0\r\n\rX", .err = E(BARE_CR), .body = ""},
    {.name = "bare cr in trailer", .raw = "0\r\nX: a\rb\r\n\r\n", .err = E(BARE_CR), .body = ""},
    {.name = "trailer obs-fold", .raw = "0\r\nX: a\r\n b\r\n\r\n", .err = E(BAD_TRAILER), .body = ""},
    {.name = "trailer starting with space", .raw = "0\r\n X: a\r\n\r\n", .err = E(BAD_TRAILER), .body = ""},
    {.name = "trailer ws before colon", .raw = "0\r\nX : a\r\n\r\n", .err = E(BAD_TRAILER), .body = ""},
    {.name = "trailer empty name", .raw = "0\r\n: a\r\n\r\n", .err = E(BAD_TRAILER), .body = ""},
    {.name = "trailer without colon", .raw = "0\r\nX\r\n\r\n", .err = E(BAD_TRAILER), .body = ""},
    {.name = "trailer ctl", .raw = "0\r\nX: a\x01\r\n\r\n", .err = E(BAD_TRAILER), .body = ""},
    {.name = "trailer nul", BIN("0\r\nX: \0\r\n\r\n"), .err = E(BAD_TRAILER), .body = ""},
    {.name = "trailer one too large", .raw = "0\r\nX: 12345\r\n\r\n", .err = E(TRAILER_TOO_LARGE), .body = "",
     .max_trailer = 9},
    {.name = "trailer lines add up", .raw = "0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", .err = E(TRAILER_TOO_LARGE),
     .body = "", .max_trailer = 16},
    {.name = "endless trailer", .raw = "0\r\nX: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
     .err = E(TRAILER_TOO_LARGE), .body = "", .max_trailer = 32},
};

typedef struct chunk_run {
    int result;            /* last result: NEED_MORE, DONE or ERROR */
    ferry__http_error err;
    size_t consumed;       /* total bytes consumed */
    char body[256];
    size_t body_len;
    int broken;            /* an invariant failed */
} chunk_run;

static void chunk_setup(ferry__chunked *c, const chunk_case *tc) {
    ferry__chunked_init(c);
    if (tc->max_line) c->max_line = tc->max_line;
    if (tc->max_trailer) c->max_trailer = tc->max_trailer;
}

/* Feed one piece (copied to a buffer of exactly its size) until it is used up or the
 * decoder stops. Returns 0 once DONE or ERROR. */
static int chunk_feed(ferry__chunked *c, chunk_run *run, const char *piece, size_t len) {
    char *buf = malloc(len ? len : 1);
    memcpy(buf, piece, len);
    size_t off = 0;
    int go = 1;
    for (int guard = 0; guard < 100000; guard++) {
        size_t used = SIZE_MAX;
        ferry_view data = {NULL, 0};
        ferry__http_error err = E(NONE);
        int r = ferry__chunked_decode(c, buf + off, len - off, &used, &data, &err);
        if (used > len - off) {
            run->broken = 1;
            break;
        }
        off += used;
        run->consumed += used;
        run->result = r;
        if (r == FERRY__CHUNKED_DATA) {
            if (data.len == 0 || data.ptr < buf || data.ptr + data.len > buf + off ||
                run->body_len + data.len > sizeof run->body) {
                run->broken = 1;
                break;
            }
            memcpy(run->body + run->body_len, data.ptr, data.len);
            run->body_len += data.len;
            continue;
        }
        if (r == FERRY__CHUNKED_ERROR) run->err = err;
        if (r == FERRY__CHUNKED_NEED_MORE && off != len) run->broken = 1;
        go = r == FERRY__CHUNKED_NEED_MORE;
        break;
    }
    free(buf);
    return go;
}

/* Feed raw split at the given cut points (sorted, each in 0..n). */
static void chunk_run_split(const chunk_case *tc, const char *raw, size_t n, const size_t *cuts,
                            size_t ncuts, chunk_run *run) {
    ferry__chunked c;
    memset(run, 0, sizeof *run);
    chunk_setup(&c, tc);
    size_t at = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t end = i < ncuts ? cuts[i] : n;
        if (!chunk_feed(&c, run, raw + at, end - at)) break;
        at = end;
    }
}

static int runs_equal(const chunk_run *a, const chunk_run *b) {
    return !a->broken && !b->broken && a->result == b->result && a->err == b->err &&
           a->consumed == b->consumed && a->body_len == b->body_len &&
           memcmp(a->body, b->body, a->body_len) == 0;
}

START_TEST(chunked_golden) {
    const chunk_case *tc = &chunk_cases[_i];
    size_t n = raw_size(tc->raw, tc->raw_len);
    size_t body_len = tc->body_len ? tc->body_len : strlen(tc->body);
    chunk_run whole, other;
    chunk_run_split(tc, tc->raw, n, NULL, 0, &whole);

    int want = tc->err != E(NONE) ? FERRY__CHUNKED_ERROR
               : tc->more         ? FERRY__CHUNKED_NEED_MORE
                                  : FERRY__CHUNKED_DONE;
    ck_assert_msg(!whole.broken, "[%s] invariant broken", tc->name);
    ck_assert_msg(whole.result == want && whole.err == tc->err, "[%s] got %d %s, want %d %s",
                  tc->name, whole.result, ename(whole.err), want, ename(tc->err));
    ck_assert_msg(whole.body_len == body_len && memcmp(whole.body, tc->body, body_len) == 0,
                  "[%s] body [%.*s]", tc->name, (int)whole.body_len, whole.body);
    if (want == FERRY__CHUNKED_DONE)
        ck_assert_msg(whole.consumed == (tc->done_at ? tc->done_at : n), "[%s] consumed %zu",
                      tc->name, whole.consumed);

    /* Every two-piece split, then byte by byte: the same outcome. */
    const char *fail = NULL;
    static char why[128];
    for (size_t cut = 0; cut <= n && !fail; cut++) {
        chunk_run_split(tc, tc->raw, n, &cut, 1, &other);
        if (!runs_equal(&whole, &other)) {
            snprintf(why, sizeof why, "split at %zu: %d %s consumed %zu", cut, other.result,
                     ename(other.err), other.consumed);
            fail = why;
        }
    }
    size_t cuts[512];
    ck_assert_uint_lt(n, 512);
    for (size_t i = 0; i < n; i++) cuts[i] = i + 1;
    chunk_run_split(tc, tc->raw, n, cuts, n ? n - 1 : 0, &other);
    if (!fail && !runs_equal(&whole, &other)) fail = "byte by byte differs";
    ck_assert_msg(fail == NULL, "[%s] %s", tc->name, fail);

    /* A failed decoder keeps failing the same way; a finished one stays done. */
    ferry__chunked c;
    chunk_setup(&c, tc);
    chunk_run again;
    memset(&again, 0, sizeof again);
    chunk_feed(&c, &again, tc->raw, n);
    size_t used = 1;
    ferry_view data;
    ferry__http_error err = E(NONE);
    int r = ferry__chunked_decode(&c, "0\r\n\r\n", 5, &used, &data, &err);
    if (want == FERRY__CHUNKED_ERROR)
        ck_assert_msg(r == FERRY__CHUNKED_ERROR && err == tc->err && used == 0, "[%s] sticky",
                      tc->name);
    if (want == FERRY__CHUNKED_DONE)
        ck_assert_msg(r == FERRY__CHUNKED_DONE && used == 0, "[%s] stays done", tc->name);
}
END_TEST

/* ======================================================================================
 * Default limits, helpers
 * ====================================================================================== */

/* A request line one byte over the default 8192, and an endless one. */
START_TEST(default_line_limit) {
    ferry__http_limits l;
    ferry__http_limits_init(&l);
    ck_assert_uint_eq(l.max_line, 8192);
    ck_assert_uint_eq(l.max_head, 65536);
    ck_assert_uint_eq(l.max_headers, 100);
    size_t n = 9000;
    char *buf = malloc(n);
    memcpy(buf, "GET /", 5);
    memset(buf + 5, 'a', n - 5);
    ferry_http_header hdrs[100];
    ferry__http_msg m = {.headers = hdrs};
    ferry__http_error err;
    /* 8192 content bytes: "GET /" + 8178 + " HTTP/1.1" */
    size_t fill = 8192 - 5 - 9;
    memcpy(buf + 5 + fill, " HTTP/1.1\r\nHost: a\r\n\r\n", 22);
    ck_assert_int_eq(ferry__http_parse_request(buf, 5 + fill + 22, &l, &m, &err),
                     (int)(5 + fill + 22));
    ck_assert_uint_eq(m.target.len, fill + 1);
    memset(buf + 5, 'a', n - 5);
    memcpy(buf + 5 + fill + 1, " HTTP/1.1\r\nHost: a\r\n\r\n", 22);
    ck_assert_int_eq(ferry__http_parse_request(buf, 5 + fill + 23, &l, &m, &err), -1);
    ck_assert_int_eq(err, E(LINE_TOO_LONG));
    memset(buf + 5, 'a', n - 5);
    ck_assert_int_eq(ferry__http_parse_request(buf, 8192, &l, &m, &err), 0);
    ck_assert_int_eq(ferry__http_parse_request(buf, 8193, &l, &m, &err), -1);
    ck_assert_int_eq(err, E(LINE_TOO_LONG));
    free(buf);
}
END_TEST

/* Heads around 64 KiB and header counts around 100 with the default limits. */
START_TEST(default_head_limits) {
    ferry__http_limits l;
    ferry__http_limits_init(&l);
    size_t cap = 70000;
    char *buf = malloc(cap);
    ferry_http_header hdrs[100];
    ferry__http_msg m = {.headers = hdrs};
    ferry__http_error err;
    /* head = line (16) + "Host: a\r\n" (9) + "X: " + v + "\r\n" + "\r\n" = 65536 */
    size_t v = 65536 - 16 - 9 - 3 - 2 - 2;
    size_t n = 0;
    memcpy(buf, GET11 "Host: a\r\nX: ", 28);
    n = 28;
    memset(buf + n, 'v', v);
    n += v;
    memcpy(buf + n, "\r\n\r\n", 4);
    n += 4;
    ck_assert_uint_eq(n, 65536);
    ck_assert_int_eq(ferry__http_parse_request(buf, n, &l, &m, &err), 65536);
    ck_assert_uint_eq(m.headers[1].value.len, v);
    /* one more value byte */
    memset(buf + 28, 'v', v + 1);
    memcpy(buf + 28 + v + 1, "\r\n\r\n", 4);
    ck_assert_int_eq(ferry__http_parse_request(buf, n + 1, &l, &m, &err), -1);
    ck_assert_int_eq(err, E(HEAD_TOO_LARGE));
    /* incomplete: refused once the head passes the limit */
    memset(buf + 28, 'v', cap - 28);
    ck_assert_int_eq(ferry__http_parse_request(buf, 65536, &l, &m, &err), 0);
    ck_assert_int_eq(ferry__http_parse_request(buf, 65537, &l, &m, &err), -1);
    ck_assert_int_eq(err, E(HEAD_TOO_LARGE));
    /* 100 fields pass, 101 do not */
    for (int count = 100; count <= 101; count++) {
        n = 0;
        memcpy(buf, GET11 "Host: a\r\n", 25);
        n = 25;
        for (int i = 1; i < count; i++) n += (size_t)sprintf(buf + n, "X%d: %d\r\n", i, i);
        memcpy(buf + n, "\r\n", 2);
        n += 2;
        int r = ferry__http_parse_request(buf, n, &l, &m, &err);
        if (count == 100) {
            ck_assert_int_eq(r, (int)n);
            ck_assert_uint_eq(m.nheaders, 100);
        } else {
            ck_assert_int_eq(r, -1);
            ck_assert_int_eq(err, E(TOO_MANY_HEADERS));
        }
    }
    free(buf);
}
END_TEST

/* A trailer section past the default 64 KiB, fed in 1000-byte pieces. */
START_TEST(huge_trailer) {
    ferry__chunked c;
    ferry__chunked_init(&c);
    ck_assert_uint_eq(c.max_line, 4096);
    ck_assert_uint_eq(c.max_trailer, 65536);
    char piece[1000];
    size_t used;
    ferry_view data;
    ferry__http_error err = E(NONE);
    ck_assert_int_eq(ferry__chunked_decode(&c, "0\r\nX: ", 6, &used, &data, &err),
                     FERRY__CHUNKED_NEED_MORE);
    memset(piece, 'a', sizeof piece);
    size_t total = 3; /* "X: " */
    int r = FERRY__CHUNKED_NEED_MORE;
    while (r == FERRY__CHUNKED_NEED_MORE && total < 200000) {
        r = ferry__chunked_decode(&c, piece, sizeof piece, &used, &data, &err);
        total += used;
    }
    ck_assert_int_eq(r, FERRY__CHUNKED_ERROR);
    ck_assert_int_eq(err, E(TRAILER_TOO_LARGE));
    ck_assert_uint_eq(total, 65536);
}
END_TEST

/* A chunk bigger than any buffer comes out in runs with the size kept exactly. */
START_TEST(big_chunk_in_runs) {
    ferry__chunked c;
    ferry__chunked_init(&c);
    size_t used;
    ferry_view data;
    ferry__http_error err;
    ck_assert_int_eq(ferry__chunked_decode(&c, "100000\r\n", 8, &used, &data, &err),
                     FERRY__CHUNKED_NEED_MORE);
    ck_assert_uint_eq(c.remaining, 0x100000);
    static char run[4096];
    uint64_t got = 0;
    for (int i = 0; i < 256; i++) {
        ck_assert_int_eq(ferry__chunked_decode(&c, run, sizeof run, &used, &data, &err),
                         FERRY__CHUNKED_DATA);
        ck_assert_uint_eq(used, sizeof run);
        ck_assert_ptr_eq(data.ptr, run);
        got += data.len;
    }
    ck_assert_uint_eq(got, 0x100000);
    ck_assert_int_eq(ferry__chunked_decode(&c, "\r\n0\r\n\r\nrest", 11, &used, &data, &err),
                     FERRY__CHUNKED_DONE);
    ck_assert_uint_eq(used, 7);
}
END_TEST

START_TEST(error_table) {
    for (int e = 0; e < FERRY__HTTP_E_COUNT; e++) {
        int s = ferry__http_error_status((ferry__http_error)e);
        ck_assert(e == 0 ? s == 0 : s >= 400 && s < 600);
        ck_assert_ptr_nonnull(ferry__http_error_text((ferry__http_error)e));
    }
    ck_assert_int_eq(ferry__http_error_status(E(LINE_TOO_LONG)), 414);
    ck_assert_int_eq(ferry__http_error_status(E(HEAD_TOO_LARGE)), 431);
    ck_assert_int_eq(ferry__http_error_status(E(TE_NOT_CHUNKED)), 501);
    ck_assert_int_eq(ferry__http_error_status(E(VERSION_NOT_SUPPORTED)), 505);
    ck_assert_int_eq(ferry__http_error_status(E(BAD_STATUS)), 502);
    ck_assert_int_eq(ferry__http_error_status(FERRY__HTTP_E_COUNT), 500);
    ck_assert_str_eq(ferry__http_error_text(E(BARE_LF)), "bare LF (lines must end with CRLF)");
}
END_TEST

static ferry_view sv(const char *s) {
    ferry_view v = {s, strlen(s)};
    return v;
}

START_TEST(helpers) {
    ck_assert(ferry__view_ieq(sv("Content-Length"), "content-length"));
    ck_assert(!ferry__view_ieq(sv("Content-Lengt"), "content-length"));
    ck_assert(!ferry__view_ieq(sv("Content-Length "), "content-length"));
    ck_assert(ferry__view_ieq(sv(""), ""));
    ck_assert(!ferry__view_ieq(sv("\xc3\xa9"), "\xc3\x89"));
    ck_assert(ferry__http_list_has(sv("keep-alive, Upgrade"), "upgrade"));
    ck_assert(ferry__http_list_has(sv(" ,\tclose\t, "), "close"));
    ck_assert(!ferry__http_list_has(sv("closed"), "close"));
    ck_assert(!ferry__http_list_has(sv("clo se"), "close"));
    ck_assert(!ferry__http_list_has(sv(""), "close"));
    ferry_view none = {NULL, 0};
    ck_assert(!ferry__http_list_has(none, "close"));
    ck_assert(ferry__http_value_ok(sv("a b\tc \x80\xff")));
    ck_assert(ferry__http_value_ok(sv("")));
    ck_assert(!ferry__http_value_ok(sv("a\r\nX: b")));
    ck_assert(!ferry__http_value_ok(sv("a\nb")));
    ck_assert(!ferry__http_value_ok(sv("\x7f")));
    ferry_view nul = {"a\0b", 3};
    ck_assert(!ferry__http_value_ok(nul));
    ck_assert(ferry__http_name_ok(sv("X-Forwarded-For")));
    ck_assert(!ferry__http_name_ok(sv("")));
    ck_assert(!ferry__http_name_ok(sv("X Y")));
    ck_assert(!ferry__http_name_ok(sv("X:")));
}
END_TEST

int main(void) {
    Suite *s = suite_create("http1");
    TCase *tc = tcase_create("golden");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, request_golden, 0, (int)(sizeof req_cases / sizeof req_cases[0]));
    tcase_add_loop_test(tc, response_golden, 0, (int)(sizeof resp_cases / sizeof resp_cases[0]));
    tcase_add_loop_test(tc, chunked_golden, 0, (int)(sizeof chunk_cases / sizeof chunk_cases[0]));
    suite_add_tcase(s, tc);
    TCase *more = tcase_create("limits and helpers");
    tcase_set_timeout(more, 60);
    tcase_add_test(more, default_line_limit);
    tcase_add_test(more, default_head_limits);
    tcase_add_test(more, huge_trailer);
    tcase_add_test(more, big_chunk_in_runs);
    tcase_add_test(more, error_table);
    tcase_add_test(more, helpers);
    suite_add_tcase(s, more);
    return run_suite(s);
}
