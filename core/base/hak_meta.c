/* hak_meta.c -- fixed-size metadata pools. */
#include "hak_meta.h"

#include <string.h>

#include "hak_os.h"

#define META_CHUNK ((size_t)1 << 20)

// Every pool bumps from one shared chunk, so objects of different pools share pages: a chunk
// per pool cost a page (and a 1 MiB mapping) for each pool in use, even for one large-block
// header. (A process's first heap is not here but in .bss, tls/hak_first_heap.c: with it a
// SuperSlab header, 3448 bytes, took 2 pages.)
// The arena lock is taken only inside a pool's lock, so a fork that holds every pool's lock
// finds it free.
static struct {
    hak_lock_t lock;
    char *bump;
    char *end;
} arena = {HAK_LOCK_INIT, NULL, NULL};

static void *arena_take(size_t size) {
    hak_lock(&arena.lock);
    if (arena.bump == NULL || (size_t)(arena.end - arena.bump) < size) {
        char *chunk = hak_os_map(META_CHUNK, 0);
        if (!chunk) {
            hak_unlock(&arena.lock);
            return NULL;
        }
        arena.bump = chunk;
        arena.end = chunk + META_CHUNK;
    }
    void *obj = arena.bump;
    arena.bump += size;
    hak_unlock(&arena.lock);
    return obj;
}

void *hak_meta_alloc(hak_meta_pool_t *pool) {
    hak_lock(&pool->lock);
    void *obj = pool->free;
    if (obj) {
        pool->free = *(void **)obj;
    } else {
        obj = arena_take(pool->size);
        if (!obj) {
            hak_unlock(&pool->lock);
            return NULL;
        }
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
void hak_meta_fork_child(hak_meta_pool_t *pool) {
    hak_lock_reset(&pool->lock);
    hak_lock_reset(&arena.lock);  // free at the fork (see arena), and the child is alone
}
