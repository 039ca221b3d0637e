/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Coroutines: functions with their own stack that can yield and be
 * re-entered later, so a request path reads as straight-line code.
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * A coroutine belongs to the AioContext it was last entered in (its home
 * context).  Code that resumes it from elsewhere uses aio_co_wake() or
 * aio_co_schedule() (block/aio.h), never qemu_coroutine_enter() from a
 * foreign thread.
 */
#ifndef QEMU_COROUTINE_H
#define QEMU_COROUTINE_H

#include "qemu/osdep.h"
#include "qemu/timer.h"

typedef struct Coroutine Coroutine;
typedef struct AioContext AioContext;

typedef void coroutine_fn CoroutineEntry(void *opaque);

/*
 * Create a coroutine that will run @entry(@opaque) when first entered.
 * Stacks come from a pool, so creating is cheap.  Any thread.
 */
Coroutine *qemu_coroutine_create(CoroutineEntry *entry, void *opaque);

/*
 * Run @co until it yields or terminates, in the current context.  @co must
 * not be running, and must not be scheduled by aio_co_schedule() (abort:
 * broken invariant).  A terminated coroutine is released here.
 */
void qemu_coroutine_enter(Coroutine *co);

/* As qemu_coroutine_enter(), with @ctx as @co's home context. */
void qemu_aio_coroutine_enter(AioContext *ctx, Coroutine *co);

/* qemu_coroutine_enter() unless @co is already running (entered). */
void qemu_coroutine_enter_if_inactive(Coroutine *co);

/* Give control back to whoever entered the current coroutine. */
void coroutine_fn qemu_coroutine_yield(void);

/* The running coroutine, or NULL outside coroutine context. */
Coroutine *qemu_coroutine_self(void);

/* True when called from a coroutine. */
bool qemu_in_coroutine(void);

/* True between @co being entered and its next yield (or termination). */
bool qemu_coroutine_entered(Coroutine *co);

/* @co's home context. */
AioContext *qemu_coroutine_get_aio_context(Coroutine *co);

/*
 * Sleep @ns on @type's clock in the current context, then continue there.
 */
void coroutine_fn qemu_co_sleep_ns(QEMUClockType type, int64_t ns);

/*
 * A sleep that another party may cut short: the sleeper calls
 * qemu_co_sleep_ns_wakeable(); anyone in the same context may call
 * qemu_co_sleep_wake() to end it early (a no-op if nobody sleeps).
 */
typedef struct QemuCoSleep {
    Coroutine *to_wake;
} QemuCoSleep;

void coroutine_fn qemu_co_sleep_ns_wakeable(QemuCoSleep *w,
                                            QEMUClockType type, int64_t ns);

/* Sleep until qemu_co_sleep_wake(); no timer. */
void coroutine_fn qemu_co_sleep(QemuCoSleep *w);

void qemu_co_sleep_wake(QemuCoSleep *w);

/* Number of pooled coroutines kept per thread (tests and benchmarks). */
unsigned int qemu_coroutine_pool_size(void);

#endif /* QEMU_COROUTINE_H */
