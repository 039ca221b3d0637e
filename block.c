/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The node graph: drivers, opening and closing nodes, node names,
 * references and child edges.
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * Everything here runs in the main thread.  A graph change drains the
 * affected context first (DESIGN.md, "Graph changes"), so no request runs
 * on a node while its edges change.
 */
#include "qemu/osdep.h"

#include "block/aio-wait.h"
#include "block/block_int.h"
#include "qemu/keyval.h"
#include "qemu/main-loop.h"
#include "sysemu/block-backend.h"

static QTAILQ_HEAD(, BlockDriverState) all_bdrv_states =
    QTAILQ_HEAD_INITIALIZER(all_bdrv_states);
static QTAILQ_HEAD(, BlockDriver) bdrv_drivers =
    QTAILQ_HEAD_INITIALIZER(bdrv_drivers);

/* ---- Drivers ---- */

void bdrv_register(BlockDriver *drv)
{
    QTAILQ_INSERT_TAIL(&bdrv_drivers, drv, list);
}

BlockDriver *bdrv_find_format(const char *name)
{
    BlockDriver *drv;

    QTAILQ_FOREACH(drv, &bdrv_drivers, list) {
        if (strcmp(drv->format_name, name) == 0) {
            return drv;
        }
    }
    return NULL;
}

/* ---- Graph walk accounting ---- */

/* Depth of drain code running in this thread; see bdrv_graph_visit(). */
static __thread unsigned int drain_code_depth;
static uint64_t drain_graph_visits;

void bdrv_drain_code_enter(void)
{
    drain_code_depth++;
}

void bdrv_drain_code_leave(void)
{
    assert(drain_code_depth > 0);
    drain_code_depth--;
}

void bdrv_graph_visit(const BlockDriverState *bs)
{
    if (drain_code_depth) {
        qatomic_inc(&drain_graph_visits);
    }
}

uint64_t bdrv_drain_graph_visits(void)
{
    return qatomic_read(&drain_graph_visits);
}

/* ---- Node names ---- */

/* QEMU's rule for ids: a letter, then letters, digits, '-', '.', '_'. */
static bool node_name_wellformed(const char *name)
{
    const char *p;

    if (!g_ascii_isalpha(name[0])) {
        return false;
    }
    for (p = name + 1; *p; p++) {
        if (!g_ascii_isalnum(*p) && *p != '-' && *p != '.' && *p != '_') {
            return false;
        }
    }
    return true;
}

static bool bdrv_assign_node_name(BlockDriverState *bs, const char *name,
                                  GError **errp)
{
    static uint64_t generated;

    if (!name) {
        /* '#' cannot start a user-given name, so these never collide. */
        snprintf(bs->node_name, sizeof(bs->node_name), "#block%03" PRIu64,
                 generated++);
        return true;
    }
    if (!node_name_wellformed(name)) {
        error_setg(errp, "Invalid node-name: '%s'", name);
        return false;
    }
    if (strlen(name) >= sizeof(bs->node_name)) {
        error_setg(errp, "Node name too long");
        return false;
    }
    if (bdrv_find_node(name)) {
        error_setg(errp, "Duplicate nodes with node-name='%s'", name);
        return false;
    }
    g_strlcpy(bs->node_name, name, sizeof(bs->node_name));
    return true;
}

BlockDriverState *bdrv_find_node(const char *node_name)
{
    BlockDriverState *bs;

    QTAILQ_FOREACH(bs, &all_bdrv_states, node_list) {
        if (strcmp(bs->node_name, node_name) == 0) {
            return bs;
        }
    }
    return NULL;
}

const char *bdrv_get_node_name(const BlockDriverState *bs)
{
    return bs->node_name;
}

const char *bdrv_get_format_name(const BlockDriverState *bs)
{
    return bs->drv ? bs->drv->format_name : NULL;
}

bool bdrv_is_read_only(const BlockDriverState *bs)
{
    return bs->read_only;
}

AioContext *bdrv_get_aio_context(BlockDriverState *bs)
{
    return bs->aio_context;
}

/* ---- Open and close ---- */

static void bdrv_refresh_limits(BlockDriverState *bs, GError **errp)
{
    BdrvChild *c;

    memset(&bs->bl, 0, sizeof(bs->bl));
    bs->bl.request_alignment = 1;
    /* A format inherits what its data child needs. */
    QLIST_FOREACH(c, &bs->children, next) {
        bdrv_graph_visit(c->bs);
        if (c->role & BDRV_CHILD_DATA) {
            bs->bl.request_alignment = MAX(bs->bl.request_alignment,
                                           c->bs->bl.request_alignment);
        }
    }
    if (bs->drv->bdrv_refresh_limits) {
        bs->drv->bdrv_refresh_limits(bs, errp);
    }
    assert(bs->bl.request_alignment > 0 &&
           is_power_of_2(bs->bl.request_alignment));
}

static void bdrv_free(BlockDriverState *bs)
{
    if (bs->options) {
        json_object_unref(bs->options);
    }
    g_free(bs->opaque);
    g_free(bs);
}

/* ---- Backing files ---- */

char *bdrv_get_full_backing_filename(BlockDriverState *bs, GError **errp)
{
    const char *slash;

    if (!bs->backing_file[0]) {
        return NULL;
    }
    if (bs->backing_file[0] == '/' ||
        keyval_is_json_filename(bs->backing_file)) {
        return g_strdup(bs->backing_file);
    }
    if (!bs->filename[0] || keyval_is_json_filename(bs->filename)) {
        error_setg(errp, "Cannot use relative backing file names for '%s'",
                   bs->filename);
        return NULL;
    }
    /* Relative to the image's directory, as written (not canonicalised). */
    slash = strrchr(bs->filename, '/');
    if (!slash) {
        return g_strdup(bs->backing_file);
    }
    return g_strdup_printf("%.*s%s", (int)(slash - bs->filename + 1),
                           bs->filename, bs->backing_file);
}

/*
 * Open the backing child of a freshly opened @bs: from the "backing"
 * option @ref (a node name, options, or null for none) or, without one,
 * from the file recorded in the image.  Backing files are opened
 * read-only, with the image's cache flags.
 */
static bool bdrv_open_backing(BlockDriverState *bs, JsonNode *ref,
                              GError **errp)
{
    int flags = bs->open_flags & ~(BDRV_O_RDWR | BDRV_O_PROBED |
                                   BDRV_O_RESIZE | BDRV_O_NO_BACKING);
    g_autofree char *full = NULL;
    BlockDriverState *backing_bs;
    GError *local_err = NULL;
    bool ok;

    if (ref && JSON_NODE_HOLDS_NULL(ref)) {
        return true;
    }
    if (ref && JSON_NODE_HOLDS_VALUE(ref) &&
        json_node_get_value_type(ref) == G_TYPE_STRING) {
        backing_bs = bdrv_find_node(json_node_get_string(ref));
        if (!backing_bs) {
            error_setg(errp, "Cannot find device='%s' nor node-name='%s'",
                       json_node_get_string(ref), json_node_get_string(ref));
            return false;
        }
        bdrv_ref(backing_bs);
    } else if (ref && JSON_NODE_HOLDS_OBJECT(ref)) {
        backing_bs = bdrv_open_options(json_node_get_object(ref), flags,
                                       errp);
        if (!backing_bs) {
            return false;
        }
    } else if (ref) {
        error_setg(errp, "Invalid parameter type for 'backing', expected: "
                   "BlockdevRefOrNull");
        return false;
    } else {
        g_autoptr(JsonObject) opts = json_object_new();

        if (!bs->backing_file[0] || (bs->open_flags & BDRV_O_NO_BACKING)) {
            return true;
        }
        full = bdrv_get_full_backing_filename(bs, &local_err);
        if (!full) {
            error_setg(errp, "Could not open backing file: %s",
                       local_err->message);
            g_error_free(local_err);
            return false;
        }
        if (bs->backing_format[0]) {
            json_object_set_string_member(opts, "driver", bs->backing_format);
        }
        backing_bs = bdrv_open(full, opts, flags, &local_err);
        if (!backing_bs) {
            error_setg(errp, "Could not open backing file: %s",
                       local_err->message);
            g_error_free(local_err);
            return false;
        }
    }

    ok = bdrv_attach_child(bs, backing_bs, "backing", BDRV_CHILD_COW,
                           errp) != NULL;
    bdrv_unref(backing_bs);
    return ok;
}

bool bdrv_set_backing_hd(BlockDriverState *bs, BlockDriverState *backing_hd,
                         GError **errp)
{
    assert(qemu_in_main_thread());
    if (!bs->drv->supports_backing) {
        error_setg(errp, "Driver '%s' of node '%s' does not support backing "
                   "files", bs->drv->format_name, bs->node_name);
        return false;
    }
    if (bs->backing && backing_hd) {
        return bdrv_replace_child_bs(bs->backing, backing_hd, errp);
    }
    if (bs->backing) {
        bdrv_unref_child(bs, bs->backing);
    }
    if (backing_hd) {
        return bdrv_attach_child(bs, backing_hd, "backing", BDRV_CHILD_COW,
                                 errp) != NULL;
    }
    return true;
}

int bdrv_change_backing_file(BlockDriverState *bs, const char *backing_file,
                             const char *backing_fmt, GError **errp)
{
    int ret;

    assert(qemu_in_main_thread());
    if (backing_file && !backing_file[0]) {
        backing_file = NULL;
    }
    if (backing_fmt && !backing_fmt[0]) {
        backing_fmt = NULL;
    }
    if (!bs->drv->bdrv_change_backing_file) {
        error_setg(errp, "Driver '%s' does not support changing the backing "
                   "file", bs->drv->format_name);
        return -ENOTSUP;
    }
    if (backing_file && strlen(backing_file) >= sizeof(bs->backing_file)) {
        error_setg(errp, "Backing file name too long");
        return -EINVAL;
    }
    if (backing_fmt && strlen(backing_fmt) >= sizeof(bs->backing_format)) {
        error_setg(errp, "Backing format name too long");
        return -EINVAL;
    }

    bdrv_drained_begin(bs);
    ret = bs->drv->bdrv_change_backing_file(bs, backing_file, backing_fmt);
    bdrv_drained_end(bs);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not change the backing file");
        return ret;
    }
    g_strlcpy(bs->backing_file, backing_file ?: "",
              sizeof(bs->backing_file));
    g_strlcpy(bs->backing_format, backing_fmt ?: "",
              sizeof(bs->backing_format));
    return 0;
}

BlockDriverState *bdrv_open_driver(BlockDriver *drv, const char *node_name,
                                   JsonObject *options, int flags,
                                   GError **errp)
{
    g_autoptr(JsonObject) no_options = NULL;
    g_autoptr(JsonObject) driver_options = NULL;
    g_autoptr(JsonNode) backing = NULL;
    BlockDriverState *bs;
    GError *local_err = NULL;
    int ret;

    assert(qemu_in_main_thread());

    /* Drivers read their options without checking for NULL. */
    if (!options) {
        options = no_options = json_object_new();
    }
    /* "backing" is the block layer's business, not the driver's. */
    if (drv->supports_backing && json_object_has_member(options, "backing")) {
        backing = json_object_dup_member(options, "backing");
        g_autoptr(GList) members = json_object_get_members(options);
        GList *m;

        driver_options = json_object_new();
        for (m = members; m; m = m->next) {
            if (strcmp(m->data, "backing")) {
                json_object_set_member(driver_options, m->data,
                                       json_object_dup_member(options,
                                                              m->data));
            }
        }
        options = driver_options;
    }
    if (!keyval_check_unused(options, drv->option_names, drv->format_name,
                             drv->is_protocol, errp)) {
        return NULL;
    }

    bs = g_new0(BlockDriverState, 1);
    if (!bdrv_assign_node_name(bs, node_name, errp)) {
        g_free(bs);
        return NULL;
    }
    bs->drv = drv;
    bs->opaque = g_malloc0(drv->instance_size);
    bs->refcnt = 1;
    bs->open_flags = flags;
    bs->read_only = !(flags & BDRV_O_RDWR);
    bs->force_share = flags & BDRV_O_FORCE_SHARE;
    bs->aio_context = qemu_get_aio_context();
    QLIST_INIT(&bs->children);
    QLIST_INIT(&bs->parents);
    QLIST_INIT(&bs->tracked_requests);

    ret = drv->bdrv_open(bs, options, flags, errp);
    if (ret < 0) {
        bdrv_free(bs);
        return NULL;
    }
    bs->options = json_object_ref(options);

    bdrv_refresh_limits(bs, &local_err);
    if (!local_err && drv->bdrv_co_getlength) {
        /* A node whose length cannot be known is of no use to anyone. */
        int64_t len = bdrv_getlength(bs);

        if (len < 0) {
            error_setg_errno(&local_err, -len,
                             "Could not refresh total sector count");
        }
    }
    if (local_err) {
        g_propagate_error(errp, local_err);
        if (drv->bdrv_close) {
            drv->bdrv_close(bs);
        }
        bdrv_free(bs);
        return NULL;
    }

    /* A format or filter reads what its file reads. */
    if (!bs->filename[0] && bs->file) {
        g_strlcpy(bs->filename, bs->file->bs->filename, sizeof(bs->filename));
    }
    if (backing) {
        json_object_set_member(bs->options, "backing",
                               json_node_copy(backing));
    }

    QTAILQ_INSERT_TAIL(&all_bdrv_states, bs, node_list);

    if (drv->supports_backing && !bdrv_open_backing(bs, backing, errp)) {
        bdrv_unref(bs);
        return NULL;
    }
    return bs;
}

/* Options every node takes, handled here rather than by the driver. */
static const char *const bdrv_generic_options[] = {
    "driver", "node-name", "read-only", "auto-read-only", "cache",
    "discard", "detect-zeroes", "force-share", NULL,
};

static bool bdrv_is_generic_option(const char *key)
{
    int i;

    for (i = 0; bdrv_generic_options[i]; i++) {
        if (strcmp(bdrv_generic_options[i], key) == 0) {
            return true;
        }
    }
    return false;
}

/* Turn the generic options of @options into open flags, over @flags. */
static bool bdrv_parse_generic_options(JsonObject *options, int *flags,
                                       GError **errp)
{
    g_autofree char *discard = NULL;
    g_autofree char *detect_zeroes = NULL;
    bool read_only, direct, no_flush, force_share, auto_ro;

    if (!keyval_get_bool(options, "read-only", !(*flags & BDRV_O_RDWR),
                         &read_only, errp) ||
        !keyval_get_bool(options, "auto-read-only", false, &auto_ro,
                         errp) ||
        !keyval_get_bool(options, "cache.direct",
                         *flags & BDRV_O_NOCACHE, &direct, errp) ||
        !keyval_get_bool(options, "cache.no-flush",
                         *flags & BDRV_O_NO_FLUSH, &no_flush, errp) ||
        !keyval_get_bool(options, "force-share",
                         *flags & BDRV_O_FORCE_SHARE, &force_share,
                         errp) ||
        !keyval_get_str(options, "discard", NULL, &discard, errp) ||
        !keyval_get_str(options, "detect-zeroes", "off", &detect_zeroes,
                        errp)) {
        return false;
    }
    *flags = (*flags & ~(BDRV_O_RDWR | BDRV_O_NOCACHE | BDRV_O_NO_FLUSH |
                         BDRV_O_FORCE_SHARE | BDRV_O_AUTO_RDONLY)) |
             (read_only ? 0 : BDRV_O_RDWR) |
             (auto_ro ? BDRV_O_AUTO_RDONLY : 0) |
             (direct ? BDRV_O_NOCACHE : 0) |
             (no_flush ? BDRV_O_NO_FLUSH : 0) |
             (force_share ? BDRV_O_FORCE_SHARE : 0);

    if (discard) {
        if (!strcmp(discard, "unmap") || !strcmp(discard, "on")) {
            *flags |= BDRV_O_UNMAP;
        } else if (!strcmp(discard, "ignore") || !strcmp(discard, "off")) {
            *flags &= ~BDRV_O_UNMAP;
        } else {
            error_setg(errp, "Invalid discard option");
            return false;
        }
    }
    if (strcmp(detect_zeroes, "off") && strcmp(detect_zeroes, "on") &&
        strcmp(detect_zeroes, "unmap")) {
        error_setg(errp, "Parameter 'detect-zeroes' does not accept value "
                   "'%s'", detect_zeroes);
        return false;
    }
    if (force_share && !read_only) {
        error_setg(errp, "force-share=on can only be used with read-only "
                   "images");
        return false;
    }
    return true;
}

BlockDriverState *bdrv_open_options(JsonObject *options, int flags,
                                    GError **errp)
{
    g_autoptr(JsonObject) driver_opts = json_object_new();
    g_autofree char *driver = NULL;
    g_autofree char *node_name = NULL;
    g_autoptr(GList) members = NULL;
    BlockDriver *drv;
    GList *m;

    if (!keyval_get_str(options, "driver", NULL, &driver, errp) ||
        !keyval_get_str(options, "node-name", NULL, &node_name, errp)) {
        return NULL;
    }
    if (!driver) {
        error_setg(errp, "Parameter 'driver' is missing");
        return NULL;
    }
    drv = bdrv_find_format(driver);
    if (!drv) {
        error_setg(errp, "Unknown driver '%s'", driver);
        return NULL;
    }
    if (!bdrv_parse_generic_options(options, &flags, errp)) {
        return NULL;
    }
    /* "cache" is generic, but what is under it must be known too. */
    if (json_object_has_member(options, "cache")) {
        static const char *const cache_opts[] = {
            "cache.direct", "cache.no-flush", NULL,
        };
        g_autoptr(JsonObject) cache = json_object_new();

        json_object_set_member(cache, "cache",
                               json_object_dup_member(options, "cache"));
        if (!keyval_check_unused(cache, cache_opts, drv->format_name,
                                 drv->is_protocol, errp)) {
            return NULL;
        }
    }

    /* The driver sees its own options only. */
    members = json_object_get_members(options);
    for (m = members; m; m = m->next) {
        if (!bdrv_is_generic_option(m->data)) {
            json_object_set_member(driver_opts, m->data,
                                   json_object_dup_member(options, m->data));
        }
    }
    return bdrv_open_driver(drv, node_name, driver_opts, flags, errp);
}

/*
 * A child given by options with a filename and no driver is a file, as in
 * QEMU (--image-opts driver=raw,file.filename=x).  Returns a new
 * reference to @o or to a copy with "driver" added.
 */
static JsonObject *bdrv_child_options_with_driver(JsonObject *o)
{
    g_autoptr(GList) members = NULL;
    JsonObject *copy;
    GList *m;

    if (json_object_has_member(o, "driver") ||
        !json_object_has_member(o, "filename")) {
        return json_object_ref(o);
    }
    copy = json_object_new();
    members = json_object_get_members(o);
    for (m = members; m; m = m->next) {
        json_object_set_member(copy, m->data,
                               json_object_dup_member(o, m->data));
    }
    json_object_set_string_member(copy, "driver", "file");
    return copy;
}

BdrvChild *bdrv_open_child(BlockDriverState *parent, JsonObject *options,
                           const char *name, unsigned int role,
                           bool allow_none, GError **errp)
{
    JsonNode *node = options ? json_object_get_member(options, name) : NULL;
    BlockDriverState *child_bs;
    BdrvChild *child;

    if (!node || JSON_NODE_HOLDS_NULL(node)) {
        if (!allow_none) {
            error_setg(errp, "A block device must be specified for \"%s\"",
                       name);
        }
        return NULL;
    }

    if (JSON_NODE_HOLDS_VALUE(node) &&
        json_node_get_value_type(node) == G_TYPE_STRING) {
        const char *ref = json_node_get_string(node);

        child_bs = bdrv_find_node(ref);
        if (!child_bs) {
            error_setg(errp, "Cannot find device='%s' nor node-name='%s'",
                       ref, ref);
            return NULL;
        }
        bdrv_ref(child_bs);
    } else if (JSON_NODE_HOLDS_OBJECT(node)) {
        g_autoptr(JsonObject) copts =
            bdrv_child_options_with_driver(json_node_get_object(node));

        /* Inherit the parent's flags, not the fact that it was probed. */
        child_bs = bdrv_open_options(copts,
                                     parent->open_flags & ~BDRV_O_PROBED,
                                     errp);
        if (!child_bs) {
            return NULL;
        }
    } else {
        error_setg(errp, "Invalid parameter type for '%s', expected: "
                   "BlockdevRef", name);
        return NULL;
    }

    child = bdrv_attach_child(parent, child_bs, name, role, errp);
    bdrv_unref(child_bs);
    return child;
}

static void bdrv_close(BlockDriverState *bs)
{
    BdrvChild *c, *next;

    assert(QLIST_EMPTY(&bs->parents));

    bdrv_drained_begin(bs);
    assert(qatomic_read(&bs->in_flight) == 0);
    if (bs->drv->bdrv_close) {
        bs->drv->bdrv_close(bs);
    }
    QLIST_FOREACH_SAFE(c, &bs->children, next, next) {
        bdrv_unref_child(bs, c);
    }
    QTAILQ_REMOVE(&all_bdrv_states, bs, node_list);
    bdrv_drained_end(bs);
}

void bdrv_ref(BlockDriverState *bs)
{
    assert(qemu_in_main_thread());
    bs->refcnt++;
}

void bdrv_unref(BlockDriverState *bs)
{
    if (!bs) {
        return;
    }
    assert(qemu_in_main_thread());
    assert(bs->refcnt > 0);
    if (--bs->refcnt == 0) {
        bdrv_close(bs);
        bdrv_free(bs);
    }
}

/* ---- Permissions ---- */

static const char *const perm_names[] = {
    "consistent read", "write", "write unchanged", "resize",
    "change children",
};

/* The name of the lowest permission bit set in @perm. */
static const char *bdrv_perm_name(uint64_t perm)
{
    int i;

    for (i = 0; i < (int)G_N_ELEMENTS(perm_names); i++) {
        if (perm & (1ULL << i)) {
            return perm_names[i];
        }
    }
    return "?";
}

static char *bdrv_child_user_desc(BdrvChild *c)
{
    return c->klass->get_parent_desc(c);
}

/* What all parents of @bs use, and what every one of them shares. */
static void bdrv_get_cumulative_perm(BlockDriverState *bs, uint64_t *perm,
                                     uint64_t *shared)
{
    BdrvChild *c;

    *perm = 0;
    *shared = BLK_PERM_ALL;
    QLIST_FOREACH(c, &bs->parents, next_parent) {
        bdrv_graph_visit(bs);
        *perm |= c->perm;
        *shared &= c->shared_perm;
    }
}

/*
 * Two parents conflict when one uses what the other does not share.  The
 * message names the parent already there, as QEMU's does.
 */
static bool bdrv_check_parent_conflicts(BlockDriverState *bs,
                                        BdrvChild *new_child, GError **errp)
{
    BdrvChild *a, *b;

    QLIST_FOREACH(a, &bs->parents, next_parent) {
        QLIST_FOREACH(b, &bs->parents, next_parent) {
            g_autofree char *user = NULL;
            BdrvChild *other;
            uint64_t bad;

            if (a == b) {
                continue;
            }
            bad = a->perm & ~b->shared_perm;
            if (!bad) {
                continue;
            }
            /* Blame the existing user, seen from the new one. */
            other = (a == new_child) ? b : a;
            user = bdrv_child_user_desc(other);
            if (other == b) {
                error_setg(errp, "Conflicts with use by %s as '%s', which "
                           "does not allow '%s' on %s", user, other->name,
                           bdrv_perm_name(bad), bs->node_name);
            } else {
                error_setg(errp, "Conflicts with use by %s as '%s', which "
                           "uses '%s' on %s", user, other->name,
                           bdrv_perm_name(bad), bs->node_name);
            }
            return false;
        }
    }
    return true;
}

void bdrv_default_perms(BlockDriverState *bs, BdrvChild *c,
                        unsigned int role, uint64_t parent_perm,
                        uint64_t parent_shared, uint64_t *nperm,
                        uint64_t *nshared)
{
    if (role & BDRV_CHILD_FILTERED ||
        ((role & BDRV_CHILD_DATA) && !(role & BDRV_CHILD_METADATA))) {
        /* The child's data is the node's data: pass the needs through. */
        *nperm = parent_perm;
        *nshared = parent_shared;
    } else if (role & BDRV_CHILD_METADATA) {
        /*
         * A format reads its metadata always and writes it whenever the
         * node is writable, whatever its parents do.  Nobody else may
         * write or resize under it, even while it only reads: metadata
         * changed behind its back would be misread (QEMU's rule too, which
         * is what makes a reader of an image fail with "Failed to get
         * shared "write" lock" while another process writes it).
         */
        *nperm = BLK_PERM_CONSISTENT_READ;
        *nshared = (parent_shared | BLK_PERM_CONSISTENT_READ |
                    BLK_PERM_WRITE_UNCHANGED) &
                   ~(BLK_PERM_WRITE | BLK_PERM_RESIZE);
        if (!bs->read_only) {
            *nperm |= BLK_PERM_WRITE | BLK_PERM_RESIZE;
        }
    } else {
        /* A backing file is only read. */
        *nperm = BLK_PERM_CONSISTENT_READ;
        *nshared = BLK_PERM_ALL;
    }
    if (bs->force_share) {
        *nperm &= BLK_PERM_CONSISTENT_READ;
        *nshared = BLK_PERM_ALL;
    }
}

typedef struct PermUpdate {
    GPtrArray *checked;         /* nodes whose driver checked, in order */
    GArray *saved;              /* edges changed, with their old values */
} PermUpdate;

typedef struct SavedEdge {
    BdrvChild *c;
    uint64_t perm;
    uint64_t shared;
} SavedEdge;

/*
 * Check the new permissions of @bs and, recursively, of its children.
 * @new_child is the edge that changed on @bs, for the message.
 */
static bool bdrv_check_perm_tree(BlockDriverState *bs, BdrvChild *new_child,
                                 PermUpdate *u, GError **errp)
{
    uint64_t perm, shared;
    BdrvChild *c;

    if (!bdrv_check_parent_conflicts(bs, new_child, errp)) {
        return false;
    }
    bdrv_get_cumulative_perm(bs, &perm, &shared);
    if ((perm & (BLK_PERM_WRITE | BLK_PERM_RESIZE)) && bs->read_only) {
        error_setg(errp, "Block node is read-only");
        return false;
    }
    if (bs->drv->bdrv_check_perm) {
        if (bs->drv->bdrv_check_perm(bs, perm, shared, errp) < 0) {
            return false;
        }
        g_ptr_array_add(u->checked, bs);
    }

    QLIST_FOREACH(c, &bs->children, next) {
        SavedEdge saved = { c, c->perm, c->shared_perm };
        uint64_t nperm, nshared;

        bdrv_graph_visit(c->bs);
        if (bs->drv->bdrv_child_perm) {
            bs->drv->bdrv_child_perm(bs, c, c->role, perm, shared, &nperm,
                                     &nshared);
        } else {
            bdrv_default_perms(bs, c, c->role, perm, shared, &nperm,
                               &nshared);
        }
        if (nperm == c->perm && nshared == c->shared_perm) {
            continue;
        }
        g_array_append_val(u->saved, saved);
        c->perm = nperm;
        c->shared_perm = nshared;
        if (!bdrv_check_perm_tree(c->bs, c, u, errp)) {
            return false;
        }
    }
    return true;
}

/*
 * Recompute the permissions below @bs after the edge @changed (to @bs)
 * appeared, disappeared (NULL) or changed, and apply them to the drivers.
 * On failure nothing changes and @errp says why.  Main thread.
 */
static bool bdrv_refresh_perms(BlockDriverState *bs, BdrvChild *changed,
                               GError **errp)
{
    PermUpdate u = {
        .checked = g_ptr_array_new(),
        .saved = g_array_new(FALSE, FALSE, sizeof(SavedEdge)),
    };
    bool ok;
    guint i;

    ok = bdrv_check_perm_tree(bs, changed, &u, errp);
    for (i = 0; i < u.checked->len; i++) {
        BlockDriverState *n = g_ptr_array_index(u.checked, i);
        uint64_t perm, shared;

        if (ok) {
            bdrv_get_cumulative_perm(n, &perm, &shared);
            if (n->drv->bdrv_set_perm) {
                n->drv->bdrv_set_perm(n, perm, shared);
            }
        } else if (n->drv->bdrv_abort_perm_update) {
            n->drv->bdrv_abort_perm_update(n);
        }
    }
    if (!ok) {
        for (i = u.saved->len; i-- > 0;) {
            SavedEdge *e = &g_array_index(u.saved, SavedEdge, i);

            e->c->perm = e->perm;
            e->c->shared_perm = e->shared;
        }
    }
    g_ptr_array_unref(u.checked);
    g_array_unref(u.saved);
    return ok;
}

bool bdrv_child_attach_perms(BdrvChild *child, GError **errp)
{
    return bdrv_refresh_perms(child->bs, child, errp);
}

bool bdrv_child_try_set_perm(BdrvChild *c, uint64_t perm, uint64_t shared,
                             GError **errp)
{
    uint64_t old_perm = c->perm, old_shared = c->shared_perm;

    assert(qemu_in_main_thread());
    c->perm = perm;
    c->shared_perm = shared;
    if (!bdrv_refresh_perms(c->bs, c, errp)) {
        c->perm = old_perm;
        c->shared_perm = old_shared;
        return false;
    }
    return true;
}

void bdrv_child_detach_perms(BlockDriverState *bs)
{
    /* Dropping a user only loosens permissions; that cannot conflict. */
    if (!bdrv_refresh_perms(bs, NULL, NULL)) {
        g_warning("permission update failed after detaching from '%s'",
                  bs->node_name);
    }
}

/* ---- Child edges ---- */

static char *bdrv_child_parent_desc(BdrvChild *c)
{
    BlockDriverState *parent = c->opaque;

    return g_strdup_printf("node '%s'", parent->node_name);
}

static const BdrvChildClass child_of_bds = {
    .parent_is_bds = true,
    .get_parent_desc = bdrv_child_parent_desc,
};

BdrvChild *bdrv_attach_child(BlockDriverState *parent_bs,
                             BlockDriverState *child_bs,
                             const char *child_name, unsigned int role,
                             GError **errp)
{
    BdrvChild *child;

    assert(qemu_in_main_thread());
    if (parent_bs->aio_context != child_bs->aio_context) {
        error_setg(errp, "Cannot attach node '%s' to node '%s' in another "
                   "AioContext", child_bs->node_name, parent_bs->node_name);
        return NULL;
    }

    child = g_new0(BdrvChild, 1);
    child->bs = child_bs;
    child->name = g_strdup(child_name);
    child->klass = &child_of_bds;
    child->role = role;
    child->opaque = parent_bs;
    {
        uint64_t perm, shared;

        bdrv_get_cumulative_perm(parent_bs, &perm, &shared);
        if (parent_bs->drv->bdrv_child_perm) {
            parent_bs->drv->bdrv_child_perm(parent_bs, child, role, perm,
                                            shared, &child->perm,
                                            &child->shared_perm);
        } else {
            bdrv_default_perms(parent_bs, child, role, perm, shared,
                               &child->perm, &child->shared_perm);
        }
    }

    bdrv_ref(child_bs);
    bdrv_drained_begin(child_bs);
    bdrv_graph_wrlock();
    QLIST_INSERT_HEAD(&parent_bs->children, child, next);
    QLIST_INSERT_HEAD(&child_bs->parents, child, next_parent);
    if (!bdrv_child_attach_perms(child, errp)) {
        QLIST_REMOVE(child, next);
        QLIST_REMOVE(child, next_parent);
        bdrv_graph_wrunlock();
        bdrv_drained_end(child_bs);
        g_free(child->name);
        g_free(child);
        bdrv_unref(child_bs);
        return NULL;
    }
    if (strcmp(child_name, "file") == 0) {
        parent_bs->file = child;
    } else if (strcmp(child_name, "backing") == 0) {
        parent_bs->backing = child;
    }
    bdrv_graph_wrunlock();
    bdrv_drained_end(child_bs);
    return child;
}

void bdrv_unref_child(BlockDriverState *parent, BdrvChild *child)
{
    BlockDriverState *child_bs = child->bs;

    assert(qemu_in_main_thread());
    assert(child->opaque == parent);

    bdrv_drained_begin(child_bs);
    bdrv_graph_wrlock();
    QLIST_REMOVE(child, next);
    QLIST_REMOVE(child, next_parent);
    if (parent->file == child) {
        parent->file = NULL;
    }
    if (parent->backing == child) {
        parent->backing = NULL;
    }
    bdrv_child_detach_perms(child_bs);
    bdrv_graph_wrunlock();
    bdrv_drained_end(child_bs);

    g_free(child->name);
    g_free(child);
    bdrv_unref(child_bs);
}

/* ---- Moving between contexts ---- */

/*
 * Collect the connected component of @bs: nodes reached through children
 * and node parents, and the edges to non-node parents.  The visited set
 * stops diamonds from being walked twice.
 */
static void bdrv_collect_component(BlockDriverState *bs, GHashTable *nodes,
                                   GPtrArray *ext_parents)
{
    GPtrArray *todo = g_ptr_array_new();

    g_hash_table_add(nodes, bs);
    g_ptr_array_add(todo, bs);
    while (todo->len) {
        BlockDriverState *cur = g_ptr_array_steal_index_fast(todo,
                                                             todo->len - 1);
        BdrvChild *c;

        bdrv_graph_visit(cur);
        QLIST_FOREACH(c, &cur->children, next) {
            if (g_hash_table_add(nodes, c->bs)) {
                g_ptr_array_add(todo, c->bs);
            }
        }
        QLIST_FOREACH(c, &cur->parents, next_parent) {
            if (!c->klass->parent_is_bds) {
                g_ptr_array_add(ext_parents, c);
            } else if (g_hash_table_add(nodes, c->opaque)) {
                g_ptr_array_add(todo, c->opaque);
            }
        }
    }
    g_ptr_array_unref(todo);
}

int bdrv_try_change_aio_context(BlockDriverState *bs, AioContext *ctx,
                                GError **errp)
{
    g_autoptr(GHashTable) nodes = g_hash_table_new(NULL, NULL);
    g_autoptr(GPtrArray) ext_parents = g_ptr_array_new();
    AioContext *old_ctx = bs->aio_context;
    GHashTableIter iter;
    gpointer key;
    guint i;

    assert(qemu_in_main_thread());
    if (old_ctx == ctx) {
        return 0;
    }

    bdrv_collect_component(bs, nodes, ext_parents);
    for (i = 0; i < ext_parents->len; i++) {
        BdrvChild *c = g_ptr_array_index(ext_parents, i);

        if (c->klass->can_set_aio_context &&
            !c->klass->can_set_aio_context(c, ctx, errp)) {
            return -EPERM;
        }
    }

    /* Nothing runs on the component in either context while it moves. */
    bdrv_context_drained_begin(old_ctx);
    bdrv_context_drained_begin(ctx);
    bdrv_graph_wrlock();

    g_hash_table_iter_init(&iter, nodes);
    while (g_hash_table_iter_next(&iter, &key, NULL)) {
        BlockDriverState *n = key;
        int q;

        assert(n->aio_context == old_ctx);
        /* Sections begun through the node follow it (phase 1 only). */
        for (q = 0; q < n->quiesce_counter; q++) {
            aio_context_drained_begin(ctx);
        }
        if (n->drv->bdrv_detach_aio_context) {
            n->drv->bdrv_detach_aio_context(n);
        }
        n->aio_context = ctx;
        if (n->drv->bdrv_attach_aio_context) {
            n->drv->bdrv_attach_aio_context(n, ctx);
        }
    }
    for (i = 0; i < ext_parents->len; i++) {
        BdrvChild *c = g_ptr_array_index(ext_parents, i);

        if (c->klass->set_aio_context) {
            c->klass->set_aio_context(c, ctx);
        }
    }

    /* ...and leave the old context, now that the handlers moved. */
    g_hash_table_iter_init(&iter, nodes);
    while (g_hash_table_iter_next(&iter, &key, NULL)) {
        BlockDriverState *n = key;
        int q;

        for (q = 0; q < n->quiesce_counter; q++) {
            aio_context_drained_end(old_ctx);
        }
    }

    bdrv_graph_wrunlock();
    bdrv_context_drained_end(ctx);
    bdrv_context_drained_end(old_ctx);
    return 0;
}

/* ---- Replacing a child ---- */

bool bdrv_replace_child_bs(BdrvChild *child, BlockDriverState *new_bs,
                           GError **errp)
{
    BlockDriverState *old_bs = child->bs;

    assert(qemu_in_main_thread());
    if (new_bs == old_bs) {
        return true;
    }
    if (bdrv_get_aio_context(new_bs) != bdrv_get_aio_context(old_bs)) {
        error_setg(errp, "Cannot replace node '%s' by node '%s' in another "
                   "AioContext", old_bs->node_name, new_bs->node_name);
        return false;
    }

    bdrv_ref(new_bs);
    bdrv_drained_begin(old_bs);
    bdrv_graph_wrlock();
    QLIST_REMOVE(child, next_parent);
    child->bs = new_bs;
    QLIST_INSERT_HEAD(&new_bs->parents, child, next_parent);
    if (!bdrv_child_attach_perms(child, errp)) {
        QLIST_REMOVE(child, next_parent);
        child->bs = old_bs;
        QLIST_INSERT_HEAD(&old_bs->parents, child, next_parent);
        bdrv_graph_wrunlock();
        bdrv_drained_end(old_bs);
        bdrv_unref(new_bs);
        return false;
    }
    bdrv_child_detach_perms(old_bs);
    bdrv_graph_wrunlock();
    bdrv_drained_end(old_bs);
    bdrv_unref(old_bs);
    return true;
}

/* ---- Reopen ---- */

/* True if the driver options @a and @b say the same. */
static bool bdrv_options_equal(JsonObject *a, JsonObject *b)
{
    g_autoptr(JsonNode) na = json_node_init_object(json_node_alloc(), a);
    g_autoptr(JsonNode) nb = json_node_init_object(json_node_alloc(), b);

    return json_node_equal(na, nb);
}

bool bdrv_reopen(BlockDriverState *bs, JsonObject *options, GError **errp)
{
    g_autoptr(JsonObject) driver_opts = NULL;
    BlockDriver *drv = bs->drv;
    int flags = bs->open_flags;
    bool old_read_only = bs->read_only;
    int old_flags = bs->open_flags;
    void *state = NULL;
    bool prepared = false;
    bool ok = false;

    assert(qemu_in_main_thread());

    if (options) {
        g_autoptr(GList) members = json_object_get_members(options);
        GList *m;

        if (!bdrv_parse_generic_options(options, &flags, errp)) {
            return false;
        }
        driver_opts = json_object_new();
        for (m = members; m; m = m->next) {
            if (!bdrv_is_generic_option(m->data)) {
                json_object_set_member(driver_opts, m->data,
                                       json_object_dup_member(options,
                                                              m->data));
            }
        }
        if (!keyval_check_unused(driver_opts, drv->option_names,
                                 drv->format_name, drv->is_protocol, errp)) {
            return false;
        }
    } else {
        driver_opts = json_object_ref(bs->options);
    }

    bdrv_drained_begin(bs);

    if (drv->bdrv_reopen_prepare) {
        if (drv->bdrv_reopen_prepare(bs, driver_opts, flags, &state,
                                     errp) < 0) {
            goto out;
        }
        prepared = true;
    } else if (!bdrv_options_equal(driver_opts, bs->options)) {
        error_setg(errp, "Block format '%s' used by node '%s' does not "
                   "support reopening files", drv->format_name,
                   bs->node_name);
        goto out;
    }

    /* The new state must fit the node's users and children. */
    bs->read_only = !(flags & BDRV_O_RDWR);
    bs->open_flags = flags;
    bs->force_share = flags & BDRV_O_FORCE_SHARE;
    if (!bdrv_refresh_perms(bs, NULL, errp)) {
        bs->read_only = old_read_only;
        bs->open_flags = old_flags;
        bs->force_share = old_flags & BDRV_O_FORCE_SHARE;
        goto out;
    }

    if (prepared && drv->bdrv_reopen_commit) {
        drv->bdrv_reopen_commit(bs, state);
    }
    prepared = false;
    json_object_unref(bs->options);
    bs->options = json_object_ref(driver_opts);
    /* New flags may change the limits (O_DIRECT alignment, say). */
    bdrv_refresh_limits(bs, NULL);
    ok = true;

out:
    if (prepared && drv->bdrv_reopen_abort) {
        drv->bdrv_reopen_abort(bs, state);
    }
    bdrv_drained_end(bs);
    return ok;
}

/* ---- Opening by file name ---- */

/* How much of an image format probing looks at. */
#define BDRV_PROBE_BUF_SIZE 2048

BlockDriver *bdrv_probe_format(const uint8_t *buf, int buf_size,
                               const char *filename)
{
    BlockDriver *drv, *best = NULL;
    int best_score = 0;

    QTAILQ_FOREACH(drv, &bdrv_drivers, list) {
        int score;

        if (!drv->bdrv_probe) {
            continue;
        }
        score = drv->bdrv_probe(buf, buf_size, filename);
        if (score > best_score) {
            best_score = score;
            best = drv;
        }
    }
    return best;
}

/* The format of the image behind the protocol node @file. */
static BlockDriver *bdrv_probe_node(BlockDriverState *file,
                                    const char *filename, GError **errp)
{
    uint8_t buf[BDRV_PROBE_BUF_SIZE] = { 0 };
    BlockBackend *blk;
    BlockDriver *drv;
    int64_t len;
    int ret;

    blk = blk_new(bdrv_get_aio_context(file), BLK_PERM_CONSISTENT_READ,
                  BLK_PERM_ALL);
    if (!blk_insert_bs(blk, file, errp)) {
        blk_unref(blk);
        return NULL;
    }
    len = blk_getlength(blk);
    ret = len < 0 ? len :
          blk_pread(blk, 0, MIN(len, BDRV_PROBE_BUF_SIZE), buf, 0);
    bdrv_ref(file);
    blk_unref(blk);
    bdrv_unref(file);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not read image for determining "
                         "its format");
        return NULL;
    }

    drv = bdrv_probe_format(buf, MIN(len, BDRV_PROBE_BUF_SIZE), filename);
    if (!drv) {
        error_setg(errp, "Could not determine image format: No compatible "
                   "driver found");
    }
    return drv;
}

BlockDriverState *bdrv_open(const char *filename, JsonObject *options,
                            int flags, GError **errp)
{
    g_autoptr(JsonObject) opts = NULL;
    g_autoptr(GList) members = NULL;
    BlockDriverState *file, *bs;
    BlockDriver *drv;
    GList *m;

    assert(qemu_in_main_thread());

    if (!filename) {
        opts = json_object_new();
    } else if (keyval_is_json_filename(filename)) {
        opts = keyval_parse_json_filename(filename, errp);
        if (!opts) {
            return NULL;
        }
    } else {
        opts = json_object_new();
        if (!options || !json_object_has_member(options, "file")) {
            JsonObject *file_opts = json_object_new();

            json_object_set_string_member(file_opts, "driver", "file");
            json_object_set_string_member(file_opts, "filename", filename);
            json_object_set_object_member(opts, "file", file_opts);
        }
    }
    /* What the caller says (-f, -o ...) wins over the name. */
    if (options) {
        members = json_object_get_members(options);
        for (m = members; m; m = m->next) {
            json_object_set_member(opts, m->data,
                                   json_object_dup_member(options, m->data));
        }
    }

    if (json_object_has_member(opts, "driver")) {
        return bdrv_open_options(opts, flags, errp);
    }
    if (!json_object_has_member(opts, "file") ||
        !JSON_NODE_HOLDS_OBJECT(json_object_get_member(opts, "file"))) {
        if (filename) {
            error_setg(errp, "Parameter 'driver' is missing");
        } else {
            error_setg(errp, "Must specify either driver or file");
        }
        return NULL;
    }

    /* Probe: open the protocol node, look at its first bytes. */
    {
        g_autoptr(JsonObject) fopts = bdrv_child_options_with_driver(
            json_object_get_object_member(opts, "file"));

        file = bdrv_open_options(fopts, flags, errp);
    }
    if (!file) {
        return NULL;
    }
    drv = bdrv_probe_node(file, filename ?: file->filename, errp);
    if (!drv) {
        bdrv_unref(file);
        return NULL;
    }
    json_object_set_string_member(opts, "driver", drv->format_name);
    json_object_set_string_member(opts, "file", bdrv_get_node_name(file));
    bs = bdrv_open_options(opts, flags | BDRV_O_PROBED, errp);
    bdrv_unref(file);
    return bs;
}

bool bdrv_is_probed_raw(BlockDriverState *bs)
{
    return (bs->open_flags & BDRV_O_PROBED) &&
           strcmp(bs->drv->format_name, "raw") == 0;
}

/* ---- Running a coroutine to completion from the main thread ---- */

typedef struct BdrvSyncCo {
    CoroutineEntry *entry;
    void *opaque;
    bool done;
} BdrvSyncCo;

static void coroutine_fn bdrv_sync_co_entry(void *opaque)
{
    BdrvSyncCo *s = opaque;

    bdrv_graph_co_rdlock();
    s->entry(s->opaque);
    bdrv_graph_co_rdunlock();
    qatomic_store_release(&s->done, true);
    aio_wait_kick();
}

/*
 * Run @entry(@opaque) in a coroutine in @ctx and poll until it returns
 * (directly when already in a coroutine).  Main thread.
 */
static void bdrv_run_co(AioContext *ctx, CoroutineEntry *entry,
                        void *opaque)
{
    BdrvSyncCo s = { .entry = entry, .opaque = opaque };

    if (qemu_in_coroutine()) {
        bdrv_graph_co_rdlock();
        entry(opaque);
        bdrv_graph_co_rdunlock();
        return;
    }
    aio_co_enter(ctx, qemu_coroutine_create(bdrv_sync_co_entry, &s));
    AIO_WAIT_WHILE(ctx, !qatomic_load_acquire(&s.done));
}

/* ---- Image creation ---- */

BlockDriver *bdrv_find_protocol(const char *filename, GError **errp)
{
    const char *sep = strstr(filename, "://");
    g_autofree char *proto = NULL;
    BlockDriver *drv;

    if (!sep || keyval_is_json_filename(filename)) {
        return bdrv_find_format("file");
    }
    /* Only a name of letters, digits and '-' before "://" is a scheme. */
    proto = g_strndup(filename, sep - filename);
    if (proto[strspn(proto, "abcdefghijklmnopqrstuvwxyz"
                     "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-+.")]) {
        return bdrv_find_format("file");
    }
    drv = bdrv_find_format(proto);
    if (!drv || !drv->is_protocol) {
        error_setg(errp, "Unknown protocol '%s'", proto);
        return NULL;
    }
    return drv;
}

static int bdrv_opt_desc_cmp(const void *a, const void *b)
{
    const BlockOptDesc *x = a, *y = b;

    return strcmp(x->name, y->name);
}

BlockOptDesc *bdrv_create_opts_list(BlockDriver *drv, const char *filename)
{
    BlockDriver *proto = NULL;
    GArray *list = g_array_new(TRUE, TRUE, sizeof(BlockOptDesc));
    const BlockOptDesc *d;
    guint i;

    if (!drv->is_protocol) {
        proto = filename ? bdrv_find_protocol(filename, NULL) :
                bdrv_find_format("file");
    }
    for (d = drv->create_opts; d && d->name; d++) {
        g_array_append_vals(list, d, 1);
    }
    for (d = proto ? proto->create_opts : NULL; d && d->name; d++) {
        for (i = 0; i < list->len; i++) {
            if (!strcmp(g_array_index(list, BlockOptDesc, i).name,
                        d->name)) {
                break;
            }
        }
        if (i == list->len) {
            g_array_append_vals(list, d, 1);
        }
    }
    g_array_sort(list, bdrv_opt_desc_cmp);
    return (BlockOptDesc *)g_array_free(list, FALSE);
}

typedef struct BdrvCreateCo {
    BlockDriver *drv;
    const char *filename;
    JsonObject *opts;
    GError **errp;
    int ret;
} BdrvCreateCo;

static void coroutine_fn bdrv_create_co_entry(void *opaque)
{
    BdrvCreateCo *c = opaque;

    c->ret = c->drv->bdrv_co_create_opts(c->drv, c->filename, c->opts,
                                         c->errp);
}

/* Like bdrv_sync_co_entry(), without the graph read lock. */
static void coroutine_fn bdrv_create_sync_entry(void *opaque)
{
    BdrvSyncCo *s = opaque;

    s->entry(s->opaque);
    qatomic_store_release(&s->done, true);
    aio_wait_kick();
}

int bdrv_create(BlockDriver *drv, const char *filename, JsonObject *opts,
                GError **errp)
{
    g_autoptr(JsonObject) none = json_object_new();
    BdrvCreateCo c = {
        .drv = drv, .filename = filename, .opts = opts ?: none,
        .errp = errp,
    };

    assert(qemu_in_main_thread());
    if (!drv->bdrv_co_create_opts) {
        error_setg(errp, "Format driver '%s' does not support image "
                   "creation", drv->format_name);
        return -ENOTSUP;
    }
    /*
     * Not bdrv_run_co(): creating an image opens and closes nodes, which
     * must not happen under the graph read lock.
     */
    if (qemu_in_coroutine()) {
        bdrv_create_co_entry(&c);
    } else {
        BdrvSyncCo s = { .entry = bdrv_create_co_entry, .opaque = &c };

        aio_co_enter(qemu_get_aio_context(),
                     qemu_coroutine_create(bdrv_create_sync_entry, &s));
        AIO_WAIT_WHILE(NULL, !qatomic_load_acquire(&s.done));
    }
    return c.ret;
}

int coroutine_fn bdrv_co_create_file(const char *filename, JsonObject *opts,
                                     GError **errp)
{
    g_autoptr(JsonObject) proto_opts = json_object_new();
    BlockDriver *proto = bdrv_find_protocol(filename, errp);
    const BlockOptDesc *d;

    if (!proto) {
        return -ENOENT;
    }
    if (!proto->bdrv_co_create_opts) {
        error_setg(errp, "Protocol driver '%s' does not support image "
                   "creation", proto->format_name);
        return -ENOTSUP;
    }
    for (d = proto->create_opts; d && d->name; d++) {
        if (opts && json_object_has_member(opts, d->name)) {
            json_object_set_member(proto_opts, d->name,
                                   json_object_dup_member(opts, d->name));
        }
    }
    return proto->bdrv_co_create_opts(proto, filename, proto_opts, errp);
}

/* ---- Image information and checks ---- */

typedef struct BdrvInfoCo {
    BlockDriverState *bs;
    BlockDriverInfo *bdi;
    BdrvCheckResult *res;
    BdrvCheckMode fix;
    int64_t ret;
} BdrvInfoCo;

int coroutine_fn bdrv_co_get_info(BlockDriverState *bs,
                                  BlockDriverInfo *bdi)
{
    memset(bdi, 0, sizeof(*bdi));
    if (!bs->drv->bdrv_co_get_info) {
        return -ENOTSUP;
    }
    return bs->drv->bdrv_co_get_info(bs, bdi);
}

static void coroutine_fn bdrv_get_info_entry(void *opaque)
{
    BdrvInfoCo *c = opaque;

    c->ret = bdrv_co_get_info(c->bs, c->bdi);
}

int bdrv_get_info(BlockDriverState *bs, BlockDriverInfo *bdi)
{
    BdrvInfoCo c = { .bs = bs, .bdi = bdi };

    assert(qemu_in_main_thread());
    bdrv_run_co(bdrv_get_aio_context(bs), bdrv_get_info_entry, &c);
    return c.ret;
}

static void coroutine_fn bdrv_allocated_size_entry(void *opaque)
{
    BdrvInfoCo *c = opaque;

    c->ret = c->bs->drv->bdrv_co_get_allocated_file_size(c->bs);
}

int64_t bdrv_get_allocated_file_size(BlockDriverState *bs)
{
    BdrvInfoCo c = { .bs = bs };
    int64_t sum = 0, n;
    BdrvChild *child;
    bool any = false;

    assert(qemu_in_main_thread());
    if (bs->drv->bdrv_co_get_allocated_file_size) {
        bdrv_run_co(bdrv_get_aio_context(bs), bdrv_allocated_size_entry,
                    &c);
        return c.ret;
    }
    /* A format or filter occupies what its storage children occupy. */
    QLIST_FOREACH(child, &bs->children, next) {
        if (child != bs->file &&
            (!(child->role & (BDRV_CHILD_DATA | BDRV_CHILD_METADATA)) ||
             (child->role & BDRV_CHILD_COW))) {
            continue;
        }
        n = bdrv_get_allocated_file_size(child->bs);
        if (n < 0) {
            return n;
        }
        sum += n;
        any = true;
    }
    return any ? sum : -ENOTSUP;
}

static void coroutine_fn bdrv_getlength_entry(void *opaque)
{
    BdrvInfoCo *c = opaque;

    c->ret = bdrv_co_getlength(c->bs);
}

int64_t bdrv_getlength(BlockDriverState *bs)
{
    BdrvInfoCo c = { .bs = bs };

    bdrv_run_co(bdrv_get_aio_context(bs), bdrv_getlength_entry, &c);
    return c.ret;
}

static void coroutine_fn bdrv_check_entry(void *opaque)
{
    BdrvInfoCo *c = opaque;

    c->ret = c->bs->drv->bdrv_co_check(c->bs, c->res, c->fix);
}

int bdrv_check(BlockDriverState *bs, BdrvCheckResult *res,
               BdrvCheckMode fix)
{
    BdrvInfoCo c = { .bs = bs, .res = res, .fix = fix };

    assert(qemu_in_main_thread());
    memset(res, 0, sizeof(*res));
    if (!bs->drv->bdrv_co_check) {
        return -ENOTSUP;
    }
    /* No request of another user may change the metadata under it. */
    bdrv_drained_begin(bs);
    bdrv_run_co(bdrv_get_aio_context(bs), bdrv_check_entry, &c);
    bdrv_drained_end(bs);
    return c.ret;
}

/* ---- Cache modes ---- */

bool bdrv_parse_cache_mode(const char *mode, int *flags, bool *writethrough)
{
    int f = *flags & ~(BDRV_O_NOCACHE | BDRV_O_NO_FLUSH);
    bool wt;

    if (!strcmp(mode, "off") || !strcmp(mode, "none")) {
        f |= BDRV_O_NOCACHE;
        wt = false;
    } else if (!strcmp(mode, "directsync")) {
        f |= BDRV_O_NOCACHE;
        wt = true;
    } else if (!strcmp(mode, "writeback")) {
        wt = false;
    } else if (!strcmp(mode, "unsafe")) {
        f |= BDRV_O_NO_FLUSH;
        wt = false;
    } else if (!strcmp(mode, "writethrough")) {
        wt = true;
    } else {
        return false;
    }
    *flags = f;
    *writethrough = wt;
    return true;
}
