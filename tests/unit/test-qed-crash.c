/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * QED crash consistency: a writer process (this program, run with
 * --writer) does concurrent allocating writes with periodic flushes and
 * is killed with SIGKILL at a random moment; after each kill a check
 * with repair must leave a consistent image (leaks allowed, nothing
 * else), every write that a completed flush covered must read back
 * intact, blocks never written must read as zeroes, and blocks written
 * but not flushed must hold, sector by sector, either their data or
 * zeroes.  The writer reports on a pipe what it submits, completes and
 * flushes, so the parent knows what must have survived.
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * 20 kills in the unit suite, 200 with -m slow (the 'slow' suite).
 * Kills land during allocating writes, metadata write-back, flushes,
 * need-check header updates (the writer's quiet period is short) and,
 * sometimes, during the automatic repair at open.
 */
#include "qemu/osdep.h"

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>

#include "qemu/coroutine.h"
#include "tests/unit/test-qed-util.h"

#define BLOCK 4096
#define IMAGE_SIZE (32 * MiB)
#define NBLOCKS (IMAGE_SIZE / BLOCK)

/* What block @b holds once written: its number, then a fill byte. */
static void block_pattern(uint32_t b, uint8_t *buf)
{
    uint64_t le = GUINT64_TO_LE(b);

    memset(buf, (b * 131 + 7) & 0xff, BLOCK);
    memcpy(buf, &le, sizeof(le));
}

/* The order blocks are written in, the same in writer and parent. */
static uint32_t *block_order(uint32_t seed)
{
    uint32_t *perm = g_new(uint32_t, NBLOCKS);
    GRand *r = g_rand_new_with_seed(seed);
    uint32_t i;

    for (i = 0; i < NBLOCKS; i++) {
        perm[i] = i;
    }
    for (i = NBLOCKS - 1; i > 0; i--) {
        uint32_t j = g_rand_int_range(r, 0, i + 1);
        uint32_t t = perm[i];

        perm[i] = perm[j];
        perm[j] = t;
    }
    g_rand_free(r);
    return perm;
}

/* ---- The writer (child process) ---- */

typedef struct Writer {
    BlockBackend *blk;
    uint32_t *perm;
    uint32_t next;              /* next index into perm */
    unsigned int running;
    unsigned int until_flush;
    bool flushing;
    int64_t quiet_until;        /* every worker pauses until then */
    int64_t quiet_ns;           /* a bit longer than the need-check timer */
    GRand *rand;
} Writer;

static void report(const char *fmt, ...) G_GNUC_PRINTF(1, 2);

static void report(const char *fmt, ...)
{
    char line[64];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    /* One write per line, unbuffered: the parent sees it even if killed. */
    if (write(STDOUT_FILENO, line, n) != n) {
        _exit(3);
    }
}

static void coroutine_fn writer_co(void *opaque)
{
    Writer *w = opaque;
    uint8_t *buf = g_malloc(BLOCK);

    while (w->next < NBLOCKS) {
        int64_t now = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
        QEMUIOVector qiov;
        uint32_t i;
        int ret;

        if (now < w->quiet_until) {
            qemu_co_sleep_ns(QEMU_CLOCK_REALTIME, w->quiet_until - now);
            continue;
        }
        i = w->next++;

        block_pattern(w->perm[i], buf);
        qemu_iovec_init_buf(&qiov, buf, BLOCK);
        report("S %u\n", i);
        ret = blk_co_pwritev(w->blk, (int64_t)w->perm[i] * BLOCK, BLOCK,
                             &qiov, 0);
        if (ret < 0) {
            report("E %d\n", ret);
            _exit(4);
        }
        report("C %u\n", i);

        if (--w->until_flush == 0 && !w->flushing) {
            w->flushing = true;
            report("F\n");
            ret = blk_co_flush(w->blk);
            if (ret < 0) {
                report("E %d\n", ret);
                _exit(4);
            }
            report("f\n");
            w->flushing = false;
            w->until_flush = g_rand_int_range(w->rand, 1, 64);
        }
        if (g_rand_int_range(w->rand, 0, 200) == 0) {
            /*
             * A quiet period: the need-check timer fires and clears the
             * bit, so kills also land in and after header updates.
             */
            w->quiet_until = qemu_clock_get_ns(QEMU_CLOCK_REALTIME) +
                             w->quiet_ns;
        } else if (g_rand_int_range(w->rand, 0, 8) == 0) {
            qemu_co_sleep_ns(QEMU_CLOCK_REALTIME,
                             g_rand_int_range(w->rand, 0, 500) * SCALE_US);
        }
    }
    g_free(buf);
    w->running--;
}

/* --writer IMAGE SEED START QD TIMEOUT_MS DIRECT */
static int writer_main(char **argv)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonObject) o = json_object_new();
    Writer w = { 0 };
    unsigned int qd = atoi(argv[5]);
    int flags = BDRV_O_RDWR;
    unsigned int i;

    g_assert_true(qemu_init_main_loop(NULL));
    qed_set_need_check_timeout_ns(atoi(argv[6]) * SCALE_MS);
    w.quiet_ns = (atoi(argv[6]) + 10) * SCALE_MS;
    if (atoi(argv[7])) {
        flags |= BDRV_O_NOCACHE;
    }
    json_object_set_string_member(o, "driver", "qed");
    w.blk = blk_new_open(argv[2], o, flags, &err);
    if (!w.blk) {
        report("E open: %s\n", err->message);
        return 2;
    }
    w.perm = block_order(atoi(argv[3]));
    w.next = atoi(argv[4]);
    w.rand = g_rand_new_with_seed(atoi(argv[3]) ^ w.next);
    w.until_flush = g_rand_int_range(w.rand, 1, 64);
    report("O\n");

    w.running = qd;
    for (i = 0; i < qd; i++) {
        aio_co_enter(qemu_get_aio_context(),
                     qemu_coroutine_create(writer_co, &w));
    }
    while (w.running) {
        aio_poll(qemu_get_aio_context(), true);
    }
    blk_unref(w.blk);
    report("D\n");
    return 0;
}

/* ---- The parent ---- */

static bool all_zero(const uint8_t *p, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++) {
        if (p[i]) {
            return false;
        }
    }
    return true;
}

typedef struct Run {
    uint32_t seed;
    uint32_t *perm;
    uint8_t *submitted;         /* per index into perm */
    uint8_t *completed;
    uint8_t *snapshot;          /* completed when the flush began */
    uint8_t *durable;
    uint32_t next;              /* first index never submitted */
    bool flush_open;
    GString *partial;
    /* Statistics for the report. */
    unsigned int kills;
    unsigned int open_kills;
    unsigned int clean_kills;   /* the need-check bit was clear */
    unsigned int repaired;
    unsigned int leaks;
    uint64_t durable_checked;
} Run;

static void run_parse(Run *run, const char *line)
{
    uint32_t i;

    switch (line[0]) {
    case 'S':
        i = strtoul(line + 2, NULL, 10);
        g_assert_cmpuint(i, <, NBLOCKS);
        run->submitted[i] = 1;
        run->next = MAX(run->next, i + 1);
        break;
    case 'C':
        i = strtoul(line + 2, NULL, 10);
        g_assert_cmpuint(i, <, NBLOCKS);
        run->completed[i] = 1;
        break;
    case 'F':
        memcpy(run->snapshot, run->completed, NBLOCKS);
        run->flush_open = true;
        break;
    case 'f':
        g_assert_true(run->flush_open);
        for (i = 0; i < NBLOCKS; i++) {
            run->durable[i] |= run->snapshot[i];
        }
        run->flush_open = false;
        break;
    case 'O':
    case 'D':
        break;
    default:
        g_error("writer: %s", line);
    }
}

static void run_feed(Run *run, const char *data, ssize_t n)
{
    char *nl;

    g_string_append_len(run->partial, data, n);
    while ((nl = strchr(run->partial->str, '\n'))) {
        *nl = 0;
        run_parse(run, run->partial->str);
        g_string_erase(run->partial, 0, nl - run->partial->str + 1);
    }
}

/* Start a writer, kill it at a random moment, collect its reports. */
static void run_writer(Run *run, const char *path, GRand *r)
{
    /* Our own binary, even if a rebuild replaced the file meanwhile. */
    char self[] = "/proc/self/exe";
    g_autofree char *seed = g_strdup_printf("%u", run->seed);
    g_autofree char *start = g_strdup_printf("%u", run->next);
    g_autofree char *qd = g_strdup_printf("%d",
                                          g_rand_int_range(r, 1, 33));
    g_autofree char *timeout = g_strdup_printf("%d",
                                               g_rand_int_range(r, 5, 80));
    g_autofree char *direct = g_strdup_printf("%d",
                                              g_rand_int_range(r, 0, 4) == 0);
    char *argv[] = {
        self, (char *)"--writer", (char *)path, seed, start, qd, timeout,
        direct, NULL,
    };
    /* Sometimes kill during the open (and its repair), before any "O". */
    bool early = g_rand_int_range(r, 0, 10) == 0;
    gint64 kill_after = g_rand_int_range(r, early ? 0 : 1000,
                                         early ? 3000 : 60000);
    gint64 t0 = 0;
    bool killed = false, opened = false;
    int out_fd, status;
    GPid pid;

    /*
     * What an earlier writer completed but did not flush may be gone:
     * only this writer's completions count for its flushes.
     */
    memset(run->completed, 0, NBLOCKS);
    g_assert_true(g_spawn_async_with_pipes(NULL, argv, NULL,
                                           G_SPAWN_DO_NOT_REAP_CHILD, NULL,
                                           NULL, &pid, NULL, &out_fd, NULL,
                                           NULL));
    if (early) {
        t0 = g_get_monotonic_time();
    }
    for (;;) {
        struct pollfd pfd = { .fd = out_fd, .events = POLLIN };
        char buf[4096];
        int wait_ms = -1;
        ssize_t n;

        if (!killed && t0) {
            gint64 left = t0 + kill_after - g_get_monotonic_time();

            if (left <= 0) {
                kill(pid, SIGKILL);
                killed = true;
                run->kills++;
                run->open_kills += !opened;
                continue;
            }
            wait_ms = left / 1000 + 1;
        }
        if (poll(&pfd, 1, wait_ms) == 0) {
            continue;
        }
        n = read(out_fd, buf, sizeof(buf));
        if (n <= 0) {
            break;
        }
        if (!opened && memchr(buf, 'O', n)) {
            opened = true;
            if (!t0) {
                t0 = g_get_monotonic_time();
            }
        }
        run_feed(run, buf, n);
    }
    close(out_fd);
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    g_spawn_close_pid(pid);
    if (killed && !(qt_peek(path, 16, 8) & QED_F_NEED_CHECK)) {
        run->clean_kills++;
    }
    if (!killed) {
        /* It finished every block first: it must have exited cleanly. */
        g_assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    g_string_truncate(run->partial, 0);
    run->flush_open = false;
}

/* Repair as qemu-img check -r all does, then check again. */
static void run_repair(Run *run, const char *path)
{
    BdrvCheckResult res;
    BlockBackend *blk;

    blk = qt_open(path, BDRV_O_RDWR | BDRV_O_CHECK);
    g_assert_cmpint(bdrv_check(blk_bs(blk), &res,
                               BDRV_FIX_LEAKS | BDRV_FIX_ERRORS), ==, 0);
    /*
     * A killed process loses no completed write(2), and Sluice orders
     * its metadata (data before the L2 entry, a table before its L1
     * entry, the need-check bit before both): nothing to repair.
     */
    g_assert_cmpint(res.corruptions_fixed, ==, 0);
    g_assert_cmpint(res.corruptions, ==, 0);
    run->repaired += res.corruptions_fixed;
    g_assert_cmpint(bdrv_check(blk_bs(blk), &res, 0), ==, 0);
    g_assert_cmpint(res.corruptions, ==, 0);
    g_assert_cmpint(res.check_errors, ==, 0);
    run->leaks = res.leaks;
    blk_unref(blk);
}

static void run_verify(Run *run, const char *path)
{
    g_autofree uint8_t *image = g_malloc(IMAGE_SIZE);
    g_autofree uint32_t *where = g_new(uint32_t, NBLOCKS);
    uint8_t expect[BLOCK];
    BlockBackend *blk;
    uint32_t i;

    blk = qt_open(path, 0);
    g_assert_cmpint(blk_pread(blk, 0, IMAGE_SIZE, image, 0), ==, 0);
    blk_unref(blk);

    for (i = 0; i < NBLOCKS; i++) {
        where[run->perm[i]] = i;
    }
    for (i = 0; i < NBLOCKS; i++) {
        uint32_t idx = where[i];
        uint8_t *got = image + (uint64_t)i * BLOCK;
        int s;

        block_pattern(i, expect);
        if (run->durable[idx]) {
            if (memcmp(got, expect, BLOCK)) {
                g_error("block %u (write %u) was flushed but did not "
                        "survive", i, idx);
            }
            run->durable_checked++;
        } else if (!run->submitted[idx]) {
            g_assert_true(all_zero(got, BLOCK));
        } else {
            for (s = 0; s < BLOCK; s += BDRV_SECTOR_SIZE) {
                if (memcmp(got + s, expect + s, BDRV_SECTOR_SIZE) &&
                    !all_zero(got + s, BDRV_SECTOR_SIZE)) {
                    g_error("block %u sector %d is neither old nor new", i,
                            s / BDRV_SECTOR_SIZE);
                }
            }
        }
    }
}

static void test_crash(void)
{
    int iterations = g_test_slow() ? 200 : 20;
    g_autofree char *path = qt_path("crash.qed");
    GRand *r = g_rand_new_with_seed(g_test_rand_int());
    Run run = { 0 };
    unsigned int images = 0;
    int it;

    run.partial = g_string_new(NULL);
    for (it = 0; it < iterations; it++) {
        /* A fresh image when the last one is nearly full. */
        if (!run.perm || run.next > NBLOCKS - NBLOCKS / 8) {
            if (run.perm && qt_have_qemu_img()) {
                int rc = qt_qemu_img("check", path);

                /* Leaks are allowed after crashes; nothing else. */
                g_assert_true(rc == 0 || rc == 3);
            }
            g_free(run.perm);
            g_free(run.submitted);
            g_free(run.completed);
            g_free(run.snapshot);
            g_free(run.durable);
            run.seed = g_rand_int(r);
            run.perm = block_order(run.seed);
            run.submitted = g_malloc0(NBLOCKS);
            run.completed = g_malloc0(NBLOCKS);
            run.snapshot = g_malloc0(NBLOCKS);
            run.durable = g_malloc0(NBLOCKS);
            run.next = 0;
            unlink(path);
            g_assert_cmpint(qt_create(path, IMAGE_SIZE,
                                      images % 2 ? "cluster_size=4096,"
                                      "table_size=2" : NULL), ==, 0);
            images++;
        }
        run_writer(&run, path, r);
        run_repair(&run, path);
        run_verify(&run, path);
    }
    if (qt_have_qemu_img()) {
        int rc = qt_qemu_img("check", path);

        g_assert_true(rc == 0 || rc == 3);
    }
    g_test_message("%d runs, %u kills (%u during open, %u with the image "
                   "clean), %u images, "
                   "%u corruptions repaired, %" PRIu64 " flushed blocks "
                   "verified, %u leaked clusters at the end", iterations,
                   run.kills, run.open_kills, run.clean_kills, images,
                   run.repaired,
                   run.durable_checked, run.leaks);
    g_assert_cmpuint(run.kills, >, 0);
    g_string_free(run.partial, true);
    g_free(run.perm);
    g_free(run.submitted);
    g_free(run.completed);
    g_free(run.snapshot);
    g_free(run.durable);
    g_rand_free(r);
}

int main(int argc, char **argv)
{
    int ret;

    if (argc == 8 && !strcmp(argv[1], "--writer")) {
        return writer_main(argv);
    }
    g_test_init(&argc, &argv, NULL);
    qt_init();
    g_test_add_func("/qed-crash/sigkill", test_crash);
    ret = g_test_run();
    qt_cleanup();
    return ret;
}
