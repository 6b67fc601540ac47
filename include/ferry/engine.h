/* The engine: worker threads, each running its own event loop, sharing listeners.
 * A session (accepted connection) lives and dies on one worker; it never migrates.
 * Several engines may live in one process; they share no mutable state. */
#ifndef FERRY_ENGINE_H
#define FERRY_ENGINE_H

#include <stdint.h>
#include "ferry/export.h"
#include "ferry/error.h"
#include "ferry/alloc.h"
#include "ferry/hooks.h"
#include "ferry/direction.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ferry_engine ferry_engine;
typedef struct ferry_listener ferry_listener;
typedef struct ferry_logger ferry_logger;

typedef enum ferry_log_level {
    FERRY_LOG_ERROR = 0,
    FERRY_LOG_WARN = 1,
    FERRY_LOG_INFO = 2,
    FERRY_LOG_DEBUG = 3
} ferry_log_level;

typedef enum ferry_poller {
    FERRY_POLLER_DEFAULT = 0, /* the build's choice (meson -Dpoller) */
    FERRY_POLLER_EPOLL = 1,
    FERRY_POLLER_POLL = 2
} ferry_poller;

/* Called from worker threads (concurrently) and from the resolver's threads; must be
 * thread-safe and must not block for long (hand the line to a writer, see ferry/logger.h). */
typedef void (*ferry_log_fn)(void *user_data, ferry_log_level level, const char *message);

typedef struct ferry_engine_opts {
    unsigned workers;             /* worker threads; default 1 */
    ferry_poller poller;          /* default FERRY_POLLER_DEFAULT */
    unsigned resolver_threads;    /* getaddrinfo threads; default 2 */
    unsigned dns_ttl_ms;          /* positive DNS cache lifetime; default 30000 */
    unsigned dns_negative_ttl_ms; /* negative DNS cache lifetime; default 5000 */
    unsigned max_connections;     /* client connections open at once, engine-wide; default 16384 */
    unsigned stop_drain_ms;       /* drain used by ferry_engine_signal_stop(); default 5000 */
    unsigned buffer_size;         /* relay buffer per direction, taken from a per-worker pool
                                   * only while bytes are in flight; default 16384 */
    unsigned pipe_size;           /* splice(2) pipe capacity per direction, also taken only
                                   * while bytes are in flight; default 262144 */
    const ferry_allocator *allocator; /* NULL: libc; copied */
    ferry_log_fn log;             /* NULL: errors and warnings go nowhere */
    void *log_user_data;
    ferry_log_level log_level;    /* most verbose level passed to log; default FERRY_LOG_INFO */
} ferry_engine_opts;

/* Fill opts with the defaults. Call it before setting fields, so that fields added in
 * later versions get their defaults. */
FERRY_API void ferry_engine_opts_init(ferry_engine_opts *opts);

/* Create an engine (no thread runs yet). opts may be NULL for defaults. */
FERRY_API ferry_err ferry_engine_new(const ferry_engine_opts *opts, ferry_engine **out);

/* Stop (no drain) and wait for the workers if running, then free everything the engine
 * owns: listeners, pools, sessions, threads. NULL is a no-op. Not from a worker thread. */
FERRY_API void ferry_engine_free(ferry_engine *engine);

typedef enum ferry_protocol {
    FERRY_PROTO_TCP = 0,  /* opaque byte relay */
    FERRY_PROTO_HTTP = 1, /* HTTP/1.1 (strict parsing, keep-alive, pooled upstreams) */
    FERRY_PROTO_SOCKS = 2, /* SOCKS4, SOCKS4a and SOCKS5 (forward policies only) */
    FERRY_PROTO_HTTP_SOCKS = 3, /* HTTP or SOCKS, told apart by the client's first byte
                                 * (forward policies only) */
    FERRY_PROTO_SNI = 4        /* TLS passed through untouched, routed by the ClientHello's
                                * server name (session dest_host; "" when it has none) */
} ferry_protocol;

typedef struct ferry_listener_opts {
    const char *address;          /* "IP:PORT" or "[IPv6]:PORT"; port 0 picks a free one */
    const char *name;             /* for logs; NULL: the address */
    ferry_protocol protocol;      /* default FERRY_PROTO_TCP */
    const ferry_direction_ops *direction; /* required */
    void *direction_data;         /* handed to the direction's callbacks */
    ferry_hooks hooks;            /* optional */
    int backlog;                  /* listen(2) backlog; default 511 */
    unsigned connect_timeout_ms;  /* per upstream connect attempt; default 5000 */
    unsigned idle_timeout_ms;     /* no byte either way for this long closes; default 300000 */
    unsigned max_connect_attempts; /* failover bound; 0: until the policy has nothing left */
    unsigned high_water;          /* stop reading a side while this much is pending towards the
                                   * other; 0: the engine's buffer_size (or pipe_size when
                                   * splicing) */
    int splice;                   /* 1: zero-copy splice(2) relay where the kernel allows; default 1 */
    ferry_logger *access_log;     /* optional: one line per session (see ferry/logger.h) */
    int access_format;            /* a ferry_access_format; default FERRY_ACCESS_TEXT */
    /* HTTP listeners only. Limits answer 414/431/413; timeouts answer 408/504 or close. */
    unsigned max_request_line;    /* default 8192 */
    unsigned max_header_bytes;    /* whole request head; default 65536 */
    unsigned max_headers;         /* header fields per message; default 100 */
    uint64_t max_body_bytes;      /* request body; 0 = no limit; default 1 GiB */
    unsigned header_timeout_ms;   /* a client must send a whole head within this; default 10000 */
    unsigned keepalive_timeout_ms; /* idle client connection between requests; default 60000 */
    unsigned response_timeout_ms; /* upstream response head after the request; default 60000 */
    unsigned body_timeout_ms;     /* no body byte either way for this long; default 60000 */
    unsigned upstream_idle_timeout_ms; /* pooled idle upstream connections; default 30000 */
    unsigned upstream_max_idle;   /* idle upstream connections kept per worker; default 64 */
    int forwarded_headers;        /* add X-Forwarded-For/-Proto/-Host (replacing the client's,
                                   * unless it is a trusted forwarder); default 1 */
    unsigned request_buffer_bytes; /* read request bodies up to this size completely before
                                   * connecting upstream, so that an idempotent request with
                                   * a body can be retried; larger bodies stream. Bounded by
                                   * the 128 KiB connection buffer. 0 (default): stream all */
    /* SOCKS listeners. The handshake must complete within header_timeout_ms. */
    unsigned udp_idle_timeout_ms; /* a UDP ASSOCIATE relay with no datagram for this long
                                   * ends; default 60000 */
    unsigned udp_max_datagram;    /* larger datagrams are dropped; default 16384 */
    /* PROXY protocol (v1 and v2, as HAProxy defines it), for a load balancer or TLS
     * terminator in front: */
    int accept_proxy;             /* 1: connections start with a PROXY header whose source
                                   * becomes the client's address; a connection from outside
                                   * proxy_trusted, or without a valid header, is closed */
    const char *proxy_trusted;    /* who may send it: comma-separated CIDRs; NULL: loopback */
    int send_proxy;               /* 1 or 2: start every upstream connection with a PROXY v1 / v2
                                   * header naming the client (HTTP upstream connections then
                                   * serve one client each and are not pooled); 0: none */
    /* Reverse HTTP listeners: what the backend says about itself in its responses. */
    int rewrite_responses;        /* 1 (default): Location, Content-Location and Refresh URLs
                                   * naming the backend the request went to are rewritten to
                                   * the address the client used, and a route's path prefix
                                   * and cookie domain mapping applies to them and to
                                   * Set-Cookie; 0: responses pass as they are */
    const char *public_scheme;    /* scheme of the rewritten URLs: NULL "http", or "https"
                                   * when a TLS terminator sits in front */
    int hide_backend_headers;     /* 1: drop Server, X-Powered-By and similar headers that
                                   * name the backend's software; default 0 */
    const char *trusted_forwarders; /* comma-separated CIDRs of proxies in front whose
                                   * X-Forwarded-* and Forwarded values are kept and extended;
                                   * from anyone else they are replaced. NULL: nobody */
    int forwarded_rfc7239;        /* 1: also send RFC 7239 Forwarded (for, proto, host) */
    int add_via;                  /* 1: add "Via: 1.1 ferry" to requests sent upstream */
} ferry_listener_opts;

FERRY_API void ferry_listener_opts_init(ferry_listener_opts *opts);

/* Bind and listen now (so a port in use is reported here, as FERRY_EADDRINUSE). The
 * strings in opts are copied; the direction ops, hook ops and their data must outlive
 * the engine. Before ferry_engine_start() only; from the engine's owning thread. */
FERRY_API ferry_err ferry_engine_listen(ferry_engine *engine, const ferry_listener_opts *opts,
                                        ferry_listener **out);

/* Let `engine` (not started) take over the listening sockets of `previous`, a running
 * engine, for a reload without losing a connection: each later ferry_engine_listen() on
 * `engine` whose address equals (as a socket address; "port 0" matches "port 0", the
 * first such listener first) that of one of previous's listeners shares that listener's
 * socket instead of binding a new one, so both engines accept from one queue. Then start
 * `engine` and stop `previous` with a drain: it stops accepting (serving the clients
 * already queued for it), finishes its live connections on its own configuration and
 * closes its copy of the sockets; `engine` keeps them open. Listeners that find no match
 * bind as usual; sockets nobody took close with `previous`.
 * From the owning thread of both engines; `previous` must not be stopped or freed before
 * the last ferry_engine_listen() on `engine` has returned, or before `engine` is started
 * or freed, or given up with previous NULL (nothing more is shared). FERRY_ESTATE if
 * `engine` has started. */
FERRY_API ferry_err ferry_engine_take_listeners(ferry_engine *engine, ferry_engine *previous);

/* The bound port (useful after binding port 0). */
FERRY_API uint16_t ferry_listener_port(const ferry_listener *listener);

/* Start the worker threads and return. */
FERRY_API ferry_err ferry_engine_start(ferry_engine *engine);

/* Block until every worker has stopped (after ferry_engine_stop()). */
FERRY_API ferry_err ferry_engine_wait(ferry_engine *engine);

/* ferry_engine_start() then ferry_engine_wait(). */
FERRY_API ferry_err ferry_engine_run(ferry_engine *engine);

/* Ask the engine to stop: listeners stop accepting at once; live sessions get drain_ms to
 * finish, then are closed. Returns immediately. Any thread, any number of times. */
FERRY_API ferry_err ferry_engine_stop(ferry_engine *engine, unsigned drain_ms);

/* ferry_engine_stop(engine, opts.stop_drain_ms), async-signal-safe: daemons call it
 * from their SIGINT/SIGTERM handlers. */
FERRY_API void ferry_engine_signal_stop(ferry_engine *engine);

/* Client sessions open right now, engine-wide. Any thread. */
FERRY_API unsigned ferry_engine_sessions(const ferry_engine *engine);

/* Counters since the engine was created. */
typedef struct ferry_engine_stats {
    uint64_t requests_retried; /* HTTP requests sent again on a fresh connection after a
                                * reused one failed before any response byte */
    uint64_t retries_refused;  /* ... that could not be, because their body was streamed
                                * (larger than request_buffer_bytes) or the method is not
                                * idempotent; each is also logged */
} ferry_engine_stats;

/* Any thread. */
FERRY_API void ferry_engine_get_stats(const ferry_engine *engine, ferry_engine_stats *out);

#ifdef __cplusplus
}
#endif
#endif
