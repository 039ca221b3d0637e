/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Opening images by file name: plain names with format probing, json:
 * names, options from the caller, and the write restriction on block 0
 * of a probed raw image.
 *
 * Copyright (c) 2026 The Sluice authors
 */
#include "qemu/osdep.h"

#include "block/block_int.h"
#include "qemu/keyval.h"
#include "qemu/main-loop.h"
#include "sysemu/block-backend.h"

/* A format recognised by its magic, to compete with raw in probing. */
static int magic_probe(const uint8_t *buf, int buf_size,
                       const char *filename)
{
    return buf_size >= 4 && memcmp(buf, "TMAG", 4) == 0 ? 100 : 0;
}

static const char *const magic_options[] = { "file", NULL };

static int magic_open(BlockDriverState *bs, JsonObject *options, int flags,
                      GError **errp)
{
    return bdrv_open_child(bs, options, "file", BDRV_CHILD_IMAGE |
                           BDRV_CHILD_PRIMARY, false, errp) ? 0 : -EINVAL;
}

static int64_t coroutine_fn magic_getlength(BlockDriverState *bs)
{
    return bdrv_co_getlength(bs->file->bs);
}

static BlockDriver bdrv_magic = {
    .format_name = "test-magic",
    .bdrv_open = magic_open,
    .bdrv_probe = magic_probe,
    .bdrv_co_getlength = magic_getlength,
    .option_names = magic_options,
};

static char *make_image(const char *name, const char *head)
{
    g_autofree char *dir = g_dir_make_tmp("sluice-open-XXXXXX", NULL);
    char *path = g_build_filename(dir, name, NULL);
    g_autofree uint8_t *buf = g_malloc0(65536);

    memcpy(buf, head, strlen(head));
    g_assert_true(g_file_set_contents(path, (char *)buf, 65536, NULL));
    return path;
}

static void remove_image(char *path)
{
    g_autofree char *dir = g_path_get_dirname(path);

    g_assert_cmpint(unlink(path), ==, 0);
    g_assert_cmpint(rmdir(dir), ==, 0);
    g_free(path);
}

static void test_probe_raw(void)
{
    char *path = make_image("raw.img", "");
    g_autoptr(GError) err = NULL;
    BlockDriverState *bs = bdrv_open(path, NULL, BDRV_O_RDWR, &err);

    g_assert_no_error(err);
    g_assert_cmpstr(bdrv_get_format_name(bs), ==, "raw");
    g_assert_true(bdrv_is_probed_raw(bs));
    g_assert_cmpstr(bdrv_get_format_name(bs->file->bs), ==, "file");
    g_assert_cmpuint(bs->bl.request_alignment, >=, 512);
    bdrv_unref(bs);

    /* Naming the format turns probing, and its restrictions, off. */
    {
        g_autoptr(JsonObject) opts = keyval_parse("driver=raw", NULL, NULL);

        bs = bdrv_open(path, opts, BDRV_O_RDWR, &err);
        g_assert_no_error(err);
        g_assert_false(bdrv_is_probed_raw(bs));
        g_assert_cmpuint(bs->bl.request_alignment, ==, 1);
        bdrv_unref(bs);
    }
    remove_image(path);
}

static void test_probe_magic(void)
{
    char *path = make_image("magic.img", "TMAG");
    g_autoptr(GError) err = NULL;
    BlockDriverState *bs = bdrv_open(path, NULL, 0, &err);

    g_assert_no_error(err);
    g_assert_cmpstr(bdrv_get_format_name(bs), ==, "test-magic");
    g_assert_false(bdrv_is_probed_raw(bs));
    bdrv_unref(bs);
    remove_image(path);
}

static void test_probed_raw_block0(void)
{
    char *path = make_image("block0.img", "");
    g_autoptr(GError) err = NULL;
    BlockDriverState *bs = bdrv_open(path, NULL, BDRV_O_RDWR, &err);
    BlockBackend *blk = blk_new(qemu_get_aio_context(),
                                BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE,
                                BLK_PERM_ALL);
    uint8_t buf[512] = "TMAG";

    g_assert_no_error(err);
    g_assert_true(blk_insert_bs(blk, bs, NULL));
    bdrv_unref(bs);

    /* Turning block 0 into another format's header is refused... */
    g_assert_cmpint(blk_pwrite(blk, 0, 512, buf, 0), ==, -EPERM);
    g_assert_cmpint(blk_pwrite(blk, 0, 4, buf, 0), ==, -EPERM);
    /* ...elsewhere, or harmless data, is fine. */
    g_assert_cmpint(blk_pwrite(blk, 512, 512, buf, 0), ==, 0);
    memset(buf, 0x51, sizeof(buf));
    g_assert_cmpint(blk_pwrite(blk, 0, 512, buf, 0), ==, 0);
    g_assert_cmpint(blk_pwrite(blk, 100, 10, buf, 0), ==, 0);
    blk_unref(blk);
    remove_image(path);
}

static void test_json_names(void)
{
    char *path = make_image("json.img", "TMAG");
    g_autofree char *with_driver = g_strdup_printf(
        "json:{\"driver\":\"raw\",\"file\":{\"driver\":\"file\","
        "\"filename\":\"%s\"}}", path);
    g_autofree char *probing = g_strdup_printf(
        "json:{\"file\":{\"driver\":\"file\",\"filename\":\"%s\"}}", path);
    g_autoptr(GError) err = NULL;
    BlockDriverState *bs;

    bs = bdrv_open(with_driver, NULL, 0, &err);
    g_assert_no_error(err);
    g_assert_cmpstr(bdrv_get_format_name(bs), ==, "raw");
    g_assert_false(bdrv_is_probed_raw(bs));
    bdrv_unref(bs);

    bs = bdrv_open(probing, NULL, 0, &err);
    g_assert_no_error(err);
    g_assert_cmpstr(bdrv_get_format_name(bs), ==, "test-magic");
    bdrv_unref(bs);

    g_assert_null(bdrv_open("json:{\"driver\":", NULL, 0, &err));
    g_assert_true(g_str_has_prefix(err->message,
                                   "Could not parse the JSON options"));
    remove_image(path);
}

static void test_missing_file(void)
{
    g_autoptr(GError) err = NULL;

    g_assert_null(bdrv_open("/nonexistent/sluice.img", NULL, 0, &err));
    g_assert_cmpstr(err->message, ==, "Could not open "
                    "'/nonexistent/sluice.img': No such file or directory");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_assert_true(qemu_init_main_loop(NULL));
    bdrv_register(&bdrv_magic);

    g_test_add_func("/open/probe-raw", test_probe_raw);
    g_test_add_func("/open/probe-magic", test_probe_magic);
    g_test_add_func("/open/probed-raw-block0", test_probed_raw_block0);
    g_test_add_func("/open/json-names", test_json_names);
    g_test_add_func("/open/missing-file", test_missing_file);
    return g_test_run();
}
