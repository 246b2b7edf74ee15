/* hak_bigcache.c -- the BigCache (freed large blocks kept for reuse) and the large path's
 * call-site table. One spinlock guards the cache; blocks it gives up are handed to the
 * eviction callback after the lock is dropped, so no syscall runs under it.
 * May call: core/base (lock, clock, config, counters, formatting). Never allocates. */
#include "hak_bigcache.h"

#include <string.h>

#include "hak_atomic.h"
#include "hak_config.h"
#include "hak_fmt.h"
#include "hak_large.h"
#include "hak_lock.h"
#include "hak_os.h"
#include "hak_stats.h"

#define SITE_BITS 6
#define SITE_COUNT (1u << SITE_BITS)
#define RING_SLOTS 4u
#define REPORT_TOP 10
// A request takes a cached block up to this many classes larger whole when its class has
// none (HAK_BIGCACHE_UNCUT_FACTOR: four classes per doubling). Exact matches alone left twice
// the blocks mapped in a replace loop of mixed sizes (bench/scenarios vm: 24 blocks, 48 MiB,
// against 11 and 25 MiB), because every class needs its own spare. Up to 1.5 times, blocks
// further up were cut, and the cache filled with small blocks while each request of a top
// class mapped a fresh one: bench/scenarios mixed (1-4 MiB) took 4936 faults in its timed
// phase and mapped 4 blocks, against 2265 and 2 now (mimalloc 2506).
#define LARGER_CLASSES 8u
_Static_assert(HAK_BIGCACHE_UNCUT_FACTOR == 4u, "8 classes up is 4 times the class");

// Return addresses of call instructions differ in their low bits mostly; a multiplicative
// hash spreads them over the 64 entries. Two sites may share an entry (and its ring).
static HAK_INLINE unsigned site_index(uintptr_t site) {
    return (unsigned)(((uint64_t)site * 0x9e3779b97f4a7c15ull) >> (64 - SITE_BITS));
}

/* ---- the cache ------------------------------------------------------------------------ */

/* Everything here is read and written under cache_lock, by any thread. Invariants: a block
 * is in the cache exactly when it is on its class list; a ring slot is NULL or holds a
 * cached block whose ring field names that slot; bytes is the sum of the cached sizes and
 * never exceeds hak_bigcache_max() after a put (a bound lowered by the learner is reached
 * at the next put); no entry is older than
 * decay_due_ms - decay (a lower bound, so a scan before then is never needed). */
static struct {
    hak_large_t *head[HAK_LARGE_CLASS_COUNT];  /* oldest block of each class */
    hak_large_t *tail[HAK_LARGE_CLASS_COUNT];  /* newest */
    hak_large_t *ring[SITE_COUNT][RING_SLOTS]; /* recent frees of each site's blocks */
    uint8_t ring_next[SITE_COUNT];             /* the slot a full ring overwrites next */
    size_t count;
    size_t bytes;
    uint64_t decay_due_ms;
    hak_bigcache_evict_fn evict;
} cache;
// Mirrors cache.bytes and cache.count for hak_info, which does not take the lock.
static _Atomic size_t cached_bytes, cached_count;
#if HAK_STATS
/* One entry per site hash, updated by any thread with relaxed atomics (totals read only by
 * reports). site is the first return address that hashed here; shared is set when another
 * one did too, and the entry then sums both. */
typedef struct site_stats {
    _Atomic uintptr_t site;
    _Atomic int shared;
    _Atomic uint64_t calls, bytes, hits, misses;
    _Atomic int64_t live;  /* usable bytes allocated from the site and not yet freed */
} site_stats_t;
static site_stats_t sites[SITE_COUNT];
#endif
// Defined after the tables because GCC 12 lays this file's variables out in .bss in the
// reverse order of their definitions (clang may not): so the lock sits below the 6 KiB of
// tables, next to the large path's other small globals, not above them on a page of its
// own. Every process writes it (the fork handlers take it), none of the tables until its
// first large block: Nginx's master wrote that page only to fork its worker.
static hak_lock_t cache_lock = HAK_LOCK_INIT;
// The byte bound in force: SIZE_MAX until hak_bigcache_set_max (HAKMEM_LEARN=1), meaning
// hak_config.bigcache_max. Relaxed: a put that reads an old bound evicts to it, the next to
// the new one.
static _Atomic size_t bound_override = SIZE_MAX;

size_t hak_bigcache_max(void) {
    size_t v = hak_load_relaxed(&bound_override);
    return v == SIZE_MAX ? hak_config.bigcache_max : v;
}

void hak_bigcache_set_max(size_t max) { hak_store_relaxed(&bound_override, max); }

static uint64_t add_sat(uint64_t a, uint64_t b) { return a > UINT64_MAX - b ? UINT64_MAX : a + b; }

static void list_append(hak_large_t *h, unsigned c) {
    h->next = NULL;
    h->prev = cache.tail[c];
    if (h->prev) h->prev->next = h;
    else cache.head[c] = h;
    cache.tail[c] = h;
}

static void ring_insert(hak_large_t *h) {
    unsigned s = site_index(h->site);
    hak_large_t **ring = cache.ring[s];
    unsigned slot = RING_SLOTS;
    for (unsigned i = 0; i < RING_SLOTS; i++)
        if (ring[i] == NULL) {
            slot = i;
            break;
        }
    if (slot == RING_SLOTS) {  // full: the oldest write goes; its block stays on its list
        slot = cache.ring_next[s];
        cache.ring_next[s] = (uint8_t)((slot + 1) % RING_SLOTS);
        ring[slot]->ring = 0;
    }
    ring[slot] = h;
    h->ring = 1 + s * RING_SLOTS + slot;
}

// Take h out of the cache (its list, its ring slot, the totals).
static void unlink_entry(hak_large_t *h) {
    unsigned c = hak_bigcache_class_index(h->size);
    if (h->prev) h->prev->next = h->next;
    else cache.head[c] = h->next;
    if (h->next) h->next->prev = h->prev;
    else cache.tail[c] = h->prev;
    if (h->ring) {
        (&cache.ring[0][0])[h->ring - 1] = NULL;
        h->ring = 0;
    }
    cache.count--;
    cache.bytes -= h->size;
    hak_store_relaxed(&cached_bytes, cache.bytes);
    hak_store_relaxed(&cached_count, cache.count);
    HAK_STAT_GAUGE(bigcache_bytes, -(int64_t)h->size);
}

// The oldest cached block: the oldest head of the class lists (24 compares; an eviction
// unmaps, so this is never what it costs).
static hak_large_t *oldest_entry(void) {
    hak_large_t *best = NULL;
    for (unsigned c = 0; c < HAK_LARGE_CLASS_COUNT; c++) {
        hak_large_t *h = cache.head[c];
        if (h && (!best || h->cached_ms < best->cached_ms)) best = h;
    }
    return best;
}

// Move every entry freed at least decay_ms ago to *victims; returns how many.
static unsigned decay_entries(uint64_t now, hak_large_t **victims) {
    if (cache.count == 0 || now < cache.decay_due_ms) return 0;
    uint64_t decay = hak_config.decay_ms;
    unsigned n = 0;
    uint64_t oldest = UINT64_MAX;
    for (unsigned c = 0; c < HAK_LARGE_CLASS_COUNT; c++) {
        hak_large_t *h;
        // not now - cached_ms: another thread may have stamped an entry after our clock read
        while ((h = cache.head[c]) != NULL && add_sat(h->cached_ms, decay) <= now) {
            unlink_entry(h);
            h->next = *victims;
            *victims = h;
            n++;
        }
        if (h && h->cached_ms < oldest) oldest = h->cached_ms;
    }
    cache.decay_due_ms = oldest == UINT64_MAX ? UINT64_MAX : add_sat(oldest, decay);
    return n;
}

// Give the victims back to the OS (no lock held) and count them.
static size_t release(hak_large_t *victims, hak_bigcache_evict_fn evict, unsigned decayed) {
    size_t bytes = 0, n = 0;
    while (victims) {
        hak_large_t *h = victims;
        victims = h->next;
        bytes += h->size;
        n++;
        evict(h);
    }
    if (n) {
        HAK_STAT_ADD(bigcache_evict, n);
        HAK_STAT_ADD(bigcache_evict_bytes, bytes);
        HAK_STAT_ADD(bigcache_decay_evict, decayed);
    }
    return bytes;
}

static size_t reclaim(void) { return hak_bigcache_flush(); }

void hak_bigcache_init(hak_bigcache_evict_fn evict) {
    hak_lock(&cache_lock);
    if (!cache.evict) {
        cache.evict = evict;
        cache.decay_due_ms = UINT64_MAX;
    }
    hak_unlock(&cache_lock);
    hak_os_set_reclaim(reclaim);
}

hak_large_t *hak_bigcache_get(uintptr_t site, size_t size) {
    uint64_t now = hak_os_now_ms();
    unsigned s = site_index(site), c = hak_bigcache_class_index(size);
    hak_large_t *h = NULL, *victims = NULL;
    int fallback = 0, larger = 0, split = 0, grown = 0;
    hak_lock(&cache_lock);
    // what decayed goes first: an old block is not handed out, nor grown
    unsigned decayed = decay_entries(now, &victims);
    if (cache.count) {
        // the site's ring, most recent write first (its pages are the likeliest in cache)
        hak_large_t **ring = cache.ring[s];
        unsigned last = cache.ring_next[s] + RING_SLOTS - 1;
        for (unsigned i = 0; i < RING_SLOTS; i++) {
            hak_large_t *x = ring[(last - i) % RING_SLOTS];
            if (x && x->size == size) {
                h = x;
                break;
            }
        }
        // any site's block of this class, newest first; then of the next classes up
        if (!h && (h = cache.tail[c]) != NULL) fallback = 1;
        for (unsigned up = c + 1; !h && up <= c + LARGER_CLASSES && up < HAK_LARGE_CLASS_COUNT; up++)
            if ((h = cache.tail[up]) != NULL) larger = 1;
        // then the smallest of any larger class: the caller cuts it down to the request's
        // class and unmaps the rest, which beats mapping (and faulting in) a new block
        for (unsigned up = c + LARGER_CLASSES + 1; !h && up < HAK_LARGE_CLASS_COUNT; up++)
            if ((h = cache.tail[up]) != NULL) split = 1;
        // then the largest smaller block: the caller grows it to the class, and only the
        // growth faults in. Splits and new mappings had left the cache full of small blocks
        // while each request of a top class mapped a fresh one (bench/scenarios mixed).
        for (unsigned down = c; !h && down-- > 0;)
            if ((h = cache.tail[down]) != NULL) grown = 1;
        if (h) unlink_entry(h);
    }
    hak_bigcache_evict_fn evict = cache.evict;
    hak_unlock(&cache_lock);
    if (victims) release(victims, evict, decayed);
    if (grown) {
        // the caller counts it: a hit once the block has grown, a miss if it could not
    } else if (h) {
        HAK_STAT_INC(bigcache_hit);
        if (fallback) HAK_STAT_INC(bigcache_hit_fallback);
        if (larger) HAK_STAT_INC(bigcache_hit_larger);
        if (split) HAK_STAT_INC(bigcache_hit_split);
    } else {
        HAK_STAT_INC(bigcache_miss);
    }
    return h;
}

int hak_bigcache_put(hak_large_t *h) {
    size_t size = h->size, max = hak_bigcache_max();
    if (size > max || hak_bigcache_class_size(size) != size) return -1;
    uint64_t now = hak_os_now_ms();
    hak_large_t *victims = NULL;
    unsigned decayed = 0;
    hak_lock(&cache_lock);
    hak_bigcache_evict_fn evict = cache.evict;
    if (hak_unlikely(!evict)) {  // hak_bigcache_init has not run: nothing to evict with
        hak_unlock(&cache_lock);
        return -1;
    }
    // room first, oldest out, so the new block is never its own victim
    while (cache.bytes + size > max) {
        hak_large_t *old = oldest_entry();
        unlink_entry(old);
        old->next = victims;
        victims = old;
    }
    h->cached_ms = now;
    list_append(h, hak_bigcache_class_index(size));
    ring_insert(h);
    if (cache.count == 0) cache.decay_due_ms = add_sat(now, hak_config.decay_ms);
    cache.count++;
    cache.bytes += size;
    hak_store_relaxed(&cached_bytes, cache.bytes);
    hak_store_relaxed(&cached_count, cache.count);
    HAK_STAT_GAUGE(bigcache_bytes, size);
    decayed = decay_entries(now, &victims);
    hak_unlock(&cache_lock);
    HAK_STAT_INC(bigcache_put);
    if (victims) release(victims, evict, decayed);
    return 0;
}

size_t hak_bigcache_decay(void) {
    uint64_t now = hak_os_now_ms();
    hak_large_t *victims = NULL;
    hak_lock(&cache_lock);
    unsigned decayed = decay_entries(now, &victims);
    hak_bigcache_evict_fn evict = cache.evict;
    hak_unlock(&cache_lock);
    return victims ? release(victims, evict, decayed) : 0;
}

size_t hak_bigcache_flush(void) {
    hak_large_t *victims = NULL;
    hak_lock(&cache_lock);
    for (unsigned c = 0; c < HAK_LARGE_CLASS_COUNT; c++) {
        hak_large_t *h;
        while ((h = cache.head[c]) != NULL) {
            unlink_entry(h);
            h->next = victims;
            victims = h;
        }
    }
    cache.decay_due_ms = UINT64_MAX;
    hak_bigcache_evict_fn evict = cache.evict;
    hak_unlock(&cache_lock);
    return victims ? release(victims, evict, 0) : 0;
}

void hak_bigcache_totals(size_t *bytes, size_t *count) {
    *bytes = hak_load_relaxed(&cached_bytes);
    *count = hak_load_relaxed(&cached_count);
}

void hak_bigcache_fork_prepare(void) { hak_lock(&cache_lock); }
void hak_bigcache_fork_parent(void) { hak_unlock(&cache_lock); }
void hak_bigcache_fork_child(void) { hak_lock_reset(&cache_lock); }

/* ---- call sites ----------------------------------------------------------------------- */

#if HAK_STATS

void hak_bigcache_site_alloc(uintptr_t site, size_t requested, size_t size, int outcome) {
    site_stats_t *e = &sites[site_index(site)];
    uintptr_t seen = hak_load_relaxed(&e->site);
    if (hak_unlikely(seen != site)) {
        uintptr_t expect = 0;
        // relaxed: the first writer names the entry; a loser only marks it shared
        if (!(seen == 0 && atomic_compare_exchange_strong_explicit(&e->site, &expect, site, memory_order_relaxed,
                                                                   memory_order_relaxed)) &&
            expect != site)
            hak_store_relaxed(&e->shared, 1);
    }
    hak_fetch_add_relaxed(&e->calls, 1);
    hak_fetch_add_relaxed(&e->bytes, requested);
    hak_fetch_add_relaxed(&e->live, (int64_t)size);
    if (outcome == 1) hak_fetch_add_relaxed(&e->hits, 1);
    else if (outcome == 2) hak_fetch_add_relaxed(&e->misses, 1);
}

void hak_bigcache_site_resize(uintptr_t site, size_t old_size, size_t new_size) {
    hak_fetch_add_relaxed(&sites[site_index(site)].live, (int64_t)new_size - (int64_t)old_size);
}

typedef struct site_row {
    uintptr_t site;
    int shared;
    uint64_t calls, bytes, hits, misses;
    int64_t live;
} site_row_t;

void hak_bigcache_report(hak_buf_t *b, int json) {
    site_row_t rows[SITE_COUNT];
    unsigned n = 0, used = 0;
    for (unsigned i = 0; i < SITE_COUNT; i++) {
        site_stats_t *e = &sites[i];
        site_row_t r = {hak_load_relaxed(&e->site), hak_load_relaxed(&e->shared), hak_load_relaxed(&e->calls),
                        hak_load_relaxed(&e->bytes), hak_load_relaxed(&e->hits), hak_load_relaxed(&e->misses),
                        hak_load_relaxed(&e->live)};
        if (r.calls == 0) continue;
        used++;
        // keep the REPORT_TOP largest by bytes, sorted (insertion into a short array)
        unsigned k = n < REPORT_TOP ? n++ : REPORT_TOP;
        while (k > 0 && rows[k - 1].bytes < r.bytes) {
            if (k < REPORT_TOP) rows[k] = rows[k - 1];
            k--;
        }
        if (k < REPORT_TOP) rows[k] = r;
    }
    if (json) {
        hak_buf_str(b, "\"large_sites\":[");
    } else if (used == 0) {
        hak_buf_str(b, "  [large call sites]  none\n");
    } else {
        hak_buf_str(b, "  [large call sites]  top ");
        hak_buf_u64(b, n);
        hak_buf_str(b, " of ");
        hak_buf_u64(b, used);
        hak_buf_str(b, " by bytes requested (* = several sites share the entry)\n"
                        "                 site         calls            bytes       live bytes      hits    misses\n");
    }
    for (unsigned i = 0; i < n; i++) {
        const site_row_t *r = &rows[i];
        uint64_t live = r->live > 0 ? (uint64_t)r->live : 0;
        if (json) {
            hak_buf_str(b, i ? ",{\"site\":\"" : "{\"site\":\"");
            hak_buf_hex(b, r->site);
            hak_buf_str(b, r->shared ? "\",\"shared\":true,\"calls\":" : "\",\"shared\":false,\"calls\":");
            hak_buf_u64(b, r->calls);
            hak_buf_str(b, ",\"bytes\":");
            hak_buf_u64(b, r->bytes);
            hak_buf_str(b, ",\"live_bytes\":");
            hak_buf_u64(b, live);
            hak_buf_str(b, ",\"hits\":");
            hak_buf_u64(b, r->hits);
            hak_buf_str(b, ",\"misses\":");
            hak_buf_u64(b, r->misses);
            hak_buf_str(b, "}");
        } else {
            char hex[24];  // "0x" + up to 16 digits + '*', right-aligned in 20 columns
            size_t len = 0;
            for (int shift = 60; shift >= 0; shift -= 4) {
                unsigned d = (unsigned)(r->site >> shift) & 15u;
                if (d || len || !shift) hex[2 + len++] = "0123456789abcdef"[d];
            }
            hex[0] = '0';
            hex[1] = 'x';
            len += 2;
            hex[len++] = r->shared ? '*' : ' ';
            hex[len] = 0;
            for (size_t pad = len; pad < 22; pad++) hak_buf_str(b, " ");
            hak_buf_str(b, hex);
            hak_buf_u64w(b, r->calls, 13);
            hak_buf_u64w(b, r->bytes, 17);
            hak_buf_u64w(b, live, 17);
            hak_buf_u64w(b, r->hits, 10);
            hak_buf_u64w(b, r->misses, 10);
            hak_buf_str(b, "\n");
        }
    }
    if (json) hak_buf_str(b, "]");
}
#else
void hak_bigcache_site_alloc(uintptr_t site, size_t requested, size_t size, int outcome) {
    (void)site, (void)requested, (void)size, (void)outcome;
}
void hak_bigcache_site_resize(uintptr_t site, size_t old_size, size_t new_size) {
    (void)site, (void)old_size, (void)new_size;
}
void hak_bigcache_report(hak_buf_t *b, int json) {
    hak_buf_str(b, json ? "\"large_sites\":[]" : "  [large call sites]  (counters compiled out)\n");
}
#endif
