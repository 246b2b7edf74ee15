/* hak_learn.c -- UCB1 with hysteresis and a cooldown (hak_learn.h). Pure arithmetic: no
 * syscalls, no allocation, no lock (the caller's). The square root and logarithm are
 * computed here so that the library does not need libm. */
#include "hak_learn.h"

// ln(x) for x >= 1: x = m * 2^e with m in [1, 2), ln m by atanh's series (|z| <= 1/3, so
// 12 terms reach double precision).
static double ln(double x) {
    int e = 0;
    while (x >= 2.0) {
        x *= 0.5;
        e++;
    }
    double z = (x - 1.0) / (x + 1.0), z2 = z * z, term = z, sum = 0.0;
    for (int k = 1; k < 26; k += 2) {
        sum += term / k;
        term *= z2;
    }
    return 2.0 * sum + e * 0.69314718055994530942;
}

// Newton's iteration from a guess above the root; exact enough after it stops falling.
static double root(double x) {
    if (x <= 0.0) return 0.0;
    double r = x > 1.0 ? x : 1.0;
    for (int i = 0; i < 64; i++) {
        double next = 0.5 * (r + x / r);
        if (next >= r) break;
        r = next;
    }
    return r;
}

void hak_learn_init(hak_learn_t *l, unsigned arms, unsigned first, unsigned cooldown, double explore, double margin) {
    if (arms < 1) arms = 1;
    if (arms > HAK_LEARN_ARMS_MAX) arms = HAK_LEARN_ARMS_MAX;
    *l = (hak_learn_t){0};
    l->arms = arms;
    l->current = first < arms ? first : 0;
    l->cooldown = cooldown ? cooldown : 1;
    l->hold = l->cooldown;
    l->explore = explore;
    l->margin = margin;
}

void hak_learn_update(hak_learn_t *l, double reward) {
    unsigned a = l->current;
    l->pulls[a]++;
    l->mean[a] += (reward - l->mean[a]) / (double)l->pulls[a];  // running mean
    l->epochs++;
    if (l->hold) l->hold--;
}

double hak_learn_bound(const hak_learn_t *l, unsigned i) {
    if (l->pulls[i] == 0) return 1e300;
    double t = l->epochs > 1 ? (double)l->epochs : 1.0;
    return l->mean[i] + l->explore * root(ln(t) / (double)l->pulls[i]);
}

unsigned hak_learn_choose(hak_learn_t *l) {
    if (l->hold) return l->current;  // the cooldown: every arm, the first included
    unsigned next = l->current;
    // the first untried arm after the current one (each arm gets a cooldown's worth)
    for (unsigned k = 1; k < l->arms && next == l->current; k++) {
        unsigned i = (l->current + k) % l->arms;
        if (l->pulls[i] == 0) next = i;
    }
    if (next == l->current && l->pulls[l->current] > 0) {
        double cur = hak_learn_bound(l, l->current), best = cur;
        for (unsigned i = 0; i < l->arms; i++) {
            double b = hak_learn_bound(l, i);
            if (i != l->current && b > best) {
                best = b;
                next = i;
            }
        }
        if (best < cur + l->margin) next = l->current;  // hysteresis: not clearly better
    }
    if (next != l->current) {
        l->current = next;
        l->switches++;
        l->hold = l->cooldown;  // the new arm keeps at least cooldown epochs
    }
    return next;
}
