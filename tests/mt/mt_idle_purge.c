/* mt_idle_purge.c -- memory goes back to the OS while the program is idle, and malloc_trim
 * reaches other threads' heaps.
 *
 *   mt_idle_purge idle       (HAKMEM_DECAY_MS=100) a worker allocates and frees 48 MiB of
 *                            64 KiB blocks and then waits, alive; the main thread sleeps
 *                            600 ms making no allocator call. Asserts: the purge thread ran,
 *                            found the worker's heap idle and gave its memory back (counters),
 *                            and RSS fell to within 4 MiB of where it was before the worker
 *                            allocated.
 *   mt_idle_purge partial    (HAKMEM_DECAY_MS=100) the worker keeps every other block, so no
 *                            span empties: the pages inside its free blocks are purged
 *                            (ss_purge_block_bytes) and RSS falls to within 8 MiB of the
 *                            base plus the 24 MiB still live.
 *   mt_idle_purge no_thread  (HAKMEM_PURGE_THREAD=0) the same: no pass ran and nothing was
 *                            purged during the sleep; RSS stayed up.
 *   mt_idle_purge mid_classes (HAKMEM_DECAY_MS=100) the worker allocates 4 blocks of each
 *                            mid class above HAK_TC_MAX_BLOCK (40 KiB .. 1 MiB, 20 classes,
 *                            25 MiB), frees them and waits. None stays in its thread cache,
 *                            out of the purge thread's reach: RSS falls to within 2 MiB of the
 *                            base (with a cache of one block per class, 7 MiB stayed).
 *   mt_idle_purge small_pages (HAKMEM_DECAY_MS=100) the worker allocates 48 MiB of 256-byte
 *                            blocks and frees all but one in 64, so every page of four holds
 *                            a live block and no span empties: the pages that hold only free
 *                            blocks are purged (ss_purge_block_bytes) and RSS falls to within
 *                            16 MiB of the base (before that purge, all 48 MiB stayed).
 *   mt_idle_purge trim_other (HAKMEM_PURGE_THREAD=0, HAKMEM_DECAY_MS=100000) the same, then
 *                            the main thread calls hak_trim(0): it gives back the worker's
 *                            free memory although the worker owns its heap and is alive.
 *
 * RSS is read from /proc/self/statm with open/read (no stdio, so no allocation). */
#include <fcntl.h>
#include <pthread.h>

#include "mt_common.h"

enum { BLOCK = 64 << 10, COUNT = 768 };  // 48 MiB
#define MiB ((size_t)1 << 20)

static pthread_barrier_t freed, done;
static int keep_every;  // 0: free all; k: keep every k-th block alive
static int mid_classes; // blocks of every mid class above 32 KiB instead of 64 KiB ones
static int small_pages; // 256-byte blocks instead, one in SMALL_KEEP kept alive
enum { SMALL = 256, SMALL_COUNT = (48 << 20) / SMALL, SMALL_KEEP = 64 };
static void *sp[SMALL_COUNT];

static size_t rss_now(void) {
    char buf[128];
    int fd = open("/proc/self/statm", O_RDONLY);
    CHECK(fd >= 0, "open /proc/self/statm");
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    CHECK(n > 0, "read /proc/self/statm");
    buf[n] = 0;
    char *s = strchr(buf, ' ');
    CHECK(s != NULL, "parse /proc/self/statm");
    return (size_t)strtoul(s + 1, NULL, 10) * (size_t)sysconf(_SC_PAGESIZE);
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static void *worker(void *arg) {
    (void)arg;
    static void *p[COUNT];
    int count = COUNT;
    if (mid_classes) {
        count = 0;
        // the four classes of each (2^e, 2^(e+1)]: 2^e + k * 2^(e-2)
        for (unsigned e = 15; e < 20; e++)
            for (size_t k = 1; k <= 4; k++)
                for (int j = 0; j < 4; j++) {
                    size_t n = ((size_t)1 << e) + (k << (e - 2));
                    p[count] = T_MALLOC(n);
                    CHECK(p[count] != NULL, "malloc(%zu)", n);
                    memset(p[count], j, n);
                    count++;
                }
    }
    if (small_pages) {
        count = 0;
        for (int i = 0; i < SMALL_COUNT; i++) {
            sp[i] = T_MALLOC(SMALL);
            CHECK(sp[i] != NULL, "malloc(256)");
            memset(sp[i], i, SMALL);
        }
        for (int i = 0; i < SMALL_COUNT; i++)
            if (i % SMALL_KEEP) T_FREE(sp[i]);
    }
    for (int i = 0; i < count && !mid_classes && !small_pages; i++) {
        p[i] = T_MALLOC(BLOCK);
        CHECK(p[i] != NULL, "malloc(64 KiB)");
        memset(p[i], i, BLOCK);
    }
    for (int i = 0; i < count; i++)
        if (!keep_every || i % keep_every) T_FREE(p[i]);
    pthread_barrier_wait(&freed);
    pthread_barrier_wait(&done);  // alive (its heap owned) until the main thread has looked
    for (int i = 0; small_pages && i < SMALL_COUNT; i += SMALL_KEEP) {
        CHECK(((unsigned char *)sp[i])[SMALL - 1] == (unsigned char)i, "kept block %d changed", i);
        T_FREE(sp[i]);
    }
    for (int i = 0; keep_every && i < COUNT; i += keep_every) {
        CHECK(((unsigned char *)p[i])[BLOCK - 1] == (unsigned char)i, "kept block %d changed", i);
        T_FREE(p[i]);
    }
    return NULL;
}

int main(int argc, char **argv) {
    mt_test_name = "mt_idle_purge";
    CHECK(argc == 2, "usage: mt_idle_purge idle|partial|mid_classes|small_pages|no_thread|trim_other");
    const char *mode = argv[1];
    if (MT_SANITIZER || !MT_STATS) {
        printf("mt_idle_purge: skipped (RSS under a sanitizer, or no counters)\n");
        return 77;
    }
    if (strcmp(mode, "partial") == 0) keep_every = 2;
    if (strcmp(mode, "mid_classes") == 0) mid_classes = 1;
    if (strcmp(mode, "small_pages") == 0) small_pages = 1;
    pthread_barrier_init(&freed, NULL, 2);
    pthread_barrier_init(&done, NULL, 2);
    size_t base = rss_now();
    pthread_t t;
    CHECK(pthread_create(&t, NULL, worker, NULL) == 0, "pthread_create");
    pthread_barrier_wait(&freed);
    size_t high = rss_now();
    uint64_t passes0 = mt_hak_stat("purge_passes"), idle0 = mt_hak_stat("purge_idle_heaps");
    uint64_t purged0 = mt_hak_stat("os_purge_bytes"), inside0 = mt_hak_stat("ss_purge_block_bytes");
    sleep_ms(600);  // no allocator call in any thread meanwhile
    size_t after = rss_now();
    uint64_t passes = mt_hak_stat("purge_passes") - passes0, idle = mt_hak_stat("purge_idle_heaps") - idle0;
    uint64_t purged = mt_hak_stat("os_purge_bytes") - purged0;
    printf("mode %s: rss base %zu KiB, after freeing %zu KiB, after 600 ms idle %zu KiB; passes %" PRIu64
           ", idle heaps %" PRIu64 ", purged %" PRIu64 " KiB\n",
           mode, base >> 10, high >> 10, after >> 10, passes, idle, purged >> 10);
    // (the pool purges all but its newest 4 dirty SuperSlabs at once: 8 MiB or more stay)
    CHECK(high > base + 8 * MiB, "RSS %zu KiB after 48 MiB were touched and freed, %zu before: nothing to give back",
          high >> 10, base >> 10);
    if (strcmp(mode, "idle") == 0) {
        CHECK(passes >= 5, "%" PRIu64 " purge passes in 600 ms at HAKMEM_DECAY_MS=100", passes);
        CHECK(idle >= 1, "the purge thread never found the worker's heap idle");
        CHECK(purged > 0, "nothing purged while idle");
        CHECK(after <= base + 4 * MiB, "RSS %zu KiB after 600 ms idle, base %zu KiB", after >> 10, base >> 10);
    } else if (strcmp(mode, "mid_classes") == 0) {
        CHECK(after <= base + 2 * MiB, "RSS %zu KiB after 600 ms idle, base %zu KiB", after >> 10, base >> 10);
    } else if (strcmp(mode, "small_pages") == 0) {
        uint64_t inside = mt_hak_stat("ss_purge_block_bytes") - inside0;
        CHECK(inside >= 24 * MiB, "only %" PRIu64 " KiB purged in pages of free small blocks", inside >> 10);
        CHECK(after <= base + 16 * MiB, "RSS %zu KiB after 600 ms idle, base %zu KiB, 0.75 MiB live", after >> 10,
              base >> 10);
    } else if (strcmp(mode, "partial") == 0) {
        uint64_t inside = mt_hak_stat("ss_purge_block_bytes") - inside0;
        CHECK(inside >= 16 * MiB, "only %" PRIu64 " KiB purged inside free blocks", inside >> 10);
        CHECK(after <= base + 32 * MiB, "RSS %zu KiB after 600 ms idle, base %zu KiB, 24 MiB live", after >> 10,
              base >> 10);
    } else if (strcmp(mode, "no_thread") == 0) {
        CHECK(passes == 0 && purged == 0, "%" PRIu64 " passes, %" PRIu64 " bytes purged without the thread", passes,
              purged);
        CHECK(after > base + 8 * MiB, "RSS fell to %zu KiB (base %zu) with no purge thread", after >> 10, base >> 10);
    } else if (strcmp(mode, "trim_other") == 0) {
        uint64_t other0 = mt_hak_stat("trim_other_heaps");
        CHECK(T_TRIM() == 1, "trim released nothing");
        size_t trimmed = rss_now();
        printf("after trim: %zu KiB\n", trimmed >> 10);
        CHECK(mt_hak_stat("trim_other_heaps") - other0 >= 1, "trim did not reach the worker's heap");
        CHECK(trimmed <= base + 4 * MiB, "RSS %zu KiB after trim, base %zu KiB", trimmed >> 10, base >> 10);
    } else {
        CHECK(0, "unknown mode %s", mode);
    }
    pthread_barrier_wait(&done);
    CHECK(pthread_join(t, NULL) == 0, "pthread_join");
    printf("mt_idle_purge %s: ok\n", mode);
    return 0;
}
