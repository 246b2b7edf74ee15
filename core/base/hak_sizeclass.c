/* hak_sizeclass.c -- the class tables and per-class geometry. */
#include "hak_sizeclass.h"

const uint8_t hak_sc_small_table[65] = {0,0,1,2,3,4,5,6,7,8,8,9,9,10,10,11,11,12,12,12,12,13,13,13,13,14,14,14,14,15,15,15,15,16,16,16,16,16,16,16,16,17,17,17,17,17,17,17,17,18,18,18,18,18,18,18,18,19,19,19,19,19,19,19,19};
const uint32_t hak_sc_size_table[HAK_SC_MAX] = {16,32,48,64,80,96,112,128,160,192,224,256,320,384,448,512,640,768,896,1024,1280,1536,1792,2048,2560,3072,3584,4096,5120,6144,7168,8192,10240,12288,14336,16384,20480,24576,28672,32768,40960,49152,57344,65536,81920,98304,114688,131072,163840,196608,229376,262144,327680,393216,458752,524288,655360,786432,917504,1048576};
hak_sc_info_t hak_sc_info[HAK_SC_MAX];
uint64_t hak_sc_magic[HAK_SC_MAX + 1];
// On a page boundary, which makes this file's .bss start on one: it is linked just after the
// pagemap's 2 MiB zero leaf, and these tables and the small globals of the modules after it,
// which every process writes (about 3.5 KiB), then fill one page instead of sharing two with
// the zero leaf's unread tail. GCC 12 lays this file's variables out last-defined first, so
// this one, defined last, comes first and needs no padding before it (the padding is .bss,
// never touched). The pagemap's own object stays unaligned: its top table shares the page of
// the globals before it.
_Alignas(4096) uint64_t hak_sc_unit[HAK_SC_MAX + 1];

// Span: the fewest slabs that hold enough blocks (8, or 128 KiB worth for blocks over 16
// KiB, at least 1) while wasting at most 1/8 of the span on the tail. Small spans keep the
// memory a sparsely used class pins down small.
static void pick_span(uint32_t size, uint16_t *span, uint16_t *capacity) {
    uint32_t want = size <= 16384 ? 8 : (uint32_t)(131072 / size);
    if (want == 0) want = 1;
    for (uint32_t k = 1; k <= HAK_SLABS_PER_SS; k++) {
        uint32_t bytes = (uint32_t)(k * HAK_SLAB_SIZE);
        uint32_t cap = bytes / size;
        if (cap < want && k < HAK_SLABS_PER_SS / 2) continue;
        if (cap == 0) continue;
        if ((uint64_t)(bytes - cap * size) * 8 > bytes && k < HAK_SLABS_PER_SS / 2) continue;
        *span = (uint16_t)k;
        *capacity = (uint16_t)(cap > 65535 ? 65535 : cap);
        return;
    }
    *span = HAK_SLABS_PER_SS / 2;
    *capacity = (uint16_t)(HAK_SLABS_PER_SS / 2 * HAK_SLAB_SIZE / size);
}

void hak_sc_init(void) {
    for (unsigned sc = 0; sc < HAK_SC_MAX; sc++) {
        hak_sc_info_t *ci = &hak_sc_info[sc];
        uint32_t size = hak_sc_size_table[sc];
        ci->size = size;
        // floor(2^64 / size) + 1: UINT64_MAX / size is floor(2^64 / size) unless size is a
        // power of two, where it is one less
        uint64_t m = UINT64_MAX / size + 1 + (hak_is_pow2(size) ? 1 : 0);
        hak_sc_magic[sc] = m;
        hak_sc_unit[sc] = (uint64_t)size * m;  // mod 2^64
        hak_sc_magic[HAK_SC_MAX] = 1;
        hak_sc_unit[HAK_SC_MAX] = 0;
        pick_span(size, &ci->span, &ci->capacity);
        // The thread cache keeps about 64 KiB per small class and 128 KiB per mid class up
        // to HAK_TC_MAX_BLOCK, between 1 and 256 blocks; a refill or flush moves half of
        // that. Above it nothing: each free goes to the block's slab and each malloc takes
        // one block from a slab, under the heap's lock. A cache is where an idle thread's
        // memory sits out of reach of the purge thread (only its owner may touch it), and a
        // cap of one block of 256 KiB per class was 2.5 MiB per thread after a free phase in
        // bench/growshrink; in a slab, a free block of a page or more is purged when idle.
        uint32_t budget = size <= HAK_SMALL_MAX ? 65536 : 131072;
        uint32_t cap = budget / size;
        if (cap > 256) cap = 256;
        if (size <= HAK_SMALL_MAX && cap < 32) cap = 32;
        if (cap < 1) cap = 1;
        if (size > HAK_TC_MAX_BLOCK) cap = 0;
        ci->tc_cap = (uint16_t)cap;
        ci->batch = (uint16_t)(cap > 1 ? cap / 2 : 1);
        // Carving writes a link into every block it hands out, so it makes those pages
        // resident. A refill carves about one page's worth (a single block for classes over
        // 2 KiB), so that a class in light use costs a page, not a whole batch (up to 32 KiB),
        // and a block of 4 KiB or more is touched only when it is handed out. (At least 4
        // blocks made 1-3 idle pages resident per mid class: 40 KiB of Nginx's two processes.)
        uint32_t carve = 4096 / size;
        if (carve < 1) carve = 1;
        ci->carve = (uint16_t)(carve < ci->batch ? carve : ci->batch);
        // Both young classes are powers of two, so their blocks are aligned for any class
        // under them (aligned_core picks classes by alignment).
        unsigned young = sc;
        if (size < 256) young = hak_sc_of_small(256);
        else if (size > 256 && size < 512) young = hak_sc_of_small(512);
        ci->young = (uint8_t)young;
    }
}
