/* SOCKS4/4a/5 and RFC 1929 wire formats, as specified in socks.h.
 *
 * Every parser checks the bytes in the order they arrive and judges each field as soon as
 * the bytes it needs are there, so a prefix of a message is either "need more" or already
 * refused for the very reason the whole message would be. Text fields are bounded while
 * they arrive: a user id or name past its limit fails on the first byte too many instead
 * of waiting for a NUL that may never come. */
#include "socks.h"

#include <arpa/inet.h>
#include <string.h>

#define E(name) FERRY__SOCKS_E_##name

enum { FIELD_MAX = 255 }; /* longest user id, domain, user name or password */

const char *ferry__socks_error_text(int err) {
    switch (err) {
    case E(VERSION): return "unsupported SOCKS version";
    case E(METHODS): return "SOCKS5 greeting offers no method";
    case E(COMMAND): return "unsupported SOCKS command";
    case E(ATYP): return "unsupported SOCKS address type";
    case E(HOST): return "invalid destination host name";
    case E(TOO_LONG): return "SOCKS4 user id or domain too long";
    case E(PORT): return "destination port 0";
    case E(RESERVED): return "SOCKS5 reserved byte not zero";
    case E(CREDS): return "invalid user name or password";
    case E(FRAGMENT): return "fragmented SOCKS5 UDP datagram";
    case E(REPLY): return "malformed reply from the SOCKS5 parent";
    case E(TRUNCATED): return "SOCKS5 UDP datagram shorter than its header";
    default: return "unknown SOCKS error";
    }
}

/* What may reach the resolver: letters, digits, '-', '.', '_'. */
static int is_host_char(unsigned char b) {
    return ((b | 0x20) >= 'a' && (b | 0x20) <= 'z') || (b >= '0' && b <= '9') || b == '-' ||
           b == '.' || b == '_';
}

static uint16_t get16(const unsigned char *p) { return (uint16_t)(p[0] << 8 | p[1]); }

static void put16(char *out, uint16_t v) {
    out[0] = (char)(v >> 8);
    out[1] = (char)v;
}

/* A NUL-terminated SOCKS4 field at p[at..len) copied into out: returns the offset after
 * its NUL, 0 if the NUL has not arrived, or an error. Domains must be valid host names. */
static int take_cstring(const unsigned char *p, size_t len, size_t at, char out[FIELD_MAX + 1],
                        int domain) {
    for (size_t i = 0; at + i < len; i++) {
        unsigned char b = p[at + i];
        if (b == 0) {
            if (domain && i == 0) return E(HOST);
            out[i] = '\0';
            return (int)(at + i + 1);
        }
        if (i == FIELD_MAX) return E(TOO_LONG);
        if (domain && !is_host_char(b)) return E(HOST);
        out[i] = (char)b;
    }
    return 0;
}

/* ATYP ADDR PORT at p[at..len): returns the offset after the port, 0 if incomplete, or an
 * error. With host NULL the address is only measured (a parent's bound address, which we
 * never use); otherwise it is checked and written out as text. */
static int parse_address(const unsigned char *p, size_t len, size_t at, uint8_t *atyp,
                         char *host, uint16_t *port) {
    if (at >= len) return 0;
    size_t addr_len;
    switch (*atyp = p[at++]) {
    case FERRY__SOCKS_ATYP_IPV4: addr_len = 4; break;
    case FERRY__SOCKS_ATYP_IPV6: addr_len = 16; break;
    case FERRY__SOCKS_ATYP_DOMAIN:
        if (at >= len) return 0;
        addr_len = p[at++];
        if (host && addr_len == 0) return E(HOST);
        for (size_t i = 0; host && i < addr_len && at + i < len; i++)
            if (!is_host_char(p[at + i])) return E(HOST);
        break;
    default: return E(ATYP);
    }
    if (len - at < addr_len + 2) return 0;
    if (host) {
        if (*atyp == FERRY__SOCKS_ATYP_DOMAIN) {
            memcpy(host, p + at, addr_len);
            host[addr_len] = '\0';
        } else {
            int family = *atyp == FERRY__SOCKS_ATYP_IPV4 ? AF_INET : AF_INET6;
            inet_ntop(family, p + at, host, FERRY__SOCKS_HOST_MAX);
        }
    }
    *port = get16(p + at + addr_len);
    return (int)(at + addr_len + 2);
}

int ferry__socks4_parse_request(const char *buf, size_t len, ferry__socks_request *out) {
    const unsigned char *p = (const unsigned char *)buf;
    if (len < 1) return 0;
    if (p[0] != 4) return E(VERSION);
    if (len < 2) return 0;
    if (p[1] != FERRY__SOCKS_CONNECT && p[1] != FERRY__SOCKS_BIND) return E(COMMAND);
    if (len < 4) return 0;
    uint16_t port = get16(p + 2);
    if (port == 0) return E(PORT);
    if (len < 8) return 0;
    int end = take_cstring(p, len, 8, out->user, 0);
    if (end <= 0) return end;
    int socks4a = p[4] == 0 && p[5] == 0 && p[6] == 0 && p[7] != 0;
    if (socks4a) {
        end = take_cstring(p, len, (size_t)end, out->host, 1);
        if (end <= 0) return end;
    } else {
        inet_ntop(AF_INET, p + 4, out->host, sizeof out->host);
    }
    out->version = 4;
    out->cmd = p[1];
    out->atyp = socks4a ? FERRY__SOCKS_ATYP_DOMAIN : FERRY__SOCKS_ATYP_IPV4;
    out->port = port;
    return end;
}

int ferry__socks5_parse_greeting(const char *buf, size_t len, unsigned *methods) {
    const unsigned char *p = (const unsigned char *)buf;
    if (len < 1) return 0;
    if (p[0] != 5) return E(VERSION);
    if (len < 2) return 0;
    size_t n = p[1];
    if (n == 0) return E(METHODS);
    if (len < 2 + n) return 0;
    unsigned offered = 0;
    for (size_t i = 0; i < n; i++)
        if (p[2 + i] == FERRY__SOCKS5_NO_AUTH || p[2 + i] == FERRY__SOCKS5_USERPASS)
            offered |= 1u << p[2 + i];
    *methods = offered;
    return (int)(2 + n);
}

/* A length-prefixed RFC 1929 field at p[at..len) into out; the offset after it, 0 if
 * incomplete, or E(CREDS) for a NUL (it would cut the C string short) or a missing name. */
static int take_credential(const unsigned char *p, size_t len, size_t at, int may_be_empty,
                           char out[FERRY__SOCKS_CRED_MAX]) {
    if (at >= len) return 0;
    size_t n = p[at++];
    if (n == 0 && !may_be_empty) return E(CREDS);
    if (memchr(p + at, 0, len - at < n ? len - at : n)) return E(CREDS);
    if (len - at < n) return 0;
    memcpy(out, p + at, n);
    out[n] = '\0';
    return (int)(at + n);
}

int ferry__socks5_parse_userpass(const char *buf, size_t len, char user[FERRY__SOCKS_CRED_MAX],
                                 char password[FERRY__SOCKS_CRED_MAX]) {
    const unsigned char *p = (const unsigned char *)buf;
    if (len < 1) return 0;
    if (p[0] != 1) return E(VERSION);
    int end = take_credential(p, len, 1, 0, user);
    if (end <= 0) return end;
    /* RFC 1929 asks for 1-255 password bytes, but clients send empty ones for user-only
     * credentials and rejecting them would only lock those clients out. */
    return take_credential(p, len, (size_t)end, 1, password);
}

int ferry__socks5_parse_request(const char *buf, size_t len, ferry__socks_request *out) {
    const unsigned char *p = (const unsigned char *)buf;
    if (len < 1) return 0;
    if (p[0] != 5) return E(VERSION);
    if (len < 2) return 0;
    if (p[1] < FERRY__SOCKS_CONNECT || p[1] > FERRY__SOCKS_UDP_ASSOCIATE) return E(COMMAND);
    if (len < 3) return 0;
    if (p[2] != 0) return E(RESERVED);
    int end = parse_address(p, len, 3, &out->atyp, out->host, &out->port);
    if (end <= 0) return end;
    if (out->port == 0 && p[1] != FERRY__SOCKS_UDP_ASSOCIATE) return E(PORT);
    out->version = 5;
    out->cmd = p[1];
    out->user[0] = '\0';
    return end;
}

size_t ferry__socks4_reply(uint8_t code, char out[8]) {
    memset(out, 0, 8);
    out[1] = (char)code;
    return 8;
}

size_t ferry__socks5_method_reply(uint8_t method, char out[2]) {
    out[0] = 5;
    out[1] = (char)method;
    return 2;
}

size_t ferry__socks5_auth_reply(uint8_t status, char out[2]) {
    out[0] = 1;
    out[1] = (char)status;
    return 2;
}

/* ATYP ADDR PORT for a socket address; anything but IPv6 or IPv4 becomes 0.0.0.0:0. */
static size_t put_address(char *out, const ferry__sockaddr *a) {
    if (a && a->sa.sa_family == AF_INET6) {
        out[0] = FERRY__SOCKS_ATYP_IPV6;
        memcpy(out + 1, &a->in6.sin6_addr, 16);
        memcpy(out + 17, &a->in6.sin6_port, 2); /* both already in network order */
        return 19;
    }
    out[0] = FERRY__SOCKS_ATYP_IPV4;
    if (a && a->sa.sa_family == AF_INET) {
        memcpy(out + 1, &a->in.sin_addr, 4);
        memcpy(out + 5, &a->in.sin_port, 2);
    } else {
        memset(out + 1, 0, 6);
    }
    return 7;
}

size_t ferry__socks5_reply(uint8_t code, const ferry__sockaddr *bound,
                           char out[FERRY__SOCKS5_REPLY_MAX]) {
    out[0] = 5;
    out[1] = (char)code;
    out[2] = 0;
    return 3 + put_address(out + 3, bound);
}

int ferry__socks5_parse_udp(const char *buf, size_t len, ferry__socks_request *out) {
    const unsigned char *p = (const unsigned char *)buf;
    if (len >= 1 && p[0] != 0) return E(RESERVED);
    if (len >= 2 && p[1] != 0) return E(RESERVED);
    if (len >= 3 && p[2] != 0) return E(FRAGMENT);
    int end = parse_address(p, len, 3, &out->atyp, out->host, &out->port);
    if (end == 0) return E(TRUNCATED);
    if (end < 0) return end;
    if (out->port == 0) return E(PORT);
    out->version = 5;
    out->cmd = FERRY__SOCKS_UDP_ASSOCIATE;
    out->user[0] = '\0';
    return end;
}

size_t ferry__socks5_udp_header(const ferry__sockaddr *from,
                                char out[FERRY__SOCKS_UDP_HEADER_MAX]) {
    out[0] = out[1] = out[2] = 0;
    return 3 + put_address(out + 3, from);
}

/* ---- client side ---- */

size_t ferry__socks5_client_greeting(int with_userpass, char out[4]) {
    out[0] = 5;
    out[1] = with_userpass ? 2 : 1;
    out[2] = FERRY__SOCKS5_NO_AUTH;
    if (!with_userpass) return 3;
    out[3] = FERRY__SOCKS5_USERPASS;
    return 4;
}

/* The two-byte answers of a parent: a fixed version, then the byte we want. */
static int parse_pair(const char *buf, size_t len, uint8_t version, uint8_t *value) {
    if (len < 1) return 0;
    if ((uint8_t)buf[0] != version) return E(REPLY);
    if (len < 2) return 0;
    *value = (uint8_t)buf[1];
    return 2;
}

int ferry__socks5_client_parse_method(const char *buf, size_t len, uint8_t *method) {
    return parse_pair(buf, len, 5, method);
}

size_t ferry__socks5_client_userpass(const char *user, const char *password, char *out,
                                     size_t out_size) {
    size_t ulen = strlen(user), plen = strlen(password);
    if (ulen == 0 || ulen > FIELD_MAX || plen > FIELD_MAX || out_size < 3 + ulen + plen)
        return 0;
    out[0] = 1;
    out[1] = (char)ulen;
    memcpy(out + 2, user, ulen);
    out[2 + ulen] = (char)plen;
    memcpy(out + 3 + ulen, password, plen);
    return 3 + ulen + plen;
}

int ferry__socks5_client_parse_auth(const char *buf, size_t len, uint8_t *status) {
    return parse_pair(buf, len, 1, status);
}

size_t ferry__socks5_client_connect(const char *host, uint16_t port, char *out,
                                    size_t out_size) {
    char addr[2 + FIELD_MAX + 2]; /* ATYP ADDR PORT: a domain makes the longest */
    ferry__sockaddr literal;
    size_t n;
    if (ferry__addr_from_literal(host, port, &literal) == 0) {
        n = put_address(addr, &literal);
    } else {
        size_t host_len = strlen(host);
        if (host_len == 0 || host_len > FIELD_MAX) return 0;
        addr[0] = FERRY__SOCKS_ATYP_DOMAIN;
        addr[1] = (char)host_len;
        memcpy(addr + 2, host, host_len);
        put16(addr + 2 + host_len, port);
        n = 2 + host_len + 2;
    }
    if (out_size < 3 + n) return 0;
    out[0] = 5;
    out[1] = FERRY__SOCKS_CONNECT;
    out[2] = 0;
    memcpy(out + 3, addr, n);
    return 3 + n;
}

int ferry__socks5_client_parse_reply(const char *buf, size_t len, uint8_t *code) {
    const unsigned char *p = (const unsigned char *)buf;
    if (len < 1) return 0;
    if (p[0] != 5) return E(REPLY);
    if (len < 3) return 0;
    if (p[2] != 0) return E(REPLY);
    uint8_t atyp;
    uint16_t port;
    int end = parse_address(p, len, 3, &atyp, NULL, &port);
    if (end < 0) return E(REPLY);
    if (end > 0) *code = p[1];
    return end;
}
