/* xfree: producer/consumer cross-thread frees (plain malloc/free, C11 + pthreads).
 *
 * Producer threads only allocate: each allocates `blocks` random-size blocks, tags them and
 * hands them over in batches of `batch` blocks, round-robin over the consumers, through one
 * bounded queue per consumer (mutex + condvar, one lock per batch). Consumer threads only
 * free: each takes batches from its queue, checks every tag and frees the block. So every
 * free is a remote free of a block whose allocating thread is still allocating.
 *
 * Every block carries a tag derived from its producer, sequence number and size: a hash
 * word in its first bytes (up to 8) and a hash byte in its last byte, checked against the
 * batch entry before the free. Each consumer also checks that it receives each producer's
 * batches in order with consecutive sequence numbers, and at the end the per-producer block
 * counts and byte sums of the consumers must match the producers': every block was freed
 * exactly once. A mismatch prints an error and exits 1.
 *
 * usage: xfree [--smoke] [producers consumers blocks min_size max_size batch seed]
 * Prints: xfree producers=P consumers=C blocks=N seconds=S ops_per_s=X
 * (blocks = per producer; ops = blocks freed over all consumers)
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

/* Batches a consumer's queue holds: enough that a producer rarely waits on a consumer that
 * is only briefly behind, few enough that the blocks in flight stay a small working set.
 * A sleeping thread is woken only when half the queue is ready for it, not per batch: on
 * a machine with fewer cores than threads a wake-up per batch costs more than the batch. */
#define QUEUE_BATCHES 16
#define QUEUE_WAKE (QUEUE_BATCHES / 2)

typedef struct {
    unsigned producers, consumers;
    uint64_t blocks; /* per producer */
    size_t min_size, max_size;
    size_t batch;
    uint64_t seed;
    int smoke;
} params_t;

/* One block in flight: what the producer knows about it. */
typedef struct {
    void *p;
    uint32_t seq;
    uint32_t size;
} entry_t;

/* A batch in a queue slot: the entries live in the queue's storage. */
typedef struct {
    unsigned producer;
    size_t count;
} slot_t;

/* One consumer's bounded queue. Every field is read and written under mu; producers fill
 * slots at (head + len) and the consumer empties the slot at head. Aligned so that two
 * queues never share a cache line. */
typedef struct {
    _Alignas(64) pthread_mutex_t mu;
    pthread_cond_t not_empty; /* the consumer waits for a batch or the last producer */
    pthread_cond_t not_full;  /* producers wait for a free slot */
    unsigned head, len;
    unsigned producers_done;
    unsigned producers_waiting; /* on not_full */
    int consumer_waiting;       /* on not_empty */
    slot_t slot[QUEUE_BATCHES];
    entry_t *entries; /* QUEUE_BATCHES * batch; slot i uses [i * batch, (i + 1) * batch) */
} queue_t;

/* Per-thread state: a producer writes its own and the main thread reads it after the join. */
typedef struct {
    unsigned id;
    entry_t *buf;        /* producer: the batch being filled; consumer: the batch being freed */
    uint64_t blocks;     /* producer: allocated; consumer: freed, over all producers */
    uint64_t bytes;      /* producer: requested bytes allocated */
    uint64_t *recv;      /* consumer: blocks received per producer */
    uint64_t *recv_bytes;
    uint64_t *next_batch; /* consumer: the batch index it expects next from each producer */
    double t_start, t_end; /* after the start barrier, after its last block */
} worker_t;

static params_t P;
static queue_t *queues;
static pthread_barrier_t start_barrier;

static size_t rand_size(uint64_t *rng) {
    return P.min_size + (size_t)(splitmix(rng) % (uint64_t)(P.max_size - P.min_size + 1));
}

/* Tag: the hash of (producer, seq, size) in the first min(size - 1, 8) bytes, and a byte of
 * a second hash in the last byte (never 0, so a zeroed block fails). */
static uint64_t tag_hash(unsigned producer, uint32_t seq, uint32_t size) {
    uint64_t s = ((uint64_t)producer << 48) ^ ((uint64_t)seq << 16) ^
                 ((uint64_t)size * 0x2545f491ULL);
    return splitmix(&s);
}
static unsigned char tag_last(uint64_t h) {
    return (unsigned char)((h * 0xc2b2ae3d27d4eb4fULL) >> 56) | 1u;
}
static size_t tag_head_len(size_t size) { return size > 8 ? 8 : size - 1; }

static void tag_write(void *p, unsigned producer, uint32_t seq, uint32_t size) {
    uint64_t h = tag_hash(producer, seq, size);
    unsigned char b[8];
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(h >> (8 * i));
    memcpy(p, b, tag_head_len(size));
    ((unsigned char *)p)[size - 1] = tag_last(h);
}

static void tag_check(const entry_t *e, unsigned producer, unsigned consumer) {
    uint64_t h = tag_hash(producer, e->seq, e->size);
    const unsigned char *c = e->p;
    size_t n = tag_head_len(e->size);
    int ok = c[e->size - 1] == tag_last(h);
    for (size_t i = 0; i < n && ok; i++) ok = c[i] == (unsigned char)(h >> (8 * i));
    if (ok) return;
    fprintf(stderr, "xfree: error: consumer %u: block %p (producer %u, seq %" PRIu32
                    ", size %" PRIu32 ") has a bad tag:",
            consumer, e->p, producer, e->seq, e->size);
    for (size_t i = 0; i < n; i++) fprintf(stderr, " %02x", c[i]);
    fprintf(stderr, " ... last %02x; expected", c[e->size - 1]);
    for (size_t i = 0; i < n; i++)
        fprintf(stderr, " %02x", (unsigned)(unsigned char)(h >> (8 * i)));
    fprintf(stderr, " ... last %02x\n", tag_last(h));
    exit(1);
}

/* Hand a batch to queue q; waits while the queue is full. */
static void queue_put(queue_t *q, unsigned producer, const entry_t *buf, size_t n) {
    pthread_mutex_lock(&q->mu);
    while (q->len == QUEUE_BATCHES) {
        q->producers_waiting++;
        pthread_cond_wait(&q->not_full, &q->mu);
        q->producers_waiting--;
    }
    unsigned i = (q->head + q->len) % QUEUE_BATCHES;
    q->slot[i] = (slot_t){.producer = producer, .count = n};
    memcpy(q->entries + (size_t)i * P.batch, buf, n * sizeof *buf);
    q->len++;
    // a waiting consumer found the queue empty; the last producer's done wakes it in any case
    if (q->consumer_waiting && q->len >= QUEUE_WAKE) pthread_cond_signal(&q->not_empty);
    pthread_mutex_unlock(&q->mu);
}

/* Take the oldest batch of q into buf; waits while the queue is empty. Returns 0 once the
 * queue is empty and every producer is done. */
static int queue_take(queue_t *q, entry_t *buf, unsigned *producer, size_t *n) {
    pthread_mutex_lock(&q->mu);
    while (q->len == 0 && q->producers_done < P.producers) {
        q->consumer_waiting = 1;
        pthread_cond_wait(&q->not_empty, &q->mu);
        q->consumer_waiting = 0;
    }
    if (q->len == 0) {
        pthread_mutex_unlock(&q->mu);
        return 0;
    }
    unsigned i = q->head;
    *producer = q->slot[i].producer;
    *n = q->slot[i].count;
    memcpy(buf, q->entries + (size_t)i * P.batch, *n * sizeof *buf);
    q->head = (q->head + 1) % QUEUE_BATCHES;
    q->len--;
    // waiting producers found the queue full; the consumer takes every batch before it
    // sleeps, so it always passes this point
    if (q->producers_waiting && q->len <= QUEUE_BATCHES - QUEUE_WAKE)
        pthread_cond_broadcast(&q->not_full);
    pthread_mutex_unlock(&q->mu);
    return 1;
}

static void *producer(void *arg) {
    worker_t *w = arg;
    uint64_t rng = P.seed ^ (0x9e3779b97f4a7c15ULL * (w->id + 1));
    uint64_t bytes = 0, batch_index = 0;
    size_t n = 0;
    pthread_barrier_wait(&start_barrier);
    w->t_start = now();
    for (uint64_t seq = 0; seq < P.blocks; seq++) {
        size_t size = rand_size(&rng);
        void *p = malloc(size);
        if (!p) {
            fprintf(stderr, "xfree: error: producer %u: malloc(%zu) returned NULL\n", w->id, size);
            exit(1);
        }
        tag_write(p, w->id, (uint32_t)seq, (uint32_t)size);
        w->buf[n++] = (entry_t){.p = p, .seq = (uint32_t)seq, .size = (uint32_t)size};
        bytes += size;
        if (n == P.batch) {
            queue_put(&queues[(w->id + batch_index++) % P.consumers], w->id, w->buf, n);
            n = 0;
        }
    }
    if (n) queue_put(&queues[(w->id + batch_index) % P.consumers], w->id, w->buf, n);
    for (unsigned c = 0; c < P.consumers; c++) {
        queue_t *q = &queues[c];
        pthread_mutex_lock(&q->mu);
        q->producers_done++;
        pthread_cond_signal(&q->not_empty);
        pthread_mutex_unlock(&q->mu);
    }
    w->blocks = P.blocks;
    w->bytes = bytes;
    w->t_end = now();
    return NULL;
}

static void *consumer(void *arg) {
    worker_t *w = arg;
    queue_t *q = &queues[w->id];
    unsigned pr;
    size_t n;
    uint64_t freed = 0;
    pthread_barrier_wait(&start_barrier);
    w->t_start = now();
    while (queue_take(q, w->buf, &pr, &n)) {
        // producer pr sends its batch k to consumer (pr + k) % consumers, in order, and batch
        // k holds the sequence numbers [k * batch, k * batch + n); only the last is short
        uint64_t first = w->next_batch[pr] * P.batch;
        if (n == 0 || n > P.batch || (n < P.batch && first + n != P.blocks)) {
            fprintf(stderr, "xfree: error: consumer %u: batch of %zu blocks from producer %u "
                            "(expected %zu, or the rest of %" PRIu64 ")\n",
                    w->id, n, pr, P.batch, P.blocks);
            exit(1);
        }
        uint64_t bytes = 0;
        for (size_t i = 0; i < n; i++) {
            const entry_t *e = &w->buf[i];
            if (e->seq != first + i) {
                fprintf(stderr, "xfree: error: consumer %u: block %p from producer %u has seq %"
                                PRIu32 ", expected %" PRIu64 "\n",
                        w->id, e->p, pr, e->seq, first + i);
                exit(1);
            }
            tag_check(e, pr, w->id);
            bytes += e->size;
            free(e->p);
        }
        // once per batch: these small arrays may share cache lines with other consumers'
        w->recv_bytes[pr] += bytes;
        w->recv[pr] += n;
        w->next_batch[pr] += P.consumers;
        freed += n;
    }
    w->blocks = freed;
    w->t_end = now();
    return NULL;
}

static void usage(void) {
    fprintf(stderr,
            "usage: xfree [--smoke] [producers consumers blocks min_size max_size batch seed]\n"
            "  defaults: 2 2 5000000 8 512 256 4343; --smoke: 2 3 250000 8 512 64 4343\n");
    exit(2);
}

int main(int argc, char **argv) {
    P = (params_t){.producers = 2, .consumers = 2, .blocks = 5000000, .min_size = 8,
                   .max_size = 512, .batch = 256, .seed = 4343};
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--smoke") == 0)
            P = (params_t){.producers = 2, .consumers = 3, .blocks = 250000, .min_size = 8,
                           .max_size = 512, .batch = 64, .seed = 4343, .smoke = 1};
    int pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--smoke") == 0) continue;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) usage();
        uint64_t v;
        if (!parse_u64(a, &v)) usage();
        switch (pos++) {
        case 0: P.producers = v > 4096 ? 0 : (unsigned)v; break;
        case 1: P.consumers = v > 4096 ? 0 : (unsigned)v; break;
        case 2: P.blocks = v; break;
        case 3: P.min_size = (size_t)v; break;
        case 4: P.max_size = (size_t)v; break;
        case 5: P.batch = (size_t)v; break;
        case 6: P.seed = v; break;
        default: usage();
        }
    }
    if (P.producers == 0 || P.consumers == 0 || P.blocks == 0 || P.blocks > UINT32_MAX ||
        P.min_size == 0 || P.max_size < P.min_size || P.max_size > UINT32_MAX || P.batch == 0 ||
        P.batch > 65536) {
        fprintf(stderr, "xfree: bad arguments (need 1 <= producers, consumers <= 4096, "
                        "1 <= blocks < 2^32, 1 <= min_size <= max_size < 2^32, "
                        "1 <= batch <= 65536)\n");
        return 2;
    }

    unsigned nthreads = P.producers + P.consumers;
    queues = aligned_alloc(64, P.consumers * sizeof *queues);
    worker_t *ws = calloc(nthreads, sizeof *ws);
    pthread_t *ts = calloc(nthreads, sizeof *ts);
    if (!queues || !ws || !ts) {
        fprintf(stderr, "xfree: error: out of memory\n");
        return 1;
    }
    for (unsigned c = 0; c < P.consumers; c++) {
        queue_t *q = &queues[c];
        memset(q, 0, sizeof *q);
        pthread_mutex_init(&q->mu, NULL);
        pthread_cond_init(&q->not_empty, NULL);
        pthread_cond_init(&q->not_full, NULL);
        q->entries = malloc(QUEUE_BATCHES * P.batch * sizeof *q->entries);
        if (!q->entries) {
            fprintf(stderr, "xfree: error: out of memory for the queues\n");
            return 1;
        }
    }
    for (unsigned t = 0; t < nthreads; t++) {
        worker_t *w = &ws[t];
        int is_consumer = t >= P.producers;
        w->id = is_consumer ? t - P.producers : t;
        w->buf = malloc(P.batch * sizeof *w->buf);
        if (is_consumer) {
            w->recv = calloc(P.producers, sizeof *w->recv);
            w->recv_bytes = calloc(P.producers, sizeof *w->recv_bytes);
            w->next_batch = calloc(P.producers, sizeof *w->next_batch);
        }
        if (!w->buf || (is_consumer && (!w->recv || !w->recv_bytes || !w->next_batch))) {
            fprintf(stderr, "xfree: error: out of memory\n");
            return 1;
        }
        // the first batch of producer p goes to consumer p % consumers: consumer c first
        // gets batch (c - p) mod consumers of it
        for (unsigned p = 0; is_consumer && p < P.producers; p++)
            w->next_batch[p] = (w->id + P.consumers - p % P.consumers) % P.consumers;
    }

    pthread_barrier_init(&start_barrier, NULL, nthreads + 1);
    for (unsigned t = 0; t < nthreads; t++) {
        int e = pthread_create(&ts[t], NULL, t < P.producers ? producer : consumer, &ws[t]);
        if (e) {
            fprintf(stderr, "xfree: error: pthread_create: %s\n", strerror(e));
            return 1;
        }
    }
    pthread_barrier_wait(&start_barrier);
    for (unsigned t = 0; t < nthreads; t++) pthread_join(ts[t], NULL);
    pthread_barrier_destroy(&start_barrier);
    // the time as the threads saw it: with more threads than cores the main thread may wake
    // from the start barrier long after the others started
    double t_start = ws[0].t_start, t_end = ws[0].t_end;
    for (unsigned t = 0; t < nthreads; t++) {
        if (ws[t].t_start < t_start) t_start = ws[t].t_start;
        if (ws[t].t_end > t_end) t_end = ws[t].t_end;
    }
    double elapsed = t_end - t_start;

    // every block freed exactly once: per producer, the consumers' counts and byte sums match
    uint64_t freed = 0;
    int bad = 0;
    for (unsigned c = 0; c < P.consumers; c++) freed += ws[P.producers + c].blocks;
    for (unsigned p = 0; p < P.producers; p++) {
        uint64_t blocks = 0, bytes = 0;
        for (unsigned c = 0; c < P.consumers; c++) {
            blocks += ws[P.producers + c].recv[p];
            bytes += ws[P.producers + c].recv_bytes[p];
        }
        if (blocks != ws[p].blocks || bytes != ws[p].bytes) {
            fprintf(stderr, "xfree: error: producer %u allocated %" PRIu64 " blocks (%" PRIu64
                            " bytes), consumers freed %" PRIu64 " (%" PRIu64 " bytes)\n",
                    p, ws[p].blocks, ws[p].bytes, blocks, bytes);
            bad = 1;
        }
    }
    uint64_t expect = (uint64_t)P.producers * P.blocks;
    if (freed != expect) {
        fprintf(stderr, "xfree: error: %" PRIu64 " blocks freed, expected %" PRIu64 "\n", freed,
                expect);
        bad = 1;
    }
    if (bad) return 1;

    for (unsigned t = 0; t < nthreads; t++) {
        free(ws[t].buf);
        free(ws[t].recv);
        free(ws[t].recv_bytes);
        free(ws[t].next_batch);
    }
    for (unsigned c = 0; c < P.consumers; c++) {
        pthread_mutex_destroy(&queues[c].mu);
        pthread_cond_destroy(&queues[c].not_empty);
        pthread_cond_destroy(&queues[c].not_full);
        free(queues[c].entries);
    }
    free(queues);
    free(ws);
    free(ts);
    if (elapsed <= 0) elapsed = 1e-9;
    printf("xfree producers=%u consumers=%u blocks=%" PRIu64 " seconds=%.3f ops_per_s=%.0f\n",
           P.producers, P.consumers, P.blocks, elapsed, (double)freed / elapsed);
    return 0;
}
