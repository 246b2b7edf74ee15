/* mt_handoff.c -- producer/consumer hand-off across threads.
 * Producers allocate blocks of mixed sizes (small, mid up to 1 MiB, a few large), fill each
 * with a pattern derived from its sequence id and pass it through a bounded queue; consumers
 * verify every byte, check the usable size, and free. Every block is freed by a thread other
 * than the one that allocated it, so the frees go through the remote queues and the
 * producers' refills drain them. Asserts: every block verified exactly once, the block
 * counts match, free_ss_remote > 0 and refill_remote_drain > 0. */
#include <pthread.h>

#include "mt_common.h"

enum { PRODUCERS = 2, CONSUMERS = 2, PER_PRODUCER = 60000 / MT_SCALE, QCAP = 512 };

typedef struct item {
    void *p;
    size_t size;
    uint64_t seq;
} item_t;

static struct {
    pthread_mutex_t mu;
    pthread_cond_t not_full, not_empty;
    item_t buf[QCAP];
    unsigned head, count;
    int producers_left;
} q = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER, {{0}}, 0, 0, PRODUCERS};

static void q_put(item_t it) {
    pthread_mutex_lock(&q.mu);
    while (q.count == QCAP) pthread_cond_wait(&q.not_full, &q.mu);
    q.buf[(q.head + q.count) % QCAP] = it;
    q.count++;
    pthread_cond_signal(&q.not_empty);
    pthread_mutex_unlock(&q.mu);
}

// Returns 0 when the queue is empty and every producer is done.
static int q_get(item_t *out) {
    pthread_mutex_lock(&q.mu);
    while (q.count == 0 && q.producers_left > 0) pthread_cond_wait(&q.not_empty, &q.mu);
    if (q.count == 0) {
        pthread_mutex_unlock(&q.mu);
        return 0;
    }
    *out = q.buf[q.head];
    q.head = (q.head + 1) % QCAP;
    q.count--;
    pthread_cond_signal(&q.not_full);
    pthread_mutex_unlock(&q.mu);
    return 1;
}

static void producer_done(void) {
    pthread_mutex_lock(&q.mu);
    q.producers_left--;
    pthread_cond_broadcast(&q.not_empty);
    pthread_mutex_unlock(&q.mu);
}

// Mostly small, a good share of mid sizes (up to 1 MiB), a few large blocks.
static size_t pick_size(uint64_t *rng) {
    uint64_t r = mt_splitmix(rng);
    unsigned bucket = (unsigned)(r % 1000);
    r >>= 10;
    if (bucket < 800) return 1 + (size_t)(r % 1024);                    // small
    if (bucket < 960) return 1025 + (size_t)(r % (64 * 1024 - 1024));   // mid, to 64 KiB
    if (bucket < 997) return 64 * 1024 + 1 + (size_t)(r % (1023 * 1024));  // mid, to 1 MiB
    return (1u << 20) + 1 + (size_t)(r % (3u << 20));                   // large, to 4 MiB
}

static _Atomic uint64_t produced_blocks, consumed_blocks, produced_bytes, consumed_bytes;
static _Atomic uint64_t seen_sum;  // sum of sequence ids seen by consumers
static unsigned char *seen;        // one flag per sequence id

static void *producer(void *arg) {
    unsigned id = (unsigned)(uintptr_t)arg;
    uint64_t rng = 0x1234 + id;
    for (uint64_t i = 0; i < PER_PRODUCER; i++) {
        uint64_t seq = (uint64_t)id * PER_PRODUCER + i;
        size_t n = pick_size(&rng);
        void *p = T_MALLOC(n);
        CHECK(p != NULL, "producer %u: malloc(%zu) failed", id, n);
        CHECK(((uintptr_t)p & 15) == 0, "producer %u: malloc(%zu) = %p is not 16-aligned", id, n, p);
        mt_fill(p, n, seq);
        produced_blocks++;
        produced_bytes += n;
        q_put((item_t){p, n, seq});
    }
    producer_done();
    return NULL;
}

static void *consumer(void *arg) {
    unsigned id = (unsigned)(uintptr_t)arg;
    // Allocate once, so that this is an ordinary thread with a heap of its own (threads that
    // only free have none: mt_stats_heapless covers them).
    void *scratch = T_MALLOC(64);
    CHECK(scratch != NULL, "consumer %u: malloc(64) failed", id);
    item_t it;
    while (q_get(&it)) {
        size_t bad = mt_verify(it.p, it.size, it.seq);
        CHECK(bad == SIZE_MAX, "consumer %u: block seq %" PRIu64 " (%zu bytes at %p) corrupt at offset %zu", id,
              it.seq, it.size, it.p, bad);
        size_t us = T_USABLE(it.p);
        CHECK(us >= it.size, "consumer %u: usable size %zu < requested %zu", id, us, it.size);
        CHECK(it.seq < (uint64_t)PRODUCERS * PER_PRODUCER, "consumer %u: bad seq %" PRIu64, id, it.seq);
        CHECK(seen[it.seq] == 0, "consumer %u: seq %" PRIu64 " received twice", id, it.seq);
        seen[it.seq] = 1;  // each seq goes to exactly one consumer
        seen_sum += it.seq;
        consumed_blocks++;
        consumed_bytes += it.size;
        T_FREE(it.p);
    }
    T_FREE(scratch);
    return NULL;
}

int main(void) {
    mt_test_name = "mt_handoff";
    double t0 = mt_now();
    seen = calloc((size_t)PRODUCERS * PER_PRODUCER, 1);
    CHECK(seen != NULL, "calloc");
    uint64_t remote0 = MT_STATS ? mt_stat("free_ss_remote") : 0;
    uint64_t drain0 = MT_STATS ? mt_stat("refill_remote_drain") : 0;

    pthread_t prod[PRODUCERS], cons[CONSUMERS];
    for (unsigned i = 0; i < CONSUMERS; i++)
        CHECK(pthread_create(&cons[i], NULL, consumer, (void *)(uintptr_t)i) == 0, "pthread_create");
    for (unsigned i = 0; i < PRODUCERS; i++)
        CHECK(pthread_create(&prod[i], NULL, producer, (void *)(uintptr_t)i) == 0, "pthread_create");
    for (unsigned i = 0; i < PRODUCERS; i++) pthread_join(prod[i], NULL);
    for (unsigned i = 0; i < CONSUMERS; i++) pthread_join(cons[i], NULL);

    const uint64_t total = (uint64_t)PRODUCERS * PER_PRODUCER;
    CHECK(produced_blocks == total, "produced %" PRIu64 " blocks, expected %" PRIu64, (uint64_t)produced_blocks, total);
    CHECK(consumed_blocks == total, "consumed %" PRIu64 " of %" PRIu64 " blocks", (uint64_t)consumed_blocks, total);
    CHECK(consumed_bytes == produced_bytes, "consumed %" PRIu64 " bytes, produced %" PRIu64,
          (uint64_t)consumed_bytes, (uint64_t)produced_bytes);
    CHECK(seen_sum == total * (total - 1) / 2, "sequence ids seen do not add up");
    for (uint64_t s = 0; s < total; s++) CHECK(seen[s] == 1, "seq %" PRIu64 " never verified", s);

    if (MT_STATS) {
        uint64_t remote = mt_stat("free_ss_remote") - remote0;
        uint64_t drain = mt_stat("refill_remote_drain") - drain0;
        CHECK(remote > 0, "free_ss_remote did not move: cross-thread frees did not take the remote path");
        CHECK(drain > 0, "refill_remote_drain did not move: remote frees were never drained");
        printf("free_ss_remote=%" PRIu64 " refill_remote_drain=%" PRIu64 "\n", remote, drain);
    }
    // The heap is usable afterwards, and the blocks came back: a big burst of the classes
    // used above works in this thread.
    for (unsigned i = 0; i < 1000; i++) {
        size_t n = 16 + i * 37;
        void *p = T_MALLOC(n);
        CHECK(p != NULL, "malloc after the run");
        mt_fill(p, n, i);
        CHECK(mt_verify(p, n, i) == SIZE_MAX, "fresh block corrupt");
        T_FREE(p);
    }
    free(seen);
    printf("mt_handoff: %" PRIu64 " blocks, %" PRIu64 " MiB handed off and verified in %.2f s\n", total,
           (uint64_t)produced_bytes >> 20, mt_now() - t0);
    return 0;
}
