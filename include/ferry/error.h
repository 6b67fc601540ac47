/* Error codes. Every fallible ferry function returns a ferry_err; FERRY_OK is 0. */
#ifndef FERRY_ERROR_H
#define FERRY_ERROR_H

#include "ferry/export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ferry_err {
#define FERRY_ERROR(name, value, message) FERRY_##name = value,
#include "ferry/errors.def"
#undef FERRY_ERROR
    FERRY_ERR_COUNT_
} ferry_err;

/* Human-readable message for err; never NULL (unknown codes give "unknown error").
 * Thread-safe; the string is static. */
FERRY_API const char *ferry_strerror(int err);

/* The code's name without the prefix, e.g. "ETIMEDOUT"; "UNKNOWN" for unknown codes.
 * Thread-safe; the string is static. Bindings use it to name exceptions. */
FERRY_API const char *ferry_err_name(int err);

#ifdef __cplusplus
}
#endif
#endif
