/* hak_stats.c -- counter blocks, process totals, and the report (text or JSON).
 * May call: write(2) through hak_fmt, getrusage(2), mmap(2) for the report's buffer,
 * hak_lock. Never allocates from the heap. */
#include "hak_stats.h"

#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include "hak_atomic.h"
#include "hak_fmt.h"
#include "hak_lock.h"

__thread hak_stats_block_t *hak_stats_cur HAK_TLS_MODEL;
__thread hak_stats_fast_t *hak_stats_fast_cur HAK_TLS_MODEL;

// Values the kernel keeps, read when asked: the process's page faults so far (every thread,
// the program's own included). Reported after the counters as levels, not counts; their
// indexes follow the counters', so hak_stat() knows them too.
enum { PROC_MINFLT = HAK_CTR_COUNT, PROC_MAJFLT, PROC_END };

// Every name and help text in one struct of char arrays, found by offset: read-only data
// with nothing for the loader to relocate (arrays of pointers were two relocations per
// counter, and a page written at every program start).
#define HAK_PROC_TEXT(X)                                                                  \
    X(os_minflt, "minor page faults of the process so far (getrusage; a level, not a count)") \
    X(os_majflt, "major page faults of the process so far (getrusage; a level, not a count)")
static const struct ctr_text {
#define HAK_CTR(name, help) char name##_n[sizeof #name], name##_h[sizeof help];
#include "hak_stats.def"
    HAK_PROC_TEXT(HAK_CTR)
#undef HAK_CTR
} ctr_text = {
#define HAK_CTR(name, help) #name, help,
#include "hak_stats.def"
    HAK_PROC_TEXT(HAK_CTR)
#undef HAK_CTR
};
static const uint16_t ctr_name_off[PROC_END] = {
#define HAK_CTR(name, help) offsetof(struct ctr_text, name##_n),
#include "hak_stats.def"
    HAK_PROC_TEXT(HAK_CTR)
#undef HAK_CTR
};
static const uint16_t ctr_help_off[PROC_END] = {
#define HAK_CTR(name, help) offsetof(struct ctr_text, name##_h),
#include "hak_stats.def"
    HAK_PROC_TEXT(HAK_CTR)
#undef HAK_CTR
};
_Static_assert(sizeof(struct ctr_text) <= UINT16_MAX, "counter texts outgrew their offsets");

static const char *ctr_name(unsigned i) { return (const char *)&ctr_text + ctr_name_off[i]; }
static const char *ctr_help(unsigned i) { return (const char *)&ctr_text + ctr_help_off[i]; }

// Counts of threads without a heap, and the list of every heap's block.
static _Atomic uint64_t merged[HAK_CTR_COUNT];
static hak_lock_t list_lock = HAK_LOCK_INIT;
static hak_stats_block_t *list_head;

void hak_stats_register(hak_stats_block_t *b) {
    hak_lock(&list_lock);
    b->next = list_head;
    list_head = b;
    hak_unlock(&list_lock);
}

void hak_stats_add_global(unsigned ctr, uint64_t v) {
    // relaxed: a total, read only by reports
    if (ctr < HAK_CTR_COUNT) hak_fetch_add_relaxed(&merged[ctr], v);
}

void hak_stats_fold_sc(hak_stats_fast_t *f, hak_stats_block_t *b, unsigned sc) {
    b->c[HAK_CTR_free_tls_sll] += f->free_tls_sll;
    f->free_tls_sll = 0;
    b->sc_alloc[sc] += f->sc_alloc[sc];
    f->sc_alloc[sc] = 0;
}

void hak_stats_fold(hak_stats_fast_t *f, hak_stats_block_t *b) {
    for (unsigned sc = 0; sc < HAK_SC_MAX; sc++) hak_stats_fold_sc(f, b, sc);
}

// Blocks are written by their heap's owner without synchronisation: a report is a snapshot
// that may be a few increments behind; the words are aligned, so no read is torn.
// noipa: inlined, or with its load hoisted into the caller by IPA-SRA (GCC 12 makes a
// read_racy.isra clone), the read would land in an instrumented function after all.
__attribute__((noipa, no_sanitize("thread"))) static uint64_t read_racy(const uint64_t *p) { return *p; }

typedef struct snapshot {
    uint64_t c[HAK_CTR_COUNT];
    uint64_t sc_alloc[HAK_SC_MAX];
    uint64_t sc_refill[HAK_SC_MAX];
} snapshot_t;

// Everything summed once, so that a report is consistent with itself.
static void take_snapshot(snapshot_t *s) {
    for (unsigned i = 0; i < HAK_CTR_COUNT; i++) s->c[i] = hak_load_relaxed(&merged[i]);
    for (unsigned i = 0; i < HAK_SC_MAX; i++) s->sc_alloc[i] = s->sc_refill[i] = 0;
    hak_lock(&list_lock);
    for (hak_stats_block_t *b = list_head; b; b = b->next) {
        for (unsigned i = 0; i < HAK_CTR_COUNT; i++) s->c[i] += read_racy(&b->c[i]);
        for (unsigned i = 0; i < HAK_SC_MAX; i++) {
            s->sc_alloc[i] += read_racy(&b->sc_alloc[i]);
            s->sc_refill[i] += read_racy(&b->sc_refill[i]);
        }
    }
    hak_unlock(&list_lock);
    // The calling thread's counts not folded yet; other threads fold theirs on slow paths
    // and at exit, so a report may miss a running thread's latest fast-path counts.
    hak_stats_fast_t *f = hak_stats_fast_cur;
    if (f) {
        s->c[HAK_CTR_free_tls_sll] += f->free_tls_sll;
        for (unsigned i = 0; i < HAK_SC_MAX; i++) s->sc_alloc[i] += f->sc_alloc[i];
    }
    // Derived: the malloc fast path counts only per-class mallocs (one increment), so pops
    // that needed no refill are the total minus those a refill served. (Global-heap pops
    // are not in sc_alloc: they are global_heap_alloc.)
    uint64_t total = 0;
    for (unsigned i = 0; i < HAK_SC_MAX; i++) total += s->sc_alloc[i];
    uint64_t slow = s->c[HAK_CTR_alloc_refill];
    s->c[HAK_CTR_alloc_tls_sll] = total > slow ? total - slow : 0;
}

static void proc_values(uint64_t v[PROC_END - HAK_CTR_COUNT]) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) ru.ru_minflt = ru.ru_majflt = 0;
    v[PROC_MINFLT - HAK_CTR_COUNT] = (uint64_t)ru.ru_minflt;
    v[PROC_MAJFLT - HAK_CTR_COUNT] = (uint64_t)ru.ru_majflt;
}

uint64_t hak_stats_total(unsigned ctr) {
    if (ctr >= HAK_CTR_COUNT && ctr < PROC_END) {
        uint64_t v[PROC_END - HAK_CTR_COUNT];
        proc_values(v);
        return v[ctr - HAK_CTR_COUNT];
    }
    if (ctr >= HAK_CTR_COUNT) return 0;
    snapshot_t s;
    take_snapshot(&s);
    return s.c[ctr];
}

uint64_t hak_stats_total_sc(int which, unsigned sc) {
    if (sc >= HAK_SC_MAX) return 0;
    snapshot_t s;
    take_snapshot(&s);
    return which ? s.sc_refill[sc] : s.sc_alloc[sc];
}

int hak_stats_index(const char *name) {
    for (unsigned i = 0; i < PROC_END; i++)
        if (strcmp(ctr_name(i), name) == 0) return (int)i;
    return -1;
}

void hak_stats_fork_prepare(void) { hak_lock(&list_lock); }
void hak_stats_fork_parent(void) { hak_unlock(&list_lock); }
void hak_stats_fork_child(void) { hak_lock_reset(&list_lock); }

static void report_text(hak_buf_t *b, const snapshot_t *s) {
    hak_buf_str(b, "hakmem: counters (HAKMEM_DEBUG=1; docs/COUNTERS.md)\n");
    static const struct {  // char arrays, not pointers: no relocations (see ctr_text)
        char title[32];  // the longest, "learning (HAKMEM_LEARN)", takes 24 with its NUL
        char prefix[10];
    } groups[] = {{"allocation", "alloc_"}, {"free pipeline", "free_"}, {"refill stages", "refill_"},
                  {"slabs and SuperSlabs", "slab_"}, {"", "ss_"}, {"large path", "large_"}, {"BigCache", "bigcache_"},
                  {"learning (HAKMEM_LEARN)", "learn_"},
                  {"API", "aligned_"}, {"", "realloc_"}, {"", "global_"}, {"threads", "thread_"},
                  {"guarded blocks", "guard_"}, {"purge thread and trim", "purge_"}, {"", "trim_"}, {"OS", "os_"}, {"", "thp_"}};
    for (unsigned g = 0; g < sizeof groups / sizeof groups[0]; g++) {
        size_t plen = strlen(groups[g].prefix);
        if (groups[g].title[0]) {
            hak_buf_str(b, "  [");
            hak_buf_str(b, groups[g].title);
            hak_buf_str(b, "]\n");
        }
        for (unsigned i = 0; i < HAK_CTR_COUNT; i++) {
            if (strncmp(ctr_name(i), groups[g].prefix, plen) != 0) continue;
            hak_buf_str(b, "    ");
            hak_buf_pad(b, ctr_name(i), 24);
            hak_buf_u64w(b, s->c[i], 14);
            hak_buf_str(b, "  ");
            hak_buf_str(b, ctr_help(i));
            hak_buf_str(b, "\n");
        }
    }
    uint64_t proc[PROC_END - HAK_CTR_COUNT];
    proc_values(proc);
    for (unsigned i = 0; i < PROC_END - HAK_CTR_COUNT; i++) {
        hak_buf_str(b, "    ");
        hak_buf_pad(b, ctr_name(HAK_CTR_COUNT + i), 24);
        hak_buf_u64w(b, proc[i], 14);
        hak_buf_str(b, "  ");
        hak_buf_str(b, ctr_help(HAK_CTR_COUNT + i));
        hak_buf_str(b, "\n");
    }
    hak_buf_str(b, "  [size classes]  class     size        mallocs     refills\n");
    for (unsigned sc = 0; sc < HAK_SC_MAX; sc++) {
        if (!s->sc_alloc[sc] && !s->sc_refill[sc]) continue;
        hak_buf_str(b, "                  ");
        hak_buf_u64w(b, sc, 5);
        hak_buf_u64w(b, hak_sc_size_table[sc], 9);
        hak_buf_u64w(b, s->sc_alloc[sc], 15);
        hak_buf_u64w(b, s->sc_refill[sc], 12);
        hak_buf_str(b, "\n");
    }
}

static void report_json(hak_buf_t *b, const snapshot_t *s) {
    hak_buf_str(b, "{\"hakmem\":{\"counters\":{");
    for (unsigned i = 0; i < HAK_CTR_COUNT; i++) {
        if (i) hak_buf_str(b, ",");
        hak_buf_str(b, "\"");
        hak_buf_str(b, ctr_name(i));
        hak_buf_str(b, "\":");
        hak_buf_u64(b, s->c[i]);
    }
    uint64_t proc[PROC_END - HAK_CTR_COUNT];
    proc_values(proc);
    for (unsigned i = 0; i < PROC_END - HAK_CTR_COUNT; i++) {
        hak_buf_str(b, ",\"");
        hak_buf_str(b, ctr_name(HAK_CTR_COUNT + i));
        hak_buf_str(b, "\":");
        hak_buf_u64(b, proc[i]);
    }
    hak_buf_str(b, "},\"size_classes\":[");
    int first = 1;
    for (unsigned sc = 0; sc < HAK_SC_MAX; sc++) {
        if (!s->sc_alloc[sc] && !s->sc_refill[sc]) continue;
        if (!first) hak_buf_str(b, ",");
        first = 0;
        hak_buf_str(b, "{\"class\":");
        hak_buf_u64(b, sc);
        hak_buf_str(b, ",\"size\":");
        hak_buf_u64(b, hak_sc_size_table[sc]);
        hak_buf_str(b, ",\"mallocs\":");
        hak_buf_u64(b, s->sc_alloc[sc]);
        hak_buf_str(b, ",\"refills\":");
        hak_buf_u64(b, s->sc_refill[sc]);
        hak_buf_str(b, "}");
    }
    hak_buf_str(b, "]");
}

void hak_stats_report(int fd, int json, hak_stats_extra_fn extra) {
    snapshot_t s;
    take_snapshot(&s);
    // The whole report is built in one buffer and written at once when it fits (it does,
    // by far): the JSON report is one line, and processes exiting together (nginx's workers)
    // must not cut each other's lines. The buffer is mapped for the report, not kept in
    // .bss: as a static array it sat between globals that every process writes, and cost
    // Nginx's processes a page each. Where the map fails, a small stack buffer is used,
    // written a few lines at a time.
    enum { BIG = 64 << 10 };
    char *big = mmap(NULL, BIG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (big == MAP_FAILED) big = NULL;
    hak_buf_t b;
    if (big) hak_buf_init_ext(&b, fd, big, BIG);
    else hak_buf_init(&b, fd);
    if (json) report_json(&b, &s);
    else report_text(&b, &s);
    if (extra) {
        if (json) hak_buf_str(&b, ",");
        extra(&b, json);
    }
    if (json) hak_buf_str(&b, "}}\n");
    hak_buf_flush(&b);
    if (big) munmap(big, BIG);
}
