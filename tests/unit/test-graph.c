/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The node graph: opening from options with generic options and child
 * references, permissions and their conflicts, drivers that refuse
 * permissions, and context moves through a diamond.
 *
 * Copyright (c) 2026 The Sluice authors
 */
#include "qemu/osdep.h"

#include "block/aio-wait.h"
#include "block/block_int.h"
#include "qemu/iothread.h"
#include "qemu/keyval.h"
#include "qemu/main-loop.h"
#include "sysemu/block-backend.h"

/* ---- Test drivers ---- */

/* A format-like node: "file" as metadata+data, optional "extra". */
static const char *const twochild_options[] = { "file", "extra", NULL };

typedef struct TwoState {
    int checks;
    int sets;
    int aborts;
} TwoState;

static int twochild_open(BlockDriverState *bs, JsonObject *options,
                         int flags, GError **errp)
{
    GError *local_err = NULL;

    if (!bdrv_open_child(bs, options, "file", BDRV_CHILD_IMAGE |
                         BDRV_CHILD_PRIMARY, false, errp)) {
        return -EINVAL;
    }
    /* Plain data: the parents' needs pass through to it. */
    if (!bdrv_open_child(bs, options, "extra", BDRV_CHILD_DATA, true,
                         &local_err) && local_err) {
        g_propagate_error(errp, local_err);
        return -EINVAL;
    }
    return 0;
}

static int twochild_check_perm(BlockDriverState *bs, uint64_t perm,
                               uint64_t shared, GError **errp)
{
    TwoState *s = bs->opaque;

    s->checks++;
    return 0;
}

static void twochild_set_perm(BlockDriverState *bs, uint64_t perm,
                              uint64_t shared)
{
    TwoState *s = bs->opaque;

    s->sets++;
}

static void twochild_abort_perm_update(BlockDriverState *bs)
{
    TwoState *s = bs->opaque;

    s->aborts++;
}

static int64_t coroutine_fn twochild_getlength(BlockDriverState *bs)
{
    return bdrv_co_getlength(bs->file->bs);
}

static BlockDriver bdrv_twochild = {
    .format_name = "test-format",
    .instance_size = sizeof(TwoState),
    .bdrv_open = twochild_open,
    .bdrv_check_perm = twochild_check_perm,
    .bdrv_set_perm = twochild_set_perm,
    .bdrv_abort_perm_update = twochild_abort_perm_update,
    .bdrv_co_getlength = twochild_getlength,
    .option_names = twochild_options,
};

/* A protocol whose permission hooks count calls and may refuse writes. */
typedef struct LockedState {
    bool refuse_write;
    int checks;
    int sets;
    int aborts;
    uint64_t perm;
} LockedState;

static const char *const locked_options[] = { "refuse-write", NULL };

static int locked_open(BlockDriverState *bs, JsonObject *options, int flags,
                       GError **errp)
{
    LockedState *s = bs->opaque;

    return keyval_get_bool(options, "refuse-write", false, &s->refuse_write,
                           errp) ? 0 : -EINVAL;
}

static int locked_check_perm(BlockDriverState *bs, uint64_t perm,
                             uint64_t shared, GError **errp)
{
    LockedState *s = bs->opaque;

    s->checks++;
    if (s->refuse_write && (perm & BLK_PERM_WRITE)) {
        error_setg(errp, "Failed to get \"write\" lock");
        return -EAGAIN;
    }
    return 0;
}

static void locked_set_perm(BlockDriverState *bs, uint64_t perm,
                            uint64_t shared)
{
    LockedState *s = bs->opaque;

    s->sets++;
    s->perm = perm;
}

static void locked_abort_perm_update(BlockDriverState *bs)
{
    LockedState *s = bs->opaque;

    s->aborts++;
}

static int64_t coroutine_fn locked_getlength(BlockDriverState *bs)
{
    return 1 << 20;
}

static BlockDriver bdrv_locked = {
    .format_name = "test-locked",
    .instance_size = sizeof(LockedState),
    .is_protocol = true,
    .bdrv_open = locked_open,
    .bdrv_check_perm = locked_check_perm,
    .bdrv_set_perm = locked_set_perm,
    .bdrv_abort_perm_update = locked_abort_perm_update,
    .bdrv_co_getlength = locked_getlength,
    .option_names = locked_options,
};

/* ---- Helpers ---- */

static BlockDriverState *open_json(const char *json, GError **errp)
{
    g_autoptr(JsonObject) opts = keyval_parse_json_filename(json, errp);

    if (!opts) {
        return NULL;
    }
    return bdrv_open_options(opts, 0, errp);
}

static void assert_open_fails(const char *json, const char *message)
{
    g_autoptr(GError) err = NULL;

    g_assert_null(open_json(json, &err));
    g_assert_nonnull(err);
    g_assert_cmpstr(err->message, ==, message);
}

/* ---- Tests ---- */

static void test_open_options(void)
{
    g_autoptr(GError) err = NULL;
    BlockDriverState *bs;

    bs = open_json("json:{\"driver\":\"null-co\",\"node-name\":\"opt\","
                   "\"read-only\":false,\"size\":\"4k\","
                   "\"cache\":{\"direct\":true,\"no-flush\":true},"
                   "\"discard\":\"unmap\"}", &err);
    g_assert_no_error(err);
    g_assert_cmpstr(bdrv_get_node_name(bs), ==, "opt");
    g_assert_false(bdrv_is_read_only(bs));
    g_assert_cmpint(bs->open_flags & (BDRV_O_NOCACHE | BDRV_O_NO_FLUSH |
                                      BDRV_O_UNMAP), ==,
                    BDRV_O_NOCACHE | BDRV_O_NO_FLUSH | BDRV_O_UNMAP);
    bdrv_unref(bs);

    /* read-only is the default without inherited flags. */
    bs = open_json("json:{\"driver\":\"null-co\"}", &err);
    g_assert_no_error(err);
    g_assert_true(bdrv_is_read_only(bs));
    g_assert_cmpint(bdrv_get_node_name(bs)[0], ==, '#');
    bdrv_unref(bs);

    assert_open_fails("json:{\"size\":\"4k\"}",
                      "Parameter 'driver' is missing");
    assert_open_fails("json:{\"driver\":\"nosuch\"}",
                      "Unknown driver 'nosuch'");
    assert_open_fails("json:{\"driver\":\"null-co\",\"force-share\":true,"
                      "\"read-only\":false}",
                      "force-share=on can only be used with read-only "
                      "images");
    assert_open_fails("json:{\"driver\":\"null-co\",\"discard\":\"x\"}",
                      "Invalid discard option");
    assert_open_fails("json:{\"driver\":\"null-co\",\"cache\":"
                      "{\"foo\":true}}",
                      "Block protocol 'null-co' doesn't support the option "
                      "'cache.foo'");
    assert_open_fails("json:{\"driver\":\"null-co\",\"read-only\":\"x\"}",
                      "Parameter 'read-only' expects 'on' or 'off'");
}

static void test_open_child(void)
{
    g_autoptr(GError) err = NULL;
    BlockDriverState *file, *fmt;

    /* An inline child inherits the parent's flags. */
    fmt = open_json("json:{\"driver\":\"test-format\",\"node-name\":\"f1\","
                    "\"file\":{\"driver\":\"null-co\",\"node-name\":\"p1\"}}",
                    &err);
    g_assert_no_error(err);
    g_assert_nonnull(fmt->file);
    g_assert_cmpstr(bdrv_get_node_name(fmt->file->bs), ==, "p1");
    g_assert_cmpstr(fmt->file->name, ==, "file");
    bdrv_unref(fmt);
    g_assert_null(bdrv_find_node("p1"));

    /* A child given by node name is shared, not opened again. */
    file = open_json("json:{\"driver\":\"null-co\",\"node-name\":\"p2\"}",
                     &err);
    g_assert_no_error(err);
    fmt = open_json("json:{\"driver\":\"test-format\",\"file\":\"p2\"}",
                    &err);
    g_assert_no_error(err);
    g_assert_true(fmt->file->bs == file);
    bdrv_unref(fmt);
    g_assert_true(bdrv_find_node("p2") == file);
    bdrv_unref(file);

    assert_open_fails("json:{\"driver\":\"test-format\"}",
                      "A block device must be specified for \"file\"");
    assert_open_fails("json:{\"driver\":\"test-format\",\"file\":\"nope\"}",
                      "Cannot find device='nope' nor node-name='nope'");
    assert_open_fails("json:{\"driver\":\"test-format\",\"file\":"
                      "{\"driver\":\"null-co\",\"bogus\":1}}",
                      "Block protocol 'null-co' doesn't support the option "
                      "'bogus'");
}

static void test_perm_conflict(void)
{
    g_autoptr(GError) err = NULL;
    BlockDriverState *bs = open_json("json:{\"driver\":\"null-co\","
                                     "\"node-name\":\"shared\","
                                     "\"read-only\":false}", NULL);
    AioContext *ctx = qemu_get_aio_context();
    BlockBackend *writer = blk_new(ctx, BLK_PERM_CONSISTENT_READ |
                                   BLK_PERM_WRITE,
                                   BLK_PERM_CONSISTENT_READ |
                                   BLK_PERM_WRITE_UNCHANGED);
    BlockBackend *other_writer = blk_new(ctx, BLK_PERM_CONSISTENT_READ |
                                         BLK_PERM_WRITE, BLK_PERM_ALL);
    BlockBackend *exclusive_reader = blk_new(ctx, BLK_PERM_CONSISTENT_READ,
                                             BLK_PERM_CONSISTENT_READ);
    BlockBackend *reader = blk_new(ctx, BLK_PERM_CONSISTENT_READ,
                                   BLK_PERM_ALL);

    g_assert_true(blk_insert_bs(writer, bs, NULL));
    g_assert_false(blk_insert_bs(other_writer, bs, &err));
    g_assert_cmpstr(err->message, ==,
                    "Conflicts with use by a block device as 'root', which "
                    "does not allow 'write' on shared");
    g_clear_error(&err);
    g_assert_null(blk_bs(other_writer));

    g_assert_false(blk_insert_bs(exclusive_reader, bs, &err));
    g_assert_cmpstr(err->message, ==,
                    "Conflicts with use by a block device as 'root', which "
                    "uses 'write' on shared");
    g_clear_error(&err);

    /* A reader that shares everything fits. */
    g_assert_true(blk_insert_bs(reader, bs, NULL));

    /* Once the writer is gone, the second writer fits too. */
    blk_remove_bs(writer);
    g_assert_true(blk_insert_bs(other_writer, bs, NULL));

    blk_unref(writer);
    blk_unref(other_writer);
    blk_unref(exclusive_reader);
    blk_unref(reader);
    bdrv_unref(bs);
}

static void test_perm_metadata_child(void)
{
    g_autoptr(GError) err = NULL;
    BlockDriverState *fmt, *file;
    BlockBackend *direct;

    fmt = open_json("json:{\"driver\":\"test-format\",\"read-only\":false,"
                    "\"file\":{\"driver\":\"null-co\","
                    "\"node-name\":\"meta\"}}", &err);
    g_assert_no_error(err);
    file = fmt->file->bs;
    g_assert_cmpuint(fmt->file->perm & BLK_PERM_WRITE, !=, 0);
    g_assert_cmpuint(fmt->file->shared_perm & BLK_PERM_WRITE, ==, 0);

    /* Nobody may write under a writable format's metadata. */
    direct = blk_new(qemu_get_aio_context(), BLK_PERM_CONSISTENT_READ |
                     BLK_PERM_WRITE, BLK_PERM_ALL);
    g_assert_false(blk_insert_bs(direct, file, &err));
    g_assert_true(g_str_has_prefix(err->message,
                                   "Conflicts with use by node '#block"));
    g_assert_true(g_str_has_suffix(err->message, "' as 'file', which does "
                                   "not allow 'write' on meta"));
    g_clear_error(&err);
    blk_unref(direct);
    bdrv_unref(fmt);

    /*
     * A read-only format does not write its metadata, but still lets
     * nobody else write or resize it (as QEMU: that is what makes readers
     * and writers of an image in two processes lock each other out).
     */
    fmt = open_json("json:{\"driver\":\"test-format\",\"read-only\":true,"
                    "\"file\":{\"driver\":\"null-co\",\"read-only\":false,"
                    "\"node-name\":\"meta2\"}}", &err);
    g_assert_no_error(err);
    g_assert_cmpuint(fmt->file->perm & BLK_PERM_WRITE, ==, 0);
    g_assert_cmpuint(fmt->file->shared_perm &
                     (BLK_PERM_WRITE | BLK_PERM_RESIZE), ==, 0);
    direct = blk_new(qemu_get_aio_context(), BLK_PERM_CONSISTENT_READ |
                     BLK_PERM_WRITE, BLK_PERM_ALL);
    g_assert_false(blk_insert_bs(direct, fmt->file->bs, NULL));
    blk_unref(direct);
    bdrv_unref(fmt);

    /* ...unless it was opened with force-share (qemu-img -U). */
    fmt = open_json("json:{\"driver\":\"test-format\",\"read-only\":true,"
                    "\"force-share\":true,\"file\":{\"driver\":\"null-co\","
                    "\"node-name\":\"meta3\"}}", &err);
    g_assert_no_error(err);
    g_assert_cmpuint(fmt->file->shared_perm, ==, BLK_PERM_ALL);
    bdrv_unref(fmt);
}

static void test_perm_driver_refuses(void)
{
    g_autoptr(GError) err = NULL;
    BlockDriverState *bs = open_json("json:{\"driver\":\"test-locked\","
                                     "\"read-only\":false,"
                                     "\"refuse-write\":true}", NULL);
    LockedState *s = bs->opaque;
    BlockBackend *rw = blk_new(qemu_get_aio_context(),
                               BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE,
                               BLK_PERM_ALL);
    BlockBackend *ro = blk_new(qemu_get_aio_context(),
                               BLK_PERM_CONSISTENT_READ, BLK_PERM_ALL);

    g_assert_false(blk_insert_bs(rw, bs, &err));
    g_assert_cmpstr(err->message, ==, "Failed to get \"write\" lock");
    /* A driver that refuses reverts itself; nothing was committed. */
    g_assert_cmpint(s->aborts, ==, 0);
    g_assert_cmpint(s->sets, ==, 0);
    g_assert_null(blk_bs(rw));
    g_assert_true(QLIST_EMPTY(&bs->parents));

    g_assert_true(blk_insert_bs(ro, bs, NULL));
    g_assert_cmpint(s->sets, ==, 1);
    g_assert_cmpuint(s->perm, ==, BLK_PERM_CONSISTENT_READ);

    /* Detaching loosens the permissions again. */
    blk_remove_bs(ro);
    g_assert_cmpint(s->sets, ==, 2);
    g_assert_cmpuint(s->perm, ==, 0);

    blk_unref(rw);
    blk_unref(ro);
    bdrv_unref(bs);
}

static void test_perm_abort_upper(void)
{
    g_autoptr(GError) err = NULL;
    BlockDriverState *fmt;
    TwoState *s;
    BlockBackend *rw, *ro;

    /* The upper node checks fine, the lower one refuses: upper aborts. */
    fmt = open_json("json:{\"driver\":\"test-format\",\"read-only\":false,"
                    "\"file\":{\"driver\":\"null-co\"},"
                    "\"extra\":{\"driver\":\"test-locked\","
                    "\"refuse-write\":true}}", &err);
    g_assert_no_error(err);
    s = fmt->opaque;
    rw = blk_new(qemu_get_aio_context(), BLK_PERM_CONSISTENT_READ |
                 BLK_PERM_WRITE, BLK_PERM_ALL);
    g_assert_false(blk_insert_bs(rw, fmt, &err));
    g_assert_cmpstr(err->message, ==, "Failed to get \"write\" lock");
    g_assert_cmpint(s->aborts, ==, 1);
    g_assert_cmpint(s->sets, ==, 0);
    g_clear_error(&err);

    ro = blk_new(qemu_get_aio_context(), BLK_PERM_CONSISTENT_READ,
                 BLK_PERM_ALL);
    g_assert_true(blk_insert_bs(ro, fmt, NULL));
    g_assert_cmpint(s->sets, ==, 1);
    blk_unref(rw);
    blk_unref(ro);
    bdrv_unref(fmt);
}

static void test_write_on_read_only_node(void)
{
    g_autoptr(GError) err = NULL;
    BlockDriverState *bs = open_json("json:{\"driver\":\"null-co\"}", NULL);
    BlockBackend *rw = blk_new(qemu_get_aio_context(),
                               BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE,
                               BLK_PERM_ALL);

    g_assert_false(blk_insert_bs(rw, bs, &err));
    g_assert_cmpstr(err->message, ==, "Block node is read-only");
    blk_unref(rw);
    bdrv_unref(bs);
}

static void test_replace_child(void)
{
    g_autoptr(GError) err = NULL;
    BlockDriverState *fmt, *old_file, *new_file, *busy;
    BlockBackend *exclusive;

    fmt = open_json("json:{\"driver\":\"test-format\",\"read-only\":false,"
                    "\"file\":{\"driver\":\"null-co\","
                    "\"node-name\":\"old\"}}", &err);
    g_assert_no_error(err);
    old_file = fmt->file->bs;
    bdrv_ref(old_file);
    new_file = open_json("json:{\"driver\":\"null-co\",\"node-name\":\"new\","
                         "\"read-only\":false}", &err);
    g_assert_no_error(err);

    g_assert_true(bdrv_replace_child_bs(fmt->file, new_file, &err));
    g_assert_no_error(err);
    g_assert_true(fmt->file->bs == new_file);
    g_assert_true(QLIST_EMPTY(&old_file->parents));
    g_assert_cmpuint(fmt->file->perm & BLK_PERM_WRITE, !=, 0);

    /* A node whose user forbids writers cannot take the edge. */
    busy = open_json("json:{\"driver\":\"null-co\",\"node-name\":\"busy\","
                     "\"read-only\":false}", &err);
    g_assert_no_error(err);
    exclusive = blk_new(qemu_get_aio_context(), BLK_PERM_CONSISTENT_READ,
                        BLK_PERM_CONSISTENT_READ);
    g_assert_true(blk_insert_bs(exclusive, busy, NULL));
    g_assert_false(bdrv_replace_child_bs(fmt->file, busy, &err));
    g_assert_nonnull(strstr(err->message, "which does not allow 'write'"));
    g_assert_true(fmt->file->bs == new_file);
    /* busy keeps only its own user. */
    g_assert_null(QLIST_NEXT(QLIST_FIRST(&busy->parents), next_parent));

    blk_unref(exclusive);
    bdrv_unref(busy);
    bdrv_unref(new_file);
    bdrv_unref(old_file);
    bdrv_unref(fmt);
    g_assert_null(bdrv_find_node("new"));
    g_assert_null(bdrv_find_node("old"));
}

static void test_diamond_context_move(void)
{
    g_autoptr(GError) err = NULL;
    IOThread *t = iothread_create("diamond", NULL);
    AioContext *io_ctx = iothread_get_aio_context(t);
    BlockDriverState *top, *left, *right, *bottom;
    BlockBackend *blk;

    /* top -> {left, right} -> bottom */
    bottom = open_json("json:{\"driver\":\"null-co\",\"node-name\":\"d\","
                       "\"read-only\":true}", &err);
    g_assert_no_error(err);
    left = open_json("json:{\"driver\":\"test-format\",\"node-name\":\"l\","
                     "\"file\":\"d\"}", &err);
    g_assert_no_error(err);
    right = open_json("json:{\"driver\":\"test-format\",\"node-name\":\"r\","
                      "\"file\":\"d\"}", &err);
    g_assert_no_error(err);
    top = open_json("json:{\"driver\":\"test-format\",\"node-name\":\"t\","
                    "\"file\":\"l\",\"extra\":\"r\"}", &err);
    g_assert_no_error(err);
    bdrv_unref(left);
    bdrv_unref(right);
    bdrv_unref(bottom);
    blk = blk_new(qemu_get_aio_context(), BLK_PERM_CONSISTENT_READ,
                  BLK_PERM_ALL);
    g_assert_true(blk_insert_bs(blk, top, NULL));
    bdrv_unref(top);

    /* Moving the bottom moves everything above it, once. */
    g_assert_cmpint(bdrv_try_change_aio_context(bottom, io_ctx, &err), ==,
                    0);
    g_assert_no_error(err);
    g_assert_true(bdrv_get_aio_context(top) == io_ctx);
    g_assert_true(bdrv_get_aio_context(left) == io_ctx);
    g_assert_true(bdrv_get_aio_context(right) == io_ctx);
    g_assert_true(bdrv_get_aio_context(bottom) == io_ctx);
    g_assert_true(blk_get_aio_context(blk) == io_ctx);
    g_assert_cmpint(blk_getlength(blk), ==, 1 << 30);

    g_assert_cmpint(bdrv_try_change_aio_context(top, qemu_get_aio_context(),
                                                NULL), ==, 0);
    g_assert_true(bdrv_get_aio_context(bottom) == qemu_get_aio_context());
    blk_unref(blk);
    g_assert_null(bdrv_find_node("d"));
    iothread_destroy(t);
}

static void test_attach_other_context(void)
{
    g_autoptr(GError) err = NULL;
    IOThread *t = iothread_create("other", NULL);
    BlockDriverState *a = open_json("json:{\"driver\":\"null-co\","
                                    "\"node-name\":\"a\"}", NULL);
    BlockDriverState *b = open_json("json:{\"driver\":\"null-co\","
                                    "\"node-name\":\"b\"}", NULL);

    g_assert_cmpint(bdrv_try_change_aio_context(
                        b, iothread_get_aio_context(t), NULL), ==, 0);
    g_assert_null(bdrv_attach_child(a, b, "file", BDRV_CHILD_DATA, &err));
    g_assert_cmpstr(err->message, ==, "Cannot attach node 'b' to node 'a' "
                    "in another AioContext");
    g_assert_cmpint(bdrv_try_change_aio_context(b, qemu_get_aio_context(),
                                                NULL), ==, 0);
    bdrv_unref(a);
    bdrv_unref(b);
    iothread_destroy(t);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_assert_true(qemu_init_main_loop(NULL));
    bdrv_register(&bdrv_twochild);
    bdrv_register(&bdrv_locked);

    g_test_add_func("/graph/open-options", test_open_options);
    g_test_add_func("/graph/open-child", test_open_child);
    g_test_add_func("/graph/perm-conflict", test_perm_conflict);
    g_test_add_func("/graph/perm-metadata-child", test_perm_metadata_child);
    g_test_add_func("/graph/perm-driver-refuses", test_perm_driver_refuses);
    g_test_add_func("/graph/perm-abort-upper", test_perm_abort_upper);
    g_test_add_func("/graph/write-on-read-only-node",
                    test_write_on_read_only_node);
    g_test_add_func("/graph/replace-child", test_replace_child);
    g_test_add_func("/graph/diamond-context-move",
                    test_diamond_context_move);
    g_test_add_func("/graph/attach-other-context",
                    test_attach_other_context);
    return g_test_run();
}
