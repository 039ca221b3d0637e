/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The leaky buckets of util/throttle.c on a virtual clock: validation
 * with QEMU's messages and order, bucket capacity with and without
 * bursts, the burst rate, iops-size, directions, and achieved rates.
 *
 * Copyright (c) 2026 The Sluice authors
 */
#include "qemu/osdep.h"

#include "qemu/throttle.h"
#include "qemu/timer.h"

#define NS NANOSECONDS_PER_SECOND

/* ---- Validation ---- */

typedef struct BucketSpec {
    ThrottleBucketType type;
    int64_t avg, max, length;   /* length 0 means "leave at 1" */
    bool zero_length;           /* set length to 0 */
} BucketSpec;

typedef struct ValidCase {
    const char *desc;
    BucketSpec b[4];
    int nb;
    int64_t op_size;
    const char *error;          /* NULL: valid */
} ValidCase;

/*
 * Expected messages and which one wins when several apply: observed
 * with Debian's qemu-io 7.2 (--object throttle-group,limits.*=...).
 */
static const ValidCase valid_cases[] = {
    { "none", { { 0 } }, 0, 0, NULL },
    { "total+read", { { THROTTLE_OPS_TOTAL, 100 }, { THROTTLE_OPS_READ, 5 } },
      2, 0, "bps/iops/max total values and read/write values cannot be "
      "used at the same time" },
    { "total max+write max", { { THROTTLE_BPS_TOTAL, 10, 20 },
      { THROTTLE_BPS_WRITE, 10, 20 } }, 2, 0,
      "bps/iops/max total values and read/write values cannot be used at "
      "the same time" },
    /* Total max with read avg is not a mix: the max lacks its avg. */
    { "total max+read avg", { { THROTTLE_OPS_TOTAL, 0, 5 },
      { THROTTLE_OPS_READ, 5 } }, 2, 0,
      "bps_max/iops_max require corresponding bps/iops values" },
    { "mix wins over range", { { THROTTLE_OPS_TOTAL, -1 },
      { THROTTLE_OPS_READ, 5 } }, 2, 0,
      "bps/iops/max total values and read/write values cannot be used at "
      "the same time" },
    { "max alone", { { THROTTLE_OPS_TOTAL, 0, 100 } }, 1, 0,
      "bps_max/iops_max require corresponding bps/iops values" },
    { "negative", { { THROTTLE_OPS_TOTAL, -1 } }, 1, 0,
      "bps/iops/max values must be within [0, 1000000000000000]" },
    { "too big", { { THROTTLE_BPS_READ, 1000000000000001LL } }, 1, 0,
      "bps/iops/max values must be within [0, 1000000000000000]" },
    { "largest", { { THROTTLE_BPS_READ, 1000000000000000LL } }, 1, 0,
      NULL },
    { "max too big", { { THROTTLE_BPS_TOTAL, 5, -5 } }, 1, 0,
      "bps/iops/max values must be within [0, 1000000000000000]" },
    { "max below avg", { { THROTTLE_OPS_TOTAL, 10, 5 } }, 1, 0,
      "bps_max/iops_max cannot be lower than bps/iops" },
    { "max equal avg", { { THROTTLE_OPS_TOTAL, 10, 10 } }, 1, 0, NULL },
    { "length without max", { { THROTTLE_OPS_TOTAL, 10, 0, 5 } }, 1, 0,
      "burst length set without burst rate" },
    { "length 1 without max", { { THROTTLE_OPS_TOTAL, 10, 0, 1 } }, 1, 0,
      NULL },
    { "length 0", { { THROTTLE_OPS_TOTAL, 10, 20, 0, true } }, 1, 0,
      "the burst length cannot be 0" },
    { "length 0 alone", { { THROTTLE_BPS_TOTAL, 0, 0, 0, true } }, 1, 0,
      "the burst length cannot be 0" },
    { "length 0 before max alone", { { THROTTLE_BPS_TOTAL, 0, 5, 0,
      true } }, 1, 0, "the burst length cannot be 0" },
    { "range before length 0", { { THROTTLE_BPS_TOTAL, -1, 0, 0, true } },
      1, 0, "bps/iops/max values must be within [0, 1000000000000000]" },
    { "length too high", { { THROTTLE_BPS_TOTAL, 10, 500000000000001LL,
      2 } }, 1, 0, "burst length too high for this burst rate" },
    { "length just fits", { { THROTTLE_BPS_TOTAL, 10, 500000000000000LL,
      2 } }, 1, 0, NULL },
    /* limits.*-max-length=-1 reaches the check as 2^64 - 1. */
    { "length -1", { { THROTTLE_OPS_TOTAL, 10, 20, -1 } }, 1, 0,
      "burst length too high for this burst rate" },
    { "too high before max alone", { { THROTTLE_BPS_TOTAL, 0,
      1000000000000000LL, 2 } }, 1, 0,
      "burst length too high for this burst rate" },
    { "too high before lower", { { THROTTLE_BPS_TOTAL, 10, 5, -1 } }, 1, 0,
      "burst length too high for this burst rate" },
    { "bucket order", { { THROTTLE_OPS_TOTAL, -1 },
      { THROTTLE_BPS_TOTAL, 10, 5 } }, 2, 0,
      "bps_max/iops_max cannot be lower than bps/iops" },
    { "bucket order 2", { { THROTTLE_OPS_TOTAL, 2, 1 },
      { THROTTLE_BPS_READ, -1 } }, 2, 0,
      "bps/iops/max values must be within [0, 1000000000000000]" },
    { "iops-size alone", { { 0 } }, 0, 5,
      "iops size requires an iops value to be set" },
    { "iops-size with bps", { { THROTTLE_BPS_TOTAL, 5 } }, 1, 5,
      "iops size requires an iops value to be set" },
    { "iops-size before range", { { THROTTLE_BPS_TOTAL, -1 } }, 1, 5,
      "iops size requires an iops value to be set" },
    { "iops-size with iops max only", { { THROTTLE_OPS_READ, 0, 5 } }, 1,
      1, "iops size requires an iops value to be set" },
    { "iops-size with iops-read", { { THROTTLE_OPS_READ, 5 } }, 1, 1,
      NULL },
    { "iops-size huge", { { THROTTLE_OPS_TOTAL, 10 } }, 1, -1, NULL },
};

static void test_validation(void)
{
    int i, j;

    for (i = 0; i < G_N_ELEMENTS(valid_cases); i++) {
        const ValidCase *c = &valid_cases[i];
        g_autoptr(GError) err = NULL;
        ThrottleConfig cfg;
        bool ok;

        throttle_config_init(&cfg);
        for (j = 0; j < c->nb; j++) {
            LeakyBucket *b = &cfg.buckets[c->b[j].type];

            b->avg = c->b[j].avg;
            b->max = c->b[j].max;
            if (c->b[j].length || c->b[j].zero_length) {
                b->burst_length = c->b[j].length;
            }
        }
        cfg.op_size = c->op_size;
        ok = throttle_is_valid(&cfg, &err);
        if (g_test_verbose()) {
            g_test_message("%s: %s", c->desc, err ? err->message : "ok");
        }
        if (c->error) {
            g_assert_false(ok);
            g_assert_cmpstr(err->message, ==, c->error);
        } else {
            g_assert_no_error(err);
            g_assert_true(ok);
        }
    }
}

static void test_enabled(void)
{
    ThrottleConfig cfg;
    int i;

    throttle_config_init(&cfg);
    g_assert_false(throttle_enabled(&cfg));
    for (i = 0; i < THROTTLE_BUCKETS; i++) {
        g_assert_cmpuint(cfg.buckets[i].burst_length, ==, 1);
    }
    cfg.op_size = 4096;
    g_assert_false(throttle_enabled(&cfg));
    cfg.buckets[THROTTLE_BPS_WRITE].avg = 1;
    g_assert_true(throttle_enabled(&cfg));
    g_assert_cmpstr(throttle_bucket_name(THROTTLE_BPS_WRITE), ==,
                    "bps-write");
    g_assert_cmpstr(throttle_bucket_name(THROTTLE_OPS_TOTAL), ==,
                    "iops-total");
}

/* ---- Buckets on a virtual clock ---- */

#define GREEDY_MAX 3000000

/* Waits computed in floating point may differ by a nanosecond. */
#define assert_ns(a, b) do {                                               \
    int64_t a_ = (a), b_ = (b);                                           \
    g_assert_cmpint(a_, >=, b_ - 1);                                      \
    g_assert_cmpint(a_, <=, b_ + 1);                                      \
} while (0)

static void state_with(ThrottleState *ts, ThrottleBucketType type,
                       uint64_t avg, uint64_t max, uint64_t length,
                       uint64_t op_size)
{
    ThrottleConfig cfg;

    throttle_config_init(&cfg);
    cfg.buckets[type].avg = avg;
    cfg.buckets[type].max = max;
    cfg.buckets[type].burst_length = length;
    cfg.op_size = op_size;
    g_assert_true(throttle_is_valid(&cfg, NULL));
    throttle_init(ts, 0);
    throttle_config(ts, &cfg, 0);
}

/*
 * Issue requests as fast as the state allows from time @start for
 * @duration ns; return how many started.  *@now is left at the time
 * the last one started.
 */
static uint64_t run_greedy(ThrottleState *ts, bool is_write, uint64_t bytes,
                           int64_t start, int64_t duration, int64_t *now)
{
    int64_t t = start;
    uint64_t n = 0;

    /* An unlimited direction would never stop. */
    while (n < GREEDY_MAX) {
        int64_t wait = throttle_compute_wait(ts, is_write, t);

        if (t + wait >= start + duration) {
            break;
        }
        t += wait;
        /* At the time it said, it must say go. */
        g_assert_cmpint(throttle_compute_wait(ts, is_write, t), ==, 0);
        throttle_account(ts, is_write, bytes);
        n++;
    }
    if (now) {
        *now = t;
    }
    return n;
}

static void test_default_burst(void)
{
    ThrottleState ts;

    /* iops 100 without max: a tenth of a second (10 ops) at once. */
    state_with(&ts, THROTTLE_OPS_TOTAL, 100, 0, 1, 0);
    g_assert_cmpuint(run_greedy(&ts, false, 512, 0, 1, NULL), ==, 11);
    /* The 12th waits for one op to leak: 10 ms. */
    assert_ns(throttle_compute_wait(&ts, false, 0), 10 * SCALE_MS);
    assert_ns(throttle_compute_wait(&ts, false, 4 * SCALE_MS), 6 * SCALE_MS);
    g_assert_cmpint(throttle_compute_wait(&ts, false, 10 * SCALE_MS), ==, 0);
}

static void test_capacity_rule(void)
{
    ThrottleState ts;

    /*
     * 20 iops: capacity 2.  A request may start while the level is at
     * most the capacity, so the third goes at once and the fourth waits
     * (3 - 2) / 20 s.  That is why QEMU's qemu-io takes 0.25 s for 8
     * reads at x-iops-total=20 (5 waits of 50 ms).
     */
    state_with(&ts, THROTTLE_OPS_TOTAL, 20, 0, 1, 0);
    g_assert_cmpuint(run_greedy(&ts, false, 512, 0, 1, NULL), ==, 3);
    assert_ns(throttle_compute_wait(&ts, false, 0), 50 * SCALE_MS);

    state_with(&ts, THROTTLE_OPS_TOTAL, 20, 0, 1, 0);
    g_assert_cmpuint(run_greedy(&ts, false, 512, 0, 250 * SCALE_MS + 1,
                                NULL), ==, 8);
}

static void test_burst_length_one(void)
{
    ThrottleState ts;
    uint64_t n;

    /* max 1000, length 1: 1000 ops may pass at once, no burst bucket. */
    state_with(&ts, THROTTLE_OPS_TOTAL, 100, 1000, 1, 0);
    g_assert_cmpuint(run_greedy(&ts, false, 512, 0, 1, NULL), ==, 1001);
    /* Then the average: 100 per second (at 10, 20, ... 990 ms). */
    n = run_greedy(&ts, false, 512, 0, NS, NULL);
    g_assert_cmpuint(n, >=, 99);
    g_assert_cmpuint(n, <=, 100);
}

static void test_burst_rate(void)
{
    ThrottleState ts;
    uint64_t n;

    /*
     * avg 50, max 500, length 2: 1000 ops of burst, at no more than
     * 500 per second (a burst bucket of 50 leaking at 500/s), so the
     * burst lasts about 2 s; then 50 per second.
     */
    state_with(&ts, THROTTLE_OPS_TOTAL, 50, 500, 2, 0);
    /* 51 at once (the burst bucket's capacity plus one). */
    g_assert_cmpuint(run_greedy(&ts, false, 512, 0, 1, NULL), ==, 51);

    state_with(&ts, THROTTLE_OPS_TOTAL, 50, 500, 2, 0);
    n = run_greedy(&ts, false, 512, 0, NS, NULL);
    /* Then one per 2 ms: 51 + 499 in the first second. */
    g_assert_cmpuint(n, >=, 549);
    g_assert_cmpuint(n, <=, 551);

    state_with(&ts, THROTTLE_OPS_TOTAL, 50, 500, 2, 0);
    n = run_greedy(&ts, false, 512, 0, 10 * NS, NULL);
    /*
     * The main bucket fills at max - avg = 450/s net and is full (1000)
     * after ~2.1 s, ~1105 ops in; afterwards 50/s.  In all: what it
     * holds plus what leaked, 1000 + 50 * 10.
     */
    g_assert_cmpuint(n, >=, 1000 + 50 * 10 - 5);
    g_assert_cmpuint(n, <=, 1000 + 50 * 10 + 5);

    /* The burst is over after about 2.1 s, not before. */
    state_with(&ts, THROTTLE_OPS_TOTAL, 50, 500, 2, 0);
    n = run_greedy(&ts, false, 512, 0, 2 * NS, NULL);
    g_assert_cmpuint(n, >=, 1045);
    g_assert_cmpuint(n, <=, 1055);
}

static void test_iops_size(void)
{
    ThrottleState ts;

    /* 100 iops of 4 KiB: a 16 KiB request is 4 ops, 1 KiB is 1. */
    state_with(&ts, THROTTLE_OPS_TOTAL, 100, 0, 1, 4096);
    throttle_account(&ts, false, 16384);
    g_assert_cmpfloat(ts.cfg.buckets[THROTTLE_OPS_TOTAL].level, ==, 4.0);
    throttle_account(&ts, false, 1024);
    g_assert_cmpfloat(ts.cfg.buckets[THROTTLE_OPS_TOTAL].level, ==, 5.0);
    throttle_account(&ts, false, 6144);
    g_assert_cmpfloat(ts.cfg.buckets[THROTTLE_OPS_TOTAL].level, ==, 6.5);

    /* Rate: 100 ops/s of 16 KiB requests is 25 requests per second. */
    state_with(&ts, THROTTLE_OPS_TOTAL, 100, 0, 1, 4096);
    g_assert_cmpuint(run_greedy(&ts, false, 16384, 0, 10 * NS, NULL), ==,
                     250 + 3);
}

/* Many requests of direction @is_write at one instant never wait. */
static void unlimited(ThrottleState *ts, bool is_write, uint64_t bytes)
{
    int i;

    for (i = 0; i < 10000; i++) {
        g_assert_cmpint(throttle_compute_wait(ts, is_write, 0), ==, 0);
        throttle_account(ts, is_write, bytes);
    }
}

static void test_directions(void)
{
    ThrottleState ts;

    state_with(&ts, THROTTLE_BPS_READ, 4096, 0, 1, 0);
    /* Writes are not limited by a read limit, nor counted in it. */
    unlimited(&ts, true, 65536);
    g_assert_cmpfloat(ts.cfg.buckets[THROTTLE_BPS_READ].level, ==, 0.0);
    g_assert_cmpuint(run_greedy(&ts, false, 4096, 0, 10 * NS, NULL), ==,
                     10 + 1);

    state_with(&ts, THROTTLE_OPS_WRITE, 10, 0, 1, 0);
    unlimited(&ts, false, 512);
    /* Two at once (capacity 1), then one per 100 ms. */
    g_assert_cmpuint(run_greedy(&ts, true, 512, 0, 10 * NS, NULL), ==,
                     2 + 99);

    /* Totals count both directions. */
    state_with(&ts, THROTTLE_BPS_TOTAL, 8192, 0, 1, 0);
    throttle_account(&ts, true, 4096);
    throttle_account(&ts, false, 4096);
    g_assert_cmpfloat(ts.cfg.buckets[THROTTLE_BPS_TOTAL].level, ==, 8192.0);
    g_assert_cmpint(throttle_compute_wait(&ts, false, 0), >, 0);
    g_assert_cmpint(throttle_compute_wait(&ts, true, 0), >, 0);
}

/* Every bucket kind, greedy for 100 virtual seconds: the rate is exact. */
static void test_rates(void)
{
    static const struct {
        ThrottleBucketType type;
        uint64_t avg;
        bool write;
        uint64_t bytes;
        double per_request;     /* units one request counts */
    } cases[] = {
        { THROTTLE_BPS_TOTAL, 1 << 20, false, 4096, 4096 },
        { THROTTLE_BPS_READ, 3 << 20, false, 65536, 65536 },
        { THROTTLE_BPS_WRITE, 123456, true, 512, 512 },
        { THROTTLE_OPS_TOTAL, 1000, true, 4096, 1 },
        { THROTTLE_OPS_READ, 7, false, 4096, 1 },
        { THROTTLE_OPS_WRITE, 333, true, 1 << 20, 1 },
    };
    int i;

    for (i = 0; i < G_N_ELEMENTS(cases); i++) {
        ThrottleState ts;
        int64_t start;
        uint64_t n;
        double rate;

        state_with(&ts, cases[i].type, cases[i].avg, 0, 1, 0);
        /* Spend the initial burst first. */
        run_greedy(&ts, cases[i].write, cases[i].bytes, 0, 1, &start);
        n = run_greedy(&ts, cases[i].write, cases[i].bytes, start,
                       100 * NS, NULL);
        rate = n * cases[i].per_request / 100.0;
        g_assert_cmpfloat(rate, >=, cases[i].avg * 0.99);
        g_assert_cmpfloat(rate, <=, cases[i].avg * 1.01);
    }
}

static void test_config_resets(void)
{
    ThrottleState ts;
    ThrottleConfig cfg;

    state_with(&ts, THROTTLE_OPS_TOTAL, 10, 0, 1, 0);
    throttle_account(&ts, false, 512);
    throttle_account(&ts, false, 512);
    throttle_account(&ts, false, 512);
    g_assert_cmpint(throttle_compute_wait(&ts, false, 0), >, 0);

    /* New limits start with empty buckets. */
    throttle_get_config(&ts, &cfg);
    g_assert_cmpfloat(cfg.buckets[THROTTLE_OPS_TOTAL].level, ==, 0.0);
    g_assert_cmpuint(cfg.buckets[THROTTLE_OPS_TOTAL].avg, ==, 10);
    cfg.buckets[THROTTLE_OPS_TOTAL].avg = 20;
    throttle_config(&ts, &cfg, 0);
    g_assert_cmpint(throttle_compute_wait(&ts, false, 0), ==, 0);

    /* Time going backwards leaks nothing and does not crash. */
    throttle_account(&ts, false, 512);
    throttle_account(&ts, false, 512);
    throttle_account(&ts, false, 512);
    assert_ns(throttle_compute_wait(&ts, false, -NS), 50 * SCALE_MS);

    /* Huge debt stays representable. */
    state_with(&ts, THROTTLE_BPS_TOTAL, 1, 0, 1, 0);
    throttle_account(&ts, false, UINT64_MAX / 2);
    g_assert_cmpint(throttle_compute_wait(&ts, false, 0), >, 0);
    g_assert_cmpint(throttle_compute_wait(&ts, false, 0), <=, INT64_MAX / 4);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    g_test_add_func("/throttle/validation", test_validation);
    g_test_add_func("/throttle/enabled", test_enabled);
    g_test_add_func("/throttle/default-burst", test_default_burst);
    g_test_add_func("/throttle/capacity-rule", test_capacity_rule);
    g_test_add_func("/throttle/burst-length-one", test_burst_length_one);
    g_test_add_func("/throttle/burst-rate", test_burst_rate);
    g_test_add_func("/throttle/iops-size", test_iops_size);
    g_test_add_func("/throttle/directions", test_directions);
    g_test_add_func("/throttle/rates", test_rates);
    g_test_add_func("/throttle/config-resets", test_config_resets);
    return g_test_run();
}
