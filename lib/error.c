#include "ferry/error.h"

static const char *const messages[] = {
#define FERRY_ERROR(name, value, message) [value] = message,
#include "ferry/errors.def"
#undef FERRY_ERROR
};
static const char *const names[] = {
#define FERRY_ERROR(name, value, message) [value] = #name,
#include "ferry/errors.def"
#undef FERRY_ERROR
};

const char *ferry_strerror(int err) {
    if (err < 0 || err >= FERRY_ERR_COUNT_ || !messages[err]) return "unknown error";
    return messages[err];
}

const char *ferry_err_name(int err) {
    if (err < 0 || err >= FERRY_ERR_COUNT_ || !names[err]) return "UNKNOWN";
    return names[err];
}
