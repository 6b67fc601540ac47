/* The line syntax shared by the configuration files of the forward and the reverse proxy
 * (doc/forward-config.md, doc/reverse-config.md): lines from a file or from memory, split
 * into words with "double quotes" and # comments, and "name:line: message" errors. Blocking
 * stdio: configuration time only. Nothing here allocates; line buffers live on the stack. */
#ifndef FERRY__CONF_H
#define FERRY__CONF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include "addr.h"
#include "ferry/error.h"

enum {
    FERRY__CONF_LINE_MAX = 4096, /* bytes in a line, without its line ending */
    FERRY__CONF_MAX_WORDS = 128,
};

/* Where lines come from: an open file, or text in memory. */
typedef struct ferry__conf_src {
    FILE *file;
    const char *text, *end;
    unsigned line; /* number of the line last read, for messages */
} ferry__conf_src;

typedef enum ferry__conf_status {
    FERRY__CONF_LINE_OK,
    FERRY__CONF_END,
    FERRY__CONF_TOO_LONG,
    FERRY__CONF_NUL,
    FERRY__CONF_READ_ERROR
} ferry__conf_status;

/* The next line into buf (FERRY__CONF_LINE_MAX + 1 bytes: room for a CR before the LF)
 * without its "\n" or "\r\n", and without the UTF-8 byte order mark of line 1. */
ferry__conf_status ferry__conf_next_line(ferry__conf_src *s, char *buf, size_t *len);

/* Clear a buffer that held secrets; the stores are not optimised away. */
void ferry__conf_wipe(void *p, size_t n);

/* "name:line: message" ("name: message" for line 0) into err, which may be NULL. */
void ferry__conf_vreport(char *err, size_t size, const char *name, unsigned line,
                         const char *fmt, va_list ap);
ferry_err ferry__conf_report(char *err, size_t size, const char *name, unsigned line,
                             ferry_err code, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* FERRY_ECONFIG with the message for a line next_line() could not deliver. */
ferry_err ferry__conf_report_status(char *err, size_t size, const char *name, unsigned line,
                                    ferry__conf_status st);

/* FERRY_EINVAL, said in err: for NULL arguments to the public readers. */
ferry_err ferry__conf_invalid_argument(char *err, size_t size);

int ferry__conf_is_space(char ch);
/* Is text "IP:PORT" / "[IPv6]:PORT" with an IP literal (filling *out)? Listeners are
 * bound without a resolver, so a listen address must be one. */
int ferry__conf_listen_literal(const char *text, ferry__sockaddr *out);

/* Only keyword-shaped words (letters, '-', '_') are quoted back in "unknown directive"
 * messages, so that a password file read by mistake is not echoed into a log. */
int ferry__conf_looks_like_keyword(const char *w);

/* One line with at least one word. */
typedef struct ferry__conf_line {
    unsigned number;
    int indented; /* the line starts with a space or a tab */
    int nwords;
    char **words; /* NUL-terminated, quotes and escapes resolved; writable */
} ferry__conf_line;

typedef ferry_err (*ferry__conf_line_fn)(void *data, const ferry__conf_line *line);

/* Read every line of src and hand those with words to fn, in order, stopping at the first
 * error (fn's, or the syntax's, reported as "name:line: message"). A word is a run of
 * unquoted bytes and "double-quoted" sections (which may hold spaces and '#', with \" and
 * \\ as escapes), ended by unquoted space or tab; an unquoted '#' starts a comment. The
 * line buffers are wiped before returning: lines may hold passwords. */
ferry_err ferry__conf_read(ferry__conf_src *src, const char *name, char *err, size_t err_size,
                           ferry__conf_line_fn fn, void *data);

/* ferry__conf_read() on the file at path ("path: cannot open: ..." when it cannot be). */
ferry_err ferry__conf_read_file(const char *path, char *err, size_t err_size,
                                ferry__conf_line_fn fn, void *data);

#endif
