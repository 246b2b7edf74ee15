/* footprint_pages: the anonymous memory of a process that made one small allocation, for
 * preload_footprint.sh, which runs it with and without hakmem preloaded. Prints the sum of
 * the "Anonymous:" kB of /proc/self/smaps over every mapping but the stack (whose resident
 * pages move by one with the randomised start of the stack) after malloc(64) and a write
 * into it. Reads with open/read into a stack buffer, so that measuring allocates nothing. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// One line of smaps: a mapping's header ("lo-hi perms offset dev inode [name]", which starts
// with a lowercase hex digit; field lines start with a capitalised name) sets in_stack; an
// "Anonymous:" line adds its kB unless the mapping is the stack.
static void take_line(const char *line, int *in_stack, long *sum) {
    if (strncmp(line, "Anonymous:", 10) == 0) {
        if (!*in_stack) *sum += strtol(line + 10, NULL, 10);
    } else if ((line[0] >= '0' && line[0] <= '9') || (line[0] >= 'a' && line[0] <= 'f')) {
        *in_stack = strstr(line, "[stack]") != NULL;
    }
}

int main(void) {
    volatile char *p = malloc(64);
    if (!p) return 2;
    p[0] = 1;
    int fd = open("/proc/self/smaps", O_RDONLY);
    if (fd < 0) return 3;
    char buf[8192], line[512];
    size_t len = 0;
    int in_stack = 0;
    long sum = 0;
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0) {
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] != '\n') {
                if (len < sizeof line - 1) line[len++] = buf[i];
                continue;
            }
            line[len] = '\0';
            take_line(line, &in_stack, &sum);
            len = 0;
        }
    }
    close(fd);
    if (n < 0) return 4;
    char out[64];
    int w = snprintf(out, sizeof out, "%ld\n", sum);
    if (write(1, out, (size_t)w) != w) return 5;
    free((void *)p);
    return 0;
}
