/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * sluice-io's commands (read, write, map, open, reopen, break, ...) and
 * the image they work on, shared by the command line and the
 * interactive loop of tools/sluice-io.c.
 *
 * Copyright (c) 2026 The Sluice authors
 */
#ifndef TOOLS_IO_CMDS_H
#define TOOLS_IO_CMDS_H

#include "sysemu/block-backend.h"

/*
 * Open @name (NULL: @opts say everything) as the image the commands use.
 * @opts (may be NULL, borrowed) holds flat QEMU-style options
 * ("driver", "file.filename", ...) as JSON strings; @aio (NULL: the
 * default, threads) is the host I/O engine of the image's file.  Errors
 * are reported on stderr as qemu-io words them.  Returns 0 or a negative
 * errno.  Main thread.
 */
int sio_open(const char *name, JsonObject *opts, int flags,
             bool writethrough, bool force_share, const char *aio);

/* Wait for the aio requests, then close the image (if any). */
void sio_close(void);

/*
 * Run one command line: words separated by spaces, the first naming the
 * command.  Returns 0, or a negative errno when the command failed (the
 * tool then exits with status 1).  An empty line does nothing.
 */
int sio_command(const char *line);

/* True once the quit command ran. */
bool sio_quit_requested(void);

/* --image-opts: the path argument of 'open' is an option string too. */
void sio_set_image_opts(bool image_opts);

/* -m: hand the block layer buffers that are not aligned. */
void sio_set_misalign(bool misalign);

/*
 * The tool's option parsers, shared with 'open' and 'reopen': each
 * returns false (and changes nothing) for a value qemu-io refuses.
 */
bool sio_parse_discard(const char *mode, int *flags);
bool sio_parse_aio(const char *mode, const char **aio);

/*
 * Parse @text the way qemu-io parses -o and --image-opts strings
 * (key=value,... with ",," for a comma; a bare "key" is the deprecated
 * short form of key=on, "nokey" of key=off, with qemu-io's warning) and
 * add the options to the flat object @opts, later keys replacing earlier
 * ones.  false after reporting an error.
 */
bool sio_parse_opts(JsonObject *opts, const char *text);

#endif /* TOOLS_IO_CMDS_H */
