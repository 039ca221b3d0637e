/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Block layer internals: the node, the edge and the driver interface.
 *
 * Copyright (c) 2026 The Sluice authors
 */
#ifndef BLOCK_BLOCK_INT_H
#define BLOCK_BLOCK_INT_H

#include "block/block.h"
#include "block/graph-lock.h"
#include "qemu/co-lock.h"

/* Limits a driver reports in .bdrv_refresh_limits; 0 means "none". */
typedef struct BlockLimits {
    /* Every request offset and length is a multiple of this (>= 1). */
    uint32_t request_alignment;
    /* Largest request the driver takes in one call. */
    uint64_t max_transfer;
    /* Preferred alignment of write-zeroes and discard requests. */
    uint32_t pwrite_zeroes_alignment;
    uint32_t pdiscard_alignment;
    /* Largest write-zeroes request; a zero buffer is built up to this. */
    uint64_t max_pwrite_zeroes;
} BlockLimits;

struct BlockDriver {
    const char *format_name;
    /* Size of the driver's per-node state, bs->opaque. */
    int instance_size;
    /* A protocol driver opens a file name or connection, not a child. */
    bool is_protocol;

    /*
     * Open @bs with @options (the driver's options; the block layer has
     * taken node-name and driver out).  Returns 0 or a negative errno with
     * @errp set.  Main thread.
     */
    int (*bdrv_open)(BlockDriverState *bs, JsonObject *options, int flags,
                     GError **errp);
    /* Release what bdrv_open set up.  Main thread; the node is drained. */
    void (*bdrv_close)(BlockDriverState *bs);

    /* Fill bs->bl; the block layer has set the defaults.  Main thread. */
    void (*bdrv_refresh_limits)(BlockDriverState *bs, GError **errp);

    /*
     * The I/O callbacks run in coroutines of the node's context, with the
     * request already checked against bounds, aligned to
     * bl.request_alignment and no longer than bl.max_transfer.  They
     * return 0 or a negative errno.
     */
    int coroutine_fn (*bdrv_co_preadv)(BlockDriverState *bs, int64_t offset,
                                       int64_t bytes, QEMUIOVector *qiov,
                                       BdrvRequestFlags flags);
    int coroutine_fn (*bdrv_co_pwritev)(BlockDriverState *bs,
                                        int64_t offset, int64_t bytes,
                                        QEMUIOVector *qiov,
                                        BdrvRequestFlags flags);
    /* Optional; -ENOTSUP makes the block layer write a zero buffer. */
    int coroutine_fn (*bdrv_co_pwrite_zeroes)(BlockDriverState *bs,
                                              int64_t offset, int64_t bytes,
                                              BdrvRequestFlags flags);
    /* Optional; discard is advisory, so missing support is success. */
    int coroutine_fn (*bdrv_co_pdiscard)(BlockDriverState *bs,
                                         int64_t offset, int64_t bytes);
    /* Optional: flush the driver's own caches, then the host's. */
    int coroutine_fn (*bdrv_co_flush_to_os)(BlockDriverState *bs);
    int coroutine_fn (*bdrv_co_flush_to_disk)(BlockDriverState *bs);
    /*
     * Optional.  Without it, a node with a "file" child reports that
     * child's data, others report everything as allocated data.
     */
    int coroutine_fn (*bdrv_co_block_status)(BlockDriverState *bs,
                                             int64_t offset, int64_t bytes,
                                             int64_t *pnum, int64_t *map,
                                             BlockDriverState **file);
    int64_t coroutine_fn (*bdrv_co_getlength)(BlockDriverState *bs);
    /* Optional; without it truncate fails with QEMU's message. */
    int coroutine_fn (*bdrv_co_truncate)(BlockDriverState *bs,
                                         int64_t offset, bool exact,
                                         PreallocMode prealloc,
                                         BdrvRequestFlags flags,
                                         GError **errp);

    /*
     * Move the driver's own context-bound state (fd handlers, timers,
     * engines) from the node's current context / to the new one.  Main
     * thread, both contexts drained.
     */
    void (*bdrv_detach_aio_context)(BlockDriverState *bs);
    void (*bdrv_attach_aio_context)(BlockDriverState *bs,
                                    AioContext *new_ctx);

    /*
     * Permissions.  When the permissions parents hold on this node change,
     * the block layer calls .bdrv_check_perm with the new cumulative
     * @perm (what some parent uses) and @shared (what every parent lets
     * others use); a protocol driver takes its image locks there and may
     * refuse (-errno, @errp set).  Then either .bdrv_set_perm commits or
     * .bdrv_abort_perm_update reverts to the previous state.  Main thread.
     */
    int (*bdrv_check_perm)(BlockDriverState *bs, uint64_t perm,
                           uint64_t shared, GError **errp);
    void (*bdrv_set_perm)(BlockDriverState *bs, uint64_t perm,
                          uint64_t shared);
    void (*bdrv_abort_perm_update)(BlockDriverState *bs);

    /*
     * What this node needs from its child @c (@role) and lets others do
     * there, given what its own parents use (@parent_perm) and share
     * (@parent_shared).  NULL: the defaults of bdrv_default_perms().
     */
    void (*bdrv_child_perm)(BlockDriverState *bs, BdrvChild *c,
                            unsigned int role, uint64_t parent_perm,
                            uint64_t parent_shared, uint64_t *nperm,
                            uint64_t *nshared);

    /*
     * Reopen with @options (the driver's options, as for .bdrv_open) and
     * @flags.  prepare checks and may stash state in *@opaque, then
     * commit applies it or abort drops it.  Without prepare, a reopen
     * that changes any driver option fails.  Main thread, node drained.
     */
    int (*bdrv_reopen_prepare)(BlockDriverState *bs, JsonObject *options,
                               int flags, void **opaque, GError **errp);
    void (*bdrv_reopen_commit)(BlockDriverState *bs, void *opaque);
    void (*bdrv_reopen_abort)(BlockDriverState *bs, void *opaque);

    /*
     * Format probing: how sure the driver is, from the first bytes of an
     * image (@buf, @buf_size of them; @filename may be NULL), that the
     * image is in its format.  0: not at all; raw answers 1, real magic
     * numbers 100.  Any thread.
     */
    int (*bdrv_probe)(const uint8_t *buf, int buf_size,
                      const char *filename);

    /* Options the driver accepts, for the unknown-option check. */
    const char *const *option_names;

    /* The driver has backing files: the generic "backing" option. */
    bool supports_backing;

    /*
     * Image creation: the options (NULL-terminated) and the function.
     * @opts holds parsed values (see BlockOptDesc) and may hold options
     * of the protocol too, which a format passes on with
     * bdrv_co_create_file().  Coroutine in the main context.
     */
    const BlockOptDesc *create_opts;
    int coroutine_fn (*bdrv_co_create_opts)(BlockDriver *drv,
                                            const char *filename,
                                            JsonObject *opts,
                                            GError **errp);

    /* Fill @bdi (zeroed by the caller).  Main context coroutine. */
    int coroutine_fn (*bdrv_co_get_info)(BlockDriverState *bs,
                                         BlockDriverInfo *bdi);
    /* Host bytes used; see bdrv_get_allocated_file_size(). */
    int64_t coroutine_fn (*bdrv_co_get_allocated_file_size)(
        BlockDriverState *bs);

    /* Consistency check and repair; @bs is drained by the caller. */
    int coroutine_fn (*bdrv_co_check)(BlockDriverState *bs,
                                      BdrvCheckResult *res,
                                      BdrvCheckMode fix);

    /* Record a new backing file name and format in the image header. */
    int (*bdrv_change_backing_file)(BlockDriverState *bs,
                                    const char *backing_file,
                                    const char *backing_fmt);

    /*
     * qemu-img measure: space needed for an image of this format with
     * creation options @opts, holding the data of @in_bs (NULL: an empty
     * image of @opts' "size").  NULL with @errp set on error.
     */
    BlockMeasureInfo *(*bdrv_measure)(JsonObject *opts,
                                      BlockDriverState *in_bs,
                                      GError **errp);

    /* qemu-img amend: change creation options of an open image. */
    const BlockOptDesc *amend_opts;
    int coroutine_fn (*bdrv_co_amend)(BlockDriverState *bs,
                                      JsonObject *opts, bool force,
                                      GError **errp);

    QTAILQ_ENTRY(BlockDriver) list;
};

/* How a parent of a child edge describes itself in messages. */
struct BdrvChildClass {
    /* True if the parent is a node (opaque is a BlockDriverState). */
    bool parent_is_bds;
    /* "node 'x'", "block device 'y'": for permission and other errors. */
    char *(*get_parent_desc)(BdrvChild *c);
    /*
     * A non-node parent may refuse to follow its child to another context
     * (NULL: it always may).  Main thread.
     */
    bool (*can_set_aio_context)(BdrvChild *c, AioContext *ctx,
                                GError **errp);
    /*
     * Follow the child to @ctx.  Called in the main thread with both the
     * old and the new context drained.  Non-node parents only.
     */
    void (*set_aio_context)(BdrvChild *c, AioContext *ctx);
};

struct BdrvChild {
    BlockDriverState *bs;       /* the child node */
    char *name;                 /* "file", "backing", "root", ... */
    const BdrvChildClass *klass;
    unsigned int role;          /* BDRV_CHILD_* */
    void *opaque;               /* the parent */
    uint64_t perm;              /* permissions the parent holds */
    uint64_t shared_perm;       /* permissions it lets others hold */
    /* Link in the parent node's children (node parents only). */
    QLIST_ENTRY(BdrvChild) next;
    /* Link in bs->parents. */
    QLIST_ENTRY(BdrvChild) next_parent;
};

/* A request being processed on a node, for serialisation of RMW writes. */
typedef struct BdrvTrackedRequest BdrvTrackedRequest;

struct BlockDriverState {
    BlockDriver *drv;
    void *opaque;               /* driver state, drv->instance_size bytes */

    char node_name[32];
    /*
     * What the node reads: a protocol's file name, set by its driver at
     * open; a format or filter node copies its "file" child's.
     */
    char filename[PATH_MAX];
    /*
     * The backing file recorded in the image, as written there (may be
     * relative), and its format ("" if not recorded).  Set by the driver
     * at open and by bdrv_change_backing_file().
     */
    char backing_file[PATH_MAX];
    char backing_format[16];
    int refcnt;                 /* main thread */
    int open_flags;             /* BDRV_O_* */
    bool read_only;
    /*
     * force-share=on: take no permissions that would conflict with other
     * users, and skip image locking (qemu-img/qemu-io -U).  Read-only only.
     */
    bool force_share;

    /*
     * The context the node lives in.  Changes only while it is drained, in
     * the main thread, so request paths read it without a lock.
     */
    AioContext *aio_context;

    BlockLimits bl;

    /* Graph edges.  Changed in the main thread only. */
    QLIST_HEAD(, BdrvChild) children;
    QLIST_HEAD(, BdrvChild) parents;
    /* The "file" and "backing" children, if any. */
    BdrvChild *file;
    BdrvChild *backing;

    /* Requests of this node in flight; atomic.  For close and tests. */
    unsigned int in_flight;

    /*
     * Drained sections begun through this node and not ended; atomic.
     * Drain itself works on the context; this count only lets a context
     * move carry the node's sections along, so that a caller that drained
     * the node before the move ends the right context afterwards.
     */
    int quiesce_counter;

    /*
     * Requests in flight, so overlapping ones can wait for a
     * read-modify-write in progress.  All requests of a node run in its
     * context's home thread, which is what protects the list.
     */
    QLIST_HEAD(, BdrvTrackedRequest) tracked_requests;
    /* How many of them serialise (do read-modify-write). */
    unsigned int serialising_in_flight;

    /* First error of a write since the last flush, reported by flush. */
    int write_error;

    /* The driver's options as last opened or reopened (main thread). */
    JsonObject *options;

    /* Link in the list of all nodes (main thread). */
    QTAILQ_ENTRY(BlockDriverState) node_list;
};

/*
 * The permissions a node needs on a child and shares there when its
 * driver has no .bdrv_child_perm: data passes its parents' needs through,
 * metadata is read always and written while the node is writable (and
 * then shared with no other writer), a backing file is only read.
 */
void bdrv_default_perms(BlockDriverState *bs, BdrvChild *c,
                        unsigned int role, uint64_t parent_perm,
                        uint64_t parent_shared, uint64_t *nperm,
                        uint64_t *nshared);

/*
 * After linking @child into its node's parents, check and apply the new
 * permissions below it; false with @errp set (and nothing changed) on a
 * conflict: the caller unlinks it again.  Main thread.
 */
bool bdrv_child_attach_perms(BdrvChild *child, GError **errp);

/*
 * Change what the parent of @c holds and shares on its child; false with
 * @errp set (and nothing changed) on a conflict.  Main thread.
 */
bool bdrv_child_try_set_perm(BdrvChild *c, uint64_t perm, uint64_t shared,
                             GError **errp);

/* After unlinking a parent edge of @bs, loosen the permissions below. */
void bdrv_child_detach_perms(BlockDriverState *bs);

/*
 * The format driver that best matches the image starting with @buf, or
 * NULL if none does (no driver with probing is registered).  Any thread.
 */
BlockDriver *bdrv_probe_format(const uint8_t *buf, int buf_size,
                               const char *filename);

/* Account a request of @bs in its node and context counters. */
void bdrv_inc_in_flight(BlockDriverState *bs);
void bdrv_dec_in_flight(BlockDriverState *bs);

/*
 * Count a node visit of a graph walk.  Every loop over children or
 * parents calls it, so bdrv_drain_graph_visits() can prove that drain
 * never walks the graph.
 */
void bdrv_graph_visit(const BlockDriverState *bs);

/*
 * Drain a whole context (what bdrv_drained_begin() does for a node's
 * context).  Same rules as bdrv_drained_begin/end().
 */
void coroutine_mixed_fn bdrv_context_drained_begin(AioContext *ctx);
void coroutine_mixed_fn bdrv_context_drained_end(AioContext *ctx);

/* Bracket code that runs on behalf of a drain, for bdrv_graph_visit(). */
void bdrv_drain_code_enter(void);
void bdrv_drain_code_leave(void);

#endif /* BLOCK_BLOCK_INT_H */
