/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Stream and commit: the data reads the same after the job as the chain
 * did before it, the backing file changes in the graph and in the image,
 * the dropped nodes go away; with a guest writing meanwhile (stream,
 * active commit), with nodes in an iothread, when drained, cancelled or
 * refused.  A small copy-on-write format of the test's own does the
 * unit work; QED images made and checked by Debian's qemu-img (compare,
 * check) cover the real format when both are there.
 *
 * Copyright (c) 2026 The Sluice authors
 */
#include "qemu/osdep.h"

#include <sys/wait.h>

#include "block/aio-wait.h"
#include "block/blockjob.h"
#include "block/graph-ops.h"
#include "qemu/iothread.h"
#include "qemu/main-loop.h"
#include "sysemu/block-backend.h"

/* ---- "test-chain": a copy-on-write format with a fixed layout ---- */

#define TC_MAGIC "SLCHAIN1"
#define TC_CLUSTER 4096
#define TC_MAP_OFFSET 4096              /* one byte per cluster */
#define TC_DATA_OFFSET (1024 * 1024)    /* guest offset + this */
#define TC_MAX_CLUSTERS (TC_DATA_OFFSET - TC_MAP_OFFSET)

typedef struct TcHeader {
    char magic[8];
    uint64_t size;                      /* little endian */
    char backing[1024];
    char backing_fmt[16];
} TcHeader;

typedef struct TcState {
    TcHeader hdr;
    int64_t size;
    int64_t nclusters;
    uint8_t *map;
} TcState;

static const char *const tc_options[] = { "file", NULL };

typedef struct TcSync {
    BlockDriverState *bs;
    bool write;
    int64_t offset;
    void *buf;
    int64_t bytes;
    int ret;
    bool done;
} TcSync;

static void coroutine_fn tc_sync_entry(void *opaque)
{
    TcSync *t = opaque;
    QEMUIOVector qiov;

    qemu_iovec_init_buf(&qiov, t->buf, t->bytes);
    bdrv_graph_co_rdlock();
    if (t->write) {
        t->ret = bdrv_co_pwritev(t->bs->file, t->offset, t->bytes, &qiov, 0);
    } else {
        t->ret = bdrv_co_preadv(t->bs->file, t->offset, t->bytes, &qiov, 0);
    }
    bdrv_graph_co_rdunlock();
    qatomic_store_release(&t->done, true);
    aio_wait_kick();
}

/* Metadata I/O from the main thread, in the node's context. */
static int tc_sync_io(BlockDriverState *bs, bool write, int64_t offset,
                      void *buf, int64_t bytes)
{
    TcSync t = { bs, write, offset, buf, bytes, 0, false };
    AioContext *ctx = bdrv_get_aio_context(bs);

    aio_co_enter(ctx, qemu_coroutine_create(tc_sync_entry, &t));
    AIO_WAIT_WHILE(ctx, !qatomic_load_acquire(&t.done));
    return t.ret;
}

static int tc_open(BlockDriverState *bs, JsonObject *options, int flags,
                   GError **errp)
{
    TcState *s = bs->opaque;
    int ret;

    if (!bdrv_open_child(bs, options, "file", BDRV_CHILD_IMAGE |
                         BDRV_CHILD_PRIMARY, false, errp)) {
        return -EINVAL;
    }
    ret = tc_sync_io(bs, false, 0, &s->hdr, sizeof(s->hdr));
    if (ret < 0 || memcmp(s->hdr.magic, TC_MAGIC, 8)) {
        error_setg(errp, "Not a test-chain image");
        return -EINVAL;
    }
    s->size = GUINT64_FROM_LE(s->hdr.size);
    s->nclusters = DIV_ROUND_UP(s->size, TC_CLUSTER);
    g_assert_cmpint(s->nclusters, <=, TC_MAX_CLUSTERS);
    s->map = g_malloc0(s->nclusters);
    ret = tc_sync_io(bs, false, TC_MAP_OFFSET, s->map, s->nclusters);
    if (ret < 0) {
        g_free(s->map);
        error_setg_errno(errp, -ret, "Could not read the map");
        return ret;
    }
    g_strlcpy(bs->backing_file, s->hdr.backing, sizeof(bs->backing_file));
    g_strlcpy(bs->backing_format, s->hdr.backing_fmt,
              sizeof(bs->backing_format));
    return 0;
}

static void tc_close(BlockDriverState *bs)
{
    TcState *s = bs->opaque;

    g_free(s->map);
}

static void tc_refresh_limits(BlockDriverState *bs, GError **errp)
{
    bs->bl.request_alignment = TC_CLUSTER;
}

static int64_t coroutine_fn tc_getlength(BlockDriverState *bs)
{
    return ((TcState *)bs->opaque)->size;
}

/* Clusters from @c on with the same allocation, within @max bytes. */
static int64_t tc_run(TcState *s, int64_t c, int64_t max)
{
    int64_t n = 1;

    while (n * TC_CLUSTER < max && c + n < s->nclusters &&
           s->map[c + n] == s->map[c]) {
        n++;
    }
    return MIN(n * TC_CLUSTER, max);
}

static int coroutine_fn tc_preadv(BlockDriverState *bs, int64_t offset,
                                  int64_t bytes, QEMUIOVector *qiov,
                                  BdrvRequestFlags flags)
{
    TcState *s = bs->opaque;
    int64_t done = 0;
    int ret = 0;

    while (done < bytes && ret == 0) {
        int64_t pos = offset + done;
        int64_t c = pos / TC_CLUSTER;
        int64_t n = tc_run(s, c, bytes - done);
        QEMUIOVector slice;

        qemu_iovec_init_slice(&slice, qiov, done, n);
        if (s->map[c]) {
            ret = bdrv_co_preadv(bs->file, TC_DATA_OFFSET + pos, n, &slice,
                                 0);
        } else if (bs->backing) {
            int64_t blen = bdrv_co_getlength(bs->backing->bs);
            int64_t in = blen > pos ? MIN(n, blen - pos) : 0;

            qemu_iovec_memset(&slice, 0, 0, n);
            if (blen < 0) {
                ret = blen;
            } else if (in > 0) {
                QEMUIOVector part;

                qemu_iovec_init_slice(&part, &slice, 0, in);
                ret = bdrv_co_preadv(bs->backing, pos, in, &part, 0);
                qemu_iovec_destroy(&part);
            }
        } else {
            qemu_iovec_memset(&slice, 0, 0, n);
        }
        qemu_iovec_destroy(&slice);
        done += n;
    }
    /*
     * Slow to answer, like remote storage: a job copying from here holds
     * data already read long enough for a guest write to the same range
     * to overtake it.
     */
    qemu_co_sleep_ns(QEMU_CLOCK_REALTIME, 300 * SCALE_US);
    return ret;
}

static int coroutine_fn tc_pwritev(BlockDriverState *bs, int64_t offset,
                                   int64_t bytes, QEMUIOVector *qiov,
                                   BdrvRequestFlags flags)
{
    TcState *s = bs->opaque;
    int64_t first = offset / TC_CLUSTER;
    int64_t last = (offset + bytes - 1) / TC_CLUSTER;
    int64_t c;
    QEMUIOVector mq;
    int ret;

    ret = bdrv_co_pwritev(bs->file, TC_DATA_OFFSET + offset, bytes, qiov,
                          0);
    if (ret < 0) {
        return ret;
    }
    for (c = first; c <= last && s->map[c]; c++) {
        /* already allocated */
    }
    if (c > last) {
        return 0;
    }
    memset(s->map + first, 1, last - first + 1);
    qemu_iovec_init_buf(&mq, s->map + first, last - first + 1);
    return bdrv_co_pwritev(bs->file, TC_MAP_OFFSET + first,
                           last - first + 1, &mq, 0);
}

static int coroutine_fn tc_block_status(BlockDriverState *bs,
                                        int64_t offset, int64_t bytes,
                                        int64_t *pnum, int64_t *map,
                                        BlockDriverState **file)
{
    TcState *s = bs->opaque;
    int64_t c = offset / TC_CLUSTER;

    *pnum = MIN(tc_run(s, c, bytes + offset % TC_CLUSTER) -
                offset % TC_CLUSTER, bytes);
    if (!s->map[c]) {
        return 0;
    }
    *map = TC_DATA_OFFSET + offset;
    *file = bs->file->bs;
    return BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID;
}

/* Growing only, which is what commit needs of a small base. */
static int coroutine_fn tc_truncate(BlockDriverState *bs, int64_t offset,
                                    bool exact, PreallocMode prealloc,
                                    BdrvRequestFlags flags, GError **errp)
{
    TcState *s = bs->opaque;
    int64_t n = DIV_ROUND_UP(offset, TC_CLUSTER);
    TcHeader hdr = s->hdr;
    QEMUIOVector qiov;
    int ret;

    if (offset < s->size || n > TC_MAX_CLUSTERS) {
        error_setg(errp, "test-chain images only grow");
        return -ENOTSUP;
    }
    hdr.size = GUINT64_TO_LE(offset);
    qemu_iovec_init_buf(&qiov, &hdr, sizeof(hdr));
    ret = bdrv_co_pwritev(bs->file, 0, sizeof(hdr), &qiov, 0);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not write the header");
        return ret;
    }
    s->hdr = hdr;
    s->map = g_realloc(s->map, n);
    memset(s->map + s->nclusters, 0, n - s->nclusters);
    s->nclusters = n;
    s->size = offset;
    return 0;
}

static int coroutine_fn tc_get_info(BlockDriverState *bs,
                                    BlockDriverInfo *bdi)
{
    bdi->cluster_size = TC_CLUSTER;
    return 0;
}

static int tc_change_backing_file(BlockDriverState *bs,
                                  const char *backing_file,
                                  const char *backing_fmt)
{
    TcState *s = bs->opaque;
    TcHeader hdr = s->hdr;

    memset(hdr.backing, 0, sizeof(hdr.backing));
    memset(hdr.backing_fmt, 0, sizeof(hdr.backing_fmt));
    g_strlcpy(hdr.backing, backing_file ?: "", sizeof(hdr.backing));
    g_strlcpy(hdr.backing_fmt, backing_fmt ?: "", sizeof(hdr.backing_fmt));
    if (tc_sync_io(bs, true, 0, &hdr, sizeof(hdr)) < 0) {
        return -EIO;
    }
    s->hdr = hdr;
    return 0;
}

static BlockDriver bdrv_test_chain = {
    .format_name = "test-chain",
    .instance_size = sizeof(TcState),
    .supports_backing = true,
    .option_names = tc_options,
    .bdrv_open = tc_open,
    .bdrv_close = tc_close,
    .bdrv_refresh_limits = tc_refresh_limits,
    .bdrv_co_getlength = tc_getlength,
    .bdrv_co_preadv = tc_preadv,
    .bdrv_co_pwritev = tc_pwritev,
    .bdrv_co_block_status = tc_block_status,
    .bdrv_co_get_info = tc_get_info,
    .bdrv_co_truncate = tc_truncate,
    .bdrv_change_backing_file = tc_change_backing_file,
};

static void __attribute__((constructor)) test_chain_register(void)
{
    bdrv_register(&bdrv_test_chain);
}

/* ---- Images and chains ---- */

#define IMG_SIZE (4 * 1024 * 1024)

static char *tmp_dir;

static char *tmp_path(const char *name)
{
    return g_build_filename(tmp_dir, name, NULL);
}

/* A new test-chain image of @size recording @backing (may be NULL). */
static void make_image(const char *path, int64_t size, const char *backing)
{
    g_autofree uint8_t *buf = g_malloc0(TC_DATA_OFFSET);
    TcHeader *h = (TcHeader *)buf;

    memcpy(h->magic, TC_MAGIC, 8);
    h->size = GUINT64_TO_LE(size);
    if (backing) {
        g_strlcpy(h->backing, backing, sizeof(h->backing));
        g_strlcpy(h->backing_fmt, "test-chain", sizeof(h->backing_fmt));
    }
    g_assert_true(g_file_set_contents(path, (char *)buf, TC_DATA_OFFSET,
                                      NULL));
}

static BlockBackend *open_image(const char *path, int flags)
{
    g_autoptr(JsonObject) opts = json_object_new();
    g_autoptr(GError) err = NULL;
    BlockBackend *blk;

    json_object_set_string_member(opts, "driver", "test-chain");
    blk = blk_new_open(path, opts, flags, &err);
    g_assert_no_error(err);
    g_assert_nonnull(blk);
    return blk;
}

/* Fill clusters i with i % @every == @phase with @pattern. */
static void fill(BlockBackend *blk, int every, int phase, uint8_t pattern)
{
    g_autofree uint8_t *buf = g_malloc(TC_CLUSTER);
    int64_t c;

    memset(buf, pattern, TC_CLUSTER);
    for (c = 0; c < blk_getlength(blk) / TC_CLUSTER; c++) {
        if (c % every == phase) {
            g_assert_cmpint(blk_pwrite(blk, c * TC_CLUSTER, TC_CLUSTER, buf,
                                       0), ==, 0);
        }
    }
}

/*
 * base <- mid <- top (or base <- m1 <- m2 <- top with @four), each layer
 * with its own pattern in its own clusters.
 */
static void make_chain(bool four)
{
    g_autofree char *base = tmp_path("base.tc");
    g_autofree char *m1 = tmp_path("mid.tc");
    g_autofree char *m2 = tmp_path("mid2.tc");
    g_autofree char *top = tmp_path("top.tc");
    BlockBackend *blk;

    make_image(base, IMG_SIZE, NULL);
    make_image(m1, IMG_SIZE, "base.tc");
    make_image(m2, IMG_SIZE, "mid.tc");
    make_image(top, IMG_SIZE, four ? "mid2.tc" : "mid.tc");

    blk = open_image(base, BDRV_O_RDWR | BDRV_O_NO_BACKING);
    fill(blk, 2, 0, 0xb0);
    blk_unref(blk);
    blk = open_image(m1, BDRV_O_RDWR | BDRV_O_NO_BACKING);
    fill(blk, 3, 0, 0x11);
    fill(blk, 7, 5, 0x17);
    blk_unref(blk);
    if (four) {
        blk = open_image(m2, BDRV_O_RDWR | BDRV_O_NO_BACKING);
        fill(blk, 5, 1, 0x22);
        blk_unref(blk);
    }
    blk = open_image(top, BDRV_O_RDWR | BDRV_O_NO_BACKING);
    fill(blk, 11, 3, 0x70);
    blk_unref(blk);
}

static uint8_t *read_all(BlockBackend *blk)
{
    int64_t len = blk_getlength(blk);
    uint8_t *buf = g_malloc(len);

    g_assert_cmpint(len, >, 0);
    g_assert_cmpint(blk_pread(blk, 0, len, buf, 0), ==, 0);
    return buf;
}

static void assert_content(BlockBackend *blk, const uint8_t *expected,
                           int64_t len)
{
    g_autofree uint8_t *got = read_all(blk);
    int64_t i;

    g_assert_cmpint(blk_getlength(blk), ==, len);
    for (i = 0; i < len; i++) {
        if (got[i] != expected[i]) {
            g_error("byte %" PRId64 ": 0x%02x, expected 0x%02x", i, got[i],
                    expected[i]);
        }
    }
}

/* What the image at @path reads, opened afresh with its chain. */
static void assert_file_content(const char *path, const uint8_t *expected,
                                int64_t len, const char *backing_file)
{
    BlockBackend *blk = open_image(path, 0);

    g_assert_cmpstr(blk_bs(blk)->backing_file, ==, backing_file);
    assert_content(blk, expected, len);
    blk_unref(blk);
}

#define WAIT_FOR(cond) do {                                             \
        int64_t deadline_ = g_get_monotonic_time() + 30 * G_USEC_PER_SEC; \
        while (!(cond)) {                                               \
            g_assert_cmpint(g_get_monotonic_time(), <, deadline_);      \
            aio_poll(qemu_get_aio_context(), false);                    \
            g_usleep(200);                                              \
        }                                                               \
    } while (0)

static BlockDriverState *backing_of(BlockDriverState *bs)
{
    return bdrv_backing_bs(bs);
}

/* ---- A guest writing while a job runs ---- */

typedef struct Writer {
    BlockBackend *blk;
    Job *chase;                 /* write where this job is copying */
    uint8_t *expected;          /* the image as the guest wrote it */
    int64_t len;
    GRand *rand;
    bool stop;                  /* atomic */
    bool done;                  /* atomic */
    int writes;
    int ret;
} Writer;

static void coroutine_fn writer_entry(void *opaque)
{
    Writer *w = opaque;
    g_autofree uint8_t *buf = g_malloc(64 * 1024);

    while (!qatomic_read(&w->stop)) {
        /* Unaligned too, so the format's read-modify-write races. */
        int64_t bytes = g_rand_int_range(w->rand, 1, 128) * 512;
        int64_t offset = g_rand_int_range(w->rand, 0,
                                          (w->len - bytes) / 512) * 512 +
                         g_rand_int_range(w->rand, 0, 2) * 100;
        Job *chase = qatomic_read(&w->chase);

        /*
         * Every other write goes where the job is at, to race it, and
         * whole clusters, so that no read-modify-write in the block
         * layer serialises it against the job's requests.
         */
        if (chase && g_rand_boolean(w->rand)) {
            bytes = g_rand_int_range(w->rand, 1, 3) * 4096;
            offset = QEMU_ALIGN_DOWN(
                qatomic_read(&chase->progress_current), 4096) +
                g_rand_int_range(w->rand, 0, 4) * 4096;
            offset = MIN(offset, w->len - bytes);
        }
        uint8_t pattern = g_rand_int_range(w->rand, 1, 256);
        QEMUIOVector qiov;
        int ret;

        bytes = MIN(bytes, w->len - offset);
        memset(buf, pattern, bytes);
        qemu_iovec_init_buf(&qiov, buf, bytes);
        ret = blk_co_pwritev(w->blk, offset, bytes, &qiov, 0);
        if (ret < 0) {
            w->ret = ret;
            break;
        }
        memset(w->expected + offset, pattern, bytes);
        w->writes++;
        qemu_co_sleep_ns(QEMU_CLOCK_REALTIME, 2 * SCALE_MS);
    }
    qatomic_store_release(&w->done, true);
    aio_wait_kick();
}

static void writer_start(Writer *w, BlockBackend *blk, uint8_t *expected,
                         int64_t len, guint32 seed)
{
    memset(w, 0, sizeof(*w));
    w->blk = blk;
    w->expected = expected;
    w->len = len;
    w->rand = g_rand_new_with_seed(seed);
    aio_co_enter(blk_get_aio_context(blk),
                 qemu_coroutine_create(writer_entry, w));
}

static void writer_stop(Writer *w)
{
    qatomic_set(&w->stop, true);
    WAIT_FOR(qatomic_load_acquire(&w->done));
    g_assert_cmpint(w->ret, ==, 0);
    g_rand_free(w->rand);
}

static Job *ref_job(BlockJob *bjob)
{
    g_assert_nonnull(bjob);
    job_ref(&bjob->job);
    return &bjob->job;
}

static void run_to_end(Job *job, int expected_ret)
{
    g_autoptr(GError) err = NULL;

    g_assert_cmpint(job_finish_sync(job, NULL, &err), ==, expected_ret);
    if (expected_ret == 0) {
        g_assert_no_error(err);
    }
    job_unref(job);
}

/* ---- Stream ---- */

static void check_stream(BlockDriverState *(*pick_base)(BlockDriverState *),
                         const char *backing_file_str,
                         const char *expected_backing)
{
    g_autofree char *top_path = tmp_path("top.tc");
    g_autofree uint8_t *before = NULL;
    g_autofree char *mid_name = NULL;
    g_autoptr(GError) err = NULL;
    BlockBackend *blk;
    BlockDriverState *top, *base;
    Job *job;

    make_chain(false);
    blk = open_image(top_path, BDRV_O_RDWR);
    top = blk_bs(blk);
    before = read_all(blk);
    mid_name = g_strdup(bdrv_get_node_name(backing_of(top)));
    base = pick_base(top);

    job = ref_job(stream_start("s0", top, base, backing_file_str, 0, 0,
                               BLOCKDEV_ON_ERROR_REPORT, NULL, NULL, &err));
    g_assert_no_error(err);
    g_assert_cmpint(job_type(job), ==, JOB_TYPE_STREAM);
    /* The filter took the backend's edge. */
    g_assert_true(blk_bs(blk) != top);
    g_assert_cmpstr(bdrv_get_format_name(blk_bs(blk)), ==, "stream_top");
    run_to_end(job, 0);

    g_assert_true(blk_bs(blk) == top);
    g_assert_true(backing_of(top) == base);
    g_assert_null(bdrv_find_node(mid_name));
    g_assert_cmpstr(top->backing_file, ==, expected_backing);
    assert_content(blk, before, IMG_SIZE);
    blk_unref(blk);
    assert_file_content(top_path, before, IMG_SIZE, expected_backing);
}

static BlockDriverState *no_base(BlockDriverState *top)
{
    return NULL;
}

static BlockDriverState *bottom_base(BlockDriverState *top)
{
    return backing_of(backing_of(top));
}

static void test_stream_whole_chain(void)
{
    check_stream(no_base, NULL, "");
}

static void test_stream_to_base(void)
{
    g_autofree char *base_path = tmp_path("base.tc");

    check_stream(bottom_base, NULL, base_path);
}

static void test_stream_backing_file_str(void)
{
    check_stream(bottom_base, "base.tc", "base.tc");
}

/* Streaming into a node that has no backing file has nothing to do. */
static void test_stream_nothing(void)
{
    g_autofree char *path = tmp_path("alone.tc");
    BlockBackend *blk;

    make_image(path, IMG_SIZE, NULL);
    blk = open_image(path, BDRV_O_RDWR);
    run_to_end(ref_job(stream_start("s-none", blk_bs(blk), NULL, NULL, 0,
                                    0, BLOCKDEV_ON_ERROR_REPORT, NULL, NULL,
                                    NULL)), 0);
    g_assert_cmpstr(blk_bs(blk)->backing_file, ==, "");
    blk_unref(blk);
}

static void check_stream_with_writer(AioContext *ctx, guint32 seed)
{
    g_autofree char *top_path = tmp_path("top.tc");
    g_autofree uint8_t *expected = NULL;
    g_autoptr(GError) err = NULL;
    BlockBackend *blk;
    BlockDriverState *top;
    Writer w;
    Job *job;

    make_chain(false);
    blk = open_image(top_path, BDRV_O_RDWR);
    top = blk_bs(blk);
    expected = read_all(blk);
    g_assert_cmpint(bdrv_try_change_aio_context(top, ctx, &err), ==, 0);

    writer_start(&w, blk, expected, IMG_SIZE, seed);
    /* Slow enough for the guest to write all over it meanwhile. */
    job = ref_job(stream_start("s-w", top, NULL, NULL, 0, 6 * 1024 * 1024,
                               BLOCKDEV_ON_ERROR_REPORT, NULL, NULL, &err));
    g_assert_no_error(err);
    qatomic_set(&w.chase, job);
    run_to_end(job, 0);
    qatomic_set(&w.chase, NULL);
    writer_stop(&w);
    g_assert_cmpint(w.writes, >, 20);

    g_assert_null(backing_of(top));
    assert_content(blk, expected, IMG_SIZE);
    g_assert_cmpint(bdrv_try_change_aio_context(top, qemu_get_aio_context(),
                                                &err), ==, 0);
    blk_unref(blk);
    assert_file_content(top_path, expected, IMG_SIZE, "");
}

static void test_stream_concurrent_writer(void)
{
    check_stream_with_writer(qemu_get_aio_context(), 1);
    check_stream_with_writer(qemu_get_aio_context(), 2);
}

static void test_stream_concurrent_writer_iothread(void)
{
    IOThread *t = iothread_create("stream", NULL);

    check_stream_with_writer(iothread_get_aio_context(t), 3);
    check_stream_with_writer(iothread_get_aio_context(t), 4);
    iothread_destroy(t);
}

static void test_stream_cancel(void)
{
    g_autofree char *top_path = tmp_path("top.tc");
    g_autofree char *mid_path = tmp_path("mid.tc");
    g_autofree uint8_t *before = NULL;
    BlockBackend *blk;
    BlockDriverState *top, *mid;
    Job *job;

    make_chain(false);
    blk = open_image(top_path, BDRV_O_RDWR);
    top = blk_bs(blk);
    mid = backing_of(top);
    before = read_all(blk);

    job = ref_job(stream_start("s-c", top, NULL, NULL, 0, 1024 * 1024,
                               BLOCKDEV_ON_ERROR_REPORT, NULL, NULL, NULL));
    WAIT_FOR(job->progress_current > 0);
    job_cancel(job, true);
    run_to_end(job, -ECANCELED);

    /* Nothing changed in the chain; the filter is gone. */
    g_assert_true(blk_bs(blk) == top);
    g_assert_true(backing_of(top) == mid);
    g_assert_cmpstr(top->backing_file, ==, "mid.tc");
    assert_content(blk, before, IMG_SIZE);
    blk_unref(blk);
    assert_file_content(top_path, before, IMG_SIZE, "mid.tc");
}

static void test_stream_drained(void)
{
    g_autofree char *top_path = tmp_path("top.tc");
    g_autofree uint8_t *before = NULL;
    BlockBackend *blk;
    BlockDriverState *top;
    uint64_t progress;
    Job *job;
    int i;

    make_chain(false);
    blk = open_image(top_path, BDRV_O_RDWR);
    top = blk_bs(blk);
    before = read_all(blk);

    job = ref_job(stream_start("s-d", top, NULL, NULL, 0, 8 * 1024 * 1024,
                               BLOCKDEV_ON_ERROR_REPORT, NULL, NULL, NULL));
    WAIT_FOR(job->progress_current > 0);

    /* The file under the top: the job parks and moves no data. */
    bdrv_drained_begin(top->file->bs);
    g_assert_cmpint(job_get_status(job), ==, JOB_STATUS_PAUSED);
    progress = job->progress_current;
    for (i = 0; i < 20; i++) {
        aio_poll(qemu_get_aio_context(), false);
        g_usleep(1000);
    }
    g_assert_cmpuint(job->progress_current, ==, progress);
    bdrv_drained_end(top->file->bs);

    run_to_end(job, 0);
    g_assert_null(backing_of(top));
    assert_content(blk, before, IMG_SIZE);
    blk_unref(blk);
}

static void test_stream_read_only_top(void)
{
    g_autofree char *top_path = tmp_path("top.tc");
    g_autofree uint8_t *before = NULL;
    BlockBackend *blk;
    BlockDriverState *top;

    make_chain(false);
    blk = open_image(top_path, 0);
    top = blk_bs(blk);
    before = read_all(blk);
    g_assert_true(bdrv_is_read_only(top));
    run_to_end(ref_job(stream_start("s-ro", top, NULL, NULL, 0, 0,
                                    BLOCKDEV_ON_ERROR_REPORT, NULL, NULL,
                                    NULL)), 0);
    /* Written, then read-only again. */
    g_assert_true(bdrv_is_read_only(top));
    g_assert_true(bdrv_is_read_only(top->file->bs));
    g_assert_null(backing_of(top));
    blk_unref(blk);
    assert_file_content(top_path, before, IMG_SIZE, "");
}

static void test_stream_errors(void)
{
    g_autofree char *top_path = tmp_path("top.tc");
    g_autofree char *other_path = tmp_path("other.tc");
    g_autoptr(GError) err = NULL;
    BlockBackend *blk, *other;

    make_chain(false);
    make_image(other_path, IMG_SIZE, NULL);
    blk = open_image(top_path, BDRV_O_RDWR);
    other = open_image(other_path, 0);

    /* A base that is not below the node. */
    g_assert_null(stream_start("s-e", blk_bs(blk), blk_bs(other), NULL, 0,
                               0, BLOCKDEV_ON_ERROR_REPORT, NULL, NULL,
                               &err));
    g_assert_nonnull(strstr(err->message, "is not a backing image of"));
    g_clear_error(&err);
    g_assert_null(stream_start("s-e", blk_bs(blk), blk_bs(blk), NULL, 0, 0,
                               BLOCKDEV_ON_ERROR_REPORT, NULL, NULL, &err));
    g_assert_nonnull(err);
    g_clear_error(&err);
    g_assert_null(stream_start("1bad", blk_bs(blk), NULL, NULL, 0, 0,
                               BLOCKDEV_ON_ERROR_REPORT, NULL, NULL, &err));
    g_assert_cmpstr(err->message, ==, "Invalid job ID '1bad'");
    g_clear_error(&err);
    /* Failures leave no trace. */
    g_assert_null(job_next(NULL));
    g_assert_cmpstr(bdrv_get_format_name(blk_bs(blk)), ==, "test-chain");
    blk_unref(other);
    blk_unref(blk);
}

/* ---- Commit ---- */

static void check_intermediate_commit(bool four)
{
    g_autofree char *top_path = tmp_path("top.tc");
    g_autofree char *base_path = tmp_path("base.tc");
    g_autofree uint8_t *before = NULL;
    g_autofree char *m_name = NULL;
    g_autoptr(GError) err = NULL;
    BlockBackend *blk;
    BlockDriverState *top, *ctop, *base;
    Job *job;

    make_chain(four);
    blk = open_image(top_path, BDRV_O_RDWR);
    top = blk_bs(blk);
    before = read_all(blk);
    ctop = backing_of(top);
    base = four ? backing_of(backing_of(ctop)) : backing_of(ctop);
    m_name = g_strdup(bdrv_get_node_name(ctop));
    g_assert_true(bdrv_is_read_only(base));

    job = ref_job(commit_start("c0", top, base, ctop, 0, 0,
                               BLOCKDEV_ON_ERROR_REPORT, NULL, NULL, NULL,
                               &err));
    g_assert_no_error(err);
    g_assert_cmpint(job_type(job), ==, JOB_TYPE_COMMIT);
    /* The base is writable for the job only. */
    g_assert_false(bdrv_is_read_only(base));
    run_to_end(job, 0);

    g_assert_true(backing_of(top) == base);
    g_assert_null(bdrv_find_node(m_name));
    g_assert_true(bdrv_is_read_only(base));
    g_assert_cmpstr(top->backing_file, ==, base_path);
    assert_content(blk, before, IMG_SIZE);
    blk_unref(blk);
    assert_file_content(top_path, before, IMG_SIZE, base_path);
}

static void test_commit_intermediate(void)
{
    check_intermediate_commit(false);
}

static void test_commit_two_layers(void)
{
    check_intermediate_commit(true);
}

static void test_commit_base_grows(void)
{
    g_autofree char *base_path = tmp_path("small.tc");
    g_autofree char *mid_path = tmp_path("mid.tc");
    g_autofree char *top_path = tmp_path("top.tc");
    g_autofree uint8_t *before = NULL;
    BlockBackend *blk;

    make_image(base_path, IMG_SIZE / 2, NULL);
    make_image(mid_path, IMG_SIZE, "small.tc");
    make_image(top_path, IMG_SIZE, "mid.tc");
    blk = open_image(mid_path, BDRV_O_RDWR | BDRV_O_NO_BACKING);
    fill(blk, 3, 1, 0x33);
    blk_unref(blk);
    blk = open_image(base_path, BDRV_O_RDWR);
    fill(blk, 2, 0, 0x44);
    blk_unref(blk);

    blk = open_image(top_path, BDRV_O_RDWR);
    before = read_all(blk);
    run_to_end(ref_job(commit_start("c-g", blk_bs(blk),
                                    backing_of(backing_of(blk_bs(blk))),
                                    backing_of(blk_bs(blk)), 0, 0,
                                    BLOCKDEV_ON_ERROR_REPORT, NULL, NULL,
                                    NULL, NULL)), 0);
    assert_content(blk, before, IMG_SIZE);
    g_assert_cmpint(bdrv_getlength(backing_of(blk_bs(blk))), ==, IMG_SIZE);
    blk_unref(blk);
}

static void check_active_commit(AioContext *ctx, guint32 seed)
{
    g_autofree char *top_path = tmp_path("top.tc");
    g_autofree char *mid_path = tmp_path("mid.tc");
    g_autofree uint8_t *expected = NULL;
    g_autoptr(GError) err = NULL;
    BlockBackend *blk;
    BlockDriverState *top, *mid;
    Writer w;
    Job *job;

    make_chain(false);
    blk = open_image(top_path, BDRV_O_RDWR);
    top = blk_bs(blk);
    mid = backing_of(top);
    expected = read_all(blk);
    g_assert_cmpint(bdrv_try_change_aio_context(top, ctx, &err), ==, 0);

    writer_start(&w, blk, expected, IMG_SIZE, seed);
    job = ref_job(commit_active_start("ac", top, mid, 0, 8 * 1024 * 1024,
                                      BLOCKDEV_ON_ERROR_REPORT, NULL, NULL,
                                      &err));
    g_assert_no_error(err);
    qatomic_set(&w.chase, job);
    g_assert_cmpstr(bdrv_get_format_name(blk_bs(blk)), ==, "commit_top");
    WAIT_FOR(job_is_ready(job));
    qatomic_set(&w.chase, NULL);
    /* Ready: the guest goes on writing, into both. */
    WAIT_FOR(w.writes > 40);
    g_assert_cmpint(job_complete_sync(job, &err), ==, 0);
    g_assert_no_error(err);
    job_unref(job);
    writer_stop(&w);

    /* The guest's backend now sits on the old backing file. */
    g_assert_true(blk_bs(blk) == mid);
    g_assert_false(bdrv_is_read_only(mid));
    assert_content(blk, expected, IMG_SIZE);
    g_assert_cmpint(bdrv_try_change_aio_context(mid, qemu_get_aio_context(),
                                                &err), ==, 0);
    blk_unref(blk);
    assert_file_content(mid_path, expected, IMG_SIZE, "base.tc");
}

static void test_commit_active(void)
{
    check_active_commit(qemu_get_aio_context(), 5);
}

static void test_commit_active_iothread(void)
{
    IOThread *t = iothread_create("commit", NULL);

    check_active_commit(iothread_get_aio_context(t), 6);
    iothread_destroy(t);
}

static void test_commit_active_soft_cancel(void)
{
    g_autofree char *top_path = tmp_path("top.tc");
    g_autofree char *mid_path = tmp_path("mid.tc");
    g_autofree uint8_t *before = NULL;
    BlockBackend *blk;
    BlockDriverState *top, *mid;
    Job *job;

    make_chain(false);
    blk = open_image(top_path, BDRV_O_RDWR);
    top = blk_bs(blk);
    mid = backing_of(top);
    before = read_all(blk);
    job = ref_job(commit_active_start("ac-c", top, mid, 0, 0,
                                      BLOCKDEV_ON_ERROR_REPORT, NULL, NULL,
                                      NULL));
    WAIT_FOR(job_is_ready(job));
    /* Without force, a ready job ends well, without the switch. */
    g_assert_true(job_user_cancel(job, false, NULL));
    run_to_end(job, 0);
    g_assert_true(blk_bs(blk) == top);
    g_assert_true(backing_of(top) == mid);
    g_assert_true(bdrv_is_read_only(mid));
    assert_content(blk, before, IMG_SIZE);
    blk_unref(blk);
    /* The base holds the top's data anyway. */
    assert_file_content(mid_path, before, IMG_SIZE, "base.tc");
}

static void test_commit_active_cancel_before_ready(void)
{
    g_autofree char *top_path = tmp_path("top.tc");
    g_autofree uint8_t *before = NULL;
    BlockBackend *blk;
    BlockDriverState *top, *mid;
    Job *job;

    make_chain(false);
    blk = open_image(top_path, BDRV_O_RDWR);
    top = blk_bs(blk);
    mid = backing_of(top);
    before = read_all(blk);
    job = ref_job(commit_active_start("ac-e", top, mid, 0, 0,
                                      BLOCKDEV_ON_ERROR_REPORT, NULL, NULL,
                                      NULL));
    /* Caught on its way: a cancel before ready is a cancel. */
    g_assert_true(job_user_pause(job, NULL));
    WAIT_FOR(job_is_paused(job));
    g_assert_false(job_is_ready(job));
    g_assert_true(job_user_cancel(job, false, NULL));
    run_to_end(job, -ECANCELED);
    g_assert_true(blk_bs(blk) == top);
    g_assert_true(bdrv_is_read_only(mid));
    assert_content(blk, before, IMG_SIZE);
    blk_unref(blk);
}

static void test_commit_errors(void)
{
    g_autofree char *top_path = tmp_path("top.tc");
    g_autofree char *other_path = tmp_path("other.tc");
    g_autoptr(GError) err = NULL;
    BlockBackend *blk, *other;
    BlockDriverState *top, *mid, *base;

    make_chain(false);
    make_image(other_path, IMG_SIZE, NULL);
    blk = open_image(top_path, BDRV_O_RDWR);
    other = open_image(other_path, 0);
    top = blk_bs(blk);
    mid = backing_of(top);
    base = backing_of(mid);

    g_assert_null(commit_start("ce", top, mid, mid, 0, 0,
                               BLOCKDEV_ON_ERROR_REPORT, NULL, NULL, NULL,
                               &err));
    g_assert_cmpstr(err->message, ==, "cannot commit an image into itself");
    g_clear_error(&err);
    g_assert_null(commit_start("ce", top, blk_bs(other), mid, 0, 0,
                               BLOCKDEV_ON_ERROR_REPORT, NULL, NULL, NULL,
                               &err));
    g_assert_nonnull(err);
    g_clear_error(&err);
    g_assert_null(commit_start("ce", blk_bs(other), base, mid, 0, 0,
                               BLOCKDEV_ON_ERROR_REPORT, NULL, NULL, NULL,
                               &err));
    g_assert_true(g_str_has_prefix(err->message,
                                   "Could not find overlay image for "));
    g_clear_error(&err);
    g_assert_null(commit_active_start("ce", top, top, 0, 0,
                                      BLOCKDEV_ON_ERROR_REPORT, NULL, NULL,
                                      &err));
    g_assert_cmpstr(err->message, ==, "cannot commit an image into itself");
    g_clear_error(&err);
    g_assert_null(commit_start("ce", top, base, mid, 0, -1,
                               BLOCKDEV_ON_ERROR_REPORT, NULL, NULL, NULL,
                               &err));
    g_assert_cmpstr(err->message, ==, "Invalid parameter 'speed'");
    g_clear_error(&err);

    /* Nothing left behind: no job, the base read-only again. */
    g_assert_null(job_next(NULL));
    g_assert_true(bdrv_is_read_only(base));
    g_assert_true(bdrv_is_read_only(mid));
    blk_unref(other);
    blk_unref(blk);
}

/* ---- Graph operations ---- */

static void test_find_backing_image(void)
{
    g_autofree char *top_path = tmp_path("top.tc");
    g_autofree char *base_path = tmp_path("base.tc");
    g_autofree char *cwd = g_get_current_dir();
    BlockBackend *blk;
    BlockDriverState *top, *mid, *base;

    make_chain(false);
    blk = open_image(top_path, 0);
    top = blk_bs(blk);
    mid = backing_of(top);
    base = backing_of(mid);

    /* As recorded, as opened, and relative to the overlay's directory. */
    g_assert_true(bdrv_find_backing_image(top, "mid.tc") == mid);
    g_assert_true(bdrv_find_backing_image(top, "base.tc") == base);
    g_assert_true(bdrv_find_backing_image(top, base_path) == base);
    g_assert_null(bdrv_find_backing_image(top, "top.tc"));
    g_assert_null(bdrv_find_backing_image(top, "nope.tc"));
    g_assert_null(bdrv_find_backing_image(base, "base.tc"));
    /* By another spelling of the same path, from the directory. */
    g_assert_cmpint(chdir(tmp_dir), ==, 0);
    g_assert_true(bdrv_find_backing_image(top, "./base.tc") == base);
    g_assert_cmpint(chdir(cwd), ==, 0);

    g_assert_true(bdrv_chain_contains(top, base));
    g_assert_false(bdrv_chain_contains(mid, top));
    g_assert_true(bdrv_find_overlay(top, base) == mid);
    g_assert_null(bdrv_find_overlay(mid, top));
    blk_unref(blk);
}

static BlockBackend *null_blk(BlockDriverState *bs, uint64_t perm,
                              uint64_t shared)
{
    g_autoptr(GError) err = NULL;
    BlockBackend *blk = blk_new(bdrv_get_aio_context(bs), perm, shared);

    g_assert_true(blk_insert_bs(blk, bs, &err));
    g_assert_no_error(err);
    return blk;
}

static BlockDriverState *null_node(const char *name)
{
    g_autoptr(JsonObject) o = json_object_new();
    g_autoptr(GError) err = NULL;
    BlockDriverState *bs;

    json_object_set_string_member(o, "driver", "null-co");
    json_object_set_string_member(o, "node-name", name);
    bs = bdrv_open_options(o, BDRV_O_RDWR, &err);
    g_assert_no_error(err);
    return bs;
}

/* One edge cannot move: the others that did go back. */
static void test_replace_node_rollback(void)
{
    BlockDriverState *x = null_node("x");
    BlockDriverState *y = null_node("y");
    BlockBackend *writer = null_blk(x, BLK_PERM_CONSISTENT_READ |
                                    BLK_PERM_WRITE, BLK_PERM_ALL);
    BlockBackend *reader = null_blk(x, BLK_PERM_CONSISTENT_READ,
                                    BLK_PERM_ALL);
    BlockBackend *guard = null_blk(y, BLK_PERM_CONSISTENT_READ,
                                   BLK_PERM_CONSISTENT_READ);
    g_autoptr(GError) err = NULL;

    g_assert_false(bdrv_replace_node(x, y, NULL, NULL, &err));
    g_assert_nonnull(strstr(err->message, "which does not allow 'write' "
                            "on y"));
    g_assert_true(blk_bs(writer) == x);
    g_assert_true(blk_bs(reader) == x);

    /* Without the guard, both move. */
    blk_unref(guard);
    g_assert_true(bdrv_replace_node(x, y, NULL, NULL, NULL));
    g_assert_true(blk_bs(writer) == y);
    g_assert_true(blk_bs(reader) == y);
    blk_unref(writer);
    blk_unref(reader);
    bdrv_unref(x);
    bdrv_unref(y);
}

static void test_reopen_set_read_only(void)
{
    g_autofree char *base_path = tmp_path("base.tc");
    BlockBackend *blk;
    BlockDriverState *bs;
    g_autoptr(GError) err = NULL;

    make_image(base_path, IMG_SIZE, NULL);
    blk = open_image(base_path, 0);
    bs = blk_bs(blk);
    g_assert_true(bdrv_is_read_only(bs));
    g_assert_true(bdrv_is_read_only(bs->file->bs));
    g_assert_true(bdrv_reopen_set_read_only(bs, false, &err));
    g_assert_no_error(err);
    g_assert_false(bdrv_is_read_only(bs));
    g_assert_false(bdrv_is_read_only(bs->file->bs));
    g_assert_true(bdrv_reopen_set_read_only(bs, true, &err));
    g_assert_true(bdrv_is_read_only(bs));
    g_assert_true(bdrv_is_read_only(bs->file->bs));
    blk_unref(blk);
}

/* ---- QED chains, checked by Debian's qemu-img ---- */

static char *qemu_img;
static char *qemu_io;

static int run_tool(const char *const *argv, char **out)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *err_text = NULL;
    int status = -1;

    /* Never on our stdout: it speaks TAP. */
    g_assert_true(g_spawn_sync(tmp_dir, (char **)argv, NULL,
                               out ? G_SPAWN_DEFAULT :
                               G_SPAWN_STDOUT_TO_DEV_NULL, NULL, NULL, out,
                               &err_text, &status, &err));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        g_test_message("%s failed: %s", argv[0], err_text);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

#define TOOL(...) run_tool((const char *const[]){ __VA_ARGS__, NULL }, NULL)

static bool qed_usable(void)
{
    if (!qemu_img || !qemu_io) {
        g_test_skip("Debian's qemu-img/qemu-io are not installed");
        return false;
    }
    if (!bdrv_find_format("qed")) {
        g_test_skip("the qed driver is not built in");
        return false;
    }
    return true;
}

/*
 * base.qed <- mid.qed <- top.qed made by qemu-img, written by qemu-io,
 * and its content as raw (ref.raw), by qemu-img too.
 */
static void make_qed_chain(void)
{
    g_assert_cmpint(TOOL(qemu_img, "create", "-q", "-f", "qed",
                         "base.qed", "4M"), ==, 0);
    g_assert_cmpint(TOOL(qemu_img, "create", "-q", "-f", "qed", "-b",
                         "base.qed", "-F", "qed", "mid.qed"), ==, 0);
    g_assert_cmpint(TOOL(qemu_img, "create", "-q", "-f", "qed", "-b",
                         "mid.qed", "-F", "qed", "top.qed"), ==, 0);
    g_assert_cmpint(TOOL(qemu_io, "-c", "write -P 0xb0 0 4M", "-c",
                         "write -z 1M 64k", "base.qed"), ==, 0);
    g_assert_cmpint(TOOL(qemu_io, "-c", "write -P 0x11 64k 192k", "-c",
                         "write -P 0x12 1100k 8k", "-c",
                         "write -P 0x13 3M 1M", "mid.qed"), ==, 0);
    g_assert_cmpint(TOOL(qemu_io, "-c", "write -P 0x70 128k 64k", "-c",
                         "write -P 0x71 1090k 1k", "-c",
                         "write -P 0x72 4032k 64k", "top.qed"), ==, 0);
    g_assert_cmpint(TOOL(qemu_img, "convert", "-O", "raw", "top.qed",
                         "ref.raw"), ==, 0);
}

static BlockBackend *open_qed(const char *name, int flags)
{
    g_autofree char *path = tmp_path(name);
    g_autoptr(JsonObject) opts = json_object_new();
    g_autoptr(GError) err = NULL;
    BlockBackend *blk;

    json_object_set_string_member(opts, "driver", "qed");
    blk = blk_new_open(path, opts, flags, &err);
    g_assert_no_error(err);
    g_assert_nonnull(blk);
    return blk;
}

/* qemu-img check is clean and @image's backing file is @backing. */
static void qed_check(const char *image, const char *backing)
{
    g_autofree char *out = NULL;

    g_assert_cmpint(TOOL(qemu_img, "check", "-q", image), ==, 0);
    g_assert_cmpint(run_tool((const char *const[]){ qemu_img, "info",
                                                    "--output=json", image,
                                                    NULL }, &out), ==, 0);
    if (backing) {
        g_autofree char *want = g_strdup_printf("\"backing-filename\": "
                                                "\"%s\"", backing);

        g_assert_nonnull(strstr(out, want));
    } else {
        g_assert_null(strstr(out, "backing-filename"));
    }
}

static void test_qed_stream(void)
{
    g_autofree char *base_path = tmp_path("base.qed");
    BlockBackend *blk;

    if (!qed_usable()) {
        return;
    }
    make_qed_chain();

    /* Into the top, down to the base. */
    blk = open_qed("top.qed", BDRV_O_RDWR);
    run_to_end(ref_job(stream_start("qs", blk_bs(blk),
                                    bottom_base(blk_bs(blk)), NULL, 0, 0,
                                    BLOCKDEV_ON_ERROR_REPORT, NULL, NULL,
                                    NULL)), 0);
    blk_unref(blk);
    g_assert_cmpint(TOOL(qemu_img, "compare", "-q", "ref.raw", "top.qed"),
                    ==, 0);
    qed_check("top.qed", base_path);

    /* Then the rest: no backing file left. */
    blk = open_qed("top.qed", BDRV_O_RDWR);
    run_to_end(ref_job(stream_start("qs2", blk_bs(blk), NULL, NULL, 0, 0,
                                    BLOCKDEV_ON_ERROR_REPORT, NULL, NULL,
                                    NULL)), 0);
    blk_unref(blk);
    g_assert_cmpint(TOOL(qemu_img, "compare", "-q", "ref.raw", "top.qed"),
                    ==, 0);
    qed_check("top.qed", NULL);
}

static void test_qed_stream_concurrent_writer(void)
{
    g_autofree char *exp_path = tmp_path("expected.raw");
    g_autofree uint8_t *expected = NULL;
    BlockBackend *blk;
    Writer w;
    Job *job;

    if (!qed_usable()) {
        return;
    }
    make_qed_chain();
    blk = open_qed("top.qed", BDRV_O_RDWR);
    expected = read_all(blk);
    writer_start(&w, blk, expected, 4 * 1024 * 1024, 7);
    job = ref_job(stream_start("qsw", blk_bs(blk), NULL, NULL, 0,
                               4 * 1024 * 1024, BLOCKDEV_ON_ERROR_REPORT,
                               NULL, NULL, NULL));
    qatomic_set(&w.chase, job);
    run_to_end(job, 0);
    qatomic_set(&w.chase, NULL);
    writer_stop(&w);
    g_assert_cmpint(w.writes, >, 20);
    blk_unref(blk);

    g_assert_true(g_file_set_contents(exp_path, (char *)expected,
                                      4 * 1024 * 1024, NULL));
    g_assert_cmpint(TOOL(qemu_img, "compare", "-q", "-f", "raw", "-F",
                         "qed", "expected.raw", "top.qed"), ==, 0);
    qed_check("top.qed", NULL);
}

static void test_qed_commit(void)
{
    g_autofree char *base_path = tmp_path("base.qed");
    BlockBackend *blk;
    BlockDriverState *top;

    if (!qed_usable()) {
        return;
    }
    make_qed_chain();
    blk = open_qed("top.qed", BDRV_O_RDWR);
    top = blk_bs(blk);
    run_to_end(ref_job(commit_start("qc", top, bottom_base(top),
                                    backing_of(top), 0, 0,
                                    BLOCKDEV_ON_ERROR_REPORT, NULL, NULL,
                                    NULL, NULL)), 0);
    blk_unref(blk);
    g_assert_cmpint(TOOL(qemu_img, "compare", "-q", "ref.raw", "top.qed"),
                    ==, 0);
    qed_check("top.qed", base_path);
    qed_check("base.qed", NULL);
}

static void test_qed_active_commit(void)
{
    g_autofree char *exp_path = tmp_path("expected.raw");
    g_autofree uint8_t *expected = NULL;
    BlockBackend *blk;
    BlockDriverState *top;
    Writer w;
    Job *job;

    if (!qed_usable()) {
        return;
    }
    make_qed_chain();
    blk = open_qed("top.qed", BDRV_O_RDWR);
    top = blk_bs(blk);
    expected = read_all(blk);
    writer_start(&w, blk, expected, 4 * 1024 * 1024, 8);
    job = ref_job(commit_active_start("qac", top, backing_of(top), 0,
                                      8 * 1024 * 1024,
                                      BLOCKDEV_ON_ERROR_REPORT, NULL, NULL,
                                      NULL));
    qatomic_set(&w.chase, job);
    WAIT_FOR(job_is_ready(job));
    qatomic_set(&w.chase, NULL);
    g_assert_cmpint(job_complete_sync(job, NULL), ==, 0);
    job_unref(job);
    writer_stop(&w);
    blk_unref(blk);

    /* mid.qed over base.qed now reads what the guest wrote. */
    g_assert_true(g_file_set_contents(exp_path, (char *)expected,
                                      4 * 1024 * 1024, NULL));
    g_assert_cmpint(TOOL(qemu_img, "compare", "-q", "-f", "raw", "-F",
                         "qed", "expected.raw", "mid.qed"), ==, 0);
    qed_check("mid.qed", "base.qed");
}

int main(int argc, char **argv)
{
    g_autoptr(GError) err = NULL;
    int ret;

    g_test_init(&argc, &argv, NULL);
    g_assert_true(qemu_init_main_loop(NULL));
    tmp_dir = g_dir_make_tmp("test-stream-commit-XXXXXX", &err);
    g_assert_no_error(err);
    qemu_img = g_find_program_in_path("qemu-img");
    qemu_io = g_find_program_in_path("qemu-io");

    g_test_add_func("/stream/whole-chain", test_stream_whole_chain);
    g_test_add_func("/stream/to-base", test_stream_to_base);
    g_test_add_func("/stream/backing-file-str", test_stream_backing_file_str);
    g_test_add_func("/stream/nothing", test_stream_nothing);
    g_test_add_func("/stream/concurrent-writer",
                    test_stream_concurrent_writer);
    g_test_add_func("/stream/concurrent-writer-iothread",
                    test_stream_concurrent_writer_iothread);
    g_test_add_func("/stream/cancel", test_stream_cancel);
    g_test_add_func("/stream/drained", test_stream_drained);
    g_test_add_func("/stream/read-only-top", test_stream_read_only_top);
    g_test_add_func("/stream/errors", test_stream_errors);
    g_test_add_func("/commit/intermediate", test_commit_intermediate);
    g_test_add_func("/commit/two-layers", test_commit_two_layers);
    g_test_add_func("/commit/base-grows", test_commit_base_grows);
    g_test_add_func("/commit/active", test_commit_active);
    g_test_add_func("/commit/active-iothread", test_commit_active_iothread);
    g_test_add_func("/commit/active-soft-cancel",
                    test_commit_active_soft_cancel);
    g_test_add_func("/commit/active-cancel-before-ready",
                    test_commit_active_cancel_before_ready);
    g_test_add_func("/commit/errors", test_commit_errors);
    g_test_add_func("/graph-ops/find-backing-image",
                    test_find_backing_image);
    g_test_add_func("/graph-ops/replace-node-rollback",
                    test_replace_node_rollback);
    g_test_add_func("/graph-ops/reopen-set-read-only",
                    test_reopen_set_read_only);
    g_test_add_func("/qed/stream", test_qed_stream);
    g_test_add_func("/qed/stream-concurrent-writer",
                    test_qed_stream_concurrent_writer);
    g_test_add_func("/qed/commit", test_qed_commit);
    g_test_add_func("/qed/active-commit", test_qed_active_commit);
    ret = g_test_run();

    {
        g_autoptr(GDir) dir = g_dir_open(tmp_dir, 0, NULL);
        const char *name;

        while (dir && (name = g_dir_read_name(dir))) {
            g_autofree char *p = tmp_path(name);

            unlink(p);
        }
        rmdir(tmp_dir);
    }
    g_free(tmp_dir);
    g_free(qemu_img);
    g_free(qemu_io);
    return ret;
}
