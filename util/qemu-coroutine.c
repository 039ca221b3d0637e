/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Coroutine core: creation from a per-thread pool, enter, yield, and the
 * queue of coroutines woken by the running one.
 *
 * Copyright (c) 2026 The Sluice authors
 */
#include "qemu/osdep.h"

#include "block/aio.h"
#include "qemu/coroutine_int.h"

/*
 * Free coroutines kept per thread, stacks included.  Enough to absorb the
 * request bursts of one context; the rest are unmapped.
 */
#define COROUTINE_POOL_MAX 64

typedef struct CoroutinePool {
    QSLIST_HEAD(, Coroutine) free;
    unsigned int count;
    bool registered;            /* co_pool_key set for this thread */
} CoroutinePool;

static __thread CoroutinePool co_pool;

static void co_pool_release(void *opaque);

/* Only for its destructor, which empties the pool of an exiting thread. */
static GPrivate co_pool_key = G_PRIVATE_INIT(co_pool_release);

/*
 * Not inlined so that each call computes this thread's TLS address: a
 * coroutine may resume in a different thread than it yielded in.
 */
static QEMU_NOINLINE CoroutinePool *co_pool_get(void)
{
    return &co_pool;
}

static void co_pool_release(void *opaque)
{
    CoroutinePool *pool = opaque;
    Coroutine *co;

    while ((co = QSLIST_FIRST(&pool->free)) != NULL) {
        QSLIST_REMOVE_HEAD(&pool->free, pool_next);
        qemu_coroutine_delete(co);
    }
    pool->count = 0;
    pool->registered = false;
}

static void co_pool_put(Coroutine *co)
{
    CoroutinePool *pool = co_pool_get();

    if (pool->count >= COROUTINE_POOL_MAX) {
        qemu_coroutine_delete(co);
        return;
    }
    if (!pool->registered) {
        pool->registered = true;
        g_private_set(&co_pool_key, pool);
    }
    QSLIST_INSERT_HEAD(&pool->free, co, pool_next);
    pool->count++;
}

unsigned int qemu_coroutine_pool_size(void)
{
    return COROUTINE_POOL_MAX;
}

Coroutine *qemu_coroutine_create(CoroutineEntry *entry, void *opaque)
{
    CoroutinePool *pool = co_pool_get();
    Coroutine *co = QSLIST_FIRST(&pool->free);

    if (co) {
        QSLIST_REMOVE_HEAD(&pool->free, pool_next);
        pool->count--;
    } else {
        co = qemu_coroutine_new();
    }

    co->entry = entry;
    co->entry_arg = opaque;
    co->caller = NULL;
    co->ctx = NULL;
    qatomic_set(&co->scheduled, NULL);
    QSIMPLEQ_INIT(&co->co_queue_wakeup);
    co->locks_held = 0;
    co->graph_rdlock_depth = 0;
    return co;
}

static void QEMU_NORETURN co_enter_broken(const char *func, Coroutine *co,
                                          const char *why,
                                          const char *scheduler)
{
    fprintf(stderr, "%s: coroutine %p %s%s\n", func, (void *)co, why,
            scheduler ? scheduler : "");
    abort();
}

void qemu_aio_coroutine_enter(AioContext *ctx, Coroutine *co)
{
    QSIMPLEQ_HEAD(, Coroutine) pending = QSIMPLEQ_HEAD_INITIALIZER(pending);
    Coroutine *self = qemu_coroutine_current();

    /*
     * A loop rather than recursion: each coroutine woken by the one that
     * just yielded is entered from here, so a long chain of wake-ups does
     * not nest switch frames on this stack.
     */
    QSIMPLEQ_INSERT_TAIL(&pending, co, co_queue_next);
    while (!QSIMPLEQ_EMPTY(&pending)) {
        Coroutine *to = QSIMPLEQ_FIRST(&pending);
        const char *scheduler;
        CoroutineAction ret;

        QSIMPLEQ_REMOVE_HEAD(&pending, co_queue_next);

        scheduler = qatomic_read(&to->scheduled);
        if (scheduler) {
            co_enter_broken(__func__, to, "is already scheduled by ",
                            scheduler);
        }
        if (to->caller) {
            co_enter_broken(__func__, to, "is already running", NULL);
        }

        to->caller = self;
        /* Wakers in other threads read ctx to find where to resume it. */
        qatomic_set(&to->ctx, ctx);
        smp_wmb();

        ret = qemu_coroutine_switch(self, to, COROUTINE_ENTER);

        /*
         * What @to woke runs next, ahead of what was pending before: the
         * order nested enters would have produced.
         */
        QSIMPLEQ_CONCAT(&to->co_queue_wakeup, &pending);
        QSIMPLEQ_CONCAT(&pending, &to->co_queue_wakeup);

        switch (ret) {
        case COROUTINE_YIELD:
            break;
        case COROUTINE_TERMINATE:
            assert(to->locks_held == 0);
            to->caller = NULL;
            co_pool_put(to);
            break;
        default:
            g_assert_not_reached();
        }
    }
}

void qemu_coroutine_enter(Coroutine *co)
{
    qemu_aio_coroutine_enter(qemu_get_current_aio_context(), co);
}

void qemu_coroutine_enter_if_inactive(Coroutine *co)
{
    if (!qemu_coroutine_entered(co)) {
        qemu_coroutine_enter(co);
    }
}

void coroutine_fn qemu_coroutine_yield(void)
{
    Coroutine *self = qemu_coroutine_self();
    Coroutine *to;

    assert(self != NULL);
    to = self->caller;
    assert(to != NULL);

    self->caller = NULL;
    qemu_coroutine_switch(self, to, COROUTINE_YIELD);
}

bool qemu_coroutine_entered(Coroutine *co)
{
    return co->caller != NULL;
}

AioContext *qemu_coroutine_get_aio_context(Coroutine *co)
{
    return qatomic_read(&co->ctx);
}
