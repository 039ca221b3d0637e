/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The job state machine: creation, verbs, pause points, transactions,
 * completion in the main loop, and events.
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * Locking: one recursive lock (job_mutex) protects every job's state, the
 * job list and the listeners.  It is never held across a yield, a poll or
 * a driver callback other than .cancel, and never while calling into the
 * drain registry: drain callbacks take it with their context's drain lock
 * held, so the opposite order would deadlock.  It is recursive only so
 * that event listeners may read jobs with the accessors.
 */
#include "qemu/osdep.h"

#include "block/aio-wait.h"
#include "block/graph-lock.h"
#include "qemu/job.h"
#include "qemu/main-loop.h"

struct JobTxn {
    QLIST_HEAD(, Job) jobs;
    int refcnt;
    /* One job failed: the others are being cancelled and all abort. */
    bool aborting;
};

struct JobEventListener {
    JobEventFunc *fn;
    void *opaque;
    QLIST_ENTRY(JobEventListener) next;
};

static GRecMutex job_mutex;
static QLIST_HEAD(, Job) jobs = QLIST_HEAD_INITIALIZER(jobs);
static QLIST_HEAD(, JobEventListener) listeners =
    QLIST_HEAD_INITIALIZER(listeners);

/*
 * Completions that may not run yet (main thread only): while another
 * job's completion is in progress, or while a writer holds the graph.
 */
static int job_exit_depth;
static GSList *job_exits_waiting;
static QEMUTimer *job_exit_retry_timer;

void job_lock(void)
{
    g_rec_mutex_lock(&job_mutex);
}

void job_unlock(void)
{
    g_rec_mutex_unlock(&job_mutex);
}

/* ---- Names and tables ---- */

static const char *const job_status_names[JOB_STATUS__MAX] = {
    [JOB_STATUS_UNDEFINED] = "undefined",
    [JOB_STATUS_CREATED] = "created",
    [JOB_STATUS_RUNNING] = "running",
    [JOB_STATUS_PAUSED] = "paused",
    [JOB_STATUS_READY] = "ready",
    [JOB_STATUS_STANDBY] = "standby",
    [JOB_STATUS_WAITING] = "waiting",
    [JOB_STATUS_PENDING] = "pending",
    [JOB_STATUS_ABORTING] = "aborting",
    [JOB_STATUS_CONCLUDED] = "concluded",
    [JOB_STATUS_NULL] = "null",
};

static const char *const job_verb_names[JOB_VERB__MAX] = {
    [JOB_VERB_CANCEL] = "cancel",
    [JOB_VERB_PAUSE] = "pause",
    [JOB_VERB_RESUME] = "resume",
    [JOB_VERB_SET_SPEED] = "set-speed",
    [JOB_VERB_COMPLETE] = "complete",
    [JOB_VERB_DISMISS] = "dismiss",
    [JOB_VERB_FINALIZE] = "finalize",
};

static const char *const job_type_names[JOB_TYPE__MAX] = {
    [JOB_TYPE_COMMIT] = "commit",
    [JOB_TYPE_STREAM] = "stream",
    [JOB_TYPE_MIRROR] = "mirror",
    [JOB_TYPE_BACKUP] = "backup",
    [JOB_TYPE_CREATE] = "create",
    [JOB_TYPE_AMEND] = "amend",
};

const char *job_status_str(JobStatus status)
{
    assert(status < JOB_STATUS__MAX);
    return job_status_names[status];
}

const char *job_verb_str(JobVerb verb)
{
    assert(verb < JOB_VERB__MAX);
    return job_verb_names[verb];
}

const char *job_type_str(JobType type)
{
    assert(type < JOB_TYPE__MAX);
    return job_type_names[type];
}

#define ST(s) (1u << JOB_STATUS_##s)

/* Where each status may go next (QEMU's table, by rows). */
static const unsigned int job_next_status[JOB_STATUS__MAX] = {
    [JOB_STATUS_UNDEFINED] = ST(CREATED),
    [JOB_STATUS_CREATED] = ST(RUNNING) | ST(ABORTING) | ST(NULL),
    [JOB_STATUS_RUNNING] = ST(PAUSED) | ST(READY) | ST(WAITING) |
                           ST(ABORTING),
    [JOB_STATUS_PAUSED] = ST(RUNNING),
    [JOB_STATUS_READY] = ST(STANDBY) | ST(WAITING) | ST(ABORTING),
    [JOB_STATUS_STANDBY] = ST(READY),
    [JOB_STATUS_WAITING] = ST(PENDING) | ST(ABORTING),
    [JOB_STATUS_PENDING] = ST(ABORTING) | ST(CONCLUDED),
    [JOB_STATUS_ABORTING] = ST(ABORTING) | ST(CONCLUDED),
    [JOB_STATUS_CONCLUDED] = ST(NULL),
    [JOB_STATUS_NULL] = 0,
};

/* In which statuses each verb is accepted. */
static const unsigned int job_verb_allowed[JOB_VERB__MAX] = {
    [JOB_VERB_CANCEL] = ST(CREATED) | ST(RUNNING) | ST(PAUSED) | ST(READY) |
                        ST(STANDBY) | ST(WAITING) | ST(PENDING),
    [JOB_VERB_PAUSE] = ST(CREATED) | ST(RUNNING) | ST(PAUSED) | ST(READY) |
                       ST(STANDBY),
    [JOB_VERB_RESUME] = ST(CREATED) | ST(RUNNING) | ST(PAUSED) |
                        ST(READY) | ST(STANDBY),
    [JOB_VERB_SET_SPEED] = ST(CREATED) | ST(RUNNING) | ST(PAUSED) |
                           ST(READY) | ST(STANDBY),
    [JOB_VERB_COMPLETE] = ST(READY),
    [JOB_VERB_DISMISS] = ST(CONCLUDED),
    [JOB_VERB_FINALIZE] = ST(PENDING),
};

#undef ST

/* ---- Events ---- */

JobEventListener *job_add_event_listener(JobEventFunc *fn, void *opaque)
{
    JobEventListener *l = g_new0(JobEventListener, 1);

    l->fn = fn;
    l->opaque = opaque;
    job_lock();
    QLIST_INSERT_HEAD(&listeners, l, next);
    job_unlock();
    return l;
}

void job_remove_event_listener(JobEventListener *l)
{
    job_lock();
    QLIST_REMOVE(l, next);
    job_unlock();
    g_free(l);
}

bool job_is_internal(Job *job)
{
    return job->id == NULL;
}

void job_send_event(Job *job, JobEventKind kind, bool is_read,
                    const char *action)
{
    JobEvent ev = {
        .kind = kind,
        .job = job,
        .status = job->status,
        .is_read = is_read,
        .action = action,
    };
    JobEventListener *l;

    if (job_is_internal(job)) {
        return;
    }
    job_lock();
    QLIST_FOREACH(l, &listeners, next) {
        l->fn(&ev, l->opaque);
    }
    job_unlock();
}

/* Job lock held. */
static void job_state_transition(Job *job, JobStatus s1)
{
    JobStatus s0 = job->status;

    assert(s1 < JOB_STATUS__MAX);
    if (!(job_next_status[s0] & (1u << s1))) {
        g_error("job '%s': invalid transition %s -> %s",
                job->id ?: "(internal)", job_status_str(s0),
                job_status_str(s1));
    }
    job->status = s1;
    if (s0 != s1) {
        job_send_event(job, JOB_EVENT_STATUS_CHANGE, false, NULL);
    }
}

bool job_apply_verb(Job *job, JobVerb verb, GError **errp)
{
    bool ok;

    assert(verb < JOB_VERB__MAX);
    job_lock();
    ok = job_verb_allowed[verb] & (1u << job->status);
    if (!ok) {
        error_setg(errp, "Job '%s' in state '%s' cannot accept command "
                   "verb '%s'", job->id ?: "", job_status_str(job->status),
                   job_verb_str(verb));
    }
    job_unlock();
    return ok;
}

/* ---- Accessors ---- */

const char *job_id(Job *job)
{
    return job->id;
}

JobType job_type(const Job *job)
{
    return job->driver->job_type;
}

JobStatus job_get_status(Job *job)
{
    JobStatus s;

    job_lock();
    s = job->status;
    job_unlock();
    return s;
}

bool job_is_busy(Job *job)
{
    bool b;

    job_lock();
    b = job->busy;
    job_unlock();
    return b;
}

bool job_is_paused(Job *job)
{
    bool b;

    job_lock();
    b = job->paused;
    job_unlock();
    return b;
}

bool job_is_user_paused(Job *job)
{
    bool b;

    job_lock();
    b = job->user_paused;
    job_unlock();
    return b;
}

int job_get_pause_count(Job *job)
{
    int n;

    job_lock();
    n = job->pause_count;
    job_unlock();
    return n;
}

AioContext *job_get_aio_context(Job *job)
{
    AioContext *ctx;

    job_lock();
    ctx = job->aio_context;
    job_unlock();
    return ctx;
}

bool job_is_ready(Job *job)
{
    JobStatus s = job_get_status(job);

    return s == JOB_STATUS_READY || s == JOB_STATUS_STANDBY;
}

/* Job lock held. */
static bool job_is_completed_locked(Job *job)
{
    switch (job->status) {
    case JOB_STATUS_WAITING:
    case JOB_STATUS_PENDING:
    case JOB_STATUS_ABORTING:
    case JOB_STATUS_CONCLUDED:
    case JOB_STATUS_NULL:
        return true;
    default:
        return false;
    }
}

bool job_is_completed(Job *job)
{
    bool b;

    job_lock();
    b = job_is_completed_locked(job);
    job_unlock();
    return b;
}

bool job_is_concluded(Job *job)
{
    JobStatus s = job_get_status(job);

    return s == JOB_STATUS_CONCLUDED || s == JOB_STATUS_NULL;
}

/* Job lock held. */
static bool job_is_cancelled_locked(Job *job)
{
    return job->cancelled && job->force_cancel;
}

bool job_is_cancelled(Job *job)
{
    bool b;

    job_lock();
    b = job_is_cancelled_locked(job);
    job_unlock();
    return b;
}

bool job_cancel_requested(Job *job)
{
    bool b;

    job_lock();
    b = job->cancelled;
    job_unlock();
    return b;
}

const char *job_error_message(Job *job)
{
    return job->ret < 0 && job->err ? job->err->message : NULL;
}

/* ---- Transactions ---- */

JobTxn *job_txn_new(void)
{
    JobTxn *txn = g_new0(JobTxn, 1);

    QLIST_INIT(&txn->jobs);
    txn->refcnt = 1;
    return txn;
}

static void job_txn_ref(JobTxn *txn)
{
    txn->refcnt++;
}

void job_txn_unref(JobTxn *txn)
{
    if (txn && --txn->refcnt == 0) {
        assert(QLIST_EMPTY(&txn->jobs));
        g_free(txn);
    }
}

/* Job lock held. */
static void job_txn_del_job(Job *job)
{
    if (job->txn) {
        QLIST_REMOVE(job, txn_list);
        job_txn_unref(job->txn);
        job->txn = NULL;
    }
}

/* ---- Creation and references ---- */

/* QEMU's id rule: a letter, then letters, digits, '-', '.' and '_'. */
static bool job_id_wellformed(const char *id)
{
    const char *p;

    if (!g_ascii_isalpha(id[0])) {
        return false;
    }
    for (p = id + 1; *p; p++) {
        if (!g_ascii_isalnum(*p) && !strchr("-._", *p)) {
            return false;
        }
    }
    return true;
}

static void job_sleep_timer_cb(void *opaque)
{
    job_enter(opaque);
}

void *job_create(const char *job_id, const JobDriver *driver, JobTxn *txn,
                 AioContext *ctx, int flags, JobCompletionFunc *cb,
                 void *opaque, GError **errp)
{
    Job *job;

    assert(qemu_in_main_thread());
    assert(driver->instance_size >= sizeof(Job));
    assert(driver->run);

    job_lock();
    if (job_id) {
        if (flags & JOB_INTERNAL) {
            error_setg(errp, "Cannot specify job ID for internal job");
            goto fail;
        }
        if (!job_id_wellformed(job_id)) {
            error_setg(errp, "Invalid job ID '%s'", job_id);
            goto fail;
        }
        if (job_get(job_id)) {
            error_setg(errp, "Job ID '%s' already in use", job_id);
            goto fail;
        }
    } else if (!(flags & JOB_INTERNAL)) {
        error_setg(errp, "An explicit job ID is required");
        goto fail;
    }

    job = g_malloc0(driver->instance_size);
    job->id = g_strdup(job_id);
    job->driver = driver;
    job->refcnt = 1;
    job->flags = flags;
    job->aio_context = ctx;
    job->status = JOB_STATUS_UNDEFINED;
    /* Not started counts as a pause request, withdrawn by job_start(). */
    job->pause_count = 1;
    job->paused = true;
    job->auto_finalize = !(flags & JOB_MANUAL_FINALIZE);
    job->auto_dismiss = !(flags & JOB_MANUAL_DISMISS);
    job->cb = cb;
    job->cb_opaque = opaque;
    aio_timer_init(qemu_get_aio_context(), &job->sleep_timer,
                   QEMU_CLOCK_REALTIME, SCALE_NS, job_sleep_timer_cb, job);

    /* Newest first, as QEMU lists them. */
    QLIST_INSERT_HEAD(&jobs, job, job_list);

    if (txn) {
        job_txn_ref(txn);
    } else {
        txn = job_txn_new();
    }
    job->txn = txn;
    QLIST_INSERT_HEAD(&txn->jobs, job, txn_list);

    job_state_transition(job, JOB_STATUS_CREATED);
    job_unlock();
    return job;

fail:
    job_unlock();
    return NULL;
}

void job_ref(Job *job)
{
    job_lock();
    assert(job->refcnt > 0);
    job->refcnt++;
    job_unlock();
}

void job_unref(Job *job)
{
    bool last;

    job_lock();
    assert(job->refcnt > 0);
    last = --job->refcnt == 0;
    job_unlock();
    if (!last) {
        return;
    }

    /* The driver may reach into the drain registry: no job lock here. */
    assert(qemu_in_main_thread());
    assert(job->status == JOB_STATUS_NULL);
    assert(!job->txn);
    timer_del(&job->sleep_timer);
    if (job->driver->free) {
        job->driver->free(job);
    }
    if (job->err) {
        g_error_free(job->err);
    }
    g_free(job->id);
    g_free(job);
}

Job *job_get(const char *id)
{
    Job *job, *found = NULL;

    job_lock();
    QLIST_FOREACH(job, &jobs, job_list) {
        if (job->id && strcmp(id, job->id) == 0) {
            found = job;
            break;
        }
    }
    job_unlock();
    return found;
}

Job *job_next(Job *job)
{
    job_lock();
    job = job ? QLIST_NEXT(job, job_list) : QLIST_FIRST(&jobs);
    while (job && job_is_internal(job)) {
        job = QLIST_NEXT(job, job_list);
    }
    job_unlock();
    return job;
}

/*
 * Take @job out of the list: status null.  The caller drops the list's
 * reference with job_unref() once it released the job lock.
 */
static void job_do_dismiss(Job *job)
{
    assert(job->status == JOB_STATUS_CONCLUDED ||
           job->status == JOB_STATUS_CREATED);
    job->busy = false;
    job->paused = false;
    job->deferred_to_main_loop = true;
    job_txn_del_job(job);
    job_state_transition(job, JOB_STATUS_NULL);
    QLIST_REMOVE(job, job_list);
}

void job_early_fail(Job *job)
{
    assert(qemu_in_main_thread());
    job_lock();
    assert(job->status == JOB_STATUS_CREATED);
    job_do_dismiss(job);
    job_unlock();
    job_unref(job);
}

/* ---- Waking and parking the coroutine ---- */

/*
 * Wake the coroutine if it waits in job_do_yield() and @cond (may be
 * NULL) agrees.  A job parked at a pause point stays there while a pause
 * is requested, unless it is being cancelled.  Job lock held.  Never
 * enters the coroutine directly: the caller may be a drain callback.
 */
static void job_enter_cond(Job *job, bool (*cond)(Job *job))
{
    if (!job->started || job->deferred_to_main_loop || job->busy) {
        return;
    }
    if (job->paused && job->pause_count > 0 &&
        !job_is_cancelled_locked(job)) {
        return;
    }
    if (cond && !cond(job)) {
        return;
    }
    timer_del(&job->sleep_timer);
    job->busy = true;
    aio_co_schedule(job->aio_context, job->co);
}

void job_enter(Job *job)
{
    job_lock();
    job_enter_cond(job, NULL);
    job_unlock();
}

static bool job_timer_not_pending(Job *job)
{
    return !timer_pending(&job->sleep_timer);
}

static bool job_timer_is_pending(Job *job)
{
    return timer_pending(&job->sleep_timer);
}

/*
 * Park the coroutine until job_enter_cond() (or the timer, at @deadline
 * ns, if not -1).  Job lock held once on entry and on return; it is
 * released while parked.
 */
static void coroutine_fn job_do_yield(Job *job, int64_t deadline)
{
    assert(job->busy);
    if (deadline != -1) {
        timer_mod_ns(&job->sleep_timer, deadline);
    }
    job->busy = false;
    job_unlock();
    /* A drain may be waiting for us to go quiet, from another thread. */
    aio_wait_kick();
    qemu_coroutine_yield();
    job_lock();
    assert(job->busy);
}

/* Job lock held. */
static bool job_should_pause(Job *job)
{
    return job->pause_count > 0 && !job_is_cancelled_locked(job);
}

void coroutine_fn job_pause_point(Job *job)
{
    JobStatus before;

    job_lock();
    if (!job_should_pause(job)) {
        job_unlock();
        return;
    }
    job_unlock();

    if (job->driver->pause) {
        job->driver->pause(job);
    }

    job_lock();
    if (job_should_pause(job)) {
        before = job->status;
        assert(before == JOB_STATUS_RUNNING || before == JOB_STATUS_READY);
        job_state_transition(job, before == JOB_STATUS_READY ?
                             JOB_STATUS_STANDBY : JOB_STATUS_PAUSED);
        job->paused = true;
        while (job_should_pause(job)) {
            job_do_yield(job, -1);
        }
        job->paused = false;
        job_state_transition(job, before);
    }
    job_unlock();

    if (job->driver->resume) {
        job->driver->resume(job);
    }
}

void coroutine_fn job_sleep_ns(Job *job, int64_t ns)
{
    job_lock();
    if (!job_should_pause(job) && !job_is_cancelled_locked(job)) {
        job_do_yield(job, qemu_clock_get_ns(QEMU_CLOCK_REALTIME) + ns);
    }
    job_unlock();
    job_pause_point(job);
}

void coroutine_fn job_yield(Job *job)
{
    job_lock();
    if (!job_should_pause(job) && !job_is_cancelled_locked(job)) {
        job_do_yield(job, -1);
    }
    job_unlock();
    job_pause_point(job);
}

/* ---- Pausing ---- */

/* Job lock held. */
static void job_pause_locked(Job *job)
{
    job->pause_count++;
    /* A sleeping or waiting job must reach its pause point now. */
    if (!job->paused) {
        job_enter_cond(job, NULL);
    }
}

/* Job lock held. */
static void job_resume_locked(Job *job)
{
    assert(job->pause_count > 0);
    if (--job->pause_count > 0) {
        return;
    }
    /* A job sleeping on its timer wakes when the timer says so. */
    job_enter_cond(job, job_timer_not_pending);
}

void job_pause(Job *job)
{
    job_lock();
    job_pause_locked(job);
    job_unlock();
}

void job_resume(Job *job)
{
    job_lock();
    job_resume_locked(job);
    job_unlock();
}

bool job_user_pause(Job *job, GError **errp)
{
    if (!job_apply_verb(job, JOB_VERB_PAUSE, errp)) {
        return false;
    }
    job_lock();
    if (job->user_paused) {
        job_unlock();
        error_setg(errp, "Job is already paused");
        return false;
    }
    job->user_paused = true;
    job_pause_locked(job);
    job_unlock();
    return true;
}

bool job_user_resume(Job *job, GError **errp)
{
    job_lock();
    if (!job->user_paused) {
        job_unlock();
        error_setg(errp, "Can't resume a job that was not paused");
        return false;
    }
    job_unlock();
    if (!job_apply_verb(job, JOB_VERB_RESUME, errp)) {
        return false;
    }
    if (job->driver->user_resume) {
        job->driver->user_resume(job);
    }
    job_lock();
    job->user_paused = false;
    job_resume_locked(job);
    job_unlock();
    return true;
}

/* ---- Drained sections ---- */

void job_drained_begin(Job *job)
{
    job_lock();
    job->quiesce_counter++;
    job_pause_locked(job);
    job_unlock();
}

static void job_exit_bh(void *opaque);

void job_drained_end(Job *job)
{
    job_lock();
    assert(job->quiesce_counter > 0);
    if (--job->quiesce_counter == 0 && job->exit_deferred) {
        /* The completion waited for the last section to end. */
        job->exit_deferred = false;
        aio_bh_schedule_oneshot(qemu_get_aio_context(), job_exit_bh, job);
    }
    job_resume_locked(job);
    job_unlock();
}

bool job_drain_busy(Job *job)
{
    bool busy;

    job_lock();
    busy = job->busy && !job->paused && !job->deferred_to_main_loop;
    job_unlock();
    return busy;
}

void job_set_aio_context(Job *job, AioContext *ctx)
{
    assert(qemu_in_main_thread());
    job_lock();
    assert(!job->busy || job->deferred_to_main_loop);
    job->aio_context = ctx;
    job_unlock();
}

/* ---- Progress and readiness ---- */

void job_progress_update(Job *job, uint64_t done)
{
    job_lock();
    job->progress_current += done;
    if (job->progress_total < job->progress_current) {
        job->progress_total = job->progress_current;
    }
    job_unlock();
}

void job_progress_set_remaining(Job *job, uint64_t remaining)
{
    job_lock();
    job->progress_total = job->progress_current + remaining;
    job_unlock();
}

void job_progress_increase_remaining(Job *job, uint64_t delta)
{
    job_lock();
    job->progress_total += delta;
    job_unlock();
}

void job_transition_to_ready(Job *job)
{
    job_lock();
    job_state_transition(job, JOB_STATUS_READY);
    job_send_event(job, JOB_EVENT_READY, false, NULL);
    job_unlock();
}

/* ---- Running ---- */

static void coroutine_fn job_co_entry(void *opaque)
{
    Job *job = opaque;
    GError *err = NULL;
    int ret;

    /* Created while drained (or paused by the user): wait right here. */
    job_pause_point(job);
    ret = job->driver->run(job, &err);

    job_lock();
    job->ret = ret;
    if (ret < 0 && err) {
        job->err = err;
    } else if (err) {
        g_error_free(err);
    }
    job->deferred_to_main_loop = true;
    /* The scheduled completion holds a reference. */
    job->refcnt++;
    aio_bh_schedule_oneshot(qemu_get_aio_context(), job_exit_bh, job);
    job_unlock();
    aio_wait_kick();
}

void job_start(Job *job)
{
    AioContext *ctx;

    assert(qemu_in_main_thread());
    job_lock();
    assert(job->status == JOB_STATUS_CREATED && !job->started);
    job->co = qemu_coroutine_create(job_co_entry, job);
    job->started = true;
    job->busy = true;
    job->paused = false;
    job->pause_count--;
    job_state_transition(job, JOB_STATUS_RUNNING);
    ctx = job->aio_context;
    job_unlock();
    aio_co_enter(ctx, job->co);
}

/* ---- Completion (main loop) ---- */

/*
 * A result that is not success: the job aborts, with an error message.
 * Job lock held.
 */
static void job_update_rc(Job *job)
{
    if (!job->ret && job_is_cancelled_locked(job)) {
        job->ret = -ECANCELED;
    }
    if (job->ret) {
        if (!job->err) {
            job->err = g_error_new_literal(SLUICE_ERROR,
                                           SLUICE_ERROR_GENERIC,
                                           g_strerror(-job->ret));
        }
        job_state_transition(job, JOB_STATUS_ABORTING);
    }
}

/* Job lock held; returns with it held, but drops it around @fn. */
static void job_call_unlocked(Job *job, void (*fn)(Job *job))
{
    if (fn) {
        job_unlock();
        fn(job);
        job_lock();
    }
}

/*
 * Commit or abort, clean, tell the creator and the listeners, conclude.
 * Returns true if the job was dismissed: the caller then drops the list's
 * reference after unlocking.  Job lock held.
 */
static bool job_finalize_single(Job *job)
{
    assert(job_is_completed_locked(job));

    job_update_rc(job);
    job_call_unlocked(job, job->ret ? job->driver->abort :
                      job->driver->commit);
    job_call_unlocked(job, job->driver->clean);
    if (job->cb) {
        job_unlock();
        job->cb(job->cb_opaque, job->ret);
        job_lock();
    }
    if (job->started) {
        job_send_event(job, job_is_cancelled_locked(job) ?
                       JOB_EVENT_CANCELLED : JOB_EVENT_COMPLETED,
                       false, NULL);
    }
    job_txn_del_job(job);
    job_state_transition(job, JOB_STATUS_CONCLUDED);
    if (job->auto_dismiss || !job->started) {
        job_do_dismiss(job);
        return true;
    }
    return false;
}

/* Finalize every job of @txn (they all completed).  Job lock held. */
static void job_txn_finalize_all(JobTxn *txn)
{
    g_autoptr(GPtrArray) all = g_ptr_array_new();
    g_autoptr(GPtrArray) dismissed = g_ptr_array_new();
    Job *other;
    guint i;

    QLIST_FOREACH(other, &txn->jobs, txn_list) {
        g_ptr_array_add(all, other);
    }
    for (i = 0; i < all->len; i++) {
        if (job_finalize_single(g_ptr_array_index(all, i))) {
            g_ptr_array_add(dismissed, g_ptr_array_index(all, i));
        }
    }
    job_unlock();
    for (i = 0; i < dismissed->len; i++) {
        job_unref(g_ptr_array_index(dismissed, i));
    }
    job_lock();
}

/* Job lock held. */
static void job_cancel_async(Job *job, bool force)
{
    if (job->driver->cancel) {
        force = job->driver->cancel(job, force);
    } else {
        force = true;
    }
    if (job->user_paused) {
        /* A cancelled job must be able to reach its end. */
        job_call_unlocked(job, job->driver->user_resume);
        job->user_paused = false;
        assert(job->pause_count > 0);
        job->pause_count--;
    }
    /* A soft cancel of a job whose run is over means nothing. */
    if (!job->deferred_to_main_loop || force) {
        job->cancelled = true;
        job->force_cancel |= force;
    }
}

/*
 * One job of the transaction failed: cancel the others, and once every
 * job completed, abort them all.  Job lock held.
 */
static void job_completed_txn_abort(Job *job)
{
    JobTxn *txn = job->txn;
    Job *other;

    if (!txn->aborting) {
        txn->aborting = true;
        QLIST_FOREACH(other, &txn->jobs, txn_list) {
            if (other == job) {
                continue;
            }
            if (!job_is_completed_locked(other)) {
                job_cancel_async(other, true);
                if (!other->started) {
                    /* It will never run: it completes right away. */
                    job_update_rc(other);
                } else {
                    job_enter_cond(other, NULL);
                }
            } else {
                other->cancelled = true;
                other->force_cancel = true;
            }
        }
    }
    QLIST_FOREACH(other, &txn->jobs, txn_list) {
        if (!job_is_completed_locked(other)) {
            /* Its own completion comes back here. */
            return;
        }
    }
    job_txn_ref(txn);
    job_txn_finalize_all(txn);
    job_txn_unref(txn);
}

/* Job lock held. */
static int job_prepare(Job *job)
{
    int ret;

    if (job->ret == 0 && job->driver->prepare) {
        job_unlock();
        ret = job->driver->prepare(job);
        job_lock();
        job->ret = ret;
        job_update_rc(job);
    }
    return job->ret;
}

/* Prepare every job of the transaction, then finalize.  Job lock held. */
static void job_do_finalize(Job *job)
{
    JobTxn *txn = job->txn;
    Job *other;
    int rc = 0;

    assert(txn);
    QLIST_FOREACH(other, &txn->jobs, txn_list) {
        rc = job_prepare(other);
        if (rc) {
            break;
        }
    }
    if (rc) {
        job_completed_txn_abort(other);
        return;
    }
    job_txn_ref(txn);
    job_txn_finalize_all(txn);
    job_txn_unref(txn);
}

/* Job lock held. */
static void job_completed_txn_success(Job *job)
{
    JobTxn *txn = job->txn;
    Job *other;
    bool manual = false;

    job_state_transition(job, JOB_STATUS_WAITING);
    QLIST_FOREACH(other, &txn->jobs, txn_list) {
        if (!job_is_completed_locked(other)) {
            return;
        }
    }
    QLIST_FOREACH(other, &txn->jobs, txn_list) {
        job_state_transition(other, JOB_STATUS_PENDING);
        if (!other->auto_finalize) {
            job_send_event(other, JOB_EVENT_PENDING, false, NULL);
            manual = true;
        }
    }
    if (!manual) {
        job_do_finalize(job);
    }
}

/* The run is over (or never started).  Job lock held. */
static void job_completed(Job *job)
{
    assert(!job_is_completed_locked(job));
    job_update_rc(job);
    if (job->ret || job->txn->aborting) {
        if (!job->ret) {
            /* Its transaction failed: it is cancelled with the others. */
            job->cancelled = true;
            job->force_cancel = true;
            job_update_rc(job);
        }
        job_completed_txn_abort(job);
    } else {
        job_completed_txn_success(job);
    }
}

static void job_exit_retry_cb(void *opaque)
{
    GSList *waiting = job_exits_waiting;
    GSList *l;

    job_exits_waiting = NULL;
    for (l = waiting; l; l = l->next) {
        aio_bh_schedule_oneshot(qemu_get_aio_context(), job_exit_bh,
                                l->data);
    }
    g_slist_free(waiting);
}

/*
 * The job's run is over: finish it in the main loop.  Not inside a
 * drained section over its nodes (it would change the graph under it:
 * job_drained_end() reschedules us), nor inside another job's completion
 * or a graph writer's wait (we retry when those are over).
 */
static void job_exit_bh(void *opaque)
{
    Job *job = opaque;

    job_lock();
    if (job->quiesce_counter > 0) {
        job->exit_deferred = true;
        job_unlock();
        return;
    }
    job_unlock();

    if (job_exit_depth > 0 || bdrv_graph_is_write_locked()) {
        job_exits_waiting = g_slist_append(job_exits_waiting, job);
        if (bdrv_graph_is_write_locked()) {
            if (!job_exit_retry_timer) {
                job_exit_retry_timer = aio_timer_new(
                    qemu_get_aio_context(), QEMU_CLOCK_REALTIME, SCALE_MS,
                    job_exit_retry_cb, NULL);
            }
            timer_mod(job_exit_retry_timer,
                      qemu_clock_get_ms(QEMU_CLOCK_REALTIME) + 1);
        }
        return;
    }

    job_exit_depth++;
    job_lock();
    job->busy = false;
    job_completed(job);
    job_unlock();
    job_exit_depth--;

    if (job_exit_depth == 0 && job_exits_waiting) {
        job_exit_retry_cb(NULL);
    }
    job_unref(job);
}

/* ---- The other verbs ---- */

void job_cancel(Job *job, bool force)
{
    bool dismissed = false;

    assert(qemu_in_main_thread());
    job_lock();
    if (job->status == JOB_STATUS_CONCLUDED) {
        job_do_dismiss(job);
        job_unlock();
        job_unref(job);
        return;
    }
    job_cancel_async(job, force);
    if (!job->started) {
        job_ref(job);
        job_completed(job);
        dismissed = true;
    } else if (job_is_completed_locked(job)) {
        /* Waiting or pending: the transaction aborts now. */
        if (job_is_cancelled_locked(job) && !job->txn->aborting) {
            job_update_rc(job);
            job_ref(job);
            job_completed_txn_abort(job);
            dismissed = true;
        }
    } else {
        job_enter_cond(job, NULL);
    }
    job_unlock();
    if (dismissed) {
        job_unref(job);
    }
}

bool job_user_cancel(Job *job, bool force, GError **errp)
{
    if (!job_apply_verb(job, JOB_VERB_CANCEL, errp)) {
        return false;
    }
    job_cancel(job, force);
    return true;
}

bool job_complete(Job *job, GError **errp)
{
    if (!job_apply_verb(job, JOB_VERB_COMPLETE, errp)) {
        return false;
    }
    job_lock();
    if (job->cancelled || !job->driver->complete) {
        job_unlock();
        error_setg(errp, "The active block job '%s' cannot be completed",
                   job->id ?: "");
        return false;
    }
    job_unlock();
    job->driver->complete(job, errp);
    return true;
}

bool job_finalize(Job *job, GError **errp)
{
    assert(qemu_in_main_thread());
    if (!job_apply_verb(job, JOB_VERB_FINALIZE, errp)) {
        return false;
    }
    job_ref(job);
    job_lock();
    job_do_finalize(job);
    job_unlock();
    job_unref(job);
    return true;
}

bool job_dismiss(Job *job, GError **errp)
{
    assert(qemu_in_main_thread());
    if (!job_apply_verb(job, JOB_VERB_DISMISS, errp)) {
        return false;
    }
    job_lock();
    job_do_dismiss(job);
    job_unlock();
    job_unref(job);
    return true;
}

bool job_set_speed(Job *job, int64_t speed, GError **errp)
{
    if (!job_apply_verb(job, JOB_VERB_SET_SPEED, errp)) {
        return false;
    }
    if (speed < 0) {
        error_setg(errp, "Invalid parameter 'speed'");
        return false;
    }
    if (!job->driver->set_speed) {
        error_setg(errp, "Job '%s' has no speed limit", job->id ?: "");
        return false;
    }
    job->driver->set_speed(job, speed);
    /* A job sleeping for the old limit recomputes its delay. */
    job_lock();
    job_enter_cond(job, job_timer_is_pending);
    job_unlock();
    return true;
}

/* ---- Waiting ---- */

int job_finish_sync(Job *job, void (*finish)(Job *job, GError **errp),
                    GError **errp)
{
    GError *local_err = NULL;
    int ret;

    assert(qemu_in_main_thread());
    job_ref(job);
    if (finish) {
        finish(job, &local_err);
    }
    if (local_err) {
        g_propagate_error(errp, local_err);
        job_unref(job);
        return -EBUSY;
    }
    AIO_WAIT_WHILE(NULL, !job_is_completed(job));

    job_lock();
    ret = (job_is_cancelled_locked(job) && job->ret == 0) ?
          -ECANCELED : job->ret;
    if (ret < 0) {
        if (job->err) {
            g_set_error_literal(errp, SLUICE_ERROR, SLUICE_ERROR_GENERIC,
                                job->err->message);
        } else {
            error_setg(errp, "%s", g_strerror(-ret));
        }
    }
    job_unlock();
    job_unref(job);
    return ret;
}

static void job_cancel_hard(Job *job, GError **errp)
{
    job_cancel(job, true);
}

static void job_cancel_soft(Job *job, GError **errp)
{
    job_cancel(job, false);
}

int job_cancel_sync(Job *job, bool force)
{
    return job_finish_sync(job, force ? job_cancel_hard : job_cancel_soft,
                           NULL);
}

static void job_complete_verb(Job *job, GError **errp)
{
    job_complete(job, errp);
}

int job_complete_sync(Job *job, GError **errp)
{
    return job_finish_sync(job, job_complete_verb, errp);
}

void job_cancel_sync_all(void)
{
    Job *job;

    assert(qemu_in_main_thread());
    for (;;) {
        job_lock();
        job = QLIST_FIRST(&jobs);
        if (job) {
            job->refcnt++;
        }
        job_unlock();
        if (!job) {
            break;
        }
        if (job_get_status(job) == JOB_STATUS_CONCLUDED) {
            job_cancel(job, true);
        } else {
            job_cancel_sync(job, true);
        }
        job_unref(job);
    }
}

/* ---- Queries ---- */

JsonObject *job_query_info(Job *job)
{
    JsonObject *o = json_object_new();

    job_lock();
    json_object_set_string_member(o, "id", job->id ?: "");
    json_object_set_string_member(o, "type", job_type_str(job_type(job)));
    json_object_set_string_member(o, "status", job_status_str(job->status));
    json_object_set_int_member(o, "current-progress", job->progress_current);
    json_object_set_int_member(o, "total-progress", job->progress_total);
    if (job->ret < 0 && job->err) {
        json_object_set_string_member(o, "error", job->err->message);
    }
    job_unlock();
    return o;
}
