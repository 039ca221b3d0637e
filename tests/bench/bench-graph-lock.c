/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What the graph lock costs: a read lock pair (outermost and nested), a
 * write lock pair with no readers, a write lock taken while an iothread
 * keeps a reader busy, and a 4 KiB null-co read through a BlockBackend
 * (which takes the read lock once per layer) for scale.
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * QEMU 7.2 has no graph lock (8.0 added one) and no tool that reports
 * these figures, so there is no reference.
 */
#include "qemu/osdep.h"

#include "block/aio-wait.h"
#include "block/block_int.h"
#include "qemu/iothread.h"
#include "qemu/keyval.h"
#include "qemu/main-loop.h"
#include "sysemu/block-backend.h"

#define ITERS 2000000

typedef struct Bench {
    BlockBackend *blk;
    double rd_ns;
    double nested_ns;
    double read_ns;
    bool stop;
    bool done;
} Bench;

static void coroutine_fn lock_entry(void *opaque)
{
    Bench *b = opaque;
    int64_t t0;
    int i;

    t0 = g_get_monotonic_time();
    for (i = 0; i < ITERS; i++) {
        bdrv_graph_co_rdlock();
        bdrv_graph_co_rdunlock();
    }
    b->rd_ns = (g_get_monotonic_time() - t0) * 1000.0 / ITERS;

    bdrv_graph_co_rdlock();
    t0 = g_get_monotonic_time();
    for (i = 0; i < ITERS; i++) {
        bdrv_graph_co_rdlock();
        bdrv_graph_co_rdunlock();
    }
    b->nested_ns = (g_get_monotonic_time() - t0) * 1000.0 / ITERS;
    bdrv_graph_co_rdunlock();
}

static void coroutine_fn read_entry(void *opaque)
{
    Bench *b = opaque;
    uint8_t buf[4096];
    QEMUIOVector qiov;
    int64_t t0;
    int i;

    qemu_iovec_init_buf(&qiov, buf, sizeof(buf));
    t0 = g_get_monotonic_time();
    for (i = 0; i < ITERS / 4; i++) {
        if (blk_co_preadv(b->blk, 0, sizeof(buf), &qiov, 0) < 0) {
            abort();
        }
    }
    b->read_ns = (g_get_monotonic_time() - t0) * 1000.0 / (ITERS / 4);
}

/* A reader that keeps requests going in an iothread until told to stop. */
static void coroutine_fn busy_entry(void *opaque)
{
    Bench *b = opaque;
    uint8_t buf[512];
    QEMUIOVector qiov;

    qemu_iovec_init_buf(&qiov, buf, sizeof(buf));
    while (!qatomic_load_acquire(&b->stop)) {
        blk_co_preadv(b->blk, 0, sizeof(buf), &qiov, 0);
    }
    qatomic_store_release(&b->done, true);
    aio_wait_kick();
}

static BlockBackend *open_blk(const char *opts, AioContext *ctx)
{
    g_autoptr(JsonObject) o = keyval_parse(opts, NULL, NULL);
    g_autoptr(GError) err = NULL;
    BlockDriverState *bs = bdrv_open_options(o, BDRV_O_RDWR, &err);
    BlockBackend *blk;

    if (!bs || bdrv_try_change_aio_context(bs, ctx, &err) < 0) {
        fprintf(stderr, "bench-graph-lock: %s\n", err->message);
        exit(1);
    }
    blk = blk_new(ctx, BLK_PERM_CONSISTENT_READ, BLK_PERM_ALL);
    if (!blk_insert_bs(blk, bs, &err)) {
        exit(1);
    }
    bdrv_unref(bs);
    return blk;
}

static double wrlock_pair_ns(int n)
{
    int64_t t0 = g_get_monotonic_time();
    int i;

    for (i = 0; i < n; i++) {
        bdrv_graph_wrlock();
        bdrv_graph_wrunlock();
    }
    return (g_get_monotonic_time() - t0) * 1000.0 / n;
}

int main(int argc, char **argv)
{
    Bench b = { 0 };
    IOThread *t;
    double idle_wr, busy_wr;

    if (!qemu_init_main_loop(NULL)) {
        return 1;
    }
    b.blk = open_blk("driver=raw,file.driver=null-co,file.size=1G",
                     qemu_get_aio_context());
    qemu_coroutine_enter(qemu_coroutine_create(lock_entry, &b));
    qemu_coroutine_enter(qemu_coroutine_create(read_entry, &b));
    idle_wr = wrlock_pair_ns(100000);
    blk_unref(b.blk);

    t = iothread_create("busy", NULL);
    b.blk = open_blk("driver=null-co,size=1G",
                     iothread_get_aio_context(t));
    aio_co_enter(iothread_get_aio_context(t),
                 qemu_coroutine_create(busy_entry, &b));
    g_usleep(10000);
    busy_wr = wrlock_pair_ns(10000);
    qatomic_store_release(&b.stop, true);
    AIO_WAIT_WHILE(NULL, !qatomic_load_acquire(&b.done));
    blk_unref(b.blk);
    iothread_destroy(t);

    printf("graph lock: read lock pair %.1f ns (nested %.1f ns); "
           "write lock pair %.0f ns idle, %.0f ns with an iothread "
           "reading; 4 KiB raw/null-co read %.0f ns\n",
           b.rd_ns, b.nested_ns, idle_wr, busy_wr, b.read_ns);
    return 0;
}
