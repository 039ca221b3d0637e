/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What the host I/O engines share: turning one kernel round trip into a
 * whole transfer.
 *
 * Copyright (c) 2026 The Sluice authors
 */
#include "qemu/osdep.h"
#include <sys/stat.h>

#include "block/raw-aio.h"

/* True if @offset is at or past the end of @fd (regular files only). */
static bool raw_aio_at_eof(int fd, uint64_t offset)
{
    struct stat st;

    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        return false;
    }
    return offset >= (uint64_t)st.st_size;
}

int coroutine_fn raw_aio_co_transfer(void *engine, RawAioTransferFunc *once,
                                     int fd, uint64_t offset,
                                     QEMUIOVector *qiov, int type)
{
    QEMUIOVector rest;
    bool have_rest = false;
    struct iovec *iov = qiov->iov;
    int niov = qiov->niov;
    size_t done = 0;
    int ret;

    if (type != QEMU_AIO_READ && type != QEMU_AIO_WRITE) {
        return -EINVAL;
    }
    if (qiov->size > INT_MAX) {
        return -EINVAL;
    }
    if (qiov->size == 0) {
        return 0;
    }

    for (;;) {
        int r = once(engine, fd, offset + done, iov, niov, type);

        if (r < 0) {
            ret = r;
            break;
        }
        done += r;
        if (done >= qiov->size) {
            ret = qiov->size;
            break;
        }
        if (r == 0) {
            /* A read that makes no progress is at EOF. */
            ret = type == QEMU_AIO_READ ? (int)done : -EIO;
            break;
        }
        if (type == QEMU_AIO_READ && raw_aio_at_eof(fd, offset + done)) {
            /*
             * Checked here rather than by reading on: with O_DIRECT the
             * remainder usually starts unaligned and would fail.
             */
            ret = done;
            break;
        }

        /* Rare path: continue with the part the kernel left. */
        if (have_rest) {
            qemu_iovec_destroy(&rest);
        }
        qemu_iovec_init_slice(&rest, qiov, done, qiov->size - done);
        have_rest = true;
        iov = rest.iov;
        niov = rest.niov;
    }

    if (have_rest) {
        qemu_iovec_destroy(&rest);
    }
    return ret;
}
