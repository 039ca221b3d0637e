/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Jobs: long-running background operations with QEMU's state machine
 * (created, running, paused, ready, standby, waiting, pending, aborting,
 * concluded, null), its verbs, transactions and events.
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * A job's work runs in a coroutine (JobDriver.run) in the job's
 * AioContext; everything else (creation, verbs, completion, graph
 * changes) runs in the main thread.  The job's state is protected by one
 * process-wide lock, taken inside these functions; callers hold nothing.
 *
 * The life of a job that succeeds:
 *
 *   created -start-> running [-> ready (jobs that need "complete")]
 *     -run returns-> waiting (for its transaction) -> pending
 *     -finalize (automatic unless JOB_MANUAL_FINALIZE)-> concluded
 *     -dismiss (automatic unless JOB_MANUAL_DISMISS)-> null (gone)
 *
 * A job that fails or is cancelled goes through aborting instead of
 * waiting and pending.  Pausing (by the user, or by a drained section
 * around the job's nodes, see block/blockjob.h) takes effect at the job's
 * next pause point: running becomes paused, ready becomes standby.
 * docs/devel/jobs.md has the table and the reasons.
 */
#ifndef QEMU_JOB_H
#define QEMU_JOB_H

#include "block/aio.h"
#include "qemu/coroutine.h"

#include <json-glib/json-glib.h>

typedef struct Job Job;
typedef struct JobDriver JobDriver;
typedef struct JobTxn JobTxn;
typedef struct JobEventListener JobEventListener;

/* QEMU's JobStatus, in QAPI order (job_status_str() gives the names). */
typedef enum JobStatus {
    JOB_STATUS_UNDEFINED,
    JOB_STATUS_CREATED,
    JOB_STATUS_RUNNING,
    JOB_STATUS_PAUSED,
    JOB_STATUS_READY,
    JOB_STATUS_STANDBY,
    JOB_STATUS_WAITING,
    JOB_STATUS_PENDING,
    JOB_STATUS_ABORTING,
    JOB_STATUS_CONCLUDED,
    JOB_STATUS_NULL,
    JOB_STATUS__MAX,
} JobStatus;

/* QEMU 7.2's JobVerb: the commands a user may send to a job. */
typedef enum JobVerb {
    JOB_VERB_CANCEL,
    JOB_VERB_PAUSE,
    JOB_VERB_RESUME,
    JOB_VERB_SET_SPEED,
    JOB_VERB_COMPLETE,
    JOB_VERB_DISMISS,
    JOB_VERB_FINALIZE,
    JOB_VERB__MAX,
} JobVerb;

/* QEMU's JobType, as far as Sluice has jobs of that kind (and "test"). */
typedef enum JobType {
    JOB_TYPE_COMMIT,
    JOB_TYPE_STREAM,
    JOB_TYPE_MIRROR,
    JOB_TYPE_BACKUP,
    JOB_TYPE_CREATE,
    JOB_TYPE_AMEND,
    JOB_TYPE__MAX,
} JobType;

/* Flags of job_create(). */
enum {
    JOB_DEFAULT = 0,
    /* No id, no events, invisible to job_next(): a tool's or a caller's. */
    JOB_INTERNAL = 0x1,
    /* Stay pending until job_finalize() (QMP auto-finalize=false). */
    JOB_MANUAL_FINALIZE = 0x2,
    /* Stay concluded until job_dismiss() (QMP auto-dismiss=false). */
    JOB_MANUAL_DISMISS = 0x4,
};

const char *job_status_str(JobStatus status);
const char *job_verb_str(JobVerb verb);
const char *job_type_str(JobType type);

/*
 * What a kind of job does.  Every callback but run runs in the main
 * thread, outside any drained section and without the job lock.
 */
struct JobDriver {
    /* Size of the job's state; a Job (or BlockJob) comes first in it. */
    size_t instance_size;
    JobType job_type;

    /*
     * The work, in a coroutine in the job's context.  It calls
     * job_pause_point() (or job_sleep_ns()/job_yield(), which include
     * one) often, stops when job_is_cancelled(), and returns 0 or a
     * negative errno; on failure it may set *@errp (otherwise the
     * message is strerror of the errno).
     */
    int coroutine_fn (*run)(Job *job, GError **errp);

    /* Optional: in the job's coroutine, around a pause. */
    void coroutine_fn (*pause)(Job *job);
    void coroutine_fn (*resume)(Job *job);

    /* Optional: the user resumed the job (e.g. reset an error state). */
    void (*user_resume)(Job *job);

    /*
     * Optional: the user asked a ready job to complete (job_complete());
     * typically sets a flag and wakes the job with job_enter().
     */
    void (*complete)(Job *job, GError **errp);

    /*
     * Optional: cancellation was requested.  Returns whether it is a
     * hard cancel (the job fails with -ECANCELED); a soft cancel (false,
     * e.g. of a ready job with !@force) lets run end normally.  Without
     * it every cancel is hard.  Called with the job lock held: only look
     * at the job, wake it with nothing more than job_enter().
     */
    bool (*cancel)(Job *job, bool force);

    /*
     * Optional: once every job of the transaction finished its run
     * successfully, before commit: the place for graph changes that can
     * still fail.  Returns 0 or a negative errno (then the whole
     * transaction aborts).
     */
    int (*prepare)(Job *job);

    /* Exactly one of commit/abort runs, then clean. */
    void (*commit)(Job *job);
    void (*abort)(Job *job);
    void (*clean)(Job *job);

    /* Optional: rate limit in bytes per second; 0 is unlimited. */
    void (*set_speed)(Job *job, int64_t speed);

    /* Optional: release the driver's resources before the job is freed. */
    void (*free)(Job *job);
};

/* Called when the job finished (after commit/abort and clean). */
typedef void JobCompletionFunc(void *opaque, int ret);

/*
 * The job.  Fields are read with the accessors below; the comments say
 * who writes them.  Drivers read ret/err only after run returned.
 */
struct Job {
    char *id;                   /* NULL for internal jobs; constant */
    const JobDriver *driver;    /* constant */
    int refcnt;                 /* job lock */
    int flags;                  /* JOB_* creation flags; constant */

    /*
     * The context the job's coroutine runs in.  Changes only while the
     * job is quiescent (paused, not started or finished), under the job
     * lock: blockjob.c moves it with the job's nodes.
     */
    AioContext *aio_context;
    Coroutine *co;

    /* Wakes a job sleeping in job_sleep_ns(); main context timer. */
    QEMUTimer sleep_timer;

    /* The rest is protected by the job lock. */
    JobStatus status;
    /*
     * Pause requests not yet withdrawn: the user's (at most one) plus
     * one per drained section over the job's nodes, plus one while the
     * job is not started.  The job pauses at a pause point while > 0.
     */
    int pause_count;
    bool user_paused;
    bool paused;                /* parked at a pause point */
    /*
     * The coroutine runs or is about to: false only while it waits in
     * job_do_yield() (paused, sleeping, job_yield()) or has not started.
     */
    bool busy;
    bool started;
    bool cancelled;             /* cancel requested */
    bool force_cancel;          /* ...and it is a hard one */
    /* run returned; the main thread takes over (job_exit). */
    bool deferred_to_main_loop;
    /* job_exit waited for the job's drained sections to end. */
    bool exit_deferred;
    /* Drained sections over the job's nodes (blockjob.c), nested. */
    int quiesce_counter;
    bool auto_finalize;
    bool auto_dismiss;
    /* Result of run (0, or a negative errno), then of the finalization. */
    int ret;
    GError *err;

    /* Progress in arbitrary units (bytes for block jobs). */
    uint64_t progress_current;
    uint64_t progress_total;

    JobCompletionFunc *cb;
    void *cb_opaque;

    JobTxn *txn;
    QLIST_ENTRY(Job) txn_list;
    QLIST_ENTRY(Job) job_list;
};

/* ---- Transactions ---- */

/*
 * A group of jobs that finalize together: none leaves waiting until
 * every one finished its run; if one fails or is cancelled, all are
 * cancelled and aborted.  A job created without a transaction gets one
 * of its own.  Main thread.
 */
JobTxn *job_txn_new(void);
void job_txn_unref(JobTxn *txn);

/* ---- Creating and finding ---- */

/*
 * Create a job of @driver in @ctx, status created.  @job_id must be
 * well-formed (a letter, then letters, digits, '-', '.', '_') and unused,
 * and given unless JOB_INTERNAL (which forbids one).  Errors use QEMU's
 * wording: "Invalid job ID '%s'", "Job ID '%s' already in use", "An
 * explicit job ID is required", "Cannot specify job ID for internal
 * job".  @txn may be NULL.  @cb (may be NULL) runs once the job is
 * finished.  Returns the job (one reference, owned by the job list until
 * it is dismissed) or NULL with @errp set.  Main thread.
 */
void *job_create(const char *job_id, const JobDriver *driver, JobTxn *txn,
                 AioContext *ctx, int flags, JobCompletionFunc *cb,
                 void *opaque, GError **errp);

/* Take / drop a reference; the last unref frees the job.  Main thread. */
void job_ref(Job *job);
void job_unref(Job *job);

/* The visible (non-internal) job called @id, or NULL.  Any thread. */
Job *job_get(const char *id);

/*
 * Iterate over the visible jobs: job_next(NULL) is the first.  Main
 * thread; do not dismiss jobs while iterating.
 */
Job *job_next(Job *job);

/* Accessors, any thread. */
const char *job_id(Job *job);
JobType job_type(const Job *job);
JobStatus job_get_status(Job *job);
bool job_is_internal(Job *job);
bool job_is_busy(Job *job);
bool job_is_paused(Job *job);
bool job_is_user_paused(Job *job);
int job_get_pause_count(Job *job);
AioContext *job_get_aio_context(Job *job);

/* A ready job is ready or standby. */
bool job_is_ready(Job *job);

/*
 * The run is over and the main loop took over: waiting, pending,
 * aborting, concluded or null (QEMU's meaning).
 */
bool job_is_completed(Job *job);

/* Concluded or null: the result is final. */
bool job_is_concluded(Job *job);

/* A hard cancel was requested; run should stop. */
bool job_is_cancelled(Job *job);

/* Any cancel (hard or soft) was requested. */
bool job_cancel_requested(Job *job);

/* ---- Life cycle ---- */

/* Start a created job: it runs in its context.  Main thread. */
void job_start(Job *job);

/*
 * Check that @verb is allowed in @job's status; QEMU's message
 * "Job '%s' in state '%s' cannot accept command verb '%s'" otherwise.
 */
bool job_apply_verb(Job *job, JobVerb verb, GError **errp);

/*
 * The user's verbs (QMP job-* and block-job-*).  Each checks the verb
 * first, then QEMU's conditions and messages.  Main thread.
 */
bool job_user_pause(Job *job, GError **errp);
bool job_user_resume(Job *job, GError **errp);
bool job_user_cancel(Job *job, bool force, GError **errp);
bool job_complete(Job *job, GError **errp);
bool job_finalize(Job *job, GError **errp);
bool job_dismiss(Job *job, GError **errp);
bool job_set_speed(Job *job, int64_t speed, GError **errp);

/*
 * Pause requests from inside the block layer (drained sections, error
 * policies): nest with each other and with the user's.  Any thread;
 * neither waits for the job to reach its pause point.
 */
void job_pause(Job *job);
void job_resume(Job *job);

/*
 * Cancel without the verb check: a created job concludes at once, a
 * running one is woken to stop, a concluded one is dismissed.  Main
 * thread.
 */
void job_cancel(Job *job, bool force);

/*
 * Wake the job's coroutine if it waits in job_sleep_ns() or job_yield()
 * (not at a pause point that still has a pause request).  Any thread.
 */
void job_enter(Job *job);

/*
 * Drained sections over the job's nodes (blockjob.c's drain handlers):
 * a pause request each, and while any is open the job's completion in
 * the main loop waits, so it never changes the graph under a drained
 * section.  Any thread, never waits.
 */
void job_drained_begin(Job *job);
void job_drained_end(Job *job);

/*
 * True while the job's coroutine may still issue I/O before it parks:
 * it is busy and has neither paused nor finished its run.  What a drain
 * waits for.  Any thread.
 */
bool job_drain_busy(Job *job);

/*
 * Move the job to @ctx: its coroutine continues there when next woken.
 * The job must be quiescent (not busy).  Main thread.
 */
void job_set_aio_context(Job *job, AioContext *ctx);

/* ---- Inside run (the job's coroutine) ---- */

/* Pause here if a pause is requested and no hard cancel is. */
void coroutine_fn job_pause_point(Job *job);

/*
 * Sleep @ns (0 yields to the event loop once), waking early for
 * job_enter() or a pause request; then a pause point.
 */
void coroutine_fn job_sleep_ns(Job *job, int64_t ns);

/* Wait for job_enter() (or a pause request); then a pause point. */
void coroutine_fn job_yield(Job *job);

/*
 * A job that needs "complete" is ready to receive it: running becomes
 * ready, and the ready event is sent.
 */
void job_transition_to_ready(Job *job);

/* Progress: units done, and units that remain (total = done + left). */
void job_progress_update(Job *job, uint64_t done);
void job_progress_set_remaining(Job *job, uint64_t remaining);
void job_progress_increase_remaining(Job *job, uint64_t delta);

/* ---- Waiting for jobs (tools, tests, shutdown) ---- */

/*
 * Call @finish (may be NULL) on @job, then poll until the job completed
 * (see job_is_completed(): with auto-finalize it has concluded by then)
 * and return its result: 0, or a negative errno with @errp set from the
 * job's error (-ECANCELED for a cancelled job).  If @finish fails, its
 * error is returned with -EBUSY.  Holds a reference meanwhile.  Main
 * thread, outside coroutines.
 */
int job_finish_sync(Job *job, void (*finish)(Job *job, GError **errp),
                    GError **errp);

/* Cancel (hard) and wait; job_finish_sync() rules.  Main thread. */
int job_cancel_sync(Job *job, bool force);

/* Complete a ready job and wait.  Main thread. */
int job_complete_sync(Job *job, GError **errp);

/* Cancel every job and wait for all of them (shutdown).  Main thread. */
void job_cancel_sync_all(void);

/* ---- Events ---- */

typedef enum JobEventKind {
    JOB_EVENT_STATUS_CHANGE,    /* JOB_STATUS_CHANGE; job's new status */
    JOB_EVENT_READY,            /* BLOCK_JOB_READY */
    JOB_EVENT_PENDING,          /* BLOCK_JOB_PENDING (manual finalize) */
    JOB_EVENT_COMPLETED,        /* BLOCK_JOB_COMPLETED (error if ret < 0) */
    JOB_EVENT_CANCELLED,        /* BLOCK_JOB_CANCELLED */
    JOB_EVENT_ERROR,            /* BLOCK_JOB_ERROR: an I/O error's action */
} JobEventKind;

typedef struct JobEvent {
    JobEventKind kind;
    Job *job;
    JobStatus status;           /* STATUS_CHANGE: the new status */
    /* ERROR: the failed operation and what the job does about it. */
    bool is_read;
    const char *action;         /* "ignore", "report" or "stop" */
} JobEvent;

typedef void JobEventFunc(const JobEvent *event, void *opaque);

/*
 * Be told of every event of every visible (non-internal) job, in the
 * order QEMU emits them.  Listeners run in the thread that changed the
 * job (the job's coroutine for pauses and ready, the main thread for the
 * rest) with the job lock held: they may read the job with the
 * accessors and must not drain, poll or call the verbs.  Main thread.
 */
JobEventListener *job_add_event_listener(JobEventFunc *fn, void *opaque);
void job_remove_event_listener(JobEventListener *l);

/*
 * For blockjob.c: a job whose creation failed after job_create() goes
 * to null and away.  Main thread.
 */
void job_early_fail(Job *job);

/* For blockjob.c: send an event about @job (under the job lock). */
void job_send_event(Job *job, JobEventKind kind, bool is_read,
                    const char *action);

/*
 * query-jobs' JobInfo for @job: id, type, status, current-progress,
 * total-progress and error if it failed.  Main thread.
 */
JsonObject *job_query_info(Job *job);

/* The job's error message, or NULL if it did not fail. */
const char *job_error_message(Job *job);

/* The job lock, for blockjob.c's state and for tests. */
void job_lock(void);
void job_unlock(void);

#endif /* QEMU_JOB_H */
