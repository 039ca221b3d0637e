/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * QED: the format driver.  Open, create, the request paths, the
 * need-check timer and the drain handler it registers with the node's
 * context.
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * Messages and on-disk results follow QEMU 7.2 (../shared/docs/
 * qed-format.md); where Sluice differs on purpose, docs/devel/qed.md
 * says so.  Allocating writes run in parallel; the scheme is described
 * there and in qed.h.
 */
#include "qemu/osdep.h"

#include <sys/mman.h>

#include "block/aio-wait.h"
#include "block/blkdebug.h"
#include "block/graph-lock.h"
#include "block/qed.h"
#include "qemu/keyval.h"
#include "qemu/main-loop.h"
#include "sysemu/block-backend.h"

static int64_t qed_need_check_timeout_ns = QED_NEED_CHECK_TIMEOUT_NS;

void qed_set_need_check_timeout_ns(int64_t ns)
{
    qed_need_check_timeout_ns = ns;
}

AioInFlightTag qed_need_check_tag(void)
{
    static gsize once;
    static AioInFlightTag tag;

    if (g_once_init_enter(&once)) {
        tag = aio_in_flight_tag("qed-need-check");
        g_once_init_leave(&once, 1);
    }
    return tag;
}

/* ---- The header ---- */

static uint32_t ld32(const uint8_t *p)
{
    uint32_t v;

    memcpy(&v, p, sizeof(v));
    return GUINT32_FROM_LE(v);
}

static uint64_t ld64(const uint8_t *p)
{
    uint64_t v;

    memcpy(&v, p, sizeof(v));
    return GUINT64_FROM_LE(v);
}

static void st32(uint8_t *p, uint32_t v)
{
    v = GUINT32_TO_LE(v);
    memcpy(p, &v, sizeof(v));
}

static void st64(uint8_t *p, uint64_t v)
{
    v = GUINT64_TO_LE(v);
    memcpy(p, &v, sizeof(v));
}

void qed_header_decode(QEDHeader *h, const uint8_t *buf)
{
    h->magic = ld32(buf + 0);
    h->cluster_size = ld32(buf + 4);
    h->table_size = ld32(buf + 8);
    h->header_size = ld32(buf + 12);
    h->features = ld64(buf + 16);
    h->compat_features = ld64(buf + 24);
    h->autoclear_features = ld64(buf + 32);
    h->l1_table_offset = ld64(buf + 40);
    h->image_size = ld64(buf + 48);
    h->backing_filename_offset = ld32(buf + 56);
    h->backing_filename_size = ld32(buf + 60);
}

void qed_header_encode(const QEDHeader *h, uint8_t *buf)
{
    st32(buf + 0, h->magic);
    st32(buf + 4, h->cluster_size);
    st32(buf + 8, h->table_size);
    st32(buf + 12, h->header_size);
    st64(buf + 16, h->features);
    st64(buf + 24, h->compat_features);
    st64(buf + 32, h->autoclear_features);
    st64(buf + 40, h->l1_table_offset);
    st64(buf + 48, h->image_size);
    st32(buf + 56, h->backing_filename_offset);
    st32(buf + 60, h->backing_filename_size);
}

int coroutine_fn qed_co_write_header(BDRVQEDState *s)
{
    uint8_t buf[QED_HEADER_BYTES];
    QEMUIOVector qiov;

    qed_header_encode(&s->header, buf);
    qemu_iovec_init_buf(&qiov, buf, sizeof(buf));
    return bdrv_co_pwritev(s->bs->file, 0, sizeof(buf), &qiov, 0);
}

static int qed_probe(const uint8_t *buf, int buf_size, const char *filename)
{
    if (buf_size < QED_HEADER_BYTES || ld32(buf) != QED_MAGIC) {
        return 0;
    }
    return 100;
}

/* ---- Running coroutines from the main thread ---- */

typedef struct QEDSyncCo {
    CoroutineEntry *entry;
    void *opaque;
    bool done;
} QEDSyncCo;

static void coroutine_fn qed_sync_co_entry(void *opaque)
{
    QEDSyncCo *c = opaque;

    bdrv_graph_co_rdlock();
    c->entry(c->opaque);
    bdrv_graph_co_rdunlock();
    qatomic_store_release(&c->done, true);
    aio_wait_kick();
}

/* Run @entry(@opaque) in a coroutine of @bs's context and wait for it. */
static void qed_run_co(BlockDriverState *bs, CoroutineEntry *entry,
                       void *opaque)
{
    QEDSyncCo c = { .entry = entry, .opaque = opaque };
    AioContext *ctx = bdrv_get_aio_context(bs);

    if (qemu_in_coroutine()) {
        bdrv_graph_co_rdlock();
        entry(opaque);
        bdrv_graph_co_rdunlock();
        return;
    }
    aio_co_enter(ctx, qemu_coroutine_create(qed_sync_co_entry, &c));
    AIO_WAIT_WHILE(ctx, !qatomic_load_acquire(&c.done));
}

/* ---- The need-check timer and the drain handler ---- */

/*
 * Arm the timer if the image is dirty and nothing stands against it.
 * The armed timer holds an in-flight reference of its context, so a
 * drain of that context sees it; timer_lock held.
 */
static void qed_arm_timer_locked(BDRVQEDState *s)
{
    if (!s->dirty || s->timer_ref || s->clear_running || s->quiesce ||
        s->closing || !s->timer) {
        return;
    }
    s->timer_ref = true;
    aio_context_inc_in_flight(s->timer_ctx, qed_need_check_tag());
    timer_mod_ns(s->timer,
                 qemu_clock_get_ns(QEMU_CLOCK_REALTIME) +
                 qed_need_check_timeout_ns);
}

/* Disarm the timer and drop its reference; timer_lock held. */
static void qed_disarm_timer_locked(BDRVQEDState *s)
{
    if (s->timer_ref) {
        timer_del(s->timer);
        s->timer_ref = false;
        aio_context_dec_in_flight(s->timer_ctx, qed_need_check_tag());
    }
}

static void coroutine_fn qed_clear_need_check_co(void *opaque)
{
    BDRVQEDState *s = opaque;
    AioContext *ctx = s->timer_ctx;
    int ret;

    bdrv_graph_co_rdlock();
    /* Close the gate and wait for metadata changes in progress. */
    s->clearing = true;
    while (s->alloc_holders > 0) {
        qemu_co_queue_wait(&s->clear_waiters, NULL);
    }

    /* Everything the bit protects must be in the file, stably, first. */
    ret = bdrv_co_flush(s->bs);
    if (ret == 0 && (s->header.features & QED_F_NEED_CHECK)) {
        qemu_co_mutex_lock(&s->header_lock);
        s->header.features &= ~QED_F_NEED_CHECK;
        ret = qed_co_write_header(s);
        if (ret < 0) {
            s->header.features |= QED_F_NEED_CHECK;
        }
        qemu_co_mutex_unlock(&s->header_lock);
    }

    s->clearing = false;
    qemu_co_queue_restart_all(&s->gate_waiters);
    bdrv_graph_co_rdunlock();

    g_mutex_lock(&s->timer_lock);
    s->clear_running = false;
    if (ret == 0) {
        s->dirty = false;
    }
    /* A failure leaves the image dirty: try again later. */
    qed_arm_timer_locked(s);
    g_mutex_unlock(&s->timer_lock);
    aio_context_dec_in_flight(ctx, qed_need_check_tag());
}

/* Runs in the timer's context. */
static void qed_need_check_timer_cb(void *opaque)
{
    BDRVQEDState *s = opaque;
    int64_t now = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
    int64_t quiet_until = s->last_alloc_ns + qed_need_check_timeout_ns;

    g_mutex_lock(&s->timer_lock);
    if (!s->timer_ref) {
        /* Cancelled by a drain between expiry and now. */
        g_mutex_unlock(&s->timer_lock);
        return;
    }
    if (s->alloc_holders > 0 || now < quiet_until) {
        /* Not quiet yet: look again at the end of the period. */
        timer_mod_ns(s->timer, MAX(now, quiet_until) +
                     (s->alloc_holders ? qed_need_check_timeout_ns : 0));
        g_mutex_unlock(&s->timer_lock);
        return;
    }
    /* The coroutine inherits the timer's in-flight reference. */
    s->timer_ref = false;
    s->clear_running = true;
    g_mutex_unlock(&s->timer_lock);
    aio_co_enter(s->timer_ctx,
                 qemu_coroutine_create(qed_clear_need_check_co, s));
}

/* Drain callbacks: any thread, context's drain lock held. */
static void qed_drained_begin(void *opaque)
{
    BDRVQEDState *s = opaque;

    g_mutex_lock(&s->timer_lock);
    s->quiesce++;
    qed_disarm_timer_locked(s);
    g_mutex_unlock(&s->timer_lock);
}

static void qed_drained_end(void *opaque)
{
    BDRVQEDState *s = opaque;

    g_mutex_lock(&s->timer_lock);
    assert(s->quiesce > 0);
    s->quiesce--;
    qed_arm_timer_locked(s);
    g_mutex_unlock(&s->timer_lock);
}

static bool qed_drained_poll(void *opaque)
{
    BDRVQEDState *s = opaque;
    bool busy;

    g_mutex_lock(&s->timer_lock);
    busy = s->clear_running;
    g_mutex_unlock(&s->timer_lock);
    return busy;
}

static const AioDrainOps qed_drain_ops = {
    .drained_begin = qed_drained_begin,
    .drained_end = qed_drained_end,
    .drained_poll = qed_drained_poll,
};

static void qed_detach_aio_context(BlockDriverState *bs)
{
    BDRVQEDState *s = bs->opaque;
    QEMUTimer *timer;

    /* Drained: our begin cancelled the timer, nothing clears the bit. */
    g_mutex_lock(&s->timer_lock);
    assert(!s->timer_ref && !s->clear_running);
    timer = s->timer;
    s->timer = NULL;
    g_mutex_unlock(&s->timer_lock);
    timer_free(timer);
}

static void qed_attach_aio_context(BlockDriverState *bs, AioContext *ctx)
{
    BDRVQEDState *s = bs->opaque;
    AioDrainHandler *old = s->drain_handler;

    g_mutex_lock(&s->timer_lock);
    s->timer = aio_timer_new(ctx, QEMU_CLOCK_REALTIME, SCALE_NS,
                             qed_need_check_timer_cb, s);
    s->timer_ctx = ctx;
    g_mutex_unlock(&s->timer_lock);
    /*
     * Both contexts are drained: registering in the new one begins at
     * once, so removing from the old one (which ends there) leaves us
     * quiesced until the new context's section ends and re-arms.
     */
    s->drain_handler = aio_context_add_drain_ops(ctx, &qed_drain_ops, s);
    aio_context_remove_drain_ops(old);
}

/* ---- The allocation gate and the need-check bit ---- */

/*
 * Enter the gate before changing metadata: waits while the bit is being
 * cleared, and sets it (stably) if it is not set yet.
 */
static int coroutine_fn qed_gate_enter(BDRVQEDState *s)
{
    int ret = 0;

    while (s->clearing) {
        qemu_co_queue_wait(&s->gate_waiters, NULL);
    }
    s->alloc_holders++;
    if (s->header.features & QED_F_NEED_CHECK) {
        return 0;
    }

    qemu_co_mutex_lock(&s->header_lock);
    if (!(s->header.features & QED_F_NEED_CHECK)) {
        s->header.features |= QED_F_NEED_CHECK;
        ret = qed_co_write_header(s);
        if (ret == 0) {
            ret = bdrv_co_flush(s->bs->file->bs);
        }
        if (ret < 0) {
            s->header.features &= ~QED_F_NEED_CHECK;
        } else {
            g_mutex_lock(&s->timer_lock);
            s->dirty = true;
            g_mutex_unlock(&s->timer_lock);
        }
    }
    qemu_co_mutex_unlock(&s->header_lock);
    if (ret < 0) {
        if (--s->alloc_holders == 0 && s->clearing) {
            qemu_co_queue_restart_all(&s->clear_waiters);
        }
    }
    return ret;
}

static void qed_gate_leave(BDRVQEDState *s)
{
    assert(s->alloc_holders > 0);
    s->last_alloc_ns = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
    if (--s->alloc_holders == 0 && s->clearing) {
        qemu_co_queue_restart_all(&s->clear_waiters);
    }
    g_mutex_lock(&s->timer_lock);
    qed_arm_timer_locked(s);
    g_mutex_unlock(&s->timer_lock);
}

/* ---- Reads ---- */

/*
 * Read [pos, pos + len) from the backing file into @qiov at @qoff:
 * zeroes without one and past its end.
 */
static int coroutine_fn qed_co_read_backing(BDRVQEDState *s, uint64_t pos,
                                            uint64_t len, QEMUIOVector *qiov,
                                            size_t qoff)
{
    BdrvChild *backing = s->bs->backing;
    uint64_t n = 0;
    int64_t blen;
    int ret;

    if (backing) {
        blen = bdrv_co_getlength(backing->bs);
        if (blen < 0) {
            return blen;
        }
        if (pos < (uint64_t)blen) {
            n = MIN(len, (uint64_t)blen - pos);
        }
    }
    if (n) {
        QEMUIOVector slice;

        qemu_iovec_init_slice(&slice, qiov, qoff, n);
        BLKDBG_EVENT(s->bs->file, BLKDBG_READ_BACKING_AIO);
        ret = bdrv_co_preadv(backing, pos, n, &slice, 0);
        qemu_iovec_destroy(&slice);
        if (ret < 0) {
            return ret;
        }
    }
    if (n < len) {
        qemu_iovec_memset(qiov, qoff + n, 0, len - n);
    }
    return 0;
}

static int coroutine_fn qed_co_preadv(BlockDriverState *bs, int64_t offset,
                                      int64_t bytes, QEMUIOVector *qiov,
                                      BdrvRequestFlags flags)
{
    BDRVQEDState *s = bs->opaque;
    uint64_t pos = offset;
    uint64_t done = 0;

    while (done < (uint64_t)bytes) {
        uint64_t len = bytes - done;
        uint64_t file_off;
        QEDTable *t;
        QEMUIOVector slice;
        int kind, ret;

        ret = qed_get_table_for(s, pos, &t);
        if (ret < 0) {
            return ret;
        }
        kind = qed_classify(s, t, pos, &len, &file_off);
        if (t) {
            /* Data clusters never move, so the offset stays good. */
            qed_l2_unref(s, t);
        }
        switch (kind) {
        case QED_CLUSTER_DATA:
            qemu_iovec_init_slice(&slice, qiov, done, len);
            BLKDBG_EVENT(bs->file, BLKDBG_READ_AIO);
            ret = bdrv_co_preadv(bs->file, file_off, len, &slice, 0);
            qemu_iovec_destroy(&slice);
            break;
        case QED_CLUSTER_ZERO:
            qemu_iovec_memset(qiov, done, 0, len);
            ret = 0;
            break;
        case QED_CLUSTER_UNALLOC:
            ret = qed_co_read_backing(s, pos, len, qiov, done);
            break;
        default:
            ret = kind;
            break;
        }
        if (ret < 0) {
            return ret;
        }
        pos += len;
        done += len;
    }
    return 0;
}

/* ---- Writes ---- */

/* What one guest request did, across the pieces it was cut into. */
typedef struct QEDWriteReq {
    bool in_gate;
    bool changed_metadata;
} QEDWriteReq;

/*
 * Copy-on-write padding for guest [pos, pos + len) of a new cluster:
 * the backing file's data (read into *@buf, to be freed) unless the
 * cluster was a zero cluster or there is no backing file, in which case
 * the padding is zeroes and *@buf is left NULL.
 */
static int coroutine_fn qed_read_cow(BDRVQEDState *s, QEDClusterKind kind,
                                     uint64_t pos, uint64_t len, void **buf)
{
    QEMUIOVector qiov;
    uint64_t visible;
    int ret;

    *buf = NULL;
    if (!len || kind == QED_CLUSTER_ZERO || !s->bs->backing ||
        pos >= s->header.image_size) {
        return 0;
    }
    *buf = g_malloc(len);
    qemu_iovec_init_buf(&qiov, *buf, len);
    /* Beyond the guest's end the padding is zeroes, whatever lies below. */
    visible = MIN(len, s->header.image_size - pos);
    BLKDBG_EVENT(s->bs->file, BLKDBG_COW_READ);
    ret = qed_co_read_backing(s, pos, visible, &qiov, 0);
    if (ret < 0) {
        g_free(*buf);
        *buf = NULL;
        return ret;
    }
    if (visible < len) {
        memset((uint8_t *)*buf + visible, 0, len - visible);
    }
    return 0;
}

/* Add @len bytes of zeroes from the shared zero buffer to @w. */
static void qed_add_zeroes(BDRVQEDState *s, QEMUIOVector *w, uint64_t len)
{
    while (len) {
        uint64_t chunk = MIN(len, s->cluster_size);

        qemu_iovec_add(w, s->zero_buf, chunk);
        len -= chunk;
    }
}

/*
 * Allocate guest clusters [first, first + n) for the write of
 * [pos, pos + len) (data from @qiov at @qoff, or zeroes): reserve them
 * at the end of the file (and the L2 table too if @t is NULL), write
 * them in one request, then point the table at them.  The caller found
 * the range free; nothing here yields before it is registered.
 * Consumes the reference on @t.
 */
static int coroutine_fn qed_co_allocate(BDRVQEDState *s, QEDTable *t,
                                        QEDClusterKind kind, uint64_t pos,
                                        uint64_t len, QEMUIOVector *qiov,
                                        size_t qoff, BdrvRequestFlags flags)
{
    BlockDriverState *bs = s->bs;
    uint64_t first = pos >> s->cluster_bits;
    uint64_t end = (pos + len - 1) / s->cluster_size + 1;
    uint64_t n = end - first;
    uint64_t start = first << s->cluster_bits;
    uint64_t head = pos - start;
    uint64_t tail = start + n * s->cluster_size - (pos + len);
    uint64_t data_off, write_off;
    void *head_buf = NULL, *tail_buf = NULL;
    bool whole;
    QEDAllocation a;
    QEMUIOVector w;
    int ret;

    qed_allocation_begin(s, &a, first, end);
    /* As QEMU lays it out: the data first, then a new table after it. */
    data_off = s->file_size;
    s->file_size += n * s->cluster_size;
    if (!t) {
        uint64_t table_off = s->file_size;

        s->file_size += s->table_bytes;
        t = qed_l2_new(s, table_off);
        qed_l1_set(s, qed_l1_index(s, pos), table_off);
    }
    /* Old bytes may lie there (see BDRVQEDState): zeroes must be real. */
    whole = data_off < s->garbage_end;
    BLKDBG_EVENT(bs->file, BLKDBG_CLUSTER_ALLOC);

    ret = qed_read_cow(s, kind, start, head, &head_buf);
    if (ret == 0) {
        ret = qed_read_cow(s, kind, pos + len, tail, &tail_buf);
    }
    if (ret < 0) {
        goto out;
    }

    qemu_iovec_init(&w, (qiov ? qiov->niov : 1) + 2);
    write_off = data_off;
    if (head_buf) {
        qemu_iovec_add(&w, head_buf, head);
    } else if (whole) {
        qed_add_zeroes(s, &w, head);
    } else {
        /* A hole reads as zeroes: leave it. */
        write_off += head;
    }
    if (qiov) {
        qemu_iovec_concat(&w, qiov, qoff, len);
    } else {
        qed_add_zeroes(s, &w, len);
    }
    if (tail_buf) {
        qemu_iovec_add(&w, tail_buf, tail);
    } else if (whole) {
        qed_add_zeroes(s, &w, tail);
    }

    BLKDBG_EVENT(bs->file, BLKDBG_WRITE_AIO);
    ret = bdrv_co_pwritev(bs->file, write_off, w.size, &w,
                          flags & BDRV_REQ_FUA);
    qemu_iovec_destroy(&w);
    if (ret == 0) {
        /* The data is in the file: now the table may point at it. */
        qed_l2_set(s, t, qed_l2_index(s, start), n, data_off,
                   s->cluster_size);
        s->data_end = MAX(s->data_end, data_off + n * s->cluster_size);
    }

out:
    qed_allocation_end(s, &a);
    g_free(head_buf);
    g_free(tail_buf);
    qed_l2_unref(s, t);
    return ret;
}

/*
 * Make [pos, pos + len) zero clusters (cluster-aligned, unallocated
 * now), creating the table if @t is NULL.  Never yields.  Consumes the
 * reference on @t.
 */
static void qed_set_zero_clusters(BDRVQEDState *s, QEDTable *t,
                                  uint64_t pos, uint64_t len)
{
    if (!t) {
        uint64_t table_off = s->file_size;

        s->file_size += s->table_bytes;
        t = qed_l2_new(s, table_off);
        qed_l1_set(s, qed_l1_index(s, pos), table_off);
    }
    qed_l2_set(s, t, qed_l2_index(s, pos), len >> s->cluster_bits,
               QED_ZERO_CLUSTER, 0);
    qed_l2_unref(s, t);
}

/*
 * Write [pos, pos + bytes): data from @qiov at @qoff, or zeroes if
 * @qiov is NULL.  With @zero_clusters, whole clusters that are not
 * allocated become zero clusters instead of being allocated (the range
 * must then be cluster-aligned).
 */
static int coroutine_fn qed_co_write(BDRVQEDState *s, uint64_t pos,
                                     uint64_t bytes, QEMUIOVector *qiov,
                                     size_t qoff, BdrvRequestFlags flags,
                                     bool zero_clusters, QEDWriteReq *req)
{
    BlockDriverState *bs = s->bs;

    while (bytes) {
        uint64_t len = bytes;
        uint64_t file_off, first, end;
        QEDAllocation *busy;
        QEDTable *t;
        int kind, ret;

        ret = qed_get_table_for(s, pos, &t);
        if (ret < 0) {
            return ret;
        }
        kind = qed_classify(s, t, pos, &len, &file_off);
        if (kind < 0) {
            if (t) {
                qed_l2_unref(s, t);
            }
            return kind;
        }

        if (kind == QED_CLUSTER_DATA) {
            qed_l2_unref(s, t);
            if (qiov) {
                QEMUIOVector slice;

                qemu_iovec_init_slice(&slice, qiov, qoff, len);
                BLKDBG_EVENT(bs->file, BLKDBG_WRITE_AIO);
                ret = bdrv_co_pwritev(bs->file, file_off, len, &slice,
                                      flags & BDRV_REQ_FUA);
                qemu_iovec_destroy(&slice);
            } else {
                ret = bdrv_co_pwrite_zeroes(bs->file, file_off, len,
                                            flags & (BDRV_REQ_FUA |
                                                     BDRV_REQ_MAY_UNMAP |
                                                     BDRV_REQ_NO_FALLBACK));
            }
            if (ret < 0) {
                return ret;
            }
            goto next;
        }

        if (kind == QED_CLUSTER_ZERO && zero_clusters) {
            if (t) {
                qed_l2_unref(s, t);
            }
            goto next;
        }

        /* Metadata will change: hold the gate (may yield), look again. */
        if (!req->in_gate) {
            if (t) {
                qed_l2_unref(s, t);
            }
            ret = qed_gate_enter(s);
            if (ret < 0) {
                return ret;
            }
            req->in_gate = true;
            continue;
        }

        /* Clusters another request is allocating: wait, or stop short. */
        first = pos >> s->cluster_bits;
        end = (pos + len - 1) / s->cluster_size + 1;
        busy = qed_find_allocation(s, first, end);
        if (busy && busy->first <= first) {
            if (t) {
                qed_l2_unref(s, t);
            }
            qemu_co_queue_wait(&busy->waiters, NULL);
            continue;
        }
        if (busy) {
            len = (busy->first << s->cluster_bits) - pos;
        }

        /* No space is handed out while the file is being extended. */
        if (s->extending) {
            if (t) {
                qed_l2_unref(s, t);
            }
            qemu_co_queue_wait(&s->extend_waiters, NULL);
            continue;
        }

        req->changed_metadata = true;
        if (zero_clusters) {
            qed_set_zero_clusters(s, t, pos, len);
        } else {
            ret = qed_co_allocate(s, t, kind, pos, len, qiov, qoff, flags);
            if (ret < 0) {
                return ret;
            }
        }
next:
        pos += len;
        qoff += len;
        bytes -= len;
    }
    return 0;
}

/* The end of every write: make it stable if asked, leave the gate. */
static int coroutine_fn qed_finish_write(BDRVQEDState *s, QEDWriteReq *req,
                                         BdrvRequestFlags flags, int ret)
{
    if (ret == 0 && req->changed_metadata &&
        ((flags & BDRV_REQ_FUA) || s->l2_dirty_count > s->l2_max)) {
        ret = qed_co_write_back(s);
        if (ret == 0 && (flags & BDRV_REQ_FUA)) {
            ret = bdrv_co_flush(s->bs->file->bs);
        }
    }
    if (req->in_gate) {
        qed_gate_leave(s);
    }
    return ret;
}

static int coroutine_fn qed_co_pwritev(BlockDriverState *bs, int64_t offset,
                                       int64_t bytes, QEMUIOVector *qiov,
                                       BdrvRequestFlags flags)
{
    BDRVQEDState *s = bs->opaque;
    QEDWriteReq req = { 0 };
    int ret;

    ret = qed_co_write(s, offset, bytes, qiov, 0, flags, false, &req);
    return qed_finish_write(s, &req, flags, ret);
}

/*
 * Whole clusters that are not allocated become zero clusters; allocated
 * ones get zeroes written; partial clusters are written as data (QEMU
 * allocates them the same way, so images match).
 */
static int coroutine_fn qed_co_pwrite_zeroes(BlockDriverState *bs,
                                             int64_t offset, int64_t bytes,
                                             BdrvRequestFlags flags)
{
    BDRVQEDState *s = bs->opaque;
    QEDWriteReq req = { 0 };
    uint64_t pos = offset, end = offset + bytes;
    uint64_t mid = MIN(QEMU_ALIGN_UP(pos, s->cluster_size), end);
    uint64_t mid_end = MAX(QEMU_ALIGN_DOWN(end, s->cluster_size), mid);
    int ret = 0;

    if ((flags & BDRV_REQ_NO_FALLBACK) && (mid > pos || end > mid_end)) {
        return -ENOTSUP;
    }
    if (mid > pos) {
        ret = qed_co_write(s, pos, mid - pos, NULL, 0, flags, false, &req);
    }
    if (ret == 0 && mid_end > mid) {
        ret = qed_co_write(s, mid, mid_end - mid, NULL, 0, flags, true,
                           &req);
    }
    if (ret == 0 && end > mid_end) {
        ret = qed_co_write(s, mid_end, end - mid_end, NULL, 0, flags, false,
                           &req);
    }
    return qed_finish_write(s, &req, flags, ret);
}

/* The block layer flushes the file after this. */
static int coroutine_fn qed_co_flush_to_os(BlockDriverState *bs)
{
    return qed_co_write_back(bs->opaque);
}

/* ---- Status, length, resize, info ---- */

static int coroutine_fn qed_co_block_status(BlockDriverState *bs,
                                            int64_t offset, int64_t bytes,
                                            int64_t *pnum, int64_t *map,
                                            BlockDriverState **file)
{
    BDRVQEDState *s = bs->opaque;
    uint64_t len = bytes;
    uint64_t file_off;
    QEDTable *t;
    int kind, ret;

    ret = qed_get_table_for(s, offset, &t);
    if (ret < 0) {
        return ret;
    }
    kind = qed_classify(s, t, offset, &len, &file_off);
    if (t) {
        qed_l2_unref(s, t);
    }
    if (kind < 0) {
        return kind;
    }
    *pnum = len;
    switch (kind) {
    case QED_CLUSTER_DATA:
        *map = file_off;
        *file = bs->file->bs;
        return BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID;
    case QED_CLUSTER_ZERO:
        return BDRV_BLOCK_ZERO;
    default:
        return 0;
    }
}

static int64_t coroutine_fn qed_co_getlength(BlockDriverState *bs)
{
    BDRVQEDState *s = bs->opaque;

    return s->header.image_size;
}

static const char *const qed_prealloc_names[] = {
    [PREALLOC_MODE_OFF] = "off",
    [PREALLOC_MODE_METADATA] = "metadata",
    [PREALLOC_MODE_FALLOC] = "falloc",
    [PREALLOC_MODE_FULL] = "full",
};

static int coroutine_fn qed_co_truncate(BlockDriverState *bs,
                                        int64_t offset, bool exact,
                                        PreallocMode prealloc,
                                        BdrvRequestFlags flags,
                                        GError **errp)
{
    BDRVQEDState *s = bs->opaque;
    uint64_t old_size = s->header.image_size;
    int ret;

    if (prealloc != PREALLOC_MODE_OFF) {
        error_setg(errp, "Unsupported preallocation mode '%s'",
                   qed_prealloc_names[prealloc]);
        return -ENOTSUP;
    }
    if (!qed_is_image_size_valid(offset, s->cluster_size,
                                 s->header.table_size)) {
        error_setg(errp, "Invalid image size specified");
        return -EINVAL;
    }
    if ((uint64_t)offset < old_size) {
        error_setg(errp, "Shrinking images is currently not supported");
        return -ENOTSUP;
    }

    qemu_co_mutex_lock(&s->header_lock);
    s->header.image_size = offset;
    ret = qed_co_write_header(s);
    if (ret < 0) {
        s->header.image_size = old_size;
        error_setg_errno(errp, -ret, "Failed to update the image size");
    }
    qemu_co_mutex_unlock(&s->header_lock);
    return ret;
}

static int coroutine_fn qed_co_get_info(BlockDriverState *bs,
                                        BlockDriverInfo *bdi)
{
    BDRVQEDState *s = bs->opaque;

    bdi->cluster_size = s->cluster_size;
    /*
     * QEMU 7.2's qemu-img reports dirty-flag false for QED whatever the
     * need-check bit: that flag is qcow2's notion.
     */
    bdi->is_dirty = false;
    return 0;
}

static int coroutine_fn qed_co_check_drv(BlockDriverState *bs,
                                         BdrvCheckResult *res,
                                         BdrvCheckMode fix)
{
    return qed_co_check(bs->opaque, res, fix != 0);
}

/* ---- Changing the backing file ---- */

typedef struct QEDBackingCo {
    BDRVQEDState *s;
    const char *file;
    const char *fmt;
    int ret;
} QEDBackingCo;

static void coroutine_fn qed_change_backing_co(void *opaque)
{
    QEDBackingCo *c = opaque;
    BDRVQEDState *s = c->s;
    QEDHeader h = s->header;
    uint64_t area = (uint64_t)h.header_size * s->cluster_size;
    size_t len = c->file ? strlen(c->file) : 0;
    g_autofree uint8_t *buf = NULL;
    QEMUIOVector qiov;
    int ret;

    /* The name goes right after the header, inside the header area. */
    h.backing_filename_offset = QED_HEADER_BYTES;
    h.backing_filename_size = len;
    if (c->file) {
        h.features |= QED_F_BACKING_FILE;
        if (c->fmt && !strcmp(c->fmt, "raw")) {
            h.features |= QED_F_BACKING_FORMAT_NO_PROBE;
        } else {
            h.features &= ~QED_F_BACKING_FORMAT_NO_PROBE;
        }
    } else {
        h.features &= ~(QED_F_BACKING_FILE | QED_F_BACKING_FORMAT_NO_PROBE);
    }
    if (QED_HEADER_BYTES + len > area) {
        c->ret = -ENOSPC;
        return;
    }

    /* Rewrite the header area, keeping whatever else it holds. */
    buf = g_malloc(area);
    qemu_iovec_init_buf(&qiov, buf, area);
    ret = bdrv_co_preadv(s->bs->file, 0, area, &qiov, 0);
    if (ret < 0) {
        c->ret = ret;
        return;
    }
    qed_header_encode(&h, buf);
    if (len) {
        memcpy(buf + QED_HEADER_BYTES, c->file, len);
    }
    qemu_co_mutex_lock(&s->header_lock);
    ret = bdrv_co_pwritev(s->bs->file, 0, area, &qiov, 0);
    if (ret == 0) {
        /* Keep the need-check bit as it is in memory. */
        h.features = (h.features & ~QED_F_NEED_CHECK) |
                     (s->header.features & QED_F_NEED_CHECK);
        s->header = h;
    }
    qemu_co_mutex_unlock(&s->header_lock);
    c->ret = ret;
}

static int qed_change_backing_file(BlockDriverState *bs,
                                   const char *backing_file,
                                   const char *backing_fmt)
{
    QEDBackingCo c = {
        .s = bs->opaque, .file = backing_file, .fmt = backing_fmt,
    };

    qed_run_co(bs, qed_change_backing_co, &c);
    return c.ret;
}

/* ---- Open and close ---- */

typedef struct QEDOpenCo {
    BDRVQEDState *s;
    int flags;
    GError **errp;
    int ret;
} QEDOpenCo;

static int coroutine_fn qed_co_read_header(BDRVQEDState *s, GError **errp)
{
    BlockDriverState *bs = s->bs;
    uint8_t buf[QED_HEADER_BYTES] = { 0 };
    QEDHeader *h = &s->header;
    QEMUIOVector qiov;
    int64_t len;
    int ret;

    len = bdrv_co_getlength(bs->file->bs);
    if (len < 0) {
        error_setg_errno(errp, -len, "Could not get the size of the file");
        return len;
    }
    if (len > 0) {
        qemu_iovec_init_buf(&qiov, buf, MIN(len, QED_HEADER_BYTES));
        ret = bdrv_co_preadv(bs->file, 0, qiov.size, &qiov, 0);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Could not read the QED header");
            return ret;
        }
    }
    qed_header_decode(h, buf);

    /* The checks, in QEMU's order (the first failure is reported). */
    if (h->magic != QED_MAGIC) {
        error_setg(errp, "Image not in QED format");
        return -EINVAL;
    }
    if (h->features & ~QED_FEATURE_MASK) {
        error_setg(errp, "Unsupported QED features: %" PRIx64,
                   h->features & ~QED_FEATURE_MASK);
        return -ENOTSUP;
    }
    if (!qed_is_cluster_size_valid(h->cluster_size)) {
        error_setg(errp, "QED cluster size is invalid");
        return -EINVAL;
    }
    if (!qed_is_table_size_valid(h->table_size)) {
        error_setg(errp, "QED table size is invalid");
        return -EINVAL;
    }
    if (!qed_is_image_size_valid(h->image_size, h->cluster_size,
                                 h->table_size)) {
        error_setg(errp, "QED image size is invalid");
        return -EINVAL;
    }

    s->cluster_size = h->cluster_size;
    s->cluster_bits = __builtin_ctz(h->cluster_size);
    s->table_bytes = (uint64_t)h->table_size * h->cluster_size;
    s->table_nelems = s->table_bytes / sizeof(uint64_t);
    s->l2_bits = __builtin_ctz(s->table_nelems);
    /* A partial last cluster is not part of the image (as in QEMU). */
    s->file_size = QEMU_ALIGN_DOWN((uint64_t)len, s->cluster_size);
    s->file_covered = s->file_size;
    s->garbage_end = len;

    if (!qed_check_table_offset(s, h->l1_table_offset, s->file_size)) {
        error_setg(errp, "QED table offset is invalid");
        return -EINVAL;
    }

    if (h->features & QED_F_BACKING_FILE) {
        uint64_t area = (uint64_t)h->header_size * s->cluster_size;
        uint64_t name_end = (uint64_t)h->backing_filename_offset +
                            h->backing_filename_size;
        g_autofree char *name = NULL;

        if (name_end > area) {
            error_setg(errp, "QED backing filename offset is invalid");
            return -EINVAL;
        }
        if (h->backing_filename_size >= sizeof(bs->backing_file)) {
            error_setg(errp, "Backing file name too long");
            return -EINVAL;
        }
        name = g_malloc0(h->backing_filename_size + 1);
        if (h->backing_filename_size) {
            qemu_iovec_init_buf(&qiov, name, h->backing_filename_size);
            ret = bdrv_co_preadv(bs->file, h->backing_filename_offset,
                                 h->backing_filename_size, &qiov, 0);
            if (ret < 0) {
                error_setg_errno(errp, -ret,
                                 "Could not read the backing file name");
                return ret;
            }
        }
        g_strlcpy(bs->backing_file, name, sizeof(bs->backing_file));
        if (h->features & QED_F_BACKING_FORMAT_NO_PROBE) {
            g_strlcpy(bs->backing_format, "raw",
                      sizeof(bs->backing_format));
        }
    }
    return 0;
}

static void coroutine_fn qed_open_co(void *opaque)
{
    QEDOpenCo *o = opaque;
    BDRVQEDState *s = o->s;
    int ret;

    ret = qed_co_read_header(s, o->errp);
    if (ret < 0) {
        goto out;
    }

    qed_l2_cache_init(s);
    s->l1_table = qed_alloc_table(s, false);
    ret = qed_co_read_l1(s);
    if (ret < 0) {
        error_setg_errno(o->errp, -ret, "Could not read the L1 table");
        goto out;
    }

    if (o->flags & BDRV_O_RDWR) {
        /* A writer that does not know autoclear bits must clear them. */
        if (s->header.autoclear_features & ~QED_AUTOCLEAR_FEATURE_MASK) {
            s->header.autoclear_features &= QED_AUTOCLEAR_FEATURE_MASK;
            ret = qed_co_write_header(s);
            if (ret == 0) {
                ret = bdrv_co_flush(s->bs->file->bs);
            }
            if (ret < 0) {
                error_setg_errno(o->errp, -ret,
                                 "Could not update the QED header");
                goto out;
            }
        }
        /* Not closed cleanly: check and repair before anything else. */
        if ((s->header.features & QED_F_NEED_CHECK) &&
            !(o->flags & BDRV_O_CHECK)) {
            BdrvCheckResult res = { 0 };

            ret = qed_co_check(s, &res, true);
            if (ret < 0) {
                error_setg_errno(o->errp, -ret, "Image corrupted");
                goto out;
            }
        }
    }
    s->dirty = s->header.features & QED_F_NEED_CHECK;
    ret = 0;
out:
    o->ret = ret;
}

static void qed_free_state(BDRVQEDState *s)
{
    if (s->l2_cache) {
        qed_l2_cache_clear(s);
        g_hash_table_destroy(s->l2_cache);
        s->l2_cache = NULL;
    }
    free(s->l1_table);
    s->l1_table = NULL;
    if (s->zero_buf) {
        munmap(s->zero_buf, s->cluster_size);
        s->zero_buf = NULL;
    }
    g_mutex_clear(&s->timer_lock);
}

static const char *const qed_option_names[] = {
    "file", NULL,
};

static int qed_open(BlockDriverState *bs, JsonObject *options, int flags,
                    GError **errp)
{
    BDRVQEDState *s = bs->opaque;
    QEDOpenCo o = { .s = s, .flags = flags, .errp = errp };
    AioContext *ctx;

    s->bs = bs;
    g_mutex_init(&s->timer_lock);
    qemu_co_mutex_init(&s->l1_write_lock);
    qemu_co_mutex_init(&s->header_lock);
    qemu_co_queue_init(&s->gate_waiters);
    qemu_co_queue_init(&s->clear_waiters);
    qemu_co_queue_init(&s->extend_waiters);
    QLIST_INIT(&s->allocs);

    if (!bdrv_open_child(bs, options, "file",
                         BDRV_CHILD_IMAGE | BDRV_CHILD_PRIMARY, false,
                         errp)) {
        g_mutex_clear(&s->timer_lock);
        return -EINVAL;
    }

    qed_run_co(bs, qed_open_co, &o);
    if (o.ret < 0) {
        qed_free_state(s);
        bdrv_unref_child(bs, bs->file);
        return o.ret;
    }

    /* Read-only anonymous memory: the kernel's zero page, shared. */
    s->zero_buf = mmap(NULL, s->cluster_size, PROT_READ,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (s->zero_buf == MAP_FAILED) {
        s->zero_buf = NULL;
        error_setg_errno(errp, errno, "Could not map a zero buffer");
        qed_free_state(s);
        bdrv_unref_child(bs, bs->file);
        return -ENOMEM;
    }

    ctx = bdrv_get_aio_context(bs);
    s->timer_ctx = ctx;
    s->timer = aio_timer_new(ctx, QEMU_CLOCK_REALTIME, SCALE_NS,
                             qed_need_check_timer_cb, s);
    s->drain_handler = aio_context_add_drain_ops(ctx, &qed_drain_ops, s);
    return 0;
}

static void coroutine_fn qed_close_co(void *opaque)
{
    BDRVQEDState *s = opaque;
    int ret;

    if (s->bs->read_only) {
        return;
    }
    /* Clean close: metadata in the file, stably, then the bit off. */
    ret = bdrv_co_flush(s->bs);
    if (ret == 0 && (s->header.features & QED_F_NEED_CHECK)) {
        s->header.features &= ~QED_F_NEED_CHECK;
        ret = qed_co_write_header(s);
        if (ret == 0) {
            ret = bdrv_co_flush(s->bs->file->bs);
        }
    }
    /*
     * Nobody is left to tell: the bit stays set and the next writer
     * checks the image, which is what the bit is for.
     */
    (void)ret;
}

static void qed_close(BlockDriverState *bs)
{
    BDRVQEDState *s = bs->opaque;

    g_mutex_lock(&s->timer_lock);
    s->closing = true;
    qed_disarm_timer_locked(s);
    assert(!s->clear_running);
    g_mutex_unlock(&s->timer_lock);
    /* Drained: this runs our end, which no longer re-arms. */
    aio_context_remove_drain_ops(s->drain_handler);
    s->drain_handler = NULL;
    timer_free(s->timer);
    s->timer = NULL;

    qed_run_co(bs, qed_close_co, s);
    qed_free_state(s);
}

/* ---- Reopen ---- */

/*
 * Becoming read-only: afterwards nothing may write, so everything the
 * cache holds goes to the file now and the need-check bit is cleared,
 * as on a clean close.
 */
static void coroutine_fn qed_reopen_ro_co(void *opaque)
{
    QEDOpenCo *o = opaque;
    BDRVQEDState *s = o->s;
    int ret;

    ret = bdrv_co_flush(s->bs);
    if (ret == 0 && (s->header.features & QED_F_NEED_CHECK)) {
        qemu_co_mutex_lock(&s->header_lock);
        s->header.features &= ~QED_F_NEED_CHECK;
        ret = qed_co_write_header(s);
        if (ret < 0) {
            s->header.features |= QED_F_NEED_CHECK;
        }
        qemu_co_mutex_unlock(&s->header_lock);
        if (ret == 0) {
            ret = bdrv_co_flush(s->bs->file->bs);
        }
    }
    if (ret == 0) {
        g_mutex_lock(&s->timer_lock);
        s->dirty = false;
        g_mutex_unlock(&s->timer_lock);
    }
    o->ret = ret;
}

static int qed_reopen_prepare(BlockDriverState *bs, JsonObject *options,
                              int flags, void **opaque, GError **errp)
{
    QEDOpenCo o = { .s = bs->opaque };
    JsonNode *want = json_object_get_member(options, "file");
    JsonNode *have = bs->options ?
                     json_object_get_member(bs->options, "file") : NULL;

    /* "file" may be left out (it stays) but not changed. */
    if (want && (!have || !json_node_equal(want, have))) {
        error_setg(errp, "Block format '%s' used by node '%s' does not "
                   "support reopening files", bs->drv->format_name,
                   bs->node_name);
        return -ENOTSUP;
    }
    if (!bs->read_only && !(flags & BDRV_O_RDWR)) {
        /* Drained by the caller: no request runs meanwhile. */
        qed_run_co(bs, qed_reopen_ro_co, &o);
        if (o.ret < 0) {
            error_setg_errno(errp, -o.ret, "Could not flush the image");
            return o.ret;
        }
    }
    return 0;
}

static void qed_refresh_limits(BlockDriverState *bs, GError **errp)
{
    BDRVQEDState *s = bs->opaque;

    /* Zeroes are cheap for whole clusters only. */
    bs->bl.pwrite_zeroes_alignment = s->cluster_size;
}

/* ---- Creation ---- */

static const BlockOptDesc qed_create_opts[] = {
    { "size", BLOCK_OPT_TYPE_SIZE, "Virtual disk size" },
    { "backing_file", BLOCK_OPT_TYPE_STRING, "File name of a base image" },
    { "backing_fmt", BLOCK_OPT_TYPE_STRING, "Image format of the base image" },
    { "cluster_size", BLOCK_OPT_TYPE_SIZE, "Cluster size (in bytes)" },
    { "table_size", BLOCK_OPT_TYPE_SIZE,
      "L1/L2 table size (in clusters)" },
    { NULL }
};

/*
 * Write the new image's header area and empty L1 table through a backend
 * on the new file, which holds the image locks while it does.
 */
static int coroutine_fn qed_co_format(const char *filename, QEDHeader *h,
                                      const char *backing, GError **errp)
{
    g_autoptr(JsonObject) opts = json_object_new();
    g_autofree uint8_t *area = NULL;
    g_autofree uint8_t *zeroes = NULL;
    uint64_t area_len = (uint64_t)h->header_size * h->cluster_size;
    uint64_t l1_len = (uint64_t)h->table_size * h->cluster_size;
    uint64_t done, chunk_max = MIN(l1_len, 1 * MiB);
    QEMUIOVector qiov;
    size_t name_len = backing ? strlen(backing) : 0;
    BlockBackend *blk;
    int ret;

    json_object_set_string_member(opts, "driver", "file");
    json_object_set_string_member(opts, "filename", filename);
    blk = blk_new_open(NULL, opts, BDRV_O_RDWR | BDRV_O_RESIZE |
                       BDRV_O_NO_SHARE, errp);
    if (!blk) {
        return -EIO;
    }

    /* A backend writes only inside the node: give the file its length. */
    ret = blk_co_truncate(blk, h->l1_table_offset + l1_len, false,
                          PREALLOC_MODE_OFF, 0, errp);
    if (ret < 0) {
        blk_unref(blk);
        return ret;
    }

    /* Header and backing name, written as QEMU does: just those bytes. */
    area = g_malloc0(MAX(area_len, QED_HEADER_BYTES + name_len));
    qed_header_encode(h, area);
    if (name_len) {
        memcpy(area + QED_HEADER_BYTES, backing, name_len);
    }
    qemu_iovec_init_buf(&qiov, area, QED_HEADER_BYTES + name_len);
    ret = blk_co_pwritev(blk, 0, qiov.size, &qiov, 0);

    /* The empty L1 table, written out so the file has its full length. */
    zeroes = g_malloc0(chunk_max);
    for (done = 0; ret == 0 && done < l1_len; done += chunk_max) {
        uint64_t n = MIN(chunk_max, l1_len - done);

        qemu_iovec_init_buf(&qiov, zeroes, n);
        ret = blk_co_pwritev(blk, h->l1_table_offset + done, n, &qiov, 0);
    }
    if (ret == 0) {
        ret = blk_co_flush(blk);
    }
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not write the image");
    }
    blk_unref(blk);
    return ret;
}

static int coroutine_fn qed_co_create_opts(BlockDriver *drv,
                                           const char *filename,
                                           JsonObject *opts, GError **errp)
{
    g_autoptr(JsonObject) file_opts = NULL;
    g_autofree char *backing = NULL;
    g_autofree char *backing_fmt = NULL;
    uint64_t size, cluster_size, table_size, max;
    QEDHeader h = { 0 };
    size_t name_len;
    int ret;

    if (!keyval_get_size(opts, "size", 0, &size, errp) ||
        !keyval_get_str(opts, "backing_file", NULL, &backing, errp) ||
        !keyval_get_str(opts, "backing_fmt", NULL, &backing_fmt, errp) ||
        !keyval_get_size(opts, "cluster_size", QED_DEFAULT_CLUSTER_SIZE,
                         &cluster_size, errp) ||
        !keyval_get_size(opts, "table_size", QED_DEFAULT_TABLE_SIZE,
                         &table_size, errp)) {
        return -EINVAL;
    }

    /* QEMU creates the (empty) file first and checks the values then. */
    file_opts = json_object_new();
    {
        g_autoptr(GList) members = json_object_get_members(opts);
        GList *m;

        for (m = members; m; m = m->next) {
            json_object_set_member(file_opts, m->data,
                                   json_object_dup_member(opts, m->data));
        }
    }
    json_object_set_int_member(file_opts, "size", 0);
    ret = bdrv_co_create_file(filename, file_opts, errp);
    if (ret < 0) {
        return ret;
    }

    if (!qed_is_cluster_size_valid(cluster_size)) {
        error_setg(errp, "QED cluster size must be within range [%u, %u] "
                   "and power of 2", QED_MIN_CLUSTER_SIZE,
                   QED_MAX_CLUSTER_SIZE);
        return -EINVAL;
    }
    if (!qed_is_table_size_valid(table_size)) {
        error_setg(errp, "QED table size must be within range [%u, %u] "
                   "and power of 2", QED_MIN_TABLE_SIZE, QED_MAX_TABLE_SIZE);
        return -EINVAL;
    }
    size = QEMU_ALIGN_UP(size, BDRV_SECTOR_SIZE);
    if (!qed_is_image_size_valid(size, cluster_size, table_size)) {
        max = qed_max_image_size(cluster_size, table_size);
        error_setg(errp, "QED image size must be a non-zero multiple of "
                   "cluster size and less than %" PRIu64 " bytes", max);
        return -EINVAL;
    }

    name_len = backing ? strlen(backing) : 0;
    h.magic = QED_MAGIC;
    h.cluster_size = cluster_size;
    h.table_size = table_size;
    /*
     * One cluster, unless the backing name does not fit in it (QEMU
     * 7.2 then writes an image it cannot open; we make room).
     */
    h.header_size = MAX(1, DIV_ROUND_UP(QED_HEADER_BYTES + name_len,
                                        cluster_size));
    h.l1_table_offset = (uint64_t)h.header_size * cluster_size;
    h.image_size = size;
    if (backing) {
        h.features |= QED_F_BACKING_FILE;
        if (backing_fmt && !strcmp(backing_fmt, "raw")) {
            h.features |= QED_F_BACKING_FORMAT_NO_PROBE;
        }
        h.backing_filename_offset = QED_HEADER_BYTES;
        h.backing_filename_size = name_len;
    }
    return qed_co_format(filename, &h, backing, errp);
}

/* ---- Debugging ---- */

static BlockDriver bdrv_qed;

bool qed_debug_state(BlockDriverState *bs, QEDDebugState *st)
{
    BDRVQEDState *s;
    QEDAllocation *a;

    if (!bs || bs->drv != &bdrv_qed) {
        return false;
    }
    s = bs->opaque;
    memset(st, 0, sizeof(*st));
    g_mutex_lock(&s->timer_lock);
    st->need_check = s->dirty;
    st->timer_pending = s->timer_ref;
    st->clear_running = s->clear_running;
    st->timer_ctx = s->timer_ctx;
    st->handler_ctx = s->drain_handler ?
                      aio_drain_handler_get_context(s->drain_handler) : NULL;
    g_mutex_unlock(&s->timer_lock);
    st->metadata_dirty = qed_metadata_dirty(s);
    st->l2_cached = s->l2_count;
    QLIST_FOREACH(a, &s->allocs, next) {
        st->allocs_in_progress++;
    }
    return true;
}

static BlockDriver bdrv_qed = {
    .format_name = "qed",
    .instance_size = sizeof(BDRVQEDState),
    .supports_backing = true,
    .option_names = qed_option_names,
    .bdrv_probe = qed_probe,
    .bdrv_open = qed_open,
    .bdrv_close = qed_close,
    .bdrv_refresh_limits = qed_refresh_limits,
    .bdrv_reopen_prepare = qed_reopen_prepare,
    .bdrv_co_preadv = qed_co_preadv,
    .bdrv_co_pwritev = qed_co_pwritev,
    .bdrv_co_pwrite_zeroes = qed_co_pwrite_zeroes,
    .bdrv_co_flush_to_os = qed_co_flush_to_os,
    .bdrv_co_block_status = qed_co_block_status,
    .bdrv_co_getlength = qed_co_getlength,
    .bdrv_co_truncate = qed_co_truncate,
    .bdrv_co_get_info = qed_co_get_info,
    .bdrv_co_check = qed_co_check_drv,
    .bdrv_change_backing_file = qed_change_backing_file,
    .bdrv_detach_aio_context = qed_detach_aio_context,
    .bdrv_attach_aio_context = qed_attach_aio_context,
    .create_opts = qed_create_opts,
    .bdrv_co_create_opts = qed_co_create_opts,
};

static void __attribute__((constructor)) bdrv_qed_init(void)
{
    bdrv_register(&bdrv_qed);
}
