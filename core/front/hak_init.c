/* hak_init.c -- process hooks: fork handlers and the exit report.
 * Initialisation itself is lazy (the first refill does it, allocating nothing through
 * malloc); hak_front_init, run by the constructor in hak_api.c (so that a static link,
 * which pulls hak_api.o in for malloc, pulls this file in too), registers the fork
 * handlers, and hak_front_fini prints the counters when HAKMEM_DEBUG asks. May call every
 * module's fork functions and the stats report. */
#include <fcntl.h>
#include <pthread.h>

#include "hak_config.h"
#include "hak_large.h"
#include "hak_pagemap.h"
#include "hak_remote.h"
#include "hak_ss.h"
#include "hak_stats.h"
#include "hak_tls.h"
#include "hak_front.h"

// Lock everything in the one order the slow paths take locks, so that fork() never copies
// a lock held mid-update: heaps first, then the orphan list, pools, pagemap, stats.
static void fork_prepare(void) {
    hak_tls_fork_prepare();
    hak_orphan_fork_prepare();
    hak_ss_fork_prepare();
    hak_large_fork_prepare();
    hak_pagemap_fork_prepare();
    hak_stats_fork_prepare();
}

static void fork_parent(void) {
    hak_stats_fork_parent();
    hak_pagemap_fork_parent();
    hak_large_fork_parent();
    hak_ss_fork_parent();
    hak_orphan_fork_parent();
    hak_tls_fork_parent();
}

static void fork_child(void) {
    hak_stats_fork_child();
    hak_pagemap_fork_child();
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
    if (hak_config.debug) {
        int fd = fcntl(2, F_DUPFD_CLOEXEC, 100);
        if (fd >= 0) report_fd = fd;
    }
}

void hak_front_fini(void) {
    // the large path's call sites ride along as an extra section: core/base never calls up
    if (hak_config.debug) hak_stats_report(report_fd, hak_config.debug == 2, hak_large_report);
}
