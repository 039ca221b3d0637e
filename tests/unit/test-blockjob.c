/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Block jobs and drain: a drained section over the job's main node, its
 * other node or a child of them pauses the job before begin returns, and
 * the end resumes it; drain_all pauses every job; the job's completion
 * waits until every node left its drained section; a run that fails
 * while drained; all of it again with the nodes in an iothread, and jobs
 * following their nodes to another context.  Also rate limits, the stop
 * error policy, cancel, and the QMP forms of queries and events.
 *
 * Copyright (c) 2026 The Sluice authors
 */
#include "qemu/osdep.h"

#include "block/aio-wait.h"
#include "block/blockjob.h"
#include "qemu/iothread.h"
#include "qemu/keyval.h"
#include "qemu/main-loop.h"

/* ---- A block job that reads (and maybe writes) its main node ---- */

typedef struct TestBlockJob {
    BlockJob common;
    BdrvChild *other;           /* the second edge, if any */
    BlockdevOnError on_error;
    /* Set by the test: atomics. */
    bool stop;
    bool write;                 /* write after each read */
    bool write_when_drained;    /* ...but only while drained */
    uint64_t account;           /* bytes to account to the rate limit */
    int64_t sleep_ns;           /* sleep after each iteration */
    /* Observed: atomics. */
    int iterations;
    int errors;
    AioContext *ran_in;
    /* Observed in the main thread. */
    int prepared, aborted, cleaned;
    bool drained_at_prepare;
    bool drained_at_clean;
} TestBlockJob;

static int coroutine_fn test_run(Job *job, GError **errp)
{
    TestBlockJob *s = container_of(job, TestBlockJob, common.job);
    BdrvChild *child = block_job_main_child(&s->common);
    uint8_t buf[4096];
    QEMUIOVector qiov;
    int ret;

    qemu_iovec_init_buf(&qiov, buf, sizeof(buf));
    while (!qatomic_read(&s->stop) && !job_is_cancelled(job)) {
        block_job_ratelimit_sleep(&s->common);
        if (job_is_cancelled(job)) {
            break;
        }
        qatomic_set(&s->ran_in, qemu_get_current_aio_context());

        bdrv_graph_co_rdlock();
        ret = bdrv_co_preadv(child, 0, sizeof(buf), &qiov, 0);
        if (ret == 0 && (qatomic_read(&s->write) ||
                         (qatomic_read(&s->write_when_drained) &&
                          aio_context_is_drained(
                              qemu_get_current_aio_context())))) {
            ret = bdrv_co_pwritev(child, 0, sizeof(buf), &qiov, 0);
        }
        bdrv_graph_co_rdunlock();

        if (ret < 0) {
            qatomic_inc(&s->errors);
            if (block_job_error_action(&s->common, s->on_error, false,
                                       -ret) != BLOCK_ERROR_ACTION_STOP) {
                return ret;
            }
            continue;
        }
        block_job_ratelimit_processed_bytes(&s->common,
                                            qatomic_read(&s->account));
        qatomic_inc(&s->iterations);
        if (qatomic_read(&s->sleep_ns)) {
            job_sleep_ns(job, qatomic_read(&s->sleep_ns));
        }
    }
    return 0;
}

/* Whether any context the job's nodes live in is drained. */
static bool test_job_nodes_drained(TestBlockJob *s)
{
    BdrvChild *main_child = block_job_main_child(&s->common);

    return aio_context_is_drained(bdrv_get_aio_context(main_child->bs)) ||
           (s->other &&
            aio_context_is_drained(bdrv_get_aio_context(s->other->bs)));
}

static int test_prepare(Job *job)
{
    TestBlockJob *s = container_of(job, TestBlockJob, common.job);

    s->prepared++;
    s->drained_at_prepare = test_job_nodes_drained(s);
    return 0;
}

static void test_abort(Job *job)
{
    container_of(job, TestBlockJob, common.job)->aborted++;
}

static void test_clean(Job *job)
{
    TestBlockJob *s = container_of(job, TestBlockJob, common.job);

    s->cleaned++;
    s->drained_at_clean = test_job_nodes_drained(s);
}

static const BlockJobDriver test_block_job_driver = {
    .job_driver = {
        .instance_size = sizeof(TestBlockJob),
        .job_type = JOB_TYPE_BACKUP,
        .run = test_run,
        .prepare = test_prepare,
        .abort = test_abort,
        .clean = test_clean,
        .free = block_job_free,
        .set_speed = block_job_change_speed,
        .user_resume = block_job_user_resume,
    },
};

/* ---- Nodes ---- */

static BlockDriverState *open_node(const char *keyval)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonObject) o = keyval_parse(keyval, NULL, &err);
    BlockDriverState *bs;

    g_assert_no_error(err);
    bs = bdrv_open_options(o, BDRV_O_RDWR, &err);
    g_assert_no_error(err);
    g_assert_nonnull(bs);
    return bs;
}

/* raw over null-co: a node with a child, reads held @latency_ms. */
static BlockDriverState *open_raw_null(const char *name, int latency_ms)
{
    g_autofree char *kv = g_strdup_printf(
        "driver=raw,node-name=%s,file.driver=null-co,"
        "file.node-name=%s-file,file.size=1M,file.read-zeroes=on,"
        "file.latency-ns=%" PRId64, name, name,
        (int64_t)latency_ms * SCALE_MS);

    return open_node(kv);
}

static void move_to(BlockDriverState *bs, AioContext *ctx)
{
    g_autoptr(GError) err = NULL;

    g_assert_cmpint(bdrv_try_change_aio_context(bs, ctx, &err), ==, 0);
    g_assert_no_error(err);
}

static TestBlockJob *create_job(const char *id, BlockDriverState *bs,
                                BlockDriverState *other, int flags)
{
    g_autoptr(GError) err = NULL;
    TestBlockJob *s;

    s = block_job_create(id, &test_block_job_driver, NULL, bs,
                         BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE,
                         BLK_PERM_ALL, 0, flags, NULL, NULL, &err);
    g_assert_no_error(err);
    g_assert_nonnull(s);
    if (other) {
        s->other = block_job_add_bdrv(&s->common, "other", other,
                                      BLK_PERM_CONSISTENT_READ,
                                      BLK_PERM_ALL, &err);
        g_assert_no_error(err);
    }
    job_ref(&s->common.job);
    return s;
}

#define WAIT_FOR(cond) do {                                             \
        int64_t deadline_ = g_get_monotonic_time() + 10 * G_USEC_PER_SEC; \
        while (!(cond)) {                                               \
            g_assert_cmpint(g_get_monotonic_time(), <, deadline_);      \
            aio_poll(qemu_get_aio_context(), false);                    \
            g_usleep(100);                                              \
        }                                                               \
    } while (0)

static void spin(int n)
{
    while (n--) {
        aio_poll(qemu_get_aio_context(), false);
        g_usleep(500);
    }
}

/* The job makes progress: @n more iterations. */
static void wait_progress(TestBlockJob *s, int n)
{
    int start = qatomic_read(&s->iterations);

    WAIT_FOR(qatomic_read(&s->iterations) >= start + n);
}

/* The job makes none while we watch. */
static void assert_frozen(TestBlockJob *s)
{
    int n = qatomic_read(&s->iterations);

    spin(20);
    g_assert_cmpint(qatomic_read(&s->iterations), ==, n);
}

/* The job is parked, which a drain guarantees when begin returns. */
static void assert_parked(TestBlockJob *s)
{
    g_assert_true(job_is_paused(&s->common.job));
    g_assert_cmpint(job_get_status(&s->common.job), ==, JOB_STATUS_PAUSED);
    g_assert_false(job_drain_busy(&s->common.job));
}

/* The job's run returned. */
static bool run_over(TestBlockJob *s)
{
    bool over;

    job_lock();
    over = s->common.job.deferred_to_main_loop;
    job_unlock();
    return over;
}

static void finish(TestBlockJob *s)
{
    qatomic_set(&s->stop, true);
    job_enter(&s->common.job);
    WAIT_FOR(job_is_concluded(&s->common.job));
    g_assert_cmpint(s->cleaned, ==, 1);
    job_unref(&s->common.job);
}

/* ---- Drain pauses the job ---- */

/* Drain @drained while a job on @main (and @other) runs. */
static void check_drain_pauses(BlockDriverState *main_bs,
                               BlockDriverState *other,
                               BlockDriverState *drained)
{
    TestBlockJob *s = create_job("drainee", main_bs, other, 0);

    job_start(&s->common.job);
    wait_progress(s, 2);

    bdrv_drained_begin(drained);
    assert_parked(s);
    g_assert_cmpuint(qatomic_read(&main_bs->in_flight), ==, 0);
    assert_frozen(s);

    /* Sections nest: the job moves only after the last end. */
    bdrv_drained_begin(drained);
    bdrv_drained_end(drained);
    assert_parked(s);
    assert_frozen(s);

    bdrv_drained_end(drained);
    wait_progress(s, 2);
    g_assert_cmpint(job_get_status(&s->common.job), ==, JOB_STATUS_RUNNING);

    /*
     * A job asleep does no I/O, but it would wake up and do some: begin
     * wakes it and waits until it parked.
     */
    qatomic_set(&s->sleep_ns, 10 * NANOSECONDS_PER_SECOND);
    wait_progress(s, 1);
    WAIT_FOR(!job_is_busy(&s->common.job));
    bdrv_drained_begin(drained);
    assert_parked(s);
    bdrv_drained_end(drained);
    qatomic_set(&s->sleep_ns, 0);
    job_enter(&s->common.job);
    wait_progress(s, 2);
    finish(s);
}

static void test_drain_main_node(void)
{
    BlockDriverState *bs = open_raw_null("src", 1);

    check_drain_pauses(bs, NULL, bs);
    bdrv_unref(bs);
}

static void test_drain_other_node(void)
{
    BlockDriverState *bs = open_raw_null("src", 1);
    BlockDriverState *target = open_raw_null("tgt", 0);

    check_drain_pauses(bs, target, target);
    bdrv_unref(bs);
    bdrv_unref(target);
}

static void test_drain_child(void)
{
    BlockDriverState *bs = open_raw_null("src", 1);

    check_drain_pauses(bs, NULL, bs->file->bs);
    bdrv_unref(bs);
}

static void test_drain_iothread(void)
{
    IOThread *t = iothread_create("bj", NULL);
    AioContext *io_ctx = iothread_get_aio_context(t);
    BlockDriverState *bs = open_raw_null("src", 1);
    BlockDriverState *target = open_raw_null("tgt", 0);

    move_to(bs, io_ctx);
    move_to(target, io_ctx);
    check_drain_pauses(bs, target, bs);
    check_drain_pauses(bs, target, target);
    check_drain_pauses(bs, target, bs->file->bs);
    move_to(bs, qemu_get_aio_context());
    move_to(target, qemu_get_aio_context());
    bdrv_unref(bs);
    bdrv_unref(target);
    iothread_destroy(t);
}

static void test_drain_all(void)
{
    IOThread *t = iothread_create("bj-all", NULL);
    BlockDriverState *a = open_raw_null("a", 1);
    BlockDriverState *b = open_raw_null("b", 1);
    TestBlockJob *ja, *jb;

    move_to(b, iothread_get_aio_context(t));
    ja = create_job("ja", a, NULL, 0);
    jb = create_job("jb", b, NULL, 0);
    job_start(&ja->common.job);
    job_start(&jb->common.job);
    wait_progress(ja, 2);
    wait_progress(jb, 2);
    g_assert_true(qatomic_read(&jb->ran_in) ==
                  iothread_get_aio_context(t));

    bdrv_drain_all_begin();
    assert_parked(ja);
    assert_parked(jb);
    assert_frozen(ja);
    assert_frozen(jb);
    bdrv_drain_all_end();
    wait_progress(ja, 2);
    wait_progress(jb, 2);

    finish(ja);
    finish(jb);
    move_to(b, qemu_get_aio_context());
    bdrv_unref(a);
    bdrv_unref(b);
    iothread_destroy(t);
}

/* A job created (or started) inside a drained section waits in it. */
static void test_start_while_drained(void)
{
    BlockDriverState *bs = open_raw_null("src", 0);
    TestBlockJob *s;

    bdrv_drained_begin(bs);
    s = create_job("late", bs, NULL, 0);
    job_start(&s->common.job);
    spin(10);
    assert_parked(s);
    g_assert_cmpint(qatomic_read(&s->iterations), ==, 0);
    bdrv_drained_end(bs);
    wait_progress(s, 1);
    finish(s);
    bdrv_unref(bs);
}

/* ---- Completion and drained sections ---- */

/*
 * The run ends while the job's nodes, in @ctx_a and @ctx_b, are drained:
 * the completion (prepare, the events) waits until both sections ended,
 * whichever ends last.
 */
static void check_completion_after_sections(AioContext *ctx_b,
                                            bool end_a_first)
{
    BlockDriverState *a = open_raw_null("a", 0);
    BlockDriverState *b = open_raw_null("b", 0);
    BlockDriverState *first, *second;
    TestBlockJob *s;

    move_to(b, ctx_b);
    s = create_job("late-end", a, b, 0);
    job_start(&s->common.job);
    wait_progress(s, 1);

    bdrv_drained_begin(a);
    bdrv_drained_begin(b);
    assert_parked(s);
    /* Told to stop, it would end at once if it could move. */
    qatomic_set(&s->stop, true);

    first = end_a_first ? a : b;
    second = end_a_first ? b : a;
    bdrv_drained_end(first);
    spin(20);
    assert_parked(s);
    g_assert_cmpint(s->prepared, ==, 0);

    /* The last end resumes it; it finishes in the main loop, undrained. */
    bdrv_drained_end(second);
    WAIT_FOR(job_is_concluded(&s->common.job));
    g_assert_cmpint(s->prepared, ==, 1);
    g_assert_false(s->drained_at_prepare);
    g_assert_false(s->drained_at_clean);
    job_unref(&s->common.job);
    move_to(b, qemu_get_aio_context());
    bdrv_unref(a);
    bdrv_unref(b);
}

static void test_completion_waits_for_every_section(void)
{
    IOThread *t = iothread_create("bj-two", NULL);

    check_completion_after_sections(qemu_get_aio_context(), true);
    check_completion_after_sections(iothread_get_aio_context(t), true);
    check_completion_after_sections(iothread_get_aio_context(t), false);
    iothread_destroy(t);
}

/*
 * A cancelled job ends its run while drained (it stops at once, without
 * I/O); its completion still waits for the end of the section.
 */
static void check_cancel_while_drained(AioContext *ctx)
{
    BlockDriverState *bs = open_raw_null("src", 1);
    TestBlockJob *s;

    move_to(bs, ctx);
    s = create_job("cwd", bs, NULL, 0);
    job_start(&s->common.job);
    wait_progress(s, 1);

    bdrv_drained_begin(bs);
    assert_parked(s);
    job_cancel(&s->common.job, true);
    /* Its run ends, but nothing of the completion runs yet. */
    WAIT_FOR(run_over(s));
    spin(20);
    g_assert_false(job_is_completed(&s->common.job));
    g_assert_cmpint(s->aborted, ==, 0);
    g_assert_cmpint(s->cleaned, ==, 0);
    g_assert_cmpuint(qatomic_read(&bs->in_flight), ==, 0);

    bdrv_drained_end(bs);
    WAIT_FOR(job_is_concluded(&s->common.job));
    g_assert_cmpint(s->aborted, ==, 1);
    g_assert_false(s->drained_at_clean);
    job_unref(&s->common.job);
    move_to(bs, qemu_get_aio_context());
    bdrv_unref(bs);
}

static void test_cancel_while_drained(void)
{
    IOThread *t = iothread_create("bj-cancel", NULL);

    check_cancel_while_drained(qemu_get_aio_context());
    check_cancel_while_drained(iothread_get_aio_context(t));
    iothread_destroy(t);
}

/*
 * The drain waits for the job's read in flight; the job then issues a
 * write (it may: a drain waits for whatever is in progress), which fails,
 * and the run ends with the error while drained.  The failure is handled
 * only after the section ends.
 */
static void check_run_fails_while_drained(AioContext *ctx)
{
    BlockDriverState *bs = open_node(
        "driver=blkdebug,node-name=dbg,image.driver=null-co,"
        "image.size=1M,image.read-zeroes=on,image.latency-ns=20000000,"
        "inject-error.0.event=pwritev,inject-error.0.errno=5");
    g_autoptr(GError) err = NULL;
    TestBlockJob *s;

    move_to(bs, ctx);
    s = create_job("fails", bs, NULL, 0);
    s->write_when_drained = true;
    job_start(&s->common.job);
    wait_progress(s, 1);
    /* Drain while the job waits for its read. */
    WAIT_FOR(qatomic_read(&bs->file->bs->in_flight) > 0);

    bdrv_drained_begin(bs);
    /* Begin returned: the run is over, and it failed. */
    g_assert_true(run_over(s));
    g_assert_false(job_drain_busy(&s->common.job));
    g_assert_cmpint(qatomic_read(&s->errors), ==, 1);
    spin(20);
    g_assert_false(job_is_completed(&s->common.job));
    g_assert_cmpint(s->aborted, ==, 0);
    g_assert_cmpint(s->cleaned, ==, 0);

    bdrv_drained_end(bs);
    g_assert_cmpint(job_finish_sync(&s->common.job, NULL, &err), ==, -EIO);
    g_assert_cmpstr(err->message, ==, g_strerror(EIO));
    g_assert_cmpint(s->aborted, ==, 1);
    g_assert_false(s->drained_at_clean);
    job_unref(&s->common.job);
    move_to(bs, qemu_get_aio_context());
    bdrv_unref(bs);
}

static void test_run_fails_while_drained(void)
{
    IOThread *t = iothread_create("bj-fail", NULL);

    check_run_fails_while_drained(qemu_get_aio_context());
    check_run_fails_while_drained(iothread_get_aio_context(t));
    iothread_destroy(t);
}

/* ---- Contexts ---- */

static void test_job_follows_nodes(void)
{
    IOThread *t = iothread_create("bj-move", NULL);
    AioContext *io_ctx = iothread_get_aio_context(t);
    BlockDriverState *bs = open_raw_null("src", 1);
    TestBlockJob *s = create_job("mover", bs, NULL, 0);

    job_start(&s->common.job);
    wait_progress(s, 2);
    g_assert_true(qatomic_read(&s->ran_in) == qemu_get_aio_context());

    move_to(bs, io_ctx);
    g_assert_true(job_get_aio_context(&s->common.job) == io_ctx);
    qatomic_set(&s->ran_in, NULL);
    wait_progress(s, 2);
    g_assert_true(qatomic_read(&s->ran_in) == io_ctx);

    /* Its drain handler moved along: the new context's drain pauses it. */
    bdrv_drained_begin(bs);
    assert_parked(s);
    assert_frozen(s);
    bdrv_drained_end(bs);
    wait_progress(s, 2);

    /* Paused by the user, it moves back and resumes there. */
    g_assert_true(job_user_pause(&s->common.job, NULL));
    WAIT_FOR(job_is_paused(&s->common.job));
    move_to(bs, qemu_get_aio_context());
    g_assert_true(job_is_paused(&s->common.job));
    g_assert_true(job_user_resume(&s->common.job, NULL));
    qatomic_set(&s->ran_in, NULL);
    wait_progress(s, 2);
    g_assert_true(qatomic_read(&s->ran_in) == qemu_get_aio_context());

    /* Drained in the new context, too. */
    bdrv_drained_begin(bs->file->bs);
    assert_parked(s);
    bdrv_drained_end(bs->file->bs);
    finish(s);
    bdrv_unref(bs);
    iothread_destroy(t);
}

/* ---- Rate limit, errors, permissions, queries ---- */

static void test_rate_limit(void)
{
    BlockDriverState *bs = open_raw_null("src", 0);
    TestBlockJob *s = create_job("slow", bs, NULL, 0);
    g_autoptr(GError) err = NULL;
    int64_t t0;
    int n;

    g_assert_false(block_job_set_speed(&s->common, -5, &err));
    g_assert_cmpstr(err->message, ==, "Invalid parameter 'speed'");
    g_clear_error(&err);

    /* 64 KiB per iteration at 1 MiB/s: 16 iterations a second. */
    s->account = 64 * 1024;
    g_assert_true(block_job_set_speed(&s->common, 1024 * 1024, NULL));
    t0 = g_get_monotonic_time();
    job_start(&s->common.job);
    while (g_get_monotonic_time() - t0 < G_USEC_PER_SEC / 2) {
        spin(1);
    }
    n = qatomic_read(&s->iterations);
    /* A slice's quota (1.6 iterations) comes at once, then 16/s. */
    g_assert_cmpint(n, >=, 3);
    g_assert_cmpint(n, <=, 14);

    /* Lifting the limit wakes the sleeping job. */
    g_assert_true(block_job_set_speed(&s->common, 0, NULL));
    wait_progress(s, 200);
    finish(s);
    bdrv_unref(bs);
}

static GPtrArray *qmp_events;

static void record_qmp(const JobEvent *ev, void *opaque)
{
    const char *name = NULL;
    JsonObject *data = block_job_event_qmp(ev, &name);
    g_autoptr(JsonNode) node = NULL;
    g_autofree char *text = NULL;

    if (!data) {
        return;
    }
    node = json_node_init_object(json_node_alloc(), data);
    json_object_unref(data);
    text = json_to_string(node, FALSE);
    g_ptr_array_add(qmp_events, g_strdup_printf("%s %s", name, text));
}

static char *json_str(JsonObject *o)
{
    g_autoptr(JsonNode) node = json_node_init_object(json_node_alloc(), o);

    return json_to_string(node, FALSE);
}

static void test_error_stop_and_events(void)
{
    BlockDriverState *bs = open_node(
        "driver=blkdebug,node-name=dbg,image.driver=null-co,"
        "image.size=1M,image.read-zeroes=on,"
        "inject-error.0.event=pwritev,inject-error.0.errno=28,"
        "inject-error.0.once=on");
    JobEventListener *l;
    TestBlockJob *s;
    g_autofree char *q = NULL;
    guint i;

    qmp_events = g_ptr_array_new_with_free_func(g_free);
    l = job_add_event_listener(record_qmp, NULL);
    s = create_job("stopper", bs, NULL, 0);
    s->on_error = BLOCKDEV_ON_ERROR_ENOSPC;
    qatomic_set(&s->write, true);
    job_start(&s->common.job);

    /* ENOSPC under "enospc": the job stops as if the user paused it. */
    WAIT_FOR(job_is_paused(&s->common.job));
    g_assert_true(job_is_user_paused(&s->common.job));
    {
        g_autoptr(JsonObject) info = block_job_query(&s->common);

        q = json_str(info);
    }
    g_assert_cmpstr(q, ==,
                    "{\"type\":\"backup\",\"device\":\"stopper\","
                    "\"len\":0,\"offset\":0,\"busy\":false,"
                    "\"paused\":true,\"speed\":0,"
                    "\"io-status\":\"nospace\",\"ready\":false,"
                    "\"status\":\"paused\",\"auto-finalize\":true,"
                    "\"auto-dismiss\":true}");

    /* Resumed, it retries; the error was once only. */
    g_assert_true(job_user_resume(&s->common.job, NULL));
    wait_progress(s, 2);
    g_assert_cmpint(qatomic_read(&s->errors), ==, 1);
    qatomic_set(&s->stop, true);
    WAIT_FOR(job_is_concluded(&s->common.job));

    {
        static const char *const expected[] = {
            "JOB_STATUS_CHANGE {\"id\":\"stopper\",\"status\":\"created\"}",
            "JOB_STATUS_CHANGE {\"id\":\"stopper\",\"status\":\"running\"}",
            "BLOCK_JOB_ERROR {\"device\":\"stopper\","
            "\"operation\":\"write\",\"action\":\"stop\"}",
            "JOB_STATUS_CHANGE {\"id\":\"stopper\",\"status\":\"paused\"}",
            "JOB_STATUS_CHANGE {\"id\":\"stopper\",\"status\":\"running\"}",
            "JOB_STATUS_CHANGE {\"id\":\"stopper\",\"status\":\"waiting\"}",
            "JOB_STATUS_CHANGE {\"id\":\"stopper\",\"status\":\"pending\"}",
            "BLOCK_JOB_COMPLETED {\"type\":\"backup\","
            "\"device\":\"stopper\",\"len\":0,\"offset\":0,\"speed\":0}",
            "JOB_STATUS_CHANGE {\"id\":\"stopper\","
            "\"status\":\"concluded\"}",
            "JOB_STATUS_CHANGE {\"id\":\"stopper\",\"status\":\"null\"}",
        };

        g_assert_cmpuint(qmp_events->len, ==, G_N_ELEMENTS(expected));
        for (i = 0; i < G_N_ELEMENTS(expected); i++) {
            g_assert_cmpstr(g_ptr_array_index(qmp_events, i), ==,
                            expected[i]);
        }
    }
    job_unref(&s->common.job);
    job_remove_event_listener(l);
    g_ptr_array_unref(qmp_events);
    bdrv_unref(bs);
}

static void test_error_report(void)
{
    BlockDriverState *bs = open_node(
        "driver=blkdebug,node-name=dbg,image.driver=null-co,"
        "image.size=1M,image.read-zeroes=on,"
        "inject-error.0.event=pwritev,inject-error.0.errno=5");
    g_autoptr(GError) err = NULL;
    JobEventListener *l;
    TestBlockJob *s;

    qmp_events = g_ptr_array_new_with_free_func(g_free);
    l = job_add_event_listener(record_qmp, NULL);
    s = create_job("reporter", bs, NULL, 0);
    qatomic_set(&s->write, true);
    job_start(&s->common.job);
    g_assert_cmpint(job_finish_sync(&s->common.job, NULL, &err), ==, -EIO);
    g_assert_cmpstr(g_ptr_array_index(qmp_events, 2), ==,
                    "BLOCK_JOB_ERROR {\"device\":\"reporter\","
                    "\"operation\":\"write\",\"action\":\"report\"}");
    g_assert_cmpstr(g_ptr_array_index(qmp_events, 4), ==,
                    "BLOCK_JOB_COMPLETED {\"type\":\"backup\","
                    "\"device\":\"reporter\",\"len\":0,\"offset\":0,"
                    "\"speed\":0,\"error\":\"Input/output error\"}");
    job_unref(&s->common.job);
    job_remove_event_listener(l);
    g_ptr_array_unref(qmp_events);
    bdrv_unref(bs);
}

static void test_permissions(void)
{
    BlockDriverState *bs = open_raw_null("src", 0);
    g_autoptr(GError) err = NULL;
    TestBlockJob *s;
    void *other;

    /* A job that lets nobody else write... */
    s = block_job_create("excl", &test_block_job_driver, NULL, bs,
                         BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE,
                         BLK_PERM_CONSISTENT_READ, 0, 0, NULL, NULL, &err);
    g_assert_no_error(err);
    /* ...keeps a second writer out, with the core's message. */
    other = block_job_create("intruder", &test_block_job_driver, NULL, bs,
                             BLK_PERM_WRITE, BLK_PERM_ALL, 0, 0, NULL, NULL,
                             &err);
    g_assert_null(other);
    g_assert_cmpstr(err->message, ==,
                    "Conflicts with use by backup job 'excl' as "
                    "'main node', which does not allow 'write' on src");
    g_assert_null(job_get("intruder"));
    g_assert_true(block_job_has_bdrv(&s->common, bs));
    job_cancel(&s->common.job, true);
    g_assert_null(job_get("excl"));
    bdrv_unref(bs);
}

static void test_cancel_created_block_job(void)
{
    BlockDriverState *bs = open_raw_null("src", 0);
    TestBlockJob *s = create_job("never", bs, NULL, 0);

    g_assert_cmpint(bs->refcnt, ==, 2);
    g_assert_true(job_user_cancel(&s->common.job, false, NULL));
    g_assert_cmpint(job_get_status(&s->common.job), ==, JOB_STATUS_NULL);
    g_assert_cmpint(s->aborted, ==, 1);
    job_unref(&s->common.job);
    /* The job's edge and its drain handler went with it. */
    g_assert_cmpint(bs->refcnt, ==, 1);
    bdrv_drained_begin(bs);
    bdrv_drained_end(bs);
    bdrv_unref(bs);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_assert_true(qemu_init_main_loop(NULL));

    g_test_add_func("/blockjob/drain/main-node", test_drain_main_node);
    g_test_add_func("/blockjob/drain/other-node", test_drain_other_node);
    g_test_add_func("/blockjob/drain/child", test_drain_child);
    g_test_add_func("/blockjob/drain/iothread", test_drain_iothread);
    g_test_add_func("/blockjob/drain/all", test_drain_all);
    g_test_add_func("/blockjob/drain/start-while-drained",
                    test_start_while_drained);
    g_test_add_func("/blockjob/drain/completion-waits-for-every-section",
                    test_completion_waits_for_every_section);
    g_test_add_func("/blockjob/drain/cancel-while-drained",
                    test_cancel_while_drained);
    g_test_add_func("/blockjob/drain/run-fails-while-drained",
                    test_run_fails_while_drained);
    g_test_add_func("/blockjob/follows-nodes", test_job_follows_nodes);
    g_test_add_func("/blockjob/rate-limit", test_rate_limit);
    g_test_add_func("/blockjob/error-stop-and-events",
                    test_error_stop_and_events);
    g_test_add_func("/blockjob/error-report", test_error_report);
    g_test_add_func("/blockjob/permissions", test_permissions);
    g_test_add_func("/blockjob/cancel-created", test_cancel_created_block_job);
    return g_test_run();
}
