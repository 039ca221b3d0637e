/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * checkpatch self-test: macros in the usual shapes must pass.
 *
 * Copyright (c) 2026 The Sluice authors
 */
#ifndef GOOD_MACROS_H
#define GOOD_MACROS_H

#if defined(__linux__) && \
    !defined(SAMPLE_NO_LINUX)
#define SAMPLE_LINUX 1
#else
#define SAMPLE_LINUX 0
#endif

#define SAMPLE_SWAP(a, b) do { \
    typeof(a) tmp_ = (a);      \
    (a) = (b);                 \
    (b) = tmp_;                \
} while (0)

#define SAMPLE_CHECK(x) do {                                              \
    if (!(x)) {                                                           \
        sample_fail(#x);                                                  \
    } else if ((x) > 1) {                                                 \
        sample_note();                                                    \
    } else {                                                              \
        sample_ok();                                                      \
    }                                                                     \
} while (0)

/* Open-ended loop heads: the user supplies the body. */
#define SAMPLE_LIST_FOREACH(var, head) \
    for ((var) = (head)->first; (var); (var) = (var)->next)

#define SAMPLE_LIST_FOREACH_SAFE(var, head, tmp)                         \
    for ((var) = (head)->first;                                           \
         (var) && ((tmp) = (var)->next, 1);                               \
         (var) = (tmp))

/* A loop head ending one macro, straight before the next one. */
#define SAMPLE_ARRAY_FOREACH(var, arr) for ((var) = (arr); (var); (var)++)
#define SAMPLE_AFTER_FOREACH 1

/* Chained heads: the user's body goes into the inner if. */
#define SAMPLE_FOREACH_LIVE(var, head) \
    SAMPLE_LIST_FOREACH(var, head)     \
        if ((var)->dead) {             \
        } else

#define SAMPLE_GRID_FOREACH(i, j, n) \
    for ((i) = 0; (i) < (n); (i)++)   \
        for ((j) = 0; (j) < (n); (j)++)

#define SAMPLE_WAIT_WHILE(cond) ({                                        \
    bool waited_ = false;                                                 \
    while ((cond)) {                                                      \
        sample_poll();                                                    \
        waited_ = true;                                                   \
    }                                                                     \
    waited_;                                                              \
})

#define SAMPLE_ONE_LINE(x) do { sample_use(x); } while (0)

static inline int sample_inline(int x)
{
    return x > 0 ? x
                 : -x;
}

#endif /* GOOD_MACROS_H */
