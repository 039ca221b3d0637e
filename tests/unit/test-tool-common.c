/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The tools' shared helpers: sizes printed as QEMU prints them, and the
 * program name in messages.
 *
 * Copyright (c) 2026 The Sluice authors
 */
#include "qemu/osdep.h"

#include "tools/tool-common.h"

static void test_size_to_str(void)
{
    /* Figures checked against qemu-img info's "virtual size". */
    static const struct {
        uint64_t bytes;
        const char *text;
    } sizes[] = {
        { 0, "0 B" },
        { 512, "512 B" },
        { 999, "999 B" },
        { 1000, "0.977 KiB" },
        { 1024, "1 KiB" },
        { 1536, "1.5 KiB" },
        { 999424, "976 KiB" },
        { 1047552, "0.999 MiB" },
        { 1048064, "1 MiB" },
        { 12345856, "11.8 MiB" },
        { 1073741824, "1 GiB" },
        { 1099511627776ULL, "1 TiB" },
        { 1ULL << 50, "1 PiB" },
        { 1ULL << 60, "1 EiB" },
        { UINT64_MAX, "16 EiB" },
    };
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(sizes); i++) {
        g_autofree char *s = size_to_str(sizes[i].bytes);

        g_assert_cmpstr(s, ==, sizes[i].text);
    }
}

static void test_progname(void)
{
    g_assert_cmpstr(tool_progname(), ==, "test-tool-common");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    tool_init("/some/dir/test-tool-common");
    g_test_add_func("/tool-common/size-to-str", test_size_to_str);
    g_test_add_func("/tool-common/progname", test_progname);
    return g_test_run();
}
