/* The built-in forward policy: ferry acting for clients. The client names the destination
 * (HTTP absolute-form or CONNECT, SOCKS); the policy decides who may use the proxy, what
 * they may reach, through which parent proxy, and how much of the client the origin sees.
 *
 * A ferry_forward is configured on one thread (setters, config files), then handed to
 * listeners as direction_data with ferry_direction_forward() as the direction. From then
 * on it is read-only apart from parent up/down state and is shared by every worker; it
 * must outlive the engines using it.
 *
 * Access rules: an ordered list, first match wins; no match allows. Rule text:
 *
 *     allow|deny [CONDITION ...]        (no condition, or "all": matches everything)
 *
 * where every CONDITION present must hold:
 *     client CIDR[,CIDR...]         client address (1.2.3.0/24, ::1, 10.0.0.1)
 *     user NAME[,NAME...]           authenticated user ("-" : nobody authenticated)
 *     host PATTERN[,PATTERN...]     destination name as the client gave it: exact
 *                                   "example.com", suffix ".example.com" (the domain and
 *                                   every name under it), or glob "*.ex?mple.*"
 *     dest CIDR[,CIDR...]           destination address, checked on the resolved address
 *     port N|N-M[,...]              destination port
 *     method NAME[,NAME...]         HTTP method (CONNECT included); SOCKS has none
 *     proto http|connect|socks[,...] how the client asked
 *     time DAYS HH:MM-HH:MM [utc]   DAYS: mon-fri, sat,sun, mon,wed-fri or "*"; local
 *                                   time unless "utc"; a window may wrap midnight
 *
 * Rules without a dest condition are decided before any DNS lookup. A dest rule waits for
 * the address, so it is decided (with every rule after it) on each resolved address; when
 * the request goes through a parent, the parent resolves names and dest conditions can
 * match IP literals only.
 *
 * Secure defaults, on top of the rules: clients only from loopback and private ranges
 * (127/8, ::1, 10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7, fe80::/10; replaced by
 * ferry_forward_allow_client()); CONNECT only to port 443 (see
 * ferry_forward_set_connect_ports()); destinations in loopback, link-local (including
 * 169.254.169.254), unspecified, multicast, broadcast and reserved (240/4) ranges, and
 * the deprecated IPv4-compatible (::/96) and site-local (fec0::/10) IPv6 ones, and NAT64
 * addresses (64:ff9b::/96) embedding a refused IPv4 address, refused unless
 * ferry_forward_allow_dest() lifts a range or the allow rule that matched has a dest
 * condition covering the address. */
#ifndef FERRY_FORWARD_H
#define FERRY_FORWARD_H

#include <stddef.h>
#include <stdint.h>
#include "ferry/export.h"
#include "ferry/alloc.h"
#include "ferry/direction.h"
#include "ferry/error.h"
#include "ferry/session.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ferry_forward ferry_forward;

/* How much of the client the origin learns. */
typedef enum ferry_anonymity {
    FERRY_ANON_TRANSPARENT = 0, /* adds Via and X-Forwarded-For */
    FERRY_ANON_ANONYMOUS = 1,   /* the default: adds nothing; strips the client's Via,
                                 * X-Forwarded-For, Forwarded, X-Real-IP */
    FERRY_ANON_STRICT = 2       /* also strips From, a Referer naming another origin, and
                                 * every header outside the allow-list */
} ferry_anonymity;

/* Wall clock for time-window rules, in seconds since the epoch. */
typedef int64_t (*ferry_clock_fn)(void *user_data);

/* The built-in forward direction: policy_data is a ferry_forward*. Static table. */
FERRY_API const ferry_direction_ops *ferry_direction_forward(void);

/* A policy with the secure defaults and no rules. allocator NULL: libc (copied).
 * Call from a thread that may block briefly (it initialises the time zone). */
FERRY_API ferry_err ferry_forward_new(const ferry_allocator *allocator, ferry_forward **out);
/* NULL is a no-op. After every engine using it is freed. */
FERRY_API void ferry_forward_free(ferry_forward *fwd);

/* ---- configuration (one thread, before the policy is in use) ---- */

/* Append a rule (syntax above). FERRY_ECONFIG with a message in err (may be NULL). */
FERRY_API ferry_err ferry_forward_add_rule(ferry_forward *fwd, const char *rule, char *err,
                                           size_t err_size);
/* Allow clients from this CIDR. The first call replaces the loopback+private default. */
FERRY_API ferry_err ferry_forward_allow_client(ferry_forward *fwd, const char *cidr);
/* Lift the refused-destination default for this CIDR (e.g. "127.0.0.0/8" for a test). */
FERRY_API ferry_err ferry_forward_allow_dest(ferry_forward *fwd, const char *cidr);
/* Ports CONNECT may reach: "443,8443" or "443,1024-65535". Default "443". */
FERRY_API ferry_err ferry_forward_set_connect_ports(ferry_forward *fwd, const char *ports);
FERRY_API ferry_err ferry_forward_set_anonymity(ferry_forward *fwd, ferry_anonymity level);
/* Strict anonymity keeps only these request headers (case-insensitive names, comma
 * separated); replaces the default list (Accept, Accept-Language, Cache-Control, Pragma,
 * If-Modified-Since, If-None-Match, If-Match, If-Unmodified-Since, If-Range, Range,
 * Content-Type, Content-Length, Transfer-Encoding, Host, Upgrade, Authorization, Referer;
 * a Referer naming another origin goes whatever the list says). */
FERRY_API ferry_err ferry_forward_set_header_allow(ferry_forward *fwd, const char *names);
/* Require credentials and accept this user. Passwords are kept only in memory. */
FERRY_API ferry_err ferry_forward_add_user(ferry_forward *fwd, const char *user,
                                           const char *password);
/* Load "user:password" lines ('#' comments and blank lines ignored); requires
 * credentials. Blocking file I/O: configuration time only. Errors name file:line. */
FERRY_API ferry_err ferry_forward_load_users(ferry_forward *fwd, const char *path, char *err,
                                             size_t err_size);
/* Declare a parent proxy: "http://[user:pass@]host:port", "socks5://[user:pass@]host:port"
 * (socks5h is accepted as a synonym). name is how routes refer to it. */
FERRY_API ferry_err ferry_forward_add_parent(ferry_forward *fwd, const char *name,
                                             const char *url, char *err, size_t err_size);
/* Route destinations matching host_pattern (exact, .suffix, glob, or "*") through the
 * named parents, tried in order on failure; "direct" as a name means no parent. First
 * matching route wins; no match: direct. */
FERRY_API ferry_err ferry_forward_add_route(ferry_forward *fwd, const char *host_pattern,
                                            const char *parents, char *err, size_t err_size);
/* The parent declared under `name`, or NULL; for on_route hooks choosing parents. */
FERRY_API const ferry_parent *ferry_forward_parent(const ferry_forward *fwd, const char *name);
/* Parse a parent URL into out (name set to "host:port"). FERRY_ECONFIG on bad input. */
FERRY_API ferry_err ferry_parent_parse(const char *url, ferry_parent *out);
/* Replace the wall clock used by time windows (tests). NULL: the system clock. */
FERRY_API void ferry_forward_set_clock(ferry_forward *fwd, ferry_clock_fn now, void *user_data);

/* Read a configuration file (format: doc/forward-config.md): rules and policy settings
 * go into fwd; daemon settings (listen, workers, access-log) are kept for the getters
 * below. Blocking file I/O: configuration time only. On error FERRY_ECONFIG and err holds
 * "path:line: message" (FERRY_ENOMEM when memory ran out). What was applied before an
 * error stays applied: treat any error as fatal. */
FERRY_API ferry_err ferry_forward_load_config(ferry_forward *fwd, const char *path, char *err,
                                              size_t err_size);
/* The same from a string; `name` stands for the path in messages. */
FERRY_API ferry_err ferry_forward_parse_config(ferry_forward *fwd, const char *text, size_t len,
                                               const char *name, char *err, size_t err_size);

/* Daemon settings read from a configuration file (NULL / 0 when not given). */
FERRY_API unsigned ferry_forward_listen_count(const ferry_forward *fwd);
FERRY_API const char *ferry_forward_listen_at(const ferry_forward *fwd, unsigned i);
FERRY_API unsigned ferry_forward_workers(const ferry_forward *fwd);
FERRY_API const char *ferry_forward_access_log(const ferry_forward *fwd);

/* Does the configuration let any address on the internet use the proxy without
 * credentials? Daemons warn at start-up when it does. */
FERRY_API int ferry_forward_is_open(const ferry_forward *fwd);

#ifdef __cplusplus
}
#endif
#endif
