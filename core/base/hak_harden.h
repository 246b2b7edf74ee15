/* hak_harden.h -- the per-process secrets that protect free blocks.
 * Owns: the free mark (second word of every free small or mid block) and the link key (the
 * first word holds the next block XOR this key under HAK_HARDEN). May call: libc only.
 *
 * Why: a write through a stale pointer or off the end of a block lands in a free block's
 * first words. Without a key, a chosen value there is the address the next malloc returns.
 * With it, the value decodes to a pointer nobody chose, and the pop-time mark check (tls/)
 * stops before that pointer is used: the program aborts with a message instead. */
#pragma once

#include <stdint.h>

#include "hak_base.h"

#ifndef HAK_HARDEN
#define HAK_HARDEN 1
#endif
/* The parts of HAK_HARDEN, each measurable alone: the mark check when a block is handed out
 * (with carve-time marks), and the per-thread countdown that guarded sampling needs. */
#ifndef HAK_HARDEN_POPCHECK
#define HAK_HARDEN_POPCHECK 0
#endif
#ifndef HAK_GUARD_HOOK
#define HAK_GUARD_HOOK 0
#endif

/* Odd (never an aligned pointer, never NULL); set once before the first free list exists. */
extern HAK_HIDDEN uintptr_t hak_free_key;
extern HAK_HIDDEN uintptr_t hak_link_key;

/* Set both secrets (getrandom, else the clock). Idempotent only in the sense that callers
 * run it once, under the init lock, before any block is carved. */
HAK_HIDDEN void hak_harden_init(void);

#if HAK_HARDEN
#define HAK_LINK_KEY hak_link_key
#else
#define HAK_LINK_KEY ((uintptr_t)0)
#endif

/* The successor stored in free block b. */
static HAK_INLINE void *hak_link_get(void *const *b) { return (void *)((uintptr_t)b[0] ^ HAK_LINK_KEY); }
/* Make next the successor of free block b. */
static HAK_INLINE void hak_link_set(void **b, void *next) { b[0] = (void *)((uintptr_t)next ^ HAK_LINK_KEY); }
