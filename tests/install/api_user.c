/* api_user.c -- the prefixed API beside the system allocator (hakmem::api): hak_malloc
 * blocks are hakmem's, malloc stays glibc's (install_test.sh checks with nm that this
 * program defines no malloc). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hakmem.h"

int main(void) {
    char *h = hak_malloc(20);
    char *g = malloc(20);
    if (!h || !g) return 1;
    memset(h, 1, 20);
    memset(g, 2, 20);
    // 20 bytes is the 32-byte class; a heap's first blocks of it come from the 256 B class
    // (HAKMEM_YOUNG, docs/CONFIG.md)
    int sc = hak_sc_of(20);
    size_t u = hak_usable_size(h);
    if (sc < 0 || (u != hak_sc_size((unsigned)sc) && u != 256)) {
        fprintf(stderr, "api_user: hak_usable_size(hak_malloc(20)) = %zu\n", hak_usable_size(h));
        return 1;
    }
    hak_free(h);
    free(g);
    printf("api_user ok\n");
    return 0;
}
