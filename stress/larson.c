/* larson: the Larson-Krishnan server simulation (plain malloc/free, C11 + pthreads).
 *
 * A table of chunks_per_thread * threads slots is filled with random-size blocks by the
 * main thread. Each worker owns a slice of the table; for one round it repeatedly picks a
 * random slot of its slice, frees the block there and puts a new random-size block in it.
 * At the end of its round a worker starts a successor thread that takes over the slice
 * (and its random state), so blocks allocated by one thread are freed by another, and the
 * allocator sees a steady stream of threads starting and exiting while others run.
 *
 * Every block carries a tag: its slot and size at the start, a checksum byte at the end.
 * The tag is checked before each free; a mismatch prints an error and exits 1.
 *
 * usage: larson [--smoke] [seconds min_size max_size chunks_per_thread rounds seed threads]
 * Prints: larson threads=T seconds=S ops=N ops_per_s=X
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
    double seconds;
    size_t min_size, max_size;
    size_t chunks;     /* per thread */
    unsigned rounds;
    uint64_t seed;
    unsigned threads;
    int smoke;
} params_t;

typedef struct {
    void *p;
    size_t size;
} slot_t;

/* One slice of the table and the chain of threads that work on it, one per round. */
typedef struct {
    unsigned index;
    size_t first, count;   /* slots [first, first + count) */
    uint64_t rng;
    unsigned round;        /* the round the current thread runs */
    uint64_t ops;          /* free+malloc pairs, over all rounds */
    unsigned threads_run;  /* threads that worked on this slice */
    pthread_t predecessor; /* joined by its successor */
    int has_predecessor;
    /* set by the last thread of the chain; the main thread waits for it */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    int failed;
    pthread_t last;
} slice_t;

static params_t P;
static slot_t *table;
static size_t nslots;
static double t_start;
static double round_len;

static size_t rand_size(uint64_t *rng) {
    return P.min_size + (size_t)(splitmix(rng) % (uint64_t)(P.max_size - P.min_size + 1));
}

/* Tag: the word (slot << 32 | size) ^ K in the first min(size - 1, 8) bytes, and a
 * checksum byte of slot and size in the last byte. */
#define TAG_K 0x5a17c0de00000000ULL
static uint64_t tag_word(size_t slot, size_t size) {
    return (((uint64_t)slot << 32) | (uint64_t)(uint32_t)size) ^ TAG_K;
}
static unsigned char tag_last(size_t slot, size_t size) {
    uint64_t x = (uint64_t)slot * 0x9e3779b97f4a7c15ULL + (uint64_t)size * 0xc2b2ae3d27d4eb4fULL;
    return (unsigned char)((x >> 56) | 1u);
}
static size_t tag_head_len(size_t size) { return size > 8 ? 8 : size - 1; }

static void tag_write(void *p, size_t slot, size_t size) {
    uint64_t w = tag_word(slot, size);
    unsigned char b[8];
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(w >> (8 * i));
    memcpy(p, b, tag_head_len(size));
    ((unsigned char *)p)[size - 1] = tag_last(slot, size);
}

static int tag_check(const void *p, size_t slot, size_t size) {
    uint64_t w = tag_word(slot, size);
    const unsigned char *c = p;
    size_t n = tag_head_len(size);
    for (size_t i = 0; i < n; i++)
        if (c[i] != (unsigned char)(w >> (8 * i))) return 0;
    return c[size - 1] == tag_last(slot, size);
}

static void fail_block(const char *where, size_t slot, const slot_t *s) {
    const unsigned char *c = s->p;
    fprintf(stderr, "larson: error: %s: block %p in slot %zu (size %zu) has a bad tag:", where,
            s->p, slot, s->size);
    size_t n = tag_head_len(s->size);
    uint64_t w = tag_word(slot, s->size);
    for (size_t i = 0; i < n; i++) fprintf(stderr, " %02x", c[i]);
    fprintf(stderr, " ... last %02x; expected", c[s->size - 1]);
    for (size_t i = 0; i < n; i++) fprintf(stderr, " %02x", (unsigned)(unsigned char)(w >> (8 * i)));
    fprintf(stderr, " ... last %02x\n", tag_last(slot, s->size));
    exit(1);
}

static void *alloc_tagged(size_t slot, size_t size) {
    void *p = malloc(size);
    if (!p) {
        fprintf(stderr, "larson: error: malloc(%zu) returned NULL\n", size);
        exit(1);
    }
    tag_write(p, slot, size);
    return p;
}

static void *worker(void *arg) {
    slice_t *sl = arg;
    if (sl->has_predecessor) {
        int e = pthread_join(sl->predecessor, NULL);
        if (e) {
            fprintf(stderr, "larson: error: pthread_join: %s\n", strerror(e));
            exit(1);
        }
    }
    sl->threads_run++;
    double end = t_start + round_len * (double)(sl->round + 1);
    uint64_t ops = 0;
    uint64_t rng = sl->rng;
    do {
        for (int k = 0; k < 64; k++) {
            size_t slot = sl->first + (size_t)(splitmix(&rng) % sl->count);
            slot_t *s = &table[slot];
            if (!tag_check(s->p, slot, s->size)) fail_block("before free", slot, s);
            free(s->p);
            size_t size = rand_size(&rng);
            s->p = alloc_tagged(slot, size);
            s->size = size;
        }
        ops += 64;
    } while (now() < end);
    sl->ops += ops;
    sl->rng = rng;

    if (sl->round + 1 < P.rounds) {
        /* hand the slice to a successor; it joins this thread */
        sl->round++;
        sl->predecessor = pthread_self();
        sl->has_predecessor = 1;
        pthread_t t;
        int e = pthread_create(&t, NULL, worker, sl);
        if (e) {
            fprintf(stderr, "larson: error: pthread_create (round %u): %s\n", sl->round,
                    strerror(e));
            exit(1);
        }
        return NULL;
    }
    pthread_mutex_lock(&sl->mu);
    sl->last = pthread_self();
    sl->done = 1;
    pthread_cond_signal(&sl->cv);
    pthread_mutex_unlock(&sl->mu);
    return NULL;
}

static void usage(void) {
    fprintf(stderr,
            "usage: larson [--smoke] [seconds min_size max_size chunks_per_thread rounds seed threads]\n"
            "  defaults: 5 8 1000 5000 50 4141 2; --smoke: 1 10 1000 1000 10 4141 2 plus checks\n");
    exit(2);
}

int main(int argc, char **argv) {
    P = (params_t){.seconds = 5, .min_size = 8, .max_size = 1000, .chunks = 5000,
                   .rounds = 50, .seed = 4141, .threads = 2};
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--smoke") == 0) {
            P = (params_t){.seconds = 1, .min_size = 10, .max_size = 1000, .chunks = 1000,
                           .rounds = 10, .seed = 4141, .threads = 2, .smoke = 1};
        }
    int pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--smoke") == 0) continue;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) usage();
        uint64_t v = 0;
        if (pos == 0) {
            char *end;
            double d = strtod(a, &end);
            if (end == a || *end || !(d > 0)) usage();
            P.seconds = d;
        } else {
            if (!parse_u64(a, &v)) usage();
            switch (pos) {
            case 1: P.min_size = (size_t)v; break;
            case 2: P.max_size = (size_t)v; break;
            case 3: P.chunks = (size_t)v; break;
            case 4: P.rounds = (unsigned)v; break;
            case 5: P.seed = v; break;
            case 6: P.threads = (unsigned)v; break;
            default: usage();
            }
        }
        pos++;
    }
    if (P.min_size < 2 || P.max_size < P.min_size || P.max_size > UINT32_MAX || P.chunks == 0 ||
        P.rounds == 0 || P.threads == 0 || P.threads > 4096 || P.chunks > UINT32_MAX / P.threads) {
        fprintf(stderr, "larson: bad arguments (need 2 <= min_size <= max_size < 2^32, "
                        "chunks, rounds, threads >= 1)\n");
        return 2;
    }

    nslots = P.chunks * P.threads;
    table = calloc(nslots, sizeof *table);
    slice_t *slices = calloc(P.threads, sizeof *slices);
    if (!table || !slices) {
        fprintf(stderr, "larson: error: out of memory for the table\n");
        return 1;
    }
    /* the main thread fills the table: the workers' first frees are remote ones */
    uint64_t rng = P.seed;
    for (size_t i = 0; i < nslots; i++) {
        size_t size = rand_size(&rng);
        table[i].p = alloc_tagged(i, size);
        table[i].size = size;
    }
    for (unsigned t = 0; t < P.threads; t++) {
        slice_t *sl = &slices[t];
        sl->index = t;
        sl->first = (size_t)t * P.chunks;
        sl->count = P.chunks;
        sl->rng = P.seed ^ (0x9e3779b97f4a7c15ULL * (t + 1));
        pthread_mutex_init(&sl->mu, NULL);
        pthread_cond_init(&sl->cv, NULL);
    }

    round_len = P.seconds / (double)P.rounds;
    t_start = now();
    for (unsigned t = 0; t < P.threads; t++) {
        pthread_t th;
        int e = pthread_create(&th, NULL, worker, &slices[t]);
        if (e) {
            fprintf(stderr, "larson: error: pthread_create: %s\n", strerror(e));
            return 1;
        }
    }
    uint64_t ops = 0;
    unsigned threads_run = 0;
    for (unsigned t = 0; t < P.threads; t++) {
        slice_t *sl = &slices[t];
        pthread_mutex_lock(&sl->mu);
        while (!sl->done) pthread_cond_wait(&sl->cv, &sl->mu);
        pthread_mutex_unlock(&sl->mu);
        pthread_join(sl->last, NULL);
        ops += sl->ops;
        threads_run += sl->threads_run;
    }
    double elapsed = now() - t_start;

    for (size_t i = 0; i < nslots; i++) {
        if (!tag_check(table[i].p, i, table[i].size)) fail_block("at the end", i, &table[i]);
        free(table[i].p);
    }
    if (P.smoke) {
        /* every slice went through every round, each round doing at least 64 pairs */
        int bad = 0;
        if (threads_run != P.threads * P.rounds) {
            fprintf(stderr, "larson: error: %u threads ran, expected %u\n", threads_run,
                    P.threads * P.rounds);
            bad = 1;
        }
        for (unsigned t = 0; t < P.threads; t++)
            if (slices[t].ops < 64ull * P.rounds) {
                fprintf(stderr, "larson: error: slice %u did %" PRIu64 " ops in %u rounds\n", t,
                        slices[t].ops, P.rounds);
                bad = 1;
            }
        if (elapsed < P.seconds * 0.9) {
            fprintf(stderr, "larson: error: finished after %.3f s of %.3f\n", elapsed, P.seconds);
            bad = 1;
        }
        if (bad) return 1;
    }
    for (unsigned t = 0; t < P.threads; t++) {
        pthread_mutex_destroy(&slices[t].mu);
        pthread_cond_destroy(&slices[t].cv);
    }
    free(slices);
    free(table);
    printf("larson threads=%u seconds=%.3f ops=%" PRIu64 " ops_per_s=%.0f\n", P.threads, elapsed,
           ops, (double)ops / elapsed);
    return 0;
}
