/* test_thp.c -- transparent huge pages (HAKMEM_THP, HAKMEM_THP_MIN): which mappings carry the
 * MADV_HUGEPAGE advice, read back from the "hg" flag of their VMA in /proc/self/smaps (the
 * flag is the advice itself, so it shows whatever the kernel's THP setting), the parsing of
 * both variables and of the kernel's setting, and the report's THP and page-fault lines.
 * Each case runs in its own process; the CMakeLists sets HAKMEM_THP (and _MIN) per case.
 * White-box: reads hak_config and calls hak_config_init / hak_os_thp_parse directly. */
#include <sys/resource.h>
#include <unistd.h>

#include "hak_config.h"
#include "hak_os.h"
#include "test_util.h"

/* ---- helpers -------------------------------------------------------------------------- */

/* 1 if the VMA holding p lists flag (a two-letter VmFlags mnemonic) in /proc/self/smaps, 0 if
 * it does not; fails when no VMA holds p. */
static int vma_has_flag(const void *p, const char *flag) {
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) {
        printf("no /proc/self/smaps: %s\n", strerror(errno));
        exit(TEST_SKIP);
    }
    char line[1024];
    int inside = 0, found = -1;
    uintptr_t a = (uintptr_t)p;
    while (found < 0 && fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        char perms[8];
        if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) == 3) {
            inside = a >= lo && a < hi;
            continue;
        }
        if (!inside || strncmp(line, "VmFlags:", 8) != 0) continue;
        found = 0;
        for (char *tok = strtok(line + 8, " \n"); tok; tok = strtok(NULL, " \n"))
            if (strcmp(tok, flag) == 0) found = 1;
    }
    fclose(f);
    CHECK(found >= 0, "no VMA (or no VmFlags line) holds %p", p);
    return found;
}

static int huge(const void *p) { return vma_has_flag(p, "hg"); }

static uint64_t stat(const char *name) {
    uint64_t v = hak_stat(name);
    CHECK(v != UINT64_MAX, "unknown counter %s", name);
    return v;
}

/* The kernel's setting as this test reads it (stdio: the test may allocate). */
static hak_os_thp_t kernel_setting(void) {
    char buf[128];
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    if (!f) return HAK_OS_THP_UNKNOWN;
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    return hak_os_thp_parse(buf, n);
}

static void *touched(size_t n) {
    char *p = hak_malloc(n);
    CHECK(p != NULL, "malloc(%zu)", n);
    memset(p, 0x5a, n);
    return p;
}

/* ---- cases ---------------------------------------------------------------------------- */

/* The bracketed word of the sysfs file, and nothing else, names the setting. */
static void t_parse(void) {
    static const struct {
        const char *text;
        hak_os_thp_t want;
    } rows[] = {
        {"always [madvise] never\n", HAK_OS_THP_MADVISE},
        {"[always] madvise never\n", HAK_OS_THP_ALWAYS},
        {"always madvise [never]\n", HAK_OS_THP_NEVER},
        {"always madvise [never]", HAK_OS_THP_NEVER},
        {"always madvise never\n", HAK_OS_THP_UNKNOWN},
        {"always [madv", HAK_OS_THP_UNKNOWN},
        {"[inherit] always madvise never\n", HAK_OS_THP_UNKNOWN},
        {"", HAK_OS_THP_UNKNOWN},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        hak_os_thp_t got = hak_os_thp_parse(rows[i].text, strlen(rows[i].text));
        CHECK(got == rows[i].want, "parse(\"%s\") = %d, expected %d", rows[i].text, (int)got, (int)rows[i].want);
    }
    CHECK(hak_os_thp_setting() == kernel_setting(), "hakmem reads setting %d, the test %d",
          (int)hak_os_thp_setting(), (int)kernel_setting());
    printf("kernel THP setting: %d (1 always, 2 madvise, 3 never, 0 unknown)\n", (int)kernel_setting());
}

/* HAKMEM_THP and HAKMEM_THP_MIN, and what they come to: hak_config_init again after each
 * setenv (only the THP fields depend on these variables). */
static void t_config(void) {
    static const struct {
        const char *thp, *min; /* NULL: unset */
        int mode;
        size_t min_bytes;
    } rows[] = {
        {NULL, NULL, HAK_THP_OFF, 2 * MiB},
        {"auto", NULL, HAK_THP_AUTO, 2 * MiB},
        {"0", NULL, HAK_THP_OFF, 2 * MiB},
        {"1", NULL, HAK_THP_ON, 2 * MiB},
        {"1", "4M", HAK_THP_ON, 4 * MiB},
        {"1", "8MiB", HAK_THP_ON, 8 * MiB},
        {"auto", "1G", HAK_THP_AUTO, (size_t)1 << 30},
        {"0", "512k", HAK_THP_OFF, 512 * KiB},
        {"1", "3145728", HAK_THP_ON, 3 * MiB},
        {"1", "0", HAK_THP_ON, 0},
        // anything else leaves the default
        {"yes", "2X", HAK_THP_OFF, 2 * MiB},
        {"", "", HAK_THP_OFF, 2 * MiB},
        {"10", "-1", HAK_THP_OFF, 2 * MiB},
        {"always", "99999999999999999999", HAK_THP_OFF, 2 * MiB},
        {"1", "17179869184G", HAK_THP_ON, 2 * MiB},
    };
    int kernel_madvise = kernel_setting() == HAK_OS_THP_MADVISE;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        if (rows[i].thp) setenv("HAKMEM_THP", rows[i].thp, 1);
        else unsetenv("HAKMEM_THP");
        if (rows[i].min) setenv("HAKMEM_THP_MIN", rows[i].min, 1);
        else unsetenv("HAKMEM_THP_MIN");
        hak_config_init();
        const char *t = rows[i].thp ? rows[i].thp : "(unset)", *m = rows[i].min ? rows[i].min : "(unset)";
        CHECK(hak_config.thp == rows[i].mode, "HAKMEM_THP=%s: mode %d, expected %d", t, hak_config.thp, rows[i].mode);
        CHECK(hak_config.thp_min == rows[i].min_bytes, "HAKMEM_THP_MIN=%s: %zu, expected %zu", m, hak_config.thp_min,
              rows[i].min_bytes);
        int large = rows[i].mode == HAK_THP_ON || (rows[i].mode == HAK_THP_AUTO && kernel_madvise);
        size_t want_large_min = large ? rows[i].min_bytes : SIZE_MAX;
        CHECK(hak_config.thp_large_min == want_large_min, "HAKMEM_THP=%s HAKMEM_THP_MIN=%s: large blocks from %zu, expected %zu",
              t, m, hak_config.thp_large_min, want_large_min);
        CHECK(hak_config.thp_ss == (rows[i].mode == HAK_THP_ON), "HAKMEM_THP=%s: SuperSlabs advised %d", t,
              hak_config.thp_ss);
    }
    unsetenv("HAKMEM_THP");
    unsetenv("HAKMEM_THP_MIN");
    hak_config_init();
}

/* HAKMEM_THP=1: large blocks from 2 MiB and SuperSlabs carry the advice; it stays with a
 * block through realloc (mremap) and the BigCache. */
static void t_on(void) {
    CHECK(hak_config.thp == HAK_THP_ON, "HAKMEM_THP=1 not in force (mode %d)", hak_config.thp);
    void *small = touched(64);
    CHECK(huge(small), "the SuperSlab of a small block lacks hg");
    char *p = touched(4 * MiB);
    CHECK(huge(p) && huge(p + 4 * MiB - 1), "a 4 MiB block lacks hg");
    void *below = touched(3 * MiB / 2);  // its class is 1.5 MiB: under the 2 MiB default
    CHECK(!huge(below), "a 1.5 MiB block has hg under HAKMEM_THP_MIN=2M");
    if (TEST_STATS) {
        CHECK(stat("thp_advised") >= 2, "thp_advised %" PRIu64, stat("thp_advised"));
        CHECK(stat("thp_advised_bytes") >= 6 * MiB, "thp_advised_bytes %" PRIu64, stat("thp_advised_bytes"));
    }
    // grown in place or moved by mremap, the mapping keeps its flags
    p = hak_realloc(p, 24 * MiB);
    CHECK(p != NULL, "realloc to 24 MiB");
    memset(p, 1, 24 * MiB);
    CHECK(huge(p) && huge(p + 24 * MiB - 1), "a block grown to 24 MiB lost hg");
    uint64_t advised = stat("thp_advised");
    hak_free(p);
    char *q = touched(24 * MiB);  // the BigCache's block: advised when it was mapped
    CHECK(huge(q), "a 24 MiB block from the BigCache lacks hg");
    if (TEST_STATS) CHECK(stat("thp_advised") == advised, "a BigCache hit advised again");
    hak_free(q);
    hak_free(below);
    hak_free(small);
}

/* HAKMEM_THP=1 HAKMEM_THP_MIN=8M: the bound applies to large blocks only. */
static void t_min(void) {
    CHECK(hak_config.thp == HAK_THP_ON && hak_config.thp_min == 8 * MiB, "HAKMEM_THP=1 HAKMEM_THP_MIN=8M not in force");
    void *small = touched(64);
    CHECK(huge(small), "the SuperSlab of a small block lacks hg");
    char *p = touched(4 * MiB), *q = touched(8 * MiB);
    CHECK(!huge(p), "a 4 MiB block has hg under HAKMEM_THP_MIN=8M");
    CHECK(huge(q) && huge(q + 8 * MiB - 1), "an 8 MiB block lacks hg under HAKMEM_THP_MIN=8M");
    hak_free(p);
    hak_free(q);
    hak_free(small);
}

/* HAKMEM_THP=0: nothing is advised. */
static void t_off(void) {
    CHECK(hak_config.thp == HAK_THP_OFF, "HAKMEM_THP=0 not in force (mode %d)", hak_config.thp);
    void *small = touched(64);
    char *p = touched(4 * MiB), *q = touched(32 * MiB);
    CHECK(!huge(small), "the SuperSlab of a small block has hg under HAKMEM_THP=0");
    CHECK(!huge(p) && !huge(q), "a large block has hg under HAKMEM_THP=0");
    CHECK(stat("thp_advised") == 0 && stat("thp_advised_bytes") == 0, "%" PRIu64 " advice under HAKMEM_THP=0",
          stat("thp_advised"));
    hak_free(p);
    hak_free(q);
    hak_free(small);
}

/* HAKMEM_THP=auto: large blocks only, and only when the kernel's setting is madvise. */
static void t_auto(void) {
    CHECK(hak_config.thp == HAK_THP_AUTO, "HAKMEM_THP=auto not in force (mode %d)", hak_config.thp);
    int want = kernel_setting() == HAK_OS_THP_MADVISE;
    void *small = touched(64);
    char *p = touched(4 * MiB);
    CHECK(!huge(small), "the SuperSlab of a small block has hg under auto");
    CHECK(huge(p) == want, "a 4 MiB block: hg %d under auto, kernel setting %d", huge(p), (int)kernel_setting());
    if (TEST_STATS) CHECK(stat("thp_advised") == (uint64_t)want, "thp_advised %" PRIu64, stat("thp_advised"));
    hak_free(p);
    hak_free(small);
}

/* The report has the THP counters and the process's page faults (text and JSON), and
 * hak_stat knows the faults too. */

static void t_report(void) {
    char *p = touched(4 * MiB);
    struct rusage ru;
    CHECK(getrusage(RUSAGE_SELF, &ru) == 0, "getrusage");
    uint64_t minflt = stat("os_minflt");
    CHECK(minflt >= (uint64_t)ru.ru_minflt && minflt > 0, "os_minflt %" PRIu64 ", getrusage said %ld", minflt,
          ru.ru_minflt);
    CHECK(stat("os_majflt") != UINT64_MAX, "os_majflt unknown");
    char *txt = test_report(0);
    static const char *const names[] = {"thp_advised ", "thp_advised_bytes ", "os_minflt ", "os_majflt "};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *at = strstr(txt, names[i]);
        CHECK(at != NULL, "text report lacks %s:\n%s", names[i], txt);
        unsigned long long v;
        CHECK(sscanf(at + strlen(names[i]), "%llu", &v) == 1, "no value on the %s line", names[i]);
        if (TEST_STATS && strcmp(names[i], "thp_advised ") == 0)
            CHECK(v == hak_stat("thp_advised"), "thp_advised printed %llu, hak_stat says %" PRIu64, v,
                  hak_stat("thp_advised"));
    }
    free(txt);
    char *js = test_report(1);
    CHECK(strstr(js, "\"thp_advised\":") && strstr(js, "\"os_minflt\":") && strstr(js, "\"os_majflt\":"),
          "JSON report lacks the THP or fault members:\n%s", js);
    free(js);
    hak_free(p);
}

/* HAKMEM_THP=1: a cached block below HAKMEM_THP_MIN, grown for a request above it, gets
 * the advice a block mapped at that size would have. */
static void t_grow(void) {
    CHECK(hak_config.thp == HAK_THP_ON, "HAKMEM_THP=1 not in force (mode %d)", hak_config.thp);
    hak_trim(0);
    char *below = touched(3 * MiB / 2);
    CHECK(!huge(below), "a 1.5 MiB block has hg under HAKMEM_THP_MIN=2M");
    hak_free(below);
    char *p = touched(4 * MiB);  // nothing larger cached: the 1.5 MiB block is grown
    if (TEST_STATS) CHECK(stat("bigcache_hit_grow") == 1, "bigcache_hit_grow %" PRIu64, stat("bigcache_hit_grow"));
    CHECK(huge(p) && huge(p + 4 * MiB - 1), "a block grown to 4 MiB lacks hg");
    hak_free(p);
}

static const test_case_t cases[] = {
    {"parse", t_parse}, {"config", t_config}, {"on", t_on},         {"min", t_min},
    {"off", t_off},     {"auto", t_auto},     {"report", t_report}, {"grow", t_grow},
};

int main(int argc, char **argv) { return run_cases(argc, argv, cases, sizeof cases / sizeof cases[0]); }
