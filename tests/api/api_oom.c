/* api_oom.c -- running out of address space. A forked child lowers RLIMIT_AS to its
 * current size + 256 MiB, allocates large, then small and mid blocks until malloc returns
 * NULL (errno must be ENOMEM each time), checks that failing calls leave live blocks
 * intact, frees everything, and then allocates again: the allocator must keep working
 * and hand out correct memory. Skipped under AddressSanitizer and ThreadSanitizer, whose
 * shadow memory does not fit under an address-space limit. */
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_util.h"

#define HEADROOM (256 * MiB)
#define MAGIC ((uint64_t)0x6f6f6d2d626c6b00) /* "oom-blk" */

/* A block on one of our lists: next, an id, and the size asked for. */
typedef struct node {
    struct node *next;
    uint64_t id;
} node_t;

static size_t vm_size(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    CHECK(f != NULL, "open /proc/self/statm: %s", strerror(errno));
    unsigned long pages = 0;
    CHECK(fscanf(f, "%lu", &pages) == 1, "read /proc/self/statm");
    fclose(f);
    return (size_t)pages * (size_t)sysconf(_SC_PAGESIZE);
}

/* Allocate sizes[k % nsizes] until NULL; returns the list, the count in *count. */
static node_t *fill(const size_t *sizes, size_t nsizes, uint64_t id0, size_t *count, size_t limit) {
    node_t *head = NULL;
    size_t k = 0;
    for (; k < limit; k++) {
        size_t n = sizes[k % nsizes];
        errno = 0;
        node_t *b = hak_malloc(n);
        if (!b) {
            CHECK(errno == ENOMEM, "malloc(%zu) returned NULL with errno %d (%s), expected ENOMEM", n, errno,
                  strerror(errno));
            break;
        }
        b->next = head;
        b->id = MAGIC ^ (id0 + k);
        head = b;
    }
    CHECK(k < limit, "%zu allocations and no failure: the address-space limit did not bite", k);
    *count = k;
    return head;
}

static size_t check_and_free(node_t *head, uint64_t id0, size_t count, const char *what) {
    size_t k = count;
    while (head) {
        node_t *next = head->next;
        k--;
        CHECK(head->id == (MAGIC ^ (id0 + k)), "%s: block %p holds id %" PRIx64 ", expected %" PRIx64, what,
              (void *)head, head->id, MAGIC ^ (id0 + k));
        hak_free(head);
        head = next;
    }
    CHECK(k == 0, "%s: list has %zu blocks fewer than allocated", what, k);
    return count;
}

static void child(void) {
    size_t vm = vm_size();
    struct rlimit rl;
    CHECK(getrlimit(RLIMIT_AS, &rl) == 0, "getrlimit");
    rl.rlim_cur = vm + HEADROOM;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_cur > rl.rlim_max) _exit(TEST_SKIP);
    CHECK(setrlimit(RLIMIT_AS, &rl) == 0, "setrlimit(RLIMIT_AS): %s", strerror(errno));

    // 1. large blocks until the limit
    static const size_t large[] = {3 * MiB, MiB + 1, 5 * MiB};
    size_t nl = 0;
    node_t *ll = fill(large, 3, 0, &nl, 100000);
    CHECK(nl >= 10, "only %zu large blocks fit under a %zu MiB headroom", nl, HEADROOM / MiB);
    // more large requests keep failing cleanly
    for (int i = 0; i < 5; i++) {
        errno = 0;
        void *p = hak_malloc(3 * MiB);
        CHECK(p == NULL && errno == ENOMEM, "malloc(3 MiB) at the limit: %p errno %d", p, errno);
        errno = 0;
        p = hak_calloc(1, 8 * MiB);
        CHECK(p == NULL && errno == ENOMEM, "calloc(1, 8 MiB) at the limit: %p errno %d", p, errno);
    }
    // 2. give back about half of it (every other block), then small and mid blocks
    size_t kept = 0, given = 0;
    node_t *keep = NULL;
    for (node_t *b = ll, *next; b; b = next) {
        next = b->next;
        if (((b->id ^ MAGIC) & 1) == 0) {
            hak_free(b);
            given++;
        } else {
            b->next = keep;  // reversed: ids now ascend from the head
            keep = b;
            kept++;
        }
    }
    CHECK(given > 0, "nothing freed");
    static const size_t small[] = {16, 100, 1000, 64, 5000, 70000, 256, 300 * KiB};
    size_t ns = 0;
    node_t *sl = fill(small, sizeof small / sizeof small[0], 1000000, &ns, 10000000);
    CHECK(ns >= 100, "only %zu small/mid blocks before the limit", ns);

    // 3. failures at the limit leave live blocks alone
    node_t *victim = sl;  // the last small block allocated
    uint64_t vid = victim->id;
    for (int i = 0; i < 3; i++) {
        errno = 0;
        void *q = hak_realloc(victim, 64 * MiB);
        CHECK(q == NULL && errno == ENOMEM, "realloc to 64 MiB at the limit: %p errno %d", q, errno);
        CHECK(victim->id == vid, "a failed realloc changed the block");
        void *a = (void *)0x1;
        int rc = hak_posix_memalign(&a, 4096, 64 * MiB);
        CHECK(rc == ENOMEM && a == (void *)0x1, "posix_memalign at the limit: %d", rc);
    }

    // 4. everything we hold is intact; free it all
    size_t k = kept;
    for (node_t *b = keep, *next; b; b = next) {
        next = b->next;
        uint64_t id = b->id ^ MAGIC;
        CHECK((id & 1) == 1 && id < nl, "kept large block %p holds a bad id %" PRIx64, (void *)b, id);
        hak_free(b);
        k--;
    }
    CHECK(k == 0, "lost large blocks");
    check_and_free(sl, 1000000, ns, "small/mid blocks");
    hak_trim(0);

    // 5. the allocator works again, for every tier, with correct content
    for (int round = 0; round < 2; round++) {
        enum { NL2 = 40, NS2 = 1000 };
        void *lp[NL2], *sp[NS2];
        for (int i = 0; i < NL2; i++) {
            size_t n = i % 2 ? 3 * MiB : MiB + 4096;
            lp[i] = hak_malloc(n);
            CHECK(lp[i] != NULL, "round %d: malloc(%zu) #%d failed after the frees (errno %d)", round, n, i, errno);
            touch_all(lp[i], n, (uint32_t)i);
        }
        for (int i = 0; i < NS2; i++) {
            size_t n = small[i % (sizeof small / sizeof small[0])];
            sp[i] = hak_malloc(n);
            CHECK(sp[i] != NULL, "round %d: malloc(%zu) #%d failed after the frees (errno %d)", round, n, i, errno);
            fill_pat(sp[i], n < 4096 ? n : 4096, (uint32_t)i + 7);
        }
        for (int i = 0; i < NL2; i++) {
            size_t n = i % 2 ? 3 * MiB : MiB + 4096;
            CHECK(check_touched(lp[i], n, (uint32_t)i) == SIZE_MAX, "large block %d corrupted", i);
            hak_free(lp[i]);
        }
        for (int i = 0; i < NS2; i++) {
            size_t n = small[i % (sizeof small / sizeof small[0])];
            CHECK(find_bad_pat(sp[i], 0, n < 4096 ? n : 4096, (uint32_t)i + 7) == SIZE_MAX, "block %d corrupted", i);
            hak_free(sp[i]);
        }
    }
    // and the limit still bites the same way
    hak_trim(0);
    size_t nl3 = 0;
    node_t *l3 = fill(large, 3, 0, &nl3, 100000);
    CHECK(nl3 + 8 >= nl, "after recovery only %zu large blocks fit, %zu before", nl3, nl);
    check_and_free(l3, 0, nl3, "large blocks, second fill");
    _exit(0);
}

int main(void) {
    if (TEST_ASAN || TEST_TSAN) {
        printf("skipped: RLIMIT_AS cannot be used under a sanitizer (shadow memory)\n");
        return TEST_SKIP;
    }
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        alarm(30);
        child();
    }
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid, "waitpid");
    if (WIFEXITED(status) && WEXITSTATUS(status) == TEST_SKIP) {
        printf("skipped: cannot raise RLIMIT_AS to the needed value\n");
        return TEST_SKIP;
    }
    CHECK(!WIFSIGNALED(status), "the child died of signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child failed (status %d)", WEXITSTATUS(status));
    printf("ok: allocations fail with ENOMEM at the limit and succeed again after the frees\n");
    return 0;
}
