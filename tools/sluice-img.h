/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * sluice-img: what the subcommand files share.  sluice-img.c holds main(),
 * the dispatcher and the commands that inspect images (create, info,
 * check, map, resize, snapshot, amend, measure); img-convert.c the
 * commands that move data (convert, dd, compare, bench, rebase).
 *
 * Copyright (c) 2026 The Sluice authors
 */
#ifndef TOOLS_SLUICE_IMG_H
#define TOOLS_SLUICE_IMG_H

#include "tools/tool-common.h"

/*
 * Subcommands in img-convert.c.  Each gets the argv of the subcommand
 * (argv[0] is its name) and returns the process exit status.
 */
int img_convert(int argc, char **argv);
int img_dd(int argc, char **argv);
int img_compare(int argc, char **argv);
int img_bench(int argc, char **argv);
int img_rebase(int argc, char **argv);

/* In img-commit.c: qemu-img commit, run as a commit block job. */
int img_commit(int argc, char **argv);

/*
 * Parse a -o string ("a=1,b=on,,x"; ",," is a literal comma) against
 * @list into @into with typed values (see BlockOptDesc), with qemu-img's
 * messages for unknown names and bad values.  A later -o overrides an
 * earlier one.  false with @errp set on error.  (sluice-img.c)
 * As in QEMU, a bare "name" means name=on and "noname" name=off.  The
 * message has no file name in front ("Invalid parameter 'foo'"; create
 * prefixes the image name, convert does not); a bad size carries
 * qemu-img's two-line hint after a newline, so error_report() prints it
 * as qemu-img does.  Sizes and numbers are stored as JSON integers
 * (sizes above INT64_MAX wrap, as a uint64 cast to gint64).
 */
bool img_parse_opts(const BlockOptDesc *list, const char *optstr,
                    JsonObject *into, GError **errp);

/*
 * Add one -o argument to the accumulated option string *@acc (NULL at
 * first; joined with ','), as qemu-img does for repeated -o.  An empty
 * argument or one ending in an unescaped ',' is refused with qemu-img's
 * "Invalid option list: ..." (printed): returns false, exit with 1.
 */
bool img_add_opts(char **acc, const char *optarg);

/*
 * tool_open() for the subcommands, reporting failure as qemu-img does:
 * "Could not open 'NAME': " and the block layer's reason.  NULL on
 * failure (already reported).  Main thread.
 */
BlockBackend *img_open_blk(const char *filename, const char *fmt,
                           JsonObject *extra, bool image_opts, int flags,
                           bool writethrough, bool quiet);

/* True if the -o string asks for help ("help" or "?" among its items). */
bool img_opts_want_help(const char *optstr);

/* Print @list as `-o help` does: "Supported options:" and one per line. */
void img_print_opts_help(const BlockOptDesc *list);

/*
 * `-o help` for creating an image of format @drv (create, convert):
 * with a target @filename, every option of the format and its protocol
 * ("Supported options:"); with @filename NULL, only the format's own,
 * headed "Supported <fmt> options:" and followed by qemu-img's note that
 * the protocol may add more.
 */
void img_print_create_opts_help(BlockDriver *drv, const char *filename);

/*
 * Report an error the way qemu-img does for a subcommand's bad usage
 * ("<prog>: <msg>\nTry '<prog> --help' for more information").
 * Returns 1, the exit status to use.
 */
int G_GNUC_PRINTF(1, 2) img_usage_error(const char *fmt, ...);

/*
 * For getopt_long() returning '?' or ':' (start the option string with
 * ':' so a missing argument is told apart): qemu-img's "unrecognized
 * option '-x'" or "missing argument for option '-f'" usage error.
 * Returns 1.  Subcommands are entered with optind = 0 (getopt reset).
 */
int img_opt_error(int c, char **argv);

/* Print the --help text (what -h in any subcommand prints); returns 0. */
int img_help(void);

/*
 * Parse an image size argument (create, measure --size) with qemu-img's
 * errors ("Invalid image size specified. ..."), printed.  false on error.
 */
bool img_parse_image_size(const char *str, int64_t *out);

#endif /* TOOLS_SLUICE_IMG_H */
