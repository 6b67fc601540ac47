/* HTTP hooks through the public API: block by path, answer locally, rewrite request and
 * response headers; plus strict parsing answering before anything goes upstream. */
#include <signal.h>
#include <stdlib.h>

#include "ferry.h"
#include "http_backend.h"

/* ---- hooks under test ---- */

typedef struct resume_job {
    ferry_txn_ticket *ticket;
    int verdict, status;
} resume_job;

/* Decides on another thread, a little later, as an auth service would. */
static void *resume_later(void *arg) {
    resume_job *j = arg;
    usleep(50000);
    ferry_txn_resume(j->ticket, j->verdict, j->status);
    free(j);
    return NULL;
}

static ferry_verdict pause_and_resume(ferry_txn *txn, int verdict, int status) {
    resume_job *j = malloc(sizeof *j);
    j->ticket = ferry_txn_pause(txn);
    ck_assert_ptr_nonnull(j->ticket);
    ck_assert_ptr_null(ferry_txn_pause(txn)); /* once */
    j->verdict = verdict;
    j->status = status;
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, resume_later, j), 0);
    pthread_detach(t);
    return FERRY_PAUSE;
}

static ferry_verdict on_request(void *ud, ferry_txn *txn) {
    (void)ud;
    ferry_view path = ferry_txn_target(txn);
    if (path.len == 10 && memcmp(path.ptr, "/slow-pass", 10) == 0)
        return pause_and_resume(txn, FERRY_CONTINUE, 0);
    if (path.len == 10 && memcmp(path.ptr, "/slow-deny", 10) == 0)
        return pause_and_resume(txn, FERRY_REJECT, 429);
    if (path.len >= 8 && memcmp(path.ptr, "/blocked", 8) == 0) {
        ferry_txn_set_reject_status(txn, 451);
        return FERRY_REJECT;
    }
    if (path.len == 6 && memcmp(path.ptr, "/local", 6) == 0) {
        ck_assert_int_eq(ferry_txn_respond(txn, 200, "text/plain", "made here\n", 10), FERRY_OK);
        return FERRY_RESPOND;
    }
    /* Header values with CR/LF are refused: no injection through the API. */
    ck_assert_int_eq(ferry_txn_header_set(txn, FERRY_TXN_REQUEST, "X-Evil", "a\r\nInjected: 1"),
                     FERRY_EINVAL);
    ck_assert_int_eq(ferry_txn_header_set(txn, FERRY_TXN_REQUEST, "Content-Length", "5"),
                     FERRY_EINVAL);
    ck_assert_int_eq(ferry_txn_header_set(txn, FERRY_TXN_REQUEST, "X-Hook", "request-rewritten"),
                     FERRY_OK);
    ferry_txn_header_remove(txn, FERRY_TXN_REQUEST, "X-Drop-Me");
    ferry_view ua;
    ck_assert_int_eq(ferry_txn_header_get(txn, FERRY_TXN_REQUEST, "user-agent", &ua), FERRY_OK);
    ck_assert_uint_eq(ua.len, 9);
    return FERRY_CONTINUE;
}

static ferry_verdict on_response(void *ud, ferry_txn *txn) {
    (void)ud;
    ck_assert_int_eq(ferry_txn_status(txn), 200);
    ferry_txn_header_remove(txn, FERRY_TXN_RESPONSE, "Server");
    ck_assert_int_eq(ferry_txn_header_add(txn, FERRY_TXN_RESPONSE, "X-Response-Hook", "yes"),
                     FERRY_OK);
    return FERRY_CONTINUE;
}

typedef struct log_count {
    atomic_int records;
    atomic_int last_status;
} log_count;

static void on_log(void *ud, const ferry_log_record *r) {
    log_count *lc = ud;
    atomic_fetch_add(&lc->records, 1);
    atomic_store(&lc->last_status, r->status);
}

static const ferry_hook_ops hooks = {.on_request = on_request, .on_response = on_response,
                                     .on_log = on_log};

typedef struct proxy {
    ferry_engine *engine;
    uint16_t port;
    log_count logs;
} proxy;

/* A started engine with one HTTP listener in front of one backend. */
static ferry_engine *start_http_proxy(uint16_t backend_port, ferry_hooks h, unsigned buffer,
                                      uint16_t *port) {
    ferry_listener_opts lo;
    ferry_listener_opts_init(&lo);
    lo.protocol = FERRY_PROTO_HTTP;
    lo.hooks = h;
    lo.request_buffer_bytes = buffer;
    return proxy_to_backend(backend_port, lo, port);
}

static void proxy_start(proxy *p, uint16_t backend_port) {
    memset(p, 0, sizeof *p);
    p->engine = start_http_proxy(backend_port, (ferry_hooks){&hooks, &p->logs}, 0, &p->port);
}

START_TEST(hooks_block_answer_and_rewrite) {
    signal(SIGPIPE, SIG_IGN);
    http_backend b;
    backend_start(&b);
    proxy p;
    proxy_start(&p, b.port);
    static char out[65536];

    exchange(p.port, "GET /blocked/x HTTP/1.1\r\nHost: a\r\nUser-Agent: test-agnt\r\n\r\n", out,
             sizeof out);
    ck_assert_msg(strncmp(out, "HTTP/1.1 451 ", 13) == 0, "got: %s", out);
    ck_assert_int_eq(atomic_load(&b.connections), 0);

    exchange(p.port, "GET /local HTTP/1.1\r\nHost: a\r\nUser-Agent: test-agnt\r\n\r\n", out,
             sizeof out);
    ck_assert_msg(strncmp(out, "HTTP/1.1 200 ", 13) == 0, "got: %s", out);
    ck_assert_ptr_nonnull(strstr(out, "\r\n\r\nmade here\n"));
    ck_assert_int_eq(atomic_load(&b.connections), 0);

    exchange(p.port,
             "GET /pass HTTP/1.1\r\nHost: a\r\nUser-Agent: test-agnt\r\nX-Drop-Me: 1\r\n"
             "X-Forwarded-For: 6.6.6.6\r\nConnection: close\r\n\r\n",
             out, sizeof out);
    ck_assert_msg(strncmp(out, "HTTP/1.1 200 ", 13) == 0, "got: %s", out);
    ck_assert_ptr_nonnull(strstr(out, "X-Response-Hook: yes\r\n"));
    ck_assert_ptr_null(strstr(out, "secret-backend"));
    ck_assert_ptr_nonnull(strstr(out, "\r\n\r\nok"));
    pthread_mutex_lock(&b.lock);
    ck_assert_ptr_nonnull(strstr(b.last_head, "GET /pass HTTP/1.1\r\n"));
    ck_assert_ptr_nonnull(strstr(b.last_head, "X-Hook: request-rewritten\r\n"));
    ck_assert_ptr_null(strstr(b.last_head, "X-Drop-Me"));
    ck_assert_ptr_null(strstr(b.last_head, "Injected"));
    ck_assert_ptr_null(strstr(b.last_head, "6.6.6.6")); /* replaced, never trusted */
    ck_assert_ptr_nonnull(strstr(b.last_head, "X-Forwarded-For: 127.0.0.1\r\n"));
    ck_assert_ptr_nonnull(strstr(b.last_head, "X-Forwarded-Host: a\r\n"));
    ck_assert_ptr_null(strstr(b.last_head, "Connection: close"));
    pthread_mutex_unlock(&b.lock);

    ferry_engine_free(p.engine);
    ck_assert_int_eq(atomic_load(&p.logs.records), 3);
    backend_stop(&b);
}
END_TEST

START_TEST(strict_violations_are_answered_without_touching_the_backend) {
    signal(SIGPIPE, SIG_IGN);
    http_backend b;
    backend_start(&b);
    proxy p;
    proxy_start(&p, b.port);
    static const struct {
        const char *request;
        const char *status;
    } cases[] = {
        {"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", "400"},
        {"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", "400"},
        {"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\nx", "400"},
        {"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", "400"},
        {"GET / HTTP/1.1\r\nHost: a\r\nX : b\r\n\r\n", "400"},
        {"GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n folded\r\n\r\n", "400"},
        {"GET / HTTP/1.1\r\n\r\n", "400"},
        {"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "400"},
        {"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", "501"},
        {"GET / HTTP/2.0\r\nHost: a\r\n\r\n", "505"},
        {"G@T / HTTP/1.1\r\nHost: a\r\n\r\n", "400"},
        {"GET http://elsewhere/ HTTP/1.1\r\nHost: a\r\n\r\n", "400"},
    };
    static char out[65536];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        exchange(p.port, cases[i].request, out, sizeof out);
        ck_assert_msg(strncmp(out, "HTTP/1.1 ", 9) == 0 && strncmp(out + 9, cases[i].status, 3) == 0,
                      "case %zu: got %.40s", i, out);
        ck_assert_ptr_nonnull(strstr(out, "Connection: close\r\n"));
    }
    ck_assert_int_eq(atomic_load(&b.connections), 0);
    ferry_engine_free(p.engine);
    backend_stop(&b);
}
END_TEST

START_TEST(keep_alive_and_pipelining_reuse_one_backend_connection) {
    signal(SIGPIPE, SIG_IGN);
    http_backend b;
    backend_start(&b);
    proxy p;
    proxy_start(&p, b.port);
    static char out[65536];
    size_t n = exchange(p.port,
                        "GET /1 HTTP/1.1\r\nHost: a\r\nUser-Agent: test-agnt\r\n\r\n"
                        "GET /2 HTTP/1.1\r\nHost: a\r\nUser-Agent: test-agnt\r\n\r\n"
                        "GET /3 HTTP/1.1\r\nHost: a\r\nUser-Agent: test-agnt\r\nConnection: close\r\n\r\n",
                        out, sizeof out);
    ck_assert_uint_gt(n, 0);
    int responses = 0;
    for (char *q = out; (q = strstr(q, "HTTP/1.1 200 ")); q++) responses++;
    ck_assert_int_eq(responses, 3);
    ck_assert_int_eq(atomic_load(&b.requests), 3);
    ck_assert_int_eq(atomic_load(&b.connections), 1);
    ferry_engine_free(p.engine);
    backend_stop(&b);
}
END_TEST

START_TEST(a_paused_transaction_resumes_from_another_thread) {
    signal(SIGPIPE, SIG_IGN);
    http_backend b;
    backend_start(&b);
    proxy p;
    proxy_start(&p, b.port);
    static char out[65536];
    exchange(p.port, "GET /slow-pass HTTP/1.1\r\nHost: a\r\nUser-Agent: test-agnt\r\n\r\n", out,
             sizeof out);
    ck_assert_msg(strncmp(out, "HTTP/1.1 200 ", 13) == 0, "got: %s", out);
    ck_assert_int_eq(atomic_load(&b.requests), 1);
    exchange(p.port, "GET /slow-deny HTTP/1.1\r\nHost: a\r\nUser-Agent: test-agnt\r\n\r\n", out,
             sizeof out);
    ck_assert_msg(strncmp(out, "HTTP/1.1 429 ", 13) == 0, "got: %s", out);
    ck_assert_int_eq(atomic_load(&b.requests), 1);
    ferry_engine_free(p.engine);
    backend_stop(&b);
}
END_TEST

/* ---- on_body: a streaming filter in both directions ---- */

static ferry_verdict shout_filter(void *ud, ferry_txn *txn, ferry_txn_part part, ferry_view data,
                                  int last) {
    (void)ud;
    if (part == FERRY_TXN_REQUEST) {
        /* Redact a word in the request body (pieces here are whole messages). */
        char buf[256];
        if (data.len >= sizeof buf) return FERRY_CONTINUE;
        memcpy(buf, data.ptr, data.len);
        buf[data.len] = '\0';
        char *hit = strstr(buf, "secret");
        if (!hit) return FERRY_CONTINUE;
        memcpy(hit, "XXXXXX", 6);
        ferry_txn_body_write(txn, buf, data.len);
        return FERRY_CONTINUE;
    }
    char up[256];
    size_t n = data.len < sizeof up ? data.len : sizeof up;
    for (size_t i = 0; i < n; i++) {
        char ch = data.ptr[i];
        up[i] = ch >= 'a' && ch <= 'z' ? (char)(ch - 32) : ch;
    }
    ck_assert_int_eq(ferry_txn_body_write(txn, up, n), FERRY_OK);
    if (last) ferry_txn_body_write(txn, "!", 1);
    return FERRY_CONTINUE;
}

static const ferry_hook_ops filter_hooks = {.on_body = shout_filter};

START_TEST(on_body_filters_request_and_response_bodies) {
    signal(SIGPIPE, SIG_IGN);
    http_backend b;
    backend_start(&b);
    uint16_t port;
    ferry_engine *engine = start_http_proxy(b.port, (ferry_hooks){&filter_hooks, NULL}, 0, &port);
    static char out[65536];
    exchange(port,
             "POST /f HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\nConnection: close\r\n\r\nsecret data",
             out, sizeof out);
    ck_assert_msg(strncmp(out, "HTTP/1.1 200 ", 13) == 0, "got: %s", out);
    /* The length changed, so the response is re-framed chunked: "OK", "!", end. */
    ck_assert_ptr_nonnull(strstr(out, "Transfer-Encoding: chunked\r\n"));
    ck_assert_ptr_null(strstr(out, "Content-Length"));
    ck_assert_ptr_nonnull(strstr(out, "\r\n\r\n2\r\nOK\r\n1\r\n!\r\n0\r\n\r\n"));
    pthread_mutex_lock(&b.lock);
    ck_assert_ptr_nonnull(strstr(b.last_head, "Transfer-Encoding: chunked\r\n"));
    ck_assert_ptr_null(strstr(b.last_head, "Content-Length"));
    ck_assert_str_eq(b.last_body, "b\r\nXXXXXX data\r\n0\r\n\r\n");
    pthread_mutex_unlock(&b.lock);
    ferry_engine_free(engine);
    backend_stop(&b);
}
END_TEST

/* ---- retries: a pooled connection the server closed, with a buffered body ---- */

START_TEST(a_buffered_idempotent_request_is_retried_on_a_fresh_connection) {
    signal(SIGPIPE, SIG_IGN);
    static const char put[] = "PUT /doc HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
    static char out[65536];
    for (int buffered = 1; buffered >= 0; buffered--) {
        http_backend b;
        backend_start(&b);
        b.drop_second = 1;
        uint16_t port;
        ferry_engine *engine = start_http_proxy(b.port, (ferry_hooks){NULL, NULL}, buffered ? 65536 : 0, &port);
        exchange(port, put, out, sizeof out); /* fills the pool with one connection */
        ck_assert_msg(strncmp(out, "HTTP/1.1 200 ", 13) == 0, "got: %s", out);
        exchange(port, put, out, sizeof out); /* reuses it; the server drops it */
        if (buffered) {
            ck_assert_msg(strncmp(out, "HTTP/1.1 200 ", 13) == 0, "got: %s", out);
            ck_assert_int_eq(atomic_load(&b.connections), 2);
            pthread_mutex_lock(&b.lock);
            ck_assert_str_eq(b.last_body, "hello"); /* replayed whole */
            pthread_mutex_unlock(&b.lock);
        } else { /* streamed: the body cannot be replayed */
            ck_assert_msg(strncmp(out, "HTTP/1.1 502 ", 13) == 0, "got: %s", out);
        }
        ck_assert_int_eq(atomic_load(&b.requests), buffered ? 2 : 1);
        ferry_engine_stats st;
        ferry_engine_get_stats(engine, &st);
        ck_assert_uint_eq(st.requests_retried, buffered ? 1 : 0);
        ck_assert_uint_eq(st.retries_refused, buffered ? 0 : 1); /* counted (and logged) */
        ferry_engine_free(engine);
        backend_stop(&b);
    }
}
END_TEST

/* Empty bodies ("Content-Length: 0") complete at once, both ways: the connection stays
 * usable for the next request instead of waiting for bytes that never come. */
START_TEST(empty_bodies_keep_the_connection) {
    signal(SIGPIPE, SIG_IGN);
    http_backend b;
    backend_start(&b);
    b.body = "";
    uint16_t port;
    ferry_engine *engine = start_http_proxy(b.port, (ferry_hooks){NULL, NULL}, 0, &port);
    int fd = connect_loopback(port);
    const char *reqs = "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"
                       "GET /b HTTP/1.1\r\nHost: a\r\n\r\n";
    send(fd, reqs, strlen(reqs), MSG_NOSIGNAL);
    static char out[4096];
    size_t have = 0;
    struct timeval tv = {3, 0}; /* the bug made the second answer wait for the body timeout */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    while (have < sizeof out - 1) {
        ssize_t n = recv(fd, out + have, sizeof out - 1 - have, 0);
        if (n <= 0) break;
        have += (size_t)n;
        out[have] = '\0';
        const char *first = strstr(out, "HTTP/1.1 200 ");
        if (first && strstr(first + 1, "HTTP/1.1 200 ")) break;
    }
    out[have] = '\0';
    close(fd);
    const char *first = strstr(out, "HTTP/1.1 200 ");
    ck_assert_msg(first && strstr(first + 1, "HTTP/1.1 200 "), "got: %s", out);
    ck_assert_ptr_null(strstr(out, "Connection: close"));
    ck_assert_int_eq(atomic_load(&b.connections), 1); /* one upstream connection for both */
    pthread_mutex_lock(&b.lock);
    ck_assert_ptr_nonnull(strstr(b.last_head, "GET /b "));
    pthread_mutex_unlock(&b.lock);
    ferry_engine_free(engine);
    backend_stop(&b);
}
END_TEST

START_TEST(a_non_idempotent_request_is_never_replayed) {
    signal(SIGPIPE, SIG_IGN);
    static const char post[] = "POST /order HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
    static char out[65536];
    http_backend b;
    backend_start(&b);
    b.drop_second = 1;
    uint16_t port;
    /* Even with the whole body buffered, a POST that reached the server is not sent twice. */
    ferry_engine *engine = start_http_proxy(b.port, (ferry_hooks){NULL, NULL}, 65536, &port);
    exchange(port, post, out, sizeof out);
    ck_assert_msg(strncmp(out, "HTTP/1.1 200 ", 13) == 0, "got: %s", out);
    exchange(port, post, out, sizeof out); /* the reused connection is dropped */
    ck_assert_msg(strncmp(out, "HTTP/1.1 502 ", 13) == 0, "got: %s", out);
    ck_assert_int_eq(atomic_load(&b.connections), 1);
    ferry_engine_stats st;
    ferry_engine_get_stats(engine, &st);
    ck_assert_uint_eq(st.requests_retried, 0);
    ck_assert_uint_eq(st.retries_refused, 1);
    ferry_engine_free(engine);
    backend_stop(&b);
}
END_TEST

START_TEST(a_body_arriving_later_is_buffered_whole_before_routing) {
    signal(SIGPIPE, SIG_IGN);
    http_backend b;
    backend_start(&b);
    uint16_t port;
    ferry_engine *engine = start_http_proxy(b.port, (ferry_hooks){NULL, NULL}, 65536, &port);
    int fd = connect_loopback(port);
    ck_assert_int_ge(fd, 0);
    const char *head = "PUT /doc HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\nConnection: close\r\n\r\n";
    ck_assert_int_eq(send(fd, head, strlen(head), 0), (ssize_t)strlen(head));
    usleep(50000);
    ck_assert_int_eq(atomic_load(&b.connections), 0); /* still buffering: nothing upstream */
    ck_assert_int_eq(send(fd, "hello", 5, 0), 5);
    usleep(20000);
    ck_assert_int_eq(send(fd, "world", 5, 0), 5);
    char out[4096];
    size_t have = 0;
    for (;;) {
        ssize_t n = recv(fd, out + have, sizeof out - 1 - have, 0);
        if (n <= 0) break;
        have += (size_t)n;
    }
    out[have] = '\0';
    close(fd);
    ck_assert_msg(strncmp(out, "HTTP/1.1 200 ", 13) == 0, "got: %s", out);
    pthread_mutex_lock(&b.lock);
    ck_assert_str_eq(b.last_body, "helloworld");
    pthread_mutex_unlock(&b.lock);
    ferry_engine_free(engine);
    backend_stop(&b);
}
END_TEST

int main(void) {
    Suite *s = suite_create("http_hooks");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, hooks_block_answer_and_rewrite);
    tcase_add_test(tc, strict_violations_are_answered_without_touching_the_backend);
    tcase_add_test(tc, keep_alive_and_pipelining_reuse_one_backend_connection);
    tcase_add_test(tc, a_paused_transaction_resumes_from_another_thread);
    tcase_add_test(tc, on_body_filters_request_and_response_bodies);
    tcase_add_test(tc, a_buffered_idempotent_request_is_retried_on_a_fresh_connection);
    tcase_add_test(tc, a_non_idempotent_request_is_never_replayed);
    tcase_add_test(tc, empty_bodies_keep_the_connection);
    tcase_add_test(tc, a_body_arriving_later_is_buffered_whole_before_routing);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
