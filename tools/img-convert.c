/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * sluice-img: the subcommands that move data between images: convert,
 * dd, compare, bench and rebase.  Options, output, messages and exit
 * codes follow qemu-img 7.2, which scripts compare against.
 *
 * Copyright (c) 2026 The Sluice authors
 */

#include "qemu/osdep.h"

#include <getopt.h>

#include "tools/sluice-img.h"
#include "block/aio-wait.h"
#include "block/block_int.h"
#include "block/graph-lock.h"
#include "qemu/co-lock.h"
#include "qemu/coroutine.h"
#include "qemu/keyval.h"
#include "qemu/main-loop.h"

/* The unit in which qemu-img compares buffers and finds zeroes. */
#define IMG_SECTOR 512

/* The largest piece convert, compare and rebase handle at once. */
#define IMG_IO_BUF_SIZE (2 * MiB)

/* O_DIRECT wants aligned buffers; a page suits every host device. */
#define IMG_BUF_ALIGN 4096

/* ---- Helpers shared by the commands in this file ---- */

static bool img_add_object(const char *arg)
{
    GError *err = NULL;

    if (!tool_object_add(arg, &err)) {
        error_report_err(err);
        return false;
    }
    return true;
}

/*
 * error_report() without flushing stdout first.  qemu-img leaves its
 * buffered stdout alone when it reports an error, so when both go to one
 * pipe the error comes first; where scripts compare the two, so do we.
 */
static void G_GNUC_PRINTF(1, 2) img_error_unflushed(const char *fmt, ...)
{
    g_autofree char *msg = NULL;
    va_list ap;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s: %s\n", tool_progname(), msg);
}

/*
 * A byte count as qemu-img's numeric options take it, with its two
 * messages: one for text that is not a size, one for a size out of
 * [@min, @max].
 */
static bool img_cvtnum_full(const char *name, const char *value,
                            int64_t min, int64_t max, int64_t *out)
{
    uint64_t n;
    int ret = qemu_strtosz(value, NULL, &n);

    if (ret == -ERANGE || (ret == 0 && (n > (uint64_t)max ||
                                        (int64_t)n < min))) {
        error_report("Invalid %s specified. Must be between %" PRId64
                     " and %" PRId64 ".", name, min, max);
        return false;
    }
    if (ret < 0) {
        error_report("Invalid %s specified. You may use k, M, G, T, P or "
                     "E suffixes for", name);
        error_report("kilobytes, megabytes, gigabytes, terabytes, "
                     "petabytes and exabytes.");
        return false;
    }
    *out = n;
    return true;
}

static bool img_cvtnum(const char *name, const char *value, int64_t *out)
{
    return img_cvtnum_full(name, value, 0, INT64_MAX, out);
}

/*
 * An integer in C syntax (decimal, 0x hex, 0 octal; leading blanks and
 * a sign allowed) within [@min, @max], as qemu-img's counts are read.
 */
static bool img_strtoi(const char *s, int64_t min, int64_t max,
                       int64_t *out)
{
    char *end;
    long long v;

    errno = 0;
    v = strtoll(s, &end, 0);
    if (end == s || *end || errno || v < min || v > max) {
        return false;
    }
    *out = v;
    return true;
}

/*
 * Open an image for one of these commands: img_open_blk() with the
 * sharing rule they follow.
 */
static BlockBackend *img_open(const char *filename, const char *fmt,
                              JsonObject *extra, bool image_opts,
                              int flags, bool writethrough)
{
    if (image_opts && fmt) {
        error_report("--image-opts and --format are mutually exclusive");
        return NULL;
    }
    /* As qemu-img: others may read along, but not write, unless -U. */
    if (!(flags & BDRV_O_FORCE_SHARE)) {
        flags |= BDRV_O_NO_SHARE;
    }
    /* The probed-raw warning is printed even with -q, as qemu-img does. */
    return img_open_blk(filename, fmt, extra, image_opts, flags,
                        writethrough, false);
}

/*
 * -t and -T: the cache mode's flags and write-cache setting, or false
 * for a mode qemu-img does not know.
 */
static bool img_cache_flags(const char *mode, int *flags,
                            bool *writethrough)
{
    int f = *flags;
    bool wt = false;

    if (!bdrv_parse_cache_mode(mode, &f, &wt)) {
        return false;
    }
    *flags = f;
    *writethrough = wt;
    return true;
}

static void *img_buf_alloc(size_t size)
{
    return g_aligned_alloc0(1, MAX(size, IMG_BUF_ALIGN), IMG_BUF_ALIGN);
}

static bool img_is_zero(const uint8_t *buf, size_t len)
{
    size_t head = MIN(len, 16);

    for (size_t i = 0; i < head; i++) {
        if (buf[i]) {
            return false;
        }
    }
    /* The head is zero: the rest is zero iff it equals itself shifted. */
    return len <= 16 || !memcmp(buf, buf + 16, len - 16);
}

/*
 * Bytes at the start of @buf (@len bytes) made of whole 512-byte
 * sectors (a short last one counts) that are all zero if @zero, or all
 * hold data otherwise.
 */
static int64_t img_sector_run(const uint8_t *buf, int64_t len, bool zero)
{
    int64_t pos = 0;

    while (pos < len) {
        int64_t n = MIN(IMG_SECTOR, len - pos);

        if (img_is_zero(buf + pos, n) != zero) {
            break;
        }
        pos += n;
    }
    return pos;
}

/*
 * Bytes at the start of two buffers of @len bytes whose sectors are all
 * equal (@same) or all differ.
 */
static int64_t img_compare_run(const uint8_t *a, const uint8_t *b,
                               int64_t len, bool same)
{
    int64_t pos = 0;

    while (pos < len) {
        int64_t n = MIN(IMG_SECTOR, len - pos);

        if (!memcmp(a + pos, b + pos, n) != same) {
            break;
        }
        pos += n;
    }
    return pos;
}

/*
 * -p output: "    (NN.NN/100%)\r" whenever the figure moved by more than
 * the command's step since the last print, at 0 and at 100; a newline at
 * the end.  Only -p (without -q) turns it on.
 */
typedef struct ImgProgress {
    bool on;
    float min_skip;
    float current;
    float last_print;
} ImgProgress;

static ImgProgress img_progress;

static void img_progress_init(bool on, float min_skip)
{
    img_progress = (ImgProgress) {
        .on = on,
        .min_skip = min_skip,
    };
}

/* With @max 0, @delta is the new figure; else @delta percent of @max. */
static void img_progress_print(float delta, int max)
{
    float cur;

    if (!img_progress.on) {
        return;
    }
    if (max == 0) {
        cur = delta;
    } else {
        cur = img_progress.current + delta / 100 * max;
    }
    cur = MIN(cur, 100);
    img_progress.current = cur;
    if (cur > img_progress.last_print + img_progress.min_skip ||
        cur == 100 || cur == 0) {
        img_progress.last_print = cur;
        printf("    (%3.2f/100%%)\r", cur);
        fflush(stdout);
    }
}

static void img_progress_end(void)
{
    if (img_progress.on) {
        printf("\n");
        fflush(stdout);
        img_progress.on = false;
    }
}

/* Run @fn(@opaque) in a coroutine of the main context and wait for it. */
typedef struct ImgCoCall {
    CoroutineEntry *fn;
    void *opaque;
    bool done;
} ImgCoCall;

static void coroutine_fn img_co_call_entry(void *opaque)
{
    ImgCoCall *call = opaque;

    call->fn(call->opaque);
    call->done = true;
    aio_wait_kick();
}

static void img_co_call(CoroutineEntry *fn, void *opaque)
{
    AioContext *ctx = qemu_get_aio_context();
    ImgCoCall call = { .fn = fn, .opaque = opaque };

    aio_co_enter(ctx, qemu_coroutine_create(img_co_call_entry, &call));
    AIO_WAIT_WHILE(ctx, !call.done);
}

/* The status of a range through the whole backing chain of @bs. */
typedef struct ImgStatusCall {
    BlockDriverState *bs;
    int64_t offset;
    int64_t bytes;
    int64_t pnum;
    int ret;
} ImgStatusCall;

static void coroutine_fn img_status_above_entry(void *opaque)
{
    ImgStatusCall *c = opaque;

    c->ret = bdrv_co_block_status_above(c->bs, NULL, c->offset, c->bytes,
                                        &c->pnum, NULL, NULL, NULL);
}

static int img_block_status_above(BlockDriverState *bs, int64_t offset,
                                  int64_t bytes, int64_t *pnum)
{
    ImgStatusCall c = { .bs = bs, .offset = offset, .bytes = bytes };

    img_co_call(img_status_above_entry, &c);
    *pnum = c.pnum;
    return c.ret;
}

/* ---- convert ---- */

typedef enum ImgCvtKind {
    IMG_CVT_DATA,       /* read it and write what is not zero */
    IMG_CVT_ZERO,       /* reads as zeroes */
    IMG_CVT_BACKING,    /* the target's backing file provides it */
} ImgCvtKind;

typedef struct ImgConvert {
    BlockBackend **src;
    int64_t *src_size;
    int src_num;
    int64_t total;

    BlockBackend *target;
    bool target_has_backing;
    /* Size of the target's backing file, -1 if it has none. */
    int64_t target_backing_size;
    /* The target reads as zeroes where nothing is written. */
    bool has_zero_init;
    /* Zero-detection run length (-S); 0 writes everything as data. */
    int64_t min_sparse;
    bool wr_in_order;
    int num_workers;
    int64_t rate_limit;         /* bytes per second; 0: none */
    int64_t start_ns;
    int64_t rate_bytes;

    /* The next chunk to hand out, and what is known about it. */
    CoMutex lock;
    int64_t next;
    int src_cur;
    int64_t src_cur_start;
    int64_t status_end;
    ImgCvtKind status;

    /* Without -W: where the next write must start. */
    int64_t wr_offs;
    CoQueue wr_queue;

    /* Progress counts the bytes that are copied (or written as zero). */
    int64_t counted_total;
    int64_t counted_done;

    int running;
    int ret;                    /* -EINPROGRESS until done */
} ImgConvert;

/*
 * What to do with the source range starting at @off in source @idx
 * (@global in the concatenation): a kind and how far it holds (*@pnum).
 */
static int coroutine_fn img_cvt_status(ImgConvert *s, int idx, int64_t off,
                                       int64_t global, int64_t bytes,
                                       int64_t *pnum, ImgCvtKind *kind)
{
    BlockDriverState *bs = blk_bs(s->src[idx]);
    int ret;

    bytes = MIN(bytes, BDRV_REQUEST_MAX_BYTES);
    /* Ranges are split where the target's backing file ends. */
    if (s->target_backing_size >= 0 && global < s->target_backing_size) {
        bytes = MIN(bytes, s->target_backing_size - global);
    }
    if (s->target_has_backing) {
        /*
         * Only what the top layer has: the rest is the (same) backing
         * file the target is given.  As in QEMU, a range that starts
         * where the source's backing file has ended reads as zeroes.
         */
        ret = bdrv_co_block_status(bs, off, bytes, pnum, NULL, NULL);
        if (ret >= 0 && !(ret & BDRV_BLOCK_ALLOCATED)) {
            int64_t blen = bs->backing ?
                           bdrv_co_getlength(bs->backing->bs) : 0;

            if (blen < 0) {
                return blen;
            }
            if (off >= blen) {
                ret |= BDRV_BLOCK_ZERO;
            }
        }
    } else {
        ret = bdrv_co_block_status_above(bs, NULL, off, bytes, pnum, NULL,
                                         NULL, NULL);
    }
    if (ret < 0) {
        return ret;
    }
    if (ret & BDRV_BLOCK_ZERO) {
        /*
         * Beyond the end of the target's backing file the target reads
         * zeroes without being written.
         */
        if (s->target_backing_size >= 0 &&
            global >= s->target_backing_size) {
            *kind = IMG_CVT_BACKING;
        } else {
            *kind = IMG_CVT_ZERO;
        }
    } else if (ret & BDRV_BLOCK_DATA) {
        *kind = IMG_CVT_DATA;
    } else if (!s->target_has_backing) {
        *kind = IMG_CVT_DATA;
    } else {
        *kind = IMG_CVT_BACKING;
    }
    return 0;
}

static bool img_cvt_counted(ImgConvert *s, ImgCvtKind kind)
{
    return kind == IMG_CVT_DATA || (!s->min_sparse && kind == IMG_CVT_ZERO);
}

/* The first pass for -p: how many bytes will count towards 100%. */
static void coroutine_fn img_cvt_count_entry(void *opaque)
{
    ImgConvert *s = opaque;

    int64_t start = 0;

    for (int i = 0; i < s->src_num; start += s->src_size[i], i++) {
        int64_t off = 0;

        while (off < s->src_size[i]) {
            ImgCvtKind kind;
            int64_t pnum;
            int ret = img_cvt_status(s, i, off, start + off,
                                     s->src_size[i] - off, &pnum, &kind);

            if (ret < 0) {
                /* The copy meets it again and reports it there. */
                return;
            }
            if (img_cvt_counted(s, kind)) {
                s->counted_total += pnum;
            }
            off += pnum;
        }
    }
}

static void coroutine_fn img_cvt_rate_limit(ImgConvert *s, int64_t bytes)
{
    int64_t due, now;

    if (!s->rate_limit) {
        return;
    }
    s->rate_bytes += bytes;
    due = s->start_ns +
          (int64_t)((double)s->rate_bytes * 1e9 / s->rate_limit);
    now = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
    if (due > now) {
        qemu_co_sleep_ns(QEMU_CLOCK_REALTIME, due - now);
    }
}

/* Write a data chunk, leaving out (or zeroing) runs of zero sectors. */
static int coroutine_fn img_cvt_write_data(ImgConvert *s, int64_t off,
                                           int64_t n, uint8_t *buf)
{
    BdrvRequestFlags zflags = s->target_has_backing ? 0 : BDRV_REQ_MAY_UNMAP;
    QEMUIOVector qiov;
    int64_t pos = 0;
    int ret;

    if (!s->min_sparse) {
        qemu_iovec_init_buf(&qiov, buf, n);
        return blk_co_pwritev(s->target, off, n, &qiov, 0);
    }

    while (pos < n) {
        int64_t zeros = img_sector_run(buf + pos, n - pos, true);
        int64_t len;

        if (zeros && (zeros >= s->min_sparse || pos + zeros == n)) {
            if (!s->has_zero_init) {
                ret = blk_co_pwrite_zeroes(s->target, off + pos, zeros,
                                           zflags);
                if (ret < 0) {
                    return ret;
                }
            }
            pos += zeros;
            continue;
        }

        /*
         * Data, taking in zero runs too short to leave out, up to a run
         * long enough (or one that ends the chunk).
         */
        len = zeros;
        for (;;) {
            int64_t z;

            len += img_sector_run(buf + pos + len, n - pos - len, false);
            z = img_sector_run(buf + pos + len, n - pos - len, true);
            if (z == 0 || z >= s->min_sparse || pos + len + z == n) {
                break;
            }
            len += z;
        }
        qemu_iovec_init_buf(&qiov, buf + pos, len);
        ret = blk_co_pwritev(s->target, off + pos, len, &qiov, 0);
        if (ret < 0) {
            return ret;
        }
        pos += len;
    }
    return 0;
}

static int coroutine_fn img_cvt_write(ImgConvert *s, int64_t off,
                                      int64_t n, ImgCvtKind kind,
                                      uint8_t *buf)
{
    QEMUIOVector qiov;

    switch (kind) {
    case IMG_CVT_DATA:
        return img_cvt_write_data(s, off, n, buf);
    case IMG_CVT_ZERO:
        if (!s->min_sparse) {
            /* -S 0: the target is to be fully allocated. */
            memset(buf, 0, n);
            qemu_iovec_init_buf(&qiov, buf, n);
            return blk_co_pwritev(s->target, off, n, &qiov, 0);
        }
        if (s->has_zero_init) {
            return 0;
        }
        return blk_co_pwrite_zeroes(s->target, off, n,
                                    s->target_has_backing ?
                                    0 : BDRV_REQ_MAY_UNMAP);
    case IMG_CVT_BACKING:
        return 0;
    }
    g_assert_not_reached();
}

/*
 * Hand out the next chunk: at most IMG_IO_BUF_SIZE bytes of one kind,
 * within one source.  Returns false when there is nothing left to do.
 */
static bool coroutine_fn img_cvt_claim(ImgConvert *s, int64_t *off,
                                       int64_t *n, int *idx,
                                       int64_t *src_off, ImgCvtKind *kind)
{
    bool claimed = false;

    /* The graph lock comes before any CoMutex (see graph-lock.h). */
    bdrv_graph_co_rdlock();
    qemu_co_mutex_lock(&s->lock);
    if (s->ret != -EINPROGRESS || s->next >= s->total) {
        goto out;
    }
    while (s->next >= s->src_cur_start + s->src_size[s->src_cur]) {
        s->src_cur_start += s->src_size[s->src_cur];
        s->src_cur++;
    }
    if (s->next >= s->status_end) {
        int64_t local = s->next - s->src_cur_start;
        int64_t pnum;
        int ret;

        ret = img_cvt_status(s, s->src_cur, local, s->next,
                             s->src_size[s->src_cur] - local, &pnum,
                             &s->status);
        if (ret < 0) {
            error_report("error while reading block status at offset %"
                         PRId64 ": %s", s->next, strerror(-ret));
            s->ret = ret;
            goto out;
        }
        assert(pnum > 0);
        s->status_end = s->next + pnum;
    }

    *off = s->next;
    *n = MIN(s->status_end - s->next, IMG_IO_BUF_SIZE);
    *idx = s->src_cur;
    *src_off = s->next - s->src_cur_start;
    *kind = s->status;
    s->next += *n;
    claimed = true;

    if (img_cvt_counted(s, *kind) && s->counted_total) {
        s->counted_done += *n;
        img_progress_print(100.0f * s->counted_done / s->counted_total, 0);
    }
out:
    qemu_co_mutex_unlock(&s->lock);
    bdrv_graph_co_rdunlock();
    return claimed;
}

static void coroutine_fn img_cvt_worker(void *opaque)
{
    ImgConvert *s = opaque;
    uint8_t *buf = img_buf_alloc(IMG_IO_BUF_SIZE);
    int64_t off, n, src_off;
    ImgCvtKind kind;
    int idx;
    int ret;

    while (img_cvt_claim(s, &off, &n, &idx, &src_off, &kind)) {
        if (kind == IMG_CVT_DATA) {
            QEMUIOVector qiov;

            qemu_iovec_init_buf(&qiov, buf, n);
            ret = blk_co_preadv(s->src[idx], src_off, n, &qiov, 0);
            if (ret < 0) {
                error_report("error while reading at byte %" PRId64 ": %s",
                             off, strerror(-ret));
                s->ret = ret;
            }
        }

        if (s->wr_in_order) {
            while (s->ret == -EINPROGRESS && s->wr_offs != off) {
                qemu_co_queue_wait(&s->wr_queue, NULL);
            }
        }
        if (s->ret != -EINPROGRESS) {
            break;
        }

        ret = img_cvt_write(s, off, n, kind, buf);
        if (ret < 0) {
            error_report("error while writing at byte %" PRId64 ": %s",
                         off, strerror(-ret));
            s->ret = ret;
            break;
        }
        if (s->wr_in_order) {
            s->wr_offs = off + n;
            qemu_co_queue_restart_all(&s->wr_queue);
        }
        if (kind != IMG_CVT_BACKING) {
            img_cvt_rate_limit(s, n);
        }
    }

    /* Whoever waits for its turn must learn that the copy failed. */
    qemu_co_queue_restart_all(&s->wr_queue);
    g_aligned_free(buf);
    s->running--;
    aio_wait_kick();
}

static int img_cvt_run(ImgConvert *s)
{
    AioContext *ctx = qemu_get_aio_context();

    if (img_progress.on) {
        img_co_call(img_cvt_count_entry, s);
    }

    qemu_co_mutex_init(&s->lock);
    qemu_co_queue_init(&s->wr_queue);
    s->ret = -EINPROGRESS;
    s->start_ns = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
    s->running = s->num_workers;
    for (int i = 0; i < s->num_workers; i++) {
        aio_co_enter(ctx, qemu_coroutine_create(img_cvt_worker, s));
    }
    AIO_WAIT_WHILE(ctx, s->running > 0);

    if (s->ret == -EINPROGRESS) {
        s->ret = blk_flush(s->target);
        if (s->ret < 0) {
            error_report("error while flushing the target: %s",
                         strerror(-s->ret));
        }
    }
    return s->ret;
}

/*
 * The creation options for the target: -o, then what convert decides
 * itself (size, -B, -F).  NULL after reporting an error.
 */
static JsonObject *img_cvt_create_opts(BlockDriver *drv,
                                       const char *out_fmt,
                                       const char *out_filename,
                                       const char *options,
                                       const char *backing,
                                       const char *backing_fmt,
                                       int64_t total)
{
    g_autofree BlockOptDesc *list = NULL;
    g_autoptr(JsonObject) opts = json_object_new();
    GError *err = NULL;
    bool has_backing;

    list = bdrv_create_opts_list(drv, out_filename);
    if (!list) {
        error_report("Format driver '%s' does not support image creation",
                     out_fmt);
        return NULL;
    }
    if (options && !img_parse_opts(list, options, opts, &err)) {
        error_report_err(err);
        return NULL;
    }

    json_object_set_int_member(opts, "size", total);
    if (backing) {
        json_object_set_string_member(opts, "backing_file", backing);
    }
    if (backing_fmt) {
        json_object_set_string_member(opts, "backing_fmt", backing_fmt);
    }

    has_backing = json_object_has_member(opts, "backing_file");
    if (has_backing && !drv->supports_backing) {
        error_report("Backing file not supported for file format '%s'",
                     out_fmt);
        return NULL;
    }
    if (has_backing && !json_object_has_member(opts, "backing_fmt")) {
        error_report("Use of backing file requires explicit backing "
                     "format");
        return NULL;
    }
    return g_steal_pointer(&opts);
}

int img_convert(int argc, char **argv)
{
    enum {
        OPT_OBJECT = 256,
        OPT_IMAGE_OPTS,
        OPT_TARGET_IMAGE_OPTS,
        OPT_SALVAGE,
        OPT_TARGET_IS_ZERO,
        OPT_BITMAPS,
        OPT_SKIP_BROKEN,
    };
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, OPT_OBJECT },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { "force-share", no_argument, NULL, 'U' },
        { "target-image-opts", no_argument, NULL, OPT_TARGET_IMAGE_OPTS },
        { "salvage", no_argument, NULL, OPT_SALVAGE },
        { "target-is-zero", no_argument, NULL, OPT_TARGET_IS_ZERO },
        { "bitmaps", no_argument, NULL, OPT_BITMAPS },
        { "skip-broken-bitmaps", no_argument, NULL, OPT_SKIP_BROKEN },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL, *out_fmt = NULL, *out_baseimg = NULL;
    const char *backing_fmt = NULL, *snapshot = NULL;
    const char *cache = "unsafe", *src_cache = "writeback";
    const char *out_filename = NULL;
    g_autofree char *options = NULL;
    bool image_opts = false, tgt_image_opts = false, progress = false;
    bool quiet = false, skip_create = false, compress = false;
    bool copy_range = false, force_share = false, target_is_zero = false;
    bool explicit_min_sparse = false, bitmaps = false;
    int64_t min_sparse = 8 * IMG_SECTOR, rate_limit = 0, num_co = 8;
    bool wr_in_order = true;
    /* Zeroed ranges of the target may be deallocated. */
    int src_flags = 0, flags = BDRV_O_RDWR | BDRV_O_UNMAP;
    bool src_writethrough = false, writethrough = false;
    ImgConvert s = { 0 };
    BlockDriver *drv = NULL;
    g_autoptr(JsonObject) create_opts = NULL;
    GError *err = NULL;
    int ret = 1;
    int c;

    while ((c = getopt_long(argc, argv, ":hf:O:B:CcF:o:l:S:pt:T:qnm:WUr:",
                            long_options, NULL)) != -1) {
        switch (c) {
        case 'h':
            return img_help();
        case 'f':
            fmt = optarg;
            break;
        case 'O':
            out_fmt = optarg;
            break;
        case 'B':
            out_baseimg = optarg;
            break;
        case 'C':
            copy_range = true;
            break;
        case 'c':
            compress = true;
            break;
        case 'F':
            backing_fmt = optarg;
            break;
        case 'o':
            if (!img_add_opts(&options, optarg)) {
                return 1;
            }
            break;
        case 'l':
            snapshot = optarg;
            break;
        case 'S':
            if (!img_cvtnum("buffer size for sparse output", optarg,
                            &min_sparse)) {
                return 1;
            }
            if (min_sparse % IMG_SECTOR ||
                min_sparse > IMG_SECTOR * 32768) {
                error_report("Invalid buffer size for sparse output "
                             "specified. Valid sizes are multiples of 512 "
                             "up to 16777216. Select 0 to disable sparse "
                             "detection (fully allocates output).");
                return 1;
            }
            explicit_min_sparse = true;
            break;
        case 'p':
            progress = true;
            break;
        case 't':
            cache = optarg;
            break;
        case 'T':
            src_cache = optarg;
            break;
        case 'q':
            quiet = true;
            break;
        case 'n':
            skip_create = true;
            break;
        case 'm':
            if (!img_strtoi(optarg, 1, 16, &num_co)) {
                error_report("Invalid number of coroutines. Allowed number "
                             "of coroutines is between 1 and 16");
                return 1;
            }
            break;
        case 'W':
            wr_in_order = false;
            break;
        case 'U':
            force_share = true;
            break;
        case 'r':
            if (!img_cvtnum("rate limit", optarg, &rate_limit)) {
                return 1;
            }
            break;
        case OPT_OBJECT:
            if (!img_add_object(optarg)) {
                return 1;
            }
            break;
        case OPT_IMAGE_OPTS:
            image_opts = true;
            break;
        case OPT_TARGET_IMAGE_OPTS:
            tgt_image_opts = true;
            break;
        case OPT_SALVAGE:
            /* Read errors still fail the copy; see the documentation. */
            break;
        case OPT_TARGET_IS_ZERO:
            target_is_zero = true;
            break;
        case OPT_BITMAPS:
            bitmaps = true;
            break;
        case OPT_SKIP_BROKEN:
            break;
        default:
            return img_opt_error(c, argv);
        }
    }

    if (!out_fmt && !tgt_image_opts) {
        out_fmt = "raw";
    }
    if (copy_range && compress) {
        error_report("Cannot enable copy offloading when -c is used");
        return 1;
    }
    if (copy_range && explicit_min_sparse) {
        error_report("Cannot enable copy offloading when -S is used");
        return 1;
    }
    if (skip_create && options) {
        error_report("-o has no effect when skipping image creation");
        return 1;
    }
    if (tgt_image_opts && !skip_create) {
        error_report("--target-image-opts requires use of -n flag");
        return 1;
    }
    if (target_is_zero && !skip_create) {
        error_report("--target-is-zero requires use of -n flag");
        return 1;
    }
    if (quiet) {
        progress = false;
    }

    s.src_num = argc - optind - 1;
    out_filename = s.src_num >= 0 ? argv[argc - 1] : NULL;

    if (options && img_opts_want_help(options)) {
        if (!out_fmt || !(drv = bdrv_find_format(out_fmt))) {
            error_report("Unknown file format '%s'", out_fmt ?: "");
            return 1;
        }
        img_print_create_opts_help(drv, out_filename);
        return 0;
    }

    if (s.src_num < 1) {
        error_report("Must specify image file name");
        return 1;
    }

    if (!img_cache_flags(src_cache, &src_flags, &src_writethrough)) {
        error_report("Invalid source cache option: %s", src_cache);
        return 1;
    }
    if (force_share) {
        src_flags |= BDRV_O_FORCE_SHARE;
    }

    img_progress_init(progress, 1.0);
    img_progress_print(0, 100);

    s.src = g_new0(BlockBackend *, s.src_num);
    s.src_size = g_new0(int64_t, s.src_num);
    for (int i = 0; i < s.src_num; i++) {
        const char *name = argv[optind + i];

        s.src[i] = img_open(name, fmt, NULL, image_opts, src_flags,
                            src_writethrough);
        if (!s.src[i]) {
            goto out;
        }
        s.src_size[i] = blk_getlength(s.src[i]);
        if (s.src_size[i] < 0) {
            error_report("Could not get size of %s: %s", name,
                         strerror(-s.src_size[i]));
            goto out;
        }
        s.total += s.src_size[i];
    }

    if (snapshot) {
        error_report("Failed to load snapshot: Block format '%s' used by "
                     "device '' does not support temporarily loading "
                     "internal snapshots",
                     bdrv_get_format_name(blk_bs(s.src[0])));
        goto out;
    }
    if (bitmaps) {
        /* Neither raw nor qed keeps persistent bitmaps. */
        error_report("Source lacks bitmap support");
        goto out;
    }

    if (!skip_create) {
        drv = bdrv_find_format(out_fmt);
        if (!drv) {
            error_report("Unknown file format '%s'", out_fmt);
            goto out;
        }
        if (!bdrv_find_protocol(out_filename, &err)) {
            error_report_err(err);
            goto out;
        }
        create_opts = img_cvt_create_opts(drv, out_fmt, out_filename,
                                          options, out_baseimg,
                                          backing_fmt, s.total);
        if (!create_opts) {
            goto out;
        }
        s.target_has_backing =
            json_object_has_member(create_opts, "backing_file");
    } else {
        s.target_has_backing = out_baseimg != NULL;
    }
    if (compress) {
        /* No Sluice format writes compressed clusters. */
        error_report("Compression not supported for this file format");
        goto out;
    }

    if (!skip_create) {
        if (bdrv_create(drv, out_filename, create_opts, &err) < 0) {
            error_report("%s: error while converting %s: %s", out_filename,
                         out_fmt, err->message);
            g_error_free(err);
            goto out;
        }
    }

    /* qemu-img looks at -t only once the target exists. */
    if (!img_cache_flags(cache, &flags, &writethrough)) {
        error_report("Invalid cache option: %s", cache);
        goto out;
    }

    s.target = img_open(out_filename, out_fmt, NULL, tgt_image_opts, flags,
                        writethrough);
    if (!s.target) {
        goto out;
    }
    if (skip_create) {
        int64_t out_size = blk_getlength(s.target);

        if (out_size < 0) {
            error_report("Could not get size of %s: %s", out_filename,
                         strerror(-out_size));
            goto out;
        }
        if (out_size < s.total) {
            error_report("output file is smaller than input file");
            goto out;
        }
    }

    s.target_backing_size = -1;
    if (s.target_has_backing && blk_bs(s.target)->backing) {
        s.target_backing_size =
            bdrv_getlength(blk_bs(s.target)->backing->bs);
        if (s.target_backing_size < 0) {
            error_report("Could not inquire the size of the target's "
                         "backing file: %s",
                         strerror(-s.target_backing_size));
            goto out;
        }
    }
    s.min_sparse = min_sparse;
    s.has_zero_init = target_is_zero ||
                      (!skip_create && !s.target_has_backing);
    s.wr_in_order = wr_in_order;
    s.num_workers = num_co;
    s.rate_limit = rate_limit;
    if (img_cvt_run(&s) == 0) {
        ret = 0;
    }

out:
    if (ret == 0) {
        img_progress_print(100, 0);
    }
    img_progress_end();
    if (s.target) {
        blk_unref(s.target);
    }
    for (int i = 0; s.src && i < s.src_num; i++) {
        if (s.src[i]) {
            blk_unref(s.src[i]);
        }
    }
    g_free(s.src);
    g_free(s.src_size);
    return ret;
}

/* ---- dd ---- */

typedef struct ImgDdOperand {
    const char *name;
    char **value;
} ImgDdOperand;

int img_dd(int argc, char **argv)
{
    enum {
        OPT_IMAGE_OPTS = 256,
    };
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL, *out_fmt = "raw";
    g_autofree char *in_name = NULL, *out_name = NULL;
    g_autofree char *bs_str = NULL, *count_str = NULL, *skip_str = NULL;
    const ImgDdOperand operands[] = {
        { "bs", &bs_str },
        { "count", &count_str },
        { "if", &in_name },
        { "of", &out_name },
        { "skip", &skip_str },
    };
    bool image_opts = false, force_share = false;
    int64_t bsz = 512, count = 0, skip = 0;
    int64_t in_size, size, in_pos;
    BlockBackend *in = NULL, *out = NULL;
    g_autofree BlockOptDesc *list = NULL;
    g_autoptr(JsonObject) create_opts = NULL;
    BlockDriver *drv;
    GError *err = NULL;
    uint8_t *buf = NULL;
    int flags = 0;
    int ret = 1;
    int c;

    while ((c = getopt_long(argc, argv, ":hf:O:U", long_options,
                            NULL)) != -1) {
        switch (c) {
        case 'h':
            return img_help();
        case 'f':
            fmt = optarg;
            break;
        case 'O':
            out_fmt = optarg;
            break;
        case 'U':
            force_share = true;
            break;
        case OPT_IMAGE_OPTS:
            image_opts = true;
            break;
        default:
            return img_opt_error(c, argv);
        }
    }

    /* Operands are taken in order; each value is checked as it is met. */
    for (int i = optind; i < argc; i++) {
        const char *arg = argv[i];
        const char *eq = strchr(arg, '=');
        size_t klen = eq ? (size_t)(eq - arg) : strlen(arg);
        const char *value = eq ? eq + 1 : NULL;
        bool known = false;

        for (size_t j = 0; eq && j < ARRAY_SIZE(operands); j++) {
            if (strlen(operands[j].name) == klen &&
                !strncmp(arg, operands[j].name, klen)) {
                g_free(*operands[j].value);
                *operands[j].value = g_strdup(value);
                known = true;
                break;
            }
        }
        if (!known) {
            error_report("unrecognized operand %.*s", (int)klen, arg);
            return 1;
        }
        if (!strncmp(arg, "bs=", 3) &&
            !img_cvtnum_full("bs", value, 1, INT_MAX, &bsz)) {
            return 1;
        }
        if (!strncmp(arg, "count=", 6) &&
            !img_cvtnum("count", value, &count)) {
            return 1;
        }
        if (!strncmp(arg, "skip=", 5) && !img_cvtnum("skip", value, &skip)) {
            return 1;
        }
    }

    if (!in_name || !out_name) {
        error_report("Must specify both input and output files");
        return 1;
    }

    if (force_share) {
        flags |= BDRV_O_FORCE_SHARE;
    }
    in = img_open(in_name, fmt, NULL, image_opts, flags, false);
    if (!in) {
        goto out;
    }

    drv = bdrv_find_format(out_fmt);
    if (!drv) {
        error_report("Unknown file format");
        goto out;
    }
    if (!bdrv_find_protocol(out_name, &err)) {
        error_report_err(err);
        goto out;
    }
    list = bdrv_create_opts_list(drv, out_name);
    if (!list) {
        error_report("Format driver '%s' does not support image creation",
                     out_fmt);
        goto out;
    }

    in_size = blk_getlength(in);
    if (in_size < 0) {
        error_report("Failed to get size for '%s'", in_name);
        goto out;
    }

    /*
     * As qemu-img: count limits the size only if it fits in the input,
     * and the skipped blocks come out of it.
     */
    size = in_size;
    if (count_str && count <= in_size / bsz) {
        size = count * bsz;
    }
    in_pos = 0;
    if (skip_str) {
        if (skip > in_size / bsz || skip * bsz > size) {
            error_report("%s: cannot skip to specified offset", in_name);
            in_pos = size;
        } else {
            in_pos = skip * bsz;
        }
    }

    create_opts = json_object_new();
    json_object_set_int_member(create_opts, "size", size - in_pos);
    if (bdrv_create(drv, out_name, create_opts, &err) < 0) {
        error_report("%s: error while creating output image: %s",
                     out_name, err->message);
        g_error_free(err);
        goto out;
    }

    out = img_open(out_name, out_fmt, NULL, false, BDRV_O_RDWR, false);
    if (!out) {
        goto out;
    }

    buf = img_buf_alloc(bsz);
    for (int64_t out_pos = 0; in_pos < size;) {
        int64_t n = MIN(bsz, size - in_pos);
        int r;

        r = blk_pread(in, in_pos, n, buf, 0);
        if (r < 0) {
            error_report("error while reading from input image file: %s",
                         strerror(-r));
            goto out;
        }
        r = blk_pwrite(out, out_pos, n, buf, 0);
        if (r < 0) {
            error_report("error while writing to output image file: %s",
                         strerror(-r));
            goto out;
        }
        in_pos += n;
        out_pos += n;
    }
    ret = 0;

out:
    if (buf) {
        g_aligned_free(buf);
    }
    if (out) {
        blk_unref(out);
    }
    if (in) {
        blk_unref(in);
    }
    return ret;
}

/* ---- compare ---- */

/* Exit codes of compare, as qemu-img's. */
enum {
    IMG_CMP_SAME = 0,
    IMG_CMP_DIFFERENT = 1,
    IMG_CMP_ERROR = 2,
    IMG_CMP_STATUS_ERROR = 3,
    IMG_CMP_READ_ERROR = 4,
};

static int img_cmp_read(BlockBackend *blk, const char *name, int64_t off,
                        int64_t n, uint8_t *buf)
{
    int ret = blk_pread(blk, off, n, buf, 0);

    if (ret < 0) {
        img_error_unflushed("Error while reading offset %" PRId64
                            " of %s: %s", off, name, strerror(-ret));
        return IMG_CMP_READ_ERROR;
    }
    return 0;
}

/* Check that [off, off + n) of @blk (allocated) reads as zeroes. */
static int img_cmp_check_empty(BlockBackend *blk, const char *name,
                               int64_t off, int64_t n, uint8_t *buf,
                               bool quiet)
{
    int64_t zeros;
    int ret = img_cmp_read(blk, name, off, n, buf);

    if (ret) {
        return ret;
    }
    zeros = img_sector_run(buf, n, true);
    if (zeros < n) {
        if (!quiet) {
            printf("Content mismatch at offset %" PRId64 "!\n", off + zeros);
        }
        return IMG_CMP_DIFFERENT;
    }
    return 0;
}

int img_compare(int argc, char **argv)
{
    enum {
        OPT_OBJECT = 256,
        OPT_IMAGE_OPTS,
    };
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, OPT_OBJECT },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt1 = NULL, *fmt2 = NULL, *cache = "writeback";
    const char *name1, *name2;
    bool progress = false, quiet = false, strict = false;
    bool image_opts = false, force_share = false, writethrough = false;
    BlockBackend *blk1 = NULL, *blk2 = NULL;
    BlockDriverState *bs1, *bs2;
    int64_t size1, size2, common, total, off;
    uint8_t *buf1 = NULL, *buf2 = NULL;
    int flags = 0;
    int ret = IMG_CMP_ERROR;
    int c;

    while ((c = getopt_long(argc, argv, ":hf:F:T:pqsU", long_options,
                            NULL)) != -1) {
        switch (c) {
        case 'h':
            return img_help();
        case 'f':
            fmt1 = optarg;
            break;
        case 'F':
            fmt2 = optarg;
            break;
        case 'T':
            cache = optarg;
            break;
        case 'p':
            progress = true;
            break;
        case 'q':
            quiet = true;
            break;
        case 's':
            strict = true;
            break;
        case 'U':
            force_share = true;
            break;
        case OPT_OBJECT:
            if (!img_add_object(optarg)) {
                return IMG_CMP_ERROR;
            }
            break;
        case OPT_IMAGE_OPTS:
            image_opts = true;
            break;
        default:
            return img_opt_error(c, argv);
        }
    }

    if (quiet) {
        progress = false;
    }
    if (optind != argc - 2) {
        return img_usage_error("Expecting two image file names");
    }
    name1 = argv[optind];
    name2 = argv[optind + 1];

    img_progress_init(progress, 2.0);

    if (!img_cache_flags(cache, &flags, &writethrough)) {
        error_report("Invalid source cache option: %s", cache);
        goto out;
    }
    if (force_share) {
        flags |= BDRV_O_FORCE_SHARE;
    }

    blk1 = img_open(name1, fmt1, NULL, image_opts, flags, writethrough);
    if (!blk1) {
        goto out;
    }
    blk2 = img_open(name2, fmt2, NULL, image_opts, flags, writethrough);
    if (!blk2) {
        goto out;
    }
    bs1 = blk_bs(blk1);
    bs2 = blk_bs(blk2);

    size1 = blk_getlength(blk1);
    if (size1 < 0) {
        error_report("Can't get size of %s: %s", name1, strerror(-size1));
        goto out;
    }
    size2 = blk_getlength(blk2);
    if (size2 < 0) {
        error_report("Can't get size of %s: %s", name2, strerror(-size2));
        goto out;
    }
    common = MIN(size1, size2);
    total = MAX(size1, size2);
    buf1 = img_buf_alloc(IMG_IO_BUF_SIZE);
    buf2 = img_buf_alloc(IMG_IO_BUF_SIZE);

    img_progress_print(0, 100);

    if (strict && size1 != size2) {
        if (!quiet) {
            printf("Strict mode: Image size mismatch!\n");
        }
        ret = IMG_CMP_DIFFERENT;
        goto out;
    }

    for (off = 0; off < common;) {
        int64_t pnum1, pnum2, chunk;
        int st1, st2;
        bool alloc1, alloc2;

        st1 = img_block_status_above(bs1, off, common - off, &pnum1);
        if (st1 < 0) {
            error_report("Sector allocation test failed for %s", name1);
            ret = IMG_CMP_STATUS_ERROR;
            goto out;
        }
        st2 = img_block_status_above(bs2, off, common - off, &pnum2);
        if (st2 < 0) {
            error_report("Sector allocation test failed for %s", name2);
            ret = IMG_CMP_STATUS_ERROR;
            goto out;
        }
        alloc1 = st1 & BDRV_BLOCK_ALLOCATED;
        alloc2 = st2 & BDRV_BLOCK_ALLOCATED;
        chunk = MIN(pnum1, pnum2);

        if (strict && st1 != st2) {
            if (!quiet) {
                printf("Strict mode: Offset %" PRId64
                       " block status mismatch!\n", off);
            }
            ret = IMG_CMP_DIFFERENT;
            goto out;
        }

        if ((st1 & BDRV_BLOCK_ZERO) && (st2 & BDRV_BLOCK_ZERO)) {
            /* Both read as zeroes. */
        } else if (alloc1 && alloc2) {
            int64_t same;

            chunk = MIN(chunk, IMG_IO_BUF_SIZE);
            ret = img_cmp_read(blk1, name1, off, chunk, buf1);
            if (!ret) {
                ret = img_cmp_read(blk2, name2, off, chunk, buf2);
            }
            if (ret) {
                goto out;
            }
            same = img_compare_run(buf1, buf2, chunk, true);
            if (same < chunk) {
                if (!quiet) {
                    printf("Content mismatch at offset %" PRId64 "!\n",
                           off + same);
                }
                ret = IMG_CMP_DIFFERENT;
                goto out;
            }
        } else if (alloc1 || alloc2) {
            /* The unallocated side reads as zeroes. */
            chunk = MIN(chunk, IMG_IO_BUF_SIZE);
            if (alloc1) {
                ret = img_cmp_check_empty(blk1, name1, off, chunk, buf1,
                                          quiet);
            } else {
                ret = img_cmp_check_empty(blk2, name2, off, chunk, buf2,
                                          quiet);
            }
            if (ret) {
                goto out;
            }
        }
        off += chunk;
        img_progress_print(((float)chunk / total) * 100, 100);
    }

    if (size1 != size2) {
        BlockBackend *blk_over = size1 > size2 ? blk1 : blk2;
        const char *name_over = size1 > size2 ? name1 : name2;

        if (!quiet) {
            printf("Warning: Image size mismatch!\n");
        }
        for (off = common; off < total;) {
            int64_t pnum;
            int st;

            st = img_block_status_above(blk_bs(blk_over), off, total - off,
                                        &pnum);
            if (st < 0) {
                img_error_unflushed("Sector allocation test failed for %s",
                                    name_over);
                ret = IMG_CMP_STATUS_ERROR;
                goto out;
            }
            if ((st & BDRV_BLOCK_ALLOCATED) && !(st & BDRV_BLOCK_ZERO)) {
                pnum = MIN(pnum, IMG_IO_BUF_SIZE);
                ret = img_cmp_check_empty(blk_over, name_over, off, pnum,
                                          buf1, quiet);
                if (ret) {
                    goto out;
                }
            }
            off += pnum;
            img_progress_print(((float)pnum / total) * 100, 100);
        }
    }

    if (!quiet) {
        printf("Images are identical.\n");
    }
    ret = IMG_CMP_SAME;

out:
    img_progress_end();
    if (buf1) {
        g_aligned_free(buf1);
    }
    if (buf2) {
        g_aligned_free(buf2);
    }
    if (blk2) {
        blk_unref(blk2);
    }
    if (blk1) {
        blk_unref(blk1);
    }
    return ret;
}

/* ---- bench ---- */

typedef struct ImgBench {
    BlockBackend *blk;
    int64_t image_size;
    bool write;
    int64_t bufsize;
    int64_t step;
    int64_t count;
    int64_t flush_interval;
    bool drain_on_flush;
    uint8_t *buf;

    int64_t offset;             /* of the next request */
    int64_t issued;
    int64_t done;
    int in_flight;
    bool failed;
    /* A flush is waiting for the requests in flight to finish. */
    bool draining;
    CoQueue drain_done;
    CoQueue idle;
    int running;
} ImgBench;

static void img_bench_fail(ImgBench *b, const char *what, int ret)
{
    /* qemu-img stops at the first failure; report only that one. */
    if (!b->failed) {
        img_error_unflushed("%s: %s", what, strerror(-ret));
        b->failed = true;
    }
}

static void coroutine_fn img_bench_flush(ImgBench *b)
{
    int ret;

    if (b->drain_on_flush) {
        b->draining = true;
        while (b->in_flight > 0) {
            qemu_co_queue_wait(&b->idle, NULL);
        }
    }
    ret = blk_co_flush(b->blk);
    if (ret < 0) {
        img_bench_fail(b, "Failed flush request", ret);
    }
    if (b->drain_on_flush) {
        b->draining = false;
        qemu_co_queue_restart_all(&b->drain_done);
    }
}

/* One of the -d request slots: issue, wait, repeat. */
static void coroutine_fn img_bench_worker(void *opaque)
{
    ImgBench *b = opaque;
    QEMUIOVector qiov;
    int64_t off;
    int ret;

    for (bool first = true;; first = false) {
        while (b->draining && !b->failed) {
            qemu_co_queue_wait(&b->drain_done, NULL);
        }
        /*
         * qemu-img sends the first -d requests at once, so a failure
         * stops only what would follow them.
         */
        if ((b->failed && !first) || b->issued >= b->count) {
            break;
        }
        off = b->offset;
        b->issued++;
        b->offset += b->step;
        if (b->image_size && b->offset >= b->image_size) {
            b->offset %= b->image_size;
        }

        b->in_flight++;
        qemu_iovec_init_buf(&qiov, b->buf, b->bufsize);
        if (b->write) {
            ret = blk_co_pwritev(b->blk, off, b->bufsize, &qiov, 0);
        } else {
            ret = blk_co_preadv(b->blk, off, b->bufsize, &qiov, 0);
        }
        b->in_flight--;
        if (b->in_flight == 0) {
            qemu_co_queue_restart_all(&b->idle);
        }
        if (ret < 0) {
            img_bench_fail(b, "Failed request", ret);
            break;
        }
        b->done++;
        if (b->flush_interval && b->done % b->flush_interval == 0) {
            img_bench_flush(b);
        }
    }

    qemu_co_queue_restart_all(&b->drain_done);
    qemu_co_queue_restart_all(&b->idle);
    b->running--;
    aio_wait_kick();
}

static int img_bench_run(ImgBench *b, int depth)
{
    AioContext *ctx = qemu_get_aio_context();
    int64_t workers = MIN(depth, b->count);

    qemu_co_queue_init(&b->drain_done);
    qemu_co_queue_init(&b->idle);
    b->running = workers;
    for (int64_t i = 0; i < workers; i++) {
        aio_co_enter(ctx, qemu_coroutine_create(img_bench_worker, b));
    }
    AIO_WAIT_WHILE(ctx, b->running > 0);
    return b->failed ? -1 : 0;
}

int img_bench(int argc, char **argv)
{
    enum {
        OPT_FLUSH_INTERVAL = 256,
        OPT_NO_DRAIN,
        OPT_PATTERN,
        OPT_IMAGE_OPTS,
    };
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "flush-interval", required_argument, NULL, OPT_FLUSH_INTERVAL },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { "pattern", required_argument, NULL, OPT_PATTERN },
        { "no-drain", no_argument, NULL, OPT_NO_DRAIN },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL, *filename;
    g_autofree char *aio_opts = NULL;
    bool image_opts = false, force_share = false;
    bool writethrough = false, aio_native = false, aio_uring = false;
    int64_t count = 75000, depth = 64, offset = 0, bufsize = 4096;
    int64_t step = 0, flush_interval = 0, pattern = 0;
    bool drain_on_flush = true, is_write = false;
    g_autoptr(JsonObject) extra = json_object_new();
    ImgBench b = { 0 };
    int flags = 0;
    int64_t t0;
    int ret = 1;
    int c;

    while ((c = getopt_long(argc, argv, ":hc:d:f:ni:o:qs:S:t:wU",
                            long_options, NULL)) != -1) {
        switch (c) {
        case 'h':
            return img_help();
        case 'c':
            if (!img_strtoi(optarg, 0, INT_MAX, &count)) {
                error_report("Invalid request count specified");
                return 1;
            }
            break;
        case 'd':
            /*
             * 0 is refused: qemu-img takes it and then waits forever for
             * requests it never sends.
             */
            if (!img_strtoi(optarg, 1, INT_MAX, &depth)) {
                error_report("Invalid queue depth specified");
                return 1;
            }
            break;
        case 'f':
            fmt = optarg;
            break;
        case 'n':
            aio_native = true;
            break;
        case 'i':
            if (!strcmp(optarg, "native")) {
                aio_native = true;
            } else if (!strcmp(optarg, "io_uring")) {
                aio_uring = true;
            } else if (strcmp(optarg, "threads")) {
                error_report("Invalid aio option: %s", optarg);
                return 1;
            }
            break;
        case 'o':
            if (!img_cvtnum("offset", optarg, &offset)) {
                return 1;
            }
            break;
        case 'q':
            /* Accepted; qemu-img prints its two lines anyway. */
            break;
        case 's':
            if (!img_cvtnum_full("buffer size", optarg, 0, INT_MAX,
                                 &bufsize)) {
                return 1;
            }
            break;
        case 'S':
            if (!img_cvtnum_full("step_size", optarg, 0, INT_MAX, &step)) {
                return 1;
            }
            break;
        case 't':
            if (!img_cache_flags(optarg, &flags, &writethrough)) {
                error_report("Invalid cache mode");
                return 1;
            }
            break;
        case 'w':
            flags |= BDRV_O_RDWR;
            is_write = true;
            break;
        case 'U':
            force_share = true;
            break;
        case OPT_FLUSH_INTERVAL:
            if (!img_strtoi(optarg, 0, INT_MAX, &flush_interval)) {
                error_report("Invalid flush interval specified");
                return 1;
            }
            break;
        case OPT_NO_DRAIN:
            drain_on_flush = false;
            break;
        case OPT_PATTERN:
            if (!img_strtoi(optarg, 0, 0xff, &pattern)) {
                error_report("Invalid pattern byte specified");
                return 1;
            }
            break;
        case OPT_IMAGE_OPTS:
            image_opts = true;
            break;
        default:
            return img_opt_error(c, argv);
        }
    }

    if (optind != argc - 1) {
        return img_usage_error("Expecting one image file name");
    }
    filename = argv[argc - 1];

    if (!is_write && flush_interval) {
        error_report("--flush-interval is only available in write tests");
        return 1;
    }
    if (flush_interval && flush_interval < depth) {
        error_report("Flush interval can't be smaller than depth");
        return 1;
    }

    if (force_share) {
        flags |= BDRV_O_FORCE_SHARE;
    }
    /*
     * -n and -i name the host I/O engine: the "aio" option of the file
     * node, which a plain file name gets spelled out for.
     */
    if (aio_native || aio_uring) {
        const char *engine = aio_native ? "native" : "io_uring";

        if (image_opts) {
            aio_opts = g_strdup_printf("%s,file.aio=%s", filename, engine);
            filename = aio_opts;
        } else if (!keyval_is_json_filename(filename)) {
            JsonObject *file = json_object_new();

            json_object_set_string_member(file, "driver", "file");
            json_object_set_string_member(file, "filename", filename);
            json_object_set_string_member(file, "aio", engine);
            json_object_set_object_member(extra, "file", file);
        }
    }

    b.blk = img_open(filename, fmt,
                     json_object_get_size(extra) ? extra : NULL,
                     image_opts, flags, writethrough);
    if (!b.blk) {
        return 1;
    }
    b.image_size = blk_getlength(b.blk);
    if (b.image_size < 0) {
        error_report("Could not get size of %s: %s", filename,
                     strerror(-b.image_size));
        goto out;
    }

    b.write = is_write;
    b.bufsize = bufsize;
    b.step = step ? step : bufsize;
    b.count = count;
    b.flush_interval = flush_interval;
    b.drain_on_flush = drain_on_flush;
    b.offset = offset;
    b.buf = img_buf_alloc(bufsize);
    if (is_write) {
        memset(b.buf, pattern, bufsize);
    }

    printf("Sending %" PRId64 " %s requests, %" PRId64 " bytes each, %"
           PRId64 " in parallel (starting at offset %" PRId64 ", step "
           "size %" PRId64 ")\n", count, is_write ? "write" : "read",
           bufsize, depth, offset, b.step);
    if (flush_interval) {
        printf("Sending flush every %" PRId64 " requests\n",
               flush_interval);
    }

    t0 = g_get_monotonic_time();
    if (img_bench_run(&b, depth) < 0) {
        goto out;
    }
    printf("Run completed in %3.3f seconds.\n",
           (g_get_monotonic_time() - t0) / 1e6);
    ret = 0;

out:
    if (b.buf) {
        g_aligned_free(b.buf);
    }
    blk_unref(b.blk);
    return ret;
}

/* ---- rebase ---- */

static void coroutine_fn img_status_top_entry(void *opaque)
{
    ImgStatusCall *c = opaque;

    c->ret = bdrv_co_block_status(c->bs, c->offset, c->bytes, &c->pnum,
                                  NULL, NULL);
}

/* The status of a range in @bs alone, not its backing files. */
static int img_block_status_top(BlockDriverState *bs, int64_t offset,
                                int64_t bytes, int64_t *pnum)
{
    ImgStatusCall c = { .bs = bs, .offset = offset, .bytes = bytes };

    img_co_call(img_status_top_entry, &c);
    *pnum = c.pnum;
    return c.ret;
}

/*
 * The new backing file's name as the image will resolve it: relative to
 * the image's directory.
 */
static char *img_rebase_path(BlockDriverState *bs, const char *backing)
{
    g_autofree char *dir = NULL;

    if (g_path_is_absolute(backing) || !bs->filename[0] ||
        keyval_is_json_filename(bs->filename)) {
        return g_strdup(backing);
    }
    dir = g_path_get_dirname(bs->filename);
    if (!strcmp(dir, ".")) {
        return g_strdup(backing);
    }
    return g_build_filename(dir, backing, NULL);
}

static int64_t img_rebase_length(BlockBackend *blk)
{
    int64_t len = blk ? blk_getlength(blk) : 0;

    if (len < 0) {
        error_report("Could not get size of '%s': %s",
                     blk_bs(blk)->filename, strerror(-len));
    }
    return len;
}

/*
 * Safe mode: wherever the image does not provide the data itself and the
 * old and new backing files differ, copy what the old one shows into the
 * image, so that its content stays the same.  Returns 0 or -1 after
 * reporting an error.
 */
static int img_rebase_copy(BlockBackend *blk, BlockBackend *old_blk,
                           BlockBackend *new_blk)
{
    BlockDriverState *bs = blk_bs(blk);
    int64_t size, old_size, new_size;
    uint8_t *buf_old, *buf_new;
    float step;
    int ret = 0;

    size = img_rebase_length(blk);
    old_size = img_rebase_length(old_blk);
    new_size = img_rebase_length(new_blk);
    if (size < 0 || old_size < 0 || new_size < 0) {
        return -1;
    }

    buf_old = img_buf_alloc(IMG_IO_BUF_SIZE);
    buf_new = img_buf_alloc(IMG_IO_BUF_SIZE);
    /*
     * As qemu-img counts: every piece that is looked at moves the figure
     * by one full buffer's share, however short the piece was.
     */
    step = 100.0f / (size / MIN(size, IMG_IO_BUF_SIZE));

    for (int64_t off = 0, n; off < size; off += n) {
        bool old_is_zero = false;
        int64_t done = 0;
        int st;

        n = MIN(IMG_IO_BUF_SIZE, size - off);
        st = img_block_status_top(bs, off, n, &n);
        if (st < 0) {
            error_report("error while reading image metadata: %s",
                         strerror(-st));
            ret = -1;
            break;
        }
        if (st & BDRV_BLOCK_ALLOCATED) {
            continue;
        }

        if (off >= old_size) {
            old_is_zero = true;
            memset(buf_old, 0, n);
        } else {
            n = MIN(n, old_size - off);
            st = blk_pread(old_blk, off, n, buf_old, 0);
            if (st < 0) {
                error_report("error while reading from old backing file");
                ret = -1;
                break;
            }
        }
        if (off >= new_size) {
            memset(buf_new, 0, n);
        } else {
            n = MIN(n, new_size - off);
            st = blk_pread(new_blk, off, n, buf_new, 0);
            if (st < 0) {
                error_report("error while reading from new backing file");
                ret = -1;
                break;
            }
        }

        while (done < n) {
            int64_t run = img_compare_run(buf_old + done, buf_new + done,
                                          n - done, true);

            if (run) {
                done += run;
                continue;
            }
            run = img_compare_run(buf_old + done, buf_new + done, n - done,
                                  false);
            if (old_is_zero) {
                st = blk_pwrite_zeroes(blk, off + done, run, 0);
            } else {
                st = blk_pwrite(blk, off + done, run, buf_old + done, 0);
            }
            if (st < 0) {
                error_report("Error while writing to COW image: %s",
                             strerror(-st));
                ret = -1;
                goto out;
            }
            done += run;
        }
        img_progress_print(step, 100);
    }

out:
    g_aligned_free(buf_old);
    g_aligned_free(buf_new);
    return ret;
}

int img_rebase(int argc, char **argv)
{
    enum {
        OPT_OBJECT = 256,
        OPT_IMAGE_OPTS,
    };
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, OPT_OBJECT },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL, *out_baseimg = NULL, *out_basefmt = NULL;
    const char *cache = "writeback", *src_cache = "writeback";
    const char *filename;
    bool unsafe = false, progress = false, quiet = false;
    bool image_opts = false, force_share = false;
    bool writethrough = false, src_writethrough = false;
    int flags = BDRV_O_RDWR, src_flags = 0;
    BlockBackend *blk = NULL, *old_blk = NULL, *new_blk = NULL;
    BlockDriverState *bs;
    GError *err = NULL;
    int ret = 1;
    int c;

    while ((c = getopt_long(argc, argv, ":hf:F:b:upt:T:qU", long_options,
                            NULL)) != -1) {
        switch (c) {
        case 'h':
            return img_help();
        case 'f':
            fmt = optarg;
            break;
        case 'F':
            out_basefmt = optarg;
            break;
        case 'b':
            out_baseimg = optarg;
            break;
        case 'u':
            unsafe = true;
            break;
        case 'p':
            progress = true;
            break;
        case 't':
            cache = optarg;
            break;
        case 'T':
            src_cache = optarg;
            break;
        case 'q':
            quiet = true;
            break;
        case 'U':
            force_share = true;
            break;
        case OPT_OBJECT:
            if (!img_add_object(optarg)) {
                return 1;
            }
            break;
        case OPT_IMAGE_OPTS:
            image_opts = true;
            break;
        default:
            return img_opt_error(c, argv);
        }
    }

    if (quiet) {
        progress = false;
    }
    if (optind != argc - 1) {
        return img_usage_error("Expecting one image file name");
    }
    if (!unsafe && !out_baseimg) {
        return img_usage_error("Must specify backing file (-b) or use "
                               "unsafe mode (-u)");
    }
    filename = argv[optind];
    if (!out_baseimg) {
        /* -u without -b: the image is left without a backing file. */
        out_baseimg = "";
    }

    img_progress_init(progress, 2.0);
    img_progress_print(0, 100);

    if (unsafe) {
        flags |= BDRV_O_NO_BACKING;
    }
    if (!img_cache_flags(cache, &flags, &writethrough)) {
        error_report("Invalid cache option: %s", cache);
        goto out;
    }
    if (!img_cache_flags(src_cache, &src_flags, &src_writethrough)) {
        error_report("Invalid source cache option: %s", src_cache);
        goto out;
    }
    if (force_share) {
        src_flags |= BDRV_O_FORCE_SHARE;
    }

    blk = img_open(filename, fmt, NULL, image_opts, flags, writethrough);
    if (!blk) {
        goto out;
    }
    bs = blk_bs(blk);

    if (out_basefmt && !bdrv_find_format(out_basefmt)) {
        error_report("Invalid format name: '%s'", out_basefmt);
        goto out;
    }

    if (!unsafe) {
        if (bs->backing) {
            old_blk = blk_new(bdrv_get_aio_context(bs),
                              BLK_PERM_CONSISTENT_READ, BLK_PERM_ALL);
            if (!blk_insert_bs(old_blk, bs->backing->bs, &err)) {
                error_report("Could not open old backing file '%s': %s",
                             bs->backing_file, err->message);
                g_error_free(err);
                goto out;
            }
        }
        if (out_baseimg[0]) {
            g_autofree char *path = img_rebase_path(bs, out_baseimg);

            int nflags = src_flags;

            if (!(nflags & BDRV_O_FORCE_SHARE)) {
                nflags |= BDRV_O_NO_SHARE;
            }
            new_blk = tool_open(path, out_basefmt, NULL, false, nflags,
                                src_writethrough, true, &err);
            if (!new_blk) {
                error_report("Could not open new backing file '%s': %s",
                             out_baseimg, err->message);
                g_error_free(err);
                goto out;
            }
        }
        if (img_rebase_copy(blk, old_blk, new_blk) < 0) {
            goto out;
        }
    }

    if (out_baseimg[0] && !out_basefmt) {
        error_report("Could not change the backing file to '%s': backing "
                     "format must be specified", out_baseimg);
        goto out;
    }

    /* The old backing file goes; nothing may read it any more. */
    if (old_blk) {
        blk_unref(old_blk);
        old_blk = NULL;
    }
    c = bdrv_change_backing_file(bs, out_baseimg[0] ? out_baseimg : NULL,
                                 out_baseimg[0] ? out_basefmt : NULL, &err);
    if (c < 0) {
        /* qemu-img words it with the errno alone. */
        error_report("Could not change the backing file to '%s': %s",
                     out_baseimg, strerror(-c));
        g_clear_error(&err);
        goto out;
    }
    img_progress_print(100, 0);
    ret = 0;

out:
    img_progress_end();
    if (new_blk) {
        blk_unref(new_blk);
    }
    if (old_blk) {
        blk_unref(old_blk);
    }
    if (blk) {
        blk_unref(blk);
    }
    return ret;
}
