/* test_ss_smallfuzz.c -- randomized white-box check of the purge of pages of free small
 * blocks (hak_ss_purge_free_blocks for classes under a page), hak_slab_take_purged and
 * hak_slab_unpurge: for every such class, random carve counts and free patterns, purges with
 * and without injected madvise refusals, mixed with list allocations, take-backs, carving and
 * frees. After each step: live bytes unchanged, the list matches free_count and every entry
 * carries its mark, every free block is listed or starts in a purged page, the span's
 * invariant holds, a newly purged page overlapped no live block, and the block-start limit is
 * 0 exactly while pages are purged. Links hak_ss.c and core/base only.
 *   test_ss_smallfuzz [ITERATIONS]   (default 300)
 * FAKE_PAGE=<bytes> makes sysconf(_SC_PAGESIZE) lie (multiples of 4096 only). */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "hak_config.h"
#include "hak_harden.h"
#include "hak_os.h"
#include "hak_pagemap.h"
#include "hak_sizeclass.h"
#include "hak_ss.h"

static int owner_token;
#define OWNER ((void *)&owner_token)

// glibc's own entry point, for every name but a faked page size (sanitizers ask for others)
extern long __sysconf(int name);
long sysconf(int name) {
    const char *e = getenv("FAKE_PAGE");
    if (name == _SC_PAGESIZE && e) return atol(e);
    return __sysconf(name);
}

static uint64_t rng = 88172645463325252ull;
static uint64_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

enum { MAXB = 4096 };
static unsigned char state[MAXB];  // 0 uncarved, 1 live, 2 free listed, 3 free purged
static unsigned char pat(size_t k, size_t j) { return (unsigned char)(k * 131 + j * 7 + 1) | 1; }

static void fill_live(hak_slab_t *s, size_t k) {
    unsigned char *p = (unsigned char *)s->start + k * s->size;
    for (size_t j = 0; j < s->size; j++) p[j] = pat(k, j);
}

static void verify(hak_slab_t *s, size_t page, const char *when, uint64_t oldm) {
    size_t size = s->size;
    uint64_t m = hak_load_relaxed(&s->purged);
    // live blocks untouched
    for (size_t k = 0; k < s->carved; k++)
        if (state[k] == 1) {
            unsigned char *p = (unsigned char *)s->start + k * size;
            for (size_t j = 0; j < size; j++)
                CHECK(p[j] == pat(k, j), "%s: size %zu live block %zu byte %zu changed", when, size, k, j);
        }
    // list
    static unsigned char seen[MAXB];
    memset(seen, 0, sizeof seen);
    uint32_t n = 0;
    for (void **b = s->free; b; b = hak_link_get(b)) {
        size_t off = (size_t)((char *)b - s->start);
        CHECK(off % size == 0 && off / size < s->carved, "%s: wild list entry", when);
        size_t k = off / size;
        CHECK(!seen[k], "%s: block %zu listed twice", when, k);
        seen[k] = 1;
        CHECK(state[k] == 2 || state[k] == 3, "%s: size %zu list holds block %zu in state %u", when, size, k, state[k]);
        CHECK(b[1] == (void *)hak_free_key, "%s: listed block without mark", when);
        CHECK(!hak_slab_is_purged(s, b), "%s: listed block reads purged", when);
        state[k] = 2;
        n++;
        CHECK(n <= s->free_count, "%s: list longer than free_count", when);
    }
    CHECK(n == s->free_count, "%s: free_count %u, list %u", when, s->free_count, n);
    uint32_t used = 0, purged_blocks = 0;
    for (size_t k = 0; k < s->carved; k++) {
        if (state[k] == 1) {
            used++;
            CHECK(!hak_slab_is_purged(s, s->start + k * size), "%s: size %zu live block %zu reads purged", when, size, k);
            continue;
        }
        if (!seen[k]) {
            // must be free and starting in a purged page
            CHECK(state[k] == 2 || state[k] == 3, "?");
            size_t pg = k * size / page;
            CHECK(pg < 64 && ((m >> pg) & 1), "%s: size %zu free block %zu neither listed nor in a purged page (m %#" PRIx64 ")",
                  when, size, k, m);
            CHECK(hak_slab_is_purged(s, s->start + k * size), "%s: purged block not reported", when);
            state[k] = 3;
            purged_blocks++;
        } else {
            CHECK(!((m >> (k * size / page)) & 1), "%s: listed block %zu starts in purged page", when, k);
        }
    }
    CHECK(used == s->used, "%s: used %u vs %u", when, s->used, used);
    CHECK(used + s->free_count + purged_blocks == s->carved, "%s: invariant", when);
    // every purged page: all carved blocks overlapping it are free (not live)
    for (unsigned pg = 0; pg < 64; pg++) {
        if (!((m >> pg) & 1) || ((oldm >> pg) & 1)) continue;
        size_t first = pg * page / size, last = ((pg + 1) * page - 1) / size;
        CHECK(first < s->carved, "%s: purged page %u has no carved block", when, pg);
        for (size_t k = first; k <= last && k < s->carved; k++)
            CHECK(state[k] != 1, "%s: size %zu purged page %u overlaps live block %zu", when, size, pg, k);
    }
    CHECK((m != 0) == (hak_load_relaxed(&s->ss->slab_limit[s->index]) == 0), "%s: limit vs mask (m %#" PRIx64 ")", when, m);
}

// return listed block k from the list (malloc)
static void alloc_from_list(hak_slab_t *s, size_t want) {
    // take first `want` blocks of list
    while (want-- && s->free) {
        void **b = s->free;
        s->free = hak_link_get(b);
        s->free_count--;
        size_t k = (size_t)((char *)b - s->start) / s->size;
        state[k] = 1;
        s->used++;
        fill_live(s, k);
    }
}

static void free_block(hak_slab_t *s, size_t k) {
    void **b = (void **)(s->start + k * s->size);
    b[1] = (void *)hak_free_key;
    hak_link_set(b, s->free);
    s->free = b;
    s->free_count++;
    s->used--;
    state[k] = 2;
}

int main(int argc, char **argv) {
    unsigned iters = argc > 1 ? (unsigned)atoi(argv[1]) : 300;
    size_t page = hak_os_page_size();
    printf("page %zu\n", page);
    for (unsigned it = 0; it < iters; it++) {
        int fp;
        hak_ss_t *ss = hak_ss_acquire(OWNER, &fp);
        CHECK(ss, "acquire");
        for (unsigned sc = 0; sc < HAK_SC_MAX; sc++) {
            if (hak_sc_info[sc].size >= page || hak_sc_info[sc].span != 1) continue;
            hak_slab_t *s = hak_ss_span_start(ss, sc);
            CHECK(s, "span");
            size_t size = s->size;
            memset(state, 0, sizeof state);
            unsigned want = (rnd() % 3 == 0) ? s->capacity : 1 + (unsigned)(rnd() % s->capacity);
            void *head, *tail;
            unsigned c = hak_slab_carve(s, want, &head, &tail);
            s->free = NULL;
            s->free_count = 0;
            s->used = c;
            for (size_t k = 0; k < c; k++) {
                state[k] = 1;
                fill_live(s, k);
            }
            // free pattern: runs
            unsigned mode = (unsigned)(rnd() % 4);
            for (size_t k = 0; k < c; k++) {
                int f;
                if (mode == 0) f = rnd() % 8 != 0;
                else if (mode == 1) f = (k / (1 + rnd() % 200)) % 2;
                else if (mode == 2) f = 1;
                else f = rnd() % 2;
                if (f && !(mode == 2 && k == c / 2)) free_block(s, k);
            }
            if (!s->free) {
                hak_ss_span_end(ss, s);
                continue;
            }
            for (int round = 0; round < 6; round++) {
                if (rnd() % 4 == 0) hak_os_fault_set(HAK_OS_FAULT_PURGE, rnd() % 3, 1 + rnd() % 2);
                uint64_t oldm = hak_load_relaxed(&s->purged);
                hak_ss_purge_free_blocks(ss);
                hak_os_fault_set(HAK_OS_FAULT_PURGE, 0, 0);
                verify(s, page, "after purge", oldm);
                // some activity: alloc from list, take purged, carve, free some live
                unsigned act = (unsigned)(rnd() % 4);  // 1: take purged blocks out, or all back on the list
                if (act == 0) alloc_from_list(s, rnd() % 50);
                if (act == 1 && hak_load_relaxed(&s->purged)) {
                    unsigned n = hak_slab_take_purged(s, 1 + (unsigned)(rnd() % 128), &head, &tail);
                    size_t cnt = 0;
                    for (void **b = head; n && b; b = hak_link_get(b), cnt++) {
                        size_t k = (size_t)((char *)b - s->start) / size;
                        CHECK(state[k] == 3, "size %zu took block %zu in state %u", size, k, state[k]);
                        CHECK(b[1] == (void *)hak_free_key, "no mark");
                        state[k] = 1;
                        s->used++;
                        if (b == tail) {
                            cnt++;
                            break;
                        }
                    }
                    CHECK(cnt == n, "took %u, chain %zu", n, cnt);
                    void **b = head;
                    for (unsigned i = 0; i < n; i++) {
                        void **nx = hak_link_get(b);
                        fill_live(s, (size_t)((char *)b - s->start) / size);
                        b = nx;
                    }
                }
                if (act == 2 && !hak_load_relaxed(&s->purged) && !s->free && s->carved < s->capacity) {
                    size_t c0 = s->carved;
                    unsigned n = hak_slab_carve(s, 1 + (unsigned)(rnd() % 64), &head, &tail);
                    for (size_t k = c0; k < c0 + n; k++) {
                        state[k] = 1;
                        s->used++;
                        fill_live(s, k);
                    }
                }
                if (act == 1 && rnd() % 2 == 0 && hak_load_relaxed(&s->purged)) {
                    unsigned n = hak_slab_unpurge(s);  // all purged blocks back on the list
                    CHECK(n > 0 && !hak_load_relaxed(&s->purged), "unpurge left purged pages (%u blocks)", n);
                }
                if (act == 3)
                    for (size_t k = 0; k < s->carved; k++)
                        if (state[k] == 1 && rnd() % 3 == 0) free_block(s, k);
                verify(s, page, "after activity", ~0ull);
            }
            // drain everything
            while (hak_load_relaxed(&s->purged)) {
                unsigned n = hak_slab_take_purged(s, 1 + (unsigned)(rnd() % 128), &head, &tail);
                void **b = head;
                for (unsigned i = 0; i < n; i++) {
                    size_t k = (size_t)((char *)b - s->start) / size;
                    CHECK(state[k] == 3, "drain: size %zu took block %zu in state %u", size, k, state[k]);
                    state[k] = 1;
                    s->used++;
                    void **nx = hak_link_get(b);
                    fill_live(s, k);
                    b = nx;
                }
            }
            verify(s, page, "drained", ~0ull);
            s->used = 0;
            s->free = NULL;
            s->free_count = 0;
            hak_ss_span_end(ss, s);
        }
        hak_ss_release(ss);
    }
    hak_ss_pool_trim();
    printf("ok\n");
    return 0;
}
