/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Thread pool: blocking work runs on worker threads, completions run as a
 * bottom half in the pool's AioContext.
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * Workers are plain GThreads sharing one queue under pool->lock rather
 * than a GThreadPool: cancelling needs to take a request out of the queue
 * atomically with respect to a worker picking it up, which GThreadPool
 * offers no hook for, and we want to know exactly which workers exist so
 * thread_pool_free() can join them.
 *
 * A request moves QUEUED -> RUNNING -> DONE (or QUEUED -> DONE when
 * cancelled), always under pool->lock.  DONE requests sit on pool->done
 * until the completion BH calls their callback and frees them.
 */
#include "qemu/osdep.h"
#include "qemu/thread-pool.h"
#include "qemu/coroutine.h"

#define THREAD_POOL_DEFAULT_MAX_WORKERS 64

/* How long a worker with nothing to do stays around before exiting. */
#define THREAD_POOL_DEFAULT_IDLE_MS 10000

typedef enum {
    THREAD_POOL_REQ_QUEUED,
    THREAD_POOL_REQ_RUNNING,
    THREAD_POOL_REQ_DONE,
} ThreadPoolReqState;

struct ThreadPoolRequest {
    ThreadPool *pool;
    ThreadPoolFunc *func;
    void *arg;
    ThreadPoolCompletionFunc *cb;
    void *opaque;

    /* Protected by pool->lock. */
    ThreadPoolReqState state;
    int ret;
    /* In pool->queue while QUEUED, in pool->done while DONE. */
    QTAILQ_ENTRY(ThreadPoolRequest) next;
};

typedef struct ThreadPoolWorker {
    ThreadPool *pool;
    GThread *thread;
    /* Set by the worker as it leaves; someone else must join it. */
    bool exited;
    QTAILQ_ENTRY(ThreadPoolWorker) next;
} ThreadPoolWorker;

struct ThreadPool {
    AioContext *ctx;
    QEMUBH *completion_bh;
    AioInFlightTag in_flight_tag;

    /* Submitted and not yet completed (callback not returned).  Home. */
    unsigned int outstanding;

    GMutex lock;
    /* Signalled when work is queued or workers should re-check limits. */
    GCond work_cond;

    /* Everything below is protected by lock. */
    QTAILQ_HEAD(, ThreadPoolRequest) queue;
    QTAILQ_HEAD(, ThreadPoolRequest) done;
    unsigned int queue_len;

    QTAILQ_HEAD(, ThreadPoolWorker) workers;
    int cur_workers;        /* alive, i.e. in workers and not exited */
    int max_workers;
    unsigned int n_exited;  /* entries of workers waiting to be joined */

    /*
     * Workers blocked in work_cond, and signals sent to them that no
     * worker has woken up for yet.  pending_wakeups <= idle_workers
     * always holds, so "idle_workers > pending_wakeups" means some idle
     * worker would not otherwise notice new work.
     */
    int idle_workers;
    int pending_wakeups;

    gint64 idle_timeout_us;
    bool stopping;
};

static gpointer thread_pool_worker(gpointer opaque);

/*
 * Start one more worker.  Called with pool->lock held; the new thread
 * blocks on it until we return.  Returns false if the thread could not be
 * created.
 */
static bool thread_pool_spawn_locked(ThreadPool *pool)
{
    ThreadPoolWorker *w = g_new0(ThreadPoolWorker, 1);
    g_autoptr(GError) err = NULL;

    w->pool = pool;
    w->thread = g_thread_try_new("sluice-worker", thread_pool_worker, w,
                                 &err);
    if (!w->thread) {
        g_free(w);
        return false;
    }
    QTAILQ_INSERT_TAIL(&pool->workers, w, next);
    pool->cur_workers++;
    return true;
}

/*
 * Unlink the workers that have exited and return them, so the caller can
 * join them after dropping the lock.
 */
static GSList *thread_pool_reap_locked(ThreadPool *pool)
{
    ThreadPoolWorker *w, *tmp;
    GSList *reaped = NULL;

    if (pool->n_exited == 0) {
        return NULL;
    }
    QTAILQ_FOREACH_SAFE(w, &pool->workers, next, tmp) {
        if (w->exited) {
            QTAILQ_REMOVE(&pool->workers, w, next);
            reaped = g_slist_prepend(reaped, w);
        }
    }
    pool->n_exited = 0;
    return reaped;
}

static void thread_pool_join(GSList *reaped)
{
    GSList *l;

    for (l = reaped; l; l = l->next) {
        ThreadPoolWorker *w = l->data;

        g_thread_join(w->thread);
        g_free(w);
    }
    g_slist_free(reaped);
}

/*
 * Make sure somebody will pick up @n newly queued requests: wake idle
 * workers that are not already being woken, then start new ones up to the
 * limit.  Returns false if no worker exists and none could be started.
 */
static bool thread_pool_kick_locked(ThreadPool *pool, int n)
{
    while (n > 0 && pool->idle_workers > pool->pending_wakeups) {
        pool->pending_wakeups++;
        g_cond_signal(&pool->work_cond);
        n--;
    }
    while (n > 0 && pool->cur_workers < pool->max_workers) {
        if (!thread_pool_spawn_locked(pool)) {
            break;
        }
        n--;
    }
    return pool->cur_workers > 0;
}

/* Put a DONE request on the done list; returns true if the BH is needed. */
static bool thread_pool_complete_locked(ThreadPool *pool,
                                        ThreadPoolRequest *req, int ret)
{
    bool was_empty = QTAILQ_EMPTY(&pool->done);

    req->ret = ret;
    req->state = THREAD_POOL_REQ_DONE;
    QTAILQ_INSERT_TAIL(&pool->done, req, next);
    /*
     * Whoever made the list non-empty schedules the BH; the BH keeps
     * running until it finds the list empty, so later arrivals ride on it.
     */
    return was_empty;
}

static gpointer thread_pool_worker(gpointer opaque)
{
    ThreadPoolWorker *w = opaque;
    ThreadPool *pool = w->pool;
    gint64 idle_since = 0;

    g_mutex_lock(&pool->lock);
    for (;;) {
        ThreadPoolRequest *req;
        bool schedule;
        int ret;

        if (pool->stopping || pool->cur_workers > pool->max_workers) {
            break;
        }

        req = QTAILQ_FIRST(&pool->queue);
        if (!req) {
            gint64 deadline;
            bool woken;

            if (idle_since == 0) {
                idle_since = g_get_monotonic_time();
            }
            /* Recomputed each time: the timeout may have been changed. */
            deadline = idle_since + pool->idle_timeout_us;
            pool->idle_workers++;
            woken = g_cond_wait_until(&pool->work_cond, &pool->lock,
                                      deadline);
            pool->idle_workers--;
            if (pool->pending_wakeups > 0) {
                pool->pending_wakeups--;
            }
            if (!woken && QTAILQ_EMPTY(&pool->queue) &&
                g_get_monotonic_time() >= deadline) {
                break;
            }
            continue;
        }

        idle_since = 0;
        QTAILQ_REMOVE(&pool->queue, req, next);
        pool->queue_len--;
        req->state = THREAD_POOL_REQ_RUNNING;
        g_mutex_unlock(&pool->lock);

        ret = req->func(req->arg);

        g_mutex_lock(&pool->lock);
        schedule = thread_pool_complete_locked(pool, req, ret);
        if (schedule) {
            /*
             * Scheduling under the lock keeps the BH's "list empty, so
             * cancel myself" step from racing with us.
             */
            qemu_bh_schedule(pool->completion_bh);
        }
    }

    pool->cur_workers--;
    /*
     * Leaving because of a lowered limit may strand queued work if the
     * remaining workers are all asleep; pass the wake-up on.
     */
    if (!QTAILQ_EMPTY(&pool->queue) && !pool->stopping) {
        thread_pool_kick_locked(pool, 1);
    }
    w->exited = true;
    pool->n_exited++;
    g_mutex_unlock(&pool->lock);
    return NULL;
}

static void thread_pool_completion_bh(void *opaque)
{
    ThreadPool *pool = opaque;

    for (;;) {
        ThreadPoolRequest *req;
        bool more;

        g_mutex_lock(&pool->lock);
        req = QTAILQ_FIRST(&pool->done);
        if (!req) {
            /*
             * Everything scheduled so far has been handled, including
             * by the re-schedule below; skip the useless extra run.
             * Workers schedule under the lock, and cancel runs in this
             * thread, so no completion added after our check is lost.
             */
            qemu_bh_cancel(pool->completion_bh);
            g_mutex_unlock(&pool->lock);
            return;
        }
        QTAILQ_REMOVE(&pool->done, req, next);
        more = !QTAILQ_EMPTY(&pool->done);
        g_mutex_unlock(&pool->lock);

        /*
         * A callback may poll the context (a synchronous wrapper waiting
         * for another request, say); that nested poll must see the rest
         * of the list, or it could wait for a request stuck behind us.
         */
        if (more) {
            qemu_bh_schedule(pool->completion_bh);
        }

        /*
         * Drop the in-flight reference before the callback: the worker's
         * part is over, and a callback that drains this context (a
         * synchronous wrapper finishing) must not wait for itself.  Work
         * the callback starts is counted by whoever starts it.
         */
        aio_context_dec_in_flight(pool->ctx, pool->in_flight_tag);
        if (req->cb) {
            req->cb(req->opaque, req->ret);
        }
        g_free(req);
        assert(pool->outstanding > 0);
        pool->outstanding--;
    }
}

ThreadPool *thread_pool_new(AioContext *ctx)
{
    ThreadPool *pool = g_new0(ThreadPool, 1);

    pool->ctx = ctx;
    pool->completion_bh = aio_bh_new(ctx, thread_pool_completion_bh, pool);
    pool->in_flight_tag = aio_in_flight_tag("thread-pool");
    g_mutex_init(&pool->lock);
    g_cond_init(&pool->work_cond);
    QTAILQ_INIT(&pool->queue);
    QTAILQ_INIT(&pool->done);
    QTAILQ_INIT(&pool->workers);
    pool->max_workers = THREAD_POOL_DEFAULT_MAX_WORKERS;
    pool->idle_timeout_us = (gint64)THREAD_POOL_DEFAULT_IDLE_MS *
                            G_TIME_SPAN_MILLISECOND;
    return pool;
}

void thread_pool_free(ThreadPool *pool)
{
    ThreadPoolWorker *w, *tmp;

    if (!pool) {
        return;
    }
    assert(pool->outstanding == 0);

    g_mutex_lock(&pool->lock);
    assert(QTAILQ_EMPTY(&pool->queue));
    assert(QTAILQ_EMPTY(&pool->done));
    pool->stopping = true;
    g_cond_broadcast(&pool->work_cond);
    g_mutex_unlock(&pool->lock);

    /* Workers no longer touch the list once stopping is set. */
    QTAILQ_FOREACH_SAFE(w, &pool->workers, next, tmp) {
        g_thread_join(w->thread);
        QTAILQ_REMOVE(&pool->workers, w, next);
        g_free(w);
    }

    qemu_bh_delete(pool->completion_bh);
    g_cond_clear(&pool->work_cond);
    g_mutex_clear(&pool->lock);
    g_free(pool);
}

ThreadPoolRequest *thread_pool_submit_aio(ThreadPool *pool,
                                          ThreadPoolFunc *func, void *arg,
                                          ThreadPoolCompletionFunc *cb,
                                          void *opaque)
{
    ThreadPoolRequest *req = g_new0(ThreadPoolRequest, 1);
    bool schedule = false;
    GSList *reaped;

    req->pool = pool;
    req->func = func;
    req->arg = arg;
    req->cb = cb;
    req->opaque = opaque;
    req->state = THREAD_POOL_REQ_QUEUED;

    pool->outstanding++;
    aio_context_inc_in_flight(pool->ctx, pool->in_flight_tag);

    g_mutex_lock(&pool->lock);
    QTAILQ_INSERT_TAIL(&pool->queue, req, next);
    pool->queue_len++;
    if (!thread_pool_kick_locked(pool, 1)) {
        /*
         * Not a single worker could be started: fail the request rather
         * than leave it queued with nobody to run it.
         */
        QTAILQ_REMOVE(&pool->queue, req, next);
        pool->queue_len--;
        schedule = thread_pool_complete_locked(pool, req, -EAGAIN);
    }
    reaped = thread_pool_reap_locked(pool);
    g_mutex_unlock(&pool->lock);

    if (schedule) {
        qemu_bh_schedule(pool->completion_bh);
    }
    thread_pool_join(reaped);
    return req;
}

bool thread_pool_cancel(ThreadPoolRequest *req)
{
    ThreadPool *pool = req->pool;
    bool cancelled = false;
    bool schedule = false;

    g_mutex_lock(&pool->lock);
    if (req->state == THREAD_POOL_REQ_QUEUED) {
        QTAILQ_REMOVE(&pool->queue, req, next);
        pool->queue_len--;
        /* The callback still runs from the BH, never from in here. */
        schedule = thread_pool_complete_locked(pool, req, -ECANCELED);
        cancelled = true;
    }
    g_mutex_unlock(&pool->lock);

    if (schedule) {
        qemu_bh_schedule(pool->completion_bh);
    }
    return cancelled;
}

typedef struct ThreadPoolCo {
    Coroutine *co;
    int ret;
    bool done;
} ThreadPoolCo;

static void thread_pool_co_cb(void *opaque, int ret)
{
    ThreadPoolCo *tpc = opaque;

    tpc->ret = ret;
    tpc->done = true;
    aio_co_wake(tpc->co);
}

int coroutine_fn thread_pool_submit_co(ThreadPool *pool,
                                       ThreadPoolFunc *func, void *arg)
{
    ThreadPoolCo tpc = { .co = qemu_coroutine_self() };

    assert(qemu_in_coroutine());
    assert(qemu_get_current_aio_context() == pool->ctx);

    thread_pool_submit_aio(pool, func, arg, thread_pool_co_cb, &tpc);
    /* Only our callback should enter us, but a stray wake-up is harmless. */
    while (!tpc.done) {
        qemu_coroutine_yield();
    }
    return tpc.ret;
}

void thread_pool_submit(ThreadPool *pool, ThreadPoolFunc *func, void *arg)
{
    thread_pool_submit_aio(pool, func, arg, NULL, NULL);
}

void thread_pool_set_max_workers(ThreadPool *pool, int max_workers)
{
    int waiting;

    assert(max_workers > 0);

    g_mutex_lock(&pool->lock);
    pool->max_workers = max_workers;
    if (pool->cur_workers > max_workers) {
        /* Idle workers over the limit notice it when they wake. */
        g_cond_broadcast(&pool->work_cond);
    } else {
        /* A higher limit lets queued requests start now. */
        waiting = pool->queue_len - (pool->idle_workers -
                                     pool->pending_wakeups);
        if (waiting > 0) {
            thread_pool_kick_locked(pool, waiting);
        }
    }
    g_mutex_unlock(&pool->lock);
}

void thread_pool_set_idle_timeout_ms(ThreadPool *pool,
                                     unsigned int timeout_ms)
{
    g_mutex_lock(&pool->lock);
    pool->idle_timeout_us = (gint64)timeout_ms * G_TIME_SPAN_MILLISECOND;
    /* Sleeping workers must recompute their deadline. */
    g_cond_broadcast(&pool->work_cond);
    g_mutex_unlock(&pool->lock);
}

int thread_pool_get_nr_workers(ThreadPool *pool)
{
    int n;

    g_mutex_lock(&pool->lock);
    n = pool->cur_workers;
    g_mutex_unlock(&pool->lock);
    return n;
}
