/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Scatter/gather vectors: byte-range copies over struct iovec arrays and
 * the QEMUIOVector container.
 *
 * Copyright (c) 2026 The Sluice authors
 */
#include "qemu/osdep.h"
#include "qemu/iov.h"

size_t iov_size(const struct iovec *iov, unsigned int iov_cnt)
{
    size_t total = 0;
    unsigned int i;

    for (i = 0; i < iov_cnt; i++) {
        total += iov[i].iov_len;
    }
    return total;
}

/*
 * Find the entry that holds byte @offset of the vector.  Returns its index
 * (iov_cnt if the vector is shorter) and leaves in *@inner the offset
 * within that entry.  Zero-length entries are skipped here, and by the
 * copy loops below too: their base may be NULL, which memcpy() must not
 * see even for zero bytes.
 */
static unsigned int iov_seek(const struct iovec *iov, unsigned int iov_cnt,
                             size_t offset, size_t *inner)
{
    unsigned int i;

    for (i = 0; i < iov_cnt; i++) {
        if (offset < iov[i].iov_len) {
            break;
        }
        offset -= iov[i].iov_len;
    }
    *inner = offset;
    return i;
}

size_t iov_from_buf(const struct iovec *iov, unsigned int iov_cnt,
                    size_t offset, const void *buf, size_t bytes)
{
    const char *src = buf;
    size_t done = 0;
    size_t inner;
    unsigned int i;

    for (i = iov_seek(iov, iov_cnt, offset, &inner);
         i < iov_cnt && done < bytes; i++) {
        size_t len = MIN(iov[i].iov_len - inner, bytes - done);

        if (len > 0) {
            memcpy((char *)iov[i].iov_base + inner, src + done, len);
            done += len;
        }
        inner = 0;
    }
    return done;
}

size_t iov_to_buf(const struct iovec *iov, unsigned int iov_cnt,
                  size_t offset, void *buf, size_t bytes)
{
    char *dst = buf;
    size_t done = 0;
    size_t inner;
    unsigned int i;

    for (i = iov_seek(iov, iov_cnt, offset, &inner);
         i < iov_cnt && done < bytes; i++) {
        size_t len = MIN(iov[i].iov_len - inner, bytes - done);

        if (len > 0) {
            memcpy(dst + done, (const char *)iov[i].iov_base + inner, len);
            done += len;
        }
        inner = 0;
    }
    return done;
}

size_t iov_memset(const struct iovec *iov, unsigned int iov_cnt,
                  size_t offset, int fillc, size_t bytes)
{
    size_t done = 0;
    size_t inner;
    unsigned int i;

    for (i = iov_seek(iov, iov_cnt, offset, &inner);
         i < iov_cnt && done < bytes; i++) {
        size_t len = MIN(iov[i].iov_len - inner, bytes - done);

        if (len > 0) {
            memset((char *)iov[i].iov_base + inner, fillc, len);
            done += len;
        }
        inner = 0;
    }
    return done;
}

void qemu_iovec_init(QEMUIOVector *qiov, int alloc_hint)
{
    assert(alloc_hint >= 0);
    memset(qiov, 0, sizeof(*qiov));
    qiov->iov = alloc_hint ? g_new(struct iovec, alloc_hint) : NULL;
    qiov->nalloc = alloc_hint;
}

void qemu_iovec_init_external(QEMUIOVector *qiov, struct iovec *iov,
                              int niov)
{
    assert(niov >= 0);
    memset(qiov, 0, sizeof(*qiov));
    qiov->iov = iov;
    qiov->niov = niov;
    qiov->nalloc = -1;
    qiov->size = iov_size(iov, niov);
}

void qemu_iovec_init_buf(QEMUIOVector *qiov, void *buf, size_t len)
{
    memset(qiov, 0, sizeof(*qiov));
    qiov->local_iov.iov_base = buf;
    qiov->local_iov.iov_len = len;
    qiov->iov = &qiov->local_iov;
    qiov->niov = 1;
    qiov->nalloc = -1;
    qiov->size = len;
}

void qemu_iovec_add(QEMUIOVector *qiov, void *base, size_t len)
{
    /* External arrays belong to someone else and cannot grow. */
    assert(qiov->nalloc != -1);

    if (qiov->niov == qiov->nalloc) {
        qiov->nalloc = MAX(2 * qiov->nalloc, 1);
        qiov->iov = g_renew(struct iovec, qiov->iov, qiov->nalloc);
    }
    qiov->iov[qiov->niov].iov_base = base;
    qiov->iov[qiov->niov].iov_len = len;
    qiov->niov++;
    qiov->size += len;
}

size_t qemu_iovec_concat_iov(QEMUIOVector *dst, const struct iovec *src_iov,
                             unsigned int src_cnt, size_t soffset,
                             size_t sbytes)
{
    size_t done = 0;
    size_t inner;
    unsigned int i;

    for (i = iov_seek(src_iov, src_cnt, soffset, &inner);
         i < src_cnt && done < sbytes; i++) {
        size_t len = MIN(src_iov[i].iov_len - inner, sbytes - done);

        if (len > 0) {
            qemu_iovec_add(dst, (char *)src_iov[i].iov_base + inner, len);
            done += len;
        }
        inner = 0;
    }
    return done;
}

void qemu_iovec_concat(QEMUIOVector *dst, QEMUIOVector *src,
                       size_t soffset, size_t bytes)
{
    /* Growing dst would free the array we are reading from. */
    assert(dst != src);
    qemu_iovec_concat_iov(dst, src->iov, src->niov, soffset, bytes);
}

void qemu_iovec_init_slice(QEMUIOVector *qiov, QEMUIOVector *source,
                           size_t offset, size_t bytes)
{
    size_t added;

    assert(offset <= source->size && bytes <= source->size - offset);

    /*
     * A slice usually covers few entries; start small and let
     * qemu_iovec_add() grow it.
     */
    qemu_iovec_init(qiov, MIN(source->niov, 4));
    added = qemu_iovec_concat_iov(qiov, source->iov, source->niov,
                                  offset, bytes);
    assert(added == bytes);
}

void qemu_iovec_reset(QEMUIOVector *qiov)
{
    qiov->niov = 0;
    qiov->size = 0;
}

void qemu_iovec_destroy(QEMUIOVector *qiov)
{
    if (qiov->nalloc != -1) {
        g_free(qiov->iov);
    }
    memset(qiov, 0, sizeof(*qiov));
}

size_t qemu_iovec_to_buf(QEMUIOVector *qiov, size_t offset,
                         void *buf, size_t bytes)
{
    return iov_to_buf(qiov->iov, qiov->niov, offset, buf, bytes);
}

size_t qemu_iovec_from_buf(QEMUIOVector *qiov, size_t offset,
                           const void *buf, size_t bytes)
{
    return iov_from_buf(qiov->iov, qiov->niov, offset, buf, bytes);
}

size_t qemu_iovec_memset(QEMUIOVector *qiov, size_t offset,
                         int fillc, size_t bytes)
{
    return iov_memset(qiov->iov, qiov->niov, offset, fillc, bytes);
}

/*
 * All of @len bytes at @p are zero.  Comparing the buffer with itself
 * shifted by one byte lets memcmp()'s vectorised loop do the work.
 */
static bool buf_is_zero(const char *p, size_t len)
{
    if (len == 0) {
        return true;
    }
    if (p[0] != 0) {
        return false;
    }
    return memcmp(p, p + 1, len - 1) == 0;
}

bool qemu_iovec_is_zero(QEMUIOVector *qiov, size_t offset, size_t bytes)
{
    size_t inner;
    int i;

    assert(offset <= qiov->size && bytes <= qiov->size - offset);

    for (i = iov_seek(qiov->iov, qiov->niov, offset, &inner);
         i < qiov->niov && bytes > 0; i++) {
        size_t len = MIN(qiov->iov[i].iov_len - inner, bytes);

        if (!buf_is_zero((const char *)qiov->iov[i].iov_base + inner, len)) {
            return false;
        }
        bytes -= len;
        inner = 0;
    }
    return true;
}

/* Offset of the first byte where @a and @b differ, or -1 if none does. */
static ssize_t mem_first_diff(const char *a, const char *b, size_t len)
{
    size_t i;

    if (memcmp(a, b, len) == 0) {
        return -1;
    }
    for (i = 0; a[i] == b[i]; i++) {
        /* memcmp() found a difference, so this stops before len. */
    }
    return i;
}

ssize_t qemu_iovec_compare(QEMUIOVector *a, QEMUIOVector *b)
{
    int ia = 0, ib = 0;
    size_t oa = 0, ob = 0;
    size_t pos = 0;

    assert(a->size == b->size);

    /* Walk both vectors at once, one common run of bytes at a time. */
    while (pos < a->size) {
        size_t len;
        ssize_t diff;

        while (oa == a->iov[ia].iov_len) {
            ia++;
            oa = 0;
        }
        while (ob == b->iov[ib].iov_len) {
            ib++;
            ob = 0;
        }
        len = MIN(a->iov[ia].iov_len - oa, b->iov[ib].iov_len - ob);
        diff = mem_first_diff((const char *)a->iov[ia].iov_base + oa,
                              (const char *)b->iov[ib].iov_base + ob, len);
        if (diff >= 0) {
            return pos + diff;
        }
        pos += len;
        oa += len;
        ob += len;
    }
    return -1;
}

bool qemu_iovec_is_aligned(QEMUIOVector *qiov, size_t align)
{
    int i;

    assert(align > 0);
    for (i = 0; i < qiov->niov; i++) {
        if (!QEMU_PTR_IS_ALIGNED(qiov->iov[i].iov_base, align) ||
            !QEMU_IS_ALIGNED(qiov->iov[i].iov_len, align)) {
            return false;
        }
    }
    return true;
}
