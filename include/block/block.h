/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The block layer's public interface: nodes, their I/O and drain.
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * A node (BlockDriverState) lives in one AioContext.  Graph changes
 * (creating, attaching, deleting nodes) happen in the main thread.  I/O
 * runs in coroutines of the node's context, entered through a BdrvChild
 * (the edge from a parent) so the parent's permissions apply.
 */
#ifndef BLOCK_BLOCK_H
#define BLOCK_BLOCK_H

#include "block/aio.h"
#include "qemu/iov.h"

#include <json-glib/json-glib.h>

typedef struct BlockDriver BlockDriver;
typedef struct BlockDriverState BlockDriverState;
typedef struct BdrvChild BdrvChild;
typedef struct BdrvChildClass BdrvChildClass;

/* Node lengths are multiples of this, as in QEMU. */
#define BDRV_SECTOR_SIZE 512

/* Largest offset + length a request may reach (as QEMU: 2^63 - 2^31). */
#define BDRV_MAX_LENGTH (INT64_MAX - INT32_MAX)

/* Largest single request; bigger ones are the caller's to split. */
#define BDRV_REQUEST_MAX_BYTES (INT32_MAX & ~(int64_t)4095)

typedef enum BdrvRequestFlags {
    BDRV_REQ_FUA            = 0x1,  /* write through to stable storage */
    BDRV_REQ_MAY_UNMAP      = 0x2,  /* write zeroes may deallocate */
    BDRV_REQ_NO_FALLBACK    = 0x4,  /* write zeroes: fail if not cheap */
    BDRV_REQ_ZERO_WRITE     = 0x8,  /* internal: a write-zeroes request */
} BdrvRequestFlags;

/* How truncate (growing) allocates the new area. */
typedef enum PreallocMode {
    PREALLOC_MODE_OFF,
    PREALLOC_MODE_METADATA,
    PREALLOC_MODE_FALLOC,
    PREALLOC_MODE_FULL,
} PreallocMode;

/*
 * Open flags.  The generic options of every node (QEMU's names) set
 * them: read-only (no BDRV_O_RDWR), cache.direct (BDRV_O_NOCACHE),
 * cache.no-flush (BDRV_O_NO_FLUSH), discard=unmap (BDRV_O_UNMAP).
 */
#define BDRV_O_RDWR         0x0002
#define BDRV_O_NOCACHE      0x0020  /* O_DIRECT: bypass the host cache */
#define BDRV_O_NO_FLUSH     0x0200  /* flushes are no-ops (cache=unsafe) */
#define BDRV_O_UNMAP        0x4000  /* discard requests reach the host */
#define BDRV_O_FORCE_SHARE  0x10000 /* force-share=on (read-only only) */
#define BDRV_O_RESIZE       0x20000 /* the user will resize (a backend) */
#define BDRV_O_PROBED       0x40000 /* the format was probed, not given */
#define BDRV_O_NO_BACKING   0x80000 /* do not open the backing file */
#define BDRV_O_NO_SHARE     0x100000 /* a backend shares no write/resize */
#define BDRV_O_AUTO_RDONLY  0x200000 /* auto-read-only=on */
#define BDRV_O_CHECK        0x400000 /* opened to be checked: no auto repair */

/* Permissions a parent takes on, or shares of, a child node. */
enum {
    BLK_PERM_CONSISTENT_READ    = 0x01,
    BLK_PERM_WRITE              = 0x02,
    BLK_PERM_WRITE_UNCHANGED    = 0x04,
    BLK_PERM_RESIZE             = 0x08,
    BLK_PERM_GRAPH_MOD          = 0x10,
    BLK_PERM_ALL                = 0x1f,
};

/* What a child is to its parent. */
enum {
    BDRV_CHILD_DATA         = 0x01,
    BDRV_CHILD_METADATA     = 0x02,
    BDRV_CHILD_FILTERED     = 0x04,
    BDRV_CHILD_COW          = 0x08,
    BDRV_CHILD_PRIMARY      = 0x10,
    BDRV_CHILD_IMAGE        = BDRV_CHILD_DATA | BDRV_CHILD_METADATA,
};

/* ---- Block status ---- */

#define BDRV_BLOCK_DATA         0x01    /* reads return data from here */
#define BDRV_BLOCK_ZERO         0x02    /* reads return zeroes */
#define BDRV_BLOCK_OFFSET_VALID 0x04    /* *map is valid */
#define BDRV_BLOCK_ALLOCATED    0x10    /* this layer provides the content */
#define BDRV_BLOCK_EOF          0x20    /* the range ends at end of file */

/* ---- Nodes ---- */

/*
 * Open a node of driver @drv named @node_name (NULL: generate one) with
 * @options (the driver's own options, or NULL for none; not consumed, not
 * modified) and
 * @flags in the main context.  Returns a node with one reference, or NULL
 * with @errp set.  Main thread.
 */
BlockDriverState *bdrv_open_driver(BlockDriver *drv, const char *node_name,
                                   JsonObject *options, int flags,
                                   GError **errp);

/*
 * Open a node from @options as blockdev-add takes them: "driver",
 * optionally "node-name", the generic options every node has (read-only,
 * cache.direct, cache.no-flush, discard, detect-zeroes, force-share,
 * auto-read-only) and the driver's own; children are nested objects or
 * node names.  @flags are inherited defaults (a parent's flags for an
 * inline child) that the generic options override.  Returns a node with
 * one reference, or NULL with @errp set.  Main thread.
 */
BlockDriverState *bdrv_open_options(JsonObject *options, int flags,
                                    GError **errp);

/*
 * For drivers' .bdrv_open: open or look up the child @name of @parent
 * from @options (the parent's options: a nested object is opened with the
 * parent's flags as defaults, a string names an existing node) and attach
 * it with @role.  Returns NULL with @errp set on failure, or NULL without
 * error if it is absent and @allow_none.  Main thread.
 */
BdrvChild *bdrv_open_child(BlockDriverState *parent, JsonObject *options,
                           const char *name, unsigned int role,
                           bool allow_none, GError **errp);

/* The driver registered under @name, or NULL. */
BlockDriver *bdrv_find_format(const char *name);

/* Make @drv known to bdrv_find_format().  Called by each driver at load. */
void bdrv_register(BlockDriver *drv);

/* Take / drop a reference; the last unref closes the node.  Main thread. */
void bdrv_ref(BlockDriverState *bs);
void bdrv_unref(BlockDriverState *bs);

/* The node named @node_name, or NULL.  Main thread. */
BlockDriverState *bdrv_find_node(const char *node_name);

const char *bdrv_get_node_name(const BlockDriverState *bs);
const char *bdrv_get_format_name(const BlockDriverState *bs);
bool bdrv_is_read_only(const BlockDriverState *bs);

/* The node's context.  Any thread (stable while the node is drained). */
AioContext *bdrv_get_aio_context(BlockDriverState *bs);

/*
 * Attach @child_bs under @parent_bs as @child_name with @role, taking a
 * reference to it.  Returns the edge or NULL with @errp set.  Main
 * thread; both nodes must share a context.
 */
BdrvChild *bdrv_attach_child(BlockDriverState *parent_bs,
                             BlockDriverState *child_bs,
                             const char *child_name, unsigned int role,
                             GError **errp);

/* Detach @child from its parent node and drop its reference.  Main thread. */
void bdrv_unref_child(BlockDriverState *parent, BdrvChild *child);

/*
 * Make the edge @child point to @new_bs instead of its current node, with
 * the same parent, name and role: what a job's final switch does.  Both
 * nodes must be in the parent's context; the context is drained meanwhile
 * and the permissions are checked on @new_bs (on failure nothing changes
 * and @errp says why).  Main thread.
 */
bool bdrv_replace_child_bs(BdrvChild *child, BlockDriverState *new_bs,
                           GError **errp);

/*
 * Move @bs and every node connected to it, through children or node
 * parents, to @ctx, with the non-node parents (BlockBackends) following.
 * Both contexts are drained meanwhile; requests queued in a backend are
 * resubmitted in @ctx.  Fails without changing anything if a parent
 * refuses.  Main thread.
 */
int bdrv_try_change_aio_context(BlockDriverState *bs, AioContext *ctx,
                                GError **errp);

/*
 * Reopen @bs with @options: the generic options (read-only above all)
 * and the driver's, which replace the current ones (NULL: keep them, only
 * the generic ones change).  Drained meanwhile; permissions are checked
 * again, so making a node with a writer read-only fails.  All or nothing:
 * on failure nothing changed and @errp says why.  Main thread.
 */
bool bdrv_reopen(BlockDriverState *bs, JsonObject *options, GError **errp);

/*
 * Open an image as the tools name it: @filename is a host file name (the
 * "file" protocol) or a json:{...} pseudo-file name, or NULL when
 * @options say everything (--image-opts); @options (may be NULL) add to
 * or override what the name says, e.g. {"driver": "qed"} from -f.  A
 * "file" given as options with a filename and no driver is a file node.
 * Without a driver the format is probed from the first bytes of
 * the image; a probed raw image restricts writes to its first 512 bytes
 * (see bdrv_is_probed_raw()).  Returns a node with one reference, or NULL
 * with @errp set.  Main thread.
 */
BlockDriverState *bdrv_open(const char *filename, JsonObject *options,
                            int flags, GError **errp);

/*
 * True if @bs is a raw node whose format was probed rather than given:
 * the tools warn about it as QEMU does.
 */
bool bdrv_is_probed_raw(BlockDriverState *bs);

/*
 * Parse a cache mode as -t takes it (none, writeback, writethrough,
 * directsync, unsafe; "off" is none): set or clear BDRV_O_NOCACHE and
 * BDRV_O_NO_FLUSH in *@flags and say whether the guest-visible write
 * cache is off (*@writethrough).  Returns false for an unknown mode,
 * leaving both untouched.
 */
bool bdrv_parse_cache_mode(const char *mode, int *flags,
                           bool *writethrough);

/* ---- Backing files ---- */

/*
 * A node whose driver supports backing files has the generic option
 * "backing": a node name or options open that node as its backing child,
 * null opens none, and when absent the file named in the image
 * (bs->backing_file, format bs->backing_format or probed) is opened
 * unless BDRV_O_NO_BACKING is set.  Names relative to a plain image file
 * are relative to its directory.
 */

/*
 * The name of the backing file recorded in @bs made usable: relative
 * names are resolved against the directory of @bs's file.  NULL (and no
 * error) when @bs has no backing file; NULL with @errp set when it cannot
 * be resolved (the image is not a plain file).  Main thread.
 */
char *bdrv_get_full_backing_filename(BlockDriverState *bs, GError **errp);

/*
 * Make @backing_hd (may be NULL: none) the backing child of @bs,
 * replacing any present one; the image header is not touched.  Returns
 * false with @errp set (nothing changed) if @bs's driver has no backing
 * files or permissions conflict.  Main thread.
 */
bool bdrv_set_backing_hd(BlockDriverState *bs, BlockDriverState *backing_hd,
                         GError **errp);

/*
 * Record @backing_file (NULL or "": none) and @backing_fmt (may be NULL)
 * in @bs's image.  -ENOTSUP if the format cannot, other negative errno
 * on I/O errors, with @errp set.  Main thread; @bs must be writable.
 */
int bdrv_change_backing_file(BlockDriverState *bs, const char *backing_file,
                             const char *backing_fmt, GError **errp);

/* ---- Image creation ---- */

typedef enum BlockOptType {
    BLOCK_OPT_TYPE_STRING,
    BLOCK_OPT_TYPE_BOOL,
    BLOCK_OPT_TYPE_NUMBER,
    BLOCK_OPT_TYPE_SIZE,
} BlockOptType;

/*
 * One creation (or amend) option of a driver, as `-o help` lists it.
 * Lists end with a NULL name.  Parsed values are stored in a JsonObject
 * under @name: strings as strings, bools as booleans, numbers and sizes
 * as integers.
 */
typedef struct BlockOptDesc {
    const char *name;
    BlockOptType type;
    const char *help;
} BlockOptDesc;

/*
 * The protocol driver for @filename: "file" for a plain name (others
 * claim URIs such as nbd://).  NULL with @errp set if none.
 */
BlockDriver *bdrv_find_protocol(const char *filename, GError **errp);

/*
 * The options `create -f @drv` accepts: the driver's own, then, for a
 * format, those of the protocol for @filename (may be NULL: "file"),
 * without duplicates, sorted by name.  Free with g_free() (not the
 * entries).  Main thread.
 */
BlockOptDesc *bdrv_create_opts_list(BlockDriver *drv, const char *filename);

/*
 * Create an image of format @drv named @filename with the parsed
 * options @opts (at least "size" for most drivers; unknown keys were
 * refused by the caller).  Returns 0 or a negative errno with @errp set.
 * Runs the driver's coroutine and polls.  Main thread.
 */
int bdrv_create(BlockDriver *drv, const char *filename, JsonObject *opts,
                GError **errp);

/*
 * For format drivers' create: create @filename with the protocol driver,
 * passing it the options of @opts that the protocol knows.  Coroutine
 * in the main context.
 */
int coroutine_fn bdrv_co_create_file(const char *filename, JsonObject *opts,
                                     GError **errp);

/* ---- Image information and checks ---- */

typedef struct BlockDriverInfo {
    int cluster_size;       /* 0: the format has no clusters */
    bool is_dirty;          /* the image was not closed cleanly */
} BlockDriverInfo;

/*
 * Fill @bdi from the driver (zeroed first).  Returns 0, -ENOTSUP if the
 * driver has nothing to say, or another negative errno.  Main thread.
 */
int bdrv_get_info(BlockDriverState *bs, BlockDriverInfo *bdi);

/* bdrv_get_info() from a coroutine in @bs's context (for drivers). */
int coroutine_fn bdrv_co_get_info(BlockDriverState *bs,
                                  BlockDriverInfo *bdi);

/*
 * Bytes the image occupies on the host (for "disk size"): the driver's
 * answer, by default the sum over its file and data children; -ENOTSUP
 * if unknown, another negative errno on error.  Main thread.
 */
int64_t bdrv_get_allocated_file_size(BlockDriverState *bs);

/* Synchronous bdrv_co_getlength() for the main thread. */
int64_t bdrv_getlength(BlockDriverState *bs);

typedef enum BdrvCheckMode {
    BDRV_FIX_LEAKS  = 1,
    BDRV_FIX_ERRORS = 2,
} BdrvCheckMode;

typedef struct BlockFragInfo {
    uint64_t allocated_clusters;
    uint64_t total_clusters;
    uint64_t fragmented_clusters;
    uint64_t compressed_clusters;
} BlockFragInfo;

/* What a consistency check found, and fixed (qemu-img check's report). */
typedef struct BdrvCheckResult {
    int corruptions;
    int leaks;
    int check_errors;
    int corruptions_fixed;
    int leaks_fixed;
    int64_t image_end_offset;
    BlockFragInfo bfi;
} BdrvCheckResult;

/*
 * Check @bs's metadata, repairing what @fix allows; @res is zeroed
 * first.  Returns 0 (the findings are in @res), -ENOTSUP if the format
 * has no check, or another negative errno if the check could not run.
 * Main thread; runs drained.
 */
int bdrv_check(BlockDriverState *bs, BdrvCheckResult *res,
               BdrvCheckMode fix);

/* Space an image needs (qemu-img measure). */
typedef struct BlockMeasureInfo {
    uint64_t required;
    uint64_t fully_allocated;
} BlockMeasureInfo;

/* ---- I/O, from coroutines in the node's context ---- */

int coroutine_fn bdrv_co_preadv(BdrvChild *child, int64_t offset,
                                int64_t bytes, QEMUIOVector *qiov,
                                BdrvRequestFlags flags);
int coroutine_fn bdrv_co_pwritev(BdrvChild *child, int64_t offset,
                                 int64_t bytes, QEMUIOVector *qiov,
                                 BdrvRequestFlags flags);
int coroutine_fn bdrv_co_pwrite_zeroes(BdrvChild *child, int64_t offset,
                                       int64_t bytes,
                                       BdrvRequestFlags flags);
int coroutine_fn bdrv_co_pdiscard(BdrvChild *child, int64_t offset,
                                  int64_t bytes);
int coroutine_fn bdrv_co_flush(BlockDriverState *bs);

/*
 * Size in bytes, rounded up to BDRV_SECTOR_SIZE as QEMU does, or a
 * negative errno.
 */
int64_t coroutine_fn bdrv_co_getlength(BlockDriverState *bs);

/*
 * Resize the node to @offset bytes.  @exact: fail rather than round or
 * keep a larger size.  Waits for requests beyond the old or new end and
 * holds new ones back meanwhile.  The parent behind @child must hold
 * BLK_PERM_RESIZE.  Returns 0 or a negative errno with @errp set.
 */
int coroutine_fn bdrv_co_truncate(BdrvChild *child, int64_t offset,
                                  bool exact, PreallocMode prealloc,
                                  BdrvRequestFlags flags, GError **errp);

/*
 * Status of [offset, offset + bytes) in this node alone: BDRV_BLOCK_*
 * flags for the first *@pnum bytes, which share them, or a negative errno.
 * With BDRV_BLOCK_OFFSET_VALID, *@map and *@file say where the data is.
 * A layer that provides the content (DATA or ZERO) reports ALLOCATED.
 */
int coroutine_fn bdrv_co_block_status(BlockDriverState *bs, int64_t offset,
                                      int64_t bytes, int64_t *pnum,
                                      int64_t *map, BlockDriverState **file);

/*
 * The same through the backing chain from @bs down to @base (exclusive;
 * NULL: the whole chain): the status of the first layer that allocates
 * the range's start, for the bytes where that holds.  Unallocated in every
 * layer, or beyond the end of a backing file: reads as zeroes, reported as
 * BDRV_BLOCK_ZERO without ALLOCATED.  @depth, if not NULL, gets the number
 * of the layer that answered (1 for @bs, 0 if none did).
 */
int coroutine_fn bdrv_co_block_status_above(BlockDriverState *bs,
                                            BlockDriverState *base,
                                            int64_t offset, int64_t bytes,
                                            int64_t *pnum, int64_t *map,
                                            BlockDriverState **file,
                                            int *depth);

/* ---- Drain ---- */

/*
 * Quiesce @bs's context through its drain registry, then wait until no
 * work is in flight there and no handler is busy.  From a coroutine, the
 * drain runs from a bottom half and the coroutine waits for it.  Main
 * thread or @bs's home thread; never with the graph lock held.
 */
void coroutine_mixed_fn bdrv_drained_begin(BlockDriverState *bs);

/* End the section; never polls.  Queued work resumes on its own. */
void coroutine_mixed_fn bdrv_drained_end(BlockDriverState *bs);

/* bdrv_drained_begin() + end: wait for what is in flight now. */
void coroutine_mixed_fn bdrv_drain(BlockDriverState *bs);

/*
 * Quiesce every context (phase 1 on all, then one wait for all) and keep
 * contexts created meanwhile quiesced.  Main thread.
 */
void bdrv_drain_all_begin(void);
void bdrv_drain_all_end(void);

/*
 * Nodes visited by graph walks while a drain was running in this process,
 * since start.  Drain must not walk the graph; tests assert this stays 0.
 */
uint64_t bdrv_drain_graph_visits(void);

#endif /* BLOCK_BLOCK_H */
