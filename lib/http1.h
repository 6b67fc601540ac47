/* HTTP/1.1 message parsing (RFC 9112), picohttpparser-style: pure and incremental over the
 * bytes received so far, zero-copy (every view points into the caller's buffer), no I/O and
 * no allocation. The caller re-runs the head parser on the grown buffer until it returns
 * a length; bodies are framed by the result. Strict by default: anything ambiguous is an
 * error, never guessed at. */
#ifndef FERRY__HTTP1_H
#define FERRY__HTTP1_H

#include <stddef.h>
#include <stdint.h>
#include "ferry/view.h"

/* Why a message was refused. The table gives each its HTTP status and a short reason. */
#define FERRY__HTTP_ERRORS(X)                                                               \
    X(NONE, 0, "no error")                                                                 \
    X(BAD_METHOD, 400, "invalid method token")                                             \
    X(BAD_TARGET, 400, "invalid request target")                                           \
    X(BAD_VERSION, 400, "invalid HTTP version")                                            \
    X(VERSION_NOT_SUPPORTED, 505, "HTTP version not supported")                            \
    X(LINE_TOO_LONG, 414, "request line too long")                                         \
    X(HEAD_TOO_LARGE, 431, "header block too large")                                       \
    X(TOO_MANY_HEADERS, 431, "too many header fields")                                     \
    X(BARE_CR, 400, "bare CR")                                                             \
    X(BARE_LF, 400, "bare LF (lines must end with CRLF)")                                  \
    X(BAD_HEADER_NAME, 400, "invalid header field name")                                   \
    X(WS_BEFORE_COLON, 400, "whitespace between header name and colon")                    \
    X(OBS_FOLD, 400, "obsolete line folding")                                              \
    X(BAD_HEADER_VALUE, 400, "invalid byte in header field value")                         \
    X(CL_AND_TE, 400, "both Content-Length and Transfer-Encoding")                         \
    X(DUPLICATE_CL, 400, "more than one Content-Length")                                   \
    X(BAD_CL, 400, "invalid Content-Length")                                               \
    X(BAD_TE, 400, "invalid Transfer-Encoding")                                            \
    X(TE_NOT_CHUNKED, 501, "Transfer-Encoding other than a final chunked")                 \
    X(MISSING_HOST, 400, "missing Host header")                                            \
    X(MULTIPLE_HOST, 400, "more than one Host header")                                     \
    X(BAD_HOST, 400, "invalid Host header")                                                \
    X(BAD_STATUS, 502, "invalid status line")                                              \
    X(BAD_CHUNK_SIZE, 400, "invalid chunk size")                                           \
    X(BAD_CHUNK_EXT, 400, "invalid chunk extension")                                       \
    X(BAD_CHUNK_END, 400, "chunk data not followed by CRLF")                               \
    X(BAD_TRAILER, 400, "invalid trailer field")                                           \
    X(TRAILER_TOO_LARGE, 431, "trailer section too large")

typedef enum ferry__http_error {
#define FERRY__HTTP_ERROR_ENUM(name, status, text) FERRY__HTTP_E_##name,
    FERRY__HTTP_ERRORS(FERRY__HTTP_ERROR_ENUM)
#undef FERRY__HTTP_ERROR_ENUM
    FERRY__HTTP_E_COUNT
} ferry__http_error;

/* The status a proxy answers with (e.g. 400, 414, 431, 501, 505; 502 for upstream faults)
 * and a short reason for logs. */
int ferry__http_error_status(ferry__http_error e);
const char *ferry__http_error_text(ferry__http_error e);

typedef struct ferry__http_limits {
    size_t max_line;      /* request/status line; default 8192 */
    size_t max_head;      /* whole head incl. the line and the final CRLF; default 65536 */
    unsigned max_headers; /* header fields; default 100; also the capacity the caller gives */
} ferry__http_limits;

void ferry__http_limits_init(ferry__http_limits *l);

enum ferry__http_target_form {
    FERRY__TARGET_ORIGIN = 0,    /* "/path?query" */
    FERRY__TARGET_ABSOLUTE = 1,  /* "http://host[:port]/path" (forward proxies) */
    FERRY__TARGET_AUTHORITY = 2, /* "host:port", CONNECT only */
    FERRY__TARGET_ASTERISK = 3   /* "*", OPTIONS only */
};

enum ferry__http_body {
    FERRY__BODY_NONE = 0,       /* no body (GET without framing, HEAD/1xx/204/304 responses...) */
    FERRY__BODY_LENGTH = 1,     /* exactly content_length bytes */
    FERRY__BODY_CHUNKED = 2,    /* chunked; decode with ferry__chunked_* */
    FERRY__BODY_UNTIL_CLOSE = 3 /* responses only: until the server closes */
};

enum ferry__http_flags {
    FERRY__HTTP_CONN_CLOSE = 1 << 0,      /* Connection: close (or HTTP/1.0 without keep-alive) */
    FERRY__HTTP_CONN_KEEP_ALIVE = 1 << 1, /* Connection: keep-alive */
    FERRY__HTTP_CONN_UPGRADE = 1 << 2,    /* Connection lists "upgrade" and Upgrade is present */
    FERRY__HTTP_EXPECT_CONTINUE = 1 << 3  /* Expect: 100-continue */
};

typedef struct ferry__http_msg {
    /* request line */
    ferry_view method;
    ferry_view target;
    uint8_t target_form;
    /* status line */
    int status;
    ferry_view reason;
    /* both */
    uint8_t version_minor;      /* 0 or 1 for HTTP/1.0, HTTP/1.1 */
    ferry_http_header *headers; /* caller-provided, capacity limits->max_headers */
    unsigned nheaders;
    uint8_t body;               /* enum ferry__http_body */
    uint64_t content_length;    /* with FERRY__BODY_LENGTH */
    unsigned flags;             /* enum ferry__http_flags */
    int host_index;             /* index of the Host header, -1 if none */
} ferry__http_msg;

/* Parse a request head from buf[0..len). msg->headers must point at limits->max_headers
 * slots. Returns the head's length (> 0) with *msg filled, 0 when more bytes are needed
 * (nothing reported is valid yet), or -1 with *err set. Leading CRLFs before the request
 * line (left over after a previous body) are skipped and counted in the length.
 * Rules: method is a token; target must match the form allowed for the method (CONNECT:
 * authority; OPTIONS: origin, absolute or "*"; others: origin or absolute) and hold no
 * CTL, space or non-ASCII byte; version "HTTP/1.0" or "HTTP/1.1" (other HTTP/x.y: 505);
 * HTTP/1.1 needs exactly one Host, and at most one in any version. */
int ferry__http_parse_request(const char *buf, size_t len, const ferry__http_limits *limits,
                              ferry__http_msg *msg, ferry__http_error *err);

/* Parse a response head. request_method is the method of the request it answers (for HEAD
 * and CONNECT framing). Framing per RFC 9112 section 6.3: 1xx, 204 and 304 and any
 * response to HEAD have no body; 2xx to CONNECT has none (a tunnel follows); chunked wins
 * only as the final coding; otherwise Content-Length; otherwise until close. Errors:
 * BAD_STATUS (and the header rules shared with requests). */
int ferry__http_parse_response(const char *buf, size_t len, const ferry__http_limits *limits,
                               ferry_view request_method, ferry__http_msg *msg,
                               ferry__http_error *err);

/* Case-insensitive ASCII comparison of a view with a NUL-terminated lowercase literal.
 * Inline: it is asked of every header field against several names, and most calls end at
 * the first byte (no strlen() up front: `lower` running out early is a mismatch too). */
static inline int ferry__view_ieq(ferry_view v, const char *lower) {
    size_t i = 0;
    for (; lower[i]; i++) {
        if (i == v.len) return 0;
        unsigned char b = (unsigned char)v.ptr[i];
        if (b >= 'A' && b <= 'Z') b = (unsigned char)(b | 0x20);
        if (b != (unsigned char)lower[i]) return 0;
    }
    return i == v.len;
}

/* Does a comma-separated header value list the token (case-insensitive, OWS-trimmed)? */
int ferry__http_list_has(ferry_view value, const char *lower_token);

/* Is every (non-empty) element of a comma-separated list one of the two tokens? */
int ferry__http_list_within(ferry_view value, const char *lower_a, const char *lower_b);

/* A field value is valid if it has no CR, LF, NUL or other CTL except HTAB. Used for
 * values given through the API before they are written out. */
int ferry__http_value_ok(ferry_view value);
/* A field name is a non-empty token. */
int ferry__http_name_ok(ferry_view name);

/* ---- chunked transfer coding decoder ---- */

typedef struct ferry__chunked {
    uint8_t state;
    uint64_t remaining;   /* bytes of chunk data left in the current chunk */
    size_t line_bytes;    /* bytes of the current size line or trailer line seen so far */
    size_t trailer_bytes; /* total trailer section bytes seen */
    size_t max_line;      /* limit for one chunk-size line incl. extensions; default 4096 */
    size_t max_trailer;   /* limit for the trailer section; default 65536 */
} ferry__chunked;

void ferry__chunked_init(ferry__chunked *c);

enum ferry__chunked_result {
    FERRY__CHUNKED_ERROR = -1,
    FERRY__CHUNKED_NEED_MORE = 0, /* everything given was consumed; feed more */
    FERRY__CHUNKED_DATA = 1,      /* *data is a run of body bytes inside buf */
    FERRY__CHUNKED_DONE = 2       /* last chunk and trailer section consumed */
};

/* Consume from buf[0..len). Sets *consumed (bytes used from buf, always set). Returns
 * DATA with *data pointing into buf (call again with the rest), NEED_MORE, DONE (bytes
 * after *consumed belong to the next message), or ERROR with *err. The decoder keeps its
 * state between calls, so input may be split anywhere. Chunk sizes: 1-16 hex digits, no
 * sign, no overflow; extensions are validated (token[=token|quoted-string], OWS around ';'
 * tolerated as RFC 9112 allows BWS) and dropped; trailer fields are validated like header
 * fields and dropped; lines end with CRLF only. */
int ferry__chunked_decode(ferry__chunked *c, const char *buf, size_t len, size_t *consumed,
                          ferry_view *data, ferry__http_error *err);

#endif
