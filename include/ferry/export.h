/* Symbol visibility for libferry. The library is built with -fvisibility=hidden;
 * only declarations marked FERRY_API are exported. */
#ifndef FERRY_EXPORT_H
#define FERRY_EXPORT_H

#if defined(FERRY_BUILDING_LIBRARY) && defined(__GNUC__)
#define FERRY_API __attribute__((visibility("default")))
#else
#define FERRY_API
#endif

#endif
