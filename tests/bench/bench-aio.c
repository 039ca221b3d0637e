/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Event loop benchmarks: bottom half schedule+dispatch, and the latency of
 * handing a coroutine to another thread's context with aio_co_schedule().
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * Usage: bench-aio [-n ITERATIONS]
 * QEMU has no tool that measures these, so there is no reference figure.
 */
#include "qemu/osdep.h"

#include "block/aio.h"
#include "block/aio-wait.h"
#include "qemu/coroutine.h"
#include "qemu/iothread.h"
#include "qemu/main-loop.h"

static void count_cb(void *opaque)
{
    uint64_t *n = opaque;

    (*n)++;
}

static double bench_bh(AioContext *ctx, uint64_t iterations)
{
    uint64_t n = 0;
    QEMUBH *bh = aio_bh_new(ctx, count_cb, &n);
    int64_t start, end;
    uint64_t i;

    start = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
    for (i = 0; i < iterations; i++) {
        qemu_bh_schedule(bh);
        aio_poll(ctx, false);
    }
    end = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
    g_assert(n == iterations);
    qemu_bh_delete(bh);
    aio_poll(ctx, false);
    return (double)(end - start) / iterations;
}

typedef struct PingPong {
    Coroutine *main_co;
    Coroutine *io_co;
    uint64_t iterations;
    bool started;
    bool done;
} PingPong;

static void coroutine_fn pong_entry(void *opaque)
{
    PingPong *p = opaque;

    for (;;) {
        qemu_coroutine_yield();
        if (qatomic_read(&p->done)) {
            return;
        }
        aio_co_wake(p->main_co);
    }
}

static void coroutine_fn ping_entry(void *opaque)
{
    PingPong *p = opaque;
    uint64_t i;

    for (i = 0; i < p->iterations; i++) {
        /*
         * The wake reaches the other thread through its context; the reply
         * can only run here after we yield, because it too comes as a BH.
         */
        aio_co_wake(p->io_co);
        qemu_coroutine_yield();
    }
    qatomic_set(&p->done, true);
    aio_co_wake(p->io_co);
}

static void start_pong_bh(void *opaque)
{
    PingPong *p = opaque;

    qemu_coroutine_enter(p->io_co);
    qatomic_store_release(&p->started, true);
    aio_wait_kick();
}

static double bench_co_schedule(uint64_t iterations)
{
    IOThread *iothread = iothread_create("bench", NULL);
    AioContext *io_ctx = iothread_get_aio_context(iothread);
    PingPong p = { .iterations = iterations };
    int64_t start, end;

    p.io_co = qemu_coroutine_create(pong_entry, &p);
    /* Park the pong coroutine in the iothread, its home from then on. */
    aio_bh_schedule_oneshot(io_ctx, start_pong_bh, &p);
    AIO_WAIT_WHILE(io_ctx, !qatomic_load_acquire(&p.started));
    p.main_co = qemu_coroutine_create(ping_entry, &p);

    start = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
    qemu_coroutine_enter(p.main_co);
    while (!qatomic_read(&p.done)) {
        aio_poll(qemu_get_aio_context(), true);
    }
    end = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);

    iothread_destroy(iothread);
    /* Two hand-overs per iteration. */
    return (double)(end - start) / iterations / 2 / 1000.0;
}

int main(int argc, char **argv)
{
    gint64 iterations = 2000000;
    gint64 co_iterations = 100000;
    GOptionEntry entries[] = {
        { "iterations", 'n', 0, G_OPTION_ARG_INT64, &iterations,
          "bottom-half iterations", "N" },
        { "co-iterations", 'c', 0, G_OPTION_ARG_INT64, &co_iterations,
          "cross-thread round trips", "N" },
        { NULL },
    };
    g_autoptr(GOptionContext) opts = g_option_context_new("");
    g_autoptr(GError) err = NULL;

    g_option_context_add_main_entries(opts, entries, NULL);
    if (!g_option_context_parse(opts, &argc, &argv, &err)) {
        fprintf(stderr, "bench-aio: %s\n", err->message);
        return 1;
    }
    if (!qemu_init_main_loop(&err)) {
        fprintf(stderr, "bench-aio: %s\n", err->message);
        return 1;
    }

    printf("bh schedule+dispatch: %.1f ns\n",
           bench_bh(qemu_get_aio_context(), iterations));
    printf("cross-thread aio_co_schedule latency: %.2f us\n",
           bench_co_schedule(co_iterations));
    return 0;
}
