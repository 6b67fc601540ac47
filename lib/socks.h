/* SOCKS wire formats: SOCKS4, SOCKS4a, SOCKS5 (RFC 1928) and username/password
 * authentication (RFC 1929), server side (what clients send us) and client side (what we
 * send a SOCKS5 parent). Pure and incremental in the picohttpparser manner: parsers take
 * the bytes received so far and return the bytes one message used (> 0), 0 when more are
 * needed, or a negative ferry__socks_error; no I/O, no allocation. Encoders write into a
 * caller buffer and return the length. */
#ifndef FERRY__SOCKS_H
#define FERRY__SOCKS_H

#include <stddef.h>
#include <stdint.h>

#include "addr.h"

enum {
    FERRY__SOCKS_HOST_MAX = 256, /* 255-byte domain + NUL */
    FERRY__SOCKS_CRED_MAX = 256, /* 255-byte user / password + NUL */
    FERRY__SOCKS5_REPLY_MAX = 22, /* VER REP RSV ATYP + IPv6 + port */
    FERRY__SOCKS_UDP_HEADER_MAX = 262 /* RSV RSV FRAG ATYP LEN domain port */
};

typedef enum ferry__socks_error {
    FERRY__SOCKS_E_VERSION = -1,  /* not SOCKS 4 or 5 (or bad sub-negotiation version) */
    FERRY__SOCKS_E_METHODS = -2,  /* SOCKS5 greeting lists no method */
    FERRY__SOCKS_E_COMMAND = -3,  /* unknown command */
    FERRY__SOCKS_E_ATYP = -4,     /* unknown address type */
    FERRY__SOCKS_E_HOST = -5,     /* empty domain, or a byte not in [A-Za-z0-9._-] */
    FERRY__SOCKS_E_TOO_LONG = -6, /* SOCKS4 user id or 4a domain past its limit */
    FERRY__SOCKS_E_PORT = -7,     /* destination port 0 */
    FERRY__SOCKS_E_RESERVED = -8, /* SOCKS5 RSV byte not 0 */
    FERRY__SOCKS_E_CREDS = -9,    /* RFC 1929: empty user name, or a NUL in a field */
    FERRY__SOCKS_E_FRAGMENT = -10, /* UDP datagram with FRAG != 0 (fragments unsupported) */
    FERRY__SOCKS_E_REPLY = -11,   /* client side: malformed reply from the parent */
    FERRY__SOCKS_E_TRUNCATED = -12 /* UDP datagram shorter than its header */
} ferry__socks_error;

const char *ferry__socks_error_text(int err);

typedef enum ferry__socks_cmd {
    FERRY__SOCKS_CONNECT = 1,
    FERRY__SOCKS_BIND = 2,
    FERRY__SOCKS_UDP_ASSOCIATE = 3 /* SOCKS5 only */
} ferry__socks_cmd;

/* SOCKS5 reply codes (RFC 1928 section 6). */
enum {
    FERRY__SOCKS5_OK = 0,
    FERRY__SOCKS5_FAILURE = 1,
    FERRY__SOCKS5_NOT_ALLOWED = 2,
    FERRY__SOCKS5_NET_UNREACHABLE = 3,
    FERRY__SOCKS5_HOST_UNREACHABLE = 4,
    FERRY__SOCKS5_REFUSED = 5,
    FERRY__SOCKS5_TTL_EXPIRED = 6,
    FERRY__SOCKS5_CMD_UNSUPPORTED = 7,
    FERRY__SOCKS5_ATYP_UNSUPPORTED = 8
};
/* SOCKS4 reply codes. */
enum {
    FERRY__SOCKS4_GRANTED = 90,
    FERRY__SOCKS4_REJECTED = 91,
    FERRY__SOCKS4_NO_IDENTD = 92,
    FERRY__SOCKS4_BAD_USER = 93
};
/* SOCKS5 methods. */
enum {
    FERRY__SOCKS5_NO_AUTH = 0x00,
    FERRY__SOCKS5_USERPASS = 0x02,
    FERRY__SOCKS5_NO_METHOD = 0xFF
};
enum { FERRY__SOCKS_ATYP_IPV4 = 1, FERRY__SOCKS_ATYP_DOMAIN = 3, FERRY__SOCKS_ATYP_IPV6 = 4 };

/* A CONNECT/BIND/UDP ASSOCIATE request, either version. */
typedef struct ferry__socks_request {
    uint8_t version; /* 4 or 5 */
    uint8_t cmd;     /* ferry__socks_cmd */
    uint8_t atyp;    /* FERRY__SOCKS_ATYP_*; SOCKS4a names are ATYP_DOMAIN */
    char host[FERRY__SOCKS_HOST_MAX]; /* dotted IPv4, IPv6 text, or the domain */
    uint16_t port;
    char user[FERRY__SOCKS_CRED_MAX]; /* SOCKS4 user id ("" if none) */
} ferry__socks_request;

/* SOCKS4/4a request: VN=4 CD DSTPORT DSTIP USERID NUL [DOMAIN NUL]. A DSTIP of 0.0.0.x
 * (x != 0) announces a 4a domain. User id and domain at most 255 bytes each. */
int ferry__socks4_parse_request(const char *buf, size_t len, ferry__socks_request *out);

/* SOCKS5 greeting: VER=5 NMETHODS METHODS. *methods gets a bit per method offered
 * (bit 0: no auth, bit 2: user/password); other methods are ignored. */
int ferry__socks5_parse_greeting(const char *buf, size_t len, unsigned *methods);

/* RFC 1929: VER=1 ULEN UNAME PLEN PASSWD. NUL-terminated copies; ULEN 0 or a NUL byte
 * inside either field is FERRY__SOCKS_E_CREDS. An empty password (PLEN 0) is accepted. */
int ferry__socks5_parse_userpass(const char *buf, size_t len, char user[FERRY__SOCKS_CRED_MAX],
                                 char password[FERRY__SOCKS_CRED_MAX]);

/* SOCKS5 request: VER=5 CMD RSV=0 ATYP DST.ADDR DST.PORT. Port 0 is allowed for UDP
 * ASSOCIATE only (the client may not know its port yet). */
int ferry__socks5_parse_request(const char *buf, size_t len, ferry__socks_request *out);

/* 8-byte SOCKS4 reply (VN=0 CD port ip), address zero. */
size_t ferry__socks4_reply(uint8_t code, char out[8]);
/* 2-byte method selection (VER=5 METHOD). */
size_t ferry__socks5_method_reply(uint8_t method, char out[2]);
/* 2-byte RFC 1929 status (VER=1 STATUS): 0 success. */
size_t ferry__socks5_auth_reply(uint8_t status, char out[2]);
/* SOCKS5 reply with BND.ADDR/BND.PORT from bound (NULL: 0.0.0.0:0). */
size_t ferry__socks5_reply(uint8_t code, const ferry__sockaddr *bound,
                           char out[FERRY__SOCKS5_REPLY_MAX]);

/* UDP ASSOCIATE datagram header: RSV(2)=0 FRAG ATYP DST.ADDR DST.PORT DATA. Returns the
 * header length (data follows), or a negative error (a partial header is
 * FERRY__SOCKS_E_TRUNCATED: a datagram is whole). Port 0 is an error. */
int ferry__socks5_parse_udp(const char *buf, size_t len, ferry__socks_request *out);
/* Header for a datagram coming back from `from`; returns its length. */
size_t ferry__socks5_udp_header(const ferry__sockaddr *from, char out[FERRY__SOCKS_UDP_HEADER_MAX]);

/* ---- client side, towards a SOCKS5 parent ---- */

/* Greeting offering no-auth, plus user/password when with_userpass. */
size_t ferry__socks5_client_greeting(int with_userpass, char out[4]);
/* Server's method choice: VER=5 METHOD. *method set. */
int ferry__socks5_client_parse_method(const char *buf, size_t len, uint8_t *method);
/* RFC 1929 request; 0 if the user is empty (RFC 1929 needs one byte at least) or user or
 * password is longer than 255 bytes. out needs 513 bytes. */
size_t ferry__socks5_client_userpass(const char *user, const char *password, char *out,
                                     size_t out_size);
/* RFC 1929 status: *status 0 means success. */
int ferry__socks5_client_parse_auth(const char *buf, size_t len, uint8_t *status);
/* CONNECT request for host (IP literal sent as an address, anything else as a domain) and
 * port; 0 if the host is longer than 255 bytes. out needs 262 bytes. */
size_t ferry__socks5_client_connect(const char *host, uint16_t port, char *out, size_t out_size);
/* The server's reply to the request; *code is the REP byte. Consumes the whole reply,
 * bound address included. */
int ferry__socks5_client_parse_reply(const char *buf, size_t len, uint8_t *code);

#endif
