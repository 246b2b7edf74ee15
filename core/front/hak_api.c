/* hak_api.c -- the API entry points (hak_malloc, ...), and with HAK_OVERRIDE the malloc
 * family itself as aliases of them, so an override costs no extra call.
 * Owns: argument checking and errno, tier dispatch (thread cache or large path), realloc
 * and aligned allocation. May call: tls/, core/large/, superslab/ lookups, core/base. */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "hak_fmt.h"
#include "hak_front.h"
#include "hak_guard.h"
#include "hak_large.h"
#include "hak_os.h"
#include "hak_tls.h"
#include "hakmem.h"

#define HAK_FRONT HAK_API __attribute__((flatten))

// The caller's return address: the call-site key of the large path (BigCache rings and
// site statistics). Written only inside an exported function or an always-inline helper
// of one (inlined, it names the exported function's caller: GCC and Clang document this),
// and only on the branch that goes to the large path: evaluated at the top of the function
// (as an argument, say), GCC loads it in the entry block, one instruction more on the
// small path.
#define HAK_SITE() ((uintptr_t)__builtin_return_address(0))

// Here, not in hak_init.c: a static link pulls this object in (it defines malloc), and with
// it these hooks and everything they call.
__attribute__((constructor(101))) static void front_constructor(void) { hak_front_init(); }
__attribute__((destructor(101))) static void front_destructor(void) { hak_front_fini(); }

#if HAK_GUARD_HOOK
// Allocations left before the next guarded one (hak_guard.h). Zero in a new thread, so its
// first small or mid malloc asks the guard module; INT64_MAX when guarding is off, which a
// program never counts down. One decrement and branch on the small path.
static __thread int64_t guard_countdown HAK_TLS_MODEL;
static __thread int guard_armed HAK_TLS_MODEL;
#define GUARD_DUE() hak_unlikely(--guard_countdown < 0)
#else
#define GUARD_DUE() 0
#endif

static HAK_COLD void *malloc_guarded(size_t n, uintptr_t site) {
#if HAK_GUARD_HOOK
    hak_tls_global_init();  // the configuration
    int64_t skip = hak_guard_skip();
    guard_countdown = skip;
    // a thread's first call only sets its countdown, unless every block is guarded
    int first = !guard_armed;
    guard_armed = 1;
    if (n <= HAK_GUARD_MAX && skip != INT64_MAX && !(first && skip > 0)) {
        void *p = hak_guard_alloc(n, site);
        if (p) return p;
    }
#else
    (void)site;
#endif
    return hak_tls_alloc(n <= HAK_SMALL_MAX ? hak_sc_of_small(n) : hak_sc_of_mid(n));
}

static HAK_COLD void *malloc_mid(size_t n, uintptr_t site) {
    if (GUARD_DUE()) return malloc_guarded(n, site);
    return hak_tls_alloc(hak_sc_of_mid(n));
}

static HAK_COLD void *malloc_large(size_t n, uintptr_t site, int zero) {
    if (n > (size_t)PTRDIFF_MAX) {
        errno = ENOMEM;
        return NULL;
    }
    hak_tls_global_init();
    return hak_large_alloc(n, 0, site, zero);
}

// Always inline: HAK_SITE() below names the caller of the exported function.
static HAK_INLINE void *front_malloc(size_t n) {
    if (hak_likely(n <= HAK_SMALL_MAX)) {
        if (GUARD_DUE()) return malloc_guarded(n, HAK_SITE());
        return hak_tls_alloc(hak_sc_of_small(n));
    }
    if (n <= HAK_MID_MAX) return malloc_mid(n, HAK_SITE());
    return malloc_large(n, HAK_SITE(), 0);
}

static HAK_COLD void free_not_in_ss(void *p, uintptr_t site) {
    if (p == NULL) return;
    if (hak_guard_owns(p)) {
        hak_guard_free(p, site);
        return;
    }
    hak_large_t *h = hak_large_of(p);
    if (h) {
        hak_large_free(h, p);
        hak_front_purge_kick();  // the BigCache's entries decay while the program is idle
        return;
    }
    hak_die("free(): invalid pointer (not allocated by hakmem)", p);
}

static HAK_INLINE void front_free(void *p) {
    // The top-level index doubles as the range test; NULL reads the zero leaf's entry 0 and
    // goes to the slow path like any address hakmem does not own. An address past the table
    // goes there too (hak_large_of finds nothing and it reports the pointer): a call to
    // hak_die here would cost every free a stack frame (2 instructions), since a call needs
    // the stack aligned and the other exits are tail calls.
    uintptr_t top = (uintptr_t)p >> HAK_PM_TOP_SHIFT;
    if (hak_unlikely(top >= HAK_PM_TOP_COUNT)) {
        free_not_in_ss(p, HAK_SITE());
        return;
    }
    // a SuperSlab entry minus its tag is the metadata pointer; 0 and large entries are not
    uintptr_t e = hak_pagemap_get_fast((uintptr_t)p) - HAK_PM_TAG_SS;
    if (hak_likely((e & HAK_PM_TAG_MASK) == 0)) {
        hak_tls_free((hak_ss_t *)e, p);
        return;
    }
    free_not_in_ss(p, HAK_SITE());
}

// The usable size of a live block, aborting on pointers hakmem does not know.
static size_t block_size(const void *p, const char *who) {
    hak_ss_t *ss = hak_ss_of(p);
    if (ss) {
        unsigned sc = ss->slab_sc[hak_ss_slab_index(ss, p)];
        if (sc == HAK_SLAB_NONE) hak_die(who, p);
        hak_slab_t *s = hak_ss_slab_of(ss, p);
        if (!hak_slab_is_block(s, p)) hak_die(who, p);
        return s->size;
    }
    if (hak_guard_owns(p)) return hak_guard_usable(p, who);
    hak_large_t *h = hak_large_of(p);
    if (h && (const char *)p == h->base && hak_large_live(h)) return hak_large_usable(h);
    hak_die(who, p);
}

HAK_FRONT void *hak_malloc(size_t n) { return front_malloc(n); }

HAK_FRONT void hak_free(void *p) { front_free(p); }

HAK_FRONT void *hak_calloc(size_t count, size_t size) {
    size_t n;
    if (hak_unlikely(__builtin_mul_overflow(count, size, &n))) {
        errno = ENOMEM;
        return NULL;
    }
    if (hak_likely(n <= HAK_MID_MAX)) {
        void *p = front_malloc(n);
        if (p) memset(p, 0, n);
        return p;
    }
    return malloc_large(n, HAK_SITE(), 1);  // fresh mappings read as zero; reused ones are cleared
}

// Always inline, for HAK_SITE() (see front_malloc).
static HAK_INLINE void *aligned_core(size_t align, size_t n) {
    if (align <= HAK_MIN_ALIGN) return front_malloc(n);
    if (n > (size_t)PTRDIFF_MAX) {
        errno = ENOMEM;
        return NULL;
    }
    HAK_STAT_INC(aligned_alloc);
    if (align <= HAK_SLAB_SIZE) {
        // Slabs start on 64 KiB boundaries, so every block of a class whose size is a
        // multiple of align is aligned: take the smallest such class that fits.
        size_t need = n < align ? align : n;
        if (need <= HAK_MID_MAX) {
            unsigned sc = hak_sc_for(need);
            while (sc < HAK_SC_MAX && hak_sc_size_table[sc] % align != 0) sc++;
            if (sc < HAK_SC_MAX) return hak_tls_alloc(sc);
        }
    }
    hak_tls_global_init();
    return hak_large_alloc(n, align, HAK_SITE(), 0);
}

HAK_FRONT void *hak_realloc(void *p, size_t n) {
    if (p == NULL) return front_malloc(n);
    if (n == 0) {  // glibc: realloc(p, 0) frees p and returns NULL
        front_free(p);
        return NULL;
    }
    if (n > (size_t)PTRDIFF_MAX) {
        errno = ENOMEM;
        return NULL;
    }
    HAK_STAT_INC(realloc_calls);
    hak_ss_t *ss = hak_ss_of(p);
    size_t old;
    if (ss) {
        old = block_size(p, "realloc(): invalid pointer");
        if (hak_config.check && (((void **)p)[1] == (void *)hak_free_key || hak_slab_is_purged(hak_ss_slab_of(ss, p), p)))
            hak_die("realloc(): pointer already freed", p);  // a purged block has lost its mark
        // Keep the block when the new size fits and wastes at most half of it.
        if (n <= old && (n > old / 2 || old <= 32)) {
            HAK_STAT_INC(realloc_inplace);
            return p;
        }
    } else {
        hak_large_t *h = hak_large_of(p);
        if (h && n > HAK_MID_MAX) return hak_large_realloc(h, p, n);
        if (!h && !hak_guard_owns(p)) hak_die("realloc(): invalid pointer (not allocated by hakmem)", p);
        old = block_size(p, "realloc(): invalid pointer");
    }
    void *q = front_malloc(n);
    if (!q) return NULL;  // the old block stays valid
    memcpy(q, p, n < old ? n : old);
    front_free(p);
    return q;
}

HAK_FRONT void *hak_reallocarray(void *p, size_t count, size_t size) {
    size_t n;
    if (__builtin_mul_overflow(count, size, &n)) {
        errno = ENOMEM;
        return NULL;
    }
    return hak_realloc(p, n);
}

HAK_FRONT int hak_posix_memalign(void **out, size_t align, size_t n) {
    if (align % sizeof(void *) != 0 || !hak_is_pow2(align)) return EINVAL;
    int saved = errno;
    void *p = aligned_core(align, n);
    if (!p) {
        errno = saved;
        return ENOMEM;
    }
    *out = p;
    return 0;
}

HAK_FRONT void *hak_aligned_alloc(size_t align, size_t n) {
    // C17 / glibc 2.38: the alignment must be a power of two
    if (!hak_is_pow2(align)) {
        errno = EINVAL;
        return NULL;
    }
    return aligned_core(align, n);
}

HAK_FRONT void *hak_memalign(size_t align, size_t n) {
    // glibc: a non-power-of-two alignment is rounded up; an impossible one is EINVAL
    if (align > (SIZE_MAX >> 1) + 1) {
        errno = EINVAL;
        return NULL;
    }
    if (!hak_is_pow2(align)) {
        size_t a = 1;
        while (a < align) a <<= 1;
        align = a;
    }
    return aligned_core(align, n);
}

HAK_FRONT void *hak_valloc(size_t n) { return aligned_core(hak_os_page_size(), n); }

HAK_FRONT void *hak_pvalloc(size_t n) {
    size_t page = hak_os_page_size();
    if (n > SIZE_MAX - page) {
        errno = ENOMEM;
        return NULL;
    }
    size_t rounded = hak_align_up(n ? n : 1, page);
    return aligned_core(page, rounded);
}

static HAK_NOINLINE size_t usable_size_slow(const void *p) {
    if (p == NULL) return 0;
    return block_size(p, "malloc_usable_size(): invalid pointer");
}

// Redis (MALLOC=libc) asks for the usable size of every block it allocates and frees, to
// count its memory: the SuperSlab case is inline, with the free path's lookup and its
// block-start multiply in place of block_size's division (Redis LPUSH under callgrind: 120
// of its 1033 M instructions were here). Everything else, NULL included, goes the long way.
HAK_FRONT size_t hak_usable_size(const void *p) {
    if (hak_likely(((uintptr_t)p >> HAK_PM_TOP_SHIFT) < HAK_PM_TOP_COUNT)) {
        uintptr_t e = hak_pagemap_get_fast((uintptr_t)p) - HAK_PM_TAG_SS;
        if (hak_likely((e & HAK_PM_TAG_MASK) == 0)) {
            hak_ss_t *ss = (hak_ss_t *)e;
            unsigned idx = hak_ss_slab_index(ss, p);
            // a free slab, or a span holding purged blocks, has limit 0: block_size decides
            if (hak_likely(hak_ss_is_block_start(ss, p, idx))) return hak_sc_size_table[ss->slab_sc[idx]];
        }
    }
    return usable_size_slow(p);
}

HAK_FRONT void hak_free_sized(void *p, size_t size) {
    if (p && hak_config.check && size > block_size(p, "free_sized(): invalid pointer"))
        hak_die("free_sized(): size larger than the block", p);
    front_free(p);
}

HAK_FRONT void hak_free_aligned_sized(void *p, size_t align, size_t size) {
    (void)align;
    hak_free_sized(p, size);
}

HAK_API int hak_trim(size_t pad) {
    (void)pad;
    hak_tls_global_init();
    size_t large = hak_large_trim();  // first: hak_tls_trim counts only what it releases
    return hak_tls_trim() + large > 0;
}

HAK_API void hak_info(hak_info_t *out) {
    hak_tls_global_init();
    memset(out, 0, sizeof *out);
    hak_ss_totals(&out->ss_bytes, &out->ss_pooled_bytes);
    hak_large_totals(&out->large_bytes, &out->large_count, &out->large_cached_bytes);
    size_t in_use_small;
    hak_tls_totals(&in_use_small, &out->thread_heaps);
    out->mapped_bytes = out->ss_bytes + out->large_bytes + out->large_cached_bytes;
    out->in_use_bytes = in_use_small + out->large_bytes;
    out->free_bytes = out->mapped_bytes - out->in_use_bytes;
}

HAK_API uint64_t hak_stat(const char *name) {
    int i = hak_stats_index(name);
    return i < 0 ? UINT64_MAX : hak_stats_total((unsigned)i);
}

HAK_API uint64_t hak_stat_sc(const char *name, unsigned sc) {
    if (strcmp(name, "sc_alloc") == 0) return hak_stats_total_sc(0, sc);
    if (strcmp(name, "sc_refill") == 0) return hak_stats_total_sc(1, sc);
    return UINT64_MAX;
}

HAK_API void hak_stats_print(int fd, int json) { hak_stats_report(fd, json, hak_large_report); }

HAK_API unsigned hak_sc_count(void) { return HAK_SC_MAX; }

HAK_API size_t hak_sc_size(unsigned sc) { return sc < HAK_SC_MAX ? hak_sc_size_table[sc] : 0; }

HAK_API int hak_sc_of(size_t n) { return n <= HAK_MID_MAX ? (int)hak_sc_for(n) : -1; }

/* ---- glibc introspection, in terms of hak_info ------------------------------------- */

static struct mallinfo2 make_mallinfo2(void) {
    hak_info_t in;
    hak_info(&in);
    struct mallinfo2 m;
    memset(&m, 0, sizeof m);
    m.arena = in.ss_bytes;
    m.ordblks = in.ss_bytes / HAK_SS_SIZE;
    m.hblks = in.large_count;
    m.hblkhd = in.large_bytes + in.large_cached_bytes;  // mapped, like arena: cached blocks too
    m.uordblks = in.in_use_bytes - in.large_bytes;
    m.fordblks = in.free_bytes;
    m.keepcost = in.ss_pooled_bytes + in.large_cached_bytes;  // what malloc_trim gives back
    return m;
}

static void print_malloc_stats(void) {
    hak_info_t in;
    hak_info(&in);
    hak_buf_t b;
    hak_buf_init(&b, 2);
    hak_buf_str(&b, "hakmem " HAKMEM_VERSION "\nsystem bytes     = ");
    hak_buf_u64(&b, in.mapped_bytes);
    hak_buf_str(&b, "\nin use bytes     = ");
    hak_buf_u64(&b, in.in_use_bytes);
    hak_buf_str(&b, "\nsuperslab bytes  = ");
    hak_buf_u64(&b, in.ss_bytes);
    hak_buf_str(&b, "\npooled bytes     = ");
    hak_buf_u64(&b, in.ss_pooled_bytes);
    hak_buf_str(&b, "\nmmap regions     = ");
    hak_buf_u64(&b, in.large_count);
    hak_buf_str(&b, "\nmmap bytes       = ");
    hak_buf_u64(&b, in.large_bytes);
    hak_buf_str(&b, "\nbigcache bytes   = ");
    hak_buf_u64(&b, in.large_cached_bytes);
    hak_buf_str(&b, "\nthread heaps     = ");
    hak_buf_u64(&b, in.thread_heaps);
    hak_buf_str(&b, "\n");
    hak_buf_flush(&b);
}

#ifdef HAK_OVERRIDE
/* ---- the malloc family: aliases of the entry points above --------------------------- */
#define HAK_ALIAS(name) __attribute__((alias(#name), visibility("default")))

void *malloc(size_t n) HAK_ALIAS(hak_malloc);
void free(void *p) HAK_ALIAS(hak_free);
void *calloc(size_t c, size_t n) HAK_ALIAS(hak_calloc);
void *realloc(void *p, size_t n) HAK_ALIAS(hak_realloc);
void *reallocarray(void *p, size_t c, size_t n) HAK_ALIAS(hak_reallocarray);
int posix_memalign(void **out, size_t a, size_t n) HAK_ALIAS(hak_posix_memalign);
void *aligned_alloc(size_t a, size_t n) HAK_ALIAS(hak_aligned_alloc);
void *memalign(size_t a, size_t n) HAK_ALIAS(hak_memalign);
void *valloc(size_t n) HAK_ALIAS(hak_valloc);
void *pvalloc(size_t n) HAK_ALIAS(hak_pvalloc);
size_t malloc_usable_size(void *p) HAK_ALIAS(hak_usable_size);
void free_sized(void *p, size_t n) HAK_ALIAS(hak_free_sized);
void free_aligned_sized(void *p, size_t a, size_t n) HAK_ALIAS(hak_free_aligned_sized);
void *__libc_malloc(size_t n) HAK_ALIAS(hak_malloc);
void __libc_free(void *p) HAK_ALIAS(hak_free);
void *__libc_calloc(size_t c, size_t n) HAK_ALIAS(hak_calloc);
void *__libc_realloc(void *p, size_t n) HAK_ALIAS(hak_realloc);
void *__libc_memalign(size_t a, size_t n) HAK_ALIAS(hak_memalign);
void *__libc_valloc(size_t n) HAK_ALIAS(hak_valloc);
void *__libc_pvalloc(size_t n) HAK_ALIAS(hak_pvalloc);
int __posix_memalign(void **out, size_t a, size_t n) HAK_ALIAS(hak_posix_memalign);
void cfree(void *p) HAK_ALIAS(hak_free);

__attribute__((visibility("default"))) int malloc_trim(size_t pad) { return hak_trim(pad); }

__attribute__((visibility("default"))) struct mallinfo2 mallinfo2(void) { return make_mallinfo2(); }

static int clamp_int(size_t v) { return v > INT32_MAX ? INT32_MAX : (int)v; }

__attribute__((visibility("default"))) struct mallinfo mallinfo(void) {
    struct mallinfo2 m2 = make_mallinfo2();
    struct mallinfo m;
    memset(&m, 0, sizeof m);
    m.arena = clamp_int(m2.arena);
    m.ordblks = clamp_int(m2.ordblks);
    m.hblks = clamp_int(m2.hblks);
    m.hblkhd = clamp_int(m2.hblkhd);
    m.uordblks = clamp_int(m2.uordblks);
    m.fordblks = clamp_int(m2.fordblks);
    m.keepcost = clamp_int(m2.keepcost);
    return m;
}

__attribute__((visibility("default"))) void malloc_stats(void) { print_malloc_stats(); }

// Accepted and ignored: hakmem's tunables are HAKMEM_* variables (docs/CONFIG.md).
__attribute__((visibility("default"))) int mallopt(int param, int value) {
    (void)param;
    (void)value;
    return 1;
}
#else
// The prefixed library exposes the same reports under its own names.
HAK_API struct mallinfo2 hak_mallinfo2(void) { return make_mallinfo2(); }
HAK_API void hak_malloc_stats(void) { print_malloc_stats(); }
#endif
