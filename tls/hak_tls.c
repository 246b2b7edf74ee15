/* hak_tls.c -- refill (five stages), flush, remote drain, thread init and exit, orphan
 * adoption, the locked global heap, trim and fork.
 * Locking: a heap's lock is taken only by its owner's slow paths, by an adopter, and by
 * fork/report walkers; fast paths take none. Lock order: init -> global heap's making ->
 * heaps list -> heap -> orphan list -> pools (SuperSlab, metadata, pagemap) -> stats. */
#define _GNU_SOURCE
#include "hak_tls.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "hak_atomic.h"
#include "hak_meta.h"
#include "hak_pagemap.h"

__thread hak_tc_t hak_tc HAK_TLS_MODEL;

static hak_meta_pool_t heap_meta = HAK_META_POOL_INIT(sizeof(hak_heap_t));
static hak_lock_t heaps_lock = HAK_LOCK_INIT;
static hak_heap_t *heaps_all;
static atomic_int first_heap_taken;  // hak_first_heap is in use (never given back)
static void (*_Atomic idle_hook)(void);

void hak_tls_set_idle_hook(void (*fn)(void)) { hak_store_relaxed(&idle_hook, fn); }

static void idle_kick(void) {
    void (*fn)(void) = hak_load_relaxed(&idle_hook);
    if (fn) fn();
}
static size_t heaps_made;

static hak_lock_t init_lock = HAK_LOCK_INIT;
static atomic_int core_ready;
static pthread_key_t tc_key;
static int tc_key_ok;  // pthread_key_create succeeded (written once, under init_lock)

static void thread_exit(void *arg);
static void remote_batch_flush(hak_tc_t *tc);

// The heap of threads that have no cache of their own (exited, or whose heap could not be
// made). Used under its lock; everyone else frees into it remotely. Made on first use, in
// metadata memory: most processes never use it, and as 3.7 KiB of .bss that init wrote it
// cost every process a page (docs/DESIGN-NOTES.md, "Nginx's memory, page by page").
typedef struct global_heap {
    hak_heap_t heap;
    hak_tc_t tc;
} global_heap_t;
static hak_meta_pool_t global_meta = HAK_META_POOL_INIT(sizeof(global_heap_t));
static global_heap_t *_Atomic global;  // NULL until made; written once, under global_lock
// Its own lock, not init_lock: a malloc that recursed from inside hak_tls_global_init (were
// pthread_key_create to allocate) would find init_lock held by its own thread.
static hak_lock_t global_lock = HAK_LOCK_INIT;

#define HEAP_OF_ORPHAN(o) ((hak_heap_t *)((char *)(o) - offsetof(hak_heap_t, orphan)))

/* ---- global set-up ------------------------------------------------------------------ */

static void tc_rooms_init(hak_tc_t *tc) {
    for (unsigned sc = 0; sc < HAK_SC_MAX; sc++) tc->room[sc] = hak_sc_info[sc].tc_cap;
}

static void heaps_add(hak_heap_t *h) {
    hak_stats_register(&h->stats);
    hak_lock(&heaps_lock);
    h->all_next = heaps_all;
    heaps_all = h;
    heaps_made++;
    hak_unlock(&heaps_lock);
}

void hak_tls_global_init(void) {
    // pairs with the release store below
    if (hak_likely(hak_load_acquire(&core_ready))) return;
    hak_lock(&init_lock);
    if (!hak_load_relaxed(&core_ready)) {
        hak_config_init();
        hak_harden_init();
        // The key that runs thread_exit. Created here, under init_lock (which fork takes),
        // so a fork can never catch it half made. pthread_key_create does not allocate in
        // glibc; were it to, core_ready is already set and the recursion is served. Without
        // a key (all taken), threads still work; their heaps are reclaimed when a later
        // thread reuses their cache address (orphan_stale_heaps).
        hak_store_release(&core_ready, 1);
        tc_key_ok = pthread_key_create(&tc_key, thread_exit) == 0;
    }
    hak_unlock(&init_lock);
}

/* ---- lists -------------------------------------------------------------------------- */

static void partial_push(hak_heap_t *h, hak_slab_t *s) {
    hak_slab_t **head = &h->partial[s->sc];
    s->prev = NULL;
    s->next = *head;
    if (*head) (*head)->prev = s;
    *head = s;
    s->listed = 1;
}

static void partial_remove(hak_heap_t *h, hak_slab_t *s) {
    if (s->prev) s->prev->next = s->next;
    else h->partial[s->sc] = s->next;
    if (s->next) s->next->prev = s->prev;
    s->prev = s->next = NULL;
    s->listed = 0;
}

static void ss_push(hak_ss_t **head, hak_ss_t *ss) {
    ss->prev = NULL;
    ss->next = *head;
    if (*head) (*head)->prev = ss;
    *head = ss;
}

static void ss_remove(hak_ss_t **head, hak_ss_t *ss) {
    if (ss->prev) ss->prev->next = ss->next;
    else *head = ss->next;
    if (ss->next) ss->next->prev = ss->prev;
    ss->prev = ss->next = NULL;
}

// An SuperSlab is on ss_full exactly when it has no free slab.
static hak_ss_t **ss_list_of(hak_heap_t *h, hak_ss_t *ss) { return ss->free_mask ? &h->ss_avail : &h->ss_full; }

/* ---- slabs -------------------------------------------------------------------------- */

static void ss_give_back(hak_heap_t *h, hak_ss_t *ss) {
    ss_remove(ss_list_of(h, ss), ss);
    h->ss_count--;
    if (h->spare == ss) h->spare = NULL;
    hak_ss_release(ss);
}

// An empty SuperSlab: keep one per heap as a spare against alloc/free churn at a boundary.
static void ss_now_empty(hak_heap_t *h, hak_ss_t *ss, int keep_spare) {
    if (keep_spare && (h->spare == NULL || h->spare == ss)) {
        h->spare = ss;
        return;
    }
    ss_give_back(h, ss);
}

static size_t span_bytes(const hak_slab_t *s) { return (size_t)s->span << HAK_SLAB_SHIFT; }

// An empty span stops (or starts) counting against its heap's keep budget.
static void span_unkeep(hak_heap_t *h, hak_slab_t *s) {
    if (s->kept) {
        s->kept = 0;
        h->kept_bytes -= span_bytes(s);
    }
}

static void span_give_back(hak_heap_t *h, hak_slab_t *s, int keep_spare) {
    hak_ss_t *ss = s->ss;
    span_unkeep(h, s);
    if (s->listed) partial_remove(h, s);
    int was_full = ss->free_mask == 0;
    hak_ss_span_end(ss, s);
    if (was_full) {
        ss_remove(&h->ss_full, ss);
        ss_push(&h->ss_avail, ss);
    }
    if (ss->spans == 0) ss_now_empty(h, ss, keep_spare);
}

// An empty span stays on its partial list, blocks already linked, while the heap keeps
// under HAK_HEAP_KEEP bytes of them: a program that frees a batch and allocates it again
// (threadtest) then reuses the spans instead of giving them back and carving them anew. A
// class's only span is always kept. Thread exit and trim give kept spans back (release_idle).
#define HAK_HEAP_KEEP ((size_t)1 << 20)

static void span_now_empty(hak_heap_t *h, hak_slab_t *s) {
    if (s->kept) return;
    int only = h->partial[s->sc] == s && s->next == NULL;
    if (!only && h->kept_bytes + span_bytes(s) > HAK_HEAP_KEEP) {
        span_give_back(h, s, 1);
        return;
    }
    s->kept = 1;
    h->kept_bytes += span_bytes(s);
}

// A block comes back to its slab's local free list (owner only, heap lock held).
// Book k blocks (a chain first..last, each already carrying the free mark) returned to s,
// and give the span back when it became empty.
static void slab_return_chain(hak_heap_t *h, hak_slab_t *s, void **first, void **last, uint32_t k) {
    hak_link_set(last, s->free);
    s->free = first;
    s->free_count += k;
    s->used -= k;
    HAK_STAT_ADD(free_ss_local, k);
    if (!s->listed) partial_push(h, s);
    if (s->used == 0) span_now_empty(h, s);
}

static void slab_return(hak_heap_t *h, hak_slab_t *s, void **b) {
    b[1] = (void *)hak_free_key;
    slab_return_chain(h, s, b, b, 1);
}

static HAK_INLINE void *pop_quiet(hak_tc_t *tc, unsigned sc) {
    void **b = tc->head[sc];
#if HAK_HARDEN_POPCHECK
    if (hak_unlikely(b[1] != (void *)hak_free_key)) hak_tls_corrupt(b);
#endif
    tc->head[sc] = hak_link_get(b);
    tc->room[sc]++;
    b[1] = NULL;
    return b;
}

static HAK_INLINE void *pop_block(hak_tc_t *tc, unsigned sc) {
    HAK_STAT_FAST(tc->stats, sc_alloc[sc]);
    return pop_quiet(tc, sc);
}

/* ---- stage 1: the remote queue ------------------------------------------------------ */

// Take every block queued for heap h. Blocks of h's SuperSlabs go to the thread cache tc
// (when given and under its cap) or to their slabs; blocks of SuperSlabs that another heap
// now owns (h was absorbed) are forwarded to that heap's queue.
static void drain_queue(hak_tc_t *tc, hak_heap_t *h, hak_remote_queue_t *q) {
    void *chain = hak_remote_drain(q);
    if (!chain) return;
    HAK_STAT_INC(refill_remote_batches);
    uint64_t drained = 0, forwarded = 0;
    while (chain) {
        void **b = chain;
        chain = b[0];  // queue links are plain: ck_stack writes them (hak_remote.h)
        hak_ss_t *ss = hak_ss_of(b);
        // a link overwritten while queued points anywhere: stop before using it
        if (hak_unlikely(ss == NULL || b[1] != (void *)hak_free_key))
            hak_die("free(): remote free queue corrupted (a write to a freed block?)", b);
        hak_heap_t *owner = hak_load_acquire(&ss->owner);  // pairs with move_ss
        if (owner != h) {
            hak_remote_push(&owner->remote, b);
            forwarded++;
            continue;
        }
        unsigned sc = ss->slab_sc[hak_ss_slab_index(ss, b)];
        if (hak_unlikely(hak_slab_is_purged(hak_ss_slab_of(ss, b), b)))
            hak_die("free(): double free detected", b);  // freed by another thread after its purge
        drained++;
        if (tc && tc->room[sc] > 0) {
            hak_link_set(b, tc->head[sc]);
            tc->head[sc] = b;
            tc->room[sc]--;
        } else {
            slab_return(h, hak_ss_slab_of(ss, b), b);
        }
    }
    HAK_STAT_ADD(refill_remote_drain, drained);
    HAK_STAT_ADD(refill_remote_forward, forwarded);
}

/* ---- stages 2 and 3: a partial slab's free list, then carving -------------------------- */

// n blocks of s, linked head..tail, go to the thread's list of class sc.
static void cache_chain(hak_tc_t *tc, unsigned sc, hak_slab_t *s, void *head, void *tail, unsigned n) {
    hak_link_set(tail, tc->head[sc]);
    tc->head[sc] = head;
    tc->room[sc] -= (int64_t)n;
    s->used += n;
}

static int fill_from_partial(hak_tc_t *tc, hak_heap_t *h, unsigned sc) {
    const hak_sc_info_t *ci = &hak_sc_info[sc];
    hak_slab_t *s;
    while ((s = h->partial[sc]) != NULL) {
        span_unkeep(h, s);
        if (s->free) {
            // The thread's list is empty here (refill runs on a miss, and returns as soon as
            // the drain found blocks of sc), so the whole local list becomes it in O(1) when
            // it fits the cache; a longer one is cut after a batch.
            void **head = s->free;
            uint32_t n = s->free_count;
            if (n > ci->tc_cap) {
                n = ci->batch;
                void **cut = head;
                for (uint32_t i = 1; i < n; i++) cut = hak_link_get(cut);
                s->free = hak_link_get(cut);
                hak_link_set(cut, NULL);
            } else {
                s->free = NULL;
            }
            s->free_count -= n;
            s->used += n;
            tc->head[sc] = head;
            tc->room[sc] -= (int64_t)n;
            HAK_STAT_ADD(refill_slab_free, n);
            if (!s->free && !hak_load_relaxed(&s->purged) && s->carved == s->capacity) partial_remove(h, s);
            return 1;
        }
        if (hak_load_relaxed(&s->purged)) {  // blocks the purge took off the free list
            void *head, *tail;
            unsigned n = hak_slab_take_purged(s, ci->carve, &head, &tail);
            if (n) {
                cache_chain(tc, sc, s, head, tail, n);
                HAK_STAT_ADD(refill_slab_purged, n);
                if (!hak_load_relaxed(&s->purged) && s->carved == s->capacity) partial_remove(h, s);
                return 1;
            }
        }
        if (s->carved < s->capacity) {
            void *head, *tail;
            unsigned n = hak_slab_carve(s, ci->carve, &head, &tail);
            cache_chain(tc, sc, s, head, tail, n);
            HAK_STAT_ADD(refill_carve, n);
            if (s->carved == s->capacity) partial_remove(h, s);
            return 1;
        }
        partial_remove(h, s);  // full: it comes back on the list when a block returns
    }
    return 0;
}

/* ---- stage 4: a new span in an owned SuperSlab ----------------------------------------- */

// The best fit over every SuperSlab with a free slab (hak_ss_span_fit): a span on slabs
// already touched costs no page faults, and the shortest run that holds it leaves the long
// ones to long spans. The first fit in the first SuperSlab on the list kept touching fresh
// slabs in bench/scenarios mixed: 16 SuperSlabs mapped, 5 of them in the timed phase, against
// 10 and 1 now (peak RSS 78.8 -> 67.0 MB, timed faults 6750 -> 4936).
// The scan stops at a perfect fit, or after START_SPAN_SCAN SuperSlabs with one found: a
// heap with hundreds of them pays a bounded look per new span.
#define START_SPAN_SCAN 32
static int start_span(hak_heap_t *h, unsigned sc) {
    hak_ss_t *ss = NULL;
    unsigned best = HAK_SS_NO_FIT, at = 0, seen = 0;
    for (hak_ss_t *x = h->ss_avail; x && best != 0 && (++seen <= START_SPAN_SCAN || !ss); x = x->next) {
        unsigned i, cost = hak_ss_span_fit(x, sc, &i);
        if (cost < best) best = cost, at = i, ss = x;
    }
    if (ss) {
        hak_slab_t *s = hak_ss_span_start_at(ss, sc, at);
        if (h->spare == ss) h->spare = NULL;
        if (ss->free_mask == 0) {
            ss_remove(&h->ss_avail, ss);
            ss_push(&h->ss_full, ss);
        }
        partial_push(h, s);
        HAK_STAT_INC(refill_new_slab);
        return 1;
    }
    return 0;
}

/* ---- stage 5: orphaned heaps, the pool, the OS ---------------------------------------- */

static int orphan_worth_absorbing(hak_orphan_t *o, void *arg) {
    (void)arg;
    hak_heap_t *x = HEAP_OF_ORPHAN(o);
    return x->ss_count > 0 || hak_remote_pending(&x->remote);
}

// Move one SuperSlab, with its partial spans, from heap x to heap h (both locked or owned).
static void move_ss(hak_heap_t *x, hak_heap_t *h, hak_ss_t *ss) {
    ss_remove(ss_list_of(x, ss), ss);
    x->ss_count--;
    if (x->spare == ss) x->spare = NULL;
    for (unsigned i = 0; i < HAK_SLABS_PER_SS; i++) {
        if (ss->slab_sc[i] == HAK_SLAB_NONE || ss->slab_head[i] != i) continue;
        hak_slab_t *s = &ss->slabs[i];
        if (s->listed) {
            partial_remove(x, s);
            partial_push(h, s);
        }
        if (s->kept) {
            x->kept_bytes -= span_bytes(s);
            h->kept_bytes += span_bytes(s);
        }
    }
    // A freer that still reads the old owner pushes to x's queue, and whoever drains x
    // forwards the block here. Release, paired with the acquire loads of the slow free and
    // the forward: a thread that finds h here, perhaps a heap made a moment ago, then sees
    // h's queue initialised (ThreadSanitizer saw a push race the heap's zeroing in churn).
    hak_store_release(&ss->owner, (void *)h);
    ss_push(ss_list_of(h, ss), ss);
    h->ss_count++;
}

static void release_idle(hak_heap_t *h);

// Stage 5a: take over one SuperSlab of an orphaned heap x (its thread exited): the one with
// the most free slabs, which holds blocks others freed to x and free space. First x's queue
// is drained into x's slabs and x's empty spans and SuperSlabs go to the shared pool, so
// nothing is stranded in a heap that has no thread. One SuperSlab at a time: taking a whole
// heap would leave this one with more free space than it needs and the emptied heap's next
// thread with none. x stays on the orphan list for the next thread.
static int absorb_orphan(hak_heap_t *h, unsigned sc) {
    hak_orphan_t *o = hak_orphan_take_if(orphan_worth_absorbing, NULL);
    if (!o) return 0;
    hak_heap_t *x = HEAP_OF_ORPHAN(o);
    if (!hak_trylock(&x->lock)) {  // held by fork or a report: try again later
        hak_orphan_push(o);
        return 0;
    }
    drain_queue(NULL, x, &x->remote);
    release_idle(x);
    // The SuperSlab with the most free slabs among those that can start a span of sc, or
    // one that already has a partial span of sc; none if neither (then the pool serves).
    hak_ss_t *best = NULL;
    int best_free = -1;
    for (hak_ss_t *ss = x->ss_avail; ss; ss = ss->next) {
        int f = __builtin_popcount(ss->free_mask);
        if (f > best_free && hak_ss_can_start(ss, sc)) best_free = f, best = ss;
    }
    if (!best && x->partial[sc]) best = x->partial[sc]->ss;
    if (best) move_ss(x, h, best);
    hak_unlock(&x->lock);
    hak_orphan_push(o);
    HAK_STAT_INC(refill_adopt);
    if (best) HAK_STAT_INC(refill_adopt_ss);
    return best != NULL;
}

static int grow(hak_tc_t *tc, hak_heap_t *h, unsigned sc) {
    (void)tc;
    // An orphan's SuperSlab that can serve sc first (taking one may also fill the pool with
    // the orphan's empty ones), then the pool, then the OS.
    if (absorb_orphan(h, sc)) return 1;
    int from_pool = 0;
    hak_ss_t *ss = hak_ss_acquire(h, &from_pool);
    if (!ss) return 0;
    if (from_pool) HAK_STAT_INC(refill_pool_ss);
    else HAK_STAT_INC(refill_new_ss);
    ss_push(&h->ss_avail, ss);
    h->ss_count++;
    return 1;
}

/* ---- refill ------------------------------------------------------------------------- */

// Fill the cache of class sc; 1 on success, 0 with errno = ENOMEM. The caller pops.
static int refill_locked(hak_tc_t *tc, hak_heap_t *h, unsigned sc) {
    HAK_STAT_SC(sc_refill, sc);
    if (hak_remote_pending(&h->remote)) {
        drain_queue(tc, h, &h->remote);
        if (tc->head[sc]) return 1;
    }
    for (;;) {
        if (fill_from_partial(tc, h, sc)) return 1;
        if (start_span(h, sc)) continue;
        if (!grow(tc, h, sc)) {
            errno = ENOMEM;
            return 0;
        }

    }
}

// The global heap, made if it is not yet; NULL (errno ENOMEM) if it cannot be.
static global_heap_t *global_get(void) {
    // pairs with the release store below
    global_heap_t *g = hak_load_acquire(&global);
    if (hak_likely(g != NULL)) return g;
    hak_lock(&global_lock);
    g = hak_load_relaxed(&global);
    if (!g) {
        g = hak_meta_alloc(&global_meta);
        if (g) {
            ck_stack_init(&g->heap.remote.stack);
            g->heap.owned = 1;
            hak_store_relaxed(&g->heap.owner_tc, (const void *)&g->tc);
            tc_rooms_init(&g->tc);
            g->tc.heap = &g->heap;
            g->tc.state = HAK_TC_ACTIVE;
            heaps_add(&g->heap);
            hak_store_release(&global, g);
        } else {
            errno = ENOMEM;
        }
    }
    hak_unlock(&global_lock);
    return g;
}

// 1 if h is the global heap (made or not).
static int is_global(const hak_heap_t *h) {
    global_heap_t *g = hak_load_relaxed(&global);
    return g && h == &g->heap;
}

static void *global_alloc(unsigned sc) {
    hak_tls_global_init();
    global_heap_t *g = global_get();
    if (!g) return NULL;
    hak_lock(&g->heap.lock);
    // Popped quietly: this thread's cache (and its sc_alloc) is not the global one;
    // global_heap_alloc counts these instead.
    void *b = NULL;
    if (g->tc.head[sc] || refill_locked(&g->tc, &g->heap, sc)) b = pop_quiet(&g->tc, sc);
    hak_unlock(&g->heap.lock);
    if (b) HAK_STAT_INC(global_heap_alloc);
    return b;
}

// A thread can exit without hakmem's exit handler (its first malloc ran in the last round
// of key destructors). Its heap still names its cache's address; a new thread whose cache
// sits at that address proves the old one gone: orphan such heaps.
static void orphan_stale_heaps(const hak_tc_t *tc, const hak_heap_t *mine) {
    hak_lock(&heaps_lock);
    for (hak_heap_t *h = heaps_all; h; h = h->all_next) {
        // relaxed: a filter; the decision is taken again under the heap's lock
        if (h == mine || is_global(h) || hak_load_relaxed(&h->owner_tc) != tc) continue;
        hak_lock(&h->lock);
        int stale = h->owned && hak_load_relaxed(&h->owner_tc) == tc;
        if (stale) {
            h->owned = 0;
            hak_store_relaxed(&h->owner_tc, NULL);
        }
        hak_unlock(&h->lock);
        if (stale) hak_orphan_push(&h->orphan);
    }
    hak_unlock(&heaps_lock);
}

static hak_heap_t *thread_init(hak_tc_t *tc) {
    if (tc->state != HAK_TC_NEW) return NULL;  // exited, or re-entered while setting up
    tc->state = HAK_TC_INIT;
    hak_tls_global_init();
    hak_heap_t *h;
    hak_orphan_t *o = hak_orphan_pop();
    if (o) {
        h = HEAP_OF_ORPHAN(o);
    } else {
        h = hak_exchange_relaxed(&first_heap_taken, 1) == 0 ? &hak_first_heap : hak_meta_alloc(&heap_meta);
        if (!h) {
            tc->state = HAK_TC_NEW;
            return NULL;
        }
        ck_stack_init(&h->remote.stack);
        heaps_add(h);
    }
    hak_lock(&h->lock);
    h->owned = 1;
    hak_store_relaxed(&h->owner_tc, (const void *)tc);
    hak_unlock(&h->lock);
    orphan_stale_heaps(tc, h);
    tc_rooms_init(tc);  // before tc->heap: frees reach the cache only once heap is set
    tc->heap = h;
    tc->state = HAK_TC_ACTIVE;
    tc->rb_armed = tc_key_ok;
    hak_stats_cur = &h->stats;
#if HAK_STATS
    hak_stats_fast_cur = &tc->stats;
#endif
    HAK_STAT_INC(thread_init);
    if (o) HAK_STAT_INC(refill_adopt);
    // may allocate (keys past 32 in glibc): the cache is ready, so that recursion is fine
    if (tc_key_ok) pthread_setspecific(tc_key, h);
    return h;
}

void *hak_tls_refill_slow(unsigned sc) {
    hak_tc_t *tc = &hak_tc;
    hak_heap_t *h = tc->heap;
    if (hak_unlikely(h == NULL)) {
        h = thread_init(tc);
        if (!h) return global_alloc(sc);
        if (tc->head[sc]) return pop_block(tc, sc);
    }
    // A young class: its first HAKMEM_YOUNG blocks in this heap come from the 256 or 512 B
    // class, and the class gets spans of its own only after that (each miss of its empty
    // list comes back here until then). A class with a handful of blocks would otherwise
    // hold a page of its own for them: Nginx's master keeps a few blocks in each of 8
    // classes under 256 B, 8 pages that its worker inherits too (docs/DESIGN-NOTES.md,
    // young classes).
    unsigned y = hak_sc_info[sc].young;
    if (y != sc && h->young_taken[sc] < hak_config.young) {
        void *b = tc->head[y] ? pop_block(tc, y) : hak_tls_refill_slow(y);
        if (b) {
            h->young_taken[sc]++;
            HAK_STAT_INC(alloc_young);
        }
        return b;
    }
    remote_batch_flush(tc);
    hak_lock(&h->lock);
    h->epoch++;
    int ok = refill_locked(tc, h, sc);
    hak_unlock(&h->lock);
    if (!ok) return NULL;
    HAK_STAT_INC(alloc_refill);
#if HAK_STATS
    hak_stats_fold_sc(&tc->stats, &h->stats, sc);
#endif
    return pop_block(tc, sc);
}

/* ---- flush and free ------------------------------------------------------------------ */

static void flush_blocks(hak_tc_t *tc, hak_heap_t *h, unsigned sc, uint32_t n) {
    // The list is in free order, and blocks freed together usually come from one span: each
    // run of blocks in one span is spliced onto its free list whole, with one lookup.
    void **b = tc->head[sc];
    uint32_t moved = 0;
    while (n && b) {
        hak_slab_t *s = hak_ss_slab_of(hak_ss_of(b), b);
        uintptr_t lo = (uintptr_t)s->start, len = (uintptr_t)s->capacity * s->size;
        void **first = b, **last;
        uint32_t k = 0;
        do {
            last = b;
            b = hak_link_get(b);
            k++;
        } while (--n && b && (uintptr_t)b - lo < len);
        moved += k;
        slab_return_chain(h, s, first, last, k);
    }
    tc->head[sc] = b;
    tc->room[sc] += moved;
}

void hak_tls_flush_slow(unsigned sc) {
    hak_tc_t *tc = &hak_tc;
    hak_heap_t *h = tc->heap;
    HAK_STAT_INC(free_flush);
#if HAK_STATS
    hak_stats_fold_sc(&tc->stats, &h->stats, sc);
#endif
    hak_lock(&h->lock);
    h->epoch++;
    flush_blocks(tc, h, sc, hak_sc_info[sc].batch);
    hak_unlock(&h->lock);
    idle_kick();
}

static int list_contains(void **list, const void *p, uint32_t limit) {
    for (; list && limit; list = hak_link_get(list), limit--)
        if (list == p) return 1;
    return 0;
}

/* ---- remote frees, batched per destination ----------------------------------------- */

// A thread that frees many blocks of one other heap (a consumer) gathers them and pushes
// them as one chain: one CAS on the owner's queue per batch instead of one per block. At
// most HAK_RB_COUNT blocks or HAK_RB_BYTES bytes wait, and only while the thread runs: a
// free for another heap, thread exit, trim and every refill push the batch.
#define HAK_RB_COUNT 64
#define HAK_RB_BYTES (64u << 10)

// Batching needs a thread whose exit pushes the batch: one with a heap, or a thread that
// only frees (a consumer), for which the exit key is set here without making a heap.
static int remote_batch_armed(hak_tc_t *tc) {
    if (hak_likely(tc->rb_armed)) return 1;
    if (tc->state != HAK_TC_NEW || !tc_key_ok) return 0;  // exited, setting up, or no key
    tc->rb_armed = 1;  // before the call: it may allocate, and that malloc sets the heap up
    if (pthread_setspecific(tc_key, tc) != 0) tc->rb_armed = 0;
    return tc->rb_armed;
}

static void remote_batch_flush(hak_tc_t *tc) {
    if (!tc->rb_count) return;
    hak_remote_push_chain(&tc->rb_heap->remote, tc->rb_head, tc->rb_tail);
    HAK_STAT_INC(free_remote_batches);
    tc->rb_head = tc->rb_tail = NULL;
    tc->rb_heap = NULL;
    tc->rb_count = tc->rb_bytes = 0;
}

static void remote_batch_add(hak_tc_t *tc, hak_heap_t *owner, void **b, uint32_t size) {
    if (tc->rb_heap != owner) {
        remote_batch_flush(tc);
        tc->rb_heap = owner;
    }
    b[0] = tc->rb_head;
    if (!tc->rb_head) tc->rb_tail = b;
    tc->rb_head = b;
    tc->rb_count++;
    tc->rb_bytes += size;
    if (tc->rb_count >= HAK_RB_COUNT || tc->rb_bytes >= HAK_RB_BYTES) remote_batch_flush(tc);
}

void hak_tls_corrupt(void *b) { hak_die("malloc(): free list corrupted (a write to a freed block, or a wild free-list link)", b); }

#define UNPURGE_FREES 64
void hak_tls_free_slow(hak_ss_t *ss, void *p, unsigned sc) {
    if (hak_unlikely(sc == HAK_SLAB_NONE)) hak_die("free(): invalid pointer (not an allocated block)", p);
    hak_tc_t *tc = &hak_tc;
    hak_heap_t *owner = hak_load_acquire(&ss->owner);  // pairs with move_ss
    void **b = p;
    if (hak_config.check) {
        hak_slab_t *s = hak_ss_slab_of(ss, p);
        if (hak_unlikely(!hak_slab_is_block(s, p)))
            hak_die("free(): invalid pointer (not the start of a block)", p);
        if (b[1] == (void *)hak_free_key) {
            if (owner != tc->heap) hak_die("free(): double free detected", p);
            // Our own block with the free mark: confirm before accusing (it could be data).
            // A free block is in our cache, its slab's list, or our remote queue: drain the
            // queue (into the cache or the slabs), then look in the first two.
            hak_lock(&owner->lock);
            drain_queue(tc, owner, &owner->remote);
            int found = list_contains(s->free, p, s->free_count + 1);
            hak_unlock(&owner->lock);
            uint32_t cached = (uint32_t)((int64_t)hak_sc_info[sc].tc_cap - tc->room[sc]);
            if (found || list_contains(tc->head[sc], p, cached + 1)) hak_die("free(): double free detected", p);
        }
        // A purged block reads as zeros, no mark: its span's limits sent every free here.
        if (owner == tc->heap && hak_slab_is_purged(s, p)) hak_die("free(): double free detected", p);
    }
    if (owner == tc->heap && owner != NULL) {
        // A span with purged blocks sends every free here (its limits are 0) until a refill
        // has taken them all back, which a working set that never refills never does: after
        // UNPURGE_FREES such frees the purged blocks go back on the list, and the fast path
        // with them. A span that busy would fault those pages in again anyway.
        hak_slab_t *s = hak_ss_slab_of(ss, p);
        if (hak_unlikely(hak_load_relaxed(&s->purged)) && ++s->slow_frees >= UNPURGE_FREES) {
            s->slow_frees = 0;
            hak_lock(&owner->lock);
            if (hak_load_relaxed(&s->purged)) hak_slab_unpurge(s);
            hak_unlock(&owner->lock);
        }
        hak_link_set(b, tc->head[sc]);
        b[1] = (void *)hak_free_key;
        tc->head[sc] = b;
        HAK_STAT_FAST(tc->stats, free_tls_sll);
        if (--tc->room[sc] < 0) hak_tls_flush_slow(sc);
        return;
    }
    b[1] = (void *)hak_free_key;
    HAK_STAT_INC(free_ss_remote);
    if (remote_batch_armed(tc)) {
        remote_batch_add(tc, owner, b, hak_sc_info[sc].size);
        return;
    }
    hak_remote_push(&owner->remote, b);  // exited, or no exit key: nobody would flush
}

/* ---- thread exit, trim -------------------------------------------------------------- */

// Give back every empty span and SuperSlab of h (heap lock held).
static void release_idle(hak_heap_t *h) {
    for (unsigned sc = 0; sc < HAK_SC_MAX; sc++) {
        hak_slab_t *s = h->partial[sc];
        while (s) {
            hak_slab_t *next = s->next;
            if (s->used == 0) span_give_back(h, s, 0);
            s = next;
        }
    }
    if (h->spare && h->spare->spans == 0) ss_give_back(h, h->spare);
    h->spare = NULL;
}

static void flush_all(hak_tc_t *tc, hak_heap_t *h, int release) {
    for (unsigned sc = 0; sc < HAK_SC_MAX; sc++) flush_blocks(tc, h, sc, UINT32_MAX);
    drain_queue(NULL, h, &h->remote);
    if (release) release_idle(h);
}

static void thread_exit(void *arg) {
    (void)arg;
    hak_tc_t *tc = &hak_tc;
    hak_heap_t *h = tc->heap;
    remote_batch_flush(tc);
    tc->rb_armed = 0;
    if (!h) {  // a thread that only freed: later frees push block by block
        tc->state = HAK_TC_EXITED;
        return;
    }
    hak_lock(&h->lock);
    flush_all(tc, h, 0);
    h->owned = 0;
    hak_store_relaxed(&h->owner_tc, NULL);
    hak_unlock(&h->lock);
    HAK_STAT_INC(thread_exit);
#if HAK_STATS
    hak_stats_fold(&tc->stats, &h->stats);
#endif
    hak_stats_cur = NULL;  // later counts of this thread go to the process totals
    hak_stats_fast_cur = NULL;
    tc->heap = NULL;
    tc->state = HAK_TC_EXITED;  // later mallocs in this thread use the global heap
    hak_orphan_push(&h->orphan);
    idle_kick();
}

// Purge what heap h holds free: its SuperSlabs' free slabs, and with blocks, in its spans
// that still have live blocks (a finished phase leaves those behind) the pages inside free
// blocks of a page or more, and the pages that hold only free smaller blocks (a walk of
// every free list).
static size_t purge_heap(hak_heap_t *h, int blocks) {
    size_t bytes = 0;
    for (hak_ss_t *ss = h->ss_avail; ss; ss = ss->next)
        bytes += hak_ss_purge_free(ss) + (blocks ? hak_ss_purge_free_blocks(ss) : 0);
    if (blocks)
        for (hak_ss_t *ss = h->ss_full; ss; ss = ss->next) bytes += hak_ss_purge_free_blocks(ss);
    return bytes;
}

// Give back what heap x (not the caller's) holds free: drain its queue into its slabs, give
// its empty spans and spare to the pool, purge its SuperSlabs' free slabs. Under x's lock,
// which its owner takes for every slow path; the owner's fast paths touch only its thread
// cache, and spans with blocks in that cache are not empty. Skipped if x is busy.
// only_idle: the purge thread (any heap that ran no slow path since its last look);
// otherwise trim (heaps another thread owns; orphans it handles itself).
static int release_heap(hak_heap_t *x, int only_idle, size_t *bytes) {
    if (!hak_trylock(&x->lock)) return 0;
    int done = 0;
    if (!only_idle && !x->owned) {
        // an orphan, trimmed separately: nothing here
    } else if (!only_idle || (x->epoch == x->purge_epoch && !x->purged)) {
        drain_queue(NULL, x, &x->remote);
        release_idle(x);
        *bytes += purge_heap(x, 1);
        x->purged = 1;
        done = 1;
    } else if (x->epoch != x->purge_epoch) {
        x->purge_epoch = x->epoch;
        x->purged = 0;
    }
    hak_unlock(&x->lock);
    return done;
}

static hak_heap_t *heaps_head(void) {
    hak_lock(&heaps_lock);
    hak_heap_t *h = heaps_all;  // the list only grows at its head; all_next never changes
    hak_unlock(&heaps_lock);
    return h;
}

size_t hak_tls_trim(void) {
    // Bytes given back, counted from what each step returns (not from the counters, which
    // HAKMEM_STATS=OFF compiles out).
    size_t bytes = 0;
    hak_tc_t *tc = &hak_tc;
    hak_heap_t *h = tc->heap;
    remote_batch_flush(tc);
    if (h) {
        hak_lock(&h->lock);
        flush_all(tc, h, 1);
        bytes += purge_heap(h, 1);
        hak_unlock(&h->lock);
    }
    // Orphaned heaps belong to nobody: take them all off the list, drain their queues into
    // their slabs, give back what is empty, and put them back.
    hak_orphan_t *taken = NULL;
    hak_orphan_t *o;
    while ((o = hak_orphan_pop()) != NULL) {
        o->next = taken;
        taken = o;
    }
    while (taken) {
        o = taken;
        taken = o->next;
        hak_heap_t *x = HEAP_OF_ORPHAN(o);
        if (hak_trylock(&x->lock)) {
            drain_queue(NULL, x, &x->remote);
            release_idle(x);
            bytes += purge_heap(x, 1);
            hak_unlock(&x->lock);
        }
        hak_orphan_push(o);
    }
    // Heaps that other threads own: what their slabs hold free (their thread caches stay).
    for (hak_heap_t *x = heaps_head(); x; x = x->all_next)
        if (x != h && release_heap(x, 0, &bytes)) HAK_STAT_INC(trim_other_heaps);
    bytes += hak_ss_pool_trim();
    return bytes;
}

void hak_tls_purge_idle(void) {
    HAK_STAT_INC(purge_passes);
    size_t bytes = 0;
    for (hak_heap_t *h = heaps_head(); h; h = h->all_next)
        if (release_heap(h, 1, &bytes)) HAK_STAT_INC(purge_idle_heaps);
    hak_ss_pool_decay();
}

void hak_tls_totals(size_t *in_use, size_t *heaps) {
    size_t bytes = 0, cached = 0;
    // Blocks in the calling thread's cache are free, not in use. Other threads' caches are
    // their thread-local memory, which nobody else reads: they count as in use.
    hak_tc_t *self = &hak_tc;
    if (self->heap)
        for (unsigned sc = 0; sc < HAK_SC_MAX; sc++)
            cached += (size_t)((int64_t)hak_sc_info[sc].tc_cap - self->room[sc]) * hak_sc_info[sc].size;
    hak_lock(&heaps_lock);
    for (hak_heap_t *h = heaps_all; h; h = h->all_next) {
        hak_lock(&h->lock);
        hak_ss_t *lists[2] = {h->ss_avail, h->ss_full};
        for (int l = 0; l < 2; l++) {
            for (hak_ss_t *ss = lists[l]; ss; ss = ss->next) {
                for (unsigned i = 0; i < HAK_SLABS_PER_SS; i++) {
                    if (ss->slab_sc[i] == HAK_SLAB_NONE || ss->slab_head[i] != i) continue;
                    bytes += (size_t)ss->slabs[i].used * ss->slabs[i].size;
                }
            }
        }
        hak_unlock(&h->lock);
    }
    *heaps = heaps_made;
    hak_unlock(&heaps_lock);
    *in_use = bytes > cached ? bytes - cached : 0;
}

/* ---- fork --------------------------------------------------------------------------- */

// Before the fork handlers take their locks: the forking thread's cached blocks go back to
// their slabs, its empty spans and SuperSlabs are given back, and the pages of its free
// memory are purged, the pooled SuperSlabs' too. Otherwise both processes start with that
// memory resident (the child's copy-on-write share counts in its RSS as well), and the first
// writes to it in either one copy pages. A prefork server's master forks from the thread
// that read its configuration: Nginx's master held 32 KiB of such blocks in its cache and
// passed them to its worker (docs/DESIGN-NOTES.md, "Fork").
// Only a heap of one SuperSlab (HAK_FORK_TRIM_BLOCKS_SS) has the free blocks inside its
// spans purged: that walks every free list, and with 1M free 64 B blocks it made a 7 ms
// fork take 22-24 (bench/fork_latency). A bigger heap gets the rest (its cache, empty spans,
// free slabs), whose cost follows its cache and its SuperSlab count.
// The parent pays afterwards too: refills, and faults on the pages given back. So a fork
// within HAKMEM_DECAY_MS of the last trim trims nothing: a prefork server's master forks its
// workers in a burst (the first fork took what there was), and a program that forks per job
// loses its warm memory at most once per period. Takes the heap's lock, then the pool's (and
// through an unmap the metadata and pagemap locks), and drops them all before the fork
// handlers take theirs.
#define HAK_FORK_TRIM_BLOCKS_SS 1
static _Atomic uint64_t fork_trim_last_ms;  // 0: never

void hak_tls_fork_trim(void) {
    uint64_t now = hak_os_now_ms(), last = hak_load_relaxed(&fork_trim_last_ms);
    if (last != 0 && now - last < hak_config.decay_ms) return;
    hak_store_relaxed(&fork_trim_last_ms, now ? now : 1);
    hak_tc_t *tc = &hak_tc;
    hak_heap_t *h = tc->heap;
    if (h) {  // a thread's own heap (the global heap is never one)
        remote_batch_flush(tc);
        hak_lock(&h->lock);
        flush_all(tc, h, 1);
        purge_heap(h, h->ss_count <= HAK_FORK_TRIM_BLOCKS_SS);
        hak_unlock(&h->lock);
    }
    hak_ss_pool_purge();  // where emptied SuperSlabs went, pages and all
    HAK_STAT_INC(trim_fork);
}

void hak_tls_fork_prepare(void) {
    hak_lock(&init_lock);
    hak_lock(&global_lock);
    hak_lock(&heaps_lock);
    for (hak_heap_t *h = heaps_all; h; h = h->all_next) hak_lock(&h->lock);
    hak_meta_fork_prepare(&heap_meta);
    hak_meta_fork_prepare(&global_meta);
}

void hak_tls_fork_parent(void) {
    hak_meta_fork_parent(&global_meta);
    hak_meta_fork_parent(&heap_meta);
    for (hak_heap_t *h = heaps_all; h; h = h->all_next) hak_unlock(&h->lock);
    hak_unlock(&heaps_lock);
    hak_unlock(&global_lock);
    hak_unlock(&init_lock);
}

// In the child only the forking thread exists: every heap another thread owned becomes an
// orphan (blocks in those threads' caches stay allocated, and so do their unfolded fast
// counts), and every lock starts free.
// The orphan list's lock has been reset before this runs.
void hak_tls_fork_child(void) {
    hak_meta_fork_child(&global_meta);
    hak_meta_fork_child(&heap_meta);
    hak_heap_t *mine = hak_tc.heap;
    // A child is a new program more often than not (a prefork server's worker): its
    // classes start young again, so that a class it uses lightly holds no page of its own.
    // (Whatever HAKMEM_FORK_TRIM says; HAKMEM_YOUNG=0 turns young classes off.)
    if (mine) memset(mine->young_taken, 0, sizeof mine->young_taken);
    // Its own forks trim again: the period is about one process forking over and over (a
    // daemon's first fork trims in the parent; the child then forks its workers at once).
    hak_store_relaxed(&fork_trim_last_ms, 0);
    for (hak_heap_t *h = heaps_all; h; h = h->all_next) {
        hak_lock_reset(&h->lock);
        if (h == mine || is_global(h)) continue;
        // Owned by another thread, or between owners (taken off the orphan list by a thread
        // that was adopting or trimming it, or not yet pushed by an exiting one): no thread
        // in the child will ever finish that, so list it again.
        if (h->owned || !h->orphan.listed) {
            h->owned = 0;
            hak_store_relaxed(&h->owner_tc, NULL);
            hak_orphan_push(&h->orphan);
        }
    }
    hak_lock_reset(&heaps_lock);
    hak_lock_reset(&global_lock);
    hak_lock_reset(&init_lock);
}
