/* SPDX-License-Identifier: GPL-2.0-or-later */
/* checkpatch self-test: macro bodies without braces. */
#ifndef BAD_MACROS_H
#define BAD_MACROS_H

#define BAD_CHECK(x) do {                                                 \
    if (!(x))                                                             \
        bad_fail();                                                       \
} while (0)

#define BAD_ONE_LINE(x) do { if (x) bad_fail(); } while (0)

#define BAD_ELSE(x) do {                                                  \
    if (x) {                                                              \
        bad_a();                                                          \
    } else                                                                \
        bad_b();                                                          \
} while (0)

#endif
