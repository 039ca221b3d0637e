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
typedef struct AioDrainHandler AioDrainHandler;
typedef struct ThreadPool ThreadPool;
typedef struct LinuxAioState LinuxAioState;
typedef struct LuringState LuringState;
typedef struct QEMUTimerList QEMUTimerList;
typedef struct BHListSlice BHListSlice;

typedef void QEMUBHFunc(void *opaque);
typedef void IOHandler(void *opaque);

/* Tags name a kind of work counted in a context's in-flight counter. */
#define AIO_IN_FLIGHT_MAX_TAGS 64
typedef unsigned int AioInFlightTag;

QSLIST_HEAD(QEMUBHList, QEMUBH);
QSIMPLEQ_HEAD(BHListSliceList, BHListSlice);
QTAILQ_HEAD(AioHandlerList, AioHandler);
QTAILQ_HEAD(AioDrainHandlerList, AioDrainHandler);
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

    /*
     * The drain registry.  drain_lock (recursive, because callbacks may
     * add or remove handlers) protects quiesce_counter, drain_handlers and
     * drain_walkers.  Handlers removed while a walk is running are unlinked
     * only when drain_walkers returns to zero.
     */
    GRecMutex drain_lock;
    int quiesce_counter;
    struct AioDrainHandlerList drain_handlers;
    unsigned int drain_walkers;
    bool drain_handlers_dirty;

    /* Link in the list of all contexts, for drain_all (its lock). */
    QTAILQ_ENTRY(AioContext) all_contexts_link;

    /*
     * In-flight work, atomic.  in_flight is the sum of in_flight_tag[];
     * aio_context_drained_busy() reads it, the tags say what it is.
     */
    unsigned int in_flight;
    unsigned int in_flight_tag[AIO_IN_FLIGHT_MAX_TAGS];

    /* Lazily created services; freed with the context. */
    GMutex services_lock;
    ThreadPool *thread_pool;
    LinuxAioState *linux_aio;
    LuringState *linux_io_uring;
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

/* ---- Services created on first use, freed with the context ---- */

/* The thread pool whose completions run in @ctx.  Any thread. */
ThreadPool *aio_get_thread_pool(AioContext *ctx);

/*
 * The linux-aio / io_uring engine of @ctx, created on first call.  Returns
 * NULL with @errp set when the kernel or the build does not offer it, so
 * the caller can fall back to the thread pool.  Any thread.
 */
LinuxAioState *aio_setup_linux_aio(AioContext *ctx, GError **errp);
LuringState *aio_setup_linux_io_uring(AioContext *ctx, GError **errp);

/* ---- In-flight accounting ---- */

/*
 * The tag named @name, registered on first use.  Tags name kinds of work
 * ("request", "qed-need-check", "job"), not instances: at most
 * AIO_IN_FLIGHT_MAX_TAGS names exist per process.  Any thread.
 */
AioInFlightTag aio_in_flight_tag(const char *name);

/* The name a tag was registered with. */
const char *aio_in_flight_tag_name(AioInFlightTag tag);

/*
 * Count one piece of work that may still issue I/O in @ctx: a request,
 * or a timer, BH or coroutine that will start one.  Any thread.
 */
void aio_context_inc_in_flight(AioContext *ctx, AioInFlightTag tag);

/*
 * Drop a reference taken with aio_context_inc_in_flight().  When the count
 * reaches zero, wakes @ctx and every AIO_WAIT_WHILE() waiter so drains
 * re-check their condition.  Any thread.
 */
void aio_context_dec_in_flight(AioContext *ctx, AioInFlightTag tag);

/* Total in-flight count.  Any thread (a snapshot). */
unsigned int aio_context_in_flight(AioContext *ctx);

typedef struct AioInFlightEntry {
    const char *tag;
    unsigned int count;
} AioInFlightEntry;

/*
 * The non-zero tags of @ctx, as a GArray of AioInFlightEntry in tag
 * registration order.  Free with g_array_unref().  Any thread.
 */
GArray *aio_context_in_flight_tags(AioContext *ctx);

/* ---- The drain registry ---- */

/*
 * Drain handlers: whatever can start I/O in a context on its own registers
 * one.  drained_begin must stop starting new I/O and drained_end must
 * resume (re-kicking queued work); neither may block or poll.
 * drained_poll, optional, returns true while the owner is still busy
 * (e.g. a job not yet paused).  When the owner stops being busy from a
 * thread other than the one waiting, it calls aio_wait_kick().
 *
 * All three run with the context's drain_lock held, in the thread that
 * called aio_context_drained_begin/end/busy(), which need not be the
 * context's home thread: make them safe for that (atomics, or schedule a
 * BH in the home thread).
 */
typedef struct AioDrainOps {
    void (*drained_begin)(void *opaque);
    void (*drained_end)(void *opaque);
    bool (*drained_poll)(void *opaque);
} AioDrainOps;

/*
 * Register @ops with @ctx.  Handlers begin in registration order and end
 * in reverse.  If @ctx is drained, @ops->drained_begin runs before this
 * returns (registry rule 4).  Any thread; may be called from a callback.
 */
AioDrainHandler *aio_context_add_drain_ops(AioContext *ctx,
                                           const AioDrainOps *ops,
                                           void *opaque);

/*
 * Unregister @h.  If its begin ran and its end has not, the end runs
 * before this returns, so the owner stays balanced (rule 4).  Any thread;
 * may be called from a callback, including @h's own.
 */
void aio_context_remove_drain_ops(AioDrainHandler *h);

/* The context a handler is registered with. */
AioContext *aio_drain_handler_get_context(AioDrainHandler *h);

/*
 * Phase 1 of a drain: increment @ctx's quiesce counter and, on 0 -> 1,
 * run every handler's begin.  Never waits: the caller waits afterwards for
 * !aio_context_drained_busy().  Any thread.
 */
void aio_context_drained_begin(AioContext *ctx);

/*
 * End a section begun with aio_context_drained_begin(); on 1 -> 0 run the
 * ends of the handlers that began, in reverse order.  Never polls.
 */
void aio_context_drained_end(AioContext *ctx);

/* True between a begin and its matching end.  Any thread. */
bool aio_context_is_drained(AioContext *ctx);

/*
 * True while @ctx has work in flight or a begun handler's drained_poll
 * says it is busy.  Any thread.
 */
bool aio_context_drained_busy(AioContext *ctx);

/*
 * Drain every context: phase 1 of aio_context_drained_begin() on each,
 * and contexts created before the matching end are born drained (their
 * quiesce counter starts at the number of drain_all sections open).
 * Callbacks must not create or destroy contexts.  Any thread; the caller
 * waits for !aio_context_drain_all_busy() afterwards.
 */
void aio_context_drain_all_begin(void);
void aio_context_drain_all_end(void);

/* aio_context_drained_busy() of any context.  Any thread. */
bool aio_context_drain_all_busy(void);

/*
 * Debug aid: non-zero while this thread runs a drain callback.  aio_poll()
 * and AIO_WAIT_WHILE() assert it is zero in debug builds (rule 6).
 */
unsigned int aio_drain_callback_depth(void);

#endif /* BLOCK_AIO_H */
