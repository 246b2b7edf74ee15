/* hak_large.h -- blocks above the mid tier (> 1 MiB) and over-aligned requests: each is
 * its own 2 MiB-aligned mapping, described by an out-of-band header that the pagemap
 * points to from every chunk the mapping covers. The user pointer is the mapping start.
 * Sizes in (1 MiB, 64 MiB] are rounded to the large size classes (hak_bigcache.h), and a
 * freed block of a class stays mapped and registered in the BigCache until a request of
 * its class (first from its own call site) takes it again, or it is evicted.
 * May call: core/base. Must never call tls/, superslab/ or remote/. */
#pragma once

#include <stddef.h>

#include "hak_atomic.h"
#include "hak_base.h"
#include "hak_fmt.h"
#include "hak_pagemap.h"

/* A large block's header. base, size and site belong to whoever holds the block (its
 * allocator until the free; the cache, under its lock, while cached). live is the one
 * field racing frees touch. The last four are the BigCache's, read and written under its
 * lock only. The header stays 64 bytes (one metadata slot). */
typedef struct hak_large {
    char *base;                   /* mapping start == the user pointer */
    size_t size;                  /* bytes mapped (page multiple; a class size when cacheable) */
    _Atomic int live;             /* 1 while allocated; a free swaps it to 0 */
    unsigned ring;                /* 1 + its slot in the site rings while there, else 0 */
    unsigned huge;                /* advised MADV_HUGEPAGE when mapped: a move that grows
                                     it advises the new tail as well (hak_os_move maps it) */
    uintptr_t site;               /* return address of the call that allocated it */
    uint64_t cached_ms;           /* when it entered the cache (hak_os_now_ms) */
    struct hak_large *prev, *next; /* its class list in the cache, oldest first */
} hak_large_t;

/* The large block that p is in, or NULL if none. */
static HAK_INLINE hak_large_t *hak_large_of(const void *p) {
    uintptr_t e = hak_pagemap_get((uintptr_t)p);
    if ((e & HAK_PM_TAG_MASK) != HAK_PM_TAG_LARGE) return NULL;
    return (hak_large_t *)(e - HAK_PM_TAG_LARGE);
}

/* A block of n bytes aligned to align (a power of two; 0 means the page size), from the
 * BigCache or freshly mapped. site is the caller's return address (the call site's key);
 * zero asks for zeroed memory (calloc: only a reused block needs clearing). NULL and
 * errno = ENOMEM on failure. */
HAK_HIDDEN void *hak_large_alloc(size_t n, size_t align, uintptr_t site, int zero);
/* Free p, which must be h->base; aborts with a message on a double or interior free. */
HAK_HIDDEN void hak_large_free(hak_large_t *h, void *p);
/* Whether h is allocated now (a cached block is registered but not live). */
static HAK_INLINE int hak_large_live(const hak_large_t *h) { return hak_load_relaxed((_Atomic int *)&h->live) == 1; }
/* Resize in place or by moving the mapping (no copy). NULL with errno = ENOMEM on
 * failure, the block untouched. */
HAK_HIDDEN void *hak_large_realloc(hak_large_t *h, void *p, size_t n);
static HAK_INLINE size_t hak_large_usable(const hak_large_t *h) { return h->size; }
/* Live large blocks (bytes, count) and the bytes kept mapped in the BigCache. */
HAK_HIDDEN void hak_large_totals(size_t *bytes, size_t *count, size_t *cached_bytes);
/* malloc_trim: give every cached block back. Returns the bytes released. */
HAK_HIDDEN size_t hak_large_trim(void);
/* Give back cached blocks older than HAKMEM_DECAY_MS (the purge thread). */
HAK_HIDDEN size_t hak_large_decay(void);
/* The call-site report (top sites by bytes) and the UCB1 learner's section (HAKMEM_LEARN),
 * a hak_stats_extra_fn for the front. */
HAK_HIDDEN void hak_large_report(hak_buf_t *b, int json);
HAK_HIDDEN void hak_large_fork_prepare(void);
HAK_HIDDEN void hak_large_fork_parent(void);
HAK_HIDDEN void hak_large_fork_child(void);
