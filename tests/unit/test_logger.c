#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ferry/logger.h"
#include "internal.h"
#include "testutil.h"

/* ---- temp files ---- */

typedef struct tmpdir {
    char dir[64];
    char path[128];
} tmpdir;

static void tmp_open(tmpdir *t, const char *name) {
    strcpy(t->dir, "/tmp/ferry-logger-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(t->dir));
    snprintf(t->path, sizeof t->path, "%s/%s", t->dir, name);
}

static void tmp_close(tmpdir *t) {
    unlink(t->path);
    ck_assert_int_eq(rmdir(t->dir), 0);
}

/* Whole file, NUL-terminated; *len excludes the NUL. */
static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    for (size_t r; (r = fread(buf + n, 1, cap - n - 1, f)) > 0;) {
        n += r;
        if (cap - n - 1 == 0) buf = realloc(buf, cap *= 2);
    }
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

static size_t count_char(const char *s, size_t n, char c) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += s[i] == c;
    return k;
}

/* ---- concurrent writers ---- */

enum { THREADS = 4, PER_THREAD = 1000 };

typedef struct writer_arg {
    ferry_logger *lg;
    int id;
} writer_arg;

static void *writer(void *arg) {
    writer_arg *w = arg;
    char line[128];
    for (int i = 0; i < PER_THREAD; i++) {
        int n = snprintf(line, sizeof line, "thread=%d seq=%d payload=abcdefghijklmnopqrstuvwxyz",
                         w->id, i);
        ferry_logger_write(w->lg, line, (size_t)n);
    }
    return NULL;
}

START_TEST(lines_from_many_threads_all_arrive_intact) {
    tmpdir t;
    tmp_open(&t, "access.log");
    int fds = count_open_fds();
    ferry_logger *lg = NULL;
    ck_assert_int_eq(ferry_logger_new(t.path, 0, NULL, &lg), FERRY_OK);
    pthread_t th[THREADS];
    writer_arg args[THREADS];
    for (int i = 0; i < THREADS; i++) {
        args[i] = (writer_arg){lg, i};
        ck_assert_int_eq(pthread_create(&th[i], NULL, writer, &args[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
    ck_assert_uint_eq(ferry_logger_dropped(lg), 0);
    ferry_logger_free(lg);
    ck_assert_int_eq(count_open_fds(), fds);

    size_t len;
    char *data = slurp(t.path, &len);
    ck_assert_uint_eq(count_char(data, len, '\n'), THREADS * PER_THREAD);
    int next[THREADS] = {0};
    for (char *line = data, *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
        *nl = '\0';
        int id, seq, consumed = 0;
        ck_assert_int_eq(sscanf(line, "thread=%d seq=%d payload=abcdefghijklmnopqrstuvwxyz%n",
                                &id, &seq, &consumed),
                         2);
        ck_assert_uint_eq((size_t)consumed, strlen(line));
        ck_assert(id >= 0 && id < THREADS);
        ck_assert_int_eq(seq, next[id]); /* per-thread order is kept */
        next[id]++;
    }
    for (int i = 0; i < THREADS; i++) ck_assert_int_eq(next[i], PER_THREAD);
    free(data);
    tmp_close(&t);
}
END_TEST

START_TEST(control_bytes_are_escaped) {
    tmpdir t;
    tmp_open(&t, "x.log");
    ferry_logger *lg = NULL;
    ck_assert_int_eq(ferry_logger_new(t.path, 0, NULL, &lg), FERRY_OK);
    static const char evil[] = "a\nb\rc\x01" "d\x7f\x1b[31m\xc3\xa9\\x0a";
    ferry_logger_write(lg, evil, sizeof evil - 1);
    static const char nul[] = {'x', '\0', 'y'};
    ferry_logger_write(lg, nul, sizeof nul);
    ferry_logger_write(lg, "", 0);
    ferry_logger_free(lg);

    size_t len;
    char *data = slurp(t.path, &len);
    ck_assert_str_eq(data, "a\\x0ab\\x0dc\\x01d\\x7f\\x1b[31m\xc3\xa9\\x0a\n"
                           "x\\x00y\n"
                           "\n");
    free(data);
    tmp_close(&t);
}
END_TEST

/* The thread writes as lines come in, not only at free. */
START_TEST(lines_reach_the_file_while_the_logger_lives) {
    tmpdir t;
    tmp_open(&t, "live.log");
    ferry_logger *lg = NULL;
    ck_assert_int_eq(ferry_logger_new(t.path, 0, NULL, &lg), FERRY_OK);
    for (int round = 1; round <= 3; round++) {
        ferry_logger_write(lg, "tick", 4);
        struct stat st = {0};
        for (int i = 0; i < 5000 && (stat(t.path, &st) != 0 || st.st_size < 5 * round); i++) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
        ck_assert_int_eq(st.st_size, 5 * round);
    }
    ferry_logger_free(lg);
    tmp_close(&t);
}
END_TEST

/* ---- backpressure: a reader that never reads must cost drops, never a blocked caller ---- */

typedef struct drain_arg {
    int fd;
    size_t lines;
} drain_arg;

static void *drain(void *arg) {
    drain_arg *d = arg;
    char buf[65536];
    for (ssize_t r; (r = read(d->fd, buf, sizeof buf)) != 0;)
        if (r > 0) d->lines += count_char(buf, (size_t)r, '\n');
    return NULL;
}

START_TEST(a_full_queue_drops_and_counts_without_blocking) {
    enum { LINES = 100000 };
    tmpdir t;
    tmp_open(&t, "fifo");
    ck_assert_int_eq(mkfifo(t.path, 0600), 0);
    int rd = open(t.path, O_RDONLY | O_NONBLOCK); /* so the logger's open doesn't block */
    ck_assert_int_ge(rd, 0);
    ferry_logger *lg = NULL;
    ck_assert_int_eq(ferry_logger_new(t.path, 256, NULL, &lg), FERRY_OK);

    /* Nobody reads: the pipe fills (64 KiB), the writer thread blocks in write(2), and the
     * 256-byte queue fills. All 1.6 MB of writes must still return promptly. */
    uint64_t t0 = ferry__now_ms();
    for (int i = 0; i < LINES; i++) ferry_logger_write(lg, "0123456789abcde", 15);
    ck_assert_uint_lt(ferry__now_ms() - t0, 10000);
    uint64_t dropped = ferry_logger_dropped(lg);
    ck_assert_uint_gt(dropped, 0);

    /* A line that can never fit is dropped even while the queue is empty. */
    char big[300];
    memset(big, 'z', sizeof big);
    ferry_logger_write(lg, big, sizeof big);
    ck_assert_uint_eq(ferry_logger_dropped(lg), dropped + 1);

    fcntl(rd, F_SETFL, fcntl(rd, F_GETFL) & ~O_NONBLOCK);
    drain_arg d = {rd, 0};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, drain, &d), 0);
    ferry_logger_free(lg); /* flushes into the pipe; its close ends the drain */
    pthread_join(th, NULL);
    close(rd);
    ck_assert_uint_eq(d.lines + dropped, LINES);
    tmp_close(&t);
}
END_TEST

START_TEST(write_errors_drop_the_batch_and_count_it) {
    tmpdir t;
    tmp_open(&t, "fifo");
    ck_assert_int_eq(mkfifo(t.path, 0600), 0);
    int rd = open(t.path, O_RDONLY | O_NONBLOCK);
    ck_assert_int_ge(rd, 0);
    ferry_logger *lg = NULL;
    ck_assert_int_eq(ferry_logger_new(t.path, 0, NULL, &lg), FERRY_OK);
    close(rd); /* writes now fail with EPIPE; SIGPIPE is blocked on the writer thread */
    for (int i = 0; i < 50; i++) ferry_logger_write(lg, "gone", 4);
    for (int i = 0; i < 5000 && ferry_logger_dropped(lg) < 50; i++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    ck_assert_uint_eq(ferry_logger_dropped(lg), 50);
    ferry_logger_free(lg);
    tmp_close(&t);
}
END_TEST

/* ---- log_fn ---- */

static void check_log_line(const char *line, const char *level, const char *message) {
    /* 2026-11-27T05:33:25.123Z [warn] message */
    ck_assert_uint_ge(strlen(line), 25);
    for (int i = 0; i < 24; i++) {
        char c = line[i];
        switch (i) {
        case 4:
        case 7: ck_assert_int_eq(c, '-'); break;
        case 10: ck_assert_int_eq(c, 'T'); break;
        case 13:
        case 16: ck_assert_int_eq(c, ':'); break;
        case 19: ck_assert_int_eq(c, '.'); break;
        case 23: ck_assert_int_eq(c, 'Z'); break;
        default: ck_assert(c >= '0' && c <= '9');
        }
    }
    char rest[256];
    snprintf(rest, sizeof rest, " [%s] %s", level, message);
    ck_assert_str_eq(line + 24, rest);
}

START_TEST(log_fn_writes_timestamped_level_lines) {
    tmpdir t;
    tmp_open(&t, "error.log");
    ferry_logger *lg = NULL;
    ck_assert_int_eq(ferry_logger_new(t.path, 0, NULL, &lg), FERRY_OK);
    int64_t before = ferry__wall_us() / 1000000;
    ferry_logger_log_fn(lg, FERRY_LOG_ERROR, "boom");
    ferry_logger_log_fn(lg, FERRY_LOG_WARN, "careful");
    ferry_logger_log_fn(lg, FERRY_LOG_INFO, "hello world");
    ferry_logger_log_fn(lg, FERRY_LOG_DEBUG, "two\nlines");
    ferry_logger_log_fn(lg, FERRY_LOG_INFO, NULL);
    ferry_logger_log_fn(NULL, FERRY_LOG_INFO, "ignored");
    int64_t after = ferry__wall_us() / 1000000;
    ferry_logger_free(lg);

    size_t len;
    char *data = slurp(t.path, &len);
    ck_assert_uint_eq(count_char(data, len, '\n'), 5);
    const char *want[][2] = {{"error", "boom"}, {"warn", "careful"}, {"info", "hello world"},
                             {"debug", "two\\x0alines"}, {"info", ""}};
    char *line = data;
    for (size_t i = 0; i < FERRY__ARRAY_LEN(want); i++) {
        char *nl = strchr(line, '\n');
        *nl = '\0';
        check_log_line(line, want[i][0], want[i][1]);
        if (i == 0) {
            /* The stamp is the current UTC time, to the second. */
            struct tm tm = {0};
            ck_assert_ptr_nonnull(strptime(line, "%Y-%m-%dT%H:%M:%S", &tm));
            int64_t stamp = (int64_t)timegm(&tm);
            ck_assert(stamp >= before && stamp <= after);
        }
        line = nl + 1;
    }
    free(data);
    tmp_close(&t);
}
END_TEST

/* ---- access records ---- */

static ferry_session_info v4_session(void) {
    ferry_session_info s = {.id = 7, .listener = "web", .client_family = AF_INET,
                            .client_port = 5555};
    strcpy(s.client_addr, "127.0.0.1");
    return s;
}

static ferry_log_record record_for(const ferry_session_info *s) {
    return (ferry_log_record){.session = s,
                              .target = "backend.example:8080",
                              .verdict = "relayed",
                              .error = FERRY_OK,
                              .bytes_from_client = 1,
                              .bytes_to_client = 2,
                              .connect_us = 3,
                              .duration_us = 1234567,
                              .start_unix_us = 1795757605123456,
                              .connect_attempts = 1};
}

static char *fmt(ferry_access_format f, const ferry_log_record *r) {
    static char buf[1024];
    size_t n = ferry_access_format_record(f, r, buf, sizeof buf);
    ck_assert_uint_eq(n, strlen(buf));
    return buf;
}

START_TEST(access_text_format) {
    ferry_session_info s = v4_session();
    ferry_log_record r = record_for(&s);
    ck_assert_str_eq(fmt(FERRY_ACCESS_TEXT, &r),
                     "2026-11-27T05:33:25.123Z 127.0.0.1:5555 web backend.example:8080 relayed "
                     "OK up=1 down=2 connect_ms=0.003 duration_ms=1234.567 attempts=1 id=7");

    s = (ferry_session_info){.id = 18446744073709551615u, .listener = "my listener\n",
                             .client_family = AF_INET6, .client_port = 65535};
    strcpy(s.client_addr, "::1");
    r = (ferry_log_record){.session = &s, .target = "", .verdict = "rejected",
                           .error = FERRY_EREJECTED, .bytes_from_client = 18446744073709551615u,
                           .connect_us = 0, .duration_us = 999, .start_unix_us = 0,
                           .connect_attempts = 0};
    ck_assert_str_eq(fmt(FERRY_ACCESS_TEXT, &r),
                     "1970-01-01T00:00:00.000Z [::1]:65535 my\\x20listener\\x0a - rejected "
                     "EREJECTED up=18446744073709551615 down=0 connect_ms=0.000 duration_ms=0.999 "
                     "attempts=0 id=18446744073709551615");

    /* Backslashes are escaped so fields decode unambiguously; before 1970 floors. */
    s.listener = "a\\b";
    r.target = "h\x7f:1";
    r.start_unix_us = -1;
    ck_assert_str_eq(fmt(FERRY_ACCESS_TEXT, &r),
                     "1969-12-31T23:59:59.999Z [::1]:65535 a\\x5cb h\\x7f:1 rejected "
                     "EREJECTED up=18446744073709551615 down=0 connect_ms=0.000 duration_ms=0.999 "
                     "attempts=0 id=18446744073709551615");

    /* A leap day, for the calendar arithmetic. */
    r.start_unix_us = 951782400000000; /* 2000-02-29T00:00:00Z */
    ck_assert_int_eq(strncmp(fmt(FERRY_ACCESS_TEXT, &r), "2000-02-29T00:00:00.000Z ", 25), 0);
}
END_TEST

START_TEST(access_json_format) {
    ferry_session_info s = v4_session();
    ferry_log_record r = record_for(&s);
    ck_assert_str_eq(fmt(FERRY_ACCESS_JSON, &r),
                     "{\"time\":\"2026-11-27T05:33:25.123Z\",\"client\":\"127.0.0.1\","
                     "\"client_port\":5555,\"listener\":\"web\",\"target\":\"backend.example:8080\","
                     "\"verdict\":\"relayed\",\"error\":\"OK\",\"bytes_from_client\":1,"
                     "\"bytes_to_client\":2,\"connect_us\":3,\"duration_us\":1234567,"
                     "\"attempts\":1,\"id\":7}");

    s = (ferry_session_info){.id = 9, .listener = "q\"b\\s\n\x01 x", .client_family = AF_INET6,
                             .client_port = 443};
    strcpy(s.client_addr, "2001:db8::5");
    r.target = "";
    r.verdict = "error";
    r.error = FERRY_ECONNREFUSED;
    r.connect_attempts = 3;
    ck_assert_str_eq(fmt(FERRY_ACCESS_JSON, &r),
                     "{\"time\":\"2026-11-27T05:33:25.123Z\",\"client\":\"2001:db8::5\","
                     "\"client_port\":443,\"listener\":\"q\\\"b\\\\s\\u000a\\u0001 x\","
                     "\"target\":\"\",\"verdict\":\"error\",\"error\":\"ECONNREFUSED\","
                     "\"bytes_from_client\":1,\"bytes_to_client\":2,\"connect_us\":3,"
                     "\"duration_us\":1234567,\"attempts\":3,\"id\":9}");
}
END_TEST

/* ---- HTTP access records ---- */

/* Views are not NUL-terminated: each one points into a longer string to prove it. */
#define VIEW(lit, n) ((ferry_view){(lit), (n)})
#define LIT(lit) ((ferry_view){(lit), sizeof(lit) - 1})

static ferry_log_record http_record_for(const ferry_session_info *s) {
    ferry_log_record r = record_for(s);
    r.method = VIEW("GETxx", 3);
    r.request_target = VIEW("/path?q=1 HTTP/1.1", 9);
    r.host = VIEW("example.com:80", 11);
    r.referer = VIEW("https://ref.example/ zzz", 20);
    r.user_agent = VIEW("curl/8.0\r\n", 8);
    r.status = 200;
    r.first_byte_us = 1500;
    r.response_bytes = 1234;
    return r;
}

/* A client trying to close the quotes, start a new line and forge fields; it also has a NUL,
 * a DEL and a backslash. Status 502 with no body. */
static const char evil_ua[] = "M\" 1 \"\\\r\n1.2.3.4 x\0y\x7f";

static ferry_log_record hostile_record_for(const ferry_session_info *s) {
    ferry_log_record r = record_for(s);
    r.method = LIT("POST");
    r.request_target = LIT("/a b\\c\"d\te");
    r.host = LIT("h\"o\nst");
    r.referer = LIT("http://r/\"x\" \"");
    r.user_agent = LIT(evil_ua);
    r.status = 502;
    r.first_byte_us = 0;
    r.response_bytes = 0;
    return r;
}

START_TEST(access_http_text_format) {
    ferry_session_info s = v4_session();
    ferry_log_record r = http_record_for(&s);
    ck_assert_str_eq(fmt(FERRY_ACCESS_TEXT, &r),
                     "2026-11-27T05:33:25.123Z 127.0.0.1:5555 web backend.example:8080 relayed "
                     "OK up=1 down=2 connect_ms=0.003 duration_ms=1234.567 attempts=1 id=7 "
                     "method=GET target=/path?q=1 status=200 resp_bytes=1234 first_byte_ms=1.500");

    r = hostile_record_for(&s);
    ck_assert_str_eq(fmt(FERRY_ACCESS_TEXT, &r),
                     "2026-11-27T05:33:25.123Z 127.0.0.1:5555 web backend.example:8080 relayed "
                     "OK up=1 down=2 connect_ms=0.003 duration_ms=1234.567 attempts=1 id=7 "
                     "method=POST target=/a\\x20b\\x5cc\"d\\x09e status=502 resp_bytes=0 "
                     "first_byte_ms=0.000");

    /* No response yet, and an empty target: still one token each. */
    r.status = 0;
    r.request_target = (ferry_view){NULL, 0};
    r.first_byte_us = 12345678;
    ck_assert_str_eq(fmt(FERRY_ACCESS_TEXT, &r),
                     "2026-11-27T05:33:25.123Z 127.0.0.1:5555 web backend.example:8080 relayed "
                     "OK up=1 down=2 connect_ms=0.003 duration_ms=1234.567 attempts=1 id=7 "
                     "method=POST target=- status=0 resp_bytes=0 first_byte_ms=12345.678");

    /* A TCP record (no method) has none of the HTTP fields, even if others are set. */
    r.method = (ferry_view){"", 0};
    ck_assert_str_eq(fmt(FERRY_ACCESS_TEXT, &r),
                     "2026-11-27T05:33:25.123Z 127.0.0.1:5555 web backend.example:8080 relayed "
                     "OK up=1 down=2 connect_ms=0.003 duration_ms=1234.567 attempts=1 id=7");
}
END_TEST

START_TEST(access_http_json_format) {
    ferry_session_info s = v4_session();
    ferry_log_record r = http_record_for(&s);
    ck_assert_str_eq(fmt(FERRY_ACCESS_JSON, &r),
                     "{\"time\":\"2026-11-27T05:33:25.123Z\",\"client\":\"127.0.0.1\","
                     "\"client_port\":5555,\"listener\":\"web\",\"target\":\"backend.example:8080\","
                     "\"verdict\":\"relayed\",\"error\":\"OK\",\"bytes_from_client\":1,"
                     "\"bytes_to_client\":2,\"connect_us\":3,\"duration_us\":1234567,"
                     "\"attempts\":1,\"id\":7,\"method\":\"GET\",\"request_target\":\"/path?q=1\","
                     "\"host\":\"example.com\",\"referer\":\"https://ref.example/\","
                     "\"user_agent\":\"curl/8.0\",\"status\":200,\"response_bytes\":1234,"
                     "\"first_byte_us\":1500}");

    r = hostile_record_for(&s);
    r.referer = (ferry_view){NULL, 0};
    ck_assert_str_eq(fmt(FERRY_ACCESS_JSON, &r),
                     "{\"time\":\"2026-11-27T05:33:25.123Z\",\"client\":\"127.0.0.1\","
                     "\"client_port\":5555,\"listener\":\"web\",\"target\":\"backend.example:8080\","
                     "\"verdict\":\"relayed\",\"error\":\"OK\",\"bytes_from_client\":1,"
                     "\"bytes_to_client\":2,\"connect_us\":3,\"duration_us\":1234567,"
                     "\"attempts\":1,\"id\":7,\"method\":\"POST\","
                     "\"request_target\":\"/a b\\\\c\\\"d\\u0009e\",\"host\":\"h\\\"o\\u000ast\","
                     "\"referer\":\"\",\"user_agent\":\"M\\\" 1 \\\"\\\\\\u000d\\u000a1.2.3.4 "
                     "x\\u0000y\\u007f\",\"status\":502,\"response_bytes\":0,\"first_byte_us\":0}");

    /* TCP: exactly the old object. */
    r = record_for(&s);
    ck_assert_str_eq(fmt(FERRY_ACCESS_JSON, &r),
                     "{\"time\":\"2026-11-27T05:33:25.123Z\",\"client\":\"127.0.0.1\","
                     "\"client_port\":5555,\"listener\":\"web\",\"target\":\"backend.example:8080\","
                     "\"verdict\":\"relayed\",\"error\":\"OK\",\"bytes_from_client\":1,"
                     "\"bytes_to_client\":2,\"connect_us\":3,\"duration_us\":1234567,"
                     "\"attempts\":1,\"id\":7}");
}
END_TEST

START_TEST(access_common_format) {
    ferry_session_info s = v4_session();
    ferry_log_record r = http_record_for(&s);
    ck_assert_str_eq(fmt(FERRY_ACCESS_COMMON, &r),
                     "127.0.0.1 - - [27/Nov/2026:05:33:25 +0000] \"GET /path?q=1 HTTP/1.1\" 200 "
                     "1234");

    /* Quotes, backslashes and control bytes cannot leave the quoted request line. */
    r = hostile_record_for(&s);
    ck_assert_str_eq(fmt(FERRY_ACCESS_COMMON, &r),
                     "127.0.0.1 - - [27/Nov/2026:05:33:25 +0000] "
                     "\"POST /a b\\\\c\\\"d\\x09e HTTP/1.1\" 502 -");

    /* No response: status "-". IPv6 clients are written bare, as Apache does. */
    s.client_family = AF_INET6;
    strcpy(s.client_addr, "2001:db8::5");
    r.status = 0;
    r.request_target = (ferry_view){"", 0};
    r.start_unix_us = -1;
    ck_assert_str_eq(fmt(FERRY_ACCESS_COMMON, &r),
                     "2001:db8::5 - - [31/Dec/1969:23:59:59 +0000] \"POST - HTTP/1.1\" - -");

    /* A TCP record: no request line and no status; nothing sent as a response body. */
    s = v4_session();
    r = record_for(&s);
    ck_assert_str_eq(fmt(FERRY_ACCESS_COMMON, &r),
                     "127.0.0.1 - - [27/Nov/2026:05:33:25 +0000] \"-\" - -");
    r.status = 404; /* ignored without a method */
    ck_assert_str_eq(fmt(FERRY_ACCESS_COMMON, &r),
                     "127.0.0.1 - - [27/Nov/2026:05:33:25 +0000] \"-\" - -");

    /* No session at all; a leap day. */
    r.session = NULL;
    r.start_unix_us = 951782400000000; /* 2000-02-29T00:00:00Z */
    ck_assert_str_eq(fmt(FERRY_ACCESS_COMMON, &r),
                     "- - - [29/Feb/2000:00:00:00 +0000] \"-\" - -");
}
END_TEST

START_TEST(access_combined_format) {
    ferry_session_info s = v4_session();
    ferry_log_record r = http_record_for(&s);
    ck_assert_str_eq(fmt(FERRY_ACCESS_COMBINED, &r),
                     "127.0.0.1 - - [27/Nov/2026:05:33:25 +0000] \"GET /path?q=1 HTTP/1.1\" 200 "
                     "1234 \"https://ref.example/\" \"curl/8.0\"");

    r = hostile_record_for(&s);
    ck_assert_str_eq(fmt(FERRY_ACCESS_COMBINED, &r),
                     "127.0.0.1 - - [27/Nov/2026:05:33:25 +0000] "
                     "\"POST /a b\\\\c\\\"d\\x09e HTTP/1.1\" 502 - \"http://r/\\\"x\\\" \\\"\" "
                     "\"M\\\" 1 \\\"\\\\\\x0d\\x0a1.2.3.4 x\\x00y\\x7f\"");
    /* The forged line break and quotes are gone: one line, and every '"' inside a field
     * follows a backslash. */
    const char *line = fmt(FERRY_ACCESS_COMBINED, &r);
    ck_assert_ptr_null(strpbrk(line, "\r\n"));
    size_t unescaped = 0;
    for (size_t i = 0; line[i]; i++) {
        if (line[i] == '\\') {
            i++;
            continue;
        }
        unescaped += line[i] == '"';
    }
    ck_assert_uint_eq(unescaped, 6);

    /* Absent referer and user agent. */
    r = http_record_for(&s);
    r.referer = (ferry_view){NULL, 0};
    r.user_agent = (ferry_view){"", 0};
    ck_assert_str_eq(fmt(FERRY_ACCESS_COMBINED, &r),
                     "127.0.0.1 - - [27/Nov/2026:05:33:25 +0000] \"GET /path?q=1 HTTP/1.1\" 200 "
                     "1234 \"-\" \"-\"");

    /* TCP */
    r = record_for(&s);
    ck_assert_str_eq(fmt(FERRY_ACCESS_COMBINED, &r),
                     "127.0.0.1 - - [27/Nov/2026:05:33:25 +0000] \"-\" - - \"-\" \"-\"");
}
END_TEST

/* A forward proxy's authenticated user appears in every format, escaped like the rest;
 * without one the formats are unchanged (see the tests above). */
START_TEST(access_formats_show_the_user) {
    ferry_session_info s = v4_session();
    s.user = "ali ce";
    ferry_log_record r = http_record_for(&s);
    ck_assert_str_eq(fmt(FERRY_ACCESS_COMMON, &r),
                     "127.0.0.1 - ali\\x20ce [27/Nov/2026:05:33:25 +0000] \"GET /path?q=1 HTTP/1.1\" "
                     "200 1234");
    ck_assert_ptr_nonnull(strstr(fmt(FERRY_ACCESS_TEXT, &r), " user=ali\\x20ce "));
    ck_assert_ptr_nonnull(strstr(fmt(FERRY_ACCESS_JSON, &r), ",\"user\":\"ali ce\","));
    s.user = "";
    ck_assert_ptr_null(strstr(fmt(FERRY_ACCESS_TEXT, &r), "user="));
    ck_assert_ptr_null(strstr(fmt(FERRY_ACCESS_JSON, &r), "\"user\""));
}
END_TEST

START_TEST(access_format_truncates_like_snprintf) {
    ferry_session_info s = v4_session();
    ferry_log_record recs[3] = {record_for(&s), http_record_for(&s), hostile_record_for(&s)};
    for (size_t k = 0; k < FERRY__ARRAY_LEN(recs); k++) {
        const ferry_log_record *r = &recs[k];
        for (int f = FERRY_ACCESS_TEXT; f <= FERRY_ACCESS_COMBINED; f++) {
            char full[1024];
            size_t need =
                ferry_access_format_record((ferry_access_format)f, r, full, sizeof full);
            ck_assert_uint_lt(need, sizeof full);
            ck_assert_uint_eq(need, strlen(full));
            ck_assert_uint_eq(ferry_access_format_record((ferry_access_format)f, r, NULL, 0),
                              need);
            for (size_t size = 1; size <= need + 1; size++) {
                char buf[1024];
                memset(buf, '#', sizeof buf);
                ck_assert_uint_eq(
                    ferry_access_format_record((ferry_access_format)f, r, buf, size), need);
                ck_assert_uint_eq(strlen(buf), size - 1 < need ? size - 1 : need);
                ck_assert_int_eq(strncmp(buf, full, size - 1), 0);
                ck_assert_int_eq(buf[size], '#'); /* nothing past size */
            }
        }
    }
    /* Unknown formats fall back to TEXT. */
    char a[1024], b[1024];
    ferry_access_format_record(FERRY_ACCESS_TEXT, &recs[1], a, sizeof a);
    ferry_access_format_record((ferry_access_format)99, &recs[1], b, sizeof b);
    ck_assert_str_eq(a, b);
    char one = 'x';
    ck_assert_uint_eq(ferry_access_format_record(FERRY_ACCESS_TEXT, NULL, &one, 1), 0);
    ck_assert_int_eq(one, '\0');
}
END_TEST

/* ---- lifecycle ---- */

START_TEST(bad_paths_and_arguments_fail) {
    int fds = count_open_fds();
    ferry_logger *lg = (ferry_logger *)&lg;
    ck_assert_int_eq(ferry_logger_new("/nonexistent-ferry-dir/x/access.log", 0, NULL, &lg),
                     FERRY_ESYS);
    ck_assert_int_eq(errno, ENOENT);
    ck_assert_ptr_null(lg);
    ck_assert_int_eq(ferry_logger_new(NULL, 0, NULL, &lg), FERRY_EINVAL);
    ck_assert_int_eq(ferry_logger_new("-", 0, NULL, NULL), FERRY_EINVAL);
    ck_assert_int_eq(count_open_fds(), fds);
    ferry_logger_free(NULL);
    ferry_logger_write(NULL, "x", 1);
    ck_assert_uint_eq(ferry_logger_dropped(NULL), 0);
}
END_TEST

START_TEST(fds_are_released_and_std_streams_kept) {
    tmpdir t;
    tmp_open(&t, "a.log");
    int fds = count_open_fds();
    for (int i = 0; i < 3; i++) {
        ferry_logger *lg = NULL;
        ck_assert_int_eq(ferry_logger_new(t.path, 0, NULL, &lg), FERRY_OK);
        ck_assert_int_eq(count_open_fds(), fds + 1);
        ferry_logger_write(lg, "x", 1);
        ferry_logger_free(lg);
        ck_assert_int_eq(count_open_fds(), fds);
    }
    struct stat st;
    ck_assert_int_eq(stat(t.path, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777 & ~(mode_t)0640, 0);
    ck_assert_int_eq(st.st_size, 6); /* appended, not truncated */

    ferry_logger *out = NULL, *err = NULL;
    ck_assert_int_eq(ferry_logger_new("-", 0, NULL, &out), FERRY_OK);
    ck_assert_int_eq(ferry_logger_new("stderr", 0, NULL, &err), FERRY_OK);
    ferry_logger_log_fn(err, FERRY_LOG_DEBUG, "test_logger: a line on stderr, as expected");
    ferry_logger_free(out);
    ferry_logger_free(err);
    ck_assert_int_ne(fcntl(STDOUT_FILENO, F_GETFD), -1);
    ck_assert_int_ne(fcntl(STDERR_FILENO, F_GETFD), -1);
    ck_assert_int_eq(count_open_fds(), fds);
    tmp_close(&t);
}
END_TEST

/* ---- allocator ---- */

typedef struct counting {
    atomic_long live;
    atomic_long calls;
    long fail_from; /* allocation calls from this index on fail; -1: never */
} counting;

static void *c_malloc(void *ud, size_t n) {
    counting *c = ud;
    if (c->fail_from >= 0 && atomic_fetch_add(&c->calls, 1) >= c->fail_from) return NULL;
    void *p = malloc(n);
    if (p) atomic_fetch_add(&c->live, 1);
    return p;
}
static void *c_realloc(void *ud, void *p, size_t n) {
    counting *c = ud;
    if (c->fail_from >= 0 && atomic_fetch_add(&c->calls, 1) >= c->fail_from) return NULL;
    void *q = realloc(p, n);
    if (q && !p) atomic_fetch_add(&c->live, 1);
    return q;
}
static void c_free(void *ud, void *p) {
    counting *c = ud;
    if (p) atomic_fetch_sub(&c->live, 1);
    free(p);
}

START_TEST(allocations_go_through_the_allocator) {
    tmpdir t;
    tmp_open(&t, "a.log");
    counting c = {.fail_from = -1};
    ferry_allocator a = {c_malloc, c_realloc, c_free, &c};
    ferry_logger *lg = NULL;
    ck_assert_int_eq(ferry_logger_new(t.path, 0, &a, &lg), FERRY_OK);
    for (int i = 0; i < 2000; i++) ferry_logger_write(lg, "some line of text", 17);
    ck_assert_int_gt(atomic_load(&c.live), 0);
    ferry_logger_free(lg);
    ck_assert_int_eq(atomic_load(&c.live), 0);

    /* No memory for the logger itself. */
    c.fail_from = 0;
    int fds = count_open_fds();
    ck_assert_int_eq(ferry_logger_new(t.path, 0, &a, &lg), FERRY_ENOMEM);
    ck_assert_ptr_null(lg);
    ck_assert_int_eq(count_open_fds(), fds);

    /* No memory for the queue: the line is dropped and counted. */
    atomic_store(&c.calls, 0);
    c.fail_from = 1;
    ck_assert_int_eq(ferry_logger_new(t.path, 0, &a, &lg), FERRY_OK);
    ferry_logger_write(lg, "lost", 4);
    ck_assert_uint_eq(ferry_logger_dropped(lg), 1);
    ferry_logger_free(lg);
    ck_assert_int_eq(atomic_load(&c.live), 0);
    tmp_close(&t);
}
END_TEST

int main(void) {
    Suite *s = suite_create("logger");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, lines_from_many_threads_all_arrive_intact);
    tcase_add_test(tc, control_bytes_are_escaped);
    tcase_add_test(tc, lines_reach_the_file_while_the_logger_lives);
    tcase_add_test(tc, a_full_queue_drops_and_counts_without_blocking);
    tcase_add_test(tc, write_errors_drop_the_batch_and_count_it);
    tcase_add_test(tc, log_fn_writes_timestamped_level_lines);
    tcase_add_test(tc, access_text_format);
    tcase_add_test(tc, access_json_format);
    tcase_add_test(tc, access_http_text_format);
    tcase_add_test(tc, access_http_json_format);
    tcase_add_test(tc, access_common_format);
    tcase_add_test(tc, access_combined_format);
    tcase_add_test(tc, access_formats_show_the_user);
    tcase_add_test(tc, access_format_truncates_like_snprintf);
    tcase_add_test(tc, bad_paths_and_arguments_fail);
    tcase_add_test(tc, fds_are_released_and_std_streams_kept);
    tcase_add_test(tc, allocations_go_through_the_allocator);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
