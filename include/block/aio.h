/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * AioContext: an event loop for fd handlers, event notifiers, bottom
 * halves and timers, and the owner of drain for everything that runs in it.
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * Each AioContext has a home thread: the main thread for the main context
 * (see qemu/main-loop.h), the iothread for an iothread's context.  Only the
 * home thread polls a context.  Other threads hand work over with
 * qemu_bh_schedule(), aio_co_schedule() or aio_co_wake(), which wake the
 * context if it is asleep.
 */
#ifndef BLOCK_AIO_H
#define BLOCK_AIO_H

#include "qemu/osdep.h"
#include "qemu/event_notifier.h"
#include "qemu/timer.h"

typedef struct Coroutine Coroutine;
typedef struct QEMUBH QEMUBH;
typedef struct AioHandler AioHandler;
typedef struct QEMUTimerList QEMUTimerList;
typedef struct BHListSlice BHListSlice;

typedef void QEMUBHFunc(void *opaque);
typedef void IOHandler(void *opaque);

QSLIST_HEAD(QEMUBHList, QEMUBH);
QSIMPLEQ_HEAD(BHListSliceList, BHListSlice);
QTAILQ_HEAD(AioHandlerList, AioHandler);
QSLIST_HEAD(CoScheduledList, Coroutine);

struct AioContext {
    GSource source;             /* must be first: the GSource embedding */

    /*
     * Incremented by 2 (atomically) while the home thread may block in
     * epoll or in GLib's poll; aio_notify() writes the notifier only then.
     * The notifier is read only when epoll reports it readable, so a write
     * is never lost: one that lands after the read leaves it readable for
     * the next poll.
     */
    unsigned int notify_me;
    EventNotifier notifier;

    /* Bottom halves scheduled from any thread: lock-free push. */
    struct QEMUBHList bh_list;
    /*
     * Slices of bh_list taken by a dispatch that has not finished; nested
     * aio_poll() calls continue them.  Home thread only.
     */
    struct BHListSliceList bh_slice_list;

    /* epoll instance watching every fd handler and the notifier. */
    int epollfd;
    gpointer epoll_tag;         /* the epoll fd in the GSource's poll set */

    /*
     * fd handlers.  Modified under list_lock from any thread; removed
     * handlers are unlinked at once but freed only when no aio_poll() of
     * this context is between epoll_wait() and the end of its dispatch
     * (list_walkers == 0), so an event already returned never touches
     * freed memory.
     */
    GMutex list_lock;
    struct AioHandlerList handlers;
    struct AioHandlerList deleted_handlers;
    unsigned int list_walkers;

    /* One sorted timer list per clock; each has its own lock. */
    QEMUTimerList *tlg[QEMU_CLOCK_MAX];

    /* aio_co_schedule()'s lock-free list and the BH that drains it. */
    struct CoScheduledList scheduled_coroutines;
    QEMUBH *co_schedule_bh;

    /* Thread that is in aio_poll() on this context (NULL if none). */
    GThread *poll_owner;
    unsigned int poll_depth;    /* nesting of aio_poll(); owner only */

};

/*
 * Create a context with no home thread yet; attach its GSource to a
 * GMainContext, or give it to an IOThread.  Returns NULL and sets @errp if
 * the kernel refuses an epoll instance or an eventfd.  Any thread.
 */
AioContext *aio_context_new(GError **errp);

/* Take / drop a reference.  Any thread. */
void aio_context_ref(AioContext *ctx);
void aio_context_unref(AioContext *ctx);

/* The context as a GSource, for g_source_attach().  Not referenced. */
GSource *aio_get_g_source(AioContext *ctx);

/*
 * Wake the context's home thread if it sleeps in aio_poll() or in its
 * GMainContext, so it re-evaluates bottom halves and timers.  Any thread.
 */
void aio_notify(AioContext *ctx);

/*
 * Run one iteration of @ctx: dispatch ready fd handlers, scheduled bottom
 * halves and expired timers.  With @blocking, first sleep until something
 * is ready (the earliest timer bounds the sleep).  Returns true if any
 * handler, bottom half or timer callback ran ("progress"); waking up only
 * because of aio_notify() is not progress.
 *
 * Home thread only (or any single thread for a context that has none);
 * calls may nest.  Never from a drain begin/end callback.
 */
bool aio_poll(AioContext *ctx, bool blocking);

/*
 * Watch @fd in @ctx: @io_read / @io_write run in @ctx when the fd is
 * readable / writable.  Both NULL removes the handler; passing an fd that
 * is already watched replaces its callbacks.  Any thread; after removal
 * returns from another thread, a callback may still be running in the home
 * thread, but none will start.
 */
void aio_set_fd_handler(AioContext *ctx, int fd, IOHandler *io_read,
                        IOHandler *io_write, void *opaque);

/*
 * Watch an EventNotifier: @io_read(@e) runs in @ctx when it is set.
 * NULL removes it.  Any thread, as aio_set_fd_handler().
 */
void aio_set_event_notifier(AioContext *ctx, EventNotifier *e,
                            EventNotifierHandler *io_read);

/* ---- Bottom halves ---- */

/*
 * Create a bottom half that runs @cb(@opaque) in @ctx each time it is
 * scheduled.  Any thread.
 */
QEMUBH *aio_bh_new(AioContext *ctx, QEMUBHFunc *cb, void *opaque);

/*
 * Run @cb(@opaque) once in @ctx at its next dispatch and free the BH
 * afterwards.  Any thread; wakes the context.
 */
void aio_bh_schedule_oneshot(AioContext *ctx, QEMUBHFunc *cb, void *opaque);

/*
 * Schedule @bh: its callback runs once at the next dispatch of its context
 * however often it was scheduled before that.  Any thread; wakes the
 * context.
 */
void qemu_bh_schedule(QEMUBH *bh);

/*
 * Unschedule @bh if it has not started.  A callback that is already
 * running is not waited for.  Any thread.
 */
void qemu_bh_cancel(QEMUBH *bh);

/*
 * Cancel @bh and free it.  Safe from the BH's own callback and from other
 * callbacks of the same context; the memory is released by the context's
 * dispatch, not here.  Any thread.
 */
void qemu_bh_delete(QEMUBH *bh);

/* True if @bh is scheduled and has not run yet.  Any thread. */
bool qemu_bh_scheduled(QEMUBH *bh);

/* ---- Contexts and threads ---- */

/*
 * The context whose callbacks this thread is running: inside aio_poll(ctx)
 * that is ctx; otherwise the thread's home context (the main context for
 * the main thread, an iothread's context for the iothread), or NULL for
 * threads with none (thread-pool workers).
 */
AioContext *qemu_get_current_aio_context(void);

/*
 * Make @ctx the home context of the calling thread.  Called once by the
 * main-loop set-up and by each iothread as it starts.
 */
void aio_context_set_home_thread(AioContext *ctx);

/* True if the calling thread is running @ctx's callbacks or owns @ctx. */
static inline bool in_aio_context_home_thread(AioContext *ctx)
{
    return ctx == qemu_get_current_aio_context();
}

/* ---- Coroutines and contexts ---- */

/*
 * Enter @co in @ctx from @ctx's next dispatch.  @co must not be running or
 * scheduled already (abort: that is a broken invariant).  Any thread;
 * @ctx becomes @co's home context.
 */
void aio_co_schedule(AioContext *ctx, Coroutine *co);

/*
 * Enter @co in @ctx: directly when called in @ctx's home thread outside a
 * coroutine; right after the current coroutine yields or terminates when
 * called from a coroutine of @ctx; otherwise via aio_co_schedule().
 * Any thread.
 */
void aio_co_enter(AioContext *ctx, Coroutine *co);

/*
 * aio_co_enter() in the context @co last ran in (its home context): the
 * way a completion resumes a coroutine that yielded waiting for it.
 * Any thread.
 */
void aio_co_wake(Coroutine *co);

/*
 * Move the calling coroutine to @new_ctx: it yields and continues in
 * @new_ctx's home thread.  Returns at once if it is already there.
 */
void coroutine_fn aio_co_reschedule_self(AioContext *new_ctx);

#endif /* BLOCK_AIO_H */
