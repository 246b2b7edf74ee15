/* hak_stats.h -- debug counters: a thread-local block per thread, merged into globals at
 * thread exit, summed with the live threads' blocks for a report.
 * Owns: the counter list (hak_stats.def), the per-thread block, the report. May call:
 * write(2), hak_sizeclass. Never allocates. Built with HAK_STATS=0 every site is nothing. */
#pragma once

#include <stdint.h>

#include "hak_base.h"
#include "hak_sizeclass.h"

#ifndef HAK_STATS
#define HAK_STATS 1
#endif

enum {
#define HAK_CTR(name, help) HAK_CTR_##name,
#include "hak_stats.def"
#undef HAK_CTR
    HAK_CTR_COUNT
};

/* The fast paths' counters. They live inside the thread cache (tls/), so that counting
 * costs one increment at an address the fast path has already formed, and are reached from
 * the thread's block through a pointer registered at heap set-up. */
typedef struct hak_stats_fast {
    uint64_t free_tls_sll;           /* frees pushed onto the thread's own list */
    uint64_t sc_alloc[HAK_SC_MAX];   /* mallocs per size class (refills included) */
} hak_stats_fast_t;

/* One thread's counters. Written only by its thread; read racily by reports. */
typedef struct hak_stats_block {
    uint64_t c[HAK_CTR_COUNT];
    uint64_t sc_alloc[HAK_SC_MAX];  /* folded in from fast at merge */
    uint64_t sc_refill[HAK_SC_MAX]; /* refills per size class */
    hak_stats_fast_t *fast;         /* the thread cache's fast counters, once registered */
    struct hak_stats_block *next;   /* in the live-threads list (under the stats lock) */
    int registered;
} hak_stats_block_t;

extern HAK_HIDDEN __thread hak_stats_block_t hak_stats_tls HAK_TLS_MODEL;

/* HAK_STAT_INC/ADD (slow paths): into the thread's block while it is listed, else (a
 * thread that only frees, or that has exited) into the process totals, so nothing is lost.
 * HAK_STAT_SC (the malloc fast path): always the thread's block; only threads with a heap,
 * whose block is listed, get there. */
#if HAK_STATS
#define HAK_STAT_ADD(name, v)                                                                   \
    (hak_likely(hak_stats_tls.registered) ? (void)(hak_stats_tls.c[HAK_CTR_##name] += (uint64_t)(v)) \
                                          : hak_stats_add_global(HAK_CTR_##name, (uint64_t)(v)))
#define HAK_STAT_INC(name) HAK_STAT_ADD(name, 1)
#define HAK_STAT_SC(arr, sc) (hak_stats_tls.arr[sc]++)
/* A fast counter in a hak_stats_fast_t owned by the caller. */
#define HAK_STAT_FAST(fast, expr) ((fast).expr++)
#else
#define HAK_STAT_INC(name) ((void)0)
#define HAK_STAT_ADD(name, v) ((void)(v))
#define HAK_STAT_SC(arr, sc) ((void)(sc))
#define HAK_STAT_FAST(fast, expr) ((void)0)
#endif

HAK_HIDDEN void hak_stats_add_global(unsigned ctr, uint64_t v);
/* Make this thread's block, and its fast counters, visible to reports (thread heap init). */
HAK_HIDDEN void hak_stats_thread_register(hak_stats_fast_t *fast);
/* Fold this thread's block into the globals and unlist it (thread exit). */
HAK_HIDDEN void hak_stats_thread_merge(void);
/* Process-wide value of a counter (globals + live threads). */
HAK_HIDDEN uint64_t hak_stats_total(unsigned ctr);
HAK_HIDDEN uint64_t hak_stats_total_sc(int which, unsigned sc);
HAK_HIDDEN int hak_stats_index(const char *name);
HAK_HIDDEN void hak_stats_report(int fd, int json);
/* fork(): the child keeps only the forking thread; other blocks are merged and unlisted. */
HAK_HIDDEN void hak_stats_fork_prepare(void);
HAK_HIDDEN void hak_stats_fork_parent(void);
HAK_HIDDEN void hak_stats_fork_child(void);
