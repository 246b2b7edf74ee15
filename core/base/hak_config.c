/* hak_config.c -- reads HAKMEM_* once. getenv() does not allocate. Under HAKMEM_THP=auto it
 * also reads the kernel's THP setting (hak_os, no allocation either). */
#include "hak_config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hak_harden.h"
#include "hak_os.h"

hak_config_t hak_config = {
    .debug = 0,
    .check = 1,
    .ss_pool_max = 32,
    .decay_ms = 1000,
    .bigcache_max = (size_t)64 << 20,
    .learn = 0,
    .purge_thread = 1,
    .thp = HAK_THP_OFF,
    .thp_min = (size_t)2 << 20,
    .thp_large_min = SIZE_MAX,
    .thp_ss = 0,
    .young = 8,
    .fork_trim = 1,
};

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

// HAKMEM_THP and HAKMEM_THP_MIN, and what they come to; every field set, whatever was there.
// Under auto the kernel's setting decides: [always] already gives huge pages to every
// suitable mapping, [never] none, and [madvise] those advised. Auto leaves SuperSlabs out:
// a huge page makes all 2 MiB of one resident for the first few small blocks
// (docs/DESIGN-NOTES.md, Transparent huge pages).
static void thp_init(void) {
    const char *t = getenv("HAKMEM_THP");
    int mode = HAK_THP_OFF;  // the default: see docs/DESIGN-NOTES.md (Transparent huge pages)
    if (t && strcmp(t, "1") == 0) mode = HAK_THP_ON;
    else if (t && strcmp(t, "auto") == 0) mode = HAK_THP_AUTO;
    size_t min = (size_t)2 << 20;
    size_t v;
    if (parse_bytes(getenv("HAKMEM_THP_MIN"), &v)) min = v;
    int advise_large = mode == HAK_THP_ON || (mode == HAK_THP_AUTO && hak_os_thp_setting() == HAK_OS_THP_MADVISE);
    hak_config.thp = mode;
    hak_config.thp_min = min;
    hak_config.thp_large_min = advise_large ? min : SIZE_MAX;
    hak_config.thp_ss = mode == HAK_THP_ON;
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
    const char *g = getenv("HAKMEM_GUARD");
    if (g && strcmp(g, "1") == 0) hak_config.guard = 1;
    if (parse_uint(getenv("HAKMEM_GUARD_SAMPLE"), &v)) hak_config.guard_sample = v;
#if !HAK_GUARD_HOOK
    if (hak_config.guard || hak_config.guard_sample) {
        static const char msg[] = "hakmem: HAKMEM_GUARD and HAKMEM_GUARD_SAMPLE need a build with "
                                  "-DHAKMEM_GUARD_HOOK=ON; ignored\n";
        ssize_t r = write(2, msg, sizeof msg - 1);
        (void)r;
    }
#endif
    const char *l = getenv("HAKMEM_LEARN");
    if (l && strcmp(l, "1") == 0) hak_config.learn = 1;
    const char *t = getenv("HAKMEM_PURGE_THREAD");
    if (t && strcmp(t, "0") == 0) hak_config.purge_thread = 0;
    const char *f = getenv("HAKMEM_FORK_TRIM");
    if (f && strcmp(f, "0") == 0) hak_config.fork_trim = 0;
    if (parse_uint(getenv("HAKMEM_YOUNG"), &v)) hak_config.young = v > 255 ? 255 : (uint32_t)v;
    thp_init();
}
