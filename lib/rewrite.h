/* Reverse-proxy response rewriting: Location / Content-Location / Refresh URLs pointing
 * at a backend, Set-Cookie Domain and Path, backend-identity headers, and a streaming
 * substitution for bodies. Pure functions over views: no I/O, no allocation; results go
 * into caller buffers or a caller callback. */
#ifndef FERRY__REWRITE_H
#define FERRY__REWRITE_H

#include <stddef.h>
#include <stdint.h>

#include "ferry/view.h"

/* A backend as the pool knows it; its URLs are http. host is a name or an IP literal
 * (IPv6 with or without brackets), compared ASCII case-insensitively. */
typedef struct ferry__rewrite_backend {
    ferry_view host;
    uint16_t port;
} ferry__rewrite_backend;

/* What one route maps. Prefixes compare case-sensitively on whole path segments, trailing
 * slashes ignored: backend "/app/" maps "/app", "/app/x", "/app?q" but not "/apple". Equal
 * prefixes (both empty or "/" included) mean no path mapping. */
typedef struct ferry__rewrite_map {
    const ferry__rewrite_backend *backends;
    size_t n_backends;
    ferry_view public_scheme;    /* "http", or "https" behind a TLS terminator */
    ferry_view public_authority; /* the Host the client sent, host[:port], used verbatim */
    ferry_view backend_prefix;   /* e.g. "/app/" */
    ferry_view public_prefix;    /* e.g. "/" */
    ferry_view cookie_domain;    /* backend cookie domain to rewrite; empty: leave Domain */
    ferry_view public_domain;    /* its replacement; empty: drop the Domain attribute */
} ferry__rewrite_map;

typedef enum ferry__rewrite_status {
    FERRY__REWRITE_UNCHANGED = 0, /* send the value as it is */
    FERRY__REWRITE_DONE = 1,      /* *out_len bytes of out replace it */
    FERRY__REWRITE_TOO_LONG = 2,  /* out is too small; *out_len is the size needed */
    FERRY__REWRITE_MALFORMED = 3  /* unparsable: send it as it is (or drop it) */
} ferry__rewrite_status;

/* Location or Content-Location. An http URL (or "//authority" reference) whose host and
 * port (80 when absent or empty) match a backend becomes public_scheme://public_authority
 * + the mapped path, query and fragment kept; when a path mapping is set, a URL outside
 * backend_prefix stays as it is. "/abs" paths get the mapping only; relative references,
 * other schemes and other hosts are unchanged. Malformed: empty, or a bad authority
 * (unclosed "[", non-numeric or out-of-range port) on an http URL. *out_len is 0 unless
 * DONE or TOO_LONG; out may be NULL with out_size 0 to measure. */
ferry__rewrite_status ferry__rewrite_location(const ferry__rewrite_map *m, ferry_view value,
                                              char *out, size_t out_size, size_t *out_len);

/* Refresh: "<delay>[; ][url=]['"]<url>['"]" (HTML's declarative refresh syntax, "url"
 * case-insensitive, the separator and "url=" optional). Only the URL is rewritten as by
 * ferry__rewrite_location; the rest is copied byte for byte. Malformed when the value
 * does not start with a delay. */
ferry__rewrite_status ferry__rewrite_refresh(const ferry__rewrite_map *m, ferry_view value,
                                             char *out, size_t out_size, size_t *out_len);

/* Set-Cookie: every Domain attribute equal to cookie_domain (case-insensitive, a leading
 * dot on either side ignored; the cookie's own dot is kept) becomes public_domain, or is
 * removed with its "; " when public_domain is empty. Every Path attribute under
 * backend_prefix is mapped (never to an empty path: "/"). Attribute names are
 * case-insensitive, quoted values keep their quotes, and every other byte (the
 * name=value pair, other attributes, their order and spelling) is copied as is. */
ferry__rewrite_status ferry__rewrite_set_cookie(const ferry__rewrite_map *m, ferry_view value,
                                                char *out, size_t out_size, size_t *out_len);

/* Whether a response header only names the backend's software, to drop on request:
 * Server, plus the version headers webhint's no-disallowed-headers rule flags
 * (X-Powered-By, X-AspNet-Version, X-AspNetMvc-Version, X-Runtime, X-Version). */
int ferry__rewrite_is_identity_header(ferry_view name);

/* ---- Streaming body substitution ---- */

enum { FERRY__SUB_PATTERN_MAX = 256 };

typedef struct ferry__sub_rule {
    ferry_view pattern;     /* 1..FERRY__SUB_PATTERN_MAX bytes */
    ferry_view replacement; /* any length, may be empty */
} ferry__sub_rule;

/* Receives output bytes in order; non-zero aborts the feed or flush, which returns it
 * (the state must then be initialized again). */
typedef int (*ferry__sub_out_fn)(void *ud, const char *p, size_t n);

/* Replaces every non-overlapping occurrence, scanning left to right: at each position the
 * first listed rule that matches wins, and scanning resumes after the match ("aaa" in
 * "aaaa" matches once). The result does not depend on how the body is split: a position
 * that could still start a match is held back (under FERRY__SUB_PATTERN_MAX bytes) until
 * the next piece or the flush decides it.
 * Output growth: each match turns len(pattern) bytes into len(replacement), so the whole
 * output is at most input * max(1, len(replacement) / len(pattern)); one feed may also
 * emit bytes held from the previous one. Matching is plain comparison: at worst
 * input * (sum of pattern lengths) byte compares. */
typedef struct ferry__sub {
    const ferry__sub_rule *rules; /* the caller's, alive as long as the state */
    size_t n_rules;
    int icase; /* ASCII case-insensitive patterns */
    size_t held_len;
    char held[FERRY__SUB_PATTERN_MAX - 1];
} ferry__sub;

/* 0, or -1 when there is no rule or a pattern is empty or too long. */
int ferry__sub_init(ferry__sub *s, const ferry__sub_rule *rules, size_t n_rules, int icase);
/* Process one piece of the body; 0 or the callback's non-zero. */
int ferry__sub_feed(ferry__sub *s, ferry_view in, ferry__sub_out_fn out, void *ud);
/* End of body: emit what was held (substituted where it still matches); the state is then
 * ready for another body. 0 or the callback's non-zero. */
int ferry__sub_flush(ferry__sub *s, ferry__sub_out_fn out, void *ud);

#endif
