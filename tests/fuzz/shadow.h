/* shadow.h -- a shadow model of live blocks, shared by the fuzz harness (tests/fuzz) and the
 * fault-injection tests (tests/fault). Owns: the fill pattern of a block (derived from an id),
 * its checks (content, zero), and the set of live ranges ordered by address that proves no
 * two live blocks overlap. Uses only the system allocator (beside hakmem's prefixed API);
 * any mismatch prints what and where, then aborts. */
#pragma once

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SHADOW_FAIL(...)                                                                     \
    do {                                                                                     \
        fprintf(stderr, "shadow: FAIL %s:%d: ", __FILE__, __LINE__);                         \
        fprintf(stderr, __VA_ARGS__);                                                        \
        fputc('\n', stderr);                                                                 \
        fflush(stderr);                                                                      \
        abort();                                                                             \
    } while (0)

/* ---- the fill pattern ----------------------------------------------------------------
 * Byte i of block id is byte i % 8 of word(id, i / 8): differs between ids and between
 * words, so a block copied to the wrong offset, or written by another block, shows. Blocks
 * up to SHADOW_FULL bytes are written and checked whole; larger ones on a sample: the first
 * and last SHADOW_EDGE bytes and SHADOW_PROBE bytes every SHADOW_STRIDE (enough to catch a
 * wrong page, a lost mapping or a short copy, without paging in megabytes per check). */
#define SHADOW_FULL ((size_t)64 << 10)
#define SHADOW_EDGE ((size_t)4096)
#define SHADOW_STRIDE ((size_t)16 << 10)
#define SHADOW_PROBE ((size_t)64)

static inline uint64_t shadow_word(uint64_t id, size_t w) {
    uint64_t x = (id + 1) * 0x9e3779b97f4a7c15ULL ^ ((uint64_t)w * 0xd6e8feb86659fd93ULL);
    return x ^ (x >> 29);
}

static inline unsigned char shadow_byte(uint64_t id, size_t i) {
    return (unsigned char)(shadow_word(id, i / 8) >> (8 * (i % 8)));
}

/* The sampled segments of a block of n bytes, in order: calls fn(ctx, from, to) for each,
 * clipped to [0, limit). Returns the first non-zero fn result (a failing offset + 1). */
typedef size_t (*shadow_seg_fn)(void *ctx, size_t from, size_t to);
static inline size_t shadow_segments(size_t n, size_t limit, shadow_seg_fn fn, void *ctx) {
    size_t r;
    if (limit > n) limit = n;
#define SHADOW_SEG(a, b)                                                                     \
    do {                                                                                     \
        size_t a_ = (a), b_ = (b) < limit ? (b) : limit;                                     \
        if (a_ < b_ && (r = fn(ctx, a_, b_)) != 0) return r;                                 \
    } while (0)
    if (n <= SHADOW_FULL) {
        SHADOW_SEG(0, n);
        return 0;
    }
    SHADOW_SEG(0, SHADOW_EDGE);
    for (size_t off = SHADOW_STRIDE; off + SHADOW_PROBE <= n - SHADOW_EDGE; off += SHADOW_STRIDE)
        SHADOW_SEG(off, off + SHADOW_PROBE);
    SHADOW_SEG(n - SHADOW_EDGE, n);
#undef SHADOW_SEG
    return 0;
}

typedef struct shadow_ctx {
    unsigned char *p;
    uint64_t id;
} shadow_ctx_t;

static inline size_t shadow_fill_seg(void *c, size_t from, size_t to) {
    shadow_ctx_t *x = c;
    size_t i = from;
    for (; i < to && i % 8; i++) x->p[i] = shadow_byte(x->id, i);
    for (; i + 8 <= to; i += 8) {
        uint64_t w = shadow_word(x->id, i / 8);
        memcpy(x->p + i, &w, 8);
    }
    for (; i < to; i++) x->p[i] = shadow_byte(x->id, i);
    return 0;
}

static inline size_t shadow_check_seg(void *c, size_t from, size_t to) {
    shadow_ctx_t *x = c;
    size_t i = from;
    for (; i < to && i % 8; i++)
        if (x->p[i] != shadow_byte(x->id, i)) return i + 1;
    for (; i + 8 <= to; i += 8) {
        uint64_t w = shadow_word(x->id, i / 8), v;
        memcpy(&v, x->p + i, 8);
        if (v != w) break;  // the byte loop below names the first bad byte
    }
    for (; i < to; i++)
        if (x->p[i] != shadow_byte(x->id, i)) return i + 1;
    return 0;
}

static inline size_t shadow_zero_seg(void *c, size_t from, size_t to) {
    shadow_ctx_t *x = c;
    for (size_t i = from; i < to; i++)
        if (x->p[i]) return i + 1;
    return 0;
}

/* Write the pattern of id over the sample of an n-byte block. */
static inline void shadow_fill(void *p, size_t n, uint64_t id) {
    shadow_ctx_t x = {p, id};
    shadow_segments(n, n, shadow_fill_seg, &x);
}

/* Offset of the first sampled byte below limit that does not hold the pattern of id for an
 * n-byte block, or SIZE_MAX. */
static inline size_t shadow_find_bad(const void *p, size_t n, size_t limit, uint64_t id) {
    shadow_ctx_t x = {(unsigned char *)p, id};
    size_t r = shadow_segments(n, limit, shadow_check_seg, &x);
    return r ? r - 1 : SIZE_MAX;
}

/* Offset of the first non-zero sampled byte of an n-byte block, or SIZE_MAX. */
static inline size_t shadow_find_nonzero(const void *p, size_t n) {
    shadow_ctx_t x = {(unsigned char *)p, 0};
    size_t r = shadow_segments(n, n, shadow_zero_seg, &x);
    return r ? r - 1 : SIZE_MAX;
}

/* Abort unless the sample of block p (n bytes, id) below limit is intact. */
static inline void shadow_check(const void *p, size_t n, size_t limit, uint64_t id, const char *when) {
    size_t bad = shadow_find_bad(p, n, limit, id);
    if (bad != SIZE_MAX)
        SHADOW_FAIL("%s: block %p (%zu bytes, id %" PRIu64 ") corrupted at offset %zu: 0x%02x, expected 0x%02x",
                    when, p, n, id, bad, ((const unsigned char *)p)[bad], shadow_byte(id, bad));
}

/* ---- the set of live ranges -----------------------------------------------------------
 * A sorted array of [start, end) under a mutex: insert finds the place by binary search and
 * checks both neighbours, so a block handed out over a live one aborts at once. A block
 * leaves the set before it is freed (another thread may get its memory the moment after). */
typedef struct shadow_range {
    uintptr_t start, end;
    uint64_t id;
} shadow_range_t;

typedef struct shadow_set {
    pthread_mutex_t lock;
    shadow_range_t *r;
    size_t n, cap;
} shadow_set_t;

#define SHADOW_SET_INIT {PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0}

// The first index whose start is >= start.
static inline size_t shadow_lower(const shadow_set_t *s, uintptr_t start) {
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->r[mid].start < start) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* Add [p, p+len) (len 0 counts as 1 byte); abort if it meets a live range. */
static inline void shadow_insert(shadow_set_t *s, const void *p, size_t len, uint64_t id) {
    uintptr_t a = (uintptr_t)p, b = a + (len ? len : 1);
    pthread_mutex_lock(&s->lock);
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 256;
        shadow_range_t *r = realloc(s->r, cap * sizeof *r);
        if (!r) SHADOW_FAIL("out of memory for the shadow set");
        s->r = r;
        s->cap = cap;
    }
    size_t i = shadow_lower(s, a);
    if (i < s->n && s->r[i].start < b)
        SHADOW_FAIL("block [%p, +%zu) (id %" PRIu64 ") overlaps live block [0x%" PRIxPTR ", 0x%" PRIxPTR ") (id %" PRIu64 ")",
                    p, len, id, s->r[i].start, s->r[i].end, s->r[i].id);
    if (i > 0 && s->r[i - 1].end > a)
        SHADOW_FAIL("block [%p, +%zu) (id %" PRIu64 ") overlaps live block [0x%" PRIxPTR ", 0x%" PRIxPTR ") (id %" PRIu64 ")",
                    p, len, id, s->r[i - 1].start, s->r[i - 1].end, s->r[i - 1].id);
    memmove(&s->r[i + 1], &s->r[i], (s->n - i) * sizeof *s->r);
    s->r[i] = (shadow_range_t){a, b, id};
    s->n++;
    pthread_mutex_unlock(&s->lock);
}

/* Remove the range that starts at p; abort if there is none. */
static inline void shadow_remove(shadow_set_t *s, const void *p) {
    uintptr_t a = (uintptr_t)p;
    pthread_mutex_lock(&s->lock);
    size_t i = shadow_lower(s, a);
    if (i == s->n || s->r[i].start != a) SHADOW_FAIL("block %p is not in the shadow set", p);
    memmove(&s->r[i], &s->r[i + 1], (s->n - i - 1) * sizeof *s->r);
    s->n--;
    pthread_mutex_unlock(&s->lock);
}

static inline size_t shadow_count(shadow_set_t *s) {
    pthread_mutex_lock(&s->lock);
    size_t n = s->n;
    pthread_mutex_unlock(&s->lock);
    return n;
}
