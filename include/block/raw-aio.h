/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Host I/O engines: linux-aio (libaio) and io_uring (liburing).
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * Each engine instance is bound to one AioContext at a time: it submits
 * from coroutines of that context and completes them there.  Usable on its
 * own, with any fd.  Errors from the kernel (EBADF, EINVAL, ...) are
 * returned to the caller; nothing asserts on them.
 */
#ifndef BLOCK_RAW_AIO_H
#define BLOCK_RAW_AIO_H

#include "block/aio.h"
#include "qemu/iov.h"

/* Request types for laio_co_submit() / luring_co_submit(). */
#define QEMU_AIO_READ   0x0001
#define QEMU_AIO_WRITE  0x0002
#define QEMU_AIO_FLUSH  0x0008  /* fdatasync; io_uring only */

/* ---- linux-aio ---- */

/*
 * Create an io_context.  Returns NULL and sets @errp if the kernel refuses
 * (e.g. fs.aio-max-nr exhausted); the caller then uses the thread pool.
 */
LinuxAioState *laio_init(GError **errp);

/* Free @s.  It must be detached and have no request in flight. */
void laio_cleanup(LinuxAioState *s);

/* Bind @s to @ctx: completions are handled there.  @ctx's home thread. */
void laio_attach_aio_context(LinuxAioState *s, AioContext *ctx);
void laio_detach_aio_context(LinuxAioState *s, AioContext *ctx);

/*
 * Read into or write from @qiov at @offset of @fd and yield until done.
 * A transfer the kernel completes short is continued for the rest.
 * Returns the number of bytes transferred (less than qiov->size only at
 * end of file) or a negative errno.  Coroutine in @s's context.
 */
int coroutine_fn laio_co_submit(LinuxAioState *s, int fd, uint64_t offset,
                                QEMUIOVector *qiov, int type);

/*
 * Batch submissions: between plug and the matching unplug requests are
 * queued and sent with one io_submit() (or earlier when the queue fills).
 * Nestable.  @s's context.
 */
void laio_io_plug(LinuxAioState *s);
void laio_io_unplug(LinuxAioState *s);

/* ---- io_uring ---- */

/* Create a ring.  Returns NULL and sets @errp if the kernel refuses. */
LuringState *luring_init(GError **errp);
void luring_cleanup(LuringState *s);
void luring_attach_aio_context(LuringState *s, AioContext *ctx);
void luring_detach_aio_context(LuringState *s, AioContext *ctx);

/*
 * As laio_co_submit(); also supports QEMU_AIO_FLUSH (returns 0 or a
 * negative errno).
 */
int coroutine_fn luring_co_submit(LuringState *s, int fd, uint64_t offset,
                                  QEMUIOVector *qiov, int type);
void luring_io_plug(LuringState *s);
void luring_io_unplug(LuringState *s);

/* ---- For engine implementations ---- */

/*
 * One kernel round trip of an engine for @iov at @offset: returns the
 * bytes transferred (possibly fewer than asked) or a negative errno.
 */
typedef int coroutine_fn RawAioTransferFunc(void *engine, int fd,
                                            uint64_t offset,
                                            struct iovec *iov, int niov,
                                            int type);

/*
 * Transfer all of @qiov with @once, continuing short transfers until done,
 * end of file (a read returns the short count) or an error.  Validates
 * @type (read or write) and the size.  Coroutine in the engine's context.
 */
int coroutine_fn raw_aio_co_transfer(void *engine, RawAioTransferFunc *once,
                                     int fd, uint64_t offset,
                                     QEMUIOVector *qiov, int type);

#endif /* BLOCK_RAW_AIO_H */
