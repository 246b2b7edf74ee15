/* hak_learn.h -- the UCB1 bandit that tunes one large-path knob (HAKMEM_LEARN=1): a pure
 * core, arm counts and mean rewards, with hysteresis and a cooldown. Owns no clock, no lock
 * and no knob: hak_large.c measures each epoch, passes its reward to hak_learn_update under
 * its own lock and applies the arm hak_learn_choose returns. Never makes a syscall, so a
 * test can drive it with synthetic rewards. May call: nothing (no libm either). */
#pragma once

#include <stdint.h>

#include "hak_base.h"

#define HAK_LEARN_ARMS_MAX 8

/* One bandit. Written only by whoever holds its owner's lock. Invariants: current < arms;
 * pulls[i] epochs were rewarded on arm i, and mean[i] is the mean of their rewards;
 * epochs == sum of pulls; hold epochs remain before current may change. */
typedef struct hak_learn {
    unsigned arms;                        /* 1..HAK_LEARN_ARMS_MAX */
    unsigned current;                     /* the arm in use now */
    unsigned cooldown;                    /* epochs to stay on an arm once chosen (>= 1) */
    unsigned hold;                        /* epochs left before a switch is allowed */
    double explore;                       /* c in mean + c * sqrt(ln t / pulls) */
    double margin;                        /* a rival's bound must beat current's by this */
    uint64_t epochs;                      /* rewards received */
    uint64_t switches;                    /* times current changed */
    uint64_t pulls[HAK_LEARN_ARMS_MAX];
    double mean[HAK_LEARN_ARMS_MAX];
} hak_learn_t;

/* Start on arm `first` with no history. Rewards are expected in [0, 1]. */
HAK_HIDDEN void hak_learn_init(hak_learn_t *l, unsigned arms, unsigned first, unsigned cooldown, double explore,
                               double margin);
/* Credit reward to the current arm (one finished epoch). */
HAK_HIDDEN void hak_learn_update(hak_learn_t *l, double reward);
/* The arm for the next epoch (becomes current): an untried arm first, in order, then the
 * arm with the highest upper bound, but only after the cooldown and only when that bound
 * beats the current arm's by the margin. */
HAK_HIDDEN unsigned hak_learn_choose(hak_learn_t *l);
/* The upper confidence bound of arm i now (a huge value for an untried arm). */
HAK_HIDDEN double hak_learn_bound(const hak_learn_t *l, unsigned i);
