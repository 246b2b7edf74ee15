/* hak_ss.c -- SuperSlab mapping, pooling, spans and carving. */
#include "hak_ss.h"

#include <errno.h>

#include "hak_config.h"
#include "hak_harden.h"
#include "hak_lock.h"
#include "hak_meta.h"
#include "hak_os.h"
#include "hak_stats.h"

static hak_meta_pool_t ss_meta = HAK_META_POOL_INIT(sizeof(hak_ss_t));

// The pool of empty SuperSlabs: kept mapped and registered (a free into one is caught as
// invalid). Newest first; the newest few keep their pages for up to HAKMEM_DECAY_MS (reuse
// then costs no page faults), the rest are purged (MADV_DONTNEED); past HAKMEM_SS_POOL the
// oldest are unmapped.
static hak_lock_t pool_lock = HAK_LOCK_INIT;
static hak_ss_t *pool_head, *pool_tail;
static size_t pool_count;
static _Atomic size_t ss_mapped;  // SuperSlabs mapped, pooled included

int hak_slab_is_block(const hak_slab_t *slab, const void *p) {
    uintptr_t off = (uintptr_t)p - (uintptr_t)slab->start;
    return off < (uintptr_t)slab->capacity * slab->size && off % slab->size == 0;
}

static void reset_ss(hak_ss_t *ss, void *owner) {
    for (unsigned i = 0; i < HAK_SLABS_PER_SS; i++) {
        ss->slab_sc[i] = HAK_SLAB_NONE;
        ss->slab_head[i] = (uint8_t)i;
        ss->slab_magic[i] = hak_sc_magic[HAK_SLAB_NONE];
        ss->slab_offmagic[i] = 0;
        hak_store_relaxed(&ss->slab_limit[i], 0);
        hak_store_relaxed(&ss->slabs[i].purged, 0);
    }
    ss->free_mask = 0xffffffffu;
    ss->spans = 0;
    ss->pooled = 0;
    ss->prev = ss->next = NULL;
    // pairs with relaxed loads in free(): the owner is published before any block is
    // handed out, and block hand-off between threads carries the ordering.
    hak_store_relaxed(&ss->owner, owner);
}

static void pool_unlink(hak_ss_t *ss) {
    if (ss->prev) ss->prev->next = ss->next;
    else pool_head = ss->next;
    if (ss->next) ss->next->prev = ss->prev;
    else pool_tail = ss->prev;
    ss->prev = ss->next = NULL;
    pool_count--;
}

// Newest at the head; SuperSlabs whose pages were just purged go back at the tail.
static void pool_push(hak_ss_t *ss, int at_head) {
    if (at_head) {
        ss->prev = NULL;
        ss->next = pool_head;
        if (pool_head) pool_head->prev = ss;
        else pool_tail = ss;
        pool_head = ss;
    } else {
        ss->next = NULL;
        ss->prev = pool_tail;
        if (pool_tail) pool_tail->next = ss;
        else pool_head = ss;
        pool_tail = ss;
    }
    pool_count++;
}

static void unmap_ss(hak_ss_t *ss);

hak_ss_t *hak_ss_acquire(void *owner, int *from_pool) {
    hak_lock(&pool_lock);
    hak_ss_t *ss = pool_head;
    if (ss) pool_unlink(ss);
    hak_unlock(&pool_lock);
    if (ss) {
        *from_pool = 1;
        reset_ss(ss, owner);
        hak_ss_pool_decay();
        return ss;
    }
    *from_pool = 0;
    ss = hak_meta_alloc(&ss_meta);
    if (!ss) {
        errno = ENOMEM;
        return NULL;
    }
    // no lock held: on failure the BigCache may give its blocks back first
    char *base = hak_os_map_reclaim(HAK_SS_SIZE, HAK_SS_SIZE);
    if (!base) {
        hak_meta_free(&ss_meta, ss);
        errno = ENOMEM;
        return NULL;
    }
    ss->base = base;
    ss->dirty_mask = 0;
    reset_ss(ss, owner);
    if (hak_pagemap_set((uintptr_t)base, HAK_SS_SIZE, (uintptr_t)ss | HAK_PM_TAG_SS) != 0) {
        hak_os_unmap(base, HAK_SS_SIZE);
        hak_meta_free(&ss_meta, ss);
        errno = ENOMEM;
        return NULL;
    }
    // HAKMEM_THP=1 only: one huge page makes the whole SuperSlab resident at its first block
    if (hak_config.thp_ss) hak_os_advise_huge(base, HAK_SS_SIZE);
    hak_fetch_add_relaxed(&ss_mapped, 1);
    return ss;
}

static void unmap_ss(hak_ss_t *ss) {
    hak_pagemap_set((uintptr_t)ss->base, HAK_SS_SIZE, 0);
    hak_os_unmap(ss->base, HAK_SS_SIZE);
    hak_fetch_sub_relaxed(&ss_mapped, 1);
    // The pool's link goes into the free slot's first word, slab_limit[0], where free's
    // block-start test would pass. A free that read the pagemap before it was cleared must
    // still fail the owner test, also in a thread with no heap (NULL, which a released
    // SuperSlab's owner is): an owner no heap can be sends it to the slow path, which finds
    // every slab free and reports the pointer. hak_meta_alloc zeroes the slot on reuse.
    hak_store_relaxed(&ss->owner, (void *)ss);
    hak_meta_free(&ss_meta, ss);
    HAK_STAT_INC(ss_unmap);
}

void hak_ss_release(hak_ss_t *ss) {
    hak_store_relaxed(&ss->owner, NULL);
    hak_ss_t *evict = NULL;
    hak_lock(&pool_lock);
    if (hak_unlikely(ss->pooled)) hak_die("internal error: SuperSlab released twice", ss->base);
    ss->pooled = 1;
    ss->pooled_at_ms = hak_os_now_ms();
    pool_push(ss, 1);
    if (pool_count > hak_config.ss_pool_max) {
        evict = pool_tail;
        pool_unlink(evict);
    }
    hak_unlock(&pool_lock);
    HAK_STAT_INC(ss_release_pool);
    if (evict) unmap_ss(evict);
    hak_ss_pool_decay();
}

// Purge pooled SuperSlabs that have waited HAKMEM_DECAY_MS, and beyond the newest
// HAKMEM_SS_POOL / 8 (at least 1) any that still hold pages, so that the pool costs at most
// that much RSS; with all, every one that holds pages. They leave the pool while their pages
// are purged (nobody may start using one meanwhile) and come back at the old end.
static void pool_purge(int all) {
    uint64_t now = hak_os_now_ms();
    size_t dirty_max = all ? 0 : hak_config.ss_pool_max / 8 ? hak_config.ss_pool_max / 8 : 1;
    size_t dirty_seen = 0;
    hak_ss_t *expired = NULL;
    hak_lock(&pool_lock);
    for (hak_ss_t *ss = pool_head; ss;) {
        hak_ss_t *next = ss->next;
        if (ss->dirty_mask && (++dirty_seen > dirty_max || now - ss->pooled_at_ms >= hak_config.decay_ms)) {
            pool_unlink(ss);
            ss->next = expired;
            expired = ss;
        }
        ss = next;
    }
    hak_unlock(&pool_lock);
    if (!expired) return;
    for (hak_ss_t *ss = expired; ss; ss = ss->next) hak_ss_purge_free(ss);
    hak_lock(&pool_lock);
    while (expired) {
        hak_ss_t *ss = expired;
        expired = ss->next;
        pool_push(ss, 0);
    }
    hak_unlock(&pool_lock);
}

void hak_ss_pool_decay(void) { pool_purge(0); }

void hak_ss_pool_purge(void) { pool_purge(1); }

static uint32_t run_bits(unsigned i, unsigned k) { return (k >= 32 ? 0xffffffffu : ((1u << k) - 1u)) << i; }

unsigned hak_ss_span_fit(const hak_ss_t *ss, unsigned sc, unsigned *at) {
    unsigned k = hak_sc_info[sc].span, best = HAK_SS_NO_FIT;
    uint32_t m = ss->free_mask;
    while (m) {
        unsigned i = (unsigned)__builtin_ctz(m);
        uint32_t above = ~(m >> i);  // the run ends at the first 0 above i
        unsigned len = above ? (unsigned)__builtin_ctz(above) : 32u - i;
        m &= ~run_bits(i, len);
        if (len < k) continue;
        // either end of the run, whichever touches fewer clean slabs; the low end on a tie
        unsigned lo = i, hi = i + len - k;
        unsigned clean_lo = (unsigned)__builtin_popcount(run_bits(lo, k) & ~ss->dirty_mask);
        unsigned clean_hi = (unsigned)__builtin_popcount(run_bits(hi, k) & ~ss->dirty_mask);
        unsigned start = clean_hi < clean_lo ? hi : lo;
        unsigned cost = (clean_hi < clean_lo ? clean_hi : clean_lo) * HAK_SLABS_PER_SS + (len - k);
        if (cost < best) {
            best = cost;
            *at = start;
        }
    }
    return best;
}

int hak_ss_can_start(const hak_ss_t *ss, unsigned sc) {
    unsigned at;
    return hak_ss_span_fit(ss, sc, &at) != HAK_SS_NO_FIT;
}

hak_slab_t *hak_ss_span_start(hak_ss_t *ss, unsigned sc) {
    unsigned at;
    if (hak_ss_span_fit(ss, sc, &at) == HAK_SS_NO_FIT) return NULL;
    return hak_ss_span_start_at(ss, sc, at);
}

hak_slab_t *hak_ss_span_start_at(hak_ss_t *ss, unsigned sc, unsigned i) {
    const hak_sc_info_t *ci = &hak_sc_info[sc];
    unsigned k = ci->span;
    uint32_t bits = run_bits(i, k);
    if (hak_unlikely((ss->free_mask & bits) != bits)) hak_die("internal error: span started on slabs in use", ss->base);
    ss->free_mask &= ~bits;
    ss->dirty_mask |= bits;
    ss->spans++;
    hak_slab_t *slab = &ss->slabs[i];
    slab->free = NULL;
    slab->free_count = 0;
    slab->used = 0;
    slab->carved = 0;
    hak_store_relaxed(&slab->purged, 0);
    slab->capacity = ci->capacity;
    slab->size = ci->size;
    slab->sc = (uint8_t)sc;
    slab->span = (uint8_t)k;
    slab->index = (uint8_t)i;
    slab->listed = 0;
    slab->kept = 0;
    slab->slow_frees = 0;
    slab->start = ss->base + ((size_t)i << HAK_SLAB_SHIFT);
    slab->prev = slab->next = NULL;
    slab->ss = ss;
    for (unsigned j = i; j < i + k; j++) {
        ss->slab_head[j] = (uint8_t)i;
        ss->slab_magic[j] = hak_sc_magic[sc];
        ss->slab_offmagic[j] = ((uint64_t)(j - i) << HAK_SLAB_SHIFT) * hak_sc_magic[sc];
        ss->slab_sc[j] = (uint8_t)sc;  // before the limit, which makes blocks pass the test
        hak_store_relaxed(&ss->slab_limit[j], (uint64_t)ci->capacity * hak_sc_unit[sc]);
    }
    return slab;
}

void hak_ss_span_end(hak_ss_t *ss, hak_slab_t *slab) {
    unsigned i = slab->index, k = slab->span;
    for (unsigned j = i; j < i + k; j++) {
        ss->slab_sc[j] = HAK_SLAB_NONE;
        ss->slab_head[j] = (uint8_t)j;
        ss->slab_magic[j] = hak_sc_magic[HAK_SLAB_NONE];
        ss->slab_offmagic[j] = 0;
        hak_store_relaxed(&ss->slab_limit[j], 0);
    }
    hak_store_relaxed(&slab->purged, 0);
    ss->free_mask |= run_bits(i, k);
    ss->spans--;
    HAK_STAT_INC(slab_release);
}

unsigned hak_slab_carve(hak_slab_t *slab, unsigned want, void **head, void **tail) {
    unsigned avail = slab->capacity - slab->carved;
    unsigned n = want < avail ? want : avail;
    if (n == 0) return 0;
    char *first = slab->start + (size_t)slab->carved * slab->size;
    char *p = first;
    // Linked and marked as free: every block on a free list carries the mark (hak_harden.h)
    for (unsigned i = 1; i < n; i++) {
        hak_link_set((void **)p, p + slab->size);
        ((void **)p)[1] = (void *)hak_free_key;
        p += slab->size;
    }
    hak_link_set((void **)p, NULL);
    ((void **)p)[1] = (void *)hak_free_key;
    slab->carved += n;
    *head = first;
    *tail = p;
    return n;
}

// The block-start limits of slab's span: the class's, or 0 (every free takes the slow path).
static void span_set_limit(hak_slab_t *slab, uint64_t limit) {
    for (unsigned j = slab->index; j < (unsigned)slab->index + slab->span; j++)
        hak_store_relaxed(&slab->ss->slab_limit[j], limit);
}

// Link the free blocks that the bits of *mask stand for (lowest first, until want or more
// are linked), each marked as free, and clear those bits from *mask. A bit is a block, or
// for blocks under a page a page: the carved blocks starting in it. Returns the count.
static unsigned link_purged(hak_slab_t *slab, uint64_t *mask, unsigned want, size_t page, void **head, void **tail) {
    uint64_t m = *mask;
    size_t size = slab->size;
    void **first = NULL, **prev = NULL;
    unsigned n = 0;
    while (m && n < want) {
        size_t i = (size_t)__builtin_ctzll(m);
        m &= m - 1;
        size_t k = size >= page ? i : (i * page + size - 1) / size;
        size_t end = size >= page ? i + 1 : ((i + 1) * page + size - 1) / size;
        if (end > slab->carved) end = slab->carved;
        for (; k < end; k++) {
            void **b = (void **)(slab->start + k * size);
            b[1] = (void *)hak_free_key;  // every block on a free list carries the mark
            if (prev) hak_link_set(prev, b);
            else first = b;
            prev = b;
            n++;
        }
    }
    *mask = m;
    if (n) {
        hak_link_set(prev, NULL);
        *head = first;
        *tail = prev;
    }
    return n;
}

// n blocks linked head..tail (n may be 0) go to the front of s's local free list.
static void list_prepend(hak_slab_t *s, void *head, void *tail, unsigned n) {
    if (!n) return;
    hak_link_set(tail, s->free);
    s->free = head;
    s->free_count += n;
}

// Blocks smaller than a page: the whole pages of s's carved part that hold only free blocks
// of its local list (every block overlapping the page is on it) are purged. A block that
// starts in such a page loses its link and mark: it leaves the list, and the page's bit in
// s->purged stands for it (hak_slab_take_purged links the page's blocks again). The list is
// relinked around those blocks before the purge, writing only the links that change (a page
// written breaks its copy-on-write sharing with a forked child); a block that starts before
// a purged page keeps its head (16-byte aligned, never across a page). Each entry of the list
// is checked on the way: a link overwritten by a write to a freed block stops here, with the
// pop check's message, rather than steering the purge into live memory.
#define SMALL_SPAN_BLOCKS (HAK_SLAB_SIZE / 16)
static int small_block_purged(const hak_slab_t *s, uint64_t pages, const void *b, size_t page) {
    return (pages >> ((size_t)((const char *)b - s->start) / page)) & 1u;
}

static size_t purge_small_pages(hak_slab_t *s, size_t page) {
    size_t size = s->size, carved_end = (size_t)s->carved * size;
    unsigned npages = (unsigned)((carved_end + page - 1) / page);
    if (s->span != 1 || s->carved > SMALL_SPAN_BLOCKS || npages > 64 || (size_t)s->free_count * size < page) return 0;
    uint64_t freebits[SMALL_SPAN_BLOCKS / 64] = {0};
    uint32_t listed = 0;
    for (void **b = s->free; b; b = hak_link_get(b), listed++) {
        size_t off = (size_t)((char *)b - s->start);
        if (hak_unlikely(listed >= s->free_count || off >= carved_end || off % size != 0 ||
                         b[1] != (void *)hak_free_key))
            hak_die("malloc(): free list corrupted (a write to a freed block, or a wild free-list link)", b);
        freebits[off / size / 64] |= (uint64_t)1 << (off / size % 64);
    }
    uint64_t purged = hak_load_relaxed(&s->purged), fresh = 0;
    for (unsigned pg = 0; pg < npages; pg++) {
        if ((purged >> pg) & 1u) continue;
        size_t first = pg * page / size, last = ((size_t)(pg + 1) * page - 1) / size;
        // a page where no carved block starts has nothing to hand out again: left alone
        if ((pg * page + size - 1) / size >= s->carved) continue;
        if (last >= s->carved) last = s->carved - 1;  // blocks not carved yet hold nothing
        size_t k = first;
        while (k <= last && ((freebits[k / 64] >> (k % 64)) & 1u)) k++;
        if (k > last) fresh |= (uint64_t)1 << pg;
    }
    if (!fresh) return 0;
    // The bits and the zero limits go first, so a double free racing with the zeroing reaches
    // the slow path rather than finding neither mark nor bit (as for whole blocks).
    hak_store_relaxed(&s->purged, purged | fresh);
    if (!purged) span_set_limit(s, 0);
    // the list without the blocks that start in the fresh pages, in its own order
    void **keep = NULL, **last = NULL;
    uint32_t kept = 0;
    for (void **b = s->free, **next; b; b = next) {
        next = hak_link_get(b);
        if (small_block_purged(s, fresh, b, page)) continue;
        if (last) {
            if (hak_link_get(last) != b) hak_link_set(last, b);
        } else {
            keep = b;
        }
        last = b;
        kept++;
    }
    if (last && hak_link_get(last) != NULL) hak_link_set(last, NULL);
    s->free = keep;
    s->free_count = kept;
    size_t bytes = 0;
    uint64_t refused = 0;
    for (uint64_t m = fresh; m;) {
        unsigned pg = (unsigned)__builtin_ctzll(m), end = pg;
        while (end < 64 && ((m >> end) & 1u)) end++;
        uint64_t run = (end - pg >= 64 ? ~(uint64_t)0 : (((uint64_t)1 << (end - pg)) - 1u)) << pg;
        m &= ~run;
        if (hak_os_purge(s->start + (size_t)pg * page, (size_t)(end - pg) * page) == 0) bytes += (size_t)(end - pg) * page;
        else refused |= run;
    }
    if (refused) {
        // A refusal may come after part of a range was zeroed (a locked page further on):
        // the blocks of refused pages go back on the list with link and mark written anew.
        void *head = NULL, *tail = NULL;
        uint64_t left = refused;
        unsigned n = link_purged(s, &left, UINT32_MAX, page, &head, &tail);
        list_prepend(s, head, tail, n);
        purged |= fresh & ~refused;
        hak_store_relaxed(&s->purged, purged);
        if (!purged) span_set_limit(s, (uint64_t)s->capacity * hak_sc_unit[s->sc]);
    }
    return bytes;
}

unsigned hak_slab_unpurge(hak_slab_t *s) {
    void *head = NULL, *tail = NULL;
    unsigned n = hak_slab_take_purged(s, UINT32_MAX, &head, &tail);
    list_prepend(s, head, tail, n);
    return n;
}

size_t hak_ss_purge_free_blocks(hak_ss_t *ss) {
    size_t page = hak_os_page_size(), bytes = 0;
    for (unsigned i = 0; i < HAK_SLABS_PER_SS; i++) {
        if (ss->slab_sc[i] == HAK_SLAB_NONE || ss->slab_head[i] != i) continue;
        hak_slab_t *s = &ss->slabs[i];
        if (!s->free) continue;
        if (s->size < page) {
            bytes += purge_small_pages(s, page);
            continue;
        }
        uint64_t purged = hak_load_relaxed(&s->purged);
        void **keep = NULL, **last = NULL;
        for (void **b = s->free, **next; b; b = next) {
            next = hak_link_get(b);  // before the purge zeroes it
            uintptr_t lo = hak_align_up((uintptr_t)b, page);
            uintptr_t hi = ((uintptr_t)b + s->size) & ~(uintptr_t)(page - 1);
            size_t k = (size_t)((char *)b - s->start) / s->size;
            if (k >= 64) {  // no bit for it: it keeps the page with its link and mark
                lo = hak_align_up((uintptr_t)b + 2 * sizeof(void *), page);
                if (hi > lo && hak_os_purge((void *)lo, hi - lo) == 0) bytes += hi - lo;
            } else if (hi > lo) {
                // The bit and the zero limits go first, so a double free racing with the
                // zeroing reaches the slow path rather than finding neither mark nor bit.
                uint64_t bit = (uint64_t)1 << k;
                hak_store_relaxed(&s->purged, purged | bit);
                if (!purged) span_set_limit(s, 0);
                if (hak_os_purge((void *)lo, hi - lo) == 0) {
                    purged |= bit;
                    bytes += hi - lo;
                    s->free_count--;
                    continue;  // off the list: its link is gone
                }
                hak_store_relaxed(&s->purged, purged);
                if (!purged) span_set_limit(s, (uint64_t)s->capacity * hak_sc_unit[s->sc]);
                // a refusal may come after part of the range was zeroed (a locked page
                // further on): the mark goes back with the link below
                b[1] = (void *)hak_free_key;
            }
            if (last) {
                if (hak_link_get(last) != b) hak_link_set(last, b);  // no write, no dirty page, when unchanged
            } else {
                keep = b;
            }
            last = b;
        }
        if (last && hak_link_get(last) != NULL) hak_link_set(last, NULL);
        s->free = keep;
    }
    HAK_STAT_ADD(ss_purge_block_bytes, bytes);
    return bytes;
}

unsigned hak_slab_take_purged(hak_slab_t *slab, unsigned want, void **head, void **tail) {
    uint64_t m = hak_load_relaxed(&slab->purged);
    unsigned n = link_purged(slab, &m, want, hak_os_page_size(), head, tail);
    hak_store_relaxed(&slab->purged, m);
    if (!m) span_set_limit(slab, (uint64_t)slab->capacity * hak_sc_unit[slab->sc]);
    return n;
}

size_t hak_ss_purge_free(hak_ss_t *ss) {
    uint32_t m = ss->free_mask & ss->dirty_mask;
    size_t bytes = 0;
    while (m) {
        unsigned i = (unsigned)__builtin_ctz(m);
        unsigned j = i;
        while (j < HAK_SLABS_PER_SS && (m >> j) & 1u) j++;
        size_t len = (size_t)(j - i) << HAK_SLAB_SHIFT;
        if (hak_os_purge(ss->base + ((size_t)i << HAK_SLAB_SHIFT), len) == 0) bytes += len;
        uint32_t run = (j - i >= 32 ? 0xffffffffu : ((1u << (j - i)) - 1u)) << i;
        ss->dirty_mask &= ~run;
        m &= ~run;
    }
    HAK_STAT_ADD(ss_purge_bytes, bytes);
    return bytes;
}

size_t hak_ss_pool_trim(void) {
    hak_lock(&pool_lock);
    hak_ss_t *list = pool_head;
    pool_head = pool_tail = NULL;
    pool_count = 0;
    hak_unlock(&pool_lock);
    size_t bytes = 0;
    while (list) {
        hak_ss_t *next = list->next;
        unmap_ss(list);
        bytes += HAK_SS_SIZE;
        list = next;
    }
    return bytes;
}

void hak_ss_totals(size_t *mapped, size_t *pooled) {
    *mapped = hak_load_relaxed(&ss_mapped) * HAK_SS_SIZE;
    hak_lock(&pool_lock);
    *pooled = pool_count * HAK_SS_SIZE;
    hak_unlock(&pool_lock);
}

void hak_ss_fork_prepare(void) {
    hak_lock(&pool_lock);
    hak_meta_fork_prepare(&ss_meta);
}
void hak_ss_fork_parent(void) {
    hak_meta_fork_parent(&ss_meta);
    hak_unlock(&pool_lock);
}
void hak_ss_fork_child(void) {
    hak_meta_fork_child(&ss_meta);
    hak_lock_reset(&pool_lock);
}
