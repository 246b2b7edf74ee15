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

// Chunks in [from, to) that the block no longer covers are cleared; new ones are set.
static void remap_range(hak_large_t *h, char *old_base, size_t old_size) {
    uintptr_t old_end = hak_align_up((uintptr_t)old_base + old_size, HAK_SS_SIZE);
    uintptr_t new_end = hak_align_up((uintptr_t)h->base + h->size, HAK_SS_SIZE);
    if (old_base != h->base) {
        hak_pagemap_set((uintptr_t)old_base, old_size, 0);
        hak_pagemap_set((uintptr_t)h->base, h->size, (uintptr_t)h | HAK_PM_TAG_LARGE);
    } else if (new_end > old_end) {
        hak_pagemap_set(old_end, new_end - old_end, (uintptr_t)h | HAK_PM_TAG_LARGE);
    } else if (new_end < old_end) {
        hak_pagemap_set(new_end, old_end - new_end, 0);
    }
}

void *hak_large_realloc(hak_large_t *h, void *p, size_t n) {
    if (hak_unlikely((char *)p != h->base)) hak_die("realloc(): invalid pointer (inside a large block)", p);
    if (hak_unlikely(hak_load_relaxed(&h->live) != 1)) hak_die("realloc(): large block already freed", p);
    size_t size = round_size(n);
    if (size == 0 || size > (size_t)PTRDIFF_MAX) {
        errno = ENOMEM;
        return NULL;
    }
    char *old_base = h->base;
    size_t old_size = h->size;
    if (size == old_size) return p;
    if (size < old_size || hak_os_resize_inplace(old_base, old_size, size) == 0) {
        if (size < old_size && hak_os_unmap(old_base + size, old_size - size) != 0) return p;
        h->size = size;
        remap_range(h, old_base, old_size);
        HAK_STAT_INC(large_realloc_inplace);
    } else {
        char *target = hak_os_reserve(size, LARGE_ALIGN);
        if (!target) {
            errno = ENOMEM;
            return NULL;
        }
        if (hak_os_move(old_base, old_size, size, target) != 0) {
            hak_os_unmap(target, size);
            errno = ENOMEM;
            return NULL;
        }
        h->base = target;
        h->size = size;
        remap_range(h, old_base, old_size);
        HAK_STAT_INC(large_realloc_move);
    }
    if (size > old_size) hak_fetch_add_relaxed(&live_bytes, size - old_size);
    else hak_fetch_sub_relaxed(&live_bytes, old_size - size);
    return h->base;
}

void hak_large_totals(size_t *bytes, size_t *count) {
    *bytes = hak_load_relaxed(&live_bytes);
    *count = hak_load_relaxed(&live_count);
}

void hak_large_fork_prepare(void) { hak_meta_fork_prepare(&large_meta); }
void hak_large_fork_parent(void) { hak_meta_fork_parent(&large_meta); }
void hak_large_fork_child(void) { hak_meta_fork_child(&large_meta); }
