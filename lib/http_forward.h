/* Pure pieces of HTTP forward proxying: splitting a proxy request's target into the
 * destination and the origin-form path, and Basic credentials both ways. No I/O, no
 * allocation. */
#ifndef FERRY__HTTP_FORWARD_H
#define FERRY__HTTP_FORWARD_H

#include <stddef.h>
#include <stdint.h>

#include "ferry/session.h"
#include "ferry/view.h"

typedef struct ferry__forward_target {
    char host[FERRY_HOST_MAX]; /* without IPv6 brackets */
    uint16_t port;
    ferry_view authority;      /* host[:port] as received: the upstream Host header */
    ferry_view path;           /* origin-form path and query; empty means "/" */
} ferry__forward_target;

/* Split an absolute-form target (already syntax-checked by the HTTP parser) or, when
 * connect is set, a CONNECT authority. Returns 0, or the status to answer: 400 for a
 * bad target (port 0, host too long, authority without a port for CONNECT), 501 for a
 * scheme other than http (https is tunnelled with CONNECT, never terminated). */
int ferry__forward_target_split(ferry_view target, int connect, ferry__forward_target *out);

enum { FERRY__BASIC_MAX = 255 };

/* Decode "Basic <base64(user:password)>" (scheme case-insensitive, RFC 9110 section 11).
 * 0 on success with NUL-terminated user and password; -1 for another scheme, bad base64,
 * no colon, a NUL or control byte, or a part longer than FERRY__BASIC_MAX. */
int ferry__basic_decode(ferry_view value, char user[FERRY__BASIC_MAX + 1],
                        char password[FERRY__BASIC_MAX + 1]);

/* "Basic <base64(user:password)>" into out (NUL-terminated); the length, or 0 if it does
 * not fit. */
size_t ferry__basic_encode(const char *user, const char *password, char *out, size_t out_size);

#endif
