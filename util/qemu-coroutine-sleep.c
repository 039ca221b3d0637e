/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Coroutine sleeps: on a timer of the current AioContext, or until woken.
 *
 * Copyright (c) 2026 The Sluice authors
 */
#include "qemu/osdep.h"

#include "block/aio.h"
#include "qemu/coroutine_int.h"

void qemu_co_sleep_wake(QemuCoSleep *w)
{
    Coroutine *co = w->to_wake;

    /*
     * Cleared before the wake so that a second wake (timer and caller
     * racing within the context) finds nobody to wake.
     */
    if (co) {
        w->to_wake = NULL;
        aio_co_wake(co);
    }
}

void coroutine_fn qemu_co_sleep(QemuCoSleep *w)
{
    Coroutine *self = qemu_coroutine_self();

    assert(self != NULL);
    /* Two sleepers on one QemuCoSleep would lose one of the wakes. */
    assert(w->to_wake == NULL);

    w->to_wake = self;
    qemu_coroutine_yield();

    /* Normally cleared by the waker; this covers a direct enter. */
    w->to_wake = NULL;
}

static void co_sleep_timer_cb(void *opaque)
{
    qemu_co_sleep_wake(opaque);
}

void coroutine_fn qemu_co_sleep_ns_wakeable(QemuCoSleep *w,
                                            QEMUClockType type, int64_t ns)
{
    AioContext *ctx = qemu_get_current_aio_context();
    QEMUTimer ts;

    assert(ctx != NULL);
    aio_timer_init(ctx, &ts, type, SCALE_NS, co_sleep_timer_cb, w);
    timer_mod(&ts, qemu_clock_get_ns(type) + ns);
    qemu_co_sleep(w);
    /*
     * Woken early, the timer is still armed; it lives on this stack.  The
     * callback runs in this context only, so it cannot be running now.
     */
    timer_del(&ts);
}

void coroutine_fn qemu_co_sleep_ns(QEMUClockType type, int64_t ns)
{
    QemuCoSleep w = { 0 };

    qemu_co_sleep_ns_wakeable(&w, type, ns);
}
