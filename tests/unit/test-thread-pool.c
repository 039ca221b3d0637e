/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests for util/thread-pool.c: results, cancellation, the coroutine
 * form, worker limits and idle exit, and completion in an IOThread.
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * Tests that need requests to stay queued block every worker on a gate
 * (a mutex and condition the test opens), so what is cancellable does not
 * depend on timing.
 */
#include "qemu/osdep.h"
#include "block/aio.h"
#include "block/aio-wait.h"
#include "qemu/coroutine.h"
#include "qemu/iothread.h"
#include "qemu/main-loop.h"
#include "qemu/thread-pool.h"

/* Bound on any wait in these tests, so a bug fails instead of hanging. */
#define TEST_TIMEOUT_US (30 * G_TIME_SPAN_SECOND)

static AioContext *main_ctx;
static GThread *main_thread;

/* ---- Watchdog ---- */

/*
 * A blocking aio_poll() that nothing wakes never returns to check a
 * deadline, so a separate thread enforces one per test: the process
 * aborts with a message if a test runs past it.
 */
static gint64 watchdog_deadline;    /* atomic; 0 between tests */

static gpointer watchdog_thread(gpointer opaque)
{
    for (;;) {
        gint64 deadline = qatomic_read(&watchdog_deadline);

        if (deadline && g_get_monotonic_time() > deadline) {
            g_error("test timed out: thread pool hung?");
        }
        g_usleep(100 * 1000);
    }
    return NULL;
}

/* Every test runs through this, so each one has TEST_TIMEOUT_US. */
static void run_watched(gconstpointer test_func)
{
    void (*fn)(void) = test_func;

    qatomic_set(&watchdog_deadline,
                g_get_monotonic_time() + TEST_TIMEOUT_US);
    fn();
    qatomic_set(&watchdog_deadline, 0);
}

static void add_test(const char *path, void (*fn)(void))
{
    g_test_add_data_func(path, fn, run_watched);
}

/* ---- A gate that holds workers until the test opens it ---- */

typedef struct Gate {
    GMutex lock;
    GCond cond;
    bool open;
    int waiting;    /* workers currently held */
} Gate;

static void gate_init(Gate *g)
{
    g_mutex_init(&g->lock);
    g_cond_init(&g->cond);
    g->open = false;
    g->waiting = 0;
}

static void gate_destroy(Gate *g)
{
    g_mutex_clear(&g->lock);
    g_cond_clear(&g->cond);
}

static void gate_pass(Gate *g)
{
    g_mutex_lock(&g->lock);
    g->waiting++;
    g_cond_broadcast(&g->cond);
    while (!g->open) {
        g_cond_wait(&g->cond, &g->lock);
    }
    g->waiting--;
    g_mutex_unlock(&g->lock);
}

/* Wait (without polling any context) until @n workers are held. */
static void gate_wait_for(Gate *g, int n)
{
    gint64 deadline = g_get_monotonic_time() + TEST_TIMEOUT_US;

    g_mutex_lock(&g->lock);
    while (g->waiting < n) {
        g_assert(g_cond_wait_until(&g->cond, &g->lock, deadline) ||
                 g->waiting >= n);
    }
    g_mutex_unlock(&g->lock);
}

static void gate_open(Gate *g)
{
    g_mutex_lock(&g->lock);
    g->open = true;
    g_cond_broadcast(&g->cond);
    g_mutex_unlock(&g->lock);
}

/* Poll @ctx from its home thread until *@counter reaches @target. */
static void poll_until(AioContext *ctx, int *counter, int target)
{
    while (qatomic_read(counter) < target) {
        aio_poll(ctx, true);
    }
}

/* Wait from the main thread for another thread to bump @counter. */
static void wait_counter(int *counter, int target)
{
    gint64 deadline = g_get_monotonic_time() + TEST_TIMEOUT_US;

    while (qatomic_read(counter) < target) {
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_usleep(1000);
    }
}

/* Run until nothing is left to dispatch. */
static void poll_idle(AioContext *ctx)
{
    while (aio_poll(ctx, false)) {
        /* keep dispatching */
    }
}

/* ---- Many submissions ---- */

typedef struct Req {
    int value;
    int ran;            /* times the work function ran; atomic */
    int cb_count;
    int ret;
    GThread *worker;
    ThreadPoolRequest *handle;
    int *done_counter;
    Gate *gate;
} Req;

static int req_func(void *opaque)
{
    Req *r = opaque;

    qatomic_inc(&r->ran);
    r->worker = g_thread_self();
    if (r->gate) {
        gate_pass(r->gate);
    }
    return r->value * 3 + 1;
}

static void req_cb(void *opaque, int ret)
{
    Req *r = opaque;

    /* Completions run in the pool's context, in its home thread. */
    g_assert(qemu_get_current_aio_context() == main_ctx);
    g_assert(g_thread_self() == main_thread);
    r->cb_count++;
    r->ret = ret;
    qatomic_inc(r->done_counter);
}

static void test_submit_many(void)
{
    const int n = 10000;
    ThreadPool *pool = aio_get_thread_pool(main_ctx);
    g_autofree Req *reqs = g_new0(Req, n);
    int done = 0;
    gint64 start, elapsed;
    int i;

    start = g_get_monotonic_time();
    for (i = 0; i < n; i++) {
        reqs[i].value = i;
        reqs[i].done_counter = &done;
        reqs[i].handle = thread_pool_submit_aio(pool, req_func, &reqs[i],
                                                req_cb, &reqs[i]);
        g_assert(reqs[i].handle != NULL);
    }
    poll_until(main_ctx, &done, n);
    elapsed = g_get_monotonic_time() - start;

    for (i = 0; i < n; i++) {
        g_assert_cmpint(reqs[i].ran, ==, 1);
        g_assert_cmpint(reqs[i].cb_count, ==, 1);
        g_assert_cmpint(reqs[i].ret, ==, i * 3 + 1);
        g_assert(reqs[i].worker != main_thread);
    }
    g_assert_cmpint(thread_pool_get_nr_workers(pool), <=, 64);
    g_test_message("%d requests in %" G_GINT64_FORMAT " us (%.0f/s)",
                   n, elapsed, n * 1e6 / MAX(elapsed, 1));

    /* Nothing is left: no further callback fires. */
    poll_idle(main_ctx);
    g_assert_cmpint(done, ==, n);
}

/* One request at a time on a warm pool: each completes before the next. */
static void test_sequential(void)
{
    const int n = 2000;
    ThreadPool *pool = aio_get_thread_pool(main_ctx);
    Req r = { 0 };
    int done = 0;
    int i;

    r.done_counter = &done;
    for (i = 0; i < n; i++) {
        r.value = i;
        thread_pool_submit_aio(pool, req_func, &r, req_cb, &r);
        poll_until(main_ctx, &done, i + 1);
        g_assert_cmpint(r.ret, ==, i * 3 + 1);
    }
    g_assert_cmpint(r.ran, ==, n);
}

static int error_func(void *opaque)
{
    return -EIO;
}

static void store_ret_cb(void *opaque, int ret)
{
    int *p = opaque;

    *p = ret;
}

static void test_error_result(void)
{
    ThreadPool *pool = aio_get_thread_pool(main_ctx);
    int ret = 1;

    thread_pool_submit_aio(pool, error_func, NULL, store_ret_cb, &ret);
    while (ret == 1) {
        aio_poll(main_ctx, true);
    }
    g_assert_cmpint(ret, ==, -EIO);
}

/* ---- Fire and forget, and in-flight accounting ---- */

static int count_func(void *opaque)
{
    qatomic_inc((int *)opaque);
    return 0;
}

static void test_submit_no_cb(void)
{
    ThreadPool *pool = aio_get_thread_pool(main_ctx);
    unsigned int base = aio_context_in_flight(main_ctx);
    int count = 0;
    int i;

    for (i = 0; i < 100; i++) {
        thread_pool_submit(pool, count_func, &count);
    }
    /* Each request counts in the context until its completion ran. */
    g_assert_cmpuint(aio_context_in_flight(main_ctx), ==, base + 100);

    while (aio_context_in_flight(main_ctx) > base) {
        aio_poll(main_ctx, true);
    }
    g_assert_cmpint(qatomic_read(&count), ==, 100);
}

typedef struct DrainInCb {
    bool drained;
    bool done;
} DrainInCb;

static void drain_in_cb(void *opaque, int ret)
{
    DrainInCb *d = opaque;

    /*
     * A completion that drains its own context (a synchronous wrapper
     * finishing, say) must not find its own request still in flight.
     */
    aio_context_drained_begin(main_ctx);
    AIO_WAIT_WHILE(main_ctx, aio_context_drained_busy(main_ctx));
    d->drained = true;
    aio_context_drained_end(main_ctx);
    d->done = true;
}

static void test_drain_from_callback(void)
{
    ThreadPool *pool = aio_get_thread_pool(main_ctx);
    DrainInCb d = { .drained = false };
    int count = 0;

    thread_pool_submit_aio(pool, count_func, &count, drain_in_cb, &d);
    while (!d.done) {
        aio_poll(main_ctx, true);
    }
    g_assert_true(d.drained);
    g_assert_cmpuint(aio_context_in_flight(main_ctx), ==, 0);
}

/* ---- Cancellation ---- */

static void test_cancel(void)
{
    const int n_workers = 2, n_queued = 20;
    const int n = n_workers + n_queued;
    ThreadPool *pool = thread_pool_new(main_ctx);
    g_autofree Req *reqs = g_new0(Req, n);
    bool cancelled[n];
    Gate gate;
    int done = 0;
    int i;

    gate_init(&gate);
    thread_pool_set_max_workers(pool, n_workers);

    /* The first two occupy both workers until the gate opens. */
    for (i = 0; i < n; i++) {
        reqs[i].value = i;
        reqs[i].done_counter = &done;
        reqs[i].gate = &gate;
        reqs[i].handle = thread_pool_submit_aio(pool, req_func, &reqs[i],
                                                req_cb, &reqs[i]);
        if (i == n_workers - 1) {
            gate_wait_for(&gate, n_workers);
        }
    }
    g_assert_cmpint(thread_pool_get_nr_workers(pool), ==, n_workers);

    /* Running requests cannot be cancelled. */
    for (i = 0; i < n_workers; i++) {
        g_assert_false(thread_pool_cancel(reqs[i].handle));
        cancelled[i] = false;
    }
    /* Every other queued one can; callbacks do not run from cancel. */
    for (i = n_workers; i < n; i++) {
        cancelled[i] = i % 2 == 0;
        if (cancelled[i]) {
            g_assert_true(thread_pool_cancel(reqs[i].handle));
            g_assert_cmpint(reqs[i].cb_count, ==, 0);
            /* A second cancel finds it no longer queued. */
            g_assert_false(thread_pool_cancel(reqs[i].handle));
        }
    }
    g_assert_cmpint(done, ==, 0);

    gate_open(&gate);
    poll_until(main_ctx, &done, n);
    poll_idle(main_ctx);

    for (i = 0; i < n; i++) {
        g_assert_cmpint(reqs[i].cb_count, ==, 1);
        if (cancelled[i]) {
            g_assert_cmpint(reqs[i].ran, ==, 0);
            g_assert_cmpint(reqs[i].ret, ==, -ECANCELED);
        } else {
            g_assert_cmpint(reqs[i].ran, ==, 1);
            g_assert_cmpint(reqs[i].ret, ==, i * 3 + 1);
        }
    }
    thread_pool_free(pool);
    gate_destroy(&gate);
}

/*
 * Cancelled requests complete in the BH even if no worker ever frees up
 * before the test has seen the callbacks.
 */
static void test_cancel_while_blocked(void)
{
    ThreadPool *pool = thread_pool_new(main_ctx);
    Req blocker = { 0 }, queued = { 0 };
    Gate gate;
    int done = 0;

    gate_init(&gate);
    thread_pool_set_max_workers(pool, 1);
    blocker.gate = &gate;
    blocker.done_counter = &done;
    queued.done_counter = &done;
    queued.value = 7;

    thread_pool_submit_aio(pool, req_func, &blocker, req_cb, &blocker);
    gate_wait_for(&gate, 1);
    queued.handle = thread_pool_submit_aio(pool, req_func, &queued,
                                           req_cb, &queued);
    g_assert_true(thread_pool_cancel(queued.handle));

    /* The worker is still held, yet the cancelled callback arrives. */
    poll_until(main_ctx, &done, 1);
    g_assert_cmpint(queued.cb_count, ==, 1);
    g_assert_cmpint(queued.ret, ==, -ECANCELED);
    g_assert_cmpint(queued.ran, ==, 0);
    g_assert_cmpint(blocker.cb_count, ==, 0);

    gate_open(&gate);
    poll_until(main_ctx, &done, 2);
    g_assert_cmpint(blocker.ret, ==, 1);
    thread_pool_free(pool);
    gate_destroy(&gate);
}

/* ---- Callbacks that poll ---- */

typedef struct NestedReq {
    bool done;
    bool *other_done;
    int *finished;
} NestedReq;

static int nested_func(void *opaque)
{
    qatomic_inc((int *)opaque);
    return 0;
}

/*
 * Each callback waits for the other request's callback by polling: this
 * only terminates if a nested poll completes requests queued behind the
 * one being completed.
 */
static void nested_cb(void *opaque, int ret)
{
    NestedReq *r = opaque;

    r->done = true;
    while (!*r->other_done) {
        aio_poll(main_ctx, true);
    }
    (*r->finished)++;
}

static void test_nested_poll(void)
{
    ThreadPool *pool = thread_pool_new(main_ctx);
    NestedReq a = { 0 }, b = { 0 };
    int finished = 0;
    int ran = 0;

    a.other_done = &b.done;
    b.other_done = &a.done;
    a.finished = b.finished = &finished;
    thread_pool_submit_aio(pool, nested_func, &ran, nested_cb, &a);
    thread_pool_submit_aio(pool, nested_func, &ran, nested_cb, &b);
    /*
     * Let both finish before dispatching, so the second completion is
     * queued behind the first when the first callback starts polling.
     */
    wait_counter(&ran, 2);
    g_usleep(10 * 1000);
    poll_until(main_ctx, &finished, 2);
    thread_pool_free(pool);
}

/* ---- Coroutine form ---- */

typedef struct CoData {
    ThreadPool *pool;
    int iterations;
    int first;
    int finished;
    int *done_counter;
    AioContext *expect_ctx;
} CoData;

typedef struct CoWork {
    int value;
    GThread *thread;
} CoWork;

static int co_func(void *opaque)
{
    CoWork *w = opaque;

    w->thread = g_thread_self();
    return w->value + 1000;
}

static void coroutine_fn co_entry(void *opaque)
{
    CoData *d = opaque;
    int i;

    for (i = 0; i < d->iterations; i++) {
        CoWork w = { .value = d->first + i };
        int ret = thread_pool_submit_co(d->pool, co_func, &w);

        g_assert_cmpint(ret, ==, d->first + i + 1000);
        /* The work ran elsewhere; we are back in our own context. */
        g_assert(w.thread != g_thread_self());
        g_assert(qemu_get_current_aio_context() == d->expect_ctx);
        g_assert(qemu_in_coroutine());
    }
    d->finished = 1;
    qatomic_inc(d->done_counter);
}

static void test_coroutine(void)
{
    const int n_co = 8;
    CoData data[n_co];
    int done = 0;
    int i;

    for (i = 0; i < n_co; i++) {
        data[i] = (CoData) {
            .pool = aio_get_thread_pool(main_ctx),
            .iterations = 50,
            .first = i * 100,
            .done_counter = &done,
            .expect_ctx = main_ctx,
        };
        qemu_coroutine_enter(qemu_coroutine_create(co_entry, &data[i]));
        /* It yielded waiting for its first result. */
        g_assert_cmpint(data[i].finished, ==, 0);
    }
    poll_until(main_ctx, &done, n_co);
    for (i = 0; i < n_co; i++) {
        g_assert_cmpint(data[i].finished, ==, 1);
    }
}

/* ---- Worker limits and idle exit ---- */

typedef struct Conc {
    int running;
    int max_seen;
    Gate *gate;
} Conc;

static int conc_func(void *opaque)
{
    Conc *c = opaque;
    int now = qatomic_inc_fetch(&c->running);
    int seen;

    /* Record the highest concurrency observed. */
    seen = qatomic_read(&c->max_seen);
    while (now > seen) {
        int old = qatomic_cmpxchg(&c->max_seen, seen, now);

        if (old == seen) {
            break;
        }
        seen = old;
    }
    gate_pass(c->gate);
    qatomic_dec(&c->running);
    return 0;
}

static void count_cb(void *opaque, int ret)
{
    g_assert_cmpint(ret, ==, 0);
    (*(int *)opaque)++;
}

static void test_max_workers(void)
{
    ThreadPool *pool = thread_pool_new(main_ctx);
    Gate gate;
    Conc c = { .gate = &gate };
    int done = 0;
    int i;

    gate_init(&gate);
    thread_pool_set_max_workers(pool, 3);
    for (i = 0; i < 20; i++) {
        thread_pool_submit_aio(pool, conc_func, &c, count_cb, &done);
    }
    gate_wait_for(&gate, 3);
    /* Give extra workers, if any were wrongly started, time to show. */
    g_usleep(50 * 1000);
    g_assert_cmpint(qatomic_read(&c.max_seen), ==, 3);
    g_assert_cmpint(thread_pool_get_nr_workers(pool), ==, 3);

    /* Raising the limit starts more workers for the queued requests. */
    thread_pool_set_max_workers(pool, 5);
    gate_wait_for(&gate, 5);
    g_assert_cmpint(thread_pool_get_nr_workers(pool), ==, 5);

    gate_open(&gate);
    poll_until(main_ctx, &done, 20);
    g_assert_cmpint(qatomic_read(&c.max_seen), ==, 5);

    /* Lowering it makes the surplus idle workers leave. */
    thread_pool_set_max_workers(pool, 1);
    for (i = 0; i < 3000 && thread_pool_get_nr_workers(pool) > 1; i++) {
        g_usleep(1000);
    }
    g_assert_cmpint(thread_pool_get_nr_workers(pool), ==, 1);

    thread_pool_free(pool);
    gate_destroy(&gate);
}

static void test_idle_exit(void)
{
    ThreadPool *pool = thread_pool_new(main_ctx);
    int count = 0, done = 0;
    gint64 deadline;
    int i;

    thread_pool_set_idle_timeout_ms(pool, 50);
    for (i = 0; i < 50; i++) {
        thread_pool_submit_aio(pool, count_func, &count, count_cb, &done);
    }
    poll_until(main_ctx, &done, 50);
    g_assert_cmpint(thread_pool_get_nr_workers(pool), >, 0);

    deadline = g_get_monotonic_time() + TEST_TIMEOUT_US;
    while (thread_pool_get_nr_workers(pool) > 0) {
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_usleep(5000);
    }

    /* New work starts new workers (and reaps the exited ones). */
    for (i = 0; i < 10; i++) {
        thread_pool_submit_aio(pool, count_func, &count, count_cb, &done);
    }
    poll_until(main_ctx, &done, 60);
    g_assert_cmpint(qatomic_read(&count), ==, 60);
    thread_pool_free(pool);
}

/* A long idle timeout keeps workers; shortening it later applies. */
static void test_idle_timeout_change(void)
{
    ThreadPool *pool = thread_pool_new(main_ctx);
    int count = 0, done = 0;
    gint64 deadline;

    thread_pool_submit_aio(pool, count_func, &count, count_cb, &done);
    poll_until(main_ctx, &done, 1);
    g_usleep(100 * 1000);
    g_assert_cmpint(thread_pool_get_nr_workers(pool), ==, 1);

    thread_pool_set_idle_timeout_ms(pool, 10);
    deadline = g_get_monotonic_time() + TEST_TIMEOUT_US;
    while (thread_pool_get_nr_workers(pool) > 0) {
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_usleep(5000);
    }
    thread_pool_free(pool);
}

/* ---- Completion in an IOThread ---- */

typedef struct IOThreadData {
    AioContext *ctx;
    GThread *thread;    /* the iothread, learnt from its first BH */
    Req reqs[200];
    int done;           /* atomic: read by the main thread */
    int bad_ctx;        /* callbacks that ran in the wrong place */
    CoData co;
    int co_done;
} IOThreadData;

static void iothread_req_cb(void *opaque, int ret)
{
    Req *r = opaque;
    IOThreadData *d = container_of(r->done_counter, IOThreadData, done);

    if (qemu_get_current_aio_context() != d->ctx ||
        g_thread_self() != d->thread || g_thread_self() == main_thread) {
        qatomic_inc(&d->bad_ctx);
    }
    r->cb_count++;
    r->ret = ret;
    qatomic_inc(r->done_counter);
}

static void iothread_submit_bh(void *opaque)
{
    IOThreadData *d = opaque;
    ThreadPool *pool = aio_get_thread_pool(d->ctx);
    unsigned int i;

    d->thread = g_thread_self();
    g_assert(qemu_get_current_aio_context() == d->ctx);
    for (i = 0; i < ARRAY_SIZE(d->reqs); i++) {
        d->reqs[i].value = i;
        d->reqs[i].done_counter = &d->done;
        thread_pool_submit_aio(pool, req_func, &d->reqs[i],
                               iothread_req_cb, &d->reqs[i]);
    }
}

static void test_iothread(void)
{
    g_autoptr(GError) err = NULL;
    IOThread *t = iothread_create("tp-test", &err);
    g_autofree IOThreadData *d = g_new0(IOThreadData, 1);
    ThreadPool *main_pool = aio_get_thread_pool(main_ctx);
    unsigned int i;

    g_assert_no_error(err);
    g_assert(t != NULL);
    d->ctx = iothread_get_aio_context(t);

    /* Each context has its own pool. */
    g_assert(aio_get_thread_pool(d->ctx) != main_pool);
    g_assert(aio_get_thread_pool(d->ctx) == aio_get_thread_pool(d->ctx));

    aio_bh_schedule_oneshot(d->ctx, iothread_submit_bh, d);
    wait_counter(&d->done, ARRAY_SIZE(d->reqs));
    g_assert_cmpint(qatomic_read(&d->bad_ctx), ==, 0);
    for (i = 0; i < ARRAY_SIZE(d->reqs); i++) {
        g_assert_cmpint(d->reqs[i].ret, ==, i * 3 + 1);
        g_assert_cmpint(d->reqs[i].cb_count, ==, 1);
    }

    /* The coroutine form, in a coroutine living in the iothread. */
    d->co = (CoData) {
        .pool = aio_get_thread_pool(d->ctx),
        .iterations = 100,
        .first = 5,
        .done_counter = &d->co_done,
        .expect_ctx = d->ctx,
    };
    aio_co_enter(d->ctx, qemu_coroutine_create(co_entry, &d->co));
    wait_counter(&d->co_done, 1);

    /* Destroying the iothread frees its context and, with it, the pool. */
    iothread_destroy(t);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_assert(qemu_init_main_loop(NULL));
    main_ctx = qemu_get_aio_context();
    main_thread = g_thread_self();
    g_thread_unref(g_thread_new("watchdog", watchdog_thread, NULL));

    add_test("/thread-pool/submit-many", test_submit_many);
    add_test("/thread-pool/sequential", test_sequential);
    add_test("/thread-pool/error-result", test_error_result);
    add_test("/thread-pool/submit-no-cb", test_submit_no_cb);
    add_test("/thread-pool/drain-from-callback", test_drain_from_callback);
    add_test("/thread-pool/cancel", test_cancel);
    add_test("/thread-pool/cancel-while-blocked", test_cancel_while_blocked);
    add_test("/thread-pool/nested-poll", test_nested_poll);
    add_test("/thread-pool/coroutine", test_coroutine);
    add_test("/thread-pool/max-workers", test_max_workers);
    add_test("/thread-pool/idle-exit", test_idle_exit);
    add_test("/thread-pool/idle-timeout-change", test_idle_timeout_change);
    add_test("/thread-pool/iothread", test_iothread);

    return g_test_run();
}
