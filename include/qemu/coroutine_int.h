/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Coroutine internals shared by the coroutine core, its switch backend and
 * the AioContext code that schedules coroutines.  Not for other users.
 *
 * Copyright (c) 2026 The Sluice authors
 */
#ifndef QEMU_COROUTINE_INT_H
#define QEMU_COROUTINE_INT_H

#include "qemu/coroutine.h"

typedef enum CoroutineAction {
    COROUTINE_YIELD = 1,
    COROUTINE_TERMINATE = 2,
    COROUTINE_ENTER = 3,
} CoroutineAction;

struct Coroutine {
    CoroutineEntry *entry;
    void *entry_arg;
    Coroutine *caller;          /* who entered us; NULL while not running */

    /* Home context; written by the thread that enters, read by wakers. */
    AioContext *ctx;

    /*
     * Name of the function that scheduled the coroutine with
     * aio_co_schedule(), NULL when not scheduled.  Atomic: catching a
     * double schedule from two threads is its point.
     */
    const char *scheduled;

    /* Link in the target context's lock-free scheduled list. */
    QSLIST_ENTRY(Coroutine) co_scheduled_next;

    /*
     * Coroutines to enter after this one yields or terminates: filled by
     * aio_co_enter() called from inside this coroutine.  Owner thread.
     */
    QSIMPLEQ_HEAD(, Coroutine) co_queue_wakeup;

    /* Link in a CoQueue, a CoMutex's waiters or a co_queue_wakeup list. */
    QSIMPLEQ_ENTRY(Coroutine) co_queue_next;

    /* Link in the per-thread free pool. */
    QSLIST_ENTRY(Coroutine) pool_next;

    /* CoMutex/CoRwlock held, for assertions. */
    unsigned int locks_held;

    /*
     * Read locks of the block graph held (nested; see graph-lock.h).
     * Only the coroutine itself touches it.
     */
    unsigned int graph_rdlock_depth;
};

/* Backend (coroutine-ucontext.c): allocate, free and switch stacks. */
Coroutine *qemu_coroutine_new(void);
void qemu_coroutine_delete(Coroutine *co);
CoroutineAction qemu_coroutine_switch(Coroutine *from, Coroutine *to,
                                      CoroutineAction action);

/*
 * Backend: the running coroutine or, outside coroutines, the thread's
 * leader (a Coroutine standing for the thread's own stack).  Never NULL.
 */
Coroutine *qemu_coroutine_current(void);

/*
 * Backend: coroutines allocated by qemu_coroutine_new() and not yet
 * deleted, pooled ones included (tests check pools are released).
 */
unsigned int qemu_coroutine_allocated(void);

/* Backend: name of the switch method in use, for benchmarks and docs. */
const char *qemu_coroutine_backend_name(void);

#endif /* QEMU_COROUTINE_INT_H */
