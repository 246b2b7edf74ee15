/* mt_churn.c -- thread churn: blocks outlive the threads that allocated them.
 * ROUNDS rounds; each round starts THREADS short-lived threads. A thread first frees its
 * share of the blocks the previous round left on the shared list (verifying their content),
 * then allocates BLOCKS new blocks of mixed sizes, fills them, puts them on the list and
 * exits. So every block is freed by another thread after its allocating thread has exited
 * and its heap has been orphaned (and adopted or absorbed by a later thread).
 * Asserts: contents intact; thread_exit and refill_adopt counters > 0; RSS after each round
 * (sampled after the join) does not grow: mean of the last 5 rounds <= 1.3x the mean of
 * rounds 2-4 + 6 MiB, and does not accumulate: mean of rounds 6-20 <= 1.75x round 1, which
 * held the same live set. */
#include <pthread.h>

#include "mt_common.h"

enum { ROUNDS = 20, THREADS = 4, BLOCKS = 3000 };

typedef struct rec {
    void *p;
    uint32_t n;
    uint64_t seq;
} rec_t;

// The blocks of the previous round, THREADS slices of BLOCKS records (written by the
// threads of one round, read by the next round's after pthread_join).
static rec_t *prev, *next;

static size_t pick_size(uint64_t *rng) {
    uint64_t r = mt_splitmix(rng);
    unsigned b = (unsigned)(r % 100);
    r >>= 8;
    if (b < 75) return 1 + (size_t)(r % 1024);
    if (b < 98) return 1025 + (size_t)(r % (15 * 1024));
    return 16 * 1024 + (size_t)(r % (112 * 1024));
}

typedef struct job {
    unsigned round, idx;
} job_t;

static void *worker(void *arg) {
    job_t *j = arg;
    // free the previous round's slice of another thread (idx + 1), so the freeing heap is
    // never the one that allocated it
    if (prev) {
        rec_t *r = prev + (size_t)((j->idx + 1) % THREADS) * BLOCKS;
        for (unsigned i = 0; i < BLOCKS; i++) {
            size_t bad = mt_verify(r[i].p, r[i].n, r[i].seq);
            CHECK(bad == SIZE_MAX, "round %u thread %u: block seq %" PRIu64 " (%u bytes) corrupt at %zu", j->round,
                  j->idx, r[i].seq, r[i].n, bad);
            T_FREE(r[i].p);
        }
    }
    uint64_t rng = (uint64_t)j->round * 1000 + j->idx;
    rec_t *out = next + (size_t)j->idx * BLOCKS;
    for (unsigned i = 0; i < BLOCKS; i++) {
        size_t n = pick_size(&rng);
        void *p = T_MALLOC(n);
        CHECK(p != NULL, "round %u thread %u: malloc(%zu) failed", j->round, j->idx, n);
        uint64_t seq = ((uint64_t)j->round << 32) | ((uint64_t)j->idx << 16) | i;
        mt_fill(p, n, seq);
        out[i] = (rec_t){p, (uint32_t)n, seq};
    }
    return NULL;
}

int main(void) {
    mt_test_name = "mt_churn";
    double t0 = mt_now();
    rec_t *lists[2];
    for (int i = 0; i < 2; i++) {
        lists[i] = calloc((size_t)THREADS * BLOCKS, sizeof(rec_t));
        CHECK(lists[i] != NULL, "calloc");
    }
    uint64_t exit0 = MT_STATS ? mt_stat("thread_exit") : 0;
    uint64_t adopt0 = MT_STATS ? mt_stat("refill_adopt") : 0;
    size_t rss[ROUNDS];
    for (unsigned round = 0; round < ROUNDS; round++) {
        next = lists[round & 1];
        prev = round ? lists[(round + 1) & 1] : NULL;
        pthread_t t[THREADS];
        job_t jobs[THREADS];
        for (unsigned i = 0; i < THREADS; i++) {
            jobs[i] = (job_t){round, i};
            CHECK(pthread_create(&t[i], NULL, worker, &jobs[i]) == 0, "pthread_create");
        }
        for (unsigned i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
        rss[round] = mt_rss();
    }
    // the main thread frees the last round's blocks
    rec_t *last = lists[(ROUNDS - 1) & 1];
    for (size_t i = 0; i < (size_t)THREADS * BLOCKS; i++) {
        CHECK(mt_verify(last[i].p, last[i].n, last[i].seq) == SIZE_MAX, "last round block %zu corrupt", i);
        T_FREE(last[i].p);
    }
    printf("mt_churn: RSS MiB per round:");
    for (unsigned i = 0; i < ROUNDS; i++) printf(" %.1f", rss[i] / 1048576.0);
    printf(" (%.2f s)\n", mt_now() - t0);
    if (MT_STATS) {
        uint64_t exits = mt_stat("thread_exit") - exit0, adopts = mt_stat("refill_adopt") - adopt0;
        printf("thread_exit=%" PRIu64 " refill_adopt=%" PRIu64 "\n", exits, adopts);
        CHECK(exits >= (uint64_t)ROUNDS * THREADS, "thread_exit = %" PRIu64 ", expected >= %u", exits, ROUNDS * THREADS);
        CHECK(adopts > 0, "refill_adopt = 0: no orphaned heap was ever adopted");
    }
    // RSS after a join is noisy (which heaps were adopted or absorbed, what the pool kept):
    // compare averages of several rounds, not single samples.
    // 1. no growth: the last 5 rounds against rounds 2-4 (after warm-up)
    double early = 0, late = 0, steady = 0;
    for (unsigned i = 1; i <= 3; i++) early += rss[i] / 3.0;
    for (unsigned i = ROUNDS - 5; i < ROUNDS; i++) late += rss[i] / 5.0;
    // 2. no accumulation: rounds 6..20 against round 1, which held one generation of blocks
    // with nothing to reuse; after each join exactly one generation is live again. (Measured
    // here: glibc and a heap that purges the free slabs of exited threads 1.1-1.5x; one that
    // keeps them resident 1.9-2.9x.)
    for (unsigned i = 5; i < ROUNDS; i++) steady += rss[i] / (double)(ROUNDS - 5);
    const double mib = 1048576.0;
    printf("mean RSS: rounds 2-4 %.1f MiB, last 5 rounds %.1f MiB, rounds 6-%u %.1f MiB = %.2fx round 1\n", early / mib,
           late / mib, ROUNDS, steady / mib, steady / rss[0]);
    if (MT_SANITIZER) {
        printf("sanitizer build: RSS limits not checked\n");
    } else {
        CHECK(late <= 1.3 * early + 6 * mib,
              "RSS grows with thread churn: mean of the last 5 rounds %.1f MiB, of rounds 2-4 %.1f MiB (limit 1.3x + 6 MiB)",
              late / mib, early / mib);
        CHECK(steady <= 1.75 * rss[0],
              "RSS accumulates with thread churn: rounds 6-%u average %.1f MiB = %.2fx the %.1f MiB after round 1, for "
              "the same live set (limit 1.75x)",
              ROUNDS, steady / mib, steady / rss[0], rss[0] / mib);
    }
    free(lists[0]);
    free(lists[1]);
    return 0;
}
