/* SOCKS5 UDP ASSOCIATE (RFC 1928 section 7): a UDP socket relaying the client's datagrams
 * to the destinations named in their headers and the answers back, for as long as the
 * client's TCP connection stays open. Every datagram's destination goes through the
 * policy like a CONNECT would; datagrams are bounded in size, the relay in idle time. */
#ifndef FERRY__SOCKS_UDP_H
#define FERRY__SOCKS_UDP_H

#include "session_int.h"

typedef struct ferry__socks_udp ferry__socks_udp;

/* Open the relay for session s, whose info.dest_* holds the address the client said it
 * will send from (0.0.0.0:0 or a zero port when it does not know yet), and send the
 * SOCKS5 success reply naming the relay's address. */
ferry_err ferry__socks_udp_start(ferry__session *s, ferry__socks_udp **out);
/* NULL is a no-op. */
void ferry__socks_udp_free(ferry__session *s, ferry__socks_udp *u);

#endif
