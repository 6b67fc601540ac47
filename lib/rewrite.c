#include "rewrite.h"

#include <string.h>

static int lower(int ch) { return ch >= 'A' && ch <= 'Z' ? ch + 32 : ch; }

static int ieq(ferry_view a, ferry_view b) {
    if (a.len != b.len) return 0;
    for (size_t i = 0; i < a.len; i++)
        if (lower((unsigned char)a.ptr[i]) != lower((unsigned char)b.ptr[i])) return 0;
    return 1;
}

static int ieq_str(ferry_view a, const char *s) { return ieq(a, (ferry_view){s, strlen(s)}); }

static ferry_view slice(ferry_view v, size_t from, size_t to) {
    return (ferry_view){v.ptr + from, to - from};
}

static int is_ws(char ch) { return ch == ' ' || ch == '\t'; }

/* Output that keeps counting past its end, so TOO_LONG can say the size needed. */
typedef struct out_buf {
    char *p;
    size_t cap, len;
} out_buf;

static void put(out_buf *o, const char *p, size_t n) {
    if (n && o->len <= o->cap && n <= o->cap - o->len) memcpy(o->p + o->len, p, n);
    o->len += n;
}

static void put_view(out_buf *o, ferry_view v) { put(o, v.ptr, v.len); }

static ferry__rewrite_status finish(const out_buf *o, size_t *out_len) {
    *out_len = o->len;
    return o->len <= o->cap ? FERRY__REWRITE_DONE : FERRY__REWRITE_TOO_LONG;
}

/* ---- Path prefix mapping ---- */

static ferry_view trim_slashes(ferry_view v) {
    while (v.len && v.ptr[v.len - 1] == '/') v.len--;
    return v;
}

static int mapping_on(const ferry__rewrite_map *m) {
    ferry_view from = trim_slashes(m->backend_prefix), to = trim_slashes(m->public_prefix);
    return from.len != to.len || (from.len && memcmp(from.ptr, to.ptr, from.len) != 0);
}

/* Whether path is backend_prefix itself or below it: whole segments, so "/app" does not
 * take "/apple". */
static int under_prefix(const ferry__rewrite_map *m, ferry_view path) {
    ferry_view from = trim_slashes(m->backend_prefix);
    if (path.len < from.len || (from.len && memcmp(path.ptr, from.ptr, from.len) != 0)) return 0;
    return path.len == from.len || path.ptr[from.len] == '/';
}

/* The public form of a path that is under_prefix; never empty. */
static void put_mapped(const ferry__rewrite_map *m, ferry_view path, out_buf *o) {
    ferry_view to = trim_slashes(m->public_prefix);
    size_t skip = trim_slashes(m->backend_prefix).len;
    put_view(o, to);
    if (path.len > skip) put(o, path.ptr + skip, path.len - skip);
    else if (!to.len) put(o, "/", 1);
}

/* ---- URLs ---- */

/* Length of the RFC 3986 scheme before a ':', or 0 when the reference has none. */
static size_t scheme_len(ferry_view v) {
    for (size_t i = 0; i < v.len; i++) {
        int ch = lower((unsigned char)v.ptr[i]);
        if (ch == ':') return i;
        int alpha = ch >= 'a' && ch <= 'z';
        int more = (ch >= '0' && ch <= '9') || ch == '+' || ch == '-' || ch == '.';
        if (!alpha && (i == 0 || !more)) return 0;
    }
    return 0;
}

static size_t span_until(ferry_view v, size_t i, const char *stops) {
    while (i < v.len && !strchr(stops, v.ptr[i])) i++;
    return i;
}

/* host[:port] -> host (without brackets) and port (80 when absent or empty); -1 when it
 * cannot be an authority. */
static int split_authority(ferry_view a, ferry_view *host, unsigned *port) {
    const char *end = a.ptr + a.len, *p;
    if (a.len && a.ptr[0] == '[') {
        const char *close = memchr(a.ptr, ']', a.len);
        if (!close) return -1;
        *host = (ferry_view){a.ptr + 1, (size_t)(close - a.ptr - 1)};
        p = close + 1;
    } else {
        p = a.len ? memchr(a.ptr, ':', a.len) : NULL;
        if (!p) p = end;
        *host = (ferry_view){a.ptr, (size_t)(p - a.ptr)};
    }
    *port = 80;
    if (p == end) return 0;
    if (*p++ != ':') return -1;
    if (p == end) return 0;
    unsigned v = 0;
    for (; p < end; p++) {
        if (*p < '0' || *p > '9' || v > 65535) return -1;
        v = v * 10 + (unsigned)(*p - '0');
    }
    if (v > 65535) return -1;
    *port = v;
    return 0;
}

/* 1 when the authority names a backend, 0 when not, -1 when malformed. */
static int is_backend(const ferry__rewrite_map *m, ferry_view authority) {
    if (memchr(authority.ptr, '@', authority.len)) return 0; /* userinfo: not a backend link */
    ferry_view host;
    unsigned port;
    if (split_authority(authority, &host, &port) < 0) return -1;
    for (size_t i = 0; i < m->n_backends; i++) {
        ferry_view h = m->backends[i].host;
        if (h.len >= 2 && h.ptr[0] == '[' && h.ptr[h.len - 1] == ']') h = slice(h, 1, h.len - 1);
        if (port == m->backends[i].port && ieq(h, host)) return 1;
    }
    return 0;
}

/* Appends the rewritten url to o and returns DONE, or returns another status having
 * appended nothing. */
static ferry__rewrite_status rewrite_url(const ferry__rewrite_map *m, ferry_view url, out_buf *o) {
    if (!url.len) return FERRY__REWRITE_MALFORMED;
    size_t at, slen = scheme_len(url);
    if (slen) {
        if (!ieq_str(slice(url, 0, slen), "http") || url.len < 7 || memcmp(url.ptr + 5, "//", 2))
            return FERRY__REWRITE_UNCHANGED;
        at = 7;
    } else if (url.len >= 2 && url.ptr[0] == '/' && url.ptr[1] == '/') {
        at = 2; /* network-path reference: the client resolves it with the public scheme */
    } else if (url.ptr[0] == '/') {
        ferry_view path = slice(url, 0, span_until(url, 0, "?#"));
        if (!mapping_on(m) || !under_prefix(m, path)) return FERRY__REWRITE_UNCHANGED;
        put_mapped(m, path, o);
        put_view(o, slice(url, path.len, url.len));
        return FERRY__REWRITE_DONE;
    } else {
        return FERRY__REWRITE_UNCHANGED; /* relative: resolves against the public URL */
    }
    size_t aend = span_until(url, at, "/?#"), pend = span_until(url, aend, "?#");
    int backend = is_backend(m, slice(url, at, aend));
    if (backend <= 0) return backend < 0 ? FERRY__REWRITE_MALFORMED : FERRY__REWRITE_UNCHANGED;
    ferry_view path = slice(url, aend, pend);
    int mapped = mapping_on(m);
    if (mapped && !path.len) path = (ferry_view){"/", 1}; /* an empty path means "/" */
    /* Outside the mapped prefix the public side has no route for it (as ProxyPassReverse). */
    if (mapped && !under_prefix(m, path)) return FERRY__REWRITE_UNCHANGED;
    if (slen) {
        put_view(o, m->public_scheme);
        put(o, ":", 1);
    }
    put(o, "//", 2);
    put_view(o, m->public_authority);
    if (mapped) put_mapped(m, path, o);
    else put_view(o, path);
    put_view(o, slice(url, pend, url.len));
    return FERRY__REWRITE_DONE;
}

ferry__rewrite_status ferry__rewrite_location(const ferry__rewrite_map *m, ferry_view value,
                                              char *out, size_t out_size, size_t *out_len) {
    out_buf o = {out, out_size, 0};
    *out_len = 0;
    ferry__rewrite_status st = rewrite_url(m, value, &o);
    return st == FERRY__REWRITE_DONE ? finish(&o, out_len) : st;
}

ferry__rewrite_status ferry__rewrite_refresh(const ferry__rewrite_map *m, ferry_view value,
                                             char *out, size_t out_size, size_t *out_len) {
    *out_len = 0;
    size_t i = 0, n = value.len;
    while (i < n && is_ws(value.ptr[i])) i++;
    size_t delay = i;
    while (i < n && ((value.ptr[i] >= '0' && value.ptr[i] <= '9') || value.ptr[i] == '.')) i++;
    if (i == delay || (i < n && !is_ws(value.ptr[i]) && value.ptr[i] != ';' && value.ptr[i] != ','))
        return FERRY__REWRITE_MALFORMED;
    while (i < n && is_ws(value.ptr[i])) i++;
    if (i < n && (value.ptr[i] == ';' || value.ptr[i] == ',')) i++;
    while (i < n && is_ws(value.ptr[i])) i++;
    if (i == n) return FERRY__REWRITE_UNCHANGED; /* a plain reload */
    if (n - i >= 3 && ieq_str(slice(value, i, i + 3), "url")) {
        /* "url" is the keyword only when an '=' follows; otherwise it starts the URL. */
        size_t j = i + 3;
        while (j < n && is_ws(value.ptr[j])) j++;
        if (j < n && value.ptr[j] == '=') {
            j++;
            while (j < n && is_ws(value.ptr[j])) j++;
            i = j;
        }
    }
    size_t uend = n;
    if (i < n && (value.ptr[i] == '"' || value.ptr[i] == '\'')) {
        const char *close = memchr(value.ptr + i + 1, value.ptr[i], n - i - 1);
        i++;
        if (close) uend = (size_t)(close - value.ptr);
    }
    out_buf o = {out, out_size, 0};
    put(&o, value.ptr, i);
    ferry__rewrite_status st = rewrite_url(m, slice(value, i, uend), &o);
    if (st != FERRY__REWRITE_DONE) return st;
    put_view(&o, slice(value, uend, n));
    return finish(&o, out_len);
}

/* ---- Set-Cookie ---- */

static ferry_view undot(ferry_view v) { return v.len && v.ptr[0] == '.' ? slice(v, 1, v.len) : v; }

static ferry_view trim_ws(ferry_view v) {
    while (v.len && is_ws(v.ptr[0])) v = slice(v, 1, v.len);
    while (v.len && is_ws(v.ptr[v.len - 1])) v.len--;
    return v;
}

ferry__rewrite_status ferry__rewrite_set_cookie(const ferry__rewrite_map *m, ferry_view value,
                                                char *out, size_t out_size, size_t *out_len) {
    out_buf o = {out, out_size, 0};
    size_t copied = 0; /* value bytes before this are in o */
    int changed = 0, mapped = mapping_on(m);
    *out_len = 0;
    /* The name=value pair runs to the first ';'; attributes follow, each after a ';'. */
    for (size_t semi = span_until(value, 0, ";"); semi < value.len;) {
        size_t end = span_until(value, semi + 1, ";");
        ferry_view attr = slice(value, semi + 1, end), name = attr, val = {attr.ptr + attr.len, 0};
        const char *eq = memchr(attr.ptr, '=', attr.len);
        if (eq) {
            name = slice(attr, 0, (size_t)(eq - attr.ptr));
            val = trim_ws(slice(attr, name.len + 1, attr.len));
        }
        name = trim_ws(name);
        if (val.len >= 2 && val.ptr[0] == '"' && val.ptr[val.len - 1] == '"')
            val = slice(val, 1, val.len - 1);
        int is_domain = m->cookie_domain.len && eq && ieq_str(name, "domain") &&
                        ieq(undot(val), undot(m->cookie_domain));
        int is_path = mapped && eq && ieq_str(name, "path") && under_prefix(m, val);
        if (is_domain && !m->public_domain.len) {
            put(&o, value.ptr + copied, semi - copied); /* drop "; Domain=..." */
            copied = end;
            changed = 1;
        } else if (is_domain || is_path) {
            ferry_view replace = is_domain ? undot(val) : val; /* the cookie's own dot stays */
            put(&o, value.ptr + copied, (size_t)(replace.ptr - value.ptr) - copied);
            if (is_domain) put_view(&o, undot(m->public_domain));
            else put_mapped(m, val, &o);
            copied = (size_t)(replace.ptr + replace.len - value.ptr);
            changed = 1;
        }
        semi = end;
    }
    if (!changed) return FERRY__REWRITE_UNCHANGED;
    put_view(&o, slice(value, copied, value.len));
    return finish(&o, out_len);
}

int ferry__rewrite_is_identity_header(ferry_view name) {
    static const char *const names[] = {"server",              "x-powered-by", "x-aspnet-version",
                                        "x-aspnetmvc-version", "x-runtime",    "x-version"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (ieq_str(name, names[i])) return 1;
    return 0;
}

/* ---- Streaming substitution ---- */

int ferry__sub_init(ferry__sub *s, const ferry__sub_rule *rules, size_t n_rules, int icase) {
    if (!n_rules) return -1;
    for (size_t i = 0; i < n_rules; i++)
        if (!rules[i].pattern.len || rules[i].pattern.len > FERRY__SUB_PATTERN_MAX) return -1;
    s->rules = rules;
    s->n_rules = n_rules;
    s->icase = icase;
    s->held_len = 0;
    return 0;
}

/* Positions count over held bytes followed by the new piece. */
static char byte_at(const ferry__sub *s, ferry_view in, size_t i) {
    return i < s->held_len ? s->held[i] : in.ptr[i - s->held_len];
}

/* 1 when the rule matches at i, 0 when it cannot, -1 when the bytes so far are a proper
 * prefix of its pattern (only before the end of the body). */
static int match_at(const ferry__sub *s, const ferry__sub_rule *r, ferry_view in, size_t i,
                    int last) {
    size_t total = s->held_len + in.len;
    for (size_t k = 0; k < r->pattern.len; k++) {
        if (i + k == total) return last ? 0 : -1;
        int a = (unsigned char)byte_at(s, in, i + k), b = (unsigned char)r->pattern.ptr[k];
        if (a != b && (!s->icase || lower(a) != lower(b))) return 0;
    }
    return 1;
}

/* Emit positions [a, b) unchanged. */
static int emit(const ferry__sub *s, ferry_view in, size_t a, size_t b, ferry__sub_out_fn out,
                void *ud) {
    if (a < s->held_len) {
        size_t e = b < s->held_len ? b : s->held_len;
        int rc = e > a ? out(ud, s->held + a, e - a) : 0;
        if (rc) return rc;
        a = e;
    }
    return b > a ? out(ud, in.ptr + (a - s->held_len), b - a) : 0;
}

static int run(ferry__sub *s, ferry_view in, int last, ferry__sub_out_fn out, void *ud) {
    size_t total = s->held_len + in.len, i = 0, plain = 0; /* [plain, i) not yet emitted */
    int rc;
    while (i < total) {
        const ferry__sub_rule *hit = NULL;
        int undecided = 0;
        /* A listed-earlier rule that might still match has priority over a later full match. */
        for (size_t r = 0; r < s->n_rules && !hit && !undecided; r++) {
            int x = match_at(s, &s->rules[r], in, i, last);
            if (x > 0) hit = &s->rules[r];
            undecided = x < 0;
        }
        if (undecided) break;
        if (!hit) {
            i++;
            continue;
        }
        if ((rc = emit(s, in, plain, i, out, ud)) != 0) return rc;
        if (hit->replacement.len && (rc = out(ud, hit->replacement.ptr, hit->replacement.len)) != 0)
            return rc;
        i += hit->pattern.len;
        plain = i;
    }
    if ((rc = emit(s, in, plain, i, out, ud)) != 0) return rc;
    /* Hold [i, total): shorter than the longest pattern, so it fits. */
    size_t from_held = i < s->held_len ? s->held_len - i : 0, from_in = total - i - from_held;
    if (from_held) memmove(s->held, s->held + i, from_held);
    if (from_in) memcpy(s->held + from_held, in.ptr + (in.len - from_in), from_in);
    s->held_len = from_held + from_in;
    return 0;
}

int ferry__sub_feed(ferry__sub *s, ferry_view in, ferry__sub_out_fn out, void *ud) {
    return run(s, in, 0, out, ud);
}

int ferry__sub_flush(ferry__sub *s, ferry__sub_out_fn out, void *ud) {
    int rc = run(s, (ferry_view){NULL, 0}, 1, out, ud);
    s->held_len = 0;
    return rc;
}
