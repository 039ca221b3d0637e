/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Block jobs: jobs that work on nodes.  They hold edges to their nodes
 * (for permissions, references and I/O), pause through the drain
 * registry of their nodes' contexts, follow their nodes to other
 * contexts, rate-limit themselves and apply an error policy.  Also the
 * jobs' filter nodes and the block job commands (stream, commit).
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * Drain: every edge of a job registers a drain handler with its node's
 * context.  Begin asks the job to pause at its next pause point, the
 * handler is busy until it has (or its run is over), and end withdraws
 * the request.  The completion of a job (graph changes) waits until no
 * drained section covers any of its nodes.
 *
 * I/O: a job reads and writes through its own edges with the bdrv_co_*
 * functions, not through BlockBackends, because a backend queues new
 * requests while its context is drained and a job must be able to finish
 * the request it is in, and release what it holds, before it parks.
 * docs/devel/jobs.md has the reasoning.
 */
#ifndef BLOCK_BLOCKJOB_H
#define BLOCK_BLOCKJOB_H

#include "block/block_int.h"
#include "qemu/job.h"

typedef struct BlockJob BlockJob;
typedef struct BlockJobNode BlockJobNode;

/* QEMU's BlockdevOnError, in QAPI order. */
typedef enum BlockdevOnError {
    BLOCKDEV_ON_ERROR_REPORT,
    BLOCKDEV_ON_ERROR_IGNORE,
    BLOCKDEV_ON_ERROR_ENOSPC,
    BLOCKDEV_ON_ERROR_STOP,
    BLOCKDEV_ON_ERROR_AUTO,
    BLOCKDEV_ON_ERROR__MAX,
} BlockdevOnError;

/* QEMU's BlockErrorAction. */
typedef enum BlockErrorAction {
    BLOCK_ERROR_ACTION_IGNORE,
    BLOCK_ERROR_ACTION_REPORT,
    BLOCK_ERROR_ACTION_STOP,
} BlockErrorAction;

/* QEMU's BlockDeviceIoStatus. */
typedef enum BlockDeviceIoStatus {
    BLOCK_DEVICE_IO_STATUS_OK,
    BLOCK_DEVICE_IO_STATUS_FAILED,
    BLOCK_DEVICE_IO_STATUS_NOSPACE,
} BlockDeviceIoStatus;

/*
 * Parse an on-error value ("report", "ignore", "enospc", "stop",
 * "auto"); false if unknown.
 */
bool blockdev_on_error_parse(const char *str, BlockdevOnError *out);

typedef struct BlockJobDriver {
    /*
     * The generic part.  .free must be block_job_free, .set_speed
     * block_job_change_speed and .user_resume block_job_user_resume (or
     * functions that call them).
     */
    JobDriver job_driver;

    /*
     * Optional: still busy for a drain although the job is not parked
     * (e.g. it drains its own nodes and must not be waited for).
     * Called with the context's drain lock held, from any thread.
     */
    bool (*drained_poll)(BlockJob *job);
} BlockJobDriver;

/* A token bucket over slices of time; the job coroutine's own state. */
typedef struct BlockJobRateLimit {
    uint64_t dispatched;        /* bytes accounted in the current slice */
    int64_t slice_end;          /* ns */
} BlockJobRateLimit;

struct BlockJob {
    Job job;
    /* Bytes per second, 0: unlimited.  Job lock. */
    int64_t speed;
    BlockJobRateLimit limit;
    /* Set by the stop error action, reset by resume.  Job lock. */
    BlockDeviceIoStatus iostatus;
    /* The job's edges with their drain handlers.  Main thread. */
    GSList *nodes;
};

/*
 * Create a block job on @bs (its "main node": the job runs in @bs's
 * context and holds @perm / shares @shared_perm there), see job_create()
 * for @job_id, @txn, @flags, @cb.  @speed is the initial rate limit
 * ("Invalid parameter 'speed'" if negative).  Returns the job (not
 * started) or NULL with @errp set.  Main thread.
 */
void *block_job_create(const char *job_id, const BlockJobDriver *driver,
                       JobTxn *txn, BlockDriverState *bs, uint64_t perm,
                       uint64_t shared_perm, int64_t speed, int flags,
                       JobCompletionFunc *cb, void *opaque, GError **errp);

/*
 * Give the job an edge @name to @bs holding @perm and sharing
 * @shared_perm (a reference to @bs comes with it), and register its
 * drain handler with @bs's context.  Returns the edge, usable for I/O
 * from the job's coroutine, or NULL with @errp set.  Main thread.
 */
BdrvChild *block_job_add_bdrv(BlockJob *job, const char *name,
                              BlockDriverState *bs, uint64_t perm,
                              uint64_t shared_perm, GError **errp);

/* The job's first edge (to the main node), or NULL once removed. */
BdrvChild *block_job_main_child(BlockJob *job);

/* Drop every edge (and drain handler) of the job.  Main thread. */
void block_job_remove_all_bdrv(BlockJob *job);

/* True if the job has an edge to @bs. */
bool block_job_has_bdrv(BlockJob *job, BlockDriverState *bs);

/* For BlockJobDriver.job_driver (see there). */
void block_job_free(Job *job);
void block_job_change_speed(Job *job, int64_t speed);
void block_job_user_resume(Job *job);

/* job_set_speed() of a block job (block-job-set-speed). */
bool block_job_set_speed(BlockJob *job, int64_t speed, GError **errp);

/*
 * Rate limiting, in the job's coroutine: account @n bytes moved, and
 * sleep as long as the limit says (a pause point even without a limit).
 * block_job_ratelimit_get_delay() only says how long that would be (ns),
 * for a job that waits only when it has more data to move.
 */
void block_job_ratelimit_processed_bytes(BlockJob *job, uint64_t n);
int64_t block_job_ratelimit_get_delay(BlockJob *job);
void coroutine_fn block_job_ratelimit_sleep(BlockJob *job);

/*
 * What to do about an I/O error @error (positive errno) of a read
 * (@is_read) or write, under policy @on_err: sends BLOCK_JOB_ERROR, and
 * for stop pauses the job as if the user had (the job parks at its next
 * pause point; resuming retries).  In the job's coroutine.
 */
BlockErrorAction block_job_error_action(BlockJob *job,
                                        BlockdevOnError on_err,
                                        bool is_read, int error);

/* Jobs of the block kinds (commit, stream, mirror, backup). */
bool is_block_job(Job *job);
BlockJob *block_job_get(const char *id);
BlockJob *block_job_next(BlockJob *job);

/*
 * query-block-jobs' BlockJobInfo: type, device, len, offset, busy,
 * paused, speed, io-status, ready, status, auto-finalize, auto-dismiss,
 * and error if it failed.  Main thread.
 */
JsonObject *block_job_query(BlockJob *job);

/*
 * The QMP form of a job event: sets *@name ("JOB_STATUS_CHANGE",
 * "BLOCK_JOB_COMPLETED", ...) and returns its "data" member with QEMU's
 * members in QEMU's order, or NULL if the event has none (BLOCK_JOB_*
 * events of jobs that are not block jobs).  For event listeners.
 */
JsonObject *block_job_event_qmp(const JobEvent *event, const char **name);

/* ---- The jobs' filter nodes ---- */

/*
 * A filter node a job puts above @bs: it takes @bs's parents (but the
 * job's own edges), passes everything through to @bs, and lets the job
 * lock byte ranges against the writes that go through it.  With @target
 * (may be NULL) it can also write every write through to @target, the
 * way active commit keeps its base in step.  @driver_name is what QEMU
 * calls such a node ("stream_top", "commit_top").  Main thread.
 */
BlockDriverState *block_job_insert_filter(BlockJob *job,
                                          const char *driver_name,
                                          BlockDriverState *bs,
                                          BlockDriverState *target,
                                          GError **errp);

/*
 * Remove @filter: its parents go to @to (NULL: back to the node it
 * filtered) and it is released.  Main thread.
 */
void block_job_drop_filter(BlockDriverState *filter, BlockDriverState *to);

/* Start or stop writing through to the target.  Filter's context. */
void block_job_filter_set_write_through(BlockDriverState *filter, bool on);

/* A locked byte range of a filter. */
typedef struct BlockJobRange {
    int64_t start;
    int64_t end;
    CoQueue waiters;
    QLIST_ENTRY(BlockJobRange) next;
} BlockJobRange;

/*
 * Lock [@offset, @offset + @bytes) (rounded out to the filtered node's
 * alignment) against writes through @filter, waiting for those in
 * progress.  Coroutine in the filter's context, holding the graph read
 * lock (taken before, as for any lock).
 */
void coroutine_fn block_job_filter_lock(BlockDriverState *filter,
                                        BlockJobRange *r, int64_t offset,
                                        int64_t bytes);
void coroutine_fn block_job_filter_unlock(BlockDriverState *filter,
                                          BlockJobRange *r);

/* ---- Stream and commit (block/stream.c, block/commit.c) ---- */

/*
 * Copy into @bs every range its backing chain above @base (exclusive;
 * NULL: the whole chain) provides, then make @base its backing file,
 * recording @backing_file_str (NULL: @base's file name) and @base's
 * format in the image; the nodes in between are dropped.  Writes to @bs
 * may go on meanwhile.  @bs is reopened read-write if needed.  Starts
 * the job; returns it, or NULL with @errp set.  Main thread.
 */
BlockJob *stream_start(const char *job_id, BlockDriverState *bs,
                       BlockDriverState *base,
                       const char *backing_file_str, int creation_flags,
                       int64_t speed, BlockdevOnError on_error,
                       JobCompletionFunc *cb, void *opaque, GError **errp);

/*
 * Intermediate commit: copy what @top and the nodes below it down to
 * @base (exclusive) provide into @base, then make @base the backing file
 * of @top's overlay in @bs's chain (recording @backing_file_str or
 * @base's name), dropping @top and the nodes in between.  @top must not
 * be @bs (that is commit_active_start()).  @base is reopened read-write
 * for the job.  Starts the job; returns it or NULL with @errp set.
 */
BlockJob *commit_start(const char *job_id, BlockDriverState *bs,
                       BlockDriverState *base, BlockDriverState *top,
                       int creation_flags, int64_t speed,
                       BlockdevOnError on_error,
                       const char *backing_file_str,
                       JobCompletionFunc *cb, void *opaque, GError **errp);

/*
 * Active commit: commit the active node @bs (which may be written
 * meanwhile) into @base.  After one pass the job is ready and @base
 * receives every new write as well; on job_complete() @base replaces
 * @bs in all its parents.  Cancelling a ready job without force ends it
 * successfully without that switch, as in QEMU.  Starts the job; returns
 * it or NULL with @errp set.  Main thread.
 */
BlockJob *commit_active_start(const char *job_id, BlockDriverState *bs,
                              BlockDriverState *base, int creation_flags,
                              int64_t speed, BlockdevOnError on_error,
                              JobCompletionFunc *cb, void *opaque,
                              GError **errp);

#endif /* BLOCK_BLOCKJOB_H */
