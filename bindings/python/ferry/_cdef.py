"""cffi declarations for libferry, written by hand from include/ferry.h and include/ferry/*.h.

ABI mode: cffi computes struct layouts from these declarations with the platform's C ABI,
so every struct below must list all fields, in header order, with the header's types.
Keep in sync with the headers (tests/test_basic.py checks a few sizes and the error table).
"""
import os
import re

# Fallback copy of include/ferry/errors.def (values are stable ABI: append, never renumber).
_ERRORS_FALLBACK = [
    ("OK", 0, "success"),
    ("ENOMEM", 1, "out of memory"),
    ("EINVAL", 2, "invalid argument"),
    ("ESTATE", 3, "operation not valid in the current state"),
    ("EADDRINUSE", 4, "address already in use"),
    ("EADDR", 5, "malformed address (expected HOST:PORT or [V6]:PORT)"),
    ("ESYS", 6, "system call failed"),
    ("ETIMEDOUT", 7, "timed out"),
    ("ECONNREFUSED", 8, "connection refused"),
    ("ERESOLVE", 9, "name resolution failed"),
    ("ECANCELED", 10, "operation canceled"),
    ("ECLOSED", 11, "connection closed by peer"),
    ("ECONNRESET", 12, "connection reset by peer"),
    ("ELIMIT", 13, "configured limit reached"),
    ("ENOTSUP", 14, "not supported"),
    ("EREJECTED", 15, "rejected by policy or hook"),
    ("ENOUPSTREAM", 16, "no upstream available"),
    ("EUPSTREAM", 17, "upstream connection failed"),
    ("EDRAIN", 18, "closed while draining at shutdown"),
    ("EPROTO", 19, "protocol error"),
    ("EADDRNOTAVAIL", 20, "address not available on this host"),
    ("EAUTH", 21, "authentication required or failed"),
    ("ECONFIG", 22, "invalid configuration"),
]

_ERROR_RE = re.compile(r'^\s*FERRY_ERROR\(\s*(\w+)\s*,\s*(\d+)\s*,\s*"((?:[^"\\]|\\.)*)"\s*\)')


def errors_def_path():
    """include/ferry/errors.def of the source tree this package sits in, or None."""
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.normpath(os.path.join(here, "..", "..", "..", "include", "ferry", "errors.def"))
    return path if os.path.isfile(path) else None


def parse_errors_def(path):
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = _ERROR_RE.match(line)
            if m:
                out.append((m.group(1), int(m.group(2)), m.group(3)))
    return out


def load_errors():
    """The error table: from errors.def when the source tree is at hand, else the copy above."""
    path = errors_def_path()
    if path:
        table = parse_errors_def(path)
        if table:
            return table
    return list(_ERRORS_FALLBACK)


ERRORS = load_errors()


def _err_enum(table):
    members = ["    FERRY_%s = %d," % (name, value) for name, value, _ in table]
    count = max(v for _, v, _ in table) + 1
    members.append("    FERRY_ERR_COUNT_ = %d" % count)
    return "typedef enum ferry_err {\n%s\n} ferry_err;\n" % "\n".join(members)


CDEF = _err_enum(ERRORS) + r"""
/* error.h */
const char *ferry_strerror(int err);
const char *ferry_err_name(int err);

/* version.h */
const char *ferry_version(void);
unsigned ferry_version_number(void);

/* alloc.h */
typedef struct ferry_allocator {
    void *(*malloc)(void *user_data, size_t size);
    void *(*realloc)(void *user_data, void *ptr, size_t size);
    void (*free)(void *user_data, void *ptr);
    void *user_data;
} ferry_allocator;

/* view.h */
typedef struct ferry_view {
    const char *ptr;
    size_t len;
} ferry_view;

typedef struct ferry_http_header {
    ferry_view name;
    ferry_view value;
} ferry_http_header;

/* session.h */
enum { FERRY_HOST_MAX = 256, FERRY_ADDRSTR_MAX = 64 };

typedef struct ferry_backend ferry_backend;

typedef enum ferry_parent_kind {
    FERRY_PARENT_HTTP = 1,
    FERRY_PARENT_SOCKS5 = 2
} ferry_parent_kind;

enum { FERRY_CRED_MAX = 256, FERRY_NAME_MAX = 64 };

typedef struct ferry_parent {
    ferry_parent_kind kind;
    char name[64];                       /* FERRY_NAME_MAX */
    char host[256];                      /* FERRY_HOST_MAX */
    uint16_t port;
    char user[256];                      /* FERRY_CRED_MAX */
    char password[256];
} ferry_parent;

typedef enum ferry_proxy_protocol {
    FERRY_PROXY_NONE = 0,
    FERRY_PROXY_HTTP = 1,
    FERRY_PROXY_CONNECT = 2,
    FERRY_PROXY_SOCKS4 = 3,
    FERRY_PROXY_SOCKS5 = 4,
    FERRY_PROXY_SOCKS5_UDP = 5
} ferry_proxy_protocol;

typedef struct ferry_target {
    char host[256];                      /* FERRY_HOST_MAX */
    uint16_t port;
    ferry_backend *backend;
    const ferry_parent *parent;
} ferry_target;

typedef struct ferry_session_info {
    uint64_t id;
    unsigned worker;
    const char *listener;
    int client_family;
    unsigned char client_ip[16];
    uint16_t client_port;
    char client_addr[64];                /* FERRY_ADDRSTR_MAX */
    int proxy_protocol;
    const char *dest_host;
    uint16_t dest_port;
    const char *method;
    const char *user;
    const struct ferry_txn *txn;
} ferry_session_info;

typedef struct ferry_log_record {
    const ferry_session_info *session;
    const char *target;
    const char *verdict;
    ferry_err error;
    uint64_t bytes_from_client;
    uint64_t bytes_to_client;
    uint64_t connect_us;
    uint64_t duration_us;
    int64_t start_unix_us;
    unsigned connect_attempts;
    ferry_view method;
    ferry_view request_target;
    ferry_view host;
    ferry_view referer;
    ferry_view user_agent;
    int status;
    uint64_t first_byte_us;
    uint64_t response_bytes;
} ferry_log_record;

/* http.h */
typedef struct ferry_txn ferry_txn;

typedef enum ferry_txn_part {
    FERRY_TXN_REQUEST = 0,
    FERRY_TXN_RESPONSE = 1
} ferry_txn_part;

const ferry_session_info *ferry_txn_session(const ferry_txn *txn);
ferry_view ferry_txn_method(const ferry_txn *txn);
ferry_view ferry_txn_target(const ferry_txn *txn);
int ferry_txn_status(const ferry_txn *txn);
unsigned ferry_txn_header_count(const ferry_txn *txn, ferry_txn_part part);
ferry_err ferry_txn_header_at(const ferry_txn *txn, ferry_txn_part part, unsigned i,
                              ferry_http_header *out);
ferry_err ferry_txn_header_get(const ferry_txn *txn, ferry_txn_part part,
                               const char *name, ferry_view *value);
ferry_err ferry_txn_header_set(ferry_txn *txn, ferry_txn_part part, const char *name,
                               const char *value);
ferry_err ferry_txn_header_add(ferry_txn *txn, ferry_txn_part part, const char *name,
                               const char *value);
ferry_err ferry_txn_header_remove(ferry_txn *txn, ferry_txn_part part, const char *name);
ferry_err ferry_txn_respond(ferry_txn *txn, int status, const char *content_type,
                            const char *body, size_t body_len);
ferry_err ferry_txn_set_reject_status(ferry_txn *txn, int status);
ferry_err ferry_txn_set_target(ferry_txn *txn, const char *target);
ferry_err ferry_txn_set_upstream_limits(ferry_txn *txn, unsigned connect_timeout_ms,
                                        unsigned response_timeout_ms,
                                        uint64_t max_body_bytes);
ferry_err ferry_txn_set_backend_host(ferry_txn *txn, int on);
ferry_err ferry_txn_body_write(ferry_txn *txn, const char *data, size_t len);
typedef struct ferry_txn_ticket ferry_txn_ticket;
ferry_txn_ticket *ferry_txn_pause(ferry_txn *txn);
ferry_err ferry_txn_resume(ferry_txn_ticket *ticket, int verdict, int status);

/* hooks.h */
typedef enum ferry_verdict {
    FERRY_CONTINUE = 0,
    FERRY_REJECT = 1,
    FERRY_RESPOND = 2,
    FERRY_PAUSE = 3
} ferry_verdict;

typedef struct ferry_hook_ops {
    ferry_verdict (*on_accept)(void *user_data, const ferry_session_info *session);
    ferry_verdict (*on_route)(void *user_data, const ferry_session_info *session,
                              unsigned attempt, ferry_target *target);
    void (*on_close)(void *user_data, const ferry_session_info *session);
    void (*on_log)(void *user_data, const ferry_log_record *record);
    ferry_verdict (*on_request)(void *user_data, ferry_txn *txn);
    ferry_verdict (*on_upstream_request)(void *user_data, ferry_txn *txn);
    ferry_verdict (*on_response)(void *user_data, ferry_txn *txn);
    ferry_verdict (*on_body)(void *user_data, ferry_txn *txn, ferry_txn_part part,
                             ferry_view data, int last);
    ferry_verdict (*on_auth)(void *user_data, const ferry_session_info *session,
                             const char *user, const char *password);
} ferry_hook_ops;

typedef struct ferry_hooks {
    const ferry_hook_ops *ops;
    void *user_data;
} ferry_hooks;

/* direction.h */
typedef enum ferry_error_answer {
    FERRY_ANSWER_CLOSE = 0,
    FERRY_ANSWER_RESET = 1
} ferry_error_answer;

typedef struct ferry_direction_ops {
    const char *name;
    ferry_err (*pick)(void *policy_data, const ferry_session_info *session, unsigned attempt,
                      uintptr_t *state, ferry_target *target);
    void (*connect_result)(void *policy_data, const ferry_target *target, ferry_err result);
    ferry_error_answer (*answer_error)(void *policy_data, const ferry_session_info *session,
                                       ferry_err err);
    int client_names_destination;
    ferry_err (*admit_client)(void *policy_data, const ferry_session_info *session,
                              const char **reason);
    ferry_err (*authenticate)(void *policy_data, const ferry_session_info *session,
                              const char *user, const char *password);
    ferry_err (*admit)(void *policy_data, const ferry_session_info *session, const char **reason);
    ferry_err (*admit_address)(void *policy_data, const ferry_session_info *session,
                               const struct sockaddr *addr, const char **reason);
    void (*edit_request)(void *policy_data, ferry_txn *txn);
    ferry_verdict (*route_request)(void *policy_data, ferry_txn *txn);
    void (*attached)(void *policy_data, ferry_backend *backend);
    void (*detached)(void *policy_data, ferry_backend *backend);
} ferry_direction_ops;

const ferry_direction_ops *ferry_direction_reverse(void);

/* forward.h */
typedef struct ferry_forward ferry_forward;

typedef enum ferry_anonymity {
    FERRY_ANON_TRANSPARENT = 0,
    FERRY_ANON_ANONYMOUS = 1,
    FERRY_ANON_STRICT = 2
} ferry_anonymity;

typedef int64_t (*ferry_clock_fn)(void *user_data);

const ferry_direction_ops *ferry_direction_forward(void);
ferry_err ferry_forward_new(const ferry_allocator *allocator, ferry_forward **out);
void ferry_forward_free(ferry_forward *fwd);
ferry_err ferry_forward_add_rule(ferry_forward *fwd, const char *rule, char *err,
                                 size_t err_size);
ferry_err ferry_forward_allow_client(ferry_forward *fwd, const char *cidr);
ferry_err ferry_forward_allow_dest(ferry_forward *fwd, const char *cidr);
ferry_err ferry_forward_set_connect_ports(ferry_forward *fwd, const char *ports);
ferry_err ferry_forward_set_anonymity(ferry_forward *fwd, ferry_anonymity level);
ferry_err ferry_forward_set_header_allow(ferry_forward *fwd, const char *names);
ferry_err ferry_forward_add_user(ferry_forward *fwd, const char *user, const char *password);
ferry_err ferry_forward_load_users(ferry_forward *fwd, const char *path, char *err,
                                   size_t err_size);
ferry_err ferry_forward_add_parent(ferry_forward *fwd, const char *name, const char *url,
                                   char *err, size_t err_size);
ferry_err ferry_forward_add_route(ferry_forward *fwd, const char *host_pattern,
                                  const char *parents, char *err, size_t err_size);
const ferry_parent *ferry_forward_parent(const ferry_forward *fwd, const char *name);
ferry_err ferry_parent_parse(const char *url, ferry_parent *out);
void ferry_forward_set_clock(ferry_forward *fwd, ferry_clock_fn now, void *user_data);
ferry_err ferry_forward_load_config(ferry_forward *fwd, const char *path, char *err,
                                    size_t err_size);
ferry_err ferry_forward_parse_config(ferry_forward *fwd, const char *text, size_t len,
                                     const char *name, char *err, size_t err_size);
unsigned ferry_forward_listen_count(const ferry_forward *fwd);
const char *ferry_forward_listen_at(const ferry_forward *fwd, unsigned i);
unsigned ferry_forward_workers(const ferry_forward *fwd);
const char *ferry_forward_access_log(const ferry_forward *fwd);
int ferry_forward_is_open(const ferry_forward *fwd);

/* pool.h */
typedef struct ferry_engine ferry_engine;
typedef struct ferry_pool ferry_pool;

ferry_err ferry_pool_new(ferry_engine *engine, const char *name, ferry_pool **out);
ferry_err ferry_pool_add(ferry_pool *pool, const char *address, unsigned weight,
                         ferry_backend **out);
ferry_err ferry_pool_remove(ferry_pool *pool, ferry_backend *backend);
ferry_err ferry_pool_set_down_time(ferry_pool *pool, unsigned ms);

typedef enum ferry_passive_flags {
    FERRY_PASSIVE_CONNECT = 1,
    FERRY_PASSIVE_RESPONSES = 2,
    FERRY_PASSIVE_5XX = 4
} ferry_passive_flags;

ferry_err ferry_pool_set_passive_checks(ferry_pool *pool, unsigned max_fails, unsigned flags);

typedef enum ferry_balance {
    FERRY_BALANCE_ROUND_ROBIN = 0,
    FERRY_BALANCE_LEAST_CONN = 1,
    FERRY_BALANCE_RANDOM2 = 2,
    FERRY_BALANCE_HASH_CLIENT = 3,
    FERRY_BALANCE_HASH_URI = 4,
    FERRY_BALANCE_HASH_HEADER = 5,
    FERRY_BALANCE_HASH_COOKIE = 6
} ferry_balance;

ferry_err ferry_pool_set_balancer(ferry_pool *pool, ferry_balance kind, const char *key);
ferry_err ferry_pool_set_resolve_interval(ferry_pool *pool, unsigned ms);
ferry_err ferry_pool_set_sticky_cookie(ferry_pool *pool, const char *name, const char *secret);

typedef enum ferry_health_kind {
    FERRY_HEALTH_NONE = 0,
    FERRY_HEALTH_TCP = 1,
    FERRY_HEALTH_HTTP = 2
} ferry_health_kind;

typedef struct ferry_health_opts {
    ferry_health_kind kind;
    const char *path;
    const char *host;
    unsigned interval_ms;
    unsigned timeout_ms;
    unsigned rise;
    unsigned fall;
    int status_min;
    int status_max;
} ferry_health_opts;

void ferry_health_opts_init(ferry_health_opts *opts);
ferry_err ferry_pool_set_health_check(ferry_pool *pool, const ferry_health_opts *opts);
unsigned ferry_pool_size(const ferry_pool *pool);
const char *ferry_backend_address(const ferry_backend *backend);
int ferry_backend_is_down(const ferry_backend *backend);
ferry_err ferry_backend_set_draining(ferry_backend *backend, int draining);
int ferry_backend_is_draining(const ferry_backend *backend);
ferry_err ferry_backend_set_weight(ferry_backend *backend, unsigned weight);
unsigned ferry_backend_weight(const ferry_backend *backend);
unsigned ferry_backend_active(const ferry_backend *backend);

/* router.h */
typedef struct ferry_router ferry_router;

typedef enum ferry_path_match {
    FERRY_PATH_PREFIX = 0,
    FERRY_PATH_EXACT = 1,
    FERRY_PATH_REGEX = 2
} ferry_path_match;

typedef struct ferry_route_opts {
    const char *host;
    ferry_path_match match;
    const char *path;
    const char *methods;
    ferry_pool *pool;
    const char *strip_prefix;
    const char *add_prefix;
    int backend_host;
    const char *set_headers;
    const char *remove_headers;
    unsigned connect_timeout_ms;
    unsigned response_timeout_ms;
    uint64_t max_body_bytes;
    const char *name;
    const char *cookie_domain;
    const char *public_cookie_domain;
    const char *substitutions;
    int substitute_icase;
} ferry_route_opts;

void ferry_route_opts_init(ferry_route_opts *opts);
const ferry_direction_ops *ferry_direction_router(void);
ferry_err ferry_router_new(const ferry_allocator *allocator, ferry_router **out);
void ferry_router_free(ferry_router *router);
ferry_err ferry_router_add(ferry_router *router, const ferry_route_opts *opts,
                           char *err, size_t err_size);
unsigned ferry_router_size(const ferry_router *router);

/* engine.h */
typedef struct ferry_listener ferry_listener;
typedef struct ferry_logger ferry_logger;

typedef enum ferry_log_level {
    FERRY_LOG_ERROR = 0,
    FERRY_LOG_WARN = 1,
    FERRY_LOG_INFO = 2,
    FERRY_LOG_DEBUG = 3
} ferry_log_level;

typedef enum ferry_poller {
    FERRY_POLLER_DEFAULT = 0,
    FERRY_POLLER_EPOLL = 1,
    FERRY_POLLER_POLL = 2
} ferry_poller;

typedef void (*ferry_log_fn)(void *user_data, ferry_log_level level, const char *message);

typedef struct ferry_engine_opts {
    unsigned workers;
    ferry_poller poller;
    unsigned resolver_threads;
    unsigned dns_ttl_ms;
    unsigned dns_negative_ttl_ms;
    unsigned max_connections;
    unsigned stop_drain_ms;
    unsigned buffer_size;
    unsigned pipe_size;
    const ferry_allocator *allocator;
    ferry_log_fn log;
    void *log_user_data;
    ferry_log_level log_level;
} ferry_engine_opts;

void ferry_engine_opts_init(ferry_engine_opts *opts);
ferry_err ferry_engine_new(const ferry_engine_opts *opts, ferry_engine **out);
void ferry_engine_free(ferry_engine *engine);

typedef enum ferry_protocol {
    FERRY_PROTO_TCP = 0,
    FERRY_PROTO_HTTP = 1,
    FERRY_PROTO_SOCKS = 2,
    FERRY_PROTO_HTTP_SOCKS = 3,
    FERRY_PROTO_SNI = 4
} ferry_protocol;

typedef struct ferry_listener_opts {
    const char *address;
    const char *name;
    ferry_protocol protocol;
    const ferry_direction_ops *direction;
    void *direction_data;
    ferry_hooks hooks;
    int backlog;
    unsigned connect_timeout_ms;
    unsigned idle_timeout_ms;
    unsigned max_connect_attempts;
    unsigned high_water;
    int splice;
    ferry_logger *access_log;
    int access_format;
    unsigned max_request_line;
    unsigned max_header_bytes;
    unsigned max_headers;
    uint64_t max_body_bytes;
    unsigned header_timeout_ms;
    unsigned keepalive_timeout_ms;
    unsigned response_timeout_ms;
    unsigned body_timeout_ms;
    unsigned upstream_idle_timeout_ms;
    unsigned upstream_max_idle;
    int forwarded_headers;
    unsigned request_buffer_bytes;
    unsigned udp_idle_timeout_ms;
    unsigned udp_max_datagram;
    int accept_proxy;
    const char *proxy_trusted;
    int send_proxy;
    int rewrite_responses;
    const char *public_scheme;
    int hide_backend_headers;
    const char *trusted_forwarders;
    int forwarded_rfc7239;
    int add_via;
} ferry_listener_opts;

void ferry_listener_opts_init(ferry_listener_opts *opts);
ferry_err ferry_engine_listen(ferry_engine *engine, const ferry_listener_opts *opts,
                              ferry_listener **out);
uint16_t ferry_listener_port(const ferry_listener *listener);
ferry_err ferry_engine_take_listeners(ferry_engine *engine, ferry_engine *previous);

/* reverse_config.h */
typedef struct ferry_reverse_config ferry_reverse_config;
ferry_err ferry_reverse_config_load(const char *path, const ferry_allocator *allocator,
                                    ferry_reverse_config **out, char *err, size_t err_size);
ferry_err ferry_reverse_config_engine_opts(ferry_reverse_config *config,
                                           ferry_engine_opts *opts, char *err, size_t err_size);
ferry_err ferry_reverse_config_check(const ferry_reverse_config *config, char *err,
                                     size_t err_size);
ferry_err ferry_reverse_config_apply(ferry_reverse_config *config, ferry_engine *engine,
                                     char *err, size_t err_size);
unsigned ferry_reverse_config_listener_count(const ferry_reverse_config *config);
ferry_listener *ferry_reverse_config_listener(const ferry_reverse_config *config,
                                              unsigned index);
void ferry_reverse_config_free(ferry_reverse_config *config);
ferry_err ferry_engine_start(ferry_engine *engine);
ferry_err ferry_engine_wait(ferry_engine *engine);
ferry_err ferry_engine_run(ferry_engine *engine);
ferry_err ferry_engine_stop(ferry_engine *engine, unsigned drain_ms);
void ferry_engine_signal_stop(ferry_engine *engine);
unsigned ferry_engine_sessions(const ferry_engine *engine);

typedef struct ferry_engine_stats {
    uint64_t requests_retried;
    uint64_t retries_refused;
} ferry_engine_stats;

void ferry_engine_get_stats(const ferry_engine *engine, ferry_engine_stats *out);

/* logger.h */
typedef enum ferry_access_format {
    FERRY_ACCESS_TEXT = 0,
    FERRY_ACCESS_JSON = 1,
    FERRY_ACCESS_COMMON = 2,
    FERRY_ACCESS_COMBINED = 3
} ferry_access_format;

ferry_err ferry_logger_new(const char *path, size_t max_pending,
                           const ferry_allocator *allocator, ferry_logger **out);
void ferry_logger_free(ferry_logger *logger);
void ferry_logger_write(ferry_logger *logger, const char *line, size_t len);
uint64_t ferry_logger_dropped(const ferry_logger *logger);
void ferry_logger_log_fn(void *logger, ferry_log_level level, const char *message);
size_t ferry_access_format_record(ferry_access_format format,
                                  const ferry_log_record *record, char *buf,
                                  size_t size);
"""
