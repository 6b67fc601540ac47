/* forwardd: the forward proxy daemon (acts for clients, which name the destination).
 * Forward proxying needs the forward direction policy and its protocols (HTTP
 * absolute-form, CONNECT, SOCKS), which this version of libferry does not ship yet. The
 * command line is already checked, so scripts written against it fail only on that. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "daemon.h"
#include "ferry.h"

#define PROG "forwardd"

enum { DEFAULT_WORKERS = 1, MAX_WORKERS = 1024 };

/* Step results besides exit statuses (which are >= 0). */
enum { CONTINUE = -1, FINISHED = -2 /* --help or --version done: exit 0 */ };

enum { OPT_LISTEN = 256, OPT_WORKERS, OPT_ACCESS_LOG };

static const struct option long_options[] = {
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"workers", required_argument, NULL, OPT_WORKERS},
    {"access-log", required_argument, NULL, OPT_ACCESS_LOG},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};

static void print_usage(FILE *out) {
    fprintf(out,
        "Usage: " PROG " --listen ADDR:PORT [--workers N] [--access-log FILE|-]\n"
        "\n"
        "Forward proxy: clients name the destination (HTTP absolute-form, CONNECT,\n"
        "SOCKS). Not available in this version: it arrives with the forward-direction\n"
        "work. Until then every run exits with status 2 after checking the flags; for\n"
        "a reverse proxy use 'reversed'.\n"
        "\n"
        "  --listen ADDR:PORT         address to accept on: an IPv4 or [IPv6] literal\n"
        "  --workers N                worker threads, 1-%u (default %u)\n"
        "  --access-log FILE|-        append one line per session to FILE; '-' is\n"
        "                             stdout\n"
        "  -h, --help                 show this help and exit\n"
        "  -V, --version              show the version and exit\n",
        (unsigned)MAX_WORKERS, (unsigned)DEFAULT_WORKERS);
}

/* One option. Returns 0 to go on, FINISHED after --help/--version, or an exit status. */
static int apply_option(int c, char *const argv[]) {
    unsigned workers;
    switch (c) {
    case OPT_LISTEN:
        return daemon_flag_addr(PROG, "--listen", optarg, DAEMON_ADDR_LISTEN, NULL);
    case OPT_WORKERS:
        return daemon_flag_uint(PROG, "--workers", optarg, 1, MAX_WORKERS, &workers);
    case OPT_ACCESS_LOG:
        if (!*optarg) return daemon_usage_error(PROG, "--access-log: empty file name");
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

int main(int argc, char *argv[]) {
    opterr = 0; /* daemon_getopt_error() words the messages */
    int c;
    while ((c = getopt_long(argc, argv, ":hV", long_options, NULL)) != -1) {
        int rc = apply_option(c, argv);
        if (rc == FINISHED) return DAEMON_EXIT_OK;
        if (rc != 0) return rc;
    }
    if (optind < argc)
        return daemon_usage_error(PROG, "unexpected argument '%s'", argv[optind]);
    fprintf(stderr,
            PROG ": forward proxying (HTTP absolute-form, CONNECT, SOCKS) arrives with the\n"
            "forward-direction work and is not available in this version; for a reverse\n"
            "proxy use 'reversed'\n");
    return DAEMON_EXIT_USAGE;
}
