/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * QED tables: the L1 table, the L2 cache and the write-back of metadata.
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * L2 updates are write-back: an allocating write sets its entries in the
 * cached table once its data is in the file, and the table reaches the
 * file at the next flush (or when too many tables are dirty, or at
 * close).  That is the format's contract with the guest: a write is
 * durable once flushed; until then the need-check bit, set before any
 * metadata is written, makes a crash end in a check that repairs
 * whatever was half-written.  docs/devel/qed.md explains the ordering.
 */
#include "qemu/osdep.h"

#include "block/blkdebug.h"
#include "block/qed.h"

/* Budget for clean cached L2 tables, and the dirty backlog limit. */
#define QED_L2_CACHE_BYTES (32 * 1024 * 1024)
#define QED_L2_CACHE_MIN_TABLES 4

uint64_t *qed_alloc_table(BDRVQEDState *s, bool zero)
{
    void *p = NULL;

    /* O_DIRECT wants aligned buffers; 4 KiB suits every host. */
    if (posix_memalign(&p, 4096, s->table_bytes)) {
        g_error("qed: cannot allocate a %" PRIu64 "-byte table",
                s->table_bytes);
    }
    if (zero) {
        memset(p, 0, s->table_bytes);
    }
    return p;
}

static void qed_table_free(QEDTable *t)
{
    free(t->entries);
    g_free(t);
}

void qed_l2_cache_init(BDRVQEDState *s)
{
    s->l2_cache = g_hash_table_new(g_int64_hash, g_int64_equal);
    QTAILQ_INIT(&s->l2_lru);
    QTAILQ_INIT(&s->l2_dirty);
    s->l2_count = 0;
    s->l2_dirty_count = 0;
    s->l2_max = MAX(QED_L2_CACHE_MIN_TABLES,
                    QED_L2_CACHE_BYTES / s->table_bytes);
}

void qed_l2_cache_clear(BDRVQEDState *s)
{
    QEDTable *t, *next;

    if (!s->l2_cache) {
        return;
    }
    QTAILQ_FOREACH_SAFE(t, &s->l2_lru, lru_link, next) {
        assert(t->ref == 0 && !t->in_dirty_list);
        QTAILQ_REMOVE(&s->l2_lru, t, lru_link);
        g_hash_table_remove(s->l2_cache, &t->offset);
        s->l2_count--;
        qed_table_free(t);
    }
    assert(s->l2_count == 0);
    assert(g_hash_table_size(s->l2_cache) == 0);
}

/* Drop least recently used clean tables until the cache fits. */
static void qed_l2_evict(BDRVQEDState *s)
{
    while (s->l2_count > s->l2_max && !QTAILQ_EMPTY(&s->l2_lru)) {
        QEDTable *t = QTAILQ_FIRST(&s->l2_lru);

        QTAILQ_REMOVE(&s->l2_lru, t, lru_link);
        t->in_lru = false;
        g_hash_table_remove(s->l2_cache, &t->offset);
        s->l2_count--;
        qed_table_free(t);
    }
}

static QEDTable *qed_table_new(BDRVQEDState *s, uint64_t offset, bool zero)
{
    QEDTable *t = g_new0(QEDTable, 1);

    t->offset = offset;
    t->entries = qed_alloc_table(s, zero);
    t->ref = 1;
    qemu_co_queue_init(&t->load_waiters);
    qemu_co_mutex_init(&t->write_lock);
    t->dirty_lo = t->dirty_hi = 0;
    g_hash_table_insert(s->l2_cache, &t->offset, t);
    s->l2_count++;
    return t;
}

void qed_l2_unref(BDRVQEDState *s, QEDTable *t)
{
    assert(t->ref > 0);
    if (--t->ref > 0) {
        return;
    }
    if (t->load_ret < 0) {
        /* A failed load: already out of the cache. */
        qed_table_free(t);
        return;
    }
    if (!t->in_dirty_list) {
        QTAILQ_INSERT_TAIL(&s->l2_lru, t, lru_link);
        t->in_lru = true;
        qed_l2_evict(s);
    }
}

static void qed_table_to_le(uint64_t *dst, const uint64_t *src, uint32_t n)
{
    uint32_t i;

    for (i = 0; i < n; i++) {
        dst[i] = GUINT64_TO_LE(src[i]);
    }
}

static void qed_table_from_le(uint64_t *t, uint32_t n)
{
    uint32_t i;

    for (i = 0; i < n; i++) {
        t[i] = GUINT64_FROM_LE(t[i]);
    }
}

int coroutine_fn qed_co_read_table(BDRVQEDState *s, uint64_t offset,
                                   uint64_t *table)
{
    QEMUIOVector qiov;
    int ret;

    qemu_iovec_init_buf(&qiov, table, s->table_bytes);
    ret = bdrv_co_preadv(s->bs->file, offset, s->table_bytes, &qiov, 0);
    if (ret < 0) {
        return ret;
    }
    qed_table_from_le(table, s->table_nelems);
    return 0;
}

/*
 * The part of a table of entries [lo, hi) to write: whole blocks of
 * the file's request alignment (at least a sector), so the write needs
 * no read-modify-write below us.
 */
static void qed_table_write_range(BDRVQEDState *s, uint32_t lo, uint32_t hi,
                                  uint64_t *start, uint64_t *len)
{
    uint64_t align = MAX(BDRV_SECTOR_SIZE,
                         s->bs->file->bs->bl.request_alignment);
    uint64_t a = QEMU_ALIGN_DOWN((uint64_t)lo * sizeof(uint64_t), align);
    uint64_t b = QEMU_ALIGN_UP((uint64_t)hi * sizeof(uint64_t), align);

    *start = a;
    *len = MIN(b, s->table_bytes) - a;
}

int coroutine_fn qed_co_write_table(BDRVQEDState *s, uint64_t offset,
                                    const uint64_t *table, uint32_t lo,
                                    uint32_t hi)
{
    uint64_t start, len;
    uint64_t *buf;
    QEMUIOVector qiov;
    int ret;

    qed_table_write_range(s, lo, hi, &start, &len);
    /*
     * A copy: the table may change while the write is in flight, and
     * the file must get one consistent snapshot of it.  Aligned for
     * O_DIRECT.
     */
    if (posix_memalign((void **)&buf, 4096, len)) {
        return -ENOMEM;
    }
    qed_table_to_le(buf, table + start / sizeof(uint64_t),
                    len / sizeof(uint64_t));
    qemu_iovec_init_buf(&qiov, buf, len);
    ret = bdrv_co_pwritev(s->bs->file, offset + start, len, &qiov, 0);
    free(buf);
    return ret;
}

int coroutine_fn qed_co_read_l1(BDRVQEDState *s)
{
    return qed_co_read_table(s, s->header.l1_table_offset, s->l1_table);
}

QEDTable *coroutine_fn qed_l2_get(BDRVQEDState *s, uint64_t offset,
                                  int *ret)
{
    QEDTable *t = g_hash_table_lookup(s->l2_cache, &offset);

    if (t) {
        t->ref++;
        if (t->in_lru) {
            QTAILQ_REMOVE(&s->l2_lru, t, lru_link);
            t->in_lru = false;
        }
        while (t->loading) {
            qemu_co_queue_wait(&t->load_waiters, NULL);
        }
        if (t->load_ret < 0) {
            *ret = t->load_ret;
            qed_l2_unref(s, t);
            return NULL;
        }
        *ret = 0;
        return t;
    }

    t = qed_table_new(s, offset, false);
    t->loading = true;
    t->on_disk = true;
    BLKDBG_EVENT(s->bs->file, BLKDBG_L2_LOAD);
    *ret = qed_co_read_table(s, offset, t->entries);
    t->loading = false;
    if (*ret < 0) {
        /* Out of the cache at once, so the next user tries again. */
        t->load_ret = *ret;
        g_hash_table_remove(s->l2_cache, &t->offset);
        s->l2_count--;
        qemu_co_queue_restart_all(&t->load_waiters);
        qed_l2_unref(s, t);
        return NULL;
    }
    qemu_co_queue_restart_all(&t->load_waiters);
    return t;
}

static void qed_l2_mark_dirty(BDRVQEDState *s, QEDTable *t, uint32_t lo,
                              uint32_t hi)
{
    if (t->dirty_lo >= t->dirty_hi) {
        t->dirty_lo = lo;
        t->dirty_hi = hi;
    } else {
        t->dirty_lo = MIN(t->dirty_lo, lo);
        t->dirty_hi = MAX(t->dirty_hi, hi);
    }
    if (!t->in_dirty_list) {
        QTAILQ_INSERT_TAIL(&s->l2_dirty, t, dirty_link);
        t->in_dirty_list = true;
        s->l2_dirty_count++;
    }
}

QEDTable *qed_l2_new(BDRVQEDState *s, uint64_t offset)
{
    QEDTable *t;

    assert(!g_hash_table_lookup(s->l2_cache, &offset));
    t = qed_table_new(s, offset, true);
    t->on_disk = false;
    qed_l2_mark_dirty(s, t, 0, s->table_nelems);
    return t;
}

void qed_l2_set(BDRVQEDState *s, QEDTable *t, uint32_t index, uint32_t n,
                uint64_t value, uint64_t step)
{
    uint32_t i;

    assert(index + n <= s->table_nelems);
    for (i = 0; i < n; i++) {
        t->entries[index + i] = value + i * step;
    }
    qed_l2_mark_dirty(s, t, index, index + n);
}

void qed_l1_set(BDRVQEDState *s, uint64_t index, uint64_t offset)
{
    assert(index < s->table_nelems);
    s->l1_table[index] = offset;
    if (s->l1_dirty_lo >= s->l1_dirty_hi) {
        s->l1_dirty_lo = index;
        s->l1_dirty_hi = index + 1;
    } else {
        s->l1_dirty_lo = MIN(s->l1_dirty_lo, index);
        s->l1_dirty_hi = MAX(s->l1_dirty_hi, index + 1);
    }
}

bool qed_metadata_dirty(BDRVQEDState *s)
{
    return s->l2_dirty_count > 0 || s->l1_dirty_lo < s->l1_dirty_hi;
}

/*
 * Make the file long enough for every cluster an entry points at
 * (s->data_end), and return without yielding after having seen that it
 * is: the caller's next step, a table snapshot, must not contain an
 * entry for a cluster handed out after the file was extended, because
 * such a cluster's data may stop short of its end (zero padding is a
 * hole), and the file could then end inside a cluster the file's table
 * points at.  No space is handed out while the truncate runs, so one
 * extension covers everything handed out before it.
 */
static int coroutine_fn qed_co_cover_data(BDRVQEDState *s)
{
    for (;;) {
        uint64_t end;
        int64_t len;
        int ret;

        if (s->extending) {
            qemu_co_queue_wait(&s->extend_waiters, NULL);
            continue;
        }
        if (s->data_end <= s->file_covered) {
            return 0;
        }

        end = s->file_size;
        s->extending = true;
        len = bdrv_co_getlength(s->bs->file->bs);
        ret = len < 0 ? len : 0;
        if (ret == 0 && (uint64_t)len < end) {
            ret = bdrv_co_truncate(s->bs->file, end, false,
                                   PREALLOC_MODE_OFF, 0, NULL);
        }
        if (ret == 0) {
            s->file_covered = MAX(s->file_covered, end);
        }
        s->extending = false;
        qemu_co_queue_restart_all(&s->extend_waiters);
        if (ret < 0) {
            return ret;
        }
    }
}

/* Write back one L2 table, after any write-back of it already running. */
static int coroutine_fn qed_l2_write_back(BDRVQEDState *s, QEDTable *t)
{
    uint32_t lo, hi;
    int ret = 0;

    qemu_co_mutex_lock(&t->write_lock);
    if (t->dirty_lo < t->dirty_hi) {
        BLKDBG_EVENT(s->bs->file, BLKDBG_L2_UPDATE);
        /*
         * Allocations complete while we yield (here, or writing the
         * tables before this one): cover their clusters now, right
         * before the snapshot, not once for the whole write-back.
         */
        ret = qed_co_cover_data(s);
    }
    if (ret == 0 && t->dirty_lo < t->dirty_hi) {
        /* No yield from the coverage check to the snapshot. */
        lo = t->on_disk ? t->dirty_lo : 0;
        hi = t->on_disk ? t->dirty_hi : s->table_nelems;
        t->dirty_lo = t->dirty_hi = 0;
        ret = qed_co_write_table(s, t->offset, t->entries, lo, hi);
        if (ret < 0) {
            /* Still to be written; the caller reports the error. */
            qed_l2_mark_dirty(s, t, lo, hi);
        } else {
            t->on_disk = true;
        }
    }
    /*
     * Leave the dirty list only now that the write is done: a flush that
     * started while it ran found the table listed and waited for it.
     */
    if (t->dirty_lo >= t->dirty_hi && t->in_dirty_list) {
        QTAILQ_REMOVE(&s->l2_dirty, t, dirty_link);
        t->in_dirty_list = false;
        s->l2_dirty_count--;
    }
    qemu_co_mutex_unlock(&t->write_lock);
    return ret;
}

/*
 * Write back the dirty L1 entries.  An entry whose L2 table has not
 * reached the file yet is written as 0 (what the file has there already:
 * tables are only created for empty entries) and stays dirty, so the
 * file never points at a table it does not hold.
 */
static int coroutine_fn qed_l1_write_back(BDRVQEDState *s)
{
    uint32_t lo, hi, i;
    uint32_t keep_lo = UINT32_MAX, keep_hi = 0;
    uint64_t *copy;
    int ret = 0;

    qemu_co_mutex_lock(&s->l1_write_lock);
    if (s->l1_dirty_lo >= s->l1_dirty_hi) {
        qemu_co_mutex_unlock(&s->l1_write_lock);
        return 0;
    }
    lo = s->l1_dirty_lo;
    hi = s->l1_dirty_hi;
    s->l1_dirty_lo = s->l1_dirty_hi = 0;

    copy = qed_alloc_table(s, false);
    memcpy(copy, s->l1_table, s->table_bytes);
    for (i = lo; i < hi; i++) {
        QEDTable *t;

        if (!copy[i]) {
            continue;
        }
        t = g_hash_table_lookup(s->l2_cache, &copy[i]);
        if (t && !t->on_disk) {
            copy[i] = 0;
            keep_lo = MIN(keep_lo, i);
            keep_hi = MAX(keep_hi, i + 1);
        }
    }
    BLKDBG_EVENT(s->bs->file, BLKDBG_L1_UPDATE);
    ret = qed_co_write_table(s, s->header.l1_table_offset, copy, lo, hi);
    free(copy);
    if (ret < 0) {
        keep_lo = MIN(keep_lo, lo);
        keep_hi = MAX(keep_hi, hi);
    }
    if (keep_lo < keep_hi) {
        if (s->l1_dirty_lo >= s->l1_dirty_hi) {
            s->l1_dirty_lo = keep_lo;
            s->l1_dirty_hi = keep_hi;
        } else {
            s->l1_dirty_lo = MIN(s->l1_dirty_lo, keep_lo);
            s->l1_dirty_hi = MAX(s->l1_dirty_hi, keep_hi);
        }
    }
    qemu_co_mutex_unlock(&s->l1_write_lock);
    return ret;
}

int coroutine_fn qed_co_write_back(BDRVQEDState *s)
{
    g_autoptr(GPtrArray) tables = NULL;
    QEDTable *t;
    int ret = 0;
    guint i;

    if (!qed_metadata_dirty(s)) {
        /* Every table write covered the clusters its entries point at. */
        assert(s->data_end <= s->file_covered);
        return 0;
    }

    /*
     * The tables listed now, referenced so none goes away while we
     * yield; tables dirtied later are the next write-back's.  Each one
     * makes the file cover its entries' clusters first.
     */
    tables = g_ptr_array_sized_new(s->l2_dirty_count);
    QTAILQ_FOREACH(t, &s->l2_dirty, dirty_link) {
        t->ref++;
        g_ptr_array_add(tables, t);
    }
    for (i = 0; i < tables->len; i++) {
        int r;

        t = g_ptr_array_index(tables, i);
        r = qed_l2_write_back(s, t);
        if (r < 0 && ret == 0) {
            ret = r;
        }
        qed_l2_unref(s, t);
    }

    /* L1 last: it may only point at tables the file holds. */
    {
        int r = qed_l1_write_back(s);

        if (r < 0 && ret == 0) {
            ret = r;
        }
    }
    return ret;
}
