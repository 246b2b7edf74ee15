/* hak_ss.h -- SuperSlabs: 2 MiB-aligned regions carved into 64 KiB slabs, each slab (or
 * span of slabs, for mid classes) holding blocks of one size class.
 * Owns: SuperSlab metadata (kept apart from the region, found through the pagemap), slab
 * spans, carving, slab local free lists, the global pool of empty SuperSlabs.
 * May call: core/base. Must never call tls/ or remote/; it knows its owner only as an
 * opaque pointer. */
#pragma once

#include <stdint.h>

#include "hak_atomic.h"
#include "hak_base.h"
#include "hak_os.h"
#include "hak_pagemap.h"
#include "hak_sizeclass.h"

/* The class byte of a free slab: one past the last class. Its block-start limit is 0, so a
 * free into a free slab fails hak_ss_is_block_start and reaches the slow path, which
 * reports it; the fast path needs no test of its own. */
#define HAK_SLAB_NONE HAK_SC_MAX

struct hak_ss;

/* A span's head slab. Written only by the owning thread (or under its heap's lock).
 * Invariant: used + free_count + (blocks purged) + (capacity - carved) == capacity, the
 * blocks purged being popcount(purged) or, under a page, those starting in its pages. */
typedef struct hak_slab {
    void *free;            /* local free list of returned blocks */
    uint32_t free_count;
    uint32_t used;         /* blocks out: in a thread cache, a remote queue, or the program */
    uint32_t carved;       /* blocks carved so far; the rest are untouched */
    uint32_t capacity;
    uint32_t size;         /* block size */
    /* Bit i: block i is free and was purged whole (hak_ss_purge_free_blocks): off the free
     * list, because its link and free mark were zeroed with it. For blocks under a page, bit
     * i is page i of the span instead: every carved block starting in it is free and off the
     * list (when it was purged, every block overlapping it was free). While any bit is set, the
     * span's block-start limits are 0, so every free into it takes the slow path, which
     * checks the bit (a double free of a purged block). Relaxed: the owner's slow free
     * reads it without the heap lock. */
    _Atomic uint64_t purged;
    uint8_t sc;
    uint8_t span;          /* slabs in the span */
    uint8_t index;         /* index of the head slab in its SuperSlab */
    uint8_t listed;        /* on the owner heap's partial list for sc */
    uint8_t kept;          /* empty, kept by the owner heap (counted in its kept_bytes) */
    uint8_t slow_frees;    /* owner only: its frees into the span while purged is set */
    char *start;           /* first block */
    struct hak_slab *prev, *next; /* the owner heap's partial list */
    struct hak_ss *ss;
} hak_slab_t;

typedef struct hak_ss {
    /* Read by every thread that frees into this SuperSlab. */
    /* span capacity * hak_sc_unit (see hak_sizeclass.h); 0 for a free slab, and for a span
     * with purged blocks. Relaxed: the purge thread sets it while the owner frees. First in
     * the struct: at offset 0 free's relaxed load of it is one mov at the slab index (GCC
     * does not fold an atomic load into the compare; anywhere else it adds the offset to a
     * copy of the index first, 2 instructions more). While the metadata slot is free, its
     * first word is the pool's link (see unmap_ss). */
    _Atomic uint64_t slab_limit[HAK_SLABS_PER_SS];
    _Atomic(void *) owner;                 /* owning heap; written by the owner or an adopter */
    char *base;                            /* the 2 MiB region */
    uint8_t slab_sc[HAK_SLABS_PER_SS];     /* class of each slab; HAK_SLAB_NONE when free */
    uint8_t slab_head[HAK_SLABS_PER_SS];   /* head slab index of the span holding each slab */
    uint64_t slab_magic[HAK_SLABS_PER_SS]; /* hak_sc_magic of each slab's class */
    uint64_t slab_offmagic[HAK_SLABS_PER_SS]; /* (slab's offset in its span) * its magic */
    /* Owner only. */
    uint32_t free_mask;                    /* bit i set: slab i free */
    uint32_t spans;                        /* live spans */
    uint32_t dirty_mask;                   /* bit i set: slab i was touched since the last purge */
    int pooled;                            /* in the global pool (under its lock) */
    uint64_t pooled_at_ms;                 /* when it entered the pool */
    struct hak_ss *prev, *next;            /* the owner heap's SuperSlab list, or the pool */
    hak_slab_t slabs[HAK_SLABS_PER_SS];    /* only span heads are meaningful */
} hak_ss_t;
_Static_assert(offsetof(hak_ss_t, slab_limit) == 0, "slab_limit first: see its comment");

/* The SuperSlab that holds p, or NULL if p is not in one (large block or foreign). */
static HAK_INLINE hak_ss_t *hak_ss_of(const void *p) {
    uintptr_t e = hak_pagemap_get((uintptr_t)p) - HAK_PM_TAG_SS;
    if (hak_unlikely(e & HAK_PM_TAG_MASK)) return NULL;  // 0 and large entries land here
    return (hak_ss_t *)e;
}

static HAK_INLINE unsigned hak_ss_slab_index(const hak_ss_t *ss, const void *p) {
    (void)ss;
    return (unsigned)((uintptr_t)p >> HAK_SLAB_SHIFT) & (HAK_SLABS_PER_SS - 1);
}

static HAK_INLINE hak_slab_t *hak_ss_slab_of(hak_ss_t *ss, const void *p) {
    return &ss->slabs[ss->slab_head[hak_ss_slab_index(ss, p)]];
}

/* 1 if p, a pointer into slab idx of ss, is the start of one of its span's blocks: its
 * offset n from the span's start is k * size with k < capacity (one multiply, no division;
 * see hak_sc_magic). 0 for a free slab. */
static HAK_INLINE int hak_ss_is_block_start(const hak_ss_t *ss, const void *p, unsigned idx) {
    // n * magic == low * magic + slab_offmagic (mod 2^64), low = p's offset in its slab
    return ((uintptr_t)p & (HAK_SLAB_SIZE - 1)) * ss->slab_magic[idx] + ss->slab_offmagic[idx] <
           hak_load_relaxed(&ss->slab_limit[idx]);
}

/* 1 if p is the start of a block of its slab (it may still be free). */
HAK_HIDDEN int hak_slab_is_block(const hak_slab_t *slab, const void *p);

/* A SuperSlab with every slab free, from the global pool (*from_pool = 1) or the OS.
 * NULL and errno = ENOMEM when the OS refuses. */
HAK_HIDDEN hak_ss_t *hak_ss_acquire(void *owner, int *from_pool);
/* Give an empty SuperSlab back: to the pool while it holds fewer than HAKMEM_SS_POOL,
 * otherwise to the OS. */
HAK_HIDDEN void hak_ss_release(hak_ss_t *ss);
/* Where a span of class sc fits best in ss. Of every run of free slabs long enough, the
 * span goes at the end of the run that touches fewer clean slabs (not written since the
 * last purge: each of their pages faults when first used), and the shortest such run wins
 * (best fit keeps long runs for long spans). Returns the cost, clean slabs * 32 + slabs left
 * over in the run, and sets *at to the first slab; HAK_SS_NO_FIT if no run fits. */
#define HAK_SS_NO_FIT 0xffffffffu
HAK_HIDDEN unsigned hak_ss_span_fit(const hak_ss_t *ss, unsigned sc, unsigned *at);
/* 1 if ss has a run of free slabs long enough for a span of class sc. */
HAK_HIDDEN int hak_ss_can_start(const hak_ss_t *ss, unsigned sc);
/* Start a span for class sc in ss where hak_ss_span_fit puts it; NULL if no run fits. */
HAK_HIDDEN hak_slab_t *hak_ss_span_start(hak_ss_t *ss, unsigned sc);
/* Start a span for class sc at slab at, the first of span free slabs (hak_ss_span_fit). */
HAK_HIDDEN hak_slab_t *hak_ss_span_start_at(hak_ss_t *ss, unsigned sc, unsigned at);
/* Free an empty span's slabs (used == 0). */
HAK_HIDDEN void hak_ss_span_end(hak_ss_t *ss, hak_slab_t *slab);
/* Carve up to want fresh blocks; links them and returns the count, *head, *tail. */
HAK_HIDDEN unsigned hak_slab_carve(hak_slab_t *slab, unsigned want, void **head, void **tail);
/* MADV_DONTNEED the free slabs of ss that were touched. Returns the bytes purged. */
HAK_HIDDEN size_t hak_ss_purge_free(hak_ss_t *ss);
/* MADV_DONTNEED the whole pages inside the free blocks on the local free lists of every span
 * in ss: for blocks of a page or more, the pages inside each; for smaller blocks, the pages
 * that hold only free blocks. A purged block leaves the free list for the span's purged mask
 * (its link went with the page); hak_slab_take_purged hands it out again. The owner heap's
 * lock held. Returns the bytes purged. */
HAK_HIDDEN size_t hak_ss_purge_free_blocks(hak_ss_t *ss);
/* Take about want purged blocks of slab (for blocks under a page, those of whole pages),
 * linked and marked as free (their first page faults in again); restores the span's
 * block-start limits once none is left. Returns the count, which may be 0. */
HAK_HIDDEN unsigned hak_slab_take_purged(hak_slab_t *slab, unsigned want, void **head, void **tail);
/* Put every purged block of slab back on its free list (written again: their pages fault
 * in), so that frees into the span take the fast path again. The owner heap's lock held.
 * Returns the count. */
HAK_HIDDEN unsigned hak_slab_unpurge(hak_slab_t *slab);
/* 1 if p, a block of slab, is free and purged (owner only). */
static HAK_INLINE int hak_slab_is_purged(hak_slab_t *slab, const void *p) {
    uint64_t m = hak_load_relaxed(&slab->purged);
    if (hak_likely(m == 0)) return 0;
    size_t off = (size_t)((const char *)p - slab->start), page = hak_os_page_size();
    size_t i = slab->size >= page ? off / slab->size : off / page;
    return i < 64 && ((m >> i) & 1u);
}
/* Unmap every pooled SuperSlab. Returns the bytes released. */
HAK_HIDDEN size_t hak_ss_pool_trim(void);
/* Purge pooled SuperSlabs that waited HAKMEM_DECAY_MS, and the dirty ones beyond the newest
 * HAKMEM_SS_POOL / 8 (releases, acquisitions and the purge thread call it). */
HAK_HIDDEN void hak_ss_pool_decay(void);
/* Purge every pooled SuperSlab that holds pages, now (before fork). */
HAK_HIDDEN void hak_ss_pool_purge(void);
/* Totals for hak_info: SuperSlabs mapped and pooled. */
HAK_HIDDEN void hak_ss_totals(size_t *mapped, size_t *pooled);
HAK_HIDDEN void hak_ss_fork_prepare(void);
HAK_HIDDEN void hak_ss_fork_parent(void);
HAK_HIDDEN void hak_ss_fork_child(void);
