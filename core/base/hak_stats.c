/* hak_stats.c -- per-thread counter blocks, their merge, and the report (text or JSON).
 * May call: write(2) through hak_fmt, hak_lock. Never allocates. */
#include "hak_stats.h"

#include <string.h>

#include "hak_atomic.h"
#include "hak_fmt.h"
#include "hak_lock.h"

__thread hak_stats_block_t hak_stats_tls HAK_TLS_MODEL;

static const char *const ctr_names[HAK_CTR_COUNT] = {
#define HAK_CTR(name, help) #name,
#include "hak_stats.def"
#undef HAK_CTR
};

static const char *const ctr_help[HAK_CTR_COUNT] = {
#define HAK_CTR(name, help) help,
#include "hak_stats.def"
#undef HAK_CTR
};

// Counters of threads that have exited, and the list of live threads' blocks.
static _Atomic uint64_t merged[HAK_CTR_COUNT];
static _Atomic uint64_t merged_sc_alloc[HAK_SC_MAX];
static _Atomic uint64_t merged_sc_refill[HAK_SC_MAX];
static hak_lock_t live_lock = HAK_LOCK_INIT;
static hak_stats_block_t *live_head;

void hak_stats_thread_register(hak_stats_fast_t *fast) {
    hak_stats_block_t *b = &hak_stats_tls;
    if (b->registered) return;
    hak_lock(&live_lock);
    b->fast = fast;
    b->next = live_head;
    live_head = b;
    b->registered = 1;
    hak_unlock(&live_lock);
}

// The fast counters belong to the thread cache: fold them into the block first.
static void fold_fast(hak_stats_block_t *b) {
    hak_stats_fast_t *f = b->fast;
    if (!f) return;
    b->c[HAK_CTR_free_tls_sll] += f->free_tls_sll;
    f->free_tls_sll = 0;
    for (unsigned i = 0; i < HAK_SC_MAX; i++) {
        b->sc_alloc[i] += f->sc_alloc[i];
        f->sc_alloc[i] = 0;
    }
}

static void fold_block(hak_stats_block_t *b) {
    fold_fast(b);
    for (unsigned i = 0; i < HAK_CTR_COUNT; i++) {
        // relaxed: a total, read only by reports
        hak_fetch_add_relaxed(&merged[i], b->c[i]);
        b->c[i] = 0;
    }
    for (unsigned i = 0; i < HAK_SC_MAX; i++) {
        hak_fetch_add_relaxed(&merged_sc_alloc[i], b->sc_alloc[i]);
        hak_fetch_add_relaxed(&merged_sc_refill[i], b->sc_refill[i]);
        b->sc_alloc[i] = 0;
        b->sc_refill[i] = 0;
    }
}

static void unlist(hak_stats_block_t *b) {
    for (hak_stats_block_t **pp = &live_head; *pp; pp = &(*pp)->next) {
        if (*pp == b) {
            *pp = b->next;
            break;
        }
    }
    b->registered = 0;
}

void hak_stats_add_global(unsigned ctr, uint64_t v) {
    // relaxed: a total, read only by reports
    if (ctr < HAK_CTR_COUNT) hak_fetch_add_relaxed(&merged[ctr], v);
}

void hak_stats_thread_merge(void) {
    hak_stats_block_t *b = &hak_stats_tls;
    hak_lock(&live_lock);
    fold_block(b);
    if (b->registered) unlist(b);
    hak_unlock(&live_lock);
}

// Other threads' blocks are read without synchronisation: a report is a snapshot that may
// be a few increments behind, and the words are aligned so no read is torn.
__attribute__((no_sanitize("thread"))) static uint64_t read_racy(const uint64_t *p) { return *p; }

// Snapshot of everything, summed once, so that the report is consistent with itself.
struct snapshot {
    uint64_t c[HAK_CTR_COUNT];
    uint64_t sc_alloc[HAK_SC_MAX];
    uint64_t sc_refill[HAK_SC_MAX];
};
typedef struct snapshot snapshot_t;

static void take_snapshot(struct snapshot *s);

uint64_t hak_stats_total(unsigned ctr) {
    if (ctr >= HAK_CTR_COUNT) return 0;
    if (ctr == HAK_CTR_alloc_tls_sll) {
        struct snapshot s;
        take_snapshot(&s);
        return s.c[ctr];
    }
    hak_lock(&live_lock);
    uint64_t v = hak_load_relaxed(&merged[ctr]);
    for (hak_stats_block_t *b = live_head; b; b = b->next) {
        v += read_racy(&b->c[ctr]);
        if (ctr == HAK_CTR_free_tls_sll && b->fast) v += read_racy(&b->fast->free_tls_sll);
    }
    // the calling thread may not be listed yet (it has not allocated)
    if (!hak_stats_tls.registered) v += hak_stats_tls.c[ctr];
    hak_unlock(&live_lock);
    return v;
}

uint64_t hak_stats_total_sc(int which, unsigned sc) {
    if (sc >= HAK_SC_MAX) return 0;
    hak_lock(&live_lock);
    uint64_t v = hak_load_relaxed(which ? &merged_sc_refill[sc] : &merged_sc_alloc[sc]);
    for (hak_stats_block_t *b = live_head; b; b = b->next) {
        v += read_racy(which ? &b->sc_refill[sc] : &b->sc_alloc[sc]);
        if (!which && b->fast) v += read_racy(&b->fast->sc_alloc[sc]);
    }
    if (!hak_stats_tls.registered) v += which ? hak_stats_tls.sc_refill[sc] : hak_stats_tls.sc_alloc[sc];
    hak_unlock(&live_lock);
    return v;
}

int hak_stats_index(const char *name) {
    for (unsigned i = 0; i < HAK_CTR_COUNT; i++)
        if (strcmp(ctr_names[i], name) == 0) return (int)i;
    return -1;
}

void hak_stats_fork_prepare(void) { hak_lock(&live_lock); }
void hak_stats_fork_parent(void) { hak_unlock(&live_lock); }

void hak_stats_fork_child(void) {
    // Only the forking thread exists in the child: fold every other block in and unlist it.
    hak_stats_block_t *b = live_head;
    while (b) {
        hak_stats_block_t *next = b->next;
        if (b != &hak_stats_tls) {
            fold_block(b);
            b->registered = 0;
        }
        b = next;
    }
    live_head = NULL;
    if (hak_stats_tls.registered) {
        hak_stats_tls.next = NULL;
        live_head = &hak_stats_tls;
    }
    hak_lock_reset(&live_lock);
}



static void take_snapshot(snapshot_t *s) {
    hak_lock(&live_lock);
    for (unsigned i = 0; i < HAK_CTR_COUNT; i++) s->c[i] = hak_load_relaxed(&merged[i]);
    for (unsigned i = 0; i < HAK_SC_MAX; i++) {
        s->sc_alloc[i] = hak_load_relaxed(&merged_sc_alloc[i]);
        s->sc_refill[i] = hak_load_relaxed(&merged_sc_refill[i]);
    }
    int self_listed = 0;
    for (hak_stats_block_t *b = live_head; b; b = b->next) {
        if (b == &hak_stats_tls) self_listed = 1;
        for (unsigned i = 0; i < HAK_CTR_COUNT; i++) s->c[i] += read_racy(&b->c[i]);
        for (unsigned i = 0; i < HAK_SC_MAX; i++) {
            s->sc_alloc[i] += read_racy(&b->sc_alloc[i]);
            s->sc_refill[i] += read_racy(&b->sc_refill[i]);
        }
        if (b->fast) {
            s->c[HAK_CTR_free_tls_sll] += read_racy(&b->fast->free_tls_sll);
            for (unsigned i = 0; i < HAK_SC_MAX; i++) s->sc_alloc[i] += read_racy(&b->fast->sc_alloc[i]);
        }
    }
    if (!self_listed) {
        for (unsigned i = 0; i < HAK_CTR_COUNT; i++) s->c[i] += hak_stats_tls.c[i];
        for (unsigned i = 0; i < HAK_SC_MAX; i++) {
            s->sc_alloc[i] += hak_stats_tls.sc_alloc[i];
            s->sc_refill[i] += hak_stats_tls.sc_refill[i];
        }
    }
    hak_unlock(&live_lock);
    // Derived: the fast path counts only per-class mallocs (one increment), so pops that
    // needed no refill are the total minus those served by a refill. (Global-heap pops
    // are not in sc_alloc; they are global_heap_alloc.)
    uint64_t total = 0;
    for (unsigned i = 0; i < HAK_SC_MAX; i++) total += s->sc_alloc[i];
    uint64_t slow = s->c[HAK_CTR_alloc_refill];
    s->c[HAK_CTR_alloc_tls_sll] = total > slow ? total - slow : 0;
}

static void report_text(hak_buf_t *b, const snapshot_t *s) {
    hak_buf_str(b, "hakmem: counters (HAKMEM_DEBUG=1; docs/COUNTERS.md)\n");
    static const struct {
        const char *title;
        const char *prefix;
    } groups[] = {{"allocation", "alloc_"}, {"free pipeline", "free_"}, {"refill stages", "refill_"},
                  {"slabs and SuperSlabs", "slab_"}, {"", "ss_"}, {"large path", "large_"},
                  {"API", "aligned_"}, {"", "realloc_"}, {"", "global_"}, {"threads", "thread_"},
                  {"OS", "os_"}};
    for (unsigned g = 0; g < sizeof groups / sizeof groups[0]; g++) {
        size_t plen = strlen(groups[g].prefix);
        if (groups[g].title[0]) {
            hak_buf_str(b, "  [");
            hak_buf_str(b, groups[g].title);
            hak_buf_str(b, "]\n");
        }
        for (unsigned i = 0; i < HAK_CTR_COUNT; i++) {
            if (strncmp(ctr_names[i], groups[g].prefix, plen) != 0) continue;
            hak_buf_str(b, "    ");
            hak_buf_pad(b, ctr_names[i], 24);
            hak_buf_u64w(b, s->c[i], 14);
            hak_buf_str(b, "  ");
            hak_buf_str(b, ctr_help[i]);
            hak_buf_str(b, "\n");
        }
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
        hak_buf_str(b, ctr_names[i]);
        hak_buf_str(b, "\":");
        hak_buf_u64(b, s->c[i]);
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
    hak_buf_str(b, "]}}\n");
}

void hak_stats_report(int fd, int json) {
    snapshot_t s;
    take_snapshot(&s);
    hak_buf_t b;
    hak_buf_init(&b, fd);
    if (json) report_json(&b, &s);
    else report_text(&b, &s);
    hak_buf_flush(&b);
}
