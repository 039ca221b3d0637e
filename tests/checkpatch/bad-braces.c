/* SPDX-License-Identifier: GPL-2.0-or-later */
/* checkpatch self-test: blocks without braces. */
#include "qemu/osdep.h"

int bad_braces(int a, int *p);
int bad_braces(int a, int *p)
{
    int i;

    if (a)
        return 1;
    if (a > 1) return 2;
    if (a > 2 &&
        a < 10)
        a = 0;
    if (a == 3)
    {
        a = 4;
    }
    if (a) {
        a++;
    } else
        a--;
    if (a) {
        a++;
    } else a--;
    if (a) {
        a++;
    }
    else {
        a--;
    }
    if (a) {
        a++;
    } else if (a < 0)
        a = 0;
    for (i = 0; i < a; i++)
        p[i] = 0;
    for (i = 0;
         i < a;
         i++) p[i] = 1;
    while (a > 0)
        a--;
    while (*p++);
    do
    {
        a++;
    } while (a < 5);
    switch (a)
    {
    default:
        break;
    }
    SAMPLE_FOREACH(i, p)
        a++;
    return a;
}
