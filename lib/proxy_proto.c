/* PROXY protocol v1 and v2 (HAProxy's proxy-protocol.txt), as specified in proxy_proto.h.
 *
 * Checks run in the order the bytes arrive, so a prefix of a header is either "need more"
 * or already refused for the very reason the whole header would be. A v1 line is judged
 * only once its CRLF is in (its fields are short and the line is capped at 107 bytes);
 * the fixed v2 fields are judged byte by byte, the rest once the whole header is in. */
#include "proxy_proto.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#define E(name) FERRY__PROXY_E_##name

static const char V1_MAGIC[] = "PROXY ";
static const char V2_SIG[] = "\r\n\r\n\0\r\nQUIT\n";
enum {
    V1_MAGIC_LEN = sizeof V1_MAGIC - 1,
    V2_SIG_LEN = sizeof V2_SIG - 1,
    V2_FIXED = V2_SIG_LEN + 4, /* signature, version/command, family, length */
    V2_VERSION = 2,
    TLV_ALPN = 0x01,
    TLV_AUTHORITY = 0x02
};

/* v2 families (high nibble of byte 13) and the bytes their addresses and ports take. */
enum { FAM_UNSPEC, FAM_INET, FAM_INET6, FAM_UNIX, NFAMILIES };
static const size_t family_len[NFAMILIES] = {0, 2 * 4 + 4, 2 * 16 + 4, 2 * 108};

const char *ferry__proxy_error_text(int err) {
    switch (err) {
    case E(SIGNATURE): return "not a PROXY protocol header";
    case E(TOO_LONG): return "PROXY protocol header too long";
    case E(LINE): return "malformed PROXY v1 line";
    case E(PROTOCOL): return "unsupported PROXY v1 protocol";
    case E(ADDRESS): return "invalid PROXY v1 address";
    case E(PORT): return "invalid PROXY v1 port";
    case E(VERSION): return "unsupported PROXY protocol version";
    case E(COMMAND): return "unsupported PROXY v2 command";
    case E(FAMILY): return "invalid PROXY v2 address family or transport";
    case E(LENGTH): return "PROXY v2 length too short for its addresses";
    case E(TLV): return "malformed PROXY v2 TLV";
    default: return "unknown PROXY protocol error";
    }
}

static size_t min_size(size_t a, size_t b) { return a < b ? a : b; }

static uint16_t get16(const unsigned char *p) { return (uint16_t)(p[0] << 8 | p[1]); }

static void put16(char *out, size_t v) {
    out[0] = (char)(v >> 8);
    out[1] = (char)v;
}

/* An address of `family` from its text [s, s + n). */
static int v1_address(const char *s, size_t n, int family, ferry__sockaddr *a) {
    char text[INET6_ADDRSTRLEN];
    /* A NUL would end the copy early and let trailing bytes slip past inet_pton. */
    if (n >= sizeof text || memchr(s, '\0', n)) return E(ADDRESS);
    memcpy(text, s, n);
    text[n] = '\0';
    void *bytes = family == AF_INET ? (void *)&a->in.sin_addr : (void *)&a->in6.sin6_addr;
    if (inet_pton(family, text, bytes) != 1) return E(ADDRESS);
    a->sa.sa_family = (sa_family_t)family;
    return 0;
}

/* A port from [s, s + n), stored in network order. */
static int v1_port(const char *s, size_t n, ferry__sockaddr *a) {
    if (n > 5 || (s[0] == '0' && n > 1)) return E(PORT);
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return E(PORT);
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > 65535) return E(PORT);
    uint16_t net = htons((uint16_t)v);
    if (a->sa.sa_family == AF_INET)
        a->in.sin_port = net;
    else
        a->in6.sin6_port = net;
    return 0;
}

static int decode_v1(const char *buf, size_t len, ferry__proxy_header *h) {
    if (memcmp(buf, V1_MAGIC, min_size(len, V1_MAGIC_LEN)) != 0) return E(SIGNATURE);
    const char *lf = memchr(buf, '\n', min_size(len, FERRY__PROXY_V1_MAX));
    if (!lf) return len >= FERRY__PROXY_V1_MAX ? E(TOO_LONG) : 0;
    if (lf[-1] != '\r') return E(LINE); /* the magic holds no LF, so lf[-1] is ours */
    const char *p = buf + V1_MAGIC_LEN, *end = lf - 1;
    const char *sp = memchr(p, ' ', (size_t)(end - p));
    size_t n = (size_t)((sp ? sp : end) - p);
    h->version = 1;
    h->command = FERRY__PROXY_PROXY;
    h->len = (size_t)(lf + 1 - buf);
    /* UNKNOWN: the spec has the receiver ignore whatever follows it. */
    if (n == 7 && memcmp(p, "UNKNOWN", 7) == 0) return (int)h->len;
    if (n == 0) return E(LINE);
    if (n != 4 || memcmp(p, "TCP", 3) != 0 || (p[3] != '4' && p[3] != '6')) return E(PROTOCOL);
    int family = p[3] == '4' ? AF_INET : AF_INET6;
    const char *field[4];
    size_t field_len[4];
    for (int i = 0; i < 4; i++) {
        if (!sp) return E(LINE);
        field[i] = sp + 1;
        sp = memchr(field[i], ' ', (size_t)(end - field[i]));
        field_len[i] = (size_t)((sp ? sp : end) - field[i]);
        if (field_len[i] == 0) return E(LINE);
    }
    if (sp) return E(LINE);
    int r;
    if ((r = v1_address(field[0], field_len[0], family, &h->src)) < 0 ||
        (r = v1_address(field[1], field_len[1], family, &h->dst)) < 0 ||
        (r = v1_port(field[2], field_len[2], &h->src)) < 0 ||
        (r = v1_port(field[3], field_len[3], &h->dst)) < 0)
        return r;
    h->transport = FERRY__PROXY_STREAM;
    return (int)h->len;
}

/* The TLVs filling [p, p + n): each must fit, and the ones we expose appear once. */
static int v2_tlvs(const unsigned char *p, size_t n, ferry__proxy_header *h) {
    while (n > 0) {
        if (n < 3) return E(TLV);
        size_t vlen = get16(p + 1);
        if (n - 3 < vlen) return E(TLV);
        ferry_view *v = p[0] == TLV_ALPN ? &h->alpn : p[0] == TLV_AUTHORITY ? &h->authority : NULL;
        if (v) {
            if (v->ptr) return E(TLV); /* which one would the backend see? */
            v->ptr = (const char *)p + 3;
            v->len = vlen;
        }
        p += 3 + vlen;
        n -= 3 + vlen;
    }
    return 0;
}

static int decode_v2(const unsigned char *p, size_t len, size_t max_v2, ferry__proxy_header *h) {
    if (memcmp(p, V2_SIG, min_size(len, V2_SIG_LEN)) != 0) return E(SIGNATURE);
    if (len <= V2_SIG_LEN) return 0;
    if (p[12] >> 4 != V2_VERSION) return E(VERSION);
    unsigned command = p[12] & 0x0f;
    if (command != FERRY__PROXY_LOCAL && command != FERRY__PROXY_PROXY) return E(COMMAND);
    if (len <= 13) return 0;
    unsigned family = p[13] >> 4, transport = p[13] & 0x0f;
    int proxy = command == FERRY__PROXY_PROXY;
    /* The spec's combinations: UNSPEC alone, or a family with STREAM or DGRAM. */
    if (proxy && (family >= NFAMILIES || transport > FERRY__PROXY_DGRAM ||
                  (family == FAM_UNSPEC) != (transport == FERRY__PROXY_UNSPEC)))
        return E(FAMILY);
    if (len < V2_FIXED) return 0;
    size_t total = V2_FIXED + get16(p + 14);
    if (max_v2 != 0 && total > max_v2) return E(TOO_LONG);
    size_t addr_len = proxy ? family_len[family] : 0;
    if (total - V2_FIXED < addr_len) return E(LENGTH);
    if (len < total) return 0;

    h->version = 2;
    h->command = (uint8_t)command;
    h->transport = (uint8_t)(proxy ? transport : FERRY__PROXY_UNSPEC);
    h->len = total;
    const unsigned char *a = p + V2_FIXED;
    if (proxy && family == FAM_INET) {
        h->src.in.sin_family = h->dst.in.sin_family = AF_INET;
        memcpy(&h->src.in.sin_addr, a, 4);
        memcpy(&h->dst.in.sin_addr, a + 4, 4);
        memcpy(&h->src.in.sin_port, a + 8, 2);
        memcpy(&h->dst.in.sin_port, a + 10, 2);
    } else if (proxy && family == FAM_INET6) {
        h->src.in6.sin6_family = h->dst.in6.sin6_family = AF_INET6;
        memcpy(&h->src.in6.sin6_addr, a, 16);
        memcpy(&h->dst.in6.sin6_addr, a + 16, 16);
        memcpy(&h->src.in6.sin6_port, a + 32, 2);
        memcpy(&h->dst.in6.sin6_port, a + 34, 2);
    }
    /* Without a family there is no telling where addresses end and TLVs begin. */
    if (proxy && family != FAM_UNSPEC) {
        int r = v2_tlvs(a + addr_len, total - V2_FIXED - addr_len, h);
        if (r < 0) return r;
    }
    return (int)total;
}

int ferry__proxy_decode(const char *buf, size_t len, size_t max_v2, ferry__proxy_header *out) {
    if (len == 0) return 0;
    /* Built aside so a refused header leaves *out alone. */
    ferry__proxy_header h;
    memset(&h, 0, sizeof h);
    int r = buf[0] == V2_SIG[0] ? decode_v2((const unsigned char *)buf, len, max_v2, &h)
                                : decode_v1(buf, len, &h);
    if (r > 0) *out = h;
    return r;
}

static int is_ip(const ferry__sockaddr *a) {
    return a && (a->sa.sa_family == AF_INET || a->sa.sa_family == AF_INET6);
}

/* `a` as IPv6: an IPv4 address becomes IPv4-mapped (::ffff:a.b.c.d). */
static void as_ipv6(const ferry__sockaddr *a, ferry__sockaddr *out) {
    if (a->sa.sa_family == AF_INET6) {
        *out = *a;
        return;
    }
    memset(out, 0, sizeof *out);
    out->in6.sin6_family = AF_INET6;
    out->in6.sin6_port = a->in.sin_port;
    out->in6.sin6_addr.s6_addr[10] = out->in6.sin6_addr.s6_addr[11] = 0xff;
    memcpy(&out->in6.sin6_addr.s6_addr[12], &a->in.sin_addr, 4);
}

/* The family both addresses are sent in: AF_INET or AF_INET6 when they share it; AF_INET6
 * with the IPv4 one mapped into *src / *dst (pointed at the copies in `room`) when they
 * differ, as HAProxy does (a client reaching an IPv6 listener through an IPv4 PROXY
 * header, say); 0 when either is missing or not IP (sent as UNKNOWN). */
static int ip_pair(const ferry__sockaddr **src, const ferry__sockaddr **dst,
                   ferry__sockaddr room[2]) {
    if (!is_ip(*src) || !is_ip(*dst)) return 0;
    if ((*src)->sa.sa_family == (*dst)->sa.sa_family) return (*src)->sa.sa_family;
    as_ipv6(*src, &room[0]);
    as_ipv6(*dst, &room[1]);
    *src = &room[0];
    *dst = &room[1];
    return AF_INET6;
}

static const void *ip_bytes(const ferry__sockaddr *a) {
    return a->sa.sa_family == AF_INET ? (const void *)&a->in.sin_addr : (const void *)&a->in6.sin6_addr;
}

size_t ferry__proxy_encode_v1(const ferry__sockaddr *src, const ferry__sockaddr *dst, char *out,
                              size_t out_size) {
    char line[2 * INET6_ADDRSTRLEN + 32];
    ferry__sockaddr room[2];
    int family = ip_pair(&src, &dst, room), n;
    if (family) {
        char s[INET6_ADDRSTRLEN], d[INET6_ADDRSTRLEN];
        inet_ntop(family, ip_bytes(src), s, sizeof s);
        inet_ntop(family, ip_bytes(dst), d, sizeof d);
        n = snprintf(line, sizeof line, "PROXY TCP%c %s %s %u %u\r\n", family == AF_INET ? '4' : '6',
                     s, d, (unsigned)ferry__addr_port(src), (unsigned)ferry__addr_port(dst));
    } else {
        n = snprintf(line, sizeof line, "PROXY UNKNOWN\r\n");
    }
    if (n < 0 || (size_t)n > out_size) return 0;
    memcpy(out, line, (size_t)n);
    return (size_t)n;
}

/* The 16 fixed bytes. */
static void v2_fixed(unsigned command, unsigned family, size_t addr_len, char *out) {
    memcpy(out, V2_SIG, V2_SIG_LEN);
    out[12] = (char)(V2_VERSION << 4 | command);
    out[13] = (char)(family << 4 | (family ? FERRY__PROXY_STREAM : FERRY__PROXY_UNSPEC));
    put16(out + 14, addr_len);
}

size_t ferry__proxy_encode_v2(const ferry__sockaddr *src, const ferry__sockaddr *dst, char *out,
                              size_t out_size) {
    ferry__sockaddr room[2];
    int ip = ip_pair(&src, &dst, room);
    unsigned family = ip == AF_INET ? FAM_INET : ip == AF_INET6 ? FAM_INET6 : FAM_UNSPEC;
    size_t addr_len = family_len[family], ip_len = ip == AF_INET ? 4 : 16;
    if (out_size < V2_FIXED + addr_len) return 0;
    v2_fixed(FERRY__PROXY_PROXY, family, addr_len, out);
    if (family) {
        char *a = out + V2_FIXED;
        memcpy(a, ip_bytes(src), ip_len);
        memcpy(a + ip_len, ip_bytes(dst), ip_len);
        put16(a + 2 * ip_len, ferry__addr_port(src));
        put16(a + 2 * ip_len + 2, ferry__addr_port(dst));
    }
    return V2_FIXED + addr_len;
}

size_t ferry__proxy_encode_v2_local(char *out, size_t out_size) {
    if (out_size < V2_FIXED) return 0;
    v2_fixed(FERRY__PROXY_LOCAL, FAM_UNSPEC, 0, out);
    return V2_FIXED;
}
