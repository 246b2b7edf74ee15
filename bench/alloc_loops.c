/* alloc_loops.c -- malloc/free throughput loops for comparing allocators.
 *
 * Plain malloc/free only, so any allocator can be swapped in with LD_PRELOAD (glibc when
 * nothing is preloaded).
 *
 *   alloc_loops MODE [ITERS [WARMUP]]
 *
 * MODE
 *   st       one thread: per iteration allocate 64 blocks (sizes 16..256 bytes from a fixed
 *            pseudo-random sequence), write one byte into each, then free all 64 in
 *            allocation order.
 *   mt2      two threads, each running the st loop on its own.
 *   xthread  a producer thread allocates (same size sequence, one write per block) and
 *            hands the pointers to a consumer thread through a lock-free single-producer /
 *            single-consumer ring (1024 slots, published 64 at a time); the consumer frees
 *            them. ITERS * 64 blocks in all.
 * ITERS      outer iterations per thread (64 malloc+free pairs each); default 200000.
 * WARMUP     untimed iterations run first (per thread, st/mt2 only); default ITERS/20.
 *            Pass 0 under callgrind so that only the counted loop runs.
 *
 * Output: one line on stdout,
 *   alloc_loops mode=st threads=1 iters=200000 pairs=12800000 seconds=0.2 ops_per_s=6.4e7
 * where one op is one malloc+free pair and ops_per_s counts the pairs of all threads over
 * the wall-clock time of the timed part.
 *
 * bench_pair_loop() holds the st loop and nothing else, so that
 *   valgrind --tool=callgrind --toggle-collect=bench_pair_loop alloc_loops st N 0
 * counts exactly N*64 pairs plus the loop around them. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BATCH 64
#define SEQ_LEN 4096 /* sizes in the pseudo-random sequence (power of two) */
#define RING_LEN 1024 /* SPSC ring slots (power of two) */
#define CACHE_LINE 64

#if defined(__GNUC__)
#define NOINLINE __attribute__((noinline, noclone, used))
#else
#define NOINLINE
#endif

/* The size sequence: fixed seed, so every allocator and every run sees the same sizes. */
static unsigned short size_seq[SEQ_LEN];

static void init_sizes(void) {
    uint64_t x = 0x9E3779B97F4A7C15ull; /* xorshift64*, fixed seed */
    for (unsigned i = 0; i < SEQ_LEN; i++) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        uint64_t r = x * 0x2545F4914F6CDD1Dull;
        size_seq[i] = (unsigned short)(16 + (r >> 32) % (256 - 16 + 1)); /* 16..256 */
    }
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die_oom(size_t n) {
    fprintf(stderr, "alloc_loops: malloc(%zu) failed: %s\n", n, strerror(errno));
    exit(2);
}

/* The st loop: ITERS times, allocate 64 blocks and touch each with one write, then free the
 * 64. Returns nothing the caller needs; the volatile store keeps every block alive. */
NOINLINE void bench_pair_loop(long iters) {
    void *blk[BATCH];
    unsigned pos = 0;
    for (long it = 0; it < iters; it++) {
        for (unsigned j = 0; j < BATCH; j++) {
            size_t n = size_seq[(pos + j) & (SEQ_LEN - 1)];
            unsigned char *p = malloc(n);
            if (__builtin_expect(p == NULL, 0)) die_oom(n);
            *(volatile unsigned char *)p = (unsigned char)j;
            blk[j] = p;
        }
        for (unsigned j = 0; j < BATCH; j++) free(blk[j]);
        pos += BATCH;
    }
}

/* ---- mt2 ------------------------------------------------------------------------------ */

typedef struct {
    long iters, warmup;
    pthread_barrier_t *start;
} mt_arg_t;

static void *mt_worker(void *a_) {
    mt_arg_t *a = a_;
    if (a->warmup > 0) bench_pair_loop(a->warmup);
    pthread_barrier_wait(a->start);
    bench_pair_loop(a->iters);
    return NULL;
}

/* ---- xthread: SPSC ring --------------------------------------------------------------- */

typedef struct {
    _Alignas(CACHE_LINE) _Atomic size_t head; /* next slot the producer writes */
    _Alignas(CACHE_LINE) _Atomic size_t tail; /* next slot the consumer reads */
    _Alignas(CACHE_LINE) void *slot[RING_LEN];
} ring_t;

static ring_t ring;
#define DONE_BIT ((size_t)1 << (sizeof(size_t) * 8 - 1)) /* in head: producer finished */

typedef struct {
    long iters;
    pthread_barrier_t *start;
} x_arg_t;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Spin a little, then yield: the two threads may share one core on a busy machine. */
static inline void backoff(unsigned *spins) {
    if (++*spins < 64) cpu_relax();
    else {
        *spins = 0;
        sched_yield();
    }
}

/* The producer fills a batch of 64 slots (one malloc each) and publishes them with one
 * release store; the consumer frees everything published and hands the slots back with
 * one store. Publishing per batch keeps the ring's own cache-line traffic small next to
 * the allocator's. */
static void *x_producer(void *a_) {
    x_arg_t *a = a_;
    size_t head = 0, tail_seen = 0;
    unsigned pos = 0;
    pthread_barrier_wait(a->start);
    for (long it = 0; it < a->iters; it++) {
        if (head + BATCH - tail_seen > RING_LEN) {
            unsigned spins = 0;
            while (head + BATCH -
                       (tail_seen = atomic_load_explicit(&ring.tail, memory_order_acquire)) >
                   RING_LEN)
                backoff(&spins);
        }
        for (unsigned j = 0; j < BATCH; j++) {
            size_t n = size_seq[(pos + j) & (SEQ_LEN - 1)];
            unsigned char *p = malloc(n);
            if (__builtin_expect(p == NULL, 0)) die_oom(n);
            *(volatile unsigned char *)p = (unsigned char)j;
            ring.slot[(head + j) & (RING_LEN - 1)] = p;
        }
        head += BATCH;
        atomic_store_explicit(&ring.head, head, memory_order_release);
        pos += BATCH;
    }
    atomic_store_explicit(&ring.head, head | DONE_BIT, memory_order_release);
    return NULL;
}

static void *x_consumer(void *a_) {
    x_arg_t *a = a_;
    size_t tail = 0, head_seen = 0;
    pthread_barrier_wait(a->start);
    for (;;) {
        unsigned spins = 0;
        while ((head_seen = atomic_load_explicit(&ring.head, memory_order_acquire)) == tail)
            backoff(&spins);
        size_t head = head_seen & ~DONE_BIT;
        for (; tail != head; tail++) free(ring.slot[tail & (RING_LEN - 1)]);
        atomic_store_explicit(&ring.tail, tail, memory_order_release);
        if (head_seen & DONE_BIT) break;
    }
    return NULL;
}

/* ---- main ----------------------------------------------------------------------------- */

static long parse_long(const char *s, const char *what) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < 0) {
        fprintf(stderr, "alloc_loops: bad %s '%s'\n", what, s);
        exit(1);
    }
    return v;
}

static void run_threads(void *(*fn[2])(void *), void *arg[2], pthread_barrier_t *start,
                        double *t0, double *t1) {
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        if (pthread_create(&th[i], NULL, fn[i], arg[i]) != 0) {
            fprintf(stderr, "alloc_loops: pthread_create failed\n");
            exit(2);
        }
    pthread_barrier_wait(start); /* main is the third party of the barrier */
    *t0 = now_s();
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    *t1 = now_s();
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 4) {
        fprintf(stderr, "usage: %s st|mt2|xthread [ITERS [WARMUP]]\n", argv[0]);
        return 1;
    }
    const char *mode = argv[1];
    long iters = argc > 2 ? parse_long(argv[2], "ITERS") : 200000;
    long warmup = argc > 3 ? parse_long(argv[3], "WARMUP") : iters / 20;
    init_sizes();

    int threads;
    double t0, t1;
    if (strcmp(mode, "st") == 0) {
        threads = 1;
        if (warmup > 0) bench_pair_loop(warmup);
        t0 = now_s();
        bench_pair_loop(iters);
        t1 = now_s();
    } else if (strcmp(mode, "mt2") == 0) {
        threads = 2;
        pthread_barrier_t start;
        pthread_barrier_init(&start, NULL, 3);
        mt_arg_t a = {iters, warmup, &start};
        void *(*fn[2])(void *) = {mt_worker, mt_worker};
        void *arg[2] = {&a, &a};
        run_threads(fn, arg, &start, &t0, &t1);
        pthread_barrier_destroy(&start);
    } else if (strcmp(mode, "xthread") == 0) {
        threads = 2;
        pthread_barrier_t start;
        pthread_barrier_init(&start, NULL, 3);
        x_arg_t a = {iters, &start};
        void *(*fn[2])(void *) = {x_producer, x_consumer};
        void *arg[2] = {&a, &a};
        run_threads(fn, arg, &start, &t0, &t1);
        pthread_barrier_destroy(&start);
    } else {
        fprintf(stderr, "alloc_loops: unknown mode '%s' (st, mt2, xthread)\n", mode);
        return 1;
    }

    /* pairs: st and xthread move ITERS*64 blocks, mt2 twice that (two loops) */
    double pairs = (double)iters * BATCH * (strcmp(mode, "mt2") == 0 ? 2 : 1);
    double secs = t1 - t0;
    printf("alloc_loops mode=%s threads=%d iters=%ld pairs=%.0f seconds=%.6f ops_per_s=%.0f\n",
           mode, threads, iters, pairs, secs, secs > 0 ? pairs / secs : 0.0);
    return 0;
}
