#include <stdio.h>
#include <string.h>

#include "ferry.h"
#include "testutil.h"

START_TEST(names_and_messages_come_from_one_table) {
    ck_assert_str_eq(ferry_err_name(FERRY_OK), "OK");
    ck_assert_str_eq(ferry_err_name(FERRY_ETIMEDOUT), "ETIMEDOUT");
    ck_assert_str_eq(ferry_strerror(FERRY_ENOMEM), "out of memory");
    for (int e = 0; e < FERRY_ERR_COUNT_; e++) {
        ck_assert_str_ne(ferry_err_name(e), "UNKNOWN");
        ck_assert_str_ne(ferry_strerror(e), "unknown error");
    }
}
END_TEST

START_TEST(unknown_codes_are_named_unknown) {
    ck_assert_str_eq(ferry_err_name(-1), "UNKNOWN");
    ck_assert_str_eq(ferry_err_name(FERRY_ERR_COUNT_), "UNKNOWN");
    ck_assert_str_eq(ferry_strerror(100000), "unknown error");
}
END_TEST

START_TEST(version_is_consistent) {
    char buf[32];
    unsigned v = ferry_version_number();
    snprintf(buf, sizeof buf, "%u.%u.%u", v / 10000, v / 100 % 100, v % 100);
    ck_assert_str_eq(buf, ferry_version());
}
END_TEST

int main(void) {
    Suite *s = suite_create("error");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, names_and_messages_come_from_one_table);
    tcase_add_test(tc, unknown_codes_are_named_unknown);
    tcase_add_test(tc, version_is_consistent);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
