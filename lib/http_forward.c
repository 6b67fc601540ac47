#include "http_forward.h"

#include <string.h>

static int lower(int ch) { return ch >= 'A' && ch <= 'Z' ? ch + 32 : ch; }

static int prefix_ieq(ferry_view v, const char *lower_prefix) {
    size_t n = strlen(lower_prefix);
    if (v.len < n) return 0;
    for (size_t i = 0; i < n; i++)
        if (lower((unsigned char)v.ptr[i]) != lower_prefix[i]) return 0;
    return 1;
}

/* host[:port] -> out->host/port. The parser has checked the syntax already. */
static int split_authority(ferry_view a, int port_required, ferry__forward_target *out) {
    const char *p = a.ptr, *end = a.ptr + a.len, *host, *host_end, *colon;
    if (a.len && *p == '[') {
        host = p + 1;
        host_end = memchr(p, ']', a.len);
        if (!host_end) return 400;
        colon = host_end + 1 < end && host_end[1] == ':' ? host_end + 1 : NULL;
    } else {
        host = p;
        colon = memchr(p, ':', a.len);
        host_end = colon ? colon : end;
    }
    size_t hlen = (size_t)(host_end - host);
    if (hlen == 0 || hlen >= sizeof out->host) return 400;
    memcpy(out->host, host, hlen);
    out->host[hlen] = '\0';
    if (!colon || colon + 1 == end) {
        if (port_required) return 400;
        out->port = 80;
        return 0;
    }
    unsigned v = 0;
    for (const char *d = colon + 1; d < end; d++) {
        if (*d < '0' || *d > '9' || v > 65535) return 400;
        v = v * 10 + (unsigned)(*d - '0');
    }
    if (v == 0 || v > 65535) return 400;
    out->port = (uint16_t)v;
    return 0;
}

int ferry__forward_target_split(ferry_view target, int connect, ferry__forward_target *out) {
    memset(out, 0, sizeof *out);
    if (connect) {
        out->authority = target;
        return split_authority(target, 1, out);
    }
    if (!prefix_ieq(target, "http://")) {
        /* Another scheme: https is for CONNECT; anything else we do not speak. */
        return 501;
    }
    const char *auth = target.ptr + 7, *end = target.ptr + target.len, *p = auth;
    while (p < end && *p != '/' && *p != '?') p++;
    out->authority = (ferry_view){auth, (size_t)(p - auth)};
    out->path = (ferry_view){p, (size_t)(end - p)};
    return split_authority(out->authority, 0, out);
}

/* ---- Basic credentials ---- */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_value(unsigned char ch) {
    if (ch >= 'A' && ch <= 'Z') return ch - 'A';
    if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9') return ch - '0' + 52;
    if (ch == '+') return 62;
    if (ch == '/') return 63;
    return -1;
}

int ferry__basic_decode(ferry_view value, char user[FERRY__BASIC_MAX + 1],
                        char password[FERRY__BASIC_MAX + 1]) {
    if (!prefix_ieq(value, "basic") || value.len < 6 || (value.ptr[5] != ' ' && value.ptr[5] != '\t'))
        return -1;
    const char *p = value.ptr + 6, *end = value.ptr + value.len;
    while (p < end && (*p == ' ' || *p == '\t')) p++;
    while (end > p && (end[-1] == ' ' || end[-1] == '\t')) end--;
    size_t n = (size_t)(end - p);
    if (n == 0 || n % 4 != 0) return -1;
    char plain[2 * FERRY__BASIC_MAX + 2];
    size_t len = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4], pad = 0;
        for (int k = 0; k < 4; k++) {
            unsigned char ch = (unsigned char)p[i + (size_t)k];
            if (ch == '=' && i + 4 == n && k >= 2) {
                v[k] = 0;
                pad++;
            } else if (pad || (v[k] = b64_value(ch)) < 0) {
                return -1; /* data after padding, or not base64 */
            }
        }
        unsigned bits = (unsigned)(v[0] << 18 | v[1] << 12 | v[2] << 6 | v[3]);
        unsigned char bytes[3] = {(unsigned char)(bits >> 16), (unsigned char)(bits >> 8),
                                  (unsigned char)bits};
        size_t take = 3 - (size_t)pad;
        if (len + take > sizeof plain) return -1;
        memcpy(plain + len, bytes, take);
        len += take;
    }
    const char *colon = memchr(plain, ':', len);
    if (!colon) return -1;
    size_t ulen = (size_t)(colon - plain), plen = len - ulen - 1;
    if (ulen > FERRY__BASIC_MAX || plen > FERRY__BASIC_MAX) return -1;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)plain[i] < 0x20 || plain[i] == 0x7f) return -1;
    memcpy(user, plain, ulen);
    user[ulen] = '\0';
    memcpy(password, colon + 1, plen);
    password[plen] = '\0';
    return 0;
}

size_t ferry__basic_encode(const char *user, const char *password, char *out, size_t out_size) {
    size_t ulen = strlen(user), plen = strlen(password), n = ulen + 1 + plen;
    size_t need = 6 + (n + 2) / 3 * 4;
    if (need + 1 > out_size) return 0;
    memcpy(out, "Basic ", 6);
    size_t o = 6;
    for (size_t i = 0; i < n; i += 3) {
        unsigned char in[3] = {0, 0, 0};
        size_t take = n - i < 3 ? n - i : 3;
        for (size_t k = 0; k < take; k++) {
            size_t at = i + k;
            in[k] = (unsigned char)(at < ulen ? user[at] : at == ulen ? ':' : password[at - ulen - 1]);
        }
        unsigned bits = (unsigned)in[0] << 16 | (unsigned)in[1] << 8 | in[2];
        out[o++] = b64[bits >> 18 & 63];
        out[o++] = b64[bits >> 12 & 63];
        out[o++] = take > 1 ? b64[bits >> 6 & 63] : '=';
        out[o++] = take > 2 ? b64[bits & 63] : '=';
    }
    out[o] = '\0';
    return o;
}
