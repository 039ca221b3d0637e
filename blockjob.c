/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Block jobs: edges to nodes with drain handlers that pause the job,
 * context moves, rate limits, error policies, queries and events, and
 * the filter nodes jobs insert above the nodes they work on.
 *
 * Copyright (c) 2026 The Sluice authors
 */
#include "qemu/osdep.h"

#include "block/blockjob.h"
#include "block/graph-ops.h"
#include "qemu/main-loop.h"

/* One edge of a job and the drain handler that goes with it. */
struct BlockJobNode {
    BlockJob *job;
    BdrvChild *child;
    AioDrainHandler *drain;
};

static const char *const on_error_names[BLOCKDEV_ON_ERROR__MAX] = {
    [BLOCKDEV_ON_ERROR_REPORT] = "report",
    [BLOCKDEV_ON_ERROR_IGNORE] = "ignore",
    [BLOCKDEV_ON_ERROR_ENOSPC] = "enospc",
    [BLOCKDEV_ON_ERROR_STOP] = "stop",
    [BLOCKDEV_ON_ERROR_AUTO] = "auto",
};

bool blockdev_on_error_parse(const char *str, BlockdevOnError *out)
{
    int i;

    for (i = 0; i < BLOCKDEV_ON_ERROR__MAX; i++) {
        if (strcmp(str, on_error_names[i]) == 0) {
            *out = i;
            return true;
        }
    }
    return false;
}

static const BlockJobDriver *block_job_driver(BlockJob *job)
{
    return container_of(job->job.driver, BlockJobDriver, job_driver);
}

/* ---- Drain: pause at the next pause point ---- */

static void block_job_drained_begin(void *opaque)
{
    BlockJobNode *n = opaque;

    job_drained_begin(&n->job->job);
}

static void block_job_drained_end(void *opaque)
{
    BlockJobNode *n = opaque;

    job_drained_end(&n->job->job);
}

static bool block_job_drained_poll(void *opaque)
{
    BlockJobNode *n = opaque;
    BlockJob *job = n->job;
    const BlockJobDriver *drv = block_job_driver(job);

    if (!job_drain_busy(&job->job)) {
        return false;
    }
    return drv->drained_poll ? drv->drained_poll(job) : true;
}

static const AioDrainOps block_job_drain_ops = {
    .drained_begin = block_job_drained_begin,
    .drained_end = block_job_drained_end,
    .drained_poll = block_job_drained_poll,
};

/* ---- The job as a parent of its nodes ---- */

static char *child_job_get_parent_desc(BdrvChild *c)
{
    BlockJobNode *n = c->opaque;
    Job *job = &n->job->job;

    return g_strdup_printf("%s job '%s'", job_type_str(job_type(job)),
                           job->id ?: "");
}

/*
 * The node moves to @ctx (both contexts drained, so the job is parked):
 * the handler moves with it, registered in the new context first (it
 * begins at once) and removed from the old one (it ends at once), so the
 * job never looks resumed in between.  The job's coroutine follows its
 * main node.
 */
static void child_job_set_aio_context(BdrvChild *c, AioContext *ctx)
{
    BlockJobNode *n = c->opaque;
    AioDrainHandler *old = n->drain;

    n->drain = aio_context_add_drain_ops(ctx, &block_job_drain_ops, n);
    aio_context_remove_drain_ops(old);
    if (n->job->nodes && n->job->nodes->data == n) {
        job_set_aio_context(&n->job->job, ctx);
    }
}

static const BdrvChildClass child_job = {
    .parent_is_bds = false,
    .get_parent_desc = child_job_get_parent_desc,
    .set_aio_context = child_job_set_aio_context,
};

BdrvChild *block_job_add_bdrv(BlockJob *job, const char *name,
                              BlockDriverState *bs, uint64_t perm,
                              uint64_t shared_perm, GError **errp)
{
    BlockJobNode *n = g_new0(BlockJobNode, 1);

    assert(qemu_in_main_thread());
    n->job = job;
    n->child = bdrv_root_attach_child(bs, name, &child_job, 0, perm,
                                      shared_perm, n, errp);
    if (!n->child) {
        g_free(n);
        return NULL;
    }
    /* Born into a drained section, the handler pauses the job at once. */
    n->drain = aio_context_add_drain_ops(bdrv_get_aio_context(bs),
                                         &block_job_drain_ops, n);
    job->nodes = g_slist_append(job->nodes, n);
    return n->child;
}

BdrvChild *block_job_main_child(BlockJob *job)
{
    return job->nodes ? ((BlockJobNode *)job->nodes->data)->child : NULL;
}

void block_job_remove_all_bdrv(BlockJob *job)
{
    assert(qemu_in_main_thread());
    while (job->nodes) {
        BlockJobNode *n = job->nodes->data;

        job->nodes = g_slist_delete_link(job->nodes, job->nodes);
        aio_context_remove_drain_ops(n->drain);
        bdrv_root_unref_child(n->child);
        g_free(n);
    }
}

bool block_job_has_bdrv(BlockJob *job, BlockDriverState *bs)
{
    GSList *l;

    for (l = job->nodes; l; l = l->next) {
        BlockJobNode *n = l->data;

        if (n->child->bs == bs) {
            return true;
        }
    }
    return false;
}

void block_job_free(Job *job)
{
    block_job_remove_all_bdrv(container_of(job, BlockJob, job));
}

void block_job_change_speed(Job *job, int64_t speed)
{
    BlockJob *bjob = container_of(job, BlockJob, job);

    job_lock();
    bjob->speed = speed;
    job_unlock();
}

void block_job_user_resume(Job *job)
{
    BlockJob *bjob = container_of(job, BlockJob, job);

    job_lock();
    bjob->iostatus = BLOCK_DEVICE_IO_STATUS_OK;
    job_unlock();
}

bool block_job_set_speed(BlockJob *job, int64_t speed, GError **errp)
{
    return job_set_speed(&job->job, speed, errp);
}

void *block_job_create(const char *job_id, const BlockJobDriver *driver,
                       JobTxn *txn, BlockDriverState *bs, uint64_t perm,
                       uint64_t shared_perm, int64_t speed, int flags,
                       JobCompletionFunc *cb, void *opaque, GError **errp)
{
    BlockJob *job;

    assert(qemu_in_main_thread());
    assert(driver->job_driver.free == block_job_free);
    assert(driver->job_driver.instance_size >= sizeof(BlockJob));

    if (speed < 0) {
        error_setg(errp, "Invalid parameter 'speed'");
        return NULL;
    }
    job = job_create(job_id, &driver->job_driver, txn,
                     bdrv_get_aio_context(bs), flags, cb, opaque, errp);
    if (!job) {
        return NULL;
    }
    job->speed = speed;
    if (!block_job_add_bdrv(job, "main node", bs, perm, shared_perm, errp)) {
        job_early_fail(&job->job);
        return NULL;
    }
    return job;
}

/* ---- Rate limit ---- */

#define BLOCK_JOB_SLICE_NS (100 * SCALE_MS)

void block_job_ratelimit_processed_bytes(BlockJob *job, uint64_t n)
{
    job->limit.dispatched += n;
}

/*
 * How long to wait before moving more data: a slice's quota may be
 * spent at once, and what goes beyond is paid with the following slices.
 * Idle slices credit their quota, so a job never waits after a pause.
 */
int64_t block_job_ratelimit_get_delay(BlockJob *job)
{
    BlockJobRateLimit *rl = &job->limit;
    int64_t now = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
    int64_t speed;
    uint64_t quota;

    job_lock();
    speed = job->speed;
    job_unlock();
    if (!speed) {
        rl->dispatched = 0;
        return 0;
    }

    quota = MAX((uint64_t)speed / (NANOSECONDS_PER_SECOND /
                                   BLOCK_JOB_SLICE_NS), 1);
    if (now >= rl->slice_end) {
        uint64_t slices = (now - rl->slice_end) / BLOCK_JOB_SLICE_NS + 1;
        uint64_t credit = slices > UINT64_MAX / quota ? UINT64_MAX :
                          slices * quota;

        rl->dispatched = rl->dispatched > credit ?
                         rl->dispatched - credit : 0;
        rl->slice_end += slices * BLOCK_JOB_SLICE_NS;
    }
    if (rl->dispatched < quota) {
        return 0;
    }
    return rl->slice_end - now +
           (int64_t)(rl->dispatched / quota - 1) * BLOCK_JOB_SLICE_NS;
}

void coroutine_fn block_job_ratelimit_sleep(BlockJob *job)
{
    int64_t delay;

    do {
        delay = block_job_ratelimit_get_delay(job);
        job_sleep_ns(&job->job, delay);
    } while (delay && !job_is_cancelled(&job->job));
}

/* ---- Errors ---- */

BlockErrorAction block_job_error_action(BlockJob *job,
                                        BlockdevOnError on_err,
                                        bool is_read, int error)
{
    static const char *const action_names[] = {
        [BLOCK_ERROR_ACTION_IGNORE] = "ignore",
        [BLOCK_ERROR_ACTION_REPORT] = "report",
        [BLOCK_ERROR_ACTION_STOP] = "stop",
    };
    BlockErrorAction action;

    switch (on_err) {
    case BLOCKDEV_ON_ERROR_ENOSPC:
        action = error == ENOSPC ? BLOCK_ERROR_ACTION_STOP :
                 BLOCK_ERROR_ACTION_REPORT;
        break;
    case BLOCKDEV_ON_ERROR_STOP:
        action = BLOCK_ERROR_ACTION_STOP;
        break;
    case BLOCKDEV_ON_ERROR_IGNORE:
        action = BLOCK_ERROR_ACTION_IGNORE;
        break;
    case BLOCKDEV_ON_ERROR_REPORT:
    case BLOCKDEV_ON_ERROR_AUTO:
    default:
        action = BLOCK_ERROR_ACTION_REPORT;
        break;
    }

    job_send_event(&job->job, JOB_EVENT_ERROR, is_read,
                   action_names[action]);
    if (action == BLOCK_ERROR_ACTION_STOP) {
        job_lock();
        /* A pause the user sees, and lifts with a resume. */
        if (!job->job.user_paused) {
            job->job.user_paused = true;
            job_pause(&job->job);
        }
        job->iostatus = error == ENOSPC ? BLOCK_DEVICE_IO_STATUS_NOSPACE :
                        BLOCK_DEVICE_IO_STATUS_FAILED;
        job_unlock();
    }
    return action;
}

/* ---- Queries and events ---- */

bool is_block_job(Job *job)
{
    switch (job_type(job)) {
    case JOB_TYPE_COMMIT:
    case JOB_TYPE_STREAM:
    case JOB_TYPE_MIRROR:
    case JOB_TYPE_BACKUP:
        return true;
    default:
        return false;
    }
}

BlockJob *block_job_get(const char *id)
{
    Job *job = job_get(id);

    return job && is_block_job(job) ? container_of(job, BlockJob, job) :
           NULL;
}

BlockJob *block_job_next(BlockJob *bjob)
{
    Job *job = bjob ? &bjob->job : NULL;

    do {
        job = job_next(job);
    } while (job && !is_block_job(job));
    return job ? container_of(job, BlockJob, job) : NULL;
}

static const char *iostatus_str(BlockDeviceIoStatus s)
{
    switch (s) {
    case BLOCK_DEVICE_IO_STATUS_FAILED:
        return "failed";
    case BLOCK_DEVICE_IO_STATUS_NOSPACE:
        return "nospace";
    default:
        return "ok";
    }
}

JsonObject *block_job_query(BlockJob *bjob)
{
    JsonObject *o = json_object_new();
    Job *job = &bjob->job;

    job_lock();
    json_object_set_string_member(o, "type", job_type_str(job_type(job)));
    json_object_set_string_member(o, "device", job->id ?: "");
    json_object_set_int_member(o, "len", job->progress_total);
    json_object_set_int_member(o, "offset", job->progress_current);
    json_object_set_boolean_member(o, "busy", job->busy);
    json_object_set_boolean_member(o, "paused", job->pause_count > 0);
    json_object_set_int_member(o, "speed", bjob->speed);
    json_object_set_string_member(o, "io-status",
                                  iostatus_str(bjob->iostatus));
    json_object_set_boolean_member(o, "ready",
                                   job->status == JOB_STATUS_READY ||
                                   job->status == JOB_STATUS_STANDBY);
    json_object_set_string_member(o, "status", job_status_str(job->status));
    json_object_set_boolean_member(o, "auto-finalize", job->auto_finalize);
    json_object_set_boolean_member(o, "auto-dismiss", job->auto_dismiss);
    if (job->ret < 0 && job->err) {
        json_object_set_string_member(o, "error", job->err->message);
    }
    job_unlock();
    return o;
}

/* type, device, len, offset, speed: what most BLOCK_JOB_* events carry. */
static JsonObject *block_job_event_common(BlockJob *bjob)
{
    JsonObject *o = json_object_new();
    Job *job = &bjob->job;

    json_object_set_string_member(o, "type", job_type_str(job_type(job)));
    json_object_set_string_member(o, "device", job->id);
    json_object_set_int_member(o, "len", job->progress_total);
    json_object_set_int_member(o, "offset", job->progress_current);
    json_object_set_int_member(o, "speed", bjob->speed);
    return o;
}

JsonObject *block_job_event_qmp(const JobEvent *ev, const char **name)
{
    Job *job = ev->job;
    BlockJob *bjob = container_of(job, BlockJob, job);
    JsonObject *o;

    if (ev->kind == JOB_EVENT_STATUS_CHANGE) {
        *name = "JOB_STATUS_CHANGE";
        o = json_object_new();
        json_object_set_string_member(o, "id", job->id);
        json_object_set_string_member(o, "status",
                                      job_status_str(ev->status));
        return o;
    }
    if (!is_block_job(job)) {
        return NULL;
    }

    job_lock();
    switch (ev->kind) {
    case JOB_EVENT_READY:
        *name = "BLOCK_JOB_READY";
        o = block_job_event_common(bjob);
        break;
    case JOB_EVENT_PENDING:
        *name = "BLOCK_JOB_PENDING";
        o = json_object_new();
        json_object_set_string_member(o, "type",
                                      job_type_str(job_type(job)));
        json_object_set_string_member(o, "id", job->id);
        break;
    case JOB_EVENT_COMPLETED:
        *name = "BLOCK_JOB_COMPLETED";
        o = block_job_event_common(bjob);
        if (job->ret < 0 && job->err) {
            json_object_set_string_member(o, "error", job->err->message);
        }
        break;
    case JOB_EVENT_CANCELLED:
        *name = "BLOCK_JOB_CANCELLED";
        o = block_job_event_common(bjob);
        break;
    case JOB_EVENT_ERROR:
        *name = "BLOCK_JOB_ERROR";
        o = json_object_new();
        json_object_set_string_member(o, "device", job->id);
        json_object_set_string_member(o, "operation",
                                      ev->is_read ? "read" : "write");
        json_object_set_string_member(o, "action", ev->action);
        break;
    default:
        g_assert_not_reached();
    }
    job_unlock();
    return o;
}

/* ---- Filter nodes ---- */

typedef struct JobFilterState {
    /* Writes go here too while write_through (node's context). */
    BdrvChild *target;
    bool write_through;
    /* Ranges are rounded out to this (the filtered node's cluster). */
    int64_t granularity;
    /* Locked ranges; the node's context only. */
    QLIST_HEAD(, BlockJobRange) ranges;
} JobFilterState;

static int job_filter_open(BlockDriverState *bs, JsonObject *options,
                           int flags, GError **errp)
{
    JobFilterState *s = bs->opaque;

    /* The children are attached by block_job_insert_filter(). */
    QLIST_INIT(&s->ranges);
    s->granularity = 1;
    return 0;
}

static void job_filter_close(BlockDriverState *bs)
{
    JobFilterState *s = bs->opaque;

    assert(QLIST_EMPTY(&s->ranges));
}

void coroutine_fn block_job_filter_lock(BlockDriverState *filter,
                                        BlockJobRange *r, int64_t offset,
                                        int64_t bytes)
{
    JobFilterState *s = filter->opaque;
    BlockJobRange *o;

    r->start = QEMU_ALIGN_DOWN(offset, s->granularity);
    r->end = QEMU_ALIGN_UP(offset + bytes, s->granularity);
    qemu_co_queue_init(&r->waiters);
retry:
    QLIST_FOREACH(o, &s->ranges, next) {
        if (o->start < r->end && r->start < o->end) {
            qemu_co_queue_wait(&o->waiters, NULL);
            goto retry;
        }
    }
    QLIST_INSERT_HEAD(&s->ranges, r, next);
}

void coroutine_fn block_job_filter_unlock(BlockDriverState *filter,
                                          BlockJobRange *r)
{
    QLIST_REMOVE(r, next);
    qemu_co_queue_restart_all(&r->waiters);
}

void block_job_filter_set_write_through(BlockDriverState *filter, bool on)
{
    JobFilterState *s = filter->opaque;

    s->write_through = on;
}

static int coroutine_fn job_filter_co_preadv(BlockDriverState *bs,
                                             int64_t offset, int64_t bytes,
                                             QEMUIOVector *qiov,
                                             BdrvRequestFlags flags)
{
    if (!bs->file) {
        return -ENOMEDIUM;
    }
    return bdrv_co_preadv(bs->file, offset, bytes, qiov, flags);
}

/* A write or write-zeroes (@qiov NULL) through the filter. */
static int coroutine_fn job_filter_co_write(BlockDriverState *bs,
                                            int64_t offset, int64_t bytes,
                                            QEMUIOVector *qiov,
                                            BdrvRequestFlags flags)
{
    JobFilterState *s = bs->opaque;
    BlockJobRange r;
    int ret;

    if (!bs->file) {
        return -ENOMEDIUM;
    }
    block_job_filter_lock(bs, &r, offset, bytes);
    if (qiov) {
        ret = bdrv_co_pwritev(bs->file, offset, bytes, qiov, flags);
    } else {
        ret = bdrv_co_pwrite_zeroes(bs->file, offset, bytes, flags);
    }
    if (ret == 0 && s->write_through && s->target) {
        if (qiov) {
            ret = bdrv_co_pwritev(s->target, offset, bytes, qiov, flags);
        } else {
            ret = bdrv_co_pwrite_zeroes(s->target, offset, bytes,
                                        flags & ~BDRV_REQ_MAY_UNMAP);
        }
    }
    block_job_filter_unlock(bs, &r);
    return ret;
}

static int coroutine_fn job_filter_co_pwritev(BlockDriverState *bs,
                                              int64_t offset, int64_t bytes,
                                              QEMUIOVector *qiov,
                                              BdrvRequestFlags flags)
{
    return job_filter_co_write(bs, offset, bytes, qiov, flags);
}

static int coroutine_fn job_filter_co_pwrite_zeroes(BlockDriverState *bs,
                                                    int64_t offset,
                                                    int64_t bytes,
                                                    BdrvRequestFlags flags)
{
    return job_filter_co_write(bs, offset, bytes, NULL, flags);
}

static int coroutine_fn job_filter_co_pdiscard(BlockDriverState *bs,
                                               int64_t offset, int64_t bytes)
{
    BlockJobRange r;
    int ret;

    if (!bs->file) {
        return -ENOMEDIUM;
    }
    block_job_filter_lock(bs, &r, offset, bytes);
    ret = bdrv_co_pdiscard(bs->file, offset, bytes);
    block_job_filter_unlock(bs, &r);
    return ret;
}

static int64_t coroutine_fn job_filter_co_getlength(BlockDriverState *bs)
{
    return bs->file ? bdrv_co_getlength(bs->file->bs) : 0;
}

/*
 * The filter's own view is everything below it: report it the way a
 * layer that provides its content does, so that a backing chain walk
 * through the filter sees the right thing.
 */
static int coroutine_fn job_filter_co_block_status(BlockDriverState *bs,
                                                   int64_t offset,
                                                   int64_t bytes,
                                                   int64_t *pnum,
                                                   int64_t *map,
                                                   BlockDriverState **file)
{
    int ret;

    if (!bs->file) {
        return -ENOMEDIUM;
    }
    ret = bdrv_co_block_status_above(bs->file->bs, NULL, offset, bytes,
                                     pnum, NULL, NULL, NULL);
    if (ret < 0) {
        return ret;
    }
    return ret & (BDRV_BLOCK_DATA | BDRV_BLOCK_ZERO);
}

static void job_filter_child_perm(BlockDriverState *bs, BdrvChild *c,
                                  unsigned int role, uint64_t parent_perm,
                                  uint64_t parent_shared, uint64_t *nperm,
                                  uint64_t *nshared)
{
    if (strcmp(c->name, "target") == 0) {
        /* Only written, on the parents' behalf; resizing is the job's. */
        *nperm = parent_perm & (BLK_PERM_WRITE | BLK_PERM_WRITE_UNCHANGED);
        *nshared = BLK_PERM_ALL;
        return;
    }
    bdrv_default_perms(bs, c, role, parent_perm, parent_shared, nperm,
                       nshared);
}

#define JOB_FILTER_DRIVER(name_)                                    \
    {                                                               \
        .format_name = name_,                                       \
        .instance_size = sizeof(JobFilterState),                    \
        .bdrv_open = job_filter_open,                               \
        .bdrv_close = job_filter_close,                             \
        .bdrv_co_preadv = job_filter_co_preadv,                     \
        .bdrv_co_pwritev = job_filter_co_pwritev,                   \
        .bdrv_co_pwrite_zeroes = job_filter_co_pwrite_zeroes,       \
        .bdrv_co_pdiscard = job_filter_co_pdiscard,                 \
        .bdrv_co_getlength = job_filter_co_getlength,               \
        .bdrv_co_block_status = job_filter_co_block_status,         \
        .bdrv_child_perm = job_filter_child_perm,                   \
    }

/* Not registered: users cannot open them, as in QEMU. */
static BlockDriver job_filter_drivers[] = {
    JOB_FILTER_DRIVER("stream_top"),
    JOB_FILTER_DRIVER("commit_top"),
};

/* Any job's edges stay on the node a filter goes above. */
static bool skip_job_edges(BdrvChild *c, void *opaque)
{
    return c->klass == &child_job;
}

BlockDriverState *block_job_insert_filter(BlockJob *job,
                                          const char *driver_name,
                                          BlockDriverState *bs,
                                          BlockDriverState *target,
                                          GError **errp)
{
    BlockDriver *drv = NULL;
    BlockDriverState *filter;
    BlockDriverInfo bdi;
    JobFilterState *s;
    guint i;

    assert(qemu_in_main_thread());
    for (i = 0; i < G_N_ELEMENTS(job_filter_drivers); i++) {
        if (strcmp(job_filter_drivers[i].format_name, driver_name) == 0) {
            drv = &job_filter_drivers[i];
        }
    }
    assert(drv);

    filter = bdrv_open_driver(drv, NULL, NULL,
                              bdrv_is_read_only(bs) ? 0 : BDRV_O_RDWR,
                              errp);
    if (!filter) {
        return NULL;
    }
    s = filter->opaque;
    if (bdrv_try_change_aio_context(filter, bdrv_get_aio_context(bs),
                                    errp) < 0) {
        goto fail;
    }
    if (!bdrv_attach_child(filter, bs, "file",
                           BDRV_CHILD_FILTERED | BDRV_CHILD_PRIMARY, errp)) {
        goto fail;
    }
    if (target) {
        s->target = bdrv_attach_child(filter, target, "target",
                                      BDRV_CHILD_DATA, errp);
        if (!s->target) {
            goto fail;
        }
    }
    g_strlcpy(filter->filename, bs->filename, sizeof(filter->filename));
    s->granularity = bs->bl.request_alignment;
    if (bdrv_get_info(bs, &bdi) == 0 && bdi.cluster_size > 0) {
        s->granularity = MAX(s->granularity, bdi.cluster_size);
    }
    if (!bdrv_replace_node(bs, filter, skip_job_edges, NULL, errp)) {
        goto fail;
    }
    return filter;

fail:
    bdrv_unref(filter);
    return NULL;
}

void block_job_drop_filter(BlockDriverState *filter, BlockDriverState *to)
{
    GError *err = NULL;

    assert(qemu_in_main_thread());
    if (!to) {
        to = filter->file->bs;
    }
    if (!bdrv_replace_node(filter, to, NULL, NULL, &err)) {
        g_warning("could not remove filter '%s': %s", filter->node_name,
                  err->message);
        g_error_free(err);
    }
    bdrv_unref(filter);
}
