/* hak_atomic.h -- the one atomics wrapper: C11 <stdatomic.h> spelled shortly.
 * Every call site names, in a comment, the operation it pairs with. ThreadSanitizer sees
 * all of these (no volatile tricks). */
#pragma once

#include <stdatomic.h>

#define hak_load_relaxed(p) atomic_load_explicit((p), memory_order_relaxed)
#define hak_load_acquire(p) atomic_load_explicit((p), memory_order_acquire)
#define hak_store_relaxed(p, v) atomic_store_explicit((p), (v), memory_order_relaxed)
#define hak_store_release(p, v) atomic_store_explicit((p), (v), memory_order_release)
#define hak_fetch_add_relaxed(p, v) atomic_fetch_add_explicit((p), (v), memory_order_relaxed)
#define hak_fetch_sub_relaxed(p, v) atomic_fetch_sub_explicit((p), (v), memory_order_relaxed)
#define hak_exchange_relaxed(p, v) atomic_exchange_explicit((p), (v), memory_order_relaxed)
#define hak_cas_acq_rel(p, expected, desired)                                                    \
    atomic_compare_exchange_strong_explicit((p), (expected), (desired), memory_order_acq_rel,   \
                                            memory_order_acquire)
