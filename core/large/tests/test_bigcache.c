/* test_bigcache.c -- the BigCache through the prefixed API: size classes, hit rate of a
 * replace loop, per-site rings and the class fallback, the byte bound, decay, trim, zeroed
 * and preserved contents, the cache turned off, out-of-memory reclaim, threads and fork.
 * Each case runs in its own process (CTest passes its name); the CMakeLists sets the
 * HAKMEM_* variables a case needs. Counter checks are skipped with HAKMEM_STATS=OFF. */
#include <pthread.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test_util.h"

/* ---- helpers -------------------------------------------------------------------------- */

static size_t cached_bytes(void) {
    hak_info_t in;
    hak_info(&in);
    return in.large_cached_bytes;
}

static void info_sane(const char *when) {
    hak_info_t in;
    hak_info(&in);
    CHECK(in.mapped_bytes == in.ss_bytes + in.large_bytes + in.large_cached_bytes,
          "%s: mapped %zu != ss %zu + large %zu + cached %zu", when, in.mapped_bytes, in.ss_bytes, in.large_bytes,
          in.large_cached_bytes);
    CHECK(in.in_use_bytes >= in.large_bytes && in.free_bytes >= in.large_cached_bytes,
          "%s: in use %zu / large %zu, free %zu / cached %zu", when, in.in_use_bytes, in.large_bytes, in.free_bytes,
          in.large_cached_bytes);
}

static uint64_t stat(const char *name) {
    uint64_t v = hak_stat(name);
    CHECK(v != UINT64_MAX, "unknown counter %s", name);
    return v;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Distinct call sites: the BigCache keys a block by the return address of the hak_malloc
 * call that made it. noinline, and the empty asm after the call keeps it from becoming a
 * tail call (which would hand hak_malloc this function's own return address). */
#define SITE_FN(i)                                                                                 \
    __attribute__((noinline)) static void *site##i(size_t n) {                                    \
        void *p = hak_malloc(n);                                                                   \
        __asm__ volatile("" : : "r"(p) : "memory");                                                \
        return p;                                                                                  \
    }
SITE_FN(0)
SITE_FN(1)
SITE_FN(2)
SITE_FN(3)
SITE_FN(4)
SITE_FN(5)
static void *(*const site_fns[])(size_t) = {site0, site1, site2, site3, site4, site5};
enum { NSITES = sizeof site_fns / sizeof site_fns[0] };

/* Entries of the site table in use: "site": members of the JSON report's large_sites. */
static int site_entries(void) {
    char *buf = test_report(1);
    int n = 0;
    for (const char *s = buf; (s = strstr(s, "\"site\":\"")) != NULL; s++) n++;
    free(buf);
    return n;
}

/* Two call sites whose hashes differ (64 entries: two given sites collide with p = 1/64, so
 * pick among six by watching the report's entry count grow). Needs the counters. */
static void distinct_sites(void *(**a)(size_t), void *(**b)(size_t)) {
    int base = site_entries();
    hak_free(site_fns[0](MiB + 1));
    CHECK(site_entries() == base + 1, "one allocation from a new site did not add a site entry");
    for (int i = 1; i < NSITES; i++) {
        hak_free(site_fns[i](MiB + 1));
        if (site_entries() == base + 2) {
            *a = site_fns[0];
            *b = site_fns[i];
            return;
        }
    }
    CHECK(0, "every site hashed to the first one's entry");
}

/* ---- cases ------------------------------------------------------------------------------ */

/* Usable sizes are the classes: four per doubling above 1 MiB, exact pages above 64 MiB. */
static void t_classes(void) {
    static const struct {
        size_t n, usable;
    } want[] = {
        {MiB + 1, MiB + 256 * KiB},       {MiB + 256 * KiB, MiB + 256 * KiB}, {MiB + 256 * KiB + 1, MiB + 512 * KiB},
        {2 * MiB - 5, 2 * MiB},           {2 * MiB, 2 * MiB},                 {2 * MiB + 1, 2 * MiB + 512 * KiB},
        {3 * MiB, 3 * MiB},               {5 * MiB - 3, 5 * MiB},             {17 * MiB, 20 * MiB},
        {33 * MiB, 40 * MiB},             {64 * MiB, 64 * MiB},               {64 * MiB + 1, 64 * MiB + 4096},
        {100 * MiB + 5, 100 * MiB + 4096},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        char *p = hak_malloc(want[i].n);
        CHECK(p != NULL, "malloc(%zu)", want[i].n);
        CHECK(hak_usable_size(p) == want[i].usable, "malloc(%zu): usable %zu, expected %zu", want[i].n,
              hak_usable_size(p), want[i].usable);
        p[0] = p[want[i].usable - 1] = 1;  // the whole class is usable
        hak_free(p);
        // a fresh request of the same size takes the same block back (above 64 MiB: not cached)
        char *q = hak_malloc(want[i].n);
        CHECK(q != NULL, "malloc(%zu) again", want[i].n);
        if (want[i].n <= 64 * MiB)
            CHECK(q == p, "malloc(%zu) after a free of its class: %p, not the cached %p", want[i].n, (void *)q,
                  (void *)p);
        hak_free(q);
    }
    info_sane("classes");
}

/* The seed's target: a replace loop of 1-3 MiB blocks from one site hits >= 90%. */
static void t_hit_rate(void) {
    enum { SLOTS = 4, OPS = 3000 };
    char *slot[SLOTS] = {0};
    size_t size[SLOTS] = {0};
    char tag[SLOTS] = {0};
    uint64_t rng = 7;
    uint64_t h0 = 0, m0 = 0, map0 = 0;
    for (int op = -400; op < OPS; op++) {  // 400 warm-up ops, then the measured ones
        if (op == 0) {
            h0 = hak_stat("bigcache_hit");
            m0 = hak_stat("bigcache_miss");
            map0 = hak_stat("large_map");
        }
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        int s = (int)((rng >> 33) % SLOTS);
        if (slot[s]) {
            CHECK(slot[s][0] == (char)s && slot[s][size[s] - 1] == tag[s], "slot %d lost its tags", s);
            hak_free(slot[s]);
        }
        size[s] = MiB + (size_t)((rng >> 13) % (2 * MiB));
        slot[s] = site0(size[s]);
        CHECK(slot[s] != NULL, "malloc(%zu)", size[s]);
        for (size_t i = 0; i < size[s]; i += 4096) slot[s][i] = 1;  // touch every page
        slot[s][0] = (char)s;
        slot[s][size[s] - 1] = tag[s] = (char)op;
    }
    for (int s = 0; s < SLOTS; s++) hak_free(slot[s]);
    if (!TEST_STATS) return;
    uint64_t hits = hak_stat("bigcache_hit") - h0, misses = hak_stat("bigcache_miss") - m0;
    uint64_t maps = hak_stat("large_map") - map0;
    printf("   %" PRIu64 " hits, %" PRIu64 " misses, %" PRIu64 " fresh mappings in %d ops\n", hits, misses, maps, OPS);
    CHECK(hits + misses == OPS, "hits + misses = %" PRIu64 " for %d large mallocs", hits + misses, OPS);
    CHECK(hits * 10 >= (hits + misses) * 9, "hit rate %.1f%% < 90%%", 100.0 * (double)hits / (double)(hits + misses));
    info_sane("hit_rate");
}

/* Each site has its own ring: two sites free a block of the same class each, and each gets
 * its own back, although the other's is newer. */
static void t_sites(void) {
    if (!TEST_STATS) exit(TEST_SKIP);  // telling sites apart needs the site report
    void *(*a)(size_t), *(*b)(size_t);
    distinct_sites(&a, &b);
    for (int round = 0; round < 3; round++) {
        char *pa = a(2 * MiB), *pb = b(2 * MiB);
        CHECK(pa && pb, "malloc(2 MiB)");
        uint64_t fb0 = stat("bigcache_hit_fallback"), hit0 = stat("bigcache_hit");
        // freed in both orders over the rounds: each site's block is the newer once
        if (round & 1) {
            hak_free(pb);
            hak_free(pa);
        } else {
            hak_free(pa);
            hak_free(pb);
        }
        char *qa = a(2 * MiB), *qb = b(2 * MiB);
        CHECK(qa == pa, "round %d: site A got %p, not its own cached %p (B's was %p)", round, (void *)qa, (void *)pa,
              (void *)pb);
        CHECK(qb == pb, "round %d: site B got %p, not its own cached %p", round, (void *)qb, (void *)pb);
        CHECK(stat("bigcache_hit") == hit0 + 2 && stat("bigcache_hit_fallback") == fb0,
              "round %d: two ring hits expected", round);
        hak_free(qa);
        hak_free(qb);
    }
}

/* A site with nothing of the class in its ring takes another site's block of the class. */
static void t_fallback(void) {
    if (!TEST_STATS) exit(TEST_SKIP);
    void *(*a)(size_t), *(*b)(size_t);
    distinct_sites(&a, &b);
    char *pa = a(3 * MiB);
    CHECK(pa != NULL, "malloc(3 MiB)");
    memset(pa, 0x5a, 4096);
    hak_free(pa);
    uint64_t fb0 = stat("bigcache_hit_fallback"), hit0 = stat("bigcache_hit"), miss0 = stat("bigcache_miss");
    char *qb = b(3 * MiB - 12345);
    CHECK(qb == pa, "site B got %p, not site A's cached block %p of its class", (void *)qb, (void *)pa);
    CHECK(stat("bigcache_hit") == hit0 + 1 && stat("bigcache_hit_fallback") == fb0 + 1 && stat("bigcache_miss") == miss0,
          "one fallback hit expected");
    // no block of the class: one up to 4 times the class serves whole (3 MiB for a 2.5 MiB
    // class, and for a 1.75 MiB class)
    hak_free(qb);
    uint64_t larger0 = stat("bigcache_hit_larger");
    char *r = b(2 * MiB + 1);
    CHECK(r == pa && hak_usable_size(r) == 3 * MiB, "a 2.5 MiB-class request got %p (usable %zu), not %p", (void *)r,
          hak_usable_size(r), (void *)pa);
    hak_free(r);
    r = b(MiB + 512 * KiB + 1);
    CHECK(r == pa && hak_usable_size(r) == 3 * MiB, "a 1.75 MiB-class request got %p (usable %zu), not %p whole",
          (void *)r, hak_usable_size(r), (void *)pa);
    CHECK(stat("bigcache_hit_larger") == larger0 + 2, "bigcache_hit_larger did not count twice");
    // one more than 4 times the class is cut down: a 1.5 MiB-class request gets a 7 MiB
    // block's first 1.5 MiB (its pages already faulted in), and the rest goes back to the OS
    char *big = a(7 * MiB);
    CHECK(big != NULL, "malloc(7 MiB)");
    memset(big, 0x5a, 4096);
    hak_free(big);
    uint64_t split0 = stat("bigcache_hit_split"), map0 = stat("large_map");
    size_t cached0 = cached_bytes();
    char *s = b(MiB + 256 * KiB + 1);
    CHECK(s == big && hak_usable_size(s) == MiB + 512 * KiB, "a 1.5 MiB-class request got %p (usable %zu), not %p cut down",
          (void *)s, hak_usable_size(s), (void *)big);
    CHECK(stat("bigcache_hit_split") == split0 + 1 && stat("large_map") == map0, "one split hit and no mapping expected");
    CHECK(s[4095] == 0x5a, "the cut-down block lost its first page");
    hak_free(s);
    CHECK(cached_bytes() == cached0 - 7 * MiB + MiB + 512 * KiB, "cached %zu after the cut-down block came back, %zu before",
          cached_bytes(), cached0);
    hak_free(r);
}

/* HAKMEM_BIGCACHE_MAX=8M (set by CTest): cached bytes never exceed it; the oldest go. */
static void t_bound(void) {
    const size_t max = 8 * MiB;
    enum { N = 6 };
    char *p[N];
    for (int i = 0; i < N; i++) {
        p[i] = site0(3 * MiB);
        CHECK(p[i] != NULL, "malloc(3 MiB)");
        memset(p[i], i + 1, 3 * MiB);
    }
    uint64_t ev0 = hak_stat("bigcache_evict");
    for (int i = 0; i < N; i++) {
        hak_free(p[i]);
        size_t c = cached_bytes();
        CHECK(c <= max, "after %d frees %zu bytes cached, above HAKMEM_BIGCACHE_MAX=%zu", i + 1, c, max);
        info_sane("bound");
    }
    CHECK(cached_bytes() == 6 * MiB, "cached %zu, expected the two newest 3 MiB blocks", cached_bytes());
    if (TEST_STATS) CHECK(hak_stat("bigcache_evict") - ev0 == N - 2, "evictions %" PRIu64, hak_stat("bigcache_evict") - ev0);
    // the newest survived: both come back, contents as they were left
    char *a = site0(3 * MiB), *b = site0(3 * MiB);
    CHECK((a == p[N - 1] || a == p[N - 2]) && (b == p[N - 1] || b == p[N - 2]) && a != b,
          "the cached blocks were not the newest two");
    CHECK(a[12345] == (char)(a == p[N - 1] ? N : N - 1), "a cached block lost its contents");
    hak_free(a);
    hak_free(b);
    // a block above the bound is never cached
    char *big = site0(12 * MiB);
    CHECK(big != NULL, "malloc(12 MiB)");
    size_t before = cached_bytes();
    hak_free(big);
    CHECK(cached_bytes() == before, "a 12 MiB block was cached under an 8 MiB bound");
    info_sane("bound, end");
}

/* HAKMEM_DECAY_MS=100: an entry older than that goes at the next large operation. */
static void t_decay(void) {
    // HAKMEM_PURGE_THREAD=0 (set by CTest for decay_no_thread): only large operations decay
    const char *pt = getenv("HAKMEM_PURGE_THREAD");
    int thread = !(pt && strcmp(pt, "0") == 0);
    char *p = site0(2 * MiB), *p5 = site0(5 * MiB);
    CHECK(p != NULL && p5 != NULL, "malloc(2 MiB), malloc(5 MiB)");
    hak_free(p);
    CHECK(cached_bytes() == 2 * MiB, "the block was not cached");
    uint64_t d0 = hak_stat("bigcache_decay_evict");
    hak_free(p5);  // a large operation right away: nothing has decayed yet
    CHECK(cached_bytes() == 7 * MiB, "cached %zu right after, expected 7 MiB", cached_bytes());
    sleep_ms(400);  // HAKMEM_DECAY_MS=100: the purge thread passes every 50 ms
    if (thread) {
        CHECK(cached_bytes() == 0, "cached %zu after 400 ms idle, expected the purge thread to empty it",
              cached_bytes());
    } else {
        CHECK(cached_bytes() == 7 * MiB, "entries left without a large operation and no purge thread");
        char *q = site0(6 * MiB);  // its lookup evicts what decayed first: a miss
        CHECK(q != NULL && q != p, "malloc(6 MiB)");
        CHECK(cached_bytes() == 0, "cached %zu after the decay time, expected 0", cached_bytes());
        hak_free(q);
        CHECK(cached_bytes() == 6 * MiB, "the fresh free was not cached");
    }
    if (TEST_STATS)
        CHECK(hak_stat("bigcache_decay_evict") - d0 == 2, "decay evictions %" PRIu64, hak_stat("bigcache_decay_evict") - d0);
    info_sane("decay");
}

/* hak_trim (malloc_trim) empties the cache and says it released memory. */
static void t_trim(void) {
    char *p[4];
    for (int i = 0; i < 4; i++) {
        p[i] = site0(MiB + 1 + (size_t)i * 700 * KiB);
        CHECK(p[i] != NULL, "malloc");
        memset(p[i], 0x77, MiB);
    }
    for (int i = 0; i < 4; i++) hak_free(p[i]);
    hak_info_t before, after;
    hak_info(&before);
    CHECK(before.large_cached_bytes > 0, "nothing cached");
    uint64_t ev0 = hak_stat("bigcache_evict");
    CHECK(hak_trim(0) == 1, "hak_trim(0) with cached large blocks returned 0");
    hak_info(&after);
    CHECK(after.large_cached_bytes == 0, "cached %zu after trim", after.large_cached_bytes);
    CHECK(after.mapped_bytes + before.large_cached_bytes <= before.mapped_bytes, "trim did not unmap the cache");
    if (TEST_STATS) CHECK(hak_stat("bigcache_evict") - ev0 == 4, "evictions %" PRIu64, hak_stat("bigcache_evict") - ev0);
    info_sane("trim");
    char *q = site0(2 * MiB);  // the large path works after a trim
    CHECK(q != NULL, "malloc after trim");
    memset(q, 1, 2 * MiB);
    hak_free(q);
}

/* Reused blocks honour calloc (zeroed, also in a block of a larger class) and realloc
 * (the old contents move along; only they). */
static void t_contents(void) {
    char *p = site0(2 * MiB);
    CHECK(p != NULL, "malloc");
    memset(p, 0xa5, 2 * MiB);
    hak_free(p);
    char *z = hak_calloc(1, 2 * MiB - 100);
    CHECK(z == p, "calloc did not take the cached block (%p, cached %p)", (void *)z, (void *)p);
    CHECK(find_nonzero(z, 2 * MiB - 100) == SIZE_MAX, "calloc from the BigCache: byte %zu not zero",
          find_nonzero(z, 2 * MiB - 100));
    memset(z, 0x5a, hak_usable_size(z));
    hak_free(z);
    // a smaller class served by this 2 MiB block: calloc(1.5 MiB + 1) is the 1.75 MiB class
    char *z2 = hak_calloc(3, MiB / 2 + 1);
    CHECK(z2 == p && hak_usable_size(z2) == 2 * MiB, "calloc did not take the 2 MiB block for a 1.75 MiB class");
    CHECK(find_nonzero(z2, 3 * (MiB / 2 + 1)) == SIZE_MAX, "calloc in a larger cached block: byte %zu not zero",
          find_nonzero(z2, 3 * (MiB / 2 + 1)));
    memset(z2, 0x11, hak_usable_size(z2));
    hak_free(z2);
    // realloc from a mid block into a cached (dirty) block keeps exactly the old bytes
    char *m = hak_malloc(300 * KiB);
    CHECK(m != NULL, "malloc(300 KiB)");
    fill_pat(m, 300 * KiB, 42);
    char *r = hak_realloc(m, 2 * MiB);
    CHECK(r == p, "realloc to 2 MiB did not take the cached block");
    CHECK(find_bad_pat(r, 0, 300 * KiB, 42) == SIZE_MAX, "realloc into a cached block lost the old contents");
    // and a large realloc in place keeps them too, growing and shrinking across classes
    r = hak_realloc(r, 5 * MiB);
    CHECK(r != NULL && find_bad_pat(r, 0, 300 * KiB, 42) == SIZE_MAX, "large realloc lost the contents");
    CHECK(hak_usable_size(r) == 5 * MiB, "realloc to 5 MiB: usable %zu", hak_usable_size(r));
    r = hak_realloc(r, MiB + 1);
    CHECK(r != NULL && find_bad_pat(r, 0, 300 * KiB, 42) == SIZE_MAX, "large shrink lost the contents");
    CHECK(hak_usable_size(r) == MiB + 256 * KiB, "realloc to 1 MiB + 1: usable %zu", hak_usable_size(r));
    hak_free(r);
    info_sane("contents");
}

/* HAKMEM_BIGCACHE_MAX=0: nothing is kept, every free unmaps. */
static void t_disabled(void) {
    for (int i = 0; i < 20; i++) {
        char *p = site0(2 * MiB);
        CHECK(p != NULL, "malloc");
        p[0] = 1;
        hak_free(p);
        CHECK(cached_bytes() == 0, "cached %zu with the cache off", cached_bytes());
    }
    if (TEST_STATS) {
        CHECK(hak_stat("bigcache_hit") == 0 && hak_stat("bigcache_put") == 0, "the cache was used while off");
        CHECK(hak_stat("large_unmap") == 20, "large_unmap %" PRIu64 ", expected 20", hak_stat("large_unmap"));
    }
    info_sane("disabled");
}

/* The cache gives its blocks back when a mapping fails: after large blocks filled an
 * address-space limit and were freed (cached), small and mid blocks can use that space. */
static void t_oom_reclaim(void) {
    if (TEST_ASAN || TEST_TSAN) exit(TEST_SKIP);  // shadow memory counts against RLIMIT_AS
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        FILE *f = fopen("/proc/self/statm", "r");
        unsigned long pages = 0;
        CHECK(f && fscanf(f, "%lu", &pages) == 1, "statm");
        fclose(f);
        struct rlimit rl;
        CHECK(getrlimit(RLIMIT_AS, &rl) == 0, "getrlimit");
        rl.rlim_cur = pages * (rlim_t)sysconf(_SC_PAGESIZE) + 64 * MiB;
        if (rl.rlim_max != RLIM_INFINITY && rl.rlim_cur > rl.rlim_max) _exit(TEST_SKIP);
        CHECK(setrlimit(RLIMIT_AS, &rl) == 0, "setrlimit");
        enum { MAXB = 64 };
        void *big[MAXB];
        int nb = 0;
        while (nb < MAXB && (big[nb] = site0(3 * MiB)) != NULL) nb++;
        CHECK(nb >= 8 && nb < MAXB, "%d large blocks under a 64 MiB headroom", nb);
        for (int i = 0; i < nb; i++) hak_free(big[i]);
        CHECK(cached_bytes() >= 8 * 3 * MiB, "only %zu bytes cached", cached_bytes());
        size_t got = 0;
        void *first = NULL;
        for (;;) {  // mid blocks in SuperSlabs: the cache must make room
            void **m = hak_malloc(500 * KiB);
            if (!m) break;
            *m = first;
            first = m;
            got += 500 * KiB;
        }
        CHECK(got >= (size_t)nb * 3 * MiB / 2, "only %zu bytes of mid blocks after %d MiB were cached", got, nb * 3);
        CHECK(cached_bytes() == 0, "the cache still holds %zu bytes at the limit", cached_bytes());
        if (TEST_STATS) CHECK(hak_stat("bigcache_evict") > 0, "no eviction counted");
        printf("   %d large blocks (%d MiB) cached at the limit; then %zu MiB of mid blocks\n", nb, nb * 3, got / MiB);
        _exit(0);
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid, "waitpid");
    if (WIFEXITED(status) && WEXITSTATUS(status) == TEST_SKIP) exit(TEST_SKIP);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child failed (status 0x%x)", status);
}

/* Threads allocate at their own sites and free each other's blocks. */
enum { THREADS = 4, T_OPS = 600 };
static char *_Atomic handoff[THREADS];

static void *thread_main(void *arg) {
    int id = (int)(intptr_t)arg;
    uint64_t rng = (uint64_t)id * 977 + 1;
    for (int op = 0; op < T_OPS; op++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        size_t n = MiB + (size_t)((rng >> 20) % (3 * MiB));
        char *p = site_fns[id % NSITES](n);
        CHECK(p != NULL, "malloc(%zu)", n);
        p[0] = (char)id;
        p[n - 1] = (char)op;
        CHECK(hak_usable_size(p) >= n, "usable");
        // pass it on: free whatever the neighbour left, leave this one for another thread
        char *old = atomic_exchange(&handoff[(id + op) % THREADS], p);
        if (old) {
            CHECK(old[0] >= 0 && old[0] < THREADS, "a handed-off block lost its tag");
            hak_free(old);
        }
    }
    return NULL;
}

static void t_threads(void) {
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) CHECK(pthread_create(&t[i], NULL, thread_main, (void *)(intptr_t)i) == 0, "create");
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < THREADS; i++) hak_free(atomic_exchange(&handoff[i], NULL));
    info_sane("threads");
    CHECK(cached_bytes() <= 64 * MiB, "cached %zu above the default bound", cached_bytes());
    hak_info_t in;
    hak_info(&in);
    CHECK(in.large_count == 0 && in.large_bytes == 0, "%zu live large blocks (%zu bytes) after all were freed",
          in.large_count, in.large_bytes);
    CHECK(hak_trim(0) == 1 && cached_bytes() == 0, "trim after the threads");
}

/* fork while another thread works the cache: the child finds it consistent and usable. */
static _Atomic int stop_worker;
static void *fork_worker(void *arg) {
    (void)arg;
    uint64_t rng = 99;
    while (!atomic_load(&stop_worker)) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        size_t n = MiB + (size_t)((rng >> 20) % (4 * MiB));
        char *p = site1(n);
        CHECK(p != NULL, "worker malloc");
        p[0] = p[n - 1] = 3;
        hak_free(p);
    }
    return NULL;
}

static void t_fork(void) {
    char *keep[6];
    for (int i = 0; i < 6; i++) {
        keep[i] = site0(MiB + (size_t)i * MiB / 2);
        CHECK(keep[i] != NULL, "malloc");
        memset(keep[i], 0x40 + i, 4096);
    }
    for (int i = 0; i < 6; i++) hak_free(keep[i]);
    pthread_t w;
    CHECK(pthread_create(&w, NULL, fork_worker, NULL) == 0, "create");
    for (int round = 0; round < 20; round++) {
        pid_t pid = fork();
        CHECK(pid >= 0, "fork");
        if (pid == 0) {
            alarm(10);  // a lock inherited held shows up as a hang
            info_sane("child");
            size_t c0 = cached_bytes();
            // take everything the cache holds, class by class, then give it back and trim
            char *got[64];
            int n = 0;
            for (size_t sz = MiB + 1; sz <= 6 * MiB && n < 64; sz += 256 * KiB) {
                char *p = site0(sz);
                CHECK(p != NULL, "child malloc(%zu)", sz);
                memset(p, 0x33, sz);
                got[n++] = p;
            }
            info_sane("child, all taken");
            for (int i = 0; i < n; i++) hak_free(got[i]);
            CHECK(cached_bytes() <= 64 * MiB, "child: cached %zu", cached_bytes());
            CHECK(hak_trim(0) == 1, "child: trim released nothing (cached %zu at the fork)", c0);
            CHECK(cached_bytes() == 0, "child: cached %zu after trim", cached_bytes());
            info_sane("child, trimmed");
            _exit(0);
        }
        int status;
        CHECK(waitpid(pid, &status, 0) == pid, "waitpid");
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "round %d: child status 0x%x", round, status);
    }
    atomic_store(&stop_worker, 1);
    pthread_join(w, NULL);
    info_sane("parent");
}

/* The call-site report: text and a JSON member inside the report's object. */
static void t_report(void) {
    if (!TEST_STATS) exit(TEST_SKIP);
    for (int i = 0; i < 5; i++) hak_free(site2(2 * MiB));
    hak_free(site3(5 * MiB));
    char *buf = test_report(0);
    const char *h = strstr(buf, "[large call sites]");
    CHECK(h != NULL, "no call-site section in the text report:\n%s", buf);
    // the rows: site (a '*' after it when shared), calls, bytes, live, hits, misses; the
    // 2 MiB site first: 10 MiB requested against 5 MiB
    const char *row = strchr(strchr(h, '\n') + 1, '\n') + 1;
    unsigned long long site, calls, bytes, live, hits, misses;
    char mark;
    CHECK(sscanf(row, " %llx%c %llu %llu %llu %llu %llu", &site, &mark, &calls, &bytes, &live, &hits, &misses) == 7,
          "bad row: %.120s", row);
    if (mark == '*') {  // the two sites hashed to one entry: it sums both
        CHECK(calls == 6 && bytes == 15 * MiB && live == 0, "shared row: calls %llu bytes %llu live %llu", calls, bytes,
              live);
    } else {
        CHECK(site != 0 && calls == 5 && bytes == 10 * MiB && live == 0 && hits == 4 && misses == 1,
              "first row: site %llx calls %llu bytes %llu live %llu hits %llu misses %llu", site, calls, bytes, live,
              hits, misses);
    }
    free(buf);
    CHECK(site_entries() >= 2, "the JSON report lists %d sites", site_entries());
}

/* No cached block of the request's class or above: the largest smaller one is grown
 * (mremap, in place or moved), so its pages stay resident and only the growth is new. */
static void t_grow(void) {
    hak_trim(0);
    char *p = site0(2 * MiB), *small = site0(MiB + 1);
    CHECK(p != NULL && small != NULL, "malloc(2 MiB), malloc(1 MiB + 1)");
    memset(p, 0x6b, 2 * MiB);
    hak_free(small);
    hak_free(p);
    CHECK(cached_bytes() == 2 * MiB + MiB + 256 * KiB, "cached %zu, expected 3.25 MiB", cached_bytes());
    uint64_t grow0 = stat("bigcache_hit_grow"), map0 = stat("large_map"), miss0 = stat("bigcache_miss");
    char *q = site1(3 * MiB + 1);  // class 3.5 MiB: neither cached block is that large
    CHECK(q != NULL && hak_usable_size(q) == 3 * MiB + 512 * KiB, "malloc(3 MiB + 1): %p, usable %zu", (void *)q,
          q ? hak_usable_size(q) : 0);
    if (TEST_STATS)
        CHECK(stat("bigcache_hit_grow") == grow0 + 1 && stat("large_map") == map0 && stat("bigcache_miss") == miss0,
              "expected one grown hit and no mapping: grow %" PRIu64 " map %" PRIu64 " miss %" PRIu64,
              stat("bigcache_hit_grow") - grow0, stat("large_map") - map0, stat("bigcache_miss") - miss0);
    CHECK(cached_bytes() == MiB + 256 * KiB, "cached %zu: the 2 MiB block should have left, the smaller one stayed",
          cached_bytes());
    for (size_t off = 0; off < 2 * MiB; off += 4096)
        CHECK((unsigned char)q[off] == 0x6b, "byte %zu of the grown block lost its old page", off);
    for (size_t off = 2 * MiB; off < 3 * MiB + 512 * KiB; off += 4096)
        CHECK(q[off] == 0, "byte %zu of the growth reads %d, not 0", off, q[off]);
    memset(q, 0x3c, 3 * MiB + 512 * KiB);
    info_sane("grow, live");
    hak_free(q);  // the whole grown range is registered: the free finds it, and caches it
    CHECK(cached_bytes() == 3 * MiB + 512 * KiB + MiB + 256 * KiB, "cached %zu after the grown block came back",
          cached_bytes());
    info_sane("grow, freed");
}

static const test_case_t cases[] = {
    {"classes", t_classes},   {"hit_rate", t_hit_rate}, {"sites", t_sites},       {"fallback", t_fallback},
    {"bound", t_bound},       {"decay", t_decay},       {"decay_no_thread", t_decay},       {"trim", t_trim},         {"contents", t_contents},
    {"disabled", t_disabled}, {"oom_reclaim", t_oom_reclaim}, {"threads", t_threads}, {"fork", t_fork},
    {"report", t_report},     {"grow", t_grow},
};

int main(int argc, char **argv) { return run_cases(argc, argv, cases, sizeof cases / sizeof cases[0]); }
