/* Internal engine structures shared by engine.c (threads, listeners, stop), session.c (one
 * client connection) and pool.c (backends). */
#ifndef FERRY__ENGINE_INT_H
#define FERRY__ENGINE_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "addr.h"
#include "bufpool.h"
#include "bytes.h"
#include "ferry/engine.h"
#include "ferry/logger.h"
#include "ferry/pool.h"
#include "internal.h"
#include "loop.h"
#include "relay.h"
#include "resolver.h"

typedef struct ferry__worker ferry__worker;
typedef struct ferry__http_upstream ferry__http_upstream;

/* What every client connection (TCP session or HTTP connection) starts with: the worker's
 * list links, for draining and forced close. */
typedef struct ferry__conn {
    struct ferry__conn *prev, *next;
    ferry__worker *worker;
    ferry_listener *listener;
    /* Close now, logging `why`; unlinks and frees the connection. */
    void (*abort)(struct ferry__conn *c, ferry_err why);
    /* Optional: shutdown began; finish what is in progress, take nothing new. May free c. */
    void (*drain)(struct ferry__conn *c);
} ferry__conn;

struct ferry__worker {
    ferry_engine *engine;
    unsigned index;
    ferry__loop *loop;
    pthread_t thread;
    int thread_started;
    ferry__bufpool pool;
    ferry__bytes_pool bytes; /* HTTP buffers */
    ferry__conn *conns; /* doubly linked, for draining and forced close */
    unsigned nsessions;
    ferry__http_upstream *http_idle; /* idle pooled upstream HTTP connections */
    unsigned http_idle_count;
    int stopping;
    int accept_paused;
    ferry__timer drain_timer;
    ferry__timer accept_timer; /* resumes accepting after fd exhaustion */
};

struct ferry_listener {
    ferry_listener *next;
    ferry_engine *engine;
    int fd;
    uint16_t port;
    char *name;
    ferry_listener_opts opts; /* address/name point at owned copies; proxy_trusted NULL */
    struct ferry__cidr *trusted; /* who may send a PROXY header */
    unsigned ntrusted;
    struct ferry__cidr *forwarders; /* whose X-Forwarded-* / Forwarded are kept */
    unsigned nforwarders;
    ferry__sockaddr asked; /* the address asked for (port 0 stays 0) */
    const ferry_listener *taken_from; /* the predecessor's listener whose socket this
                                       * shares; only compared, never followed */
};

/* Backend administrative states (ferry_backend.admin). */
enum { FERRY__BACKEND_ACTIVE = 0, FERRY__BACKEND_DRAINING = 1, FERRY__BACKEND_REMOVED = 2 };
/* A reverse policy's per-session state word holds a backend id in its low half. */
enum { FERRY__BACKEND_ID_BITS = sizeof(uintptr_t) * 4 };

/* A pool member. Never freed while the engine lives: sessions keep pointers to it
 * (ferry_target.backend, attached) past its removal, so every backend ever added stays on
 * pool->all until ferry_engine_free(). */
struct ferry_backend {
    ferry_pool *pool;
    ferry_backend *next_all; /* pool->all, newest first; under pool->config_lock */
    uint32_t id;        /* per pool, ascending in add order; failover walks members by it */
    char *address;      /* as given; immutable */
    char *host;         /* the host part, re-resolved when is_name */
    uint16_t port;
    uint8_t is_name;
    /* The address in use: one writer at a time (the adder, then the health loop's
     * re-resolution), any reader, through a seqlock over atomic words so that readers
     * never see a torn sockaddr. Use ferry__backend_addr(). */
    atomic_uint addr_seq;
    _Atomic uint64_t addr_words[4];
    _Atomic unsigned weight;
    atomic_int admin;               /* FERRY__BACKEND_* */
    atomic_int check_down;          /* the active health check's verdict */
    atomic_uint active;             /* sessions/requests attached now */
    _Atomic uint64_t down_until_ms; /* passive marking; monotonic ms; 0 or past: up */
    atomic_uint connect_fails;      /* consecutive failed connects */
    atomic_uint response_fails;     /* consecutive failed HTTP responses (pool->passive) */
    int64_t current;                /* smooth weighted round-robin state; under pool->lock */
    uint64_t sticky_id; /* its sticky cookie's value (sticky.c); under pool->config_lock
                         * before it is published, then fixed */
    /* Health checks and re-resolution: the health loop's thread only. */
    uint8_t watched;      /* its checks / re-resolution are scheduled */
    uint8_t check_phase;
    int check_fd;
    unsigned check_streak; /* consecutive results contradicting the current state */
    uint64_t check_started_ms;
    size_t check_sent, check_got;
    char check_buf[16];
    ferry__timer check_timer, resolve_timer;
    ferry__resolve_req *resolving;
};

typedef struct ferry__ring ferry__ring; /* consistent-hash ring, balance.c */

struct ferry_pool {
    ferry_pool *next;
    ferry_engine *engine;
    char *name;
    /* `lock` guards what picks read (members, ring, round-robin state) and is held only
     * briefly; `config_lock` serialises changes, which build new arrays outside `lock`
     * and swap them in under it. Order: config_lock, then lock. */
    pthread_mutex_t lock;
    pthread_mutex_t config_lock;
    ferry_backend **members; /* in service or draining, ascending id */
    unsigned nmembers;
    ferry__ring *ring;       /* hash balancers only */
    ferry_backend *all;      /* every backend ever added */
    uint32_t next_id;
    unsigned down_ms;
    unsigned max_fails;      /* passive checks: consecutive failures that mark down */
    unsigned passive;        /* ferry_passive_flags counted */
    int balance;             /* ferry_balance; fixed once the engine starts */
    char *balance_key;
    char *sticky_name;       /* the sticky cookie (sticky.c); NULL: none; fixed once the
                              * engine starts, like sticky_key */
    uint64_t sticky_key[2];
    unsigned resolve_ms;
    ferry_health_opts health; /* path and host point at owned copies */
    int watching;            /* health loop's thread only */
};

enum { ENGINE_NEW = 0, ENGINE_RUNNING = 1, ENGINE_JOINED = 2 };

struct ferry_engine {
    ferry_allocator alloc;
    ferry_engine_opts opts;
    ferry__worker *workers;
    ferry_listener *listeners;
    ferry_pool *pools;
    ferry_engine *predecessor; /* ferry_engine_take_listeners(); only while listening */
    ferry__resolver *resolver;
    atomic_int state;
    atomic_int stop_requested;
    atomic_int stop_forced;
    atomic_uint stop_drain_ms;
    atomic_uint sessions;
    atomic_uint workers_not_accepting; /* the last worker to stop accepting closes listeners */
    atomic_uint_fast64_t next_session_id;
    atomic_uint_fast64_t requests_retried, retries_refused;
    pthread_mutex_t wait_lock; /* serialises ferry_engine_wait callers */
};

/* Engine log line at `level` (printf-style). Any thread. */
void ferry__log(ferry_engine *e, ferry_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* session.c: TCP sessions */
void ferry__session_accept(ferry__worker *w, ferry_listener *l, int fd, const ferry__sockaddr *peer);
/* http_conn.c: HTTP client connections */
void ferry__http_accept(ferry__worker *w, ferry_listener *l, int fd, const ferry__sockaddr *peer);
/* socks_conn.c: SOCKS client connections */
void ferry__socks_accept(ferry__worker *w, ferry_listener *l, int fd, const ferry__sockaddr *peer);
/* preface.c: what comes before the protocol: a PROXY header (accept_proxy) and, on
 * HTTP+SOCKS listeners, the first byte that tells the two apart. Hands the connection on
 * to its protocol as if it had come from the client the header names. */
void ferry__preface_accept(ferry__worker *w, ferry_listener *l, int fd, const ferry__sockaddr *peer);
/* The PROXY header (version 1 or 2) naming the session's client, and as destination the
 * address it reached us on; its length, 0 if it does not fit. */
size_t ferry__proxy_header_for(const ferry_session_info *info, int client_fd, int version,
                               char *out, size_t size);
/* The protocol handler for a connection whose preface (if any) is done. */
void ferry__protocol_accept(ferry__worker *w, ferry_listener *l, int fd, const ferry__sockaddr *peer);
/* Close every idle pooled upstream connection of the worker. */
void ferry__http_pool_clear(ferry__worker *w);

/* engine.c: connection bookkeeping shared by both protocols. */
void ferry__conn_link(ferry__worker *w, ferry__conn *c);
/* Unlink; when the worker is stopping and this was its last connection, stop its loop. */
void ferry__conn_unlink(ferry__conn *c);
/* Fill the session facts of a new client connection. */
void ferry__session_info_fill(ferry__worker *w, ferry_listener *l, const ferry__sockaddr *peer,
                              ferry_session_info *info);

/* pool.c */
void ferry__pools_free(ferry_engine *e);
/* The backend's current address (re-resolution may change it). Any thread. */
void ferry__backend_addr(const ferry_backend *b, ferry__sockaddr *out);
/* Publish a new address. One writer at a time per backend (see the struct). */
void ferry__backend_set_addr(ferry_backend *b, const ferry__sockaddr *a);

/* balance.c: passive checks hear how `b` answered an HTTP request: its response status,
 * or 0 for no usable response (closed, timed out, malformed). Loop threads. */
void ferry__backend_observe(ferry_backend *b, int status);

/* balance.c: consistent-hash rings for the pool's balancer, built outside pool->lock.
 * A copy of the pool's ring without `drop`'s points and with `add`'s (weight `weight`)
 * merged in; either may be NULL. *out is NULL when the balancer does not hash. Under
 * pool->config_lock. FERRY_ENOMEM, or FERRY_ELIMIT when the ring would grow too big. */
ferry_err ferry__ring_change(ferry_pool *p, const ferry_backend *drop,
                             const ferry_backend *add, unsigned weight, ferry__ring **out);
void ferry__ring_free(ferry_engine *e, ferry__ring *r);

/* health.c: health checks and re-resolution, on worker 0's loop (its thread). */
void ferry__pools_watch(ferry__worker *w);   /* before its loop runs */
void ferry__pools_unwatch(ferry__worker *w); /* after; closes checks, cancels lookups */
/* A backend added while the engine runs: schedule its checks (posted to the loop). */
void ferry__backend_watch(ferry_backend *b);

#endif
