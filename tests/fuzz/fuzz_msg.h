/* Checks shared by the request and response fuzz targets: line ends of accepted heads,
 * writing parsed fields back out, and comparing two parses. */
#ifndef FERRY_FUZZ_MSG_H
#define FERRY_FUZZ_MSG_H

#include <string.h>

#include "fuzz.h"
#include "http1.h"

/* Ground truth independent of the parser: an accepted head has CRLF line ends only and no
 * NUL. */
static void check_line_ends(const char *buf, size_t n) {
    for (size_t i = 0; i < n; i++) {
        FUZZ_CHECK(buf[i] != '\0');
        if (buf[i] == '\r') FUZZ_CHECK(i + 1 < n && buf[i + 1] == '\n');
        if (buf[i] == '\n') FUZZ_CHECK(i > 0 && buf[i - 1] == '\r');
    }
}

static size_t put(char *out, size_t at, ferry_view v) {
    memcpy(out + at, v.ptr, v.len);
    return at + v.len;
}

static size_t put_str(char *out, size_t at, const char *s) {
    ferry_view v = {s, strlen(s)};
    return put(out, at, v);
}

/* Header fields written back in canonical form ("name: value"), then the empty line. */
static size_t put_fields(char *out, size_t at, const ferry__http_msg *m) {
    for (unsigned i = 0; i < m->nheaders; i++) {
        at = put(out, at, m->headers[i].name);
        at = put_str(out, at, ": ");
        at = put(out, at, m->headers[i].value);
        at = put_str(out, at, "\r\n");
    }
    return put_str(out, at, "\r\n");
}

static int view_same(ferry_view a, ferry_view b) {
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

static void check_same_fields(const ferry__http_msg *a, const ferry__http_msg *b) {
    FUZZ_CHECK(a->version_minor == b->version_minor && a->body == b->body &&
               a->flags == b->flags && a->host_index == b->host_index &&
               a->nheaders == b->nheaders);
    if (a->body == FERRY__BODY_LENGTH) FUZZ_CHECK(a->content_length == b->content_length);
    for (unsigned i = 0; i < a->nheaders; i++)
        FUZZ_CHECK(view_same(a->headers[i].name, b->headers[i].name) &&
                   view_same(a->headers[i].value, b->headers[i].value));
}

#endif
