/* Unit tests for lib/rewrite.c: Location/Refresh/Set-Cookie rewriting, identity headers
 * and the streaming body substitution. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rewrite.h"
#include "testutil.h"

static ferry_view V(const char *s) { return (ferry_view){s, strlen(s)}; }

static const ferry__rewrite_backend backends[] = {
    {{"10.0.0.5", 8}, 8080},
    {{"app.internal", 12}, 80},
    {{"[2001:db8::5]", 13}, 8080}, /* brackets tolerated in the configuration */
    {{"::1", 3}, 80},
};

/* https://www.example.com in front of the backends, no path or cookie mapping. */
static ferry__rewrite_map base_map(void) {
    return (ferry__rewrite_map){
        .backends = backends,
        .n_backends = sizeof backends / sizeof backends[0],
        .public_scheme = V("https"),
        .public_authority = V("www.example.com"),
    };
}

typedef ferry__rewrite_status (*rewrite_fn)(const ferry__rewrite_map *, ferry_view, char *, size_t,
                                            size_t *);

/* The rewritten value, "=" when unchanged, "!malformed" or "!too long". */
static const char *apply(rewrite_fn f, const ferry__rewrite_map *m, const char *in) {
    static char result[512];
    size_t n = 12345;
    switch (f(m, V(in), result, sizeof result - 1, &n)) {
    case FERRY__REWRITE_DONE:
        result[n] = '\0';
        return result;
    case FERRY__REWRITE_UNCHANGED:
        ck_assert_uint_eq(n, 0);
        return "=";
    case FERRY__REWRITE_MALFORMED:
        ck_assert_uint_eq(n, 0);
        return "!malformed";
    default:
        return "!too long";
    }
}

#define LOC(m, in, want) ck_assert_str_eq(apply(ferry__rewrite_location, m, in), want)
#define REFRESH(m, in, want) ck_assert_str_eq(apply(ferry__rewrite_refresh, m, in), want)
#define COOKIE(m, in, want) ck_assert_str_eq(apply(ferry__rewrite_set_cookie, m, in), want)

START_TEST(location_ports_and_hosts) {
    ferry__rewrite_map m = base_map();
    LOC(&m, "http://10.0.0.5:8080/a?b=c#f", "https://www.example.com/a?b=c#f");
    LOC(&m, "http://10.0.0.5/a", "=");      /* port 80: not that backend */
    LOC(&m, "http://10.0.0.5:8081/a", "="); /* another port */
    /* Port 80 implicit, explicit or empty. */
    LOC(&m, "http://app.internal/x", "https://www.example.com/x");
    LOC(&m, "http://app.internal:80/x", "https://www.example.com/x");
    LOC(&m, "http://app.internal:/x", "https://www.example.com/x");
    LOC(&m, "http://app.internal:8080/x", "=");
    LOC(&m, "HTTP://App.INTERNAL/x", "https://www.example.com/x"); /* scheme and host case */
    /* IPv6, configured with or without brackets. */
    LOC(&m, "http://[2001:db8::5]:8080/v6", "https://www.example.com/v6");
    LOC(&m, "http://[2001:DB8::5]:8080", "https://www.example.com");
    LOC(&m, "http://[2001:db8::5]/", "=");
    LOC(&m, "http://[::1]/", "https://www.example.com/");
    LOC(&m, "http://[::1]:80?q", "https://www.example.com?q");
    /* Query and fragment without a path. */
    LOC(&m, "http://app.internal?q=1#top", "https://www.example.com?q=1#top");
    LOC(&m, "http://app.internal#top", "https://www.example.com#top");
    /* Network-path reference: the public scheme applies. */
    LOC(&m, "//app.internal/x?y", "//www.example.com/x?y");
}
END_TEST

START_TEST(location_left_alone) {
    ferry__rewrite_map m = base_map();
    const char *same[] = {
        "http://example.org/",         /* foreign host */
        "http://app.internal.evil/",   /* suffix is not the host */
        "http://user@app.internal/",   /* userinfo: not a URL we would have written */
        "https://10.0.0.5:8080/a",     /* backends speak http */
        "ftp://app.internal/",         "mailto:ops@app.internal",
        "http:app.internal/x",         /* no "//": not a network location */
        "/abs/path",                   /* no path mapping configured */
        "rel/x",                       "../up",
        "?q",                          "#f",
        "app.internal:80/x",           /* a scheme "app.internal" as far as URIs go */
    };
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) LOC(&m, same[i], "=");
    const char *bad[] = {"", "http://[::1/x", "http://app.internal:8o/", "http://app.internal:99999/",
                         "http://[::1]x/", "//[::1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) LOC(&m, bad[i], "!malformed");
}
END_TEST

START_TEST(location_public_base) {
    ferry__rewrite_map m = base_map();
    m.public_scheme = V("http");
    m.public_authority = V("Example.COM:8443"); /* verbatim, as the client sent it */
    LOC(&m, "http://10.0.0.5:8080/", "http://Example.COM:8443/");
    m.public_authority = V("[2001:db8::1]:8000");
    LOC(&m, "http://app.internal/a", "http://[2001:db8::1]:8000/a");
}
END_TEST

START_TEST(location_prefix_strip) {
    ferry__rewrite_map m = base_map();
    m.backend_prefix = V("/app/");
    m.public_prefix = V("/");
    LOC(&m, "http://app.internal/app/x?q#f", "https://www.example.com/x?q#f");
    LOC(&m, "http://app.internal/app", "https://www.example.com/");
    LOC(&m, "http://app.internal/app/", "https://www.example.com/");
    LOC(&m, "http://app.internal/app?q", "https://www.example.com/?q");
    LOC(&m, "http://app.internal/apple", "="); /* whole segments only */
    LOC(&m, "http://app.internal/other", "="); /* outside the route */
    LOC(&m, "http://app.internal", "=");
    LOC(&m, "http://app.internal/APP/x", "="); /* paths are case-sensitive */
    LOC(&m, "/app/x", "/x");
    LOC(&m, "/app", "/");
    LOC(&m, "/app?x=/app/", "/?x=/app/");
    LOC(&m, "/app#f", "/#f");
    LOC(&m, "/apple", "=");
    LOC(&m, "/other/app/x", "=");
    LOC(&m, "x/y", "=");
    LOC(&m, "../app/x", "=");
    LOC(&m, "http://example.org/app/x", "=");
    /* The same prefix on both sides is no mapping. */
    m.backend_prefix = V("/app");
    m.public_prefix = V("/app/");
    LOC(&m, "/app/x", "=");
    LOC(&m, "http://app.internal/other", "https://www.example.com/other");
}
END_TEST

START_TEST(location_prefix_add) {
    ferry__rewrite_map m = base_map();
    m.backend_prefix = V("/");
    m.public_prefix = V("/api/");
    LOC(&m, "http://app.internal/x", "https://www.example.com/api/x");
    LOC(&m, "http://app.internal/", "https://www.example.com/api/");
    LOC(&m, "http://app.internal", "https://www.example.com/api/");
    LOC(&m, "http://app.internal?q", "https://www.example.com/api/?q");
    LOC(&m, "/x", "/api/x");
    LOC(&m, "/", "/api/");
    LOC(&m, "?q", "=");
    /* Both prefixes non-root. */
    m.backend_prefix = V("/app");
    m.public_prefix = V("/pub/");
    LOC(&m, "/app/a/b", "/pub/a/b");
    LOC(&m, "/app", "/pub");
    LOC(&m, "http://10.0.0.5:8080/app/", "https://www.example.com/pub/");
}
END_TEST

START_TEST(location_buffer_too_small) {
    ferry__rewrite_map m = base_map();
    const char *in = "http://10.0.0.5:8080/abc", *want = "https://www.example.com/abc";
    char out[64];
    size_t n;
    ck_assert_int_eq(ferry__rewrite_location(&m, V(in), out, 10, &n), FERRY__REWRITE_TOO_LONG);
    ck_assert_uint_eq(n, strlen(want));
    ck_assert_int_eq(ferry__rewrite_location(&m, V(in), NULL, 0, &n), FERRY__REWRITE_TOO_LONG);
    ck_assert_uint_eq(n, strlen(want));
    ck_assert_int_eq(ferry__rewrite_location(&m, V(in), out, strlen(want) - 1, &n),
                     FERRY__REWRITE_TOO_LONG);
    ck_assert_int_eq(ferry__rewrite_location(&m, V(in), out, strlen(want), &n), FERRY__REWRITE_DONE);
    ck_assert_uint_eq(n, strlen(want));
    ck_assert(memcmp(out, want, n) == 0);
    /* Unchanged needs no room at all. */
    ck_assert_int_eq(ferry__rewrite_location(&m, V("/x"), NULL, 0, &n), FERRY__REWRITE_UNCHANGED);
}
END_TEST

START_TEST(refresh_variants) {
    ferry__rewrite_map m = base_map();
    REFRESH(&m, "5; url=http://10.0.0.5:8080/x", "5; url=https://www.example.com/x");
    REFRESH(&m, "5;URL=http://10.0.0.5:8080/x", "5;URL=https://www.example.com/x");
    REFRESH(&m, "0 ; Url = 'http://10.0.0.5:8080/x?a#b'", "0 ; Url = 'https://www.example.com/x?a#b'");
    REFRESH(&m, "3;url=\"http://app.internal/\"", "3;url=\"https://www.example.com/\"");
    REFRESH(&m, "3, http://app.internal/y", "3, https://www.example.com/y"); /* no "url=" */
    REFRESH(&m, "1.5 http://app.internal/y", "1.5 https://www.example.com/y");
    REFRESH(&m, "5; url='http://app.internal/z", "5; url='https://www.example.com/z"); /* unclosed */
    REFRESH(&m, "5", "=");
    REFRESH(&m, "5;", "=");
    REFRESH(&m, "5; url=http://example.org/", "=");
    REFRESH(&m, "5; url=/rel", "=");
    REFRESH(&m, "5; url", "=");     /* "url" without '=' is a relative URL */
    REFRESH(&m, "5; urlx/y", "=");
    REFRESH(&m, "x; url=http://app.internal/", "!malformed");
    REFRESH(&m, "5x; url=http://app.internal/", "!malformed");
    REFRESH(&m, "", "!malformed");
    REFRESH(&m, "5; url=http://[::1", "!malformed");
    m.backend_prefix = V("/app/");
    m.public_prefix = V("/");
    REFRESH(&m, "2; url=/app/next", "2; url=/next");
    REFRESH(&m, "2; url='http://10.0.0.5:8080/app'", "2; url='https://www.example.com/'");
    char out[8];
    size_t n;
    ck_assert_int_eq(ferry__rewrite_refresh(&m, V("2; url=/app/next"), out, sizeof out, &n),
                     FERRY__REWRITE_TOO_LONG);
    ck_assert_uint_eq(n, strlen("2; url=/next"));
}
END_TEST

/* Backend cookies for backend.internal under /app, public example.com at the root. */
static ferry__rewrite_map cookie_map(void) {
    ferry__rewrite_map m = base_map();
    m.cookie_domain = V("backend.internal");
    m.public_domain = V("example.com");
    m.backend_prefix = V("/app");
    m.public_prefix = V("/");
    return m;
}

START_TEST(cookie_domain) {
    ferry__rewrite_map m = cookie_map();
    COOKIE(&m, "a=b; Domain=backend.internal; Path=/app/x; HttpOnly",
           "a=b; Domain=example.com; Path=/x; HttpOnly");
    COOKIE(&m, "a=b; domain=.Backend.Internal", "a=b; domain=.example.com"); /* dot kept */
    COOKIE(&m, "a=b; DOMAIN=\"backend.internal\"; Secure", "a=b; DOMAIN=\"example.com\"; Secure");
    COOKIE(&m, "a=b; Domain=other.com", "=");
    COOKIE(&m, "a=b; Domain=sub.backend.internal", "="); /* exact match only */
    COOKIE(&m, "a=b; Domain=", "=");
    COOKIE(&m, "a=b; Domains=backend.internal", "=");
    COOKIE(&m, "domain=backend.internal", "="); /* the cookie's name, not an attribute */
    m.cookie_domain = V(".backend.internal");     /* a configured dot is ignored too */
    m.public_domain = V(".example.com");
    COOKIE(&m, "a=b; Domain=backend.internal", "a=b; Domain=example.com");
    /* Mapped to empty: the attribute goes, with its separator. */
    m.public_domain = V("");
    COOKIE(&m, "a=b; Domain=backend.internal; Path=/", "a=b; Path=/");
    COOKIE(&m, "a=b;Domain=.backend.internal;Secure", "a=b;Secure");
    COOKIE(&m, "a=b; Domain=backend.internal", "a=b");
    COOKIE(&m, "a=b; Domain=backend.internal; domain=BACKEND.internal; Max-Age=5", "a=b; Max-Age=5");
    /* No domain configured: Domain untouched. */
    m.cookie_domain = V("");
    COOKIE(&m, "a=b; Domain=backend.internal", "=");
}
END_TEST

START_TEST(cookie_path) {
    ferry__rewrite_map m = cookie_map();
    COOKIE(&m, "a=b; Path=/app", "a=b; Path=/"); /* never an empty Path */
    COOKIE(&m, "a=b; Path=/app/", "a=b; Path=/");
    COOKIE(&m, "a=b; Path=/app/x/y; Secure", "a=b; Path=/x/y; Secure");
    COOKIE(&m, "a=b; PATH=\"/app/x\"", "a=b; PATH=\"/x\"");
    COOKIE(&m, "a=b;  path = /app/x ; Secure", "a=b;  path = /x ; Secure"); /* spacing kept */
    COOKIE(&m, "a=b; Path=/apple", "=");
    COOKIE(&m, "a=b; Path=/", "=");
    COOKIE(&m, "a=b; Path=app", "=");
    COOKIE(&m, "a=b; Secure; HttpOnly", "="); /* no Path: the browser's default is public */
    COOKIE(&m, "a=b", "=");
    COOKIE(&m, "path=/app; Secure", "=");
    /* Several: all rewritten, everything else in order. */
    COOKIE(&m, "sid=x=y; Path=/app/1; SameSite=Lax; path=/app/2; Domain=.backend.internal; "
               "Domain=backend.internal; Expires=Wed, 21 Oct 2026 07:28:00 GMT",
           "sid=x=y; Path=/1; SameSite=Lax; path=/2; Domain=.example.com; "
           "Domain=example.com; Expires=Wed, 21 Oct 2026 07:28:00 GMT");
    /* The other way: backend at the root, public under /api. */
    m.backend_prefix = V("/");
    m.public_prefix = V("/api");
    COOKIE(&m, "a=b; Path=/", "a=b; Path=/api/");
    COOKIE(&m, "a=b; Path=/x", "a=b; Path=/api/x");
    char out[16];
    size_t n;
    ck_assert_int_eq(ferry__rewrite_set_cookie(&m, V("a=b; Path=/x; Secure"), out, sizeof out, &n),
                     FERRY__REWRITE_TOO_LONG);
    ck_assert_uint_eq(n, strlen("a=b; Path=/api/x; Secure"));
}
END_TEST

START_TEST(identity_headers) {
    const char *yes[] = {"Server", "server", "X-Powered-By", "x-aspnet-version",
                         "X-AspNetMvc-Version", "X-RUNTIME", "X-Version"};
    const char *no[] = {"Server-Timing", "Serve", "X-Powered", "Content-Type", "Via", ""};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
        ck_assert_msg(ferry__rewrite_is_identity_header(V(yes[i])), "%s", yes[i]);
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        ck_assert_msg(!ferry__rewrite_is_identity_header(V(no[i])), "%s", no[i]);
}
END_TEST

/* ---- Substitution ---- */

typedef struct sink {
    char buf[8192];
    size_t len;
} sink;

static int to_sink(void *ud, const char *p, size_t n) {
    sink *k = ud;
    ck_assert_uint_le(k->len + n, sizeof k->buf);
    memcpy(k->buf + k->len, p, n);
    k->len += n;
    return 0;
}

/* Substitute `in` fed as pieces ending at cuts[] (ascending), then the rest, and flush. */
static void sub_pieces(ferry__sub *s, const char *in, size_t len, const size_t *cuts, size_t n_cuts,
                       sink *k) {
    size_t at = 0;
    k->len = 0;
    for (size_t i = 0; i <= n_cuts; i++) {
        size_t end = i < n_cuts ? cuts[i] : len;
        ck_assert_int_eq(ferry__sub_feed(s, (ferry_view){in + at, end - at}, to_sink, k), 0);
        ck_assert_uint_lt(s->held_len, FERRY__SUB_PATTERN_MAX);
        at = end;
    }
    ck_assert_int_eq(ferry__sub_flush(s, to_sink, k), 0);
    ck_assert_uint_eq(s->held_len, 0);
}

static void expect_output(const sink *k, const char *want, size_t want_len, const char *how) {
    ck_assert_msg(k->len == want_len && memcmp(k->buf, want, want_len) == 0,
                  "%s: got \"%.*s\", want \"%.*s\"", how, (int)k->len, k->buf, (int)want_len, want);
}

/* The same output whole, split at every one and every two points, and byte by byte. */
static void check_sub_n(const ferry__sub_rule *rules, size_t n_rules, int icase, const char *in,
                        const char *want) {
    ferry__sub s;
    sink k;
    size_t len = strlen(in), wl = strlen(want), cuts[2];
    ck_assert_int_eq(ferry__sub_init(&s, rules, n_rules, icase), 0);
    sub_pieces(&s, in, len, NULL, 0, &k);
    expect_output(&k, want, wl, "whole");
    for (size_t i = 0; i <= len; i++) {
        cuts[0] = i;
        sub_pieces(&s, in, len, cuts, 1, &k);
        expect_output(&k, want, wl, "one split");
        for (size_t j = i; j <= len; j++) {
            cuts[1] = j;
            sub_pieces(&s, in, len, cuts, 2, &k);
            expect_output(&k, want, wl, "two splits");
        }
    }
    k.len = 0;
    for (size_t i = 0; i < len; i++)
        ck_assert_int_eq(ferry__sub_feed(&s, (ferry_view){in + i, 1}, to_sink, &k), 0);
    ck_assert_int_eq(ferry__sub_flush(&s, to_sink, &k), 0);
    expect_output(&k, want, wl, "bytewise");
}

static void check_sub(const char *pattern, const char *replacement, int icase, const char *in,
                      const char *want) {
    ferry__sub_rule rule = {V(pattern), V(replacement)};
    check_sub_n(&rule, 1, icase, in, want);
}

START_TEST(sub_single_pattern) {
    check_sub("aaa", "X", 0, "aaaa", "Xa"); /* non-overlapping, left to right */
    check_sub("aa", "b", 0, "aaaaa", "bba");
    check_sub("abab", "X", 0, "abababab", "XX");
    check_sub("abab", "X", 0, "abaabab", "abaX");
    check_sub("foo", "bar", 0, "foo middle foo", "bar middle bar"); /* start and end */
    check_sub("foo", "bar", 0, "foo", "bar");
    check_sub("a", "[long]", 0, "banana", "b[long]n[long]n[long]");
    check_sub("hello", "hi", 0, "hello, hello!", "hi, hi!");
    check_sub("x", "", 0, "xaxbx", "ab");
    check_sub("abc", "X", 0, "xxab", "xxab"); /* a held prefix comes out at the flush */
    check_sub("abc", "X", 0, "ababcab", "abXab");
    check_sub("abc", "X", 0, "", "");
    check_sub("http://10.0.0.5:8080/", "https://www.example.com/", 0,
              "<a href=\"http://10.0.0.5:8080/x\">http://10.0.0.5:8080/</a>",
              "<a href=\"https://www.example.com/x\">https://www.example.com/</a>");
}
END_TEST

START_TEST(sub_case_insensitive) {
    check_sub("Hello", "Bye", 1, "hello HELLO hElLo help", "Bye Bye Bye help");
    check_sub("Hello", "Bye", 0, "hello HELLO Hello", "hello HELLO Bye");
    check_sub("\xc3\xa9", "e", 1, "\xc3\xa9\xc3\x89", "e\xc3\x89"); /* ASCII only */
}
END_TEST

START_TEST(sub_several_patterns) {
    ferry__sub_rule rules[] = {{V("abcd"), V("1")}, {V("ab"), V("2")}, {V("c"), V("3")}};
    /* The first listed rule that matches at a position wins, even when it needs more bytes. */
    check_sub_n(rules, 3, 0, "abce abcd ab c", "23e 1 2 3");
    check_sub_n(rules, 3, 0, "abc", "23");
    /* Leftmost first, whatever the order. */
    ferry__sub_rule later[] = {{V("b"), V("B")}, {V("abc"), V("X")}};
    check_sub_n(later, 2, 0, "abc b", "X B");
}
END_TEST

START_TEST(sub_longest_pattern) {
    char pattern[FERRY__SUB_PATTERN_MAX + 2], in[1024], want[1024];
    memset(pattern, 'p', FERRY__SUB_PATTERN_MAX);
    pattern[FERRY__SUB_PATTERN_MAX - 1] = 'q';
    pattern[FERRY__SUB_PATTERN_MAX] = '\0';
    /* A near miss, then a hit, then a prefix at the end. */
    snprintf(in, sizeof in, "%.255sx%sy%.200s", pattern, pattern, pattern);
    snprintf(want, sizeof want, "%.255sxRy%.200s", pattern, pattern);
    ferry__sub_rule rule = {V(pattern), V("R")};
    ferry__sub s;
    sink k;
    ck_assert_int_eq(ferry__sub_init(&s, &rule, 1, 0), 0);
    size_t len = strlen(in);
    for (size_t i = 0; i <= len; i += 7) {
        size_t cut = i;
        sub_pieces(&s, in, len, &cut, 1, &k);
        expect_output(&k, want, strlen(want), "split");
    }
    k.len = 0;
    for (size_t i = 0; i < len; i++) {
        ck_assert_int_eq(ferry__sub_feed(&s, (ferry_view){in + i, 1}, to_sink, &k), 0);
        ck_assert_uint_lt(s.held_len, FERRY__SUB_PATTERN_MAX);
    }
    ck_assert_int_eq(ferry__sub_flush(&s, to_sink, &k), 0);
    expect_output(&k, want, strlen(want), "bytewise");
    /* Too long a pattern, an empty one, no rule. */
    pattern[FERRY__SUB_PATTERN_MAX] = 'p';
    pattern[FERRY__SUB_PATTERN_MAX + 1] = '\0';
    ferry__sub_rule bad[] = {{V(pattern), V("")}, {V(""), V("x")}};
    ck_assert_int_eq(ferry__sub_init(&s, &bad[0], 1, 0), -1);
    ck_assert_int_eq(ferry__sub_init(&s, &bad[1], 1, 0), -1);
    ck_assert_int_eq(ferry__sub_init(&s, &rule, 0, 0), -1);
}
END_TEST

static int refuse(void *ud, const char *p, size_t n) {
    (void)p;
    (void)n;
    return *(int *)ud;
}

START_TEST(sub_callback_abort_and_reuse) {
    ferry__sub_rule rule = {V("abc"), V("X")};
    ferry__sub s;
    int code = 7;
    ck_assert_int_eq(ferry__sub_init(&s, &rule, 1, 0), 0);
    ck_assert_int_eq(ferry__sub_feed(&s, V("zzabc"), refuse, &code), 7);
    ck_assert_int_eq(ferry__sub_init(&s, &rule, 1, 0), 0);
    ck_assert_int_eq(ferry__sub_feed(&s, V("ab"), refuse, &code), 0); /* held: nothing to say */
    ck_assert_int_eq(ferry__sub_flush(&s, refuse, &code), 7);
    /* After a flush the state starts a new body. */
    sink k = {.len = 0};
    ck_assert_int_eq(ferry__sub_init(&s, &rule, 1, 0), 0);
    ck_assert_int_eq(ferry__sub_feed(&s, V("xab"), to_sink, &k), 0);
    ck_assert_int_eq(ferry__sub_flush(&s, to_sink, &k), 0);
    ck_assert_int_eq(ferry__sub_feed(&s, V("cabc"), to_sink, &k), 0);
    ck_assert_int_eq(ferry__sub_flush(&s, to_sink, &k), 0);
    expect_output(&k, "xabcX", 5, "reuse");
}
END_TEST

/* The definition, on a whole string: at each position the first rule that matches. */
static size_t naive_sub(const ferry__sub_rule *rules, size_t n, int icase, const char *in,
                        size_t len, char *out) {
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        const ferry__sub_rule *hit = NULL;
        for (size_t r = 0; r < n && !hit; r++) {
            size_t pl = rules[r].pattern.len;
            if (pl > len - i) continue;
            hit = &rules[r];
            for (size_t k = 0; k < pl && hit; k++) {
                int a = in[i + k], b = rules[r].pattern.ptr[k];
                if (icase && a >= 'A' && a <= 'Z') a += 32;
                if (icase && b >= 'A' && b <= 'Z') b += 32;
                if (a != b) hit = NULL;
            }
        }
        if (hit) {
            memcpy(out + o, hit->replacement.ptr, hit->replacement.len);
            o += hit->replacement.len;
            i += hit->pattern.len;
        } else {
            out[o++] = in[i++];
        }
    }
    return o;
}

START_TEST(sub_random_against_definition) {
    static const char alphabet[] = "abAB";
    static const char *repl[] = {"", "Z", "zzz"};
    unsigned seed = 12345;
    for (int round = 0; round < 3000; round++) {
        char pats[3][5], in[64], want[256];
        ferry__sub_rule rules[3];
        size_t n_rules = 1 + (size_t)rand_r(&seed) % 3;
        for (size_t r = 0; r < n_rules; r++) {
            size_t pl = 1 + (size_t)rand_r(&seed) % 4;
            for (size_t k = 0; k < pl; k++) pats[r][k] = alphabet[rand_r(&seed) % 4];
            rules[r] = (ferry__sub_rule){{pats[r], pl}, V(repl[rand_r(&seed) % 3])};
        }
        size_t len = (size_t)rand_r(&seed) % sizeof in;
        for (size_t i = 0; i < len; i++) in[i] = alphabet[rand_r(&seed) % 4];
        int icase = rand_r(&seed) % 2;
        size_t wl = naive_sub(rules, n_rules, icase, in, len, want);
        ferry__sub s;
        sink k;
        size_t cuts[4];
        for (size_t c = 0; c < 4; c++) cuts[c] = len ? (size_t)rand_r(&seed) % (len + 1) : 0;
        for (size_t a = 0; a < 4; a++) /* ascending */
            for (size_t b = a + 1; b < 4; b++)
                if (cuts[b] < cuts[a]) {
                    size_t t = cuts[a];
                    cuts[a] = cuts[b];
                    cuts[b] = t;
                }
        ck_assert_int_eq(ferry__sub_init(&s, rules, n_rules, icase), 0);
        sub_pieces(&s, in, len, cuts, 4, &k);
        expect_output(&k, want, wl, "random");
    }
}
END_TEST

int main(void) {
    Suite *s = suite_create("rewrite");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, location_ports_and_hosts);
    tcase_add_test(tc, location_left_alone);
    tcase_add_test(tc, location_public_base);
    tcase_add_test(tc, location_prefix_strip);
    tcase_add_test(tc, location_prefix_add);
    tcase_add_test(tc, location_buffer_too_small);
    tcase_add_test(tc, refresh_variants);
    tcase_add_test(tc, cookie_domain);
    tcase_add_test(tc, cookie_path);
    tcase_add_test(tc, identity_headers);
    tcase_add_test(tc, sub_single_pattern);
    tcase_add_test(tc, sub_case_insensitive);
    tcase_add_test(tc, sub_several_patterns);
    tcase_add_test(tc, sub_longest_pattern);
    tcase_add_test(tc, sub_callback_abort_and_reuse);
    tcase_add_test(tc, sub_random_against_definition);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
