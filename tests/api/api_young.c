/* api_young.c -- young classes (HAKMEM_YOUNG, tls/hak_tls.c): a heap's first blocks of each
 * class under 256 B come from the 256 B class, and those of the classes between 256 and
 * 512 B from the 512 B class; only after HAKMEM_YOUNG (8) of them does the class get spans
 * of its own. The blocks are real blocks of the larger class: aligned to it, writable to
 * its size, freed (locally, remotely, by realloc) like any other, and the count is per heap
 * and per class. Each case runs in its own process, on a heap nothing else has used. */
#include <pthread.h>

#include "test_util.h"

/* The class size that serves a request of n bytes once its class is grown up. */
static size_t class_size(size_t n) { return hak_sc_size((unsigned)hak_sc_of(n)); }

/* Takes k blocks of n bytes and checks that each is a young block of young_size (aligned
 * to it, distinct, writable to its size). Returns them in out. */
static void take_young(size_t n, size_t young_size, unsigned k, void **out) {
    for (unsigned i = 0; i < k; i++) {
        void *p = hak_malloc(n);
        CHECK(p != NULL, "malloc(%zu) #%u returned NULL", n, i);
        size_t u = hak_usable_size(p);
        CHECK(u == young_size, "malloc(%zu) #%u: usable %zu, expected the young class's %zu", n, i, u,
              young_size);
        CHECK(((uintptr_t)p & (young_size - 1)) == 0, "malloc(%zu) #%u = %p, not aligned to %zu", n, i, p,
              young_size);
        fill_pat(p, u, (uint32_t)(n * 100 + i));
        for (unsigned j = 0; j < i; j++) CHECK(out[j] != p, "malloc(%zu) #%u returned #%u's block %p", n, i, j, p);
        out[i] = p;
    }
}

/* The next malloc(n) is the class's own block: the class has grown up. */
static void expect_own(size_t n, const char *when) {
    void *p = hak_malloc(n);
    CHECK(p && hak_usable_size(p) == class_size(n), "%s: malloc(%zu) usable %zu, expected the class's %zu", when, n,
          p ? hak_usable_size(p) : 0, class_size(n));
    hak_free(p);
}

static void check_and_free(void **ps, unsigned k, size_t n) {
    for (unsigned i = 0; i < k; i++) {
        size_t u = hak_usable_size(ps[i]);
        size_t bad = find_bad_pat(ps[i], 0, u, (uint32_t)(n * 100 + i));
        CHECK(bad == SIZE_MAX, "young block %p of malloc(%zu) #%u overwritten at byte %zu", ps[i], n, i, bad);
        hak_free(ps[i]);
    }
}

/* Default HAKMEM_YOUNG (8): 8 young blocks per class, then the class's own; counted. */
static void t_first_blocks(void) {
    static const struct { size_t n, young; } cases[] = {{1, 256}, {48, 256}, {129, 256}, {200, 256},
                                                       {300, 512}, {448, 512}};
    for (unsigned c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t n = cases[c].n;
        void *young[8];
        uint64_t y0 = hak_stat("alloc_young");
        take_young(n, cases[c].young, 8, young);
        if (TEST_STATS)
            CHECK(hak_stat("alloc_young") - y0 == 8, "alloc_young grew by %" PRIu64 " for 8 young blocks of %zu",
                  hak_stat("alloc_young") - y0, n);
        // the 9th is the class's own, and so is every later one, the young ones freed or not
        void *own[40];
        for (unsigned i = 0; i < 40; i++) {
            own[i] = hak_malloc(n);
            CHECK(own[i] && hak_usable_size(own[i]) == class_size(n), "malloc(%zu) #%u: usable %zu, expected %zu",
                  n, 8 + i, own[i] ? hak_usable_size(own[i]) : 0, class_size(n));
            if (i == 20) check_and_free(young, 8, n);
        }
        for (unsigned i = 0; i < 40; i++) hak_free(own[i]);
        expect_own(n, "after the frees");
    }
}

/* 256 B, 512 B and every class above 448 B are never young; nor is a 256 B block's class
 * counted. */
static void t_not_young(void) {
    static const size_t sizes[] = {256, 512, 513, 640, 1024, 4096, 100000};
    uint64_t y0 = hak_stat("alloc_young");
    for (unsigned i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        void *p = hak_malloc(sizes[i]);
        CHECK(p && hak_usable_size(p) == class_size(sizes[i]), "malloc(%zu): usable %zu, expected %zu", sizes[i],
              p ? hak_usable_size(p) : 0, class_size(sizes[i]));
        hak_free(p);
    }
    CHECK(hak_stat("alloc_young") == y0, "alloc_young moved for classes that are never young");
}

/* HAKMEM_YOUNG=2 (set by the CMakeLists): two young blocks, then the class's own. */
static void t_count(void) {
    void *y[2];
    take_young(48, 256, 2, y);
    expect_own(48, "the third with HAKMEM_YOUNG=2");
    check_and_free(y, 2, 48);
}

/* HAKMEM_YOUNG=0 (set by the CMakeLists): no young blocks at all. */
static void t_off(void) {
    static const size_t sizes[] = {1, 48, 200, 300, 448};
    for (unsigned i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        void *p = hak_malloc(sizes[i]);
        CHECK(p && hak_usable_size(p) == class_size(sizes[i]), "HAKMEM_YOUNG=0: malloc(%zu): usable %zu, expected %zu",
              sizes[i], p ? hak_usable_size(p) : 0, class_size(sizes[i]));
        hak_free(p);
    }
    CHECK(hak_stat("alloc_young") == 0, "alloc_young is %" PRIu64 " with HAKMEM_YOUNG=0", hak_stat("alloc_young"));
}

static void *young_thread(void *arg) {
    void **out = arg;
    // a new heap (no thread has exited, so there is no orphan to adopt) is young again: its
    // own count, whatever the main thread took
    take_young(48, 256, 8, out);
    return NULL;
}

/* Per heap: a second thread gets young blocks of a class the main thread has grown up; the
 * main thread frees them (remote frees into the other heap) and reallocs its own. */
static void t_threads(void) {
    void *mine[8];
    take_young(48, 256, 8, mine);
    expect_own(48, "the main thread's ninth");
    void *theirs[8];
    pthread_t t;
    CHECK(pthread_create(&t, NULL, young_thread, theirs) == 0, "pthread_create");
    CHECK(pthread_join(t, NULL) == 0, "pthread_join");
    check_and_free(theirs, 8, 48);
    // realloc of a young block: in place while it fits the 256 B block, moved beyond
    fill_pat(mine[0], 48, 7);
    void *q = hak_realloc(mine[0], 250);
    CHECK(q == mine[0], "realloc(young block, 250) moved it (%p -> %p) though 256 bytes fit", mine[0], q);
    q = hak_realloc(q, 700);
    CHECK(q != NULL && hak_usable_size(q) >= 700, "realloc(young block, 700)");
    CHECK(find_bad_pat(q, 0, 48, 7) == SIZE_MAX, "realloc lost the young block's bytes");
    hak_free(q);
    for (unsigned i = 1; i < 8; i++) hak_free(mine[i]);
    // a freed young block is a 256 B block: the thread cache hands it out again for 256
    void *last = mine[7];
    void *r = hak_malloc(256);
    CHECK(r == last, "malloc(256) after freeing young block %p returned %p, not the block", last, r);
    hak_free(r);
    // an aligned request of a young class (64 B, not used here before) gets a 256 B block,
    // aligned enough
    void *a = hak_aligned_alloc(64, 64);
    CHECK(a && ((uintptr_t)a & 63) == 0 && hak_usable_size(a) == 256, "aligned_alloc(64, 64) = %p, usable %zu", a,
          a ? hak_usable_size(a) : 0);
    hak_free(a);
}

static const test_case_t cases[] = {
    {"first_blocks", t_first_blocks},
    {"not_young", t_not_young},
    {"count", t_count},
    {"off", t_off},
    {"threads", t_threads},
};

int main(int argc, char **argv) { return run_cases(argc, argv, cases, sizeof cases / sizeof cases[0]); }
