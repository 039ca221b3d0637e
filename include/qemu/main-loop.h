/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The main loop: a GMainLoop on GLib's default GMainContext with the main
 * AioContext attached to it as a GSource.
 *
 * Copyright (c) 2026 The Sluice authors
 */
#ifndef QEMU_MAIN_LOOP_H
#define QEMU_MAIN_LOOP_H

#include "block/aio.h"

/*
 * Create the main AioContext, make the calling thread the main thread and
 * attach the context to GLib's default main context.  Call once, before
 * anything else uses contexts.  Returns false and sets @errp on failure.
 */
bool qemu_init_main_loop(GError **errp);

/* The main AioContext.  Any thread, after qemu_init_main_loop(). */
AioContext *qemu_get_aio_context(void);

/* True in the thread that called qemu_init_main_loop(). */
bool qemu_in_main_thread(void);

/*
 * One iteration of the GLib main loop (which includes the main
 * AioContext).  Main thread only.  Returns true if anything was dispatched.
 */
bool main_loop_wait(bool nonblocking);

#endif /* QEMU_MAIN_LOOP_H */
