/* Loads and unloads the plugin repeatedly; each load allocates in constructors, threads and
 * destructors of code that was not there when the process started. */
#include <dlfcn.h>
#include <stdio.h>

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    for (int round = 0; round < 20; round++) {
        void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            fprintf(stderr, "dlopen: %s\n", dlerror());
            return 1;
        }
        int (*run)(void) = (int (*)(void))dlsym(h, "plugin_run");
        int rc = run ? run() : 9;
        if (rc != 0) {
            fprintf(stderr, "plugin_run failed: %d (round %d)\n", rc, round);
            return 1;
        }
        dlclose(h);
    }
    puts("dlopen ok");
    return 0;
}
