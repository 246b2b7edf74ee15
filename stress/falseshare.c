/* falseshare: Hoard's cache-scratch and cache-thrash patterns (plain malloc/free, C11 +
 * pthreads).
 *
 * thrash: each thread, for each iteration, allocates a small object, writes every byte of it
 * `writes` times (a read-modify-write through a volatile pointer) and frees it. An
 * allocator that hands out objects of different threads from one cache line makes the
 * threads fight over that line (active false sharing).
 * scratch: the same, but first the main thread allocates one object per thread, back to
 * back, and hands one to each thread, which frees it before its loop. An allocator that
 * gives a freed block to the freeing thread's next malloc returns that object, still next
 * to the other threads' ones, every iteration (passive false sharing).
 *
 * Each object starts with a pattern (thread, iteration, byte) and must end with every byte
 * advanced by `writes`; a wrong byte prints an error and exits 1. Whether the allocator put
 * threads' objects in one cache line depends on where its heap happens to start as much as
 * on its design, so each mode also reports how many threads' first objects share a cache
 * line with another thread's.
 *
 * usage: falseshare [--smoke] [mode threads iterations size writes]   (mode: scratch,
 *        thrash or both)
 * Prints, per mode:
 *   falseshare mode=M threads=T iterations=I size=Z seconds=S ops_per_s=X same_line=K
 * (iterations = per thread; ops = malloc+free pairs of the loops, threads * iterations;
 * K = threads whose first object in the loop shares a cache line with another's)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "stress_args.h"

enum { MODE_SCRATCH = 1, MODE_THRASH = 2, MODE_BOTH = 3 };

typedef struct {
    int modes;
    unsigned threads;
    unsigned long iterations; /* per thread */
    size_t size;
    unsigned long writes;     /* per byte per object */
    int smoke;
} params_t;

/* One thread. The main thread fills it before pthread_create and reads it after the join;
 * the thread writes only pairs and its times, at its end. */
typedef struct {
    unsigned id;
    unsigned char *handed; /* scratch: the object the main thread allocated for it */
    uint64_t pairs;
    double t_start, t_end; /* after the start barrier, after the last free */
    uintptr_t first;       /* the address of its first object in the loop */
} worker_t;

static params_t P;
static pthread_barrier_t start_barrier;

/* the first value of byte j of the object of iteration it in thread t */
static inline unsigned char pat(unsigned t, unsigned long it, size_t j) {
    return (unsigned char)((t * 131u) ^ (unsigned)(it * 17u) ^ (unsigned)(j * 7u));
}

static unsigned char *alloc_obj(const char *who) {
    unsigned char *p = malloc(P.size);
    if (!p) {
        fprintf(stderr, "falseshare: error: %s: malloc(%zu) returned NULL\n", who, P.size);
        exit(1);
    }
    return p;
}

static void *worker(void *arg) {
    worker_t *w = arg;
    uint64_t pairs = 0; // written to w at the end: the workers lie next to each other
    uintptr_t first = 0;
    pthread_barrier_wait(&start_barrier);
    double t_start = now();
    if (w->handed) free(w->handed);
    for (unsigned long it = 0; it < P.iterations; it++) {
        unsigned char *p = alloc_obj("worker");
        if (it == 0) first = (uintptr_t)p;
        for (size_t j = 0; j < P.size; j++) p[j] = pat(w->id, it, j);
        // volatile: every write goes to memory, as it would if others read the object
        volatile unsigned char *v = p;
        for (unsigned long k = 0; k < P.writes; k++)
            for (size_t j = 0; j < P.size; j++) v[j] = (unsigned char)(v[j] + 1);
        for (size_t j = 0; j < P.size; j++) {
            unsigned char expect = (unsigned char)(pat(w->id, it, j) + P.writes);
            if (p[j] != expect) {
                fprintf(stderr, "falseshare: error: thread %u iteration %lu object %p byte %zu"
                                " is %02x, expected %02x\n",
                        w->id, it, (void *)p, j, p[j], expect);
                exit(1);
            }
        }
        free(p);
        pairs++;
    }
    w->pairs = pairs;
    w->first = first;
    w->t_start = t_start;
    w->t_end = now();
    return NULL;
}

/* The number of threads whose first object shares a cache line with the first object of
 * another thread that ran at the same time (one that ran before it may have left it its
 * heap, and that is no false sharing). */
static unsigned count_same_line(const worker_t *ws) {
    long l = sysconf(_SC_LEVEL1_DCACHE_LINESIZE);
    uintptr_t line = l > 0 ? (uintptr_t)l : 64;
    unsigned n = 0;
    for (unsigned t = 0; t < P.threads; t++) {
        uintptr_t a0 = ws[t].first / line, a1 = (ws[t].first + P.size - 1) / line;
        for (unsigned u = 0; u < P.threads; u++) {
            uintptr_t b0 = ws[u].first / line, b1 = (ws[u].first + P.size - 1) / line;
            int overlap = ws[t].t_start < ws[u].t_end && ws[u].t_start < ws[t].t_end;
            if (u != t && overlap && a0 <= b1 && b0 <= a1) {
                n++;
                break;
            }
        }
    }
    return n;
}

/* One run of one mode; returns the seconds from the first thread's start to the last one's
 * end, as the threads saw them: with more threads than cores the main thread may wake from
 * the start barrier only after the workers are done. */
static double run(int mode, worker_t *ws, pthread_t *ts, unsigned *same_line) {
    for (unsigned t = 0; t < P.threads; t++) ws[t] = (worker_t){.id = t};
    // scratch: the objects come from the main thread, allocated back to back
    if (mode == MODE_SCRATCH)
        for (unsigned t = 0; t < P.threads; t++) {
            ws[t].handed = alloc_obj("main thread");
            memset(ws[t].handed, 0, P.size);
        }
    pthread_barrier_init(&start_barrier, NULL, P.threads + 1);
    for (unsigned t = 0; t < P.threads; t++) {
        int e = pthread_create(&ts[t], NULL, worker, &ws[t]);
        if (e) {
            fprintf(stderr, "falseshare: error: pthread_create: %s\n", strerror(e));
            exit(1);
        }
    }
    pthread_barrier_wait(&start_barrier);
    for (unsigned t = 0; t < P.threads; t++) pthread_join(ts[t], NULL);
    pthread_barrier_destroy(&start_barrier);
    uint64_t pairs = 0;
    double t_start = ws[0].t_start, t_end = ws[0].t_end;
    for (unsigned t = 0; t < P.threads; t++) {
        pairs += ws[t].pairs;
        if (ws[t].t_start < t_start) t_start = ws[t].t_start;
        if (ws[t].t_end > t_end) t_end = ws[t].t_end;
    }
    double elapsed = t_end - t_start;
    uint64_t expect = (uint64_t)P.threads * P.iterations;
    if (pairs != expect) {
        fprintf(stderr, "falseshare: error: %" PRIu64 " malloc+free pairs, expected %" PRIu64 "\n",
                pairs, expect);
        exit(1);
    }
    *same_line = count_same_line(ws);
    return elapsed > 0 ? elapsed : 1e-9;
}

static void usage(void) {
    fprintf(stderr, "usage: falseshare [--smoke] [mode threads iterations size writes]\n"
                    "  mode: scratch, thrash or both\n"
                    "  defaults: both 4 50000 8 1000; --smoke: both 4 1000 8 250\n");
    exit(2);
}

int main(int argc, char **argv) {
    P = (params_t){.modes = MODE_BOTH, .threads = 4, .iterations = 50000, .size = 8,
                   .writes = 1000};
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--smoke") == 0)
            P = (params_t){.modes = MODE_BOTH, .threads = 4, .iterations = 1000, .size = 8,
                           .writes = 250, .smoke = 1};
    int pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--smoke") == 0) continue;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) usage();
        if (pos == 0) {
            if (strcmp(a, "scratch") == 0) P.modes = MODE_SCRATCH;
            else if (strcmp(a, "thrash") == 0) P.modes = MODE_THRASH;
            else if (strcmp(a, "both") == 0) P.modes = MODE_BOTH;
            else usage();
            pos++;
            continue;
        }
        uint64_t v;
        if (!parse_u64(a, &v)) usage();
        switch (pos++) {
        case 1: P.threads = v > 4096 ? 0 : (unsigned)v; break;
        case 2: P.iterations = (unsigned long)v; break;
        case 3: P.size = (size_t)v; break;
        case 4: P.writes = (unsigned long)v; break;
        default: usage();
        }
    }
    if (P.threads == 0 || P.iterations == 0 || P.size == 0 || P.size > ((size_t)1 << 20) ||
        P.writes == 0) {
        fprintf(stderr, "falseshare: bad arguments (need 1 <= threads <= 4096, iterations >= 1, "
                        "1 <= size <= 2^20, writes >= 1)\n");
        return 2;
    }

    worker_t *ws = calloc(P.threads, sizeof *ws);
    pthread_t *ts = calloc(P.threads, sizeof *ts);
    if (!ws || !ts) {
        fprintf(stderr, "falseshare: error: out of memory\n");
        return 1;
    }
    double seconds[2] = {0, 0};
    unsigned same_line[2] = {0, 0};
    if (P.modes & MODE_SCRATCH) seconds[0] = run(MODE_SCRATCH, ws, ts, &same_line[0]);
    if (P.modes & MODE_THRASH) seconds[1] = run(MODE_THRASH, ws, ts, &same_line[1]);
    free(ws);
    free(ts);
    double pairs = (double)P.threads * (double)P.iterations;
    static const char *const names[2] = {"scratch", "thrash"};
    for (int m = 0; m < 2; m++)
        if (P.modes & (1 << m))
            printf("falseshare mode=%s threads=%u iterations=%lu size=%zu seconds=%.3f "
                   "ops_per_s=%.0f same_line=%u\n",
                   names[m], P.threads, P.iterations, P.size, seconds[m], pairs / seconds[m],
                   same_line[m]);
    return 0;
}
