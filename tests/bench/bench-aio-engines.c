/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Benchmark of the host I/O engines: 4 KiB O_DIRECT random reads at
 * several queue depths, for linux-aio and io_uring, next to fio running
 * the same job on the same file for the same time.
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * Usage: bench-aio-engines [-t SECONDS] [-r ROUNDS] [-d DIR] [-s MIB]
 *                          [-q 1,32] [-e linux-aio,io_uring] [--no-fio]
 * The data file (DIR/sluice-bench-engines.img, DIR from -d, else
 * $SLUICE_BENCH_DIR, else /var/tmp) is created and filled once and kept
 * for later runs.
 *
 * A shared virtual disk drifts by tens of percent within a minute, so the
 * SECONDS each side gets are cut into ROUNDS slices run alternately (which
 * side goes first alternates too); the ratio printed is the median of the
 * per-slice ratios, the IOPS the medians of the slices.
 */
#include "qemu/osdep.h"
#include "config-host.h"

#include <sys/stat.h>

#include "block/aio.h"
#include "block/raw-aio.h"
#include "tests/aio-engine-ops.h"
#include "qemu/coroutine.h"
#include "qemu/iov.h"
#include "qemu/main-loop.h"

#define BLK 4096


/* ---- The data file ---- */

/*
 * Create @path with @size bytes of non-repeating data unless a file of
 * that size is already there.  Written under a temporary name and renamed,
 * so an interrupted fill is never mistaken for a complete one.
 */
static bool bench_file_prepare(const char *path, uint64_t size,
                               GError **errp)
{
    const size_t chunk = 1024 * 1024;
    g_autofree char *tmp = NULL;
    g_autofree uint64_t *buf = NULL;
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    struct stat st;
    int fd;

    if (stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
        (uint64_t)st.st_size == size) {
        return true;
    }

    printf("creating %s (%" PRIu64 " MiB) ...\n", path, size >> 20);
    fflush(stdout);
    tmp = g_strdup_printf("%s.tmp", path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(errno),
                    "cannot create %s: %s", tmp, g_strerror(errno));
        return false;
    }
    buf = g_malloc(chunk);
    for (uint64_t off = 0; off < size; off += chunk) {
        size_t len = MIN(chunk, size - off);

        for (size_t i = 0; i < len / sizeof(uint64_t); i++) {
            /* xorshift64: cheap data that no layer can compress away. */
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf[i] = x;
        }
        if (pwrite(fd, buf, len, off) != (ssize_t)len) {
            g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(errno),
                        "cannot write %s: %s", tmp, g_strerror(errno));
            close(fd);
            unlink(tmp);
            return false;
        }
    }
    if (fsync(fd) < 0 || close(fd) < 0 || rename(tmp, path) < 0) {
        g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(errno),
                    "cannot finish %s: %s", path, g_strerror(errno));
        unlink(tmp);
        return false;
    }
    return true;
}

/* ---- Our side ---- */

typedef struct BenchRun {
    const AioEngineOps *eng;
    void *s;
    int fd;
    uint64_t nblocks;
    int64_t deadline_us;
    uint64_t ios;
    uint64_t errors;
    int active;
} BenchRun;

typedef struct BenchWorker {
    BenchRun *run;
    uint64_t rng;
    uint8_t *buf;
} BenchWorker;

static void coroutine_fn bench_worker_entry(void *opaque)
{
    BenchWorker *w = opaque;
    BenchRun *run = w->run;
    QEMUIOVector qiov;

    qemu_iovec_init_buf(&qiov, w->buf, BLK);
    while (g_get_monotonic_time() < run->deadline_us) {
        uint64_t off;
        int ret;

        w->rng ^= w->rng << 13;
        w->rng ^= w->rng >> 7;
        w->rng ^= w->rng << 17;
        off = (w->rng % run->nblocks) * BLK;

        ret = run->eng->submit(run->s, run->fd, off, &qiov, QEMU_AIO_READ);
        if (ret != BLK) {
            run->errors++;
            break;
        }
        run->ios++;
    }
    run->active--;
}

/* Returns IOPS, or a negative value after printing why. */
static double bench_sluice(const AioEngineOps *eng, const char *path,
                           uint64_t size, int qd, double seconds)
{
    g_autoptr(GError) err = NULL;
    AioContext *ctx = qemu_get_aio_context();
    BenchWorker *workers;
    BenchRun run = { .eng = eng };
    int64_t start, end;

    run.s = eng->init(&err);
    if (!run.s) {
        printf("%s: cannot initialise: %s\n", eng->name, err->message);
        return -1;
    }
    run.fd = open(path, O_RDONLY | O_DIRECT);
    if (run.fd < 0) {
        printf("%s: cannot open %s with O_DIRECT: %s\n", eng->name, path,
               g_strerror(errno));
        eng->cleanup(run.s);
        return -1;
    }
    eng->attach(run.s, ctx);
    run.nblocks = size / BLK;

    workers = g_new0(BenchWorker, qd);
    for (int i = 0; i < qd; i++) {
        workers[i].run = &run;
        workers[i].rng = 0x2545f4914f6cdd1dULL * (i + 1);
        g_assert_cmpint(posix_memalign((void **)&workers[i].buf, BLK, BLK),
                        ==, 0);
    }

    start = g_get_monotonic_time();
    run.deadline_us = start + (int64_t)(seconds * G_USEC_PER_SEC);
    run.active = qd;
    /* The first wave goes to the kernel in one system call. */
    eng->plug(run.s);
    for (int i = 0; i < qd; i++) {
        qemu_coroutine_enter(qemu_coroutine_create(bench_worker_entry,
                                                   &workers[i]));
    }
    eng->unplug(run.s);
    while (run.active > 0) {
        aio_poll(ctx, true);
    }
    end = g_get_monotonic_time();

    eng->detach(run.s, ctx);
    eng->cleanup(run.s);
    close(run.fd);
    for (int i = 0; i < qd; i++) {
        free(workers[i].buf);
    }
    g_free(workers);

    if (run.errors) {
        printf("%s: %" PRIu64 " reads failed\n", eng->name, run.errors);
        return -1;
    }
    return run.ios / ((end - start) / (double)G_USEC_PER_SEC);
}

/* ---- fio's side ---- */

/* jobs[0].read.iops from fio's JSON output, or a negative value. */
static double fio_parse_read_iops(const char *json)
{
    const char *p = strstr(json, "\"read\"");

    if (!p) {
        return -1;
    }
    p = strstr(p, "\"iops\"");
    if (!p) {
        return -1;
    }
    p = strchr(p + strlen("\"iops\""), ':');
    if (!p) {
        return -1;
    }
    return g_ascii_strtod(p + 1, NULL);
}

static double bench_fio(const char *fio, const AioEngineOps *eng,
                        const char *path, uint64_t size, int qd,
                        double seconds)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *out = NULL;
    g_autofree char *errout = NULL;
    g_autofree char *a_file = g_strdup_printf("--filename=%s", path);
    g_autofree char *a_engine = g_strdup_printf("--ioengine=%s",
                                                eng->fio_engine);
    g_autofree char *a_qd = g_strdup_printf("--iodepth=%d", qd);
    g_autofree char *a_time = g_strdup_printf("--runtime=%" PRId64 "ms",
                                              (int64_t)(seconds * 1000));
    g_autofree char *a_size = g_strdup_printf("--size=%" PRIu64, size);
    const char *argv[] = {
        fio, "--name=sluice-bench", a_file, a_engine, "--rw=randread",
        "--bs=4k", "--direct=1", a_qd, a_time, "--time_based", a_size,
        "--norandommap", "--randrepeat=0", "--invalidate=0",
        "--output-format=json", NULL,
    };
    int status;
    double iops;

    if (!g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_DEFAULT, NULL,
                      NULL, &out, &errout, &status, &err)) {
        printf("fio: cannot run: %s\n", err->message);
        return -1;
    }
    if (!g_spawn_check_wait_status(status, &err)) {
        printf("fio (%s QD%d) failed: %s\n%s", eng->fio_engine, qd,
               err->message, errout ? errout : "");
        return -1;
    }
    iops = fio_parse_read_iops(out);
    if (iops < 0) {
        printf("fio (%s QD%d): no read.iops in its output\n",
               eng->fio_engine, qd);
    }
    return iops;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

/* Median of the positive values of @v (sorted in place); -1 if none. */
static double median(double *v, int n)
{
    int first = 0;

    qsort(v, n, sizeof(*v), cmp_double);
    while (first < n && v[first] <= 0) {
        first++;
    }
    if (first == n) {
        return -1;
    }
    n -= first;
    v += first;
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(GOptionContext) octx = NULL;
    g_autofree char *path = NULL;
    g_autofree char *fio = NULL;
    double seconds = 5;
    char *dir = NULL;
    char *qd_list = NULL;
    char *engine_list = NULL;
    int size_mib = 1024;
    int rounds = 5;
    gboolean no_fio = FALSE;
    g_auto(GStrv) qds = NULL;
    const AioEngineOps *engines[] = { &engine_laio, &engine_luring };
    GOptionEntry entries[] = {
        { "time", 't', 0, G_OPTION_ARG_DOUBLE, &seconds,
          "Seconds per engine, QD and side (default 5)", "S" },
        { "rounds", 'r', 0, G_OPTION_ARG_INT, &rounds,
          "Alternating slices those seconds are cut into (default 5)",
          "N" },
        { "dir", 'd', 0, G_OPTION_ARG_FILENAME, &dir,
          "Directory of the data file (default $SLUICE_BENCH_DIR or "
          "/var/tmp)", "DIR" },
        { "size", 's', 0, G_OPTION_ARG_INT, &size_mib,
          "Data file size in MiB (default 1024)", "MIB" },
        { "qd", 'q', 0, G_OPTION_ARG_STRING, &qd_list,
          "Queue depths, comma-separated (default 1,32)", "LIST" },
        { "engines", 'e', 0, G_OPTION_ARG_STRING, &engine_list,
          "Engines, comma-separated (default linux-aio,io_uring)", "LIST" },
        { "no-fio", 0, 0, G_OPTION_ARG_NONE, &no_fio,
          "Do not run fio", NULL },
        { NULL },
    };
    uint64_t size;
    int failed = 0;

    octx = g_option_context_new("- host I/O engine benchmark");
    g_option_context_add_main_entries(octx, entries, NULL);
    if (!g_option_context_parse(octx, &argc, &argv, &err)) {
        fprintf(stderr, "%s\n", err->message);
        return 2;
    }
    if (seconds <= 0 || size_mib < 1 || rounds < 1) {
        fprintf(stderr, "time, rounds and size must be positive\n");
        return 2;
    }
    size = (uint64_t)size_mib << 20;
    if (!dir) {
        const char *env = g_getenv("SLUICE_BENCH_DIR");

        dir = g_strdup(env && *env ? env : "/var/tmp");
    }
    path = g_build_filename(dir, "sluice-bench-engines.img", NULL);
    g_free(dir);
    qds = g_strsplit(qd_list ? qd_list : "1,32", ",", -1);
    g_free(qd_list);

    if (!qemu_init_main_loop(&err)) {
        fprintf(stderr, "main loop: %s\n", err->message);
        return 1;
    }
    if (!bench_file_prepare(path, size, &err)) {
        fprintf(stderr, "%s\n", err->message);
        return 1;
    }

    if (!no_fio) {
        fio = g_find_program_in_path("fio");
        if (!fio) {
            printf("fio not found in PATH: printing only our figures\n");
        }
    }

    for (size_t e = 0; e < G_N_ELEMENTS(engines); e++) {
        const AioEngineOps *eng = engines[e];

        if (engine_list && !strstr(engine_list, eng->name)) {
            continue;
        }
        if (!eng->built) {
            printf("%s: not in this build, skipped\n", eng->name);
            continue;
        }
        for (int q = 0; qds[q]; q++) {
            int qd = atoi(qds[q]);
            g_autofree double *ours_v = g_new0(double, rounds);
            g_autofree double *fio_v = g_new0(double, rounds);
            g_autofree double *ratio_v = g_new0(double, rounds);
            double slice = seconds / rounds;
            double ours, theirs;

            if (qd < 1) {
                continue;
            }
            for (int r = 0; r < rounds; r++) {
                bool fio_first = fio && r % 2 == 1;

                if (fio_first) {
                    fio_v[r] = bench_fio(fio, eng, path, size, qd, slice);
                }
                ours_v[r] = bench_sluice(eng, path, size, qd, slice);
                if (fio && !fio_first) {
                    fio_v[r] = bench_fio(fio, eng, path, size, qd, slice);
                }
                if (ours_v[r] > 0 && fio_v[r] > 0) {
                    ratio_v[r] = ours_v[r] / fio_v[r];
                }
            }
            ours = median(ours_v, rounds);
            theirs = median(fio_v, rounds);
            if (ours < 0) {
                failed = 1;
                continue;
            }
            if (theirs > 0) {
                printf("%s randread 4k QD%d: sluice %.0f IOPS, fio %.0f IOPS, "
                       "ratio %.2f\n", eng->name, qd, ours, theirs,
                       median(ratio_v, rounds));
            } else {
                printf("%s randread 4k QD%d: sluice %.0f IOPS\n",
                       eng->name, qd, ours);
            }
            fflush(stdout);
        }
    }
    g_free(engine_list);
    return failed;
}
