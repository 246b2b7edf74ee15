/* static_check.c -- linked with libhakmem.a (hakmem_static: the overrides, no LD_PRELOAD).
 * Asserts that malloc and friends, including libc's own internal allocations (strdup,
 * asprintf, getline, fopen buffers), are hakmem's: the usable sizes are hakmem's size
 * classes (or, for a heap's first blocks of a class under 512 B, the 256 or 512 B class they
 * borrow from: HAKMEM_YOUNG in docs/CONFIG.md), hak_usable_size accepts the pointers (it
 * aborts on foreign ones), the counters move, threads get heaps. */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hakmem.h"

#ifndef HAKTEST_STATS
#define HAKTEST_STATS 1
#endif

static int failures;

/* 1 if u is what hakmem gives for a request whose class has size c: c, or the class its
 * young blocks come from. */
static int class_ok(size_t u, size_t c) { return u == c || u == (c < 256 ? 256 : c > 256 && c < 512 ? 512 : c); }

#define CHECK(cond, ...)                                       \
    do {                                                       \
        if (!(cond)) {                                         \
            fprintf(stderr, "FAIL [static_check] line %d: ", __LINE__); \
            fprintf(stderr, __VA_ARGS__);                      \
            fputc('\n', stderr);                               \
            failures++;                                        \
        }                                                      \
    } while (0)

static void *thread_fn(void *arg) {
    (void)arg;
    char *p = malloc(100);
    if (p) memset(p, 1, 100);
    size_t us = p ? hak_usable_size(p) : 0;
    CHECK(class_ok(us, 112), "thread: malloc(100) usable %zu, expected hakmem's 112", us);
    free(p);
    return NULL;
}

int main(void) {
    void *p = malloc(20);
    CHECK(p != NULL, "malloc(20) failed");
    CHECK(class_ok(hak_usable_size(p), 32), "hak_usable_size(malloc(20)) = %zu, expected 32", hak_usable_size(p));
    CHECK(class_ok(malloc_usable_size(p), 32), "malloc_usable_size(malloc(20)) = %zu, expected 32 (glibc says 24)",
          malloc_usable_size(p));
    free(p);
    CHECK(hak_stat("thread_init") != UINT64_MAX, "hak_stat does not know thread_init");
    if (HAKTEST_STATS)
        CHECK(hak_stat("thread_init") >= 1, "thread_init = %llu after a malloc", (unsigned long long)hak_stat("thread_init"));
    // sizes that only hakmem's classes give
    static const struct { size_t req, usable; } cls[] = {{1, 16}, {17, 32}, {129, 160}, {1025, 1280}, {5000, 5120}};
    for (unsigned i = 0; i < sizeof cls / sizeof cls[0]; i++) {
        void *q = malloc(cls[i].req);
        CHECK(q && class_ok(malloc_usable_size(q), cls[i].usable), "malloc(%zu): usable %zu, expected %zu", cls[i].req,
              q ? malloc_usable_size(q) : 0, cls[i].usable);
        free(q);
    }
    // libc's internal allocations come from hakmem too
    char *s = strdup("hello, hakmem");
    CHECK(s && class_ok(hak_usable_size(s), 16), "strdup: usable %zu, expected 16", s ? hak_usable_size(s) : 0);
    free(s);
    char *a = NULL;
    CHECK(asprintf(&a, "%0100d", 7) == 100 && a, "asprintf");
    if (a) CHECK(hak_usable_size(a) >= 101, "asprintf buffer is not hakmem's");
    free(a);
    FILE *f = fopen("/proc/self/statm", "r");
    CHECK(f != NULL, "fopen");
    if (f) {
        char *line = NULL;
        size_t cap = 0;
        CHECK(getline(&line, &cap, f) > 0, "getline");
        if (line) CHECK(hak_usable_size(line) >= cap, "getline buffer: usable %zu < cap %zu", hak_usable_size(line), cap);
        free(line);
        fclose(f);
    }
    // calloc / realloc / aligned
    unsigned char *z = calloc(1000, 3);
    CHECK(z != NULL, "calloc");
    for (unsigned i = 0; z && i < 3000; i++)
        if (z[i]) {
            CHECK(0, "calloc memory not zero at %u", i);
            break;
        }
    z = realloc(z, 100000);
    CHECK(z && hak_usable_size(z) >= 100000, "realloc");
    free(z);
    void *al = NULL;
    CHECK(posix_memalign(&al, 4096, 5000) == 0 && ((uintptr_t)al & 4095) == 0, "posix_memalign(4096)");
    free(al);
    void *big = malloc(5u << 20);
    CHECK(big && hak_usable_size(big) >= (5u << 20), "large malloc");
    free(big);
    struct mallinfo2 mi = mallinfo2();
    CHECK(mi.arena > 0, "mallinfo2().arena = %zu: not hakmem's mallinfo2", mi.arena);
    // a thread gets a heap of its own
    uint64_t before = hak_stat("thread_init");
    pthread_t t;
    CHECK(pthread_create(&t, NULL, thread_fn, NULL) == 0, "pthread_create");
    pthread_join(t, NULL);
    if (HAKTEST_STATS) {
        CHECK(hak_stat("thread_init") >= before + 1, "the thread did not set up a heap (thread_init %llu -> %llu)",
              (unsigned long long)before, (unsigned long long)hak_stat("thread_init"));
        CHECK(hak_stat("thread_exit") >= 1, "thread_exit = 0 after a thread exited");
    }
    if (failures) return 1;
    printf("static_check: malloc is hakmem's (libhakmem.a)\n");
    return 0;
}
