/* api_realloc.c -- realloc keeps the content across every tier transition (small, mid,
 * large, both directions, in place and moved), realloc(NULL, n) allocates, realloc(p, 0)
 * frees, and a random realloc workload keeps every block's content. */
#include "test_util.h"

/* Walk one block through sizes[], checking byte by byte that the common prefix survives
 * each step, then refilling the rest so the next step checks the whole block. */
static void walk(const size_t *sizes, size_t count, uint32_t seed) {
    size_t n = sizes[0];
    unsigned char *p = hak_malloc(n);
    CHECK(p != NULL, "malloc(%zu)", n);
    fill_pat(p, n, seed);
    for (size_t i = 1; i < count; i++) {
        size_t m = sizes[i];
        unsigned char *q = hak_realloc(p, m);
        CHECK(q != NULL, "realloc(%p, %zu -> %zu) failed (errno %d)", (void *)p, n, m, errno);
        CHECK(((uintptr_t)q & 15) == 0, "realloc result %p not aligned", (void *)q);
        CHECK(hak_usable_size(q) >= m, "realloc(%zu -> %zu): usable %zu", n, m, hak_usable_size(q));
        size_t keep = n < m ? n : m;
        size_t bad = find_bad_pat(q, 0, keep, seed);
        CHECK(bad == SIZE_MAX, "realloc %zu -> %zu (%p -> %p): byte %zu of the kept %zu differs", n, m,
              (void *)p, (void *)q, bad, keep);
        fill_pat(q, m, seed);  // the pattern depends on the offset: extend it over the new tail
        p = q;
        n = m;
    }
    hak_free(p);
}

static void t_tiers(void) {
    // small -> mid -> large -> mid -> small, and back up again
    static const size_t up_down[] = {24,          700,     1024,     1025,        5000,    64 * KiB, 200 * KiB,
                                     MiB,         MiB + 1, 3 * MiB,  17 * MiB,    5 * MiB, 2 * MiB,  MiB + 1,
                                     MiB,         100 * KiB, 3000,   1024,        100,     16,       1,
                                     MiB + 4096,  16,      3 * MiB,  20,          MiB,     8 * MiB,  40};
    walk(up_down, sizeof up_down / sizeof up_down[0], 1);
    // grow a little at a time (mostly in place for small blocks that fit) and shrink
    size_t steps[200];
    size_t k = 0;
    for (size_t n = 1; n < 3 * MiB && k < 100; n = n * 5 / 4 + 7) steps[k++] = n;
    size_t up = k;
    for (size_t j = 0; j < up; j++) steps[k++] = steps[up - 1 - j];
    walk(steps, k, 2);
    // large -> large: grow and shrink repeatedly (mremap in place or by moving)
    static const size_t large[] = {MiB + 1, 2 * MiB, 4 * MiB + 1, 9 * MiB, 3 * MiB, 33 * MiB, 2 * MiB + 1, 6 * MiB};
    walk(large, sizeof large / sizeof large[0], 3);
}

/* Large growth that cannot happen in place: another large block sits right after. */
static void t_large_move(void) {
    for (int attempt = 0; attempt < 8; attempt++) {
        unsigned char *a = hak_malloc(3 * MiB);
        unsigned char *b = hak_malloc(3 * MiB);
        CHECK(a && b, "malloc(3 MiB)");
        fill_pat(a, 3 * MiB, 10);
        fill_pat(b, 3 * MiB, 11);
        // whichever is lower has a neighbour close above it (2 MiB-aligned mappings)
        unsigned char *lo = a < b ? a : b, *hi = a < b ? b : a;
        uint32_t lo_seed = a < b ? 10 : 11, hi_seed = a < b ? 11 : 10;
        errno = 4321;  // the refused in-place mremap sets it on the way; success restores it
        unsigned char *q = hak_realloc(lo, 12 * MiB);
        CHECK(q != NULL, "realloc to 12 MiB");
        CHECK(errno == 4321, "a realloc that moved and succeeded changed errno to %d", errno);
        CHECK(find_bad_pat(q, 0, 3 * MiB, lo_seed) == SIZE_MAX, "moved large block lost content");
        CHECK(find_bad_pat(hi, 0, 3 * MiB, hi_seed) == SIZE_MAX, "growing a large block damaged its neighbour");
        fill_pat(q, 12 * MiB, 12);
        CHECK(hak_usable_size(q) >= 12 * MiB, "usable %zu", hak_usable_size(q));
        hak_free(hi);
        q = hak_realloc(q, 1 * MiB + 1);
        CHECK(q != NULL && find_bad_pat(q, 0, MiB + 1, 12) == SIZE_MAX, "shrunk large block lost content");
        hak_free(q);
    }
}

static void t_realloc_null(void) {
    static const size_t sizes[] = {0, 1, 100, 1024, 100 * KiB, MiB, 3 * MiB};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        void *p = hak_realloc(NULL, sizes[i]);
        CHECK(p != NULL, "realloc(NULL, %zu) returned NULL", sizes[i]);
        CHECK(((uintptr_t)p & 15) == 0, "realloc(NULL, %zu) = %p unaligned", sizes[i], p);
        CHECK(hak_usable_size(p) >= sizes[i], "realloc(NULL, %zu): usable %zu", sizes[i], hak_usable_size(p));
        memset(p, 0x33, sizes[i]);
        hak_free(p);
    }
}

static void t_realloc_zero(void) {
    // a large block: realloc(p, 0) must unmap it (large_count falls by one)
    hak_info_t before, after;
    void *p = hak_malloc(3 * MiB);
    CHECK(p != NULL, "malloc(3 MiB)");
    size_t usable = hak_usable_size(p);  // 3 MiB, or a larger cached block used whole
    hak_info(&before);
    void *r = hak_realloc(p, 0);
    CHECK(r == NULL, "realloc(large, 0) returned %p, expected NULL", r);
    hak_info(&after);
    CHECK(after.large_count + 1 == before.large_count, "realloc(large, 0) did not free: large_count %zu -> %zu",
          before.large_count, after.large_count);
    CHECK(after.large_bytes + usable == before.large_bytes, "large_bytes %zu -> %zu (usable %zu)", before.large_bytes,
          after.large_bytes, usable);
    // small and mid blocks: realloc(p, 0) frees (one free counted), and NULL comes back
    static const size_t sizes[] = {1, 64, 1000, 5000, 100 * KiB, MiB};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        p = hak_malloc(sizes[i]);
        CHECK(p != NULL, "malloc(%zu)", sizes[i]);
        uint64_t frees = hak_stat("free_tls_sll");
        r = hak_realloc(p, 0);
        CHECK(r == NULL, "realloc(malloc(%zu), 0) returned %p, expected NULL", sizes[i], r);
        uint64_t frees2 = hak_stat("free_tls_sll");
        if (TEST_STATS)
            CHECK(frees2 == frees + 1, "realloc(malloc(%zu), 0): free_tls_sll %" PRIu64 " -> %" PRIu64
                                       " (the block was not freed)", sizes[i], frees, frees2);
    }
}

/* Random reallocs over 64 slots, sizes mostly small and mid, some large. */
static void t_random(void) {
    enum { SLOTS = 64, OPS = 4000 };
    unsigned char *p[SLOTS] = {0};
    size_t n[SLOTS] = {0};
    uint32_t seed[SLOTS] = {0};
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    for (int op = 0; op < OPS; op++) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        unsigned s = (unsigned)(rng % SLOTS);
        unsigned kind = (unsigned)((rng >> 8) % 100);
        size_t m;
        if (kind < 55) m = (size_t)((rng >> 16) % 1025);
        else if (kind < 90) m = 1025 + (size_t)((rng >> 16) % (256 * KiB));
        else if (kind < 97) m = 256 * KiB + (size_t)((rng >> 16) % (768 * KiB + 1));
        else m = MiB + 1 + (size_t)((rng >> 16) % (4 * MiB));
        if (kind % 11 == 0 && p[s]) {  // sometimes free instead
            CHECK(find_bad_pat(p[s], 0, n[s], seed[s]) == SIZE_MAX, "slot %u corrupted before free", s);
            hak_free(p[s]);
            p[s] = NULL;
            n[s] = 0;
            continue;
        }
        unsigned char *q = hak_realloc(p[s], m);
        if (m == 0 && p[s] != NULL) {  // realloc(p, 0) frees
            CHECK(q == NULL, "realloc(p, 0) returned %p", (void *)q);
            p[s] = NULL;
            n[s] = 0;
            continue;
        }
        CHECK(q != NULL, "op %d: realloc(%p, %zu) failed", op, (void *)p[s], m);
        CHECK(hak_usable_size(q) >= m, "op %d: usable %zu < %zu", op, hak_usable_size(q), m);
        size_t keep = n[s] < m ? n[s] : m;
        size_t bad = find_bad_pat(q, 0, keep, seed[s]);
        CHECK(bad == SIZE_MAX, "op %d: realloc %zu -> %zu lost byte %zu", op, n[s], m, bad);
        seed[s] = (uint32_t)op * 31u + 7u;
        fill_pat(q, m, seed[s]);
        p[s] = q;
        n[s] = m;
    }
    span_rec_t recs[SLOTS];
    size_t live = 0;
    for (unsigned s = 0; s < SLOTS; s++) {
        if (!p[s]) continue;
        CHECK(find_bad_pat(p[s], 0, n[s], seed[s]) == SIZE_MAX, "slot %u corrupted at the end", s);
        recs[live].start = (uintptr_t)p[s];
        recs[live].len = hak_usable_size(p[s]);
        live++;
    }
    check_no_overlap(recs, live, "realloc'd blocks");
    for (unsigned s = 0; s < SLOTS; s++) hak_free(p[s]);
}

static const test_case_t cases[] = {
    {"tiers", t_tiers},
    {"large_move", t_large_move},
    {"realloc_null", t_realloc_null},
    {"realloc_zero", t_realloc_zero},
    {"random", t_random},
};

int main(int argc, char **argv) { return run_cases(argc, argv, cases, sizeof cases / sizeof cases[0]); }
