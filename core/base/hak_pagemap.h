/* hak_pagemap.h -- the registry of hakmem's regions: one word per 2 MiB chunk of address
 * space, holding a tagged pointer to the metadata of the SuperSlab or large block that
 * covers the chunk, or 0. free() finds a block's owner by masking the pointer to its chunk
 * and reading this map, never by reading memory that may not be mapped.
 * Two levels: 256 top entries (static) x 262144 leaf words (2 MiB, mapped on first use,
 * never freed), covering the 47-bit user address space. Writers: map/unmap paths (any thread,
 * one chunk has one writer at a time). Readers: everyone, lock-free. */
#pragma once

#include <stdint.h>

#include "hak_atomic.h"
#include "hak_base.h"
#include "hak_lock.h"

#define HAK_PM_LEAF_BITS 18
#define HAK_PM_TOP_BITS 8
/* Entry tags (metadata is 64-byte aligned, so the low bits are free). A SuperSlab entry is
 * tagged 1 so that one test, ((e - 1) & 7) == 0, both rejects 0 and yields the pointer. */
#define HAK_PM_TAG_MASK ((uintptr_t)7)
#define HAK_PM_TAG_SS ((uintptr_t)1)
#define HAK_PM_TAG_LARGE ((uintptr_t)2)
/* Addresses the map covers: the 47-bit user address space. */
#define HAK_PM_ADDR_LIMIT ((uintptr_t)1 << (HAK_SS_SHIFT + HAK_PM_TOP_BITS + HAK_PM_LEAF_BITS))

/* A top entry holds its leaf's address minus the zero leaf's: 0, the value of every entry
 * without a leaf, selects one shared, never-written zero leaf, so a lookup needs no NULL
 * test. As offsets the table starts all zero, in .bss; as pointers it was 8 KiB of .data
 * and 1024 relocations that the loader wrote at every program start. The zero leaf follows
 * the table in one object, so one address register serves both loads of a lookup.
 * The table is small (2 KiB, a leaf maps 512 GiB) so that the words a process reads do not
 * cost it pages of their own: free(NULL) reads top[0] and zero_leaf[0], a block under
 * 0x7f... top[255], and these three sit within 2 KiB + 16 bytes: in one page, the page of
 * the globals linked before the table, whenever the root starts in the first half of a page
 * (as in the builds measured: libhakmem.so and Nginx's binary). The kernel this was
 * measured on gives a read fault of .bss a page of its own, not the shared zero page: with
 * 1024 entries, top[0] and top[1023] were 8 KiB apart, and the page of top[1023] and
 * zero_leaf[0] was one of the 6 pages hakmem added to each Nginx process
 * (docs/DESIGN-NOTES.md, "Young classes, and hakmem's .bss in Nginx"). */
typedef struct hak_pagemap_root {
    /* Taken to map a leaf, and by the fork handlers. Here, not a static beside the table:
     * the compiler lays the table out first, and the lock after the 2 MiB zero leaf was a
     * page of its own that every process wrote at fork. */
    hak_lock_t leaf_lock;
    _Atomic uintptr_t top[1u << HAK_PM_TOP_BITS];
    _Atomic(uintptr_t) zero_leaf[1u << HAK_PM_LEAF_BITS];  /* .bss, only ever read */
} hak_pagemap_root_t;
extern HAK_HIDDEN hak_pagemap_root_t hak_pagemap;

/* The entry for the chunk holding addr (addr below HAK_PM_ADDR_LIMIT), or 0. */
static HAK_INLINE uintptr_t hak_pagemap_get_fast(uintptr_t addr) {
    uintptr_t idx = addr >> HAK_SS_SHIFT;
    // The empty asm statements pin the table and the leaf to registers: left to itself, GCC
    // forms the zero leaf's address with a second lea and adds the index apart, 3
    // instructions more than pointer entries took, and with the lock before the table it
    // adds 1 to the index instead of using a displacement; this way it is 1 (one lea,
    // table + off + the table's size).
    _Atomic uintptr_t *top = hak_pagemap.top;
    __asm__("" : "+r"(top));
    // pairs with the release store that publishes a leaf in hak_pagemap_set
    uintptr_t off = hak_load_acquire(&top[idx >> HAK_PM_LEAF_BITS]);
    // integer arithmetic: as pointer arithmetic, an offset to a leaf below the zero leaf
    // would be an overflow (UBSan's pointer-overflow check aborts on it)
    uintptr_t leaf_addr = (uintptr_t)top + sizeof hak_pagemap.top + off;
    __asm__("" : "+r"(leaf_addr));
    _Atomic(uintptr_t) *leaf = (_Atomic(uintptr_t) *)leaf_addr;
    // pairs with the release store of the entry in hak_pagemap_set
    return hak_load_acquire(&leaf[idx & ((1u << HAK_PM_LEAF_BITS) - 1)]);
}

/* The top-level index of addr; at HAK_PM_TOP_COUNT and above the address is outside the map. */
#define HAK_PM_TOP_SHIFT (HAK_SS_SHIFT + HAK_PM_LEAF_BITS)
#define HAK_PM_TOP_COUNT (1u << HAK_PM_TOP_BITS)

/* The entry for the chunk holding addr, or 0 if hakmem does not own it. */
static HAK_INLINE uintptr_t hak_pagemap_get(uintptr_t addr) {
    if (hak_unlikely(addr >= HAK_PM_ADDR_LIMIT)) return 0;
    return hak_pagemap_get_fast(addr);
}

/* Set the entries of every chunk in [addr, addr+size) to value (0 clears). addr must be
 * 2 MiB-aligned. Returns 0, or ENOMEM if a leaf could not be mapped. */
HAK_HIDDEN int hak_pagemap_set(uintptr_t addr, size_t size, uintptr_t value);

HAK_HIDDEN void hak_pagemap_fork_prepare(void);
HAK_HIDDEN void hak_pagemap_fork_parent(void);
HAK_HIDDEN void hak_pagemap_fork_child(void);
