/* The hook-facing HTTP transaction: editable header lists, local answers, and the pure
 * functions that write heads (hop-by-hop removal, re-framing, forwarding headers). */
#include <stdio.h>

#include "http_int.h"

/* ---- arena ---- */

char *ferry__txn_alloc(ferry_txn *t, size_t n) {
    ferry__arena_block *b = t->arena;
    if (!b || b->size - b->used < n + 1) {
        size_t size = n + 1 > 1024 ? n + 1 : 1024;
        b = ferry__malloc(t->alloc, sizeof *b + size);
        if (!b) return NULL;
        b->next = t->arena;
        b->used = 0;
        b->size = size;
        t->arena = b;
    }
    char *d = b->data + b->used;
    d[n] = '\0';
    b->used += n + 1;
    return d;
}

char *ferry__txn_strdup(ferry_txn *t, const char *p, size_t n) {
    char *d = ferry__txn_alloc(t, n);
    if (d && n) memcpy(d, p, n);
    return d;
}

static ferry_view arena_view(ferry_txn *t, ferry_view v, int *oom) {
    if (!v.len) return (ferry_view){"", 0};
    char *d = ferry__txn_strdup(t, v.ptr, v.len);
    if (!d) *oom = 1;
    return (ferry_view){d ? d : "", d ? v.len : 0};
}

void ferry__txn_init(ferry_txn *t, ferry__http_conn *c, const ferry_allocator *a) {
    memset(t, 0, sizeof *t);
    t->conn = c;
    t->alloc = a;
    t->reject_status = 403;
}

/* Between two transactions of a connection: the header arrays, the header lists and the
 * first arena block stay for the next one, so that a keep-alive request allocates nothing
 * in the common case. */
void ferry__txn_reset(ferry_txn *t) {
    ferry__arena_block *keep = NULL;
    for (ferry__arena_block *b = t->arena, *n; b; b = n) {
        n = b->next;
        if (n)
            ferry__free(t->alloc, b);
        else
            keep = b; /* the oldest: the default size */
    }
    if (keep) keep->used = 0;
    ferry_http_header *req = t->req.headers, *resp = t->resp.headers;
    ferry__header_list req_list = {t->req_headers.items, 0, t->req_headers.cap};
    ferry__header_list resp_list = {t->resp_headers.items, 0, t->resp_headers.cap};
    ferry__free(t->alloc, t->sub);
    ferry__txn_init(t, t->conn, t->alloc);
    t->arena = keep;
    t->req.headers = req;
    t->resp.headers = resp;
    t->req_headers = req_list;
    t->resp_headers = resp_list;
}

void ferry__txn_free(ferry_txn *t) {
    ferry__txn_reset(t);
    ferry__free(t->alloc, t->arena);
    ferry__free(t->alloc, t->req.headers);
    ferry__free(t->alloc, t->resp.headers);
    ferry__free(t->alloc, t->req_headers.items);
    ferry__free(t->alloc, t->resp_headers.items);
    ferry__txn_init(t, t->conn, t->alloc);
}

static ferry_err list_copy(ferry_txn *t, ferry__header_list *l, const ferry__http_msg *m) {
    unsigned need = m->nheaders + 8;
    if (l->cap < need) {
        ferry__free(t->alloc, l->items);
        l->items = ferry__malloc(t->alloc, need * sizeof *l->items);
        l->cap = l->items ? need : 0;
        if (!l->items) return FERRY_ENOMEM;
    }
    memcpy(l->items, m->headers, m->nheaders * sizeof *l->items);
    l->count = m->nheaders;
    return FERRY_OK;
}

static ferry_view find(const ferry__header_list *l, const char *lower) {
    for (unsigned i = 0; i < l->count; i++)
        if (ferry__view_ieq(l->items[i].name, lower)) return l->items[i].value;
    return (ferry_view){NULL, 0};
}

ferry_err ferry__txn_take_request(ferry_txn *t) {
    if (list_copy(t, &t->req_headers, &t->req)) return FERRY_ENOMEM;
    int oom = 0;
    t->method = arena_view(t, t->req.method, &oom);
    t->target = arena_view(t, t->req.target, &oom);
    t->host = arena_view(t, find(&t->req_headers, "host"), &oom);
    t->referer = arena_view(t, find(&t->req_headers, "referer"), &oom);
    t->user_agent = arena_view(t, find(&t->req_headers, "user-agent"), &oom);
    return oom ? FERRY_ENOMEM : FERRY_OK;
}

ferry_err ferry__txn_take_response(ferry_txn *t) {
    return list_copy(t, &t->resp_headers, &t->resp); /* after a 1xx: over it */
}

/* ---- public accessors ---- */

const ferry_session_info *ferry_txn_session(const ferry_txn *t) {
    return t ? ferry__http_conn_info(t->conn) : NULL;
}
ferry_view ferry_txn_method(const ferry_txn *t) { return t ? t->method : (ferry_view){NULL, 0}; }
ferry_view ferry_txn_target(const ferry_txn *t) { return t ? t->target : (ferry_view){NULL, 0}; }
int ferry_txn_status(const ferry_txn *t) { return t && t->resp.status ? t->resp.status : 0; }

static ferry__header_list *list_of(ferry_txn *t, ferry_txn_part part) {
    if (!t) return NULL;
    if (part == FERRY_TXN_REQUEST) return &t->req_headers;
    if (part == FERRY_TXN_RESPONSE && t->resp.status) return &t->resp_headers;
    return NULL;
}

unsigned ferry_txn_header_count(const ferry_txn *t, ferry_txn_part part) {
    ferry__header_list *l = list_of((ferry_txn *)t, part);
    return l ? l->count : 0;
}

ferry_err ferry_txn_header_at(const ferry_txn *t, ferry_txn_part part, unsigned i,
                              ferry_http_header *out) {
    ferry__header_list *l = list_of((ferry_txn *)t, part);
    if (!l || !out || i >= l->count) return FERRY_EINVAL;
    *out = l->items[i];
    return FERRY_OK;
}

static int name_matches(ferry_view name, const char *other) {
    size_t n = strlen(other);
    if (name.len != n) return 0;
    for (size_t i = 0; i < n; i++) {
        char a = name.ptr[i], b = other[i];
        if (a >= 'A' && a <= 'Z') a = (char)(a + 32);
        if (b >= 'A' && b <= 'Z') b = (char)(b + 32);
        if (a != b) return 0;
    }
    return 1;
}

ferry_err ferry_txn_header_get(const ferry_txn *t, ferry_txn_part part, const char *name,
                               ferry_view *value) {
    ferry__header_list *l = list_of((ferry_txn *)t, part);
    if (!l || !name || !value) return FERRY_EINVAL;
    for (unsigned i = 0; i < l->count; i++) {
        if (name_matches(l->items[i].name, name)) {
            *value = l->items[i].value;
            return FERRY_OK;
        }
    }
    return FERRY_EINVAL;
}

/* Framing and connection management stay ferry's: hooks may not forge them. */
static int reserved_name(ferry_view name) {
    static const char *const names[] = {"content-length", "transfer-encoding", "connection",
                                        "keep-alive", "upgrade", "te", "trailer",
                                        "proxy-connection"};
    for (size_t i = 0; i < FERRY__ARRAY_LEN(names); i++)
        if (ferry__view_ieq(name, names[i])) return 1;
    return 0;
}

ferry_err ferry_txn_header_remove(ferry_txn *t, ferry_txn_part part, const char *name) {
    ferry__header_list *l = list_of(t, part);
    if (!l || !name) return FERRY_EINVAL;
    unsigned k = 0;
    for (unsigned i = 0; i < l->count; i++)
        if (!name_matches(l->items[i].name, name)) l->items[k++] = l->items[i];
    l->count = k;
    return FERRY_OK;
}

ferry_err ferry_txn_header_add(ferry_txn *t, ferry_txn_part part, const char *name,
                               const char *value) {
    ferry__header_list *l = list_of(t, part);
    if (!l || !name || !value) return FERRY_EINVAL;
    ferry_view n = {name, strlen(name)}, v = {value, strlen(value)};
    if (!ferry__http_name_ok(n) || !ferry__http_value_ok(v) || reserved_name(n)) return FERRY_EINVAL;
    if (l->count == l->cap) {
        unsigned cap = l->cap ? l->cap * 2 : 16;
        ferry_http_header *items = ferry__realloc(t->alloc, l->items, cap * sizeof *items);
        if (!items) return FERRY_ENOMEM;
        l->items = items;
        l->cap = cap;
    }
    char *nd = ferry__txn_strdup(t, name, n.len), *vd = ferry__txn_strdup(t, value, v.len);
    if (!nd || !vd) return FERRY_ENOMEM;
    l->items[l->count++] = (ferry_http_header){{nd, n.len}, {vd, v.len}};
    return FERRY_OK;
}

ferry_err ferry_txn_header_set(ferry_txn *t, ferry_txn_part part, const char *name,
                               const char *value) {
    ferry__header_list *l = list_of(t, part);
    if (!l || !name || !value) return FERRY_EINVAL;
    ferry_view n = {name, strlen(name)}, v = {value, strlen(value)};
    if (!ferry__http_name_ok(n) || !ferry__http_value_ok(v) || reserved_name(n)) return FERRY_EINVAL;
    ferry_txn_header_remove(t, part, name);
    return ferry_txn_header_add(t, part, name, value);
}

ferry_err ferry_txn_respond(ferry_txn *t, int status, const char *content_type, const char *body,
                            size_t body_len) {
    if (!t || status < 200 || status > 599 || (body_len && !body)) return FERRY_EINVAL;
    if (content_type && !ferry__http_value_ok((ferry_view){content_type, strlen(content_type)}))
        return FERRY_EINVAL;
    t->local_type = content_type ? ferry__txn_strdup(t, content_type, strlen(content_type)) : NULL;
    t->local_body = ferry__txn_strdup(t, body ? body : "", body_len);
    if ((content_type && !t->local_type) || !t->local_body) return FERRY_ENOMEM;
    t->local_len = body_len;
    t->local_status = status;
    return FERRY_OK;
}

ferry_err ferry_txn_set_target(ferry_txn *t, const char *target) {
    if (!t || !target || target[0] != '/') return FERRY_EINVAL;
    size_t n = strlen(target);
    if (n > 8192) return FERRY_EINVAL;
    for (size_t i = 0; i < n; i++) {
        unsigned char b = (unsigned char)target[i];
        if (b <= 0x20 || b >= 0x7f) return FERRY_EINVAL; /* what a request line cannot carry */
    }
    char *copy = ferry__txn_strdup(t, target, n);
    if (!copy) return FERRY_ENOMEM;
    t->upstream_target = (ferry_view){copy, n};
    return FERRY_OK;
}

ferry_err ferry_txn_set_upstream_limits(ferry_txn *t, unsigned connect_timeout_ms,
                                        unsigned response_timeout_ms, uint64_t max_body_bytes) {
    if (!t) return FERRY_EINVAL;
    if (connect_timeout_ms) t->connect_timeout_ms = connect_timeout_ms;
    if (response_timeout_ms) t->response_timeout_ms = response_timeout_ms;
    if (max_body_bytes) t->max_body_bytes = max_body_bytes;
    return FERRY_OK;
}

ferry_err ferry_txn_set_backend_host(ferry_txn *t, int on) {
    if (!t) return FERRY_EINVAL;
    t->backend_host = on != 0;
    return FERRY_OK;
}

void ferry_txn_set_route_data(ferry_txn *t, void *data) {
    if (t) t->route_data = data;
}

void *ferry_txn_route_data(const ferry_txn *t) { return t ? t->route_data : NULL; }

ferry_err ferry_txn_body_write(ferry_txn *t, const char *data, size_t len) {
    if (!t || !t->body_out || (len && !data)) return FERRY_EINVAL;
    t->body_written = 1;
    if (!len) return FERRY_OK;
    ferry__bytes *out = t->body_out;
    ferry__bytes_pool *a = t->body_pool;
    ferry_err err = FERRY_OK;
    if (t->body_chunked)
        err = ferry__bytes_append_u64(out, a, len, 1);
    if (!err && t->body_chunked) err = ferry__bytes_append(out, a, "\r\n", 2);
    if (!err) err = ferry__bytes_append(out, a, data, len);
    if (!err && t->body_chunked) err = ferry__bytes_append(out, a, "\r\n", 2);
    if (err) t->body_oom = 1;
    return err;
}

ferry_err ferry_txn_set_reject_status(ferry_txn *t, int status) {
    if (!t || status < 400 || status > 599) return FERRY_EINVAL;
    t->reject_status = status;
    t->reject_status_set = 1;
    return FERRY_OK;
}

/* ---- writing heads ---- */

/* The fixed hop-by-hop and framing fields; the length check keeps this cheap per header. */
static int hop_fixed(ferry_view name) {
    switch (name.len) {
    case 2: return ferry__view_ieq(name, "te");
    case 7: return ferry__view_ieq(name, "trailer") || ferry__view_ieq(name, "upgrade");
    case 10: return ferry__view_ieq(name, "connection") || ferry__view_ieq(name, "keep-alive");
    case 14: return ferry__view_ieq(name, "content-length");
    case 16: return ferry__view_ieq(name, "proxy-connection");
    case 17: return ferry__view_ieq(name, "transfer-encoding");
    case 18: return ferry__view_ieq(name, "proxy-authenticate");
    case 19: return ferry__view_ieq(name, "proxy-authorization");
    default: return 0;
    }
}

/* Does a Connection field name fields that would otherwise be forwarded? Most only say
 * keep-alive (hop-by-hop anyway) or close (a field of that name is rare): then each field
 * needs only the fixed list, not a search of the Connection values. */
static int connection_names_fields(const ferry__header_list *l) {
    for (unsigned i = 0; i < l->count; i++) {
        if (l->items[i].name.len != 10 || !ferry__view_ieq(l->items[i].name, "connection"))
            continue;
        ferry_view v = l->items[i].value;
        if (!ferry__http_list_within(v, "keep-alive", "close")) return 1;
        if (ferry__http_list_has(v, "close") && find(l, "close").ptr) return 1;
    }
    return 0;
}

int ferry__http_hop_by_hop(ferry_view name, const ferry__header_list *l) {
    if (hop_fixed(name)) return 1;
    /* Fields named by Connection are hop-by-hop too. */
    char lower[64];
    int lowered = 0; /* the name, lowercased once a Connection field is found */
    if (name.len >= sizeof lower) return 0;
    for (unsigned i = 0; i < l->count; i++) {
        if (l->items[i].name.len != 10 || !ferry__view_ieq(l->items[i].name, "connection"))
            continue;
        if (!lowered) {
            for (size_t k = 0; k < name.len; k++) {
                char ch = name.ptr[k];
                lower[k] = ch >= 'A' && ch <= 'Z' ? (char)(ch + 32) : ch;
            }
            lower[name.len] = '\0';
            lowered = 1;
        }
        if (ferry__http_list_has(l->items[i].value, lower)) return 1;
    }
    return 0;
}

#define APPEND(out, a, p, n)                                          \
    do {                                                              \
        if (ferry__bytes_append((out), (a), (p), (n))) return FERRY_ENOMEM; \
    } while (0)
#define APPEND_STR(out, a, s) APPEND(out, a, s, strlen(s))

static ferry_err append_header(ferry__bytes *out, ferry__bytes_pool *a, ferry_view name,
                               ferry_view value) {
    APPEND(out, a, name.ptr, name.len);
    APPEND(out, a, ": ", 2);
    APPEND(out, a, value.ptr, value.len);
    APPEND(out, a, "\r\n", 2);
    return FERRY_OK;
}

static ferry_err append_length(ferry__bytes *out, ferry__bytes_pool *a, uint64_t n) {
    APPEND_STR(out, a, "Content-Length: ");
    if (ferry__bytes_append_u64(out, a, n, 0)) return FERRY_ENOMEM;
    APPEND(out, a, "\r\n", 2);
    return FERRY_OK;
}

static int forwarding_header(ferry_view name) {
    return ferry__view_ieq(name, "x-forwarded-for") || ferry__view_ieq(name, "x-forwarded-proto") ||
           ferry__view_ieq(name, "x-forwarded-host");
}

/* "NAME: " then every value of the client's NAME headers joined by ", " (only when
 * `keep`), then `ours`. */
static ferry_err append_chain(ferry__bytes *out, ferry__bytes_pool *a, const ferry__header_list *l,
                              const char *name, int keep, const char *ours, size_t ours_len) {
    APPEND_STR(out, a, name);
    APPEND(out, a, ": ", 2);
    for (unsigned i = 0; keep && i < l->count; i++) {
        if (!ferry__view_ieq(l->items[i].name, name[0] == 'V' ? "via" : name[0] == 'F' ? "forwarded"
                                                                           : "x-forwarded-for"))
            continue;
        APPEND(out, a, l->items[i].value.ptr, l->items[i].value.len);
        APPEND(out, a, ", ", 2);
    }
    APPEND(out, a, ours, ours_len);
    APPEND(out, a, "\r\n", 2);
    return FERRY_OK;
}

/* The forwarding headers ferry adds (see FERRY__FW_*): a trusted forwarder's values are
 * extended, anyone else's replaced, so that a client cannot claim another address. */
static ferry_err append_forwarding(ferry__bytes *out, ferry__bytes_pool *a, const ferry_txn *t,
                                   int fw) {
    const ferry__header_list *l = &t->req_headers;
    const ferry_session_info *s = ferry__http_conn_info(t->conn);
    int keep = (fw & FERRY__FW_TRUSTED) != 0;
    if (fw & FERRY__FW_XFF) {
        if (append_chain(out, a, l, "X-Forwarded-For", keep, s->client_addr, strlen(s->client_addr)))
            return FERRY_ENOMEM;
        if (!(keep && find(l, "x-forwarded-proto").ptr)) APPEND_STR(out, a, "X-Forwarded-Proto: http\r\n");
        if (!(keep && find(l, "x-forwarded-host").ptr) && t->host.len &&
            append_header(out, a, (ferry_view){"X-Forwarded-Host", 16}, t->host))
            return FERRY_ENOMEM;
    }
    if (fw & FERRY__FW_RFC7239) { /* for=; IPv6 quoted and bracketed (RFC 7239 section 6) */
        char node[FERRY_ADDRSTR_MAX + 16];
        int v6 = strchr(s->client_addr, ':') != NULL;
        int n = snprintf(node, sizeof node, v6 ? "for=\"[%s]\";proto=http" : "for=%s;proto=http",
                         s->client_addr);
        if (append_chain(out, a, l, "Forwarded", keep, node, (size_t)n)) return FERRY_ENOMEM;
    }
    if ((fw & FERRY__FW_VIA) && append_chain(out, a, l, "Via", 1, "1.1 ferry", 9)) return FERRY_ENOMEM;
    return FERRY_OK;
}

ferry_err ferry__http_write_request_head(ferry__bytes *out, ferry__bytes_pool *a,
                                         const ferry_txn *t, int body, uint64_t length,
                                         int upgrade) {
    const ferry__header_list *l = &t->req_headers;
    int fw = ferry__http_conn_forwarded(t->conn);
    int conn = connection_names_fields(l);
    APPEND(out, a, t->req.method.ptr, t->req.method.len);
    APPEND(out, a, " ", 1);
    ferry_view target = t->upstream_target.len ? t->upstream_target : t->req.target;
    APPEND(out, a, target.ptr, target.len);
    APPEND_STR(out, a, " HTTP/1.1\r\n");
    if (t->parent_auth) {
        APPEND_STR(out, a, "Proxy-Authorization: ");
        APPEND_STR(out, a, t->parent_auth);
        APPEND(out, a, "\r\n", 2);
    }
    for (unsigned i = 0; i < l->count; i++) {
        ferry_view n = l->items[i].name;
        if (conn ? ferry__http_hop_by_hop(n, l) : hop_fixed(n)) continue;
        /* Written below, extended or replaced; the trusted forwarder's Proto/Host stay. */
        if ((fw & FERRY__FW_XFF) && forwarding_header(n) &&
            (!(fw & FERRY__FW_TRUSTED) || ferry__view_ieq(n, "x-forwarded-for")))
            continue;
        if ((fw & FERRY__FW_RFC7239) && ferry__view_ieq(n, "forwarded")) continue;
        if ((fw & FERRY__FW_VIA) && ferry__view_ieq(n, "via")) continue;
        if (append_header(out, a, n, l->items[i].value)) return FERRY_ENOMEM;
    }
    if (body == FERRY__BODY_LENGTH && append_length(out, a, length)) return FERRY_ENOMEM;
    if (body == FERRY__BODY_CHUNKED) APPEND_STR(out, a, "Transfer-Encoding: chunked\r\n");
    if (upgrade) {
        ferry_view up = find(l, "upgrade");
        APPEND_STR(out, a, "Connection: upgrade\r\n");
        if (append_header(out, a, (ferry_view){"Upgrade", 7}, up)) return FERRY_ENOMEM;
    }
    if (fw && append_forwarding(out, a, t, fw)) return FERRY_ENOMEM;
    APPEND(out, a, "\r\n", 2);
    return FERRY_OK;
}

ferry_err ferry__http_write_response_head(ferry__bytes *out, ferry__bytes_pool *a,
                                          const ferry_txn *t, int body, uint64_t length,
                                          int chunked, int close, int keep_alive_10, int upgrade) {
    const ferry__header_list *l = &t->resp_headers;
    int status = t->resp.status;
    APPEND_STR(out, a, "HTTP/1.1 ");
    if (ferry__bytes_append_u64(out, a, (unsigned long long)status, 0)) return FERRY_ENOMEM;
    APPEND(out, a, " ", 1);
    if (t->resp.reason.len)
        APPEND(out, a, t->resp.reason.ptr, t->resp.reason.len);
    else
        APPEND_STR(out, a, ferry__http_reason(status));
    APPEND(out, a, "\r\n", 2);
    /* HEAD and 304 responses carry the length the full response would have. */
    int keep_length = body == FERRY__BODY_NONE && status >= 200 && status != 204;
    int conn = connection_names_fields(l);
    for (unsigned i = 0; i < l->count; i++) {
        ferry_view n = l->items[i].name;
        if (keep_length && ferry__view_ieq(n, "content-length")) {
            if (append_header(out, a, n, l->items[i].value)) return FERRY_ENOMEM;
            continue;
        }
        if (conn ? ferry__http_hop_by_hop(n, l) : hop_fixed(n)) continue;
        if (append_header(out, a, n, l->items[i].value)) return FERRY_ENOMEM;
    }
    if (body == FERRY__BODY_LENGTH && append_length(out, a, length)) return FERRY_ENOMEM;
    if (chunked) APPEND_STR(out, a, "Transfer-Encoding: chunked\r\n");
    if (upgrade) {
        ferry_view up = find(l, "upgrade");
        APPEND_STR(out, a, "Connection: upgrade\r\n");
        if (append_header(out, a, (ferry_view){"Upgrade", 7}, up)) return FERRY_ENOMEM;
    } else if (close) {
        APPEND_STR(out, a, "Connection: close\r\n");
    } else if (keep_alive_10) {
        APPEND_STR(out, a, "Connection: keep-alive\r\n");
    }
    APPEND(out, a, "\r\n", 2);
    return FERRY_OK;
}

const char *ferry__http_reason(int status) {
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 407: return "Proxy Authentication Required";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 417: return "Expectation Failed";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return status < 400 ? "OK" : status < 500 ? "Client Error" : "Server Error";
    }
}

ferry_err ferry__http_write_simple(ferry__bytes *out, ferry__bytes_pool *a, int status,
                                   const char *content_type, const char *body, size_t body_len,
                                   const char *extra_headers, int close, int head_only) {
    char line[96];
    snprintf(line, sizeof line, "HTTP/1.1 %d %s\r\n", status, ferry__http_reason(status));
    APPEND_STR(out, a, line);
    if (content_type) {
        APPEND_STR(out, a, "Content-Type: ");
        APPEND_STR(out, a, content_type);
        APPEND(out, a, "\r\n", 2);
    }
    if (append_length(out, a, body_len)) return FERRY_ENOMEM;
    if (extra_headers) APPEND_STR(out, a, extra_headers);
    if (close) APPEND_STR(out, a, "Connection: close\r\n");
    APPEND(out, a, "\r\n", 2);
    if (!head_only && body_len) APPEND(out, a, body, body_len);
    return FERRY_OK;
}
