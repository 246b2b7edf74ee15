/* mt_late_dtor.c -- a thread whose first malloc happens in the last destructor round.
 * glibc runs pthread key destructors in up to PTHREAD_DESTRUCTOR_ITERATIONS (4) rounds, a
 * new round only while some destructor set a value again. Here a destructor re-arms its key
 * until the last round and only then allocates (the thread's first allocation): hakmem sets
 * its own key at that point, but no further round runs, so hakmem's thread-exit handler
 * never runs for that thread. The thread's heap and its counter block must not be lost or
 * left dangling: later threads reuse the dead thread's stack and TLS.
 * Phase 1 (ROUNDS such threads, each followed by ordinary threads that reuse its stack):
 * blocks allocated in the late destructor stay intact and can be freed by main; hak_stat()
 * and hak_info() return (an alarm fails the test if they hang); the heaps do not pile up
 * (hak_info().thread_heaps stays bounded).
 * Phase 2: one more such thread, then threads with 64 MiB stacks, which make glibc unmap the
 * cached stack (and TLS) of the dead thread; hak_stat(), hak_info() and the exit report
 * must not touch it (a SIGSEGV handler turns a crash into a clear failure). */
#include <limits.h>
#include <pthread.h>
#include <signal.h>

#include "mt_common.h"

enum { ROUNDS = 40, FOLLOWERS = 3, HANDED = 4 };

static pthread_key_t key;
static void *handed[ROUNDS][HANDED];
static _Atomic unsigned late_allocs;

typedef struct tstate {
    unsigned round, calls;
} tstate_t;

static void dtor(void *arg) {
    tstate_t *st = arg;
    st->calls++;
    if (st->calls < PTHREAD_DESTRUCTOR_ITERATIONS) {
        // re-arm: glibc runs another round
        CHECK(pthread_setspecific(key, st) == 0, "pthread_setspecific in destructor");
        return;
    }
    // the last round: the thread's first allocations
    for (unsigned i = 0; i < HANDED; i++) {
        size_t n = 24 + i * 1000;
        void *p = T_MALLOC(n);
        CHECK(p != NULL, "malloc in the last destructor round failed");
        mt_fill(p, n, st->round * 16 + i);
        handed[st->round][i] = p;
    }
    void *tmp = T_MALLOC(200);
    CHECK(tmp != NULL, "malloc");
    T_FREE(tmp);
    late_allocs++;
}

static void *late_thread(void *arg) {
    static tstate_t states[ROUNDS];
    unsigned r = (unsigned)(uintptr_t)arg;
    states[r] = (tstate_t){r, 0};
    CHECK(pthread_setspecific(key, &states[r]) == 0, "pthread_setspecific");
    return NULL;  // no allocation while alive
}

static void *follower(void *arg) {
    (void)arg;
    for (unsigned i = 0; i < 300; i++) {
        void *p = T_MALLOC(16 + (i % 64) * 16);
        CHECK(p != NULL, "follower malloc");
        T_FREE(p);
    }
    return NULL;
}

static void on_segv(int sig) {
    (void)sig;
    static const char msg[] =
        "FAIL [mt_late_dtor]: SIGSEGV: the allocator read freed memory (the unmapped TLS of a thread whose exit handler never ran?)\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
    _exit(3);
}

static void *nothing(void *arg) { return arg; }

static void on_alarm(int sig) {
    (void)sig;
    static const char msg[] =
        "FAIL [mt_late_dtor]: alarm: hung (a counter list or heap list looping after a thread's exit handler was skipped?)\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
    _exit(2);
}

int main(void) {
    mt_test_name = "mt_late_dtor";
    signal(SIGALRM, on_alarm);
    signal(SIGSEGV, on_segv);
    alarm(10);
    void *first = T_MALLOC(32);  // hakmem's key exists before ours
    CHECK(first != NULL, "malloc");
    T_FREE(first);
    CHECK(pthread_key_create(&key, dtor) == 0, "pthread_key_create");
    hak_info_t in;
    size_t heaps_max = 0;
    for (unsigned r = 0; r < ROUNDS; r++) {
        pthread_t t;
        CHECK(pthread_create(&t, NULL, late_thread, (void *)(uintptr_t)r) == 0, "pthread_create");
        pthread_join(t, NULL);
        // ordinary threads that reuse the stack (and TLS) of the one that just exited
        for (unsigned f = 0; f < FOLLOWERS; f++) {
            CHECK(pthread_create(&t, NULL, follower, NULL) == 0, "pthread_create");
            pthread_join(t, NULL);
            if (MT_STATS) (void)mt_stat("thread_init");  // walks the live counter blocks
        }
        hak_info(&in);  // walks every heap
        if (in.thread_heaps > heaps_max) heaps_max = in.thread_heaps;
    }
    alarm(0);
    CHECK(late_allocs == ROUNDS, "the last-round destructor allocated in %u of %u threads", (unsigned)late_allocs, ROUNDS);
    for (unsigned r = 0; r < ROUNDS; r++)
        for (unsigned i = 0; i < HANDED; i++) {
            size_t bad = mt_verify(handed[r][i], 24 + i * 1000, r * 16 + i);
            CHECK(bad == SIZE_MAX, "block %u of late thread %u corrupt at %zu", i, r, bad);
            T_FREE(handed[r][i]);
        }
    printf("phase 1: %u late threads, %u followers; at most %zu heaps\n", ROUNDS, ROUNDS * FOLLOWERS, heaps_max);
    fflush(stdout);
    // Threads run one at a time: with exit handling, heaps are orphaned and adopted again.
    CHECK(heaps_max <= 8,
          "%zu thread heaps for threads that ran one at a time: the heaps of threads whose first malloc came in the "
          "last destructor round are never orphaned",
          heaps_max);

    // Phase 2: the dead thread's stack is unmapped, not reused.
    alarm(10);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, late_thread, (void *)(uintptr_t)(ROUNDS - 1)) == 0, "pthread_create");
    pthread_join(t, NULL);
    T_FREE(handed[ROUNDS - 1][0]);  // a remote free into the dead thread's heap
    for (unsigned i = 1; i < HANDED; i++) T_FREE(handed[ROUNDS - 1][i]);
    pthread_attr_t big;
    pthread_attr_init(&big);
    CHECK(pthread_attr_setstacksize(&big, 64u << 20) == 0, "pthread_attr_setstacksize");
    for (unsigned i = 0; i < 3; i++) {
        CHECK(pthread_create(&t, &big, nothing, NULL) == 0, "pthread_create (64 MiB stack)");
        pthread_join(t, NULL);
    }
    pthread_attr_destroy(&big);
    if (MT_STATS) CHECK(mt_stat("thread_init") >= ROUNDS, "thread_init too small");
    hak_info(&in);
    (void)T_TRIM();  // walks the orphaned heaps and the pool
    alarm(0);
    printf("phase 2: counters, heap summary and trim survived the dead thread's unmapped TLS\n");
    return 0;
}
