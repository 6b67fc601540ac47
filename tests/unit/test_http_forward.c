/* Unit tests for lib/http_forward.c: proxy request targets and Basic credentials. */
#include <string.h>

#include "http_forward.h"
#include "testutil.h"

static ferry_view V(const char *s) { return (ferry_view){s, strlen(s)}; }

static int view_is(ferry_view v, const char *s) {
    return v.len == strlen(s) && memcmp(v.ptr, s, v.len) == 0;
}

START_TEST(absolute_form_targets) {
    ferry__forward_target t;
    ck_assert_int_eq(ferry__forward_target_split(V("http://example.com/a/b?c=d"), 0, &t), 0);
    ck_assert_str_eq(t.host, "example.com");
    ck_assert_uint_eq(t.port, 80);
    ck_assert(view_is(t.authority, "example.com"));
    ck_assert(view_is(t.path, "/a/b?c=d"));

    ck_assert_int_eq(ferry__forward_target_split(V("HTTP://Example.com:8080"), 0, &t), 0);
    ck_assert_str_eq(t.host, "Example.com");
    ck_assert_uint_eq(t.port, 8080);
    ck_assert_uint_eq(t.path.len, 0);

    ck_assert_int_eq(ferry__forward_target_split(V("http://[::1]:81?q"), 0, &t), 0);
    ck_assert_str_eq(t.host, "::1");
    ck_assert_uint_eq(t.port, 81);
    ck_assert(view_is(t.authority, "[::1]:81"));
    ck_assert(view_is(t.path, "?q"));

    ck_assert_int_eq(ferry__forward_target_split(V("http://h:/"), 0, &t), 0); /* empty port: 80 */
    ck_assert_uint_eq(t.port, 80);
}
END_TEST

START_TEST(bad_targets) {
    ferry__forward_target t;
    ck_assert_int_eq(ferry__forward_target_split(V("https://example.com/"), 0, &t), 501);
    ck_assert_int_eq(ferry__forward_target_split(V("ftp://example.com/"), 0, &t), 501);
    ck_assert_int_eq(ferry__forward_target_split(V("http://h:0/"), 0, &t), 400);
    ck_assert_int_eq(ferry__forward_target_split(V("http://h:65536/"), 0, &t), 400);
    ck_assert_int_eq(ferry__forward_target_split(V("http:///"), 0, &t), 400);
    char longhost[300] = "http://";
    memset(longhost + 7, 'a', 260);
    ck_assert_int_eq(ferry__forward_target_split(V(longhost), 0, &t), 400);
}
END_TEST

START_TEST(connect_targets) {
    ferry__forward_target t;
    ck_assert_int_eq(ferry__forward_target_split(V("example.com:443"), 1, &t), 0);
    ck_assert_str_eq(t.host, "example.com");
    ck_assert_uint_eq(t.port, 443);
    ck_assert_int_eq(ferry__forward_target_split(V("[2001:db8::1]:8443"), 1, &t), 0);
    ck_assert_str_eq(t.host, "2001:db8::1");
    ck_assert_uint_eq(t.port, 8443);
    /* CONNECT needs a port. */
    ck_assert_int_eq(ferry__forward_target_split(V("example.com"), 1, &t), 400);
    ck_assert_int_eq(ferry__forward_target_split(V("example.com:"), 1, &t), 400);
    ck_assert_int_eq(ferry__forward_target_split(V("[::1]"), 1, &t), 400);
}
END_TEST

START_TEST(basic_round_trip) {
    char enc[256], user[FERRY__BASIC_MAX + 1], pass[FERRY__BASIC_MAX + 1];
    ck_assert_uint_gt(ferry__basic_encode("alice", "s3cr:et", enc, sizeof enc), 0);
    ck_assert_str_eq(enc, "Basic YWxpY2U6czNjcjpldA==");
    ck_assert_int_eq(ferry__basic_decode(V(enc), user, pass), 0);
    ck_assert_str_eq(user, "alice");
    ck_assert_str_eq(pass, "s3cr:et"); /* the password may hold colons */
    /* Every padding length. */
    const char *users[] = {"a", "ab", "abc"};
    for (int i = 0; i < 3; i++) {
        ck_assert_uint_gt(ferry__basic_encode(users[i], "", enc, sizeof enc), 0);
        ck_assert_int_eq(ferry__basic_decode(V(enc), user, pass), 0);
        ck_assert_str_eq(user, users[i]);
        ck_assert_str_eq(pass, "");
    }
    /* The scheme is case-insensitive; extra blanks are tolerated. */
    ck_assert_int_eq(ferry__basic_decode(V("bAsIc   YWxpY2U6eA==  "), user, pass), 0);
    ck_assert_str_eq(pass, "x");
    ck_assert_uint_eq(ferry__basic_encode("alice", "x", enc, 10), 0); /* does not fit */
}
END_TEST

START_TEST(basic_rejects) {
    char user[FERRY__BASIC_MAX + 1], pass[FERRY__BASIC_MAX + 1];
    const char *bad[] = {
        "Bearer YWxpY2U6eA==",   /* another scheme */
        "Basic",                 /* nothing */
        "BasicYWxpY2U6eA==",     /* no blank after the scheme */
        "Basic YWxpY2U6eA=",     /* not a multiple of 4 */
        "Basic YWxp*2U6eA==",    /* not base64 */
        "Basic YW=pY2U6eA==",    /* padding in the middle */
        "Basic YWxpY2U=",        /* "alice": no colon */
        "Basic YQB4OnA=",        /* "a\0x:p": NUL */
        "Basic YQp4OnA=",        /* "a\nx:p": control byte */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(ferry__basic_decode(V(bad[i]), user, pass) == -1, "accepted %s", bad[i]);
    /* A user name past 255 bytes. */
    char longuser[300], enc[600];
    memset(longuser, 'u', 256);
    longuser[256] = '\0';
    ck_assert_uint_gt(ferry__basic_encode(longuser, "p", enc, sizeof enc), 0);
    ck_assert_int_eq(ferry__basic_decode(V(enc), user, pass), -1);
}
END_TEST

int main(void) {
    Suite *s = suite_create("http_forward");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, absolute_form_targets);
    tcase_add_test(tc, bad_targets);
    tcase_add_test(tc, connect_targets);
    tcase_add_test(tc, basic_round_trip);
    tcase_add_test(tc, basic_rejects);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
