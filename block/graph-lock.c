/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The graph lock.  Readers count themselves in a per-thread counter, so a
 * request costs two uncontended atomics on its own cache line; the writer
 * sums the counters.  A coroutine may finish in another thread than it
 * started (requests move to their backend's context), so one thread's
 * count can go negative: only the sum means anything.
 *
 * Copyright (c) 2026 The Sluice authors
 */
#include "qemu/osdep.h"

#include "block/aio-wait.h"
#include "block/graph-lock.h"
#include "qemu/coroutine_int.h"
#include "qemu/main-loop.h"

/* Own cache line: every request of the thread touches it. */
typedef struct GraphReaders {
    /* Read locks taken minus dropped in this thread; atomic. */
    int count;
} __attribute__((aligned(64))) GraphReaders;

/* A reader waiting for the writer to finish. */
typedef struct GraphWaiter {
    Coroutine *co;
    QSIMPLEQ_ENTRY(GraphWaiter) next;
} GraphWaiter;

/*
 * graph_mutex protects the reader list and the waiters; has_writer is
 * written under it and read by readers without it (the fast path).
 */
static GMutex graph_mutex;
static GPtrArray *all_readers;
static QSIMPLEQ_HEAD(, GraphWaiter) graph_waiters =
    QSIMPLEQ_HEAD_INITIALIZER(graph_waiters);
static int has_writer;

/* Counters live as long as the process: coroutines outlive threads. */
static __thread GraphReaders *my_readers;

static GraphReaders *graph_readers_get(void)
{
    if (!my_readers) {
        my_readers = g_aligned_alloc0(1, sizeof(GraphReaders),
                                      sizeof(GraphReaders));
        g_mutex_lock(&graph_mutex);
        if (!all_readers) {
            all_readers = g_ptr_array_new();
        }
        g_ptr_array_add(all_readers, my_readers);
        g_mutex_unlock(&graph_mutex);
    }
    return my_readers;
}

static int graph_reader_count(void)
{
    int sum = 0;
    guint i;

    g_mutex_lock(&graph_mutex);
    for (i = 0; all_readers && i < all_readers->len; i++) {
        GraphReaders *r = g_ptr_array_index(all_readers, i);

        sum += qatomic_read(&r->count);
    }
    g_mutex_unlock(&graph_mutex);
    return sum;
}

/*
 * Who holds the write lock: a coroutine, or WRITER_NOT_COROUTINE for
 * main-thread code outside coroutines.  Main thread only.
 */
#define WRITER_NOT_COROUTINE ((Coroutine *)1)
static Coroutine *graph_writer;

/*
 * From a coroutine, wait by rescheduling ourselves in the main context:
 * the main loop keeps running (and readers keep finishing) meanwhile.
 */
static void coroutine_fn graph_co_wait_main_loop(void)
{
    aio_co_schedule(qemu_get_aio_context(), qemu_coroutine_self());
    qemu_coroutine_yield();
}

/* Let go of the lock and wake the readers that waited for it. */
static void graph_release(void)
{
    QSIMPLEQ_HEAD(, GraphWaiter) waiters;
    GraphWaiter *w;

    g_mutex_lock(&graph_mutex);
    qatomic_set(&has_writer, 0);
    QSIMPLEQ_INIT(&waiters);
    QSIMPLEQ_CONCAT(&waiters, &graph_waiters);
    g_mutex_unlock(&graph_mutex);

    /* A writer waiting in the main loop looks again. */
    aio_wait_kick();
    /* The waiter lives on its coroutine's stack: read it before waking. */
    while ((w = QSIMPLEQ_FIRST(&waiters))) {
        Coroutine *co = w->co;

        QSIMPLEQ_REMOVE_HEAD(&waiters, next);
        aio_co_wake(co);
    }
}

static bool graph_wrlock_busy(void)
{
    return qatomic_read(&has_writer) || graph_reader_count() > 0;
}

/*
 * Shut readers out if there is no writer, and keep them out if none holds
 * a read lock by then; otherwise let them back in.  Main thread.
 */
static bool graph_try_take(void)
{
    g_mutex_lock(&graph_mutex);
    if (qatomic_read(&has_writer)) {
        g_mutex_unlock(&graph_mutex);
        return false;
    }
    qatomic_set(&has_writer, 1);
    g_mutex_unlock(&graph_mutex);
    /*
     * Pairs with the barrier in bdrv_graph_co_rdlock(): either the reader
     * sees has_writer and backs off, or we see its count.
     */
    smp_mb();
    if (graph_reader_count() == 0) {
        return true;
    }
    graph_release();
    return false;
}

void coroutine_mixed_fn bdrv_graph_wrlock(void)
{
    Coroutine *self = qemu_coroutine_self();

    assert(qemu_in_main_thread());
    if (self) {
        /* A reader cannot become the writer: it would wait for itself. */
        assert(self->graph_rdlock_depth == 0);
    }
    assert(graph_writer != (self ?: WRITER_NOT_COROUTINE));

    /* Fast path: nobody reads, nobody writes; no need to stop anything. */
    if (graph_try_take()) {
        graph_writer = self ?: WRITER_NOT_COROUTINE;
        return;
    }

    /*
     * Readers are never made to wait while we poll: a callback run by the
     * poll could drain a context whose requests wait for us, and neither
     * would ever finish.  Instead, stop new requests everywhere (phase 1
     * of a drain, which does not poll) so that the readers in flight can
     * only finish, wait for them, and only then shut readers out.  A
     * reader that slipped in between gets to finish and we try again.
     */
    aio_context_drain_all_begin();
    for (;;) {
        if (self) {
            while (graph_wrlock_busy()) {
                graph_co_wait_main_loop();
            }
        } else {
            AIO_WAIT_WHILE(NULL, graph_wrlock_busy());
        }
        /* Another writer may have got in, or a reader slipped in. */
        if (graph_try_take()) {
            break;
        }
    }
    graph_writer = self ?: WRITER_NOT_COROUTINE;
    /* New requests may queue for the lock now: the graph is ours. */
    aio_context_drain_all_end();
}

void bdrv_graph_wrunlock(void)
{
    assert(qemu_in_main_thread());
    assert(qatomic_read(&has_writer));
    assert(graph_writer == (qemu_coroutine_self() ?: WRITER_NOT_COROUTINE));

    graph_writer = NULL;
    graph_release();
}

void coroutine_fn bdrv_graph_co_rdlock(void)
{
    Coroutine *self = qemu_coroutine_self();

    if (self->graph_rdlock_depth++ > 0) {
        return;
    }
#ifdef CONFIG_DEBUG
    /* See the header: the read lock comes before any other lock. */
    assert(self->locks_held == 0);
#endif

    for (;;) {
        GraphReaders *r = graph_readers_get();
        GraphWaiter w = { .co = self };

        qatomic_inc(&r->count);
        smp_mb();
        if (!qatomic_read(&has_writer)) {
            return;
        }

        /* A writer is waiting or working: step aside until it is done. */
        qatomic_dec(&r->count);
        aio_wait_kick();
        g_mutex_lock(&graph_mutex);
        if (!qatomic_read(&has_writer)) {
            g_mutex_unlock(&graph_mutex);
            continue;
        }
        QSIMPLEQ_INSERT_TAIL(&graph_waiters, &w, next);
        g_mutex_unlock(&graph_mutex);
        qemu_coroutine_yield();
    }
}

void coroutine_fn bdrv_graph_co_rdunlock(void)
{
    Coroutine *self = qemu_coroutine_self();

    assert(self->graph_rdlock_depth > 0);
    if (--self->graph_rdlock_depth > 0) {
        return;
    }
    qatomic_dec(&graph_readers_get()->count);
    /* Pairs with bdrv_graph_wrlock(): we see has_writer or it sees us. */
    smp_mb();
    /* A writer polling for the last reader must look again. */
    if (qatomic_read(&has_writer)) {
        aio_wait_kick();
    }
}

bool bdrv_graph_is_write_locked(void)
{
    return qatomic_read(&has_writer);
}

void assert_bdrv_graph_readable(void)
{
#ifdef CONFIG_DEBUG
    if (qemu_in_coroutine()) {
        assert(qemu_coroutine_self()->graph_rdlock_depth > 0);
    } else {
        assert(qemu_in_main_thread());
    }
#endif
}

void assert_bdrv_graph_writable(void)
{
#ifdef CONFIG_DEBUG
    assert(qemu_in_main_thread());
    assert(graph_writer == (qemu_coroutine_self() ?: WRITER_NOT_COROUTINE));
#endif
}

void assert_bdrv_graph_unlocked(void)
{
#ifdef CONFIG_DEBUG
    if (qemu_in_coroutine()) {
        assert(qemu_coroutine_self()->graph_rdlock_depth == 0);
    }
    if (qemu_in_main_thread()) {
        assert(graph_writer != (qemu_coroutine_self() ?:
                                WRITER_NOT_COROUTINE));
    }
#endif
}
