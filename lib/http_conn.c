/* HTTP/1.1 client connections: read a request head, ask hooks and the direction policy,
 * take a pooled (or new) upstream connection, stream the request body and the response
 * back, re-framing both; keep-alive and in-order pipelining on the client side, a
 * per-worker idle pool on the upstream side. One worker owns a connection for its life. */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "acl.h"
#include "http_forward.h"
#include "http_int.h"
#include "relay.h"
#include "rewrite.h"
#include "route.h"

/* Client reads are heads and request bodies; upstream reads are mostly response bodies,
 * read in larger pieces to save system calls. Both fit the worker's 128 KiB blocks.
 * A response whose body may be spliced is read HEAD_READ bytes at first, so that most of
 * a large body is still in the socket for splice(2); bodies with less than SPLICE_MIN
 * bytes left after that are cheaper to copy than to splice (two more system calls). */
enum { HIGH_WATER = 65536, READ_CHUNK = 16384, UPSTREAM_READ = 65536, HEAD_READ = 4096,
       SPLICE_MIN = 16384, DRAIN_IDLE_GRACE_MS = 1000 };

enum client_state {
    CS_HEAD,     /* waiting for (more of) a request head; also keep-alive idle */
    CS_PAUSED,   /* on_request paused; waiting for ferry_txn_resume() */
    CS_BUFFERING, /* reading the whole request body before choosing an upstream */
    CS_ROUTING,  /* choosing and connecting an upstream */
    CS_EXCHANGE, /* request head sent: body (if any) up, response down */
    CS_CLOSING,  /* flushing the last bytes, then close */
    CS_TUNNEL    /* after 101 Switching Protocols or CONNECT: opaque relay */
};

/* Forward listeners only: the current request's destination and who asked. */
typedef struct forward_state {
    char host[FERRY_HOST_MAX];
    char method[32];
    char user[FERRY__BASIC_MAX + 1];
    uint8_t origin_form; /* a hook may answer it; else 400 */
} forward_state;

struct ferry__http_conn {
    ferry__conn base;
    int fd;
    uint8_t state;
    uint8_t first;          /* no request seen yet on this connection */
    uint8_t client_11;      /* the current request is HTTP/1.1 */
    uint8_t keep_alive;     /* the client may send another request after this one */
    uint8_t upgrade;        /* the request asks for a protocol switch */
    uint8_t retried;
    uint8_t req_done, resp_head_done, resp_chunked_out, resp_done, close_after;
    uint8_t client_eof;     /* the client shut its sending side */
    uint8_t req_filter, resp_filter; /* bodies go through on_body */
    uint8_t resp_splice;    /* the rest of the response body goes upstream -> pipe -> client */
    uint8_t pipe_full;      /* splicing in found the pipe without a free slot: wait for the
                             * client to take some before reading again */
    uint8_t buffered;       /* the whole request body is in the client buffer */
    uint8_t pump_unbounded; /* move a buffered body upstream in one go */
    uint8_t head_saw_lf;    /* the head being received has a complete line already */
    uint8_t req_body, resp_body;
    uint8_t route_asked;    /* the policy's route_request ran for this request */
    uint8_t trusted_forwarder; /* the client's forwarding headers are believed */
    ferry_session_info info;
    ferry__bytes in, out;
    ferry__timer timer;
    uint64_t deadline_ms; /* the timer may fire earlier; this is when it is really due */
    ferry_txn txn;
    ferry_view replay; /* the request head as sent, kept (in the txn arena) for one retry */
    ferry__http_upstream *up;
    ferry__route *rt;             /* from the request head to the response head */
    ferry__sockaddr upstream_addr; /* the address in use, for a retry */
    ferry__relay *tunnel;
    int pipe[2];              /* while resp_splice: from the worker's pool */
    size_t in_pipe;           /* response bytes in it, not yet sent to the client */
    ferry_txn_ticket *ticket; /* while paused */
    size_t head_len;
    uint64_t req_left, resp_left, req_bytes, resp_bytes, bytes_in;
    ferry__chunked req_dec, resp_dec;
    uint64_t txn_start_us, connect_start_us, connect_us, head_us;
    int64_t txn_wall_us;
    ferry__http_limits limits;
    forward_state *fwd;
    ferry_backend *attached; /* the pool backend this request is using, for load counts */
};

/* A paused transaction's handle: shared by the connection and whoever will resume it. */
struct ferry_txn_ticket {
    atomic_int refs;          /* the connection's and the holder's */
    ferry__loop *loop;
    ferry__http_conn *conn;   /* NULL once the connection is gone; loop thread only */
    ferry_verdict verdict;
    int status;
};

static void ticket_release(ferry_txn_ticket *k);

const ferry_session_info *ferry__http_conn_info(const ferry__http_conn *c) { return &c->info; }
int ferry__http_conn_forwarded(const ferry__http_conn *c) {
    const ferry_listener_opts *o = &c->base.listener->opts;
    /* A forward proxy's anonymity level decides what the origin learns of the client. */
    if (c->fwd) return 0;
    return (o->forwarded_headers ? FERRY__FW_XFF : 0) | (o->forwarded_rfc7239 ? FERRY__FW_RFC7239 : 0) |
           (o->add_via ? FERRY__FW_VIA : 0) | (c->trusted_forwarder ? FERRY__FW_TRUSTED : 0);
}

static const ferry_allocator *alloc_of(const ferry__http_conn *c) {
    return &c->base.worker->engine->alloc;
}
static ferry__bytes_pool *bytes_of(const ferry__http_conn *c) { return &c->base.worker->bytes; }
static ferry__loop *loop_of(const ferry__http_conn *c) { return c->base.worker->loop; }
static const ferry_listener_opts *opts_of(const ferry__http_conn *c) {
    return &c->base.listener->opts;
}
static const ferry_hook_ops *hooks_of(const ferry__http_conn *c) { return opts_of(c)->hooks.ops; }
static void *hook_data(const ferry__http_conn *c) { return opts_of(c)->hooks.user_data; }

static void client_io(ferry__loop *loop, int fd, void *ud, int mask);
static void drive(ferry__http_conn *c);

/* The request's own limits (a route's, say) where set, else the listener's. */
static unsigned connect_timeout(const ferry__http_conn *c) {
    return c->txn.connect_timeout_ms ? c->txn.connect_timeout_ms
                                     : c->base.listener->opts.connect_timeout_ms;
}
static unsigned response_timeout(const ferry__http_conn *c) {
    return c->txn.response_timeout_ms ? c->txn.response_timeout_ms
                                      : c->base.listener->opts.response_timeout_ms;
}
static uint64_t max_body(const ferry__http_conn *c) {
    return c->txn.max_body_bytes ? c->txn.max_body_bytes : c->base.listener->opts.max_body_bytes;
}
static void connect_next(ferry__http_conn *c);
static void upstream_io(ferry__loop *loop, int fd, void *ud, int mask);
static void start_head(ferry__http_conn *c);
static void start_tunnel(ferry__http_conn *c);

/* ---- interest and timers ---- */

static size_t out_pending(const ferry__http_conn *c) { return ferry__bytes_pending(&c->out); }

/* While the request head's views are in use (hooks, routing), the client buffer must not
 * move: early bytes are read only into its free tail. */
static int head_pinned(const ferry__http_conn *c) {
    return c->state == CS_ROUTING || c->state == CS_PAUSED || c->state == CS_BUFFERING;
}

/* Interest changes cost a system call each, so masks stay stable: the client is read
 * whenever there is room (early bytes wait in its buffer), and writability is asked for
 * only when a send could not finish. */
static void update_interest(ferry__http_conn *c) {
    int cm = 0, um = 0;
    ferry__http_upstream *u = c->up;
    if (c->state == CS_TUNNEL) return;
    size_t in = ferry__bytes_pending(&c->in);
    int room = c->state == CS_HEAD        ? in <= c->limits.max_head
               : c->state == CS_BUFFERING ? 1
                                          : in < HIGH_WATER;
    if (head_pinned(c) && c->in.cap == c->in.len) room = 0;
    if (c->state == CS_EXCHANGE && !c->req_done && u && ferry__bytes_pending(&u->out) >= HIGH_WATER)
        room = 0; /* backpressure on the request body */
    if (room && !c->client_eof && c->state != CS_CLOSING) cm |= FERRY__READABLE;
    if (out_pending(c) || c->in_pipe) cm |= FERRY__WRITABLE;
    if (u && u->handshake) {
        um = u->handshake_want == FERRY__TUNNEL_READ ? FERRY__READABLE : FERRY__WRITABLE;
    } else if (u) {
        if (u->connecting || ferry__bytes_pending(&u->out)) um |= FERRY__WRITABLE;
        if (c->state == CS_EXCHANGE && !c->resp_done &&
            (c->resp_splice ? c->resp_left && !c->pipe_full && !ferry__bytes_pending(&u->in)
                            : out_pending(c) < HIGH_WATER))
            um |= FERRY__READABLE;
    }
    ferry__loop_watch(loop_of(c), c->fd, cm, client_io, c);
    if (u) ferry__loop_watch(loop_of(c), u->fd, um, upstream_io, c);
}

static void on_timer(ferry__loop *loop, void *ud);

/* Deadlines move on almost every event; moving one later costs nothing here: the timer
 * keeps its earlier expiry and, when it fires, re-arms itself for what is left. */
static void arm(ferry__http_conn *c, unsigned ms) {
    c->deadline_ms = ferry__loop_now(loop_of(c)) + ms;
    if (ferry__timer_active(&c->timer) && c->timer.deadline_ms <= c->deadline_ms) return;
    if (ferry__timer_start(loop_of(c), &c->timer, ms, on_timer, c) != FERRY_OK)
        ferry__timer_stop(loop_of(c), &c->timer); /* no memory: the transaction simply has no deadline */
}

/* ---- ending ---- */

static void log_txn(ferry__http_conn *c, const char *verdict, ferry_err err) {
    const ferry_hook_ops *ops = hooks_of(c);
    const ferry_listener_opts *o = opts_of(c);
    ferry_txn *t = &c->txn;
    ferry_log_record rec = {
        .session = &c->info,
        .target = c->rt ? c->rt->target_text : "",
        .verdict = verdict,
        .error = err,
        .bytes_from_client = c->req_bytes,
        .bytes_to_client = c->resp_bytes,
        .connect_us = c->connect_us,
        .duration_us = ferry__now_us() - c->txn_start_us,
        .start_unix_us = c->txn_wall_us,
        .connect_attempts = c->rt ? c->rt->attempts : 0,
        .method = t->method,
        .request_target = t->target,
        .host = t->host,
        .referer = t->referer,
        .user_agent = t->user_agent,
        .status = t->status,
        .first_byte_us = c->head_us,
        .response_bytes = c->resp_bytes,
    };
    if (ops && ops->on_log) ops->on_log(hook_data(c), &rec);
    if (o->access_log) {
        char line[2048];
        size_t n = ferry_access_format_record((ferry_access_format)o->access_format, &rec, line,
                                              sizeof line);
        ferry_logger_write(o->access_log, line, n < sizeof line ? n : sizeof line - 1);
    }
}

static void attach(ferry__http_conn *c) {
    const ferry_listener_opts *o = opts_of(c);
    ferry_backend *b = c->rt->target.backend;
    if (!b || c->attached) return;
    c->attached = b;
    if (o->direction->attached) o->direction->attached(o->direction_data, b);
}

static void detach(ferry__http_conn *c) {
    const ferry_listener_opts *o = opts_of(c);
    if (!c->attached) return;
    if (o->direction->detached) o->direction->detached(o->direction_data, c->attached);
    c->attached = NULL;
}

static void free_route(ferry__http_conn *c) {
    if (!c->rt) return;
    ferry__route_cancel(c->rt);
    ferry__free(alloc_of(c), c->rt);
    c->rt = NULL;
}

static void end_txn_state(ferry__http_conn *c) {
    detach(c);
    free_route(c);
    c->replay = (ferry_view){NULL, 0};
    ferry__txn_reset(&c->txn);
    c->connect_us = c->req_bytes = c->resp_bytes = 0;
}

static void conn_free(ferry__http_conn *c) {
    ferry__worker *w = c->base.worker;
    const ferry_allocator *a = alloc_of(c);
    if (c->ticket) { /* a later resume finds no connection and does nothing */
        c->ticket->conn = NULL;
        ticket_release(c->ticket);
        c->ticket = NULL;
    }
    ferry__timer_stop(w->loop, &c->timer);
    if (c->tunnel) {
        ferry__relay_stop(c->tunnel);
        ferry__free(a, c->tunnel);
    }
    if (c->up) ferry__http_upstream_free(w, c->up);
    if (c->pipe[0] >= 0) ferry__pipe_drop(&w->pool, c->pipe, c->in_pipe);
    ferry__loop_unwatch(w->loop, c->fd);
    close(c->fd);
    end_txn_state(c);
    ferry__txn_free(&c->txn);
    ferry__bytes_free(&c->in, &w->bytes);
    ferry__bytes_free(&c->out, &w->bytes);
    ferry__free(a, c->fwd);
    const ferry_hook_ops *ops = hooks_of(c);
    if (ops && ops->on_close) ops->on_close(hook_data(c), &c->info);
    ferry__conn_unlink(&c->base);
    ferry__free(a, c);
}

/* Close now. A transaction in progress is logged with `verdict`/`err`. */
static void conn_close(ferry__http_conn *c, const char *verdict, ferry_err err) {
    if (c->txn.method.len) log_txn(c, verdict, err); /* a transaction was under way */
    conn_free(c);
}

static void abort_conn(ferry__conn *base, ferry_err why) {
    conn_close((ferry__http_conn *)base, "drained", why);
}

/* How long an idle keep-alive connection may wait for its next request: shorter once
 * shutdown began (DRAIN_IDLE_GRACE_MS). Not at once even then: closing would race a
 * request the client may be sending right now, and the client would see it fail. */
static unsigned idle_timeout(const ferry__http_conn *c) {
    unsigned ms = opts_of(c)->keepalive_timeout_ms;
    return c->base.worker->stopping && ms > DRAIN_IDLE_GRACE_MS ? DRAIN_IDLE_GRACE_MS : ms;
}

/* Shutdown began: each connection finishes the request in progress, and then closes. The
 * next response head says Connection: close (start_txn sees `stopping`); one that already
 * promised keep-alive is honoured: the client may send another request the moment it
 * ends, so that request is served (with Connection: close) rather than met by a close. */
static void drain_conn(ferry__conn *base) {
    ferry__http_conn *c = (ferry__http_conn *)base;
    if (c->state == CS_HEAD) {
        if (!ferry__bytes_pending(&c->in) &&
            c->deadline_ms > ferry__loop_now(loop_of(c)) + DRAIN_IDLE_GRACE_MS)
            arm(c, DRAIN_IDLE_GRACE_MS);
        return;
    }
    if (!c->resp_head_done) c->keep_alive = 0;
}

/* Answer with a short response of our own and close once it is written. */
static void answer_with(ferry__http_conn *c, int status, const char *extra_headers,
                        const char *verdict, ferry_err err) {
    ferry__timer_stop(loop_of(c), &c->timer);
    if (c->up) {
        ferry__http_upstream_free(c->base.worker, c->up);
        c->up = NULL;
    }
    free_route(c);
    char body[64];
    int n = snprintf(body, sizeof body, "%d %s\n", status, ferry__http_reason(status));
    int head_only = ferry__view_ieq(c->txn.req.method, "head");
    if (ferry__http_write_simple(&c->out, bytes_of(c), status, "text/plain", body, (size_t)n,
                                 extra_headers, 1, head_only)) {
        conn_close(c, "error", FERRY_ENOMEM);
        return;
    }
    c->txn.status = status;
    log_txn(c, verdict, err);
    end_txn_state(c);
    c->state = CS_CLOSING;
    arm(c, opts_of(c)->body_timeout_ms);
    drive(c);
}

static void answer_and_close(ferry__http_conn *c, int status, const char *verdict, ferry_err err) {
    answer_with(c, status, NULL, verdict, err);
}

/* The pool's passive checks hear how its backend answered: a status, or 0 for none. */
static void observe_backend(const ferry__http_conn *c, int status) {
    if (c->rt && c->rt->target.backend) ferry__backend_observe(c->rt->target.backend, status);
}

/* Response to the client is complete: log, recycle the upstream, go on with the next
 * request or close. */
static void finish_txn(ferry__http_conn *c) {
    ferry__http_upstream *u = c->up;
    ferry__timer_stop(loop_of(c), &c->timer);
    log_txn(c, "relayed", FERRY_OK);
    if (u) {
        c->up = NULL;
        int reusable = !u->pinned && c->resp_body != FERRY__BODY_UNTIL_CLOSE && c->req_done &&
                       !(c->txn.resp.flags & FERRY__HTTP_CONN_CLOSE) &&
                       ferry__bytes_pending(&u->in) == 0 && ferry__bytes_pending(&u->out) == 0;
        if (reusable)
            ferry__http_pool_put(c->base.worker, opts_of(c), u);
        else
            ferry__http_upstream_free(c->base.worker, u);
    }
    int close_now = c->close_after || !c->keep_alive || !c->req_done ||
                    (c->client_eof && !ferry__bytes_pending(&c->in));
    end_txn_state(c);
    if (close_now) {
        c->state = CS_CLOSING;
        arm(c, opts_of(c)->body_timeout_ms);
        drive(c);
        return;
    }
    start_head(c);
}

static int pump_response(ferry__http_conn *c, int upstream_eof);
#ifdef __linux__
static int splice_response(ferry__http_conn *c, int readable);
#endif
static void start_splice(ferry__http_conn *c);
static int pump_request_body(ferry__http_conn *c);
static int body_error_status(const ferry__http_conn *c, int r);
static ferry_err body_error(int r);

/* Send what is pending on both sides right away (most sends complete, so no writability
 * event is needed), keep bodies moving, then set the interest masks. Tail position only:
 * it may close and free c. */
static void drive(ferry__http_conn *c) {
    for (int round = 0; round < 8; round++) {
        int progress = 0;
        ferry__http_upstream *u = c->up;
        if (u && !u->connecting && c->state != CS_TUNNEL && ferry__bytes_pending(&u->out)) {
            long n = ferry__bytes_send(&u->out, u->fd);
            if (n == -2) {
                ferry_err why = ferry__err_from_errno(errno);
                if (!c->resp_head_done)
                    answer_and_close(c, 502, "error", why);
                else
                    conn_close(c, "error", why);
                return;
            }
            if (n > 0) progress = 1;
        }
        if (u && c->state == CS_EXCHANGE && !c->req_done && ferry__bytes_pending(&c->in) &&
            ferry__bytes_pending(&u->out) < HIGH_WATER) {
            size_t before = ferry__bytes_pending(&c->in);
            int r = pump_request_body(c);
            if (r < 0) {
                answer_and_close(c, body_error_status(c, r), "error", body_error(r));
                return;
            }
            if (ferry__bytes_pending(&c->in) != before) progress = 1;
        }
        if (out_pending(c)) {
            /* Spliced body bytes follow at once: one packet for the head and them. */
            long n = ferry__bytes_send_flags(&c->out, c->fd, c->in_pipe ? MSG_MORE : 0);
            if (n == -2) {
                conn_close(c, "error", ferry__err_from_errno(errno));
                return;
            }
            if (n > 0) progress = 1;
        }
#ifdef __linux__
        if (c->resp_splice && c->in_pipe && !out_pending(c)) {
            int r = splice_response(c, 0);
            if (r < 0) return;
            progress |= r;
        }
#endif
        if (u && c->state == CS_EXCHANGE && c->resp_head_done && ferry__bytes_pending(&u->in) &&
            out_pending(c) < HIGH_WATER) {
            if (pump_response(c, 0) < 0) return; /* finished or closed: c was handed on */
            progress = 1;
        }
        if (!progress) break;
    }
    if (c->state == CS_CLOSING && !out_pending(c)) {
        conn_close(c, "relayed", FERRY_OK);
        return;
    }
    if (c->client_eof && c->state == CS_EXCHANGE && !c->req_done && !ferry__bytes_pending(&c->in)) {
        conn_close(c, "error", FERRY_ECLOSED); /* the client closed in the middle of its body */
        return;
    }
    ferry__bytes_trim(&c->out, bytes_of(c));
    if (c->up) ferry__bytes_trim(&c->up->out, bytes_of(c));
    update_interest(c);
}

/* ---- request head ---- */

static void start_txn(ferry__http_conn *c);
static void apply_request_verdict(ferry__http_conn *c, ferry_verdict v);
static void start_routing(ferry__http_conn *c);
static void check_buffered(ferry__http_conn *c);

static void parse_head(ferry__http_conn *c) {
    ferry__http_msg *m = &c->txn.req;
    if (!m->headers) {
        m->headers = ferry__malloc(alloc_of(c), c->limits.max_headers * sizeof *m->headers);
        if (!m->headers) {
            conn_close(c, "error", FERRY_ENOMEM);
            return;
        }
    }
    ferry__http_error herr = FERRY__HTTP_E_NONE;
    int n = ferry__http_parse_request(ferry__bytes_head(&c->in), ferry__bytes_pending(&c->in),
                                      &c->limits, m, &herr);
    if (n == 0) {
        if (c->client_eof) { /* the rest of this head will never come */
            conn_free(c);
            return;
        }
        drive(c);
        return;
    }
    if (n < 0) {
        ferry__log(c->base.worker->engine, FERRY_LOG_INFO, "%s: %s: bad request: %s",
                   c->base.listener->name, c->info.client_addr, ferry__http_error_text(herr));
        answer_and_close(c, ferry__http_error_status(herr), "rejected", FERRY_EPROTO);
        return;
    }
    c->head_len = (size_t)n;
    c->head_us = ferry__now_us() - c->txn_start_us;
    start_txn(c);
}

static void start_head(ferry__http_conn *c) {
    c->state = CS_HEAD;
    c->head_saw_lf = 0;
    c->txn_start_us = ferry__now_us();
    c->txn_wall_us = ferry__wall_us();
    const ferry_listener_opts *o = opts_of(c);
    arm(c, c->first || ferry__bytes_pending(&c->in) ? o->header_timeout_ms : idle_timeout(c));
    ferry__bytes_trim(&c->in, bytes_of(c));
    if (ferry__bytes_pending(&c->in))
        parse_head(c); /* a pipelined request is already here */
    else
        drive(c);
}

/* A forward listener's request: find the destination, check credentials and the policy,
 * and make the request what the origin expects (origin-form, Host = the target's
 * authority). Returns 1 when the request was answered here. */
static int forward_request(ferry__http_conn *c) {
    ferry_txn *t = &c->txn;
    forward_state *f = c->fwd;
    size_t mlen = t->req.method.len < sizeof f->method ? t->req.method.len : sizeof f->method - 1;
    memcpy(f->method, t->req.method.ptr, mlen);
    f->method[mlen] = '\0';
    c->info.method = f->method;
    c->info.user = "";
    c->info.dest_host = "";
    c->info.dest_port = 0;
    c->info.proxy_protocol = FERRY_PROXY_NONE;
    f->origin_form = t->req.target_form == FERRY__TARGET_ORIGIN ||
                     t->req.target_form == FERRY__TARGET_ASTERISK;
    if (f->origin_form) return 0; /* not a proxy request: only a hook can answer it */
    int connect = t->req.target_form == FERRY__TARGET_AUTHORITY;
    ferry__forward_target ft;
    int status = ferry__forward_target_split(t->req.target, connect, &ft);
    if (status) {
        answer_and_close(c, status, "rejected", status == 501 ? FERRY_ENOTSUP : FERRY_EPROTO);
        return 1;
    }
    memcpy(f->host, ft.host, sizeof f->host);
    c->info.dest_host = f->host;
    c->info.dest_port = ft.port;
    c->info.proxy_protocol = connect ? FERRY_PROXY_CONNECT : FERRY_PROXY_HTTP;
    /* Credentials are for us alone: read them, then they are gone from the request. */
    ferry_view cred;
    char password[FERRY__BASIC_MAX + 1];
    const char *user = NULL;
    if (ferry_txn_header_get(t, FERRY_TXN_REQUEST, "proxy-authorization", &cred) == FERRY_OK &&
        ferry__basic_decode(cred, f->user, password) == 0)
        user = f->user;
    ferry_txn_header_remove(t, FERRY_TXN_REQUEST, "proxy-authorization");
    ferry_err err = ferry__route_admit(c->base.listener, &c->info, user, password);
    memset(password, 0, sizeof password);
    if (err == FERRY_EAUTH) {
        answer_with(c, 407, "Proxy-Authenticate: Basic realm=\"ferry\"\r\n", "rejected", err);
        return 1;
    }
    if (err) {
        answer_and_close(c, 403, "rejected", err);
        return 1;
    }
    if (connect) return 0;
    /* RFC 9112 section 3.2.2: the target's authority replaces whatever Host was sent. */
    char *host = ferry__txn_strdup(t, ft.authority.ptr, ft.authority.len);
    if (!host || ferry_txn_header_set(t, FERRY_TXN_REQUEST, "Host", host) != FERRY_OK) {
        conn_close(c, "error", FERRY_ENOMEM);
        return 1;
    }
    if (ft.path.len && ft.path.ptr[0] == '/') {
        t->upstream_target = ft.path;
        return 0;
    }
    char *path = ferry__txn_alloc(t, ft.path.len + 1); /* "" or "?query": add the "/" */
    if (!path) {
        conn_close(c, "error", FERRY_ENOMEM);
        return 1;
    }
    path[0] = '/';
    if (ft.path.len) memcpy(path + 1, ft.path.ptr, ft.path.len);
    t->upstream_target = (ferry_view){path, ft.path.len + 1};
    return 0;
}

static int idempotent(ferry_view method) {
    static const char *const m[] = {"get", "head", "options", "trace", "put", "delete"};
    for (size_t i = 0; i < FERRY__ARRAY_LEN(m); i++)
        if (ferry__view_ieq(method, m[i])) return 1;
    return 0;
}

static void start_txn(ferry__http_conn *c) {
    ferry_txn *t = &c->txn;
    const ferry_listener_opts *o = opts_of(c);
    c->first = 0;
    c->info.txn = t;
    c->client_11 = t->req.version_minor == 1;
    c->keep_alive = !(t->req.flags & FERRY__HTTP_CONN_CLOSE) && !c->base.worker->stopping &&
                    (c->client_11 || (t->req.flags & FERRY__HTTP_CONN_KEEP_ALIVE));
    c->upgrade = (t->req.flags & FERRY__HTTP_CONN_UPGRADE) != 0;
    c->req_body = t->req.body;
    c->req_left = t->req.content_length;
    c->req_done = c->req_body == FERRY__BODY_NONE;
    c->resp_head_done = c->resp_done = c->resp_chunked_out = c->close_after = 0;
    c->req_filter = c->resp_filter = c->buffered = 0;
    c->retried = c->route_asked = 0;
    ferry__chunked_init(&c->req_dec);
    if (ferry__txn_take_request(t)) {
        conn_close(c, "error", FERRY_ENOMEM);
        return;
    }
    if (c->fwd) {
        if (forward_request(c)) return; /* answered */
    } else if (t->req.target_form != FERRY__TARGET_ORIGIN &&
               t->req.target_form != FERRY__TARGET_ASTERISK) {
        /* Reverse listeners serve origin-form targets; proxy forms belong to forward ones. */
        answer_and_close(c, 400, "rejected", FERRY_EPROTO);
        return;
    }
    if (o->max_body_bytes && c->req_body == FERRY__BODY_LENGTH && c->req_left > o->max_body_bytes) {
        answer_and_close(c, 413, "rejected", FERRY_ELIMIT);
        return;
    }
    const ferry_hook_ops *ops = hooks_of(c);
    ferry_verdict v = ops && ops->on_request ? ops->on_request(hook_data(c), t) : FERRY_CONTINUE;
    apply_request_verdict(c, v);
}

static void apply_request_verdict(ferry__http_conn *c, ferry_verdict v) {
    ferry_txn *t = &c->txn;
    if (v == FERRY_PAUSE) {
        if (!c->ticket) { /* pausing needs a ticket to resume with */
            answer_and_close(c, 500, "error", FERRY_ESTATE);
            return;
        }
        c->state = CS_PAUSED;
        /* A ticket never resumed must not hold the client forever. */
        arm(c, opts_of(c)->response_timeout_ms);
        drive(c);
        return;
    }
    if (c->ticket) { /* taken but not used for a pause: the holder's resume is a no-op */
        c->ticket->conn = NULL;
        ticket_release(c->ticket);
        c->ticket = NULL;
    }
    if (v == FERRY_REJECT) {
        answer_and_close(c, t->reject_status, "rejected", FERRY_EREJECTED);
        return;
    }
    if (v == FERRY_RESPOND && t->local_status) {
        int head_only = ferry__view_ieq(t->req.method, "head");
        /* Keep the connection only if no request body is left unread. */
        int close = !c->keep_alive || !c->req_done;
        if (ferry__http_write_simple(&c->out, bytes_of(c), t->local_status, t->local_type,
                                     t->local_body, t->local_len, NULL, close, head_only)) {
            conn_close(c, "error", FERRY_ENOMEM);
            return;
        }
        t->status = t->local_status;
        c->resp_bytes = head_only ? 0 : t->local_len;
        ferry__bytes_consume(&c->in, c->head_len);
        c->close_after = (uint8_t)close;
        finish_txn(c);
        return;
    }
    if (c->fwd && c->fwd->origin_form) {
        /* A forward proxy is not a web server: nobody answered this request. */
        answer_and_close(c, 400, "rejected", FERRY_EPROTO);
        return;
    }
    const ferry_direction_ops *d = opts_of(c)->direction;
    if (d->route_request && !c->route_asked) {
        c->route_asked = 1; /* once: its own answers come back through here */
        ferry_verdict rv = d->route_request(opts_of(c)->direction_data, t);
        if (rv == FERRY_PAUSE) {
            answer_and_close(c, 500, "error", FERRY_ESTATE);
            return;
        }
        if (rv != FERRY_CONTINUE) {
            apply_request_verdict(c, rv);
            return;
        }
    }
    /* A hook or the route may have lowered the limit. */
    if (max_body(c) && c->req_body == FERRY__BODY_LENGTH && c->req_left > max_body(c)) {
        answer_and_close(c, 413, "rejected", FERRY_ELIMIT);
        return;
    }
    if (opts_of(c)->request_buffer_bytes && c->req_body != FERRY__BODY_NONE) {
        c->state = CS_BUFFERING;
        arm(c, opts_of(c)->body_timeout_ms);
        check_buffered(c);
        return;
    }
    start_routing(c);
}

static void start_routing(ferry__http_conn *c) {
    c->rt = ferry__calloc(alloc_of(c), sizeof *c->rt);
    if (!c->rt) {
        conn_close(c, "error", FERRY_ENOMEM);
        return;
    }
    c->state = CS_ROUTING;
    ferry__timer_stop(loop_of(c), &c->timer);
    update_interest(c);
    connect_next(c);
}

/* Is the whole request body in the buffer? 1 yes, 0 not yet, -1 it will not fit (too big
 * for the option, or for the buffer, which must not move while the head is in use). */
static int body_in_buffer(ferry__http_conn *c) {
    const char *body = ferry__bytes_head(&c->in) + c->head_len;
    size_t have = ferry__bytes_pending(&c->in) - c->head_len;
    size_t room = c->in.cap - c->in.off - c->head_len;
    size_t limit = opts_of(c)->request_buffer_bytes < room ? opts_of(c)->request_buffer_bytes : room;
    if (c->req_body == FERRY__BODY_LENGTH) {
        if (c->req_left > limit) return -1;
        return have >= c->req_left;
    }
    ferry__chunked dec;
    ferry__chunked_init(&dec);
    size_t pos = 0;
    for (;;) {
        size_t used = 0;
        ferry_view data;
        ferry__http_error herr;
        int r = ferry__chunked_decode(&dec, body + pos, have - pos, &used, &data, &herr);
        pos += used;
        if (r == FERRY__CHUNKED_DONE || r == FERRY__CHUNKED_ERROR) return 1; /* errors: the pump reports */
        if (r == FERRY__CHUNKED_NEED_MORE) return have >= limit ? -1 : 0;
    }
}

static void check_buffered(ferry__http_conn *c) {
    int r = body_in_buffer(c);
    if (r == 0 && !c->client_eof) {
        drive(c);
        return;
    }
    c->buffered = r == 1;
    start_routing(c);
}

/* ---- pausing: a hook decides later, from any thread ---- */

static void ticket_release(ferry_txn_ticket *k) {
    if (atomic_fetch_sub(&k->refs, 1) == 1) {
        const ferry_allocator *a = &((ferry__worker *)ferry__loop_owner(k->loop))->engine->alloc;
        ferry__free(a, k);
    }
}

ferry_txn_ticket *ferry_txn_pause(ferry_txn *t) {
    if (!t || !t->conn) return NULL;
    ferry__http_conn *c = t->conn;
    if (c->state != CS_HEAD || c->ticket) return NULL; /* only from on_request, once */
    ferry_txn_ticket *k = ferry__calloc(alloc_of(c), sizeof *k);
    if (!k) return NULL;
    atomic_init(&k->refs, 2);
    k->loop = loop_of(c);
    k->conn = c;
    c->ticket = k;
    return k;
}

static void on_resumed(ferry__loop *loop, void *ud) {
    (void)loop;
    ferry_txn_ticket *k = ud;
    ferry__http_conn *c = k->conn;
    if (c && c->ticket == k && c->state == CS_PAUSED) {
        c->ticket = NULL;
        k->conn = NULL;
        ticket_release(k); /* the connection's reference */
        if (k->verdict == FERRY_REJECT && k->status) c->txn.reject_status = k->status;
        apply_request_verdict(c, k->verdict == FERRY_PAUSE ? FERRY_CONTINUE : k->verdict);
    }
    ticket_release(k);
}

ferry_err ferry_txn_resume(ferry_txn_ticket *k, int verdict, int status) {
    if (!k) return FERRY_EINVAL;
    if (verdict == FERRY_REJECT && status && (status < 400 || status > 599)) status = 403;
    k->verdict = (ferry_verdict)verdict;
    k->status = status;
    ferry_err err = ferry__loop_post(k->loop, on_resumed, k);
    if (err) ticket_release(k); /* the connection times out the pause instead */
    return err;
}

/* ---- routing and connecting ---- */

static int status_for(ferry_err err) {
    if (err == FERRY_ENOUPSTREAM) return 503;
    if (err == FERRY_EREJECTED) return 403; /* the destination's address is refused */
    if (err == FERRY_ETIMEDOUT) return 504;
    return 502;
}

static void send_request(ferry__http_conn *c);

/* While a body is moving, silence is bounded by the body timeout; once the request is
 * complete and no response head has come, by the response timeout. */
static void arm_exchange(ferry__http_conn *c) {
    const ferry_listener_opts *o = opts_of(c);
    arm(c, c->req_done && !c->resp_head_done ? response_timeout(c) : o->body_timeout_ms);
}

static int is_connect(const ferry__http_conn *c) {
    return c->info.proxy_protocol == FERRY_PROXY_CONNECT;
}

/* The HTTP parent a request goes to in absolute-form; NULL when it goes direct or
 * through a tunnel (SOCKS parent, or CONNECT). */
static const ferry_parent *absolute_form_parent(const ferry__http_conn *c) {
    const ferry_parent *p = c->rt->target.parent;
    return p && p->kind == FERRY_PARENT_HTTP && !is_connect(c) ? p : NULL;
}

/* CONNECT: the tunnel is up; tell the client and relay bytes from now on. */
static void connect_established(ferry__http_conn *c) {
    static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
    if (ferry__bytes_append(&c->out, bytes_of(c), ok, sizeof ok - 1)) {
        conn_close(c, "error", FERRY_ENOMEM);
        return;
    }
    c->txn.status = 200;
    c->txn.req_headers.count = 0;
    ferry__bytes_consume(&c->in, c->head_len); /* early tunnel bytes stay for the relay */
    c->head_len = 0;
    start_tunnel(c);
}

static void upstream_ready(ferry__http_conn *c) {
    if (is_connect(c))
        connect_established(c);
    else
        send_request(c);
}

static void connect_done(ferry__http_conn *c, ferry_err err);

/* Asking a parent for a tunnel; failures count as failed connects (the next parent). */
static void handshake_step(ferry__http_conn *c) {
    ferry__http_upstream *u = c->up;
    ferry_err err = FERRY_OK;
    ferry__tunnel_want want = ferry__tunnel_step(u->handshake, u->fd, &err);
    if (want == FERRY__TUNNEL_FAILED) {
        connect_done(c, err);
        return;
    }
    if (want == FERRY__TUNNEL_DONE) {
        ferry__free(alloc_of(c), u->handshake);
        u->handshake = NULL;
        upstream_ready(c);
        return;
    }
    u->handshake_want = (uint8_t)want;
    update_interest(c);
}

static void connect_done(ferry__http_conn *c, ferry_err err) {
    ferry__http_upstream *u = c->up;
    ferry__route_connected(c->rt, c->base.worker, c->base.listener, err);
    if (err) {
        ferry__http_upstream_free(c->base.worker, u);
        c->up = NULL;
        connect_next(c);
        return;
    }
    u->connecting = 0;
    c->connect_us = ferry__now_us() - c->connect_start_us;
    int one = 1;
    setsockopt(u->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    attach(c);
    if (opts_of(c)->send_proxy && !c->rt->target.parent) {
        /* The header names one client: the connection is this client's alone. */
        char header[128];
        size_t n = ferry__proxy_header_for(&c->info, c->fd, opts_of(c)->send_proxy, header,
                                           sizeof header);
        if (!n || ferry__bytes_append(&u->out, bytes_of(c), header, n)) {
            answer_and_close(c, 502, "error", FERRY_ENOMEM);
            return;
        }
        u->pinned = 1;
    }
    const ferry_parent *p = c->rt->target.parent;
    u->via = absolute_form_parent(c);
    if (p && !u->via) {
        u->pinned = 1;
        u->handshake = ferry__malloc(alloc_of(c), sizeof *u->handshake);
        if (!u->handshake ||
            ferry__tunnel_init(u->handshake, p, c->rt->target.host, c->rt->target.port)) {
            answer_and_close(c, 502, "error", u->handshake ? FERRY_EINVAL : FERRY_ENOMEM);
            return;
        }
        handshake_step(c);
        return;
    }
    upstream_ready(c);
}

/* Use a pooled connection to `a` (unless retrying) or start a new one. Returns 0 when
 * that is under way (c may be gone), -1 when connecting failed at once (reported). */
static int connect_to(ferry__http_conn *c, const ferry__sockaddr *a) {
    ferry__worker *w = c->base.worker;
    c->upstream_addr = *a;
    c->connect_start_us = ferry__now_us();
    const ferry_parent *p = c->rt->target.parent;
    if (!c->retried && !is_connect(c) && (!p || absolute_form_parent(c)) &&
        !opts_of(c)->send_proxy) {
        ferry__http_upstream *pooled = ferry__http_pool_take(w, a, absolute_form_parent(c));
        if (pooled) {
            c->up = pooled;
            c->connect_us = 0;
            attach(c);
            send_request(c);
            return 0;
        }
    }
    ferry__http_upstream *u = ferry__calloc(alloc_of(c), sizeof *u);
    if (!u) {
        answer_and_close(c, 502, "error", FERRY_ENOMEM);
        return 0;
    }
    u->worker = w;
    u->addr = *a;
    u->fd = socket(a->sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (u->fd < 0) {
        ferry__free(alloc_of(c), u);
        ferry__route_connected(c->rt, w, c->base.listener, ferry__err_from_errno(errno));
        return -1;
    }
    int rc;
    do rc = connect(u->fd, &a->sa, ferry__sockaddr_len(a));
    while (rc < 0 && errno == EINTR);
    if (rc < 0 && errno != EINPROGRESS) {
        ferry__route_connected(c->rt, w, c->base.listener, ferry__err_from_errno(errno));
        ferry__http_upstream_free(w, u);
        return -1;
    }
    c->up = u;
    u->connecting = 1;
    arm(c, connect_timeout(c));
    drive(c);
    return 0;
}

static void on_resolved(void *ud, ferry_err result, const ferry__addrs *addrs) {
    ferry__http_conn *c = ud;
    ferry__route_resolved(c->rt, c->base.listener, result, addrs);
    connect_next(c);
}

/* Next address the route offers, until one connects or the route runs out. */
static void connect_next(ferry__http_conn *c) {
    for (;;) {
        const ferry__sockaddr *a = NULL;
        ferry__route_step step = ferry__route_next(c->rt, c->base.worker, c->base.listener, &c->info,
                                                   on_resolved, c, &a);
        if (step == FERRY__ROUTE_PENDING) return;
        if (step == FERRY__ROUTE_REJECTED) {
            answer_and_close(c, c->txn.reject_status, "rejected", FERRY_EREJECTED);
            return;
        }
        if (step == FERRY__ROUTE_NONE) {
            ferry_err why = c->rt->attempts == 0 ? FERRY_ENOUPSTREAM : c->rt->last_error;
            if (!why) why = FERRY_ENOUPSTREAM;
            answer_and_close(c, status_for(why), "no-upstream", why);
            return;
        }
        if (connect_to(c, a) == 0) return;
    }
}

/* ---- the exchange ---- */

static ferry_err append_chunk(ferry__bytes *out, ferry__bytes_pool *a, const char *p, size_t n) {
    if (ferry__bytes_append_u64(out, a, n, 1) || ferry__bytes_append(out, a, "\r\n", 2) ||
        ferry__bytes_append(out, a, p, n) || ferry__bytes_append(out, a, "\r\n", 2))
        return FERRY_ENOMEM;
    return FERRY_OK;
}

/* pump_request_body's failures: -1 out of memory, -2 bad chunked coding, -3 too large,
 * -4 rejected by on_body. */
static int body_error_status(const ferry__http_conn *c, int r) {
    if (r == -4) return c->txn.reject_status;
    return r == -3 ? 413 : r == -2 ? 400 : 502;
}
static ferry_err body_error(int r) {
    return r == -1 ? FERRY_ENOMEM : r == -3 ? FERRY_ELIMIT : r == -4 ? FERRY_EREJECTED : FERRY_EPROTO;
}

/* on_body filters only bodies it can read: no content coding. */
static int identity_coded(const ferry__header_list *l) {
    for (unsigned i = 0; i < l->count; i++)
        if (ferry__view_ieq(l->items[i].name, "content-encoding") &&
            !ferry__view_ieq(l->items[i].value, "identity"))
            return 0;
    return 1;
}

/* Hand one body piece to on_body; its output (or the piece itself) goes to out.
 * 0, or -1 out of memory, -2 the hook rejected. */
typedef struct sub_out {
    ferry__http_conn *c;
    ferry__bytes *out;
    int chunked;
} sub_out;

static int sub_emit(void *ud, const char *p, size_t n) {
    sub_out *o = ud;
    if (!n) return 0;
    return o->chunked ? append_chunk(o->out, bytes_of(o->c), p, n) != FERRY_OK
                      : ferry__bytes_append(o->out, bytes_of(o->c), p, n) != FERRY_OK;
}

/* A route's text substitutions over one piece of the response body (see filter_piece). */
static int substitute_piece(ferry__http_conn *c, ferry__bytes *out, int chunked, const char *p,
                            size_t n, int last) {
    ferry_txn *t = &c->txn;
    sub_out o = {c, out, chunked};
    if (n && ferry__sub_feed(t->sub, (ferry_view){p, n}, sub_emit, &o)) return -1;
    if (last && ferry__sub_flush(t->sub, sub_emit, &o)) return -1;
    return 0;
}

/* Bodies worth substituting in: text, JSON, JavaScript, XML. */
static int textual(const ferry_txn *t) {
    ferry_view v;
    if (ferry_txn_header_get(t, FERRY_TXN_RESPONSE, "content-type", &v) != FERRY_OK) return 0;
    char type[64];
    size_t n = v.len < sizeof type - 1 ? v.len : sizeof type - 1;
    for (size_t i = 0; i < n; i++) type[i] = v.ptr[i] >= 'A' && v.ptr[i] <= 'Z' ? (char)(v.ptr[i] + 32) : v.ptr[i];
    type[n] = '\0';
    return strncmp(type, "text/", 5) == 0 || strstr(type, "json") || strstr(type, "javascript") ||
           strstr(type, "xml");
}

static int filter_piece(ferry__http_conn *c, ferry_txn_part part, ferry__bytes *out, int chunked,
                        const char *p, size_t n, int last) {
    ferry_txn *t = &c->txn;
    if (part == FERRY_TXN_RESPONSE && t->sub) return substitute_piece(c, out, chunked, p, n, last);
    t->body_out = out;
    t->body_pool = bytes_of(c);
    t->body_chunked = (uint8_t)chunked;
    t->body_written = t->body_oom = 0;
    /* Never a NULL pointer, even for the empty last piece: hooks may memcpy from it. */
    ferry_verdict v = hooks_of(c)->on_body(hook_data(c), t, part, (ferry_view){p ? p : "", n}, last);
    t->body_out = NULL;
    if (t->body_oom) return -1;
    if (v == FERRY_REJECT) return -2;
    if (t->body_written || !n) return 0;
    if (chunked) return append_chunk(out, bytes_of(c), p, n) ? -1 : 0;
    return ferry__bytes_append(out, bytes_of(c), p, n) ? -1 : 0;
}

/* Move request body bytes from the client buffer to the upstream buffer. */
static int pump_request_body(ferry__http_conn *c) {
    ferry__http_upstream *u = c->up;
    ferry__bytes_pool *a = bytes_of(c);
    while (!c->req_done && ferry__bytes_pending(&c->in) &&
           (c->pump_unbounded || ferry__bytes_pending(&u->out) < HIGH_WATER)) {
        const char *p = ferry__bytes_head(&c->in);
        size_t n = ferry__bytes_pending(&c->in);
        if (c->req_body == FERRY__BODY_LENGTH) {
            size_t take = n < c->req_left ? n : (size_t)c->req_left;
            if (c->req_filter) {
                int r = filter_piece(c, FERRY_TXN_REQUEST, &u->out, 1, p, take, 0);
                if (r) return r == -2 ? -4 : -1;
            } else if (ferry__bytes_append(&u->out, a, p, take)) {
                return -1;
            }
            ferry__bytes_consume(&c->in, take);
            c->req_left -= take;
            c->req_bytes += take;
            if (c->req_left == 0) {
                c->req_done = 1;
                if (c->req_filter && (filter_piece(c, FERRY_TXN_REQUEST, &u->out, 1, NULL, 0, 1) ||
                                      ferry__bytes_append(&u->out, a, "0\r\n\r\n", 5)))
                    return -1;
            }
            continue;
        }
        size_t used = 0;
        ferry_view data = {0};
        ferry__http_error herr = FERRY__HTTP_E_NONE;
        int r = ferry__chunked_decode(&c->req_dec, p, n, &used, &data, &herr);
        if (r == FERRY__CHUNKED_ERROR) return -2;
        if (r == FERRY__CHUNKED_DATA) {
            if (c->req_filter) {
                int fr = filter_piece(c, FERRY_TXN_REQUEST, &u->out, 1, data.ptr, data.len, 0);
                if (fr) return fr == -2 ? -4 : -1;
            } else if (append_chunk(&u->out, a, data.ptr, data.len)) {
                return -1;
            }
            c->req_bytes += data.len;
            if (max_body(c) && c->req_bytes > max_body(c)) return -3;
        }
        if (r == FERRY__CHUNKED_DONE) {
            if (c->req_filter && filter_piece(c, FERRY_TXN_REQUEST, &u->out, 1, NULL, 0, 1)) return -1;
            if (ferry__bytes_append(&u->out, a, "0\r\n\r\n", 5)) return -1;
            c->req_done = 1;
        }
        ferry__bytes_consume(&c->in, used);
        if (r == FERRY__CHUNKED_NEED_MORE) break;
    }
    return 0;
}

static void send_request(ferry__http_conn *c) {
    ferry_txn *t = &c->txn;
    const ferry_hook_ops *ops = hooks_of(c);
    ferry__http_upstream *u = c->up;
    if (c->fwd && !c->retried) {
        const ferry_parent *p = absolute_form_parent(c);
        if (p) { /* the parent needs the whole URL, and our credentials if it wants them */
            t->upstream_target = t->req.target;
            char auth[2 * FERRY_CRED_MAX + 16];
            if (p->user[0] && ferry__basic_encode(p->user, p->password, auth, sizeof auth))
                t->parent_auth = ferry__txn_strdup(t, auth, strlen(auth));
        }
        const ferry_direction_ops *d = opts_of(c)->direction;
        if (d->edit_request) d->edit_request(opts_of(c)->direction_data, t);
    }
    if (t->backend_host && !c->retried &&
        ferry_txn_header_set(t, FERRY_TXN_REQUEST, "Host", c->rt->target_text) != FERRY_OK) {
        answer_and_close(c, 502, "error", FERRY_ENOMEM);
        return;
    }
    if (ops && ops->on_upstream_request && !c->retried &&
        ops->on_upstream_request(hook_data(c), t) == FERRY_REJECT) {
        answer_and_close(c, t->reject_status, "rejected", FERRY_EREJECTED);
        return;
    }
    if (c->retried && c->replay.len) {
        if (ferry__bytes_append(&u->out, bytes_of(c), c->replay.ptr, c->replay.len)) {
            answer_and_close(c, 502, "error", FERRY_ENOMEM);
            return;
        }
    } else {
        c->req_filter = ops && ops->on_body && c->req_body != FERRY__BODY_NONE &&
                        identity_coded(&t->req_headers);
        int framing = c->req_filter ? FERRY__BODY_CHUNKED : c->req_body; /* lengths may change */
        if (ferry__http_write_request_head(&u->out, bytes_of(c), t, framing, c->req_left,
                                           c->upgrade)) {
            answer_and_close(c, 502, "error", FERRY_ENOMEM);
            return;
        }
        /* A reused connection may turn out closed by the server: keep what was sent so
         * a replayable request can be sent once more on a fresh connection. */
        c->replay = (ferry_view){NULL, 0};
    }
    /* The head is out: its views into the client buffer are not used past this point. */
    t->req_headers.count = 0;
    if (c->head_len) {
        ferry__bytes_consume(&c->in, c->head_len);
        c->head_len = 0;
    }
    c->state = CS_EXCHANGE;
    c->pump_unbounded = c->buffered;
    int r = pump_request_body(c);
    c->pump_unbounded = 0;
    /* A reused connection may turn out closed by the server: keep what was sent so a
     * replayable request (idempotent, body none or buffered whole) can go once more. */
    if (!r && !c->retried && u->uses && c->req_done && idempotent(t->req.method) &&
        (c->req_body == FERRY__BODY_NONE || c->buffered ||
         (c->req_body == FERRY__BODY_LENGTH && t->req.content_length == 0))) {
        char *copy = ferry__txn_strdup(t, ferry__bytes_head(&u->out), ferry__bytes_pending(&u->out));
        if (copy) c->replay = (ferry_view){copy, ferry__bytes_pending(&u->out)};
    }
    if (r < 0) {
        answer_and_close(c, body_error_status(c, r), "error", body_error(r));
        return;
    }
    arm_exchange(c);
    drive(c);
}

/* May the response body be spliced? Only one that passes through untouched, with a known
 * length (so the pipe is never fed past it and a pooled connection stays clean), and with
 * enough of it left in the socket to be worth the extra system calls. The bytes read with
 * the head go the usual way first. */
static void start_splice(ferry__http_conn *c) {
#ifdef __linux__
    if (!opts_of(c)->splice || c->resp_filter || c->resp_body != FERRY__BODY_LENGTH ||
        c->resp_left < ferry__bytes_pending(&c->up->in) + SPLICE_MIN)
        return;
    if (ferry__pipe_get(&c->base.worker->pool, c->pipe) < 0) return; /* no pipe: copy instead */
    c->resp_splice = 1;
    c->pipe_full = 0;
#else
    (void)c;
#endif
}

#ifdef __linux__
/* The spliced part of a response body: upstream socket -> pipe, never more than the body's
 * remaining length; pipe -> client once everything queued before it has been sent.
 * `readable`: the upstream socket is worth reading now. Returns 1 when bytes moved, 0 when
 * none did, -1 when c was finished or closed (the caller must not touch it). */
static int splice_response(ferry__http_conn *c, int readable) {
    /* Body bytes read with the head are still buffered: they go first (pump_response),
     * and resp_left counts them, so nothing is read into the pipe before they are out. */
    if (ferry__bytes_pending(&c->up->in)) return 0;
    size_t cap = c->base.worker->pool.pipe_size;
    int moved = 0;
    for (int round = 0; round < 8; round++) {
        int progress = 0;
        if (readable && c->resp_left && !c->pipe_full && c->in_pipe < cap) {
            size_t want = cap - c->in_pipe;
            if (want > c->resp_left) want = (size_t)c->resp_left;
            long n = ferry__splice_move(c->up->fd, c->pipe[1], want);
            if (n == 0) { /* truncated: close so the client sees it */
                conn_close(c, "error", FERRY_ECLOSED);
                return -1;
            }
            if (n == -2 && (errno == EINVAL || errno == ENOSYS) && !c->in_pipe && !moved) {
                /* These sockets cannot splice: the body is copied after all. */
                ferry__pipe_put(&c->base.worker->pool, c->pipe);
                c->resp_splice = 0;
                return 0;
            }
            if (n == -2) {
                conn_close(c, "error", ferry__err_from_errno(errno));
                return -1;
            }
            if (n == -1) {
                /* An empty socket, or a pipe without a free slot (slots, not bytes, can run
                 * out first): with bytes in the pipe, wait for the client to take some. */
                c->pipe_full = c->in_pipe != 0;
                readable = 0;
            } else {
                c->in_pipe += (size_t)n;
                c->resp_left -= (uint64_t)n;
                readable = (size_t)n == want; /* less: the socket is empty for now */
                progress = 1;
            }
        }
        if (c->in_pipe && !out_pending(c)) {
            long n = ferry__splice_move(c->pipe[0], c->fd, c->in_pipe);
            if (n == -2) {
                conn_close(c, "error", ferry__err_from_errno(errno));
                return -1;
            }
            if (n > 0) {
                c->in_pipe -= (size_t)n;
                c->resp_bytes += (uint64_t)n;
                if (c->pipe_full) readable = 1;
                c->pipe_full = 0;
                progress = 1;
            }
        }
        if (!progress) break;
        moved = 1;
    }
    if (moved) arm(c, opts_of(c)->body_timeout_ms);
    if (c->resp_left || c->in_pipe) return moved;
    ferry__pipe_put(&c->base.worker->pool, c->pipe);
    c->resp_splice = 0;
    c->resp_done = 1;
    finish_txn(c);
    return -1;
}
#endif

/* Move response bytes from upstream to the client; returns -1 when the connection was
 * closed here (the caller must not touch c). */
static int pump_response(ferry__http_conn *c, int upstream_eof) {
    ferry__http_upstream *u = c->up;
    ferry_txn *t = &c->txn;
    ferry__bytes_pool *a = bytes_of(c);
    while (!c->resp_head_done) {
        if (!t->resp.headers) {
            t->resp.headers =
                ferry__malloc(alloc_of(c), c->limits.max_headers * sizeof *t->resp.headers);
            if (!t->resp.headers) {
                answer_and_close(c, 502, "error", FERRY_ENOMEM);
                return -1;
            }
        }
        ferry__http_error herr = FERRY__HTTP_E_NONE;
        int n = ferry__http_parse_response(ferry__bytes_head(&u->in), ferry__bytes_pending(&u->in),
                                           &c->limits, t->req.method, &t->resp, &herr);
        if (n == 0) {
            if (!upstream_eof) return 0;
            /* Closed before a whole head: a reused connection the server dropped gets one
             * more try on a fresh connection if the request can be replayed. */
            ferry_engine *e = c->base.worker->engine;
            if (u->uses && !ferry__bytes_pending(&u->in) && !c->retried && c->replay.len) {
                atomic_fetch_add(&e->requests_retried, 1);
                ferry__http_upstream_free(c->base.worker, u);
                c->up = NULL;
                c->retried = 1;
                c->state = CS_ROUTING;
                if (connect_to(c, &c->upstream_addr) < 0) connect_next(c);
                return -1;
            }
            if (u->uses && !ferry__bytes_pending(&u->in) && !c->retried) {
                /* Bytes went out and cannot go again: a body that streamed past the
                 * replay buffer, or a method that must not run twice. */
                atomic_fetch_add(&e->retries_refused, 1);
                ferry__log(e, FERRY_LOG_WARN,
                           "%s: %s closed a reused connection; %.*s not retried: %s",
                           c->base.listener->name, c->rt ? c->rt->target_text : "?",
                           (int)t->method.len, t->method.ptr,
                           idempotent(t->req.method) ? "its body was streamed, not buffered"
                                                     : "the method is not idempotent");
            }
            if (!u->uses || c->retried) observe_backend(c, 0); /* not a keep-alive race */
            answer_and_close(c, 502, "error", FERRY_ECLOSED);
            return -1;
        }
        if (n < 0) {
            ferry__log(c->base.worker->engine, FERRY_LOG_WARN, "%s: bad response from %s: %s",
                       c->base.listener->name, c->rt ? c->rt->target_text : "?",
                       ferry__http_error_text(herr));
            observe_backend(c, 0);
            answer_and_close(c, 502, "error", FERRY_EPROTO);
            return -1;
        }
        int status = t->resp.status;
        if (status >= 100 && status < 200 && status != 101) {
            /* Interim responses (100 Continue) go to HTTP/1.1 clients as they are. */
            if (c->client_11 && ferry__bytes_append(&c->out, a, ferry__bytes_head(&u->in), (size_t)n)) {
                answer_and_close(c, 502, "error", FERRY_ENOMEM);
                return -1;
            }
            ferry__bytes_consume(&u->in, (size_t)n);
            t->resp.status = 0;
            continue;
        }
        if (ferry__txn_take_response(t)) {
            answer_and_close(c, 502, "error", FERRY_ENOMEM);
            return -1;
        }
        const ferry_listener_opts *lo = opts_of(c);
        if (status >= 200) observe_backend(c, status);
        if (!c->fwd && ferry__http_rewrite_response(t, c->rt, lo)) {
            answer_and_close(c, 502, "error", FERRY_ENOMEM);
            return -1;
        }
        if (status == 407 && absolute_form_parent(c)) {
            /* The parent refused our credentials: that is ours to fix, not the client's to
             * answer (its Proxy-Authenticate would ask the client for the parent's). */
            ferry__log(c->base.worker->engine, FERRY_LOG_WARN, "%s: parent %s refused our credentials",
                       c->base.listener->name, c->rt->target.parent->name);
            answer_and_close(c, 502, "error", FERRY_EAUTH);
            return -1;
        }
        const ferry_hook_ops *ops = hooks_of(c);
        if (ops && ops->on_response && ops->on_response(hook_data(c), t) == FERRY_REJECT) {
            answer_and_close(c, t->reject_status_set ? t->reject_status : 502, "rejected",
                             FERRY_EREJECTED);
            return -1;
        }
        if (status == 101) {
            if (!c->upgrade) {
                answer_and_close(c, 502, "error", FERRY_EPROTO);
                return -1;
            }
            if (ferry__http_write_response_head(&c->out, a, t, FERRY__BODY_NONE, 0, 0, 0, 0, 1)) {
                answer_and_close(c, 502, "error", FERRY_ENOMEM);
                return -1;
            }
            ferry__bytes_consume(&u->in, (size_t)n);
            t->status = 101;
            start_tunnel(c);
            return -1;
        }
        c->resp_body = t->resp.body;
        c->resp_left = t->resp.content_length;
        ferry__chunked_init(&c->resp_dec);
        const ferry_hook_ops *hops = hooks_of(c);
        int identity = c->resp_body != FERRY__BODY_NONE && identity_coded(&t->resp_headers);
        if (identity && t->sub_rules && textual(t)) {
            t->sub = ferry__malloc(alloc_of(c), sizeof *t->sub);
            if (!t->sub || ferry__sub_init(t->sub, t->sub_rules, t->n_sub_rules, t->sub_icase)) {
                answer_and_close(c, 502, "error", FERRY_ENOMEM);
                return -1;
            }
        }
        c->resp_filter = identity && (t->sub || (hops && hops->on_body));
        /* A filtered body's length is unknown until it is done. */
        int framing = c->resp_filter ? FERRY__BODY_UNTIL_CLOSE : c->resp_body;
        int until_close = framing == FERRY__BODY_UNTIL_CLOSE;
        c->resp_chunked_out = (framing == FERRY__BODY_CHUNKED || until_close) && c->client_11;
        if (until_close && !c->client_11) c->close_after = 1;
        int close = c->close_after || !c->keep_alive || !c->req_done;
        if (!c->req_done) c->close_after = 1; /* an early answer: the rest of the body is not read */
        if (ferry__http_write_response_head(&c->out, a, t, framing, c->resp_left,
                                            c->resp_chunked_out, close,
                                            c->keep_alive && !c->client_11, 0)) {
            answer_and_close(c, 502, "error", FERRY_ENOMEM);
            return -1;
        }
        t->status = status;
        t->resp_headers.count = 0; /* views into the upstream buffer end here */
        ferry__bytes_consume(&u->in, (size_t)n);
        c->resp_head_done = 1;
        /* "Content-Length: 0" is as complete as no body at all. */
        if (c->resp_body == FERRY__BODY_NONE || (c->resp_body == FERRY__BODY_LENGTH && !c->resp_left))
            c->resp_done = 1;
        else
            start_splice(c);
        arm(c, opts_of(c)->body_timeout_ms);
    }
    while (!c->resp_done && ferry__bytes_pending(&u->in) && out_pending(c) < HIGH_WATER) {
        const char *p = ferry__bytes_head(&u->in);
        size_t n = ferry__bytes_pending(&u->in);
        if (c->resp_body == FERRY__BODY_LENGTH || c->resp_body == FERRY__BODY_UNTIL_CLOSE) {
            size_t take = n;
            if (c->resp_body == FERRY__BODY_LENGTH && take > c->resp_left) take = (size_t)c->resp_left;
            size_t sent = 0;
            if (c->resp_filter) {
                int r = filter_piece(c, FERRY_TXN_RESPONSE, &c->out, c->resp_chunked_out, p, take, 0);
                if (r) {
                    conn_close(c, r == -2 ? "rejected" : "error", r == -2 ? FERRY_EREJECTED : FERRY_ENOMEM);
                    return -1;
                }
                sent = take; /* handled */
            } else if (!c->resp_chunked_out && !out_pending(c)) {
                /* Nothing queued for the client: send straight from the upstream buffer,
                 * saving a copy; only what the socket refuses is queued. */
                ssize_t w = send(c->fd, p, take, MSG_NOSIGNAL);
                if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                    conn_close(c, "error", ferry__err_from_errno(errno));
                    return -1;
                }
                sent = w > 0 ? (size_t)w : 0;
            }
            ferry_err err = FERRY_OK;
            if (c->resp_filter)
                err = FERRY_OK;
            else if (c->resp_chunked_out)
                err = append_chunk(&c->out, a, p, take);
            else if (sent < take)
                err = ferry__bytes_append(&c->out, a, p + sent, take - sent);
            if (err) {
                conn_close(c, "error", FERRY_ENOMEM);
                return -1;
            }
            ferry__bytes_consume(&u->in, take);
            c->resp_bytes += take;
            if (c->resp_body == FERRY__BODY_LENGTH) {
                c->resp_left -= take;
                if (!c->resp_left) c->resp_done = 1;
            }
            continue;
        }
        size_t used = 0;
        ferry_view data = {0};
        ferry__http_error herr = FERRY__HTTP_E_NONE;
        int r = ferry__chunked_decode(&c->resp_dec, p, n, &used, &data, &herr);
        if (r == FERRY__CHUNKED_ERROR) {
            /* Mid-body: the client can only learn of it by the connection closing. */
            ferry__log(c->base.worker->engine, FERRY_LOG_WARN, "%s: bad chunked body from %s: %s",
                       c->base.listener->name, c->rt ? c->rt->target_text : "?",
                       ferry__http_error_text(herr));
            conn_close(c, "error", FERRY_EPROTO);
            return -1;
        }
        if (r == FERRY__CHUNKED_DATA) {
            int fr = 0;
            if (c->resp_filter)
                fr = filter_piece(c, FERRY_TXN_RESPONSE, &c->out, c->resp_chunked_out, data.ptr,
                                  data.len, 0);
            else if (c->resp_chunked_out ? append_chunk(&c->out, a, data.ptr, data.len)
                                         : ferry__bytes_append(&c->out, a, data.ptr, data.len))
                fr = -1;
            if (fr) {
                conn_close(c, fr == -2 ? "rejected" : "error", fr == -2 ? FERRY_EREJECTED : FERRY_ENOMEM);
                return -1;
            }
            c->resp_bytes += data.len;
        }
        ferry__bytes_consume(&u->in, used);
        if (r == FERRY__CHUNKED_DONE) c->resp_done = 1;
        if (r == FERRY__CHUNKED_NEED_MORE) break;
    }
    if (!c->resp_done && upstream_eof) {
        if (c->resp_body != FERRY__BODY_UNTIL_CLOSE) { /* truncated: close so the client sees it */
            conn_close(c, "error", FERRY_ECLOSED);
            return -1;
        }
        c->resp_done = 1;
    }
    if (c->resp_done && c->resp_filter) {
        int fr = filter_piece(c, FERRY_TXN_RESPONSE, &c->out, c->resp_chunked_out, NULL, 0, 1);
        if (fr) {
            conn_close(c, fr == -2 ? "rejected" : "error", fr == -2 ? FERRY_EREJECTED : FERRY_ENOMEM);
            return -1;
        }
    }
    if (c->resp_done && c->resp_chunked_out && ferry__bytes_append(&c->out, a, "0\r\n\r\n", 5)) {
        conn_close(c, "error", FERRY_ENOMEM);
        return -1;
    }
    if (c->resp_done) {
        finish_txn(c);
        return -1;
    }
    return 0;
}

/* ---- tunnels (101 Switching Protocols) ---- */

static void tunnel_done(ferry__relay *r, void *ud, ferry_err err) {
    (void)r;
    ferry__http_conn *c = ud;
    c->req_bytes += c->tunnel->dir[0].bytes;
    c->resp_bytes += c->tunnel->dir[1].bytes;
    conn_close(c, err ? "error" : "relayed", err);
}

/* Flush what is buffered on both sides, then hand both sockets to the opaque relay. */
static void start_tunnel(ferry__http_conn *c) {
    ferry__http_upstream *u = c->up;
    ferry__bytes_pool *a = bytes_of(c);
    if (ferry__bytes_pending(&u->in) &&
        ferry__bytes_append(&c->out, a, ferry__bytes_head(&u->in), ferry__bytes_pending(&u->in))) {
        conn_close(c, "error", FERRY_ENOMEM);
        return;
    }
    ferry__bytes_consume(&u->in, ferry__bytes_pending(&u->in));
    if (ferry__bytes_pending(&c->in) &&
        ferry__bytes_append(&u->out, a, ferry__bytes_head(&c->in), ferry__bytes_pending(&c->in))) {
        conn_close(c, "error", FERRY_ENOMEM);
        return;
    }
    ferry__bytes_consume(&c->in, ferry__bytes_pending(&c->in));
    c->req_done = c->resp_done = 1;
    c->state = CS_TUNNEL;
    ferry__timer_stop(loop_of(c), &c->timer);
    /* Writes may need several rounds; the relay starts once both buffers are empty. */
    ferry__loop_watch(loop_of(c), c->fd, out_pending(c) ? FERRY__WRITABLE : 0, client_io, c);
    ferry__loop_watch(loop_of(c), u->fd, ferry__bytes_pending(&u->out) ? FERRY__WRITABLE : 0,
                      upstream_io, c);
    if (!out_pending(c) && !ferry__bytes_pending(&u->out)) {
        c->tunnel = ferry__calloc(alloc_of(c), sizeof *c->tunnel);
        if (!c->tunnel) {
            conn_close(c, "error", FERRY_ENOMEM);
            return;
        }
        ferry__relay_opts ro = {.idle_ms = opts_of(c)->idle_timeout_ms, .splice = opts_of(c)->splice};
        if (ferry__relay_start(c->tunnel, loop_of(c), &c->base.worker->pool, c->fd, u->fd, &ro,
                               tunnel_done, c)) {
            conn_close(c, "error", FERRY_ENOMEM);
        }
    }
}

/* ---- events ---- */

/* The client closed its side. A complete request is still answered (then the connection
 * closes); a request cut short ends the connection. */
static void client_eof(ferry__http_conn *c) {
    if (c->state == CS_HEAD && !ferry__bytes_pending(&c->in)) {
        conn_free(c);
        return;
    }
    if (c->state == CS_HEAD) { /* a head that can never be completed */
        conn_close(c, "error", FERRY_ECLOSED);
        return;
    }
    /* Requests already received (bodies included) are still answered, in order; a body
     * that turns out short ends the connection once the buffer runs dry (see drive). */
    c->client_eof = 1;
    if (c->state == CS_BUFFERING) {
        check_buffered(c);
        return;
    }
    drive(c);
}

/* A request line starts with a method (a token) or with the CRLF some clients leave after
 * a body. */
static int can_start_request(char first) {
    unsigned char b = (unsigned char)first;
    if ((b >= 'A' && b <= 'Z') || (b >= 'a' && b <= 'z') || (b >= '0' && b <= '9')) return 1;
    return b == '\r' || b == '\n' || (b && strchr("!#$%&'*+-.^_`|~", b) != NULL);
}

static void client_io(ferry__loop *loop, int fd, void *ud, int mask) {
    (void)loop;
    (void)fd;
    ferry__http_conn *c = ud;
    if (c->state == CS_TUNNEL) {
        if (ferry__bytes_send(&c->out, c->fd) == -2) {
            conn_close(c, "error", ferry__err_from_errno(errno));
            return;
        }
        if (!out_pending(c)) start_tunnel(c);
        return;
    }
    if ((mask & FERRY__READABLE) && !c->client_eof && c->state != CS_CLOSING) {
        long n = head_pinned(c) ? ferry__bytes_recv_inplace(&c->in, c->fd)
                                : ferry__bytes_recv(&c->in, bytes_of(c), c->fd, READ_CHUNK);
        if (n == 0) {
            client_eof(c);
            return;
        }
        if (n == -2) { /* reset: nothing can be answered */
            if (c->state == CS_HEAD && !ferry__bytes_pending(&c->in))
                conn_free(c);
            else
                conn_close(c, "error", ferry__err_from_errno(errno));
            return;
        }
        if (n > 0 && c->state == CS_HEAD) {
            size_t have = ferry__bytes_pending(&c->in);
            if (have == (size_t)n && !c->first)
                arm(c, opts_of(c)->header_timeout_ms); /* a new request started */
            /* A head can only complete at an LF, and the limits only trip past their sizes:
             * re-parsing on every byte of a slow client would cost quadratic time. */
            int lf = memchr(ferry__bytes_head(&c->in) + have - (size_t)n, '\n', (size_t)n) != NULL;
            c->head_saw_lf |= (uint8_t)lf;
            /* A head that cannot start a request line (a SOCKS greeting on an HTTP-only
             * port, say) is refused now, not when the header timeout ends it. */
            int bad_start = have == (size_t)n && !can_start_request(*ferry__bytes_head(&c->in));
            if (lf || bad_start || have > c->limits.max_head ||
                (!c->head_saw_lf && have > c->limits.max_line))
                parse_head(c);
            else
                drive(c);
            return;
        }
        if (n > 0 && c->state == CS_EXCHANGE && !c->req_done) arm_exchange(c);
        if (n > 0 && c->state == CS_BUFFERING) {
            check_buffered(c);
            return;
        }
    }
    drive(c);
}

/* A response head is read in a small piece when its body might be spliced (see HEAD_READ);
 * anything else in large ones. */
static size_t head_read_size(const ferry__http_conn *c) {
    if (c->resp_head_done || ferry__bytes_pending(&c->up->in) || !opts_of(c)->splice ||
        c->txn.sub_rules || (hooks_of(c) && hooks_of(c)->on_body))
        return UPSTREAM_READ;
    return HEAD_READ;
}

static void upstream_io(ferry__loop *loop, int fd, void *ud, int mask) {
    (void)loop;
    ferry__http_conn *c = ud;
    ferry__http_upstream *u = c->up;
    if (u->connecting) {
        int soerr = 0;
        socklen_t len = sizeof soerr;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0) soerr = errno;
        connect_done(c, soerr ? ferry__err_from_errno(soerr) : FERRY_OK);
        return;
    }
    if (u->handshake) {
        handshake_step(c);
        return;
    }
    if (c->state == CS_TUNNEL) {
        if (ferry__bytes_send(&u->out, u->fd) == -2) {
            conn_close(c, "error", ferry__err_from_errno(errno));
            return;
        }
        if (!ferry__bytes_pending(&u->out)) start_tunnel(c);
        return;
    }
#ifdef __linux__
    if ((mask & FERRY__READABLE) && c->state == CS_EXCHANGE && c->resp_splice) {
        if (splice_response(c, 1) < 0) return;
        mask &= ~FERRY__READABLE;
    }
#endif
    if ((mask & FERRY__READABLE) && c->state == CS_EXCHANGE && !c->resp_done) {
        size_t max = head_read_size(c);
        long n = ferry__bytes_recv(&u->in, bytes_of(c), u->fd, max);
        if (n == -2 && !c->resp_head_done && !ferry__bytes_pending(&u->in)) n = 0;
        if (n == -2) {
            conn_close(c, "error", ferry__err_from_errno(errno));
            return;
        }
        if (n >= 0) {
            if (pump_response(c, n == 0) < 0) return;
            if (c->resp_head_done) arm(c, opts_of(c)->body_timeout_ms);
#ifdef __linux__
            /* A full read leaves more in the socket: splice it now, not one wakeup later. */
            if (c->resp_splice && (size_t)n == max && splice_response(c, 1) < 0) return;
#endif
        }
    }
    if ((mask & FERRY__WRITABLE) && c->state == CS_EXCHANGE && !c->req_done) arm_exchange(c);
    drive(c);
}

static void on_timer(ferry__loop *loop, void *ud) {
    ferry__http_conn *c = ud;
    uint64_t now = ferry__loop_now(loop);
    if (now < c->deadline_ms) {
        arm(c, (unsigned)(c->deadline_ms - now));
        return;
    }
    switch (c->state) {
    case CS_HEAD:
        if (!ferry__bytes_pending(&c->in)) { /* idle keep-alive: just close */
            conn_free(c);
            return;
        }
        answer_and_close(c, 408, "error", FERRY_ETIMEDOUT);
        return;
    case CS_BUFFERING: /* the client stopped sending its body */
        answer_and_close(c, 408, "error", FERRY_ETIMEDOUT);
        return;
    case CS_PAUSED:
        c->ticket->conn = NULL;
        ticket_release(c->ticket);
        c->ticket = NULL;
        answer_and_close(c, 504, "error", FERRY_ETIMEDOUT);
        return;
    case CS_ROUTING:
        if (c->up && (c->up->connecting || c->up->handshake)) {
            connect_done(c, FERRY_ETIMEDOUT);
            return;
        }
        break;
    case CS_EXCHANGE:
        if (!c->req_done && !c->resp_head_done) { /* the client stopped sending its body */
            answer_and_close(c, 408, "error", FERRY_ETIMEDOUT);
            return;
        }
        if (!c->resp_head_done) {
            ferry__log(c->base.worker->engine, FERRY_LOG_WARN, "%s: no response from %s in time",
                       c->base.listener->name, c->rt ? c->rt->target_text : "?");
            observe_backend(c, 0);
            answer_and_close(c, 504, "error", FERRY_ETIMEDOUT);
            return;
        }
        break;
    default:
        break;
    }
    conn_close(c, "error", FERRY_ETIMEDOUT);
}

/* ---- accepting ---- */

void ferry__http_accept(ferry__worker *w, ferry_listener *l, int fd, const ferry__sockaddr *peer) {
    ferry_engine *e = w->engine;
    ferry__http_conn *c = ferry__calloc(&e->alloc, sizeof *c);
    if (!c) {
        close(fd);
        ferry__log(e, FERRY_LOG_ERROR, "%s: out of memory accepting a client", l->name);
        return;
    }
    c->fd = fd;
    c->pipe[0] = c->pipe[1] = -1;
    c->first = 1;
    c->base.listener = l;
    c->base.abort = abort_conn;
    c->base.drain = drain_conn;
    ferry__session_info_fill(w, l, peer, &c->info);
    ferry__conn_link(w, &c->base);
    ferry__txn_init(&c->txn, c, &e->alloc);
    ferry__http_limits_init(&c->limits);
    c->limits.max_line = l->opts.max_request_line;
    c->limits.max_head = l->opts.max_header_bytes;
    c->limits.max_headers = l->opts.max_headers;
    if (l->nforwarders) {
        ferry__ip ip;
        ferry__ip_from_bytes(c->info.client_family, c->info.client_ip, &ip);
        for (unsigned i = 0; i < l->nforwarders && !c->trusted_forwarder; i++)
            c->trusted_forwarder = (uint8_t)ferry__cidr_contains(&l->forwarders[i], &ip);
    }
    if (l->opts.direction->client_names_destination) {
        c->fwd = ferry__calloc(&e->alloc, sizeof *c->fwd);
        if (!c->fwd) {
            conn_free(c);
            return;
        }
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    const ferry_hook_ops *ops = hooks_of(c);
    if (ops && ops->on_accept && ops->on_accept(hook_data(c), &c->info) == FERRY_REJECT) {
        c->txn_start_us = ferry__now_us();
        c->txn_wall_us = ferry__wall_us();
        log_txn(c, "rejected", FERRY_EREJECTED);
        conn_free(c);
        return;
    }
    start_head(c);
}
