/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * AIO_WAIT_WHILE: wait for a condition that other contexts' callbacks make
 * false, polling the right event loop meanwhile.
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * A thread waiting on its own context polls that context, so the callbacks
 * that change the condition run right there.  The main thread waiting on
 * another (iothread's) context cannot poll it; it polls the main context
 * instead and relies on whoever changes the condition in the other thread
 * to call aio_wait_kick() afterwards.  An iothread may wait only on its own
 * context: it must never block on the main loop or a sibling.
 */
#ifndef BLOCK_AIO_WAIT_H
#define BLOCK_AIO_WAIT_H

#include "block/aio.h"
#include "qemu/main-loop.h"

/* Number of threads inside AIO_WAIT_WHILE(); atomic. */
extern unsigned int global_aio_wait_waiters;

/*
 * Wake the main thread if it is in AIO_WAIT_WHILE(), so it re-evaluates
 * its condition.  Cheap when nobody waits.  Any thread.
 */
void aio_wait_kick(void);

/*
 * Abort if the caller must not poll: a coroutine (it would poll under its
 * own feet) or a drain callback (registry rule 6).
 */
void aio_wait_assert_may_poll(void);

/*
 * Evaluate @cond until it is false, polling between evaluations.  @ctx is
 * the context whose work the condition depends on.  Returns true if it had
 * to poll at least once.  Must not be called from a coroutine or a drain
 * callback.
 */
#define AIO_WAIT_WHILE(ctx, cond) ({                                       \
    bool waited_ = false;                                                 \
    AioContext *ctx_ = (ctx);                                             \
    aio_wait_assert_may_poll();                                           \
    qatomic_inc(&global_aio_wait_waiters);                                \
    if (ctx_ && in_aio_context_home_thread(ctx_)) {                       \
        while ((cond)) {                                                  \
            aio_poll(ctx_, true);                                         \
            waited_ = true;                                               \
        }                                                                 \
    } else {                                                              \
        g_assert(qemu_in_main_thread());                                  \
        while ((cond)) {                                                  \
            aio_poll(qemu_get_aio_context(), true);                       \
            waited_ = true;                                               \
        }                                                                 \
    }                                                                     \
    qatomic_dec(&global_aio_wait_waiters);                                \
    waited_;                                                              \
})

#endif /* BLOCK_AIO_WAIT_H */
