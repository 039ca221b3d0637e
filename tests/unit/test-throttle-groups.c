/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Throttle groups and the throttle filter: the throttle-group object's
 * options and messages, achieved rates for every limit kind, bursts,
 * round-robin fairness (also across contexts), and drain: queued
 * requests released by the drain itself, limits and membership changed
 * while drained, members leaving with requests queued, context moves.
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * No assertion here depends on how fast the machine runs.  Groups keep
 * time on a virtual clock (throttle_group_set_virtual_clock()): the test
 * lets every request get as far as it can, then moves the clock to the
 * group's next timer, so "2 s" is simulated time, the figures are exact,
 * and a slow or busy machine only makes the test take longer.  Drain
 * tests assert on the mechanism (who released each request).  One test
 * runs on the real clock, checking only what holds however slowly the
 * process runs: the limit is never exceeded.
 */
#include "qemu/osdep.h"

#include "block/aio-wait.h"
#include "block/block_int.h"
#include "block/throttle-groups.h"
#include "qemu/coroutine.h"
#include "qemu/iothread.h"
#include "qemu/keyval.h"
#include "qemu/main-loop.h"
#include "qemu/object.h"
#include "sysemu/block-backend.h"

#define WARMUP_NS (250 * SCALE_MS)
#define WINDOW_NS (2 * NANOSECONDS_PER_SECOND)

/* ---- Helpers ---- */

static void add_group(const char *spec)
{
    g_autoptr(GError) err = NULL;

    g_assert_true(user_creatable_add_str(spec, &err));
    g_assert_no_error(err);
}

static void del_group(const char *id)
{
    g_autoptr(GError) err = NULL;

    g_assert_true(user_creatable_del(id, &err));
    g_assert_no_error(err);
}

static ThrottleGroupMember *node_member(BlockDriverState *bs)
{
    /* The filter's state starts with its member. */
    g_assert_cmpstr(bdrv_get_format_name(bs), ==, "throttle");
    return bs->opaque;
}

static BlockBackend *open_throttled(const char *group, const char *file_drv)
{
    g_autofree char *spec = g_strdup_printf(
        "driver=throttle,throttle-group=%s,file.driver=%s,file.size=1G",
        group, file_drv);
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonObject) opts = keyval_parse(spec, NULL, &err);
    BlockBackend *blk;

    g_assert_no_error(err);
    blk = blk_new_open(NULL, opts, BDRV_O_RDWR, &err);
    g_assert_no_error(err);
    g_assert_nonnull(blk);
    return blk;
}

static unsigned int tag_count(AioContext *ctx, const char *name)
{
    g_autoptr(GArray) tags = aio_context_in_flight_tags(ctx);
    guint i;

    for (i = 0; i < tags->len; i++) {
        AioInFlightEntry *e = &g_array_index(tags, AioInFlightEntry, i);

        if (!strcmp(e->tag, name)) {
            return e->count;
        }
    }
    return 0;
}

/* ---- Load: coroutines issuing requests back to back ---- */

typedef struct Load {
    BlockBackend *blk;
    bool write;
    int64_t bytes;
    int depth;
    uint64_t limit;             /* requests to start in all; 0: no limit */
    uint64_t started;           /* atomic */
    uint64_t done;              /* atomic */
    int running;                /* atomic */
    bool stop;                  /* atomic */
    AioContext *ctx;            /* where it runs */
    ThrottleGroupMember *tgm;   /* its node's member */
    uint8_t *buf;
} Load;

static void coroutine_fn load_entry(void *opaque)
{
    Load *l = opaque;
    QEMUIOVector qiov;

    qemu_iovec_init_buf(&qiov, l->buf, l->bytes);
    while (!qatomic_read(&l->stop)) {
        int ret;

        if (l->limit && qatomic_fetch_inc(&l->started) >= l->limit) {
            break;
        }
        if (l->write) {
            ret = blk_co_pwritev(l->blk, 0, l->bytes, &qiov, 0);
        } else {
            ret = blk_co_preadv(l->blk, 0, l->bytes, &qiov, 0);
        }
        g_assert_cmpint(ret, ==, 0);
        qatomic_inc(&l->done);
    }
    qatomic_dec(&l->running);
    aio_wait_kick();
}

static void load_start(Load *l)
{
    int i;

    l->buf = g_malloc0(l->bytes);
    l->running = l->depth;
    l->ctx = blk_get_aio_context(l->blk);
    l->tgm = node_member(blk_bs(l->blk));
    for (i = 0; i < l->depth; i++) {
        aio_co_enter(l->ctx, qemu_coroutine_create(load_entry, l));
    }
}

static void load_wait(Load *l)
{
    /* The backend may be gone already. */
    AIO_WAIT_WHILE(l->ctx, qatomic_read(&l->running));
    g_clear_pointer(&l->buf, g_free);
}

/* ---- Virtual time ---- */

/* The group named @id, on a virtual clock that starts at 0. */
static ThrottleGroup *virtual_group(const char *id)
{
    ThrottleGroup *tg = throttle_group_find(id);

    g_assert_nonnull(tg);
    throttle_group_set_virtual_clock(tg, 0);
    return tg;
}

/* The earliest armed timer of @tg, or -1. */
static int64_t next_deadline(ThrottleGroup *tg)
{
    int64_t r = throttle_group_timer_deadline(tg, false);
    int64_t w = throttle_group_timer_deadline(tg, true);

    if (r < 0 || w < 0) {
        return MAX(r, w);
    }
    return MIN(r, w);
}

/*
 * Nothing of @l can happen until @tg's clock moves: each of its
 * coroutines has finished or waits in the queue, not released.
 */
static bool load_parked(ThrottleGroup *tg, Load *l)
{
    unsigned int running, queued;

    /*
     * The timer first: while it is armed nothing is released (the group
     * releases one request at a time, and arms only when the last one
     * released has started), and on a virtual clock it stays armed until
     * the test moves the clock.  Not armed, with requests waiting, means
     * a release is under way: parked only if nothing is left.
     */
    if (throttle_group_timer_deadline(tg, l->write) < 0) {
        return qatomic_read(&l->running) == 0;
    }
    /* Coroutines only ever stop running: equal counts mean all parked. */
    running = qatomic_read(&l->running);
    queued = throttle_group_member_queued(l->tgm);
    return running == queued;
}

/*
 * Run the main loop until nothing of @loads can happen before @tg's
 * clock moves.  Members in an iothread get there on their own.
 */
static void settle(ThrottleGroup *tg, Load **loads, int n)
{
    bool all_main = true;
    int i;

    for (i = 0; i < n; i++) {
        all_main = all_main && loads[i]->ctx == qemu_get_aio_context();
    }
    for (;;) {
        bool parked = true;

        for (i = 0; i < n && parked; i++) {
            parked = load_parked(tg, loads[i]);
        }
        if (parked) {
            return;
        }
        if (!aio_poll(qemu_get_aio_context(), false)) {
            /* Only an iothread could still move things. */
            if (all_main) {
                g_test_message("stuck: requests wait, no timer is armed");
                g_assert_not_reached();
            }
            g_usleep(10);
        }
    }
}

typedef void StepFn(void *opaque);

/*
 * Let @tg's virtual time run to @end: settle, move the clock to the next
 * timer and fire it, and again.  @step (if set) sees every settled
 * instant.  As the load is always ready when a timer fires, the group
 * is as busy as its limits allow.
 */
static void run_until(ThrottleGroup *tg, Load **loads, int n, int64_t end,
                      StepFn *step, void *opaque)
{
    for (;;) {
        int64_t next;

        settle(tg, loads, n);
        if (step) {
            step(opaque);
        }
        next = next_deadline(tg);
        if (next < 0 || next > end) {
            break;
        }
        throttle_group_clock_advance(tg, next);
    }
    throttle_group_clock_advance(tg, end);
    settle(tg, loads, n);
}

/* Stop @loads; their queued requests still wait for their turn. */
static void stop_loads(ThrottleGroup *tg, Load **loads, int n)
{
    int i;

    for (i = 0; i < n; i++) {
        qatomic_set(&loads[i]->stop, true);
    }
    for (;;) {
        bool running = false;
        int64_t next;

        settle(tg, loads, n);
        for (i = 0; i < n; i++) {
            running = running || qatomic_read(&loads[i]->running);
        }
        if (!running) {
            break;
        }
        next = next_deadline(tg);
        g_assert_cmpint(next, >=, 0);
        throttle_group_clock_advance(tg, next);
    }
    for (i = 0; i < n; i++) {
        load_wait(loads[i]);
    }
}

/*
 * While a drain polls, moves @tg's virtual clock to each timer it arms,
 * as real time would (1 ms of real time per timer).  A drain that
 * waited for throttle timers would then complete, with requests released
 * by timers in the statistics, rather than hang.
 */
typedef struct Ticker {
    QEMUTimer timer;
    ThrottleGroup *tg;
    unsigned int fired;         /* timers it made fire */
} Ticker;

static void ticker_cb(void *opaque)
{
    Ticker *t = opaque;
    int64_t next = next_deadline(t->tg);

    if (next >= 0) {
        t->fired++;
        throttle_group_clock_advance(t->tg, next);
    }
    timer_mod_ns(&t->timer, qemu_clock_get_ns(QEMU_CLOCK_REALTIME) +
                 SCALE_MS);
}

static void ticker_start(Ticker *t, ThrottleGroup *tg)
{
    t->tg = tg;
    t->fired = 0;
    aio_timer_init(qemu_get_aio_context(), &t->timer, QEMU_CLOCK_REALTIME,
                   SCALE_NS, ticker_cb, t);
    timer_mod_ns(&t->timer, qemu_clock_get_ns(QEMU_CLOCK_REALTIME) +
                 SCALE_MS);
}

/* Stop @t; a drain never needs it: no throttle timer fired. */
static void ticker_stop(Ticker *t)
{
    timer_del(&t->timer);
    g_assert_cmpuint(t->fired, ==, 0);
}

/* ---- Requests straight through a member, no node ---- */

typedef struct RawReq {
    ThrottleGroupMember *tgm;
    int64_t bytes;
    bool write;
    bool done;
} RawReq;

static void coroutine_fn raw_req_entry(void *opaque)
{
    RawReq *r = opaque;

    throttle_group_co_io_limits_intercept(r->tgm, r->bytes, r->write);
    qatomic_store_release(&r->done, true);
    aio_wait_kick();
}

static void raw_req_start(RawReq *r, ThrottleGroupMember *tgm, bool write)
{
    r->tgm = tgm;
    r->bytes = 4096;
    r->write = write;
    r->done = false;
    aio_co_enter(tgm->ctx, qemu_coroutine_create(raw_req_entry, r));
}

static ThrottleGroup *anon_group(const char *props)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonObject) o = keyval_parse(props, NULL, &err);
    ThrottleGroup *tg = throttle_group_new(NULL);
    ThrottleConfig cfg;

    g_assert_no_error(err);
    throttle_config_init(&cfg);
    g_assert_true(throttle_group_parse_props(o, &cfg, &err));
    g_assert_true(throttle_group_set_config(tg, &cfg, &err));
    g_assert_no_error(err);
    return tg;
}

/* ---- The throttle-group object ---- */

typedef struct PropCase {
    const char *props;
    const char *error;
} PropCase;

/*
 * Messages of Debian's qemu-io 7.2 for --object throttle-group,id=tg,...
 * including which one wins when several apply.
 */
static const PropCase prop_cases[] = {
    { "x-iops-total=100,x-iops-read=5", "bps/iops/max total values and "
      "read/write values cannot be used at the same time" },
    { "x-iops-total-max=100", "bps_max/iops_max require corresponding "
      "bps/iops values" },
    { "x-iops-total=-1", "Property values cannot be negative" },
    { "x-iops-total=1000000000000001", "bps/iops/max values must be within "
      "[0, 1000000000000000]" },
    { "x-iops-total=1000000000000000", NULL },
    { "x-iops-total=10,x-iops-total-max=5", "bps_max/iops_max cannot be "
      "lower than bps/iops" },
    { "x-iops-total=10,x-iops-total-max-length=5", "burst length set "
      "without burst rate" },
    { "x-iops-total=10,x-iops-total-max=20,x-iops-total-max-length=0",
      "the burst length cannot be 0" },
    { "x-iops-total=10,x-iops-total-max=20,"
      "x-iops-total-max-length=4294967296",
      "x-iops-total-max-length value must be in therange [0, 4294967295]" },
    { "limits.iops-total=10,limits.iops-total-max=20,"
      "limits.iops-total-max-length=4294967296",
      "iops-total-max-length value must be in the range [0, 4294967295]" },
    { "x-iops-size=5", "iops size requires an iops value to be set" },
    { "x-iops-total=10,x-iops-size=-1", "Property values cannot be "
      "negative" },
    { "limits.iops-total=10,limits.iops-size=-1", NULL },
    { "x-bps-total=abc", "Parameter 'x-bps-total' expects integer" },
    { "limits.bps-total=abc", "Parameter 'limits.bps-total' expects "
      "integer" },
    { "x-iops-total=1k", "Parameter 'x-iops-total' expects integer" },
    { "x-iops-total=", "Parameter 'x-iops-total' expects integer" },
    { "x-iops-total=1.5", "Parameter 'x-iops-total' expects integer" },
    { "x-iops-total=5 ", "Parameter 'x-iops-total' expects integer" },
    { "x-iops-total=09", "Parameter 'x-iops-total' expects integer" },
    { "x-iops-total=0x", "Parameter 'x-iops-total' expects integer" },
    { "x-iops-total=18446744073709551615", "Parameter 'x-iops-total' "
      "expects integer" },
    { "x-iops-total= 5", NULL },
    { "x-iops-total=+5", NULL },
    { "x-iops-total=0x10", NULL },
    { "x-iops-total=-0", NULL },
    { "x-foo=1", "Parameter 'x-foo' is unexpected" },
    { "limits.foo=1", "Parameter 'limits.foo' is unexpected" },
    { "limits.foo.bar=1", "Parameter 'limits.foo' is unexpected" },
    { "zz=1,aa=1", "Parameter 'aa' is unexpected" },
    { "limits=5", "Invalid parameter type for 'limits', expected: object" },
    { "limits.iops-total.x=5", "Parameters 'limits.iops-total.*' are "
      "unexpected" },
    { "x-iops-total.x=1", "Parameters 'x-iops-total.*' are unexpected" },
    { "x-iops-total=10,limits.iops-total=10", NULL },
    { "limits.iops-total=10,limits.iops-read=10", "bps/iops/max total "
      "values and read/write values cannot be used at the same time" },
    { "x-iops-total=5,limits.iops-read=5", "bps/iops/max total values and "
      "read/write values cannot be used at the same time" },
    { "limits.iops-total-max-length=-1", "burst length set without burst "
      "rate" },
    { "limits.iops-total=10,limits.iops-total-max=20,"
      "limits.iops-total-max-length=-1",
      "burst length too high for this burst rate" },
    { "x-iops-total-max-length=-1", "Property values cannot be negative" },
    { "limits.bps-read=-1", "bps/iops/max values must be within "
      "[0, 1000000000000000]" },
    /* Types first (limits, then the flat forms), then unknown keys. */
    { "x-foo=1,x-iops-total=-1", "Parameter 'x-foo' is unexpected" },
    { "x-foo=1,x-iops-total=abc", "Parameter 'x-iops-total' expects "
      "integer" },
    { "x-iops-total=abc,limits.foo=1", "Parameter 'limits.foo' is "
      "unexpected" },
    { "x-iops-total=abc,limits.iops-total=abc", "Parameter "
      "'limits.iops-total' expects integer" },
    { "limits.bps-total=abc,limits.iops-total=abc", "Parameter "
      "'limits.iops-total' expects integer" },
    { "limits.iops-size=abc,limits.bps-total=abc", "Parameter "
      "'limits.bps-total' expects integer" },
    { "limits.bps-total-max-length=abc,limits.bps-total-max=abc",
      "Parameter 'limits.bps-total-max' expects integer" },
    { "limits.foo=5,limits.iops-total-max-length=99999999999",
      "Parameter 'limits.foo' is unexpected" },
    /* Then values, in QEMU's order of application. */
    { "x-bps-total=-1,x-iops-total-max-length=99999999999",
      "x-iops-total-max-length value must be in therange [0, 4294967295]" },
    { "x-iops-total=-1,x-bps-total-max-length=99999999999",
      "Property values cannot be negative" },
    { "limits.iops-total-max-length=99999999999,"
      "x-iops-write-max-length=99999999999",
      "iops-total-max-length value must be in the range [0, 4294967295]" },
    { "limits.iops-total-max-length=99999999999,x-iops-total=-1",
      "Property values cannot be negative" },
    { "limits.iops-total-max-length=99999999999,"
      "limits.bps-total-max-length=99999999999",
      "bps-total-max-length value must be in the range [0, 4294967295]" },
    { "limits.bps-write-max-length=4294967296,"
      "limits.bps-read-max-length=4294967296",
      "bps-read-max-length value must be in the range [0, 4294967295]" },
    { "limits.bps-total=10,limits.bps-total-max=5,"
      "limits.bps-total-max-length=1000000000000000",
      "bps-total-max-length value must be in the range [0, 4294967295]" },
};

static void test_props(void)
{
    int i;

    for (i = 0; i < G_N_ELEMENTS(prop_cases); i++) {
        g_autofree char *spec = g_strdup_printf("throttle-group,id=tg,%s",
                                                prop_cases[i].props);
        g_autoptr(GError) err = NULL;
        bool ok = user_creatable_add_str(spec, &err);

        if (g_test_verbose()) {
            g_test_message("%s: %s", prop_cases[i].props,
                           err ? err->message : "ok");
        }
        if (prop_cases[i].error) {
            g_assert_false(ok);
            g_assert_cmpstr(err->message, ==, prop_cases[i].error);
        } else {
            g_assert_no_error(err);
            g_assert_true(ok);
            del_group("tg");
        }
    }
}

/* What wins when the flat form and "limits" name the same value. */
static void test_props_precedence(void)
{
    static const struct {
        const char *props;
        ThrottleBucketType type;
        uint64_t avg;
    } cases[] = {
        /* x-iops-total is applied before limits, x-bps-read after. */
        { "x-iops-total=20,limits.iops-total=1000", THROTTLE_OPS_TOTAL,
          1000 },
        { "limits.iops-total=20,x-iops-total=1000", THROTTLE_OPS_TOTAL,
          20 },
        { "limits.bps-read=5,x-bps-read=7", THROTTLE_BPS_READ, 7 },
        { "x-bps-read=7,limits.bps-read=5", THROTTLE_BPS_READ, 7 },
        /* limits only sets what it names. */
        { "x-iops-total=20,limits.bps-total=100", THROTTLE_OPS_TOTAL, 20 },
        { "x-iops-total=20,limits.bps-total=100", THROTTLE_BPS_TOTAL, 100 },
    };
    int i;

    for (i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *spec = g_strdup_printf("throttle-group,id=tg,%s",
                                                cases[i].props);
        ThrottleConfig cfg;

        add_group(spec);
        throttle_group_get_config(throttle_group_find("tg"), &cfg);
        g_assert_cmpuint(cfg.buckets[cases[i].type].avg, ==, cases[i].avg);
        del_group("tg");
    }
}

/* The JSON form keeps types: numbers are integers, not doubles. */
static void test_props_json(void)
{
    g_autoptr(GError) err = NULL;
    ThrottleConfig cfg;

    g_assert_false(user_creatable_add_str(
        "{'qom-type': 'throttle-group', 'id': 'tg', 'x-iops-total': true}",
        &err));
    g_assert_cmpstr(err->message, ==, "Invalid parameter type for "
                    "'x-iops-total', expected: integer");
    g_clear_error(&err);
    g_assert_false(user_creatable_add_str(
        "{'qom-type': 'throttle-group', 'id': 'tg', "
        "'limits': {'iops-total': 5.5}}", &err));
    g_assert_cmpstr(err->message, ==, "Invalid parameter type for "
                    "'limits.iops-total', expected: integer");
    g_clear_error(&err);
    g_assert_false(user_creatable_add_str(
        "{'qom-type': 'throttle-group', 'id': 'tg', 'limits': null}", &err));
    g_assert_cmpstr(err->message, ==, "Invalid parameter type for "
                    "'limits', expected: object");
    g_clear_error(&err);
    g_assert_false(user_creatable_add_str(
        "{'qom-type': 'throttle-group', 'id': 'tg', 'x-iops-total': -5}",
        &err));
    g_assert_cmpstr(err->message, ==, "Property values cannot be negative");
    g_clear_error(&err);

    g_assert_true(user_creatable_add_str(
        "{'qom-type': 'throttle-group', 'id': 'tg', "
        "'limits': {'bps-write': 4096, 'bps-write-max': 8192, "
        "'bps-write-max-length': 3, 'iops-read': 7, 'iops-size': 512}}",
        &err));
    g_assert_no_error(err);
    throttle_group_get_config(throttle_group_find("tg"), &cfg);
    g_assert_cmpuint(cfg.buckets[THROTTLE_BPS_WRITE].avg, ==, 4096);
    g_assert_cmpuint(cfg.buckets[THROTTLE_BPS_WRITE].max, ==, 8192);
    g_assert_cmpuint(cfg.buckets[THROTTLE_BPS_WRITE].burst_length, ==, 3);
    g_assert_cmpuint(cfg.buckets[THROTTLE_OPS_READ].avg, ==, 7);
    g_assert_cmpuint(cfg.op_size, ==, 512);
    g_assert_cmpstr(throttle_group_get_name(throttle_group_find("tg")), ==,
                    "tg");
    del_group("tg");
}

/* ---- The filter ---- */

static void test_open_errors(void)
{
    static const struct {
        const char *opts;
        const char *error;
    } cases[] = {
        { "driver=throttle,file.driver=null-co",
          "Please specify a throttle group" },
        { "driver=throttle,throttle-group=nope,file.driver=null-co",
          "Throttle group 'nope' does not exist" },
        { "driver=throttle,throttle-group=,file.driver=null-co",
          "Throttle group '' does not exist" },
        { "driver=throttle,throttle-group.a=1,file.driver=null-co",
          "Please specify a throttle group" },
        /* Not a throttle group. */
        { "driver=throttle,throttle-group=io0,file.driver=null-co",
          "Throttle group 'io0' does not exist" },
        /* The child is opened first, as QEMU does. */
        { "driver=throttle", "A block device must be specified for \"file\"" },
        { "driver=throttle,throttle-group=nope",
          "A block device must be specified for \"file\"" },
        { "driver=throttle,throttle-group=tg,file.driver=null-co,foo=1",
          "Block format 'throttle' does not support the option 'foo'" },
        { "driver=throttle,throttle-group=tg,file.driver=null-co,"
          "limits.iops-total=5",
          "Block format 'throttle' does not support the option "
          "'limits.iops-total'" },
    };
    int i;

    add_group("throttle-group,id=tg");
    add_group("iothread,id=io0");
    for (i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autoptr(GError) err = NULL;
        g_autoptr(JsonObject) opts = keyval_parse(cases[i].opts, NULL, &err);
        BlockDriverState *bs;

        g_assert_no_error(err);
        bs = bdrv_open_options(opts, BDRV_O_RDWR, &err);
        g_assert_null(bs);
        g_assert_cmpstr(err->message, ==, cases[i].error);
    }
    g_assert_cmpuint(throttle_group_member_count(throttle_group_find("tg")),
                     ==, 0);
    del_group("io0");
    del_group("tg");
}

/* Deleting a group in use fails with QEMU's message, later it works. */
static void test_object_in_use(void)
{
    g_autoptr(GError) err = NULL;
    BlockBackend *blk;

    add_group("throttle-group,id=tg,x-iops-total=100");
    blk = open_throttled("tg", "null-co");
    g_assert_cmpuint(throttle_group_member_count(throttle_group_find("tg")),
                     ==, 1);
    g_assert_false(user_creatable_del("tg", &err));
    g_assert_cmpstr(err->message, ==, "object 'tg' is in use, can not be "
                    "deleted");
    blk_unref(blk);
    del_group("tg");
}

/* Reads, writes, zeroes and discards pass through to the child. */
static void test_passthrough(void)
{
    BlockBackend *blk;
    uint8_t buf[4096];
    int64_t pnum;
    int ret;

    add_group("throttle-group,id=tg,x-bps-total=100000000");
    blk = open_throttled("tg", "null-co");
    memset(buf, 0xaa, sizeof(buf));
    g_assert_cmpint(blk_getlength(blk), ==, 1 << 30);
    g_assert_cmpint(blk_pread(blk, 0, sizeof(buf), buf, 0), ==, 0);
    g_assert_cmpint(blk_pwrite(blk, 4096, sizeof(buf), buf, 0), ==, 0);
    g_assert_cmpint(blk_pwrite_zeroes(blk, 0, 65536, 0), ==, 0);
    g_assert_cmpint(blk_pdiscard(blk, 0, 65536), ==, 0);
    g_assert_cmpint(blk_flush(blk), ==, 0);
    ret = blk_block_status(blk, 0, 65536, &pnum, NULL, NULL);
    g_assert_cmpint(ret, >=, 0);
    g_assert_cmpint(pnum, ==, 65536);
    blk_unref(blk);
    del_group("tg");
}


/* Requests @m let through in direction @dir, queued or not. */
static uint64_t served(ThrottleGroupMember *m, int dir)
{
    ThrottleGroupMemberStats st;

    throttle_group_member_get_stats(m, &st);
    return st.passed[dir] + st.granted_at_once[dir] +
           st.granted_by_timer[dir];
}

/* ---- Rates ---- */

/*
 * Each limit kind, 2 s after a warm-up that spends the initial burst,
 * on the virtual clock.  A leaky bucket that lets a request start while
 * it holds no more than its capacity passes, in any window, the limit
 * times the window give or take one request: that is what is asserted,
 * far inside the 5% asked for.
 */
static void test_rates(void)
{
    static const struct {
        const char *name;
        const char *props;
        bool write;
        int64_t bytes;
        double limit;           /* units per second */
        double units;           /* units one request counts */
        bool other_dir_free;    /* the other direction is not limited */
    } cases[] = {
        { "r-bps-total", "limits.bps-total=2097152", false, 4096,
          2097152, 4096 },
        { "r-bps-read", "x-bps-read=2097152", false, 4096, 2097152, 4096,
          true },
        { "r-bps-write", "limits.bps-write=2097152", true, 4096, 2097152,
          4096, true },
        { "r-iops-total", "x-iops-total=500", true, 4096, 500, 1 },
        { "r-iops-read", "limits.iops-read=500", false, 4096, 500, 1, true },
        { "r-iops-write", "x-iops-write=500", true, 4096, 500, 1, true },
        /* 16 KiB requests of 4 KiB operations: 4 ops each. */
        { "r-iops-size", "limits.iops-total=500,limits.iops-size=4096",
          false, 16384, 500, 4 },
    };
    int i;

    for (i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *spec = g_strdup_printf("throttle-group,id=%s,%s",
                                                cases[i].name,
                                                cases[i].props);
        ThrottleGroupMemberStats st;
        BlockBackend *blk;
        ThrottleGroup *tg;
        Load l, *loads[] = { &l };
        uint8_t buf[4096] = { 0 };
        double expected, rate;
        uint64_t c0, n;
        int dir = !cases[i].write;
        int j;

        add_group(spec);
        tg = virtual_group(cases[i].name);
        blk = open_throttled(cases[i].name, "null-co");
        l = (Load) { .blk = blk, .write = cases[i].write,
                     .bytes = cases[i].bytes, .depth = 4 };
        load_start(&l);

        run_until(tg, loads, 1, WARMUP_NS, NULL, NULL);
        c0 = qatomic_read(&l.done);
        run_until(tg, loads, 1, WARMUP_NS + WINDOW_NS, NULL, NULL);
        n = qatomic_read(&l.done) - c0;
        g_assert_cmpint(throttle_group_clock_get_ns(tg), ==,
                        WARMUP_NS + WINDOW_NS);

        expected = cases[i].limit * WINDOW_NS / NANOSECONDS_PER_SECOND /
                   cases[i].units;
        rate = n * cases[i].units * NANOSECONDS_PER_SECOND / WINDOW_NS;
        g_test_message("%s: %" PRIu64 " requests in 2 s (expected %.0f), "
                       "%.1f/s for a limit of %.0f/s", cases[i].name, n,
                       expected, rate, cases[i].limit);
        g_assert_cmpfloat(n, >=, expected - 1);
        g_assert_cmpfloat(n, <=, expected + 1);
        stop_loads(tg, loads, 1);

        /* A direction's limit leaves the other direction alone. */
        if (cases[i].other_dir_free) {
            for (j = 0; j < 100; j++) {
                int ret = cases[i].write ? blk_pread(blk, 0, 4096, buf, 0)
                                         : blk_pwrite(blk, 0, 4096, buf, 0);

                g_assert_cmpint(ret, ==, 0);
            }
            throttle_group_member_get_stats(node_member(blk_bs(blk)), &st);
            g_assert_cmpuint(st.passed[dir], ==, 100);
            g_assert_cmpuint(st.queued[dir], ==, 0);
        }

        blk_unref(blk);
        del_group(cases[i].name);
    }
}

/*
 * On the real clock, whatever the load of the machine: from empty
 * buckets, n requests of one operation at a limit of R/s with capacity
 * C can only have started by T seconds if n <= C + 1 + R * T (each one
 * starts with the bucket at most at C, and R * T is all that leaked).
 * One more for a request released and not started yet when the clock
 * was read.  A stalled process only makes T longer; so this is the one
 * rate assertion made on real time, and it fails for a throttle that
 * lets requests through too fast.  Too slow is for the tests above.
 */
static void test_real_clock(void)
{
    ThrottleGroup *tg = anon_group("x-iops-total=200");
    ThrottleGroupMember m;
    ThrottleGroupMemberStats st;
    ThrottleConfig cfg;
    RawReq r[60];
    int64_t t0, t1;
    double secs, bound;
    bool done;
    int i;

    throttle_group_member_init(&m, qemu_get_aio_context());
    throttle_group_join(&m, tg);
    throttle_group_get_config(tg, &cfg);
    /* The buckets start empty now, not before t0. */
    t0 = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
    g_assert_true(throttle_group_set_config(tg, &cfg, NULL));
    for (i = 0; i < G_N_ELEMENTS(r); i++) {
        raw_req_start(&r[i], &m, false);
    }
    /* The real timers release them; this ends however long it takes. */
    for (;;) {
        done = true;
        for (i = 0; i < G_N_ELEMENTS(r); i++) {
            done = done && qatomic_load_acquire(&r[i].done);
        }
        if (done) {
            break;
        }
        aio_poll(qemu_get_aio_context(), true);
    }
    t1 = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);

    secs = (double)(t1 - t0) / NANOSECONDS_PER_SECOND;
    bound = 20 + 1 + 1 + 200 * secs;
    throttle_group_member_get_stats(&m, &st);
    g_test_message("real clock: %zu requests in %.3f s (at most %.1f), "
                   "%" PRIu64 " released by a timer", G_N_ELEMENTS(r), secs,
                   bound, st.granted_by_timer[0]);
    g_assert_cmpfloat(G_N_ELEMENTS(r), <=, bound);
    g_assert_cmpuint(served(&m, 0), ==, G_N_ELEMENTS(r));
    g_assert_cmpuint(st.passed[0] + st.queued[0], ==, G_N_ELEMENTS(r));

    throttle_group_member_destroy(&m);
    throttle_group_unref(tg);
}

/* ---- Bursts ---- */

static void test_bursts(void)
{
    ThrottleGroupMemberStats st;
    BlockBackend *blk;
    ThrottleGroup *tg;
    Load l, *loads[] = { &l };
    uint64_t n1, n2, n3;

    /* No max: a tenth of a second's worth (10 ops, plus one) at once. */
    add_group("throttle-group,id=b-default,x-iops-total=100");
    tg = virtual_group("b-default");
    blk = open_throttled("b-default", "null-co");
    l = (Load) { .blk = blk, .bytes = 4096, .depth = 1, .limit = 12 };
    load_start(&l);
    throttle_group_member_get_stats(l.tgm, &st);
    g_assert_cmpuint(st.passed[0], ==, 11);
    g_assert_cmpuint(st.queued[0], ==, 1);
    /* The twelfth waits for one op to leak: 10 ms. */
    g_assert_cmpint(throttle_group_timer_deadline(tg, false), ==,
                    10 * SCALE_MS);
    stop_loads(tg, loads, 1);
    throttle_group_member_get_stats(l.tgm, &st);
    g_assert_cmpuint(st.granted_by_timer[0], ==, 1);
    g_assert_cmpint(throttle_group_clock_get_ns(tg), ==, 10 * SCALE_MS);
    blk_unref(blk);
    del_group("b-default");

    /*
     * max 1000 for 1 s: 1001 ops at once, then the average, 1/s: the
     * 1002nd waits a second.
     */
    add_group("throttle-group,id=b-flat,x-iops-total=1,"
              "x-iops-total-max=1000");
    tg = virtual_group("b-flat");
    blk = open_throttled("b-flat", "null-co");
    l = (Load) { .blk = blk, .bytes = 4096, .depth = 8, .limit = 1002 };
    load_start(&l);
    throttle_group_member_get_stats(l.tgm, &st);
    g_assert_cmpuint(st.passed[0], ==, 1001);
    g_assert_cmpuint(st.queued[0], ==, 1);
    g_assert_cmpint(throttle_group_timer_deadline(tg, false), ==,
                    NANOSECONDS_PER_SECOND);
    stop_loads(tg, loads, 1);
    blk_unref(blk);
    del_group("b-flat");

    /*
     * max 500 for 2 s: 51 at once (the burst bucket holds max / 10),
     * then one per 2 ms, until the main bucket is full (1000) after
     * about 2.1 s; then 50/s.
     */
    add_group("throttle-group,id=b-slow,limits.iops-total=50,"
              "limits.iops-total-max=500,limits.iops-total-max-length=2");
    tg = virtual_group("b-slow");
    blk = open_throttled("b-slow", "null-co");
    l = (Load) { .blk = blk, .bytes = 4096, .depth = 8 };
    load_start(&l);
    throttle_group_member_get_stats(l.tgm, &st);
    g_assert_cmpuint(st.passed[0], ==, 51);

    run_until(tg, loads, 1, NANOSECONDS_PER_SECOND, NULL, NULL);
    n1 = qatomic_read(&l.done);
    run_until(tg, loads, 1, 2400LL * SCALE_MS, NULL, NULL);
    n2 = qatomic_read(&l.done);
    run_until(tg, loads, 1, 3400LL * SCALE_MS, NULL, NULL);
    n3 = qatomic_read(&l.done);
    g_test_message("burst: %" PRIu64 " in the first second, %" PRIu64
                   " by 2.4 s, then %" PRIu64 "/s", n1, n2, n3 - n2);
    /* 51, then 500 per second. */
    g_assert_cmpuint(n1, >=, 550);
    g_assert_cmpuint(n1, <=, 551);
    /* What the bucket holds plus what leaked, 1000 + 50 * 2.4. */
    g_assert_cmpuint(n2, >=, 1000 + 120 - 1);
    g_assert_cmpuint(n2, <=, 1000 + 120 + 1);
    g_assert_cmpuint(n3 - n2, >=, 50 - 1);
    g_assert_cmpuint(n3 - n2, <=, 50 + 1);
    stop_loads(tg, loads, 1);
    blk_unref(blk);
    del_group("b-slow");
}

/* ---- Fairness ---- */

typedef struct FairCheck {
    ThrottleGroupMember *m[2];
    int dir;
    uint64_t base[2];
    uint64_t passed[2];         /* passed[] of their stats at the start */
    unsigned int steps;
} FairCheck;

/* At every instant, neither member is more than one request ahead. */
static void fair_step(void *opaque)
{
    FairCheck *f = opaque;
    uint64_t a = served(f->m[0], f->dir) - f->base[0];
    uint64_t b = served(f->m[1], f->dir) - f->base[1];

    f->steps++;
    g_assert_cmpuint(a, <=, b + 1);
    g_assert_cmpuint(b, <=, a + 1);
}

/*
 * Two members sharing 400/s with queue depths @da and @db, the second
 * one in @b_ctx: they take turns, one request each, however deep their
 * queues, and each gets 400 requests in 2 s.
 */
static void check_fairness(const char *spec, const char *id, bool write,
                           int da, int db, AioContext *b_ctx)
{
    BlockBackend *a, *b;
    ThrottleGroup *tg;
    Load la, lb, *loads[] = { &la, &lb };
    FairCheck f = { .dir = write };
    ThrottleGroupMemberStats st;
    uint64_t na, nb;

    add_group(spec);
    tg = virtual_group(id);
    a = open_throttled(id, "null-co");
    b = open_throttled(id, "null-co");
    if (b_ctx) {
        g_assert_cmpint(bdrv_try_change_aio_context(blk_bs(b), b_ctx, NULL),
                        ==, 0);
    }
    g_assert_cmpuint(throttle_group_member_count(tg), ==, 2);

    la = (Load) { .blk = a, .bytes = 4096, .depth = da, .write = write };
    lb = (Load) { .blk = b, .bytes = 4096, .depth = db, .write = write };
    load_start(&la);
    load_start(&lb);

    run_until(tg, loads, 2, WARMUP_NS, NULL, NULL);
    f.m[0] = la.tgm;
    f.m[1] = lb.tgm;
    f.base[0] = served(la.tgm, write);
    f.base[1] = served(lb.tgm, write);
    throttle_group_member_get_stats(la.tgm, &st);
    f.passed[0] = st.passed[write];
    throttle_group_member_get_stats(lb.tgm, &st);
    f.passed[1] = st.passed[write];
    run_until(tg, loads, 2, WARMUP_NS + WINDOW_NS, fair_step, &f);
    na = served(la.tgm, write) - f.base[0];
    nb = served(lb.tgm, write) - f.base[1];
    g_test_message("%s: %" PRIu64 " (depth %d) and %" PRIu64 " (depth %d%s) "
                   "in 2 s, %u instants", id, na, da, nb, db,
                   b_ctx ? ", iothread" : "", f.steps);
    /* The window holds 800 +- 1 releases, shared out in turns. */
    g_assert_cmpuint(na, >=, 400 - 1);
    g_assert_cmpuint(na, <=, 400 + 1);
    g_assert_cmpuint(nb, >=, 400 - 1);
    g_assert_cmpuint(nb, <=, 400 + 1);
    /* All of them queued and took their turn: none passed by. */
    throttle_group_member_get_stats(la.tgm, &st);
    g_assert_cmpuint(st.passed[write], ==, f.passed[0]);
    throttle_group_member_get_stats(lb.tgm, &st);
    g_assert_cmpuint(st.passed[write], ==, f.passed[1]);

    stop_loads(tg, loads, 2);
    blk_unref(a);
    blk_unref(b);
    del_group(id);
}

/*
 * One release at a time: while a request released by the timer has not
 * started, nothing else gets through, or the group would let one more
 * request per member through than its limits allow.
 */
static void test_one_release_at_a_time(void)
{
    ThrottleGroup *tg = anon_group("x-iops-total=10");
    ThrottleGroupMember m1, m2;
    ThrottleGroupMemberStats st;
    RawReq r1[3], r2;
    int i;

    throttle_group_set_virtual_clock(tg, 0);
    throttle_group_member_init(&m1, qemu_get_aio_context());
    throttle_group_member_init(&m2, qemu_get_aio_context());
    throttle_group_join(&m1, tg);
    throttle_group_join(&m2, tg);

    /* Capacity 1: two pass, the third waits 100 ms. */
    for (i = 0; i < 3; i++) {
        raw_req_start(&r1[i], &m1, false);
    }
    g_assert_false(r1[2].done);
    g_assert_cmpint(throttle_group_timer_deadline(tg, false), ==,
                    100 * SCALE_MS);

    /* Released, not started: its kick has not run yet. */
    throttle_group_clock_advance(tg, 100 * SCALE_MS);
    g_assert_false(r1[2].done);
    throttle_group_member_get_stats(&m1, &st);
    g_assert_cmpuint(st.granted_by_timer[0], ==, 1);

    /* The bucket has room for one, but that one is r1[2]'s. */
    raw_req_start(&r2, &m2, false);
    g_assert_false(r2.done);
    throttle_group_member_get_stats(&m2, &st);
    g_assert_cmpuint(st.passed[0], ==, 0);
    g_assert_cmpuint(st.queued[0], ==, 1);

    while (aio_poll(qemu_get_aio_context(), false)) {
        /* nothing */
    }
    g_assert_true(r1[2].done);
    g_assert_false(r2.done);
    /* r1[2] counted, so r2 waits for one more op to leak. */
    g_assert_cmpint(throttle_group_timer_deadline(tg, false), ==,
                    200 * SCALE_MS);
    throttle_group_clock_advance(tg, 200 * SCALE_MS);
    while (aio_poll(qemu_get_aio_context(), false)) {
        /* nothing */
    }
    g_assert_true(r2.done);
    throttle_group_member_get_stats(&m2, &st);
    g_assert_cmpuint(st.granted_by_timer[0], ==, 1);

    throttle_group_member_destroy(&m1);
    throttle_group_member_destroy(&m2);
    throttle_group_unref(tg);
}

static void test_fairness(void)
{
    check_fairness("throttle-group,id=fair1,x-iops-total=400", "fair1",
                   false, 8, 1, NULL);
}

static void test_fairness_iothread(void)
{
    IOThread *t = iothread_create("fair", NULL);

    check_fairness("throttle-group,id=fair2,x-iops-write=400", "fair2",
                   true, 1, 16, iothread_get_aio_context(t));
    iothread_destroy(t);
}

/* ---- Drain ---- */

/*
 * 33 writes at one per second: one passes, 32 queue with a timer armed
 * 0.9 s away (capacity 0.1).  Returns the load (running).  The clock is
 * virtual, so the timer cannot fire behind the test's back.
 */
static void queue_32(BlockBackend *blk, Load *l)
{
    ThrottleGroupMember *tgm = node_member(blk_bs(blk));
    ThrottleGroupMemberStats st;

    *l = (Load) { .blk = blk, .bytes = 4096, .depth = 33, .limit = 33,
                  .write = true };
    load_start(l);
    /* Let requests scheduled into an iothread get there. */
    while (throttle_group_member_queued(tgm) < 32) {
        aio_poll(qemu_get_aio_context(), false);
        g_usleep(100);
    }
    throttle_group_member_get_stats(tgm, &st);
    g_assert_cmpuint(st.passed[1], ==, 1);
    g_assert_cmpuint(st.queued[1], ==, 32);
    g_assert_cmpuint(qatomic_read(&l->done), ==, 1);
    /* The pending timer counts in the member's context. */
    g_assert_cmpuint(tag_count(blk_get_aio_context(blk), "throttle-timer"),
                     ==, 1);
    g_assert_cmpint(throttle_group_timer_deadline(
                        throttle_group_member_get_group(tgm), true), ==,
                    900 * SCALE_MS);
}

/* How the 32 left: by the drain, none by a timer. */
static void check_released_by_drain(BlockBackend *blk, Load *l)
{
    ThrottleGroupMemberStats st;
    AioContext *ctx = blk_get_aio_context(blk);

    /* Completed: nothing in flight in the node or its backend. */
    g_assert_cmpuint(blk_bs(blk)->in_flight, ==, 0);
    g_assert_cmpuint(blk_in_flight(blk), ==, 0);
    if (ctx == qemu_get_aio_context()) {
        g_assert_cmpuint(qatomic_read(&l->done), ==, 33);
    }
    throttle_group_member_get_stats(node_member(blk_bs(blk)), &st);
    g_assert_cmpuint(st.released_by_drain[1], ==, 32);
    g_assert_cmpuint(st.granted_by_timer[1], ==, 0);
    g_assert_cmpuint(st.granted_at_once[1], ==, 0);
    g_assert_cmpuint(throttle_group_member_queued(node_member(blk_bs(blk))),
                     ==, 0);
    g_assert_cmpuint(tag_count(ctx, "throttle-timer"), ==, 0);
    g_assert_cmpuint(aio_context_in_flight(ctx), ==, 0);
}

/* After the section, requests are throttled again. */
static void check_throttled_again(BlockBackend *blk)
{
    ThrottleGroupMember *tgm = node_member(blk_bs(blk));
    ThrottleGroup *tg = throttle_group_member_get_group(tgm);
    ThrottleGroupMemberStats st;
    Load l = { .blk = blk, .bytes = 4096, .depth = 1, .limit = 1 };
    uint64_t queued, by_drain;
    Ticker t;

    throttle_group_member_get_stats(tgm, &st);
    queued = st.queued[0];
    by_drain = st.released_by_drain[0];
    load_start(&l);
    while (throttle_group_member_queued(tgm) < 1) {
        aio_poll(qemu_get_aio_context(), false);
        g_usleep(100);
    }
    throttle_group_member_get_stats(tgm, &st);
    g_assert_cmpuint(st.queued[0], ==, queued + 1);
    g_assert_cmpuint(tag_count(blk_get_aio_context(blk), "throttle-timer"),
                     ==, 1);
    g_assert_cmpint(throttle_group_timer_deadline(tg, false), >=, 0);
    /* The drain lets it go. */
    ticker_start(&t, tg);
    bdrv_drained_begin(blk_bs(blk));
    ticker_stop(&t);
    g_assert_cmpuint(blk_in_flight(blk), ==, 0);
    throttle_group_member_get_stats(tgm, &st);
    g_assert_cmpuint(st.released_by_drain[0], ==, by_drain + 1);
    bdrv_drained_end(blk_bs(blk));
    load_wait(&l);
}

static void test_drain_releases(void)
{
    BlockBackend *blk;
    ThrottleGroup *tg;
    Ticker t;
    Load l;

    add_group("throttle-group,id=tg,x-iops-total=1");
    tg = virtual_group("tg");
    blk = open_throttled("tg", "null-co");
    queue_32(blk, &l);

    ticker_start(&t, tg);
    bdrv_drained_begin(blk_bs(blk));
    ticker_stop(&t);
    check_released_by_drain(blk, &l);
    bdrv_drained_end(blk_bs(blk));
    load_wait(&l);

    check_throttled_again(blk);
    blk_unref(blk);
    del_group("tg");
}

static void test_drain_all_releases(void)
{
    BlockBackend *blk;
    ThrottleGroup *tg;
    Ticker t;
    Load l;

    add_group("throttle-group,id=tg,x-iops-total=1");
    tg = virtual_group("tg");
    blk = open_throttled("tg", "null-co");
    queue_32(blk, &l);

    ticker_start(&t, tg);
    bdrv_drain_all_begin();
    ticker_stop(&t);
    check_released_by_drain(blk, &l);
    bdrv_drain_all_end();
    load_wait(&l);

    check_throttled_again(blk);
    blk_unref(blk);
    del_group("tg");
}

/*
 * The member lives in an iothread, the group's timer in the main
 * context, the drain comes from the main thread.
 */
static void test_drain_iothread(void)
{
    IOThread *io = iothread_create("drain", NULL);
    AioContext *io_ctx = iothread_get_aio_context(io);
    BlockBackend *blk;
    ThrottleGroup *tg;
    Ticker t;
    Load l;

    add_group("throttle-group,id=tg,x-iops-total=1");
    tg = virtual_group("tg");
    blk = open_throttled("tg", "null-co");
    g_assert_cmpint(bdrv_try_change_aio_context(blk_bs(blk), io_ctx, NULL),
                    ==, 0);
    queue_32(blk, &l);
    g_assert_cmpuint(tag_count(qemu_get_aio_context(), "throttle-timer"), ==,
                     0);

    ticker_start(&t, tg);
    bdrv_drained_begin(blk_bs(blk));
    ticker_stop(&t);
    check_released_by_drain(blk, &l);
    bdrv_drained_end(blk_bs(blk));
    load_wait(&l);

    check_throttled_again(blk);
    /* And back: the member's handler and BH follow the node. */
    g_assert_cmpint(bdrv_try_change_aio_context(blk_bs(blk),
                                                qemu_get_aio_context(), NULL),
                    ==, 0);
    check_throttled_again(blk);
    blk_unref(blk);
    del_group("tg");
    iothread_destroy(io);
}

/* Requests while drained pass; limits set meanwhile apply at end. */
static void test_limits_while_drained(void)
{
    ThrottleGroup *tg = anon_group("x-iops-total=1000");
    ThrottleGroupMember m;
    ThrottleGroupMemberStats st;
    ThrottleConfig cfg;
    RawReq r[4];
    Ticker t;
    int i;

    throttle_group_set_virtual_clock(tg, 0);
    throttle_group_member_init(&m, qemu_get_aio_context());
    throttle_group_join(&m, tg);

    bdrv_context_drained_begin(qemu_get_aio_context());
    throttle_config_init(&cfg);
    cfg.buckets[THROTTLE_OPS_TOTAL].avg = 1;
    g_assert_true(throttle_group_set_config(tg, &cfg, NULL));
    /* Drained: nothing waits, whatever the limits. */
    for (i = 0; i < 4; i++) {
        raw_req_start(&r[i], &m, true);
        g_assert_true(r[i].done);
    }
    throttle_group_member_get_stats(&m, &st);
    g_assert_cmpuint(st.unthrottled[1], ==, 4);
    g_assert_cmpuint(st.queued[1], ==, 0);
    bdrv_context_drained_end(qemu_get_aio_context());

    /*
     * The new limit (1/s) is in force: the four writes done while
     * drained were counted (level 4, capacity 0.1), so the next one
     * waits 3.9 s, and it waits for a timer.
     */
    raw_req_start(&r[0], &m, true);
    g_assert_false(r[0].done);
    throttle_group_member_get_stats(&m, &st);
    g_assert_cmpuint(st.queued[1], ==, 1);
    g_assert_cmpuint(st.timers_armed, ==, 1);
    g_assert_cmpint(throttle_group_timer_deadline(tg, true), ==,
                    3900LL * SCALE_MS);
    g_assert_cmpuint(tag_count(qemu_get_aio_context(), "throttle-timer"), ==,
                     1);

    /* A drained section is busy until the queue is empty. */
    ticker_start(&t, tg);
    bdrv_context_drained_begin(qemu_get_aio_context());
    ticker_stop(&t);
    g_assert_true(r[0].done);
    throttle_group_member_get_stats(&m, &st);
    g_assert_cmpuint(st.released_by_drain[1], ==, 1);
    g_assert_cmpuint(tag_count(qemu_get_aio_context(), "throttle-timer"), ==,
                     0);
    bdrv_context_drained_end(qemu_get_aio_context());

    throttle_group_member_destroy(&m);
    g_assert_cmpuint(throttle_group_member_count(tg), ==, 0);
    throttle_group_unref(tg);
}

/* Reopen moves the node to another group while it is drained. */
static void test_membership_while_drained(void)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonObject) opts = json_object_new();
    ThrottleGroupMemberStats st;
    ThrottleGroup *tg_a, *tg_b;
    BlockDriverState *bs;
    BlockBackend *blk;
    Ticker t;
    Load l;

    add_group("throttle-group,id=tg-a,x-iops-total=1");
    add_group("throttle-group,id=tg-b,x-iops-write=2");
    tg_a = virtual_group("tg-a");
    tg_b = virtual_group("tg-b");
    blk = open_throttled("tg-a", "null-co");
    bs = blk_bs(blk);
    queue_32(blk, &l);

    ticker_start(&t, tg_a);
    bdrv_drained_begin(bs);
    ticker_stop(&t);
    check_released_by_drain(blk, &l);
    json_object_set_string_member(opts, "throttle-group", "tg-b");
    g_assert_true(bdrv_reopen(bs, opts, &err));
    g_assert_no_error(err);
    g_assert_true(throttle_group_member_get_group(node_member(bs)) == tg_b);
    g_assert_cmpuint(throttle_group_member_count(tg_a), ==, 0);
    g_assert_cmpuint(throttle_group_member_count(tg_b), ==, 1);
    bdrv_drained_end(bs);
    load_wait(&l);

    /* tg-b's limits now: writes 2/s, capacity 0.2, so one at once. */
    l = (Load) { .blk = blk, .bytes = 4096, .depth = 3, .limit = 3,
                 .write = true };
    load_start(&l);
    throttle_group_member_get_stats(node_member(bs), &st);
    g_assert_cmpuint(st.passed[1], ==, 1 + 1);
    g_assert_cmpuint(st.queued[1], ==, 32 + 2);
    g_assert_cmpuint(tag_count(qemu_get_aio_context(), "throttle-timer"), ==,
                     1);
    g_assert_cmpint(throttle_group_timer_deadline(tg_b, true), >=, 0);
    g_assert_cmpint(throttle_group_timer_deadline(tg_a, true), <, 0);
    ticker_start(&t, tg_b);
    bdrv_drained_begin(bs);
    ticker_stop(&t);
    throttle_group_member_get_stats(node_member(bs), &st);
    g_assert_cmpuint(st.released_by_drain[1], ==, 32 + 2);
    bdrv_drained_end(bs);
    load_wait(&l);

    /* The old group is free to go, the new one is in use. */
    del_group("tg-a");
    g_assert_false(user_creatable_del("tg-b", &err));
    g_clear_error(&err);

    /* A reopen naming no group or an unknown one fails, changing nothing. */
    json_object_set_string_member(opts, "throttle-group", "nope");
    g_assert_false(bdrv_reopen(bs, opts, &err));
    g_assert_cmpstr(err->message, ==, "Throttle group 'nope' does not exist");
    g_clear_error(&err);
    json_object_remove_member(opts, "throttle-group");
    g_assert_false(bdrv_reopen(bs, opts, &err));
    g_assert_cmpstr(err->message, ==, "Please specify a throttle group");
    g_clear_error(&err);
    g_assert_true(throttle_group_member_get_group(node_member(bs)) == tg_b);

    blk_unref(blk);
    del_group("tg-b");
}

/*
 * A member leaves while requests of its own and of another member are
 * queued: its requests go at once, the other member's are still served
 * by the group's timer.
 */
static void test_leave_with_queued(void)
{
    ThrottleGroup *tg = anon_group("x-iops-total=20");
    ThrottleGroupMember m1, m2;
    ThrottleGroupMemberStats st1, st2;
    RawReq r1[4], r2[4];
    int64_t deadline;
    int i;

    throttle_group_set_virtual_clock(tg, 0);
    throttle_group_member_init(&m1, qemu_get_aio_context());
    throttle_group_member_init(&m2, qemu_get_aio_context());
    throttle_group_join(&m1, tg);
    throttle_group_join(&m2, tg);
    throttle_group_ref(tg);

    /* Capacity 2: three of m1 pass, its fourth queues with the timer. */
    for (i = 0; i < 4; i++) {
        raw_req_start(&r1[i], &m1, false);
    }
    for (i = 0; i < 4; i++) {
        raw_req_start(&r2[i], &m2, false);
    }
    throttle_group_member_get_stats(&m1, &st1);
    throttle_group_member_get_stats(&m2, &st2);
    g_assert_cmpuint(st1.passed[0], ==, 3);
    g_assert_cmpuint(st2.passed[0], ==, 0);
    g_assert_cmpuint(throttle_group_member_queued(&m1), ==, 1);
    g_assert_cmpuint(throttle_group_member_queued(&m2), ==, 4);
    g_assert_cmpuint(st1.timers_armed, ==, 1);
    g_assert_cmpuint(st2.timers_armed, ==, 0);
    deadline = throttle_group_timer_deadline(tg, false);
    g_assert_cmpint(deadline, ==, 50 * SCALE_MS);

    throttle_group_leave(&m1);
    g_assert_cmpuint(throttle_group_member_count(tg), ==, 1);
    /* Released, woken from m1's BH, not from a timer. */
    while (aio_poll(qemu_get_aio_context(), false)) {
        /* nothing */
    }
    g_assert_cmpuint(throttle_group_member_queued(&m1), ==, 0);
    for (i = 0; i < 4; i++) {
        g_assert_true(r1[i].done);
    }
    throttle_group_member_get_stats(&m1, &st1);
    g_assert_cmpuint(st1.released_by_leave[0], ==, 1);
    g_assert_cmpuint(st1.granted_by_timer[0], ==, 0);

    /* m2 goes on at the group's pace: the timer was re-armed for it. */
    throttle_group_member_get_stats(&m2, &st2);
    g_assert_cmpuint(st2.timers_armed, ==, 1);
    g_assert_cmpint(throttle_group_timer_deadline(tg, false), ==, deadline);
    g_assert_cmpuint(tag_count(qemu_get_aio_context(), "throttle-timer"), ==,
                     1);
    /* One per 50 ms of virtual time, each by the timer. */
    for (i = 0; i < 4; i++) {
        g_assert_false(r2[i].done);
        deadline = throttle_group_timer_deadline(tg, false);
        g_assert_cmpint(deadline, ==, (i + 1) * 50 * SCALE_MS);
        throttle_group_clock_advance(tg, deadline);
        while (aio_poll(qemu_get_aio_context(), false)) {
            /* nothing */
        }
        g_assert_true(r2[i].done);
    }
    g_assert_cmpuint(throttle_group_member_queued(&m2), ==, 0);
    throttle_group_member_get_stats(&m2, &st2);
    g_assert_cmpuint(st2.granted_by_timer[0], ==, 4);
    g_assert_cmpint(throttle_group_timer_deadline(tg, false), <, 0);
    g_assert_cmpuint(tag_count(qemu_get_aio_context(), "throttle-timer"), ==,
                     0);

    /* m1, outside any group, is not throttled. */
    for (i = 0; i < 4; i++) {
        raw_req_start(&r1[i], &m1, false);
        g_assert_true(r1[i].done);
    }

    throttle_group_member_destroy(&m1);
    throttle_group_member_destroy(&m2);
    g_assert_cmpuint(throttle_group_member_count(tg), ==, 0);
    throttle_group_unref(tg);
    throttle_group_unref(tg);
}

/* The node closes while drained and its member leaves the group. */
static void test_close_member(void)
{
    BlockBackend *a, *b;
    ThrottleGroup *tg;
    Load la, lb;
    ThrottleGroupMemberStats st;
    Ticker t;

    add_group("throttle-group,id=tg,x-iops-total=10");
    tg = virtual_group("tg");
    a = open_throttled("tg", "null-co");
    b = open_throttled("tg", "null-co");
    la = (Load) { .blk = a, .bytes = 4096, .depth = 4, .limit = 4 };
    lb = (Load) { .blk = b, .bytes = 4096, .depth = 4, .limit = 4 };
    load_start(&la);
    load_start(&lb);
    g_assert_cmpuint(throttle_group_member_count(tg), ==, 2);
    /* Capacity 1: two of a's pass, the other six queue. */
    throttle_group_member_get_stats(la.tgm, &st);
    g_assert_cmpuint(st.passed[0], ==, 2);
    g_assert_cmpuint(throttle_group_member_queued(la.tgm), ==, 2);
    g_assert_cmpuint(throttle_group_member_queued(lb.tgm), ==, 4);

    /* Closing drains a's context (and so releases b too: same one). */
    ticker_start(&t, tg);
    blk_unref(a);
    ticker_stop(&t);
    g_assert_cmpuint(qatomic_read(&la.done), ==, 4);
    load_wait(&la);
    g_assert_cmpuint(throttle_group_member_count(tg), ==, 1);
    throttle_group_member_get_stats(lb.tgm, &st);
    g_assert_cmpuint(st.released_by_drain[0], ==, 4);
    g_assert_cmpuint(st.passed[0] + st.queued[0], ==, 4);
    load_wait(&lb);
    blk_unref(b);
    del_group("tg");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_assert_true(qemu_init_main_loop(NULL));

    g_test_add_func("/throttle-groups/props", test_props);
    g_test_add_func("/throttle-groups/props-precedence",
                    test_props_precedence);
    g_test_add_func("/throttle-groups/props-json", test_props_json);
    g_test_add_func("/throttle-groups/open-errors", test_open_errors);
    g_test_add_func("/throttle-groups/object-in-use", test_object_in_use);
    g_test_add_func("/throttle-groups/passthrough", test_passthrough);
    g_test_add_func("/throttle-groups/rates", test_rates);
    g_test_add_func("/throttle-groups/real-clock", test_real_clock);
    g_test_add_func("/throttle-groups/bursts", test_bursts);
    g_test_add_func("/throttle-groups/one-release-at-a-time",
                    test_one_release_at_a_time);
    g_test_add_func("/throttle-groups/fairness", test_fairness);
    g_test_add_func("/throttle-groups/fairness-iothread",
                    test_fairness_iothread);
    g_test_add_func("/throttle-groups/drain-releases", test_drain_releases);
    g_test_add_func("/throttle-groups/drain-all-releases",
                    test_drain_all_releases);
    g_test_add_func("/throttle-groups/drain-iothread", test_drain_iothread);
    g_test_add_func("/throttle-groups/limits-while-drained",
                    test_limits_while_drained);
    g_test_add_func("/throttle-groups/membership-while-drained",
                    test_membership_while_drained);
    g_test_add_func("/throttle-groups/leave-with-queued",
                    test_leave_with_queued);
    g_test_add_func("/throttle-groups/close-member", test_close_member);
    return g_test_run();
}
