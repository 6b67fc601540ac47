/* Asking a parent proxy for a tunnel to host:port over a connected socket: HTTP CONNECT
 * or SOCKS5 (RFC 1928, with RFC 1929 credentials when the parent has them). The owner
 * watches the socket and calls ferry__tunnel_step() whenever it is ready; the step sends
 * and receives what it can without blocking. Replies are read exactly to their end, so
 * the first bytes of the tunnelled stream stay in the socket for whoever relays it. */
#ifndef FERRY__TUNNEL_H
#define FERRY__TUNNEL_H

#include <stddef.h>
#include <stdint.h>

#include "ferry/error.h"
#include "ferry/session.h"

enum { FERRY__TUNNEL_BUF = 1024 };

typedef enum ferry__tunnel_want {
    FERRY__TUNNEL_DONE = 0,  /* the tunnel is open */
    FERRY__TUNNEL_READ = 1,  /* call again when the socket is readable */
    FERRY__TUNNEL_WRITE = 2, /* call again when the socket is writable */
    FERRY__TUNNEL_FAILED = 3 /* see *err */
} ferry__tunnel_want;

typedef struct ferry__tunnel {
    const ferry_parent *parent;
    uint8_t phase;
    char host[FERRY_HOST_MAX];
    uint16_t port;
    char out[FERRY__TUNNEL_BUF]; /* the message being sent */
    size_t out_len, out_off;
    char in[FERRY__TUNNEL_BUF];  /* the reply received so far */
    size_t in_len;
} ferry__tunnel;

/* Prepare the first message. FERRY_EINVAL when host or credentials are too long. */
ferry_err ferry__tunnel_init(ferry__tunnel *t, const ferry_parent *parent, const char *host,
                             uint16_t port);
/* Make progress on fd. FERRY__TUNNEL_FAILED sets *err: FERRY_EAUTH (the parent refused
 * our credentials), FERRY_EREJECTED (it refused the destination), FERRY_EPROTO (it spoke
 * something else), FERRY_ECLOSED, or a socket error. */
ferry__tunnel_want ferry__tunnel_step(ferry__tunnel *t, int fd, ferry_err *err);

#endif
