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

#include "block/block_int.h"
#include "qemu/keyval.h"
#include "qemu/main-loop.h"

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
    g_free(bs->opaque);
    g_free(bs);
}

BlockDriverState *bdrv_open_driver(BlockDriver *drv, const char *node_name,
                                   JsonObject *options, int flags,
                                   GError **errp)
{
    g_autoptr(JsonObject) no_options = NULL;
    BlockDriverState *bs;
    GError *local_err = NULL;
    int ret;

    assert(qemu_in_main_thread());

    /* Drivers read their options without checking for NULL. */
    if (!options) {
        options = no_options = json_object_new();
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

    bdrv_refresh_limits(bs, &local_err);
    if (local_err) {
        g_propagate_error(errp, local_err);
        if (drv->bdrv_close) {
            drv->bdrv_close(bs);
        }
        bdrv_free(bs);
        return NULL;
    }

    QTAILQ_INSERT_TAIL(&all_bdrv_states, bs, node_list);
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
                         BDRV_O_FORCE_SHARE)) |
             (read_only ? 0 : BDRV_O_RDWR) |
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
        child_bs = bdrv_open_options(json_node_get_object(node),
                                     parent->open_flags, errp);
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
    child->perm = BLK_PERM_CONSISTENT_READ |
                  (parent_bs->read_only ? 0 : BLK_PERM_WRITE);
    child->shared_perm = BLK_PERM_ALL;

    bdrv_ref(child_bs);
    bdrv_drained_begin(child_bs);
    QLIST_INSERT_HEAD(&parent_bs->children, child, next);
    QLIST_INSERT_HEAD(&child_bs->parents, child, next_parent);
    if (strcmp(child_name, "file") == 0) {
        parent_bs->file = child;
    } else if (strcmp(child_name, "backing") == 0) {
        parent_bs->backing = child;
    }
    bdrv_drained_end(child_bs);
    return child;
}

void bdrv_unref_child(BlockDriverState *parent, BdrvChild *child)
{
    BlockDriverState *child_bs = child->bs;

    assert(qemu_in_main_thread());
    assert(child->opaque == parent);

    bdrv_drained_begin(child_bs);
    QLIST_REMOVE(child, next);
    QLIST_REMOVE(child, next_parent);
    if (parent->file == child) {
        parent->file = NULL;
    }
    if (parent->backing == child) {
        parent->backing = NULL;
    }
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

    bdrv_context_drained_end(ctx);
    bdrv_context_drained_end(old_ctx);
    return 0;
}
