/* Asynchronous line writer. Callers copy (and escape) a line into `pending` under `lock`;
 * one thread swaps `pending` with its empty `spare` and calls write(2) outside the lock,
 * so a slow disk or a stuck pipe costs dropped lines, never a blocked worker loop.
 *
 * Locking: `lock` guards pending/pending_len/pending_cap and `stopping`. `spare` and
 * `spare_cap` belong to the writer thread alone (and to ferry_logger_free after the join). */
#define _POSIX_C_SOURCE 200809L
#include "ferry/logger.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

enum {
    DEFAULT_MAX_PENDING = 1 << 20,
    MIN_BUFFER = 4096,
    TIME_MAX = 48 /* "YYYY-MM-DDTHH:MM:SS.mmmZ", with room for far-off years */
};

struct ferry_logger {
    ferry_allocator alloc;
    int fd;
    int owns_fd; /* 0 for stdout/stderr: those belong to the application */
    size_t max_pending;

    pthread_mutex_t lock;
    pthread_cond_t wake; /* signaled when pending goes from empty to non-empty, and at stop */
    int stopping;
    char *pending;
    size_t pending_len, pending_cap;

    char *spare; /* writer thread only */
    size_t spare_cap;

    pthread_t thread;
    _Atomic uint64_t dropped;
};

/* ---- escaping ---- */

static const char hex[] = "0123456789abcdef";

/* Control bytes would let a logged value forge line breaks or terminal sequences. */
static int is_ctl(unsigned char c) { return c < 0x20 || c == 0x7f; }

/* ---- bounded output, snprintf-style: counts everything, stores what fits ---- */

typedef struct out {
    char *buf;
    size_t size, len;
} out;

static void put(out *o, const char *s, size_t n) {
    if (o->len < o->size) {
        size_t room = o->size - o->len;
        memcpy(o->buf + o->len, s, n < room ? n : room);
    }
    o->len += n;
}

static void put_str(out *o, const char *s) { put(o, s, strlen(s)); }
static void put_ch(out *o, char c) { put(o, &c, 1); }

/* Decimal, left-padded with zeros to `width` digits. */
static void put_u64(out *o, uint64_t v, unsigned width) {
    char tmp[24];
    size_t i = sizeof tmp;
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (sizeof tmp - i < width && i > 0) tmp[--i] = '0';
    put(o, tmp + i, sizeof tmp - i);
}

/* Microseconds as milliseconds with three decimals, without floating point. */
static void put_ms(out *o, uint64_t us) {
    put_u64(o, us / 1000, 0);
    put_ch(o, '.');
    put_u64(o, us % 1000, 3);
}

static void put_hex_escape(out *o, const char *prefix, unsigned char c) {
    put_str(o, prefix);
    put_ch(o, hex[c >> 4]);
    put_ch(o, hex[c & 15]);
}

/* Views may carry a NULL ptr when empty; treat any NULL ptr as empty. */
static size_t view_len(ferry_view v) { return v.ptr ? v.len : 0; }

/* TEXT fields are space-separated, so spaces are escaped too, and the backslash as well so
 * that an escaped field decodes back unambiguously. Empty fields become "-". */
static void put_text_bytes(out *o, const char *s, size_t n) {
    if (n == 0) {
        put_ch(o, '-');
        return;
    }
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n; i++) {
        if (is_ctl(p[i]) || p[i] == ' ' || p[i] == '\\')
            put_hex_escape(o, "\\x", p[i]);
        else
            put_ch(o, (char)p[i]);
    }
}

static void put_text_field(out *o, const char *s) { put_text_bytes(o, s, s ? strlen(s) : 0); }
static void put_text_view(out *o, ferry_view v) { put_text_bytes(o, v.ptr, view_len(v)); }

/* Inside the double-quoted fields of the NCSA formats, as Apache's mod_log_config does:
 * '"' and '\\' get a backslash, control bytes become \xHH, so a client cannot close the
 * quotes or break the line. Empty values become "-". */
static void put_clf_bytes(out *o, const char *s, size_t n) {
    if (n == 0) {
        put_ch(o, '-');
        return;
    }
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '"' || p[i] == '\\') {
            put_ch(o, '\\');
            put_ch(o, (char)p[i]);
        } else if (is_ctl(p[i])) {
            put_hex_escape(o, "\\x", p[i]);
        } else {
            put_ch(o, (char)p[i]);
        }
    }
}

static void put_clf_view(out *o, ferry_view v) { put_clf_bytes(o, v.ptr, view_len(v)); }

static void put_json_bytes(out *o, const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    put_ch(o, '"');
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '"' || p[i] == '\\') {
            put_ch(o, '\\');
            put_ch(o, (char)p[i]);
        } else if (is_ctl(p[i])) {
            put_hex_escape(o, "\\u00", p[i]);
        } else {
            put_ch(o, (char)p[i]);
        }
    }
    put_ch(o, '"');
}

static void put_json_string(out *o, const char *s) { put_json_bytes(o, s, s ? strlen(s) : 0); }
static void put_json_view(out *o, ferry_view v) { put_json_bytes(o, v.ptr, view_len(v)); }

/* Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's civil_from_days).
 * Done by hand rather than with gmtime_r so formatting stays pure for any int64 input. */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d) {
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

/* Floor division, so times before 1970 still land on the right second. */
static int64_t floor_div(int64_t a, int64_t b, int64_t *rem) {
    int64_t q = a / b, r = a % b;
    if (r < 0) {
        q--;
        r += b;
    }
    *rem = r;
    return q;
}

typedef struct civil_time {
    int64_t year;
    unsigned month, day, hour, min, sec, ms;
} civil_time;

static civil_time civil_from_us(int64_t unix_us) {
    int64_t rem_us, ms, sod;
    int64_t secs = floor_div(floor_div(unix_us, 1000, &rem_us), 1000, &ms);
    int64_t days = floor_div(secs, 86400, &sod);
    civil_time t;
    civil_from_days(days, &t.year, &t.month, &t.day);
    t.hour = (unsigned)(sod / 3600);
    t.min = (unsigned)(sod / 60 % 60);
    t.sec = (unsigned)(sod % 60);
    t.ms = (unsigned)ms;
    return t;
}

static void put_year(out *o, int64_t y) {
    if (y < 0) put_ch(o, '-');
    put_u64(o, y < 0 ? 0 - (uint64_t)y : (uint64_t)y, 4);
}

/* ISO-8601 UTC with milliseconds: 2026-11-27T05:33:25.123Z */
static void put_time(out *o, int64_t unix_us) {
    civil_time t = civil_from_us(unix_us);
    put_year(o, t.year);
    put_ch(o, '-');
    put_u64(o, t.month, 2);
    put_ch(o, '-');
    put_u64(o, t.day, 2);
    put_ch(o, 'T');
    put_u64(o, t.hour, 2);
    put_ch(o, ':');
    put_u64(o, t.min, 2);
    put_ch(o, ':');
    put_u64(o, t.sec, 2);
    put_ch(o, '.');
    put_u64(o, t.ms, 3);
    put_ch(o, 'Z');
}

/* NCSA time, always UTC, with the brackets: [27/Nov/2026:05:33:25 +0000] */
static void put_clf_time(out *o, int64_t unix_us) {
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    civil_time t = civil_from_us(unix_us);
    put_ch(o, '[');
    put_u64(o, t.day, 2);
    put_ch(o, '/');
    put_str(o, months[t.month - 1]);
    put_ch(o, '/');
    put_year(o, t.year);
    put_ch(o, ':');
    put_u64(o, t.hour, 2);
    put_ch(o, ':');
    put_u64(o, t.min, 2);
    put_ch(o, ':');
    put_u64(o, t.sec, 2);
    put_str(o, " +0000]");
}

static size_t finish(out *o) {
    if (o->size > 0) o->buf[o->len < o->size ? o->len : o->size - 1] = '\0';
    return o->len;
}

/* ---- access records ---- */

/* HTTP listeners always fill in the method; TCP sessions leave every HTTP field empty. */
static int is_http(const ferry_log_record *r) { return view_len(r->method) > 0; }

/* Statuses are three digits; anything else (0: no response) is written as `none`. */
static void put_status(out *o, int status, const char *none) {
    if (status > 0)
        put_u64(o, (uint64_t)status, 0);
    else
        put_str(o, none);
}

/* The forward proxy's authenticated user, NULL when there is none. */
static const char *user_of(const ferry_log_record *r) {
    const ferry_session_info *s = r->session;
    return s && s->user && *s->user ? s->user : NULL;
}

static void format_text(out *o, const ferry_log_record *r) {
    const ferry_session_info *s = r->session;
    put_time(o, r->start_unix_us);
    put_ch(o, ' ');
    const char *client = s ? s->client_addr : "";
    int v6 = s && (s->client_family == AF_INET6 || strchr(client, ':'));
    if (v6) put_ch(o, '[');
    put_text_field(o, client);
    if (v6) put_ch(o, ']');
    put_ch(o, ':');
    put_u64(o, s ? s->client_port : 0, 0);
    put_ch(o, ' ');
    put_text_field(o, s ? s->listener : NULL);
    put_ch(o, ' ');
    put_text_field(o, r->target);
    put_ch(o, ' ');
    put_text_field(o, r->verdict);
    put_ch(o, ' ');
    put_str(o, ferry_err_name((int)r->error));
    put_str(o, " up=");
    put_u64(o, r->bytes_from_client, 0);
    put_str(o, " down=");
    put_u64(o, r->bytes_to_client, 0);
    put_str(o, " connect_ms=");
    put_ms(o, r->connect_us);
    put_str(o, " duration_ms=");
    put_ms(o, r->duration_us);
    put_str(o, " attempts=");
    put_u64(o, r->connect_attempts, 0);
    put_str(o, " id=");
    put_u64(o, s ? s->id : 0, 0);
    if (user_of(r)) {
        put_str(o, " user=");
        put_text_field(o, user_of(r));
    }
    if (is_http(r)) {
        put_str(o, " method=");
        put_text_view(o, r->method);
        put_str(o, " target=");
        put_text_view(o, r->request_target);
        put_str(o, " status=");
        put_status(o, r->status, "0");
        put_str(o, " resp_bytes=");
        put_u64(o, r->response_bytes, 0);
        put_str(o, " first_byte_ms=");
        put_ms(o, r->first_byte_us);
    }
}

static void format_json(out *o, const ferry_log_record *r) {
    const ferry_session_info *s = r->session;
    put_str(o, "{\"time\":\"");
    put_time(o, r->start_unix_us);
    put_str(o, "\",\"client\":");
    put_json_string(o, s ? s->client_addr : "");
    put_str(o, ",\"client_port\":");
    put_u64(o, s ? s->client_port : 0, 0);
    put_str(o, ",\"listener\":");
    put_json_string(o, s ? s->listener : "");
    put_str(o, ",\"target\":");
    put_json_string(o, r->target);
    put_str(o, ",\"verdict\":");
    put_json_string(o, r->verdict);
    put_str(o, ",\"error\":");
    put_json_string(o, ferry_err_name((int)r->error));
    put_str(o, ",\"bytes_from_client\":");
    put_u64(o, r->bytes_from_client, 0);
    put_str(o, ",\"bytes_to_client\":");
    put_u64(o, r->bytes_to_client, 0);
    put_str(o, ",\"connect_us\":");
    put_u64(o, r->connect_us, 0);
    put_str(o, ",\"duration_us\":");
    put_u64(o, r->duration_us, 0);
    put_str(o, ",\"attempts\":");
    put_u64(o, r->connect_attempts, 0);
    put_str(o, ",\"id\":");
    put_u64(o, s ? s->id : 0, 0);
    if (user_of(r)) {
        put_str(o, ",\"user\":");
        put_json_string(o, user_of(r));
    }
    if (is_http(r)) {
        /* "target" above is the upstream, so the request's target gets its own key. */
        put_str(o, ",\"method\":");
        put_json_view(o, r->method);
        put_str(o, ",\"request_target\":");
        put_json_view(o, r->request_target);
        put_str(o, ",\"host\":");
        put_json_view(o, r->host);
        put_str(o, ",\"referer\":");
        put_json_view(o, r->referer);
        put_str(o, ",\"user_agent\":");
        put_json_view(o, r->user_agent);
        put_str(o, ",\"status\":");
        put_status(o, r->status, "0");
        put_str(o, ",\"response_bytes\":");
        put_u64(o, r->response_bytes, 0);
        put_str(o, ",\"first_byte_us\":");
        put_u64(o, r->first_byte_us, 0);
    }
    put_ch(o, '}');
}

/* NCSA Common Log Format:
 *   127.0.0.1 - - [27/Nov/2026:05:33:25 +0000] "GET /path HTTP/1.1" 200 1234
 * and Combined, which adds ` "referer" "user-agent"`. The request's version string is not
 * kept, so the request line always says HTTP/1.1. A TCP session has no request: its line
 * is "-" and its status -. The byte count is the response body, "-" when none. */
static void format_clf(out *o, const ferry_log_record *r, int combined) {
    const ferry_session_info *s = r->session;
    put_text_field(o, s ? s->client_addr : NULL); /* unquoted: escaped like TEXT */
    put_str(o, " - ");
    put_text_field(o, user_of(r)); /* the authenticated user of a forward proxy, else "-" */
    put_ch(o, ' ');
    put_clf_time(o, r->start_unix_us);
    put_str(o, " \"");
    if (is_http(r)) {
        put_clf_view(o, r->method);
        put_ch(o, ' ');
        put_clf_view(o, r->request_target);
        put_str(o, " HTTP/1.1");
    } else {
        put_ch(o, '-');
    }
    put_str(o, "\" ");
    put_status(o, is_http(r) ? r->status : 0, "-");
    put_ch(o, ' ');
    if (r->response_bytes)
        put_u64(o, r->response_bytes, 0);
    else
        put_ch(o, '-');
    if (combined) {
        put_str(o, " \"");
        put_clf_view(o, r->referer);
        put_str(o, "\" \"");
        put_clf_view(o, r->user_agent);
        put_ch(o, '"');
    }
}

size_t ferry_access_format_record(ferry_access_format format, const ferry_log_record *record,
                                  char *buf, size_t size) {
    out o = {buf, buf ? size : 0, 0};
    if (record) {
        /* Unknown formats fall back to TEXT rather than silently losing the line. */
        switch (format) {
        case FERRY_ACCESS_JSON: format_json(&o, record); break;
        case FERRY_ACCESS_COMMON: format_clf(&o, record, 0); break;
        case FERRY_ACCESS_COMBINED: format_clf(&o, record, 1); break;
        case FERRY_ACCESS_TEXT:
        default: format_text(&o, record); break;
        }
    }
    return finish(&o);
}

/* ---- the writer thread ---- */

static int write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            /* stdout/stderr may be a non-blocking pipe the application set up: wait. */
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            if (poll(&pfd, 1, -1) >= 0 || errno == EINTR) continue;
        }
        return -1;
    }
    return 0;
}

/* Every queued line ends in exactly one '\n' (escaping removed any other). */
static uint64_t count_lines(const char *p, size_t n) {
    uint64_t k = 0;
    for (const char *end = p + n; (p = memchr(p, '\n', (size_t)(end - p))) != NULL; p++) k++;
    return k;
}

static void *writer_main(void *arg) {
    ferry_logger *lg = arg;
    pthread_mutex_lock(&lg->lock);
    for (;;) {
        while (!lg->stopping && lg->pending_len == 0) pthread_cond_wait(&lg->wake, &lg->lock);
        if (lg->pending_len == 0) break; /* stopping, and everything is out */
        char *batch = lg->pending;
        size_t batch_cap = lg->pending_cap, n = lg->pending_len;
        lg->pending = lg->spare;
        lg->pending_cap = lg->spare_cap;
        lg->pending_len = 0;
        lg->spare = batch;
        lg->spare_cap = batch_cap;
        pthread_mutex_unlock(&lg->lock);
        if (write_all(lg->fd, batch, n) < 0)
            atomic_fetch_add_explicit(&lg->dropped, count_lines(batch, n), memory_order_relaxed);
        pthread_mutex_lock(&lg->lock);
    }
    pthread_mutex_unlock(&lg->lock);
    return NULL;
}

/* The thread starts with every signal blocked, so process signals land on the
 * application's threads and a closed pipe gives EPIPE instead of killing the process. */
static int start_thread(ferry_logger *lg) {
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&lg->thread, NULL, writer_main, lg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

/* ---- lifecycle ---- */

ferry_err ferry_logger_new(const char *path, size_t max_pending,
                           const ferry_allocator *allocator, ferry_logger **out_logger) {
    if (!out_logger) return FERRY_EINVAL;
    *out_logger = NULL;
    if (!path) return FERRY_EINVAL;
    ferry_allocator alloc;
    ferry__allocator_init(&alloc, allocator);
    ferry_logger *lg = ferry__calloc(&alloc, sizeof *lg);
    if (!lg) return FERRY_ENOMEM;
    lg->alloc = alloc;
    lg->fd = -1;
    lg->max_pending = max_pending ? max_pending : DEFAULT_MAX_PENDING;
    atomic_init(&lg->dropped, 0);

    int have_lock = 0, have_wake = 0, saved_errno;
    if (!(have_lock = pthread_mutex_init(&lg->lock, NULL) == 0)) goto fail;
    if (!(have_wake = pthread_cond_init(&lg->wake, NULL) == 0)) goto fail;
    if (strcmp(path, "-") == 0) {
        lg->fd = STDOUT_FILENO;
    } else if (strcmp(path, "stderr") == 0) {
        lg->fd = STDERR_FILENO;
    } else {
        lg->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
        if (lg->fd < 0) goto fail;
        lg->owns_fd = 1;
    }
    int rc = start_thread(lg);
    if (rc != 0) {
        errno = rc; /* pthread_create reports through its result, not errno */
        goto fail;
    }
    *out_logger = lg;
    return FERRY_OK;
fail:
    saved_errno = errno; /* left for the caller to report, e.g. which open(2) error */
    if (lg->owns_fd) close(lg->fd);
    if (have_wake) pthread_cond_destroy(&lg->wake);
    if (have_lock) pthread_mutex_destroy(&lg->lock);
    ferry__free(&alloc, lg);
    errno = saved_errno;
    return FERRY_ESYS;
}

void ferry_logger_free(ferry_logger *lg) {
    if (!lg) return;
    pthread_mutex_lock(&lg->lock);
    lg->stopping = 1;
    pthread_cond_signal(&lg->wake);
    pthread_mutex_unlock(&lg->lock);
    pthread_join(lg->thread, NULL); /* the thread drains pending before it exits */
    if (lg->owns_fd) close(lg->fd);
    pthread_cond_destroy(&lg->wake);
    pthread_mutex_destroy(&lg->lock);
    ferry__free(&lg->alloc, lg->pending);
    ferry__free(&lg->alloc, lg->spare);
    ferry__free(&lg->alloc, lg);
}

uint64_t ferry_logger_dropped(const ferry_logger *lg) {
    return lg ? atomic_load_explicit(&lg->dropped, memory_order_relaxed) : 0;
}

/* ---- queueing ---- */

/* Bytes `s` takes once escaped, added to *need; stops counting past `limit` so a huge
 * line is rejected cheaply and the sum cannot overflow. */
static void add_escaped_len(size_t *need, const char *s, size_t n, size_t limit) {
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n && *need <= limit; i++) *need += is_ctl(p[i]) ? 4 : 1;
}

static char *copy_escaped(char *dst, const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n; i++) {
        if (is_ctl(p[i])) {
            *dst++ = '\\';
            *dst++ = 'x';
            *dst++ = hex[p[i] >> 4];
            *dst++ = hex[p[i] & 15];
        } else {
            *dst++ = (char)p[i];
        }
    }
    return dst;
}

static void drop(ferry_logger *lg) {
    atomic_fetch_add_explicit(&lg->dropped, 1, memory_order_relaxed);
}

/* Queue head + tail + '\n' as one line (two parts so log_fn needs no temporary copy). */
static void queue_line(ferry_logger *lg, const char *head, size_t head_len, const char *tail,
                       size_t tail_len) {
    size_t need = 1;
    add_escaped_len(&need, head, head_len, lg->max_pending);
    add_escaped_len(&need, tail, tail_len, lg->max_pending);
    if (need > lg->max_pending) {
        drop(lg);
        return;
    }
    pthread_mutex_lock(&lg->lock);
    if (lg->pending_len + need > lg->max_pending) goto drop_locked;
    if (lg->pending_len + need > lg->pending_cap) {
        /* Grow geometrically up to max_pending; after warm-up both buffers stay sized. */
        size_t cap = lg->pending_cap ? lg->pending_cap * 2 : MIN_BUFFER;
        if (cap < lg->pending_len + need) cap = lg->pending_len + need;
        if (cap > lg->max_pending) cap = lg->max_pending;
        char *p = ferry__realloc(&lg->alloc, lg->pending, cap);
        if (!p) goto drop_locked;
        lg->pending = p;
        lg->pending_cap = cap;
    }
    int was_empty = lg->pending_len == 0;
    char *dst = lg->pending + lg->pending_len;
    dst = copy_escaped(dst, head, head_len);
    dst = copy_escaped(dst, tail, tail_len);
    *dst++ = '\n';
    lg->pending_len = (size_t)(dst - lg->pending);
    /* The thread only sleeps while pending is empty, so only that transition wakes it. */
    if (was_empty) pthread_cond_signal(&lg->wake);
    pthread_mutex_unlock(&lg->lock);
    return;
drop_locked:
    pthread_mutex_unlock(&lg->lock);
    drop(lg);
}

void ferry_logger_write(ferry_logger *lg, const char *line, size_t len) {
    if (!lg || (!line && len)) return;
    queue_line(lg, line, len, NULL, 0);
}

static const char *level_name(ferry_log_level level) {
    switch (level) {
    case FERRY_LOG_ERROR: return "error";
    case FERRY_LOG_WARN: return "warn";
    case FERRY_LOG_INFO: return "info";
    case FERRY_LOG_DEBUG: return "debug";
    }
    return "unknown";
}

void ferry_logger_log_fn(void *logger, ferry_log_level level, const char *message) {
    if (!logger) return;
    char prefix[TIME_MAX + 16];
    out o = {prefix, sizeof prefix, 0};
    put_time(&o, ferry__wall_us());
    put_str(&o, " [");
    put_str(&o, level_name(level));
    put_str(&o, "] ");
    size_t n = finish(&o);
    if (!message) message = "";
    queue_line(logger, prefix, n < sizeof prefix ? n : sizeof prefix - 1, message,
               strlen(message));
}
