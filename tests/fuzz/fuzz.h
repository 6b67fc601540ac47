/* Shared by the fuzz targets and the corpus replay driver. */
#ifndef FERRY_FUZZ_H
#define FERRY_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* The libFuzzer entry point each target defines. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Invariants hold in every build type, so this never compiles away like assert(). */
#define FUZZ_CHECK(cond)                                                                   \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);  \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

/* Is the byte range [p, p + n) inside [base, base + len)? (Empty ranges may sit at the end.) */
static inline int fuzz_inside(const char *p, size_t n, const char *base, size_t len) {
    if (n == 0) return p == NULL || (p >= base && p <= base + len);
    return p >= base && n <= len && p <= base + len - n;
}
#define FUZZ_INSIDE(v, base, size) fuzz_inside((v).ptr, (v).len, (base), (size))

#endif
