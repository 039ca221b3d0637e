/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The stream job: copy what a node's backing chain provides into the
 * node, then drop the backing files above the new base.
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * Writes to the node may go on while the job runs.  A "stream_top"
 * filter above the node takes its parents, and the job copies each range
 * with the range locked against the writes that pass the filter: it
 * checks the node's allocation, reads the chain's data and writes it
 * into the node without a guest write slipping in between (which the
 * copy would otherwise undo).  The job does its I/O below the filter.
 */
#include "qemu/osdep.h"

#include "block/blockjob.h"
#include "block/graph-ops.h"
#include "qemu/main-loop.h"

/* Bytes moved per iteration at most (QEMU's figure). */
#define STREAM_CHUNK (512 * 1024)

typedef struct StreamBlockJob {
    BlockJob common;
    BlockDriverState *top;          /* referenced */
    /*
     * The lowest node that goes away: base is whatever is below it at
     * the end.  NULL if nothing is above the base.
     */
    BlockDriverState *bottom;
    BlockDriverState *filter;
    char *backing_file_str;
    BlockdevOnError on_error;
    bool top_was_read_only;
} StreamBlockJob;

static BlockDriverState *stream_base(StreamBlockJob *s)
{
    return s->bottom ? bdrv_backing_bs(s->bottom) : bdrv_backing_bs(s->top);
}

/*
 * Copy [offset, offset + bytes) if the chain above the base provides
 * it and the top does not: *@pnum gets how many bytes this settled,
 * *@copied whether they were copied.  Holds the range against writes.
 */
static int coroutine_fn stream_populate(StreamBlockJob *s, int64_t offset,
                                        int64_t bytes, void *buf,
                                        int64_t *pnum, bool *copied)
{
    BdrvChild *child = block_job_main_child(&s->common);
    BlockDriverState *backing;
    BlockJobRange r;
    QEMUIOVector qiov;
    int64_t n;
    int ret;

    *copied = false;
    block_job_filter_lock(s->filter, &r, offset, bytes);

    ret = bdrv_co_block_status(s->top, offset, bytes, &n, NULL, NULL);
    if (ret < 0) {
        goto out;
    }
    if (n == 0) {
        /* The node shrank under us: nothing more to do here. */
        *pnum = bytes;
        ret = 0;
        goto out;
    }
    if (ret & BDRV_BLOCK_ALLOCATED) {
        *pnum = n;
        ret = 0;
        goto out;
    }

    backing = bdrv_backing_bs(s->top);
    ret = bdrv_co_block_status_above(backing, stream_base(s), offset, n,
                                     &n, NULL, NULL, NULL);
    if (ret < 0) {
        goto out;
    }
    *pnum = n;
    if (!(ret & BDRV_BLOCK_ALLOCATED)) {
        /* The base (or nothing) provides it: it reads the same later. */
        ret = 0;
        goto out;
    }

    if ((ret & BDRV_BLOCK_ZERO) && !(ret & BDRV_BLOCK_DATA)) {
        ret = bdrv_co_pwrite_zeroes(child, offset, n, 0);
    } else {
        qemu_iovec_init_buf(&qiov, buf, n);
        ret = bdrv_co_preadv(child, offset, n, &qiov, 0);
        if (ret == 0) {
            ret = bdrv_co_pwritev(child, offset, n, &qiov, 0);
        }
    }
    *copied = ret == 0;

out:
    block_job_filter_unlock(s->filter, &r);
    return ret;
}

static int coroutine_fn stream_run(Job *job, GError **errp)
{
    StreamBlockJob *s = container_of(job, StreamBlockJob, common.job);
    g_autofree void *buf = NULL;
    int64_t len, offset, n = 0;
    int error = 0;
    int ret;

    len = bdrv_co_getlength(s->top);
    if (len < 0) {
        return len;
    }
    job_progress_set_remaining(job, len);
    if (!s->bottom) {
        /* Nothing between the node and its base. */
        job_progress_update(job, len);
        return 0;
    }

    buf = g_malloc(STREAM_CHUNK);
    for (offset = 0; offset < len; offset += n) {
        bool copied;

        /* Sleeps, pauses and drains happen without the graph lock. */
        block_job_ratelimit_sleep(&s->common);
        if (job_is_cancelled(job)) {
            break;
        }

        bdrv_graph_co_rdlock();
        ret = stream_populate(s, offset, MIN(STREAM_CHUNK, len - offset),
                              buf, &n, &copied);
        bdrv_graph_co_rdunlock();

        if (ret < 0) {
            BlockErrorAction action =
                block_job_error_action(&s->common, s->on_error, true, -ret);

            if (action == BLOCK_ERROR_ACTION_STOP) {
                /* Parked at the next pause point; then retry. */
                n = 0;
                continue;
            }
            if (error == 0) {
                error = ret;
            }
            if (action == BLOCK_ERROR_ACTION_REPORT) {
                break;
            }
            /* Ignored: skip the chunk, but the job still fails. */
            n = MIN(STREAM_CHUNK, len - offset);
        }
        job_progress_update(job, n);
        if (copied) {
            block_job_ratelimit_processed_bytes(&s->common, n);
        }
    }
    return error;
}

/* Make the base the node's backing file, in the graph and the image. */
static int stream_prepare(Job *job)
{
    StreamBlockJob *s = container_of(job, StreamBlockJob, common.job);
    BlockDriverState *base;
    const char *name = NULL, *fmt = NULL;
    GError *err = NULL;
    int ret;

    if (!s->bottom) {
        return 0;
    }
    base = stream_base(s);
    if (base) {
        name = s->backing_file_str ?: base->filename;
        fmt = base->drv->format_name;
    }
    ret = bdrv_change_backing_file(s->top, name, fmt, &err);
    if (ret < 0) {
        g_propagate_error(&job->err, err);
        return ret;
    }
    if (!bdrv_set_backing_hd(s->top, base, &err)) {
        g_propagate_error(&job->err, err);
        return -EPERM;
    }
    return 0;
}

static void stream_clean(Job *job)
{
    StreamBlockJob *s = container_of(job, StreamBlockJob, common.job);

    if (s->filter) {
        block_job_drop_filter(s->filter, s->top);
        s->filter = NULL;
    }
    /* The job's edges hold the dropped nodes; they go now. */
    block_job_remove_all_bdrv(&s->common);
    if (s->top_was_read_only) {
        bdrv_reopen_set_read_only(s->top, true, NULL);
    }
    bdrv_unref(s->top);
    s->top = NULL;
    g_free(s->backing_file_str);
    s->backing_file_str = NULL;
}

static const BlockJobDriver stream_job_driver = {
    .job_driver = {
        .instance_size = sizeof(StreamBlockJob),
        .job_type = JOB_TYPE_STREAM,
        .run = stream_run,
        .prepare = stream_prepare,
        .clean = stream_clean,
        .free = block_job_free,
        .set_speed = block_job_change_speed,
        .user_resume = block_job_user_resume,
    },
};

BlockJob *stream_start(const char *job_id, BlockDriverState *bs,
                       BlockDriverState *base,
                       const char *backing_file_str, int creation_flags,
                       int64_t speed, BlockdevOnError on_error,
                       JobCompletionFunc *cb, void *opaque, GError **errp)
{
    StreamBlockJob *s;
    BlockDriverState *p, *bottom = NULL;
    bool reopened = false;

    assert(qemu_in_main_thread());
    if (base && (base == bs || !bdrv_chain_contains(bs, base))) {
        error_setg(errp, "Node '%s' is not a backing image of '%s'",
                   bdrv_get_node_name(base), bdrv_get_node_name(bs));
        return NULL;
    }
    for (p = bdrv_backing_bs(bs); p && p != base; p = bdrv_backing_bs(p)) {
        bottom = p;
    }

    if (bdrv_is_read_only(bs)) {
        if (!bdrv_reopen_set_read_only(bs, false, errp)) {
            return NULL;
        }
        reopened = true;
    }

    /*
     * The job writes data that reads the same (unchanged), and lets the
     * node's users do anything.
     */
    s = block_job_create(job_id, &stream_job_driver, NULL, bs,
                         BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE_UNCHANGED,
                         BLK_PERM_ALL, speed, creation_flags, cb, opaque,
                         errp);
    if (!s) {
        goto fail_reopen;
    }
    bdrv_ref(bs);
    s->top = bs;
    s->bottom = bottom;
    s->on_error = on_error;
    s->backing_file_str = g_strdup(backing_file_str);
    s->top_was_read_only = reopened;

    /* Nobody may change what the nodes to be dropped hold. */
    for (p = bdrv_backing_bs(bs); bottom && p != bdrv_backing_bs(bottom);
         p = bdrv_backing_bs(p)) {
        if (!block_job_add_bdrv(&s->common, "intermediate node", p, 0,
                                BLK_PERM_CONSISTENT_READ |
                                BLK_PERM_WRITE_UNCHANGED, errp)) {
            goto fail_job;
        }
    }

    s->filter = block_job_insert_filter(&s->common, "stream_top", bs, NULL,
                                        errp);
    if (!s->filter) {
        goto fail_job;
    }
    job_start(&s->common.job);
    return &s->common;

fail_job:
    /* Never started: no callbacks, the edges go with the job. */
    bdrv_unref(s->top);
    g_free(s->backing_file_str);
    job_early_fail(&s->common.job);
fail_reopen:
    if (reopened) {
        bdrv_reopen_set_read_only(bs, true, NULL);
    }
    return NULL;
}
