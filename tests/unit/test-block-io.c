/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The request path: alignment with read-modify-write, splitting at
 * max_transfer, serialisation of overlapping read-modify-writes, write
 * zeroes with and without driver support, bounds, read-only nodes, and
 * write errors reported by the next flush.
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * A memory-backed driver defined here checks that every request it gets
 * is aligned and no longer than its max_transfer, and yields in each one
 * so that concurrent requests really interleave.
 */
#include "qemu/osdep.h"

#include "block/aio-wait.h"
#include "block/block_int.h"
#include "qemu/coroutine.h"
#include "qemu/keyval.h"
#include "qemu/main-loop.h"
#include "sysemu/block-backend.h"

#define IMG_SIZE (256 * 1024)

typedef struct MemState {
    uint8_t *data;
    int64_t size;
    uint64_t align;
    uint64_t max_transfer;
    bool zeroes;                /* has its own write-zeroes */
    int calls;                  /* read/write calls */
    int zero_calls;
    int fail_writes;            /* fail this many writes with -EIO */
} MemState;

static const char *const mem_options[] = {
    "size", "align", "max-transfer", "zeroes", NULL,
};

static int mem_open(BlockDriverState *bs, JsonObject *options, int flags,
                    GError **errp)
{
    MemState *s = bs->opaque;
    uint64_t size;

    if (!keyval_get_size(options, "size", IMG_SIZE, &size, errp) ||
        !keyval_get_size(options, "align", 1, &s->align, errp) ||
        !keyval_get_size(options, "max-transfer", 0, &s->max_transfer,
                         errp) ||
        !keyval_get_bool(options, "zeroes", false, &s->zeroes, errp)) {
        return -EINVAL;
    }
    s->size = size;
    s->data = g_malloc0(size);
    return 0;
}

static void mem_close(BlockDriverState *bs)
{
    MemState *s = bs->opaque;

    g_free(s->data);
}

static void mem_refresh_limits(BlockDriverState *bs, GError **errp)
{
    MemState *s = bs->opaque;

    bs->bl.request_alignment = s->align;
    bs->bl.max_transfer = s->max_transfer;
}

static void mem_wake_bh(void *opaque)
{
    aio_co_wake(opaque);
}

/* Let other requests run in the middle of this one. */
static void coroutine_fn mem_yield(void)
{
    aio_bh_schedule_oneshot(qemu_get_current_aio_context(), mem_wake_bh,
                            qemu_coroutine_self());
    qemu_coroutine_yield();
}

static void mem_check(MemState *s, int64_t offset, int64_t bytes)
{
    g_assert_cmpint(offset % s->align, ==, 0);
    g_assert_cmpint(bytes % s->align, ==, 0);
    g_assert_cmpint(offset + bytes, <=, s->size);
    if (s->max_transfer) {
        g_assert_cmpint(bytes, <=, s->max_transfer);
    }
}

static int coroutine_fn mem_preadv(BlockDriverState *bs, int64_t offset,
                                   int64_t bytes, QEMUIOVector *qiov,
                                   BdrvRequestFlags flags)
{
    MemState *s = bs->opaque;

    mem_check(s, offset, bytes);
    s->calls++;
    mem_yield();
    qemu_iovec_from_buf(qiov, 0, s->data + offset, bytes);
    return 0;
}

static int coroutine_fn mem_pwritev(BlockDriverState *bs, int64_t offset,
                                    int64_t bytes, QEMUIOVector *qiov,
                                    BdrvRequestFlags flags)
{
    MemState *s = bs->opaque;

    mem_check(s, offset, bytes);
    s->calls++;
    mem_yield();
    if (s->fail_writes > 0) {
        s->fail_writes--;
        return -EIO;
    }
    qemu_iovec_to_buf(qiov, 0, s->data + offset, bytes);
    return 0;
}

static int coroutine_fn mem_pwrite_zeroes(BlockDriverState *bs,
                                          int64_t offset, int64_t bytes,
                                          BdrvRequestFlags flags)
{
    MemState *s = bs->opaque;

    if (!s->zeroes) {
        return -ENOTSUP;
    }
    mem_check(s, offset, bytes);
    s->zero_calls++;
    memset(s->data + offset, 0, bytes);
    return 0;
}

static int coroutine_fn mem_truncate(BlockDriverState *bs, int64_t offset,
                                     bool exact, PreallocMode prealloc,
                                     BdrvRequestFlags flags, GError **errp)
{
    MemState *s = bs->opaque;

    s->data = g_realloc(s->data, offset);
    if (offset > s->size) {
        memset(s->data + s->size, 0, offset - s->size);
    }
    s->size = offset;
    return 0;
}

static int64_t coroutine_fn mem_getlength(BlockDriverState *bs)
{
    MemState *s = bs->opaque;

    return s->size;
}

static BlockDriver bdrv_test_mem = {
    .format_name = "test-mem",
    .instance_size = sizeof(MemState),
    .is_protocol = true,
    .bdrv_open = mem_open,
    .bdrv_close = mem_close,
    .bdrv_refresh_limits = mem_refresh_limits,
    .bdrv_co_preadv = mem_preadv,
    .bdrv_co_pwritev = mem_pwritev,
    .bdrv_co_pwrite_zeroes = mem_pwrite_zeroes,
    .bdrv_co_getlength = mem_getlength,
    .bdrv_co_truncate = mem_truncate,
    .option_names = mem_options,
};

static BlockBackend *open_mem(const char *align, const char *max_transfer,
                              bool zeroes, int flags)
{
    g_autoptr(JsonObject) opts = json_object_new();
    g_autoptr(GError) err = NULL;
    BlockBackend *blk;

    json_object_set_string_member(opts, "align", align);
    json_object_set_string_member(opts, "max-transfer", max_transfer);
    json_object_set_boolean_member(opts, "zeroes", zeroes);
    blk = blk_new_open_driver(&bdrv_test_mem, NULL, opts, flags, &err);
    g_assert_no_error(err);
    return blk;
}

static MemState *mem_state(BlockBackend *blk)
{
    return blk_bs(blk)->opaque;
}

static void fill_pattern(uint8_t *buf, size_t len, unsigned int seed)
{
    size_t i;

    for (i = 0; i < len; i++) {
        buf[i] = (uint8_t)(i * 7 + seed * 13 + (i >> 8));
    }
}

static void test_unaligned_read(void)
{
    BlockBackend *blk = open_mem("512", "0", false, BDRV_O_RDWR);
    MemState *s = mem_state(blk);
    uint8_t buf[3000];
    int i;

    fill_pattern(s->data, IMG_SIZE, 1);
    for (i = 0; i < 200; i++) {
        int64_t off = g_test_rand_int_range(0, IMG_SIZE - sizeof(buf));
        int64_t len = g_test_rand_int_range(1, sizeof(buf));

        g_assert_cmpint(blk_pread(blk, off, len, buf, 0), ==, 0);
        g_assert_cmpmem(buf, len, s->data + off, len);
    }
    blk_unref(blk);
}

static void test_unaligned_write_rmw(void)
{
    BlockBackend *blk = open_mem("4096", "0", false, BDRV_O_RDWR);
    MemState *s = mem_state(blk);
    g_autofree uint8_t *ref = g_malloc0(IMG_SIZE);
    uint8_t buf[10000];
    int i;

    for (i = 0; i < 300; i++) {
        int64_t off = g_test_rand_int_range(0, IMG_SIZE - sizeof(buf));
        int64_t len = g_test_rand_int_range(1, sizeof(buf));

        fill_pattern(buf, len, i);
        g_assert_cmpint(blk_pwrite(blk, off, len, buf, 0), ==, 0);
        memcpy(ref + off, buf, len);
    }
    /* The driver asserted alignment of every call; the data must match. */
    g_assert_cmpmem(s->data, IMG_SIZE, ref, IMG_SIZE);
    blk_unref(blk);
}

static void test_split_max_transfer(void)
{
    BlockBackend *blk = open_mem("512", "4096", false, BDRV_O_RDWR);
    MemState *s = mem_state(blk);
    g_autofree uint8_t *buf = g_malloc(65536);
    g_autofree uint8_t *back = g_malloc(65536);

    fill_pattern(buf, 65536, 3);
    s->calls = 0;
    g_assert_cmpint(blk_pwrite(blk, 8192, 65536, buf, 0), ==, 0);
    g_assert_cmpint(s->calls, ==, 16);
    s->calls = 0;
    g_assert_cmpint(blk_pread(blk, 8192, 65536, back, 0), ==, 0);
    g_assert_cmpint(s->calls, ==, 16);
    g_assert_cmpmem(buf, 65536, back, 65536);
    blk_unref(blk);
}

static void test_write_zeroes(void)
{
    BlockBackend *native = open_mem("512", "0", true, BDRV_O_RDWR);
    BlockBackend *fallback = open_mem("512", "0", false, BDRV_O_RDWR);
    BlockBackend *blks[] = { native, fallback };
    uint8_t buf[4096];
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(blks); i++) {
        MemState *s = mem_state(blks[i]);

        memset(s->data, 0xff, IMG_SIZE);
        /* Unaligned at both ends, with an aligned middle. */
        g_assert_cmpint(blk_pwrite_zeroes(blks[i], 100, 3000, 0), ==, 0);
        g_assert_cmpint(blk_pread(blks[i], 0, sizeof(buf), buf, 0), ==, 0);
        g_assert_cmpint(buf[99], ==, 0xff);
        g_assert_true(buf[100] == 0 && buf[1500] == 0 && buf[3099] == 0);
        g_assert_cmpint(buf[3100], ==, 0xff);
    }
    g_assert_cmpint(mem_state(native)->zero_calls, ==, 1);

    /* No cheap way to zero: NO_FALLBACK refuses instead of writing. */
    g_assert_cmpint(blk_pwrite_zeroes(fallback, 0, 4096,
                                      BDRV_REQ_NO_FALLBACK), ==, -ENOTSUP);
    /* ...which is no write error: the next flush succeeds. */
    g_assert_cmpint(blk_flush(fallback), ==, 0);
    g_assert_cmpint(blk_pwrite_zeroes(native, 0, 4096,
                                      BDRV_REQ_NO_FALLBACK), ==, 0);
    blk_unref(native);
    blk_unref(fallback);
}

typedef struct ConcWrite {
    BlockBackend *blk;
    int64_t offset;
    int64_t bytes;
    uint8_t fill;
    bool done;
} ConcWrite;

static void coroutine_fn conc_write_entry(void *opaque)
{
    ConcWrite *w = opaque;
    g_autofree uint8_t *buf = g_malloc(w->bytes);
    QEMUIOVector qiov;

    memset(buf, w->fill, w->bytes);
    qemu_iovec_init_buf(&qiov, buf, w->bytes);
    g_assert_cmpint(blk_co_pwritev(w->blk, w->offset, w->bytes, &qiov, 0),
                    ==, 0);
    w->done = true;
}

static void test_rmw_serialisation(void)
{
    BlockBackend *blk = open_mem("4096", "0", false, BDRV_O_RDWR);
    MemState *s = mem_state(blk);
    /* Two writes sharing the block [4096, 8192), not the bytes. */
    ConcWrite a = { .blk = blk, .offset = 1000, .bytes = 4000, .fill = 0xa };
    ConcWrite b = { .blk = blk, .offset = 6000, .bytes = 3000, .fill = 0xb };
    int64_t i;

    qemu_coroutine_enter(qemu_coroutine_create(conc_write_entry, &a));
    qemu_coroutine_enter(qemu_coroutine_create(conc_write_entry, &b));
    AIO_WAIT_WHILE(qemu_get_aio_context(), !a.done || !b.done);

    /* Without serialisation one read-modify-write undoes the other. */
    for (i = 0; i < 12288; i++) {
        uint8_t expect = 0;

        if (i >= 1000 && i < 5000) {
            expect = 0xa;
        } else if (i >= 6000 && i < 9000) {
            expect = 0xb;
        }
        g_assert_cmpint(s->data[i], ==, expect);
    }
    blk_unref(blk);
}

static void test_bounds_and_read_only(void)
{
    BlockBackend *ro = open_mem("512", "0", false, 0);
    uint8_t buf[512] = { 0 };

    g_assert_cmpint(blk_pwrite(ro, 0, 512, buf, 0), ==, -EPERM);
    g_assert_cmpint(blk_pwrite_zeroes(ro, 0, 512, 0), ==, -EPERM);
    g_assert_cmpint(blk_pdiscard(ro, 0, 512), ==, -EPERM);
    g_assert_cmpint(blk_pread(ro, -1, 512, buf, 0), ==, -EIO);
    g_assert_cmpint(blk_pread(ro, IMG_SIZE, 1, buf, 0), ==, -EIO);
    g_assert_cmpint(blk_pread(ro, IMG_SIZE - 512, 512, buf, 0), ==, 0);
    g_assert_cmpint(blk_pread(ro, IMG_SIZE, 0, buf, 0), ==, 0);
    blk_unref(ro);
}

static void test_flush_reports_write_error(void)
{
    BlockBackend *blk = open_mem("512", "0", false, BDRV_O_RDWR);
    uint8_t buf[512] = { 0 };

    mem_state(blk)->fail_writes = 1;
    g_assert_cmpint(blk_pwrite(blk, 0, 512, buf, 0), ==, -EIO);
    g_assert_cmpint(blk_pwrite(blk, 0, 512, buf, 0), ==, 0);
    /* The earlier failure surfaces at the next flush, once. */
    g_assert_cmpint(blk_flush(blk), ==, -EIO);
    g_assert_cmpint(blk_flush(blk), ==, 0);
    blk_unref(blk);
}

static void test_truncate(void)
{
    BlockBackend *blk = open_mem("512", "0", false,
                                 BDRV_O_RDWR | BDRV_O_RESIZE);
    BlockBackend *no_resize = open_mem("512", "0", false, BDRV_O_RDWR);
    BlockBackend *null = blk_new_open_driver(bdrv_find_format("null-co"),
                                             NULL, NULL,
                                             BDRV_O_RDWR | BDRV_O_RESIZE,
                                             NULL);
    g_autoptr(GError) err = NULL;
    uint8_t buf[4096];

    memset(buf, 0x55, sizeof(buf));
    g_assert_cmpint(blk_pwrite(blk, IMG_SIZE - 4096, 4096, buf, 0), ==, 0);

    /* Grow: the new area reads as zeroes. */
    g_assert_cmpint(blk_truncate(blk, IMG_SIZE + 8192, true,
                                 PREALLOC_MODE_OFF, 0, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpint(blk_getlength(blk), ==, IMG_SIZE + 8192);
    g_assert_cmpint(blk_pread(blk, IMG_SIZE, 4096, buf, 0), ==, 0);
    g_assert_cmpint(buf[0], ==, 0);
    g_assert_cmpint(buf[4095], ==, 0);

    /* Shrink: what was beyond is out of bounds. */
    g_assert_cmpint(blk_truncate(blk, 4096, true, PREALLOC_MODE_OFF, 0,
                                 &err), ==, 0);
    g_assert_cmpint(blk_getlength(blk), ==, 4096);
    g_assert_cmpint(blk_pread(blk, 4096, 512, buf, 0), ==, -EIO);

    g_assert_cmpint(blk_truncate(blk, -1, true, PREALLOC_MODE_OFF, 0,
                                 &err), ==, -EINVAL);
    g_assert_cmpstr(err->message, ==, "Image size cannot be negative");
    g_clear_error(&err);

    g_assert_cmpint(blk_truncate(no_resize, 4096, true, PREALLOC_MODE_OFF,
                                 0, &err), <, 0);
    g_assert_nonnull(err);
    g_clear_error(&err);

    g_assert_cmpint(blk_truncate(null, 4096, true, PREALLOC_MODE_OFF, 0,
                                 &err), ==, -ENOTSUP);
    g_assert_cmpstr(err->message, ==,
                    "Image format driver does not support resize");
    blk_unref(blk);
    blk_unref(no_resize);
    blk_unref(null);
}

typedef struct StatusData {
    BlockDriverState *bs;
    int64_t offset;
    int64_t bytes;
    int64_t pnum;
    int ret;
    bool done;
} StatusData;

static void coroutine_fn status_entry(void *opaque)
{
    StatusData *d = opaque;

    d->ret = bdrv_co_block_status(d->bs, d->offset, d->bytes, &d->pnum,
                                  NULL, NULL);
    d->done = true;
}

static void test_block_status_default(void)
{
    BlockBackend *blk = open_mem("512", "0", false, BDRV_O_RDWR);
    StatusData d = { .bs = blk_bs(blk), .offset = 4096, .bytes = IMG_SIZE };

    qemu_coroutine_enter(qemu_coroutine_create(status_entry, &d));
    AIO_WAIT_WHILE(qemu_get_aio_context(), !d.done);
    g_assert_cmpint(d.ret, ==, BDRV_BLOCK_DATA | BDRV_BLOCK_ALLOCATED |
                    BDRV_BLOCK_EOF);
    g_assert_cmpint(d.pnum, ==, IMG_SIZE - 4096);

    d = (StatusData) { .bs = blk_bs(blk), .offset = IMG_SIZE, .bytes = 1 };
    qemu_coroutine_enter(qemu_coroutine_create(status_entry, &d));
    AIO_WAIT_WHILE(qemu_get_aio_context(), !d.done);
    g_assert_cmpint(d.ret, ==, BDRV_BLOCK_EOF);
    g_assert_cmpint(d.pnum, ==, 0);
    blk_unref(blk);
}

/*
 * A layer of a backing chain: "alloc" lists the ranges it allocates
 * ("start-end/start-end"); the test attaches the next layer as "backing".
 */
typedef struct LayerState {
    int64_t size;
    GArray *ranges;             /* pairs of int64_t: start, end */
} LayerState;

static const char *const layer_options[] = {
    "size", "alloc", NULL,
};

static int layer_open(BlockDriverState *bs, JsonObject *options, int flags,
                      GError **errp)
{
    LayerState *s = bs->opaque;
    g_autofree char *alloc = NULL;
    g_auto(GStrv) parts = NULL;
    uint64_t size;
    int i;

    if (!keyval_get_size(options, "size", 65536, &size, errp) ||
        !keyval_get_str(options, "alloc", "", &alloc, errp)) {
        return -EINVAL;
    }
    s->size = size;
    s->ranges = g_array_new(FALSE, FALSE, sizeof(int64_t));
    parts = g_strsplit(alloc, "/", -1);
    for (i = 0; parts[i] && *parts[i]; i++) {
        int64_t start, end;

        g_assert_cmpint(sscanf(parts[i], "%" SCNd64 "-%" SCNd64, &start,
                               &end), ==, 2);
        g_array_append_val(s->ranges, start);
        g_array_append_val(s->ranges, end);
    }
    return 0;
}

static void layer_close(BlockDriverState *bs)
{
    LayerState *s = bs->opaque;

    g_array_unref(s->ranges);
}

static int coroutine_fn layer_block_status(BlockDriverState *bs,
                                           int64_t offset, int64_t bytes,
                                           int64_t *pnum, int64_t *map,
                                           BlockDriverState **file)
{
    LayerState *s = bs->opaque;
    int64_t next = offset + bytes;
    guint i;

    for (i = 0; i < s->ranges->len; i += 2) {
        int64_t start = g_array_index(s->ranges, int64_t, i);
        int64_t end = g_array_index(s->ranges, int64_t, i + 1);

        if (offset >= start && offset < end) {
            *pnum = MIN(end, offset + bytes) - offset;
            return BDRV_BLOCK_DATA;
        }
        if (start > offset) {
            next = MIN(next, start);
        }
    }
    *pnum = next - offset;
    return 0;
}

static int64_t coroutine_fn layer_getlength(BlockDriverState *bs)
{
    LayerState *s = bs->opaque;

    return s->size;
}

static BlockDriver bdrv_test_layer = {
    .format_name = "test-layer",
    .instance_size = sizeof(LayerState),
    .bdrv_open = layer_open,
    .bdrv_close = layer_close,
    .bdrv_co_block_status = layer_block_status,
    .bdrv_co_getlength = layer_getlength,
    .option_names = layer_options,
};

typedef struct AboveData {
    BlockDriverState *bs;
    BlockDriverState *base;
    int64_t offset;
    int64_t pnum;
    int depth;
    int ret;
    bool done;
} AboveData;

static void coroutine_fn above_entry(void *opaque)
{
    AboveData *d = opaque;

    d->ret = bdrv_co_block_status_above(d->bs, d->base, d->offset, 65536,
                                        &d->pnum, NULL, NULL, &d->depth);
    d->done = true;
}

static AboveData status_above(BlockDriverState *bs, BlockDriverState *base,
                              int64_t offset)
{
    AboveData d = { .bs = bs, .base = base, .offset = offset };

    qemu_coroutine_enter(qemu_coroutine_create(above_entry, &d));
    g_assert_true(d.done);
    return d;
}

static BlockDriverState *open_layer(const char *name, const char *params)
{
    g_autoptr(JsonObject) opts = keyval_parse(params, NULL, NULL);
    BlockDriverState *bs;

    g_assert_nonnull(opts);
    bs = bdrv_open_driver(&bdrv_test_layer, name, opts, 0, NULL);
    g_assert_nonnull(bs);
    return bs;
}

static void test_block_status_above(void)
{
    BlockDriverState *top = open_layer("top", "alloc=0-4096");
    BlockDriverState *mid = open_layer("mid", "alloc=4096-12288");
    BlockDriverState *base = open_layer("base", "size=16384,alloc=0-16384");
    AboveData d;

    /* top -> mid -> base, each the "backing" child of the one above */
    g_assert_nonnull(bdrv_attach_child(mid, base, "backing", BDRV_CHILD_COW,
                                       NULL));
    g_assert_nonnull(bdrv_attach_child(top, mid, "backing", BDRV_CHILD_COW,
                                       NULL));
    bdrv_unref(mid);
    bdrv_unref(base);

    g_assert_nonnull(top);
    d = status_above(top, NULL, 0);
    g_assert_cmpint(d.ret, ==, BDRV_BLOCK_DATA | BDRV_BLOCK_ALLOCATED);
    g_assert_cmpint(d.pnum, ==, 4096);
    g_assert_cmpint(d.depth, ==, 1);

    d = status_above(top, NULL, 4096);
    g_assert_cmpint(d.ret, ==, BDRV_BLOCK_DATA | BDRV_BLOCK_ALLOCATED);
    g_assert_cmpint(d.pnum, ==, 8192);
    g_assert_cmpint(d.depth, ==, 2);

    d = status_above(top, NULL, 12288);
    g_assert_cmpint(d.ret, ==, BDRV_BLOCK_DATA | BDRV_BLOCK_ALLOCATED);
    g_assert_cmpint(d.pnum, ==, 4096);
    g_assert_cmpint(d.depth, ==, 3);

    /* Past the base's end: zeroes, up to the top's end. */
    d = status_above(top, NULL, 16384);
    g_assert_cmpint(d.ret, ==, BDRV_BLOCK_ZERO | BDRV_BLOCK_EOF);
    g_assert_cmpint(d.pnum, ==, 65536 - 16384);
    g_assert_cmpint(d.depth, ==, 0);

    /* With mid as the base only the top layer counts. */
    d = status_above(top, mid, 4096);
    g_assert_cmpint(d.ret, ==, BDRV_BLOCK_ZERO | BDRV_BLOCK_EOF);
    g_assert_cmpint(d.pnum, ==, 65536 - 4096);
    g_assert_cmpint(d.depth, ==, 0);

    bdrv_unref(top);
    g_assert_null(bdrv_find_node("mid"));
}

static void test_unknown_option(void)
{
    g_autoptr(JsonObject) opts = json_object_new();
    g_autoptr(GError) err = NULL;

    json_object_set_string_member(opts, "bogus", "1");
    g_assert_null(bdrv_open_driver(bdrv_find_format("null-co"), NULL, opts,
                                   0, &err));
    g_assert_nonnull(err);
    g_assert_cmpstr(err->message, ==,
                    "Block protocol 'null-co' doesn't support the option "
                    "'bogus'");
}

static void test_node_names(void)
{
    g_autoptr(JsonObject) opts = json_object_new();
    GError *err = NULL;
    BlockDriverState *bs;

    bs = bdrv_open_driver(bdrv_find_format("null-co"), "disk0", opts, 0,
                          &err);
    g_assert_no_error(err);
    g_assert_true(bdrv_find_node("disk0") == bs);

    g_assert_null(bdrv_open_driver(bdrv_find_format("null-co"), "disk0",
                                   opts, 0, &err));
    g_assert_cmpstr(err->message, ==,
                    "Duplicate nodes with node-name='disk0'");
    g_clear_error(&err);

    g_assert_null(bdrv_open_driver(bdrv_find_format("null-co"), "0disk",
                                   opts, 0, &err));
    g_assert_cmpstr(err->message, ==, "Invalid node-name: '0disk'");
    g_clear_error(&err);

    bdrv_unref(bs);
    g_assert_null(bdrv_find_node("disk0"));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_assert_true(qemu_init_main_loop(NULL));
    bdrv_register(&bdrv_test_mem);
    bdrv_register(&bdrv_test_layer);

    g_test_add_func("/block-io/unaligned-read", test_unaligned_read);
    g_test_add_func("/block-io/unaligned-write-rmw",
                    test_unaligned_write_rmw);
    g_test_add_func("/block-io/split-max-transfer", test_split_max_transfer);
    g_test_add_func("/block-io/write-zeroes", test_write_zeroes);
    g_test_add_func("/block-io/rmw-serialisation", test_rmw_serialisation);
    g_test_add_func("/block-io/bounds-and-read-only",
                    test_bounds_and_read_only);
    g_test_add_func("/block-io/flush-reports-write-error",
                    test_flush_reports_write_error);
    g_test_add_func("/block-io/truncate", test_truncate);
    g_test_add_func("/block-io/block-status-default",
                    test_block_status_default);
    g_test_add_func("/block-io/block-status-above",
                    test_block_status_above);
    g_test_add_func("/block-io/unknown-option", test_unknown_option);
    g_test_add_func("/block-io/node-names", test_node_names);
    return g_test_run();
}
