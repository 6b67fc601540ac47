#include <arpa/inet.h>

#include "addr.h"
#include "testutil.h"

START_TEST(splits_ipv4_names_and_bracketed_ipv6) {
    char host[64];
    uint16_t port = 0;
    ck_assert_int_eq(ferry__addr_split("127.0.0.1:8080", host, sizeof host, &port), FERRY_OK);
    ck_assert_str_eq(host, "127.0.0.1");
    ck_assert_uint_eq(port, 8080);
    ck_assert_int_eq(ferry__addr_split("[::1]:0", host, sizeof host, &port), FERRY_OK);
    ck_assert_str_eq(host, "::1");
    ck_assert_uint_eq(port, 0);
    ck_assert_int_eq(ferry__addr_split("backend.local:65535", host, sizeof host, &port), FERRY_OK);
    ck_assert_str_eq(host, "backend.local");
    ck_assert_uint_eq(port, 65535);
}
END_TEST

START_TEST(rejects_malformed_addresses) {
    char host[16];
    uint16_t port;
    const char *bad[] = {"", "127.0.0.1", "127.0.0.1:", ":80", "h:65536", "h:-1", "h:+1",
                         "h:8 0", "::1:80", "[::1]80", "[::1", "[]:80", "h:80x",
                         "a-very-long-host-name:80"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(ferry__addr_split(bad[i], host, sizeof host, &port) == FERRY_EADDR,
                      "accepted %s", bad[i]);
}
END_TEST

START_TEST(literals_round_trip) {
    ferry__sockaddr a;
    char buf[64];
    ck_assert_int_eq(ferry__addr_from_literal("10.1.2.3", 99, &a), 0);
    ferry__addr_format(&a, 1, buf, sizeof buf);
    ck_assert_str_eq(buf, "10.1.2.3:99");
    ck_assert_int_eq(ferry__addr_from_literal("::1", 443, &a), 0);
    ferry__addr_format(&a, 1, buf, sizeof buf);
    ck_assert_str_eq(buf, "[::1]:443");
    ferry__addr_format(&a, 0, buf, sizeof buf);
    ck_assert_str_eq(buf, "::1");
    ck_assert_int_eq(ferry__addr_from_literal("localhost", 1, &a), -1);
}
END_TEST

int main(void) {
    Suite *s = suite_create("addr");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, splits_ipv4_names_and_bracketed_ipv6);
    tcase_add_test(tc, rejects_malformed_addresses);
    tcase_add_test(tc, literals_round_trip);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
