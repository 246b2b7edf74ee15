/* The registry stays exact while a large block shrinks or moves and another allocation takes
 * the range it gave up. Linked with -Wl,--wrap=munmap,--wrap=mremap: right after hakmem gives
 * a range back to the kernel, the wrapper allocates a large block, which the kernel tends to
 * place in that fresh hole (the highest gap that fits). If the registry were updated only
 * after the range was given back, it would erase the new block's entry, and freeing it would
 * abort as a foreign pointer. */
#define _GNU_SOURCE
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "check.h"
#include "hakmem.h"

int __real_munmap(void *addr, size_t len);
void *__real_mremap(void *old, size_t old_size, size_t new_size, int flags, ...);

static int armed;
static void *intruder[2];
static int intruders;

static void intrude(void) {
    if (!armed || intruders == 2) return;
    armed = 0;  // hak_malloc below may itself munmap (trimming an over-mapping)
    void *p = hak_malloc(3u << 20);
    CHECK(p != NULL, "intruding malloc");
    memset(p, 0x33, 4096);
    intruder[intruders++] = p;
}

int __wrap_munmap(void *addr, size_t len) {
    int r = __real_munmap(addr, len);
    intrude();
    return r;
}

void *__wrap_mremap(void *old, size_t old_size, size_t new_size, int flags, ...) {
    void *target = NULL;
    if (flags & MREMAP_FIXED) {
        __builtin_va_list ap;
        __builtin_va_start(ap, flags);
        target = __builtin_va_arg(ap, void *);
        __builtin_va_end(ap);
    }
    void *r = __real_mremap(old, old_size, new_size, flags, target);
    intrude();
    return r;
}

int main(void) {
    // shrink in place: the tail goes back to the kernel
    char *p = hak_malloc(64u << 20);
    CHECK(p != NULL, "malloc 64 MiB");
    memset(p, 1, 1 << 20);
    armed = 1;
    p = hak_realloc(p, 4u << 20);
    CHECK(p != NULL && p[4095] == 1, "shrink keeps the content");
    // move: the old range is vacated by mremap (block a neighbour in so it cannot grow)
    char *wall = hak_malloc(3u << 20);
    CHECK(wall != NULL, "neighbour");
    armed = 1;
    char *q = hak_realloc(p, 200u << 20);
    CHECK(q != NULL && q[4095] == 1, "grow keeps the content");
    CHECK(intruders >= 1, "the wrapper never ran (%d)", intruders);
    for (int i = 0; i < intruders; i++) {
        CHECK(hak_usable_size(intruder[i]) >= (3u << 20), "intruder %d lost its registry entry", i);
        hak_free(intruder[i]);  // aborts as a foreign pointer if its entry was erased
    }
    hak_free(wall);
    hak_free(q);
    puts("large registry ok");
    return 0;
}
