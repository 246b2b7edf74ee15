/* hak_remote.h -- remote-free queues and the orphan hand-off.
 * A queue is a Treiber stack (ConcurrencyKit ck_stack): any thread pushes a freed block
 * with one CAS (ck_stack_push_upmc); only the queue's owner takes blocks, always the whole
 * stack at once with one exchange (ck_stack_batch_pop_upmc), so there is no ABA: no
 * single entry is ever popped from a stack that others push to.
 * The orphan list holds the queues' owners (heaps) whose threads have exited, until a
 * thread adopts them. May call: core/base, ConcurrencyKit. Never superslab/. */
#pragma once

#include <ck_stack.h>
#include <stddef.h>

#include "hak_base.h"
#include "hak_lock.h"

typedef struct hak_remote_queue {
    ck_stack_t stack;
} HAK_ALIGNED(HAK_CACHE_LINE) hak_remote_queue_t;

/* ThreadSanitizer cannot see ck_pr's loads and exchange (plain volatile accesses or inline
 * assembly), so a TSan build (HAK_TSAN) runs the same protocol with the compiler's __atomic
 * builtins: the same CAS-loop push and exchange drain, on the same ck_stack_t. */
#ifdef HAK_TSAN
static HAK_INLINE void hak_remote_push_chain_inline(ck_stack_t *s, ck_stack_entry_t *h, ck_stack_entry_t *t) {
    ck_stack_entry_t *top = __atomic_load_n(&s->head, __ATOMIC_RELAXED);
    do {
        t->next = top;
        // release pairs with the acquire exchange in hak_remote_drain
    } while (!__atomic_compare_exchange_n(&s->head, &top, h, 1, __ATOMIC_RELEASE, __ATOMIC_RELAXED));
}
#endif

/* Push block (at least 16 bytes, its first word becomes the link). Any thread. */
static HAK_INLINE void hak_remote_push(hak_remote_queue_t *q, void *block) {
#ifdef HAK_TSAN
    hak_remote_push_chain_inline(&q->stack, block, block);
#else
    // pairs with the exchange in hak_remote_drain: the CAS publishes the link word
    ck_stack_push_upmc(&q->stack, (ck_stack_entry_t *)block);
#endif
}

/* Push a chain head..tail already linked through first words: one CAS for the batch. */
HAK_HIDDEN void hak_remote_push_chain(hak_remote_queue_t *q, void *head, void *tail);

/* Take every queued block; returns the chain (linked through first words) or NULL.
 * Only the queue's owner calls this. */
static HAK_INLINE int hak_remote_pending(hak_remote_queue_t *q) {
    // relaxed: a hint; the exchange in hak_remote_drain does the synchronising
    return __atomic_load_n(&q->stack.head, __ATOMIC_RELAXED) != NULL;
}

static HAK_INLINE void *hak_remote_drain(hak_remote_queue_t *q) {
    // cheap test first: an empty queue costs a load, not an atomic exchange
    if (!hak_remote_pending(q)) return NULL;
#ifdef HAK_TSAN
    // acquire pairs with the release CAS in the push
    return __atomic_exchange_n(&q->stack.head, NULL, __ATOMIC_ACQ_REL);
#else
    // pairs with the CAS in hak_remote_push / hak_remote_push_chain
    return ck_stack_batch_pop_upmc(&q->stack);
#endif
}

/* The orphan list: a locked LIFO of nodes embedded in their owners. Cold paths only. */
typedef struct hak_orphan {
    struct hak_orphan *next;
    int listed;
} hak_orphan_t;

HAK_HIDDEN void hak_orphan_push(hak_orphan_t *node);
/* Take the most recently orphaned node, or NULL. */
HAK_HIDDEN hak_orphan_t *hak_orphan_pop(void);
/* Take a node that satisfies pred(node, arg), or NULL. */
HAK_HIDDEN hak_orphan_t *hak_orphan_take_if(int (*pred)(hak_orphan_t *, void *), void *arg);
HAK_HIDDEN size_t hak_orphan_count(void);
HAK_HIDDEN void hak_orphan_fork_prepare(void);
HAK_HIDDEN void hak_orphan_fork_parent(void);
HAK_HIDDEN void hak_orphan_fork_child(void);
