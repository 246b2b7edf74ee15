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
    int sc = hak_sc_of(20);
    if (sc < 0 || hak_usable_size(h) != hak_sc_size((unsigned)sc)) {
        fprintf(stderr, "api_user: hak_usable_size(hak_malloc(20)) = %zu\n", hak_usable_size(h));
        return 1;
    }
    hak_free(h);
    free(g);
    printf("api_user ok\n");
    return 0;
}
