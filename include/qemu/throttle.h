/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * I/O limits as leaky buckets: the arithmetic of throttling, with no
 * knowledge of timers, coroutines or block nodes (throttle groups in
 * block/throttle-groups.c put it to work).
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * Six buckets limit bytes and operations per second, in total and per
 * direction.  Each bucket fills with what passes and leaks at its
 * average rate ("avg").  A request may start while the bucket holds no
 * more than its capacity; otherwise it waits until enough has leaked.
 *
 * - Without a burst rate ("max" = 0) the capacity is avg / 10: a tenth
 *   of a second's worth may pass at once.
 * - With one, the capacity is max * burst_length: that much may pass
 *   before the rate falls back to avg.  When burst_length > 1, a second
 *   bucket of capacity max / 10, leaking at max, keeps the burst itself
 *   at the max rate.
 *
 * An operation counts as one, or as bytes / op_size when op_size
 * ("iops-size") is set and the request is larger.
 *
 * These are QEMU 7.2's observable semantics (docs/devel/throttle.md).
 * Not thread-safe: the caller serialises access to one ThrottleState.
 */
#ifndef QEMU_THROTTLE_H
#define QEMU_THROTTLE_H

#include "qemu/osdep.h"

/* Largest rate (units per second) a bucket takes, as QEMU. */
#define THROTTLE_VALUE_MAX 1000000000000000ULL

typedef enum ThrottleBucketType {
    THROTTLE_BPS_TOTAL,
    THROTTLE_BPS_READ,
    THROTTLE_BPS_WRITE,
    THROTTLE_OPS_TOTAL,
    THROTTLE_OPS_READ,
    THROTTLE_OPS_WRITE,
    THROTTLE_BUCKETS,
} ThrottleBucketType;

typedef struct LeakyBucket {
    /* Configuration. */
    uint64_t avg;               /* units per second; 0: no limit */
    uint64_t max;               /* burst rate; 0: bursts of avg / 10 */
    uint64_t burst_length;      /* seconds at max before avg; >= 1 */
    /* State: units passed and not leaked yet. */
    double level;
    double burst_level;         /* leaks at max; used if burst_length > 1 */
} LeakyBucket;

typedef struct ThrottleConfig {
    LeakyBucket buckets[THROTTLE_BUCKETS];
    uint64_t op_size;           /* iops-size: bytes of one operation */
} ThrottleConfig;

typedef struct ThrottleState {
    ThrottleConfig cfg;
    int64_t previous_leak;      /* ns, on the clock the caller uses */
} ThrottleState;

/* The user-facing name of bucket @type ("bps-total", "iops-read", ...). */
const char *throttle_bucket_name(ThrottleBucketType type);

/* No limits: every avg and max 0, burst_length 1, op_size 0. */
void throttle_config_init(ThrottleConfig *cfg);

/* True if any bucket has an average rate. */
bool throttle_enabled(const ThrottleConfig *cfg);

/*
 * Check @cfg as QEMU does, with its messages, in its order: total and
 * read/write values mixed; iops-size without an iops value; then per
 * bucket (bps-total, bps-read, bps-write, iops-total, iops-read,
 * iops-write): a value outside [0, THROTTLE_VALUE_MAX], a burst length
 * of 0, a burst length without a burst rate, max * burst_length beyond
 * THROTTLE_VALUE_MAX, a burst rate without an average rate, a burst
 * rate below the average.  Values are int64_t as the user gave them (a
 * negative one is out of range), cast to uint64_t in @cfg.
 */
bool throttle_is_valid(const ThrottleConfig *cfg, GError **errp);

/* A state with no limits, last leaked at @now. */
void throttle_init(ThrottleState *ts, int64_t now);

/*
 * Use @cfg (valid) from now on.  The buckets start empty: new limits do
 * not inherit the debt of the old ones.
 */
void throttle_config(ThrottleState *ts, const ThrottleConfig *cfg,
                     int64_t now);

/* The configuration of @ts, without its levels. */
void throttle_get_config(const ThrottleState *ts, ThrottleConfig *cfg);

/*
 * Let the buckets leak until @now (ns; earlier times are ignored), then
 * return how long a request of direction @is_write must wait before it
 * may start: 0 if it may start now.  Rounded up, so that at the returned
 * time it may.
 */
int64_t throttle_compute_wait(ThrottleState *ts, bool is_write,
                              int64_t now);

/* Count a request of @bytes that starts now into its buckets. */
void throttle_account(ThrottleState *ts, bool is_write, uint64_t bytes);

#endif /* QEMU_THROTTLE_H */
