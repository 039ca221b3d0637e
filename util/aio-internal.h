/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Interfaces between the parts of the event loop: async.c (contexts,
 * bottom halves, the drain registry), aio-posix.c (epoll and aio_poll) and
 * qemu-timer.c (timer lists).  Not for users of the event loop.
 *
 * Copyright (c) 2026 The Sluice authors
 */
#ifndef UTIL_AIO_INTERNAL_H
#define UTIL_AIO_INTERNAL_H

#include "block/aio.h"

/* aio-posix.c */
bool aio_context_setup(AioContext *ctx, GError **errp);
void aio_context_destroy(AioContext *ctx);

/* async.c */
bool aio_bh_poll(AioContext *ctx);
bool aio_bh_pending(AioContext *ctx);
void aio_context_enter_poll(AioContext *ctx, AioContext **saved);
void aio_context_leave_poll(AioContext *ctx, AioContext *saved);

/*
 * Poll timeout for @ctx in ns: 0 if bottom halves are pending, else until
 * the earliest timer, -1 for none.  Call after notify_me was raised.
 */
int64_t aio_compute_timeout(AioContext *ctx);

/* qemu-timer.c */
QEMUTimerList *timerlist_new(AioContext *ctx, QEMUClockType type);
void timerlist_free(QEMUTimerList *list);

/* ns until the earliest timer (0 if expired), or -1 if none is pending. */
int64_t timerlist_deadline_ns(QEMUTimerList *list);

/* Run expired timers; returns true if a callback ran.  Home thread. */
bool timerlist_run_timers(QEMUTimerList *list);

#endif /* UTIL_AIO_INTERNAL_H */
