/* Shared helpers for the Check test programs. */
#ifndef FERRY_TESTUTIL_H
#define FERRY_TESTUTIL_H

#include <check.h>
#include <dirent.h>
#include <stdlib.h>

/* Open file descriptors of this process (from /proc/self/fd, minus the dir's own fd). */
static inline int count_open_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    int n = 0;
    while (readdir(d)) n++;
    closedir(d);
    return n - 3; /* ".", "..", and the DIR's own fd */
}

/* Run one suite; CK_FORK stays as configured by the environment. */
static inline int run_suite(Suite *s) {
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

#endif
