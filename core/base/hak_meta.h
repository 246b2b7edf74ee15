/* hak_meta.h -- pools of fixed-size metadata objects (SuperSlab headers, large-block
 * headers, heaps), carved from mapped chunks that every pool shares. Metadata lives apart
 * from the blocks it describes, so a heap overflow cannot reach it. Objects come back zeroed.
 * May call: hak_os, hak_lock. Thread-safe (a lock per pool, and one for the shared chunk
 * taken inside it; cold paths only). */
#pragma once

#include <stddef.h>

#include "hak_base.h"
#include "hak_lock.h"

typedef struct hak_meta_pool {
    hak_lock_t lock;
    size_t size;   /* object size, rounded up to 64 bytes */
    void *free;    /* freed objects (first word links them) */
} hak_meta_pool_t;

#define HAK_META_POOL_INIT(obj_size) {HAK_LOCK_INIT, (((obj_size) + 63) & ~(size_t)63), NULL}

HAK_HIDDEN void *hak_meta_alloc(hak_meta_pool_t *pool);
HAK_HIDDEN void hak_meta_free(hak_meta_pool_t *pool, void *obj);
HAK_HIDDEN void hak_meta_fork_prepare(hak_meta_pool_t *pool);
HAK_HIDDEN void hak_meta_fork_parent(hak_meta_pool_t *pool);
HAK_HIDDEN void hak_meta_fork_child(hak_meta_pool_t *pool);
