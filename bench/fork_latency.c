/* fork_latency.c -- how long fork() takes in a program with many free blocks among live ones.
 *
 *   fork_latency [blocks (2000000)] [size (64)] [forks (7)]
 *
 * Allocates `blocks` blocks of `size` bytes, writes them, frees every other one (no page is
 * left wholly free), then forks `forks` times; each child exits at once. Between forks the
 * freed half is allocated and freed again. Prints the median and range of the time fork()
 * took in the parent. Plain malloc: run it under each allocator (LD_PRELOAD), and under
 * hakmem with HAKMEM_FORK_TRIM=0 and 1, to see what the trim before fork costs
 * (docs/DESIGN-NOTES.md, "Fork"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 2000000;
    size_t size = argc > 2 ? strtoul(argv[2], NULL, 10) : 64;
    int forks = argc > 3 ? atoi(argv[3]) : 7;
    if (n < 2 || size == 0 || forks < 1 || forks > 1000) {
        fprintf(stderr, "usage: fork_latency [blocks >= 2] [size >= 1] [forks 1..1000]\n");
        return 2;
    }
    void **p = malloc(n * sizeof *p);
    double *ms = malloc((size_t)forks * sizeof *ms);
    if (!p || !ms) return 1;
    for (size_t i = 0; i < n; i++) {
        p[i] = malloc(size);
        if (!p[i]) return 1;
        memset(p[i], 1, size);
    }
    for (size_t i = 0; i < n; i += 2) free(p[i]);
    for (int r = 0; r < forks; r++) {
        double t0 = now_ms();
        pid_t pid = fork();
        if (pid == 0) _exit(0);
        ms[r] = now_ms() - t0;
        if (pid < 0 || waitpid(pid, NULL, 0) != pid) return 1;
        for (size_t i = 0; i < n; i += 2) {
            p[i] = malloc(size);
            if (!p[i]) return 1;
            memset(p[i], 1, size);
        }
        for (size_t i = 0; i < n; i += 2) free(p[i]);
    }
    qsort(ms, (size_t)forks, sizeof *ms, cmp);
    printf("fork_latency blocks=%zu size=%zu forks=%d median_ms=%.2f min_ms=%.2f max_ms=%.2f\n", n, size, forks,
           ms[forks / 2], ms[0], ms[forks - 1]);
    for (size_t i = 1; i < n; i += 2) free(p[i]);
    free(p);
    free(ms);
    return 0;
}
