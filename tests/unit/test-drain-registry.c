/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The AioContext drain registry: one test per rule of DESIGN.md's Drain
 * section, tagged in-flight counts and the drained_busy truth table.
 *
 * Copyright (c) 2026 The Sluice authors
 */
#include "qemu/osdep.h"

#include "block/aio.h"
#include "block/aio-wait.h"
#include "qemu/iothread.h"
#include "qemu/main-loop.h"

/*
 * A recording handler: every callback appends "<name>+" (begin) or
 * "<name>-" (end) to a shared trace and may run an action.
 */
typedef struct Rec Rec;
typedef void RecAction(Rec *r);

struct Rec {
    AioContext *ctx;
    AioDrainHandler *h;
    GString *trace;
    const char *name;
    int begins;
    int ends;
    bool busy;
    int polls;
    RecAction *on_begin;
    RecAction *on_end;
    Rec *other;                 /* the target of an action */
};

static void rec_begin(void *opaque)
{
    Rec *r = opaque;

    r->begins++;
    /* Rule 3: begin and end alternate, starting with begin. */
    g_assert_cmpint(r->begins, ==, r->ends + 1);
    if (r->trace) {
        g_string_append_printf(r->trace, "%s+", r->name);
    }
    if (r->on_begin) {
        r->on_begin(r);
    }
}

static void rec_end(void *opaque)
{
    Rec *r = opaque;

    r->ends++;
    g_assert_cmpint(r->ends, ==, r->begins);
    if (r->trace) {
        g_string_append_printf(r->trace, "%s-", r->name);
    }
    if (r->on_end) {
        r->on_end(r);
    }
}

static bool rec_poll(void *opaque)
{
    Rec *r = opaque;

    r->polls++;
    return qatomic_read(&r->busy);
}

static const AioDrainOps rec_ops = {
    .drained_begin = rec_begin,
    .drained_end = rec_end,
    .drained_poll = rec_poll,
};

static void rec_add(Rec *r)
{
    r->h = aio_context_add_drain_ops(r->ctx, &rec_ops, r);
}

static void rec_remove(Rec *r)
{
    aio_context_remove_drain_ops(r->h);
    r->h = NULL;
}

static AioContext *new_ctx(void)
{
    AioContext *c = aio_context_new(NULL);

    g_assert_nonnull(c);
    return c;
}

/* Rule 1: nesting counts; begin on 0 -> 1, end on 1 -> 0. */
static void test_rule1_nesting(void)
{
    AioContext *c = new_ctx();
    Rec r = { .ctx = c, .name = "r" };

    rec_add(&r);
    g_assert_false(aio_context_is_drained(c));
    aio_context_drained_begin(c);
    aio_context_drained_begin(c);
    aio_context_drained_begin(c);
    g_assert_true(aio_context_is_drained(c));
    g_assert_cmpint(r.begins, ==, 1);
    aio_context_drained_end(c);
    aio_context_drained_end(c);
    g_assert_cmpint(r.ends, ==, 0);
    g_assert_true(aio_context_is_drained(c));
    aio_context_drained_end(c);
    g_assert_cmpint(r.ends, ==, 1);
    g_assert_false(aio_context_is_drained(c));

    /* A second section begins and ends again. */
    aio_context_drained_begin(c);
    aio_context_drained_end(c);
    g_assert_cmpint(r.begins, ==, 2);
    g_assert_cmpint(r.ends, ==, 2);
    rec_remove(&r);
    aio_context_unref(c);
}

/* Rule 2: begin in registration order, end in reverse. */
static void test_rule2_order(void)
{
    AioContext *c = new_ctx();
    g_autoptr(GString) trace = g_string_new("");
    Rec a = { .ctx = c, .name = "a", .trace = trace };
    Rec b = { .ctx = c, .name = "b", .trace = trace };
    Rec d = { .ctx = c, .name = "c", .trace = trace };

    rec_add(&a);
    rec_add(&b);
    rec_add(&d);
    aio_context_drained_begin(c);
    aio_context_drained_end(c);
    g_assert_cmpstr(trace->str, ==, "a+b+c+c-b-a-");

    /* Removing one keeps the order of the others. */
    g_string_truncate(trace, 0);
    rec_remove(&b);
    aio_context_drained_begin(c);
    aio_context_drained_end(c);
    g_assert_cmpstr(trace->str, ==, "a+c+c-a-");
    rec_remove(&a);
    rec_remove(&d);
    aio_context_unref(c);
}

/* Rule 3: an end runs if and only if its begin ran, never twice. */
static void test_rule3_end_iff_begin(void)
{
    AioContext *c = new_ctx();
    Rec r = { .ctx = c, .name = "r" };

    /* Registered and removed outside a section: neither runs. */
    rec_add(&r);
    rec_remove(&r);
    g_assert_cmpint(r.begins, ==, 0);
    g_assert_cmpint(r.ends, ==, 0);

    /* Removed inside: the end runs at removal and not again at the end. */
    rec_add(&r);
    aio_context_drained_begin(c);
    rec_remove(&r);
    g_assert_cmpint(r.begins, ==, 1);
    g_assert_cmpint(r.ends, ==, 1);
    aio_context_drained_end(c);
    g_assert_cmpint(r.ends, ==, 1);

    /* Registered after the end of a section: no stray end later. */
    aio_context_drained_begin(c);
    aio_context_drained_end(c);
    rec_add(&r);
    g_assert_cmpint(r.begins, ==, 1);
    rec_remove(&r);
    g_assert_cmpint(r.ends, ==, 1);
    aio_context_unref(c);
}

/* Rule 4: added while drained begins at once; removed ends at once. */
static void test_rule4_add_remove_while_drained(void)
{
    AioContext *c = new_ctx();
    g_autoptr(GString) trace = g_string_new("");
    Rec a = { .ctx = c, .name = "a", .trace = trace };
    Rec b = { .ctx = c, .name = "b", .trace = trace };

    rec_add(&a);
    aio_context_drained_begin(c);
    aio_context_drained_begin(c);
    rec_add(&b);
    g_assert_cmpstr(trace->str, ==, "a+b+");
    aio_context_drained_end(c);
    g_assert_cmpstr(trace->str, ==, "a+b+");
    rec_remove(&a);
    g_assert_cmpstr(trace->str, ==, "a+b+a-");
    aio_context_drained_end(c);
    g_assert_cmpstr(trace->str, ==, "a+b+a-b-");
    g_assert_cmpint(a.begins, ==, 1);
    g_assert_cmpint(a.ends, ==, 1);
    g_assert_cmpint(b.begins, ==, 1);
    g_assert_cmpint(b.ends, ==, 1);
    rec_remove(&b);
    aio_context_unref(c);
}

static void act_add_other(Rec *r)
{
    if (!r->other->h) {
        rec_add(r->other);
    }
}

static void act_remove_other(Rec *r)
{
    if (r->other->h) {
        rec_remove(r->other);
    }
}

static void act_remove_self(Rec *r)
{
    rec_remove(r);
}

/* Rule 5: a begin callback registers a new handler. */
static void test_rule5_add_from_begin(void)
{
    AioContext *c = new_ctx();
    g_autoptr(GString) trace = g_string_new("");
    Rec b = { .ctx = c, .name = "b", .trace = trace };
    Rec a = { .ctx = c, .name = "a", .trace = trace,
              .on_begin = act_add_other, .other = &b };

    rec_add(&a);
    aio_context_drained_begin(c);
    /* b begins once, at registration, not again when the walk reaches it. */
    g_assert_cmpstr(trace->str, ==, "a+b+");
    aio_context_drained_end(c);
    g_assert_cmpstr(trace->str, ==, "a+b+b-a-");
    rec_remove(&a);
    rec_remove(&b);
    aio_context_unref(c);
}

/* Rule 5: a begin callback removes a handler the walk has not reached. */
static void test_rule5_remove_later_from_begin(void)
{
    AioContext *c = new_ctx();
    g_autoptr(GString) trace = g_string_new("");
    Rec b = { .ctx = c, .name = "b", .trace = trace };
    Rec a = { .ctx = c, .name = "a", .trace = trace,
              .on_begin = act_remove_other, .other = &b };
    Rec d = { .ctx = c, .name = "c", .trace = trace };

    rec_add(&a);
    rec_add(&b);
    rec_add(&d);
    aio_context_drained_begin(c);
    aio_context_drained_end(c);
    g_assert_cmpstr(trace->str, ==, "a+c+c-a-");
    g_assert_cmpint(b.begins, ==, 0);
    g_assert_cmpint(b.ends, ==, 0);
    rec_remove(&a);
    rec_remove(&d);
    aio_context_unref(c);
}

/* Rule 5: a begin callback removes its own handler. */
static void test_rule5_remove_self_from_begin(void)
{
    AioContext *c = new_ctx();
    g_autoptr(GString) trace = g_string_new("");
    Rec a = { .ctx = c, .name = "a", .trace = trace,
              .on_begin = act_remove_self };
    Rec b = { .ctx = c, .name = "b", .trace = trace };

    rec_add(&a);
    rec_add(&b);
    aio_context_drained_begin(c);
    /* Its end runs at removal (rule 4), the walk goes on to b. */
    g_assert_cmpstr(trace->str, ==, "a+a-b+");
    aio_context_drained_end(c);
    g_assert_cmpstr(trace->str, ==, "a+a-b+b-");
    rec_remove(&b);
    aio_context_unref(c);
}

/* Rule 5: an end callback removes a handler the reverse walk has not hit. */
static void test_rule5_remove_from_end(void)
{
    AioContext *c = new_ctx();
    g_autoptr(GString) trace = g_string_new("");
    Rec a = { .ctx = c, .name = "a", .trace = trace };
    Rec b = { .ctx = c, .name = "b", .trace = trace,
              .on_end = act_remove_other, .other = &a };

    rec_add(&a);
    rec_add(&b);
    aio_context_drained_begin(c);
    aio_context_drained_end(c);
    /* a's end comes from its removal, and only once. */
    g_assert_cmpstr(trace->str, ==, "a+b+b-a-");
    g_assert_cmpint(a.ends, ==, 1);
    rec_remove(&b);
    aio_context_unref(c);
}

/* Rule 5: an end callback registers a handler: it must not begin. */
static void test_rule5_add_from_end(void)
{
    AioContext *c = new_ctx();
    g_autoptr(GString) trace = g_string_new("");
    Rec b = { .ctx = c, .name = "b", .trace = trace };
    Rec a = { .ctx = c, .name = "a", .trace = trace,
              .on_end = act_add_other, .other = &b };

    rec_add(&a);
    aio_context_drained_begin(c);
    aio_context_drained_end(c);
    g_assert_cmpstr(trace->str, ==, "a+a-");
    g_assert_cmpint(b.begins, ==, 0);
    aio_context_drained_begin(c);
    aio_context_drained_end(c);
    g_assert_cmpstr(trace->str, ==, "a+a-a+b+b-a-");
    rec_remove(&a);
    rec_remove(&b);
    aio_context_unref(c);
}

static void act_nested_begin(Rec *r)
{
    aio_context_drained_begin(r->ctx);
}

/* Rule 5 with nesting: an end callback starts a new section. */
static void test_rule5_begin_from_end(void)
{
    AioContext *c = new_ctx();
    g_autoptr(GString) trace = g_string_new("");
    Rec a = { .ctx = c, .name = "a", .trace = trace };
    Rec b = { .ctx = c, .name = "b", .trace = trace,
              .on_end = act_nested_begin };

    rec_add(&a);
    rec_add(&b);
    aio_context_drained_begin(c);
    aio_context_drained_end(c);
    /*
     * b's end re-drains the context: b begins again and the interrupted
     * end walk must not end a, which is still in the new section.
     */
    g_assert_cmpstr(trace->str, ==, "a+b+b-b+");
    g_assert_true(aio_context_is_drained(c));
    b.on_end = NULL;
    aio_context_drained_end(c);
    g_assert_cmpstr(trace->str, ==, "a+b+b-b+b-a-");
    rec_remove(&a);
    rec_remove(&b);
    aio_context_unref(c);
}

/* Rule 6: begin/end/poll callbacks must never poll. */
static void act_poll(Rec *r)
{
    aio_poll(r->ctx, false);
}

static void act_wait(Rec *r)
{
    AIO_WAIT_WHILE(r->ctx, false);
}

static void rule6_child(RecAction *on_begin, RecAction *on_end)
{
    AioContext *c = new_ctx();
    Rec r = { .ctx = c, .name = "r", .on_begin = on_begin,
              .on_end = on_end };

    rec_add(&r);
    aio_context_drained_begin(c);
    aio_context_drained_end(c);
    /* Only reached if the registry failed to catch the poll. */
    rec_remove(&r);
    aio_context_unref(c);
}

static void test_rule6_no_poll(void)
{
    if (g_test_subprocess()) {
        const char *mode = g_getenv("RULE6_MODE");

        if (g_strcmp0(mode, "begin") == 0) {
            rule6_child(act_poll, NULL);
        } else if (g_strcmp0(mode, "end") == 0) {
            rule6_child(NULL, act_poll);
        } else {
            rule6_child(act_wait, NULL);
        }
        exit(0);
    }

    g_setenv("RULE6_MODE", "begin", TRUE);
    g_test_trap_subprocess(NULL, 0, 0);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("*aio_drain_callback_depth*");

    g_setenv("RULE6_MODE", "end", TRUE);
    g_test_trap_subprocess(NULL, 0, 0);
    g_test_trap_assert_failed();

    g_setenv("RULE6_MODE", "wait", TRUE);
    g_test_trap_subprocess(NULL, 0, 0);
    g_test_trap_assert_failed();
    g_unsetenv("RULE6_MODE");
}

static void test_rule6_depth_outside(void)
{
    AioContext *c = new_ctx();
    Rec r = { .ctx = c, .name = "r" };

    /* Outside callbacks the depth is zero, so polling is allowed. */
    g_assert_cmpuint(aio_drain_callback_depth(), ==, 0);
    rec_add(&r);
    aio_context_drained_begin(c);
    g_assert_cmpuint(aio_drain_callback_depth(), ==, 0);
    g_assert_false(aio_poll(c, false));
    aio_context_drained_end(c);
    rec_remove(&r);
    aio_context_unref(c);
}

/* drain_all reaches every context, and contexts born inside it. */
static void test_drain_all(void)
{
    AioContext *c = new_ctx();
    AioContext *born;
    AioInFlightTag tag = aio_in_flight_tag("test-all");
    Rec r = { .ctx = c, .name = "r" };
    Rec b = { .name = "b" };

    rec_add(&r);
    aio_context_drain_all_begin();
    g_assert_cmpint(r.begins, ==, 1);
    g_assert_true(aio_context_is_drained(c));
    g_assert_true(aio_context_is_drained(qemu_get_aio_context()));

    born = new_ctx();
    g_assert_true(aio_context_is_drained(born));
    b.ctx = born;
    rec_add(&b);
    g_assert_cmpint(b.begins, ==, 1);

    g_assert_false(aio_context_drain_all_busy());
    aio_context_inc_in_flight(born, tag);
    g_assert_true(aio_context_drain_all_busy());
    aio_context_dec_in_flight(born, tag);

    aio_context_drain_all_end();
    g_assert_cmpint(r.ends, ==, 1);
    g_assert_cmpint(b.ends, ==, 1);
    g_assert_false(aio_context_is_drained(born));
    g_assert_false(aio_context_is_drained(c));

    rec_remove(&b);
    rec_remove(&r);
    aio_context_unref(born);
    aio_context_unref(c);
}

/* ---- In-flight tags ---- */

static void test_in_flight_tags(void)
{
    AioContext *c = new_ctx();
    AioInFlightTag req = aio_in_flight_tag("test-request");
    AioInFlightTag timer = aio_in_flight_tag("test-timer");
    AioInFlightTag unused = aio_in_flight_tag("test-unused");
    g_autoptr(GArray) tags = NULL;
    AioInFlightEntry *e;

    g_assert_cmpuint(aio_in_flight_tag("test-request"), ==, req);
    g_assert_cmpuint(req, !=, timer);
    g_assert_cmpstr(aio_in_flight_tag_name(timer), ==, "test-timer");

    aio_context_inc_in_flight(c, req);
    aio_context_inc_in_flight(c, timer);
    aio_context_inc_in_flight(c, req);
    g_assert_cmpuint(aio_context_in_flight(c), ==, 3);

    tags = aio_context_in_flight_tags(c);
    g_assert_cmpuint(tags->len, ==, 2);
    e = &g_array_index(tags, AioInFlightEntry, 0);
    g_assert_cmpstr(e->tag, ==, "test-request");
    g_assert_cmpuint(e->count, ==, 2);
    e = &g_array_index(tags, AioInFlightEntry, 1);
    g_assert_cmpstr(e->tag, ==, "test-timer");
    g_assert_cmpuint(e->count, ==, 1);
    g_clear_pointer(&tags, g_array_unref);

    aio_context_dec_in_flight(c, req);
    aio_context_dec_in_flight(c, req);
    tags = aio_context_in_flight_tags(c);
    g_assert_cmpuint(tags->len, ==, 1);
    g_assert_cmpstr(g_array_index(tags, AioInFlightEntry, 0).tag, ==,
                    "test-timer");
    aio_context_dec_in_flight(c, timer);
    g_assert_cmpuint(aio_context_in_flight(c), ==, 0);
    g_clear_pointer(&tags, g_array_unref);
    tags = aio_context_in_flight_tags(c);
    g_assert_cmpuint(tags->len, ==, 0);
    (void)unused;
    aio_context_unref(c);
}

/*
 * drained_busy truth table: in flight x drained x handler busy.  A
 * handler's poll only counts while it has begun.
 */
static void test_busy_truth_table(void)
{
    AioContext *c = new_ctx();
    AioInFlightTag tag = aio_in_flight_tag("test-busy");
    Rec r = { .ctx = c, .name = "r" };
    int in_flight, drained, busy;

    rec_add(&r);
    for (in_flight = 0; in_flight < 2; in_flight++) {
        for (drained = 0; drained < 2; drained++) {
            for (busy = 0; busy < 2; busy++) {
                bool expect = in_flight || (drained && busy);

                r.busy = busy;
                if (in_flight) {
                    aio_context_inc_in_flight(c, tag);
                }
                if (drained) {
                    aio_context_drained_begin(c);
                }
                g_assert_cmpint(aio_context_drained_busy(c), ==, expect);
                if (drained) {
                    aio_context_drained_end(c);
                }
                if (in_flight) {
                    aio_context_dec_in_flight(c, tag);
                }
            }
        }
    }
    rec_remove(&r);

    /* A handler without a poll callback is never busy. */
    {
        static const AioDrainOps no_poll = {
            .drained_begin = rec_begin,
            .drained_end = rec_end,
        };
        Rec q = { .ctx = c, .name = "q" };
        AioDrainHandler *h = aio_context_add_drain_ops(c, &no_poll, &q);

        aio_context_drained_begin(c);
        g_assert_false(aio_context_drained_busy(c));
        aio_context_drained_end(c);
        aio_context_remove_drain_ops(h);
    }
    aio_context_unref(c);
}

/* ---- Waiting across threads ---- */

typedef struct ThreadWork {
    AioContext *ctx;
    AioInFlightTag tag;
    Rec *rec;
} ThreadWork;

static void finish_request_bh(void *opaque)
{
    ThreadWork *w = opaque;

    aio_context_dec_in_flight(w->ctx, w->tag);
}

static void begin_busy_bh(void *opaque)
{
    ThreadWork *w = opaque;

    /* The owner becomes idle in its thread and kicks the waiter. */
    qatomic_set(&w->rec->busy, false);
    aio_wait_kick();
}

static void test_wait_iothread_in_flight(void)
{
    IOThread *t = iothread_create("drain", NULL);
    AioContext *io_ctx = iothread_get_aio_context(t);
    ThreadWork w = { .ctx = io_ctx, .tag = aio_in_flight_tag("test-io") };
    QEMUTimer *timer;
    bool waited;

    /* A request in the iothread completes 20 ms from now. */
    aio_context_inc_in_flight(io_ctx, w.tag);
    timer = aio_timer_new(io_ctx, QEMU_CLOCK_REALTIME, SCALE_MS,
                          finish_request_bh, &w);
    timer_mod(timer, qemu_clock_get_ms(QEMU_CLOCK_REALTIME) + 20);

    aio_context_drained_begin(io_ctx);
    waited = AIO_WAIT_WHILE(io_ctx, aio_context_drained_busy(io_ctx));
    g_assert_true(waited);
    g_assert_cmpuint(aio_context_in_flight(io_ctx), ==, 0);
    aio_context_drained_end(io_ctx);

    timer_free(timer);
    iothread_destroy(t);
}

static void test_wait_iothread_handler_busy(void)
{
    IOThread *t = iothread_create("drain-busy", NULL);
    AioContext *io_ctx = iothread_get_aio_context(t);
    Rec r = { .ctx = io_ctx, .name = "r", .busy = true };
    ThreadWork w = { .ctx = io_ctx, .rec = &r };
    QEMUTimer *timer;

    rec_add(&r);
    timer = aio_timer_new(io_ctx, QEMU_CLOCK_REALTIME, SCALE_MS,
                          begin_busy_bh, &w);
    timer_mod(timer, qemu_clock_get_ms(QEMU_CLOCK_REALTIME) + 20);

    aio_context_drained_begin(io_ctx);
    AIO_WAIT_WHILE(io_ctx, aio_context_drained_busy(io_ctx));
    g_assert_false(qatomic_read(&r.busy));
    g_assert_cmpint(r.polls, >, 0);
    aio_context_drained_end(io_ctx);
    g_assert_cmpint(r.ends, ==, 1);

    rec_remove(&r);
    timer_free(timer);
    iothread_destroy(t);
}

static void test_wait_own_context(void)
{
    AioContext *c = qemu_get_aio_context();
    ThreadWork w = { .ctx = c, .tag = aio_in_flight_tag("test-own") };
    bool waited;

    aio_context_inc_in_flight(c, w.tag);
    aio_bh_schedule_oneshot(c, finish_request_bh, &w);
    aio_context_drained_begin(c);
    /* In its own thread the drain polls the context itself. */
    waited = AIO_WAIT_WHILE(c, aio_context_drained_busy(c));
    g_assert_true(waited);
    aio_context_drained_end(c);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_assert_true(qemu_init_main_loop(NULL));

    g_test_add_func("/drain-registry/rule1/nesting", test_rule1_nesting);
    g_test_add_func("/drain-registry/rule2/order", test_rule2_order);
    g_test_add_func("/drain-registry/rule3/end-iff-begin",
                    test_rule3_end_iff_begin);
    g_test_add_func("/drain-registry/rule4/add-remove-while-drained",
                    test_rule4_add_remove_while_drained);
    g_test_add_func("/drain-registry/rule5/add-from-begin",
                    test_rule5_add_from_begin);
    g_test_add_func("/drain-registry/rule5/remove-later-from-begin",
                    test_rule5_remove_later_from_begin);
    g_test_add_func("/drain-registry/rule5/remove-self-from-begin",
                    test_rule5_remove_self_from_begin);
    g_test_add_func("/drain-registry/rule5/remove-from-end",
                    test_rule5_remove_from_end);
    g_test_add_func("/drain-registry/rule5/add-from-end",
                    test_rule5_add_from_end);
    g_test_add_func("/drain-registry/rule5/begin-from-end",
                    test_rule5_begin_from_end);
    g_test_add_func("/drain-registry/rule6/no-poll", test_rule6_no_poll);
    g_test_add_func("/drain-registry/rule6/depth-outside",
                    test_rule6_depth_outside);
    g_test_add_func("/drain-registry/drain-all", test_drain_all);
    g_test_add_func("/drain-registry/in-flight/tags", test_in_flight_tags);
    g_test_add_func("/drain-registry/busy/truth-table",
                    test_busy_truth_table);
    g_test_add_func("/drain-registry/wait/iothread-in-flight",
                    test_wait_iothread_in_flight);
    g_test_add_func("/drain-registry/wait/iothread-handler-busy",
                    test_wait_iothread_handler_busy);
    g_test_add_func("/drain-registry/wait/own-context",
                    test_wait_own_context);
    return g_test_run();
}
