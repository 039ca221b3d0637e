/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The main loop: GLib's default GMainContext with the main AioContext
 * attached as a GSource.
 *
 * Copyright (c) 2026 The Sluice authors
 */
#include "qemu/osdep.h"

#include "qemu/main-loop.h"

static AioContext *qemu_aio_context;
static GThread *main_thread;

bool qemu_init_main_loop(GError **errp)
{
    AioContext *ctx;

    assert(!qemu_aio_context);
    ctx = aio_context_new(errp);
    if (!ctx) {
        return false;
    }
    main_thread = g_thread_self();
    aio_context_set_home_thread(ctx);
    g_source_attach(aio_get_g_source(ctx), NULL);
    qatomic_store_release(&qemu_aio_context, ctx);
    return true;
}

AioContext *qemu_get_aio_context(void)
{
    return qatomic_load_acquire(&qemu_aio_context);
}

bool qemu_in_main_thread(void)
{
    return main_thread && g_thread_self() == main_thread;
}

bool main_loop_wait(bool nonblocking)
{
    assert(qemu_in_main_thread());
    return g_main_context_iteration(NULL, !nonblocking);
}
