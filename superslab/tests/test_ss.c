/* test_ss.c -- white-box test of superslab/: SuperSlab acquisition and the pagemap, span
 * geometry for every size class, carving, block lookup (hak_ss_of, hak_ss_slab_of,
 * hak_slab_is_block), span reuse across classes, purging, and the pool of empty
 * SuperSlabs. Links hak_ss.c and core/base only; nothing else allocates from SuperSlabs
 * in this process, so every pagemap entry is one this test made. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "hak_config.h"
#include "hak_harden.h"
#include "hak_pagemap.h"
#include "hak_sizeclass.h"
#include "hak_ss.h"


static int owner_token;
#define OWNER ((void *)&owner_token)
#define ALL_FREE 0xffffffffu

/* SuperSlabs this test holds or pooled (mapped and registered), to tell "ours" apart. */
static hak_ss_t *known[512];
static size_t nknown;

static void known_add(hak_ss_t *ss) {
    for (size_t i = 0; i < nknown; i++)
        if (known[i] == ss) return;
    CHECK(nknown < 512, "too many SuperSlabs");
    known[nknown++] = ss;
}
static void known_del(hak_ss_t *ss) {
    for (size_t i = 0; i < nknown; i++)
        if (known[i] == ss) {
            known[i] = known[--nknown];
            return;
        }
}
static int is_known_chunk(uintptr_t addr) {
    for (size_t i = 0; i < nknown; i++)
        if ((uintptr_t)known[i]->base == (addr & ~(HAK_SS_SIZE - 1))) return 1;
    return 0;
}

static void check_fresh(hak_ss_t *ss, const char *when) {
    CHECK(ss != NULL, "%s: hak_ss_acquire returned NULL (errno %d)", when, errno);
    CHECK(ss->base != NULL && ((uintptr_t)ss->base & (HAK_SS_SIZE - 1)) == 0, "%s: base %p not 2 MiB-aligned", when,
          (void *)ss->base);
    CHECK(hak_load_relaxed(&ss->owner) == OWNER, "%s: owner not set", when);
    CHECK(ss->free_mask == ALL_FREE && ss->spans == 0 && ss->pooled == 0, "%s: free_mask %08x spans %u pooled %d",
          when, ss->free_mask, ss->spans, ss->pooled);
    for (unsigned i = 0; i < HAK_SLABS_PER_SS; i++)
        CHECK(ss->slab_sc[i] == HAK_SLAB_NONE && ss->slab_head[i] == i, "%s: slab %u sc %u head %u", when, i,
              ss->slab_sc[i], ss->slab_head[i]);
    // the pagemap: every address of the region maps to ss; the neighbours only if ours
    char *b = ss->base;
    CHECK(hak_ss_of(b) == ss && hak_ss_of(b + HAK_SS_SIZE - 1) == ss && hak_ss_of(b + 12345) == ss,
          "%s: pagemap does not map the region to its SuperSlab", when);
    CHECK(hak_pagemap_get((uintptr_t)b) == ((uintptr_t)ss | HAK_PM_TAG_SS), "%s: pagemap entry %#" PRIxPTR, when,
          hak_pagemap_get((uintptr_t)b));
    if (!is_known_chunk((uintptr_t)b - 1))
        CHECK(hak_pagemap_get((uintptr_t)b - 1) == 0 && hak_ss_of(b - 1) == NULL,
              "%s: base-1 (%p) is not ours but the pagemap says %#" PRIxPTR, when, (void *)(b - 1),
              hak_pagemap_get((uintptr_t)b - 1));
    if (!is_known_chunk((uintptr_t)b + HAK_SS_SIZE))
        CHECK(hak_pagemap_get((uintptr_t)b + HAK_SS_SIZE) == 0 && hak_ss_of(b + HAK_SS_SIZE) == NULL,
              "%s: base+2MiB is not ours but the pagemap says %#" PRIxPTR, when,
              hak_pagemap_get((uintptr_t)b + HAK_SS_SIZE));
}

static int is_pow2(size_t x) { return x && !(x & (x - 1)); }

/* Carve every block of a fresh span and check each one. Returns the blocks carved. */
static unsigned carve_all(hak_ss_t *ss, hak_slab_t *s, unsigned sc) {
    const size_t size = s->size;
    char *span_end = s->start + (size_t)s->span * HAK_SLAB_SIZE;
    char *prev = NULL;
    unsigned total = 0, want = 1;
    for (;;) {
        void *head = NULL, *tail = NULL;
        unsigned carved_before = s->carved;
        unsigned n = hak_slab_carve(s, want, &head, &tail);
        if (n == 0) break;
        CHECK(n <= want, "class %u: carve(%u) gave %u", sc, want, n);
        CHECK(s->carved == carved_before + n, "class %u: carved %u -> %u after %u", sc, carved_before, s->carved, n);
        // the chain: n blocks, consecutive, ending at tail with a NULL link
        char *b = head;
        for (unsigned i = 0; i < n; i++) {
            CHECK(b == s->start + (size_t)(carved_before + i) * size, "class %u: block %u of the carve at %p", sc, i,
                  (void *)b);
            CHECK(b >= s->start && b + size <= span_end, "class %u: block %p outside its span [%p, %p)", sc,
                  (void *)b, (void *)s->start, (void *)span_end);
            CHECK(b >= ss->base && b + size <= ss->base + HAK_SS_SIZE, "class %u: block %p outside the SuperSlab", sc,
                  (void *)b);
            CHECK(((uintptr_t)b & 15) == 0, "class %u: block %p not 16-aligned", sc, (void *)b);
            if (is_pow2(size) && size <= HAK_SLAB_SIZE)
                CHECK(((uintptr_t)b & (size - 1)) == 0, "class %u: block %p not %zu-aligned", sc, (void *)b, size);
            CHECK(prev == NULL || b >= prev + size, "class %u: block %p overlaps %p", sc, (void *)b, (void *)prev);
            CHECK(hak_ss_of(b) == ss && hak_ss_of(b + size - 1) == ss, "class %u: hak_ss_of(%p) wrong", sc, (void *)b);
            CHECK(hak_ss_slab_of(ss, b) == s && hak_ss_slab_of(ss, b + size - 1) == s,
                  "class %u: hak_ss_slab_of(%p) is not its span head", sc, (void *)b);
            CHECK(ss->slab_sc[hak_ss_slab_index(ss, b)] == sc, "class %u: slab_sc of %p is %u", sc, (void *)b,
                  ss->slab_sc[hak_ss_slab_index(ss, b)]);
            CHECK(hak_slab_is_block(s, b), "class %u: %p not recognised as a block", sc, (void *)b);
            CHECK(!hak_slab_is_block(s, b + 8), "class %u: %p+8 taken for a block", sc, (void *)b);
            if (size > 16) CHECK(!hak_slab_is_block(s, b + 16), "class %u: %p+16 taken for a block", sc, (void *)b);
            CHECK(!hak_slab_is_block(s, b + size - 1), "class %u: last byte of %p taken for a block", sc, (void *)b);
            char *next = *(char **)b;
            if (i + 1 < n) CHECK(next == b + size, "class %u: link of %p is %p", sc, (void *)b, (void *)next);
            else CHECK(b == tail && next == NULL, "class %u: chain ends at %p (tail %p, link %p)", sc, (void *)b, tail,
                       (void *)next);
            prev = b;
            b = next;
        }
        // write the blocks (links included): the memory is ours and writable
        memset(head, (int)(sc + 1), (size_t)n * size);
        total += n;
        want = want * 3 + 1;
    }
    CHECK(total == s->capacity && s->carved == s->capacity, "class %u: carved %u of %u", sc, total, s->capacity);
    char *end = s->start + (size_t)s->capacity * size;
    CHECK(end <= span_end, "class %u: the last block ends at %p past the span end %p", sc, (void *)end,
          (void *)span_end);
    CHECK(!hak_slab_is_block(s, end), "class %u: one past the last block taken for a block", sc);
    CHECK(!hak_slab_is_block(s, end + size), "class %u: two past the last block taken for a block", sc);
    CHECK(!hak_slab_is_block(s, s->start - size), "class %u: the block before the span taken for a block", sc);
    CHECK(!hak_slab_is_block(s, s->start - 16), "class %u: start-16 taken for a block", sc);
    void *h, *t;
    CHECK(hak_slab_carve(s, 5, &h, &t) == 0, "class %u: carving past the capacity", sc);
    return total;
}

/* Heads of the live spans of ss, in slab order. */
static unsigned live_spans(hak_ss_t *ss, hak_slab_t **out) {
    unsigned k = 0;
    for (unsigned i = 0; i < HAK_SLABS_PER_SS; i++)
        if (ss->slab_sc[i] != HAK_SLAB_NONE && ss->slab_head[i] == i) out[k++] = &ss->slabs[i];
    return k;
}

/* A class other than sc whose span fits in sc's. */
static unsigned other_class(unsigned sc) {
    unsigned best = sc == 0 ? 1 : 0;
    for (unsigned c = 0; c < HAK_SC_MAX; c++)
        if (c != sc && hak_sc_info[c].span <= hak_sc_info[sc].span && hak_sc_info[c].span > hak_sc_info[best].span)
            best = c;
    return best;
}

static void check_class(unsigned sc, hak_ss_t **ssp) {
    const hak_sc_info_t *ci = &hak_sc_info[sc];
    hak_ss_t *ss = *ssp;
    CHECK(ci->size == hak_sc_size_table[sc], "class %u: info size %u, table %u", sc, ci->size, hak_sc_size_table[sc]);
    CHECK(ci->span >= 1 && ci->span <= HAK_SLABS_PER_SS, "class %u: span %u", sc, ci->span);
    size_t span_bytes = (size_t)ci->span * HAK_SLAB_SIZE;
    CHECK(ci->capacity >= 1 && (size_t)ci->capacity * ci->size <= span_bytes, "class %u: capacity %u x %u in %zu",
          sc, ci->capacity, ci->size, span_bytes);
    CHECK((size_t)(ci->capacity + 1) * ci->size > span_bytes || ci->capacity == 65535,
          "class %u: capacity %u leaves room for another block", sc, ci->capacity);
    if (ci->span < HAK_SLABS_PER_SS / 2)  // hak_sizeclass.c: tail waste at most 1/8 of the span
        CHECK((span_bytes - (size_t)ci->capacity * ci->size) * 8 <= span_bytes, "class %u: tail waste %zu of %zu", sc,
              span_bytes - (size_t)ci->capacity * ci->size, span_bytes);

    // start spans until none fits; each takes the lowest free run of ci->span slabs
    unsigned expect_spans = HAK_SLABS_PER_SS / ci->span, spans = 0;
    hak_slab_t *s;
    while ((s = hak_ss_span_start(ss, sc)) != NULL) {
        unsigned idx = spans * ci->span;
        CHECK(s == &ss->slabs[idx] && s->index == idx, "class %u: span %u starts at slab %u, expected %u", sc, spans,
              s->index, idx);
        CHECK(s->start == ss->base + (size_t)idx * HAK_SLAB_SIZE, "class %u: span start %p", sc, (void *)s->start);
        CHECK(s->sc == sc && s->span == ci->span && s->capacity == ci->capacity && s->size == ci->size,
              "class %u: span fields sc %u span %u cap %u size %u", sc, s->sc, s->span, s->capacity, s->size);
        CHECK(s->used == 0 && s->carved == 0 && s->free == NULL && s->free_count == 0 && s->ss == ss && !s->listed,
              "class %u: a new span is not empty", sc);
        for (unsigned j = idx; j < idx + ci->span; j++) {
            CHECK(ss->slab_sc[j] == sc && ss->slab_head[j] == idx, "class %u: slab %u sc %u head %u", sc, j,
                  ss->slab_sc[j], ss->slab_head[j]);
            CHECK(!(ss->free_mask & (1u << j)), "class %u: slab %u still marked free", sc, j);
        }
        spans++;
        CHECK(ss->spans == spans, "class %u: ss->spans %u, started %u", sc, ss->spans, spans);
        carve_all(ss, s, sc);
        CHECK(spans <= expect_spans, "class %u: more than %u spans fit", sc, expect_spans);
    }
    CHECK(spans == expect_spans, "class %u (span %u): %u spans fit, expected %u", sc, ci->span, spans, expect_spans);
    uint32_t used_bits = spans * ci->span >= 32 ? ALL_FREE : ((1u << (spans * ci->span)) - 1u);
    CHECK(ss->free_mask == (ALL_FREE & ~used_bits), "class %u: free_mask %08x", sc, ss->free_mask);
    // the blocks written by carve_all are all still there (no span overwrote another)
    hak_slab_t *heads[HAK_SLABS_PER_SS];
    unsigned nh = live_spans(ss, heads);
    CHECK(nh == spans, "class %u: %u live span heads, %u started", sc, nh, spans);
    for (unsigned k = 0; k < nh; k++) {
        const unsigned char *c = (const unsigned char *)heads[k]->start;
        size_t len = (size_t)heads[k]->capacity * heads[k]->size;
        for (size_t i = 0; i < len; i += 61)
            CHECK(c[i] == (unsigned char)(sc + 1), "class %u: span %u byte %zu is %u", sc, k, i, c[i]);
    }

    // end the first span; a span of another class takes its slabs
    hak_slab_t *first = &ss->slabs[0];
    hak_ss_span_end(ss, first);
    CHECK(ss->spans == spans - 1, "class %u: spans %u after span_end", sc, ss->spans);
    for (unsigned j = 0; j < ci->span; j++)
        CHECK(ss->slab_sc[j] == HAK_SLAB_NONE && ss->slab_head[j] == j && (ss->free_mask & (1u << j)),
              "class %u: slab %u not free after span_end", sc, j);
    unsigned sc2 = other_class(sc);
    hak_slab_t *s2 = hak_ss_span_start(ss, sc2);
    CHECK(s2 != NULL, "class %u: no room for class %u (span %u) in the slabs just freed", sc, sc2,
          hak_sc_info[sc2].span);
    CHECK(s2->index == 0 && s2->start == ss->base, "class %u: class %u span went to slab %u, not the freed slab 0", sc,
          sc2, s2->index);
    CHECK(s2->sc == sc2 && s2->size == hak_sc_info[sc2].size && s2->carved == 0, "class %u: reused span fields", sc);
    carve_all(ss, s2, sc2);
    // ending every span leaves a SuperSlab with all slabs free
    nh = live_spans(ss, heads);
    for (unsigned k = 0; k < nh; k++) hak_ss_span_end(ss, heads[k]);
    CHECK(ss->spans == 0 && ss->free_mask == ALL_FREE, "class %u: after ending all spans: spans %u mask %08x", sc,
          ss->spans, ss->free_mask);
    for (unsigned i = 0; i < HAK_SLABS_PER_SS; i++)
        CHECK(ss->slab_sc[i] == HAK_SLAB_NONE && ss->slab_head[i] == i, "class %u: slab %u not reset", sc, i);

    // release to the pool and acquire again: the same SuperSlab (the pool gives the most
    // recently released first), reset; its pages are kept or purged by the pool's policy
    char *base = ss->base;
    hak_ss_release(ss);
    CHECK(ss->pooled == 1 && hak_load_relaxed(&ss->owner) == NULL, "class %u: released SuperSlab not pooled", sc);
    CHECK(hak_ss_of(base) == ss, "class %u: a pooled SuperSlab must stay registered", sc);
    size_t mapped, pooled;
    hak_ss_totals(&mapped, &pooled);
    CHECK(pooled >= HAK_SS_SIZE && mapped >= pooled, "class %u: totals mapped %zu pooled %zu", sc, mapped, pooled);
    int from_pool = 0;
    hak_ss_t *again = hak_ss_acquire(OWNER, &from_pool);
    check_fresh(again, "reacquire");
    CHECK(from_pool == 1 && again == ss && again->base == base,
          "class %u: reacquire gave %p (from_pool %d), expected the pooled %p", sc, (void *)again, from_pool, (void *)ss);
    // every slab was written and is free now: a purge leaves the whole region reading zero
    // (dirty_mask survived the pool round trip, whether or not the pool purged already)
    hak_ss_purge_free(again);
    for (size_t off = 0; off < HAK_SS_SIZE; off += 4093)
        CHECK(base[off] == 0, "class %u: byte %zu of a purged SuperSlab reads %d, not 0", sc, off, base[off]);
    CHECK(hak_ss_purge_free(again) == 0, "class %u: a second purge released bytes", sc);
    *ssp = again;
}

/* The pool keeps at most hak_config.ss_pool_max empty SuperSlabs; the others released go
 * back to the OS and leave the pagemap (which ones is the pool's policy). Pooled ones stay
 * registered, so a stray free into one is caught. hak_ss_pool_trim unmaps them all. */
static void check_pool(void) {
    size_t cap = hak_config.ss_pool_max;
    CHECK(cap <= 200, "pool cap %zu too big for this test", cap);
    size_t n = cap + 4;
    hak_ss_t **ss = calloc(n, sizeof *ss);
    char **base = calloc(n, sizeof *base);
    CHECK(ss && base, "out of memory in the test");
    for (size_t i = 0; i < n; i++) {
        int fp;
        ss[i] = hak_ss_acquire(OWNER, &fp);
        check_fresh(ss[i], "pool test acquire");
        known_add(ss[i]);
        base[i] = ss[i]->base;
        memset(base[i] + (i % 32) * HAK_SLAB_SIZE, 0x77, 100);
        hak_slab_t *s = hak_ss_span_start(ss[i], (unsigned)(i % HAK_SC_MAX));
        CHECK(s != NULL, "span_start in a fresh SuperSlab");
        hak_ss_span_end(ss[i], s);
    }
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++) CHECK(ss[i] != ss[j] && base[i] != base[j], "a SuperSlab given out twice");
    size_t mapped, pooled;
    hak_ss_totals(&mapped, &pooled);
    CHECK(pooled == 0 && mapped == n * HAK_SS_SIZE, "totals before release: mapped %zu pooled %zu (n %zu)", mapped,
          pooled, n);
    for (size_t i = 0; i < n; i++) {
        hak_ss_release(ss[i]);
        hak_ss_totals(&mapped, &pooled);
        size_t expect = i + 1 < cap ? i + 1 : cap;
        CHECK(pooled == expect * HAK_SS_SIZE, "after %zu releases: %zu bytes pooled, expected %zu SuperSlabs", i + 1,
              pooled, expect);
        CHECK(mapped == (n - (i + 1) + expect) * HAK_SS_SIZE, "after %zu of %zu releases: %zu bytes mapped (cap %zu)",
              i + 1, n, mapped, cap);
    }
    size_t registered = 0;
    for (size_t i = 0; i < n; i++) {
        uintptr_t e = hak_pagemap_get((uintptr_t)base[i]);
        if (e == 0) {
            known_del(ss[i]);  // unmapped (its metadata may be reused)
            continue;
        }
        CHECK(hak_ss_of(base[i]) == ss[i] && hak_ss_of(base[i] + HAK_SS_SIZE - 1) == ss[i],
              "released SuperSlab %zu maps to something else", i);
        CHECK(ss[i]->pooled == 1 && hak_load_relaxed(&ss[i]->owner) == NULL, "registered SuperSlab %zu is not pooled",
              i);
        registered++;
    }
    CHECK(registered == cap, "%zu released SuperSlabs still registered, pool cap %zu", registered, cap);
    size_t bytes = hak_ss_pool_trim();
    CHECK(bytes == cap * HAK_SS_SIZE, "pool_trim released %zu bytes, expected %zu", bytes, cap * HAK_SS_SIZE);
    hak_ss_totals(&mapped, &pooled);
    CHECK(mapped == 0 && pooled == 0, "after pool_trim: mapped %zu pooled %zu", mapped, pooled);
    for (size_t i = 0; i < n; i++) {
        CHECK(hak_pagemap_get((uintptr_t)base[i]) == 0 && hak_ss_of(base[i] + 100) == NULL,
              "trimmed SuperSlab %zu still in the pagemap", i);
        // Its metadata slot is free now (metadata memory is never unmapped, and nothing was
        // acquired since): free's owner test must fail for every thread, including one with
        // no heap (NULL), since the pool's link sits in slab_limit[0] (unmap_ss).
        void *owner = hak_load_relaxed(&ss[i]->owner);
        CHECK(owner != NULL && owner != OWNER, "unmapped SuperSlab %zu: owner %p in its free metadata slot", i, owner);
        known_del(ss[i]);
    }
    CHECK(hak_ss_pool_trim() == 0, "a second pool_trim released memory");
    // and acquiring works after a trim (fresh from the OS)
    int fp = 1;
    hak_ss_t *x = hak_ss_acquire(OWNER, &fp);
    check_fresh(x, "acquire after trim");
    CHECK(fp == 0, "acquire after trim came from the (empty) pool");
    hak_ss_release(x);
    hak_ss_pool_trim();
    free(ss);
    free(base);
}

/* Free slabs that were written are purged once (MADV_DONTNEED) and read as zero. */
static void check_purge(void) {
    int fp;
    hak_ss_t *ss = hak_ss_acquire(OWNER, &fp);
    check_fresh(ss, "purge test acquire");
    known_add(ss);
    CHECK(hak_ss_purge_free(ss) == 0 || fp, "purging a fresh SuperSlab released bytes");
    unsigned sc = (unsigned)hak_sc_for(4096);
    hak_slab_t *a = hak_ss_span_start(ss, sc);
    hak_slab_t *b = hak_ss_span_start(ss, sc);
    CHECK(a && b, "span_start");
    size_t span_bytes = (size_t)a->span * HAK_SLAB_SIZE;
    memset(a->start, 0xab, span_bytes);
    memset(b->start, 0xcd, span_bytes);
    CHECK(hak_ss_purge_free(ss) == 0, "purge touched slabs that are in use");
    CHECK((unsigned char)a->start[0] == 0xab, "purge cleared a live span");
    char *astart = a->start;
    hak_ss_span_end(ss, a);
    size_t bytes = hak_ss_purge_free(ss);
    CHECK(bytes == span_bytes, "purge released %zu bytes, expected the ended span's %zu", bytes, span_bytes);
    for (size_t off = 0; off < span_bytes; off += 512)
        CHECK(astart[off] == 0, "purged slab byte %zu reads %d", off, astart[off]);
    CHECK((unsigned char)b->start[span_bytes - 1] == 0xcd, "purge cleared the live span next to it");
    CHECK(hak_ss_purge_free(ss) == 0, "a second purge released bytes again");
    hak_ss_span_end(ss, b);
    hak_ss_release(ss);
    known_del(ss);
    hak_ss_pool_trim();
}

/* Where a span goes (hak_ss_span_fit): the shortest free run that holds it, unless a run
 * offers slabs already touched at one of its ends, which cost no page faults. */
static void check_fit(void) {
    int fp;
    hak_ss_t *ss = hak_ss_acquire(OWNER, &fp);
    check_fresh(ss, "fit test acquire");
    known_add(ss);
    unsigned one = (unsigned)hak_sc_for(4096), four = (unsigned)hak_sc_for(262144);
    CHECK(hak_sc_info[one].span == 1 && hak_sc_info[four].span == 4, "spans %u and %u, expected 1 and 4",
          hak_sc_info[one].span, hak_sc_info[four].span);
    hak_slab_t *s[HAK_SLABS_PER_SS];
    for (unsigned i = 0; i < HAK_SLABS_PER_SS; i++) {
        s[i] = hak_ss_span_start(ss, one);
        CHECK(s[i] && s[i]->index == i, "a fresh SuperSlab fills from slab 0 up: span %u at %d", i,
              s[i] ? (int)s[i]->index : -1);
    }
    unsigned at;
    CHECK(hak_ss_span_fit(ss, one, &at) == HAK_SS_NO_FIT && !hak_ss_can_start(ss, one), "a full SuperSlab fits a span");
    // free runs 2-7 (6 slabs), 10-13 (4) and 20-31 (12), then purged: all clean
    for (unsigned i = 0; i < HAK_SLABS_PER_SS; i++)
        if ((i >= 2 && i <= 7) || (i >= 10 && i <= 13) || i >= 20) hak_ss_span_end(ss, s[i]);
    hak_ss_purge_free(ss);
    CHECK((ss->dirty_mask & ss->free_mask) == 0, "purged free slabs still dirty: %08x", ss->dirty_mask & ss->free_mask);
    CHECK(hak_ss_span_fit(ss, four, &at) == 4 * HAK_SLABS_PER_SS && at == 10,
          "all clean: the 4-slab span should take the exact run at 10, got %u", at);
    CHECK(hak_ss_span_fit(ss, one, &at) == HAK_SLABS_PER_SS + 3 && at == 10, "a 1-slab span should take the run of 4");
    // slabs 28-31 written again and freed: the long run's top end now costs no faults
    for (unsigned i = 28; i < HAK_SLABS_PER_SS; i++) hak_ss_span_end(ss, hak_ss_span_start_at(ss, one, i));
    CHECK(hak_ss_span_fit(ss, four, &at) == 8 && at == 28, "a dirty end of a run should win: got slab %u", at);
    hak_slab_t *t = hak_ss_span_start(ss, four);
    CHECK(t && t->index == 28 && t->span == 4 && ss->slab_head[31] == 28, "span_start did not follow span_fit");
    // nothing dirty left free: best fit again
    CHECK(hak_ss_span_fit(ss, four, &at) == 4 * HAK_SLABS_PER_SS && at == 10, "best fit after the dirty run went");
    hak_ss_span_end(ss, t);
    for (unsigned i = 0; i < HAK_SLABS_PER_SS; i++)
        if (!((i >= 2 && i <= 7) || (i >= 10 && i <= 13) || i >= 20)) hak_ss_span_end(ss, s[i]);
    CHECK(ss->spans == 0 && ss->free_mask == ALL_FREE, "fit test: spans %u mask %08x left", ss->spans, ss->free_mask);
    hak_ss_release(ss);
    known_del(ss);
    hak_ss_pool_trim();
}

/* Blocks under a page: the pages that hold only free blocks of the local list are purged,
 * the blocks starting in them leave the list for the page bits, and come back whole pages at
 * a time (hak_slab_take_purged). 48-byte blocks straddle page boundaries (block 85 spans
 * pages 0 and 1, block 170 pages 1 and 2). */
static void check_purge_small(void) {
    int fp;
    hak_ss_t *ss = hak_ss_acquire(OWNER, &fp);
    check_fresh(ss, "small purge acquire");
    known_add(ss);
    unsigned sc = (unsigned)hak_sc_for(48);
    hak_slab_t *s = hak_ss_span_start(ss, sc);
    CHECK(s && s->size == 48 && s->span == 1, "a 48-byte span");
    void *head, *tail;
    unsigned cap = hak_slab_carve(s, s->capacity, &head, &tail);
    CHECK(cap == s->capacity, "carved %u of %u", cap, s->capacity);
    // free: blocks 0..299 but 150 (live, in page 1); out: the rest
    void **prev = NULL;
    s->free = NULL;
    for (unsigned k = 0; k < 300; k++) {
        if (k == 150) continue;
        void **b = (void **)(s->start + (size_t)k * 48);
        b[1] = (void *)hak_free_key;
        if (prev) hak_link_set(prev, b);
        else s->free = b;
        prev = b;
    }
    hak_link_set(prev, NULL);
    s->free_count = 299;
    s->used = cap - 299;
    memset(s->start + 150 * 48, 0x77, 48);
    unsigned idx = s->index;
    uint64_t limit = hak_load_relaxed(&ss->slab_limit[idx]);
    size_t bytes = hak_ss_purge_free_blocks(ss);
    CHECK(bytes == 2 * 4096, "purged %zu bytes, expected pages 0 and 2", bytes);
    CHECK(hak_load_relaxed(&s->purged) == 0x5, "purged pages %#llx, expected 0x5",
          (unsigned long long)hak_load_relaxed(&s->purged));
    CHECK(hak_load_relaxed(&ss->slab_limit[idx]) == 0, "a span with purged pages kept its block-start limit");
    // the list: blocks 86..170 but 150, then 256..299, in order, each marked
    CHECK(s->free_count == 128, "free_count %u after the purge, expected 128", s->free_count);
    unsigned n = 0, k = 86;
    for (void **b = s->free; b; b = hak_link_get(b), n++) {
        if (k == 150) k++;
        if (k == 171) k = 256;
        CHECK(b == (void **)(s->start + (size_t)k * 48), "list entry %u is block %td, expected %u", n,
              ((char *)b - s->start) / 48, k);
        CHECK(b[1] == (void *)hak_free_key, "block %u on the list lost its mark", k);
        k++;
    }
    CHECK(n == 128, "the list holds %u blocks", n);
    for (size_t off = 0; off < 4096; off++) CHECK(s->start[off] == 0 && s->start[8192 + off] == 0, "purged byte");
    CHECK((unsigned char)s->start[150 * 48 + 47] == 0x77, "the live block was touched");
    CHECK(hak_slab_is_purged(s, s->start) && hak_slab_is_purged(s, s->start + 85 * 48) &&
              hak_slab_is_purged(s, s->start + 171 * 48) && !hak_slab_is_purged(s, s->start + 86 * 48) &&
              !hak_slab_is_purged(s, s->start + 150 * 48) && !hak_slab_is_purged(s, s->start + 256 * 48),
          "hak_slab_is_purged does not follow the pages");
    // a second pass finds nothing more to purge
    CHECK(hak_ss_purge_free_blocks(ss) == 0, "a second purge released bytes");
    // taken back: page 0's 86 blocks first (want 80 takes the whole page), then page 2's 85
    unsigned got = hak_slab_take_purged(s, 80, &head, &tail);
    CHECK(got == 86 && head == s->start && tail == s->start + 85 * 48, "took %u blocks of page 0", got);
    CHECK(hak_load_relaxed(&s->purged) == 0x4 && hak_load_relaxed(&ss->slab_limit[idx]) == 0, "after page 0");
    k = 0;
    for (void **b = head; b; b = hak_link_get(b), k++)
        CHECK(b == (void **)(s->start + (size_t)k * 48) && b[1] == (void *)hak_free_key, "taken block %u", k);
    got = hak_slab_take_purged(s, 80, &head, &tail);
    CHECK(got == 85 && head == s->start + 171 * 48, "took %u blocks of page 2", got);
    CHECK(hak_load_relaxed(&s->purged) == 0 && hak_load_relaxed(&ss->slab_limit[idx]) == limit,
          "the limit did not come back with the last purged page");
    CHECK(hak_slab_take_purged(s, 80, &head, &tail) == 0, "blocks left to take");
    s->used = 0;
    s->free = NULL;
    s->free_count = 0;
    hak_ss_span_end(ss, s);
    hak_ss_release(ss);
    known_del(ss);
    hak_ss_pool_trim();
}

int main(void) {
    // far-off addresses are never ours
    // (volatile: keeps the compiler from folding constant out-of-range lookups and warning)
    volatile uintptr_t lo = 4096, top = UINTPTR_MAX, kernel = (uintptr_t)1 << 63;
    CHECK(hak_pagemap_get(0) == 0 && hak_pagemap_get(lo) == 0 && hak_ss_of((void *)lo) == NULL,
          "pagemap maps low memory");
    CHECK(hak_pagemap_get(top) == 0 && hak_ss_of((void *)(top - 15)) == NULL && hak_pagemap_get(kernel) == 0,
          "pagemap maps addresses above the user address space");
    int from_pool = 1;
    hak_ss_t *ss = hak_ss_acquire(OWNER, &from_pool);
    check_fresh(ss, "first acquire");
    CHECK(from_pool == 0, "the first SuperSlab came from an empty pool");
    known_add(ss);
    // a second one at the same time: a different 2 MiB region
    hak_ss_t *ss2 = hak_ss_acquire(OWNER, &from_pool);
    check_fresh(ss2, "second acquire");
    CHECK(ss2 != ss && ss2->base != ss->base, "two live SuperSlabs share a region");
    known_add(ss2);
    check_fresh(ss, "first acquire, rechecked");
    for (unsigned sc = 0; sc < HAK_SC_MAX; sc++) check_class(sc, (sc & 1) ? &ss2 : &ss);
    hak_ss_release(ss);
    hak_ss_release(ss2);
    hak_ss_pool_trim();
    known_del(ss);
    known_del(ss2);
    check_purge();
    check_fit();
    check_purge_small();
    check_pool();
    printf("ok: %u classes, pool cap %zu\n", (unsigned)HAK_SC_MAX, hak_config.ss_pool_max);
    return 0;
}
