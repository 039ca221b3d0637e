/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What sluice-img, sluice-io and sluice-nbd share: the program name in
 * messages, QEMU-style error reporting, --object, and opening an image the
 * way the tools do.
 *
 * Copyright (c) 2026 The Sluice authors
 */
#ifndef TOOLS_TOOL_COMMON_H
#define TOOLS_TOOL_COMMON_H

#include "sysemu/block-backend.h"

/*
 * Set the program name (the basename of @argv0) and start the main loop.
 * Call first in main().
 */
void tool_init(const char *argv0);

/* The basename of argv[0], as messages start with it. */
const char *tool_progname(void);

/* "<prog>: <message>\n" on stderr. */
void G_GNUC_PRINTF(1, 2) error_report(const char *fmt, ...);
/* "<prog>: warning: <message>\n" on stderr. */
void G_GNUC_PRINTF(1, 2) warn_report(const char *fmt, ...);
/* error_report() of @err's message, then free @err.  NULL is ignored. */
void error_report_err(GError *err);

/*
 * --object TYPE,id=ID,PROP=VALUE... (or a JSON object): create the
 * user-creatable object.  false with @errp set on error.
 */
bool tool_object_add(const char *optarg, GError **errp);

/*
 * A size the way QEMU prints it: "512 B", "4 KiB", "1.5 GiB" (three
 * significant digits, the largest unit that keeps the value >= 1).
 * Free with g_free().
 */
char *size_to_str(uint64_t bytes);

/*
 * Open @filename for a tool.  With @image_opts, @filename is a keyval
 * string ("driver=raw,file.filename=x") and @fmt must be NULL; otherwise
 * @fmt (may be NULL: probe) is the format and @extra (may be NULL,
 * borrowed) adds options.  @flags are BDRV_O_*; @writethrough turns the
 * backend's write cache off.  A probed raw image gets QEMU's warning on
 * stderr unless @quiet (or opened read-only).  NULL with @errp set on
 * error: the block layer's message, which each tool prefixes its own way
 * ("Could not open 'x': ", "can't open device x: ").  Main thread.
 */
BlockBackend *tool_open(const char *filename, const char *fmt,
                        JsonObject *extra, bool image_opts, int flags,
                        bool writethrough, bool quiet, GError **errp);

#endif /* TOOLS_TOOL_COMMON_H */
