/* mt_key_dtor.c -- allocation from pthread key destructors at thread exit.
 * Two keys of the test's own: key_a is created before the first allocation in main, key_b
 * after it, so key_b's destructor runs after hakmem's own thread-exit destructor (glibc runs
 * destructors in key order) and finds the thread's cache already flushed and orphaned.
 * Each destructor checks the value the thread stored (a block it allocated while alive),
 * then mallocs, fills, verifies, reallocs and frees blocks of every tier, frees a block main
 * allocated, and hands one new block back to main, which verifies and frees it after join.
 * Some threads allocate nothing before exiting, so their first malloc happens inside a
 * destructor. Asserts: every destructor ran and found its data intact, every handed-back
 * block is intact, and (with counters) the global heap served the late allocations. */
#include <pthread.h>

#include "mt_common.h"

enum { THREADS = 24, ROUNDS = 4 / MT_SCALE > 0 ? 4 / MT_SCALE : 1 };

static pthread_key_t key_a, key_b;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static _Atomic unsigned ran_a, ran_b, ok_a, ok_b;

// Blocks main allocated for the destructors to free, and blocks they hand back.
static void *from_main[ROUNDS * THREADS * 2];
static size_t from_main_n[ROUNDS * THREADS * 2];
static void *to_main[ROUNDS * THREADS * 2];
static size_t to_main_n[ROUNDS * THREADS * 2];
static uint64_t to_main_seq[ROUNDS * THREADS * 2];
static unsigned to_main_count;

typedef struct tval {
    uint64_t seq;      // identifies the thread and the key
    size_t n;          // size of data
    unsigned slot;     // index into from_main
    int heap_value;    // whether this struct itself was allocated by the allocator under test
    unsigned char *data;
} tval_t;

static tval_t static_vals[ROUNDS * THREADS * 2];

static void dtor_work(tval_t *v, char which) {
    // the thread's own data, allocated while it was alive
    if (v->data) {
        size_t bad = mt_verify(v->data, v->n, v->seq);
        CHECK(bad == SIZE_MAX, "destructor %c: thread data (seq %" PRIu64 ") corrupt at %zu", which, v->seq, bad);
        T_FREE(v->data);
    }
    // every tier: small, mid, large
    static const size_t sizes[] = {1, 16, 24, 100, 512, 1000, 1024, 1500, 4096, 20000, 65536, 300000, (1u << 20), (1u << 20) + 1, 3u << 20};
    void *blocks[sizeof sizes / sizeof sizes[0]];
    for (unsigned i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        blocks[i] = T_MALLOC(sizes[i]);
        CHECK(blocks[i] != NULL, "destructor %c: malloc(%zu) failed", which, sizes[i]);
        mt_fill(blocks[i], sizes[i], v->seq * 31 + i);
    }
    for (unsigned i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t bad = mt_verify(blocks[i], sizes[i], v->seq * 31 + i);
        CHECK(bad == SIZE_MAX, "destructor %c: block of %zu corrupt at %zu", which, sizes[i], bad);
        CHECK(T_USABLE(blocks[i]) >= sizes[i], "destructor %c: usable size too small", which);
    }
    for (unsigned i = 0; i < sizeof sizes / sizeof sizes[0]; i++) T_FREE(blocks[i]);
    // many small ones: more than one thread-cache batch of a class
    void *many[600];
    for (unsigned i = 0; i < 600; i++) {
        many[i] = T_MALLOC(48);
        CHECK(many[i] != NULL, "destructor %c: malloc(48) #%u failed", which, i);
        memset(many[i], (int)(i & 0xff), 48);
    }
    for (unsigned i = 0; i < 600; i++) {
        unsigned char *c = many[i];
        for (unsigned k = 0; k < 48; k++)
            CHECK(c[k] == (unsigned char)(i & 0xff), "destructor %c: small block %u overwritten", which, i);
    }
    for (unsigned i = 0; i < 600; i++) T_FREE(many[i]);
    // calloc and a realloc chain across the tiers
    unsigned char *z = T_CALLOC(1000, 10);
    CHECK(z != NULL, "destructor %c: calloc failed", which);
    for (unsigned i = 0; i < 10000; i++) CHECK(z[i] == 0, "destructor %c: calloc memory not zero at %u", which, i);
    size_t zn = 10000;
    mt_fill(z, zn, 7);
    static const size_t grow[] = {20000, 200000, 2u << 20, 5000, 100};
    for (unsigned i = 0; i < sizeof grow / sizeof grow[0]; i++) {
        unsigned char *nz = T_REALLOC(z, grow[i]);
        CHECK(nz != NULL, "destructor %c: realloc to %zu failed", which, grow[i]);
        // the fill pattern's whole words survive in the kept prefix
        size_t keep = (zn < grow[i] ? zn : grow[i]) & ~(size_t)7;
        size_t bad = mt_verify(nz, keep, 7);
        CHECK(bad == SIZE_MAX, "destructor %c: realloc %zu -> %zu lost data at %zu", which, zn, grow[i], bad);
        z = nz;
        zn = grow[i];
        mt_fill(z, zn, 7);
    }
    T_FREE(z);
    // a block main allocated, freed here; and a new one for main to free
    pthread_mutex_lock(&mu);
    void *fm = from_main[v->slot];
    size_t fmn = from_main_n[v->slot];
    from_main[v->slot] = NULL;
    pthread_mutex_unlock(&mu);
    CHECK(fm != NULL, "destructor %c: main's block %u missing", which, v->slot);
    CHECK(mt_verify(fm, fmn, 1000 + v->slot) == SIZE_MAX, "destructor %c: main's block corrupt", which);
    T_FREE(fm);
    size_t hn = 64 + (v->seq % 5000);
    void *h = T_MALLOC(hn);
    CHECK(h != NULL, "destructor %c: malloc for main failed", which);
    mt_fill(h, hn, v->seq + 77);
    pthread_mutex_lock(&mu);
    to_main[to_main_count] = h;
    to_main_n[to_main_count] = hn;
    to_main_seq[to_main_count] = v->seq + 77;
    to_main_count++;
    pthread_mutex_unlock(&mu);
    if (v->heap_value) T_FREE(v);
}

static void dtor_a(void *p) {
    ran_a++;
    dtor_work(p, 'a');
    ok_a++;
}

static void dtor_b(void *p) {
    ran_b++;
    dtor_work(p, 'b');
    ok_b++;
}

typedef struct job {
    unsigned round, idx;
} job_t;

static tval_t *make_val(unsigned slot, int quiet) {
    tval_t *v;
    if (quiet) {
        v = &static_vals[slot];
        *v = (tval_t){0};
    } else {
        v = T_MALLOC(sizeof *v);
        CHECK(v != NULL, "malloc tval");
        *v = (tval_t){0};
        v->heap_value = 1;
        v->n = 100 + slot * 13;
        v->data = T_MALLOC(v->n);
        CHECK(v->data != NULL, "malloc data");
    }
    v->seq = 0x5000 + slot;
    v->slot = slot;
    if (v->data) mt_fill(v->data, v->n, v->seq);
    return v;
}

static void *worker(void *arg) {
    job_t *j = arg;
    // one thread in four allocates nothing before it exits: its first malloc happens in a
    // destructor, after (for key_b) or before (key_a) hakmem's own exit handling
    int quiet = j->idx % 4 == 3;
    unsigned base = (j->round * THREADS + j->idx) * 2;
    if (!quiet) {
        // a normal life: allocate and free a little, keep some blocks cached
        for (unsigned i = 0; i < 200; i++) {
            void *p = T_MALLOC(16 + i * 8);
            CHECK(p != NULL, "worker malloc");
            T_FREE(p);
        }
    }
    CHECK(pthread_setspecific(key_a, make_val(base, quiet)) == 0, "pthread_setspecific a");
    CHECK(pthread_setspecific(key_b, make_val(base + 1, quiet)) == 0, "pthread_setspecific b");
    return NULL;
}

int main(void) {
    mt_test_name = "mt_key_dtor";
    CHECK(pthread_key_create(&key_a, dtor_a) == 0, "pthread_key_create a");
    // the first allocation of the process in the prefixed build: hakmem creates its key here
    void *first = T_MALLOC(40);
    CHECK(first != NULL, "first malloc");
    T_FREE(first);
    CHECK(pthread_key_create(&key_b, dtor_b) == 0, "pthread_key_create b");
    uint64_t global0 = MT_STATS ? mt_stat("global_heap_alloc") : 0;

    for (unsigned i = 0; i < ROUNDS * THREADS * 2; i++) {
        from_main_n[i] = 32 + i * 97 % 3000;
        from_main[i] = T_MALLOC(from_main_n[i]);
        CHECK(from_main[i] != NULL, "malloc");
        mt_fill(from_main[i], from_main_n[i], 1000 + i);
    }
    for (unsigned round = 0; round < ROUNDS; round++) {
        pthread_t t[THREADS];
        job_t jobs[THREADS];
        for (unsigned i = 0; i < THREADS; i++) {
            jobs[i] = (job_t){round, i};
            CHECK(pthread_create(&t[i], NULL, worker, &jobs[i]) == 0, "pthread_create");
        }
        for (unsigned i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    }
    const unsigned total = ROUNDS * THREADS;
    CHECK(ran_a == total && ok_a == total, "key_a destructor: ran %u, completed %u, expected %u", (unsigned)ran_a,
          (unsigned)ok_a, total);
    CHECK(ran_b == total && ok_b == total, "key_b destructor: ran %u, completed %u, expected %u", (unsigned)ran_b,
          (unsigned)ok_b, total);
    CHECK(to_main_count == 2 * total, "%u blocks handed back, expected %u", to_main_count, 2 * total);
    for (unsigned i = 0; i < to_main_count; i++) {
        size_t bad = mt_verify(to_main[i], to_main_n[i], to_main_seq[i]);
        CHECK(bad == SIZE_MAX, "block %u handed back by a destructor corrupt at %zu", i, bad);
        T_FREE(to_main[i]);
    }
    for (unsigned i = 0; i < ROUNDS * THREADS * 2; i++) CHECK(from_main[i] == NULL, "main's block %u never freed", i);
    if (MT_STATS) {
        uint64_t g = mt_stat("global_heap_alloc") - global0;
        printf("global_heap_alloc=%" PRIu64 " thread_exit=%" PRIu64 "\n", g, mt_stat("thread_exit"));
        // key_b's destructor runs after hakmem's: its allocations come from the global heap
        CHECK(g > 0, "global_heap_alloc did not move: the allocations of key_b's destructors (after hakmem's exit "
                     "handler) were not served by the global heap, or not counted");
    }
    // and the process heap still works
    for (unsigned i = 0; i < 2000; i++) {
        void *p = T_MALLOC(i * 3 + 1);
        CHECK(p != NULL, "malloc after the run");
        T_FREE(p);
    }
    printf("mt_key_dtor: %u threads, %u destructor calls checked\n", total, 2 * total);
    return 0;
}
