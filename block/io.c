/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The request path (bounds, alignment, splitting, in-flight accounting)
 * and drain.
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * Drain does two things only: quiesce the node's context through its
 * drain registry (phase 1), then wait until that context has nothing in
 * flight and no busy handler (phase 2).  It never walks the graph, so a
 * graph change made by a callback during phase 2 cannot make it miss a
 * node: membership is per context.
 */
#include "qemu/osdep.h"

#include "block/aio-wait.h"
#include "block/blkdebug.h"
#include "block/block_int.h"
#include "qemu/main-loop.h"

struct BdrvTrackedRequest {
    int64_t offset;             /* the aligned range the request touches */
    int64_t bytes;
    bool serialising;           /* a read-modify-write */
    CoQueue waiters;            /* requests waiting for this one */
    QLIST_ENTRY(BdrvTrackedRequest) next;
};

/* Zero buffers for write-zeroes fallbacks are at most this large. */
#define BDRV_ZERO_BUFFER_MAX (1 * 1024 * 1024)

/* ---- In-flight accounting ---- */

static AioInFlightTag bdrv_request_tag(void)
{
    static gsize once;
    static AioInFlightTag tag;

    if (g_once_init_enter(&once)) {
        tag = aio_in_flight_tag("request");
        g_once_init_leave(&once, 1);
    }
    return tag;
}

void bdrv_inc_in_flight(BlockDriverState *bs)
{
    qatomic_inc(&bs->in_flight);
    aio_context_inc_in_flight(bs->aio_context, bdrv_request_tag());
}

void bdrv_dec_in_flight(BlockDriverState *bs)
{
    qatomic_dec(&bs->in_flight);
    aio_context_dec_in_flight(bs->aio_context, bdrv_request_tag());
}

/* ---- Request tracking and serialisation ---- */

static bool tracked_overlap(BdrvTrackedRequest *a, BdrvTrackedRequest *b)
{
    return a->offset < b->offset + b->bytes &&
           b->offset < a->offset + a->bytes;
}

static void tracked_request_begin(BlockDriverState *bs,
                                  BdrvTrackedRequest *req, int64_t offset,
                                  int64_t bytes, bool serialising)
{
    uint32_t align = bs->bl.request_alignment;

    req->offset = QEMU_ALIGN_DOWN(offset, align);
    req->bytes = QEMU_ALIGN_UP(offset + bytes, align) - req->offset;
    req->serialising = serialising;
    qemu_co_queue_init(&req->waiters);
    QLIST_INSERT_HEAD(&bs->tracked_requests, req, next);
    if (serialising) {
        bs->serialising_in_flight++;
    }
}

static void tracked_request_end(BlockDriverState *bs,
                                BdrvTrackedRequest *req)
{
    if (req->serialising) {
        bs->serialising_in_flight--;
    }
    QLIST_REMOVE(req, next);
    qemu_co_queue_restart_all(&req->waiters);
}

/*
 * Wait until no older overlapping request conflicts with @req: a
 * serialising request waits for every overlapping one, any request waits
 * for an overlapping serialising one.  New requests are inserted at the
 * head, so the older ones are those after @req in the list; waiting only
 * for older ones cannot deadlock.
 */
static void coroutine_fn tracked_request_wait(BlockDriverState *bs,
                                              BdrvTrackedRequest *req)
{
    BdrvTrackedRequest *other;

retry:
    if (!req->serialising && bs->serialising_in_flight == 0) {
        return;
    }
    for (other = QLIST_NEXT(req, next); other;
         other = QLIST_NEXT(other, next)) {
        if ((req->serialising || other->serialising) &&
            tracked_overlap(req, other)) {
            qemu_co_queue_wait(&other->waiters, NULL);
            goto retry;
        }
    }
}

/* ---- Checks ---- */

static int bdrv_check_request(int64_t offset, int64_t bytes)
{
    if (offset < 0 || bytes < 0) {
        return -EIO;
    }
    if (offset > BDRV_MAX_LENGTH || bytes > BDRV_MAX_LENGTH - offset) {
        return -EIO;
    }
    return 0;
}

/* ---- Reads ---- */

/*
 * Pass an aligned request to the driver in pieces no longer than its
 * max_transfer.
 */
static int coroutine_fn bdrv_driver_rw(BlockDriverState *bs, bool write,
                                       int64_t offset, int64_t bytes,
                                       QEMUIOVector *qiov,
                                       size_t qiov_offset,
                                       BdrvRequestFlags flags)
{
    uint64_t max = bs->bl.max_transfer ?: BDRV_REQUEST_MAX_BYTES;
    int64_t done = 0;

    max = QEMU_ALIGN_DOWN(MIN(max, (uint64_t)BDRV_REQUEST_MAX_BYTES),
                          bs->bl.request_alignment);
    while (done < bytes) {
        int64_t chunk = MIN((uint64_t)(bytes - done), max);
        QEMUIOVector slice;
        int ret;

        qemu_iovec_init_slice(&slice, qiov, qiov_offset + done, chunk);
        if (write) {
            ret = bs->drv->bdrv_co_pwritev(bs, offset + done, chunk, &slice,
                                           flags);
        } else {
            ret = bs->drv->bdrv_co_preadv(bs, offset + done, chunk, &slice,
                                          flags);
        }
        qemu_iovec_destroy(&slice);
        if (ret < 0) {
            return ret;
        }
        done += chunk;
    }
    return 0;
}

/* An aligned read. */
static int coroutine_fn bdrv_aligned_preadv(BlockDriverState *bs,
                                            int64_t offset, int64_t bytes,
                                            QEMUIOVector *qiov,
                                            size_t qiov_offset,
                                            BdrvRequestFlags flags)
{
    return bdrv_driver_rw(bs, false, offset, bytes, qiov, qiov_offset,
                          flags);
}

int coroutine_fn bdrv_co_preadv(BdrvChild *child, int64_t offset,
                                int64_t bytes, QEMUIOVector *qiov,
                                BdrvRequestFlags flags)
{
    GRAPH_RDLOCK_GUARD();
    BlockDriverState *bs = child->bs;
    uint32_t align = bs->bl.request_alignment;
    BdrvTrackedRequest req;
    int64_t a_off, a_end;
    int ret;

    ret = bdrv_check_request(offset, bytes);
    if (ret < 0) {
        return ret;
    }
    if (!bs->drv) {
        return -ENOMEDIUM;
    }
    if (bytes == 0) {
        return 0;
    }

    bdrv_inc_in_flight(bs);
    tracked_request_begin(bs, &req, offset, bytes, false);
    tracked_request_wait(bs, &req);

    a_off = QEMU_ALIGN_DOWN(offset, align);
    a_end = QEMU_ALIGN_UP(offset + bytes, align);
    if (a_off == offset && a_end == offset + bytes) {
        ret = bdrv_aligned_preadv(bs, offset, bytes, qiov, 0, flags);
    } else {
        /* Read the aligned superset into a bounce buffer, copy ours out. */
        g_autofree uint8_t *buf = g_malloc(a_end - a_off);
        QEMUIOVector bounce;

        qemu_iovec_init_buf(&bounce, buf, a_end - a_off);
        ret = bdrv_aligned_preadv(bs, a_off, a_end - a_off, &bounce, 0,
                                  flags);
        if (ret == 0) {
            qemu_iovec_from_buf(qiov, 0, buf + (offset - a_off), bytes);
        }
    }

    tracked_request_end(bs, &req);
    bdrv_dec_in_flight(bs);
    return ret;
}

/* ---- Writes ---- */

/* Write zeroes over an aligned range, falling back to a zero buffer. */
static int coroutine_fn bdrv_aligned_zeroes(BlockDriverState *bs,
                                            int64_t offset, int64_t bytes,
                                            BdrvRequestFlags flags)
{
    uint64_t max = bs->bl.max_transfer ?: BDRV_ZERO_BUFFER_MAX;
    g_autofree void *zeroes = NULL;
    int64_t done = 0;
    int ret = -ENOTSUP;

    if (bs->drv->bdrv_co_pwrite_zeroes) {
        ret = bs->drv->bdrv_co_pwrite_zeroes(bs, offset, bytes, flags);
        if (ret != -ENOTSUP) {
            return ret;
        }
    }
    if (flags & BDRV_REQ_NO_FALLBACK) {
        return -ENOTSUP;
    }

    max = QEMU_ALIGN_DOWN(MIN(max, (uint64_t)BDRV_ZERO_BUFFER_MAX),
                          bs->bl.request_alignment);
    zeroes = g_malloc0(MIN((uint64_t)bytes, max));
    while (done < bytes) {
        int64_t chunk = MIN((uint64_t)(bytes - done), max);
        QEMUIOVector qiov;

        qemu_iovec_init_buf(&qiov, zeroes, chunk);
        ret = bs->drv->bdrv_co_pwritev(bs, offset + done, chunk, &qiov,
                                       flags & BDRV_REQ_FUA);
        if (ret < 0) {
            return ret;
        }
        done += chunk;
    }
    return 0;
}

/* An aligned write (data from @qiov at @qiov_offset, or zeroes). */
static int coroutine_fn bdrv_aligned_pwritev(BlockDriverState *bs,
                                             int64_t offset, int64_t bytes,
                                             QEMUIOVector *qiov,
                                             size_t qiov_offset,
                                             BdrvRequestFlags flags)
{
    int ret;

    /* blkdebug rules and breakpoints hook the write of the node itself. */
    if (flags & BDRV_REQ_ZERO_WRITE) {
        bdrv_debug_event(bs, BLKDBG_PWRITEV_ZERO);
        ret = bdrv_aligned_zeroes(bs, offset, bytes,
                                  flags & ~BDRV_REQ_ZERO_WRITE);
    } else {
        bdrv_debug_event(bs, BLKDBG_PWRITEV);
        ret = bdrv_driver_rw(bs, true, offset, bytes, qiov, qiov_offset,
                             flags);
    }
    bdrv_debug_event(bs, BLKDBG_PWRITEV_DONE);
    return ret;
}

/*
 * An unaligned write: read the partial head and tail blocks, merge, and
 * write the aligned whole.  The caller holds @req as serialising, so no
 * overlapping request can change the blocks in between.
 */
static int coroutine_fn bdrv_rmw_pwritev(BlockDriverState *bs,
                                         int64_t offset, int64_t bytes,
                                         QEMUIOVector *qiov,
                                         BdrvRequestFlags flags)
{
    uint32_t align = bs->bl.request_alignment;
    int64_t a_off = QEMU_ALIGN_DOWN(offset, align);
    int64_t a_end = QEMU_ALIGN_UP(offset + bytes, align);
    g_autofree uint8_t *buf = g_malloc(a_end - a_off);
    QEMUIOVector bounce;
    int ret;

    /* Head and tail blocks (the same block for a small request). */
    qemu_iovec_init_buf(&bounce, buf, align);
    if (offset != a_off) {
        bdrv_debug_event(bs, BLKDBG_PWRITEV_RMW_HEAD);
        ret = bdrv_aligned_preadv(bs, a_off, align, &bounce, 0, 0);
        if (ret < 0) {
            return ret;
        }
        bdrv_debug_event(bs, BLKDBG_PWRITEV_RMW_AFTER_HEAD);
    }
    if ((offset + bytes) % align &&
        (a_end - align > a_off || offset == a_off)) {
        qemu_iovec_init_buf(&bounce, buf + (a_end - align - a_off), align);
        bdrv_debug_event(bs, BLKDBG_PWRITEV_RMW_TAIL);
        ret = bdrv_aligned_preadv(bs, a_end - align, align, &bounce, 0, 0);
        if (ret < 0) {
            return ret;
        }
        bdrv_debug_event(bs, BLKDBG_PWRITEV_RMW_AFTER_TAIL);
    }

    if (flags & BDRV_REQ_ZERO_WRITE) {
        memset(buf + (offset - a_off), 0, bytes);
    } else {
        qemu_iovec_to_buf(qiov, 0, buf + (offset - a_off), bytes);
    }
    qemu_iovec_init_buf(&bounce, buf, a_end - a_off);
    return bdrv_aligned_pwritev(bs, a_off, a_end - a_off, &bounce, 0,
                                flags & ~(BDRV_REQ_ZERO_WRITE |
                                          BDRV_REQ_MAY_UNMAP |
                                          BDRV_REQ_NO_FALLBACK));
}

static int coroutine_fn bdrv_co_do_pwritev(BdrvChild *child, int64_t offset,
                                           int64_t bytes, QEMUIOVector *qiov,
                                           BdrvRequestFlags flags)
{
    BlockDriverState *bs = child->bs;
    uint32_t align = bs->bl.request_alignment;
    bool aligned;
    BdrvTrackedRequest req;
    int ret;

    ret = bdrv_check_request(offset, bytes);
    if (ret < 0) {
        return ret;
    }
    if (!bs->drv) {
        return -ENOMEDIUM;
    }
    if (bs->read_only) {
        return -EPERM;
    }
    if (bytes == 0) {
        return 0;
    }

    aligned = offset % align == 0 && bytes % align == 0;
    bdrv_inc_in_flight(bs);
    tracked_request_begin(bs, &req, offset, bytes, !aligned);
    tracked_request_wait(bs, &req);

    if (aligned) {
        ret = bdrv_aligned_pwritev(bs, offset, bytes, qiov, 0, flags);
    } else if ((flags & BDRV_REQ_ZERO_WRITE) &&
               QEMU_ALIGN_UP(offset, align) <
               QEMU_ALIGN_DOWN(offset + bytes, align)) {
        /* Zero the aligned middle cheaply, merge only the ends. */
        int64_t mid = QEMU_ALIGN_UP(offset, align);
        int64_t mid_end = QEMU_ALIGN_DOWN(offset + bytes, align);

        ret = 0;
        if (mid > offset) {
            ret = bdrv_rmw_pwritev(bs, offset, mid - offset, NULL, flags);
        }
        if (ret == 0) {
            ret = bdrv_aligned_pwritev(bs, mid, mid_end - mid, NULL, 0,
                                       flags);
        }
        if (ret == 0 && offset + bytes > mid_end) {
            ret = bdrv_rmw_pwritev(bs, mid_end, offset + bytes - mid_end,
                                   NULL, flags);
        }
    } else {
        ret = bdrv_rmw_pwritev(bs, offset, bytes, qiov, flags);
    }

    /*
     * A flush reports the first write that failed since the last one.  A
     * write-zeroes refused under NO_FALLBACK wrote nothing and failed
     * nothing: the caller writes the zeroes another way.
     */
    if (ret < 0 && bs->write_error == 0 &&
        !(ret == -ENOTSUP && (flags & BDRV_REQ_NO_FALLBACK))) {
        bs->write_error = ret;
    }
    tracked_request_end(bs, &req);
    bdrv_dec_in_flight(bs);
    return ret;
}

int coroutine_fn bdrv_co_pwritev(BdrvChild *child, int64_t offset,
                                 int64_t bytes, QEMUIOVector *qiov,
                                 BdrvRequestFlags flags)
{
    GRAPH_RDLOCK_GUARD();
    assert(!(flags & BDRV_REQ_ZERO_WRITE));
    return bdrv_co_do_pwritev(child, offset, bytes, qiov, flags);
}

int coroutine_fn bdrv_co_pwrite_zeroes(BdrvChild *child, int64_t offset,
                                       int64_t bytes, BdrvRequestFlags flags)
{
    GRAPH_RDLOCK_GUARD();
    return bdrv_co_do_pwritev(child, offset, bytes, NULL,
                              flags | BDRV_REQ_ZERO_WRITE);
}

/* ---- Discard, flush, status, length ---- */

int coroutine_fn bdrv_co_pdiscard(BdrvChild *child, int64_t offset,
                                  int64_t bytes)
{
    GRAPH_RDLOCK_GUARD();
    BlockDriverState *bs = child->bs;
    uint32_t align;
    int64_t start, end;
    int ret;

    ret = bdrv_check_request(offset, bytes);
    if (ret < 0) {
        return ret;
    }
    if (!bs->drv) {
        return -ENOMEDIUM;
    }
    if (bs->read_only) {
        return -EPERM;
    }
    if (!bs->drv->bdrv_co_pdiscard) {
        return 0;
    }

    /* Discard is advisory: drop the parts that are not aligned. */
    align = MAX(bs->bl.request_alignment, bs->bl.pdiscard_alignment);
    start = QEMU_ALIGN_UP(offset, align);
    end = QEMU_ALIGN_DOWN(offset + bytes, align);
    if (start >= end) {
        return 0;
    }

    bdrv_inc_in_flight(bs);
    ret = bs->drv->bdrv_co_pdiscard(bs, start, end - start);
    bdrv_dec_in_flight(bs);
    return ret == -ENOTSUP ? 0 : ret;
}

int coroutine_fn bdrv_co_flush(BlockDriverState *bs)
{
    GRAPH_RDLOCK_GUARD();
    BdrvChild *c;
    int ret = 0;
    int r;

    if (!bs->drv) {
        return 0;
    }

    bdrv_inc_in_flight(bs);
    /* As QEMU's, the flush events hook the node's primary child. */
    BLKDBG_EVENT(bs->file, BLKDBG_FLUSH_TO_OS);
    if (bs->drv->bdrv_co_flush_to_os) {
        ret = bs->drv->bdrv_co_flush_to_os(bs);
    }
    if (ret == 0 && !(bs->open_flags & BDRV_O_NO_FLUSH)) {
        BLKDBG_EVENT(bs->file, BLKDBG_FLUSH_TO_DISK);
    }
    if (ret == 0 && bs->drv->bdrv_co_flush_to_disk) {
        ret = bs->drv->bdrv_co_flush_to_disk(bs);
    }
    /* Whatever this node wrote to its children must be stable too. */
    QLIST_FOREACH(c, &bs->children, next) {
        bdrv_graph_visit(c->bs);
        r = bdrv_co_flush(c->bs);
        if (ret == 0) {
            ret = r;
        }
    }
    /* A write that failed since the last flush fails this flush. */
    if (ret == 0 && bs->write_error) {
        ret = bs->write_error;
    }
    bs->write_error = 0;
    bdrv_dec_in_flight(bs);
    return ret;
}

int64_t coroutine_fn bdrv_co_getlength(BlockDriverState *bs)
{
    GRAPH_RDLOCK_GUARD();
    int64_t len;

    if (!bs->drv) {
        return -ENOMEDIUM;
    }
    if (!bs->drv->bdrv_co_getlength) {
        return -ENOTSUP;
    }
    len = bs->drv->bdrv_co_getlength(bs);
    if (len < 0) {
        return len;
    }
    /*
     * Nodes are a whole number of 512-byte sectors, as in QEMU: a
     * 1000-byte file is 1024 bytes long, and reads the rest as zeroes.
     */
    return QEMU_ALIGN_UP(len, BDRV_SECTOR_SIZE);
}

int coroutine_fn bdrv_co_truncate(BdrvChild *child, int64_t offset,
                                  bool exact, PreallocMode prealloc,
                                  BdrvRequestFlags flags, GError **errp)
{
    GRAPH_RDLOCK_GUARD();
    BlockDriverState *bs = child->bs;
    BdrvTrackedRequest req;
    int64_t old_size;
    int ret;

    if (offset < 0) {
        error_setg(errp, "Image size cannot be negative");
        return -EINVAL;
    }
    if (offset > BDRV_MAX_LENGTH) {
        error_setg(errp, "Image size too large");
        return -EFBIG;
    }
    if (!bs->drv) {
        error_setg(errp, "No medium inserted");
        return -ENOMEDIUM;
    }
    if (bs->read_only) {
        error_setg(errp, "Image is read-only");
        return -EACCES;
    }
    assert(child->perm & BLK_PERM_RESIZE);
    if (!bs->drv->bdrv_co_truncate) {
        error_setg(errp, "Image format driver does not support resize");
        return -ENOTSUP;
    }

    old_size = bdrv_co_getlength(bs);
    if (old_size < 0) {
        error_setg_errno(errp, -old_size, "Failed to get old image size");
        return old_size;
    }

    bdrv_inc_in_flight(bs);
    /* Everything past the smaller end serialises against the resize. */
    tracked_request_begin(bs, &req, MIN(offset, old_size),
                          BDRV_MAX_LENGTH - MIN(offset, old_size), true);
    tracked_request_wait(bs, &req);
    ret = bs->drv->bdrv_co_truncate(bs, offset, exact, prealloc, flags,
                                    errp);
    tracked_request_end(bs, &req);
    bdrv_dec_in_flight(bs);
    return ret;
}

int coroutine_fn bdrv_co_block_status(BlockDriverState *bs, int64_t offset,
                                      int64_t bytes, int64_t *pnum,
                                      int64_t *map, BlockDriverState **file)
{
    GRAPH_RDLOCK_GUARD();
    int64_t length;
    int64_t local_map = 0;
    BlockDriverState *local_file = NULL;
    int ret;

    ret = bdrv_check_request(offset, bytes);
    if (ret < 0) {
        return ret;
    }
    length = bdrv_co_getlength(bs);
    if (length < 0) {
        return length;
    }
    if (offset >= length || bytes == 0) {
        *pnum = 0;
        return offset >= length ? BDRV_BLOCK_EOF : 0;
    }
    bytes = MIN(bytes, length - offset);

    bdrv_inc_in_flight(bs);
    if (bs->drv->bdrv_co_block_status) {
        *pnum = 0;
        ret = bs->drv->bdrv_co_block_status(bs, offset, bytes, pnum,
                                            &local_map, &local_file);
        if (ret >= 0) {
            assert(*pnum > 0 && *pnum <= bytes);
        }
    } else if (bs->file) {
        /* A format without status passes its file's data through. */
        *pnum = bytes;
        local_map = offset;
        local_file = bs->file->bs;
        ret = BDRV_BLOCK_DATA | BDRV_BLOCK_ALLOCATED |
              BDRV_BLOCK_OFFSET_VALID;
    } else {
        *pnum = bytes;
        ret = BDRV_BLOCK_DATA | BDRV_BLOCK_ALLOCATED;
    }
    bdrv_dec_in_flight(bs);

    if (ret >= 0 && (ret & (BDRV_BLOCK_DATA | BDRV_BLOCK_ZERO))) {
        ret |= BDRV_BLOCK_ALLOCATED;
    }
    if (ret >= 0 && offset + *pnum == length) {
        ret |= BDRV_BLOCK_EOF;
    }
    if (map) {
        *map = local_map;
    }
    if (file) {
        *file = local_file;
    }
    return ret;
}

int coroutine_fn bdrv_co_block_status_above(BlockDriverState *bs,
                                            BlockDriverState *base,
                                            int64_t offset, int64_t bytes,
                                            int64_t *pnum, int64_t *map,
                                            BlockDriverState **file,
                                            int *depth)
{
    GRAPH_RDLOCK_GUARD();
    BlockDriverState *p;
    int64_t n = bytes;
    int64_t top_eof_at = -1;    /* n at which the top node ends, if known */
    int layer = 0;
    int ret;

    for (p = bs; p && p != base;
         p = p->backing ? p->backing->bs : NULL) {
        int64_t cur;

        layer++;
        ret = bdrv_co_block_status(p, offset, n, &cur, map, file);
        if (ret < 0) {
            return ret;
        }
        if (cur == 0) {
            /* Past the end of this backing layer: reads as zeroes. */
            assert(p != bs);
            break;
        }
        if (ret & BDRV_BLOCK_ALLOCATED) {
            *pnum = cur;
            if (depth) {
                *depth = layer;
            }
            /* Only the top node's end is the end of the range. */
            if (p != bs) {
                ret &= ~BDRV_BLOCK_EOF;
                if (top_eof_at == cur) {
                    ret |= BDRV_BLOCK_EOF;
                }
            }
            return ret;
        }
        if (p == bs && (ret & BDRV_BLOCK_EOF)) {
            top_eof_at = cur;
        }
        /* Only this much is unallocated here; ask the next layer. */
        n = cur;
    }

    *pnum = n;
    if (depth) {
        *depth = 0;
    }
    if (map) {
        *map = 0;
    }
    if (file) {
        *file = NULL;
    }
    return BDRV_BLOCK_ZERO | (top_eof_at == n ? BDRV_BLOCK_EOF : 0);
}

/* ---- Drain ---- */

typedef struct BdrvCoDrainData {
    AioContext *ctx;
    Coroutine *co;
    bool begin;
} BdrvCoDrainData;

static void bdrv_co_drain_bh_cb(void *opaque)
{
    BdrvCoDrainData *data = opaque;

    if (data->begin) {
        bdrv_context_drained_begin(data->ctx);
    } else {
        bdrv_context_drained_end(data->ctx);
    }
    aio_co_wake(data->co);
}

/*
 * A coroutine cannot poll under its own feet: run the drain from a
 * one-shot BH in the current context and wait for it to re-enter us.
 */
static void coroutine_fn bdrv_co_yield_to_drain(AioContext *ctx, bool begin)
{
    BdrvCoDrainData data = {
        .ctx = ctx,
        .co = qemu_coroutine_self(),
        .begin = begin,
    };

    aio_bh_schedule_oneshot(qemu_get_current_aio_context(),
                            bdrv_co_drain_bh_cb, &data);
    qemu_coroutine_yield();
}

static bool bdrv_drain_busy(AioContext *ctx)
{
    bool busy;

    bdrv_drain_code_enter();
    busy = aio_context_drained_busy(ctx);
    bdrv_drain_code_leave();
    return busy;
}

void coroutine_mixed_fn bdrv_context_drained_begin(AioContext *ctx)
{
    assert_bdrv_graph_unlocked();
    if (qemu_in_coroutine()) {
        bdrv_co_yield_to_drain(ctx, true);
        return;
    }

    /* Phase 1: quiesce through the registry.  Phase 2: wait. */
    bdrv_drain_code_enter();
    aio_context_drained_begin(ctx);
    bdrv_drain_code_leave();
    AIO_WAIT_WHILE(ctx, bdrv_drain_busy(ctx));
}

void coroutine_mixed_fn bdrv_context_drained_end(AioContext *ctx)
{
    if (qemu_in_coroutine()) {
        bdrv_co_yield_to_drain(ctx, false);
        return;
    }
    bdrv_drain_code_enter();
    aio_context_drained_end(ctx);
    bdrv_drain_code_leave();
}

void coroutine_mixed_fn bdrv_drained_begin(BlockDriverState *bs)
{
    qatomic_inc(&bs->quiesce_counter);
    bdrv_context_drained_begin(bs->aio_context);
}

void coroutine_mixed_fn bdrv_drained_end(BlockDriverState *bs)
{
    assert(qatomic_read(&bs->quiesce_counter) > 0);
    bdrv_context_drained_end(bs->aio_context);
    qatomic_dec(&bs->quiesce_counter);
}

void coroutine_mixed_fn bdrv_drain(BlockDriverState *bs)
{
    bdrv_drained_begin(bs);
    bdrv_drained_end(bs);
}

static bool bdrv_drain_all_busy(void)
{
    bool busy;

    bdrv_drain_code_enter();
    busy = aio_context_drain_all_busy();
    bdrv_drain_code_leave();
    return busy;
}

void bdrv_drain_all_begin(void)
{
    assert(qemu_in_main_thread());
    assert_bdrv_graph_unlocked();
    bdrv_drain_code_enter();
    aio_context_drain_all_begin();
    bdrv_drain_code_leave();
    AIO_WAIT_WHILE(NULL, bdrv_drain_all_busy());
}

void bdrv_drain_all_end(void)
{
    assert(qemu_in_main_thread());
    bdrv_drain_code_enter();
    aio_context_drain_all_end();
    bdrv_drain_code_leave();
}
