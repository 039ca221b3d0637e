/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * QED consistency check and repair.
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * Every table and data cluster the L1 and L2 tables reference is marked
 * in a bitmap of the file's clusters.  An entry that points outside the
 * file is an error, cleared when repairing; a cluster referenced twice
 * is an error nobody can repair safely (which copy is right?); a cluster
 * nobody references is a leak, harmless, counted and (as in QEMU 7.2)
 * not reclaimed.  The counts and statistics match QEMU 7.2's, so the
 * tools print the same report (see the corpus, expected/NAME.check).
 */
#include "qemu/osdep.h"

#include "block/qed.h"

typedef struct QEDCheck {
    BDRVQEDState *s;
    BdrvCheckResult *res;
    bool fix;
    uint64_t file_size;
    uint64_t nclusters;
    uint8_t *used;              /* one bit per cluster of the file */
} QEDCheck;

/*
 * Mark @n clusters from @offset used.  Returns how many of them already
 * were: each is a cluster two references share (QEMU counts them one
 * by one, so a table referenced twice is table_size errors).
 */
static unsigned int qed_check_mark(QEDCheck *c, uint64_t offset,
                                   uint64_t n)
{
    uint64_t first = offset >> c->s->cluster_bits;
    unsigned int shared = 0;
    uint64_t i;

    for (i = first; i < first + n && i < c->nclusters; i++) {
        if (c->used[i / 8] & (1u << (i % 8))) {
            shared++;
        }
        c->used[i / 8] |= 1u << (i % 8);
    }
    return shared;
}

/* Check one L2 table's entries; repaired entries are written back. */
static void coroutine_fn qed_check_l2(QEDCheck *c, uint64_t l2_offset,
                                      uint64_t *table)
{
    BDRVQEDState *s = c->s;
    uint64_t last = 0;
    uint32_t lo = UINT32_MAX, hi = 0;
    uint32_t i;
    int ret;

    ret = qed_co_read_table(s, l2_offset, table);
    if (ret < 0) {
        c->res->check_errors++;
        return;
    }
    for (i = 0; i < s->table_nelems; i++) {
        uint64_t e = table[i];

        if (e == 0 || e == QED_ZERO_CLUSTER) {
            continue;
        }
        /* Statistics see every entry, valid or not (as QEMU's do). */
        c->res->bfi.allocated_clusters++;
        if (last && e != last + s->cluster_size) {
            c->res->bfi.fragmented_clusters++;
        }
        last = e;

        if (!qed_check_cluster_offset(s, e, c->file_size)) {
            if (c->fix) {
                table[i] = 0;
                lo = MIN(lo, i);
                hi = MAX(hi, i + 1);
                c->res->corruptions_fixed++;
            } else {
                c->res->corruptions++;
            }
            continue;
        }
        c->res->corruptions += qed_check_mark(c, e, 1);
    }
    if (lo < hi) {
        ret = qed_co_write_table(s, l2_offset, table, lo, hi);
        if (ret < 0) {
            c->res->check_errors++;
        }
    }
}

int coroutine_fn qed_co_check(BDRVQEDState *s, BdrvCheckResult *res,
                              bool fix)
{
    BlockDriverState *bs = s->bs;
    g_autofree uint8_t *used = NULL;
    QEDCheck c = { .s = s, .res = res, .fix = fix && !bs->read_only };
    uint32_t lo = UINT32_MAX, hi = 0;
    unsigned int shared;
    uint64_t *table;
    int64_t len;
    uint32_t i;
    int ret;

    /* The file must hold what the cache knows before it is judged. */
    if (!bs->read_only) {
        ret = qed_co_write_back(s);
        if (ret < 0) {
            return ret;
        }
    }

    len = bdrv_co_getlength(bs->file->bs);
    if (len < 0) {
        return len;
    }
    c.file_size = QEMU_ALIGN_DOWN((uint64_t)len, s->cluster_size);
    c.nclusters = c.file_size >> s->cluster_bits;
    used = g_malloc0(c.nclusters / 8 + 1);
    c.used = used;

    res->bfi.total_clusters = DIV_ROUND_UP(s->header.image_size,
                                           s->cluster_size);
    qed_check_mark(&c, 0, s->header.header_size);
    qed_check_mark(&c, s->header.l1_table_offset, s->header.table_size);

    table = qed_alloc_table(s, false);
    for (i = 0; i < s->table_nelems; i++) {
        uint64_t off = s->l1_table[i];

        if (!off) {
            continue;
        }
        if (!qed_check_table_offset(s, off, c.file_size)) {
            if (c.fix) {
                s->l1_table[i] = 0;
                lo = MIN(lo, i);
                hi = MAX(hi, i + 1);
                res->corruptions_fixed++;
            } else {
                res->corruptions++;
            }
            continue;
        }
        shared = qed_check_mark(&c, off, s->header.table_size);
        if (shared) {
            /* A table shared with other metadata: leave it alone. */
            res->corruptions += shared;
            continue;
        }
        qed_check_l2(&c, off, table);
    }
    free(table);

    if (lo < hi) {
        ret = qed_co_write_table(s, s->header.l1_table_offset, s->l1_table,
                                 lo, hi);
        if (ret < 0) {
            res->check_errors++;
        }
    }

    for (i = 0; i < c.nclusters; i++) {
        if (!(used[i / 8] & (1u << (i % 8)))) {
            res->leaks++;
        }
    }

    /* Tables may have changed under the cache: forget them. */
    qed_l2_cache_clear(s);

    if (c.fix && !res->corruptions && !res->check_errors &&
        (s->header.features & QED_F_NEED_CHECK)) {
        ret = bdrv_co_flush(bs->file->bs);
        if (ret == 0) {
            qemu_co_mutex_lock(&s->header_lock);
            s->header.features &= ~QED_F_NEED_CHECK;
            ret = qed_co_write_header(s);
            if (ret < 0) {
                s->header.features |= QED_F_NEED_CHECK;
            }
            qemu_co_mutex_unlock(&s->header_lock);
        }
        if (ret == 0) {
            ret = bdrv_co_flush(bs->file->bs);
        }
        if (ret < 0) {
            res->check_errors++;
        } else {
            g_mutex_lock(&s->timer_lock);
            s->dirty = false;
            g_mutex_unlock(&s->timer_lock);
        }
    }
    return 0;
}
