/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Drain benchmarks: begin+end latency as the graph grows (it should stay
 * flat: drain never walks the graph), and the collateral cost of draining
 * one node for I/O on an unrelated node of the same context.
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * QEMU has no tool that reports these figures, so there is no reference.
 */
#include "qemu/osdep.h"

#include "block/aio-wait.h"
#include "block/block_int.h"
#include "qemu/coroutine.h"
#include "qemu/iothread.h"
#include "qemu/main-loop.h"
#include "sysemu/block-backend.h"

static BlockDriverState *open_node(const char *driver, const char *name)
{
    g_autoptr(JsonObject) opts = json_object_new();
    g_autoptr(GError) err = NULL;
    BlockDriverState *bs;

    json_object_set_string_member(opts, "read-zeroes", "on");
    bs = bdrv_open_driver(bdrv_find_format(driver), name, opts,
                          BDRV_O_RDWR, &err);
    if (!bs) {
        fprintf(stderr, "bench-drain: %s\n", err->message);
        exit(1);
    }
    return bs;
}

/*
 * A backend over a chain of @n nodes in @ctx.  Returns the bottom node;
 * *@top_blk keeps the chain alive.
 */
static BlockDriverState *build_chain(int n, AioContext *ctx,
                                     BlockBackend **top_blk)
{
    BlockDriverState *top = open_node("null-co", NULL);
    BlockDriverState *parent = top;
    int i;

    for (i = 1; i < n; i++) {
        BlockDriverState *bs = open_node("null-co", NULL);

        if (!bdrv_attach_child(parent, bs, "child", BDRV_CHILD_DATA, NULL)) {
            exit(1);
        }
        bdrv_unref(bs);
        parent = bs;
    }
    if (bdrv_try_change_aio_context(top, ctx, NULL) < 0) {
        exit(1);
    }
    *top_blk = blk_new(ctx, BLK_PERM_ALL, BLK_PERM_ALL);
    if (!blk_insert_bs(*top_blk, top, NULL)) {
        exit(1);
    }
    bdrv_unref(top);
    return parent;
}

static double drain_latency_ns(BlockDriverState *bs, int iterations)
{
    int64_t start = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
    int i;

    for (i = 0; i < iterations; i++) {
        bdrv_drained_begin(bs);
        bdrv_drained_end(bs);
    }
    return (double)(qemu_clock_get_ns(QEMU_CLOCK_REALTIME) - start) /
           iterations;
}

/* ---- Collateral ---- */

typedef struct Loader {
    BlockBackend *blk;
    bool stop;                  /* atomic */
    bool stopped;               /* atomic */
    uint64_t completed;         /* atomic */
} Loader;

static void coroutine_fn loader_entry(void *opaque)
{
    Loader *l = opaque;
    uint8_t buf[4096];
    QEMUIOVector qiov;

    qemu_iovec_init_buf(&qiov, buf, sizeof(buf));
    while (!qatomic_read(&l->stop)) {
        if (blk_co_preadv(l->blk, 0, sizeof(buf), &qiov, 0) < 0) {
            break;
        }
        qatomic_inc(&l->completed);
    }
    qatomic_store_release(&l->stopped, true);
    aio_wait_kick();
}

/* Run the main loop for @ns, draining @victim back to back if not NULL. */
static void run_for(int64_t ns, BlockDriverState *victim, int64_t *drains,
                    int64_t *max_drain_ns)
{
    int64_t end = qemu_clock_get_ns(QEMU_CLOCK_REALTIME) + ns;
    int64_t t0, t1;

    while ((t0 = qemu_clock_get_ns(QEMU_CLOCK_REALTIME)) < end) {
        if (!victim) {
            aio_poll(qemu_get_aio_context(), false);
            continue;
        }
        bdrv_drained_begin(victim);
        bdrv_drained_end(victim);
        t1 = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
        (*drains)++;
        *max_drain_ns = MAX(*max_drain_ns, t1 - t0);
        /* Let the bystander run between drains, as a real caller would. */
        aio_poll(qemu_get_aio_context(), false);
    }
}

/*
 * Collateral of draining @victim for a QD1 loader on @loaded: a drain
 * quiesces the victim's whole context, so a bystander there waits for
 * each section.  Prints the bystander's I/O rate with drains running back
 * to back, relative to the rate without them, and the drain durations.
 */
static void bench_collateral(const char *what, BlockDriverState *victim,
                             BlockBackend *loaded)
{
    const int64_t period = 200 * SCALE_MS;
    Loader l = { .blk = loaded };
    int64_t drains = 0, max_drain_ns = 0, busy_ns;
    uint64_t quiet, disturbed;

    aio_co_enter(blk_get_aio_context(loaded),
                 qemu_coroutine_create(loader_entry, &l));

    run_for(period, NULL, NULL, NULL);
    quiet = qatomic_read(&l.completed);

    busy_ns = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
    run_for(period, victim, &drains, &max_drain_ns);
    busy_ns = qemu_clock_get_ns(QEMU_CLOCK_REALTIME) - busy_ns;
    disturbed = qatomic_read(&l.completed) - quiet;

    qatomic_set(&l.stop, true);
    AIO_WAIT_WHILE(blk_get_aio_context(loaded),
                   !qatomic_load_acquire(&l.stopped));

    printf("collateral, bystander %s: %" PRId64 " drains in %.0f ms "
           "(mean %.1f us, max %.1f us); bystander I/O rate %.0f%% of "
           "undisturbed\n", what, drains, busy_ns / 1e6,
           drains ? busy_ns / 1e3 / drains : 0.0, max_drain_ns / 1e3,
           quiet ? 100.0 * disturbed / quiet : 0.0);
}

int main(int argc, char **argv)
{
    static const int sizes[] = { 1, 100, 10000 };
    gint iterations = 20000;
    GOptionEntry entries[] = {
        { "iterations", 'n', 0, G_OPTION_ARG_INT, &iterations,
          "drains per figure", "N" },
        { NULL },
    };
    g_autoptr(GOptionContext) opts = g_option_context_new("");
    g_autoptr(GError) err = NULL;
    AioContext *main_ctx;
    IOThread *iothread;
    BlockBackend *blk, *other_blk, *a_blk, *b_blk;
    BlockDriverState *bottom, *a, *b;
    size_t i;

    g_option_context_add_main_entries(opts, entries, NULL);
    if (!g_option_context_parse(opts, &argc, &argv, &err) ||
        !qemu_init_main_loop(&err)) {
        fprintf(stderr, "bench-drain: %s\n", err->message);
        return 1;
    }
    main_ctx = qemu_get_aio_context();

    for (i = 0; i < G_N_ELEMENTS(sizes); i++) {
        bottom = build_chain(sizes[i], main_ctx, &blk);
        printf("drain begin+end, idle context with %d node%s: %.0f ns\n",
               sizes[i], sizes[i] == 1 ? "" : "s",
               drain_latency_ns(bottom, iterations));
        blk_unref(blk);
    }

    iothread = iothread_create("bench", &err);
    if (!iothread) {
        fprintf(stderr, "bench-drain: %s\n", err->message);
        return 1;
    }
    build_chain(10000, iothread_get_aio_context(iothread), &other_blk);
    bottom = build_chain(1, main_ctx, &blk);
    printf("drain begin+end, 1 node here, 10000 nodes in another context: "
           "%.0f ns\n", drain_latency_ns(bottom, iterations));
    blk_unref(blk);

    /* Collateral: two unrelated nodes in the main context. */
    a = open_node("null-co", "victim");
    b = open_node("null-aio", "bystander");
    a_blk = blk_new(main_ctx, BLK_PERM_ALL, BLK_PERM_ALL);
    b_blk = blk_new(main_ctx, BLK_PERM_ALL, BLK_PERM_ALL);
    blk_insert_bs(a_blk, a, NULL);
    blk_insert_bs(b_blk, b, NULL);
    bench_collateral("in the same context", a, b_blk);

    /* The same bystander moved to the iothread's context. */
    bdrv_try_change_aio_context(b, iothread_get_aio_context(iothread),
                                NULL);
    bench_collateral("in another context", a, b_blk);
    bdrv_try_change_aio_context(b, main_ctx, NULL);

    blk_unref(a_blk);
    blk_unref(b_blk);
    bdrv_unref(a);
    bdrv_unref(b);
    blk_unref(other_blk);
    iothread_destroy(iothread);
    return 0;
}
