/* TCP sessions (session.c) as the SOCKS front end (socks_conn.c) drives them: the SOCKS
 * handshake fills in the destination, then the session chooses, connects and relays. */
#ifndef FERRY__SESSION_INT_H
#define FERRY__SESSION_INT_H

#include "engine_int.h"

typedef struct ferry__connect_state ferry__connect_state;
typedef struct ferry__socks ferry__socks;
typedef struct ferry__sni ferry__sni;

typedef struct ferry__session {
    ferry__conn base;
    ferry__worker *worker;
    ferry_listener *listener;
    int cfd, ufd;
    unsigned attempts; /* kept for the log once the connect state is gone */
    ferry_session_info info;
    uint64_t start_us, connect_start_us, connect_us;
    int64_t start_wall_us;
    ferry__connect_state *cs;
    char *target_text; /* owned unless it points at a backend's address */
    int target_owned;
    ferry__socks *socks; /* SOCKS sessions: handshake state, freed with the session */
    ferry__sni *sni;     /* TLS passthrough sessions: the server name, the hello's timer */
    ferry_backend *attached; /* the pool backend in use, for load counts */
    char *prefix;            /* client bytes read before routing (a TLS ClientHello), sent
                              * upstream ahead of the relay; owned */
    size_t prefix_len, prefix_off;
    uint64_t early_bytes;    /* client bytes sent upstream before the relay started */
    ferry__relay relay;
} ferry__session;

/* A new session for an accepted client: linked, on_accept asked. NULL when it was
 * refused or memory ran out (the fd is closed then). */
ferry__session *ferry__session_new(ferry__worker *w, ferry_listener *l, int fd,
                                   const ferry__sockaddr *peer);
/* Choose and connect an upstream (session->info says where), then relay. */
void ferry__session_route(ferry__session *s);
/* Log, close both sides and free. */
void ferry__session_end(ferry__session *s, const char *verdict, ferry_err err);

/* sni_conn.c: TLS passthrough: read the ClientHello, route by its server name. */
void ferry__sni_accept(ferry__worker *w, ferry_listener *l, int fd, const ferry__sockaddr *peer);
void ferry__sni_free(ferry__session *s); /* no-op for other sessions */

/* socks_conn.c: the upstream is connected: send the success reply. FERRY_OK to relay;
 * otherwise the session has been ended. */
ferry_err ferry__socks_granted(ferry__session *s);
/* No upstream: send the failure reply matching err (the caller ends the session). */
void ferry__socks_refuse(ferry__session *s, ferry_err err);
/* Free the SOCKS state (a UDP relay included); no-op for plain TCP sessions. */
void ferry__socks_free(ferry__session *s);

#endif
