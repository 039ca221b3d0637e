/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * QED: the format driver's internal interface, shared by qed.c (driver,
 * need-check timer, drain), qed-table.c (L1/L2 tables, L2 cache,
 * metadata write-back), qed-cluster.c (cluster lookup and allocation
 * tracking) and qed-check.c (consistency check and repair).
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * On-disk layout and QEMU 7.2's behaviour: ../shared/docs/qed-format.md.
 * Design (allocation concurrency, write-back metadata, need-check timer
 * and drain): docs/devel/qed.md.
 *
 * Every function here runs in the node's AioContext (its home thread),
 * so the state below needs no locking between coroutines except where a
 * coroutine yields in the middle of an update; the exceptions (the timer
 * and drain state, touched by drain callbacks from any thread) say so.
 */
#ifndef BLOCK_QED_H
#define BLOCK_QED_H

#include "block/block_int.h"
#include "qemu/co-lock.h"
#include "qemu/coroutine.h"

/* "QED\0" read as a little-endian u32. */
#define QED_MAGIC 0x00444551u

/* Incompatible feature bits. */
#define QED_F_BACKING_FILE              UINT64_C(0x01)
#define QED_F_NEED_CHECK                UINT64_C(0x02)
#define QED_F_BACKING_FORMAT_NO_PROBE   UINT64_C(0x04)
#define QED_FEATURE_MASK                UINT64_C(0x07)
/* No compat or autoclear bits are defined. */
#define QED_AUTOCLEAR_FEATURE_MASK      UINT64_C(0)

#define QED_MIN_CLUSTER_SIZE        (4 * 1024)
#define QED_MAX_CLUSTER_SIZE        (64 * 1024 * 1024)
#define QED_DEFAULT_CLUSTER_SIZE    (64 * 1024)
#define QED_MIN_TABLE_SIZE          1
#define QED_MAX_TABLE_SIZE          16
#define QED_DEFAULT_TABLE_SIZE      4

/* Bytes of the fixed header at offset 0. */
#define QED_HEADER_BYTES 64

/* L2 entry of a zero cluster (reads as zeroes, hides the backing file). */
#define QED_ZERO_CLUSTER 1

/* Quiet period after which the need-check bit is cleared (QEMU: 5 s). */
#define QED_NEED_CHECK_TIMEOUT_NS (5 * NANOSECONDS_PER_SECOND)

/* The header in host byte order. */
typedef struct QEDHeader {
    uint32_t magic;
    uint32_t cluster_size;
    uint32_t table_size;
    uint32_t header_size;
    uint64_t features;
    uint64_t compat_features;
    uint64_t autoclear_features;
    uint64_t l1_table_offset;
    uint64_t image_size;
    uint32_t backing_filename_offset;
    uint32_t backing_filename_size;
} QEDHeader;

void qed_header_decode(QEDHeader *h, const uint8_t *buf);
void qed_header_encode(const QEDHeader *h, uint8_t *buf);

/*
 * An L2 table in the cache.  The cache is the authoritative copy: L2
 * updates are made here and written back to the file by
 * qed_co_write_back() (on flush, when too many tables are dirty, on
 * close), never read back from disk while the table is cached.
 */
typedef struct QEDTable {
    uint64_t offset;            /* in the file; the cache key */
    uint64_t *entries;          /* table_nelems entries, host order */
    unsigned int ref;           /* users; unreferenced clean tables may go */

    /* Loaded from disk by the first user; the others wait. */
    bool loading;
    int load_ret;
    CoQueue load_waiters;

    /* Written to the file at least once (false for a new table). */
    bool on_disk;
    /* Entries [dirty_lo, dirty_hi) differ from the file. */
    uint32_t dirty_lo, dirty_hi;
    /* Dirty, or clean with a write-back still running. */
    bool in_dirty_list;
    QTAILQ_ENTRY(QEDTable) dirty_link;
    /* Orders the write-backs of this table (each sees the one before). */
    CoMutex write_lock;

    /* In the LRU list: unreferenced, loaded and clean. */
    bool in_lru;
    QTAILQ_ENTRY(QEDTable) lru_link;
} QEDTable;

/*
 * An allocation in progress: guest clusters [first, end) are being
 * given file space and their data written.  Their L2 entries are set
 * only when the data is in the file; until then anybody else who wants
 * to change these clusters waits on @waiters and looks again.
 */
typedef struct QEDAllocation {
    uint64_t first;
    uint64_t end;
    CoQueue waiters;
    QLIST_ENTRY(QEDAllocation) next;
} QEDAllocation;

/* What a guest range is in the image. */
typedef enum QEDClusterKind {
    QED_CLUSTER_DATA,           /* allocated, at a file offset */
    QED_CLUSTER_ZERO,           /* zero clusters */
    QED_CLUSTER_UNALLOC,        /* unallocated: the backing file shows */
} QEDClusterKind;

typedef struct BDRVQEDState {
    BlockDriverState *bs;
    QEDHeader header;           /* as on disk (features follow it) */

    /* Geometry, derived from the header. */
    uint32_t cluster_bits;
    uint64_t cluster_size;
    uint32_t table_nelems;
    uint32_t l2_bits;           /* log2(table_nelems) */
    uint64_t table_bytes;       /* table_size * cluster_size */

    /*
     * End of the space handed out: new clusters are appended here.  Set
     * at open to the file length rounded down to whole clusters (as
     * QEMU does), then only grows, synchronously, so two allocations
     * never get the same space.
     */
    uint64_t file_size;

    /*
     * New clusters get only the bytes that are not zeroes written (the
     * data, and copy-on-write data from a backing file): the rest stays
     * a hole of the file, which reads as zeroes.  Before an L2 entry
     * that points at such a cluster goes to the file, the file is made
     * long enough to hold the whole cluster, so no entry ever points
     * past the end of the file.  data_end: end of the last cluster an
     * entry points at (in memory); file_covered: the file is known to
     * be at least this long.  Below garbage_end (the length at open)
     * there may be bytes of a cluster a crash left half-written, so a
     * cluster allocated there is written whole.
     */
    uint64_t data_end;
    uint64_t file_covered;
    uint64_t garbage_end;
    /*
     * While the file is being extended no space is handed out: the new
     * length is the end of the space handed out so far, and a write to
     * space handed out later could otherwise land beyond it before the
     * truncate runs (and be cut off by it).
     */
    bool extending;
    CoQueue extend_waiters;

    /* The L1 table, in host order; always in memory. */
    uint64_t *l1_table;
    uint32_t l1_dirty_lo, l1_dirty_hi;
    CoMutex l1_write_lock;

    /* The L2 cache: offset -> QEDTable. */
    GHashTable *l2_cache;
    unsigned int l2_count;
    unsigned int l2_max;
    QTAILQ_HEAD(, QEDTable) l2_lru;
    QTAILQ_HEAD(, QEDTable) l2_dirty;
    unsigned int l2_dirty_count;

    /* Allocations in progress (see QEDAllocation). */
    QLIST_HEAD(, QEDAllocation) allocs;

    /*
     * The allocation gate.  Requests that change metadata hold it
     * (alloc_holders); clearing the need-check bit closes it
     * (clearing) and waits for the holders to leave, so that the bit is
     * never clear on disk while metadata may be written.
     */
    unsigned int alloc_holders;
    bool clearing;
    CoQueue gate_waiters;       /* requests waiting for the gate to open */
    CoQueue clear_waiters;      /* the clearer waiting for holders */
    CoMutex header_lock;        /* header updates (need-check set/clear) */
    int64_t last_alloc_ns;

    /*
     * The need-check timer and the drain handler.  Drain callbacks run
     * in whichever thread drains, so this part is under timer_lock.
     * timer_ref: the armed timer holds one in-flight reference of the
     * timer's context (tag "qed-need-check"); the clearing coroutine
     * inherits it (clear_running) and drops it when done.
     */
    GMutex timer_lock;
    QEMUTimer *timer;
    AioContext *timer_ctx;
    AioDrainHandler *drain_handler;
    bool timer_ref;
    bool clear_running;
    int quiesce;                /* drained sections our handler is in */
    bool closing;
    bool dirty;                 /* need-check bit set on disk */

    /* Read-only zeroes for copy-on-write padding, cluster_size bytes. */
    void *zero_buf;
} BDRVQEDState;

/* ---- Geometry helpers ---- */

static inline uint64_t qed_offset_into_cluster(BDRVQEDState *s,
                                               uint64_t offset)
{
    return offset & (s->cluster_size - 1);
}

static inline uint64_t qed_start_of_cluster(BDRVQEDState *s,
                                            uint64_t offset)
{
    return offset & ~(s->cluster_size - 1);
}

static inline uint64_t qed_l1_index(BDRVQEDState *s, uint64_t pos)
{
    return pos >> (s->cluster_bits + s->l2_bits);
}

static inline uint32_t qed_l2_index(BDRVQEDState *s, uint64_t pos)
{
    return (pos >> s->cluster_bits) & (s->table_nelems - 1);
}

/* Largest image: N * N * cluster_size, wrapping as QEMU computes it. */
static inline uint64_t qed_max_image_size(uint64_t cluster_size,
                                          uint64_t table_size)
{
    uint64_t n = table_size * cluster_size / sizeof(uint64_t);

    return n * n * cluster_size;
}

bool qed_is_cluster_size_valid(uint64_t cluster_size);
bool qed_is_table_size_valid(uint64_t table_size);
bool qed_is_image_size_valid(uint64_t image_size, uint64_t cluster_size,
                             uint64_t table_size);

/*
 * A cluster offset is usable if cluster-aligned, past the header area
 * and inside the file (s->file_size at open); a table if all its
 * clusters are.  Sluice accepts one-cluster tables, which QEMU 7.2
 * refuses (see docs/devel/qed.md).
 */
bool qed_check_cluster_offset(BDRVQEDState *s, uint64_t offset,
                              uint64_t file_size);
bool qed_check_table_offset(BDRVQEDState *s, uint64_t offset,
                            uint64_t file_size);

/* ---- qed-table.c ---- */

/* Allocate a table buffer (aligned for O_DIRECT), zeroed or not. */
uint64_t *qed_alloc_table(BDRVQEDState *s, bool zero);

void qed_l2_cache_init(BDRVQEDState *s);
/* Drop every cached table; they must be clean and unreferenced. */
void qed_l2_cache_clear(BDRVQEDState *s);

/* Read the L1 table from the file. */
int coroutine_fn qed_co_read_l1(BDRVQEDState *s);

/*
 * The L2 table at @offset, referenced: from the cache, or read from the
 * file (concurrent users of the same table wait for one read).  NULL
 * and *@ret < 0 on a read error.
 */
QEDTable *coroutine_fn qed_l2_get(BDRVQEDState *s, uint64_t offset,
                                  int *ret);

/*
 * A new, all-unallocated L2 table at @offset (space already reserved),
 * referenced and dirty.  Never yields.
 */
QEDTable *qed_l2_new(BDRVQEDState *s, uint64_t offset);

void qed_l2_unref(BDRVQEDState *s, QEDTable *t);

/* Set entries [index, index + n) to @value, @value + step, ... */
void qed_l2_set(BDRVQEDState *s, QEDTable *t, uint32_t index, uint32_t n,
                uint64_t value, uint64_t step);

/* Point L1 entry @index at @offset (in memory; written back later). */
void qed_l1_set(BDRVQEDState *s, uint64_t index, uint64_t offset);

/*
 * Write every dirty L2 table, then the L1 entries whose tables are in
 * the file, without flushing the file.  On return, every metadata change
 * made before the call is in the file (or the error is returned).
 */
int coroutine_fn qed_co_write_back(BDRVQEDState *s);

/* True if some metadata is not yet in the file. */
bool qed_metadata_dirty(BDRVQEDState *s);

/*
 * Read / write a whole L2 table directly, bypassing the cache (check).
 * The write copies entries [lo, hi) (widened to the file's alignment)
 * before it first yields: the file gets the table as it was at the call.
 */
int coroutine_fn qed_co_read_table(BDRVQEDState *s, uint64_t offset,
                                   uint64_t *table);
int coroutine_fn qed_co_write_table(BDRVQEDState *s, uint64_t offset,
                                    const uint64_t *table, uint32_t lo,
                                    uint32_t hi);

/* ---- qed-cluster.c ---- */

/*
 * What [pos, pos + *len) is, as far as it is the same: the run is cut
 * at the end of the L2 table, where the kind changes, and for data where
 * the file clusters stop being contiguous.  @t is the L2 table of pos
 * (NULL if the L1 entry is 0).  Sets *@len to the run's length and, for
 * data, *@file_offset to where pos is in the file.  -EINVAL if the
 * first entry points outside the file.  Never yields.
 */
int qed_classify(BDRVQEDState *s, QEDTable *t, uint64_t pos, uint64_t *len,
                 uint64_t *file_offset);

/*
 * The L2 table covering @pos, referenced (NULL with 0 if the L1 entry is
 * 0), or a negative errno (-EINVAL if the L1 entry is invalid).
 */
int coroutine_fn qed_get_table_for(BDRVQEDState *s, uint64_t pos,
                                   QEDTable **t);

/*
 * The first allocation in progress that overlaps guest clusters
 * [first, end), or NULL.
 */
QEDAllocation *qed_find_allocation(BDRVQEDState *s, uint64_t first,
                                   uint64_t end);
void qed_allocation_begin(BDRVQEDState *s, QEDAllocation *a,
                          uint64_t first, uint64_t end);
void qed_allocation_end(BDRVQEDState *s, QEDAllocation *a);

/* ---- qed-check.c ---- */

/*
 * Check the image and repair (with any @fix) what can be: entries that
 * point outside the file are cleared.  Leaks are counted, not reclaimed,
 * as in QEMU 7.2.  Clears the need-check bit if nothing is left broken
 * and the image is writable.  The node must be drained (or be opening).
 */
int coroutine_fn qed_co_check(BDRVQEDState *s, BdrvCheckResult *res,
                              bool fix);

/* ---- qed.c ---- */

/* Write the header (the first QED_HEADER_BYTES) from s->header. */
int coroutine_fn qed_co_write_header(BDRVQEDState *s);

/* The in-flight tag of the timer and the header update it starts. */
AioInFlightTag qed_need_check_tag(void);

/*
 * Test hooks.  The quiet period before the need-check bit is cleared
 * (default QED_NEED_CHECK_TIMEOUT_NS), so tests need not wait 5 s; and
 * what the driver is doing, for assertions.
 */
void qed_set_need_check_timeout_ns(int64_t ns);

typedef struct QEDDebugState {
    bool need_check;            /* the bit as last written */
    bool timer_pending;         /* armed, holding an in-flight reference */
    bool clear_running;         /* the clearing coroutine runs */
    AioContext *timer_ctx;      /* context the timer belongs to */
    AioContext *handler_ctx;    /* context the drain handler is in */
    bool metadata_dirty;
    unsigned int l2_cached;
    unsigned int allocs_in_progress;
} QEDDebugState;

/*
 * Snapshot of @bs's QED state; false if @bs is not a QED node.  The
 * timer and drain fields are read under their lock; the others are the
 * home thread's, so read them from there (or while the node is idle).
 */
bool qed_debug_state(BlockDriverState *bs, QEDDebugState *st);

#endif /* BLOCK_QED_H */
