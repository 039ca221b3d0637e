/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * blkdebug: debug events raised by block drivers, and the breakpoints
 * that tools and tests set on them.
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * A format driver announces interesting moments of its work (an L2
 * table load, a cluster allocation, ...) with BLKDBG_EVENT() on the
 * child it is about to use.  If that child is a blkdebug node, the
 * event may activate error-injection rules for the node's next
 * requests, change the node's rule state, or suspend the request at a
 * breakpoint until a tool resumes it.  On any other node an event costs
 * one pointer comparison.
 *
 * Until block/io.c raises the block layer's own events, blkdebug raises
 * pwritev, pwritev_zero and pwritev_done for the writes it receives, and
 * raw raises flush_to_os and flush_to_disk on its file child when it is
 * flushed.  The pwritev_rmw_* events are not raised yet.
 */
#ifndef BLOCK_BLKDEBUG_H
#define BLOCK_BLKDEBUG_H

#include "block/block_int.h"

/* The events, with QEMU 7.2's names (blkdebug_event_name()). */
typedef enum BlkdebugEvent {
    BLKDBG_L1_UPDATE,
    BLKDBG_L1_GROW_ALLOC_TABLE,
    BLKDBG_L1_GROW_WRITE_TABLE,
    BLKDBG_L1_GROW_ACTIVATE_TABLE,
    BLKDBG_L2_LOAD,
    BLKDBG_L2_UPDATE,
    BLKDBG_L2_UPDATE_COMPRESSED,
    BLKDBG_L2_ALLOC_COW_READ,
    BLKDBG_L2_ALLOC_WRITE,
    BLKDBG_READ_AIO,
    BLKDBG_READ_BACKING_AIO,
    BLKDBG_READ_COMPRESSED,
    BLKDBG_WRITE_AIO,
    BLKDBG_WRITE_COMPRESSED,
    BLKDBG_VMSTATE_LOAD,
    BLKDBG_VMSTATE_SAVE,
    BLKDBG_COW_READ,
    BLKDBG_COW_WRITE,
    BLKDBG_REFTABLE_LOAD,
    BLKDBG_REFTABLE_GROW,
    BLKDBG_REFTABLE_UPDATE,
    BLKDBG_REFBLOCK_LOAD,
    BLKDBG_REFBLOCK_UPDATE,
    BLKDBG_REFBLOCK_UPDATE_PART,
    BLKDBG_REFBLOCK_ALLOC,
    BLKDBG_REFBLOCK_ALLOC_HOOKUP,
    BLKDBG_REFBLOCK_ALLOC_WRITE,
    BLKDBG_REFBLOCK_ALLOC_WRITE_BLOCKS,
    BLKDBG_REFBLOCK_ALLOC_WRITE_TABLE,
    BLKDBG_REFBLOCK_ALLOC_SWITCH_TABLE,
    BLKDBG_CLUSTER_ALLOC,
    BLKDBG_CLUSTER_ALLOC_BYTES,
    BLKDBG_CLUSTER_FREE,
    BLKDBG_FLUSH_TO_OS,
    BLKDBG_FLUSH_TO_DISK,
    BLKDBG_PWRITEV_RMW_HEAD,
    BLKDBG_PWRITEV_RMW_AFTER_HEAD,
    BLKDBG_PWRITEV_RMW_TAIL,
    BLKDBG_PWRITEV_RMW_AFTER_TAIL,
    BLKDBG_PWRITEV,
    BLKDBG_PWRITEV_ZERO,
    BLKDBG_PWRITEV_DONE,
    BLKDBG_EMPTY_IMAGE_PREPARE,
    BLKDBG_L1_SHRINK_WRITE_TABLE,
    BLKDBG_L1_SHRINK_FREE_L2_CLUSTERS,
    BLKDBG_COR_WRITE,
    BLKDBG_CLUSTER_ALLOC_SPACE,
    BLKDBG_NONE,
    BLKDBG__MAX,
} BlkdebugEvent;

/* "l2_load" for BLKDBG_L2_LOAD; NULL if @event is out of range. */
const char *blkdebug_event_name(BlkdebugEvent event);

/* The event named @name, or -1 if there is none.  Any thread. */
int blkdebug_event_lookup(const char *name);

/*
 * Raise @event on @bs.  If @bs is a blkdebug node, its rules for @event
 * run: inject-error rules become the active ones for its next requests,
 * set-state rules change its state, and if a breakpoint is set on
 * @event the calling request is suspended until every breakpoint it hit
 * is resumed (it stays in flight meanwhile, so drains wait for it).
 * On any other node, or NULL, nothing happens.  From a coroutine in
 * @bs's context (a breakpoint yields); outside a coroutine the rules run
 * but breakpoints are left for a later event, since nothing could wait.
 */
void coroutine_fn bdrv_debug_event(BlockDriverState *bs,
                                   BlkdebugEvent event);

/* bdrv_debug_event() on the node of a child edge (NULL: nothing). */
#define BLKDBG_EVENT(child, event)                                        \
    do {                                                                  \
        BdrvChild *blkdbg_child_ = (child);                               \
        if (blkdbg_child_) {                                              \
            bdrv_debug_event(blkdbg_child_->bs, (event));                 \
        }                                                                 \
    } while (0)

/*
 * Breakpoints, for the break, resume, wait_break and remove_break
 * commands of sluice-io.  Each takes the first blkdebug node found from
 * @bs down through "file" children (so the top of a graph will do) and
 * returns -ENOTSUP if there is none.  Main thread or @bs's home thread.
 */

/*
 * Suspend the next request that raises @event (QEMU's name) with tag
 * @tag.  A breakpoint fires once.  Several breakpoints may share a tag.
 * Returns 0, or -ENOENT for an unknown event.
 */
int blkdebug_debug_breakpoint(BlockDriverState *bs, const char *event,
                              const char *tag);

/*
 * Resume the most recently suspended request waiting on @tag.  Returns
 * 0, or -ENOENT if none waits on it.
 */
int blkdebug_debug_resume(BlockDriverState *bs, const char *tag);

/*
 * Delete every breakpoint tagged @tag and resume every request waiting
 * on it.  Returns 0, or -ENOENT if no breakpoint had that tag (requests
 * are resumed all the same).
 */
int blkdebug_debug_remove_breakpoint(BlockDriverState *bs, const char *tag);

/* True if a request is suspended on @tag.  Any thread. */
bool blkdebug_debug_is_suspended(BlockDriverState *bs, const char *tag);

/*
 * blkdebug prints "blkdebug: Suspended request 'TAG'" and
 * "blkdebug: Resuming request 'TAG'" on stdout, as QEMU's does, so
 * iotests see them.  Unit tests that speak TAP switch that off.
 */
void blkdebug_set_quiet(bool quiet);

#endif /* BLOCK_BLKDEBUG_H */
