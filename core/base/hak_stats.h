/* hak_stats.h -- debug counters: a block per heap (persistent metadata), process totals for
 * threads without a heap, and the fast paths' counters in the thread cache, folded into the
 * heap's block on slow paths.
 * Owns: the counter list (hak_stats.def), the blocks, the report. May call: write(2),
 * hak_sizeclass. Never allocates. Built with HAK_STATS=0 every counter site is nothing.
 * Nothing outside a thread ever reads its thread-local memory: once the thread is gone it
 * may be reused or unmapped, and a thread can exit without hakmem's exit handler running
 * (its first malloc in the last round of key destructors). */
#pragma once

#include <stdint.h>

#include "hak_base.h"
#include "hak_fmt.h"
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

/* The fast paths' counters, inside the thread cache (tls/): counting costs one increment at
 * an address the fast path has already formed. */
typedef struct hak_stats_fast {
    uint64_t free_tls_sll;           /* frees pushed onto the thread's own list */
    uint64_t sc_alloc[HAK_SC_MAX];   /* mallocs per size class (refills included) */
} hak_stats_fast_t;

/* A heap's counters. Lives in the heap (never freed), so a report can read it at any time;
 * written only by the thread that owns the heap, read racily by reports. */
typedef struct hak_stats_block {
    uint64_t c[HAK_CTR_COUNT];
    uint64_t sc_alloc[HAK_SC_MAX];
    uint64_t sc_refill[HAK_SC_MAX];  /* refills per size class */
    struct hak_stats_block *next;    /* every block registered (under the stats lock) */
} hak_stats_block_t;

/* The calling thread's heap block and fast counters; NULL while it has no heap (it only
 * frees, or has exited): then slow-path counters go to the process totals. */
extern HAK_HIDDEN __thread hak_stats_block_t *hak_stats_cur HAK_TLS_MODEL;
extern HAK_HIDDEN __thread hak_stats_fast_t *hak_stats_fast_cur HAK_TLS_MODEL;

HAK_HIDDEN void hak_stats_add_global(unsigned ctr, uint64_t v);

#if HAK_STATS
#define HAK_STAT_ADD(name, v)                                                                      \
    do {                                                                                           \
        hak_stats_block_t *b_ = hak_stats_cur;                                                     \
        if (hak_likely(b_ != NULL)) b_->c[HAK_CTR_##name] += (uint64_t)(v);                        \
        else hak_stats_add_global(HAK_CTR_##name, (uint64_t)(v));                                  \
    } while (0)
#define HAK_STAT_INC(name) HAK_STAT_ADD(name, 1)
/* A gauge (a level that goes up and down, like bigcache_bytes): one process-wide atomic, so
 * a report never sees the rise in one block and the fall in another. delta may be negative;
 * the sum is taken modulo 2^64. */
#define HAK_STAT_GAUGE(name, delta) hak_stats_add_global(HAK_CTR_##name, (uint64_t)(int64_t)(delta))
#define HAK_STAT_SC(arr, sc)                                                                       \
    do {                                                                                           \
        if (hak_stats_cur) hak_stats_cur->arr[sc]++;                                               \
    } while (0)
/* A fast counter in a hak_stats_fast_t the caller owns. */
#define HAK_STAT_FAST(fast, expr) ((fast).expr++)
#else
#define HAK_STAT_ADD(name, v) ((void)(v))
#define HAK_STAT_INC(name) ((void)0)
#define HAK_STAT_GAUGE(name, delta) ((void)(delta))
#define HAK_STAT_SC(arr, sc) ((void)(sc))
#define HAK_STAT_FAST(fast, expr) ((void)0)
#endif

/* List a heap's block in reports (once, when the heap is made). */
HAK_HIDDEN void hak_stats_register(hak_stats_block_t *b);
/* Fold fast counters into a block and zero them: all, or one class and the free count. */
HAK_HIDDEN void hak_stats_fold(hak_stats_fast_t *f, hak_stats_block_t *b);
HAK_HIDDEN void hak_stats_fold_sc(hak_stats_fast_t *f, hak_stats_block_t *b, unsigned sc);
/* Process-wide value of a counter: totals + every block + the caller's unfolded counts.
 * hak_stats_index also names the process's page faults ("os_minflt", "os_majflt", indexes
 * from HAK_CTR_COUNT on), which hak_stats_total reads from the kernel. */
HAK_HIDDEN uint64_t hak_stats_total(unsigned ctr);
HAK_HIDDEN uint64_t hak_stats_total_sc(int which, unsigned sc);
HAK_HIDDEN int hak_stats_index(const char *name);
/* A section a higher module adds to the report (the front passes the large path's call
 * sites; core/base never calls up). In JSON it writes one member, "name":value, which the
 * report places inside its object. */
typedef void (*hak_stats_extra_fn)(hak_buf_t *b, int json);
/* Write the report to fd; extra (may be NULL) adds its section before the report closes. */
HAK_HIDDEN void hak_stats_report(int fd, int json, hak_stats_extra_fn extra);
/* fork(): the stats lock is held across fork and starts free in the child. */
HAK_HIDDEN void hak_stats_fork_prepare(void);
HAK_HIDDEN void hak_stats_fork_parent(void);
HAK_HIDDEN void hak_stats_fork_child(void);
