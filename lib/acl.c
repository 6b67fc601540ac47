/* The forward policy's rule engine: rule text parsing and first-match evaluation, and the
 * address, host-pattern and port primitives the policy also uses for its defaults. */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <strings.h>
#include <time.h>

#include "acl.h"
#include "internal.h"

/* A borrowed piece of rule text. */
typedef struct span {
    const char *p;
    size_t n;
} span;

static char lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c + 32) : c; }

static int span_ieq(span s, const char *lit) {
    size_t n = strlen(lit);
    if (s.n != n) return 0;
    for (size_t i = 0; i < n; i++)
        if (lower(s.p[i]) != lit[i]) return 0;
    return 1;
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

static span trim(span s) {
    while (s.n && is_space(s.p[0])) s.p++, s.n--;
    while (s.n && is_space(s.p[s.n - 1])) s.n--;
    return s;
}

/* Comma-separated lists: items are trimmed; the caller rejects empty ones. */
static unsigned count_items(span s) {
    unsigned n = 1;
    for (size_t i = 0; i < s.n; i++) n += s.p[i] == ',';
    return n;
}

static int next_item(span *rest, span *item) {
    if (!rest->p) return 0;
    const char *comma = memchr(rest->p, ',', rest->n);
    size_t len = comma ? (size_t)(comma - rest->p) : rest->n;
    *item = trim((span){rest->p, len});
    if (comma)
        *rest = (span){comma + 1, rest->n - len - 1};
    else
        rest->p = NULL;
    return 1;
}

/* ---- addresses ---- */

static void unmap(ferry__ip *ip) {
    static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (ip->v6 && memcmp(ip->addr, prefix, 12) == 0) {
        memmove(ip->addr, ip->addr + 12, 4);
        memset(ip->addr + 4, 0, 12);
        ip->v6 = 0;
    }
}

void ferry__ip_from_bytes(int family, const unsigned char *bytes, ferry__ip *out) {
    memset(out, 0, sizeof *out);
    out->v6 = family == AF_INET6;
    memcpy(out->addr, bytes, out->v6 ? 16 : 4);
    unmap(out);
}

int ferry__ip_from_sockaddr(const struct sockaddr *sa, ferry__ip *out) {
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        ferry__ip_from_bytes(AF_INET, (const unsigned char *)&in->sin_addr, out);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        ferry__ip_from_bytes(AF_INET6, in6->sin6_addr.s6_addr, out);
        return 0;
    }
    return -1;
}

/* inet_pton on a bounded copy of text[0..len). */
static int parse_literal(const char *text, size_t len, ferry__ip *out) {
    char buf[INET6_ADDRSTRLEN];
    unsigned char bytes[16];
    if (len >= sizeof buf) return -1;
    memcpy(buf, text, len);
    buf[len] = '\0';
    if (inet_pton(AF_INET, buf, bytes) == 1)
        ferry__ip_from_bytes(AF_INET, bytes, out);
    else if (inet_pton(AF_INET6, buf, bytes) == 1)
        ferry__ip_from_bytes(AF_INET6, bytes, out);
    else
        return -1;
    return 0;
}

int ferry__ip_parse(const char *text, ferry__ip *out) {
    size_t len = strlen(text);
    if (len >= 2 && text[0] == '[' && text[len - 1] == ']') {
        ferry__ip ip;
        if (parse_literal(text + 1, len - 2, &ip) != 0 || (!ip.v6 && !memchr(text, ':', len)))
            return -1; /* brackets hold IPv6 only */
        *out = ip;
        return 0;
    }
    return parse_literal(text, len, out);
}

static int prefix_equal(const uint8_t *a, const uint8_t *b, unsigned bits) {
    unsigned whole = bits / 8, rest = bits % 8;
    if (memcmp(a, b, whole) != 0) return 0;
    if (!rest) return 1;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[whole] & mask) == (b[whole] & mask);
}

int ferry__cidr_parse(const char *text, size_t len, ferry__cidr *out) {
    const char *slash = memchr(text, '/', len);
    size_t addr_len = slash ? (size_t)(slash - text) : len;
    ferry__cidr c;
    memset(&c, 0, sizeof c);
    char buf[INET6_ADDRSTRLEN];
    unsigned char bytes[16];
    if (addr_len == 0 || addr_len >= sizeof buf) return -1;
    memcpy(buf, text, addr_len);
    buf[addr_len] = '\0';
    if (inet_pton(AF_INET, buf, bytes) == 1) {
        memcpy(c.net.addr, bytes, 4);
    } else if (inet_pton(AF_INET6, buf, bytes) == 1) {
        c.net.v6 = 1;
        memcpy(c.net.addr, bytes, 16);
    } else {
        return -1;
    }
    unsigned max = c.net.v6 ? 128 : 32, bits = max;
    if (slash) {
        const char *d = slash + 1, *end = text + len;
        if (d == end || end - d > 3) return -1;
        bits = 0;
        for (; d < end; d++) {
            if (*d < '0' || *d > '9') return -1;
            bits = bits * 10 + (unsigned)(*d - '0');
        }
        if (bits > max) return -1;
    }
    /* ::ffff:a.b.c.d/N, N >= 96, is an IPv4 range: addresses are compared unmapped. */
    ferry__ip probe = c.net;
    unmap(&probe);
    if (!probe.v6 && bits >= 96) {
        c.net = probe;
        bits -= 96;
    }
    c.bits = (uint8_t)bits;
    for (unsigned i = 0; i < 16; i++) {
        unsigned keep = bits > i * 8 ? bits - i * 8 : 0;
        if (keep < 8) c.net.addr[i] &= (uint8_t)(0xff00u >> keep);
    }
    *out = c;
    return 0;
}

int ferry__cidr_contains(const ferry__cidr *c, const ferry__ip *ip) {
    return c->net.v6 == ip->v6 && prefix_equal(c->net.addr, ip->addr, c->bits);
}

int ferry__cidr_within(const ferry__cidr *inner, const ferry__cidr *outer) {
    return inner->bits >= outer->bits && ferry__cidr_contains(outer, &inner->net);
}

/* ---- host patterns ---- */

enum { PATTERN_EXACT, PATTERN_SUFFIX, PATTERN_GLOB };

/* The host as compared: without enclosing brackets or one trailing dot. */
static span host_key(const char *host) {
    span s = {host, strlen(host)};
    if (s.n >= 2 && s.p[0] == '[' && s.p[s.n - 1] == ']') s = (span){s.p + 1, s.n - 2};
    if (s.n && s.p[s.n - 1] == '.') s.n--;
    return s;
}

ferry_err ferry__host_pattern_parse(const ferry_allocator *a, const char *text, size_t len,
                                    ferry__host_pattern *out) {
    span s = {text, len};
    if (s.n >= 2 && s.p[0] == '[' && s.p[s.n - 1] == ']') s = (span){s.p + 1, s.n - 2};
    if (s.n > 1 && s.p[s.n - 1] == '.') s.n--;
    uint8_t kind = PATTERN_EXACT;
    for (size_t i = 0; i < s.n; i++) {
        char c = lower(s.p[i]);
        if (c == '*' || c == '?')
            kind = PATTERN_GLOB;
        else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
                   c == '_' || c == ':'))
            return FERRY_ECONFIG;
    }
    if (kind == PATTERN_EXACT && s.n && s.p[0] == '.') {
        kind = PATTERN_SUFFIX;
        s.p++, s.n--;
    }
    if (!s.n || (kind != PATTERN_GLOB && s.p[0] == '.')) return FERRY_ECONFIG;
    char *t = ferry__malloc(a, s.n + 1);
    if (!t) return FERRY_ENOMEM;
    for (size_t i = 0; i < s.n; i++) t[i] = lower(s.p[i]);
    t[s.n] = '\0';
    out->kind = kind;
    out->text = t;
    return FERRY_OK;
}

static int glob_match(const char *pat, span h) {
    size_t p = 0, i = 0, pl = strlen(pat), star = SIZE_MAX, mark = 0;
    while (i < h.n) {
        if (p < pl && (pat[p] == '?' || pat[p] == lower(h.p[i]))) {
            p++, i++;
        } else if (p < pl && pat[p] == '*') {
            star = p++;
            mark = i;
        } else if (star != SIZE_MAX) {
            p = star + 1;
            i = ++mark;
        } else {
            return 0;
        }
    }
    while (p < pl && pat[p] == '*') p++;
    return p == pl;
}

static int tail_ieq(span h, size_t from, const char *lit, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (lower(h.p[from + i]) != lit[i]) return 0;
    return 1;
}

int ferry__host_pattern_match(const ferry__host_pattern *p, const char *host) {
    span h = host_key(host);
    size_t n = strlen(p->text);
    switch (p->kind) {
    case PATTERN_EXACT: return h.n == n && tail_ieq(h, 0, p->text, n);
    case PATTERN_SUFFIX:
        if (h.n == n) return tail_ieq(h, 0, p->text, n);
        return h.n > n && h.p[h.n - n - 1] == '.' && tail_ieq(h, h.n - n, p->text, n);
    default: return glob_match(p->text, h);
    }
}

/* ---- ports ---- */

static int parse_port(span s, unsigned *out) {
    unsigned v = 0;
    if (!s.n || s.n > 5) return -1;
    for (size_t i = 0; i < s.n; i++) {
        if (s.p[i] < '0' || s.p[i] > '9') return -1;
        v = v * 10 + (unsigned)(s.p[i] - '0');
    }
    if (v < 1 || v > 65535) return -1;
    *out = v;
    return 0;
}

static void copy_bad(char *bad, size_t bad_size, span s) {
    if (bad && bad_size) snprintf(bad, bad_size, "%.*s", (int)s.n, s.p);
}

ferry_err ferry__ports_parse(const ferry_allocator *a, const char *text, size_t len,
                             ferry__port_range **out, unsigned *count, char *bad,
                             size_t bad_size) {
    span rest = trim((span){text, len}), item;
    unsigned n = count_items(rest), k = 0;
    ferry__port_range *r = ferry__malloc(a, n * sizeof *r);
    if (!r) return FERRY_ENOMEM;
    while (next_item(&rest, &item)) {
        const char *dash = memchr(item.p, '-', item.n);
        unsigned lo, hi;
        span first = {item.p, dash ? (size_t)(dash - item.p) : item.n};
        if (parse_port(trim(first), &lo) != 0 ||
            (dash && parse_port(trim((span){dash + 1, item.n - first.n - 1}), &hi) != 0) ||
            (dash && hi < lo)) {
            copy_bad(bad, bad_size, item.n ? item : trim((span){text, len}));
            ferry__free(a, r);
            return FERRY_ECONFIG;
        }
        r[k++] = (ferry__port_range){(uint16_t)lo, (uint16_t)(dash ? hi : lo)};
    }
    *out = r;
    *count = k;
    return FERRY_OK;
}

int ferry__ports_contain(const ferry__port_range *r, unsigned count, uint16_t port) {
    for (unsigned i = 0; i < count; i++)
        if (port >= r[i].lo && port <= r[i].hi) return 1;
    return 0;
}

/* ---- rule parsing ---- */

ferry_err ferry__config_error(char *err, size_t err_size, const char *fmt, ...) {
    if (err && err_size) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_size, fmt, ap);
        va_end(ap);
    }
    return FERRY_ECONFIG;
}

static span next_token(const char **pos) {
    const char *p = *pos;
    while (*p && is_space(*p)) p++;
    const char *start = p;
    while (*p && !is_space(*p)) p++;
    *pos = p;
    return (span){start, (size_t)(p - start)};
}

/* A condition's value: one token, joined with the next ones while a comma links them, so
 * that "host a.com, b.com" reads as one list. */
static span next_value(const char **pos) {
    span v = next_token(pos);
    while (v.n) {
        const char *save = *pos;
        span t = next_token(pos);
        if (t.n && (v.p[v.n - 1] == ',' || t.p[0] == ',')) {
            v.n = (size_t)(t.p + t.n - v.p);
            continue;
        }
        *pos = save;
        break;
    }
    return v;
}

static const char *const day_names[7] = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"};

static int day_index(span s) {
    for (int i = 0; i < 7; i++)
        if (span_ieq(s, day_names[i])) return i;
    return -1;
}

static int parse_days(span v, uint8_t *mask) {
    if (v.n == 1 && v.p[0] == '*') {
        *mask = 0x7f;
        return 0;
    }
    span rest = v, item;
    uint8_t m = 0;
    while (next_item(&rest, &item)) {
        const char *dash = memchr(item.p, '-', item.n);
        span a = trim((span){item.p, dash ? (size_t)(dash - item.p) : item.n});
        int from = day_index(a), to = from;
        if (dash) to = day_index(trim((span){dash + 1, item.n - (size_t)(dash - item.p) - 1}));
        if (from < 0 || to < 0) return -1;
        for (int d = from;; d = (d + 1) % 7) { /* fri-mon wraps over the weekend */
            m = (uint8_t)(m | (1u << d));
            if (d == to) break;
        }
    }
    *mask = m;
    return 0;
}

/* "H:MM" or "HH:MM"; 24:00 only as an end. */
static int parse_hhmm(span s, int is_end, unsigned *minutes) {
    const char *colon = memchr(s.p, ':', s.n);
    if (!colon) return -1;
    size_t hn = (size_t)(colon - s.p);
    if (hn < 1 || hn > 2 || s.n - hn - 1 != 2) return -1;
    unsigned h = 0, m = 0;
    for (size_t i = 0; i < s.n; i++) {
        if (i == hn) continue;
        if (s.p[i] < '0' || s.p[i] > '9') return -1;
        if (i < hn)
            h = h * 10 + (unsigned)(s.p[i] - '0');
        else
            m = m * 10 + (unsigned)(s.p[i] - '0');
    }
    if (m > 59 || h > 24 || (h == 24 && (m != 0 || !is_end))) return -1;
    *minutes = h * 60 + m;
    return 0;
}

static int parse_window(span v, ferry__rule *r) {
    const char *dash = memchr(v.p, '-', v.n);
    if (!dash) return -1;
    size_t an = (size_t)(dash - v.p);
    unsigned from, to;
    if (parse_hhmm((span){v.p, an}, 0, &from) != 0 ||
        parse_hhmm((span){dash + 1, v.n - an - 1}, 1, &to) != 0 || from == to)
        return -1;
    r->from_min = (uint16_t)from;
    r->to_min = (uint16_t)to;
    return 0;
}

static void free_strings(const ferry_allocator *a, char **v, unsigned n) {
    for (unsigned i = 0; v && i < n; i++) ferry__free(a, v[i]);
    ferry__free(a, v);
}

static void rule_free(const ferry_allocator *a, ferry__rule *r) {
    ferry__free(a, r->clients);
    ferry__free(a, r->dests);
    free_strings(a, r->users, r->nusers);
    free_strings(a, r->methods, r->nmethods);
    for (unsigned i = 0; r->hosts && i < r->nhosts; i++) ferry__free(a, r->hosts[i].text);
    ferry__free(a, r->hosts);
    ferry__free(a, r->ports);
    ferry__free(a, r->reason);
}

/* Everything a parse step needs to report. */
typedef struct parse_ctx {
    const ferry_allocator *a;
    char *err;
    size_t err_size;
} parse_ctx;

static ferry_err parse_cidrs(parse_ctx *c, span v, ferry__cidr **out, unsigned *count) {
    span rest = v, item;
    ferry__cidr *list = ferry__malloc(c->a, count_items(v) * sizeof *list);
    if (!list) return FERRY_ENOMEM;
    *out = list;
    while (next_item(&rest, &item))
        if (ferry__cidr_parse(item.p, item.n, &list[(*count)++]) != 0)
            return ferry__config_error(c->err, c->err_size, "bad CIDR '%.*s'", (int)item.n, item.p);
    return FERRY_OK;
}

/* users (with "-" standing for nobody) and methods */
static ferry_err parse_names(parse_ctx *c, span v, int dash_is_nobody, char ***out,
                             unsigned *count) {
    span rest = v, item;
    char **list = ferry__calloc(c->a, count_items(v) * sizeof *list);
    if (!list) return FERRY_ENOMEM;
    *out = list;
    while (next_item(&rest, &item)) {
        if (!item.n) return ferry__config_error(c->err, c->err_size, "empty name in '%.*s'", (int)v.n, v.p);
        if (dash_is_nobody && item.n == 1 && item.p[0] == '-') item.n = 0;
        char *s = ferry__malloc(c->a, item.n + 1);
        if (!s) return FERRY_ENOMEM;
        memcpy(s, item.p, item.n);
        s[item.n] = '\0';
        list[(*count)++] = s;
    }
    return FERRY_OK;
}

static ferry_err parse_hosts(parse_ctx *c, span v, ferry__rule *r) {
    span rest = v, item;
    r->hosts = ferry__calloc(c->a, count_items(v) * sizeof *r->hosts);
    if (!r->hosts) return FERRY_ENOMEM;
    while (next_item(&rest, &item)) {
        ferry_err e = ferry__host_pattern_parse(c->a, item.p, item.n, &r->hosts[r->nhosts]);
        if (e == FERRY_ECONFIG)
            return ferry__config_error(c->err, c->err_size, "bad host pattern '%.*s'", (int)item.n, item.p);
        if (e) return e;
        r->nhosts++;
    }
    return FERRY_OK;
}

static ferry_err parse_protos(parse_ctx *c, span v, unsigned *protos) {
    span rest = v, item;
    while (next_item(&rest, &item)) {
        if (span_ieq(item, "http"))
            *protos |= 1u << FERRY_PROXY_HTTP;
        else if (span_ieq(item, "connect"))
            *protos |= 1u << FERRY_PROXY_CONNECT;
        else if (span_ieq(item, "socks"))
            *protos |= 1u << FERRY_PROXY_SOCKS4 | 1u << FERRY_PROXY_SOCKS5 |
                       1u << FERRY_PROXY_SOCKS5_UDP;
        else
            return ferry__config_error(c->err, c->err_size, "bad proto '%.*s' (expected http, connect or socks)",
                        (int)item.n, item.p);
    }
    return FERRY_OK;
}

static const struct {
    const char *name;
    unsigned bit;
} conditions[] = {
    {"client", FERRY__COND_CLIENT}, {"user", FERRY__COND_USER},     {"host", FERRY__COND_HOST},
    {"dest", FERRY__COND_DEST},     {"port", FERRY__COND_PORT},     {"method", FERRY__COND_METHOD},
    {"proto", FERRY__COND_PROTO},   {"time", FERRY__COND_TIME},
};

/* One condition: keyword kw (known, bit) and what follows it at *pos. */
static ferry_err parse_condition(parse_ctx *c, ferry__rule *r, span kw, unsigned bit,
                                 const char **pos) {
    span v = next_value(pos);
    if (!v.n) return ferry__config_error(c->err, c->err_size, "missing value for '%.*s'", (int)kw.n, kw.p);
    switch (bit) {
    case FERRY__COND_CLIENT: return parse_cidrs(c, v, &r->clients, &r->nclients);
    case FERRY__COND_DEST: return parse_cidrs(c, v, &r->dests, &r->ndests);
    case FERRY__COND_USER: return parse_names(c, v, 1, &r->users, &r->nusers);
    case FERRY__COND_METHOD: return parse_names(c, v, 0, &r->methods, &r->nmethods);
    case FERRY__COND_HOST: return parse_hosts(c, v, r);
    case FERRY__COND_PROTO: return parse_protos(c, v, &r->protos);
    case FERRY__COND_PORT: {
        char bad[64];
        ferry_err e = ferry__ports_parse(c->a, v.p, v.n, &r->ports, &r->nports, bad, sizeof bad);
        return e == FERRY_ECONFIG ? ferry__config_error(c->err, c->err_size, "bad port '%s'", bad) : e;
    }
    default: { /* time DAYS HH:MM-HH:MM [utc] */
        if (parse_days(v, &r->days) != 0)
            return ferry__config_error(c->err, c->err_size, "bad days '%.*s' (expected e.g. mon-fri, sat,sun or *)",
                        (int)v.n, v.p);
        span w = next_token(pos);
        if (!w.n) return ferry__config_error(c->err, c->err_size, "missing time window after '%.*s'", (int)v.n, v.p);
        if (parse_window(w, r) != 0)
            return ferry__config_error(c->err, c->err_size, "bad time window '%.*s' (expected HH:MM-HH:MM)",
                        (int)w.n, w.p);
        const char *save = *pos;
        if (span_ieq(next_token(pos), "utc"))
            r->utc = 1;
        else
            *pos = save;
        return FERRY_OK;
    }
    }
}

/* "rule N (the text, blanks collapsed)" */
static char *make_reason(const ferry_allocator *a, unsigned number, const char *text) {
    char head[32];
    int hn = snprintf(head, sizeof head, "rule %u (", number);
    size_t len = (size_t)hn + 2;
    const char *pos = text;
    for (span t = next_token(&pos); t.n; t = next_token(&pos)) len += t.n + 1;
    char *s = ferry__malloc(a, len);
    if (!s) return NULL;
    memcpy(s, head, (size_t)hn);
    size_t k = (size_t)hn;
    pos = text;
    for (span t = next_token(&pos); t.n; t = next_token(&pos)) {
        if (k > (size_t)hn) s[k++] = ' ';
        memcpy(s + k, t.p, t.n);
        k += t.n;
    }
    s[k++] = ')';
    s[k] = '\0';
    return s;
}

static ferry_err parse_rule(parse_ctx *c, const char *text, ferry__rule *r) {
    const char *pos = text;
    span t = next_token(&pos);
    if (!t.n) return ferry__config_error(c->err, c->err_size, "empty rule");
    if (span_ieq(t, "allow"))
        r->allow = 1;
    else if (!span_ieq(t, "deny"))
        return ferry__config_error(c->err, c->err_size, "rule must start with 'allow' or 'deny', not '%.*s'",
                    (int)t.n, t.p);
    int all = 0;
    for (span kw = next_token(&pos); kw.n; kw = next_token(&pos)) {
        if (span_ieq(kw, "all") || all) {
            if (r->conds || all)
                return ferry__config_error(c->err, c->err_size, "'all' cannot be combined with conditions");
            all = 1;
            continue;
        }
        unsigned bit = 0;
        for (size_t i = 0; i < FERRY__ARRAY_LEN(conditions); i++)
            if (span_ieq(kw, conditions[i].name)) bit = conditions[i].bit;
        if (!bit) return ferry__config_error(c->err, c->err_size, "unknown condition '%.*s'", (int)kw.n, kw.p);
        if (r->conds & bit)
            return ferry__config_error(c->err, c->err_size, "duplicate condition '%.*s'", (int)kw.n, kw.p);
        r->conds |= bit;
        ferry_err e = parse_condition(c, r, kw, bit, &pos);
        if (e) return e;
    }
    return FERRY_OK;
}

ferry_err ferry__acl_add(ferry__acl *acl, const ferry_allocator *a, const char *text, char *err,
                         size_t err_size) {
    parse_ctx c = {a, err, err_size};
    ferry__rule r;
    memset(&r, 0, sizeof r);
    ferry_err e = parse_rule(&c, text, &r);
    if (!e && acl->count >= 0xffffu) e = ferry__config_error(err, err_size, "too many rules");
    if (!e && !(r.reason = make_reason(a, acl->count + 1, text))) e = FERRY_ENOMEM;
    ferry__rule *rules = e ? NULL : ferry__realloc(a, acl->rules, (acl->count + 1) * sizeof *rules);
    if (!e && !rules) e = FERRY_ENOMEM;
    if (e) {
        if (e == FERRY_ENOMEM) ferry__config_error(err, err_size, "out of memory");
        rule_free(a, &r);
        return e;
    }
    rules[acl->count++] = r;
    acl->rules = rules;
    return FERRY_OK;
}

void ferry__acl_free(ferry__acl *acl, const ferry_allocator *a) {
    for (unsigned i = 0; i < acl->count; i++) rule_free(a, &acl->rules[i]);
    ferry__free(a, acl->rules);
    acl->rules = NULL;
    acl->count = 0;
}

/* ---- evaluation ---- */

/* The broken-down time, computed at most once per evaluation and time base. */
typedef struct time_cache {
    int have_now;
    int64_t now;
    int state[2]; /* 0 not yet, 1 ok, -1 failed; [0] local, [1] utc */
    struct tm tm[2];
} time_cache;

static const struct tm *time_of(const ferry__acl_query *q, time_cache *tc, int utc) {
    if (!tc->have_now) {
        tc->now = q->clock ? q->clock(q->clock_data) : (int64_t)time(NULL);
        tc->have_now = 1;
    }
    if (!tc->state[utc]) {
        time_t t = (time_t)tc->now;
        /* localtime_r reads the zone set up by tzset() in ferry_forward_new, no files */
        int ok = utc ? gmtime_r(&t, &tc->tm[utc]) != NULL : localtime_r(&t, &tc->tm[utc]) != NULL;
        tc->state[utc] = ok ? 1 : -1;
    }
    return tc->state[utc] > 0 ? &tc->tm[utc] : NULL;
}

/* The day is the current day, also inside a window that began the day before. */
static int time_matches(const ferry__rule *r, const ferry__acl_query *q, time_cache *tc) {
    const struct tm *tm = time_of(q, tc, r->utc);
    if (!tm) return 0;
    unsigned day = (unsigned)(tm->tm_wday + 6) % 7, m = (unsigned)(tm->tm_hour * 60 + tm->tm_min);
    if (!(r->days & (1u << day))) return 0;
    return r->from_min < r->to_min ? m >= r->from_min && m < r->to_min
                                   : m >= r->from_min || m < r->to_min;
}

static int names_contain(char *const *names, unsigned n, const char *s, int nocase) {
    for (unsigned i = 0; i < n; i++)
        if (nocase ? strcasecmp(names[i], s) == 0 : strcmp(names[i], s) == 0) return 1;
    return 0;
}

static int cidrs_contain(const ferry__cidr *c, unsigned n, const ferry__ip *ip) {
    for (unsigned i = 0; i < n; i++)
        if (ferry__cidr_contains(&c[i], ip)) return 1;
    return 0;
}

static const char *or_empty(const char *s) { return s ? s : ""; }

/* 1 match, 0 no match, -1 undecided (a dest condition on a name not resolved yet). */
static int rule_matches(const ferry__rule *r, const ferry__acl_query *q, const ferry__ip *client,
                        time_cache *tc) {
    const ferry_session_info *s = q->session;
    unsigned c = r->conds;
    if ((c & FERRY__COND_PROTO) &&
        (s->proxy_protocol < 0 || s->proxy_protocol > 30 ||
         !(r->protos & (1u << s->proxy_protocol))))
        return 0;
    if ((c & FERRY__COND_PORT) && !ferry__ports_contain(r->ports, r->nports, s->dest_port)) return 0;
    if ((c & FERRY__COND_CLIENT) && !cidrs_contain(r->clients, r->nclients, client)) return 0;
    if ((c & FERRY__COND_USER) && !names_contain(r->users, r->nusers, or_empty(s->user), 0))
        return 0;
    if ((c & FERRY__COND_METHOD) && !names_contain(r->methods, r->nmethods, or_empty(s->method), 1))
        return 0;
    if (c & FERRY__COND_HOST) {
        unsigned i = 0;
        while (i < r->nhosts && !ferry__host_pattern_match(&r->hosts[i], or_empty(s->dest_host)))
            i++;
        if (i == r->nhosts) return 0;
    }
    if ((c & FERRY__COND_TIME) && !time_matches(r, q, tc)) return 0;
    if (c & FERRY__COND_DEST) {
        if (q->dest_mode == FERRY__DEST_PENDING) return -1;
        if (q->dest_mode == FERRY__DEST_NAME || !cidrs_contain(r->dests, r->ndests, &q->dest))
            return 0;
    }
    return 1;
}

ferry__verdict ferry__acl_eval(const ferry__acl *acl, const ferry__acl_query *q,
                               const ferry__rule **rule) {
    ferry__ip client;
    ferry__ip_from_bytes(q->session->client_family, q->session->client_ip, &client);
    time_cache tc;
    memset(&tc, 0, sizeof tc);
    for (unsigned i = 0; i < acl->count; i++) {
        const ferry__rule *r = &acl->rules[i];
        int m = rule_matches(r, q, &client, &tc);
        if (!m) continue;
        *rule = r;
        if (m < 0) return FERRY__UNDECIDED;
        return r->allow ? FERRY__ALLOW : FERRY__DENY;
    }
    *rule = NULL;
    return FERRY__NO_MATCH;
}
