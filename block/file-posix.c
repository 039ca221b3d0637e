/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The "file" protocol driver: images kept in regular host files.
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * Data moves through one of three engines, chosen with aio=: the thread
 * pool of the node's context (preadv/pwritev on a worker), linux-aio or
 * io_uring.  The engines are per context, so a node looks its engine up
 * again when it moves to another context.
 *
 * Image locking uses open file description (OFD) locks on the bytes QEMU
 * uses, so that Sluice and QEMU processes keep each other out of an image
 * in the same way two QEMU processes do.  Byte 100 + n is held while the
 * node's users hold permission bit n; byte 200 + n while they do not
 * share it.  Only shared (read) locks are ever taken: a conflict is found
 * by asking whether an exclusive lock would be refused.  OFD locks belong
 * to an open file description, so two nodes on one file in one process
 * conflict exactly like two processes do, as in QEMU.
 */
#include "qemu/osdep.h"

#include "config-host.h"

#include <stdarg.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <linux/fs.h>

#include "block/block_int.h"
#include "block/raw-aio.h"
#include "qemu/coroutine.h"
#include "qemu/keyval.h"
#include "qemu/main-loop.h"
#include "qemu/thread-pool.h"

/* The lock bytes: QEMU's layout, which other processes rely on. */
#define RAW_LOCK_PERM_BASE      100
#define RAW_LOCK_SHARED_BASE    200

/*
 * Permissions that have lock bytes.  QEMU 7.2 has no graph-modification
 * permission, so nothing it could see is locked for it.
 */
#define RAW_LOCK_NR_PERMS       4
#define RAW_LOCK_PERMS          (BLK_PERM_CONSISTENT_READ | \
                                 BLK_PERM_WRITE | \
                                 BLK_PERM_WRITE_UNCHANGED | \
                                 BLK_PERM_RESIZE)

/*
 * O_DIRECT alignment used when the kernel does not say and probing
 * cannot tell (an empty or sparse file reads fine at any alignment).
 */
#define RAW_SAFE_ALIGN          4096

/* Bounce buffers are at most this big; larger requests go in pieces. */
#define RAW_BOUNCE_MAX          (1024 * 1024)

typedef enum RawAioMode {
    RAW_AIO_THREADS,
    RAW_AIO_NATIVE,
    RAW_AIO_IO_URING,
} RawAioMode;

typedef enum RawLocking {
    RAW_LOCKING_AUTO,
    RAW_LOCKING_ON,
    RAW_LOCKING_OFF,
} RawLocking;

/* An fd and the lock bytes it holds (OFD locks live in the fd). */
typedef struct RawLockFd {
    int fd;
    uint64_t locked_perm;       /* bit n: byte 100 + n held */
    uint64_t locked_unshared;   /* bit n: byte 200 + n held */
} RawLockFd;

/* The driver's own options. */
typedef struct RawOptions {
    char *filename;
    RawAioMode aio;
    uint64_t aio_max_batch;
    RawLocking locking;
    bool drop_cache;
    bool check_cache_dropped;
} RawOptions;

/* What a reopen prepared, applied by commit or dropped by abort. */
typedef struct RawReopenState {
    RawLockFd lk;               /* a new fd, or fd -1 to keep the old one */
    bool direct;
    bool rdwr;
    uint32_t req_align;
    uint32_t buf_align;
    bool drop_cache;
    bool check_cache_dropped;
} RawReopenState;

typedef struct BDRVRawState {
    RawLockFd lk;
    char *filename;
    bool rdwr;                  /* lk.fd is open O_RDWR */
    bool direct;                /* lk.fd is open O_DIRECT */
    RawAioMode aio;
    uint64_t aio_max_batch;     /* accepted for compatibility */
    RawLocking locking;
    bool use_lock;
    bool drop_cache;            /* accepted for compatibility */
    bool check_cache_dropped;   /* accepted for compatibility */

    /*
     * What O_DIRECT needs: offsets and lengths aligned to req_align,
     * buffers to buf_align.  Both 1 without O_DIRECT.
     */
    uint32_t req_align;
    uint32_t buf_align;

    /* The engine in the node's current context; both NULL: threads. */
    LinuxAioState *laio;
    LuringState *luring;

    /*
     * After a failed fdatasync the kernel may have dropped dirty pages,
     * so no later flush can promise anything.
     */
    bool page_cache_inconsistent;

    /* Permissions last committed with .bdrv_set_perm. */
    uint64_t perm;
    uint64_t shared_perm;

    RawReopenState *reopen;     /* between reopen prepare and commit */
} BDRVRawState;

static const char *const raw_option_names[] = {
    "filename", "aio", "aio-max-batch", "locking", "pr-manager",
    "drop-cache", "x-check-cache-dropped", NULL,
};

static const char *const raw_perm_names[RAW_LOCK_NR_PERMS] = {
    "consistent read", "write", "write unchanged", "resize",
};

static void G_GNUC_PRINTF(1, 2) raw_warn(const char *fmt, ...)
{
    g_autofree char *msg = NULL;
    const char *prg = g_get_prgname();
    va_list ap;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_printerr("%s: warning: %s\n", prg ? prg : "sluice", msg);
}

/* ---- Options ---- */

static bool raw_parse_enum(JsonObject *options, const char *key,
                           const char *const *names, int def, int *out,
                           GError **errp)
{
    g_autofree char *val = NULL;
    int i;

    if (!keyval_get_str(options, key, names[def], &val, errp)) {
        return false;
    }
    for (i = 0; names[i]; i++) {
        if (strcmp(names[i], val) == 0) {
            *out = i;
            return true;
        }
    }
    error_setg(errp, "invalid parameter value: %s", val);
    return false;
}

/*
 * Parse @options into @o, with @def for what is absent: QEMU's defaults
 * at open, the current values at reopen.  QEMU's order of checks.
 */
static bool raw_parse_options(JsonObject *options, const RawOptions *def,
                              RawOptions *o, GError **errp)
{
    static const char *const aio_names[] = {
        [RAW_AIO_THREADS] = "threads",
        [RAW_AIO_NATIVE] = "native",
        [RAW_AIO_IO_URING] = "io_uring",
        NULL,
    };
    static const char *const locking_names[] = {
        [RAW_LOCKING_AUTO] = "auto",
        [RAW_LOCKING_ON] = "on",
        [RAW_LOCKING_OFF] = "off",
        NULL,
    };
    g_autofree char *pr_manager = NULL;
    int aio, locking;

    memset(o, 0, sizeof(*o));
    if (!keyval_get_str(options, "filename", def->filename, &o->filename,
                        errp)) {
        return false;
    }
    if (!o->filename || !o->filename[0]) {
        error_setg(errp, "The 'file' block driver requires a file name");
        goto fail;
    }
    if (!keyval_get_uint(options, "aio-max-batch", def->aio_max_batch,
                         &o->aio_max_batch, errp) ||
        !keyval_get_bool(options, "drop-cache", def->drop_cache,
                         &o->drop_cache, errp) ||
        !keyval_get_bool(options, "x-check-cache-dropped",
                         def->check_cache_dropped, &o->check_cache_dropped,
                         errp) ||
        !keyval_get_str(options, "pr-manager", NULL, &pr_manager, errp) ||
        !raw_parse_enum(options, "aio", aio_names, def->aio, &aio, errp) ||
        !raw_parse_enum(options, "locking", locking_names, def->locking,
                        &locking, errp)) {
        goto fail;
    }
    o->aio = aio;
    o->locking = locking;
    if (pr_manager) {
        /* Sluice has no persistent reservation managers to name. */
        error_setg(errp, "No persistent reservation manager with id '%s'",
                   pr_manager);
        goto fail;
    }
    return true;

fail:
    g_clear_pointer(&o->filename, g_free);
    return false;
}

/* ---- Opening ---- */

/* Open @filename for the BDRV_O_* @flags; -errno with @errp set. */
static int raw_open_fd(const char *filename, int flags, GError **errp)
{
    int oflags = O_CLOEXEC;
    int fd;

    oflags |= (flags & BDRV_O_RDWR) ? O_RDWR : O_RDONLY;
    if (flags & BDRV_O_NOCACHE) {
        oflags |= O_DIRECT;
    }
    do {
        fd = open(filename, oflags);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        int err = errno;

        if (err == EINVAL && (oflags & O_DIRECT)) {
            error_setg(errp, "Could not open '%s': filesystem does not "
                       "support O_DIRECT", filename);
        } else {
            error_setg_errno(errp, err, "Could not open '%s'", filename);
        }
        return -err;
    }
    return fd;
}

/* True unless a read of @len at offset 0 into @buf fails for alignment. */
static bool raw_read_works(int fd, void *buf, size_t len)
{
    ssize_t ret;

    do {
        ret = pread(fd, buf, len, 0);
    } while (ret < 0 && errno == EINTR);
    return ret >= 0 || errno != EINVAL;
}

/*
 * What O_DIRECT on @fd needs.  The kernel says so through statx() where
 * the filesystem supports it; otherwise try reads as QEMU does.  A probe
 * that finds no limit may be fooled by a hole (nothing is read from the
 * disk there), so it then assumes the safe 4 KiB.
 */
static bool raw_probe_alignment(int fd, uint32_t *req_align,
                                uint32_t *buf_align, GError **errp)
{
    size_t max_align = MAX(RAW_SAFE_ALIGN, (size_t)sysconf(_SC_PAGESIZE));
    uint32_t req = 0, mem = 0;
    void *buf;
    size_t a;

#ifdef STATX_DIOALIGN
    struct statx stx;

    if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
        (stx.stx_mask & STATX_DIOALIGN) &&
        is_power_of_2(stx.stx_dio_offset_align) &&
        is_power_of_2(stx.stx_dio_mem_align) &&
        stx.stx_dio_offset_align <= max_align &&
        stx.stx_dio_mem_align <= max_align) {
        *req_align = stx.stx_dio_offset_align;
        *buf_align = stx.stx_dio_mem_align;
        return true;
    }
#endif

    if (posix_memalign(&buf, max_align, 2 * max_align)) {
        error_setg(errp, "Could not allocate the O_DIRECT probe buffer");
        return false;
    }
    for (a = 1; a <= max_align; a = a == 1 ? 512 : a * 2) {
        if (raw_read_works(fd, buf, a)) {
            req = a;
            break;
        }
    }
    for (a = 1; a <= max_align; a = a == 1 ? 512 : a * 2) {
        if (raw_read_works(fd, (char *)buf + a, max_align)) {
            mem = a;
            break;
        }
    }
    free(buf);

    if (!req || !mem) {
        error_setg(errp, "Could not find working O_DIRECT alignment\n"
                   "Try cache.direct=off");
        return false;
    }
    *req_align = req == 1 ? max_align : req;
    *buf_align = mem == 1 ? max_align : mem;
    return true;
}

/* Pick the engine of @ctx, or fall back to the thread pool. */
static void raw_attach_engine(BlockDriverState *bs, AioContext *ctx)
{
    BDRVRawState *s = bs->opaque;
    g_autoptr(GError) err = NULL;

    s->laio = NULL;
    s->luring = NULL;
    switch (s->aio) {
    case RAW_AIO_NATIVE:
        s->laio = aio_setup_linux_aio(ctx, &err);
        if (!s->laio) {
            raw_warn("Unable to use native AIO, falling back to thread "
                     "pool");
        }
        break;
    case RAW_AIO_IO_URING:
        s->luring = aio_setup_linux_io_uring(ctx, &err);
        if (!s->luring) {
            raw_warn("Unable to use io_uring, falling back to thread pool");
        }
        break;
    case RAW_AIO_THREADS:
        break;
    }
}

static bool raw_has_ofd_locks(int fd)
{
    struct flock fl = {
        .l_type = F_WRLCK,
        .l_whence = SEEK_SET,
        .l_start = RAW_LOCK_PERM_BASE,
        .l_len = 1,
    };

    return fcntl(fd, F_OFD_GETLK, &fl) == 0;
}

static int raw_open(BlockDriverState *bs, JsonObject *options, int flags,
                    GError **errp)
{
    BDRVRawState *s = bs->opaque;
    static const RawOptions defaults = {
        .aio = RAW_AIO_THREADS,
        .locking = RAW_LOCKING_AUTO,
        .drop_cache = true,
    };
    g_autoptr(JsonObject) none = NULL;
    GError *local_err = NULL;
    RawOptions o;
    struct stat st;
    int ret;

    s->lk.fd = -1;
    if (!options) {
        options = none = json_object_new();
    }
    if (!raw_parse_options(options, &defaults, &o, errp)) {
        return -EINVAL;
    }
    s->filename = o.filename;
    g_strlcpy(bs->filename, s->filename, sizeof(bs->filename));
    s->aio = o.aio;
    s->aio_max_batch = o.aio_max_batch;
    s->locking = o.locking;
    s->drop_cache = o.drop_cache;
    s->check_cache_dropped = o.check_cache_dropped;

    ret = raw_open_fd(s->filename, flags, &local_err);
    if ((ret == -EACCES || ret == -EROFS) && (flags & BDRV_O_RDWR) &&
        (flags & BDRV_O_AUTO_RDONLY)) {
        /* auto-read-only: settle for reading what we may not write. */
        g_clear_error(&local_err);
        flags &= ~BDRV_O_RDWR;
        bs->open_flags = flags;
        bs->read_only = true;
        ret = raw_open_fd(s->filename, flags, &local_err);
    }
    if (ret < 0) {
        g_propagate_error(errp, local_err);
        goto fail;
    }
    s->lk.fd = ret;
    s->rdwr = flags & BDRV_O_RDWR;
    s->direct = flags & BDRV_O_NOCACHE;

    if (s->aio == RAW_AIO_NATIVE && !s->direct) {
        error_setg(errp, "aio=native was specified, but it requires "
                   "cache.direct=on, which was not specified.");
        ret = -EINVAL;
        goto fail;
    }
    if (fstat(s->lk.fd, &st) < 0) {
        ret = -errno;
        error_setg_errno(errp, -ret, "Could not stat '%s'", s->filename);
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        error_setg(errp, "'file' driver requires '%s' to be a regular file",
                   s->filename);
        ret = -EINVAL;
        goto fail;
    }

    s->use_lock = s->locking != RAW_LOCKING_OFF &&
                  raw_has_ofd_locks(s->lk.fd);
    if (s->locking == RAW_LOCKING_ON && !s->use_lock) {
        error_setg(errp, "Image locking needs OFD locks, which this host "
                   "does not support; use locking=off");
        ret = -ENOTSUP;
        goto fail;
    }

    s->req_align = 1;
    s->buf_align = 1;
    if (s->direct &&
        !raw_probe_alignment(s->lk.fd, &s->req_align, &s->buf_align,
                             errp)) {
        ret = -EINVAL;
        goto fail;
    }

    /* Nobody uses the node yet: no locks until parents say otherwise. */
    s->perm = 0;
    s->shared_perm = BLK_PERM_ALL;
    raw_attach_engine(bs, bdrv_get_aio_context(bs));
    return 0;

fail:
    if (s->lk.fd >= 0) {
        close(s->lk.fd);
        s->lk.fd = -1;
    }
    g_clear_pointer(&s->filename, g_free);
    return ret;
}

static void raw_close(BlockDriverState *bs)
{
    BDRVRawState *s = bs->opaque;

    assert(!s->reopen);
    /* Closing the fd drops its OFD locks with it. */
    if (s->lk.fd >= 0) {
        close(s->lk.fd);
        s->lk.fd = -1;
    }
    s->laio = NULL;
    s->luring = NULL;
    g_clear_pointer(&s->filename, g_free);
}

static void raw_refresh_limits(BlockDriverState *bs, GError **errp)
{
    BDRVRawState *s = bs->opaque;

    bs->bl.request_alignment = s->req_align;
}

static void raw_detach_aio_context(BlockDriverState *bs)
{
    BDRVRawState *s = bs->opaque;

    s->laio = NULL;
    s->luring = NULL;
}

static void raw_attach_aio_context(BlockDriverState *bs, AioContext *ctx)
{
    raw_attach_engine(bs, ctx);
}

/* ---- Work done on a pool worker ---- */

typedef struct RawRwWork {
    int fd;
    bool write;
    uint64_t offset;
    size_t bytes;
    struct iovec *iov;
    int niov;
} RawRwWork;

static bool raw_fd_at_eof(int fd, uint64_t offset)
{
    struct stat st;

    return fstat(fd, &st) == 0 && offset >= (uint64_t)st.st_size;
}

/*
 * Transfer all of @w, continuing short transfers; a read stops early at
 * end of file.  Returns the bytes transferred or -errno.
 */
static int raw_work_rw(void *opaque)
{
    RawRwWork *w = opaque;
    g_autofree struct iovec *copy = NULL;
    struct iovec *iov = w->iov;
    int niov = w->niov;
    size_t done = 0;

    assert(w->bytes <= INT_MAX);
    while (done < w->bytes) {
        ssize_t n;

        do {
            n = w->write ? pwritev(w->fd, iov, niov, w->offset + done)
                         : preadv(w->fd, iov, niov, w->offset + done);
        } while (n < 0 && errno == EINTR);
        if (n < 0) {
            return -errno;
        }
        if (n == 0) {
            /* A read that makes no progress is at the end of the file. */
            return w->write ? -EIO : (int)done;
        }
        done += n;
        if (done == w->bytes ||
            (!w->write && raw_fd_at_eof(w->fd, w->offset + done))) {
            break;
        }

        /* Short transfer: go on with what is left, in our own copy. */
        if (!copy) {
            copy = g_new(struct iovec, niov);
            memcpy(copy, iov, niov * sizeof(*iov));
            iov = copy;
        }
        while (n > 0) {
            if ((size_t)n >= iov->iov_len) {
                n -= iov->iov_len;
                iov++;
                niov--;
            } else {
                iov->iov_base = (char *)iov->iov_base + n;
                iov->iov_len -= n;
                n = 0;
            }
        }
    }
    return done;
}

static int raw_work_flush(void *opaque)
{
    int fd = *(int *)opaque;

    return fdatasync(fd) < 0 ? -errno : 0;
}

typedef struct RawZeroWork {
    int fd;
    uint64_t offset;
    uint64_t bytes;
    bool unmap;                 /* deallocate rather than zero */
    bool discard;               /* deallocate or nothing */
} RawZeroWork;

static int raw_fallocate(int fd, int mode, uint64_t offset, uint64_t bytes)
{
    int ret;

    do {
        ret = fallocate(fd, mode, offset, bytes);
    } while (ret < 0 && errno == EINTR);
    if (ret == 0) {
        return 0;
    }
    return errno == EOPNOTSUPP || errno == ENOSYS ? -ENOTSUP : -errno;
}

/* Make the file at least @size long; the new part reads as zeroes. */
static int raw_grow_to(int fd, uint64_t size)
{
    struct stat st;

    if (fstat(fd, &st) < 0) {
        return -errno;
    }
    if ((uint64_t)st.st_size < size && ftruncate(fd, size) < 0) {
        return -errno;
    }
    return 0;
}

static int raw_work_zeroes(void *opaque)
{
    RawZeroWork *w = opaque;
    struct stat st;
    int ret;

    if (w->unmap || w->discard) {
        ret = raw_fallocate(w->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                            w->offset, w->bytes);
        if (w->discard) {
            return ret;
        }
        if (ret == 0) {
            /* A hole never extends the file; a write of zeroes does. */
            return raw_grow_to(w->fd, w->offset + w->bytes);
        }
        if (ret != -ENOTSUP) {
            return ret;
        }
    }

    ret = raw_fallocate(w->fd, FALLOC_FL_ZERO_RANGE, w->offset, w->bytes);
    if (ret != -ENOTSUP) {
        return ret;
    }

    /* Past the end, growing the file gives zeroes for free. */
    if (fstat(w->fd, &st) < 0) {
        return -errno;
    }
    if (w->offset >= (uint64_t)st.st_size) {
        return raw_grow_to(w->fd, w->offset + w->bytes);
    }
    return -ENOTSUP;
}

typedef struct RawTruncateWork {
    int fd;
    uint64_t offset;
    PreallocMode prealloc;
    uint32_t req_align;
    uint32_t buf_align;
    const char *what;           /* the message for a failure */
    bool with_errno;            /* append strerror to it */
} RawTruncateWork;

static int raw_fail(RawTruncateWork *w, int ret, const char *what,
                    bool with_errno)
{
    w->what = what;
    w->with_errno = with_errno;
    return ret;
}

static int raw_pwrite_all(int fd, const void *buf, size_t len,
                          uint64_t offset)
{
    size_t done = 0;

    while (done < len) {
        ssize_t n = pwrite(fd, (const char *)buf + done, len - done,
                           offset + done);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return n < 0 ? -errno : -EIO;
        }
        done += n;
    }
    return 0;
}

/*
 * Write zeroes from the old end @old to @w->offset, in blocks of the
 * O_DIRECT alignment: the block holding the old end is read and written
 * back with its tail zeroed, and the overshoot is cut off afterwards.
 */
static int raw_fill_zeroes(RawTruncateWork *w, uint64_t old)
{
    uint64_t a = w->req_align;
    uint64_t pos = QEMU_ALIGN_DOWN(old, a);
    uint64_t end = QEMU_ALIGN_UP(w->offset, a);
    size_t chunk = MIN(RAW_BOUNCE_MAX, end - pos);
    void *buf;
    int ret = 0;

    if (posix_memalign(&buf, MAX(w->buf_align, sizeof(void *)), chunk)) {
        return -ENOMEM;
    }
    memset(buf, 0, chunk);
    if (pos < old) {
        ssize_t n;

        do {
            n = pread(w->fd, buf, a, pos);
        } while (n < 0 && errno == EINTR);
        ret = n < 0 ? -errno : raw_pwrite_all(w->fd, buf, a, pos);
        memset(buf, 0, a);
        pos += a;
    }
    while (ret == 0 && pos < end) {
        size_t len = MIN(chunk, end - pos);

        ret = raw_pwrite_all(w->fd, buf, len, pos);
        pos += len;
    }
    free(buf);
    if (ret == 0 && ftruncate(w->fd, w->offset) < 0) {
        ret = -errno;
    }
    return ret;
}

static int raw_work_truncate(void *opaque)
{
    RawTruncateWork *w = opaque;
    struct stat st;
    int ret;

    if (fstat(w->fd, &st) < 0) {
        return raw_fail(w, -errno, "Could not stat the file", true);
    }
    if (w->prealloc != PREALLOC_MODE_OFF &&
        w->offset < (uint64_t)st.st_size) {
        return raw_fail(w, -ENOTSUP, "Preallocation can only be used for "
                        "growing images", false);
    }

    switch (w->prealloc) {
    case PREALLOC_MODE_OFF:
        if (ftruncate(w->fd, w->offset) < 0) {
            return raw_fail(w, -errno, "Could not resize file", true);
        }
        return 0;
    case PREALLOC_MODE_FALLOC:
        if (w->offset == (uint64_t)st.st_size) {
            return 0;
        }
        ret = posix_fallocate(w->fd, st.st_size, w->offset - st.st_size);
        if (ret) {
            return raw_fail(w, -ret, "Could not preallocate new data", true);
        }
        return 0;
    case PREALLOC_MODE_FULL:
        if (w->offset == (uint64_t)st.st_size) {
            return 0;
        }
        ret = raw_fill_zeroes(w, st.st_size);
        if (ret < 0) {
            /* Leave the file as it was, not half grown. */
            if (ftruncate(w->fd, st.st_size) < 0) {
                raw_warn("Could not undo a partial preallocation: %s",
                         g_strerror(errno));
            }
            return raw_fail(w, ret, "Could not write zeros for "
                            "preallocation", true);
        }
        return 0;
    default:
        return raw_fail(w, -ENOTSUP, "Unsupported preallocation mode",
                        false);
    }
}

/* ---- Requests ---- */

static ThreadPool *raw_pool(BlockDriverState *bs)
{
    return aio_get_thread_pool(bdrv_get_aio_context(bs));
}

/* One transfer through the node's engine: bytes moved or -errno. */
static int coroutine_fn raw_co_submit(BlockDriverState *bs, uint64_t offset,
                                      QEMUIOVector *qiov, bool write)
{
    BDRVRawState *s = bs->opaque;
    int type = write ? QEMU_AIO_WRITE : QEMU_AIO_READ;
    RawRwWork w;

#ifdef CONFIG_LINUX_IO_URING
    if (s->luring) {
        return luring_co_submit(s->luring, s->lk.fd, offset, qiov, type);
    }
#endif
#ifdef CONFIG_LINUX_AIO
    if (s->laio) {
        return laio_co_submit(s->laio, s->lk.fd, offset, qiov, type);
    }
#endif
    (void)type;
    w = (RawRwWork) {
        .fd = s->lk.fd,
        .write = write,
        .offset = offset,
        .bytes = qiov->size,
        .iov = qiov->iov,
        .niov = qiov->niov,
    };
    return thread_pool_submit_co(raw_pool(bs), raw_work_rw, &w);
}

/*
 * The kernel takes at most IOV_MAX pieces, and O_DIRECT wants every
 * piece at an aligned address with an aligned length.
 */
static bool raw_qiov_needs_bounce(BDRVRawState *s, QEMUIOVector *qiov)
{
    int i;

    if (qiov->niov > IOV_MAX) {
        return true;
    }
    if (!s->direct) {
        return false;
    }
    for (i = 0; i < qiov->niov; i++) {
        if (!QEMU_PTR_IS_ALIGNED(qiov->iov[i].iov_base, s->buf_align) ||
            !QEMU_IS_ALIGNED(qiov->iov[i].iov_len, s->req_align)) {
            return true;
        }
    }
    return false;
}

/* Turn a transfer count into the block layer's 0 / -errno. */
static int raw_finish(QEMUIOVector *qiov, size_t qoff, size_t bytes,
                      int ret, bool write)
{
    if (ret < 0) {
        return ret;
    }
    if ((size_t)ret < bytes) {
        if (write) {
            return -EIO;
        }
        /* A regular file reads as zeroes past its end. */
        qemu_iovec_memset(qiov, qoff + ret, 0, bytes - ret);
    }
    return 0;
}

static int coroutine_fn raw_co_rw_bounced(BlockDriverState *bs,
                                          int64_t offset, int64_t bytes,
                                          QEMUIOVector *qiov, bool write)
{
    BDRVRawState *s = bs->opaque;
    size_t chunk_max = MIN((uint64_t)bytes, RAW_BOUNCE_MAX);
    int64_t done = 0;
    void *buf;
    int ret = 0;

    if (posix_memalign(&buf, MAX(s->buf_align, sizeof(void *)),
                       chunk_max)) {
        return -ENOMEM;
    }
    while (done < bytes) {
        size_t chunk = MIN((uint64_t)(bytes - done), chunk_max);
        QEMUIOVector bounce;

        qemu_iovec_init_buf(&bounce, buf, chunk);
        if (write) {
            qemu_iovec_to_buf(qiov, done, buf, chunk);
        }
        ret = raw_co_submit(bs, offset + done, &bounce, write);
        ret = raw_finish(&bounce, 0, chunk, ret, write);
        if (ret < 0) {
            break;
        }
        if (!write) {
            qemu_iovec_from_buf(qiov, done, buf, chunk);
        }
        done += chunk;
    }
    free(buf);
    return ret;
}

static int coroutine_fn raw_co_rw(BlockDriverState *bs, int64_t offset,
                                  int64_t bytes, QEMUIOVector *qiov,
                                  bool write)
{
    BDRVRawState *s = bs->opaque;
    int ret;

    assert(qiov->size == (size_t)bytes);
    if (raw_qiov_needs_bounce(s, qiov)) {
        return raw_co_rw_bounced(bs, offset, bytes, qiov, write);
    }
    ret = raw_co_submit(bs, offset, qiov, write);
    return raw_finish(qiov, 0, bytes, ret, write);
}

static int coroutine_fn raw_co_preadv(BlockDriverState *bs, int64_t offset,
                                      int64_t bytes, QEMUIOVector *qiov,
                                      BdrvRequestFlags flags)
{
    return raw_co_rw(bs, offset, bytes, qiov, false);
}

static int coroutine_fn raw_co_fdatasync(BlockDriverState *bs)
{
    BDRVRawState *s = bs->opaque;
    int fd = s->lk.fd;

#ifdef CONFIG_LINUX_IO_URING
    if (s->luring) {
        return luring_co_submit(s->luring, fd, 0, NULL, QEMU_AIO_FLUSH);
    }
#endif
    return thread_pool_submit_co(raw_pool(bs), raw_work_flush, &fd);
}

static int coroutine_fn raw_co_flush_to_disk(BlockDriverState *bs)
{
    BDRVRawState *s = bs->opaque;
    int ret;

    if (bs->open_flags & BDRV_O_NO_FLUSH) {
        return 0;
    }
    if (s->page_cache_inconsistent) {
        return -EIO;
    }
    ret = raw_co_fdatasync(bs);
    if (ret < 0 && ret != -ENOTSUP) {
        s->page_cache_inconsistent = true;
    }
    return ret;
}

static int coroutine_fn raw_co_pwritev(BlockDriverState *bs, int64_t offset,
                                       int64_t bytes, QEMUIOVector *qiov,
                                       BdrvRequestFlags flags)
{
    int ret = raw_co_rw(bs, offset, bytes, qiov, true);

    if (ret == 0 && (flags & BDRV_REQ_FUA)) {
        ret = raw_co_flush_to_disk(bs);
    }
    return ret;
}

static int coroutine_fn raw_co_pwrite_zeroes(BlockDriverState *bs,
                                             int64_t offset, int64_t bytes,
                                             BdrvRequestFlags flags)
{
    BDRVRawState *s = bs->opaque;
    RawZeroWork w = {
        .fd = s->lk.fd,
        .offset = offset,
        .bytes = bytes,
        .unmap = (flags & BDRV_REQ_MAY_UNMAP) &&
                 (bs->open_flags & BDRV_O_UNMAP),
    };
    int ret;

    ret = thread_pool_submit_co(raw_pool(bs), raw_work_zeroes, &w);
    if (ret == 0 && (flags & BDRV_REQ_FUA)) {
        ret = raw_co_flush_to_disk(bs);
    }
    return ret;
}

static int coroutine_fn raw_co_pdiscard(BlockDriverState *bs, int64_t offset,
                                        int64_t bytes)
{
    BDRVRawState *s = bs->opaque;
    RawZeroWork w = {
        .fd = s->lk.fd,
        .offset = offset,
        .bytes = bytes,
        .discard = true,
    };

    if (!(bs->open_flags & BDRV_O_UNMAP)) {
        return -ENOTSUP;
    }
    return thread_pool_submit_co(raw_pool(bs), raw_work_zeroes, &w);
}

static int coroutine_fn raw_co_block_status(BlockDriverState *bs,
                                            int64_t offset, int64_t bytes,
                                            int64_t *pnum, int64_t *map,
                                            BlockDriverState **file)
{
    BDRVRawState *s = bs->opaque;
    off_t data, hole;

    *map = offset;
    *file = bs;
    *pnum = bytes;

    data = lseek(s->lk.fd, offset, SEEK_DATA);
    if (data < 0) {
        /* ENXIO: in the hole that ends the file.  Else: cannot tell. */
        return (errno == ENXIO ? BDRV_BLOCK_ZERO : BDRV_BLOCK_DATA) |
               BDRV_BLOCK_OFFSET_VALID;
    }
    if (data > offset) {
        *pnum = MIN(bytes, data - offset);
        return BDRV_BLOCK_ZERO | BDRV_BLOCK_OFFSET_VALID;
    }
    hole = lseek(s->lk.fd, offset, SEEK_HOLE);
    if (hole > offset) {
        *pnum = MIN(bytes, hole - offset);
    }
    /* A failure or a hole that appeared meanwhile: say data, to be safe. */
    return BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID;
}

static int64_t coroutine_fn raw_co_getlength(BlockDriverState *bs)
{
    BDRVRawState *s = bs->opaque;
    off_t len = lseek(s->lk.fd, 0, SEEK_END);

    return len < 0 ? -errno : len;
}

static int coroutine_fn raw_co_truncate(BlockDriverState *bs, int64_t offset,
                                        bool exact, PreallocMode prealloc,
                                        BdrvRequestFlags flags,
                                        GError **errp)
{
    static const char *const prealloc_names[] = {
        [PREALLOC_MODE_OFF] = "off",
        [PREALLOC_MODE_METADATA] = "metadata",
        [PREALLOC_MODE_FALLOC] = "falloc",
        [PREALLOC_MODE_FULL] = "full",
    };
    BDRVRawState *s = bs->opaque;
    RawTruncateWork w = {
        .fd = s->lk.fd,
        .offset = offset,
        .prealloc = prealloc,
        .req_align = s->req_align,
        .buf_align = s->buf_align,
    };
    int ret;

    if (prealloc != PREALLOC_MODE_OFF && prealloc != PREALLOC_MODE_FALLOC &&
        prealloc != PREALLOC_MODE_FULL) {
        error_setg(errp, "Unsupported preallocation mode: %s",
                   (unsigned)prealloc < ARRAY_SIZE(prealloc_names) ?
                   prealloc_names[prealloc] : "?");
        return -ENOTSUP;
    }
    ret = thread_pool_submit_co(raw_pool(bs), raw_work_truncate, &w);
    if (ret < 0) {
        if (w.with_errno) {
            error_setg_errno(errp, -ret, "%s", w.what);
        } else {
            error_setg(errp, "%s", w.what);
        }
    }
    return ret;
}

/* ---- Image locking ---- */

static int raw_lock_byte(int fd, int byte, short type)
{
    struct flock fl = {
        .l_type = type,
        .l_whence = SEEK_SET,
        .l_start = byte,
        .l_len = 1,
    };
    int ret;

    do {
        ret = fcntl(fd, F_OFD_SETLK, &fl);
    } while (ret < 0 && errno == EINTR);
    return ret < 0 ? -errno : 0;
}

/* 0 if no other open file description holds @byte, -EAGAIN if one does. */
static int raw_lock_test_byte(int fd, int byte)
{
    struct flock fl = {
        .l_type = F_WRLCK,
        .l_whence = SEEK_SET,
        .l_start = byte,
        .l_len = 1,
    };

    if (fcntl(fd, F_OFD_GETLK, &fl) < 0) {
        return -errno;
    }
    return fl.l_type == F_UNLCK ? 0 : -EAGAIN;
}

/* Hold exactly the bytes of @perm and @unshared on @lk. */
static int raw_lock_apply(RawLockFd *lk, uint64_t perm, uint64_t unshared,
                          GError **errp)
{
    struct {
        int base;
        uint64_t want;
        uint64_t *have;
    } sets[] = {
        { RAW_LOCK_PERM_BASE, perm, &lk->locked_perm },
        { RAW_LOCK_SHARED_BASE, unshared, &lk->locked_unshared },
    };
    size_t i;
    int n;

    for (i = 0; i < ARRAY_SIZE(sets); i++) {
        for (n = 0; n < RAW_LOCK_NR_PERMS; n++) {
            uint64_t bit = 1ULL << n;
            bool want = sets[i].want & bit;
            int ret;

            if (want == !!(*sets[i].have & bit)) {
                continue;
            }
            ret = raw_lock_byte(lk->fd, sets[i].base + n,
                                want ? F_RDLCK : F_UNLCK);
            if (ret < 0) {
                error_setg_errno(errp, -ret, "Failed to %s byte %d",
                                 want ? "lock" : "unlock",
                                 sets[i].base + n);
                return ret;
            }
            *sets[i].have ^= bit;
        }
    }
    return 0;
}

static int raw_lock_error(int ret, const char *fmt, const char *perm_name,
                          const char *filename, GError **errp)
{
    g_autofree char *what = g_strdup_printf(fmt, perm_name);

    if (ret == -EAGAIN) {
        error_setg(errp, "%s\nIs another process using the image [%s]?",
                   what, filename);
    } else {
        error_setg_errno(errp, -ret, "%s", what);
    }
    return ret;
}

/*
 * Fail if another open file description holds the not-shared byte of a
 * permission in @perm, or the permission byte of one not in @shared.
 */
static int raw_lock_check(int fd, uint64_t perm, uint64_t shared,
                          const char *filename, GError **errp)
{
    int n, ret;

    for (n = 0; n < RAW_LOCK_NR_PERMS; n++) {
        if (perm & (1ULL << n)) {
            ret = raw_lock_test_byte(fd, RAW_LOCK_SHARED_BASE + n);
            if (ret < 0) {
                return raw_lock_error(ret, "Failed to get \"%s\" lock",
                                      raw_perm_names[n], filename, errp);
            }
        }
    }
    for (n = 0; n < RAW_LOCK_NR_PERMS; n++) {
        if (!(shared & (1ULL << n))) {
            ret = raw_lock_test_byte(fd, RAW_LOCK_PERM_BASE + n);
            if (ret < 0) {
                return raw_lock_error(ret, "Failed to get shared \"%s\" lock",
                                      raw_perm_names[n], filename, errp);
            }
        }
    }
    return 0;
}

/* The fd the permissions go to: a reopen's new one once prepared. */
static RawLockFd *raw_lock_target(BDRVRawState *s)
{
    if (s->reopen && s->reopen->lk.fd >= 0) {
        return &s->reopen->lk;
    }
    return &s->lk;
}

static int raw_check_perm(BlockDriverState *bs, uint64_t perm,
                          uint64_t shared, GError **errp)
{
    BDRVRawState *s = bs->opaque;
    RawLockFd *lk = raw_lock_target(s);
    int ret;

    if (!s->use_lock) {
        return 0;
    }
    if (bs->force_share) {
        shared = BLK_PERM_ALL;
    }

    /*
     * Take the new bytes before looking at the others' (keeping the old
     * ones until commit): of two processes racing for conflicting
     * permissions, at least one then sees the other.
     */
    ret = raw_lock_apply(lk, (s->perm | perm) & RAW_LOCK_PERMS,
                         (~s->shared_perm | ~shared) & RAW_LOCK_PERMS,
                         errp);
    if (ret == 0) {
        ret = raw_lock_check(lk->fd, perm & RAW_LOCK_PERMS, shared,
                             s->filename, errp);
    }
    if (ret < 0) {
        raw_lock_apply(lk, s->perm & RAW_LOCK_PERMS,
                       ~s->shared_perm & RAW_LOCK_PERMS, NULL);
    }
    return ret;
}

static void raw_set_perm(BlockDriverState *bs, uint64_t perm,
                         uint64_t shared)
{
    BDRVRawState *s = bs->opaque;

    if (bs->force_share) {
        shared = BLK_PERM_ALL;
    }
    if (s->use_lock) {
        /* Only drops bytes check took: nothing here can conflict. */
        raw_lock_apply(raw_lock_target(s), perm & RAW_LOCK_PERMS,
                       ~shared & RAW_LOCK_PERMS, NULL);
    }
    s->perm = perm;
    s->shared_perm = shared;
}

static void raw_abort_perm_update(BlockDriverState *bs)
{
    BDRVRawState *s = bs->opaque;

    if (s->use_lock) {
        raw_lock_apply(raw_lock_target(s), s->perm & RAW_LOCK_PERMS,
                       ~s->shared_perm & RAW_LOCK_PERMS, NULL);
    }
}

/* ---- Reopen ---- */

static int raw_reopen_prepare(BlockDriverState *bs, JsonObject *options,
                              int flags, void **opaque, GError **errp)
{
    BDRVRawState *s = bs->opaque;
    RawOptions cur = {
        .filename = s->filename,
        .aio = s->aio,
        .aio_max_batch = s->aio_max_batch,
        .locking = s->locking,
        .drop_cache = s->drop_cache,
        .check_cache_dropped = s->check_cache_dropped,
    };
    g_autofree char *filename = NULL;
    RawReopenState *rs;
    const char *changed = NULL;
    g_autoptr(JsonObject) none = NULL;
    RawOptions o;
    int ret;

    if (!options) {
        options = none = json_object_new();
    }
    /* What is absent keeps its value; only some options may change. */
    if (!raw_parse_options(options, &cur, &o, errp)) {
        return -EINVAL;
    }
    filename = o.filename;
    if (strcmp(o.filename, s->filename)) {
        changed = "filename";
    } else if (o.aio != s->aio) {
        changed = "aio";
    } else if (o.aio_max_batch != s->aio_max_batch) {
        changed = "aio-max-batch";
    } else if (o.locking != s->locking) {
        changed = "locking";
    }
    if (changed) {
        error_setg(errp, "Cannot change the option '%s'", changed);
        return -EINVAL;
    }
    if (s->aio == RAW_AIO_NATIVE && !(flags & BDRV_O_NOCACHE)) {
        error_setg(errp, "aio=native was specified, but it requires "
                   "cache.direct=on, which was not specified.");
        return -EINVAL;
    }

    rs = g_new0(RawReopenState, 1);
    rs->lk.fd = -1;
    rs->rdwr = flags & BDRV_O_RDWR;
    rs->direct = flags & BDRV_O_NOCACHE;
    rs->req_align = s->req_align;
    rs->buf_align = s->buf_align;
    rs->drop_cache = o.drop_cache;
    rs->check_cache_dropped = o.check_cache_dropped;

    if (rs->rdwr != s->rdwr || rs->direct != s->direct) {
        ret = raw_open_fd(s->filename, flags, errp);
        if (ret < 0) {
            g_free(rs);
            return ret;
        }
        rs->lk.fd = ret;
        rs->req_align = 1;
        rs->buf_align = 1;
        if (rs->direct &&
            !raw_probe_alignment(rs->lk.fd, &rs->req_align, &rs->buf_align,
                                 errp)) {
            close(rs->lk.fd);
            g_free(rs);
            return -EINVAL;
        }

        /*
         * Move the locks to the new fd now: the old one must not hold
         * any while the permissions are checked from the new one, or it
         * would look like another user.
         */
        if (s->use_lock) {
            ret = raw_lock_apply(&rs->lk, s->lk.locked_perm,
                                 s->lk.locked_unshared, errp);
            if (ret < 0) {
                close(rs->lk.fd);
                g_free(rs);
                return ret;
            }
            raw_lock_apply(&s->lk, 0, 0, NULL);
        }
    }

    s->reopen = rs;
    *opaque = rs;
    return 0;
}

static void raw_reopen_commit(BlockDriverState *bs, void *opaque)
{
    BDRVRawState *s = bs->opaque;
    RawReopenState *rs = opaque;

    assert(s->reopen == rs);
    if (rs->lk.fd >= 0) {
        close(s->lk.fd);
        s->lk = rs->lk;
        s->rdwr = rs->rdwr;
        s->direct = rs->direct;
        s->req_align = rs->req_align;
        s->buf_align = rs->buf_align;
        /*
         * The block layer does not refresh limits after a reopen yet;
         * the node is drained, so the new alignment applies from the next
         * request on.
         */
        bs->bl.request_alignment = s->req_align;
    }
    s->drop_cache = rs->drop_cache;
    s->check_cache_dropped = rs->check_cache_dropped;
    s->reopen = NULL;
    g_free(rs);
}

static void raw_reopen_abort(BlockDriverState *bs, void *opaque)
{
    BDRVRawState *s = bs->opaque;
    RawReopenState *rs = opaque;

    assert(s->reopen == rs);
    if (rs->lk.fd >= 0) {
        /* Take the locks back; only shared ones, so this cannot fail. */
        if (s->use_lock) {
            raw_lock_apply(&s->lk, s->perm & RAW_LOCK_PERMS,
                           ~s->shared_perm & RAW_LOCK_PERMS, NULL);
        }
        close(rs->lk.fd);
    }
    s->reopen = NULL;
    g_free(rs);
}

/* ---- Image creation and size ---- */

static const BlockOptDesc raw_create_opts[] = {
    { "size", BLOCK_OPT_TYPE_SIZE, "Virtual disk size" },
    { "preallocation", BLOCK_OPT_TYPE_STRING,
      "Preallocation mode (allowed values: off, falloc, full)" },
    { "nocow", BLOCK_OPT_TYPE_BOOL,
      "Turn off copy-on-write (valid only on btrfs)" },
    { "extent_size_hint", BLOCK_OPT_TYPE_SIZE,
      "Extent size hint for the image file, 0 to disable" },
    { NULL }
};

typedef struct RawCreateWork {
    const char *filename;
    bool nocow;
    uint64_t extent_size_hint;
    RawTruncateWork trunc;
    GError *err;
} RawCreateWork;

/*
 * Hints for the host file system; both are best effort, as a file system
 * without them (ext4 has neither) must still take the image.
 */
static void raw_create_hints(int fd, bool nocow, uint64_t extent_size_hint)
{
    struct fsxattr attr;

    if (nocow) {
        int attrs;

        if (ioctl(fd, FS_IOC_GETFLAGS, &attrs) == 0) {
            attrs |= FS_NOCOW_FL;
            (void)ioctl(fd, FS_IOC_SETFLAGS, &attrs);
        }
    }
    if (extent_size_hint && extent_size_hint <= UINT32_MAX &&
        ioctl(fd, FS_IOC_FSGETXATTR, &attr) == 0) {
        attr.fsx_xflags |= FS_XFLAG_EXTSIZE;
        attr.fsx_extsize = extent_size_hint;
        (void)ioctl(fd, FS_IOC_FSSETXATTR, &attr);
    }
}

/* In a pool thread: the file system calls of creating an image file. */
static int raw_work_create(void *opaque)
{
    RawCreateWork *w = opaque;
    RawLockFd lk = { .fd = -1 };
    int ret;

    lk.fd = open(w->filename, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lk.fd < 0) {
        ret = -errno;
        error_setg_errno(&w->err, -ret, "Could not create '%s'",
                         w->filename);
        return ret;
    }
    /*
     * Resizing an image under another user's feet is what the lock bytes
     * guard against: hold "resize" while checking that nobody unshares
     * writing or resizing.
     */
    ret = raw_lock_apply(&lk, BLK_PERM_RESIZE, 0, &w->err);
    if (ret == 0) {
        ret = raw_lock_check(lk.fd, BLK_PERM_WRITE | BLK_PERM_RESIZE,
                             BLK_PERM_ALL, w->filename, &w->err);
    }
    if (ret == 0) {
        raw_create_hints(lk.fd, w->nocow, w->extent_size_hint);
        if (ftruncate(lk.fd, 0) < 0) {
            ret = -errno;
            error_setg_errno(&w->err, -ret, "Could not resize file");
        }
    }
    if (ret == 0) {
        w->trunc.fd = lk.fd;
        ret = raw_work_truncate(&w->trunc);
        if (ret < 0) {
            if (w->trunc.with_errno) {
                error_setg_errno(&w->err, -ret, "%s", w->trunc.what);
            } else {
                error_setg(&w->err, "%s", w->trunc.what);
            }
        }
    }
    if (ret == 0 && w->trunc.offset > 0) {
        /*
         * Allocate the first block, as QEMU does: O_DIRECT alignment
         * probing reads it, and on some file systems (XFS) reading a hole
         * tells nothing about the alignment.  The image looks the same.
         */
        static const uint8_t zeroes[4096];
        size_t n = MIN(sizeof(zeroes), w->trunc.offset);

        ret = raw_pwrite_all(lk.fd, zeroes, n, 0);
        if (ret < 0) {
            error_setg_errno(&w->err, -ret, "Could not write to the new "
                             "file");
        }
    }
    /* Closing the fd drops its OFD locks. */
    if (close(lk.fd) < 0 && ret == 0) {
        ret = -errno;
        error_setg_errno(&w->err, -ret, "Could not close the new file");
    }
    return ret;
}

static int coroutine_fn raw_co_create_opts(BlockDriver *drv,
                                           const char *filename,
                                           JsonObject *opts, GError **errp)
{
    g_autofree char *prealloc = NULL;
    RawCreateWork w = { .filename = filename };
    uint64_t size;
    int ret;

    if (!keyval_get_size(opts, "size", 0, &size, errp) ||
        !keyval_get_str(opts, "preallocation", "off", &prealloc, errp) ||
        !keyval_get_bool(opts, "nocow", false, &w.nocow, errp) ||
        !keyval_get_size(opts, "extent_size_hint", 1 * MiB,
                         &w.extent_size_hint, errp)) {
        return -EINVAL;
    }
    if (size > BDRV_MAX_LENGTH) {
        error_setg(errp, "Image size too large");
        return -EFBIG;
    }
    if (!strcmp(prealloc, "off")) {
        w.trunc.prealloc = PREALLOC_MODE_OFF;
    } else if (!strcmp(prealloc, "falloc")) {
        w.trunc.prealloc = PREALLOC_MODE_FALLOC;
    } else if (!strcmp(prealloc, "full")) {
        w.trunc.prealloc = PREALLOC_MODE_FULL;
    } else if (!strcmp(prealloc, "metadata")) {
        error_setg(errp, "Unsupported preallocation mode: metadata");
        return -ENOTSUP;
    } else {
        error_setg(errp, "invalid parameter value: %s", prealloc);
        return -EINVAL;
    }
    if (w.extent_size_hint > UINT32_MAX) {
        error_setg(errp, "Extent size hint exceeds the maximum of 4294967295 "
                   "bytes");
        return -EINVAL;
    }
    /* Like every node length, the file is a whole number of sectors. */
    w.trunc.offset = QEMU_ALIGN_UP(size, BDRV_SECTOR_SIZE);
    w.trunc.req_align = 1;
    w.trunc.buf_align = 1;

    ret = thread_pool_submit_co(aio_get_thread_pool(qemu_get_aio_context()),
                                raw_work_create, &w);
    if (ret < 0) {
        g_propagate_error(errp, w.err);
    }
    return ret;
}

/* A file has no clusters or dirty state: nothing to say, successfully. */
static int coroutine_fn raw_co_get_info(BlockDriverState *bs,
                                        BlockDriverInfo *bdi)
{
    return 0;
}

static int64_t coroutine_fn
raw_co_get_allocated_file_size(BlockDriverState *bs)
{
    BDRVRawState *s = bs->opaque;
    struct stat st;

    if (fstat(s->lk.fd, &st) < 0) {
        return -errno;
    }
    return (int64_t)st.st_blocks * 512;
}

static BlockDriver bdrv_file = {
    .format_name = "file",
    .instance_size = sizeof(BDRVRawState),
    .is_protocol = true,
    .bdrv_open = raw_open,
    .bdrv_close = raw_close,
    .bdrv_refresh_limits = raw_refresh_limits,
    .bdrv_co_preadv = raw_co_preadv,
    .bdrv_co_pwritev = raw_co_pwritev,
    .bdrv_co_pwrite_zeroes = raw_co_pwrite_zeroes,
    .bdrv_co_pdiscard = raw_co_pdiscard,
    .bdrv_co_flush_to_disk = raw_co_flush_to_disk,
    .bdrv_co_block_status = raw_co_block_status,
    .bdrv_co_getlength = raw_co_getlength,
    .bdrv_co_truncate = raw_co_truncate,
    .bdrv_co_get_allocated_file_size = raw_co_get_allocated_file_size,
    .bdrv_co_get_info = raw_co_get_info,
    .create_opts = raw_create_opts,
    .bdrv_co_create_opts = raw_co_create_opts,
    .bdrv_reopen_prepare = raw_reopen_prepare,
    .bdrv_reopen_commit = raw_reopen_commit,
    .bdrv_reopen_abort = raw_reopen_abort,
    .bdrv_detach_aio_context = raw_detach_aio_context,
    .bdrv_attach_aio_context = raw_attach_aio_context,
    .bdrv_check_perm = raw_check_perm,
    .bdrv_set_perm = raw_set_perm,
    .bdrv_abort_perm_update = raw_abort_perm_update,
    .option_names = raw_option_names,
};

static void __attribute__((constructor)) bdrv_file_init(void)
{
    bdrv_register(&bdrv_file);
}
