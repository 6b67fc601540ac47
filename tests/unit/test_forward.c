/* The built-in forward policy, driven through ferry_direction_forward()'s ops table with
 * hand-made sessions: rules, secure defaults, credentials, parents, anonymity. */
#include <arpa/inet.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "acl.h"
#include "ferry.h"
#include "ferry/forward.h"
#include "forward_int.h"
#include "http_int.h"
#include "testutil.h"

static const ferry_direction_ops *ops(void) { return ferry_direction_forward(); }

static ferry_forward *new_fwd(void) {
    ferry_forward *f = NULL;
    ck_assert_int_eq(ferry_forward_new(NULL, &f), FERRY_OK);
    ck_assert_ptr_nonnull(f);
    return f;
}

static void add_rule(ferry_forward *f, const char *text) {
    char err[160] = "";
    ferry_err e = ferry_forward_add_rule(f, text, err, sizeof err);
    ck_assert_msg(e == FERRY_OK, "rule '%s': %s", text, err);
}

static void fill_ip(const char *text, int *family, unsigned char *bytes) {
    if (inet_pton(AF_INET, text, bytes) == 1) {
        *family = AF_INET;
        return;
    }
    ck_assert_msg(inet_pton(AF_INET6, text, bytes) == 1, "bad test address %s", text);
    *family = AF_INET6;
}

static ferry_session_info sess(const char *client, int proto, const char *host, unsigned port,
                               const char *method, const char *user) {
    ferry_session_info s;
    memset(&s, 0, sizeof s);
    fill_ip(client, &s.client_family, s.client_ip);
    snprintf(s.client_addr, sizeof s.client_addr, "%s", client);
    s.proxy_protocol = proto;
    s.dest_host = host;
    s.dest_port = (uint16_t)port;
    s.method = method;
    s.user = user;
    return s;
}

/* An HTTP request from a loopback client. */
static ferry_session_info http(const char *host, unsigned port) {
    return sess("127.0.0.1", FERRY_PROXY_HTTP, host, port, "GET", "");
}

/* NULL when admitted, else the reason (asserting it is a rejection with a reason). */
static const char *verdict(ferry_err e, const char *reason) {
    if (e == FERRY_OK) return NULL;
    ck_assert_int_eq(e, FERRY_EREJECTED);
    ck_assert_ptr_nonnull(reason);
    return reason;
}

static const char *admit(ferry_forward *f, const ferry_session_info *s) {
    const char *reason = NULL;
    ferry_err e = ops()->admit(f, s, &reason);
    return verdict(e, reason);
}

static const char *admit_client(ferry_forward *f, const char *client) {
    ferry_session_info s = sess(client, FERRY_PROXY_NONE, "", 0, "", "");
    const char *reason = NULL;
    ferry_err e = ops()->admit_client(f, &s, &reason);
    return verdict(e, reason);
}

static const char *admit_address(ferry_forward *f, const ferry_session_info *s, const char *ip) {
    ferry__sockaddr sa;
    memset(&sa, 0, sizeof sa);
    int family;
    unsigned char b[16];
    fill_ip(ip, &family, b);
    if (family == AF_INET) {
        sa.in.sin_family = AF_INET;
        memcpy(&sa.in.sin_addr, b, 4);
    } else {
        sa.in6.sin6_family = AF_INET6;
        memcpy(&sa.in6.sin6_addr, b, 16);
    }
    const char *reason = NULL;
    ferry_err e = ops()->admit_address(f, s, &sa.sa, &reason);
    return verdict(e, reason);
}

/* ---- clients ---- */

START_TEST(clients_default_to_loopback_and_private_ranges) {
    ferry_forward *f = new_fwd();
    const char *inside[] = {"127.0.0.1", "127.8.9.10", "10.1.2.3",     "172.16.0.1",
                            "172.31.255.1", "192.168.1.1", "100.64.0.1", "::1",
                            "fd00::1",      "fe80::1",     "::ffff:10.0.0.1"};
    for (size_t i = 0; i < sizeof inside / sizeof *inside; i++)
        ck_assert_msg(admit_client(f, inside[i]) == NULL, "%s refused", inside[i]);
    const char *outside[] = {"8.8.8.8", "172.32.0.1", "100.128.0.1", "2001:db8::1",
                             "::ffff:8.8.8.8", "169.254.1.1"};
    for (size_t i = 0; i < sizeof outside / sizeof *outside; i++)
        ck_assert_pstr_eq(admit_client(f, outside[i]), "client not in allow-client list");
    ferry_forward_free(f);
}
END_TEST

START_TEST(allow_client_replaces_the_default_list) {
    ferry_forward *f = new_fwd();
    ck_assert_int_eq(ferry_forward_allow_client(f, "203.0.113.0/24"), FERRY_OK);
    ck_assert_ptr_null(admit_client(f, "203.0.113.77"));
    ck_assert_ptr_nonnull(admit_client(f, "127.0.0.1")); /* the default is gone */
    ck_assert_int_eq(ferry_forward_allow_client(f, "2001:db8::/32"), FERRY_OK);
    ck_assert_ptr_null(admit_client(f, "2001:db8::5"));
    ck_assert_ptr_null(admit_client(f, "203.0.113.1"));
    ck_assert_ptr_null(admit_client(f, "::ffff:203.0.113.9")); /* mapped clients are IPv4 */
    ck_assert_int_eq(ferry_forward_allow_client(f, "10.0.0.0/33"), FERRY_ECONFIG);
    ck_assert_int_eq(ferry_forward_allow_client(f, "nonsense"), FERRY_ECONFIG);
    ck_assert_int_eq(ferry_forward_allow_client(f, NULL), FERRY_EINVAL);
    ferry_forward_free(f);

    f = new_fwd(); /* a bad first call keeps the default */
    ck_assert_int_eq(ferry_forward_allow_client(f, "1.2.3.4/40"), FERRY_ECONFIG);
    ck_assert_ptr_null(admit_client(f, "127.0.0.1"));
    ferry_forward_free(f);
}
END_TEST

/* ---- rules, one kind at a time ---- */

START_TEST(client_rule) {
    ferry_forward *f = new_fwd();
    add_rule(f, "deny client 10.0.0.0/8,fd00::/8");
    ferry_session_info s = sess("10.9.8.7", FERRY_PROXY_HTTP, "example.com", 80, "GET", "");
    ck_assert_pstr_eq(admit(f, &s), "rule 1 (deny client 10.0.0.0/8,fd00::/8)");
    s = sess("::ffff:10.9.8.7", FERRY_PROXY_HTTP, "example.com", 80, "GET", "");
    ck_assert_ptr_nonnull(admit(f, &s));
    s = sess("fd00::2", FERRY_PROXY_HTTP, "example.com", 80, "GET", "");
    ck_assert_ptr_nonnull(admit(f, &s));
    s = sess("192.168.0.1", FERRY_PROXY_HTTP, "example.com", 80, "GET", "");
    ck_assert_ptr_null(admit(f, &s));
    ferry_forward_free(f);
}
END_TEST

START_TEST(user_rule) {
    ferry_forward *f = new_fwd();
    add_rule(f, "allow user alice,bob");
    add_rule(f, "deny user -");
    add_rule(f, "deny all");
    ferry_session_info s = sess("127.0.0.1", FERRY_PROXY_HTTP, "example.com", 80, "GET", "alice");
    ck_assert_ptr_null(admit(f, &s));
    s.user = "bob";
    ck_assert_ptr_null(admit(f, &s));
    s.user = "Alice"; /* user names are case-sensitive */
    ck_assert_pstr_eq(admit(f, &s), "rule 3 (deny all)");
    s.user = "";
    ck_assert_pstr_eq(admit(f, &s), "rule 2 (deny user -)");
    ferry_forward_free(f);
}
END_TEST

START_TEST(host_rules_exact_suffix_glob) {
    ferry_forward *f = new_fwd();
    add_rule(f, "deny host example.com");
    add_rule(f, "deny host .example.org");
    add_rule(f, "deny host *.ex?mple.net");
    ferry_session_info s = http("EXAMPLE.com.", 80);
    ck_assert_pstr_eq(admit(f, &s), "rule 1 (deny host example.com)");
    s.dest_host = "www.example.com";
    ck_assert_ptr_null(admit(f, &s));
    s.dest_host = "example.org";
    ck_assert_pstr_eq(admit(f, &s), "rule 2 (deny host .example.org)");
    s.dest_host = "a.b.Example.org";
    ck_assert_ptr_nonnull(admit(f, &s));
    s.dest_host = "badexample.org";
    ck_assert_ptr_null(admit(f, &s));
    s.dest_host = "www.example.net";
    ck_assert_pstr_eq(admit(f, &s), "rule 3 (deny host *.ex?mple.net)");
    s.dest_host = "a.b.exbmple.net";
    ck_assert_ptr_nonnull(admit(f, &s));
    s.dest_host = "example.net";
    ck_assert_ptr_null(admit(f, &s));
    s.dest_host = "www.exaample.net";
    ck_assert_ptr_null(admit(f, &s));
    ferry_forward_free(f);
}
END_TEST

START_TEST(dest_rule_on_the_resolved_address) {
    ferry_forward *f = new_fwd();
    add_rule(f, "deny dest 192.0.2.0/24,2001:db8::/32");
    ferry_session_info s = http("www.example.com", 80);
    ck_assert_ptr_null(admit(f, &s)); /* undecided until the address is known */
    ck_assert_pstr_eq(admit_address(f, &s, "192.0.2.7"), "rule 1 (deny dest 192.0.2.0/24,2001:db8::/32)");
    ck_assert_ptr_nonnull(admit_address(f, &s, "::ffff:192.0.2.7"));
    ck_assert_ptr_nonnull(admit_address(f, &s, "2001:db8::1"));
    ck_assert_ptr_null(admit_address(f, &s, "198.51.100.1"));
    ck_assert_ptr_null(admit_address(f, &s, "2001:db9::1"));
    s.dest_host = "192.0.2.9"; /* a literal is decided at once */
    ck_assert_ptr_nonnull(admit(f, &s));
    s.dest_host = "[2001:db8::5]";
    ck_assert_ptr_nonnull(admit(f, &s));
    s.dest_host = "::ffff:192.0.2.1";
    ck_assert_ptr_nonnull(admit(f, &s));
    ferry_forward_free(f);

    f = new_fwd(); /* a mapped CIDR is an IPv4 range */
    add_rule(f, "deny dest ::ffff:198.51.100.0/120");
    s = http("www.example.com", 80);
    ck_assert_ptr_nonnull(admit_address(f, &s, "198.51.100.20"));
    ck_assert_ptr_null(admit_address(f, &s, "198.51.101.20"));
    ferry_forward_free(f);
}
END_TEST

START_TEST(port_rule_with_ranges) {
    ferry_forward *f = new_fwd();
    add_rule(f, "deny port 25,6660-6669");
    ferry_session_info s = http("example.com", 25);
    ck_assert_ptr_nonnull(admit(f, &s));
    s.dest_port = 6660;
    ck_assert_ptr_nonnull(admit(f, &s));
    s.dest_port = 6669;
    ck_assert_ptr_nonnull(admit(f, &s));
    s.dest_port = 6670;
    ck_assert_ptr_null(admit(f, &s));
    s.dest_port = 80;
    ck_assert_ptr_null(admit(f, &s));
    ferry_forward_free(f);
}
END_TEST

START_TEST(method_rule) {
    ferry_forward *f = new_fwd();
    add_rule(f, "deny method POST,PUT");
    ferry_session_info s = sess("127.0.0.1", FERRY_PROXY_HTTP, "example.com", 80, "POST", "");
    ck_assert_ptr_nonnull(admit(f, &s));
    s.method = "put"; /* compared without case, so that "put" cannot slip by */
    ck_assert_ptr_nonnull(admit(f, &s));
    s.method = "GET";
    ck_assert_ptr_null(admit(f, &s));
    s = sess("127.0.0.1", FERRY_PROXY_SOCKS5, "example.com", 80, "", "");
    ck_assert_ptr_null(admit(f, &s));
    ferry_forward_free(f);
}
END_TEST

START_TEST(proto_rule) {
    ferry_forward *f = new_fwd();
    add_rule(f, "deny proto socks");
    add_rule(f, "deny proto connect host .blocked.test");
    const int socks[] = {FERRY_PROXY_SOCKS4, FERRY_PROXY_SOCKS5, FERRY_PROXY_SOCKS5_UDP};
    for (int i = 0; i < 3; i++) {
        ferry_session_info s = sess("127.0.0.1", socks[i], "example.com", 443, "", "");
        ck_assert_pstr_eq(admit(f, &s), "rule 1 (deny proto socks)");
    }
    ferry_session_info s = sess("127.0.0.1", FERRY_PROXY_CONNECT, "a.blocked.test", 443, "CONNECT", "");
    ck_assert_pstr_eq(admit(f, &s), "rule 2 (deny proto connect host .blocked.test)");
    s = sess("127.0.0.1", FERRY_PROXY_HTTP, "a.blocked.test", 80, "GET", "");
    ck_assert_ptr_null(admit(f, &s));
    s = sess("127.0.0.1", FERRY_PROXY_CONNECT, "example.com", 443, "CONNECT", "");
    ck_assert_ptr_null(admit(f, &s));
    ferry_forward_free(f);
}
END_TEST

START_TEST(first_match_wins_and_no_match_allows) {
    ferry_forward *f = new_fwd();
    add_rule(f, "allow host good.example.com");
    add_rule(f, "deny   host\t.example.com   "); /* blanks collapse in the reason */
    ferry_session_info s = http("good.example.com", 80);
    ck_assert_ptr_null(admit(f, &s));
    s.dest_host = "bad.example.com";
    const char *r = admit(f, &s);
    ck_assert_pstr_eq(r, "rule 2 (deny host .example.com)");
    s.dest_host = "other.test";
    ck_assert_pstr_eq(admit(f, &s), NULL);
    s.dest_host = "bad.example.com";
    ck_assert_ptr_eq(admit(f, &s), r); /* the policy's own string, the same every time */
    ferry_forward_free(f);
}
END_TEST

START_TEST(a_dest_rule_leaves_names_undecided_until_dns) {
    ferry_forward *f = new_fwd();
    add_rule(f, "deny dest 203.0.113.0/24");
    add_rule(f, "deny host .blocked.test");
    ferry_session_info s = http("www.blocked.test", 80);
    ck_assert_ptr_null(admit(f, &s)); /* stops at rule 1: undecided */
    ck_assert_pstr_eq(admit_address(f, &s, "198.51.100.1"), "rule 2 (deny host .blocked.test)");
    ck_assert_pstr_eq(admit_address(f, &s, "203.0.113.1"), "rule 1 (deny dest 203.0.113.0/24)");
    s.dest_host = "203.0.113.50";
    ck_assert_pstr_eq(admit(f, &s), "rule 1 (deny dest 203.0.113.0/24)");
    s.dest_host = "www.fine.test";
    ck_assert_ptr_null(admit(f, &s));
    ck_assert_ptr_null(admit_address(f, &s, "198.51.100.1"));

    /* Through a parent no admit_address follows: names are decided at once, and dest
     * conditions never match a name. */
    ck_assert_int_eq(ferry_forward_add_parent(f, "up", "http://192.0.2.1:3128", NULL, 0), FERRY_OK);
    ck_assert_int_eq(ferry_forward_add_route(f, ".blocked.test", "up", NULL, 0), FERRY_OK);
    s.dest_host = "www.blocked.test";
    ck_assert_pstr_eq(admit(f, &s), "rule 2 (deny host .blocked.test)");
    ferry_forward_free(f);
}
END_TEST

/* ---- time windows ---- */

enum { MONDAY_2024_01_01 = 1704067200 }; /* 00:00 UTC */

static int64_t fake_clock(void *ud) { return *(const int64_t *)ud; }

static int64_t at(int day, int hour, int minute) { /* day 0 = Monday 2024-01-01, UTC */
    return (int64_t)MONDAY_2024_01_01 + day * 86400 + hour * 3600 + minute * 60;
}

static int denied_at(ferry_forward *f, int64_t *now, int64_t when) {
    *now = when;
    ferry_session_info s = http("example.com", 80);
    return admit(f, &s) != NULL;
}

START_TEST(time_windows_with_an_injected_clock) {
    ferry_forward *f = new_fwd();
    int64_t now = 0;
    ferry_forward_set_clock(f, fake_clock, &now);
    add_rule(f, "deny time mon-fri 09:00-17:00 utc");
    ck_assert(denied_at(f, &now, at(0, 9, 0)));
    ck_assert(denied_at(f, &now, at(0, 16, 59)));
    ck_assert(!denied_at(f, &now, at(0, 17, 0)));
    ck_assert(!denied_at(f, &now, at(0, 8, 59)));
    ck_assert(denied_at(f, &now, at(4, 12, 0)));  /* Friday */
    ck_assert(!denied_at(f, &now, at(5, 12, 0))); /* Saturday */
    ferry_forward_free(f);

    f = new_fwd();
    ferry_forward_set_clock(f, fake_clock, &now);
    add_rule(f, "deny time fri-mon 10:00-11:00 UTC"); /* the day range wraps */
    ck_assert(denied_at(f, &now, at(6, 10, 30)));  /* Sunday */
    ck_assert(denied_at(f, &now, at(0, 10, 30)));  /* Monday */
    ck_assert(!denied_at(f, &now, at(2, 10, 30))); /* Wednesday */
    ferry_forward_free(f);

    f = new_fwd();
    ferry_forward_set_clock(f, fake_clock, &now);
    add_rule(f, "deny time * 22:00-06:00 utc"); /* the window wraps midnight */
    ck_assert(denied_at(f, &now, at(0, 23, 0)));
    ck_assert(denied_at(f, &now, at(1, 5, 59)));
    ck_assert(!denied_at(f, &now, at(1, 6, 0)));
    ck_assert(!denied_at(f, &now, at(1, 21, 59)));
    ferry_forward_free(f);

    f = new_fwd(); /* the day is the current day, also after midnight inside a window */
    ferry_forward_set_clock(f, fake_clock, &now);
    add_rule(f, "deny time mon 22:00-06:00 utc");
    ck_assert(denied_at(f, &now, at(0, 23, 0)));
    ck_assert(!denied_at(f, &now, at(1, 5, 0)));
    ck_assert(denied_at(f, &now, at(0, 5, 0)));
    ferry_forward_free(f);

    f = new_fwd();
    ferry_forward_set_clock(f, fake_clock, &now);
    add_rule(f, "deny time sat,sun 00:00-24:00 utc");
    ck_assert(denied_at(f, &now, at(5, 0, 0)));
    ck_assert(denied_at(f, &now, at(6, 23, 59)));
    ck_assert(!denied_at(f, &now, at(0, 0, 0)));
    ferry_forward_free(f);
}
END_TEST

START_TEST(time_windows_local_versus_utc) {
    setenv("TZ", "XST-3", 1); /* a fixed UTC+3, no daylight saving */
    tzset();
    int64_t now = 0;
    ferry_forward *local = new_fwd(), *utc = new_fwd();
    ferry_forward_set_clock(local, fake_clock, &now);
    ferry_forward_set_clock(utc, fake_clock, &now);
    add_rule(local, "deny time mon 09:00-10:00");
    add_rule(utc, "deny time mon 09:00-10:00 utc");
    /* 06:30 UTC is 09:30 local */
    ck_assert(denied_at(local, &now, at(0, 6, 30)));
    ck_assert(!denied_at(utc, &now, at(0, 6, 30)));
    ck_assert(!denied_at(local, &now, at(0, 9, 30)));
    ck_assert(denied_at(utc, &now, at(0, 9, 30)));
    /* Sunday 22:30 UTC is already Monday 01:30 local */
    ferry_forward_free(local);
    local = new_fwd();
    ferry_forward_set_clock(local, fake_clock, &now);
    add_rule(local, "deny time mon 01:00-02:00");
    ck_assert(denied_at(local, &now, at(6, 22, 30)));
    ferry_forward_free(local);
    ferry_forward_free(utc);
    unsetenv("TZ");
    tzset();
}
END_TEST

START_TEST(the_system_clock_is_the_default) {
    ferry_forward *f = new_fwd();
    add_rule(f, "deny time * 00:00-24:00"); /* always */
    ferry_session_info s = http("example.com", 80);
    ck_assert_ptr_nonnull(admit(f, &s));
    ferry_forward_free(f);
}
END_TEST

/* ---- secure defaults ---- */

START_TEST(connect_only_to_allowed_ports) {
    ferry_forward *f = new_fwd();
    ferry_session_info s = sess("127.0.0.1", FERRY_PROXY_CONNECT, "example.com", 22, "CONNECT", "");
    ck_assert_pstr_eq(admit(f, &s), "CONNECT port not allowed");
    s.dest_port = 443;
    ck_assert_ptr_null(admit(f, &s));
    ferry_session_info h = http("example.com", 22); /* plain HTTP is not limited */
    ck_assert_ptr_null(admit(f, &h));
    ck_assert_int_eq(ferry_forward_set_connect_ports(f, "443, 8000-9000"), FERRY_OK);
    s.dest_port = 8443;
    ck_assert_ptr_null(admit(f, &s));
    s.dest_port = 22;
    ck_assert_ptr_nonnull(admit(f, &s));
    ck_assert_int_eq(ferry_forward_set_connect_ports(f, "0"), FERRY_ECONFIG);
    ck_assert_int_eq(ferry_forward_set_connect_ports(f, "9000-8000"), FERRY_ECONFIG);
    ck_assert_int_eq(ferry_forward_set_connect_ports(f, "443,"), FERRY_ECONFIG);
    ck_assert_int_eq(ferry_forward_set_connect_ports(f, "https"), FERRY_ECONFIG);
    s.dest_port = 8443; /* unchanged by the failures */
    ck_assert_ptr_null(admit(f, &s));
    ferry_forward_free(f);
}
END_TEST

START_TEST(refused_destinations_as_literals_and_resolved) {
    ferry_forward *f = new_fwd();
    static const struct {
        const char *host, *reason;
    } lits[] = {
        {"127.0.0.1", "refused destination range: loopback"},
        {"127.1.2.3", "refused destination range: loopback"},
        {"::1", "refused destination range: loopback"},
        {"[::1]", "refused destination range: loopback"},
        {"::ffff:127.0.0.1", "refused destination range: loopback"},
        {"169.254.169.254", "refused destination range: link-local (incl. cloud metadata)"},
        {"fe80::1", "refused destination range: link-local"},
        {"0.0.0.0", "refused destination range: unspecified"},
        {"::", "refused destination range: unspecified"},
        {"224.0.0.1", "refused destination range: multicast"},
        {"ff02::1", "refused destination range: multicast"},
        {"255.255.255.255", "refused destination range: broadcast"},
        {"240.0.0.1", "refused destination range: reserved"},
        {"::127.0.0.1", "refused destination range: IPv4-compatible (deprecated)"},
        {"fec0::1", "refused destination range: site-local (deprecated)"},
        {"64:ff9b::7f00:1", "refused destination range: NAT64 form of a refused IPv4 address"},
        {"64:ff9b::a9fe:a9fe", /* 169.254.169.254 */
         "refused destination range: NAT64 form of a refused IPv4 address"},
    };
    for (size_t i = 0; i < sizeof lits / sizeof *lits; i++) {
        ferry_session_info s = http(lits[i].host, 80);
        ck_assert_pstr_eq(admit(f, &s), lits[i].reason);
    }
    ferry_session_info s = http("localhost", 80);
    ck_assert_ptr_null(admit(f, &s)); /* a name: the address decides */
    ck_assert_pstr_eq(admit_address(f, &s, "127.0.0.1"), "refused destination range: loopback");
    ck_assert_ptr_nonnull(admit_address(f, &s, "::1"));
    ck_assert_ptr_nonnull(admit_address(f, &s, "::ffff:127.0.0.1"));
    ck_assert_ptr_nonnull(admit_address(f, &s, "169.254.169.254"));
    ck_assert_ptr_null(admit_address(f, &s, "93.184.216.34"));
    ck_assert_ptr_null(admit_address(f, &s, "10.0.0.1")); /* private ranges are reachable */
    ck_assert_ptr_null(admit_address(f, &s, "2001:db8::1"));
    ck_assert_ptr_null(admit_address(f, &s, "64:ff9b::5db8:d822")); /* 93.184.216.34 */
    ck_assert_ptr_nonnull(admit_address(f, &s, "64:ff9b::7f00:1"));
    s = sess("127.0.0.1", FERRY_PROXY_SOCKS5, "127.0.0.1", 443, "", "");
    ck_assert_ptr_nonnull(admit(f, &s));
    ferry_forward_free(f);
}
END_TEST

START_TEST(allow_dest_lifts_a_refused_range) {
    ferry_forward *f = new_fwd();
    ck_assert_int_eq(ferry_forward_allow_dest(f, "127.0.0.0/8"), FERRY_OK);
    ck_assert_int_eq(ferry_forward_allow_dest(f, "127.0.0.0/99"), FERRY_ECONFIG);
    ferry_session_info s = http("127.0.0.1", 8080);
    ck_assert_ptr_null(admit(f, &s));
    s.dest_host = "::ffff:127.0.0.1";
    ck_assert_ptr_null(admit(f, &s));
    s.dest_host = "::1";
    ck_assert_ptr_nonnull(admit(f, &s));
    s.dest_host = "localhost";
    ck_assert_ptr_null(admit_address(f, &s, "127.0.0.1"));
    ck_assert_ptr_nonnull(admit_address(f, &s, "169.254.169.254"));
    ferry_forward_free(f);
}
END_TEST

START_TEST(an_allow_rule_with_dest_lifts_a_refused_range) {
    ferry_forward *f = new_fwd();
    add_rule(f, "allow dest 169.254.169.254,::1");
    add_rule(f, "allow host localhost"); /* no dest: does not lift anything */
    ferry_session_info s = http("169.254.169.254", 80);
    ck_assert_ptr_null(admit(f, &s));
    s.dest_host = "169.254.1.1";
    ck_assert_ptr_nonnull(admit(f, &s));
    s.dest_host = "::1";
    ck_assert_ptr_null(admit(f, &s));
    s.dest_host = "metadata.internal";
    ck_assert_ptr_null(admit(f, &s));
    ck_assert_ptr_null(admit_address(f, &s, "169.254.169.254"));
    ck_assert_ptr_nonnull(admit_address(f, &s, "169.254.0.1"));
    s.dest_host = "localhost";
    ck_assert_ptr_nonnull(admit_address(f, &s, "127.0.0.1"));
    ck_assert_ptr_null(admit_address(f, &s, "::1"));
    ferry_forward_free(f);
}
END_TEST

/* ---- credentials ---- */

START_TEST(without_users_anyone_authenticates) {
    ferry_forward *f = new_fwd();
    ferry_session_info s = http("example.com", 80);
    ck_assert_int_eq(ops()->authenticate(f, &s, NULL, NULL), FERRY_OK);
    ck_assert_int_eq(ops()->authenticate(f, &s, "who", "ever"), FERRY_OK);
    ferry_forward_free(f);
}
END_TEST

START_TEST(with_users_credentials_are_required_and_checked) {
    ferry_forward *f = new_fwd();
    ck_assert_int_eq(ferry_forward_add_user(f, "alice", "s3cret"), FERRY_OK);
    ck_assert_int_eq(ferry_forward_add_user(f, "bob", ""), FERRY_OK);
    ck_assert_int_eq(ferry_forward_add_user(f, "", "x"), FERRY_EINVAL);
    ck_assert_int_eq(ferry_forward_add_user(f, "-", "x"), FERRY_EINVAL);
    ck_assert_int_eq(ferry_forward_add_user(f, "x", NULL), FERRY_EINVAL);
    ferry_session_info s = http("example.com", 80);
    const ferry_direction_ops *o = ops();
    ck_assert_int_eq(o->authenticate(f, &s, NULL, NULL), FERRY_EAUTH);
    ck_assert_int_eq(o->authenticate(f, &s, "alice", "wrong"), FERRY_EAUTH);
    ck_assert_int_eq(o->authenticate(f, &s, "alice", "s3cre"), FERRY_EAUTH);
    ck_assert_int_eq(o->authenticate(f, &s, "alice", "s3cret!"), FERRY_EAUTH);
    ck_assert_int_eq(o->authenticate(f, &s, "alice", ""), FERRY_EAUTH);
    ck_assert_int_eq(o->authenticate(f, &s, "mallory", "s3cret"), FERRY_EAUTH);
    ck_assert_int_eq(o->authenticate(f, &s, "alice", "s3cret"), FERRY_OK);
    ck_assert_int_eq(o->authenticate(f, &s, "bob", ""), FERRY_OK);
    ck_assert_int_eq(o->authenticate(f, &s, "bob", "x"), FERRY_EAUTH);
    ck_assert_int_eq(ferry_forward_add_user(f, "alice", "new"), FERRY_OK); /* replaced */
    ck_assert_int_eq(o->authenticate(f, &s, "alice", "s3cret"), FERRY_EAUTH);
    ck_assert_int_eq(o->authenticate(f, &s, "alice", "new"), FERRY_OK);
    ferry_forward_free(f);
}
END_TEST

START_TEST(many_users) {
    ferry_forward *f = new_fwd();
    char user[32], pass[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(user, sizeof user, "user%d", i);
        snprintf(pass, sizeof pass, "pw-%d", i * 7);
        ck_assert_int_eq(ferry_forward_add_user(f, user, pass), FERRY_OK);
    }
    ferry_session_info s = http("example.com", 80);
    for (int i = 0; i < 5000; i++) {
        snprintf(user, sizeof user, "user%d", i);
        snprintf(pass, sizeof pass, "pw-%d", i * 7);
        ck_assert_int_eq(ops()->authenticate(f, &s, user, pass), FERRY_OK);
        snprintf(pass, sizeof pass, "pw-%d", i * 7 + 1);
        ck_assert_int_eq(ops()->authenticate(f, &s, user, pass), FERRY_EAUTH);
    }
    ferry_forward_free(f);
}
END_TEST

/* ---- parents ---- */

START_TEST(parent_urls_that_parse) {
    ferry_parent p;
    ck_assert_int_eq(ferry_parent_parse("http://proxy.example:3128", &p), FERRY_OK);
    ck_assert_int_eq(p.kind, FERRY_PARENT_HTTP);
    ck_assert_str_eq(p.host, "proxy.example");
    ck_assert_int_eq(p.port, 3128);
    ck_assert_str_eq(p.name, "proxy.example:3128");
    ck_assert_str_eq(p.user, "");
    ck_assert_str_eq(p.password, "");

    ck_assert_int_eq(ferry_parent_parse("HTTP://us%3Aer:p%40ss:w@10.0.0.1:8080/", &p), FERRY_OK);
    ck_assert_str_eq(p.user, "us:er");
    ck_assert_str_eq(p.password, "p@ss:w");
    ck_assert_str_eq(p.host, "10.0.0.1");
    ck_assert_str_eq(p.name, "10.0.0.1:8080"); /* never the credentials */

    ck_assert_int_eq(ferry_parent_parse("socks5://[2001:db8::1]:1080", &p), FERRY_OK);
    ck_assert_int_eq(p.kind, FERRY_PARENT_SOCKS5);
    ck_assert_str_eq(p.host, "2001:db8::1");
    ck_assert_int_eq(p.port, 1080);
    ck_assert_str_eq(p.name, "[2001:db8::1]:1080");

    ck_assert_int_eq(ferry_parent_parse("socks5h://u@h:1", &p), FERRY_OK);
    ck_assert_int_eq(p.kind, FERRY_PARENT_SOCKS5);
    ck_assert_str_eq(p.user, "u");
    ck_assert_str_eq(p.password, "");
    ck_assert_int_eq(ferry_parent_parse("http://h:65535", &p), FERRY_OK);
}
END_TEST

START_TEST(parent_urls_that_do_not) {
    static const char *const bad[] = {
        "https://h:443",   "ftp://h:21",       "h:80",           "http://h",
        "http://h:",       "http://h:0",       "http://h:65536", "http://h:123456",
        "http://:80",      "http://h:80/path", "http://h:80?x",  "http://h:80#f",
        "http://[::1:80",  "http://[zz]:80",   "http://[::1]",   "http://h:8x",
        "http://u:p@:80",  "http://%zz@h:1",   "http://u%00@h:1", "http://:p@h:1",
        "http://a b:80",   "http://h:80:90",   "socks5://",      "http://[1.2.3.4]:80",
    };
    ferry_parent p;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        ck_assert_msg(ferry_parent_parse(bad[i], &p) == FERRY_ECONFIG, "accepted %s", bad[i]);
    ck_assert_int_eq(ferry_parent_parse(NULL, &p), FERRY_EINVAL);
}
END_TEST

START_TEST(parents_and_routes_are_declared_by_name) {
    ferry_forward *f = new_fwd();
    char err[160] = "";
    ck_assert_int_eq(ferry_forward_add_parent(f, "p1", "http://u:secretpw@p1.test:3128", err, sizeof err),
                     FERRY_OK);
    ck_assert_int_eq(ferry_forward_add_parent(f, "p1", "http://p1.test:3128", err, sizeof err),
                     FERRY_ECONFIG);
    ck_assert_str_eq(err, "parent 'p1' already declared");
    ck_assert_int_eq(ferry_forward_add_parent(f, "direct", "http://d:1", err, sizeof err), FERRY_ECONFIG);
    ck_assert_int_eq(ferry_forward_add_parent(f, "a,b", "http://d:1", err, sizeof err), FERRY_ECONFIG);
    ck_assert_int_eq(ferry_forward_add_parent(f, "p2", "https://u:secretpw@p2:1", err, sizeof err),
                     FERRY_ECONFIG);
    ck_assert_ptr_null(strstr(err, "secretpw")); /* messages never echo credentials */
    ck_assert_ptr_nonnull(strstr(err, "p2"));
    const ferry_parent *p1 = ferry_forward_parent(f, "p1");
    ck_assert_ptr_nonnull(p1);
    ck_assert_str_eq(p1->user, "u");
    ck_assert_ptr_null(ferry_forward_parent(f, "p2"));
    ck_assert_int_eq(ferry_forward_add_route(f, ".corp", "p1,p9", err, sizeof err), FERRY_ECONFIG);
    ck_assert_str_eq(err, "unknown parent 'p9'");
    ck_assert_int_eq(ferry_forward_add_route(f, ".corp", "p1,,direct", err, sizeof err), FERRY_ECONFIG);
    ck_assert_int_eq(ferry_forward_add_route(f, "", "p1", err, sizeof err), FERRY_ECONFIG);
    ck_assert_int_eq(ferry_forward_add_route(f, "bad/pattern", "p1", err, sizeof err), FERRY_ECONFIG);
    ck_assert_str_eq(err, "bad host pattern 'bad/pattern'");
    ck_assert_int_eq(ferry_forward_add_route(f, ".corp", " p1 , DIRECT ", err, sizeof err), FERRY_OK);
    ferry_forward_free(f);
}
END_TEST

typedef struct picked {
    ferry_err err;
    const ferry_parent *parent;
} picked;

static picked pick(ferry_forward *f, const char *host, unsigned attempt, uintptr_t *state) {
    ferry_session_info s = http(host, 8080);
    ferry_target t;
    memset(&t, 0, sizeof t);
    picked r = {ops()->pick(f, &s, attempt, state, &t), t.parent};
    if (r.err == FERRY_OK) {
        ck_assert_str_eq(t.host, host[0] == '[' ? "::1" : host);
        ck_assert_int_eq(t.port, 8080);
        ck_assert_ptr_null(t.backend);
    }
    return r;
}

static ferry_forward *routed(const ferry_parent **p1, const ferry_parent **p2) {
    ferry_forward *f = new_fwd();
    ck_assert_int_eq(ferry_forward_add_parent(f, "p1", "http://p1.test:3128", NULL, 0), FERRY_OK);
    ck_assert_int_eq(ferry_forward_add_parent(f, "p2", "socks5://p2.test:1080", NULL, 0), FERRY_OK);
    ck_assert_int_eq(ferry_forward_add_route(f, ".corp.example", "p1,p2,direct", NULL, 0), FERRY_OK);
    ck_assert_int_eq(ferry_forward_add_route(f, "*.both.test", "p1,p2", NULL, 0), FERRY_OK);
    ck_assert_int_eq(ferry_forward_add_route(f, "*", "p2", NULL, 0), FERRY_OK);
    *p1 = ferry_forward_parent(f, "p1");
    *p2 = ferry_forward_parent(f, "p2");
    return f;
}

START_TEST(routes_choose_parents_in_order) {
    const ferry_parent *p1, *p2;
    ferry_forward *f = routed(&p1, &p2);
    uintptr_t st = 0;
    picked r = pick(f, "a.corp.example", 0, &st);
    ck_assert_int_eq(r.err, FERRY_OK);
    ck_assert_ptr_eq(r.parent, p1);
    r = pick(f, "a.corp.example", 1, &st);
    ck_assert_ptr_eq(r.parent, p2);
    r = pick(f, "a.corp.example", 2, &st);
    ck_assert_int_eq(r.err, FERRY_OK);
    ck_assert_ptr_null(r.parent); /* direct */
    ck_assert_int_eq(pick(f, "a.corp.example", 3, &st).err, FERRY_ENOUPSTREAM);
    st = 0;
    r = pick(f, "elsewhere.test", 0, &st);
    ck_assert_ptr_eq(r.parent, p2);
    ck_assert_int_eq(pick(f, "elsewhere.test", 1, &st).err, FERRY_ENOUPSTREAM);
    ferry_forward_free(f);

    f = new_fwd(); /* no routes: direct, one attempt */
    st = 0;
    r = pick(f, "example.com", 0, &st);
    ck_assert_int_eq(r.err, FERRY_OK);
    ck_assert_ptr_null(r.parent);
    ck_assert_int_eq(pick(f, "example.com", 1, &st).err, FERRY_ENOUPSTREAM);
    st = 0;
    ck_assert_int_eq(pick(f, "[::1]", 0, &st).err, FERRY_OK); /* brackets are not part of it */
    ck_assert_int_eq(ops()->client_names_destination, 1);
    ck_assert_ptr_null(ops()->answer_error);
    ck_assert_ptr_nonnull(ops()->edit_request);
    ferry_forward_free(f);
}
END_TEST

START_TEST(failover_skips_a_parent_marked_down) {
    const ferry_parent *p1, *p2;
    ferry_forward *f = routed(&p1, &p2);
    ferry_target t = {.parent = p1};
    ops()->connect_result(f, &t, FERRY_ECONNREFUSED);
    uintptr_t st = 0;
    ck_assert_ptr_eq(pick(f, "x.corp.example", 0, &st).parent, p2);
    picked r = pick(f, "x.corp.example", 1, &st);
    ck_assert_int_eq(r.err, FERRY_OK);
    ck_assert_ptr_null(r.parent);
    ck_assert_int_eq(pick(f, "x.corp.example", 2, &st).err, FERRY_ENOUPSTREAM);
    ops()->connect_result(f, &t, FERRY_OK); /* a success brings it back */
    st = 0;
    ck_assert_ptr_eq(pick(f, "x.corp.example", 0, &st).parent, p1);
    ferry_parent stranger;
    ck_assert_int_eq(ferry_parent_parse("http://s:1", &stranger), FERRY_OK);
    t.parent = &stranger; /* e.g. set by an on_route hook: not ours to mark */
    ops()->connect_result(f, &t, FERRY_ETIMEDOUT);
    t.parent = NULL;
    ops()->connect_result(f, &t, FERRY_ETIMEDOUT);
    st = 0;
    ck_assert_ptr_eq(pick(f, "x.corp.example", 0, &st).parent, p1);
    ferry_forward_free(f);
}
END_TEST

START_TEST(when_every_parent_is_down_each_is_tried_anyway) {
    const ferry_parent *p1, *p2;
    ferry_forward *f = routed(&p1, &p2);
    ferry_target t = {.parent = p1};
    ops()->connect_result(f, &t, FERRY_ETIMEDOUT);
    t.parent = p2;
    ops()->connect_result(f, &t, FERRY_ETIMEDOUT);
    uintptr_t st = 0;
    ck_assert_ptr_eq(pick(f, "a.both.test", 0, &st).parent, p1);
    ck_assert_ptr_eq(pick(f, "a.both.test", 1, &st).parent, p2);
    ck_assert_int_eq(pick(f, "a.both.test", 2, &st).err, FERRY_ENOUPSTREAM);
    /* with "direct" in the list not everything is down: down parents are skipped */
    st = 0;
    ck_assert_ptr_null(pick(f, "a.corp.example", 0, &st).parent);
    ck_assert_int_eq(pick(f, "a.corp.example", 1, &st).err, FERRY_ENOUPSTREAM);
    ferry_forward_free(f);
}
END_TEST

/* ---- is_open ---- */

START_TEST(is_open_when_the_internet_may_use_it_without_credentials) {
    ferry_forward *f = new_fwd();
    ck_assert_int_eq(ferry_forward_is_open(f), 0);
    ck_assert_int_eq(ferry_forward_allow_client(f, "10.0.0.0/8"), FERRY_OK);
    ck_assert_int_eq(ferry_forward_allow_client(f, "192.168.1.0/24"), FERRY_OK);
    ck_assert_int_eq(ferry_forward_allow_client(f, "fd12::/16"), FERRY_OK);
    ck_assert_int_eq(ferry_forward_is_open(f), 0);
    ck_assert_int_eq(ferry_forward_allow_client(f, "8.8.8.0/24"), FERRY_OK);
    ck_assert_int_eq(ferry_forward_is_open(f), 1);
    ck_assert_int_eq(ferry_forward_add_user(f, "u", "p"), FERRY_OK);
    ck_assert_int_eq(ferry_forward_is_open(f), 0);
    ferry_forward_free(f);

    const char *open[] = {"0.0.0.0/0", "::/0", "10.0.0.0/7"};
    for (int i = 0; i < 3; i++) {
        f = new_fwd();
        ck_assert_int_eq(ferry_forward_allow_client(f, open[i]), FERRY_OK);
        ck_assert_msg(ferry_forward_is_open(f), "%s", open[i]);
        ferry_forward_free(f);
    }
    ck_assert_int_eq(ferry_forward_is_open(NULL), 0);
}
END_TEST

/* ---- rule syntax ---- */

START_TEST(rule_syntax_errors_say_what_is_wrong) {
    static const struct {
        const char *rule, *message;
    } cases[] = {
        {"allow hots example.com", "unknown condition 'hots'"},
        {"deny client 10.0.0.0/33", "bad CIDR '10.0.0.0/33'"},
        {"deny dest 10.0.0.0/8,banana", "bad CIDR 'banana'"},
        {"permit all", "rule must start with 'allow' or 'deny', not 'permit'"},
        {"", "empty rule"},
        {"   ", "empty rule"},
        {"deny host", "missing value for 'host'"},
        {"deny port 0", "bad port '0'"},
        {"deny port 90-80", "bad port '90-80'"},
        {"deny port 70000", "bad port '70000'"},
        {"deny port 80,", "bad port '80,'"},
        {"deny proto ftp", "bad proto 'ftp' (expected http, connect or socks)"},
        {"deny time xyz 09:00-10:00", "bad days 'xyz' (expected e.g. mon-fri, sat,sun or *)"},
        {"deny time mon 25:00-26:00", "bad time window '25:00-26:00' (expected HH:MM-HH:MM)"},
        {"deny time mon 09:00-09:00", "bad time window '09:00-09:00' (expected HH:MM-HH:MM)"},
        {"deny time mon 9-17", "bad time window '9-17' (expected HH:MM-HH:MM)"},
        {"deny time mon", "missing time window after 'mon'"},
        {"deny host a.test host b.test", "duplicate condition 'host'"},
        {"deny all host x.test", "'all' cannot be combined with conditions"},
        {"deny host x.test all", "'all' cannot be combined with conditions"},
        {"deny host bad/char", "bad host pattern 'bad/char'"},
        {"deny host exa mple.com", "unknown condition 'mple.com'"},
        {"deny user a,,b", "empty name in 'a,,b'"},
    };
    ferry_forward *f = new_fwd();
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char err[160] = "";
        ck_assert_int_eq(ferry_forward_add_rule(f, cases[i].rule, err, sizeof err), FERRY_ECONFIG);
        ck_assert_msg(strcmp(err, cases[i].message) == 0, "'%s': got \"%s\"", cases[i].rule, err);
    }
    ck_assert_int_eq(ferry_forward_add_rule(f, "deny hots x", NULL, 0), FERRY_ECONFIG);
    ck_assert_int_eq(ferry_forward_add_rule(f, NULL, NULL, 0), FERRY_EINVAL);
    char tiny[8];
    ck_assert_int_eq(ferry_forward_add_rule(f, "deny hots x", tiny, sizeof tiny), FERRY_ECONFIG);
    ck_assert_str_eq(tiny, "unknown");
    ferry_session_info s = http("example.com", 80); /* nothing was added */
    ck_assert_ptr_null(admit(f, &s));
    add_rule(f, "deny all");
    ck_assert_pstr_eq(admit(f, &s), "rule 1 (deny all)");
    ferry_forward_free(f);
}
END_TEST

START_TEST(rule_spelling_is_forgiving_where_it_is_safe) {
    ferry_forward *f = new_fwd();
    add_rule(f, "DENY Host Example.COM, .Other.Test PORT 80 , 443 Proto HTTP");
    add_rule(f, "allow");
    ferry_session_info s = http("example.com", 443);
    ck_assert_pstr_eq(admit(f, &s), "rule 1 (DENY Host Example.COM, .Other.Test PORT 80 , 443 Proto HTTP)");
    s.dest_host = "www.other.test";
    s.dest_port = 80;
    ck_assert_ptr_nonnull(admit(f, &s));
    s.dest_port = 8080;
    ck_assert_ptr_null(admit(f, &s));
    ferry_forward_free(f);
}
END_TEST

/* ---- daemon settings ---- */

START_TEST(daemon_settings_are_kept_for_the_getters) {
    ferry_forward *f = new_fwd();
    ck_assert_uint_eq(ferry_forward_listen_count(f), 0);
    ck_assert_ptr_null(ferry_forward_listen_at(f, 0));
    ck_assert_uint_eq(ferry_forward_workers(f), 0);
    ck_assert_ptr_null(ferry_forward_access_log(f));
    ck_assert_int_eq(ferry__forward_add_listen(f, "127.0.0.1:3128"), FERRY_OK);
    ck_assert_int_eq(ferry__forward_add_listen(f, "[::1]:1080"), FERRY_OK);
    ck_assert_int_eq(ferry__forward_add_listen(f, ""), FERRY_EINVAL);
    ck_assert_int_eq(ferry__forward_set_workers(f, 4), FERRY_OK);
    ck_assert_int_eq(ferry__forward_set_access_log(f, "/tmp/a.log"), FERRY_OK);
    ck_assert_int_eq(ferry__forward_set_access_log(f, "/tmp/b.log"), FERRY_OK);
    ck_assert_uint_eq(ferry_forward_listen_count(f), 2);
    ck_assert_str_eq(ferry_forward_listen_at(f, 0), "127.0.0.1:3128");
    ck_assert_str_eq(ferry_forward_listen_at(f, 1), "[::1]:1080");
    ck_assert_ptr_null(ferry_forward_listen_at(f, 2));
    ck_assert_uint_eq(ferry_forward_workers(f), 4);
    ck_assert_str_eq(ferry_forward_access_log(f), "/tmp/b.log");
    ferry_forward_free(f);
    ferry_forward_free(NULL);
    ck_assert_uint_eq(ferry_forward_listen_count(NULL), 0);
}
END_TEST

/* ---- the allocator ---- */

typedef struct counting_alloc {
    atomic_long live;
    atomic_long fail_after; /* allocations left before failing; -1: never fail */
} counting_alloc;

static int should_fail(counting_alloc *c) {
    if (atomic_load(&c->fail_after) < 0) return 0;
    return atomic_fetch_sub(&c->fail_after, 1) <= 0;
}
static void *ca_malloc(void *ud, size_t n) {
    counting_alloc *c = ud;
    if (should_fail(c)) return NULL;
    void *p = malloc(n);
    if (p) atomic_fetch_add(&c->live, 1);
    return p;
}
static void *ca_realloc(void *ud, void *old, size_t n) {
    counting_alloc *c = ud;
    if (should_fail(c)) return NULL;
    void *p = realloc(old, n);
    if (p && !old) atomic_fetch_add(&c->live, 1);
    return p;
}
static void ca_free(void *ud, void *p) {
    counting_alloc *c = ud;
    if (p) atomic_fetch_sub(&c->live, 1);
    free(p);
}

static ferry_err small_setup(const ferry_allocator *a, int check) {
    ferry_forward *f = NULL;
    ferry_err err = ferry_forward_new(a, &f);
    if (err) return err;
    char user[16];
    err = ferry_forward_add_rule(f, "deny host .example.com,x.test port 80,443 time mon-fri 09:00-17:00",
                                 NULL, 0);
    if (!err) err = ferry_forward_add_rule(f, "allow user alice,- method GET dest 10.0.0.0/8 client ::1", NULL, 0);
    if (!err) err = ferry_forward_allow_client(f, "192.0.2.0/24");
    if (!err) err = ferry_forward_allow_client(f, "2001:db8::/32");
    if (!err) err = ferry_forward_allow_dest(f, "127.0.0.0/8");
    if (!err) err = ferry_forward_set_connect_ports(f, "443,8443");
    if (!err) err = ferry_forward_set_header_allow(f, "Accept,Host");
    for (int i = 0; !err && i < 20; i++) {
        snprintf(user, sizeof user, "u%d", i);
        err = ferry_forward_add_user(f, user, "pw");
    }
    if (!err) err = ferry_forward_add_parent(f, "p1", "http://u:p@p1.test:1", NULL, 0);
    if (!err) err = ferry_forward_add_parent(f, "p2", "socks5://p2.test:2", NULL, 0);
    if (!err) err = ferry_forward_add_route(f, ".corp", "p1,p2,direct", NULL, 0);
    if (!err) err = ferry__forward_add_listen(f, "127.0.0.1:3128");
    if (!err) err = ferry__forward_add_listen(f, "127.0.0.1:1080");
    if (!err) err = ferry__forward_set_access_log(f, "/dev/null");
    if (!err && check) { /* the policy works after all that */
        ferry_session_info s = http("a.other.test", 80);
        ck_assert_ptr_null(admit(f, &s));
        ck_assert_int_eq(ops()->authenticate(f, &s, "u7", "pw"), FERRY_OK);
    }
    ferry_forward_free(f);
    return err;
}

START_TEST(every_allocation_failure_is_an_error_without_leaks) {
    counting_alloc c = {.fail_after = -1};
    ferry_allocator a = {ca_malloc, ca_realloc, ca_free, &c};
    ck_assert_int_eq(small_setup(&a, 1), FERRY_OK);
    ck_assert_int_eq(atomic_load(&c.live), 0);
    int succeeded = 0;
    for (long k = 0; k < 1000 && !succeeded; k++) {
        atomic_store(&c.fail_after, k);
        ferry_err err = small_setup(&a, 0);
        succeeded = err == FERRY_OK;
        if (!succeeded) ck_assert_int_eq(err, FERRY_ENOMEM);
        ck_assert_int_eq(atomic_load(&c.live), 0);
    }
    ck_assert(succeeded);
}
END_TEST

/* ---- anonymity ---- */

static ferry_allocator libc_alloc;

/* A request txn as the HTTP engine leaves it after parsing; pairs of name, value. */
static void txn_make(ferry_txn *t, const char *const *fields) {
    ferry__allocator_init(&libc_alloc, NULL);
    ferry__txn_init(t, NULL, &libc_alloc);
    unsigned n = 0;
    while (fields[2 * n]) n++;
    t->req.headers = libc_alloc.malloc(NULL, (n + 1) * sizeof *t->req.headers);
    ck_assert_ptr_nonnull(t->req.headers);
    for (unsigned i = 0; i < n; i++)
        t->req.headers[i] = (ferry_http_header){{fields[2 * i], strlen(fields[2 * i])},
                                                {fields[2 * i + 1], strlen(fields[2 * i + 1])}};
    t->req.nheaders = n;
    t->req.method = (ferry_view){"GET", 3};
    t->req.target = (ferry_view){"http://h.test/", 14};
    ck_assert_int_eq(ferry__txn_take_request(t), FERRY_OK);
}

/* The value of `name` as a string ("" absent, NULL would be ambiguous), and how many. */
static const char *field(ferry_txn *t, const char *name, unsigned *count) {
    static char buf[512];
    ferry_view v;
    unsigned n = 0;
    buf[0] = '\0';
    for (unsigned i = 0; i < ferry_txn_header_count(t, FERRY_TXN_REQUEST); i++) {
        ferry_http_header h;
        ck_assert_int_eq(ferry_txn_header_at(t, FERRY_TXN_REQUEST, i, &h), FERRY_OK);
        if (h.name.len == strlen(name) && strncasecmp(h.name.ptr, name, h.name.len) == 0) n++;
    }
    if (ferry_txn_header_get(t, FERRY_TXN_REQUEST, name, &v) == FERRY_OK)
        snprintf(buf, sizeof buf, "%.*s", (int)v.len, v.ptr);
    if (count) *count = n;
    return buf;
}

static int has(ferry_txn *t, const char *name) {
    unsigned n;
    field(t, name, &n);
    return n > 0;
}

START_TEST(transparent_adds_via_and_x_forwarded_for) {
    ferry_forward *f = new_fwd();
    ck_assert_int_eq(ferry_forward_set_anonymity(f, FERRY_ANON_TRANSPARENT), FERRY_OK);
    ck_assert_int_eq(ferry_forward_set_anonymity(f, (ferry_anonymity)7), FERRY_EINVAL);
    ferry_txn t;
    const char *plain[] = {"Host", "h.test", "User-Agent", "ua", NULL};
    txn_make(&t, plain);
    ferry__forward_edit_headers(f, &t, "192.0.2.10");
    ck_assert_str_eq(field(&t, "Via", NULL), "1.1 ferry");
    ck_assert_str_eq(field(&t, "X-Forwarded-For", NULL), "192.0.2.10");
    ck_assert_str_eq(field(&t, "User-Agent", NULL), "ua");
    ferry__txn_free(&t);

    const char *chained[] = {"Host", "h.test", "Via", "1.0 first", "via", "1.1 second",
                             "X-Forwarded-For", "10.0.0.1, 10.0.0.2", "Forwarded", "for=10.0.0.1",
                             NULL};
    txn_make(&t, chained);
    ferry__forward_edit_headers(f, &t, "192.0.2.10");
    unsigned n;
    ck_assert_str_eq(field(&t, "Via", &n), "1.0 first, 1.1 second, 1.1 ferry");
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(field(&t, "X-Forwarded-For", &n), "10.0.0.1, 10.0.0.2, 192.0.2.10");
    ck_assert_uint_eq(n, 1);
    ck_assert(has(&t, "Forwarded"));
    ferry__txn_free(&t);
    ferry_forward_free(f);
}
END_TEST

START_TEST(anonymous_strips_what_names_the_client) {
    ferry_forward *f = new_fwd(); /* the default level */
    ferry_txn t;
    const char *fields[] = {"Host", "h.test", "Via", "1.1 a", "X-Forwarded-For", "10.0.0.1",
                            "forwarded", "for=10.0.0.1", "x-real-ip", "10.0.0.1", "Cookie", "c=1",
                            "User-Agent", "ua", "From", "me@example.com", NULL};
    txn_make(&t, fields);
    ferry__forward_edit_headers(f, &t, "192.0.2.10");
    ck_assert(!has(&t, "Via"));
    ck_assert(!has(&t, "X-Forwarded-For"));
    ck_assert(!has(&t, "Forwarded"));
    ck_assert(!has(&t, "X-Real-IP"));
    ck_assert(has(&t, "Cookie"));
    ck_assert(has(&t, "User-Agent"));
    ck_assert(has(&t, "From"));
    ck_assert(has(&t, "Host"));
    ck_assert_uint_eq(ferry_txn_header_count(&t, FERRY_TXN_REQUEST), 4);
    ferry__txn_free(&t);
    ferry_forward_free(f);
}
END_TEST

START_TEST(strict_keeps_only_the_allow_list) {
    ferry_forward *f = new_fwd();
    ck_assert_int_eq(ferry_forward_set_anonymity(f, FERRY_ANON_STRICT), FERRY_OK);
    static char long_name[301];
    memset(long_name, 'X', 300);
    ferry_txn t;
    const char *fields[] = {"Host", "h.test", "Accept", "*/*", "Cookie", "c=1", "User-Agent", "ua",
                            "From", "me@example.com", "Referer", "http://h.test/page", "Via", "1.1 a",
                            "X-Custom", "1", "Content-Length", "3", "accept-language", "en",
                            long_name, "1", "Authorization", "Basic eA==", NULL};
    txn_make(&t, fields);
    ferry__forward_edit_headers(f, &t, "192.0.2.10");
    /* The Referer names the request's own origin: it is on the default list and stays. */
    const char *kept[] = {"Host", "Accept", "Content-Length", "Accept-Language", "Authorization",
                          "Referer"};
    for (int i = 0; i < 6; i++) ck_assert_msg(has(&t, kept[i]), "%s removed", kept[i]);
    ck_assert_uint_eq(ferry_txn_header_count(&t, FERRY_TXN_REQUEST), 6);
    ferry__txn_free(&t);

    /* A Referer on the allow-list stays for its own origin only; From never does. */
    ck_assert_int_eq(ferry_forward_set_header_allow(f, " Accept , Referer,From,"), FERRY_OK);
    ck_assert_int_eq(ferry_forward_set_header_allow(f, "Acc ept"), FERRY_ECONFIG);
    ck_assert_int_eq(ferry_forward_set_header_allow(f, "Bad:Name"), FERRY_ECONFIG);
    static const struct {
        const char *referer;
        int kept;
    } refs[] = {
        {"http://h.test/page", 1},     {"http://H.TEST:80/x?y", 1}, {"http://user@h.test/", 1},
        {"http://h.test", 1},          {"https://h.test/", 0},      {"http://other.test/", 0},
        {"http://h.test:8080/", 0},    {"http://h.test.evil/", 0},  {"/relative", 0},
        {"ftp://h.test/", 0},
    };
    for (size_t i = 0; i < sizeof refs / sizeof *refs; i++) {
        const char *fl[] = {"Host", "h.test", "Referer", refs[i].referer, "From", "x@y", "Cookie", "c",
                            NULL};
        txn_make(&t, fl);
        ferry__forward_edit_headers(f, &t, "192.0.2.10");
        ck_assert_msg(has(&t, "Referer") == refs[i].kept, "%s", refs[i].referer);
        ck_assert(!has(&t, "From"));
        ck_assert(!has(&t, "Cookie"));
        ck_assert(has(&t, "Host"));
        ferry__txn_free(&t);
    }
    const char *no_host[] = {"Referer", "http://h.test/", NULL};
    txn_make(&t, no_host);
    ferry__forward_edit_headers(f, &t, "192.0.2.10");
    ck_assert(!has(&t, "Referer"));
    ferry__txn_free(&t);
    const char *ported[] = {"Host", "h.test:8080", "Referer", "http://h.test:8080/a", NULL};
    txn_make(&t, ported);
    ferry__forward_edit_headers(f, &t, "192.0.2.10");
    ck_assert(has(&t, "Referer"));
    ferry__txn_free(&t);

    ck_assert_int_eq(ferry_forward_set_header_allow(f, ""), FERRY_OK); /* only the essentials */
    txn_make(&t, fields);
    ferry__forward_edit_headers(f, &t, "192.0.2.10");
    ck_assert_uint_eq(ferry_txn_header_count(&t, FERRY_TXN_REQUEST), 2); /* Host, Content-Length */
    ferry__txn_free(&t);
    ferry_forward_free(f);
}
END_TEST

int main(void) {
    Suite *s = suite_create("forward");
    TCase *tc = tcase_create("policy");
    tcase_add_test(tc, clients_default_to_loopback_and_private_ranges);
    tcase_add_test(tc, allow_client_replaces_the_default_list);
    tcase_add_test(tc, client_rule);
    tcase_add_test(tc, user_rule);
    tcase_add_test(tc, host_rules_exact_suffix_glob);
    tcase_add_test(tc, dest_rule_on_the_resolved_address);
    tcase_add_test(tc, port_rule_with_ranges);
    tcase_add_test(tc, method_rule);
    tcase_add_test(tc, proto_rule);
    tcase_add_test(tc, first_match_wins_and_no_match_allows);
    tcase_add_test(tc, a_dest_rule_leaves_names_undecided_until_dns);
    tcase_add_test(tc, time_windows_with_an_injected_clock);
    tcase_add_test(tc, time_windows_local_versus_utc);
    tcase_add_test(tc, the_system_clock_is_the_default);
    tcase_add_test(tc, connect_only_to_allowed_ports);
    tcase_add_test(tc, refused_destinations_as_literals_and_resolved);
    tcase_add_test(tc, allow_dest_lifts_a_refused_range);
    tcase_add_test(tc, an_allow_rule_with_dest_lifts_a_refused_range);
    tcase_add_test(tc, without_users_anyone_authenticates);
    tcase_add_test(tc, with_users_credentials_are_required_and_checked);
    tcase_add_test(tc, many_users);
    tcase_add_test(tc, parent_urls_that_parse);
    tcase_add_test(tc, parent_urls_that_do_not);
    tcase_add_test(tc, parents_and_routes_are_declared_by_name);
    tcase_add_test(tc, routes_choose_parents_in_order);
    tcase_add_test(tc, failover_skips_a_parent_marked_down);
    tcase_add_test(tc, when_every_parent_is_down_each_is_tried_anyway);
    tcase_add_test(tc, is_open_when_the_internet_may_use_it_without_credentials);
    tcase_add_test(tc, rule_syntax_errors_say_what_is_wrong);
    tcase_add_test(tc, rule_spelling_is_forgiving_where_it_is_safe);
    tcase_add_test(tc, daemon_settings_are_kept_for_the_getters);
    tcase_add_test(tc, every_allocation_failure_is_an_error_without_leaks);
    tcase_add_test(tc, transparent_adds_via_and_x_forwarded_for);
    tcase_add_test(tc, anonymous_strips_what_names_the_client);
    tcase_add_test(tc, strict_keeps_only_the_allow_list);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
