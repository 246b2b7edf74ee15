/* hak_large.c -- mapped large blocks. */
#include "hak_large.h"

#include <errno.h>

#include "hak_meta.h"
#include "hak_os.h"
#include "hak_stats.h"

static hak_meta_pool_t large_meta = HAK_META_POOL_INIT(sizeof(hak_large_t));
static _Atomic size_t live_bytes;
static _Atomic size_t live_count;

// Every large mapping starts on a 2 MiB boundary, so each pagemap chunk belongs to at
// most one of our regions.
#define LARGE_ALIGN HAK_SS_SIZE

static size_t round_size(size_t n) {
    size_t page = hak_os_page_size();
    if (n > SIZE_MAX - page) return 0;
    return hak_align_up(n ? n : 1, page);
}

void *hak_large_alloc(size_t n, size_t align) {
    size_t size = round_size(n);
    if (size == 0 || size > (size_t)PTRDIFF_MAX) {
        errno = ENOMEM;
        return NULL;
    }
    if (align < LARGE_ALIGN) align = LARGE_ALIGN;
    hak_large_t *h = hak_meta_alloc(&large_meta);
    if (!h) {
        errno = ENOMEM;
        return NULL;
    }
    char *base = hak_os_map(size, align);
    if (!base) {
        hak_meta_free(&large_meta, h);
        errno = ENOMEM;
        return NULL;
    }
    h->base = base;
    h->size = size;
    hak_store_relaxed(&h->live, 1);
    if (hak_pagemap_set((uintptr_t)base, size, (uintptr_t)h | HAK_PM_TAG_LARGE) != 0) {
        hak_os_unmap(base, size);
        hak_meta_free(&large_meta, h);
        errno = ENOMEM;
        return NULL;
    }
    hak_fetch_add_relaxed(&live_bytes, size);
    hak_fetch_add_relaxed(&live_count, 1);
    HAK_STAT_INC(large_alloc);
    HAK_STAT_ADD(large_alloc_bytes, n);
    return base;
}

void hak_large_free(hak_large_t *h, void *p) {
    if (hak_unlikely((char *)p != h->base)) hak_die("free(): invalid pointer (inside a large block)", p);
    int expected = 1;
    // pairs with itself in a racing second free: exactly one free wins
    if (hak_unlikely(!hak_cas_acq_rel(&h->live, &expected, 0))) hak_die("free(): double free of large block", p);
    size_t size = h->size;
    hak_pagemap_set((uintptr_t)h->base, size, 0);
    hak_os_unmap(h->base, size);
    hak_fetch_sub_relaxed(&live_bytes, size);
    hak_fetch_sub_relaxed(&live_count, 1);
    hak_meta_free(&large_meta, h);
    HAK_STAT_INC(large_free);
}

// The registry must never name a range that is not ours: chunks a block gives up are cleared
// before the range goes back to the OS (another thread may map it the moment it does), and
// chunks it takes are set only once the range is ours.
static uintptr_t chunk_end(const char *base, size_t size) { return hak_align_up((uintptr_t)base + size, HAK_SS_SIZE); }

static void *shrink_inplace(hak_large_t *h, size_t size) {
    char *base = h->base;
    size_t old_size = h->size;
    uintptr_t keep_end = chunk_end(base, size), old_end = chunk_end(base, old_size);
    uintptr_t entry = (uintptr_t)h | HAK_PM_TAG_LARGE;
    if (keep_end < old_end) hak_pagemap_set(keep_end, old_end - keep_end, 0);
    if (hak_os_unmap(base + size, old_size - size) != 0) {
        if (keep_end < old_end) hak_pagemap_set(keep_end, old_end - keep_end, entry);  // leaves exist: cannot fail
        return base;  // the block keeps its old size: still valid
    }
    h->size = size;
    return base;
}

static void *grow_inplace(hak_large_t *h, size_t size) {
    char *base = h->base;
    size_t old_size = h->size;
    if (hak_os_resize_inplace(base, old_size, size) != 0) return NULL;
    uintptr_t old_end = chunk_end(base, old_size), new_end = chunk_end(base, size);
    if (new_end > old_end &&
        hak_pagemap_set(old_end, new_end - old_end, (uintptr_t)h | HAK_PM_TAG_LARGE) != 0) {
        hak_os_resize_inplace(base, size, old_size);  // no registry leaf: give the growth back
        return NULL;
    }
    h->size = size;
    return base;
}

static void *move_to_new_range(hak_large_t *h, size_t size) {
    char *old_base = h->base;
    size_t old_size = h->size;
    uintptr_t entry = (uintptr_t)h | HAK_PM_TAG_LARGE;
    char *target = hak_os_reserve(size, LARGE_ALIGN);
    if (!target) return NULL;
    if (hak_pagemap_set((uintptr_t)target, size, entry) != 0) {
        hak_os_unmap(target, size);
        return NULL;
    }
    // the old range leaves the registry before mremap vacates it
    hak_pagemap_set((uintptr_t)old_base, old_size, 0);
    if (hak_os_move(old_base, old_size, size, target) != 0) {
        hak_pagemap_set((uintptr_t)old_base, old_size, entry);  // its leaves exist: cannot fail
        hak_pagemap_set((uintptr_t)target, size, 0);
        hak_os_unmap(target, size);
        return NULL;
    }
    h->base = target;
    h->size = size;
    return target;
}

void *hak_large_realloc(hak_large_t *h, void *p, size_t n) {
    if (hak_unlikely((char *)p != h->base)) hak_die("realloc(): invalid pointer (inside a large block)", p);
    if (hak_unlikely(hak_load_relaxed(&h->live) != 1)) hak_die("realloc(): large block already freed", p);
    size_t size = round_size(n);
    if (size == 0 || size > (size_t)PTRDIFF_MAX) {
        errno = ENOMEM;
        return NULL;
    }
    size_t old_size = h->size;
    if (size == old_size) return p;
    void *q;
    if (size < old_size) {
        q = shrink_inplace(h, size);
        HAK_STAT_INC(large_realloc_inplace);
    } else if ((q = grow_inplace(h, size)) != NULL) {
        HAK_STAT_INC(large_realloc_inplace);
    } else if ((q = move_to_new_range(h, size)) != NULL) {
        HAK_STAT_INC(large_realloc_move);
    } else {
        errno = ENOMEM;
        return NULL;  // the block is untouched
    }
    if (h->size > old_size) hak_fetch_add_relaxed(&live_bytes, h->size - old_size);
    else hak_fetch_sub_relaxed(&live_bytes, old_size - h->size);
    return q;
}

void hak_large_totals(size_t *bytes, size_t *count) {
    *bytes = hak_load_relaxed(&live_bytes);
    *count = hak_load_relaxed(&live_count);
}

void hak_large_fork_prepare(void) { hak_meta_fork_prepare(&large_meta); }
void hak_large_fork_parent(void) { hak_meta_fork_parent(&large_meta); }
void hak_large_fork_child(void) { hak_meta_fork_child(&large_meta); }
