/* hak_guard.h -- guarded blocks (HAKMEM_GUARD=1, HAKMEM_GUARD_SAMPLE=N).
 * A guarded block lives alone in a slot of a reserved region: its end sits against a page
 * with no access, and the pages before it have none either, so an overflow or underflow
 * that leaves the block's page faults at once. The bytes between the block's end and the
 * page (under 16) hold a pattern that free checks, so a one-byte overflow is caught too.
 * A freed slot loses all access and goes to the back of a queue, so a use after free
 * faults for as long as the slot waits. A SIGSEGV handler turns such a fault into one
 * line naming the block, its size and the call sites that allocated and freed it.
 * Owns: the region, its slots, the SIGSEGV handler. May call: core/base. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "hak_base.h"

/* The largest block that can be guarded: larger requests are never sampled. */
#define HAK_GUARD_MAX ((size_t)64 << 10)

extern HAK_HIDDEN uintptr_t hak_guard_lo, hak_guard_hi; /* the region; 0, 0 until made */

/* 1 if p lies in the guarded region (a live, freed or unused slot). */
static HAK_INLINE int hak_guard_owns(const void *p) { return (uintptr_t)p - hak_guard_lo < hak_guard_hi - hak_guard_lo; }

/* Allocations to skip before the next guarded one, for a thread's countdown: INT64_MAX
 * when neither HAKMEM_GUARD nor HAKMEM_GUARD_SAMPLE is set, 0 under HAKMEM_GUARD=1, and
 * a random count averaging N-1 under HAKMEM_GUARD_SAMPLE=N. */
HAK_HIDDEN int64_t hak_guard_skip(void);
/* A guarded block of n bytes (n <= HAK_GUARD_MAX, 16-byte aligned); site is the caller's
 * return address. NULL when every slot is in use or the OS refuses: allocate normally. */
HAK_HIDDEN void *hak_guard_alloc(size_t n, uintptr_t site);
/* Free a block of the region (hak_guard_owns(p)). Aborts with a report on a double free,
 * an interior or unused-slot pointer, or a damaged pattern (an overflow within the page). */
HAK_HIDDEN void hak_guard_free(void *p, uintptr_t site);
/* The usable size of a live guarded block (the requested size); aborts with who otherwise. */
HAK_HIDDEN size_t hak_guard_usable(const void *p, const char *who);
HAK_HIDDEN void hak_guard_fork_prepare(void);
HAK_HIDDEN void hak_guard_fork_parent(void);
HAK_HIDDEN void hak_guard_fork_child(void);
