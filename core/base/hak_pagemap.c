/* hak_pagemap.c -- leaf mapping and range updates for the region registry. */
#include "hak_pagemap.h"

#include <errno.h>

#include "hak_lock.h"
#include "hak_os.h"

// All zeros: no leaf yet anywhere. The zero leaf is 2 MiB of .bss that is only ever read
// (where the kernel maps its zero page for reads; see hak_pagemap.h).
hak_pagemap_root_t hak_pagemap = {.leaf_lock = HAK_LOCK_INIT};

static _Atomic(uintptr_t) *leaf_at(uintptr_t off) {
    return (_Atomic(uintptr_t) *)((uintptr_t)hak_pagemap.zero_leaf + off);
}

static _Atomic(uintptr_t) *leaf_for(uintptr_t idx) {
    unsigned top = (unsigned)(idx >> HAK_PM_LEAF_BITS);
    // pairs with the release store below
    uintptr_t off = hak_load_acquire(&hak_pagemap.top[top]);
    if (off) return leaf_at(off);
    hak_lock(&hak_pagemap.leaf_lock);
    off = hak_load_relaxed(&hak_pagemap.top[top]);
    if (!off) {
        size_t bytes = sizeof(uintptr_t) << HAK_PM_LEAF_BITS;
        void *leaf = hak_os_map(bytes, 0);
        if (!leaf) {
            hak_unlock(&hak_pagemap.leaf_lock);
            return NULL;
        }
        // 2 MiB, and mmap may hand it out 2 MiB-aligned: under THP "always" one write would
        // make all of it resident, where a process writes one page of it
        hak_os_advise_nohuge(leaf, bytes);
        off = (uintptr_t)leaf - (uintptr_t)hak_pagemap.zero_leaf;
        // pairs with the acquire loads in hak_pagemap_get and above
        hak_store_release(&hak_pagemap.top[top], off);
    }
    hak_unlock(&hak_pagemap.leaf_lock);
    return leaf_at(off);
}

int hak_pagemap_set(uintptr_t addr, size_t size, uintptr_t value) {
    uintptr_t first = addr >> HAK_SS_SHIFT;
    uintptr_t last = (addr + size - 1) >> HAK_SS_SHIFT;
    if (last >> (HAK_PM_TOP_BITS + HAK_PM_LEAF_BITS)) return ENOMEM;
    // Chunk 0 stays empty: free(NULL) looks it up on the fast path and must find nothing.
    if (first == 0 && value != 0) return ENOMEM;
    for (uintptr_t idx = first; idx <= last; idx++) {
        _Atomic(uintptr_t) *leaf = leaf_for(idx);
        if (!leaf) {
            // undo what was set, so a failed registration leaves nothing behind
            for (uintptr_t j = first; j < idx; j++)
                hak_store_release(&leaf_for(j)[j & ((1u << HAK_PM_LEAF_BITS) - 1)], 0);
            return ENOMEM;
        }
        // pairs with the acquire load in hak_pagemap_get
        hak_store_release(&leaf[idx & ((1u << HAK_PM_LEAF_BITS) - 1)], value);
    }
    return 0;
}

void hak_pagemap_fork_prepare(void) { hak_lock(&hak_pagemap.leaf_lock); }
void hak_pagemap_fork_parent(void) { hak_unlock(&hak_pagemap.leaf_lock); }
void hak_pagemap_fork_child(void) { hak_lock_reset(&hak_pagemap.leaf_lock); }
