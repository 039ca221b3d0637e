/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * IOThread: a thread that runs aio_poll() on an AioContext of its own.
 *
 * Copyright (c) 2026 The Sluice authors
 */
#ifndef QEMU_IOTHREAD_H
#define QEMU_IOTHREAD_H

#include "block/aio.h"

typedef struct IOThread IOThread;

/*
 * Start a thread named @id with a new AioContext and return once it runs.
 * Returns NULL and sets @errp if the context or thread cannot be created.
 * Main thread.
 */
IOThread *iothread_create(const char *id, GError **errp);

/* The thread's context.  Any thread. */
AioContext *iothread_get_aio_context(IOThread *iothread);

/* The id given at creation. */
const char *iothread_get_id(IOThread *iothread);

/*
 * Ask the thread to stop after the current aio_poll() iteration, join it
 * and free it with its context reference.  Work still scheduled in the
 * context is not run.  Main thread; never from the iothread itself.
 */
void iothread_destroy(IOThread *iothread);

#endif /* QEMU_IOTHREAD_H */
