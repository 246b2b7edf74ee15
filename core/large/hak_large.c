/* hak_large.c -- mapped large blocks: size classes, the BigCache's eviction callback,
 * resizing, and the UCB1 learner's measurements (HAKMEM_LEARN=1). May call: core/base,
 * hak_bigcache and hak_learn (this module). */
#include "hak_large.h"

#include <errno.h>
#include <string.h>

#include "hak_bigcache.h"
#include "hak_config.h"
#include "hak_fmt.h"
#include "hak_learn.h"
#include "hak_lock.h"
#include "hak_meta.h"
#include "hak_os.h"
#include "hak_stats.h"

_Static_assert(sizeof(hak_large_t) <= 64, "a large header must fit one 64-byte metadata slot");

static hak_meta_pool_t large_meta = HAK_META_POOL_INIT(sizeof(hak_large_t));
static _Atomic size_t live_bytes;
static _Atomic size_t live_count;
static _Atomic int cache_ready;

// Every large mapping starts on a 2 MiB boundary, so each pagemap chunk belongs to at
// most one of our regions.
#define LARGE_ALIGN HAK_SS_SIZE

// A class size for (1 MiB, 64 MiB], the page multiple above; 0 if n cannot be mapped.
static size_t round_size(size_t n) {
    size_t page = hak_os_page_size();
    if (n > SIZE_MAX - page) return 0;
    size_t size = hak_align_up(n ? n : 1, page);
    size_t class_size = hak_bigcache_class_size(size);
    return class_size ? class_size : size;
}

// The eviction callback, and the end of every uncached free: the registry lets go of the
// range before the kernel does (another thread may map it the moment it is unmapped).
static void release_block(hak_large_t *h) {
    hak_pagemap_set((uintptr_t)h->base, h->size, 0);
    hak_os_unmap(h->base, h->size);
    hak_meta_free(&large_meta, h);
    HAK_STAT_INC(large_unmap);
}

static void account_alloc(hak_large_t *h, uintptr_t site, size_t n, int outcome) {
    h->site = site;
    hak_fetch_add_relaxed(&live_bytes, h->size);
    hak_fetch_add_relaxed(&live_count, 1);
    HAK_STAT_INC(large_alloc);
    HAK_STAT_ADD(large_alloc_bytes, n);
    hak_bigcache_site_alloc(site, n, h->size, outcome);
}

static HAK_COLD void *map_block(size_t n, size_t size, size_t align, uintptr_t site, int outcome) {
    hak_large_t *h = hak_meta_alloc(&large_meta);
    if (!h) {
        errno = ENOMEM;
        return NULL;
    }
    // on failure the BigCache's blocks go back to the OS, and the map is tried once more
    char *base = hak_os_map_reclaim(size, align);
    if (!base) {
        hak_meta_free(&large_meta, h);
        errno = ENOMEM;
        return NULL;
    }
    h->base = base;
    h->size = size;
    hak_store_relaxed(&h->live, 1);
    if (hak_pagemap_set((uintptr_t)base, size, (uintptr_t)h | HAK_PM_TAG_LARGE) != 0) {
        hak_os_unmap(base, size);
        hak_meta_free(&large_meta, h);
        errno = ENOMEM;
        return NULL;
    }
    // HAKMEM_THP: a huge page per 2 MiB unit (the mapping is 2 MiB-aligned): one fault in
    // place of 512. The advice stays with the block through the BigCache and realloc's mremap.
    h->huge = size >= hak_config.thp_large_min && hak_os_advise_huge(base, size) == 0;
    HAK_STAT_INC(large_map);
    account_alloc(h, site, n, outcome);
    return base;
}

static void *shrink_inplace(hak_large_t *h, size_t size);
static int grow_block(hak_large_t *h, size_t size);

static void *alloc_block(size_t n, size_t align, uintptr_t site, int zero) {
    size_t size = round_size(n);
    if (size == 0 || size > (size_t)PTRDIFF_MAX) {
        errno = ENOMEM;
        return NULL;
    }
    if (align < LARGE_ALIGN) align = LARGE_ALIGN;
    int outcome = 0;  // not cacheable: over-aligned, or outside the classes, or above the bound
    if (align == LARGE_ALIGN && hak_bigcache_class_size(size) == size && size <= hak_bigcache_max()) {
        if (hak_unlikely(!hak_load_relaxed(&cache_ready))) {
            hak_bigcache_init(release_block);
            hak_store_relaxed(&cache_ready, 1);
        }
        hak_large_t *h = hak_bigcache_get(site, size);
        if (h) {
            // the block left the cache under its lock: it is ours alone until returned
            hak_store_relaxed(&h->live, 1);
            // A block more than HAK_BIGCACHE_UNCUT_FACTOR times the class is cut down to the
            // class: its tail goes back to the OS. If the unmap fails it stays whole. One
            // up to that is used whole, tail included: its pages stay resident for the next
            // owner, where a cut had that owner fault in a fresh block (hak_bigcache.c).
            if (h->size > size * HAK_BIGCACHE_UNCUT_FACTOR) shrink_inplace(h, size);
            // A smaller block is grown, in place or moved by mremap (no copy): its pages
            // stay resident. The cache counted neither a hit nor a miss for it: that is
            // known only now. If neither move works (address space or memory short) the
            // block goes back to the OS, evicted, and a new block is mapped.
            if (h->size < size) {
                size_t old_size = h->size;
                if (!grow_block(h, size)) {
                    HAK_STAT_INC(bigcache_miss);
                    HAK_STAT_INC(bigcache_evict);
                    HAK_STAT_ADD(bigcache_evict_bytes, old_size);
                    release_block(h);
                    return map_block(n, size, align, site, 2);
                }
                HAK_STAT_INC(bigcache_hit);
                HAK_STAT_INC(bigcache_hit_grow);
            }
            account_alloc(h, site, n, 1);
            // Reused pages hold the last owner's data. Clearing them in place beats
            // MADV_DONTNEED here, which would zero them again in the kernel, one fault per
            // page, when the caller touches them (docs/DESIGN-NOTES.md, BigCache).
            if (zero) memset(h->base, 0, n);
            return h->base;
        }
        outcome = 2;
    }
    return map_block(n, size, align, site, outcome);
}

static void free_block(hak_large_t *h, void *p) {
    if (hak_unlikely((char *)p != h->base)) hak_die("free(): invalid pointer (inside a large block)", p);
    int expected = 1;
    // pairs with itself in a racing second free: exactly one free wins
    if (hak_unlikely(!hak_cas_acq_rel(&h->live, &expected, 0))) hak_die("free(): double free of large block", p);
    size_t size = h->size;
    hak_fetch_sub_relaxed(&live_bytes, size);
    hak_fetch_sub_relaxed(&live_count, 1);
    hak_bigcache_site_resize(h->site, size, 0);
    HAK_STAT_INC(large_free);
    // A cached block stays mapped and registered, with live == 0, so a second free of it
    // is still caught above.
    if (hak_bigcache_put(h) == 0) return;
    release_block(h);
}

/* ---- UCB1 learning of the BigCache bound (HAKMEM_LEARN=1) ------------------------------
 * Arms: the bound at 16, 32, 64 (the default) and 128 MiB. Every large alloc and free is
 * timed (two CLOCK_MONOTONIC reads, vDSO; only here, and only while learning); every
 * LEARN_EPOCH_OPS of them close an epoch, whose cost per op is
 *   (ns inside the large paths + process minor faults in the epoch * LEARN_FAULT_NS) / ops
 *   + MiB cached at the epoch's end * LEARN_HOLD_NS_PER_MIB
 * and whose reward, in (0, 1], is LEARN_REF_NS / (LEARN_REF_NS + cost). The faults are the
 * whole process's (getrusage at the epoch boundary, not per op): most of what a miss costs is
 * the caller faulting in a fresh block, after the allocator returned. See docs/DESIGN-NOTES.md,
 * UCB1. */
#define LEARN_EPOCH_OPS 256
#define LEARN_FAULT_NS 1000.0        /* a 4 KiB minor fault, page zeroing included: about 1 us */
#define LEARN_HOLD_NS_PER_MIB 100.0  /* per op: 64 MiB held costs like 6.4 faults per op */
#define LEARN_REF_NS 10000.0         /* the cost that earns reward 1/2 */
#define LEARN_COOLDOWN 4             /* epochs: 1024 large operations at least per arm */
#define LEARN_EXPLORE 0.2
#define LEARN_MARGIN 0.02
static const size_t learn_bounds[] = {(size_t)16 << 20, (size_t)32 << 20, (size_t)64 << 20, (size_t)128 << 20};
enum { LEARN_ARMS = sizeof learn_bounds / sizeof learn_bounds[0], LEARN_FIRST = 2 };
enum { LEARN_UNDECIDED = 0, LEARN_ON, LEARN_OFF };

/* Under learn_lock, written by whichever thread runs a large operation. ops and ns are the
 * open epoch's; minflt is the process's fault count when it opened. No other lock is ever
 * taken under learn_lock, and no syscall runs under it. */
static hak_lock_t learn_lock = HAK_LOCK_INIT;
static struct {
    hak_learn_t bandit;
    uint64_t ops, ns, minflt;
} learn;
static _Atomic int learn_state;  // LEARN_*: decided at the first large operation

static HAK_COLD int learn_start(void) {
    int on = hak_config.learn && hak_config.bigcache_max > 0;  // a BigCache turned off stays off
    uint64_t flt = on ? hak_os_minflt() : 0;
    hak_lock(&learn_lock);
    if (hak_load_relaxed(&learn_state) == LEARN_UNDECIDED) {
        if (on) {
            hak_learn_init(&learn.bandit, LEARN_ARMS, LEARN_FIRST, LEARN_COOLDOWN, LEARN_EXPLORE, LEARN_MARGIN);
            learn.minflt = flt;
            hak_bigcache_set_max(learn_bounds[LEARN_FIRST]);
        }
        hak_store_relaxed(&learn_state, on ? LEARN_ON : LEARN_OFF);
    }
    int state = hak_load_relaxed(&learn_state);
    hak_unlock(&learn_lock);
    return state;
}

static HAK_INLINE int learning(void) {
    int s = hak_load_relaxed(&learn_state);
    if (hak_unlikely(s == LEARN_UNDECIDED)) s = learn_start();
    return s == LEARN_ON;
}

// One timed large operation; the last of an epoch rewards the arm and picks the next.
static HAK_COLD void learn_account(uint64_t ns) {
    hak_lock(&learn_lock);
    learn.ns += ns;
    if (++learn.ops < LEARN_EPOCH_OPS) {
        hak_unlock(&learn_lock);
        return;
    }
    double ops = (double)learn.ops, spent = (double)learn.ns;
    learn.ops = learn.ns = 0;
    hak_unlock(&learn_lock);
    uint64_t flt = hak_os_minflt();  // outside the lock: a syscall
    size_t cached, count;
    hak_bigcache_totals(&cached, &count);
    hak_lock(&learn_lock);
    // a racing closer may have read a later count first: never count backwards
    uint64_t faults = flt > learn.minflt ? flt - learn.minflt : 0;
    if (flt > learn.minflt) learn.minflt = flt;
    double cost = (spent + (double)faults * LEARN_FAULT_NS) / ops +
                  (double)cached / (double)(1u << 20) * LEARN_HOLD_NS_PER_MIB;
    hak_learn_update(&learn.bandit, LEARN_REF_NS / (LEARN_REF_NS + cost));
    uint64_t switches = learn.bandit.switches;
    unsigned arm = hak_learn_choose(&learn.bandit);
    hak_bigcache_set_max(learn_bounds[arm]);
    switches = learn.bandit.switches - switches;
    hak_unlock(&learn_lock);
    HAK_STAT_INC(learn_epochs);
    if (switches) HAK_STAT_INC(learn_switches);
}

void *hak_large_alloc(size_t n, size_t align, uintptr_t site, int zero) {
    if (hak_likely(!learning())) return alloc_block(n, align, site, zero);
    uint64_t t0 = hak_os_now_ns();
    void *p = alloc_block(n, align, site, zero);
    learn_account(hak_os_now_ns() - t0);
    return p;
}

void hak_large_free(hak_large_t *h, void *p) {
    if (hak_likely(!learning())) {
        free_block(h, p);
        return;
    }
    uint64_t t0 = hak_os_now_ns();
    free_block(h, p);
    learn_account(hak_os_now_ns() - t0);
}

// The learner's section of the report: the arm now, and each arm's pulls and mean reward
// (in millionths; the cost per op it stands for is LEARN_REF_NS * (1 / reward - 1)).
static void learn_report(hak_buf_t *b, int json) {
    hak_learn_t l;
    hak_lock(&learn_lock);
    l = learn.bandit;
    hak_unlock(&learn_lock);
    int on = hak_load_relaxed(&learn_state) == LEARN_ON;
    if (json) {
        hak_buf_str(b, on ? ",\"learn\":{\"enabled\":true,\"arm\":" : ",\"learn\":{\"enabled\":false,\"arm\":");
        hak_buf_u64(b, on ? l.current : LEARN_FIRST);
        hak_buf_str(b, ",\"bound\":");
        hak_buf_u64(b, hak_bigcache_max());
        hak_buf_str(b, ",\"epochs\":");
        hak_buf_u64(b, l.epochs);
        hak_buf_str(b, ",\"switches\":");
        hak_buf_u64(b, l.switches);
        hak_buf_str(b, ",\"arms\":[");
    } else if (!on) {
        hak_buf_str(b, "  [learning]  off (HAKMEM_LEARN=0 or the BigCache off); BigCache bound ");
        hak_buf_u64(b, hak_bigcache_max());
        hak_buf_str(b, " bytes\n");
    } else {
        hak_buf_str(b, "  [learning]  UCB1 over the BigCache bound: arm ");
        hak_buf_u64(b, l.current);
        hak_buf_str(b, " now, ");
        hak_buf_u64(b, l.epochs);
        hak_buf_str(b, " epochs, ");
        hak_buf_u64(b, l.switches);
        hak_buf_str(b, " switches\n                  arm  bound MiB       pulls  mean reward (ppm)\n");
    }
    for (unsigned i = 0; i < LEARN_ARMS && (on || json); i++) {
        uint64_t ppm = on && l.pulls[i] ? (uint64_t)(l.mean[i] * 1e6 + 0.5) : 0;
        uint64_t pulls = on ? l.pulls[i] : 0;
        if (json) {
            hak_buf_str(b, i ? ",{\"bound\":" : "{\"bound\":");
            hak_buf_u64(b, learn_bounds[i]);
            hak_buf_str(b, ",\"pulls\":");
            hak_buf_u64(b, pulls);
            hak_buf_str(b, ",\"mean_reward_ppm\":");
            hak_buf_u64(b, ppm);
            hak_buf_str(b, "}");
        } else {
            hak_buf_str(b, i == l.current ? "                *" : "                 ");
            hak_buf_u64w(b, i, 4);
            hak_buf_u64w(b, learn_bounds[i] >> 20, 11);
            hak_buf_u64w(b, pulls, 12);
            hak_buf_u64w(b, ppm, 19);
            hak_buf_str(b, "\n");
        }
    }
    if (json) hak_buf_str(b, "]}");
}

// The registry must never name a range that is not ours: chunks a block gives up are cleared
// before the range goes back to the OS (another thread may map it the moment it does), and
// chunks it takes are set only once the range is ours.
static uintptr_t chunk_end(const char *base, size_t size) { return hak_align_up((uintptr_t)base + size, HAK_SS_SIZE); }

static void *shrink_inplace(hak_large_t *h, size_t size) {
    char *base = h->base;
    size_t old_size = h->size;
    uintptr_t keep_end = chunk_end(base, size), old_end = chunk_end(base, old_size);
    uintptr_t entry = (uintptr_t)h | HAK_PM_TAG_LARGE;
    if (keep_end < old_end) hak_pagemap_set(keep_end, old_end - keep_end, 0);
    if (hak_os_unmap(base + size, old_size - size) != 0) {
        if (keep_end < old_end) hak_pagemap_set(keep_end, old_end - keep_end, entry);  // leaves exist: cannot fail
        return base;  // the block keeps its old size: still valid
    }
    h->size = size;
    return base;
}

static void *grow_inplace(hak_large_t *h, size_t size) {
    char *base = h->base;
    size_t old_size = h->size;
    if (hak_os_resize_inplace(base, old_size, size) != 0) return NULL;
    uintptr_t old_end = chunk_end(base, old_size), new_end = chunk_end(base, size);
    if (new_end > old_end &&
        hak_pagemap_set(old_end, new_end - old_end, (uintptr_t)h | HAK_PM_TAG_LARGE) != 0) {
        hak_os_resize_inplace(base, size, old_size);  // no registry leaf: give the growth back
        return NULL;
    }
    h->size = size;
    return base;
}

static void *move_to_new_range(hak_large_t *h, size_t size) {
    char *old_base = h->base;
    size_t old_size = h->size;
    uintptr_t entry = (uintptr_t)h | HAK_PM_TAG_LARGE;
    char *target = hak_os_reserve(size, LARGE_ALIGN);
    if (!target && hak_bigcache_flush() > 0) target = hak_os_reserve(size, LARGE_ALIGN);
    if (!target) return NULL;
    if (hak_pagemap_set((uintptr_t)target, size, entry) != 0) {
        hak_os_unmap(target, size);
        return NULL;
    }
    // the old range leaves the registry before mremap vacates it
    hak_pagemap_set((uintptr_t)old_base, old_size, 0);
    if (hak_os_move(old_base, old_size, size, target) != 0) {
        hak_pagemap_set((uintptr_t)old_base, old_size, entry);  // its leaves exist: cannot fail
        hak_pagemap_set((uintptr_t)target, size, 0);
        hak_os_unmap(target, size);
        return NULL;
    }
    // the moved pages keep their flags; the tail hak_os_move mapped gets the same advice
    if (h->huge && size > old_size) hak_os_advise_huge(target + old_size, size - old_size);
    h->base = target;
    h->size = size;
    return target;
}

// Grow a block taken from the BigCache to size in place, else by moving it to a new range;
// 1 on success. errno stays as the caller left it either way (a refused in-place mremap, or
// a reservation retried after the BigCache let go, sets it on the way; the caller maps a
// new block on failure, which says ENOMEM itself if that fails too). A block grown to
// HAKMEM_THP_MIN or more gets the advice a block mapped at that size would have had.
static int grow_block(hak_large_t *h, size_t size) {
    int saved = errno;
    int ok = grow_inplace(h, size) != NULL || move_to_new_range(h, size) != NULL;
    if (ok && !h->huge && h->size >= hak_config.thp_large_min) h->huge = hak_os_advise_huge(h->base, h->size) == 0;
    errno = saved;
    return ok;
}

void *hak_large_realloc(hak_large_t *h, void *p, size_t n) {
    if (hak_unlikely((char *)p != h->base)) hak_die("realloc(): invalid pointer (inside a large block)", p);
    if (hak_unlikely(hak_load_relaxed(&h->live) != 1)) hak_die("realloc(): large block already freed", p);
    size_t size = round_size(n);
    if (size == 0 || size > (size_t)PTRDIFF_MAX) {
        errno = ENOMEM;
        return NULL;
    }
    size_t old_size = h->size;
    if (size == old_size) return p;
    int saved = errno;  // a realloc that succeeds leaves it as it found it
    void *q;
    if (size < old_size) {
        q = shrink_inplace(h, size);
        HAK_STAT_INC(large_realloc_inplace);
    } else if ((q = grow_inplace(h, size)) != NULL) {
        HAK_STAT_INC(large_realloc_inplace);
    } else if ((q = move_to_new_range(h, size)) != NULL) {
        HAK_STAT_INC(large_realloc_move);
    } else {
        errno = ENOMEM;
        return NULL;  // the block is untouched
    }
    errno = saved;
    if (h->size > old_size) hak_fetch_add_relaxed(&live_bytes, h->size - old_size);
    else hak_fetch_sub_relaxed(&live_bytes, old_size - h->size);
    hak_bigcache_site_resize(h->site, old_size, h->size);
    return q;
}

void hak_large_totals(size_t *bytes, size_t *count, size_t *cached_bytes) {
    size_t cached_count;
    *bytes = hak_load_relaxed(&live_bytes);
    *count = hak_load_relaxed(&live_count);
    hak_bigcache_totals(cached_bytes, &cached_count);
}

size_t hak_large_trim(void) { return hak_bigcache_flush(); }

size_t hak_large_decay(void) { return hak_load_relaxed(&cache_ready) ? hak_bigcache_decay() : 0; }

void hak_large_report(hak_buf_t *b, int json) {
    hak_bigcache_report(b, json);
    learn_report(b, json);
}

// The cache lock before the metadata pool's: evictions free headers only after dropping
// the cache lock, so nothing holds the pool's lock while taking the cache's.
// The learner's lock first: nothing else is ever held while it is taken.
void hak_large_fork_prepare(void) {
    hak_lock(&learn_lock);
    hak_bigcache_fork_prepare();
    hak_meta_fork_prepare(&large_meta);
}
void hak_large_fork_parent(void) {
    hak_meta_fork_parent(&large_meta);
    hak_bigcache_fork_parent();
    hak_unlock(&learn_lock);
}
void hak_large_fork_child(void) {
    hak_meta_fork_child(&large_meta);
    hak_bigcache_fork_child();
    hak_lock_reset(&learn_lock);
}
