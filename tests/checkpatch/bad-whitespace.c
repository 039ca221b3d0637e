/* SPDX-License-Identifier: GPL-2.0-or-later */
/* checkpatch self-test: whitespace problems. */
#include "qemu/osdep.h"

int bad_ws(int a);
int bad_ws(int a)
{
	return a;
    a++; 
    a = a + 1 + 2 + 3 + 4 + 5 + 6 + 7 + 8 + 9 + 10 + 11 + 12 + 13 + 14 + 15 + 16;
    /* an exactly 80 column line is fine .................................... */
    return a;	
}
