/* SPDX-License-Identifier: GPL-2.0-or-later */
/* checkpatch self-test: indentation that is not a multiple of 4. */
#include "qemu/osdep.h"

int bad_indent(int a);
int bad_indent(int a)
{
   int b = 1;

    if (a) {
          b++;
    }
    switch (a) {
      case 1:
        break;
    }
    b = bad_call(a,
                 b);  /* aligned continuation: fine */
  return a + b;
}
