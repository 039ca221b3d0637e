/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A seeded random stress of drain: nested drains, drain_all, context
 * moves, child edges attached, detached and replaced, nodes created and
 * deleted, while every node's backend issues I/O from its context (main
 * and two iothreads).  After every step
 * an oracle checks that no request reached a node whose context a caller
 * holds drained, and that every handler's begins and ends alternate.
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * SLUICE_STRESS_SEED picks the seed (printed at start), SLUICE_STRESS_STEPS
 * the number of steps (default 10000).
 */
#include "qemu/osdep.h"

#include "block/aio-wait.h"
#include "block/block_int.h"
#include "qemu/coroutine.h"
#include "qemu/iothread.h"
#include "qemu/main-loop.h"
#include "sysemu/block-backend.h"

#define N_NODES 8
#define N_CTX 3
#define MAX_DEPTH 4

static AioContext *contexts[N_CTX];
/* Drained sections a caller holds on each context, after begin returned. */
static int quiet[N_CTX];
static unsigned int violations;

static int ctx_index(AioContext *ctx)
{
    int i;

    for (i = 0; i < N_CTX; i++) {
        if (contexts[i] == ctx) {
            return i;
        }
    }
    g_assert_not_reached();
}

/* ---- The oracle driver ---- */

static void oracle_wake_bh(void *opaque)
{
    aio_co_wake(opaque);
}

static int coroutine_fn oracle_rw(BlockDriverState *bs, int64_t offset,
                                  int64_t bytes, QEMUIOVector *qiov,
                                  BdrvRequestFlags flags)
{
    /* Nobody but the drain's caller may start I/O in a quiet context. */
    if (qatomic_read(&quiet[ctx_index(bdrv_get_aio_context(bs))])) {
        qatomic_inc(&violations);
    }
    /* Stay in flight for a moment, as real I/O would. */
    aio_bh_schedule_oneshot(qemu_get_current_aio_context(), oracle_wake_bh,
                            qemu_coroutine_self());
    qemu_coroutine_yield();
    return 0;
}

static int64_t coroutine_fn oracle_getlength(BlockDriverState *bs)
{
    return 1 << 20;
}

static int oracle_open(BlockDriverState *bs, JsonObject *options, int flags,
                       GError **errp)
{
    return 0;
}

static BlockDriver bdrv_oracle = {
    .format_name = "test-oracle",
    .is_protocol = true,
    .bdrv_open = oracle_open,
    .bdrv_co_preadv = oracle_rw,
    .bdrv_co_pwritev = oracle_rw,
    .bdrv_co_getlength = oracle_getlength,
};

/* ---- Per-context handlers that check begin/end pairing ---- */

typedef struct Pairing {
    int begins;                 /* atomic */
    int ends;                   /* atomic */
} Pairing;

static Pairing pairing[N_CTX];

static void pairing_begin(void *opaque)
{
    Pairing *p = opaque;

    g_assert_cmpint(qatomic_read(&p->begins), ==, qatomic_read(&p->ends));
    qatomic_inc(&p->begins);
}

static void pairing_end(void *opaque)
{
    Pairing *p = opaque;

    qatomic_inc(&p->ends);
    g_assert_cmpint(qatomic_read(&p->begins), ==, qatomic_read(&p->ends));
}

static const AioDrainOps pairing_ops = {
    .drained_begin = pairing_begin,
    .drained_end = pairing_end,
};

/* ---- Nodes with loaders ---- */

typedef struct Node {
    BlockDriverState *bs;
    BlockBackend *blk;
    bool stop;                  /* atomic */
    bool stopped;               /* atomic */
    uint64_t completed;         /* atomic */
} Node;

static Node nodes[N_NODES];

static void coroutine_fn loader_entry(void *opaque)
{
    Node *n = opaque;
    uint8_t buf[512];
    QEMUIOVector qiov;

    qemu_iovec_init_buf(&qiov, buf, sizeof(buf));
    while (!qatomic_read(&n->stop)) {
        g_assert_cmpint(blk_co_preadv(n->blk, 0, sizeof(buf), &qiov, 0),
                        ==, 0);
        qatomic_inc(&n->completed);
    }
    qatomic_store_release(&n->stopped, true);
    aio_wait_kick();
}

/* ---- The edges the harness attached ---- */

/* An edge from nodes[parent] to nodes[child], or to a temporary node. */
typedef struct Edge {
    int parent;
    int child;                  /* -1: child_bs is a temporary node */
    BlockDriverState *child_bs;
    BdrvChild *c;
} Edge;

static GArray *edges;

/* Nodes without a backend, created and deleted by the steps; leaves only. */
#define MAX_TEMPS 4
static GPtrArray *temps;

/* True if @b is below @a (or is @a). */
static bool reaches(int a, int b)
{
    guint i;

    if (a == b) {
        return true;
    }
    for (i = 0; i < edges->len; i++) {
        Edge *e = &g_array_index(edges, Edge, i);

        if (e->parent == a && e->child >= 0 && reaches(e->child, b)) {
            return true;
        }
    }
    return false;
}

/* ---- Watchdog ---- */

/*
 * A hang is a failure too: if no step finishes for a long time, print
 * what every context is waiting for (the in-flight tags) and abort.
 */
static long current_step;       /* atomic */
static bool watchdog_stop;      /* atomic */
static guint32 current_seed;

static gpointer watchdog_thread(gpointer opaque)
{
    long last = -1;
    int idle = 0;
    int c, i;

    while (!qatomic_read(&watchdog_stop)) {
        long now = qatomic_read(&current_step);

        g_usleep(G_USEC_PER_SEC / 2);
        idle = now == last ? idle + 1 : 0;
        last = now;
        if (idle < 60) {
            continue;
        }
        g_printerr("drain stress: seed %" G_GUINT32_FORMAT " stuck at step "
                   "%ld\n", current_seed, now);
        for (c = 0; c < N_CTX; c++) {
            g_autoptr(GArray) tags = aio_context_in_flight_tags(contexts[c]);
            guint t;

            g_printerr("  context %d: drained %d, quiet %d, in flight %u:",
                       c, aio_context_is_drained(contexts[c]),
                       qatomic_read(&quiet[c]),
                       aio_context_in_flight(contexts[c]));
            for (t = 0; t < tags->len; t++) {
                AioInFlightEntry *e = &g_array_index(tags, AioInFlightEntry,
                                                     t);

                g_printerr(" %s=%u", e->tag, e->count);
            }
            g_printerr("\n");
        }
        for (i = 0; i < N_NODES; i++) {
            g_printerr("  node %d: context %d, in flight %u, backend in "
                       "flight %u, queued %u, completed %" PRIu64 "\n", i,
                       ctx_index(bdrv_get_aio_context(nodes[i].bs)),
                       qatomic_read(&nodes[i].bs->in_flight),
                       blk_in_flight(nodes[i].blk),
                       blk_queued_requests(nodes[i].blk),
                       qatomic_read(&nodes[i].completed));
        }
        abort();
    }
    return NULL;
}

/* ---- Steps ---- */

typedef struct Open {
    int node;
    int ctx;
} Open;

static Open stack[MAX_DEPTH];
static int depth;

/*
 * No request is on any node of context @c.  (The context's own counter may
 * blip: a request that meets the drain counts itself before it backs off.)
 */
static void assert_nodes_idle(int c)
{
    int i;

    for (i = 0; i < N_NODES; i++) {
        if (bdrv_get_aio_context(nodes[i].bs) == contexts[c]) {
            g_assert_cmpuint(qatomic_read(&nodes[i].bs->in_flight), ==, 0);
        }
    }
}

static void step_drain_begin(GRand *r)
{
    int i = g_rand_int_range(r, 0, N_NODES);
    int c;

    if (depth == MAX_DEPTH) {
        return;
    }
    bdrv_drained_begin(nodes[i].bs);
    c = ctx_index(bdrv_get_aio_context(nodes[i].bs));
    qatomic_inc(&quiet[c]);
    assert_nodes_idle(c);
    stack[depth++] = (Open) { .node = i, .ctx = c };
}

static void step_drain_end(void)
{
    Open o;

    if (depth == 0) {
        return;
    }
    o = stack[--depth];
    qatomic_dec(&quiet[o.ctx]);
    bdrv_drained_end(nodes[o.node].bs);
}

static void step_drain_all(void)
{
    int c;

    bdrv_drain_all_begin();
    for (c = 0; c < N_CTX; c++) {
        qatomic_inc(&quiet[c]);
        assert_nodes_idle(c);
    }
    for (c = 0; c < N_CTX; c++) {
        qatomic_dec(&quiet[c]);
    }
    bdrv_drain_all_end();
}

static void step_move(GRand *r)
{
    int i = g_rand_int_range(r, 0, N_NODES);
    int c = g_rand_int_range(r, 0, N_CTX);

    if (depth) {
        return;     /* sections follow nodes; keep the oracle simple */
    }
    g_assert_cmpint(bdrv_try_change_aio_context(nodes[i].bs, contexts[c],
                                                NULL), ==, 0);
}

static void step_attach(GRand *r)
{
    int p = g_rand_int_range(r, 0, N_NODES);
    int ch = g_rand_int_range(r, 0, N_NODES);
    g_autoptr(GError) err = NULL;
    Edge e;

    if (depth || reaches(ch, p)) {
        return;     /* no cycles */
    }
    /* Both ends must share a context: bring the child's component over. */
    g_assert_cmpint(bdrv_try_change_aio_context(
                        nodes[ch].bs, bdrv_get_aio_context(nodes[p].bs),
                        NULL), ==, 0);
    e = (Edge) {
        .parent = p,
        .child = ch,
        .child_bs = nodes[ch].bs,
        .c = bdrv_attach_child(nodes[p].bs, nodes[ch].bs, "child",
                               BDRV_CHILD_DATA, &err),
    };
    g_assert_no_error(err);
    g_array_append_val(edges, e);
}

static void step_detach(GRand *r)
{
    guint i;
    Edge *e;

    if (!edges->len) {
        return;
    }
    i = g_rand_int_range(r, 0, edges->len);
    e = &g_array_index(edges, Edge, i);
    bdrv_unref_child(nodes[e->parent].bs, e->c);
    g_array_remove_index_fast(edges, i);
}

/* Bring @bs's component to @parent's context, if that is allowed now. */
static bool colocate(BlockDriverState *bs, BlockDriverState *parent)
{
    AioContext *ctx = bdrv_get_aio_context(parent);

    if (bdrv_get_aio_context(bs) == ctx) {
        return true;
    }
    if (depth) {
        return false;   /* sections follow nodes; keep the oracle simple */
    }
    g_assert_cmpint(bdrv_try_change_aio_context(bs, ctx, NULL), ==, 0);
    return true;
}

/* Create a temporary node and attach it below a random node. */
static void step_temp_create(GRand *r)
{
    int p = g_rand_int_range(r, 0, N_NODES);
    g_autoptr(GError) err = NULL;
    BlockDriverState *t;
    Edge e;

    if (temps->len == MAX_TEMPS) {
        return;
    }
    t = bdrv_open_driver(&bdrv_oracle, NULL, NULL, BDRV_O_RDWR, &err);
    g_assert_no_error(err);
    if (!colocate(t, nodes[p].bs)) {
        bdrv_unref(t);
        return;
    }
    e = (Edge) {
        .parent = p,
        .child = -1,
        .child_bs = t,
        .c = bdrv_attach_child(nodes[p].bs, t, "temp", BDRV_CHILD_DATA,
                               &err),
    };
    g_assert_no_error(err);
    g_array_append_val(edges, e);
    g_ptr_array_add(temps, t);
}

/* Delete a temporary node: detach every edge to it, drop it. */
static void step_temp_delete(GRand *r)
{
    BlockDriverState *t;
    guint i;

    if (!temps->len) {
        return;
    }
    t = g_ptr_array_steal_index_fast(temps,
                                     g_rand_int_range(r, 0, temps->len));
    for (i = edges->len; i-- > 0;) {
        Edge *e = &g_array_index(edges, Edge, i);

        if (e->child_bs == t) {
            bdrv_unref_child(nodes[e->parent].bs, e->c);
            g_array_remove_index_fast(edges, i);
        }
    }
    g_assert_true(QLIST_EMPTY(&t->parents));
    bdrv_unref(t);
}

/* Point a random edge at a temporary node instead. */
static void step_replace(GRand *r)
{
    g_autoptr(GError) err = NULL;
    BlockDriverState *t;
    Edge *e;

    if (!edges->len || !temps->len) {
        return;
    }
    e = &g_array_index(edges, Edge, g_rand_int_range(r, 0, edges->len));
    t = g_ptr_array_index(temps, g_rand_int_range(r, 0, temps->len));
    if (e->child_bs == t || !colocate(t, nodes[e->parent].bs)) {
        return;
    }
    g_assert_true(bdrv_replace_child_bs(e->c, t, &err));
    g_assert_no_error(err);
    e->child = -1;
    e->child_bs = t;
}

static void test_stress(void)
{
    const char *seed_env = g_getenv("SLUICE_STRESS_SEED");
    const char *steps_env = g_getenv("SLUICE_STRESS_STEPS");
    guint32 seed = seed_env ? strtoul(seed_env, NULL, 0) : g_random_int();
    long steps = steps_env ? strtol(steps_env, NULL, 0) : 10000;
    g_autoptr(GRand) r = g_rand_new_with_seed(seed);
    IOThread *io[2];
    AioDrainHandler *ph[N_CTX];
    long s;
    int i;

    GThread *watchdog;

    /* On failure the log shows the seed to replay it with. */
    g_printerr("# drain stress: seed %" G_GUINT32_FORMAT ", %ld steps\n",
               seed, steps);
    current_seed = seed;

    io[0] = iothread_create("stress0", NULL);
    io[1] = iothread_create("stress1", NULL);
    contexts[0] = qemu_get_aio_context();
    contexts[1] = iothread_get_aio_context(io[0]);
    contexts[2] = iothread_get_aio_context(io[1]);
    for (i = 0; i < N_CTX; i++) {
        ph[i] = aio_context_add_drain_ops(contexts[i], &pairing_ops,
                                          &pairing[i]);
    }
    edges = g_array_new(FALSE, FALSE, sizeof(Edge));
    temps = g_ptr_array_new();

    for (i = 0; i < N_NODES; i++) {
        g_autofree char *name = g_strdup_printf("s%d", i);

        nodes[i].bs = bdrv_open_driver(&bdrv_oracle, name, NULL,
                                       BDRV_O_RDWR, NULL);
        nodes[i].blk = blk_new(qemu_get_aio_context(),
                               BLK_PERM_CONSISTENT_READ, BLK_PERM_ALL);
        g_assert_true(blk_insert_bs(nodes[i].blk, nodes[i].bs, NULL));
        bdrv_try_change_aio_context(nodes[i].bs,
                                    contexts[i % N_CTX], NULL);
        aio_co_enter(blk_get_aio_context(nodes[i].blk),
                     qemu_coroutine_create(loader_entry, &nodes[i]));
    }

    watchdog = g_thread_new("watchdog", watchdog_thread, NULL);
    for (s = 0; s < steps; s++) {
        qatomic_set(&current_step, s);
        switch (g_rand_int_range(r, 0, 11)) {
        case 0:
        case 1:
            step_drain_begin(r);
            break;
        case 2:
        case 3:
            step_drain_end();
            break;
        case 4:
            step_drain_all();
            break;
        case 5:
            step_move(r);
            break;
        case 6:
            step_attach(r);
            break;
        case 7:
            step_temp_create(r);
            break;
        case 8:
            step_temp_delete(r);
            break;
        case 9:
            step_replace(r);
            break;
        default:
            step_detach(r);
            break;
        }
        aio_poll(qemu_get_aio_context(), false);
        if (qatomic_read(&violations)) {
            g_error("seed %" G_GUINT32_FORMAT ": a request reached a "
                    "drained node at step %ld", seed, s);
        }
    }

    while (depth) {
        step_drain_end();
    }
    qatomic_set(&current_step, steps);
    for (i = 0; i < N_NODES; i++) {
        qatomic_set(&nodes[i].stop, true);
    }
    for (i = 0; i < N_NODES; i++) {
        AIO_WAIT_WHILE(blk_get_aio_context(nodes[i].blk),
                       !qatomic_load_acquire(&nodes[i].stopped));
        g_assert_cmpuint(nodes[i].completed, >, 0);
    }
    while (temps->len) {
        step_temp_delete(r);
    }
    while (edges->len) {
        step_detach(r);
    }
    for (i = 0; i < N_NODES; i++) {
        bdrv_try_change_aio_context(nodes[i].bs, qemu_get_aio_context(),
                                    NULL);
        blk_unref(nodes[i].blk);
        bdrv_unref(nodes[i].bs);
    }
    for (i = 0; i < N_CTX; i++) {
        g_assert_cmpint(pairing[i].begins, ==, pairing[i].ends);
        g_assert_cmpint(pairing[i].begins, >, 0);
        aio_context_remove_drain_ops(ph[i]);
        g_assert_cmpint(quiet[i], ==, 0);
    }
    g_assert_cmpuint(violations, ==, 0);
    {
        uint64_t total = 0;

        for (i = 0; i < N_NODES; i++) {
            total += nodes[i].completed;
        }
        g_printerr("# drain stress: %" PRIu64 " requests completed, "
                   "%d/%d/%d sections per context\n", total,
                   pairing[0].begins, pairing[1].begins, pairing[2].begins);
    }
    g_array_unref(edges);
    g_ptr_array_unref(temps);
    iothread_destroy(io[0]);
    iothread_destroy(io[1]);
    qatomic_set(&watchdog_stop, true);
    g_thread_join(watchdog);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_assert_true(qemu_init_main_loop(NULL));
    bdrv_register(&bdrv_oracle);
    g_test_add_func("/drain-stress/random", test_stress);
    return g_test_run();
}
