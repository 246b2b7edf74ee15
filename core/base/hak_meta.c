/* hak_meta.c -- fixed-size metadata pools. */
#include "hak_meta.h"

#include <string.h>

#include "hak_os.h"

#define META_CHUNK ((size_t)1 << 20)

void *hak_meta_alloc(hak_meta_pool_t *pool) {
    hak_lock(&pool->lock);
    void *obj = pool->free;
    if (obj) {
        pool->free = *(void **)obj;
    } else {
        if (pool->bump == NULL || (size_t)(pool->end - pool->bump) < pool->size) {
            char *chunk = hak_os_map(META_CHUNK, 0);
            if (!chunk) {
                hak_unlock(&pool->lock);
                return NULL;
            }
            pool->bump = chunk;
            pool->end = chunk + META_CHUNK;
        }
        obj = pool->bump;
        pool->bump += pool->size;
    }
    hak_unlock(&pool->lock);
    memset(obj, 0, pool->size);
    return obj;
}

void hak_meta_free(hak_meta_pool_t *pool, void *obj) {
    hak_lock(&pool->lock);
    *(void **)obj = pool->free;
    pool->free = obj;
    hak_unlock(&pool->lock);
}

void hak_meta_fork_prepare(hak_meta_pool_t *pool) { hak_lock(&pool->lock); }
void hak_meta_fork_parent(hak_meta_pool_t *pool) { hak_unlock(&pool->lock); }
void hak_meta_fork_child(hak_meta_pool_t *pool) { hak_lock_reset(&pool->lock); }
