/* learn_phases.c -- a large-block workload whose best BigCache bound changes with its phase,
 * for HAKMEM_LEARN (docs/DESIGN-NOTES.md, UCB1). Plain malloc/free: run it under libhakmem.so
 * with LD_PRELOAD and a fixed HAKMEM_BIGCACHE_MAX, or with HAKMEM_LEARN=1.
 *
 *   learn_phases [--smoke] [PHASES]    (default 6 phases; --smoke 2)
 *
 * Phases alternate, 4000 large mallocs each:
 *   burst    40 blocks of 2 MiB allocated, every page written once, all freed, again: 80 MiB
 *            freed at a time, which only a 128 MiB bound keeps whole.
 *   steady   a replace loop over 4 slots of 1-3 MiB blocks (like scenarios vm): any bound
 *            above a few blocks serves it.
 * Output: ops (large mallocs), ns_per_op (wall time of the whole run over ops), minflt,
 * faults_per_op, peak_rss_kb. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define MiB ((size_t)1 << 20)
enum { BURST_BLOCKS = 40, SLOTS = 4 };

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static char *get(size_t n) {
    char *p = malloc(n);
    if (!p) {
        fprintf(stderr, "learn_phases: error: malloc(%zu) failed\n", n);
        exit(1);
    }
    for (size_t i = 0; i < n; i += 4096) p[i] = 1;
    return p;
}

int main(int argc, char **argv) {
    unsigned phases = 6, per_phase = 4000;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--smoke") == 0) phases = 2, per_phase = 400;
        else phases = (unsigned)atoi(argv[i]);
    }
    static char *blk[BURST_BLOCKS];
    char *slot[SLOTS] = {0};
    uint64_t rng = 42, ops = 0;
    struct rusage r0, r1;
    getrusage(RUSAGE_SELF, &r0);
    uint64_t t0 = now_ns();
    for (unsigned ph = 0; ph < phases; ph++) {
        for (unsigned done = 0; done < per_phase;) {
            if (ph % 2 == 0) {
                for (unsigned i = 0; i < BURST_BLOCKS; i++) blk[i] = get(2 * MiB);
                for (unsigned i = 0; i < BURST_BLOCKS; i++) free(blk[i]);
                done += BURST_BLOCKS;
            } else {
                rng = rng * 6364136223846793005ull + 1442695040888963407ull;
                unsigned s = (unsigned)((rng >> 33) % SLOTS);
                free(slot[s]);
                slot[s] = get(MiB + (size_t)((rng >> 13) % (2 * MiB)));
                done++;
            }
        }
        ops += per_phase;
    }
    for (unsigned s = 0; s < SLOTS; s++) free(slot[s]);
    uint64_t t1 = now_ns();
    getrusage(RUSAGE_SELF, &r1);
    uint64_t flt = (uint64_t)(r1.ru_minflt - r0.ru_minflt);
    printf("learn_phases ops=%llu ns_per_op=%.1f minflt=%llu faults_per_op=%.2f peak_rss_kb=%ld\n",
           (unsigned long long)ops, (double)(t1 - t0) / (double)ops, (unsigned long long)flt,
           (double)flt / (double)ops, r1.ru_maxrss);
    return 0;
}
