/* api_guard.c -- guarded blocks (HAKMEM_GUARD=1, HAKMEM_GUARD_SAMPLE=N; core/large/hak_guard.h).
 * CTest sets the variable per case. The misuse cases run in a child that must die of
 * SIGABRT after one "hakmem: ..." line naming the kind of error, the block and the call
 * site that allocated it; the others check that guarded blocks behave like any block. */
#include <pthread.h>

#include "test_util.h"

static uintptr_t page(void) { return (uintptr_t)sysconf(_SC_PAGESIZE); }

/* fn(arg) in a child must abort with a line that contains every string of want (NULL-ended). */
static void expect_report(const char *name, void (*fn)(void *), void *arg, const char *const *want) {
    if (TEST_ASAN) {
        printf("   AddressSanitizer owns SIGSEGV here: not checked\n");
        exit(TEST_SKIP);
    }
    char out[4096];
    int status = run_in_child(fn, arg, out, sizeof out);
    printf("   %s: child stderr: %s", name, out[0] ? out : "(nothing)\n");
    CHECK(!WIFEXITED(status), "%s: the child exited with status %d (misuse not detected)", name, WEXITSTATUS(status));
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "%s: child status 0x%x, expected SIGABRT", name, status);
    CHECK(strncmp(out, "hakmem: ", 8) == 0, "%s: the report does not start with \"hakmem: \"", name);
    CHECK(strchr(out, '\n') == out + strlen(out) - 1, "%s: the report is not one line", name);
    for (; *want; want++) CHECK(strstr(out, *want) != NULL, "%s: the report lacks \"%s\"", name, *want);
}

static char hexbuf[4][32];
static const char *hex(int i, const void *p) {
    snprintf(hexbuf[i], sizeof hexbuf[i], "0x%" PRIxPTR, (uintptr_t)p);
    return hexbuf[i];
}

/* ---- misuses ------------------------------------------------------------------------ */

static void do_write(void *a) { *(volatile char *)a = 1; }
static void do_read(void *a) { (void)*(volatile char *)a; }

static void t_overflow_page(void) {
    char *p = hak_malloc(24);
    CHECK(p != NULL, "malloc");
    char *guard = (char *)(((uintptr_t)p + 24 + page() - 1) & ~(page() - 1));
    const char *want[] = {"heap-buffer-overflow: write at", "bytes past the end of the 24-byte block", hex(0, p),
                          "allocated at 0x", NULL};
    expect_report("a write into the guard page", do_write, guard, want);
    hak_free(p);
}

static void t_overflow_exact(void) {
    char *p = hak_malloc(32);  // a multiple of 16: its end is the guard page itself
    CHECK(p != NULL, "malloc");
    CHECK(((uintptr_t)(p + 32) & (page() - 1)) == 0, "a 32-byte guarded block does not end on a page: %p", p);
    const char *want[] = {"heap-buffer-overflow: read at", "0 bytes past the end of the 32-byte block", hex(0, p), NULL};
    expect_report("reading one byte past the end", do_read, p + 32, want);
    hak_free(p);
}

static void do_small_overflow_then_free(void *p) {
    ((char *)p)[24] = 'x';
    hak_free(p);
}
static void t_overflow_found_at_free(void) {
    char *p = hak_malloc(24);  // 8 bytes of pattern between its end and the guard page
    CHECK(p != NULL, "malloc");
    const char *want[] = {"heap-buffer-overflow (found at free)", hex(0, p), "the 24-byte block", NULL};
    expect_report("a one-byte overflow inside the page", do_small_overflow_then_free, p, want);
    hak_free(p);
}

static void do_use_after_free(void *p) {
    hak_free(p);
    do_read((char *)p + 5);
}
static void t_use_after_free(void) {
    char *p = hak_malloc(100);
    CHECK(p != NULL, "malloc");
    const char *want[] = {"heap-use-after-free: read at", "byte 5 of the 100-byte block", hex(0, p), "freed at 0x", NULL};
    expect_report("a read after free", do_use_after_free, p, want);
    hak_free(p);
}

static void do_double_free(void *p) {
    hak_free(p);
    hak_free(p);
}
static void t_double_free(void) {
    char *p = hak_malloc(64);
    CHECK(p != NULL, "malloc");
    const char *want[] = {"double free of guarded block", hex(0, p), "freed at 0x", NULL};
    expect_report("a double free", do_double_free, p, want);
    hak_free(p);
}

/* ---- guarded blocks behave like blocks ----------------------------------------------- */

static void *free_in_thread(void *p) {
    hak_free(p);
    return NULL;
}

static void t_contents(void) {
    static const size_t sizes[] = {0, 1, 15, 16, 17, 24, 100, 1000, 4095, 4096, 4097, 20000, 65536};
    enum { N = sizeof sizes / sizeof sizes[0] };
    char *p[N];
    for (int i = 0; i < N; i++) {
        p[i] = hak_malloc(sizes[i]);
        CHECK(p[i] != NULL, "malloc(%zu)", sizes[i]);
        CHECK(((uintptr_t)p[i] & 15) == 0, "malloc(%zu) = %p is not 16-byte aligned", sizes[i], p[i]);
        CHECK(hak_usable_size(p[i]) == sizes[i], "usable size of a guarded %zu-byte block: %zu", sizes[i],
              hak_usable_size(p[i]));
        fill_pat(p[i], sizes[i], (uint32_t)i);
    }
    for (int i = 0; i < N; i++) CHECK(find_bad_pat(p[i], 0, sizes[i], (uint32_t)i) == SIZE_MAX, "block %d", i);
    // calloc of a reused slot reads zero
    for (int i = 0; i < N; i++) hak_free(p[i]);
    char *z = hak_calloc(1, 3000);
    CHECK(z && find_nonzero(z, 3000) == SIZE_MAX, "calloc from the guarded region is not zeroed");
    // realloc keeps the contents, within the guarded sizes and out to mid and large blocks
    fill_pat(z, 3000, 7);
    static const size_t steps[] = {5000, 60000, 200000, 3u << 20, 40};
    size_t have = 3000;
    for (unsigned k = 0; k < sizeof steps / sizeof steps[0]; k++) {
        z = hak_realloc(z, steps[k]);
        CHECK(z != NULL, "realloc to %zu", steps[k]);
        size_t keep = have < steps[k] ? have : steps[k];
        CHECK(find_bad_pat(z, 0, keep, 7) == SIZE_MAX, "realloc to %zu lost the contents", steps[k]);
        fill_pat(z, steps[k], 7);
        have = steps[k];
    }
    hak_free(z);
    // freed by another thread
    char *t = hak_malloc(500);
    pthread_t th;
    CHECK(pthread_create(&th, NULL, free_in_thread, t) == 0, "pthread_create");
    pthread_join(th, NULL);
    // over-aligned requests are not guarded, and still work
    void *al = hak_aligned_alloc(256, 300);
    CHECK(al && ((uintptr_t)al & 255) == 0, "aligned_alloc(256)");
    hak_free(al);
    if (TEST_STATS) {
        CHECK(hak_stat("guard_alloc") >= N + 3, "guard_alloc = %" PRIu64, hak_stat("guard_alloc"));
        CHECK(hak_stat("guard_free") >= N + 2, "guard_free = %" PRIu64, hak_stat("guard_free"));
    }
}

// HAKMEM_GUARD_SAMPLE=16: about one allocation in 16 is guarded.
static void t_sample_rate(void) {
    if (!TEST_STATS) {
        printf("   counters compiled out: the rate is read from guard_alloc\n");
        exit(TEST_SKIP);
    }
    enum { N = 12800 };
    static void *p[N];
    uint64_t before = hak_stat("guard_alloc");
    for (int i = 0; i < N; i++) {
        p[i] = hak_malloc(48);
        CHECK(p[i] != NULL, "malloc");
        memset(p[i], 0x5a, 48);
    }
    uint64_t got = hak_stat("guard_alloc") - before;
    for (int i = 0; i < N; i++) hak_free(p[i]);
    printf("   %" PRIu64 " of %d allocations guarded (expected about %d)\n", got, N, N / 16);
    CHECK(got >= N / 16 * 6 / 10 && got <= N / 16 * 14 / 10, "%" PRIu64 " guarded, expected %d +- 40%%", got, N / 16);
}

// HAKMEM_GUARD=1 with more live blocks than slots: the rest are ordinary blocks, and freed
// slots are used again.
static void t_slots_run_out(void) {
    enum { N = 17000 };
    static char *p[N];
    for (int i = 0; i < N; i++) {
        p[i] = hak_malloc(16);
        CHECK(p[i] != NULL, "malloc %d", i);
        memcpy(p[i], &i, sizeof i);
    }
    for (int i = 0; i < N; i++) CHECK(memcmp(p[i], &i, sizeof i) == 0, "block %d changed", i);
    if (TEST_STATS) CHECK(hak_stat("guard_full") > 0, "guard_full = 0 with %d live blocks", N);
    for (int i = 0; i < N; i++) hak_free(p[i]);
    uint64_t before = TEST_STATS ? hak_stat("guard_alloc") : 0;
    char *q = hak_malloc(16);
    CHECK(q != NULL, "malloc after freeing");
    if (TEST_STATS) CHECK(hak_stat("guard_alloc") == before + 1, "a freed slot was not used again");
    hak_free(q);
}

static void t_fork(void) {
    char *p = hak_malloc(1000);
    fill_pat(p, 1000, 3);
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        if (find_bad_pat(p, 0, 1000, 3) != SIZE_MAX) _exit(2);
        hak_free(p);
        char *q = hak_malloc(1000);
        if (!q) _exit(3);
        memset(q, 1, 1000);
        hak_free(q);
        _exit(0);
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "child status 0x%x", status);
    CHECK(find_bad_pat(p, 0, 1000, 3) == SIZE_MAX, "the parent's block changed");
    hak_free(p);
}

static const test_case_t cases[] = {
    {"overflow_page", t_overflow_page},
    {"overflow_exact", t_overflow_exact},
    {"overflow_found_at_free", t_overflow_found_at_free},
    {"use_after_free", t_use_after_free},
    {"double_free", t_double_free},
    {"contents", t_contents},
    {"sample_rate", t_sample_rate},
    {"slots_run_out", t_slots_run_out},
    {"fork", t_fork},
};

int main(int argc, char **argv) { return run_cases(argc, argv, cases, sizeof cases / sizeof cases[0]); }
