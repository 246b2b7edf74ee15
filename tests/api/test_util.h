/* test_util.h -- helpers shared by the prefixed-API tests (tests/api).
 * CHECK() stops the test with a message and exit status 1; a case table lets one
 * executable hold several CTest cases (run one by name, or all with no argument). */
#pragma once

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "check.h"
#include "hakmem.h"

#define TEST_SKIP 77


/* AddressSanitizer (GCC defines __SANITIZE_ADDRESS__, Clang has __has_feature). */
#if defined(__SANITIZE_ADDRESS__)
#define TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif
#ifndef TEST_ASAN
#define TEST_ASAN 0
#endif
#if defined(__SANITIZE_THREAD__)
#define TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TEST_TSAN 1
#endif
#endif
#ifndef TEST_TSAN
#define TEST_TSAN 0
#endif

/* HAKMEM_STATS as configured (the CMakeLists passes it); counters read 0 when off. */
#ifndef TEST_STATS
#define TEST_STATS 1
#endif

/* The size of the block a young class's first mallocs get (HAKMEM_YOUNG, docs/CONFIG.md):
 * the 256 B class for classes under it, the 512 B class for those between. */
static inline size_t test_young_size(size_t class_size) {
    return class_size < 256 ? 256 : class_size > 256 && class_size < 512 ? 512 : class_size;
}

#define MiB ((size_t)1 << 20)
#define KiB ((size_t)1 << 10)

/* A byte pattern that differs between seeds and does not repeat every 256 bytes, so a
 * block copied to the wrong offset or overlapping another block shows up. */
static inline unsigned char pat(uint32_t seed, size_t i) {
    uint32_t x = seed * 2654435761u + (uint32_t)i + (uint32_t)(i >> 8) * 7u + (uint32_t)(i >> 16) * 13u;
    return (unsigned char)(x ^ (x >> 9) ^ (seed >> 3));
}

static inline void fill_pat(void *p, size_t n, uint32_t seed) {
    unsigned char *c = p;
    for (size_t i = 0; i < n; i++) c[i] = pat(seed, i);
}

/* Offset of the first byte in [from, n) that does not hold the pattern, or SIZE_MAX. */
static inline size_t find_bad_pat(const void *p, size_t from, size_t n, uint32_t seed) {
    const unsigned char *c = p;
    for (size_t i = from; i < n; i++)
        if (c[i] != pat(seed, i)) return i;
    return SIZE_MAX;
}

static inline size_t find_nonzero(const void *p, size_t n) {
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        if (c[i]) return i;
    return SIZE_MAX;
}

/* Write every byte of small regions; for big ones, one byte per 4 KiB page and the last
 * byte (enough to prove the range is mapped writable without faulting 100s of MiB in). */
static inline void touch_all(void *p, size_t n, uint32_t seed) {
    unsigned char *c = p;
    if (n <= 4 * MiB) {
        fill_pat(p, n, seed);
        return;
    }
    for (size_t i = 0; i < n; i += 4096) c[i] = pat(seed, i);
    c[n - 1] = pat(seed, n - 1);
}

static inline size_t check_touched(const void *p, size_t n, uint32_t seed) {
    const unsigned char *c = p;
    if (n <= 4 * MiB) return find_bad_pat(p, 0, n, seed);
    for (size_t i = 0; i < n; i += 4096)
        if (c[i] != pat(seed, i)) return i;
    return c[n - 1] == pat(seed, n - 1) ? SIZE_MAX : n - 1;
}

typedef struct test_case {
    const char *name;
    void (*fn)(void);
} test_case_t;

/* argv[1] names one case; with no argument every case runs in turn. A case fails by
 * exiting non-zero (CHECK) and may skip by exiting TEST_SKIP. */
static inline int run_cases(int argc, char **argv, const test_case_t *cases, size_t n) {
    setvbuf(stdout, NULL, _IONBF, 0);
    for (size_t i = 0; i < n; i++) {
        if (argc > 1 && strcmp(argv[1], cases[i].name) != 0) continue;
        printf("-- %s\n", cases[i].name);
        cases[i].fn();
        printf("-- %s: ok\n", cases[i].name);
        if (argc > 1) return 0;
    }
    if (argc > 1) {
        fprintf(stderr, "unknown case '%s'\n", argv[1]);
        return 2;
    }
    return 0;
}

/* Live blocks kept for an overlap check. */
typedef struct span_rec {
    uintptr_t start;
    size_t len;
} span_rec_t;

static inline int span_cmp(const void *a, const void *b) {
    const span_rec_t *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

/* Sort recs and fail if any two [start, start+len) ranges intersect. */
static inline void check_no_overlap(span_rec_t *recs, size_t n, const char *what) {
    qsort(recs, n, sizeof *recs, span_cmp);
    for (size_t i = 1; i < n; i++) {
        CHECK(recs[i - 1].start + recs[i - 1].len <= recs[i].start,
              "%s: blocks overlap: [0x%" PRIxPTR ", +%zu) and [0x%" PRIxPTR ", +%zu)", what,
              recs[i - 1].start, recs[i - 1].len, recs[i].start, recs[i].len);
    }
}

/* Everything hak_stats_print writes (json: the JSON object, else the text report), in a
 * NUL-terminated heap string the caller frees. */
static inline char *test_report(int json) {
    FILE *f = tmpfile();
    CHECK(f != NULL, "tmpfile: %s", strerror(errno));
    hak_stats_print(fileno(f), json);
    long len = lseek(fileno(f), 0, SEEK_END);
    CHECK(len > 0, "hak_stats_print(json=%d) wrote nothing", json);
    char *buf = malloc((size_t)len + 1);
    CHECK(buf != NULL, "out of memory in the test");
    CHECK(pread(fileno(f), buf, (size_t)len, 0) == len, "short read of the report");
    buf[len] = 0;
    fclose(f);
    return buf;
}

/* Run fn(arg) in a forked child with its stderr on a pipe, no core file and a 10 s alarm
 * (a hang shows up as SIGALRM); a child that returns from fn exits 0. Returns the wait
 * status and leaves the child's stderr, NUL-terminated, in out. */
static inline int run_in_child(void (*fn)(void *), void *arg, char *out, size_t cap) {
    int pfd[2];
    CHECK(pipe(pfd) == 0, "pipe: %s", strerror(errno));
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        close(pfd[0]);
        dup2(pfd[1], 2);
        close(pfd[1]);
        struct rlimit no_core = {0, 0};
        setrlimit(RLIMIT_CORE, &no_core);
        signal(SIGABRT, SIG_DFL);
        alarm(10);
        fn(arg);
        _exit(0);  // survived: the misuse went unnoticed
    }
    close(pfd[1]);
    size_t len = 0;
    for (;;) {
        ssize_t r = read(pfd[0], out + len, cap - 1 - len);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        len += (size_t)r;
        if (len == cap - 1) break;
    }
    out[len] = 0;
    close(pfd[0]);
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid, "waitpid: %s", strerror(errno));
    return status;
}
