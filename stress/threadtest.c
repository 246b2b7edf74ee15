/* threadtest: the Hoard-style threadtest (plain malloc/free, C11 + pthreads).
 *
 * Each thread, for each iteration, allocates `objects` blocks of `size` bytes into an
 * array, fills each block with a pattern, does `work` units of busy work per object, then
 * checks and frees them all. A wrong byte prints an error and exits 1.
 *
 * usage: threadtest [--smoke] [threads iterations objects work size]
 * Prints: threadtest threads=T iterations=I objects=O size=Z seconds=S ops_per_s=X
 * (ops = malloc+free pairs over all threads)
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

#include "stress_args.h"

typedef struct {
    unsigned threads;
    unsigned long iterations;
    size_t objects;
    unsigned long work;
    size_t size;
    int smoke;
} params_t;

static params_t P;

typedef struct {
    unsigned id;
    uint64_t pairs;
    double t_start, t_end; /* after the start barrier, after the last free */
} worker_t;

static pthread_barrier_t start_barrier;

/* the pattern byte j of object i in iteration it of thread t */
static inline unsigned char pat(unsigned t, unsigned long it, size_t i, size_t j) {
    return (unsigned char)((t * 131u) ^ (unsigned)(it * 17u) ^ (unsigned)(i * 7u) ^ (unsigned)j);
}

static void busy(unsigned long work) {
    volatile unsigned long f = 1;
    for (unsigned long w = 0; w < work; w++) f = f * 3 + w;
}

static void *worker(void *arg) {
    worker_t *w = arg;
    unsigned char **a = malloc(P.objects * sizeof *a);
    if (!a) {
        fprintf(stderr, "threadtest: error: thread %u: no memory for the array\n", w->id);
        exit(1);
    }
    pthread_barrier_wait(&start_barrier);
    w->t_start = now();
    for (unsigned long it = 0; it < P.iterations; it++) {
        for (size_t i = 0; i < P.objects; i++) {
            unsigned char *p = malloc(P.size);
            if (!p) {
                fprintf(stderr, "threadtest: error: malloc(%zu) returned NULL\n", P.size);
                exit(1);
            }
            for (size_t j = 0; j < P.size; j++) p[j] = pat(w->id, it, i, j);
            busy(P.work);
            a[i] = p;
        }
        for (size_t i = 0; i < P.objects; i++) {
            unsigned char *p = a[i];
            for (size_t j = 0; j < P.size; j++)
                if (p[j] != pat(w->id, it, i, j)) {
                    fprintf(stderr,
                            "threadtest: error: thread %u iteration %lu object %zu (%p) byte %zu"
                            " is %02x, expected %02x\n",
                            w->id, it, i, (void *)p, j, p[j], pat(w->id, it, i, j));
                    exit(1);
                }
            free(p);
        }
        w->pairs += P.objects;
    }
    w->t_end = now();
    free(a);
    return NULL;
}

static void usage(void) {
    fprintf(stderr, "usage: threadtest [--smoke] [threads iterations objects work size]\n"
                    "  defaults: 2 50 30000 0 8; --smoke: 2 100 10000 2 24 plus checks\n");
    exit(2);
}

int main(int argc, char **argv) {
    P = (params_t){.threads = 2, .iterations = 50, .objects = 30000, .work = 0, .size = 8};
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--smoke") == 0)
            P = (params_t){.threads = 2, .iterations = 100, .objects = 10000, .work = 2,
                           .size = 24, .smoke = 1};
    int pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--smoke") == 0) continue;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) usage();
        uint64_t v;
        if (!parse_u64(a, &v)) usage();
        switch (pos++) {
        case 0: P.threads = (unsigned)v; break;
        case 1: P.iterations = (unsigned long)v; break;
        case 2: P.objects = (size_t)v; break;
        case 3: P.work = (unsigned long)v; break;
        case 4: P.size = (size_t)v; break;
        default: usage();
        }
    }
    if (P.threads == 0 || P.threads > 4096 || P.objects == 0 || P.iterations == 0 || P.size == 0) {
        fprintf(stderr, "threadtest: bad arguments (threads, iterations, objects, size >= 1)\n");
        return 2;
    }

    worker_t *ws = calloc(P.threads, sizeof *ws);
    pthread_t *ts = calloc(P.threads, sizeof *ts);
    if (!ws || !ts) {
        fprintf(stderr, "threadtest: error: out of memory\n");
        return 1;
    }
    pthread_barrier_init(&start_barrier, NULL, P.threads + 1);
    for (unsigned t = 0; t < P.threads; t++) {
        ws[t].id = t;
        int e = pthread_create(&ts[t], NULL, worker, &ws[t]);
        if (e) {
            fprintf(stderr, "threadtest: error: pthread_create: %s\n", strerror(e));
            return 1;
        }
    }
    pthread_barrier_wait(&start_barrier);
    for (unsigned t = 0; t < P.threads; t++) pthread_join(ts[t], NULL);
    pthread_barrier_destroy(&start_barrier);
    // The time runs from the first worker's start to the last one's end, as the workers saw
    // them: with more threads than cores, this thread may leave the barrier only after the
    // workers are done, so its own clock would start late.
    double t_start = ws[0].t_start, t_end = ws[0].t_end;
    for (unsigned t = 1; t < P.threads; t++) {
        if (ws[t].t_start < t_start) t_start = ws[t].t_start;
        if (ws[t].t_end > t_end) t_end = ws[t].t_end;
    }
    double elapsed = t_end - t_start;

    uint64_t pairs = 0;
    for (unsigned t = 0; t < P.threads; t++) pairs += ws[t].pairs;
    uint64_t expect = (uint64_t)P.threads * P.iterations * P.objects;
    if (pairs != expect) {
        fprintf(stderr, "threadtest: error: %" PRIu64 " malloc+free pairs, expected %" PRIu64 "\n",
                pairs, expect);
        return 1;
    }
    free(ws);
    free(ts);
    if (elapsed <= 0) elapsed = 1e-9;
    printf("threadtest threads=%u iterations=%lu objects=%zu size=%zu seconds=%.3f ops_per_s=%.0f\n",
           P.threads, P.iterations, P.objects, P.size, elapsed, (double)pairs / elapsed);
    return 0;
}
