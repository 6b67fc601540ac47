/* The reverse proxy's configuration reader: every directive turned into its effect, the
 * block structure, the shared line syntax, every error with its line, check mode (nothing
 * bound, no log created), apply (port in use named by its line), memory failures. Effects
 * are read through the public getters and, where the API has none, through the engine's
 * and the transactions' internals; one TCP listener is started and relays for real. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine_int.h"
#include "rewrite.h"
#include "ferry.h"
#include "http_int.h"
#include "netutil.h"
#include "sticky.h"
#include "testutil.h"

#define CONF "rev.conf"

enum { ERR_SIZE = 1024 };

/* ---- helpers ---- */

static ferry_err parse(const char *text, ferry_reverse_config **out, char *err) {
    return ferry_reverse_config_parse(text, strlen(text), CONF, NULL, out, err, ERR_SIZE);
}

static ferry_reverse_config *parse_ok(const char *text) {
    ferry_reverse_config *cfg = NULL;
    char err[ERR_SIZE] = "";
    ferry_err rc = parse(text, &cfg, err);
    ck_assert_msg(rc == FERRY_OK, "rejected: %s", err);
    ck_assert_ptr_nonnull(cfg);
    return cfg;
}

/* `text` must be refused by parsing with exactly `message`. */
static void expect_error(const char *text, const char *message) {
    ferry_reverse_config *cfg = (ferry_reverse_config *)1;
    char err[ERR_SIZE] = "";
    ck_assert_msg(parse(text, &cfg, err) == FERRY_ECONFIG, "accepted: %s", text);
    ck_assert_ptr_null(cfg);
    ck_assert_str_eq(err, message);
}

/* An engine with the file's engine options, and the file applied to it. */
static ferry_engine *apply_ok(ferry_reverse_config *cfg) {
    ferry_engine_opts eo;
    ferry_engine_opts_init(&eo);
    char err[ERR_SIZE] = "";
    ck_assert_int_eq(ferry_reverse_config_engine_opts(cfg, &eo, err, sizeof err), FERRY_OK);
    ferry_engine *e = NULL;
    ck_assert_int_eq(ferry_engine_new(&eo, &e), FERRY_OK);
    ferry_err rc = ferry_reverse_config_apply(cfg, e, err, sizeof err);
    ck_assert_msg(rc == FERRY_OK, "apply: %s", err);
    return e;
}

static ferry_allocator libc_alloc;

static void txn_make(ferry_txn *t, const char *method, const char *target, const char *host) {
    ferry__allocator_init(&libc_alloc, NULL);
    ferry__txn_init(t, NULL, &libc_alloc);
    t->req.headers = libc_alloc.malloc(NULL, 4 * sizeof *t->req.headers);
    ck_assert_ptr_nonnull(t->req.headers);
    unsigned n = 0;
    if (host) t->req.headers[n++] = (ferry_http_header){{"Host", 4}, {host, strlen(host)}};
    t->req.headers[n++] = (ferry_http_header){{"X-Old", 5}, {"1", 1}};
    t->req.nheaders = n;
    t->req.method = (ferry_view){method, strlen(method)};
    t->req.target = (ferry_view){target, strlen(target)};
    ck_assert_int_eq(ferry__txn_take_request(t), FERRY_OK);
}

/* Route one request through `router`: "POOL TARGET", the pool (named by its backends'
 * ports: 1xxx "web", 2xxx "api", else "p") and the path the request would be sent with, or
 * "STATUS" when refused. t is left routed for further inspection. */
static const char *route_txn(ferry_router *router, ferry_txn *t, const char *method,
                             const char *target, const char *host) {
    static char out[256];
    const ferry_direction_ops *d = ferry_direction_router();
    txn_make(t, method, target, host);
    if (d->route_request(router, t) != FERRY_CONTINUE) {
        snprintf(out, sizeof out, "%d", t->reject_status);
        return out;
    }
    ferry_session_info s = {.txn = t, .dest_host = "", .method = "", .user = ""};
    uintptr_t state = 0;
    ferry_target tg;
    memset(&tg, 0, sizeof tg);
    ck_assert_int_eq(d->pick(router, &s, 0, &state, &tg), FERRY_OK);
    const char *a = ferry_backend_address(tg.backend);
    ferry_view v = t->upstream_target.len ? t->upstream_target : t->req.target;
    int port = atoi(strrchr(a, ':') + 1);
    snprintf(out, sizeof out, "%s %.*s", port / 1000 == 1 ? "web" : port / 1000 == 2 ? "api" : "p",
             (int)v.len, v.ptr);
    return out;
}

static const char *route_of(ferry_router *router, const char *method, const char *target,
                            const char *host) {
    ferry_txn t;
    const char *r = route_txn(router, &t, method, target, host);
    ferry__txn_free(&t);
    return r;
}

/* The backend port an SNI session for server name `name` goes to; 0 for none. */
static int sni_route(ferry_router *router, const char *name) {
    const ferry_direction_ops *d = ferry_direction_router();
    ferry_session_info s = {.dest_host = name, .method = "", .user = ""};
    uintptr_t state = 0;
    ferry_target tg;
    memset(&tg, 0, sizeof tg);
    if (d->pick(router, &s, 0, &state, &tg) != FERRY_OK) return 0;
    return atoi(strrchr(ferry_backend_address(tg.backend), ':') + 1);
}

/* ---- the effects ---- */

START_TEST(two_pools_routed_by_host_and_path) {
    ferry_reverse_config *cfg = parse_ok(
        "# two sites, two pools\n"
        "pool web\n"
        "    backend 127.0.0.1:1001\n"
        "    backend 127.0.0.1:1002 weight=3\n"
        "pool api\n"
        "    backend 127.0.0.1:2001\n"
        "\n"
        "listen 127.0.0.1:0 mode http\n"
        "    route host www.example.com pool web\n"
        "    route host www.example.com path /api strip-prefix /api add-prefix /v2 pool api\n"
        "    route host api.example.com pool api\n"
        "    route host *.example.org exact /status pool api\n"
        "    route path /static methods GET,HEAD pool web\n");
    ck_assert_uint_eq(ferry_reverse_config_listener_count(cfg), 1);
    ck_assert_ptr_null(ferry_reverse_config_listener(cfg, 0)); /* nothing built yet */
    ck_assert_ptr_null(ferry_reverse_config_router(cfg, 0));
    ck_assert_ptr_null(ferry_reverse_config_pool(cfg, "web"));
    ferry_engine *e = apply_ok(cfg);
    ferry_pool *web = ferry_reverse_config_pool(cfg, "web");
    ferry_pool *api = ferry_reverse_config_pool(cfg, "api");
    ck_assert_ptr_nonnull(web);
    ck_assert_ptr_nonnull(api);
    ck_assert_ptr_null(ferry_reverse_config_pool(cfg, "nope"));
    ck_assert_uint_eq(ferry_pool_size(web), 2);
    ck_assert_uint_eq(ferry_pool_size(api), 1);
    ck_assert_uint_eq(ferry_backend_weight(web->members[0]), 1);
    ck_assert_uint_eq(ferry_backend_weight(web->members[1]), 3);
    ferry_listener *l = ferry_reverse_config_listener(cfg, 0);
    ck_assert_ptr_nonnull(l);
    ck_assert_uint_ne(ferry_listener_port(l), 0);
    ck_assert_ptr_null(ferry_reverse_config_listener(cfg, 1));
    ferry_router *r = ferry_reverse_config_router(cfg, 0);
    ck_assert_uint_eq(ferry_router_size(r), 5);
    ferry_listener_opts *o = ferry_reverse_config_listener_opts(cfg, 0);
    ck_assert_ptr_eq(o->direction, ferry_direction_router());
    ck_assert_ptr_eq(o->direction_data, r);
    ck_assert_int_eq(o->protocol, FERRY_PROTO_HTTP);
    ck_assert_str_eq(route_of(r, "GET", "/", "www.example.com"), "web /");
    ck_assert_str_eq(route_of(r, "GET", "/api/users?x=1", "www.example.com"), "api /v2/users?x=1");
    ck_assert_str_eq(route_of(r, "GET", "/x", "api.example.com"), "api /x");
    ck_assert_str_eq(route_of(r, "GET", "/status", "a.example.org"), "api /status");
    ck_assert_str_eq(route_of(r, "GET", "/status/x", "a.example.org"), "404");
    ck_assert_str_eq(route_of(r, "HEAD", "/static/a.css", "other.test"), "web /static/a.css");
    ck_assert_str_eq(route_of(r, "POST", "/static/a.css", "other.test"), "404");
    ferry_engine_free(e);
    ferry_reverse_config_free(cfg);
}
END_TEST

START_TEST(route_options_reach_the_request) {
    ferry_reverse_config *cfg = parse_ok(
        "listen 127.0.0.1:0\n" /* http by default */
        "    route regex \\.php$ pool p backend-host on set-header \"X-Team: blue\" "
        "set-header \"X-Env: prod\" remove-header X-Old remove-header X-A,X-B "
        "connect-timeout 1500ms response-timeout 2s max-body 1k "
        "cookie-domain backend.internal public-cookie-domain .example.com "
        "substitute \"a=>b\" substitute \"cd=>\" substitute-icase on\n"
        "    route path / pool p cookie-domain backend.internal\n"
        "pool p\n" /* declared after its use */
        "    backend 127.0.0.1:3001\n");
    ferry_engine *e = apply_ok(cfg);
    ferry_router *r = ferry_reverse_config_router(cfg, 0);
    ferry_txn t;
    ck_assert_str_eq(route_txn(r, &t, "GET", "/a.php", "h"), "p /a.php");
    ferry_view v;
    ck_assert_int_eq(ferry_txn_header_get(&t, FERRY_TXN_REQUEST, "x-team", &v), FERRY_OK);
    ck_assert(v.len == 4 && memcmp(v.ptr, "blue", 4) == 0);
    ck_assert_int_eq(ferry_txn_header_get(&t, FERRY_TXN_REQUEST, "x-env", &v), FERRY_OK);
    ck_assert(v.len == 4 && memcmp(v.ptr, "prod", 4) == 0);
    ck_assert_int_eq(ferry_txn_header_get(&t, FERRY_TXN_REQUEST, "x-old", &v), FERRY_EINVAL);
    ck_assert_uint_eq(t.connect_timeout_ms, 1500);
    ck_assert_uint_eq(t.response_timeout_ms, 2000);
    ck_assert_uint_eq(t.max_body_bytes, 1024);
    ck_assert_uint_eq(t.backend_host, 1);
    ck_assert(t.cookie_domain.len == 16 &&
              memcmp(t.cookie_domain.ptr, "backend.internal", 16) == 0);
    ck_assert(t.public_domain.len == 12 && memcmp(t.public_domain.ptr, ".example.com", 12) == 0);
    ck_assert_uint_eq(t.n_sub_rules, 2);
    ck_assert_uint_eq(t.sub_icase, 1);
    ck_assert(t.sub_rules[1].pattern.len == 2 && t.sub_rules[1].replacement.len == 0);
    ferry__txn_free(&t);
    /* Defaults: the listener's limits, the client's Host, the Domain attribute removed. */
    ck_assert_str_eq(route_txn(r, &t, "GET", "/a.html", "h"), "p /a.html");
    ck_assert_uint_eq(t.connect_timeout_ms, 0);
    ck_assert_uint_eq(t.max_body_bytes, 0);
    ck_assert_uint_eq(t.backend_host, 0);
    ck_assert_uint_eq(t.public_domain.len, 0);
    ferry__txn_free(&t);
    ferry_engine_free(e);
    ferry_reverse_config_free(cfg);
}
END_TEST

START_TEST(pool_settings_reach_the_pool) {
    static const struct {
        const char *line;
        ferry_balance kind;
        const char *key;
    } balances[] = {
        {"", FERRY_BALANCE_ROUND_ROBIN, NULL},
        {"    balance roundrobin\n", FERRY_BALANCE_ROUND_ROBIN, NULL},
        {"    balance leastconn\n", FERRY_BALANCE_LEAST_CONN, NULL},
        {"    balance random2\n", FERRY_BALANCE_RANDOM2, NULL},
        {"    balance hash-client\n", FERRY_BALANCE_HASH_CLIENT, NULL},
        {"    balance hash-ip\n", FERRY_BALANCE_HASH_CLIENT, NULL},
        {"    balance hash-uri\n", FERRY_BALANCE_HASH_URI, NULL},
        {"    balance hash-header X-User\n", FERRY_BALANCE_HASH_HEADER, "X-User"},
        {"    BALANCE Hash-Cookie sid\n", FERRY_BALANCE_HASH_COOKIE, "sid"},
    };
    for (size_t i = 0; i < sizeof balances / sizeof balances[0]; i++) {
        char text[512];
        snprintf(text, sizeof text, "pool p\n    backend 127.0.0.1:1\n%s"
                 "listen 127.0.0.1:0\n    route pool p\n", balances[i].line);
        ferry_reverse_config *cfg = parse_ok(text);
        ferry_engine *e = apply_ok(cfg);
        ferry_pool *p = ferry_reverse_config_pool(cfg, "p");
        ck_assert_int_eq(p->balance, balances[i].kind);
        if (balances[i].key) ck_assert_str_eq(p->balance_key, balances[i].key);
        else ck_assert_ptr_null(p->balance_key);
        ferry_engine_free(e);
        ferry_reverse_config_free(cfg);
    }

    ferry_reverse_config *cfg = parse_ok(
        "pool a\n"
        "    backend 127.0.0.1:1\n"
        "    health-check http /healthz interval=5s timeout=300ms rise=4 fall=5 status=200-204 "
        "host=check.internal\n"
        "    down-time 10s\n"
        "    resolve-interval 1m\n"
        "    passive-check fails=3 5xx RESPONSES\n"
        "pool b\n"
        "    backend 127.0.0.1:2\n"
        "    health-check tcp interval=500\n" /* the default 1 s timeout shrinks to fit */
        "    down-time 0\n"
        "    passive-check 5xx\n"
        "    resolve-interval 0\n"
        "    sticky-cookie SRV secret \"s e c r e t\"\n"
        "pool c\n"
        "    backend 127.0.0.1:3\n"
        "    health-check http / status=204\n"
        "    sticky-cookie old\n"
        "    Sticky-Cookie __Host-srv\n"
        "listen 127.0.0.1:0\n"
        "    route pool a\n"
        "    route host b pool b\n"
        "    route host c pool c\n");
    ferry_engine *e = apply_ok(cfg);
    ferry_pool *a = ferry_reverse_config_pool(cfg, "a"), *b = ferry_reverse_config_pool(cfg, "b"),
               *c = ferry_reverse_config_pool(cfg, "c");
    ck_assert_int_eq(a->health.kind, FERRY_HEALTH_HTTP);
    ck_assert_str_eq(a->health.path, "/healthz");
    ck_assert_str_eq(a->health.host, "check.internal");
    ck_assert_uint_eq(a->health.interval_ms, 5000);
    ck_assert_uint_eq(a->health.timeout_ms, 300);
    ck_assert_uint_eq(a->health.rise, 4);
    ck_assert_uint_eq(a->health.fall, 5);
    ck_assert_int_eq(a->health.status_min, 200);
    ck_assert_int_eq(a->health.status_max, 204);
    ck_assert_uint_eq(a->down_ms, 10000);
    ck_assert_uint_eq(a->resolve_ms, 60000);
    ck_assert_uint_eq(a->max_fails, 3);
    ck_assert_uint_eq(a->passive,
                      FERRY_PASSIVE_CONNECT | FERRY_PASSIVE_5XX | FERRY_PASSIVE_RESPONSES);
    ck_assert_uint_eq(b->max_fails, 1);
    ck_assert_uint_eq(b->passive, FERRY_PASSIVE_CONNECT | FERRY_PASSIVE_5XX);
    ck_assert_uint_eq(c->max_fails, 1); /* the defaults */
    ck_assert_uint_eq(c->passive, FERRY_PASSIVE_CONNECT);
    ck_assert_int_eq(b->health.kind, FERRY_HEALTH_TCP);
    ck_assert_uint_eq(b->health.interval_ms, 500);
    ck_assert_uint_eq(b->health.timeout_ms, 500);
    ck_assert_uint_eq(b->down_ms, 0);
    ck_assert_uint_eq(b->resolve_ms, 0);
    ck_assert_int_eq(c->health.status_min, 204);
    ck_assert_int_eq(c->health.status_max, 204);
    ck_assert_uint_eq(c->down_ms, 2000); /* untouched defaults */
    ck_assert_uint_eq(c->resolve_ms, 30000);
    ck_assert_ptr_null(a->sticky_name);
    ck_assert_str_eq(b->sticky_name, "SRV");
    ck_assert_str_eq(c->sticky_name, "__Host-srv"); /* the later line wins */
    uint64_t key[2], none[2];
    ferry__sticky_key("s e c r e t", key);
    ferry__sticky_key(NULL, none);
    ck_assert(b->sticky_key[0] == key[0] && b->sticky_key[1] == key[1]);
    ck_assert(c->sticky_key[0] == none[0] && c->sticky_key[1] == none[1]);
    ferry_engine_free(e);
    ferry_reverse_config_free(cfg);
}
END_TEST

START_TEST(listener_settings) {
    ferry_reverse_config *cfg = parse_ok(
        "pool p\n"
        "    backend 127.0.0.1:1\n"
        "listen 127.0.0.1:0 mode http\n"
        "    connect-timeout 1s\n"
        "    idle-timeout 2m\n"
        "    header-timeout 3s\n"
        "    keepalive-timeout 4s\n"
        "    response-timeout 5s\n"
        "    body-timeout 1h\n"
        "    max-body 10M\n"
        "    accept-proxy trusted 10.0.0.0/8,::1\n"
        "    send-proxy v2\n"
        "    trusted-forwarders 192.168.0.0/16\n"
        "    x-forwarded off\n"
        "    forwarded on\n"
        "    via on\n"
        "    rewrite off\n"
        "    public-scheme https\n"
        "    hide-backend-headers on\n"
        "    splice off\n"
        "    access-log - format combined\n"
        "    route pool p\n"
        "listen 127.0.0.1:0 mode tcp\n"
        "    accept-proxy\n"
        "    send-proxy v1\n"
        "    access-log - format json\n"
        "    pool p\n"
        "listen 127.0.0.1:0 mode sni\n"
        "    header-timeout 250\n"
        "    route pool p\n");
    ferry_listener_opts *o = ferry_reverse_config_listener_opts(cfg, 0);
    ck_assert_ptr_nonnull(o);
    ck_assert_str_eq(o->address, "127.0.0.1:0");
    ck_assert_int_eq(o->protocol, FERRY_PROTO_HTTP);
    ck_assert_uint_eq(o->connect_timeout_ms, 1000);
    ck_assert_uint_eq(o->idle_timeout_ms, 120000);
    ck_assert_uint_eq(o->header_timeout_ms, 3000);
    ck_assert_uint_eq(o->keepalive_timeout_ms, 4000);
    ck_assert_uint_eq(o->response_timeout_ms, 5000);
    ck_assert_uint_eq(o->body_timeout_ms, 3600000);
    ck_assert(o->max_body_bytes == 10u << 20);
    ck_assert_int_eq(o->accept_proxy, 1);
    ck_assert_str_eq(o->proxy_trusted, "10.0.0.0/8,::1");
    ck_assert_int_eq(o->send_proxy, 2);
    ck_assert_str_eq(o->trusted_forwarders, "192.168.0.0/16");
    ck_assert_int_eq(o->forwarded_headers, 0);
    ck_assert_int_eq(o->forwarded_rfc7239, 1);
    ck_assert_int_eq(o->add_via, 1);
    ck_assert_int_eq(o->rewrite_responses, 0);
    ck_assert_str_eq(o->public_scheme, "https");
    ck_assert_int_eq(o->hide_backend_headers, 1);
    ck_assert_int_eq(o->splice, 0);
    ck_assert_int_eq(o->access_format, FERRY_ACCESS_COMBINED);
    ck_assert_ptr_null(o->access_log); /* opened by apply */
    ferry_listener_opts *t = ferry_reverse_config_listener_opts(cfg, 1);
    ck_assert_int_eq(t->protocol, FERRY_PROTO_TCP);
    ck_assert_int_eq(t->accept_proxy, 1);
    ck_assert_ptr_null(t->proxy_trusted); /* the engine's loopback default */
    ck_assert_int_eq(t->send_proxy, 1);
    ck_assert_int_eq(t->access_format, FERRY_ACCESS_JSON);
    ferry_listener_opts defaults;
    ferry_listener_opts_init(&defaults);
    ck_assert_uint_eq(t->connect_timeout_ms, defaults.connect_timeout_ms);
    ck_assert_int_eq(t->splice, defaults.splice);
    ferry_listener_opts *s = ferry_reverse_config_listener_opts(cfg, 2);
    ck_assert_int_eq(s->protocol, FERRY_PROTO_SNI);
    ck_assert_uint_eq(s->header_timeout_ms, 250);
    ck_assert_ptr_null(ferry_reverse_config_listener_opts(cfg, 3));

    ferry_engine *e = apply_ok(cfg);
    /* The engine took them as they are; one logger serves both listeners naming "-". */
    ck_assert_ptr_nonnull(o->access_log);
    ck_assert_ptr_eq(o->access_log, t->access_log);
    ck_assert_ptr_eq(t->direction, ferry_direction_reverse());
    ck_assert_ptr_eq(t->direction_data, ferry_reverse_config_pool(cfg, "p"));
    ck_assert_ptr_null(ferry_reverse_config_router(cfg, 1));
    ck_assert_ptr_nonnull(ferry_reverse_config_router(cfg, 2));
    ferry_listener *l = ferry_reverse_config_listener(cfg, 0);
    ck_assert_uint_eq(l->opts.keepalive_timeout_ms, 4000);
    ck_assert_int_eq(l->opts.send_proxy, 2);
    ck_assert_uint_eq(l->nforwarders, 1);
    ck_assert_uint_eq(l->ntrusted, 2);
    ck_assert_str_eq(l->opts.public_scheme, "https");
    ferry_engine_free(e);
    ferry_reverse_config_free(cfg);
}
END_TEST

START_TEST(global_settings_reach_the_engine_opts) {
    char path[] = "/tmp/ferry-rcfg-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(path));
    char log[sizeof path + 16], text[512];
    snprintf(log, sizeof log, "%s/error.log", path);
    snprintf(text, sizeof text,
             "workers 3\ndrain 2s\nmax-connections 500\nerror-log \"%s\"\n"
             "pool p\n    backend 127.0.0.1:1\nlisten 127.0.0.1:0 mode tcp\n    pool p\n", log);
    ferry_reverse_config *cfg = parse_ok(text);
    ferry_engine_opts eo;
    ferry_engine_opts_init(&eo);
    char err[ERR_SIZE] = "";
    ck_assert_int_eq(ferry_reverse_config_engine_opts(cfg, &eo, err, sizeof err), FERRY_OK);
    ck_assert_uint_eq(eo.workers, 3);
    ck_assert_uint_eq(eo.stop_drain_ms, 2000);
    ck_assert_uint_eq(eo.max_connections, 500);
    ck_assert_ptr_eq(eo.log, ferry_logger_log_fn);
    ck_assert_ptr_nonnull(eo.log_user_data);
    void *first = eo.log_user_data;
    /* Asked again: the same log, not a second one. */
    ck_assert_int_eq(ferry_reverse_config_engine_opts(cfg, &eo, err, sizeof err), FERRY_OK);
    ck_assert_ptr_eq(eo.log_user_data, first);
    ferry_logger_log_fn(eo.log_user_data, FERRY_LOG_WARN, "hello");
    ferry_reverse_config_free(cfg); /* flushes the log */
    FILE *f = fopen(log, "r");
    ck_assert_ptr_nonnull(f);
    char line[256] = "";
    ck_assert_ptr_nonnull(fgets(line, sizeof line, f));
    ck_assert_msg(strstr(line, "hello"), "%s", line);
    fclose(f);
    unlink(log);
    rmdir(path);

    /* Nothing given: the caller's values stay. */
    cfg = parse_ok("pool p\n    backend 127.0.0.1:1\nlisten 127.0.0.1:0 mode tcp\n    pool p\n");
    ferry_engine_opts_init(&eo);
    eo.workers = 7;
    ck_assert_int_eq(ferry_reverse_config_engine_opts(cfg, &eo, err, sizeof err), FERRY_OK);
    ferry_engine_opts defaults;
    ferry_engine_opts_init(&defaults);
    ck_assert_uint_eq(eo.workers, 7);
    ck_assert_uint_eq(eo.stop_drain_ms, defaults.stop_drain_ms);
    ck_assert_ptr_null(eo.log);
    ferry_reverse_config_free(cfg);
}
END_TEST

START_TEST(sni_listeners_route_by_server_name) {
    ferry_reverse_config *cfg = parse_ok(
        "pool a\n    backend 127.0.0.1:4001\n"
        "pool b\n    backend 127.0.0.1:4002\n"
        "pool fallback\n    backend 127.0.0.1:4003\n"
        "listen 127.0.0.1:0 mode sni\n"
        "    route host a.example.com pool a\n"
        "    route host *.b.example.com pool b\n"
        "    route pool fallback\n"
        "listen 127.0.0.1:0 mode sni\n"
        "    route host only.example.com pool a\n");
    ferry_engine *e = apply_ok(cfg);
    ferry_router *r = ferry_reverse_config_router(cfg, 0);
    ck_assert_int_eq(sni_route(r, "a.example.com"), 4001);
    ck_assert_int_eq(sni_route(r, "x.b.example.com"), 4002);
    ck_assert_int_eq(sni_route(r, "other.test"), 4003);
    ck_assert_int_eq(sni_route(r, ""), 4003); /* no name: the default route */
    r = ferry_reverse_config_router(cfg, 1);
    ck_assert_int_eq(sni_route(r, "only.example.com"), 4001);
    ck_assert_int_eq(sni_route(r, ""), 0);
    ferry_engine_free(e);
    ferry_reverse_config_free(cfg);
}
END_TEST

/* A started engine relays through a tcp listener built from a file. */
START_TEST(a_tcp_listener_relays) {
    echo_server echo;
    ck_assert_int_eq(echo_start(&echo), 0);
    char text[256];
    snprintf(text, sizeof text,
             "listen 127.0.0.1:0 mode tcp\n    pool echo\npool echo\n    backend 127.0.0.1:%u\n",
             echo.port);
    ferry_reverse_config *cfg = parse_ok(text);
    ferry_engine *e = apply_ok(cfg);
    ck_assert_int_eq(ferry_engine_start(e), FERRY_OK);
    int fd = connect_loopback(ferry_listener_port(ferry_reverse_config_listener(cfg, 0)));
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(send(fd, "ping", 4, 0), 4);
    char buf[8] = "";
    size_t got = 0;
    while (got < 4) {
        ssize_t n = recv(fd, buf + got, sizeof buf - 1 - got, 0);
        ck_assert_int_gt(n, 0);
        got += (size_t)n;
    }
    ck_assert_str_eq(buf, "ping");
    close(fd);
    ferry_engine_free(e);
    ferry_reverse_config_free(cfg);
    echo_stop(&echo);
}
END_TEST

/* ---- the line syntax (the lexer shared with forward-config) ---- */

START_TEST(line_syntax) {
    ferry_reverse_config *cfg = parse_ok(
        "\xef\xbb\xbf# a byte order mark, then a comment\r\n"
        "POOL web   # keywords in any case, comments after a directive\r\n"
        "\tBackend 127.0.0.1:1001 WEIGHT=2\r\n" /* a tab indents as well as spaces */
        "\r\n"
        "        \r\n"
        "   # an indented comment does not need a block\n"
        "Listen 127.0.0.1:0 Mode HTTP\n"
        "  route host www.example.com path \"/with space\" pool web set-header \"X-Note: a # b\"\n"
        "  route path /q\"uo\"ted pool web set-header \"X-Esc: \\\"q\\\" \\\\\"\n"
        "  route path /a pool web#a comment ends the word\n"
        "      route path /b pool web\n" /* any depth of indentation */
        "  route exact /c pool web");    /* no newline at the end */
    ferry_engine *e = apply_ok(cfg);
    ferry_router *r = ferry_reverse_config_router(cfg, 0);
    ck_assert_uint_eq(ferry_router_size(r), 5);
    ferry_txn t;
    ck_assert_str_eq(route_txn(r, &t, "GET", "/with%20space", "www.example.com"), "404");
    ferry__txn_free(&t);
    ck_assert_str_eq(route_txn(r, &t, "GET", "/with space", "www.example.com"), "web /with space");
    ferry_view v;
    ck_assert_int_eq(ferry_txn_header_get(&t, FERRY_TXN_REQUEST, "x-note", &v), FERRY_OK);
    ck_assert(v.len == 5 && memcmp(v.ptr, "a # b", 5) == 0);
    ferry__txn_free(&t);
    ck_assert_str_eq(route_txn(r, &t, "GET", "/quoted/x", "any"), "web /quoted/x");
    ck_assert_int_eq(ferry_txn_header_get(&t, FERRY_TXN_REQUEST, "x-esc", &v), FERRY_OK);
    ck_assert(v.len == 5 && memcmp(v.ptr, "\"q\" \\", 5) == 0);
    ferry__txn_free(&t);
    ck_assert_str_eq(route_of(r, "GET", "/a/x", "any"), "web /a/x");
    ck_assert_str_eq(route_of(r, "GET", "/b", "any"), "web /b");
    ck_assert_str_eq(route_of(r, "GET", "/c", "any"), "web /c");
    ck_assert_str_eq(route_of(r, "GET", "/c/d", "any"), "404");
    ck_assert_uint_eq(ferry_backend_weight(ferry_reverse_config_pool(cfg, "web")->members[0]), 2);
    ferry_engine_free(e);
    ferry_reverse_config_free(cfg);
}
END_TEST

/* ---- errors ---- */

#define P "pool p\n    backend 127.0.0.1:1\n"       /* lines 1-2 */
#define L "listen 127.0.0.1:0\n    route pool p\n"  /* two lines */

START_TEST(every_error_names_its_line) {
    static const struct {
        const char *text, *message;
    } cases[] = {
        /* the lexer */
        {P "pool \"q\n", CONF ":3: unterminated quote"},
        {P "pool \"a\\b\"\n", CONF ":3: in quotes, a backslash must be followed by \" or \\"},
        /* structure */
        {P "lisen 1.2.3.4:80\n", CONF ":3: unknown directive 'lisen'"},
        {P "10.0.0.1:80\n", CONF ":3: expected a directive such as 'pool', 'listen' or 'route'"},
        {"pool p {\n", CONF ":1: blocks are written by indentation, not braces: indent the lines "
                       "under 'pool NAME' or 'listen ADDR:PORT'"},
        {P "}\n", CONF ":3: blocks are written by indentation, not braces: indent the lines "
                  "under 'pool NAME' or 'listen ADDR:PORT'"},
        {"  workers 2\n", CONF ":1: indented line outside a block (only the lines under "
                          "'pool NAME' or 'listen ADDR:PORT' are indented)"},
        {"backend 127.0.0.1:1\n", CONF ":1: 'backend' belongs in a pool block: indent it under a "
                                  "'pool NAME' line"},
        {P "route pool p\n", CONF ":3: 'route' belongs in a listen block: indent it under a "
                             "'listen ADDR:PORT' line"},
        {P "    workers 2\n",
         CONF ":3: 'workers' is a global setting: write it without indentation"},
        {P "    pool q\n", CONF ":3: 'pool' starts a block: write it without indentation"},
        {P "    listen 127.0.0.1:0\n",
         CONF ":3: 'listen' starts a block: write it without indentation"},
        {P "    route pool p\n", CONF ":3: 'route' belongs in a listen block, not in pool 'p'"},
        {P L "    backend 127.0.0.1:2\n", CONF ":5: 'backend' belongs in a pool block, not in a "
             "listen block (declare the backends in a pool and name the pool here)"},
        {P L "workers 2\n    route pool p\n", CONF ":6: indented line outside a block (only the "
             "lines under 'pool NAME' or 'listen ADDR:PORT' are indented)"},
        /* globals */
        {"workers 0\n", CONF ":1: workers: expected a number from 1 to 1024"},
        {"workers 1025\n", CONF ":1: workers: expected a number from 1 to 1024"},
        {"workers\n", CONF ":1: workers: expected a number from 1 to 1024"},
        {"max-connections x\n", CONF ":1: max-connections: expected a number from 1 to 10000000"},
        {"drain 5 s\n", CONF ":1: drain: expected a duration (e.g. 5s)"},
        {"drain 5sec\n", CONF ":1: drain: '5sec' is not a duration (e.g. 500ms, 30s, 5m, 1h; a "
                         "bare number is milliseconds)"},
        {"drain 5000000000\n", CONF ":1: drain: '5000000000' is not a duration (e.g. 500ms, 30s, "
                               "5m, 1h; a bare number is milliseconds)"},
        {"drain 2000h\n", CONF ":1: drain: '2000h' is not a duration (e.g. 500ms, 30s, 5m, 1h; a "
                          "bare number is milliseconds)"},
        {"error-log \"\"\n", CONF ":1: error-log: empty file name"},
        /* pools */
        {"pool\n", CONF ":1: pool: expected NAME"},
        {"pool a,b\n", CONF ":1: pool: name 'a,b' may hold letters, digits, '-', '_' and '.' only"},
        {P "pool p\n", CONF ":3: pool 'p' is already defined at line 1"},
        {"pool p\n    backend 127.0.0.1\n", CONF ":2: backend: '127.0.0.1' is not HOST:PORT (e.g. "
         "10.0.0.5:8080, app1.internal:8080, [2001:db8::5]:8080)"},
        {"pool p\n    backend 127.0.0.1:0\n", CONF ":2: backend: '127.0.0.1:0' is not HOST:PORT "
         "(e.g. 10.0.0.5:8080, app1.internal:8080, [2001:db8::5]:8080)"},
        {"pool p\n    backend 127.0.0.1:1 weight=0\n", CONF ":2: backend: expected weight=N with N "
         "from 1 to 1000 after the address"},
        {"pool p\n    backend 127.0.0.1:1 2\n", CONF ":2: backend: expected weight=N with N from 1 "
         "to 1000 after the address"},
        {P "    balance fastest\n", CONF ":3: balance: expected roundrobin, leastconn, random2, "
           "hash-client, hash-uri, hash-header NAME or hash-cookie NAME"},
        {P "    balance hash-header\n", CONF ":3: balance: hash-header needs a header name (e.g. "
           "balance hash-header X-User)"},
        {P "    balance hash-cookie\n", CONF ":3: balance: hash-cookie needs a cookie name (e.g. "
           "balance hash-cookie session)"},
        {P "    balance leastconn x\n", CONF ":3: balance: leastconn takes no name"},
        {P "    health-check udp\n", CONF ":3: health-check: expected tcp or http PATH, then "
           "[interval=D] [timeout=D] [rise=N] [fall=N]"},
        {P "    health-check http\n", CONF ":3: health-check: http needs a path starting with '/', "
           "without spaces (e.g. health-check http /healthz)"},
        {P "    health-check http \"/a b\"\n", CONF ":3: health-check: http needs a path starting "
           "with '/', without spaces (e.g. health-check http /healthz)"},
        {P "    health-check tcp every=2s\n", CONF ":3: health-check: unknown option 'every=2s' "
           "(expected interval=, timeout=, rise=, fall=)"},
        {P "    health-check tcp status=200\n", CONF ":3: health-check: unknown option "
           "'status=200' (expected interval=, timeout=, rise=, fall=)"},
        {P "    health-check http / fast\n", CONF ":3: health-check: unknown option 'fast' "
           "(expected interval=, timeout=, rise=, fall=, status=, host=)"},
        {P "    health-check tcp interval=0\n", CONF ":3: health-check: bad value '0' for "
           "interval (a duration such as 2s or 500ms)"},
        {P "    health-check tcp timeout=x\n", CONF ":3: health-check: bad value 'x' for "
           "timeout (a duration such as 2s or 500ms)"},
        {P "    health-check tcp rise=1001\n", CONF ":3: health-check: bad value '1001' for rise "
           "(a count from 1 to 1000)"},
        {P "    health-check tcp fall=0\n", CONF ":3: health-check: bad value '0' for fall (a "
           "count from 1 to 1000)"},
        {P "    health-check http / status=300-200\n", CONF ":3: health-check: bad value "
           "'300-200' for status (a status or range from 100 to 599, e.g. 200-399)"},
        {P "    health-check http / status=99\n", CONF ":3: health-check: bad value '99' for "
           "status (a status or range from 100 to 599, e.g. 200-399)"},
        {P "    health-check http / status=123456789-600\n", CONF ":3: health-check: bad value "
           "'123456789-600' for status (a status or range from 100 to 599, e.g. 200-399)"},
        {P "    health-check http / host=\n", CONF ":3: health-check: bad value '' for host (a "
           "host name)"},
        {P "    down-time soon\n", CONF ":3: down-time: 'soon' is not a duration (e.g. 500ms, 30s, "
           "5m, 1h; a bare number is milliseconds)"},
        {P "    passive-check\n", CONF ":3: passive-check: expected fails=N, responses and/or "
           "5xx"},
        {P "    passive-check fails=0\n", CONF ":3: passive-check: fails= takes a count from 1 "
           "to 1000, not '0'"},
        {P "    passive-check 4xx\n", CONF ":3: passive-check: unknown option '4xx' (expected "
           "fails=N, responses and/or 5xx)"},
        {P "    sticky-cookie\n", CONF ":3: sticky-cookie: expected a cookie NAME, then "
           "optionally secret SECRET"},
        {P "    sticky-cookie SRV key\n", CONF ":3: sticky-cookie: expected a cookie NAME, then "
           "optionally secret SECRET"},
        {P "    sticky-cookie SRV salt x\n", CONF ":3: sticky-cookie: expected a cookie NAME, "
           "then optionally secret SECRET"},
        {P "    sticky-cookie SRV secret \"\"\n", CONF ":3: sticky-cookie: expected a cookie "
           "NAME, then optionally secret SECRET"},
        {P "    resolve-interval -1\n", CONF ":3: resolve-interval: '-1' is not a duration (e.g. "
           "500ms, 30s, 5m, 1h; a bare number is milliseconds)"},
        /* listeners */
        {P "listen localhost:80\n", CONF ":3: listen: 'localhost:80' is not IP:PORT (e.g. "
           "127.0.0.1:8080, 0.0.0.0:80, [::]:443)"},
        {P "listen 127.0.0.1:80 mode udp\n", CONF ":3: listen: expected ADDR:PORT [mode "
           "http|tcp|sni]"},
        {P "listen 127.0.0.1:80 http\n", CONF ":3: listen: expected ADDR:PORT [mode "
           "http|tcp|sni]"},
        {P "listen 127.0.0.1:8080\n    route pool p\nlisten 127.0.0.1:8080 mode tcp\n",
         CONF ":5: listen: 127.0.0.1:8080 is already used at line 3"},
        {P "listen [::1]:8080\n    route pool p\nlisten [0:0::1]:8080\n",
         CONF ":5: listen: [::1]:8080 is already used at line 3"},
        {P "listen 127.0.0.1:0 mode tcp\n    route pool p\n", CONF ":4: route: a tcp listener "
           "sends everything to one pool: write 'pool NAME' instead"},
        {P "listen 127.0.0.1:0\n    pool p\n", CONF ":4: pool: http listeners choose pools in "
           "their routes: write 'route pool NAME'"},
        {P "listen 127.0.0.1:0 mode sni\n    pool p\n", CONF ":4: pool: sni listeners choose "
           "pools in their routes: write 'route pool NAME'"},
        {P "listen 127.0.0.1:0 mode tcp\n    max-body 1M\n", CONF ":4: 'max-body' applies to "
           "http listeners only (this one is mode tcp)"},
        {P "listen 127.0.0.1:0 mode sni\n    via on\n", CONF ":4: 'via' applies to http "
           "listeners only (this one is mode sni)"},
        {P L "    connect-timeout 0\n", CONF ":5: connect-timeout: '0' is not a duration (e.g. "
             "500ms, 30s, 5m, 1h; a bare number is milliseconds)"},
        {P L "    max-body 1T\n", CONF ":5: max-body: '1T' is not a size (e.g. 512k, 10M, 1G; a "
             "bare number is bytes, 0 is no limit)"},
        {P L "    max-body 99999999999999999999\n", CONF ":5: max-body: '99999999999999999999' "
             "is not a size (e.g. 512k, 10M, 1G; a bare number is bytes, 0 is no limit)"},
        {P L "    max-body 17179869184G\n", CONF ":5: max-body: '17179869184G' is not a size "
             "(e.g. 512k, 10M, 1G; a bare number is bytes, 0 is no limit)"},
        {P L "    accept-proxy 10.0.0.0/8\n", CONF ":5: accept-proxy: expected nothing, or "
             "trusted CIDR[,CIDR...]"},
        {P L "    accept-proxy trusted 10.0.0.0/33\n", CONF ":5: accept-proxy: '10.0.0.0/33' is "
             "not an address or CIDR (e.g. 10.0.0.0/8)"},
        {P L "    trusted-forwarders 10.0.0.1,,::1\n", CONF ":5: trusted-forwarders: empty entry "
             "in the list"},
        {P L "    send-proxy v3\n", CONF ":5: send-proxy: expected v1 or v2"},
        {P L "    via yes\n", CONF ":5: via: expected on or off"},
        {P L "    public-scheme ftp\n", CONF ":5: public-scheme: expected http or https"},
        {P L "    access-log \"\"\n", CONF ":5: access-log: empty file name"},
        {P L "    access-log - json\n", CONF ":5: access-log: expected PATH|- [format "
             "text|json|common|combined]"},
        {P L "    access-log - format xml\n", CONF ":5: access-log: format 'xml' is not text, "
             "json, common or combined"},
        /* routes */
        {P "listen 127.0.0.1:0\n    route\n", CONF ":4: route: expected options and values, at "
           "least 'pool NAME' (e.g. route host www.example.com pool app)"},
        {P "listen 127.0.0.1:0\n    route host a\n", CONF ":4: route: missing 'pool NAME'"},
        {P "listen 127.0.0.1:0\n    route pool p host\n", CONF ":4: route: 'host' needs a value"},
        {P "listen 127.0.0.1:0\n    route pool p prefix /a\n", CONF ":4: route: unknown option "
           "'prefix' (expected host, path, exact, regex, methods, pool, strip-prefix, add-prefix, "
           "backend-host, set-header, remove-header, connect-timeout, response-timeout, "
           "max-body, cookie-domain, public-cookie-domain, substitute, substitute-icase)"},
        {P "listen 127.0.0.1:0\n    route pool p pool p\n", CONF ":4: route: 'pool' given twice"},
        {P "listen 127.0.0.1:0\n    route path /a exact /b pool p\n", CONF ":4: route: give one "
           "of path, exact and regex"},
        {P "listen 127.0.0.1:0\n    route pool p backend-host yes\n", CONF ":4: route: "
           "backend-host: expected on or off"},
        {P "listen 127.0.0.1:0\n    route pool p response-timeout 0\n", CONF ":4: route: "
           "response-timeout: '0' is not a duration (e.g. 500ms, 30s, 5m, 1h; a bare number is "
           "milliseconds)"},
        {P "listen 127.0.0.1:0\n    route pool p max-body 0\n", CONF ":4: route: max-body: '0' "
           "is not a size of at least 1 byte (e.g. 512k, 10M; leave it out to use the "
           "listener's)"},
        {P "listen 127.0.0.1:0\n    route pool p public-cookie-domain .a\n", CONF ":4: route: "
           "public-cookie-domain needs cookie-domain (the backend's domain it replaces)"},
        {P "listen 127.0.0.1:0 mode sni\n    route host a path /x pool p\n", CONF ":4: route: sni "
           "listeners route by server name only ('path' needs an http listener)"},
        /* after the last line: references and completeness, the first in the file */
        {"pool p\n", CONF ":1: pool 'p' has no backend (add 'backend ADDR:PORT' lines under it)"},
        {P "listen 127.0.0.1:0\n", CONF ":3: listen 127.0.0.1:0: no route (add indented "
           "'route ... pool NAME' lines)"},
        {P "listen 127.0.0.1:0 mode tcp\n", CONF ":3: listen 127.0.0.1:0: a tcp listener needs "
           "an indented 'pool NAME' line"},
        {P "listen 127.0.0.1:0\n    route pool q\n", CONF ":4: route: no pool named 'q'"},
        {P "listen 127.0.0.1:0 mode tcp\n    pool q\n", CONF ":4: pool: no pool named 'q'"},
        {"listen 127.0.0.1:0\n    route pool q\npool e\n", CONF ":2: route: no pool named 'q'"},
        {P "    balance hash-uri\nlisten 127.0.0.1:0 mode tcp\n    pool p\n", CONF ":5: pool: "
           "pool 'p' balances by hash-uri, which needs HTTP requests; this listener is mode tcp"},
        {P "    balance hash-cookie s\nlisten 127.0.0.1:0 mode sni\n    route pool p\n",
         CONF ":5: route: pool 'p' balances by hash-cookie, which needs HTTP requests; this "
         "listener is mode sni"},
        {P, CONF ": no listen block: nothing would accept connections"},
        {"", CONF ": no listen block: nothing would accept connections"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *text = cases[i].text;
        size_t len = strlen(text);
        ferry_reverse_config *cfg = NULL;
        char err[ERR_SIZE] = "";
        ferry_err rc = ferry_reverse_config_parse(text, len, CONF, NULL, &cfg, err, sizeof err);
        ck_assert_msg(rc == FERRY_ECONFIG, "case %zu accepted: %s", i, text);
        ck_assert_ptr_null(cfg);
        ck_assert_msg(strcmp(err, cases[i].message) == 0, "case %zu:\n got  %s\n want %s", i, err,
                      cases[i].message);
    }
    ferry_reverse_config *cfg = NULL;
    char err[ERR_SIZE] = "";
    ck_assert_int_eq(ferry_reverse_config_parse("pool p\n\0x\n", 10, CONF, NULL, &cfg, err,
                                                sizeof err), FERRY_ECONFIG);
    ck_assert_str_eq(err, CONF ":2: NUL byte in line");
}
END_TEST

START_TEST(long_lines_and_word_limits) {
    /* 4096 bytes fit; 4097 do not. */
    char text[8192];
    int n = snprintf(text, sizeof text, P "listen 127.0.0.1:0\n    route pool p host ");
    size_t line_start = (size_t)n - strlen("    route pool p host ");
    while ((size_t)n - line_start < 4096) text[n++] = 'a';
    text[n++] = '\n';
    text[n] = '\0';
    ferry_reverse_config *cfg = NULL;
    char err[ERR_SIZE] = "";
    ck_assert_int_eq(parse(text, &cfg, err), FERRY_OK);
    ferry_reverse_config_free(cfg);
    text[n - 1] = 'a';
    text[n] = '\n';
    text[n + 1] = '\0';
    expect_error(text, CONF ":4: line longer than 4096 bytes");
    /* 128 words reach the directive; the 129th does not. */
    n = snprintf(text, sizeof text, P "listen 127.0.0.1:0\n    route pool p");
    for (int k = 0; k < 62; k++)
        n += snprintf(text + n, sizeof text - (size_t)n, " set-header \"X-%d: v\"", k);
    snprintf(text + n, sizeof text - (size_t)n, "\n");
    cfg = parse_ok(text); /* 127 words */
    ferry_reverse_config_free(cfg);
    snprintf(text + n, sizeof text - (size_t)n, " x\n");
    ck_assert_int_eq(parse(text, &cfg, err), FERRY_ECONFIG);
    ck_assert_msg(strstr(err, CONF ":4: route: unknown option 'x'"), "%s", err);
    snprintf(text + n, sizeof text - (size_t)n, " x y\n");
    expect_error(text, CONF ":4: too many words on one line");
}
END_TEST

START_TEST(check_errors) {
    static const struct {
        const char *text, *prefix;
    } cases[] = { /* the last is found by ferry_reverse_config_engine_opts() when running */
        {P "listen 127.0.0.1:0\n    route regex ([ pool p\n",
         CONF ":4: route: bad regular expression '([': "},
        {P "listen 127.0.0.1:0\n    route host *foo pool p\n",
         CONF ":4: route: bad host pattern '*foo'"},
        {P "listen 127.0.0.1:0\n    route path api pool p\n",
         CONF ":4: route: path 'api' must start with '/'"},
        {P "listen 127.0.0.1:0\n    route methods GET,P@ST pool p\n",
         CONF ":4: route: bad method 'P@ST'"},
        {P "listen 127.0.0.1:0\n    route set-header NoColon pool p\n",
         CONF ":4: route: bad header line 'NoColon' (Name: value)"},
        {P "listen 127.0.0.1:0\n    route remove-header X:Y pool p\n",
         CONF ":4: route: bad header name 'X:Y'"},
        {P "listen 127.0.0.1:0\n    route strip-prefix api pool p\n",
         CONF ":4: route: prefix 'api' must start with '/'"},
        {P "listen 127.0.0.1:0\n    route substitute no-arrow pool p\n",
         CONF ":4: route: bad substitution 'no-arrow'"},
        {"pool p\n    backend 127.0.0.1:1\n    balance hash-header \"X User\"\n"
         "listen 127.0.0.1:0\n    route pool p\n",
         CONF ":3: balance: 'X User' is not a valid header name"},
        {"pool p\n    backend 127.0.0.1:1\n    balance hash-cookie a=b\n"
         "listen 127.0.0.1:0\n    route pool p\n",
         CONF ":3: balance: 'a=b' is not a valid cookie name"},
        {"pool p\n    backend 127.0.0.1:1\n    sticky-cookie a/b\n"
         "listen 127.0.0.1:0\n    route pool p\n",
         CONF ":3: sticky-cookie: 'a/b' is not a valid cookie name (1-256 letters, digits and "
         "!#$%&'*+-.^_`|~)"},
        {"pool p\n    backend 127.0.0.1:1\n    backend no-such-host.invalid:80\n"
         "listen 127.0.0.1:0\n    route pool p\n",
         CONF ":3: backend: cannot resolve 'no-such-host.invalid:80'"},
        {P "listen 127.0.0.1:0\n    route pool p\n    access-log /nonexistent-dir/a.log\n",
         CONF ":5: access-log: cannot write '/nonexistent-dir/a.log': No such file or directory"},
        {P "listen 127.0.0.1:0\n    route pool p\n    access-log /tmp\n",
         CONF ":5: access-log: cannot write '/tmp': Is a directory"},
        {"error-log /nonexistent-dir/e.log\n" P "listen 127.0.0.1:0\n    route pool p\n",
         CONF ":1: error-log: cannot write '/nonexistent-dir/e.log': No such file or directory"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ferry_reverse_config *cfg = parse_ok(cases[i].text);
        char err[ERR_SIZE] = "";
        ck_assert_int_eq(ferry_reverse_config_check(cfg, err, sizeof err), FERRY_ECONFIG);
        ck_assert_msg(strncmp(err, cases[i].prefix, strlen(cases[i].prefix)) == 0,
                      "case %zu:\n got  %s\n want %s...", i, err, cases[i].prefix);
        if (i == sizeof cases / sizeof cases[0] - 1) {
            ferry_reverse_config_free(cfg);
            continue;
        }
        /* apply finds the same, at the same line */
        ferry_engine *e = NULL;
        ck_assert_int_eq(ferry_engine_new(NULL, &e), FERRY_OK);
        char err2[ERR_SIZE] = "";
        ferry_err rc = ferry_reverse_config_apply(cfg, e, err2, sizeof err2);
        ck_assert_int_ne(rc, FERRY_OK);
        ck_assert_msg(strncmp(err2, CONF ":", strlen(CONF ":")) == 0 &&
                      strncmp(err2, err, strlen(CONF ":4:")) == 0, "case %zu: %s", i, err2);
        ferry_engine_free(e);
        ferry_reverse_config_free(cfg);
    }
}
END_TEST

START_TEST(check_binds_nothing_and_creates_no_file) {
    uint16_t port;
    int busy = listen_loopback(&port);
    ck_assert_int_ge(busy, 0);
    char dir[] = "/tmp/ferry-rcfg-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char text[512], log[64];
    snprintf(log, sizeof log, "%s/access.log", dir);
    snprintf(text, sizeof text,
             "error-log %s/error.log\n" P "listen 127.0.0.1:%u\n    route pool p\n"
             "    access-log %s format json\n", dir, port, log);
    ferry_reverse_config *cfg = parse_ok(text);
    char err[ERR_SIZE] = "";
    int fds = count_open_fds();
    ck_assert_msg(ferry_reverse_config_check(cfg, err, sizeof err) == FERRY_OK, "%s", err);
    ck_assert_int_eq(count_open_fds(), fds);
    ck_assert_ptr_null(ferry_reverse_config_listener(cfg, 0));
    ck_assert_ptr_null(ferry_reverse_config_pool(cfg, "p"));
    struct stat st;
    ck_assert_int_ne(stat(log, &st), 0);
    /* The same file applied: the port in use is reported with the line of its listen. */
    ferry_engine *e = NULL;
    ck_assert_int_eq(ferry_engine_new(NULL, &e), FERRY_OK);
    ck_assert_int_eq(ferry_reverse_config_apply(cfg, e, err, sizeof err), FERRY_EADDRINUSE);
    char want[128];
    snprintf(want, sizeof want, CONF ":4: listen 127.0.0.1:%u: address already in use", port);
    ck_assert_str_eq(err, want);
    ck_assert_int_eq(stat(log, &st), 0); /* apply did open the log, before binding */
    ferry_engine_free(e);
    ferry_reverse_config_free(cfg);
    close(busy);
    unlink(log);
    rmdir(dir);
}
END_TEST

START_TEST(apply_once_on_an_engine_not_started) {
    ferry_reverse_config *cfg = parse_ok(P L);
    ferry_engine *e = apply_ok(cfg);
    char err[ERR_SIZE] = "";
    ck_assert_int_eq(ferry_reverse_config_apply(cfg, e, err, sizeof err), FERRY_ESTATE);
    ck_assert_str_eq(err, CONF ": the configuration is applied already");
    ferry_engine_free(e);
    ferry_reverse_config_free(cfg);

    cfg = parse_ok(P L);
    ck_assert_int_eq(ferry_engine_new(NULL, &e), FERRY_OK);
    ck_assert_int_eq(ferry_engine_start(e), FERRY_OK);
    ck_assert_int_eq(ferry_reverse_config_apply(cfg, e, err, sizeof err), FERRY_ESTATE);
    ck_assert_str_eq(err, CONF ": the engine has already started");
    ferry_engine_free(e);
    ferry_reverse_config_free(cfg);
}
END_TEST

START_TEST(load_reads_a_file) {
    char path[] = "/tmp/ferry-rcfg-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    static const char bad[] = P L "    route path /x pool nope\n";
    ck_assert_int_eq(write(fd, bad, sizeof bad - 1), (ssize_t)(sizeof bad - 1));
    close(fd);
    ferry_reverse_config *cfg = (ferry_reverse_config *)1;
    char err[ERR_SIZE] = "", want[256];
    ck_assert_int_eq(ferry_reverse_config_load(path, NULL, &cfg, err, sizeof err), FERRY_ECONFIG);
    ck_assert_ptr_null(cfg);
    snprintf(want, sizeof want, "%s:5: route: no pool named 'nope'", path);
    ck_assert_str_eq(err, want);
    static const char good[] = P L;
    fd = open(path, O_WRONLY | O_TRUNC);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, good, sizeof good - 1), (ssize_t)(sizeof good - 1));
    close(fd);
    ck_assert_int_eq(ferry_reverse_config_load(path, NULL, &cfg, err, sizeof err), FERRY_OK);
    ck_assert_uint_eq(ferry_reverse_config_listener_count(cfg), 1);
    ferry_reverse_config_free(cfg);
    unlink(path);
    ck_assert_int_eq(ferry_reverse_config_load(path, NULL, &cfg, err, sizeof err), FERRY_ECONFIG);
    snprintf(want, sizeof want, "%s: cannot open: No such file or directory", path);
    ck_assert_str_eq(err, want);
}
END_TEST

START_TEST(bad_arguments) {
    ferry_reverse_config *cfg = NULL;
    char err[ERR_SIZE] = "";
    ck_assert_int_eq(ferry_reverse_config_load(NULL, NULL, &cfg, err, sizeof err), FERRY_EINVAL);
    ck_assert_str_eq(err, "invalid argument");
    ck_assert_int_eq(ferry_reverse_config_load("x", NULL, NULL, NULL, 0), FERRY_EINVAL);
    ck_assert_int_eq(ferry_reverse_config_parse(NULL, 1, CONF, NULL, &cfg, NULL, 0), FERRY_EINVAL);
    ck_assert_int_eq(ferry_reverse_config_parse("", 0, NULL, NULL, &cfg, NULL, 0), FERRY_EINVAL);
    /* NULL text of length 0 is an empty file. */
    ck_assert_int_eq(ferry_reverse_config_parse(NULL, 0, CONF, NULL, &cfg, err, sizeof err),
                     FERRY_ECONFIG);
    ck_assert_str_eq(err, CONF ": no listen block: nothing would accept connections");
    /* A message that does not fit is cut, not overrun. */
    char small[15];
    memset(small, 'x', sizeof small);
    ck_assert_int_eq(ferry_reverse_config_parse("lisen\n", 6, CONF, NULL, &cfg, small,
                                                sizeof small), FERRY_ECONFIG);
    ck_assert_str_eq(small, CONF ":1: un");
    ck_assert_int_eq(ferry_reverse_config_parse("lisen\n", 6, CONF, NULL, &cfg, small, 0),
                     FERRY_ECONFIG);
    ck_assert_int_eq(ferry_reverse_config_check(NULL, NULL, 0), FERRY_EINVAL);
    ck_assert_int_eq(ferry_reverse_config_apply(NULL, NULL, NULL, 0), FERRY_EINVAL);
    ck_assert_int_eq(ferry_reverse_config_engine_opts(NULL, NULL, NULL, 0), FERRY_EINVAL);
    ck_assert_uint_eq(ferry_reverse_config_listener_count(NULL), 0);
    ck_assert_ptr_null(ferry_reverse_config_listener_opts(NULL, 0));
    ck_assert_ptr_null(ferry_reverse_config_listener(NULL, 0));
    ck_assert_ptr_null(ferry_reverse_config_router(NULL, 0));
    ck_assert_ptr_null(ferry_reverse_config_pool(NULL, "p"));
    ferry_reverse_config_free(NULL);
}
END_TEST

/* ---- memory ---- */

static atomic_long allocations_left;

static void *failing_malloc(void *ud, size_t n) {
    (void)ud;
    return atomic_fetch_sub(&allocations_left, 1) > 0 ? malloc(n) : NULL;
}

static void *failing_realloc(void *ud, void *p, size_t n) {
    (void)ud;
    return atomic_fetch_sub(&allocations_left, 1) > 0 ? realloc(p, n) : NULL;
}

static void failing_free(void *ud, void *p) {
    (void)ud;
    free(p);
}

/* Every allocation in turn fails: reading, checking and applying report FERRY_ENOMEM
 * (or an error of their own) and leak nothing (the sanitized build checks). */
START_TEST(every_allocation_may_fail) {
    const ferry_allocator failing = {failing_malloc, failing_realloc, failing_free, NULL};
    static const char text[] =
        "pool a\n    backend 127.0.0.1:1\n    health-check http /h host=x\n"
        "pool b\n    backend 127.0.0.1:2\n    balance hash-header X-U\n"
        "listen 127.0.0.1:0\n    route host a path /a strip-prefix /a set-header \"X: y\" pool a\n"
        "    route pool b\n    access-log -\n"
        "listen 127.0.0.1:0 mode tcp\n    pool a\n    access-log -\n";
    /* Reading, then checking. */
    for (long budget = 0;; budget++) {
        ck_assert_int_lt(budget, 100000);
        atomic_store(&allocations_left, budget);
        ferry_reverse_config *cfg = NULL;
        char err[ERR_SIZE] = "";
        ferry_err rc = ferry_reverse_config_parse(text, sizeof text - 1, CONF, &failing, &cfg, err,
                                                  sizeof err);
        if (rc == FERRY_OK) rc = ferry_reverse_config_check(cfg, err, sizeof err);
        ferry_reverse_config_free(cfg);
        if (rc == FERRY_OK) break;
        ck_assert_msg(rc == FERRY_ENOMEM && strstr(err, "out of memory"), "budget %ld: %s",
                      budget, err);
    }
    /* Applying, to an engine of its own allocator. */
    for (long budget = 0;; budget++) {
        ck_assert_int_lt(budget, 100000);
        atomic_store(&allocations_left, LONG_MAX);
        ferry_reverse_config *cfg = NULL;
        char err[ERR_SIZE] = "";
        ck_assert_int_eq(ferry_reverse_config_parse(text, sizeof text - 1, CONF, &failing, &cfg,
                                                    err, sizeof err), FERRY_OK);
        ferry_engine *e = NULL;
        ck_assert_int_eq(ferry_engine_new(NULL, &e), FERRY_OK);
        atomic_store(&allocations_left, budget);
        ferry_err rc = ferry_reverse_config_apply(cfg, e, err, sizeof err);
        ferry_engine_free(e);
        ferry_reverse_config_free(cfg);
        if (rc == FERRY_OK) break;
        ck_assert_msg(rc == FERRY_ENOMEM || rc == FERRY_ESYS, "budget %ld: %s", budget, err);
    }
}
END_TEST

int main(void) {
    Suite *s = suite_create("reverse_config");
    TCase *tc = tcase_create("effects");
    tcase_add_test(tc, two_pools_routed_by_host_and_path);
    tcase_add_test(tc, route_options_reach_the_request);
    tcase_add_test(tc, pool_settings_reach_the_pool);
    tcase_add_test(tc, listener_settings);
    tcase_add_test(tc, global_settings_reach_the_engine_opts);
    tcase_add_test(tc, sni_listeners_route_by_server_name);
    tcase_add_test(tc, a_tcp_listener_relays);
    suite_add_tcase(s, tc);
    tc = tcase_create("syntax");
    tcase_add_test(tc, line_syntax);
    tcase_add_test(tc, long_lines_and_word_limits);
    tcase_add_test(tc, every_error_names_its_line);
    suite_add_tcase(s, tc);
    tc = tcase_create("check and apply");
    tcase_add_test(tc, check_errors);
    tcase_add_test(tc, check_binds_nothing_and_creates_no_file);
    tcase_add_test(tc, apply_once_on_an_engine_not_started);
    tcase_add_test(tc, load_reads_a_file);
    tcase_add_test(tc, bad_arguments);
    tcase_add_test(tc, every_allocation_may_fail);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
