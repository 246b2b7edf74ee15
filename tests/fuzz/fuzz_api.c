/* fuzz_api.c -- a fuzz target for hakmem's prefixed API, checked against a shadow model.
 * The input is a program: a header byte (threads 1-4, fault mode), then operations of five
 * bytes each over per-thread slots: malloc, calloc (overflowing too), realloc (grow, shrink,
 * to 0, from NULL), aligned_alloc / posix_memalign / memalign (invalid alignments too),
 * usable size, free, free_sized, hand-off to another thread (whose free is then remote),
 * trim, and in fault mode OS faults injected through hak_os_fault_set. Sizes run from 0 to
 * 8 MiB (small, mid and large tiers); live bytes stay under FUZZ_LIVE_MAX. Every answer is
 * checked (shadow.h): content at each touch and before free, calloc zeroed, realloc's prefix,
 * alignment, usable size, no overlap with any live block, errno on each refusal.
 * Built two ways: with libFuzzer (FUZZ_LIBFUZZER, clang -fsanitize=fuzzer), and as a
 * standalone driver whose main() runs seeded random programs (CTest's fuzz smoke) or replays
 * input files. docs/FUZZING.md says how to run it. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hak_os.h"  // hak_os_fault_set: test-only, reached through the static library
#include "hakmem.h"
#include "shadow.h"

#define FUZZ_THREADS 4
#define FUZZ_SLOTS 64                        /* blocks each thread holds */
#define FUZZ_MAILBOX 32                      /* blocks handed to a thread, not yet freed */
#define FUZZ_LIVE_MAX ((size_t)96 << 20)    /* live requested bytes, all threads */
#define FUZZ_LARGE_MAX ((size_t)8 << 20)
#define FUZZ_OP_BYTES 5

typedef struct block {
    unsigned char *p;
    size_t size;    /* requested */
    size_t usable;  /* hak_usable_size at allocation */
    uint64_t id;    /* pattern seed */
} block_t;

typedef struct op {
    uint8_t code, slot, aux;
    uint16_t sz;
} op_t;

typedef struct worker {
    unsigned index;
    op_t *ops;
    size_t nops;
    block_t slots[FUZZ_SLOTS];
    pthread_mutex_t mail_lock;
    block_t mail[FUZZ_MAILBOX];
    unsigned nmail;
    uint64_t done;
} worker_t;

static shadow_set_t live_set = SHADOW_SET_INIT;
static _Atomic size_t live_bytes;
static _Atomic uint64_t next_id = 1;
static _Atomic uint64_t ops_total;
static worker_t workers[FUZZ_THREADS];
static unsigned nworkers;
static int fault_mode;

enum {
    OP_MALLOC,
    OP_CALLOC,
    OP_REALLOC,
    OP_REALLOC0,
    OP_ALIGNED,
    OP_USABLE,
    OP_FREE,
    OP_HANDOFF,
    OP_DRAIN,
    OP_CHECK,
    OP_MISC,  // trim, or in fault mode an injected fault
    OP_COUNT
};

/* ---- decoding -------------------------------------------------------------------------- */

// Sizes by tier: small (0-1024) most often, then mid (to 1 MiB), large (to 8 MiB) rarely.
static size_t decode_size(uint16_t r) {
    unsigned tier = r & 15, v = r >> 4;  // v: 12 bits
    if (tier <= 8) return v % 1025;
    if (tier <= 11) return 1025 + (v * 257u) % 7168;                          // to 8 KiB
    if (tier <= 14) return 1025 + ((size_t)v * 65537u) % (((size_t)1 << 20) - 1024);  // to 1 MiB
    return ((size_t)1 << 20) + 1 + ((size_t)v * 1795u + (v & 7)) % (FUZZ_LARGE_MAX - ((size_t)1 << 20));
}

static const size_t alignments[] = {
    1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 4096, 8192, 65536, 131072, (size_t)1 << 21, (size_t)1 << 22,
    0, 3, 24, 48, 1000, 12288, 100000, ((size_t)1 << 63) + 1, (size_t)1 << 63, SIZE_MAX};

/* ---- the model ------------------------------------------------------------------------- */

static int may_fail(int err) { return fault_mode && err == ENOMEM; }

// Record a block the allocator just returned: alignment, usable size, overlap; then fill it.
static void adopt(block_t *b, void *p, size_t size, size_t align, int zeroed, const char *what) {
    if ((uintptr_t)p % 16 != 0) SHADOW_FAIL("%s(%zu) = %p: not 16-byte aligned", what, size, p);
    if (align > 1 && (uintptr_t)p % align != 0) SHADOW_FAIL("%s(%zu, align %zu) = %p: misaligned", what, size, align, p);
    size_t usable = hak_usable_size(p);
    if (usable < size) SHADOW_FAIL("%s(%zu) = %p: usable size %zu below the request", what, size, p, usable);
    if (zeroed) {
        size_t bad = shadow_find_nonzero(p, size);
        if (bad != SIZE_MAX) SHADOW_FAIL("%s(%zu) = %p: byte %zu is 0x%02x, not zero", what, size, p, bad, ((unsigned char *)p)[bad]);
    }
    b->p = p;
    b->size = size;
    b->usable = usable;
    b->id = atomic_fetch_add_explicit(&next_id, 1, memory_order_relaxed);
    shadow_insert(&live_set, p, usable, b->id);
    shadow_fill(p, size, b->id);
}

static void check_block(const block_t *b, const char *when) {
    shadow_check(b->p, b->size, b->size, b->id, when);
    size_t u = hak_usable_size(b->p);
    if (u != b->usable) SHADOW_FAIL("%s: block %p: usable size changed from %zu to %zu", when, b->p, b->usable, u);
}

static void release(block_t *b, int sized) {
    check_block(b, "before free");
    shadow_remove(&live_set, b->p);
    atomic_fetch_sub_explicit(&live_bytes, b->size, memory_order_relaxed);
    if (sized) hak_free_sized(b->p, b->size);
    else hak_free(b->p);
    b->p = NULL;
}

// Reserve room for size live bytes; 0 if that would pass the bound (the op is skipped).
static int reserve(size_t size) {
    size_t cur = atomic_fetch_add_explicit(&live_bytes, size, memory_order_relaxed);
    if (cur + size <= FUZZ_LIVE_MAX) return 1;
    atomic_fetch_sub_explicit(&live_bytes, size, memory_order_relaxed);
    return 0;
}

// A NULL answer with the errno it came with: fine only where allowed.
static void refused(const char *what, size_t size, int err, int allowed) {
    if (!allowed) SHADOW_FAIL("%s(%zu) failed with errno %d (%s)", what, size, err, strerror(err));
}

static void do_malloc(block_t *b, size_t size) {
    if (!reserve(size)) return;
    errno = 0;
    void *p = hak_malloc(size);
    if (!p) {
        atomic_fetch_sub_explicit(&live_bytes, size, memory_order_relaxed);
        return refused("malloc", size, errno, may_fail(errno));
    }
    adopt(b, p, size, 0, 0, "malloc");
}

static void do_calloc(block_t *b, size_t size, uint8_t aux) {
    if (aux == 0xff) {  // count * size overflows: NULL and ENOMEM, whatever the mode
        errno = 0;
        void *p = hak_calloc(SIZE_MAX / 2 + 2, 2 + (size & 7));
        if (p || errno != ENOMEM) SHADOW_FAIL("calloc overflow: %p, errno %d", p, errno);
        return;
    }
    size_t count = 1 + aux % 16, each = size / count, n = count * each;
    if (!reserve(n)) return;
    errno = 0;
    void *p = hak_calloc(count, each);
    if (!p) {
        atomic_fetch_sub_explicit(&live_bytes, n, memory_order_relaxed);
        return refused("calloc", n, errno, may_fail(errno));
    }
    adopt(b, p, n, 0, 1, "calloc");
}

static void do_realloc0(block_t *b);

static void do_realloc(block_t *b, size_t size) {
    if (!b->p) {  // realloc(NULL, n) is malloc(n)
        if (!reserve(size)) return;
        errno = 0;
        void *p = hak_realloc(NULL, size);
        if (!p) {
            atomic_fetch_sub_explicit(&live_bytes, size, memory_order_relaxed);
            return refused("realloc(NULL)", size, errno, may_fail(errno));
        }
        adopt(b, p, size, 0, 0, "realloc(NULL)");
        return;
    }
    if (size == 0) return do_realloc0(b);  // realloc(p, 0) frees p
    if (size > b->size && !reserve(size - b->size)) return;
    check_block(b, "before realloc");
    // out of the set first: the new block may overlap the old one (in place)
    shadow_remove(&live_set, b->p);
    errno = 0;
    unsigned char *q = hak_realloc(b->p, size);
    if (!q) {
        int err = errno;
        if (size > b->size) atomic_fetch_sub_explicit(&live_bytes, size - b->size, memory_order_relaxed);
        shadow_insert(&live_set, b->p, b->usable, b->id);
        refused("realloc", size, err, may_fail(err));
        check_block(b, "after a failed realloc");  // the old block stays valid
        return;
    }
    shadow_check(q, b->size, size, b->id, "realloc's copy");
    if (size < b->size) atomic_fetch_sub_explicit(&live_bytes, b->size - size, memory_order_relaxed);
    adopt(b, q, size, 0, 0, "realloc");
}

static void do_realloc0(block_t *b) {
    if (!b->p) {
        errno = 0;
        void *p = hak_realloc(NULL, 0);  // malloc(0): a unique pointer
        if (!p) return refused("realloc(NULL, 0)", 0, errno, may_fail(errno));
        adopt(b, p, 0, 0, 0, "realloc(NULL, 0)");
        return;
    }
    check_block(b, "before realloc(p, 0)");
    shadow_remove(&live_set, b->p);
    atomic_fetch_sub_explicit(&live_bytes, b->size, memory_order_relaxed);
    void *r = hak_realloc(b->p, 0);  // glibc's rule: frees p, returns NULL
    if (r != NULL) SHADOW_FAIL("realloc(%p, 0) = %p, expected NULL", (void *)b->p, r);
    b->p = NULL;
}

static void do_aligned(block_t *b, size_t size, uint8_t aux) {
    size_t align = alignments[(aux >> 2) % (sizeof alignments / sizeof alignments[0])];
    int pow2 = align && !(align & (align - 1));
    if (pow2 && align > ((size_t)1 << 22)) align = (size_t)1 << 22;  // keep mappings bounded
    if (!reserve(size)) return;
    void *p = NULL;
    size_t want = align;  // the alignment the answer must have
    const char *what;
    int valid, err;
    switch (aux % 3) {
    case 0:  // C17: a power of two, else EINVAL
        what = "aligned_alloc";
        valid = pow2;
        errno = 0;
        p = hak_aligned_alloc(align, size);
        err = errno;
        break;
    case 1: {  // a power-of-two multiple of sizeof(void *), else EINVAL; errno untouched
        what = "posix_memalign";
        valid = pow2 && align % sizeof(void *) == 0;
        void *sentinel = (void *)(uintptr_t)0x5a5a5a5a5a5a5a50u, *out = sentinel;
        errno = 1234;
        err = hak_posix_memalign(&out, align, size);
        // errno stays as it was on failure; on success too, unless an injected fault was
        // met and recovered from (a retry after a failed mmap), which may leave ENOMEM
        if (errno != 1234 && (err != 0 || !fault_mode))
            SHADOW_FAIL("posix_memalign(%zu, %zu) = %d changed errno to %d", align, size, err, errno);
        if (err == 0) p = out;
        else if (out != sentinel) SHADOW_FAIL("posix_memalign(%zu, %zu) failed (%d) but wrote *out", align, size, err);
        break;
    }
    default:  // glibc: rounded up to a power of two; EINVAL only past the largest one
        what = "memalign";
        valid = align <= (SIZE_MAX >> 1) + 1;
        for (want = 1; valid && want < align; want <<= 1) {}
        errno = 0;
        p = hak_memalign(align, size);
        err = errno;
        break;
    }
    if (!valid) {
        atomic_fetch_sub_explicit(&live_bytes, size, memory_order_relaxed);
        if (p || err != EINVAL) SHADOW_FAIL("%s(%zu, %zu) = %p, error %d: expected EINVAL", what, align, size, p, err);
        return;
    }
    if (!p) {
        atomic_fetch_sub_explicit(&live_bytes, size, memory_order_relaxed);
        return refused(what, size, err, may_fail(err));
    }
    adopt(b, p, size, want, 0, what);
}

static void fault_op(uint8_t aux, uint16_t sz) {
    // mmap, madvise(MADV_DONTNEED) and mremap; munmap failures leak by design (the range
    // stays mapped) and would pile up over millions of ops: tests/fault covers them
    static const hak_os_fault_kind_t kinds[] = {HAK_OS_FAULT_MAP, HAK_OS_FAULT_MAP, HAK_OS_FAULT_PURGE, HAK_OS_FAULT_REMAP};
    hak_os_fault_set(kinds[aux & 3], (sz >> 4) % 8, 1 + (sz & 15) % 4);
}

static void drain(worker_t *w) {
    block_t got[FUZZ_MAILBOX];
    pthread_mutex_lock(&w->mail_lock);
    unsigned n = w->nmail;
    memcpy(got, w->mail, n * sizeof got[0]);
    w->nmail = 0;
    pthread_mutex_unlock(&w->mail_lock);
    for (unsigned i = 0; i < n; i++) release(&got[i], 0);
}

static void run_op(worker_t *w, const op_t *o) {
    block_t *b = &w->slots[o->slot % FUZZ_SLOTS];
    size_t size = decode_size(o->sz);
    switch (o->code % OP_COUNT) {
    case OP_MALLOC:
    case OP_CALLOC:
    case OP_ALIGNED:
        if (b->p) release(b, o->aux & 1);
        if (o->code % OP_COUNT == OP_MALLOC) do_malloc(b, size);
        else if (o->code % OP_COUNT == OP_CALLOC) do_calloc(b, size, o->aux);
        else do_aligned(b, size, o->aux);
        break;
    case OP_REALLOC:
        do_realloc(b, size);
        break;
    case OP_REALLOC0:
        do_realloc0(b);
        break;
    case OP_USABLE:
        if (b->p) {
            check_block(b, "usable size");
            if (b->usable > b->size) b->p[b->usable - 1] = o->aux;  // the slack is the caller's
        }
        break;
    case OP_FREE:
        if (b->p) release(b, o->aux & 1);
        break;
    case OP_HANDOFF:
        if (b->p) {
            worker_t *to = &workers[(w->index + 1 + o->aux % 3) % nworkers];
            check_block(b, "hand-off");
            pthread_mutex_lock(&to->mail_lock);
            int room = to->nmail < FUZZ_MAILBOX;
            if (room) to->mail[to->nmail++] = *b;
            pthread_mutex_unlock(&to->mail_lock);
            if (room) b->p = NULL;
            else release(b, 0);
        }
        break;
    case OP_DRAIN:
        drain(w);
        break;
    case OP_CHECK:
        if (b->p) check_block(b, "check");
        break;
    default:
        if (fault_mode && (o->aux & 1)) fault_op(o->aux >> 1, o->sz);
        else if (o->aux == 0 && o->slot < 16) hak_trim(0);
        break;
    }
}

static void *worker_main(void *arg) {
    worker_t *w = arg;
    for (size_t i = 0; i < w->nops; i++) run_op(w, &w->ops[i]);
    for (unsigned s = 0; s < FUZZ_SLOTS; s++)
        if (w->slots[s].p) release(&w->slots[s], 0);
    atomic_fetch_add_explicit(&ops_total, w->nops, memory_order_relaxed);
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    nworkers = 1 + (data[0] & 3);
    fault_mode = (data[0] >> 2) & 1;
    size_t nops = (size - 1) / FUZZ_OP_BYTES;
    op_t *all = malloc((nops ? nops : 1) * sizeof *all);
    if (!all) abort();
    size_t count[FUZZ_THREADS] = {0};
    for (size_t i = 0; i < nops; i++) {  // op i goes to the thread its second byte names
        const uint8_t *d = data + 1 + i * FUZZ_OP_BYTES;
        count[d[1] % nworkers]++;
    }
    size_t at = 0;
    for (unsigned t = 0; t < nworkers; t++) {
        worker_t *w = &workers[t];
        memset(w, 0, sizeof *w);
        pthread_mutex_init(&w->mail_lock, NULL);
        w->index = t;
        w->ops = all + at;
        at += count[t];
    }
    for (size_t i = 0; i < nops; i++) {
        const uint8_t *d = data + 1 + i * FUZZ_OP_BYTES;
        worker_t *w = &workers[d[1] % nworkers];
        w->ops[w->nops++] = (op_t){d[0], (uint8_t)(d[1] / FUZZ_THREADS), d[2], (uint16_t)(d[3] | d[4] << 8)};
    }
    if (nworkers == 1) {
        worker_main(&workers[0]);
    } else {
        pthread_t th[FUZZ_THREADS];
        for (unsigned t = 0; t < nworkers; t++)
            if (pthread_create(&th[t], NULL, worker_main, &workers[t]) != 0) SHADOW_FAIL("pthread_create");
        for (unsigned t = 0; t < nworkers; t++) pthread_join(th[t], NULL);
    }
    for (unsigned k = 0; k < HAK_OS_FAULT_KINDS; k++) hak_os_fault_set((hak_os_fault_kind_t)k, 0, 0);
    // blocks still in a mailbox: freed here, by a thread that did not allocate them
    for (unsigned t = 0; t < nworkers; t++) drain(&workers[t]);
    for (unsigned t = 0; t < nworkers; t++) pthread_mutex_destroy(&workers[t].mail_lock);
    free(all);
    if (shadow_count(&live_set) != 0) SHADOW_FAIL("%zu blocks left in the shadow set", shadow_count(&live_set));
    if (atomic_load(&live_bytes) != 0) SHADOW_FAIL("%zu live bytes left in the count", atomic_load(&live_bytes));
    return 0;
}

#ifndef FUZZ_LIBFUZZER
/* ---- the standalone driver --------------------------------------------------------------
 * fuzz_api [--seed S] [--ops N] [--max-len L] [--threads-max T] [FILE...]
 * With files: run each as one input (reproduces a libFuzzer crash without libFuzzer).
 * Otherwise: random programs from splitmix64(seed) until N operations ran. */
static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int run_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return 1;
    }
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0, n;
    do {
        if (len == cap) {
            cap = cap ? 2 * cap : 4096;
            buf = realloc(buf, cap);
            if (!buf) abort();
        }
        n = fread(buf + len, 1, cap - len, f);
        len += n;
    } while (n > 0);
    fclose(f);
    LLVMFuzzerTestOneInput(buf, len);
    free(buf);
    printf("fuzz_api: %s: %zu bytes ok\n", path, len);
    return 0;
}

int main(int argc, char **argv) {
    uint64_t seed = 1, ops = 200000, max_len = 4096, threads_max = FUZZ_THREADS;
    int files = 0, rc = 0;
    for (int i = 1; i < argc; i++) {
        uint64_t *dst = NULL;
        if (!strcmp(argv[i], "--seed")) dst = &seed;
        else if (!strcmp(argv[i], "--ops")) dst = &ops;
        else if (!strcmp(argv[i], "--max-len")) dst = &max_len;
        else if (!strcmp(argv[i], "--threads-max")) dst = &threads_max;
        if (dst) {
            if (i + 1 >= argc) {
                fprintf(stderr, "fuzz_api: %s needs a value\n", argv[i]);
                return 2;
            }
            *dst = strtoull(argv[++i], NULL, 0);
            continue;
        }
        files++;
        rc |= run_file(argv[i]);
    }
    if (files) return rc;
    if (max_len < 1 + FUZZ_OP_BYTES) max_len = 1 + FUZZ_OP_BYTES;
    if (threads_max < 1 || threads_max > FUZZ_THREADS) threads_max = FUZZ_THREADS;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    uint8_t *buf = malloc(max_len);
    if (!buf) abort();
    uint64_t s = seed, inputs = 0;
    while (atomic_load(&ops_total) < ops) {
        size_t len = 1 + splitmix(&s) % max_len;
        for (size_t i = 0; i < len; i += 8) {
            uint64_t r = splitmix(&s);
            memcpy(buf + i, &r, len - i < 8 ? len - i : 8);
        }
        // threads within the bound; fault mode in one program of eight
        uint8_t h = buf[0];
        buf[0] = (uint8_t)((h & 3) % threads_max) | (((h >> 3) & 7) == 0 ? 4 : 0);
        LLVMFuzzerTestOneInput(buf, len);
        inputs++;
    }
    free(buf);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    printf("fuzz_api seed=%" PRIu64 " inputs=%" PRIu64 " ops=%" PRIu64 " seconds=%.2f faults_injected=%" PRIu64 "\n", seed,
           inputs, atomic_load(&ops_total), secs,
           hak_os_fault_hits(HAK_OS_FAULT_MAP) + hak_os_fault_hits(HAK_OS_FAULT_PURGE) + hak_os_fault_hits(HAK_OS_FAULT_REMAP));
    return 0;
}
#endif
