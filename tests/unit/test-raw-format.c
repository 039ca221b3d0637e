/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The raw format: requests through the offset/size window land at the
 * right place of the child, the window's limits hold, block status and
 * debug events pass through, and option errors read as QEMU 7.2's.
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * The child is a memory driver defined here that records what reaches
 * it and checks that every request is aligned to its own alignment.
 */
#include "qemu/osdep.h"

#include "block/aio-wait.h"
#include "block/blkdebug.h"
#include "block/block_int.h"
#include "qemu/coroutine.h"
#include "qemu/keyval.h"
#include "qemu/main-loop.h"
#include "sysemu/block-backend.h"

#define MEM_SIZE (256 * 1024)

typedef struct MemState {
    uint8_t *data;
    int64_t size;
    uint64_t align;
    int reads;
    int writes;
    int zero_calls;
    int discards;
    int flushes;
    int64_t last_offset;        /* of the last request of any kind */
    int64_t last_bytes;
} MemState;

static const char *const mem_options[] = { "size", "align", NULL };

static int mem_open(BlockDriverState *bs, JsonObject *options, int flags,
                    GError **errp)
{
    MemState *s = bs->opaque;
    uint64_t size;

    if (!keyval_get_size(options, "size", MEM_SIZE, &size, errp) ||
        !keyval_get_size(options, "align", 1, &s->align, errp)) {
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
}

static void mem_note(MemState *s, int64_t offset, int64_t bytes)
{
    g_assert_cmpint(offset % s->align, ==, 0);
    g_assert_cmpint(bytes % s->align, ==, 0);
    g_assert_cmpint(offset + bytes, <=, s->size);
    s->last_offset = offset;
    s->last_bytes = bytes;
}

static int coroutine_fn mem_preadv(BlockDriverState *bs, int64_t offset,
                                   int64_t bytes, QEMUIOVector *qiov,
                                   BdrvRequestFlags flags)
{
    MemState *s = bs->opaque;

    mem_note(s, offset, bytes);
    s->reads++;
    qemu_iovec_from_buf(qiov, 0, s->data + offset, bytes);
    return 0;
}

static int coroutine_fn mem_pwritev(BlockDriverState *bs, int64_t offset,
                                    int64_t bytes, QEMUIOVector *qiov,
                                    BdrvRequestFlags flags)
{
    MemState *s = bs->opaque;

    mem_note(s, offset, bytes);
    s->writes++;
    qemu_iovec_to_buf(qiov, 0, s->data + offset, bytes);
    return 0;
}

static int coroutine_fn mem_pwrite_zeroes(BlockDriverState *bs,
                                          int64_t offset, int64_t bytes,
                                          BdrvRequestFlags flags)
{
    MemState *s = bs->opaque;

    mem_note(s, offset, bytes);
    s->zero_calls++;
    memset(s->data + offset, 0, bytes);
    return 0;
}

static int coroutine_fn mem_pdiscard(BlockDriverState *bs, int64_t offset,
                                     int64_t bytes)
{
    MemState *s = bs->opaque;

    mem_note(s, offset, bytes);
    s->discards++;
    return 0;
}

static int coroutine_fn mem_flush(BlockDriverState *bs)
{
    MemState *s = bs->opaque;

    s->flushes++;
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
    .bdrv_co_pdiscard = mem_pdiscard,
    .bdrv_co_flush_to_disk = mem_flush,
    .bdrv_co_getlength = mem_getlength,
    .option_names = mem_options,
};

/* ---- Helpers ---- */

/* Open a node from dotted options, as --image-opts would. */
static BlockDriverState *open_node(const char *opts, int flags,
                                   GError **errp)
{
    g_autoptr(JsonObject) o = keyval_parse(opts, NULL, errp);

    if (!o) {
        return NULL;
    }
    return bdrv_open_options(o, flags, errp);
}

static BlockBackend *open_blk(const char *opts, int flags)
{
    g_autoptr(GError) err = NULL;
    BlockDriverState *bs = open_node(opts, flags, &err);
    BlockBackend *blk;
    uint64_t perm = BLK_PERM_CONSISTENT_READ;

    g_assert_no_error(err);
    g_assert_nonnull(bs);
    if (flags & BDRV_O_RDWR) {
        perm |= BLK_PERM_WRITE;
    }
    blk = blk_new(bdrv_get_aio_context(bs), perm, BLK_PERM_ALL);
    g_assert_true(blk_insert_bs(blk, bs, &err));
    g_assert_no_error(err);
    bdrv_unref(bs);
    return blk;
}

/* The memory child under the raw node of @blk. */
static MemState *child_mem(BlockBackend *blk)
{
    BlockDriverState *bs = blk_bs(blk);

    g_assert_nonnull(bs->file);
    g_assert_true(bs->file->bs->drv == &bdrv_test_mem);
    return bs->file->bs->opaque;
}

static void expect_open_error(const char *opts, const char *message)
{
    g_autoptr(GError) err = NULL;

    g_assert_null(open_node(opts, BDRV_O_RDWR, &err));
    g_assert_nonnull(err);
    g_assert_cmpstr(err->message, ==, message);
}

static void fill_pattern(uint8_t *buf, size_t len, unsigned int seed)
{
    size_t i;

    for (i = 0; i < len; i++) {
        buf[i] = (uint8_t)(i * 31 + seed * 7 + (i >> 9));
    }
}

static bool all_bytes(const uint8_t *buf, size_t len, uint8_t value)
{
    size_t i;

    for (i = 0; i < len; i++) {
        if (buf[i] != value) {
            return false;
        }
    }
    return true;
}

/* Run @entry in a coroutine of the main context and wait for it. */
typedef struct CoRun {
    CoroutineEntry *entry;
    void *opaque;
    bool done;
} CoRun;

static void coroutine_fn co_run_entry(void *opaque)
{
    CoRun *r = opaque;

    r->entry(r->opaque);
    r->done = true;
    aio_wait_kick();
}

static void run_in_coroutine(CoroutineEntry *entry, void *opaque)
{
    CoRun r = { .entry = entry, .opaque = opaque };

    qemu_coroutine_enter(qemu_coroutine_create(co_run_entry, &r));
    AIO_WAIT_WHILE(qemu_get_aio_context(), !r.done);
}

/* ---- Tests ---- */

static void test_window_io(void)
{
    BlockBackend *blk = open_blk("driver=raw,offset=4096,size=64k,"
                                 "file.driver=test-mem", BDRV_O_RDWR);
    MemState *m = child_mem(blk);
    g_autofree uint8_t *buf = g_malloc(65536);
    g_autofree uint8_t *back = g_malloc(65536);

    g_assert_cmpint(blk_getlength(blk), ==, 65536);

    fill_pattern(buf, 65536, 1);
    g_assert_cmpint(blk_pwrite(blk, 0, 65536, buf, 0), ==, 0);
    g_assert_cmpint(m->last_offset, ==, 4096);
    g_assert_cmpint(m->last_bytes, ==, 65536);
    g_assert_cmpmem(m->data + 4096, 65536, buf, 65536);
    /* Nothing outside the window was touched. */
    g_assert_true(all_bytes(m->data, 4096, 0));
    g_assert_true(all_bytes(m->data + 4096 + 65536,
                            MEM_SIZE - 4096 - 65536, 0));

    g_assert_cmpint(blk_pread(blk, 1000, 3000, back, 0), ==, 0);
    g_assert_cmpint(m->last_offset, ==, 5096);
    g_assert_cmpint(m->last_bytes, ==, 3000);
    g_assert_cmpmem(back, 3000, buf + 1000, 3000);

    /* The backend stops requests that leave the window. */
    g_assert_cmpint(blk_pwrite(blk, 65536 - 512, 1024, buf, 0), ==, -EIO);
    g_assert_cmpint(blk_pread(blk, 65536, 1, back, 0), ==, -EIO);
    g_assert_true(all_bytes(m->data + 4096 + 65536, 512, 0));
    blk_unref(blk);
}

static void test_zeroes_discard_flush(void)
{
    BlockBackend *blk = open_blk("driver=raw,offset=8k,size=64k,"
                                 "file.driver=test-mem", BDRV_O_RDWR);
    MemState *m = child_mem(blk);

    memset(m->data, 0xff, MEM_SIZE);
    g_assert_cmpint(blk_pwrite_zeroes(blk, 512, 1024, 0), ==, 0);
    g_assert_cmpint(m->zero_calls, ==, 1);
    g_assert_cmpint(m->last_offset, ==, 8192 + 512);
    g_assert_cmpint(m->data[8192 + 511], ==, 0xff);
    g_assert_true(all_bytes(m->data + 8192 + 512, 1024, 0));
    g_assert_cmpint(m->data[8192 + 1536], ==, 0xff);

    g_assert_cmpint(blk_pdiscard(blk, 4096, 4096), ==, 0);
    g_assert_cmpint(m->discards, ==, 1);
    g_assert_cmpint(m->last_offset, ==, 8192 + 4096);
    g_assert_cmpint(m->last_bytes, ==, 4096);

    g_assert_cmpint(blk_flush(blk), ==, 0);
    g_assert_cmpint(m->flushes, ==, 1);
    blk_unref(blk);
}

static void test_length_without_size(void)
{
    BlockBackend *blk;

    blk = open_blk("driver=raw,offset=1000,file.driver=test-mem",
                   BDRV_O_RDWR);
    /* Rounded up to whole sectors, as QEMU does. */
    g_assert_cmpint(blk_getlength(blk), ==,
                    QEMU_ALIGN_UP(MEM_SIZE - 1000, BDRV_SECTOR_SIZE));
    blk_unref(blk);

    /* A window may start at the very end: it is empty. */
    blk = open_blk("driver=raw,offset=256k,file.driver=test-mem", 0);
    g_assert_cmpint(blk_getlength(blk), ==, 0);
    blk_unref(blk);

    blk = open_blk("driver=raw,size=0,file.driver=test-mem", 0);
    g_assert_cmpint(blk_getlength(blk), ==, 0);
    blk_unref(blk);

    blk = open_blk("driver=raw,file.driver=test-mem", 0);
    g_assert_cmpint(blk_getlength(blk), ==, MEM_SIZE);
    /* Without a window, raw is a filter of its child. */
    g_assert_true(blk_bs(blk)->file->role & BDRV_CHILD_FILTERED);
    blk_unref(blk);
}

typedef struct EdgeIO {
    BdrvChild *child;
    int64_t offset;
    int64_t bytes;
    bool write;
    int ret;
} EdgeIO;

static void coroutine_fn edge_io_entry(void *opaque)
{
    EdgeIO *e = opaque;
    g_autofree uint8_t *buf = g_malloc0(e->bytes);
    QEMUIOVector qiov;

    qemu_iovec_init_buf(&qiov, buf, e->bytes);
    if (e->write) {
        e->ret = bdrv_co_pwritev(e->child, e->offset, e->bytes, &qiov, 0);
    } else {
        e->ret = bdrv_co_preadv(e->child, e->offset, e->bytes, &qiov, 0);
    }
}

/*
 * Below a backend, nothing stops a parent node from asking for bytes
 * beyond the window; raw itself must refuse, or it would reach into the
 * child's bytes after the window.
 */
static void test_window_enforced_by_raw(void)
{
    g_autoptr(GError) err = NULL;
    BlockDriverState *parent = open_node("driver=null-co", BDRV_O_RDWR,
                                         &err);
    BlockDriverState *raw = open_node("driver=raw,offset=4k,size=8k,"
                                      "file.driver=test-mem", BDRV_O_RDWR,
                                      &err);
    MemState *m;
    BdrvChild *c;
    EdgeIO e;

    g_assert_no_error(err);
    m = raw->file->bs->opaque;
    c = bdrv_attach_child(parent, raw, "test", BDRV_CHILD_DATA, &err);
    g_assert_no_error(err);

    e = (EdgeIO) { .child = c, .offset = 4096, .bytes = 8192, .write = 1 };
    run_in_coroutine(edge_io_entry, &e);
    g_assert_cmpint(e.ret, ==, -ENOSPC);
    e = (EdgeIO) { .child = c, .offset = 8192, .bytes = 1 };
    run_in_coroutine(edge_io_entry, &e);
    g_assert_cmpint(e.ret, ==, -ENOSPC);
    g_assert_cmpint(m->writes + m->reads, ==, 0);

    e = (EdgeIO) { .child = c, .offset = 4096, .bytes = 4096, .write = 1 };
    run_in_coroutine(edge_io_entry, &e);
    g_assert_cmpint(e.ret, ==, 0);
    g_assert_cmpint(m->last_offset, ==, 8192);

    bdrv_unref_child(parent, c);
    bdrv_unref(raw);
    bdrv_unref(parent);
}

static void test_unaligned_offset(void)
{
    BlockBackend *blk = open_blk("driver=raw,offset=100,size=64k,"
                                 "file.driver=test-mem,file.align=512",
                                 BDRV_O_RDWR);
    MemState *m = child_mem(blk);
    uint8_t buf[5000];
    uint8_t back[5000];
    int i;

    /* raw asks for what its child needs, whatever the child's role. */
    g_assert_cmpuint(blk_bs(blk)->bl.request_alignment, ==, 512);
    for (i = 0; i < 20; i++) {
        int64_t off = g_test_rand_int_range(0, 65536 - sizeof(buf));
        int64_t len = g_test_rand_int_range(1, sizeof(buf));

        fill_pattern(buf, len, i);
        g_assert_cmpint(blk_pwrite(blk, off, len, buf, 0), ==, 0);
        /* mem_note() asserted the child saw aligned requests only. */
        g_assert_cmpmem(m->data + 100 + off, len, buf, len);
        g_assert_cmpint(blk_pread(blk, off, len, back, 0), ==, 0);
        g_assert_cmpmem(back, len, buf, len);
    }
    g_assert_true(all_bytes(m->data, 100, 0));
    blk_unref(blk);
}

static void test_file_by_node_name(void)
{
    g_autoptr(GError) err = NULL;
    BlockDriverState *base = open_node("driver=test-mem,node-name=base0",
                                       BDRV_O_RDWR, &err);
    BlockBackend *blk;
    uint8_t buf[512];

    g_assert_no_error(err);
    blk = open_blk("driver=raw,file=base0,offset=512", BDRV_O_RDWR);
    g_assert_true(blk_bs(blk)->file->bs == base);
    g_assert_cmpint(blk_getlength(blk), ==, MEM_SIZE - 512);
    memset(buf, 0x5a, sizeof(buf));
    g_assert_cmpint(blk_pwrite(blk, 0, sizeof(buf), buf, 0), ==, 0);
    g_assert_cmpint(((MemState *)base->opaque)->data[512], ==, 0x5a);
    blk_unref(blk);

    /* The named node outlives the raw node that used it. */
    g_assert_true(bdrv_find_node("base0") == base);
    bdrv_unref(base);
    g_assert_null(bdrv_find_node("base0"));
}

typedef struct StatusCall {
    BlockDriverState *bs;
    int64_t offset;
    int64_t bytes;
    int64_t pnum;
    int64_t map;
    BlockDriverState *file;
    int ret;
} StatusCall;

static void coroutine_fn status_entry(void *opaque)
{
    StatusCall *c = opaque;

    c->ret = bdrv_co_block_status(c->bs, c->offset, c->bytes, &c->pnum,
                                  &c->map, &c->file);
}

static void test_block_status(void)
{
    BlockBackend *blk = open_blk("driver=raw,offset=4096,size=64k,"
                                 "file.driver=null-co,file.size=1M,"
                                 "file.read-zeroes=on", 0);
    BlockDriverState *raw = blk_bs(blk);
    StatusCall c = { .bs = raw, .offset = 0, .bytes = 65536 };

    /* What QEMU 7.2's "qemu-img map" shows: zero, offset 4096. */
    run_in_coroutine(status_entry, &c);
    g_assert_cmpint(c.ret, ==, BDRV_BLOCK_ZERO | BDRV_BLOCK_OFFSET_VALID |
                    BDRV_BLOCK_ALLOCATED | BDRV_BLOCK_EOF);
    g_assert_cmpint(c.pnum, ==, 65536);
    g_assert_cmpint(c.map, ==, 4096);
    g_assert_true(c.file == raw->file->bs);

    /* Only the end of the window is the end of file. */
    c = (StatusCall) { .bs = raw, .offset = 512, .bytes = 1024 };
    run_in_coroutine(status_entry, &c);
    g_assert_cmpint(c.ret, ==, BDRV_BLOCK_ZERO | BDRV_BLOCK_OFFSET_VALID |
                    BDRV_BLOCK_ALLOCATED);
    g_assert_cmpint(c.pnum, ==, 1024);
    g_assert_cmpint(c.map, ==, 4096 + 512);
    blk_unref(blk);

    blk = open_blk("driver=raw,offset=4096,file.driver=test-mem", 0);
    c = (StatusCall) { .bs = blk_bs(blk), .offset = 0, .bytes = 8192 };
    run_in_coroutine(status_entry, &c);
    g_assert_cmpint(c.ret, ==, BDRV_BLOCK_DATA | BDRV_BLOCK_ALLOCATED);
    g_assert_cmpint(c.pnum, ==, 8192);
    blk_unref(blk);
}

static void test_read_only(void)
{
    BlockBackend *blk = open_blk("driver=raw,offset=512,"
                                 "file.driver=test-mem", 0);
    uint8_t buf[512] = { 0 };

    g_assert_true(bdrv_is_read_only(blk_bs(blk)));
    g_assert_true(bdrv_is_read_only(blk_bs(blk)->file->bs));
    g_assert_cmpint(blk_pread(blk, 0, sizeof(buf), buf, 0), ==, 0);
    g_assert_cmpint(blk_pwrite(blk, 0, sizeof(buf), buf, 0), ==, -EPERM);
    blk_unref(blk);
}

/* raw announces its reads, writes and flushes to a blkdebug child. */
static void test_debug_events(void)
{
    BlockBackend *blk;
    uint8_t buf[512] = { 0 };

    blk = open_blk("driver=raw,file.driver=blkdebug,"
                   "file.image.driver=null-co,"
                   "file.inject-error.0.event=read_aio,"
                   "file.inject-error.0.errno=28", BDRV_O_RDWR);
    g_assert_cmpint(blk_pwrite(blk, 0, sizeof(buf), buf, 0), ==, 0);
    g_assert_cmpint(blk_pread(blk, 0, sizeof(buf), buf, 0), ==, -ENOSPC);
    blk_unref(blk);

    blk = open_blk("driver=raw,file.driver=blkdebug,"
                   "file.image.driver=null-co,"
                   "file.inject-error.0.event=write_aio,"
                   "file.inject-error.0.once=on", BDRV_O_RDWR);
    g_assert_cmpint(blk_pread(blk, 0, sizeof(buf), buf, 0), ==, 0);
    g_assert_cmpint(blk_pwrite(blk, 0, sizeof(buf), buf, 0), ==, -EIO);
    g_assert_cmpint(blk_pwrite(blk, 0, sizeof(buf), buf, 0), ==, 0);
    blk_unref(blk);

    blk = open_blk("driver=raw,file.driver=blkdebug,"
                   "file.image.driver=null-co,"
                   "file.inject-error.0.event=flush_to_disk,"
                   "file.inject-error.0.iotype=flush", BDRV_O_RDWR);
    g_assert_cmpint(blk_pwrite(blk, 0, sizeof(buf), buf, 0), ==, 0);
    g_assert_cmpint(blk_flush(blk), ==, -EIO);
    /* Only flushes were covered. */
    g_assert_cmpint(blk_pread(blk, 0, sizeof(buf), buf, 0), ==, 0);
    blk_unref(blk);
}

typedef struct TruncateCall {
    BdrvChild *child;
    int64_t offset;
    GError *err;
    int ret;
} TruncateCall;

static void coroutine_fn truncate_entry(void *opaque)
{
    TruncateCall *t = opaque;

    t->ret = bdrv_co_truncate(t->child, t->offset, false,
                              PREALLOC_MODE_OFF, 0, &t->err);
}

static void test_truncate(void)
{
    g_autoptr(GError) err = NULL;
    BlockDriverState *parent = open_node("driver=null-co", BDRV_O_RDWR,
                                         &err);
    BlockDriverState *fixed = open_node("driver=raw,size=4k,"
                                        "file.driver=null-co,file.size=8k",
                                        BDRV_O_RDWR, &err);
    BdrvChild *c;
    TruncateCall t;

    g_assert_no_error(err);
    c = bdrv_attach_child(parent, fixed, "test", BDRV_CHILD_DATA, &err);
    g_assert_no_error(err);
    c->perm |= BLK_PERM_RESIZE;
    t = (TruncateCall) { .child = c, .offset = 8192 };
    run_in_coroutine(truncate_entry, &t);
    g_assert_cmpint(t.ret, ==, -ENOTSUP);
    g_assert_nonnull(t.err);
    g_assert_cmpstr(t.err->message, ==,
                    "Cannot resize fixed-size raw disks");
    g_clear_error(&t.err);
    bdrv_unref_child(parent, c);
    bdrv_unref(fixed);
    bdrv_unref(parent);
}

static void test_open_errors(void)
{
    expect_open_error("driver=raw,file.driver=null-co,file.size=1M,"
                      "offset=2M",
                      "Offset (2097152) cannot be greater than size of the "
                      "containing file (1048576)");
    expect_open_error("driver=raw,file.driver=null-co,file.size=1M,"
                      "offset=8E,size=8E",
                      "Offset (9223372036854775808) cannot be greater than "
                      "size of the containing file (1048576)");
    expect_open_error("driver=raw,file.driver=null-co,file.size=1M,"
                      "offset=1048000,size=1024",
                      "The sum of offset (1048000) and size (1024) has to "
                      "be smaller or equal to the  actual size of the "
                      "containing file (1048576)");
    expect_open_error("driver=raw,file.driver=null-co,file.size=1M,"
                      "offset=1M,size=512",
                      "The sum of offset (1048576) and size (512) has to "
                      "be smaller or equal to the  actual size of the "
                      "containing file (1048576)");
    expect_open_error("driver=raw,file.driver=null-co,file.size=1M,"
                      "size=9223372036854775808",
                      "The sum of offset (0) and size (9223372036854775808) "
                      "has to be smaller or equal to the  actual size of "
                      "the containing file (1048576)");
    expect_open_error("driver=raw,file.driver=null-co,file.size=1M,"
                      "size=1000",
                      "Specified size is not multiple of 512");
    /* The window is checked before the size unit. */
    expect_open_error("driver=raw,file.driver=null-co,file.size=1M,"
                      "offset=2M,size=1000",
                      "Offset (2097152) cannot be greater than size of the "
                      "containing file (1048576)");
    expect_open_error("driver=raw,file.driver=null-co,offset=-1",
                      "Parameter 'offset' expects a non-negative number "
                      "below 2^64");
    expect_open_error("driver=raw,file.driver=null-co,size=x",
                      "Parameter 'size' expects a non-negative number "
                      "below 2^64");
    expect_open_error("driver=raw,file.driver=null-co,size=16E",
                      "Value '16E' is out of range for parameter 'size'");
    /* Values are checked before the child is looked for. */
    expect_open_error("driver=raw,offset=x",
                      "Parameter 'offset' expects a non-negative number "
                      "below 2^64");
    expect_open_error("driver=raw,size=1000",
                      "A block device must be specified for \"file\"");
    expect_open_error("driver=raw,file.driver=nosuch",
                      "Unknown driver 'nosuch'");
    expect_open_error("driver=raw,file.driver=null-co,foo=1",
                      "Block format 'raw' does not support the option "
                      "'foo'");
}

static void test_missing_node(void)
{
    g_autoptr(GError) err = NULL;

    g_assert_null(open_node("driver=raw,file=nosuch", 0, &err));
    g_assert_nonnull(err);
    /* The core words it; only check that it names the node. */
    g_assert_nonnull(strstr(err->message, "node-name='nosuch'"));
}

/* Image creation opens nodes from a coroutine: open must not poll. */
typedef struct CoOpen {
    BlockDriverState *bs;
    bool done;
} CoOpen;

static void coroutine_fn co_open_entry(void *opaque)
{
    CoOpen *c = opaque;
    g_autoptr(GError) err = NULL;

    c->bs = open_node("driver=raw,size=8192,file.driver=null-co,"
                      "file.size=65536", 0, &err);
    g_assert_no_error(err);
    c->done = true;
}

static void test_open_in_coroutine(void)
{
    CoOpen c = { 0 };

    qemu_coroutine_enter(qemu_coroutine_create(co_open_entry, &c));
    /* Open drains (from a coroutine, through a BH): let it finish. */
    AIO_WAIT_WHILE(qemu_get_aio_context(), !c.done);
    g_assert_cmpint(bdrv_getlength(c.bs), ==, 8192);
    bdrv_unref(c.bs);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_assert_true(qemu_init_main_loop(NULL));
    bdrv_register(&bdrv_test_mem);
    blkdebug_set_quiet(true);

    g_test_add_func("/raw-format/window-io", test_window_io);
    g_test_add_func("/raw-format/zeroes-discard-flush",
                    test_zeroes_discard_flush);
    g_test_add_func("/raw-format/length-without-size",
                    test_length_without_size);
    g_test_add_func("/raw-format/window-enforced-by-raw",
                    test_window_enforced_by_raw);
    g_test_add_func("/raw-format/unaligned-offset", test_unaligned_offset);
    g_test_add_func("/raw-format/file-by-node-name", test_file_by_node_name);
    g_test_add_func("/raw-format/block-status", test_block_status);
    g_test_add_func("/raw-format/read-only", test_read_only);
    g_test_add_func("/raw-format/debug-events", test_debug_events);
    g_test_add_func("/raw-format/truncate", test_truncate);
    g_test_add_func("/raw-format/open-errors", test_open_errors);
    g_test_add_func("/raw-format/missing-node", test_missing_node);
    g_test_add_func("/raw-format/open-in-coroutine", test_open_in_coroutine);
    return g_test_run();
}
