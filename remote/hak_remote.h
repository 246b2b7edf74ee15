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

/* Push block (at least 16 bytes, its first word becomes the link). Any thread. */
static HAK_INLINE void hak_remote_push(hak_remote_queue_t *q, void *block) {
    // pairs with the exchange in hak_remote_drain: the CAS publishes the link word
    ck_stack_push_upmc(&q->stack, (ck_stack_entry_t *)block);
}

/* Push a chain head..tail already linked through first words: one CAS for the batch. */
HAK_HIDDEN void hak_remote_push_chain(hak_remote_queue_t *q, void *head, void *tail);

/* Take every queued block; returns the chain (linked through first words) or NULL.
 * Only the queue's owner calls this. */
static HAK_INLINE void *hak_remote_drain(hak_remote_queue_t *q) {
    // cheap test first: an empty queue costs a load, not an atomic exchange
    if (ck_pr_load_ptr(&q->stack.head) == NULL) return NULL;
    // pairs with the CAS in hak_remote_push / hak_remote_push_chain
    return ck_stack_batch_pop_upmc(&q->stack);
}

static HAK_INLINE int hak_remote_pending(hak_remote_queue_t *q) { return ck_pr_load_ptr(&q->stack.head) != NULL; }

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
