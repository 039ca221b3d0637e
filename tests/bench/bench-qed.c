/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Benchmark of QED allocating writes: 4 KiB writes, each into a cluster
 * of its own (a fresh image with the default 64 KiB clusters, one write
 * every 64 KiB), at queue depth 1 and 32, through the page cache and
 * with O_DIRECT; next to Debian's `qemu-img bench -w` doing the same in
 * the same run.
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * Usage: bench-qed [-c COUNT] [-r ROUNDS] [-d DIR] [--no-qemu]
 * Images go to DIR (-d, else $SLUICE_BENCH_DIR, else /var/tmp) and are
 * removed afterwards.  Each figure is the median of ROUNDS runs, the two
 * sides alternating (and which goes first alternating too), because a
 * shared virtual disk drifts; every run starts after sync(2), so one
 * run's dirty pages do not slow the next.  Neither side flushes: qemu-img
 * bench's figure is its own "Run completed in" time, in which QEMU has
 * written each L2 update as it went; Sluice's time includes writing its
 * L2 tables back at the end (the first half of a flush, without the
 * fdatasync), so both have the same things in the file.
 */
#include "qemu/osdep.h"

#include <sys/wait.h>

#include "block/block_int.h"
#include "block/qed.h"
#include "qemu/coroutine.h"
#include "qemu/main-loop.h"
#include "sysemu/block-backend.h"

#define WRITE_SIZE 4096
#define STEP (64 * 1024)

typedef struct BenchRun {
    BlockBackend *blk;
    int count;
    int next;
    int running;
    int errors;
} BenchRun;

/* The metadata write-back a flush starts with, and nothing else. */
static void coroutine_fn bench_write_back(void *opaque)
{
    BenchRun *b = opaque;

    if (qed_co_write_back(blk_bs(b->blk)->opaque) < 0) {
        b->errors++;
    }
    b->running--;
}

static void coroutine_fn bench_worker(void *opaque)
{
    BenchRun *b = opaque;
    uint8_t *buf = NULL;
    QEMUIOVector qiov;

    /* Aligned for O_DIRECT, so no bounce buffer costs us. */
    if (posix_memalign((void **)&buf, 4096, WRITE_SIZE)) {
        b->errors++;
        b->running--;
        return;
    }
    memset(buf, 0xa5, WRITE_SIZE);
    qemu_iovec_init_buf(&qiov, buf, WRITE_SIZE);
    while (b->next < b->count) {
        int64_t off = (int64_t)b->next++ * STEP;

        if (blk_co_pwritev(b->blk, off, WRITE_SIZE, &qiov, 0) < 0) {
            b->errors++;
        }
    }
    free(buf);
    b->running--;
}

/* One Sluice run on a fresh image; IOPS, or -1 on error. */
static double bench_sluice(const char *path, int count, int qd, bool direct)
{
    g_autoptr(JsonObject) copts = json_object_new();
    g_autoptr(JsonObject) oopts = json_object_new();
    g_autoptr(GError) err = NULL;
    BenchRun b = { .count = count };
    gint64 t0, t1;
    int i;

    unlink(path);
    json_object_set_int_member(copts, "size", (int64_t)count * STEP);
    if (bdrv_create(bdrv_find_format("qed"), path, copts, &err) < 0) {
        fprintf(stderr, "create %s: %s\n", path, err->message);
        return -1;
    }
    json_object_set_string_member(oopts, "driver", "qed");
    b.blk = blk_new_open(path, oopts,
                         BDRV_O_RDWR | (direct ? BDRV_O_NOCACHE : 0), &err);
    if (!b.blk) {
        fprintf(stderr, "open %s: %s\n", path, err->message);
        return -1;
    }

    sync();
    t0 = g_get_monotonic_time();
    b.running = qd;
    for (i = 0; i < qd; i++) {
        aio_co_enter(qemu_get_aio_context(),
                     qemu_coroutine_create(bench_worker, &b));
    }
    while (b.running) {
        aio_poll(qemu_get_aio_context(), true);
    }
    b.running = 1;
    aio_co_enter(qemu_get_aio_context(),
                 qemu_coroutine_create(bench_write_back, &b));
    while (b.running) {
        aio_poll(qemu_get_aio_context(), true);
    }
    t1 = g_get_monotonic_time();
    blk_unref(b.blk);
    unlink(path);
    if (b.errors) {
        fprintf(stderr, "sluice: %d errors\n", b.errors);
        return -1;
    }
    return count / ((t1 - t0) / 1e6);
}

/* One qemu-img bench run on a fresh image; IOPS, or -1 on error. */
static double bench_qemu(const char *path, int count, int qd, bool direct)
{
    g_autofree char *create = NULL;
    g_autofree char *run = NULL;
    g_autofree char *out = NULL;
    const char *p;
    double secs;
    int status;

    unlink(path);
    create = g_strdup_printf("qemu-img create -q -f qed '%s' %" PRId64,
                             path, (int64_t)count * STEP);
    if (!g_spawn_command_line_sync(create, NULL, NULL, &status, NULL) ||
        !WIFEXITED(status) || WEXITSTATUS(status)) {
        fprintf(stderr, "%s: failed\n", create);
        return -1;
    }
    sync();
    run = g_strdup_printf("qemu-img bench -w -f qed -c %d -d %d -s %d "
                          "-S %d -t %s '%s'", count, qd, WRITE_SIZE, STEP,
                          direct ? "none" : "writeback", path);
    if (!g_spawn_command_line_sync(run, &out, NULL, &status, NULL) ||
        !WIFEXITED(status) || WEXITSTATUS(status)) {
        fprintf(stderr, "%s: failed\n", run);
        unlink(path);
        return -1;
    }
    unlink(path);
    p = strstr(out, "Run completed in ");
    if (!p || sscanf(p, "Run completed in %lf", &secs) != 1 || secs <= 0) {
        fprintf(stderr, "qemu-img bench: unexpected output:\n%s", out);
        return -1;
    }
    return count / secs;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
    static const int depths[] = { 1, 32 };
    int count = 4000, rounds = 3;
    const char *dir = g_getenv("SLUICE_BENCH_DIR") ?: "/var/tmp";
    bool use_qemu = true;
    g_autofree char *qemu_img = g_find_program_in_path("qemu-img");
    g_autofree char *path = NULL;
    int i, c, d, r;

    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-c") && i + 1 < argc) {
            count = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "-r") && i + 1 < argc) {
            rounds = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "-d") && i + 1 < argc) {
            dir = argv[++i];
        } else if (!strcmp(argv[i], "--no-qemu")) {
            use_qemu = false;
        } else {
            fprintf(stderr, "usage: %s [-c COUNT] [-r ROUNDS] [-d DIR] "
                    "[--no-qemu]\n", argv[0]);
            return 2;
        }
    }
    if (count < 1 || rounds < 1) {
        fprintf(stderr, "COUNT and ROUNDS must be positive\n");
        return 2;
    }
    if (use_qemu && !qemu_img) {
        printf("qemu-img not found: Sluice's figures only\n");
        use_qemu = false;
    }
    if (!qemu_init_main_loop(NULL)) {
        return 1;
    }
    path = g_strdup_printf("%s/sluice-bench-qed-%d.qed", dir, getpid());

    printf("QED allocating writes: %d x %d bytes, one per %d KiB cluster, "
           "median of %d rounds\n", count, WRITE_SIZE, STEP / 1024, rounds);
    printf("%-10s %3s %14s %14s %7s\n", "cache", "QD", "sluice IOPS",
           "qemu-img IOPS", "ratio");
    for (c = 0; c < 2; c++) {
        bool direct = c == 1;

        for (d = 0; d < (int)G_N_ELEMENTS(depths); d++) {
            g_autofree double *ours = g_new(double, rounds);
            g_autofree double *theirs = g_new(double, rounds);
            double mo, mt;

            for (r = 0; r < rounds; r++) {
                bool qemu_first = r % 2;

                if (use_qemu && qemu_first) {
                    theirs[r] = bench_qemu(path, count, depths[d], direct);
                }
                ours[r] = bench_sluice(path, count, depths[d], direct);
                if (use_qemu && !qemu_first) {
                    theirs[r] = bench_qemu(path, count, depths[d], direct);
                }
                if (ours[r] < 0 || (use_qemu && theirs[r] < 0)) {
                    return 1;
                }
            }
            mo = median(ours, rounds);
            if (use_qemu) {
                mt = median(theirs, rounds);
                printf("%-10s %3d %14.0f %14.0f %6.2fx\n",
                       direct ? "none" : "writeback", depths[d], mo, mt,
                       mo / mt);
            } else {
                printf("%-10s %3d %14.0f %14s %7s\n",
                       direct ? "none" : "writeback", depths[d], mo, "-",
                       "-");
            }
            fflush(stdout);
        }
    }
    return 0;
}
