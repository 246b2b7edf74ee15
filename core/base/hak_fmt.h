/* hak_fmt.h -- formatting into a fixed stack buffer, flushed with write(2).
 * For reports and fatal messages: never allocates, never calls printf. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "hak_base.h"

typedef struct hak_buf {
    int fd;
    size_t len, cap;
    char *data;        /* own[] or the caller's memory */
    char own[1024];
} hak_buf_t;

HAK_HIDDEN void hak_buf_init(hak_buf_t *b, int fd);
/* The same with the caller's cap bytes of storage (a report built whole, written once). */
HAK_HIDDEN void hak_buf_init_ext(hak_buf_t *b, int fd, char *mem, size_t cap);
HAK_HIDDEN void hak_buf_str(hak_buf_t *b, const char *s);
HAK_HIDDEN void hak_buf_u64(hak_buf_t *b, uint64_t v);
/* Right-aligned in width columns. */
HAK_HIDDEN void hak_buf_u64w(hak_buf_t *b, uint64_t v, unsigned width);
HAK_HIDDEN void hak_buf_hex(hak_buf_t *b, uintptr_t v);
HAK_HIDDEN void hak_buf_pad(hak_buf_t *b, const char *s, unsigned width);
HAK_HIDDEN void hak_buf_flush(hak_buf_t *b);
