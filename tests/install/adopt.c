/* adopt.c -- a program that adopts hakmem the way a user would, built by install_test.sh
 * against an installed copy (pkg-config or find_package). It checks from the inside that
 * malloc is hakmem's: the usable size of every block is the size of the hakmem class that
 * serves the request, or for a heap's first blocks of a class under 512 B the 256 or 512 B
 * class it borrows from (HAKMEM_YOUNG, docs/CONFIG.md; glibc rounds to 8 or 16 bytes and
 * says e.g. 24 for 20), and
 * hak_usable_size accepts the blocks of libc's own allocations (it aborts on a foreign
 * pointer). Prints "adopt ok" and exits 0 only if every check passed; with an argument N
 * it then exits with status N (the launcher's pass-through check). */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hakmem.h"

static int failures;

/* The class a young class's first blocks come from (docs/CONFIG.md, HAKMEM_YOUNG). */
static size_t young_of(size_t class_size) {
    return class_size < 256 ? 256 : class_size > 256 && class_size < 512 ? 512 : class_size;
}

static void check_block(const char *what, void *p, size_t request) {
    if (!p) {
        fprintf(stderr, "adopt: %s returned NULL\n", what);
        failures++;
        return;
    }
    int sc = hak_sc_of(request);
    size_t want = sc >= 0 ? hak_sc_size((unsigned)sc) : 0;
    size_t got = malloc_usable_size(p);
    if (sc >= 0 && got != want && got != young_of(want)) {
        fprintf(stderr, "adopt: %s(%zu): malloc_usable_size %zu, hakmem's class is %zu: not hakmem's malloc\n",
                what, request, got, want);
        failures++;
    }
    if (hak_usable_size(p) < request) {
        fprintf(stderr, "adopt: %s(%zu): hak_usable_size %zu\n", what, request, hak_usable_size(p));
        failures++;
    }
}

static void *thread_main(void *arg) {
    (void)arg;
    void *p = malloc(100);
    check_block("malloc in a thread", p, 100);
    free(p);
    return NULL;
}

int main(int argc, char **argv) {
    static const size_t sizes[] = {1, 20, 100, 129, 1025, 5000};
    for (unsigned i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        void *p = malloc(sizes[i]);
        check_block("malloc", p, sizes[i]);
        free(p);
    }
    char *s = strdup("allocated by libc's strdup");  // libc's own malloc call
    check_block("strdup", s, strlen("allocated by libc's strdup") + 1);
    free(s);
    pthread_t t;
    if (pthread_create(&t, NULL, thread_main, NULL) != 0 || pthread_join(t, NULL) != 0) {
        fprintf(stderr, "adopt: pthread_create failed\n");
        failures++;
    }
    if (failures) return 1;
    printf("adopt ok\n");
    return argc > 1 ? atoi(argv[1]) : 0;
}
