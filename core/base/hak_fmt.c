/* hak_fmt.c -- fixed-buffer formatting and the fatal-error path. */
#include "hak_fmt.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}

void hak_buf_init(hak_buf_t *b, int fd) { hak_buf_init_ext(b, fd, b->own, sizeof b->own); }

void hak_buf_init_ext(hak_buf_t *b, int fd, char *mem, size_t cap) {
    b->fd = fd;
    b->len = 0;
    b->cap = cap;
    b->data = mem;
}

void hak_buf_flush(hak_buf_t *b) {
    write_all(b->fd, b->data, b->len);
    b->len = 0;
}

// A full buffer is written up to its last newline, so that each write(2) holds whole lines:
// two processes writing reports to one file (a shell pipeline sharing stderr) then interleave
// only between lines. A line longer than the buffer goes out in pieces.
static void flush_lines(hak_buf_t *b) {
    size_t end = b->len;
    while (end > 0 && b->data[end - 1] != '\n') end--;
    if (end == 0) {
        hak_buf_flush(b);
        return;
    }
    write_all(b->fd, b->data, end);
    memmove(b->data, b->data + end, b->len - end);
    b->len -= end;
}

static void put(hak_buf_t *b, const char *s, size_t n) {
    while (n > 0) {
        if (b->len == b->cap) flush_lines(b);
        size_t room = b->cap - b->len;
        size_t k = n < room ? n : room;
        memcpy(b->data + b->len, s, k);
        b->len += k;
        s += k;
        n -= k;
    }
}

void hak_buf_str(hak_buf_t *b, const char *s) { put(b, s, strlen(s)); }

static size_t format_u64(char *out, uint64_t v) {
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
    return n;
}

void hak_buf_u64(hak_buf_t *b, uint64_t v) {
    char tmp[24];
    put(b, tmp, format_u64(tmp, v));
}

void hak_buf_u64w(hak_buf_t *b, uint64_t v, unsigned width) {
    char tmp[24];
    size_t n = format_u64(tmp, v);
    for (size_t i = n; i < width; i++) put(b, " ", 1);
    put(b, tmp, n);
}

void hak_buf_pad(hak_buf_t *b, const char *s, unsigned width) {
    size_t n = strlen(s);
    put(b, s, n);
    for (size_t i = n; i < width; i++) put(b, " ", 1);
}

void hak_buf_hex(hak_buf_t *b, uintptr_t v) {
    char tmp[2 + 16];
    size_t n = 0;
    tmp[n++] = '0';
    tmp[n++] = 'x';
    int started = 0;
    for (int shift = 60; shift >= 0; shift -= 4) {
        unsigned d = (unsigned)(v >> shift) & 15u;
        if (!d && !started && shift) continue;
        started = 1;
        tmp[n++] = "0123456789abcdef"[d];
    }
    put(b, tmp, n);
}

void hak_die(const char *what, const void *ptr) {
    hak_buf_t b;
    hak_buf_init(&b, 2);
    hak_buf_str(&b, "hakmem: ");
    hak_buf_str(&b, what);
    hak_buf_str(&b, " ");
    hak_buf_hex(&b, (uintptr_t)ptr);
    hak_buf_str(&b, "\n");
    hak_buf_flush(&b);
    abort();
}
