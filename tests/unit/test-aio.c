/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * AioContext tests: bottom halves, event notifiers, fd handlers, timers,
 * the GSource, cross-thread wake-ups and coroutine hand-over.
 *
 * Copyright (c) 2026 The Sluice authors
 */
#include "qemu/osdep.h"

#include "block/aio.h"
#include "block/aio-wait.h"
#include "qemu/coroutine.h"
#include "qemu/iothread.h"
#include "qemu/main-loop.h"

static AioContext *ctx;

/* Run every pending callback without blocking. */
static void drain_pending(void)
{
    while (aio_poll(ctx, false)) {
        /* nothing */
    }
}

/* ---- Bottom halves ---- */

typedef struct BHData {
    QEMUBH *bh;
    int n;
    int max;                    /* reschedule itself until n == max */
    bool delete_self;
    QEMUBH *victim;             /* deleted from the callback */
    GString *trace;
    char name;
} BHData;

static void bh_cb(void *opaque)
{
    BHData *d = opaque;

    d->n++;
    if (d->trace) {
        g_string_append_c(d->trace, d->name);
    }
    if (d->victim) {
        qemu_bh_delete(d->victim);
        d->victim = NULL;
    }
    if (d->n < d->max) {
        qemu_bh_schedule(d->bh);
    }
    if (d->delete_self) {
        qemu_bh_delete(d->bh);
        d->bh = NULL;
    }
}

static void test_bh_schedule(void)
{
    BHData d = { .n = 0 };

    d.bh = aio_bh_new(ctx, bh_cb, &d);
    g_assert_false(aio_poll(ctx, false));
    qemu_bh_schedule(d.bh);
    g_assert_true(qemu_bh_scheduled(d.bh));
    g_assert_cmpint(d.n, ==, 0);
    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpint(d.n, ==, 1);
    g_assert_false(qemu_bh_scheduled(d.bh));
    g_assert_false(aio_poll(ctx, false));
    g_assert_cmpint(d.n, ==, 1);
    qemu_bh_delete(d.bh);
    drain_pending();
}

static void test_bh_schedule_twice(void)
{
    BHData d = { .n = 0 };

    d.bh = aio_bh_new(ctx, bh_cb, &d);
    qemu_bh_schedule(d.bh);
    qemu_bh_schedule(d.bh);
    drain_pending();
    g_assert_cmpint(d.n, ==, 1);
    qemu_bh_delete(d.bh);
    drain_pending();
}

static void test_bh_reschedule_from_cb(void)
{
    BHData d = { .max = 3 };

    d.bh = aio_bh_new(ctx, bh_cb, &d);
    qemu_bh_schedule(d.bh);
    /* A BH scheduling itself runs once per dispatch, not in a loop. */
    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpint(d.n, ==, 1);
    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpint(d.n, ==, 2);
    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpint(d.n, ==, 3);
    g_assert_false(aio_poll(ctx, false));
    qemu_bh_delete(d.bh);
    drain_pending();
}

static void test_bh_cancel(void)
{
    BHData d = { .n = 0 };

    d.bh = aio_bh_new(ctx, bh_cb, &d);
    qemu_bh_schedule(d.bh);
    qemu_bh_cancel(d.bh);
    g_assert_false(qemu_bh_scheduled(d.bh));
    drain_pending();
    g_assert_cmpint(d.n, ==, 0);

    /* A cancelled BH can be scheduled again. */
    qemu_bh_schedule(d.bh);
    drain_pending();
    g_assert_cmpint(d.n, ==, 1);
    qemu_bh_delete(d.bh);
    drain_pending();
}

static void test_bh_delete(void)
{
    BHData d = { .n = 0 };

    d.bh = aio_bh_new(ctx, bh_cb, &d);
    qemu_bh_schedule(d.bh);
    qemu_bh_delete(d.bh);
    drain_pending();
    g_assert_cmpint(d.n, ==, 0);
}

static void test_bh_delete_self(void)
{
    BHData d = { .delete_self = true };

    d.bh = aio_bh_new(ctx, bh_cb, &d);
    qemu_bh_schedule(d.bh);
    drain_pending();
    g_assert_cmpint(d.n, ==, 1);
    g_assert_null(d.bh);
}

static void test_bh_delete_other(void)
{
    BHData a = { .name = 'a' };
    BHData b = { .name = 'b' };

    a.bh = aio_bh_new(ctx, bh_cb, &a);
    b.bh = aio_bh_new(ctx, bh_cb, &b);
    a.victim = b.bh;
    /* b is queued behind a; a deletes it before its turn. */
    qemu_bh_schedule(a.bh);
    qemu_bh_schedule(b.bh);
    drain_pending();
    g_assert_cmpint(a.n, ==, 1);
    g_assert_cmpint(b.n, ==, 0);
    qemu_bh_delete(a.bh);
    drain_pending();
}

static void oneshot_cb(void *opaque)
{
    int *n = opaque;

    (*n)++;
}

static void test_bh_oneshot(void)
{
    int n = 0;

    aio_bh_schedule_oneshot(ctx, oneshot_cb, &n);
    aio_bh_schedule_oneshot(ctx, oneshot_cb, &n);
    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpint(n, ==, 2);
    g_assert_false(aio_poll(ctx, false));
}

static void test_bh_order(void)
{
    g_autoptr(GString) trace = g_string_new("");
    BHData d[4];
    int i;

    for (i = 0; i < 4; i++) {
        d[i] = (BHData) { .trace = trace, .name = 'a' + i };
        d[i].bh = aio_bh_new(ctx, bh_cb, &d[i]);
    }
    qemu_bh_schedule(d[2].bh);
    qemu_bh_schedule(d[0].bh);
    qemu_bh_schedule(d[3].bh);
    qemu_bh_schedule(d[1].bh);
    drain_pending();
    g_assert_cmpstr(trace->str, ==, "cadb");
    for (i = 0; i < 4; i++) {
        qemu_bh_delete(d[i].bh);
    }
    drain_pending();
}

typedef struct NestedData {
    GString *trace;
    QEMUBH *late;
} NestedData;

static void nested_outer_cb(void *opaque)
{
    NestedData *nd = opaque;

    g_string_append_c(nd->trace, 'A');
    /* Schedule one more, then poll from inside the callback. */
    qemu_bh_schedule(nd->late);
    while (aio_poll(ctx, false)) {
        /* nothing */
    }
    g_string_append_c(nd->trace, 'a');
}

static void nested_trace_cb(void *opaque)
{
    NestedData *nd = opaque;

    g_string_append_c(nd->trace, 'x');
}

static void nested_late_cb(void *opaque)
{
    NestedData *nd = opaque;

    g_string_append_c(nd->trace, 'L');
}

static void test_bh_nested_poll(void)
{
    g_autoptr(GString) trace = g_string_new("");
    NestedData nd = { .trace = trace };
    QEMUBH *outer = aio_bh_new(ctx, nested_outer_cb, &nd);
    QEMUBH *x1 = aio_bh_new(ctx, nested_trace_cb, &nd);
    QEMUBH *x2 = aio_bh_new(ctx, nested_trace_cb, &nd);

    nd.late = aio_bh_new(ctx, nested_late_cb, &nd);
    qemu_bh_schedule(outer);
    qemu_bh_schedule(x1);
    qemu_bh_schedule(x2);
    drain_pending();
    /*
     * The nested poll finishes the outer batch (x, x) in order before the
     * BH scheduled later (L); nothing runs twice.
     */
    g_assert_cmpstr(trace->str, ==, "AxxLa");
    qemu_bh_delete(outer);
    qemu_bh_delete(x1);
    qemu_bh_delete(x2);
    qemu_bh_delete(nd.late);
    drain_pending();
}

/* ---- Event notifiers and fd handlers ---- */

typedef struct NotifierData {
    EventNotifier e;
    int n;
    bool remove_self;
} NotifierData;

static void notifier_cb(EventNotifier *e)
{
    NotifierData *d = container_of(e, NotifierData, e);

    g_assert_true(event_notifier_test_and_clear(e));
    d->n++;
    if (d->remove_self) {
        aio_set_event_notifier(ctx, e, NULL);
    }
}

static void test_event_notifier(void)
{
    NotifierData d = { .n = 0 };

    g_assert_cmpint(event_notifier_init(&d.e, false), ==, 0);
    aio_set_event_notifier(ctx, &d.e, notifier_cb);
    g_assert_false(aio_poll(ctx, false));
    g_assert_cmpint(d.n, ==, 0);

    event_notifier_set(&d.e);
    event_notifier_set(&d.e);
    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpint(d.n, ==, 1);
    g_assert_false(aio_poll(ctx, false));

    /* Blocking poll returns once the notifier is set. */
    event_notifier_set(&d.e);
    g_assert_true(aio_poll(ctx, true));
    g_assert_cmpint(d.n, ==, 2);

    aio_set_event_notifier(ctx, &d.e, NULL);
    event_notifier_set(&d.e);
    g_assert_false(aio_poll(ctx, false));
    g_assert_cmpint(d.n, ==, 2);
    event_notifier_cleanup(&d.e);
}

static void test_event_notifier_remove_self(void)
{
    NotifierData d = { .remove_self = true };

    g_assert_cmpint(event_notifier_init(&d.e, true), ==, 0);
    aio_set_event_notifier(ctx, &d.e, notifier_cb);
    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpint(d.n, ==, 1);
    event_notifier_set(&d.e);
    g_assert_false(aio_poll(ctx, false));
    g_assert_cmpint(d.n, ==, 1);
    event_notifier_cleanup(&d.e);
}

typedef struct PipeData {
    int fds[2];
    int reads;
    int writes;
    char buf[16];
} PipeData;

static void pipe_read_cb(void *opaque)
{
    PipeData *p = opaque;

    g_assert_cmpint(read(p->fds[0], p->buf, sizeof(p->buf)), >, 0);
    p->reads++;
}

static void pipe_write_cb(void *opaque)
{
    PipeData *p = opaque;

    p->writes++;
    /* Writable forever: stop watching after the first call. */
    aio_set_fd_handler(ctx, p->fds[1], NULL, NULL, NULL);
}

static void test_fd_handler(void)
{
    PipeData p = { .reads = 0 };

    g_assert_cmpint(pipe2(p.fds, O_NONBLOCK), ==, 0);
    aio_set_fd_handler(ctx, p.fds[0], pipe_read_cb, NULL, &p);
    aio_set_fd_handler(ctx, p.fds[1], NULL, pipe_write_cb, &p);

    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpint(p.writes, ==, 1);
    g_assert_cmpint(p.reads, ==, 0);
    g_assert_false(aio_poll(ctx, false));

    g_assert_cmpint(write(p.fds[1], "x", 1), ==, 1);
    g_assert_true(aio_poll(ctx, true));
    g_assert_cmpint(p.reads, ==, 1);
    g_assert_cmpint(p.buf[0], ==, 'x');

    /* Replacing the callbacks of a watched fd. */
    aio_set_fd_handler(ctx, p.fds[0], pipe_read_cb, NULL, &p);
    g_assert_cmpint(write(p.fds[1], "y", 1), ==, 1);
    g_assert_true(aio_poll(ctx, true));
    g_assert_cmpint(p.reads, ==, 2);

    aio_set_fd_handler(ctx, p.fds[0], NULL, NULL, NULL);
    g_assert_cmpint(write(p.fds[1], "z", 1), ==, 1);
    g_assert_false(aio_poll(ctx, false));
    g_assert_cmpint(p.reads, ==, 2);
    close(p.fds[0]);
    close(p.fds[1]);
}

/* ---- Timers ---- */

typedef struct TimerData {
    QEMUTimer timer;
    GString *trace;
    char name;
    int n;
    int64_t fired_at;
    int rearm;                  /* re-arm this many more times, +1 ms */
} TimerData;

static void timer_cb(void *opaque)
{
    TimerData *t = opaque;

    t->n++;
    t->fired_at = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
    if (t->trace) {
        g_string_append_c(t->trace, t->name);
    }
    if (t->rearm > 0) {
        t->rearm--;
        timer_mod(&t->timer, qemu_clock_get_ms(QEMU_CLOCK_REALTIME) + 1);
    }
}

static void test_timer_order(void)
{
    g_autoptr(GString) trace = g_string_new("");
    TimerData t[3];
    int64_t now = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
    int i;

    for (i = 0; i < 3; i++) {
        t[i] = (TimerData) { .trace = trace, .name = 'a' + i };
        aio_timer_init(ctx, &t[i].timer, QEMU_CLOCK_REALTIME, SCALE_NS,
                       timer_cb, &t[i]);
    }
    timer_mod_ns(&t[0].timer, now + 30 * SCALE_MS);
    timer_mod_ns(&t[1].timer, now + 10 * SCALE_MS);
    timer_mod_ns(&t[2].timer, now + 20 * SCALE_MS);
    g_assert_true(timer_pending(&t[1].timer));
    g_assert_cmpint(timer_expire_time_ns(&t[1].timer), ==,
                    now + 10 * SCALE_MS);

    while (trace->len < 3) {
        aio_poll(ctx, true);
    }
    g_assert_cmpstr(trace->str, ==, "bca");
    for (i = 0; i < 3; i++) {
        g_assert_false(timer_pending(&t[i].timer));
        g_assert_cmpint(t[i].fired_at, >=, now + (10 + 10 * ((i + 2) % 3)) *
                        SCALE_MS);
    }
}

static void test_timer_deadline(void)
{
    TimerData t = { .n = 0 };
    int64_t start = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
    int64_t end;

    aio_timer_init(ctx, &t.timer, QEMU_CLOCK_REALTIME, SCALE_MS, timer_cb,
                   &t);
    timer_mod(&t.timer, qemu_clock_get_ms(QEMU_CLOCK_REALTIME) + 20);

    /* Nothing else can wake the poll: only the deadline ends the sleep. */
    g_assert_false(aio_poll(ctx, false));
    while (t.n == 0) {
        aio_poll(ctx, true);
    }
    end = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
    g_assert_cmpint(end - start, >=, 19 * SCALE_MS);
    g_assert_cmpint(end - start, <, 5 * NANOSECONDS_PER_SECOND);
}

static void test_timer_del_and_rearm(void)
{
    TimerData t = { .rearm = 2 };
    TimerData never = { .n = 0 };

    aio_timer_init(ctx, &t.timer, QEMU_CLOCK_REALTIME, SCALE_MS, timer_cb,
                   &t);
    aio_timer_init(ctx, &never.timer, QEMU_CLOCK_REALTIME, SCALE_MS,
                   timer_cb, &never);
    timer_mod(&never.timer, qemu_clock_get_ms(QEMU_CLOCK_REALTIME) + 1);
    timer_del(&never.timer);
    g_assert_false(timer_pending(&never.timer));

    timer_mod(&t.timer, qemu_clock_get_ms(QEMU_CLOCK_REALTIME) + 1);
    while (t.n < 3) {
        aio_poll(ctx, true);
    }
    g_assert_false(timer_pending(&t.timer));
    g_usleep(3000);
    drain_pending();
    g_assert_cmpint(t.n, ==, 3);
    g_assert_cmpint(never.n, ==, 0);
}

static void test_timer_new_free(void)
{
    int n = 0;
    QEMUTimer *ts = aio_timer_new(ctx, QEMU_CLOCK_REALTIME, SCALE_US,
                                  oneshot_cb, &n);

    timer_mod(ts, qemu_clock_get_us(QEMU_CLOCK_REALTIME) + 100);
    while (n == 0) {
        aio_poll(ctx, true);
    }
    timer_mod(ts, qemu_clock_get_us(QEMU_CLOCK_REALTIME) + 100);
    timer_free(ts);
    g_usleep(500);
    drain_pending();
    g_assert_cmpint(n, ==, 1);
}

/* ---- GSource ---- */

static void quit_loop_cb(void *opaque)
{
    g_main_loop_quit(opaque);
}

static void test_gsource(void)
{
    GMainLoop *loop = g_main_loop_new(NULL, FALSE);
    QEMUTimer *ts;
    int n = 0;

    /* BHs of the main context run from GLib's own iteration. */
    aio_bh_schedule_oneshot(ctx, oneshot_cb, &n);
    while (g_main_context_iteration(NULL, FALSE)) {
        /* nothing */
    }
    g_assert_cmpint(n, ==, 1);

    /* A timer bounds GLib's poll timeout and ends the main loop. */
    ts = aio_timer_new(ctx, QEMU_CLOCK_REALTIME, SCALE_MS, quit_loop_cb,
                       loop);
    timer_mod(ts, qemu_clock_get_ms(QEMU_CLOCK_REALTIME) + 10);
    g_main_loop_run(loop);
    g_assert_false(timer_pending(ts));
    timer_free(ts);
    g_main_loop_unref(loop);
}

static gpointer schedule_later_thread(gpointer opaque)
{
    g_usleep(20 * 1000);
    aio_bh_schedule_oneshot(ctx, oneshot_cb, opaque);
    return NULL;
}

static void test_gsource_cross_thread_wake(void)
{
    int n = 0;
    GThread *t = g_thread_new("waker", schedule_later_thread, &n);

    /* Blocks in GLib's poll until the other thread's BH wakes it. */
    while (n == 0) {
        g_main_context_iteration(NULL, TRUE);
    }
    g_thread_join(t);
}

/* ---- Cross-thread ---- */

static void test_poll_nonblocking_idle(void)
{
    int64_t start = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);

    g_assert_false(aio_poll(ctx, false));
    g_assert_cmpint(qemu_clock_get_ns(QEMU_CLOCK_REALTIME) - start, <,
                    NANOSECONDS_PER_SECOND);
}

static void test_wakeup_from_thread(void)
{
    int n = 0;
    GThread *t = g_thread_new("waker", schedule_later_thread, &n);

    while (n == 0) {
        aio_poll(ctx, true);
    }
    g_thread_join(t);
}

typedef struct TimerThreadData {
    QEMUTimer *ts;
} TimerThreadData;

static gpointer arm_timer_thread(gpointer opaque)
{
    TimerThreadData *d = opaque;

    g_usleep(20 * 1000);
    timer_mod(d->ts, qemu_clock_get_ms(QEMU_CLOCK_REALTIME) + 5);
    return NULL;
}

static void test_timer_armed_from_thread(void)
{
    int n = 0;
    TimerThreadData d;
    GThread *t;

    d.ts = aio_timer_new(ctx, QEMU_CLOCK_REALTIME, SCALE_MS, oneshot_cb, &n);
    t = g_thread_new("arm", arm_timer_thread, &d);
    /* The sleep had no deadline; arming must shorten it. */
    while (n == 0) {
        aio_poll(ctx, true);
    }
    g_thread_join(t);
    timer_free(d.ts);
}

typedef struct CoHomeData {
    AioContext *expect_ctx;
    GThread *expect_thread;
    bool done;
    bool ok;
} CoHomeData;

static void coroutine_fn co_home_entry(void *opaque)
{
    CoHomeData *d = opaque;

    d->ok = qemu_get_current_aio_context() == d->expect_ctx &&
            (!d->expect_thread || g_thread_self() == d->expect_thread);
    qatomic_store_release(&d->done, true);
    aio_wait_kick();
}

static void iothread_self_bh(void *opaque)
{
    GThread **t = opaque;

    *t = g_thread_self();
    aio_wait_kick();
}

static void test_iothread_bh(void)
{
    IOThread *iothread = iothread_create("test", NULL);
    AioContext *io_ctx = iothread_get_aio_context(iothread);
    GThread *ran_in = NULL;

    g_assert_nonnull(iothread);
    g_assert_cmpstr(iothread_get_id(iothread), ==, "test");
    aio_bh_schedule_oneshot(io_ctx, iothread_self_bh, &ran_in);
    AIO_WAIT_WHILE(io_ctx, qatomic_load_acquire(&ran_in) == NULL);
    g_assert_true(ran_in != g_thread_self());
    iothread_destroy(iothread);
}

static GThread *iothread_thread(AioContext *io_ctx)
{
    GThread *t = NULL;

    aio_bh_schedule_oneshot(io_ctx, iothread_self_bh, &t);
    AIO_WAIT_WHILE(io_ctx, qatomic_load_acquire(&t) == NULL);
    return t;
}

static void test_co_enter_foreign_thread(void)
{
    IOThread *iothread = iothread_create("co", NULL);
    AioContext *io_ctx = iothread_get_aio_context(iothread);
    CoHomeData d = {
        .expect_ctx = io_ctx,
        .expect_thread = iothread_thread(io_ctx),
    };
    Coroutine *co = qemu_coroutine_create(co_home_entry, &d);

    /* Entered from the main thread, it must run in the iothread. */
    aio_co_enter(io_ctx, co);
    AIO_WAIT_WHILE(io_ctx, !qatomic_load_acquire(&d.done));
    g_assert_true(d.ok);
    iothread_destroy(iothread);
}

static void test_co_schedule_local(void)
{
    CoHomeData d = { .expect_ctx = ctx };
    Coroutine *co = qemu_coroutine_create(co_home_entry, &d);

    aio_co_schedule(ctx, co);
    g_assert_false(d.done);
    AIO_WAIT_WHILE(ctx, !d.done);
    g_assert_true(d.ok);
}

static void test_co_schedule_twice_aborts(void)
{
    if (g_test_subprocess()) {
        CoHomeData d = { .expect_ctx = ctx };
        Coroutine *co = qemu_coroutine_create(co_home_entry, &d);

        aio_co_schedule(ctx, co);
        aio_co_schedule(ctx, co);
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("*already scheduled*");
}

typedef struct RescheduleData {
    AioContext *target;
    GThread *target_thread;
    bool moved;
    bool back;
    bool done;
} RescheduleData;

static void coroutine_fn co_reschedule_entry(void *opaque)
{
    RescheduleData *d = opaque;

    aio_co_reschedule_self(d->target);
    d->moved = qemu_get_current_aio_context() == d->target &&
               g_thread_self() == d->target_thread;
    aio_co_reschedule_self(qemu_get_aio_context());
    d->back = qemu_in_main_thread();
    d->done = true;
}

static void test_co_reschedule_self(void)
{
    IOThread *iothread = iothread_create("resched", NULL);
    AioContext *io_ctx = iothread_get_aio_context(iothread);
    RescheduleData d = {
        .target = io_ctx,
        .target_thread = iothread_thread(io_ctx),
    };

    qemu_coroutine_enter(qemu_coroutine_create(co_reschedule_entry, &d));
    AIO_WAIT_WHILE(ctx, !d.done);
    g_assert_true(d.moved);
    g_assert_true(d.back);
    iothread_destroy(iothread);
}

static void test_context_new_unref(void)
{
    GError *err = NULL;
    AioContext *c = aio_context_new(&err);
    int n = 0;

    g_assert_no_error(err);
    aio_bh_schedule_oneshot(c, oneshot_cb, &n);
    g_assert_true(aio_poll(c, false));
    g_assert_cmpint(n, ==, 1);
    /* Pending work is freed with the context, not run. */
    aio_bh_schedule_oneshot(c, oneshot_cb, &n);
    aio_context_unref(c);
    g_assert_cmpint(n, ==, 1);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_assert_true(qemu_init_main_loop(NULL));
    ctx = qemu_get_aio_context();

    g_test_add_func("/aio/bh/schedule", test_bh_schedule);
    g_test_add_func("/aio/bh/schedule-twice", test_bh_schedule_twice);
    g_test_add_func("/aio/bh/reschedule-from-cb", test_bh_reschedule_from_cb);
    g_test_add_func("/aio/bh/cancel", test_bh_cancel);
    g_test_add_func("/aio/bh/delete", test_bh_delete);
    g_test_add_func("/aio/bh/delete-self", test_bh_delete_self);
    g_test_add_func("/aio/bh/delete-other", test_bh_delete_other);
    g_test_add_func("/aio/bh/oneshot", test_bh_oneshot);
    g_test_add_func("/aio/bh/order", test_bh_order);
    g_test_add_func("/aio/bh/nested-poll", test_bh_nested_poll);
    g_test_add_func("/aio/event-notifier/basic", test_event_notifier);
    g_test_add_func("/aio/event-notifier/remove-self",
                    test_event_notifier_remove_self);
    g_test_add_func("/aio/fd-handler", test_fd_handler);
    g_test_add_func("/aio/timer/order", test_timer_order);
    g_test_add_func("/aio/timer/deadline", test_timer_deadline);
    g_test_add_func("/aio/timer/del-and-rearm", test_timer_del_and_rearm);
    g_test_add_func("/aio/timer/new-free", test_timer_new_free);
    g_test_add_func("/aio/timer/armed-from-thread",
                    test_timer_armed_from_thread);
    g_test_add_func("/aio/gsource/dispatch", test_gsource);
    g_test_add_func("/aio/gsource/cross-thread-wake",
                    test_gsource_cross_thread_wake);
    g_test_add_func("/aio/poll/nonblocking-idle", test_poll_nonblocking_idle);
    g_test_add_func("/aio/poll/wakeup-from-thread", test_wakeup_from_thread);
    g_test_add_func("/aio/context/new-unref", test_context_new_unref);
    g_test_add_func("/aio/iothread/bh", test_iothread_bh);
    g_test_add_func("/aio/co/enter-foreign-thread",
                    test_co_enter_foreign_thread);
    g_test_add_func("/aio/co/schedule-local", test_co_schedule_local);
    g_test_add_func("/aio/co/schedule-twice-aborts",
                    test_co_schedule_twice_aborts);
    g_test_add_func("/aio/co/reschedule-self", test_co_reschedule_self);
    return g_test_run();
}
