/* Fuzz target: ferry__http_parse_response, answering GET, HEAD and CONNECT, with default and
 * tiny limits. Checks the contract in http1.h: lengths and views inside the input, the
 * status range, RFC 9112 section 6.3 framing, prefix consistency, and that tighter limits
 * only add refusals. */
#include <string.h>

#include "fuzz.h"
#include "fuzz_msg.h"
#include "http1.h"

enum { CAP = 128 };

static const char *const methods[] = {"GET", "HEAD", "CONNECT"};

static int parse_copy(const uint8_t *data, size_t len, const ferry__http_limits *l,
                      ferry_view method, ferry__http_msg *m, ferry__http_error *err) {
    char *copy = malloc(len ? len : 1);
    FUZZ_CHECK(copy != NULL);
    if (len) memcpy(copy, data, len);
    int r = ferry__http_parse_response(copy, len, l, method, m, err);
    free(copy);
    return r;
}

static void check_accepted(const char *buf, int r, const ferry__http_msg *m,
                           const ferry__http_limits *l, ferry_view method) {
    size_t n = (size_t)r;
    FUZZ_CHECK(n <= l->max_head && m->nheaders <= l->max_headers);
    FUZZ_CHECK(m->status >= 100 && m->status <= 999);
    FUZZ_CHECK(FUZZ_INSIDE(m->reason, buf, n) && ferry__http_value_ok(m->reason));
    FUZZ_CHECK(m->version_minor <= 1);
    FUZZ_CHECK(m->body <= FERRY__BODY_UNTIL_CLOSE);
    FUZZ_CHECK(m->host_index == -1);
    FUZZ_CHECK((m->flags & ~7u) == 0); /* no Expect flag on responses */
    if (m->version_minor == 0)
        FUZZ_CHECK((m->flags & (FERRY__HTTP_CONN_CLOSE | FERRY__HTTP_CONN_KEEP_ALIVE)) &&
                   !(m->flags & FERRY__HTTP_CONN_UPGRADE));
    int s = m->status;
    int connect = method.len == 7 && memcmp(method.ptr, "CONNECT", 7) == 0;
    int head = method.len == 4 && memcmp(method.ptr, "HEAD", 4) == 0;
    if (head || s < 200 || s == 204 || s == 304 || (connect && s < 300))
        FUZZ_CHECK(m->body == FERRY__BODY_NONE);
    else
        FUZZ_CHECK(m->body != FERRY__BODY_NONE);
    if (m->body == FERRY__BODY_LENGTH) FUZZ_CHECK(m->content_length <= (uint64_t)INT64_MAX);
    int cl = 0, te = 0;
    for (unsigned i = 0; i < m->nheaders; i++) {
        ferry_view name = m->headers[i].name, value = m->headers[i].value;
        FUZZ_CHECK(FUZZ_INSIDE(name, buf, n) && FUZZ_INSIDE(value, buf, n));
        FUZZ_CHECK(ferry__http_name_ok(name) && ferry__http_value_ok(value));
        cl += ferry__view_ieq(name, "content-length");
        te += ferry__view_ieq(name, "transfer-encoding");
    }
    if (!(connect && s >= 200 && s < 300)) FUZZ_CHECK(cl <= 1 && !(cl && te));
    if (m->body == FERRY__BODY_LENGTH) FUZZ_CHECK(cl == 1);
    if (m->body == FERRY__BODY_CHUNKED) FUZZ_CHECK(te > 0 && m->version_minor == 1);
    FUZZ_CHECK(n >= 4 && memcmp(buf + n - 4, "\r\n\r\n", 4) == 0);
}

static void check_round_trip(const ferry__http_msg *m, const ferry__http_limits *l,
                             ferry_view method) {
    static ferry_http_header hdrs[CAP];
    ferry__http_msg m2 = {.headers = hdrs};
    ferry__http_limits big = *l;
    big.max_head = (size_t)1 << 20;
    char *out = malloc(m->reason.len + 32 + 4 * m->nheaders + (size_t)l->max_head);
    FUZZ_CHECK(out != NULL);
    char line[32];
    snprintf(line, sizeof line, "HTTP/1.%d %03d ", m->version_minor, m->status);
    size_t n = put_str(out, 0, line);
    n = put(out, n, m->reason);
    n = put_str(out, n, "\r\n");
    n = put_fields(out, n, m);
    ferry__http_error err;
    int r = ferry__http_parse_response(out, n, &big, method, &m2, &err);
    FUZZ_CHECK(r == (int)n);
    FUZZ_CHECK(m2.status == m->status && view_same(m->reason, m2.reason));
    check_same_fields(m, &m2);
    free(out);
}

static int run(const uint8_t *data, size_t size, const ferry__http_limits *l, ferry_view method,
               ferry__http_error *err_out) {
    static ferry_http_header hdrs[CAP], hdrs2[CAP];
    ferry__http_msg m = {.headers = hdrs}, m2 = {.headers = hdrs2};
    const char *buf = (const char *)data;
    ferry__http_error err = FERRY__HTTP_E_COUNT, err2 = FERRY__HTTP_E_COUNT;
    int r = ferry__http_parse_response(buf, size, l, method, &m, &err);
    FUZZ_CHECK(r >= -1 && (r < 0 || (size_t)r <= size));
    if (r == -1)
        FUZZ_CHECK(err > FERRY__HTTP_E_NONE && err < FERRY__HTTP_E_COUNT);
    else
        FUZZ_CHECK(err == FERRY__HTTP_E_NONE);
    if (r > 0) {
        check_accepted(buf, r, &m, l, method);
        check_line_ends(buf, (size_t)r);
        check_round_trip(&m, l, method);
        FUZZ_CHECK(parse_copy(data, (size_t)r, l, method, &m2, &err2) == r);
        FUZZ_CHECK(m2.status == m.status && m2.body == m.body && m2.flags == m.flags);
        FUZZ_CHECK(parse_copy(data, (size_t)r - 1, l, method, &m2, &err2) == 0);
    } else if (size > 0) {
        int r2 = parse_copy(data, size / 2, l, method, &m2, &err2);
        FUZZ_CHECK(r2 == 0 || (r == -1 && r2 == -1 && err2 == err));
        r2 = parse_copy(data, size - 1, l, method, &m2, &err2);
        FUZZ_CHECK(r2 == 0 || (r == -1 && r2 == -1 && err2 == err));
    }
    *err_out = err;
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ferry__http_limits def, tiny;
    ferry__http_limits_init(&def);
    tiny.max_line = 40;
    tiny.max_head = 160;
    tiny.max_headers = 4;
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        ferry_view method = {methods[i], strlen(methods[i])};
        ferry__http_error e1, e2;
        int r1 = run(data, size, &def, method, &e1);
        int r2 = run(data, size, &tiny, method, &e2);
        if (r2 > 0) FUZZ_CHECK(r1 == r2);
        if (r1 == -1) FUZZ_CHECK(r2 == -1);
        if (r1 == -1 && e2 != e1)
            FUZZ_CHECK(e2 == FERRY__HTTP_E_BAD_STATUS || e2 == FERRY__HTTP_E_HEAD_TOO_LARGE ||
                       e2 == FERRY__HTTP_E_TOO_MANY_HEADERS);
    }
    return 0;
}
