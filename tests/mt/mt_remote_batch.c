/* mt_remote_batch.c -- remote frees are gathered per destination heap and pushed in
 * batches, and none is lost.
 *
 * The main thread allocates N blocks; a consumer thread that never allocates frees them
 * all and exits. Asserts: the frees went out in about N/64 batches, not one CAS per block
 * (free_remote_batches); the last, partial batch was pushed when the consumer exited; after
 * hak_trim the owner has drained every one of the N blocks (refill_remote_drain) and its
 * in-use bytes are back where they started. Then the same with two owners whose blocks the
 * consumer frees alternately, so that every free switches the destination: each switch
 * pushes the batch for the other heap and nothing is lost either. */
#include <pthread.h>

#include "mt_common.h"

enum { N = 10000, SIZE = 64 };

static void *blocks[N];
static unsigned nblocks;

static void *consumer(void *arg) {
    (void)arg;
    for (unsigned i = 0; i < nblocks; i++) T_FREE(blocks[i]);  // no malloc in this thread
    return NULL;
}

static void run_consumer(void) {
    pthread_t t;
    CHECK(pthread_create(&t, NULL, consumer, NULL) == 0, "pthread_create");
    CHECK(pthread_join(t, NULL) == 0, "pthread_join");
}

static size_t in_use(void) {
    hak_info_t in;
    hak_info(&in);
    return in.in_use_bytes;
}

/* A second owner: allocates every other block of the array, then waits (alive, so its
 * heap is not orphaned) until the consumer is done. */
static pthread_barrier_t filled, consumed;

static void *second_owner(void *arg) {
    (void)arg;
    for (unsigned i = 1; i < N; i += 2) {
        blocks[i] = T_MALLOC(SIZE);
        CHECK(blocks[i] != NULL, "malloc");
        mt_fill(blocks[i], SIZE, i);
    }
    pthread_barrier_wait(&filled);
    pthread_barrier_wait(&consumed);
    T_TRIM();  // drains this heap's queue
    return NULL;
}

int main(void) {
    mt_test_name = "mt_remote_batch";
    void *warm = T_MALLOC(SIZE);  // set the main heap up
    size_t base = in_use();

    // one owner, one consumer
    uint64_t b0 = mt_hak_stat("free_remote_batches"), r0 = mt_hak_stat("free_ss_remote");
    for (unsigned i = 0; i < N; i++) {
        blocks[i] = T_MALLOC(SIZE);
        CHECK(blocks[i] != NULL, "malloc");
        mt_fill(blocks[i], SIZE, i);
    }
    nblocks = N;
    run_consumer();
    if (MT_STATS) {
        uint64_t batches = mt_hak_stat("free_remote_batches") - b0;
        CHECK(mt_hak_stat("free_ss_remote") - r0 == N, "free_ss_remote %" PRIu64 ", expected %d",
              mt_hak_stat("free_ss_remote") - r0, N);
        // 64 blocks a batch; the last 16 go out when the consumer exits
        CHECK(batches == (N + 63) / 64, "%" PRIu64 " batches for %d remote frees", batches, N);
    }
    uint64_t d0 = mt_hak_stat("refill_remote_drain");
    T_TRIM();
    if (MT_STATS)
        CHECK(mt_hak_stat("refill_remote_drain") - d0 == N, "drained %" PRIu64 " of %d blocks",
              mt_hak_stat("refill_remote_drain") - d0, N);
    CHECK(in_use() == base, "in use %zu after every block came back, %zu before", in_use(), base);

    // two owners, alternating destinations
    pthread_barrier_init(&filled, NULL, 2);
    pthread_barrier_init(&consumed, NULL, 2);
    pthread_t t2;
    CHECK(pthread_create(&t2, NULL, second_owner, NULL) == 0, "pthread_create");
    for (unsigned i = 0; i < N; i += 2) {
        blocks[i] = T_MALLOC(SIZE);
        CHECK(blocks[i] != NULL, "malloc");
        mt_fill(blocks[i], SIZE, i);
    }
    pthread_barrier_wait(&filled);
    for (unsigned i = 0; i < N; i++)
        CHECK(mt_verify(blocks[i], SIZE, i) == SIZE_MAX, "block %u changed before the consumer ran", i);
    b0 = mt_hak_stat("free_remote_batches");
    run_consumer();
    if (MT_STATS) {
        uint64_t batches = mt_hak_stat("free_remote_batches") - b0;
        CHECK(batches == N, "%" PRIu64 " batches for %d frees that switch heap every time", batches, N);
    }
    pthread_barrier_wait(&consumed);
    CHECK(pthread_join(t2, NULL) == 0, "pthread_join");
    T_TRIM();
    CHECK(in_use() == base, "in use %zu after both owners drained, %zu before", in_use(), base);
    T_FREE(warm);
    printf("mt_remote_batch: ok\n");
    return 0;
}
