/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What the tools build on: image creation with the protocol's options,
 * backing files opened by the block layer, host size, info and check
 * defaults, BlockBackends opened by name with their permissions and
 * write cache, and cache modes.
 *
 * Copyright (c) 2026 The Sluice authors
 */
#include "qemu/osdep.h"

#include <sys/stat.h>

#include "block/block_int.h"
#include "qemu/keyval.h"
#include "qemu/main-loop.h"
#include "sysemu/block-backend.h"

static char *tmp_dir;

static char *tmp_path(const char *name)
{
    return g_build_filename(tmp_dir, name, NULL);
}

static int64_t file_size(const char *path)
{
    struct stat st;

    g_assert_cmpint(stat(path, &st), ==, 0);
    return st.st_size;
}

/* ---- A format with backing files, for the generic backing code ---- */

typedef struct CowState {
    int changes;
    int flushes;
} CowState;

static const char *const cow_options[] = {
    "file", "backing-name", "backing-fmt", NULL,
};

static int cow_open(BlockDriverState *bs, JsonObject *options, int flags,
                    GError **errp)
{
    g_autofree char *name = NULL;
    g_autofree char *fmt = NULL;

    if (!keyval_get_str(options, "backing-name", NULL, &name, errp) ||
        !keyval_get_str(options, "backing-fmt", NULL, &fmt, errp)) {
        return -EINVAL;
    }
    if (!bdrv_open_child(bs, options, "file", BDRV_CHILD_IMAGE |
                         BDRV_CHILD_PRIMARY, false, errp)) {
        return -EINVAL;
    }
    g_strlcpy(bs->backing_file, name ?: "", sizeof(bs->backing_file));
    g_strlcpy(bs->backing_format, fmt ?: "", sizeof(bs->backing_format));
    return 0;
}

static int64_t coroutine_fn cow_getlength(BlockDriverState *bs)
{
    return bdrv_co_getlength(bs->file->bs);
}

/* Reads come from the backing file when there is one: enough here. */
static int coroutine_fn cow_preadv(BlockDriverState *bs, int64_t offset,
                                   int64_t bytes, QEMUIOVector *qiov,
                                   BdrvRequestFlags flags)
{
    return bdrv_co_preadv(bs->backing ?: bs->file, offset, bytes, qiov, 0);
}

static int coroutine_fn cow_pwritev(BlockDriverState *bs, int64_t offset,
                                    int64_t bytes, QEMUIOVector *qiov,
                                    BdrvRequestFlags flags)
{
    return bdrv_co_pwritev(bs->file, offset, bytes, qiov, flags);
}

static int coroutine_fn cow_flush(BlockDriverState *bs)
{
    CowState *s = bs->opaque;

    s->flushes++;
    return 0;
}

static int cow_change_backing_file(BlockDriverState *bs,
                                   const char *backing_file,
                                   const char *backing_fmt)
{
    CowState *s = bs->opaque;

    s->changes++;
    return 0;
}

static BlockDriver bdrv_cow = {
    .format_name = "test-cow",
    .instance_size = sizeof(CowState),
    .supports_backing = true,
    .bdrv_open = cow_open,
    .bdrv_co_getlength = cow_getlength,
    .bdrv_co_preadv = cow_preadv,
    .bdrv_co_pwritev = cow_pwritev,
    .bdrv_co_flush_to_disk = cow_flush,
    .bdrv_change_backing_file = cow_change_backing_file,
    .option_names = cow_options,
};

/* A protocol whose length cannot be read. */
static int badlen_open(BlockDriverState *bs, JsonObject *options, int flags,
                       GError **errp)
{
    return 0;
}

static int64_t coroutine_fn badlen_getlength(BlockDriverState *bs)
{
    return -EIO;
}

static BlockDriver bdrv_badlen = {
    .format_name = "test-badlen",
    .is_protocol = true,
    .bdrv_open = badlen_open,
    .bdrv_co_getlength = badlen_getlength,
};

static void __attribute__((constructor)) test_image_register(void)
{
    bdrv_register(&bdrv_cow);
    bdrv_register(&bdrv_badlen);
}

static void make_raw(const char *path, int64_t size, uint8_t fill)
{
    g_autofree uint8_t *buf = g_malloc(size);

    memset(buf, fill, size);
    g_assert_true(g_file_set_contents(path, (char *)buf, size, NULL));
}

static BlockDriverState *open_cow(const char *top, const char *backing,
                                  const char *fmt, int flags,
                                  JsonNode *backing_opt, GError **errp)
{
    g_autoptr(JsonObject) opts = json_object_new();
    JsonObject *file = json_object_new();

    json_object_set_string_member(opts, "driver", "test-cow");
    json_object_set_string_member(file, "driver", "file");
    json_object_set_string_member(file, "filename", top);
    json_object_set_object_member(opts, "file", file);
    if (backing) {
        json_object_set_string_member(opts, "backing-name", backing);
    }
    if (fmt) {
        json_object_set_string_member(opts, "backing-fmt", fmt);
    }
    if (backing_opt) {
        json_object_set_member(opts, "backing", backing_opt);
    }
    return bdrv_open_options(opts, flags, errp);
}

/* ---- Opening ---- */

static void test_open_checks_length(void)
{
    g_autoptr(JsonObject) opts = json_object_new();
    g_autoptr(GError) err = NULL;

    json_object_set_string_member(opts, "driver", "test-badlen");
    g_assert_null(bdrv_open_options(opts, 0, &err));
    g_assert_cmpstr(err->message, ==, "Could not refresh total sector "
                    "count: Input/output error");
}

/* --image-opts: everything in the options, files without a driver. */
static void test_open_without_filename(void)
{
    g_autofree char *path = tmp_path("opts.raw");
    g_autoptr(GError) err = NULL;
    g_autofree char *with_drv = NULL;
    g_autofree char *probe = NULL;
    g_autofree char *bare = NULL;
    g_autoptr(JsonObject) o1 = NULL;
    g_autoptr(JsonObject) o2 = NULL;
    g_autoptr(JsonObject) o3 = NULL;
    BlockDriverState *bs;

    make_raw(path, 4096, 0);
    with_drv = g_strdup_printf("driver=raw,file.filename=%s", path);
    o1 = keyval_parse(with_drv, NULL, &err);
    bs = bdrv_open(NULL, o1, 0, &err);
    g_assert_no_error(err);
    g_assert_cmpstr(bdrv_get_format_name(bs->file->bs), ==, "file");
    g_assert_false(bdrv_is_probed_raw(bs));
    bdrv_unref(bs);

    probe = g_strdup_printf("file.filename=%s", path);
    o2 = keyval_parse(probe, NULL, &err);
    bs = bdrv_open(NULL, o2, 0, &err);
    g_assert_no_error(err);
    g_assert_true(bdrv_is_probed_raw(bs));
    bdrv_unref(bs);

    bare = g_strdup_printf("filename=%s", path);
    o3 = keyval_parse(bare, NULL, &err);
    g_assert_null(bdrv_open(NULL, o3, 0, &err));
    g_assert_cmpstr(err->message, ==, "Must specify either driver or file");
}

/* ---- Creation ---- */

static JsonObject *create_opts(const char *keyval)
{
    g_autoptr(GError) err = NULL;
    JsonObject *o = keyval_parse(keyval, NULL, &err);

    g_assert_no_error(err);
    return o;
}

static void test_create_raw(void)
{
    g_autofree char *path = tmp_path("create.raw");
    g_autofree char *missing = tmp_path("no/such/dir.raw");
    g_autoptr(JsonObject) opts = NULL;
    g_autoptr(GError) err = NULL;
    BlockDriver *raw = bdrv_find_format("raw");
    struct stat st;

    /* Sizes are rounded up to whole sectors. */
    opts = create_opts("size=1000");
    bdrv_create(raw, path, opts, &err);
    g_assert_no_error(err);
    g_assert_cmpint(file_size(path), ==, 1024);

    /* Creating over an image starts it afresh. */
    make_raw(path, 8192, 0xaa);
    g_clear_pointer(&opts, json_object_unref);
    opts = create_opts("size=4096");
    g_assert_cmpint(bdrv_create(raw, path, opts, &err), ==, 0);
    g_assert_cmpint(file_size(path), ==, 4096);
    /* Only the first block is allocated (zeroes), as QEMU does. */
    g_assert_cmpint(stat(path, &st), ==, 0);
    g_assert_cmpint(st.st_blocks * 512, ==, 4096);
    {
        g_autofree char *data = NULL;
        gsize len;

        g_assert_true(g_file_get_contents(path, &data, &len, NULL));
        g_assert_cmpint(len, ==, 4096);
        g_assert_cmpint(data[0], ==, 0);
        g_assert_cmpint(data[4095], ==, 0);
    }

    g_clear_pointer(&opts, json_object_unref);
    opts = create_opts("size=1M,preallocation=falloc");
    g_assert_cmpint(bdrv_create(raw, path, opts, &err), ==, 0);
    g_assert_cmpint(stat(path, &st), ==, 0);
    g_assert_cmpint(st.st_blocks * 512, >=, 1 * MiB);

    g_clear_pointer(&opts, json_object_unref);
    opts = create_opts("size=1M,preallocation=metadata");
    g_assert_cmpint(bdrv_create(raw, path, opts, &err), ==, -ENOTSUP);
    g_assert_cmpstr(err->message, ==, "Unsupported preallocation mode: "
                    "metadata");
    g_clear_error(&err);

    g_clear_pointer(&opts, json_object_unref);
    opts = create_opts("size=1M,preallocation=foo");
    g_assert_cmpint(bdrv_create(raw, path, opts, &err), ==, -EINVAL);
    g_assert_cmpstr(err->message, ==, "invalid parameter value: foo");
    g_clear_error(&err);

    g_assert_cmpint(bdrv_create(raw, missing, opts, &err), <, 0);
    g_clear_error(&err);
    g_clear_pointer(&opts, json_object_unref);
    opts = create_opts("size=1M");
    g_assert_cmpint(bdrv_create(raw, missing, opts, &err), ==, -ENOENT);
    g_assert_true(g_str_has_prefix(err->message, "Could not create '"));
    g_assert_true(g_str_has_suffix(err->message,
                                   "': No such file or directory"));
    g_clear_error(&err);

    g_assert_cmpint(bdrv_create(bdrv_find_format("null-co"), path, opts,
                                &err), ==, -ENOTSUP);
    g_assert_cmpstr(err->message, ==, "Format driver 'null-co' does not "
                    "support image creation");
}

static void test_create_opts_list(void)
{
    static const char *const raw_names[] = {
        "extent_size_hint", "nocow", "preallocation", "size", NULL,
    };
    g_autofree BlockOptDesc *list = NULL;
    int i;

    /* The format's options and the protocol's, once each, sorted. */
    list = bdrv_create_opts_list(bdrv_find_format("raw"), "x.raw");
    for (i = 0; raw_names[i]; i++) {
        g_assert_cmpstr(list[i].name, ==, raw_names[i]);
    }
    g_assert_null(list[i].name);
    g_clear_pointer(&list, g_free);

    list = bdrv_create_opts_list(bdrv_find_format("null-co"), NULL);
    g_assert_null(list[0].name);
}

static void test_measure_raw(void)
{
    BlockDriver *raw = bdrv_find_format("raw");
    g_autoptr(JsonObject) opts = create_opts("size=1000");
    g_autoptr(GError) err = NULL;
    g_autofree BlockMeasureInfo *info = NULL;
    g_autofree char *path = tmp_path("measure.raw");
    BlockBackend *blk;

    /* Rounded to sectors; preallocation makes no difference to raw. */
    info = raw->bdrv_measure(opts, NULL, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(info->required, ==, 1024);
    g_assert_cmpuint(info->fully_allocated, ==, 1024);
    g_clear_pointer(&info, g_free);

    make_raw(path, 64 * KiB, 1);
    blk = blk_new_open(path, NULL, 0, &err);
    g_assert_no_error(err);
    info = raw->bdrv_measure(opts, blk_bs(blk), &err);
    g_assert_cmpuint(info->required, ==, 64 * KiB);
    g_assert_cmpuint(info->fully_allocated, ==, 64 * KiB);
    blk_unref(blk);
}

static void test_find_protocol(void)
{
    g_autoptr(GError) err = NULL;

    g_assert_true(bdrv_find_protocol("a/b.raw", &err) ==
                  bdrv_find_format("file"));
    /* Not a scheme: a path that happens to hold "://". */
    g_assert_true(bdrv_find_protocol("a b://c", &err) ==
                  bdrv_find_format("file"));
    g_assert_null(bdrv_find_protocol("foo://x", &err));
    g_assert_cmpstr(err->message, ==, "Unknown protocol 'foo'");
}

/* ---- Information ---- */

static void test_info_defaults(void)
{
    g_autofree char *path = tmp_path("info.raw");
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonObject) opts = json_object_new();
    BlockDriverInfo bdi;
    BdrvCheckResult res;
    BlockBackend *blk;
    int64_t before;

    make_raw(path, 256 * KiB, 0);
    json_object_set_string_member(opts, "driver", "raw");
    blk = blk_new_open(path, opts, BDRV_O_RDWR, &err);
    g_assert_no_error(err);

    g_assert_cmpint(bdrv_getlength(blk_bs(blk)), ==, 256 * KiB);
    g_assert_cmpstr(blk_bs(blk)->filename, ==, path);
    /* raw answers for its file, which has nothing to say but says it. */
    bdi.cluster_size = 7;
    g_assert_cmpint(bdrv_get_info(blk_bs(blk), &bdi), ==, 0);
    g_assert_cmpint(bdi.cluster_size, ==, 0);
    g_assert_false(bdi.is_dirty);
    g_assert_cmpint(bdrv_check(blk_bs(blk), &res, 0), ==, -ENOTSUP);

    /* raw has no size callback: it occupies what its file does. */
    before = bdrv_get_allocated_file_size(blk_bs(blk));
    g_assert_cmpint(before, ==,
                    bdrv_get_allocated_file_size(blk_bs(blk)->file->bs));
    blk_unref(blk);

    g_clear_pointer(&opts, json_object_unref);
    opts = keyval_parse("driver=null-co", NULL, &err);
    blk = blk_new_open(NULL, opts, 0, &err);
    g_assert_no_error(err);
    g_assert_cmpint(bdrv_get_allocated_file_size(blk_bs(blk)), ==,
                    -ENOTSUP);
    g_assert_cmpint(bdrv_get_info(blk_bs(blk), &bdi), ==, -ENOTSUP);
    blk_unref(blk);
}

static void test_allocated_size(void)
{
    g_autofree char *path = tmp_path("alloc.raw");
    g_autofree uint8_t *buf = g_malloc(64 * KiB);
    g_autoptr(JsonObject) opts = json_object_new();
    g_autoptr(GError) err = NULL;
    BlockBackend *blk;

    g_assert_true(g_file_set_contents(path, "", 0, NULL));
    g_assert_cmpint(truncate(path, 1 * MiB), ==, 0);
    json_object_set_string_member(opts, "driver", "raw");
    blk = blk_new_open(path, opts, BDRV_O_RDWR, &err);
    g_assert_no_error(err);
    g_assert_cmpint(bdrv_get_allocated_file_size(blk_bs(blk)), ==, 0);
    memset(buf, 1, 64 * KiB);
    g_assert_cmpint(blk_pwrite(blk, 0, 64 * KiB, buf, 0), ==, 0);
    g_assert_cmpint(blk_flush(blk), ==, 0);
    g_assert_cmpint(bdrv_get_allocated_file_size(blk_bs(blk)), >=,
                    64 * KiB);
    blk_unref(blk);
}

/* ---- Backing files ---- */

static void test_backing_relative(void)
{
    g_autofree char *top = tmp_path("top.img");
    g_autofree char *base = tmp_path("base.img");
    g_autofree char *full = NULL;
    g_autoptr(GError) err = NULL;
    BlockDriverState *bs;
    uint8_t buf[512];

    make_raw(top, 64 * KiB, 0x11);
    make_raw(base, 64 * KiB, 0x22);
    bs = open_cow(top, "base.img", "raw", BDRV_O_RDWR, NULL, &err);
    g_assert_no_error(err);

    /* The name is relative to the directory of the image, not the cwd. */
    full = bdrv_get_full_backing_filename(bs, &err);
    g_assert_cmpstr(full, ==, base);
    g_assert_nonnull(bs->backing);
    g_assert_cmpstr(bs->backing->bs->filename, ==, base);
    g_assert_cmpstr(bdrv_get_format_name(bs->backing->bs), ==, "raw");
    /* A backing file is only ever read. */
    g_assert_true(bdrv_is_read_only(bs->backing->bs));
    g_assert_false(bdrv_is_read_only(bs));
    g_assert_true(bs->backing->role & BDRV_CHILD_COW);

    {
        g_autoptr(JsonObject) none = json_object_new();
        BlockBackend *blk = blk_new(qemu_get_aio_context(),
                                    BLK_PERM_CONSISTENT_READ,
                                    BLK_PERM_ALL);

        g_assert_true(blk_insert_bs(blk, bs, &err));
        g_assert_cmpint(blk_pread(blk, 0, sizeof(buf), buf, 0), ==, 0);
        g_assert_cmpint(buf[0], ==, 0x22);
        blk_unref(blk);
    }
    bdrv_unref(bs);
}

static void test_backing_absolute_and_probed(void)
{
    g_autofree char *top = tmp_path("top2.img");
    g_autofree char *base = tmp_path("base2.img");
    g_autoptr(GError) err = NULL;
    BlockDriverState *bs;

    make_raw(top, 4096, 0);
    make_raw(base, 4096, 0);
    /* No format recorded: the backing file is probed (raw here). */
    bs = open_cow(top, base, NULL, 0, NULL, &err);
    g_assert_no_error(err);
    g_assert_nonnull(bs->backing);
    g_assert_cmpstr(bdrv_get_format_name(bs->backing->bs), ==, "raw");
    g_assert_true(bdrv_is_probed_raw(bs->backing->bs));
    bdrv_unref(bs);
}

static void test_backing_missing(void)
{
    g_autofree char *top = tmp_path("top3.img");
    g_autofree char *expect = NULL;
    g_autoptr(GError) err = NULL;
    BlockDriverState *bs;

    make_raw(top, 4096, 0);
    bs = open_cow(top, "gone.img", "raw", 0, NULL, &err);
    g_assert_null(bs);
    expect = g_strdup_printf("Could not open backing file: Could not open "
                             "'%s/gone.img': No such file or directory",
                             tmp_dir);
    g_assert_cmpstr(err->message, ==, expect);
    g_clear_error(&err);

    /* Without the backing file the image still opens when asked to. */
    bs = open_cow(top, "gone.img", "raw", BDRV_O_NO_BACKING, NULL, &err);
    g_assert_no_error(err);
    g_assert_null(bs->backing);
    g_assert_cmpstr(bs->backing_file, ==, "gone.img");
    bdrv_unref(bs);

    bs = open_cow(top, "gone.img", "raw", 0, json_node_new(JSON_NODE_NULL),
                  &err);
    g_assert_no_error(err);
    g_assert_null(bs->backing);
    bdrv_unref(bs);
}

static void test_backing_by_reference(void)
{
    g_autofree char *top = tmp_path("top4.img");
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonObject) nopts = NULL;
    BlockDriverState *bs, *other;
    JsonNode *ref;

    make_raw(top, 4096, 0);
    nopts = keyval_parse("driver=null-co,node-name=other,size=4096", NULL,
                         &err);
    other = bdrv_open_options(nopts, 0, &err);
    g_assert_no_error(err);

    /* "backing" names a node: the recorded file is not opened. */
    ref = json_node_init_string(json_node_alloc(), "other");
    bs = open_cow(top, "gone.img", "raw", 0, ref, &err);
    g_assert_no_error(err);
    g_assert_true(bs->backing->bs == other);
    /* The option shows in the node's options, for reopen to compare. */
    g_assert_true(json_object_has_member(bs->options, "backing"));

    g_assert_true(bdrv_set_backing_hd(bs, NULL, &err));
    g_assert_null(bs->backing);
    g_assert_true(bdrv_set_backing_hd(bs, other, &err));
    g_assert_true(bs->backing->bs == other);
    bdrv_unref(bs);

    ref = json_node_init_int(json_node_alloc(), 3);
    g_assert_null(open_cow(top, NULL, NULL, 0, ref, &err));
    g_assert_cmpstr(err->message, ==, "Invalid parameter type for "
                    "'backing', expected: BlockdevRefOrNull");
    g_clear_error(&err);

    /* Drivers without backing files refuse one. */
    g_assert_false(bdrv_set_backing_hd(other, other, &err));
    g_assert_nonnull(err);
    bdrv_unref(other);
}

static void test_change_backing_file(void)
{
    g_autofree char *top = tmp_path("top5.img");
    g_autoptr(GError) err = NULL;
    BlockDriverState *bs;
    CowState *s;

    make_raw(top, 4096, 0);
    bs = open_cow(top, NULL, NULL, BDRV_O_RDWR, NULL, &err);
    g_assert_no_error(err);
    s = bs->opaque;

    g_assert_cmpint(bdrv_change_backing_file(bs, "new.img", "qed", &err),
                    ==, 0);
    g_assert_cmpint(s->changes, ==, 1);
    g_assert_cmpstr(bs->backing_file, ==, "new.img");
    g_assert_cmpstr(bs->backing_format, ==, "qed");
    g_assert_cmpint(bdrv_change_backing_file(bs, "", NULL, &err), ==, 0);
    g_assert_cmpstr(bs->backing_file, ==, "");
    g_assert_cmpstr(bs->backing_format, ==, "");
    bdrv_unref(bs);

    /* raw records nothing. */
    {
        g_autoptr(JsonObject) o = json_object_new();
        BlockBackend *blk;

        json_object_set_string_member(o, "driver", "raw");
        blk = blk_new_open(top, o, BDRV_O_RDWR, &err);
        g_assert_no_error(err);
        g_assert_cmpint(bdrv_change_backing_file(blk_bs(blk), "x", NULL,
                                                 &err), ==, -ENOTSUP);
        g_assert_cmpstr(err->message, ==, "Driver 'raw' does not support "
                        "changing the backing file");
        blk_unref(blk);
    }
}

/* ---- BlockBackends opened by name ---- */

static void test_blk_new_open_perms(void)
{
    g_autofree char *path = tmp_path("perm.raw");
    g_autoptr(JsonObject) opts = json_object_new();
    g_autoptr(GError) err = NULL;
    BlockBackend *a, *b;
    uint64_t perm, shared;

    make_raw(path, 4096, 0);
    json_object_set_string_member(opts, "driver", "raw");
    a = blk_new_open(path, opts, BDRV_O_RDWR | BDRV_O_NO_SHARE, &err);
    g_assert_no_error(err);
    blk_get_perm(a, &perm, &shared);
    g_assert_cmpint(perm, ==, BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE);
    g_assert_cmpint(shared, ==, BLK_PERM_CONSISTENT_READ |
                    BLK_PERM_WRITE_UNCHANGED);

    /* A second writer of the same node conflicts with a. */
    b = blk_new(qemu_get_aio_context(), BLK_PERM_CONSISTENT_READ,
                BLK_PERM_ALL);
    g_assert_true(blk_insert_bs(b, blk_bs(a), &err));
    g_assert_false(blk_set_perm(b, BLK_PERM_CONSISTENT_READ |
                                BLK_PERM_WRITE, BLK_PERM_ALL, &err));
    g_assert_nonnull(err);
    g_clear_error(&err);
    blk_get_perm(b, &perm, &shared);
    g_assert_cmpint(perm, ==, BLK_PERM_CONSISTENT_READ);

    /* Once a shares writing, b may write too. */
    g_assert_true(blk_set_perm(a, BLK_PERM_CONSISTENT_READ |
                               BLK_PERM_WRITE, BLK_PERM_ALL, &err));
    g_assert_true(blk_set_perm(b, BLK_PERM_CONSISTENT_READ |
                               BLK_PERM_WRITE, BLK_PERM_ALL, &err));
    g_assert_no_error(err);
    blk_unref(b);
    blk_unref(a);

    /* A read-only open cannot take write. */
    a = blk_new_open(path, opts, 0, &err);
    g_assert_no_error(err);
    g_assert_false(blk_set_perm(a, BLK_PERM_WRITE, BLK_PERM_ALL, &err));
    g_assert_cmpstr(err->message, ==, "Block node is read-only");
    blk_unref(a);
}

static void test_blk_writethrough(void)
{
    g_autofree char *path = tmp_path("wt.img");
    g_autoptr(GError) err = NULL;
    BlockDriverState *bs;
    BlockBackend *blk;
    CowState *s;
    uint8_t buf[512] = { 0 };

    make_raw(path, 4096, 0);
    bs = open_cow(path, NULL, NULL, BDRV_O_RDWR, NULL, &err);
    g_assert_no_error(err);
    s = bs->opaque;
    blk = blk_new(qemu_get_aio_context(),
                  BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE, BLK_PERM_ALL);
    g_assert_true(blk_insert_bs(blk, bs, &err));
    bdrv_unref(bs);

    g_assert_true(blk_enable_write_cache(blk));
    g_assert_cmpint(blk_pwrite(blk, 0, 512, buf, 0), ==, 0);
    g_assert_cmpint(s->flushes, ==, 0);

    /* Writethrough: every write (and write-zeroes) is made stable. */
    blk_set_enable_write_cache(blk, false);
    g_assert_cmpint(blk_pwrite(blk, 0, 512, buf, 0), ==, 0);
    g_assert_cmpint(s->flushes, ==, 1);
    g_assert_cmpint(blk_pwrite_zeroes(blk, 512, 512, 0), ==, 0);
    g_assert_cmpint(s->flushes, ==, 2);
    g_assert_cmpint(blk_pread(blk, 0, 512, buf, 0), ==, 0);
    g_assert_cmpint(s->flushes, ==, 2);
    blk_unref(blk);
}

static void test_cache_modes(void)
{
    static const struct {
        const char *mode;
        int flags;
        bool writethrough;
    } modes[] = {
        { "none", BDRV_O_NOCACHE, false },
        { "off", BDRV_O_NOCACHE, false },
        { "directsync", BDRV_O_NOCACHE, true },
        { "writeback", 0, false },
        { "writethrough", 0, true },
        { "unsafe", BDRV_O_NO_FLUSH, false },
    };
    size_t i;
    int flags;
    bool wt;

    for (i = 0; i < G_N_ELEMENTS(modes); i++) {
        flags = BDRV_O_RDWR | BDRV_O_NOCACHE | BDRV_O_NO_FLUSH;
        wt = !modes[i].writethrough;
        g_assert_true(bdrv_parse_cache_mode(modes[i].mode, &flags, &wt));
        g_assert_cmpint(flags, ==, BDRV_O_RDWR | modes[i].flags);
        g_assert_cmpint(wt, ==, modes[i].writethrough);
    }
    flags = BDRV_O_NOCACHE;
    wt = true;
    g_assert_false(bdrv_parse_cache_mode("fast", &flags, &wt));
    g_assert_cmpint(flags, ==, BDRV_O_NOCACHE);
    g_assert_true(wt);
}

int main(int argc, char **argv)
{
    int ret;

    g_test_init(&argc, &argv, NULL);
    g_assert_true(qemu_init_main_loop(NULL));
    tmp_dir = g_dir_make_tmp("sluice-image-XXXXXX", NULL);
    g_assert_nonnull(tmp_dir);

    g_test_add_func("/image/open-checks-length", test_open_checks_length);
    g_test_add_func("/image/open-without-filename",
                    test_open_without_filename);
    g_test_add_func("/image/create-raw", test_create_raw);
    g_test_add_func("/image/create-opts-list", test_create_opts_list);
    g_test_add_func("/image/measure-raw", test_measure_raw);
    g_test_add_func("/image/find-protocol", test_find_protocol);
    g_test_add_func("/image/info-defaults", test_info_defaults);
    g_test_add_func("/image/allocated-size", test_allocated_size);
    g_test_add_func("/image/backing-relative", test_backing_relative);
    g_test_add_func("/image/backing-absolute-probed",
                    test_backing_absolute_and_probed);
    g_test_add_func("/image/backing-missing", test_backing_missing);
    g_test_add_func("/image/backing-by-reference",
                    test_backing_by_reference);
    g_test_add_func("/image/change-backing-file", test_change_backing_file);
    g_test_add_func("/image/blk-new-open-perms", test_blk_new_open_perms);
    g_test_add_func("/image/blk-writethrough", test_blk_writethrough);
    g_test_add_func("/image/cache-modes", test_cache_modes);
    ret = g_test_run();

    {
        g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", tmp_dir);

        g_assert_cmpint(system(cmd), ==, 0);
    }
    g_free(tmp_dir);
    return ret;
}
