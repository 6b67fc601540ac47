#ifndef FERRY_VERSION_H
#define FERRY_VERSION_H

#include "ferry/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* "MAJOR.MINOR.PATCH" of the library actually loaded. */
FERRY_API const char *ferry_version(void);
/* MAJOR*10000 + MINOR*100 + PATCH. */
FERRY_API unsigned ferry_version_number(void);

#ifdef __cplusplus
}
#endif
#endif
