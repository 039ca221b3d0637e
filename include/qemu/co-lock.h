/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Locks a coroutine may hold across a yield: CoMutex, CoQueue, CoRwlock.
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * Waiters are woken with aio_co_wake(), so a coroutine waiting in one
 * AioContext is resumed there even if the lock is released from another
 * thread.  All three are fair: waiters are served in arrival order.
 */
#ifndef QEMU_CO_LOCK_H
#define QEMU_CO_LOCK_H

#include "qemu/coroutine.h"

typedef struct CoMutex {
    /*
     * Protected by lock: owner, waiters.  The lock is held for a few
     * instructions only, never across a yield.
     */
    GMutex lock;
    Coroutine *owner;           /* NULL when free */
    QSIMPLEQ_HEAD(, Coroutine) waiters;
} CoMutex;

/* Initialise @mutex (unlocked).  Any thread. */
void qemu_co_mutex_init(CoMutex *mutex);

/* Release resources of an unlocked mutex with no waiters. */
void qemu_co_mutex_destroy(CoMutex *mutex);

/*
 * Take @mutex, yielding while another coroutine holds it.  Ownership is
 * handed over in arrival order.
 */
void coroutine_fn qemu_co_mutex_lock(CoMutex *mutex);

/*
 * Release @mutex, handing it to the oldest waiter, which is woken in its
 * own context.  Must be called by the owner.
 */
void coroutine_fn qemu_co_mutex_unlock(CoMutex *mutex);

/* Abort unless the calling coroutine holds @mutex. */
void qemu_co_mutex_assert_locked(CoMutex *mutex);

/*
 * CoQueue: coroutines waiting for a condition.  The queue itself is
 * protected by the CoMutex passed to qemu_co_queue_wait() (or, with NULL,
 * by running in one context only).
 */
typedef struct CoQueue {
    QSIMPLEQ_HEAD(, Coroutine) entries;
} CoQueue;

void qemu_co_queue_init(CoQueue *queue);

/*
 * Queue the calling coroutine and yield; @mutex, if not NULL, is released
 * while waiting and re-taken before returning.
 */
void coroutine_fn qemu_co_queue_wait(CoQueue *queue, CoMutex *mutex);

/* Wake the oldest waiter.  Returns false if the queue was empty. */
bool qemu_co_queue_next(CoQueue *queue);

/* Wake every waiter. */
void qemu_co_queue_restart_all(CoQueue *queue);

/*
 * Remove the oldest waiter and enter it at once (outside coroutines) or
 * right after the caller yields.  Returns false if the queue was empty.
 */
bool qemu_co_enter_next(CoQueue *queue);

bool qemu_co_queue_empty(CoQueue *queue);

/*
 * CoRwlock: many readers or one writer; readers may upgrade to writer and
 * writers downgrade to reader.  Fair: a waiting writer stops new readers
 * from overtaking it.
 */
typedef struct CoRwTicket CoRwTicket;

typedef struct CoRwlock {
    CoMutex mutex;              /* protects the fields below */
    int owners;                 /* >0: readers; -1: one writer; 0: free */
    QSIMPLEQ_HEAD(, CoRwTicket) tickets;
} CoRwlock;

void qemu_co_rwlock_init(CoRwlock *lock);
void coroutine_fn qemu_co_rwlock_rdlock(CoRwlock *lock);
void coroutine_fn qemu_co_rwlock_wrlock(CoRwlock *lock);

/* Release a read or write hold. */
void coroutine_fn qemu_co_rwlock_unlock(CoRwlock *lock);

/*
 * A reader becomes the writer, waiting for the other readers to leave.
 * Readers that upgrade concurrently are served one after another.
 */
void coroutine_fn qemu_co_rwlock_upgrade(CoRwlock *lock);

/* The writer becomes a reader without letting another writer in first. */
void coroutine_fn qemu_co_rwlock_downgrade(CoRwlock *lock);

#endif /* QEMU_CO_LOCK_H */
