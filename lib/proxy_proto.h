/* HAProxy PROXY protocol, version 1 (a text line) and version 2 (binary): what a trusted
 * load balancer in front of us says about the client, and what we tell a backend. Pure and
 * incremental in the picohttpparser manner: the decoder takes the bytes received so far and
 * returns the header length (> 0), 0 when more are needed, or a negative
 * ferry__proxy_error; no I/O, no allocation. Encoders write into a caller buffer. */
#ifndef FERRY__PROXY_PROTO_H
#define FERRY__PROXY_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "ferry/view.h"

enum {
    FERRY__PROXY_V1_MAX = 107,        /* longest v1 line, CRLF included */
    FERRY__PROXY_V2_MAX = 16 + 65535, /* fixed part + the largest length field */
    FERRY__PROXY_ENCODE_MAX = 107     /* room for anything the encoders write */
};

typedef enum ferry__proxy_error {
    FERRY__PROXY_E_SIGNATURE = -1, /* starts like neither "PROXY " nor the v2 signature */
    FERRY__PROXY_E_TOO_LONG = -2,  /* v1: no CRLF in 107 bytes; v2: longer than max_v2 */
    FERRY__PROXY_E_LINE = -3,      /* v1: bare LF, or fields not split by single spaces */
    FERRY__PROXY_E_PROTOCOL = -4,  /* v1: protocol not TCP4, TCP6 or UNKNOWN */
    FERRY__PROXY_E_ADDRESS = -5,   /* v1: not an address of the protocol's family */
    FERRY__PROXY_E_PORT = -6,      /* v1: port not plain decimal 0-65535 */
    FERRY__PROXY_E_VERSION = -7,   /* v2: version not 2 */
    FERRY__PROXY_E_COMMAND = -8,   /* v2: command neither LOCAL nor PROXY */
    FERRY__PROXY_E_FAMILY = -9,    /* v2 PROXY: family/transport byte the spec does not list */
    FERRY__PROXY_E_LENGTH = -10,   /* v2 PROXY: length shorter than the family's addresses */
    FERRY__PROXY_E_TLV = -11       /* v2: a TLV runs past the header, or ALPN/authority twice */
} ferry__proxy_error;

const char *ferry__proxy_error_text(int err);

/* Values as in the v2 wire format. */
typedef enum ferry__proxy_command { FERRY__PROXY_LOCAL = 0, FERRY__PROXY_PROXY = 1 } ferry__proxy_command;
typedef enum ferry__proxy_transport {
    FERRY__PROXY_UNSPEC = 0,
    FERRY__PROXY_STREAM = 1, /* TCP */
    FERRY__PROXY_DGRAM = 2   /* UDP: decoded, but a TCP listener should refuse it */
} ferry__proxy_transport;

typedef struct ferry__proxy_header {
    uint8_t version;   /* 1 or 2 */
    uint8_t command;   /* ferry__proxy_command; v1 is always PROXY */
    uint8_t transport; /* ferry__proxy_transport; v1 TCP4/TCP6 are STREAM */
    /* The client's address and the one it connected to. Zeroed (AF_UNSPEC) unless PROXY
     * over IPv4 or IPv6: for v1 UNKNOWN, v2 LOCAL, AF_UNSPEC and AF_UNIX the caller keeps
     * the connection's own addresses, as the spec asks. */
    ferry__sockaddr src, dst;
    /* v2 TLVs PP2_TYPE_ALPN (0x01) and PP2_TYPE_AUTHORITY (0x02), pointing into the
     * decoded buffer; ptr NULL when absent. Other TLVs are skipped. */
    ferry_view alpn, authority;
    size_t len; /* header length, as returned; the payload starts there */
} ferry__proxy_header;

/* Either version, told apart by the first byte, so anything else (plain HTTP, a TLS
 * ClientHello) is refused at its first byte that differs from both. v1 is checked once
 * its CRLF arrives: "PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n" with single spaces, dotted
 * quad or IPv6 text addresses, ports without sign or leading zero; "PROXY UNKNOWN" may be
 * followed by anything up to the CRLF. v2: the header fields are judged as they arrive,
 * the address block and TLVs once the whole header is there. A LOCAL header's block is
 * skipped unread, family byte included (the spec says to ignore it); so is a PROXY
 * AF_UNSPEC block. max_v2 caps the whole v2 header (0: FERRY__PROXY_V2_MAX) so a
 * listener need not buffer 64 KiB. *out is written only when a header is returned. */
int ferry__proxy_decode(const char *buf, size_t len, size_t max_v2, ferry__proxy_header *out);

/* "PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n" when src and dst are both IPv4 or both IPv6;
 * TCP6 with the IPv4 one written IPv4-mapped (::ffff:a.b.c.d) when the families differ;
 * else (either NULL or not IP) "PROXY UNKNOWN\r\n". Returns the length, 0 if it does not
 * fit in out_size. */
size_t ferry__proxy_encode_v1(const ferry__sockaddr *src, const ferry__sockaddr *dst, char *out,
                              size_t out_size);

/* v2 PROXY over TCP (STREAM) for the same pairs (mixed ones as IPv6), else PROXY with
 * AF_UNSPEC and no addresses (v2's UNKNOWN). 28 bytes for IPv4, 52 for IPv6, 16 otherwise; 0 if it does not
 * fit. No TLVs. */
size_t ferry__proxy_encode_v2(const ferry__sockaddr *src, const ferry__sockaddr *dst, char *out,
                              size_t out_size);

/* v2 LOCAL (16 bytes): a connection of our own, such as a health check, that the backend
 * should take at face value. 0 if out_size < 16. */
size_t ferry__proxy_encode_v2_local(char *out, size_t out_size);

#endif
