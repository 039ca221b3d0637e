/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Block exports: the generic part.  Creating an export (its own
 * BlockBackend on the node, in the right context), reference counting,
 * deletion in safe and hard modes, moving to another iothread, and the
 * QMP-level entry points with QEMU's argument checking.
 *
 * Copyright (c) 2026 The Sluice authors
 */
#include "qemu/osdep.h"

#include "block/aio-wait.h"
#include "block/block_int.h"
#include "block/export.h"
#include "block/export/export-args.h"
#include "qemu/iothread.h"
#include "qemu/main-loop.h"
#include "qemu/object.h"

static const BlockExportDriver *blk_exp_drivers[BLOCK_EXPORT_TYPE__MAX];

/* Newest first, the order query-block-exports reports. */
static QTAILQ_HEAD(, BlockExport) block_exports =
    QTAILQ_HEAD_INITIALIZER(block_exports);

static BlockExportDeletedFn *blk_exp_deleted_fn;
static void *blk_exp_deleted_opaque;

static const char *const blk_exp_type_names[BLOCK_EXPORT_TYPE__MAX + 1] = {
    [BLOCK_EXPORT_TYPE_NBD] = "nbd",
    [BLOCK_EXPORT_TYPE_VHOST_USER_BLK] = "vhost-user-blk",
    [BLOCK_EXPORT_TYPE_FUSE] = "fuse",
    [BLOCK_EXPORT_TYPE__MAX] = NULL,
};

const char *blk_exp_type_name(BlockExportType type)
{
    assert(type < BLOCK_EXPORT_TYPE__MAX);
    return blk_exp_type_names[type];
}

void blk_exp_register_driver(const BlockExportDriver *drv)
{
    assert(drv->type < BLOCK_EXPORT_TYPE__MAX);
    assert(drv->instance_size >= sizeof(BlockExport));
    blk_exp_drivers[drv->type] = drv;
}

void blk_exp_set_deleted_notifier(BlockExportDeletedFn *fn, void *opaque)
{
    blk_exp_deleted_fn = fn;
    blk_exp_deleted_opaque = opaque;
}

BlockExport *blk_exp_find(const char *id)
{
    BlockExport *exp;

    QTAILQ_FOREACH(exp, &block_exports, next) {
        if (!strcmp(exp->id, id)) {
            return exp;
        }
    }
    return NULL;
}

unsigned int blk_exp_count(void)
{
    BlockExport *exp;
    unsigned int n = 0;

    QTAILQ_FOREACH(exp, &block_exports, next) {
        n++;
    }
    return n;
}

/* QEMU's id rule: a letter, then letters, digits, '-', '.', '_'. */
static bool blk_exp_id_wellformed(const char *id)
{
    const char *p;

    if (!g_ascii_isalpha(id[0])) {
        return false;
    }
    for (p = id + 1; *p; p++) {
        if (!g_ascii_isalnum(*p) && *p != '-' && *p != '.' && *p != '_') {
            return false;
        }
    }
    return true;
}

BlockExport *blk_exp_add(const BlockExportOptions *opts, GError **errp)
{
    const BlockExportDriver *drv;
    BlockDriverState *bs;
    AioContext *ctx;
    BlockBackend *blk;
    BlockExport *exp;
    uint64_t perm;

    assert(qemu_in_main_thread());
    if (!blk_exp_id_wellformed(opts->id)) {
        error_setg(errp, "Invalid block export id");
        return NULL;
    }
    if (blk_exp_find(opts->id)) {
        error_setg(errp, "Block export id '%s' is already in use", opts->id);
        return NULL;
    }
    drv = opts->type < BLOCK_EXPORT_TYPE__MAX ?
          blk_exp_drivers[opts->type] : NULL;
    if (!drv) {
        error_setg(errp, "No driver found for the requested export type");
        return NULL;
    }
    bs = bdrv_find_node(opts->node_name);
    if (!bs) {
        error_setg(errp, "Cannot find device='' nor node-name='%s'",
                   opts->node_name);
        return NULL;
    }

    ctx = bdrv_get_aio_context(bs);
    if (opts->iothread) {
        IOThread *iothread = user_creatable_find("iothread", opts->iothread);
        GError *local_err = NULL;

        if (!iothread) {
            error_setg(errp, "iothread \"%s\" not found", opts->iothread);
            return NULL;
        }
        /*
         * Moving may fail if another user of the node objects; then the
         * export stays where the node is, unless the user insists.
         * Exports already on the node move along.
         */
        if (!blk_exp_change_node_aio_context(
                bs, iothread_get_aio_context(iothread), &local_err)) {
            if (opts->fixed_iothread) {
                g_propagate_error(errp, local_err);
                return NULL;
            }
            g_error_free(local_err);
        }
        ctx = bdrv_get_aio_context(bs);
    }

    if (opts->writable && bdrv_is_read_only(bs)) {
        error_setg(errp, "Cannot export read-only node as writable");
        return NULL;
    }
    perm = BLK_PERM_CONSISTENT_READ;
    if (opts->writable) {
        perm |= BLK_PERM_WRITE;
    }
    blk = blk_new(ctx, perm, BLK_PERM_ALL);
    if (!blk_insert_bs(blk, bs, errp)) {
        blk_unref(blk);
        return NULL;
    }
    if (opts->writethrough) {
        blk_set_enable_write_cache(blk, false);
    }

    exp = g_malloc0(drv->instance_size);
    exp->drv = drv;
    exp->id = g_strdup(opts->id);
    exp->node_name = g_strdup(bdrv_get_node_name(bs));
    exp->writable = opts->writable;
    exp->refcount = 1;
    exp->blk = blk;
    exp->ctx = ctx;
    if (!drv->create(exp, opts, errp)) {
        blk_unref(blk);
        g_free(exp->id);
        g_free(exp->node_name);
        g_free(exp);
        return NULL;
    }
    QTAILQ_INSERT_HEAD(&block_exports, exp, next);
    return exp;
}

void blk_exp_ref(BlockExport *exp)
{
    assert(qemu_in_main_thread());
    assert(exp->refcount > 0);
    exp->refcount++;
}

void blk_exp_unref(BlockExport *exp)
{
    g_autofree char *id = NULL;

    assert(qemu_in_main_thread());
    assert(exp->refcount > 0);
    if (--exp->refcount > 0) {
        return;
    }
    QTAILQ_REMOVE(&block_exports, exp, next);
    exp->drv->delete(exp);
    blk_unref(exp->blk);
    id = exp->id;
    g_free(exp->node_name);
    g_free(exp);
    if (blk_exp_deleted_fn) {
        blk_exp_deleted_fn(id, blk_exp_deleted_opaque);
    }
}

void blk_exp_request_shutdown(BlockExport *exp)
{
    assert(qemu_in_main_thread());
    /* Keep it alive while its driver disconnects the users. */
    blk_exp_ref(exp);
    if (!exp->shutting_down) {
        exp->shutting_down = true;
        exp->drv->request_shutdown(exp);
    }
    if (!exp->user_ref_dropped) {
        exp->user_ref_dropped = true;
        blk_exp_unref(exp);
    }
    blk_exp_unref(exp);
}

bool blk_exp_del(const char *id, BlockExportRemoveMode mode, GError **errp)
{
    BlockExport *exp = blk_exp_find(id);

    assert(qemu_in_main_thread());
    if (!exp) {
        error_setg(errp, "Export '%s' is not found", id);
        return false;
    }
    if (exp->user_ref_dropped) {
        error_setg(errp, "Export '%s' is already shutting down", id);
        return false;
    }
    if (mode == BLOCK_EXPORT_REMOVE_MODE_SAFE && exp->drv->in_use &&
        exp->drv->in_use(exp)) {
        error_setg(errp, "export '%s' still in use", id);
        return false;
    }
    blk_exp_request_shutdown(exp);
    return true;
}

static bool blk_exp_any_of_type(BlockExportType type)
{
    BlockExport *exp;

    QTAILQ_FOREACH(exp, &block_exports, next) {
        if (type == BLOCK_EXPORT_TYPE__MAX || exp->drv->type == type) {
            return true;
        }
    }
    return false;
}

void blk_exp_close_all_type(BlockExportType type)
{
    BlockExport *exp, *next;

    assert(qemu_in_main_thread());
    QTAILQ_FOREACH_SAFE(exp, &block_exports, next, next) {
        if (type == BLOCK_EXPORT_TYPE__MAX || exp->drv->type == type) {
            blk_exp_request_shutdown(exp);
        }
    }
    /* Connections finish in their contexts and report to this thread. */
    AIO_WAIT_WHILE(NULL, blk_exp_any_of_type(type));
}

void blk_exp_close_all(void)
{
    blk_exp_close_all_type(BLOCK_EXPORT_TYPE__MAX);
}

bool blk_exp_change_node_aio_context(BlockDriverState *bs, AioContext *ctx,
                                     GError **errp)
{
    AioContext *old_ctx = bdrv_get_aio_context(bs);
    BlockExport *exp;
    bool ok;

    assert(qemu_in_main_thread());
    if (old_ctx == ctx) {
        return true;
    }
    QTAILQ_FOREACH(exp, &block_exports, next) {
        if (exp->ctx == old_ctx && !exp->drv->set_aio_context) {
            error_setg(errp, "Export '%s' cannot change its iothread",
                       exp->id);
            return false;
        }
    }

    /*
     * Both contexts stay drained across the move, so the connections of
     * the exports that follow the node are quiesced in the old context
     * and in the new one while they change over; the node's own move
     * drains them again (nested).
     */
    bdrv_context_drained_begin(old_ctx);
    bdrv_context_drained_begin(ctx);
    ok = bdrv_try_change_aio_context(bs, ctx, errp) >= 0;
    if (ok) {
        QTAILQ_FOREACH(exp, &block_exports, next) {
            AioContext *now = blk_get_aio_context(exp->blk);

            if (now != exp->ctx) {
                assert(exp->ctx == old_ctx && now == ctx);
                exp->drv->set_aio_context(exp, old_ctx, ctx);
                exp->ctx = ctx;
            }
        }
    }
    bdrv_context_drained_end(ctx);
    bdrv_context_drained_end(old_ctx);
    return ok;
}

bool blk_exp_set_aio_context(BlockExport *exp, AioContext *ctx,
                             GError **errp)
{
    return blk_exp_change_node_aio_context(blk_bs(exp->blk), ctx, errp);
}

/* ---- QMP ---- */

static const char *const blk_exp_remove_mode_names[] = { "safe", "hard",
                                                         NULL };

static const BlkExpArgSpec block_export_add_common[] = {
    { "type", BLK_EXP_ARG_ENUM, true, blk_exp_type_names },
    { "id", BLK_EXP_ARG_STR, true },
    { "fixed-iothread", BLK_EXP_ARG_BOOL },
    { "iothread", BLK_EXP_ARG_STR },
    { "node-name", BLK_EXP_ARG_STR, true },
    { "writable", BLK_EXP_ARG_BOOL },
    { "writethrough", BLK_EXP_ARG_BOOL },
    { NULL },
};

static const BlkExpArgSpec block_export_add_nbd[] = {
    { "name", BLK_EXP_ARG_STR },
    { "description", BLK_EXP_ARG_STR },
    { "bitmaps", BLK_EXP_ARG_ARRAY },
    { "allocation-depth", BLK_EXP_ARG_BOOL },
    { NULL },
};

/* vhost-user-blk's arguments, checked so that errors read as QEMU's. */
static const BlkExpArgSpec block_export_add_vhost_user_blk[] = {
    { "addr", BLK_EXP_ARG_OBJECT, true },
    { "logical-block-size", BLK_EXP_ARG_INT },
    { "num-queues", BLK_EXP_ARG_INT },
    { NULL },
};

static const BlkExpArgSpec block_export_add_fuse[] = {
    { "mountpoint", BLK_EXP_ARG_STR, true },
    { "growable", BLK_EXP_ARG_BOOL },
    { "allow-other", BLK_EXP_ARG_ENUM, false,
      (const char *const[]) { "on", "off", "auto", NULL } },
    { NULL },
};

/* Bitmap names from "bitmaps": strings or {"node", "name"}. */
static char **blk_exp_bitmap_names(JsonArray *bitmaps, GError **errp)
{
    guint n = json_array_get_length(bitmaps);
    char **names = g_new0(char *, n + 1);
    guint i;

    for (i = 0; i < n; i++) {
        JsonNode *node = json_array_get_element(bitmaps, i);

        if (JSON_NODE_HOLDS_VALUE(node) &&
            json_node_get_value_type(node) == G_TYPE_STRING) {
            names[i] = g_strdup(json_node_get_string(node));
        } else if (JSON_NODE_HOLDS_OBJECT(node)) {
            JsonObject *o = json_node_get_object(node);
            const char *name = json_object_has_member(o, "name") ?
                json_object_get_string_member_with_default(o, "name", NULL)
                : NULL;

            if (!name) {
                error_setg(errp, "Parameter 'bitmaps[%u].name' is missing",
                           i);
                g_strfreev(names);
                return NULL;
            }
            names[i] = g_strdup(name);
        } else {
            error_setg(errp, "Invalid parameter type for 'bitmaps[%u]', "
                       "expected: value", i);
            g_strfreev(names);
            return NULL;
        }
    }
    return names;
}

static BlockExport *blk_exp_add_args(JsonObject *args, bool keyval,
                                     GError **errp)
{
    BlockExportOptions opts = { 0 };
    g_autofree char *type = NULL;
    g_auto(GStrv) bitmaps = NULL;
    const BlkExpArgSpec *branch;
    const BlkExpArgSpec *specs[3];
    int i;

    if (!blk_exp_check_args(args, block_export_add_common, "", keyval,
                            errp)) {
        return NULL;
    }
    type = blk_exp_arg_str(args, "type");
    for (i = 0; i < BLOCK_EXPORT_TYPE__MAX; i++) {
        if (!strcmp(type, blk_exp_type_names[i])) {
            break;
        }
    }
    opts.type = i;
    switch (opts.type) {
    case BLOCK_EXPORT_TYPE_NBD:
        branch = block_export_add_nbd;
        break;
    case BLOCK_EXPORT_TYPE_VHOST_USER_BLK:
        branch = block_export_add_vhost_user_blk;
        break;
    default:
        branch = block_export_add_fuse;
        break;
    }
    if (!blk_exp_check_args(args, branch, "", keyval, errp)) {
        return NULL;
    }
    specs[0] = block_export_add_common;
    specs[1] = branch;
    specs[2] = NULL;
    if (!blk_exp_check_unexpected(args, specs, "", errp)) {
        return NULL;
    }

    opts.id = json_object_get_string_member(args, "id");
    opts.node_name = json_object_get_string_member(args, "node-name");
    opts.iothread = json_object_has_member(args, "iothread") ?
                    json_object_get_string_member(args, "iothread") : NULL;
    opts.fixed_iothread = blk_exp_arg_bool(args, "fixed-iothread", false);
    opts.writable = blk_exp_arg_bool(args, "writable", false);
    opts.writethrough = blk_exp_arg_bool(args, "writethrough", false);
    if (opts.type == BLOCK_EXPORT_TYPE_NBD) {
        opts.nbd.name = json_object_has_member(args, "name") ?
                        json_object_get_string_member(args, "name") : NULL;
        opts.nbd.description = json_object_has_member(args, "description") ?
            json_object_get_string_member(args, "description") : NULL;
        opts.nbd.allocation_depth = blk_exp_arg_bool(args, "allocation-depth",
                                                     false);
        if (json_object_has_member(args, "bitmaps")) {
            bitmaps = blk_exp_bitmap_names(
                json_object_get_array_member(args, "bitmaps"), errp);
            if (!bitmaps) {
                return NULL;
            }
            opts.nbd.bitmaps = (const char *const *)bitmaps;
        }
    }
    return blk_exp_add(&opts, errp);
}

BlockExport *qmp_block_export_add(JsonObject *args, GError **errp)
{
    return blk_exp_add_args(args, false, errp);
}

BlockExport *blk_exp_add_options(JsonObject *args, GError **errp)
{
    return blk_exp_add_args(args, true, errp);
}

bool qmp_block_export_del(JsonObject *args, GError **errp)
{
    static const BlkExpArgSpec spec[] = {
        { "id", BLK_EXP_ARG_STR, true },
        { "mode", BLK_EXP_ARG_ENUM, false, blk_exp_remove_mode_names },
        { NULL },
    };
    const BlkExpArgSpec *specs[] = { spec, NULL };
    g_autofree char *mode = NULL;

    if (!blk_exp_check_args(args, spec, "", false, errp) ||
        !blk_exp_check_unexpected(args, specs, "", errp)) {
        return false;
    }
    mode = json_object_has_member(args, "mode") ?
           blk_exp_arg_str(args, "mode") : g_strdup("safe");
    return blk_exp_del(json_object_get_string_member(args, "id"),
                       !strcmp(mode, "hard") ?
                       BLOCK_EXPORT_REMOVE_MODE_HARD :
                       BLOCK_EXPORT_REMOVE_MODE_SAFE, errp);
}

JsonArray *qmp_query_block_exports(GError **errp)
{
    JsonArray *list = json_array_new();
    BlockExport *exp;

    QTAILQ_FOREACH(exp, &block_exports, next) {
        JsonObject *o = json_object_new();

        json_object_set_string_member(o, "type",
                                      blk_exp_type_name(exp->drv->type));
        json_object_set_string_member(o, "id", exp->id);
        json_object_set_string_member(o, "node-name", exp->node_name);
        json_object_set_boolean_member(o, "shutting-down",
                                       exp->shutting_down);
        json_array_add_object_element(list, o);
    }
    return list;
}

/* ---- Argument checking ---- */

static bool blk_exp_keyval_bool(const char *s, bool *out)
{
    static const char *const on[] = { "on", "yes", "true", "y", NULL };
    static const char *const off[] = { "off", "no", "false", "n", NULL };

    if (g_strv_contains(on, s)) {
        *out = true;
        return true;
    }
    if (g_strv_contains(off, s)) {
        *out = false;
        return true;
    }
    return false;
}

static bool blk_exp_keyval_int(const char *s, int64_t *out)
{
    char *end;

    if (!*s || g_ascii_isspace(*s)) {
        return false;
    }
    errno = 0;
    *out = g_ascii_strtoll(s, &end, 10);
    return !errno && !*end;
}

static bool blk_exp_node_is(JsonNode *node, GType type)
{
    return JSON_NODE_HOLDS_VALUE(node) &&
           json_node_get_value_type(node) == type;
}

static bool blk_exp_check_one(JsonObject *args, const BlkExpArgSpec *s,
                              const char *prefix, bool keyval,
                              GError **errp)
{
    JsonNode *node = json_object_get_member(args, s->name);
    static const char *const type_names[] = {
        [BLK_EXP_ARG_STR] = "string",
        [BLK_EXP_ARG_BOOL] = "boolean",
        [BLK_EXP_ARG_INT] = "integer",
        [BLK_EXP_ARG_UINT32] = "integer",
        [BLK_EXP_ARG_ENUM] = "string",
        [BLK_EXP_ARG_OBJECT] = "object",
        [BLK_EXP_ARG_ARRAY] = "array",
    };
    bool ok;

    if (!node) {
        if (s->required) {
            error_setg(errp, "Parameter '%s%s' is missing", prefix, s->name);
            return false;
        }
        return true;
    }
    switch (s->type) {
    case BLK_EXP_ARG_STR:
    case BLK_EXP_ARG_ENUM:
        ok = blk_exp_node_is(node, G_TYPE_STRING);
        if (ok && s->type == BLK_EXP_ARG_ENUM &&
            !g_strv_contains(s->enum_values, json_node_get_string(node))) {
            /*
             * QEMU names a flattened union's discriminator without its
             * prefix ("Parameter 'type' does not accept value 'foo'").
             */
            error_setg(errp, "Parameter '%s' does not accept value '%s'",
                       s->name, json_node_get_string(node));
            return false;
        }
        break;
    case BLK_EXP_ARG_BOOL:
        if (keyval && blk_exp_node_is(node, G_TYPE_STRING)) {
            bool b;

            if (!blk_exp_keyval_bool(json_node_get_string(node), &b)) {
                error_setg(errp, "Parameter '%s%s' expects 'on' or 'off'",
                           prefix, s->name);
                return false;
            }
            return true;
        }
        ok = blk_exp_node_is(node, G_TYPE_BOOLEAN);
        break;
    case BLK_EXP_ARG_INT:
    case BLK_EXP_ARG_UINT32: {
        int64_t v = 0;

        if (keyval && blk_exp_node_is(node, G_TYPE_STRING)) {
            if (!blk_exp_keyval_int(json_node_get_string(node), &v)) {
                error_setg(errp, "Parameter '%s%s' expects integer", prefix,
                           s->name);
                return false;
            }
        } else if (blk_exp_node_is(node, G_TYPE_INT64)) {
            v = json_node_get_int(node);
        } else {
            ok = false;
            break;
        }
        if (s->type == BLK_EXP_ARG_UINT32 && (v < 0 || v > UINT32_MAX)) {
            error_setg(errp, "Parameter '%s%s' expects uint32_t", prefix,
                       s->name);
            return false;
        }
        return true;
    }
    case BLK_EXP_ARG_OBJECT:
        ok = JSON_NODE_HOLDS_OBJECT(node);
        break;
    case BLK_EXP_ARG_ARRAY:
        ok = JSON_NODE_HOLDS_ARRAY(node);
        break;
    default:
        g_assert_not_reached();
    }
    if (!ok) {
        error_setg(errp, "Invalid parameter type for '%s%s', expected: %s",
                   prefix, s->name, type_names[s->type]);
        return false;
    }
    return true;
}

bool blk_exp_check_args(JsonObject *args, const BlkExpArgSpec *spec,
                        const char *prefix, bool keyval, GError **errp)
{
    const BlkExpArgSpec *s;

    for (s = spec; s->name; s++) {
        if (!blk_exp_check_one(args, s, prefix, keyval, errp)) {
            return false;
        }
    }
    return true;
}

bool blk_exp_check_unexpected(JsonObject *args,
                              const BlkExpArgSpec *const *specs,
                              const char *prefix, GError **errp)
{
    g_autoptr(GList) members = json_object_get_members(args);
    GList *m;

    for (m = members; m; m = m->next) {
        bool known = false;
        int i;

        for (i = 0; specs[i] && !known; i++) {
            const BlkExpArgSpec *s;

            for (s = specs[i]; s->name; s++) {
                if (!strcmp(s->name, m->data)) {
                    known = true;
                    break;
                }
            }
        }
        if (!known) {
            error_setg(errp, "Parameter '%s%s' is unexpected", prefix,
                       (const char *)m->data);
            return false;
        }
    }
    return true;
}

char *blk_exp_arg_str(JsonObject *args, const char *name)
{
    JsonNode *node = json_object_get_member(args, name);

    return node && blk_exp_node_is(node, G_TYPE_STRING) ?
           g_strdup(json_node_get_string(node)) : NULL;
}

bool blk_exp_arg_bool(JsonObject *args, const char *name, bool def)
{
    JsonNode *node = json_object_get_member(args, name);
    bool b;

    if (!node) {
        return def;
    }
    if (blk_exp_node_is(node, G_TYPE_STRING)) {
        return blk_exp_keyval_bool(json_node_get_string(node), &b) ? b : def;
    }
    return blk_exp_node_is(node, G_TYPE_BOOLEAN) ?
           json_node_get_boolean(node) : def;
}

int64_t blk_exp_arg_int(JsonObject *args, const char *name, int64_t def)
{
    JsonNode *node = json_object_get_member(args, name);
    int64_t v;

    if (!node) {
        return def;
    }
    if (blk_exp_node_is(node, G_TYPE_STRING)) {
        return blk_exp_keyval_int(json_node_get_string(node), &v) ? v : def;
    }
    return blk_exp_node_is(node, G_TYPE_INT64) ? json_node_get_int(node)
                                                : def;
}
