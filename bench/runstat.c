/* runstat.c -- run a program and report its peak RSS and page faults (bench/compare).
 *
 *   runstat PRELOAD OUTFILE program [args...]
 *
 * Forks, sets LD_PRELOAD=PRELOAD in the child (unset when PRELOAD is "-"), execs the
 * program, reaps it with wait4 and appends one line to OUTFILE:
 *
 *   runstat status=S maxrss_kb=K minflt=N majflt=N
 *
 * where S is the exit status, or 128+signal. Exits with the child's status.
 *
 * Why not measure from the runner itself: Linux carries the pre-exec RSS high-water mark
 * over exec into ru_maxrss, so a child forked from the Python runner reports at least the
 * runner's own RSS (about 13 MiB). This launcher is small, so its floor is about 1 MiB, and
 * only the child sees the preload (the launcher runs on glibc). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: runstat PRELOAD|- OUTFILE program [args...]\n");
        return 2;
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("runstat: fork");
        return 2;
    }
    if (pid == 0) {
        if (strcmp(argv[1], "-") == 0)
            unsetenv("LD_PRELOAD");
        else
            setenv("LD_PRELOAD", argv[1], 1);
        execvp(argv[3], argv + 3);
        fprintf(stderr, "runstat: exec %s: %s\n", argv[3], strerror(errno));
        _exit(127);
    }
    int st;
    struct rusage ru;
    while (wait4(pid, &st, 0, &ru) < 0) {
        if (errno != EINTR) {
            perror("runstat: wait4");
            return 2;
        }
    }
    int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    FILE *f = fopen(argv[2], "a");
    if (!f) {
        perror("runstat: output file");
        return 2;
    }
    fprintf(f, "runstat status=%d maxrss_kb=%ld minflt=%ld majflt=%ld\n", code, ru.ru_maxrss,
            ru.ru_minflt, ru.ru_majflt);
    fclose(f);
    return code;
}
