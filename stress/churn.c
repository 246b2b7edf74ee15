/* churn: threads that come and go while their blocks live on (plain malloc/free, C11 +
 * pthreads).
 *
 * Each round starts `threads` threads. Thread i of round r first takes over the blocks of
 * one thread of round r - 1 (which has exited): it checks and frees them one by one, and
 * after each free allocates a block of its own, tags it and publishes it in the round's
 * table; then it exits. The main thread joins the round and frees the last round's blocks
 * at the end. So every block outlives the thread that allocated it and is freed by another
 * thread, and an allocator that keeps what an exited thread cached, or never reuses memory
 * freed from a dead thread's heap, grows from round to round.
 *
 * Sizes: with probability 15/16 a small block, uniform in min_size..min(max_size, 1024),
 * otherwise a medium one, uniform in min_size..max_size. Every block carries a tag of its
 * round, slot and size: a hash word in its first bytes (up to 8), a hash byte at every
 * 4 KiB offset (so every page of a medium block is touched and counted in the RSS) and in
 * its last byte; it is checked before the free, and a mismatch prints an error and exits 1.
 *
 * After each round the main thread reads VmRSS and VmHWM from /proc/self/status; VmHWM is
 * reset through /proc/self/clear_refs before each round where the kernel allows it, so it
 * is the peak of that round (else the peak since the start). The run fails if the RSS after
 * the last round exceeds twice the largest RSS after the rounds of the first quarter plus
 * 16 MiB: on a loaded machine glibc's RSS alone moves between about 1.2 and 4 times the
 * live data from round to round (README.md says how the bound was chosen).
 *
 * usage: churn [--smoke] [rounds threads blocks min_size max_size seed]
 * Prints, per round, on stderr: churn round=R rss_kb=A hwm_kb=B
 * and at the end: churn rounds=R threads=T seconds=S ops_per_s=X rss_first_kb=A rss_last_kb=B
 * (threads = per round; ops = malloc+free pairs; rss_first_kb/rss_last_kb = after the first
 * and the last round)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "stress_args.h"

/* the growth bound: rss_last <= GROWTH_FACTOR * max(rss over the first quarter) + slack */
#define GROWTH_FACTOR 2.0
#define GROWTH_SLACK_KB (16 * 1024L)
#define SMALL_MAX 1024

typedef struct {
    unsigned rounds;
    unsigned threads;  /* per round */
    size_t blocks;     /* per thread */
    size_t min_size, max_size;
    uint64_t seed;
    int smoke;
} params_t;

typedef struct {
    void *p;
    size_t size;
} slot_t;

/* One thread of one round. The main thread fills it before pthread_create and reads it
 * after pthread_join; the thread writes only its counters, once, at its end. */
typedef struct {
    unsigned round, index;
    slot_t *old;      /* the blocks it frees: a slice of the previous round's table, or NULL */
    unsigned old_round;
    size_t old_first; /* slot number of old[0] */
    slot_t *cur;      /* where it publishes its blocks: its slice of this round's table */
    size_t cur_first;
    uint64_t mallocs, frees;
} worker_t;

static params_t P;

static size_t rand_size(uint64_t *rng) {
    uint64_t r = splitmix(rng);
    size_t max = P.max_size;
    if ((r & 15) != 0 && max > SMALL_MAX && P.min_size <= SMALL_MAX) max = SMALL_MAX;
    return P.min_size + (size_t)((r >> 4) % (uint64_t)(max - P.min_size + 1));
}

/* Tag: the hash of (round, slot, size) in the first min(size - 1, 8) bytes; one byte of a
 * second hash at every multiple of 4096 below size - 1 and in the last byte (never 0). */
static uint64_t tag_hash(unsigned round, size_t slot, size_t size) {
    uint64_t s = ((uint64_t)round << 40) ^ ((uint64_t)slot << 8) ^ ((uint64_t)size * 0x2545f491ULL);
    return splitmix(&s);
}
static unsigned char tag_byte(uint64_t h, size_t at) {
    return (unsigned char)(((h ^ at) * 0xc2b2ae3d27d4eb4fULL) >> 56) | 1u;
}
static size_t tag_head_len(size_t size) { return size > 8 ? 8 : size - 1; }

static void tag_write(unsigned char *p, unsigned round, size_t slot, size_t size) {
    uint64_t h = tag_hash(round, slot, size);
    unsigned char b[8];
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(h >> (8 * i));
    memcpy(p, b, tag_head_len(size));
    for (size_t at = 4096; at < size - 1; at += 4096) p[at] = tag_byte(h, at);
    p[size - 1] = tag_byte(h, size - 1);
}

static void tag_check(const slot_t *s, unsigned round, size_t slot, const char *who) {
    uint64_t h = tag_hash(round, slot, s->size);
    const unsigned char *c = s->p;
    size_t n = tag_head_len(s->size), bad = s->size;
    for (size_t i = 0; i < n && bad == s->size; i++)
        if (c[i] != (unsigned char)(h >> (8 * i))) bad = i;
    for (size_t at = 4096; at < s->size - 1 && bad == s->size; at += 4096)
        if (c[at] != tag_byte(h, at)) bad = at;
    if (bad == s->size && c[s->size - 1] != tag_byte(h, s->size - 1)) bad = s->size - 1;
    if (bad == s->size) return;
    unsigned expect = bad < n ? (unsigned char)(h >> (8 * bad)) : tag_byte(h, bad);
    fprintf(stderr, "churn: error: %s: block %p of round %u slot %zu (size %zu) has a bad tag: "
                    "byte %zu is %02x, expected %02x\n",
            who, s->p, round, slot, s->size, bad, c[bad], expect);
    exit(1);
}

static void *worker(void *arg) {
    worker_t *w = arg;
    uint64_t stream = (uint64_t)w->round * P.threads + w->index + 1;
    uint64_t rng = P.seed ^ (0x9e3779b97f4a7c15ULL * stream);
    uint64_t mallocs = 0, frees = 0;
    char who[64];
    snprintf(who, sizeof who, "round %u thread %u", w->round, w->index);
    for (size_t k = 0; k < P.blocks; k++) {
        if (w->old) {
            tag_check(&w->old[k], w->old_round, w->old_first + k, who);
            free(w->old[k].p);
            w->old[k].p = NULL;
            frees++;
        }
        size_t size = rand_size(&rng);
        unsigned char *p = malloc(size);
        if (!p) {
            fprintf(stderr, "churn: error: %s: malloc(%zu) returned NULL\n", who, size);
            exit(1);
        }
        tag_write(p, w->round, w->cur_first + k, size);
        w->cur[k] = (slot_t){.p = p, .size = size};
        mallocs++;
    }
    w->mallocs = mallocs;
    w->frees = frees;
    return NULL;
}

/* VmRSS and VmHWM in KiB, read with read(2) into a fixed buffer (no stdio, no malloc). */
static void read_rss(long *rss_kb, long *hwm_kb) {
    char buf[8192];
    size_t len = 0;
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n;
        while (len < sizeof buf - 1 && (n = read(fd, buf + len, sizeof buf - 1 - len)) > 0)
            len += (size_t)n;
        close(fd);
    }
    buf[len] = 0;
    const char *r = strstr(buf, "VmRSS:"), *h = strstr(buf, "VmHWM:");
    if (!r || !h || sscanf(r, "VmRSS: %ld", rss_kb) != 1 || sscanf(h, "VmHWM: %ld", hwm_kb) != 1) {
        fprintf(stderr, "churn: error: cannot read VmRSS and VmHWM from /proc/self/status\n");
        exit(1);
    }
}

/* Reset VmHWM to the current RSS (Linux 4.0+); 0 where the kernel does not allow it. */
static int reset_hwm(void) {
    int fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    int ok = write(fd, "5", 1) == 1;
    close(fd);
    return ok;
}

static void usage(void) {
    fprintf(stderr, "usage: churn [--smoke] [rounds threads blocks min_size max_size seed]\n"
                    "  defaults: 1000 4 2000 8 65536 4444; --smoke: 100 4 1000 8 65536 4444\n");
    exit(2);
}

int main(int argc, char **argv) {
    P = (params_t){.rounds = 1000, .threads = 4, .blocks = 2000, .min_size = 8,
                   .max_size = 65536, .seed = 4444};
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--smoke") == 0)
            P = (params_t){.rounds = 100, .threads = 4, .blocks = 1000, .min_size = 8,
                           .max_size = 65536, .seed = 4444, .smoke = 1};
    int pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--smoke") == 0) continue;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) usage();
        uint64_t v;
        if (!parse_u64(a, &v)) usage();
        switch (pos++) {
        case 0: P.rounds = v > 1000000 ? 0 : (unsigned)v; break;
        case 1: P.threads = v > 4096 ? 0 : (unsigned)v; break;
        case 2: P.blocks = (size_t)v; break;
        case 3: P.min_size = (size_t)v; break;
        case 4: P.max_size = (size_t)v; break;
        case 5: P.seed = v; break;
        default: usage();
        }
    }
    if (P.rounds == 0 || P.threads == 0 || P.blocks == 0 ||
        P.blocks > SIZE_MAX / sizeof(slot_t) / P.threads || P.min_size == 0 ||
        P.max_size < P.min_size || P.max_size > ((size_t)1 << 30)) {
        fprintf(stderr, "churn: bad arguments (need 1 <= rounds <= 10^6, 1 <= threads <= 4096, "
                        "blocks >= 1, 1 <= min_size <= max_size <= 2^30)\n");
        return 2;
    }

    size_t nslots = (size_t)P.threads * P.blocks;
    slot_t *table[2] = {calloc(nslots, sizeof(slot_t)), calloc(nslots, sizeof(slot_t))};
    worker_t *ws = calloc(P.threads, sizeof *ws);
    pthread_t *ts = calloc(P.threads, sizeof *ts);
    long *rss = calloc(P.rounds, sizeof *rss);
    if (!table[0] || !table[1] || !ws || !ts || !rss) {
        fprintf(stderr, "churn: error: out of memory\n");
        return 1;
    }

    uint64_t mallocs = 0, frees = 0;
    unsigned threads_run = 0;
    double t0 = now();
    for (unsigned r = 0; r < P.rounds; r++) {
        slot_t *cur = table[r & 1], *old = table[(r + 1) & 1];
        int hwm_reset = reset_hwm();
        for (unsigned i = 0; i < P.threads; i++) {
            // thread i frees the blocks of thread (i + r) % threads of the previous round: the
            // pairing of freeing and allocating threads changes from round to round
            size_t from = (size_t)((i + r) % P.threads) * P.blocks;
            size_t first = (size_t)i * P.blocks;
            ws[i] = (worker_t){.round = r, .index = i, .old = r ? old + from : NULL,
                               .old_round = r - 1, .old_first = from, .cur = cur + first,
                               .cur_first = first};
            int e = pthread_create(&ts[i], NULL, worker, &ws[i]);
            if (e) {
                fprintf(stderr, "churn: error: pthread_create (round %u): %s\n", r, strerror(e));
                return 1;
            }
        }
        for (unsigned i = 0; i < P.threads; i++) {
            int e = pthread_join(ts[i], NULL);
            if (e) {
                fprintf(stderr, "churn: error: pthread_join (round %u): %s\n", r, strerror(e));
                return 1;
            }
            mallocs += ws[i].mallocs;
            frees += ws[i].frees;
            threads_run++;
        }
        long hwm;
        read_rss(&rss[r], &hwm);
        fprintf(stderr, "churn round=%u rss_kb=%ld hwm_kb=%ld%s\n", r, rss[r], hwm,
                hwm_reset ? "" : " (hwm since start)");
    }
    // the last round's blocks: freed by the main thread
    slot_t *last = table[(P.rounds - 1) & 1];
    for (size_t k = 0; k < nslots; k++) {
        tag_check(&last[k], P.rounds - 1, k, "main thread");
        free(last[k].p);
        frees++;
    }
    double elapsed = now() - t0;

    int bad = 0;
    uint64_t expect = (uint64_t)P.rounds * nslots;
    if (mallocs != expect || frees != expect || threads_run != P.rounds * P.threads) {
        fprintf(stderr, "churn: error: %" PRIu64 " mallocs, %" PRIu64 " frees by %u threads, "
                        "expected %" PRIu64 " each by %u\n",
                mallocs, frees, threads_run, expect, P.rounds * P.threads);
        bad = 1;
    }
    unsigned quarter = (P.rounds + 3) / 4;
    long early = 0;
    for (unsigned r = 0; r < quarter; r++)
        if (rss[r] > early) early = rss[r];
    long limit = (long)(GROWTH_FACTOR * (double)early) + GROWTH_SLACK_KB;
    if (rss[P.rounds - 1] > limit) {
        fprintf(stderr, "churn: error: RSS grew: %ld KiB after the last round, at most %ld KiB "
                        "after rounds 0..%u, limit %ld KiB\n",
                rss[P.rounds - 1], early, quarter - 1, limit);
        bad = 1;
    }
    if (bad) return 1;

    long rss_first = rss[0], rss_last = rss[P.rounds - 1];
    free(table[0]);
    free(table[1]);
    free(ws);
    free(ts);
    free(rss);
    if (elapsed <= 0) elapsed = 1e-9;
    printf("churn rounds=%u threads=%u seconds=%.3f ops_per_s=%.0f rss_first_kb=%ld "
           "rss_last_kb=%ld\n",
           P.rounds, P.threads, elapsed, (double)expect / elapsed, rss_first, rss_last);
    return 0;
}
