/* fault_api.c -- OS faults injected under the prefixed API (hak_os_fault_set, core/base/hak_os.h).
 * For each tier (small, mid, large, over-aligned, calloc, realloc into a new tier): a failing
 * mmap gives NULL with errno ENOMEM (posix_memalign: ENOMEM returned, errno untouched), never
 * a crash; memory freed before the fault is served while it lasts; everything works once it
 * is lifted. A failing madvise or munmap loses and corrupts nothing. A shadow model of the live
 * blocks (tests/fuzz/shadow.h: pattern, zero, overlap) is checked throughout. hakmem caches
 * memory (thread caches, heaps' SuperSlabs, the pool, the BigCache), so a case first trims,
 * and the small and mid cases allocate until a fresh mapping is needed.
 * One CTest test per case; each checks the faults it armed were met (hak_os_fault_hits), so
 * a hook that does nothing fails every case. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "hak_os.h"
#include "hakmem.h"
#include "shadow.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define FOREVER UINT64_MAX

/* ---- the model: live blocks and their checks ----------------------------------------- */

typedef struct blk {
    unsigned char *p;
    size_t size;
    uint64_t id;
} blk_t;

#define MAX_LIVE 200000
static blk_t live[MAX_LIVE];
static size_t nlive;
static uint64_t ids = 1;
static shadow_set_t set = SHADOW_SET_INIT;

static void track(void *p, size_t size, size_t align, int zeroed) {
    CHECK(nlive < MAX_LIVE, "too many live blocks");
    CHECK((uintptr_t)p % (align > 16 ? align : 16) == 0, "%p misaligned for %zu", p, align);
    size_t usable = hak_usable_size(p);
    CHECK(usable >= size, "usable size %zu < %zu", usable, size);
    if (zeroed) CHECK(shadow_find_nonzero(p, size) == SIZE_MAX, "calloc(%zu) = %p not zeroed", size, p);
    blk_t *b = &live[nlive++];
    *b = (blk_t){p, size, ids++};
    shadow_insert(&set, p, usable, b->id);
    shadow_fill(p, size, b->id);
}

static void check_all(const char *when) {
    for (size_t i = 0; i < nlive; i++) shadow_check(live[i].p, live[i].size, live[i].size, live[i].id, when);
}

static void free_at(size_t i) {
    shadow_check(live[i].p, live[i].size, live[i].size, live[i].id, "before free");
    shadow_remove(&set, live[i].p);
    hak_free(live[i].p);
    live[i] = live[--nlive];
}

static void free_all(void) {
    while (nlive) free_at(nlive - 1);
}

static void disarm(void) {
    for (unsigned k = 0; k < HAK_OS_FAULT_KINDS; k++) hak_os_fault_set((hak_os_fault_kind_t)k, 0, 0);
}

/* ---- allocation functions under test -------------------------------------------------- */

typedef enum { A_MALLOC, A_CALLOC, A_ALIGNED_ALLOC, A_POSIX_MEMALIGN, A_MEMALIGN } afn_t;
static const char *afn_name[] = {"malloc", "calloc", "aligned_alloc", "posix_memalign", "memalign"};

/* One allocation; on success the block joins the model. On failure checks the refusal is
 * ENOMEM (errno, or posix_memalign's result with errno untouched) and returns NULL. */
static void *alloc_one(afn_t f, size_t size, size_t align) {
    void *p = NULL;
    errno = 4321;
    int err;
    switch (f) {
    case A_MALLOC: p = hak_malloc(size); break;
    case A_CALLOC: p = hak_calloc(1, size); break;
    case A_ALIGNED_ALLOC: p = hak_aligned_alloc(align, size); break;
    case A_MEMALIGN: p = hak_memalign(align, size); break;
    case A_POSIX_MEMALIGN:
        err = hak_posix_memalign(&p, align, size);
        if (err) {
            CHECK(err == ENOMEM, "posix_memalign(%zu, %zu) = %d, expected ENOMEM", align, size, err);
            CHECK(errno == 4321, "posix_memalign failed and changed errno to %d", errno);
            return NULL;
        }
        break;
    }
    if (!p) {
        CHECK(errno == ENOMEM, "%s(%zu) = NULL with errno %d, expected ENOMEM", afn_name[f], size, errno);
        return NULL;
    }
    track(p, size, f == A_MALLOC || f == A_CALLOC ? 16 : align, f == A_CALLOC);
    return p;
}

/* The cycle for a tier served from SuperSlabs: allocate with every mmap failing until the
 * allocator needs a fresh mapping and says ENOMEM; the blocks it gave are intact; lifted,
 * allocation works; freed, and with mmap failing again, as many blocks come back from what
 * was freed. */
static void exhaust_cycle(afn_t f, size_t size, size_t align) {
    printf("   %s(size %zu, align %zu):", afn_name[f], size, align);
    hak_trim(0);
    uint64_t hits0 = hak_os_fault_hits(HAK_OS_FAULT_MAP);
    size_t bound = 24 * MiB / (size ? size : 1) + 4096;
    // some blocks first, so the heap holds a SuperSlab with room: served from it under the
    // fault, until the tier needs a fresh mapping
    for (int i = 0; i < 8; i++) CHECK(alloc_one(f, size, align) != NULL, "%s(%zu) before the fault", afn_name[f], size);
    hak_os_fault_set(HAK_OS_FAULT_MAP, 0, FOREVER);
    size_t got = 0;
    while (got < bound && alloc_one(f, size, align)) got++;
    CHECK(got < bound, "%s(%zu): %zu allocations with every mmap failing, none refused", afn_name[f], size, got);
    CHECK(hak_os_fault_hits(HAK_OS_FAULT_MAP) > hits0, "no mmap was failed");
    printf("   %zu served, then ENOMEM\n", got);
    check_all("after the refusal");
    // a second and third refusal: the failure left no half-made state behind
    CHECK(alloc_one(f, size, align) == NULL, "refused once, then served with mmap still failing");
    disarm();
    // few enough big ones that freeing them all stays within the pool's bound (HAKMEM_SS_POOL,
    // 32 SuperSlabs), beyond which empty SuperSlabs are unmapped, not kept for reuse
    int again = size > 64 * KiB ? 16 : 64;
    for (int i = 0; i < again; i++) CHECK(alloc_one(f, size, align) != NULL, "%s(%zu) failed after the fault was lifted", afn_name[f], size);
    check_all("after recovery");
    size_t n = nlive;
    free_all();
    hak_os_fault_set(HAK_OS_FAULT_MAP, 0, FOREVER);
    for (size_t i = 0; i < n; i++)
        CHECK(alloc_one(f, size, align) != NULL, "%s(%zu): block %zu of %zu freed ones not reused with mmap failing",
              afn_name[f], size, i, n);
    disarm();
    check_all("after reuse");
    free_all();
}

/* ---- cases ----------------------------------------------------------------------------- */

static void case_small(void) {
    size_t sizes[] = {200, 1024};  // a few thousand blocks each: quick under ASan and TSan too
    for (unsigned i = 0; i < sizeof sizes / sizeof sizes[0]; i++) exhaust_cycle(A_MALLOC, sizes[i], 0);
}

static void case_mid(void) {
    size_t sizes[] = {1025, 6000, 48 * KiB, 300 * KiB, MiB};
    for (unsigned i = 0; i < sizeof sizes / sizeof sizes[0]; i++) exhaust_cycle(A_MALLOC, sizes[i], 0);
}

static void case_calloc(void) {
    exhaust_cycle(A_CALLOC, 200, 0);
    exhaust_cycle(A_CALLOC, 100 * KiB, 0);
    // large: a fresh mapping refused; one from the BigCache (dirty, then cleared) served
    hak_trim(0);
    hak_os_fault_set(HAK_OS_FAULT_MAP, 0, FOREVER);
    CHECK(alloc_one(A_CALLOC, 3 * MiB, 0) == NULL, "calloc(3 MiB) served with mmap failing");
    disarm();
    CHECK(alloc_one(A_MALLOC, 3 * MiB, 0) != NULL, "malloc(3 MiB) after the fault");
    free_all();  // into the BigCache, holding the pattern
    hak_os_fault_set(HAK_OS_FAULT_MAP, 0, FOREVER);
    CHECK(alloc_one(A_CALLOC, 3 * MiB, 0) != NULL, "calloc(3 MiB) not served from the BigCache with mmap failing");
    disarm();
    free_all();
}

static void case_aligned(void) {
    exhaust_cycle(A_ALIGNED_ALLOC, 100, 64);
    exhaust_cycle(A_POSIX_MEMALIGN, 5000, 4096);
    exhaust_cycle(A_MEMALIGN, 20 * KiB, 32 * KiB);
    // over-aligned: past the slab alignment, a mapping of its own each time
    size_t aligns[] = {128 * KiB, 2 * MiB, 8 * MiB};
    for (afn_t f = A_ALIGNED_ALLOC; f <= A_MEMALIGN; f++)
        for (unsigned i = 0; i < 3; i++) {
            hak_trim(0);
            hak_os_fault_set(HAK_OS_FAULT_MAP, 0, FOREVER);
            CHECK(alloc_one(f, 1000, aligns[i]) == NULL, "%s(%zu) served with mmap failing", afn_name[f], aligns[i]);
            disarm();
            CHECK(alloc_one(f, 1000, aligns[i]) != NULL, "%s(%zu) after the fault", afn_name[f], aligns[i]);
        }
    check_all("over-aligned");
    free_all();
    CHECK(hak_os_fault_hits(HAK_OS_FAULT_MAP) > 0, "no mmap was failed");
}

static void case_large(void) {
    hak_trim(0);
    hak_os_fault_set(HAK_OS_FAULT_MAP, 0, FOREVER);
    size_t sizes[] = {MiB + 1, 3 * MiB, 10 * MiB, 80 * MiB};
    for (unsigned i = 0; i < 4; i++) CHECK(alloc_one(A_MALLOC, sizes[i], 0) == NULL, "malloc(%zu) served with mmap failing", sizes[i]);
    disarm();
    for (unsigned i = 0; i < 4; i++) CHECK(alloc_one(A_MALLOC, sizes[i], 0) != NULL, "malloc(%zu) after the fault", sizes[i]);
    check_all("large, recovered");
    free_all();  // the three below 64 MiB go to the BigCache
    hak_os_fault_set(HAK_OS_FAULT_MAP, 0, FOREVER);
    for (unsigned i = 0; i < 3; i++)
        CHECK(alloc_one(A_MALLOC, sizes[i], 0) != NULL, "malloc(%zu) not served from the BigCache with mmap failing", sizes[i]);
    CHECK(alloc_one(A_MALLOC, sizes[3], 0) == NULL, "malloc(80 MiB) served with mmap failing");
    disarm();
    free_all();
    // one failure with blocks cached: the BigCache gives its blocks back, the retry maps
    // (80 MiB: above the classes, so no cached block can be grown for it instead)
    hak_info_t in;
    hak_info(&in);
    CHECK(in.large_cached_bytes > 0, "the BigCache is empty");
    uint64_t hits = hak_os_fault_hits(HAK_OS_FAULT_MAP);
    hak_os_fault_set(HAK_OS_FAULT_MAP, 0, 1);
    CHECK(alloc_one(A_MALLOC, 80 * MiB, 0) != NULL, "malloc(80 MiB) not retried after the BigCache was reclaimed");
    CHECK(errno == 4321, "a malloc that succeeded on the retry changed errno to %d (alloc_one set 4321)", errno);
    CHECK(hak_os_fault_hits(HAK_OS_FAULT_MAP) == hits + 1, "the injected failure was not met");
    hak_info(&in);
    CHECK(in.large_cached_bytes == 0, "the BigCache still holds %zu bytes after a failed mmap", in.large_cached_bytes);
    free_all();
}

static void case_realloc(void) {
    // small into large: a fresh mapping refused, the block untouched
    hak_trim(0);
    CHECK(alloc_one(A_MALLOC, 700, 0) != NULL, "malloc(700)");
    hak_os_fault_set(HAK_OS_FAULT_MAP, 0, FOREVER);
    size_t targets[] = {3 * MiB, 9 * MiB};
    for (unsigned i = 0; i < 2; i++) {
        errno = 0;
        void *q = hak_realloc(live[0].p, targets[i]);
        CHECK(q == NULL && errno == ENOMEM, "realloc(700 -> %zu) with mmap failing: %p, errno %d", targets[i], q, errno);
        check_all("after a refused realloc");
    }
    // small into mid, mid into mid: exhaust the mid tier first, then grow into it
    disarm();
    // large growing: mremap in place refused, then the move refused (reserve, or mremap)
    free_all();
    CHECK(alloc_one(A_MALLOC, 3 * MiB, 0) != NULL, "malloc(3 MiB)");
    blk_t *b = &live[0];
    struct {
        hak_os_fault_kind_t kind;
        uint64_t count;
        int ok;
    } steps[] = {
        {HAK_OS_FAULT_REMAP, FOREVER, 0},  // neither in place nor moved
        {HAK_OS_FAULT_MAP, FOREVER, 0},    // no reservation to move to (in place may work: not armed alone)
        {HAK_OS_FAULT_REMAP, 1, 1},        // in place refused, the move works
    };
    size_t size = 3 * MiB;
    for (unsigned s = 0; s < 3; s++) {
        size_t to = size + 7 * MiB;
        hak_os_fault_set(steps[s].kind, 0, steps[s].count);
        if (steps[s].kind == HAK_OS_FAULT_MAP) hak_os_fault_set(HAK_OS_FAULT_REMAP, 0, FOREVER);
        shadow_remove(&set, b->p);
        errno = 0;
        unsigned char *q = hak_realloc(b->p, to);
        int err = errno;
        disarm();
        if (!steps[s].ok) {
            CHECK(q == NULL && err == ENOMEM, "step %u: realloc(%zu -> %zu) = %p, errno %d", s, size, to, (void *)q, err);
            shadow_insert(&set, b->p, hak_usable_size(b->p), b->id);
            shadow_check(b->p, b->size, b->size, b->id, "after a refused large realloc");
            continue;
        }
        CHECK(q != NULL, "step %u: realloc(%zu -> %zu) failed (errno %d)", s, size, to, err);
        shadow_check(q, b->size, b->size, b->id, "realloc's move");
        b->p = q;
        b->size = to;
        shadow_insert(&set, q, hak_usable_size(q), b->id);
        shadow_fill(q, to, b->id);
        size = to;
    }
    // large shrinking with munmap failing: the block keeps its size, nothing is lost
    hak_os_fault_set(HAK_OS_FAULT_UNMAP, 0, FOREVER);
    shadow_remove(&set, b->p);
    unsigned char *q = hak_realloc(b->p, 4 * MiB);
    disarm();
    CHECK(q != NULL, "shrinking realloc failed");
    shadow_check(q, b->size, 4 * MiB, b->id, "a shrink with munmap failing");
    CHECK(hak_usable_size(q) >= 4 * MiB, "usable size %zu", hak_usable_size(q));
    b->p = q;
    b->size = 4 * MiB;
    shadow_insert(&set, q, hak_usable_size(q), b->id);
    shadow_fill(q, b->size, b->id);  // the sample of a 4 MiB block
    check_all("after the shrink");
    free_all();
    CHECK(hak_os_fault_hits(HAK_OS_FAULT_MAP) && hak_os_fault_hits(HAK_OS_FAULT_REMAP) &&
              hak_os_fault_hits(HAK_OS_FAULT_UNMAP),
          "a fault kind was never met: map %llu remap %llu unmap %llu", (unsigned long long)hak_os_fault_hits(HAK_OS_FAULT_MAP),
          (unsigned long long)hak_os_fault_hits(HAK_OS_FAULT_REMAP), (unsigned long long)hak_os_fault_hits(HAK_OS_FAULT_UNMAP));
}

// Small and mid into a tier with no free memory: fill the target class's free memory first.
static void case_realloc_tiers(void) {
    size_t from[] = {100, 100, 20 * KiB}, to[] = {2000, 200 * KiB, 600 * KiB};
    for (unsigned i = 0; i < 3; i++) {
        hak_trim(0);
        CHECK(alloc_one(A_MALLOC, from[i], 0) != NULL, "malloc(%zu)", from[i]);
        size_t keep = nlive - 1;
        hak_os_fault_set(HAK_OS_FAULT_MAP, 0, FOREVER);
        while (alloc_one(A_MALLOC, to[i], 0)) {}  // the target tier is now full
        shadow_remove(&set, live[keep].p);
        errno = 0;
        void *q = hak_realloc(live[keep].p, to[i]);
        CHECK(q == NULL && errno == ENOMEM, "realloc(%zu -> %zu) with the tier full and mmap failing: %p, errno %d", from[i],
              to[i], q, errno);
        shadow_insert(&set, live[keep].p, hak_usable_size(live[keep].p), live[keep].id);
        disarm();
        shadow_remove(&set, live[keep].p);
        q = hak_realloc(live[keep].p, to[i]);
        CHECK(q != NULL, "realloc(%zu -> %zu) after the fault", from[i], to[i]);
        shadow_check(q, live[keep].size, live[keep].size, live[keep].id, "realloc's copy after the fault");
        live[keep].p = q;
        live[keep].size = to[i];
        shadow_insert(&set, q, hak_usable_size(q), live[keep].id);
        shadow_fill(q, to[i], live[keep].id);
        check_all("tiers");
        free_all();
    }
}

// madvise(MADV_DONTNEED) failing during trim and decay: nothing live changes, freed memory
// is served again, calloc still zeroes.
static void case_purge(void) {
    for (int i = 0; i < 400; i++) CHECK(alloc_one(A_MALLOC, (i % 2) ? 40 * KiB : 300, 0), "malloc");
    for (size_t i = nlive; i-- > 0;)
        if (i % 3 == 0) free_at(i);  // a third, of both sizes: free slabs and free mid blocks
    for (int i = 0; i < 8; i++) CHECK(alloc_one(A_MALLOC, 3 * MiB + i * MiB, 0), "malloc large");
    for (int i = 0; i < 4; i++) free_at(nlive - 1);
    hak_os_fault_set(HAK_OS_FAULT_PURGE, 0, FOREVER);
    hak_trim(0);
    CHECK(hak_os_fault_hits(HAK_OS_FAULT_PURGE) > 0, "trim purged nothing: no madvise was failed");
    check_all("after trim with madvise failing");
    for (int i = 0; i < 200; i++) CHECK(alloc_one(i % 3 ? A_CALLOC : A_MALLOC, (i % 2) ? 40 * KiB : 300, 0), "malloc after trim");
    hak_trim(0);
    disarm();
    check_all("after the second trim");
    free_all();
    hak_trim(0);
    for (int i = 0; i < 100; i++) CHECK(alloc_one(A_CALLOC, 40 * KiB, 0), "calloc after recovery");
    free_all();
}

// munmap failing while trimming and freeing: the ranges stay mapped (leaked), nothing else.
static void case_unmap(void) {
    for (int i = 0; i < 300; i++) CHECK(alloc_one(A_MALLOC, i % 2 ? 200 * KiB : 64, 0), "malloc");
    for (int i = 0; i < 4; i++) CHECK(alloc_one(A_MALLOC, 70 * MiB + i * MiB, 0), "malloc above the BigCache");
    hak_os_fault_set(HAK_OS_FAULT_UNMAP, 0, FOREVER);
    free_all();  // the four above 64 MiB are unmapped at once: refused
    hak_trim(0);
    CHECK(hak_os_fault_hits(HAK_OS_FAULT_UNMAP) > 0, "no munmap was failed");
    disarm();
    for (int i = 0; i < 300; i++) CHECK(alloc_one(A_MALLOC, i % 2 ? 200 * KiB : 64, 0), "malloc after the fault");
    for (int i = 0; i < 4; i++) CHECK(alloc_one(A_MALLOC, 70 * MiB + i * MiB, 0), "malloc large after the fault");
    check_all("after munmap failures");
    free_all();
}

// The Nth mmap from the very first call fails, for N = 0..15, each in a fresh child (the
// parent never calls hakmem): metadata pools, registry leaves, SuperSlabs and large blocks
// each meet a failure while half set up. Every call answers a block or ENOMEM; once lifted,
// every tier works and the model agrees.
static void first_calls(uint64_t skip) {
    hak_os_fault_set(HAK_OS_FAULT_MAP, skip, 1);
    size_t sizes[] = {16, 1000, 5000, 200 * KiB, 3 * MiB, 100, 1 * MiB, 50 * MiB};
    for (int round = 0; round < 2; round++)
        for (unsigned i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            alloc_one(A_MALLOC, sizes[i], 0);
            alloc_one(A_CALLOC, sizes[i], 0);
            alloc_one(A_POSIX_MEMALIGN, sizes[i], 4 * MiB);
        }
    disarm();
    for (unsigned i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        CHECK(alloc_one(A_MALLOC, sizes[i], 0) != NULL, "skip %llu: malloc(%zu) after the fault", (unsigned long long)skip,
              sizes[i]);
    check_all("first calls");
    free_all();
    CHECK(hak_os_fault_hits(HAK_OS_FAULT_MAP) == 1, "skip %llu: the failure was not met", (unsigned long long)skip);
}

static void case_first(void) {
    for (uint64_t skip = 0; skip < 16; skip++) {
        fflush(stdout);
        pid_t pid = fork();
        CHECK(pid >= 0, "fork");
        if (pid == 0) {
            first_calls(skip);
            _exit(0);
        }
        int st;
        CHECK(waitpid(pid, &st, 0) == pid, "waitpid");
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "skip %llu: the child failed (status 0x%x)", (unsigned long long)skip, st);
    }
}

/* A cached block grown for a larger request: with mremap refused, it goes back to the OS and
 * a fresh block is mapped. The malloc succeeds and leaves errno as it found it. */
static void case_grow(void) {
    hak_trim(0);
    CHECK(alloc_one(A_MALLOC, MiB + 1, 0) != NULL, "malloc(1 MiB + 1)");
    free_all();  // into the BigCache: the only block there, smaller than the next request
    hak_info_t in;
    hak_info(&in);
    CHECK(in.large_cached_bytes == MiB + 256 * 1024, "cached %zu, expected one 1.25 MiB block", in.large_cached_bytes);
    hak_os_fault_set(HAK_OS_FAULT_REMAP, 0, FOREVER);
    CHECK(alloc_one(A_MALLOC, 3 * MiB, 0) != NULL, "malloc(3 MiB) with mremap failing");
    CHECK(errno == 4321, "a malloc whose growth failed but which succeeded changed errno to %d", errno);
    disarm();
    CHECK(hak_os_fault_hits(HAK_OS_FAULT_REMAP) > 0, "no mremap was failed: the cached block was not grown");
    hak_info(&in);
    CHECK(in.large_cached_bytes == 0, "the block that could not grow is still cached (%zu bytes)", in.large_cached_bytes);
    check_all("grow refused");
    free_all();
    // and the growth itself, unrefused: the 3 MiB block is grown to 5 MiB
    CHECK(alloc_one(A_MALLOC, 5 * MiB, 0) != NULL && errno == 4321, "malloc(5 MiB) from a grown block, errno %d", errno);
    check_all("grown");
    free_all();
}

typedef struct {
    const char *name;
    void (*fn)(void);
} case_t;

int main(int argc, char **argv) {
    static const case_t cases[] = {
        {"small", case_small},     {"mid", case_mid},         {"large", case_large},
        {"aligned", case_aligned}, {"calloc", case_calloc},   {"realloc", case_realloc},
        {"realloc_tiers", case_realloc_tiers}, {"purge", case_purge}, {"unmap", case_unmap},
        {"first", case_first},     {"grow", case_grow},
    };
    setvbuf(stdout, NULL, _IONBF, 0);
    int ran = 0;
    for (unsigned i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (argc > 1 && strcmp(argv[1], cases[i].name) != 0) continue;
        printf("-- %s\n", cases[i].name);
        cases[i].fn();
        CHECK(shadow_count(&set) == 0, "%zu blocks left in the model", shadow_count(&set));
        printf("-- %s: ok\n", cases[i].name);
        ran++;
    }
    if (!ran) {
        fprintf(stderr, "unknown case '%s'\n", argv[1]);
        return 2;
    }
    return 0;
}
