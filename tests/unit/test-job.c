/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The job state machine without block nodes: ids, verbs per status,
 * the life cycle with its events, pause points and nested pauses,
 * ready/standby/complete, cancel from every status, transactions,
 * speed, and waiting for jobs.
 *
 * Copyright (c) 2026 The Sluice authors
 */
#include "qemu/osdep.h"

#include "block/aio-wait.h"
#include "qemu/job.h"
#include "qemu/main-loop.h"

/* ---- A job to drive ---- */

typedef enum TestMode {
    MODE_LOOP,          /* pause points until told to stop */
    MODE_SLEEP,         /* long job_sleep_ns() until told to stop */
    MODE_READY,         /* ready, then job_yield() until complete */
    MODE_STUBBORN,      /* ignores cancel while told to keep going */
} TestMode;

typedef struct TestJob {
    Job job;
    TestMode mode;
    /* Set by the test (main thread), read by the job: atomics. */
    bool stop;
    bool should_complete;
    int ret;                    /* what run returns when it stops */
    const char *message;        /* its error message, if any */
    bool soft_cancel;           /* .cancel makes non-forced cancels soft */
    /* Observed. */
    int iterations;
    int prepared, committed, aborted, cleaned;
    int64_t speed;
} TestJob;

static int coroutine_fn test_job_run(Job *job, GError **errp)
{
    TestJob *s = container_of(job, TestJob, job);

    switch (s->mode) {
    case MODE_READY:
        job_transition_to_ready(job);
        while (!qatomic_read(&s->should_complete) &&
               !job_cancel_requested(job)) {
            qatomic_inc(&s->iterations);
            job_yield(job);
        }
        break;
    case MODE_STUBBORN:
        while (!qatomic_read(&s->stop)) {
            qatomic_inc(&s->iterations);
            qemu_co_sleep_ns(QEMU_CLOCK_REALTIME, SCALE_MS);
        }
        break;
    default:
        while (!qatomic_read(&s->stop) && !job_is_cancelled(job)) {
            qatomic_inc(&s->iterations);
            if (s->mode == MODE_SLEEP) {
                job_sleep_ns(job, 10 * NANOSECONDS_PER_SECOND);
            } else {
                job_sleep_ns(job, 0);
            }
        }
        break;
    }
    if (s->ret < 0 && s->message) {
        error_setg(errp, "%s", s->message);
    }
    return s->ret;
}

static void test_job_complete(Job *job, GError **errp)
{
    TestJob *s = container_of(job, TestJob, job);

    qatomic_set(&s->should_complete, true);
    job_enter(job);
}

static bool test_job_cancel(Job *job, bool force)
{
    TestJob *s = container_of(job, TestJob, job);

    return force || !s->soft_cancel;
}

static int test_job_prepare(Job *job)
{
    container_of(job, TestJob, job)->prepared++;
    return 0;
}

static void test_job_commit(Job *job)
{
    container_of(job, TestJob, job)->committed++;
}

static void test_job_abort(Job *job)
{
    container_of(job, TestJob, job)->aborted++;
}

static void test_job_clean(Job *job)
{
    container_of(job, TestJob, job)->cleaned++;
}

static void test_job_set_speed(Job *job, int64_t speed)
{
    container_of(job, TestJob, job)->speed = speed;
}

static const JobDriver test_job_driver = {
    .instance_size = sizeof(TestJob),
    .job_type = JOB_TYPE_BACKUP,
    .run = test_job_run,
    .complete = test_job_complete,
    .cancel = test_job_cancel,
    .prepare = test_job_prepare,
    .commit = test_job_commit,
    .abort = test_job_abort,
    .clean = test_job_clean,
    .set_speed = test_job_set_speed,
};

/* ---- Recording events ---- */

static GString *events;

static void record_event(const JobEvent *ev, void *opaque)
{
    static const char *const kinds[] = {
        [JOB_EVENT_STATUS_CHANGE] = "status",
        [JOB_EVENT_READY] = "READY",
        [JOB_EVENT_PENDING] = "PENDING",
        [JOB_EVENT_COMPLETED] = "COMPLETED",
        [JOB_EVENT_CANCELLED] = "CANCELLED",
        [JOB_EVENT_ERROR] = "ERROR",
    };

    if (events->len) {
        g_string_append_c(events, ' ');
    }
    if (ev->kind == JOB_EVENT_STATUS_CHANGE) {
        g_string_append_printf(events, "%s:%s", job_id(ev->job),
                               job_status_str(ev->status));
    } else if (ev->kind == JOB_EVENT_COMPLETED &&
               job_error_message(ev->job)) {
        g_string_append_printf(events, "%s:COMPLETED(%s)", job_id(ev->job),
                               job_error_message(ev->job));
    } else {
        g_string_append_printf(events, "%s:%s", job_id(ev->job),
                               kinds[ev->kind]);
    }
}

/* The events so far, then forget them. */
static char *take_events(void)
{
    char *s = g_strdup(events->str);

    g_string_truncate(events, 0);
    return s;
}

static void forget_events(void)
{
    g_string_truncate(events, 0);
}

#define assert_events(expected) do {                \
        g_autofree char *got_ = take_events();      \
        g_assert_cmpstr(got_, ==, (expected));      \
    } while (0)

/* ---- Helpers ---- */

static TestJob *create(const char *id, TestMode mode, JobTxn *txn,
                       int flags)
{
    g_autoptr(GError) err = NULL;
    TestJob *s = job_create(id, &test_job_driver, txn,
                            qemu_get_aio_context(), flags, NULL, NULL,
                            &err);

    g_assert_no_error(err);
    g_assert_nonnull(s);
    s->mode = mode;
    /* The test keeps its own reference, so statuses stay readable. */
    job_ref(&s->job);
    return s;
}

/* Let the main loop run until @cond holds (or fail after 10 s). */
#define WAIT_FOR(cond) do {                                             \
        int64_t deadline_ = g_get_monotonic_time() + 10 * G_USEC_PER_SEC; \
        while (!(cond)) {                                               \
            g_assert_cmpint(g_get_monotonic_time(), <, deadline_);      \
            aio_poll(qemu_get_aio_context(), false);                    \
            g_usleep(100);                                              \
        }                                                               \
    } while (0)

/* Run the loop a bit: lets a job that could move move. */
static void spin(int n)
{
    while (n--) {
        aio_poll(qemu_get_aio_context(), false);
        g_usleep(200);
    }
}

static void finish(TestJob *s)
{
    qatomic_set(&s->stop, true);
    job_enter(&s->job);
    WAIT_FOR(job_is_concluded(&s->job));
}

static void verb_fails(Job *job, JobVerb verb, const char *expected)
{
    g_autoptr(GError) err = NULL;
    bool ok;

    switch (verb) {
    case JOB_VERB_CANCEL:
        ok = job_user_cancel(job, true, &err);
        break;
    case JOB_VERB_PAUSE:
        ok = job_user_pause(job, &err);
        break;
    case JOB_VERB_RESUME:
        ok = job_user_resume(job, &err);
        break;
    case JOB_VERB_SET_SPEED:
        ok = job_set_speed(job, 1, &err);
        break;
    case JOB_VERB_COMPLETE:
        ok = job_complete(job, &err);
        break;
    case JOB_VERB_DISMISS:
        ok = job_dismiss(job, &err);
        break;
    case JOB_VERB_FINALIZE:
        ok = job_finalize(job, &err);
        break;
    default:
        g_assert_not_reached();
    }
    g_assert_false(ok);
    g_assert_nonnull(err);
    g_assert_cmpstr(err->message, ==, expected);
}

static void verb_refused(Job *job, JobVerb verb)
{
    g_autofree char *msg = g_strdup_printf(
        "Job '%s' in state '%s' cannot accept command verb '%s'",
        job_id(job), job_status_str(job_get_status(job)),
        job_verb_str(verb));

    verb_fails(job, verb, msg);
}

/* ---- Tests ---- */

static void test_ids(void)
{
    static const char *const bad[] = { "", "1job", "-job", "a b", "a/b",
                                       "#block1", "ü" };
    g_autoptr(GError) err = NULL;
    TestJob *s;
    guint i;

    for (i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_autofree char *want = g_strdup_printf("Invalid job ID '%s'",
                                                bad[i]);

        g_assert_null(job_create(bad[i], &test_job_driver, NULL,
                                 qemu_get_aio_context(), 0, NULL, NULL,
                                 &err));
        g_assert_cmpstr(err->message, ==, want);
        g_clear_error(&err);
    }
    g_assert_null(job_create(NULL, &test_job_driver, NULL,
                             qemu_get_aio_context(), 0, NULL, NULL, &err));
    g_assert_cmpstr(err->message, ==, "An explicit job ID is required");
    g_clear_error(&err);
    g_assert_null(job_create("x", &test_job_driver, NULL,
                             qemu_get_aio_context(), JOB_INTERNAL, NULL,
                             NULL, &err));
    g_assert_cmpstr(err->message, ==,
                    "Cannot specify job ID for internal job");
    g_clear_error(&err);

    s = create("A-1.b_c", MODE_LOOP, NULL, 0);
    g_assert_true(job_get("A-1.b_c") == &s->job);
    g_assert_null(job_create("A-1.b_c", &test_job_driver, NULL,
                             qemu_get_aio_context(), 0, NULL, NULL, &err));
    g_assert_cmpstr(err->message, ==, "Job ID 'A-1.b_c' already in use");
    g_clear_error(&err);
    assert_events("A-1.b_c:created");

    /* A job that never ran: cancel takes it to null, no job events. */
    job_cancel(&s->job, false);
    assert_events("A-1.b_c:aborting A-1.b_c:concluded A-1.b_c:null");
    g_assert_null(job_get("A-1.b_c"));
    g_assert_cmpint(s->aborted, ==, 1);
    g_assert_cmpint(s->cleaned, ==, 1);
    job_unref(&s->job);
}

static void test_internal_jobs_are_invisible(void)
{
    g_autoptr(GError) err = NULL;
    TestJob *s = job_create(NULL, &test_job_driver, NULL,
                            qemu_get_aio_context(), JOB_INTERNAL, NULL,
                            NULL, &err);

    g_assert_no_error(err);
    g_assert_null(job_next(NULL));
    s->ret = 0;
    qatomic_set(&s->stop, true);
    job_start(&s->job);
    g_assert_cmpint(job_finish_sync(&s->job, NULL, &err), ==, 0);
    assert_events("");
}

static void test_success_events(void)
{
    g_autoptr(GError) err = NULL;
    TestJob *s = create("ok", MODE_LOOP, NULL, 0);

    job_start(&s->job);
    g_assert_cmpint(job_get_status(&s->job), ==, JOB_STATUS_RUNNING);
    spin(5);
    g_assert_cmpint(qatomic_read(&s->iterations), >, 1);
    finish(s);
    assert_events("ok:created ok:running ok:waiting ok:pending "
                  "ok:COMPLETED ok:concluded ok:null");
    g_assert_cmpint(s->prepared, ==, 1);
    g_assert_cmpint(s->committed, ==, 1);
    g_assert_cmpint(s->aborted, ==, 0);
    g_assert_cmpint(s->cleaned, ==, 1);
    g_assert_cmpint(job_get_status(&s->job), ==, JOB_STATUS_NULL);
    g_assert_null(job_get("ok"));
    job_unref(&s->job);
}

static void test_failure(void)
{
    g_autoptr(GError) err = NULL;
    TestJob *s = create("bad", MODE_LOOP, NULL, 0);

    s->ret = -EIO;
    s->message = "the disk is on fire";
    job_start(&s->job);
    qatomic_set(&s->stop, true);
    g_assert_cmpint(job_finish_sync(&s->job, NULL, &err), ==, -EIO);
    g_assert_cmpstr(err->message, ==, "the disk is on fire");
    assert_events("bad:created bad:running bad:aborting "
                  "bad:COMPLETED(the disk is on fire) bad:concluded "
                  "bad:null");
    g_assert_cmpint(s->prepared, ==, 0);
    g_assert_cmpint(s->aborted, ==, 1);
    g_assert_cmpint(s->committed, ==, 0);
    job_unref(&s->job);

    /* Without a message, strerror. */
    s = create("bad2", MODE_LOOP, NULL, JOB_MANUAL_DISMISS);
    s->ret = -ENOSPC;
    job_start(&s->job);
    qatomic_set(&s->stop, true);
    g_clear_error(&err);
    g_assert_cmpint(job_finish_sync(&s->job, NULL, &err), ==, -ENOSPC);
    g_assert_cmpstr(err->message, ==, g_strerror(ENOSPC));
    {
        g_autoptr(JsonObject) info = job_query_info(&s->job);

        g_assert_cmpstr(json_object_get_string_member(info, "status"), ==,
                        "concluded");
        g_assert_cmpstr(json_object_get_string_member(info, "error"), ==,
                        g_strerror(ENOSPC));
        g_assert_cmpstr(json_object_get_string_member(info, "type"), ==,
                        "backup");
    }
    g_assert_true(job_dismiss(&s->job, NULL));
    forget_events();
    job_unref(&s->job);
}

static void test_manual_finalize_and_dismiss(void)
{
    TestJob *s = create("man", MODE_LOOP, NULL,
                        JOB_MANUAL_FINALIZE | JOB_MANUAL_DISMISS);

    job_start(&s->job);
    verb_refused(&s->job, JOB_VERB_FINALIZE);
    verb_refused(&s->job, JOB_VERB_DISMISS);
    qatomic_set(&s->stop, true);
    WAIT_FOR(job_get_status(&s->job) == JOB_STATUS_PENDING);
    assert_events("man:created man:running man:waiting man:pending "
                  "man:PENDING");
    /* Graph changes (prepare) wait for finalize. */
    g_assert_cmpint(s->prepared, ==, 0);
    verb_refused(&s->job, JOB_VERB_PAUSE);
    verb_refused(&s->job, JOB_VERB_DISMISS);
    verb_refused(&s->job, JOB_VERB_COMPLETE);

    g_assert_true(job_finalize(&s->job, NULL));
    g_assert_cmpint(s->prepared, ==, 1);
    g_assert_cmpint(job_get_status(&s->job), ==, JOB_STATUS_CONCLUDED);
    assert_events("man:COMPLETED man:concluded");
    verb_refused(&s->job, JOB_VERB_CANCEL);
    verb_refused(&s->job, JOB_VERB_FINALIZE);
    g_assert_true(job_get("man") == &s->job);
    g_assert_true(job_dismiss(&s->job, NULL));
    assert_events("man:null");
    g_assert_null(job_get("man"));
    job_unref(&s->job);
}

static void test_user_pause_resume(void)
{
    TestJob *s = create("p", MODE_LOOP, NULL, 0);
    int n;

    /* Paused before it started: it parks at its first pause point. */
    g_assert_true(job_user_pause(&s->job, NULL));
    verb_fails(&s->job, JOB_VERB_PAUSE, "Job is already paused");
    job_start(&s->job);
    WAIT_FOR(job_get_status(&s->job) == JOB_STATUS_PAUSED);
    g_assert_cmpint(qatomic_read(&s->iterations), ==, 0);
    g_assert_false(job_is_busy(&s->job));

    g_assert_true(job_user_resume(&s->job, NULL));
    verb_fails(&s->job, JOB_VERB_RESUME,
               "Can't resume a job that was not paused");
    WAIT_FOR(qatomic_read(&s->iterations) > 2);

    /* Paused while running. */
    g_assert_true(job_user_pause(&s->job, NULL));
    WAIT_FOR(job_is_paused(&s->job));
    n = qatomic_read(&s->iterations);
    spin(20);
    g_assert_cmpint(qatomic_read(&s->iterations), ==, n);
    g_assert_true(job_user_resume(&s->job, NULL));
    WAIT_FOR(qatomic_read(&s->iterations) > n);
    finish(s);
    assert_events("p:created p:running p:paused p:running p:paused "
                  "p:running p:waiting p:pending p:COMPLETED p:concluded "
                  "p:null");
    job_unref(&s->job);
}

static void test_nested_pauses(void)
{
    TestJob *s = create("nest", MODE_LOOP, NULL, 0);
    int n;

    job_start(&s->job);
    g_assert_true(job_user_pause(&s->job, NULL));
    job_pause(&s->job);
    job_pause(&s->job);
    WAIT_FOR(job_is_paused(&s->job));
    g_assert_cmpint(job_get_pause_count(&s->job), ==, 3);

    /* Each request must go before the job moves again. */
    g_assert_true(job_user_resume(&s->job, NULL));
    job_resume(&s->job);
    n = qatomic_read(&s->iterations);
    spin(20);
    g_assert_true(job_is_paused(&s->job));
    g_assert_cmpint(qatomic_read(&s->iterations), ==, n);
    job_enter(&s->job);     /* a wake-up is no resume */
    spin(20);
    g_assert_true(job_is_paused(&s->job));
    g_assert_cmpint(qatomic_read(&s->iterations), ==, n);

    job_resume(&s->job);
    WAIT_FOR(qatomic_read(&s->iterations) > n);
    g_assert_cmpint(job_get_pause_count(&s->job), ==, 0);
    finish(s);
    forget_events();
    job_unref(&s->job);
}

static void test_pause_wakes_sleeper(void)
{
    TestJob *s = create("sleepy", MODE_SLEEP, NULL, 0);
    int64_t t0;

    job_start(&s->job);
    WAIT_FOR(!job_is_busy(&s->job));
    g_assert_cmpint(qatomic_read(&s->iterations), ==, 1);

    /* The 10 s sleep is cut short by the pause request. */
    t0 = g_get_monotonic_time();
    job_pause(&s->job);
    WAIT_FOR(job_is_paused(&s->job));
    g_assert_cmpint(g_get_monotonic_time() - t0, <, 5 * G_USEC_PER_SEC);
    g_assert_cmpint(job_get_status(&s->job), ==, JOB_STATUS_PAUSED);

    /* Resumed, it goes on (the sleep is over) and sleeps again. */
    job_resume(&s->job);
    WAIT_FOR(qatomic_read(&s->iterations) == 2 && !job_is_busy(&s->job));
    finish(s);
    forget_events();
    job_unref(&s->job);
}

static void test_ready_standby_complete(void)
{
    g_autoptr(GError) err = NULL;
    TestJob *s = create("rdy", MODE_READY, NULL, 0);

    verb_refused(&s->job, JOB_VERB_COMPLETE);
    job_start(&s->job);
    WAIT_FOR(job_get_status(&s->job) == JOB_STATUS_READY &&
             !job_is_busy(&s->job));
    g_assert_true(job_is_ready(&s->job));

    g_assert_true(job_user_pause(&s->job, NULL));
    WAIT_FOR(job_get_status(&s->job) == JOB_STATUS_STANDBY);
    g_assert_true(job_is_ready(&s->job));
    verb_refused(&s->job, JOB_VERB_COMPLETE);
    g_assert_true(job_user_resume(&s->job, NULL));
    WAIT_FOR(job_get_status(&s->job) == JOB_STATUS_READY &&
             !job_is_busy(&s->job));

    g_assert_cmpint(job_complete_sync(&s->job, &err), ==, 0);
    g_assert_no_error(err);
    assert_events("rdy:created rdy:running rdy:ready rdy:READY "
                  "rdy:standby rdy:ready rdy:waiting rdy:pending "
                  "rdy:COMPLETED rdy:concluded rdy:null");
    job_unref(&s->job);

    /* A job without "complete" cannot be completed even when ready. */
}

static void test_soft_cancel(void)
{
    TestJob *s = create("soft", MODE_READY, NULL, 0);

    s->soft_cancel = true;
    job_start(&s->job);
    WAIT_FOR(job_get_status(&s->job) == JOB_STATUS_READY);
    g_assert_true(job_user_cancel(&s->job, false, NULL));
    WAIT_FOR(job_is_concluded(&s->job));
    /* It ends well and says so: no cancelled event. */
    assert_events("soft:created soft:running soft:ready soft:READY "
                  "soft:waiting soft:pending soft:COMPLETED "
                  "soft:concluded soft:null");
    g_assert_cmpint(s->committed, ==, 1);
    job_unref(&s->job);

    /* A forced cancel of a ready job is a cancel. */
    s = create("hard", MODE_READY, NULL, 0);
    s->soft_cancel = true;
    job_start(&s->job);
    WAIT_FOR(job_get_status(&s->job) == JOB_STATUS_READY);
    g_assert_cmpint(job_cancel_sync(&s->job, true), ==, -ECANCELED);
    assert_events("hard:created hard:running hard:ready hard:READY "
                  "hard:aborting hard:CANCELLED hard:concluded hard:null");
    g_assert_cmpint(s->aborted, ==, 1);
    job_unref(&s->job);
}

/* Cancel a job that is in @status (reached by the caller). */
static void cancel_and_check(TestJob *s, const char *expected_events)
{
    g_assert_true(job_user_cancel(&s->job, true, NULL));
    WAIT_FOR(job_is_concluded(&s->job));
    assert_events(expected_events);
    g_assert_cmpint(s->aborted, ==, 1);
    g_assert_cmpint(s->committed, ==, 0);
    g_assert_cmpint(s->cleaned, ==, 1);
    g_assert_null(job_get(job_id(&s->job)));
    job_unref(&s->job);
}

static void test_cancel_every_status(void)
{
    TestJob *s, *t;

    /* created */
    s = create("c0", MODE_LOOP, NULL, 0);
    forget_events();
    cancel_and_check(s, "c0:aborting c0:concluded c0:null");

    /* running */
    s = create("c1", MODE_LOOP, NULL, 0);
    job_start(&s->job);
    spin(3);
    forget_events();
    cancel_and_check(s, "c1:aborting c1:CANCELLED c1:concluded c1:null");

    /* paused by the user: the cancel resumes it so it can end */
    s = create("c2", MODE_LOOP, NULL, 0);
    job_start(&s->job);
    job_user_pause(&s->job, NULL);
    WAIT_FOR(job_get_status(&s->job) == JOB_STATUS_PAUSED);
    forget_events();
    cancel_and_check(s, "c2:running c2:aborting c2:CANCELLED c2:concluded "
                     "c2:null");

    /* paused by the block layer (a drain): the same */
    s = create("c3", MODE_LOOP, NULL, 0);
    job_start(&s->job);
    job_pause(&s->job);
    WAIT_FOR(job_get_status(&s->job) == JOB_STATUS_PAUSED);
    forget_events();
    cancel_and_check(s, "c3:running c3:aborting c3:CANCELLED c3:concluded "
                     "c3:null");

    /* ready */
    s = create("c4", MODE_READY, NULL, 0);
    job_start(&s->job);
    WAIT_FOR(job_get_status(&s->job) == JOB_STATUS_READY);
    forget_events();
    cancel_and_check(s, "c4:aborting c4:CANCELLED c4:concluded c4:null");

    /* standby */
    s = create("c5", MODE_READY, NULL, 0);
    job_start(&s->job);
    WAIT_FOR(job_get_status(&s->job) == JOB_STATUS_READY);
    job_user_pause(&s->job, NULL);
    WAIT_FOR(job_get_status(&s->job) == JOB_STATUS_STANDBY);
    forget_events();
    cancel_and_check(s, "c5:ready c5:aborting c5:CANCELLED c5:concluded "
                     "c5:null");

    /* waiting: its transaction partner still runs, and is cancelled too */
    {
        JobTxn *txn = job_txn_new();

        s = create("c6", MODE_LOOP, txn, 0);
        t = create("c6b", MODE_LOOP, txn, 0);
        job_txn_unref(txn);
        job_start(&s->job);
        job_start(&t->job);
        qatomic_set(&s->stop, true);
        WAIT_FOR(job_get_status(&s->job) == JOB_STATUS_WAITING);
        forget_events();
        g_assert_true(job_user_cancel(&s->job, true, NULL));
        WAIT_FOR(job_is_concluded(&s->job) && job_is_concluded(&t->job));
        /* Finalized newest first, as QEMU's transactions do. */
        assert_events("c6:aborting c6b:aborting c6b:CANCELLED "
                      "c6b:concluded c6b:null c6:CANCELLED c6:concluded "
                      "c6:null");
        g_assert_cmpint(s->aborted, ==, 1);
        g_assert_cmpint(t->aborted, ==, 1);
        g_assert_cmpint(s->prepared + t->prepared, ==, 0);
        job_unref(&s->job);
        job_unref(&t->job);
    }

    /* pending */
    s = create("c7", MODE_LOOP, NULL, JOB_MANUAL_FINALIZE);
    job_start(&s->job);
    qatomic_set(&s->stop, true);
    WAIT_FOR(job_get_status(&s->job) == JOB_STATUS_PENDING);
    forget_events();
    cancel_and_check(s, "c7:aborting c7:CANCELLED c7:concluded c7:null");

    /* concluded: the verb is refused, but an internal cancel dismisses */
    s = create("c8", MODE_LOOP, NULL, JOB_MANUAL_DISMISS);
    job_start(&s->job);
    finish(s);
    forget_events();
    verb_refused(&s->job, JOB_VERB_CANCEL);
    job_cancel(&s->job, true);
    assert_events("c8:null");
    g_assert_null(job_get("c8"));
    job_unref(&s->job);

    /*
     * aborting: a failed job waits there for its partner, which takes
     * its time to notice that it is cancelled.
     */
    {
        JobTxn *txn = job_txn_new();

        s = create("c9", MODE_LOOP, txn, 0);
        t = create("c9b", MODE_STUBBORN, txn, 0);
        job_txn_unref(txn);
        s->ret = -EIO;
        job_start(&s->job);
        job_start(&t->job);
        qatomic_set(&s->stop, true);
        WAIT_FOR(job_get_status(&s->job) == JOB_STATUS_ABORTING);
        spin(10);
        g_assert_cmpint(job_get_status(&s->job), ==, JOB_STATUS_ABORTING);
        verb_refused(&s->job, JOB_VERB_CANCEL);
        verb_refused(&s->job, JOB_VERB_PAUSE);
        g_assert_true(job_cancel_requested(&t->job));
        qatomic_set(&t->stop, true);
        WAIT_FOR(job_is_concluded(&s->job) && job_is_concluded(&t->job));
        g_assert_cmpint(s->aborted, ==, 1);
        g_assert_cmpint(t->aborted, ==, 1);
        forget_events();
        job_unref(&s->job);
        job_unref(&t->job);
    }

    /* null: nothing left to cancel */
    g_assert_null(job_next(NULL));
}

static void test_txn_success_waits_for_all(void)
{
    JobTxn *txn = job_txn_new();
    TestJob *a = create("ta", MODE_LOOP, txn, 0);
    TestJob *b = create("tb", MODE_LOOP, txn, 0);

    job_txn_unref(txn);
    job_start(&a->job);
    job_start(&b->job);
    qatomic_set(&a->stop, true);
    WAIT_FOR(job_get_status(&a->job) == JOB_STATUS_WAITING);
    spin(10);
    g_assert_cmpint(job_get_status(&a->job), ==, JOB_STATUS_WAITING);
    g_assert_cmpint(a->prepared, ==, 0);
    qatomic_set(&b->stop, true);
    WAIT_FOR(job_is_concluded(&a->job) && job_is_concluded(&b->job));
    g_assert_cmpint(a->prepared, ==, 1);
    g_assert_cmpint(b->prepared, ==, 1);
    g_assert_cmpint(a->committed + b->committed, ==, 2);
    forget_events();
    job_unref(&a->job);
    job_unref(&b->job);
}

static void test_speed(void)
{
    TestJob *s = create("spd", MODE_SLEEP, NULL, 0);

    {
        g_autoptr(GError) err = NULL;

        g_assert_false(job_set_speed(&s->job, -1, &err));
        g_assert_cmpstr(err->message, ==, "Invalid parameter 'speed'");
    }
    g_assert_true(job_set_speed(&s->job, 1000, NULL));
    g_assert_cmpint(s->speed, ==, 1000);

    /* Setting the speed wakes a job sleeping on its timer. */
    job_start(&s->job);
    WAIT_FOR(!job_is_busy(&s->job));
    g_assert_cmpint(qatomic_read(&s->iterations), ==, 1);
    g_assert_true(job_set_speed(&s->job, 2000, NULL));
    WAIT_FOR(qatomic_read(&s->iterations) == 2);
    finish(s);
    verb_refused(&s->job, JOB_VERB_SET_SPEED);
    forget_events();
    job_unref(&s->job);
}

static void test_cancel_sync_all(void)
{
    TestJob *a = create("all1", MODE_LOOP, NULL, 0);
    TestJob *b = create("all2", MODE_READY, NULL, JOB_MANUAL_DISMISS);
    TestJob *c = create("all3", MODE_SLEEP, NULL, JOB_MANUAL_FINALIZE);

    job_start(&a->job);
    job_start(&b->job);
    g_assert_true(job_user_pause(&a->job, NULL));
    job_cancel_sync_all();
    g_assert_null(job_next(NULL));
    g_assert_cmpint(job_get_status(&a->job), ==, JOB_STATUS_NULL);
    g_assert_cmpint(job_get_status(&b->job), ==, JOB_STATUS_NULL);
    g_assert_cmpint(job_get_status(&c->job), ==, JOB_STATUS_NULL);
    forget_events();
    job_unref(&a->job);
    job_unref(&b->job);
    job_unref(&c->job);
}

static void test_verbs_while_running(void)
{
    TestJob *s = create("vr", MODE_LOOP, NULL, 0);

    job_start(&s->job);
    verb_refused(&s->job, JOB_VERB_COMPLETE);
    verb_refused(&s->job, JOB_VERB_FINALIZE);
    verb_refused(&s->job, JOB_VERB_DISMISS);
    finish(s);
    forget_events();
    job_unref(&s->job);
}

static void test_job_list_order(void)
{
    TestJob *a = create("first", MODE_LOOP, NULL, 0);
    TestJob *b = create("second", MODE_LOOP, NULL, 0);

    /* Newest first, as QEMU lists them. */
    g_assert_true(job_next(NULL) == &b->job);
    g_assert_true(job_next(&b->job) == &a->job);
    g_assert_null(job_next(&a->job));
    job_cancel(&a->job, true);
    job_cancel(&b->job, true);
    forget_events();
    job_unref(&a->job);
    job_unref(&b->job);
}

int main(int argc, char **argv)
{
    JobEventListener *l;
    int ret;

    g_test_init(&argc, &argv, NULL);
    g_assert_true(qemu_init_main_loop(NULL));
    events = g_string_new(NULL);
    l = job_add_event_listener(record_event, NULL);

    g_test_add_func("/job/ids", test_ids);
    g_test_add_func("/job/internal-invisible",
                    test_internal_jobs_are_invisible);
    g_test_add_func("/job/success-events", test_success_events);
    g_test_add_func("/job/failure", test_failure);
    g_test_add_func("/job/manual-finalize-dismiss",
                    test_manual_finalize_and_dismiss);
    g_test_add_func("/job/user-pause-resume", test_user_pause_resume);
    g_test_add_func("/job/nested-pauses", test_nested_pauses);
    g_test_add_func("/job/pause-wakes-sleeper", test_pause_wakes_sleeper);
    g_test_add_func("/job/ready-standby-complete",
                    test_ready_standby_complete);
    g_test_add_func("/job/soft-cancel", test_soft_cancel);
    g_test_add_func("/job/cancel-every-status", test_cancel_every_status);
    g_test_add_func("/job/txn-waits-for-all",
                    test_txn_success_waits_for_all);
    g_test_add_func("/job/speed", test_speed);
    g_test_add_func("/job/cancel-sync-all", test_cancel_sync_all);
    g_test_add_func("/job/verbs-while-running", test_verbs_while_running);
    g_test_add_func("/job/list-order", test_job_list_order);
    ret = g_test_run();

    job_remove_event_listener(l);
    g_string_free(events, TRUE);
    return ret;
}
