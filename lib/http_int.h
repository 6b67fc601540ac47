/* Internal HTTP structures shared by http_conn.c (connections, upstream pool, state
 * machine) and http_txn.c (the hook-facing transaction: header edits, head writing). */
#ifndef FERRY__HTTP_INT_H
#define FERRY__HTTP_INT_H

#include "bytes.h"
#include "engine_int.h"
#include "ferry/http.h"
#include "http1.h"
#include "tunnel.h"

typedef struct ferry__http_conn ferry__http_conn;

struct ferry__http_upstream {
    ferry__http_upstream *prev, *next; /* worker's idle list */
    ferry__worker *worker;
    int fd;
    ferry__sockaddr addr; /* pool key */
    ferry__bytes in, out;
    unsigned uses;        /* exchanges completed on this connection */
    int connecting;
    uint8_t pinned;       /* tunnelled through a SOCKS or CONNECT parent to one origin:
                           * never pooled under the parent's address */
    const ferry_parent *via; /* the HTTP parent it sends absolute-form requests to */
    ferry__tunnel *handshake; /* while asking a parent for a tunnel */
    uint8_t handshake_want;   /* ferry__tunnel_want */
    ferry__timer idle_timer;
};

/* http_pool.c */
void ferry__http_upstream_free(ferry__worker *w, ferry__http_upstream *u);
/* Park a connection whose exchange ended cleanly (or close it if the pool is full). */
void ferry__http_pool_put(ferry__worker *w, const ferry_listener_opts *o, ferry__http_upstream *u);
/* An idle connection to addr (through the HTTP parent `via`, NULL for none), or NULL. */
ferry__http_upstream *ferry__http_pool_take(ferry__worker *w, const ferry__sockaddr *addr,
                                            const ferry_parent *via);

/* Strings copied for the transaction's lifetime (header edits, log fields). */
typedef struct ferry__arena_block {
    struct ferry__arena_block *next;
    size_t used, size;
    char data[];
} ferry__arena_block;

typedef struct ferry__header_list {
    ferry_http_header *items;
    unsigned count, cap;
} ferry__header_list;

struct ferry_txn {
    ferry__http_conn *conn;
    const ferry_allocator *alloc;
    ferry__http_msg req;
    ferry__http_msg resp;
    ferry__header_list req_headers;  /* editable copy of the request's header views */
    ferry__header_list resp_headers; /* editable copy of the response's header views */
    ferry__arena_block *arena;
    ferry_view method, target, host, referer, user_agent; /* arena copies, for the log */
    int reject_status;
    uint8_t reject_status_set; /* a hook chose it (on_response otherwise answers 502) */
    int local_status; /* set by ferry_txn_respond */
    char *local_type;
    char *local_body;
    size_t local_len;
    int status; /* sent to the client */
    /* forward requests: the target to send upstream when it differs from the client's
     * (origin-form path), and the credentials for an HTTP parent */
    ferry_view upstream_target;
    const char *parent_auth;
    /* set by hooks or the policy before routing */
    void *route_data;
    unsigned connect_timeout_ms, response_timeout_ms; /* 0: the listener's */
    uint64_t max_body_bytes;                          /* 0: the listener's */
    uint8_t backend_host;
    /* a route's mapping between backend and public paths and cookie domains, applied to
     * the response's URLs and cookies (views stay valid: the router owns the strings) */
    ferry_view backend_prefix, public_prefix, cookie_domain, public_domain;
    /* a route's body substitutions (rules owned by the router), and the running state
     * (owned) once a response body is being substituted */
    const struct ferry__sub_rule *sub_rules;
    size_t n_sub_rules;
    uint8_t sub_icase;
    struct ferry__sub *sub;
    /* cookie stickiness (sticky.c): the sticky pool the request was balanced over, and
     * the backend id its cookie named (when sticky_named) */
    const ferry_pool *sticky_pool;
    uint64_t sticky_id;
    uint8_t sticky_named;
    /* during on_body: where ferry_txn_body_write() goes */
    ferry__bytes *body_out;
    ferry__bytes_pool *body_pool;
    uint8_t body_chunked, body_written, body_oom;
};

/* http_conn.c: what the transaction needs from its connection */
const ferry_session_info *ferry__http_conn_info(const ferry__http_conn *c);
/* Which forwarding headers the upstream request carries: FERRY__FW_* flags. */
enum {
    FERRY__FW_XFF = 1,     /* X-Forwarded-For/-Proto/-Host */
    FERRY__FW_TRUSTED = 2, /* the client is a trusted forwarder: extend its values */
    FERRY__FW_RFC7239 = 4, /* Forwarded */
    FERRY__FW_VIA = 8      /* Via */
};
int ferry__http_conn_forwarded(const ferry__http_conn *c);

/* http_txn.c */
void ferry__txn_init(ferry_txn *t, ferry__http_conn *c, const ferry_allocator *a);
void ferry__txn_reset(ferry_txn *t); /* for the next transaction; keeps reusable memory */
void ferry__txn_free(ferry_txn *t);  /* when the connection ends */
/* Copy the parsed request's header views into the editable list, and the log fields into
 * the arena. FERRY_ENOMEM on failure. */
ferry_err ferry__txn_take_request(ferry_txn *t);
ferry_err ferry__txn_take_response(ferry_txn *t);
char *ferry__txn_strdup(ferry_txn *t, const char *p, size_t n);
/* n bytes (plus a terminating NUL) from the transaction's arena. */
char *ferry__txn_alloc(ferry_txn *t, size_t n);

/* Is `name` hop-by-hop for this message (fixed list, framing, or listed in Connection)? */
int ferry__http_hop_by_hop(ferry_view name, const ferry__header_list *headers);

/* http_rewrite.c: a reverse listener's edits of a response from the upstream `rt` went
 * to: make its Location, Content-Location, Refresh and Set-Cookie name the public address
 * instead of the backend's, with the route's mappings (rewrite_responses); drop identity
 * headers (hide_backend_headers); add the sticky cookie of the backend's pool. */
struct ferry__route;
ferry_err ferry__http_rewrite_response(ferry_txn *t, const struct ferry__route *rt,
                                       const ferry_listener_opts *o);

/* Write the upstream request head. body: the request's enum ferry__http_body. */
ferry_err ferry__http_write_request_head(ferry__bytes *out, ferry__bytes_pool *a,
                                         const ferry_txn *t, int body, uint64_t length,
                                         int upgrade);
/* Write the client response head. chunked: re-frame the body as chunked; close: announce
 * Connection: close; keep_alive_10: announce keep-alive to an HTTP/1.0 client. */
ferry_err ferry__http_write_response_head(ferry__bytes *out, ferry__bytes_pool *a,
                                          const ferry_txn *t, int body, uint64_t length,
                                          int chunked, int close, int keep_alive_10, int upgrade);
/* A complete short response made by the proxy itself (errors, rejects, local answers).
 * Never names a backend. extra_headers: NULL or whole "Name: value\r\n" lines. */
ferry_err ferry__http_write_simple(ferry__bytes *out, ferry__bytes_pool *a, int status,
                                   const char *content_type, const char *body, size_t body_len,
                                   const char *extra_headers, int close, int head_only);
const char *ferry__http_reason(int status);

#endif
