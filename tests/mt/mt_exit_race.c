/* mt_exit_race.c -- remote frees racing with the owner's exit, then a leak check.
 * Each round a producer allocates BLOCKS blocks (small and mid), publishes them one by one
 * and exits at once, while a consumer frees them as they appear: the frees reach the
 * producer's heap before, during and after its exit handler flushes, drains and orphans it.
 * The next round's threads adopt or absorb those heaps. A third thread calls hak_trim()
 * now and then (it drains and releases orphaned heaps concurrently).
 * Asserts: every block intact when freed; after the last round and a trim by main,
 * hak_info().in_use_bytes is back near its starting value: no remotely freed block was
 * lost in a queue that nobody drains, and none was counted twice. */
#include <pthread.h>
#include <stdatomic.h>

#include "mt_common.h"

enum { ROUNDS = 150 / MT_SCALE, BLOCKS = 3000 };

static _Atomic(void *) slots[BLOCKS];
static _Atomic unsigned published;
static atomic_int stop_trim;

typedef struct hdr {
    uint32_t n, round;
} hdr_t;

static size_t pick(uint64_t *rng) {
    uint64_t r = mt_splitmix(rng);
    return (r % 10 < 8) ? 16 + (size_t)((r >> 8) % 1000) : 1025 + (size_t)((r >> 8) % 30000);
}

static void *producer(void *arg) {
    unsigned round = (unsigned)(uintptr_t)arg;
    uint64_t rng = round;
    for (unsigned i = 0; i < BLOCKS; i++) {
        size_t n = pick(&rng);
        hdr_t *h = T_MALLOC(n);
        CHECK(h != NULL, "round %u: malloc(%zu) failed", round, n);
        h->n = (uint32_t)n;
        h->round = round;
        mt_fill(h + 1, n - sizeof *h, round * BLOCKS + i);
        atomic_store_explicit(&slots[i], h, memory_order_release);
        atomic_store_explicit(&published, i + 1, memory_order_release);
    }
    return NULL;  // exits while the consumer is still freeing
}

static void *consumer(void *arg) {
    unsigned round = (unsigned)(uintptr_t)arg;
    for (unsigned i = 0; i < BLOCKS; i++) {
        while (atomic_load_explicit(&published, memory_order_acquire) <= i) sched_yield();
        hdr_t *h = atomic_load_explicit(&slots[i], memory_order_acquire);
        CHECK(h->round == round, "round %u: block %u from round %u", round, i, h->round);
        size_t bad = mt_verify(h + 1, h->n - sizeof *h, round * BLOCKS + i);
        CHECK(bad == SIZE_MAX, "round %u: block %u corrupt at %zu", round, i, bad);
        T_FREE(h);
    }
    return NULL;
}

static void *trimmer(void *arg) {
    (void)arg;
    while (!atomic_load(&stop_trim)) {
        T_TRIM();
        usleep(2000);
    }
    return NULL;
}

int main(void) {
    mt_test_name = "mt_exit_race";
    T_TRIM();
    hak_info_t in0, in1;
    hak_info(&in0);
    pthread_t tt;
    CHECK(pthread_create(&tt, NULL, trimmer, NULL) == 0, "pthread_create");
    for (unsigned r = 0; r < ROUNDS; r++) {
        atomic_store(&published, 0);
        pthread_t p, c;
        CHECK(pthread_create(&c, NULL, consumer, (void *)(uintptr_t)r) == 0, "pthread_create");
        CHECK(pthread_create(&p, NULL, producer, (void *)(uintptr_t)r) == 0, "pthread_create");
        pthread_join(p, NULL);
        pthread_join(c, NULL);
    }
    atomic_store(&stop_trim, 1);
    pthread_join(tt, NULL);
    T_TRIM();
    hak_info(&in1);
    printf("mt_exit_race: %u rounds of %u blocks; in use %zu -> %zu bytes, mapped %zu -> %zu, heaps %zu\n", ROUNDS,
           BLOCKS, in0.in_use_bytes, in1.in_use_bytes, in0.mapped_bytes, in1.mapped_bytes, in1.thread_heaps);
    CHECK(in1.in_use_bytes <= in0.in_use_bytes + (256u << 10),
          "%zu bytes still in use after every block was freed and the heap trimmed (%zu at the start): remotely freed "
          "blocks were lost",
          in1.in_use_bytes, in0.in_use_bytes);
    CHECK(in1.thread_heaps <= 8, "%zu heaps for at most 3 threads at a time", in1.thread_heaps);
    return 0;
}
