/* mt_common.h -- helpers shared by the multithreaded tests: checks that fail the test with
 * a message, a small PRNG, fill/verify patterns, RSS sampling, and the allocator entry
 * points (the prefixed API, or the plain malloc family when MT_USE_LIBC is defined, for the
 * variants that run under LD_PRELOAD or link libhakmem.a). */
#pragma once

#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hakmem.h"

#ifdef MT_USE_LIBC
#include <malloc.h>
#define T_MALLOC(n) malloc(n)
#define T_FREE(p) free(p)
#define T_CALLOC(c, n) calloc(c, n)
#define T_REALLOC(p, n) realloc(p, n)
#define T_USABLE(p) malloc_usable_size(p)
#define T_TRIM() malloc_trim(0)
static inline size_t t_mapped_bytes(void) {
    struct mallinfo2 m = mallinfo2();  // hakmem's: arena = SuperSlab bytes, hblkhd = large
    return m.arena + m.hblkhd;
}
#else
#define T_MALLOC(n) hak_malloc(n)
#define T_FREE(p) hak_free(p)
#define T_CALLOC(c, n) hak_calloc(c, n)
#define T_REALLOC(p, n) hak_realloc(p, n)
#define T_USABLE(p) hak_usable_size(p)
#define T_TRIM() hak_trim(0)
static inline size_t t_mapped_bytes(void) {
    hak_info_t in;
    hak_info(&in);
    return in.mapped_bytes;
}
#endif

/* Built with a sanitizer (HAKMEM_SANITIZER): tests scale their work down by MT_SCALE and
 * skip RSS limits, which shadow memory makes meaningless. Set by CMake. */
#ifndef MT_SANITIZER
#define MT_SANITIZER 0
#endif
#define MT_SCALE (MT_SANITIZER ? 4 : 1)

/* Whether the library under test counts (HAKMEM_STATS); set by CMake. */
#ifndef MT_STATS
#define MT_STATS 1
#endif

static const char *mt_test_name = "mt";

static void mt_fail(const char *file, int line, const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fflush(stdout);
    fprintf(stderr, "FAIL [%s] %s:%d: %s\n", mt_test_name, file, line, buf);
    fflush(stderr);
    _exit(1);  // from any thread, without running exit handlers on a broken heap
}

#define CHECK(cond, ...)                                         \
    do {                                                         \
        if (!(cond)) mt_fail(__FILE__, __LINE__, __VA_ARGS__);   \
    } while (0)

static inline uint64_t mt_splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint64_t mt_mix(uint64_t x) {
    uint64_t s = x;
    return mt_splitmix(&s);
}

/* Fill n bytes at p with a pattern derived from seq; verify returns the offset of the
 * first wrong byte, or SIZE_MAX when all are right. Words first, then the tail. */
static inline void mt_fill(void *p, size_t n, uint64_t seq) {
    uint64_t k = mt_mix(seq) | 1;
    uint64_t *w = p;
    size_t nw = n / 8;
    for (size_t i = 0; i < nw; i++) w[i] = k * (i + 1) ^ seq;
    unsigned char *c = p;
    for (size_t i = nw * 8; i < n; i++) c[i] = (unsigned char)(k >> ((i & 7) * 8)) ^ (unsigned char)i;
}

static inline size_t mt_verify(const void *p, size_t n, uint64_t seq) {
    uint64_t k = mt_mix(seq) | 1;
    const uint64_t *w = p;
    size_t nw = n / 8;
    for (size_t i = 0; i < nw; i++)
        if (w[i] != (k * (i + 1) ^ seq)) return i * 8;
    const unsigned char *c = p;
    for (size_t i = nw * 8; i < n; i++)
        if (c[i] != ((unsigned char)(k >> ((i & 7) * 8)) ^ (unsigned char)i)) return i;
    return SIZE_MAX;
}

/* Resident set size in bytes, from /proc/self/statm. */
static inline size_t mt_rss(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    CHECK(f != NULL, "cannot open /proc/self/statm: %s", strerror(errno));
    unsigned long size = 0, resident = 0;
    int got = fscanf(f, "%lu %lu", &size, &resident);
    fclose(f);
    CHECK(got == 2, "cannot parse /proc/self/statm");
    return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

static inline double mt_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#ifdef MT_PRELOAD
/* Not linked with hakmem: find hak_stat in the preloaded library (and fail when it is not
 * there, i.e. the program does not run on hakmem at all). */
#include <dlfcn.h>
static inline uint64_t mt_hak_stat(const char *name) {
    uint64_t (*fn)(const char *) = (uint64_t(*)(const char *))dlsym(RTLD_DEFAULT, "hak_stat");
    if (!fn) {
        fprintf(stderr, "FAIL [%s]: hak_stat not found: the program does not run on hakmem (LD_PRELOAD?)\n", mt_test_name);
        _exit(1);
    }
    return fn(name);
}
#else
#define mt_hak_stat hak_stat
#endif

static inline uint64_t mt_stat(const char *name) {
    uint64_t v = mt_hak_stat(name);
    CHECK(v != UINT64_MAX, "hak_stat(\"%s\") does not know the counter", name);
    return v;
}
