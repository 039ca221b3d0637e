/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * User-creatable objects: a registry of types and a table of the objects
 * made from them, keyed by id.
 *
 * Copyright (c) 2026 The Sluice authors
 */
#include "qemu/osdep.h"

#include "qemu/keyval.h"
#include "qemu/main-loop.h"
#include "qemu/object.h"

typedef struct UserObject {
    const UserCreatableType *type;
    char *id;
    void *obj;
} UserObject;

/* Types register from constructors, before main(); objects: main thread. */
static GPtrArray *object_types;
static GPtrArray *objects;

void user_creatable_register(const UserCreatableType *type)
{
    if (!object_types) {
        object_types = g_ptr_array_new();
    }
    g_ptr_array_add(object_types, (gpointer)type);
}

static const UserCreatableType *user_creatable_find_type(const char *name)
{
    guint i;

    for (i = 0; object_types && i < object_types->len; i++) {
        const UserCreatableType *t = g_ptr_array_index(object_types, i);

        if (!strcmp(t->name, name)) {
            return t;
        }
    }
    return NULL;
}

static UserObject *user_creatable_lookup(const char *id, guint *index)
{
    guint i;

    for (i = 0; objects && i < objects->len; i++) {
        UserObject *o = g_ptr_array_index(objects, i);

        if (!strcmp(o->id, id)) {
            if (index) {
                *index = i;
            }
            return o;
        }
    }
    return NULL;
}

/* QEMU's rule for ids: a letter, then letters, digits, '-', '.', '_'. */
static bool user_creatable_id_wellformed(const char *id)
{
    const char *p;

    if (!g_ascii_isalpha(id[0])) {
        return false;
    }
    for (p = id + 1; *p; p++) {
        if (!g_ascii_isalnum(*p) && !strchr("-._", *p)) {
            return false;
        }
    }
    return true;
}

bool user_creatable_add(JsonObject *args, GError **errp)
{
    g_autoptr(JsonObject) props = json_object_new();
    g_autoptr(GList) members = NULL;
    g_autofree char *type_name = NULL;
    g_autofree char *id = NULL;
    const UserCreatableType *type;
    UserObject *o;
    void *obj;
    GList *m;

    assert(qemu_in_main_thread());
    if (!keyval_get_str(args, "qom-type", NULL, &type_name, errp) ||
        !keyval_get_str(args, "id", NULL, &id, errp)) {
        return false;
    }
    if (!type_name) {
        error_setg(errp, "Parameter 'qom-type' is missing");
        return false;
    }
    type = user_creatable_find_type(type_name);
    if (!type) {
        error_setg(errp, "Parameter 'qom-type' does not accept value '%s'",
                   type_name);
        return false;
    }
    if (!id) {
        error_setg(errp, "Parameter 'id' is missing");
        return false;
    }
    if (!user_creatable_id_wellformed(id)) {
        error_setg(errp, "Parameter 'id' expects an identifier\n"
                   "Identifiers consist of letters, digits, '-', '.', '_', "
                   "starting with a letter.");
        return false;
    }
    if (user_creatable_lookup(id, NULL)) {
        error_setg(errp, "attempt to add duplicate property '%s' to object "
                   "(type 'container')", id);
        return false;
    }

    members = json_object_get_members(args);
    for (m = members; m; m = m->next) {
        if (strcmp(m->data, "qom-type") && strcmp(m->data, "id")) {
            json_object_set_member(props, m->data,
                                   json_object_dup_member(args, m->data));
        }
    }
    obj = type->create(id, props, errp);
    if (!obj) {
        return false;
    }

    o = g_new0(UserObject, 1);
    o->type = type;
    o->id = g_steal_pointer(&id);
    o->obj = obj;
    if (!objects) {
        objects = g_ptr_array_new();
    }
    g_ptr_array_add(objects, o);
    return true;
}

bool user_creatable_add_str(const char *optarg, GError **errp)
{
    g_autoptr(JsonObject) args = NULL;

    if (optarg[0] == '{') {
        g_autoptr(JsonNode) node = keyval_json_parse(optarg, errp);

        if (!node) {
            return false;
        }
        if (!JSON_NODE_HOLDS_OBJECT(node)) {
            error_setg(errp, "Invalid parameter type for 'object', "
                       "expected: object");
            return false;
        }
        args = json_object_ref(json_node_get_object(node));
    } else {
        args = keyval_parse(optarg, "qom-type", errp);
        if (!args) {
            return false;
        }
    }
    return user_creatable_add(args, errp);
}

static void user_object_free(UserObject *o)
{
    if (o->type->destroy) {
        o->type->destroy(o->obj);
    }
    g_free(o->id);
    g_free(o);
}

bool user_creatable_del(const char *id, GError **errp)
{
    UserObject *o;
    guint index;

    assert(qemu_in_main_thread());
    o = user_creatable_lookup(id, &index);
    if (!o) {
        error_setg(errp, "object '%s' not found", id);
        return false;
    }
    if (o->type->can_delete && !o->type->can_delete(o->obj, errp)) {
        return false;
    }
    g_ptr_array_remove_index(objects, index);
    user_object_free(o);
    return true;
}

void *user_creatable_find(const char *type_name, const char *id)
{
    UserObject *o = user_creatable_lookup(id, NULL);

    return o && !strcmp(o->type->name, type_name) ? o->obj : NULL;
}

void user_creatable_cleanup(void)
{
    while (objects && objects->len) {
        UserObject *o = g_ptr_array_steal_index(objects, objects->len - 1);

        user_object_free(o);
    }
    g_clear_pointer(&objects, g_ptr_array_unref);
}
