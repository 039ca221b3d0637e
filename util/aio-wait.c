/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Waking AIO_WAIT_WHILE() waiters in the main thread.
 *
 * Copyright (c) 2026 The Sluice authors
 */
#include "qemu/osdep.h"

#include "block/aio-wait.h"
#include "qemu/coroutine.h"

unsigned int global_aio_wait_waiters;

static void aio_wait_dummy_bh(void *opaque)
{
    /* Running at all is the point: aio_poll() returns, cond re-checked. */
}

void aio_wait_kick(void)
{
    /* Order the caller's state change before reading the waiter count. */
    smp_mb();
    if (qatomic_read(&global_aio_wait_waiters)) {
        aio_bh_schedule_oneshot(qemu_get_aio_context(), aio_wait_dummy_bh,
                                NULL);
    }
}

void aio_wait_assert_may_poll(void)
{
    g_assert(aio_drain_callback_depth() == 0);
    g_assert(!qemu_in_coroutine());
}
