/* hak_base.h -- macros and constants shared by every hakmem module.
 * Owns: compiler hints, the SuperSlab/slab geometry, the fatal-error helper.
 * May call: libc's write/abort only. Must never allocate. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define HAK_INLINE inline __attribute__((always_inline))
#define HAK_NOINLINE __attribute__((noinline))
#define HAK_COLD __attribute__((cold, noinline))
#define HAK_HIDDEN __attribute__((visibility("hidden")))
#define HAK_TLS_MODEL __attribute__((tls_model("initial-exec")))
#define hak_likely(x) __builtin_expect(!!(x), 1)
#define hak_unlikely(x) __builtin_expect(!!(x), 0)
#define HAK_CACHE_LINE 64
#define HAK_ALIGNED(n) __attribute__((aligned(n)))

/* SuperSlab geometry: 2 MiB regions, 64 KiB slabs. */
#define HAK_SS_SHIFT 21
#define HAK_SS_SIZE ((size_t)1 << HAK_SS_SHIFT)
#define HAK_SLAB_SHIFT 16
#define HAK_SLAB_SIZE ((size_t)1 << HAK_SLAB_SHIFT)
#define HAK_SLABS_PER_SS (HAK_SS_SIZE / HAK_SLAB_SIZE)

/* The smallest alignment every block has (malloc's guarantee on x86-64). */
#define HAK_MIN_ALIGN 16

static HAK_INLINE uintptr_t hak_align_up(uintptr_t x, uintptr_t a) { return (x + a - 1) & ~(a - 1); }
static HAK_INLINE int hak_is_pow2(size_t x) { return x != 0 && (x & (x - 1)) == 0; }

/* Write "hakmem: <what> <ptr>\n" to stderr with write(2) and abort. For heap corruption. */
HAK_HIDDEN __attribute__((noreturn, cold)) void hak_die(const char *what, const void *ptr);
