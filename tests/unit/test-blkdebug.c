/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * blkdebug: error injection (errno, once, sector, I/O type,
 * immediately), states, events raised by formats, breakpoints that keep
 * a request in flight so that drain waits for it, limits that force the
 * block layer's read-modify-write and splitting, the config file and the
 * option errors, worded as QEMU 7.2's.
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
#include "qemu/iothread.h"
#include "qemu/keyval.h"
#include "qemu/main-loop.h"
#include "qemu/timer.h"
#include "sysemu/block-backend.h"

#define REC_SIZE (1024 * 1024)

/* ---- A recording memory driver ---- */

typedef enum RecType {
    REC_READ,
    REC_WRITE,
    REC_ZEROES,
    REC_DISCARD,
    REC_FLUSH,
    REC__MAX,
} RecType;

typedef struct RecCall {
    RecType type;
    int64_t offset;
    int64_t bytes;
} RecCall;

typedef struct RecState {
    uint8_t *data;
    int64_t size;
    GArray *calls;              /* RecCall */
    int count[REC__MAX];
} RecState;

static const char *const rec_options[] = { "size", NULL };

static int rec_open(BlockDriverState *bs, JsonObject *options, int flags,
                    GError **errp)
{
    RecState *s = bs->opaque;
    uint64_t size;

    if (!keyval_get_size(options, "size", REC_SIZE, &size, errp)) {
        return -EINVAL;
    }
    s->size = size;
    s->data = g_malloc0(size);
    s->calls = g_array_new(FALSE, FALSE, sizeof(RecCall));
    return 0;
}

static void rec_close(BlockDriverState *bs)
{
    RecState *s = bs->opaque;

    g_free(s->data);
    g_array_unref(s->calls);
}

static void rec_note(RecState *s, RecType type, int64_t offset,
                     int64_t bytes)
{
    RecCall c = { type, offset, bytes };

    if (type != REC_FLUSH) {
        g_assert_cmpint(offset, >=, 0);
        g_assert_cmpint(offset + bytes, <=, s->size);
    }
    g_array_append_val(s->calls, c);
    s->count[type]++;
}

static int coroutine_fn rec_preadv(BlockDriverState *bs, int64_t offset,
                                   int64_t bytes, QEMUIOVector *qiov,
                                   BdrvRequestFlags flags)
{
    RecState *s = bs->opaque;

    rec_note(s, REC_READ, offset, bytes);
    qemu_iovec_from_buf(qiov, 0, s->data + offset, bytes);
    return 0;
}

static int coroutine_fn rec_pwritev(BlockDriverState *bs, int64_t offset,
                                    int64_t bytes, QEMUIOVector *qiov,
                                    BdrvRequestFlags flags)
{
    RecState *s = bs->opaque;

    rec_note(s, REC_WRITE, offset, bytes);
    qemu_iovec_to_buf(qiov, 0, s->data + offset, bytes);
    return 0;
}

static int coroutine_fn rec_pwrite_zeroes(BlockDriverState *bs,
                                          int64_t offset, int64_t bytes,
                                          BdrvRequestFlags flags)
{
    RecState *s = bs->opaque;

    rec_note(s, REC_ZEROES, offset, bytes);
    memset(s->data + offset, 0, bytes);
    return 0;
}

static int coroutine_fn rec_pdiscard(BlockDriverState *bs, int64_t offset,
                                     int64_t bytes)
{
    rec_note(bs->opaque, REC_DISCARD, offset, bytes);
    return 0;
}

static int coroutine_fn rec_flush(BlockDriverState *bs)
{
    rec_note(bs->opaque, REC_FLUSH, 0, 0);
    return 0;
}

static int64_t coroutine_fn rec_getlength(BlockDriverState *bs)
{
    RecState *s = bs->opaque;

    return s->size;
}

static BlockDriver bdrv_test_rec = {
    .format_name = "test-rec",
    .instance_size = sizeof(RecState),
    .is_protocol = true,
    .bdrv_open = rec_open,
    .bdrv_close = rec_close,
    .bdrv_co_preadv = rec_preadv,
    .bdrv_co_pwritev = rec_pwritev,
    .bdrv_co_pwrite_zeroes = rec_pwrite_zeroes,
    .bdrv_co_pdiscard = rec_pdiscard,
    .bdrv_co_flush_to_disk = rec_flush,
    .bdrv_co_getlength = rec_getlength,
    .option_names = rec_options,
};

/* ---- Helpers ---- */

static BlockDriverState *open_node(const char *opts, int flags,
                                   GError **errp)
{
    g_autoptr(JsonObject) o = keyval_parse(opts, NULL, errp);

    if (!o) {
        return NULL;
    }
    return bdrv_open_options(o, flags, errp);
}

static BlockBackend *open_blk(const char *opts)
{
    g_autoptr(GError) err = NULL;
    BlockDriverState *bs = open_node(opts, BDRV_O_RDWR, &err);
    BlockBackend *blk;

    g_assert_no_error(err);
    g_assert_nonnull(bs);
    blk = blk_new(bdrv_get_aio_context(bs),
                  BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE, BLK_PERM_ALL);
    g_assert_true(blk_insert_bs(blk, bs, &err));
    g_assert_no_error(err);
    bdrv_unref(bs);
    return blk;
}

/* The recording child of the blkdebug node under @blk. */
static RecState *rec_of(BlockBackend *blk)
{
    BlockDriverState *bs = blk_bs(blk);

    g_assert_true(bs->file->bs->drv == &bdrv_test_rec);
    return bs->file->bs->opaque;
}

static void expect_open_error(const char *opts, const char *message)
{
    g_autoptr(GError) err = NULL;
    BlockDriverState *bs = open_node(opts, BDRV_O_RDWR, &err);

    if (bs) {
        bdrv_unref(bs);
        g_error("'%s' opened; expected \"%s\"", opts, message);
    }
    g_assert_nonnull(err);
    g_assert_cmpstr(err->message, ==, message);
}

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

static int write_at(BlockBackend *blk, int64_t offset, int64_t bytes)
{
    g_autofree uint8_t *buf = g_malloc0(bytes);

    return blk_pwrite(blk, offset, bytes, buf, 0);
}

static int read_at(BlockBackend *blk, int64_t offset, int64_t bytes)
{
    g_autofree uint8_t *buf = g_malloc0(bytes);

    return blk_pread(blk, offset, bytes, buf, 0);
}

/* A config file with @text; the caller unlinks and frees the name. */
static char *config_file(const char *text)
{
    g_autoptr(GError) err = NULL;
    char *path = NULL;
    int fd = g_file_open_tmp("blkdebug-XXXXXX.conf", &path, &err);

    g_assert_no_error(err);
    close(fd);
    g_assert_true(g_file_set_contents(path, text, -1, &err));
    g_assert_no_error(err);
    return path;
}

/* A request in its own coroutine, entered in the backend's context. */
typedef struct Req {
    BlockBackend *blk;
    int64_t offset;
    int ret;
    bool done;
    uint8_t buf[4096];
} Req;

static void coroutine_fn req_entry(void *opaque)
{
    Req *r = opaque;
    QEMUIOVector qiov;

    qemu_iovec_init_buf(&qiov, r->buf, sizeof(r->buf));
    r->ret = blk_co_pwritev(r->blk, r->offset, sizeof(r->buf), &qiov, 0);
    qatomic_store_release(&r->done, true);
    aio_wait_kick();
}

static void req_start(Req *r, BlockBackend *blk, int64_t offset)
{
    r->blk = blk;
    r->offset = offset;
    r->ret = -EINPROGRESS;
    r->done = false;
    aio_co_enter(blk_get_aio_context(blk),
                 qemu_coroutine_create(req_entry, r));
}

static bool req_done(Req *r)
{
    return qatomic_load_acquire(&r->done);
}

static void req_wait(Req *r)
{
    AIO_WAIT_WHILE(blk_get_aio_context(r->blk), !req_done(r));
    g_assert_cmpint(r->ret, ==, 0);
}

/* ---- Error injection ---- */

static void test_inject_persistent(void)
{
    BlockBackend *blk = open_blk("driver=blkdebug,image.driver=test-rec,"
                                 "inject-error.0.event=pwritev,"
                                 "inject-error.0.errno=28");
    RecState *rec = rec_of(blk);

    /* Nothing raised the event yet. */
    g_assert_cmpint(read_at(blk, 0, 512), ==, 0);
    g_assert_cmpint(write_at(blk, 0, 512), ==, -ENOSPC);
    g_assert_cmpint(write_at(blk, 4096, 512), ==, -ENOSPC);
    /* The rule stays active for every kind of request after it. */
    g_assert_cmpint(read_at(blk, 0, 512), ==, -ENOSPC);
    g_assert_cmpint(blk_pdiscard(blk, 0, 512), ==, -ENOSPC);
    g_assert_cmpint(rec->count[REC_WRITE], ==, 0);
    g_assert_cmpint(rec->count[REC_READ], ==, 1);
    blk_unref(blk);
}

static void test_inject_once(void)
{
    BlockBackend *blk = open_blk("driver=blkdebug,image.driver=test-rec,"
                                 "inject-error.0.event=pwritev,"
                                 "inject-error.0.once=on");
    RecState *rec = rec_of(blk);

    g_assert_cmpint(write_at(blk, 0, 512), ==, -EIO);
    g_assert_cmpint(write_at(blk, 0, 512), ==, 0);
    g_assert_cmpint(read_at(blk, 0, 512), ==, 0);
    g_assert_cmpint(write_at(blk, 0, 512), ==, 0);
    g_assert_cmpint(rec->count[REC_WRITE], ==, 2);
    blk_unref(blk);
}

static void test_inject_sector(void)
{
    BlockBackend *blk = open_blk("driver=blkdebug,image.driver=test-rec,"
                                 "inject-error.0.event=pwritev,"
                                 "inject-error.0.sector=8");

    g_assert_cmpint(write_at(blk, 0, 512), ==, 0);
    g_assert_cmpint(write_at(blk, 4096, 512), ==, -EIO);
    /* A request fails if it holds the sector's first byte... */
    g_assert_cmpint(write_at(blk, 4000, 200), ==, -EIO);
    /* ...not merely some byte of it (QEMU 7.2 does the same). */
    g_assert_cmpint(write_at(blk, 4100, 100), ==, 0);
    g_assert_cmpint(write_at(blk, 4097, 1000), ==, 0);
    /*
     * A flush has no range, so no sector rule covers it.  The first
     * flush reports the writes that failed (the core's rule); the
     * second would fail only if the rule covered flushes.
     */
    g_assert_cmpint(blk_flush(blk), ==, -EIO);
    g_assert_cmpint(blk_flush(blk), ==, 0);
    blk_unref(blk);
}

static void test_inject_iotype(void)
{
    BlockBackend *blk;
    int64_t pnum, map;
    BlockDriverState *file;

    blk = open_blk("driver=blkdebug,image.driver=test-rec,"
                   "inject-error.0.event=pwritev,"
                   "inject-error.0.iotype=flush");
    g_assert_cmpint(write_at(blk, 0, 512), ==, 0);
    g_assert_cmpint(read_at(blk, 0, 512), ==, 0);
    g_assert_cmpint(blk_flush(blk), ==, -EIO);
    blk_unref(blk);

    /* By default every type but block status fails. */
    blk = open_blk("driver=blkdebug,image.driver=test-rec,"
                   "inject-error.0.event=pwritev");
    g_assert_cmpint(write_at(blk, 0, 512), ==, -EIO);
    g_assert_cmpint(blk_block_status(blk, 0, 512, &pnum, &map, &file), >=,
                    0);
    g_assert_cmpint(blk_flush(blk), ==, -EIO);
    g_assert_cmpint(blk_pwrite_zeroes(blk, 0, 512, 0), ==, -EIO);
    blk_unref(blk);

    blk = open_blk("driver=blkdebug,image.driver=test-rec,"
                   "inject-error.0.event=pwritev,"
                   "inject-error.0.iotype=block-status");
    g_assert_cmpint(write_at(blk, 0, 512), ==, 0);
    g_assert_cmpint(blk_block_status(blk, 0, 512, &pnum, &map, &file), ==,
                    -EIO);
    blk_unref(blk);

    blk = open_blk("driver=blkdebug,image.driver=test-rec,"
                   "inject-error.0.event=pwritev_zero,"
                   "inject-error.0.iotype=write-zeroes");
    g_assert_cmpint(write_at(blk, 0, 512), ==, 0);
    g_assert_cmpint(blk_pwrite_zeroes(blk, 0, 512, 0), ==, -EIO);
    g_assert_cmpint(blk_pwrite_zeroes(blk, 0, 512, 0), ==, -EIO);
    g_assert_cmpint(write_at(blk, 0, 512), ==, 0);
    g_assert_cmpint(rec_of(blk)->count[REC_ZEROES], ==, 0);
    blk_unref(blk);

    blk = open_blk("driver=blkdebug,image.driver=test-rec,"
                   "inject-error.0.event=pwritev,"
                   "inject-error.0.iotype=discard");
    g_assert_cmpint(write_at(blk, 0, 512), ==, 0);
    g_assert_cmpint(blk_pdiscard(blk, 0, 512), ==, -EIO);
    g_assert_cmpint(rec_of(blk)->count[REC_DISCARD], ==, 0);
    blk_unref(blk);
}

static void test_inject_immediately(void)
{
    const char *opts[] = {
        "driver=blkdebug,image.driver=test-rec,"
        "inject-error.0.event=pwritev,inject-error.0.immediately=on",
        "driver=blkdebug,image.driver=test-rec,"
        "inject-error.0.event=pwritev",
    };
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(opts); i++) {
        BlockBackend *blk = open_blk(opts[i]);
        Req r = { 0 };

        req_start(&r, blk, 0);
        /* Immediately: failed before the coroutine ever yielded. */
        g_assert_cmpint(req_done(&r), ==, i == 0);
        AIO_WAIT_WHILE(qemu_get_aio_context(), !req_done(&r));
        g_assert_cmpint(r.ret, ==, -EIO);
        g_assert_cmpint(rec_of(blk)->count[REC_WRITE], ==, 0);
        blk_unref(blk);
    }
}

static void test_inject_errno_values(void)
{
    BlockBackend *blk;

    /* errno 0 or negative injects nothing, as in QEMU. */
    blk = open_blk("driver=blkdebug,image.driver=test-rec,"
                   "inject-error.0.event=pwritev,inject-error.0.errno=0");
    g_assert_cmpint(write_at(blk, 0, 512), ==, 0);
    blk_unref(blk);
    blk = open_blk("driver=blkdebug,image.driver=test-rec,"
                   "inject-error.0.event=pwritev,inject-error.0.errno=-5");
    g_assert_cmpint(write_at(blk, 0, 512), ==, 0);
    blk_unref(blk);
    /* Only the low 32 bits count: 2^32 + 5 is EIO. */
    blk = open_blk("driver=blkdebug,image.driver=test-rec,"
                   "inject-error.0.event=pwritev,"
                   "inject-error.0.errno=4294967301");
    g_assert_cmpint(write_at(blk, 0, 512), ==, -EIO);
    blk_unref(blk);
}

static void test_inject_first_rule_wins(void)
{
    g_autofree char *path = config_file("[inject-error]\n"
                                        "event = \"pwritev\"\n"
                                        "errno = \"28\"\n");
    g_autofree char *opts = NULL;
    BlockBackend *blk;

    blk = open_blk("driver=blkdebug,image.driver=test-rec,"
                   "inject-error.0.event=pwritev,inject-error.0.errno=28,"
                   "inject-error.1.event=pwritev,inject-error.1.errno=5");
    g_assert_cmpint(write_at(blk, 0, 512), ==, -ENOSPC);
    blk_unref(blk);

    /* Rules from the config file come before inline ones. */
    opts = g_strdup_printf("driver=blkdebug,image.driver=test-rec,"
                           "config=%s,inject-error.0.event=pwritev,"
                           "inject-error.0.errno=5", path);
    blk = open_blk(opts);
    g_assert_cmpint(write_at(blk, 0, 512), ==, -ENOSPC);
    blk_unref(blk);
    unlink(path);
}

/* ---- Events raised by formats ---- */

typedef struct EventSeq {
    BlockBackend *blk;
    int r[6];
} EventSeq;

static int coroutine_fn co_read_at(BlockBackend *blk, int64_t offset)
{
    uint8_t buf[512];
    QEMUIOVector qiov;

    qemu_iovec_init_buf(&qiov, buf, sizeof(buf));
    return blk_co_preadv(blk, offset, sizeof(buf), &qiov, 0);
}

static void coroutine_fn event_seq_entry(void *opaque)
{
    EventSeq *e = opaque;
    BlockDriverState *bs = blk_bs(e->blk);

    e->r[0] = co_read_at(e->blk, 0);
    bdrv_debug_event(bs, BLKDBG_READ_AIO);
    e->r[1] = co_read_at(e->blk, 0);
    /* An event without inject-error rules leaves the active ones. */
    bdrv_debug_event(bs, BLKDBG_L2_LOAD);
    e->r[2] = co_read_at(e->blk, 0);
    /* One with rules replaces them. */
    bdrv_debug_event(bs, BLKDBG_WRITE_AIO);
    e->r[3] = co_read_at(e->blk, 0);
    e->r[4] = co_read_at(e->blk, 1000 * 512);
    /* Events on other nodes, or none, do nothing. */
    bdrv_debug_event(bs->file->bs, BLKDBG_READ_AIO);
    bdrv_debug_event(NULL, BLKDBG_READ_AIO);
    BLKDBG_EVENT(NULL, BLKDBG_READ_AIO);
    e->r[5] = co_read_at(e->blk, 1000 * 512);
}

static void test_events_from_format(void)
{
    BlockBackend *blk = open_blk("driver=blkdebug,image.driver=test-rec,"
                                 "inject-error.0.event=read_aio,"
                                 "inject-error.0.errno=28,"
                                 "inject-error.1.event=write_aio,"
                                 "inject-error.1.sector=1000");
    EventSeq e = { .blk = blk };

    run_in_coroutine(event_seq_entry, &e);
    g_assert_cmpint(e.r[0], ==, 0);
    g_assert_cmpint(e.r[1], ==, -ENOSPC);
    g_assert_cmpint(e.r[2], ==, -ENOSPC);
    g_assert_cmpint(e.r[3], ==, 0);
    g_assert_cmpint(e.r[4], ==, -EIO);
    g_assert_cmpint(e.r[5], ==, -EIO);
    blk_unref(blk);
}

/* ---- Events raised by the block layer ---- */

typedef enum OpType { OP_WRITE, OP_ZEROES, OP_FLUSH } OpType;

typedef struct Op {
    BlockBackend *blk;
    OpType type;
    int64_t offset;
    int ret;
    bool done;
} Op;

static void coroutine_fn op_entry(void *opaque)
{
    Op *op = opaque;
    uint8_t buf[512] = { 0 };
    QEMUIOVector qiov;

    qemu_iovec_init_buf(&qiov, buf, sizeof(buf));
    switch (op->type) {
    case OP_WRITE:
        op->ret = blk_co_pwritev(op->blk, op->offset, sizeof(buf), &qiov, 0);
        break;
    case OP_ZEROES:
        op->ret = blk_co_pwrite_zeroes(op->blk, op->offset, 4096, 0);
        break;
    case OP_FLUSH:
        op->ret = blk_co_flush(op->blk);
        break;
    }
    qatomic_store_release(&op->done, true);
    aio_wait_kick();
}

/*
 * Start @type on @blk and check that it stops at breakpoint @event of
 * @dbg (the blkdebug node) and completes once resumed.
 */
static void check_event_stops(BlockBackend *blk, BlockDriverState *dbg,
                              const char *event, OpType type,
                              int64_t offset)
{
    Op op = { .blk = blk, .type = type, .offset = offset };

    g_assert_cmpint(blkdebug_debug_breakpoint(dbg, event, "E"), ==, 0);
    aio_co_enter(blk_get_aio_context(blk),
                 qemu_coroutine_create(op_entry, &op));
    if (!blkdebug_debug_is_suspended(dbg, "E")) {
        g_error("no request stopped at '%s'", event);
    }
    g_assert_false(qatomic_load_acquire(&op.done));
    g_assert_cmpint(blkdebug_debug_resume(dbg, "E"), ==, 0);
    AIO_WAIT_WHILE(blk_get_aio_context(blk), !qatomic_load_acquire(&op.done));
    g_assert_cmpint(op.ret, ==, 0);
}

static void test_events_from_block_layer(void)
{
    BlockBackend *blk;
    BlockDriverState *dbg;
    Op op = { 0 };

    /* Writes to the blkdebug node itself; align makes 512 B unaligned. */
    blk = open_blk("driver=blkdebug,align=4096,image.driver=null-co");
    dbg = blk_bs(blk);
    check_event_stops(blk, dbg, "pwritev", OP_WRITE, 0);
    check_event_stops(blk, dbg, "pwritev_done", OP_WRITE, 4096);
    check_event_stops(blk, dbg, "pwritev_rmw_head", OP_WRITE, 4096 + 512);
    check_event_stops(blk, dbg, "pwritev_rmw_after_head", OP_WRITE, 512);
    check_event_stops(blk, dbg, "pwritev_rmw_tail", OP_WRITE, 8192);
    check_event_stops(blk, dbg, "pwritev_rmw_after_tail", OP_WRITE, 8192);
    check_event_stops(blk, dbg, "pwritev_zero", OP_ZEROES, 0);
    /* Flushing blkdebug raises the flush events on its child only. */
    op.blk = blk;
    op.type = OP_FLUSH;
    g_assert_cmpint(blkdebug_debug_breakpoint(dbg, "flush_to_os", "F"),
                    ==, 0);
    run_in_coroutine(op_entry, &op);
    g_assert_cmpint(op.ret, ==, 0);
    g_assert_false(blkdebug_debug_is_suspended(dbg, "F"));
    g_assert_cmpint(blkdebug_debug_remove_breakpoint(dbg, "F"), ==, 0);
    blk_unref(blk);

    /* A format above it raises them on its file: the blkdebug node. */
    blk = open_blk("driver=raw,file.driver=blkdebug,"
                   "file.image.driver=null-co");
    dbg = blk_bs(blk)->file->bs;
    check_event_stops(blk, dbg, "flush_to_os", OP_FLUSH, 0);
    check_event_stops(blk, dbg, "flush_to_disk", OP_FLUSH, 0);
    blk_unref(blk);

    /* cache.no-flush: nothing goes to the disk, so no flush_to_disk. */
    blk = open_blk("driver=raw,cache.no-flush=on,file.driver=blkdebug,"
                   "file.image.driver=null-co");
    dbg = blk_bs(blk)->file->bs;
    g_assert_cmpint(blkdebug_debug_breakpoint(dbg, "flush_to_disk", "D"),
                    ==, 0);
    op.blk = blk;
    op.done = false;
    run_in_coroutine(op_entry, &op);
    g_assert_cmpint(op.ret, ==, 0);
    g_assert_false(blkdebug_debug_is_suspended(dbg, "D"));
    blk_unref(blk);
}

static void test_event_names(void)
{
    int i;

    g_assert_cmpstr(blkdebug_event_name(BLKDBG_L2_LOAD), ==, "l2_load");
    g_assert_cmpstr(blkdebug_event_name(BLKDBG_NONE), ==, "none");
    g_assert_null(blkdebug_event_name(BLKDBG__MAX));
    g_assert_cmpint(blkdebug_event_lookup("pwritev_rmw_after_tail"), ==,
                    BLKDBG_PWRITEV_RMW_AFTER_TAIL);
    g_assert_cmpint(blkdebug_event_lookup("bogus"), ==, -1);
    g_assert_cmpint(BLKDBG__MAX, ==, 48);
    for (i = 0; i < BLKDBG__MAX; i++) {
        const char *name = blkdebug_event_name(i);

        g_assert_nonnull(name);
        g_assert_cmpint(blkdebug_event_lookup(name), ==, i);
    }
}

/* ---- States ---- */

static void test_set_state(void)
{
    BlockBackend *blk;

    blk = open_blk("driver=blkdebug,image.driver=test-rec,"
                   "set-state.0.event=pwritev,set-state.0.state=1,"
                   "set-state.0.new_state=2,"
                   "set-state.1.event=pwritev,set-state.1.state=2,"
                   "set-state.1.new_state=3,"
                   "inject-error.0.event=pwritev,inject-error.0.state=3,"
                   "inject-error.0.once=on");
    g_assert_cmpint(write_at(blk, 0, 512), ==, 0);         /* 1 -> 2 */
    g_assert_cmpint(write_at(blk, 0, 512), ==, 0);         /* 2 -> 3 */
    g_assert_cmpint(write_at(blk, 0, 512), ==, -EIO);      /* in 3 */
    g_assert_cmpint(write_at(blk, 0, 512), ==, 0);
    blk_unref(blk);

    /* Every rule of an event sees the state from before the event. */
    blk = open_blk("driver=blkdebug,image.driver=test-rec,"
                   "set-state.0.event=pwritev,set-state.0.new_state=2,"
                   "inject-error.0.event=pwritev,inject-error.0.state=2");
    g_assert_cmpint(write_at(blk, 0, 512), ==, 0);
    g_assert_cmpint(write_at(blk, 0, 512), ==, -EIO);
    blk_unref(blk);

    /* "-1" wraps to a state the node never reaches. */
    blk = open_blk("driver=blkdebug,image.driver=test-rec,"
                   "inject-error.0.event=pwritev,inject-error.0.state=-1");
    g_assert_cmpint(write_at(blk, 0, 512), ==, 0);
    blk_unref(blk);
}

/* ---- Breakpoints ---- */

typedef struct ResumeTimer {
    BlockDriverState *bs;
    const char *tag;
    int64_t fired_at;
    int ret;
} ResumeTimer;

static void resume_timer_cb(void *opaque)
{
    ResumeTimer *t = opaque;

    t->fired_at = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
    t->ret = blkdebug_debug_resume(t->bs, t->tag);
}

static void test_breakpoint_drain_waits(void)
{
    BlockBackend *blk = open_blk("driver=blkdebug,image.driver=null-co");
    BlockDriverState *bs = blk_bs(blk);
    ResumeTimer rt = { .bs = bs, .tag = "A", .ret = -EINPROGRESS };
    QEMUTimer *timer;
    Req r = { 0 };
    int64_t start;

    g_assert_cmpint(blkdebug_debug_breakpoint(bs, "pwritev", "A"), ==, 0);
    g_assert_false(blkdebug_debug_is_suspended(bs, "A"));
    req_start(&r, blk, 0);
    g_assert_true(blkdebug_debug_is_suspended(bs, "A"));
    g_assert_false(req_done(&r));
    g_assert_cmpuint(qatomic_read(&bs->in_flight), ==, 1);

    timer = aio_timer_new(qemu_get_aio_context(), QEMU_CLOCK_REALTIME,
                          SCALE_MS, resume_timer_cb, &rt);
    start = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
    timer_mod_ns(timer, start + 20 * SCALE_MS);

    /* The suspended request is in flight: drain waits for the resume. */
    bdrv_drained_begin(bs);
    g_assert_true(req_done(&r));
    g_assert_cmpint(r.ret, ==, 0);
    g_assert_cmpint(rt.ret, ==, 0);
    g_assert_cmpint(rt.fired_at - start, >=, 20 * SCALE_MS);
    g_assert_cmpuint(qatomic_read(&bs->in_flight), ==, 0);
    g_assert_false(blkdebug_debug_is_suspended(bs, "A"));
    bdrv_drained_end(bs);

    /* A breakpoint fires once. */
    g_assert_cmpint(write_at(blk, 0, 512), ==, 0);
    g_assert_cmpint(blkdebug_debug_resume(bs, "A"), ==, -ENOENT);
    timer_free(timer);
    blk_unref(blk);
}

static void test_breakpoint_api(void)
{
    BlockBackend *blk = open_blk("driver=blkdebug,image.driver=null-co");
    BlockDriverState *bs = blk_bs(blk);
    g_autoptr(GError) err = NULL;
    BlockDriverState *plain = open_node("driver=null-co", 0, &err);
    Req r = { 0 };

    g_assert_no_error(err);
    g_assert_cmpint(blkdebug_debug_breakpoint(bs, "bogus", "A"), ==,
                    -ENOENT);
    g_assert_cmpint(blkdebug_debug_resume(bs, "A"), ==, -ENOENT);
    g_assert_cmpint(blkdebug_debug_remove_breakpoint(bs, "A"), ==, -ENOENT);

    g_assert_cmpint(blkdebug_debug_breakpoint(bs, "pwritev", "A"), ==, 0);
    g_assert_cmpint(blkdebug_debug_remove_breakpoint(bs, "A"), ==, 0);
    g_assert_cmpint(blkdebug_debug_remove_breakpoint(bs, "A"), ==, -ENOENT);
    g_assert_cmpint(write_at(blk, 0, 512), ==, 0);

    /*
     * remove_break resumes what waits on the tag; it still fails when
     * no breakpoint was left to delete, as QEMU's does.
     */
    g_assert_cmpint(blkdebug_debug_breakpoint(bs, "pwritev", "A"), ==, 0);
    req_start(&r, blk, 0);
    g_assert_true(blkdebug_debug_is_suspended(bs, "A"));
    g_assert_cmpint(blkdebug_debug_remove_breakpoint(bs, "A"), ==, -ENOENT);
    req_wait(&r);

    /* Nodes that are not blkdebug, and have none below them. */
    g_assert_cmpint(blkdebug_debug_breakpoint(plain, "pwritev", "A"), ==,
                    -ENOTSUP);
    g_assert_cmpint(blkdebug_debug_resume(plain, "A"), ==, -ENOTSUP);
    g_assert_cmpint(blkdebug_debug_remove_breakpoint(plain, "A"), ==,
                    -ENOTSUP);
    g_assert_false(blkdebug_debug_is_suspended(plain, "A"));
    bdrv_unref(plain);
    blk_unref(blk);
}

static void test_breakpoint_through_format(void)
{
    BlockBackend *blk = open_blk("driver=raw,file.driver=blkdebug,"
                                 "file.image.driver=null-co");
    BlockDriverState *raw = blk_bs(blk);
    Req r = { 0 };

    /* Set on the top node, the breakpoint lands on blkdebug below. */
    g_assert_cmpint(blkdebug_debug_breakpoint(raw, "write_aio", "W"), ==, 0);
    req_start(&r, blk, 4096);
    g_assert_true(blkdebug_debug_is_suspended(raw, "W"));
    g_assert_true(blkdebug_debug_is_suspended(raw->file->bs, "W"));
    /* The request is in flight in the raw node too. */
    g_assert_cmpuint(qatomic_read(&raw->in_flight), ==, 1);
    g_assert_cmpint(blkdebug_debug_resume(raw, "W"), ==, 0);
    req_wait(&r);
    blk_unref(blk);
}

static void test_breakpoint_shared_tag(void)
{
    BlockBackend *blk = open_blk("driver=blkdebug,image.driver=null-co");
    BlockDriverState *bs = blk_bs(blk);
    Req a = { 0 }, b = { 0 };

    g_assert_cmpint(blkdebug_debug_breakpoint(bs, "pwritev", "T"), ==, 0);
    req_start(&a, blk, 0);
    g_assert_cmpint(blkdebug_debug_breakpoint(bs, "pwritev", "T"), ==, 0);
    req_start(&b, blk, 4096);
    g_assert_cmpuint(qatomic_read(&bs->in_flight), ==, 2);

    /* The most recently suspended request goes first. */
    g_assert_cmpint(blkdebug_debug_resume(bs, "T"), ==, 0);
    req_wait(&b);
    g_assert_false(req_done(&a));
    g_assert_true(blkdebug_debug_is_suspended(bs, "T"));
    g_assert_cmpint(blkdebug_debug_resume(bs, "T"), ==, 0);
    req_wait(&a);
    g_assert_cmpint(blkdebug_debug_resume(bs, "T"), ==, -ENOENT);
    blk_unref(blk);
}

static void test_breakpoint_two_tags(void)
{
    BlockBackend *blk = open_blk("driver=blkdebug,image.driver=null-co");
    BlockDriverState *bs = blk_bs(blk);
    Req r = { 0 };
    int i;

    g_assert_cmpint(blkdebug_debug_breakpoint(bs, "pwritev", "A"), ==, 0);
    g_assert_cmpint(blkdebug_debug_breakpoint(bs, "pwritev", "B"), ==, 0);
    req_start(&r, blk, 0);
    g_assert_true(blkdebug_debug_is_suspended(bs, "A"));
    g_assert_true(blkdebug_debug_is_suspended(bs, "B"));

    /*
     * The request hit both and waits until both are resumed.  (Two
     * breakpoints with one tag on one event would catch it twice too,
     * as in QEMU.)
     */
    g_assert_cmpint(blkdebug_debug_resume(bs, "A"), ==, 0);
    for (i = 0; i < 10; i++) {
        aio_poll(qemu_get_aio_context(), false);
    }
    g_assert_false(req_done(&r));
    g_assert_cmpint(blkdebug_debug_resume(bs, "B"), ==, 0);
    req_wait(&r);
    blk_unref(blk);
}

/* Breakpoints on another event than the request's do nothing to it. */
static void test_breakpoint_other_events(void)
{
    BlockBackend *blk = open_blk("driver=blkdebug,image.driver=null-co");
    BlockDriverState *bs = blk_bs(blk);
    Req r = { 0 };

    g_assert_cmpint(blkdebug_debug_breakpoint(bs, "pwritev_done", "D"), ==,
                    0);
    g_assert_cmpint(blkdebug_debug_breakpoint(bs, "l2_load", "L"), ==, 0);
    g_assert_cmpint(read_at(blk, 0, 512), ==, 0);
    g_assert_false(blkdebug_debug_is_suspended(bs, "D"));
    /* A write stops after it has been passed on: at pwritev_done. */
    req_start(&r, blk, 0);
    g_assert_true(blkdebug_debug_is_suspended(bs, "D"));
    g_assert_false(blkdebug_debug_is_suspended(bs, "L"));
    g_assert_cmpint(blkdebug_debug_resume(bs, "D"), ==, 0);
    req_wait(&r);
    g_assert_cmpint(blkdebug_debug_remove_breakpoint(bs, "L"), ==, 0);
    blk_unref(blk);
}

static void test_breakpoint_iothread(void)
{
    IOThread *t = iothread_create("blkdebug-io", NULL);
    AioContext *io_ctx = iothread_get_aio_context(t);
    BlockBackend *blk = open_blk("driver=blkdebug,image.driver=null-co");
    BlockDriverState *bs = blk_bs(blk);
    gint64 deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;
    Req r = { 0 };

    g_assert_cmpint(bdrv_try_change_aio_context(bs, io_ctx, NULL), ==, 0);
    g_assert_cmpint(blkdebug_debug_breakpoint(bs, "pwritev", "IO"), ==, 0);
    req_start(&r, blk, 0);
    while (!blkdebug_debug_is_suspended(bs, "IO")) {
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_usleep(100);
    }
    g_usleep(10 * 1000);
    g_assert_false(req_done(&r));
    g_assert_cmpuint(qatomic_read(&bs->in_flight), ==, 1);

    /* Resumed from the main thread, it completes in its own. */
    g_assert_cmpint(blkdebug_debug_resume(bs, "IO"), ==, 0);
    req_wait(&r);
    g_assert_cmpint(bdrv_try_change_aio_context(bs, qemu_get_aio_context(),
                                                NULL), ==, 0);
    blk_unref(blk);
    iothread_destroy(t);
}

/* ---- Limits ---- */

static bool calls_aligned(RecState *rec, int64_t align)
{
    guint i;

    for (i = 0; i < rec->calls->len; i++) {
        RecCall *c = &g_array_index(rec->calls, RecCall, i);

        if (c->offset % align || c->bytes % align) {
            return false;
        }
    }
    return true;
}

static void test_align_forces_rmw(void)
{
    BlockBackend *blk = open_blk("driver=blkdebug,align=4096,"
                                 "image.driver=test-rec");
    RecState *rec = rec_of(blk);
    uint8_t buf[200];
    uint8_t back[200];

    g_assert_cmpuint(blk_bs(blk)->bl.request_alignment, ==, 4096);
    memset(rec->data, 0x11, 8192);
    memset(buf, 0x22, sizeof(buf));

    g_assert_cmpint(blk_pwrite(blk, 100, sizeof(buf), buf, 0), ==, 0);
    /* The child saw the whole block read and written back. */
    g_assert_cmpint(rec->count[REC_READ], ==, 1);
    g_assert_cmpint(rec->count[REC_WRITE], ==, 1);
    g_assert_true(calls_aligned(rec, 4096));
    g_assert_cmpint(rec->data[99], ==, 0x11);
    g_assert_cmpmem(rec->data + 100, sizeof(buf), buf, sizeof(buf));
    g_assert_cmpint(rec->data[300], ==, 0x11);

    /* Across a block boundary: head and tail blocks. */
    g_assert_cmpint(blk_pwrite(blk, 4000, sizeof(buf), buf, 0), ==, 0);
    g_assert_true(calls_aligned(rec, 4096));
    g_assert_cmpint(blk_pread(blk, 4000, sizeof(back), back, 0), ==, 0);
    g_assert_cmpmem(back, sizeof(back), buf, sizeof(buf));
    g_assert_true(calls_aligned(rec, 4096));
    blk_unref(blk);
}

static void test_limits_split(void)
{
    BlockBackend *blk = open_blk("driver=blkdebug,max-transfer=4096,"
                                 "opt-write-zero=4096,max-write-zero=8192,"
                                 "opt-discard=4096,max-discard=8192,"
                                 "image.driver=test-rec");
    RecState *rec = rec_of(blk);
    guint i;

    g_assert_cmpint(write_at(blk, 0, 16384), ==, 0);
    g_assert_cmpint(rec->count[REC_WRITE], ==, 4);

    /* Below opt-write-zero: the block layer writes a zero buffer. */
    memset(rec->data, 0xff, 65536);
    g_assert_cmpint(blk_pwrite_zeroes(blk, 0, 512, 0), ==, 0);
    g_assert_cmpint(rec->count[REC_ZEROES], ==, 0);
    g_assert_cmpint(rec->count[REC_WRITE], ==, 5);
    g_assert_cmpint(rec->data[0], ==, 0);
    g_assert_cmpint(rec->data[512], ==, 0xff);
    g_assert_cmpint(blk_pwrite_zeroes(blk, 0, 512, BDRV_REQ_NO_FALLBACK),
                    ==, -ENOTSUP);

    /* Aligned: passed on, in pieces of max-write-zero. */
    g_assert_cmpint(blk_pwrite_zeroes(blk, 0, 32768, 0), ==, 0);
    g_assert_cmpint(rec->count[REC_ZEROES], ==, 4);

    g_assert_cmpint(blk_pdiscard(blk, 0, 32768), ==, 0);
    g_assert_cmpint(rec->count[REC_DISCARD], ==, 4);
    for (i = 0; i < rec->calls->len; i++) {
        RecCall *c = &g_array_index(rec->calls, RecCall, i);

        g_assert_cmpint(c->bytes, <=, 8192);
    }
    /* Discard is advisory: what is not aligned is dropped. */
    g_assert_cmpint(blk_pdiscard(blk, 100, 1000), ==, 0);
    g_assert_cmpint(rec->count[REC_DISCARD], ==, 4);
    blk_unref(blk);
}

static void test_child_perms(void)
{
    BlockBackend *blk = open_blk("driver=blkdebug,image.driver=null-co,"
                                 "take-child-perms.0=resize,"
                                 "unshare-child-perms.0=write");
    BdrvChild *c = blk_bs(blk)->file;

    g_assert_cmpstr(c->name, ==, "image");
    g_assert_true(c->perm & BLK_PERM_RESIZE);
    g_assert_true(c->perm & BLK_PERM_WRITE);
    g_assert_false(c->shared_perm & BLK_PERM_WRITE);
    blk_unref(blk);
}

typedef struct StatusCall {
    BlockDriverState *bs;
    int64_t pnum;
    int64_t map;
    BlockDriverState *file;
    int ret;
} StatusCall;

static void coroutine_fn status_entry(void *opaque)
{
    StatusCall *c = opaque;

    c->ret = bdrv_co_block_status(c->bs, 4096, 8192, &c->pnum, &c->map,
                                  &c->file);
}

static void test_status_passthrough(void)
{
    BlockBackend *blk = open_blk("driver=blkdebug,image.driver=null-co,"
                                 "image.read-zeroes=on,image.size=64k");
    StatusCall c = { .bs = blk_bs(blk) };

    run_in_coroutine(status_entry, &c);
    g_assert_cmpint(c.ret, ==, BDRV_BLOCK_ZERO | BDRV_BLOCK_OFFSET_VALID |
                    BDRV_BLOCK_ALLOCATED);
    g_assert_cmpint(c.pnum, ==, 8192);
    g_assert_cmpint(c.map, ==, 4096);
    g_assert_true(c.file == blk_bs(blk)->file->bs);
    g_assert_cmpint(blk_getlength(blk), ==, 65536);
    blk_unref(blk);
}

/* ---- Options ---- */

#define BD "driver=blkdebug,image.driver=null-co,"

static void test_open_errors(void)
{
    static const struct {
        const char *opts;
        const char *message;
    } cases[] = {
        { "driver=blkdebug",
          "A block device must be specified for \"image\"" },
        { BD "foo=1",
          "Block protocol 'blkdebug' doesn't support the option 'foo'" },
        { BD "align=3", "Cannot meet constraints with align 3" },
        { BD "align=2G", "Cannot meet constraints with align 2147483648" },
        { BD "align=x",
          "Parameter 'align' expects a non-negative number below 2^64" },
        { BD "align=512,max-transfer=511",
          "Cannot meet constraints with max-transfer 511" },
        { BD "max-transfer=2147483647",
          "Cannot meet constraints with max-transfer 2147483647" },
        { BD "align=512,opt-write-zero=100",
          "Cannot meet constraints with opt-write-zero 100" },
        { BD "opt-write-zero=1k,max-write-zero=1536",
          "Cannot meet constraints with max-write-zero 1536" },
        { BD "opt-write-zero=3,max-write-zero=5",
          "Cannot meet constraints with max-write-zero 5" },
        { BD "align=512,opt-discard=100",
          "Cannot meet constraints with opt-discard 100" },
        { BD "align=512,max-discard=1000",
          "Cannot meet constraints with max-discard 1000" },
        { BD "max-discard=4G",
          "Cannot meet constraints with max-discard 4294967296" },
        /* Limits are checked once the child is there. */
        { "driver=blkdebug,align=3",
          "A block device must be specified for \"image\"" },
        { BD "inject-error.0.event=bogus",
          "invalid parameter value: bogus" },
        { BD "inject-error.0.errno=5", "Missing event name for rule" },
        { BD "set-state.0.new_state=2", "Missing event name for rule" },
        { BD "inject-error.0.event=pwritev,inject-error.0.errno=x",
          "Parameter 'errno' expects a number" },
        { BD "inject-error.0.event=pwritev,inject-error.0.sector=x",
          "Parameter 'sector' expects a number" },
        { BD "inject-error.0.event=pwritev,inject-error.0.once=x",
          "Parameter 'once' expects 'on' or 'off'" },
        { BD "inject-error.0.event=pwritev,inject-error.0.iotype=x",
          "invalid parameter value: x" },
        { BD "inject-error.0.event=pwritev,inject-error.0.foo=x",
          "[inject-error] section doesn't support the option 'foo'" },
        { BD "inject-error.0.event=pwritev,inject-error.0.iotype.0=write",
          "[inject-error] section doesn't support the option 'iotype.0'" },
        { BD "inject-error.0.event=pwritev,inject-error.0.new_state=2",
          "[inject-error] section doesn't support the option "
          "'new_state'" },
        { BD "set-state.0.event=pwritev,set-state.0.once=on",
          "[set-state] section doesn't support the option 'once'" },
        { BD "inject-error.0=x",
          "[inject-error] section (index 0) does not consist of keys" },
        /* Every rule's values are checked before any rule's event. */
        { BD "inject-error.0.event=bogus,set-state.0.foo=1",
          "[set-state] section doesn't support the option 'foo'" },
        { BD "inject-error.0.foo=1,inject-error.0.errno=x",
          "Parameter 'errno' expects a number" },
        { BD "take-child-perms.0=bogus",
          "Parameter 'null' does not accept value 'bogus'" },
        { "driver=blkdebug,take-child-perms.0=bogus",
          "Parameter 'null' does not accept value 'bogus'" },
        { BD "take-child-perms.0=bogus,inject-error.0.event=bogus",
          "invalid parameter value: bogus" },
        { "driver=blkdebug,config=/nonexistent/blkdebug.conf,align=3",
          "Could not read blkdebug config file: No such file or "
          "directory" },
        { "driver=blkdebug,config=/nonexistent/blkdebug.conf,align=x",
          "Parameter 'align' expects a non-negative number below 2^64" },
    };
    g_autoptr(GError) err = NULL;
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(cases); i++) {
        expect_open_error(cases[i].opts, cases[i].message);
    }

    /* The core words this one; check only that it names the node. */
    g_assert_null(open_node("driver=blkdebug,image=nosuch0", 0, &err));
    g_assert_nonnull(err);
    g_assert_nonnull(strstr(err->message, "node-name='nosuch0'"));
}

static void test_inline_forms(void)
{
    BlockBackend *blk;

    /* An unindexed rule is one rule, as QEMU takes it. */
    blk = open_blk(BD "inject-error.event=pwritev");
    g_assert_cmpint(write_at(blk, 0, 512), ==, -EIO);
    blk_unref(blk);

    /* Options given as JSON keep their types. */
    {
        g_autoptr(GError) err = NULL;
        g_autoptr(JsonObject) o = keyval_parse_json_filename(
            "json:{\"driver\": \"blkdebug\","
            " \"image\": {\"driver\": \"null-co\"},"
            " \"inject-error\": [{\"event\": \"pwritev\", \"errno\": 28,"
            "                     \"once\": true}]}", &err);
        BlockDriverState *bs;

        g_assert_no_error(err);
        bs = bdrv_open_options(o, BDRV_O_RDWR, &err);
        g_assert_no_error(err);
        blk = blk_new(qemu_get_aio_context(),
                      BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE,
                      BLK_PERM_ALL);
        g_assert_true(blk_insert_bs(blk, bs, &err));
        bdrv_unref(bs);
        g_assert_cmpint(write_at(blk, 0, 512), ==, -ENOSPC);
        g_assert_cmpint(write_at(blk, 0, 512), ==, 0);
        blk_unref(blk);
    }
}

/* ---- The config file ---- */

static void test_config_file(void)
{
    g_autofree char *path = config_file(
        "# rules for the test\n"
        "\n"
        "[set-state]\n"
        "  event = \"pwritev\"\n"
        "new_state=\"5\"\n"
        "new_state = \"2\"\n"
        "[inject-error \"id1\"]\n"
        "event = \"pwritev\" # trailing text is ignored\n"
        "state = \"2\"\n"
        "errno = \"28\"\n"
        "[inject-error]   \n"
        "event = \"flush_to_os\"\n"
        "once = \"on\"");
    g_autofree char *opts = NULL;
    BlockBackend *blk;

    /* new_state="5" has no blank before '=': an unknown option. */
    opts = g_strdup_printf(BD "config=%s", path);
    expect_open_error(opts, "Invalid parameter 'new_state=\"5\"'");
    unlink(path);
    g_free(path);
    g_free(opts);

    path = config_file("# rules for the test\n"
                       "\n"
                       "[set-state]\n"
                       "  event = \"pwritev\"\n"
                       "new_state = \"3\"\n"
                       "new_state = \"2\"\n"
                       "[inject-error \"id1\"]\n"
                       "event = \"pwritev\" # trailing text is ignored\n"
                       "state = \"2\"\n"
                       "errno = \"28\"\n"
                       "[inject-error]   \n"
                       "event = \"l2_load\"\n"
                       "once = \"on\"");
    opts = g_strdup_printf("driver=blkdebug,image.driver=test-rec,"
                           "config=%s", path);
    blk = open_blk(opts);
    /* The later new_state wins; the state check sees the old state. */
    g_assert_cmpint(write_at(blk, 0, 512), ==, 0);
    g_assert_cmpint(write_at(blk, 0, 512), ==, -ENOSPC);
    g_assert_cmpint(rec_of(blk)->count[REC_WRITE], ==, 1);
    blk_unref(blk);
    unlink(path);
}

static void test_config_errors(void)
{
    static const struct {
        const char *text;
        const char *message;
    } cases[] = {
        { "event = \"pwritev\"\n", "no group defined" },
        { "[bogus]\nevent = \"pwritev\"\n",
          "There is no option group 'bogus'" },
        { "[inject-error]\nfoo = \"x\"\n", "Invalid parameter 'foo'" },
        { "[inject-error]\nevent = \"nope\"\n",
          "invalid parameter value: nope" },
        { "[inject-error]\nerrno = \"5\"\n", "Missing event name for rule" },
        { "[inject-error]\n", "Missing event name for rule" },
        { "[inject-error]\nevent = pwritev\n",
          "invalid parameter value: " },
        { "[inject-error]\nevent = \"\"\n", "invalid parameter value: " },
        { "[inject-error]\n   \nevent = \"pwritev\"\n", "parse error" },
        { "[inject-error]\n  # not a comment\n", "Invalid parameter '#'" },
        { "[inject-error]\n=\n", "Invalid parameter '='" },
        { "[inject-error]\nevent=\"pwritev\"\n",
          "Invalid parameter 'event=\"pwritev\"'" },
        { "[inject-error]\nevent = \"pwritev\"\nerrno = \"x\"\n",
          "Parameter 'errno' expects a number" },
        { "[inject-error]\nevent = \"pwritev\"\nerrno = \"\"\n",
          "Parameter 'errno' expects a number" },
        { "[inject-error]\nevent = \"pwritev\"\nonce = \"x\"\n",
          "Parameter 'once' expects 'on' or 'off'" },
        { "[set-state]\nevent = \"pwritev\"\nonce = \"on\"\n",
          "Invalid parameter 'once'" },
        { "[inject-error]\nevent = \"pwritev\"\nnew_state = \"2\"\n",
          "Invalid parameter 'new_state'" },
        /* Values are checked as the file is read, events afterwards. */
        { "[inject-error]\nevent = \"nope\"\n[set-state]\nbad = \"1\"\n",
          "Invalid parameter 'bad'" },
    };
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *path = config_file(cases[i].text);
        g_autofree char *opts = g_strdup_printf(BD "config=%s", path);

        expect_open_error(opts, cases[i].message);
        unlink(path);
    }

    /* The file is read before inline rules are looked at. */
    expect_open_error(BD "config=/nonexistent/x.conf,"
                      "inject-error.0.event=bogus",
                      "Could not read blkdebug config file: No such file "
                      "or directory");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_assert_true(qemu_init_main_loop(NULL));
    bdrv_register(&bdrv_test_rec);
    /* The "Suspended request" lines would break the TAP stream. */
    blkdebug_set_quiet(true);

    g_test_add_func("/blkdebug/inject/persistent", test_inject_persistent);
    g_test_add_func("/blkdebug/inject/once", test_inject_once);
    g_test_add_func("/blkdebug/inject/sector", test_inject_sector);
    g_test_add_func("/blkdebug/inject/iotype", test_inject_iotype);
    g_test_add_func("/blkdebug/inject/immediately",
                    test_inject_immediately);
    g_test_add_func("/blkdebug/inject/errno-values",
                    test_inject_errno_values);
    g_test_add_func("/blkdebug/inject/first-rule-wins",
                    test_inject_first_rule_wins);
    g_test_add_func("/blkdebug/events/from-format", test_events_from_format);
    g_test_add_func("/blkdebug/events/names", test_event_names);
    g_test_add_func("/blkdebug/set-state", test_set_state);
    g_test_add_func("/blkdebug/breakpoint/drain-waits",
                    test_breakpoint_drain_waits);
    g_test_add_func("/blkdebug/breakpoint/api", test_breakpoint_api);
    g_test_add_func("/blkdebug/breakpoint/through-format",
                    test_breakpoint_through_format);
    g_test_add_func("/blkdebug/breakpoint/shared-tag",
                    test_breakpoint_shared_tag);
    g_test_add_func("/blkdebug/breakpoint/two-tags",
                    test_breakpoint_two_tags);
    g_test_add_func("/blkdebug/breakpoint/other-events",
                    test_breakpoint_other_events);
    g_test_add_func("/blkdebug/breakpoint/iothread",
                    test_breakpoint_iothread);
    g_test_add_func("/blkdebug/limits/align-forces-rmw",
                    test_align_forces_rmw);
    g_test_add_func("/blkdebug/limits/split", test_limits_split);
    g_test_add_func("/blkdebug/child-perms", test_child_perms);
    g_test_add_func("/blkdebug/status-passthrough",
                    test_status_passthrough);
    g_test_add_func("/blkdebug/options/errors", test_open_errors);
    g_test_add_func("/blkdebug/options/inline-forms", test_inline_forms);
    g_test_add_func("/blkdebug/config/file", test_config_file);
    g_test_add_func("/blkdebug/config/errors", test_config_errors);
    g_test_add_func("/blkdebug/events/block-layer",
                    test_events_from_block_layer);
    return g_test_run();
}
