/* hak_os.h -- the OS layer: the only code in hakmem that maps, unmaps or advises memory.
 * Each helper counts what it does (os_* counters). Must never allocate through malloc. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "hak_base.h"

/* Map size bytes (a multiple of the page size) read-write, aligned to align (a power of two,
 * at least the page size). Returns NULL and sets errno to ENOMEM on failure. */
HAK_HIDDEN void *hak_os_map(size_t size, size_t align);
/* A function that gives cached memory back to the OS and returns the bytes it released
 * (the BigCache registers one). Set once; may be set again to the same function. */
typedef size_t (*hak_os_reclaim_fn)(void);
HAK_HIDDEN void hak_os_set_reclaim(hak_os_reclaim_fn fn);
/* hak_os_map, and when mmap fails, the reclaim function and one more try. The caller must
 * hold no lock that reclaiming takes (metadata pools, the BigCache), so the metadata pools
 * and the pagemap use plain hak_os_map. */
HAK_HIDDEN void *hak_os_map_reclaim(size_t size, size_t align);
/* Map size bytes with no access, aligned to align: a reservation that mremap fills. */
HAK_HIDDEN void *hak_os_reserve(size_t size, size_t align);
/* Unmap [p, p+size). Returns 0 or an errno value. */
HAK_HIDDEN int hak_os_unmap(void *p, size_t size);
/* Make [p, p+size) read-write (rw) or inaccessible (guard pages). Returns 0 or an errno
 * value (ENOMEM: the kernel's limit on mappings, which every split counts against). */
HAK_HIDDEN int hak_os_protect(void *p, size_t size, int rw);
/* Give the pages of [p, p+size) back (MADV_DONTNEED): RSS falls, the range stays mapped
 * and reads as zero afterwards. Returns 0 or an errno value. */
HAK_HIDDEN int hak_os_purge(void *p, size_t size);
/* Grow or shrink a mapping in place. Returns 0 or an errno value. */
HAK_HIDDEN int hak_os_resize_inplace(void *p, size_t old_size, size_t new_size);
/* Move the mapping [p, p+old_size) to target (a reservation of new_size bytes), resizing it.
 * Returns 0 or an errno value; on failure the old mapping is untouched. */
HAK_HIDDEN int hak_os_move(void *p, size_t old_size, size_t new_size, void *target);
/* Ask the kernel to back [p, p+size) with transparent huge pages (MADV_HUGEPAGE), where it
 * can: only the 2 MiB-aligned 2 MiB units wholly inside the range ever get one. Counts
 * thp_advised. Returns 0 or an errno value (EINVAL: a kernel without THP). */
HAK_HIDDEN int hak_os_advise_huge(void *p, size_t size);
/* Ask the kernel never to back [p, p+size) with huge pages (MADV_NOHUGEPAGE), for sparse
 * tables that a huge page would make resident whole. Failures are ignored (errno kept). */
HAK_HIDDEN void hak_os_advise_nohuge(void *p, size_t size);
/* The kernel's system-wide THP setting, /sys/kernel/mm/transparent_hugepage/enabled. */
typedef enum hak_os_thp {
    HAK_OS_THP_UNKNOWN = 0, /* unreadable, or not one of the three below */
    HAK_OS_THP_ALWAYS,      /* "[always]": every suitable anonymous mapping, unasked */
    HAK_OS_THP_MADVISE,     /* "[madvise]": only ranges advised with MADV_HUGEPAGE */
    HAK_OS_THP_NEVER,       /* "[never]" */
} hak_os_thp_t;
/* Read that file (raw openat/read/close into a stack buffer: no malloc, no stdio, no
 * wrapper a preloaded library could put around open). Call once, at init: three syscalls. */
HAK_HIDDEN hak_os_thp_t hak_os_thp_setting(void);
/* The setting a text of that file names (the bracketed word); len bytes, no NUL needed. */
HAK_HIDDEN hak_os_thp_t hak_os_thp_parse(const char *text, size_t len);
HAK_HIDDEN size_t hak_os_page_size(void);
/* A coarse monotonic clock in milliseconds (vDSO, no syscall), for decay decisions. */
HAK_HIDDEN uint64_t hak_os_now_ms(void);
/* A fine monotonic clock in nanoseconds (vDSO), for timing large operations (HAKMEM_LEARN). */
HAK_HIDDEN uint64_t hak_os_now_ns(void);
/* Minor page faults of the process so far (getrusage, one syscall). */
HAK_HIDDEN uint64_t hak_os_minflt(void);

/* Fault injection, for tests (tests/fault, tests/fuzz): make the OS calls of one kind fail
 * as the kernel would. After hak_os_fault_set(kind, skip, count) the next skip calls of that
 * kind succeed and the count after them fail (mmap with ENOMEM, munmap, madvise and mremap
 * with the errno below); count 0 disarms the kind. Every failure passes through the same
 * handling as a real one. Cost when disarmed: one relaxed load and a not-taken branch per OS
 * call, beside a system call; nothing on any allocation fast path. Reached only by programs
 * linked with the static library (hidden in libhakmem.so, and no environment switch). */
typedef enum hak_os_fault_kind {
    HAK_OS_FAULT_MAP = 0, /* mmap (hak_os_map, hak_os_reserve): ENOMEM */
    HAK_OS_FAULT_UNMAP,   /* munmap (hak_os_unmap): ENOMEM, as past vm.max_map_count */
    HAK_OS_FAULT_PURGE,   /* madvise(MADV_DONTNEED) (hak_os_purge): EAGAIN */
    HAK_OS_FAULT_REMAP,   /* mremap (hak_os_resize_inplace, hak_os_move): ENOMEM */
    HAK_OS_FAULT_KINDS
} hak_os_fault_kind_t;
HAK_HIDDEN void hak_os_fault_set(hak_os_fault_kind_t kind, uint64_t skip, uint64_t count);
/* Calls of that kind failed by injection since the program started. */
HAK_HIDDEN uint64_t hak_os_fault_hits(hak_os_fault_kind_t kind);
