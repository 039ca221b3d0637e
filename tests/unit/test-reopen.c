/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Reopen: read-only <-> read-write, driver options changed through the
 * driver's prepare/commit/abort, permission checks after the change, and
 * the drained section around it.
 *
 * Copyright (c) 2026 The Sluice authors
 */
#include "qemu/osdep.h"

#include "block/aio-wait.h"
#include "block/block_int.h"
#include "qemu/coroutine.h"
#include "qemu/keyval.h"
#include "qemu/main-loop.h"
#include "sysemu/block-backend.h"

/* A format with a metadata child and one option it can change live. */
typedef struct MetaState {
    uint64_t level;
    int commits;
    int aborts;
} MetaState;

static const char *const meta_options[] = { "file", "level", NULL };

static int meta_open(BlockDriverState *bs, JsonObject *options, int flags,
                     GError **errp)
{
    MetaState *s = bs->opaque;

    if (!keyval_get_uint(options, "level", 1, &s->level, errp)) {
        return -EINVAL;
    }
    return bdrv_open_child(bs, options, "file", BDRV_CHILD_IMAGE |
                           BDRV_CHILD_PRIMARY, false, errp) ? 0 : -EINVAL;
}

static int meta_reopen_prepare(BlockDriverState *bs, JsonObject *options,
                               int flags, void **opaque, GError **errp)
{
    uint64_t level;

    if (!keyval_get_uint(options, "level", 1, &level, errp)) {
        return -EINVAL;
    }
    if (level > 9) {
        error_setg(errp, "level must be at most 9");
        return -EINVAL;
    }
    *opaque = g_memdup2(&level, sizeof(level));
    return 0;
}

static void meta_reopen_commit(BlockDriverState *bs, void *opaque)
{
    MetaState *s = bs->opaque;

    s->level = *(uint64_t *)opaque;
    s->commits++;
    g_free(opaque);
}

static void meta_reopen_abort(BlockDriverState *bs, void *opaque)
{
    MetaState *s = bs->opaque;

    s->aborts++;
    g_free(opaque);
}

static int64_t coroutine_fn meta_getlength(BlockDriverState *bs)
{
    return bdrv_co_getlength(bs->file->bs);
}

static BlockDriver bdrv_meta = {
    .format_name = "test-meta",
    .instance_size = sizeof(MetaState),
    .bdrv_open = meta_open,
    .bdrv_reopen_prepare = meta_reopen_prepare,
    .bdrv_reopen_commit = meta_reopen_commit,
    .bdrv_reopen_abort = meta_reopen_abort,
    .bdrv_co_getlength = meta_getlength,
    .option_names = meta_options,
};

static BlockDriverState *open_json(const char *json)
{
    g_autoptr(JsonObject) opts = keyval_parse_json_filename(json, NULL);
    g_autoptr(GError) err = NULL;
    BlockDriverState *bs = bdrv_open_options(opts, 0, &err);

    g_assert_no_error(err);
    return bs;
}

static bool reopen_json(BlockDriverState *bs, const char *json,
                        GError **errp)
{
    g_autoptr(JsonObject) opts = keyval_parse_json_filename(json, NULL);

    g_assert_nonnull(opts);
    return bdrv_reopen(bs, opts, errp);
}

static void test_read_only_toggle(void)
{
    BlockDriverState *bs = open_json("json:{\"driver\":\"null-co\"}");

    g_assert_true(bdrv_is_read_only(bs));
    g_assert_true(reopen_json(bs, "json:{\"read-only\":false}", NULL));
    g_assert_false(bdrv_is_read_only(bs));
    g_assert_true(reopen_json(bs, "json:{\"read-only\":true}", NULL));
    g_assert_true(bdrv_is_read_only(bs));
    /* No options: nothing changes, which is allowed. */
    g_assert_true(bdrv_reopen(bs, NULL, NULL));
    bdrv_unref(bs);
}

static void test_read_only_with_writer(void)
{
    g_autoptr(GError) err = NULL;
    BlockDriverState *bs = open_json("json:{\"driver\":\"null-co\","
                                     "\"read-only\":false}");
    BlockBackend *writer = blk_new(qemu_get_aio_context(),
                                   BLK_PERM_CONSISTENT_READ |
                                   BLK_PERM_WRITE, BLK_PERM_ALL);
    uint8_t buf[512] = { 0 };

    g_assert_true(blk_insert_bs(writer, bs, NULL));
    g_assert_false(reopen_json(bs, "json:{\"read-only\":true}", &err));
    g_assert_cmpstr(err->message, ==, "Block node is read-only");
    /* Unchanged: still writable, and the writer still writes. */
    g_assert_false(bdrv_is_read_only(bs));
    g_assert_cmpint(blk_pwrite(writer, 0, 512, buf, 0), ==, 0);
    blk_unref(writer);
    bdrv_unref(bs);
}

static void test_driver_options(void)
{
    g_autoptr(GError) err = NULL;
    BlockDriverState *null = open_json("json:{\"driver\":\"null-co\","
                                       "\"size\":\"1M\"}");
    BlockDriverState *fmt = open_json("json:{\"driver\":\"test-meta\","
                                      "\"file\":{\"driver\":\"null-co\"}}");
    MetaState *s = fmt->opaque;

    /* null-co cannot change its options. */
    g_assert_true(reopen_json(null, "json:{\"size\":\"1M\"}", NULL));
    g_assert_false(reopen_json(null, "json:{\"size\":\"2M\"}", &err));
    g_assert_true(g_str_has_prefix(err->message, "Block format 'null-co' "
                                   "used by node '#block"));
    g_assert_true(g_str_has_suffix(err->message,
                                   "does not support reopening files"));
    g_clear_error(&err);
    g_assert_false(reopen_json(null, "json:{\"bogus\":1}", &err));
    g_assert_cmpstr(err->message, ==, "Block protocol 'null-co' doesn't "
                    "support the option 'bogus'");
    g_clear_error(&err);

    /* test-meta can: prepare, then commit. */
    g_assert_true(reopen_json(fmt, "json:{\"level\":5}",
                              NULL));
    g_assert_cmpuint(s->level, ==, 5);
    g_assert_cmpint(s->commits, ==, 1);

    /* A refusal in prepare changes nothing and needs no abort. */
    g_assert_false(reopen_json(fmt, "json:{\"level\":10}", &err));
    g_assert_cmpstr(err->message, ==, "level must be at most 9");
    g_assert_cmpuint(s->level, ==, 5);
    g_assert_cmpint(s->aborts, ==, 0);
    g_clear_error(&err);

    bdrv_unref(null);
    bdrv_unref(fmt);
}

static void test_perms_follow(void)
{
    g_autoptr(GError) err = NULL;
    BlockDriverState *fmt = open_json("json:{\"driver\":\"test-meta\","
                                      "\"read-only\":false,"
                                      "\"file\":{\"driver\":\"null-co\"}}");
    MetaState *s = fmt->opaque;
    BlockBackend *writer;

    g_assert_cmpuint(fmt->file->perm & BLK_PERM_WRITE, !=, 0);
    g_assert_true(reopen_json(fmt, "json:{\"read-only\":true}", NULL));
    /* Read-only now: it no longer writes its metadata. */
    g_assert_cmpuint(fmt->file->perm & BLK_PERM_WRITE, ==, 0);

    /* Back to read-write fails after prepare if a parent forbids it. */
    writer = blk_new(qemu_get_aio_context(), BLK_PERM_CONSISTENT_READ,
                     BLK_PERM_CONSISTENT_READ);
    g_assert_true(blk_insert_bs(writer, fmt->file->bs, NULL));
    g_assert_false(reopen_json(fmt, "json:{\"read-only\":false}", &err));
    g_assert_nonnull(strstr(err->message, "does not allow 'write'"));
    g_assert_cmpint(s->aborts, ==, 1);
    g_assert_true(bdrv_is_read_only(fmt));
    g_assert_cmpuint(fmt->file->perm & BLK_PERM_WRITE, ==, 0);

    blk_unref(writer);
    bdrv_unref(fmt);
}

typedef struct ReqData {
    BlockBackend *blk;
    bool done;
} ReqData;

static void coroutine_fn read_entry(void *opaque)
{
    ReqData *r = opaque;
    uint8_t buf[512];
    QEMUIOVector qiov;

    qemu_iovec_init_buf(&qiov, buf, sizeof(buf));
    g_assert_cmpint(blk_co_preadv(r->blk, 0, 512, &qiov, 0), ==, 0);
    r->done = true;
}

static void test_reopen_drains(void)
{
    g_autoptr(JsonObject) opts = keyval_parse_json_filename(
        "json:{\"latency-ns\":\"20000000\"}", NULL);
    BlockBackend *blk = blk_new_open_driver(bdrv_find_format("null-aio"),
                                            NULL, opts, 0, NULL);
    ReqData r = { .blk = blk };

    qemu_coroutine_enter(qemu_coroutine_create(read_entry, &r));
    g_assert_false(r.done);
    g_assert_true(bdrv_reopen(blk_bs(blk), NULL, NULL));
    /* The reopen ran drained: the read finished first. */
    g_assert_true(r.done);
    blk_unref(blk);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_assert_true(qemu_init_main_loop(NULL));
    bdrv_register(&bdrv_meta);

    g_test_add_func("/reopen/read-only-toggle", test_read_only_toggle);
    g_test_add_func("/reopen/read-only-with-writer",
                    test_read_only_with_writer);
    g_test_add_func("/reopen/driver-options", test_driver_options);
    g_test_add_func("/reopen/perms-follow", test_perms_follow);
    g_test_add_func("/reopen/drains", test_reopen_drains);
    return g_test_run();
}
