/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * QED allocating writes under concurrency: allocations in different L2
 * tables, and in different clusters of one table, proceed in parallel;
 * a request that needs a cluster another request is allocating waits
 * for it; a random stress with a model of the guest-visible contents,
 * checked by our check and by Debian's qemu-img.
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * "In parallel" is shown with blkdebug: one allocating write is held at
 * its data write by a breakpoint while another completes.
 */
#include "qemu/osdep.h"

#include "block/blkdebug.h"
#include "qemu/coroutine.h"
#include "tests/unit/test-qed-util.h"

/* An allocating write held by a breakpoint at its data write. */
typedef struct HeldWrite {
    BlockBackend *blk;
    QtAsyncWrite w;
} HeldWrite;

static void hold_write(HeldWrite *h, BlockBackend *blk, int pattern,
                       int64_t offset, int64_t len)
{
    h->blk = blk;
    g_assert_cmpint(blkdebug_debug_breakpoint(blk_bs(blk), "pwritev", "A"),
                    ==, 0);
    qt_start_write(&h->w, blk, pattern, offset, len);
    while (!blkdebug_debug_is_suspended(blk_bs(blk), "A")) {
        aio_poll(qemu_get_aio_context(), true);
    }
    g_assert_false(h->w.done);
}

static void release_write(HeldWrite *h)
{
    g_assert_false(h->w.done);
    g_assert_cmpint(blkdebug_debug_resume(blk_bs(h->blk), "A"), ==, 0);
    qt_wait_flag(&h->w.done, 10000);
    g_assert_cmpint(h->w.ret, ==, 0);
}

static void assert_clean(BlockBackend *blk, uint64_t allocated)
{
    BdrvCheckResult res;

    g_assert_cmpint(bdrv_check(blk_bs(blk), &res, 0), ==, 0);
    g_assert_cmpint(res.corruptions, ==, 0);
    g_assert_cmpint(res.leaks, ==, 0);
    g_assert_cmpint(res.check_errors, ==, 0);
    g_assert_cmpuint(res.bfi.allocated_clusters, ==, allocated);
}

/* Tables cover 2 MiB here (4 KiB clusters, one-cluster tables). */
static BlockBackend *small_table_image(const char *name)
{
    g_autofree char *path = qt_path(name);
    BlockBackend *blk;

    g_assert_cmpint(qt_create(path, 16 * MiB, "cluster_size=4096,"
                              "table_size=1"), ==, 0);
    blk = qt_open_debug(path, BDRV_O_RDWR);
    /* The need-check bit's header write is out of the way. */
    qt_write(blk, 0x10, 14 * MiB, 4096);
    return blk;
}

static void test_parallel_tables(void)
{
    BlockBackend *blk = small_table_image("par-tables.qed");
    HeldWrite a;

    /* A allocates in the table of 0..2M, B in a new one for 4M..6M. */
    hold_write(&a, blk, 0x1a, 0, 4096);
    qt_write(blk, 0x1b, 4 * MiB, 8192);
    g_assert_true(blkdebug_debug_is_suspended(blk_bs(blk), "A"));
    qt_check_pattern(blk, 0x1b, 4 * MiB, 8192);
    /* A's cluster is not visible yet: its entry waits for its data. */
    qt_check_pattern(blk, 0, 0, 4096);
    release_write(&a);
    qt_check_pattern(blk, 0x1a, 0, 4096);
    assert_clean(blk, 4);
    blk_unref(blk);
}

static void test_parallel_same_table(void)
{
    BlockBackend *blk = small_table_image("par-same-table.qed");
    HeldWrite a;

    qt_write(blk, 0x20, 0, 4096);
    /* The table exists: A and B allocate different clusters of it. */
    hold_write(&a, blk, 0x2a, 64 * KiB, 4096);
    qt_write(blk, 0x2b, 128 * KiB, 4096);
    qt_write(blk, 0x2c, 1 * MiB, 16384);
    g_assert_true(blkdebug_debug_is_suspended(blk_bs(blk), "A"));
    release_write(&a);
    qt_check_pattern(blk, 0x20, 0, 4096);
    qt_check_pattern(blk, 0x2a, 64 * KiB, 4096);
    qt_check_pattern(blk, 0x2b, 128 * KiB, 4096);
    qt_check_pattern(blk, 0x2c, 1 * MiB, 16384);
    assert_clean(blk, 8);
    blk_unref(blk);
}

/* B finds the table A created (and has not written yet) and uses it. */
static void test_parallel_new_table(void)
{
    BlockBackend *blk = small_table_image("par-new-table.qed");
    g_autofree char *path = qt_path("par-new-table.qed");
    uint64_t l1, a_off, b_off;
    HeldWrite a;

    hold_write(&a, blk, 0x3a, 6 * MiB, 4096);
    qt_write(blk, 0x3b, 6 * MiB + 8192, 4096);
    release_write(&a);
    g_assert_cmpint(blk_flush(blk), ==, 0);

    /* One table for both, laid out as QEMU would: data, table, data. */
    l1 = qt_peek(path, 4096 + 3 * 8, 8);
    a_off = qt_peek(path, l1, 8);
    b_off = qt_peek(path, l1 + 2 * 8, 8);
    g_assert_cmpuint(l1, ==, a_off + 4096);
    g_assert_cmpuint(b_off, ==, l1 + 4096);
    qt_check_pattern(blk, 0x3a, 6 * MiB, 4096);
    qt_check_pattern(blk, 0, 6 * MiB + 4096, 4096);
    qt_check_pattern(blk, 0x3b, 6 * MiB + 8192, 4096);
    assert_clean(blk, 3);
    blk_unref(blk);
}

/*
 * Two writes into one unallocated 64 KiB cluster: the second waits for
 * the first's allocation (its copy-on-write padding would otherwise
 * overwrite the other's data) and then writes in place.
 */
static void test_same_cluster_waits(void)
{
    g_autofree char *path = qt_path("same-cluster.qed");
    QtAsyncWrite b;
    BlockBackend *blk;
    HeldWrite a;

    g_assert_cmpint(qt_create(path, 16 * MiB, NULL), ==, 0);
    blk = qt_open_debug(path, BDRV_O_RDWR);
    qt_write(blk, 0x10, 8 * MiB, 4096);

    hold_write(&a, blk, 0x4a, 0, 4096);
    qt_start_write(&b, blk, 0x4b, 8192, 4096);
    qt_poll_for(100);
    g_assert_false(b.done);
    release_write(&a);
    qt_wait_flag(&b.done, 10000);
    g_assert_cmpint(b.ret, ==, 0);

    qt_check_pattern(blk, 0x4a, 0, 4096);
    qt_check_pattern(blk, 0, 4096, 4096);
    qt_check_pattern(blk, 0x4b, 8192, 4096);
    qt_check_pattern(blk, 0, 12288, 52 * KiB);
    assert_clean(blk, 2);
    blk_unref(blk);
}

/* A zero write over a cluster being allocated waits, then zeroes it. */
static void test_same_cluster_zeroes(void)
{
    g_autofree char *path = qt_path("same-cluster-zero.qed");
    BlockBackend *blk;
    HeldWrite a;
    QtAsyncWrite z;
    int64_t pnum, map;
    BlockDriverState *file;

    g_assert_cmpint(qt_create(path, 16 * MiB, NULL), ==, 0);
    blk = qt_open_debug(path, BDRV_O_RDWR);
    qt_write(blk, 0x10, 8 * MiB, 4096);

    hold_write(&a, blk, 0x5a, 0, 4096);
    qt_start_write(&z, blk, -1, 0, 64 * KiB);
    qt_poll_for(100);
    g_assert_false(z.done);
    release_write(&a);
    qt_wait_flag(&z.done, 10000);
    g_assert_cmpint(z.ret, ==, 0);
    g_assert_cmpint(blk_block_status(blk, 0, 64 * KiB, &pnum, &map, &file)
                    & BDRV_BLOCK_DATA, !=, 0);
    qt_check_pattern(blk, 0, 0, 64 * KiB);
    blk_unref(blk);
}

/* ---- Metadata write-back racing allocations ---- */

/*
 * What the file says, read behind the driver's back: every table the L1
 * table points at, and every cluster those tables point at, lies inside
 * the file.  A crash at this moment must leave nothing for the repair
 * but leaks.
 */
static void assert_file_covers_entries(const char *path)
{
    uint64_t size = qt_file_size(path);
    g_autofree uint64_t *l1 = NULL;
    g_autofree uint64_t *l2 = NULL;
    uint64_t table_bytes, nelems, i, j;
    QEDHeader h;

    qt_read_header(path, &h);
    table_bytes = (uint64_t)h.table_size * h.cluster_size;
    nelems = table_bytes / sizeof(uint64_t);
    l1 = g_malloc(table_bytes);
    l2 = g_malloc(table_bytes);
    qt_read(path, h.l1_table_offset, l1, table_bytes);
    for (i = 0; i < nelems; i++) {
        uint64_t t = GUINT64_FROM_LE(l1[i]);

        if (!t) {
            continue;
        }
        g_assert_cmpuint(t + table_bytes, <=, size);
        qt_read(path, t, l2, table_bytes);
        for (j = 0; j < nelems; j++) {
            uint64_t e = GUINT64_FROM_LE(l2[j]);

            if (e > QED_ZERO_CLUSTER) {
                g_assert_cmpuint(e + h.cluster_size, <=, size);
            }
        }
    }
}

typedef struct AsyncFlush {
    BlockBackend *blk;
    bool done;
    int ret;
} AsyncFlush;

static void coroutine_fn async_flush_entry(void *opaque)
{
    AsyncFlush *f = opaque;

    f->ret = blk_co_flush(f->blk);
    qatomic_set(&f->done, true);
}

/*
 * A flush is held by a breakpoint where it is about to write the first
 * dirty L2 table, and meanwhile a 512-byte write allocates a cluster in
 * table @alloc_table (0: the held table, 1: the next one).  Its cluster
 * is handed out after the file was extended for the flush, and the file
 * ends 512 bytes into it (the rest is left as a hole).  The flush then
 * writes the table with the new entry: it must extend the file first,
 * or the file points past its own end.  With @alloc_table 1 nothing is
 * dirty after the flush, so our check sees it too.
 */
static void run_write_back_vs_allocation(const char *name, int alloc_table)
{
    g_autofree char *path = qt_path(name);
    BlockBackend *blk;
    AsyncFlush f = { 0 };

    /* One-cluster tables of 4 KiB: each covers 2 MiB of guest space. */
    g_assert_cmpint(qt_create(path, 16 * MiB, "cluster_size=4096,"
                              "table_size=1"), ==, 0);
    blk = qt_open_debug(path, BDRV_O_RDWR);
    /* Two new tables, dirty in this order, with a data cluster each. */
    qt_write(blk, 0x61, 0, 4096);
    qt_write(blk, 0x62, 2 * MiB, 4096);

    f.blk = blk;
    g_assert_cmpint(blkdebug_debug_breakpoint(blk_bs(blk), "l2_update",
                                              "F"), ==, 0);
    aio_co_enter(qemu_get_aio_context(),
                 qemu_coroutine_create(async_flush_entry, &f));
    while (!blkdebug_debug_is_suspended(blk_bs(blk), "F")) {
        aio_poll(qemu_get_aio_context(), true);
    }
    qt_write(blk, 0x63, alloc_table * 2 * MiB + 64 * KiB, 512);
    g_assert_false(f.done);
    g_assert_cmpint(blkdebug_debug_resume(blk_bs(blk), "F"), ==, 0);
    /* A flush to stable storage: slow on a loaded host, a hang guard. */
    qt_wait_flag(&f.done, 60000);
    g_assert_cmpint(f.ret, ==, 0);

    assert_file_covers_entries(path);
    qt_check_pattern(blk, 0x61, 0, 4096);
    qt_check_pattern(blk, 0x62, 2 * MiB, 4096);
    qt_check_pattern(blk, 0x63, alloc_table * 2 * MiB + 64 * KiB, 512);
    qt_check_pattern(blk, 0, alloc_table * 2 * MiB + 64 * KiB + 512,
                     4096 - 512);
    assert_clean(blk, 3);
    blk_unref(blk);
    assert_file_covers_entries(path);
}

static void test_write_back_vs_alloc_same_table(void)
{
    run_write_back_vs_allocation("wb-alloc-same.qed", 0);
}

static void test_write_back_vs_alloc_next_table(void)
{
    run_write_back_vs_allocation("wb-alloc-next.qed", 1);
}

/* ---- Random stress against a model ---- */

#define STRESS_SECTOR 512

typedef struct Stress {
    BlockBackend *blk;
    uint8_t *model;             /* what the guest must read */
    uint8_t *busy;              /* sectors some request is changing */
    int64_t size;
    int64_t max_len;
    int ops_left;
    int running;
    GRand *rand;
    int failures;
} Stress;

static bool stress_claim(Stress *st, int64_t off, int64_t len)
{
    int64_t s;

    for (s = off / STRESS_SECTOR; s < (off + len) / STRESS_SECTOR; s++) {
        if (st->busy[s]) {
            return false;
        }
    }
    memset(st->busy + off / STRESS_SECTOR, 1, len / STRESS_SECTOR);
    return true;
}

static void coroutine_fn stress_worker(void *opaque)
{
    Stress *st = opaque;

    while (st->ops_left > 0) {
        int64_t len = STRESS_SECTOR *
                      g_rand_int_range(st->rand, 1,
                                       st->max_len / STRESS_SECTOR + 1);
        int64_t off = STRESS_SECTOR *
                      g_rand_int_range(st->rand, 0,
                                       (st->size - len) / STRESS_SECTOR + 1);
        int kind = g_rand_int_range(st->rand, 0, 10);
        g_autofree uint8_t *buf = NULL;
        QEMUIOVector qiov;
        int ret;

        if (!stress_claim(st, off, len)) {
            /* Overlapping requests have no defined result: pick again. */
            qemu_co_sleep_ns(QEMU_CLOCK_REALTIME, 10000);
            continue;
        }
        st->ops_left--;
        if (kind == 0) {
            ret = blk_co_pwrite_zeroes(st->blk, off, len,
                                       BDRV_REQ_MAY_UNMAP);
            memset(st->model + off, 0, len);
        } else if (kind == 1) {
            ret = blk_co_flush(st->blk);
        } else {
            int pattern = g_rand_int_range(st->rand, 1, 256);

            buf = g_malloc(len);
            memset(buf, pattern, len);
            qemu_iovec_init_buf(&qiov, buf, len);
            ret = blk_co_pwritev(st->blk, off, len, &qiov, 0);
            memcpy(st->model + off, buf, len);
        }
        if (ret < 0) {
            st->failures++;
        }
        memset(st->busy + off / STRESS_SECTOR, 0, len / STRESS_SECTOR);
    }
    st->running--;
}

static void stress_verify(BlockBackend *blk, const uint8_t *model,
                          int64_t size)
{
    g_autofree uint8_t *buf = g_malloc(size);
    int64_t i;

    g_assert_cmpint(blk_pread(blk, 0, size, buf, 0), ==, 0);
    for (i = 0; i < size; i++) {
        if (buf[i] != model[i]) {
            g_error("byte %" PRId64 " is 0x%02x, the model says 0x%02x", i,
                    buf[i], model[i]);
        }
    }
}

/* Convert with Debian's qemu-img and compare with the model. */
static void stress_verify_with_qemu(const char *path, const uint8_t *model,
                                    int64_t size)
{
    g_autofree char *raw = g_strdup_printf("%s.raw", path);
    g_autofree char *args = g_strdup_printf("convert -f qed -O raw '%s'",
                                            path);
    g_autofree char *data = NULL;
    gsize len;

    g_assert_cmpint(qt_qemu_img("check", path), ==, 0);
    g_assert_cmpint(qt_qemu_img(args, raw), ==, 0);
    g_assert_true(g_file_get_contents(raw, &data, &len, NULL));
    g_assert_cmpuint(len, ==, size);
    g_assert_true(memcmp(data, model, size) == 0);
    unlink(raw);
}

static void run_stress(const char *name, const char *opts, bool backing,
                       int queue_depth, int ops, int64_t max_len)
{
    g_autofree char *path = qt_path(name);
    g_autofree char *base = qt_path("stress-base.raw");
    g_autofree char *create_opts = NULL;
    Stress st = { 0 };
    BdrvCheckResult res;
    int i;

    st.size = 16 * MiB;
    st.model = g_malloc0(st.size);
    st.busy = g_malloc0(st.size / STRESS_SECTOR);
    st.max_len = max_len;
    st.ops_left = ops;
    st.rand = g_rand_new_with_seed(g_test_rand_int());
    if (backing) {
        g_autofree char *raw = NULL;

        for (i = 0; i < st.size; i += 4096) {
            memset(st.model + i, (i / 4096) * 37 + 1, 4096);
        }
        g_assert_true(g_file_set_contents(base, (char *)st.model,
                                          st.size - 1 * MiB, NULL));
        memset(st.model + st.size - 1 * MiB, 0, 1 * MiB);
        create_opts = g_strdup_printf("%s,backing_file=stress-base.raw,"
                                      "backing_fmt=raw", opts);
    } else {
        create_opts = g_strdup(opts);
    }
    g_assert_cmpint(qt_create(path, st.size, create_opts), ==, 0);
    st.blk = qt_open(path, BDRV_O_RDWR);

    st.running = queue_depth;
    for (i = 0; i < queue_depth; i++) {
        aio_co_enter(qemu_get_aio_context(),
                     qemu_coroutine_create(stress_worker, &st));
    }
    while (st.running > 0) {
        aio_poll(qemu_get_aio_context(), true);
    }
    g_assert_cmpint(st.failures, ==, 0);
    stress_verify(st.blk, st.model, st.size);
    g_assert_cmpint(bdrv_check(blk_bs(st.blk), &res, 0), ==, 0);
    g_assert_cmpint(res.corruptions + res.leaks + res.check_errors, ==, 0);
    blk_unref(st.blk);

    /* Again from the file alone. */
    st.blk = qt_open(path, 0);
    stress_verify(st.blk, st.model, st.size);
    blk_unref(st.blk);
    if (strstr(opts, "table_size=1")) {
        g_test_message("QEMU 7.2 cannot open one-cluster tables: no "
                       "interoperability check");
    } else if (qt_have_qemu_img()) {
        stress_verify_with_qemu(path, st.model, st.size);
    } else {
        g_test_message("qemu-img not found: no interoperability check");
    }
    g_rand_free(st.rand);
    g_free(st.model);
    g_free(st.busy);
}

static void test_stress_small_tables(void)
{
    run_stress("stress-4k.qed", "cluster_size=4096,table_size=1", false, 64,
               4000, 64 * KiB);
}

static void test_stress_small_clusters(void)
{
    run_stress("stress-4k-t2.qed", "cluster_size=4096,table_size=2", false,
               64, 4000, 32 * KiB);
}

static void test_stress_big_clusters(void)
{
    run_stress("stress-64k.qed", "cluster_size=65536", false, 32, 3000,
               16 * KiB);
}

static void test_stress_backing(void)
{
    run_stress("stress-cow.qed", "cluster_size=16384,table_size=2", true,
               48, 3000, 24 * KiB);
}

int main(int argc, char **argv)
{
    int ret;

    g_test_init(&argc, &argv, NULL);
    qt_init();
    g_test_add_func("/qed-alloc/parallel/tables", test_parallel_tables);
    g_test_add_func("/qed-alloc/parallel/same-table",
                    test_parallel_same_table);
    g_test_add_func("/qed-alloc/parallel/new-table",
                    test_parallel_new_table);
    g_test_add_func("/qed-alloc/same-cluster/waits",
                    test_same_cluster_waits);
    g_test_add_func("/qed-alloc/same-cluster/zeroes",
                    test_same_cluster_zeroes);
    g_test_add_func("/qed-alloc/write-back/alloc-same-table",
                    test_write_back_vs_alloc_same_table);
    g_test_add_func("/qed-alloc/write-back/alloc-next-table",
                    test_write_back_vs_alloc_next_table);
    g_test_add_func("/qed-alloc/stress/small-tables",
                    test_stress_small_tables);
    g_test_add_func("/qed-alloc/stress/small-clusters",
                    test_stress_small_clusters);
    g_test_add_func("/qed-alloc/stress/big-clusters",
                    test_stress_big_clusters);
    g_test_add_func("/qed-alloc/stress/backing", test_stress_backing);
    ret = g_test_run();
    qt_cleanup();
    return ret;
}
