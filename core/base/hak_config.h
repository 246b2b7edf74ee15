/* hak_config.h -- HAKMEM_* environment settings, read once at init without allocating,
 * into a struct that is read-only afterwards. See docs/CONFIG.md. */
#pragma once

#include <stddef.h>

#include "hak_base.h"

typedef struct hak_config {
    int debug;           /* HAKMEM_DEBUG: 0 off, 1 text report at exit, 2 JSON at exit */
    int check;           /* HAKMEM_CHECK: 1 (default) detect double and invalid frees */
    size_t ss_pool_max;  /* HAKMEM_SS_POOL: empty SuperSlabs kept for reuse (default 32) */
    uint64_t decay_ms;   /* HAKMEM_DECAY_MS: pooled memory is purged after this (default 1000) */
    size_t bigcache_max; /* HAKMEM_BIGCACHE_MAX: bytes of freed large blocks kept mapped for
                            reuse (default 64 MiB; 0 turns the BigCache off) */
} hak_config_t;

extern HAK_HIDDEN hak_config_t hak_config;
HAK_HIDDEN void hak_config_init(void);
