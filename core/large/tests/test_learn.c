/* test_learn.c -- the UCB1 learner (HAKMEM_LEARN): the pure bandit driven with synthetic
 * rewards (convergence with noise, no flapping between equal arms, the cooldown), and the
 * large path with learning off and on (the BigCache bound, learn_epochs, the report).
 * White-box: calls hak_learn_* and reads hak_bigcache_max / hak_config. Each case runs in its
 * own process (CTest passes its name); the CMakeLists sets HAKMEM_LEARN. */
#include <pthread.h>
#include <unistd.h>

#include "hak_bigcache.h"
#include "hak_config.h"
#include "hak_learn.h"
#include "test_util.h"

#define MiB ((size_t)1 << 20)

enum { COOLDOWN = 4 };
#define EXPLORE 0.2
#define MARGIN 0.02

static uint64_t rng_state = 12345;
// Uniform in [-1, 1).
static double noise(void) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(rng_state >> 11) / (double)(1ull << 52) - 1.0;
}

// Runs epochs; arm_of[e] is the arm epoch e ran on. Returns the epochs spent on `arm`.
static unsigned drive(hak_learn_t *l, const double *means, double amplitude, unsigned epochs, unsigned arm,
                      unsigned char *arm_of) {
    unsigned on_arm = 0;
    for (unsigned e = 0; e < epochs; e++) {
        unsigned a = l->current;
        if (arm_of) arm_of[e] = (unsigned char)a;
        if (a == arm) on_arm++;
        double r = means[a] + amplitude * noise();
        hak_learn_update(l, r < 0 ? 0 : r > 1 ? 1 : r);
        unsigned next = hak_learn_choose(l);
        CHECK(next == l->current && next < l->arms, "choose returned %u, current %u", next, l->current);
    }
    return on_arm;
}

/* Arm 2 best by 0.1 over the runner-up, rewards with +-0.15 of noise: after 3000 epochs arm
 * 2 ran more than 80% of them and is the current arm. */
static void t_converge(void) {
    static const double means[4] = {0.50, 0.55, 0.70, 0.60};
    for (unsigned first = 0; first < 4; first++) {
        hak_learn_t l;
        hak_learn_init(&l, 4, first, COOLDOWN, EXPLORE, MARGIN);
        unsigned on2 = drive(&l, means, 0.15, 3000, 2, NULL);
        printf("   start %u: %u of 3000 epochs on arm 2, %" PRIu64 " switches, pulls %" PRIu64 " %" PRIu64
               " %" PRIu64 " %" PRIu64 "\n",
               first, on2, l.switches, l.pulls[0], l.pulls[1], l.pulls[2], l.pulls[3]);
        CHECK(on2 * 10 > 3000 * 8, "arm 2 ran %u of 3000 epochs", on2);
        CHECK(l.current == 2, "current arm %u", l.current);
        CHECK(l.epochs == 3000 && l.pulls[0] + l.pulls[1] + l.pulls[2] + l.pulls[3] == 3000, "pull counts");
        CHECK(l.mean[2] > 0.65 && l.mean[2] < 0.75, "arm 2 mean %f", l.mean[2]);
    }
}

/* Two equal arms: the hysteresis keeps switches few, where plain UCB1 (no margin, no
 * cooldown) alternates. */
static void t_no_flap(void) {
    static const double means[2] = {0.5, 0.5};
    hak_learn_t l, plain;
    hak_learn_init(&l, 2, 0, COOLDOWN, EXPLORE, MARGIN);
    hak_learn_init(&plain, 2, 0, 1, EXPLORE, 0.0);
    drive(&l, means, 0.15, 3000, 0, NULL);
    drive(&plain, means, 0.15, 3000, 0, NULL);
    printf("   equal arms, 3000 epochs: %" PRIu64 " switches with hysteresis, %" PRIu64 " without\n", l.switches,
           plain.switches);
    CHECK(l.switches <= 20, "%" PRIu64 " switches between equal arms", l.switches);
    CHECK(plain.switches > 5 * l.switches, "plain UCB1 switched only %" PRIu64 " times", plain.switches);
}

/* Every stay on an arm, the first included, lasts at least the cooldown; with noisy rewards
 * that keep the bounds close, and with a cooldown of 7 too. */
static void t_cooldown(void) {
    static const double means[3] = {0.5, 0.52, 0.48};
    static unsigned char arm_of[4000];
    for (unsigned cooldown = 1; cooldown <= 7; cooldown += 3) {
        hak_learn_t l;
        hak_learn_init(&l, 3, 1, cooldown, 0.5, 0.0);
        drive(&l, means, 0.5, 4000, 0, arm_of);
        unsigned run = 1, stays = 0;
        for (unsigned e = 1; e < 4000; e++) {
            if (arm_of[e] == arm_of[e - 1]) {
                run++;
                continue;
            }
            CHECK(run >= cooldown, "cooldown %u: a stay of %u epochs ending at epoch %u", cooldown, run, e);
            stays++;
            run = 1;
        }
        printf("   cooldown %u: %u switches, every stay >= %u epochs\n", cooldown, stays, cooldown);
        CHECK(stays == l.switches && stays > 10, "cooldown %u: %u stays, %" PRIu64 " switches", cooldown, stays,
              l.switches);
        CHECK(arm_of[0] == 1, "the first epoch ran on arm %u", arm_of[0]);
    }
}

/* ---- through the API ------------------------------------------------------------------ */


// A replace loop over 4 slots of 1-3 MiB blocks: ops large mallocs and frees.
static void replace_loop(unsigned ops) {
    char *slot[4] = {0};
    uint64_t rng = 9;
    for (unsigned op = 0; op < ops; op++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        unsigned s = (unsigned)((rng >> 33) % 4);
        hak_free(slot[s]);
        size_t n = MiB + (size_t)((rng >> 13) % (2 * MiB));
        slot[s] = hak_malloc(n);
        CHECK(slot[s] != NULL, "malloc(%zu)", n);
        for (size_t i = 0; i < n; i += 4096) slot[s][i] = 1;
    }
    for (unsigned s = 0; s < 4; s++) hak_free(slot[s]);
}

static int learn_arm(const char *report) {
    const char *p = strstr(report, "\"learn\":{\"enabled\":true,\"arm\":");
    return p ? atoi(p + strlen("\"learn\":{\"enabled\":true,\"arm\":")) : -1;
}

/* HAKMEM_LEARN=0: the bound stays HAKMEM_BIGCACHE_MAX, no epochs, the report says off. */
static void t_off(void) {
    replace_loop(2000);
    CHECK(hak_config.learn == 0, "hak_config.learn = %d", hak_config.learn);
    CHECK(hak_bigcache_max() == hak_config.bigcache_max && hak_config.bigcache_max == 64 * MiB,
          "bound %zu, configured %zu", hak_bigcache_max(), hak_config.bigcache_max);
    CHECK(hak_stat("learn_epochs") == 0 && hak_stat("learn_switches") == 0, "epochs counted while off");
    char *r = test_report(1);
    CHECK(strstr(r, "\"learn\":{\"enabled\":false,") != NULL, "no learn section (off) in:\n%s", r);
    free(r);
}

/* HAKMEM_LEARN=1: 4000 large operations make 15 epochs; the bound is one of the arms, and
 * the report shows the arm and its pulls. */
static void t_on(void) {
    replace_loop(2000);
    CHECK(hak_config.learn == 1, "hak_config.learn = %d", hak_config.learn);
    size_t bound = hak_bigcache_max();
    CHECK(bound == 16 * MiB || bound == 32 * MiB || bound == 64 * MiB || bound == 128 * MiB, "bound %zu", bound);
    if (TEST_STATS) {
        uint64_t epochs = hak_stat("learn_epochs");
        printf("   %" PRIu64 " epochs, %" PRIu64 " switches, bound %zu MiB\n", epochs, hak_stat("learn_switches"),
               bound >> 20);
        CHECK(epochs >= 15, "%" PRIu64 " epochs after 4000 large operations", epochs);
        CHECK(hak_stat("learn_switches") >= 1, "no switch: the untried arms were never explored");
    }
    char *r = test_report(1);
    int arm = learn_arm(r);
    CHECK(arm >= 0 && arm < 4, "no learn section (on) in:\n%s", r);
    CHECK(strstr(r, "\"pulls\":") != NULL && strstr(r, "\"mean_reward_ppm\":") != NULL, "no arms in:\n%s", r);
    free(r);
}

/* A working set of 40 blocks of 2 MiB, all freed and allocated again each round: only the
 * 128 MiB bound keeps them all, every smaller one remaps (and refaults) some each round, so
 * the learner must end on arm 3. */
static void t_adapts(void) {
    enum { BLOCKS = 40, ROUNDS = 300 };
    static char *blk[BLOCKS];
    for (unsigned round = 0; round < ROUNDS; round++) {
        for (unsigned i = 0; i < BLOCKS; i++) {
            blk[i] = hak_malloc(2 * MiB);
            CHECK(blk[i] != NULL, "malloc");
            for (size_t k = 0; k < 2 * MiB; k += 4096) blk[i][k] = (char)round;
        }
        for (unsigned i = 0; i < BLOCKS; i++) hak_free(blk[i]);
    }
    char *r = test_report(1);
    int arm = learn_arm(r);
    const char *arms = strstr(r, "\"learn\":");
    printf("   %s\n", arms ? arms : "(no learn section)");
    CHECK(arm == 3, "the learner ended on arm %d, not 3 (128 MiB)", arm);
    CHECK(hak_bigcache_max() == 128 * MiB, "bound %zu", hak_bigcache_max());
    free(r);
}

/* Two threads closing epochs concurrently (HAKMEM_LEARN=1): the epoch lock, the bound's
 * atomic and the report under TSan. */
static void *loop_thread(void *arg) {
    (void)arg;
    replace_loop(1500);
    return NULL;
}

static void t_threads(void) {
    pthread_t t[2];
    for (int i = 0; i < 2; i++) CHECK(pthread_create(&t[i], NULL, loop_thread, NULL) == 0, "pthread_create");
    char *r = test_report(1);  // while the threads run
    free(r);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    if (TEST_STATS) CHECK(hak_stat("learn_epochs") >= 20, "%" PRIu64 " epochs", hak_stat("learn_epochs"));
    r = test_report(1);
    CHECK(learn_arm(r) >= 0, "no learn section");
    free(r);
}

static const test_case_t cases[] = {
    {"converge", t_converge}, {"no_flap", t_no_flap}, {"cooldown", t_cooldown},
    {"off", t_off},           {"on", t_on},           {"adapts", t_adapts},
    {"threads", t_threads},
};

int main(int argc, char **argv) { return run_cases(argc, argv, cases, sizeof cases / sizeof cases[0]); }
