/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Leaky-bucket arithmetic for I/O limits.
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * Levels are doubles: with iops-size an operation may count as a
 * fraction, and leaking by elapsed nanoseconds would lose precision in
 * integers at low rates.
 */
#include "qemu/osdep.h"

#include "qemu/throttle.h"
#include "qemu/timer.h"

/* Without a burst rate, a bucket holds this fraction of a second. */
#define THROTTLE_DEFAULT_BURST_DIVISOR 10.0

static const char *const throttle_bucket_names[THROTTLE_BUCKETS] = {
    [THROTTLE_BPS_TOTAL] = "bps-total",
    [THROTTLE_BPS_READ] = "bps-read",
    [THROTTLE_BPS_WRITE] = "bps-write",
    [THROTTLE_OPS_TOTAL] = "iops-total",
    [THROTTLE_OPS_READ] = "iops-read",
    [THROTTLE_OPS_WRITE] = "iops-write",
};

const char *throttle_bucket_name(ThrottleBucketType type)
{
    assert(type < THROTTLE_BUCKETS);
    return throttle_bucket_names[type];
}

void throttle_config_init(ThrottleConfig *cfg)
{
    int i;

    memset(cfg, 0, sizeof(*cfg));
    for (i = 0; i < THROTTLE_BUCKETS; i++) {
        cfg->buckets[i].burst_length = 1;
    }
}

bool throttle_enabled(const ThrottleConfig *cfg)
{
    int i;

    for (i = 0; i < THROTTLE_BUCKETS; i++) {
        if (cfg->buckets[i].avg) {
            return true;
        }
    }
    return false;
}

/* Is a total limit combined with a per-direction one? */
static bool throttle_mixes_total(const ThrottleConfig *cfg,
                                 ThrottleBucketType total, bool burst)
{
    const LeakyBucket *b = cfg->buckets;
    uint64_t t = burst ? b[total].max : b[total].avg;
    uint64_t r = burst ? b[total + 1].max : b[total + 1].avg;
    uint64_t w = burst ? b[total + 2].max : b[total + 2].avg;

    return t && (r || w);
}

static bool throttle_bucket_is_valid(const LeakyBucket *b, GError **errp)
{
    if (b->avg > THROTTLE_VALUE_MAX || b->max > THROTTLE_VALUE_MAX) {
        error_setg(errp, "bps/iops/max values must be within [0, %llu]",
                   THROTTLE_VALUE_MAX);
        return false;
    }
    if (!b->burst_length) {
        error_setg(errp, "the burst length cannot be 0");
        return false;
    }
    if (b->burst_length > 1 && !b->max) {
        error_setg(errp, "burst length set without burst rate");
        return false;
    }
    /* Divide rather than multiply: the length may be close to 2^64. */
    if (b->max && b->burst_length > THROTTLE_VALUE_MAX / b->max) {
        error_setg(errp, "burst length too high for this burst rate");
        return false;
    }
    if (b->max && !b->avg) {
        error_setg(errp, "bps_max/iops_max require corresponding bps/iops "
                   "values");
        return false;
    }
    if (b->max && b->max < b->avg) {
        error_setg(errp, "bps_max/iops_max cannot be lower than bps/iops");
        return false;
    }
    return true;
}

bool throttle_is_valid(const ThrottleConfig *cfg, GError **errp)
{
    const LeakyBucket *b = cfg->buckets;
    int i;

    if (throttle_mixes_total(cfg, THROTTLE_BPS_TOTAL, false) ||
        throttle_mixes_total(cfg, THROTTLE_OPS_TOTAL, false) ||
        throttle_mixes_total(cfg, THROTTLE_BPS_TOTAL, true) ||
        throttle_mixes_total(cfg, THROTTLE_OPS_TOTAL, true)) {
        error_setg(errp, "bps/iops/max total values and read/write values "
                   "cannot be used at the same time");
        return false;
    }
    if (cfg->op_size && !b[THROTTLE_OPS_TOTAL].avg &&
        !b[THROTTLE_OPS_READ].avg && !b[THROTTLE_OPS_WRITE].avg) {
        error_setg(errp, "iops size requires an iops value to be set");
        return false;
    }
    for (i = 0; i < THROTTLE_BUCKETS; i++) {
        if (!throttle_bucket_is_valid(&b[i], errp)) {
            return false;
        }
    }
    return true;
}

void throttle_init(ThrottleState *ts, int64_t now)
{
    throttle_config_init(&ts->cfg);
    ts->previous_leak = now;
}

void throttle_config(ThrottleState *ts, const ThrottleConfig *cfg,
                     int64_t now)
{
    int i;

    ts->cfg = *cfg;
    for (i = 0; i < THROTTLE_BUCKETS; i++) {
        ts->cfg.buckets[i].level = 0;
        ts->cfg.buckets[i].burst_level = 0;
    }
    ts->previous_leak = now;
}

void throttle_get_config(const ThrottleState *ts, ThrottleConfig *cfg)
{
    int i;

    *cfg = ts->cfg;
    for (i = 0; i < THROTTLE_BUCKETS; i++) {
        cfg->buckets[i].level = 0;
        cfg->buckets[i].burst_level = 0;
    }
}

static void throttle_leak(ThrottleState *ts, int64_t now)
{
    double seconds;
    int i;

    if (now <= ts->previous_leak) {
        return;
    }
    seconds = (double)(now - ts->previous_leak) / NANOSECONDS_PER_SECOND;
    ts->previous_leak = now;

    for (i = 0; i < THROTTLE_BUCKETS; i++) {
        LeakyBucket *b = &ts->cfg.buckets[i];

        b->level = MAX(b->level - b->avg * seconds, 0.0);
        b->burst_level = MAX(b->burst_level - b->max * seconds, 0.0);
    }
}

/*
 * Nanoseconds until @excess units have leaked at @rate, rounded up, so
 * that at the returned time the request may start.  Rounding noise below
 * a picosecond is not worth a timer of its own: it counts as nothing.
 */
static int64_t throttle_ns_for(double excess, uint64_t rate)
{
    double ns = excess * NANOSECONDS_PER_SECOND / rate - 0.001;
    int64_t whole;

    if (ns <= 0) {
        return 0;
    }
    /* Years of debt: keep the deadline representable. */
    if (ns >= (double)(INT64_MAX / 4)) {
        return INT64_MAX / 4;
    }
    whole = (int64_t)ns;
    return whole < ns ? whole + 1 : whole;
}

static int64_t throttle_bucket_wait(const LeakyBucket *b)
{
    double capacity;

    if (!b->avg) {
        return 0;
    }
    capacity = b->max ? (double)b->max * b->burst_length
                      : b->avg / THROTTLE_DEFAULT_BURST_DIVISOR;
    if (b->level > capacity) {
        return throttle_ns_for(b->level - capacity, b->avg);
    }
    /* Room left in the burst, but the burst itself runs at max. */
    if (b->burst_length > 1) {
        double burst_capacity = b->max / THROTTLE_DEFAULT_BURST_DIVISOR;

        if (b->burst_level > burst_capacity) {
            return throttle_ns_for(b->burst_level - burst_capacity, b->max);
        }
    }
    return 0;
}

/* The buckets a request of direction @is_write fills. */
static void throttle_buckets_of(bool is_write, ThrottleBucketType out[4])
{
    out[0] = THROTTLE_BPS_TOTAL;
    out[1] = is_write ? THROTTLE_BPS_WRITE : THROTTLE_BPS_READ;
    out[2] = THROTTLE_OPS_TOTAL;
    out[3] = is_write ? THROTTLE_OPS_WRITE : THROTTLE_OPS_READ;
}

int64_t throttle_compute_wait(ThrottleState *ts, bool is_write,
                              int64_t now)
{
    ThrottleBucketType types[4];
    int64_t wait = 0;
    int i;

    throttle_leak(ts, now);
    throttle_buckets_of(is_write, types);
    for (i = 0; i < 4; i++) {
        wait = MAX(wait, throttle_bucket_wait(&ts->cfg.buckets[types[i]]));
    }
    return wait;
}

void throttle_account(ThrottleState *ts, bool is_write, uint64_t bytes)
{
    ThrottleBucketType types[4];
    double ops = 1.0;
    int i;

    if (ts->cfg.op_size && bytes > ts->cfg.op_size) {
        ops = (double)bytes / ts->cfg.op_size;
    }
    throttle_buckets_of(is_write, types);
    for (i = 0; i < 4; i++) {
        LeakyBucket *b = &ts->cfg.buckets[types[i]];
        double units = types[i] < THROTTLE_OPS_TOTAL ? (double)bytes : ops;

        /* An unlimited bucket would only grow without bound. */
        if (!b->avg) {
            continue;
        }
        b->level += units;
        if (b->burst_length > 1) {
            b->burst_level += units;
        }
    }
}
