/*
 * checkpatch self-test: the licence tag is missing from the top.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later (too late, line 4)
 */
#include "qemu/osdep.h"
