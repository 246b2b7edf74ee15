/* hak_remote.c -- batch push and the orphan list. */
#include "hak_remote.h"

void hak_remote_push_chain(hak_remote_queue_t *q, void *head, void *tail) {
#ifdef HAK_TSAN
    hak_remote_push_chain_inline(&q->stack, head, tail);
#else
    ck_stack_entry_t *h = head, *t = tail;
    ck_stack_entry_t *top = ck_pr_load_ptr(&q->stack.head);
    for (;;) {
        t->next = top;
        ck_pr_fence_store();
        // pairs with the exchange in hak_remote_drain; a failed CAS reloads top
        if (ck_pr_cas_ptr_value(&q->stack.head, top, h, &top)) return;
    }
#endif
}

static hak_lock_t orphan_lock = HAK_LOCK_INIT;
static hak_orphan_t *orphan_head;
static size_t orphans;

void hak_orphan_push(hak_orphan_t *node) {
    hak_lock(&orphan_lock);
    node->next = orphan_head;
    node->listed = 1;
    orphan_head = node;
    orphans++;
    hak_unlock(&orphan_lock);
}

hak_orphan_t *hak_orphan_pop(void) {
    hak_lock(&orphan_lock);
    hak_orphan_t *n = orphan_head;
    if (n) {
        orphan_head = n->next;
        n->listed = 0;
        orphans--;
    }
    hak_unlock(&orphan_lock);
    return n;
}

hak_orphan_t *hak_orphan_take_if(int (*pred)(hak_orphan_t *, void *), void *arg) {
    hak_lock(&orphan_lock);
    for (hak_orphan_t **pp = &orphan_head; *pp; pp = &(*pp)->next) {
        hak_orphan_t *n = *pp;
        if (pred(n, arg)) {
            *pp = n->next;
            n->listed = 0;
            orphans--;
            hak_unlock(&orphan_lock);
            return n;
        }
    }
    hak_unlock(&orphan_lock);
    return NULL;
}

size_t hak_orphan_count(void) {
    hak_lock(&orphan_lock);
    size_t n = orphans;
    hak_unlock(&orphan_lock);
    return n;
}

void hak_orphan_fork_prepare(void) { hak_lock(&orphan_lock); }
void hak_orphan_fork_parent(void) { hak_unlock(&orphan_lock); }
void hak_orphan_fork_child(void) { hak_lock_reset(&orphan_lock); }
