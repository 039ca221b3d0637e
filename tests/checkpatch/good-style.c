/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * checkpatch self-test: ordinary code in house style that must pass.
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * Keywords in comments are ignored: if (x) return; else do while (1);
 */
#include "qemu/osdep.h"

#define SAMPLE_MAX 16

typedef struct Sample {
    int a;
    unsigned int flags : 3;
    const char *name;
} Sample;

typedef enum {
    SAMPLE_A,
    SAMPLE_B = 1 << 2,
    SAMPLE__MAX,
} SampleKind;

static const char *const sample_names[] = {
    [SAMPLE_A] = "a",
    [SAMPLE_B] = "if (b) return",
};

static Sample samples[] = {
    { .a = 1, .name = "one" },
    {
        .a = 2,
        .name = "two; else",
    },
};

static int sample_helper(int a, int b,
                         int c)
{
    return a + b + c;
}

static int
sample_old_style_head(void)
{
    return 0;
}

int sample_loops(int n, const char *s);
int sample_loops(int n, const char *s)
{
    int i, total = 0;
    char quote = '"';
    char brace = '{';

    for (i = 0; i < n; i++) {
        total += i;
    }
    for (;;) {
        break;
    }
    while (total > 100) {
        total /= 2;
    }
    do {
        total++;
    } while (total < 10);

    if (total > 5 &&
        n < 3) {
        total = 0;
    } else if (total == 1 ||
               (n == 2 &&
                s[0] == quote)) {
        total = 1;
    } else {
        total = brace;
    }

    switch (n) {
    case 0:
        total = sample_helper(1, 2,
                              3);
        break;
    case 1: {
        int x = total ? total
                      : n;
        total = x;
        break;
    }
    default:
        break;
    }

    if (s == NULL) {
        goto out;
    }
    total += (int)strlen("while (1); do else")
             + 1;

out:
    return total +
           sample_old_style_head();
}

/* Iterator macros with a brace on the same line. */
#define SAMPLE_FOREACH(var, arr) \
    for ((var) = (arr); (var) < (arr) + ARRAY_SIZE(arr); (var)++)

int sample_walk(void);
int sample_walk(void)
{
    Sample *sp;
    int sum = 0;

    SAMPLE_FOREACH(sp, samples) {
        sum += sp->a;
    }
    return sum + (int)ARRAY_SIZE(sample_names);
}
