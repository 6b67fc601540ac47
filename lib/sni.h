/* The server_name (SNI, RFC 6066) of a TLS ClientHello, read the way a passthrough proxy
 * sees it: the first bytes a client sends, never decrypted and relayed untouched later.
 * Pure and incremental like the other parsers: the caller hands over everything received
 * so far, consumes nothing, and calls again with the longer buffer while the answer is
 * FERRY__SNI_NEED_MORE; no I/O, no allocation. The hello may be fragmented over several
 * handshake records (RFC 8446 5.1 / RFC 5246 6.2.1); records are walked in place. */
#ifndef FERRY__SNI_H
#define FERRY__SNI_H

#include <stddef.h>
#include <stdint.h>

#include "ferry/view.h"

enum {
    FERRY__SNI_NAME_MAX = 255,      /* longest host_name accepted */
    FERRY__SNI_ALPN_COPY_MAX = 128, /* longest ALPN list copied when split across records */
    /* Default bound on the input bytes a hello may take, record headers included: one full
     * 2^14 record, plus room for the headers of a fragmented one. */
    FERRY__SNI_MAX_DEFAULT = 16384 + 1024
};

/* Outcomes, an int so that callers can test "< 0" for a refusal. An answer other than
 * NEED_MORE is final: longer input (with the same max) never changes it. FOUND and NO_SNI
 * wait for the whole hello, since a later duplicate extension or a length that does not
 * add up still makes it MALFORMED; a hello fits one TCP segment in practice anyway. */
typedef enum ferry__sni_result {
    FERRY__SNI_NEED_MORE = 0, /* the hello is not complete yet */
    FERRY__SNI_FOUND = 1,     /* a whole valid hello with a host_name */
    FERRY__SNI_NO_SNI = 2,    /* a valid hello without server_name, or without host_name */
    FERRY__SNI_NOT_TLS = -1,  /* not a TLS handshake record, or not a ClientHello */
    FERRY__SNI_MALFORMED = -2, /* a TLS hello that breaks its own framing or the rules below */
    FERRY__SNI_TOO_LARGE = -3  /* the hello cannot end within the caller's bound */
} ferry__sni_result;

const char *ferry__sni_result_text(int result);

typedef struct ferry__sni_hello {
    /* FOUND: the host_name, trailing dot removed; letters, digits, '-', '_' and '.', no empty
     * label; case as sent (compare case-insensitively). It points into the input, or into
     * name_buf when the name straddles two records. */
    ferry_view server_name;
    /* The ALPN ProtocolNameList (RFC 7301): each protocol is a length byte then its name
     * (walk it with ferry__sni_alpn_next). Points into the input, or into alpn_buf when it
     * straddles records; {NULL, 0} when absent, or when split and longer than alpn_buf
     * (alpn_offered then still says the client sent it). */
    ferry_view alpn;
    uint8_t alpn_offered;
    uint16_t record_version; /* legacy_record_version of the first record, e.g. 0x0301 */
    uint16_t hello_version;  /* legacy_version of the hello: 0x0303 for TLS 1.2 and 1.3 */
    size_t end;              /* input bytes up to the hello's last byte */
    char name_buf[FERRY__SNI_NAME_MAX];
    char alpn_buf[FERRY__SNI_ALPN_COPY_MAX];
} ferry__sni_hello;

/* Looks for the ClientHello at buf[0..len). max bounds the input bytes the hello may need
 * (0: FERRY__SNI_MAX_DEFAULT); a hello that cannot end within it is TOO_LARGE as soon as
 * its lengths say so. *out is filled for FOUND and NO_SNI, unspecified otherwise.
 * NOT_TLS is decided from the first bytes: content type 0x16, record version 3.x and
 * handshake type 1 (ClientHello), so an SSLv2-style hello or plain text is NOT_TLS.
 * Everything else that is wrong is MALFORMED, from the first byte that proves it:
 * records of 0 or more than 2^14 bytes, a record of another type (or version) before the
 * hello ends; lengths that overrun their enclosing block or do not fill it; a hello version
 * other than 3.x; a session id over 32 bytes; an odd or empty cipher suite list; no
 * compression method; a repeated server_name or ALPN extension; a server name list that is
 * empty or holds two host_names; a host_name that is empty, longer than 255 bytes or not a
 * plain DNS name; an ALPN list that is empty or names an empty protocol. Bytes after the
 * hello (the rest of its last record, later records) are not looked at. */
int ferry__sni_parse(const char *buf, size_t len, size_t max, ferry__sni_hello *out);

/* Takes the first protocol off an ALPN list that ferry__sni_parse returned: 1 with *proto
 * set and *list shortened, 0 once the list is empty. */
int ferry__sni_alpn_next(ferry_view *list, ferry_view *proto);

#endif
