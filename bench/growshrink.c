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
 * the requested sizes of the surviving blocks. */
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
    pthread_barrier_wait(&freed_barrier);
    pthread_barrier_wait(&done_barrier);  // alive and quiet while the main thread samples
    return NULL;
}

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
