/* Allocation before main (constructors), after main (atexit handlers, destructors), and in
 * a thread after hakmem's own key destructor has torn its cache down. Each stage checks its
 * blocks' content; the last destructor prints "lifecycle ok" only if every stage passed.
 * Built twice: linked with libhakmem.a, and plain (run under LD_PRELOAD). */
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *early[64];
static int failures;
static int stages;
static pthread_key_t late_key;

static void fail(const char *what) {
    write(2, "lifecycle: FAIL ", 16);
    write(2, what, strlen(what));
    write(2, "\n", 1);
    failures++;
}

static void fill(char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) p[i] = (char)(seed + i * 7);
}

static int check(const char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != (char)(seed + i * 7)) return 0;
    return 1;
}

static size_t size_of(int i) { return (size_t)16 << (i % 17); }  // 16 B .. 1 MiB, some large

__attribute__((constructor(110))) static void before_main(void) {
    for (int i = 0; i < 64; i++) {
        early[i] = malloc(size_of(i));
        if (!early[i]) fail("malloc in a constructor");
        else fill(early[i], size_of(i) < 4096 ? size_of(i) : 4096, (unsigned)i);
    }
    stages++;
}

static void at_exit_handler(void) {
    for (int i = 0; i < 64; i++) {
        if (!early[i] || !check(early[i], size_of(i) < 4096 ? size_of(i) : 4096, (unsigned)i))
            fail("constructor block intact at exit");
        free(early[i]);
        early[i] = NULL;
    }
    void *p = calloc(1000, 8);
    if (!p || ((char *)p)[7999] != 0) fail("calloc in atexit");
    free(p);
    stages++;
}

__attribute__((destructor(110))) static void after_main(void) {
    char *q = malloc(300);
    if (!q) fail("malloc in a destructor");
    else {
        fill(q, 300, 9);
        q = realloc(q, 3u << 20);
        if (!q || !check(q, 300, 9)) fail("realloc in a destructor");
        free(q);
    }
    stages++;
    // Under hakmem (preloaded or linked), the late key destructors above must have been
    // served by the global heap: hakmem's own destructor had torn the thread cache down.
    uint64_t (*stat)(const char *) = (uint64_t(*)(const char *))dlsym(RTLD_DEFAULT, "hak_stat");
    if (!stat && getenv("LIFECYCLE_REQUIRE_HAKMEM")) fail("hakmem is not the allocator");
    // (thread_init is 0 only when the counters are compiled out: -DHAKMEM_STATS=OFF)
    if (stat && stat("thread_init") > 0 && (stat("global_heap_alloc") == 0 || stat("thread_exit") < 8))
        fail("exited-thread path not taken");
    if (failures == 0 && stages == 4) write(1, "lifecycle ok\n", 13);
    else _exit(3);
}

// Runs at thread exit; hakmem's own key destructor may already have run.
static void late_destructor(void *arg) {
    free(arg);
    for (int round = 0; round < 3; round++) {
        char *p = malloc(100 + round);
        if (!p) {
            fail("malloc in a late key destructor");
            return;
        }
        fill(p, 100, 5);
        if (!check(p, 100, 5)) fail("content in a late key destructor");
        free(p);
    }
}

static void *thread_main(void *arg) {
    (void)arg;
    pthread_setspecific(late_key, malloc(64));
    void *keep[100];
    for (int i = 0; i < 100; i++) keep[i] = malloc((size_t)i * 40 + 1);
    for (int i = 0; i < 100; i += 2) free(keep[i]);
    return keep[1];  // freed by main: a block that outlives its thread
}

int main(void) {
    atexit(at_exit_handler);
    void *first = malloc(1);  // hakmem's key exists before ours: ours runs after it
    if (pthread_key_create(&late_key, late_destructor) != 0) fail("pthread_key_create");
    for (int i = 0; i < 8; i++) {
        pthread_t t;
        void *ret = NULL;
        if (pthread_create(&t, NULL, thread_main, NULL) != 0 || pthread_join(t, &ret) != 0) fail("thread");
        free(ret);
    }
    free(first);
    stages++;
    return 0;
}
