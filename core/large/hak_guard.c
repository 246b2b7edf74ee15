/* hak_guard.c -- guarded blocks; see hak_guard.h. */
#define _GNU_SOURCE
#include "hak_guard.h"

#include <dlfcn.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#include "hak_config.h"
#include "hak_fmt.h"
#include "hak_harden.h"
#include "hak_lock.h"
#include "hak_os.h"
#include "hak_stats.h"

// Slots: HAK_GUARD_MAX bytes of data pages, then one guard page. Sampling needs few (a
// program rarely has more than a few hundred sampled blocks live); HAKMEM_GUARD=1 guards
// every block that fits, so it gets many more, and allocates normally once they are used.
#define SLOTS_SAMPLE 1024u
#define SLOTS_ALL 16384u
#define PATTERN 0xa5

enum { SLOT_UNUSED = 0, SLOT_LIVE, SLOT_FREED };

typedef struct slot {
    char *ptr;          /* the block */
    uint32_t size;      /* its requested size */
    uint32_t pages;     /* data pages made accessible for it */
    uint8_t state;
    uintptr_t site;     /* who allocated it */
    uintptr_t free_site; /* who freed it (SLOT_FREED) */
} slot_t;

uintptr_t hak_guard_lo, hak_guard_hi;
static size_t stride, page;
static uint32_t nslots, next_unused;
static slot_t *slots;
static uint32_t *fifo; /* freed slots, oldest first: reused in that order */
static uint32_t fifo_head, fifo_count;
static hak_lock_t guard_lock = HAK_LOCK_INIT;
static int failed;          /* the region could not be made: never try again */
static struct sigaction old_segv;

static __thread uint64_t rng HAK_TLS_MODEL;

int64_t hak_guard_skip(void) {
    if (hak_config.guard) return 0;
    size_t n = hak_config.guard_sample;
    if (n == 0) return INT64_MAX;
    // uniform in [0, 2n-2]: the mean gap is n-1 allocations, and the place of the next
    // sample cannot be predicted from the last one
    if (rng == 0) rng = ((uintptr_t)&rng ^ hak_link_key) | 1;
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (int64_t)(rng % (2 * (uint64_t)n - 1));
}

/* ---- the report ---------------------------------------------------------------------- */

static void put_site(hak_buf_t *b, uintptr_t site) {
    hak_buf_hex(b, site);
    Dl_info info;
    // dladdr takes the loader's lock and does not allocate; a crash report is the last
    // thing this process does anyway
    if (site && dladdr((void *)site, &info) && info.dli_fname) {
        const char *name = strrchr(info.dli_fname, '/');
        hak_buf_str(b, " (");
        hak_buf_str(b, name ? name + 1 : info.dli_fname);
        hak_buf_str(b, "+");
        hak_buf_hex(b, site - (uintptr_t)info.dli_fbase);
        hak_buf_str(b, ")");
    }
}

static void put_block(hak_buf_t *b, const slot_t *s) {
    hak_buf_str(b, "the ");
    hak_buf_u64(b, s->size);
    hak_buf_str(b, "-byte block ");
    hak_buf_hex(b, (uintptr_t)s->ptr);
    hak_buf_str(b, " allocated at ");
    put_site(b, s->site);
    if (s->state == SLOT_FREED) {
        hak_buf_str(b, " and freed at ");
        put_site(b, s->free_site);
    }
}

static __attribute__((noreturn)) void report_end(hak_buf_t *b) {
    hak_buf_str(b, "\n");
    hak_buf_flush(b);
    signal(SIGABRT, SIG_DFL);
    abort();
}

static void on_segv(int sig, siginfo_t *si, void *uc) {
    uintptr_t a = (uintptr_t)si->si_addr;
    if (!hak_guard_owns((void *)a)) {
        // not ours: what was there before us
        if ((old_segv.sa_flags & SA_SIGINFO) && old_segv.sa_sigaction) {
            old_segv.sa_sigaction(sig, si, uc);
        } else if (old_segv.sa_handler != SIG_DFL && old_segv.sa_handler != SIG_IGN) {
            old_segv.sa_handler(sig);
        } else {
            signal(SIGSEGV, SIG_DFL);  // return: the access faults again and kills
        }
        return;
    }
    const char *how = "access";
#if defined(__x86_64__)
    // the page-fault error code: bit 1 set for a write
    how = (((ucontext_t *)uc)->uc_mcontext.gregs[REG_ERR] & 2) ? "write" : "read";
#endif
    size_t j = (a - hak_guard_lo) / stride;
    const slot_t *s = &slots[j];
    // Below a slot's block, the nearer block may be the previous slot's (an overflow that
    // ran through its guard page): blame the nearer one.
    if (j > 0 && (s->state == SLOT_UNUSED || a < (uintptr_t)s->ptr)) {
        const slot_t *prev = &slots[j - 1];
        if (prev->state != SLOT_UNUSED &&
            (s->state == SLOT_UNUSED || a - ((uintptr_t)prev->ptr + prev->size) < (uintptr_t)s->ptr - a))
            s = prev;
    }
    uintptr_t p = (uintptr_t)s->ptr;
    // "hakmem: <kind>: <read|write> at <a>, <n><where>" then the block
    const char *kind = "wild", *where = " in the guarded region (no block there)";
    uint64_t n = 0;
    int has_n = 1;
    if (s->state == SLOT_LIVE && a >= p + s->size) {
        kind = "heap-buffer-overflow";
        n = a - (p + s->size);
        where = " bytes past the end of ";
    } else if (s->state == SLOT_LIVE || (s->state == SLOT_FREED && a < p)) {
        kind = s->state == SLOT_LIVE ? "heap-buffer-underflow" : "heap-use-after-free";
        n = p - a;
        where = " bytes before ";
    } else if (s->state == SLOT_FREED) {
        kind = "heap-use-after-free";
        n = a - p;
        where = " of ";
    } else {
        has_n = 0;
    }
    hak_buf_t b;
    hak_buf_init(&b, 2);
    hak_buf_str(&b, "hakmem: ");
    hak_buf_str(&b, kind);
    hak_buf_str(&b, ": ");
    hak_buf_str(&b, how);
    hak_buf_str(&b, " at ");
    hak_buf_hex(&b, a);
    if (!has_n) {
        hak_buf_str(&b, where);
        report_end(&b);
    }
    hak_buf_str(&b, s->state == SLOT_FREED && a >= p ? ", byte " : ", ");
    hak_buf_u64(&b, n);
    hak_buf_str(&b, where);
    put_block(&b, s);
    report_end(&b);
}

/* ---- the region ------------------------------------------------------------------------ */

static int region_make(void) {
    page = hak_os_page_size();
    stride = HAK_GUARD_MAX + page;
    uint32_t n = hak_config.guard ? SLOTS_ALL : SLOTS_SAMPLE;
    size_t meta = hak_align_up((size_t)n * (sizeof(slot_t) + sizeof(uint32_t)), page);
    void *m = hak_os_map(meta, page);
    if (!m) return 0;
    char *r = hak_os_reserve((size_t)n * stride, page);
    if (!r) {
        hak_os_unmap(m, meta);
        return 0;
    }
    slots = m;
    fifo = (uint32_t *)(slots + n);
    nslots = n;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &old_segv);
    // publish last: the fast test in free (hak_guard_owns) reads these two
    hak_guard_hi = (uintptr_t)r + (size_t)n * stride;
    hak_guard_lo = (uintptr_t)r;
    return 1;
}

void *hak_guard_alloc(size_t n, uintptr_t site) {
    hak_lock(&guard_lock);
    if (!hak_guard_lo && (failed || !region_make())) {
        failed = 1;
        hak_unlock(&guard_lock);
        return NULL;
    }
    uint32_t i;
    if (next_unused < nslots) {
        i = next_unused++;
    } else if (fifo_count) {
        i = fifo[fifo_head];
        fifo_head = (fifo_head + 1) % nslots;
        fifo_count--;
    } else {
        hak_unlock(&guard_lock);
        HAK_STAT_INC(guard_full);
        return NULL;
    }
    slot_t *s = &slots[i];
    char *end = (char *)hak_guard_lo + (size_t)i * stride + HAK_GUARD_MAX;
    size_t len = n ? n : 1;
    char *p = (char *)((uintptr_t)(end - len) & ~(uintptr_t)(HAK_MIN_ALIGN - 1));
    uint32_t pages = (uint32_t)((uintptr_t)(end - p) + page - 1) / (uint32_t)page;
    if (hak_os_protect(end - (size_t)pages * page, (size_t)pages * page, 1) != 0) {
        // the kernel's mapping limit: give the slot back (unused slots are the cheapest)
        fifo[(fifo_head + fifo_count++) % nslots] = i;
        hak_unlock(&guard_lock);
        HAK_STAT_INC(guard_full);
        return NULL;
    }
    memset(p + n, PATTERN, (size_t)(end - p) - n);  // the bytes up to the guard page
    s->ptr = p;
    s->size = (uint32_t)n;
    s->pages = pages;
    s->site = site;
    s->free_site = 0;
    s->state = SLOT_LIVE;
    hak_unlock(&guard_lock);
    HAK_STAT_INC(guard_alloc);
    return p;
}

static __attribute__((noreturn)) void bad_free(const char *what, const slot_t *s, const void *p, uintptr_t site) {
    hak_buf_t b;
    hak_buf_init(&b, 2);
    hak_buf_str(&b, "hakmem: ");
    hak_buf_str(&b, what);
    hak_buf_str(&b, " ");
    hak_buf_hex(&b, (uintptr_t)p);
    hak_buf_str(&b, " at ");
    put_site(&b, site);
    if (s) {
        hak_buf_str(&b, ": ");
        put_block(&b, s);
    }
    report_end(&b);
}

static slot_t *slot_of(const void *p) { return &slots[((uintptr_t)p - hak_guard_lo) / stride]; }

void hak_guard_free(void *p, uintptr_t site) {
    hak_lock(&guard_lock);
    slot_t *s = slot_of(p);
    if (s->state == SLOT_FREED && s->ptr == p) {
        hak_unlock(&guard_lock);
        bad_free("free(): double free of guarded block", s, p, site);
    }
    if (s->state != SLOT_LIVE || s->ptr != p) {
        hak_unlock(&guard_lock);
        bad_free("free(): invalid pointer into the guarded region", s->state == SLOT_UNUSED ? NULL : s, p, site);
    }
    char *end = (char *)hak_guard_lo + (size_t)(s - slots) * stride + HAK_GUARD_MAX;
    for (char *c = s->ptr + s->size; c < end; c++) {
        if ((unsigned char)*c != PATTERN) {
            hak_unlock(&guard_lock);
            bad_free("heap-buffer-overflow (found at free): the bytes after the end were written, block", s, p,
                     site);
        }
    }
    size_t len = (size_t)s->pages * page;
    hak_os_purge(end - len, len);  // freed pages read as zero when the slot is reused
    hak_os_protect(end - len, len, 0);
    s->state = SLOT_FREED;
    s->free_site = site;
    fifo[(fifo_head + fifo_count++) % nslots] = (uint32_t)(s - slots);
    hak_unlock(&guard_lock);
    HAK_STAT_INC(guard_free);
}

size_t hak_guard_usable(const void *p, const char *who) {
    const slot_t *s = slot_of(p);
    if (s->state != SLOT_LIVE || s->ptr != p) hak_die(who, p);
    return s->size;
}

void hak_guard_fork_prepare(void) { hak_lock(&guard_lock); }
void hak_guard_fork_parent(void) { hak_unlock(&guard_lock); }
void hak_guard_fork_child(void) { hak_lock_reset(&guard_lock); }
