#include "addr.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

ferry_err ferry__addr_split(const char *text, char *host, size_t host_size, uint16_t *port) {
    if (!text || !host || host_size == 0) return FERRY_EINVAL;
    const char *host_start = text, *host_end, *colon;
    if (text[0] == '[') {
        host_start = text + 1;
        host_end = strchr(host_start, ']');
        if (!host_end || host_end[1] != ':') return FERRY_EADDR;
        colon = host_end + 1;
    } else {
        colon = strrchr(text, ':');
        if (!colon) return FERRY_EADDR;
        host_end = colon;
        /* An unbracketed IPv6 literal has several colons: ambiguous, refuse it. */
        if (memchr(text, ':', (size_t)(colon - text))) return FERRY_EADDR;
    }
    size_t host_len = (size_t)(host_end - host_start);
    if (host_len == 0 || host_len >= host_size) return FERRY_EADDR;
    const char *p = colon + 1;
    if (!*p) return FERRY_EADDR;
    unsigned long value = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9') return FERRY_EADDR;
        value = value * 10 + (unsigned long)(*p - '0');
        if (value > 65535) return FERRY_EADDR;
    }
    memcpy(host, host_start, host_len);
    host[host_len] = '\0';
    *port = (uint16_t)value;
    return FERRY_OK;
}

int ferry__addr_from_literal(const char *host, uint16_t port, ferry__sockaddr *out) {
    memset(out, 0, sizeof *out);
    if (inet_pton(AF_INET, host, &out->in.sin_addr) == 1) {
        out->in.sin_family = AF_INET;
        out->in.sin_port = htons(port);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &out->in6.sin6_addr) == 1) {
        out->in6.sin6_family = AF_INET6;
        out->in6.sin6_port = htons(port);
        return 0;
    }
    return -1;
}

uint16_t ferry__addr_port(const ferry__sockaddr *a) {
    return ntohs(a->sa.sa_family == AF_INET6 ? a->in6.sin6_port : a->in.sin_port);
}

void ferry__addr_format(const ferry__sockaddr *a, int with_port, char *buf, size_t size) {
    if (size == 0) return;
    char ip[INET6_ADDRSTRLEN] = "?";
    int v6 = a->sa.sa_family == AF_INET6;
    if (v6)
        inet_ntop(AF_INET6, &a->in6.sin6_addr, ip, sizeof ip);
    else if (a->sa.sa_family == AF_INET)
        inet_ntop(AF_INET, &a->in.sin_addr, ip, sizeof ip);
    if (!with_port)
        snprintf(buf, size, "%s", ip);
    else
        snprintf(buf, size, v6 ? "[%s]:%u" : "%s:%u", ip, (unsigned)ferry__addr_port(a));
}
