/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The QED need-check bit, its timer and the drain handler: the bit is
 * in the file (flushed) before the first allocating write; a timer
 * clears it after a quiet period and a clean close clears it; draining
 * a dirty image leaves no timer pending and no header write in flight;
 * after the section the timer fires and the image becomes clean; a
 * drain started during the header update waits for it; moving the node
 * to another context moves the handler and the timer.
 *
 * Copyright (c) 2026 The Sluice authors
 */
#include "qemu/osdep.h"

#include "block/blkdebug.h"
#include "qemu/iothread.h"
#include "tests/unit/test-qed-util.h"

/* Short quiet period so the tests need not wait QEMU's 5 s. */
#define TIMEOUT_MS 200

static bool bit_on_disk(const char *path)
{
    return qt_peek(path, 16, 8) & QED_F_NEED_CHECK;
}

static QEDDebugState state_of(BlockBackend *blk)
{
    QEDDebugState st;

    g_assert_true(qed_debug_state(blk_bs(blk), &st));
    return st;
}

/* In-flight references of @ctx tagged "qed-need-check". */
static unsigned int need_check_refs(AioContext *ctx)
{
    g_autoptr(GArray) tags = aio_context_in_flight_tags(ctx);
    guint i;

    for (i = 0; i < tags->len; i++) {
        AioInFlightEntry *e = &g_array_index(tags, AioInFlightEntry, i);

        if (!strcmp(e->tag, "qed-need-check")) {
            return e->count;
        }
    }
    return 0;
}

/*
 * Only a guard against a hang: clearing the bit flushes the file to
 * stable storage, and under heavy I/O from other processes one such
 * flush took 25 s (a 2 s guard failed 15 runs of 40 there).
 */
#define CLEAN_GUARD_MS 60000

/* Poll the main context until the image is clean, or fail. */
static void wait_clean(BlockBackend *blk)
{
    gint64 deadline = g_get_monotonic_time() + CLEAN_GUARD_MS * 1000LL;

    while (state_of(blk).need_check || state_of(blk).clear_running ||
           state_of(blk).timer_pending) {
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        aio_poll(qemu_get_aio_context(), false);
        g_usleep(500);
    }
}

static BlockBackend *dirty_image(const char *name, bool debug)
{
    g_autofree char *path = qt_path(name);
    BlockBackend *blk;

    g_assert_cmpint(qt_create(path, 16 * MiB, "cluster_size=4096"), ==, 0);
    blk = debug ? qt_open_debug(path, BDRV_O_RDWR) :
                  qt_open(path, BDRV_O_RDWR);
    g_assert_false(state_of(blk).need_check);
    qt_write(blk, 0x1, 0, 4096);
    return blk;
}

/*
 * The bit is set and flushed before the first allocating write's data
 * goes out: held at the header write, then at the data write.
 */
static void test_set_before_first_write(void)
{
    g_autofree char *path = qt_path("first.qed");
    BlockBackend *blk;
    QtAsyncWrite w;

    g_assert_cmpint(qt_create(path, 16 * MiB, "cluster_size=4096"), ==, 0);
    blk = qt_open_debug(path, BDRV_O_RDWR);
    g_assert_cmpint(blkdebug_debug_breakpoint(blk_bs(blk), "pwritev", "h"),
                    ==, 0);
    qt_start_write(&w, blk, 0x7, 8192, 4096);
    while (!blkdebug_debug_is_suspended(blk_bs(blk), "h")) {
        aio_poll(qemu_get_aio_context(), true);
    }
    /* Held at the header write: nothing in the file yet. */
    g_assert_false(bit_on_disk(path));
    g_assert_cmpint(blkdebug_debug_breakpoint(blk_bs(blk), "pwritev", "d"),
                    ==, 0);
    g_assert_cmpint(blkdebug_debug_resume(blk_bs(blk), "h"), ==, 0);
    while (!blkdebug_debug_is_suspended(blk_bs(blk), "d")) {
        aio_poll(qemu_get_aio_context(), true);
    }
    /* Held at the data write: the bit is there already. */
    g_assert_true(bit_on_disk(path));
    g_assert_cmpint(blkdebug_debug_resume(blk_bs(blk), "d"), ==, 0);
    qt_wait_flag(&w.done, 10000);
    g_assert_cmpint(w.ret, ==, 0);

    /* Writes into allocated clusters do not touch the header. */
    blk_unref(blk);
    g_assert_false(bit_on_disk(path));
    blk = qt_open(path, BDRV_O_RDWR);
    qt_write(blk, 0x8, 8192, 4096);
    g_assert_false(bit_on_disk(path));
    g_assert_false(state_of(blk).timer_pending);
    blk_unref(blk);
}

static void test_timer_clears(void)
{
    g_autofree char *path = qt_path("timer.qed");
    BlockBackend *blk = dirty_image("timer.qed", false);
    AioContext *ctx = qemu_get_aio_context();
    gint64 start = g_get_monotonic_time();
    int i;

    g_assert_true(bit_on_disk(path));
    g_assert_true(state_of(blk).timer_pending);
    /* The armed timer is in-flight work of its context. */
    g_assert_cmpuint(need_check_refs(ctx), ==, 1);

    /* Allocating writes keep it from firing: the period is quiet time. */
    for (i = 0; i < 6; i++) {
        qt_poll_for(TIMEOUT_MS / 2);
        qt_write(blk, 0x2, (i + 1) * 64 * KiB, 4096);
        g_assert_true(bit_on_disk(path));
    }
    g_assert_cmpint(g_get_monotonic_time() - start, >, 2 * TIMEOUT_MS * 1000);

    wait_clean(blk);
    g_assert_false(bit_on_disk(path));
    g_assert_cmpuint(need_check_refs(ctx), ==, 0);
    g_assert_cmpuint(aio_context_in_flight(ctx), ==, 0);
    /* Flushed first: the metadata is in the file. */
    g_assert_false(state_of(blk).metadata_dirty);
    g_assert_cmpuint(qt_peek(path, 4096, 8), !=, 0);

    /* The next allocating write sets it again. */
    qt_write(blk, 0x3, 8 * MiB, 4096);
    g_assert_true(bit_on_disk(path));
    g_assert_true(state_of(blk).timer_pending);
    blk_unref(blk);
    g_assert_false(bit_on_disk(path));
}

static void test_drain_dirty(void)
{
    g_autofree char *path = qt_path("drain.qed");
    BlockBackend *blk = dirty_image("drain.qed", false);
    BlockDriverState *bs = blk_bs(blk);
    AioContext *ctx = qemu_get_aio_context();
    QEDDebugState st;

    g_assert_true(state_of(blk).timer_pending);
    bdrv_drained_begin(bs);
    st = state_of(blk);
    g_assert_false(st.timer_pending);
    g_assert_false(st.clear_running);
    g_assert_cmpuint(need_check_refs(ctx), ==, 0);
    g_assert_cmpuint(aio_context_in_flight(ctx), ==, 0);
    g_assert_false(aio_context_drained_busy(ctx));

    /* Long past the period: nothing fires while drained. */
    qt_poll_for(3 * TIMEOUT_MS);
    g_assert_true(bit_on_disk(path));
    g_assert_true(state_of(blk).need_check);
    g_assert_false(state_of(blk).timer_pending);
    g_assert_cmpuint(aio_context_in_flight(ctx), ==, 0);

    /* Nested sections: only the outermost end re-arms. */
    bdrv_drained_begin(bs);
    bdrv_drained_end(bs);
    g_assert_false(state_of(blk).timer_pending);

    bdrv_drained_end(bs);
    g_assert_true(state_of(blk).timer_pending);
    g_assert_cmpuint(need_check_refs(ctx), ==, 1);
    wait_clean(blk);
    g_assert_false(bit_on_disk(path));
    blk_unref(blk);
}

/* drain_all quiesces every context's handlers, ours too. */
static void test_drain_all(void)
{
    BlockBackend *blk = dirty_image("drain-all.qed", false);

    bdrv_drain_all_begin();
    g_assert_false(state_of(blk).timer_pending);
    qt_poll_for(2 * TIMEOUT_MS);
    g_assert_true(state_of(blk).need_check);
    bdrv_drain_all_end();
    g_assert_true(state_of(blk).timer_pending);
    wait_clean(blk);
    blk_unref(blk);
}

typedef struct Resumer {
    BlockDriverState *bs;
    bool resumed;
} Resumer;

static void resume_bh(void *opaque)
{
    Resumer *r = opaque;

    g_assert_cmpint(blkdebug_debug_resume(r->bs, "u"), ==, 0);
    r->resumed = true;
}

/*
 * The header update (flush of the metadata, then the header) held at a
 * write by a breakpoint: a drain begun meanwhile is busy, and returns
 * only once the update is over and the image clean.
 */
static void test_drain_during_update(void)
{
    g_autofree char *path = qt_path("update.qed");
    BlockBackend *blk = dirty_image("update.qed", true);
    BlockDriverState *bs = blk_bs(blk);
    AioContext *ctx = qemu_get_aio_context();
    Resumer r = { .bs = bs };
    QEDDebugState st;

    g_assert_cmpint(blkdebug_debug_breakpoint(bs, "pwritev", "u"), ==, 0);
    while (!blkdebug_debug_is_suspended(bs, "u")) {
        aio_poll(ctx, true);
    }
    st = state_of(blk);
    g_assert_true(st.clear_running);
    g_assert_false(st.timer_pending);
    g_assert_cmpuint(need_check_refs(ctx), ==, 1);

    /* Phase 1 alone: the handler is busy, the counter says why. */
    aio_context_drained_begin(ctx);
    g_assert_true(aio_context_drained_busy(ctx));
    aio_context_drained_end(ctx);
    g_assert_false(state_of(blk).timer_pending);

    /* A whole drain: the update finishes while it waits. */
    aio_bh_schedule_oneshot(ctx, resume_bh, &r);
    bdrv_drained_begin(bs);
    g_assert_true(r.resumed);
    st = state_of(blk);
    g_assert_false(st.clear_running);
    g_assert_false(st.need_check);
    g_assert_false(st.timer_pending);
    g_assert_cmpuint(aio_context_in_flight(ctx), ==, 0);
    g_assert_false(bit_on_disk(path));
    bdrv_drained_end(bs);
    /* Clean: nothing to re-arm. */
    g_assert_false(state_of(blk).timer_pending);
    blk_unref(blk);
}

static void test_context_move(void)
{
    g_autofree char *path = qt_path("move.qed");
    IOThread *t = iothread_create("qed-move", NULL);
    AioContext *io_ctx = iothread_get_aio_context(t);
    AioContext *main_ctx = qemu_get_aio_context();
    BlockBackend *blk = dirty_image("move.qed", false);
    BlockDriverState *bs = blk_bs(blk);
    QEDDebugState st;

    st = state_of(blk);
    g_assert_true(st.timer_ctx == main_ctx);
    g_assert_true(st.handler_ctx == main_ctx);
    g_assert_cmpuint(need_check_refs(main_ctx), ==, 1);

    g_assert_cmpint(bdrv_try_change_aio_context(bs, io_ctx, NULL), ==, 0);
    st = state_of(blk);
    g_assert_true(st.timer_ctx == io_ctx);
    g_assert_true(st.handler_ctx == io_ctx);
    /* Still dirty: re-armed in the new context, nothing left behind. */
    g_assert_true(st.timer_pending);
    g_assert_cmpuint(need_check_refs(main_ctx), ==, 0);
    g_assert_cmpuint(need_check_refs(io_ctx), ==, 1);

    /* The iothread runs the timer and the update. */
    wait_clean(blk);
    g_assert_false(bit_on_disk(path));
    g_assert_cmpuint(need_check_refs(io_ctx), ==, 0);

    /* Dirty again from there; a drain of the new context cancels it. */
    qt_write(blk, 0x4, 4 * MiB, 4096);
    g_assert_true(bit_on_disk(path));
    g_assert_true(state_of(blk).timer_pending);
    bdrv_drained_begin(bs);
    g_assert_false(state_of(blk).timer_pending);
    g_assert_cmpuint(aio_context_in_flight(io_ctx), ==, 0);
    /* Draining the old context does not touch us any more. */
    bdrv_context_drained_begin(main_ctx);
    bdrv_context_drained_end(main_ctx);
    g_assert_false(state_of(blk).timer_pending);
    bdrv_drained_end(bs);
    g_assert_true(state_of(blk).timer_pending);

    /* Back while armed. */
    g_assert_cmpint(bdrv_try_change_aio_context(bs, main_ctx, NULL), ==, 0);
    st = state_of(blk);
    g_assert_true(st.timer_ctx == main_ctx);
    g_assert_true(st.handler_ctx == main_ctx);
    g_assert_true(st.timer_pending);
    g_assert_cmpuint(need_check_refs(io_ctx), ==, 0);
    g_assert_cmpuint(need_check_refs(main_ctx), ==, 1);
    wait_clean(blk);
    g_assert_false(bit_on_disk(path));
    blk_unref(blk);
    iothread_destroy(t);
}

/* Close while the timer is armed: cleared by the close, nothing leaks. */
static void test_close_dirty(void)
{
    g_autofree char *path = qt_path("close.qed");
    BlockBackend *blk = dirty_image("close.qed", false);
    AioContext *ctx = qemu_get_aio_context();

    g_assert_true(state_of(blk).timer_pending);
    blk_unref(blk);
    g_assert_false(bit_on_disk(path));
    g_assert_cmpuint(need_check_refs(ctx), ==, 0);
    g_assert_cmpuint(aio_context_in_flight(ctx), ==, 0);
    /* The metadata made it: the data reads back. */
    blk = qt_open(path, 0);
    qt_check_pattern(blk, 0x1, 0, 4096);
    g_assert_false(state_of(blk).timer_pending);
    blk_unref(blk);
}

/* A read-only image never gets dirty, so never arms anything. */
static void test_read_only(void)
{
    g_autofree char *path = qt_path("ro.qed");
    BlockBackend *blk;

    g_assert_cmpint(qt_create(path, 16 * MiB, NULL), ==, 0);
    blk = qt_open(path, 0);
    qt_check_pattern(blk, 0, 0, 64 * KiB);
    bdrv_drained_begin(blk_bs(blk));
    bdrv_drained_end(blk_bs(blk));
    g_assert_false(state_of(blk).timer_pending);
    g_assert_cmpuint(need_check_refs(qemu_get_aio_context()), ==, 0);
    blk_unref(blk);
}

int main(int argc, char **argv)
{
    int ret;

    g_test_init(&argc, &argv, NULL);
    qt_init();
    qed_set_need_check_timeout_ns(TIMEOUT_MS * SCALE_MS);
    g_test_add_func("/qed-drain/set-before-first-write",
                    test_set_before_first_write);
    g_test_add_func("/qed-drain/timer-clears", test_timer_clears);
    g_test_add_func("/qed-drain/drain-dirty", test_drain_dirty);
    g_test_add_func("/qed-drain/drain-all", test_drain_all);
    g_test_add_func("/qed-drain/drain-during-update",
                    test_drain_during_update);
    g_test_add_func("/qed-drain/context-move", test_context_move);
    g_test_add_func("/qed-drain/close-dirty", test_close_dirty);
    g_test_add_func("/qed-drain/read-only", test_read_only);
    ret = g_test_run();
    qt_cleanup();
    return ret;
}
