/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The graph lock: nested readers, a writer that waits for readers in any
 * thread, readers that wait for the writer, graph changes racing I/O in
 * an iothread, and (debug builds) the rules it enforces: the read lock
 * before any other lock, and no drain under the lock.
 *
 * Copyright (c) 2026 The Sluice authors
 */
#include "qemu/osdep.h"

#include "block/aio-wait.h"
#include "block/block_int.h"
#include "qemu/co-lock.h"
#include "qemu/iothread.h"
#include "qemu/keyval.h"
#include "qemu/main-loop.h"
#include "qemu/timer.h"
#include "sysemu/block-backend.h"

typedef struct Reader {
    bool locked;        /* the reader holds its lock */
    bool release;       /* main thread: drop it now */
    bool done;
    int64_t unlocked_at;
} Reader;

static void coroutine_fn nesting_entry(void *opaque)
{
    Reader *r = opaque;

    bdrv_graph_co_rdlock();
    bdrv_graph_co_rdlock();
    assert_bdrv_graph_readable();
    bdrv_graph_co_rdunlock();
    assert_bdrv_graph_readable();
    bdrv_graph_co_rdunlock();
    {
        GRAPH_RDLOCK_GUARD();

        assert_bdrv_graph_readable();
    }
    r->done = true;
}

static void test_nesting(void)
{
    Reader r = { 0 };

    aio_co_enter(qemu_get_aio_context(),
                 qemu_coroutine_create(nesting_entry, &r));
    g_assert_true(r.done);
    /* Nothing held: a writer gets the lock at once. */
    bdrv_graph_wrlock();
    g_assert_true(bdrv_graph_is_write_locked());
    assert_bdrv_graph_writable();
    bdrv_graph_wrunlock();
    g_assert_false(bdrv_graph_is_write_locked());
}

/* Hold a read lock until told to let go, sleeping in between. */
static void coroutine_fn holding_reader_entry(void *opaque)
{
    Reader *r = opaque;

    bdrv_graph_co_rdlock();
    qatomic_store_release(&r->locked, true);
    while (!qatomic_load_acquire(&r->release)) {
        qemu_co_sleep_ns(QEMU_CLOCK_REALTIME, 1000 * 1000);
    }
    r->unlocked_at = g_get_monotonic_time();
    bdrv_graph_co_rdunlock();
    qatomic_store_release(&r->done, true);
    aio_wait_kick();
}

static void release_cb(void *opaque)
{
    Reader *r = opaque;

    qatomic_store_release(&r->release, true);
}

static void test_writer_waits_for_reader(void)
{
    IOThread *t = iothread_create("reader", NULL);
    AioContext *ctx = iothread_get_aio_context(t);
    QEMUTimer *timer;
    Reader r = { 0 };
    int64_t got;

    aio_co_enter(ctx, qemu_coroutine_create(holding_reader_entry, &r));
    while (!qatomic_load_acquire(&r.locked)) {
        g_usleep(1000);
    }
    /* The writer polls the main loop, where the release timer fires. */
    timer = aio_timer_new(qemu_get_aio_context(), QEMU_CLOCK_REALTIME,
                          SCALE_MS, release_cb, &r);
    timer_mod(timer, qemu_clock_get_ns(QEMU_CLOCK_REALTIME) / SCALE_MS +
              30);
    bdrv_graph_wrlock();
    got = g_get_monotonic_time();
    g_assert_true(qatomic_load_acquire(&r.release));
    g_assert_cmpint(r.unlocked_at, >, 0);
    g_assert_cmpint(r.unlocked_at, <=, got);
    bdrv_graph_wrunlock();

    AIO_WAIT_WHILE(ctx, !qatomic_load_acquire(&r.done));
    timer_free(timer);
    iothread_destroy(t);
}

typedef struct Waiter {
    bool started;
    bool locked;
} Waiter;

static void coroutine_fn waiting_reader_entry(void *opaque)
{
    Waiter *w = opaque;

    qatomic_store_release(&w->started, true);
    bdrv_graph_co_rdlock();
    /* A writer must not be in while we read. */
    g_assert_false(bdrv_graph_is_write_locked());
    qatomic_store_release(&w->locked, true);
    bdrv_graph_co_rdunlock();
    aio_wait_kick();
}

static void test_reader_waits_for_writer(void)
{
    IOThread *t = iothread_create("waiter", NULL);
    AioContext *ctx = iothread_get_aio_context(t);
    Waiter iw = { 0 }, mw = { 0 };

    bdrv_graph_wrlock();
    aio_co_enter(ctx, qemu_coroutine_create(waiting_reader_entry, &iw));
    aio_co_enter(qemu_get_aio_context(),
                 qemu_coroutine_create(waiting_reader_entry, &mw));
    while (!qatomic_load_acquire(&iw.started)) {
        g_usleep(1000);
    }
    g_usleep(20 * 1000);
    while (aio_poll(qemu_get_aio_context(), false)) {
        /* run whatever the main context has */
    }
    g_assert_true(mw.started);
    g_assert_false(qatomic_load_acquire(&iw.locked));
    g_assert_false(mw.locked);

    bdrv_graph_wrunlock();
    AIO_WAIT_WHILE(NULL, !qatomic_load_acquire(&iw.locked) ||
                   !qatomic_load_acquire(&mw.locked));
    iothread_destroy(t);
}

/* ---- Graph changes racing I/O in another context ---- */

typedef struct Loader {
    BlockBackend *blk;
    bool stop;
    bool done;
    unsigned long ios;
    int error;
} Loader;

static void coroutine_fn loader_entry(void *opaque)
{
    Loader *l = opaque;
    uint8_t buf[4096];
    QEMUIOVector qiov;
    int ret;

    qemu_iovec_init_buf(&qiov, buf, sizeof(buf));
    while (!qatomic_load_acquire(&l->stop)) {
        ret = blk_co_preadv(l->blk, (l->ios % 256) * 4096, 4096, &qiov, 0);
        if (ret < 0) {
            l->error = ret;
            break;
        }
        qatomic_set(&l->ios, l->ios + 1);
    }
    qatomic_store_release(&l->done, true);
    aio_wait_kick();
}

static BlockDriverState *open_null(const char *opts)
{
    g_autoptr(JsonObject) o = keyval_parse(opts, NULL, NULL);
    g_autoptr(GError) err = NULL;
    BlockDriverState *bs = bdrv_open_options(o, BDRV_O_RDWR, &err);

    g_assert_no_error(err);
    return bs;
}

static void test_changes_race_io(void)
{
    IOThread *t = iothread_create("loader", NULL);
    AioContext *ctx = iothread_get_aio_context(t);
    g_autoptr(GError) err = NULL;
    BlockDriverState *io_bs, *parent, *child;
    Loader l = { 0 };
    int i;

    io_bs = open_null("driver=null-aio,size=1M,read-zeroes=on");
    g_assert_cmpint(bdrv_try_change_aio_context(io_bs, ctx, &err), ==, 0);
    l.blk = blk_new(ctx, BLK_PERM_CONSISTENT_READ, BLK_PERM_ALL);
    g_assert_true(blk_insert_bs(l.blk, io_bs, &err));
    bdrv_unref(io_bs);

    parent = open_null("driver=raw,file.driver=null-co,file.size=1M");
    aio_co_enter(ctx, qemu_coroutine_create(loader_entry, &l));

    /* Every change takes the write lock while the iothread reads. */
    for (i = 0; i < 200 || qatomic_read(&l.ios) < 1000; i++) {
        child = open_null("driver=null-co,size=1M");
        g_assert_true(bdrv_replace_child_bs(parent->file, child, &err));
        bdrv_unref(child);
    }
    qatomic_store_release(&l.stop, true);
    AIO_WAIT_WHILE(ctx, !qatomic_load_acquire(&l.done));
    g_assert_cmpint(l.error, ==, 0);
    g_assert_cmpuint(l.ios, >, 0);

    bdrv_unref(parent);
    blk_unref(l.blk);
    iothread_destroy(t);
}

/* ---- Writers in a coroutine (image creation opens and closes nodes) ---- */

typedef struct CoWriter {
    BlockDriverState *parent;
    bool done;
} CoWriter;

static void coroutine_fn co_writer_entry(void *opaque)
{
    CoWriter *w = opaque;
    g_autoptr(GError) err = NULL;
    int i;

    for (i = 0; i < 50; i++) {
        BlockDriverState *child = open_null("driver=null-co,size=1M");

        g_assert_true(bdrv_replace_child_bs(w->parent->file, child, &err));
        bdrv_unref(child);
    }
    /* Explicitly too, with a wait for readers that yields. */
    bdrv_graph_wrlock();
    assert_bdrv_graph_writable();
    bdrv_graph_wrunlock();
    w->done = true;
    aio_wait_kick();
}

static void test_writer_in_coroutine(void)
{
    IOThread *t = iothread_create("co-writer", NULL);
    AioContext *ctx = iothread_get_aio_context(t);
    g_autoptr(GError) err = NULL;
    BlockDriverState *io_bs;
    CoWriter w = { 0 };
    Loader l = { 0 };

    io_bs = open_null("driver=null-aio,size=1M,read-zeroes=on");
    g_assert_cmpint(bdrv_try_change_aio_context(io_bs, ctx, &err), ==, 0);
    l.blk = blk_new(ctx, BLK_PERM_CONSISTENT_READ, BLK_PERM_ALL);
    g_assert_true(blk_insert_bs(l.blk, io_bs, &err));
    bdrv_unref(io_bs);
    aio_co_enter(ctx, qemu_coroutine_create(loader_entry, &l));

    w.parent = open_null("driver=raw,file.driver=null-co,file.size=1M");
    aio_co_enter(qemu_get_aio_context(),
                 qemu_coroutine_create(co_writer_entry, &w));
    /* A writer outside coroutines waits for the coroutine writer. */
    bdrv_graph_wrlock();
    bdrv_graph_wrunlock();
    AIO_WAIT_WHILE(NULL, !w.done);

    qatomic_store_release(&l.stop, true);
    AIO_WAIT_WHILE(ctx, !qatomic_load_acquire(&l.done));
    g_assert_cmpint(l.error, ==, 0);
    bdrv_unref(w.parent);
    blk_unref(l.blk);
    iothread_destroy(t);
}

/* ---- The rules (debug builds assert them) ---- */

#ifdef CONFIG_DEBUG
static CoMutex order_mutex;

static void coroutine_fn bad_order_entry(void *opaque)
{
    qemu_co_mutex_lock(&order_mutex);
    bdrv_graph_co_rdlock();
}
#endif

static void test_rdlock_after_mutex_aborts(void)
{
#ifdef CONFIG_DEBUG
    if (g_test_subprocess()) {
        qemu_co_mutex_init(&order_mutex);
        aio_co_enter(qemu_get_aio_context(),
                     qemu_coroutine_create(bad_order_entry, NULL));
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDERR);
    g_test_trap_assert_failed();
#else
    g_test_skip("the lock order is asserted in --enable-debug builds");
#endif
}

static void test_drain_under_lock_aborts(void)
{
#ifdef CONFIG_DEBUG
    if (g_test_subprocess()) {
        BlockDriverState *bs = open_null("driver=null-co,size=1M");

        bdrv_graph_wrlock();
        bdrv_drain(bs);
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDERR);
    g_test_trap_assert_failed();
#else
    g_test_skip("drains under the lock are caught in --enable-debug "
                "builds");
#endif
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_assert_true(qemu_init_main_loop(NULL));
    g_test_add_func("/graph-lock/nesting", test_nesting);
    g_test_add_func("/graph-lock/writer-waits-for-reader",
                    test_writer_waits_for_reader);
    g_test_add_func("/graph-lock/reader-waits-for-writer",
                    test_reader_waits_for_writer);
    g_test_add_func("/graph-lock/changes-race-io", test_changes_race_io);
    g_test_add_func("/graph-lock/writer-in-coroutine",
                    test_writer_in_coroutine);
    g_test_add_func("/graph-lock/rdlock-after-mutex-aborts",
                    test_rdlock_after_mutex_aborts);
    g_test_add_func("/graph-lock/drain-under-lock-aborts",
                    test_drain_under_lock_aborts);
    return g_test_run();
}
