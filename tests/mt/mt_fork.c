/* mt_fork.c -- fork() while other threads allocate and free.
 * Two workers allocate and free blocks of every tier in loops, hand blocks to each other
 * (remote frees), start short-lived threads (heap orphaning and adoption) and trim, while
 * the main thread forks FORKS times. Each child: frees blocks inherited from the parent
 * (main's and a worker's), mallocs/frees/reallocs blocks of various sizes, maps new
 * SuperSlabs and large blocks, starts a thread that allocates and frees (and frees a block of
 * the child's main thread), joins it, walks the heaps (hak_info / mallinfo2), trims, and
 * _exit(0). The parent asserts every child exited 0. alarm() turns a deadlock in a child
 * (a lock copied held across fork) or in the parent into a failure instead of a hang.
 * Built three ways: prefixed API (hakmem_api), plain malloc under LD_PRELOAD=libhakmem.so,
 * plain malloc linked with libhakmem.a. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>

#include "mt_common.h"

// A run takes about 27 s alone on a 2-CPU machine (each child fills and checks some 30 MB);
// CI runs tests two at a time, and a loaded machine once took it past a 50 s alarm.
enum { FORKS = 100, WSLOTS = 256, XSLOTS = 64, CHILD_ALARM = 4, PARENT_ALARM = 150, MAX_FAILED = 2 };

static atomic_int stop;

// The AddressSanitizer runtimes of Debian 12 (clang 14's, which CI uses, and GCC 12's) take
// none of their own allocator's locks around fork(); LLVM's does since llvm/llvm-project#75290
// (2023). A child forked while a parent thread was inside ASan's malloc or free hangs at its
// first pthread_create, which allocates through ASan: seen here under load as the child alarm
// firing, with every child thread stopped in ASan's SizeClassAllocator64::GetFromAllocator.
// The parent's only repeated use of ASan's allocator is the workers' short threads (creating,
// starting, ending and joining them), so under ASan a worker holds this lock from create to
// join, and main forks holding it; the workers' hakmem allocations still run across every fork.
#if defined(__SANITIZE_ADDRESS__)
#define ASAN_FORK_GATE 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ASAN_FORK_GATE 1
#endif
#endif
#ifndef ASAN_FORK_GATE
#define ASAN_FORK_GATE 0
#endif
static pthread_mutex_t spawn_gate = PTHREAD_MUTEX_INITIALIZER;
static _Atomic uint64_t worker_ops[2];
// blocks handed between the workers (and lent to children): filled with seq = their tag
static _Atomic(void *) xchg[XSLOTS];

typedef struct hdr {
    uint64_t seq;
    size_t n;
} hdr_t;

// A block starts with its header; the rest carries the pattern of seq.
static void *make_block(size_t n, uint64_t seq) {
    if (n < sizeof(hdr_t)) n = sizeof(hdr_t);
    hdr_t *h = T_MALLOC(n);
    if (!h) return NULL;
    h->seq = seq;
    h->n = n;
    mt_fill(h + 1, n - sizeof *h, seq);
    return h;
}

static size_t check_block(void *p) {
    hdr_t *h = p;
    return mt_verify(h + 1, h->n - sizeof *h, h->seq);
}

static size_t pick_size(uint64_t *rng) {
    uint64_t r = mt_splitmix(rng);
    unsigned b = (unsigned)(r % 1000);
    r >>= 10;
    if (b < 700) return 16 + (size_t)(r % 1009);
    if (b < 980) return 1025 + (size_t)(r % (31 * 1024));
    if (b < 998) return 32 * 1024 + (size_t)(r % (992 * 1024));
    return (1u << 20) + 1 + (size_t)(r % (1u << 20));
}

static void *short_thread(void *arg) {
    uint64_t rng = (uint64_t)(uintptr_t)arg;
    void *keep[64];
    for (unsigned i = 0; i < 64; i++) {
        keep[i] = make_block(16 + mt_splitmix(&rng) % 4000, i);
        CHECK(keep[i] != NULL, "short thread: malloc failed");
    }
    for (unsigned i = 0; i < 64; i++) {
        CHECK(check_block(keep[i]) == SIZE_MAX, "short thread: block corrupt");
        if (i % 8) T_FREE(keep[i]);
        else {  // some outlive the thread: freed later by a worker
            void *old = atomic_exchange(&xchg[i % XSLOTS], keep[i]);
            if (old) {
                CHECK(check_block(old) == SIZE_MAX, "short thread: exchanged block corrupt");
                T_FREE(old);
            }
        }
    }
    return NULL;
}

static void *worker(void *arg) {
    unsigned id = (unsigned)(uintptr_t)arg;
    uint64_t rng = 99 + id;
    void *slot[WSLOTS] = {0};
    uint64_t ops = 0;
    while (!atomic_load(&stop)) {
        unsigned s = (unsigned)(mt_splitmix(&rng) % WSLOTS);
        if (slot[s]) {
            size_t bad = check_block(slot[s]);
            CHECK(bad == SIZE_MAX, "worker %u: block corrupt at %zu", id, bad);
            if (ops % 7 == 0) {  // hand it to the other worker instead
                void *old = atomic_exchange(&xchg[s % XSLOTS], slot[s]);
                if (old) {
                    CHECK(check_block(old) == SIZE_MAX, "worker %u: exchanged block corrupt", id);
                    T_FREE(old);
                }
            } else {
                T_FREE(slot[s]);
            }
        }
        slot[s] = make_block(pick_size(&rng), ops * 2 + id);
        CHECK(slot[s] != NULL, "worker %u: malloc failed", id);
        ops++;
        if (ops % 4096 == 0) {
            pthread_t t;
            if (ASAN_FORK_GATE) pthread_mutex_lock(&spawn_gate);
            CHECK(pthread_create(&t, NULL, short_thread, (void *)(uintptr_t)ops) == 0, "worker: pthread_create");
            pthread_join(t, NULL);
            if (ASAN_FORK_GATE) pthread_mutex_unlock(&spawn_gate);
        }
        if (ops % 20000 == 0) T_TRIM();
        atomic_store(&worker_ops[id], ops);
    }
    for (unsigned s = 0; s < WSLOTS; s++) T_FREE(slot[s]);
    return NULL;
}

static void on_alarm_child(int sig) {
    (void)sig;
    static const char msg[] = "FAIL [mt_fork] child: alarm fired, the child is deadlocked\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
    _exit(3);
}

static void on_alarm_parent(int sig) {
    (void)sig;
    static const char msg[] = "FAIL [mt_fork] parent: alarm fired, the parent is deadlocked or too slow\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
    _exit(2);
}

static void *child_thread(void *arg) {
    void *from_main = arg;
    CHECK(check_block(from_main) == SIZE_MAX, "child thread: main's block corrupt");
    T_FREE(from_main);  // a remote free in the child
    uint64_t rng = 5;
    for (unsigned i = 0; i < 2000; i++) {
        size_t n = pick_size(&rng);
        if (n > (1u << 20)) n = 100;
        void *p = make_block(n, i);
        CHECK(p != NULL, "child thread: malloc(%zu) failed", n);
        CHECK(check_block(p) == SIZE_MAX, "child thread: block corrupt");
        T_FREE(p);
    }
    return NULL;
}

static int child_main(unsigned k, void **inherited, unsigned ninh) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm_child;
    sigaction(SIGALRM, &sa, NULL);
    alarm(CHILD_ALARM);
    mt_test_name = "mt_fork child";
    // blocks inherited from the parent: main's own and the workers'
    for (unsigned i = 0; i < ninh; i++) {
        size_t bad = check_block(inherited[i]);
        CHECK(bad == SIZE_MAX, "child %u: inherited block %u corrupt at %zu", k, i, bad);
        T_FREE(inherited[i]);
    }
    // every tier
    static const size_t sizes[] = {1, 8, 16, 17, 100, 256, 1000, 1024, 1025, 4000, 8192, 50000, 65536, 200000, 1u << 20, (1u << 20) + 1, 5u << 20};
    void *b[sizeof sizes / sizeof sizes[0]];
    for (unsigned i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        b[i] = make_block(sizes[i], 1000 + i);
        CHECK(b[i] != NULL, "child %u: malloc(%zu) failed", k, sizes[i]);
    }
    for (unsigned i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        CHECK(check_block(b[i]) == SIZE_MAX, "child %u: block of %zu corrupt", k, sizes[i]);
        T_FREE(b[i]);
    }
    // enough mid blocks to need fresh SuperSlabs (pool, metadata, pagemap, orphans)
    void *mid[48];
    for (unsigned i = 0; i < 48; i++) {
        mid[i] = make_block(100000, i);
        CHECK(mid[i] != NULL, "child %u: mid malloc failed", k);
    }
    char *r = T_MALLOC(10);
    CHECK(r != NULL, "child %u: malloc(10)", k);
    memcpy(r, "0123456789", 10);
    static const size_t grow[] = {100, 3000, 70000, 3u << 20, 40};
    for (unsigned i = 0; i < sizeof grow / sizeof grow[0]; i++) {
        r = T_REALLOC(r, grow[i]);
        CHECK(r != NULL && memcmp(r, "0123456789", 10) == 0, "child %u: realloc to %zu lost data", k, grow[i]);
    }
    T_FREE(r);
    void *for_thread = make_block(3000, 77);
    CHECK(for_thread != NULL, "child %u: malloc", k);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, child_thread, for_thread) == 0, "child %u: pthread_create", k);
    CHECK(pthread_join(t, NULL) == 0, "child %u: pthread_join", k);
    for (unsigned i = 0; i < 48; i++) {
        CHECK(check_block(mid[i]) == SIZE_MAX, "child %u: mid block corrupt", k);
        T_FREE(mid[i]);
    }
    // walk every heap (takes each heap's lock) and trim (the orphan list, the pool)
    size_t mapped = t_mapped_bytes();
    CHECK(mapped > 0, "child %u: the heap summary says nothing is mapped", k);
    T_TRIM();
    if (MT_STATS) CHECK(mt_stat("thread_init") >= 1, "child %u: counters unreadable", k);
    alarm(0);
    return 0;
}

int main(void) {
    mt_test_name = "mt_fork";
    double t0 = mt_now();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm_parent;
    sigaction(SIGALRM, &sa, NULL);
    alarm(PARENT_ALARM);
    if (MT_STATS) CHECK(mt_stat("thread_init") != UINT64_MAX, "counters");

    pthread_t w[2];
    for (unsigned i = 0; i < 2; i++)
        CHECK(pthread_create(&w[i], NULL, worker, (void *)(uintptr_t)i) == 0, "pthread_create");
    // let the workers warm up
    while (atomic_load(&worker_ops[0]) < 2000 || atomic_load(&worker_ops[1]) < 2000) usleep(1000);
    uint64_t ops_before = worker_ops[0] + worker_ops[1];

    uint64_t rng = 7;
    unsigned failures = 0;
    for (unsigned k = 0; k < FORKS; k++) {
        // blocks the child frees: a few of main's, and up to two a worker handed over
        void *inh[6];
        unsigned ninh = 0;
        for (unsigned i = 0; i < 4; i++) {
            inh[ninh] = make_block(pick_size(&rng), k * 10 + i);
            CHECK(inh[ninh] != NULL, "parent: malloc");
            ninh++;
        }
        for (unsigned i = 0; i < 2; i++) {
            void *x = atomic_exchange(&xchg[(k * 2 + i) % XSLOTS], NULL);
            if (x) inh[ninh++] = x;
        }
        fflush(stdout);
        if (ASAN_FORK_GATE) pthread_mutex_lock(&spawn_gate);
        pid_t pid = fork();
        CHECK(pid >= 0, "fork failed: %s", strerror(errno));
        if (pid == 0) _exit(child_main(k, inh, ninh));
        if (ASAN_FORK_GATE) pthread_mutex_unlock(&spawn_gate);
        int status = 0;
        pid_t got;
        while ((got = waitpid(pid, &status, 0)) < 0 && errno == EINTR) {
        }
        CHECK(got == pid, "waitpid: %s", strerror(errno));
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            failures++;
            if (WIFSIGNALED(status))
                fprintf(stderr, "FAIL [mt_fork]: child %u killed by signal %d (%s)\n", k, WTERMSIG(status),
                        strsignal(WTERMSIG(status)));
            else
                fprintf(stderr, "FAIL [mt_fork]: child %u exited with status %d%s\n", k, WEXITSTATUS(status),
                        WEXITSTATUS(status) == 3 ? " (deadlocked: its alarm fired)" : "");
            if (failures >= MAX_FAILED) break;  // each may have waited out its alarm
        }
        for (unsigned i = 0; i < ninh; i++) {
            CHECK(check_block(inh[i]) == SIZE_MAX, "parent: block lent to child %u corrupt", k);
            T_FREE(inh[i]);
        }
    }
    uint64_t ops_during = worker_ops[0] + worker_ops[1] - ops_before;
    atomic_store(&stop, 1);
    for (unsigned i = 0; i < 2; i++) pthread_join(w[i], NULL);
    for (unsigned i = 0; i < XSLOTS; i++) {
        void *x = atomic_exchange(&xchg[i], NULL);
        if (x) {
            CHECK(check_block(x) == SIZE_MAX, "exchange block corrupt at the end");
            T_FREE(x);
        }
    }
    alarm(0);
    CHECK(failures == 0, "%u of the children failed (see above)", failures);
    CHECK(ops_during > 1000, "the workers made only %" PRIu64 " allocations while main forked", ops_during);
    printf("mt_fork: %u forks, all children exited 0; workers did %" PRIu64 " allocations meanwhile; %.2f s\n", FORKS,
           ops_during, mt_now() - t0);
    return 0;
}
