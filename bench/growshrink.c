/* growshrink.c -- does freed memory go back to the OS when a phase ends and the program
 * goes quiet? (plain malloc/free: any allocator through LD_PRELOAD)
 *
 *   growshrink [--smoke] [total_mib threads wait_ms seed]
 *   defaults:   1024     2       3000    5151
 *
 * `threads` threads allocate `total_mib` MiB between them, in blocks of mixed sizes (nine in
 * ten from 16 B to 4 KiB, one in ten from 4 KiB to 256 KiB, log-uniform), writing every page
 * of each block. Then each frees its oldest 90% (by bytes) and waits at a barrier. From then
 * on no thread calls the allocator: the main thread samples RSS from /proc/self/statm with
 * open/read every 250 ms for `wait_ms`. It checks that the surviving blocks still hold their
 * tags, then prints
 *
 *   growshrink total_mib=T live_kb=L rss_start_kb=P rss_end_kb=E rss_ratio=R seconds_to_1.2=S
 *
 * where rss_ratio = rss_end / live (the lower the better; 1.0 = only live data resident) and
 * seconds_to_1.2 is when RSS first fell to 1.2x live (-1 if it never did). The live bytes are
 * the requested sizes of the surviving blocks.
 *
 * growshrink_pages (the same source with GS_PAGES, linked with libhakmem.a) also says where
 * the RSS above the live bytes is, on stderr: each worker's thread cache in bytes (small and
 * mid classes) before it goes quiet, then, at the end of the wait, every resident page of the
 * process from /proc/self/pagemap: file pages; anonymous pages that hold part of a surviving
 * block (or of the block tables) and how much of them the blocks leave unused; the other
 * anonymous pages, and for those in a SuperSlab the state of their span (a free slab, a span
 * with no block out, a span whose blocks are out: in a thread cache or the program). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../stress/stress_args.h"

#ifdef GS_PAGES
#include <sys/mman.h>

#include "hak_ss.h"
#include "hak_tls.h"

// this thread's cache, small and mid classes, in bytes
static void report_cache(unsigned id) {
    size_t small = 0, mid = 0;
    for (unsigned c = 0; c < HAK_SC_MAX; c++) {
        size_t bytes = (size_t)(hak_sc_info[c].tc_cap - hak_tc.room[c]) * hak_sc_size_table[c];
        if (hak_sc_size_table[c] <= HAK_SMALL_MAX) small += bytes;
        else mid += bytes;
    }
    fprintf(stderr, "growshrink_pages: thread %u cache: small classes %zu KiB, mid classes %zu KiB\n", id,
            small >> 10, mid >> 10);
}
#endif

typedef struct {
    unsigned id;
    uint64_t rng;
    size_t budget;  /* bytes to allocate */
    void **blocks;
    size_t *sizes;
    size_t count, first_live;
    size_t live_bytes;
} worker_t;

static pthread_barrier_t freed_barrier, done_barrier;
static size_t page_size;

static size_t rss_kb(void) {
    char buf[128];
    int fd = open("/proc/self/statm", O_RDONLY);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = 0;
    char *s = strchr(buf, ' ');
    return s ? (size_t)strtoul(s + 1, NULL, 10) * (page_size / 1024) : 0;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

// log-uniform in [lo, hi]
static size_t log_uniform(uint64_t *rng, size_t lo, size_t hi) {
    double u = (double)(splitmix(rng) >> 11) / 9007199254740992.0;
    double v = (double)lo * __builtin_exp(u * __builtin_log((double)hi / (double)lo));
    size_t n = (size_t)v;
    return n < lo ? lo : n > hi ? hi : n;
}

static uint64_t tag_of(unsigned id, size_t i) { return ((uint64_t)id << 40) ^ (i * 0x9e3779b97f4a7c15ULL); }

static void *worker(void *arg) {
    worker_t *w = arg;
    size_t cap = 1024, used = 0;
    w->blocks = malloc(cap * sizeof *w->blocks);
    w->sizes = malloc(cap * sizeof *w->sizes);
    if (!w->blocks || !w->sizes) {
        fprintf(stderr, "growshrink: error: no memory for the block table\n");
        exit(1);
    }
    for (size_t bytes = 0; bytes < w->budget; used++) {
        if (used == cap) {
            cap *= 2;
            w->blocks = realloc(w->blocks, cap * sizeof *w->blocks);
            w->sizes = realloc(w->sizes, cap * sizeof *w->sizes);
            if (!w->blocks || !w->sizes) {
                fprintf(stderr, "growshrink: error: no memory for the block table\n");
                exit(1);
            }
        }
        size_t n = splitmix(&w->rng) % 10 ? log_uniform(&w->rng, 16, 4096) : log_uniform(&w->rng, 4096, 256 << 10);
        unsigned char *p = malloc(n);
        if (!p) {
            fprintf(stderr, "growshrink: error: malloc(%zu) returned NULL\n", n);
            exit(1);
        }
        for (size_t off = 0; off < n; off += page_size) p[off] = (unsigned char)off;
        uint64_t tag = tag_of(w->id, used);
        memcpy(p, &tag, n < 8 ? n : 8);
        w->blocks[used] = p;
        w->sizes[used] = n;
        bytes += n;
    }
    w->count = used;
    // the oldest 90% of the bytes go
    size_t target = w->budget / 10 * 9, gone = 0, i = 0;
    for (; i < used && gone < target; i++) {
        gone += w->sizes[i];
        free(w->blocks[i]);
    }
    w->first_live = i;
    for (; i < used; i++) w->live_bytes += w->sizes[i];
#ifdef GS_PAGES
    report_cache(w->id);
#endif
    pthread_barrier_wait(&freed_barrier);
    pthread_barrier_wait(&done_barrier);  // alive and quiet while the main thread samples
    return NULL;
}

#ifdef GS_PAGES
typedef struct {
    uintptr_t lo, hi;
} range_t;

static int range_cmp(const void *a, const void *b) {
    uintptr_t x = ((const range_t *)a)->lo, y = ((const range_t *)b)->lo;
    return x < y ? -1 : x > y;
}

// bytes of the sorted, disjoint ranges r[0..n) inside [a, a + len)
static size_t covered(const range_t *r, size_t n, uintptr_t a, size_t len) {
    size_t lo = 0, hi = n, bytes = 0;
    while (lo < hi) {  // the first range that ends after a
        size_t m = (lo + hi) / 2;
        if (r[m].hi <= a) lo = m + 1;
        else hi = m;
    }
    for (size_t m = lo; m < n && r[m].lo < a + len; m++) {
        uintptr_t s = r[m].lo > a ? r[m].lo : a, e = r[m].hi < a + len ? r[m].hi : a + len;
        if (e > s) bytes += e - s;
    }
    return bytes;
}

// Called while every thread is quiet: no allocator call here (mmap, read, fprintf to an
// unbuffered stderr).
static void report_pages(const worker_t *ws, unsigned threads) {
    size_t n = 0;
    for (unsigned t = 0; t < threads; t++) n += ws[t].count - ws[t].first_live + 2;
    range_t *r = mmap(NULL, n * sizeof *r, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (r == MAP_FAILED) return;
    size_t k = 0;
    for (unsigned t = 0; t < threads; t++) {
        const worker_t *w = &ws[t];
        for (size_t i = w->first_live; i < w->count; i++)
            r[k++] = (range_t){(uintptr_t)w->blocks[i], (uintptr_t)w->blocks[i] + w->sizes[i]};
        r[k++] = (range_t){(uintptr_t)w->blocks, (uintptr_t)(w->blocks + w->count)};
        r[k++] = (range_t){(uintptr_t)w->sizes, (uintptr_t)(w->sizes + w->count)};
    }
    qsort(r, k, sizeof *r, range_cmp);
    static char maps[1 << 20];
    size_t len = 0;
    ssize_t got;
    int fd = open("/proc/self/maps", O_RDONLY);
    while (fd >= 0 && (got = read(fd, maps + len, sizeof maps - 1 - len)) > 0) len += (size_t)got;
    if (fd >= 0) close(fd);
    maps[len] = 0;
    int pm = open("/proc/self/pagemap", O_RDONLY);
    if (pm < 0) return;
    enum { FILE_PG, LIVE_PG, OTHER_PG, SS_FREE_SLAB, SS_SPAN_EMPTY, SS_SPAN_OUT, NKINDS };
    size_t pages[NKINDS] = {0}, live_bytes = 0;
    for (char *line = maps; *line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        uintptr_t lo = strtoull(line, NULL, 16), hi = strtoull(strchr(line, '-') + 1, NULL, 16);
        int file = strchr(line, '/') != NULL;
        for (uintptr_t a = lo; a < hi; a += 4096) {
            uint64_t e = 0;
            if (pread(pm, &e, sizeof e, (off_t)(a / 4096 * sizeof e)) != sizeof e || !(e >> 63)) continue;
            size_t in = file ? 0 : covered(r, k, a, 4096);
            hak_ss_t *ss = file || in ? NULL : hak_ss_of((void *)a);
            if (file) pages[FILE_PG]++;
            else if (in) pages[LIVE_PG]++, live_bytes += in;
            else if (!ss) pages[OTHER_PG]++;
            else {
                unsigned idx = hak_ss_slab_index(ss, (void *)a);
                const hak_slab_t *head = &ss->slabs[ss->slab_head[idx]];
                pages[ss->slab_sc[idx] == HAK_SLAB_NONE ? SS_FREE_SLAB : head->used ? SS_SPAN_OUT : SS_SPAN_EMPTY]++;
            }
        }
        if (!nl) break;
        line = nl + 1;
    }
    close(pm);
    fprintf(stderr,
            "growshrink_pages: file %zu KiB; holding live blocks %zu KiB (%zu KiB of it unused); "
            "other anonymous %zu KiB; in SuperSlabs without a live block: free slabs %zu KiB, "
            "spans with no block out %zu KiB, spans with blocks out %zu KiB\n",
            pages[FILE_PG] * 4, pages[LIVE_PG] * 4, pages[LIVE_PG] * 4 - live_bytes / 1024, pages[OTHER_PG] * 4,
            pages[SS_FREE_SLAB] * 4, pages[SS_SPAN_EMPTY] * 4, pages[SS_SPAN_OUT] * 4);
}
#endif

static void usage(void) {
    fprintf(stderr, "usage: growshrink [--smoke] [total_mib threads wait_ms seed]\n"
                    "  defaults: 1024 2 3000 5151; --smoke: 64 2 1000 5151\n");
    exit(2);
}

int main(int argc, char **argv) {
    uint64_t total_mib = 1024, threads = 2, wait_ms = 3000, seed = 5151;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--smoke") == 0) total_mib = 64, wait_ms = 1000;
    int pos = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--smoke") == 0) continue;
        uint64_t v;
        if (!parse_u64(argv[i], &v)) usage();
        switch (pos++) {
        case 0: total_mib = v; break;
        case 1: threads = v; break;
        case 2: wait_ms = v; break;
        case 3: seed = v; break;
        default: usage();
        }
    }
    if (total_mib == 0 || total_mib > (1 << 20) || threads == 0 || threads > 64 || wait_ms > 600000) usage();
    page_size = (size_t)sysconf(_SC_PAGESIZE);

    worker_t *ws = calloc(threads, sizeof *ws);
    pthread_t *ts = calloc(threads, sizeof *ts);
    if (!ws || !ts) {
        fprintf(stderr, "growshrink: error: out of memory\n");
        return 1;
    }
    pthread_barrier_init(&freed_barrier, NULL, (unsigned)threads + 1);
    pthread_barrier_init(&done_barrier, NULL, (unsigned)threads + 1);
    for (unsigned t = 0; t < threads; t++) {
        ws[t].id = t;
        ws[t].rng = seed + t * 7919;
        ws[t].budget = (size_t)(total_mib << 20) / threads;
        if (pthread_create(&ts[t], NULL, worker, &ws[t]) != 0) {
            fprintf(stderr, "growshrink: error: pthread_create\n");
            return 1;
        }
    }
    pthread_barrier_wait(&freed_barrier);
    // From here until done_barrier no thread calls the allocator.
    size_t live = 0;
    for (unsigned t = 0; t < threads; t++) live += ws[t].live_bytes;
    size_t live_kb = live / 1024, start = rss_kb(), end = start;
    double t0 = now(), reached = -1;
    if (start <= live_kb + live_kb / 5) reached = 0;
    while (now() - t0 < (double)wait_ms / 1000.0) {
        sleep_ms(250);
        end = rss_kb();
        if (reached < 0 && end <= live_kb + live_kb / 5) reached = now() - t0;
    }
#ifdef GS_PAGES
    report_pages(ws, (unsigned)threads);
#endif
    // the survivors are intact
    for (unsigned t = 0; t < threads; t++) {
        worker_t *w = &ws[t];
        for (size_t i = w->first_live; i < w->count; i++) {
            uint64_t tag = tag_of(w->id, i), got = 0;
            size_t n = w->sizes[i] < 8 ? w->sizes[i] : 8;
            memcpy(&got, w->blocks[i], n);
            if (memcmp(&got, &tag, n) != 0) {
                fprintf(stderr, "growshrink: error: thread %u block %zu lost its tag\n", t, i);
                return 1;
            }
        }
    }
    pthread_barrier_wait(&done_barrier);
    for (unsigned t = 0; t < threads; t++) pthread_join(ts[t], NULL);
    printf("growshrink total_mib=%llu live_kb=%zu rss_start_kb=%zu rss_end_kb=%zu rss_ratio=%.3f seconds_to_1.2=%.2f\n",
           (unsigned long long)total_mib, live_kb, start, end, live_kb ? (double)end / (double)live_kb : 0.0, reached);
    return 0;
}
