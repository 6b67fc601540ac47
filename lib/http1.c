/* HTTP/1.1 heads and the chunked transfer coding (RFC 9112), as specified in http1.h.
 *
 * The head parsers walk the buffer once, left to right, and stop at the first byte that
 * decides the outcome: a byte the grammar forbids is an error, the end of the data means
 * "need more". So a prefix of a message never fails for a reason the whole message would
 * not, and re-running on the grown buffer is always right. Limits are checked on the byte
 * that would exceed them, which refuses an endless line or head as soon as it is too long.
 * Field semantics (framing, Host, Connection) are judged once the head is complete.
 *
 * The chunked decoder is a byte-at-a-time state machine for the framing (chunk data is
 * handed out in runs), so it needs no lookahead and may be fed any split of the input. */
#include "http1.h"

#include <limits.h>
#include <string.h>

#define E(name) FERRY__HTTP_E_##name

static const struct {
    int status;
    const char *text;
} error_info[] = {
#define FERRY__HTTP_ERROR_INFO(name, status, text) {status, text},
    FERRY__HTTP_ERRORS(FERRY__HTTP_ERROR_INFO)
#undef FERRY__HTTP_ERROR_INFO
};

int ferry__http_error_status(ferry__http_error e) {
    return (unsigned)e < FERRY__HTTP_E_COUNT ? error_info[e].status : 500;
}

const char *ferry__http_error_text(ferry__http_error e) {
    return (unsigned)e < FERRY__HTTP_E_COUNT ? error_info[e].text : "unknown error";
}

void ferry__http_limits_init(ferry__http_limits *l) {
    l->max_line = 8192;
    l->max_head = 65536;
    l->max_headers = 100;
}

/* ---- character classes (RFC 9110 section 5.6, RFC 3986) ---- */

static int is_alpha(unsigned char b) { return (b | 0x20) >= 'a' && (b | 0x20) <= 'z'; }
static int is_digit(unsigned char b) { return b >= '0' && b <= '9'; }
static int is_hex(unsigned char b) {
    return is_digit(b) || ((b | 0x20) >= 'a' && (b | 0x20) <= 'f');
}
static int is_ws(unsigned char b) { return b == ' ' || b == '\t'; }
static int is_vchar(unsigned char b) { return b > 0x20 && b < 0x7f; }

static int hex_value(unsigned char b) {
    return is_digit(b) ? b - '0' : (b | 0x20) - 'a' + 10;
}

/* ALPHA / DIGIT / "!#$%&'*+-.^_`|~" as one bit per ASCII byte: it is asked of every
 * byte of every field name. */
static int is_tchar(unsigned char b) {
    static const uint64_t low = 0x03ff6cfa00000000u, high = 0x57ffffffc7fffffeu;
    return b < 64 ? (int)((low >> b) & 1) : b < 128 ? (int)((high >> (b - 64)) & 1) : 0;
}

/* field-vchar plus the SP/HTAB allowed between them; obs-text (>= 0x80) is opaque data. */
static int is_field_char(unsigned char b) { return b == '\t' || (b >= 0x20 && b != 0x7f); }

static int is_unreserved(unsigned char b) {
    return is_alpha(b) || is_digit(b) || b == '-' || b == '.' || b == '_' || b == '~';
}

static int is_sub_delim(unsigned char b) {
    switch (b) {
    case '!': case '$': case '&': case '\'': case '(': case ')': case '*': case '+':
    case ',': case ';': case '=':
        return 1;
    default:
        return 0;
    }
}

static unsigned char byte_at(const char *p, size_t i) { return (unsigned char)p[i]; }

static ferry_view make_view(const char *p, size_t n) {
    ferry_view v = {p, n};
    return v;
}

static ferry_view trim_ows(const char *p, const char *end) {
    while (p < end && is_ws((unsigned char)*p)) p++;
    while (end > p && is_ws((unsigned char)end[-1])) end--;
    return make_view(p, (size_t)(end - p));
}

static int view_eq(ferry_view v, const char *s) {
    size_t n = strlen(s);
    return v.len == n && (n == 0 || memcmp(v.ptr, s, n) == 0);
}

static int is_token(ferry_view v) {
    if (v.len == 0) return 0;
    for (size_t i = 0; i < v.len; i++)
        if (!is_tchar(byte_at(v.ptr, i))) return 0;
    return 1;
}

/* ---- public helpers ---- */

/* Walks a comma-separated list; elements come out OWS-trimmed, empty ones included (so
 * callers that must refuse them can). */
typedef struct list_iter {
    const char *p, *end;
    int done;
} list_iter;

static list_iter list_begin(ferry_view v) {
    list_iter it = {v.ptr, v.ptr + v.len, 0};
    return it;
}

static int list_next(list_iter *it, ferry_view *elem) {
    if (it->done) return 0;
    const char *comma = it->p < it->end ? memchr(it->p, ',', (size_t)(it->end - it->p)) : NULL;
    const char *stop = comma ? comma : it->end;
    *elem = trim_ows(it->p, stop);
    if (comma)
        it->p = comma + 1;
    else
        it->done = 1;
    return 1;
}

int ferry__http_list_has(ferry_view value, const char *lower_token) {
    list_iter it = list_begin(value);
    ferry_view e;
    while (list_next(&it, &e))
        if (ferry__view_ieq(e, lower_token)) return 1;
    return 0;
}

int ferry__http_list_within(ferry_view value, const char *lower_a, const char *lower_b) {
    list_iter it = list_begin(value);
    ferry_view e;
    while (list_next(&it, &e))
        if (e.len && !ferry__view_ieq(e, lower_a) && !ferry__view_ieq(e, lower_b)) return 0;
    return 1;
}

int ferry__http_value_ok(ferry_view value) {
    for (size_t i = 0; i < value.len; i++)
        if (!is_field_char(byte_at(value.ptr, i))) return 0;
    return 1;
}

int ferry__http_name_ok(ferry_view name) { return is_token(name); }

/* ---- hosts: uri-host [ ":" port ] (RFC 3986 section 3.2) ---- */

/* dec-octet "." dec-octet "." dec-octet "." dec-octet; no leading zeros. */
static int ipv4_ok(const char *p, size_t n) {
    size_t i = 0;
    for (int part = 0; part < 4; part++) {
        if (part > 0) {
            if (i >= n || p[i] != '.') return 0;
            i++;
        }
        size_t start = i;
        unsigned v = 0;
        while (i < n && is_digit(byte_at(p, i)) && i - start < 3)
            v = v * 10 + (unsigned)(p[i++] - '0');
        if (i == start || v > 255 || (i - start > 1 && p[start] == '0')) return 0;
    }
    return i == n;
}

/* IPv6address: up to eight h16 groups, at most one "::" (standing for at least one group),
 * optionally ending in a dotted quad worth two groups. No zone identifier. */
static int ipv6_ok(const char *p, size_t n) {
    size_t i = 0;
    int groups = 0, elided = 0;
    if (n >= 2 && p[0] == ':' && p[1] == ':') {
        elided = 1;
        i = 2;
    } else if (n == 0 || p[0] == ':') {
        return 0;
    }
    while (i < n) {
        size_t start = i;
        while (i < n && is_hex(byte_at(p, i)) && i - start < 5) i++;
        size_t h = i - start;
        if (i < n && p[i] == '.') {
            if (groups > 6 || !ipv4_ok(p + start, n - start)) return 0;
            groups += 2;
            break;
        }
        if (h == 0 || h > 4) return 0;
        groups++;
        if (i == n) break;
        if (p[i] != ':' || groups >= 8) return 0;
        i++;
        if (i < n && p[i] == ':') {
            if (elided) return 0;
            elided = 1;
            i++;
        } else if (i == n) {
            return 0; /* a trailing single colon */
        }
    }
    return elided ? groups <= 7 : groups == 8;
}

/* Is the label a number to an address parser ("123", "0x7f")? */
static int numeric_label(const char *p, size_t n) {
    if (n >= 2 && p[0] == '0' && (p[1] | 0x20) == 'x') {
        for (size_t i = 2; i < n; i++)
            if (!is_hex(byte_at(p, i))) return 0;
        return 1;
    }
    for (size_t i = 0; i < n; i++)
        if (!is_digit(byte_at(p, i))) return 0;
    return n > 0;
}

/* reg-name without pct-encoding (a DNS name never needs it, and decoding would let two
 * spellings name one host). A name whose last label is numeric is what inet_aton-style
 * resolvers read as an IPv4 address ("127.1", "0x7f.0.0.1", "2130706433"), so it must be
 * a canonical dotted quad: the host a filter sees is then the host we connect to. */
static int reg_name_ok(const char *p, size_t n) {
    if (n == 0) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char b = byte_at(p, i);
        if (!is_unreserved(b) && !is_sub_delim(b)) return 0;
    }
    size_t end = p[n - 1] == '.' ? n - 1 : n, label = end;
    while (label > 0 && p[label - 1] != '.') label--;
    return numeric_label(p + label, end - label) ? ipv4_ok(p, n) : 1;
}

/* port: 1-5 digits, at most 65535 (RFC 3986 allows an empty or longer one; we do not). */
static int port_ok(const char *p, size_t n) {
    if (n == 0 || n > 5) return 0;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(byte_at(p, i))) return 0;
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    return v <= 65535;
}

enum { PORT_OPTIONAL = 0, PORT_REQUIRED = 1 };

/* uri-host [ ":" port ] with a non-empty host; IP-literals are IPv6 only (no IPvFuture). */
static int authority_ok(ferry_view v, int port) {
    const char *p = v.ptr, *end = v.ptr + v.len, *host_end;
    if (v.len == 0) return 0;
    if (*p == '[') {
        const char *close = memchr(p, ']', v.len);
        if (!close || !ipv6_ok(p + 1, (size_t)(close - p - 1))) return 0;
        host_end = close + 1;
    } else {
        host_end = p;
        while (host_end < end && *host_end != ':') host_end++;
        if (!reg_name_ok(p, (size_t)(host_end - p))) return 0;
    }
    if (host_end == end) return port == PORT_OPTIONAL;
    return *host_end == ':' && port_ok(host_end + 1, (size_t)(end - host_end - 1));
}

/* absolute-form for a proxy: scheme "://" authority, then path and query. Userinfo is
 * refused (RFC 9110 section 4.2.4: treat it as an error). */
static int absolute_ok(ferry_view t) {
    const char *p = t.ptr, *end = t.ptr + t.len;
    if (!is_alpha((unsigned char)*p)) return 0;
    for (p++; p < end; p++) {
        unsigned char b = (unsigned char)*p;
        if (!is_alpha(b) && !is_digit(b) && b != '+' && b != '-' && b != '.') break;
    }
    if (end - p < 3 || memcmp(p, "://", 3) != 0) return 0;
    const char *auth = p + 3;
    for (p = auth; p < end && *p != '/' && *p != '?'; p++) {
    }
    if (memchr(auth, '@', (size_t)(p - auth))) return 0;
    return authority_ok(make_view(auth, (size_t)(p - auth)), PORT_OPTIONAL);
}

/* The target's form must be the one its method allows (RFC 9112 section 3.2). */
static int classify_target(ferry__http_msg *m) {
    ferry_view t = m->target;
    if (view_eq(m->method, "CONNECT")) {
        m->target_form = FERRY__TARGET_AUTHORITY;
        return authority_ok(t, PORT_REQUIRED);
    }
    if (t.ptr[0] == '/') {
        m->target_form = FERRY__TARGET_ORIGIN;
        return 1;
    }
    if (t.len == 1 && t.ptr[0] == '*') {
        m->target_form = FERRY__TARGET_ASTERISK;
        return view_eq(m->method, "OPTIONS");
    }
    m->target_form = FERRY__TARGET_ABSOLUTE;
    return absolute_ok(t);
}

/* ---- the head scanner ---- */

enum { P_OK = 0, P_MORE = 1, P_FAIL = -1 };

typedef struct cursor {
    const char *buf;
    size_t len, pos;
    size_t head_max;            /* bytes the head may span */
    size_t line_start;          /* first byte of the current line */
    size_t line_max;            /* content bytes the current line may hold */
    ferry__http_error line_err; /* what an over-long start line is */
    ferry__http_error err;
} cursor;

static int fail(cursor *c, ferry__http_error e) {
    c->err = e;
    return P_FAIL;
}

/* The byte at the cursor, once the limits allow it; P_MORE at the end of the data. CR and
 * LF never make a line too long: they end it. */
static int peek(cursor *c, unsigned char *b) {
    if (c->pos >= c->len) return P_MORE;
    if (c->pos >= c->head_max) return fail(c, E(HEAD_TOO_LARGE));
    unsigned char v = byte_at(c->buf, c->pos);
    if (v != '\r' && v != '\n' && c->pos - c->line_start >= c->line_max)
        return fail(c, c->line_err);
    *b = v;
    return P_OK;
}

/* After a CR: the LF that must follow. */
static int expect_lf(cursor *c) {
    unsigned char b = 0;
    int r = peek(c, &b);
    if (r != P_OK) return r;
    if (b != '\n') return fail(c, E(BARE_CR));
    c->pos++;
    return P_OK;
}

/* The byte at the cursor is not allowed here. A CR or LF is judged as a line ending first
 * (bare CR, bare LF), which for a CR needs the byte after it; anything else is `e`. */
static int unexpected(cursor *c, ferry__http_error e) {
    unsigned char b = byte_at(c->buf, c->pos);
    if (b == '\n') return fail(c, E(BARE_LF));
    if (b == '\r') {
        if (c->pos + 1 >= c->len) return P_MORE;
        if (c->buf[c->pos + 1] != '\n') return fail(c, E(BARE_CR));
    }
    return fail(c, e);
}

/* The CRLF that ends a line, or `e` for anything else at the cursor. */
static int line_end(cursor *c, ferry__http_error e) {
    unsigned char b = 0;
    int r = peek(c, &b);
    if (r != P_OK) return r;
    if (b != '\r') return unexpected(c, e);
    c->pos++;
    return expect_lf(c);
}

/* How far bytes can be taken without peek()'s checks: before the end of the data, the head
 * limit and the line limit. Scanning loops run up to it on plain comparisons, then let
 * peek() judge the byte they stopped at, so every outcome stays peek()'s. */
static size_t scan_limit(const cursor *c) {
    size_t lim = c->len < c->head_max ? c->len : c->head_max;
    if (c->line_max < lim - c->line_start) lim = c->line_start + c->line_max;
    return lim;
}

static void cursor_init(cursor *c, const char *buf, size_t len, const ferry__http_limits *l,
                        ferry__http_error line_err) {
    memset(c, 0, sizeof *c);
    c->buf = buf;
    c->len = len;
    /* The length is returned as an int. */
    c->head_max = l->max_head < (size_t)INT_MAX ? l->max_head : (size_t)INT_MAX;
    c->line_max = l->max_line;
    c->line_err = line_err;
}

/* Empty lines before a request line (left after a previous body) are skipped; each is a
 * line of its own for the line limit, and all count toward the head. */
static int skip_empty_lines(cursor *c) {
    for (;;) {
        unsigned char b = 0;
        c->line_start = c->pos;
        int r = peek(c, &b);
        if (r != P_OK) return r;
        if (b == '\n') return fail(c, E(BARE_LF));
        if (b != '\r') return P_OK;
        c->pos++;
        if ((r = expect_lf(c)) != P_OK) return r;
    }
}

/* "HTTP/" DIGIT "." DIGIT; *major and *minor get the digits' values. */
static int parse_version(cursor *c, ferry__http_error e, int *major, int *minor) {
    static const char pattern[] = "HTTP/d.d";
    size_t start = c->pos;
    for (size_t i = 0; i < sizeof pattern - 1; i++) {
        unsigned char b = 0;
        int r = peek(c, &b);
        if (r != P_OK) return r;
        if (pattern[i] == 'd' ? !is_digit(b) : b != (unsigned char)pattern[i])
            return unexpected(c, e);
        c->pos++;
    }
    *major = c->buf[start + 5] - '0';
    *minor = c->buf[start + 7] - '0';
    return P_OK;
}

static int parse_method(cursor *c, ferry__http_msg *m) {
    size_t start = c->pos;
    unsigned char b = 0;
    int r;
    while ((r = peek(c, &b)) == P_OK && is_tchar(b)) c->pos++;
    if (r != P_OK) return r;
    if (b != ' ' || c->pos == start) return unexpected(c, E(BAD_METHOD));
    m->method = make_view(c->buf + start, c->pos - start);
    c->pos++;
    return P_OK;
}

/* Any VCHAR but '#' (a fragment is never sent); the form is checked once it is whole. */
static int parse_target(cursor *c, ferry__http_msg *m) {
    size_t start = c->pos, lim = scan_limit(c);
    unsigned char b = 0;
    int r;
    while (c->pos < lim && is_vchar(byte_at(c->buf, c->pos)) && c->buf[c->pos] != '#') c->pos++;
    while ((r = peek(c, &b)) == P_OK && is_vchar(b) && b != '#') c->pos++;
    if (r != P_OK) return r;
    if (b != ' ' || c->pos == start) return unexpected(c, E(BAD_TARGET));
    m->target = make_view(c->buf + start, c->pos - start);
    if (!classify_target(m)) return fail(c, E(BAD_TARGET));
    c->pos++;
    return P_OK;
}

static int parse_request_line(cursor *c, ferry__http_msg *m) {
    int r, major = 0, minor = 0;
    if ((r = parse_method(c, m)) != P_OK) return r;
    if ((r = parse_target(c, m)) != P_OK) return r;
    if ((r = parse_version(c, E(BAD_VERSION), &major, &minor)) != P_OK) return r;
    if ((r = line_end(c, E(BAD_VERSION))) != P_OK) return r;
    if (major != 1 || minor > 1) return fail(c, E(VERSION_NOT_SUPPORTED));
    m->version_minor = (uint8_t)minor;
    return P_OK;
}

/* status-line = HTTP-version SP status-code SP [ reason-phrase ]; the second SP may be
 * missing when the reason is empty, as some servers send "HTTP/1.1 200\r\n". */
static int parse_status_line(cursor *c, ferry__http_msg *m) {
    int r, major = 0, minor = 0;
    unsigned char b = 0;
    if ((r = parse_version(c, E(BAD_STATUS), &major, &minor)) != P_OK) return r;
    m->status = 0;
    for (int i = -1; i < 3; i++) {
        if ((r = peek(c, &b)) != P_OK) return r;
        int ok = i < 0 ? b == ' ' : i == 0 ? b >= '1' && b <= '9' : is_digit(b);
        if (!ok) return unexpected(c, E(BAD_STATUS));
        if (i >= 0) m->status = m->status * 10 + (b - '0');
        c->pos++;
    }
    if ((r = peek(c, &b)) != P_OK) return r;
    if (b != ' ' && b != '\r') return unexpected(c, E(BAD_STATUS));
    if (b == ' ') c->pos++;
    size_t start = c->pos;
    while ((r = peek(c, &b)) == P_OK && is_field_char(b)) c->pos++;
    if (r != P_OK) return r;
    m->reason = make_view(c->buf + start, c->pos - start);
    if ((r = line_end(c, E(BAD_STATUS))) != P_OK) return r;
    if (major != 1 || minor > 1) return fail(c, E(BAD_STATUS));
    m->version_minor = (uint8_t)minor;
    return P_OK;
}

/* field-line = field-name ":" OWS field-value OWS CRLF */
static int parse_field(cursor *c, ferry_http_header *h) {
    size_t start = c->pos, lim = scan_limit(c);
    unsigned char b = 0;
    int r;
    while (c->pos < lim && is_tchar(byte_at(c->buf, c->pos))) c->pos++;
    while ((r = peek(c, &b)) == P_OK && is_tchar(b)) c->pos++;
    if (r != P_OK) return r;
    if (b != ':' || c->pos == start) {
        if (!is_ws(b) || c->pos == start) return unexpected(c, E(BAD_HEADER_NAME));
        /* "Name :" is a classic smuggling vector; tell it from "Na me:". */
        while ((r = peek(c, &b)) == P_OK && is_ws(b)) c->pos++;
        if (r != P_OK) return r;
        return b == ':' ? fail(c, E(WS_BEFORE_COLON)) : unexpected(c, E(BAD_HEADER_NAME));
    }
    h->name = make_view(c->buf + start, c->pos - start);
    c->pos++;
    while ((r = peek(c, &b)) == P_OK && is_ws(b)) c->pos++;
    if (r != P_OK) return r;
    size_t value = c->pos;
    while (c->pos < lim && is_field_char(byte_at(c->buf, c->pos))) c->pos++;
    while ((r = peek(c, &b)) == P_OK && is_field_char(b)) c->pos++;
    if (r != P_OK) return r;
    size_t value_end = c->pos; /* without trailing OWS */
    while (value_end > value && is_ws(byte_at(c->buf, value_end - 1))) value_end--;
    h->value = make_view(c->buf + value, value_end - value);
    return line_end(c, E(BAD_HEADER_VALUE));
}

/* Field lines up to and including the empty line. */
static int parse_fields(cursor *c, ferry__http_msg *m, unsigned max_headers) {
    c->line_max = SIZE_MAX; /* field lines are bounded by the head limit only */
    for (;;) {
        unsigned char b = 0;
        c->line_start = c->pos;
        int r = peek(c, &b);
        if (r != P_OK) return r;
        if (b == '\r') {
            c->pos++;
            return expect_lf(c);
        }
        if (b == '\n') return fail(c, E(BARE_LF));
        if (is_ws(b)) return fail(c, E(OBS_FOLD));
        if (m->nheaders >= max_headers) return fail(c, E(TOO_MANY_HEADERS));
        if ((r = parse_field(c, &m->headers[m->nheaders])) != P_OK) return r;
        m->nheaders++;
    }
}

/* ---- field semantics ---- */

/* Content-Length = 1*DIGIT, at most 2^63-1 so it fits every signed 64-bit consumer. */
static int parse_length(ferry_view v, uint64_t *out) {
    uint64_t n = 0;
    if (v.len == 0) return 0;
    for (size_t i = 0; i < v.len; i++) {
        unsigned char b = byte_at(v.ptr, i);
        if (!is_digit(b)) return 0;
        unsigned d = (unsigned)(b - '0');
        if (n > ((uint64_t)INT64_MAX - d) / 10) return 0;
        n = n * 10 + d;
    }
    *out = n;
    return 1;
}

typedef struct framing {
    int cl, te;          /* seen */
    int chunked;         /* chunked listed (it may be listed once) */
    int chunked_last;    /* ...and it is the final coding */
    int other;           /* some coding other than chunked listed */
    int conn_upgrade, upgrade;
} framing;

/* Transfer-Encoding lines form one list: every element a token, chunked at most once. */
static int judge_te(cursor *c, framing *f, ferry_view v) {
    list_iter it = list_begin(v);
    ferry_view e;
    f->te = 1;
    while (list_next(&it, &e)) {
        if (!is_token(e)) return fail(c, E(BAD_TE));
        if (ferry__view_ieq(e, "chunked")) {
            if (f->chunked) return fail(c, E(BAD_TE));
            f->chunked = f->chunked_last = 1;
        } else {
            f->other = 1;
            f->chunked_last = 0;
        }
    }
    return P_OK;
}

static void judge_connection(ferry__http_msg *m, framing *f, ferry_view v) {
    if (ferry__http_list_has(v, "close")) m->flags |= FERRY__HTTP_CONN_CLOSE;
    if (ferry__http_list_has(v, "keep-alive")) m->flags |= FERRY__HTTP_CONN_KEEP_ALIVE;
    if (ferry__http_list_has(v, "upgrade")) f->conn_upgrade = 1;
}

/* One pass over the fields in order, so the first offending field decides the error.
 * ignore_framing: a 2xx answer to CONNECT, whose CL/TE a client must ignore. */
static int judge_fields(cursor *c, ferry__http_msg *m, int request, int ignore_framing,
                        framing *f) {
    for (unsigned i = 0; i < m->nheaders; i++) {
        ferry_view n = m->headers[i].name, v = m->headers[i].value;
        int r = P_OK;
        if (ferry__view_ieq(n, "content-length")) {
            if (ignore_framing) continue;
            if (f->cl) return fail(c, E(DUPLICATE_CL));
            if (!parse_length(v, &m->content_length)) return fail(c, E(BAD_CL));
            f->cl = 1;
        } else if (ferry__view_ieq(n, "transfer-encoding")) {
            if (!ignore_framing) r = judge_te(c, f, v);
        } else if (ferry__view_ieq(n, "connection")) {
            judge_connection(m, f, v);
        } else if (ferry__view_ieq(n, "upgrade")) {
            f->upgrade = 1;
        } else if (request && ferry__view_ieq(n, "host")) {
            if (m->host_index >= 0) return fail(c, E(MULTIPLE_HOST));
            m->host_index = (int)i;
            /* HTTP/1.0 may send it empty, like no Host at all. */
            if (v.len == 0 ? m->version_minor == 1 : !authority_ok(v, PORT_OPTIONAL))
                return fail(c, E(BAD_HOST));
        } else if (request && ferry__view_ieq(n, "expect")) {
            /* RFC 9110 section 10.1.1: ignored in an HTTP/1.0 request. */
            if (m->version_minor == 1 && ferry__view_ieq(v, "100-continue"))
                m->flags |= FERRY__HTTP_EXPECT_CONTINUE;
        }
        if (r != P_OK) return r;
    }
    /* RFC 9112 section 6.1: TE in an HTTP/1.0 message means the framing is faulty. */
    if (f->te && m->version_minor == 0) return fail(c, E(BAD_TE));
    if (f->te && f->cl) return fail(c, E(CL_AND_TE));
    if (m->version_minor == 0 && !(m->flags & FERRY__HTTP_CONN_KEEP_ALIVE))
        m->flags |= FERRY__HTTP_CONN_CLOSE;
    /* HTTP/1.0 cannot upgrade (RFC 9110 section 7.8). */
    if (f->conn_upgrade && f->upgrade && m->version_minor == 1)
        m->flags |= FERRY__HTTP_CONN_UPGRADE;
    return P_OK;
}

static int judge_request(cursor *c, ferry__http_msg *m) {
    framing f = {0};
    int r = judge_fields(c, m, 1, 0, &f);
    if (r != P_OK) return r;
    /* We decode no codings, so anything but a lone chunked is refused, not guessed at. */
    if (f.te && (f.other || !f.chunked_last)) return fail(c, E(TE_NOT_CHUNKED));
    if (m->version_minor == 1 && m->host_index < 0) return fail(c, E(MISSING_HOST));
    m->body = f.te ? FERRY__BODY_CHUNKED : f.cl ? FERRY__BODY_LENGTH : FERRY__BODY_NONE;
    return P_OK;
}

/* RFC 9112 section 6.3, in its order. */
static int judge_response(cursor *c, ferry__http_msg *m, ferry_view request_method) {
    int s = m->status;
    int tunnel = s >= 200 && s < 300 && view_eq(request_method, "CONNECT");
    framing f = {0};
    int r = judge_fields(c, m, 0, tunnel, &f);
    if (r != P_OK) return r;
    if (view_eq(request_method, "HEAD") || (s >= 100 && s < 200) || s == 204 || s == 304 ||
        tunnel)
        m->body = FERRY__BODY_NONE;
    else if (f.te)
        m->body = f.chunked_last ? FERRY__BODY_CHUNKED : FERRY__BODY_UNTIL_CLOSE;
    else if (f.cl)
        m->body = FERRY__BODY_LENGTH;
    else
        m->body = FERRY__BODY_UNTIL_CLOSE;
    return P_OK;
}

/* ---- entry points ---- */

static void msg_reset(ferry__http_msg *m) {
    ferry_http_header *headers = m->headers;
    memset(m, 0, sizeof *m);
    m->headers = headers;
    m->host_index = -1;
}

static int finish(cursor *c, int r, ferry__http_error *err) {
    if (r == P_FAIL) {
        *err = c->err;
        return -1;
    }
    *err = E(NONE);
    return r == P_MORE ? 0 : (int)c->pos;
}

int ferry__http_parse_request(const char *buf, size_t len, const ferry__http_limits *limits,
                              ferry__http_msg *msg, ferry__http_error *err) {
    cursor c;
    cursor_init(&c, buf, len, limits, E(LINE_TOO_LONG));
    msg_reset(msg);
    int r = skip_empty_lines(&c);
    if (r == P_OK) r = parse_request_line(&c, msg);
    if (r == P_OK) r = parse_fields(&c, msg, limits->max_headers);
    if (r == P_OK) r = judge_request(&c, msg);
    return finish(&c, r, err);
}

int ferry__http_parse_response(const char *buf, size_t len, const ferry__http_limits *limits,
                               ferry_view request_method, ferry__http_msg *msg,
                               ferry__http_error *err) {
    cursor c;
    /* An over-long status line is the upstream's fault, not a 414 for the client. */
    cursor_init(&c, buf, len, limits, E(BAD_STATUS));
    msg_reset(msg);
    int r = parse_status_line(&c, msg);
    if (r == P_OK) r = parse_fields(&c, msg, limits->max_headers);
    if (r == P_OK) r = judge_response(&c, msg, request_method);
    return finish(&c, r, err);
}

/* ---- chunked transfer coding (RFC 9112 section 7.1) ---- */

enum chunked_state {
    C_SIZE,            /* chunk-size hex digits */
    C_BWS,             /* BWS after the size or an extension value: ';' must follow */
    C_EXT_NAME_START,  /* after ';' */
    C_EXT_NAME,
    C_EXT_NAME_BWS,    /* BWS after a name: '=' or ';' must follow */
    C_EXT_VALUE_START, /* after '=' */
    C_EXT_TOKEN,
    C_EXT_QUOTED,
    C_EXT_QUOTED_PAIR, /* after a backslash in a quoted-string */
    C_EXT_QUOTED_END,  /* after the closing quote */
    C_SIZE_LF,         /* CR seen at the end of the size line */
    C_DATA,
    C_DATA_CR,
    C_DATA_LF,
    C_TRAILER_START, /* start of a trailer line, or the CRLF that ends the message */
    C_TRAILER_NAME,
    C_TRAILER_VALUE,
    C_TRAILER_LF,
    C_END_LF,
    C_DONE,
    C_ERROR = 64 /* + the error, so a failed decoder keeps failing the same way */
};

void ferry__chunked_init(ferry__chunked *c) {
    memset(c, 0, sizeof *c);
    c->state = C_SIZE;
    c->max_line = 4096;
    c->max_trailer = 65536;
}

/* One content byte of the size line (the CR ends it; LF was handled by the caller). */
static ferry__http_error size_line_step(ferry__chunked *c, unsigned char b) {
    int st = c->state;
    if (st == C_SIZE && is_hex(b)) {
        unsigned d = (unsigned)hex_value(b);
        /* line_bytes counts the digits so far. Sizes stay below 2^63 like lengths do. */
        if (c->line_bytes >= 16 || c->remaining > ((uint64_t)INT64_MAX - d) / 16)
            return E(BAD_CHUNK_SIZE);
        c->remaining = c->remaining * 16 + d;
        return E(NONE);
    }
    if (st == C_SIZE && c->line_bytes == 0) return E(BAD_CHUNK_SIZE);
    if (st == C_EXT_QUOTED) {
        if (b == '"')
            c->state = C_EXT_QUOTED_END;
        else if (b == '\\')
            c->state = C_EXT_QUOTED_PAIR;
        else if (!is_field_char(b))
            return E(BAD_CHUNK_EXT);
        return E(NONE);
    }
    if (st == C_EXT_QUOTED_PAIR) {
        if (!is_field_char(b)) return E(BAD_CHUNK_EXT);
        c->state = C_EXT_QUOTED;
        return E(NONE);
    }
    /* Where a token may continue, it does. */
    if ((st == C_EXT_NAME_START || st == C_EXT_NAME) && is_tchar(b)) {
        c->state = C_EXT_NAME;
        return E(NONE);
    }
    if ((st == C_EXT_VALUE_START || st == C_EXT_TOKEN) && is_tchar(b)) {
        c->state = C_EXT_TOKEN;
        return E(NONE);
    }
    if (st == C_EXT_VALUE_START && b == '"') {
        c->state = C_EXT_QUOTED;
        return E(NONE);
    }
    /* BWS is allowed around ';' and '=' but not before the CRLF. */
    int complete = st == C_SIZE || st == C_EXT_NAME || st == C_EXT_TOKEN || st == C_EXT_QUOTED_END;
    int bws = st == C_BWS || st == C_EXT_NAME_BWS;
    if (b == '\r' && complete) {
        c->state = C_SIZE_LF;
    } else if (b == ';' && (complete || bws)) {
        c->state = C_EXT_NAME_START;
    } else if (b == '=' && (st == C_EXT_NAME || st == C_EXT_NAME_BWS)) {
        c->state = C_EXT_VALUE_START;
    } else if (is_ws(b) && (complete || bws || st == C_EXT_NAME_START || st == C_EXT_VALUE_START)) {
        if (st == C_EXT_NAME) c->state = C_EXT_NAME_BWS;
        else if (complete) c->state = C_BWS;
    } else {
        return st == C_SIZE ? E(BAD_CHUNK_SIZE) : E(BAD_CHUNK_EXT);
    }
    return E(NONE);
}

/* A byte of a trailer line, counted against the trailer limit. */
static ferry__http_error trailer_step(ferry__chunked *c, unsigned char b) {
    if (c->trailer_bytes >= c->max_trailer) return E(TRAILER_TOO_LARGE);
    c->trailer_bytes++;
    c->line_bytes++;
    switch (c->state) {
    case C_TRAILER_START:
        if (b == '\n') return E(BARE_LF);
        if (!is_tchar(b)) return E(BAD_TRAILER); /* includes obs-fold */
        c->state = C_TRAILER_NAME;
        return E(NONE);
    case C_TRAILER_NAME:
        if (b == ':') c->state = C_TRAILER_VALUE;
        else if (b == '\n') return E(BARE_LF);
        else if (!is_tchar(b)) return E(BAD_TRAILER);
        return E(NONE);
    case C_TRAILER_VALUE:
        if (b == '\r') c->state = C_TRAILER_LF;
        else if (b == '\n') return E(BARE_LF);
        else if (!is_field_char(b)) return E(BAD_TRAILER);
        return E(NONE);
    default: /* C_TRAILER_LF */
        if (b != '\n') return E(BARE_CR);
        c->state = C_TRAILER_START;
        c->line_bytes = 0;
        return E(NONE);
    }
}

/* One framing byte (anything but chunk data). */
static ferry__http_error chunked_step(ferry__chunked *c, unsigned char b) {
    ferry__http_error e;
    switch (c->state) {
    case C_SIZE_LF:
        if (b != '\n') return E(BARE_CR);
        c->line_bytes = 0;
        c->state = c->remaining > 0 ? C_DATA : C_TRAILER_START;
        return E(NONE);
    case C_DATA_CR:
        if (b == '\r') c->state = C_DATA_LF;
        else return b == '\n' ? E(BARE_LF) : E(BAD_CHUNK_END);
        return E(NONE);
    case C_DATA_LF:
        if (b != '\n') return E(BARE_CR);
        c->state = C_SIZE;
        return E(NONE);
    case C_TRAILER_START:
        if (b == '\r') {
            c->state = C_END_LF;
            return E(NONE);
        }
        return trailer_step(c, b);
    case C_TRAILER_NAME:
    case C_TRAILER_VALUE:
    case C_TRAILER_LF:
        return trailer_step(c, b);
    case C_END_LF:
        if (b != '\n') return E(BARE_CR);
        c->state = C_DONE;
        return E(NONE);
    default: /* the size line */
        if (b == '\n') return E(BARE_LF);
        if (b != '\r' && c->line_bytes >= c->max_line)
            return c->state == C_SIZE ? E(BAD_CHUNK_SIZE) : E(BAD_CHUNK_EXT);
        e = size_line_step(c, b);
        if (b != '\r') c->line_bytes++;
        return e;
    }
}

int ferry__chunked_decode(ferry__chunked *c, const char *buf, size_t len, size_t *consumed,
                          ferry_view *data, ferry__http_error *err) {
    size_t pos = 0;
    *consumed = 0;
    if (c->state >= C_ERROR) {
        *err = (ferry__http_error)(c->state - C_ERROR);
        return FERRY__CHUNKED_ERROR;
    }
    while (c->state != C_DONE && pos < len) {
        if (c->state == C_DATA) {
            size_t avail = len - pos;
            size_t n = c->remaining < avail ? (size_t)c->remaining : avail;
            *data = make_view(buf + pos, n);
            c->remaining -= n;
            if (c->remaining == 0) c->state = C_DATA_CR;
            *consumed = pos + n;
            return FERRY__CHUNKED_DATA;
        }
        ferry__http_error e = chunked_step(c, byte_at(buf, pos));
        if (e != E(NONE)) {
            c->state = (uint8_t)(C_ERROR + e);
            *consumed = pos;
            *err = e;
            return FERRY__CHUNKED_ERROR;
        }
        pos++;
    }
    *consumed = pos;
    return c->state == C_DONE ? FERRY__CHUNKED_DONE : FERRY__CHUNKED_NEED_MORE;
}
