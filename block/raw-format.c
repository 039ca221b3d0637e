/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * raw: the format of an image that is nothing but its data.  It passes
 * every request to its "file" child, optionally through a window
 * (offset, size) of that child.
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * Options and messages follow QEMU 7.2: "offset" and "size" are byte
 * counts; the window must lie inside the child, and a given size must be
 * a multiple of 512.  Probing (guessing raw for an unnamed format) is
 * the block layer's business and is not done here.
 */
#include "qemu/osdep.h"

#include "block/aio-wait.h"
#include "block/blkdebug.h"
#include "block/block_int.h"
#include "qemu/coroutine.h"
#include "qemu/keyval.h"

/* A size given by the user must be a whole number of these. */
#define RAW_SIZE_UNIT 512

/* The part of a probed image whose writes are checked. */
#define RAW_PROBE_CHECK_SIZE 512

typedef struct BDRVRawState {
    uint64_t offset;            /* where the window starts in the child */
    uint64_t size;              /* its length, if has_size */
    bool has_size;              /* otherwise it runs to the child's end */
    /*
     * The format was probed: refuse writes that would make block 0 look
     * like another format, or the next open would probe that format.
     */
    bool probed;
} BDRVRawState;

static const char *const raw_option_names[] = {
    "file", "offset", "size", NULL,
};

static int raw_open(BlockDriverState *bs, JsonObject *options, int flags,
                    GError **errp)
{
    BDRVRawState *s = bs->opaque;
    BdrvChild *file;
    unsigned int role;
    int64_t real_size;

    /* Like QEMU, option values are checked before the child is opened. */
    if (!keyval_get_size(options, "offset", 0, &s->offset, errp) ||
        !keyval_get_size(options, "size", 0, &s->size, errp)) {
        return -EINVAL;
    }
    s->has_size = keyval_lookup(options, "size") != NULL &&
                  !JSON_NODE_HOLDS_NULL(keyval_lookup(options, "size"));
    s->probed = flags & BDRV_O_PROBED;

    /* A window makes the child's data differ from ours: not a filter. */
    role = BDRV_CHILD_PRIMARY | (s->offset || s->has_size ?
                                 BDRV_CHILD_DATA : BDRV_CHILD_FILTERED);
    file = bdrv_open_child(bs, options, "file", role, false, errp);
    if (!file) {
        return -EINVAL;
    }

    real_size = bdrv_getlength(file->bs);
    if (real_size < 0) {
        error_setg_errno(errp, -real_size, "Could not get the size of the "
                         "containing file");
        goto fail;
    }
    if (s->offset > (uint64_t)real_size) {
        error_setg(errp, "Offset (%" PRIu64 ") cannot be greater than size "
                   "of the containing file (%" PRId64 ")", s->offset,
                   real_size);
        goto fail;
    }
    if (s->has_size) {
        /* QEMU 7.2's text, double space included. */
        if (s->size > (uint64_t)real_size - s->offset) {
            error_setg(errp, "The sum of offset (%" PRIu64 ") and size (%"
                       PRIu64 ") has to be smaller or equal to the  actual "
                       "size of the containing file (%" PRId64 ")",
                       s->offset, s->size, real_size);
            goto fail;
        }
        if (s->size % RAW_SIZE_UNIT) {
            error_setg(errp, "Specified size is not multiple of %d",
                       RAW_SIZE_UNIT);
            goto fail;
        }
    }
    return 0;

fail:
    /* The core frees a node whose open failed without closing it. */
    bdrv_unref_child(bs, file);
    return -EINVAL;
}

static void raw_refresh_limits(BlockDriverState *bs, GError **errp)
{
    BlockDriverState *child = bs->file->bs;

    BDRVRawState *s = bs->opaque;

    /* Whatever the child's role, our requests become its requests. */
    bs->bl.request_alignment = MAX(bs->bl.request_alignment,
                                   child->bl.request_alignment);
    /* Block 0 of a probed image is checked whole, so it comes whole. */
    if (s->probed) {
        bs->bl.request_alignment = MAX(bs->bl.request_alignment,
                                       RAW_PROBE_CHECK_SIZE);
    }
    bs->bl.max_transfer = child->bl.max_transfer;
    bs->bl.pwrite_zeroes_alignment = child->bl.pwrite_zeroes_alignment;
    bs->bl.pdiscard_alignment = child->bl.pdiscard_alignment;
    bs->bl.max_pwrite_zeroes = child->bl.max_pwrite_zeroes;
}

/*
 * Map [*offset, *offset + bytes) into the child.  A request that leaves
 * a window of fixed size must not touch the child's bytes beyond it.
 */
static int raw_adjust_offset(BDRVRawState *s, int64_t *offset,
                             int64_t bytes)
{
    if (s->has_size &&
        ((uint64_t)*offset > s->size ||
         (uint64_t)bytes > s->size - (uint64_t)*offset)) {
        return -ENOSPC;
    }
    if ((uint64_t)*offset > (uint64_t)BDRV_MAX_LENGTH - s->offset) {
        return -EIO;
    }
    *offset += s->offset;
    return 0;
}

static int coroutine_fn raw_co_preadv(BlockDriverState *bs, int64_t offset,
                                      int64_t bytes, QEMUIOVector *qiov,
                                      BdrvRequestFlags flags)
{
    int ret = raw_adjust_offset(bs->opaque, &offset, bytes);

    if (ret < 0) {
        return ret;
    }
    BLKDBG_EVENT(bs->file, BLKDBG_READ_AIO);
    return bdrv_co_preadv(bs->file, offset, bytes, qiov, flags);
}

/*
 * A write to block 0 of a probed raw image must not make it look like
 * another format (the next open would trust that header).
 */
static int raw_check_probed_write(BDRVRawState *s, int64_t offset,
                                  QEMUIOVector *qiov)
{
    uint8_t head[RAW_PROBE_CHECK_SIZE];
    BlockDriver *drv;

    if (!s->probed || offset >= RAW_PROBE_CHECK_SIZE) {
        return 0;
    }
    /* The alignment set in refresh_limits makes this whole. */
    assert(offset == 0 && qiov->size >= RAW_PROBE_CHECK_SIZE);
    qemu_iovec_to_buf(qiov, 0, head, sizeof(head));
    drv = bdrv_probe_format(head, sizeof(head), NULL);
    if (drv && strcmp(drv->format_name, "raw") != 0) {
        return -EPERM;
    }
    return 0;
}

static int raw_probe(const uint8_t *buf, int buf_size, const char *filename)
{
    /* Anything is raw, but anything else is more likely. */
    return 1;
}

static int coroutine_fn raw_co_pwritev(BlockDriverState *bs, int64_t offset,
                                       int64_t bytes, QEMUIOVector *qiov,
                                       BdrvRequestFlags flags)
{
    int ret = raw_check_probed_write(bs->opaque, offset, qiov);

    if (ret < 0) {
        return ret;
    }
    ret = raw_adjust_offset(bs->opaque, &offset, bytes);
    if (ret < 0) {
        return ret;
    }
    BLKDBG_EVENT(bs->file, BLKDBG_WRITE_AIO);
    return bdrv_co_pwritev(bs->file, offset, bytes, qiov, flags);
}

static int coroutine_fn raw_co_pwrite_zeroes(BlockDriverState *bs,
                                             int64_t offset, int64_t bytes,
                                             BdrvRequestFlags flags)
{
    int ret = raw_adjust_offset(bs->opaque, &offset, bytes);

    if (ret < 0) {
        return ret;
    }
    return bdrv_co_pwrite_zeroes(bs->file, offset, bytes, flags);
}

static int coroutine_fn raw_co_pdiscard(BlockDriverState *bs,
                                        int64_t offset, int64_t bytes)
{
    int ret = raw_adjust_offset(bs->opaque, &offset, bytes);

    if (ret < 0) {
        return ret;
    }
    return bdrv_co_pdiscard(bs->file, offset, bytes);
}

static int64_t coroutine_fn raw_co_getlength(BlockDriverState *bs)
{
    BDRVRawState *s = bs->opaque;
    int64_t len;

    if (s->has_size) {
        return s->size;
    }
    len = bdrv_co_getlength(bs->file->bs);
    if (len < 0) {
        return len;
    }
    /* The child shrank under the window since open. */
    if (s->offset > (uint64_t)len) {
        return -EINVAL;
    }
    return len - s->offset;
}

/* Our status is the child's status of the same bytes. */
static int coroutine_fn raw_co_block_status(BlockDriverState *bs,
                                            int64_t offset, int64_t bytes,
                                            int64_t *pnum, int64_t *map,
                                            BlockDriverState **file)
{
    BDRVRawState *s = bs->opaque;
    int ret;

    ret = bdrv_co_block_status(bs->file->bs, offset + s->offset, bytes,
                               pnum, map, file);
    if (ret < 0) {
        return ret;
    }
    if (*pnum == 0) {
        /* The child ends inside our window. */
        return -EIO;
    }
    /* Our own end of file is the block layer's to report. */
    return ret & ~BDRV_BLOCK_EOF;
}

static int coroutine_fn raw_co_truncate(BlockDriverState *bs,
                                        int64_t offset, bool exact,
                                        PreallocMode prealloc,
                                        BdrvRequestFlags flags,
                                        GError **errp)
{
    BDRVRawState *s = bs->opaque;

    if (s->has_size) {
        error_setg(errp, "Cannot resize fixed-size raw disks");
        return -ENOTSUP;
    }
    if ((uint64_t)offset > (uint64_t)BDRV_MAX_LENGTH - s->offset) {
        error_setg(errp, "Image size too large");
        return -EFBIG;
    }
    /* The window keeps its start; the child grows or shrinks after it. */
    return bdrv_co_truncate(bs->file, offset + s->offset, exact, prealloc,
                            flags, errp);
}

static const BlockOptDesc raw_create_opts[] = {
    { "size", BLOCK_OPT_TYPE_SIZE, "Virtual disk size" },
    { NULL }
};

/* A raw image is its file: create that with every option. */
static int coroutine_fn raw_co_create_opts(BlockDriver *drv,
                                           const char *filename,
                                           JsonObject *opts, GError **errp)
{
    return bdrv_co_create_file(filename, opts, errp);
}

/* A raw image is as big as its data, preallocated or not. */
static BlockMeasureInfo *raw_measure(JsonObject *opts,
                                     BlockDriverState *in_bs,
                                     GError **errp)
{
    BlockMeasureInfo *info;
    uint64_t size;

    if (in_bs) {
        int64_t len = bdrv_getlength(in_bs);

        if (len < 0) {
            error_setg_errno(errp, -len, "Unable to get image virtual_size");
            return NULL;
        }
        size = len;
    } else {
        if (!keyval_get_size(opts, "size", 0, &size, errp)) {
            return NULL;
        }
        size = QEMU_ALIGN_UP(size, BDRV_SECTOR_SIZE);
    }
    info = g_new0(BlockMeasureInfo, 1);
    info->required = size;
    info->fully_allocated = size;
    return info;
}

/* What its child says, as QEMU's raw does. */
static int coroutine_fn raw_co_get_info(BlockDriverState *bs,
                                        BlockDriverInfo *bdi)
{
    return bdrv_co_get_info(bs->file->bs, bdi);
}

static BlockDriver bdrv_raw = {
    .format_name = "raw",
    .instance_size = sizeof(BDRVRawState),
    .bdrv_open = raw_open,
    .bdrv_probe = raw_probe,
    .bdrv_refresh_limits = raw_refresh_limits,
    .bdrv_co_preadv = raw_co_preadv,
    .bdrv_co_pwritev = raw_co_pwritev,
    .bdrv_co_pwrite_zeroes = raw_co_pwrite_zeroes,
    .bdrv_co_pdiscard = raw_co_pdiscard,
    .bdrv_co_getlength = raw_co_getlength,
    .bdrv_co_block_status = raw_co_block_status,
    .bdrv_co_truncate = raw_co_truncate,
    .option_names = raw_option_names,
    .bdrv_co_get_info = raw_co_get_info,
    .create_opts = raw_create_opts,
    .bdrv_co_create_opts = raw_co_create_opts,
    .bdrv_measure = raw_measure,
};

static void __attribute__((constructor)) bdrv_raw_init(void)
{
    bdrv_register(&bdrv_raw);
}
