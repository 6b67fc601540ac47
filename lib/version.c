#include "ferry/version.h"

const char *ferry_version(void) { return FERRY_VERSION_STRING; }

unsigned ferry_version_number(void) {
    return FERRY_VERSION_MAJOR * 10000u + FERRY_VERSION_MINOR * 100u + FERRY_VERSION_PATCH;
}
