/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * QED clusters: what a guest range is (data, zero, unallocated), the
 * validity of offsets, and the allocations in progress.
 *
 * Copyright (c) 2026 The Sluice authors
 */
#include "qemu/osdep.h"

#include "block/qed.h"

bool qed_is_cluster_size_valid(uint64_t cluster_size)
{
    return is_power_of_2(cluster_size) &&
           cluster_size >= QED_MIN_CLUSTER_SIZE &&
           cluster_size <= QED_MAX_CLUSTER_SIZE;
}

bool qed_is_table_size_valid(uint64_t table_size)
{
    return is_power_of_2(table_size) &&
           table_size >= QED_MIN_TABLE_SIZE &&
           table_size <= QED_MAX_TABLE_SIZE;
}

bool qed_is_image_size_valid(uint64_t image_size, uint64_t cluster_size,
                             uint64_t table_size)
{
    return image_size % BDRV_SECTOR_SIZE == 0 &&
           image_size <= qed_max_image_size(cluster_size, table_size);
}

bool qed_check_cluster_offset(BDRVQEDState *s, uint64_t offset,
                              uint64_t file_size)
{
    uint64_t header_end = (uint64_t)s->header.header_size * s->cluster_size;

    return qed_offset_into_cluster(s, offset) == 0 &&
           offset >= header_end && offset < file_size;
}

bool qed_check_table_offset(BDRVQEDState *s, uint64_t offset,
                            uint64_t file_size)
{
    uint64_t last = offset + s->table_bytes - s->cluster_size;

    /*
     * Only a wrap-around is an overflow.  QEMU 7.2 also refuses a last
     * cluster equal to the first, i.e. every one-cluster table, which
     * the specification allows.
     */
    if (last < offset) {
        return false;
    }
    return qed_check_cluster_offset(s, offset, file_size) &&
           qed_check_cluster_offset(s, last, file_size);
}

int coroutine_fn qed_get_table_for(BDRVQEDState *s, uint64_t pos,
                                   QEDTable **t)
{
    uint64_t l2_offset = s->l1_table[qed_l1_index(s, pos)];
    int ret;

    *t = NULL;
    if (!l2_offset) {
        return 0;
    }
    /* Tables appended since open are inside s->file_size too. */
    if (!qed_check_table_offset(s, l2_offset, s->file_size)) {
        return -EINVAL;
    }
    *t = qed_l2_get(s, l2_offset, &ret);
    return ret;
}

static QEDClusterKind qed_entry_kind(uint64_t e)
{
    if (e == 0) {
        return QED_CLUSTER_UNALLOC;
    }
    if (e == QED_ZERO_CLUSTER) {
        return QED_CLUSTER_ZERO;
    }
    return QED_CLUSTER_DATA;
}

int qed_classify(BDRVQEDState *s, QEDTable *t, uint64_t pos, uint64_t *len,
                 uint64_t *file_offset)
{
    uint64_t in_cluster = qed_offset_into_cluster(s, pos);
    uint32_t index = qed_l2_index(s, pos);
    /* Clusters we may look at: to the request's end or the table's. */
    uint64_t want = DIV_ROUND_UP(in_cluster + *len, s->cluster_size);
    uint64_t avail = MIN(want, (uint64_t)(s->table_nelems - index));
    uint64_t n;
    QEDClusterKind kind;
    uint64_t first;

    *file_offset = 0;
    if (!t) {
        n = avail;
        kind = QED_CLUSTER_UNALLOC;
    } else {
        first = t->entries[index];
        kind = qed_entry_kind(first);
        if (kind == QED_CLUSTER_DATA &&
            !qed_check_cluster_offset(s, first, s->file_size)) {
            return -EINVAL;
        }
        for (n = 1; n < avail; n++) {
            uint64_t e = t->entries[index + n];

            if (qed_entry_kind(e) != kind) {
                break;
            }
            if (kind == QED_CLUSTER_DATA &&
                (e != first + n * s->cluster_size ||
                 !qed_check_cluster_offset(s, e, s->file_size))) {
                break;
            }
        }
        if (kind == QED_CLUSTER_DATA) {
            *file_offset = first + in_cluster;
        }
    }
    *len = MIN(*len, n * s->cluster_size - in_cluster);
    return kind;
}

QEDAllocation *qed_find_allocation(BDRVQEDState *s, uint64_t first,
                                   uint64_t end)
{
    QEDAllocation *a, *found = NULL;

    QLIST_FOREACH(a, &s->allocs, next) {
        if (a->first < end && first < a->end &&
            (!found || a->first < found->first)) {
            found = a;
        }
    }
    return found;
}

void qed_allocation_begin(BDRVQEDState *s, QEDAllocation *a,
                          uint64_t first, uint64_t end)
{
    a->first = first;
    a->end = end;
    qemu_co_queue_init(&a->waiters);
    QLIST_INSERT_HEAD(&s->allocs, a, next);
}

void qed_allocation_end(BDRVQEDState *s, QEDAllocation *a)
{
    QLIST_REMOVE(a, next);
    qemu_co_queue_restart_all(&a->waiters);
}
