/* What hooks and direction policies see of a session (one accepted client connection). */
#ifndef FERRY_SESSION_H
#define FERRY_SESSION_H

#include <stdint.h>
#include "ferry/error.h"
#include "ferry/view.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { FERRY_HOST_MAX = 256, FERRY_ADDRSTR_MAX = 64 };

typedef struct ferry_backend ferry_backend;

/* A parent proxy a forward request is sent through (see ferry/forward.h). */
typedef enum ferry_parent_kind {
    FERRY_PARENT_HTTP = 1,  /* absolute-form requests; CONNECT for tunnels */
    FERRY_PARENT_SOCKS5 = 2 /* SOCKS5 CONNECT (RFC 1928), RFC 1929 credentials if given */
} ferry_parent_kind;

enum { FERRY_CRED_MAX = 256, FERRY_NAME_MAX = 64 };

typedef struct ferry_parent {
    ferry_parent_kind kind;
    char name[FERRY_NAME_MAX];     /* as declared (routes and logs use it); never credentials */
    char host[FERRY_HOST_MAX];     /* name or IP literal */
    uint16_t port;
    char user[FERRY_CRED_MAX];     /* "" for none */
    char password[FERRY_CRED_MAX];
} ferry_parent;

/* What a forward-proxy client asked for. */
typedef enum ferry_proxy_protocol {
    FERRY_PROXY_NONE = 0,    /* not a forward request (reverse listeners) */
    FERRY_PROXY_HTTP = 1,    /* HTTP absolute-form request: GET http://host/ */
    FERRY_PROXY_CONNECT = 2, /* HTTP CONNECT tunnel */
    FERRY_PROXY_SOCKS4 = 3,  /* SOCKS4 or SOCKS4a CONNECT */
    FERRY_PROXY_SOCKS5 = 4,  /* SOCKS5 CONNECT */
    FERRY_PROXY_SOCKS5_UDP = 5 /* SOCKS5 UDP ASSOCIATE: one datagram's destination */
} ferry_proxy_protocol;

/* Where a session goes. Either `backend` is set (a pool member: its address is used as is)
 * or `host` + `port` are (a name or an IP literal; names go through the async resolver).
 * With `parent` set, ferry connects to the parent proxy and asks it for host:port; the
 * parent must outlive the request (the forward policy's parents live as long as it). */
typedef struct ferry_target {
    char host[FERRY_HOST_MAX];
    uint16_t port;
    ferry_backend *backend;
    const ferry_parent *parent;
} ferry_target;

/* Read-only facts about a session. Valid only during the callback that receives it. */
typedef struct ferry_session_info {
    uint64_t id;                         /* unique within the engine */
    unsigned worker;                     /* index of the worker thread that owns it */
    const char *listener;                /* the listener's name */
    int client_family;                   /* AF_INET or AF_INET6 */
    unsigned char client_ip[16];         /* network order; first 4 bytes for AF_INET */
    uint16_t client_port;
    char client_addr[FERRY_ADDRSTR_MAX]; /* textual client IP, e.g. "127.0.0.1" or "::1" */
    /* Forward listeners: the current request (HTTP) or the session's request (SOCKS).
     * Never NULL: "" and 0 where there is none (reverse listeners, before the request). */
    int proxy_protocol;    /* a ferry_proxy_protocol */
    const char *dest_host; /* as the client named it: a host name or an IP literal */
    uint16_t dest_port;
    const char *method;    /* HTTP method ("CONNECT" for tunnels); "" for SOCKS */
    const char *user;      /* the authenticated user, "" if none */
    /* HTTP listeners: the request being routed (read it with the ferry_txn_* getters, e.g.
     * to hash on a header, a cookie or the URI); NULL for TCP and SOCKS sessions. */
    const struct ferry_txn *txn;
} ferry_session_info;

/* One line of the per-session summary handed to on_log. Strings are never NULL. */
typedef struct ferry_log_record {
    const ferry_session_info *session;
    const char *target;          /* "host:port" picked last, "" if none */
    const char *verdict;         /* "relayed", "rejected", "no-upstream", "drained" or "error" */
    ferry_err error;             /* FERRY_OK or what ended the session abnormally */
    uint64_t bytes_from_client;  /* bytes read from the client and relayed upstream */
    uint64_t bytes_to_client;    /* bytes read from the upstream and relayed to the client */
    uint64_t connect_us;         /* time to establish the upstream connection, 0 if none */
    uint64_t duration_us;        /* accept to close */
    int64_t start_unix_us;       /* wall-clock time of accept */
    unsigned connect_attempts;   /* upstream connects tried (failover counts) */
    /* HTTP listeners only (empty views and 0 for TCP): */
    ferry_view method;
    ferry_view request_target;
    ferry_view host;
    ferry_view referer;
    ferry_view user_agent;
    int status;                  /* status sent to the client, 0 if none */
    uint64_t first_byte_us;      /* accept (or previous response end) to request head */
    uint64_t response_bytes;     /* body bytes sent to the client */
} ferry_log_record;

#ifdef __cplusplus
}
#endif
#endif
