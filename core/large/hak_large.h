/* hak_large.h -- blocks above the mid tier (> 1 MiB) and over-aligned requests: each is
 * its own 2 MiB-aligned mapping, described by an out-of-band header that the pagemap
 * points to from every chunk the mapping covers. The user pointer is the mapping start.
 * (The per-call-site BigCache, THP and learning come on top of this; see issue 4.)
 * May call: core/base. Must never call tls/, superslab/ or remote/. */
#pragma once

#include <stddef.h>

#include "hak_atomic.h"
#include "hak_base.h"
#include "hak_pagemap.h"

typedef struct hak_large {
    char *base;          /* mapping start == the user pointer */
    size_t size;         /* bytes mapped (page multiple) */
    _Atomic int live;    /* 1 while allocated; a free swaps it to 0 */
} hak_large_t;

/* The large block that p is in, or NULL if none. */
static HAK_INLINE hak_large_t *hak_large_of(const void *p) {
    uintptr_t e = hak_pagemap_get((uintptr_t)p);
    if ((e & HAK_PM_TAG_MASK) != HAK_PM_TAG_LARGE) return NULL;
    return (hak_large_t *)(e - HAK_PM_TAG_LARGE);
}

/* Map a block of n bytes aligned to align (a power of two; 0 means the page size).
 * NULL and errno = ENOMEM on failure. */
HAK_HIDDEN void *hak_large_alloc(size_t n, size_t align);
/* Free p, which must be h->base; aborts with a message on a double or interior free. */
HAK_HIDDEN void hak_large_free(hak_large_t *h, void *p);
/* Resize in place or by moving the mapping (no copy). NULL with errno = ENOMEM on
 * failure, the block untouched. */
HAK_HIDDEN void *hak_large_realloc(hak_large_t *h, void *p, size_t n);
static HAK_INLINE size_t hak_large_usable(const hak_large_t *h) { return h->size; }
HAK_HIDDEN void hak_large_totals(size_t *bytes, size_t *count);
HAK_HIDDEN void hak_large_fork_prepare(void);
HAK_HIDDEN void hak_large_fork_parent(void);
HAK_HIDDEN void hak_large_fork_child(void);
