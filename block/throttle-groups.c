/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Throttle groups: shared limits, round-robin between members, drain
 * handlers that release queued requests, and the "throttle-group"
 * user-creatable object.
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * How a request gets through (see also docs/devel/throttle.md):
 *
 * Per direction, a group is either idle, or "releasing" (one released
 * request has not started yet: the baton), or "armed" (its timer will
 * release one).  A request passes at once only if the group is idle in
 * its direction, its member has nothing queued there and the limits
 * allow it.  Otherwise it queues, and whoever changes the picture
 * (a request that starts, the timer, a drain, a member leaving, new
 * limits) calls throttle_group_schedule_next(), which keeps this
 * invariant: while a member that is not drained has a waiting request,
 * the group is releasing or armed in that direction.
 *
 * A release is a count in the member plus its kick BH, because only the
 * member's home thread touches its CoQueue; the timer runs in the main
 * context and drain callbacks run in whichever thread drains.
 *
 * Lock order: the registry's drain lock, then a member's lock, then its
 * group's lock.  None is held across a yield.
 */
#include "qemu/osdep.h"

#include "block/aio-wait.h"
#include "block/throttle-groups.h"
#include "qemu/coroutine.h"
#include "qemu/main-loop.h"
#include "qemu/object.h"

struct ThrottleGroup {
    char *name;
    int refcnt;                 /* atomic */

    /* Protects everything below, and the members' group-side state. */
    GMutex lock;
    ThrottleState ts;
    QTAILQ_HEAD(, ThrottleGroupMember) members;
    unsigned int member_count;

    /* Per direction ([0] reads, [1] writes). */
    ThrottleGroupMember *token[2];      /* last member served */
    ThrottleGroupMember *baton[2];      /* released, not started yet */
    bool armed[2];                      /* the timer will release one */
    ThrottleGroupMember *timer_member[2];   /* whom it was armed for */
    AioContext *timer_ctx[2];       /* where that is counted in flight */
    int64_t deadline[2];            /* when it is due, while armed */
    QEMUTimer timers[2];            /* in the main context */

    /* Tests keep time themselves (throttle_group_set_virtual_clock()). */
    bool virtual_clock;
    int64_t virtual_now;
};

typedef enum ThrottleRelease {
    THROTTLE_RELEASE_DRAIN,
    THROTTLE_RELEASE_LEAVE,
} ThrottleRelease;

static AioInFlightTag throttle_timer_tag(void)
{
    static gsize once;
    static AioInFlightTag tag;

    if (g_once_init_enter(&once)) {
        tag = aio_in_flight_tag("throttle-timer");
        g_once_init_leave(&once, 1);
    }
    return tag;
}

static AioInFlightTag throttle_release_tag(void)
{
    static gsize once;
    static AioInFlightTag tag;

    if (g_once_init_enter(&once)) {
        tag = aio_in_flight_tag("throttle-release");
        g_once_init_leave(&once, 1);
    }
    return tag;
}

/*
 * Have @m's kick BH run.  A scheduled kick counts in flight until its
 * callback has finished with @m, or a drain that saw the released
 * requests complete could return (and free @m) while the callback still
 * runs in @m's thread.
 */
static void tgm_kick(ThrottleGroupMember *m)
{
    if (!qatomic_xchg(&m->kick_pending, true)) {
        aio_context_inc_in_flight(m->ctx, throttle_release_tag());
        qemu_bh_schedule(m->kick_bh);
    }
}

/* Drop a kick that will not run (its BH is being deleted). */
static void tgm_kick_cancel(ThrottleGroupMember *m)
{
    if (qatomic_xchg(&m->kick_pending, false)) {
        aio_context_dec_in_flight(m->ctx, throttle_release_tag());
    }
}

/* The time on @tg's clock.  Group lock held (or no member yet). */
static int64_t throttle_group_now(ThrottleGroup *tg)
{
    if (tg->virtual_clock) {
        return tg->virtual_now;
    }
    return qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
}

/* ---- Releasing requests (group lock held) ---- */

/*
 * The next member to serve in direction @dir: the first after the last
 * one served that has a waiting request, that one itself last.
 */
static ThrottleGroupMember *throttle_group_pick_next(ThrottleGroup *tg,
                                                     int dir)
{
    ThrottleGroupMember *start, *m;

    start = tg->token[dir] ? QTAILQ_NEXT(tg->token[dir], link) : NULL;
    if (!start) {
        start = QTAILQ_FIRST(&tg->members);
    }
    m = start;
    while (m) {
        /*
         * A drained member has nothing waiting, except for requests that
         * came in after its context's section ended and before its own
         * end callback ran: they are throttled like any other.
         */
        if (m->waiting[dir]) {
            return m;
        }
        m = QTAILQ_NEXT(m, link) ?: QTAILQ_FIRST(&tg->members);
        if (m == start) {
            break;
        }
    }
    return NULL;
}

/* Move @n waiting requests of @m to released and kick its home thread. */
static void throttle_group_release(ThrottleGroupMember *m, int dir,
                                   unsigned int n)
{
    assert(m->waiting[dir] >= n);
    m->waiting[dir] -= n;
    qatomic_add(&m->granted[dir], n);
    tgm_kick(m);
}

/* Disarm the timer of @dir, which was counted in flight somewhere. */
static void throttle_group_disarm(ThrottleGroup *tg, int dir)
{
    assert(tg->armed[dir]);
    timer_del(&tg->timers[dir]);
    tg->armed[dir] = false;
    tg->timer_member[dir] = NULL;
    aio_context_dec_in_flight(tg->timer_ctx[dir], throttle_timer_tag());
    tg->timer_ctx[dir] = NULL;
}

/*
 * Release the next waiting request of @dir if the limits allow it now,
 * or arm the timer for when they will.  Nothing to do while a release
 * is already under way.
 */
static void throttle_group_schedule_next(ThrottleGroup *tg, int dir,
                                         bool from_timer)
{
    ThrottleGroupMember *next;
    int64_t now, wait;

    if (tg->armed[dir] || tg->baton[dir]) {
        return;
    }
    next = throttle_group_pick_next(tg, dir);
    if (!next) {
        return;
    }
    now = throttle_group_now(tg);
    wait = throttle_compute_wait(&tg->ts, dir, now);
    if (wait == 0) {
        if (from_timer) {
            next->stats.granted_by_timer[dir]++;
        } else {
            next->stats.granted_at_once[dir]++;
        }
        tg->baton[dir] = next;
        tg->token[dir] = next;
        throttle_group_release(next, dir, 1);
        return;
    }
    tg->armed[dir] = true;
    tg->timer_member[dir] = next;
    tg->timer_ctx[dir] = next->ctx;
    next->stats.timers_armed++;
    /* A drain of next's context must see that something is pending. */
    aio_context_inc_in_flight(next->ctx, throttle_timer_tag());
    tg->deadline[dir] = now + wait;
    /* On a virtual clock, throttle_group_clock_advance() fires it. */
    if (!tg->virtual_clock) {
        timer_mod_ns(&tg->timers[dir], tg->deadline[dir]);
    }
}

/*
 * Release every waiting request of @m without limits, and pass the
 * group's turn to the other members.
 */
static void throttle_group_release_all(ThrottleGroup *tg,
                                       ThrottleGroupMember *m,
                                       ThrottleRelease why)
{
    int dir;

    for (dir = 0; dir < 2; dir++) {
        unsigned int n = m->waiting[dir];

        if (n) {
            if (why == THROTTLE_RELEASE_DRAIN) {
                m->stats.released_by_drain[dir] += n;
            } else {
                m->stats.released_by_leave[dir] += n;
            }
            throttle_group_release(m, dir, n);
        }
        if (tg->baton[dir] == m) {
            tg->baton[dir] = NULL;
        }
        if (tg->armed[dir] && tg->timer_member[dir] == m) {
            throttle_group_disarm(tg, dir);
        }
        throttle_group_schedule_next(tg, dir, false);
    }
}

static void throttle_group_timer_cb(ThrottleGroup *tg, int dir)
{
    AioContext *ctx;

    g_mutex_lock(&tg->lock);
    /* Cancelled by a drain or new limits after it had expired. */
    if (!tg->armed[dir]) {
        g_mutex_unlock(&tg->lock);
        return;
    }
    /*
     * Re-armed for later after it had expired: firing now would release
     * a request early.  The real timer was re-armed too; a virtual one
     * fires when the clock gets there.
     */
    if (tg->deadline[dir] > throttle_group_now(tg)) {
        if (!tg->virtual_clock) {
            timer_mod_ns(&tg->timers[dir], tg->deadline[dir]);
        }
        g_mutex_unlock(&tg->lock);
        return;
    }
    ctx = tg->timer_ctx[dir];
    tg->armed[dir] = false;
    tg->timer_member[dir] = NULL;
    tg->timer_ctx[dir] = NULL;
    throttle_group_schedule_next(tg, dir, true);
    g_mutex_unlock(&tg->lock);
    /* After the release: its request is counted as a request by now. */
    aio_context_dec_in_flight(ctx, throttle_timer_tag());
}

static void throttle_group_read_timer_cb(void *opaque)
{
    throttle_group_timer_cb(opaque, 0);
}

static void throttle_group_write_timer_cb(void *opaque)
{
    throttle_group_timer_cb(opaque, 1);
}

/* ---- Groups ---- */

ThrottleGroup *throttle_group_new(const char *name)
{
    ThrottleGroup *tg = g_new0(ThrottleGroup, 1);
    AioContext *ctx = qemu_get_aio_context();

    tg->name = g_strdup(name ?: "");
    tg->refcnt = 1;
    g_mutex_init(&tg->lock);
    throttle_init(&tg->ts, throttle_group_now(tg));
    QTAILQ_INIT(&tg->members);
    aio_timer_init(ctx, &tg->timers[0], QEMU_CLOCK_REALTIME, SCALE_NS,
                   throttle_group_read_timer_cb, tg);
    aio_timer_init(ctx, &tg->timers[1], QEMU_CLOCK_REALTIME, SCALE_NS,
                   throttle_group_write_timer_cb, tg);
    return tg;
}

void throttle_group_ref(ThrottleGroup *tg)
{
    qatomic_inc(&tg->refcnt);
}

static void throttle_group_free(void *opaque)
{
    ThrottleGroup *tg = opaque;

    /* Members and queued requests hold references. */
    assert(QTAILQ_EMPTY(&tg->members));
    assert(!tg->armed[0] && !tg->armed[1]);
    timer_del(&tg->timers[0]);
    timer_del(&tg->timers[1]);
    g_mutex_clear(&tg->lock);
    g_free(tg->name);
    g_free(tg);
}

void throttle_group_unref(ThrottleGroup *tg)
{
    if (qatomic_fetch_dec(&tg->refcnt) != 1) {
        return;
    }
    /*
     * The timers' callbacks run in the main thread; freeing there means
     * none of them can be running meanwhile.
     */
    if (qemu_in_main_thread()) {
        throttle_group_free(tg);
    } else {
        aio_bh_schedule_oneshot(qemu_get_aio_context(), throttle_group_free,
                                tg);
    }
}

const char *throttle_group_get_name(ThrottleGroup *tg)
{
    return tg->name;
}

ThrottleGroup *throttle_group_find(const char *name)
{
    return user_creatable_find("throttle-group", name);
}

bool throttle_group_set_config(ThrottleGroup *tg, const ThrottleConfig *cfg,
                               GError **errp)
{
    int dir;

    if (!throttle_is_valid(cfg, errp)) {
        return false;
    }
    g_mutex_lock(&tg->lock);
    throttle_config(&tg->ts, cfg, throttle_group_now(tg));
    for (dir = 0; dir < 2; dir++) {
        if (tg->armed[dir]) {
            throttle_group_disarm(tg, dir);
        }
        throttle_group_schedule_next(tg, dir, false);
    }
    g_mutex_unlock(&tg->lock);
    return true;
}

void throttle_group_get_config(ThrottleGroup *tg, ThrottleConfig *cfg)
{
    g_mutex_lock(&tg->lock);
    throttle_get_config(&tg->ts, cfg);
    g_mutex_unlock(&tg->lock);
}

unsigned int throttle_group_member_count(ThrottleGroup *tg)
{
    return qatomic_read(&tg->member_count);
}

/* ---- Members ---- */

static void tgm_kick_bh(void *opaque)
{
    ThrottleGroupMember *m = opaque;
    AioContext *ctx = m->ctx;
    unsigned int n[2];
    int dir;

    /* Releases from now on schedule a new run. */
    qatomic_set(&m->kick_pending, false);
    smp_mb();
    n[0] = qatomic_xchg(&m->granted[0], 0);
    n[1] = qatomic_xchg(&m->granted[1], 0);
    for (dir = 0; dir < 2; dir++) {
        /* Each one runs at once, up to its I/O, and comes back. */
        while (n[dir]--) {
            bool woke = qemu_co_queue_next(&m->queue[dir]);

            assert(woke);
        }
    }
    /* Last: @m may be gone as soon as this is dropped. */
    aio_context_dec_in_flight(ctx, throttle_release_tag());
}

static void tgm_drained_begin(void *opaque)
{
    ThrottleGroupMember *m = opaque;

    g_mutex_lock(&m->lock);
    if (m->tg) {
        g_mutex_lock(&m->tg->lock);
        if (m->disabled++ == 0) {
            throttle_group_release_all(m->tg, m, THROTTLE_RELEASE_DRAIN);
        }
        g_mutex_unlock(&m->tg->lock);
    } else {
        m->disabled++;
    }
    g_mutex_unlock(&m->lock);
}

static void tgm_drained_end(void *opaque)
{
    ThrottleGroupMember *m = opaque;
    int dir;

    g_mutex_lock(&m->lock);
    if (m->tg) {
        g_mutex_lock(&m->tg->lock);
        assert(m->disabled > 0);
        /*
         * Throttled again, by the group's limits as they are now.  Other
         * members never stopped; this only restarts what may be idle.
         */
        if (--m->disabled == 0) {
            for (dir = 0; dir < 2; dir++) {
                throttle_group_schedule_next(m->tg, dir, false);
            }
        }
        g_mutex_unlock(&m->tg->lock);
    } else {
        assert(m->disabled > 0);
        m->disabled--;
    }
    g_mutex_unlock(&m->lock);
}

static bool tgm_drained_poll(void *opaque)
{
    ThrottleGroupMember *m = opaque;

    /*
     * Requests that queued between the end of an earlier section and our
     * end callback, when a new section began before that callback ran
     * (so begin did not run again), go now: a drain never waits for a
     * throttle timer.
     */
    g_mutex_lock(&m->lock);
    if (m->tg && m->disabled) {
        g_mutex_lock(&m->tg->lock);
        if (m->waiting[0] || m->waiting[1]) {
            throttle_group_release_all(m->tg, m, THROTTLE_RELEASE_DRAIN);
        }
        g_mutex_unlock(&m->tg->lock);
    }
    g_mutex_unlock(&m->lock);
    return throttle_group_member_queued(m) > 0;
}

static const AioDrainOps tgm_drain_ops = {
    .drained_begin = tgm_drained_begin,
    .drained_end = tgm_drained_end,
    .drained_poll = tgm_drained_poll,
};

void throttle_group_member_init(ThrottleGroupMember *tgm, AioContext *ctx)
{
    memset(tgm, 0, sizeof(*tgm));
    g_mutex_init(&tgm->lock);
    qemu_co_queue_init(&tgm->queue[0]);
    qemu_co_queue_init(&tgm->queue[1]);
    tgm->ctx = ctx;
    tgm->kick_bh = aio_bh_new(ctx, tgm_kick_bh, tgm);
    /* If ctx is drained, this runs begin: the member starts disabled. */
    tgm->drain_handler = aio_context_add_drain_ops(ctx, &tgm_drain_ops, tgm);
}

void throttle_group_member_destroy(ThrottleGroupMember *tgm)
{
    throttle_group_leave(tgm);
    assert(throttle_group_member_queued(tgm) == 0);
    aio_context_remove_drain_ops(tgm->drain_handler);
    tgm->drain_handler = NULL;
    tgm_kick_cancel(tgm);
    qemu_bh_delete(tgm->kick_bh);
    tgm->kick_bh = NULL;
    g_mutex_clear(&tgm->lock);
}

void throttle_group_join(ThrottleGroupMember *tgm, ThrottleGroup *tg)
{
    assert(qemu_in_main_thread());
    throttle_group_leave(tgm);

    throttle_group_ref(tg);
    g_mutex_lock(&tgm->lock);
    g_mutex_lock(&tg->lock);
    QTAILQ_INSERT_TAIL(&tg->members, tgm, link);
    tg->member_count++;
    tgm->tg = tg;
    g_mutex_unlock(&tg->lock);
    g_mutex_unlock(&tgm->lock);
}

void throttle_group_leave(ThrottleGroupMember *tgm)
{
    ThrottleGroup *tg;
    int dir;

    assert(qemu_in_main_thread());
    g_mutex_lock(&tgm->lock);
    tg = tgm->tg;
    if (!tg) {
        g_mutex_unlock(&tgm->lock);
        return;
    }
    g_mutex_lock(&tg->lock);
    /* Whoever comes after us gets the next turn. */
    for (dir = 0; dir < 2; dir++) {
        if (tg->token[dir] == tgm) {
            tg->token[dir] = QTAILQ_PREV(tgm, link);
        }
    }
    throttle_group_release_all(tg, tgm, THROTTLE_RELEASE_LEAVE);
    QTAILQ_REMOVE(&tg->members, tgm, link);
    tg->member_count--;
    tgm->tg = NULL;
    g_mutex_unlock(&tg->lock);
    g_mutex_unlock(&tgm->lock);
    throttle_group_unref(tg);
}

ThrottleGroup *throttle_group_member_get_group(ThrottleGroupMember *tgm)
{
    return tgm->tg;
}

void throttle_group_member_set_aio_context(ThrottleGroupMember *tgm,
                                           AioContext *new_ctx)
{
    AioDrainHandler *old_handler = tgm->drain_handler;
    QEMUBH *old_bh = tgm->kick_bh;

    assert(qemu_in_main_thread());
    assert(throttle_group_member_queued(tgm) == 0);
    if (new_ctx == tgm->ctx) {
        return;
    }

    tgm_kick_cancel(tgm);
    g_mutex_lock(&tgm->lock);
    if (tgm->tg) {
        g_mutex_lock(&tgm->tg->lock);
    }
    tgm->ctx = new_ctx;
    tgm->kick_bh = aio_bh_new(new_ctx, tgm_kick_bh, tgm);
    if (tgm->tg) {
        g_mutex_unlock(&tgm->tg->lock);
    }
    g_mutex_unlock(&tgm->lock);

    /*
     * Register in the new context before leaving the old one: both are
     * drained, so the count goes 1 -> 2 -> 1 and the member never looks
     * undrained halfway.
     */
    tgm->drain_handler = aio_context_add_drain_ops(new_ctx, &tgm_drain_ops,
                                                   tgm);
    aio_context_remove_drain_ops(old_handler);
    qemu_bh_delete(old_bh);
}

void coroutine_fn throttle_group_co_io_limits_intercept(
    ThrottleGroupMember *tgm, int64_t bytes, bool is_write)
{
    int dir = is_write;
    ThrottleGroup *tg;
    bool must_wait;
    bool ctx_drained;

    /*
     * Limits are off between our begin and end callbacks, but only while
     * the context is drained: the registry ends handlers in reverse order
     * of registration, so a backend above us may resubmit its queued
     * requests before our end callback runs.  Those are throttled.  Read
     * before taking our locks (the registry's lock comes first); if this
     * is stale, drained_poll releases what queued by mistake.
     */
    ctx_drained = aio_context_is_drained(tgm->ctx);

    g_mutex_lock(&tgm->lock);
    tg = tgm->tg;
    if (!tg) {
        g_mutex_unlock(&tgm->lock);
        return;
    }
    g_mutex_lock(&tg->lock);
    if (tgm->disabled && ctx_drained) {
        /* Drained: through at once, but the device still did the I/O. */
        tgm->stats.unthrottled[dir]++;
        throttle_account(&tg->ts, is_write, bytes);
        g_mutex_unlock(&tg->lock);
        g_mutex_unlock(&tgm->lock);
        return;
    }

    /* Queue behind anything of ours or the group's that waits. */
    must_wait = tgm->waiting[dir] || qatomic_read(&tgm->queued[dir]) ||
                tg->armed[dir] || tg->baton[dir] ||
                throttle_compute_wait(&tg->ts, is_write,
                                      throttle_group_now(tg));
    if (!must_wait) {
        tgm->stats.passed[dir]++;
        throttle_account(&tg->ts, is_write, bytes);
        g_mutex_unlock(&tg->lock);
        g_mutex_unlock(&tgm->lock);
        return;
    }

    tgm->stats.queued[dir]++;
    tgm->waiting[dir]++;
    qatomic_inc(&tgm->queued[dir]);
    /* Whatever releases us drops the group's lock before we can run. */
    throttle_group_ref(tg);
    throttle_group_schedule_next(tg, dir, false);
    g_mutex_unlock(&tg->lock);
    g_mutex_unlock(&tgm->lock);

    /*
     * Our home thread runs the kick BH, so nobody pops us before we are
     * in the queue.
     */
    qemu_co_queue_wait(&tgm->queue[dir], NULL);

    g_mutex_lock(&tg->lock);
    if (tg->baton[dir] == tgm) {
        tg->baton[dir] = NULL;
    }
    /* Released by leaving: the old group no longer speaks for us. */
    if (tgm->tg == tg) {
        throttle_account(&tg->ts, is_write, bytes);
    }
    qatomic_dec(&tgm->queued[dir]);
    throttle_group_schedule_next(tg, dir, false);
    g_mutex_unlock(&tg->lock);

    /* A drain from another thread may wait for our queue to empty. */
    aio_wait_kick();
    throttle_group_unref(tg);
}

void throttle_group_member_get_stats(ThrottleGroupMember *tgm,
                                     ThrottleGroupMemberStats *stats)
{
    g_mutex_lock(&tgm->lock);
    if (tgm->tg) {
        g_mutex_lock(&tgm->tg->lock);
    }
    *stats = tgm->stats;
    if (tgm->tg) {
        g_mutex_unlock(&tgm->tg->lock);
    }
    g_mutex_unlock(&tgm->lock);
}

unsigned int throttle_group_member_queued(ThrottleGroupMember *tgm)
{
    return qatomic_read(&tgm->queued[0]) + qatomic_read(&tgm->queued[1]);
}

/* ---- A virtual clock, for tests ---- */

void throttle_group_set_virtual_clock(ThrottleGroup *tg, int64_t now)
{
    ThrottleConfig cfg;

    assert(qemu_in_main_thread());
    g_mutex_lock(&tg->lock);
    /* A real timer already armed would fire behind the test's back. */
    assert(!tg->armed[0] && !tg->armed[1]);
    tg->virtual_clock = true;
    tg->virtual_now = now;
    throttle_get_config(&tg->ts, &cfg);
    throttle_config(&tg->ts, &cfg, now);
    g_mutex_unlock(&tg->lock);
}

int64_t throttle_group_clock_get_ns(ThrottleGroup *tg)
{
    int64_t now;

    g_mutex_lock(&tg->lock);
    now = throttle_group_now(tg);
    g_mutex_unlock(&tg->lock);
    return now;
}

int64_t throttle_group_timer_deadline(ThrottleGroup *tg, bool is_write)
{
    int64_t deadline;

    g_mutex_lock(&tg->lock);
    deadline = tg->armed[is_write] ? tg->deadline[is_write] : -1;
    g_mutex_unlock(&tg->lock);
    return deadline;
}

void throttle_group_clock_advance(ThrottleGroup *tg, int64_t now)
{
    bool due[2];
    int dir;

    assert(qemu_in_main_thread());
    g_mutex_lock(&tg->lock);
    assert(tg->virtual_clock);
    tg->virtual_now = MAX(tg->virtual_now, now);
    for (dir = 0; dir < 2; dir++) {
        due[dir] = tg->armed[dir] && tg->deadline[dir] <= tg->virtual_now;
    }
    g_mutex_unlock(&tg->lock);

    /* Outside the lock, as from the main loop; each checks again. */
    for (dir = 0; dir < 2; dir++) {
        if (due[dir]) {
            throttle_group_timer_cb(tg, dir);
        }
    }
}

/* ---- The throttle-group object ---- */

/*
 * The properties are the fields of QEMU's ThrottleLimits, nested under
 * "limits" or flat with an "x-" prefix.  A field is a bucket and a
 * kind, or iops-size.
 */
typedef enum ThrottleField {
    TF_AVG,
    TF_MAX,
    TF_LENGTH,
    TF_OP_SIZE,
} ThrottleField;

typedef struct ThrottleProp {
    ThrottleBucketType bucket;
    ThrottleField field;
} ThrottleProp;

#define THROTTLE_PROPS (THROTTLE_BUCKETS * 3 + 1)

/*
 * The order in which QEMU type-checks the fields (its schema's order),
 * which decides which of several malformed values is reported.
 */
static const ThrottleProp throttle_schema_order[THROTTLE_PROPS] = {
    { THROTTLE_OPS_TOTAL, TF_AVG }, { THROTTLE_OPS_TOTAL, TF_MAX },
    { THROTTLE_OPS_TOTAL, TF_LENGTH },
    { THROTTLE_OPS_READ, TF_AVG }, { THROTTLE_OPS_READ, TF_MAX },
    { THROTTLE_OPS_READ, TF_LENGTH },
    { THROTTLE_OPS_WRITE, TF_AVG }, { THROTTLE_OPS_WRITE, TF_MAX },
    { THROTTLE_OPS_WRITE, TF_LENGTH },
    { THROTTLE_BPS_TOTAL, TF_AVG }, { THROTTLE_BPS_TOTAL, TF_MAX },
    { THROTTLE_BPS_TOTAL, TF_LENGTH },
    { THROTTLE_BPS_READ, TF_AVG }, { THROTTLE_BPS_READ, TF_MAX },
    { THROTTLE_BPS_READ, TF_LENGTH },
    { THROTTLE_BPS_WRITE, TF_AVG }, { THROTTLE_BPS_WRITE, TF_MAX },
    { THROTTLE_BPS_WRITE, TF_LENGTH },
    { 0, TF_OP_SIZE },
};

/*
 * The order in which QEMU 7.2 then applies the flat properties and
 * "limits" (observed: it follows its dictionary's hash order, not the
 * command line), which decides which of two values wins and which of
 * several out-of-range values is reported.  A bucket of THROTTLE_BUCKETS
 * stands for "limits".
 */
static const ThrottleProp throttle_apply_order[THROTTLE_PROPS + 1] = {
    { THROTTLE_BPS_READ, TF_MAX },
    { THROTTLE_OPS_TOTAL, TF_AVG },
    { THROTTLE_OPS_READ, TF_LENGTH },
    { THROTTLE_BPS_TOTAL, TF_LENGTH },
    { 0, TF_OP_SIZE },
    { THROTTLE_OPS_TOTAL, TF_LENGTH },
    { THROTTLE_BUCKETS, TF_AVG },
    { THROTTLE_BPS_READ, TF_LENGTH },
    { THROTTLE_BPS_READ, TF_AVG },
    { THROTTLE_BPS_WRITE, TF_LENGTH },
    { THROTTLE_BPS_TOTAL, TF_AVG },
    { THROTTLE_BPS_TOTAL, TF_MAX },
    { THROTTLE_BPS_WRITE, TF_AVG },
    { THROTTLE_BPS_WRITE, TF_MAX },
    { THROTTLE_OPS_TOTAL, TF_MAX },
    { THROTTLE_OPS_READ, TF_AVG },
    { THROTTLE_OPS_READ, TF_MAX },
    { THROTTLE_OPS_WRITE, TF_AVG },
    { THROTTLE_OPS_WRITE, TF_MAX },
    { THROTTLE_OPS_WRITE, TF_LENGTH },
};

static char *throttle_prop_name(const ThrottleProp *p, const char *prefix)
{
    static const char *const suffix[] = {
        [TF_AVG] = "", [TF_MAX] = "-max", [TF_LENGTH] = "-max-length",
    };

    if (p->field == TF_OP_SIZE) {
        return g_strdup_printf("%siops-size", prefix);
    }
    return g_strdup_printf("%s%s%s", prefix, throttle_bucket_name(p->bucket),
                           suffix[p->field]);
}

/* Index of @p in the schema order (the slot of its parsed value). */
static int throttle_prop_index(const ThrottleProp *p)
{
    int i;

    for (i = 0; i < THROTTLE_PROPS; i++) {
        if (throttle_schema_order[i].bucket == p->bucket &&
            throttle_schema_order[i].field == p->field) {
            return i;
        }
    }
    g_assert_not_reached();
}

/* An int64 property as QEMU's option visitors read it. */
static bool throttle_parse_int(JsonNode *node, const char *name,
                               int64_t *out, GError **errp)
{
    if (JSON_NODE_HOLDS_OBJECT(node) || JSON_NODE_HOLDS_ARRAY(node)) {
        /* What the dotted syntax makes of "name.x=..." */
        error_setg(errp, "Parameters '%s.*' are unexpected", name);
        return false;
    }
    if (JSON_NODE_HOLDS_VALUE(node) &&
        json_node_get_value_type(node) == G_TYPE_INT64) {
        *out = json_node_get_int(node);
        return true;
    }
    if (JSON_NODE_HOLDS_VALUE(node) &&
        json_node_get_value_type(node) == G_TYPE_STRING) {
        const char *text = json_node_get_string(node);
        char *end;
        int64_t v;

        errno = 0;
        v = g_ascii_strtoll(text, &end, 0);
        if (errno || end == text || *end) {
            error_setg(errp, "Parameter '%s' expects integer", name);
            return false;
        }
        *out = v;
        return true;
    }
    error_setg(errp, "Invalid parameter type for '%s', expected: integer",
               name);
    return false;
}

/* The alphabetically first member of @o not in @known (NULL-terminated). */
static const char *throttle_first_unknown(JsonObject *o,
                                          const char *const *known)
{
    g_autoptr(GList) members = json_object_get_members(o);
    const char *first = NULL;
    GList *l;

    for (l = members; l; l = l->next) {
        const char *const *k;

        for (k = known; *k && strcmp(*k, l->data); k++) {
            /* nothing */
        }
        if (!*k && (!first || strcmp(l->data, first) < 0)) {
            first = l->data;
        }
    }
    return first;
}

typedef struct ThrottleParsed {
    bool has[THROTTLE_PROPS];
    int64_t value[THROTTLE_PROPS];
} ThrottleParsed;

/* Type-check the fields of @o named with @prefix into @out. */
static bool throttle_parse_fields(JsonObject *o, const char *prefix,
                                  const char *msg_prefix,
                                  ThrottleParsed *out, GError **errp)
{
    int i;

    for (i = 0; i < THROTTLE_PROPS; i++) {
        g_autofree char *key = throttle_prop_name(&throttle_schema_order[i],
                                                  prefix);
        g_autofree char *full = g_strconcat(msg_prefix, key, NULL);
        JsonNode *node = json_object_get_member(o, key);

        if (!node) {
            continue;
        }
        if (!throttle_parse_int(node, full, &out->value[i], errp)) {
            return false;
        }
        out->has[i] = true;
    }
    return true;
}

/* The names of the fields with @prefix, NULL-terminated; g_strfreev(). */
static char **throttle_field_names(const char *prefix, const char *extra)
{
    char **names = g_new0(char *, THROTTLE_PROPS + 2);
    int i;

    for (i = 0; i < THROTTLE_PROPS; i++) {
        names[i] = throttle_prop_name(&throttle_schema_order[i], prefix);
    }
    names[i] = g_strdup(extra);
    return names;
}

static void throttle_store(ThrottleConfig *cfg, const ThrottleProp *p,
                           int64_t v)
{
    LeakyBucket *b = &cfg->buckets[p->bucket];

    switch (p->field) {
    case TF_AVG:
        b->avg = v;
        break;
    case TF_MAX:
        b->max = v;
        break;
    case TF_LENGTH:
        b->burst_length = v;
        break;
    case TF_OP_SIZE:
        cfg->op_size = v;
        break;
    }
}

/* What QEMU's "limits" setter checks and stores. */
static bool throttle_apply_limits(ThrottleConfig *cfg,
                                  const ThrottleParsed *lim, GError **errp)
{
    int b, i;

    for (b = 0; b < THROTTLE_BUCKETS; b++) {
        ThrottleProp p = { b, TF_LENGTH };

        i = throttle_prop_index(&p);
        /* Compared as signed: QEMU lets -1 through, as 2^64 - 1. */
        if (lim->has[i] && lim->value[i] > UINT32_MAX) {
            error_setg(errp, "%s-max-length value must be in the range "
                       "[0, %u]", throttle_bucket_name(b), UINT32_MAX);
            return false;
        }
    }
    for (i = 0; i < THROTTLE_PROPS; i++) {
        if (lim->has[i]) {
            throttle_store(cfg, &throttle_schema_order[i], lim->value[i]);
        }
    }
    return true;
}

bool throttle_group_parse_props(JsonObject *props, ThrottleConfig *cfg,
                                GError **errp)
{
    ThrottleParsed lim = { 0 }, flat = { 0 };
    g_auto(GStrv) limit_names = throttle_field_names("", NULL);
    g_auto(GStrv) flat_names = throttle_field_names("x-", "limits");
    JsonObject *limits = NULL;
    ThrottleConfig new_cfg = *cfg;
    JsonNode *node;
    const char *unknown;
    int i;

    /* Types first, "limits" before the flat forms; then unknown keys. */
    node = json_object_get_member(props, "limits");
    if (node) {
        if (!JSON_NODE_HOLDS_OBJECT(node)) {
            error_setg(errp, "Invalid parameter type for 'limits', "
                       "expected: object");
            return false;
        }
        limits = json_node_get_object(node);
        if (!throttle_parse_fields(limits, "", "limits.", &lim, errp)) {
            return false;
        }
        unknown = throttle_first_unknown(limits,
                                         (const char *const *)limit_names);
        if (unknown) {
            error_setg(errp, "Parameter 'limits.%s' is unexpected", unknown);
            return false;
        }
    }
    if (!throttle_parse_fields(props, "x-", "", &flat, errp)) {
        return false;
    }
    unknown = throttle_first_unknown(props, (const char *const *)flat_names);
    if (unknown) {
        error_setg(errp, "Parameter '%s' is unexpected", unknown);
        return false;
    }

    /* Then the values, in QEMU's order of application. */
    for (i = 0; i < G_N_ELEMENTS(throttle_apply_order); i++) {
        const ThrottleProp *p = &throttle_apply_order[i];
        int idx;

        if (p->bucket == THROTTLE_BUCKETS) {
            if (limits && !throttle_apply_limits(&new_cfg, &lim, errp)) {
                return false;
            }
            continue;
        }
        idx = throttle_prop_index(p);
        if (!flat.has[idx]) {
            continue;
        }
        if (flat.value[idx] < 0) {
            error_setg(errp, "Property values cannot be negative");
            return false;
        }
        if (p->field == TF_LENGTH && flat.value[idx] > UINT32_MAX) {
            g_autofree char *name = throttle_prop_name(p, "x-");

            /* Sic: QEMU 7.2 writes "therange" here. */
            error_setg(errp, "%s value must be in therange [0, %u]", name,
                       UINT32_MAX);
            return false;
        }
        throttle_store(&new_cfg, p, flat.value[idx]);
    }

    if (!throttle_is_valid(&new_cfg, errp)) {
        return false;
    }
    *cfg = new_cfg;
    return true;
}

/* A group object is a ThrottleGroup with the object's id as its name. */
static void *throttle_group_object_create(const char *id, JsonObject *props,
                                          GError **errp)
{
    ThrottleConfig cfg;
    ThrottleGroup *tg;

    throttle_config_init(&cfg);
    if (!throttle_group_parse_props(props, &cfg, errp)) {
        return NULL;
    }
    tg = throttle_group_new(id);
    if (!throttle_group_set_config(tg, &cfg, errp)) {
        throttle_group_unref(tg);
        return NULL;
    }
    return tg;
}

static bool throttle_group_object_can_delete(void *obj, GError **errp)
{
    ThrottleGroup *tg = obj;

    /* Members and their queued requests hold references. */
    if (qatomic_read(&tg->refcnt) > 1) {
        error_setg(errp, "object '%s' is in use, can not be deleted",
                   tg->name);
        return false;
    }
    return true;
}

static void throttle_group_object_destroy(void *obj)
{
    throttle_group_unref(obj);
}

static const UserCreatableType throttle_group_type = {
    .name = "throttle-group",
    .create = throttle_group_object_create,
    .can_delete = throttle_group_object_can_delete,
    .destroy = throttle_group_object_destroy,
};

static void __attribute__((constructor)) throttle_group_type_init(void)
{
    user_creatable_register(&throttle_group_type);
}
