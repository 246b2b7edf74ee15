/* stress_args.h -- argument parsing shared by the stress programs. */
#pragma once

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

/* Parse a non-negative integer (decimal, 0x hex or 0 octal); 0 on anything else. */
static inline int parse_u64(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || end == s || *end || s[0] == '-') return 0;
    *out = v;
    return 1;
}
