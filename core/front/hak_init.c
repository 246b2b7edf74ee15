/* hak_init.c -- process hooks: fork handlers, the purge thread and the exit report.
 * Initialisation itself is lazy (the first refill does it, allocating nothing through
 * malloc); hak_front_init, run by the constructor in hak_api.c (so that a static link,
 * which pulls hak_api.o in for malloc, pulls this file in too), registers the fork
 * handlers, and hak_front_fini prints the counters when HAKMEM_DEBUG asks. May call every
 * module's fork functions and the stats report. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>

#include "hak_atomic.h"
#include "hak_config.h"
#include "hak_large.h"
#include "hak_pagemap.h"
#include "hak_remote.h"
#include "hak_ss.h"
#include "hak_stats.h"
#include "hak_tls.h"
#include "hak_front.h"
#include "hak_guard.h"

// Lock everything in the one order the slow paths take locks, so that fork() never copies
// a lock held mid-update: heaps first, then the orphan list, pools, pagemap, stats.
static void fork_prepare(void) {
    if (hak_config.fork_trim) hak_tls_fork_trim();  // drops every lock it takes before these
    hak_tls_fork_prepare();
    hak_orphan_fork_prepare();
    hak_ss_fork_prepare();
    hak_large_fork_prepare();
    hak_guard_fork_prepare();
    hak_pagemap_fork_prepare();
    hak_stats_fork_prepare();
}

static void fork_parent(void) {
    hak_stats_fork_parent();
    hak_pagemap_fork_parent();
    hak_guard_fork_parent();
    hak_large_fork_parent();
    hak_ss_fork_parent();
    hak_orphan_fork_parent();
    hak_tls_fork_parent();
}

/* ---- the purge thread ------------------------------------------------------------------
 * Gives memory back while the program makes no allocator calls: every HAKMEM_DECAY_MS / 2 it
 * releases the empty spans and free slabs of heaps that ran no slow path since its last pass
 * (hak_tls_purge_idle; their owners' fast paths do not touch what it takes), and the pooled
 * SuperSlabs and BigCache entries older than HAKMEM_DECAY_MS.
 * - Started lazily, never from init: the first flush, thread exit or large free after the
 *   constructor ran calls purge_kick, with no allocator lock held (pthread_create may call
 *   malloc; that malloc is an ordinary one). A program that never frees never gets it.
 * - Fork-safe: it takes only locks the fork handlers hold across fork, so the child copies
 *   none mid-update; the child has no purge thread, and its first kick starts one.
 * - All signals blocked in it, so the program's handlers never run there. Detached, small
 *   stack, never exits; process exit ends it. HAKMEM_PURGE_THREAD=0 or HAKMEM_DECAY_MS=0:
 *   none (then only allocator calls decay memory). */
enum { PURGE_NONE = 0, PURGE_RUNNING, PURGE_OFF };
static _Atomic int purge_state;

static void *purge_main(void *arg) {
    (void)arg;
    uint64_t ms = hak_config.decay_ms / 2;
    if (ms < 10) ms = 10;
    if (ms > 1000) ms = 1000;
    struct timespec period = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    for (;;) {
        struct timespec left = period;
        while (nanosleep(&left, &left) != 0 && errno == EINTR) {
        }
        hak_tls_purge_idle();
        hak_large_decay();
    }
    return NULL;
}

static void purge_kick(void) {
    if (hak_likely(hak_load_relaxed(&purge_state) != PURGE_NONE)) return;
    int expected = PURGE_NONE;
    if (!hak_cas_acq_rel(&purge_state, &expected, PURGE_RUNNING)) return;
    if (!hak_config.purge_thread || hak_config.decay_ms == 0) {
        hak_store_relaxed(&purge_state, PURGE_OFF);
        return;
    }
    pthread_attr_t attr;
    pthread_t t;
    sigset_t all, old;
    int ok = pthread_attr_init(&attr) == 0;
    if (ok) {
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attr, 64 << 10);
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);  // the new thread starts with this mask
        ok = pthread_create(&t, &attr, purge_main, NULL) == 0;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        pthread_attr_destroy(&attr);
    }
    if (!ok) hak_store_relaxed(&purge_state, PURGE_OFF);  // no thread: allocator calls decay
}

void hak_front_purge_kick(void) { purge_kick(); }

static void fork_child(void) {
    if (hak_load_relaxed(&purge_state) == PURGE_RUNNING) hak_store_relaxed(&purge_state, PURGE_NONE);
    hak_stats_fork_child();
    hak_pagemap_fork_child();
    hak_guard_fork_child();
    hak_large_fork_child();
    hak_ss_fork_child();
    hak_orphan_fork_child();
    hak_tls_fork_child();
}

// Programs may close stderr before exit (coreutils does): the report goes to a copy of
// fd 2 taken at load time.
static int report_fd = 2;

void hak_front_init(void) {
    hak_tls_global_init();
    pthread_atfork(fork_prepare, fork_parent, fork_child);
    hak_tls_set_idle_hook(purge_kick);
    if (hak_config.debug) {
        int fd = fcntl(2, F_DUPFD_CLOEXEC, 100);
        if (fd >= 0) report_fd = fd;
    }
}

void hak_front_fini(void) {
    // the large path's call sites ride along as an extra section: core/base never calls up
    if (hak_config.debug) hak_stats_report(report_fd, hak_config.debug == 2, hak_large_report);
}
