/* hak_os.c -- mmap, munmap, madvise and mremap behind one small layer, and the kernel's THP
 * setting. May call: the kernel, hak_stats. Must never call malloc. */
#define _GNU_SOURCE
#include "hak_os.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "hak_stats.h"

// Racing first calls store the same value; relaxed atomics say so (a plain load on x86).
static _Atomic size_t page_size_cached;

// Alignment slack above which a mapping is reserved first (see map_aligned).
#define RESERVE_FIRST ((size_t)256 << 20)

size_t hak_os_page_size(void) {
    size_t ps = atomic_load_explicit(&page_size_cached, memory_order_relaxed);
    if (hak_unlikely(ps == 0)) {
        long v = sysconf(_SC_PAGESIZE);
        ps = v > 0 ? (size_t)v : 4096;
        atomic_store_explicit(&page_size_cached, ps, memory_order_relaxed);
    }
    return ps;
}

/* ---- fault injection (hak_os_fault_set) ---------------------------------------------
 * Per kind: calls to let through, then calls to fail. All relaxed: plain counters that
 * publish no data; racing callers each take one unit (the CAS), so "fail K calls" fails
 * exactly K whatever the threads. fault_armed says whether any kind was ever armed: the
 * only thing an OS call reads when tests have not touched the hook. */
static struct {
    _Atomic uint64_t skip, fail, hits;
} faults[HAK_OS_FAULT_KINDS];
static _Atomic unsigned fault_armed;

static int take_one(_Atomic uint64_t *counter) {
    uint64_t v = atomic_load_explicit(counter, memory_order_relaxed);
    while (v > 0)
        if (atomic_compare_exchange_weak_explicit(counter, &v, v - 1, memory_order_relaxed, memory_order_relaxed))
            return 1;
    return 0;
}

static HAK_COLD int fault_take(hak_os_fault_kind_t kind) {
    if (take_one(&faults[kind].skip)) return 0;
    if (!take_one(&faults[kind].fail)) return 0;
    atomic_fetch_add_explicit(&faults[kind].hits, 1, memory_order_relaxed);
    return 1;
}

// 1 if this call of that kind is to fail.
static inline int fault_hit(hak_os_fault_kind_t kind) {
    if (hak_likely(atomic_load_explicit(&fault_armed, memory_order_relaxed) == 0)) return 0;
    return fault_take(kind);
}

void hak_os_fault_set(hak_os_fault_kind_t kind, uint64_t skip, uint64_t count) {
    if ((unsigned)kind >= HAK_OS_FAULT_KINDS) return;
    atomic_store_explicit(&faults[kind].fail, 0, memory_order_relaxed);
    atomic_store_explicit(&faults[kind].skip, skip, memory_order_relaxed);
    atomic_store_explicit(&faults[kind].fail, count, memory_order_relaxed);
    if (count) atomic_store_explicit(&fault_armed, 1, memory_order_relaxed);
}

uint64_t hak_os_fault_hits(hak_os_fault_kind_t kind) {
    return (unsigned)kind < HAK_OS_FAULT_KINDS ? atomic_load_explicit(&faults[kind].hits, memory_order_relaxed) : 0;
}

// Map size + align - page and cut the ends off, so the result is aligned without wasting
// address space beyond one alignment unit in transit.
static void *map_aligned(size_t size, size_t align, int prot) {
    size_t page = hak_os_page_size();
    if (align < page) align = page;
    if (size > SIZE_MAX - align) {
        errno = ENOMEM;
        return NULL;
    }
    size_t span = size + align - page;
    HAK_STAT_INC(os_map_calls);
    // Reservations do not count against overcommit; real mappings do, so that a failing
    // commit shows up here as ENOMEM rather than later as a fault. Past RESERVE_FIRST of
    // slack, the span is only reserved, and the kept part mapped read-write afterwards:
    // committing the whole span would refuse alignments larger than memory.
    int reserve_first = prot != PROT_NONE && align - page >= RESERVE_FIRST;
    int flags = MAP_PRIVATE | MAP_ANONYMOUS | (prot == PROT_NONE || reserve_first ? MAP_NORESERVE : 0);
    char *raw = hak_unlikely(fault_hit(HAK_OS_FAULT_MAP))
                    ? MAP_FAILED
                    : mmap(NULL, span, reserve_first ? PROT_NONE : prot, flags, -1, 0);
    if (raw == MAP_FAILED) {
        HAK_STAT_INC(os_map_fail);
        errno = ENOMEM;
        return NULL;
    }
    char *aligned = (char *)hak_align_up((uintptr_t)raw, align);
    size_t head = (size_t)(aligned - raw);
    size_t tail = span - head - size;
    if (head) munmap(raw, head);
    if (tail) munmap(aligned + size, tail);
    if (reserve_first &&
        mmap(aligned, size, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED) {
        munmap(aligned, size);
        HAK_STAT_INC(os_map_fail);
        errno = ENOMEM;
        return NULL;
    }
    if (prot != PROT_NONE) HAK_STAT_ADD(os_map_bytes, size);
    return aligned;
}

uint64_t hak_os_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t hak_os_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t hak_os_minflt(void) {
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? (uint64_t)ru.ru_minflt : 0;
}

void *hak_os_map(size_t size, size_t align) { return map_aligned(size, align, PROT_READ | PROT_WRITE); }

// Written once by the BigCache (a function pointer, never cleared), read on mmap failure.
static _Atomic(hak_os_reclaim_fn) reclaim_fn;

void hak_os_set_reclaim(hak_os_reclaim_fn fn) { atomic_store_explicit(&reclaim_fn, fn, memory_order_relaxed); }

void *hak_os_map_reclaim(size_t size, size_t align) {
    int saved = errno;  // a call that succeeds on the retry leaves errno as it found it
    void *p = hak_os_map(size, align);
    if (hak_likely(p != NULL)) return p;
    // relaxed: the function it names is code, not data another thread published
    hak_os_reclaim_fn fn = atomic_load_explicit(&reclaim_fn, memory_order_relaxed);
    if (fn && fn() > 0) p = hak_os_map(size, align);
    errno = p ? saved : ENOMEM;
    return p;
}

void *hak_os_reserve(size_t size, size_t align) { return map_aligned(size, align, PROT_NONE); }

int hak_os_unmap(void *p, size_t size) {
    if (hak_unlikely(fault_hit(HAK_OS_FAULT_UNMAP))) return errno = ENOMEM;
    if (munmap(p, size) != 0) return errno;
    HAK_STAT_ADD(os_unmap_bytes, size);
    return 0;
}

int hak_os_purge(void *p, size_t size) {
    if (hak_unlikely(fault_hit(HAK_OS_FAULT_PURGE))) return errno = EAGAIN;
    if (madvise(p, size, MADV_DONTNEED) != 0) return errno;
    HAK_STAT_ADD(os_purge_bytes, size);
    return 0;
}

void hak_os_advise_nohuge(void *p, size_t size) {
    int saved = errno;
    (void)madvise(p, size, MADV_NOHUGEPAGE);
    errno = saved;
}

int hak_os_advise_huge(void *p, size_t size) {
    // a failure is only reported: the malloc that maps the range still succeeds, and keeps
    // the caller's errno
    int saved = errno;
    if (madvise(p, size, MADV_HUGEPAGE) != 0) {
        int err = errno;
        errno = saved;
        return err;
    }
    HAK_STAT_INC(thp_advised);
    HAK_STAT_ADD(thp_advised_bytes, size);
    return 0;
}

hak_os_thp_t hak_os_thp_parse(const char *text, size_t len) {
    static const struct {
        const char *word;
        hak_os_thp_t mode;
    } words[] = {{"[always]", HAK_OS_THP_ALWAYS}, {"[madvise]", HAK_OS_THP_MADVISE}, {"[never]", HAK_OS_THP_NEVER}};
    // "always [madvise] never\n": the bracketed word is the one in force
    for (size_t i = 0; i < len; i++) {
        if (text[i] != '[') continue;
        for (unsigned w = 0; w < sizeof words / sizeof words[0]; w++) {
            size_t n = strlen(words[w].word);
            if (n <= len - i && memcmp(text + i, words[w].word, n) == 0) return words[w].mode;
        }
        return HAK_OS_THP_UNKNOWN;
    }
    return HAK_OS_THP_UNKNOWN;
}

hak_os_thp_t hak_os_thp_setting(void) {
    char buf[128];
    int saved = errno;  // runs inside the first malloc: leaves errno as it found it
    // Raw system calls: this runs under the init lock, and a preloaded library that wraps
    // open() and allocates in its wrapper would come back into malloc and wait on it.
    long fd = syscall(SYS_openat, AT_FDCWD, "/sys/kernel/mm/transparent_hugepage/enabled", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        errno = saved;
        return HAK_OS_THP_UNKNOWN;
    }
    long n;
    do {
        n = syscall(SYS_read, (int)fd, buf, sizeof buf);
    } while (n < 0 && errno == EINTR);
    syscall(SYS_close, (int)fd);
    errno = saved;
    return n > 0 ? hak_os_thp_parse(buf, (size_t)n) : HAK_OS_THP_UNKNOWN;
}

int hak_os_resize_inplace(void *p, size_t old_size, size_t new_size) {
    if (hak_unlikely(fault_hit(HAK_OS_FAULT_REMAP))) return errno = ENOMEM;
    void *r = mremap(p, old_size, new_size, 0);
    if (r == MAP_FAILED) return errno;
    if (new_size > old_size) HAK_STAT_ADD(os_map_bytes, new_size - old_size);
    else HAK_STAT_ADD(os_unmap_bytes, old_size - new_size);
    return 0;
}

int hak_os_move(void *p, size_t old_size, size_t new_size, void *target) {
    if (hak_unlikely(fault_hit(HAK_OS_FAULT_REMAP))) return errno = ENOMEM;
    size_t moved = old_size < new_size ? old_size : new_size;
    if (new_size > old_size) {
        HAK_STAT_INC(os_map_calls);
        // The new tail first, read-write over the reservation's end (a refusal shows here,
        // before anything moved; the caller unmaps the whole target), then the old pages
        // onto its head. One mremap that moves and grows at once does both, but Valgrind
        // (3.19) left the grown part unaddressable when the source had grown in place
        // before (api_realloc tiers under memcheck).
        if (mmap((char *)target + old_size, new_size - old_size, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED)
            return errno;
    }
    void *r = mremap(p, old_size, moved, MREMAP_MAYMOVE | MREMAP_FIXED, target);
    if (r == MAP_FAILED) return errno;
    if (new_size > old_size) HAK_STAT_ADD(os_map_bytes, new_size - old_size);
    else HAK_STAT_ADD(os_unmap_bytes, old_size - new_size);
    return 0;
}

int hak_os_protect(void *p, size_t size, int rw) {
    if (mprotect(p, size, rw ? PROT_READ | PROT_WRITE : PROT_NONE) != 0) return errno;
    return 0;
}
