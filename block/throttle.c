/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * throttle: a filter that applies a throttle group's limits to the
 * requests passing through it to its "file" child.
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * Options follow QEMU 7.2: "throttle-group" names a throttle-group
 * object (--object throttle-group,id=...), and the limits live on that
 * object, so several filter nodes share them.  The node is one member
 * of the group; the member's drain handler, not this file, is what lets
 * a drain through (block/throttle-groups.c).
 */
#include "qemu/osdep.h"

#include "block/block_int.h"
#include "block/throttle-groups.h"
#include "qemu/keyval.h"

typedef struct BDRVThrottleState {
    ThrottleGroupMember tgm;
} BDRVThrottleState;

static const char *const throttle_option_names[] = {
    "file", "throttle-group", NULL,
};

/* The group the options name, with QEMU's messages. */
static ThrottleGroup *throttle_parse_group(JsonObject *options,
                                           GError **errp)
{
    JsonNode *node = keyval_lookup(options, "throttle-group");
    g_autofree char *name = NULL;
    ThrottleGroup *tg;

    /* QEMU only sees a scalar here; anything else is no group at all. */
    if (!node || JSON_NODE_HOLDS_NULL(node) ||
        JSON_NODE_HOLDS_OBJECT(node) || JSON_NODE_HOLDS_ARRAY(node)) {
        error_setg(errp, "Please specify a throttle group");
        return NULL;
    }
    if (!keyval_get_str(options, "throttle-group", NULL, &name, errp)) {
        return NULL;
    }
    tg = throttle_group_find(name);
    if (!tg) {
        error_setg(errp, "Throttle group '%s' does not exist", name);
        return NULL;
    }
    return tg;
}

static int throttle_open(BlockDriverState *bs, JsonObject *options,
                         int flags, GError **errp)
{
    BDRVThrottleState *s = bs->opaque;
    ThrottleGroup *tg;
    BdrvChild *file;

    /* QEMU opens the child first: its errors win. */
    file = bdrv_open_child(bs, options, "file",
                           BDRV_CHILD_FILTERED | BDRV_CHILD_PRIMARY, false,
                           errp);
    if (!file) {
        return -EINVAL;
    }
    tg = throttle_parse_group(options, errp);
    if (!tg) {
        /* The core frees a node whose open failed without closing it. */
        bdrv_unref_child(bs, file);
        return -EINVAL;
    }
    throttle_group_member_init(&s->tgm, bdrv_get_aio_context(bs));
    throttle_group_join(&s->tgm, tg);
    return 0;
}

static void throttle_close(BlockDriverState *bs)
{
    BDRVThrottleState *s = bs->opaque;

    throttle_group_member_destroy(&s->tgm);
}

static void throttle_refresh_limits(BlockDriverState *bs, GError **errp)
{
    BlockDriverState *child = bs->file->bs;

    /* A filter's requests are its child's requests. */
    bs->bl = child->bl;
}

static int coroutine_fn throttle_co_preadv(BlockDriverState *bs,
                                           int64_t offset, int64_t bytes,
                                           QEMUIOVector *qiov,
                                           BdrvRequestFlags flags)
{
    BDRVThrottleState *s = bs->opaque;

    throttle_group_co_io_limits_intercept(&s->tgm, bytes, false);
    return bdrv_co_preadv(bs->file, offset, bytes, qiov, flags);
}

static int coroutine_fn throttle_co_pwritev(BlockDriverState *bs,
                                            int64_t offset, int64_t bytes,
                                            QEMUIOVector *qiov,
                                            BdrvRequestFlags flags)
{
    BDRVThrottleState *s = bs->opaque;

    throttle_group_co_io_limits_intercept(&s->tgm, bytes, true);
    return bdrv_co_pwritev(bs->file, offset, bytes, qiov, flags);
}

/* Zeroes and discards cost the device as writes of their size do. */
static int coroutine_fn throttle_co_pwrite_zeroes(BlockDriverState *bs,
                                                  int64_t offset,
                                                  int64_t bytes,
                                                  BdrvRequestFlags flags)
{
    BDRVThrottleState *s = bs->opaque;

    throttle_group_co_io_limits_intercept(&s->tgm, bytes, true);
    return bdrv_co_pwrite_zeroes(bs->file, offset, bytes, flags);
}

static int coroutine_fn throttle_co_pdiscard(BlockDriverState *bs,
                                             int64_t offset, int64_t bytes)
{
    BDRVThrottleState *s = bs->opaque;

    throttle_group_co_io_limits_intercept(&s->tgm, bytes, true);
    return bdrv_co_pdiscard(bs->file, offset, bytes);
}

static int64_t coroutine_fn throttle_co_getlength(BlockDriverState *bs)
{
    return bdrv_co_getlength(bs->file->bs);
}

static int coroutine_fn throttle_co_block_status(BlockDriverState *bs,
                                                 int64_t offset,
                                                 int64_t bytes,
                                                 int64_t *pnum,
                                                 int64_t *map,
                                                 BlockDriverState **file)
{
    int ret = bdrv_co_block_status(bs->file->bs, offset, bytes, pnum, map,
                                   file);

    /* Our own end of file is the block layer's to report. */
    return ret < 0 ? ret : ret & ~BDRV_BLOCK_EOF;
}

static int coroutine_fn throttle_co_truncate(BlockDriverState *bs,
                                             int64_t offset, bool exact,
                                             PreallocMode prealloc,
                                             BdrvRequestFlags flags,
                                             GError **errp)
{
    return bdrv_co_truncate(bs->file, offset, exact, prealloc, flags, errp);
}

static void throttle_attach_aio_context(BlockDriverState *bs,
                                        AioContext *new_ctx)
{
    BDRVThrottleState *s = bs->opaque;

    throttle_group_member_set_aio_context(&s->tgm, new_ctx);
}

/* A reopen may move the node to another group; it runs drained. */
static int throttle_reopen_prepare(BlockDriverState *bs, JsonObject *options,
                                   int flags, void **opaque, GError **errp)
{
    ThrottleGroup *tg = throttle_parse_group(options, errp);

    if (!tg) {
        return -EINVAL;
    }
    *opaque = tg;
    return 0;
}

static void throttle_reopen_commit(BlockDriverState *bs, void *opaque)
{
    BDRVThrottleState *s = bs->opaque;
    ThrottleGroup *tg = opaque;

    if (throttle_group_member_get_group(&s->tgm) != tg) {
        throttle_group_join(&s->tgm, tg);
    }
}

static void throttle_reopen_abort(BlockDriverState *bs, void *opaque)
{
}

static BlockDriver bdrv_throttle = {
    .format_name = "throttle",
    .instance_size = sizeof(BDRVThrottleState),
    .bdrv_open = throttle_open,
    .bdrv_close = throttle_close,
    .bdrv_refresh_limits = throttle_refresh_limits,
    .bdrv_co_preadv = throttle_co_preadv,
    .bdrv_co_pwritev = throttle_co_pwritev,
    .bdrv_co_pwrite_zeroes = throttle_co_pwrite_zeroes,
    .bdrv_co_pdiscard = throttle_co_pdiscard,
    .bdrv_co_getlength = throttle_co_getlength,
    .bdrv_co_block_status = throttle_co_block_status,
    .bdrv_co_truncate = throttle_co_truncate,
    .bdrv_attach_aio_context = throttle_attach_aio_context,
    .bdrv_reopen_prepare = throttle_reopen_prepare,
    .bdrv_reopen_commit = throttle_reopen_commit,
    .bdrv_reopen_abort = throttle_reopen_abort,
    .option_names = throttle_option_names,
};

static void __attribute__((constructor)) bdrv_throttle_init(void)
{
    bdrv_register(&bdrv_throttle);
}
