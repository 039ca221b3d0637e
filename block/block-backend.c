/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * BlockBackend: the user's handle on a node, and the drain handler that
 * holds new requests back while the context is drained.
 *
 * Copyright (c) 2026 The Sluice authors
 */
#include "qemu/osdep.h"

#include "block/aio-wait.h"
#include "block/block_int.h"
#include "qemu/coroutine.h"
#include "qemu/main-loop.h"
#include "sysemu/block-backend.h"

/* A request waiting for the end of a drained section. */
typedef struct BlkQueuedRequest {
    Coroutine *co;
    QSIMPLEQ_ENTRY(BlkQueuedRequest) next;
} BlkQueuedRequest;

struct BlockBackend {
    int refcnt;                 /* main thread */
    AioContext *ctx;
    BdrvChild *root;            /* main thread; stable while requests run */
    uint64_t perm;
    uint64_t shared_perm;
    /* cache=writethrough/directsync turn it off; main thread writes it. */
    bool enable_write_cache;

    AioDrainHandler *drain_handler;

    /* Requests inside the backend; atomic. */
    unsigned int in_flight;

    /*
     * queue_lock protects quiesce_counter and queued; the drain callbacks
     * take it from whichever thread drains, requests from the backend's
     * context.  quiesce_counter is also read without the lock on the fast
     * path, after the request has been counted in flight (see
     * blk_enter_request()).  It is a counter, not a flag, because moving to
     * another context registers the new handler (begin) before removing
     * the old one (end), so the backend never looks unquiesced in between.
     */
    GMutex queue_lock;
    unsigned int quiesce_counter;
    unsigned int n_queued;
    QSIMPLEQ_HEAD(, BlkQueuedRequest) queued;
};

static AioInFlightTag blk_request_tag(void)
{
    static gsize once;
    static AioInFlightTag tag;

    if (g_once_init_enter(&once)) {
        tag = aio_in_flight_tag("blk-request");
        g_once_init_leave(&once, 1);
    }
    return tag;
}

/*
 * The context is passed in rather than read from blk->ctx, so that a
 * request that raced with a move to another context decrements the
 * counter it incremented.
 */
static void blk_inc_in_flight(BlockBackend *blk, AioContext *ctx)
{
    qatomic_inc(&blk->in_flight);
    aio_context_inc_in_flight(ctx, blk_request_tag());
}

static void blk_dec_in_flight(BlockBackend *blk, AioContext *ctx)
{
    qatomic_dec(&blk->in_flight);
    aio_context_dec_in_flight(ctx, blk_request_tag());
}

/* ---- Drain handler ---- */

static void blk_drained_begin(void *opaque)
{
    BlockBackend *blk = opaque;

    g_mutex_lock(&blk->queue_lock);
    qatomic_set(&blk->quiesce_counter, blk->quiesce_counter + 1);
    g_mutex_unlock(&blk->queue_lock);
    /* Pairs with blk_enter_request(): publish, then drain reads counts. */
    smp_mb();
}

static void blk_drained_end(void *opaque)
{
    BlockBackend *blk = opaque;
    QSIMPLEQ_HEAD(, BlkQueuedRequest) wake =
        QSIMPLEQ_HEAD_INITIALIZER(wake);
    BlkQueuedRequest *req;

    g_mutex_lock(&blk->queue_lock);
    assert(blk->quiesce_counter > 0);
    qatomic_set(&blk->quiesce_counter, blk->quiesce_counter - 1);
    if (blk->quiesce_counter == 0) {
        QSIMPLEQ_CONCAT(&wake, &blk->queued);
        blk->n_queued = 0;
    }
    g_mutex_unlock(&blk->queue_lock);

    /*
     * Resubmit without any outside kick, from a bottom half rather than
     * here: entering them now would run requests inside the registry's
     * end walk, before the handlers registered earlier (those of the
     * nodes below us) have ended.  The bottom half is that of the
     * coroutine's own context, not the backend's: a request may still be
     * on its way to yield there (it leaves the in-flight count first), so
     * only its own thread may enter it; if the backend moved meanwhile,
     * the request follows it from there.
     */
    while ((req = QSIMPLEQ_FIRST(&wake))) {
        Coroutine *co = req->co;

        /* req lives on the coroutine's stack: read it before scheduling. */
        QSIMPLEQ_REMOVE_HEAD(&wake, next);
        aio_co_schedule(qemu_coroutine_get_aio_context(co), co);
    }
}

static const AioDrainOps blk_drain_ops = {
    .drained_begin = blk_drained_begin,
    .drained_end = blk_drained_end,
};

/*
 * Let a request in: returns the context it runs and is counted in.
 *
 * The request runs in the backend's context; one issued from elsewhere
 * (typically racing with a move to another context) continues there.
 * It counts itself in flight, then looks at the quiesce counter: a drain
 * raises the counter and then waits for the in-flight count, so either
 * the drain sees this request or this request sees the drain.  A request
 * that meets a drain stops counting, queues in the backend and waits for
 * the end of the section.
 */
static AioContext *coroutine_fn blk_enter_request(BlockBackend *blk)
{
    for (;;) {
        BlkQueuedRequest req = { .co = qemu_coroutine_self() };
        AioContext *ctx = qatomic_read(&blk->ctx);

        if (ctx != qemu_get_current_aio_context()) {
            aio_co_reschedule_self(ctx);
            continue;
        }

        blk_inc_in_flight(blk, ctx);
        smp_mb();
        if (!qatomic_read(&blk->quiesce_counter)) {
            return ctx;
        }

        g_mutex_lock(&blk->queue_lock);
        if (!blk->quiesce_counter) {
            /* The section ended meanwhile; we are counted, go ahead. */
            g_mutex_unlock(&blk->queue_lock);
            return ctx;
        }
        QSIMPLEQ_INSERT_TAIL(&blk->queued, &req, next);
        blk->n_queued++;
        g_mutex_unlock(&blk->queue_lock);

        blk_dec_in_flight(blk, ctx);
        qemu_coroutine_yield();
    }
}

/* ---- Life cycle ---- */

static char *blk_root_get_parent_desc(BdrvChild *c)
{
    /* Named backends (devices, exports) arrive with the daemon. */
    return g_strdup("a block device");
}

/*
 * Follow the root node to @ctx.  Both contexts are drained, so the
 * handler is registered in the new one (it begins at once) before it
 * leaves the old one (it ends at once): the backend stays quiesced.
 */
static void blk_root_set_aio_context(BdrvChild *c, AioContext *ctx)
{
    BlockBackend *blk = c->opaque;
    AioDrainHandler *old = blk->drain_handler;

    blk->drain_handler = aio_context_add_drain_ops(ctx, &blk_drain_ops, blk);
    qatomic_set(&blk->ctx, ctx);
    aio_context_remove_drain_ops(old);
}

static const BdrvChildClass child_root = {
    .parent_is_bds = false,
    .get_parent_desc = blk_root_get_parent_desc,
    .set_aio_context = blk_root_set_aio_context,
};

BlockBackend *blk_new(AioContext *ctx, uint64_t perm, uint64_t shared_perm)
{
    BlockBackend *blk = g_new0(BlockBackend, 1);

    blk->refcnt = 1;
    blk->enable_write_cache = true;
    blk->ctx = ctx;
    blk->perm = perm;
    blk->shared_perm = shared_perm;
    g_mutex_init(&blk->queue_lock);
    QSIMPLEQ_INIT(&blk->queued);
    blk->drain_handler = aio_context_add_drain_ops(ctx, &blk_drain_ops, blk);
    return blk;
}

BlockBackend *blk_new_open_driver(BlockDriver *drv, const char *node_name,
                                  JsonObject *options, int flags,
                                  GError **errp)
{
    BlockDriverState *bs;
    BlockBackend *blk;
    uint64_t perm = BLK_PERM_CONSISTENT_READ;

    bs = bdrv_open_driver(drv, node_name, options, flags, errp);
    if (!bs) {
        return NULL;
    }
    if (flags & BDRV_O_RDWR) {
        perm |= BLK_PERM_WRITE;
    }
    if (flags & BDRV_O_RESIZE) {
        perm |= BLK_PERM_RESIZE;
    }
    blk = blk_new(bdrv_get_aio_context(bs), perm, BLK_PERM_ALL);
    if (!blk_insert_bs(blk, bs, errp)) {
        blk_unref(blk);
        bdrv_unref(bs);
        return NULL;
    }
    bdrv_unref(bs);
    return blk;
}

BlockBackend *blk_new_open(const char *filename, JsonObject *options,
                           int flags, GError **errp)
{
    uint64_t perm = BLK_PERM_CONSISTENT_READ;
    uint64_t shared = BLK_PERM_ALL;
    BlockDriverState *bs;
    BlockBackend *blk;

    if (flags & BDRV_O_RDWR) {
        perm |= BLK_PERM_WRITE;
    }
    if (flags & BDRV_O_RESIZE) {
        perm |= BLK_PERM_RESIZE;
    }
    if (flags & BDRV_O_NO_SHARE) {
        shared = BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE_UNCHANGED;
    }

    bs = bdrv_open(filename, options, flags, errp);
    if (!bs) {
        return NULL;
    }
    blk = blk_new(bdrv_get_aio_context(bs), perm, shared);
    if (!blk_insert_bs(blk, bs, errp)) {
        blk_unref(blk);
        bdrv_unref(bs);
        return NULL;
    }
    bdrv_unref(bs);
    return blk;
}

void blk_set_enable_write_cache(BlockBackend *blk, bool wce)
{
    qatomic_set(&blk->enable_write_cache, wce);
}

bool blk_enable_write_cache(BlockBackend *blk)
{
    return qatomic_read(&blk->enable_write_cache);
}

bool blk_set_perm(BlockBackend *blk, uint64_t perm, uint64_t shared_perm,
                  GError **errp)
{
    assert(qemu_in_main_thread());
    if (blk->root &&
        !bdrv_child_try_set_perm(blk->root, perm, shared_perm, errp)) {
        return false;
    }
    blk->perm = perm;
    blk->shared_perm = shared_perm;
    return true;
}

void blk_get_perm(BlockBackend *blk, uint64_t *perm, uint64_t *shared_perm)
{
    *perm = blk->perm;
    *shared_perm = blk->shared_perm;
}

bool blk_insert_bs(BlockBackend *blk, BlockDriverState *bs, GError **errp)
{
    BdrvChild *child;

    assert(qemu_in_main_thread());
    assert(!blk->root);
    if (bdrv_get_aio_context(bs) != blk->ctx) {
        error_setg(errp, "Cannot attach node '%s': it is in another "
                   "AioContext than the block device",
                   bdrv_get_node_name(bs));
        return false;
    }

    child = g_new0(BdrvChild, 1);
    child->bs = bs;
    child->name = g_strdup("root");
    child->klass = &child_root;
    child->role = BDRV_CHILD_DATA | BDRV_CHILD_PRIMARY;
    child->opaque = blk;
    child->perm = blk->perm;
    child->shared_perm = blk->shared_perm;

    bdrv_ref(bs);
    bdrv_drained_begin(bs);
    bdrv_graph_wrlock();
    QLIST_INSERT_HEAD(&bs->parents, child, next_parent);
    if (!bdrv_child_attach_perms(child, errp)) {
        QLIST_REMOVE(child, next_parent);
        bdrv_graph_wrunlock();
        bdrv_drained_end(bs);
        g_free(child->name);
        g_free(child);
        bdrv_unref(bs);
        return false;
    }
    blk->root = child;
    bdrv_graph_wrunlock();
    bdrv_drained_end(bs);
    return true;
}

void blk_remove_bs(BlockBackend *blk)
{
    BdrvChild *child = blk->root;
    BlockDriverState *bs;

    assert(qemu_in_main_thread());
    if (!child) {
        return;
    }
    bs = child->bs;
    bdrv_drained_begin(bs);
    bdrv_graph_wrlock();
    QLIST_REMOVE(child, next_parent);
    blk->root = NULL;
    bdrv_child_detach_perms(bs);
    bdrv_graph_wrunlock();
    bdrv_drained_end(bs);

    g_free(child->name);
    g_free(child);
    bdrv_unref(bs);
}

void blk_unref(BlockBackend *blk)
{
    if (!blk) {
        return;
    }
    assert(qemu_in_main_thread());
    assert(blk->refcnt > 0);
    if (--blk->refcnt > 0) {
        return;
    }
    blk_remove_bs(blk);
    aio_context_remove_drain_ops(blk->drain_handler);
    assert(QSIMPLEQ_EMPTY(&blk->queued));
    assert(qatomic_read(&blk->in_flight) == 0);
    g_mutex_clear(&blk->queue_lock);
    g_free(blk);
}

BlockDriverState *blk_bs(BlockBackend *blk)
{
    return blk->root ? blk->root->bs : NULL;
}

AioContext *blk_get_aio_context(BlockBackend *blk)
{
    return blk->ctx;
}

unsigned int blk_in_flight(BlockBackend *blk)
{
    return qatomic_read(&blk->in_flight);
}

unsigned int blk_queued_requests(BlockBackend *blk)
{
    unsigned int n;

    g_mutex_lock(&blk->queue_lock);
    n = blk->n_queued;
    g_mutex_unlock(&blk->queue_lock);
    return n;
}

/* ---- Coroutine I/O ---- */

/* Bounds of a byte range against the node's length, as QEMU checks. */
static int coroutine_fn blk_check_byte_request(BlockBackend *blk,
                                               int64_t offset, int64_t bytes)
{
    int64_t len;

    if (bytes < 0 || offset < 0) {
        return -EIO;
    }
    len = bdrv_co_getlength(blk->root->bs);
    if (len < 0) {
        return len;
    }
    if (offset > len || len - offset < bytes) {
        return -EIO;
    }
    return 0;
}

typedef enum BlkRequestType {
    BLK_REQ_READ,
    BLK_REQ_WRITE,
    BLK_REQ_ZEROES,
    BLK_REQ_DISCARD,
    BLK_REQ_FLUSH,
    BLK_REQ_LENGTH,
    BLK_REQ_TRUNCATE,
    BLK_REQ_STATUS,
} BlkRequestType;

/* What the less common request types need besides a range. */
typedef struct BlkRequestExtra {
    bool exact;                 /* truncate */
    PreallocMode prealloc;      /* truncate */
    GError **errp;              /* truncate */
    int64_t *pnum;              /* status */
    int64_t *map;               /* status */
    BlockDriverState **file;    /* status */
} BlkRequestExtra;

/* Every request goes through here: drain gate, checks, accounting. */
static int64_t coroutine_fn blk_co_request(BlockBackend *blk,
                                           BlkRequestType type,
                                           int64_t offset, int64_t bytes,
                                           QEMUIOVector *qiov,
                                           BdrvRequestFlags flags,
                                           BlkRequestExtra *x)
{
    AioContext *ctx;
    int64_t ret;

    /*
     * A request queued by a drain must not hold the graph lock, so nobody
     * may call us holding one (see graph-lock.h); we take it past the gate.
     */
    assert_bdrv_graph_unlocked();
    ctx = blk_enter_request(blk);
    bdrv_graph_co_rdlock();
    if (!blk->root) {
        ret = -ENOMEDIUM;
        if (type == BLK_REQ_TRUNCATE) {
            error_setg(x->errp, "No medium inserted");
        }
        goto out;
    }
    if (type != BLK_REQ_FLUSH && type != BLK_REQ_LENGTH &&
        type != BLK_REQ_TRUNCATE) {
        ret = blk_check_byte_request(blk, offset, bytes);
        if (ret < 0) {
            goto out;
        }
    }

    switch (type) {
    case BLK_REQ_READ:
        ret = bdrv_co_preadv(blk->root, offset, bytes, qiov, flags);
        break;
    case BLK_REQ_WRITE:
        ret = bdrv_co_pwritev(blk->root, offset, bytes, qiov, flags);
        break;
    case BLK_REQ_ZEROES:
        ret = bdrv_co_pwrite_zeroes(blk->root, offset, bytes, flags);
        break;
    case BLK_REQ_DISCARD:
        ret = bdrv_co_pdiscard(blk->root, offset, bytes);
        break;
    case BLK_REQ_FLUSH:
        ret = bdrv_co_flush(blk->root->bs);
        break;
    case BLK_REQ_LENGTH:
        ret = bdrv_co_getlength(blk->root->bs);
        break;
    case BLK_REQ_TRUNCATE:
        if (!(blk->root->perm & BLK_PERM_RESIZE)) {
            error_setg(x->errp, "Cannot resize: the block device does not "
                       "hold the resize permission");
            ret = -EPERM;
            break;
        }
        ret = bdrv_co_truncate(blk->root, offset, x->exact, x->prealloc,
                               flags, x->errp);
        break;
    case BLK_REQ_STATUS:
        ret = bdrv_co_block_status(blk->root->bs, offset, bytes, x->pnum,
                                   x->map, x->file);
        break;
    default:
        g_assert_not_reached();
    }
    /*
     * Without a write cache, a write completes only once it is stable.
     * A flush of the whole node makes it so whatever the driver supports,
     * which is what FUA would ask of each layer.
     */
    if (ret >= 0 && !qatomic_read(&blk->enable_write_cache) &&
        (type == BLK_REQ_WRITE || type == BLK_REQ_ZEROES)) {
        ret = bdrv_co_flush(blk->root->bs);
    }
out:
    bdrv_graph_co_rdunlock();
    blk_dec_in_flight(blk, ctx);
    return ret;
}

int coroutine_fn blk_co_preadv(BlockBackend *blk, int64_t offset,
                               int64_t bytes, QEMUIOVector *qiov,
                               BdrvRequestFlags flags)
{
    return blk_co_request(blk, BLK_REQ_READ, offset, bytes, qiov, flags,
                          NULL);
}

int coroutine_fn blk_co_pwritev(BlockBackend *blk, int64_t offset,
                                int64_t bytes, QEMUIOVector *qiov,
                                BdrvRequestFlags flags)
{
    return blk_co_request(blk, BLK_REQ_WRITE, offset, bytes, qiov, flags,
                          NULL);
}

int coroutine_fn blk_co_pwrite_zeroes(BlockBackend *blk, int64_t offset,
                                      int64_t bytes, BdrvRequestFlags flags)
{
    return blk_co_request(blk, BLK_REQ_ZEROES, offset, bytes, NULL, flags,
                          NULL);
}

int coroutine_fn blk_co_pdiscard(BlockBackend *blk, int64_t offset,
                                 int64_t bytes)
{
    return blk_co_request(blk, BLK_REQ_DISCARD, offset, bytes, NULL, 0,
                          NULL);
}

int coroutine_fn blk_co_flush(BlockBackend *blk)
{
    return blk_co_request(blk, BLK_REQ_FLUSH, 0, 0, NULL, 0, NULL);
}

int64_t coroutine_fn blk_co_getlength(BlockBackend *blk)
{
    return blk_co_request(blk, BLK_REQ_LENGTH, 0, 0, NULL, 0, NULL);
}

int coroutine_fn blk_co_truncate(BlockBackend *blk, int64_t offset,
                                 bool exact, PreallocMode prealloc,
                                 BdrvRequestFlags flags, GError **errp)
{
    BlkRequestExtra x = {
        .exact = exact, .prealloc = prealloc, .errp = errp,
    };

    return blk_co_request(blk, BLK_REQ_TRUNCATE, offset, 0, NULL, flags,
                          &x);
}

int coroutine_fn blk_co_block_status(BlockBackend *blk, int64_t offset,
                                     int64_t bytes, int64_t *pnum,
                                     int64_t *map, BlockDriverState **file)
{
    BlkRequestExtra x = { .pnum = pnum, .map = map, .file = file };

    return blk_co_request(blk, BLK_REQ_STATUS, offset, bytes, NULL, 0, &x);
}

/* ---- Synchronous wrappers ---- */

typedef struct BlkSyncRequest {
    BlockBackend *blk;
    BlkRequestType type;
    int64_t offset;
    int64_t bytes;
    QEMUIOVector *qiov;
    BdrvRequestFlags flags;
    BlkRequestExtra *x;
    int64_t ret;
    bool done;
} BlkSyncRequest;

static void coroutine_fn blk_sync_entry(void *opaque)
{
    BlkSyncRequest *r = opaque;

    r->ret = blk_co_request(r->blk, r->type, r->offset, r->bytes, r->qiov,
                            r->flags, r->x);
    qatomic_store_release(&r->done, true);
    aio_wait_kick();
}

static int64_t blk_sync_request(BlockBackend *blk, BlkRequestType type,
                                int64_t offset, int64_t bytes,
                                QEMUIOVector *qiov, BdrvRequestFlags flags,
                                BlkRequestExtra *x)
{
    BlkSyncRequest r = {
        .blk = blk, .type = type, .offset = offset, .bytes = bytes,
        .qiov = qiov, .flags = flags, .x = x,
    };

    if (qemu_in_coroutine()) {
        blk_sync_entry(&r);
    } else {
        aio_co_enter(blk->ctx, qemu_coroutine_create(blk_sync_entry, &r));
        AIO_WAIT_WHILE(blk->ctx, !qatomic_load_acquire(&r.done));
    }
    return r.ret;
}

int blk_pread(BlockBackend *blk, int64_t offset, int64_t bytes, void *buf,
              BdrvRequestFlags flags)
{
    QEMUIOVector qiov;

    qemu_iovec_init_buf(&qiov, buf, bytes);
    return blk_sync_request(blk, BLK_REQ_READ, offset, bytes, &qiov, flags,
                            NULL);
}

int blk_pwrite(BlockBackend *blk, int64_t offset, int64_t bytes,
               const void *buf, BdrvRequestFlags flags)
{
    QEMUIOVector qiov;

    /* The vector type is shared with reads; writes never store to it. */
    qemu_iovec_init_buf(&qiov, (void *)buf, bytes);
    return blk_sync_request(blk, BLK_REQ_WRITE, offset, bytes, &qiov, flags,
                            NULL);
}

int blk_pwrite_zeroes(BlockBackend *blk, int64_t offset, int64_t bytes,
                      BdrvRequestFlags flags)
{
    return blk_sync_request(blk, BLK_REQ_ZEROES, offset, bytes, NULL, flags,
                            NULL);
}

int blk_pdiscard(BlockBackend *blk, int64_t offset, int64_t bytes)
{
    return blk_sync_request(blk, BLK_REQ_DISCARD, offset, bytes, NULL, 0,
                            NULL);
}

int blk_flush(BlockBackend *blk)
{
    return blk_sync_request(blk, BLK_REQ_FLUSH, 0, 0, NULL, 0, NULL);
}

int64_t blk_getlength(BlockBackend *blk)
{
    return blk_sync_request(blk, BLK_REQ_LENGTH, 0, 0, NULL, 0, NULL);
}

int blk_truncate(BlockBackend *blk, int64_t offset, bool exact,
                 PreallocMode prealloc, BdrvRequestFlags flags,
                 GError **errp)
{
    BlkRequestExtra x = {
        .exact = exact, .prealloc = prealloc, .errp = errp,
    };

    return blk_sync_request(blk, BLK_REQ_TRUNCATE, offset, 0, NULL, flags,
                            &x);
}

int blk_block_status(BlockBackend *blk, int64_t offset, int64_t bytes,
                     int64_t *pnum, int64_t *map, BlockDriverState **file)
{
    BlkRequestExtra x = { .pnum = pnum, .map = map, .file = file };

    return blk_sync_request(blk, BLK_REQ_STATUS, offset, bytes, NULL, 0,
                            &x);
}
