/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Throttle groups: I/O limits shared by several members (throttle filter
 * nodes), served round-robin, and released by drain.
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * A group holds one ThrottleState (qemu/throttle.h) and, per direction
 * (reads, writes), one timer in the main context.  A request of a member
 * passes at once while nothing of its direction waits in the group and
 * the limits allow it; otherwise it queues on its member's CoQueue.  One
 * waiting request per direction is released at a time, members taking
 * turns (one request each), when the limits allow: at once, or when the
 * group's timer fires.
 *
 * Each member registers drain handlers with its own AioContext: begin
 * releases every queued request of the member without waiting for the
 * limits and lets new ones through while the context is drained; the
 * handler is busy while queued requests remain; end throttles again,
 * with the group's limits as they are then.  So a drain never waits for
 * a throttle timer.  A timer armed for a member counts as in-flight work
 * in that member's context under the tag "throttle-timer", a release on
 * its way to the member's thread under "throttle-release", and queued
 * requests are counted by the block layer as requests.
 *
 * Members may live in different AioContexts.  Group state is protected
 * by a mutex; a member's queue is only touched in its home thread.
 */
#ifndef BLOCK_THROTTLE_GROUPS_H
#define BLOCK_THROTTLE_GROUPS_H

#include <json-glib/json-glib.h>

#include "block/aio.h"
#include "qemu/co-lock.h"
#include "qemu/queue.h"
#include "qemu/throttle.h"

typedef struct ThrottleGroup ThrottleGroup;

/* What happened to a member's requests, for tests and debugging. */
typedef struct ThrottleGroupMemberStats {
    /* Indexed by direction: [0] reads, [1] writes. */
    uint64_t passed[2];         /* started without queueing */
    uint64_t queued[2];         /* had to queue */
    uint64_t granted_at_once[2];    /* released without a timer */
    uint64_t granted_by_timer[2];   /* released when a timer fired */
    uint64_t released_by_drain[2];  /* released by a drain's begin */
    uint64_t released_by_leave[2];  /* released by leaving the group */
    uint64_t unthrottled[2];    /* passed while drained */
    uint64_t timers_armed;      /* group timers armed on its behalf */
} ThrottleGroupMemberStats;

/*
 * A member of a group, embedded in its owner (the throttle filter's
 * state).  Fields are private to block/throttle-groups.c.
 */
typedef struct ThrottleGroupMember {
    /*
     * Protects tg (together with tg's lock: writers hold both) and
     * disabled.  Never held across a yield.
     */
    GMutex lock;
    ThrottleGroup *tg;          /* NULL: not in a group */
    AioContext *ctx;            /* the member's home context */
    /* > 0 while drained (a counter, so a context move can go 1-2-1). */
    int disabled;

    /* Requests waiting, per direction; only touched in ctx's thread. */
    CoQueue queue[2];
    /* Under tg's lock: queued and not released yet. */
    unsigned int waiting[2];
    /* Released and not woken yet (atomic: the kick BH takes them). */
    unsigned int granted[2];
    /* In the queue, released or not (atomic; drained_poll reads it). */
    unsigned int queued[2];
    /* Wakes released requests in ctx's thread. */
    QEMUBH *kick_bh;
    /* kick_bh is scheduled and counted in flight (atomic). */
    bool kick_pending;

    AioDrainHandler *drain_handler;
    ThrottleGroupMemberStats stats;     /* under tg's lock */

    QTAILQ_ENTRY(ThrottleGroupMember) link;     /* in tg; tg's lock */
} ThrottleGroupMember;

/* ---- Groups ---- */

/*
 * A group named @name (may be NULL for an anonymous one) with no limits
 * and one reference.  Its timers live in the main context.  Main thread.
 */
ThrottleGroup *throttle_group_new(const char *name);

/* Any thread. */
void throttle_group_ref(ThrottleGroup *tg);
void throttle_group_unref(ThrottleGroup *tg);

/* The name given at creation ("" if none). */
const char *throttle_group_get_name(ThrottleGroup *tg);

/*
 * The group created with --object throttle-group,id=@name, or NULL.
 * Not referenced.  Main thread.
 */
ThrottleGroup *throttle_group_find(const char *name);

/*
 * Change the limits.  @cfg is checked with throttle_is_valid(); on
 * success the buckets start empty, a pending timer is re-armed for the
 * new limits, and members that are drained throttle with the new limits
 * from the end of their drained section.  Any thread.
 */
bool throttle_group_set_config(ThrottleGroup *tg, const ThrottleConfig *cfg,
                               GError **errp);
void throttle_group_get_config(ThrottleGroup *tg, ThrottleConfig *cfg);

/* Number of members.  Any thread (a snapshot). */
unsigned int throttle_group_member_count(ThrottleGroup *tg);

/*
 * Read the properties of a throttle-group object into @cfg (which holds
 * the current values on entry): "limits" (an object with the keys
 * bps-total, bps-total-max, bps-total-max-length, ..., iops-size) and
 * the flat "x-bps-total" ... "x-iops-size" forms, in QEMU 7.2's order
 * and with its messages, then throttle_is_valid().  @props must hold
 * nothing else.  Unchanged @cfg and false with @errp set on error.
 */
bool throttle_group_parse_props(JsonObject *props, ThrottleConfig *cfg,
                                GError **errp);

/* ---- Members ---- */

/*
 * Set up @tgm to live in @ctx: its queues, its kick BH and its drain
 * handler.  Not in a group yet (requests pass).  Main thread.
 */
void throttle_group_member_init(ThrottleGroupMember *tgm, AioContext *ctx);

/*
 * Undo throttle_group_member_init(); leaves the group first.  No request
 * may be queued (the owner drains before).  Main thread.
 */
void throttle_group_member_destroy(ThrottleGroupMember *tgm);

/*
 * Join @tg (taking a reference), leaving the current group if any.
 * Main thread.
 */
void throttle_group_join(ThrottleGroupMember *tgm, ThrottleGroup *tg);

/*
 * Leave the group (dropping the reference).  Requests still queued are
 * released without limits, and the group's turn passes to the other
 * members.  Main thread.
 */
void throttle_group_leave(ThrottleGroupMember *tgm);

/* The group @tgm is in, or NULL.  Not referenced.  Main thread. */
ThrottleGroup *throttle_group_member_get_group(ThrottleGroupMember *tgm);

/*
 * Move @tgm to @new_ctx: its drain handler and kick BH follow.  Main
 * thread, both contexts drained (nothing is queued).
 */
void throttle_group_member_set_aio_context(ThrottleGroupMember *tgm,
                                           AioContext *new_ctx);

/*
 * The request path: return when a request of @bytes in direction
 * @is_write may start, having counted it.  Coroutine in @tgm's context.
 */
void coroutine_fn throttle_group_co_io_limits_intercept(
    ThrottleGroupMember *tgm, int64_t bytes, bool is_write);

/* A copy of @tgm's statistics.  Any thread. */
void throttle_group_member_get_stats(ThrottleGroupMember *tgm,
                                     ThrottleGroupMemberStats *stats);

/* Requests queued in @tgm, both directions.  Any thread. */
unsigned int throttle_group_member_queued(ThrottleGroupMember *tgm);

/* ---- A virtual clock, for tests ---- */

/*
 * Whether a throttle works is a question of how many requests pass in
 * how much time.  Asked on the real clock, the answer depends on how
 * busy the machine is; on a virtual clock it does not, so tests keep a
 * group's time with these functions and assert exact figures.  Every
 * decision (what may pass, what is released, when the timer is due)
 * still goes through the same code; only the source of "now" and the
 * firing of the two timers change.
 */

/*
 * From now on @tg reads the time (ns) from a clock of its own that
 * stands at @now until throttle_group_clock_advance() moves it, instead
 * of QEMU_CLOCK_REALTIME.  The buckets start empty at @now, with the
 * same limits.  The group's timers then never fire by themselves: only
 * throttle_group_clock_advance() runs those that are due.  There is no
 * way back to the real clock.  Main thread; no timer of @tg may be
 * armed.
 */
void throttle_group_set_virtual_clock(ThrottleGroup *tg, int64_t now);

/* The time on @tg's clock, real or virtual, in ns.  Any thread. */
int64_t throttle_group_clock_get_ns(ThrottleGroup *tg);

/*
 * When the timer of direction @is_write is due, in ns on @tg's clock,
 * or -1 if it is not armed.  Any thread (a snapshot).
 */
int64_t throttle_group_timer_deadline(ThrottleGroup *tg, bool is_write);

/*
 * Move @tg's virtual clock forward to @now (an earlier time leaves it
 * where it is), then run the callback of each timer due by then, in the
 * calling thread, as the main loop runs them on the real clock.
 * Released requests are woken by their members' contexts as usual.
 * Main thread; @tg must be on a virtual clock.
 */
void throttle_group_clock_advance(ThrottleGroup *tg, int64_t now);

#endif /* BLOCK_THROTTLE_GROUPS_H */
