/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Timer lists: one per clock per AioContext, kept sorted by expiry so the
 * earliest deadline is at the head.
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * Timers are armed and disarmed from any thread (a throttle group arms a
 * member's timer from whichever context completes a request), so each list
 * has a lock.  Callbacks run in the owning context's home thread with the
 * lock dropped, so a callback can re-arm its own timer.
 */
#include "qemu/osdep.h"
#include <time.h>

#include "qemu/timer.h"
#include "util/aio-internal.h"

struct QEMUTimerList {
    GMutex lock;                /* protects active and the timers on it */
    QEMUTimer *active;          /* sorted by expire_time, earliest first */
    AioContext *ctx;
    QEMUClockType type;
};

int64_t qemu_clock_get_ns(QEMUClockType type)
{
    struct timespec ts;

    assert(type == QEMU_CLOCK_REALTIME);
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * NANOSECONDS_PER_SECOND + ts.tv_nsec;
}

QEMUTimerList *timerlist_new(AioContext *ctx, QEMUClockType type)
{
    QEMUTimerList *list = g_new0(QEMUTimerList, 1);

    g_mutex_init(&list->lock);
    list->ctx = ctx;
    list->type = type;
    return list;
}

void timerlist_free(QEMUTimerList *list)
{
    QEMUTimer *ts, *next;

    /* Owners may still hold timers; leave them disarmed, not dangling. */
    for (ts = list->active; ts; ts = next) {
        next = ts->next;
        ts->next = NULL;
        ts->expire_time = -1;
    }
    g_mutex_clear(&list->lock);
    g_free(list);
}

void aio_timer_init(AioContext *ctx, QEMUTimer *ts, QEMUClockType type,
                    int scale, QEMUTimerCB *cb, void *opaque)
{
    assert(type < QEMU_CLOCK_MAX && scale > 0);
    ts->timer_list = ctx->tlg[type];
    ts->cb = cb;
    ts->opaque = opaque;
    ts->scale = scale;
    ts->expire_time = -1;
    ts->next = NULL;
}

QEMUTimer *aio_timer_new(AioContext *ctx, QEMUClockType type, int scale,
                         QEMUTimerCB *cb, void *opaque)
{
    QEMUTimer *ts = g_new0(QEMUTimer, 1);

    aio_timer_init(ctx, ts, type, scale, cb, opaque);
    return ts;
}

/* Unlink @ts if it is on the list.  Called with the list lock held. */
static void timer_unlink_locked(QEMUTimerList *list, QEMUTimer *ts)
{
    QEMUTimer **pt;

    if (ts->expire_time < 0) {
        return;
    }
    for (pt = &list->active; *pt; pt = &(*pt)->next) {
        if (*pt == ts) {
            *pt = ts->next;
            break;
        }
    }
    ts->next = NULL;
    ts->expire_time = -1;
}

void timer_mod_ns(QEMUTimer *ts, int64_t expire_time)
{
    QEMUTimerList *list = ts->timer_list;
    QEMUTimer **pt;
    bool first;

    if (expire_time < 0) {
        expire_time = 0;
    }

    g_mutex_lock(&list->lock);
    timer_unlink_locked(list, ts);
    for (pt = &list->active; *pt; pt = &(*pt)->next) {
        if ((*pt)->expire_time > expire_time) {
            break;
        }
    }
    ts->expire_time = expire_time;
    ts->next = *pt;
    *pt = ts;
    first = pt == &list->active;
    g_mutex_unlock(&list->lock);

    /* A new earliest deadline shortens the sleep of the owning thread. */
    if (first) {
        aio_notify(list->ctx);
    }
}

void timer_mod(QEMUTimer *ts, int64_t expire_time)
{
    int64_t ns;

    if (expire_time > INT64_MAX / ts->scale) {
        ns = INT64_MAX;
    } else {
        ns = expire_time * ts->scale;
    }
    timer_mod_ns(ts, ns);
}

void timer_del(QEMUTimer *ts)
{
    QEMUTimerList *list = ts->timer_list;

    if (!list) {
        return;
    }
    g_mutex_lock(&list->lock);
    timer_unlink_locked(list, ts);
    g_mutex_unlock(&list->lock);
}

bool timer_pending(QEMUTimer *ts)
{
    return timer_expire_time_ns(ts) >= 0;
}

int64_t timer_expire_time_ns(QEMUTimer *ts)
{
    QEMUTimerList *list = ts->timer_list;
    int64_t expire;

    g_mutex_lock(&list->lock);
    expire = ts->expire_time;
    g_mutex_unlock(&list->lock);
    return expire;
}

void timer_free(QEMUTimer *ts)
{
    if (ts) {
        timer_del(ts);
        g_free(ts);
    }
}

int64_t timerlist_deadline_ns(QEMUTimerList *list)
{
    int64_t expire;
    int64_t now;

    g_mutex_lock(&list->lock);
    expire = list->active ? list->active->expire_time : -1;
    g_mutex_unlock(&list->lock);

    if (expire < 0) {
        return -1;
    }
    now = qemu_clock_get_ns(list->type);
    return expire > now ? expire - now : 0;
}

bool timerlist_run_timers(QEMUTimerList *list)
{
    bool progress = false;
    int64_t now = -1;

    for (;;) {
        QEMUTimer *ts;
        QEMUTimerCB *cb;
        void *opaque;

        g_mutex_lock(&list->lock);
        ts = list->active;
        if (!ts) {
            g_mutex_unlock(&list->lock);
            break;
        }
        /* Read the clock once, and only when something is armed. */
        if (now < 0) {
            now = qemu_clock_get_ns(list->type);
        }
        if (ts->expire_time > now) {
            g_mutex_unlock(&list->lock);
            break;
        }
        list->active = ts->next;
        ts->next = NULL;
        ts->expire_time = -1;
        cb = ts->cb;
        opaque = ts->opaque;
        g_mutex_unlock(&list->lock);

        cb(opaque);
        progress = true;
    }
    return progress;
}
