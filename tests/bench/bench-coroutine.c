/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Coroutine benchmark: the cost of create+enter+terminate, of an
 * enter/yield round trip and of one bare stack switch, in ns.
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * Each figure is the median of several timed runs after a warm-up run.
 * There is no reference tool to compare with, so no ratio is printed.
 */
#include "qemu/osdep.h"

#include <time.h>

#include "qemu/coroutine_int.h"

#define BENCH_RUNS 7

static int64_t bench_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * NANOSECONDS_PER_SECOND + ts.tv_nsec;
}

static int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;

    return x < y ? -1 : x > y;
}

/* Median ns per operation over BENCH_RUNS runs of @fn(@n). */
static double bench_median(int64_t (*fn)(unsigned long n), unsigned long n)
{
    double runs[BENCH_RUNS];
    int i;

    fn(n / 10 + 1);             /* warm-up: pool, page faults, caches */
    for (i = 0; i < BENCH_RUNS; i++) {
        runs[i] = (double)fn(n) / n;
    }
    qsort(runs, BENCH_RUNS, sizeof(runs[0]), bench_cmp_double);
    return runs[BENCH_RUNS / 2];
}

/* ---- create + enter + terminate ---- */

static unsigned long nop_count;

static void coroutine_fn bench_nop_entry(void *opaque)
{
    nop_count++;
}

static int64_t bench_lifecycle(unsigned long n)
{
    int64_t start = bench_now_ns();
    unsigned long i;

    for (i = 0; i < n; i++) {
        qemu_coroutine_enter(qemu_coroutine_create(bench_nop_entry, NULL));
    }
    return bench_now_ns() - start;
}

/* ---- enter / yield round trip ---- */

static bool yield_stop;

static void coroutine_fn bench_yield_entry(void *opaque)
{
    while (!yield_stop) {
        qemu_coroutine_yield();
    }
}

static int64_t bench_round_trip(unsigned long n)
{
    Coroutine *co = qemu_coroutine_create(bench_yield_entry, NULL);
    int64_t start, elapsed;
    unsigned long i;

    yield_stop = false;
    qemu_coroutine_enter(co);

    start = bench_now_ns();
    for (i = 0; i < n; i++) {
        qemu_coroutine_enter(co);
    }
    elapsed = bench_now_ns() - start;

    yield_stop = true;
    qemu_coroutine_enter(co);
    return elapsed;
}

/* ---- bare switch, without the core's bookkeeping ---- */

static Coroutine *switch_home;
static bool switch_stop;

static void coroutine_fn bench_switch_entry(void *opaque)
{
    Coroutine *self = opaque;

    while (!switch_stop) {
        qemu_coroutine_switch(self, switch_home, COROUTINE_YIELD);
    }
}

/* Returns the time of 2 * n switches; the caller halves the figure. */
static int64_t bench_switch(unsigned long n)
{
    Coroutine *co = qemu_coroutine_new();
    int64_t start, elapsed;
    unsigned long i;

    switch_home = qemu_coroutine_current();
    switch_stop = false;
    co->entry = bench_switch_entry;
    co->entry_arg = co;
    co->caller = switch_home;

    start = bench_now_ns();
    for (i = 0; i < n; i++) {
        qemu_coroutine_switch(switch_home, co, COROUTINE_ENTER);
    }
    elapsed = bench_now_ns() - start;

    switch_stop = true;
    g_assert(qemu_coroutine_switch(switch_home, co, COROUTINE_ENTER) ==
             COROUTINE_TERMINATE);
    qemu_coroutine_delete(co);
    return elapsed;
}

int main(int argc, char **argv)
{
    unsigned long n = 2000000;

    if (argc > 1) {
        n = strtoul(argv[1], NULL, 0);
        if (n == 0) {
            fprintf(stderr, "usage: %s [ITERATIONS]\n", argv[0]);
            return 1;
        }
    }

    printf("# coroutine switch backend: %s, %lu iterations, median of %d\n",
           qemu_coroutine_backend_name(), n, BENCH_RUNS);
    printf("coroutine create+enter+terminate: %.1f ns\n",
           bench_median(bench_lifecycle, n));
    printf("coroutine enter/yield round trip: %.1f ns\n",
           bench_median(bench_round_trip, n));
    printf("coroutine switch: %.1f ns\n",
           bench_median(bench_switch, n) / 2);
    return 0;
}
