/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The "file" protocol driver: I/O through each engine, O_DIRECT with
 * unaligned requests and buffers, zeroes, discard, block status, truncate,
 * reopen, open errors worded as QEMU's, and image locking against other
 * nodes and against QEMU's own qemu-io.
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * Files live in a temporary directory of their own.  Lock bytes are
 * inspected from a separate fd with F_OFD_GETLK, which sees the locks of
 * every other open file description, ours included.
 */
#include "qemu/osdep.h"

#include <grp.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "block/aio-wait.h"
#include "block/block_int.h"
#include "qemu/coroutine.h"
#include "qemu/iothread.h"
#include "qemu/keyval.h"
#include "qemu/main-loop.h"
#include "sysemu/block-backend.h"

#define QEMU_IO "/usr/bin/qemu-io"
#define QEMU_IMG "/usr/bin/qemu-img"

/* Bits of held_locks(): byte 100 + n and byte 200 + n. */
#define PERM_BYTE(n)    (1u << (n))
#define SHARED_BYTE(n)  (1u << (8 + (n)))

static char *tmp_dir;

typedef struct EngineCase {
    const char *aio;
    bool direct;
} EngineCase;

static const EngineCase engine_cases[] = {
    { "threads", false },
    { "threads", true },
    { "native", true },
    { "io_uring", false },
    { "io_uring", true },
};

/* ---- Helpers ---- */

static char *tmp_file(const char *name)
{
    return g_build_filename(tmp_dir, name, NULL);
}

/* Create @path of @size bytes, each byte (offset * 7 + @seed) & 0xff. */
static void make_file(const char *path, size_t size, int seed)
{
    g_autofree uint8_t *buf = g_malloc(size ? size : 1);
    size_t i;

    for (i = 0; i < size; i++) {
        buf[i] = (i * 7 + seed) & 0xff;
    }
    g_assert_true(g_file_set_contents(path, (char *)buf, size, NULL));
}

static void make_sparse_file(const char *path, off_t size)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(ftruncate(fd, size), ==, 0);
    close(fd);
}

static void file_pread(const char *path, void *buf, size_t len, off_t off)
{
    int fd = open(path, O_RDONLY);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(pread(fd, buf, len, off), ==, len);
    close(fd);
}

static void file_pwrite(const char *path, const void *buf, size_t len,
                        off_t off)
{
    int fd = open(path, O_WRONLY);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(pwrite(fd, buf, len, off), ==, len);
    g_assert_cmpint(fsync(fd), ==, 0);
    close(fd);
}

static struct stat file_stat(const char *path)
{
    struct stat st;

    g_assert_cmpint(stat(path, &st), ==, 0);
    return st;
}

static bool is_filled(const uint8_t *buf, size_t len, uint8_t c)
{
    size_t i;

    for (i = 0; i < len; i++) {
        if (buf[i] != c) {
            return false;
        }
    }
    return true;
}

/* Options from NULL-terminated key/value string pairs. */
static JsonObject *G_GNUC_NULL_TERMINATED opts_new(const char *key, ...)
{
    JsonObject *o = json_object_new();
    va_list ap;

    va_start(ap, key);
    while (key) {
        json_object_set_string_member(o, key, va_arg(ap, const char *));
        key = va_arg(ap, const char *);
    }
    va_end(ap);
    return o;
}

static BlockDriver *file_drv(void)
{
    BlockDriver *drv = bdrv_find_format("file");

    g_assert_nonnull(drv);
    return drv;
}

/* A backend with the given permissions over a new file node. */
static BlockBackend *open_perm(JsonObject *opts, int flags, uint64_t perm,
                               uint64_t shared, GError **errp)
{
    BlockDriverState *bs;
    BlockBackend *blk;

    bs = bdrv_open_driver(file_drv(), NULL, opts, flags, errp);
    if (!bs) {
        return NULL;
    }
    blk = blk_new(qemu_get_aio_context(), perm, shared);
    if (!blk_insert_bs(blk, bs, errp)) {
        blk_unref(blk);
        bdrv_unref(bs);
        return NULL;
    }
    bdrv_unref(bs);
    return blk;
}

static BlockBackend *open_file(const char *path, int flags, GError **errp)
{
    g_autoptr(JsonObject) opts = opts_new("filename", path, NULL);

    return blk_new_open_driver(file_drv(), NULL, opts, flags, errp);
}

/* The message of a failed open with @opts and @flags. */
static char *open_error(JsonObject *opts, int flags)
{
    g_autoptr(GError) err = NULL;
    BlockBackend *blk;

    blk = blk_new_open_driver(file_drv(), NULL, opts, flags, &err);
    g_assert_null(blk);
    g_assert_nonnull(err);
    return g_strdup(err->message);
}

static bool byte_locked(int fd, int byte)
{
    struct flock fl = {
        .l_type = F_WRLCK,
        .l_whence = SEEK_SET,
        .l_start = byte,
        .l_len = 1,
    };

    g_assert_cmpint(fcntl(fd, F_OFD_GETLK, &fl), ==, 0);
    return fl.l_type != F_UNLCK;
}

/* Which of bytes 100..104 and 200..204 someone holds. */
static unsigned held_locks(const char *path)
{
    int fd = open(path, O_RDONLY);
    unsigned mask = 0;
    int n;

    g_assert_cmpint(fd, >=, 0);
    for (n = 0; n < 5; n++) {
        if (byte_locked(fd, 100 + n)) {
            mask |= PERM_BYTE(n);
        }
        if (byte_locked(fd, 200 + n)) {
            mask |= SHARED_BYTE(n);
        }
    }
    close(fd);
    return mask;
}

/* How many fds of this process are open on @path. */
static int fds_on(const char *path)
{
    struct stat want = file_stat(path);
    GDir *dir = g_dir_open("/proc/self/fd", 0, NULL);
    const char *name;
    int count = 0;

    g_assert_nonnull(dir);
    while ((name = g_dir_read_name(dir))) {
        g_autofree char *p = g_build_filename("/proc/self/fd", name, NULL);
        struct stat st;

        if (stat(p, &st) == 0 && st.st_dev == want.st_dev &&
            st.st_ino == want.st_ino) {
            count++;
        }
    }
    g_dir_close(dir);
    return count;
}

/* Skip the test and return false if @aio cannot run here. */
static bool engine_available(const char *aio)
{
    g_autoptr(GError) err = NULL;
    bool ok = true;

    if (strcmp(aio, "native") == 0) {
        ok = aio_setup_linux_aio(qemu_get_aio_context(), &err) != NULL;
    } else if (strcmp(aio, "io_uring") == 0) {
        ok = aio_setup_linux_io_uring(qemu_get_aio_context(), &err) != NULL;
    }
    if (!ok) {
        g_autofree char *why = g_strdup_printf("aio=%s unavailable: %s",
                                               aio, err->message);
        g_test_skip(why);
    }
    return ok;
}

static BlockBackend *open_engine(const char *path, const EngineCase *c,
                                 int flags)
{
    g_autoptr(JsonObject) opts = opts_new("filename", path, "aio", c->aio,
                                          NULL);
    g_autoptr(GError) err = NULL;
    BlockBackend *blk;

    flags |= c->direct ? BDRV_O_NOCACHE : 0;
    blk = blk_new_open_driver(file_drv(), NULL, opts, flags, &err);
    g_assert_no_error(err);
    return blk;
}

/* ---- Running coroutines from the test ---- */

typedef enum DrvOp {
    DRV_READ,
    DRV_ZEROES,
    BLK_READV,
    BLK_WRITEV,
} DrvOp;

typedef struct CoCall {
    DrvOp op;
    BlockDriverState *bs;
    BlockBackend *blk;
    int64_t offset;
    int64_t bytes;
    QEMUIOVector *qiov;
    int flags;
    int ret;
    bool done;
} CoCall;

static void coroutine_fn co_call_entry(void *opaque)
{
    CoCall *c = opaque;

    switch (c->op) {
    case DRV_READ:
        c->ret = c->bs->drv->bdrv_co_preadv(c->bs, c->offset, c->bytes,
                                            c->qiov, 0);
        break;
    case DRV_ZEROES:
        c->ret = c->bs->drv->bdrv_co_pwrite_zeroes(c->bs, c->offset,
                                                   c->bytes, c->flags);
        break;
    case BLK_READV:
        c->ret = blk_co_preadv(c->blk, c->offset, c->bytes, c->qiov, 0);
        break;
    case BLK_WRITEV:
        c->ret = blk_co_pwritev(c->blk, c->offset, c->bytes, c->qiov,
                                c->flags);
        break;
    }
    c->done = true;
}

static void co_start(CoCall *c)
{
    qemu_coroutine_enter(qemu_coroutine_create(co_call_entry, c));
}

static int co_run(CoCall *c)
{
    co_start(c);
    AIO_WAIT_WHILE(qemu_get_aio_context(), !c->done);
    return c->ret;
}

static void *aligned_buf(size_t len)
{
    void *p = NULL;

    g_assert_cmpint(posix_memalign(&p, 4096, len), ==, 0);
    return p;
}

/* ---- I/O through each engine ---- */

#define NR_CONCURRENT 16
#define CONCURRENT_LEN (16 * 1024)

static void test_rw(gconstpointer data)
{
    const EngineCase *c = data;
    g_autofree char *path = tmp_file("rw.img");
    CoCall calls[NR_CONCURRENT];
    QEMUIOVector qiovs[NR_CONCURRENT];
    uint8_t *bufs[NR_CONCURRENT];
    g_autofree struct iovec *iov = NULL;
    QEMUIOVector qiov;
    uint8_t *buf, *check;
    BlockBackend *blk;
    int i;

    if (!engine_available(c->aio)) {
        return;
    }
    make_file(path, MiB, 0);
    blk = open_engine(path, c, BDRV_O_RDWR);
    g_assert_cmpint(blk_getlength(blk), ==, MiB);

    /* Writes in flight together, each to its own range. */
    for (i = 0; i < NR_CONCURRENT; i++) {
        bufs[i] = aligned_buf(CONCURRENT_LEN);
        memset(bufs[i], 0x40 + i, CONCURRENT_LEN);
        qemu_iovec_init_buf(&qiovs[i], bufs[i], CONCURRENT_LEN);
        calls[i] = (CoCall) {
            .op = BLK_WRITEV,
            .blk = blk,
            .offset = 65536 + i * CONCURRENT_LEN,
            .bytes = CONCURRENT_LEN,
            .qiov = &qiovs[i],
            .flags = i == 3 ? BDRV_REQ_FUA : 0,
        };
        co_start(&calls[i]);
    }
    for (i = 0; i < NR_CONCURRENT; i++) {
        AIO_WAIT_WHILE(qemu_get_aio_context(), !calls[i].done);
        g_assert_cmpint(calls[i].ret, ==, 0);
    }
    g_assert_cmpint(blk_flush(blk), ==, 0);

    /* Reads in flight together see what was written. */
    for (i = 0; i < NR_CONCURRENT; i++) {
        memset(bufs[i], 0, CONCURRENT_LEN);
        calls[i].op = BLK_READV;
        calls[i].done = false;
        co_start(&calls[i]);
    }
    for (i = 0; i < NR_CONCURRENT; i++) {
        AIO_WAIT_WHILE(qemu_get_aio_context(), !calls[i].done);
        g_assert_cmpint(calls[i].ret, ==, 0);
        g_assert_true(is_filled(bufs[i], CONCURRENT_LEN, 0x40 + i));
        free(bufs[i]);
    }

    /* The data is in the file, and the rest of it untouched. */
    check = g_malloc(MiB);
    file_pread(path, check, MiB, 0);
    for (i = 0; i < NR_CONCURRENT; i++) {
        g_assert_true(is_filled(check + 65536 + i * CONCURRENT_LEN,
                                CONCURRENT_LEN, 0x40 + i));
    }
    g_assert_cmpint(check[65535], ==, (65535 * 7) & 0xff);
    g_assert_cmpint(check[65536 + NR_CONCURRENT * CONCURRENT_LEN], ==,
                    ((65536 + NR_CONCURRENT * CONCURRENT_LEN) * 7) & 0xff);

    /* Reads of the file's own bytes, up to its very end. */
    buf = aligned_buf(8192);
    g_assert_cmpint(blk_pread(blk, MiB - 8192, 8192, buf, 0), ==, 0);
    g_assert_cmpmem(buf, 8192, check + MiB - 8192, 8192);
    free(buf);

    /* More pieces than the kernel takes in one call (IOV_MAX). */
    buf = aligned_buf(MiB);
    iov = g_new(struct iovec, 2048);
    for (i = 0; i < 2048; i++) {
        iov[i].iov_base = buf + i * 512;
        iov[i].iov_len = 512;
    }
    qemu_iovec_init_external(&qiov, iov, 2048);
    calls[0] = (CoCall) {
        .op = BLK_READV, .blk = blk, .offset = 0, .bytes = MiB,
        .qiov = &qiov,
    };
    g_assert_cmpint(co_run(&calls[0]), ==, 0);
    g_assert_cmpmem(buf, MiB, check, MiB);
    g_free(check);
    free(buf);

    blk_unref(blk);
    g_assert_cmpint(held_locks(path), ==, 0);
    unlink(path);
}

/* ---- O_DIRECT ---- */

static void test_direct_unaligned(gconstpointer data)
{
    const EngineCase *c = data;
    g_autofree char *path = tmp_file("direct.img");
    g_autofree uint8_t *expect = g_malloc(MiB);
    g_autofree uint8_t *raw = g_malloc(65536 + 1);
    g_autofree uint8_t *check = g_malloc(MiB);
    g_autofree struct iovec *iov = NULL;
    uint8_t *misaligned = raw + 1;
    BlockDriverState *bs;
    QEMUIOVector qiov;
    BlockBackend *blk;
    CoCall call;
    int i;

    if (!engine_available(c->aio)) {
        return;
    }
    /* Real data everywhere: O_DIRECT checks alignment where it reads. */
    make_file(path, MiB, 3);
    file_pread(path, expect, MiB, 0);
    blk = open_engine(path, c, BDRV_O_RDWR);
    bs = blk_bs(blk);
    g_assert_true(is_power_of_2(bs->bl.request_alignment));
    g_assert_cmpint(bs->bl.request_alignment, >=, 512);

    /* A request unaligned at both ends: read-modify-write below us. */
    memset(misaligned, 0x5a, 3000);
    g_assert_cmpint(blk_pwrite(blk, 1001, 3000, misaligned, 0), ==, 0);
    memset(expect + 1001, 0x5a, 3000);
    memset(misaligned, 0, 3000);
    g_assert_cmpint(blk_pread(blk, 999, 3004, misaligned, 0), ==, 0);
    g_assert_cmpmem(misaligned, 3004, expect + 999, 3004);

    /* Aligned requests from a misaligned buffer go through a bounce. */
    memset(misaligned, 0x6b, 65536);
    g_assert_cmpint(blk_pwrite(blk, 131072, 65536, misaligned, 0), ==, 0);
    memset(expect + 131072, 0x6b, 65536);
    memset(misaligned, 0, 65536);
    g_assert_cmpint(blk_pread(blk, 131072 - 4096, 65536, misaligned, 0), ==,
                    0);
    g_assert_cmpmem(misaligned, 65536, expect + 131072 - 4096, 65536);

    /* More pieces than the kernel takes at once (IOV_MAX). */
    iov = g_new(struct iovec, 2048);
    for (i = 0; i < 2048; i++) {
        iov[i].iov_base = check + i * 512;
        iov[i].iov_len = 512;
    }
    qemu_iovec_init_external(&qiov, iov, 2048);
    call = (CoCall) {
        .op = BLK_READV, .blk = blk, .offset = 0, .bytes = MiB,
        .qiov = &qiov,
    };
    g_assert_cmpint(co_run(&call), ==, 0);
    g_assert_cmpmem(check, MiB, expect, MiB);

    g_assert_cmpint(blk_flush(blk), ==, 0);
    blk_unref(blk);

    file_pread(path, check, MiB, 0);
    g_assert_cmpmem(check, MiB, expect, MiB);
    unlink(path);
}

/* A file whose end is not aligned reads fine to its last byte. */
static void test_direct_eof_tail(void)
{
    g_autofree char *path = tmp_file("tail.img");
    uint8_t expect[1000];
    uint8_t buf[1000];
    BlockBackend *blk;
    GError *err = NULL;

    make_file(path, sizeof(expect), 9);
    file_pread(path, expect, sizeof(expect), 0);
    blk = open_file(path, BDRV_O_RDWR | BDRV_O_NOCACHE, &err);
    g_assert_no_error(err);
    /* The node is whole sectors long, as in QEMU; the rest is zeroes. */
    g_assert_cmpint(blk_getlength(blk), ==, 1024);
    g_assert_cmpint(blk_pread(blk, 1000, 24, buf, 0), ==, 0);
    g_assert_true(buf[0] == 0 && buf[23] == 0);

    g_assert_cmpint(blk_pread(blk, 0, 1000, buf, 0), ==, 0);
    g_assert_cmpmem(buf, 1000, expect, 1000);
    g_assert_cmpint(blk_pread(blk, 990, 10, buf, 0), ==, 0);
    g_assert_cmpmem(buf, 10, expect + 990, 10);

    /* As with QEMU, a write inside the first block keeps the size. */
    buf[0] = 7;
    g_assert_cmpint(blk_pwrite(blk, 0, 1, buf, 0), ==, 0);
    expect[0] = 7;
    blk_unref(blk);

    g_assert_cmpint(file_stat(path).st_size, ==, 1000);
    file_pread(path, buf, 1000, 0);
    g_assert_cmpmem(buf, 1000, expect, 1000);
    unlink(path);
}

/* The driver zero-fills what lies past the end of the file. */
static void test_read_past_eof(void)
{
    g_autofree char *path = tmp_file("eof.img");
    g_autofree uint8_t *buf = g_malloc(4096);
    QEMUIOVector qiov;
    BlockBackend *blk;
    GError *err = NULL;
    CoCall call;

    make_sparse_file(path, 0);
    memset(buf, 0xab, 1000);
    file_pwrite(path, buf, 1000, 0);
    blk = open_file(path, 0, &err);
    g_assert_no_error(err);

    memset(buf, 0xff, 2048);
    qemu_iovec_init_buf(&qiov, buf, 2048);
    call = (CoCall) {
        .op = DRV_READ, .bs = blk_bs(blk), .offset = 512, .bytes = 2048,
        .qiov = &qiov,
    };
    g_assert_cmpint(co_run(&call), ==, 0);
    g_assert_true(is_filled(buf, 488, 0xab));
    g_assert_true(is_filled(buf + 488, 2048 - 488, 0));

    memset(buf, 0xff, 4096);
    qemu_iovec_init_buf(&qiov, buf, 4096);
    call = (CoCall) {
        .op = DRV_READ, .bs = blk_bs(blk), .offset = 65536, .bytes = 4096,
        .qiov = &qiov,
    };
    g_assert_cmpint(co_run(&call), ==, 0);
    g_assert_true(is_filled(buf, 4096, 0));

    blk_unref(blk);
    g_assert_cmpint(file_stat(path).st_size, ==, 1000);
    unlink(path);
}

/* ---- Zeroes, discard and block status ---- */

static void fill_file(const char *path, size_t size, uint8_t c)
{
    g_autofree uint8_t *buf = g_malloc(size);

    memset(buf, c, size);
    g_assert_true(g_file_set_contents(path, (char *)buf, size, NULL));
}

static bool range_is_hole(const char *path, off_t offset, off_t len)
{
    int fd = open(path, O_RDONLY);
    off_t data;

    g_assert_cmpint(fd, >=, 0);
    data = lseek(fd, offset, SEEK_DATA);
    close(fd);
    return data < 0 || data >= offset + len;
}

static void test_write_zeroes(void)
{
    g_autofree char *path = tmp_file("zeroes.img");
    g_autofree uint8_t *buf = g_malloc(256 * 1024);
    g_autoptr(JsonObject) unmap_opts = NULL;
    BlockBackend *blk;
    GError *err = NULL;
    blkcnt_t blocks;
    CoCall call;

    fill_file(path, MiB, 0xaa);

    /* Without discard=unmap: zeroes, whether or not unmapping is allowed. */
    blk = open_file(path, BDRV_O_RDWR, &err);
    g_assert_no_error(err);
    g_assert_cmpint(blk_pwrite_zeroes(blk, 65536, 65536, 0), ==, 0);
    g_assert_cmpint(blk_pwrite_zeroes(blk, 200000, 70000,
                                      BDRV_REQ_MAY_UNMAP), ==, 0);
    g_assert_cmpint(blk_pread(blk, 0, 256 * 1024, buf, 0), ==, 0);
    g_assert_true(is_filled(buf, 65536, 0xaa));
    g_assert_true(is_filled(buf + 65536, 65536, 0));
    g_assert_true(is_filled(buf + 131072, 200000 - 131072, 0xaa));
    g_assert_true(is_filled(buf + 200000, 256 * 1024 - 200000, 0));
    g_assert_cmpint(blk_pread(blk, 270000, 1000, buf, 0), ==, 0);
    g_assert_true(is_filled(buf, 1000, 0xaa));
    blk_unref(blk);
    g_assert_cmpint(file_stat(path).st_size, ==, MiB);

    /* With discard=unmap and may-unmap: a hole. */
    blocks = file_stat(path).st_blocks;
    blk = open_file(path, BDRV_O_RDWR | BDRV_O_UNMAP, &err);
    g_assert_no_error(err);
    g_assert_cmpint(blk_pwrite_zeroes(blk, 524288, 131072,
                                      BDRV_REQ_MAY_UNMAP), ==, 0);
    g_assert_cmpint(blk_pread(blk, 524288 - 4096, 131072 + 8192, buf, 0),
                    ==, 0);
    g_assert_true(is_filled(buf, 4096, 0xaa));
    g_assert_true(is_filled(buf + 4096, 131072, 0));
    g_assert_true(is_filled(buf + 4096 + 131072, 4096, 0xaa));
    g_assert_true(range_is_hole(path, 524288, 131072));
    g_assert_cmpint(file_stat(path).st_blocks, <=, blocks - 131072 / 512);

    /* Past the end of the file (the driver alone): the file grows. */
    call = (CoCall) {
        .op = DRV_ZEROES, .bs = blk_bs(blk), .offset = MiB,
        .bytes = 65536, .flags = BDRV_REQ_MAY_UNMAP,
    };
    g_assert_cmpint(co_run(&call), ==, 0);
    g_assert_cmpint(file_stat(path).st_size, ==, MiB + 65536);
    call = (CoCall) {
        .op = DRV_ZEROES, .bs = blk_bs(blk), .offset = MiB + 65536,
        .bytes = 65536,
    };
    g_assert_cmpint(co_run(&call), ==, 0);
    g_assert_cmpint(file_stat(path).st_size, ==, MiB + 131072);
    g_assert_cmpint(blk_pread(blk, MiB, 131072, buf, 0), ==, 0);
    g_assert_true(is_filled(buf, 131072, 0));
    blk_unref(blk);
    unlink(path);
}

static void test_discard(void)
{
    g_autofree char *path = tmp_file("discard.img");
    uint8_t buf[4096];
    BlockBackend *blk;
    GError *err = NULL;
    blkcnt_t blocks;

    fill_file(path, MiB, 0xaa);
    blocks = file_stat(path).st_blocks;

    /* discard=ignore: advisory, nothing happens to the data. */
    blk = open_file(path, BDRV_O_RDWR, &err);
    g_assert_no_error(err);
    g_assert_cmpint(blk_pdiscard(blk, 131072, 131072), ==, 0);
    blk_unref(blk);
    g_assert_cmpint(file_stat(path).st_blocks, ==, blocks);
    file_pread(path, buf, sizeof(buf), 131072);
    g_assert_true(is_filled(buf, sizeof(buf), 0xaa));

    /* discard=unmap: the range becomes a hole. */
    blk = open_file(path, BDRV_O_RDWR | BDRV_O_UNMAP, &err);
    g_assert_no_error(err);
    g_assert_cmpint(blk_pdiscard(blk, 131072, 131072), ==, 0);
    g_assert_cmpint(blk_pread(blk, 131072, 4096, buf, 0), ==, 0);
    g_assert_true(is_filled(buf, sizeof(buf), 0));
    blk_unref(blk);
    g_assert_true(range_is_hole(path, 131072, 131072));
    g_assert_cmpint(file_stat(path).st_blocks, <=, blocks - 131072 / 512);
    g_assert_cmpint(file_stat(path).st_size, ==, MiB);
    unlink(path);
}

typedef struct MapEntry {
    int64_t start;
    int64_t length;
    bool data;
} MapEntry;

/* Walk the block status of @blk as qemu-img map does. */
static GArray *status_map(BlockBackend *blk)
{
    GArray *map = g_array_new(FALSE, FALSE, sizeof(MapEntry));
    int64_t len = blk_getlength(blk);
    int64_t off = 0;

    while (off < len) {
        BlockDriverState *file = NULL;
        int64_t pnum = 0, mapped = -1;
        MapEntry e;
        int ret;

        ret = blk_block_status(blk, off, len - off, &pnum, &mapped, &file);
        g_assert_cmpint(ret, >=, 0);
        g_assert_cmpint(pnum, >, 0);
        g_assert_true(ret & BDRV_BLOCK_OFFSET_VALID);
        g_assert_true(ret & BDRV_BLOCK_ALLOCATED);
        g_assert_cmpint(!!(ret & BDRV_BLOCK_DATA), !=,
                        !!(ret & BDRV_BLOCK_ZERO));
        g_assert_cmpint(mapped, ==, off);
        g_assert_true(file == blk_bs(blk));
        g_assert_cmpint(!!(ret & BDRV_BLOCK_EOF), ==, off + pnum == len);

        e = (MapEntry) { off, pnum, ret & BDRV_BLOCK_DATA };
        if (map->len &&
            g_array_index(map, MapEntry, map->len - 1).data == e.data) {
            g_array_index(map, MapEntry, map->len - 1).length += pnum;
        } else {
            g_array_append_val(map, e);
        }
        off += pnum;
    }
    return map;
}

/* qemu-img map --output=json of @path, or NULL if qemu-img is missing. */
static GArray *qemu_img_map(const char *path)
{
    g_autofree char *opts = g_strdup_printf("driver=file,filename=%s", path);
    const char *argv[] = {
        QEMU_IMG, "map", "--output=json", "--image-opts", opts, NULL,
    };
    g_autofree char *out = NULL;
    g_autoptr(JsonParser) parser = json_parser_new();
    GArray *map;
    JsonArray *arr;
    int status;
    guint i;

    if (!g_file_test(QEMU_IMG, G_FILE_TEST_IS_EXECUTABLE)) {
        return NULL;
    }
    g_assert_true(g_spawn_sync(NULL, (char **)argv, NULL,
                               G_SPAWN_STDERR_TO_DEV_NULL, NULL, NULL,
                               &out, NULL, &status, NULL));
    g_assert_cmpint(status, ==, 0);
    g_assert_true(json_parser_load_from_data(parser, out, -1, NULL));
    arr = json_node_get_array(json_parser_get_root(parser));
    map = g_array_new(FALSE, FALSE, sizeof(MapEntry));
    for (i = 0; i < json_array_get_length(arr); i++) {
        JsonObject *o = json_array_get_object_element(arr, i);
        MapEntry e = {
            json_object_get_int_member(o, "start"),
            json_object_get_int_member(o, "length"),
            json_object_get_boolean_member(o, "data"),
        };

        g_assert_true(json_object_get_boolean_member(o, "present"));
        g_assert_cmpint(json_object_get_boolean_member(o, "zero"), ==,
                        !e.data);
        g_array_append_val(map, e);
    }
    return map;
}

static void test_block_status(void)
{
    static const MapEntry expect[] = {
        { 0, 65536, false },
        { 65536, 65536, true },
        { 131072, 393216, false },
        { 524288, 4096, true },
        { 528384, 1000000 - 528384, false },
    };
    g_autofree char *path = tmp_file("sparse.img");
    g_autoptr(GArray) map = NULL;
    g_autoptr(GArray) ref = NULL;
    g_autofree uint8_t *buf = g_malloc(65536);
    BlockBackend *blk;
    GError *err = NULL;
    int64_t len;
    guint i;

    make_sparse_file(path, 1000000);
    memset(buf, 1, 65536);
    file_pwrite(path, buf, 65536, 65536);
    file_pwrite(path, buf, 4096, 524288);

    blk = open_file(path, 0, &err);
    g_assert_no_error(err);
    len = blk_getlength(blk);
    map = status_map(blk);
    blk_unref(blk);

    /* The hole at the end runs to the node's end, however long it is. */
    g_assert_cmpint(len, >=, 1000000);
    g_assert_cmpint(map->len, ==, G_N_ELEMENTS(expect));
    for (i = 0; i < map->len; i++) {
        MapEntry *e = &g_array_index(map, MapEntry, i);

        g_assert_cmpint(e->start, ==, expect[i].start);
        g_assert_cmpint(e->length, ==, i + 1 < map->len ? expect[i].length
                                                        : len - e->start);
        g_assert_cmpint(e->data, ==, expect[i].data);
    }

    /*
     * And what QEMU itself makes of the same file.  Its node length is
     * the file's rounded up to 512 bytes, so only the end may differ.
     */
    ref = qemu_img_map(path);
    if (ref) {
        g_assert_cmpint(ref->len, ==, map->len);
        for (i = 0; i < map->len; i++) {
            MapEntry *a = &g_array_index(map, MapEntry, i);
            MapEntry *b = &g_array_index(ref, MapEntry, i);

            g_assert_cmpint(a->start, ==, b->start);
            g_assert_cmpint(a->data, ==, b->data);
            if (i + 1 < map->len) {
                g_assert_cmpint(a->length, ==, b->length);
            } else {
                g_assert_cmpint(b->start + b->length, ==,
                                QEMU_ALIGN_UP(1000000, 512));
            }
        }
    }
    unlink(path);
}

/* ---- Truncate ---- */

static void test_truncate(void)
{
    g_autofree char *path = tmp_file("truncate.img");
    g_autofree uint8_t *buf = g_malloc(MiB);
    uint8_t head[1000];
    BlockBackend *blk;
    GError *err = NULL;
    blkcnt_t blocks;

    make_sparse_file(path, MiB);
    blk = open_file(path, BDRV_O_RDWR | BDRV_O_RESIZE, &err);
    g_assert_no_error(err);

    blocks = file_stat(path).st_blocks;
    g_assert_cmpint(blk_truncate(blk, 2 * MiB, true, PREALLOC_MODE_OFF, 0,
                                 &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpint(file_stat(path).st_size, ==, 2 * MiB);
    g_assert_cmpint(file_stat(path).st_blocks, ==, blocks);

    g_assert_cmpint(blk_truncate(blk, 3 * MiB, true, PREALLOC_MODE_FALLOC, 0,
                                 &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpint(file_stat(path).st_size, ==, 3 * MiB);
    g_assert_cmpint(file_stat(path).st_blocks, >=, blocks + MiB / 512);

    blocks = file_stat(path).st_blocks;
    g_assert_cmpint(blk_truncate(blk, 4 * MiB, true, PREALLOC_MODE_FULL, 0,
                                 &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpint(file_stat(path).st_size, ==, 4 * MiB);
    g_assert_cmpint(file_stat(path).st_blocks, >=, blocks + MiB / 512);
    g_assert_cmpint(blk_getlength(blk), ==, 4 * MiB);
    g_assert_cmpint(blk_pread(blk, 3 * MiB, MiB, buf, 0), ==, 0);
    g_assert_true(is_filled(buf, MiB, 0));

    g_assert_cmpint(blk_truncate(blk, MiB, true, PREALLOC_MODE_FALLOC, 0,
                                 &err), <, 0);
    g_assert_cmpstr(err->message, ==,
                    "Preallocation can only be used for growing images");
    g_clear_error(&err);
    g_assert_cmpint(blk_truncate(blk, 5 * MiB, true,
                                 PREALLOC_MODE_METADATA, 0, &err), <, 0);
    g_assert_cmpstr(err->message, ==,
                    "Unsupported preallocation mode: metadata");
    g_clear_error(&err);
    g_assert_cmpint(file_stat(path).st_size, ==, 4 * MiB);

    g_assert_cmpint(blk_truncate(blk, MiB, true, PREALLOC_MODE_OFF, 0,
                                 &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpint(file_stat(path).st_size, ==, MiB);
    blk_unref(blk);

    /* Full preallocation under O_DIRECT from an unaligned end. */
    make_file(path, sizeof(head), 5);
    file_pread(path, head, sizeof(head), 0);
    blk = open_file(path, BDRV_O_RDWR | BDRV_O_RESIZE | BDRV_O_NOCACHE,
                    &err);
    g_assert_no_error(err);
    g_assert_cmpint(blk_truncate(blk, 10000, true, PREALLOC_MODE_FULL, 0,
                                 &err), ==, 0);
    g_assert_no_error(err);
    blk_unref(blk);
    g_assert_cmpint(file_stat(path).st_size, ==, 10000);
    file_pread(path, buf, 10000, 0);
    g_assert_cmpmem(buf, sizeof(head), head, sizeof(head));
    g_assert_true(is_filled(buf + sizeof(head), 10000 - sizeof(head), 0));
    unlink(path);
}

/* ---- Errors ---- */

static void test_open_errors(void)
{
    g_autofree char *path = tmp_file("errors.img");
    g_autofree char *missing = tmp_file("no-such-file");
    g_autoptr(GError) err = NULL;
    BlockBackend *blk;
    struct {
        JsonObject *opts;
        int flags;
        char *expect;
    } cases[] = {
        { json_object_new(), 0,
          g_strdup("The 'file' block driver requires a file name") },
        { opts_new("filename", "", "aio", "bogus", NULL), 0,
          g_strdup("The 'file' block driver requires a file name") },
        { opts_new("filename", missing, NULL), 0,
          g_strdup_printf("Could not open '%s': No such file or directory",
                          missing) },
        { opts_new("filename", tmp_dir, NULL), BDRV_O_RDWR,
          g_strdup_printf("Could not open '%s': Is a directory", tmp_dir) },
        { opts_new("filename", tmp_dir, NULL), 0,
          g_strdup_printf("'file' driver requires '%s' to be a regular "
                          "file", tmp_dir) },
        { opts_new("filename", "/dev/null", NULL), 0,
          g_strdup("'file' driver requires '/dev/null' to be a regular "
                   "file") },
        { opts_new("filename", path, "aio", "native", NULL), BDRV_O_RDWR,
          g_strdup("aio=native was specified, but it requires "
                   "cache.direct=on, which was not specified.") },
        { opts_new("filename", missing, "aio", "native", NULL), 0,
          g_strdup_printf("Could not open '%s': No such file or directory",
                          missing) },
        { opts_new("filename", path, "aio", "bogus", "locking", "x", NULL),
          0, g_strdup("invalid parameter value: bogus") },
        { opts_new("filename", path, "locking", "maybe", NULL), 0,
          g_strdup("invalid parameter value: maybe") },
        { opts_new("filename", path, "aio-max-batch", "abc", "aio", "x",
                   NULL), 0,
          g_strdup("Parameter 'aio-max-batch' expects a number") },
        { opts_new("filename", path, "drop-cache", "x", NULL), 0,
          g_strdup("Parameter 'drop-cache' expects 'on' or 'off'") },
        { opts_new("filename", path, "x-check-cache-dropped", "x", NULL), 0,
          g_strdup("Parameter 'x-check-cache-dropped' expects 'on' or "
                   "'off'") },
        { opts_new("filename", path, "pr-manager", "pr0", "aio", "native",
                   NULL), 0,
          g_strdup("No persistent reservation manager with id 'pr0'") },
        { opts_new("filename", path, "foo", "1", NULL), 0,
          g_strdup("Block protocol 'file' doesn't support the option "
                   "'foo'") },
    };
    size_t i;

    make_file(path, 4096, 0);
    for (i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *msg = open_error(cases[i].opts, cases[i].flags);

        g_assert_cmpstr(msg, ==, cases[i].expect);
        json_object_unref(cases[i].opts);
        g_free(cases[i].expect);
    }

    /* procfs refuses O_DIRECT at open time. */
    if (g_file_test("/proc/version", G_FILE_TEST_EXISTS)) {
        g_autoptr(JsonObject) o = opts_new("filename", "/proc/version",
                                           NULL);
        g_autofree char *msg = open_error(o, BDRV_O_NOCACHE);

        g_assert_cmpstr(msg, ==, "Could not open '/proc/version': "
                        "filesystem does not support O_DIRECT");
    }

    /* The options QEMU takes and ignores are taken. */
    {
        g_autoptr(JsonObject) o = opts_new("filename", path,
                                           "aio-max-batch", "3",
                                           "drop-cache", "off",
                                           "x-check-cache-dropped", "on",
                                           "locking", "auto",
                                           "aio", "threads", NULL);

        blk = blk_new_open_driver(file_drv(), NULL, o, 0, &err);
        g_assert_no_error(err);
        blk_unref(blk);
    }
    unlink(path);
}

static char *perm_test_path(pid_t parent)
{
    g_autofree char *name = g_strdup_printf("sluice-file-posix-perm-%d",
                                            (int)parent);

    return g_build_filename(g_get_tmp_dir(), name, NULL);
}

static void test_permission_denied(void)
{
    g_autofree char *path = NULL;
    g_autofree char *expect = NULL;

    if (g_test_subprocess()) {
        g_autoptr(JsonObject) o = NULL;
        g_autofree char *msg = NULL;

        path = perm_test_path(getppid());
        if (geteuid() == 0) {
            /* Root opens anything: become nobody first. */
            g_assert_cmpint(setgroups(0, NULL), ==, 0);
            g_assert_cmpint(setresgid(65534, 65534, 65534), ==, 0);
            g_assert_cmpint(setresuid(65534, 65534, 65534), ==, 0);
        }
        o = opts_new("filename", path, NULL);
        msg = open_error(o, 0);
        expect = g_strdup_printf("Could not open '%s': Permission denied",
                                 path);
        g_assert_cmpstr(msg, ==, expect);
        return;
    }

    path = perm_test_path(getpid());
    make_file(path, 4096, 0);
    g_assert_cmpint(chmod(path, geteuid() == 0 ? 0600 : 0), ==, 0);
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDERR);
    unlink(path);
    g_test_trap_assert_passed();
}

/* ---- Image locking ---- */

static void test_lock_bytes(void)
{
    g_autofree char *path = tmp_file("locks.img");
    BlockBackend *blk;
    GError *err = NULL;

    make_file(path, 65536, 0);

    /* No user, no lock. */
    {
        g_autoptr(JsonObject) o = opts_new("filename", path, NULL);
        BlockDriverState *bs = bdrv_open_driver(file_drv(), NULL, o,
                                                BDRV_O_RDWR, &err);

        g_assert_no_error(err);
        g_assert_cmpint(held_locks(path), ==, 0);
        bdrv_unref(bs);
    }

    /* Read-only, sharing everything: as qemu-io -r. */
    blk = open_file(path, 0, &err);
    g_assert_no_error(err);
    g_assert_cmpint(held_locks(path), ==, PERM_BYTE(0));
    blk_unref(blk);
    g_assert_cmpint(held_locks(path), ==, 0);

    /* Read-write, sharing everything: as qemu-io. */
    blk = open_file(path, BDRV_O_RDWR, &err);
    g_assert_no_error(err);
    g_assert_cmpint(held_locks(path), ==, PERM_BYTE(0) | PERM_BYTE(1));
    blk_unref(blk);

    /* A reader that lets nobody write or resize: qemu-img convert's. */
    {
        g_autoptr(JsonObject) o = opts_new("filename", path, NULL);

        blk = open_perm(o, 0, BLK_PERM_CONSISTENT_READ,
                        BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE_UNCHANGED,
                        &err);
        g_assert_no_error(err);
        g_assert_cmpint(held_locks(path), ==,
                        PERM_BYTE(0) | SHARED_BYTE(1) | SHARED_BYTE(3));
        blk_unref(blk);
    }

    /* force-share: the same user shares everything (qemu-io -U). */
    {
        g_autoptr(JsonObject) o = opts_new("filename", path, NULL);

        blk = open_perm(o, BDRV_O_FORCE_SHARE, BLK_PERM_CONSISTENT_READ,
                        BLK_PERM_CONSISTENT_READ, &err);
        g_assert_no_error(err);
        g_assert_cmpint(held_locks(path), ==, PERM_BYTE(0));
        blk_unref(blk);
    }

    /* locking=off takes none. */
    {
        g_autoptr(JsonObject) o = opts_new("filename", path,
                                           "locking", "off", NULL);

        blk = open_perm(o, BDRV_O_RDWR, BLK_PERM_ALL, 0, &err);
        g_assert_no_error(err);
        g_assert_cmpint(held_locks(path), ==, 0);
        blk_unref(blk);
    }
    g_assert_cmpint(held_locks(path), ==, 0);
    unlink(path);
}

/*
 * Two nodes on one file in one process conflict like two processes:
 * OFD locks belong to open file descriptions (QEMU's qemu-img convert
 * from an image onto itself fails in the same way).
 */
static void test_lock_conflict_in_process(void)
{
    g_autofree char *path = tmp_file("conflict.img");
    g_autofree char *expect = NULL;
    g_autoptr(JsonObject) o = NULL;
    BlockBackend *a, *b;
    GError *err = NULL;
    const uint64_t no_writers = BLK_PERM_CONSISTENT_READ |
                                BLK_PERM_WRITE_UNCHANGED;

    make_file(path, 65536, 0);
    o = opts_new("filename", path, NULL);

    a = open_perm(o, 0, BLK_PERM_CONSISTENT_READ, no_writers, &err);
    g_assert_no_error(err);
    g_assert_null(open_file(path, BDRV_O_RDWR, &err));
    expect = g_strdup_printf("Failed to get \"write\" lock\n"
                             "Is another process using the image [%s]?",
                             path);
    g_assert_cmpstr(err->message, ==, expect);
    g_clear_error(&err);
    /* The failed node left nothing behind. */
    g_assert_cmpint(held_locks(path), ==,
                    PERM_BYTE(0) | SHARED_BYTE(1) | SHARED_BYTE(3));
    g_assert_cmpint(fds_on(path), ==, 1);

    /* Readers that share everything get along with it. */
    b = open_file(path, 0, &err);
    g_assert_no_error(err);
    blk_unref(b);
    blk_unref(a);

    /* The other way round: a writer is there first. */
    a = open_file(path, BDRV_O_RDWR, &err);
    g_assert_no_error(err);
    g_assert_null(open_perm(o, 0, BLK_PERM_CONSISTENT_READ, no_writers,
                            &err));
    g_free(expect);
    expect = g_strdup_printf("Failed to get shared \"write\" lock\n"
                             "Is another process using the image [%s]?",
                             path);
    g_assert_cmpstr(err->message, ==, expect);
    g_clear_error(&err);
    g_assert_cmpint(held_locks(path), ==, PERM_BYTE(0) | PERM_BYTE(1));

    /* Not sharing consistent reads conflicts with any reader. */
    g_assert_null(open_perm(o, 0, BLK_PERM_CONSISTENT_READ,
                            BLK_PERM_ALL & ~BLK_PERM_CONSISTENT_READ,
                            &err));
    g_free(expect);
    expect = g_strdup_printf("Failed to get shared \"consistent read\" "
                             "lock\nIs another process using the image "
                             "[%s]?", path);
    g_assert_cmpstr(err->message, ==, expect);
    g_clear_error(&err);

    /* locking=off ignores the others. */
    {
        g_autoptr(JsonObject) off = opts_new("filename", path,
                                             "locking", "off", NULL);

        b = open_perm(off, 0, BLK_PERM_CONSISTENT_READ, no_writers, &err);
        g_assert_no_error(err);
        blk_unref(b);
    }
    blk_unref(a);
    g_assert_cmpint(held_locks(path), ==, 0);
    unlink(path);
}

/* Run qemu-io with @args on @path; its exit status and stderr. */
static int run_qemu_io(const char *const *args, const char *path,
                       char **err_out)
{
    GPtrArray *argv = g_ptr_array_new();
    int status;

    g_ptr_array_add(argv, (char *)QEMU_IO);
    for (; *args; args++) {
        g_ptr_array_add(argv, (char *)*args);
    }
    g_ptr_array_add(argv, (char *)path);
    g_ptr_array_add(argv, NULL);
    g_assert_true(g_spawn_sync(NULL, (char **)argv->pdata, NULL,
                               G_SPAWN_STDOUT_TO_DEV_NULL, NULL, NULL,
                               NULL, err_out, &status, NULL));
    g_ptr_array_free(argv, TRUE);
    return status;
}

static void test_lock_qemu_io(void)
{
    static const char *const qemu_io_rw[] = {
        "-f", "raw", "-c", "read 0 512", NULL,
    };
    static const char *const qemu_io_ro_u[] = {
        "-r", "-U", "-f", "raw", "-c", "read 0 512", NULL,
    };
    const char *holder[] = {
        QEMU_IO, "-f", "raw", "-c", "sleep 30000", NULL, NULL,
    };
    g_autofree char *path = tmp_file("qemu-io.img");
    g_autofree char *expect = NULL;
    g_autoptr(JsonObject) o = NULL;
    BlockBackend *blk;
    GError *err = NULL;
    char *errout = NULL;
    uint8_t buf[512];
    GPid pid;
    int i;

    if (!g_file_test(QEMU_IO, G_FILE_TEST_IS_EXECUTABLE)) {
        g_test_skip(QEMU_IO " is not installed (Debian: qemu-utils)");
        return;
    }
    make_file(path, 65536, 1);
    o = opts_new("filename", path, NULL);

    /* qemu-io holds the image read-write: bytes 100 and 101. */
    holder[5] = path;
    g_assert_true(g_spawn_async(NULL, (char **)holder, NULL,
                                G_SPAWN_DO_NOT_REAP_CHILD |
                                G_SPAWN_STDOUT_TO_DEV_NULL,
                                NULL, NULL, &pid, NULL));
    for (i = 0; i < 400 && held_locks(path) != (PERM_BYTE(0) |
                                                PERM_BYTE(1)); i++) {
        g_usleep(25 * 1000);
    }
    g_assert_cmpint(held_locks(path), ==, PERM_BYTE(0) | PERM_BYTE(1));

    /* A Sluice user that lets nobody write cannot come in... */
    g_assert_null(open_perm(o, 0, BLK_PERM_CONSISTENT_READ,
                            BLK_PERM_CONSISTENT_READ |
                            BLK_PERM_WRITE_UNCHANGED, &err));
    expect = g_strdup_printf("Failed to get shared \"write\" lock\n"
                             "Is another process using the image [%s]?",
                             path);
    g_assert_cmpstr(err->message, ==, expect);
    g_clear_error(&err);
    g_assert_null(open_perm(o, BDRV_O_RDWR,
                            BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE,
                            BLK_PERM_CONSISTENT_READ |
                            BLK_PERM_WRITE_UNCHANGED, &err));
    g_assert_cmpstr(err->message, ==, expect);
    g_clear_error(&err);

    /* ...a read-only one with force-share can... */
    blk = open_perm(o, BDRV_O_FORCE_SHARE, BLK_PERM_CONSISTENT_READ,
                    BLK_PERM_CONSISTENT_READ, &err);
    g_assert_no_error(err);
    g_assert_cmpint(blk_pread(blk, 0, sizeof(buf), buf, 0), ==, 0);
    g_assert_cmpint(buf[1], ==, (7 + 1) & 0xff);
    blk_unref(blk);

    /* ...and so can one sharing everything, as a second qemu-io can. */
    blk = open_file(path, BDRV_O_RDWR, &err);
    g_assert_no_error(err);
    blk_unref(blk);

    kill(pid, SIGTERM);
    g_assert_cmpint(waitpid(pid, NULL, 0), ==, pid);
    g_spawn_close_pid(pid);
    g_assert_cmpint(held_locks(path), ==, 0);

    /* Sluice holds it and lets nobody write: qemu-io cannot write... */
    blk = open_perm(o, BDRV_O_RDWR,
                    BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE,
                    BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE_UNCHANGED,
                    &err);
    g_assert_no_error(err);
    g_assert_cmpint(run_qemu_io(qemu_io_rw, path, &errout), !=, 0);
    g_free(expect);
    expect = g_strdup_printf("qemu-io: can't open device %s: Failed to get "
                             "\"write\" lock\nIs another process using the "
                             "image [%s]?\n", path, path);
    g_assert_cmpstr(errout, ==, expect);
    g_free(errout);

    /* ...but may read with -U. */
    g_assert_cmpint(run_qemu_io(qemu_io_ro_u, path, &errout), ==, 0);
    g_assert_cmpstr(errout, ==, "");
    g_free(errout);
    blk_unref(blk);

    /* A Sluice user that lets nobody read consistently locks out -U. */
    blk = open_perm(o, 0, BLK_PERM_CONSISTENT_READ,
                    BLK_PERM_ALL & ~BLK_PERM_CONSISTENT_READ, &err);
    g_assert_no_error(err);
    g_assert_cmpint(run_qemu_io(qemu_io_ro_u, path, &errout), !=, 0);
    g_free(expect);
    expect = g_strdup_printf("qemu-io: can't open device %s: Failed to get "
                             "\"consistent read\" lock\nIs another process "
                             "using the image [%s]?\n", path, path);
    g_assert_cmpstr(errout, ==, expect);
    g_free(errout);
    blk_unref(blk);

    g_assert_cmpint(run_qemu_io(qemu_io_rw, path, &errout), ==, 0);
    g_free(errout);
    unlink(path);
}

/* ---- Reopen ---- */

static void test_reopen(void)
{
    g_autofree char *path = tmp_file("reopen.img");
    g_autofree char *other = tmp_file("reopen-other.img");
    g_autofree uint8_t *raw = g_malloc(8192 + 1);
    g_autoptr(JsonObject) o = NULL;
    BlockDriverState *bs;
    BlockBackend *blk;
    GError *err = NULL;
    uint8_t buf[4096];
    struct {
        JsonObject *opts;
        const char *expect;
    } bad[] = {
        { opts_new("filename", other, NULL),
          "Cannot change the option 'filename'" },
        { opts_new("aio", "io_uring", NULL),
          "Cannot change the option 'aio'" },
        { opts_new("locking", "off", NULL),
          "Cannot change the option 'locking'" },
        { opts_new("aio-max-batch", "5", NULL),
          "Cannot change the option 'aio-max-batch'" },
    };
    size_t i;

    make_file(path, MiB, 2);
    make_file(other, 4096, 0);
    o = opts_new("filename", path, NULL);
    bs = bdrv_open_driver(file_drv(), "reopen0", o, 0, &err);
    g_assert_no_error(err);
    blk = blk_new(qemu_get_aio_context(), BLK_PERM_CONSISTENT_READ,
                  BLK_PERM_ALL);
    g_assert_true(blk_insert_bs(blk, bs, &err));
    g_assert_cmpint(held_locks(path), ==, PERM_BYTE(0));

    for (i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_assert_false(bdrv_reopen(bs, bad[i].opts, &err));
        g_assert_cmpstr(err->message, ==, bad[i].expect);
        g_clear_error(&err);
        json_object_unref(bad[i].opts);
    }
    g_assert_true(bdrv_is_read_only(bs));
    g_assert_cmpint(held_locks(path), ==, PERM_BYTE(0));

    /* Read-write: a new fd, with the locks moved over to it. */
    {
        g_autoptr(JsonObject) rw = opts_new("read-only", "off",
                                            "drop-cache", "off", NULL);

        bool ok = bdrv_reopen(bs, rw, &err);

        g_assert_no_error(err);
        g_assert_true(ok);
    }
    g_assert_false(bdrv_is_read_only(bs));
    g_assert_cmpint(held_locks(path), ==, PERM_BYTE(0));
    g_assert_cmpint(fds_on(path), ==, 1);
    blk_unref(blk);
    g_assert_cmpint(held_locks(path), ==, 0);

    blk = blk_new(qemu_get_aio_context(),
                  BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE, BLK_PERM_ALL);
    g_assert_true(blk_insert_bs(blk, bs, &err));
    memset(buf, 0x77, sizeof(buf));
    g_assert_cmpint(blk_pwrite(blk, 4096, sizeof(buf), buf, 0), ==, 0);
    g_assert_cmpint(held_locks(path), ==, PERM_BYTE(0) | PERM_BYTE(1));

    /* cache.direct=on: O_DIRECT with its alignment, buffers bounced. */
    {
        g_autoptr(JsonObject) direct = opts_new("read-only", "off", NULL);

        json_object_set_object_member(direct, "cache",
                                      opts_new("direct", "on", NULL));

        bool ok = bdrv_reopen(bs, direct, &err);

        g_assert_no_error(err);
        g_assert_true(ok);
    }
    g_assert_cmpint(bs->bl.request_alignment, >=, 512);
    g_assert_cmpint(held_locks(path), ==, PERM_BYTE(0) | PERM_BYTE(1));
    g_assert_cmpint(fds_on(path), ==, 1);
    g_assert_cmpint(blk_pread(blk, 4095, 4097, raw + 1, 0), ==, 0);
    g_assert_true(is_filled(raw + 2, 4096, 0x77));
    g_assert_cmpint(raw[1], ==, (4095 * 7 + 2) & 0xff);

    /* A writer cannot become read-only. */
    {
        g_autoptr(JsonObject) ro = opts_new("read-only", "on", NULL);

        g_assert_false(bdrv_reopen(bs, ro, &err));
        g_clear_error(&err);
    }
    g_assert_cmpint(held_locks(path), ==, PERM_BYTE(0) | PERM_BYTE(1));
    g_assert_cmpint(fds_on(path), ==, 1);
    g_assert_cmpint(blk_pwrite(blk, 8192, sizeof(buf), buf, 0), ==, 0);

    bdrv_unref(bs);
    blk_unref(blk);
    g_assert_cmpint(held_locks(path), ==, 0);
    g_assert_cmpint(fds_on(path), ==, 0);
    file_pread(path, buf, sizeof(buf), 8192);
    g_assert_true(is_filled(buf, sizeof(buf), 0x77));
    unlink(path);
    unlink(other);
}

/* ---- Moving to an iothread ---- */

static void test_iothread(gconstpointer data)
{
    const EngineCase *c = data;
    g_autofree char *path = tmp_file("iothread.img");
    uint8_t *buf;
    BlockBackend *blk;
    IOThread *iothread;
    GError *err = NULL;
    int round;

    if (!engine_available(c->aio)) {
        return;
    }
    make_file(path, MiB, 4);
    buf = aligned_buf(65536);
    blk = open_engine(path, c, BDRV_O_RDWR);
    iothread = iothread_create("fp-io", &err);
    g_assert_no_error(err);

    for (round = 0; round < 2; round++) {
        AioContext *ctx = round == 0 ? iothread_get_aio_context(iothread)
                                     : qemu_get_aio_context();

        g_assert_cmpint(bdrv_try_change_aio_context(blk_bs(blk), ctx, &err),
                        ==, 0);
        g_assert_no_error(err);
        g_assert_true(blk_get_aio_context(blk) == ctx);

        memset(buf, 0x30 + round, 65536);
        g_assert_cmpint(blk_pwrite(blk, round * 65536, 65536, buf, 0), ==,
                        0);
        g_assert_cmpint(blk_flush(blk), ==, 0);
        memset(buf, 0, 65536);
        g_assert_cmpint(blk_pread(blk, round * 65536, 65536, buf, 0), ==,
                        0);
        g_assert_true(is_filled(buf, 65536, 0x30 + round));
    }
    blk_unref(blk);
    iothread_destroy(iothread);

    file_pread(path, buf, 65536, 65536);
    g_assert_true(is_filled(buf, 65536, 0x31));
    free(buf);
    unlink(path);
}

static void add_engine_tests(const char *name, GTestDataFunc fn,
                             bool direct_only)
{
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(engine_cases); i++) {
        const EngineCase *c = &engine_cases[i];
        g_autofree char *path = NULL;

        if (direct_only && !c->direct) {
            continue;
        }
        path = g_strdup_printf("/file-posix/%s/%s%s", name, c->aio,
                               c->direct ? "-direct" : "");
        g_test_add_data_func(path, c, fn);
    }
}

/*
 * auto-read-only: a file that cannot be opened for writing opens
 * read-only instead, and a writer is then refused.
 */
static void test_auto_read_only(void)
{
    static const char sysfs_ro[] =
        "/sys/kernel/mm/transparent_hugepage/hpage_pmd_size";
    g_autofree char *tmp = NULL;
    g_autofree char *expect = NULL;
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonObject) opts = NULL;
    const char *path;
    BlockDriverState *bs;
    BlockBackend *blk;

    /* root may write any file: use one the kernel refuses to open RW. */
    if (geteuid() == 0) {
        int fd = open(sysfs_ro, O_RDWR);

        if (fd >= 0 || errno != EACCES) {
            if (fd >= 0) {
                close(fd);
            }
            g_test_skip("running as root and no file refuses O_RDWR");
            return;
        }
        path = sysfs_ro;
    } else {
        tmp = tmp_file("ro");
        make_file(tmp, 4096, 0);
        g_assert_cmpint(chmod(tmp, 0444), ==, 0);
        path = tmp;
    }

    opts = opts_new("filename", path, NULL);
    g_assert_null(bdrv_open_driver(file_drv(), NULL, opts, BDRV_O_RDWR,
                                   &err));
    expect = g_strdup_printf("Could not open '%s': Permission denied", path);
    g_assert_cmpstr(err->message, ==, expect);
    g_clear_error(&err);

    g_clear_pointer(&opts, json_object_unref);
    opts = opts_new("driver", "file", "filename", path,
                    "auto-read-only", "on", NULL);
    bs = bdrv_open_options(opts, BDRV_O_RDWR, &err);
    g_assert_no_error(err);
    g_assert_true(bdrv_is_read_only(bs));
    g_assert_false(bs->open_flags & BDRV_O_RDWR);

    blk = blk_new(qemu_get_aio_context(), BLK_PERM_CONSISTENT_READ,
                  BLK_PERM_ALL);
    g_assert_true(blk_insert_bs(blk, bs, &err));
    g_assert_false(blk_set_perm(blk, BLK_PERM_CONSISTENT_READ |
                                BLK_PERM_WRITE, BLK_PERM_ALL, &err));
    g_assert_cmpstr(err->message, ==, "Block node is read-only");
    blk_unref(blk);
    bdrv_unref(bs);
    if (tmp) {
        unlink(tmp);
    }
}

int main(int argc, char **argv)
{
    int ret;

    g_test_init(&argc, &argv, NULL);
    g_assert_true(qemu_init_main_loop(NULL));
    /* A subprocess may run as nobody: it makes no files of its own. */
    if (!g_test_subprocess()) {
        tmp_dir = g_dir_make_tmp("sluice-file-posix-XXXXXX", NULL);
        g_assert_nonnull(tmp_dir);
    }

    add_engine_tests("rw", test_rw, false);
    add_engine_tests("direct-unaligned", test_direct_unaligned, true);
    add_engine_tests("iothread", test_iothread, false);
    g_test_add_func("/file-posix/direct-eof-tail", test_direct_eof_tail);
    g_test_add_func("/file-posix/read-past-eof", test_read_past_eof);
    g_test_add_func("/file-posix/write-zeroes", test_write_zeroes);
    g_test_add_func("/file-posix/discard", test_discard);
    g_test_add_func("/file-posix/block-status", test_block_status);
    g_test_add_func("/file-posix/truncate", test_truncate);
    g_test_add_func("/file-posix/open-errors", test_open_errors);
    g_test_add_func("/file-posix/permission-denied",
                    test_permission_denied);
    g_test_add_func("/file-posix/lock/bytes", test_lock_bytes);
    g_test_add_func("/file-posix/lock/in-process",
                    test_lock_conflict_in_process);
    g_test_add_func("/file-posix/lock/qemu-io", test_lock_qemu_io);
    g_test_add_func("/file-posix/reopen", test_reopen);
    g_test_add_func("/file-posix/auto-read-only", test_auto_read_only);

    ret = g_test_run();
    if (tmp_dir) {
        rmdir(tmp_dir);
        g_free(tmp_dir);
    }
    return ret;
}
