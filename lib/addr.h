/* Socket address helpers: "HOST:PORT" / "[V6]:PORT" parsing and formatting. Pure. */
#ifndef FERRY__ADDR_H
#define FERRY__ADDR_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include "ferry/error.h"

typedef union ferry__sockaddr {
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
} ferry__sockaddr;

static inline socklen_t ferry__sockaddr_len(const ferry__sockaddr *a) {
    return a->sa.sa_family == AF_INET6 ? (socklen_t)sizeof a->in6 : (socklen_t)sizeof a->in;
}

/* Split "HOST:PORT" or "[IPV6]:PORT" (port 0-65535, digits only) into host and port.
 * FERRY_EADDR on malformed input, host too long for host_size, or an empty host. */
ferry_err ferry__addr_split(const char *text, char *host, size_t host_size, uint16_t *port);

/* Fill out from an IPv4 or IPv6 literal; 0 on success, -1 if host is not a literal. */
int ferry__addr_from_literal(const char *host, uint16_t port, ferry__sockaddr *out);

/* "1.2.3.4:80" / "[::1]:80" (with_port) or the bare IP. Always NUL-terminates. */
void ferry__addr_format(const ferry__sockaddr *a, int with_port, char *buf, size_t size);

uint16_t ferry__addr_port(const ferry__sockaddr *a);

#endif
