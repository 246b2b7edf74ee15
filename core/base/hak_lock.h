/* hak_lock.h -- a small spinlock for cold paths (pools, orphan lists, init).
 * Never held across a call that may allocate or block. Yields after spinning a while so a
 * preempted holder can run on this 2-core class of machine. */
#pragma once

#include <sched.h>
#include <stdatomic.h>

#include "hak_base.h"

static inline void hak_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

typedef struct hak_lock {
    atomic_int held;
} hak_lock_t;

#define HAK_LOCK_INIT {0}

static inline void hak_lock(hak_lock_t *l) {
    for (unsigned spins = 0;; spins++) {
        // pairs with the release store in hak_unlock
        if (atomic_load_explicit(&l->held, memory_order_relaxed) == 0 &&
            atomic_exchange_explicit(&l->held, 1, memory_order_acquire) == 0)
            return;
        if (spins > 64) sched_yield();
        else hak_cpu_relax();
    }
}

static inline int hak_trylock(hak_lock_t *l) {
    // pairs with the release store in hak_unlock
    return atomic_exchange_explicit(&l->held, 1, memory_order_acquire) == 0;
}

static inline void hak_unlock(hak_lock_t *l) {
    // pairs with the acquire exchange in hak_lock
    atomic_store_explicit(&l->held, 0, memory_order_release);
}

/* After fork() the child has one thread: every lock starts free again. */
static inline void hak_lock_reset(hak_lock_t *l) { atomic_store_explicit(&l->held, 0, memory_order_relaxed); }
