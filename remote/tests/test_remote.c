/* test_remote.c -- white-box test of remote/: the remote-free queue under contention, and
 * the orphan list. Four pusher threads push 100000 blocks each (single pushes with
 * hak_remote_push, and chains with hak_remote_push_chain), one drainer takes batches with
 * hak_remote_drain until every pusher is done and the queue is empty. Every block must
 * come out exactly once, intact, and in LIFO order per pusher (the queue is a stack and a
 * drain takes all of it at once). Also run under ThreadSanitizer (label tsan). */
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "hak_remote.h"


enum { PUSHERS = 4, PER_PUSHER = 100000, TOTAL = PUSHERS * PER_PUSHER };
#define ID_MAGIC ((uint64_t)0xb10c000000000000)

/* A "block": the first word is the queue link, the second a unique id. */
typedef struct block {
    void *link;
    uint64_t id;
} block_t;

static block_t blocks[TOTAL];
static unsigned char seen[TOTAL];
static hak_remote_queue_t queue;
static atomic_int pushers_done;
static atomic_int go;

static uint64_t xorshift(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Pusher t owns blocks [t*PER_PUSHER, (t+1)*PER_PUSHER) and pushes them in index order:
 * single blocks, and chains of 1..64 linked from the highest index down to the lowest (so
 * that in the queue, each pusher's blocks read in strictly decreasing index order). */
static void *pusher(void *arg) {
    unsigned t = (unsigned)(uintptr_t)arg;
    uint64_t rng = 0x9e3779b97f4a7c15ull * (t + 1);
    size_t lo = (size_t)t * PER_PUSHER, hi = lo + PER_PUSHER;
    for (size_t i = lo; i < hi; i++) blocks[i].id = ID_MAGIC | i;
    while (!atomic_load_explicit(&go, memory_order_acquire)) sched_yield();
    size_t i = lo, next_yield = lo + 256;
    while (i < hi) {
        if (i >= next_yield) {  // two cores: give the drainer and the other pushers turns
            sched_yield();
            next_yield = i + 256;
        }
        uint64_t r = xorshift(&rng);
        if (r % 4 != 0) {
            hak_remote_push(&queue, &blocks[i]);
            i++;
            continue;
        }
        size_t n = 1 + (size_t)((r >> 8) % 64);
        if (n > hi - i) n = hi - i;
        // link i+n-1 -> ... -> i; the tail's link is set by push_chain
        for (size_t k = i + n - 1; k > i; k--) blocks[k].link = &blocks[k - 1];
        blocks[i].link = (void *)0xdeadbeef;  // must be overwritten by push_chain
        hak_remote_push_chain(&queue, &blocks[i + n - 1], &blocks[i]);
        i += n;
    }
    atomic_fetch_add_explicit(&pushers_done, 1, memory_order_release);
    return NULL;
}

typedef struct drain_stats {
    size_t count, batches, empty_drains, max_batch;
} drain_stats_t;

static void *drainer(void *arg) {
    drain_stats_t *st = arg;
    long floor_idx[PUSHERS];  // highest index seen per pusher in earlier batches
    for (int t = 0; t < PUSHERS; t++) floor_idx[t] = (long)t * PER_PUSHER - 1;
    atomic_store_explicit(&go, 1, memory_order_release);
    for (;;) {
        // read "done" before draining: if all were done, this drain sees everything
        int done = atomic_load_explicit(&pushers_done, memory_order_acquire) == PUSHERS;
        block_t *b = hak_remote_drain(&queue);
        if (!b) {
            st->empty_drains++;
            if (done) break;
            sched_yield();  // two cores: let the pushers run
            continue;
        }
        long last[PUSHERS], top[PUSHERS];
        for (int t = 0; t < PUSHERS; t++) last[t] = top[t] = -1;
        size_t n = 0;
        while (b) {
            CHECK(b >= blocks && b < blocks + TOTAL, "drained pointer %p is not one of the blocks", (void *)b);
            size_t idx = (size_t)(b - blocks);
            CHECK((b->id & ~(uint64_t)0xffffffff) == ID_MAGIC && (b->id & 0xffffffff) == idx,
                  "block %zu has id %#" PRIx64 " (corrupted)", idx, b->id);
            CHECK(seen[idx] == 0, "block %zu drained twice", idx);
            seen[idx] = 1;
            int t = (int)(idx / PER_PUSHER);
            CHECK(last[t] < 0 || (long)idx < last[t], "pusher %d: block %zu after %ld in one batch (not LIFO)", t, idx,
                  last[t]);
            CHECK((long)idx > floor_idx[t], "pusher %d: block %zu drained after block %ld of an earlier batch", t, idx,
                  floor_idx[t]);
            if (top[t] < 0) top[t] = (long)idx;
            last[t] = (long)idx;
            n++;
            b = b->link;
        }
        for (int t = 0; t < PUSHERS; t++)
            if (top[t] >= 0) floor_idx[t] = top[t];
        st->count += n;
        st->batches++;
        if (n > st->max_batch) st->max_batch = n;
    }
    return NULL;
}

static void test_queue(void) {
    ck_stack_init(&queue.stack);
    CHECK(hak_remote_drain(&queue) == NULL && !hak_remote_pending(&queue), "a new queue is not empty");
    // single-threaded semantics first: LIFO, chains keep their order, drain empties
    block_t a = {NULL, 1}, b = {NULL, 2}, c = {NULL, 3}, d = {NULL, 4};
    hak_remote_push(&queue, &a);
    CHECK(hak_remote_pending(&queue), "pending after a push");
    c.link = &b;  // chain c -> b
    hak_remote_push_chain(&queue, &c, &b);
    hak_remote_push_chain(&queue, &d, &d);  // a chain of one
    block_t *x = hak_remote_drain(&queue);
    CHECK(x == &d && d.link == &c && c.link == &b && b.link == &a && a.link == NULL,
          "drain order: expected d c b a, got %p (d %p c %p b %p a %p)", (void *)x, (void *)&d, (void *)&c,
          (void *)&b, (void *)&a);
    CHECK(hak_remote_drain(&queue) == NULL && !hak_remote_pending(&queue), "queue not empty after a drain");

    pthread_t pt[PUSHERS], dt;
    drain_stats_t st = {0, 0, 0, 0};
    for (uintptr_t t = 0; t < PUSHERS; t++) CHECK(pthread_create(&pt[t], NULL, pusher, (void *)t) == 0, "pthread_create");
    CHECK(pthread_create(&dt, NULL, drainer, &st) == 0, "pthread_create");
    for (int t = 0; t < PUSHERS; t++) pthread_join(pt[t], NULL);
    pthread_join(dt, NULL);
    CHECK(hak_remote_drain(&queue) == NULL, "blocks left in the queue after the drainer finished");
    CHECK(st.count == TOTAL, "drained %zu blocks, pushed %d", st.count, TOTAL);
    size_t missing = 0, first_missing = 0;
    for (size_t i = 0; i < TOTAL; i++)
        if (!seen[i] && missing++ == 0) first_missing = i;
    CHECK(missing == 0, "%zu blocks never drained (first: %zu)", missing, first_missing);
    printf("queue: %zu blocks in %zu batches (largest %zu), %zu empty drains\n", st.count, st.batches, st.max_batch,
           st.empty_drains);
}

/* ---- the orphan list ------------------------------------------------------------------ */

typedef struct heapish {
    int key;
    hak_orphan_t node;
} heapish_t;

#define OWNER_OF(o) ((heapish_t *)((char *)(o) - offsetof(heapish_t, node)))

static int key_is(hak_orphan_t *o, void *arg) { return OWNER_OF(o)->key == *(int *)arg; }

enum { ORPHAN_THREADS = 4, ORPHAN_OPS = 20000, ORPHANS = 64 };
static heapish_t orphans[ORPHANS];
static atomic_int orphan_seen[ORPHANS];

/* Each thread takes a node (pop or take_if) and puts it back, many times; a node is held
 * by at most one thread at a time. */
static void *orphan_worker(void *arg) {
    uint64_t rng = 0x1234567ull + (uintptr_t)arg;
    for (int i = 0; i < ORPHAN_OPS; i++) {
        uint64_t r = xorshift(&rng);
        hak_orphan_t *o;
        if (r & 1) {
            o = hak_orphan_pop();
        } else {
            int key = (int)((r >> 8) % ORPHANS);
            o = hak_orphan_take_if(key_is, &key);
            if (o) CHECK(OWNER_OF(o)->key == key, "take_if returned key %d for %d", OWNER_OF(o)->key, key);
        }
        if (!o) continue;
        heapish_t *h = OWNER_OF(o);
        CHECK(h >= orphans && h < orphans + ORPHANS, "orphan list returned a stranger %p", (void *)o);
        CHECK(o->listed == 0, "a taken node still says listed");
        int prev = atomic_fetch_add(&orphan_seen[h->key], 1);
        CHECK(prev == 0, "orphan %d held by two threads at once", h->key);
        atomic_fetch_sub(&orphan_seen[h->key], 1);
        hak_orphan_push(o);
    }
    return NULL;
}

static void test_orphans(void) {
    CHECK(hak_orphan_count() == 0 && hak_orphan_pop() == NULL, "orphan list not empty at start");
    for (int i = 0; i < ORPHANS; i++) {
        orphans[i].key = i;
        hak_orphan_push(&orphans[i].node);
        CHECK(orphans[i].node.listed == 1, "pushed node not marked listed");
    }
    CHECK(hak_orphan_count() == ORPHANS, "count %zu after %d pushes", hak_orphan_count(), ORPHANS);
    // LIFO pop, take_if finds a given node and only it
    CHECK(hak_orphan_pop() == &orphans[ORPHANS - 1].node, "pop did not return the last pushed node");
    int key = 10;
    hak_orphan_t *o = hak_orphan_take_if(key_is, &key);
    CHECK(o == &orphans[10].node && o->listed == 0, "take_if(key 10) returned %p", (void *)o);
    CHECK(hak_orphan_take_if(key_is, &key) == NULL, "take_if found key 10 twice");
    key = ORPHANS - 1;
    CHECK(hak_orphan_take_if(key_is, &key) == NULL, "take_if found a node that was popped");
    CHECK(hak_orphan_count() == ORPHANS - 2, "count %zu, expected %d", hak_orphan_count(), ORPHANS - 2);
    hak_orphan_push(&orphans[ORPHANS - 1].node);
    hak_orphan_push(&orphans[10].node);

    pthread_t th[ORPHAN_THREADS];
    for (uintptr_t t = 0; t < ORPHAN_THREADS; t++)
        CHECK(pthread_create(&th[t], NULL, orphan_worker, (void *)t) == 0, "pthread_create");
    for (int t = 0; t < ORPHAN_THREADS; t++) pthread_join(th[t], NULL);
    CHECK(hak_orphan_count() == ORPHANS, "count %zu after the threads, expected %d", hak_orphan_count(), ORPHANS);
    unsigned char got[ORPHANS] = {0};
    while ((o = hak_orphan_pop()) != NULL) {
        int k = OWNER_OF(o)->key;
        CHECK(!got[k], "orphan %d listed twice", k);
        got[k] = 1;
    }
    for (int i = 0; i < ORPHANS; i++) CHECK(got[i], "orphan %d lost", i);
    CHECK(hak_orphan_count() == 0, "count %zu after popping all", hak_orphan_count());
    printf("orphans: %d nodes, %d threads x %d ops\n", ORPHANS, ORPHAN_THREADS, ORPHAN_OPS);
}

int main(int argc, char **argv) {
    int all = argc < 2;
    if (all || strcmp(argv[1], "queue") == 0) test_queue();
    if (all || strcmp(argv[1], "orphans") == 0) test_orphans();
    printf("ok\n");
    return 0;
}
