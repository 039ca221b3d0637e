/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests for the host I/O engines (linux-aio and io_uring) used on
 * their own: data checked against pread/pwrite, batching, end of file,
 * kernel errors, moving between contexts and running in an iothread.
 *
 * Copyright (c) 2026 The Sluice authors
 */
#include "qemu/osdep.h"
#include "config-host.h"

#include "block/aio.h"
#include "block/raw-aio.h"
#include "tests/aio-engine-ops.h"
#include "qemu/coroutine.h"
#include "qemu/iothread.h"
#include "qemu/iov.h"
#include "qemu/main-loop.h"

#define BLK 4096


/*
 * Create an engine and attach it to the main context.  Returns NULL after
 * g_test_skip() when the build or the kernel does not offer it.
 */
static void *engine_open(const AioEngineOps *eng)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *msg = NULL;
    void *s;

    if (!eng->built) {
        msg = g_strdup_printf("%s is not in this build", eng->name);
        g_test_skip(msg);
        return NULL;
    }
    s = eng->init(&err);
    if (!s) {
        msg = g_strdup_printf("%s unavailable: %s", eng->name, err->message);
        g_test_skip(msg);
        return NULL;
    }
    eng->attach(s, qemu_get_aio_context());
    return s;
}

static void engine_close(const AioEngineOps *eng, void *s)
{
    eng->detach(s, qemu_get_aio_context());
    eng->cleanup(s);
}

/* ---- Requests run in coroutines ---- */

typedef struct IoReq {
    const AioEngineOps *eng;
    void *s;
    int fd;
    uint64_t offset;
    QEMUIOVector *qiov;
    int type;
    int ret;
    bool done;
    /* Set when the request runs in another thread. */
    GMutex *lock;
    GCond *cond;
} IoReq;

static void coroutine_fn io_req_entry(void *opaque)
{
    IoReq *r = opaque;
    int ret = r->eng->submit(r->s, r->fd, r->offset, r->qiov, r->type);

    if (r->lock) {
        g_mutex_lock(r->lock);
        r->ret = ret;
        r->done = true;
        g_cond_broadcast(r->cond);
        g_mutex_unlock(r->lock);
    } else {
        r->ret = ret;
        r->done = true;
    }
}

/* Start @r in the main context; it runs until its first yield. */
static void io_req_start(IoReq *r)
{
    r->done = false;
    r->ret = -EINPROGRESS;
    qemu_coroutine_enter(qemu_coroutine_create(io_req_entry, r));
}

static void wait_all(IoReq *reqs, int n)
{
    for (int i = 0; i < n; i++) {
        while (!reqs[i].done) {
            aio_poll(qemu_get_aio_context(), true);
        }
    }
}

static int do_io(const AioEngineOps *eng, void *s, int fd, uint64_t offset,
                 QEMUIOVector *qiov, int type)
{
    IoReq r = {
        .eng = eng, .s = s, .fd = fd, .offset = offset, .qiov = qiov,
        .type = type,
    };

    io_req_start(&r);
    wait_all(&r, 1);
    return r.ret;
}

static int do_buf(const AioEngineOps *eng, void *s, int fd, uint64_t offset,
                  void *buf, size_t len, int type)
{
    QEMUIOVector qiov;

    qemu_iovec_init_buf(&qiov, buf, len);
    return do_io(eng, s, fd, offset, &qiov, type);
}

/* ---- Files and data ---- */

static uint8_t pattern_byte(uint64_t off, unsigned int seed)
{
    return (uint8_t)(off * 7 + (off >> 12) * 31 + seed * 101 + 1);
}

static void fill_pattern(uint8_t *buf, uint64_t off, size_t len,
                         unsigned int seed)
{
    for (size_t i = 0; i < len; i++) {
        buf[i] = pattern_byte(off + i, seed);
    }
}

static void check_pattern(const uint8_t *buf, uint64_t off, size_t len,
                          unsigned int seed)
{
    for (size_t i = 0; i < len; i++) {
        if (buf[i] != pattern_byte(off + i, seed)) {
            g_error("byte at file offset %" PRIu64 " is %#x, want %#x",
                    off + i, buf[i], pattern_byte(off + i, seed));
        }
    }
}

static void *aligned_alloc0(size_t len)
{
    void *p = NULL;

    g_assert_cmpint(posix_memalign(&p, BLK, len), ==, 0);
    memset(p, 0, len);
    return p;
}

typedef struct TestFile {
    char *path;
    int fd;             /* buffered, O_RDWR */
    int dfd;            /* O_DIRECT or -1 */
} TestFile;

/*
 * A temporary file of @size bytes filled with pattern seed 0.  With
 * @direct, also opens it O_DIRECT; if the filesystem refuses, skips the
 * test and returns false.
 */
static bool test_file_open(TestFile *tf, size_t size, bool direct)
{
    g_autoptr(GError) err = NULL;
    g_autofree uint8_t *buf = g_malloc(size ? size : 1);

    tf->fd = g_file_open_tmp("sluice-engines-XXXXXX", &tf->path, &err);
    g_assert_no_error(err);
    tf->dfd = -1;
    fill_pattern(buf, 0, size, 0);
    g_assert_cmpint(pwrite(tf->fd, buf, size, 0), ==, (ssize_t)size);

    if (direct) {
        tf->dfd = open(tf->path, O_RDWR | O_DIRECT);
        if (tf->dfd < 0) {
            g_autofree char *msg =
                g_strdup_printf("O_DIRECT refused on %s: %s",
                                g_get_tmp_dir(), g_strerror(errno));
            g_test_skip(msg);
            close(tf->fd);
            unlink(tf->path);
            g_free(tf->path);
            return false;
        }
    }
    return true;
}

static void test_file_close(TestFile *tf)
{
    if (tf->dfd >= 0) {
        close(tf->dfd);
    }
    close(tf->fd);
    unlink(tf->path);
    g_free(tf->path);
}

/* ---- Test cases ---- */

typedef struct TestCase {
    const AioEngineOps *eng;
    bool direct;
} TestCase;

/* Single-buffer reads and writes at assorted offsets and sizes. */
static void test_rw(const void *opaque)
{
    const TestCase *tc = opaque;
    const AioEngineOps *eng = tc->eng;
    static const struct { uint64_t off; size_t len; } buffered[] = {
        { 0, 4096 }, { 1, 1 }, { 777, 10000 }, { 65536, 131072 },
        { 1048575, 1 },
    };
    static const struct { uint64_t off; size_t len; } direct[] = {
        { 0, 4096 }, { 4096, 512 * 1024 }, { 1044480, 4096 },
        { 12288, 8192 },
    };
    const size_t fsize = 1024 * 1024;
    TestFile tf;
    void *s;
    int fd;
    size_t n = tc->direct ? G_N_ELEMENTS(direct) : G_N_ELEMENTS(buffered);

    s = engine_open(eng);
    if (!s) {
        return;
    }
    if (!test_file_open(&tf, fsize, tc->direct)) {
        engine_close(eng, s);
        return;
    }
    fd = tc->direct ? tf.dfd : tf.fd;

    for (size_t i = 0; i < n; i++) {
        uint64_t off = tc->direct ? direct[i].off : buffered[i].off;
        size_t len = tc->direct ? direct[i].len : buffered[i].len;
        uint8_t *buf = aligned_alloc0(len);
        uint8_t *check = g_malloc(len);
        unsigned int seed = i + 1;

        /* Read what pwrite put there. */
        g_assert_cmpint(do_buf(eng, s, fd, off, buf, len, QEMU_AIO_READ),
                        ==, len);
        check_pattern(buf, off, len, 0);

        /* Write a new pattern and read it back with pread. */
        fill_pattern(buf, off, len, seed);
        g_assert_cmpint(do_buf(eng, s, fd, off, buf, len, QEMU_AIO_WRITE),
                        ==, len);
        g_assert_cmpint(pread(tf.fd, check, len, off), ==, (ssize_t)len);
        check_pattern(check, off, len, seed);

        /* Restore with pwrite; the engine must see the new data. */
        fill_pattern(check, off, len, 0);
        g_assert_cmpint(pwrite(tf.fd, check, len, off), ==, (ssize_t)len);
        if (tc->direct) {
            g_assert_cmpint(fdatasync(tf.fd), ==, 0);
        }
        memset(buf, 0, len);
        g_assert_cmpint(do_buf(eng, s, fd, off, buf, len, QEMU_AIO_READ),
                        ==, len);
        check_pattern(buf, off, len, 0);

        free(buf);
        g_free(check);
    }

    /* A zero-length request does nothing and succeeds. */
    g_assert_cmpint(do_buf(eng, s, fd, 0, NULL, 0, QEMU_AIO_READ), ==, 0);

    test_file_close(&tf);
    engine_close(eng, s);
}

/* Multi-element vectors, scattered over separate buffers. */
static void test_iov(const void *opaque)
{
    const TestCase *tc = opaque;
    const AioEngineOps *eng = tc->eng;
    static const size_t buffered_lens[] = { 100, 3000, 1, 5000, 4096 };
    static const size_t direct_lens[] = { 4096, 12288, 512, 8192 };
    const size_t *lens = tc->direct ? direct_lens : buffered_lens;
    size_t nlens = tc->direct ? G_N_ELEMENTS(direct_lens)
                              : G_N_ELEMENTS(buffered_lens);
    uint64_t off = tc->direct ? 8192 : 333;
    uint8_t *bufs[8];
    QEMUIOVector qiov;
    size_t total = 0, pos;
    TestFile tf;
    void *s;
    int fd;

    s = engine_open(eng);
    if (!s) {
        return;
    }
    if (!test_file_open(&tf, 256 * 1024, tc->direct)) {
        engine_close(eng, s);
        return;
    }
    fd = tc->direct ? tf.dfd : tf.fd;

    qemu_iovec_init(&qiov, nlens);
    for (size_t i = 0; i < nlens; i++) {
        bufs[i] = aligned_alloc0(lens[i]);
        qemu_iovec_add(&qiov, bufs[i], lens[i]);
        total += lens[i];
    }

    g_assert_cmpint(do_io(eng, s, fd, off, &qiov, QEMU_AIO_READ), ==, total);
    pos = off;
    for (size_t i = 0; i < nlens; i++) {
        check_pattern(bufs[i], pos, lens[i], 0);
        pos += lens[i];
    }

    pos = off;
    for (size_t i = 0; i < nlens; i++) {
        fill_pattern(bufs[i], pos, lens[i], 9);
        pos += lens[i];
    }
    g_assert_cmpint(do_io(eng, s, fd, off, &qiov, QEMU_AIO_WRITE), ==, total);
    {
        g_autofree uint8_t *check = g_malloc(total);

        g_assert_cmpint(pread(tf.fd, check, total, off), ==, (ssize_t)total);
        check_pattern(check, off, total, 9);
    }

    for (size_t i = 0; i < nlens; i++) {
        free(bufs[i]);
    }
    qemu_iovec_destroy(&qiov);
    test_file_close(&tf);
    engine_close(eng, s);
}

/*
 * Run @n requests of one block each under nested plugs.  Nothing may
 * complete before the outer unplug; afterwards all complete with the
 * right data.  @n larger than the engines' rings exercises their queues.
 */
static void run_batch(const TestCase *tc, int n)
{
    const AioEngineOps *eng = tc->eng;
    size_t fsize = (size_t)n * 2 * BLK;
    IoReq *reqs = g_new0(IoReq, n);
    QEMUIOVector *qiovs = g_new0(QEMUIOVector, n);
    uint8_t **bufs = g_new0(uint8_t *, n);
    TestFile tf;
    void *s;
    int fd;

    s = engine_open(eng);
    if (!s) {
        goto out_free;
    }
    if (!test_file_open(&tf, fsize, tc->direct)) {
        engine_close(eng, s);
        goto out_free;
    }
    fd = tc->direct ? tf.dfd : tf.fd;

    for (int pass = 0; pass < 2; pass++) {
        int type = pass == 0 ? QEMU_AIO_READ : QEMU_AIO_WRITE;

        eng->plug(s);
        eng->plug(s);
        for (int i = 0; i < n; i++) {
            /* Every other block, in reverse order: no sequential luck. */
            uint64_t off = (uint64_t)(n - 1 - i) * 2 * BLK;

            if (pass == 0) {
                bufs[i] = aligned_alloc0(BLK);
            } else {
                fill_pattern(bufs[i], off, BLK, i + 2);
            }
            qemu_iovec_init_buf(&qiovs[i], bufs[i], BLK);
            reqs[i] = (IoReq) {
                .eng = eng, .s = s, .fd = fd, .offset = off,
                .qiov = &qiovs[i], .type = type,
            };
            io_req_start(&reqs[i]);

            if (i == n / 2 - 1) {
                eng->unplug(s);
                /*
                 * Still plugged once: a half batch (below the engines'
                 * "queue full" threshold) must not have been submitted.
                 */
                for (int k = 0; n <= 128 && k < 20; k++) {
                    aio_poll(qemu_get_aio_context(), false);
                    g_usleep(1000);
                    for (int j = 0; j <= i; j++) {
                        g_assert_false(reqs[j].done);
                    }
                }
            }
        }

        eng->unplug(s);
        wait_all(reqs, n);
        for (int i = 0; i < n; i++) {
            uint64_t off = reqs[i].offset;

            g_assert_cmpint(reqs[i].ret, ==, BLK);
            if (pass == 0) {
                check_pattern(bufs[i], off, BLK, 0);
            } else {
                uint8_t check[BLK];

                g_assert_cmpint(pread(tf.fd, check, BLK, off), ==, BLK);
                check_pattern(check, off, BLK, i + 2);
                /* The blocks in between are untouched. */
                g_assert_cmpint(pread(tf.fd, check, BLK, off + BLK), ==, BLK);
                check_pattern(check, off + BLK, BLK, 0);
            }
        }
    }

    for (int i = 0; i < n; i++) {
        free(bufs[i]);
    }
    test_file_close(&tf);
    engine_close(eng, s);
out_free:
    g_free(bufs);
    g_free(qiovs);
    g_free(reqs);
}

static void test_batch(const void *opaque)
{
    run_batch(opaque, 128);
}

static void test_batch_overflow(const void *opaque)
{
    run_batch(opaque, 600);
}

/*
 * Many coroutines each looping over requests without plugging: the
 * completion path issues the next wave itself.
 */
typedef struct LoopCo {
    const AioEngineOps *eng;
    void *s;
    int fd;
    int id;
    int iters;
    int errors;
    bool done;
} LoopCo;

static void coroutine_fn loop_entry(void *opaque)
{
    LoopCo *l = opaque;
    uint8_t *buf = aligned_alloc0(BLK);
    QEMUIOVector qiov;

    qemu_iovec_init_buf(&qiov, buf, BLK);
    for (int i = 0; i < l->iters; i++) {
        uint64_t off = (uint64_t)((l->id * 7919 + i * 104729) % 256) * BLK;
        int ret = l->eng->submit(l->s, l->fd, off, &qiov, QEMU_AIO_READ);

        if (ret != BLK || buf[0] != pattern_byte(off, 0) ||
            buf[BLK - 1] != pattern_byte(off + BLK - 1, 0)) {
            l->errors++;
        }
    }
    free(buf);
    l->done = true;
}

static void test_loops(const void *opaque)
{
    const TestCase *tc = opaque;
    const AioEngineOps *eng = tc->eng;
    LoopCo loops[32];
    TestFile tf;
    void *s;

    s = engine_open(eng);
    if (!s) {
        return;
    }
    if (!test_file_open(&tf, 256 * BLK, tc->direct)) {
        engine_close(eng, s);
        return;
    }
    for (int i = 0; i < 32; i++) {
        loops[i] = (LoopCo) {
            .eng = eng, .s = s, .fd = tc->direct ? tf.dfd : tf.fd,
            .id = i, .iters = 200,
        };
        qemu_coroutine_enter(qemu_coroutine_create(loop_entry, &loops[i]));
    }
    for (int i = 0; i < 32; i++) {
        while (!loops[i].done) {
            aio_poll(qemu_get_aio_context(), true);
        }
        g_assert_cmpint(loops[i].errors, ==, 0);
    }
    test_file_close(&tf);
    engine_close(eng, s);
}

/* Reads that reach the end of the file return the short count. */
static void test_eof(const void *opaque)
{
    const TestCase *tc = opaque;
    const AioEngineOps *eng = tc->eng;
    /* Not a multiple of the block size, so the tail is a partial block. */
    const size_t fsize = tc->direct ? 2 * BLK + 512 : 10000;
    uint8_t *buf = aligned_alloc0(4 * BLK);
    QEMUIOVector qiov;
    TestFile tf;
    void *s;
    int fd;

    s = engine_open(eng);
    if (!s) {
        goto out;
    }
    if (!test_file_open(&tf, fsize, tc->direct)) {
        engine_close(eng, s);
        goto out;
    }
    fd = tc->direct ? tf.dfd : tf.fd;

    /* Across EOF from the start. */
    g_assert_cmpint(do_buf(eng, s, fd, 0, buf, 4 * BLK, QEMU_AIO_READ),
                    ==, fsize);
    check_pattern(buf, 0, fsize, 0);

    /* Across EOF from the middle. */
    memset(buf, 0, 4 * BLK);
    g_assert_cmpint(do_buf(eng, s, fd, BLK, buf, 2 * BLK, QEMU_AIO_READ),
                    ==, fsize - BLK);
    check_pattern(buf, BLK, fsize - BLK, 0);

    /* Exactly at and past EOF. */
    if (!tc->direct) {
        g_assert_cmpint(do_buf(eng, s, fd, fsize, buf, BLK, QEMU_AIO_READ),
                        ==, 0);
    }
    g_assert_cmpint(do_buf(eng, s, fd, 8 * BLK, buf, BLK, QEMU_AIO_READ),
                    ==, 0);

    /* A vector whose second element straddles EOF. */
    qemu_iovec_init(&qiov, 2);
    qemu_iovec_add(&qiov, buf, BLK);
    qemu_iovec_add(&qiov, buf + 2 * BLK, 2 * BLK);
    memset(buf, 0, 4 * BLK);
    g_assert_cmpint(do_io(eng, s, fd, BLK, &qiov, QEMU_AIO_READ), ==,
                    fsize - BLK);
    check_pattern(buf, BLK, BLK, 0);
    check_pattern(buf + 2 * BLK, 2 * BLK, fsize - 2 * BLK, 0);
    qemu_iovec_destroy(&qiov);

    test_file_close(&tf);
    engine_close(eng, s);
out:
    free(buf);
}

/*
 * Short reads not at EOF are continued: a pipe holds only part of the
 * data when the read starts, the rest comes later from another thread.
 */
typedef struct PipeWriter {
    int fd;
    const char *data;
} PipeWriter;

static gpointer pipe_writer_thread(gpointer opaque)
{
    PipeWriter *w = opaque;

    g_usleep(50 * 1000);
    g_assert_cmpint(write(w->fd, w->data, strlen(w->data)), ==,
                    (ssize_t)strlen(w->data));
    return NULL;
}

static void test_short_continue(const void *opaque)
{
    const TestCase *tc = opaque;
    const AioEngineOps *eng = tc->eng;
    const char *first = "0123456789";
    PipeWriter w = { .data = "abcdefghijklmnop" };
    char buf[64] = "";
    int p[2];
    GThread *t;
    void *s;

    s = engine_open(eng);
    if (!s) {
        return;
    }
    g_assert_cmpint(pipe(p), ==, 0);
    w.fd = p[1];
    g_assert_cmpint(write(p[1], first, 10), ==, 10);
    t = g_thread_new("pipe-writer", pipe_writer_thread, &w);

    /* 10 bytes are there now; the kernel returns them short. */
    g_assert_cmpint(do_buf(eng, s, p[0], 0, buf, 26, QEMU_AIO_READ), ==, 26);
    g_assert_cmpmem(buf, 26, "0123456789abcdefghijklmnop", 26);

    g_thread_join(t);
    close(p[0]);
    close(p[1]);
    engine_close(eng, s);
}

/* A closed fd fails with EBADF, also in the middle of a batch. */
static void test_ebadf(const void *opaque)
{
    const TestCase *tc = opaque;
    const AioEngineOps *eng = tc->eng;
    uint8_t *buf = aligned_alloc0(3 * BLK);
    QEMUIOVector qiov[3];
    IoReq reqs[3];
    TestFile tf;
    int badfd;
    void *s;

    s = engine_open(eng);
    if (!s) {
        goto out;
    }
    g_assert_true(test_file_open(&tf, 16 * BLK, false));
    badfd = dup(tf.fd);
    g_assert_cmpint(badfd, >=, 0);
    close(badfd);

    g_assert_cmpint(do_buf(eng, s, badfd, 0, buf, BLK, QEMU_AIO_READ),
                    ==, -EBADF);
    g_assert_cmpint(do_buf(eng, s, badfd, 0, buf, BLK, QEMU_AIO_WRITE),
                    ==, -EBADF);

    /* Good, bad, good in one submission: only the bad one fails. */
    eng->plug(s);
    for (int i = 0; i < 3; i++) {
        qemu_iovec_init_buf(&qiov[i], buf + i * BLK, BLK);
        reqs[i] = (IoReq) {
            .eng = eng, .s = s, .fd = i == 1 ? badfd : tf.fd,
            .offset = i * BLK, .qiov = &qiov[i], .type = QEMU_AIO_READ,
        };
        io_req_start(&reqs[i]);
    }
    eng->unplug(s);
    wait_all(reqs, 3);
    g_assert_cmpint(reqs[0].ret, ==, BLK);
    g_assert_cmpint(reqs[1].ret, ==, -EBADF);
    g_assert_cmpint(reqs[2].ret, ==, BLK);
    check_pattern(buf, 0, BLK, 0);
    check_pattern(buf + 2 * BLK, 2 * BLK, BLK, 0);

    /* The engine still works afterwards. */
    g_assert_cmpint(do_buf(eng, s, tf.fd, BLK, buf, BLK, QEMU_AIO_READ),
                    ==, BLK);
    check_pattern(buf, BLK, BLK, 0);

    test_file_close(&tf);
    engine_close(eng, s);
out:
    free(buf);
}

/* O_DIRECT with a misaligned buffer, offset or length fails with EINVAL. */
static void test_einval(const void *opaque)
{
    const TestCase *tc = opaque;
    const AioEngineOps *eng = tc->eng;
    uint8_t *buf = aligned_alloc0(3 * BLK);
    TestFile tf;
    void *s;

    s = engine_open(eng);
    if (!s) {
        goto out;
    }
    if (!test_file_open(&tf, 16 * BLK, true)) {
        engine_close(eng, s);
        goto out;
    }

    g_assert_cmpint(do_buf(eng, s, tf.dfd, 0, buf + 1, BLK, QEMU_AIO_READ),
                    ==, -EINVAL);
    g_assert_cmpint(do_buf(eng, s, tf.dfd, 1, buf, BLK, QEMU_AIO_READ),
                    ==, -EINVAL);
    g_assert_cmpint(do_buf(eng, s, tf.dfd, 0, buf, 100, QEMU_AIO_READ),
                    ==, -EINVAL);
    g_assert_cmpint(do_buf(eng, s, tf.dfd, 0, buf + 1, BLK, QEMU_AIO_WRITE),
                    ==, -EINVAL);
    g_assert_cmpint(do_buf(eng, s, tf.dfd, 7, buf, BLK, QEMU_AIO_WRITE),
                    ==, -EINVAL);

    /* Nothing was written by the failed writes. */
    {
        uint8_t check[BLK];

        g_assert_cmpint(pread(tf.fd, check, BLK, 0), ==, BLK);
        check_pattern(check, 0, BLK, 0);
    }

    /* Aligned requests still work. */
    g_assert_cmpint(do_buf(eng, s, tf.dfd, BLK, buf, 2 * BLK,
                           QEMU_AIO_READ), ==, 2 * BLK);
    check_pattern(buf, BLK, 2 * BLK, 0);

    test_file_close(&tf);
    engine_close(eng, s);
out:
    free(buf);
}

static void test_flush(const void *opaque)
{
    const TestCase *tc = opaque;
    const AioEngineOps *eng = tc->eng;
    uint8_t buf[BLK];
    TestFile tf;
    void *s;
    int badfd;

    s = engine_open(eng);
    if (!s) {
        return;
    }
    g_assert_true(test_file_open(&tf, 4 * BLK, false));
    fill_pattern(buf, 0, BLK, 3);
    g_assert_cmpint(do_buf(eng, s, tf.fd, 0, buf, BLK, QEMU_AIO_WRITE),
                    ==, BLK);

    if (eng->has_flush) {
        g_assert_cmpint(do_io(eng, s, tf.fd, 0, NULL, QEMU_AIO_FLUSH),
                        ==, 0);
        badfd = dup(tf.fd);
        close(badfd);
        g_assert_cmpint(do_io(eng, s, badfd, 0, NULL, QEMU_AIO_FLUSH),
                        ==, -EBADF);
    } else {
        g_assert_cmpint(do_io(eng, s, tf.fd, 0, NULL, QEMU_AIO_FLUSH),
                        ==, -ENOTSUP);
    }

    test_file_close(&tf);
    engine_close(eng, s);
}

/*
 * Move an engine to a second context and back.  Its completions are
 * handled only by the context it is attached to.
 */
static void test_move(const void *opaque)
{
    const TestCase *tc = opaque;
    const AioEngineOps *eng = tc->eng;
    g_autoptr(GError) err = NULL;
    AioContext *main_ctx = qemu_get_aio_context();
    AioContext *ctx2;
    uint8_t buf[BLK];
    QEMUIOVector qiov;
    TestFile tf;
    IoReq r;
    void *s;

    s = engine_open(eng);
    if (!s) {
        return;
    }
    g_assert_true(test_file_open(&tf, 16 * BLK, false));
    ctx2 = aio_context_new(&err);
    g_assert_no_error(err);

    g_assert_cmpint(do_buf(eng, s, tf.fd, 0, buf, BLK, QEMU_AIO_READ),
                    ==, BLK);
    check_pattern(buf, 0, BLK, 0);

    eng->detach(s, main_ctx);
    eng->attach(s, ctx2);
    /* Let the main context finish whatever the detach left to it. */
    while (aio_poll(main_ctx, false)) {
        /* nothing */
    }

    qemu_iovec_init_buf(&qiov, buf, BLK);
    r = (IoReq) {
        .eng = eng, .s = s, .fd = tf.fd, .offset = 3 * BLK, .qiov = &qiov,
        .type = QEMU_AIO_READ, .ret = -EINPROGRESS,
    };
    memset(buf, 0, BLK);
    qemu_aio_coroutine_enter(ctx2, qemu_coroutine_create(io_req_entry, &r));

    /* The old context no longer even sees the completion... */
    for (int i = 0; i < 20; i++) {
        g_assert_false(aio_poll(main_ctx, false));
        g_usleep(1000);
    }
    g_assert_false(r.done);
    /* ...the new one does. */
    while (!r.done) {
        aio_poll(ctx2, true);
    }
    g_assert_cmpint(r.ret, ==, BLK);
    check_pattern(buf, 3 * BLK, BLK, 0);

    eng->detach(s, ctx2);
    eng->attach(s, main_ctx);
    memset(buf, 0, BLK);
    g_assert_cmpint(do_buf(eng, s, tf.fd, 5 * BLK, buf, BLK, QEMU_AIO_READ),
                    ==, BLK);
    check_pattern(buf, 5 * BLK, BLK, 0);

    aio_context_unref(ctx2);
    test_file_close(&tf);
    engine_close(eng, s);
}

/* ---- In an iothread ---- */

typedef struct ThreadCall {
    const AioEngineOps *eng;
    void *s;
    AioContext *ctx;
    bool attach;
    bool done;
    GMutex lock;
    GCond cond;
} ThreadCall;

/* Attach or detach in the context's own thread, as the contract asks. */
static void thread_call_bh(void *opaque)
{
    ThreadCall *c = opaque;

    if (c->attach) {
        c->eng->attach(c->s, c->ctx);
    } else {
        c->eng->detach(c->s, c->ctx);
    }
    g_mutex_lock(&c->lock);
    c->done = true;
    g_cond_signal(&c->cond);
    g_mutex_unlock(&c->lock);
}

static void run_in_thread(ThreadCall *c, bool attach)
{
    c->attach = attach;
    c->done = false;
    aio_bh_schedule_oneshot(c->ctx, thread_call_bh, c);
    g_mutex_lock(&c->lock);
    while (!c->done) {
        g_cond_wait(&c->cond, &c->lock);
    }
    g_mutex_unlock(&c->lock);
}

static void test_iothread(const void *opaque)
{
    const TestCase *tc = opaque;
    const AioEngineOps *eng = tc->eng;
    enum { N = 64 };
    g_autoptr(GError) err = NULL;
    ThreadCall call = { .eng = eng };
    IoReq reqs[N];
    QEMUIOVector qiovs[N];
    uint8_t *bufs[N];
    GMutex lock;
    GCond cond;
    IOThread *iot;
    TestFile tf;
    void *s;

    s = engine_open(eng);
    if (!s) {
        return;
    }
    eng->detach(s, qemu_get_aio_context());
    if (!test_file_open(&tf, 2 * N * BLK, tc->direct)) {
        eng->cleanup(s);
        return;
    }
    iot = iothread_create("engines-test", &err);
    g_assert_no_error(err);

    g_mutex_init(&lock);
    g_cond_init(&cond);
    g_mutex_init(&call.lock);
    g_cond_init(&call.cond);
    call.s = s;
    call.ctx = iothread_get_aio_context(iot);
    run_in_thread(&call, true);

    for (int pass = 0; pass < 2; pass++) {
        int type = pass == 0 ? QEMU_AIO_READ : QEMU_AIO_WRITE;

        for (int i = 0; i < N; i++) {
            uint64_t off = (uint64_t)i * 2 * BLK;

            if (pass == 0) {
                bufs[i] = aligned_alloc0(BLK);
            } else {
                fill_pattern(bufs[i], off, BLK, 5);
            }
            qemu_iovec_init_buf(&qiovs[i], bufs[i], BLK);
            reqs[i] = (IoReq) {
                .eng = eng, .s = s, .fd = tc->direct ? tf.dfd : tf.fd,
                .offset = off, .qiov = &qiovs[i], .type = type,
                .ret = -EINPROGRESS, .lock = &lock, .cond = &cond,
            };
            aio_co_schedule(call.ctx,
                            qemu_coroutine_create(io_req_entry, &reqs[i]));
        }

        g_mutex_lock(&lock);
        for (int i = 0; i < N; i++) {
            while (!reqs[i].done) {
                g_cond_wait(&cond, &lock);
            }
        }
        g_mutex_unlock(&lock);

        for (int i = 0; i < N; i++) {
            uint64_t off = reqs[i].offset;

            g_assert_cmpint(reqs[i].ret, ==, BLK);
            if (pass == 0) {
                check_pattern(bufs[i], off, BLK, 0);
            } else {
                uint8_t check[BLK];

                g_assert_cmpint(pread(tf.fd, check, BLK, off), ==, BLK);
                check_pattern(check, off, BLK, 5);
            }
        }
    }

    run_in_thread(&call, false);
    iothread_destroy(iot);
    eng->cleanup(s);

    for (int i = 0; i < N; i++) {
        free(bufs[i]);
    }
    g_mutex_clear(&call.lock);
    g_cond_clear(&call.cond);
    g_mutex_clear(&lock);
    g_cond_clear(&cond);
    test_file_close(&tf);
}

/* An engine can be created and destroyed without ever doing I/O. */
static void test_init_cleanup(const void *opaque)
{
    const TestCase *tc = opaque;
    void *s = engine_open(tc->eng);

    if (s) {
        engine_close(tc->eng, s);
    }
}

static void add_case(const AioEngineOps *eng, const char *name, bool direct,
                     GTestDataFunc fn)
{
    TestCase *tc = g_new0(TestCase, 1);
    g_autofree char *path = NULL;

    tc->eng = eng;
    tc->direct = direct;
    path = g_strdup_printf("/aio-engines/%s/%s", eng->name, name);
    g_test_add_data_func_full(path, tc, fn, g_free);
}

int main(int argc, char **argv)
{
    const AioEngineOps *engines[] = { &engine_laio, &engine_luring };

    g_test_init(&argc, &argv, NULL);
    g_assert(qemu_init_main_loop(NULL));

    for (size_t i = 0; i < G_N_ELEMENTS(engines); i++) {
        const AioEngineOps *eng = engines[i];

        add_case(eng, "init-cleanup", false, test_init_cleanup);
        add_case(eng, "rw-buffered", false, test_rw);
        add_case(eng, "rw-direct", true, test_rw);
        add_case(eng, "iov-buffered", false, test_iov);
        add_case(eng, "iov-direct", true, test_iov);
        add_case(eng, "batch-buffered", false, test_batch);
        add_case(eng, "batch-direct", true, test_batch);
        add_case(eng, "batch-overflow-direct", true, test_batch_overflow);
        add_case(eng, "loops-direct", true, test_loops);
        add_case(eng, "eof-buffered", false, test_eof);
        add_case(eng, "eof-direct", true, test_eof);
        add_case(eng, "short-continue", false, test_short_continue);
        add_case(eng, "ebadf", false, test_ebadf);
        add_case(eng, "einval-direct", true, test_einval);
        add_case(eng, "flush", false, test_flush);
        add_case(eng, "move-context", false, test_move);
        add_case(eng, "iothread-direct", true, test_iothread);
    }
    return g_test_run();
}
