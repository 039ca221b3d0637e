/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Drain of block nodes through the AioContext registry: nesting, waiting
 * for requests, drains from coroutines and across threads, backends that
 * queue requests, graph changes during phase 2, context moves, drain_all,
 * and the proof that drain never walks the graph.
 *
 * Copyright (c) 2026 The Sluice authors
 */
#include "qemu/osdep.h"

#include "block/aio-wait.h"
#include "block/block_int.h"
#include "qemu/coroutine.h"
#include "qemu/iothread.h"
#include "qemu/main-loop.h"
#include "sysemu/block-backend.h"

#define LATENCY_NS (20 * SCALE_MS)

static BlockBackend *open_null(const char *driver, const char *name,
                               int64_t latency_ns)
{
    g_autoptr(JsonObject) opts = json_object_new();
    g_autoptr(GError) err = NULL;
    g_autofree char *latency = g_strdup_printf("%" PRId64, latency_ns);
    BlockBackend *blk;

    json_object_set_string_member(opts, "size", "1M");
    json_object_set_string_member(opts, "latency-ns", latency);
    json_object_set_string_member(opts, "read-zeroes", "on");
    blk = blk_new_open_driver(bdrv_find_format(driver), name, opts,
                              BDRV_O_RDWR, &err);
    g_assert_no_error(err);
    g_assert_nonnull(blk);
    return blk;
}

/* ---- A request running in its own coroutine ---- */

typedef struct Req {
    BlockBackend *blk;
    bool write;
    int ret;
    bool done;
    AioContext *completed_in;
    uint8_t buf[4096];
} Req;

static void coroutine_fn req_entry(void *opaque)
{
    Req *r = opaque;
    QEMUIOVector qiov;

    qemu_iovec_init_buf(&qiov, r->buf, sizeof(r->buf));
    if (r->write) {
        r->ret = blk_co_pwritev(r->blk, 0, sizeof(r->buf), &qiov, 0);
    } else {
        r->ret = blk_co_preadv(r->blk, 0, sizeof(r->buf), &qiov, 0);
    }
    r->completed_in = qemu_get_current_aio_context();
    qatomic_store_release(&r->done, true);
    aio_wait_kick();
}

/* Start @r in the backend's context. */
static void req_start(Req *r, BlockBackend *blk)
{
    r->blk = blk;
    r->done = false;
    r->ret = -EINPROGRESS;
    aio_co_enter(blk_get_aio_context(blk),
                 qemu_coroutine_create(req_entry, r));
}

static void req_wait(Req *r)
{
    AIO_WAIT_WHILE(blk_get_aio_context(r->blk),
                   !qatomic_load_acquire(&r->done));
    g_assert_cmpint(r->ret, ==, 0);
}

/* ---- A handler that counts ---- */

typedef struct Counter {
    int begins;
    int ends;
    bool walk;                  /* walk the graph from begin */
    BlockDriverState *walk_from;
} Counter;

static void counter_begin(void *opaque)
{
    Counter *c = opaque;
    BdrvChild *child;

    c->begins++;
    if (c->walk) {
        QLIST_FOREACH(child, &c->walk_from->children, next) {
            bdrv_graph_visit(child->bs);
        }
    }
}

static void counter_end(void *opaque)
{
    Counter *c = opaque;

    c->ends++;
}

static const AioDrainOps counter_ops = {
    .drained_begin = counter_begin,
    .drained_end = counter_end,
};

/* ---- Tests ---- */

static void test_nesting(void)
{
    BlockBackend *blk = open_null("null-co", "nest", 0);
    BlockDriverState *bs = blk_bs(blk);
    Counter c = { 0 };
    AioDrainHandler *h = aio_context_add_drain_ops(
        bdrv_get_aio_context(bs), &counter_ops, &c);

    bdrv_drained_begin(bs);
    bdrv_drained_begin(bs);
    g_assert_cmpint(c.begins, ==, 1);
    bdrv_drained_end(bs);
    g_assert_cmpint(c.ends, ==, 0);
    bdrv_drained_end(bs);
    g_assert_cmpint(c.ends, ==, 1);

    aio_context_remove_drain_ops(h);
    blk_unref(blk);
}

static void test_pending_read_completes(void)
{
    BlockBackend *blk = open_null("null-aio", "pending", LATENCY_NS);
    BlockDriverState *bs = blk_bs(blk);
    Req r = { .write = false };

    req_start(&r, blk);
    g_assert_false(r.done);
    g_assert_cmpuint(bs->in_flight, ==, 1);

    bdrv_drained_begin(bs);
    /* Begin returns only once nothing is in flight. */
    g_assert_true(r.done);
    g_assert_cmpint(r.ret, ==, 0);
    g_assert_cmpuint(bs->in_flight, ==, 0);
    g_assert_cmpuint(aio_context_in_flight(bdrv_get_aio_context(bs)), ==, 0);
    bdrv_drained_end(bs);
    blk_unref(blk);
}

typedef struct CoDrain {
    BlockDriverState *bs;
    Req *pending;
    bool saw_done;
    bool finished;
} CoDrain;

static void coroutine_fn co_drain_entry(void *opaque)
{
    CoDrain *d = opaque;

    bdrv_drained_begin(d->bs);
    d->saw_done = d->pending->done && d->bs->in_flight == 0;
    bdrv_drained_end(d->bs);
    d->finished = true;
}

static void test_drain_from_coroutine(void)
{
    BlockBackend *blk = open_null("null-aio", "co", LATENCY_NS);
    Req r = { .write = true };
    CoDrain d = { .bs = blk_bs(blk), .pending = &r };

    req_start(&r, blk);
    qemu_coroutine_enter(qemu_coroutine_create(co_drain_entry, &d));
    AIO_WAIT_WHILE(qemu_get_aio_context(), !d.finished);
    g_assert_true(d.saw_done);
    blk_unref(blk);
}

static void test_blk_queues_while_drained(void)
{
    BlockBackend *blk = open_null("null-co", "queue", 0);
    BlockDriverState *bs = blk_bs(blk);
    Req r = { .write = false };
    int i;

    bdrv_drained_begin(bs);
    req_start(&r, blk);
    for (i = 0; i < 10; i++) {
        aio_poll(qemu_get_aio_context(), false);
    }
    /* Held in the backend, not in flight, not on the node. */
    g_assert_false(r.done);
    g_assert_cmpuint(blk_queued_requests(blk), ==, 1);
    g_assert_cmpuint(blk_in_flight(blk), ==, 0);
    g_assert_cmpuint(bs->in_flight, ==, 0);
    g_assert_false(aio_context_drained_busy(bdrv_get_aio_context(bs)));

    /*
     * The end resubmits it; nobody else kicks.  It resumes from a bottom
     * half, not inside the end callback (null-co completes synchronously,
     * so it would be done by now).
     */
    bdrv_drained_end(bs);
    g_assert_false(r.done);
    req_wait(&r);
    g_assert_cmpuint(blk_queued_requests(blk), ==, 0);
    blk_unref(blk);
}

static void test_attach_to_drained(void)
{
    BlockBackend *blk = open_null("null-co", "attach", 0);
    BlockDriverState *bs = blk_bs(blk);
    BlockBackend *late;
    Req r = { .write = true };

    bdrv_drained_begin(bs);
    /* A backend born in a drained context begins at once (rule 4). */
    late = blk_new(bdrv_get_aio_context(bs), BLK_PERM_ALL, BLK_PERM_ALL);
    g_assert_true(blk_insert_bs(late, bs, NULL));
    req_start(&r, late);
    aio_poll(qemu_get_aio_context(), false);
    g_assert_false(r.done);
    g_assert_cmpuint(blk_queued_requests(late), ==, 1);
    bdrv_drained_end(bs);
    req_wait(&r);
    blk_unref(late);
    blk_unref(blk);
}

/* Requests looping in a context until told to stop. */
typedef struct Loader {
    BlockBackend *blk;
    uint64_t completed;         /* atomic */
    bool stop;                  /* atomic */
    bool stopped;               /* atomic */
    bool wrong_node;            /* a request reached a drained node */
} Loader;

static void coroutine_fn loader_entry(void *opaque)
{
    Loader *l = opaque;
    uint8_t buf[512];
    QEMUIOVector qiov;

    qemu_iovec_init_buf(&qiov, buf, sizeof(buf));
    while (!qatomic_read(&l->stop)) {
        g_assert_cmpint(blk_co_preadv(l->blk, 0, sizeof(buf), &qiov, 0),
                        ==, 0);
        qatomic_inc(&l->completed);
    }
    qatomic_store_release(&l->stopped, true);
    aio_wait_kick();
}

static void loader_start(Loader *l, BlockBackend *blk)
{
    l->blk = blk;
    aio_co_enter(blk_get_aio_context(blk),
                 qemu_coroutine_create(loader_entry, l));
}

static void loader_stop(Loader *l)
{
    qatomic_set(&l->stop, true);
    AIO_WAIT_WHILE(blk_get_aio_context(l->blk),
                   !qatomic_load_acquire(&l->stopped));
}

static void wait_progress(Loader *l, uint64_t more)
{
    uint64_t target = qatomic_read(&l->completed) + more;
    gint64 deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;

    while (qatomic_read(&l->completed) < target) {
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        aio_poll(qemu_get_aio_context(), false);
        g_usleep(100);
    }
}

static void test_iothread_drained_from_main(void)
{
    IOThread *t = iothread_create("drain-io", NULL);
    AioContext *io_ctx = iothread_get_aio_context(t);
    BlockBackend *blk = open_null("null-aio", "io", 100 * SCALE_US);
    BlockDriverState *bs = blk_bs(blk);
    Loader l = { 0 };
    uint64_t before;

    g_assert_cmpint(bdrv_try_change_aio_context(bs, io_ctx, NULL), ==, 0);
    g_assert_true(blk_get_aio_context(blk) == io_ctx);
    loader_start(&l, blk);
    wait_progress(&l, 10);

    bdrv_drained_begin(bs);
    g_assert_cmpuint(qatomic_read(&bs->in_flight), ==, 0);
    g_assert_cmpuint(aio_context_in_flight(io_ctx), ==, 0);
    /* The loader counts its last request, then parks in the backend. */
    while (blk_queued_requests(blk) == 0) {
        g_usleep(100);
    }
    before = qatomic_read(&l.completed);
    g_usleep(20 * 1000);
    /* Nothing completes while drained. */
    g_assert_cmpuint(qatomic_read(&l.completed), ==, before);
    g_assert_cmpuint(blk_queued_requests(blk), ==, 1);
    g_assert_cmpuint(qatomic_read(&bs->in_flight), ==, 0);
    bdrv_drained_end(bs);

    wait_progress(&l, 10);
    loader_stop(&l);
    g_assert_cmpint(bdrv_try_change_aio_context(bs, qemu_get_aio_context(),
                                                NULL), ==, 0);
    blk_unref(blk);
    iothread_destroy(t);
}

typedef struct SelfDrain {
    BlockDriverState *bs;
    Loader *loader;
    bool idle_inside;
    bool done;
} SelfDrain;

static void coroutine_fn self_drain_entry(void *opaque)
{
    SelfDrain *d = opaque;

    /* A coroutine of the iothread drains its own context. */
    bdrv_drained_begin(d->bs);
    d->idle_inside = qatomic_read(&d->bs->in_flight) == 0 &&
                     blk_queued_requests(d->loader->blk) == 1;
    bdrv_drained_end(d->bs);
    qatomic_store_release(&d->done, true);
    aio_wait_kick();
}

static void test_iothread_drains_itself(void)
{
    IOThread *t = iothread_create("self", NULL);
    AioContext *io_ctx = iothread_get_aio_context(t);
    BlockBackend *blk = open_null("null-aio", "self", 100 * SCALE_US);
    BlockDriverState *bs = blk_bs(blk);
    Loader l = { 0 };
    SelfDrain d = { .bs = bs, .loader = &l };

    g_assert_cmpint(bdrv_try_change_aio_context(bs, io_ctx, NULL), ==, 0);
    loader_start(&l, blk);
    wait_progress(&l, 10);

    aio_co_enter(io_ctx, qemu_coroutine_create(self_drain_entry, &d));
    AIO_WAIT_WHILE(io_ctx, !qatomic_load_acquire(&d.done));
    g_assert_true(d.idle_inside);

    wait_progress(&l, 10);
    loader_stop(&l);
    g_assert_cmpint(bdrv_try_change_aio_context(bs, qemu_get_aio_context(),
                                                NULL), ==, 0);
    blk_unref(blk);
    iothread_destroy(t);
}

static void test_other_context_keeps_running(void)
{
    IOThread *t = iothread_create("other", NULL);
    AioContext *io_ctx = iothread_get_aio_context(t);
    BlockBackend *drained = open_null("null-aio", "drained", 0);
    BlockBackend *busy = open_null("null-aio", "busy", 50 * SCALE_US);
    Loader l = { 0 };

    g_assert_cmpint(bdrv_try_change_aio_context(blk_bs(busy), io_ctx, NULL),
                    ==, 0);
    loader_start(&l, busy);
    wait_progress(&l, 10);

    bdrv_drained_begin(blk_bs(drained));
    /* I/O in another context never stalls on this drain. */
    wait_progress(&l, 100);
    bdrv_drained_end(blk_bs(drained));

    loader_stop(&l);
    g_assert_cmpint(bdrv_try_change_aio_context(blk_bs(busy),
                                                qemu_get_aio_context(), NULL),
                    ==, 0);
    blk_unref(busy);
    blk_unref(drained);
    iothread_destroy(t);
}

static void test_no_graph_walk(void)
{
    enum { N = 1000 };
    BlockBackend *top = open_null("null-co", "top", 0);
    BlockDriverState *nodes[N];
    BlockDriverState *parent = blk_bs(top);
    Counter c = { .walk = false };
    AioDrainHandler *h;
    uint64_t visits;
    int i;

    /* A chain of 1000 nodes below the backend's node. */
    for (i = 0; i < N; i++) {
        g_autoptr(JsonObject) opts = json_object_new();
        g_autofree char *name = g_strdup_printf("n%d", i);

        nodes[i] = bdrv_open_driver(bdrv_find_format("null-co"), name, opts,
                                    BDRV_O_RDWR, NULL);
        g_assert_nonnull(nodes[i]);
        g_assert_nonnull(bdrv_attach_child(parent, nodes[i], "child",
                                           BDRV_CHILD_DATA, NULL));
        bdrv_unref(nodes[i]);
        parent = nodes[i];
    }

    visits = bdrv_drain_graph_visits();
    bdrv_drained_begin(nodes[N / 2]);
    bdrv_drained_end(nodes[N / 2]);
    bdrv_drain_all_begin();
    bdrv_drain_all_end();
    g_assert_cmpuint(bdrv_drain_graph_visits(), ==, visits);

    /* The counter does see a walk done on behalf of a drain. */
    c.walk = true;
    c.walk_from = blk_bs(top);
    h = aio_context_add_drain_ops(qemu_get_aio_context(), &counter_ops, &c);
    bdrv_drained_begin(nodes[0]);
    bdrv_drained_end(nodes[0]);
    g_assert_cmpuint(bdrv_drain_graph_visits(), ==, visits + 1);
    aio_context_remove_drain_ops(h);

    blk_unref(top);
    g_assert_null(bdrv_find_node("n0"));
    g_assert_null(bdrv_find_node("n999"));
}

static void test_drain_all(void)
{
    IOThread *t = iothread_create("all", NULL);
    AioContext *io_ctx = iothread_get_aio_context(t);
    BlockBackend *a = open_null("null-aio", "all-a", LATENCY_NS);
    BlockBackend *b = open_null("null-aio", "all-b", LATENCY_NS);
    Req ra = { .write = true };
    Req rb = { .write = false };
    AioContext *born;
    Counter c = { 0 };
    AioDrainHandler *h;

    g_assert_cmpint(bdrv_try_change_aio_context(blk_bs(b), io_ctx, NULL),
                    ==, 0);
    req_start(&ra, a);
    req_start(&rb, b);

    bdrv_drain_all_begin();
    g_assert_true(qatomic_load_acquire(&ra.done));
    /*
     * rb's coroutine may still be on its way out in the iothread, but its
     * request is over: nothing is in flight anywhere.
     */
    g_assert_cmpuint(blk_in_flight(b), ==, 0);
    g_assert_cmpuint(qatomic_read(&blk_bs(b)->in_flight), ==, 0);
    g_assert_cmpuint(aio_context_in_flight(io_ctx), ==, 0);
    g_assert_true(aio_context_is_drained(io_ctx));
    g_assert_true(aio_context_is_drained(qemu_get_aio_context()));

    /* A context and a handler created inside drain_all are born drained. */
    born = aio_context_new(NULL);
    g_assert_true(aio_context_is_drained(born));
    h = aio_context_add_drain_ops(born, &counter_ops, &c);
    g_assert_cmpint(c.begins, ==, 1);

    bdrv_drain_all_end();
    req_wait(&rb);
    g_assert_cmpint(c.ends, ==, 1);
    g_assert_false(aio_context_is_drained(born));
    g_assert_false(aio_context_is_drained(io_ctx));
    aio_context_remove_drain_ops(h);
    aio_context_unref(born);

    g_assert_cmpint(bdrv_try_change_aio_context(blk_bs(b),
                                                qemu_get_aio_context(), NULL),
                    ==, 0);
    blk_unref(a);
    blk_unref(b);
    iothread_destroy(t);
}

static void test_move_with_queued_request(void)
{
    IOThread *t = iothread_create("move", NULL);
    AioContext *io_ctx = iothread_get_aio_context(t);
    BlockBackend *blk = open_null("null-co", "move", 0);
    BlockDriverState *bs = blk_bs(blk);
    Req r = { .write = true };

    bdrv_drained_begin(bs);
    req_start(&r, blk);
    aio_poll(qemu_get_aio_context(), false);
    g_assert_cmpuint(blk_queued_requests(blk), ==, 1);

    /*
     * Moving while a request waits: the section moves with the node, and
     * the request runs in the new context once it ends.
     */
    g_assert_cmpint(bdrv_try_change_aio_context(bs, io_ctx, NULL), ==, 0);
    g_assert_true(aio_context_is_drained(io_ctx));
    g_assert_false(aio_context_is_drained(qemu_get_aio_context()));
    g_assert_cmpuint(blk_queued_requests(blk), ==, 1);
    g_assert_false(r.done);
    bdrv_drained_end(bs);
    AIO_WAIT_WHILE(io_ctx, !qatomic_load_acquire(&r.done));
    g_assert_cmpint(r.ret, ==, 0);
    g_assert_true(r.completed_in == io_ctx);

    g_assert_cmpint(bdrv_try_change_aio_context(bs, qemu_get_aio_context(),
                                                NULL), ==, 0);
    blk_unref(blk);
    iothread_destroy(t);
}

typedef struct DetachData {
    BlockBackend *blk;
    AioInFlightTag tag;
    bool detached;
} DetachData;

static void detach_bh(void *opaque)
{
    DetachData *d = opaque;

    /*
     * A graph change from a completion while the drain waits: the drain
     * cannot return before this runs, because of the reference we drop.
     */
    aio_context_dec_in_flight(qemu_get_aio_context(), d->tag);
    blk_remove_bs(d->blk);
    d->detached = true;
}

static void coroutine_fn req_then_detach_entry(void *opaque)
{
    DetachData *d = opaque;
    uint8_t buf[512];
    QEMUIOVector qiov;

    qemu_iovec_init_buf(&qiov, buf, sizeof(buf));
    g_assert_cmpint(blk_co_preadv(d->blk, 0, sizeof(buf), &qiov, 0), ==, 0);
    aio_bh_schedule_oneshot(qemu_get_aio_context(), detach_bh, d);
}

static void test_detach_during_phase2(void)
{
    BlockBackend *blk = open_null("null-aio", "detach", LATENCY_NS);
    BlockBackend *other = blk_new(qemu_get_aio_context(), BLK_PERM_ALL,
                                  BLK_PERM_ALL);
    BlockDriverState *bs = blk_bs(blk);
    DetachData d = { .blk = blk, .tag = aio_in_flight_tag("test-detach") };

    /* Keep the node alive through a second backend. */
    g_assert_true(blk_insert_bs(other, bs, NULL));
    aio_context_inc_in_flight(qemu_get_aio_context(), d.tag);
    qemu_coroutine_enter(qemu_coroutine_create(req_then_detach_entry, &d));

    bdrv_drained_begin(bs);
    g_assert_true(d.detached);
    g_assert_null(blk_bs(blk));
    g_assert_cmpuint(qatomic_read(&bs->in_flight), ==, 0);
    bdrv_drained_end(bs);

    blk_unref(blk);
    blk_unref(other);
    g_assert_null(bdrv_find_node("detach"));
}

/* Synchronous operations on a node owned by an iothread, from main. */
static void test_sync_ops_on_iothread(void)
{
    IOThread *t = iothread_create("sync", NULL);
    AioContext *io_ctx = iothread_get_aio_context(t);
    BlockBackend *blk = open_null("null-aio", "sync", 0);
    uint8_t buf[1024];

    g_assert_cmpint(bdrv_try_change_aio_context(blk_bs(blk), io_ctx, NULL),
                    ==, 0);
    memset(buf, 0xaa, sizeof(buf));
    g_assert_cmpint(blk_pread(blk, 512, sizeof(buf), buf, 0), ==, 0);
    g_assert_cmpint(buf[0], ==, 0);
    g_assert_cmpint(blk_pwrite(blk, 0, sizeof(buf), buf, 0), ==, 0);
    g_assert_cmpint(blk_pwrite_zeroes(blk, 0, 4096, 0), ==, 0);
    g_assert_cmpint(blk_pdiscard(blk, 0, 4096), ==, 0);
    g_assert_cmpint(blk_flush(blk), ==, 0);
    g_assert_cmpint(blk_getlength(blk), ==, 1024 * 1024);
    {
        int64_t pnum, map;
        BlockDriverState *file;
        g_autoptr(GError) err = NULL;

        g_assert_cmpint(blk_block_status(blk, 4096, 8192, &pnum, &map,
                                         &file), ==,
                        BDRV_BLOCK_OFFSET_VALID | BDRV_BLOCK_ZERO |
                        BDRV_BLOCK_ALLOCATED);
        g_assert_cmpint(pnum, ==, 8192);
        g_assert_true(file == blk_bs(blk));
        /* This backend did not ask for the resize permission. */
        g_assert_cmpint(blk_truncate(blk, 4096, true, PREALLOC_MODE_OFF, 0,
                                     &err), ==, -EPERM);
        g_assert_nonnull(err);
    }
    /* Past the end: -EIO, as QEMU. */
    g_assert_cmpint(blk_pread(blk, 1024 * 1024 - 512, 1024, buf, 0), ==,
                    -EIO);

    g_assert_cmpint(bdrv_try_change_aio_context(blk_bs(blk),
                                                qemu_get_aio_context(), NULL),
                    ==, 0);
    blk_unref(blk);
    iothread_destroy(t);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_assert_true(qemu_init_main_loop(NULL));

    g_test_add_func("/bdrv-drain/nesting", test_nesting);
    g_test_add_func("/bdrv-drain/pending-read-completes",
                    test_pending_read_completes);
    g_test_add_func("/bdrv-drain/from-coroutine", test_drain_from_coroutine);
    g_test_add_func("/bdrv-drain/blk-queues-while-drained",
                    test_blk_queues_while_drained);
    g_test_add_func("/bdrv-drain/attach-to-drained", test_attach_to_drained);
    g_test_add_func("/bdrv-drain/iothread-drained-from-main",
                    test_iothread_drained_from_main);
    g_test_add_func("/bdrv-drain/iothread-drains-itself",
                    test_iothread_drains_itself);
    g_test_add_func("/bdrv-drain/other-context-keeps-running",
                    test_other_context_keeps_running);
    g_test_add_func("/bdrv-drain/no-graph-walk", test_no_graph_walk);
    g_test_add_func("/bdrv-drain/drain-all", test_drain_all);
    g_test_add_func("/bdrv-drain/move-with-queued-request",
                    test_move_with_queued_request);
    g_test_add_func("/bdrv-drain/detach-during-phase2",
                    test_detach_during_phase2);
    g_test_add_func("/bdrv-drain/sync-ops-on-iothread",
                    test_sync_ops_on_iothread);
    return g_test_run();
}
