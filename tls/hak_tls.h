/* hak_tls.h -- the per-thread cache: a singly-linked free list per size class (the TLS
 * SLL) with inline pop/push, and the persistent heap behind it (SuperSlabs, partial slab
 * lists, remote queue) that outlives its thread and is adopted by another.
 * Owns: hak_tc_t (thread-local), hak_heap_t, refill, flush, drain, thread exit, adoption.
 * May call: superslab/, remote/, core/base. The only module that uses both superslab/
 * and remote/. Fast paths: no loops, no atomics, no calls but their _slow partner. */
#pragma once

#include <stdint.h>

#include "hak_base.h"
#include "hak_config.h"
#include "hak_harden.h"
#include "hak_lock.h"
#include "hak_remote.h"
#include "hak_sizeclass.h"
#include "hak_ss.h"
#include "hak_stats.h"

typedef struct hak_heap hak_heap_t;

/* The thread cache. Thread-local, zero-initialised: a new thread's lists are all empty, so
 * its first malloc misses and the refill sets the heap up (no "initialised?" test). */
typedef struct hak_tc {
    void *head[HAK_SC_MAX];
    int64_t room[HAK_SC_MAX];     /* tc_cap minus the blocks in head[sc]; < 0: flush */
    hak_heap_t *heap;   /* NULL until the first refill, and again after thread exit */
    int state;          /* HAK_TC_NEW, _INIT (setting up), _ACTIVE, _EXITED */
#if HAK_STATS
    hak_stats_fast_t stats; /* the fast paths' counters (core/base/hak_stats.h) */
#endif
    /* Frees of other heaps' blocks, gathered for one heap and pushed onto its queue with
     * one CAS (hak_tls.c: remote_batch_add). Cold: after the fast-path fields. */
    void *rb_head, *rb_tail;
    hak_heap_t *rb_heap;
    uint32_t rb_count, rb_bytes;
    int rb_armed;       /* the exit key is set, so thread exit pushes the batch */
} hak_tc_t;

enum { HAK_TC_NEW = 0, HAK_TC_INIT, HAK_TC_ACTIVE, HAK_TC_EXITED };

/* A heap: what a thread owns. Never freed (the first in .bss, hak_first_heap.c; the others in
 * metadata memory): when its thread exits it goes to the orphan list and a new or starving
 * thread adopts it. */
struct hak_heap {
    hak_remote_queue_t remote;          /* other threads push frees here (own cache line) */
    hak_lock_t lock;                    /* held by the owner in slow paths; by fork */
    hak_orphan_t orphan;                /* on the orphan list while no thread owns it */
    int owned;                          /* a thread owns it (set and cleared under lock) */
    _Atomic(const void *) owner_tc;     /* that thread's cache address: compared, never read */
    hak_stats_block_t stats;            /* its counters, whoever owns it (never freed) */
    hak_slab_t *partial[HAK_SC_MAX];    /* spans with free or uncarved blocks, by class */
    hak_ss_t *ss_avail;                 /* owned SuperSlabs with a free slab */
    hak_ss_t *ss_full;                  /* owned SuperSlabs with no free slab */
    hak_ss_t *spare;                    /* one empty SuperSlab kept against churn */
    size_t kept_bytes;                  /* bytes of empty spans kept on the partial lists */
    uint64_t epoch;                     /* slow paths run (refill, flush), under the lock */
    uint64_t purge_epoch;               /* epoch at the purge thread's last look */
    int purged;                         /* given back since epoch last moved */
    size_t ss_count;
    uint8_t young_taken[HAK_SC_MAX];    /* owner only: blocks taken for each young class */
    hak_heap_t *all_next;               /* every heap ever made (under the heaps lock) */
};

extern HAK_HIDDEN __thread hak_tc_t hak_tc HAK_TLS_MODEL;
/* The first heap made: static (hak_first_heap.c), taken once by thread_init. */
extern HAK_HIDDEN hak_heap_t hak_first_heap;

HAK_HIDDEN void *hak_tls_refill_slow(unsigned sc);
/* Before fork (HAKMEM_FORK_TRIM): give back the calling thread's free memory (its cache, empty
 * spans, free slabs, in a heap of one SuperSlab the pages of free blocks) and purge the pooled
 * SuperSlabs; at most once per HAKMEM_DECAY_MS. */
HAK_HIDDEN void hak_tls_fork_trim(void);
HAK_HIDDEN void hak_tls_flush_slow(unsigned sc);
/* free() of a SuperSlab block that is not the calling thread's, or that looks freed. */
HAK_HIDDEN void hak_tls_free_slow(hak_ss_t *ss, void *p, unsigned sc);
/* A listed free block lost its free mark: report and abort. */
HAK_HIDDEN __attribute__((noreturn, cold)) void hak_tls_corrupt(void *b);

/* Pop a block of class sc. */
static HAK_INLINE void *hak_tls_alloc(unsigned sc) {
    hak_tc_t *tc = &hak_tc;
    void **b = tc->head[sc];
    if (hak_unlikely(b == NULL)) return hak_tls_refill_slow(sc);
#if HAK_HARDEN_POPCHECK
    // Every listed block carries the free mark: a block without it was written after its
    // free, or the link that led here was (and decoded to a wild address).
    if (hak_unlikely(b[1] != (void *)hak_free_key)) hak_tls_corrupt(b);
#endif
    tc->head[sc] = hak_link_get(b);
    tc->room[sc]++;
    b[1] = NULL;  // clear the free key: the block is live
    HAK_STAT_FAST(tc->stats, sc_alloc[sc]);
    return b;
}

/* Free p, a block in ss. */
static HAK_INLINE void hak_tls_free(hak_ss_t *ss, void *p) {
    hak_tc_t *tc = &hak_tc;
    unsigned idx = hak_ss_slab_index(ss, p);
    unsigned sc = ss->slab_sc[idx];
    void **b = p;
    // relaxed: the owner field equals our heap only if we set it; see hak_ss.c. Interior
    // pointers, pointers into a free slab (its block-start limit is 0) and blocks carrying
    // the free mark go to the slow path, which reports them; so sc is a live class below.
    if (hak_unlikely(hak_load_relaxed(&ss->owner) != (void *)tc->heap || !hak_ss_is_block_start(ss, p, idx) ||
                     b[1] == (void *)hak_free_key)) {
        hak_tls_free_slow(ss, p, sc);
        return;
    }
    b[1] = (void *)hak_free_key;
    hak_link_set(b, tc->head[sc]);
    tc->head[sc] = b;
    HAK_STAT_FAST(tc->stats, free_tls_sll);
    if (hak_unlikely(--tc->room[sc] < 0)) hak_tls_flush_slow(sc);
}

/* Give free memory back: flush this thread's cache, release empty SuperSlabs, purge free
 * slabs, unmap the pool. Returns bytes released. */
HAK_HIDDEN size_t hak_tls_trim(void);
/* The purge thread's pass: heaps that ran no slow path since the last pass give back their
 * empty spans and free slabs, then the SuperSlab pool decays. */
HAK_HIDDEN void hak_tls_purge_idle(void);
/* A function the thread cache calls, with no lock held, after a flush or a thread exit made
 * memory free (the front's purge-thread kick). Set once, at load. */
HAK_HIDDEN void hak_tls_set_idle_hook(void (*fn)(void));
/* Bytes in blocks handed out (thread caches included) and heaps made. */
HAK_HIDDEN void hak_tls_totals(size_t *in_use, size_t *heaps);
HAK_HIDDEN void hak_tls_fork_prepare(void);
HAK_HIDDEN void hak_tls_fork_parent(void);
HAK_HIDDEN void hak_tls_fork_child(void);
/* Global set-up (config, classes, thread key, secret); idempotent, allocation-free. */
HAK_HIDDEN void hak_tls_global_init(void);
