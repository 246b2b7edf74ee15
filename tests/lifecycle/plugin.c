/* A library loaded with dlopen: it allocates in its constructor, from its functions (also on
 * threads it starts) and in its destructor. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static char **table;

__attribute__((constructor)) static void plugin_init(void) {
    table = calloc(256, sizeof *table);
    for (int i = 0; table && i < 256; i++) {
        table[i] = malloc((size_t)i + 1);
        if (table[i]) memset(table[i], i, (size_t)i + 1);
    }
}

__attribute__((destructor)) static void plugin_fini(void) {
    for (int i = 0; table && i < 256; i++) free(table[i]);
    free(table);
}

static void *worker(void *arg) {
    (void)arg;
    long sum = 0;
    for (int i = 0; i < 2000; i++) {
        char *p = malloc((size_t)(i % 700) + 1);
        if (!p) return (void *)-1L;
        p[0] = (char)i;
        sum += p[0];
        free(p);
    }
    return (void *)(sum & 1);
}

/* 0 when the constructor's table is intact and threads allocate correctly. */
__attribute__((visibility("default"))) int plugin_run(void) {
    for (int i = 0; i < 256; i++) {
        if (!table || !table[i]) return 1;
        for (int j = 0; j <= i; j++)
            if (table[i][j] != (char)i) return 2;
    }
    pthread_t t[2];
    for (int k = 0; k < 2; k++) pthread_create(&t[k], NULL, worker, NULL);
    for (int k = 0; k < 2; k++) {
        void *r;
        pthread_join(t[k], &r);
        if (r == (void *)-1L) return 3;
    }
    return 0;
}
