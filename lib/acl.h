/* The forward policy's rule engine (acl.c): addresses and CIDRs, host patterns, port
 * ranges, and the ordered allow/deny rules of ferry/forward.h. forward.c builds the policy
 * on top of it. Everything here is read-only after parsing and safe to share. */
#ifndef FERRY__ACL_H
#define FERRY__ACL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include "ferry/forward.h"

/* An IP address; IPv4-mapped IPv6 addresses are stored as IPv4 so that one rule covers
 * both spellings. */
typedef struct ferry__ip {
    uint8_t v6;
    uint8_t addr[16]; /* first 4 bytes for IPv4 */
} ferry__ip;

typedef struct ferry__cidr {
    ferry__ip net; /* host bits cleared */
    uint8_t bits;
} ferry__cidr;

/* An IPv4 or IPv6 literal (IPv6 may be bracketed); 0, or -1 when text is not one. */
int ferry__ip_parse(const char *text, ferry__ip *out);
/* -1 for a family other than AF_INET / AF_INET6. */
int ferry__ip_from_sockaddr(const struct sockaddr *sa, ferry__ip *out);
void ferry__ip_from_bytes(int family, const unsigned char *bytes, ferry__ip *out);
/* "10.0.0.0/8", "::1", "fc00::/7" (host bits are cleared); 0 or -1. */
int ferry__cidr_parse(const char *text, size_t len, ferry__cidr *out);
int ferry__cidr_contains(const ferry__cidr *c, const ferry__ip *ip);
/* Is all of inner inside outer? */
int ferry__cidr_within(const ferry__cidr *inner, const ferry__cidr *outer);

/* Host patterns: exact, ".suffix" (the domain and names under it), glob (* and ?). Kept
 * lowercase without a trailing dot; matching ignores case and a trailing dot. */
typedef struct ferry__host_pattern {
    uint8_t kind;
    char *text;
} ferry__host_pattern;

/* FERRY_ECONFIG for a malformed pattern, FERRY_ENOMEM. */
ferry_err ferry__host_pattern_parse(const ferry_allocator *a, const char *text, size_t len,
                                    ferry__host_pattern *out);
int ferry__host_pattern_match(const ferry__host_pattern *p, const char *host);

typedef struct ferry__port_range {
    uint16_t lo, hi;
} ferry__port_range;

/* "80,8000-8100" (ports 1-65535) into a new array. FERRY_ECONFIG (with the bad item
 * copied into bad, if given) or FERRY_ENOMEM. */
ferry_err ferry__ports_parse(const ferry_allocator *a, const char *text, size_t len,
                             ferry__port_range **out, unsigned *count, char *bad,
                             size_t bad_size);
int ferry__ports_contain(const ferry__port_range *r, unsigned count, uint16_t port);

/* Which conditions a rule has. */
enum {
    FERRY__COND_CLIENT = 1 << 0,
    FERRY__COND_USER = 1 << 1,
    FERRY__COND_HOST = 1 << 2,
    FERRY__COND_DEST = 1 << 3,
    FERRY__COND_PORT = 1 << 4,
    FERRY__COND_METHOD = 1 << 5,
    FERRY__COND_PROTO = 1 << 6,
    FERRY__COND_TIME = 1 << 7
};

typedef struct ferry__rule {
    uint8_t allow;
    unsigned conds;
    ferry__cidr *clients, *dests;
    unsigned nclients, ndests;
    char **users; /* "" for "-" (nobody authenticated) */
    char **methods;
    unsigned nusers, nmethods;
    ferry__host_pattern *hosts;
    unsigned nhosts;
    ferry__port_range *ports;
    unsigned nports;
    unsigned protos;   /* bit (1 << ferry_proxy_protocol) */
    uint8_t days;      /* bit 0 = Monday ... bit 6 = Sunday */
    uint16_t from_min, to_min; /* [from, to) in minutes of the day; wraps when from > to */
    uint8_t utc;
    char *reason; /* "rule N (TEXT)": what denials report */
} ferry__rule;

typedef struct ferry__acl {
    ferry__rule *rules;
    unsigned count;
} ferry__acl;

/* Parse and append a rule. FERRY_ECONFIG with a message in err, or FERRY_ENOMEM; the
 * list is unchanged on failure. */
ferry_err ferry__acl_add(ferry__acl *acl, const ferry_allocator *a, const char *text, char *err,
                         size_t err_size);
void ferry__acl_free(ferry__acl *acl, const ferry_allocator *a);

/* How dest conditions are judged for one evaluation. */
typedef enum ferry__dest_mode {
    FERRY__DEST_ADDRESS, /* the destination address is known: match it */
    FERRY__DEST_PENDING, /* a name not resolved yet: a dest rule leaves the verdict open */
    FERRY__DEST_NAME     /* a name a parent resolves: dest conditions never match */
} ferry__dest_mode;

typedef struct ferry__acl_query {
    const ferry_session_info *session;
    ferry__dest_mode dest_mode;
    ferry__ip dest; /* with FERRY__DEST_ADDRESS */
    ferry_clock_fn clock;
    void *clock_data;
} ferry__acl_query;

typedef enum ferry__verdict {
    FERRY__NO_MATCH, /* no rule matched: allowed */
    FERRY__ALLOW,
    FERRY__DENY,
    FERRY__UNDECIDED /* stopped at a dest rule (FERRY__DEST_PENDING) */
} ferry__verdict;

/* First-match evaluation; *rule is the rule that decided (or stopped), else NULL. */
ferry__verdict ferry__acl_eval(const ferry__acl *acl, const ferry__acl_query *q,
                               const ferry__rule **rule);

/* Format a configuration error into err (may be NULL) and return FERRY_ECONFIG. */
ferry_err ferry__config_error(char *err, size_t err_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* forward.c: the anonymity edit of an HTTP request, apart from where the client address
 * comes from (the edit_request op takes it from the txn's session), so that unit tests can
 * drive it with a hand-made txn. */
void ferry__forward_edit_headers(const ferry_forward *fwd, ferry_txn *txn, const char *client_addr);

#endif
