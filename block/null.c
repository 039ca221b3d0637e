/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * null-co and null-aio: protocol drivers with no storage.  Writes are
 * dropped, reads return zeroes if asked to (read-zeroes) or leave the
 * buffer alone.  Tests and benchmarks use them to measure the block layer
 * itself; latency-ns holds each request in flight for a while.
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * null-co completes each request inside the coroutine that issued it;
 * null-aio completes it from a bottom half (or timer), as a driver
 * waiting for a host completion would.
 */
#include "qemu/osdep.h"

#include "block/block_int.h"
#include "qemu/coroutine.h"
#include "qemu/keyval.h"

#define NULL_DEFAULT_SIZE (1ULL << 30)

typedef struct BDRVNullState {
    int64_t length;
    int64_t latency_ns;
    bool read_zeroes;
    bool aio;                   /* null-aio: complete from the event loop */
} BDRVNullState;

static const char *const null_option_names[] = {
    "size", "latency-ns", "read-zeroes", NULL,
};

static int null_open_common(BlockDriverState *bs, JsonObject *options,
                            bool aio, GError **errp)
{
    BDRVNullState *s = bs->opaque;
    uint64_t size, latency;

    if (!keyval_get_size(options, "size", NULL_DEFAULT_SIZE, &size, errp) ||
        !keyval_get_uint(options, "latency-ns", 0, &latency, errp) ||
        !keyval_get_bool(options, "read-zeroes", false, &s->read_zeroes,
                         errp)) {
        return -EINVAL;
    }
    if (size > BDRV_MAX_LENGTH) {
        error_setg(errp, "Parameter 'size' is too large");
        return -EINVAL;
    }
    if (latency > INT64_MAX) {
        error_setg(errp, "latency-ns is invalid");
        return -EINVAL;
    }
    s->length = size;
    s->latency_ns = latency;
    s->aio = aio;
    return 0;
}

static int null_co_open(BlockDriverState *bs, JsonObject *options,
                        int flags, GError **errp)
{
    return null_open_common(bs, options, false, errp);
}

static int null_aio_open(BlockDriverState *bs, JsonObject *options,
                         int flags, GError **errp)
{
    return null_open_common(bs, options, true, errp);
}

static void null_wake_bh(void *opaque)
{
    aio_co_wake(opaque);
}

/* Wait as the configured device would before completing a request. */
static void coroutine_fn null_delay(BDRVNullState *s)
{
    if (s->latency_ns) {
        qemu_co_sleep_ns(QEMU_CLOCK_REALTIME, s->latency_ns);
    } else if (s->aio) {
        aio_bh_schedule_oneshot(qemu_get_current_aio_context(),
                                null_wake_bh, qemu_coroutine_self());
        qemu_coroutine_yield();
    }
}

static int coroutine_fn null_co_preadv(BlockDriverState *bs, int64_t offset,
                                       int64_t bytes, QEMUIOVector *qiov,
                                       BdrvRequestFlags flags)
{
    BDRVNullState *s = bs->opaque;

    if (s->read_zeroes) {
        qemu_iovec_memset(qiov, 0, 0, bytes);
    }
    null_delay(s);
    return 0;
}

static int coroutine_fn null_co_pwritev(BlockDriverState *bs,
                                        int64_t offset, int64_t bytes,
                                        QEMUIOVector *qiov,
                                        BdrvRequestFlags flags)
{
    null_delay(bs->opaque);
    return 0;
}

static int coroutine_fn null_co_pwrite_zeroes(BlockDriverState *bs,
                                              int64_t offset, int64_t bytes,
                                              BdrvRequestFlags flags)
{
    null_delay(bs->opaque);
    return 0;
}

static int coroutine_fn null_co_flush(BlockDriverState *bs)
{
    null_delay(bs->opaque);
    return 0;
}

static int64_t coroutine_fn null_co_getlength(BlockDriverState *bs)
{
    BDRVNullState *s = bs->opaque;

    return s->length;
}

static int coroutine_fn null_co_block_status(BlockDriverState *bs,
                                             int64_t offset, int64_t bytes,
                                             int64_t *pnum, int64_t *map,
                                             BlockDriverState **file)
{
    BDRVNullState *s = bs->opaque;

    *pnum = bytes;
    *map = offset;
    *file = bs;
    return BDRV_BLOCK_OFFSET_VALID | (s->read_zeroes ? BDRV_BLOCK_ZERO : 0);
}

static BlockDriver bdrv_null_co = {
    .format_name = "null-co",
    .instance_size = sizeof(BDRVNullState),
    .is_protocol = true,
    .bdrv_open = null_co_open,
    .bdrv_co_preadv = null_co_preadv,
    .bdrv_co_pwritev = null_co_pwritev,
    .bdrv_co_pwrite_zeroes = null_co_pwrite_zeroes,
    .bdrv_co_flush_to_disk = null_co_flush,
    .bdrv_co_getlength = null_co_getlength,
    .bdrv_co_block_status = null_co_block_status,
    .option_names = null_option_names,
};

static BlockDriver bdrv_null_aio = {
    .format_name = "null-aio",
    .instance_size = sizeof(BDRVNullState),
    .is_protocol = true,
    .bdrv_open = null_aio_open,
    .bdrv_co_preadv = null_co_preadv,
    .bdrv_co_pwritev = null_co_pwritev,
    .bdrv_co_pwrite_zeroes = null_co_pwrite_zeroes,
    .bdrv_co_flush_to_disk = null_co_flush,
    .bdrv_co_getlength = null_co_getlength,
    .bdrv_co_block_status = null_co_block_status,
    .option_names = null_option_names,
};

static void __attribute__((constructor)) bdrv_null_init(void)
{
    bdrv_register(&bdrv_null_co);
    bdrv_register(&bdrv_null_aio);
}
