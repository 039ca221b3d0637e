/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Helpers shared by the QED tests (see test-qed-util.h).
 *
 * Copyright (c) 2026 The Sluice authors
 */
#include "qemu/osdep.h"

#include <sys/stat.h>
#include <sys/wait.h>

#include "block/blkdebug.h"
#include "qemu/coroutine.h"
#include "tests/unit/test-qed-util.h"

static char *qt_tmp_dir;

void qt_init(void)
{
    g_assert_true(qemu_init_main_loop(NULL));
    blkdebug_set_quiet(true);
    qt_tmp_dir = g_dir_make_tmp("sluice-qed-XXXXXX", NULL);
    g_assert_nonnull(qt_tmp_dir);
}

void qt_cleanup(void)
{
    g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", qt_tmp_dir);

    g_assert_cmpint(system(cmd), ==, 0);
    g_free(qt_tmp_dir);
}

char *qt_path(const char *name)
{
    return g_build_filename(qt_tmp_dir, name, NULL);
}

int qt_create_err(const char *path, uint64_t size, const char *opts,
                  GError **errp)
{
    g_autoptr(JsonObject) o = json_object_new();
    g_auto(GStrv) items = NULL;
    int i;

    json_object_set_int_member(o, "size", size);
    if (opts) {
        items = g_strsplit(opts, ",", 0);
        for (i = 0; items[i]; i++) {
            g_auto(GStrv) kv = g_strsplit(items[i], "=", 2);

            g_assert_nonnull(kv[1]);
            if (!strcmp(kv[0], "cluster_size") ||
                !strcmp(kv[0], "table_size")) {
                json_object_set_int_member(o, kv[0],
                                           g_ascii_strtoull(kv[1], NULL,
                                                            0));
            } else {
                json_object_set_string_member(o, kv[0], kv[1]);
            }
        }
    }
    return bdrv_create(bdrv_find_format("qed"), path, o, errp);
}

int qt_create(const char *path, uint64_t size, const char *opts)
{
    g_autoptr(GError) err = NULL;
    int ret = qt_create_err(path, size, opts, &err);

    if (ret < 0) {
        g_test_message("create %s: %s", path, err->message);
    }
    return ret;
}

BlockBackend *qt_open_opts(const char *path, int flags, bool no_backing,
                           GError **errp)
{
    g_autoptr(JsonObject) o = json_object_new();

    json_object_set_string_member(o, "driver", "qed");
    return blk_new_open(path, o, flags | (no_backing ? BDRV_O_NO_BACKING : 0),
                        errp);
}

BlockBackend *qt_open(const char *path, int flags)
{
    g_autoptr(GError) err = NULL;
    BlockBackend *blk = qt_open_opts(path, flags, false, &err);

    g_assert_no_error(err);
    g_assert_nonnull(blk);
    return blk;
}

BlockBackend *qt_open_debug(const char *path, int flags)
{
    g_autoptr(JsonObject) o = json_object_new();
    g_autoptr(GError) err = NULL;
    JsonObject *dbg = json_object_new();
    JsonObject *file = json_object_new();
    BlockBackend *blk;

    json_object_set_string_member(file, "driver", "file");
    json_object_set_string_member(file, "filename", path);
    json_object_set_string_member(dbg, "driver", "blkdebug");
    json_object_set_object_member(dbg, "image", file);
    json_object_set_string_member(o, "driver", "qed");
    json_object_set_object_member(o, "file", dbg);
    blk = blk_new_open(NULL, o, flags, &err);
    g_assert_no_error(err);
    g_assert_nonnull(blk);
    return blk;
}

void qt_write(BlockBackend *blk, int pattern, int64_t offset, int64_t len)
{
    g_autofree uint8_t *buf = g_malloc(len);

    memset(buf, pattern, len);
    g_assert_cmpint(blk_pwrite(blk, offset, len, buf, 0), ==, 0);
}

void qt_check_pattern(BlockBackend *blk, int pattern, int64_t offset,
                      int64_t len)
{
    g_autofree uint8_t *buf = g_malloc(len);
    int64_t i;

    g_assert_cmpint(blk_pread(blk, offset, len, buf, 0), ==, 0);
    for (i = 0; i < len; i++) {
        if (buf[i] != (uint8_t)pattern) {
            g_error("byte %" PRId64 " is 0x%02x, not 0x%02x", offset + i,
                    buf[i], pattern & 0xff);
        }
    }
}

static void coroutine_fn qt_write_entry(void *opaque)
{
    QtAsyncWrite *w = opaque;
    g_autofree uint8_t *buf = NULL;
    QEMUIOVector qiov;

    if (w->pattern < 0) {
        w->ret = blk_co_pwrite_zeroes(w->blk, w->offset, w->len, w->flags);
    } else {
        buf = g_malloc(w->len);
        memset(buf, w->pattern, w->len);
        qemu_iovec_init_buf(&qiov, buf, w->len);
        w->ret = blk_co_pwritev(w->blk, w->offset, w->len, &qiov,
                                w->flags);
    }
    qatomic_set(&w->done, true);
}

void qt_start_write(QtAsyncWrite *w, BlockBackend *blk, int pattern,
                    int64_t offset, int64_t len)
{
    *w = (QtAsyncWrite) {
        .blk = blk, .pattern = pattern, .offset = offset, .len = len,
    };
    aio_co_enter(qemu_get_aio_context(),
                 qemu_coroutine_create(qt_write_entry, w));
}

void qt_wait_flag(bool *flag, int timeout_ms)
{
    gint64 deadline = g_get_monotonic_time() + timeout_ms * 1000LL;

    while (!qatomic_read(flag)) {
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        aio_poll(qemu_get_aio_context(), false);
        g_usleep(200);
    }
}

void qt_poll_for(int ms)
{
    gint64 end = g_get_monotonic_time() + ms * 1000LL;

    while (g_get_monotonic_time() < end) {
        aio_poll(qemu_get_aio_context(), false);
        g_usleep(200);
    }
}

uint64_t qt_file_size(const char *path)
{
    struct stat st;

    g_assert_cmpint(stat(path, &st), ==, 0);
    return st.st_size;
}

void qt_read(const char *path, uint64_t offset, void *buf, size_t len)
{
    int fd = open(path, O_RDONLY);

    g_assert_cmpint(fd, >=, 0);
    memset(buf, 0, len);
    g_assert_cmpint(pread(fd, buf, len, offset), >=, 0);
    close(fd);
}

uint64_t qt_peek(const char *path, uint64_t offset, int width)
{
    uint64_t v = 0;

    g_assert_true(width == 4 || width == 8);
    qt_read(path, offset, &v, width);
    return GUINT64_FROM_LE(v);
}

void qt_poke(const char *path, uint64_t offset, int width, uint64_t value)
{
    uint64_t v = GUINT64_TO_LE(value);
    int fd = open(path, O_WRONLY);

    g_assert_true(width == 4 || width == 8);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(pwrite(fd, &v, width, offset), ==, width);
    close(fd);
}

void qt_read_header(const char *path, QEDHeader *h)
{
    uint8_t buf[QED_HEADER_BYTES];

    qt_read(path, 0, buf, sizeof(buf));
    qed_header_decode(h, buf);
}

void qt_copy(const char *src, const char *dst)
{
    g_autofree char *data = NULL;
    gsize len;

    g_assert_true(g_file_get_contents(src, &data, &len, NULL));
    unlink(dst);
    g_assert_true(g_file_set_contents(dst, data, len, NULL));
    g_assert_cmpint(chmod(dst, 0644), ==, 0);
}

void qt_assert_same_files(const char *a, const char *b)
{
    g_autofree char *da = NULL;
    g_autofree char *db = NULL;
    gsize la, lb, i;

    g_assert_true(g_file_get_contents(a, &da, &la, NULL));
    g_assert_true(g_file_get_contents(b, &db, &lb, NULL));
    g_assert_cmpuint(la, ==, lb);
    for (i = 0; i < la; i++) {
        if (da[i] != db[i]) {
            g_error("%s and %s differ at byte %" G_GSIZE_FORMAT, a, b, i);
        }
    }
}

void qt_make_raw(const char *path, uint64_t size, int pattern,
                 uint64_t pattern_len)
{
    g_autofree char *buf = g_malloc0(size);

    memset(buf, pattern, pattern_len);
    g_assert_true(g_file_set_contents(path, buf, size, NULL));
}

const char *qt_corpus_dir(void)
{
    static char *dir;
    static bool looked;

    if (!looked) {
        const char *env = g_getenv("QED_CORPUS");
        g_autofree char *images = NULL;

        looked = true;
        dir = env ? g_strdup(env) :
              g_build_filename(SLUICE_SOURCE_ROOT, "..", "shared",
                               "testdata", "qed", NULL);
        images = g_build_filename(dir, "images", "data-4k.qed", NULL);
        if (!g_file_test(images, G_FILE_TEST_EXISTS)) {
            g_clear_pointer(&dir, g_free);
        }
    }
    return dir;
}

void qt_copy_corpus(const char *name, const char *dst)
{
    g_autofree char *src = NULL;

    g_assert_nonnull(qt_corpus_dir());
    src = g_build_filename(qt_corpus_dir(), "images", name, NULL);
    qt_copy(src, dst);
}

void qt_assert_same_as_corpus(const char *path, const char *name)
{
    g_autofree char *ref = NULL;

    if (!qt_corpus_dir()) {
        g_test_message("corpus absent: %s not compared with %s", path,
                       name);
        return;
    }
    ref = g_build_filename(qt_corpus_dir(), "images", name, NULL);
    qt_assert_same_files(path, ref);
}

bool qt_have_qemu_img(void)
{
    g_autofree char *p = g_find_program_in_path("qemu-img");

    return p != NULL;
}

int qt_qemu_img(const char *args, const char *path)
{
    g_autofree char *cmd = g_strdup_printf("qemu-img %s '%s'", args, path);
    g_autofree char *out = NULL;
    g_autofree char *err = NULL;
    int status;

    g_assert_true(g_spawn_command_line_sync(cmd, &out, &err, &status,
                                            NULL));
    if (!WIFEXITED(status)) {
        g_error("%s: killed", cmd);
    }
    if (WEXITSTATUS(status)) {
        g_test_message("%s: exit %d\n%s%s", cmd, WEXITSTATUS(status), out,
                       err);
    }
    return WEXITSTATUS(status);
}
