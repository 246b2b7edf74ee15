/* api_death.c -- heap misuse that hakmem detects must abort with one line on stderr,
 * "hakmem: <what> 0x<pointer>". Each case forks a child that does the bad thing with its
 * stderr on a pipe; the parent checks that the child died of SIGABRT and what it printed.
 * Blocks are allocated in the parent before the fork, so the parent knows the pointer the
 * message must name.
 *
 * What hakmem promises for double frees of SuperSlab blocks: a block freed twice in a row
 * by the same thread is always caught (the second free finds the free mark in the block
 * and the block in this thread's cache). Also checked here, and caught by the same
 * mechanism: a double free with other frees in between (A, B, A), a double free after the
 * first free was flushed from the thread cache to its slab (the slab free list, or the slab
 * itself given back), and a second free by a thread that does not own the block (the free
 * mark in a foreign block is proof enough), and the owner freeing a block that another
 * thread already freed while it still waits in the owner's remote queue
 * (double_free_after_remote_free: missed up to f418bef, where the block was then handed out
 * twice). Not checked: a double free with a reallocation in between (a valid free of the
 * new block, docs/DESIGN-NOTES.md).
 *
 * Interior pointers: into a live block of the calling thread's own slab (free_interior_small
 * and _mid: missed by the fast path up to f418bef), of another thread's block, of a large
 * block, into a free slab, and addresses outside every region. */
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_util.h"

typedef void (*bad_fn)(void *arg);

/* Run fn(arg) in a child; it must die of SIGABRT printing exactly one line
 * "hakmem: <what> 0x<hex of expect>\n" on stderr. */
static void expect_abort(const char *name, bad_fn fn, void *arg, const void *expect) {
    char out[4096];
    int status = run_in_child(fn, arg, out, sizeof out);
    size_t len = strlen(out);
    char hex[32];
    snprintf(hex, sizeof hex, "0x%" PRIxPTR, (uintptr_t)expect);
    printf("   %s: child stderr: %s", name, len ? out : "(nothing)\n");
    if (WIFEXITED(status))
        CHECK(0, "%s: the child exited with status %d instead of aborting (misuse not detected)", name,
              WEXITSTATUS(status));
    CHECK(WIFSIGNALED(status), "%s: child status 0x%x", name, status);
    CHECK(WTERMSIG(status) == SIGABRT, "%s: the child died of signal %d (%s), expected SIGABRT", name,
          WTERMSIG(status), strsignal(WTERMSIG(status)));
    CHECK(strncmp(out, "hakmem: ", 8) == 0, "%s: stderr does not start with \"hakmem: \": %s", name, out);
    char *nl = strchr(out, '\n');
    CHECK(nl != NULL && nl[1] == 0, "%s: stderr is not exactly one line: %s", name, out);
    size_t hl = strlen(hex);
    CHECK((size_t)(nl - out) > hl + 8 && nl[-(ptrdiff_t)hl - 1] == ' ' && strncmp(nl - hl, hex, hl) == 0,
          "%s: the line does not end with the pointer %s: %s", name, hex, out);
}

/* ---- the misuses -------------------------------------------------------------------- */

static void do_double_free(void *p) {
    hak_free(p);
    hak_free(p);
}

static void *g_other;
static void do_double_free_interleaved(void *p) {
    hak_free(p);
    hak_free(g_other);
    hak_free(p);
}

enum { FLUSH_N = 2000 };
static void *g_many[FLUSH_N];
static void do_double_free_flushed(void *p) {
    for (int i = 0; i < FLUSH_N; i++) hak_free(g_many[i]);
    hak_free(p);  // p is one of g_many
}

static void *free_twice_thread(void *p) {
    hak_free(p);
    hak_free(p);
    return NULL;
}
static void do_double_free_foreign_thread(void *p) {
    pthread_t t;
    if (pthread_create(&t, NULL, free_twice_thread, p) != 0) _exit(3);
    pthread_join(t, NULL);
}

static void do_free(void *p) { hak_free(p); }
static void do_double_free_purged_one(void *p) { hak_free(p); }
static void do_realloc_purged(void *p) { (void)hak_realloc(p, 100); }

static void *free_once_thread(void *p) {
    hak_free(p);
    return NULL;
}
/* Another thread frees p (it goes to the owner's remote queue), then the owner frees it. */
static void do_free_remote_then_local(void *p) {
    pthread_t t;
    if (pthread_create(&t, NULL, free_once_thread, p) != 0) _exit(3);
    pthread_join(t, NULL);
    hak_free(p);
}

/* Another thread frees p; the owner's trim drains its remote queue. */
static void do_free_remote_then_trim(void *p) {
    pthread_t t;
    if (pthread_create(&t, NULL, free_once_thread, p) != 0) _exit(3);
    pthread_join(t, NULL);
    hak_trim(0);
}

static void do_free_in_thread(void *p) {
    pthread_t t;
    if (pthread_create(&t, NULL, free_once_thread, p) != 0) _exit(3);
    pthread_join(t, NULL);
}

static void do_realloc_freed(void *p) {
    hak_free(p);
    void *q = hak_realloc(p, 200);
    (void)q;
}

static void do_realloc_freed_grow(void *p) {
    hak_free(p);
    void *q = hak_realloc(p, 5 * MiB);
    (void)q;
}

static void do_realloc_foreign(void *p) {
    void *q = hak_realloc(p, 100);
    (void)q;
}

static void do_usable_size(void *p) {
    volatile size_t u = hak_usable_size(p);
    (void)u;
}

static void do_free_sized_too_big(void *p) { hak_free_sized(p, hak_usable_size(p) + 1); }

/* ---- cases -------------------------------------------------------------------------- */

static void t_double_free_small(void) {
    void *p = hak_malloc(64);
    CHECK(p != NULL, "malloc");
    expect_abort("double free of a 64-byte block", do_double_free, p, p);
    void *q = hak_malloc(16);
    expect_abort("double free of a 16-byte block", do_double_free, q, q);
    hak_free(p);
    hak_free(q);
}

static void t_double_free_interleaved(void) {
    void *p = hak_malloc(200), *o = hak_malloc(200);
    CHECK(p && o, "malloc");
    g_other = o;
    expect_abort("free(A), free(B), free(A)", do_double_free_interleaved, p, p);
    hak_free(p);
    hak_free(o);
}

static void t_double_free_flushed(void) {
    for (int i = 0; i < FLUSH_N; i++) {
        g_many[i] = hak_malloc(64);
        CHECK(g_many[i] != NULL, "malloc");
    }
    // 2000 frees overflow the thread cache (a few hundred blocks of this class) several
    // times; each flush moves the most recently freed blocks out to their slab, so the
    // 201st freed ends up on its slab's free list (or, if its span emptied, in a free slab)
    void *victim = g_many[200];
    expect_abort("double free after a flush to the slab", do_double_free_flushed, victim, victim);
    for (int i = 0; i < FLUSH_N; i++) hak_free(g_many[i]);
}

static void t_double_free_foreign_thread(void) {
    void *p = hak_malloc(100);
    CHECK(p != NULL, "malloc");
    expect_abort("double free by a thread that does not own the block", do_double_free_foreign_thread, p, p);
    hak_free(p);
}

static void t_double_free_after_remote_free(void) {
    void *p = hak_malloc(100);
    CHECK(p != NULL, "malloc");
    expect_abort("free by another thread, then by the owner", do_free_remote_then_local, p, p);
    void *m = hak_malloc(20000);
    CHECK(m != NULL, "malloc");
    expect_abort("free of a mid block by another thread, then by the owner", do_free_remote_then_local, m, m);
    hak_free(p);
    hak_free(m);
}

static void t_double_free_mid(void) {
    void *p = hak_malloc(100 * KiB);
    CHECK(p != NULL, "malloc");
    expect_abort("double free of a 100 KiB block", do_double_free, p, p);
    void *q = hak_malloc(MiB);
    CHECK(q != NULL, "malloc");
    expect_abort("double free of a 1 MiB block", do_double_free, q, q);
    hak_free(p);
    hak_free(q);
}

/* A free 20 KiB block that trim purged whole reads as zeros: no free mark, no link. Its span
 * sends every free to the slow path while it holds such blocks, which checks the purged
 * mask (the owner's free), as the drain does (another thread's free, through the queue). */
static void t_double_free_purged(void) {
    enum { N = 6 };
    void *p[N];
    for (int i = 0; i < N; i++) {
        p[i] = hak_malloc(20 * KiB);
        CHECK(p[i] != NULL, "malloc");
        memset(p[i], 0x5a, 20 * KiB);
    }
    for (int i = 1; i < N; i++) hak_free(p[i]);
    hak_trim(0);  // p[1..] purged whole; p[0] keeps the span
    CHECK(((unsigned char *)p[3])[20 * KiB - 1] == 0, "block 3 was not purged (test premise)");
    expect_abort("double free of a purged block", do_double_free_purged_one, p[3], p[3]);
    expect_abort("double free of a purged block by another thread", do_free_remote_then_trim, p[4], p[4]);
    expect_abort("realloc of a purged block", do_realloc_purged, p[5], p[5]);
    // The same frees of live blocks in such a span are fine (slow path, no report).
    void *q = hak_malloc(20 * KiB);
    CHECK(q != NULL, "malloc");
    hak_free(q);
    hak_free(p[0]);
}

static void t_double_free_large(void) {
    void *p = hak_malloc(3 * MiB);
    CHECK(p != NULL, "malloc");
    expect_abort("double free of a 3 MiB block", do_double_free, p, p);
    void *q = hak_aligned_alloc(8 * MiB, MiB + 1);
    CHECK(q != NULL, "aligned_alloc");
    expect_abort("double free of an 8 MiB-aligned block", do_double_free, q, q);
    hak_free(p);
    hak_free(q);
}

/* A freed large block waits in the BigCache, still mapped and registered but marked free:
 * freeing it again, reallocating it or asking its size must still abort. The parent frees
 * it, so the child inherits it cached and misuses it from there. */
static void t_double_free_cached(void) {
    hak_info_t before, after;
    hak_info(&before);
    void *p = hak_malloc(3 * MiB);
    CHECK(p != NULL, "malloc");
    memset(p, 1, 4096);
    hak_free(p);
    hak_info(&after);
    if (after.large_cached_bytes == before.large_cached_bytes) {
        printf("   the BigCache did not keep the block (HAKMEM_BIGCACHE_MAX=0?): nothing to check\n");
        exit(TEST_SKIP);
    }
    expect_abort("double free of a 3 MiB block in the BigCache", do_free, p, p);
    expect_abort("realloc of a 3 MiB block in the BigCache", do_realloc_foreign, p, p);
    expect_abort("usable_size of a 3 MiB block in the BigCache", do_usable_size, p, p);
    void *q = hak_malloc(3 * MiB);  // the cached block again: live, and freeable once
    CHECK(q == p, "malloc(3 MiB) did not reuse the cached block (%p, cached %p)", q, p);
    hak_free(q);
}

static void t_free_stack(void) {
    char local[64];
    memset(local, 1, sizeof local);
    expect_abort("free of a stack address", do_free, local + 16, local + 16);
    int x = 5;
    expect_abort("free of a stack int", do_free, &x, &x);
}

static void t_free_system_malloc(void) {
    void *small = malloc(64);            // libc's allocator: this test links hakmem_api only
    void *big = malloc(4 * MiB);         // glibc serves this one with its own mmap
    CHECK(small && big, "system malloc");
    memset(small, 0, 64);
    memset(big, 0, 4096);
    expect_abort("free of a system malloc block", do_free, small, small);
    expect_abort("free of a big system malloc block", do_free, big, big);
    expect_abort("realloc of a system malloc block", do_realloc_foreign, small, small);
    free(small);
    free(big);
}

static void t_free_interior_small(void) {
    char *p = hak_malloc(64);
    CHECK(p != NULL, "malloc");
    memset(p, 0, 64);
    expect_abort("free(p + 16) of a 64-byte block", do_free, p + 16, p + 16);
    hak_free(p);
}

/* The unused tail of a slab whose size the class does not divide: 65520 = 1365 * 48 is a
 * multiple of the class size but past the last block (capacity 1365). */
static void t_free_slab_tail(void) {
    char *p = hak_malloc(48);
    CHECK(p != NULL && hak_usable_size(p) == 48, "malloc(48) in the 48-byte class");
    char *tail = (char *)((uintptr_t)p & ~(uintptr_t)0xffff) + 65520;
    expect_abort("free of the tail past the last block of a 48-byte slab", do_free, tail, tail);
    hak_free(p);
}

static void t_free_interior_mid(void) {
    char *m = hak_malloc(100 * KiB);
    CHECK(m != NULL, "malloc");
    memset(m, 0, 100 * KiB);
    expect_abort("free(p + 4096) of a 100 KiB block", do_free, m + 4096, m + 4096);
    hak_free(m);
}

/* An interior pointer freed by a thread that does not own the block: the remote path
 * checks the block start (documented as reported). */
static void t_free_interior_foreign_thread(void) {
    char *p = hak_malloc(64);
    CHECK(p != NULL, "malloc");
    memset(p, 0, 64);
    expect_abort("free(p + 16) of a 64-byte block by another thread", do_free_in_thread, p + 16, p + 16);
    char *m = hak_malloc(100 * KiB);
    CHECK(m != NULL, "malloc");
    memset(m, 0, 100 * KiB);
    expect_abort("free(p + 4096) of a 100 KiB block by another thread", do_free_in_thread, m + 4096, m + 4096);
    hak_free(p);
    hak_free(m);
}

static void t_free_interior_large(void) {
    char *l = hak_malloc(3 * MiB);
    CHECK(l != NULL, "malloc");
    expect_abort("free(p + 4096) of a 3 MiB block", do_free, l + 4096, l + 4096);
    expect_abort("free(p + 2 MiB) of a 3 MiB block", do_free, l + 2 * MiB, l + 2 * MiB);
    hak_free(l);
}

/* A pointer into a slab that holds no span: nothing was ever allocated there. This case
 * runs in its own process and its first hakmem allocation is one 16-byte block, so the
 * SuperSlab holding it has a span only in its first slab(s); slab 20 is free. */
static void t_free_into_free_slab(void) {
    char *p = hak_malloc(16);
    CHECK(p != NULL, "malloc");
    char *base = (char *)((uintptr_t)p & ~((uintptr_t)2 * MiB - 1));
    CHECK(p < base + 64 * KiB, "the first 16-byte block %p is not in its SuperSlab's first slab", (void *)p);
    char *target = base + 20 * 64 * KiB + 4096;
    expect_abort("free of an address in a free slab", do_free, target, target);
    expect_abort("realloc of an address in a free slab", do_realloc_foreign, target, target);
    hak_free(p);
}

static void t_free_bad_address(void) {
    // above the user address space (and never mapped): rejected without being touched
    void *high = (void *)(uintptr_t)0xffff800000001000ull;
    expect_abort("free of a kernel-half address", do_free, high, high);
    void *top = (void *)(UINTPTR_MAX & ~(uintptr_t)15);
    expect_abort("free of the top of the address space", do_free, top, top);
    expect_abort("usable_size of a kernel-half address", do_usable_size, high, high);
}

static void t_realloc_interior(void) {
    char *p = hak_malloc(64);
    CHECK(p != NULL, "malloc");
    memset(p, 0, 64);
    expect_abort("realloc(p + 16) of a 64-byte block", do_realloc_foreign, p + 16, p + 16);
    char *l = hak_malloc(3 * MiB);
    CHECK(l != NULL, "malloc");
    expect_abort("realloc(p + 4096) of a 3 MiB block", do_realloc_foreign, l + 4096, l + 4096);
    hak_free(p);
    hak_free(l);
}

static void t_realloc_freed(void) {
    void *p = hak_malloc(100);
    CHECK(p != NULL, "malloc");
    expect_abort("realloc of a freed 100-byte block", do_realloc_freed, p, p);
    void *m = hak_malloc(50 * KiB);
    CHECK(m != NULL, "malloc");
    expect_abort("realloc of a freed 50 KiB block", do_realloc_freed, m, m);
    void *l = hak_malloc(3 * MiB);
    CHECK(l != NULL, "malloc");
    expect_abort("realloc of a freed 3 MiB block", do_realloc_freed_grow, l, l);
    hak_free(p);
    hak_free(m);
    hak_free(l);
}

static void t_usable_size_invalid(void) {
    int x = 0;
    expect_abort("usable_size of a stack address", do_usable_size, &x, &x);
    char *p = hak_malloc(64);
    CHECK(p != NULL, "malloc");
    expect_abort("usable_size of an interior pointer", do_usable_size, p + 16, p + 16);
    hak_free(p);
}

static void t_free_sized_too_big(void) {
    void *p = hak_malloc(100);
    CHECK(p != NULL, "malloc");
    expect_abort("free_sized with a size above the block's", do_free_sized_too_big, p, p);
    hak_free(p);
}

/* ---- free-list hardening (HAKMEM_HARDEN, docs/BAD-INPUTS.md) ------------------------ */

#ifndef TEST_HARDEN
#define TEST_HARDEN 1
#endif
#ifndef TEST_HARDEN_CHECK
#define TEST_HARDEN_CHECK 1
#endif
#define NEED(opt)                                                                                  \
    do {                                                                                           \
        if (!TEST_##opt) {                                                                         \
            printf("   built with -DHAKMEM_" #opt "=OFF: nothing to check\n");                     \
            exit(TEST_SKIP);                                                                       \
        }                                                                                          \
    } while (0)

// A write into a freed block (use after free): the next malloc of its class pops it, finds
// the free mark gone, and stops.
static void do_uaf_write(void *p) {
    hak_free(p);
    memset(p, 'A', 16);
    (void)hak_malloc(48);
}
static void t_uaf_write_small(void) {
    NEED(HARDEN_CHECK);
    void *p = hak_malloc(48);
    CHECK(p != NULL, "malloc");
    expect_abort("a write to a freed block, then malloc", do_uaf_write, p, p);
    hak_free(p);
}

// A linear overflow from a live block into the free block after it.
static void *g_next;
static size_t g_stride;
static void do_overflow_into_free(void *a) {
    hak_free(g_next);
    memset(a, 'B', g_stride + 16);  // the whole block and the neighbour's link and mark
    (void)hak_malloc(208);
}
static void t_overflow_into_free(void) {
    NEED(HARDEN_CHECK);
    enum { N = 64 };
    char *b[N];
    for (int i = 0; i < N; i++) b[i] = hak_malloc(208);
    char *a = NULL;
    g_stride = hak_usable_size(b[0]);  // the class size: blocks of a span are this far apart
    for (int i = 0; i < N && !a; i++)
        for (int j = 0; j < N; j++)
            if (b[j] == b[i] + g_stride) {
                a = b[i];
                g_next = b[j];
                break;
            }
    CHECK(a != NULL, "no two adjacent 208-byte blocks among %d", N);
    expect_abort("an overflow into the next (free) block, then malloc", do_overflow_into_free, a, g_next);
    for (int i = 0; i < N; i++) hak_free(b[i]);
}

// An attacker who can write a freed block and read its mark (but not the link key) plants
// a fake free block: without the key the link decodes to a wild address, and malloc must
// never return the fake block.
static void *g_fake[4] __attribute__((aligned(16)));
static void do_forged_link(void *p) {
    hak_free(p);
    g_fake[1] = ((void **)p)[1];  // a valid-looking free mark
    ((void **)p)[0] = g_fake;     // the plain address as the link
    void *x = hak_malloc(80);
    void *y = hak_malloc(80);
    if (x == (void *)g_fake || y == (void *)g_fake) _exit(3);
    _exit(4);  // the wild link was followed without a fault: the test fails on this too
}
static void t_forged_link(void) {
    NEED(HARDEN);
    void *p = hak_malloc(80);
    CHECK(p != NULL, "malloc");
    char out[4096];
    int status = run_in_child(do_forged_link, p, out, sizeof out);
    printf("   child status 0x%x, stderr: %s\n", status, out[0] ? out : "(nothing)");
    CHECK(!(WIFEXITED(status) && WEXITSTATUS(status) == 3), "malloc returned the forged block");
    // UBSan (the ASan build) stops at the misaligned load of the wild link and exits 1
    int ubsan = TEST_ASAN && WIFEXITED(status) && WEXITSTATUS(status) == 1 && strstr(out, "runtime error");
    CHECK(ubsan || (WIFSIGNALED(status) && (WTERMSIG(status) == SIGSEGV || WTERMSIG(status) == SIGABRT)),
          "the forged link was followed without a fault (status 0x%x)", status);
    hak_free(p);
}

// The link word of a free block is not the plain address of the next free block.
static void t_free_list_encoded(void) {
    NEED(HARDEN);
    void *a = hak_malloc(112), *b = hak_malloc(112);
    CHECK(a && b, "malloc");
    hak_free(a);
    hak_free(b);  // b now links to a
    CHECK(((void **)b)[0] != a, "the link of a free block is the plain pointer %p", a);
    CHECK(hak_malloc(112) == b && hak_malloc(112) == a, "the list did not decode back to b, a");
    hak_free(a);
    hak_free(b);
}

static const test_case_t cases[] = {
    {"double_free_small", t_double_free_small},
    {"double_free_interleaved", t_double_free_interleaved},
    {"double_free_flushed", t_double_free_flushed},
    {"double_free_foreign_thread", t_double_free_foreign_thread},
    {"double_free_after_remote_free", t_double_free_after_remote_free},
    {"double_free_mid", t_double_free_mid},
    {"double_free_purged", t_double_free_purged},
    {"double_free_large", t_double_free_large},
    {"double_free_cached", t_double_free_cached},
    {"free_stack", t_free_stack},
    {"free_system_malloc", t_free_system_malloc},
    {"free_interior_small", t_free_interior_small},
    {"free_slab_tail", t_free_slab_tail},
    {"free_interior_mid", t_free_interior_mid},
    {"free_interior_foreign_thread", t_free_interior_foreign_thread},
    {"free_interior_large", t_free_interior_large},
    {"free_into_free_slab", t_free_into_free_slab},
    {"free_bad_address", t_free_bad_address},
    {"realloc_interior", t_realloc_interior},
    {"realloc_freed", t_realloc_freed},
    {"usable_size_invalid", t_usable_size_invalid},
    {"free_sized_too_big", t_free_sized_too_big},
    {"uaf_write_small", t_uaf_write_small},
    {"overflow_into_free", t_overflow_into_free},
    {"forged_link", t_forged_link},
    {"free_list_encoded", t_free_list_encoded},
};

int main(int argc, char **argv) { return run_cases(argc, argv, cases, sizeof cases / sizeof cases[0]); }
