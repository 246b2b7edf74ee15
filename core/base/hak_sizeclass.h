/* hak_sizeclass.h -- size classes: 16-byte steps to 128 B, then four per doubling to 1 MiB
 * (at most 25% apart, 12.5-20% above 256 B). Classes 0-19 (to 1 KiB) are the small tier,
 * 20-59 the mid tier; larger requests take the large path.
 * Owns: the class tables and the per-class geometry (span, capacity, cache caps). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "hak_base.h"

#define HAK_SC_MAX 60
#define HAK_SC_SMALL_COUNT 20
#define HAK_SMALL_MAX 1024
/* Blocks above this size are never kept in a thread cache (hak_sc_gen.c). */
#define HAK_TC_MAX_BLOCK 32768
#define HAK_MID_MAX ((size_t)1 << 20)

/* Class of n for n <= HAK_SMALL_MAX, indexed by (n + 15) >> 4. */
extern HAK_HIDDEN const uint8_t hak_sc_small_table[65];
extern HAK_HIDDEN const uint32_t hak_sc_size_table[HAK_SC_MAX];

/* Per-class geometry: constants, computed at build time (hak_sc_gen.c). */
typedef struct hak_sc_info {
    uint32_t size;      /* block size */
    uint16_t span;      /* slabs per span (1..32) */
    uint16_t capacity;  /* blocks per span */
    uint16_t tc_cap;    /* blocks the thread cache keeps before flushing */
    uint16_t batch;     /* blocks moved per refill or flush */
    uint16_t carve;     /* blocks carved from a fresh slab per refill (<= batch) */
    uint8_t young;      /* the class a heap takes its first blocks of this one from (itself
                           when it has none): 256 B for the classes under it, 512 B for those
                           between (tls/hak_tls.c, young classes) */
} hak_sc_info_t;
extern HAK_HIDDEN const hak_sc_info_t hak_sc_info[HAK_SC_MAX];
/* Block-start constants. With M = floor(2^64 / size) + 1 and e = size * M mod 2^64 (so
 * 1 <= e <= size), an offset n < 2^21 gives n * M mod 2^64 == k * e when n == k * size, and
 * a value >= 2^43 otherwise (Lemire, Kaser, Kurz, "Faster remainder by direct computation",
 * 2019, for the non-power-of-two case; for a power of two the +1 makes e = size). So
 * n * M < capacity * e holds exactly for the starts of blocks 0..capacity-1: one multiply
 * and one compare reject interior pointers and the unused tail of a span alike. Entry
 * HAK_SC_MAX (a free slab's class) has M = 1 and e = 0: nothing passes. */
extern HAK_HIDDEN const uint64_t hak_sc_magic[HAK_SC_MAX + 1];
extern HAK_HIDDEN const uint64_t hak_sc_unit[HAK_SC_MAX + 1];  /* e */

/* Class for any n <= HAK_MID_MAX (n = 0 gives class 0). */
static HAK_INLINE unsigned hak_sc_of_small(size_t n) { return hak_sc_small_table[(n + 15) >> 4]; }
static HAK_INLINE unsigned hak_sc_of_mid(size_t n) {
    // n in (1024, 1 MiB]: e = floor(log2(n - 1)), four classes in (2^e, 2^(e+1)].
    size_t m = n - 1;
    unsigned e = 63u - (unsigned)__builtin_clzll((unsigned long long)m);
    unsigned k = (unsigned)((m - ((size_t)1 << e)) >> (e - 2));  // 0..3
    return 8u + (e - 7u) * 4u + k;
}
static HAK_INLINE unsigned hak_sc_for(size_t n) { return n <= HAK_SMALL_MAX ? hak_sc_of_small(n) : hak_sc_of_mid(n); }
