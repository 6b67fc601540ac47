/* The reverse proxy's configuration file (format: doc/reverse-config.md). Reading builds a
 * description of the file: pools, listeners with their routes, the engine-wide settings,
 * with every value checked and every pool reference resolved (pools may be declared after
 * the listeners using them). Building makes from it the calls an embedding program would
 * make (ferry_pool_*, ferry_router_*, ferry_logger_new, ferry_engine_listen), on the
 * caller's engine (apply) or on a private one that never listens (check). Everything the
 * description holds is allocated from one arena, freed at once. Blocking file I/O and
 * DNS: configuration time only. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "acl.h"
#include "addr.h"
#include "conf.h"
#include "ferry/logger.h"
#include "ferry/reverse_config.h"
#include "internal.h"

enum {
    ARENA_BLOCK = 8192,
    MAX_WORKERS = 1024,     /* ferry_engine_new's bound */
    MAX_WEIGHT = 1000,      /* ferry_pool_add's bound */
    MAX_HEALTH_COUNT = 1000,
    MAX_CONNECTIONS = 10000000,
    MSG_BYTES = 256,
};

/* ---- the description ---- */

typedef enum mode { MODE_HTTP = 1, MODE_TCP = 2, MODE_SNI = 4 } mode;
enum { ANY_MODE = MODE_HTTP | MODE_TCP | MODE_SNI };

typedef struct backend_def {
    struct backend_def *next;
    const char *address;
    unsigned weight, line;
} backend_def;

typedef struct pool_def {
    struct pool_def *next;
    const char *name;
    unsigned index, line;
    backend_def *backends, **backends_tail;
    ferry_balance balance;
    const char *balance_key;
    unsigned balance_line;
    const char *sticky_name, *sticky_secret; /* sticky-cookie; secret may be NULL */
    unsigned sticky_line;
    ferry_health_opts health;
    unsigned health_line;
    int has_down_time, has_resolve_interval, has_passive;
    unsigned down_time_ms, resolve_interval_ms;
    unsigned max_fails, passive_flags; /* passive-check */
} pool_def;

typedef struct route_def {
    struct route_def *next;
    ferry_route_opts opts; /* pool set when built */
    const char *pool_name;
    const pool_def *pool;
    unsigned line;
} route_def;

typedef struct listen_def {
    struct listen_def *next;
    ferry_listener_opts opts;
    char canonical[FERRY_HOST_MAX + 16]; /* the address as the engine will bind it */
    mode mode;
    unsigned line;
    route_def *routes, **routes_tail; /* http and sni */
    const char *pool_name;            /* tcp */
    const pool_def *pool;
    unsigned pool_line;
    const char *access_log;
    unsigned access_log_line;
    ferry_router *router;             /* after apply */
    ferry_listener *listener;
} listen_def;

/* An access log open after apply; listeners naming the same file share it. */
typedef struct log_def {
    struct log_def *next;
    const char *path;
    ferry_logger *logger;
} log_def;

typedef struct block {
    struct block *next;
    size_t used, size;
    max_align_t data[];
} block;

struct ferry_reverse_config {
    ferry_allocator alloc;
    block *arena;
    const char *name; /* the path, or parse's name */
    pool_def *pools, **pools_tail;
    unsigned npools;
    listen_def *listens, **listens_tail;
    unsigned nlistens;
    unsigned workers, drain_ms, max_connections; /* 0 / has_drain: not given */
    int has_drain;
    const char *error_log;
    unsigned error_log_line;
    ferry_logger *error_logger;
    log_def *logs;
    ferry_pool **built_pools; /* after apply, by pool_def.index */
    int applied;
};

/* Zeroed memory from the arena; NULL when out of memory. */
static void *arena_alloc(ferry_reverse_config *c, size_t n) {
    n = (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
    block *b = c->arena;
    if (!b || b->size - b->used < n) {
        size_t size = n > ARENA_BLOCK ? n : ARENA_BLOCK;
        b = ferry__malloc(&c->alloc, sizeof *b + size);
        if (!b) return NULL;
        b->next = c->arena;
        b->used = 0;
        b->size = size;
        c->arena = b;
    }
    void *p = (char *)b->data + b->used;
    b->used += n;
    memset(p, 0, n);
    return p;
}

static char *arena_strdup(ferry_reverse_config *c, const char *s) {
    size_t n = strlen(s) + 1;
    char *d = arena_alloc(c, n);
    if (d) memcpy(d, s, n);
    return d;
}

static const char *mode_name(mode m) {
    return m == MODE_HTTP ? "http" : m == MODE_TCP ? "tcp" : "sni";
}

static const pool_def *find_pool(const ferry_reverse_config *c, const char *name) {
    for (const pool_def *pd = c->pools; pd; pd = pd->next)
        if (strcmp(pd->name, name) == 0) return pd;
    return NULL;
}

/* Balancers that read the request: pointless (round-robin) for tcp and sni sessions. */
static const char *http_only_balance(ferry_balance b) {
    switch (b) {
    case FERRY_BALANCE_HASH_URI: return "hash-uri";
    case FERRY_BALANCE_HASH_HEADER: return "hash-header";
    case FERRY_BALANCE_HASH_COOKIE: return "hash-cookie";
    default: return NULL;
    }
}

/* ---- messages ---- */

__attribute__((format(printf, 6, 7)))
static ferry_err say(const ferry_reverse_config *c, unsigned line, char *err, size_t size,
                     ferry_err code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    ferry__conf_vreport(err, size, c->name, line, fmt, ap);
    va_end(ap);
    return code;
}

typedef struct parser {
    ferry_reverse_config *cfg;
    unsigned line;
    char *err;
    size_t err_size;
    pool_def *pool;     /* the block being read, if any */
    listen_def *listen;
} parser;

__attribute__((format(printf, 3, 4)))
static ferry_err fail(const parser *p, ferry_err code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    ferry__conf_vreport(p->err, p->err_size, p->cfg->name, p->line, fmt, ap);
    va_end(ap);
    return code;
}

static ferry_err out_of_memory(const parser *p) { return fail(p, FERRY_ENOMEM, "out of memory"); }

/* ---- values ---- */

/* Digits only, from min to max. */
static int parse_count(const char *s, unsigned min, unsigned max, unsigned *out) {
    unsigned long long v = 0;
    const char *q = s;
    for (; *q >= '0' && *q <= '9'; q++)
        if ((v = v * 10 + (unsigned)(*q - '0')) > max) return -1;
    if (q == s || *q || v < min) return -1;
    *out = (unsigned)v;
    return 0;
}

/* "250" or "250ms", "30s", "5m", "1h": milliseconds, up to UINT_MAX. */
static int parse_duration(const char *s, unsigned *out) {
    unsigned long long v = 0, unit;
    const char *q = s;
    for (; *q >= '0' && *q <= '9'; q++)
        if ((v = v * 10 + (unsigned)(*q - '0')) > UINT_MAX) return -1;
    if (q == s) return -1;
    if (!*q || strcmp(q, "ms") == 0) unit = 1;
    else if (strcmp(q, "s") == 0) unit = 1000;
    else if (strcmp(q, "m") == 0) unit = 60000;
    else if (strcmp(q, "h") == 0) unit = 3600000;
    else return -1;
    if (v * unit > UINT_MAX) return -1; /* no wrap: both factors are below 2^32 */
    *out = (unsigned)(v * unit);
    return 0;
}

/* "1048576" or "512k", "10M", "1G" (binary units, either case): bytes. */
static int parse_size(const char *s, uint64_t *out) {
    uint64_t v = 0;
    const char *q = s;
    for (; *q >= '0' && *q <= '9'; q++) {
        if (v > (UINT64_MAX - 9) / 10) return -1;
        v = v * 10 + (unsigned)(*q - '0');
    }
    if (q == s) return -1;
    unsigned shift = 0;
    if (*q == 'k' || *q == 'K') shift = 10;
    else if (*q == 'm' || *q == 'M') shift = 20;
    else if (*q == 'g' || *q == 'G') shift = 30;
    if (shift) q++;
    if (*q || v > UINT64_MAX >> shift) return -1;
    *out = v << shift;
    return 0;
}

static int parse_switch(const char *s, int *out) {
    if (strcasecmp(s, "on") == 0) *out = 1;
    else if (strcasecmp(s, "off") == 0) *out = 0;
    else return -1;
    return 0;
}

static ferry_err bad_duration(const parser *p, const char *kw, const char *v) {
    return fail(p, FERRY_ECONFIG,
                "%s: '%s' is not a duration (e.g. 500ms, 30s, 5m, 1h; a bare number is "
                "milliseconds)", kw, v);
}

/* Each comma-separated entry must be an address or CIDR, as the engine will read it. */
static ferry_err check_cidrs(const parser *p, const char *kw, const char *list) {
    for (const char *item = list;;) {
        const char *comma = strchr(item, ',');
        size_t len = comma ? (size_t)(comma - item) : strlen(item);
        ferry__cidr cidr;
        if (len == 0) return fail(p, FERRY_ECONFIG, "%s: empty entry in the list", kw);
        if (ferry__cidr_parse(item, len, &cidr) != 0)
            return fail(p, FERRY_ECONFIG, "%s: '%.*s' is not an address or CIDR (e.g. 10.0.0.0/8)",
                        kw, (int)len, item);
        if (!comma) return FERRY_OK;
        item = comma + 1;
    }
}

/* Pool names are what routes refer to: one plain word. */
static int name_ok(const char *s) {
    if (!*s) return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '_' || *s == '.'))
            return 0;
    return 1;
}

/* Printable, without spaces: for request targets and Host values sent on the wire. */
static int visible(const char *s) {
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f) return 0;
    return 1;
}

/* ---- directives ---- */

typedef struct directive directive;
typedef ferry_err (*directive_fn)(parser *p, const directive *d, char **args, int nargs);

enum { AT_TOP = 1, IN_POOL = 2, IN_LISTEN = 4 };

struct directive {
    const char *name;
    uint8_t where; /* AT_TOP, IN_POOL or IN_LISTEN */
    uint8_t modes; /* IN_LISTEN: the listener modes it applies to */
    int min_args, max_args;
    const char *usage; /* what a wrong number of arguments is told */
    directive_fn apply;
    size_t field;      /* for the generic listener setters: offset in ferry_listener_opts */
};

/* -- global -- */

static ferry_err do_pool_block(parser *p, const directive *d, char **args, int nargs) {
    (void)nargs;
    ferry_reverse_config *c = p->cfg;
    if (!name_ok(args[0]))
        return fail(p, FERRY_ECONFIG, "%s: name '%s' may hold letters, digits, '-', '_' and '.' "
                    "only", d->name, args[0]);
    const pool_def *seen = find_pool(c, args[0]);
    if (seen)
        return fail(p, FERRY_ECONFIG, "pool '%s' is already defined at line %u", args[0],
                    seen->line);
    pool_def *pd = arena_alloc(c, sizeof *pd);
    if (!pd || !(pd->name = arena_strdup(c, args[0]))) return out_of_memory(p);
    pd->index = c->npools++;
    pd->line = p->line;
    pd->backends_tail = &pd->backends;
    pd->balance = FERRY_BALANCE_ROUND_ROBIN;
    ferry_health_opts_init(&pd->health);
    *c->pools_tail = pd;
    c->pools_tail = &pd->next;
    p->pool = pd;
    p->listen = NULL;
    return FERRY_OK;
}

static ferry_err do_listen_block(parser *p, const directive *d, char **args, int nargs) {
    ferry_reverse_config *c = p->cfg;
    ferry__sockaddr sa;
    if (!ferry__conf_listen_literal(args[0], &sa))
        return fail(p, FERRY_ECONFIG,
                    "%s: '%s' is not IP:PORT (e.g. 127.0.0.1:8080, 0.0.0.0:80, [::]:443)",
                    d->name, args[0]);
    mode m = MODE_HTTP;
    if (nargs == 3 && strcasecmp(args[1], "mode") == 0 && strcasecmp(args[2], "http") == 0)
        m = MODE_HTTP;
    else if (nargs == 3 && strcasecmp(args[1], "mode") == 0 && strcasecmp(args[2], "tcp") == 0)
        m = MODE_TCP;
    else if (nargs == 3 && strcasecmp(args[1], "mode") == 0 && strcasecmp(args[2], "sni") == 0)
        m = MODE_SNI;
    else if (nargs != 1)
        return fail(p, FERRY_ECONFIG, "%s: expected %s", d->name, d->usage);
    listen_def *ld = arena_alloc(c, sizeof *ld);
    if (!ld) return out_of_memory(p);
    ferry__addr_format(&sa, 1, ld->canonical, sizeof ld->canonical);
    /* Port 0 asks for any free port: two of them never clash. */
    for (const listen_def *o = c->listens; o && ferry__addr_port(&sa); o = o->next)
        if (strcmp(o->canonical, ld->canonical) == 0)
            return fail(p, FERRY_ECONFIG, "%s: %s is already used at line %u", d->name,
                        ld->canonical, o->line);
    ferry_listener_opts_init(&ld->opts);
    if (!(ld->opts.address = arena_strdup(c, args[0]))) return out_of_memory(p);
    ld->opts.protocol = m == MODE_HTTP ? FERRY_PROTO_HTTP : m == MODE_TCP ? FERRY_PROTO_TCP
                                                                          : FERRY_PROTO_SNI;
    ld->mode = m;
    ld->line = p->line;
    ld->routes_tail = &ld->routes;
    c->nlistens++;
    *c->listens_tail = ld;
    c->listens_tail = &ld->next;
    p->listen = ld;
    p->pool = NULL;
    return FERRY_OK;
}

static ferry_err do_workers(parser *p, const directive *d, char **args, int nargs) {
    (void)nargs;
    if (parse_count(args[0], 1, MAX_WORKERS, &p->cfg->workers) != 0)
        return fail(p, FERRY_ECONFIG, "%s: expected %s", d->name, d->usage);
    return FERRY_OK;
}

static ferry_err do_max_connections(parser *p, const directive *d, char **args, int nargs) {
    (void)nargs;
    if (parse_count(args[0], 1, MAX_CONNECTIONS, &p->cfg->max_connections) != 0)
        return fail(p, FERRY_ECONFIG, "%s: expected %s", d->name, d->usage);
    return FERRY_OK;
}

static ferry_err do_drain(parser *p, const directive *d, char **args, int nargs) {
    (void)nargs;
    if (parse_duration(args[0], &p->cfg->drain_ms) != 0) return bad_duration(p, d->name, args[0]);
    p->cfg->has_drain = 1;
    return FERRY_OK;
}

static ferry_err do_error_log(parser *p, const directive *d, char **args, int nargs) {
    (void)nargs;
    if (!args[0][0]) return fail(p, FERRY_ECONFIG, "%s: empty file name", d->name);
    if (!(p->cfg->error_log = arena_strdup(p->cfg, args[0]))) return out_of_memory(p);
    p->cfg->error_log_line = p->line;
    return FERRY_OK;
}

/* -- pool blocks -- */

static ferry_err do_backend(parser *p, const directive *d, char **args, int nargs) {
    char host[FERRY_HOST_MAX];
    uint16_t port;
    if (ferry__addr_split(args[0], host, sizeof host, &port) != FERRY_OK || port == 0)
        return fail(p, FERRY_ECONFIG, "%s: '%s' is not HOST:PORT (e.g. 10.0.0.5:8080, "
                    "app1.internal:8080, [2001:db8::5]:8080)", d->name, args[0]);
    unsigned weight = 1;
    if (nargs == 2 && (strncasecmp(args[1], "weight=", 7) != 0 ||
                       parse_count(args[1] + 7, 1, MAX_WEIGHT, &weight) != 0))
        return fail(p, FERRY_ECONFIG, "%s: expected weight=N with N from 1 to %d after the "
                    "address", d->name, MAX_WEIGHT);
    backend_def *b = arena_alloc(p->cfg, sizeof *b);
    if (!b || !(b->address = arena_strdup(p->cfg, args[0]))) return out_of_memory(p);
    b->weight = weight;
    b->line = p->line;
    *p->pool->backends_tail = b;
    p->pool->backends_tail = &b->next;
    return FERRY_OK;
}

static ferry_err do_balance(parser *p, const directive *d, char **args, int nargs) {
    static const struct {
        const char *name;
        ferry_balance kind;
    } kinds[] = {
        {"roundrobin", FERRY_BALANCE_ROUND_ROBIN}, {"leastconn", FERRY_BALANCE_LEAST_CONN},
        {"random2", FERRY_BALANCE_RANDOM2},        {"hash-client", FERRY_BALANCE_HASH_CLIENT},
        {"hash-ip", FERRY_BALANCE_HASH_CLIENT},    {"hash-uri", FERRY_BALANCE_HASH_URI},
        {"hash-header", FERRY_BALANCE_HASH_HEADER}, {"hash-cookie", FERRY_BALANCE_HASH_COOKIE},
    };
    for (size_t k = 0; k < FERRY__ARRAY_LEN(kinds); k++) {
        if (strcasecmp(args[0], kinds[k].name) != 0) continue;
        int keyed = kinds[k].kind == FERRY_BALANCE_HASH_HEADER ||
                    kinds[k].kind == FERRY_BALANCE_HASH_COOKIE;
        int header = kinds[k].kind == FERRY_BALANCE_HASH_HEADER;
        if (keyed && nargs != 2)
            return fail(p, FERRY_ECONFIG, "%s: %s needs a %s name (e.g. %s %s %s)", d->name,
                        kinds[k].name, header ? "header" : "cookie", d->name, kinds[k].name,
                        header ? "X-User" : "session");
        if (!keyed && nargs != 1)
            return fail(p, FERRY_ECONFIG, "%s: %s takes no name", d->name, kinds[k].name);
        pool_def *pd = p->pool;
        pd->balance = kinds[k].kind;
        pd->balance_key = NULL;
        if (keyed && !(pd->balance_key = arena_strdup(p->cfg, args[1]))) return out_of_memory(p);
        pd->balance_line = p->line;
        return FERRY_OK;
    }
    return fail(p, FERRY_ECONFIG, "%s: expected %s", d->name, d->usage);
}

/* "200" or "200-399" into the passing range. */
static int parse_status_range(const char *v, ferry_health_opts *h) {
    unsigned lo, hi;
    const char *dash = strchr(v, '-');
    char first[8];
    size_t n = dash ? (size_t)(dash - v) : strlen(v);
    if (n >= sizeof first) return -1;
    memcpy(first, v, n);
    first[n] = '\0';
    if (parse_count(first, 100, 599, &lo) != 0 ||
        parse_count(dash ? dash + 1 : first, lo, 599, &hi) != 0)
        return -1;
    h->status_min = (int)lo;
    h->status_max = (int)hi;
    return 0;
}

/* Is the option in front of '=' (len bytes of opt) called name? */
static int option_is(const char *opt, size_t len, const char *name) {
    return len == strlen(name) && strncasecmp(opt, name, len) == 0;
}

/* health-check tcp|http PATH [interval=D] [timeout=D] [rise=N] [fall=N] [status=A-B] [host=H] */
static ferry_err do_health_check(parser *p, const directive *d, char **args, int nargs) {
    static const char duration[] = "a duration such as 2s or 500ms",
                      count[] = "a count from 1 to 1000";
    ferry_health_opts h;
    ferry_health_opts_init(&h);
    int i = 1, timeout_given = 0;
    if (strcasecmp(args[0], "tcp") == 0) {
        h.kind = FERRY_HEALTH_TCP;
    } else if (strcasecmp(args[0], "http") == 0) {
        h.kind = FERRY_HEALTH_HTTP;
        if (nargs < 2 || args[1][0] != '/' || !visible(args[1]))
            return fail(p, FERRY_ECONFIG, "%s: http needs a path starting with '/', without "
                        "spaces (e.g. %s http /healthz)", d->name, d->name);
        if (!(h.path = arena_strdup(p->cfg, args[1]))) return out_of_memory(p);
        i = 2;
    } else {
        return fail(p, FERRY_ECONFIG, "%s: expected %s", d->name, d->usage);
    }
    int http = h.kind == FERRY_HEALTH_HTTP;
    for (; i < nargs; i++) {
        const char *opt = args[i], *eq = strchr(opt, '='), *v = eq ? eq + 1 : "", *want;
        size_t len = eq ? (size_t)(eq - opt) : 0;
        int bad;
        if (option_is(opt, len, "interval")) {
            want = duration;
            bad = parse_duration(v, &h.interval_ms) != 0 || h.interval_ms == 0;
        } else if (option_is(opt, len, "timeout")) {
            want = duration;
            bad = parse_duration(v, &h.timeout_ms) != 0 || h.timeout_ms == 0;
            timeout_given = 1;
        } else if (option_is(opt, len, "rise")) {
            want = count;
            bad = parse_count(v, 1, MAX_HEALTH_COUNT, &h.rise) != 0;
        } else if (option_is(opt, len, "fall")) {
            want = count;
            bad = parse_count(v, 1, MAX_HEALTH_COUNT, &h.fall) != 0;
        } else if (http && option_is(opt, len, "status")) {
            want = "a status or range from 100 to 599, e.g. 200-399";
            bad = parse_status_range(v, &h) != 0;
        } else if (http && option_is(opt, len, "host")) {
            want = "a host name";
            bad = !*v || !visible(v);
            if (!bad && !(h.host = arena_strdup(p->cfg, v))) return out_of_memory(p);
        } else {
            return fail(p, FERRY_ECONFIG, "%s: unknown option '%s' (expected interval=, "
                        "timeout=, rise=, fall=%s)", d->name, opt, http ? ", status=, host=" : "");
        }
        if (bad)
            return fail(p, FERRY_ECONFIG, "%s: bad value '%s' for %.*s (%s)", d->name, v, (int)len,
                        opt, want);
    }
    /* A check may run until the next is due; only an explicit timeout may say otherwise. */
    if (!timeout_given && h.timeout_ms > h.interval_ms) h.timeout_ms = h.interval_ms;
    p->pool->health = h;
    p->pool->health_line = p->line;
    return FERRY_OK;
}

static ferry_err do_down_time(parser *p, const directive *d, char **args, int nargs) {
    (void)nargs;
    if (parse_duration(args[0], &p->pool->down_time_ms) != 0)
        return bad_duration(p, d->name, args[0]);
    p->pool->has_down_time = 1;
    return FERRY_OK;
}

/* passive-check [fails=N] [responses] [5xx] */
static ferry_err do_passive_check(parser *p, const directive *d, char **args, int nargs) {
    pool_def *pd = p->pool;
    pd->max_fails = 1;
    pd->passive_flags = FERRY_PASSIVE_CONNECT;
    for (int i = 0; i < nargs; i++) {
        if (strncasecmp(args[i], "fails=", 6) == 0) {
            if (parse_count(args[i] + 6, 1, 1000, &pd->max_fails) != 0)
                return fail(p, FERRY_ECONFIG, "%s: fails= takes a count from 1 to 1000, not '%s'",
                            d->name, args[i] + 6);
        } else if (strcasecmp(args[i], "responses") == 0) {
            pd->passive_flags |= FERRY_PASSIVE_RESPONSES;
        } else if (strcasecmp(args[i], "5xx") == 0) {
            pd->passive_flags |= FERRY_PASSIVE_5XX;
        } else {
            return fail(p, FERRY_ECONFIG, "%s: unknown option '%s' (expected %s)", d->name,
                        args[i], d->usage);
        }
    }
    pd->has_passive = 1;
    return FERRY_OK;
}

static ferry_err do_sticky_cookie(parser *p, const directive *d, char **args, int nargs) {
    if (nargs == 2 || (nargs == 3 && (strcasecmp(args[1], "secret") != 0 || !args[2][0])))
        return fail(p, FERRY_ECONFIG, "%s: expected %s", d->name, d->usage);
    pool_def *pd = p->pool;
    pd->sticky_secret = NULL;
    if (!(pd->sticky_name = arena_strdup(p->cfg, args[0])) ||
        (nargs == 3 && !(pd->sticky_secret = arena_strdup(p->cfg, args[2]))))
        return out_of_memory(p);
    pd->sticky_line = p->line;
    return FERRY_OK;
}

static ferry_err do_resolve_interval(parser *p, const directive *d, char **args, int nargs) {
    (void)nargs;
    if (parse_duration(args[0], &p->pool->resolve_interval_ms) != 0)
        return bad_duration(p, d->name, args[0]);
    p->pool->has_resolve_interval = 1;
    return FERRY_OK;
}

/* -- listen blocks -- */

static ferry_err do_listen_pool(parser *p, const directive *d, char **args, int nargs) {
    (void)d;
    (void)nargs;
    if (!(p->listen->pool_name = arena_strdup(p->cfg, args[0]))) return out_of_memory(p);
    p->listen->pool_line = p->line;
    return FERRY_OK;
}

static ferry_err do_listen_duration(parser *p, const directive *d, char **args, int nargs) {
    (void)nargs;
    unsigned ms;
    if (parse_duration(args[0], &ms) != 0 || ms == 0) return bad_duration(p, d->name, args[0]);
    memcpy((char *)&p->listen->opts + d->field, &ms, sizeof ms);
    return FERRY_OK;
}

static ferry_err do_listen_switch(parser *p, const directive *d, char **args, int nargs) {
    (void)nargs;
    int on;
    if (parse_switch(args[0], &on) != 0)
        return fail(p, FERRY_ECONFIG, "%s: expected on or off", d->name);
    memcpy((char *)&p->listen->opts + d->field, &on, sizeof on);
    return FERRY_OK;
}

static ferry_err do_max_body(parser *p, const directive *d, char **args, int nargs) {
    (void)nargs;
    if (parse_size(args[0], &p->listen->opts.max_body_bytes) != 0)
        return fail(p, FERRY_ECONFIG, "%s: '%s' is not a size (e.g. 512k, 10M, 1G; a bare number "
                    "is bytes, 0 is no limit)", d->name, args[0]);
    return FERRY_OK;
}

static ferry_err do_accept_proxy(parser *p, const directive *d, char **args, int nargs) {
    ferry_listener_opts *o = &p->listen->opts;
    if (nargs == 1 || (nargs == 2 && strcasecmp(args[0], "trusted") != 0))
        return fail(p, FERRY_ECONFIG, "%s: expected %s", d->name, d->usage);
    o->accept_proxy = 1;
    o->proxy_trusted = NULL;
    if (nargs == 0) return FERRY_OK;
    ferry_err rc = check_cidrs(p, d->name, args[1]);
    if (rc) return rc;
    return (o->proxy_trusted = arena_strdup(p->cfg, args[1])) ? FERRY_OK : out_of_memory(p);
}

static ferry_err do_send_proxy(parser *p, const directive *d, char **args, int nargs) {
    (void)nargs;
    if (strcasecmp(args[0], "v1") == 0) p->listen->opts.send_proxy = 1;
    else if (strcasecmp(args[0], "v2") == 0) p->listen->opts.send_proxy = 2;
    else return fail(p, FERRY_ECONFIG, "%s: expected %s", d->name, d->usage);
    return FERRY_OK;
}

static ferry_err do_trusted_forwarders(parser *p, const directive *d, char **args, int nargs) {
    (void)nargs;
    ferry_err rc = check_cidrs(p, d->name, args[0]);
    if (rc) return rc;
    return (p->listen->opts.trusted_forwarders = arena_strdup(p->cfg, args[0])) ? FERRY_OK
                                                                             : out_of_memory(p);
}

static ferry_err do_public_scheme(parser *p, const directive *d, char **args, int nargs) {
    (void)nargs;
    if (strcasecmp(args[0], "http") == 0) p->listen->opts.public_scheme = "http";
    else if (strcasecmp(args[0], "https") == 0) p->listen->opts.public_scheme = "https";
    else return fail(p, FERRY_ECONFIG, "%s: expected %s", d->name, d->usage);
    return FERRY_OK;
}

static ferry_err do_access_log(parser *p, const directive *d, char **args, int nargs) {
    static const struct {
        const char *name;
        ferry_access_format format;
    } formats[] = {{"text", FERRY_ACCESS_TEXT}, {"json", FERRY_ACCESS_JSON},
                   {"common", FERRY_ACCESS_COMMON}, {"combined", FERRY_ACCESS_COMBINED}};
    listen_def *ld = p->listen;
    if (!args[0][0]) return fail(p, FERRY_ECONFIG, "%s: empty file name", d->name);
    if (nargs == 2 || (nargs == 3 && strcasecmp(args[1], "format") != 0))
        return fail(p, FERRY_ECONFIG, "%s: expected %s", d->name, d->usage);
    int format = FERRY_ACCESS_TEXT, found = nargs == 1;
    for (size_t k = 0; !found && k < FERRY__ARRAY_LEN(formats); k++)
        if (strcasecmp(args[2], formats[k].name) == 0) {
            format = (int)formats[k].format;
            found = 1;
        }
    if (!found)
        return fail(p, FERRY_ECONFIG, "%s: format '%s' is not text, json, common or combined",
                    d->name, args[2]);
    if (!(ld->access_log = arena_strdup(p->cfg, args[0]))) return out_of_memory(p);
    ld->opts.access_format = format;
    ld->access_log_line = p->line;
    return FERRY_OK;
}

/* route [host H] [path P | exact P | regex RE] [methods M,...] pool NAME [strip-prefix P]
 *       [add-prefix P] [backend-host on|off] [set-header "N: v"]... [remove-header N,...]...
 *       [connect-timeout D] [response-timeout D] [max-body SIZE]
 *       [cookie-domain D [public-cookie-domain P]] [substitute "from=>to"]...
 *       [substitute-icase on|off] */
enum route_key {
    RK_HOST, RK_PATH, RK_EXACT, RK_REGEX, RK_METHODS, RK_POOL, RK_STRIP, RK_ADD, RK_BACKEND_HOST,
    RK_SET_HEADER, RK_REMOVE_HEADER, RK_CONNECT_TIMEOUT, RK_RESPONSE_TIMEOUT, RK_MAX_BODY,
    RK_COOKIE_DOMAIN, RK_PUBLIC_COOKIE_DOMAIN, RK_SUBSTITUTE, RK_SUBSTITUTE_ICASE, RK_COUNT
};

static const char *const route_keys[RK_COUNT] = {
    "host", "path", "exact", "regex", "methods", "pool", "strip-prefix", "add-prefix",
    "backend-host", "set-header", "remove-header", "connect-timeout", "response-timeout",
    "max-body", "cookie-domain", "public-cookie-domain", "substitute", "substitute-icase",
};

/* Values of a repeatable route option joined by sep, as ferry_route_opts wants them. */
static const char *join(parser *p, char **values, unsigned n, char sep) {
    size_t total = 1;
    for (unsigned k = 0; k < n; k++) total += strlen(values[k]) + 1;
    char *out = arena_alloc(p->cfg, total), *w = out;
    for (unsigned k = 0; out && k < n; k++) {
        size_t len = strlen(values[k]);
        if (k) *w++ = sep;
        memcpy(w, values[k], len);
        w += len;
    }
    return out;
}

static ferry_err route_value(parser *p, route_def *rd, enum route_key key, char *v) {
    ferry_route_opts *o = &rd->opts;
    ferry_reverse_config *c = p->cfg;
    const char *name = route_keys[key];
    unsigned ms;
    int on;
    const char **str = NULL;
    switch (key) {
    case RK_HOST: str = &o->host; break;
    case RK_PATH: case RK_EXACT: case RK_REGEX:
        o->match = key == RK_PATH ? FERRY_PATH_PREFIX : key == RK_EXACT ? FERRY_PATH_EXACT
                                                                        : FERRY_PATH_REGEX;
        str = &o->path;
        break;
    case RK_METHODS: str = &o->methods; break;
    case RK_POOL: str = &rd->pool_name; break;
    case RK_STRIP: str = &o->strip_prefix; break;
    case RK_ADD: str = &o->add_prefix; break;
    case RK_COOKIE_DOMAIN: str = &o->cookie_domain; break;
    case RK_PUBLIC_COOKIE_DOMAIN: str = &o->public_cookie_domain; break;
    case RK_BACKEND_HOST:
    case RK_SUBSTITUTE_ICASE:
        if (parse_switch(v, &on) != 0)
            return fail(p, FERRY_ECONFIG, "route: %s: expected on or off", name);
        *(key == RK_BACKEND_HOST ? &o->backend_host : &o->substitute_icase) = on;
        return FERRY_OK;
    case RK_CONNECT_TIMEOUT: case RK_RESPONSE_TIMEOUT:
        if (parse_duration(v, &ms) != 0 || ms == 0) {
            char kw[64];
            snprintf(kw, sizeof kw, "route: %s", name);
            return bad_duration(p, kw, v);
        }
        *(key == RK_CONNECT_TIMEOUT ? &o->connect_timeout_ms : &o->response_timeout_ms) = ms;
        return FERRY_OK;
    case RK_MAX_BODY:
        if (parse_size(v, &o->max_body_bytes) != 0 || o->max_body_bytes == 0)
            return fail(p, FERRY_ECONFIG, "route: max-body: '%s' is not a size of at least 1 "
                        "byte (e.g. 512k, 10M; leave it out to use the listener's)", v);
        return FERRY_OK;
    default: /* the repeatable ones are joined by the caller */
        return FERRY_OK;
    }
    return (*str = arena_strdup(c, v)) ? FERRY_OK : out_of_memory(p);
}

static ferry_err do_route(parser *p, const directive *d, char **args, int nargs) {
    (void)d;
    listen_def *ld = p->listen;
    route_def *rd = arena_alloc(p->cfg, sizeof *rd);
    if (!rd) return out_of_memory(p);
    ferry_route_opts_init(&rd->opts);
    rd->line = p->line;
    char *sets[FERRY__CONF_MAX_WORDS], *removes[FERRY__CONF_MAX_WORDS], *subs[FERRY__CONF_MAX_WORDS];
    unsigned nsets = 0, nremoves = 0, nsubs = 0, seen = 0;
    for (int i = 0; i < nargs; i += 2) {
        enum route_key key = RK_COUNT;
        for (unsigned k = 0; k < RK_COUNT; k++)
            if (strcasecmp(args[i], route_keys[k]) == 0) key = (enum route_key)k;
        if (key == RK_COUNT)
            return fail(p, FERRY_ECONFIG, "route: unknown option '%s' (expected host, path, "
                        "exact, regex, methods, pool, strip-prefix, add-prefix, backend-host, "
                        "set-header, remove-header, connect-timeout, response-timeout, max-body, "
                        "cookie-domain, public-cookie-domain, substitute, substitute-icase)",
                        args[i]);
        if (i + 1 == nargs)
            return fail(p, FERRY_ECONFIG, "route: '%s' needs a value", route_keys[key]);
        if (ld->mode == MODE_SNI && key != RK_HOST && key != RK_POOL)
            return fail(p, FERRY_ECONFIG, "route: sni listeners route by server name only "
                        "('%s' needs an http listener)", route_keys[key]);
        if (key == RK_SET_HEADER) {
            sets[nsets++] = args[i + 1];
            continue;
        }
        if (key == RK_REMOVE_HEADER) {
            removes[nremoves++] = args[i + 1];
            continue;
        }
        if (key == RK_SUBSTITUTE) {
            subs[nsubs++] = args[i + 1];
            continue;
        }
        unsigned bit = 1u << (key == RK_EXACT || key == RK_REGEX ? RK_PATH : key);
        if ((seen & bit) && key <= RK_REGEX)
            return fail(p, FERRY_ECONFIG, "route: give one of path, exact and regex");
        if (seen & bit) return fail(p, FERRY_ECONFIG, "route: '%s' given twice", route_keys[key]);
        seen |= bit;
        ferry_err rc = route_value(p, rd, key, args[i + 1]);
        if (rc) return rc;
    }
    if (!rd->pool_name) return fail(p, FERRY_ECONFIG, "route: missing 'pool NAME'");
    if (rd->opts.public_cookie_domain && !rd->opts.cookie_domain)
        return fail(p, FERRY_ECONFIG, "route: public-cookie-domain needs cookie-domain (the "
                    "backend's domain it replaces)");
    if ((nsets && !(rd->opts.set_headers = join(p, sets, nsets, '\n'))) ||
        (nremoves && !(rd->opts.remove_headers = join(p, removes, nremoves, ','))) ||
        (nsubs && !(rd->opts.substitutions = join(p, subs, nsubs, '\n'))))
        return out_of_memory(p);
    *ld->routes_tail = rd;
    ld->routes_tail = &rd->next;
    return FERRY_OK;
}

#define LISTEN_FIELD(f) offsetof(ferry_listener_opts, f)

static const directive directives[] = {
    {"pool", AT_TOP, 0, 1, 1, "NAME", do_pool_block, 0},
    {"listen", AT_TOP, 0, 1, 3, "ADDR:PORT [mode http|tcp|sni]", do_listen_block, 0},
    {"workers", AT_TOP, 0, 1, 1, "a number from 1 to 1024", do_workers, 0},
    {"max-connections", AT_TOP, 0, 1, 1, "a number from 1 to 10000000", do_max_connections, 0},
    {"drain", AT_TOP, 0, 1, 1, "a duration (e.g. 5s)", do_drain, 0},
    {"error-log", AT_TOP, 0, 1, 1, "a file name, '-' or stderr", do_error_log, 0},

    {"backend", IN_POOL, 0, 1, 2, "ADDR:PORT [weight=N]", do_backend, 0},
    {"balance", IN_POOL, 0, 1, 2,
     "roundrobin, leastconn, random2, hash-client, hash-uri, hash-header NAME or hash-cookie NAME",
     do_balance, 0},
    {"health-check", IN_POOL, 0, 1, FERRY__CONF_MAX_WORDS,
     "tcp or http PATH, then [interval=D] [timeout=D] [rise=N] [fall=N]", do_health_check, 0},
    {"down-time", IN_POOL, 0, 1, 1, "a duration (e.g. 2s; 0 disables)", do_down_time, 0},
    {"passive-check", IN_POOL, 0, 1, 3, "fails=N, responses and/or 5xx", do_passive_check, 0},
    {"resolve-interval", IN_POOL, 0, 1, 1, "a duration (e.g. 30s; 0 disables)",
     do_resolve_interval, 0},
    {"sticky-cookie", IN_POOL, 0, 1, 3, "a cookie NAME, then optionally secret SECRET",
     do_sticky_cookie, 0},

    {"pool", IN_LISTEN, MODE_TCP, 1, 1, "NAME", do_listen_pool, 0},
    {"route", IN_LISTEN, MODE_HTTP | MODE_SNI, 2, FERRY__CONF_MAX_WORDS,
     "options and values, at least 'pool NAME' (e.g. route host www.example.com pool app)",
     do_route, 0},
    {"connect-timeout", IN_LISTEN, ANY_MODE, 1, 1, "a duration", do_listen_duration,
     LISTEN_FIELD(connect_timeout_ms)},
    {"idle-timeout", IN_LISTEN, ANY_MODE, 1, 1, "a duration", do_listen_duration,
     LISTEN_FIELD(idle_timeout_ms)},
    {"header-timeout", IN_LISTEN, ANY_MODE, 1, 1, "a duration", do_listen_duration,
     LISTEN_FIELD(header_timeout_ms)},
    {"keepalive-timeout", IN_LISTEN, MODE_HTTP, 1, 1, "a duration", do_listen_duration,
     LISTEN_FIELD(keepalive_timeout_ms)},
    {"response-timeout", IN_LISTEN, MODE_HTTP, 1, 1, "a duration", do_listen_duration,
     LISTEN_FIELD(response_timeout_ms)},
    {"body-timeout", IN_LISTEN, MODE_HTTP, 1, 1, "a duration", do_listen_duration,
     LISTEN_FIELD(body_timeout_ms)},
    {"max-body", IN_LISTEN, MODE_HTTP, 1, 1, "a size (e.g. 10M; 0 is no limit)", do_max_body, 0},
    {"accept-proxy", IN_LISTEN, ANY_MODE, 0, 2, "nothing, or trusted CIDR[,CIDR...]",
     do_accept_proxy, 0},
    {"send-proxy", IN_LISTEN, ANY_MODE, 1, 1, "v1 or v2", do_send_proxy, 0},
    {"splice", IN_LISTEN, ANY_MODE, 1, 1, "on or off", do_listen_switch, LISTEN_FIELD(splice)},
    {"access-log", IN_LISTEN, ANY_MODE, 1, 3, "PATH|- [format text|json|common|combined]",
     do_access_log, 0},
    {"trusted-forwarders", IN_LISTEN, MODE_HTTP, 1, 1, "CIDR[,CIDR...]", do_trusted_forwarders, 0},
    {"x-forwarded", IN_LISTEN, MODE_HTTP, 1, 1, "on or off", do_listen_switch,
     LISTEN_FIELD(forwarded_headers)},
    {"forwarded", IN_LISTEN, MODE_HTTP, 1, 1, "on or off", do_listen_switch,
     LISTEN_FIELD(forwarded_rfc7239)},
    {"via", IN_LISTEN, MODE_HTTP, 1, 1, "on or off", do_listen_switch, LISTEN_FIELD(add_via)},
    {"rewrite", IN_LISTEN, MODE_HTTP, 1, 1, "on or off", do_listen_switch,
     LISTEN_FIELD(rewrite_responses)},
    {"public-scheme", IN_LISTEN, MODE_HTTP, 1, 1, "http or https", do_public_scheme, 0},
    {"hide-backend-headers", IN_LISTEN, MODE_HTTP, 1, 1, "on or off", do_listen_switch,
     LISTEN_FIELD(hide_backend_headers)},
};

/* Why directive d (found, but not for this place) cannot stand on this line. */
static ferry_err misplaced(const parser *p, const directive *d, int indented) {
    if (!indented && d->where == IN_POOL)
        return fail(p, FERRY_ECONFIG, "'%s' belongs in a pool block: indent it under a "
                    "'pool NAME' line", d->name);
    if (!indented)
        return fail(p, FERRY_ECONFIG, "'%s' belongs in a listen block: indent it under a "
                    "'listen ADDR:PORT' line", d->name);
    if (d->where == AT_TOP && (d->apply == do_pool_block || d->apply == do_listen_block))
        return fail(p, FERRY_ECONFIG, "'%s' starts a block: write it without indentation", d->name);
    if (d->where == AT_TOP)
        return fail(p, FERRY_ECONFIG, "'%s' is a global setting: write it without indentation",
                    d->name);
    if (d->where == IN_LISTEN)
        return fail(p, FERRY_ECONFIG, "'%s' belongs in a listen block, not in pool '%s'", d->name,
                    p->pool->name);
    return fail(p, FERRY_ECONFIG, "'%s' belongs in a pool block, not in a listen block (declare "
                "the backends in a pool and name the pool here)", d->name);
}

/* A listen-block directive for another kind of listener. */
static ferry_err wrong_mode(const parser *p, const directive *d) {
    const char *m = mode_name(p->listen->mode);
    if (d->apply == do_route)
        return fail(p, FERRY_ECONFIG, "route: a tcp listener sends everything to one pool: "
                    "write 'pool NAME' instead");
    if (d->apply == do_listen_pool)
        return fail(p, FERRY_ECONFIG, "pool: %s listeners choose pools in their routes: "
                    "write 'route pool NAME'", m);
    return fail(p, FERRY_ECONFIG, "'%s' applies to http listeners only (this one is mode %s)",
                d->name, m);
}

/* One line of the file (a ferry__conf_line_fn). */
static ferry_err read_line(void *data, const ferry__conf_line *line) {
    parser *p = data;
    p->line = line->number;
    char **words = line->words;
    for (int k = 0; k < line->nwords; k++)
        if (strcmp(words[k], "{") == 0 || strcmp(words[k], "}") == 0)
            return fail(p, FERRY_ECONFIG, "blocks are written by indentation, not braces: indent "
                        "the lines under 'pool NAME' or 'listen ADDR:PORT'");
    if (line->indented && !p->pool && !p->listen)
        return fail(p, FERRY_ECONFIG, "indented line outside a block (only the lines under "
                    "'pool NAME' or 'listen ADDR:PORT' are indented)");
    unsigned where = !line->indented ? AT_TOP : p->pool ? IN_POOL : IN_LISTEN;
    const directive *known = NULL;
    for (size_t k = 0; k < FERRY__ARRAY_LEN(directives); k++) {
        const directive *d = &directives[k];
        if (strcasecmp(words[0], d->name) != 0) continue;
        if (!known) known = d;
        if (d->where != where) continue;
        if (where == IN_LISTEN && !(d->modes & p->listen->mode)) return wrong_mode(p, d);
        int nargs = line->nwords - 1;
        if (nargs < d->min_args || nargs > d->max_args)
            return fail(p, FERRY_ECONFIG, "%s: expected %s", d->name, d->usage);
        if (where == AT_TOP) { /* an unindented line ends the block */
            p->pool = NULL;
            p->listen = NULL;
        }
        return d->apply(p, d, words + 1, nargs);
    }
    if (known) return misplaced(p, known, line->indented);
    if (ferry__conf_looks_like_keyword(words[0]))
        return fail(p, FERRY_ECONFIG, "unknown directive '%s'", words[0]);
    return fail(p, FERRY_ECONFIG, "expected a directive such as 'pool', 'listen' or 'route'");
}

/* ---- after the last line: references and completeness ---- */

/* The first problem in file order, whatever order they are found in. */
typedef struct finding {
    const ferry_reverse_config *cfg;
    unsigned line; /* UINT_MAX: none yet */
    char *err;
    size_t err_size;
} finding;

__attribute__((format(printf, 3, 4)))
static void note(finding *f, unsigned line, const char *fmt, ...) {
    if (line >= f->line) return;
    f->line = line;
    va_list ap;
    va_start(ap, fmt);
    ferry__conf_vreport(f->err, f->err_size, f->cfg->name, line, fmt, ap);
    va_end(ap);
}

/* The pool `name` at `line`, used by a listener of mode m; NULL (noted) if unusable. */
static const pool_def *use_pool(finding *f, const char *name, unsigned line, mode m,
                                const char *what) {
    const pool_def *pd = find_pool(f->cfg, name);
    if (!pd) {
        note(f, line, "%s: no pool named '%s'", what, name);
        return NULL;
    }
    const char *b = http_only_balance(pd->balance);
    if (b && m != MODE_HTTP)
        note(f, line, "%s: pool '%s' balances by %s, which needs HTTP requests; this listener is "
             "mode %s", what, name, b, mode_name(m));
    return pd;
}

static ferry_err finish(ferry_reverse_config *c, char *err, size_t err_size) {
    finding f = {c, UINT_MAX, err, err_size};
    for (const pool_def *pd = c->pools; pd; pd = pd->next)
        if (!pd->backends)
            note(&f, pd->line, "pool '%s' has no backend (add 'backend ADDR:PORT' lines under it)",
                 pd->name);
    for (listen_def *ld = c->listens; ld; ld = ld->next) {
        if (ld->mode == MODE_TCP && !ld->pool_name)
            note(&f, ld->line, "listen %s: a tcp listener needs an indented 'pool NAME' line",
                 ld->opts.address);
        else if (ld->mode == MODE_TCP)
            ld->pool = use_pool(&f, ld->pool_name, ld->pool_line, ld->mode, "pool");
        else if (!ld->routes)
            note(&f, ld->line, "listen %s: no route (add indented 'route ... pool NAME' lines)",
                 ld->opts.address);
        for (route_def *rd = ld->routes; rd; rd = rd->next)
            rd->pool = use_pool(&f, rd->pool_name, rd->line, ld->mode, "route");
    }
    if (f.line != UINT_MAX) return FERRY_ECONFIG;
    if (!c->listens)
        return say(c, 0, err, err_size, FERRY_ECONFIG,
                   "no listen block: nothing would accept connections");
    return FERRY_OK;
}

/* ---- reading ---- */

static ferry_err new_config(const ferry_allocator *allocator, const char *name,
                            ferry_reverse_config **out) {
    ferry_allocator a;
    ferry__allocator_init(&a, allocator);
    ferry_reverse_config *c = ferry__calloc(&a, sizeof *c);
    if (!c) return FERRY_ENOMEM;
    c->alloc = a;
    c->pools_tail = &c->pools;
    c->listens_tail = &c->listens;
    if (!(c->name = arena_strdup(c, name))) {
        ferry_reverse_config_free(c);
        return FERRY_ENOMEM;
    }
    *out = c;
    return FERRY_OK;
}

/* Read through src (NULL: the file c->name), then check what the lines left open. */
static ferry_err read_config(ferry_reverse_config *c, ferry__conf_src *src, char *err,
                             size_t err_size) {
    parser p = {c, 0, err, err_size, NULL, NULL};
    ferry_err rc = src ? ferry__conf_read(src, c->name, err, err_size, read_line, &p)
                       : ferry__conf_read_file(c->name, err, err_size, read_line, &p);
    return rc ? rc : finish(c, err, err_size);
}

static ferry_err read_into(const ferry_allocator *allocator, const char *name,
                           ferry__conf_src *src, ferry_reverse_config **out, char *err,
                           size_t err_size) {
    ferry_reverse_config *c = NULL;
    ferry_err rc = new_config(allocator, name, &c);
    if (rc) return ferry__conf_report(err, err_size, name, 0, rc, "out of memory");
    if ((rc = read_config(c, src, err, err_size)) != FERRY_OK) {
        ferry_reverse_config_free(c);
        return rc;
    }
    *out = c;
    return FERRY_OK;
}

ferry_err ferry_reverse_config_load(const char *path, const ferry_allocator *allocator,
                                    ferry_reverse_config **out, char *err, size_t err_size) {
    if (out) *out = NULL;
    if (!path || !out) return ferry__conf_invalid_argument(err, err_size);
    return read_into(allocator, path, NULL, out, err, err_size);
}

ferry_err ferry_reverse_config_parse(const char *text, size_t len, const char *name,
                                     const ferry_allocator *allocator, ferry_reverse_config **out,
                                     char *err, size_t err_size) {
    if (out) *out = NULL;
    if (!name || !out || (!text && len)) return ferry__conf_invalid_argument(err, err_size);
    if (!text) text = ""; /* len is 0: no arithmetic on a null pointer */
    ferry__conf_src src = {.text = text, .end = text + len};
    return read_into(allocator, name, &src, out, err, err_size);
}

/* ---- building ---- */

/* Why a log file could not be opened for appending, without creating it (check mode):
 * NULL if it could. */
static const char *unwritable(const char *path) {
    if (strcmp(path, "-") == 0 || strcmp(path, "stderr") == 0) return NULL;
    struct stat st;
    if (stat(path, &st) == 0) {
        if (S_ISDIR(st.st_mode)) return strerror(EISDIR);
        return access(path, W_OK) == 0 ? NULL : strerror(errno);
    }
    if (errno != ENOENT) return strerror(errno);
    /* A new file: its directory must let us create it. */
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash) return access(".", W_OK | X_OK) == 0 ? NULL : strerror(errno);
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    if (n >= sizeof dir) return strerror(ENAMETOOLONG);
    memcpy(dir, path, n);
    dir[n] = '\0';
    return access(dir, W_OK | X_OK) == 0 ? NULL : strerror(errno);
}

typedef struct build {
    ferry_reverse_config *cfg;
    ferry_engine *engine;
    int check;             /* no listening, no logs opened */
    ferry_pool **pools;    /* by pool_def.index */
    ferry_router **routers; /* by listener, file order */
    char *err;
    size_t err_size;
} build;

static ferry_err build_pool(build *b, const pool_def *pd) {
    const ferry_reverse_config *c = b->cfg;
    ferry_pool *pool;
    ferry_err rc = ferry_pool_new(b->engine, pd->name, &pool);
    if (rc == FERRY_ESTATE)
        return say(c, 0, b->err, b->err_size, rc, "the engine has already started");
    if (rc)
        return say(c, pd->line, b->err, b->err_size, rc, "pool '%s': %s", pd->name,
                   ferry_strerror(rc));
    b->pools[pd->index] = pool;
    /* The balancer first, as a program would: consistent-hash rings then grow per backend. */
    rc = ferry_pool_set_balancer(pool, pd->balance, pd->balance_key);
    if (rc == FERRY_EINVAL)
        return say(c, pd->balance_line, b->err, b->err_size, FERRY_ECONFIG,
                   "balance: '%s' is not a valid %s name", pd->balance_key,
                   pd->balance == FERRY_BALANCE_HASH_HEADER ? "header" : "cookie");
    if (!rc && pd->sticky_name) {
        rc = ferry_pool_set_sticky_cookie(pool, pd->sticky_name, pd->sticky_secret);
        if (rc == FERRY_EINVAL)
            return say(c, pd->sticky_line, b->err, b->err_size, FERRY_ECONFIG,
                       "sticky-cookie: '%s' is not a valid cookie name (1-256 letters, digits "
                       "and !#$%%&'*+-.^_`|~)", pd->sticky_name);
    }
    if (!rc) rc = ferry_pool_set_health_check(pool, &pd->health);
    if (rc == FERRY_EINVAL)
        return say(c, pd->health_line, b->err, b->err_size, FERRY_ECONFIG,
                   "health-check: settings refused: %s", ferry_strerror(rc));
    if (!rc && pd->has_down_time) rc = ferry_pool_set_down_time(pool, pd->down_time_ms);
    if (!rc && pd->has_passive)
        rc = ferry_pool_set_passive_checks(pool, pd->max_fails, pd->passive_flags);
    if (!rc && pd->has_resolve_interval)
        rc = ferry_pool_set_resolve_interval(pool, pd->resolve_interval_ms);
    if (rc) /* out of memory: the values were checked when read */
        return say(c, pd->line, b->err, b->err_size, rc, "pool '%s': %s", pd->name,
                   ferry_strerror(rc));
    for (const backend_def *bd = pd->backends; bd; bd = bd->next) {
        rc = ferry_pool_add(pool, bd->address, bd->weight, NULL);
        if (rc == FERRY_ERESOLVE)
            return say(c, bd->line, b->err, b->err_size, FERRY_ECONFIG,
                       "backend: cannot resolve '%s'", bd->address);
        if (rc == FERRY_ELIMIT)
            return say(c, bd->line, b->err, b->err_size, FERRY_ECONFIG,
                       "backend: pool '%s' cannot take more (at most 65535 backends, and for "
                       "hash balancers a total weight of 13107)", pd->name);
        if (rc == FERRY_ENOMEM) return say(c, bd->line, b->err, b->err_size, rc, "out of memory");
        if (rc)
            return say(c, bd->line, b->err, b->err_size, FERRY_ECONFIG, "backend: '%s': %s",
                       bd->address, ferry_strerror(rc));
    }
    return FERRY_OK;
}

static ferry_err build_router(build *b, const listen_def *ld, ferry_router **out) {
    const ferry_reverse_config *c = b->cfg;
    ferry_err rc = ferry_router_new(&c->alloc, out);
    if (rc) return say(c, ld->line, b->err, b->err_size, rc, "out of memory");
    for (const route_def *rd = ld->routes; rd; rd = rd->next) {
        ferry_route_opts o = rd->opts;
        o.pool = b->pools[rd->pool->index];
        char msg[MSG_BYTES] = "";
        rc = ferry_router_add(*out, &o, msg, sizeof msg);
        if (rc == FERRY_ENOMEM) return say(c, rd->line, b->err, b->err_size, rc, "out of memory");
        if (rc)
            return say(c, rd->line, b->err, b->err_size, FERRY_ECONFIG, "route: %s",
                       msg[0] ? msg : ferry_strerror(rc));
    }
    return FERRY_OK;
}

/* The access log for path, opened once for every listener naming it. */
static ferry_err open_access_log(build *b, const listen_def *ld, ferry_logger **out) {
    ferry_reverse_config *c = b->cfg;
    for (const log_def *lg = c->logs; lg; lg = lg->next)
        if (strcmp(lg->path, ld->access_log) == 0) {
            *out = lg->logger;
            return FERRY_OK;
        }
    log_def *lg = arena_alloc(c, sizeof *lg);
    if (!lg) return say(c, ld->access_log_line, b->err, b->err_size, FERRY_ENOMEM, "out of memory");
    ferry_err rc = ferry_logger_new(ld->access_log, 0, &c->alloc, &lg->logger);
    if (rc == FERRY_ESYS)
        return say(c, ld->access_log_line, b->err, b->err_size, rc,
                   "access-log: cannot open '%s': %s", ld->access_log, strerror(errno));
    if (rc)
        return say(c, ld->access_log_line, b->err, b->err_size, rc, "access-log: '%s': %s",
                   ld->access_log, ferry_strerror(rc));
    lg->path = ld->access_log;
    lg->next = c->logs;
    c->logs = lg;
    *out = lg->logger;
    return FERRY_OK;
}

static ferry_err build_listener(build *b, listen_def *ld, unsigned index) {
    const ferry_reverse_config *c = b->cfg;
    ferry_listener_opts local = ld->opts, *o = b->check ? &local : &ld->opts;
    ferry_err rc;
    if (ld->mode == MODE_TCP) {
        o->direction = ferry_direction_reverse();
        o->direction_data = b->pools[ld->pool->index];
    } else {
        if ((rc = build_router(b, ld, &b->routers[index])) != FERRY_OK) return rc;
        o->direction = ferry_direction_router();
        o->direction_data = b->routers[index];
    }
    if (ld->access_log && b->check) {
        const char *why = unwritable(ld->access_log);
        if (why)
            return say(c, ld->access_log_line, b->err, b->err_size, FERRY_ECONFIG,
                       "access-log: cannot write '%s': %s", ld->access_log, why);
    } else if (ld->access_log && (rc = open_access_log(b, ld, &o->access_log)) != FERRY_OK) {
        return rc;
    }
    if (b->check) return FERRY_OK;
    rc = ferry_engine_listen(b->engine, o, &ld->listener);
    int saved = errno; /* what bind(2) or listen(2) said, for FERRY_ESYS */
    if (rc == FERRY_ENOMEM) return say(c, ld->line, b->err, b->err_size, rc, "out of memory");
    if (rc == FERRY_ESYS && saved)
        return say(c, ld->line, b->err, b->err_size, rc, "listen %s: %s", o->address,
                   strerror(saved));
    if (rc == FERRY_EINVAL) /* only options a program changed can be refused */
        return say(c, ld->line, b->err, b->err_size, FERRY_ECONFIG,
                   "listen %s: the engine refused the listener's options", o->address);
    if (rc)
        return say(c, ld->line, b->err, b->err_size, rc, "listen %s: %s", o->address,
                   ferry_strerror(rc));
    return FERRY_OK;
}

/* Pools first (backend names are resolved here), then every listener. */
static ferry_err build_all(build *b) {
    const ferry_reverse_config *c = b->cfg;
    /* Both counts are at least 1: reading refuses a file without listeners or pools. */
    b->pools = ferry__calloc(&c->alloc, c->npools * sizeof *b->pools);
    b->routers = ferry__calloc(&c->alloc, c->nlistens * sizeof *b->routers);
    if (!b->pools || !b->routers)
        return say(c, 0, b->err, b->err_size, FERRY_ENOMEM, "out of memory");
    ferry_err rc = FERRY_OK;
    for (const pool_def *pd = c->pools; !rc && pd; pd = pd->next) rc = build_pool(b, pd);
    unsigned index = 0;
    for (listen_def *ld = c->listens; !rc && ld; ld = ld->next) rc = build_listener(b, ld, index++);
    return rc;
}

ferry_err ferry_reverse_config_check(const ferry_reverse_config *config, char *err,
                                     size_t err_size) {
    if (!config) return ferry__conf_invalid_argument(err, err_size);
    /* Check mode writes nothing into it: only apply records what it opened. */
    ferry_reverse_config *c = (ferry_reverse_config *)config;
    if (c->error_log) {
        const char *why = unwritable(c->error_log);
        if (why)
            return say(c, c->error_log_line, err, err_size, FERRY_ECONFIG,
                       "error-log: cannot write '%s': %s", c->error_log, why);
    }
    ferry_engine_opts eo;
    ferry_engine_opts_init(&eo);
    eo.resolver_threads = 1; /* the private engine never runs: the least it can have */
    eo.allocator = &c->alloc;
    build b = {c, NULL, 1, NULL, NULL, err, err_size};
    ferry_err rc = ferry_engine_new(&eo, &b.engine);
    if (rc) return say(c, 0, err, err_size, rc, "cannot create an engine: %s", ferry_strerror(rc));
    rc = build_all(&b);
    ferry_engine_free(b.engine);
    for (unsigned i = 0; b.routers && i < c->nlistens; i++) ferry_router_free(b.routers[i]);
    ferry__free(&c->alloc, b.routers);
    ferry__free(&c->alloc, b.pools);
    return rc;
}

ferry_err ferry_reverse_config_apply(ferry_reverse_config *config, ferry_engine *engine, char *err,
                                     size_t err_size) {
    if (!config || !engine) return ferry__conf_invalid_argument(err, err_size);
    if (config->applied)
        return say(config, 0, err, err_size, FERRY_ESTATE, "the configuration is applied already");
    config->applied = 1;
    build b = {config, engine, 0, NULL, NULL, err, err_size};
    ferry_err rc = build_all(&b);
    /* Kept whatever happened: the engine may already use what was built. */
    config->built_pools = b.pools;
    unsigned index = 0;
    for (listen_def *ld = config->listens; b.routers && ld; ld = ld->next)
        ld->router = b.routers[index++];
    ferry__free(&config->alloc, b.routers);
    return rc;
}

ferry_err ferry_reverse_config_engine_opts(ferry_reverse_config *config, ferry_engine_opts *opts,
                                           char *err, size_t err_size) {
    if (!config || !opts) return ferry__conf_invalid_argument(err, err_size);
    ferry_reverse_config *c = config; /* short: it is used on every line */
    if (c->workers) opts->workers = c->workers;
    if (c->max_connections) opts->max_connections = c->max_connections;
    if (c->has_drain) opts->stop_drain_ms = c->drain_ms;
    if (!c->error_log) return FERRY_OK;
    if (!c->error_logger) {
        ferry_err rc = ferry_logger_new(c->error_log, 0, &c->alloc, &c->error_logger);
        if (rc == FERRY_ESYS)
            return say(c, c->error_log_line, err, err_size, rc, "error-log: cannot open '%s': %s",
                       c->error_log, strerror(errno));
        if (rc)
            return say(c, c->error_log_line, err, err_size, rc, "error-log: '%s': %s", c->error_log,
                       ferry_strerror(rc));
    }
    opts->log = ferry_logger_log_fn;
    opts->log_user_data = c->error_logger;
    return FERRY_OK;
}

/* ---- after apply ---- */

static listen_def *listener_at(const ferry_reverse_config *c, unsigned index) {
    listen_def *ld = c ? c->listens : NULL;
    while (ld && index--) ld = ld->next;
    return ld;
}

unsigned ferry_reverse_config_listener_count(const ferry_reverse_config *config) {
    return config ? config->nlistens : 0;
}

ferry_listener_opts *ferry_reverse_config_listener_opts(ferry_reverse_config *config,
                                                        unsigned index) {
    listen_def *ld = listener_at(config, index);
    return ld ? &ld->opts : NULL;
}

ferry_listener *ferry_reverse_config_listener(const ferry_reverse_config *config, unsigned index) {
    listen_def *ld = listener_at(config, index);
    return ld ? ld->listener : NULL;
}

ferry_router *ferry_reverse_config_router(const ferry_reverse_config *config, unsigned index) {
    listen_def *ld = listener_at(config, index);
    return ld ? ld->router : NULL;
}

ferry_pool *ferry_reverse_config_pool(const ferry_reverse_config *config, const char *name) {
    if (!config || !name || !config->built_pools) return NULL;
    const pool_def *pd = find_pool(config, name);
    return pd ? config->built_pools[pd->index] : NULL;
}

void ferry_reverse_config_free(ferry_reverse_config *config) {
    if (!config) return;
    const ferry_allocator a = config->alloc;
    for (listen_def *ld = config->listens; ld; ld = ld->next) ferry_router_free(ld->router);
    for (log_def *lg = config->logs; lg; lg = lg->next) ferry_logger_free(lg->logger);
    ferry_logger_free(config->error_logger);
    ferry__free(&a, config->built_pools);
    for (block *b = config->arena, *next; b; b = next) {
        next = b->next;
        ferry__free(&a, b);
    }
    ferry__free(&a, config);
}
