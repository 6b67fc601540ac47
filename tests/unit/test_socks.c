/* Golden tests for the SOCKS wire formats (lib/socks.c).
 *
 * Each parser row is a raw input and the exact expected outcome, the parsed fields
 * rendered as one string. Every row is also replayed on each of its prefixes, from a heap
 * buffer that ends exactly where the prefix does (so ASan catches a read past `len`): a
 * prefix must give "need more" (for a UDP datagram: "truncated") or the very error of the
 * whole input, never success early or another error. Encoders are checked byte for byte
 * and round-tripped through the matching parser. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "socks.h"
#include "testutil.h"

#define E(x) FERRY__SOCKS_E_##x
#define BIN(s) .raw = s, .raw_len = sizeof(s) - 1 /* a literal that may hold NULs */

/* Names and user ids at and past the 255-byte limits. */
#define A16 "aaaaaaaaaaaaaaaa"
#define A255 A16 A16 A16 A16 A16 A16 A16 A16 A16 A16 A16 A16 A16 A16 A16 "aaaaaaaaaaaaaaa"
#define A256 A255 "a"

enum parser {
    SOCKS4,   /* ferry__socks4_parse_request */
    GREETING, /* ferry__socks5_parse_greeting */
    USERPASS, /* ferry__socks5_parse_userpass */
    SOCKS5,   /* ferry__socks5_parse_request */
    UDP,      /* ferry__socks5_parse_udp */
    METHOD,   /* ferry__socks5_client_parse_method */
    AUTH,     /* ferry__socks5_client_parse_auth */
    REPLY     /* ferry__socks5_client_parse_reply */
};

/* Runs one parser on a fresh exact-size copy of buf and renders what it filled in. The
 * outputs start as garbage so nothing can rely on them being zeroed. */
static int run(int parser, const char *buf, size_t len, char *shown, size_t cap) {
    char *copy = malloc(len ? len : 1);
    memcpy(copy, buf, len);
    ferry__socks_request req;
    char user[FERRY__SOCKS_CRED_MAX], pass[FERRY__SOCKS_CRED_MAX];
    unsigned methods = 0xdead;
    uint8_t byte = 0xee;
    memset(&req, 0xa5, sizeof req);
    memset(user, 0xa5, sizeof user);
    memset(pass, 0xa5, sizeof pass);
    int r;
    switch (parser) {
    case SOCKS4: r = ferry__socks4_parse_request(copy, len, &req); break;
    case GREETING: r = ferry__socks5_parse_greeting(copy, len, &methods); break;
    case USERPASS: r = ferry__socks5_parse_userpass(copy, len, user, pass); break;
    case SOCKS5: r = ferry__socks5_parse_request(copy, len, &req); break;
    case UDP: r = ferry__socks5_parse_udp(copy, len, &req); break;
    case METHOD: r = ferry__socks5_client_parse_method(copy, len, &byte); break;
    case AUTH: r = ferry__socks5_client_parse_auth(copy, len, &byte); break;
    default: r = ferry__socks5_client_parse_reply(copy, len, &byte); break;
    }
    free(copy);
    shown[0] = '\0';
    if (r <= 0) return r;
    switch (parser) {
    case SOCKS4:
    case SOCKS5:
    case UDP:
        snprintf(shown, cap, "v%u cmd=%u atyp=%u host=%s port=%u user=%s", req.version,
                 req.cmd, req.atyp, req.host, req.port, req.user);
        break;
    case GREETING: snprintf(shown, cap, "methods=%#x", methods); break;
    case USERPASS: snprintf(shown, cap, "user=%s pass=%s", user, pass); break;
    default: snprintf(shown, cap, "%u", byte); break;
    }
    return r;
}

typedef struct parse_case {
    const char *name;
    int parser;
    const char *raw;
    size_t raw_len; /* 0: strlen(raw) */
    int err;        /* 0: must parse (or need more, with .more) */
    int more;       /* the input is a valid but incomplete message */
    int used;       /* expected length; 0: the whole input */
    const char *out; /* rendered fields, as run() shows them */
} parse_case;

#define S4 "\x04\x01\x00\x50\x0a\x00\x00\x01" /* SOCKS4 CONNECT 10.0.0.1:80 */
#define S4A "\x04\x01\x01\xbb\x00\x00\x00\x01" /* SOCKS4a CONNECT, port 443 */
#define S5 "\x05\x01\x00"                      /* SOCKS5 CONNECT */
#define IP6 "\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01" /* 2001:db8::1 */

static const parse_case cases[] = {
    /* ---- SOCKS4 / 4a ---- */
    {"4 connect no user", SOCKS4, BIN(S4 "\0"), .out = "v4 cmd=1 atyp=1 host=10.0.0.1 port=80 user="},
    {"4 connect with user, data follows", SOCKS4, BIN(S4 "bob\0GET"), .used = 12,
     .out = "v4 cmd=1 atyp=1 host=10.0.0.1 port=80 user=bob"},
    {"4 user id is opaque bytes", SOCKS4, BIN(S4 "a b/\x01\xff\0"),
     .out = "v4 cmd=1 atyp=1 host=10.0.0.1 port=80 user=a b/\x01\xff"},
    {"4 bind", SOCKS4, BIN("\x04\x02\xff\xff\xc0\xa8\x01\x02\0"),
     .out = "v4 cmd=2 atyp=1 host=192.168.1.2 port=65535 user="},
    {"4 ip 0.0.0.0 is not 4a", SOCKS4, BIN("\x04\x01\x00\x50\x00\x00\x00\x00\0"),
     .out = "v4 cmd=1 atyp=1 host=0.0.0.0 port=80 user="},
    {"4 user id 255", SOCKS4, BIN(S4 A255 "\0"), .out = "v4 cmd=1 atyp=1 host=10.0.0.1 port=80 user=" A255},
    {"4a domain", SOCKS4, BIN(S4A "alice\0example.com\0"),
     .out = "v4 cmd=1 atyp=3 host=example.com port=443 user=alice"},
    {"4a domain, no user, data follows", SOCKS4, BIN(S4A "\0a-b_c.d9\0\x16\x03"), .used = 18,
     .out = "v4 cmd=1 atyp=3 host=a-b_c.d9 port=443 user="},
    {"4a ip 0.0.0.255", SOCKS4, BIN("\x04\x02\x00\x15\x00\x00\x00\xff\0ftp.example\0"),
     .out = "v4 cmd=2 atyp=3 host=ftp.example port=21 user="},
    {"4a domain 255", SOCKS4, BIN(S4A "\0" A255 "\0"), .out = "v4 cmd=1 atyp=3 host=" A255 " port=443 user="},
    {"4 empty", SOCKS4, BIN(""), .more = 1},
    {"4 header only", SOCKS4, BIN(S4), .more = 1},
    {"4 user id without nul", SOCKS4, BIN(S4 "bob"), .more = 1},
    {"4 user id 255 without nul", SOCKS4, BIN(S4 A255), .more = 1},
    {"4a domain not yet sent", SOCKS4, BIN(S4A "alice\0"), .more = 1},
    {"4a domain without nul", SOCKS4, BIN(S4A "\0example.co"), .more = 1},
    {"4 version 5", SOCKS4, BIN("\x05\x01\x00\x50\x0a\x00\x00\x01\0"), .err = E(VERSION)},
    {"4 version 0", SOCKS4, BIN("\x00"), .err = E(VERSION)},
    {"4 http", SOCKS4, BIN("GET / HTTP/1.1\r\n"), .err = E(VERSION)},
    {"4 command 0", SOCKS4, BIN("\x04\x00"), .err = E(COMMAND)},
    {"4 udp associate", SOCKS4, BIN("\x04\x03\x00\x50\x0a\x00\x00\x01\0"), .err = E(COMMAND)},
    {"4 port 0", SOCKS4, BIN("\x04\x01\x00\x00\x0a\x00\x00\x01\0"), .err = E(PORT)},
    {"4 port 0 before the address", SOCKS4, BIN("\x04\x01\x00\x00"), .err = E(PORT)},
    {"4 user id 256", SOCKS4, BIN(S4 A256 "\0"), .err = E(TOO_LONG)},
    {"4 user id 256 without nul", SOCKS4, BIN(S4 A256), .err = E(TOO_LONG)},
    {"4a domain 256", SOCKS4, BIN(S4A "\0" A256 "\0"), .err = E(TOO_LONG)},
    {"4a domain 256 without nul", SOCKS4, BIN(S4A "u\0" A256), .err = E(TOO_LONG)},
    {"4a empty domain", SOCKS4, BIN(S4A "alice\0\0"), .err = E(HOST)},
    {"4a domain with space", SOCKS4, BIN(S4A "\0exa mple.com\0"), .err = E(HOST)},
    {"4a domain with slash", SOCKS4, BIN(S4A "\0example.com/x\0"), .err = E(HOST)},
    {"4a domain with colon", SOCKS4, BIN(S4A "\0example.com:80\0"), .err = E(HOST)},
    {"4a domain with control", SOCKS4, BIN(S4A "\0exa\x1bmple\0"), .err = E(HOST)},
    {"4a domain with utf-8", SOCKS4, BIN(S4A "\0b\xc3\xbc" "cher.de\0"), .err = E(HOST)},
    {"4a bad byte before the nul arrives", SOCKS4, BIN(S4A "\0ex%"), .err = E(HOST)},

    /* ---- SOCKS5 greeting ---- */
    {"greeting no auth", GREETING, BIN("\x05\x01\x00"), .out = "methods=0x1"},
    {"greeting no auth and userpass", GREETING, BIN("\x05\x02\x00\x02"), .out = "methods=0x5"},
    {"greeting userpass only", GREETING, BIN("\x05\x01\x02"), .out = "methods=0x4"},
    {"greeting other methods ignored", GREETING, BIN("\x05\x04\x01\x80\xff\x02"), .out = "methods=0x4"},
    {"greeting gssapi only", GREETING, BIN("\x05\x01\x01"), .out = "methods=0"},
    {"greeting repeated method", GREETING, BIN("\x05\x03\x00\x00\x00"), .out = "methods=0x1"},
    {"greeting request follows", GREETING, BIN("\x05\x01\x00" S5), .used = 3, .out = "methods=0x1"},
    {"greeting empty", GREETING, BIN(""), .more = 1},
    {"greeting version only", GREETING, BIN("\x05"), .more = 1},
    {"greeting methods missing", GREETING, BIN("\x05\x02\x00"), .more = 1},
    {"greeting no methods", GREETING, BIN("\x05\x00"), .err = E(METHODS)},
    {"greeting no methods, more bytes", GREETING, BIN("\x05\x00\x00"), .err = E(METHODS)},
    {"greeting version 4", GREETING, BIN("\x04\x01\x00"), .err = E(VERSION)},
    {"greeting tls", GREETING, BIN("\x16\x03\x01"), .err = E(VERSION)},

    /* ---- RFC 1929 ---- */
    {"userpass", USERPASS, BIN("\x01\x05" "alice\x06secret"), .out = "user=alice pass=secret"},
    {"userpass empty password", USERPASS, BIN("\x01\x01u\x00"), .out = "user=u pass="},
    {"userpass any bytes", USERPASS, BIN("\x01\x03 :\xff\x02\x01\x7f"), .out = "user= :\xff pass=\x01\x7f"},
    {"userpass request follows", USERPASS, BIN("\x01\x01u\x01p" S5), .used = 5, .out = "user=u pass=p"},
    {"userpass 255 and 255", USERPASS, BIN("\x01\xff" A255 "\xff" A255), .out = "user=" A255 " pass=" A255},
    {"userpass empty", USERPASS, BIN(""), .more = 1},
    {"userpass user cut", USERPASS, BIN("\x01\x05" "ali"), .more = 1},
    {"userpass plen missing", USERPASS, BIN("\x01\x05" "alice"), .more = 1},
    {"userpass password cut", USERPASS, BIN("\x01\x05" "alice\x06sec"), .more = 1},
    {"userpass version 5", USERPASS, BIN("\x05\x01u\x01p"), .err = E(VERSION)},
    {"userpass empty user", USERPASS, BIN("\x01\x00\x01p"), .err = E(CREDS)},
    {"userpass nul in user", USERPASS, BIN("\x01\x03" "a\0b\x01p"), .err = E(CREDS)},
    {"userpass nul in user, cut", USERPASS, BIN("\x01\x03\0"), .err = E(CREDS)},
    {"userpass nul in password", USERPASS, BIN("\x01\x01" "a\x03p\0q"), .err = E(CREDS)},

    /* ---- SOCKS5 requests ---- */
    {"5 connect ipv4", SOCKS5, BIN(S5 "\x01\x7f\x00\x00\x01\x00\x50"),
     .out = "v5 cmd=1 atyp=1 host=127.0.0.1 port=80 user="},
    {"5 connect domain", SOCKS5, BIN(S5 "\x03\x0b" "example.com\x01\xbb"),
     .out = "v5 cmd=1 atyp=3 host=example.com port=443 user="},
    {"5 connect ipv6", SOCKS5, BIN(S5 "\x04" IP6 "\x01\xbb"),
     .out = "v5 cmd=1 atyp=4 host=2001:db8::1 port=443 user="},
    {"5 connect v4-mapped ipv6", SOCKS5,
     BIN(S5 "\x04\0\0\0\0\0\0\0\0\0\0\xff\xff\x01\x02\x03\x04\x00\x16"),
     .out = "v5 cmd=1 atyp=4 host=::ffff:1.2.3.4 port=22 user="},
    {"5 connect domain 255", SOCKS5, BIN(S5 "\x03\xff" A255 "\x00\x50"),
     .out = "v5 cmd=1 atyp=3 host=" A255 " port=80 user="},
    {"5 domain chars", SOCKS5, BIN(S5 "\x03\x0e" "_srv-x.A_b.9-Z\x00\x35"),
     .out = "v5 cmd=1 atyp=3 host=_srv-x.A_b.9-Z port=53 user="},
    {"5 data follows", SOCKS5, BIN(S5 "\x01\x0a\x00\x00\x01\x00\x50" "GET / "), .used = 10,
     .out = "v5 cmd=1 atyp=1 host=10.0.0.1 port=80 user="},
    {"5 bind", SOCKS5, BIN("\x05\x02\x00\x01\x0a\x00\x00\x01\x10\x00"),
     .out = "v5 cmd=2 atyp=1 host=10.0.0.1 port=4096 user="},
    {"5 udp associate port 0", SOCKS5, BIN("\x05\x03\x00\x01\x00\x00\x00\x00\x00\x00"),
     .out = "v5 cmd=3 atyp=1 host=0.0.0.0 port=0 user="},
    {"5 udp associate domain", SOCKS5, BIN("\x05\x03\x00\x03\x01z\x13\x88"),
     .out = "v5 cmd=3 atyp=3 host=z port=5000 user="},
    {"5 empty", SOCKS5, BIN(""), .more = 1},
    {"5 no atyp", SOCKS5, BIN(S5), .more = 1},
    {"5 ipv4 cut", SOCKS5, BIN(S5 "\x01\x7f\x00"), .more = 1},
    {"5 port cut", SOCKS5, BIN(S5 "\x01\x7f\x00\x00\x01\x00"), .more = 1},
    {"5 domain length missing", SOCKS5, BIN(S5 "\x03"), .more = 1},
    {"5 domain cut", SOCKS5, BIN(S5 "\x03\x0b" "exam"), .more = 1},
    {"5 ipv6 cut", SOCKS5, BIN(S5 "\x04\x20\x01"), .more = 1},
    {"5 version 4", SOCKS5, BIN("\x04\x01\x00\x01\x7f\x00\x00\x01\x00\x50"), .err = E(VERSION)},
    {"5 command 0", SOCKS5, BIN("\x05\x00\x00\x01\x7f\x00\x00\x01\x00\x50"), .err = E(COMMAND)},
    {"5 command 4", SOCKS5, BIN("\x05\x04"), .err = E(COMMAND)},
    {"5 command 0xff", SOCKS5, BIN("\x05\xff\x00\x01"), .err = E(COMMAND)},
    {"5 rsv 1", SOCKS5, BIN("\x05\x01\x01\x01\x7f\x00\x00\x01\x00\x50"), .err = E(RESERVED)},
    {"5 rsv 0x80", SOCKS5, BIN("\x05\x01\x80"), .err = E(RESERVED)},
    {"5 atyp 0", SOCKS5, BIN(S5 "\x00\x7f\x00\x00\x01\x00\x50"), .err = E(ATYP)},
    {"5 atyp 2", SOCKS5, BIN(S5 "\x02\x7f\x00\x00\x01\x00\x50"), .err = E(ATYP)},
    {"5 atyp 5", SOCKS5, BIN(S5 "\x05"), .err = E(ATYP)},
    {"5 empty domain", SOCKS5, BIN(S5 "\x03\x00\x00\x50"), .err = E(HOST)},
    {"5 nul in domain", SOCKS5, BIN(S5 "\x03\x0b" "example\0com\x00\x50"), .err = E(HOST)},
    {"5 nul ends domain", SOCKS5, BIN(S5 "\x03\x04" "abc\0\x00\x50"), .err = E(HOST)},
    {"5 space in domain", SOCKS5, BIN(S5 "\x03\x03" "a b\x00\x50"), .err = E(HOST)},
    {"5 slash in domain", SOCKS5, BIN(S5 "\x03\x03" "a/b\x00\x50"), .err = E(HOST)},
    {"5 crlf in domain", SOCKS5, BIN(S5 "\x03\x04" "a\r\nb\x00\x50"), .err = E(HOST)},
    {"5 del in domain", SOCKS5, BIN(S5 "\x03\x01\x7f\x00\x50"), .err = E(HOST)},
    {"5 brackets in domain", SOCKS5, BIN(S5 "\x03\x05[::1]\x00\x50"), .err = E(HOST)},
    {"5 at in domain", SOCKS5, BIN(S5 "\x03\x03" "a@b\x00\x50"), .err = E(HOST)},
    {"5 bad domain byte before the rest arrives", SOCKS5, BIN(S5 "\x03\x0b" "ex mp"), .err = E(HOST)},
    {"5 connect port 0", SOCKS5, BIN(S5 "\x01\x7f\x00\x00\x01\x00\x00"), .err = E(PORT)},
    {"5 connect domain port 0", SOCKS5, BIN(S5 "\x03\x01z\x00\x00"), .err = E(PORT)},
    {"5 bind port 0", SOCKS5, BIN("\x05\x02\x00\x04" IP6 "\x00\x00"), .err = E(PORT)},

    /* ---- SOCKS5 UDP datagrams ---- */
    {"udp ipv4 with data", UDP, BIN("\0\0\0\x01\x0a\x00\x00\x01\x00\x35" "query"), .used = 10,
     .out = "v5 cmd=3 atyp=1 host=10.0.0.1 port=53 user="},
    {"udp header only", UDP, BIN("\0\0\0\x01\x0a\x00\x00\x01\x00\x35"),
     .out = "v5 cmd=3 atyp=1 host=10.0.0.1 port=53 user="},
    {"udp domain", UDP, BIN("\0\0\0\x03\x07" "dns.lan\x00\x35\xab\xcd"), .used = 14,
     .out = "v5 cmd=3 atyp=3 host=dns.lan port=53 user="},
    {"udp ipv6", UDP, BIN("\0\0\0\x04" IP6 "\x01\xbb\0"), .used = 22,
     .out = "v5 cmd=3 atyp=4 host=2001:db8::1 port=443 user="},
    {"udp empty", UDP, BIN(""), .err = E(TRUNCATED)},
    {"udp no atyp", UDP, BIN("\0\0\0"), .err = E(TRUNCATED)},
    {"udp address cut", UDP, BIN("\0\0\0\x01\x0a\x00"), .err = E(TRUNCATED)},
    {"udp domain cut", UDP, BIN("\0\0\0\x03\x07" "dns"), .err = E(TRUNCATED)},
    {"udp frag 1", UDP, BIN("\0\0\x01\x01\x0a\x00\x00\x01\x00\x35"), .err = E(FRAGMENT)},
    {"udp frag 0x81", UDP, BIN("\0\0\x81"), .err = E(FRAGMENT)},
    {"udp rsv high", UDP, BIN("\x01\0\0\x01\x0a\x00\x00\x01\x00\x35"), .err = E(RESERVED)},
    {"udp rsv low", UDP, BIN("\0\x01\0\x01\x0a\x00\x00\x01\x00\x35"), .err = E(RESERVED)},
    {"udp atyp 2", UDP, BIN("\0\0\0\x02\x0a\x00\x00\x01\x00\x35"), .err = E(ATYP)},
    {"udp port 0", UDP, BIN("\0\0\0\x01\x0a\x00\x00\x01\x00\x00" "x"), .err = E(PORT)},
    {"udp nul in domain", UDP, BIN("\0\0\0\x03\x03" "a\0b\x00\x35"), .err = E(HOST)},

    /* ---- client side: method choice, auth status, reply ---- */
    {"method no auth", METHOD, BIN("\x05\x00"), .out = "0"},
    {"method userpass, more follows", METHOD, BIN("\x05\x02\x01"), .used = 2, .out = "2"},
    {"method none acceptable", METHOD, BIN("\x05\xff"), .out = "255"},
    {"method cut", METHOD, BIN("\x05"), .more = 1},
    {"method version 4", METHOD, BIN("\x04\x00"), .err = E(REPLY)},
    {"method version 1", METHOD, BIN("\x01"), .err = E(REPLY)},
    {"auth ok", AUTH, BIN("\x01\x00"), .out = "0"},
    {"auth failed", AUTH, BIN("\x01\x01"), .out = "1"},
    {"auth cut", AUTH, BIN("\x01"), .more = 1},
    {"auth version 5", AUTH, BIN("\x05\x00"), .err = E(REPLY)},
    {"reply ipv4", REPLY, BIN("\x05\x00\x00\x01\x0a\x00\x00\x01\x1f\x90"), .out = "0"},
    {"reply refused", REPLY, BIN("\x05\x05\x00\x01\0\0\0\0\0\0"), .out = "5"},
    {"reply ipv6, data follows", REPLY, BIN("\x05\x00\x00\x04" IP6 "\x04\x38" "HTTP/1.1"), .used = 22,
     .out = "0"},
    {"reply domain, data follows", REPLY, BIN("\x05\x00\x00\x03\x0b" "proxy.local\x04\x38" "SSH-2.0"),
     .used = 18, .out = "0"},
    {"reply domain not judged", REPLY, BIN("\x05\x00\x00\x03\x04" "a b\0\x00\x50"), .out = "0"},
    {"reply empty domain", REPLY, BIN("\x05\x01\x00\x03\x00\x00\x00"), .out = "1"},
    {"reply long domain", REPLY, BIN("\x05\x00\x00\x03\xff" A255 "\x00\x50"), .out = "0"},
    {"reply empty", REPLY, BIN(""), .more = 1},
    {"reply head cut", REPLY, BIN("\x05\x00\x00"), .more = 1},
    {"reply domain cut", REPLY, BIN("\x05\x00\x00\x03\x0b" "proxy.lo"), .more = 1},
    {"reply port cut", REPLY, BIN("\x05\x00\x00\x01\x0a\x00\x00\x01\x1f"), .more = 1},
    {"reply version 4", REPLY, BIN("\x04\x00\x00\x01\x0a\x00\x00\x01\x1f\x90"), .err = E(REPLY)},
    {"reply socks4 reply", REPLY, BIN("\x00\x5a\x00\x00\x00\x00\x00\x00"), .err = E(REPLY)},
    {"reply rsv 1", REPLY, BIN("\x05\x00\x01\x01\x0a\x00\x00\x01\x1f\x90"), .err = E(REPLY)},
    {"reply atyp 0", REPLY, BIN("\x05\x00\x00\x00"), .err = E(REPLY)},
    {"reply atyp 2", REPLY, BIN("\x05\x00\x00\x02\x0a\x00\x00\x01\x1f\x90"), .err = E(REPLY)},
};

enum { NCASES = sizeof cases / sizeof cases[0] };

/* Every prefix must be "need more" (a datagram: truncated) or the whole input's error. */
static const char *check_prefixes(const parse_case *tc, size_t n, int want) {
    static char why[128];
    char shown[1024];
    int partial = tc->parser == UDP ? E(TRUNCATED) : 0;
    size_t stop = want > 0 ? (size_t)want : n;
    for (size_t k = 0; k < stop; k++) {
        int r = run(tc->parser, tc->raw, k, shown, sizeof shown);
        if (r != partial && (want > 0 || r != want)) {
            snprintf(why, sizeof why, "prefix %zu of %zu gave %d (whole: %d)", k, n, r, want);
            return why;
        }
    }
    return NULL;
}

START_TEST(parse_golden) {
    const parse_case *tc = &cases[_i];
    size_t n = tc->raw_len;
    char shown[1024];
    int want = tc->err ? tc->err : tc->more ? 0 : tc->used ? tc->used : (int)n;
    int r = run(tc->parser, tc->raw, n, shown, sizeof shown);
    ck_assert_msg(r == want, "[%s] got %d, want %d", tc->name, r, want);
    if (want > 0)
        ck_assert_msg(strcmp(shown, tc->out) == 0, "[%s] got \"%s\", want \"%s\"", tc->name,
                      shown, tc->out);
    const char *bad = check_prefixes(tc, n, want);
    ck_assert_msg(bad == NULL, "[%s] %s", tc->name, bad);
    /* Stateless: the same input gives the same answer again. */
    char again[1024];
    ck_assert_int_eq(run(tc->parser, tc->raw, n, again, sizeof again), r);
    ck_assert_str_eq(again, shown);
}
END_TEST

START_TEST(every_error_reached) {
    for (int e = E(VERSION); e >= E(TRUNCATED); e--) {
        int seen = 0;
        for (size_t i = 0; i < NCASES; i++) seen |= cases[i].err == e;
        ck_assert_msg(seen, "no case yields error %d (%s)", e, ferry__socks_error_text(e));
    }
}
END_TEST

START_TEST(error_texts) {
    for (int e = E(VERSION); e >= E(TRUNCATED); e--) {
        const char *t = ferry__socks_error_text(e);
        ck_assert_str_ne(t, ferry__socks_error_text(0));
        for (int o = e + 1; o <= E(VERSION); o++) ck_assert_str_ne(t, ferry__socks_error_text(o));
    }
    ck_assert_str_eq(ferry__socks_error_text(0), "unknown SOCKS error");
    ck_assert_str_eq(ferry__socks_error_text(E(TRUNCATED) - 1), "unknown SOCKS error");
    ck_assert_str_eq(ferry__socks_error_text(12), "unknown SOCKS error");
    ck_assert_str_eq(ferry__socks_error_text(E(PORT)), "destination port 0");
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

START_TEST(server_encoders) {
    char out[FERRY__SOCKS_UDP_HEADER_MAX];
    memset(out, 0x5a, sizeof out);
    ASSERT_BYTES("socks4 granted", out, ferry__socks4_reply(FERRY__SOCKS4_GRANTED, out),
                 "\x00\x5a\0\0\0\0\0\0");
    ASSERT_BYTES("socks4 rejected", out, ferry__socks4_reply(FERRY__SOCKS4_REJECTED, out),
                 "\x00\x5b\0\0\0\0\0\0");
    ASSERT_BYTES("method", out, ferry__socks5_method_reply(FERRY__SOCKS5_USERPASS, out), "\x05\x02");
    ASSERT_BYTES("no method", out, ferry__socks5_method_reply(FERRY__SOCKS5_NO_METHOD, out), "\x05\xff");
    ASSERT_BYTES("auth ok", out, ferry__socks5_auth_reply(0, out), "\x01\x00");
    ASSERT_BYTES("auth failed", out, ferry__socks5_auth_reply(1, out), "\x01\x01");

    ferry__sockaddr v4 = literal("192.168.1.2", 1080), v6 = literal("2001:db8::5", 8080);
    ferry__sockaddr unspec;
    memset(&unspec, 0, sizeof unspec);
    memset(out, 0x5a, sizeof out);
    ASSERT_BYTES("reply null", out, ferry__socks5_reply(FERRY__SOCKS5_OK, NULL, out),
                 "\x05\x00\x00\x01\0\0\0\0\0\0");
    ASSERT_BYTES("reply unspec", out, ferry__socks5_reply(FERRY__SOCKS5_REFUSED, &unspec, out),
                 "\x05\x05\x00\x01\0\0\0\0\0\0");
    ASSERT_BYTES("reply v4", out, ferry__socks5_reply(FERRY__SOCKS5_OK, &v4, out),
                 "\x05\x00\x00\x01\xc0\xa8\x01\x02\x04\x38");
    ASSERT_BYTES("reply v6", out, ferry__socks5_reply(FERRY__SOCKS5_HOST_UNREACHABLE, &v6, out),
                 "\x05\x04\x00\x04\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\x00\x05\x1f\x90");
    ck_assert_uint_eq(ferry__socks5_reply(0, &v6, out), FERRY__SOCKS5_REPLY_MAX);
    ASSERT_BYTES("udp v4", out, ferry__socks5_udp_header(&v4, out),
                 "\0\0\0\x01\xc0\xa8\x01\x02\x04\x38");
    ASSERT_BYTES("udp v6", out, ferry__socks5_udp_header(&v6, out),
                 "\0\0\0\x04\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\x00\x05\x1f\x90");
}
END_TEST

START_TEST(client_encoders) {
    char out[600];
    ASSERT_BYTES("greeting", out, ferry__socks5_client_greeting(0, out), "\x05\x01\x00");
    ASSERT_BYTES("greeting userpass", out, ferry__socks5_client_greeting(1, out), "\x05\x02\x00\x02");

    ASSERT_BYTES("userpass", out, ferry__socks5_client_userpass("alice", "secret", out, sizeof out),
                 "\x01\x05" "alice\x06secret");
    ASSERT_BYTES("userpass empty password", out, ferry__socks5_client_userpass("u", "", out, sizeof out),
                 "\x01\x01u\x00");
    ASSERT_BYTES("userpass 255", out, ferry__socks5_client_userpass(A255, A255, out, 513),
                 "\x01\xff" A255 "\xff" A255);
    ck_assert_uint_eq(ferry__socks5_client_userpass(A255, A255, out, 512), 0);
    ck_assert_uint_eq(ferry__socks5_client_userpass(A256, "p", out, sizeof out), 0);
    ck_assert_uint_eq(ferry__socks5_client_userpass("u", A256, out, sizeof out), 0);
    ck_assert_uint_eq(ferry__socks5_client_userpass("", "p", out, sizeof out), 0);

    ASSERT_BYTES("connect domain", out, ferry__socks5_client_connect("example.com", 443, out, sizeof out),
                 "\x05\x01\x00\x03\x0b" "example.com\x01\xbb");
    ASSERT_BYTES("connect ipv4", out, ferry__socks5_client_connect("10.0.0.1", 80, out, sizeof out),
                 "\x05\x01\x00\x01\x0a\x00\x00\x01\x00\x50");
    ASSERT_BYTES("connect ipv6", out, ferry__socks5_client_connect("2001:db8::1", 443, out, sizeof out),
                 "\x05\x01\x00\x04" IP6 "\x01\xbb");
    /* inet_pton takes dotted quads only, so the parent resolves this one. */
    ASSERT_BYTES("connect short ipv4 as domain", out,
                 ferry__socks5_client_connect("127.1", 65535, out, sizeof out),
                 "\x05\x01\x00\x03\x05" "127.1\xff\xff");
    ASSERT_BYTES("connect domain 255", out, ferry__socks5_client_connect(A255, 1, out, 262),
                 "\x05\x01\x00\x03\xff" A255 "\x00\x01");
    ck_assert_uint_eq(ferry__socks5_client_connect(A255, 1, out, 261), 0);
    ck_assert_uint_eq(ferry__socks5_client_connect(A256, 1, out, sizeof out), 0);
    ck_assert_uint_eq(ferry__socks5_client_connect("", 1, out, sizeof out), 0);
    ck_assert_uint_eq(ferry__socks5_client_connect("2001:db8::1", 1, out, 21), 0);
    ck_assert_uint_eq(ferry__socks5_client_connect("2001:db8::1", 1, out, 22), 22);
    ck_assert_uint_eq(ferry__socks5_client_connect("1.2.3.4", 1, out, 10), 10);
}
END_TEST

/* What one side writes, the other side reads back. */
START_TEST(round_trips) {
    char out[600], user[FERRY__SOCKS_CRED_MAX], pass[FERRY__SOCKS_CRED_MAX];
    unsigned methods = 0;
    size_t n = ferry__socks5_client_greeting(1, out);
    ck_assert_int_eq(ferry__socks5_parse_greeting(out, n, &methods), (int)n);
    ck_assert_uint_eq(methods, 1u << FERRY__SOCKS5_NO_AUTH | 1u << FERRY__SOCKS5_USERPASS);

    uint8_t byte = 0;
    n = ferry__socks5_method_reply(FERRY__SOCKS5_USERPASS, out);
    ck_assert_int_eq(ferry__socks5_client_parse_method(out, n, &byte), 2);
    ck_assert_uint_eq(byte, FERRY__SOCKS5_USERPASS);

    n = ferry__socks5_client_userpass("user", "p@ss word", out, sizeof out);
    ck_assert_int_eq(ferry__socks5_parse_userpass(out, n, user, pass), (int)n);
    ck_assert_str_eq(user, "user");
    ck_assert_str_eq(pass, "p@ss word");
    n = ferry__socks5_auth_reply(1, out);
    ck_assert_int_eq(ferry__socks5_client_parse_auth(out, n, &byte), 2);
    ck_assert_uint_eq(byte, 1);

    static const char *const hosts[] = {"example.com", "10.9.8.7", "::1", "fe80::1:2", A255};
    for (size_t i = 0; i < sizeof hosts / sizeof hosts[0]; i++) {
        ferry__socks_request req;
        n = ferry__socks5_client_connect(hosts[i], 8443, out, sizeof out);
        ck_assert_int_eq(ferry__socks5_parse_request(out, n, &req), (int)n);
        ck_assert_str_eq(req.host, hosts[i]);
        ck_assert_uint_eq(req.port, 8443);
        ck_assert_uint_eq(req.cmd, FERRY__SOCKS_CONNECT);
    }

    static const char *const bound[] = {"203.0.113.9", "2001:db8::77"};
    for (size_t i = 0; i < 2; i++) {
        ferry__sockaddr a = literal(bound[i], 40000);
        ferry__socks_request req;
        char text[64];
        n = ferry__socks5_reply(FERRY__SOCKS5_TTL_EXPIRED, &a, out);
        ck_assert_int_eq(ferry__socks5_client_parse_reply(out, n, &byte), (int)n);
        ck_assert_uint_eq(byte, FERRY__SOCKS5_TTL_EXPIRED);
        n = ferry__socks5_udp_header(&a, out);
        memcpy(out + n, "payload", 7);
        ck_assert_int_eq(ferry__socks5_parse_udp(out, n + 7, &req), (int)n);
        ferry__addr_format(&a, 0, text, sizeof text);
        ck_assert_str_eq(req.host, text);
        ck_assert_uint_eq(req.port, 40000);
    }
}
END_TEST

int main(void) {
    Suite *s = suite_create("socks");
    TCase *tc = tcase_create("parsers");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, parse_golden, 0, NCASES);
    tcase_add_test(tc, every_error_reached);
    tcase_add_test(tc, error_texts);
    suite_add_tcase(s, tc);
    TCase *enc = tcase_create("encoders");
    tcase_add_test(enc, server_encoders);
    tcase_add_test(enc, client_encoders);
    tcase_add_test(enc, round_trips);
    suite_add_tcase(s, enc);
    return run_suite(s);
}
