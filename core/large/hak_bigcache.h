/* hak_bigcache.h -- the BigCache: freed large blocks kept mapped (pages and registry entry
 * intact) for reuse, found by the call site that allocated them and by size class; and the
 * large path's per-call-site table (rings and statistics share its 64 entries).
 * Owns: the large size classes, the site rings, the class lists, the byte bound and the
 * decay. Called only from hak_large.c. May call: core/base. Never maps or unmaps memory
 * itself: a block that leaves the cache goes to the eviction callback, always without the
 * cache lock held. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "hak_base.h"
#include "hak_fmt.h"
#include "hak_sizeclass.h"

struct hak_large;

/* Large size classes: four per doubling above HAK_MID_MAX (1.25, 1.5, 1.75, 2, 2.5, 3, ...
 * MiB), up to HAK_LARGE_CLASS_LIMIT; every class is a multiple of 256 KiB. A block's size
 * is a class size, and its usable size is all of it, so a freed block serves any later
 * request of its class; a block taken from the cache may be up to HAK_BIGCACHE_UNCUT_FACTOR
 * times the request's class. Larger requests are mapped to the page and never cached. */
#define HAK_LARGE_CLASS_LIMIT ((size_t)64 << 20)
#define HAK_LARGE_CLASS_COUNT 24
_Static_assert(HAK_MID_MAX == (size_t)1 << 20, "the class index assumes classes start above 2^20");

/* A request takes a cached block of a larger class whole when it is at most this many times
 * the request's class; one further up is cut down to the class (its tail unmapped). */
#define HAK_BIGCACHE_UNCUT_FACTOR 4u

/* The class size for a request of n bytes, or 0 if n is outside (HAK_MID_MAX, LIMIT]. */
static HAK_INLINE size_t hak_bigcache_class_size(size_t n) {
    if (n <= HAK_MID_MAX || n > HAK_LARGE_CLASS_LIMIT) return 0;
    size_t m = n - 1;  // 2^e <= m < 2^(e+1): four steps of 2^(e-2) in (2^e, 2^(e+1)]
    unsigned e = 63u - (unsigned)__builtin_clzll((unsigned long long)m);
    size_t step = (size_t)1 << (e - 2);
    return (m | (step - 1)) + 1;
}

/* The index (0..HAK_LARGE_CLASS_COUNT-1) of a class size. */
static HAK_INLINE unsigned hak_bigcache_class_index(size_t size) {
    size_t m = size - 1;
    unsigned e = 63u - (unsigned)__builtin_clzll((unsigned long long)m);
    return (e - 20u) * 4u + (unsigned)((m - ((size_t)1 << e)) >> (e - 2));
}

/* Gives a block that left the cache back to the OS (unregister, unmap, free the header). */
typedef void (*hak_bigcache_evict_fn)(struct hak_large *h);

/* Set the eviction callback and register the cache's reclaim function with the OS layer.
 * Idempotent; must run before the first put. */
HAK_HIDDEN void hak_bigcache_init(hak_bigcache_evict_fn evict);

/* A cached block for a request of class size `size`, taken out of the cache. Entries older
 * than HAKMEM_DECAY_MS are evicted first. Then, in order: one of that class from the ring
 * of the site's entry; the newest of the class from any site (bigcache_hit_fallback); the
 * newest of the smallest larger class up to HAK_BIGCACHE_UNCUT_FACTOR times `size`
 * (bigcache_hit_larger: the caller uses it whole); the newest of the smallest class above
 * that (bigcache_hit_split: the caller cuts it down to `size`); the newest of the largest
 * smaller class (the caller grows it, and counts bigcache_hit and bigcache_hit_grow, or
 * bigcache_miss if the growth fails). NULL on a miss, when the cache is empty. Counts
 * bigcache_hit or bigcache_miss otherwise. The caller marks the block live. */
HAK_HIDDEN struct hak_large *hak_bigcache_get(uintptr_t site, size_t size);

/* Keep h (already marked free) in the cache, evicting the oldest entries to stay within
 * HAKMEM_BIGCACHE_MAX. Returns 0 when the cache took h (it may still evict it at once,
 * with HAKMEM_DECAY_MS=0), -1 when the caller must give it back itself: not a class size,
 * larger than the bound, or the cache is off. */
HAK_HIDDEN int hak_bigcache_put(struct hak_large *h);

/* The byte bound in force: HAKMEM_BIGCACHE_MAX, or what hak_bigcache_set_max last set (the
 * UCB1 learner's arm, HAKMEM_LEARN=1). A lower bound is reached at the next put. */
HAK_HIDDEN size_t hak_bigcache_max(void);
HAK_HIDDEN void hak_bigcache_set_max(size_t max);

/* Evict the entries older than HAKMEM_DECAY_MS (the purge thread). Returns the bytes. */
HAK_HIDDEN size_t hak_bigcache_decay(void);

/* Evict every entry (malloc_trim, out of memory). Returns the bytes given back. */
HAK_HIDDEN size_t hak_bigcache_flush(void);

/* Bytes and blocks in the cache now (a snapshot). */
HAK_HIDDEN void hak_bigcache_totals(size_t *bytes, size_t *count);

/* Per-call-site statistics (compiled out with HAKMEM_STATS=OFF). outcome: 1 a cache hit,
 * 2 a miss, 0 a request the cache does not serve (over-aligned, or above the classes). */
HAK_HIDDEN void hak_bigcache_site_alloc(uintptr_t site, size_t requested, size_t size, int outcome);
HAK_HIDDEN void hak_bigcache_site_resize(uintptr_t site, size_t old_size, size_t new_size);

/* Write the top call sites by bytes requested to fd: a text table, or with json the member
 * "large_sites":[...] for the report's object (hak_stats_extra_fn). */
HAK_HIDDEN void hak_bigcache_report(hak_buf_t *b, int json);

/* fork(): the cache lock is held across fork; the child keeps the cache as it was. */
HAK_HIDDEN void hak_bigcache_fork_prepare(void);
HAK_HIDDEN void hak_bigcache_fork_parent(void);
HAK_HIDDEN void hak_bigcache_fork_child(void);
