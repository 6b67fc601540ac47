/* The forward proxy's configuration reader (format: doc/forward-config.md). The shared
 * lexer (conf.h) reads a line at a time into a stack buffer and splits it into words; each
 * line is applied at once through the same setters an embedding program would call, so a
 * file means exactly those calls and the reader allocates nothing of its own. The first
 * error stops reading; what came before it stays applied (daemons treat any error as
 * fatal). Blocking stdio: configuration only. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "addr.h"
#include "conf.h"
#include "forward_int.h"
#include "http1.h"
#include "internal.h"

enum {
    CRED_MAX_BYTES = FERRY_CRED_MAX - 1,
    PATH_BYTES = 4096,
    SETTER_MSG_BYTES = 256,
    MIN_WORKERS = 1,
    MAX_WORKERS = 256,
};

static int has_space(const char *s) {
    for (; *s; s++)
        if (ferry__conf_is_space(*s)) return 1;
    return 0;
}

/* ---- users file ---- */

/* Rules say "user -" for requests without credentials, so no user may be called that. */
#define RESERVED_USER "user name '-' is reserved (rules use it for 'nobody')"

/* One "user:password" line; the password is everything after the first ':'. Messages
 * never quote the line, since it holds a password. */
static ferry_err apply_user_line(ferry_forward *fwd, const char *line, size_t len, char *err,
                                 size_t size, const char *path, unsigned lineno) {
    size_t i = 0;
    while (i < len && ferry__conf_is_space(line[i])) i++;
    if (i == len || line[i] == '#') return FERRY_OK;
    const char *colon = memchr(line, ':', len);
    if (!colon)
        return ferry__conf_report(err, size, path, lineno, FERRY_ECONFIG, "expected user:password");
    size_t ulen = (size_t)(colon - line), plen = len - ulen - 1;
    const char *problem = NULL;
    if (ulen == 0) problem = "empty user name";
    else if (ulen == 1 && line[0] == '-') problem = RESERVED_USER;
    else if (ulen > CRED_MAX_BYTES) problem = "user name longer than 255 bytes";
    else if (plen == 0) problem = "empty password";
    else if (plen > CRED_MAX_BYTES) problem = "password longer than 255 bytes";
    for (size_t k = 0; !problem && k < ulen; k++)
        if (ferry__conf_is_space(line[k])) problem = "user name contains whitespace";
    if (problem) return ferry__conf_report(err, size, path, lineno, FERRY_ECONFIG, "%s", problem);
    char user[FERRY_CRED_MAX], password[FERRY_CRED_MAX];
    memcpy(user, line, ulen);
    user[ulen] = '\0';
    memcpy(password, colon + 1, plen);
    password[plen] = '\0';
    ferry_err rc = ferry_forward_add_user(fwd, user, password);
    ferry__conf_wipe(password, sizeof password);
    if (rc == FERRY_ENOMEM) return ferry__conf_report(err, size, path, lineno, rc, "out of memory");
    if (rc)
        return ferry__conf_report(err, size, path, lineno, FERRY_ECONFIG, "user '%s' refused: %s",
                                  user, ferry_strerror(rc));
    return FERRY_OK;
}

ferry_err ferry_forward_load_users(ferry_forward *fwd, const char *path, char *err,
                                   size_t err_size) {
    if (!fwd || !path) return ferry__conf_invalid_argument(err, err_size);
    FILE *f = fopen(path, "r");
    if (!f)
        return ferry__conf_report(err, err_size, path, 0, FERRY_ECONFIG, "cannot open: %s",
                                  strerror(errno));
    ferry__conf_src src = {.file = f};
    char line[FERRY__CONF_LINE_MAX + 1];
    ferry_err rc = FERRY_OK;
    for (;;) {
        size_t len = 0;
        ferry__conf_status st = ferry__conf_next_line(&src, line, &len);
        if (st == FERRY__CONF_END) break;
        rc = st == FERRY__CONF_LINE_OK
                 ? apply_user_line(fwd, line, len, err, err_size, path, src.line)
                 : ferry__conf_report_status(err, err_size, path, src.line, st);
        if (rc) break;
    }
    ferry__conf_wipe(line, sizeof line);
    fclose(f);
    return rc;
}

/* ---- configuration ---- */

typedef struct cfg {
    ferry_forward *fwd;
    const char *name; /* the path, or parse_config's name */
    unsigned line;
    char *err;
    size_t err_size;
} cfg;

__attribute__((format(printf, 3, 4)))
static ferry_err fail(const cfg *c, ferry_err code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    ferry__conf_vreport(c->err, c->err_size, c->name, c->line, fmt, ap);
    va_end(ap);
    return code;
}

/* For setters that return only a code: out of memory is reported as such; anything else
 * is the value's fault, said as what was expected (or, with expected NULL, by the code). */
static ferry_err setter_failed(const cfg *c, ferry_err rc, const char *directive,
                               const char *value, const char *expected) {
    if (rc == FERRY_ENOMEM) return fail(c, rc, "out of memory");
    if (!expected)
        return fail(c, FERRY_ECONFIG, "%s: '%s': %s", directive, value, ferry_strerror(rc));
    return fail(c, FERRY_ECONFIG, "%s: '%s' is not %s", directive, value, expected);
}

/* For setters that word their own message: it follows the file and line. */
static ferry_err setter_said(const cfg *c, ferry_err rc, const char *msg) {
    return fail(c, rc == FERRY_ENOMEM ? rc : FERRY_ECONFIG, "%s", msg[0] ? msg : ferry_strerror(rc));
}

/* Rule text for ferry_forward_add_rule: head, then the words joined by single spaces. The
 * rule language has no quoting, so a word holding whitespace cannot be passed on. */
static ferry_err add_rule_words(const cfg *c, const char *head, char **words, int nwords) {
    /* Fits: the words come from one line of at most FERRY__CONF_LINE_MAX bytes with at
     * least one separator between each two, and head is a short literal. */
    char rule[FERRY__CONF_LINE_MAX + 32], msg[SETTER_MSG_BYTES] = "";
    size_t used = strlen(head);
    memcpy(rule, head, used + 1);
    for (int k = 0; k < nwords; k++) {
        if (has_space(words[k]))
            return fail(c, FERRY_ECONFIG, "rule words cannot contain spaces (\"%s\")", words[k]);
        size_t wl = strlen(words[k]);
        rule[used++] = ' ';
        memcpy(rule + used, words[k], wl + 1);
        used += wl;
    }
    ferry_err rc = ferry_forward_add_rule(c->fwd, rule, msg, sizeof msg);
    return rc ? setter_said(c, rc, msg) : FERRY_OK;
}

typedef ferry_err (*directive_fn)(const cfg *c, const char *keyword, char **args, int nargs);

static ferry_err do_listen(const cfg *c, const char *keyword, char **args, int nargs) {
    (void)nargs;
    ferry__sockaddr sa;
    if (!ferry__conf_listen_literal(args[0], &sa))
        return fail(c, FERRY_ECONFIG,
                    "%s: '%s' is not IP:PORT (e.g. 127.0.0.1:3128, 0.0.0.0:3128, [::1]:3128)",
                    keyword, args[0]);
    ferry_err rc = ferry__forward_add_listen(c->fwd, args[0]);
    return rc ? setter_failed(c, rc, keyword, args[0], NULL) : FERRY_OK;
}

static ferry_err do_workers(const cfg *c, const char *keyword, char **args, int nargs) {
    (void)nargs;
    unsigned v = 0;
    const char *p = args[0];
    for (; *p >= '0' && *p <= '9' && v <= MAX_WORKERS; p++) v = v * 10 + (unsigned)(*p - '0');
    if (p == args[0] || *p || v < MIN_WORKERS || v > MAX_WORKERS)
        return fail(c, FERRY_ECONFIG, "%s: expected a number from %d to %d", keyword, MIN_WORKERS,
                    MAX_WORKERS);
    ferry_err rc = ferry__forward_set_workers(c->fwd, v);
    return rc ? setter_failed(c, rc, keyword, args[0], NULL) : FERRY_OK;
}

static ferry_err do_access_log(const cfg *c, const char *keyword, char **args, int nargs) {
    (void)nargs;
    if (!args[0][0]) return fail(c, FERRY_ECONFIG, "%s: empty file name", keyword);
    ferry_err rc = ferry__forward_set_access_log(c->fwd, args[0]);
    return rc ? setter_failed(c, rc, keyword, args[0], NULL) : FERRY_OK;
}

/* Each comma-separated entry of args[0] goes to the setter on its own. */
static ferry_err each_cidr(const cfg *c, const char *keyword, char *list,
                           ferry_err (*setter)(ferry_forward *, const char *)) {
    for (char *item = list;;) {
        char *comma = strchr(item, ',');
        if (comma) *comma = '\0';
        if (!*item) return fail(c, FERRY_ECONFIG, "%s: empty entry in the list", keyword);
        ferry_err rc = setter(c->fwd, item);
        if (rc) return setter_failed(c, rc, keyword, item, "an address or CIDR (e.g. 10.0.0.0/8)");
        if (!comma) return FERRY_OK;
        item = comma + 1;
    }
}

static ferry_err do_allow_client(const cfg *c, const char *keyword, char **args, int nargs) {
    (void)nargs;
    return each_cidr(c, keyword, args[0], ferry_forward_allow_client);
}

static ferry_err do_allow_dest(const cfg *c, const char *keyword, char **args, int nargs) {
    (void)nargs;
    return each_cidr(c, keyword, args[0], ferry_forward_allow_dest);
}

static ferry_err do_deny_host(const cfg *c, const char *keyword, char **args, int nargs) {
    (void)keyword;
    return add_rule_words(c, "deny host", args, nargs);
}

static ferry_err do_rule(const cfg *c, const char *keyword, char **args, int nargs) {
    return add_rule_words(c, keyword, args, nargs);
}

static ferry_err do_connect_ports(const cfg *c, const char *keyword, char **args, int nargs) {
    (void)nargs;
    ferry_err rc = ferry_forward_set_connect_ports(c->fwd, args[0]);
    return rc ? setter_failed(c, rc, keyword, args[0], "a port list (e.g. 443,8443,9000-9100)")
              : FERRY_OK;
}

/* Relative auth-file paths are taken from the configuration file's directory, so a
 * daemon finds them whatever its working directory. Messages are the users file's own. */
static ferry_err do_auth_file(const cfg *c, const char *keyword, char **args, int nargs) {
    (void)nargs;
    const char *path = args[0];
    if (!*path) return fail(c, FERRY_ECONFIG, "%s: empty file name", keyword);
    const char *slash = strrchr(c->name, '/');
    char joined[PATH_BYTES];
    if (path[0] != '/' && slash) {
        int n = snprintf(joined, sizeof joined, "%.*s/%s", (int)(slash - c->name), c->name, path);
        if (n < 0 || (size_t)n >= sizeof joined)
            return fail(c, FERRY_ECONFIG, "%s: path too long", keyword);
        path = joined;
    }
    return ferry_forward_load_users(c->fwd, path, c->err, c->err_size);
}

static ferry_err do_user(const cfg *c, const char *keyword, char **args, int nargs) {
    (void)nargs;
    const char *user = args[0], *password = args[1];
    size_t ulen = strlen(user), plen = strlen(password);
    if (ulen == 0 || ulen > CRED_MAX_BYTES || has_space(user))
        return fail(c, FERRY_ECONFIG,
                    "%s: the name must be 1 to %d bytes without whitespace", keyword,
                    CRED_MAX_BYTES);
    if (strcmp(user, "-") == 0) return fail(c, FERRY_ECONFIG, "%s: " RESERVED_USER, keyword);
    if (plen == 0 || plen > CRED_MAX_BYTES)
        return fail(c, FERRY_ECONFIG, "%s: the password must be 1 to %d bytes", keyword,
                    CRED_MAX_BYTES);
    ferry_err rc = ferry_forward_add_user(c->fwd, user, password);
    if (rc == FERRY_ENOMEM) return fail(c, rc, "out of memory");
    if (rc)
        return fail(c, FERRY_ECONFIG, "%s: '%s' refused: %s", keyword, user, ferry_strerror(rc));
    return FERRY_OK;
}

static ferry_err do_anonymity(const cfg *c, const char *keyword, char **args, int nargs) {
    (void)nargs;
    static const char *const names[] = {"transparent", "anonymous", "strict"};
    static const ferry_anonymity levels[] = {FERRY_ANON_TRANSPARENT, FERRY_ANON_ANONYMOUS,
                                             FERRY_ANON_STRICT};
    ferry_view v = {args[0], strlen(args[0])};
    for (size_t k = 0; k < FERRY__ARRAY_LEN(names); k++) {
        if (!ferry__view_ieq(v, names[k])) continue;
        ferry_err rc = ferry_forward_set_anonymity(c->fwd, levels[k]);
        return rc ? setter_failed(c, rc, keyword, args[0], NULL) : FERRY_OK;
    }
    return fail(c, FERRY_ECONFIG, "%s: expected transparent, anonymous or strict", keyword);
}

static ferry_err do_header_allow(const cfg *c, const char *keyword, char **args, int nargs) {
    (void)nargs;
    ferry_err rc = ferry_forward_set_header_allow(c->fwd, args[0]);
    return rc ? setter_failed(c, rc, keyword, args[0], "a list of header names") : FERRY_OK;
}

static ferry_err do_parent(const cfg *c, const char *keyword, char **args, int nargs) {
    (void)keyword;
    (void)nargs;
    char msg[SETTER_MSG_BYTES] = "";
    ferry_err rc = ferry_forward_add_parent(c->fwd, args[0], args[1], msg, sizeof msg);
    return rc ? setter_said(c, rc, msg) : FERRY_OK;
}

static ferry_err do_route(const cfg *c, const char *keyword, char **args, int nargs) {
    (void)keyword;
    (void)nargs;
    char msg[SETTER_MSG_BYTES] = "";
    ferry_err rc = ferry_forward_add_route(c->fwd, args[0], args[1], msg, sizeof msg);
    return rc ? setter_said(c, rc, msg) : FERRY_OK;
}

typedef struct directive {
    const char *name;
    int min_args, max_args;
    const char *usage; /* what a wrong number of arguments is told */
    directive_fn apply;
} directive;

static const directive directives[] = {
    {"listen", 1, 1, "ADDR:PORT", do_listen},
    {"workers", 1, 1, "a number from 1 to 256", do_workers},
    {"access-log", 1, 1, "a file name or '-'", do_access_log},
    {"allow-client", 1, 1, "CIDR[,CIDR...]", do_allow_client},
    {"allow-dest", 1, 1, "CIDR[,CIDR...]", do_allow_dest},
    {"deny-host", 1, 1, "PATTERN[,PATTERN...]", do_deny_host},
    {"connect-ports", 1, 1, "PORT[,PORT|FROM-TO...]", do_connect_ports},
    {"auth-file", 1, 1, "a file name", do_auth_file},
    {"user", 2, 2, "NAME PASSWORD", do_user},
    {"anonymity", 1, 1, "transparent, anonymous or strict", do_anonymity},
    {"header-allow", 1, 1, "NAME[,NAME...]", do_header_allow},
    {"parent", 2, 2, "NAME URL", do_parent},
    {"route", 2, 2, "PATTERN PARENT[,PARENT...]", do_route},
    {"allow", 0, FERRY__CONF_MAX_WORDS, "", do_rule},
    {"deny", 0, FERRY__CONF_MAX_WORDS, "", do_rule},
};

/* One line of the file (a ferry__conf_line_fn). */
static ferry_err apply_line(void *data, const ferry__conf_line *line) {
    cfg *c = data;
    c->line = line->number;
    char **words = line->words;
    int n = line->nwords;
    ferry_view kw = {words[0], strlen(words[0])};
    for (size_t k = 0; k < FERRY__ARRAY_LEN(directives); k++) {
        const directive *d = &directives[k];
        if (!ferry__view_ieq(kw, d->name)) continue;
        if (n - 1 < d->min_args || n - 1 > d->max_args)
            return fail(c, FERRY_ECONFIG, "%s: expected %s", d->name, d->usage);
        return d->apply(c, d->name, words + 1, n - 1);
    }
    if (ferry__conf_looks_like_keyword(words[0]))
        return fail(c, FERRY_ECONFIG, "unknown directive '%s'", words[0]);
    return fail(c, FERRY_ECONFIG, "expected a directive such as 'listen' or 'allow'");
}

ferry_err ferry_forward_load_config(ferry_forward *fwd, const char *path, char *err,
                                    size_t err_size) {
    if (!fwd || !path) return ferry__conf_invalid_argument(err, err_size);
    cfg c = {fwd, path, 0, err, err_size};
    return ferry__conf_read_file(path, err, err_size, apply_line, &c);
}

ferry_err ferry_forward_parse_config(ferry_forward *fwd, const char *text, size_t len,
                                     const char *name, char *err, size_t err_size) {
    if (!fwd || !name || (!text && len)) return ferry__conf_invalid_argument(err, err_size);
    if (!text) text = ""; /* len is 0: no arithmetic on a null pointer */
    cfg c = {fwd, name, 0, err, err_size};
    ferry__conf_src src = {.text = text, .end = text + len};
    return ferry__conf_read(&src, name, err, err_size, apply_line, &c);
}
