/* Fuzz target: the SOCKS parsers (lib/socks.c). The first input byte picks the parser, the
 * rest is the message, given from an exact-size heap copy. Checked on every input:
 * - the result is in range: a length no larger than the input, 0, or an error this parser
 *   can produce (a UDP datagram is never "need more");
 * - what a success filled in is NUL-terminated within its array, and a domain holds only
 *   [A-Za-z0-9._-];
 * - the fields agree with the bytes, judged apart from the parser: the length is recomputed
 *   from the wire format, and messages our encoders can write are written back from the
 *   fields and must come out byte for byte as they went in;
 * - every prefix shorter than the length used is "need more" (a datagram: truncated), and
 *   every prefix of a refused input is "need more" or that very error;
 * - parsing again into outputs holding other garbage gives the same answer. */
#include <arpa/inet.h>
#include <string.h>

#include "fuzz.h"
#include "socks.h"

#define E(x) FERRY__SOCKS_E_##x
#define BIT(e) (1u << -(e))

enum parser { SOCKS4, GREETING, USERPASS, SOCKS5, UDP, METHOD, AUTH, REPLY, NPARSERS };

/* The errors each parser may return. */
static const unsigned allowed_errors[NPARSERS] = {
    [SOCKS4] = BIT(E(VERSION)) | BIT(E(COMMAND)) | BIT(E(PORT)) | BIT(E(TOO_LONG)) | BIT(E(HOST)),
    [GREETING] = BIT(E(VERSION)) | BIT(E(METHODS)),
    [USERPASS] = BIT(E(VERSION)) | BIT(E(CREDS)),
    [SOCKS5] = BIT(E(VERSION)) | BIT(E(COMMAND)) | BIT(E(RESERVED)) | BIT(E(ATYP)) |
               BIT(E(HOST)) | BIT(E(PORT)),
    [UDP] = BIT(E(RESERVED)) | BIT(E(FRAGMENT)) | BIT(E(ATYP)) | BIT(E(HOST)) | BIT(E(PORT)) |
            BIT(E(TRUNCATED)),
    [METHOD] = BIT(E(REPLY)),
    [AUTH] = BIT(E(REPLY)),
    [REPLY] = BIT(E(REPLY)),
};

/* No SOCKS message is longer (SOCKS4a: 8 + 256 + 256), so no parser looks further and
 * longer prefixes cannot differ. */
enum { LONGEST = 520 };

typedef struct result {
    int r;
    ferry__socks_request req;
    char user[FERRY__SOCKS_CRED_MAX], pass[FERRY__SOCKS_CRED_MAX];
    unsigned methods;
    uint8_t byte;
} result;

static void parse(int parser, const uint8_t *data, size_t len, int fill, result *o) {
    char *buf = malloc(len ? len : 1);
    FUZZ_CHECK(buf != NULL);
    if (len) memcpy(buf, data, len);
    memset(o, fill, sizeof *o);
    switch (parser) {
    case SOCKS4: o->r = ferry__socks4_parse_request(buf, len, &o->req); break;
    case GREETING: o->r = ferry__socks5_parse_greeting(buf, len, &o->methods); break;
    case USERPASS: o->r = ferry__socks5_parse_userpass(buf, len, o->user, o->pass); break;
    case SOCKS5: o->r = ferry__socks5_parse_request(buf, len, &o->req); break;
    case UDP: o->r = ferry__socks5_parse_udp(buf, len, &o->req); break;
    case METHOD: o->r = ferry__socks5_client_parse_method(buf, len, &o->byte); break;
    case AUTH: o->r = ferry__socks5_client_parse_auth(buf, len, &o->byte); break;
    default: o->r = ferry__socks5_client_parse_reply(buf, len, &o->byte); break;
    }
    free(buf);
}

static size_t bounded_strlen(const char *s, size_t cap) {
    const char *nul = memchr(s, '\0', cap);
    FUZZ_CHECK(nul != NULL);
    return (size_t)(nul - s);
}

static int is_domain(const char *s) {
    static const char ok[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._";
    return s[0] != '\0' && strspn(s, ok) == strlen(s);
}

/* The request's address, checked and written back as ATYP ADDR PORT by the client encoder
 * (which sends an IP literal as an address, so a domain spelling one cannot come back). */
static void check_address(const ferry__socks_request *q, const uint8_t *wire, size_t n) {
    size_t host_len = bounded_strlen(q->host, sizeof q->host);
    FUZZ_CHECK(bounded_strlen(q->user, sizeof q->user) == 0);
    FUZZ_CHECK(q->atyp == FERRY__SOCKS_ATYP_IPV4 || q->atyp == FERRY__SOCKS_ATYP_IPV6 ||
               q->atyp == FERRY__SOCKS_ATYP_DOMAIN);
    ferry__sockaddr a;
    int is_literal = ferry__addr_from_literal(q->host, q->port, &a) == 0;
    if (q->atyp == FERRY__SOCKS_ATYP_DOMAIN) {
        FUZZ_CHECK(is_domain(q->host) && host_len <= 255);
        if (is_literal) return;
    } else {
        FUZZ_CHECK(is_literal);
    }
    char out[FERRY__SOCKS_UDP_HEADER_MAX + 8];
    size_t len = ferry__socks5_client_connect(q->host, q->port, out, sizeof out);
    FUZZ_CHECK(len == n && memcmp(out + 3, wire + 3, n - 3) == 0);
}

static void check_success(int parser, const result *o, const uint8_t *m, size_t len) {
    size_t n = (size_t)o->r;
    const ferry__socks_request *q = &o->req;
    char out[600];
    switch (parser) {
    case SOCKS4: {
        FUZZ_CHECK(n >= 9 && q->version == 4 && q->cmd == m[1] && (q->cmd == 1 || q->cmd == 2));
        FUZZ_CHECK(q->port == (m[2] << 8 | m[3]) && q->port != 0);
        size_t ulen = bounded_strlen(q->user, sizeof q->user);
        FUZZ_CHECK(ulen <= 255 && memcmp(q->user, m + 8, ulen) == 0 && m[8 + ulen] == 0);
        size_t hlen = bounded_strlen(q->host, sizeof q->host);
        uint8_t ip[4];
        if (q->atyp == FERRY__SOCKS_ATYP_DOMAIN) {
            FUZZ_CHECK(m[4] == 0 && m[5] == 0 && m[6] == 0 && m[7] != 0);
            FUZZ_CHECK(is_domain(q->host) && hlen <= 255 && n == 8 + ulen + 1 + hlen + 1);
            FUZZ_CHECK(memcmp(q->host, m + 9 + ulen, hlen + 1) == 0);
        } else {
            FUZZ_CHECK(q->atyp == FERRY__SOCKS_ATYP_IPV4 && n == 8 + ulen + 1);
            FUZZ_CHECK(inet_pton(AF_INET, q->host, ip) == 1 && memcmp(ip, m + 4, 4) == 0);
        }
        break;
    }
    case GREETING:
        FUZZ_CHECK(n == 2u + m[1] && m[1] > 0);
        FUZZ_CHECK((o->methods & ~5u) == 0);
        FUZZ_CHECK(!!(o->methods & 1) == !!memchr(m + 2, 0, m[1]));
        FUZZ_CHECK(!!(o->methods & 4) == !!memchr(m + 2, 2, m[1]));
        break;
    case USERPASS:
        FUZZ_CHECK(ferry__socks5_client_userpass(o->user, o->pass, out, sizeof out) == n);
        FUZZ_CHECK(memcmp(out, m, n) == 0);
        break;
    case SOCKS5:
        FUZZ_CHECK(q->version == 5 && q->cmd == m[1] && q->cmd >= 1 && q->cmd <= 3);
        FUZZ_CHECK(m[0] == 5 && m[2] == 0 && (q->port != 0 || q->cmd == 3));
        check_address(q, m, n);
        break;
    case UDP:
        FUZZ_CHECK(q->version == 5 && q->cmd == 3 && q->port != 0);
        FUZZ_CHECK(m[0] == 0 && m[1] == 0 && m[2] == 0);
        check_address(q, m, n);
        break;
    case METHOD:
    case AUTH:
        FUZZ_CHECK(n == 2 && o->byte == m[1] && m[0] == (parser == METHOD ? 5 : 1));
        break;
    default: {
        FUZZ_CHECK(len >= 5 && m[0] == 5 && m[2] == 0 && o->byte == m[1]);
        size_t addr_len = m[3] == 1 ? 4 : m[3] == 4 ? 16 : m[3] == 3 ? 1u + m[4] : 0;
        FUZZ_CHECK(addr_len > 0 && n == 4 + addr_len + 2);
        break;
    }
    }
}

static void check_same(int parser, const result *a, const result *b) {
    FUZZ_CHECK(a->r == b->r);
    if (a->r <= 0) return;
    switch (parser) {
    case SOCKS4:
    case SOCKS5:
    case UDP:
        FUZZ_CHECK(a->req.version == b->req.version && a->req.cmd == b->req.cmd &&
                   a->req.atyp == b->req.atyp && a->req.port == b->req.port);
        FUZZ_CHECK(strcmp(a->req.host, b->req.host) == 0 && strcmp(a->req.user, b->req.user) == 0);
        break;
    case GREETING: FUZZ_CHECK(a->methods == b->methods); break;
    case USERPASS: FUZZ_CHECK(strcmp(a->user, b->user) == 0 && strcmp(a->pass, b->pass) == 0); break;
    default: FUZZ_CHECK(a->byte == b->byte); break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    int parser = data[0] % NPARSERS;
    const uint8_t *m = data + 1;
    size_t len = size - 1;
    result first, again, part;
    parse(parser, m, len, 0x00, &first);
    int r = first.r;
    if (r > 0) {
        FUZZ_CHECK((size_t)r <= len && r <= LONGEST);
        check_success(parser, &first, m, len);
    } else if (r < 0) {
        FUZZ_CHECK(r >= E(TRUNCATED) && (allowed_errors[parser] & BIT(r)));
    } else {
        FUZZ_CHECK(parser != UDP);
    }
    parse(parser, m, len, 0xff, &again);
    check_same(parser, &first, &again);

    int partial = parser == UDP ? E(TRUNCATED) : 0;
    size_t stop = r > 0 ? (size_t)r : len < LONGEST + 1 ? len : LONGEST + 1;
    for (size_t k = 0; k < stop; k++) {
        parse(parser, m, k, 0x5a, &part);
        FUZZ_CHECK(part.r == partial || (r < 0 && part.r == r));
    }
    if (r > 0) {
        parse(parser, m, (size_t)r, 0x5a, &part);
        check_same(parser, &first, &part);
    }
    return 0;
}
