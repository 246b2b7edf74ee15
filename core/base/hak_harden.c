/* hak_harden.c -- the secrets of hak_harden.h. */
#define _GNU_SOURCE
#include "hak_harden.h"

#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

uintptr_t hak_free_key;
uintptr_t hak_link_key;

static uintptr_t make_secret(uintptr_t salt) {
    uintptr_t k = 0;
#ifdef SYS_getrandom
    if (syscall(SYS_getrandom, &k, sizeof k, 1 /* GRND_NONBLOCK */) != (long)sizeof k) k = 0;
#endif
    if (k == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        k = ((uintptr_t)ts.tv_nsec + salt) * 0x9e3779b97f4a7c15ull ^ (uintptr_t)&ts ^ ((uintptr_t)getpid() << 32);
    }
    // odd: never equal to an aligned pointer or to NULL
    return k | 1u;
}

void hak_harden_init(void) {
    hak_free_key = make_secret(1);
    // A second draw: reading a free block's mark (a use after free that reads) must not
    // give away the key of its link.
    do hak_link_key = make_secret(2);
    while (hak_link_key == hak_free_key);
}
