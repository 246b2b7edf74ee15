/* api_info.c -- introspection: hak_info, hak_trim, hak_stat / hak_stat_sc, the text and
 * JSON reports of hak_stats_print, and the size-class functions. */
#include <sys/mman.h>
#include <unistd.h>

#include "test_util.h"

/* ---- helpers ------------------------------------------------------------------------ */

static void info_sane(const hak_info_t *in, const char *when) {
    CHECK(in->mapped_bytes >= in->in_use_bytes, "%s: mapped %zu < in use %zu", when, in->mapped_bytes,
          in->in_use_bytes);
    CHECK(in->mapped_bytes == in->ss_bytes + in->large_bytes + in->large_cached_bytes,
          "%s: mapped %zu != ss %zu + large %zu + cached %zu", when, in->mapped_bytes, in->ss_bytes, in->large_bytes,
          in->large_cached_bytes);
    CHECK(in->free_bytes == in->mapped_bytes - in->in_use_bytes, "%s: free %zu != mapped %zu - in use %zu", when,
          in->free_bytes, in->mapped_bytes, in->in_use_bytes);
    CHECK(in->ss_pooled_bytes <= in->ss_bytes, "%s: pooled %zu > ss %zu", when, in->ss_pooled_bytes, in->ss_bytes);
    CHECK(in->ss_bytes % (2 * MiB) == 0, "%s: ss_bytes %zu is not whole SuperSlabs", when, in->ss_bytes);
    CHECK(in->in_use_bytes >= in->large_bytes, "%s: in use %zu < large %zu", when, in->in_use_bytes,
          in->large_bytes);
    CHECK((in->large_count == 0) == (in->large_bytes == 0), "%s: large_count %zu vs large_bytes %zu", when,
          in->large_count, in->large_bytes);
}


/* ---- hak_info ----------------------------------------------------------------------- */

static void t_info(void) {
    hak_info_t base, in;
    void *warm = hak_malloc(8);  // set the thread heap up
    hak_info(&base);
    info_sane(&base, "baseline");
    CHECK(base.thread_heaps >= 1, "thread_heaps %zu after an allocation", base.thread_heaps);

    // large blocks: large_count and large_bytes follow them one by one
    static const size_t large[] = {MiB + 1, 3 * MiB, 17 * MiB, 2 * MiB, 2 * MiB + 1, 5 * MiB - 3};
    enum { NL = sizeof large / sizeof large[0] };
    void *lp[NL];
    size_t bytes = 0;
    for (size_t i = 0; i < NL; i++) {
        lp[i] = hak_malloc(large[i]);
        CHECK(lp[i] != NULL, "malloc(%zu)", large[i]);
        bytes += hak_usable_size(lp[i]);
        hak_info(&in);
        info_sane(&in, "large allocations");
        CHECK(in.large_count == base.large_count + i + 1, "after %zu large blocks: large_count %zu (base %zu)", i + 1,
              in.large_count, base.large_count);
        CHECK(in.large_bytes == base.large_bytes + bytes, "large_bytes %zu, expected %zu", in.large_bytes,
              base.large_bytes + bytes);
        CHECK(in.mapped_bytes >= base.mapped_bytes + bytes, "mapped %zu did not grow by %zu", in.mapped_bytes, bytes);
        CHECK(in.in_use_bytes >= base.in_use_bytes + bytes, "in use %zu did not grow by %zu", in.in_use_bytes, bytes);
    }
    for (size_t i = 0; i < NL; i++) {
        bytes -= hak_usable_size(lp[i]);
        hak_free(lp[i]);
        hak_info(&in);
        info_sane(&in, "large frees");
        CHECK(in.large_count == base.large_count + NL - i - 1, "after freeing %zu: large_count %zu", i + 1,
              in.large_count);
        CHECK(in.large_bytes == base.large_bytes + bytes, "large_bytes %zu, expected %zu", in.large_bytes,
              base.large_bytes + bytes);
    }
    // a large realloc changes large_bytes, not large_count
    void *r = hak_malloc(3 * MiB);
    CHECK(r != NULL, "malloc(3 MiB)");
    r = hak_realloc(r, 9 * MiB);
    CHECK(r != NULL, "realloc to 9 MiB");
    hak_info(&in);
    CHECK(in.large_count == base.large_count + 1 && in.large_bytes == base.large_bytes + hak_usable_size(r),
          "after a large realloc: count %zu bytes %zu", in.large_count, in.large_bytes);
    hak_free(r);

    // small and mid blocks: in_use grows by at least what is live
    enum { NS = 3000 };
    void **sp = malloc(NS * sizeof *sp);
    CHECK(sp != NULL, "out of memory in the test");
    size_t live = 0;
    for (size_t i = 0; i < NS; i++) {
        size_t n = i % 10 == 0 ? 20000 : 64;
        sp[i] = hak_malloc(n);
        CHECK(sp[i] != NULL, "malloc(%zu)", n);
        live += hak_usable_size(sp[i]);
    }
    hak_info(&in);
    info_sane(&in, "small blocks live");
    CHECK(in.in_use_bytes >= base.in_use_bytes + live, "in use %zu, expected at least %zu + %zu live",
          in.in_use_bytes, base.in_use_bytes, live);
    CHECK(in.ss_bytes > base.ss_bytes || in.ss_bytes >= live, "ss_bytes %zu with %zu live", in.ss_bytes, live);
    for (size_t i = 0; i < NS; i++) hak_free(sp[i]);
    free(sp);
    hak_info(&in);
    info_sane(&in, "small blocks freed");
    hak_free(warm);
}

/* hakmem.h: in_use_bytes counts "bytes in blocks handed out (thread caches count as
 * free)". So one live block adds its usable size, and freeing it takes that away again,
 * however many blocks the refill moved into this thread's cache. (Size 1500 is a class no
 * other case here uses, so its cache starts empty also when every case runs in turn.) */
static void t_info_thread_cache(void) {
    void *warm = hak_malloc(200);  // heap set-up, in another class than the one measured
    CHECK(warm != NULL, "malloc(200)");
    hak_info_t a, b, c;
    hak_info(&a);
    void *p = hak_malloc(1500);
    CHECK(p != NULL, "malloc(1500)");
    size_t u = hak_usable_size(p);
    hak_info(&b);
    hak_free(p);
    hak_info(&c);
    CHECK(b.in_use_bytes == a.in_use_bytes + u,
          "one live block of %zu bytes changed in_use_bytes by %zd bytes (blocks in the thread cache should "
          "count as free)",
          u, (ssize_t)(b.in_use_bytes - a.in_use_bytes));
    CHECK(c.in_use_bytes == a.in_use_bytes,
          "after freeing the block in_use_bytes is %zd bytes above where it started, expected 0",
          (ssize_t)(c.in_use_bytes - a.in_use_bytes));
    hak_free(warm);
}

/* ---- hak_trim ----------------------------------------------------------------------- */

static void t_trim(void) {
    int rc = hak_trim(0);
    CHECK(rc == 0 || rc == 1, "hak_trim(0) = %d", rc);
    // fill several SuperSlabs with mid blocks, free them all, trim: memory goes back
    enum { N = 400 };
    void *p[N];
    for (int i = 0; i < N; i++) {
        p[i] = hak_malloc(100 * KiB);
        CHECK(p[i] != NULL, "malloc(100 KiB)");
        memset(p[i], 0x5a, 100 * KiB);
    }
    for (int i = 0; i < N; i++) hak_free(p[i]);
    hak_info_t before, after;
    hak_info(&before);
    rc = hak_trim(0);
    hak_info(&after);
    CHECK(rc == 1, "hak_trim(0) after freeing 40 MiB returned %d, expected 1 (memory released)", rc);
    info_sane(&after, "after trim");
    CHECK(after.ss_pooled_bytes == 0, "pooled SuperSlabs remain after trim: %zu bytes", after.ss_pooled_bytes);
    CHECK(after.mapped_bytes < before.mapped_bytes, "trim released nothing: mapped %zu -> %zu",
          before.mapped_bytes, after.mapped_bytes);
    rc = hak_trim(1 * MiB);
    CHECK(rc == 0 || rc == 1, "hak_trim(1 MiB) = %d", rc);
    // everything still works after a trim, in every tier, with fresh and recycled memory
    static const size_t sizes[] = {16, 100, 1000, 5000, 100 * KiB, MiB, 3 * MiB};
    for (int round = 0; round < 3; round++) {
        void *q[sizeof sizes / sizeof sizes[0]][20];
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
            for (int j = 0; j < 20; j++) {
                q[s][j] = hak_malloc(sizes[s]);
                CHECK(q[s][j] != NULL, "malloc(%zu) after trim", sizes[s]);
                fill_pat(q[s][j], sizes[s], (uint32_t)(s * 100 + (size_t)j));
            }
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
            for (int j = 0; j < 20; j++) {
                CHECK(find_bad_pat(q[s][j], 0, sizes[s], (uint32_t)(s * 100 + (size_t)j)) == SIZE_MAX,
                      "block of %zu corrupted after trim", sizes[s]);
                hak_free(q[s][j]);
            }
        rc = hak_trim(0);
        CHECK(rc == 0 || rc == 1, "hak_trim(0) = %d", rc);
    }
}

/* ---- counters ----------------------------------------------------------------------- */

static void t_stat(void) {
    CHECK(hak_stat("no_such_counter") == UINT64_MAX, "unknown counter gave %" PRIu64, hak_stat("no_such_counter"));
    CHECK(hak_stat("") == UINT64_MAX, "empty counter name gave %" PRIu64, hak_stat(""));
    CHECK(hak_stat("free_tls_sl") == UINT64_MAX, "a prefix of a counter name must not match");
    CHECK(hak_stat_sc("no_such", 0) == UINT64_MAX, "unknown per-class counter gave %" PRIu64,
          hak_stat_sc("no_such", 0));
    enum { N = 500 };
    void *p[N];
    int sc = hak_sc_of(48);
    CHECK(sc >= 0, "hak_sc_of(48) = %d", sc);
    uint64_t alloc0 = hak_stat_sc("sc_alloc", (unsigned)sc), young0 = hak_stat("alloc_young");
    for (int i = 0; i < N; i++) {
        p[i] = hak_malloc(48);
        CHECK(p[i] != NULL, "malloc(48)");
    }
    // young blocks (HAKMEM_YOUNG) count in the 256 B class's sc_alloc
    uint64_t alloc1 = hak_stat_sc("sc_alloc", (unsigned)sc) + (hak_stat("alloc_young") - young0);
    uint64_t refill = hak_stat("alloc_refill");
    uint64_t f0 = hak_stat("free_tls_sll");
    CHECK(f0 != UINT64_MAX && refill != UINT64_MAX, "free_tls_sll / alloc_refill are unknown counters");
    for (int i = 0; i < N; i++) hak_free(p[i]);
    uint64_t f1 = hak_stat("free_tls_sll");
    if (TEST_STATS) {
        CHECK(f1 >= f0 + N, "free_tls_sll grew by %" PRIu64 " after %d frees", f1 - f0, N);
        CHECK(alloc1 >= alloc0 + N, "sc_alloc of class %d grew by %" PRIu64 " after %d mallocs", sc, alloc1 - alloc0,
              N);
        CHECK(refill >= 1, "alloc_refill is %" PRIu64 " after %d mallocs", refill, N);
        CHECK(hak_stat("large_alloc") != UINT64_MAX, "large_alloc unknown");
        uint64_t l0 = hak_stat("large_alloc"), lf0 = hak_stat("large_free");
        hak_free(hak_malloc(3 * MiB));
        CHECK(hak_stat("large_alloc") == l0 + 1 && hak_stat("large_free") == lf0 + 1,
              "large_alloc/large_free did not count one large block");
    } else {
        CHECK(f1 == 0 && alloc1 == 0, "counters are compiled out but read %" PRIu64 " / %" PRIu64, f1, alloc1);
    }
}

/* Lines after the "[size classes]" header: "class size mallocs refills". */
static int find_class_line(const char *report, unsigned want_sc, unsigned long long *mallocs) {
    const char *h = strstr(report, "[size classes]");
    if (!h) return 0;
    const char *line = strchr(h, '\n');
    while (line && line[1]) {
        line++;
        unsigned long long c, s, m, r;
        if (sscanf(line, "%llu %llu %llu %llu", &c, &s, &m, &r) == 4 && c == want_sc) {
            if (s != hak_sc_size(want_sc)) return -1;
            *mallocs = m;
            return 1;
        }
        line = strchr(line, '\n');
    }
    return 0;
}

static void t_stats_text(void) {
    enum { N = 300 };
    void *p[N];
    uint64_t young0 = hak_stat("alloc_young");
    for (int i = 0; i < N; i++) p[i] = hak_malloc(64);
    for (int i = 0; i < N; i++) hak_free(p[i]);
    uint64_t young = hak_stat("alloc_young") - young0;  // counted in the 256 B class (HAKMEM_YOUNG)
    char *txt = test_report(0);
    CHECK(strstr(txt, "alloc_refill") != NULL, "text report lacks alloc_refill:\n%s", txt);
    CHECK(strstr(txt, "free_tls_sll") != NULL, "text report lacks free_tls_sll");
    CHECK(strstr(txt, "[size classes]") != NULL, "text report lacks the size-class table:\n%s", txt);
    CHECK(txt[strlen(txt) - 1] == '\n', "text report does not end with a newline");
    if (TEST_STATS) {
        unsigned long long m = 0;
        int sc = hak_sc_of(64);
        int found = find_class_line(txt, (unsigned)sc, &m);
        CHECK(found == 1, "no (or a wrong) line for class %d (size 64) in:\n%s", sc, txt);
        CHECK(m + young >= N, "class %d line says %llu mallocs (and %" PRIu64 " young), expected at least %d", sc, m,
              young, N);
        // the counter value printed on the alloc_refill line matches hak_stat (nothing ran since)
        const char *l = strstr(txt, "alloc_refill");
        unsigned long long v = 0;
        CHECK(sscanf(l + strlen("alloc_refill"), "%llu", &v) == 1, "no value on the alloc_refill line");
        CHECK(v == hak_stat("alloc_refill"), "alloc_refill printed %llu, hak_stat says %" PRIu64, v,
              hak_stat("alloc_refill"));
        // every counter the JSON report names has its line in the text report (a counter
        // whose prefix matches no group of the text report would be missing silently)
        char *json = test_report(1);
        const char *c = strstr(json, "\"counters\":{");
        CHECK(c != NULL, "no counters object in the JSON report");
        c += strlen("\"counters\":{");
        int names = 0;
        while (*c == '"') {
            const char *end = strchr(c + 1, '"');
            CHECK(end != NULL, "unterminated counter name");
            char name[64];
            size_t len = (size_t)(end - c - 1);
            CHECK(len < sizeof name, "counter name too long");
            memcpy(name, c + 1, len);
            name[len] = 0;
            char padded[70];
            snprintf(padded, sizeof padded, "    %s ", name);  // a line of its own: indent, name, space
            CHECK(strstr(txt, padded) != NULL, "counter %s is missing from the text report", name);
            names++;
            c = end + 1;
            while (*c && *c != ',' && *c != '}') c++;
            if (*c == ',') c++;
        }
        CHECK(names >= 40, "only %d counters in the JSON report", names);
        free(json);
    }
    free(txt);
}

/* A strict JSON syntax checker (RFC 8259 grammar, no extensions). */
typedef struct jp {
    const char *s;
    int depth;
} jp_t;

static void j_ws(jp_t *j) {
    while (*j->s == ' ' || *j->s == '\t' || *j->s == '\n' || *j->s == '\r') j->s++;
}
static int j_value(jp_t *j);
static int j_string(jp_t *j) {
    if (*j->s != '"') return 0;
    j->s++;
    while (*j->s != '"') {
        unsigned char c = (unsigned char)*j->s;
        if (c < 0x20) return 0;
        if (c == '\\') {
            j->s++;
            if (*j->s == 'u') {
                for (int i = 1; i <= 4; i++)
                    if (!strchr("0123456789abcdefABCDEF", j->s[i]) || !j->s[i]) return 0;
                j->s += 4;
            } else if (!*j->s || !strchr("\"\\/bfnrt", *j->s)) {
                return 0;
            }
        }
        j->s++;
    }
    j->s++;
    return 1;
}
static int j_number(jp_t *j) {
    const char *s = j->s;
    if (*s == '-') s++;
    if (*s == '0') s++;
    else if (*s >= '1' && *s <= '9')
        while (*s >= '0' && *s <= '9') s++;
    else return 0;
    if (*s == '.') {
        s++;
        if (!(*s >= '0' && *s <= '9')) return 0;
        while (*s >= '0' && *s <= '9') s++;
    }
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '+' || *s == '-') s++;
        if (!(*s >= '0' && *s <= '9')) return 0;
        while (*s >= '0' && *s <= '9') s++;
    }
    j->s = s;
    return 1;
}
static int j_container(jp_t *j, char open, char close) {
    if (*j->s != open || ++j->depth > 64) return 0;
    j->s++;
    j_ws(j);
    if (*j->s == close) {
        j->s++;
        j->depth--;
        return 1;
    }
    for (;;) {
        j_ws(j);
        if (open == '{') {
            if (!j_string(j)) return 0;
            j_ws(j);
            if (*j->s != ':') return 0;
            j->s++;
            j_ws(j);
        }
        if (!j_value(j)) return 0;
        j_ws(j);
        if (*j->s == ',') {
            j->s++;
            continue;
        }
        if (*j->s != close) return 0;
        j->s++;
        j->depth--;
        return 1;
    }
}
static int j_value(jp_t *j) {
    switch (*j->s) {
    case '{': return j_container(j, '{', '}');
    case '[': return j_container(j, '[', ']');
    case '"': return j_string(j);
    case 't': return strncmp(j->s, "true", 4) == 0 ? (j->s += 4, 1) : 0;
    case 'f': return strncmp(j->s, "false", 5) == 0 ? (j->s += 5, 1) : 0;
    case 'n': return strncmp(j->s, "null", 4) == 0 ? (j->s += 4, 1) : 0;
    default: return j_number(j);
    }
}

/* Allocate in several classes so that the report's size_classes array has several entries
 * (and its separators get checked). */
static void use_several_classes(int n64) {
    void *p[300];
    for (int i = 0; i < n64 && i < 300; i++) p[i] = hak_malloc(64);
    for (int i = 0; i < n64 && i < 300; i++) hak_free(p[i]);
    static const size_t more[] = {16, 1000, 5000, 100 * KiB};
    for (size_t i = 0; i < sizeof more / sizeof more[0]; i++) hak_free(hak_malloc(more[i]));
}

static void t_stats_json(void) {
    enum { N = 300 };
    uint64_t young0 = hak_stat("alloc_young");
    use_several_classes(N);
    uint64_t young = hak_stat("alloc_young") - young0;  // counted in the 256 and 512 B classes
    char *js = test_report(1);
    jp_t j = {js, 0};
    j_ws(&j);
    CHECK(*j.s == '{', "JSON report does not start with an object: %.60s", js);
    int ok = j_value(&j);
    CHECK(ok, "JSON report is not valid JSON near offset %td: ...%.60s", j.s - js, j.s);
    j_ws(&j);
    CHECK(*j.s == 0, "JSON report has text after the object: %.60s", j.s);
    CHECK(strncmp(js, "{\"hakmem\":{", 11) == 0, "top-level key is not \"hakmem\": %.40s", js);
    CHECK(strstr(js, "\"counters\":{") != NULL, "no counters object");
    CHECK(strstr(js, "\"size_classes\":[") != NULL, "no size_classes array");
    static const char *const keys[] = {"alloc_refill", "alloc_tls_sll", "free_tls_sll", "large_alloc",
                                       "os_map_calls"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        char k[64];
        snprintf(k, sizeof k, "\"%s\":", keys[i]);
        const char *at = strstr(js, k);
        CHECK(at != NULL, "JSON report lacks counter %s", keys[i]);
        CHECK(at[strlen(k)] >= '0' && at[strlen(k)] <= '9', "counter %s has no number", keys[i]);
    }
    if (TEST_STATS) {
        char entry[96];
        int sc = hak_sc_of(64);
        snprintf(entry, sizeof entry, "{\"class\":%d,\"size\":64,\"mallocs\":", sc);
        const char *at = strstr(js, entry);
        CHECK(at != NULL, "no size_classes entry for class %d (size 64):\n%s", sc, js);
        unsigned long long m = strtoull(at + strlen(entry), NULL, 10);
        CHECK(m + young >= N, "class %d: %llu mallocs (and %" PRIu64 " young), expected at least %d", sc, m, young, N);
        CHECK(strstr(at, "\"refills\":") != NULL, "size_classes entry lacks refills");
        size_t entries = 0;
        for (const char *q = strstr(js, "{\"class\":"); q; q = strstr(q + 1, "{\"class\":")) entries++;
        CHECK(entries >= 5, "size_classes has %zu entries after mallocs in 5 classes", entries);
    }
    free(js);
}

/* For the python3 check registered in CMake: print the JSON report to stdout. */
static void t_stats_json_dump(void) {
    use_several_classes(1);
    fflush(stdout);
    hak_stats_print(1, 1);
}

/* ---- size classes -------------------------------------------------------------------- */

static void t_size_classes(void) {
    unsigned n = hak_sc_count();
    CHECK(n == 60, "hak_sc_count() = %u, expected 60", n);
    CHECK(hak_sc_size(0) == 16, "smallest class %zu", hak_sc_size(0));
    CHECK(hak_sc_size(n - 1) == MiB, "largest class %zu", hak_sc_size(n - 1));
    CHECK(hak_sc_size(n) == 0 && hak_sc_size(1000) == 0, "hak_sc_size past the end is not 0");
    for (unsigned sc = 1; sc < n; sc++) {
        size_t a = hak_sc_size(sc - 1), b = hak_sc_size(sc);
        CHECK(b > a, "class sizes not increasing at %u: %zu, %zu", sc, a, b);
        CHECK(b % 16 == 0, "class %u size %zu not a multiple of 16", sc, b);
        if (b <= 128) CHECK(b - a == 16, "classes up to 128 are 16 apart: %zu, %zu", a, b);
        else CHECK(b * 4 <= a * 5, "classes %u and %u more than 25%% apart: %zu, %zu", sc - 1, sc, a, b);
        CHECK(hak_sc_of(b) == (int)sc && hak_sc_of(a + 1) == (int)sc, "class %u does not serve (%zu, %zu]", sc, a, b);
    }
    // four classes per doubling above 128 bytes
    for (size_t p2 = 256; p2 <= MiB; p2 <<= 1)
        CHECK(hak_sc_of(p2) - hak_sc_of(p2 / 2) == 4, "not 4 classes in (%zu, %zu]", p2 / 2, p2);
    // every size up to 1 MiB: the class fits it, the class before does not
    for (size_t s = 0; s <= MiB; s++) {
        int sc = hak_sc_of(s);
        CHECK(sc >= 0 && (unsigned)sc < n, "hak_sc_of(%zu) = %d", s, sc);
        CHECK(hak_sc_size((unsigned)sc) >= s, "hak_sc_of(%zu) = %d of size %zu", s, sc, hak_sc_size((unsigned)sc));
        if (sc > 0)
            CHECK(hak_sc_size((unsigned)sc - 1) < s, "hak_sc_of(%zu) = %d, but class %d (%zu) fits", s, sc, sc - 1,
                  hak_sc_size((unsigned)sc - 1));
    }
    const size_t above[] = {MiB + 1, 2 * MiB, (size_t)PTRDIFF_MAX, SIZE_MAX};
    for (size_t i = 0; i < sizeof above / sizeof above[0]; i++)
        CHECK(hak_sc_of(above[i]) == -1, "hak_sc_of(%zu) = %d, expected -1", above[i], hak_sc_of(above[i]));
}

/* Pages of [p, p + n) resident now: only the pages wholly inside the range. */
static size_t resident_pages(const void *p, size_t n) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    uintptr_t lo = ((uintptr_t)p + page - 1) & ~(uintptr_t)(page - 1);
    uintptr_t hi = ((uintptr_t)p + n) & ~(uintptr_t)(page - 1);
    if (hi <= lo) return 0;
    unsigned char vec[64];
    size_t pages = (hi - lo) / page, r = 0;
    CHECK(pages <= sizeof vec, "range of %zu pages", pages);
    CHECK(mincore((void *)lo, hi - lo, vec) == 0, "mincore: %s", strerror(errno));
    for (size_t i = 0; i < pages; i++) r += vec[i] & 1u;
    return r;
}

/* Free blocks of a page or more in spans that still hold live blocks go back to the OS
 * whole at trim, the page with their free-list link included (they leave the free list for
 * their span's purged mask), and are handed out again from there. Up to 0aaded4 the first
 * page of each stayed resident: 8 MiB of Redis's RSS after deleting 2000 of its 16 KiB
 * values (bench/results/redis.md). */
static void t_trim_purges_blocks(void) {
    enum { N = 24 };
    const size_t sz = 20 * KiB;  // a class of whole pages (5), so every page can go
    char *p[N];
    for (int i = 0; i < N; i++) {
        p[i] = hak_malloc(sz);
        CHECK(p[i] != NULL, "malloc(20 KiB)");
        fill_pat(p[i], sz, (uint32_t)i);
    }
    for (int i = 1; i < N; i += 2) hak_free(p[i]);
    uint64_t taken0 = hak_stat("refill_slab_purged");
    CHECK(hak_trim(0) == 1, "hak_trim(0) released nothing with 12 free 20 KiB blocks");
    for (int i = 0; i < N; i++) {
        if (i % 2) {
            CHECK(resident_pages(p[i], sz) == 0, "free block %d (%p) still has %zu resident pages after trim", i,
                  (void *)p[i], resident_pages(p[i], sz));
        } else {
            CHECK(find_bad_pat(p[i], 0, sz, (uint32_t)i) == SIZE_MAX, "live block %d changed by the trim", i);
        }
    }
    // They come back, each once: the free ones again, with new contents, calloc zeroed.
    char *q[N / 2];
    for (int j = 0; j < N / 2; j++) {
        q[j] = j % 3 ? hak_malloc(sz) : hak_calloc(1, sz);
        CHECK(q[j] != NULL, "malloc(20 KiB) after trim");
        if (j % 3 == 0) CHECK(find_nonzero(q[j], sz) == SIZE_MAX, "calloc after trim: byte %zu of %p not zero",
                              find_nonzero(q[j], sz), (void *)q[j]);
        fill_pat(q[j], sz, 1000u + (uint32_t)j);
        int was_freed = 0;
        for (int i = 1; i < N; i += 2) was_freed |= q[j] == p[i];
        CHECK(was_freed, "malloc after trim returned %p, not one of the 12 blocks just freed", (void *)q[j]);
        for (int k = 0; k < j; k++) CHECK(q[k] != q[j], "block %p handed out twice after trim", (void *)q[j]);
    }
    if (TEST_STATS)
        CHECK(hak_stat("refill_slab_purged") - taken0 == N / 2, "refill_slab_purged rose by %" PRIu64 ", expected %d",
              hak_stat("refill_slab_purged") - taken0, N / 2);
    for (int i = 0; i < N; i += 2)
        CHECK(find_bad_pat(p[i], 0, sz, (uint32_t)i) == SIZE_MAX, "live block %d corrupted", i);
    for (int j = 0; j < N / 2; j++)
        CHECK(find_bad_pat(q[j], 0, sz, 1000u + (uint32_t)j) == SIZE_MAX, "block %p corrupted", (void *)q[j]);
    for (int i = 0; i < N; i += 2) hak_free(p[i]);
    for (int j = 0; j < N / 2; j++) hak_free(q[j]);
}

static const test_case_t cases[] = {
    {"info", t_info},
    {"info_thread_cache", t_info_thread_cache},
    {"trim", t_trim},
    {"trim_purges_blocks", t_trim_purges_blocks},
    {"stat", t_stat},
    {"stats_text", t_stats_text},
    {"stats_json", t_stats_json},
    {"size_classes", t_size_classes},
};

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "stats_json_dump") == 0) {
        t_stats_json_dump();
        return 0;
    }
    return run_cases(argc, argv, cases, sizeof cases / sizeof cases[0]);
}
