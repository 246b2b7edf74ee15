/* mt_stats_heapless.c -- counters of threads that never set up a heap.
 * hak_stat() promises process-wide totals, threads still running included. A heap (and the
 * counter block registered with it) is set up by a thread's first small or mid malloc; a
 * thread that only frees other threads' blocks, or only uses large blocks, never gets one.
 * Thread F only frees: SMALL blocks of main's (the remote path: free_ss_remote) and LARGE
 * large blocks (large_free). Thread L only mallocs and frees LARGE large blocks (large_alloc,
 * large_free). Asserts that their counts show in the totals exactly, while both threads are
 * still running and after they have exited. */
#include <pthread.h>

#include "mt_common.h"

enum { SMALL = 3000, LARGE = 20 };

static void *small_blocks[SMALL], *large_blocks[LARGE];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int done_count, may_exit;

static void finished_then_wait(void) {
    pthread_mutex_lock(&mu);
    done_count++;
    pthread_cond_broadcast(&cv);
    while (!may_exit) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
}

static void *free_only(void *arg) {
    (void)arg;
    for (unsigned i = 0; i < SMALL; i++) T_FREE(small_blocks[i]);
    for (unsigned i = 0; i < LARGE; i++) T_FREE(large_blocks[i]);
    finished_then_wait();
    return NULL;
}

static void *large_only(void *arg) {
    (void)arg;
    for (unsigned i = 0; i < LARGE; i++) {
        char *p = T_MALLOC((3u << 20) + i * 4096);
        CHECK(p != NULL, "large malloc failed");
        p[0] = p[(3u << 20) - 1] = 1;
        T_FREE(p);
    }
    finished_then_wait();
    return NULL;
}

int main(void) {
    mt_test_name = "mt_stats_heapless";
    if (!MT_STATS) {
        printf("counters compiled out (HAKMEM_STATS=OFF): nothing to check\n");
        return 0;
    }
    for (unsigned i = 0; i < SMALL; i++) CHECK((small_blocks[i] = T_MALLOC(16 + i % 500)) != NULL, "malloc");
    for (unsigned i = 0; i < LARGE; i++) CHECK((large_blocks[i] = T_MALLOC((2u << 20) + i)) != NULL, "malloc");
    const char *names[3] = {"free_ss_remote", "large_free", "large_alloc"};
    const uint64_t expect[3] = {SMALL, 2 * LARGE, LARGE};
    uint64_t base[3], live[3], after[3];
    for (int k = 0; k < 3; k++) base[k] = mt_stat(names[k]);
    pthread_t f, l;
    CHECK(pthread_create(&f, NULL, free_only, NULL) == 0, "pthread_create");
    CHECK(pthread_create(&l, NULL, large_only, NULL) == 0, "pthread_create");
    pthread_mutex_lock(&mu);
    while (done_count < 2) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    for (int k = 0; k < 3; k++) live[k] = mt_stat(names[k]) - base[k];
    pthread_mutex_lock(&mu);
    may_exit = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    pthread_join(f, NULL);
    pthread_join(l, NULL);
    for (int k = 0; k < 3; k++) after[k] = mt_stat(names[k]) - base[k];
    int bad = 0;
    for (int k = 0; k < 3; k++) {
        printf("%-15s expected +%" PRIu64 ": +%" PRIu64 " while the threads run, +%" PRIu64 " after they exited\n",
               names[k], expect[k], live[k], after[k]);
        bad |= live[k] != expect[k] || after[k] != expect[k];
    }
    CHECK(!bad, "the counts of threads without a heap are missing from the process totals (see above)");
    return 0;
}
