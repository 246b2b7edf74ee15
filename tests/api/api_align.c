/* api_align.c -- posix_memalign, aligned_alloc, memalign, valloc and pvalloc: every
 * power-of-two alignment from sizeof(void *) to 64 MiB with sizes around it, the
 * EINVAL cases, and the page rounding of pvalloc. */
#include <unistd.h>

#include "test_util.h"

static size_t page_size(void) {
    long v = sysconf(_SC_PAGESIZE);
    return v > 0 ? (size_t)v : 4096;
}

static void t_posix_memalign(void) {
    for (size_t align = sizeof(void *); align <= 64 * MiB; align <<= 1) {
        const size_t sizes[] = {0, 1, align - 1, align, align + 1, 3 * align};
        enum { NS = sizeof sizes / sizeof sizes[0] };
        void *p[NS];
        span_rec_t recs[NS];
        for (size_t i = 0; i < NS; i++) {
            p[i] = (void *)0x1;
            int rc = hak_posix_memalign(&p[i], align, sizes[i]);
            CHECK(rc == 0, "posix_memalign(align %zu, size %zu) = %d", align, sizes[i], rc);
            CHECK(p[i] != NULL && p[i] != (void *)0x1, "posix_memalign(%zu, %zu) gave %p", align, sizes[i], p[i]);
            CHECK(((uintptr_t)p[i] & (align - 1)) == 0, "posix_memalign(%zu, %zu) = %p is misaligned", align,
                  sizes[i], p[i]);
            CHECK(((uintptr_t)p[i] & 15) == 0, "posix_memalign(%zu, %zu) = %p is not 16-aligned", align, sizes[i],
                  p[i]);
            size_t u = hak_usable_size(p[i]);
            CHECK(u >= sizes[i], "posix_memalign(%zu, %zu): usable %zu", align, sizes[i], u);
            touch_all(p[i], u, (uint32_t)(align + i));
            recs[i].start = (uintptr_t)p[i];
            recs[i].len = u;
        }
        for (size_t i = 0; i < NS; i++) {
            size_t bad = check_touched(p[i], hak_usable_size(p[i]), (uint32_t)(align + i));
            CHECK(bad == SIZE_MAX, "posix_memalign(%zu, %zu) block %p changed at %zu", align, sizes[i], p[i], bad);
        }
        check_no_overlap(recs, NS, "posix_memalign blocks");
        for (size_t i = 0; i < NS; i++) hak_free(p[i]);
    }
}

static void t_posix_memalign_einval(void) {
    const size_t bad[] = {0, 1, 2, 3, 4, 12, 24, 40, 48, 96, 4095, 4097, 65535, 3 * MiB, SIZE_MAX,
                          (size_t)1 << 63 | 8};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        void *out = (void *)&out;
        int rc = hak_posix_memalign(&out, bad[i], 64);
        CHECK(rc == EINVAL, "posix_memalign(align %zu) = %d, expected EINVAL", bad[i], rc);
        CHECK(out == (void *)&out, "posix_memalign(align %zu) wrote *out on failure", bad[i]);
    }
}

static void t_aligned_alloc(void) {
    // every power of two is a valid alignment (C17): 1, 2, 4 included
    for (size_t align = 1; align <= 4 * MiB; align <<= 1) {
        const size_t sizes[] = {1, align, 2 * align + 3};
        for (size_t i = 0; i < 3; i++) {
            void *p = hak_aligned_alloc(align, sizes[i]);
            CHECK(p != NULL, "aligned_alloc(%zu, %zu) failed", align, sizes[i]);
            CHECK(((uintptr_t)p & (align - 1)) == 0 && ((uintptr_t)p & 15) == 0, "aligned_alloc(%zu, %zu) = %p",
                  align, sizes[i], p);
            CHECK(hak_usable_size(p) >= sizes[i], "aligned_alloc(%zu, %zu): usable %zu", align, sizes[i],
                  hak_usable_size(p));
            touch_all(p, sizes[i], 5);
            CHECK(check_touched(p, sizes[i], 5) == SIZE_MAX, "aligned_alloc block not writable");
            hak_free(p);
        }
    }
    const size_t bad[] = {0, 3, 24, 48, 100, 4097, 3 * MiB, SIZE_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        errno = 0;
        void *p = hak_aligned_alloc(bad[i], 64);
        int e = errno;
        CHECK(p == NULL, "aligned_alloc(%zu, 64) = %p, expected NULL", bad[i], p);
        CHECK(e == EINVAL, "aligned_alloc(%zu, 64): errno %d, expected EINVAL", bad[i], e);
    }
}

static void t_memalign(void) {
    // glibc semantics: a non-power-of-two alignment is rounded up to the next power of two
    struct {
        size_t align, expect;
    } cases[] = {{48, 64}, {3, 4}, {24, 32}, {100, 128}, {1000, 1024}, {5000, 8192}, {65537, 131072},
                 {3 * MiB, 4 * MiB}, {64, 64}, {1, 1}};
    static const size_t sizes[] = {0, 1, 48, 100, 5000, 200 * KiB, MiB + 1};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            void *p = hak_memalign(cases[c].align, sizes[i]);
            CHECK(p != NULL, "memalign(%zu, %zu) failed", cases[c].align, sizes[i]);
            CHECK(((uintptr_t)p & (cases[c].expect - 1)) == 0, "memalign(%zu, %zu) = %p is not %zu-aligned",
                  cases[c].align, sizes[i], p, cases[c].expect);
            CHECK(hak_usable_size(p) >= sizes[i], "memalign usable %zu < %zu", hak_usable_size(p), sizes[i]);
            memset(p, 0x7e, sizes[i]);
            hak_free(p);
        }
    }
    errno = 0;
    void *p = hak_memalign(SIZE_MAX, 16);
    CHECK(p == NULL && errno == EINVAL, "memalign(SIZE_MAX, 16) = %p errno %d, expected NULL/EINVAL", p, errno);
}

static void t_valloc(void) {
    size_t ps = page_size();
    const size_t sizes[] = {0, 1, ps - 1, ps, ps + 1, 3 * ps, 100 * KiB, MiB, MiB + 1, 3 * MiB};
    void *p[sizeof sizes / sizeof sizes[0]];
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        p[i] = hak_valloc(sizes[i]);
        CHECK(p[i] != NULL, "valloc(%zu) failed", sizes[i]);
        CHECK(((uintptr_t)p[i] & (ps - 1)) == 0, "valloc(%zu) = %p is not page-aligned", sizes[i], p[i]);
        CHECK(hak_usable_size(p[i]) >= sizes[i], "valloc(%zu): usable %zu", sizes[i], hak_usable_size(p[i]));
        memset(p[i], 0x11, sizes[i]);
    }
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) hak_free(p[i]);
}

/* Alignments far beyond memory: the span is reserved, not committed, so only address space
 * is needed (2^36 = 64 GiB: more than this machine's memory and swap). */
static void t_huge_alignment(void) {
    for (unsigned b = 30; b <= 36; b += 2) {
        size_t a = (size_t)1 << b;
        char *p = hak_aligned_alloc(a, 4096);
        CHECK(p != NULL, "aligned_alloc(2^%u, 4096): errno %d", b, errno);
        CHECK(((uintptr_t)p & (a - 1)) == 0, "aligned_alloc(2^%u) gave %p", b, (void *)p);
        memset(p, 0x5a, 4096);
        CHECK(hak_usable_size(p) >= 4096, "usable size");
        hak_free(p);
    }
}

static void t_pvalloc(void) {
    size_t ps = page_size();
    const size_t sizes[] = {0, 1, ps - 1, ps, ps + 1, 2 * ps + 1, 3 * ps, 5 * ps - 7, 100 * KiB + 1, MiB - 1, MiB,
                            MiB + 1, 3 * MiB + 5};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        size_t want = n == 0 ? ps : (n + ps - 1) / ps * ps;
        void *p = hak_pvalloc(n);
        CHECK(p != NULL, "pvalloc(%zu) failed", n);
        CHECK(((uintptr_t)p & (ps - 1)) == 0, "pvalloc(%zu) = %p is not page-aligned", n, p);
        size_t u = hak_usable_size(p);
        CHECK(u >= want, "pvalloc(%zu): usable %zu, expected at least %zu (rounded to a page)", n, u, want);
        CHECK(u % ps == 0, "pvalloc(%zu): usable %zu is not a whole number of pages", n, u);
        memset(p, 0x22, want);  // the whole rounded size is ours
        hak_free(p);
    }
}

static const test_case_t cases[] = {
    {"posix_memalign", t_posix_memalign},
    {"posix_memalign_einval", t_posix_memalign_einval},
    {"aligned_alloc", t_aligned_alloc},
    {"memalign", t_memalign},
    {"valloc", t_valloc},
    {"pvalloc", t_pvalloc},
    {"huge_alignment", t_huge_alignment},
};

int main(int argc, char **argv) { return run_cases(argc, argv, cases, sizeof cases / sizeof cases[0]); }
