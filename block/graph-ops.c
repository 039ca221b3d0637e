/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Graph operations block jobs need on top of the core: non-node parent
 * edges, node replacement, backing chain lookups, read-only switches.
 *
 * Copyright (c) 2026 The Sluice authors
 */
#include "qemu/osdep.h"

#include "block/graph-ops.h"
#include "qemu/main-loop.h"

BdrvChild *bdrv_root_attach_child(BlockDriverState *child_bs,
                                  const char *child_name,
                                  const BdrvChildClass *klass,
                                  unsigned int role, uint64_t perm,
                                  uint64_t shared_perm, void *opaque,
                                  GError **errp)
{
    BdrvChild *child;

    assert(qemu_in_main_thread());
    assert(!klass->parent_is_bds);

    child = g_new0(BdrvChild, 1);
    child->bs = child_bs;
    child->name = g_strdup(child_name);
    child->klass = klass;
    child->role = role;
    child->opaque = opaque;
    child->perm = perm;
    child->shared_perm = shared_perm;

    bdrv_ref(child_bs);
    bdrv_drained_begin(child_bs);
    bdrv_graph_wrlock();
    QLIST_INSERT_HEAD(&child_bs->parents, child, next_parent);
    if (!bdrv_child_attach_perms(child, errp)) {
        QLIST_REMOVE(child, next_parent);
        bdrv_graph_wrunlock();
        bdrv_drained_end(child_bs);
        g_free(child->name);
        g_free(child);
        bdrv_unref(child_bs);
        return NULL;
    }
    bdrv_graph_wrunlock();
    bdrv_drained_end(child_bs);
    return child;
}

void bdrv_root_unref_child(BdrvChild *child)
{
    BlockDriverState *bs = child->bs;

    assert(qemu_in_main_thread());
    assert(!child->klass->parent_is_bds);

    bdrv_drained_begin(bs);
    bdrv_graph_wrlock();
    QLIST_REMOVE(child, next_parent);
    bdrv_child_detach_perms(bs);
    bdrv_graph_wrunlock();
    bdrv_drained_end(bs);

    g_free(child->name);
    g_free(child);
    bdrv_unref(bs);
}

bool bdrv_replace_node(BlockDriverState *from, BlockDriverState *to,
                       BdrvChildSkipFunc *skip, void *opaque,
                       GError **errp)
{
    g_autoptr(GPtrArray) edges = g_ptr_array_new();
    BdrvChild *c;
    guint i, moved;

    assert(qemu_in_main_thread());
    if (from == to) {
        return true;
    }

    /* Snapshot first: each move unlinks the edge from @from's parents. */
    QLIST_FOREACH(c, &from->parents, next_parent) {
        bdrv_graph_visit(from);
        if (c->klass->parent_is_bds && c->opaque == to) {
            continue;
        }
        if (skip && skip(c, opaque)) {
            continue;
        }
        g_ptr_array_add(edges, c);
    }

    /*
     * Hold @from: when its last parent moves away it must survive until
     * we know the whole move worked.
     */
    bdrv_ref(from);
    for (moved = 0; moved < edges->len; moved++) {
        c = g_ptr_array_index(edges, moved);
        if (!bdrv_replace_child_bs(c, to, errp)) {
            break;
        }
    }
    if (moved < edges->len) {
        for (i = 0; i < moved; i++) {
            c = g_ptr_array_index(edges, i);
            /* Going back to where they were cannot conflict. */
            if (!bdrv_replace_child_bs(c, from, NULL)) {
                g_warning("could not restore an edge of '%s'",
                          from->node_name);
            }
        }
    }
    bdrv_unref(from);
    return moved == edges->len;
}

BlockDriverState *bdrv_backing_bs(BlockDriverState *bs)
{
    return bs && bs->backing ? bs->backing->bs : NULL;
}

bool bdrv_chain_contains(BlockDriverState *top, BlockDriverState *base)
{
    BlockDriverState *p;

    for (p = top; p; p = bdrv_backing_bs(p)) {
        if (p == base) {
            return true;
        }
    }
    return false;
}

BlockDriverState *bdrv_find_overlay(BlockDriverState *active,
                                    BlockDriverState *bs)
{
    BlockDriverState *p;

    for (p = active; p; p = bdrv_backing_bs(p)) {
        if (bdrv_backing_bs(p) == bs) {
            return p;
        }
    }
    return NULL;
}

BlockDriverState *bdrv_find_backing_image(BlockDriverState *bs,
                                          const char *backing_file)
{
    BlockDriverState *p, *next;

    for (p = bs; (next = bdrv_backing_bs(p)); p = next) {
        g_autofree char *joined = NULL;
        const char *slash;

        if (strcmp(next->filename, backing_file) == 0 ||
            strcmp(p->backing_file, backing_file) == 0) {
            return next;
        }
        /* A relative name given by the user is relative to the overlay. */
        slash = strrchr(p->filename, '/');
        if (backing_file[0] != '/' && slash) {
            joined = g_strdup_printf("%.*s%s", (int)(slash - p->filename + 1),
                                     p->filename, backing_file);
            if (strcmp(next->filename, joined) == 0) {
                return next;
            }
        }
        /* The same file by another name. */
        {
            g_autofree char *a = g_canonicalize_filename(backing_file, NULL);
            g_autofree char *b = g_canonicalize_filename(next->filename,
                                                         NULL);

            if (strcmp(a, b) == 0) {
                return next;
            }
        }
    }
    return NULL;
}

/* Reopen @bs alone with its current driver options and @read_only. */
static bool bdrv_reopen_one(BlockDriverState *bs, bool read_only,
                            GError **errp)
{
    g_autoptr(JsonObject) opts = json_object_new();
    g_autoptr(GList) members = NULL;
    GList *m;

    if (bdrv_is_read_only(bs) == read_only) {
        return true;
    }
    if (bs->options) {
        members = json_object_get_members(bs->options);
    }
    for (m = members; m; m = m->next) {
        json_object_set_member(opts, m->data,
                               json_object_dup_member(bs->options, m->data));
    }
    json_object_set_boolean_member(opts, "read-only", read_only);
    return bdrv_reopen(bs, opts, errp);
}

bool bdrv_reopen_set_read_only(BlockDriverState *bs, bool read_only,
                               GError **errp)
{
    BlockDriverState *file = bs->file ? bs->file->bs : NULL;

    assert(qemu_in_main_thread());
    if (bdrv_is_read_only(bs) == read_only) {
        return true;
    }
    if (read_only) {
        if (!bdrv_reopen_one(bs, true, errp)) {
            return false;
        }
        /* A protocol shared with a writer stays writable. */
        if (file) {
            bdrv_reopen_set_read_only(file, true, NULL);
        }
        return true;
    }
    if (file && !bdrv_reopen_set_read_only(file, false, errp)) {
        return false;
    }
    if (!bdrv_reopen_one(bs, false, errp)) {
        if (file) {
            bdrv_reopen_set_read_only(file, true, NULL);
        }
        return false;
    }
    return true;
}
