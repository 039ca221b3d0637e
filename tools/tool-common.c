/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What the command-line tools share: messages in QEMU's format, --object
 * and opening images.
 *
 * Copyright (c) 2026 The Sluice authors
 */
#include "qemu/osdep.h"

#include <math.h>
#include <stdarg.h>

#include "block/block.h"
#include "qemu/keyval.h"
#include "qemu/main-loop.h"
#include "qemu/object.h"
#include "tools/tool-common.h"

static char *progname;

void tool_init(const char *argv0)
{
    progname = g_path_get_basename(argv0);
    if (!qemu_init_main_loop(NULL)) {
        fprintf(stderr, "%s: could not start the main loop\n", progname);
        exit(1);
    }
}

const char *tool_progname(void)
{
    return progname ?: "sluice";
}

static void G_GNUC_PRINTF(2, 0) tool_vreport(const char *kind,
                                             const char *fmt, va_list ap)
{
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);

    /*
     * No fflush(stdout) first: QEMU's tools do not flush, and scripts that
     * capture both streams see their order, which iotests compare.
     */
    fprintf(stderr, "%s: %s%s\n", tool_progname(), kind, msg);
}

void error_report(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    tool_vreport("", fmt, ap);
    va_end(ap);
}

void warn_report(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    tool_vreport("warning: ", fmt, ap);
    va_end(ap);
}

void error_report_err(GError *err)
{
    if (err) {
        error_report("%s", err->message);
        g_error_free(err);
    }
}

bool tool_object_add(const char *optarg, GError **errp)
{
    /*
     * qemu-img, qemu-io and qemu-nbd run no iothreads: they refuse the
     * type once the object is otherwise well formed.
     */
    g_autoptr(JsonObject) args = NULL;

    if (optarg[0] == '{') {
        g_autoptr(JsonNode) node = keyval_json_parse(optarg, NULL);

        if (node && JSON_NODE_HOLDS_OBJECT(node)) {
            args = json_object_ref(json_node_get_object(node));
        }
    } else {
        args = keyval_parse(optarg, "qom-type", NULL);
    }
    if (args && json_object_has_member(args, "id") &&
        !g_strcmp0(json_object_get_string_member_with_default(
                       args, "qom-type", NULL), "iothread")) {
        error_setg(errp, "invalid object type: iothread");
        return false;
    }
    /* Anything malformed gets the registry's own message. */
    return user_creatable_add_str(optarg, errp);
}

char *size_to_str(uint64_t bytes)
{
    static const char *const units[] = {
        "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB",
    };
    unsigned int i = 0;

    /*
     * The largest unit in which the value is still at least 1000/1024:
     * 1047552 bytes are "0.999 MiB", not "1023 KiB".
     */
    while (i + 1 < G_N_ELEMENTS(units) &&
           bytes / 1000.0 >= ldexp(1, 10 * i)) {
        i++;
    }
    return g_strdup_printf("%0.3g %s", bytes / ldexp(1, 10 * i), units[i]);
}

BlockBackend *tool_open(const char *filename, const char *fmt,
                        JsonObject *extra, bool image_opts, int flags,
                        bool writethrough, bool quiet, GError **errp)
{
    g_autoptr(JsonObject) opts = NULL;
    g_autoptr(GList) members = NULL;
    BlockBackend *blk;
    GList *m;

    if (image_opts) {
        assert(!fmt);
        opts = keyval_parse(filename, NULL, errp);
        if (!opts) {
            return NULL;
        }
        filename = NULL;
    } else {
        opts = json_object_new();
        if (fmt) {
            json_object_set_string_member(opts, "driver", fmt);
        }
    }
    if (extra) {
        members = json_object_get_members(extra);
        for (m = members; m; m = m->next) {
            json_object_set_member(opts, m->data,
                                   json_object_dup_member(extra, m->data));
        }
    }

    blk = blk_new_open(filename, opts, flags, errp);
    if (!blk) {
        return NULL;
    }
    if (writethrough) {
        blk_set_enable_write_cache(blk, false);
    }
    /* The restriction only matters to writers, as QEMU's warning. */
    if (!quiet && (flags & BDRV_O_RDWR) && bdrv_is_probed_raw(blk_bs(blk))) {
        fprintf(stderr, "WARNING: Image format was not specified for '%s' "
                "and probing guessed raw.\n"
                "         Automatically detecting the format is dangerous "
                "for raw images, write operations on block 0 will be "
                "restricted.\n"
                "         Specify the 'raw' format explicitly to remove the "
                "restrictions.\n", filename);
    }
    return blk;
}
