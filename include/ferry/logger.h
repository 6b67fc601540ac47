/* Asynchronous line writer for access and error logs. Appends take a short lock and copy
 * the line; a dedicated thread does the file I/O, so worker loops never block on disk. */
#ifndef FERRY_LOGGER_H
#define FERRY_LOGGER_H

#include <stddef.h>
#include <stdint.h>
#include "ferry/export.h"
#include "ferry/error.h"
#include "ferry/alloc.h"
#include "ferry/engine.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ferry_logger ferry_logger;

/* One line per TCP session or per HTTP request. HTTP records (method non-empty) carry extra
 * fields; TCP records never have them. Values a client controls are escaped so they cannot
 * forge fields or lines. Times are UTC. */
typedef enum ferry_access_format {
    /* Space-separated; spaces, backslashes and control bytes as \xHH, empty fields "-". HTTP
     * adds: method= target= (request target) status= (0: none) resp_bytes= first_byte_ms= */
    FERRY_ACCESS_TEXT = 0,
    /* One JSON object per line. HTTP adds "method", "request_target", "host", "referer",
     * "user_agent", "status" (0: none), "response_bytes", "first_byte_us". */
    FERRY_ACCESS_JSON = 1,
    /* NCSA Common Log Format: client - - [27/Nov/2026:05:33:25 +0000] "GET /x HTTP/1.1" 200 1234
     * The version is always written HTTP/1.1; bytes are the response body ("-" if none). TCP
     * sessions log "-" as the request and - as the status. In the quoted fields '"' and the
     * backslash get a backslash before them and control bytes are written as \xHH. */
    FERRY_ACCESS_COMMON = 2,
    /* Common plus ` "referer" "user-agent"` ("-" when absent), escaped the same way. */
    FERRY_ACCESS_COMBINED = 3
} ferry_access_format;

/* Open `path` for appending ("-" writes to stdout, "stderr" to stderr) and start the writer
 * thread. Up to max_pending bytes wait in memory (0: 1 MiB); past that, lines are dropped
 * and counted rather than blocking the caller. allocator may be NULL. */
FERRY_API ferry_err ferry_logger_new(const char *path, size_t max_pending,
                                     const ferry_allocator *allocator, ferry_logger **out);

/* Write out what is pending, stop the thread, close the file. NULL is a no-op. */
FERRY_API void ferry_logger_free(ferry_logger *logger);

/* Queue one line (a newline is added). Thread-safe; never blocks on I/O. */
FERRY_API void ferry_logger_write(ferry_logger *logger, const char *line, size_t len);

/* Lines dropped because the writer fell behind. Thread-safe. */
FERRY_API uint64_t ferry_logger_dropped(const ferry_logger *logger);

/* A ferry_log_fn for ferry_engine_opts.log, with log_user_data = the logger. */
FERRY_API void ferry_logger_log_fn(void *logger, ferry_log_level level, const char *message);

/* Format `record` as one access-log line into buf (always NUL-terminated when size > 0).
 * Returns the length it needed (like snprintf). Pure; any thread. */
FERRY_API size_t ferry_access_format_record(ferry_access_format format,
                                            const ferry_log_record *record, char *buf,
                                            size_t size);

#ifdef __cplusplus
}
#endif
#endif
