/* The built-in forward direction policy: who may use the proxy (client ranges,
 * credentials), what they may reach (the rules of acl.c plus the secure defaults), through
 * which parent proxy, and what the origin learns of the client (anonymity). */
#include <stdatomic.h>
#include <stdio.h>
#include <strings.h>
#include <time.h>

#include "acl.h"
#include "ferry/http.h"
#include "forward_int.h"
#include "internal.h"

enum { PARENT_DOWN_MS = 2000 };

typedef struct fwd_parent {
    ferry_parent p; /* what targets point at */
    char *name;     /* how routes refer to it */
    _Atomic uint64_t down_until_ms; /* monotonic ms; 0 or past: up */
} fwd_parent;

typedef struct fwd_route {
    ferry__host_pattern pattern;
    fwd_parent **hops; /* in order; NULL means direct */
    unsigned nhops;
} fwd_route;

typedef struct fwd_user {
    size_t password_len;
    char *password; /* after name, in the same block */
    char name[];
} fwd_user;

/* The refused-destination default; reasons are fixed strings so they can be handed out. */
static const struct {
    const char *cidr, *reason;
} refused_ranges[] = {
    {"127.0.0.0/8", "refused destination range: loopback"},
    {"::1/128", "refused destination range: loopback"},
    {"0.0.0.0/8", "refused destination range: unspecified"},
    {"::/128", "refused destination range: unspecified"},
    {"169.254.0.0/16", "refused destination range: link-local (incl. cloud metadata)"},
    {"fe80::/10", "refused destination range: link-local"},
    {"224.0.0.0/4", "refused destination range: multicast"},
    {"ff00::/8", "refused destination range: multicast"},
    {"255.255.255.255/32", "refused destination range: broadcast"},
    {"240.0.0.0/4", "refused destination range: reserved"},
    /* Deprecated IPv6 forms that some stacks still route to IPv4 or a local site. */
    {"::/96", "refused destination range: IPv4-compatible (deprecated)"},
    {"fec0::/10", "refused destination range: site-local (deprecated)"},
};
enum { NREFUSED = FERRY__ARRAY_LEN(refused_ranges) };

/* Loopback and private ranges: the default client allow-list, and what is_open() treats
 * as not open to the internet. */
static const char *const local_ranges[] = {"127.0.0.0/8",   "::1/128",       "10.0.0.0/8",
                                           "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
                                           "fc00::/7",      "fe80::/10"};

static const char default_header_allow[] =
    "Accept,Accept-Language,Cache-Control,Pragma,If-Modified-Since,If-None-Match,If-Match,"
    "If-Unmodified-Since,If-Range,Range,Content-Type,Content-Length,Transfer-Encoding,Host,"
    "Upgrade,Authorization,Referer";

struct ferry_forward {
    ferry_allocator alloc;
    ferry__acl acl;
    ferry__cidr *clients;
    unsigned nclients;
    uint8_t clients_set; /* allow_client was called: the default list is gone */
    ferry__cidr *allow_dests;
    unsigned nallow_dests;
    ferry__cidr refused[NREFUSED];
    ferry__port_range *connect_ports;
    unsigned nconnect_ports;
    ferry_anonymity anonymity;
    char *header_block;  /* the strict allow-list: lowercase names, NUL-separated */
    char **header_allow; /* pointing into header_block */
    unsigned nheader_allow;
    fwd_user **users; /* open addressing, capacity a power of two */
    size_t users_cap, nusers;
    fwd_parent **parents;
    unsigned nparents;
    fwd_route *routes;
    unsigned nroutes;
    ferry_clock_fn clock;
    void *clock_data;
    char **listen;
    unsigned nlisten;
    unsigned workers;
    char *access_log;
};

static const char *or_empty(const char *s) { return s ? s : ""; }

static ferry_err reject(const char **reason, const char *why) {
    if (reason) *reason = why;
    return FERRY_EREJECTED;
}


/* Secrets are cleared before their memory goes back to the allocator. */
static void wipe(void *p, size_t n) {
    volatile unsigned char *v = p;
    while (n--) *v++ = 0;
}

/* ---- lifetime ---- */

static ferry_err parse_header_allow(ferry_forward *f, const char *names);

ferry_err ferry_forward_new(const ferry_allocator *allocator, ferry_forward **out) {
    if (!out) return FERRY_EINVAL;
    ferry_allocator a;
    ferry__allocator_init(&a, allocator);
    ferry_forward *f = ferry__calloc(&a, sizeof *f);
    if (!f) return FERRY_ENOMEM;
    f->alloc = a;
    f->anonymity = FERRY_ANON_ANONYMOUS;
    for (unsigned i = 0; i < NREFUSED; i++)
        ferry__cidr_parse(refused_ranges[i].cidr, strlen(refused_ranges[i].cidr), &f->refused[i]);
    f->clients = ferry__malloc(&a, FERRY__ARRAY_LEN(local_ranges) * sizeof *f->clients);
    ferry_err err = f->clients ? FERRY_OK : FERRY_ENOMEM;
    for (unsigned i = 0; !err && i < FERRY__ARRAY_LEN(local_ranges); i++)
        ferry__cidr_parse(local_ranges[i], strlen(local_ranges[i]), &f->clients[f->nclients++]);
    if (!err)
        err = ferry__ports_parse(&a, "443", 3, &f->connect_ports, &f->nconnect_ports, NULL, 0);
    if (!err) err = parse_header_allow(f, default_header_allow);
    if (err) {
        ferry_forward_free(f);
        return err;
    }
    /* Time windows use localtime_r on worker threads; reading the zone here, once, keeps
     * file I/O off them. */
    tzset();
    *out = f;
    return FERRY_OK;
}

static void free_users(ferry_forward *f) {
    for (size_t i = 0; i < f->users_cap; i++) {
        fwd_user *u = f->users[i];
        if (!u) continue;
        wipe(u->password, u->password_len);
        ferry__free(&f->alloc, u);
    }
    ferry__free(&f->alloc, f->users);
}

void ferry_forward_free(ferry_forward *f) {
    if (!f) return;
    const ferry_allocator *a = &f->alloc;
    ferry__acl_free(&f->acl, a);
    ferry__free(a, f->clients);
    ferry__free(a, f->allow_dests);
    ferry__free(a, f->connect_ports);
    ferry__free(a, f->header_block);
    ferry__free(a, f->header_allow);
    free_users(f);
    for (unsigned i = 0; i < f->nparents; i++) {
        fwd_parent *p = f->parents[i];
        wipe(p->p.password, sizeof p->p.password);
        ferry__free(a, p->name);
        ferry__free(a, p);
    }
    ferry__free(a, f->parents);
    for (unsigned i = 0; i < f->nroutes; i++) {
        ferry__free(a, f->routes[i].pattern.text);
        ferry__free(a, f->routes[i].hops);
    }
    ferry__free(a, f->routes);
    for (unsigned i = 0; i < f->nlisten; i++) ferry__free(a, f->listen[i]);
    ferry__free(a, f->listen);
    ferry__free(a, f->access_log);
    ferry_allocator copy = f->alloc;
    ferry__free(&copy, f);
}

/* ---- configuration ---- */

ferry_err ferry_forward_add_rule(ferry_forward *f, const char *rule, char *err, size_t err_size) {
    if (!f || !rule) return FERRY_EINVAL;
    return ferry__acl_add(&f->acl, &f->alloc, rule, err, err_size);
}

/* Append to a CIDR list; with `replace`, the new list holds only this one. */
static ferry_err add_cidr(ferry_forward *f, ferry__cidr **list, unsigned *count, const char *text,
                          int replace) {
    if (!f || !text) return FERRY_EINVAL;
    ferry__cidr c;
    if (ferry__cidr_parse(text, strlen(text), &c) != 0) return FERRY_ECONFIG;
    unsigned keep = replace ? 0 : *count;
    ferry__cidr *grown = replace ? ferry__malloc(&f->alloc, sizeof *grown)
                                 : ferry__realloc(&f->alloc, *list, (keep + 1) * sizeof *grown);
    if (!grown) return FERRY_ENOMEM;
    if (replace) ferry__free(&f->alloc, *list);
    grown[keep] = c;
    *list = grown;
    *count = keep + 1;
    return FERRY_OK;
}

ferry_err ferry_forward_allow_client(ferry_forward *f, const char *cidr) {
    if (!f) return FERRY_EINVAL;
    ferry_err err = add_cidr(f, &f->clients, &f->nclients, cidr, !f->clients_set);
    if (!err) f->clients_set = 1; /* the first call replaced the default list */
    return err;
}

ferry_err ferry_forward_allow_dest(ferry_forward *f, const char *cidr) {
    if (!f) return FERRY_EINVAL;
    return add_cidr(f, &f->allow_dests, &f->nallow_dests, cidr, 0);
}

ferry_err ferry_forward_set_connect_ports(ferry_forward *f, const char *ports) {
    if (!f || !ports) return FERRY_EINVAL;
    ferry__port_range *r;
    unsigned n;
    ferry_err err = ferry__ports_parse(&f->alloc, ports, strlen(ports), &r, &n, NULL, 0);
    if (err) return err;
    ferry__free(&f->alloc, f->connect_ports);
    f->connect_ports = r;
    f->nconnect_ports = n;
    return FERRY_OK;
}

ferry_err ferry_forward_set_anonymity(ferry_forward *f, ferry_anonymity level) {
    if (!f || (level != FERRY_ANON_TRANSPARENT && level != FERRY_ANON_ANONYMOUS &&
               level != FERRY_ANON_STRICT))
        return FERRY_EINVAL;
    f->anonymity = level;
    return FERRY_OK;
}

static int is_token_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* Blanks around names and empty items are ignored: "" keeps only what strict mode never
 * removes. */
static ferry_err parse_header_allow(ferry_forward *f, const char *names) {
    size_t len = strlen(names);
    unsigned n = 1;
    for (size_t i = 0; i < len; i++) n += names[i] == ',';
    char *block = ferry__malloc(&f->alloc, len + 1);
    char **list = ferry__malloc(&f->alloc, n * sizeof *list);
    ferry_err err = block && list ? FERRY_OK : FERRY_ENOMEM;
    unsigned count = 0;
    size_t k = 0;
    for (const char *p = names; !err; p++) {
        while (*p == ' ' || *p == '\t') p++;
        const char *start = p;
        while (is_token_char(*p)) p++;
        const char *end = p;
        while (*p == ' ' || *p == '\t') p++;
        if (*p && *p != ',') {
            err = FERRY_ECONFIG;
            break;
        }
        if (end > start) {
            list[count++] = block + k;
            for (const char *c = start; c < end; c++)
                block[k++] = *c >= 'A' && *c <= 'Z' ? (char)(*c + 32) : *c;
            block[k++] = '\0';
        }
        if (!*p) break;
    }
    if (err) {
        ferry__free(&f->alloc, block);
        ferry__free(&f->alloc, list);
        return err;
    }
    ferry__free(&f->alloc, f->header_block);
    ferry__free(&f->alloc, f->header_allow);
    f->header_block = block;
    f->header_allow = list;
    f->nheader_allow = count;
    return FERRY_OK;
}

ferry_err ferry_forward_set_header_allow(ferry_forward *f, const char *names) {
    if (!f || !names) return FERRY_EINVAL;
    return parse_header_allow(f, names);
}

/* ---- users ---- */

static size_t hash_name(const char *s) {
    uint64_t h = 1469598103934665603u; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211u;
    return (size_t)h;
}

static fwd_user **user_slot(fwd_user **slots, size_t cap, const char *name) {
    size_t i = hash_name(name) & (cap - 1);
    while (slots[i] && strcmp(slots[i]->name, name) != 0) i = (i + 1) & (cap - 1);
    return &slots[i];
}

static const fwd_user *find_user(const ferry_forward *f, const char *name) {
    return f->users_cap ? *user_slot(f->users, f->users_cap, name) : NULL;
}

ferry_err ferry_forward_add_user(ferry_forward *f, const char *user, const char *password) {
    if (!f || !user || !password || !*user || strcmp(user, "-") == 0) return FERRY_EINVAL;
    if ((f->nusers + 1) * 2 > f->users_cap) { /* keep the table at most half full */
        size_t cap = f->users_cap ? f->users_cap * 2 : 16;
        fwd_user **slots = ferry__calloc(&f->alloc, cap * sizeof *slots);
        if (!slots) return FERRY_ENOMEM;
        for (size_t i = 0; i < f->users_cap; i++)
            if (f->users[i]) *user_slot(slots, cap, f->users[i]->name) = f->users[i];
        ferry__free(&f->alloc, f->users);
        f->users = slots;
        f->users_cap = cap;
    }
    size_t nl = strlen(user) + 1, pl = strlen(password);
    fwd_user *u = ferry__malloc(&f->alloc, sizeof *u + nl + pl + 1);
    if (!u) return FERRY_ENOMEM;
    memcpy(u->name, user, nl);
    u->password = u->name + nl;
    memcpy(u->password, password, pl + 1);
    u->password_len = pl;
    fwd_user **slot = user_slot(f->users, f->users_cap, user);
    if (*slot) { /* a user declared again gets the new password */
        wipe((*slot)->password, (*slot)->password_len);
        ferry__free(&f->alloc, *slot);
    } else {
        f->nusers++;
    }
    *slot = u;
    return FERRY_OK;
}

/* Time depends on the length of `given` only (the client's), never on where the first
 * difference is. stored has a NUL at stored_len, so the index stays inside it. */
static int password_equal(const char *stored, size_t stored_len, const char *given) {
    size_t given_len = strlen(given);
    unsigned diff = stored_len != given_len;
    for (size_t i = 0; i < given_len; i++)
        diff |= (unsigned char)given[i] ^ (unsigned char)stored[i % (stored_len + 1)];
    return diff == 0;
}

/* ---- parents and routes ---- */

static int prefix_ieq(const char *s, const char *lower_prefix) {
    return strncasecmp(s, lower_prefix, strlen(lower_prefix)) == 0;
}

static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* %XX-decode s[0..n) into out (size FERRY_CRED_MAX); -1 on bad escapes, NUL or length. */
static int cred_decode(const char *s, size_t n, char *out) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '%') {
            if (n - i < 3 || hex_value(s[i + 1]) < 0 || hex_value(s[i + 2]) < 0) return -1;
            c = hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]);
            i += 2;
        }
        if (c == 0 || k + 1 >= FERRY_CRED_MAX) return -1;
        out[k++] = (char)c;
    }
    out[k] = '\0';
    return 0;
}

static int host_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '-' || c == '_';
}

ferry_err ferry_parent_parse(const char *url, ferry_parent *out) {
    if (!url || !out) return FERRY_EINVAL;
    ferry_parent p;
    memset(&p, 0, sizeof p);
    const char *s;
    if (prefix_ieq(url, "http://")) {
        p.kind = FERRY_PARENT_HTTP;
        s = url + 7;
    } else if (prefix_ieq(url, "socks5://")) {
        p.kind = FERRY_PARENT_SOCKS5;
        s = url + 9;
    } else if (prefix_ieq(url, "socks5h://")) {
        p.kind = FERRY_PARENT_SOCKS5; /* the parent resolves names either way */
        s = url + 10;
    } else {
        return FERRY_ECONFIG;
    }
    size_t alen = strcspn(s, "/?#");
    if (s[alen] && strcmp(s + alen, "/") != 0) return FERRY_ECONFIG; /* no path or query */
    const char *end = s + alen, *host = s;
    for (const char *c = s; c < end; c++)
        if (*c == '@') host = c + 1; /* the last '@' ends the credentials */
    if (host > s) {
        const char *info_end = host - 1;
        const char *colon = memchr(s, ':', (size_t)(info_end - s));
        const char *user_end = colon ? colon : info_end;
        if (user_end == s || cred_decode(s, (size_t)(user_end - s), p.user) != 0 ||
            (colon && cred_decode(colon + 1, (size_t)(info_end - colon - 1), p.password) != 0))
            goto bad;
    }
    const char *host_end, *port;
    if (*host == '[') {
        host_end = memchr(host, ']', (size_t)(end - host));
        if (!host_end || host_end + 1 >= end || host_end[1] != ':') goto bad;
        port = host_end + 2;
        host++;
        size_t hl = (size_t)(host_end - host);
        ferry__ip ip;
        char tmp[FERRY_HOST_MAX];
        if (hl == 0 || hl >= sizeof tmp) goto bad;
        memcpy(tmp, host, hl);
        tmp[hl] = '\0';
        if (ferry__ip_parse(tmp, &ip) != 0 || !memchr(tmp, ':', hl)) goto bad;
    } else {
        host_end = memchr(host, ':', (size_t)(end - host));
        if (!host_end) goto bad;
        port = host_end + 1;
        for (const char *c = host; c < host_end; c++)
            if (!host_char(*c)) goto bad;
    }
    size_t hl = (size_t)(host_end - host);
    unsigned portno = 0;
    if (hl == 0 || hl >= sizeof p.host || port == end || end - port > 5) goto bad;
    for (const char *c = port; c < end; c++) {
        if (*c < '0' || *c > '9') goto bad;
        portno = portno * 10 + (unsigned)(*c - '0');
    }
    if (portno < 1 || portno > 65535) goto bad;
    memcpy(p.host, host, hl);
    p.port = (uint16_t)portno;
    /* name: "host:port" (bracketed IPv6), cut to fit; it is for logs only */
    char portbuf[8];
    int pn = snprintf(portbuf, sizeof portbuf, ":%u", portno);
    int v6 = memchr(p.host, ':', hl) != NULL;
    size_t room = sizeof p.name - 1 - (size_t)pn - (v6 ? 2 : 0), k = 0;
    if (v6) p.name[k++] = '[';
    memcpy(p.name + k, p.host, hl < room ? hl : room);
    k += hl < room ? hl : room;
    if (v6) p.name[k++] = ']';
    memcpy(p.name + k, portbuf, (size_t)pn + 1);
    *out = p;
    wipe(&p, sizeof p);
    return FERRY_OK;
bad:
    wipe(&p, sizeof p);
    return FERRY_ECONFIG;
}

const ferry_parent *ferry_forward_parent(const ferry_forward *f, const char *name) {
    if (!f || !name) return NULL;
    for (unsigned i = 0; i < f->nparents; i++)
        if (strcmp(f->parents[i]->name, name) == 0) return &f->parents[i]->p;
    return NULL;
}

static fwd_parent *parent_named(const ferry_forward *f, const char *name, size_t n) {
    for (unsigned i = 0; i < f->nparents; i++)
        if (strlen(f->parents[i]->name) == n && memcmp(f->parents[i]->name, name, n) == 0)
            return f->parents[i];
    return NULL;
}

ferry_err ferry_forward_add_parent(ferry_forward *f, const char *name, const char *url,
                                   char *err, size_t err_size) {
    if (!f || !name || !url) return FERRY_EINVAL;
    if (!*name || strcasecmp(name, "direct") == 0 || name[strcspn(name, ", \t\r\n")])
        return ferry__config_error(err, err_size,
                            "bad parent name '%s' (non-empty, no commas or blanks, not 'direct')",
                            name);
    if (parent_named(f, name, strlen(name)))
        return ferry__config_error(err, err_size, "parent '%s' already declared", name);
    fwd_parent *p = ferry__calloc(&f->alloc, sizeof *p);
    if (!p) return FERRY_ENOMEM;
    /* The URL may hold credentials: messages name the parent, never echo the URL. */
    if (ferry_parent_parse(url, &p->p) != FERRY_OK) {
        ferry__free(&f->alloc, p);
        return ferry__config_error(err, err_size,
                            "parent '%s': bad URL (expected http://, socks5:// or socks5h:// "
                            "[user:password@]host:port)",
                            name);
    }
    fwd_parent **grown = ferry__realloc(&f->alloc, f->parents, (f->nparents + 1) * sizeof *grown);
    if (grown) f->parents = grown;
    if (!grown || !(p->name = ferry__strdup(&f->alloc, name))) {
        wipe(&p->p, sizeof p->p);
        ferry__free(&f->alloc, p);
        return FERRY_ENOMEM;
    }
    /* Logs name the parent as the configuration does. */
    snprintf(p->p.name, sizeof p->p.name, "%s", name);
    atomic_init(&p->down_until_ms, 0);
    f->parents[f->nparents++] = p;
    return FERRY_OK;
}

ferry_err ferry_forward_add_route(ferry_forward *f, const char *host_pattern, const char *parents,
                                  char *err, size_t err_size) {
    if (!f || !host_pattern || !parents) return FERRY_EINVAL;
    unsigned n = 1;
    for (const char *c = parents; *c; c++) n += *c == ',';
    fwd_route r = {0};
    r.hops = ferry__malloc(&f->alloc, n * sizeof *r.hops);
    if (!r.hops) return FERRY_ENOMEM;
    for (const char *c = parents;; c++) {
        while (*c == ' ' || *c == '\t') c++;
        size_t len = strcspn(c, ",");
        while (len && (c[len - 1] == ' ' || c[len - 1] == '\t')) len--;
        if (!len) {
            ferry__free(&f->alloc, r.hops);
            return ferry__config_error(err, err_size, "empty parent name in '%s'", parents);
        }
        int direct = len == 6 && strncasecmp(c, "direct", 6) == 0;
        fwd_parent *p = direct ? NULL : parent_named(f, c, len);
        if (!direct && !p) {
            ferry__free(&f->alloc, r.hops);
            return ferry__config_error(err, err_size, "unknown parent '%.*s'", (int)len, c);
        }
        r.hops[r.nhops++] = p;
        c += strcspn(c, ",");
        if (!*c) break;
    }
    ferry_err e = ferry__host_pattern_parse(&f->alloc, host_pattern, strlen(host_pattern), &r.pattern);
    fwd_route *grown = e ? NULL : ferry__realloc(&f->alloc, f->routes, (f->nroutes + 1) * sizeof *grown);
    if (e || !grown) {
        ferry__free(&f->alloc, r.hops);
        ferry__free(&f->alloc, r.pattern.text);
        if (e == FERRY_ECONFIG)
            return ferry__config_error(err, err_size, "bad host pattern '%s'", host_pattern);
        return FERRY_ENOMEM;
    }
    grown[f->nroutes++] = r;
    f->routes = grown;
    return FERRY_OK;
}

void ferry_forward_set_clock(ferry_forward *f, ferry_clock_fn now, void *user_data) {
    if (!f) return;
    f->clock = now;
    f->clock_data = user_data;
}

/* ---- daemon settings ---- */

ferry_err ferry__forward_add_listen(ferry_forward *f, const char *address) {
    if (!f || !address || !*address) return FERRY_EINVAL;
    char **grown = ferry__realloc(&f->alloc, f->listen, (f->nlisten + 1) * sizeof *grown);
    if (!grown) return FERRY_ENOMEM;
    f->listen = grown;
    if (!(grown[f->nlisten] = ferry__strdup(&f->alloc, address))) return FERRY_ENOMEM;
    f->nlisten++;
    return FERRY_OK;
}

ferry_err ferry__forward_set_workers(ferry_forward *f, unsigned workers) {
    if (!f) return FERRY_EINVAL;
    f->workers = workers;
    return FERRY_OK;
}

ferry_err ferry__forward_set_access_log(ferry_forward *f, const char *path) {
    if (!f || !path) return FERRY_EINVAL;
    char *copy = ferry__strdup(&f->alloc, path);
    if (!copy) return FERRY_ENOMEM;
    ferry__free(&f->alloc, f->access_log);
    f->access_log = copy;
    return FERRY_OK;
}

unsigned ferry_forward_listen_count(const ferry_forward *f) { return f ? f->nlisten : 0; }
const char *ferry_forward_listen_at(const ferry_forward *f, unsigned i) {
    return f && i < f->nlisten ? f->listen[i] : NULL;
}
unsigned ferry_forward_workers(const ferry_forward *f) { return f ? f->workers : 0; }
const char *ferry_forward_access_log(const ferry_forward *f) { return f ? f->access_log : NULL; }

int ferry_forward_is_open(const ferry_forward *f) {
    if (!f || f->nusers) return 0;
    for (unsigned i = 0; i < f->nclients; i++) {
        int local = 0;
        for (size_t k = 0; k < FERRY__ARRAY_LEN(local_ranges) && !local; k++) {
            ferry__cidr r;
            ferry__cidr_parse(local_ranges[k], strlen(local_ranges[k]), &r);
            local = ferry__cidr_within(&f->clients[i], &r);
        }
        if (!local) return 1;
    }
    return 0;
}

/* ---- the forward direction ---- */

static const fwd_route *route_for(const ferry_forward *f, const char *host) {
    for (unsigned i = 0; i < f->nroutes; i++)
        if (ferry__host_pattern_match(&f->routes[i].pattern, host)) return &f->routes[i];
    return NULL;
}

static int route_has_parent(const fwd_route *r) {
    for (unsigned i = 0; r && i < r->nhops; i++)
        if (r->hops[i]) return 1;
    return 0;
}

static ferry_err fwd_admit_client(void *data, const ferry_session_info *s, const char **reason) {
    const ferry_forward *f = data;
    ferry__ip ip;
    ferry__ip_from_bytes(s->client_family, s->client_ip, &ip);
    for (unsigned i = 0; f && i < f->nclients; i++)
        if (ferry__cidr_contains(&f->clients[i], &ip)) return FERRY_OK;
    return reject(reason, "client not in allow-client list");
}

static ferry_err fwd_authenticate(void *data, const ferry_session_info *s, const char *user,
                                  const char *password) {
    (void)s;
    const ferry_forward *f = data;
    if (!f || f->nusers == 0) return FERRY_OK;
    if (!user) return FERRY_EAUTH;
    const fwd_user *u = find_user(f, user);
    /* An unknown user costs a comparison too, so timing does not tell names apart. */
    int same = password_equal(u ? u->password : "", u ? u->password_len : 0, or_empty(password));
    return u && same ? FERRY_OK : FERRY_EAUTH;
}

/* The rules, then the refused-destination default when the address is known. */
static ferry_err decide(const ferry_forward *f, const ferry_session_info *s, ferry__dest_mode mode,
                        const ferry__ip *dest, const char **reason) {
    ferry__acl_query q = {.session = s, .dest_mode = mode, .clock = f->clock,
                          .clock_data = f->clock_data};
    if (dest) q.dest = *dest;
    const ferry__rule *rule;
    ferry__verdict v = ferry__acl_eval(&f->acl, &q, &rule);
    if (v == FERRY__DENY) return reject(reason, rule->reason);
    if (v == FERRY__UNDECIDED || mode != FERRY__DEST_ADDRESS) return FERRY_OK;
    /* An allow rule with a dest condition matched this very address: it is wanted. */
    if (rule && (rule->conds & FERRY__COND_DEST)) return FERRY_OK;
    for (unsigned i = 0; i < f->nallow_dests; i++)
        if (ferry__cidr_contains(&f->allow_dests[i], dest)) return FERRY_OK;
    for (unsigned i = 0; i < NREFUSED; i++)
        if (ferry__cidr_contains(&f->refused[i], dest)) return reject(reason, refused_ranges[i].reason);
    /* 64:ff9b::/96 (RFC 6052) reaches the IPv4 address in its last 32 bits through a NAT64
     * gateway: that address must not be a refused one either (64:ff9b::7f00:1 is
     * 127.0.0.1). The prefix as a whole carries public addresses too, so it stays open. */
    static const uint8_t nat64[12] = {0x00, 0x64, 0xff, 0x9b};
    if (dest->v6 && memcmp(dest->addr, nat64, sizeof nat64) == 0) {
        ferry__ip v4;
        ferry__ip_from_bytes(AF_INET, dest->addr + 12, &v4);
        for (unsigned i = 0; i < NREFUSED; i++)
            if (ferry__cidr_contains(&f->refused[i], &v4))
                return reject(reason, "refused destination range: NAT64 form of a refused "
                                      "IPv4 address");
    }
    return FERRY_OK;
}

static ferry_err fwd_admit(void *data, const ferry_session_info *s, const char **reason) {
    const ferry_forward *f = data;
    if (!f) return reject(reason, "no forward policy");
    if (s->proxy_protocol == FERRY_PROXY_CONNECT &&
        !ferry__ports_contain(f->connect_ports, f->nconnect_ports, s->dest_port))
        return reject(reason, "CONNECT port not allowed");
    ferry__ip ip;
    const char *host = or_empty(s->dest_host);
    if (ferry__ip_parse(host, &ip) == 0) return decide(f, s, FERRY__DEST_ADDRESS, &ip, reason);
    /* A name going through a parent is resolved there, out of admit_address's sight: dest
     * conditions cannot match it, so everything is decided now. */
    if (route_has_parent(route_for(f, host))) return decide(f, s, FERRY__DEST_NAME, NULL, reason);
    return decide(f, s, FERRY__DEST_PENDING, NULL, reason);
}

static ferry_err fwd_admit_address(void *data, const ferry_session_info *s,
                                   const struct sockaddr *addr, const char **reason) {
    const ferry_forward *f = data;
    ferry__ip ip;
    if (!f) return reject(reason, "no forward policy");
    if (!addr || ferry__ip_from_sockaddr(addr, &ip) != 0)
        return reject(reason, "destination is not an IP address");
    return decide(f, s, FERRY__DEST_ADDRESS, &ip, reason);
}

static int parent_down(const fwd_parent *p, uint64_t now) {
    return p && atomic_load(&((fwd_parent *)p)->down_until_ms) > now;
}

/* State: (index of the next hop to consider) << 1 | 1 when every hop was down at the
 * first attempt, in which case marks are ignored and each hop is tried once anyway. */
static ferry_err fwd_pick(void *data, const ferry_session_info *s, unsigned attempt,
                          uintptr_t *state, ferry_target *target) {
    (void)attempt; /* the state word says how far this session got */
    static fwd_parent *const direct_only[1] = {NULL};
    const ferry_forward *f = data;
    const char *host = or_empty(s->dest_host);
    size_t hl = strlen(host);
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') host++, hl -= 2;
    if (!f || hl == 0 || hl >= sizeof target->host) return FERRY_ENOUPSTREAM;
    const fwd_route *r = route_for(f, or_empty(s->dest_host));
    fwd_parent *const *hops = r ? r->hops : direct_only;
    unsigned n = r ? r->nhops : 1, next = (unsigned)(*state >> 1);
    int forced = (int)(*state & 1);
    uint64_t now = ferry__now_ms();
    if (*state == 0) {
        forced = 1;
        for (unsigned i = 0; i < n && forced; i++) forced = parent_down(hops[i], now);
    }
    while (next < n && !forced && parent_down(hops[next], now)) next++;
    if (next >= n) return FERRY_ENOUPSTREAM;
    memcpy(target->host, host, hl);
    target->host[hl] = '\0';
    target->port = s->dest_port;
    target->backend = NULL;
    target->parent = hops[next] ? &hops[next]->p : NULL;
    *state = (uintptr_t)(next + 1) << 1 | (uintptr_t)forced;
    return FERRY_OK;
}

static void fwd_connect_result(void *data, const ferry_target *t, ferry_err result) {
    ferry_forward *f = data;
    if (!f || !t->parent) return;
    for (unsigned i = 0; i < f->nparents; i++) {
        if (&f->parents[i]->p != t->parent) continue;
        atomic_store(&f->parents[i]->down_until_ms,
                     result == FERRY_OK ? 0 : ferry__now_ms() + PARENT_DOWN_MS);
        return;
    }
}

/* ---- anonymity ---- */

static int view_is(ferry_view v, const char *name) {
    return v.len == strlen(name) && strncasecmp(v.ptr, name, v.len) == 0;
}

/* Every value of `name` joined with ", ", then `value`, as one header. */
static ferry_err append_to_list(const ferry_forward *f, ferry_txn *txn, const char *name,
                                const char *value) {
    unsigned n = ferry_txn_header_count(txn, FERRY_TXN_REQUEST);
    size_t len = strlen(value) + 1;
    ferry_http_header h;
    for (unsigned i = 0; i < n; i++)
        if (ferry_txn_header_at(txn, FERRY_TXN_REQUEST, i, &h) == FERRY_OK && view_is(h.name, name))
            len += h.value.len + 2;
    char *joined = ferry__malloc(&f->alloc, len);
    if (!joined) return FERRY_ENOMEM;
    size_t k = 0;
    for (unsigned i = 0; i < n; i++) {
        if (ferry_txn_header_at(txn, FERRY_TXN_REQUEST, i, &h) != FERRY_OK ||
            !view_is(h.name, name) || !h.value.len)
            continue;
        memcpy(joined + k, h.value.ptr, h.value.len);
        k += h.value.len;
        joined[k++] = ',';
        joined[k++] = ' ';
    }
    memcpy(joined + k, value, strlen(value) + 1);
    ferry_err err = ferry_txn_header_set(txn, FERRY_TXN_REQUEST, name, joined);
    ferry__free(&f->alloc, joined);
    return err;
}


/* "host[:80]" and "host" are the same http authority. */
static ferry_view strip_default_port(ferry_view v) {
    if (v.len > 3 && memcmp(v.ptr + v.len - 3, ":80", 3) == 0) v.len -= 3;
    return v;
}

/* Does the Referer name the request's own origin (http://Host)? */
static int same_origin(ferry_view referer, ferry_view host) {
    const char *sep = referer.len >= 3 ? memchr(referer.ptr, ':', referer.len) : NULL;
    if (!sep || (size_t)(sep - referer.ptr) != 4 || strncasecmp(referer.ptr, "http", 4) != 0 ||
        referer.len < 7 || memcmp(sep, "://", 3) != 0)
        return 0;
    const char *a = sep + 3, *end = referer.ptr + referer.len, *e = a;
    while (e < end && *e != '/' && *e != '?' && *e != '#') e++;
    for (const char *c = a; c < e; c++)
        if (*c == '@') a = c + 1; /* userinfo is not part of the origin */
    ferry_view ra = strip_default_port((ferry_view){a, (size_t)(e - a)});
    ferry_view ha = strip_default_port(host);
    return ha.len && ra.len == ha.len && strncasecmp(ra.ptr, ha.ptr, ha.len) == 0;
}

/* Fields strict mode never removes: the target authority, and framing and connection
 * fields ferry manages itself. */
static int strict_keeps(const ferry_forward *f, ferry_view name) {
    static const char *const essentials[] = {"host", "connection", "content-length",
                                             "transfer-encoding", "upgrade"};
    for (size_t i = 0; i < FERRY__ARRAY_LEN(essentials); i++)
        if (view_is(name, essentials[i])) return 1;
    for (unsigned i = 0; i < f->nheader_allow; i++)
        if (view_is(name, f->header_allow[i])) return 1;
    return 0;
}

/* Remove every request header called `name` (a view, which the API wants as a string). */
static ferry_err remove_at(const ferry_forward *f, ferry_txn *txn, ferry_view name) {
    char small[256];
    char *copy = name.len < sizeof small ? small : ferry__malloc(&f->alloc, name.len + 1);
    if (!copy) return FERRY_ENOMEM;
    memcpy(copy, name.ptr, name.len);
    copy[name.len] = '\0';
    ferry_err err = ferry_txn_header_remove(txn, FERRY_TXN_REQUEST, copy);
    if (copy != small) ferry__free(&f->alloc, copy);
    return err;
}

static ferry_err strict_edit(const ferry_forward *f, ferry_txn *txn) {
    ferry_txn_header_remove(txn, FERRY_TXN_REQUEST, "From");
    ferry_view referer, host = {NULL, 0};
    ferry_txn_header_get(txn, FERRY_TXN_REQUEST, "Host", &host);
    if (ferry_txn_header_get(txn, FERRY_TXN_REQUEST, "Referer", &referer) == FERRY_OK &&
        !same_origin(referer, host))
        ferry_txn_header_remove(txn, FERRY_TXN_REQUEST, "Referer");
    /* Removing compacts the list in place: stay on index i after a removal. */
    ferry_http_header h;
    for (unsigned i = 0; ferry_txn_header_at(txn, FERRY_TXN_REQUEST, i, &h) == FERRY_OK;) {
        if (strict_keeps(f, h.name)) {
            i++;
            continue;
        }
        ferry_err err = remove_at(f, txn, h.name);
        if (err) return err;
    }
    return FERRY_OK;
}

void ferry__forward_edit_headers(const ferry_forward *f, ferry_txn *txn, const char *client_addr) {
    if (f->anonymity == FERRY_ANON_TRANSPARENT) {
        append_to_list(f, txn, "Via", "1.1 ferry");
        if (client_addr && *client_addr) append_to_list(f, txn, "X-Forwarded-For", client_addr);
        return;
    }
    static const char *const identifying[] = {"Via", "X-Forwarded-For", "Forwarded", "X-Real-IP"};
    for (size_t i = 0; i < FERRY__ARRAY_LEN(identifying); i++)
        ferry_txn_header_remove(txn, FERRY_TXN_REQUEST, identifying[i]);
    if (f->anonymity == FERRY_ANON_STRICT) strict_edit(f, txn);
}

static void fwd_edit_request(void *data, ferry_txn *txn) {
    const ferry_forward *f = data;
    if (!f || !txn) return;
    const ferry_session_info *s = ferry_txn_session(txn);
    ferry__forward_edit_headers(f, txn, s ? s->client_addr : NULL);
}

static const ferry_direction_ops forward_ops = {
    .name = "forward",
    .pick = fwd_pick,
    .connect_result = fwd_connect_result,
    .answer_error = NULL,
    .client_names_destination = 1,
    .admit_client = fwd_admit_client,
    .authenticate = fwd_authenticate,
    .admit = fwd_admit,
    .admit_address = fwd_admit_address,
    .edit_request = fwd_edit_request,
};

const ferry_direction_ops *ferry_direction_forward(void) { return &forward_ops; }
