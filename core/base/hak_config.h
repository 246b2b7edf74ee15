/* hak_config.h -- HAKMEM_* environment settings, read once at init without allocating,
 * into a struct that is read-only afterwards. See docs/CONFIG.md. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "hak_base.h"

typedef struct hak_config {
    int debug;           /* HAKMEM_DEBUG: 0 off, 1 text report at exit, 2 JSON at exit */
    int check;           /* HAKMEM_CHECK: 1 (default) detect double and invalid frees */
    size_t ss_pool_max;  /* HAKMEM_SS_POOL: empty SuperSlabs kept for reuse (default 32) */
    uint64_t decay_ms;   /* HAKMEM_DECAY_MS: pooled memory is purged after this (default 1000) */
    size_t bigcache_max; /* HAKMEM_BIGCACHE_MAX: bytes of freed large blocks kept mapped for
                            reuse (default 64 MiB; 0 turns the BigCache off) */
    int learn;           /* HAKMEM_LEARN: 1 a UCB1 bandit picks the BigCache bound among
                            16/32/64/128 MiB (docs/DESIGN-NOTES.md, UCB1); 0 (default) off */
    int purge_thread;    /* HAKMEM_PURGE_THREAD: 1 (default) a background thread gives idle
                            memory back after HAKMEM_DECAY_MS; 0 only allocator calls do */
    int guard;           /* HAKMEM_GUARD: 1 every block up to 64 KiB is guarded (hak_guard.h) */
    size_t guard_sample; /* HAKMEM_GUARD_SAMPLE: one allocation in about N is guarded; 0 off */
    int thp;             /* HAKMEM_THP: HAK_THP_OFF (default), HAK_THP_ON or HAK_THP_AUTO */
    size_t thp_min;      /* HAKMEM_THP_MIN: smallest large block advised (default 2 MiB) */
    uint32_t young;      /* HAKMEM_YOUNG: blocks of each class under 512 B that a heap takes
                            from the 256 or 512 B class before the class gets spans of its
                            own (default 8, at most 255; 0 off) */
    int fork_trim;       /* HAKMEM_FORK_TRIM: 1 (default) fork() first gives back the forking
                            thread's free memory (its cache, empty spans, free pages); 0 off */
    /* What those come to, with the kernel's setting under auto (docs/CONFIG.md), at init: */
    size_t thp_large_min; /* large mappings of at least this are advised; SIZE_MAX: none */
    int thp_ss;           /* SuperSlab mappings are advised */
} hak_config_t;

/* HAKMEM_THP: 0 never advise huge pages; 1 advise large blocks of at least HAKMEM_THP_MIN and
 * every SuperSlab; auto: large blocks only, and only when the kernel's setting is madvise. */
enum { HAK_THP_OFF = 0, HAK_THP_ON = 1, HAK_THP_AUTO = 2 };

extern HAK_HIDDEN hak_config_t hak_config;
HAK_HIDDEN void hak_config_init(void);
