/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Checking QMP-style arguments of the export and NBD server commands the
 * way QEMU's schema checks them, with QEMU's messages.  Private to
 * block/export/.
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * Members are checked in schema order, so the first problem reported is
 * the one QEMU reports; unknown members are reported after every known
 * one has been checked.  In keyval mode (command-line options parsed by
 * keyval_parse()), scalars arrive as strings and are converted.
 */
#ifndef BLOCK_EXPORT_EXPORT_ARGS_H
#define BLOCK_EXPORT_EXPORT_ARGS_H

#include <json-glib/json-glib.h>

typedef enum BlkExpArgType {
    BLK_EXP_ARG_STR,
    BLK_EXP_ARG_BOOL,
    BLK_EXP_ARG_INT,
    BLK_EXP_ARG_UINT32,
    BLK_EXP_ARG_ENUM,
    BLK_EXP_ARG_OBJECT,
    BLK_EXP_ARG_ARRAY,
} BlkExpArgType;

/* One member; lists end with a NULL name. */
typedef struct BlkExpArgSpec {
    const char *name;
    BlkExpArgType type;
    bool required;
    const char *const *enum_values;     /* BLK_EXP_ARG_ENUM */
} BlkExpArgSpec;

/*
 * Check the members @spec lists ("Parameter 'P' is missing", "Invalid
 * parameter type for 'P', expected: T", "Parameter 'P' does not accept
 * value 'V'", "Parameter 'P' expects uint32_t"); @prefix goes before
 * each name ("addr.data.").
 */
bool blk_exp_check_args(JsonObject *args, const BlkExpArgSpec *spec,
                        const char *prefix, bool keyval, GError **errp);

/* "Parameter 'P' is unexpected" for a member none of @specs lists. */
bool blk_exp_check_unexpected(JsonObject *args,
                              const BlkExpArgSpec *const *specs,
                              const char *prefix, GError **errp);

/* Values of checked members (JSON-typed or keyval strings). */
char *blk_exp_arg_str(JsonObject *args, const char *name);
bool blk_exp_arg_bool(JsonObject *args, const char *name, bool def);
int64_t blk_exp_arg_int(JsonObject *args, const char *name, int64_t def);

#endif /* BLOCK_EXPORT_EXPORT_ARGS_H */
