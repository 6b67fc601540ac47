/* TLS passthrough with SNI routing: read the client's ClientHello (bounded in size and
 * time, across reads and records), route by its server_name, then send the hello on and
 * relay the rest untouched: no byte is decrypted or changed. A hello without a usable
 * name is routed with an empty name (the policy's default route, or a clean close). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <sys/socket.h>

#include "session_int.h"
#include "sni.h"

enum { HELLO_MAX = FERRY__SNI_MAX_DEFAULT };

struct ferry__sni {
    ferry__timer timer; /* the hello must arrive within the header timeout */
    char name[FERRY__SNI_NAME_MAX + 1];
};

void ferry__sni_free(ferry__session *s) {
    if (!s->sni) return;
    ferry__timer_stop(s->worker->loop, &s->sni->timer);
    ferry__free(&s->worker->engine->alloc, s->sni);
    s->sni = NULL;
}

static void hello_expired(ferry__loop *loop, void *ud) {
    (void)loop;
    ferry__session_end(ud, "error", FERRY_ETIMEDOUT);
}

static void hello_io(ferry__loop *loop, int fd, void *ud, int mask) {
    (void)mask;
    ferry__session *s = ud;
    ssize_t n;
    do n = recv(fd, s->prefix + s->prefix_len, HELLO_MAX - s->prefix_len, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0) {
        ferry__session_end(s, "error", n == 0 ? FERRY_ECLOSED : ferry__err_from_errno(errno));
        return;
    }
    s->prefix_len += (size_t)n;
    ferry__sni_hello hello;
    int r = ferry__sni_parse(s->prefix, s->prefix_len, HELLO_MAX, &hello);
    if (r == FERRY__SNI_NEED_MORE) return;
    if (r == FERRY__SNI_FOUND) {
        snprintf(s->sni->name, sizeof s->sni->name, "%.*s", (int)hello.server_name.len,
                 hello.server_name.ptr);
    } else {
        ferry__log(s->worker->engine, FERRY_LOG_INFO, "%s: %s: no server name: %s",
                   s->listener->name, s->info.client_addr, ferry__sni_result_text(r));
    }
    ferry__timer_stop(loop, &s->sni->timer);
    ferry__loop_unwatch(loop, fd); /* the client waits for the server's answer now */
    s->info.dest_host = s->sni->name;
    s->info.dest_port = s->listener->port;
    ferry__session_route(s);
}

void ferry__sni_accept(ferry__worker *w, ferry_listener *l, int fd, const ferry__sockaddr *peer) {
    ferry__session *s = ferry__session_new(w, l, fd, peer);
    if (!s) return;
    const ferry_allocator *a = &w->engine->alloc;
    s->sni = ferry__calloc(a, sizeof *s->sni);
    s->prefix = ferry__malloc(a, HELLO_MAX);
    if (!s->sni || !s->prefix) {
        ferry__session_end(s, "error", FERRY_ENOMEM);
        return;
    }
    ferry_err err = ferry__loop_watch(w->loop, fd, FERRY__READABLE, hello_io, s);
    if (!err) err = ferry__timer_start(w->loop, &s->sni->timer, l->opts.header_timeout_ms, hello_expired, s);
    if (err) ferry__session_end(s, "error", err);
}
