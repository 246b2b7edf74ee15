/* hak_pagemap.c -- leaf mapping and range updates for the region registry. */
#include "hak_pagemap.h"

#include <errno.h>

#include "hak_lock.h"
#include "hak_os.h"

// The shared zero leaf: 512 KiB of .bss that is only ever read (the kernel's zero page).
static _Atomic(uintptr_t) zero_leaf[1u << HAK_PM_LEAF_BITS];
_Atomic(_Atomic(uintptr_t) *) hak_pagemap_top[1u << HAK_PM_TOP_BITS] = {
    [0 ...(1u << HAK_PM_TOP_BITS) - 1] = zero_leaf};
static hak_lock_t leaf_lock = HAK_LOCK_INIT;

static _Atomic(uintptr_t) *leaf_for(uintptr_t idx) {
    unsigned top = (unsigned)(idx >> HAK_PM_LEAF_BITS);
    // pairs with the release store below
    _Atomic(uintptr_t) *leaf = hak_load_acquire(&hak_pagemap_top[top]);
    if (leaf != zero_leaf) return leaf;
    hak_lock(&leaf_lock);
    leaf = hak_load_relaxed(&hak_pagemap_top[top]);
    if (leaf == zero_leaf) {
        leaf = hak_os_map(sizeof(uintptr_t) << HAK_PM_LEAF_BITS, 0);
        // pairs with the acquire loads in hak_pagemap_get and above
        if (leaf) hak_store_release(&hak_pagemap_top[top], leaf);
        else leaf = NULL;
    }
    hak_unlock(&leaf_lock);
    return leaf;
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

void hak_pagemap_fork_prepare(void) { hak_lock(&leaf_lock); }
void hak_pagemap_fork_parent(void) { hak_unlock(&leaf_lock); }
void hak_pagemap_fork_child(void) { hak_lock_reset(&leaf_lock); }
