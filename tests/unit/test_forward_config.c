/* The forward proxy's configuration reader: every directive, the line syntax, the error
 * messages, users files. Effects are checked through the public API (getters and the
 * forward direction's ops), as an embedding program would see them. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ferry.h"
#include "testutil.h"

#define CONF "ferry.conf"

enum { ERR_SIZE = 1024 };

/* ---- helpers ---- */

static ferry_forward *fwd_new(void) {
    ferry_forward *fwd = NULL;
    ck_assert_int_eq(ferry_forward_new(NULL, &fwd), FERRY_OK);
    return fwd;
}

static ferry_err parse(ferry_forward *fwd, const char *text, char *err) {
    return ferry_forward_parse_config(fwd, text, strlen(text), CONF, err, ERR_SIZE);
}

/* A fresh policy given `text`, which must be accepted. */
static ferry_forward *fwd_with(const char *text) {
    ferry_forward *fwd = fwd_new();
    char err[ERR_SIZE] = "";
    ferry_err rc = parse(fwd, text, err);
    ck_assert_msg(rc == FERRY_OK, "rejected: %s", err);
    return fwd;
}

/* `text` must fail with exactly `message`. */
static void expect_error(const char *text, const char *message) {
    ferry_forward *fwd = fwd_new();
    char err[ERR_SIZE] = "";
    ck_assert_int_eq(parse(fwd, text, err), FERRY_ECONFIG);
    ck_assert_str_eq(err, message);
    ferry_forward_free(fwd);
}

/* `text` must fail with a message starting with `prefix` and saying something after it. */
static void expect_error_prefix(const char *text, const char *prefix) {
    ferry_forward *fwd = fwd_new();
    char err[ERR_SIZE] = "";
    ck_assert_int_eq(parse(fwd, text, err), FERRY_ECONFIG);
    ck_assert_msg(strncmp(err, prefix, strlen(prefix)) == 0 && strlen(err) > strlen(prefix),
                  "'%s' does not start with '%s'", err, prefix);
    ferry_forward_free(fwd);
}

typedef struct request {
    const char *client; /* IP literal */
    const char *host;
    uint16_t port;
    int proto;
    const char *method;
    const char *user;
} request;

static ferry_session_info info_for(const request *r) {
    ferry_session_info info = {0};
    const char *client = r->client ? r->client : "127.0.0.1";
    info.client_family = strchr(client, ':') ? AF_INET6 : AF_INET;
    ck_assert_int_eq(inet_pton(info.client_family, client, info.client_ip), 1);
    snprintf(info.client_addr, sizeof info.client_addr, "%s", client);
    info.listener = "test";
    info.proxy_protocol = r->proto ? r->proto : FERRY_PROXY_HTTP;
    info.dest_host = r->host ? r->host : "";
    info.dest_port = r->port ? r->port : 80;
    info.method = r->method ? r->method : (info.proxy_protocol == FERRY_PROXY_CONNECT ? "CONNECT" : "GET");
    info.user = r->user ? r->user : "";
    return info;
}

static ferry_err admit(ferry_forward *fwd, request r) {
    ferry_session_info info = info_for(&r);
    const char *reason = NULL;
    return ferry_direction_forward()->admit(fwd, &info, &reason);
}

static ferry_err admit_client(ferry_forward *fwd, const char *client) {
    request r = {.client = client};
    ferry_session_info info = info_for(&r);
    const char *reason = NULL;
    return ferry_direction_forward()->admit_client(fwd, &info, &reason);
}

static ferry_err admit_address(ferry_forward *fwd, const char *ip) {
    request r = {.host = ip};
    ferry_session_info info = info_for(&r);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(80)};
    ck_assert_int_eq(inet_pton(AF_INET, ip, &sin.sin_addr), 1);
    const char *reason = NULL;
    return ferry_direction_forward()->admit_address(fwd, &info, (const struct sockaddr *)&sin,
                                                     &reason);
}

static ferry_err authenticate(ferry_forward *fwd, const char *user, const char *password) {
    request r = {0};
    ferry_session_info info = info_for(&r);
    return ferry_direction_forward()->authenticate(fwd, &info, user, password);
}

/* ---- temp files ---- */

typedef struct tmpdir {
    char dir[64];
    char paths[4][128];
    int npaths;
} tmpdir;

static void tmp_open(tmpdir *t) {
    memset(t, 0, sizeof *t);
    strcpy(t->dir, "/tmp/ferry-config-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(t->dir));
}

/* Write `name` in the temp dir; returns its path. */
static const char *tmp_write(tmpdir *t, const char *name, const char *content) {
    ck_assert_int_lt(t->npaths, 4);
    char *path = t->paths[t->npaths++];
    char joined[sizeof t->paths[0]]; /* not straight into *t: snprintf would read it too */
    snprintf(joined, sizeof joined, "%s/%s", t->dir, name);
    memcpy(path, joined, sizeof joined);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fputs(content, f) >= 0, 1);
    ck_assert_int_eq(fclose(f), 0);
    return path;
}

static void tmp_close(tmpdir *t) {
    for (int i = 0; i < t->npaths; i++) unlink(t->paths[i]);
    ck_assert_int_eq(rmdir(t->dir), 0);
}

/* ---- directives ---- */

START_TEST(daemon_settings_are_kept_for_the_getters) {
    ferry_forward *fwd = fwd_with("listen 127.0.0.1:3128\n"
                                  "listen [::1]:3128\n"
                                  "workers 8\n"
                                  "access-log /var/log/ferry/access.log\n");
    ck_assert_uint_eq(ferry_forward_listen_count(fwd), 2);
    ck_assert_str_eq(ferry_forward_listen_at(fwd, 0), "127.0.0.1:3128");
    ck_assert_str_eq(ferry_forward_listen_at(fwd, 1), "[::1]:3128");
    ck_assert_uint_eq(ferry_forward_workers(fwd), 8);
    ck_assert_str_eq(ferry_forward_access_log(fwd), "/var/log/ferry/access.log");
    ferry_forward_free(fwd);

    fwd = fwd_with("access-log -\nworkers 1\nworkers 256\n");
    ck_assert_str_eq(ferry_forward_access_log(fwd), "-");
    ck_assert_uint_eq(ferry_forward_workers(fwd), 256); /* a later line wins */
    ck_assert_uint_eq(ferry_forward_listen_count(fwd), 0);
    ferry_forward_free(fwd);
}
END_TEST

START_TEST(deny_host_adds_a_rule_at_its_position) {
    ferry_forward *fwd = fwd_with("allow host vip.blocked.test\n"
                                  "deny-host .blocked.test,ads.example\n");
    ck_assert_int_eq(admit(fwd, (request){.host = "www.blocked.test"}), FERRY_EREJECTED);
    ck_assert_int_eq(admit(fwd, (request){.host = "blocked.test"}), FERRY_EREJECTED);
    ck_assert_int_eq(admit(fwd, (request){.host = "ads.example"}), FERRY_EREJECTED);
    ck_assert_int_eq(admit(fwd, (request){.host = "vip.blocked.test"}), FERRY_OK);
    ck_assert_int_eq(admit(fwd, (request){.host = "www.example.com"}), FERRY_OK);
    ferry_forward_free(fwd);
}
END_TEST

START_TEST(allow_and_deny_rules_apply_in_order) {
    ferry_forward *fwd = fwd_with("user alice pw1\n"
                                  "user bob pw2\n"
                                  "allow user alice host intranet.test\n"
                                  "deny host intranet.test\n"
                                  "deny method DELETE\n"
                                  "deny client 192.168.7.0/24 port 25,465-587\n");
    ck_assert_int_eq(admit(fwd, (request){.host = "intranet.test", .user = "alice"}), FERRY_OK);
    ck_assert_int_eq(admit(fwd, (request){.host = "intranet.test", .user = "bob"}),
                     FERRY_EREJECTED);
    ck_assert_int_eq(admit(fwd, (request){.host = "a.test", .method = "DELETE"}),
                     FERRY_EREJECTED);
    ck_assert_int_eq(admit(fwd, (request){.client = "192.168.7.9", .host = "a.test", .port = 465}),
                     FERRY_EREJECTED);
    ck_assert_int_eq(admit(fwd, (request){.client = "192.168.7.9", .host = "a.test", .port = 80}),
                     FERRY_OK);
    ferry_forward_free(fwd);
}
END_TEST

START_TEST(keywords_are_case_insensitive) {
    ferry_forward *fwd = fwd_with("LISTEN 127.0.0.1:8080\n"
                                  "Workers 3\n"
                                  "DENY-Host bad.test\n"
                                  "Allow\n" /* everything: the rules after it never apply */
                                  "deny host good.test\n"
                                  "Anonymity STRICT\n");
    ck_assert_uint_eq(ferry_forward_listen_count(fwd), 1);
    ck_assert_uint_eq(ferry_forward_workers(fwd), 3);
    ck_assert_int_eq(admit(fwd, (request){.host = "bad.test"}), FERRY_EREJECTED);
    ck_assert_int_eq(admit(fwd, (request){.host = "good.test"}), FERRY_OK);
    ferry_forward_free(fwd);
}
END_TEST

START_TEST(allow_client_replaces_the_private_default) {
    ferry_forward *fwd = fwd_with("");
    ck_assert_int_eq(admit_client(fwd, "10.1.2.3"), FERRY_OK);
    ck_assert_int_eq(admit_client(fwd, "203.0.113.5"), FERRY_EREJECTED);
    ferry_forward_free(fwd);

    fwd = fwd_with("allow-client 203.0.113.0/24,2001:db8::/32\n"
                   "allow-client 198.51.100.7\n");
    ck_assert_int_eq(admit_client(fwd, "203.0.113.5"), FERRY_OK);
    ck_assert_int_eq(admit_client(fwd, "2001:db8::1"), FERRY_OK);
    ck_assert_int_eq(admit_client(fwd, "198.51.100.7"), FERRY_OK);
    ck_assert_int_eq(admit_client(fwd, "198.51.100.8"), FERRY_EREJECTED);
    ck_assert_int_eq(admit_client(fwd, "10.1.2.3"), FERRY_EREJECTED);
    ferry_forward_free(fwd);
}
END_TEST

START_TEST(allow_dest_lifts_the_refused_ranges) {
    ferry_forward *fwd = fwd_with("");
    ck_assert_int_eq(admit_address(fwd, "127.0.0.1"), FERRY_EREJECTED);
    ck_assert_int_eq(admit_address(fwd, "169.254.169.254"), FERRY_EREJECTED);
    ferry_forward_free(fwd);

    fwd = fwd_with("allow-dest 127.0.0.0/8,::1\n");
    ck_assert_int_eq(admit_address(fwd, "127.0.0.1"), FERRY_OK);
    ck_assert_int_eq(admit_address(fwd, "169.254.169.254"), FERRY_EREJECTED);
    ferry_forward_free(fwd);
}
END_TEST

START_TEST(connect_ports_sets_the_tunnel_ports) {
    ferry_forward *fwd = fwd_with("");
    ck_assert_int_eq(admit(fwd, (request){.host = "a.test", .port = 443, .proto = FERRY_PROXY_CONNECT}),
                     FERRY_OK);
    ck_assert_int_eq(admit(fwd, (request){.host = "a.test", .port = 8443, .proto = FERRY_PROXY_CONNECT}),
                     FERRY_EREJECTED);
    ferry_forward_free(fwd);

    fwd = fwd_with("connect-ports 443,8443,9000-9100\n");
    uint16_t good[] = {443, 8443, 9000, 9050, 9100}, bad[] = {22, 8999, 9101};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        ck_assert_int_eq(admit(fwd, (request){.host = "a.test", .port = good[i],
                                              .proto = FERRY_PROXY_CONNECT}),
                         FERRY_OK);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_int_eq(admit(fwd, (request){.host = "a.test", .port = bad[i],
                                              .proto = FERRY_PROXY_CONNECT}),
                         FERRY_EREJECTED);
    ferry_forward_free(fwd);
}
END_TEST

START_TEST(user_lines_require_and_accept_credentials) {
    ferry_forward *fwd = fwd_with("");
    ck_assert_int_eq(authenticate(fwd, NULL, NULL), FERRY_OK); /* none required by default */
    ferry_forward_free(fwd);

    fwd = fwd_with("user alice \"pass word #1 \\\"quoted\\\" \\\\\"\n"
                   "user bob:x y:z\n");
    ck_assert_int_eq(authenticate(fwd, "alice", "pass word #1 \"quoted\" \\"), FERRY_OK);
    ck_assert_int_eq(authenticate(fwd, "alice", "pass"), FERRY_EAUTH);
    ck_assert_int_eq(authenticate(fwd, "bob:x", "y:z"), FERRY_OK);
    ck_assert_int_eq(authenticate(fwd, NULL, NULL), FERRY_EAUTH);
    ferry_forward_free(fwd);
}
END_TEST

START_TEST(anonymity_and_header_allow_are_accepted) {
    static const char *const ok[] = {
        "anonymity transparent\n", "anonymity anonymous\n", "anonymity strict\n",
        "anonymity Strict\nheader-allow Accept,Host,X-Request-Id\n",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) ferry_forward_free(fwd_with(ok[i]));
    expect_error("anonymity loud\n",
                 CONF ":1: anonymity: expected transparent, anonymous or strict");
}
END_TEST

START_TEST(parents_and_routes_with_failover) {
    ferry_forward *fwd = fwd_with("parent p1 http://carol:s3cret@proxy1.test:3128\n"
                                  "parent p2 socks5://10.0.0.2:1080\n"
                                  "route .corp.test p1,p2,direct\n"
                                  "route * p2\n");
    const ferry_parent *p1 = ferry_forward_parent(fwd, "p1");
    const ferry_parent *p2 = ferry_forward_parent(fwd, "p2");
    ck_assert_ptr_nonnull(p1);
    ck_assert_ptr_nonnull(p2);
    ck_assert_ptr_null(ferry_forward_parent(fwd, "p3"));
    ck_assert_int_eq(p1->kind, FERRY_PARENT_HTTP);
    ck_assert_str_eq(p1->host, "proxy1.test");
    ck_assert_uint_eq(p1->port, 3128);
    ck_assert_str_eq(p1->user, "carol");
    ck_assert_str_eq(p1->password, "s3cret");
    ck_assert_int_eq(p2->kind, FERRY_PARENT_SOCKS5);
    ck_assert_uint_eq(p2->port, 1080);

    const ferry_direction_ops *ops = ferry_direction_forward();
    request r = {.host = "www.corp.test", .port = 80};
    ferry_session_info info = info_for(&r);
    uintptr_t state = 0;
    ferry_target t;
    const ferry_parent *want[] = {p1, p2, NULL};
    for (unsigned attempt = 0; attempt < 3; attempt++) {
        memset(&t, 0, sizeof t);
        ck_assert_int_eq(ops->pick(fwd, &info, attempt, &state, &t), FERRY_OK);
        ck_assert_ptr_eq(t.parent, want[attempt]);
    }
    ck_assert_str_eq(t.host, "www.corp.test"); /* "direct" goes to the destination itself */

    r.host = "elsewhere.test";
    info = info_for(&r);
    state = 0;
    memset(&t, 0, sizeof t);
    ck_assert_int_eq(ops->pick(fwd, &info, 0, &state, &t), FERRY_OK);
    ck_assert_ptr_eq(t.parent, p2);
    ferry_forward_free(fwd);
}
END_TEST

/* ---- line syntax ---- */

START_TEST(comments_blank_lines_whitespace_and_crlf) {
    ferry_forward *fwd = fwd_with("# a comment line\r\n"
                                  "\r\n"
                                  "   \t  \n"
                                  "  listen   127.0.0.1:3128   # trailing comment\r\n"
                                  "\tworkers\t4\t\r\n"
                                  "#workers 9\n"
                                  "deny-host bad.test# no space needed before a comment\n"
                                  "access-log /var/log/a.log"); /* no final newline */
    ck_assert_uint_eq(ferry_forward_listen_count(fwd), 1);
    ck_assert_str_eq(ferry_forward_listen_at(fwd, 0), "127.0.0.1:3128");
    ck_assert_uint_eq(ferry_forward_workers(fwd), 4);
    ck_assert_int_eq(admit(fwd, (request){.host = "bad.test"}), FERRY_EREJECTED);
    ck_assert_str_eq(ferry_forward_access_log(fwd), "/var/log/a.log");
    ferry_forward_free(fwd);
}
END_TEST

START_TEST(quotes_hold_spaces_hashes_and_escapes) {
    ferry_forward *fwd = fwd_with("access-log \"/var/log/my logs/#1 \\\"a\\\" \\\\.log\" # c\n");
    ck_assert_str_eq(ferry_forward_access_log(fwd), "/var/log/my logs/#1 \"a\" \\.log");
    ferry_forward_free(fwd);
    /* Quoted and unquoted parts of one word join, as in a shell. */
    fwd = fwd_with("access-log /tmp/\"a b\"c\nworkers \"12\"\n");
    ck_assert_str_eq(ferry_forward_access_log(fwd), "/tmp/a bc");
    ck_assert_uint_eq(ferry_forward_workers(fwd), 12);
    ferry_forward_free(fwd);
    /* A rule may be quoted word by word; it reaches the rule language unchanged. */
    fwd = fwd_with("deny \"host\" \"quoted.test\"\n");
    ck_assert_int_eq(admit(fwd, (request){.host = "quoted.test"}), FERRY_EREJECTED);
    ferry_forward_free(fwd);
}
END_TEST

START_TEST(byte_order_mark_and_empty_text) {
    ferry_forward *fwd = fwd_with("\xef\xbb\xbfworkers 2\n");
    ck_assert_uint_eq(ferry_forward_workers(fwd), 2);
    ferry_forward_free(fwd);
    fwd = fwd_new();
    ck_assert_int_eq(ferry_forward_parse_config(fwd, NULL, 0, CONF, NULL, 0), FERRY_OK);
    ck_assert_uint_eq(ferry_forward_workers(fwd), 0);
    ferry_forward_free(fwd);
}
END_TEST

START_TEST(lines_up_to_4096_bytes) {
    char *text = malloc(8192);
    ck_assert_ptr_nonnull(text);
    /* "deny-host " + name = exactly 4096 bytes, then the same line one byte longer. */
    memset(text, 'a', 8192);
    memcpy(text, "deny-host ", 10);
    memcpy(text + 4096, "\r\n", 2); /* the line ending does not count */
    ferry_forward *fwd = fwd_new();
    char err[ERR_SIZE] = "";
    ck_assert_int_eq(ferry_forward_parse_config(fwd, text, 4098, CONF, err, sizeof err), FERRY_OK);
    ferry_forward_free(fwd);

    memcpy(text + 4096, "a\n", 2);
    fwd = fwd_new();
    ck_assert_int_eq(ferry_forward_parse_config(fwd, text, 4098, CONF, err, sizeof err),
                     FERRY_ECONFIG);
    ck_assert_str_eq(err, CONF ":1: line longer than 4096 bytes");
    ferry_forward_free(fwd);
    free(text);
}
END_TEST

/* ---- errors ---- */

START_TEST(every_error_names_file_and_line) {
    expect_error("listen 127.0.0.1:3128\n\nlisen 1.2.3.4:5\n", CONF ":3: unknown directive 'lisen'");
    expect_error("# c\n\n\nworkers 0\n", CONF ":4: workers: expected a number from 1 to 256");
    expect_error("workers 257\n", CONF ":1: workers: expected a number from 1 to 256");
    expect_error("workers 99999999999999999999\n", CONF ":1: workers: expected a number from 1 to 256");
    expect_error("workers -1\n", CONF ":1: workers: expected a number from 1 to 256");
    expect_error("workers 4x\n", CONF ":1: workers: expected a number from 1 to 256");
    expect_error("workers\n", CONF ":1: workers: expected a number from 1 to 256");
    expect_error("workers 1 2\n", CONF ":1: workers: expected a number from 1 to 256");
    expect_error("listen\n", CONF ":1: listen: expected ADDR:PORT");
    expect_error("listen localhost:3128\n",
                 CONF ":1: listen: 'localhost:3128' is not IP:PORT (e.g. 127.0.0.1:3128, "
                      "0.0.0.0:3128, [::1]:3128)");
    expect_error("listen 127.0.0.1\n",
                 CONF ":1: listen: '127.0.0.1' is not IP:PORT (e.g. 127.0.0.1:3128, "
                      "0.0.0.0:3128, [::1]:3128)");
    expect_error("access-log\n", CONF ":1: access-log: expected a file name or '-'");
    expect_error("access-log \"\"\n", CONF ":1: access-log: empty file name");
    expect_error("allow-client 10.0.0.0/33\n",
                 CONF ":1: allow-client: '10.0.0.0/33' is not an address or CIDR (e.g. 10.0.0.0/8)");
    expect_error("allow-client 10.0.0.1,,10.0.0.2\n", CONF ":1: allow-client: empty entry in the list");
    expect_error("allow-dest 127.0.0.0/8 10.0.0.0/8\n", CONF ":1: allow-dest: expected CIDR[,CIDR...]");
    expect_error("allow-dest example.com\n",
                 CONF ":1: allow-dest: 'example.com' is not an address or CIDR (e.g. 10.0.0.0/8)");
    expect_error("deny-host\n", CONF ":1: deny-host: expected PATTERN[,PATTERN...]");
    expect_error("connect-ports https\n",
                 CONF ":1: connect-ports: 'https' is not a port list (e.g. 443,8443,9000-9100)");
    expect_error("auth-file\n", CONF ":1: auth-file: expected a file name");
    expect_error("user alice\n", CONF ":1: user: expected NAME PASSWORD");
    expect_error("user \"al ice\" pw\n",
                 CONF ":1: user: the name must be 1 to 255 bytes without whitespace");
    expect_error("user \"\" pw\n", CONF ":1: user: the name must be 1 to 255 bytes without whitespace");
    expect_error("user alice \"\"\n", CONF ":1: user: the password must be 1 to 255 bytes");
    expect_error("user - pw\n", CONF ":1: user: user name '-' is reserved (rules use it for 'nobody')");
    expect_error("anonymity\n", CONF ":1: anonymity: expected transparent, anonymous or strict");
    expect_error("header-allow\n", CONF ":1: header-allow: expected NAME[,NAME...]");
    expect_error("parent p1\n", CONF ":1: parent: expected NAME URL");
    expect_error("route .corp.test\n", CONF ":1: route: expected PATTERN PARENT[,PARENT...]");
    expect_error("allow host \"a b.test\"\n",
                 CONF ":1: rule words cannot contain spaces (\"a b.test\")");
    expect_error("workers 2\naccess-log \"/tmp/x\n", CONF ":2: unterminated quote");
    expect_error("access-log \"/tmp/\\x\"\n",
                 CONF ":1: in quotes, a backslash must be followed by \" or \\");
    expect_error("access-log \"/tmp/x\\\n", CONF ":1: in quotes, a backslash must be followed by \" or \\");
    expect_error("bob:secret\n", CONF ":1: expected a directive such as 'listen' or 'allow'");
    expect_error("\"\" x\n", CONF ":1: expected a directive such as 'listen' or 'allow'");
    /* Messages worded by the setters follow the file and line. */
    expect_error_prefix("workers 2\nallow frobnicate example.com\n", CONF ":2: ");
    expect_error_prefix("deny time someday 09:00-17:00\n", CONF ":1: ");
    expect_error_prefix("\n\nparent p1 ftp://proxy.test:21\n", CONF ":3: ");
    expect_error_prefix("parent p1 http://proxy.test:3128\nroute .corp.test p1,nope\n", CONF ":2: ");
}
END_TEST

START_TEST(nul_bytes_and_word_limits) {
    ferry_forward *fwd = fwd_new();
    char err[ERR_SIZE] = "";
    static const char text[] = "workers 2\nworkers 3\0\n";
    ck_assert_int_eq(ferry_forward_parse_config(fwd, text, sizeof text - 1, CONF, err, sizeof err),
                     FERRY_ECONFIG);
    ck_assert_str_eq(err, CONF ":2: NUL byte in line");
    ferry_forward_free(fwd);

    char line[600] = "deny";
    for (int i = 0; i < 128; i++) strcat(line, " x");
    expect_error(line, CONF ":1: too many words on one line");
    line[strlen(line) - 2] = '\0'; /* 128 words exactly: the rule language gets them */
    expect_error_prefix(line, CONF ":1: ");
}
END_TEST

START_TEST(first_error_stops_and_earlier_lines_stay_applied) {
    ferry_forward *fwd = fwd_new();
    char err[ERR_SIZE] = "";
    ck_assert_int_eq(parse(fwd, "workers 4\ndeny-host a.test\nbogus\nworkers 8\ndeny-host b.test\n", err),
                     FERRY_ECONFIG);
    ck_assert_str_eq(err, CONF ":3: unknown directive 'bogus'");
    ck_assert_uint_eq(ferry_forward_workers(fwd), 4);
    ck_assert_int_eq(admit(fwd, (request){.host = "a.test"}), FERRY_EREJECTED);
    ck_assert_int_eq(admit(fwd, (request){.host = "b.test"}), FERRY_OK);
    ferry_forward_free(fwd);
}
END_TEST

START_TEST(bad_arguments_and_small_error_buffers) {
    ferry_forward *fwd = fwd_new();
    char err[ERR_SIZE] = "";
    ck_assert_int_eq(ferry_forward_parse_config(NULL, "", 0, CONF, err, sizeof err), FERRY_EINVAL);
    ck_assert_int_eq(ferry_forward_parse_config(fwd, NULL, 3, CONF, err, sizeof err), FERRY_EINVAL);
    ck_assert_int_eq(ferry_forward_parse_config(fwd, "", 0, NULL, err, sizeof err), FERRY_EINVAL);
    ck_assert_int_eq(ferry_forward_load_config(fwd, NULL, err, sizeof err), FERRY_EINVAL);
    ck_assert_int_eq(ferry_forward_load_users(NULL, "/x", err, sizeof err), FERRY_EINVAL);
    ck_assert_int_eq(ferry_forward_parse_config(fwd, "bogus", 5, CONF, NULL, 0), FERRY_ECONFIG);
    char tiny[8];
    ck_assert_int_eq(ferry_forward_parse_config(fwd, "bogus", 5, CONF, tiny, sizeof tiny),
                     FERRY_ECONFIG);
    ck_assert_str_eq(tiny, "ferry.c"); /* truncated, still terminated */
    ferry_forward_free(fwd);
}
END_TEST

START_TEST(a_5000_line_config_parses) {
    size_t cap = 5000 * 48, n = 0;
    char *text = malloc(cap);
    ck_assert_ptr_nonnull(text);
    for (int i = 0; i < 5000; i++) {
        int w = i % 5 == 0   ? snprintf(text + n, cap - n, "# block list part %d\n", i)
                : i % 5 == 1 ? snprintf(text + n, cap - n, "\n")
                             : snprintf(text + n, cap - n, "deny-host .h%d.test\n", i);
        n += (size_t)w;
    }
    ferry_forward *fwd = fwd_new();
    char err[ERR_SIZE] = "";
    ck_assert_int_eq(ferry_forward_parse_config(fwd, text, n, CONF, err, sizeof err), FERRY_OK);
    ck_assert_int_eq(admit(fwd, (request){.host = "www.h4999.test"}), FERRY_EREJECTED);
    ck_assert_int_eq(admit(fwd, (request){.host = "www.h5000.test"}), FERRY_OK);
    ferry_forward_free(fwd);
    free(text);
}
END_TEST

/* ---- files ---- */

START_TEST(load_config_reads_a_file) {
    tmpdir t;
    tmp_open(&t);
    const char *conf = tmp_write(&t, "ferry.conf", "listen 127.0.0.1:3128\r\nworkers 5\r\n");
    ferry_forward *fwd = fwd_new();
    char err[ERR_SIZE] = "";
    ck_assert_int_eq(ferry_forward_load_config(fwd, conf, err, sizeof err), FERRY_OK);
    ck_assert_uint_eq(ferry_forward_workers(fwd), 5);
    ck_assert_str_eq(ferry_forward_listen_at(fwd, 0), "127.0.0.1:3128");
    ferry_forward_free(fwd);

    conf = tmp_write(&t, "bad.conf", "workers 5\n\nworkers 500\n");
    fwd = fwd_new();
    ck_assert_int_eq(ferry_forward_load_config(fwd, conf, err, sizeof err), FERRY_ECONFIG);
    char want[ERR_SIZE];
    snprintf(want, sizeof want, "%s:3: workers: expected a number from 1 to 256", conf);
    ck_assert_str_eq(err, want);

    snprintf(want, sizeof want, "%s/none.conf", t.dir);
    ck_assert_int_eq(ferry_forward_load_config(fwd, want, err, sizeof err), FERRY_ECONFIG);
    strcat(want, ": cannot open: No such file or directory");
    ck_assert_str_eq(err, want);
    ferry_forward_free(fwd);
    tmp_close(&t);
}
END_TEST

START_TEST(load_config_long_lines_in_a_file) {
    tmpdir t;
    tmp_open(&t);
    char *text = malloc(8192);
    ck_assert_ptr_nonnull(text);
    memset(text, 'a', 8192);
    memcpy(text, "deny-host ", 10);
    memcpy(text + 4096, "\r\nworkers 2\n", 13);
    const char *conf = tmp_write(&t, "ok.conf", text);
    ferry_forward *fwd = fwd_new();
    char err[ERR_SIZE] = "";
    ck_assert_int_eq(ferry_forward_load_config(fwd, conf, err, sizeof err), FERRY_OK);
    ck_assert_uint_eq(ferry_forward_workers(fwd), 2);
    ferry_forward_free(fwd);

    /* Line 2 one byte too long: "deny-host " and 4087 bytes of name. */
    memset(text, 'a', 8192);
    memcpy(text, "workers 2\ndeny-host ", 20);
    memcpy(text + 10 + 4097, "\n", 2);
    conf = tmp_write(&t, "long.conf", text);
    fwd = fwd_new();
    ck_assert_int_eq(ferry_forward_load_config(fwd, conf, err, sizeof err), FERRY_ECONFIG);
    char want[ERR_SIZE];
    snprintf(want, sizeof want, "%s:2: line longer than 4096 bytes", conf);
    ck_assert_str_eq(err, want);
    ferry_forward_free(fwd);
    free(text);
    tmp_close(&t);
}
END_TEST

START_TEST(auth_file_is_relative_to_the_config_file) {
    tmpdir t;
    tmp_open(&t);
    tmp_write(&t, "users", "# who may use the proxy\n"
                           "\n"
                           "alice:pw:with:colons\r\n"
                           "bob: spaces and # kept \n");
    const char *conf = tmp_write(&t, "ferry.conf", "auth-file users\n");
    ferry_forward *fwd = fwd_new();
    char err[ERR_SIZE] = "";
    ck_assert_int_eq(ferry_forward_load_config(fwd, conf, err, sizeof err), FERRY_OK);
    ck_assert_int_eq(authenticate(fwd, "alice", "pw:with:colons"), FERRY_OK);
    ck_assert_int_eq(authenticate(fwd, "bob", " spaces and # kept "), FERRY_OK);
    ck_assert_int_eq(authenticate(fwd, NULL, NULL), FERRY_EAUTH);
    ferry_forward_free(fwd);

    /* parse_config takes the directory from its name; absolute paths stay as they are. */
    char text[256];
    snprintf(text, sizeof text, "auth-file users\n");
    fwd = fwd_new();
    ck_assert_int_eq(ferry_forward_parse_config(fwd, text, strlen(text), conf, err, sizeof err),
                     FERRY_OK);
    ck_assert_int_eq(authenticate(fwd, "alice", "pw:with:colons"), FERRY_OK);
    ferry_forward_free(fwd);
    snprintf(text, sizeof text, "auth-file \"%s/users\"\n", t.dir);
    fwd = fwd_new();
    ck_assert_int_eq(ferry_forward_parse_config(fwd, text, strlen(text), "elsewhere/x.conf", err,
                                                sizeof err),
                     FERRY_OK);
    ck_assert_int_eq(authenticate(fwd, "bob", " spaces and # kept "), FERRY_OK);
    ferry_forward_free(fwd);
    tmp_close(&t);
}
END_TEST

START_TEST(auth_file_errors_name_the_users_file) {
    tmpdir t;
    tmp_open(&t);
    const char *users = tmp_write(&t, "users", "alice:pw\n\nmallory SECRETPW\n");
    const char *conf = tmp_write(&t, "ferry.conf", "workers 2\nauth-file users\n");
    ferry_forward *fwd = fwd_new();
    char err[ERR_SIZE] = "", want[ERR_SIZE];
    ck_assert_int_eq(ferry_forward_load_config(fwd, conf, err, sizeof err), FERRY_ECONFIG);
    snprintf(want, sizeof want, "%s:3: expected user:password", users);
    ck_assert_str_eq(err, want);
    ferry_forward_free(fwd);

    conf = tmp_write(&t, "missing.conf", "auth-file nothere\n");
    fwd = fwd_new();
    ck_assert_int_eq(ferry_forward_load_config(fwd, conf, err, sizeof err), FERRY_ECONFIG);
    snprintf(want, sizeof want, "%s/nothere: cannot open: No such file or directory", t.dir);
    ck_assert_str_eq(err, want);
    ferry_forward_free(fwd);
    tmp_close(&t);
}
END_TEST

START_TEST(load_users_good_and_bad_lines) {
    tmpdir t;
    tmp_open(&t);
    char long_user[300], long_pw[300];
    memset(long_user, 'u', 255);
    long_user[255] = '\0';
    memset(long_pw, 'p', 255);
    long_pw[255] = '\0';
    char good[1024];
    snprintf(good, sizeof good, "\xef\xbb\xbf# users\n  # indented comment\n\t\n%s:%s\ncarol:x\n",
             long_user, long_pw);
    const char *path = tmp_write(&t, "good", good);
    ferry_forward *fwd = fwd_new();
    char err[ERR_SIZE] = "";
    ck_assert_int_eq(ferry_forward_load_users(fwd, path, err, sizeof err), FERRY_OK);
    ck_assert_int_eq(authenticate(fwd, long_user, long_pw), FERRY_OK);
    ck_assert_int_eq(authenticate(fwd, "carol", "x"), FERRY_OK);
    ferry_forward_free(fwd);

    /* Each bad line on line 2, after a good one; no message may show the password. */
    char too_long_user[600], too_long_pw[600];
    snprintf(too_long_user, sizeof too_long_user, "%su:SECRETPW", long_user);
    snprintf(too_long_pw, sizeof too_long_pw, "alice:SECRETPW%s", long_pw);
    static const char nul_line[] = "alice:SECRET\0PW";
    const struct {
        const char *line;
        size_t len;
        const char *why;
    } bad[] = {
        {"alice SECRETPW", 14, "expected user:password"},
        {":SECRETPW", 9, "empty user name"},
        {"al ice:SECRETPW", 15, "user name contains whitespace"},
        {" alice:SECRETPW", 15, "user name contains whitespace"},
        {"alice:", 6, "empty password"},
        {"-:SECRETPW", 10, "user name '-' is reserved (rules use it for 'nobody')"},
        {too_long_user, strlen(too_long_user), "user name longer than 255 bytes"},
        {too_long_pw, strlen(too_long_pw), "password longer than 255 bytes"},
        {nul_line, sizeof nul_line - 1, "NUL byte in line"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        FILE *f = fopen(path, "wb");
        ck_assert_ptr_nonnull(f);
        fputs("carol:x\n", f);
        ck_assert_uint_eq(fwrite(bad[i].line, 1, bad[i].len, f), bad[i].len);
        fputs("\n", f);
        ck_assert_int_eq(fclose(f), 0);
        fwd = fwd_new();
        ck_assert_int_eq(ferry_forward_load_users(fwd, path, err, sizeof err), FERRY_ECONFIG);
        char want[ERR_SIZE];
        snprintf(want, sizeof want, "%s:2: %s", path, bad[i].why);
        ck_assert_str_eq(err, want);
        ck_assert_ptr_null(strstr(err, "SECRET"));
        ferry_forward_free(fwd);
    }

    fwd = fwd_new();
    char none[ERR_SIZE / 2], want[ERR_SIZE];
    snprintf(none, sizeof none, "%s/none", t.dir);
    snprintf(want, sizeof want, "%s: cannot open: No such file or directory", none);
    ck_assert_int_eq(ferry_forward_load_users(fwd, none, err, sizeof err), FERRY_ECONFIG);
    ck_assert_str_eq(err, want);
    ck_assert_int_eq(ferry_forward_load_users(fwd, t.dir, err, sizeof err), FERRY_ECONFIG);
    snprintf(want, sizeof want, "%s:1: cannot read: Is a directory", t.dir);
    ck_assert_str_eq(err, want);
    ferry_forward_free(fwd);
    tmp_close(&t);
}
END_TEST

START_TEST(no_password_in_config_errors) {
    static const char *const texts[] = {
        "user alice SECRETPW extra\n",
        "user \"al ice\" SECRETPW\n",
        "user alice \"SECRETPW\n",
        "parent p1 http://u:SECRETPW@proxy.test:notaport\n",
        "parent p1 http://u:SECRETPW@\n",
        "parent p1 gopher://u:SECRETPW@proxy.test:70\n",
        "alice:SECRETPW\n",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        ferry_forward *fwd = fwd_new();
        char err[ERR_SIZE] = "";
        ck_assert_int_eq(parse(fwd, texts[i], err), FERRY_ECONFIG);
        ck_assert_msg(strstr(err, "SECRET") == NULL, "password in '%s'", err);
        ferry_forward_free(fwd);
    }
}
END_TEST

int main(void) {
    Suite *s = suite_create("forward_config");
    TCase *tc = tcase_create("directives");
    tcase_add_test(tc, daemon_settings_are_kept_for_the_getters);
    tcase_add_test(tc, deny_host_adds_a_rule_at_its_position);
    tcase_add_test(tc, allow_and_deny_rules_apply_in_order);
    tcase_add_test(tc, keywords_are_case_insensitive);
    tcase_add_test(tc, allow_client_replaces_the_private_default);
    tcase_add_test(tc, allow_dest_lifts_the_refused_ranges);
    tcase_add_test(tc, connect_ports_sets_the_tunnel_ports);
    tcase_add_test(tc, user_lines_require_and_accept_credentials);
    tcase_add_test(tc, anonymity_and_header_allow_are_accepted);
    tcase_add_test(tc, parents_and_routes_with_failover);
    suite_add_tcase(s, tc);

    tc = tcase_create("syntax");
    tcase_add_test(tc, comments_blank_lines_whitespace_and_crlf);
    tcase_add_test(tc, quotes_hold_spaces_hashes_and_escapes);
    tcase_add_test(tc, byte_order_mark_and_empty_text);
    tcase_add_test(tc, lines_up_to_4096_bytes);
    tcase_add_test(tc, every_error_names_file_and_line);
    tcase_add_test(tc, nul_bytes_and_word_limits);
    tcase_add_test(tc, first_error_stops_and_earlier_lines_stay_applied);
    tcase_add_test(tc, bad_arguments_and_small_error_buffers);
    tcase_add_test(tc, a_5000_line_config_parses);
    suite_add_tcase(s, tc);

    tc = tcase_create("files");
    tcase_add_test(tc, load_config_reads_a_file);
    tcase_add_test(tc, load_config_long_lines_in_a_file);
    tcase_add_test(tc, auth_file_is_relative_to_the_config_file);
    tcase_add_test(tc, auth_file_errors_name_the_users_file);
    tcase_add_test(tc, load_users_good_and_bad_lines);
    tcase_add_test(tc, no_password_in_config_errors);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
