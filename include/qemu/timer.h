/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Timers with nanosecond resolution.  Each timer belongs to one
 * AioContext; its deadline bounds that context's poll timeout and its
 * callback runs from that context's aio_poll().
 *
 * Copyright (c) 2026 The Sluice authors
 */
#ifndef QEMU_TIMER_H
#define QEMU_TIMER_H

#include "qemu/osdep.h"

#define SCALE_MS 1000000
#define SCALE_US 1000
#define SCALE_NS 1

#define NANOSECONDS_PER_SECOND 1000000000LL

typedef enum QEMUClockType {
    /* CLOCK_MONOTONIC: never jumps, runs while the process runs. */
    QEMU_CLOCK_REALTIME = 0,
    QEMU_CLOCK_MAX,
} QEMUClockType;

typedef struct AioContext AioContext;
typedef struct QEMUTimerList QEMUTimerList;
typedef void QEMUTimerCB(void *opaque);

typedef struct QEMUTimer {
    /* Protected by timer_list->lock while the timer is pending. */
    int64_t expire_time;        /* ns; -1 when not pending */
    struct QEMUTimer *next;     /* in timer_list's sorted active list */

    /* Set at init, constant afterwards. */
    QEMUTimerList *timer_list;
    QEMUTimerCB *cb;
    void *opaque;
    int scale;                  /* ns per unit of timer_mod() */
} QEMUTimer;

/* Current time of @type, in ns.  Any thread. */
int64_t qemu_clock_get_ns(QEMUClockType type);

static inline int64_t qemu_clock_get_ms(QEMUClockType type)
{
    return qemu_clock_get_ns(type) / SCALE_MS;
}

static inline int64_t qemu_clock_get_us(QEMUClockType type)
{
    return qemu_clock_get_ns(type) / SCALE_US;
}

/*
 * Initialise @ts to fire @cb(@opaque) in @ctx once it is armed and its
 * time comes.  @scale is the unit of timer_mod() in ns (SCALE_MS, ...).
 * Any thread.
 */
void aio_timer_init(AioContext *ctx, QEMUTimer *ts, QEMUClockType type,
                    int scale, QEMUTimerCB *cb, void *opaque);

/* g_new + aio_timer_init.  Free with timer_free(). */
QEMUTimer *aio_timer_new(AioContext *ctx, QEMUClockType type, int scale,
                         QEMUTimerCB *cb, void *opaque);

/*
 * Arm (or re-arm) @ts to expire at @expire_time, in units of its scale,
 * on its clock.  Wakes the owning context if this is now its earliest
 * deadline.  Any thread.
 */
void timer_mod(QEMUTimer *ts, int64_t expire_time);

/* Like timer_mod() but the time is in ns whatever the scale. */
void timer_mod_ns(QEMUTimer *ts, int64_t expire_time);

/*
 * Disarm @ts.  Once it returns the callback will not start again until
 * the timer is re-armed; a callback already running in the owning context
 * is not waited for.  Any thread.
 */
void timer_del(QEMUTimer *ts);

/* True while @ts is armed and has not fired yet.  Any thread. */
bool timer_pending(QEMUTimer *ts);

/* Expiry in ns, or -1 when @ts is not pending. */
int64_t timer_expire_time_ns(QEMUTimer *ts);

/* timer_del() and release a timer from aio_timer_new().  NULL is a no-op. */
void timer_free(QEMUTimer *ts);

#endif /* QEMU_TIMER_H */
