/* ClientHello server_name extraction, as specified in sni.h.
 *
 * The handshake message is read through a cursor that walks the records in place: each
 * read takes bytes from the current record's fragment and steps over the next record
 * header when the fragment runs out, so a field split across records reads like any other
 * and nothing is copied, except a name or ALPN list that straddles a record boundary
 * (the caller wants one contiguous view). Every length is judged against its enclosing
 * block as soon as it is read, so a prefix is refused for the very reason the whole input
 * would be; FOUND and NO_SNI wait for the end of the hello, which is the only way to see a
 * later duplicate or a length that does not add up. */
#include "sni.h"

#include <string.h>

#define R(name) FERRY__SNI_##name

enum {
    GO = 3,             /* internal: this step is done, carry on */
    RECORD_HEADER = 5,  /* type, version, length */
    RECORD_MAX = 16384, /* TLSPlaintext.length limit */
    CT_HANDSHAKE = 22,
    HS_CLIENT_HELLO = 1,
    EXT_SERVER_NAME = 0,
    EXT_ALPN = 16,
    NAME_HOST = 0,
    SESSION_ID_MAX = 32
};

#define TRY(step)                                                                          \
    do {                                                                                   \
        int r_ = (step);                                                                   \
        if (r_ != GO) return r_;                                                           \
    } while (0)

const char *ferry__sni_result_text(int result) {
    switch (result) {
    case R(NEED_MORE): return "ClientHello incomplete";
    case R(FOUND): return "server name found";
    case R(NO_SNI): return "ClientHello without server name";
    case R(NOT_TLS): return "not a TLS ClientHello";
    case R(MALFORMED): return "malformed ClientHello";
    case R(TOO_LARGE): return "ClientHello too large";
    default: return "unknown SNI result";
    }
}

typedef struct cursor {
    const unsigned char *p;
    size_t len;  /* input bytes available */
    size_t max;  /* input bytes the hello may need */
    size_t pos;  /* next input byte */
    size_t frag; /* bytes left in the current record's fragment */
    size_t want; /* bytes left in the part of the hello being read (header, then body) */
    char *sink;  /* when set, bytes read are also copied here */
} cursor;

/* Can the rest of the hello still end within max? Each byte still wanted takes an input
 * byte, and one more record header at least if the current fragment cannot hold them. */
static int fits(const cursor *c) {
    size_t need = c->want + (c->frag < c->want ? RECORD_HEADER : 0);
    return c->pos <= c->max && need <= c->max - c->pos;
}

/* Steps over the header of the record at pos. The first record tells TLS from anything
 * else (bad = NOT_TLS); after it, only another handshake record may carry the hello. */
static int next_record(cursor *c, int bad) {
    size_t have = c->len - c->pos;
    if (have >= 1 && c->p[c->pos] != CT_HANDSHAKE) return bad;
    if (have >= 2 && c->p[c->pos + 1] != 3) return bad;
    if (have < RECORD_HEADER) return R(NEED_MORE);
    size_t n = (size_t)c->p[c->pos + 3] << 8 | c->p[c->pos + 4];
    /* Empty handshake fragments are forbidden (RFC 8446 5.1, RFC 5246 6.2.1). */
    if (n == 0 || n > RECORD_MAX) return R(MALFORMED);
    c->pos += RECORD_HEADER;
    c->frag = n;
    return fits(c) ? GO : R(TOO_LARGE);
}

/* Moves n bytes on through the hello, crossing records as needed. */
static int advance(cursor *c, size_t n) {
    if (n > c->want) return R(MALFORMED);
    while (n > 0) {
        if (c->frag == 0) TRY(next_record(c, R(MALFORMED)));
        size_t k = n < c->frag ? n : c->frag;
        if (k > c->len - c->pos) k = c->len - c->pos;
        if (k == 0) return R(NEED_MORE);
        if (c->sink) {
            memcpy(c->sink, c->p + c->pos, k);
            c->sink += k;
        }
        c->pos += k;
        c->frag -= k;
        c->want -= k;
        n -= k;
    }
    return GO;
}

/* A big-endian integer of n (<= 3) bytes. */
static int take(cursor *c, size_t n, size_t *v) {
    *v = 0;
    for (size_t i = 0; i < n; i++) {
        TRY(advance(c, 1));
        *v = *v << 8 | c->p[c->pos - 1];
    }
    return GO;
}

/* Starts reading an n-byte field (0 < n <= want, checked by the caller against its
 * enclosing block) that the caller wants as one view: in place if one record holds it,
 * else (while the caller reads it through the cursor) copied into buf when it fits cap
 * bytes, else {NULL, 0}. The caller clears c->sink when done. */
static int open_span(cursor *c, size_t n, char *buf, size_t cap, ferry_view *v) {
    if (c->frag == 0) TRY(next_record(c, R(MALFORMED)));
    if (c->frag >= n) {
        *v = (ferry_view){(const char *)c->p + c->pos, n};
    } else {
        c->sink = n <= cap ? buf : NULL;
        *v = (ferry_view){c->sink, c->sink ? n : 0};
    }
    return GO;
}

/* A plain DNS name: [A-Za-z0-9_-] labels joined by dots, one trailing dot dropped. */
static int host_ok(ferry_view *name) {
    if (name->len > 1 && name->ptr[name->len - 1] == '.') name->len--;
    for (size_t i = 0; i < name->len; i++) {
        unsigned char b = (unsigned char)name->ptr[i];
        int dot_ok = i > 0 && i + 1 < name->len && name->ptr[i - 1] != '.';
        if (b == '.' ? !dot_ok
                     : !(((b | 0x20) >= 'a' && (b | 0x20) <= 'z') || (b >= '0' && b <= '9') ||
                         b == '-' || b == '_'))
            return 0;
    }
    return 1;
}

/* RFC 6066 3: ServerNameList server_name_list<1..2^16-1>, entries name_type + opaque
 * <1..2^16-1>. Entries of other types are skipped (their layout is assumed to be the
 * same, as deployed parsers do); at most one host_name. */
static int server_name(cursor *c, size_t ext_len, ferry__sni_hello *out, int *found) {
    size_t list, type, n;
    if (ext_len < 2) return R(MALFORMED);
    TRY(take(c, 2, &list));
    if (list == 0 || list != ext_len - 2) return R(MALFORMED);
    while (list > 0) {
        if (list < 3) return R(MALFORMED);
        TRY(take(c, 1, &type));
        TRY(take(c, 2, &n));
        if (n > list - 3) return R(MALFORMED);
        list -= 3 + n;
        if (type != NAME_HOST) {
            TRY(advance(c, n));
            continue;
        }
        if (*found || n == 0 || n > FERRY__SNI_NAME_MAX) return R(MALFORMED);
        TRY(open_span(c, n, out->name_buf, sizeof out->name_buf, &out->server_name));
        TRY(advance(c, n));
        c->sink = NULL;
        if (!host_ok(&out->server_name)) return R(MALFORMED);
        *found = 1;
    }
    return GO;
}

/* RFC 7301 3.1: ProtocolNameList protocol_name_list<2..2^16-1>, names opaque <1..2^8-1>,
 * walked through the cursor so that a list too long to copy is still checked. */
static int alpn(cursor *c, size_t ext_len, ferry__sni_hello *out) {
    size_t list, n;
    if (ext_len < 2) return R(MALFORMED);
    TRY(take(c, 2, &list));
    if (list < 2 || list != ext_len - 2) return R(MALFORMED);
    TRY(open_span(c, list, out->alpn_buf, sizeof out->alpn_buf, &out->alpn));
    while (list > 0) {
        TRY(take(c, 1, &n));
        if (n == 0 || n > list - 1) return R(MALFORMED);
        TRY(advance(c, n));
        list -= 1 + n;
    }
    c->sink = NULL;
    out->alpn_offered = 1;
    return GO;
}

int ferry__sni_alpn_next(ferry_view *list, ferry_view *proto) {
    /* A list not from the parser may lie about its last length: it just ends there. */
    if (list->len == 0 || (unsigned char)list->ptr[0] >= list->len) return 0;
    size_t n = (unsigned char)list->ptr[0];
    *proto = (ferry_view){list->ptr + 1, n};
    list->ptr += 1 + n;
    list->len -= 1 + n;
    return 1;
}

/* The ClientHello body (RFC 8446 4.1.2 / RFC 5246 7.4.1.2), c->want bytes long. */
static int hello_body(cursor *c, ferry__sni_hello *out) {
    size_t v, n, type;
    int seen_sni = 0, seen_alpn = 0, host = 0;
    TRY(take(c, 2, &v));
    if (v >> 8 != 3) return R(MALFORMED);
    out->hello_version = (uint16_t)v;
    TRY(advance(c, 32)); /* random */
    TRY(take(c, 1, &n));
    if (n > SESSION_ID_MAX) return R(MALFORMED);
    TRY(advance(c, n));
    TRY(take(c, 2, &n));
    if (n == 0 || n % 2) return R(MALFORMED);
    TRY(advance(c, n));
    TRY(take(c, 1, &n));
    if (n == 0) return R(MALFORMED);
    TRY(advance(c, n));
    /* Extensions may be absent altogether before TLS 1.3. */
    if (c->want > 0) {
        TRY(take(c, 2, &n));
        if (n != c->want) return R(MALFORMED);
    }
    while (c->want > 0) {
        TRY(take(c, 2, &type));
        TRY(take(c, 2, &n));
        if (n > c->want) return R(MALFORMED);
        if (type == EXT_SERVER_NAME) {
            if (seen_sni++) return R(MALFORMED);
            TRY(server_name(c, n, out, &host));
        } else if (type == EXT_ALPN) {
            if (seen_alpn++) return R(MALFORMED);
            TRY(alpn(c, n, out));
        } else {
            TRY(advance(c, n));
        }
    }
    return host ? R(FOUND) : R(NO_SNI);
}

int ferry__sni_parse(const char *buf, size_t len, size_t max, ferry__sni_hello *out) {
    cursor c = {(const unsigned char *)buf, len, max ? max : FERRY__SNI_MAX_DEFAULT, 0, 0, 0,
                NULL};
    size_t type, body;
    out->server_name = out->alpn = (ferry_view){NULL, 0};
    out->alpn_offered = 0;
    c.want = 4; /* the handshake header, until its length is known */
    TRY(next_record(&c, R(NOT_TLS)));
    out->record_version = (uint16_t)(c.p[1] << 8 | c.p[2]);
    TRY(take(&c, 1, &type));
    if (type != HS_CLIENT_HELLO) return R(NOT_TLS);
    TRY(take(&c, 3, &body));
    c.want = body;
    if (!fits(&c)) return R(TOO_LARGE);
    int r = hello_body(&c, out);
    if (r == R(FOUND) || r == R(NO_SNI)) out->end = c.pos;
    return r;
}
