/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * sluice-io's commands: I/O (read, write, their vector and aio forms,
 * discard, flush), image queries (alloc, map, info, length), the image's
 * life (open, close, reopen, truncate) and blkdebug breakpoints.  Output,
 * messages and their streams follow qemu-io 7.2 byte for byte, since
 * scripts compare them.
 *
 * Copyright (c) 2026 The Sluice authors
 */
#include "qemu/osdep.h"

#include <ctype.h>
#include <getopt.h>
#include <signal.h>

#include "block/aio-wait.h"
#include "block/blkdebug.h"
#include "block/block_int.h"
#include "qemu/coroutine.h"
#include "qemu/keyval.h"
#include "qemu/main-loop.h"
#include "qemu/timer.h"
#include "tools/io-cmds.h"
#include "tools/tool-common.h"

/* qemu-io fills write buffers with this unless -P says otherwise. */
#define SIO_WRITE_PATTERN 0xcd
/* ... and read buffers with this, so stale data shows. */
#define SIO_READ_PATTERN 0xab
/*
 * The longest request qemu-io takes: QEMU's limit, 2^31 - 1 rounded down
 * to whole sectors (Sluice's block layer splits what it must).
 */
#define SIO_MAX_REQUEST ((int64_t)(INT32_MAX & ~(BDRV_SECTOR_SIZE - 1)))
/* How far -m moves buffers off their alignment. */
#define SIO_MISALIGN_OFFSET 16

typedef int SioCmdFunc(int argc, char **argv);

typedef struct SioCmd {
    const char *name;
    const char *altname;        /* one-letter alias, or NULL */
    SioCmdFunc *func;
    int argmin;
    int argmax;                 /* -1: any number */
    bool nofile_ok;             /* runs without an open image */
    uint64_t perm;              /* BLK_PERM_* taken before it runs */
    const char *args;           /* NULL: the synopsis has no argument part */
    const char *oneline;
    void (*help)(void);
    /*
     * Sluice's own commands stay out of the "help" list, which scripts
     * compare with qemu-io's; "help NAME" still describes them.
     */
    bool unlisted;
} SioCmd;

static BlockBackend *sio_blk;
static bool sio_quit;
static bool sio_image_opts;
static bool sio_misalign;
/* aio_read/aio_write requests whose completion has not been reported. */
static unsigned int sio_aio_pending;

static const SioCmd *sio_find_cmd(const char *name);

bool sio_quit_requested(void)
{
    return sio_quit;
}

void sio_set_image_opts(bool image_opts)
{
    sio_image_opts = image_opts;
}

void sio_set_misalign(bool misalign)
{
    sio_misalign = misalign;
}

/* ---- Parsing ---- */

bool sio_parse_discard(const char *mode, int *flags)
{
    if (!strcmp(mode, "off") || !strcmp(mode, "ignore")) {
        *flags &= ~BDRV_O_UNMAP;
    } else if (!strcmp(mode, "on") || !strcmp(mode, "unmap")) {
        *flags |= BDRV_O_UNMAP;
    } else {
        return false;
    }
    return true;
}

bool sio_parse_aio(const char *mode, const char **aio)
{
    static const char *const modes[] = { "threads", "native", "io_uring" };
    int i;

    for (i = 0; i < ARRAY_SIZE(modes); i++) {
        if (!strcmp(mode, modes[i])) {
            *aio = modes[i];
            return true;
        }
    }
    return false;
}

bool sio_parse_opts(JsonObject *opts, const char *text)
{
    const char *p = text;

    while (*p) {
        g_autofree char *name = NULL;
        g_autoptr(GString) value = g_string_new(NULL);
        size_t len = strcspn(p, "=,");

        name = g_strndup(p, len);
        p += len;
        if (*p == '=') {
            /* A value ends at a single comma; ",," stands for one. */
            for (p++; *p; p++) {
                if (*p == ',') {
                    if (p[1] != ',') {
                        break;
                    }
                    p++;
                }
                g_string_append_c(value, *p);
            }
        } else {
            /* The short form QEMU still takes, with a warning. */
            bool off = g_str_has_prefix(name, "no");
            const char *key = off ? name + 2 : name;

            warn_report("short-form boolean option '%s' deprecated", name);
            fprintf(stderr, "Please use %s=%s instead\n", key,
                    off ? "off" : "on");
            g_string_assign(value, off ? "off" : "on");
            memmove(name, key, strlen(key) + 1);
        }
        if (*p == ',') {
            p++;
        }
        if (!strcmp(name, "id")) {
            /* These lists merge, so an id makes no sense in them. */
            error_report("Invalid parameter 'id'");
            return false;
        }
        json_object_set_string_member(opts, name, value->str);
    }
    return true;
}

/*
 * A byte count as qemu-io takes one: a size with an optional suffix,
 * at most INT64_MAX.  Returns it, or -EINVAL / -ERANGE.
 */
static int64_t sio_cvtnum(const char *s)
{
    uint64_t value;
    const char *p = s;
    int ret;

    ret = qemu_strtosz(s, NULL, &value);
    if (ret < 0) {
        return ret;
    }
    if (value > INT64_MAX) {
        return -ERANGE;
    }
    while (isspace((unsigned char)*p)) {
        p++;
    }
    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X') &&
        strchr("kKmMgGtTpP", s[strlen(s) - 1])) {
        warn_report("Using a multiplier suffix on hex numbers is "
                    "deprecated: %s", s);
    }
    return value;
}

static void sio_cvtnum_err(int64_t rc, const char *arg)
{
    if (rc == -EINVAL) {
        printf("Parsing error: non-numeric argument, or extraneous/"
               "unrecognized suffix -- %s\n", arg);
    } else if (rc == -ERANGE) {
        printf("Parsing error: argument too large -- %s\n", arg);
    } else {
        printf("Parsing error: %s\n", arg);
    }
}

/* A -P byte: C syntax (0x.., 0..), 0 to 255.  -1 after the message. */
static int sio_parse_pattern(const char *arg)
{
    char *end;
    long long value;

    errno = 0;
    value = strtoll(arg, &end, 0);
    if (end == arg || *end || errno || value < 0 || value > 255) {
        printf("%s is not a valid pattern byte\n", arg);
        return -1;
    }
    return value;
}

/* ---- Output ---- */

/*
 * A quantity as qemu-io prints it: bytes with six decimals, bigger
 * units with three, and everything from the first ".000" on dropped
 * (which is how a tiny rate becomes "0 bytes").
 */
static char *sio_cvtstr(double value)
{
    static const struct {
        double size;
        const char *suffix;
    } units[] = {
        { 1152921504606846976.0, " EiB" },
        { 1125899906842624.0, " PiB" },
        { 1099511627776.0, " TiB" },
        { 1073741824.0, " GiB" },
        { 1048576.0, " MiB" },
        { 1024.0, " KiB" },
    };
    const char *suffix = " bytes";
    char *str, *trim;
    int i;

    for (i = 0; i < ARRAY_SIZE(units); i++) {
        if (value >= units[i].size) {
            value /= units[i].size;
            suffix = units[i].suffix;
            break;
        }
    }
    if (i < ARRAY_SIZE(units)) {
        str = g_strdup_printf("%.3f%s", value, suffix);
    } else {
        str = g_strdup_printf("%f%s", value, suffix);
    }
    trim = strstr(str, ".000");
    if (trim) {
        memmove(trim, suffix, strlen(suffix) + 1);
    }
    return str;
}

/*
 * The clock of the statistics, in ns (QEMU's resolution: a quick request
 * must not take zero time).
 */
static int64_t sio_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * NANOSECONDS_PER_SECOND + ts.tv_nsec;
}

/*
 * Elapsed time: "SS.CC sec" below a second, else "H:MM:SS.CC"; the
 * machine-readable form (-C) always uses the second.
 */
static char *sio_timestr(int64_t nsec, bool fixed)
{
    int64_t cs = (nsec + 5000000) / 10000000;
    int64_t secs = cs / 100;

    if (!fixed && secs == 0) {
        return g_strdup_printf("%02u.%02u sec", 0u, (unsigned)(cs % 100));
    }
    return g_strdup_printf("%u:%02u:%02u.%02u", (unsigned)(secs / 3600),
                           (unsigned)(secs / 60 % 60),
                           (unsigned)(secs % 60), (unsigned)(cs % 100));
}

static void sio_report(const char *op, int64_t nsec, int64_t offset,
                       int64_t count, int64_t total, int cnt, bool csv)
{
    /* Two clock readings never coincide in QEMU; do not divide by 0. */
    double secs = MAX(nsec, 1) / 1e9;
    g_autofree char *ts = sio_timestr(nsec, csv);

    if (!csv) {
        g_autofree char *size = sio_cvtstr(total);
        g_autofree char *rate = sio_cvtstr(total / secs);

        printf("%s %" PRId64 "/%" PRId64 " bytes at offset %" PRId64 "\n",
               op, total, count, offset);
        printf("%s, %d ops; %s (%s/sec and %.4f ops/sec)\n", size, cnt, ts,
               rate, cnt / secs);
    } else {
        printf("%" PRId64 ",%d,%s,%.3f,%.3f\n", total, cnt, ts,
               total / secs, cnt / secs);
    }
}

/* Sixteen bytes a line: offset, hex, then letters and digits. */
static void sio_dump(const uint8_t *buf, int64_t offset, int64_t len)
{
    int64_t i, j;

    for (i = 0; i < len; i += 16) {
        printf("%08" PRIx64 ":  ", (uint64_t)(offset + i));
        for (j = i; j < i + 16 && j < len; j++) {
            printf("%02x ", buf[j]);
        }
        printf(" ");
        for (j = i; j < i + 16 && j < len; j++) {
            putchar(isalnum(buf[j]) ? buf[j] : '.');
        }
        printf("\n");
    }
}

static int sio_usage(const SioCmd *ct)
{
    if (ct->args) {
        printf("%s %s -- %s\n", ct->name, ct->args, ct->oneline);
    } else {
        printf("%s -- %s\n", ct->name, ct->oneline);
    }
    return -EINVAL;
}

/* ---- Buffers ---- */

static size_t sio_buf_offset(void)
{
    return sio_misalign ? SIO_MISALIGN_OFFSET : 0;
}

/* @len bytes of @pattern, page aligned (plus the -m offset); NULL: ENOMEM. */
static uint8_t *sio_alloc(int64_t len, int pattern)
{
    size_t total = len + sio_buf_offset();
    void *p;

    if (posix_memalign(&p, 4096, MAX(total, 1))) {
        return NULL;
    }
    memset(p, pattern, total);
    return (uint8_t *)p + sio_buf_offset();
}

static void sio_free(uint8_t *buf)
{
    if (buf) {
        free(buf - sio_buf_offset());
    }
}

/*
 * A buffer for write -s: @file_name's first @len bytes, repeated to
 * fill @len.  NULL after a message (perror style, as qemu-io).
 */
static uint8_t *sio_file_to_buffer(int64_t len, const char *file_name)
{
    uint8_t *buf;
    int64_t got = 0, pos;
    int fd;

    fd = open(file_name, O_RDONLY);
    if (fd < 0) {
        perror(file_name);
        return NULL;
    }
    buf = sio_alloc(len, 0);
    if (!buf) {
        errno = ENOMEM;
        perror(file_name);
        close(fd);
        return NULL;
    }
    while (got < len) {
        ssize_t n = read(fd, buf + got, MIN(len - got, 1 << 20));

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            perror(file_name);
            close(fd);
            sio_free(buf);
            return NULL;
        }
        if (n == 0) {
            break;
        }
        got += n;
    }
    close(fd);
    if (got == 0) {
        fprintf(stderr, "%s: file is empty\n", file_name);
        sio_free(buf);
        return NULL;
    }
    for (pos = got; pos < len; pos += got) {
        memcpy(buf + pos, buf, MIN(got, len - pos));
    }
    return buf;
}

/*
 * The vector of readv/writev/aio_*: one buffer of @pattern cut into the
 * lengths @argv names.  NULL after printing why.
 */
static uint8_t *sio_create_iovec(QEMUIOVector *qiov, char **argv, int nr,
                                 int pattern)
{
    g_autofree int64_t *sizes = g_new(int64_t, MAX(nr, 1));
    int64_t count = 0, pos = 0;
    uint8_t *buf;
    int i;

    for (i = 0; i < nr; i++) {
        int64_t len = sio_cvtnum(argv[i]);

        if (len < 0) {
            sio_cvtnum_err(len, argv[i]);
            return NULL;
        }
        if (len > SIO_MAX_REQUEST) {
            printf("Argument '%s' exceeds maximum size %" PRId64 "\n",
                   argv[i], SIO_MAX_REQUEST);
            return NULL;
        }
        if (count > SIO_MAX_REQUEST - len) {
            printf("The total number of bytes exceed the maximum size %"
                   PRId64 "\n", SIO_MAX_REQUEST);
            return NULL;
        }
        sizes[i] = len;
        count += len;
    }

    buf = sio_alloc(count, pattern);
    if (!buf) {
        printf("Cannot allocate %" PRId64 " bytes\n", count);
        return NULL;
    }
    qemu_iovec_init(qiov, nr);
    for (i = 0; i < nr; i++) {
        if (sizes[i]) {
            qemu_iovec_add(qiov, buf + pos, sizes[i]);
        }
        pos += sizes[i];
    }
    return buf;
}

/* ---- Requests ---- */

static AioContext *sio_ctx(void)
{
    return blk_get_aio_context(sio_blk);
}

typedef struct SioVecReq {
    bool write;
    int64_t offset;
    QEMUIOVector *qiov;
    BdrvRequestFlags flags;
    int ret;
    bool done;
} SioVecReq;

static void coroutine_fn sio_vec_entry(void *opaque)
{
    SioVecReq *r = opaque;

    if (r->write) {
        r->ret = blk_co_pwritev(sio_blk, r->offset, r->qiov->size, r->qiov,
                                r->flags);
    } else {
        r->ret = blk_co_preadv(sio_blk, r->offset, r->qiov->size, r->qiov,
                               r->flags);
    }
    r->done = true;
    aio_wait_kick();
}

static int sio_vec_request(bool write, int64_t offset, QEMUIOVector *qiov,
                           BdrvRequestFlags flags)
{
    SioVecReq r = {
        .write = write, .offset = offset, .qiov = qiov, .flags = flags,
    };

    aio_co_enter(sio_ctx(), qemu_coroutine_create(sio_vec_entry, &r));
    AIO_WAIT_WHILE(sio_ctx(), !r.done);
    return r.ret;
}

/*
 * Compressed writes: no Sluice format stores compressed clusters, so
 * what remains of qemu-io's behaviour is its range check.
 */
static int sio_write_compressed(int64_t offset, int64_t bytes)
{
    int64_t len = blk_getlength(sio_blk);

    if (len < 0) {
        return len;
    }
    if (offset > len || bytes > len - offset) {
        return -EIO;
    }
    return -ENOTSUP;
}

/*
 * Whether this node itself provides [@offset, @offset + @bytes): 1 or
 * 0 for the first *@pnum bytes, which share the answer (0 at the end of
 * the image), or a negative errno.  Backing files do not count.
 */
static int sio_is_allocated(int64_t offset, int64_t bytes, int64_t *pnum)
{
    int64_t len = blk_getlength(sio_blk);
    int ret;

    if (len < 0) {
        return len;
    }
    if (offset >= len || bytes == 0) {
        *pnum = 0;
        return 0;
    }
    ret = blk_block_status(sio_blk, offset, MIN(bytes, len - offset), pnum,
                           NULL, NULL);
    if (ret < 0) {
        return ret;
    }
    return !!(ret & BDRV_BLOCK_ALLOCATED);
}

/* ---- read ---- */

static void sio_read_help(void)
{
    printf("\n"
" Read a byte range of the open image, optionally checking it against a\n"
" pattern or printing it.\n"
"\n"
" Example:\n"
" 'read -v 512 1k' - show 1 KiB read from offset 512\n"
"\n"
" -b, -- read from the VM state area (no Sluice format has one)\n"
" -C, -- print the statistics as one comma-separated line\n"
" -l, -- how many bytes the pattern covers (only with -P)\n"
" -p, -- accepted and ignored, as in old versions\n"
" -P, -- fail unless the data is this byte\n"
" -q, -- print no statistics\n"
" -s, -- where in the read data the pattern starts (only with -P)\n"
" -v, -- print the data as a hex dump\n"
"\n");
}

static const SioCmd sio_read_cmd;

static int sio_read_f(int argc, char **argv)
{
    bool csv = false, quiet = false, verbose = false, vmstate = false;
    bool has_pattern = false, has_poff = false, has_plen = false;
    int64_t offset, count, poff = 0, plen = 0;
    int64_t start, nsec;
    int pattern = 0, c, ret;
    uint8_t *buf;

    while ((c = getopt(argc, argv, "bCl:pP:qs:v")) != -1) {
        switch (c) {
        case 'b':
            vmstate = true;
            break;
        case 'C':
            csv = true;
            break;
        case 'l':
            has_plen = true;
            plen = sio_cvtnum(optarg);
            if (plen < 0) {
                sio_cvtnum_err(plen, optarg);
                return plen;
            }
            break;
        case 'p':
            break;
        case 'P':
            has_pattern = true;
            pattern = sio_parse_pattern(optarg);
            if (pattern < 0) {
                return -EINVAL;
            }
            break;
        case 'q':
            quiet = true;
            break;
        case 's':
            has_poff = true;
            poff = sio_cvtnum(optarg);
            if (poff < 0) {
                sio_cvtnum_err(poff, optarg);
                return poff;
            }
            break;
        case 'v':
            verbose = true;
            break;
        default:
            return sio_usage(&sio_read_cmd);
        }
    }
    if (optind != argc - 2) {
        return sio_usage(&sio_read_cmd);
    }

    offset = sio_cvtnum(argv[optind]);
    if (offset < 0) {
        sio_cvtnum_err(offset, argv[optind]);
        return offset;
    }
    optind++;
    count = sio_cvtnum(argv[optind]);
    if (count < 0) {
        sio_cvtnum_err(count, argv[optind]);
        return count;
    } else if (count > SIO_MAX_REQUEST) {
        printf("length cannot exceed %" PRId64 ", given %s\n",
               SIO_MAX_REQUEST, argv[optind]);
        return -EINVAL;
    }

    if (!has_pattern && (has_plen || has_poff)) {
        return sio_usage(&sio_read_cmd);
    }
    if (!has_plen) {
        plen = count - poff;
    }
    if (plen < 0 || plen + poff > count) {
        printf("pattern verification range exceeds end of read data\n");
        return -EINVAL;
    }
    if (vmstate) {
        if (!QEMU_IS_ALIGNED(offset, BDRV_SECTOR_SIZE)) {
            printf("%" PRId64 " is not a sector-aligned value for "
                   "'offset'\n", offset);
            return -EINVAL;
        }
        if (!QEMU_IS_ALIGNED(count, BDRV_SECTOR_SIZE)) {
            printf("%" PRId64 " is not a sector-aligned value for "
                   "'count'\n", count);
            return -EINVAL;
        }
    }

    buf = sio_alloc(count, SIO_READ_PATTERN);
    start = sio_now();
    if (!buf) {
        ret = -ENOMEM;
    } else if (vmstate) {
        ret = -ENOTSUP;
    } else {
        ret = blk_pread(sio_blk, offset, count, buf, 0);
    }
    nsec = sio_now() - start;
    if (ret < 0) {
        printf("read failed: %s\n", strerror(-ret));
        goto out;
    }

    if (has_pattern) {
        g_autofree uint8_t *cmp = g_malloc(MAX(plen, 1));

        memset(cmp, pattern, plen);
        if (memcmp(buf + poff, cmp, plen)) {
            printf("Pattern verification failed at offset %" PRId64 ", %"
                   PRId64 " bytes\n", offset + poff, plen);
            ret = -EINVAL;
        }
    }
    if (quiet) {
        goto out;
    }
    if (verbose) {
        sio_dump(buf, offset, count);
    }
    sio_report("read", nsec, offset, count, count, 1, csv);

out:
    sio_free(buf);
    return ret;
}

/* ---- readv ---- */

static void sio_readv_help(void)
{
    printf("\n"
" Read a byte range of the open image into several buffers, one per\n"
" length given; their sizes add up to the range.\n"
"\n"
" Example:\n"
" 'readv -v 512 1k 1k' - show 2 KiB read from offset 512\n"
"\n"
" -C, -- print the statistics as one comma-separated line\n"
" -P, -- fail unless the data is this byte\n"
" -v, -- print the data as a hex dump\n"
" -q, -- print no statistics\n"
"\n");
}

static const SioCmd sio_readv_cmd;

static int sio_readv_f(int argc, char **argv)
{
    bool csv = false, quiet = false, verbose = false, has_pattern = false;
    int pattern = 0, c, ret;
    int64_t offset, start, nsec;
    QEMUIOVector qiov;
    uint8_t *buf;

    while ((c = getopt(argc, argv, "CP:qv")) != -1) {
        switch (c) {
        case 'C':
            csv = true;
            break;
        case 'P':
            has_pattern = true;
            pattern = sio_parse_pattern(optarg);
            if (pattern < 0) {
                return -EINVAL;
            }
            break;
        case 'q':
            quiet = true;
            break;
        case 'v':
            verbose = true;
            break;
        default:
            return sio_usage(&sio_readv_cmd);
        }
    }
    if (optind > argc - 2) {
        return sio_usage(&sio_readv_cmd);
    }

    offset = sio_cvtnum(argv[optind]);
    if (offset < 0) {
        sio_cvtnum_err(offset, argv[optind]);
        return offset;
    }
    optind++;

    buf = sio_create_iovec(&qiov, &argv[optind], argc - optind,
                           SIO_READ_PATTERN);
    if (!buf) {
        return -EINVAL;
    }

    start = sio_now();
    ret = sio_vec_request(false, offset, &qiov, 0);
    nsec = sio_now() - start;
    if (ret < 0) {
        printf("readv failed: %s\n", strerror(-ret));
        goto out;
    }

    if (has_pattern) {
        g_autofree uint8_t *cmp = g_malloc(MAX(qiov.size, 1));

        memset(cmp, pattern, qiov.size);
        if (memcmp(buf, cmp, qiov.size)) {
            printf("Pattern verification failed at offset %" PRId64 ", %zu "
                   "bytes\n", offset, qiov.size);
            ret = -EINVAL;
        }
    }
    if (quiet) {
        goto out;
    }
    if (verbose) {
        sio_dump(buf, offset, qiov.size);
    }
    sio_report("read", nsec, offset, qiov.size, qiov.size, 1, csv);

out:
    qemu_iovec_destroy(&qiov);
    sio_free(buf);
    return ret;
}

/* ---- write ---- */

static void sio_write_help(void)
{
    printf("\n"
" Write a byte range of the open image.  The data is the byte 0xcd\n"
" unless -P, -s or -z choose otherwise.\n"
"\n"
" Example:\n"
" 'write 512 1k' - write 1 KiB at offset 512\n"
"\n"
" -b, -- write to the VM state area (no Sluice format has one)\n"
" -c, -- write compressed data (no Sluice format stores it)\n"
" -f, -- make the write stable before it completes (FUA)\n"
" -n, -- with -z: fail rather than write a buffer of zeroes\n"
" -p, -- accepted and ignored, as in old versions\n"
" -P, -- write this byte\n"
" -s, -- write the contents of this file, repeated as needed\n"
" -C, -- print the statistics as one comma-separated line\n"
" -q, -- print no statistics\n"
" -u, -- with -z: the range may be deallocated\n"
" -z, -- write zeroes with a write-zeroes request\n"
"\n");
}

static const SioCmd sio_write_cmd;

static int sio_write_f(int argc, char **argv)
{
    bool csv = false, quiet = false, vmstate = false, compressed = false;
    bool zero = false, has_pattern = false, has_file = false;
    const char *file_name = NULL;
    BdrvRequestFlags flags = 0;
    int64_t offset, count, start, nsec;
    int pattern = SIO_WRITE_PATTERN, c, ret;
    uint8_t *buf = NULL;

    while ((c = getopt(argc, argv, "bcCfnpP:qs:uz")) != -1) {
        switch (c) {
        case 'b':
            vmstate = true;
            break;
        case 'c':
            compressed = true;
            break;
        case 'C':
            csv = true;
            break;
        case 'f':
            flags |= BDRV_REQ_FUA;
            break;
        case 'n':
            flags |= BDRV_REQ_NO_FALLBACK;
            break;
        case 'p':
            break;
        case 'P':
            has_pattern = true;
            pattern = sio_parse_pattern(optarg);
            if (pattern < 0) {
                return -EINVAL;
            }
            break;
        case 'q':
            quiet = true;
            break;
        case 's':
            has_file = true;
            file_name = optarg;
            break;
        case 'u':
            flags |= BDRV_REQ_MAY_UNMAP;
            break;
        case 'z':
            zero = true;
            break;
        default:
            return sio_usage(&sio_write_cmd);
        }
    }
    if (optind != argc - 2) {
        return sio_usage(&sio_write_cmd);
    }
    if (vmstate && zero) {
        printf("-b and -z cannot be specified at the same time\n");
        return -EINVAL;
    }
    if ((flags & BDRV_REQ_FUA) && (vmstate || compressed)) {
        printf("-f and -b or -c cannot be specified at the same time\n");
        return -EINVAL;
    }
    if (zero + has_pattern + has_file > 1) {
        printf("Only one of -z, -P, and -s can be specified at the same "
               "time\n");
        return -EINVAL;
    }
    if ((flags & BDRV_REQ_NO_FALLBACK) && !zero) {
        printf("-n requires -z to be specified\n");
        return -EINVAL;
    }
    if ((flags & BDRV_REQ_MAY_UNMAP) && !zero) {
        printf("-u requires -z to be specified\n");
        return -EINVAL;
    }

    offset = sio_cvtnum(argv[optind]);
    if (offset < 0) {
        sio_cvtnum_err(offset, argv[optind]);
        return offset;
    }
    optind++;
    count = sio_cvtnum(argv[optind]);
    if (count < 0) {
        sio_cvtnum_err(count, argv[optind]);
        return count;
    } else if (count > SIO_MAX_REQUEST &&
               !(flags & BDRV_REQ_NO_FALLBACK)) {
        printf("length cannot exceed %" PRId64 " without -n, given %s\n",
               SIO_MAX_REQUEST, argv[optind]);
        return -EINVAL;
    }

    if (vmstate || compressed) {
        if (!QEMU_IS_ALIGNED(offset, BDRV_SECTOR_SIZE)) {
            printf("%" PRId64 " is not a sector-aligned value for "
                   "'offset'\n", offset);
            return -EINVAL;
        }
        if (!QEMU_IS_ALIGNED(count, BDRV_SECTOR_SIZE)) {
            printf("%" PRId64 " is not a sector-aligned value for "
                   "'count'\n", count);
            return -EINVAL;
        }
    }

    if (!zero) {
        if (has_file) {
            buf = sio_file_to_buffer(count, file_name);
            if (!buf) {
                return -EINVAL;
            }
        } else {
            buf = sio_alloc(count, pattern);
        }
    }

    start = sio_now();
    if (vmstate) {
        ret = -ENOTSUP;
    } else if (zero) {
        ret = blk_pwrite_zeroes(sio_blk, offset, count, flags);
    } else if (compressed) {
        ret = sio_write_compressed(offset, count);
    } else if (!buf) {
        ret = -ENOMEM;
    } else {
        ret = blk_pwrite(sio_blk, offset, count, buf, flags);
    }
    nsec = sio_now() - start;
    if (ret < 0) {
        printf("write failed: %s\n", strerror(-ret));
        goto out;
    }
    ret = 0;
    if (!quiet) {
        sio_report("wrote", nsec, offset, count, count, 1, csv);
    }

out:
    sio_free(buf);
    return ret;
}

/* ---- writev ---- */

static void sio_writev_help(void)
{
    printf("\n"
" Write a byte range of the open image from several buffers, one per\n"
" length given, each filled with the byte 0xcd or the -P byte.\n"
"\n"
" Example:\n"
" 'writev 512 1k 1k' - write 2 KiB at offset 512\n"
"\n"
" -P, -- fill the buffers with this byte\n"
" -C, -- print the statistics as one comma-separated line\n"
" -f, -- make the write stable before it completes (FUA)\n"
" -q, -- print no statistics\n"
"\n");
}

static const SioCmd sio_writev_cmd;

static int sio_writev_f(int argc, char **argv)
{
    bool csv = false, quiet = false;
    BdrvRequestFlags flags = 0;
    int pattern = SIO_WRITE_PATTERN, c, ret;
    int64_t offset, start, nsec;
    QEMUIOVector qiov;
    uint8_t *buf;

    while ((c = getopt(argc, argv, "CfqP:")) != -1) {
        switch (c) {
        case 'C':
            csv = true;
            break;
        case 'f':
            flags |= BDRV_REQ_FUA;
            break;
        case 'q':
            quiet = true;
            break;
        case 'P':
            pattern = sio_parse_pattern(optarg);
            if (pattern < 0) {
                return -EINVAL;
            }
            break;
        default:
            return sio_usage(&sio_writev_cmd);
        }
    }
    if (optind > argc - 2) {
        return sio_usage(&sio_writev_cmd);
    }

    offset = sio_cvtnum(argv[optind]);
    if (offset < 0) {
        sio_cvtnum_err(offset, argv[optind]);
        return offset;
    }
    optind++;

    buf = sio_create_iovec(&qiov, &argv[optind], argc - optind, pattern);
    if (!buf) {
        return -EINVAL;
    }

    start = sio_now();
    ret = sio_vec_request(true, offset, &qiov, flags);
    nsec = sio_now() - start;
    if (ret < 0) {
        printf("writev failed: %s\n", strerror(-ret));
        goto out;
    }
    if (!quiet) {
        sio_report("wrote", nsec, offset, qiov.size, qiov.size, 1, csv);
    }

out:
    qemu_iovec_destroy(&qiov);
    sio_free(buf);
    return ret;
}

/* ---- aio_read, aio_write, aio_flush ---- */

typedef struct SioAioReq {
    bool write;
    bool zero;
    bool csv;
    bool quiet;
    bool verbose;
    bool has_pattern;
    int pattern;
    BdrvRequestFlags flags;
    int64_t offset;
    int64_t bytes;
    QEMUIOVector qiov;
    uint8_t *buf;
    int64_t start;
    int ret;
} SioAioReq;

static void sio_aio_free(SioAioReq *req)
{
    if (req->buf) {
        qemu_iovec_destroy(&req->qiov);
        sio_free(req->buf);
    }
    g_free(req);
}

/* Reports are printed from a bottom half, as qemu-io's callbacks run. */
static void sio_aio_done(void *opaque)
{
    SioAioReq *req = opaque;
    int64_t nsec = sio_now() - req->start;

    if (req->ret < 0) {
        printf("%s failed: %s\n", req->write ? "aio_write" : "readv",
               strerror(-req->ret));
        goto out;
    }
    if (!req->write && req->has_pattern) {
        g_autofree uint8_t *cmp = g_malloc(MAX(req->bytes, 1));

        memset(cmp, req->pattern, req->bytes);
        if (memcmp(req->buf, cmp, req->bytes)) {
            printf("Pattern verification failed at offset %" PRId64 ", %"
                   PRId64 " bytes\n", req->offset, req->bytes);
        }
    }
    if (req->quiet) {
        goto out;
    }
    if (req->verbose) {
        sio_dump(req->buf, req->offset, req->bytes);
    }
    sio_report(req->write ? "wrote" : "read", nsec, req->offset, req->bytes,
               req->bytes, 1, req->csv);

out:
    sio_aio_free(req);
    sio_aio_pending--;
    aio_wait_kick();
}

static void coroutine_fn sio_aio_entry(void *opaque)
{
    SioAioReq *req = opaque;

    if (req->zero) {
        req->ret = blk_co_pwrite_zeroes(sio_blk, req->offset, req->bytes,
                                        req->flags);
    } else if (req->write) {
        req->ret = blk_co_pwritev(sio_blk, req->offset, req->bytes,
                                  &req->qiov, req->flags);
    } else {
        req->ret = blk_co_preadv(sio_blk, req->offset, req->bytes,
                                 &req->qiov, 0);
    }
    aio_bh_schedule_oneshot(sio_ctx(), sio_aio_done, req);
}

static void sio_aio_submit(SioAioReq *req)
{
    sio_aio_pending++;
    aio_co_enter(sio_ctx(), qemu_coroutine_create(sio_aio_entry, req));
}

static void sio_aio_read_help(void)
{
    printf("\n"
" Start reading a byte range of the open image into several buffers,\n"
" one per length given, and return at once; the result is printed\n"
" when the read completes.\n"
"\n"
" Example:\n"
" 'aio_read -v 512 1k 1k' - show 2 KiB read from offset 512\n"
"\n"
" The command succeeds once the request is started: I/O errors and\n"
" pattern mismatches are printed but do not fail it.  aio_flush waits\n"
" for every started request.\n"
" -C, -- print the statistics as one comma-separated line\n"
" -P, -- report data that is not this byte\n"
" -i, -- only account an invalid request; nothing is read\n"
" -v, -- print the data as a hex dump\n"
" -q, -- print no statistics\n"
"\n");
}

static const SioCmd sio_aio_read_cmd;

static int sio_aio_read_f(int argc, char **argv)
{
    g_autofree SioAioReq *req = g_new0(SioAioReq, 1);
    int c;

    while ((c = getopt(argc, argv, "CiP:qv")) != -1) {
        switch (c) {
        case 'C':
            req->csv = true;
            break;
        case 'i':
            /* Sluice keeps no I/O accounting to spoil. */
            printf("injecting invalid read request\n");
            return 0;
        case 'P':
            req->has_pattern = true;
            req->pattern = sio_parse_pattern(optarg);
            if (req->pattern < 0) {
                return -EINVAL;
            }
            break;
        case 'q':
            req->quiet = true;
            break;
        case 'v':
            req->verbose = true;
            break;
        default:
            return sio_usage(&sio_aio_read_cmd);
        }
    }
    if (optind > argc - 2) {
        return sio_usage(&sio_aio_read_cmd);
    }

    req->offset = sio_cvtnum(argv[optind]);
    if (req->offset < 0) {
        int ret = req->offset;

        sio_cvtnum_err(req->offset, argv[optind]);
        return ret;
    }
    optind++;

    req->buf = sio_create_iovec(&req->qiov, &argv[optind], argc - optind,
                                SIO_READ_PATTERN);
    if (!req->buf) {
        return -EINVAL;
    }
    req->bytes = req->qiov.size;
    req->start = sio_now();
    sio_aio_submit(g_steal_pointer(&req));
    return 0;
}

static void sio_aio_write_help(void)
{
    printf("\n"
" Start writing a byte range of the open image from several buffers,\n"
" one per length given and filled with the byte 0xcd, and return at\n"
" once; the result is printed when the write completes.\n"
"\n"
" Example:\n"
" 'aio_write 512 1k 1k' - write 2 KiB at offset 512\n"
"\n"
" The command succeeds once the request is started: I/O errors are\n"
" printed but do not fail it.  aio_flush waits for every started\n"
" request.\n"
" -P, -- fill the buffers with this byte\n"
" -C, -- print the statistics as one comma-separated line\n"
" -f, -- make the write stable before it completes (FUA)\n"
" -i, -- only account an invalid request; nothing is written\n"
" -q, -- print no statistics\n"
" -u, -- with -z: the range may be deallocated\n"
" -z, -- write zeroes with a write-zeroes request (one length only)\n"
"\n");
}

static const SioCmd sio_aio_write_cmd;

static int sio_aio_write_f(int argc, char **argv)
{
    g_autofree SioAioReq *req = g_new0(SioAioReq, 1);
    int pattern = SIO_WRITE_PATTERN;
    int c;

    req->write = true;
    while ((c = getopt(argc, argv, "CfiqP:uz")) != -1) {
        switch (c) {
        case 'C':
            req->csv = true;
            break;
        case 'f':
            req->flags |= BDRV_REQ_FUA;
            break;
        case 'i':
            printf("injecting invalid write request\n");
            return 0;
        case 'q':
            req->quiet = true;
            break;
        case 'P':
            pattern = sio_parse_pattern(optarg);
            if (pattern < 0) {
                return -EINVAL;
            }
            break;
        case 'u':
            req->flags |= BDRV_REQ_MAY_UNMAP;
            break;
        case 'z':
            req->zero = true;
            break;
        default:
            return sio_usage(&sio_aio_write_cmd);
        }
    }
    if (optind > argc - 2) {
        return sio_usage(&sio_aio_write_cmd);
    }
    if (req->zero && optind != argc - 2) {
        printf("-z supports only a single length parameter\n");
        return -EINVAL;
    }
    if ((req->flags & BDRV_REQ_MAY_UNMAP) && !req->zero) {
        printf("-u requires -z to be specified\n");
        return -EINVAL;
    }

    req->offset = sio_cvtnum(argv[optind]);
    if (req->offset < 0) {
        int ret = req->offset;

        sio_cvtnum_err(req->offset, argv[optind]);
        return ret;
    }
    optind++;

    if (req->zero) {
        req->bytes = sio_cvtnum(argv[optind]);
        if (req->bytes < 0) {
            int ret = req->bytes;

            sio_cvtnum_err(req->bytes, argv[optind]);
            return ret;
        }
        /*
         * qemu-io never starts the clock for write-zeroes requests, so
         * their statistics count from the clock's origin.  Scripts see
         * that, so do the same.
         */
        req->start = 0;
    } else {
        req->buf = sio_create_iovec(&req->qiov, &argv[optind],
                                    argc - optind, pattern);
        if (!req->buf) {
            return -EINVAL;
        }
        req->bytes = req->qiov.size;
        req->start = sio_now();
    }
    sio_aio_submit(g_steal_pointer(&req));
    return 0;
}

static void sio_aio_wait(void)
{
    if (sio_blk) {
        AIO_WAIT_WHILE(sio_ctx(), sio_aio_pending > 0);
    }
}

/* As qemu-io's: drain everything, which also completes our requests. */
static int sio_aio_flush_f(int argc, char **argv)
{
    bdrv_drain_all_begin();
    bdrv_drain_all_end();
    sio_aio_wait();
    return 0;
}

/*
 * What a drain of the image's context would wait for right now: its
 * in-flight count and the tags that make it up (DESIGN.md: a drain that
 * does not finish must be able to say why).
 */
static int sio_drain_debug_f(int argc, char **argv)
{
    AioContext *ctx = sio_ctx();
    g_autoptr(GArray) tags = aio_context_in_flight_tags(ctx);
    guint i;

    printf("in flight: %u\n", aio_context_in_flight(ctx));
    for (i = 0; i < tags->len; i++) {
        AioInFlightEntry *e = &g_array_index(tags, AioInFlightEntry, i);

        printf("  %s: %u\n", e->tag, e->count);
    }
    return 0;
}

static void sio_drain_debug_help(void)
{
    printf("\n"
" Print what a drain of the open image's AioContext would wait for: the\n"
" context's in-flight count and, for each kind of work that holds some\n"
" (requests, timers, bottom halves, ...), how many.  A Sluice command,\n"
" not in qemu-io.\n"
"\n");
}

/* ---- flush, discard, truncate ---- */

static int sio_flush_f(int argc, char **argv)
{
    return blk_flush(sio_blk);
}

static void sio_discard_help(void)
{
    printf("\n"
" Discard a byte range of the open image: the data there need not be\n"
" kept (whether it is, and what reads return, is up to the format).\n"
"\n"
" Example:\n"
" 'discard 512 1k' - discard 1 KiB at offset 512\n"
"\n"
" -C, -- print the statistics as one comma-separated line\n"
" -q, -- print no statistics\n"
"\n");
}

static const SioCmd sio_discard_cmd;

static int sio_discard_f(int argc, char **argv)
{
    bool csv = false, quiet = false;
    int64_t offset, bytes, start, nsec;
    int c, ret;

    while ((c = getopt(argc, argv, "Cq")) != -1) {
        switch (c) {
        case 'C':
            csv = true;
            break;
        case 'q':
            quiet = true;
            break;
        default:
            return sio_usage(&sio_discard_cmd);
        }
    }
    if (optind != argc - 2) {
        return sio_usage(&sio_discard_cmd);
    }

    offset = sio_cvtnum(argv[optind]);
    if (offset < 0) {
        sio_cvtnum_err(offset, argv[optind]);
        return offset;
    }
    optind++;
    bytes = sio_cvtnum(argv[optind]);
    if (bytes < 0) {
        sio_cvtnum_err(bytes, argv[optind]);
        return bytes;
    } else if (bytes > SIO_MAX_REQUEST) {
        printf("length cannot exceed %" PRId64 ", given %s\n",
               SIO_MAX_REQUEST, argv[optind]);
        return -EINVAL;
    }

    start = sio_now();
    ret = blk_pdiscard(sio_blk, offset, bytes);
    nsec = sio_now() - start;
    if (ret < 0) {
        printf("discard failed: %s\n", strerror(-ret));
        return ret;
    }
    if (!quiet) {
        sio_report("discard", nsec, offset, bytes, bytes, 1, csv);
    }
    return 0;
}

static const SioCmd sio_truncate_cmd;

static int sio_truncate_f(int argc, char **argv)
{
    PreallocMode prealloc = PREALLOC_MODE_OFF;
    GError *err = NULL;
    int64_t offset;
    int c, ret;

    while ((c = getopt(argc, argv, "m:")) != -1) {
        switch (c) {
        case 'm':
            if (!strcmp(optarg, "off")) {
                prealloc = PREALLOC_MODE_OFF;
            } else if (!strcmp(optarg, "metadata")) {
                prealloc = PREALLOC_MODE_METADATA;
            } else if (!strcmp(optarg, "falloc")) {
                prealloc = PREALLOC_MODE_FALLOC;
            } else if (!strcmp(optarg, "full")) {
                prealloc = PREALLOC_MODE_FULL;
            } else {
                error_report("Invalid preallocation mode '%s'", optarg);
                return -EINVAL;
            }
            break;
        default:
            return sio_usage(&sio_truncate_cmd);
        }
    }
    /* qemu-io crashes here; a usage line serves better. */
    if (optind >= argc) {
        return sio_usage(&sio_truncate_cmd);
    }

    /*
     * Extra arguments are ignored, and a bad size is reported under the
     * first argument's name: both as qemu-io does.
     */
    offset = sio_cvtnum(argv[optind]);
    if (offset < 0) {
        sio_cvtnum_err(offset, argv[1]);
        return offset;
    }

    ret = blk_truncate(sio_blk, offset, false, prealloc, 0, &err);
    if (ret < 0) {
        error_report_err(err);
        return ret;
    }
    return 0;
}

/* ---- alloc, map, length, info ---- */

static int sio_alloc_f(int argc, char **argv)
{
    int64_t offset, start, count, remaining, num, sum_alloc = 0;
    g_autofree char *s = NULL;
    int ret;

    start = offset = sio_cvtnum(argv[1]);
    if (offset < 0) {
        sio_cvtnum_err(offset, argv[1]);
        return offset;
    }
    if (argc == 3) {
        count = sio_cvtnum(argv[2]);
        if (count < 0) {
            sio_cvtnum_err(count, argv[2]);
            return count;
        }
    } else {
        count = BDRV_SECTOR_SIZE;
    }

    remaining = count;
    while (remaining) {
        ret = sio_is_allocated(offset, remaining, &num);
        if (ret < 0) {
            printf("is_allocated failed: %s\n", strerror(-ret));
            return ret;
        }
        offset += num;
        remaining -= num;
        if (ret) {
            sum_alloc += num;
        }
        if (num == 0) {
            /* The image ends here: report on what it has. */
            count -= remaining;
            remaining = 0;
        }
    }

    s = sio_cvtstr(start);
    printf("%" PRId64 "/%" PRId64 " bytes allocated at offset %s\n",
           sum_alloc, count, s);
    return 0;
}

/* One map line's worth: the run of bytes sharing the first's state. */
static int sio_map_run(int64_t offset, int64_t bytes, int64_t *pnum)
{
    int64_t num;
    int first, ret;

    ret = sio_is_allocated(offset, bytes, &num);
    if (ret < 0) {
        return ret;
    }
    first = ret;
    *pnum = num;
    while (num > 0 && bytes > num) {
        offset += num;
        bytes -= num;
        ret = sio_is_allocated(offset, bytes, &num);
        if (ret == first) {
            *pnum += num;
        } else {
            break;
        }
    }
    return first;
}

static int sio_map_f(int argc, char **argv)
{
    int64_t offset = 0, length, num;
    int ret;

    length = blk_getlength(sio_blk);
    if (length < 0) {
        error_report("Failed to query image length: %s", strerror(-length));
        return length;
    }

    while (offset < length) {
        g_autofree char *s1 = NULL;
        g_autofree char *s2 = NULL;

        ret = sio_map_run(offset, length - offset, &num);
        if (ret < 0) {
            error_report("Failed to get allocation status: %s",
                         strerror(-ret));
            return ret;
        } else if (!num) {
            error_report("Unexpected end of image");
            return -EIO;
        }
        s1 = sio_cvtstr(num);
        s2 = sio_cvtstr(offset);
        printf("%s (0x%" PRIx64 ") bytes %s allocated at offset %s (0x%"
               PRIx64 ")\n", s1, num, ret ? "   " : "not", s2, offset);
        offset += num;
    }
    return 0;
}

static int sio_length_f(int argc, char **argv)
{
    int64_t size = blk_getlength(sio_blk);
    g_autofree char *s = NULL;

    if (size < 0) {
        printf("getlength: %s\n", strerror(-size));
        return size;
    }
    s = sio_cvtstr(size);
    printf("%s\n", s);
    return 0;
}

static int sio_info_f(int argc, char **argv)
{
    BlockDriverState *bs = blk_bs(sio_blk);
    g_autofree char *s1 = NULL;
    g_autofree char *s2 = NULL;
    BlockDriverInfo bdi;
    int ret;

    printf("format name: %s\n", bdrv_get_format_name(bs));
    /* qemu-io names a protocol driver twice (as format and protocol). */
    if (bs->drv->is_protocol) {
        printf("format name: %s\n", bdrv_get_format_name(bs));
    }
    ret = bdrv_get_info(bs, &bdi);
    if (ret) {
        return ret;
    }
    s1 = sio_cvtstr(bdi.cluster_size);
    /* No Sluice format has a VM state area. */
    s2 = sio_cvtstr(0);
    printf("cluster size: %s\n", s1);
    printf("vm state offset: %s\n", s2);
    return 0;
}

/* ---- open, close, reopen ---- */

/*
 * A host file name as the block layer takes one: not "json:{...}" and
 * not a protocol URI.
 */
static bool sio_is_plain_filename(const char *name)
{
    return !keyval_is_json_filename(name) && !strstr(name, "://");
}

/* Flat @opts has a key below @prefix (with its dot). */
static bool sio_has_prefix_key(JsonObject *opts, const char *prefix)
{
    g_autoptr(GList) members = json_object_get_members(opts);
    GList *m;

    for (m = members; m; m = m->next) {
        if (g_str_has_prefix(m->data, prefix)) {
            return true;
        }
    }
    return false;
}

/* A boolean of flat options, read as the block layer reads it. */
static bool sio_flat_bool(JsonObject *flat, const char *key, bool def,
                          bool *out, GError **errp)
{
    g_autoptr(JsonObject) one = json_object_new();
    g_autoptr(JsonObject) nested = NULL;
    JsonNode *node = json_object_get_member(flat, key);

    if (!node) {
        *out = def;
        return true;
    }
    json_object_set_member(one, key, json_node_copy(node));
    nested = keyval_crumple(one, errp);
    return nested && keyval_get_bool(nested, key, def, out, errp);
}

/* The string option @key of @o, or @def if it is missing or no string. */
static const char *sio_get_str(JsonObject *o, const char *key,
                               const char *def)
{
    JsonNode *node = json_object_get_member(o, key);

    if (node && JSON_NODE_HOLDS_VALUE(node) &&
        json_node_get_value_type(node) == G_TYPE_STRING) {
        return json_node_get_string(node);
    }
    return def;
}

/*
 * Turn @name and the flat options of a command line into what
 * tool_open() takes: *@name_out (may become NULL) and nested options.
 * QEMU merges a file name's options with dotted ones key by key; Sluice
 * merges whole members, so options below "file" get the file name put
 * next to them here, and a json: name is taken apart.  NULL with @errp
 * set if the keys do not nest.
 */
static JsonObject *sio_open_options(const char *name, JsonObject *flat,
                                    const char *aio, const char **name_out,
                                    GError **errp)
{
    g_autoptr(JsonObject) all = json_object_new();
    g_autoptr(GList) members = NULL;
    GList *m;

    if (aio && strcmp(aio, "threads") != 0) {
        /* QEMU passes the engine as a flag the file node inherits. */
        if (!g_strcmp0(sio_get_str(flat, "driver", NULL), "file")) {
            json_object_set_string_member(flat, "aio", aio);
        } else {
            json_object_set_string_member(flat, "file.aio", aio);
        }
    }
    members = json_object_get_members(flat);

    *name_out = name;
    if (name && keyval_is_json_filename(name) && members) {
        g_autoptr(JsonObject) parsed =
            keyval_parse_json_filename(name, errp);

        if (!parsed) {
            return NULL;
        }
        keyval_flatten(parsed, all);
        *name_out = NULL;
    }
    for (m = members; m; m = m->next) {
        json_object_set_member(all, m->data,
                               json_object_dup_member(flat, m->data));
    }

    if (*name_out && sio_is_plain_filename(*name_out)) {
        BlockDriver *drv = bdrv_find_format(sio_get_str(all, "driver", ""));

        /* -f file: the name is the protocol's own, not a child's. */
        if (drv && drv->is_protocol &&
            !json_object_has_member(all, "filename")) {
            json_object_set_string_member(all, "filename", *name_out);
            *name_out = NULL;
        }
    }
    if (*name_out && sio_is_plain_filename(*name_out) &&
        sio_has_prefix_key(all, "file.") &&
        !json_object_has_member(all, "file") &&
        !json_object_has_member(all, "file.filename") &&
        !g_strcmp0(sio_get_str(all, "file.driver", "file"), "file")) {
        json_object_set_string_member(all, "file.driver", "file");
        json_object_set_string_member(all, "file.filename", *name_out);
    }
    return keyval_crumple(all, errp);
}

int sio_open(const char *name, JsonObject *opts, int flags,
             bool writethrough, bool force_share, const char *aio)
{
    g_autoptr(JsonObject) flat = json_object_new();
    g_autoptr(JsonObject) nested = NULL;
    const char *open_name;
    GError *err = NULL;

    if (sio_blk) {
        error_report("file open already, try 'help close'");
        return -EBUSY;
    }
    if (opts) {
        g_autoptr(GList) members = json_object_get_members(opts);
        GList *m;

        for (m = members; m; m = m->next) {
            json_object_set_member(flat, m->data,
                                   json_object_dup_member(opts, m->data));
        }
    }
    if (force_share) {
        JsonNode *fs = json_object_get_member(flat, "force-share");
        bool on = true;

        if (fs && !sio_flat_bool(flat, "force-share", true, &on, NULL)) {
            on = false;
        }
        if (!on) {
            error_report("-U conflicts with image options");
            return -EINVAL;
        }
        json_object_set_string_member(flat, "force-share", "on");
    }

    nested = sio_open_options(name, flat, aio, &open_name, &err);
    if (nested) {
        sio_blk = tool_open(open_name, NULL, nested, false, flags,
                            writethrough, false, &err);
    }
    if (!sio_blk) {
        error_report("can't open%s%s: %s", name ? " device " : "",
                     name ?: "", err->message);
        g_error_free(err);
        return -EINVAL;
    }
    return 0;
}

void sio_close(void)
{
    if (!sio_blk) {
        return;
    }
    sio_aio_wait();
    blk_unref(sio_blk);
    sio_blk = NULL;
}

static int sio_close_f(int argc, char **argv)
{
    sio_close();
    return 0;
}

static void sio_open_help(void)
{
    printf("\n"
" Open an image for the other commands; only one can be open at a time.\n"
"\n"
" Example:\n"
" 'open -n -o driver=raw /tmp/data' - open a raw image read-write,\n"
"                                     bypassing the host page cache\n"
"\n"
" -r, -- open read-only\n"
" -s, -- temporary snapshot overlay (not supported by sluice-io)\n"
" -C, -- copy-on-read (not supported by sluice-io)\n"
" -n, -- bypass the host page cache, the same as -t none\n"
" -U, -- share every permission with other users of the image\n"
" -k, -- use Linux native AIO, the same as -i native\n"
" -i, -- host I/O engine: threads, native or io_uring\n"
" -t, -- cache mode: none, writeback, writethrough, directsync, unsafe\n"
" -d, -- discard mode: ignore (off) or unmap (on)\n"
" -o, -- block driver options, key=value[,key=value...]\n"
"\n");
}

static const SioCmd sio_open_cmd;

static int sio_open_f(int argc, char **argv)
{
    g_autoptr(JsonObject) opts = json_object_new();
    int flags = BDRV_O_UNMAP;
    bool writethrough = true, read_only = false, force_share = false;
    bool have_opts = false;
    const char *aio = NULL;
    int c;

    while ((c = getopt(argc, argv, "snCro:kt:d:i:U")) != -1) {
        switch (c) {
        case 's':
            error_report("snapshot mode (-s) is not supported");
            return -ENOTSUP;
        case 'n':
            flags |= BDRV_O_NOCACHE;
            writethrough = false;
            break;
        case 'C':
            error_report("copy-on-read (-C) is not supported");
            return -ENOTSUP;
        case 'r':
            read_only = true;
            break;
        case 'k':
            aio = "native";
            break;
        case 't':
            if (!bdrv_parse_cache_mode(optarg, &flags, &writethrough)) {
                error_report("Invalid cache option: %s", optarg);
                return -EINVAL;
            }
            break;
        case 'd':
            if (!sio_parse_discard(optarg, &flags)) {
                error_report("Invalid discard option: %s", optarg);
                return -EINVAL;
            }
            break;
        case 'i':
            if (!sio_parse_aio(optarg, &aio)) {
                error_report("Invalid aio option: %s", optarg);
                return -EINVAL;
            }
            break;
        case 'o':
            if (sio_image_opts) {
                printf("--image-opts and 'open -o' are mutually "
                       "exclusive\n");
                return -EINVAL;
            }
            if (!sio_parse_opts(opts, optarg)) {
                return -EINVAL;
            }
            have_opts = true;
            break;
        case 'U':
            force_share = true;
            break;
        default:
            return sio_usage(&sio_open_cmd);
        }
    }
    if (!read_only) {
        flags |= BDRV_O_RDWR;
    }
    if (sio_image_opts && optind == argc - 1) {
        if (!sio_parse_opts(opts, argv[optind])) {
            return -EINVAL;
        }
        have_opts = true;
        optind++;
    }

    if (optind == argc - 1) {
        return sio_open(argv[optind], have_opts ? opts : NULL, flags,
                        writethrough, force_share, aio);
    } else if (optind == argc) {
        return sio_open(NULL, have_opts ? opts : NULL, flags, writethrough,
                        force_share, aio);
    }
    return sio_usage(&sio_open_cmd);
}

/* Nested @src merged into @dst: objects member by member, else replaced. */
static void sio_merge(JsonObject *dst, JsonObject *src)
{
    g_autoptr(GList) members = json_object_get_members(src);
    GList *m;

    for (m = members; m; m = m->next) {
        JsonNode *s = json_object_get_member(src, m->data);
        JsonNode *d = json_object_get_member(dst, m->data);

        if (d && JSON_NODE_HOLDS_OBJECT(d) && JSON_NODE_HOLDS_OBJECT(s)) {
            g_autoptr(JsonObject) copy = json_object_new();

            sio_merge(copy, json_node_get_object(d));
            sio_merge(copy, json_node_get_object(s));
            json_object_set_object_member(dst, m->data,
                                          g_steal_pointer(&copy));
        } else {
            json_object_set_member(dst, m->data, json_node_copy(s));
        }
    }
}

/*
 * Reopen @bs with its current driver options, the generic ones given
 * and, if not NULL, @extra merged over them.
 */
static bool sio_reopen_node(BlockDriverState *bs, JsonObject *extra,
                            bool read_only, bool direct, bool no_flush,
                            GError **errp)
{
    g_autoptr(JsonObject) opts = json_object_new();
    JsonObject *cache = json_object_new();

    if (bs->options) {
        sio_merge(opts, bs->options);
    }
    json_object_set_boolean_member(opts, "read-only", read_only);
    json_object_set_boolean_member(cache, "direct", direct);
    json_object_set_boolean_member(cache, "no-flush", no_flush);
    json_object_set_object_member(opts, "cache", cache);
    if (extra) {
        sio_merge(opts, extra);
    }
    return bdrv_reopen(bs, opts, errp);
}

/*
 * The protocol nodes below @bs follow its read-only state and cache
 * mode, as QEMU's children inherit them: a node becomes writable
 * after its file and read-only before it.  Options under "file" in
 * @opts are the file node's.
 */
static bool sio_reopen_chain(BlockDriverState *bs, JsonObject *opts,
                             bool read_only, bool direct, bool no_flush,
                             GError **errp)
{
    BlockDriverState *file = bs->file ? bs->file->bs : NULL;
    g_autoptr(JsonObject) own = json_object_new();
    g_autoptr(JsonObject) file_opts = NULL;
    bool file_ro, file_direct, file_no_flush;
    JsonNode *node;

    if (opts) {
        sio_merge(own, opts);
    }
    node = json_object_get_member(own, "file");
    if (file && node && JSON_NODE_HOLDS_OBJECT(node)) {
        file_opts = json_object_ref(json_node_get_object(node));
        json_object_remove_member(own, "file");
    }
    if (!file) {
        return sio_reopen_node(bs, own, read_only, direct, no_flush, errp);
    }

    file_ro = bdrv_is_read_only(file);
    file_direct = file->open_flags & BDRV_O_NOCACHE;
    file_no_flush = file->open_flags & BDRV_O_NO_FLUSH;
    if (!read_only &&
        !sio_reopen_chain(file, file_opts, false, direct, no_flush, errp)) {
        return false;
    }
    if (!sio_reopen_node(bs, own, read_only, direct, no_flush, errp)) {
        if (!read_only) {
            sio_reopen_chain(file, NULL, file_ro, file_direct,
                             file_no_flush, NULL);
        }
        return false;
    }
    if (read_only) {
        /* Only options given for the file can make this fail. */
        if (!sio_reopen_chain(file, file_opts, true, direct, no_flush,
                              file_opts ? errp : NULL) && file_opts) {
            return false;
        }
    }
    return true;
}

static void sio_reopen_help(void)
{
    printf("\n"
" Change the options of the open image without closing it.\n"
"\n"
" Example:\n"
" 'reopen -c none' - bypass the host page cache from now on\n"
"\n"
" -r, -- make the image read-only\n"
" -w, -- make the image writable\n"
" -c, -- switch to this cache mode\n"
" -o, -- block driver options to change, as 'open -o' takes them\n"
"\n");
}

static const SioCmd sio_reopen_cmd;

static int sio_reopen_f(int argc, char **argv)
{
    BlockDriverState *bs = blk_bs(sio_blk);
    g_autoptr(JsonObject) flat = json_object_new();
    g_autoptr(JsonObject) opts = NULL;
    int flags = bs->open_flags;
    bool writethrough = !blk_enable_write_cache(sio_blk);
    bool has_rw = false, has_cache = false;
    bool read_only, direct, no_flush;
    GError *err = NULL;
    int c;

    while ((c = getopt(argc, argv, "c:o:rw")) != -1) {
        switch (c) {
        case 'c':
            if (!bdrv_parse_cache_mode(optarg, &flags, &writethrough)) {
                error_report("Invalid cache option: %s", optarg);
                return -EINVAL;
            }
            has_cache = true;
            break;
        case 'o':
            if (!sio_parse_opts(flat, optarg)) {
                return -EINVAL;
            }
            break;
        case 'r':
        case 'w':
            if (has_rw) {
                error_report("Only one -r/-w option may be given");
                return -EINVAL;
            }
            if (c == 'r') {
                flags &= ~BDRV_O_RDWR;
            } else {
                flags |= BDRV_O_RDWR;
            }
            has_rw = true;
            break;
        default:
            return sio_usage(&sio_reopen_cmd);
        }
    }
    if (optind != argc) {
        return sio_usage(&sio_reopen_cmd);
    }

    read_only = !(flags & BDRV_O_RDWR);
    if (json_object_has_member(flat, "read-only")) {
        if (has_rw) {
            error_report("Cannot set both -r/-w and 'read-only'");
            return -EINVAL;
        }
        if (!sio_flat_bool(flat, "read-only", read_only, &read_only,
                           &err)) {
            error_report_err(err);
            return -EINVAL;
        }
        json_object_remove_member(flat, "read-only");
    }
    direct = flags & BDRV_O_NOCACHE;
    no_flush = flags & BDRV_O_NO_FLUSH;
    if (json_object_has_member(flat, "cache.direct") ||
        json_object_has_member(flat, "cache.no-flush")) {
        if (has_cache) {
            error_report("Cannot set both -c and the cache options");
            return -EINVAL;
        }
        if (!sio_flat_bool(flat, "cache.direct", direct, &direct, &err) ||
            !sio_flat_bool(flat, "cache.no-flush", no_flush, &no_flush,
                           &err)) {
            error_report_err(err);
            return -EINVAL;
        }
        json_object_remove_member(flat, "cache.direct");
        json_object_remove_member(flat, "cache.no-flush");
    }
    opts = keyval_crumple(flat, &err);
    if (!opts) {
        error_report_err(err);
        return -EINVAL;
    }

    if (!(flags & BDRV_O_RDWR)) {
        uint64_t perm, shared;

        /*
         * A read-only node cannot keep a writer: stop being one first.
         * Sluice also refuses a resizer there (QEMU only ignores it).
         */
        blk_get_perm(sio_blk, &perm, &shared);
        blk_set_perm(sio_blk, perm & ~(BLK_PERM_WRITE |
                                       BLK_PERM_WRITE_UNCHANGED |
                                       BLK_PERM_RESIZE),
                     shared, NULL);
    }
    if (!sio_reopen_chain(bs, opts, read_only, direct, no_flush, &err)) {
        error_report_err(err);
        return -EINVAL;
    }
    blk_set_enable_write_cache(sio_blk, !writethrough);
    return 0;
}

/* ---- blkdebug breakpoints ---- */

static int sio_break_f(int argc, char **argv)
{
    int ret = blkdebug_debug_breakpoint(blk_bs(sio_blk), argv[1], argv[2]);

    if (ret < 0) {
        printf("Could not set breakpoint: %s\n", strerror(-ret));
    }
    return ret;
}

static int sio_remove_break_f(int argc, char **argv)
{
    int ret = blkdebug_debug_remove_breakpoint(blk_bs(sio_blk), argv[1]);

    if (ret < 0) {
        printf("Could not remove breakpoint %s: %s\n", argv[1],
               strerror(-ret));
    }
    return ret;
}

static int sio_resume_f(int argc, char **argv)
{
    int ret = blkdebug_debug_resume(blk_bs(sio_blk), argv[1]);

    if (ret < 0) {
        printf("Could not resume request: %s\n", strerror(-ret));
    }
    return ret;
}

static int sio_wait_break_f(int argc, char **argv)
{
    /* Like qemu-io, this waits for ever on an image without blkdebug. */
    while (!blkdebug_debug_is_suspended(blk_bs(sio_blk), argv[1])) {
        aio_poll(sio_ctx(), true);
    }
    return 0;
}

/* ---- sleep, sigraise, abort, quit, help ---- */

static void sio_sleep_done(void *opaque)
{
    *(bool *)opaque = true;
}

static int sio_sleep_f(int argc, char **argv)
{
    AioContext *ctx = qemu_get_aio_context();
    bool expired = false;
    int64_t now, deadline;
    QEMUTimer timer;
    long long ms;
    char *end;

    errno = 0;
    ms = strtoll(argv[1], &end, 0);
    if (ms < 0 || *end || end == argv[1]) {
        printf("%s is not a valid number\n", argv[1]);
        return -EINVAL;
    }
    now = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
    if (errno || ms > (INT64_MAX - now) / SCALE_MS) {
        deadline = INT64_MAX;
    } else {
        deadline = now + ms * SCALE_MS;
    }

    aio_timer_init(ctx, &timer, QEMU_CLOCK_REALTIME, SCALE_NS,
                   sio_sleep_done, &expired);
    timer_mod(&timer, deadline);
    AIO_WAIT_WHILE(ctx, !expired);
    timer_del(&timer);
    return 0;
}

static void sio_sigraise_help(void)
{
    printf("\n"
" Send the given signal (a number) to sluice-io itself, with raise(3).\n"
"\n"
" Example:\n"
" 'sigraise 15' - terminate with SIGTERM\n"
"\n");
}

static int sio_sigraise_f(int argc, char **argv)
{
    int64_t sig = sio_cvtnum(argv[1]);

    if (sig < 0) {
        sio_cvtnum_err(sig, argv[1]);
        return sig;
    } else if (sig > NSIG) {
        printf("signal argument '%s' is too large to be a valid signal\n",
               argv[1]);
        return -EINVAL;
    }
    /* What was printed so far must survive a fatal signal. */
    fflush(stdout);
    raise(sig);
    return 0;
}

static int sio_abort_f(int argc, char **argv)
{
    /* The command exists to simulate a crash; nothing else aborts. */
    abort();
}

static int sio_quit_f(int argc, char **argv)
{
    sio_quit = true;
    return 0;
}

static void sio_help_oneline(const char *name, const SioCmd *ct)
{
    if (ct->args) {
        printf("%s %s -- %s\n", name, ct->args, ct->oneline);
    } else {
        printf("%s -- %s\n", name, ct->oneline);
    }
}

static int sio_help_f(int argc, char **argv);

/* ---- The table and the dispatcher ---- */


#define SIO_CMD_READ {                                                  \
    .name = "read", .altname = "r", .func = sio_read_f,                 \
    .argmin = 2, .argmax = -1,                                          \
    .args = "[-abCqv] [-P pattern [-s off] [-l len]] off len",          \
    .oneline = "reads a number of bytes at a specified offset",         \
    .help = sio_read_help }
#define SIO_CMD_READV {                                                 \
    .name = "readv", .func = sio_readv_f, .argmin = 2, .argmax = -1,    \
    .args = "[-Cqv] [-P pattern] off len [len..]",                      \
    .oneline = "reads a number of bytes at a specified offset",         \
    .help = sio_readv_help }
#define SIO_CMD_WRITE {                                                 \
    .name = "write", .altname = "w", .func = sio_write_f,               \
    .argmin = 2, .argmax = -1, .perm = BLK_PERM_WRITE,                  \
    .args = "[-bcCfnquz] [-P pattern | -s source_file] off len",        \
    .oneline = "writes a number of bytes at a specified offset",        \
    .help = sio_write_help }
#define SIO_CMD_WRITEV {                                                \
    .name = "writev", .func = sio_writev_f, .argmin = 2, .argmax = -1,  \
    .perm = BLK_PERM_WRITE,                                             \
    .args = "[-Cfq] [-P pattern] off len [len..]",                      \
    .oneline = "writes a number of bytes at a specified offset",        \
    .help = sio_writev_help }
#define SIO_CMD_AIO_READ {                                              \
    .name = "aio_read", .func = sio_aio_read_f, .argmin = 2,            \
    .argmax = -1, .args = "[-Ciqv] [-P pattern] off len [len..]",       \
    .oneline = "asynchronously reads a number of bytes",                \
    .help = sio_aio_read_help }
#define SIO_CMD_AIO_WRITE {                                             \
    .name = "aio_write", .func = sio_aio_write_f, .argmin = 2,          \
    .argmax = -1, .perm = BLK_PERM_WRITE,                               \
    .args = "[-Cfiquz] [-P pattern] off len [len..]",                   \
    .oneline = "asynchronously writes a number of bytes",               \
    .help = sio_aio_write_help }
#define SIO_CMD_DISCARD {                                               \
    .name = "discard", .altname = "d", .func = sio_discard_f,           \
    .argmin = 2, .argmax = -1, .perm = BLK_PERM_WRITE,                  \
    .args = "[-Cq] off len",                                            \
    .oneline = "discards a number of bytes at a specified offset",      \
    .help = sio_discard_help }
#define SIO_CMD_TRUNCATE {                                              \
    .name = "truncate", .altname = "t", .func = sio_truncate_f,         \
    .argmin = 1, .argmax = 3, .perm = BLK_PERM_RESIZE,                  \
    .args = "[-m prealloc_mode] off",                                   \
    .oneline = "truncates the current file at the given offset" }
#define SIO_CMD_OPEN {                                                  \
    .name = "open", .altname = "o", .func = sio_open_f, .argmin = 1,    \
    .argmax = -1, .nofile_ok = true,                                    \
    .args = "[-rsCnkU] [-t cache] [-d discard] [-o options] [path]",    \
    .oneline = "open the file specified by path",                       \
    .help = sio_open_help }
#define SIO_CMD_REOPEN {                                                \
    .name = "reopen", .func = sio_reopen_f, .argmin = 0, .argmax = -1,  \
    .args = "[(-r|-w)] [-c cache] [-o options]",                        \
    .oneline = "reopens an image with new options",                     \
    .help = sio_reopen_help }

static const SioCmd sio_read_cmd = SIO_CMD_READ;
static const SioCmd sio_readv_cmd = SIO_CMD_READV;
static const SioCmd sio_write_cmd = SIO_CMD_WRITE;
static const SioCmd sio_writev_cmd = SIO_CMD_WRITEV;
static const SioCmd sio_aio_read_cmd = SIO_CMD_AIO_READ;
static const SioCmd sio_aio_write_cmd = SIO_CMD_AIO_WRITE;
static const SioCmd sio_discard_cmd = SIO_CMD_DISCARD;
static const SioCmd sio_truncate_cmd = SIO_CMD_TRUNCATE;
static const SioCmd sio_open_cmd = SIO_CMD_OPEN;
static const SioCmd sio_reopen_cmd = SIO_CMD_REOPEN;

/* In name order: help lists them so. */
static const SioCmd sio_cmds[] = {
    {
        .name = "abort", .func = sio_abort_f, .nofile_ok = true,
        .oneline = "simulate a program crash using abort(3)",
    }, {
        .name = "aio_flush", .func = sio_aio_flush_f,
        .oneline = "completes all outstanding aio requests",
    },
    SIO_CMD_AIO_READ,
    SIO_CMD_AIO_WRITE,
    {
        .name = "alloc", .altname = "a", .func = sio_alloc_f,
        .argmin = 1, .argmax = 2, .args = "offset [count]",
        .oneline = "checks if offset is allocated in the file",
    }, {
        .name = "break", .func = sio_break_f, .argmin = 2, .argmax = 2,
        .args = "event tag",
        .oneline = "sets a breakpoint on event and tags the stopped "
                   "request as tag",
    }, {
        .name = "close", .altname = "c", .func = sio_close_f,
        .oneline = "close the current open file",
    },
    SIO_CMD_DISCARD,
    {
        .name = "drain-debug", .func = sio_drain_debug_f,
        .oneline = "prints what a drain of the image's context waits for",
        .help = sio_drain_debug_help, .unlisted = true,
    }, {
        .name = "flush", .altname = "f", .func = sio_flush_f,
        .oneline = "flush all in-core file state to disk",
    }, {
        .name = "help", .altname = "?", .func = sio_help_f,
        .argmin = 0, .argmax = 1, .nofile_ok = true, .args = "[command]",
        .oneline = "help for one or all commands",
    }, {
        .name = "info", .altname = "i", .func = sio_info_f,
        .oneline = "prints information about the current file",
    }, {
        .name = "length", .altname = "l", .func = sio_length_f,
        .oneline = "gets the length of the current file",
    }, {
        .name = "map", .func = sio_map_f, .args = "",
        .oneline = "prints the allocated areas of a file",
    },
    SIO_CMD_OPEN,
    {
        .name = "quit", .altname = "q", .func = sio_quit_f,
        .argmax = -1, .nofile_ok = true, .oneline = "exit the program",
    },
    SIO_CMD_READ,
    SIO_CMD_READV,
    {
        .name = "remove_break", .func = sio_remove_break_f,
        .argmin = 1, .argmax = 1, .args = "tag",
        .oneline = "remove a breakpoint by tag",
    },
    SIO_CMD_REOPEN,
    {
        .name = "resume", .func = sio_resume_f, .argmin = 1, .argmax = 1,
        .args = "tag", .oneline = "resumes the request tagged as tag",
    }, {
        .name = "sigraise", .func = sio_sigraise_f, .argmin = 1,
        .argmax = 1, .nofile_ok = true, .args = "signal",
        .oneline = "raises a signal", .help = sio_sigraise_help,
    }, {
        .name = "sleep", .func = sio_sleep_f, .argmin = 1, .argmax = 1,
        .nofile_ok = true,
        .oneline = "waits for the given value in milliseconds",
    },
    SIO_CMD_TRUNCATE,
    {
        .name = "wait_break", .func = sio_wait_break_f, .argmin = 1,
        .argmax = 1, .args = "tag",
        .oneline = "waits for the suspension of a request",
    },
    SIO_CMD_WRITE,
    SIO_CMD_WRITEV,
    { .name = NULL },
};

static const SioCmd *sio_find_cmd(const char *name)
{
    const SioCmd *ct;

    for (ct = sio_cmds; ct->name; ct++) {
        if (!strcmp(ct->name, name) ||
            (ct->altname && !strcmp(ct->altname, name))) {
            return ct;
        }
    }
    return NULL;
}

static int sio_help_f(int argc, char **argv)
{
    const SioCmd *ct;

    if (argc == 1) {
        for (ct = sio_cmds; ct->name; ct++) {
            if (!ct->unlisted) {
                sio_help_oneline(ct->name, ct);
            }
        }
        printf("\nUse 'help commandname' for extended help.\n");
        return 0;
    }
    ct = sio_find_cmd(argv[1]);
    if (!ct) {
        printf("command %s not found\n", argv[1]);
        return -EINVAL;
    }
    sio_help_oneline(argv[1], ct);
    if (ct->help) {
        ct->help();
    }
    return 0;
}

static bool sio_check_args(const SioCmd *ct, int argc, const char *name)
{
    int n = argc - 1;

    if (n >= ct->argmin && (ct->argmax == -1 || n <= ct->argmax)) {
        return true;
    }
    if (ct->argmax == -1) {
        fprintf(stderr, "bad argument count %d to %s, expected at least %d "
                "arguments\n", n, name, ct->argmin);
    } else if (ct->argmin == ct->argmax) {
        fprintf(stderr, "bad argument count %d to %s, expected %d "
                "arguments\n", n, name, ct->argmin);
    } else {
        fprintf(stderr, "bad argument count %d to %s, expected between %d "
                "and %d arguments\n", n, name, ct->argmin, ct->argmax);
    }
    return false;
}

int sio_command(const char *line)
{
    g_auto(GStrv) words = g_strsplit(line, " ", -1);
    g_autofree char **argv = g_new0(char *, g_strv_length(words) + 1);
    const SioCmd *ct;
    int argc = 0, i;

    /* Words are separated by single spaces; runs of them make no words. */
    for (i = 0; words[i]; i++) {
        if (words[i][0]) {
            argv[argc++] = words[i];
        }
    }
    if (argc == 0) {
        return 0;
    }

    ct = sio_find_cmd(argv[0]);
    if (!ct) {
        fprintf(stderr, "command \"%s\" not found\n", argv[0]);
        return -EINVAL;
    }
    if (!ct->nofile_ok && !sio_blk) {
        fprintf(stderr, "no file open, try 'help open'\n");
        return -EINVAL;
    }
    if (!sio_check_args(ct, argc, argv[0])) {
        return -EINVAL;
    }
    if (ct->perm && sio_blk) {
        uint64_t perm, shared;
        GError *err = NULL;

        /* Commands take what they need when they need it, as qemu-io. */
        blk_get_perm(sio_blk, &perm, &shared);
        if ((perm & ct->perm) != ct->perm &&
            !blk_set_perm(sio_blk, perm | ct->perm, shared, &err)) {
            error_report_err(err);
            return -EPERM;
        }
    }

    optind = 0;
    return ct->func(argc, argv);
}
