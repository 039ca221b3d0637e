/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Block exports: a node made available to something outside the process
 * (NBD clients now; vhost-user-blk later) through a BlockBackend of its
 * own.  What block-export-add, block-export-del and query-block-exports
 * work on.
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * An export has a reference count: one reference belongs to its creator
 * (the monitor, sluice-nbd), and each connection of a client holds one.
 * Deleting an export asks its driver to shut it down (new clients are
 * refused, connected ones are dropped in "hard" mode) and drops the
 * creator's reference; the export goes away when the last connection
 * has, and only then is the "deleted" notifier called (QEMU's
 * BLOCK_EXPORT_DELETED event) and its id free for reuse.
 *
 * Everything here runs in the main thread.
 */
#ifndef BLOCK_EXPORT_H
#define BLOCK_EXPORT_H

#include "sysemu/block-backend.h"

typedef enum BlockExportType {
    BLOCK_EXPORT_TYPE_NBD,
    BLOCK_EXPORT_TYPE_VHOST_USER_BLK,
    BLOCK_EXPORT_TYPE_FUSE,
    BLOCK_EXPORT_TYPE__MAX,
} BlockExportType;

typedef enum BlockExportRemoveMode {
    BLOCK_EXPORT_REMOVE_MODE_SAFE,
    BLOCK_EXPORT_REMOVE_MODE_HARD,
} BlockExportRemoveMode;

/* The options of an NBD export (the "nbd" branch of block-export-add). */
typedef struct BlockExportOptionsNbd {
    const char *name;           /* NULL: the node name */
    const char *description;    /* NULL: none */
    bool allocation_depth;      /* offer qemu:allocation-depth */
    /* Dirty bitmaps to offer; none exist in Sluice yet. */
    const char *const *bitmaps;
} BlockExportOptionsNbd;

/* block-export-add's arguments as C values. */
typedef struct BlockExportOptions {
    BlockExportType type;
    const char *id;
    const char *node_name;
    bool writable;
    bool writethrough;          /* the export's write cache is off */
    const char *iothread;       /* NULL: stay in the node's context */
    bool fixed_iothread;        /* fail rather than stay when moving fails */
    BlockExportOptionsNbd nbd;
} BlockExportOptions;

typedef struct BlockExport BlockExport;

/* An export type: the table new kinds of export plug into. */
typedef struct BlockExportDriver {
    BlockExportType type;
    /* Bytes to allocate for the export; the BlockExport comes first. */
    size_t instance_size;
    /*
     * Set up the type's part of @exp from @opts; @exp->blk and
     * @exp->ctx are ready.  false with @errp set (nothing to undo).
     */
    bool (*create)(BlockExport *exp, const BlockExportOptions *opts,
                   GError **errp);
    /*
     * Stop taking new users and disconnect current ones (which drop
     * their references as they go).  Called once.
     */
    void (*request_shutdown)(BlockExport *exp);
    /* True while users (clients) hold references: safe deletion fails. */
    bool (*in_use)(BlockExport *exp);
    /*
     * Move what runs in @old_ctx to @new_ctx; both are drained.
     * Optional: without it, the export cannot change contexts.
     */
    void (*set_aio_context)(BlockExport *exp, AioContext *old_ctx,
                            AioContext *new_ctx);
    /* Free the type's part; the last reference has gone. */
    void (*delete)(BlockExport *exp);
} BlockExportDriver;

struct BlockExport {
    const BlockExportDriver *drv;
    char *id;
    /* The node's name when the export was made (query-block-exports). */
    char *node_name;
    bool writable;
    /* References; the export is freed when the count drops to zero. */
    int refcount;
    /* Set once deletion has begun (query's "shutting-down"). */
    bool shutting_down;
    /* The creator's reference has been dropped. */
    bool user_ref_dropped;
    /* The export's own backend and the context it (and its users) run in. */
    BlockBackend *blk;
    AioContext *ctx;
    QTAILQ_ENTRY(BlockExport) next;
};

/* The name QMP uses for @type ("nbd", "vhost-user-blk", "fuse"). */
const char *blk_exp_type_name(BlockExportType type);

/*
 * Create an export from C options.  Errors are QEMU's: "Block export id
 * 'X' is already in use", "Invalid block export id", "Cannot find
 * device='' nor node-name='X'", "iothread \"X\" not found", the
 * driver's own ("NBD server not running", "NBD server already has
 * export named 'X'", ...).  NULL with @errp set.
 */
BlockExport *blk_exp_add(const BlockExportOptions *opts, GError **errp);

/*
 * block-export-add with its QMP arguments, checked as QEMU's schema
 * checks them ("Parameter 'id' is missing", "Invalid parameter type for
 * 'writable', expected: boolean", "Parameter 'x' is unexpected", ...)
 * before anything happens.  @args is borrowed.
 */
BlockExport *qmp_block_export_add(JsonObject *args, GError **errp);

/*
 * The storage daemon's --export: the same arguments from keyval_parse()
 * ("type=nbd,id=e0,node-name=n0,writable=on"), scalars as strings.
 */
BlockExport *blk_exp_add_options(JsonObject *args, GError **errp);

/*
 * Delete export @id.  Safe mode refuses while clients are connected
 * ("export 'X' still in use"); hard mode disconnects them.  The export
 * may outlive the call (shutting_down) until its connections are gone.
 * Unknown: "Export 'X' is not found".
 */
bool blk_exp_del(const char *id, BlockExportRemoveMode mode, GError **errp);

/* block-export-del with its QMP arguments ({"id", "mode"?}). */
bool qmp_block_export_del(JsonObject *args, GError **errp);

/*
 * query-block-exports: a new array of {"id", "type", "node-name",
 * "shutting-down"}, newest first as QEMU lists them.
 */
JsonArray *qmp_query_block_exports(GError **errp);

/* The export @id (shutting down or not), or NULL. */
BlockExport *blk_exp_find(const char *id);

/* Take / drop a reference; the last one deletes the export. */
void blk_exp_ref(BlockExport *exp);
void blk_exp_unref(BlockExport *exp);

/*
 * Begin deleting @exp (as hard mode does) and drop the creator's
 * reference if it is still held.  Idempotent.
 */
void blk_exp_request_shutdown(BlockExport *exp);

/*
 * Delete every export of @type (every export if @type is
 * BLOCK_EXPORT_TYPE__MAX), hard, and wait until they are gone:
 * nbd-server-stop and process exit.
 */
void blk_exp_close_all_type(BlockExportType type);
void blk_exp_close_all(void);

/* Number of exports that exist, shutting down or not. */
unsigned int blk_exp_count(void);

/*
 * Move @exp and its node (with everything connected to it) to @ctx while
 * its clients keep going: the old and new contexts are drained, requests
 * in flight finish or wait in the backend and continue in @ctx, and no
 * request is lost.  false with @errp set if the node cannot move.
 */
bool blk_exp_set_aio_context(BlockExport *exp, AioContext *ctx,
                             GError **errp);

/*
 * Move @bs (with everything connected to it) to @ctx, drained, and let
 * every export whose backend follows it move its users along.  What
 * x-blockdev-set-iothread should call rather than
 * bdrv_try_change_aio_context(), which knows nothing of exports.  false
 * with @errp set if the node cannot move (nothing changed).
 */
bool blk_exp_change_node_aio_context(BlockDriverState *bs, AioContext *ctx,
                                     GError **errp);

/*
 * Called whenever an export has been freed (QEMU's BLOCK_EXPORT_DELETED
 * event; the monitor sends it).  One notifier; NULL removes it.
 */
typedef void BlockExportDeletedFn(const char *id, void *opaque);
void blk_exp_set_deleted_notifier(BlockExportDeletedFn *fn, void *opaque);

/* For drivers: register @drv for its type (from a constructor). */
void blk_exp_register_driver(const BlockExportDriver *drv);

#endif /* BLOCK_EXPORT_H */
