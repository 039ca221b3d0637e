/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Thread pool: run blocking work (pread, fsync, fallocate) on worker
 * threads and complete it in the submitting AioContext.
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * Each AioContext has its own pool (aio_get_thread_pool()).  Submission
 * and completion happen in the pool's context; only the work function runs
 * on a worker.
 */
#ifndef QEMU_THREAD_POOL_H
#define QEMU_THREAD_POOL_H

#include "block/aio.h"

typedef struct ThreadPoolRequest ThreadPoolRequest;

/* Runs on a worker thread; returns 0/positive or a negative errno. */
typedef int ThreadPoolFunc(void *opaque);

/* Runs in the pool's context with the work function's return value. */
typedef void ThreadPoolCompletionFunc(void *opaque, int ret);

/* Create a pool completing in @ctx.  Used by aio_get_thread_pool(). */
ThreadPool *thread_pool_new(AioContext *ctx);

/*
 * Free @pool.  No request may be outstanding.  @ctx's home thread.
 */
void thread_pool_free(ThreadPool *pool);

/*
 * Run @func(@arg) on a worker, then @cb(@opaque, ret) in the pool's
 * context.  The returned handle is valid until @cb returns.  Pool context's
 * home thread.
 */
ThreadPoolRequest *thread_pool_submit_aio(ThreadPool *pool,
                                          ThreadPoolFunc *func, void *arg,
                                          ThreadPoolCompletionFunc *cb,
                                          void *opaque);

/*
 * Cancel @req if no worker has started it: its function then never runs
 * and its callback gets -ECANCELED.  Returns true if it was cancelled,
 * false if it already started (the callback will get the real result).
 * Pool context's home thread, before the callback.
 */
bool thread_pool_cancel(ThreadPoolRequest *req);

/*
 * Coroutine form: run @func(@arg) on a worker and return its result.
 * The caller's context must be the pool's.
 */
int coroutine_fn thread_pool_submit_co(ThreadPool *pool,
                                       ThreadPoolFunc *func, void *arg);

/* Fire and forget: as thread_pool_submit_aio() with no callback. */
void thread_pool_submit(ThreadPool *pool, ThreadPoolFunc *func, void *arg);

/* Upper bound on workers of @pool (default 64).  Pool context's thread. */
void thread_pool_set_max_workers(ThreadPool *pool, int max_workers);

/*
 * Workers that found nothing to do for @timeout_ms exit (default 10 s).
 * Any thread.
 */
void thread_pool_set_idle_timeout_ms(ThreadPool *pool,
                                     unsigned int timeout_ms);

/* Worker threads currently alive (tests and benchmarks).  Any thread. */
int thread_pool_get_nr_workers(ThreadPool *pool);

#endif /* QEMU_THREAD_POOL_H */
