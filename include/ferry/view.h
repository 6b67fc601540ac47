/* A borrowed byte range: ptr is not NUL-terminated and is valid only as long as its owner
 * says (for hook arguments: until the hook returns). */
#ifndef FERRY_VIEW_H
#define FERRY_VIEW_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ferry_view {
    const char *ptr;
    size_t len;
} ferry_view;

typedef struct ferry_http_header {
    ferry_view name;
    ferry_view value;
} ferry_http_header;

#ifdef __cplusplus
}
#endif
#endif
