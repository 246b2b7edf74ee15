/* api_fork.c -- fork() first gives back the forking thread's free memory (HAKMEM_FORK_TRIM,
 * tls/hak_tls.c: hak_tls_fork_trim), and a fork child's classes start young again.
 *
 *   trim         blocks of 4 KiB and of 64 B are written and freed, all but the first 4 KiB
 *                one (half of the others stay in the thread cache, and their span does not
 *                empty); after fork() none of the freed blocks' pages is resident, in the
 *                parent or in the child (mincore), and trim_fork counted one.
 *   trim_big     3 MiB of live blocks besides, so that the heap has more than one SuperSlab
 *                and the trim skips its walk of the free lists (no block bytes purged); every
 *                block freed, so that their spans empty: their pages go all the same.
 *   trim_pool    4 MiB of 4 KiB blocks, all freed: whole SuperSlabs empty and go to the pool,
 *                which keeps its newest ones' pages for reuse; the trim purges them too.
 *   again        a second and a third fork right after the first trim nothing (once per
 *                HAKMEM_DECAY_MS), the child of each fork is young again all the same, and
 *                a child's own first fork trims.
 *   off          HAKMEM_FORK_TRIM=0: the same blocks stay resident across the fork (so
 *                `trim` sees the trim, not something else).
 *   live         live blocks of every tier, between freed ones, keep their bytes across the
 *                trim in both processes, and both allocate, free and reuse normally after.
 *   young_child  the parent's young count for a class is spent; the child's next blocks of
 *                that class are young again, the parent's are not.
 *
 * HAKMEM_PURGE_THREAD=0 (set by the CMakeLists): nothing else purges during a case. */
#include <sys/mman.h>

#include "test_util.h"

enum { BIG = 4096, NBIG = 64, SMALL = 64, NSMALL = 2048 };
static void *big[NBIG], *small[NSMALL];
static unsigned big_kept;  // big[0 .. big_kept) stay live

/* Pages of [p, p + n) resident now. */
static size_t resident_pages(const void *p, size_t n) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    uintptr_t lo = (uintptr_t)p & ~(page - 1), hi = ((uintptr_t)p + n + page - 1) & ~(page - 1);
    unsigned char vec[64];
    size_t count = 0;
    for (uintptr_t a = lo; a < hi; a += 64 * page) {
        size_t len = hi - a < 64 * page ? hi - a : 64 * page;
        CHECK(mincore((void *)a, len, vec) == 0, "mincore(%p, %zu): %s", (void *)a, len, strerror(errno));
        for (size_t i = 0; i < (len + page - 1) / page; i++) count += vec[i] & 1u;
    }
    return count;
}

/* The pages that the freed blocks of big[] and small[] held whole and still hold. The small
 * ones are counted a page per 64 blocks from small[64] on (the first 8 are young 256 B
 * blocks, whose span other young blocks may share), and every one of them was freed, so each
 * page counted is one of theirs. */
static size_t freed_resident(void) {
    size_t n = 0;
    for (unsigned i = big_kept; i < NBIG; i++) n += resident_pages(big[i], BIG);
    for (unsigned i = 64; i < NSMALL; i += 64) n += resident_pages(small[i], SMALL);
    return n;
}

/* Writes NBIG blocks of 4 KiB and NSMALL of 64 B, then frees them all. Returns their pages
 * resident after the frees (all of them: nothing has purged yet). */
static size_t write_and_free(void) {
    for (unsigned i = 0; i < NBIG; i++) {
        big[i] = hak_malloc(BIG);
        CHECK(big[i] != NULL, "malloc(%d)", BIG);
        memset(big[i], 0xa5, BIG);
    }
    for (unsigned i = 0; i < NSMALL; i++) {
        small[i] = hak_malloc(SMALL);
        CHECK(small[i] != NULL, "malloc(%d)", SMALL);
        memset(small[i], 0x5a, SMALL);
    }
    for (unsigned i = big_kept; i < NBIG; i++) hak_free(big[i]);
    for (unsigned i = 0; i < NSMALL; i++) hak_free(small[i]);
    size_t before = freed_resident();
    CHECK(before >= NBIG - big_kept, "only %zu pages of %d written 4 KiB blocks are resident before the fork", before, NBIG);
    return before;
}

/* fork() (test_util.h: run_in_child, with its alarm); the child runs child_fn, whose CHECKs
 * exit 1; the parent checks that it exited 0, and shows what it wrote if not. */
static void fork_and_check(void (*child_fn)(void *)) {
    static char out[4096];
    int status = run_in_child(child_fn, NULL, out, sizeof out);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child failed (status 0x%x): %s", status, out);
}

static void child_nothing_resident(void *arg) {
    (void)arg;
    size_t n = freed_resident();
    CHECK(n == 0, "child: %zu pages of the blocks freed before the fork are resident", n);
}

/* Forks after write_and_free (which found before pages resident): nothing of the freed
 * blocks is resident afterwards in either process, and trim_fork counted the fork. */
static void fork_expect_trimmed(size_t before) {
    uint64_t f0 = hak_stat("trim_fork");
    fork_and_check(child_nothing_resident);
    size_t after = freed_resident();
    CHECK(after == 0, "%zu of the %zu resident pages of freed blocks are resident after the fork", after, before);
    if (TEST_STATS)
        CHECK(hak_stat("trim_fork") - f0 == 1, "trim_fork grew by %" PRIu64 " for one fork",
              hak_stat("trim_fork") - f0);
}

static void t_trim(void) {
    big_kept = 1;
    fork_expect_trimmed(write_and_free());
    CHECK(big[0] != NULL && ((unsigned char *)big[0])[BIG - 1] == 0xa5, "the live 4 KiB block lost its bytes");
}

enum { KEEP = 8192, NKEEP = 384 };  // 3 MiB: a heap of two SuperSlabs
static void *keep[NKEEP];

static void t_trim_big(void) {
    uint64_t b0 = hak_stat("ss_purge_block_bytes");
    for (unsigned i = 0; i < NKEEP; i++) {
        keep[i] = hak_malloc(KEEP);
        CHECK(keep[i] != NULL, "malloc(%d)", KEEP);
        fill_pat(keep[i], KEEP, i);
    }
    hak_info_t info;
    hak_info(&info);
    CHECK(info.ss_bytes > ((size_t)2 << 20), "the heap has %zu bytes of SuperSlabs, not more than one", info.ss_bytes);
    fork_expect_trimmed(write_and_free());
    CHECK(hak_stat("ss_purge_block_bytes") == b0, "the trim of a heap of several SuperSlabs purged %" PRIu64
          " bytes inside free blocks (it walks no free list there)", hak_stat("ss_purge_block_bytes") - b0);
    for (unsigned i = 0; i < NKEEP; i++) {
        CHECK(find_bad_pat(keep[i], 0, KEEP, i) == SIZE_MAX, "live block %p changed across the fork", keep[i]);
        hak_free(keep[i]);
    }
}

enum { NPOOL = 1024 };  // 4 MiB of 4 KiB blocks: 512 fill a SuperSlab
static void *pooled[NPOOL];

static size_t pooled_resident(void) {
    size_t n = 0;
    for (unsigned i = 0; i < NPOOL; i++) n += resident_pages(pooled[i], BIG);
    return n;
}

static void child_pool(void *arg) {
    (void)arg;
    size_t n = pooled_resident();
    CHECK(n == 0, "child: %zu pages of the freed 4 KiB blocks are resident", n);
}

static void t_trim_pool(void) {
    for (unsigned i = 0; i < NPOOL; i++) {
        pooled[i] = hak_malloc(BIG);
        CHECK(pooled[i] != NULL, "malloc(%d)", BIG);
        memset(pooled[i], 0x3c, BIG);
    }
    for (unsigned i = 0; i < NPOOL; i++) hak_free(pooled[i]);
    size_t before = pooled_resident();
    CHECK(before >= NPOOL, "only %zu pages of %d freed 4 KiB blocks resident before the fork", before, NPOOL);
    uint64_t p0 = hak_stat("ss_release_pool");
    fork_and_check(child_pool);
    size_t after = pooled_resident();
    CHECK(after == 0, "%zu of %zu pages of the freed 4 KiB blocks resident after the fork", after, before);
    if (TEST_STATS)
        CHECK(hak_stat("ss_release_pool") - p0 >= 1, "no SuperSlab went to the pool: the case tests nothing");
}

static size_t off_before;
static void child_all_resident(void *arg) {
    (void)arg;
    size_t n = freed_resident();
    CHECK(n == off_before, "child: %zu pages of freed blocks resident, %zu before the fork", n, off_before);
}

static void t_off(void) {
    off_before = write_and_free();
    fork_and_check(child_all_resident);
    size_t after = freed_resident();
    CHECK(after == off_before, "HAKMEM_FORK_TRIM=0: %zu pages of freed blocks resident after the fork, %zu before",
          after, off_before);
    CHECK(hak_stat("trim_fork") == 0, "trim_fork is %" PRIu64 " with HAKMEM_FORK_TRIM=0", hak_stat("trim_fork"));
}

static const size_t live_sizes[] = {16, 48, 100, 256, 700, 1500, 4096, 9000, 20000, 70000, 300000, 3000000};
enum { NLIVE = sizeof live_sizes / sizeof live_sizes[0], PER = 24 };
static void *live[NLIVE][PER];

static void check_live(const char *who) {
    for (unsigned s = 0; s < NLIVE; s++)
        for (unsigned i = 0; i < PER; i += 2) {
            size_t bad = find_bad_pat(live[s][i], 0, live_sizes[s], (uint32_t)(s * 1000 + i));
            CHECK(bad == SIZE_MAX, "%s: live block %p of %zu bytes changed at byte %zu", who, live[s][i], live_sizes[s],
                  bad);
        }
}

/* After the fork: every class hands out blocks again (some of them the ones purged), and
 * they hold what is written into them. */
static void use_again(const char *who) {
    for (unsigned s = 0; s < NLIVE; s++)
        for (unsigned i = 1; i < PER; i += 2) {
            live[s][i] = hak_malloc(live_sizes[s]);
            CHECK(live[s][i] != NULL, "%s: malloc(%zu) after the fork", who, live_sizes[s]);
            fill_pat(live[s][i], live_sizes[s], (uint32_t)(s * 1000 + i));
        }
    for (unsigned s = 0; s < NLIVE; s++)
        for (unsigned i = 0; i < PER; i++) {
            size_t bad = find_bad_pat(live[s][i], 0, live_sizes[s], (uint32_t)(s * 1000 + i));
            CHECK(bad == SIZE_MAX, "%s: block %p of %zu bytes changed at byte %zu", who, live[s][i], live_sizes[s], bad);
            hak_free(live[s][i]);
        }
}

static void child_live(void *arg) {
    (void)arg;
    check_live("child");
    use_again("child");
}

static void t_live(void) {
    for (unsigned s = 0; s < NLIVE; s++)
        for (unsigned i = 0; i < PER; i++) {
            live[s][i] = hak_malloc(live_sizes[s]);
            CHECK(live[s][i] != NULL, "malloc(%zu)", live_sizes[s]);
            fill_pat(live[s][i], live_sizes[s], (uint32_t)(s * 1000 + i));
        }
    for (unsigned s = 0; s < NLIVE; s++)
        for (unsigned i = 1; i < PER; i += 2) hak_free(live[s][i]);
    fork_and_check(child_live);
    check_live("parent");
    use_again("parent");
}

enum { YOUNG = 8, YSIZE = 48 };
static size_t own_size(void) { return hak_sc_size((unsigned)hak_sc_of(YSIZE)); }
static void *ychild[YOUNG + 1];

static void child_young(void *arg) {
    (void)arg;
    for (unsigned i = 0; i < YOUNG; i++) {
        ychild[i] = hak_malloc(YSIZE);
        CHECK(ychild[i] && hak_usable_size(ychild[i]) == 256,
              "child: malloc(%d) #%u: usable %zu, expected a young block (256)", YSIZE, i,
              ychild[i] ? hak_usable_size(ychild[i]) : 0);
    }
    ychild[YOUNG] = hak_malloc(YSIZE);
    CHECK(ychild[YOUNG] && hak_usable_size(ychild[YOUNG]) == own_size(),
          "child: malloc(%d) #%d: usable %zu, expected the class's own %zu", YSIZE, YOUNG,
          ychild[YOUNG] ? hak_usable_size(ychild[YOUNG]) : 0, own_size());
    for (unsigned i = 0; i <= YOUNG; i++) hak_free(ychild[i]);
}

static void grandchild(void *arg) { (void)arg; }

/* A child's own first fork trims, though its parent's trim was just now. */
static void child_forks(void *arg) {
    (void)arg;
    uint64_t f0 = hak_stat("trim_fork");
    fork_and_check(grandchild);
    if (TEST_STATS)
        CHECK(hak_stat("trim_fork") - f0 == 1, "child: trim_fork grew by %" PRIu64 " for its first fork",
              hak_stat("trim_fork") - f0);
}

/* The child of the second fork is young again too (the young reset does not depend on the
 * trim), though that fork trims nothing. */
static void t_again(void) {
    void *spent[YOUNG];
    for (unsigned i = 0; i < YOUNG; i++) spent[i] = hak_malloc(YSIZE);  // the parent's young count
    (void)write_and_free();
    uint64_t f0 = hak_stat("trim_fork");
    fork_and_check(child_nothing_resident);
    fork_and_check(child_young);
    fork_and_check(child_forks);
    if (TEST_STATS)
        CHECK(hak_stat("trim_fork") - f0 == 1, "trim_fork grew by %" PRIu64 " for three forks in a row",
              hak_stat("trim_fork") - f0);
    for (unsigned i = 0; i < YOUNG; i++) hak_free(spent[i]);
}

static void t_young_child(void) {
    void *mine[YOUNG];
    for (unsigned i = 0; i < YOUNG; i++) {
        mine[i] = hak_malloc(YSIZE);
        CHECK(mine[i] && hak_usable_size(mine[i]) == 256, "malloc(%d) #%u: usable %zu, expected a young block", YSIZE,
              i, mine[i] ? hak_usable_size(mine[i]) : 0);
    }
    fork_and_check(child_young);
    void *p = hak_malloc(YSIZE);
    CHECK(p && hak_usable_size(p) == own_size(), "parent after the fork: malloc(%d) usable %zu, expected %zu", YSIZE,
          p ? hak_usable_size(p) : 0, own_size());
    hak_free(p);
    for (unsigned i = 0; i < YOUNG; i++) hak_free(mine[i]);
}

static const test_case_t cases[] = {
    {"trim", t_trim},
    {"trim_big", t_trim_big},
    {"trim_pool", t_trim_pool},
    {"again", t_again},
    {"off", t_off},
    {"live", t_live},
    {"young_child", t_young_child},
};

int main(int argc, char **argv) {
    if (sysconf(_SC_PAGESIZE) != 4096) return TEST_SKIP;  // the block sizes assume 4 KiB pages
    return run_cases(argc, argv, cases, sizeof cases / sizeof cases[0]);
}
