/* hak_config.c -- reads HAKMEM_* once. getenv() does not allocate. */
#include "hak_config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

hak_config_t hak_config = {0, 1, 32, 1000, (size_t)64 << 20};

static int parse_uint(const char *s, size_t *out) {
    size_t v = 0;
    if (!s || !*s) return 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return 0;
        v = v * 10 + (size_t)(*s - '0');
    }
    *out = v;
    return 1;
}

// A byte count: digits, then optionally K, M or G (powers of 1024, either case), optionally
// followed by "B" or "iB". Rejects anything else, and values that overflow.
static int parse_bytes(const char *s, size_t *out) {
    size_t v = 0;
    if (!s || *s < '0' || *s > '9') return 0;
    for (; *s >= '0' && *s <= '9'; s++) {
        if (v > (SIZE_MAX - 9) / 10) return 0;
        v = v * 10 + (size_t)(*s - '0');
    }
    unsigned shift = 0;
    switch (*s) {
    case 'k': case 'K': shift = 10; break;
    case 'm': case 'M': shift = 20; break;
    case 'g': case 'G': shift = 30; break;
    default: break;
    }
    if (shift) {
        s++;
        if (*s == 'i') s++;
        if (*s == 'B' || *s == 'b') s++;
        if (v > (SIZE_MAX >> shift)) return 0;
        v <<= shift;
    } else if (*s == 'B' || *s == 'b') {
        s++;
    }
    if (*s) return 0;
    *out = v;
    return 1;
}

void hak_config_init(void) {
    const char *d = getenv("HAKMEM_DEBUG");
    if (d && *d) {
        if (strcmp(d, "json") == 0 || strcmp(d, "JSON") == 0) hak_config.debug = 2;
        else if (strcmp(d, "0") != 0) hak_config.debug = 1;
    }
    const char *c = getenv("HAKMEM_CHECK");
    if (c && strcmp(c, "0") == 0) hak_config.check = 0;
    size_t v;
    if (parse_uint(getenv("HAKMEM_SS_POOL"), &v)) hak_config.ss_pool_max = v;
    if (parse_uint(getenv("HAKMEM_DECAY_MS"), &v)) hak_config.decay_ms = v;
    if (parse_bytes(getenv("HAKMEM_BIGCACHE_MAX"), &v)) hak_config.bigcache_max = v;
}
