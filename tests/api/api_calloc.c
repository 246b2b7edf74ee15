/* api_calloc.c -- calloc zeroing of recycled memory in every tier, multiplication
 * overflow in calloc and reallocarray, and requests no allocator can satisfy (SIZE_MAX,
 * above PTRDIFF_MAX): NULL with errno ENOMEM, and an old block left intact by realloc. */
#include "test_util.h"

/* Dirty blocks of size n (fill 0xAA over the usable size, free), then calloc the same
 * size: every calloc'd byte must be zero. Repeated so the callocs land on the recycled
 * blocks (thread cache, slab free lists, fresh large mappings). */
static void dirty_then_calloc(size_t n, int count, int rounds) {
    void **p = malloc((size_t)count * sizeof *p);
    CHECK(p != NULL, "out of memory in the test");
    for (int r = 0; r < rounds; r++) {
        for (int i = 0; i < count; i++) {
            p[i] = hak_malloc(n);
            CHECK(p[i] != NULL, "malloc(%zu) failed", n);
            memset(p[i], 0xAA, hak_usable_size(p[i]));
        }
        for (int i = count - 1; i >= 0; i--) hak_free(p[i]);
        for (int i = 0; i < count; i++) {
            // alternate the factor split: calloc(n, 1), calloc(1, n), calloc(n/16, 16)
            size_t c = 1, s = n;
            if (i % 3 == 1) {
                c = n;
                s = 1;
            } else if (i % 3 == 2 && n % 16 == 0) {
                c = n / 16;
                s = 16;
            }
            p[i] = hak_calloc(c, s);
            CHECK(p[i] != NULL, "calloc(%zu, %zu) failed", c, s);
            CHECK(hak_usable_size(p[i]) >= n, "calloc(%zu, %zu): usable %zu", c, s, hak_usable_size(p[i]));
            size_t bad = find_nonzero(p[i], n);
            CHECK(bad == SIZE_MAX, "calloc(%zu, %zu) round %d #%d = %p: byte %zu is 0x%02x, not 0", c, s, r, i,
                  p[i], bad, ((unsigned char *)p[i])[bad]);
            memset(p[i], 0xAA, hak_usable_size(p[i]));  // dirty again for the next round
        }
        for (int i = 0; i < count; i++) hak_free(p[i]);
    }
    free(p);
}

static void t_calloc_recycled(void) {
    // small tier
    static const size_t small[] = {1, 16, 24, 48, 64, 100, 128, 129, 500, 1000, 1024};
    for (size_t i = 0; i < sizeof small / sizeof small[0]; i++) dirty_then_calloc(small[i], 600, 3);
    // mid tier, up to the largest class
    static const size_t mid[] = {1025, 2048, 4096, 5000, 40000, 65536, 100 * KiB, 300 * KiB, MiB - 1, MiB};
    for (size_t i = 0; i < sizeof mid / sizeof mid[0]; i++) dirty_then_calloc(mid[i], mid[i] > 200 * KiB ? 6 : 40, 3);
    // large tier
    static const size_t large[] = {MiB + 1, 3 * MiB, 5 * MiB + 12345};
    for (size_t i = 0; i < sizeof large / sizeof large[0]; i++) dirty_then_calloc(large[i], 3, 3);
    // calloc of zero elements: a unique, freeable block
    void *a = hak_calloc(0, 16), *b = hak_calloc(16, 0), *c = hak_calloc(0, SIZE_MAX);
    CHECK(a && b && c && a != b && b != c && a != c, "calloc of 0 bytes: %p %p %p", a, b, c);
    hak_free(a);
    hak_free(b);
    hak_free(c);
}

static void expect_enomem_ptr(void *p, const char *what) {
    int e = errno;
    CHECK(p == NULL, "%s returned %p, expected NULL", what, p);
    CHECK(e == ENOMEM, "%s: errno %d (%s), expected ENOMEM", what, e, strerror(e));
}

static void t_calloc_overflow(void) {
    const size_t half = SIZE_MAX / 2 + 1;
    struct {
        size_t c, s;
    } cases[] = {
        {half, 2}, {2, half}, {SIZE_MAX, 2}, {SIZE_MAX, SIZE_MAX}, {(size_t)1 << 32, (size_t)1 << 32},
        {((size_t)1 << 33) + 1, (size_t)1 << 31}, {SIZE_MAX / 3 + 1, 3},
        // no overflow, but above PTRDIFF_MAX
        {(size_t)PTRDIFF_MAX + 1, 1}, {1, SIZE_MAX}, {half / 2, 3},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char what[96];
        snprintf(what, sizeof what, "calloc(%zu, %zu)", cases[i].c, cases[i].s);
        errno = 0;
        expect_enomem_ptr(hak_calloc(cases[i].c, cases[i].s), what);
    }
    // the allocator is fine afterwards
    void *p = hak_calloc(10, 10);
    CHECK(p && find_nonzero(p, 100) == SIZE_MAX, "calloc(10, 10) after the overflows");
    hak_free(p);
}

static void t_reallocarray(void) {
    static const size_t sizes[] = {100, 5000, 200 * KiB, 3 * MiB};  // one per tier
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        unsigned char *p = hak_malloc(n);
        CHECK(p != NULL, "malloc(%zu)", n);
        fill_pat(p, n, 42 + (uint32_t)i);
        errno = 0;
        expect_enomem_ptr(hak_reallocarray(p, SIZE_MAX / 2 + 1, 2), "reallocarray(p, SIZE_MAX/2+1, 2)");
        errno = 0;
        expect_enomem_ptr(hak_reallocarray(p, 3, SIZE_MAX / 2), "reallocarray(p, 3, SIZE_MAX/2)");
        errno = 0;
        expect_enomem_ptr(hak_reallocarray(p, (size_t)1 << 40, (size_t)1 << 40), "reallocarray(p, 2^40, 2^40)");
        // the old block is untouched and still owned by the caller
        CHECK(hak_usable_size(p) >= n, "old block usable size %zu < %zu", hak_usable_size(p), n);
        size_t bad = find_bad_pat(p, 0, n, 42 + (uint32_t)i);
        CHECK(bad == SIZE_MAX, "reallocarray overflow damaged the old block at %zu", bad);
        // a valid reallocarray keeps the content
        unsigned char *q = hak_reallocarray(p, 2, n);
        CHECK(q != NULL, "reallocarray(p, 2, %zu) failed", n);
        CHECK(hak_usable_size(q) >= 2 * n, "usable %zu < %zu", hak_usable_size(q), 2 * n);
        bad = find_bad_pat(q, 0, n, 42 + (uint32_t)i);
        CHECK(bad == SIZE_MAX, "reallocarray lost content at %zu", bad);
        hak_free(q);
    }
    void *p = hak_reallocarray(NULL, 4, 25);  // like malloc(100)
    CHECK(p != NULL && hak_usable_size(p) >= 100, "reallocarray(NULL, 4, 25) = %p", p);
    hak_free(p);
    errno = 0;
    expect_enomem_ptr(hak_reallocarray(NULL, SIZE_MAX, 2), "reallocarray(NULL, SIZE_MAX, 2)");
}

static void t_impossible(void) {
    const size_t sizes[] = {SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - 4095, (size_t)PTRDIFF_MAX + 1,
                            (size_t)PTRDIFF_MAX, (size_t)PTRDIFF_MAX - 100};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        char what[64];
        snprintf(what, sizeof what, "malloc(%zu)", sizes[i]);
        errno = 0;
        expect_enomem_ptr(hak_malloc(sizes[i]), what);
        snprintf(what, sizeof what, "valloc(%zu)", sizes[i]);
        errno = 0;
        expect_enomem_ptr(hak_valloc(sizes[i]), what);
        snprintf(what, sizeof what, "aligned_alloc(64, %zu)", sizes[i]);
        errno = 0;
        expect_enomem_ptr(hak_aligned_alloc(64, sizes[i]), what);
        snprintf(what, sizeof what, "memalign(1 MiB, %zu)", sizes[i]);
        errno = 0;
        expect_enomem_ptr(hak_memalign(MiB, sizes[i]), what);
        void *out = (void *)&out;
        errno = 0;
        int rc = hak_posix_memalign(&out, 4 * MiB, sizes[i]);
        CHECK(rc == ENOMEM, "posix_memalign(4 MiB, %zu) = %d, expected ENOMEM", sizes[i], rc);
        CHECK(out == (void *)&out, "posix_memalign wrote *out on failure");
    }
    errno = 0;
    expect_enomem_ptr(hak_pvalloc(SIZE_MAX), "pvalloc(SIZE_MAX)");
    errno = 0;
    expect_enomem_ptr(hak_pvalloc(SIZE_MAX - 4095), "pvalloc(SIZE_MAX - 4095)");
    // an alignment no mapping can have
    errno = 0;
    expect_enomem_ptr(hak_aligned_alloc(SIZE_MAX / 2 + 1, 1), "aligned_alloc(2^63, 1)");

    // realloc to an impossible size: NULL, ENOMEM, and the old block intact (every tier)
    static const size_t old_sizes[] = {1, 40, 1000, 5000, 100 * KiB, MiB, MiB + 1, 3 * MiB};
    for (size_t i = 0; i < sizeof old_sizes / sizeof old_sizes[0]; i++) {
        size_t n = old_sizes[i];
        void *p = hak_malloc(n);
        CHECK(p != NULL, "malloc(%zu)", n);
        fill_pat(p, n, 9 + (uint32_t)i);
        size_t u = hak_usable_size(p);
        const size_t bad_sizes[] = {SIZE_MAX, (size_t)PTRDIFF_MAX + 1, (size_t)PTRDIFF_MAX, SIZE_MAX - 4095};
        for (size_t j = 0; j < sizeof bad_sizes / sizeof bad_sizes[0]; j++) {
            char what[80];
            snprintf(what, sizeof what, "realloc(malloc(%zu), %zu)", n, bad_sizes[j]);
            errno = 0;
            expect_enomem_ptr(hak_realloc(p, bad_sizes[j]), what);
            CHECK(hak_usable_size(p) == u, "%s changed the usable size %zu -> %zu", what, u, hak_usable_size(p));
            size_t bad = find_bad_pat(p, 0, n, 9 + (uint32_t)i);
            CHECK(bad == SIZE_MAX, "%s damaged the old block at offset %zu", what, bad);
        }
        // still a live block: a real realloc works
        void *q = hak_realloc(p, n + 10);
        CHECK(q != NULL, "realloc(%zu -> %zu) after failures", n, n + 10);
        CHECK(find_bad_pat(q, 0, n, 9 + (uint32_t)i) == SIZE_MAX, "content lost");
        hak_free(q);
    }
}

static const test_case_t cases[] = {
    {"calloc_recycled", t_calloc_recycled},
    {"calloc_overflow", t_calloc_overflow},
    {"reallocarray", t_reallocarray},
    {"impossible_sizes", t_impossible},
};

int main(int argc, char **argv) { return run_cases(argc, argv, cases, sizeof cases / sizeof cases[0]); }
