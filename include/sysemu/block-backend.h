/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * BlockBackend: the handle through which users of the block layer (tools,
 * exports, jobs) issue I/O to a node.
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * A BlockBackend lives in one AioContext and registers a drain handler
 * there: while the context is drained, new requests wait in the backend
 * and do not count as in flight; at the end of the section they are
 * resubmitted with no outside kick.
 */
#ifndef SYSEMU_BLOCK_BACKEND_H
#define SYSEMU_BLOCK_BACKEND_H

#include "block/block.h"

typedef struct BlockBackend BlockBackend;

/*
 * A backend with no node yet, in @ctx, that will take @perm on its root
 * node and share @shared_perm.  Main thread.
 */
BlockBackend *blk_new(AioContext *ctx, uint64_t perm, uint64_t shared_perm);

/*
 * Open a node of driver @drv with @options and put it under a new backend
 * in the main context.  The backend reads, writes with BDRV_O_RDWR and
 * resizes with BDRV_O_RESIZE, and shares everything.  Returns NULL with
 * @errp set on failure.  Main thread.
 */
BlockBackend *blk_new_open_driver(BlockDriver *drv, const char *node_name,
                                  JsonObject *options, int flags,
                                  GError **errp);

/*
 * Open an image as bdrv_open() does (@filename may be NULL when @options
 * name everything; @options is borrowed) and put a backend on it.  The
 * backend takes CONSISTENT_READ, WRITE with BDRV_O_RDWR and RESIZE with
 * BDRV_O_RESIZE; it shares everything, or only CONSISTENT_READ and
 * WRITE_UNCHANGED with BDRV_O_NO_SHARE.  NULL with @errp set on error.
 * Main thread.
 */
BlockBackend *blk_new_open(const char *filename, JsonObject *options,
                           int flags, GError **errp);

/*
 * With the write cache off (cache=writethrough, directsync), every write
 * is made stable before it completes (FUA).  On by default.  Main thread.
 */
void blk_set_enable_write_cache(BlockBackend *blk, bool wce);
bool blk_enable_write_cache(BlockBackend *blk);

/*
 * Change the permissions the backend holds and shares; false with @errp
 * set (nothing changed) on a conflict.  Main thread.
 */
bool blk_set_perm(BlockBackend *blk, uint64_t perm, uint64_t shared_perm,
                  GError **errp);
void blk_get_perm(BlockBackend *blk, uint64_t *perm, uint64_t *shared_perm);

/* Drop a reference; the last one removes the node and frees the backend. */
void blk_unref(BlockBackend *blk);

/*
 * Make @bs the backend's root node (taking a reference).  @bs must be in
 * the backend's context.  Returns false with @errp set.  Main thread.
 */
bool blk_insert_bs(BlockBackend *blk, BlockDriverState *bs, GError **errp);

/* Detach the root node, drained.  Main thread. */
void blk_remove_bs(BlockBackend *blk);

BlockDriverState *blk_bs(BlockBackend *blk);
AioContext *blk_get_aio_context(BlockBackend *blk);

/* Requests that entered the backend and have not completed.  Any thread. */
unsigned int blk_in_flight(BlockBackend *blk);

/* Requests waiting in the backend because its context is drained. */
unsigned int blk_queued_requests(BlockBackend *blk);

/*
 * I/O from coroutines.  Requests run in the backend's context: a
 * coroutine calling from another context (say, racing with a context
 * move) is moved there first and returns there.  Byte ranges beyond the
 * node's length fail with -EIO, no node with -ENOMEDIUM.
 */
int coroutine_fn blk_co_preadv(BlockBackend *blk, int64_t offset,
                               int64_t bytes, QEMUIOVector *qiov,
                               BdrvRequestFlags flags);
int coroutine_fn blk_co_pwritev(BlockBackend *blk, int64_t offset,
                                int64_t bytes, QEMUIOVector *qiov,
                                BdrvRequestFlags flags);
int coroutine_fn blk_co_pwrite_zeroes(BlockBackend *blk, int64_t offset,
                                      int64_t bytes, BdrvRequestFlags flags);
int coroutine_fn blk_co_pdiscard(BlockBackend *blk, int64_t offset,
                                 int64_t bytes);
int coroutine_fn blk_co_flush(BlockBackend *blk);
int64_t coroutine_fn blk_co_getlength(BlockBackend *blk);

/*
 * Resize the node (the backend must hold BLK_PERM_RESIZE); see
 * bdrv_co_truncate().  Returns 0 or a negative errno with @errp set.
 */
int coroutine_fn blk_co_truncate(BlockBackend *blk, int64_t offset,
                                 bool exact, PreallocMode prealloc,
                                 BdrvRequestFlags flags, GError **errp);

/* bdrv_co_block_status() of the root node, through the drain gate. */
int coroutine_fn blk_co_block_status(BlockBackend *blk, int64_t offset,
                                     int64_t bytes, int64_t *pnum,
                                     int64_t *map, BlockDriverState **file);

/*
 * Synchronous forms for the tools and tests: from a coroutine they call
 * the coroutine form; otherwise they run one in the backend's context and
 * wait (AIO_WAIT_WHILE).  Main thread or the backend's home thread.
 * Return 0 (or the length) or a negative errno.
 */
int blk_pread(BlockBackend *blk, int64_t offset, int64_t bytes, void *buf,
              BdrvRequestFlags flags);
int blk_pwrite(BlockBackend *blk, int64_t offset, int64_t bytes,
               const void *buf, BdrvRequestFlags flags);
int blk_pwrite_zeroes(BlockBackend *blk, int64_t offset, int64_t bytes,
                      BdrvRequestFlags flags);
int blk_pdiscard(BlockBackend *blk, int64_t offset, int64_t bytes);
int blk_flush(BlockBackend *blk);
int64_t blk_getlength(BlockBackend *blk);
int blk_truncate(BlockBackend *blk, int64_t offset, bool exact,
                 PreallocMode prealloc, BdrvRequestFlags flags,
                 GError **errp);
int blk_block_status(BlockBackend *blk, int64_t offset, int64_t bytes,
                     int64_t *pnum, int64_t *map, BlockDriverState **file);

#endif /* SYSEMU_BLOCK_BACKEND_H */
