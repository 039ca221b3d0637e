/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Graph operations built on the core's edges: edges for non-node parents
 * (block jobs), replacing a node in all its parents, backing chain
 * lookups and read-only switches of a node with its protocol.
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * Everything here runs in the main thread, outside coroutines, and
 * drains what it changes the way the core's own graph changes do.
 */
#ifndef BLOCK_GRAPH_OPS_H
#define BLOCK_GRAPH_OPS_H

#include "block/block_int.h"

/*
 * Attach a non-node parent (@klass->parent_is_bds is false; @opaque is
 * the parent) to @child_bs as @child_name with @role, holding @perm and
 * sharing @shared_perm.  Takes a reference to @child_bs.  Returns the
 * edge, or NULL with @errp set on a permission conflict (nothing
 * changed).
 */
BdrvChild *bdrv_root_attach_child(BlockDriverState *child_bs,
                                  const char *child_name,
                                  const BdrvChildClass *klass,
                                  unsigned int role, uint64_t perm,
                                  uint64_t shared_perm, void *opaque,
                                  GError **errp);

/* Detach an edge made by bdrv_root_attach_child() and drop its reference. */
void bdrv_root_unref_child(BdrvChild *child);

/* Return true to leave the parent edge @c where it is. */
typedef bool BdrvChildSkipFunc(BdrvChild *c, void *opaque);

/*
 * Move every parent edge of @from (but those @skip, if not NULL, keeps,
 * and those whose parent is @to itself) to @to: what inserting or
 * dropping a filter above a node, or a job's final switch, does.  Edge by
 * edge, each drained and permission-checked; on a failure the edges moved
 * so far go back and @errp says why.
 */
bool bdrv_replace_node(BlockDriverState *from, BlockDriverState *to,
                       BdrvChildSkipFunc *skip, void *opaque,
                       GError **errp);

/* The backing child's node of @bs, or NULL. */
BlockDriverState *bdrv_backing_bs(BlockDriverState *bs);

/* True if @base is @top or below it in its backing chain. */
bool bdrv_chain_contains(BlockDriverState *top, BlockDriverState *base);

/*
 * The node in @active's backing chain (@active included) whose backing
 * file is @bs, or NULL.
 */
BlockDriverState *bdrv_find_overlay(BlockDriverState *active,
                                    BlockDriverState *bs);

/*
 * The node below @bs in its backing chain whose file name is
 * @backing_file, compared as written and, for relative names, relative
 * to the directory of the overlay's image (qemu-img commit -b and
 * block-stream's "base").  NULL if none.
 */
BlockDriverState *bdrv_find_backing_image(BlockDriverState *bs,
                                          const char *backing_file);

/*
 * Reopen @bs read-only or read-write, with its "file" child (and that
 * child's, recursively) in the order permissions need: children first
 * to become writable, parents first to become read-only.  The driver
 * options stay as they are.  All or nothing per node; false with @errp
 * set.  A no-op for a node already in that state.
 */
bool bdrv_reopen_set_read_only(BlockDriverState *bs, bool read_only,
                               GError **errp);

#endif /* BLOCK_GRAPH_OPS_H */
