#include "daemon.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static void vreport(const char *prog, const char *fmt, va_list ap) {
    fprintf(stderr, "%s: ", prog);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

int daemon_usage_error(const char *prog, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vreport(prog, fmt, ap);
    va_end(ap);
    fprintf(stderr, "try '%s --help' for usage\n", prog);
    return DAEMON_EXIT_USAGE;
}

int daemon_fail(const char *prog, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vreport(prog, fmt, ap);
    va_end(ap);
    return DAEMON_EXIT_FAIL;
}

/* How many long options `arg` (after "--", up to any '=') abbreviates. */
static int count_matches(const char *arg, const struct option *longopts) {
    size_t len = strcspn(arg, "=");
    int n = 0;
    for (const struct option *o = longopts; o->name; o++)
        if (strncmp(o->name, arg, len) == 0) n++;
    return n;
}

int daemon_getopt_error(const char *prog, int c, char *const argv[],
                        const struct option *longopts) {
    /* glibc has already moved optind past a bad long option; short ones are named by optopt
     * because they may sit inside a cluster such as -hx. */
    const char *arg = optind > 0 ? argv[optind - 1] : "";
    int is_long = strncmp(arg, "--", 2) == 0;
    if (c == ':') {
        if (is_long) return daemon_usage_error(prog, "%s: missing value", arg);
        return daemon_usage_error(prog, "-%c: missing value", optopt);
    }
    if (is_long && optopt != 0) /* a known flag given a value it does not take */
        return daemon_usage_error(prog, "%s: this flag takes no value", arg);
    if (is_long && count_matches(arg + 2, longopts) > 1)
        return daemon_usage_error(prog, "%s: ambiguous option; spell it out", arg);
    if (is_long) return daemon_usage_error(prog, "%s: unknown option", arg);
    if (optopt > 32 && optopt < 127)
        return daemon_usage_error(prog, "-%c: unknown option", optopt);
    return daemon_usage_error(prog, "%s: unknown option", arg);
}

int daemon_parse_uint(const char *text, unsigned min, unsigned max, unsigned *out) {
    /* Digits only: strtoul would accept " 12", "+12" and wrap "-1" to a huge number. */
    if (!text || !*text) return -1;
    unsigned long long value = 0;
    for (const char *p = text; *p; p++) {
        if (*p < '0' || *p > '9') return -1;
        value = value * 10u + (unsigned)(*p - '0');
        if (value > max) return -1;
    }
    if (value < min) return -1;
    *out = (unsigned)value;
    return 0;
}

int daemon_flag_uint(const char *prog, const char *flag, const char *text, unsigned min,
                     unsigned max, unsigned *out) {
    if (daemon_parse_uint(text, min, max, out) == 0) return 0;
    return daemon_usage_error(prog, "%s '%s': expected a whole number from %u to %u", flag,
                              text, min, max);
}

/* Port digits after the colon; -1 if empty, not all digits, or above 65535. */
static long parse_port(const char *p) {
    unsigned port;
    if (daemon_parse_uint(p, 0, 65535, &port) != 0) return -1;
    return (long)port;
}

static int is_ip_literal(const char *host, int want_v6) {
    unsigned char buf[sizeof(struct in6_addr)];
    if (want_v6) return inet_pton(AF_INET6, host, buf) == 1;
    return inet_pton(AF_INET, host, buf) == 1;
}

const char *daemon_check_addr(const char *text, daemon_addr_kind kind, daemon_addr *out) {
    const char *host, *host_end, *colon;
    int bracketed = text[0] == '[';
    if (!*text) return "empty address; expected HOST:PORT or [IPV6]:PORT";
    if (bracketed) {
        host = text + 1;
        host_end = strchr(host, ']');
        if (!host_end) return "missing ']' after the IPv6 address";
        if (host_end[1] != ':') return "missing :PORT after ']'";
        colon = host_end + 1;
    } else {
        host = text;
        colon = strrchr(text, ':');
        if (!colon) return "missing :PORT (expected HOST:PORT or [IPV6]:PORT)";
        host_end = colon;
        if (memchr(text, ':', (size_t)(colon - text)))
            return "an IPv6 address needs brackets, e.g. [::1]:8080";
    }
    size_t host_len = (size_t)(host_end - host);
    if (host_len == 0)
        return kind == DAEMON_ADDR_LISTEN
                   ? "missing host (use 0.0.0.0 or [::] to accept on every address)"
                   : "missing host before ':'";
    if (host_len >= sizeof out->host) return "host name too long";

    long port = parse_port(colon + 1);
    if (kind == DAEMON_ADDR_LISTEN && port < 0)
        return "port must be a number from 0 to 65535 (0 picks a free port)";
    if (kind == DAEMON_ADDR_UPSTREAM && port < 1)
        return "port must be a number from 1 to 65535";

    char h[FERRY_HOST_MAX];
    memcpy(h, host, host_len);
    h[host_len] = '\0';
    if (bracketed && !is_ip_literal(h, 1)) return "brackets hold IPv6 addresses only";
    /* The engine binds the listener without a resolver, so it needs a literal. */
    if (kind == DAEMON_ADDR_LISTEN && !bracketed && !is_ip_literal(h, 0))
        return "not an IP address (e.g. 127.0.0.1:8080, 0.0.0.0:8080 or [::1]:8080)";

    if (out) {
        memcpy(out->host, h, host_len + 1);
        out->port = (unsigned)port;
    }
    return NULL;
}

int daemon_flag_addr(const char *prog, const char *flag, const char *text,
                     daemon_addr_kind kind, daemon_addr *out) {
    const char *problem = daemon_check_addr(text, kind, out);
    if (!problem) return 0;
    return daemon_usage_error(prog, "%s '%s': %s", flag, text, problem);
}

void daemon_format_addr(const char *host, unsigned port, char *buf, size_t size) {
    if (size == 0) return;
    snprintf(buf, size, strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, port);
}

const char *daemon_why_unwritable(const char *path) {
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return strerror(errno);
    close(fd);
    return NULL;
}

void daemon_raise_nofile_limit(const char *prog) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        fprintf(stderr, "%s: warning: cannot read the open-file limit: %s\n", prog,
                strerror(errno));
        return;
    }
    if (rl.rlim_cur >= rl.rlim_max) return;
    rlim_t old = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) == 0) return;
    /* Linux refuses RLIM_INFINITY (above fs.nr_open); settle for its default ceiling. */
    if (rl.rlim_max == RLIM_INFINITY && old < 1048576) {
        rl.rlim_cur = 1048576;
        if (setrlimit(RLIMIT_NOFILE, &rl) == 0) return;
    }
    fprintf(stderr, "%s: warning: cannot raise the open-file limit above %llu: %s\n", prog,
            (unsigned long long)old, strerror(errno));
}

/* The signals the main thread waits for; every other thread keeps them blocked. */
static void serve_signal_set(sigset_t *set) {
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGHUP);
}

void daemon_signals_block(void) {
    /* A peer that closes mid-write must cost one session, not the process. */
    signal(SIGPIPE, SIG_IGN);
    sigset_t set;
    serve_signal_set(&set);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
}

ferry_err daemon_open_logger(const char *prog, const char *what, const char *path,
                             ferry_logger **out) {
    ferry_err err = ferry_logger_new(path, 0, NULL, out);
    if (err == FERRY_OK) return err;
    const char *why = err == FERRY_ESYS ? daemon_why_unwritable(path) : NULL;
    daemon_fail(prog, "cannot open %s '%s': %s", what, path, why ? why : ferry_strerror(err));
    return err;
}

/* An engine on its way out: a thread waits for its workers, then the main thread frees it. */
typedef struct retiring {
    struct retiring *next;
    ferry_engine *engine;
    void *state; /* handed to the reloader's retire() after the engine is freed */
    pthread_t waiter;
    atomic_int done;
} retiring;

static void *wait_retiring(void *arg) {
    retiring *r = arg;
    ferry_engine_wait(r->engine);
    atomic_store(&r->done, 1);
    return NULL;
}

/* Stop `engine` with its drain and put it on `list`. 0, or -1 if no thread could wait for
 * it (it was stopped anyway). */
static int retire(retiring **list, ferry_engine *engine, void *state) {
    ferry_engine_signal_stop(engine);
    retiring *r = calloc(1, sizeof *r);
    if (!r) return -1;
    r->engine = engine;
    r->state = state;
    if (pthread_create(&r->waiter, NULL, wait_retiring, r) != 0) {
        free(r);
        return -1;
    }
    r->next = *list;
    *list = r;
    return 0;
}

/* Free the retired engines that have finished (all of them, waiting, if `all`). The last
 * one, `keep` (the engine daemon_serve() returns to its caller), is only joined. */
static void reap(retiring **list, const daemon_reloader *reloader, ferry_engine *keep, int all) {
    for (retiring **p = list; *p;) {
        retiring *r = *p;
        if (!all && !atomic_load(&r->done)) {
            p = &r->next;
            continue;
        }
        pthread_join(r->waiter, NULL);
        if (r->engine != keep) {
            ferry_engine_free(r->engine);
            if (reloader && reloader->retire) reloader->retire(reloader->ctx, r->state);
        }
        *p = r->next;
        free(r);
    }
}

static int all_done(const retiring *list) {
    for (; list; list = list->next)
        if (!atomic_load(&list->done)) return 0;
    return 1;
}

int daemon_serve(const char *prog, ferry_engine **engine, const daemon_reloader *reloader) {
    ferry_err err = ferry_engine_start(*engine);
    if (err != FERRY_OK) return daemon_fail(prog, "cannot start engine: %s", ferry_strerror(err));
    sigset_t set;
    serve_signal_set(&set);
    retiring *old = NULL;
    int stopping = 0;
    const struct timespec tick = {.tv_sec = 0, .tv_nsec = 100 * 1000 * 1000};
    while (!stopping || !all_done(old)) {
        /* Tick only while something drains, to free it soon after it has finished. */
        int sig = sigtimedwait(&set, NULL, old ? &tick : NULL);
        reap(&old, reloader, *engine, 0);
        if (sig == SIGHUP && !stopping) {
            if (!reloader) {
                fprintf(stderr, "%s: SIGHUP: nothing to reload (only a --config file is); "
                                "carrying on\n", prog);
                continue;
            }
            void *state = NULL;
            ferry_engine *next = reloader->reload(reloader->ctx, *engine, &state);
            if (!next) continue; /* reported; the running engine carries on */
            if (retire(&old, *engine, state) != 0) {
                ferry_engine_wait(*engine); /* no waiter thread: wait here instead */
                ferry_engine_free(*engine);
                if (reloader->retire) reloader->retire(reloader->ctx, state);
            }
            *engine = next;
        } else if ((sig == SIGINT || sig == SIGTERM) && !stopping) {
            stopping = 1;
            if (retire(&old, *engine, NULL) != 0) break; /* waited for below */
        } else if (sig == SIGINT || sig == SIGTERM) {
            /* A second stop signal: close what is still draining now. */
            for (retiring *r = old; r; r = r->next) ferry_engine_stop(r->engine, 0);
        }
    }
    reap(&old, reloader, *engine, 1);
    ferry_engine_wait(*engine);
    fprintf(stderr, "%s: stopped\n", prog);
    return DAEMON_EXIT_OK;
}
