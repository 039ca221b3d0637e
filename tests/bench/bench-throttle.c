/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Drain latency with 32 throttled writes queued: how long a drain takes
 * when it has to release what a throttle group holds back.
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * Three figures from one run:
 *
 * - in process: bdrv_drain_all_begin() + end around 32 writes queued in
 *   a throttle node (limit 1 write per second, so no timer can help),
 *   measured directly;
 * - the same job through the tools, Debian's qemu-io and sluice-io with
 *   the same command line: 33 aio_write commands (the first passes, 32
 *   queue) and aio_flush, which drains everything.  A tool reports each
 *   request's latency (the "ops/sec" of its completion line); the last
 *   write is submitted right before aio_flush and only the drain
 *   completes it, so its latency is the drain's, measured the same way
 *   in both tools.  The median of several runs is printed, and the
 *   ratio sluice-io / qemu-io.
 *
 * If sluice-io cannot run the job yet, the in-process figure is compared
 * with qemu-io's instead, and the output says so.
 */
#include "qemu/osdep.h"

#include "block/aio-wait.h"
#include "block/block_int.h"
#include "block/throttle-groups.h"
#include "qemu/coroutine.h"
#include "qemu/keyval.h"
#include "qemu/main-loop.h"
#include "qemu/object.h"
#include "sysemu/block-backend.h"

#define QUEUED 32
#define TOOL_TIMEOUT_S 5
#define REQ_SIZE 4096
#define GROUP_OPTS "throttle-group,id=tg0,x-iops-total=1"
#define NODE_OPTS "driver=throttle,throttle-group=tg0,file.driver=null-co," \
                  "file.size=1M"

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

/* ---- In process ---- */

typedef struct Writer {
    BlockBackend *blk;
    int64_t submitted;          /* ns */
    int64_t completed;          /* ns, 0 until then */
    uint8_t buf[REQ_SIZE];
} Writer;

static void coroutine_fn writer_entry(void *opaque)
{
    Writer *w = opaque;
    QEMUIOVector qiov;

    qemu_iovec_init_buf(&qiov, w->buf, sizeof(w->buf));
    w->submitted = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
    if (blk_co_pwritev(w->blk, 0, sizeof(w->buf), &qiov, 0) < 0) {
        fprintf(stderr, "bench-throttle: write failed\n");
        exit(1);
    }
    w->completed = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
}

/*
 * One round: queue QUEUED writes, drain all.  Returns the drain's
 * begin + end in ns; *@last_ns gets the last write's latency, the
 * figure the tools report.
 */
/* @tgm: the throttle node's state, which starts with its member. */
static int64_t drain_round(BlockBackend *blk, ThrottleGroupMember *tgm,
                           double *last_ns)
{
    Writer w[QUEUED];
    int64_t t0, t1;
    int i;

    for (i = 0; i < QUEUED; i++) {
        w[i] = (Writer) { .blk = blk };
        qemu_coroutine_enter(qemu_coroutine_create(writer_entry, &w[i]));
    }
    if (throttle_group_member_queued(tgm) != QUEUED) {
        fprintf(stderr, "bench-throttle: %u writes queued, not %d\n",
                throttle_group_member_queued(tgm), QUEUED);
        exit(1);
    }
    t0 = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
    bdrv_drain_all_begin();
    bdrv_drain_all_end();
    t1 = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
    for (i = 0; i < QUEUED; i++) {
        if (!w[i].completed) {
            fprintf(stderr, "bench-throttle: a write survived the drain\n");
            exit(1);
        }
    }
    *last_ns = w[QUEUED - 1].completed - w[QUEUED - 1].submitted;
    return t1 - t0;
}

static void bench_in_process(int rounds, double *drain_us, double *last_us)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonObject) opts = NULL;
    g_autofree double *d = g_new(double, rounds);
    g_autofree double *l = g_new(double, rounds);
    BlockBackend *blk;
    uint8_t buf[REQ_SIZE] = { 0 };
    double unused;
    int i;

    if (!user_creatable_add_str(GROUP_OPTS, &err) ||
        !(opts = keyval_parse(NODE_OPTS, NULL, &err)) ||
        !(blk = blk_new_open(NULL, opts, BDRV_O_RDWR, &err))) {
        fprintf(stderr, "bench-throttle: %s\n", err->message);
        exit(1);
    }
    /* Spend the burst, so every write of a round queues. */
    if (blk_pwrite(blk, 0, sizeof(buf), buf, 0) < 0) {
        exit(1);
    }
    /* Warm up pools and caches. */
    for (i = 0; i < 10; i++) {
        drain_round(blk, blk_bs(blk)->opaque, &unused);
    }
    for (i = 0; i < rounds; i++) {
        d[i] = drain_round(blk, blk_bs(blk)->opaque, &l[i]) / 1e3;
        l[i] /= 1e3;
    }
    *drain_us = median(d, rounds);
    *last_us = median(l, rounds);
    blk_unref(blk);
    user_creatable_del("tg0", NULL);
}

/* ---- Through a tool ---- */

/*
 * The latency in us of the write at @offset, from a qemu-io style
 * transcript: "wrote N/N bytes at offset OFF" then a line ending in
 * "and X ops/sec)".  -1 if absent.
 */
static double tool_latency_us(const char *out, int64_t offset)
{
    g_autofree char *needle = g_strdup_printf("bytes at offset %" PRId64 "\n",
                                              offset);
    const char *p = strstr(out, needle);
    const char *ops;
    double rate;

    if (!p) {
        return -1;
    }
    p += strlen(needle);
    ops = strstr(p, " and ");
    if (!ops || strchr(p, '\n') < ops) {
        return -1;
    }
    rate = g_ascii_strtod(ops + 5, NULL);
    return rate > 0 ? 1e6 / rate : -1;
}

/* Median latency of the last queued write over @runs runs of @tool. */
static double bench_tool(const char *tool, int runs, char **why)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new_with_free_func(g_free);
    g_autofree double *v = g_new(double, runs);
    int i, n = 0;

    /*
     * A tool whose aio_flush waits for the throttle instead of draining
     * would need QUEUED seconds; give up long before.
     */
    g_ptr_array_add(argv, g_strdup("timeout"));
    g_ptr_array_add(argv, g_strdup_printf("%d", TOOL_TIMEOUT_S));
    g_ptr_array_add(argv, g_strdup(tool));
    g_ptr_array_add(argv, g_strdup("--object"));
    g_ptr_array_add(argv, g_strdup(GROUP_OPTS));
    g_ptr_array_add(argv, g_strdup("--image-opts"));
    g_ptr_array_add(argv, g_strdup(NODE_OPTS));
    /* The first write passes (the burst), the next QUEUED queue. */
    for (i = 0; i <= QUEUED; i++) {
        g_ptr_array_add(argv, g_strdup("-c"));
        g_ptr_array_add(argv, g_strdup_printf("aio_write -P 1 %d %d",
                                              i * REQ_SIZE, REQ_SIZE));
    }
    g_ptr_array_add(argv, g_strdup("-c"));
    g_ptr_array_add(argv, g_strdup("aio_flush"));
    g_ptr_array_add(argv, NULL);

    for (i = 0; i < runs; i++) {
        g_autofree char *out = NULL;
        g_autofree char *errout = NULL;
        g_autoptr(GError) err = NULL;
        int status;
        double us;

        if (!g_spawn_sync(NULL, (char **)argv->pdata, NULL,
                          G_SPAWN_SEARCH_PATH | G_SPAWN_STDIN_FROM_DEV_NULL,
                          NULL, NULL, &out, &errout, &status, &err)) {
            *why = g_strdup(err->message);
            return -1;
        }
        if (WIFEXITED(status) && WEXITSTATUS(status) == 124) {
            *why = g_strdup_printf("aio_flush did not return within %d s: "
                                   "it waits for the throttle instead of "
                                   "draining", TOOL_TIMEOUT_S);
            return -1;
        }
        us = tool_latency_us(out, (int64_t)QUEUED * REQ_SIZE);
        if (!g_spawn_check_wait_status(status, NULL) || us < 0) {
            *why = g_strdup_printf("exit status %d, %s", status,
                                   errout && *errout ? g_strstrip(errout)
                                                     : "no latency printed");
            return -1;
        }
        v[n++] = us;
    }
    return median(v, n);
}

int main(int argc, char **argv)
{
    gint rounds = 200, runs = 15;
    GOptionEntry entries[] = {
        { "rounds", 'n', 0, G_OPTION_ARG_INT, &rounds,
          "in-process drains", "N" },
        { "runs", 'r', 0, G_OPTION_ARG_INT, &runs, "runs of each tool",
          "N" },
        { NULL },
    };
    g_autoptr(GOptionContext) opts = g_option_context_new("");
    g_autoptr(GError) err = NULL;
    g_autofree char *dir = g_path_get_dirname(argv[0]);
    g_autofree char *sluice_io = g_build_filename(dir, "..", "..",
                                                  "sluice-io", NULL);
    g_autofree char *qemu_why = NULL;
    g_autofree char *sluice_why = NULL;
    double drain_us, last_us, qemu_us = -1, sluice_us = -1;

    g_option_context_add_main_entries(opts, entries, NULL);
    if (!g_option_context_parse(opts, &argc, &argv, &err) ||
        !qemu_init_main_loop(&err)) {
        fprintf(stderr, "bench-throttle: %s\n", err->message);
        return 1;
    }
    rounds = MAX(rounds, 1);
    runs = MAX(runs, 1);

    bench_in_process(rounds, &drain_us, &last_us);
    printf("drain with %d throttled writes queued, in process: "
           "begin+end %.1f us, last write's latency %.1f us "
           "(median of %d)\n", QUEUED, drain_us, last_us, rounds);

    if (g_file_test("/usr/bin/qemu-io", G_FILE_TEST_IS_EXECUTABLE)) {
        qemu_us = bench_tool("/usr/bin/qemu-io", runs, &qemu_why);
    } else {
        qemu_why = g_strdup("not installed");
    }
    if (qemu_us >= 0) {
        printf("drain with %d throttled writes queued, qemu-io aio_flush: "
               "%.1f us (median of %d)\n", QUEUED, qemu_us, runs);
    } else {
        printf("qemu-io: skipped (%s)\n", qemu_why);
    }

    sluice_us = bench_tool(sluice_io, runs, &sluice_why);
    if (sluice_us >= 0) {
        printf("drain with %d throttled writes queued, sluice-io "
               "aio_flush: %.1f us (median of %d)\n", QUEUED, sluice_us,
               runs);
    } else {
        printf("sluice-io: not measured (%s)\n", sluice_why);
    }

    if (qemu_us >= 0 && sluice_us >= 0) {
        printf("ratio sluice-io / qemu-io: %.2f\n", sluice_us / qemu_us);
    } else if (qemu_us >= 0) {
        printf("ratio in-process / qemu-io (sluice-io not ready): %.2f\n",
               last_us / qemu_us);
    }
    return 0;
}
