/* test_ss_corrupt.c -- a free block's link overwritten (a write after free) to point at a
 * live block: the idle purge, walking the list, must stop with "free list corrupted" and not
 * zero the live block's page. The purge runs in a child; the parent checks that it died of
 * SIGABRT with that message on stderr. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "check.h"
#include "hak_config.h"
#include "hak_harden.h"
#include "hak_sizeclass.h"
#include "hak_ss.h"
static int owner_token;
int main(void) {
    hak_harden_init();
    int fp;
    hak_ss_t *ss = hak_ss_acquire(&owner_token, &fp);
    hak_slab_t *s = hak_ss_span_start(ss, (unsigned)hak_sc_for(64));
    void *head, *tail;
    unsigned cap = hak_slab_carve(s, s->capacity, &head, &tail);
    // blocks 0..63 (page 0) free, 64..127 (page 1) live, the rest out too
    void **prev = NULL;
    s->free = NULL;
    for (unsigned k = 0; k < 64; k++) {
        void **b = (void **)(s->start + k * 64);
        b[1] = (void *)hak_free_key;
        if (prev) hak_link_set(prev, b); else s->free = b;
        prev = b;
    }
    hak_link_set(prev, NULL);
    s->free_count = 64;
    s->used = cap - 64;
    memset(s->start + 4096, 0x5a, 4096);  // page 1: live data
    // a write after free into block 10's first word: its link now leads into page 1
    hak_link_set((void **)(s->start + 10 * 64), s->start + 64 * 64);
    int fd[2];
    CHECK(pipe(fd) == 0, "pipe");
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        dup2(fd[1], 2);
        size_t bytes = hak_ss_purge_free_blocks(ss);
        printf("purged %zu bytes, live byte now %#x\n", bytes, (unsigned char)s->start[4096 + 100]);
        _exit(0);
    }
    close(fd[1]);
    char msg[512];
    ssize_t n, got = 0;
    while (got < (ssize_t)sizeof msg - 1 && (n = read(fd[0], msg + got, sizeof msg - 1 - (size_t)got)) > 0) got += n;
    msg[got] = 0;
    int st;
    CHECK(waitpid(pid, &st, 0) == pid, "waitpid");
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "the purge went on over a corrupted list (status %#x)", st);
    CHECK(strstr(msg, "free list corrupted") != NULL, "the purge died without the message: %s", msg);
    CHECK((unsigned char)s->start[4096 + 100] == 0x5a, "live data in page 1 changed");
    printf("ok: %s", msg);
    return 0;
}
