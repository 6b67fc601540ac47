/* Helpers shared by the example daemons (reversed, forwardd): command-line checks, error
 * reporting with the exit-status convention, the open-file limit and stop signals.
 * Compiled into each daemon, not into libferry. */
#ifndef FERRY_EXAMPLES_DAEMON_H
#define FERRY_EXAMPLES_DAEMON_H

#include <getopt.h>
#include <stddef.h>
#include "ferry.h"

/* Exit statuses common to both daemons. */
enum {
    DAEMON_EXIT_OK = 0,    /* clean stop, --help, --version */
    DAEMON_EXIT_FAIL = 1,  /* runtime failure: port in use, unreadable log file, ... */
    DAEMON_EXIT_USAGE = 2  /* bad command line, or a feature this version lacks */
};

/* HOST:PORT split out of a command-line address. */
typedef struct daemon_addr {
    char host[FERRY_HOST_MAX];
    unsigned port;
} daemon_addr;

/* What an address flag accepts. */
typedef enum daemon_addr_kind {
    DAEMON_ADDR_LISTEN,  /* IP literal only (the engine binds it as is); port 0 allowed */
    DAEMON_ADDR_UPSTREAM /* IP literal or host name; port 1-65535 */
} daemon_addr_kind;

/* Print "PROG: MESSAGE" and a pointer to --help on stderr; returns DAEMON_EXIT_USAGE so
 * callers can `return daemon_usage_error(...)`. */
int daemon_usage_error(const char *prog, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Print "PROG: MESSAGE" on stderr; returns DAEMON_EXIT_FAIL. */
int daemon_fail(const char *prog, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Report what getopt_long() returned for a bad option ('?' unknown or ambiguous, ':'
 * missing value); the optstring must start with ':' and opterr must be 0. `longopts` is
 * the table given to getopt_long(). Returns DAEMON_EXIT_USAGE. */
int daemon_getopt_error(const char *prog, int c, char *const argv[],
                        const struct option *longopts);

/* Parse the whole of `text` as a decimal number in [min, max]. 0 on success, else -1. */
int daemon_parse_uint(const char *text, unsigned min, unsigned max, unsigned *out);

/* daemon_parse_uint() for the value of `flag`, reporting a bad value as a usage error.
 * Returns 0 on success, else DAEMON_EXIT_USAGE. */
int daemon_flag_uint(const char *prog, const char *flag, const char *text, unsigned min,
                     unsigned max, unsigned *out);

/* Check "HOST:PORT" / "[IPV6]:PORT" the way the engine will read it, so mistakes are
 * reported against the flag before anything starts. NULL if fine (out filled, may be NULL),
 * else a static description of the problem. */
const char *daemon_check_addr(const char *text, daemon_addr_kind kind, daemon_addr *out);

/* daemon_check_addr() for the value of `flag`. Returns 0, else DAEMON_EXIT_USAGE. */
int daemon_flag_addr(const char *prog, const char *flag, const char *text,
                     daemon_addr_kind kind, daemon_addr *out);

/* "HOST:PORT", or "[HOST]:PORT" for an IPv6 literal. Always NUL-terminates. */
void daemon_format_addr(const char *host, unsigned port, char *buf, size_t size);

/* Why `path` cannot be opened for appending, in the OS's words (strerror), for a log file
 * the library refused with the bare FERRY_ESYS; NULL if it opens fine. Like the logger,
 * it creates a missing file. */
const char *daemon_why_unwritable(const char *path);

/* Raise the soft RLIMIT_NOFILE to the hard limit: every proxied connection costs two
 * descriptors, and the usual soft limit (1024) would cap a proxy at ~500 sessions.
 * Warns on stderr (and carries on) if the limit cannot be raised. */
void daemon_raise_nofile_limit(const char *prog);

/* Block SIGINT, SIGTERM and SIGHUP in the calling thread and ignore SIGPIPE. Call it
 * before any ferry thread exists: threads inherit the mask, so only the thread in
 * daemon_serve() ever takes these signals, and one that arrives early stays pending. */
void daemon_signals_block(void);

/* Open a logger on `path` ("stderr", "-" for stdout, or a file), reporting failure as
 * "PROG: cannot open WHAT 'PATH': why". */
ferry_err daemon_open_logger(const char *prog, const char *what, const char *path,
                             ferry_logger **out);

/* What SIGHUP does. reload() builds and starts the replacement of `running` (taking over
 * its listeners: ferry_engine_take_listeners()) and returns it, setting *retired to what
 * must outlive `running` (its configuration); or it reports why not and returns NULL, and
 * `running` carries on. Once the replaced engine has drained, daemon_serve() frees it and
 * then calls retire(ctx, that state). */
typedef struct daemon_reloader {
    ferry_engine *(*reload)(void *ctx, ferry_engine *running, void **retired);
    void (*retire)(void *ctx, void *retired);
    void *ctx;
} daemon_reloader;

/* Start *engine's workers and wait, in the calling thread (after daemon_signals_block()),
 * for signals: SIGINT/SIGTERM drain and stop every engine (a second one closes what is
 * still draining), SIGHUP reloads through `reloader` (NULL: SIGHUP is reported and
 * ignored). Returns the exit status once everything has stopped; *engine is then the last
 * engine (stopped, not freed: the caller frees it), the others are freed. */
int daemon_serve(const char *prog, ferry_engine **engine, const daemon_reloader *reloader);

#endif
