/* hakmem.h -- the public API of the hakmem allocator.
 *
 * Two ways in: the prefixed functions below (usable beside the system allocator, as tests,
 * benchmarks and sanitizer builds do), or the malloc-family overrides exported by
 * libhakmem.so / libhakmem.a, which call the same code. This header declares the API only. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define HAK_API __attribute__((visibility("default")))
#else
#define HAK_API
#endif

#define HAKMEM_VERSION "0.1.0"

/* The malloc family, with glibc's semantics and errno values. */
HAK_API void *hak_malloc(size_t size);
HAK_API void hak_free(void *ptr);
HAK_API void *hak_calloc(size_t count, size_t size);
HAK_API void *hak_realloc(void *ptr, size_t size);
HAK_API void *hak_reallocarray(void *ptr, size_t count, size_t size);
HAK_API int hak_posix_memalign(void **out, size_t alignment, size_t size);
HAK_API void *hak_aligned_alloc(size_t alignment, size_t size);
HAK_API void *hak_memalign(size_t alignment, size_t size);
HAK_API void *hak_valloc(size_t size);
HAK_API void *hak_pvalloc(size_t size);
HAK_API size_t hak_usable_size(const void *ptr);
/* C23 free_sized / free_aligned_sized: the size is a hint, checked where cheap. */
HAK_API void hak_free_sized(void *ptr, size_t size);
HAK_API void hak_free_aligned_sized(void *ptr, size_t alignment, size_t size);

/* Give free memory back to the OS (malloc_trim). Returns 1 if any memory was released. */
HAK_API int hak_trim(size_t pad);

/* Heap summary, the data behind mallinfo2() and malloc_stats(). */
typedef struct hak_info {
    size_t mapped_bytes;     /* bytes hakmem holds from the OS (SuperSlabs + large blocks,
                                live and cached) */
    size_t ss_bytes;         /* bytes in SuperSlabs, including pooled empty ones */
    size_t ss_pooled_bytes;  /* empty SuperSlabs kept for reuse */
    size_t large_bytes;      /* bytes mapped for live large blocks */
    size_t large_count;      /* live large blocks */
    size_t in_use_bytes;     /* bytes in blocks handed out; the calling thread's cached blocks
                                count as free, other threads' caches as in use */
    size_t free_bytes;       /* mapped bytes not in use */
    size_t thread_heaps;     /* heaps created (live and orphaned) */
    size_t large_cached_bytes; /* freed large blocks kept mapped in the BigCache for reuse:
                                  in mapped_bytes and free_bytes, not in large_bytes */
} hak_info_t;
HAK_API void hak_info(hak_info_t *out);

/* Debug counters (see docs/COUNTERS.md). hak_stat() returns the process-wide value of one
 * counter by name (threads still running included), or UINT64_MAX for an unknown name.
 * hak_stat_sc() gives a per-size-class counter ("sc_alloc", "sc_refill") for class sc.
 * Counters are 0 when the library was built with HAKMEM_STATS=OFF. */
HAK_API uint64_t hak_stat(const char *name);
HAK_API uint64_t hak_stat_sc(const char *name, unsigned sc);
/* Write the counter report to fd: text (json == 0) or one JSON object (json != 0).
 * Uses write(2) only; allocates nothing. HAKMEM_DEBUG=1|json prints it at exit. */
HAK_API void hak_stats_print(int fd, int json);

/* Size classes, for tests and tools: the number of classes, a class's block size, and the
 * class that serves a request (or -1 above the largest class, i.e. the large path). */
HAK_API unsigned hak_sc_count(void);
HAK_API size_t hak_sc_size(unsigned sc);
HAK_API int hak_sc_of(size_t size);

#ifdef __cplusplus
}
#endif
