/* Engine: owns worker threads (one loop each), listeners shared by every worker, the
 * resolver, pools; starts, drains and stops them. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "acl.h"
#include "engine_int.h"

enum { ACCEPTS_PER_WAKEUP = 64, STOP_ACCEPT_SWEEP = 1024, ACCEPT_PAUSE_MS = 100,
       KEPT_BUFFERS = 64, KEPT_PIPES = 16, HTTP_BLOCK = 131072, KEPT_HTTP_BLOCKS = 64 };

void ferry_engine_opts_init(ferry_engine_opts *o) {
    memset(o, 0, sizeof *o);
    o->workers = 1;
    o->poller = FERRY_POLLER_DEFAULT;
    o->resolver_threads = 2;
    o->dns_ttl_ms = 30000;
    o->dns_negative_ttl_ms = 5000;
    o->max_connections = 16384;
    o->stop_drain_ms = 5000;
    o->buffer_size = 16384;
    o->pipe_size = 262144;
    o->log_level = FERRY_LOG_INFO;
}

void ferry_listener_opts_init(ferry_listener_opts *o) {
    memset(o, 0, sizeof *o);
    o->protocol = FERRY_PROTO_TCP;
    o->backlog = 511;
    o->connect_timeout_ms = 5000;
    o->idle_timeout_ms = 300000;
    o->splice = 1;
    o->access_format = FERRY_ACCESS_TEXT;
    o->max_request_line = 8192;
    o->max_header_bytes = 65536;
    o->max_headers = 100;
    o->max_body_bytes = 1ull << 30;
    o->header_timeout_ms = 10000;
    o->keepalive_timeout_ms = 60000;
    o->response_timeout_ms = 60000;
    o->body_timeout_ms = 60000;
    o->upstream_idle_timeout_ms = 30000;
    o->upstream_max_idle = 64;
    o->forwarded_headers = 1;
    o->rewrite_responses = 1;
    o->udp_idle_timeout_ms = 60000;
    o->udp_max_datagram = 16384;
}

void ferry__log(ferry_engine *e, ferry_log_level level, const char *fmt, ...) {
    if (!e->opts.log || level > e->opts.log_level) return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    e->opts.log(e->opts.log_user_data, level, line);
}

/* ---- accepting ---- */

static void on_listener_ready(ferry__loop *loop, int fd, void *user_data, int mask);

static void watch_listeners(ferry__worker *w, int on) {
    for (ferry_listener *l = w->engine->listeners; l; l = l->next) {
        if (l->fd < 0) continue;
        if (!on) {
            ferry__loop_unwatch(w->loop, l->fd);
            continue;
        }
        ferry_err err = ferry__loop_watch(w->loop, l->fd, FERRY__READABLE | FERRY__EXCLUSIVE,
                                          on_listener_ready, l);
        if (err)
            ferry__log(w->engine, FERRY_LOG_ERROR, "%s: worker %u cannot watch the listener: %s",
                       l->name, w->index, ferry_strerror(err));
    }
}

static void resume_accepting(ferry__loop *loop, void *user_data) {
    (void)loop;
    ferry__worker *w = user_data;
    w->accept_paused = 0;
    if (!w->stopping) watch_listeners(w, 1);
}

/* Accept up to `limit` queued clients of `l` and hand each to its protocol. */
static void accept_queued(ferry__worker *w, ferry_listener *l, int limit) {
    ferry_engine *e = l->engine;
    for (int k = 0; k < limit; k++) {
        ferry__sockaddr peer;
        socklen_t len = sizeof peer;
        int cfd = accept4(l->fd, &peer.sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (!w->stopping &&
                (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)) {
                /* Out of descriptors: stop accepting briefly rather than spin on a listener
                 * that stays readable. */
                ferry__log(e, FERRY_LOG_WARN, "%s: accept: %s; pausing accepts for %d ms",
                           l->name, strerror(errno), ACCEPT_PAUSE_MS);
                watch_listeners(w, 0);
                w->accept_paused = 1;
                if (ferry__timer_start(w->loop, &w->accept_timer, ACCEPT_PAUSE_MS,
                                       resume_accepting, w))
                    resume_accepting(w->loop, w);
            }
            return; /* EAGAIN: another worker took it, or the queue is empty */
        }
        if (atomic_load(&e->sessions) >= e->opts.max_connections) {
            ferry__log(e, FERRY_LOG_WARN, "%s: max_connections (%u) reached; closing new client",
                       l->name, e->opts.max_connections);
            close(cfd);
            continue;
        }
        if (l->opts.accept_proxy)
            ferry__preface_accept(w, l, cfd, &peer);
        else
            ferry__protocol_accept(w, l, cfd, &peer);
    }
}

static void on_listener_ready(ferry__loop *loop, int fd, void *user_data, int mask) {
    (void)fd;
    (void)mask;
    ferry__worker *w = ferry__loop_owner(loop);
    if (!w->stopping) accept_queued(w, user_data, ACCEPTS_PER_WAKEUP);
}

/* ---- stopping ---- */

static void close_all_sessions(ferry__worker *w, ferry_err why) {
    while (w->conns) w->conns->abort(w->conns, why);
    ferry__http_pool_clear(w);
}

void ferry__conn_link(ferry__worker *w, ferry__conn *c) {
    c->worker = w;
    c->prev = NULL;
    c->next = w->conns;
    if (w->conns) w->conns->prev = c;
    w->conns = c;
    w->nsessions++;
    atomic_fetch_add(&w->engine->sessions, 1);
}

void ferry__conn_unlink(ferry__conn *c) {
    ferry__worker *w = c->worker;
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    w->nsessions--;
    atomic_fetch_sub(&w->engine->sessions, 1);
    if (w->stopping && w->nsessions == 0) ferry__loop_stop(w->loop);
}

void ferry__session_info_fill(ferry__worker *w, ferry_listener *l, const ferry__sockaddr *peer,
                              ferry_session_info *i) {
    i->id = atomic_fetch_add(&w->engine->next_session_id, 1);
    i->worker = w->index;
    i->listener = l->name;
    i->client_family = peer->sa.sa_family;
    if (peer->sa.sa_family == AF_INET6)
        memcpy(i->client_ip, &peer->in6.sin6_addr, 16);
    else
        memcpy(i->client_ip, &peer->in.sin_addr, 4);
    i->client_port = ferry__addr_port(peer);
    ferry__addr_format(peer, 0, i->client_addr, sizeof i->client_addr);
    i->proxy_protocol = FERRY_PROXY_NONE;
    i->dest_host = i->method = i->user = "";
    i->dest_port = 0;
}

static void drain_expired(ferry__loop *loop, void *user_data) {
    ferry__worker *w = user_data;
    close_all_sessions(w, FERRY_EDRAIN);
    ferry__loop_stop(loop);
}

/* Once no worker watches the listeners any more, close them: the kernel then refuses new
 * clients instead of completing handshakes nobody will serve during the drain. */
static void stop_accepting(ferry__worker *w) {
    ferry_engine *e = w->engine;
    watch_listeners(w, 0);
    ferry__timer_stop(w->loop, &w->accept_timer);
    /* A client whose wakeup went to this worker may still be queued, and with exclusive
     * watches nobody else is woken for it: neither another worker nor an engine that took
     * the listener over (ferry_engine_take_listeners). Serve it, during the drain. */
    for (ferry_listener *l = e->listeners; l; l = l->next)
        if (l->fd >= 0) accept_queued(w, l, STOP_ACCEPT_SWEEP);
    if (atomic_fetch_add(&e->workers_not_accepting, 1) + 1 < e->opts.workers) return;
    for (ferry_listener *l = e->listeners; l; l = l->next) {
        close(l->fd);
        l->fd = -1;
    }
}

/* Runs on the worker's loop after every wakeup: acts on a stop request. */
static void check_stop(ferry__loop *loop, void *user_data) {
    ferry__worker *w = user_data;
    ferry_engine *e = w->engine;
    if (!atomic_load(&e->stop_requested)) return;
    if (!w->stopping) {
        w->stopping = 1;
        stop_accepting(w);
        for (ferry__conn *c = w->conns, *next; c; c = next) {
            next = c->next;
            if (c->drain) c->drain(c);
        }
        unsigned drain = atomic_load(&e->stop_drain_ms);
        if (w->nsessions && drain && !atomic_load(&e->stop_forced) &&
            ferry__timer_start(loop, &w->drain_timer, drain, drain_expired, w) == FERRY_OK)
            return;
    } else if (!atomic_load(&e->stop_forced)) {
        return; /* already draining */
    }
    ferry__timer_stop(loop, &w->drain_timer);
    close_all_sessions(w, FERRY_EDRAIN);
    ferry__loop_stop(loop);
}

static void *worker_main(void *arg) {
    ferry__worker *w = arg;
    /* Signals belong to the embedding program's threads; blocked signals here also turn
     * SIGPIPE into EPIPE for writes on this thread. */
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    watch_listeners(w, 1);
    if (w->index == 0) ferry__pools_watch(w); /* health checks and re-resolution run here */
    check_stop(w->loop, w); /* a stop requested before this thread ran */
    if (!w->stopping || w->nsessions) ferry__loop_run(w->loop);
    if (w->index == 0) ferry__pools_unwatch(w);
    close_all_sessions(w, FERRY_EDRAIN);
    return NULL;
}

/* ---- lifecycle ---- */

ferry_err ferry_engine_new(const ferry_engine_opts *opts, ferry_engine **out) {
    if (!out) return FERRY_EINVAL;
    *out = NULL;
    ferry_engine_opts o;
    if (opts)
        o = *opts;
    else
        ferry_engine_opts_init(&o);
    if (o.workers == 0 || o.workers > 1024 || o.buffer_size < 1024 || o.pipe_size < 4096)
        return FERRY_EINVAL;
    ferry_allocator a;
    ferry__allocator_init(&a, o.allocator);
    o.allocator = NULL; /* copied into e->alloc */
    ferry_engine *e = ferry__calloc(&a, sizeof *e);
    if (!e) return FERRY_ENOMEM;
    e->alloc = a;
    e->opts = o;
    atomic_init(&e->stop_drain_ms, o.stop_drain_ms);
    atomic_init(&e->next_session_id, 1);
    if (pthread_mutex_init(&e->wait_lock, NULL) != 0) {
        ferry__free(&a, e);
        return FERRY_ESYS;
    }
    e->workers = ferry__calloc(&a, o.workers * sizeof *e->workers);
    if (!e->workers) goto oom;
    for (unsigned i = 0; i < o.workers; i++) {
        ferry__worker *w = &e->workers[i];
        w->engine = e;
        w->index = i;
        w->loop = ferry__loop_new(&a, o.poller);
        if (!w->loop) goto oom;
        ferry__loop_set_owner(w->loop, w);
        ferry__loop_on_wake(w->loop, check_stop, w);
        if (!ferry__bufpool_init(&w->pool, &a, o.buffer_size, o.pipe_size, KEPT_BUFFERS, KEPT_PIPES))
            goto oom;
        if (!ferry__bytes_pool_init(&w->bytes, &a, HTTP_BLOCK, KEPT_HTTP_BLOCKS)) goto oom;
    }
    ferry__resolver_opts ro = {.threads = o.resolver_threads,
                               .ttl_ms = o.dns_ttl_ms,
                               .negative_ttl_ms = o.dns_negative_ttl_ms};
    e->resolver = ferry__resolver_new(&a, &ro);
    if (!e->resolver) goto oom;
    *out = e;
    return FERRY_OK;
oom:
    ferry_engine_free(e);
    return FERRY_ENOMEM;
}

void ferry_engine_free(ferry_engine *e) {
    if (!e) return;
    if (atomic_load(&e->state) == ENGINE_RUNNING) {
        ferry_engine_stop(e, 0);
        ferry_engine_wait(e);
    }
    /* Resolver threads may still post into loops: free it while the loops exist. */
    ferry__resolver_free(e->resolver);
    if (e->workers) {
        for (unsigned i = 0; i < e->opts.workers; i++) {
            ferry__worker *w = &e->workers[i];
            if (!w->loop) continue;
            close_all_sessions(w, FERRY_EDRAIN); /* only sessions of a never-started engine */
            ferry__bufpool_destroy(&w->pool);
            ferry__bytes_pool_destroy(&w->bytes);
            ferry__loop_free(w->loop);
        }
    }
    for (ferry_listener *l = e->listeners, *next; l; l = next) {
        next = l->next;
        if (l->fd >= 0) close(l->fd);
        ferry__free(&e->alloc, (char *)l->opts.address);
        ferry__free(&e->alloc, l->name);
        ferry__free(&e->alloc, l->trusted);
        ferry__free(&e->alloc, l->forwarders);
        ferry__free(&e->alloc, l);
    }
    ferry__pools_free(e);
    ferry__free(&e->alloc, e->workers);
    pthread_mutex_destroy(&e->wait_lock);
    ferry_allocator a = e->alloc;
    ferry__free(&a, e);
}

/* The address a listener asks for, as a socket address. */
static ferry_err listen_address(const char *address, ferry__sockaddr *sa) {
    char host[FERRY_HOST_MAX];
    uint16_t port;
    ferry_err err = ferry__addr_split(address, host, sizeof host, &port);
    if (err) return err;
    return ferry__addr_from_literal(host, port, sa) < 0 ? FERRY_EADDR : FERRY_OK;
}

static int same_address(const ferry__sockaddr *a, const ferry__sockaddr *b) {
    socklen_t len = ferry__sockaddr_len(a);
    return len == ferry__sockaddr_len(b) && memcmp(a, b, len) == 0;
}

static int already_taken(const ferry_engine *e, const ferry_listener *old) {
    for (const ferry_listener *l = e->listeners; l; l = l->next)
        if (l->taken_from == old) return 1;
    return 0;
}

/* Share the socket of the predecessor's listener that asked for the same address (the
 * first one not taken yet, for several asking for port 0): 1 if there was one. The
 * predecessor is only read: a successor that fails and is freed leaves it as it was. */
static int take_predecessor_socket(ferry_engine *e, ferry_listener *l, int backlog) {
    if (!e->predecessor) return 0;
    for (const ferry_listener *old = e->predecessor->listeners; old; old = old->next) {
        if (old->fd < 0 || !same_address(&old->asked, &l->asked) || already_taken(e, old))
            continue;
        int fd = fcntl(old->fd, F_DUPFD_CLOEXEC, 0);
        if (fd < 0) return 0; /* bind anew, which reports the conflict */
        listen(fd, backlog); /* the new backlog applies to the shared queue */
        l->taken_from = old;
        l->fd = fd;
        l->port = old->port;
        return 1;
    }
    return 0;
}

static ferry_err open_listener(const ferry__sockaddr *asked, int backlog, int *fd_out,
                               uint16_t *port_out) {
    ferry__sockaddr sa = *asked;
    ferry_err err;
    int fd = socket(sa.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return ferry__err_from_errno(errno);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (sa.sa.sa_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, &sa.sa, ferry__sockaddr_len(&sa)) < 0 || listen(fd, backlog) < 0) {
        err = errno == EADDRNOTAVAIL ? FERRY_EADDRNOTAVAIL : ferry__err_from_errno(errno);
        close(fd);
        return err;
    }
    socklen_t len = sizeof sa;
    getsockname(fd, &sa.sa, &len);
    *fd_out = fd;
    *port_out = ferry__addr_port(&sa);
    return FERRY_OK;
}

/* "CIDR,CIDR" into a new array (FERRY_EINVAL for a bad or empty list). */
static ferry_err parse_cidrs(ferry_engine *e, const char *list, struct ferry__cidr **out,
                             unsigned *count) {
    unsigned n = 1;
    for (const char *p = list; *p; p++) n += *p == ',';
    *out = ferry__calloc(&e->alloc, n * sizeof **out);
    if (!*out) return FERRY_ENOMEM;
    for (const char *p = list; *p;) {
        const char *end = strchr(p, ',');
        if (!end) end = p + strlen(p);
        while (p < end && *p == ' ') p++;
        size_t len = (size_t)(end - p);
        while (len && p[len - 1] == ' ') len--;
        if (ferry__cidr_parse(p, len, &(*out)[*count]) != 0) return FERRY_EINVAL;
        ++*count;
        p = *end ? end + 1 : end;
    }
    return *count ? FERRY_OK : FERRY_EINVAL;
}

/* Who may send a PROXY header (default loopback), whose forwarding headers are kept. */
static ferry_err parse_trust(ferry_engine *e, ferry_listener *l, const ferry_listener_opts *o) {
    ferry_err err = FERRY_OK;
    if (o->accept_proxy)
        err = parse_cidrs(e, o->proxy_trusted ? o->proxy_trusted : "127.0.0.0/8,::1", &l->trusted,
                          &l->ntrusted);
    if (!err && o->trusted_forwarders)
        err = parse_cidrs(e, o->trusted_forwarders, &l->forwarders, &l->nforwarders);
    return err;
}

ferry_err ferry_engine_listen(ferry_engine *e, const ferry_listener_opts *opts, ferry_listener **out) {
    if (!e || !opts || !opts->address || !opts->direction || !opts->direction->pick)
        return FERRY_EINVAL;
    if (opts->protocol > FERRY_PROTO_SNI) return FERRY_ENOTSUP;
    /* Only a policy that takes destinations from clients can serve SOCKS. */
    int socks = opts->protocol == FERRY_PROTO_SOCKS || opts->protocol == FERRY_PROTO_HTTP_SOCKS;
    if (socks && !opts->direction->client_names_destination) return FERRY_EINVAL;
    if ((opts->protocol == FERRY_PROTO_HTTP || opts->protocol == FERRY_PROTO_HTTP_SOCKS) &&
        (opts->max_headers == 0 || opts->max_headers > 10000 || opts->max_request_line < 64 ||
         opts->max_header_bytes < opts->max_request_line))
        return FERRY_EINVAL;
    if (opts->send_proxy < 0 || opts->send_proxy > 2) return FERRY_EINVAL;
    const char *scheme = opts->public_scheme; /* kept as one of two literals: nothing to copy */
    if (scheme && strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0) return FERRY_EINVAL;
    if (atomic_load(&e->state) != ENGINE_NEW) return FERRY_ESTATE;
    ferry_listener *l = ferry__calloc(&e->alloc, sizeof *l);
    if (!l) return FERRY_ENOMEM;
    l->engine = e;
    l->opts = *opts;
    l->opts.address = ferry__strdup(&e->alloc, opts->address);
    l->name = ferry__strdup(&e->alloc, opts->name ? opts->name : opts->address);
    l->opts.name = l->name;
    l->opts.proxy_trusted = l->opts.trusted_forwarders = NULL;
    l->opts.public_scheme = scheme && scheme[4] == 's' ? "https" : "http";
    ferry_err err = FERRY_ENOMEM;
    if (l->opts.address && l->name)
        err = parse_trust(e, l, opts);
    int backlog = opts->backlog > 0 ? opts->backlog : 511;
    if (!err) err = listen_address(opts->address, &l->asked);
    if (!err && !take_predecessor_socket(e, l, backlog))
        err = open_listener(&l->asked, backlog, &l->fd, &l->port);
    if (err) {
        ferry__free(&e->alloc, (char *)l->opts.address);
        ferry__free(&e->alloc, l->name);
        ferry__free(&e->alloc, l->trusted);
        ferry__free(&e->alloc, l->forwarders);
        ferry__free(&e->alloc, l);
        return err;
    }
    l->next = e->listeners;
    e->listeners = l;
    if (out) *out = l;
    return FERRY_OK;
}

uint16_t ferry_listener_port(const ferry_listener *l) { return l ? l->port : 0; }

ferry_err ferry_engine_take_listeners(ferry_engine *e, ferry_engine *previous) {
    if (!e || e == previous) return FERRY_EINVAL;
    if (atomic_load(&e->state) != ENGINE_NEW) return FERRY_ESTATE;
    e->predecessor = previous;
    return FERRY_OK;
}

void ferry_engine_get_stats(const ferry_engine *e, ferry_engine_stats *out) {
    if (!out) return;
    memset(out, 0, sizeof *out);
    if (!e) return;
    out->requests_retried = atomic_load(&((ferry_engine *)e)->requests_retried);
    out->retries_refused = atomic_load(&((ferry_engine *)e)->retries_refused);
}

ferry_err ferry_engine_start(ferry_engine *e) {
    if (!e) return FERRY_EINVAL;
    int expected = ENGINE_NEW;
    if (!atomic_compare_exchange_strong(&e->state, &expected, ENGINE_RUNNING)) return FERRY_ESTATE;
    e->predecessor = NULL; /* listening is over: the predecessor may go */
    for (unsigned i = 0; i < e->opts.workers; i++) {
        ferry__worker *w = &e->workers[i];
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            ferry__log(e, FERRY_LOG_ERROR, "cannot start worker thread %u", i);
            ferry_engine_stop(e, 0);
            ferry_engine_wait(e);
            return FERRY_ESYS;
        }
        w->thread_started = 1;
    }
    return FERRY_OK;
}

ferry_err ferry_engine_wait(ferry_engine *e) {
    if (!e) return FERRY_EINVAL;
    pthread_mutex_lock(&e->wait_lock);
    if (atomic_load(&e->state) == ENGINE_RUNNING) {
        for (unsigned i = 0; i < e->opts.workers; i++) {
            if (!e->workers[i].thread_started) continue;
            pthread_join(e->workers[i].thread, NULL);
            e->workers[i].thread_started = 0;
        }
        atomic_store(&e->state, ENGINE_JOINED);
    }
    pthread_mutex_unlock(&e->wait_lock);
    return FERRY_OK;
}

ferry_err ferry_engine_run(ferry_engine *e) {
    ferry_err err = ferry_engine_start(e);
    return err ? err : ferry_engine_wait(e);
}

static void request_stop(ferry_engine *e, unsigned drain_ms, int repeat_forces) {
    /* The drain is published before the request, which workers read first. */
    atomic_store(&e->stop_drain_ms, drain_ms);
    int again = atomic_exchange(&e->stop_requested, 1);
    if (drain_ms == 0 || (again && repeat_forces)) atomic_store(&e->stop_forced, 1);
    for (unsigned i = 0; i < e->opts.workers; i++) ferry__loop_wake(e->workers[i].loop);
}

ferry_err ferry_engine_stop(ferry_engine *e, unsigned drain_ms) {
    if (!e) return FERRY_EINVAL;
    request_stop(e, drain_ms, 0);
    return FERRY_OK;
}

void ferry_engine_signal_stop(ferry_engine *e) {
    /* First signal drains, a second one forces. Only lock-free atomics and write(2). */
    if (e) request_stop(e, e->opts.stop_drain_ms, 1);
}

unsigned ferry_engine_sessions(const ferry_engine *e) {
    return e ? atomic_load(&((ferry_engine *)e)->sessions) : 0;
}
