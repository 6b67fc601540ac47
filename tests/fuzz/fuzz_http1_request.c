/* Fuzz target: ferry__http_parse_request. Each input is parsed with the default limits and
 * with tiny ones, and the result is checked against the contract in http1.h: lengths and
 * views stay inside the input, accepted heads obey the grammar, a shorter prefix never
 * succeeds or fails differently, and tighter limits only ever add refusals. */
#include <string.h>

#include "fuzz.h"
#include "fuzz_msg.h"
#include "http1.h"

enum { CAP = 128 };

static int is_ws(char c) { return c == ' ' || c == '\t'; }

static void check_accepted(const char *buf, int r, const ferry__http_msg *m,
                           const ferry__http_limits *l) {
    size_t n = (size_t)r;
    FUZZ_CHECK(n <= l->max_head);
    FUZZ_CHECK(m->nheaders <= l->max_headers);
    FUZZ_CHECK(m->method.len > 0 && FUZZ_INSIDE(m->method, buf, n));
    FUZZ_CHECK(ferry__http_name_ok(m->method)); /* a token, like a field name */
    FUZZ_CHECK(m->target.len > 0 && FUZZ_INSIDE(m->target, buf, n));
    for (size_t i = 0; i < m->target.len; i++)
        FUZZ_CHECK(m->target.ptr[i] > 0x20 && m->target.ptr[i] < 0x7f);
    FUZZ_CHECK(m->target_form <= FERRY__TARGET_ASTERISK);
    FUZZ_CHECK(m->version_minor <= 1);
    FUZZ_CHECK(m->body == FERRY__BODY_NONE || m->body == FERRY__BODY_LENGTH ||
               m->body == FERRY__BODY_CHUNKED);
    if (m->body == FERRY__BODY_LENGTH) FUZZ_CHECK(m->content_length <= (uint64_t)INT64_MAX);
    FUZZ_CHECK((m->flags & ~15u) == 0);
    if (m->version_minor == 0) {
        FUZZ_CHECK(m->body != FERRY__BODY_CHUNKED);
        FUZZ_CHECK(!(m->flags & (FERRY__HTTP_CONN_UPGRADE | FERRY__HTTP_EXPECT_CONTINUE)));
        FUZZ_CHECK((m->flags & FERRY__HTTP_CONN_CLOSE) || (m->flags & FERRY__HTTP_CONN_KEEP_ALIVE));
    } else {
        FUZZ_CHECK(m->host_index >= 0);
    }
    FUZZ_CHECK(m->host_index >= -1 && m->host_index < (int)m->nheaders);
    if (m->host_index >= 0)
        FUZZ_CHECK(ferry__view_ieq(m->headers[m->host_index].name, "host"));
    int cl = 0, te = 0;
    for (unsigned i = 0; i < m->nheaders; i++) {
        ferry_view name = m->headers[i].name, value = m->headers[i].value;
        FUZZ_CHECK(FUZZ_INSIDE(name, buf, n) && FUZZ_INSIDE(value, buf, n));
        FUZZ_CHECK(ferry__http_name_ok(name));
        FUZZ_CHECK(ferry__http_value_ok(value));
        if (value.len > 0) FUZZ_CHECK(!is_ws(value.ptr[0]) && !is_ws(value.ptr[value.len - 1]));
        cl += ferry__view_ieq(name, "content-length");
        te += ferry__view_ieq(name, "transfer-encoding");
        if (ferry__view_ieq(name, "host")) FUZZ_CHECK(m->host_index == (int)i);
    }
    FUZZ_CHECK(cl <= 1 && !(cl && te));
    FUZZ_CHECK((m->body == FERRY__BODY_LENGTH) == (cl == 1));
    FUZZ_CHECK((m->body == FERRY__BODY_CHUNKED) == (te > 0));
    /* The head ends with the empty line. */
    FUZZ_CHECK(n >= 4 && memcmp(buf + n - 4, "\r\n\r\n", 4) == 0);
}

/* An accepted head, written back canonically, parses to the same message. */
static void check_round_trip(const ferry__http_msg *m, const ferry__http_limits *l) {
    static ferry_http_header hdrs[CAP];
    ferry__http_msg m2 = {.headers = hdrs};
    ferry__http_limits big = *l;
    big.max_head = (size_t)1 << 20; /* ": " may add a byte per field */
    char *out = malloc(m->method.len + m->target.len + 16 + 4 * m->nheaders + (size_t)l->max_head);
    FUZZ_CHECK(out != NULL);
    size_t n = put(out, 0, m->method);
    n = put_str(out, n, " ");
    n = put(out, n, m->target);
    n = put_str(out, n, m->version_minor ? " HTTP/1.1\r\n" : " HTTP/1.0\r\n");
    n = put_fields(out, n, m);
    ferry__http_error err;
    int r = ferry__http_parse_request(out, n, &big, &m2, &err);
    FUZZ_CHECK(r == (int)n);
    FUZZ_CHECK(view_same(m->method, m2.method) && view_same(m->target, m2.target) &&
               m->target_form == m2.target_form);
    check_same_fields(m, &m2);
    free(out);
}

/* Parse buf[0..len) from a copy of exactly that size. */
static int parse_copy(const uint8_t *data, size_t len, const ferry__http_limits *l,
                      ferry__http_msg *m, ferry__http_error *err) {
    char *copy = malloc(len ? len : 1);
    FUZZ_CHECK(copy != NULL);
    if (len) memcpy(copy, data, len);
    int r = ferry__http_parse_request(copy, len, l, m, err);
    free(copy);
    return r;
}

static int run(const uint8_t *data, size_t size, const ferry__http_limits *l,
               ferry__http_error *err_out) {
    static ferry_http_header hdrs[CAP], hdrs2[CAP];
    ferry__http_msg m = {.headers = hdrs}, m2 = {.headers = hdrs2};
    const char *buf = (const char *)data;
    ferry__http_error err = FERRY__HTTP_E_COUNT, err2 = FERRY__HTTP_E_COUNT;
    int r = ferry__http_parse_request(buf, size, l, &m, &err);
    FUZZ_CHECK(r >= -1 && (r < 0 || (size_t)r <= size));
    if (r == -1)
        FUZZ_CHECK(err > FERRY__HTTP_E_NONE && err < FERRY__HTTP_E_COUNT);
    else
        FUZZ_CHECK(err == FERRY__HTTP_E_NONE);
    if (r > 0) {
        check_accepted(buf, r, &m, l);
        check_line_ends(buf, (size_t)r);
        check_round_trip(&m, l);
        /* The head alone gives the same; one byte less is not yet a head. */
        FUZZ_CHECK(parse_copy(data, (size_t)r, l, &m2, &err2) == r);
        FUZZ_CHECK(m2.nheaders == m.nheaders && m2.body == m.body && m2.flags == m.flags);
        FUZZ_CHECK(parse_copy(data, (size_t)r - 1, l, &m2, &err2) == 0);
    } else if (size > 0) {
        /* A prefix needs more or fails the same way; it never succeeds. */
        int r2 = parse_copy(data, size / 2, l, &m2, &err2);
        FUZZ_CHECK(r2 == 0 || (r == -1 && r2 == -1 && err2 == err));
        r2 = parse_copy(data, size - 1, l, &m2, &err2);
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
    ferry__http_error e1, e2;
    int r1 = run(data, size, &def, &e1);
    int r2 = run(data, size, &tiny, &e2);
    /* Tighter limits only add refusals. */
    if (r2 > 0) FUZZ_CHECK(r1 == r2);
    if (r1 == -1) FUZZ_CHECK(r2 == -1);
    if (r1 == -1 && e2 != e1)
        FUZZ_CHECK(e2 == FERRY__HTTP_E_LINE_TOO_LONG || e2 == FERRY__HTTP_E_HEAD_TOO_LARGE ||
                   e2 == FERRY__HTTP_E_TOO_MANY_HEADERS);
    return 0;
}
