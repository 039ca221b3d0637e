/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * AioContext: life cycle, GSource glue, bottom halves, coroutine hand-over,
 * in-flight accounting and the drain registry.
 *
 * Copyright (c) 2026 The Sluice authors
 */
#include "qemu/osdep.h"
#include "config-host.h"

#include "block/aio.h"
#include "block/aio-wait.h"
#include "block/raw-aio.h"
#include "qemu/coroutine_int.h"
#include "qemu/main-loop.h"
#include "qemu/thread-pool.h"
#include "util/aio-internal.h"

/* ---- Bottom halves ---- */

enum {
    BH_PENDING   = 1 << 0,  /* on ctx->bh_list or a slice */
    BH_SCHEDULED = 1 << 1,  /* run the callback when dequeued */
    BH_ONESHOT   = 1 << 2,  /* free after running */
    BH_DELETED   = 1 << 3,  /* free without running */
};

struct QEMUBH {
    AioContext *ctx;
    QEMUBHFunc *cb;
    void *opaque;
    QSLIST_ENTRY(QEMUBH) next;
    unsigned int flags;         /* atomic */
};

/*
 * A batch of bottom halves taken from ctx->bh_list by one aio_bh_poll().
 * It lives on that call's stack and stays on ctx->bh_slice_list until it
 * is empty, so a nested aio_poll() finishes the outer batch in order
 * instead of starving it.
 */
struct BHListSlice {
    struct QEMUBHList bh_list;
    QSIMPLEQ_ENTRY(BHListSlice) next;
};

static void aio_bh_enqueue(QEMUBH *bh, unsigned int new_flags)
{
    AioContext *ctx = bh->ctx;
    unsigned int old_flags;

    old_flags = qatomic_fetch_or(&bh->flags, BH_PENDING | new_flags);
    if (!(old_flags & BH_PENDING)) {
        QSLIST_INSERT_HEAD_ATOMIC(&ctx->bh_list, bh, next);
    }
    aio_notify(ctx);
}

/* Pop the head of @head and clear its pending bits; NULL if empty. */
static QEMUBH *aio_bh_dequeue(struct QEMUBHList *head, unsigned int *flags)
{
    QEMUBH *bh = QSLIST_FIRST(head);

    if (!bh) {
        return NULL;
    }
    QSLIST_REMOVE_HEAD(head, next);
    /*
     * Clearing BH_PENDING after unlinking lets a concurrent schedule push
     * the BH again; the SC read-modify-write orders the two.
     */
    *flags = qatomic_fetch_and(&bh->flags, ~(BH_PENDING | BH_SCHEDULED));
    return bh;
}

QEMUBH *aio_bh_new(AioContext *ctx, QEMUBHFunc *cb, void *opaque)
{
    QEMUBH *bh = g_new0(QEMUBH, 1);

    bh->ctx = ctx;
    bh->cb = cb;
    bh->opaque = opaque;
    return bh;
}

void aio_bh_schedule_oneshot(AioContext *ctx, QEMUBHFunc *cb, void *opaque)
{
    QEMUBH *bh = aio_bh_new(ctx, cb, opaque);

    aio_bh_enqueue(bh, BH_SCHEDULED | BH_ONESHOT);
}

void qemu_bh_schedule(QEMUBH *bh)
{
    aio_bh_enqueue(bh, BH_SCHEDULED);
}

void qemu_bh_cancel(QEMUBH *bh)
{
    qatomic_and(&bh->flags, ~BH_SCHEDULED);
}

void qemu_bh_delete(QEMUBH *bh)
{
    /* The dispatcher frees it, so deleting from a callback is safe. */
    aio_bh_enqueue(bh, BH_DELETED);
}

bool qemu_bh_scheduled(QEMUBH *bh)
{
    unsigned int flags = qatomic_read(&bh->flags);

    return (flags & (BH_SCHEDULED | BH_DELETED)) == BH_SCHEDULED;
}

bool aio_bh_pending(AioContext *ctx)
{
    BHListSlice *s;

    if (!QSLIST_EMPTY(&ctx->bh_list)) {
        return true;
    }
    QSIMPLEQ_FOREACH(s, &ctx->bh_slice_list, next) {
        if (!QSLIST_EMPTY(&s->bh_list)) {
            return true;
        }
    }
    return false;
}

bool aio_bh_poll(AioContext *ctx)
{
    BHListSlice slice;
    BHListSlice *s;
    struct QEMUBHList taken;
    QEMUBH *bh;
    unsigned int flags;
    bool progress = false;

    /* Producers push LIFO; reverse so BHs run in scheduling order. */
    QSLIST_MOVE_ATOMIC(&taken, &ctx->bh_list);
    QSLIST_INIT(&slice.bh_list);
    while ((bh = QSLIST_FIRST(&taken))) {
        QSLIST_REMOVE_HEAD(&taken, next);
        QSLIST_INSERT_HEAD(&slice.bh_list, bh, next);
    }
    QSIMPLEQ_INSERT_TAIL(&ctx->bh_slice_list, &slice, next);

    while ((s = QSIMPLEQ_FIRST(&ctx->bh_slice_list))) {
        bh = aio_bh_dequeue(&s->bh_list, &flags);
        if (!bh) {
            QSIMPLEQ_REMOVE_HEAD(&ctx->bh_slice_list, next);
            continue;
        }
        if ((flags & (BH_SCHEDULED | BH_DELETED)) == BH_SCHEDULED) {
            bh->cb(bh->opaque);
            progress = true;
        }
        if (flags & (BH_DELETED | BH_ONESHOT)) {
            g_free(bh);
        }
    }
    return progress;
}

/* ---- Notification ---- */

void aio_notify(AioContext *ctx)
{
    /*
     * Order the caller's write (a BH, a timer, a coroutine) before the
     * read of notify_me; the poller raises notify_me and then re-checks
     * for work, so one of the two sides always sees the other.
     */
    smp_mb();
    if (qatomic_read(&ctx->notify_me)) {
        /*
         * No "already notified" shortcut: deduplicating through a flag
         * can leave the flag set after the poller consumed the write,
         * and the next notification would then be lost.
         */
        event_notifier_set(&ctx->notifier);
    }
}

int64_t aio_compute_timeout(AioContext *ctx)
{
    int64_t deadline = -1;
    int type;

    if (aio_bh_pending(ctx)) {
        return 0;
    }
    for (type = 0; type < QEMU_CLOCK_MAX; type++) {
        int64_t d = timerlist_deadline_ns(ctx->tlg[type]);

        if (d >= 0 && (deadline < 0 || d < deadline)) {
            deadline = d;
        }
    }
    return deadline;
}

/* ---- Current context ---- */

static __thread AioContext *home_aio_context;
static __thread AioContext *polled_aio_context;

AioContext *qemu_get_current_aio_context(void)
{
    return polled_aio_context ? polled_aio_context : home_aio_context;
}

void aio_context_set_home_thread(AioContext *ctx)
{
    home_aio_context = ctx;
}

void aio_context_enter_poll(AioContext *ctx, AioContext **saved)
{
    GThread *self = g_thread_self();
    GThread *owner;

    /* Two threads polling one context would run its callbacks twice. */
    owner = qatomic_cmpxchg(&ctx->poll_owner, NULL, self);
    g_assert(owner == NULL || owner == self);
    ctx->poll_depth++;

    *saved = polled_aio_context;
    polled_aio_context = ctx;
}

void aio_context_leave_poll(AioContext *ctx, AioContext *saved)
{
    polled_aio_context = saved;
    if (--ctx->poll_depth == 0) {
        qatomic_set(&ctx->poll_owner, NULL);
    }
}

/* ---- GSource ---- */

static void aio_context_register(AioContext *ctx);
static void aio_context_unregister(AioContext *ctx);

static gboolean aio_ctx_prepare(GSource *source, gint *timeout)
{
    AioContext *ctx = (AioContext *)source;
    int64_t ns;

    qatomic_add(&ctx->notify_me, 2);
    smp_mb();   /* pairs with aio_notify(): raise, then look for work */

    ns = aio_compute_timeout(ctx);
    if (ns < 0) {
        *timeout = -1;
    } else {
        *timeout = MIN(DIV_ROUND_UP(ns, SCALE_MS), (int64_t)INT_MAX);
    }
    return *timeout == 0;
}

static gboolean aio_ctx_check(GSource *source)
{
    AioContext *ctx = (AioContext *)source;

    qatomic_sub(&ctx->notify_me, 2);

    if (g_source_query_unix_fd(source, ctx->epoll_tag) & G_IO_IN) {
        return TRUE;
    }
    return aio_compute_timeout(ctx) == 0;
}

static gboolean aio_ctx_dispatch(GSource *source, GSourceFunc callback,
                                 gpointer user_data)
{
    AioContext *ctx = (AioContext *)source;

    aio_poll(ctx, false);
    return G_SOURCE_CONTINUE;
}

static void aio_ctx_finalize(GSource *source)
{
    AioContext *ctx = (AioContext *)source;
    QEMUBH *bh;
    unsigned int flags;
    int type;

    /* A context that failed half-way through creation was never listed. */
    if (ctx->co_schedule_bh) {
        aio_context_unregister(ctx);
    }

    if (ctx->thread_pool) {
        thread_pool_free(ctx->thread_pool);
        ctx->thread_pool = NULL;
    }
#ifdef CONFIG_LINUX_AIO
    if (ctx->linux_aio) {
        laio_detach_aio_context(ctx->linux_aio, ctx);
        laio_cleanup(ctx->linux_aio);
        ctx->linux_aio = NULL;
    }
#endif
#ifdef CONFIG_LINUX_IO_URING
    if (ctx->linux_io_uring) {
        luring_detach_aio_context(ctx->linux_io_uring, ctx);
        luring_cleanup(ctx->linux_io_uring);
        ctx->linux_io_uring = NULL;
    }
#endif

    assert(QSLIST_EMPTY(&ctx->scheduled_coroutines));
    assert(QSIMPLEQ_EMPTY(&ctx->bh_slice_list));
    if (ctx->co_schedule_bh) {
        qemu_bh_delete(ctx->co_schedule_bh);
    }

    /* Nobody will dispatch this context again: free what is queued. */
    while ((bh = aio_bh_dequeue(&ctx->bh_list, &flags))) {
        g_free(bh);
    }

    for (type = 0; type < QEMU_CLOCK_MAX; type++) {
        timerlist_free(ctx->tlg[type]);
    }

    aio_context_destroy(ctx);
    event_notifier_cleanup(&ctx->notifier);

    /* A drain handler outliving its context is its owner's bug. */
    assert(QTAILQ_EMPTY(&ctx->drain_handlers));
    g_rec_mutex_clear(&ctx->drain_lock);
    g_mutex_clear(&ctx->list_lock);
    g_mutex_clear(&ctx->services_lock);
}

static GSourceFuncs aio_source_funcs = {
    .prepare = aio_ctx_prepare,
    .check = aio_ctx_check,
    .dispatch = aio_ctx_dispatch,
    .finalize = aio_ctx_finalize,
};

/* ---- Coroutine hand-over ---- */

static void co_schedule_bh_cb(void *opaque)
{
    AioContext *ctx = opaque;
    struct CoScheduledList taken;
    QSLIST_HEAD(, Coroutine) in_order = QSLIST_HEAD_INITIALIZER;
    Coroutine *co;

    QSLIST_MOVE_ATOMIC(&taken, &ctx->scheduled_coroutines);
    while ((co = QSLIST_FIRST(&taken))) {
        QSLIST_REMOVE_HEAD(&taken, co_scheduled_next);
        QSLIST_INSERT_HEAD(&in_order, co, co_scheduled_next);
    }

    while ((co = QSLIST_FIRST(&in_order))) {
        QSLIST_REMOVE_HEAD(&in_order, co_scheduled_next);
        qatomic_set(&co->scheduled, NULL);
        qemu_aio_coroutine_enter(ctx, co);
    }
}

void aio_co_schedule(AioContext *ctx, Coroutine *co)
{
    const char *scheduled;

    scheduled = qatomic_cmpxchg(&co->scheduled, NULL, __func__);
    if (scheduled) {
        fprintf(stderr, "%s: coroutine was already scheduled in '%s'\n",
                __func__, scheduled);
        abort();
    }
    QSLIST_INSERT_HEAD_ATOMIC(&ctx->scheduled_coroutines, co,
                              co_scheduled_next);
    qemu_bh_schedule(ctx->co_schedule_bh);
}

void aio_co_enter(AioContext *ctx, Coroutine *co)
{
    if (ctx != qemu_get_current_aio_context()) {
        aio_co_schedule(ctx, co);
        return;
    }

    if (qemu_in_coroutine()) {
        Coroutine *self = qemu_coroutine_self();

        assert(self != co);
        QSIMPLEQ_INSERT_TAIL(&self->co_queue_wakeup, co, co_queue_next);
    } else {
        qemu_aio_coroutine_enter(ctx, co);
    }
}

void aio_co_wake(Coroutine *co)
{
    AioContext *ctx = qatomic_load_acquire(&co->ctx);

    aio_co_enter(ctx, co);
}

typedef struct CoRescheduleData {
    AioContext *new_ctx;
    Coroutine *co;
} CoRescheduleData;

static void co_reschedule_bh(void *opaque)
{
    CoRescheduleData *data = opaque;

    aio_co_schedule(data->new_ctx, data->co);
}

void coroutine_fn aio_co_reschedule_self(AioContext *new_ctx)
{
    AioContext *old_ctx = qemu_get_current_aio_context();
    CoRescheduleData data = {
        .new_ctx = new_ctx,
        .co = qemu_coroutine_self(),
    };

    if (old_ctx == new_ctx) {
        return;
    }
    /*
     * Hand over only once we have yielded: scheduling first would let the
     * new context's thread enter this stack while we are still on it.
     */
    aio_bh_schedule_oneshot(old_ctx, co_reschedule_bh, &data);
    qemu_coroutine_yield();
}

/* ---- Context life cycle ---- */

AioContext *aio_context_new(GError **errp)
{
    AioContext *ctx;
    int ret;
    int type;

    ctx = (AioContext *)g_source_new(&aio_source_funcs, sizeof(AioContext));
    g_source_set_name(&ctx->source, "aio-context");

    QSLIST_INIT(&ctx->bh_list);
    QSIMPLEQ_INIT(&ctx->bh_slice_list);
    QTAILQ_INIT(&ctx->handlers);
    QTAILQ_INIT(&ctx->deleted_handlers);
    QTAILQ_INIT(&ctx->drain_handlers);
    QSLIST_INIT(&ctx->scheduled_coroutines);
    g_mutex_init(&ctx->list_lock);
    g_mutex_init(&ctx->services_lock);
    g_rec_mutex_init(&ctx->drain_lock);
    ctx->epollfd = -1;

    for (type = 0; type < QEMU_CLOCK_MAX; type++) {
        ctx->tlg[type] = timerlist_new(ctx, type);
    }

    ret = event_notifier_init(&ctx->notifier, false);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Failed to initialize event notifier");
        goto fail;
    }
    if (!aio_context_setup(ctx, errp)) {
        goto fail;
    }

    ctx->co_schedule_bh = aio_bh_new(ctx, co_schedule_bh_cb, ctx);
    aio_context_register(ctx);
    return ctx;

fail:
    g_source_unref(&ctx->source);
    return NULL;
}

void aio_context_ref(AioContext *ctx)
{
    g_source_ref(&ctx->source);
}

void aio_context_unref(AioContext *ctx)
{
    g_source_unref(&ctx->source);
}

GSource *aio_get_g_source(AioContext *ctx)
{
    return &ctx->source;
}

/* ---- Lazily created services ---- */

ThreadPool *aio_get_thread_pool(AioContext *ctx)
{
    ThreadPool *pool;

    g_mutex_lock(&ctx->services_lock);
    if (!ctx->thread_pool) {
        ctx->thread_pool = thread_pool_new(ctx);
    }
    pool = ctx->thread_pool;
    g_mutex_unlock(&ctx->services_lock);
    return pool;
}

LinuxAioState *aio_setup_linux_aio(AioContext *ctx, GError **errp)
{
#ifdef CONFIG_LINUX_AIO
    LinuxAioState *s;

    g_mutex_lock(&ctx->services_lock);
    if (!ctx->linux_aio) {
        s = laio_init(errp);
        if (s) {
            laio_attach_aio_context(s, ctx);
            ctx->linux_aio = s;
        }
    }
    s = ctx->linux_aio;
    g_mutex_unlock(&ctx->services_lock);
    return s;
#else
    g_set_error_literal(errp, SLUICE_ERROR, SLUICE_ERROR_NOT_SUPPORTED,
                        "Linux AIO is not supported by this build");
    return NULL;
#endif
}

LuringState *aio_setup_linux_io_uring(AioContext *ctx, GError **errp)
{
#ifdef CONFIG_LINUX_IO_URING
    LuringState *s;

    g_mutex_lock(&ctx->services_lock);
    if (!ctx->linux_io_uring) {
        s = luring_init(errp);
        if (s) {
            luring_attach_aio_context(s, ctx);
            ctx->linux_io_uring = s;
        }
    }
    s = ctx->linux_io_uring;
    g_mutex_unlock(&ctx->services_lock);
    return s;
#else
    g_set_error_literal(errp, SLUICE_ERROR, SLUICE_ERROR_NOT_SUPPORTED,
                        "Linux io_uring is not supported by this build");
    return NULL;
#endif
}

/* ---- In-flight accounting ---- */

static GMutex in_flight_tag_lock;
/* Written once per tag under the lock, read without it afterwards. */
static char *in_flight_tag_names[AIO_IN_FLIGHT_MAX_TAGS];
static unsigned int in_flight_tag_count;

AioInFlightTag aio_in_flight_tag(const char *name)
{
    unsigned int i;
    unsigned int n;

    g_mutex_lock(&in_flight_tag_lock);
    n = in_flight_tag_count;
    for (i = 0; i < n; i++) {
        if (strcmp(in_flight_tag_names[i], name) == 0) {
            break;
        }
    }
    if (i == n) {
        /* Tags name kinds of work; running out is a programming error. */
        g_assert(n < AIO_IN_FLIGHT_MAX_TAGS);
        in_flight_tag_names[n] = g_strdup(name);
        qatomic_store_release(&in_flight_tag_count, n + 1);
    }
    g_mutex_unlock(&in_flight_tag_lock);
    return i;
}

const char *aio_in_flight_tag_name(AioInFlightTag tag)
{
    g_assert(tag < qatomic_load_acquire(&in_flight_tag_count));
    return in_flight_tag_names[tag];
}

void aio_context_inc_in_flight(AioContext *ctx, AioInFlightTag tag)
{
    assert(tag < AIO_IN_FLIGHT_MAX_TAGS);
    qatomic_inc(&ctx->in_flight_tag[tag]);
    qatomic_inc(&ctx->in_flight);
}

void aio_context_dec_in_flight(AioContext *ctx, AioInFlightTag tag)
{
    unsigned int old_tag;

    assert(tag < AIO_IN_FLIGHT_MAX_TAGS);
    old_tag = qatomic_fetch_dec(&ctx->in_flight_tag[tag]);
    assert(old_tag > 0);
    if (qatomic_dec_fetch(&ctx->in_flight) == 0) {
        /*
         * A drain may be waiting: in @ctx's own thread (wake it if this
         * runs elsewhere) or in the main thread (kick it).
         */
        aio_notify(ctx);
        aio_wait_kick();
    }
}

unsigned int aio_context_in_flight(AioContext *ctx)
{
    return qatomic_read(&ctx->in_flight);
}

GArray *aio_context_in_flight_tags(AioContext *ctx)
{
    GArray *arr = g_array_new(FALSE, FALSE, sizeof(AioInFlightEntry));
    unsigned int n = qatomic_load_acquire(&in_flight_tag_count);
    unsigned int i;

    for (i = 0; i < n; i++) {
        unsigned int count = qatomic_read(&ctx->in_flight_tag[i]);

        if (count) {
            AioInFlightEntry e = {
                .tag = in_flight_tag_names[i],
                .count = count,
            };
            g_array_append_val(arr, e);
        }
    }
    return arr;
}

/* ---- The drain registry ---- */

/*
 * Every context, for drain_all.  The lock is recursive so that the
 * per-context walks it protects may run callbacks that look at the list.
 */
static GRecMutex all_contexts_lock;
static QTAILQ_HEAD(, AioContext) all_contexts =
    QTAILQ_HEAD_INITIALIZER(all_contexts);
/* drain_all sections open; new contexts start with this quiesce count. */
static unsigned int drain_all_count;

static void aio_context_register(AioContext *ctx)
{
    g_rec_mutex_lock(&all_contexts_lock);
    QTAILQ_INSERT_TAIL(&all_contexts, ctx, all_contexts_link);
    /* Born inside drain_all: quiesced, with no handler yet to begin. */
    ctx->quiesce_counter = drain_all_count;
    g_rec_mutex_unlock(&all_contexts_lock);
}

static void aio_context_unregister(AioContext *ctx)
{
    g_rec_mutex_lock(&all_contexts_lock);
    QTAILQ_REMOVE(&all_contexts, ctx, all_contexts_link);
    g_rec_mutex_unlock(&all_contexts_lock);
}

void aio_context_drain_all_begin(void)
{
    AioContext *ctx;

    g_rec_mutex_lock(&all_contexts_lock);
    drain_all_count++;
    QTAILQ_FOREACH(ctx, &all_contexts, all_contexts_link) {
        aio_context_drained_begin(ctx);
    }
    g_rec_mutex_unlock(&all_contexts_lock);
}

void aio_context_drain_all_end(void)
{
    AioContext *ctx;

    g_rec_mutex_lock(&all_contexts_lock);
    assert(drain_all_count > 0);
    drain_all_count--;
    QTAILQ_FOREACH(ctx, &all_contexts, all_contexts_link) {
        aio_context_drained_end(ctx);
    }
    g_rec_mutex_unlock(&all_contexts_lock);
}

bool aio_context_drain_all_busy(void)
{
    AioContext *ctx;
    bool busy = false;

    g_rec_mutex_lock(&all_contexts_lock);
    QTAILQ_FOREACH(ctx, &all_contexts, all_contexts_link) {
        if (aio_context_drained_busy(ctx)) {
            busy = true;
            break;
        }
    }
    g_rec_mutex_unlock(&all_contexts_lock);
    return busy;
}

struct AioDrainHandler {
    AioContext *ctx;
    const AioDrainOps *ops;
    void *opaque;
    /* Protected by ctx->drain_lock. */
    bool begun;                 /* begin ran, end has not */
    bool removed;               /* unregistered; unlinked when no walker */
    QTAILQ_ENTRY(AioDrainHandler) next;
};

/* Drain callbacks running in this thread (registry rule 6). */
static __thread unsigned int drain_callback_depth;

unsigned int aio_drain_callback_depth(void)
{
    return drain_callback_depth;
}

static void drain_handler_begin(AioDrainHandler *h)
{
    h->begun = true;
    drain_callback_depth++;
    h->ops->drained_begin(h->opaque);
    drain_callback_depth--;
}

static void drain_handler_end(AioDrainHandler *h)
{
    h->begun = false;
    drain_callback_depth++;
    h->ops->drained_end(h->opaque);
    drain_callback_depth--;
}

/* Free handlers removed during a walk.  drain_lock held, no walker. */
static void drain_handlers_purge(AioContext *ctx)
{
    AioDrainHandler *h, *next;

    if (ctx->drain_walkers || !ctx->drain_handlers_dirty) {
        return;
    }
    QTAILQ_FOREACH_SAFE(h, &ctx->drain_handlers, next, next) {
        if (h->removed) {
            QTAILQ_REMOVE(&ctx->drain_handlers, h, next);
            g_free(h);
        }
    }
    ctx->drain_handlers_dirty = false;
}

AioDrainHandler *aio_context_add_drain_ops(AioContext *ctx,
                                           const AioDrainOps *ops,
                                           void *opaque)
{
    AioDrainHandler *h = g_new0(AioDrainHandler, 1);

    assert(ops->drained_begin && ops->drained_end);
    h->ctx = ctx;
    h->ops = ops;
    h->opaque = opaque;

    g_rec_mutex_lock(&ctx->drain_lock);
    QTAILQ_INSERT_TAIL(&ctx->drain_handlers, h, next);
    /* Rule 4: born into a drained section, it begins at once. */
    if (ctx->quiesce_counter > 0) {
        drain_handler_begin(h);
    }
    g_rec_mutex_unlock(&ctx->drain_lock);
    return h;
}

void aio_context_remove_drain_ops(AioDrainHandler *h)
{
    AioContext *ctx = h->ctx;

    g_rec_mutex_lock(&ctx->drain_lock);
    assert(!h->removed);
    h->removed = true;
    /* Rule 4: leaving a drained section, the owner gets its end now. */
    if (h->begun) {
        drain_handler_end(h);
    }
    ctx->drain_handlers_dirty = true;
    drain_handlers_purge(ctx);
    g_rec_mutex_unlock(&ctx->drain_lock);
}

AioContext *aio_drain_handler_get_context(AioDrainHandler *h)
{
    return h->ctx;
}

void aio_context_drained_begin(AioContext *ctx)
{
    AioDrainHandler *h;

    g_rec_mutex_lock(&ctx->drain_lock);
    if (++ctx->quiesce_counter == 1) {
        ctx->drain_walkers++;
        /*
         * Removed handlers stay linked while we walk, so NEXT is valid
         * after any callback; handlers added meanwhile are appended and
         * have begun already.  Stop if a callback ended the section.
         */
        for (h = QTAILQ_FIRST(&ctx->drain_handlers);
             h && ctx->quiesce_counter > 0;
             h = QTAILQ_NEXT(h, next)) {
            if (!h->removed && !h->begun) {
                drain_handler_begin(h);
            }
        }
        ctx->drain_walkers--;
        drain_handlers_purge(ctx);
    }
    g_rec_mutex_unlock(&ctx->drain_lock);
}

void aio_context_drained_end(AioContext *ctx)
{
    AioDrainHandler *h;

    g_rec_mutex_lock(&ctx->drain_lock);
    assert(ctx->quiesce_counter > 0);
    if (--ctx->quiesce_counter == 0) {
        ctx->drain_walkers++;
        /* Reverse order; stop if a callback began a new section. */
        for (h = QTAILQ_LAST(&ctx->drain_handlers);
             h && ctx->quiesce_counter == 0;
             h = QTAILQ_PREV(h, next)) {
            if (!h->removed && h->begun) {
                drain_handler_end(h);
            }
        }
        ctx->drain_walkers--;
        drain_handlers_purge(ctx);
    }
    g_rec_mutex_unlock(&ctx->drain_lock);
}

bool aio_context_is_drained(AioContext *ctx)
{
    bool drained;

    g_rec_mutex_lock(&ctx->drain_lock);
    drained = ctx->quiesce_counter > 0;
    g_rec_mutex_unlock(&ctx->drain_lock);
    return drained;
}

bool aio_context_drained_busy(AioContext *ctx)
{
    AioDrainHandler *h;
    bool busy = false;

    if (qatomic_read(&ctx->in_flight)) {
        return true;
    }

    g_rec_mutex_lock(&ctx->drain_lock);
    ctx->drain_walkers++;
    QTAILQ_FOREACH(h, &ctx->drain_handlers, next) {
        if (!h->removed && h->begun && h->ops->drained_poll) {
            drain_callback_depth++;
            busy = h->ops->drained_poll(h->opaque);
            drain_callback_depth--;
            if (busy) {
                break;
            }
        }
    }
    ctx->drain_walkers--;
    drain_handlers_purge(ctx);
    g_rec_mutex_unlock(&ctx->drain_lock);
    return busy;
}
