/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Coroutine locks: CoMutex, CoQueue and CoRwlock.
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * All three hand ownership over directly: the releasing side picks the
 * next waiter, makes it the owner and wakes it with aio_co_wake().  A
 * coroutine that arrives meanwhile finds the lock taken and queues, so
 * nobody overtakes a waiter, and a waiter never has to re-check anything
 * after it wakes up.
 */
#include "qemu/osdep.h"

#include "block/aio.h"
#include "qemu/co-lock.h"
#include "qemu/coroutine_int.h"

/* ---- CoMutex ---- */

void qemu_co_mutex_init(CoMutex *mutex)
{
    g_mutex_init(&mutex->lock);
    mutex->owner = NULL;
    QSIMPLEQ_INIT(&mutex->waiters);
}

void qemu_co_mutex_destroy(CoMutex *mutex)
{
    assert(mutex->owner == NULL);
    assert(QSIMPLEQ_EMPTY(&mutex->waiters));
    g_mutex_clear(&mutex->lock);
}

void coroutine_fn qemu_co_mutex_lock(CoMutex *mutex)
{
    Coroutine *self = qemu_coroutine_self();

    assert(self != NULL);

    g_mutex_lock(&mutex->lock);
    assert(mutex->owner != self);
    if (mutex->owner == NULL) {
        mutex->owner = self;
        g_mutex_unlock(&mutex->lock);
        self->locks_held++;
        return;
    }
    QSIMPLEQ_INSERT_TAIL(&mutex->waiters, self, co_queue_next);
    g_mutex_unlock(&mutex->lock);

    /*
     * An unlocker in another thread may already have picked us and called
     * aio_co_wake(): that schedules us in our context, which cannot run
     * us before this yield returns control to it.
     */
    qemu_coroutine_yield();

    assert(qatomic_read(&mutex->owner) == self);
    self->locks_held++;
}

void coroutine_fn qemu_co_mutex_unlock(CoMutex *mutex)
{
    Coroutine *self = qemu_coroutine_self();
    Coroutine *next;

    assert(self != NULL);

    g_mutex_lock(&mutex->lock);
    assert(mutex->owner == self);
    next = QSIMPLEQ_FIRST(&mutex->waiters);
    if (next) {
        QSIMPLEQ_REMOVE_HEAD(&mutex->waiters, co_queue_next);
    }
    qatomic_set(&mutex->owner, next);
    g_mutex_unlock(&mutex->lock);

    self->locks_held--;
    if (next) {
        aio_co_wake(next);
    }
}

void qemu_co_mutex_assert_locked(CoMutex *mutex)
{
    Coroutine *self = qemu_coroutine_self();

    assert(self != NULL && qatomic_read(&mutex->owner) == self);
}

/* ---- CoQueue ---- */

void qemu_co_queue_init(CoQueue *queue)
{
    QSIMPLEQ_INIT(&queue->entries);
}

void coroutine_fn qemu_co_queue_wait(CoQueue *queue, CoMutex *mutex)
{
    Coroutine *self = qemu_coroutine_self();

    assert(self != NULL);

    /* Queued before the mutex is dropped, so no wake-up is missed. */
    QSIMPLEQ_INSERT_TAIL(&queue->entries, self, co_queue_next);
    if (mutex) {
        qemu_co_mutex_unlock(mutex);
    }
    qemu_coroutine_yield();
    if (mutex) {
        qemu_co_mutex_lock(mutex);
    }
}

static Coroutine *co_queue_pop(CoQueue *queue)
{
    Coroutine *co = QSIMPLEQ_FIRST(&queue->entries);

    if (co) {
        QSIMPLEQ_REMOVE_HEAD(&queue->entries, co_queue_next);
    }
    return co;
}

bool qemu_co_queue_next(CoQueue *queue)
{
    Coroutine *co = co_queue_pop(queue);

    if (!co) {
        return false;
    }
    aio_co_wake(co);
    return true;
}

void qemu_co_queue_restart_all(CoQueue *queue)
{
    while (qemu_co_queue_next(queue)) {
        /* nothing */
    }
}

bool qemu_co_enter_next(CoQueue *queue)
{
    /*
     * aio_co_wake() is exactly the contract: entered at once from outside
     * a coroutine in the waiter's home thread, right after the caller
     * yields from inside one, and in its own context in any case.
     */
    return qemu_co_queue_next(queue);
}

bool qemu_co_queue_empty(CoQueue *queue)
{
    return QSIMPLEQ_EMPTY(&queue->entries);
}

/* ---- CoRwlock ---- */

/*
 * One waiter, on the waiter's stack.  The queue keeps readers and writers
 * in arrival order; upgrading readers go first (see upgrade).
 */
struct CoRwTicket {
    bool write;
    bool upgrade;
    Coroutine *co;
    QSIMPLEQ_ENTRY(CoRwTicket) next;
};

typedef QSIMPLEQ_HEAD(CoRwTicketList, CoRwTicket) CoRwTicketList;

void qemu_co_rwlock_init(CoRwlock *lock)
{
    qemu_co_mutex_init(&lock->mutex);
    lock->owners = 0;
    QSIMPLEQ_INIT(&lock->tickets);
}

/*
 * Grant the lock to the waiters at the head of the queue that can have it
 * now: a run of readers while no writer holds it, or one writer when it is
 * free.  Called with lock->mutex held.  The granted tickets move to
 * @granted; their coroutines are woken only after the mutex is released.
 */
static void co_rwlock_grant(CoRwlock *lock, CoRwTicketList *granted)
{
    CoRwTicket *t;

    while ((t = QSIMPLEQ_FIRST(&lock->tickets)) != NULL) {
        if (t->write) {
            if (lock->owners != 0) {
                return;
            }
            lock->owners = -1;
        } else {
            if (lock->owners < 0) {
                return;
            }
            lock->owners++;
        }
        QSIMPLEQ_REMOVE_HEAD(&lock->tickets, next);
        QSIMPLEQ_INSERT_TAIL(granted, t, next);
        if (t->write) {
            return;
        }
    }
}

/* Drop lock->mutex, then wake everybody co_rwlock_grant() picked. */
static void coroutine_fn co_rwlock_release(CoRwlock *lock,
                                           CoRwTicketList *granted)
{
    CoRwTicket *t;

    qemu_co_mutex_unlock(&lock->mutex);

    /*
     * A ticket lives on its waiter's stack and dies as soon as the waiter
     * runs, possibly in another thread: read it fully before the wake.
     */
    t = QSIMPLEQ_FIRST(granted);
    while (t) {
        CoRwTicket *next = QSIMPLEQ_NEXT(t, next);
        Coroutine *co = t->co;

        aio_co_wake(co);
        t = next;
    }
}

/*
 * Queue @t and sleep until co_rwlock_grant() hands the lock over.  Called
 * with lock->mutex held; returns without it.
 */
static void coroutine_fn co_rwlock_wait(CoRwlock *lock, CoRwTicket *t)
{
    t->co = qemu_coroutine_self();
    qemu_co_mutex_unlock(&lock->mutex);
    qemu_coroutine_yield();
}

void coroutine_fn qemu_co_rwlock_rdlock(CoRwlock *lock)
{
    Coroutine *self = qemu_coroutine_self();
    CoRwTicket t = { .write = false };

    qemu_co_mutex_lock(&lock->mutex);
    /* Anyone queued, writer or not, arrived first: stay behind them. */
    if (lock->owners >= 0 && QSIMPLEQ_EMPTY(&lock->tickets)) {
        lock->owners++;
        qemu_co_mutex_unlock(&lock->mutex);
    } else {
        QSIMPLEQ_INSERT_TAIL(&lock->tickets, &t, next);
        co_rwlock_wait(lock, &t);
    }
    self->locks_held++;
}

void coroutine_fn qemu_co_rwlock_wrlock(CoRwlock *lock)
{
    Coroutine *self = qemu_coroutine_self();
    CoRwTicket t = { .write = true };

    qemu_co_mutex_lock(&lock->mutex);
    if (lock->owners == 0 && QSIMPLEQ_EMPTY(&lock->tickets)) {
        lock->owners = -1;
        qemu_co_mutex_unlock(&lock->mutex);
    } else {
        QSIMPLEQ_INSERT_TAIL(&lock->tickets, &t, next);
        co_rwlock_wait(lock, &t);
    }
    self->locks_held++;
}

void coroutine_fn qemu_co_rwlock_unlock(CoRwlock *lock)
{
    Coroutine *self = qemu_coroutine_self();
    CoRwTicketList granted = QSIMPLEQ_HEAD_INITIALIZER(granted);

    assert(self != NULL);

    qemu_co_mutex_lock(&lock->mutex);
    if (lock->owners < 0) {
        lock->owners = 0;
    } else {
        assert(lock->owners > 0);
        lock->owners--;
    }
    co_rwlock_grant(lock, &granted);
    co_rwlock_release(lock, &granted);
    self->locks_held--;
}

void coroutine_fn qemu_co_rwlock_upgrade(CoRwlock *lock)
{
    CoRwTicket t = { .write = true, .upgrade = true };
    CoRwTicket *prev = NULL;
    CoRwTicket *cur;

    qemu_co_mutex_lock(&lock->mutex);
    assert(lock->owners > 0);
    if (lock->owners == 1) {
        lock->owners = -1;
        qemu_co_mutex_unlock(&lock->mutex);
        return;
    }

    /*
     * Give up our read hold and wait for the other readers to leave.  We
     * go ahead of every waiter that is not itself upgrading, so no writer
     * that queued behind our read hold gets in between; concurrent
     * upgraders keep their arrival order.  New readers already queue
     * behind us because the queue is not empty.
     */
    lock->owners--;
    QSIMPLEQ_FOREACH(cur, &lock->tickets, next) {
        if (!cur->upgrade) {
            break;
        }
        prev = cur;
    }
    if (!prev) {
        QSIMPLEQ_INSERT_HEAD(&lock->tickets, &t, next);
    } else {
        t.next.sqe_next = prev->next.sqe_next;
        prev->next.sqe_next = &t;
        if (!t.next.sqe_next) {
            lock->tickets.sqh_last = &t.next.sqe_next;
        }
    }
    co_rwlock_wait(lock, &t);
}

void coroutine_fn qemu_co_rwlock_downgrade(CoRwlock *lock)
{
    CoRwTicketList granted = QSIMPLEQ_HEAD_INITIALIZER(granted);

    qemu_co_mutex_lock(&lock->mutex);
    assert(lock->owners == -1);
    lock->owners = 1;
    /* Readers queued at the head may share with us now; writers wait. */
    co_rwlock_grant(lock, &granted);
    co_rwlock_release(lock, &granted);
}
