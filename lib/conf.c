/* The configuration files' shared line syntax (see conf.h). */
#include "conf.h"

#include "ferry/session.h"

#include <errno.h>
#include <string.h>

ferry__conf_status ferry__conf_next_line(ferry__conf_src *s, char *buf, size_t *len) {
    size_t n = 0;
    if (s->file) {
        int ch;
        while ((ch = getc(s->file)) != EOF && ch != '\n') {
            if (n == FERRY__CONF_LINE_MAX + 1) {
                s->line++;
                return FERRY__CONF_TOO_LONG;
            }
            buf[n++] = (char)ch;
        }
        if (ch == EOF && ferror(s->file)) {
            s->line++;
            return FERRY__CONF_READ_ERROR;
        }
        if (ch == EOF && n == 0) return FERRY__CONF_END;
    } else {
        if (s->text == s->end) return FERRY__CONF_END;
        const char *nl = memchr(s->text, '\n', (size_t)(s->end - s->text));
        const char *stop = nl ? nl : s->end;
        n = (size_t)(stop - s->text);
        s->text = nl ? nl + 1 : s->end;
        if (n > FERRY__CONF_LINE_MAX + 1) {
            s->line++;
            return FERRY__CONF_TOO_LONG;
        }
        memcpy(buf, stop - n, n);
    }
    s->line++;
    if (n > 0 && buf[n - 1] == '\r') n--;
    if (n > FERRY__CONF_LINE_MAX) return FERRY__CONF_TOO_LONG;
    if (memchr(buf, '\0', n)) return FERRY__CONF_NUL;
    if (s->line == 1 && n >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0) {
        memmove(buf, buf + 3, n - 3);
        n -= 3;
    }
    *len = n;
    return FERRY__CONF_LINE_OK;
}

void ferry__conf_wipe(void *p, size_t n) {
    volatile unsigned char *b = p;
    while (n--) *b++ = 0;
}

void ferry__conf_vreport(char *err, size_t size, const char *name, unsigned line,
                         const char *fmt, va_list ap) {
    if (!err || size == 0) return;
    int n = line ? snprintf(err, size, "%s:%u: ", name, line) : snprintf(err, size, "%s: ", name);
    if (n < 0) {
        err[0] = '\0';
        return;
    }
    if ((size_t)n < size) vsnprintf(err + n, size - (size_t)n, fmt, ap);
}

ferry_err ferry__conf_report(char *err, size_t size, const char *name, unsigned line,
                             ferry_err code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    ferry__conf_vreport(err, size, name, line, fmt, ap);
    va_end(ap);
    return code;
}

ferry_err ferry__conf_report_status(char *err, size_t size, const char *name, unsigned line,
                                    ferry__conf_status st) {
    switch (st) {
    case FERRY__CONF_TOO_LONG:
        return ferry__conf_report(err, size, name, line, FERRY_ECONFIG,
                                  "line longer than %d bytes", FERRY__CONF_LINE_MAX);
    case FERRY__CONF_NUL:
        return ferry__conf_report(err, size, name, line, FERRY_ECONFIG, "NUL byte in line");
    default:
        return ferry__conf_report(err, size, name, line, FERRY_ECONFIG, "cannot read: %s",
                                  strerror(errno));
    }
}

ferry_err ferry__conf_invalid_argument(char *err, size_t size) {
    if (err && size) snprintf(err, size, "%s", ferry_strerror(FERRY_EINVAL));
    return FERRY_EINVAL;
}

int ferry__conf_is_space(char ch) { return ch == ' ' || ch == '\t' || ch == '\r'; }

int ferry__conf_looks_like_keyword(const char *w) {
    if (!*w) return 0;
    for (; *w; w++)
        if (!((*w >= 'a' && *w <= 'z') || (*w >= 'A' && *w <= 'Z') || *w == '-' || *w == '_'))
            return 0;
    return 1;
}

/* Split a line into words (syntax: conf.h). Words go NUL-terminated into out, which needs
 * len + 1 bytes: each word's NUL takes the place of the separator or quote after it.
 * Returns the word count, or -1 with *problem set. */
static int split_words(const char *line, size_t len, char *out, char **words,
                       const char **problem) {
    size_t i = 0;
    int n = 0;
    for (;;) {
        while (i < len && ferry__conf_is_space(line[i])) i++;
        if (i == len || line[i] == '#') return n;
        if (n == FERRY__CONF_MAX_WORDS) {
            *problem = "too many words on one line";
            return -1;
        }
        words[n++] = out;
        while (i < len && !ferry__conf_is_space(line[i]) && line[i] != '#') {
            if (line[i] != '"') {
                *out++ = line[i++];
                continue;
            }
            for (i++;; i++) {
                if (i == len) {
                    *problem = "unterminated quote";
                    return -1;
                }
                if (line[i] == '"') break;
                if (line[i] == '\\') {
                    if (i + 1 == len || (line[i + 1] != '"' && line[i + 1] != '\\')) {
                        *problem = "in quotes, a backslash must be followed by \" or \\";
                        return -1;
                    }
                    i++;
                }
                *out++ = line[i];
            }
            i++;
        }
        *out++ = '\0';
    }
}

ferry_err ferry__conf_read(ferry__conf_src *src, const char *name, char *err, size_t err_size,
                           ferry__conf_line_fn fn, void *data) {
    char line[FERRY__CONF_LINE_MAX + 1], scratch[FERRY__CONF_LINE_MAX + 1];
    char *words[FERRY__CONF_MAX_WORDS];
    ferry_err rc = FERRY_OK;
    for (;;) {
        size_t len = 0;
        ferry__conf_status st = ferry__conf_next_line(src, line, &len);
        if (st == FERRY__CONF_END) break;
        if (st != FERRY__CONF_LINE_OK) {
            rc = ferry__conf_report_status(err, err_size, name, src->line, st);
            break;
        }
        const char *problem = NULL;
        int n = split_words(line, len, scratch, words, &problem);
        if (n < 0) {
            rc = ferry__conf_report(err, err_size, name, src->line, FERRY_ECONFIG, "%s", problem);
            break;
        }
        if (n == 0) continue;
        ferry__conf_line l = {src->line, len > 0 && (line[0] == ' ' || line[0] == '\t'), n, words};
        if ((rc = fn(data, &l)) != FERRY_OK) break;
    }
    ferry__conf_wipe(line, sizeof line);
    ferry__conf_wipe(scratch, sizeof scratch);
    return rc;
}

ferry_err ferry__conf_read_file(const char *path, char *err, size_t err_size,
                                ferry__conf_line_fn fn, void *data) {
    FILE *f = fopen(path, "r");
    if (!f)
        return ferry__conf_report(err, err_size, path, 0, FERRY_ECONFIG, "cannot open: %s",
                                  strerror(errno));
    ferry__conf_src src = {.file = f};
    ferry_err rc = ferry__conf_read(&src, path, err, err_size, fn, data);
    fclose(f);
    return rc;
}

int ferry__conf_listen_literal(const char *text, ferry__sockaddr *out) {
    char host[FERRY_HOST_MAX];
    uint16_t port;
    return ferry__addr_split(text, host, sizeof host, &port) == FERRY_OK &&
           ferry__addr_from_literal(host, port, out) == 0;
}
