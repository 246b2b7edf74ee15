/* scenarios.c -- four allocation scenarios timed per operation, for comparing allocators.
 *
 * Plain malloc/free/realloc only, so any allocator can be swapped in with LD_PRELOAD (glibc
 * when nothing is preloaded). Every operation is timed on its own with
 * clock_gettime(CLOCK_MONOTONIC); the program reports the median, p95 and p99 of those times,
 * the page faults of the timed phase and the peak RSS.
 *
 *   scenarios [--smoke] [--detail] [--ops N] [--seed S] [json|mir|vm|mixed|all ...]   (default: all)
 *
 * Scenarios (one "op" is what one timing covers; the writes and tag checks are part of it
 * and cost every allocator the same):
 *   json   small short-lived blocks, like parsing a JSON document and dropping it. One op
 *          builds a tree of 32..128 nodes (uniform), each node a 48-byte header block, a key
 *          string of 3..18 characters for 3 nodes in 4 (malloc(len + 1)), and a value block
 *          of 16..256 bytes skewed small (16 + u*u/240, u uniform in 0..240: median 76,
 *          mean 96) filled with memset; each node hangs under a random earlier node. Then it
 *          walks the tree depth-first, checks and frees every block. About 220 malloc/free
 *          pairs per op, nothing survives the op.
 *   mir    medium blocks in a working set of 8 slots, sizes uniform 64 KiB..448 KiB (mean
 *          256 KiB). One op picks a random slot, checks and frees its block, mallocs a new
 *          one and writes one byte per 4 KiB page of it. In one op in 4 the block grows
 *          instead: malloc(size / 2), touched and tagged, then realloc to size (the tag must
 *          survive the copy) and the whole block touched.
 *   vm     large blocks in a working set of 4 slots, sizes uniform 1 MiB..3 MiB (mean
 *          2 MiB). One op replaces a random slot's block like mir (check, free, malloc,
 *          one byte written per 4 KiB page: about 512 pages).
 *   mixed  a working set of 256 slots with sizes drawn from 90% small (16..1024 bytes,
 *          skewed small like json), 9% medium (1 KiB..1 MiB, log-uniform: a power-of-two
 *          range picked uniformly, then uniform inside it), 1% large (1 MiB..4 MiB uniform).
 *          One op replaces a random slot's block: check, free, malloc, write the first 64
 *          bytes (the whole block if smaller) and one byte per 4 KiB page.
 *
 * Each scenario fills its slots, runs N/10 untimed warm-up ops (at least 4 per slot), then
 * N timed ops; the timed phase's ru_minflt and ru_majflt deltas (getrusage) are the page
 * faults. The op times go to an array mapped and touched before the timed phase; the
 * program's bookkeeping comes from mmap and static arrays so that the allocator under test
 * sees only the scenario's blocks. When several scenarios are selected each one runs in a
 * forked child process, so that peak_rss_kb (ru_maxrss at the end) and the allocator's
 * state belong to that scenario alone; a single scenario runs in the process itself.
 *
 * Every block carries a tag: an 8-byte word at its start and a check byte at its end (json
 * keys: their characters), checked before each free. A mismatch, a NULL from malloc or a
 * child that dies prints "scenarios: error: ..." on stderr and exits 1.
 *
 * --ops N    timed ops for every selected scenario (defaults: json 150000, mir 80000,
 *            vm 4000, mixed 300000: 0.7-1.6 s each under glibc on the 2-core reference
 *            machine, where the clock_gettime in every op costs a few tens of ns)
 * --seed S   random seed (default 42); each scenario derives its own stream from it
 * --smoke    a short run (json 200, mir 200, vm 40, mixed 2000 ops)
 * --detail   after each scenario's line, one line per block size range (by the largest block
 *            an op freed or allocated: up to 1 KiB, 32 KiB, below 1 MiB, 1 MiB and up) with
 *            its ops, total and mean ns; and, when the allocator exports hak_stat (hakmem),
 *            what some of its counters moved by in the timed phase (SuperSlabs and large
 *            blocks mapped, BigCache outcomes). Timing each op's range costs a compare.
 *
 * Output, one line per scenario on stdout (times in ns, nearest-rank percentiles; mean_ns
 * is the timed phase's wall time over ops; faults_per_op is (minflt + majflt) / ops):
 *   scenario=json ops=150000 median_ns=7060 p95_ns=11647 p99_ns=15042 mean_ns=8596.5
 *   minflt=3 majflt=0 faults_per_op=0.000 seconds=1.289 peak_rss_kb=1800   (one line) */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096
#define KiB ((size_t)1024)
#define MiB ((size_t)1024 * 1024)

/* ---- random numbers, clock, errors ---------------------------------------------------- */

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* uniform in [lo, hi] */
static size_t rand_range(uint64_t *rng, size_t lo, size_t hi) {
    return lo + (size_t)(splitmix(rng) % (uint64_t)(hi - lo + 1));
}

/* lo + u*u/(hi - lo) for u uniform in [0, hi - lo]: in [lo, hi], skewed towards lo */
static size_t rand_skewed(uint64_t *rng, size_t lo, size_t hi) {
    size_t span = hi - lo;
    size_t u = (size_t)(splitmix(rng) % (uint64_t)(span + 1));
    return lo + u * u / span;
}

static inline uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("scenarios: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

// --detail: the largest block the current op freed or allocated
static int detail;
static size_t op_max;

static void *xmalloc(size_t n) {
    if (n > op_max) op_max = n;
    void *p = malloc(n);
    if (__builtin_expect(p == NULL, 0)) fail("malloc(%zu) returned NULL: %s", n, strerror(errno));
    return p;
}

/* ---- block tags ----------------------------------------------------------------------- */

/* The first 8 bytes hold tag, the last byte tag_last(tag); every block is >= 16 bytes. */
static unsigned char tag_last(uint64_t tag) { return (unsigned char)((tag >> 56) | 1u); }

static void tag_write(unsigned char *p, size_t n, uint64_t tag) {
    memcpy(p, &tag, sizeof tag);
    p[n - 1] = tag_last(tag);
}

static void tag_check(const unsigned char *p, size_t n, uint64_t tag, const char *what) {
    uint64_t w;
    memcpy(&w, p, sizeof w);
    if (__builtin_expect(w != tag || p[n - 1] != tag_last(tag), 0))
        fail("%s block %p (size %zu) has a bad tag: head %016" PRIx64 " last %02x, expected "
             "%016" PRIx64 " last %02x",
             what, (const void *)p, n, w, p[n - 1], tag, tag_last(tag));
}

/* One byte per 4 KiB page, and the last byte. */
static void touch_pages(unsigned char *p, size_t n, unsigned char v) {
    for (size_t off = 0; off < n; off += PAGE) p[off] = v;
    p[n - 1] = v;
}

/* ---- working-set slots (mir, vm, mixed) ----------------------------------------------- */

typedef struct {
    unsigned char *p;
    size_t size;
    uint64_t tag;
} slot_t;

#define MAX_SLOTS 256
static slot_t slots[MAX_SLOTS];

static void slot_free(slot_t *s, const char *what) {
    if (s->size > op_max) op_max = s->size;
    tag_check(s->p, s->size, s->tag, what);
    free(s->p);
    s->p = NULL;
}

/* ---- json ------------------------------------------------------------------------------ */

typedef struct jnode {
    struct jnode *child, *next; /* first child, next sibling */
    char *key;                  /* NUL-terminated, key_len characters; NULL for array items */
    unsigned char *val;         /* val_len bytes, tagged */
    uint32_t key_len, val_len;
    uint64_t tag;               /* val's tag; the header itself holds ~tag in magic */
    uint64_t magic;
} jnode_t;                      /* 48 bytes on LP64 */

#define JSON_MAX_NODES 128
static jnode_t *json_nodes[JSON_MAX_NODES]; /* the parser's view while building */
static jnode_t *json_stack[JSON_MAX_NODES]; /* the depth-first walk that frees */

static char key_char(uint64_t tag, uint32_t i) { return (char)('a' + (tag + i) % 26); }

static void json_op(uint64_t *rng, uint64_t *serial) {
    unsigned count = (unsigned)rand_range(rng, 32, JSON_MAX_NODES);
    for (unsigned i = 0; i < count; i++) {
        uint64_t r = splitmix(rng);
        jnode_t *n = xmalloc(sizeof *n);
        n->child = NULL;
        n->tag = splitmix(serial);
        n->magic = ~n->tag;
        n->key = NULL;
        n->key_len = 0;
        if (r & 3) { // 3 nodes in 4 are object members and carry a key
            n->key_len = (uint32_t)(3 + (r >> 2) % 16);
            n->key = xmalloc(n->key_len + 1);
            for (uint32_t k = 0; k < n->key_len; k++) n->key[k] = key_char(n->tag, k);
            n->key[n->key_len] = '\0';
        }
        n->val_len = (uint32_t)rand_skewed(rng, 16, 256);
        n->val = xmalloc(n->val_len);
        memset(n->val, (int)(r >> 40), n->val_len);
        tag_write(n->val, n->val_len, n->tag);
        if (i == 0) {
            n->next = NULL;
        } else { // hang it under a random earlier node, as its new first child
            jnode_t *parent = json_nodes[(r >> 8) % i];
            n->next = parent->child;
            parent->child = n;
        }
        json_nodes[i] = n;
    }

    unsigned depth = 0, freed = 0;
    json_stack[depth++] = json_nodes[0];
    while (depth > 0) {
        jnode_t *n = json_stack[--depth];
        if (n->magic != ~n->tag) fail("json node %p has a bad header", (void *)n);
        if (n->child) json_stack[depth++] = n->child;
        if (n->next) json_stack[depth++] = n->next;
        if (n->key) {
            for (uint32_t k = 0; k < n->key_len; k++)
                if (n->key[k] != key_char(n->tag, k))
                    fail("json key %p (length %u) has a bad character at %u", (void *)n->key,
                         n->key_len, k);
            if (n->key[n->key_len] != '\0') fail("json key %p lost its NUL", (void *)n->key);
            free(n->key);
        }
        tag_check(n->val, n->val_len, n->tag, "json value");
        free(n->val);
        free(n);
        freed++;
    }
    if (freed != count) fail("json walk freed %u nodes of %u", freed, count);
}

/* ---- mir ------------------------------------------------------------------------------- */

#define MIR_SLOTS 8

static void mir_fill(slot_t *s, uint64_t *rng, uint64_t *serial) {
    uint64_t r = splitmix(rng);
    size_t size = rand_range(rng, 64 * KiB, 448 * KiB);
    uint64_t tag = splitmix(serial);
    unsigned char *p;
    if ((r & 3) == 0) { // grow: half first, then realloc to the full size
        size_t half = size / 2;
        p = xmalloc(half);
        touch_pages(p, half, (unsigned char)r);
        tag_write(p, half, tag);
        if (size > op_max) op_max = size;
        unsigned char *q = realloc(p, size);
        if (!q) fail("realloc(%zu -> %zu) returned NULL: %s", half, size, strerror(errno));
        tag_check(q, half, tag, "mir realloc'd");
        p = q;
    } else {
        p = xmalloc(size);
    }
    touch_pages(p, size, (unsigned char)(r >> 8));
    tag_write(p, size, tag);
    *s = (slot_t){p, size, tag};
}

static void mir_op(uint64_t *rng, uint64_t *serial) {
    slot_t *s = &slots[splitmix(rng) % MIR_SLOTS];
    slot_free(s, "mir");
    mir_fill(s, rng, serial);
}

/* ---- vm -------------------------------------------------------------------------------- */

#define VM_SLOTS 4

static void vm_fill(slot_t *s, uint64_t *rng, uint64_t *serial) {
    size_t size = rand_range(rng, 1 * MiB, 3 * MiB);
    uint64_t tag = splitmix(serial);
    unsigned char *p = xmalloc(size);
    touch_pages(p, size, (unsigned char)tag);
    tag_write(p, size, tag);
    *s = (slot_t){p, size, tag};
}

static void vm_op(uint64_t *rng, uint64_t *serial) {
    slot_t *s = &slots[splitmix(rng) % VM_SLOTS];
    slot_free(s, "vm");
    vm_fill(s, rng, serial);
}

/* ---- mixed ----------------------------------------------------------------------------- */

#define MIXED_SLOTS 256

static size_t mixed_size(uint64_t *rng) {
    unsigned pick = (unsigned)(splitmix(rng) % 100);
    if (pick < 90) return rand_skewed(rng, 16, 1024);
    if (pick < 99) { // [2^e, 2^(e+1)) for e in 10..19: 1 KiB .. 1 MiB
        unsigned e = 10 + (unsigned)(splitmix(rng) % 10);
        size_t lo = (size_t)1 << e;
        return rand_range(rng, lo, 2 * lo - 1);
    }
    return rand_range(rng, 1 * MiB, 4 * MiB);
}

static void mixed_fill(slot_t *s, uint64_t *rng, uint64_t *serial) {
    size_t size = mixed_size(rng);
    uint64_t tag = splitmix(serial);
    unsigned char *p = xmalloc(size);
    memset(p, (int)(tag >> 8) & 0xff, size < 64 ? size : 64);
    if (size > PAGE) touch_pages(p, size, (unsigned char)tag);
    tag_write(p, size, tag);
    *s = (slot_t){p, size, tag};
}

static void mixed_op(uint64_t *rng, uint64_t *serial) {
    slot_t *s = &slots[splitmix(rng) % MIXED_SLOTS];
    slot_free(s, "mixed");
    mixed_fill(s, rng, serial);
}

/* ---- the scenario table and the timed loop --------------------------------------------- */

typedef void (*fill_fn)(slot_t *, uint64_t *, uint64_t *);
typedef void (*op_fn)(uint64_t *, uint64_t *);

typedef struct {
    const char *name;
    op_fn op;
    fill_fn fill;  /* NULL: no working set (json) */
    unsigned slots;
    long default_ops, smoke_ops;
    uint64_t stream; /* mixed into the seed */
} scenario_t;

static const scenario_t SCENARIOS[] = {
    {"json", json_op, NULL, 0, 150000, 200, 0x6a736f6e},
    {"mir", mir_op, mir_fill, MIR_SLOTS, 80000, 200, 0x6d6972},
    {"vm", vm_op, vm_fill, VM_SLOTS, 4000, 40, 0x766d},
    {"mixed", mixed_op, mixed_fill, MIXED_SLOTS, 300000, 2000, 0x6d69786564},
};
#define NSCENARIOS (sizeof SCENARIOS / sizeof SCENARIOS[0])

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* nearest rank: the smallest value with at least q of the samples at or below it */
static uint64_t percentile(const uint64_t *sorted, long n, double q) {
    long rank = (long)(q * (double)n + 0.999999);
    if (rank < 1) rank = 1;
    if (rank > n) rank = n;
    return sorted[rank - 1];
}

// --detail: size ranges, and hakmem's counters read around the timed phase
enum { RANGES = 4 };
static const char *const RANGE_NAMES[RANGES] = {"to_1k", "to_32k", "below_1m", "1m_up"};
static unsigned range_of(size_t n) { return n <= 1024 ? 0 : n <= 32768 ? 1 : n < ((size_t)1 << 20) ? 2 : 3; }
static const char *const DETAIL_COUNTERS[] = {"refill_new_ss", "refill_new_slab", "large_map", "bigcache_miss",
                                              "bigcache_hit_larger", "bigcache_hit_split", "bigcache_hit_grow"};
enum { NDETAIL = sizeof DETAIL_COUNTERS / sizeof DETAIL_COUNTERS[0] };
typedef uint64_t (*stat_fn)(const char *);

static void run_scenario(const scenario_t *sc, long ops, uint64_t seed) {
    uint64_t rng = seed ^ (sc->stream * 0x9e3779b97f4a7c15ULL);
    uint64_t serial = rng ^ 0x5a17c0de5a17c0deULL;
    size_t bytes = (size_t)ops * sizeof(uint64_t);
    uint64_t *times = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (times == MAP_FAILED) fail("mmap of %zu bytes for the op times: %s", bytes, strerror(errno));
    memset(times, 0, bytes); // fault it in now, not in the timed phase

    for (unsigned i = 0; i < sc->slots; i++) sc->fill(&slots[i], &rng, &serial);
    long warmup = ops / 10;
    if (warmup < 4 * (long)sc->slots) warmup = 4 * (long)sc->slots;
    if (warmup < 1) warmup = 1;
    for (long i = 0; i < warmup; i++) sc->op(&rng, &serial);

    uint64_t range_ns[RANGES] = {0}, range_ops[RANGES] = {0}, before[NDETAIL] = {0};
    stat_fn stat = detail ? (stat_fn)dlsym(RTLD_DEFAULT, "hak_stat") : NULL;
    for (unsigned c = 0; stat && c < NDETAIL; c++) before[c] = stat(DETAIL_COUNTERS[c]);
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    uint64_t start = now_ns(), t0 = start;
    for (long i = 0; i < ops; i++) {
        op_max = 0;
        sc->op(&rng, &serial);
        uint64_t t1 = now_ns();
        times[i] = t1 - t0;
        if (detail) {
            unsigned r = range_of(op_max);
            range_ns[r] += t1 - t0;
            range_ops[r]++;
        }
        t0 = t1;
    }
    uint64_t end = t0;
    getrusage(RUSAGE_SELF, &ru1);
    uint64_t moved[NDETAIL] = {0};
    for (unsigned c = 0; stat && c < NDETAIL; c++) moved[c] = stat(DETAIL_COUNTERS[c]) - before[c];

    for (unsigned i = 0; i < sc->slots; i++) slot_free(&slots[i], "final");
    struct rusage ru_end;
    getrusage(RUSAGE_SELF, &ru_end);

    qsort(times, (size_t)ops, sizeof *times, cmp_u64);
    long minflt = ru1.ru_minflt - ru0.ru_minflt, majflt = ru1.ru_majflt - ru0.ru_majflt;
    double secs = (double)(end - start) * 1e-9;
    printf("scenario=%s ops=%ld median_ns=%" PRIu64 " p95_ns=%" PRIu64 " p99_ns=%" PRIu64
           " mean_ns=%.1f minflt=%ld majflt=%ld faults_per_op=%.3f seconds=%.3f peak_rss_kb=%ld\n",
           sc->name, ops, percentile(times, ops, 0.50), percentile(times, ops, 0.95),
           percentile(times, ops, 0.99), (double)(end - start) / (double)ops, minflt, majflt,
           (double)(minflt + majflt) / (double)ops, secs, ru_end.ru_maxrss);
    for (unsigned r = 0; detail && r < RANGES; r++)
        printf("  detail=%s ops=%" PRIu64 " total_ms=%.2f mean_ns=%.0f\n", RANGE_NAMES[r], range_ops[r],
               (double)range_ns[r] * 1e-6, range_ops[r] ? (double)range_ns[r] / (double)range_ops[r] : 0.0);
    if (stat) {
        printf("  detail=hakmem_counters_timed");
        for (unsigned c = 0; c < NDETAIL; c++) printf(" %s=%" PRIu64, DETAIL_COUNTERS[c], moved[c]);
        printf("\n");
    }
    fflush(stdout);
    munmap(times, bytes);
}

/* Run in a child, so that its peak RSS and allocator state are its own. */
static void run_forked(const scenario_t *sc, long ops, uint64_t seed) {
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) fail("fork: %s", strerror(errno));
    if (pid == 0) {
        run_scenario(sc, ops, seed);
        exit(0);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) fail("waitpid: %s", strerror(errno));
    if (WIFSIGNALED(st)) fail("scenario %s died with signal %d", sc->name, WTERMSIG(st));
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) exit(1); // the child said why
}

/* ---- main ------------------------------------------------------------------------------ */

static void usage(void) {
    fprintf(stderr, "usage: scenarios [--smoke] [--detail] [--ops N] [--seed S] [json|mir|vm|mixed|all ...]\n");
    exit(2);
}

static int parse_u64(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || end == s || *end || s[0] == '-') return 0;
    *out = v;
    return 1;
}

int main(int argc, char **argv) {
    int smoke = 0, want[NSCENARIOS] = {0}, any = 0;
    long ops = 0;
    uint64_t seed = 42, v;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--smoke") == 0) {
            smoke = 1;
        } else if (strcmp(a, "--detail") == 0) {
            detail = 1;
        } else if (strcmp(a, "--ops") == 0) {
            if (++i == argc || !parse_u64(argv[i], &v) || v == 0 || v > (1u << 30)) usage();
            ops = (long)v;
        } else if (strcmp(a, "--seed") == 0) {
            if (++i == argc || !parse_u64(argv[i], &seed)) usage();
        } else if (strcmp(a, "all") == 0) {
            for (size_t k = 0; k < NSCENARIOS; k++) want[k] = 1;
            any = 1;
        } else {
            size_t k = 0;
            while (k < NSCENARIOS && strcmp(a, SCENARIOS[k].name) != 0) k++;
            if (k == NSCENARIOS) usage();
            want[k] = 1;
            any = 1;
        }
    }
    unsigned selected = 0;
    for (size_t k = 0; k < NSCENARIOS; k++) {
        if (!any) want[k] = 1;
        selected += (unsigned)want[k];
    }
    for (size_t k = 0; k < NSCENARIOS; k++) {
        if (!want[k]) continue;
        const scenario_t *sc = &SCENARIOS[k];
        long n = ops ? ops : smoke ? sc->smoke_ops : sc->default_ops;
        if (selected > 1) run_forked(sc, n, seed);
        else run_scenario(sc, n, seed);
    }
    return 0;
}
