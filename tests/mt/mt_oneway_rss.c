/* mt_oneway_rss.c -- memory stays bounded under one-way traffic.
 * One thread only allocates (ITERS blocks, in batches), another only frees what it receives
 * through a bounded queue, so every block is freed remotely and must find its way back to the
 * allocating thread's heap. The live set is bounded by the queue; RSS is sampled from
 * /proc/self/statm and must stay on the early plateau: the largest of the last samples may
 * not exceed 1.5x the largest sample of the warm-up window (plus a small absolute slack). */
#include <pthread.h>

#include "mt_common.h"

// QCAP bounds the blocks in flight (about 2.4 MiB a batch at this size mix): small, so that
// a consumer starved by a loaded machine cannot raise RSS by much without a real leak.
enum { BATCH = 256, QCAP = 4, BATCHES = 3000, SAMPLE_EVERY = 25 };
#define NSAMPLES (BATCHES / SAMPLE_EVERY)

typedef struct batch {
    void *p[BATCH];
    uint32_t n[BATCH];
} batch_t;

static struct {
    pthread_mutex_t mu;
    pthread_cond_t not_full, not_empty;
    batch_t *slot[QCAP];
    unsigned head, count;
    int done;
} q = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER, {0}, 0, 0, 0};

static void q_put(batch_t *b) {
    pthread_mutex_lock(&q.mu);
    while (q.count == QCAP) pthread_cond_wait(&q.not_full, &q.mu);
    q.slot[(q.head + q.count) % QCAP] = b;
    q.count++;
    pthread_cond_signal(&q.not_empty);
    pthread_mutex_unlock(&q.mu);
}

static batch_t *q_get(void) {
    pthread_mutex_lock(&q.mu);
    while (q.count == 0 && !q.done) pthread_cond_wait(&q.not_empty, &q.mu);
    batch_t *b = NULL;
    if (q.count) {
        b = q.slot[q.head];
        q.head = (q.head + 1) % QCAP;
        q.count--;
        pthread_cond_signal(&q.not_full);
    }
    pthread_mutex_unlock(&q.mu);
    return b;
}

static size_t rss[NSAMPLES];
static _Atomic uint64_t freed;

static size_t pick_size(uint64_t *rng) {
    uint64_t r = mt_splitmix(rng);
    unsigned b = (unsigned)(r % 100);
    r >>= 8;
    if (b < 70) return 8 + (size_t)(r % 1017);             // small
    if (b < 97) return 1025 + (size_t)(r % (31 * 1024));   // mid, to 32 KiB
    if (b < 99 || r % 8) return 32 * 1024 + (size_t)(r % (224 * 1024));  // mid, to 256 KiB
    return (1u << 20) + 4096 + (size_t)(r % (1u << 20));   // large (1 in 800)
}

static void *allocator(void *arg) {
    (void)arg;
    uint64_t rng = 42;
    for (unsigned i = 0; i < BATCHES; i++) {
        // batch records come from libc: only the blocks under test use hakmem
        batch_t *b = malloc(sizeof *b);
        CHECK(b != NULL, "malloc batch");
        for (unsigned j = 0; j < BATCH; j++) {
            size_t n = pick_size(&rng);
            char *p = T_MALLOC(n);
            CHECK(p != NULL, "allocator: malloc(%zu) failed at batch %u", n, i);
            // touch every page and the ends, so RSS reflects what the blocks occupy
            for (size_t o = 0; o < n; o += 4096) p[o] = (char)o;
            p[n - 1] = (char)j;
            ((uint32_t *)p)[0] = (uint32_t)(i * BATCH + j);
            b->p[j] = p;
            b->n[j] = (uint32_t)n;
        }
        q_put(b);
        if (i % SAMPLE_EVERY == SAMPLE_EVERY - 1) rss[i / SAMPLE_EVERY] = mt_rss();
    }
    pthread_mutex_lock(&q.mu);
    q.done = 1;
    pthread_cond_broadcast(&q.not_empty);
    pthread_mutex_unlock(&q.mu);
    return NULL;
}

static void *freer(void *arg) {
    (void)arg;
    batch_t *b;
    uint32_t expect = 0;
    while ((b = q_get()) != NULL) {
        for (unsigned j = 0; j < BATCH; j++) {
            char *p = b->p[j];
            CHECK(((uint32_t *)p)[0] == expect, "freer: block %u has tag %u", expect, ((uint32_t *)p)[0]);
            CHECK(p[b->n[j] - 1] == (char)j, "freer: block %u last byte changed", expect);
            expect++;
            T_FREE(p);
            freed++;
        }
        free(b);
    }
    return NULL;
}

int main(void) {
    mt_test_name = "mt_oneway_rss";
    double t0 = mt_now();
    pthread_t a, f;
    CHECK(pthread_create(&f, NULL, freer, NULL) == 0, "pthread_create");
    CHECK(pthread_create(&a, NULL, allocator, NULL) == 0, "pthread_create");
    pthread_join(a, NULL);
    pthread_join(f, NULL);
    CHECK(freed == (uint64_t)BATCHES * BATCH, "freed %" PRIu64 " blocks of %u", (uint64_t)freed, BATCHES * BATCH);

    // warm-up plateau: samples 10%..30%; the tail: the last 20%
    size_t plateau = 0, tail = 0;
    for (unsigned i = NSAMPLES / 10; i < NSAMPLES * 3 / 10; i++)
        if (rss[i] > plateau) plateau = rss[i];
    for (unsigned i = NSAMPLES * 8 / 10; i < NSAMPLES; i++)
        if (rss[i] > tail) tail = rss[i];
    const size_t slack = 8u << 20;
    printf("mt_oneway_rss: %u blocks; RSS MiB:", BATCHES * BATCH);
    for (unsigned i = 0; i < NSAMPLES; i += NSAMPLES / 12) printf(" %.1f", rss[i] / 1048576.0);
    printf("; plateau %.1f MiB, tail %.1f MiB, %.2f s\n", plateau / 1048576.0, tail / 1048576.0, mt_now() - t0);
    CHECK(plateau > 0, "no RSS samples");
    if (!MT_SANITIZER)
        CHECK(tail <= plateau + plateau / 2 + slack,
              "RSS grew under one-way traffic: last samples peak at %.1f MiB, early plateau %.1f MiB (limit 1.5x + 8 MiB)",
              tail / 1048576.0, plateau / 1048576.0);
    else
        printf("sanitizer build: RSS limit not checked\n");
    // the remote frees came back: the allocating thread drained its queue
    if (MT_STATS) CHECK(mt_stat("refill_remote_drain") > 0, "the allocating thread never drained a remote free");
    return 0;
}
