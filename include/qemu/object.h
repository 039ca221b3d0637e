/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * User-creatable objects: what --object and object-add/del create by
 * type name and id (iothread; throttle-group and secret join as their
 * subsystems arrive).
 *
 * Copyright (c) 2026 The Sluice authors
 */
#ifndef QEMU_OBJECT_H
#define QEMU_OBJECT_H

#include <json-glib/json-glib.h>

typedef struct UserCreatableType {
    const char *name;
    /*
     * Create the object @id from @props (everything but qom-type and id;
     * the callee must refuse unknown properties).  Returns the object or
     * NULL with @errp set.  Main thread.
     */
    void *(*create)(const char *id, JsonObject *props, GError **errp);
    /*
     * May the object go (NULL: yes)?  false with @errp set if it is in
     * use.  Main thread.
     */
    bool (*can_delete)(void *obj, GError **errp);
    void (*destroy)(void *obj);
} UserCreatableType;

/* Make @type known; called from constructors. */
void user_creatable_register(const UserCreatableType *type);

/*
 * Create an object from --object syntax: "TYPE,id=ID,KEY=VALUE..." or a
 * JSON object {"qom-type": ..., "id": ..., ...}.  false with @errp set
 * (QEMU's messages) on error.  Main thread.
 */
bool user_creatable_add_str(const char *optarg, GError **errp);

/*
 * Create an object from @args: "qom-type", "id" and the properties,
 * flat or nested.  Main thread.
 */
bool user_creatable_add(JsonObject *args, GError **errp);

/* Delete object @id; false with @errp set if unknown or in use. */
bool user_creatable_del(const char *id, GError **errp);

/* The object @id if it is of type @type_name, or NULL.  Main thread. */
void *user_creatable_find(const char *type_name, const char *id);

/* Delete every object (at exit, in reverse creation order). */
void user_creatable_cleanup(void);

#endif /* QEMU_OBJECT_H */
