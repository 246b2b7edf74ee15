/* after_purge.c -- the cost of a malloc+free pair in a span whose free pages were purged.
 *
 *   after_purge [0|1|2]
 *
 * Allocates 200000 blocks of 64 bytes, frees all but one in 256 (no span empties), then:
 * 0 nothing more; 1 hak_trim(0) (purges the pages of free blocks now); 2 sleeps 400 ms so
 * that the purge thread does it (run with HAKMEM_DECAY_MS=100). Then times 20 million
 * malloc/free pairs round-robin over 256 blocks and prints ns per pair and the bytes the
 * purge took (ss_purge_block_bytes). While a span has purged blocks every free into it takes
 * the slow path; the owner puts them back after 64 such frees (docs/DESIGN-NOTES.md, "Pages
 * of free small blocks"). Uses the prefixed API, linked with libhakmem.a. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "hakmem.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

enum { N = 200000, WORKING = 256 };
static void *blocks[N];

int main(int argc, char **argv) {
    int mode = argc > 1 ? atoi(argv[1]) : 0;
    for (int i = 0; i < N; i++) blocks[i] = hak_malloc(64);
    for (int i = 0; i < N; i++)
        if (i % 256) hak_free(blocks[i]);
    if (mode == 1) hak_trim(0);
    if (mode == 2) {
        struct timespec s = {0, 400000000};
        nanosleep(&s, NULL);
    }
    void *w[WORKING] = {0};
    const long pairs = 20000000;
    double t0 = now();
    for (long it = 0; it < pairs; it++) {
        int k = (int)(it & (WORKING - 1));
        if (w[k]) hak_free(w[k]);
        w[k] = hak_malloc(64);
    }
    double t1 = now();
    printf("after_purge mode=%d ns_per_pair=%.2f purged_bytes=%llu\n", mode, (t1 - t0) / (double)pairs * 1e9,
           (unsigned long long)hak_stat("ss_purge_block_bytes"));
    for (int k = 0; k < WORKING; k++) hak_free(w[k]);
    for (int i = 0; i < N; i += 256) hak_free(blocks[i]);
    return 0;
}
