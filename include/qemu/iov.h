/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Scatter/gather vectors: helpers on plain struct iovec arrays and
 * QEMUIOVector, the growable vector requests carry.
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * None of these lock; a vector belongs to one request at a time.
 */
#ifndef QEMU_IOV_H
#define QEMU_IOV_H

#include "qemu/osdep.h"

/* Total length of @iov[0..@iov_cnt). */
size_t iov_size(const struct iovec *iov, unsigned int iov_cnt);

/*
 * Copy @bytes from @buf into the vector starting @offset bytes in.
 * Returns the number copied (less if the vector ends first).
 */
size_t iov_from_buf(const struct iovec *iov, unsigned int iov_cnt,
                    size_t offset, const void *buf, size_t bytes);

/* Copy out of the vector into @buf; returns the number copied. */
size_t iov_to_buf(const struct iovec *iov, unsigned int iov_cnt,
                  size_t offset, void *buf, size_t bytes);

/* Fill @bytes from @offset with @fillc; returns the number filled. */
size_t iov_memset(const struct iovec *iov, unsigned int iov_cnt,
                  size_t offset, int fillc, size_t bytes);

typedef struct QEMUIOVector {
    struct iovec *iov;
    int niov;
    /*
     * Allocated entries; -1 for an external array (qemu_iovec_init_external
     * and qemu_iovec_init_buf), which the vector does not own or grow.
     */
    int nalloc;
    size_t size;
    /* Single entry used by qemu_iovec_init_buf(), so it never allocates. */
    struct iovec local_iov;
} QEMUIOVector;

/* An empty growable vector with room for @alloc_hint entries. */
void qemu_iovec_init(QEMUIOVector *qiov, int alloc_hint);

/* Wrap an existing array (not copied, not freed). */
void qemu_iovec_init_external(QEMUIOVector *qiov, struct iovec *iov,
                              int niov);

/* A one-entry vector over @buf, without allocation. */
void qemu_iovec_init_buf(QEMUIOVector *qiov, void *buf, size_t len);

/* Append @len bytes at @base.  Only for vectors from qemu_iovec_init(). */
void qemu_iovec_add(QEMUIOVector *qiov, void *base, size_t len);

/*
 * Append the @bytes of @src that start @soffset bytes in (entries are
 * referenced, not copied).
 */
void qemu_iovec_concat(QEMUIOVector *dst, QEMUIOVector *src,
                       size_t soffset, size_t bytes);

/* Append a byte range of a raw iovec array, like qemu_iovec_concat(). */
size_t qemu_iovec_concat_iov(QEMUIOVector *dst, const struct iovec *src_iov,
                             unsigned int src_cnt, size_t soffset,
                             size_t sbytes);

/*
 * Make @qiov a new growable vector referring to @bytes of @source starting
 * at @offset.  Destroy it with qemu_iovec_destroy().
 */
void qemu_iovec_init_slice(QEMUIOVector *qiov, QEMUIOVector *source,
                           size_t offset, size_t bytes);

/* Forget all entries (keeps the allocation). */
void qemu_iovec_reset(QEMUIOVector *qiov);

/* Free what qemu_iovec_init*() allocated; the vector becomes empty. */
void qemu_iovec_destroy(QEMUIOVector *qiov);

size_t qemu_iovec_to_buf(QEMUIOVector *qiov, size_t offset,
                         void *buf, size_t bytes);
size_t qemu_iovec_from_buf(QEMUIOVector *qiov, size_t offset,
                           const void *buf, size_t bytes);
size_t qemu_iovec_memset(QEMUIOVector *qiov, size_t offset,
                         int fillc, size_t bytes);

/* True if @bytes from @offset are all zero. */
bool qemu_iovec_is_zero(QEMUIOVector *qiov, size_t offset, size_t bytes);

/*
 * Compare two vectors of equal size.  Returns -1 if equal, otherwise the
 * offset of the first differing byte.
 */
ssize_t qemu_iovec_compare(QEMUIOVector *a, QEMUIOVector *b);

/* True if every entry's base and length are multiples of @align. */
bool qemu_iovec_is_aligned(QEMUIOVector *qiov, size_t align);

#endif /* QEMU_IOV_H */
