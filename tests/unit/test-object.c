/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * User-creatable objects: --object syntax (keyval and JSON), QEMU's
 * messages for bad ids, types and properties, lookup and deletion.
 *
 * Copyright (c) 2026 The Sluice authors
 */
#include "qemu/osdep.h"

#include "qemu/iothread.h"
#include "qemu/main-loop.h"
#include "qemu/object.h"

/* ---- User-creatable objects ---- */

static void assert_object_fails(const char *optarg, const char *message)
{
    g_autoptr(GError) err = NULL;

    g_assert_false(user_creatable_add_str(optarg, &err));
    g_assert_cmpstr(err->message, ==, message);
}

static void test_objects(void)
{
    g_autoptr(GError) err = NULL;
    IOThread *iot;

    g_assert_true(user_creatable_add_str("iothread,id=io0,poll-max-ns=0",
                                         &err));
    g_assert_no_error(err);
    iot = user_creatable_find("iothread", "io0");
    g_assert_nonnull(iot);
    g_assert_cmpstr(iothread_get_id(iot), ==, "io0");
    g_assert_null(user_creatable_find("throttle-group", "io0"));

    g_assert_true(user_creatable_add_str("{\"qom-type\": \"iothread\", "
                                         "\"id\": \"io1\"}", &err));
    g_assert_no_error(err);

    assert_object_fails("iothread,id=io0",
                        "attempt to add duplicate property 'io0' to object "
                        "(type 'container')");
    assert_object_fails("iothread", "Parameter 'id' is missing");
    assert_object_fails("id=x", "Parameter 'qom-type' is missing");
    assert_object_fails("nosuch,id=x",
                        "Parameter 'qom-type' does not accept value "
                        "'nosuch'");
    assert_object_fails("iothread,id=0a",
                        "Parameter 'id' expects an identifier\n"
                        "Identifiers consist of letters, digits, '-', '.', "
                        "'_', starting with a letter.");
    assert_object_fails("iothread,id=x,foo=1",
                        "Parameter 'foo' is unexpected");
    g_assert_null(user_creatable_find("iothread", "x"));

    g_assert_true(user_creatable_del("io0", &err));
    g_assert_null(user_creatable_find("iothread", "io0"));
    g_assert_false(user_creatable_del("io0", &err));
    g_assert_cmpstr(err->message, ==, "object 'io0' not found");
    /* What is left goes at exit. */
    user_creatable_cleanup();
    g_assert_null(user_creatable_find("iothread", "io1"));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_assert_true(qemu_init_main_loop(NULL));
    g_test_add_func("/object/iothread", test_objects);
    return g_test_run();
}
