/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests for coroutines: the switch backend, the core (enter, yield,
 * wake-up queue, pool), CoMutex, CoQueue, CoRwlock and sleeps.
 *
 * Copyright (c) 2026 The Sluice authors
 */
#include "qemu/osdep.h"

#include <signal.h>

#include "block/aio.h"
#include "qemu/co-lock.h"
#include "qemu/coroutine_int.h"
#include "qemu/iothread.h"
#include "qemu/main-loop.h"

/* Upper bound for anything a test waits for. */
#define TEST_TIMEOUT_US (10 * G_USEC_PER_SEC)

/* Arrival or acquisition order, filled by the coroutines of one test. */
typedef struct Order {
    int seq[64];
    int len;
} Order;

static void order_add(Order *o, int v)
{
    g_assert_cmpint(o->len, <, (int)ARRAY_SIZE(o->seq));
    o->seq[o->len++] = v;
}

static void order_check(Order *o, const int *expected, int n)
{
    int i;

    g_assert_cmpint(o->len, ==, n);
    for (i = 0; i < n; i++) {
        g_assert_cmpint(o->seq[i], ==, expected[i]);
    }
}

/* Run the main context until *@flag is set (by any thread). */
static void wait_for_flag(bool *flag)
{
    int64_t deadline = g_get_monotonic_time() + TEST_TIMEOUT_US;

    while (!qatomic_load_acquire(flag)) {
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        if (!aio_poll(qemu_get_aio_context(), false)) {
            g_usleep(100);
        }
    }
}

/* ---- create, enter, terminate ---- */

static void coroutine_fn set_flag_entry(void *opaque)
{
    bool *flag = opaque;

    *flag = true;
}

static void test_basic(void)
{
    bool done = false;
    Coroutine *co = qemu_coroutine_create(set_flag_entry, &done);

    g_assert_nonnull(co);
    g_assert_false(done);
    g_assert_false(qemu_coroutine_entered(co));
    qemu_coroutine_enter(co);
    g_assert_true(done);
    g_assert_false(qemu_in_coroutine());
    g_assert_null(qemu_coroutine_self());
}

/* ---- nesting ---- */

#define NEST_DEPTH 32

typedef struct NestData {
    int depth;
    Order order;
} NestData;

static void coroutine_fn nest_entry(void *opaque)
{
    NestData *nd = opaque;
    Coroutine *self = qemu_coroutine_self();
    int my_depth = ++nd->depth;

    order_add(&nd->order, my_depth);
    if (my_depth < NEST_DEPTH) {
        Coroutine *child = qemu_coroutine_create(nest_entry, nd);

        qemu_coroutine_enter(child);
        /* Back from the child: we are ourselves again. */
        g_assert(qemu_coroutine_self() == self);
        g_assert_true(qemu_coroutine_entered(self));
    }
    order_add(&nd->order, -my_depth);
}

static void test_nesting(void)
{
    NestData nd = { 0 };
    int expected[2 * NEST_DEPTH];
    int i;

    qemu_coroutine_enter(qemu_coroutine_create(nest_entry, &nd));

    for (i = 0; i < NEST_DEPTH; i++) {
        expected[i] = i + 1;
        expected[NEST_DEPTH + i] = -(NEST_DEPTH - i);
    }
    order_check(&nd.order, expected, 2 * NEST_DEPTH);
    g_assert_null(qemu_coroutine_self());
}

/* ---- yield / enter ping-pong ---- */

static void coroutine_fn counter_entry(void *opaque)
{
    int *counter = opaque;
    int i;

    for (i = 0; i < 100; i++) {
        *counter = i;
        qemu_coroutine_yield();
    }
    *counter = -1;
}

static void test_yield(void)
{
    int counter = -2;
    Coroutine *co = qemu_coroutine_create(counter_entry, &counter);
    int i;

    for (i = 0; i < 100; i++) {
        qemu_coroutine_enter(co);
        g_assert_cmpint(counter, ==, i);
        g_assert_false(qemu_coroutine_entered(co));
    }
    qemu_coroutine_enter(co);
    g_assert_cmpint(counter, ==, -1);
}

/* ---- two coroutines waking each other, no stack growth ---- */

#define PINGPONG_ROUNDS 25000

/*
 * The stack pointer of a fresh call: if a switch leaked stack, every
 * resume would leave it lower and this would drift.
 */
static QEMU_NOINLINE uintptr_t stack_probe(void)
{
    /* Not a local's address: ASan may put locals on a heap "fake stack". */
    return (uintptr_t)__builtin_frame_address(0);
}

/*
 * Watermark of the thread's own stack below the caller: paint a region,
 * run something, then see how deep it was overwritten.  Both calls must
 * come from the same frame so that the buffer lands at the same place.
 */
#define WATERMARK_SIZE (512 * 1024)

/* The scan reads what the painting call left: uninitialized on purpose. */
#pragma GCC diagnostic push
#ifndef __clang__
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
static QEMU_NOINLINE size_t stack_watermark(bool paint)
{
    volatile unsigned char buf[WATERMARK_SIZE];
    size_t i;

    if (paint) {
        for (i = 0; i < WATERMARK_SIZE; i++) {
            buf[i] = 0xa5;
        }
        return 0;
    }
    /* buf[0] is the deepest byte; the stack grows down towards it. */
    for (i = 0; i < WATERMARK_SIZE && buf[i] == 0xa5; i++) {
        /* nothing */
    }
    return WATERMARK_SIZE - i;
}
#pragma GCC diagnostic pop

typedef struct PingPong {
    Coroutine *co[2];
    uintptr_t sp[2];
    int rounds[2];
} PingPong;

static PingPong pingpong;

static void coroutine_fn pingpong_entry(void *opaque)
{
    int me = GPOINTER_TO_INT(opaque);
    int other = !me;
    int i;

    for (i = 0; i < PINGPONG_ROUNDS; i++) {
        uintptr_t sp = stack_probe();

        if (i == 0) {
            pingpong.sp[me] = sp;
        } else {
            g_assert_cmphex(sp, ==, pingpong.sp[me]);
        }
        pingpong.rounds[me]++;
        /* The other side is parked (or not started): wake it, then rest. */
        aio_co_enter(qemu_get_current_aio_context(), pingpong.co[other]);
        qemu_coroutine_yield();
    }
}

static void test_pingpong_no_growth(void)
{
    PingPong *pp = &pingpong;
    size_t used;

    memset(pp, 0, sizeof(*pp));
    pp->co[0] = qemu_coroutine_create(pingpong_entry, GINT_TO_POINTER(0));
    pp->co[1] = qemu_coroutine_create(pingpong_entry, GINT_TO_POINTER(1));

    /*
     * co[0] wakes co[1], which wakes co[0], ... each yields right after,
     * so every wake is served by the enter loop on this thread's stack.
     * Served by recursion instead, 50 000 wakes would run through the
     * whole watermark region.
     */
    stack_watermark(true);
    qemu_coroutine_enter(pp->co[0]);
    used = stack_watermark(false);
    g_assert_cmpuint(used, <, 64 * 1024);

    g_assert_cmpint(pp->rounds[0], ==, PINGPONG_ROUNDS);
    g_assert_cmpint(pp->rounds[1], ==, PINGPONG_ROUNDS);
    /* co[0] finished after co[1]'s last wake; co[1] is parked. */
    g_assert_true(qemu_coroutine_entered(pp->co[1]) == false);
    qemu_coroutine_enter(pp->co[1]);
    g_assert_null(qemu_coroutine_self());
}

/*
 * The direct form: A enters B from inside itself and B yields back,
 * 25 000 times.  Neither stack pointer may move between rounds.
 */
typedef struct Nested2 {
    Coroutine *b;
    uintptr_t sp_a;
    uintptr_t sp_b;
    int rounds;
    bool stop;
} Nested2;

static void coroutine_fn nested2_b(void *opaque)
{
    Nested2 *n = opaque;

    while (!n->stop) {
        uintptr_t sp = stack_probe();

        if (!n->sp_b) {
            n->sp_b = sp;
        }
        g_assert_cmphex(sp, ==, n->sp_b);
        n->rounds++;
        qemu_coroutine_yield();
    }
}

static void coroutine_fn nested2_a(void *opaque)
{
    Nested2 *n = opaque;
    int i;

    for (i = 0; i < PINGPONG_ROUNDS; i++) {
        uintptr_t sp = stack_probe();

        if (!n->sp_a) {
            n->sp_a = sp;
        }
        g_assert_cmphex(sp, ==, n->sp_a);
        qemu_coroutine_enter(n->b);
    }
    n->stop = true;
    qemu_coroutine_enter(n->b);
}

static void test_nested_reenter_no_growth(void)
{
    Nested2 n = { 0 };

    n.b = qemu_coroutine_create(nested2_b, &n);
    qemu_coroutine_enter(qemu_coroutine_create(nested2_a, &n));
    g_assert_cmpint(n.rounds, ==, PINGPONG_ROUNDS);
}

/* ---- self, in_coroutine, entered, enter_if_inactive ---- */

typedef struct SelfData {
    Coroutine *co;
    Coroutine *outer;
    bool checked;
    int inner_runs;
} SelfData;

static void coroutine_fn self_inner_entry(void *opaque)
{
    SelfData *sd = opaque;

    sd->inner_runs++;
    g_assert_true(qemu_coroutine_entered(sd->outer));
    /* The outer coroutine is running (it entered us): a no-op. */
    qemu_coroutine_enter_if_inactive(sd->outer);
    qemu_coroutine_yield();
    sd->inner_runs++;
}

static void coroutine_fn self_entry(void *opaque)
{
    SelfData *sd = opaque;
    Coroutine *inner;

    g_assert_true(qemu_in_coroutine());
    g_assert(qemu_coroutine_self() == sd->co);
    g_assert_true(qemu_coroutine_entered(sd->co));
    g_assert(qemu_coroutine_get_aio_context(sd->co) ==
             qemu_get_aio_context());

    sd->outer = sd->co;
    inner = qemu_coroutine_create(self_inner_entry, sd);
    g_assert_false(qemu_coroutine_entered(inner));
    qemu_coroutine_enter_if_inactive(inner);
    g_assert_cmpint(sd->inner_runs, ==, 1);
    g_assert_false(qemu_coroutine_entered(inner));
    /* Yielded, so inactive: this enters it and it finishes. */
    qemu_coroutine_enter_if_inactive(inner);
    g_assert_cmpint(sd->inner_runs, ==, 2);
    sd->checked = true;
}

static void test_self(void)
{
    SelfData sd = { 0 };

    g_assert_false(qemu_in_coroutine());
    g_assert_null(qemu_coroutine_self());
    sd.co = qemu_coroutine_create(self_entry, &sd);
    qemu_coroutine_enter(sd.co);
    g_assert_true(sd.checked);
    g_assert_false(qemu_in_coroutine());
}

/* ---- co_queue_wakeup ordering ---- */

typedef struct WakeData {
    Order order;
    Coroutine *co[4];           /* A, B, C, D */
} WakeData;

static WakeData wake_data;

static void coroutine_fn wake_child_entry(void *opaque)
{
    int id = GPOINTER_TO_INT(opaque);

    order_add(&wake_data.order, id);
    if (id == 0) {
        /* A wakes D: D must run before B, which X woke after A. */
        aio_co_enter(qemu_get_current_aio_context(), wake_data.co[3]);
        order_add(&wake_data.order, 10);
    }
}

static void coroutine_fn wake_parent_entry(void *opaque)
{
    AioContext *ctx = qemu_get_current_aio_context();
    int i;

    for (i = 0; i < 3; i++) {
        aio_co_enter(ctx, wake_data.co[i]);
    }
    /* Nothing runs before we yield or terminate. */
    order_add(&wake_data.order, 100);
    g_assert_false(qemu_coroutine_entered(wake_data.co[0]));
    qemu_coroutine_yield();
    order_add(&wake_data.order, 200);
}

static void test_wakeup_order(void)
{
    static const int expected[] = { 100, 0, 10, 3, 1, 2 };
    Coroutine *parent;
    int i;

    memset(&wake_data, 0, sizeof(wake_data));
    for (i = 0; i < 4; i++) {
        wake_data.co[i] = qemu_coroutine_create(wake_child_entry,
                                                GINT_TO_POINTER(i));
    }
    parent = qemu_coroutine_create(wake_parent_entry, NULL);
    qemu_coroutine_enter(parent);
    order_check(&wake_data.order, expected, ARRAY_SIZE(expected));

    qemu_coroutine_enter(parent);
    g_assert_cmpint(wake_data.order.len, ==, ARRAY_SIZE(expected) + 1);
    g_assert_cmpint(wake_data.order.seq[ARRAY_SIZE(expected)], ==, 200);
}

/* ---- broken invariants abort ---- */

static void coroutine_fn yield_once_entry(void *opaque)
{
    qemu_coroutine_yield();
}

static void test_enter_scheduled_aborts(void)
{
    if (g_test_subprocess()) {
        Coroutine *co = qemu_coroutine_create(yield_once_entry, NULL);

        /* As aio_co_schedule() would have marked it. */
        qatomic_set(&co->scheduled, "test_scheduler_fn");
        qemu_coroutine_enter(co);
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("*scheduled by test_scheduler_fn*");
}

static Coroutine *reenter_target;

static void coroutine_fn reenter_self_entry(void *opaque)
{
    qemu_coroutine_enter(reenter_target);
}

static void test_enter_running_aborts(void)
{
    if (g_test_subprocess()) {
        reenter_target = qemu_coroutine_create(reenter_self_entry, NULL);
        qemu_coroutine_enter(reenter_target);
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("*already running*");
}

/* ---- stacks ---- */

typedef struct StackInfo {
    uintptr_t sp;
    uintptr_t map_start;
    uintptr_t map_end;
    char below_perms[8];
    uintptr_t below_end;
    bool found;
} StackInfo;

static void coroutine_fn stack_info_entry(void *opaque)
{
    StackInfo *si = opaque;
    g_autofree char *maps = NULL;
    g_auto(GStrv) lines = NULL;
    int i;

    si->sp = stack_probe();
    g_assert_true(g_file_get_contents("/proc/self/maps", &maps, NULL, NULL));
    lines = g_strsplit(maps, "\n", -1);
    for (i = 0; lines[i] && lines[i][0]; i++) {
        unsigned long start, end;
        char perms[8];

        g_assert_cmpint(sscanf(lines[i], "%lx-%lx %7s", &start, &end, perms),
                        ==, 3);
        if (si->sp >= start && si->sp < end) {
            si->map_start = start;
            si->map_end = end;
            si->found = true;
            break;
        }
        memcpy(si->below_perms, perms, sizeof(perms));
        si->below_end = end;
    }
}

static void test_stack_guard_page(void)
{
    StackInfo si = { 0 };

    qemu_coroutine_enter(qemu_coroutine_create(stack_info_entry, &si));
    g_assert_true(si.found);
    /* Our own mapping: at least the 1 MiB stack. */
    g_assert_cmpuint(si.map_end - si.map_start, >=, 1 << 20);
    /* Directly below it, an inaccessible guard. */
    g_assert_cmphex(si.below_end, ==, si.map_start);
    g_assert_cmpstr(si.below_perms, ==, "---p");
}

/*
 * Recurse far past 1 MiB.  Frames stay well under a page, so the return
 * address pushed by every call touches each page on the way down and the
 * guard page cannot be stepped over.  The array is indexed at run time so
 * that the compiler keeps all of it.
 */
static QEMU_NOINLINE int overflow_recurse(int depth)
{
    volatile char pad[256];

    pad[depth % sizeof(pad)] = depth;
    if (depth > (1 << 20)) {
        return 0;
    }
    return overflow_recurse(depth + 1) + pad[(depth * 7) % sizeof(pad)];
}

/* Where the guard page of the overflowing coroutine is (child only). */
static uintptr_t overflow_guard_start;
static uintptr_t overflow_guard_end;

static void overflow_segv_handler(int sig, siginfo_t *info, void *uc)
{
    uintptr_t addr = (uintptr_t)info->si_addr;
    static const char hit[] = "fault on the guard page\n";
    static const char miss[] = "fault elsewhere\n";

    if (addr >= overflow_guard_start && addr < overflow_guard_end) {
        (void)!write(STDERR_FILENO, hit, sizeof(hit) - 1);
    } else {
        (void)!write(STDERR_FILENO, miss, sizeof(miss) - 1);
    }
    _exit(3);
}

static void coroutine_fn overflow_entry(void *opaque)
{
    int *out = opaque;
    StackInfo si = { 0 };

    /*
     * The guard is the inaccessible mapping right below our stack, found
     * as the guard-page test does.  Without one, the range stays empty and
     * any fault counts as elsewhere.
     */
    stack_info_entry(&si);
    g_assert_true(si.found);
    if (si.below_end == si.map_start && !strcmp(si.below_perms, "---p")) {
        overflow_guard_start = si.map_start - sysconf(_SC_PAGESIZE);
        overflow_guard_end = si.map_start;
    }

    *out = overflow_recurse(0);
}

static void test_stack_overflow_faults(void)
{
    if (g_test_subprocess()) {
        static char altstack[64 * 1024];
        stack_t ss = { .ss_sp = altstack, .ss_size = sizeof(altstack) };
        struct sigaction sa = {
            .sa_sigaction = overflow_segv_handler,
            .sa_flags = SA_SIGINFO | SA_ONSTACK,
        };
        int out = 0;

        /* The faulting stack is unusable: handle it on another one. */
        g_assert_cmpint(sigaltstack(&ss, NULL), ==, 0);
        g_assert_cmpint(sigaction(SIGSEGV, &sa, NULL), ==, 0);
        qemu_coroutine_enter(qemu_coroutine_create(overflow_entry, &out));
        /* Reaching here means 1 MiB was overrun without a fault. */
        printf("no fault, %d\n", out);
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("*fault on the guard page*");
}

/* ---- pool ---- */

static void coroutine_fn nop_entry(void *opaque)
{
}

static void test_pool_reuse(void)
{
    Coroutine *first;
    Coroutine *co;
    unsigned int allocated;
    int i;

    first = qemu_coroutine_create(nop_entry, NULL);
    qemu_coroutine_enter(first);
    /* Terminated coroutines go back to this thread's pool, newest first. */
    co = qemu_coroutine_create(nop_entry, NULL);
    g_assert(co == first);
    qemu_coroutine_enter(co);

    allocated = qemu_coroutine_allocated();
    for (i = 0; i < 1000; i++) {
        qemu_coroutine_enter(qemu_coroutine_create(nop_entry, NULL));
    }
    g_assert_cmpuint(qemu_coroutine_allocated(), ==, allocated);
}

static void test_pool_bounded(void)
{
    unsigned int n = qemu_coroutine_pool_size() * 3;
    g_autofree Coroutine **cos = g_new(Coroutine *, n);
    unsigned int before;
    unsigned int i;

    g_assert_cmpuint(qemu_coroutine_pool_size(), >, 0);
    before = qemu_coroutine_allocated();
    for (i = 0; i < n; i++) {
        cos[i] = qemu_coroutine_create(yield_once_entry, NULL);
        qemu_coroutine_enter(cos[i]);
    }
    g_assert_cmpuint(qemu_coroutine_allocated(), >=, n);
    for (i = 0; i < n; i++) {
        qemu_coroutine_enter(cos[i]);
    }
    /* The pool keeps at most its size; the rest were unmapped. */
    g_assert_cmpuint(qemu_coroutine_allocated(), <=,
                     before + qemu_coroutine_pool_size());
}

static unsigned int pool_thread_count;

static gpointer pool_thread_fn(gpointer opaque)
{
    Coroutine *cos[8];
    int i;

    for (i = 0; i < 8; i++) {
        cos[i] = qemu_coroutine_create(yield_once_entry, NULL);
        qemu_aio_coroutine_enter(NULL, cos[i]);
    }
    for (i = 0; i < 8; i++) {
        qemu_aio_coroutine_enter(NULL, cos[i]);
    }
    pool_thread_count = qemu_coroutine_allocated();
    return NULL;
}

static void test_pool_thread_exit(void)
{
    unsigned int before = qemu_coroutine_allocated();
    GThread *t = g_thread_new("co-pool", pool_thread_fn, NULL);

    g_thread_join(t);
    /* The thread's pool held them when it finished ... */
    g_assert_cmpuint(pool_thread_count, >=, before + 8);
    /* ... and its exit released them. */
    g_assert_cmpuint(qemu_coroutine_allocated(), ==, before);
}

/* ---- CoMutex ---- */

static void coroutine_fn mutex_basic_entry(void *opaque)
{
    CoMutex *m = opaque;

    qemu_co_mutex_lock(m);
    qemu_co_mutex_assert_locked(m);
    g_assert(m->owner == qemu_coroutine_self());
    qemu_co_mutex_unlock(m);
    g_assert_null(m->owner);
    /* Uncontended: never yields, so we get here in one enter. */
    qemu_co_mutex_lock(m);
    qemu_co_mutex_unlock(m);
}

static void test_co_mutex_basic(void)
{
    CoMutex m;

    qemu_co_mutex_init(&m);
    qemu_coroutine_enter(qemu_coroutine_create(mutex_basic_entry, &m));
    g_assert_null(m.owner);
    qemu_co_mutex_destroy(&m);
}

#define FAIR_WAITERS 10

typedef struct FairData {
    CoMutex mutex;
    Order order;
    int inside;
    bool done;
} FairData;

static FairData fair;

static void coroutine_fn fair_holder_entry(void *opaque)
{
    qemu_co_mutex_lock(&fair.mutex);
    qemu_coroutine_yield();
    /* Every waiter has queued meanwhile. */
    qemu_co_mutex_unlock(&fair.mutex);
    /* A newcomer right after the release must queue behind them all. */
    qemu_co_mutex_lock(&fair.mutex);
    order_add(&fair.order, 100);
    qemu_co_mutex_unlock(&fair.mutex);
    fair.done = true;
}

static void coroutine_fn fair_waiter_entry(void *opaque)
{
    int id = GPOINTER_TO_INT(opaque);

    qemu_co_mutex_lock(&fair.mutex);
    g_assert_cmpint(fair.inside++, ==, 0);
    order_add(&fair.order, id);
    /*
     * Hold it across a trip through the event loop: the waiters behind
     * must stay queued, and the holder's re-lock must not overtake them.
     */
    aio_co_schedule(qemu_get_current_aio_context(), qemu_coroutine_self());
    qemu_coroutine_yield();
    fair.inside--;
    qemu_co_mutex_unlock(&fair.mutex);
}

static void test_co_mutex_fairness(void)
{
    Coroutine *holder;
    int expected[FAIR_WAITERS + 1];
    int i;

    memset(&fair, 0, sizeof(fair));
    qemu_co_mutex_init(&fair.mutex);
    holder = qemu_coroutine_create(fair_holder_entry, NULL);
    qemu_coroutine_enter(holder);

    /* Arrive in a scrambled id order: the order of arrival is what counts. */
    for (i = 0; i < FAIR_WAITERS; i++) {
        int id = (i * 7) % FAIR_WAITERS;

        expected[i] = id;
        qemu_coroutine_enter(qemu_coroutine_create(fair_waiter_entry,
                                                   GINT_TO_POINTER(id)));
    }
    expected[FAIR_WAITERS] = 100;
    g_assert_cmpint(fair.order.len, ==, 0);

    qemu_coroutine_enter(holder);
    wait_for_flag(&fair.done);
    order_check(&fair.order, expected, FAIR_WAITERS + 1);
    g_assert_null(fair.mutex.owner);
    qemu_co_mutex_destroy(&fair.mutex);
}

/* A waiter in an iothread resumes there when a main-context owner unlocks. */
typedef struct CrossData {
    CoMutex mutex;
    AioContext *waiter_ctx_before;
    AioContext *waiter_ctx_after;
    GThread *waiter_thread;
    bool done;
} CrossData;

static void coroutine_fn cross_holder_entry(void *opaque)
{
    CrossData *cd = opaque;

    qemu_co_mutex_lock(&cd->mutex);
    qemu_coroutine_yield();
    qemu_co_mutex_unlock(&cd->mutex);
}

static void coroutine_fn cross_waiter_entry(void *opaque)
{
    CrossData *cd = opaque;

    cd->waiter_ctx_before = qemu_get_current_aio_context();
    qemu_co_mutex_lock(&cd->mutex);
    cd->waiter_ctx_after = qemu_get_current_aio_context();
    cd->waiter_thread = g_thread_self();
    qemu_co_mutex_unlock(&cd->mutex);
    qatomic_store_release(&cd->done, true);
}

static void test_co_mutex_cross_context(void)
{
    CrossData cd = { 0 };
    GError *err = NULL;
    IOThread *iothread = iothread_create("co-test", &err);
    AioContext *io_ctx;
    Coroutine *holder;
    int64_t deadline = g_get_monotonic_time() + TEST_TIMEOUT_US;
    bool queued = false;

    g_assert_no_error(err);
    io_ctx = iothread_get_aio_context(iothread);
    qemu_co_mutex_init(&cd.mutex);

    holder = qemu_coroutine_create(cross_holder_entry, &cd);
    qemu_coroutine_enter(holder);

    aio_co_schedule(io_ctx, qemu_coroutine_create(cross_waiter_entry, &cd));

    /* Wait until the waiter has queued on the mutex in the iothread. */
    while (!queued) {
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_mutex_lock(&cd.mutex.lock);
        queued = !QSIMPLEQ_EMPTY(&cd.mutex.waiters);
        g_mutex_unlock(&cd.mutex.lock);
        if (!queued) {
            g_usleep(100);
        }
    }
    g_assert_false(qatomic_load_acquire(&cd.done));

    /* Unlock from the main context: the hand-over goes to the iothread. */
    qemu_coroutine_enter(holder);
    wait_for_flag(&cd.done);

    g_assert(cd.waiter_ctx_before == io_ctx);
    g_assert(cd.waiter_ctx_after == io_ctx);
    g_assert(cd.waiter_thread != g_thread_self());
    g_assert_null(cd.mutex.owner);

    iothread_destroy(iothread);
    qemu_co_mutex_destroy(&cd.mutex);
}

/*
 * Coroutines in the main context and in two iothreads hammer one CoMutex
 * and one CoRwlock, yielding inside the critical sections; lost updates
 * or two writers inside at once would show in the counters.
 */
#define STRESS_THREADS 2
#define STRESS_COROUTINES 4         /* per context */
#define STRESS_ROUNDS 300

typedef struct StressData {
    CoMutex mutex;
    CoRwlock rwlock;
    int counter;                    /* under mutex, non-atomic on purpose */
    int writers_in;                 /* atomic */
    int readers_in;                 /* atomic */
    int rw_counter;                 /* under the write lock */
    int finished;                   /* atomic */
    bool all_done;
} StressData;

static StressData stress;

/* Leave and re-enter through the context's event loop. */
static void coroutine_fn stress_bounce(void)
{
    aio_co_schedule(qemu_get_current_aio_context(), qemu_coroutine_self());
    qemu_coroutine_yield();
}

static void coroutine_fn stress_entry(void *opaque)
{
    AioContext *home = qemu_get_current_aio_context();
    int i;

    for (i = 0; i < STRESS_ROUNDS; i++) {
        int v;

        qemu_co_mutex_lock(&stress.mutex);
        v = stress.counter;
        if (i % 3 == 0) {
            stress_bounce();
        }
        stress.counter = v + 1;
        qemu_co_mutex_unlock(&stress.mutex);

        if (i % 4 == 0) {
            qemu_co_rwlock_wrlock(&stress.rwlock);
            g_assert_cmpint(qatomic_fetch_inc(&stress.writers_in), ==, 0);
            g_assert_cmpint(qatomic_read(&stress.readers_in), ==, 0);
            v = stress.rw_counter;
            stress_bounce();
            stress.rw_counter = v + 1;
            qatomic_dec(&stress.writers_in);
            qemu_co_rwlock_unlock(&stress.rwlock);
        } else {
            qemu_co_rwlock_rdlock(&stress.rwlock);
            qatomic_inc(&stress.readers_in);
            g_assert_cmpint(qatomic_read(&stress.writers_in), ==, 0);
            if (i % 2) {
                stress_bounce();
            }
            qatomic_dec(&stress.readers_in);
            qemu_co_rwlock_unlock(&stress.rwlock);
        }
        /* Resumed where we live, whoever released the lock. */
        g_assert(qemu_get_current_aio_context() == home);
    }
    if (qatomic_inc_fetch(&stress.finished) ==
        (STRESS_THREADS + 1) * STRESS_COROUTINES) {
        qatomic_store_release(&stress.all_done, true);
    }
}

static void test_co_lock_stress_threads(void)
{
    IOThread *iothreads[STRESS_THREADS];
    int total = (STRESS_THREADS + 1) * STRESS_COROUTINES;
    int t;
    int i;

    memset(&stress, 0, sizeof(stress));
    qemu_co_mutex_init(&stress.mutex);
    qemu_co_rwlock_init(&stress.rwlock);

    for (t = 0; t < STRESS_THREADS; t++) {
        g_autofree char *id = g_strdup_printf("co-stress-%d", t);
        GError *err = NULL;

        iothreads[t] = iothread_create(id, &err);
        g_assert_no_error(err);
    }
    for (i = 0; i < STRESS_COROUTINES; i++) {
        for (t = 0; t < STRESS_THREADS; t++) {
            aio_co_schedule(iothread_get_aio_context(iothreads[t]),
                            qemu_coroutine_create(stress_entry, NULL));
        }
        aio_co_schedule(qemu_get_aio_context(),
                        qemu_coroutine_create(stress_entry, NULL));
    }
    wait_for_flag(&stress.all_done);

    g_assert_cmpint(stress.counter, ==, total * STRESS_ROUNDS);
    g_assert_cmpint(stress.rw_counter, ==,
                    total * DIV_ROUND_UP(STRESS_ROUNDS, 4));
    g_assert_null(stress.mutex.owner);
    g_assert_cmpint(stress.rwlock.owners, ==, 0);

    for (t = 0; t < STRESS_THREADS; t++) {
        iothread_destroy(iothreads[t]);
    }
    qemu_co_mutex_destroy(&stress.mutex);
}

/* ---- CoRwlock ---- */

typedef enum RwOp {
    RW_RD,
    RW_WR,
    RW_UPGRADE,
    RW_DOWNGRADE,
    RW_UNLOCK,
} RwOp;

/*
 * A scripted lock user: each enter performs the next step of its script,
 * then yields.  "acquired" counts the steps that returned.
 */
typedef struct RwUser {
    int id;
    RwOp script[4];
    int nsteps;
    int acquired;
    Coroutine *co;
} RwUser;

typedef struct RwData {
    CoRwlock lock;
    Order order;
} RwData;

static RwData rw;

static void coroutine_fn rw_user_entry(void *opaque)
{
    RwUser *u = opaque;
    int i;

    for (i = 0; i < u->nsteps; i++) {
        switch (u->script[i]) {
        case RW_RD:
            qemu_co_rwlock_rdlock(&rw.lock);
            break;
        case RW_WR:
            qemu_co_rwlock_wrlock(&rw.lock);
            break;
        case RW_UPGRADE:
            qemu_co_rwlock_upgrade(&rw.lock);
            break;
        case RW_DOWNGRADE:
            qemu_co_rwlock_downgrade(&rw.lock);
            break;
        case RW_UNLOCK:
            qemu_co_rwlock_unlock(&rw.lock);
            break;
        }
        u->acquired++;
        /* Record completions of lock steps with the user's id. */
        if (u->script[i] != RW_UNLOCK) {
            order_add(&rw.order, u->id * 10 + i);
        }
        qemu_coroutine_yield();
    }
}

static void rw_setup(void)
{
    memset(&rw, 0, sizeof(rw));
    qemu_co_rwlock_init(&rw.lock);
}

static void rw_start(RwUser *u, int id, int nsteps, const RwOp *script)
{
    u->id = id;
    u->nsteps = nsteps;
    memcpy(u->script, script, nsteps * sizeof(*script));
    u->acquired = 0;
    u->co = qemu_coroutine_create(rw_user_entry, u);
    qemu_coroutine_enter(u->co);
}

/* Run @u's next step; it must not be waiting in the lock. */
static void rw_step(RwUser *u)
{
    g_assert_false(qemu_coroutine_entered(u->co));
    qemu_coroutine_enter(u->co);
}

static void test_rwlock_readers_share(void)
{
    static const RwOp rd_unlock[] = { RW_RD, RW_UNLOCK };
    RwUser r1, r2, r3;

    rw_setup();
    rw_start(&r1, 1, 2, rd_unlock);
    rw_start(&r2, 2, 2, rd_unlock);
    rw_start(&r3, 3, 2, rd_unlock);
    /* All three hold it at once. */
    g_assert_cmpint(r1.acquired + r2.acquired + r3.acquired, ==, 3);
    g_assert_cmpint(rw.lock.owners, ==, 3);
    rw_step(&r2);
    rw_step(&r1);
    rw_step(&r3);
    g_assert_cmpint(rw.lock.owners, ==, 0);
    /* Let them terminate. */
    rw_step(&r1);
    rw_step(&r2);
    rw_step(&r3);
}

static void test_rwlock_writer_excludes(void)
{
    static const RwOp wr_unlock[] = { RW_WR, RW_UNLOCK };
    static const RwOp rd_unlock[] = { RW_RD, RW_UNLOCK };
    static const int expected[] = { 10, 20, 30 };
    RwUser w1, r2, w3;

    rw_setup();
    rw_start(&w1, 1, 2, wr_unlock);
    g_assert_cmpint(rw.lock.owners, ==, -1);
    rw_start(&r2, 2, 2, rd_unlock);
    rw_start(&w3, 3, 2, wr_unlock);
    /* Neither a reader nor a second writer gets in. */
    g_assert_cmpint(r2.acquired, ==, 0);
    g_assert_cmpint(w3.acquired, ==, 0);

    rw_step(&w1);               /* unlock: the reader, not the writer */
    g_assert_cmpint(r2.acquired, ==, 1);
    g_assert_cmpint(w3.acquired, ==, 0);
    rw_step(&r2);               /* unlock: now the writer */
    g_assert_cmpint(w3.acquired, ==, 1);
    rw_step(&w3);
    order_check(&rw.order, expected, ARRAY_SIZE(expected));
    g_assert_cmpint(rw.lock.owners, ==, 0);
    rw_step(&w1);
    rw_step(&r2);
    rw_step(&w3);
}

static void test_rwlock_fair(void)
{
    static const RwOp wr_unlock[] = { RW_WR, RW_UNLOCK };
    static const RwOp rd_unlock[] = { RW_RD, RW_UNLOCK };
    static const int expected[] = { 10, 20, 30, 40 };
    RwUser r1, w2, r3, r4;

    rw_setup();
    rw_start(&r1, 1, 2, rd_unlock);
    rw_start(&w2, 2, 2, wr_unlock);
    /* A writer is queued: new readers wait behind it. */
    rw_start(&r3, 3, 2, rd_unlock);
    rw_start(&r4, 4, 2, rd_unlock);
    g_assert_cmpint(w2.acquired + r3.acquired + r4.acquired, ==, 0);

    rw_step(&r1);
    g_assert_cmpint(w2.acquired, ==, 1);
    g_assert_cmpint(r3.acquired + r4.acquired, ==, 0);
    rw_step(&w2);
    /* Both queued readers get it together. */
    g_assert_cmpint(r3.acquired + r4.acquired, ==, 2);
    g_assert_cmpint(rw.lock.owners, ==, 2);
    rw_step(&r3);
    rw_step(&r4);
    order_check(&rw.order, expected, ARRAY_SIZE(expected));
    rw_step(&r1);
    rw_step(&w2);
    rw_step(&r3);
    rw_step(&r4);
}

static void test_rwlock_upgrade(void)
{
    static const RwOp rd_up_unlock[] = { RW_RD, RW_UPGRADE, RW_UNLOCK };
    static const RwOp rd_unlock[] = { RW_RD, RW_UNLOCK };
    static const RwOp wr_unlock[] = { RW_WR, RW_UNLOCK };
    static const int expected[] = { 10, 20, 11, 30, 40 };
    RwUser r1, r2, w3, r4;

    rw_setup();
    rw_start(&r1, 1, 3, rd_up_unlock);
    rw_start(&r2, 2, 2, rd_unlock);
    rw_start(&w3, 3, 2, wr_unlock);     /* queued behind the readers */
    rw_step(&r1);                       /* upgrade: waits for r2 */
    g_assert_cmpint(r1.acquired, ==, 1);
    rw_start(&r4, 4, 2, rd_unlock);     /* queued */

    rw_step(&r2);                       /* last reader leaves */
    /* The upgrade goes ahead of the writer that queued before it. */
    g_assert_cmpint(r1.acquired, ==, 2);
    g_assert_cmpint(w3.acquired, ==, 0);
    g_assert_cmpint(rw.lock.owners, ==, -1);
    rw_step(&r1);                       /* unlock as writer */
    g_assert_cmpint(w3.acquired, ==, 1);
    g_assert_cmpint(r4.acquired, ==, 0);
    rw_step(&w3);
    g_assert_cmpint(r4.acquired, ==, 1);
    rw_step(&r4);
    order_check(&rw.order, expected, ARRAY_SIZE(expected));
    g_assert_cmpint(rw.lock.owners, ==, 0);
    rw_step(&r1);
    rw_step(&r2);
    rw_step(&w3);
    rw_step(&r4);
}

static void test_rwlock_upgrade_sole_reader(void)
{
    static const RwOp rd_up_unlock[] = { RW_RD, RW_UPGRADE, RW_UNLOCK };
    RwUser r1;

    rw_setup();
    rw_start(&r1, 1, 3, rd_up_unlock);
    rw_step(&r1);
    /* Nobody else reads: the upgrade is immediate. */
    g_assert_cmpint(r1.acquired, ==, 2);
    g_assert_cmpint(rw.lock.owners, ==, -1);
    rw_step(&r1);
    g_assert_cmpint(rw.lock.owners, ==, 0);
    rw_step(&r1);
}

static void test_rwlock_downgrade(void)
{
    static const RwOp wr_down_unlock[] = { RW_WR, RW_DOWNGRADE, RW_UNLOCK };
    static const RwOp rd_unlock[] = { RW_RD, RW_UNLOCK };
    static const RwOp wr_unlock[] = { RW_WR, RW_UNLOCK };
    RwUser w1, r2, w3, r4;

    rw_setup();
    rw_start(&w1, 1, 3, wr_down_unlock);
    rw_start(&r2, 2, 2, rd_unlock);
    rw_start(&w3, 3, 2, wr_unlock);
    rw_start(&r4, 4, 2, rd_unlock);
    g_assert_cmpint(r2.acquired + w3.acquired + r4.acquired, ==, 0);

    rw_step(&w1);               /* downgrade */
    g_assert_cmpint(w1.acquired, ==, 2);
    /* The reader at the head shares with us; the writer still waits ... */
    g_assert_cmpint(r2.acquired, ==, 1);
    g_assert_cmpint(w3.acquired, ==, 0);
    /* ... and so does the reader that queued behind the writer. */
    g_assert_cmpint(r4.acquired, ==, 0);
    g_assert_cmpint(rw.lock.owners, ==, 2);

    rw_step(&w1);
    g_assert_cmpint(w3.acquired, ==, 0);
    rw_step(&r2);
    g_assert_cmpint(w3.acquired, ==, 1);
    rw_step(&w3);
    g_assert_cmpint(r4.acquired, ==, 1);
    rw_step(&r4);
    g_assert_cmpint(rw.lock.owners, ==, 0);
    rw_step(&w1);
    rw_step(&r2);
    rw_step(&w3);
    rw_step(&r4);
}

/* ---- CoQueue ---- */

typedef struct QueueData {
    CoQueue queue;
    CoMutex mutex;
    Order order;
    bool use_mutex;
} QueueData;

static QueueData qd;

static void coroutine_fn queue_waiter_entry(void *opaque)
{
    int id = GPOINTER_TO_INT(opaque);

    if (qd.use_mutex) {
        qemu_co_mutex_lock(&qd.mutex);
        qemu_co_queue_wait(&qd.queue, &qd.mutex);
        /* Woken with the mutex taken again. */
        qemu_co_mutex_assert_locked(&qd.mutex);
        order_add(&qd.order, id);
        qemu_co_mutex_unlock(&qd.mutex);
    } else {
        qemu_co_queue_wait(&qd.queue, NULL);
        order_add(&qd.order, id);
    }
}

static void queue_start_waiters(int n, bool use_mutex)
{
    int i;

    memset(&qd, 0, sizeof(qd));
    qemu_co_queue_init(&qd.queue);
    qemu_co_mutex_init(&qd.mutex);
    qd.use_mutex = use_mutex;
    g_assert_true(qemu_co_queue_empty(&qd.queue));
    for (i = 0; i < n; i++) {
        qemu_coroutine_enter(qemu_coroutine_create(queue_waiter_entry,
                                                   GINT_TO_POINTER(i)));
        if (use_mutex) {
            /* The waiter dropped the mutex while it waits. */
            g_assert_null(qd.mutex.owner);
        }
    }
}

static void test_co_queue_next(void)
{
    static const int expected[] = { 0, 1, 2 };

    queue_start_waiters(3, false);
    g_assert_false(qemu_co_queue_empty(&qd.queue));
    g_assert_cmpint(qd.order.len, ==, 0);

    /* Outside coroutines, the waiter runs at once. */
    g_assert_true(qemu_co_queue_next(&qd.queue));
    g_assert_cmpint(qd.order.len, ==, 1);
    g_assert_true(qemu_co_enter_next(&qd.queue));
    g_assert_cmpint(qd.order.len, ==, 2);
    g_assert_true(qemu_co_queue_next(&qd.queue));
    g_assert_false(qemu_co_queue_next(&qd.queue));
    g_assert_false(qemu_co_enter_next(&qd.queue));
    g_assert_true(qemu_co_queue_empty(&qd.queue));
    order_check(&qd.order, expected, ARRAY_SIZE(expected));
}

static void test_co_queue_restart_all(void)
{
    static const int expected[] = { 0, 1, 2, 3, 4 };

    queue_start_waiters(5, true);
    qemu_co_queue_restart_all(&qd.queue);
    g_assert_true(qemu_co_queue_empty(&qd.queue));
    order_check(&qd.order, expected, ARRAY_SIZE(expected));
    g_assert_null(qd.mutex.owner);
    qemu_co_mutex_destroy(&qd.mutex);
}

static void coroutine_fn queue_waker_entry(void *opaque)
{
    /* From a coroutine, the woken run after we are done. */
    g_assert_true(qemu_co_enter_next(&qd.queue));
    g_assert_cmpint(qd.order.len, ==, 0);
    qemu_co_queue_restart_all(&qd.queue);
    g_assert_cmpint(qd.order.len, ==, 0);
    order_add(&qd.order, 100);
}

static void test_co_queue_from_coroutine(void)
{
    static const int expected[] = { 100, 0, 1, 2 };

    queue_start_waiters(3, false);
    qemu_coroutine_enter(qemu_coroutine_create(queue_waker_entry, NULL));
    order_check(&qd.order, expected, ARRAY_SIZE(expected));
}

/* ---- sleeps ---- */

typedef struct SleepData {
    QemuCoSleep w;
    int64_t ns;
    int64_t elapsed;
    bool wakeable;
    bool no_timer;
    bool done;
} SleepData;

static void coroutine_fn sleep_entry(void *opaque)
{
    SleepData *sd = opaque;
    int64_t start = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);

    if (sd->no_timer) {
        qemu_co_sleep(&sd->w);
    } else if (sd->wakeable) {
        qemu_co_sleep_ns_wakeable(&sd->w, QEMU_CLOCK_REALTIME, sd->ns);
    } else {
        qemu_co_sleep_ns(QEMU_CLOCK_REALTIME, sd->ns);
    }
    sd->elapsed = qemu_clock_get_ns(QEMU_CLOCK_REALTIME) - start;
    g_assert(qemu_get_current_aio_context() == qemu_get_aio_context());
    sd->done = true;
}

static void test_co_sleep_ns(void)
{
    SleepData sd = { .ns = 20 * SCALE_MS };

    qemu_coroutine_enter(qemu_coroutine_create(sleep_entry, &sd));
    g_assert_false(sd.done);
    wait_for_flag(&sd.done);
    g_assert_cmpint(sd.elapsed, >=, sd.ns);
}

static void test_co_sleep_wakeable(void)
{
    SleepData sd = { .ns = 60 * NANOSECONDS_PER_SECOND, .wakeable = true };
    int i;

    /* Nobody sleeps yet: a no-op. */
    qemu_co_sleep_wake(&sd.w);

    qemu_coroutine_enter(qemu_coroutine_create(sleep_entry, &sd));
    for (i = 0; i < 10; i++) {
        aio_poll(qemu_get_aio_context(), false);
    }
    g_assert_false(sd.done);
    qemu_co_sleep_wake(&sd.w);
    wait_for_flag(&sd.done);
    g_assert_cmpint(sd.elapsed, <, sd.ns);
    /* The sleeper is gone: waking again does nothing. */
    g_assert_null(sd.w.to_wake);
    qemu_co_sleep_wake(&sd.w);
}

static void test_co_sleep_no_timer(void)
{
    SleepData sd = { .no_timer = true };
    int i;

    qemu_coroutine_enter(qemu_coroutine_create(sleep_entry, &sd));
    for (i = 0; i < 10; i++) {
        aio_poll(qemu_get_aio_context(), false);
    }
    g_assert_false(sd.done);
    g_assert_nonnull(sd.w.to_wake);
    qemu_co_sleep_wake(&sd.w);
    wait_for_flag(&sd.done);
}

int main(int argc, char **argv)
{
    GError *err = NULL;

    g_test_init(&argc, &argv, NULL);
    if (!qemu_init_main_loop(&err)) {
        g_printerr("test-coroutine: %s\n", err->message);
        return 1;
    }

    g_test_add_func("/coroutine/basic", test_basic);
    g_test_add_func("/coroutine/nesting", test_nesting);
    g_test_add_func("/coroutine/yield", test_yield);
    g_test_add_func("/coroutine/pingpong-no-growth",
                    test_pingpong_no_growth);
    g_test_add_func("/coroutine/nested-reenter-no-growth",
                    test_nested_reenter_no_growth);
    g_test_add_func("/coroutine/self", test_self);
    g_test_add_func("/coroutine/wakeup-order", test_wakeup_order);
    g_test_add_func("/coroutine/enter-scheduled-aborts",
                    test_enter_scheduled_aborts);
    g_test_add_func("/coroutine/enter-running-aborts",
                    test_enter_running_aborts);
    g_test_add_func("/coroutine/stack/guard-page", test_stack_guard_page);
    g_test_add_func("/coroutine/stack/overflow-faults",
                    test_stack_overflow_faults);
    g_test_add_func("/coroutine/pool/reuse", test_pool_reuse);
    g_test_add_func("/coroutine/pool/bounded", test_pool_bounded);
    g_test_add_func("/coroutine/pool/thread-exit", test_pool_thread_exit);
    g_test_add_func("/coroutine/co-mutex/basic", test_co_mutex_basic);
    g_test_add_func("/coroutine/co-mutex/fairness", test_co_mutex_fairness);
    g_test_add_func("/coroutine/co-mutex/cross-context",
                    test_co_mutex_cross_context);
    g_test_add_func("/coroutine/co-lock/stress-threads",
                    test_co_lock_stress_threads);
    g_test_add_func("/coroutine/co-rwlock/readers-share",
                    test_rwlock_readers_share);
    g_test_add_func("/coroutine/co-rwlock/writer-excludes",
                    test_rwlock_writer_excludes);
    g_test_add_func("/coroutine/co-rwlock/fair", test_rwlock_fair);
    g_test_add_func("/coroutine/co-rwlock/upgrade", test_rwlock_upgrade);
    g_test_add_func("/coroutine/co-rwlock/upgrade-sole-reader",
                    test_rwlock_upgrade_sole_reader);
    g_test_add_func("/coroutine/co-rwlock/downgrade", test_rwlock_downgrade);
    g_test_add_func("/coroutine/co-queue/next", test_co_queue_next);
    g_test_add_func("/coroutine/co-queue/restart-all",
                    test_co_queue_restart_all);
    g_test_add_func("/coroutine/co-queue/from-coroutine",
                    test_co_queue_from_coroutine);
    g_test_add_func("/coroutine/sleep/ns", test_co_sleep_ns);
    g_test_add_func("/coroutine/sleep/wakeable", test_co_sleep_wakeable);
    g_test_add_func("/coroutine/sleep/no-timer", test_co_sleep_no_timer);

    return g_test_run();
}
