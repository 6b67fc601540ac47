/* reversed: a reverse proxy daemon on top of libferry. Accepts client connections on one
 * address and spreads them over a pool of backends (ferry_direction_reverse) with the
 * chosen balancer, optionally health-checked, failing over to the next backend when a
 * connect fails. With --config FILE everything comes from a configuration file instead
 * (several listeners, pools and routes), which the library reads and builds. */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "ferry.h"

#define PROG "reversed"

enum { DEFAULT_WORKERS = 1, MAX_WORKERS = 1024, DEFAULT_DRAIN_MS = 5000, MAX_WEIGHT = 1000,
       MAX_HEALTH_COUNT = 1000 };

/* Step results besides exit statuses (which are >= 0). */
enum { CONTINUE = -1, FINISHED = -2 /* --help or --version done: exit 0 */ };

typedef enum proxy_mode { MODE_UNSET, MODE_TCP, MODE_HTTP, MODE_SNI } proxy_mode;

typedef struct backend_spec {
    char address[FERRY_HOST_MAX + 16]; /* HOST:PORT, without the ",weight=N" */
    unsigned weight;
} backend_spec;

typedef struct config {
    const char *config_file;     /* --config; NULL: the flags say everything */
    int check_config;
    const char *flag_beside_config; /* the first flag that --config replaces, if any */
    const char *listen;          /* as given, for messages */
    daemon_addr listen_addr;
    backend_spec *backends;
    unsigned n_backends;
    ferry_balance balance;
    const char *balance_key;     /* header or cookie name; points into argv */
    ferry_health_opts health;    /* kind FERRY_HEALTH_NONE: no active checks */
    int health_tuned;            /* an interval, rise or fall was given */
    proxy_mode mode;
    unsigned workers;
    const char *access_log;      /* NULL: none */
    ferry_access_format access_format;
    unsigned connect_timeout_ms; /* 0: the engine's default */
    unsigned idle_timeout_ms;    /* 0: the engine's default */
    unsigned drain_ms;
    /* HTTP limits and timeouts; 0: the engine's default */
    unsigned header_timeout_ms, keepalive_timeout_ms, response_timeout_ms, body_timeout_ms;
    unsigned max_body_mib;
    int splice;
    const char *error_log;
    int accept_proxy;            /* --accept-proxy */
    int send_proxy;              /* --send-proxy v1|v2: 1 or 2; 0 none */
    char trusted[1024];          /* --trusted-proxy CIDRs, comma-separated; "" none */
} config;

enum {
    OPT_LISTEN = 256,
    OPT_BACKEND,
    OPT_MODE,
    OPT_WORKERS,
    OPT_ACCESS_LOG,
    OPT_ACCESS_FORMAT,
    OPT_CONNECT_TIMEOUT,
    OPT_IDLE_TIMEOUT,
    OPT_HEADER_TIMEOUT,
    OPT_KEEPALIVE_TIMEOUT,
    OPT_RESPONSE_TIMEOUT,
    OPT_BODY_TIMEOUT,
    OPT_MAX_BODY,
    OPT_DRAIN,
    OPT_NO_SPLICE,
    OPT_ERROR_LOG,
    OPT_LB,
    OPT_HEALTH_CHECK,
    OPT_HEALTH_INTERVAL,
    OPT_HEALTH_RISE,
    OPT_HEALTH_FALL,
    OPT_CONFIG,
    OPT_CHECK_CONFIG,
    OPT_ACCEPT_PROXY,
    OPT_SEND_PROXY,
    OPT_TRUSTED_PROXY
};

static const struct option long_options[] = {
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"backend", required_argument, NULL, OPT_BACKEND},
    {"mode", required_argument, NULL, OPT_MODE},
    {"workers", required_argument, NULL, OPT_WORKERS},
    {"access-log", required_argument, NULL, OPT_ACCESS_LOG},
    {"access-format", required_argument, NULL, OPT_ACCESS_FORMAT},
    {"connect-timeout", required_argument, NULL, OPT_CONNECT_TIMEOUT},
    {"idle-timeout", required_argument, NULL, OPT_IDLE_TIMEOUT},
    {"header-timeout", required_argument, NULL, OPT_HEADER_TIMEOUT},
    {"keepalive-timeout", required_argument, NULL, OPT_KEEPALIVE_TIMEOUT},
    {"response-timeout", required_argument, NULL, OPT_RESPONSE_TIMEOUT},
    {"body-timeout", required_argument, NULL, OPT_BODY_TIMEOUT},
    {"max-body", required_argument, NULL, OPT_MAX_BODY},
    {"drain", required_argument, NULL, OPT_DRAIN},
    {"no-splice", no_argument, NULL, OPT_NO_SPLICE},
    {"error-log", required_argument, NULL, OPT_ERROR_LOG},
    {"lb", required_argument, NULL, OPT_LB},
    {"health-check", required_argument, NULL, OPT_HEALTH_CHECK},
    {"health-interval", required_argument, NULL, OPT_HEALTH_INTERVAL},
    {"health-rise", required_argument, NULL, OPT_HEALTH_RISE},
    {"health-fall", required_argument, NULL, OPT_HEALTH_FALL},
    {"config", required_argument, NULL, OPT_CONFIG},
    {"check-config", no_argument, NULL, OPT_CHECK_CONFIG},
    {"accept-proxy", no_argument, NULL, OPT_ACCEPT_PROXY},
    {"send-proxy", required_argument, NULL, OPT_SEND_PROXY},
    {"trusted-proxy", required_argument, NULL, OPT_TRUSTED_PROXY},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};

static void print_usage(FILE *out) {
    /* Show the library's own defaults so the help text cannot drift from them. */
    ferry_listener_opts lo;
    ferry_listener_opts_init(&lo);
    ferry_health_opts ho;
    ferry_health_opts_init(&ho);
    fprintf(out,
        "Usage: " PROG " --listen ADDR:PORT --backend HOST:PORT [--backend ...]\n"
        "                --mode tcp|http|sni [options]\n"
        "       " PROG " --config FILE [--check-config]\n"
        "\n"
        "Reverse proxy: accepts connections on ADDR:PORT and spreads them over the\n"
        "backends (weighted round-robin unless --lb says otherwise), skipping a backend\n"
        "for a while after a failed connect, or while its health check fails, and\n"
        "failing over to the next one.\n"
        "\n"
        "Configuration file (format: doc/reverse-config.md):\n"
        "  --config FILE              read everything from FILE: backend pools, any\n"
        "                             number of http, tcp and sni listeners with routes\n"
        "                             by host and path, and what the flags below set;\n"
        "                             no other flag may be given with it; SIGHUP\n"
        "                             reads it again: new connections use the new\n"
        "                             configuration, live ones finish on the old one,\n"
        "                             and a file with an error is refused (logged) while\n"
        "                             the running configuration stays\n"
        "  --check-config             with --config: check the file completely (backend\n"
        "                             names are resolved; no port is bound, no log file\n"
        "                             created), say so and exit 0, or print FILE:LINE:\n"
        "                             message and exit 2\n"
        "\n"
        "Required without --config:\n"
        "  --listen ADDR:PORT         address to accept on: an IPv4 or [IPv6] literal;\n"
        "                             port 0 picks a free port (shown at start-up)\n"
        "  --backend HOST:PORT[,weight=N]\n"
        "                             a backend: IP literal or host name (resolved at\n"
        "                             start-up, then again every DNS TTL); weight 1-%u\n"
        "                             (default 1); repeat for more backends\n"
        "  --mode tcp|http|sni        tcp: relay bytes as they are; http: HTTP/1.1\n"
        "                             reverse proxy (strict parsing, keep-alive, pooled\n"
        "                             backend connections, X-Forwarded-For/-Proto/-Host);\n"
        "                             sni: TLS passed through untouched, the ClientHello's\n"
        "                             server name logged (route by name with --config)\n"
        "\n"
        "Options:\n"
        "  --workers N                worker threads, 1-%u (default %u)\n"
        "  --access-log FILE|-        append one line per session to FILE; '-' is\n"
        "                             stdout (default: no access log)\n"
        "  --access-format FORMAT     access log line format: text, json, or for\n"
        "                             --mode http also common, combined (default text)\n"
        "  --connect-timeout MS       limit per backend connect attempt (default %u)\n"
        "  --idle-timeout MS          close a session after MS with no byte either way\n"
        "                             (default %u)\n"
        "  --drain MS                 on SIGINT/SIGTERM stop accepting and give live\n"
        "                             sessions up to MS to finish (default %u);\n"
        "                             a second signal stops at once\n"
        "  --no-splice                relay through user-space buffers instead of\n"
        "                             zero-copy splice(2)\n"
        "  --error-log FILE|-|stderr  engine errors and warnings; '-' is stdout\n"
        "                             (default stderr)\n"
        "  --accept-proxy             clients start with a PROXY protocol v1/v2 header\n"
        "                             (from --trusted-proxy addresses only; loopback by\n"
        "                             default) naming the real client\n"
        "  --send-proxy v1|v2         start each backend connection with a PROXY header\n"
        "  --trusted-proxy CIDR       a proxy in front that may send PROXY headers and\n"
        "                             whose X-Forwarded-For/Forwarded are extended, not\n"
        "                             replaced (repeatable)\n"
        "\n"
        "Load balancing and health checks:\n"
        "  --lb ALGORITHM             roundrobin (default): smooth weighted round-robin;\n"
        "                             leastconn: fewest active sessions per weight;\n"
        "                             random2: the less loaded of two random picks;\n"
        "                             consistent hashing (a client keeps its backend):\n"
        "                             hash-ip on the client address, and with --mode http\n"
        "                             hash-uri, hash-header:NAME, hash-cookie:NAME\n"
        "                             (requests without the key go round-robin)\n"
        "  --health-check tcp|PATH    check every backend actively: tcp connects; PATH\n"
        "                             (starting with /) sends GET PATH and wants a 2xx or\n"
        "                             3xx answer; changes are logged to the error log\n"
        "  --health-interval MS       time between checks of a backend (default %u); a\n"
        "                             check times out after %u ms, or MS if shorter\n"
        "  --health-rise N            passes that bring a backend back (default %u)\n"
        "  --health-fall N            failures that take a backend out (default %u)\n"
        "\n"
        "HTTP mode:\n"
        "  --header-timeout MS        a client must send a whole request head within MS\n"
        "                             (default %u; answers 408)\n"
        "  --keepalive-timeout MS     close idle client connections after MS (default %u)\n"
        "  --response-timeout MS      wait for a backend's response head (default %u;\n"
        "                             answers 504)\n"
        "  --body-timeout MS          no body byte either way for MS closes (default %u)\n"
        "  --max-body MIB             largest request body in MiB (default %u; answers 413)\n"
        "\n"
        "  -h, --help                 show this help and exit\n"
        "  -V, --version              show the version and exit\n"
        "\n"
        "Exit status: 0 after a clean stop, 1 on a runtime error (such as the port\n"
        "being in use), 2 on a bad command line or configuration file.\n",
        (unsigned)MAX_WEIGHT, (unsigned)MAX_WORKERS, (unsigned)DEFAULT_WORKERS,
        lo.connect_timeout_ms, lo.idle_timeout_ms, (unsigned)DEFAULT_DRAIN_MS,
        ho.interval_ms, ho.timeout_ms, ho.rise, ho.fall, lo.header_timeout_ms,
        lo.keepalive_timeout_ms, lo.response_timeout_ms, lo.body_timeout_ms,
        (unsigned)(lo.max_body_bytes >> 20));
}

static int parse_mode(const char *text, proxy_mode *out) {
    if (strcmp(text, "tcp") == 0) *out = MODE_TCP;
    else if (strcmp(text, "http") == 0) *out = MODE_HTTP;
    else if (strcmp(text, "sni") == 0) *out = MODE_SNI;
    else return daemon_usage_error(PROG, "--mode '%s': expected tcp, http or sni", text);
    return 0;
}

static int parse_access_format(const char *text, ferry_access_format *out) {
    if (strcmp(text, "text") == 0) *out = FERRY_ACCESS_TEXT;
    else if (strcmp(text, "json") == 0) *out = FERRY_ACCESS_JSON;
    else if (strcmp(text, "common") == 0) *out = FERRY_ACCESS_COMMON;
    else if (strcmp(text, "combined") == 0) *out = FERRY_ACCESS_COMBINED;
    else return daemon_usage_error(PROG, "--access-format '%s': expected text, json, common or combined", text);
    return 0;
}

/* "HOST:PORT" or "HOST:PORT,weight=N". */
static int parse_backend(const char *text, backend_spec *out) {
    const char *comma = strchr(text, ',');
    size_t len = comma ? (size_t)(comma - text) : strlen(text);
    if (len >= sizeof out->address)
        return daemon_usage_error(PROG, "--backend '%s': address too long", text);
    memcpy(out->address, text, len);
    out->address[len] = '\0';
    out->weight = 1;
    if (comma && (strncmp(comma + 1, "weight=", 7) != 0 ||
                  daemon_parse_uint(comma + 8, 1, MAX_WEIGHT, &out->weight) != 0))
        return daemon_usage_error(PROG, "--backend '%s': expected HOST:PORT or HOST:PORT,weight=N "
                                  "(N 1-%u)", text, (unsigned)MAX_WEIGHT);
    return daemon_flag_addr(PROG, "--backend", out->address, DAEMON_ADDR_UPSTREAM, NULL);
}

static int parse_lb(const char *text, config *cfg) {
    static const struct {
        const char *name;
        ferry_balance kind;
    } plain[] = {{"roundrobin", FERRY_BALANCE_ROUND_ROBIN}, {"leastconn", FERRY_BALANCE_LEAST_CONN},
                 {"random2", FERRY_BALANCE_RANDOM2}, {"hash-ip", FERRY_BALANCE_HASH_CLIENT},
                 {"hash-uri", FERRY_BALANCE_HASH_URI}};
    cfg->balance_key = NULL;
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++)
        if (strcmp(text, plain[i].name) == 0) {
            cfg->balance = plain[i].kind;
            return 0;
        }
    if (strncmp(text, "hash-header:", 12) == 0 && text[12]) {
        cfg->balance = FERRY_BALANCE_HASH_HEADER;
        cfg->balance_key = text + 12;
    } else if (strncmp(text, "hash-cookie:", 12) == 0 && text[12]) {
        cfg->balance = FERRY_BALANCE_HASH_COOKIE;
        cfg->balance_key = text + 12;
    } else {
        return daemon_usage_error(PROG, "--lb '%s': expected roundrobin, leastconn, random2, "
                                  "hash-ip, hash-uri, hash-header:NAME or hash-cookie:NAME", text);
    }
    return 0;
}

static int parse_health_check(const char *text, ferry_health_opts *h) {
    if (strcmp(text, "tcp") == 0) {
        h->kind = FERRY_HEALTH_TCP;
        h->path = NULL;
    } else if (text[0] == '/') {
        h->kind = FERRY_HEALTH_HTTP;
        h->path = text;
    } else {
        return daemon_usage_error(PROG, "--health-check '%s': expected tcp or a path starting "
                                  "with /", text);
    }
    return 0;
}

static int parse_path(const char *flag, const char *text, const char **out) {
    if (!*text) return daemon_usage_error(PROG, "%s: empty file name", flag);
    *out = text;
    return 0;
}

/* One option. Returns 0 to go on, FINISHED after --help/--version, or an exit status for
 * a bad option. */
static int apply_option(config *cfg, int c, char *const argv[]) {
    switch (c) {
    case OPT_LISTEN:
        if (cfg->listen)
            return daemon_usage_error(PROG, "--listen given twice; one listener per process");
        cfg->listen = optarg;
        return daemon_flag_addr(PROG, "--listen", optarg, DAEMON_ADDR_LISTEN, &cfg->listen_addr);
    case OPT_BACKEND: {
        int rc = parse_backend(optarg, &cfg->backends[cfg->n_backends]);
        if (rc == 0) cfg->n_backends++;
        return rc;
    }
    case OPT_MODE:
        return parse_mode(optarg, &cfg->mode);
    case OPT_ACCEPT_PROXY:
        cfg->accept_proxy = 1;
        return 0;
    case OPT_SEND_PROXY:
        if (strcmp(optarg, "v1") != 0 && strcmp(optarg, "v2") != 0)
            return daemon_usage_error(PROG, "--send-proxy '%s': expected v1 or v2", optarg);
        cfg->send_proxy = optarg[1] - '0';
        return 0;
    case OPT_TRUSTED_PROXY: {
        size_t used = strlen(cfg->trusted), n = strlen(optarg);
        if (!n || strchr(optarg, ',') || used + n + 2 > sizeof cfg->trusted)
            return daemon_usage_error(PROG, "--trusted-proxy: one CIDR per flag, e.g. 10.0.0.0/8");
        if (used) cfg->trusted[used++] = ',';
        memcpy(cfg->trusted + used, optarg, n + 1);
        return 0;
    }
    case OPT_WORKERS:
        return daemon_flag_uint(PROG, "--workers", optarg, 1, MAX_WORKERS, &cfg->workers);
    case OPT_ACCESS_LOG:
        return parse_path("--access-log", optarg, &cfg->access_log);
    case OPT_ACCESS_FORMAT:
        return parse_access_format(optarg, &cfg->access_format);
    case OPT_CONNECT_TIMEOUT:
        return daemon_flag_uint(PROG, "--connect-timeout", optarg, 1, UINT_MAX,
                                &cfg->connect_timeout_ms);
    case OPT_IDLE_TIMEOUT:
        return daemon_flag_uint(PROG, "--idle-timeout", optarg, 1, UINT_MAX,
                                &cfg->idle_timeout_ms);
    case OPT_HEADER_TIMEOUT:
        return daemon_flag_uint(PROG, "--header-timeout", optarg, 1, UINT_MAX, &cfg->header_timeout_ms);
    case OPT_KEEPALIVE_TIMEOUT:
        return daemon_flag_uint(PROG, "--keepalive-timeout", optarg, 1, UINT_MAX,
                                &cfg->keepalive_timeout_ms);
    case OPT_RESPONSE_TIMEOUT:
        return daemon_flag_uint(PROG, "--response-timeout", optarg, 1, UINT_MAX,
                                &cfg->response_timeout_ms);
    case OPT_BODY_TIMEOUT:
        return daemon_flag_uint(PROG, "--body-timeout", optarg, 1, UINT_MAX, &cfg->body_timeout_ms);
    case OPT_MAX_BODY:
        return daemon_flag_uint(PROG, "--max-body", optarg, 1, 1u << 20, &cfg->max_body_mib);
    case OPT_DRAIN:
        return daemon_flag_uint(PROG, "--drain", optarg, 0, UINT_MAX, &cfg->drain_ms);
    case OPT_NO_SPLICE:
        cfg->splice = 0;
        return 0;
    case OPT_ERROR_LOG:
        return parse_path("--error-log", optarg, &cfg->error_log);
    case OPT_LB:
        return parse_lb(optarg, cfg);
    case OPT_HEALTH_CHECK:
        return parse_health_check(optarg, &cfg->health);
    case OPT_HEALTH_INTERVAL:
        cfg->health_tuned = 1;
        return daemon_flag_uint(PROG, "--health-interval", optarg, 1, UINT_MAX,
                                &cfg->health.interval_ms);
    case OPT_HEALTH_RISE:
        cfg->health_tuned = 1;
        return daemon_flag_uint(PROG, "--health-rise", optarg, 1, MAX_HEALTH_COUNT,
                                &cfg->health.rise);
    case OPT_HEALTH_FALL:
        cfg->health_tuned = 1;
        return daemon_flag_uint(PROG, "--health-fall", optarg, 1, MAX_HEALTH_COUNT,
                                &cfg->health.fall);
    case OPT_CONFIG:
        if (!*optarg) return daemon_usage_error(PROG, "--config: empty file name");
        cfg->config_file = optarg;
        return 0;
    case OPT_CHECK_CONFIG:
        cfg->check_config = 1;
        return 0;
    case 'h':
        print_usage(stdout);
        return FINISHED;
    case 'V':
        printf(PROG " (ferry) %s\n", ferry_version());
        return FINISHED;
    default:
        return daemon_getopt_error(PROG, c, argv, long_options);
    }
}

/* Fill cfg from the command line. Returns CONTINUE to run, else the exit status. */
static int parse_args(int argc, char *argv[], config *cfg) {
    opterr = 0; /* daemon_getopt_error() words the messages */
    int c;
    while ((c = getopt_long(argc, argv, ":hV", long_options, NULL)) != -1) {
        int rc = apply_option(cfg, c, argv);
        if (rc == FINISHED) return DAEMON_EXIT_OK;
        if (rc != 0) return rc;
        int replaced = c != OPT_CONFIG && c != OPT_CHECK_CONFIG; /* by the file */
        for (const struct option *o = long_options; replaced && o->name; o++)
            if (o->val == c && !cfg->flag_beside_config) cfg->flag_beside_config = o->name;
    }
    if (optind < argc)
        return daemon_usage_error(PROG, "unexpected argument '%s'", argv[optind]);
    /* One source of truth: a flag next to the file would leave it unclear which wins. */
    if (cfg->config_file && cfg->flag_beside_config)
        return daemon_usage_error(PROG, "--%s cannot be combined with --config: the file "
                                  "sets everything (see doc/reverse-config.md)",
                                  cfg->flag_beside_config);
    if (cfg->check_config && !cfg->config_file)
        return daemon_usage_error(PROG, "--check-config needs --config FILE");
    if (cfg->config_file) return CONTINUE;
    if (!cfg->listen) return daemon_usage_error(PROG, "missing --listen ADDR:PORT");
    if (cfg->n_backends == 0)
        return daemon_usage_error(PROG, "missing --backend HOST:PORT (at least one)");
    if (cfg->mode == MODE_UNSET) return daemon_usage_error(PROG, "missing --mode tcp|http|sni");
    if (cfg->mode != MODE_HTTP && (cfg->balance == FERRY_BALANCE_HASH_URI ||
                                  cfg->balance == FERRY_BALANCE_HASH_HEADER ||
                                  cfg->balance == FERRY_BALANCE_HASH_COOKIE))
        return daemon_usage_error(PROG, "--lb hash-uri, hash-header and hash-cookie need "
                                  "--mode http");
    if (cfg->health_tuned && cfg->health.kind == FERRY_HEALTH_NONE)
        return daemon_usage_error(PROG, "--health-interval, --health-rise and --health-fall "
                                  "need --health-check");
    /* A check may take as long as the interval, not more: the next one is due then. */
    if (cfg->health.timeout_ms > cfg->health.interval_ms)
        cfg->health.timeout_ms = cfg->health.interval_ms;
    return CONTINUE;
}

static ferry_err open_loggers(const config *cfg, ferry_logger **error_log,
                              ferry_logger **access_log) {
    ferry_err err = daemon_open_logger(PROG, "error log", cfg->error_log, error_log);
    if (err != FERRY_OK || !cfg->access_log) return err;
    return daemon_open_logger(PROG, "access log", cfg->access_log, access_log);
}

/* The engine with its backend pool, ready to listen. Returns CONTINUE or an exit status. */
static int build_engine(const config *cfg, ferry_logger *error_log, ferry_engine **engine,
                        ferry_pool **pool) {
    ferry_engine_opts eo;
    ferry_engine_opts_init(&eo);
    eo.workers = cfg->workers;
    eo.stop_drain_ms = cfg->drain_ms;
    eo.log = ferry_logger_log_fn;
    eo.log_user_data = error_log;
    ferry_err err = ferry_engine_new(&eo, engine);
    if (err != FERRY_OK) return daemon_fail(PROG, "cannot create engine: %s", ferry_strerror(err));
    err = ferry_pool_new(*engine, "backends", pool);
    if (err == FERRY_OK) err = ferry_pool_set_balancer(*pool, cfg->balance, cfg->balance_key);
    if (err == FERRY_EINVAL) /* a header or cookie name the library refuses */
        return daemon_usage_error(PROG, "--lb: invalid name '%s'", cfg->balance_key);
    if (err == FERRY_OK) err = ferry_pool_set_health_check(*pool, &cfg->health);
    if (err != FERRY_OK)
        return daemon_fail(PROG, "cannot create backend pool: %s", ferry_strerror(err));
    for (unsigned i = 0; i < cfg->n_backends; i++) {
        const char *b = cfg->backends[i].address;
        err = ferry_pool_add(*pool, b, cfg->backends[i].weight, NULL);
        if (err == FERRY_EADDR) /* only the library knows every rule; still the user's input */
            return daemon_usage_error(PROG, "--backend '%s': %s", b, ferry_strerror(err));
        if (err != FERRY_OK)
            return daemon_fail(PROG, "--backend '%s': %s", b, ferry_strerror(err));
    }
    return CONTINUE;
}

static ferry_err listen_on(const config *cfg, ferry_engine *engine, ferry_pool *pool,
                           ferry_logger *access_log, ferry_listener **listener) {
    ferry_listener_opts lo;
    ferry_listener_opts_init(&lo);
    lo.address = cfg->listen;
    lo.protocol = cfg->mode == MODE_HTTP  ? FERRY_PROTO_HTTP
                  : cfg->mode == MODE_SNI ? FERRY_PROTO_SNI
                                          : FERRY_PROTO_TCP;
    lo.accept_proxy = cfg->accept_proxy;
    lo.send_proxy = cfg->send_proxy;
    if (cfg->trusted[0]) lo.proxy_trusted = lo.trusted_forwarders = cfg->trusted;
    lo.direction = ferry_direction_reverse();
    lo.direction_data = pool;
    if (cfg->connect_timeout_ms) lo.connect_timeout_ms = cfg->connect_timeout_ms;
    if (cfg->idle_timeout_ms) lo.idle_timeout_ms = cfg->idle_timeout_ms;
    if (cfg->header_timeout_ms) lo.header_timeout_ms = cfg->header_timeout_ms;
    if (cfg->keepalive_timeout_ms) lo.keepalive_timeout_ms = cfg->keepalive_timeout_ms;
    if (cfg->response_timeout_ms) lo.response_timeout_ms = cfg->response_timeout_ms;
    if (cfg->body_timeout_ms) lo.body_timeout_ms = cfg->body_timeout_ms;
    if (cfg->max_body_mib) lo.max_body_bytes = (uint64_t)cfg->max_body_mib << 20;
    lo.splice = cfg->splice;
    lo.access_log = access_log;
    lo.access_format = cfg->access_format;
    return ferry_engine_listen(engine, &lo, listener);
}

static void announce(const config *cfg, const ferry_listener *listener) {
    char addr[FERRY_HOST_MAX + 16];
    /* The bound port, not the asked one: --listen with port 0 picks a free port. */
    daemon_format_addr(cfg->listen_addr.host, ferry_listener_port(listener), addr, sizeof addr);
    fprintf(stderr, PROG ": listening on %s (%s, %u backend%s, %u worker%s)\n", addr,
            cfg->mode == MODE_HTTP ? "http" : cfg->mode == MODE_SNI ? "sni" : "tcp",
            cfg->n_backends, cfg->n_backends == 1 ? "" : "s", cfg->workers,
            cfg->workers == 1 ? "" : "s");
}

static int run(const config *cfg) {
    daemon_raise_nofile_limit(PROG);
    daemon_signals_block(); /* before the loggers and the engine start their threads */

    ferry_logger *error_log = NULL, *access_log = NULL;
    ferry_engine *engine = NULL;
    ferry_pool *pool = NULL;
    ferry_listener *listener = NULL;
    ferry_err err;
    int status = DAEMON_EXIT_FAIL;
    if (open_loggers(cfg, &error_log, &access_log) != FERRY_OK) goto out;
    status = build_engine(cfg, error_log, &engine, &pool);
    if (status != CONTINUE) goto out;
    err = listen_on(cfg, engine, pool, access_log, &listener);
    if (err != FERRY_OK) {
        status = daemon_fail(PROG, "cannot listen on %s: %s", cfg->listen, ferry_strerror(err));
        goto out;
    }
    announce(cfg, listener);
    status = daemon_serve(PROG, &engine, NULL);
out:
    ferry_engine_free(engine); /* before the loggers: it may still log while stopping */
    ferry_logger_free(access_log);
    ferry_logger_free(error_log);
    return status;
}

/* ---- --config FILE ---- */

static void announce_file(ferry_reverse_config *rc, unsigned workers) {
    for (unsigned i = 0; i < ferry_reverse_config_listener_count(rc); i++) {
        const ferry_listener_opts *o = ferry_reverse_config_listener_opts(rc, i);
        const ferry_router *router = ferry_reverse_config_router(rc, i);
        daemon_addr a;
        char addr[FERRY_HOST_MAX + 16], what[64];
        /* The bound port, not the asked one: port 0 picks a free port. */
        if (daemon_check_addr(o->address, DAEMON_ADDR_LISTEN, &a) != NULL) continue;
        daemon_format_addr(a.host, ferry_listener_port(ferry_reverse_config_listener(rc, i)),
                           addr, sizeof addr);
        if (router)
            snprintf(what, sizeof what, "%s, %u route%s",
                     o->protocol == FERRY_PROTO_SNI ? "sni" : "http", ferry_router_size(router),
                     ferry_router_size(router) == 1 ? "" : "s");
        else
            snprintf(what, sizeof what, "tcp");
        fprintf(stderr, PROG ": listening on %s (%s, %u worker%s)\n", addr, what, workers,
                workers == 1 ? "" : "s");
    }
}

/* What serving a configuration file keeps between reloads. */
typedef struct file_state {
    const char *path;
    ferry_reverse_config *rc;  /* the running engine's configuration */
    ferry_logger *stderr_log;  /* the error log of configurations without error-log */
} file_state;

/* Build `rc` on a new engine (*out, also on error: free it) that takes over the listening
 * sockets of `previous` (NULL at start-up). Reports into err. */
static ferry_err build_from_file(file_state *fs, ferry_reverse_config *rc, ferry_engine *previous,
                                 ferry_engine **out, unsigned *workers, char *err, size_t size) {
    ferry_engine_opts eo;
    ferry_engine_opts_init(&eo);
    ferry_err e = ferry_reverse_config_engine_opts(rc, &eo, err, size);
    if (e != FERRY_OK) return e;
    if (!eo.log) { /* no error-log line: stderr, as without --config */
        if (!fs->stderr_log &&
            daemon_open_logger(PROG, "error log", "stderr", &fs->stderr_log) != FERRY_OK) {
            snprintf(err, size, "cannot open the error log on stderr");
            return FERRY_ESYS;
        }
        eo.log = ferry_logger_log_fn;
        eo.log_user_data = fs->stderr_log;
    }
    *workers = eo.workers;
    e = ferry_engine_new(&eo, out);
    if (e != FERRY_OK) {
        snprintf(err, size, "cannot create engine: %s", ferry_strerror(e));
        return e;
    }
    if (previous) ferry_engine_take_listeners(*out, previous);
    return ferry_reverse_config_apply(rc, *out, err, size);
}

/* SIGHUP: read the file again and start a new engine on it, which takes the listening
 * sockets over; the running one then drains on the old configuration. */
static ferry_engine *reload_file(void *ctx, ferry_engine *running, void **retired) {
    file_state *fs = ctx;
    char err[1024];
    ferry_reverse_config *rc = NULL;
    ferry_engine *engine = NULL;
    unsigned workers = 0;
    ferry_err e = ferry_reverse_config_load(fs->path, NULL, &rc, err, sizeof err);
    if (e == FERRY_OK) e = build_from_file(fs, rc, running, &engine, &workers, err, sizeof err);
    if (e == FERRY_OK && (e = ferry_engine_start(engine)) != FERRY_OK)
        snprintf(err, sizeof err, "cannot start engine: %s", ferry_strerror(e));
    if (e != FERRY_OK) {
        fprintf(stderr, PROG ": reload refused, the running configuration stays: %s\n", err);
        ferry_engine_free(engine);
        ferry_reverse_config_free(rc);
        return NULL;
    }
    fprintf(stderr, PROG ": %s: configuration reloaded\n", fs->path);
    announce_file(rc, workers);
    *retired = fs->rc;
    fs->rc = rc;
    return engine;
}

static void retire_file(void *ctx, void *retired) {
    (void)ctx;
    ferry_reverse_config_free(retired);
}

/* Everything from the file, which the library reads, checks and builds. */
static int run_file(const config *cfg) {
    char err[1024];
    file_state fs = {.path = cfg->config_file};
    ferry_err e = ferry_reverse_config_load(cfg->config_file, NULL, &fs.rc, err, sizeof err);
    if (e == FERRY_OK && cfg->check_config) e = ferry_reverse_config_check(fs.rc, err, sizeof err);
    if (e != FERRY_OK) {
        fprintf(stderr, PROG ": %s\n", err);
        ferry_reverse_config_free(fs.rc);
        return e == FERRY_ENOMEM ? DAEMON_EXIT_FAIL : DAEMON_EXIT_USAGE;
    }
    if (cfg->check_config) {
        fprintf(stderr, PROG ": %s: configuration OK\n", cfg->config_file);
        ferry_reverse_config_free(fs.rc);
        return DAEMON_EXIT_OK;
    }
    daemon_raise_nofile_limit(PROG);
    daemon_signals_block(); /* before the loggers and the engine start their threads */

    ferry_engine *engine = NULL;
    unsigned workers = 0;
    int status;
    e = build_from_file(&fs, fs.rc, NULL, &engine, &workers, err, sizeof err);
    if (e != FERRY_OK) {
        fprintf(stderr, PROG ": %s\n", err);
        /* The file's fault (a name that does not resolve) or the moment's (a port in use). */
        status = e == FERRY_ECONFIG ? DAEMON_EXIT_USAGE : DAEMON_EXIT_FAIL;
    } else {
        announce_file(fs.rc, workers);
        daemon_reloader reloader = {.reload = reload_file, .retire = retire_file, .ctx = &fs};
        status = daemon_serve(PROG, &engine, &reloader);
    }
    ferry_engine_free(engine); /* before the logs: it may still log while stopping */
    ferry_reverse_config_free(fs.rc);
    ferry_logger_free(fs.stderr_log);
    return status;
}

int main(int argc, char *argv[]) {
    config cfg = {
        .workers = DEFAULT_WORKERS,
        .access_format = FERRY_ACCESS_TEXT,
        .drain_ms = DEFAULT_DRAIN_MS,
        .splice = 1,
        .error_log = "stderr",
        .balance = FERRY_BALANCE_ROUND_ROBIN,
    };
    ferry_health_opts_init(&cfg.health);
    /* Every --backend fits: there are fewer than argc of them. */
    cfg.backends = calloc((size_t)argc, sizeof *cfg.backends);
    if (!cfg.backends) return daemon_fail(PROG, "out of memory");
    int status = parse_args(argc, argv, &cfg);
    if (status == CONTINUE) status = cfg.config_file ? run_file(&cfg) : run(&cfg);
    free(cfg.backends);
    return status;
}
