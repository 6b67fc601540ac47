/* forwardd: the forward proxy daemon. Clients name the destination (HTTP absolute-form,
 * CONNECT, SOCKS4/4a/5, all on one port); the forward policy decides who may go where,
 * through which parent, and what the origin learns about the client. */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "ferry.h"

#define PROG "forwardd"

enum { DEFAULT_WORKERS = 1, MAX_WORKERS = 256, MAX_LISTENERS = 16, MAX_PARENTS = 16 };
static const char DEFAULT_LISTEN[] = "127.0.0.1:3128";

/* Step results besides exit statuses (which are >= 0). */
enum { CONTINUE = -1, FINISHED = -2 /* --help or --version done: exit 0 */ };

enum {
    OPT_LISTEN = 256,
    OPT_ALLOW_CLIENT,
    OPT_ALLOW_DEST,
    OPT_DENY_HOST,
    OPT_CONNECT_PORTS,
    OPT_PARENT,
    OPT_AUTH_FILE,
    OPT_ANONYMITY,
    OPT_CONFIG,
    OPT_CHECK_CONFIG,
    OPT_WORKERS,
    OPT_ACCESS_LOG,
    OPT_ACCESS_FORMAT,
    OPT_ERROR_LOG,
    OPT_PROTOCOLS,
    OPT_CONNECT_TIMEOUT,
    OPT_IDLE_TIMEOUT,
    OPT_HEADER_TIMEOUT,
};

static const struct option long_options[] = {
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"allow-client", required_argument, NULL, OPT_ALLOW_CLIENT},
    {"allow-dest", required_argument, NULL, OPT_ALLOW_DEST},
    {"deny-host", required_argument, NULL, OPT_DENY_HOST},
    {"connect-ports", required_argument, NULL, OPT_CONNECT_PORTS},
    {"parent", required_argument, NULL, OPT_PARENT},
    {"auth-file", required_argument, NULL, OPT_AUTH_FILE},
    {"anonymity", required_argument, NULL, OPT_ANONYMITY},
    {"config", required_argument, NULL, OPT_CONFIG},
    {"check-config", no_argument, NULL, OPT_CHECK_CONFIG},
    {"workers", required_argument, NULL, OPT_WORKERS},
    {"access-log", required_argument, NULL, OPT_ACCESS_LOG},
    {"access-format", required_argument, NULL, OPT_ACCESS_FORMAT},
    {"error-log", required_argument, NULL, OPT_ERROR_LOG},
    {"protocols", required_argument, NULL, OPT_PROTOCOLS},
    {"connect-timeout", required_argument, NULL, OPT_CONNECT_TIMEOUT},
    {"idle-timeout", required_argument, NULL, OPT_IDLE_TIMEOUT},
    {"header-timeout", required_argument, NULL, OPT_HEADER_TIMEOUT},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};

typedef struct config {
    ferry_forward *fwd;
    const char *listen[MAX_LISTENERS];
    unsigned n_listen;
    unsigned workers; /* 0: the config file's, else DEFAULT_WORKERS */
    const char *access_log;
    int access_format;
    const char *error_log;
    const char *config_file;
    int check_only;
    ferry_protocol protocol;
    unsigned n_parents;
    char parent_names[MAX_PARENTS][16];
    unsigned connect_timeout_ms, idle_timeout_ms, header_timeout_ms;
} config;

static void print_usage(FILE *out) {
    fprintf(out,
        "Usage: " PROG " [--listen ADDR:PORT] [options]\n"
        "\n"
        "Forward proxy: clients name the destination. HTTP (absolute-form and CONNECT)\n"
        "and SOCKS4/4a/5 are served on the same port. By default only loopback and\n"
        "private clients are served, CONNECT reaches port 443 only, and loopback,\n"
        "link-local and multicast destinations are refused.\n"
        "\n"
        "  --listen ADDR:PORT         accept on this IPv4 or [IPv6] literal (repeatable;\n"
        "                             default %s)\n"
        "  --protocols http,socks     what the port speaks (default both)\n"
        "  --allow-client CIDR        serve clients from CIDR (repeatable; replaces the\n"
        "                             loopback+private default)\n"
        "  --allow-dest CIDR          allow destinations in CIDR although refused by\n"
        "                             default (e.g. 127.0.0.0/8)\n"
        "  --deny-host PATTERN        refuse destinations: name, .suffix or glob\n"
        "                             (repeatable)\n"
        "  --connect-ports LIST       ports CONNECT may reach, e.g. 443,8443 (default 443)\n"
        "  --parent URL               send requests through http://[user:pass@]host:port\n"
        "                             or socks5://...; repeat for failover, in order\n"
        "  --auth-file FILE           require credentials: user:password lines\n"
        "  --anonymity LEVEL          transparent, anonymous (default) or strict\n"
        "  --config FILE              read settings and access rules from FILE (see\n"
        "                             doc/forward-config.md); flags add to it\n"
        "  --check-config             validate the configuration and exit\n"
        "  --workers N                worker threads, 1-%u (default %u)\n"
        "  --access-log FILE|-        one line per request or session; '-' is stdout\n"
        "  --access-format FMT        text (default), json, common or combined\n"
        "  --error-log FILE|stderr    where warnings and denials go (default stderr)\n"
        "  --connect-timeout MS       per upstream connect attempt (default 5000)\n"
        "  --idle-timeout MS          tunnels idle this long close (default 300000)\n"
        "  --header-timeout MS        a request head or SOCKS handshake must arrive\n"
        "                             within this (default 10000)\n"
        "  -h, --help                 show this help and exit\n"
        "  -V, --version              show the version and exit\n",
        DEFAULT_LISTEN, (unsigned)MAX_WORKERS, (unsigned)DEFAULT_WORKERS);
}

static int parse_access_format(const char *text, int *out) {
    static const char *const names[] = {"text", "json", "common", "combined"};
    static const int formats[] = {FERRY_ACCESS_TEXT, FERRY_ACCESS_JSON, FERRY_ACCESS_COMMON,
                                  FERRY_ACCESS_COMBINED};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(text, names[i]) == 0) {
            *out = formats[i];
            return 0;
        }
    return daemon_usage_error(PROG, "--access-format: expected text, json, common or combined");
}

static int parse_protocols(const char *text, ferry_protocol *out) {
    if (strcmp(text, "http") == 0)
        *out = FERRY_PROTO_HTTP;
    else if (strcmp(text, "socks") == 0)
        *out = FERRY_PROTO_SOCKS;
    else if (strcmp(text, "http,socks") == 0 || strcmp(text, "socks,http") == 0)
        *out = FERRY_PROTO_HTTP_SOCKS;
    else
        return daemon_usage_error(PROG, "--protocols: expected http, socks or http,socks");
    return 0;
}

/* A policy setter's verdict on a flag's value. */
static int policy_flag(const char *flag, const char *value, ferry_err err, const char *msg) {
    if (err == FERRY_OK) return 0;
    if (err == FERRY_ENOMEM) return daemon_fail(PROG, "out of memory");
    return daemon_usage_error(PROG, "%s '%s': %s", flag, value, msg && *msg ? msg : ferry_strerror(err));
}

static int add_parent(config *cfg, const char *url) {
    if (cfg->n_parents == MAX_PARENTS)
        return daemon_usage_error(PROG, "--parent: at most %u parents", (unsigned)MAX_PARENTS);
    char *name = cfg->parent_names[cfg->n_parents];
    snprintf(name, sizeof cfg->parent_names[0], "parent%u", cfg->n_parents + 1);
    char msg[256] = "";
    ferry_err err = ferry_forward_add_parent(cfg->fwd, name, url, msg, sizeof msg);
    if (err == FERRY_OK) cfg->n_parents++;
    return policy_flag("--parent", url, err, msg);
}

static int set_anonymity(config *cfg, const char *level) {
    static const char *const names[] = {"transparent", "anonymous", "strict"};
    for (int i = 0; i < 3; i++)
        if (strcmp(level, names[i]) == 0)
            return policy_flag("--anonymity", level,
                               ferry_forward_set_anonymity(cfg->fwd, (ferry_anonymity)i), NULL);
    return daemon_usage_error(PROG, "--anonymity: expected transparent, anonymous or strict");
}

/* One option. Returns 0 to go on, FINISHED after --help/--version, or an exit status. */
static int apply_option(config *cfg, int c, char *const argv[]) {
    char msg[256] = "";
    char rule[FERRY_HOST_MAX + 16];
    switch (c) {
    case OPT_LISTEN:
        if (cfg->n_listen == MAX_LISTENERS)
            return daemon_usage_error(PROG, "--listen: at most %u addresses", (unsigned)MAX_LISTENERS);
        cfg->listen[cfg->n_listen++] = optarg;
        return daemon_flag_addr(PROG, "--listen", optarg, DAEMON_ADDR_LISTEN, NULL);
    case OPT_PROTOCOLS: return parse_protocols(optarg, &cfg->protocol);
    case OPT_ALLOW_CLIENT:
        return policy_flag("--allow-client", optarg, ferry_forward_allow_client(cfg->fwd, optarg), NULL);
    case OPT_ALLOW_DEST:
        return policy_flag("--allow-dest", optarg, ferry_forward_allow_dest(cfg->fwd, optarg), NULL);
    case OPT_DENY_HOST:
        if (!*optarg || strpbrk(optarg, " \t,"))
            return daemon_usage_error(PROG, "--deny-host: one pattern without spaces or commas");
        if (snprintf(rule, sizeof rule, "deny host %s", optarg) >= (int)sizeof rule)
            return daemon_usage_error(PROG, "--deny-host: pattern too long");
        return policy_flag("--deny-host", optarg,
                           ferry_forward_add_rule(cfg->fwd, rule, msg, sizeof msg), msg);
    case OPT_CONNECT_PORTS:
        return policy_flag("--connect-ports", optarg,
                           ferry_forward_set_connect_ports(cfg->fwd, optarg), NULL);
    case OPT_PARENT: return add_parent(cfg, optarg);
    case OPT_AUTH_FILE: {
        ferry_err err = ferry_forward_load_users(cfg->fwd, optarg, msg, sizeof msg);
        if (err == FERRY_OK) return 0;
        return err == FERRY_ENOMEM ? daemon_fail(PROG, "out of memory")
                                   : daemon_usage_error(PROG, "--auth-file: %s", msg);
    }
    case OPT_ANONYMITY: return set_anonymity(cfg, optarg);
    case OPT_CONFIG: return 0; /* read first, in parse_args */
    case OPT_CHECK_CONFIG: cfg->check_only = 1; return 0;
    case OPT_WORKERS: return daemon_flag_uint(PROG, "--workers", optarg, 1, MAX_WORKERS, &cfg->workers);
    case OPT_ACCESS_LOG:
        if (!*optarg) return daemon_usage_error(PROG, "--access-log: empty file name");
        cfg->access_log = optarg;
        return 0;
    case OPT_ACCESS_FORMAT: return parse_access_format(optarg, &cfg->access_format);
    case OPT_ERROR_LOG:
        if (!*optarg) return daemon_usage_error(PROG, "--error-log: empty file name");
        cfg->error_log = optarg;
        return 0;
    case OPT_CONNECT_TIMEOUT:
        return daemon_flag_uint(PROG, "--connect-timeout", optarg, 1, UINT_MAX, &cfg->connect_timeout_ms);
    case OPT_IDLE_TIMEOUT:
        return daemon_flag_uint(PROG, "--idle-timeout", optarg, 1, UINT_MAX, &cfg->idle_timeout_ms);
    case OPT_HEADER_TIMEOUT:
        return daemon_flag_uint(PROG, "--header-timeout", optarg, 1, UINT_MAX, &cfg->header_timeout_ms);
    case 'h': print_usage(stdout); return FINISHED;
    case 'V': printf(PROG " (ferry) %s\n", ferry_version()); return FINISHED;
    default: return daemon_getopt_error(PROG, c, argv, long_options);
    }
}

/* The configuration file goes first wherever --config appears, so flags add to it. */
static int read_config_file(config *cfg, int argc, char *argv[]) {
    for (int i = 1; i < argc; i++) {
        const char *path = NULL;
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            path = argv[++i];
        else if (strncmp(argv[i], "--config=", 9) == 0)
            path = argv[i] + 9;
        if (!path) continue;
        if (cfg->config_file) return daemon_usage_error(PROG, "--config given twice");
        cfg->config_file = path;
        char msg[512] = "";
        ferry_err err = ferry_forward_load_config(cfg->fwd, path, msg, sizeof msg);
        if (err == FERRY_ENOMEM) return daemon_fail(PROG, "out of memory");
        if (err != FERRY_OK) {
            fprintf(stderr, PROG ": %s\n", msg);
            return DAEMON_EXIT_USAGE;
        }
    }
    return 0;
}

/* Fill cfg from the configuration file and the command line. Returns CONTINUE to run,
 * else the exit status. */
static int parse_args(int argc, char *argv[], config *cfg) {
    for (int i = 1; i < argc; i++) /* --help must work whatever else is wrong */
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            print_usage(stdout);
            return DAEMON_EXIT_OK;
        }
    int rc = read_config_file(cfg, argc, argv);
    if (rc) return rc;
    opterr = 0; /* daemon_getopt_error() words the messages */
    int c;
    while ((c = getopt_long(argc, argv, ":hV", long_options, NULL)) != -1) {
        rc = apply_option(cfg, c, argv);
        if (rc == FINISHED) return DAEMON_EXIT_OK;
        if (rc != 0) return rc;
    }
    if (optind < argc)
        return daemon_usage_error(PROG, "unexpected argument '%s'", argv[optind]);
    if (cfg->n_parents) { /* --parent: every destination, in the order given */
        char list[MAX_PARENTS * 17] = "";
        for (unsigned i = 0; i < cfg->n_parents; i++) {
            if (i) strcat(list, ",");
            strcat(list, cfg->parent_names[i]);
        }
        char msg[256] = "";
        rc = policy_flag("--parent", list, ferry_forward_add_route(cfg->fwd, "*", list, msg, sizeof msg), msg);
        if (rc) return rc;
    }
    /* The configuration file's listen addresses and workers apply unless flags say. */
    for (unsigned i = 0; !cfg->n_listen && i < ferry_forward_listen_count(cfg->fwd); i++) {
        if (i == MAX_LISTENERS) return daemon_usage_error(PROG, "at most %u listen addresses", (unsigned)MAX_LISTENERS);
        const char *a = ferry_forward_listen_at(cfg->fwd, i);
        if (daemon_flag_addr(PROG, "listen", a, DAEMON_ADDR_LISTEN, NULL)) return DAEMON_EXIT_USAGE;
    }
    if (!cfg->workers) cfg->workers = ferry_forward_workers(cfg->fwd);
    if (!cfg->workers) cfg->workers = DEFAULT_WORKERS;
    if (!cfg->access_log) cfg->access_log = ferry_forward_access_log(cfg->fwd);
    return CONTINUE;
}

static unsigned listen_count(const config *cfg) {
    if (cfg->n_listen) return cfg->n_listen;
    unsigned n = ferry_forward_listen_count(cfg->fwd);
    return n ? n : 1;
}

static const char *listen_at(const config *cfg, unsigned i) {
    if (cfg->n_listen) return cfg->listen[i];
    return ferry_forward_listen_count(cfg->fwd) ? ferry_forward_listen_at(cfg->fwd, i) : DEFAULT_LISTEN;
}

static int listen_all(const config *cfg, ferry_engine *engine, ferry_logger *access_log) {
    for (unsigned i = 0; i < listen_count(cfg); i++) {
        ferry_listener_opts lo;
        ferry_listener_opts_init(&lo);
        lo.address = listen_at(cfg, i);
        lo.protocol = cfg->protocol;
        lo.direction = ferry_direction_forward();
        lo.direction_data = cfg->fwd;
        lo.access_log = access_log;
        lo.access_format = cfg->access_format;
        if (cfg->connect_timeout_ms) lo.connect_timeout_ms = cfg->connect_timeout_ms;
        if (cfg->idle_timeout_ms) lo.idle_timeout_ms = cfg->idle_timeout_ms;
        if (cfg->header_timeout_ms) lo.header_timeout_ms = cfg->header_timeout_ms;
        ferry_listener *l = NULL;
        ferry_err err = ferry_engine_listen(engine, &lo, &l);
        if (err != FERRY_OK)
            return daemon_fail(PROG, "cannot listen on %s: %s", lo.address, ferry_strerror(err));
        daemon_addr a;
        char text[FERRY_HOST_MAX + 16];
        daemon_check_addr(lo.address, DAEMON_ADDR_LISTEN, &a);
        daemon_format_addr(a.host, ferry_listener_port(l), text, sizeof text);
        fprintf(stderr, PROG ": listening on %s (%s, %u worker%s)\n", text,
                cfg->protocol == FERRY_PROTO_HTTP    ? "http"
                : cfg->protocol == FERRY_PROTO_SOCKS ? "socks"
                                                     : "http+socks",
                cfg->workers, cfg->workers == 1 ? "" : "s");
    }
    return CONTINUE;
}

static int run(const config *cfg) {
    if (ferry_forward_is_open(cfg->fwd))
        fprintf(stderr, PROG ": WARNING: clients from anywhere may use this proxy without "
                        "credentials (an open proxy); restrict --allow-client or add --auth-file\n");
    if (cfg->check_only) {
        fprintf(stderr, PROG ": configuration OK\n");
        return DAEMON_EXIT_OK;
    }
    daemon_raise_nofile_limit(PROG);
    daemon_signals_block(); /* before the loggers and the engine start their threads */
    ferry_logger *error_log = NULL, *access_log = NULL;
    ferry_engine *engine = NULL;
    int status = DAEMON_EXIT_FAIL;
    if (daemon_open_logger(PROG, "error log", cfg->error_log, &error_log) != FERRY_OK) goto out;
    if (cfg->access_log && daemon_open_logger(PROG, "access log", cfg->access_log, &access_log) != FERRY_OK)
        goto out;
    ferry_engine_opts eo;
    ferry_engine_opts_init(&eo);
    eo.workers = cfg->workers;
    eo.log = ferry_logger_log_fn;
    eo.log_user_data = error_log;
    ferry_err err = ferry_engine_new(&eo, &engine);
    if (err != FERRY_OK) {
        status = daemon_fail(PROG, "cannot create engine: %s", ferry_strerror(err));
        goto out;
    }
    status = listen_all(cfg, engine, access_log);
    if (status != CONTINUE) goto out;
    status = daemon_serve(PROG, &engine, NULL);
out:
    ferry_engine_free(engine); /* before the loggers: it may still log while stopping */
    ferry_logger_free(access_log);
    ferry_logger_free(error_log);
    return status;
}

int main(int argc, char *argv[]) {
    config cfg = {
        .access_format = FERRY_ACCESS_TEXT,
        .error_log = "stderr",
        .protocol = FERRY_PROTO_HTTP_SOCKS,
    };
    if (ferry_forward_new(NULL, &cfg.fwd) != FERRY_OK) return daemon_fail(PROG, "out of memory");
    int status = parse_args(argc, argv, &cfg);
    if (status == CONTINUE) status = run(&cfg);
    ferry_forward_free(cfg.fwd);
    return status;
}
