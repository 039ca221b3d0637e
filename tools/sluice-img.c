/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * sluice-img: the disk image tool, a drop-in for qemu-img.  This file has
 * main(), the dispatcher, the help text, the helpers every subcommand
 * shares (-o parsing, usage errors) and the commands that create and
 * inspect images: create, info, check, map, resize, snapshot, amend and
 * measure.
 *
 * Copyright (c) 2026 The Sluice authors
 */

#include "qemu/osdep.h"

#include <getopt.h>

#include "config-host.h"
#include "tools/sluice-img.h"
#include "block/block_int.h"
#include "qemu/coroutine.h"
#include "qemu/keyval.h"
#include "block/aio-wait.h"

BlockBackend *img_open_blk(const char *filename, const char *fmt,
                           JsonObject *extra, bool image_opts, int flags,
                           bool writethrough, bool quiet)
{
    GError *err = NULL;
    BlockBackend *blk = tool_open(filename, fmt, extra, image_opts, flags,
                                  writethrough, quiet, &err);

    if (!blk) {
        error_report("Could not open '%s': %s", filename, err->message);
        g_error_free(err);
    }
    return blk;
}

/* ---- Shared helpers (declared in sluice-img.h) ---- */

/*
 * qemu-img refuses an empty -o argument and one that ends in a separator
 * (an odd run of trailing commas; ",," is an escaped comma).
 */
static bool img_opts_string_valid(const char *optarg)
{
    size_t len = strlen(optarg);
    size_t commas = 0;

    if (len == 0) {
        return false;
    }
    while (commas < len && optarg[len - 1 - commas] == ',') {
        commas++;
    }
    return commas % 2 == 0;
}

bool img_add_opts(char **acc, const char *optarg)
{
    char *joined;

    if (!img_opts_string_valid(optarg)) {
        error_report("Invalid option list: %s", optarg);
        return false;
    }
    if (*acc) {
        joined = g_strdup_printf("%s,%s", *acc, optarg);
        g_free(*acc);
        *acc = joined;
    } else {
        *acc = g_strdup(optarg);
    }
    return true;
}

/*
 * One item of an option string: the name and its unescaped value.  A bare
 * "name" means name=on, a bare "noname" name=off, as in QEMU's option
 * syntax.  *@pp moves past the item and its separator.
 */
static void img_next_opt(const char **pp, char **name, char **value)
{
    const char *p = *pp;
    const char *start = p;
    GString *v;

    while (*p && *p != '=' && *p != ',') {
        p++;
    }
    if (*p != '=') {
        g_autofree char *bare = g_strndup(start, p - start);

        if (g_str_has_prefix(bare, "no")) {
            *name = g_strdup(bare + 2);
            *value = g_strdup("off");
        } else {
            *name = g_steal_pointer(&bare);
            *value = g_strdup("on");
        }
        if (*p == ',') {
            p++;
        }
        *pp = p;
        return;
    }

    *name = g_strndup(start, p - start);
    p++;
    v = g_string_new(NULL);
    while (*p) {
        if (*p == ',') {
            if (p[1] != ',') {
                p++;
                break;
            }
            p++;
        }
        g_string_append_c(v, *p);
        p++;
    }
    *value = g_string_free(v, false);
    *pp = p;
}

/* Split an option string into its items' names, for the help check. */
bool img_opts_want_help(const char *optstr)
{
    const char *p = optstr;

    if (!optstr) {
        return false;
    }
    while (*p) {
        const char *start = p;
        g_autofree char *item = NULL;

        /* An item runs to the next single comma. */
        while (*p) {
            if (*p == ',') {
                if (p[1] != ',') {
                    break;
                }
                p++;
            }
            p++;
        }
        item = g_strndup(start, p - start);
        if (!strcmp(item, "help") || !strcmp(item, "?")) {
            return true;
        }
        if (*p == ',') {
            p++;
        }
    }
    return false;
}

static const BlockOptDesc *img_find_desc(const BlockOptDesc *list,
                                         const char *name)
{
    for (; list && list->name; list++) {
        if (!strcmp(list->name, name)) {
            return list;
        }
    }
    return NULL;
}

static bool img_parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = { "on", "yes", "true", "y" };
    static const char *const no[] = { "off", "no", "false", "n" };

    for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
        if (!strcmp(s, yes[i])) {
            *out = true;
            return true;
        }
        if (!strcmp(s, no[i])) {
            *out = false;
            return true;
        }
    }
    return false;
}

/* A value of a size option @name, worded as QEMU's option parser. */
static bool img_parse_size_value(const char *name, const char *value,
                                 uint64_t *out, GError **errp)
{
    int ret = qemu_strtosz(value, NULL, out);

    if (ret == -ERANGE) {
        error_setg(errp, "Value '%s' is out of range for parameter '%s'",
                   value, name);
        return false;
    } else if (ret < 0) {
        error_setg(errp, "Parameter '%s' expects a non-negative "
                   "number below 2^64\n"
                   "Optional suffix k, M, G, T, P or E means "
                   "kilo-, mega-, giga-, tera-, peta-\n"
                   "and exabytes, respectively.", name);
        return false;
    }
    return true;
}

/*
 * img_parse_opts(), also keeping in @raw (may be NULL) the text of each
 * value as qemu-img echoes it in "Formatting ..." lines.
 */
static bool img_parse_opts_raw(const BlockOptDesc *list, const char *optstr,
                               JsonObject *into, JsonObject *raw,
                               GError **errp)
{
    const char *p = optstr ? optstr : "";

    while (*p) {
        g_autofree char *name = NULL;
        g_autofree char *value = NULL;
        const BlockOptDesc *desc;

        img_next_opt(&p, &name, &value);
        desc = img_find_desc(list, name);
        if (!desc) {
            error_setg(errp, "Invalid parameter '%s'", name);
            return false;
        }

        switch (desc->type) {
        case BLOCK_OPT_TYPE_STRING:
            json_object_set_string_member(into, name, value);
            break;
        case BLOCK_OPT_TYPE_BOOL: {
            bool b;

            if (!img_parse_bool(value, &b)) {
                error_setg(errp, "Parameter '%s' expects 'on' or 'off'",
                           name);
                return false;
            }
            json_object_set_boolean_member(into, name, b);
            break;
        }
        case BLOCK_OPT_TYPE_NUMBER: {
            g_autoptr(JsonObject) tmp = json_object_new();
            uint64_t n;

            json_object_set_string_member(tmp, name, value);
            if (!keyval_get_uint(tmp, name, 0, &n, errp)) {
                return false;
            }
            json_object_set_int_member(into, name, (gint64)n);
            break;
        }
        case BLOCK_OPT_TYPE_SIZE: {
            uint64_t n;

            if (!img_parse_size_value(name, value, &n, errp)) {
                return false;
            }
            json_object_set_int_member(into, name, (gint64)n);
            break;
        }
        default:
            g_assert_not_reached();
        }
        if (raw) {
            json_object_set_string_member(raw, name, value);
        }
    }
    return true;
}

bool img_parse_opts(const BlockOptDesc *list, const char *optstr,
                    JsonObject *into, GError **errp)
{
    return img_parse_opts_raw(list, optstr, into, NULL, errp);
}

static const char *img_opt_type_name(BlockOptType type)
{
    switch (type) {
    case BLOCK_OPT_TYPE_STRING:
        return "str";
    case BLOCK_OPT_TYPE_BOOL:
        return "bool (on/off)";
    case BLOCK_OPT_TYPE_NUMBER:
        return "num";
    case BLOCK_OPT_TYPE_SIZE:
        return "size";
    }
    g_assert_not_reached();
}

static gint img_desc_cmp(gconstpointer a, gconstpointer b)
{
    const BlockOptDesc *da = *(const BlockOptDesc *const *)a;
    const BlockOptDesc *db = *(const BlockOptDesc *const *)b;

    return strcmp(da->name, db->name);
}

/* The lines of an option list, sorted by name as qemu-img lists them. */
static void img_print_opt_lines(const BlockOptDesc *list)
{
    g_autoptr(GPtrArray) sorted = g_ptr_array_new();

    for (; list && list->name; list++) {
        g_ptr_array_add(sorted, (gpointer)list);
    }
    g_ptr_array_sort(sorted, img_desc_cmp);
    for (guint i = 0; i < sorted->len; i++) {
        const BlockOptDesc *d = g_ptr_array_index(sorted, i);
        g_autofree char *head = g_strdup_printf("%s=<%s>", d->name,
                                                img_opt_type_name(d->type));

        if (d->help) {
            printf("  %-22s - %s\n", head, d->help);
        } else {
            printf("  %s\n", head);
        }
    }
}

void img_print_opts_help(const BlockOptDesc *list)
{
    printf("Supported options:\n");
    img_print_opt_lines(list);
}

void img_print_create_opts_help(BlockDriver *drv, const char *filename)
{
    g_autofree BlockOptDesc *all = NULL;

    if (!filename) {
        /* Without a target the protocol, and so its options, is unknown. */
        printf("Supported %s options:\n", drv->format_name);
        img_print_opt_lines(drv->create_opts);
        printf("\nThe protocol level may support further options.\n"
               "Specify the target filename to include those options.\n");
        return;
    }
    all = bdrv_create_opts_list(drv, filename);
    img_print_opts_help(all);
}

int img_usage_error(const char *fmt, ...)
{
    va_list ap;
    g_autofree char *msg = NULL;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    error_report("%s", msg);
    fprintf(stderr, "Try '%s --help' for more information\n",
            tool_progname());
    return 1;
}

int img_opt_error(int c, char **argv)
{
    const char *opt = argv[optind - 1];

    if (c == ':') {
        return img_usage_error("missing argument for option '%s'", opt);
    }
    return img_usage_error("unrecognized option '%s'", opt);
}

bool img_parse_image_size(const char *str, int64_t *out)
{
    uint64_t n;
    int ret = qemu_strtosz(str, NULL, &n);

    if (ret == -ERANGE || (ret == 0 && n > INT64_MAX)) {
        error_report("Invalid image size specified. Must be between 0 "
                     "and %" PRId64 ".", INT64_MAX);
        return false;
    } else if (ret < 0) {
        error_report("Invalid image size specified. You may use k, M, G, "
                     "T, P or E suffixes for");
        error_report("kilobytes, megabytes, gigabytes, terabytes, "
                     "petabytes and exabytes.");
        return false;
    }
    *out = n;
    return true;
}

/* ---- Help and version ---- */

/*
 * The synopsis lines are qemu-img 7.2's, since scripts and users know the
 * commands by them; the rest is ours.  bitmap is not offered (no Sluice
 * format has dirty bitmaps).
 */
static const char *const img_synopses[] = {
    "amend [--object objectdef] [--image-opts] [-p] [-q] [-f fmt] "
    "[-t cache] [--force] -o options filename",
    "bench [-c count] [-d depth] [-f fmt] "
    "[--flush-interval=flush_interval] [-i aio] [-n] [--no-drain] "
    "[-o offset] [--pattern=pattern] [-q] [-s buffer_size] "
    "[-S step_size] [-t cache] [-w] [-U] filename",
    "check [--object objectdef] [--image-opts] [-q] [-f fmt] "
    "[--output=ofmt] [-r [leaks | all]] [-T src_cache] [-U] filename",
    "commit [--object objectdef] [--image-opts] [-q] [-f fmt] [-t cache] "
    "[-b base] [-r rate_limit] [-d] [-p] filename",
    "compare [--object objectdef] [--image-opts] [-f fmt] [-F fmt] "
    "[-T src_cache] [-p] [-q] [-s] [-U] filename1 filename2",
    "convert [--object objectdef] [--image-opts] [--target-image-opts] "
    "[--target-is-zero] [--bitmaps] [-U] [-C] [-c] [-p] [-q] [-n] "
    "[-f fmt] [-t cache] [-T src_cache] [-O output_fmt] "
    "[-B backing_file [-F backing_fmt]] [-o options] [-l snapshot_param] "
    "[-S sparse_size] [-r rate_limit] [-m num_coroutines] [-W] "
    "[--salvage] filename [filename2 [...]] output_filename",
    "create [--object objectdef] [-q] [-f fmt] "
    "[-b backing_file [-F backing_fmt]] [-u] [-o options] filename [size]",
    "dd [--image-opts] [-U] [-f fmt] [-O output_fmt] [bs=block_size] "
    "[count=blocks] [skip=blocks] if=input of=output",
    "info [--object objectdef] [--image-opts] [-f fmt] [--output=ofmt] "
    "[--backing-chain] [-U] filename",
    "map [--object objectdef] [--image-opts] [-f fmt] "
    "[--start-offset=offset] [--max-length=len] [--output=ofmt] [-U] "
    "filename",
    "measure [--output=ofmt] [-O output_fmt] [-o options] [--size N | "
    "[--object objectdef] [--image-opts] [-f fmt] [-l snapshot_param] "
    "filename]",
    "snapshot [--object objectdef] [--image-opts] [-U] [-q] "
    "[-l | -a snapshot | -c snapshot | -d snapshot] filename",
    "rebase [--object objectdef] [--image-opts] [-U] [-q] [-f fmt] "
    "[-t cache] [-T src_cache] [-p] [-u] -b backing_file "
    "[-F backing_fmt] filename",
    "resize [--object objectdef] [--image-opts] [-f fmt] "
    "[--preallocation=prealloc] [-q] [--shrink] filename [+ | -]size",
};

/* Formats and protocols this build may know, in the order we list them. */
static const char *const img_known_drivers[] = {
    "blkdebug", "file", "host_device", "nbd", "null-aio", "null-co",
    "qed", "raw", "throttle",
};

static void img_print_version(void)
{
    printf("%s version %s (compatible with qemu-img 7.2)\n"
           "Copyright (c) 2026 The Sluice authors\n",
           tool_progname(), SLUICE_VERSION);
}

int img_help(void)
{
    const char *prog = tool_progname();

    img_print_version();
    printf("usage: %s [standard options] command [command options]\n"
           "Sluice disk image utility, command-line compatible with "
           "qemu-img\n"
           "\n"
           "    '-h', '--help'       print this text and exit\n"
           "    '-V', '--version'    print the version and exit\n"
           "    '-T', '--trace'      [[enable=]<pattern>][,events=<file>]"
           "[,file=<file>]\n"
           "                         accepted for compatibility; "
           "tracing is not built in\n"
           "\n"
           "Command syntax:\n", prog);
    for (size_t i = 0; i < ARRAY_SIZE(img_synopses); i++) {
        printf("  %s\n", img_synopses[i]);
    }
    printf("\n"
           "Command parameters:\n"
           "  'filename' names a disk image (a host file, or json:{...} "
           "with node options)\n"
           "  'objectdef' defines a user-creatable object, e.g. "
           "'iothread,id=io0'\n"
           "  'fmt' is an image format; without it the format is probed,\n"
           "    which is unsafe for raw images\n"
           "  'cache' is the host cache mode for writing: 'none', "
           "'writeback' (the\n"
           "    default except for convert), 'writethrough', "
           "'directsync' or 'unsafe'\n"
           "    (the default for convert)\n"
           "  'src_cache' is the cache mode for reading source images "
           "(same values)\n"
           "  'size' is a byte count; the suffixes k/K, M, G, T, P and E "
           "multiply by\n"
           "    powers of 1024, and 'b' means bytes\n"
           "  'output_filename' and 'output_fmt' name the image to write "
           "and its format\n"
           "  'options' is a comma-separated list of name=value creation "
           "options;\n"
           "    '-o help' lists what a format accepts\n"
           "  'snapshot_param' selects an internal snapshot: "
           "'snapshot.id=[ID],snapshot.name=[NAME]'\n"
           "    or '[ID_OR_NAME]'\n"
           "  '-c' asks for a compressed target (formats with "
           "compression only)\n"
           "  '-u' skips opening the backing file: rebase trusts that "
           "the old and new\n"
           "       backing files hold the same data, create records the "
           "name as given\n"
           "  '-h' prints this text, whether or not a command is given\n"
           "  '-p' shows progress (for the commands that copy data)\n"
           "  '-q' quiet: nothing is printed but errors\n"
           "  '-S' is the run of zero bytes (4k by default) that convert "
           "leaves sparse;\n"
           "       0 writes every byte\n"
           "  '--output' selects 'human' (the default) or 'json' output\n"
           "  '-n' writes into an existing target instead of creating "
           "it\n"
           "\n"
           "check:\n"
           "  '-r leaks' repairs leaked clusters only; '-r all' repairs "
           "every kind of\n"
           "       inconsistency, which may make existing damage "
           "harder to see\n"
           "\n"
           "convert:\n"
           "  '--bitmaps' copies the persistent bitmaps of the source\n"
           "  '-m' is the number of parallel copy workers (8 by "
           "default)\n"
           "  '-W' lets writes to the target happen out of order\n"
           "\n"
           "snapshot:\n"
           "  '-l' lists, '-c' creates, '-a' applies and '-d' deletes "
           "internal snapshots\n"
           "\n"
           "compare:\n"
           "  '-f' and '-F' are the formats of the first and second "
           "image\n"
           "  '-s' strict: images of different size or allocation "
           "differ\n"
           "\n"
           "dd:\n"
           "  'bs=BYTES' block size (512 by default), 'count=N' blocks "
           "to copy,\n"
           "  'skip=N' blocks to skip in the input, 'if=FILE' the input, "
           "'of=FILE' the output\n"
           "\n"
           "Supported formats:");
    for (size_t i = 0; i < ARRAY_SIZE(img_known_drivers); i++) {
        if (bdrv_find_format(img_known_drivers[i])) {
            printf(" %s", img_known_drivers[i]);
        }
    }
    printf("\n\nSee docs/tools/sluice-img.md for the details.\n");
    return 0;
}


/* Long-only options of the subcommands. */
enum {
    OPTION_OUTPUT = 256,
    OPTION_BACKING_CHAIN,
    OPTION_OBJECT,
    OPTION_IMAGE_OPTS,
    OPTION_START_OFFSET,
    OPTION_MAX_LENGTH,
    OPTION_SIZE,
    OPTION_PREALLOCATION,
    OPTION_SHRINK,
    OPTION_FORCE,
};

typedef enum ImgOutputFormat {
    OFORMAT_HUMAN,
    OFORMAT_JSON,
} ImgOutputFormat;

static bool img_parse_output(const char *arg, ImgOutputFormat *out)
{
    if (!strcmp(arg, "json")) {
        *out = OFORMAT_JSON;
    } else if (!strcmp(arg, "human")) {
        *out = OFORMAT_HUMAN;
    } else {
        error_report("--output must be used with human or json as "
                     "argument.");
        return false;
    }
    return true;
}

static bool img_object_add(const char *arg)
{
    GError *err = NULL;

    if (!tool_object_add(arg, &err)) {
        error_report_err(err);
        return false;
    }
    return true;
}

/* ---- create ---- */

/*
 * The order in which qemu-img echoes creation options in its
 * "Formatting ..." line: the format's options, then the protocol's.
 * Options not named here follow in the order of their list.
 */
static const char *const img_create_echo_order[] = {
    "size", "backing_file", "backing_fmt", "cluster_size", "table_size",
    "nocow", "preallocation", "extent_size_hint",
};

/* Defaults qemu-img echoes even when the user did not set them. */
static const struct {
    const char *format;
    const char *name;
    const char *value;
} img_create_echo_defaults[] = {
    { "qed", "cluster_size", "65536" },
};

static void img_echo_opt(GString *line, const BlockOptDesc *d,
                         JsonObject *opts, JsonObject *raw,
                         const char *fmt)
{
    if (!json_object_has_member(opts, d->name)) {
        for (size_t i = 0; i < ARRAY_SIZE(img_create_echo_defaults); i++) {
            if (!strcmp(img_create_echo_defaults[i].format, fmt) &&
                !strcmp(img_create_echo_defaults[i].name, d->name)) {
                g_string_append_printf(line, " %s=%s", d->name,
                                       img_create_echo_defaults[i].value);
            }
        }
        return;
    }
    g_string_append_printf(line, " %s=", d->name);
    if (d->type == BLOCK_OPT_TYPE_SIZE) {
        g_string_append_printf(line, "%" PRIu64,
                               (uint64_t)json_object_get_int_member(
                                   opts, d->name));
    } else {
        /* The text as given, with commas escaped again. */
        const char *v = json_object_get_string_member(raw, d->name);

        for (; *v; v++) {
            if (*v == ',') {
                g_string_append_c(line, ',');
            }
            g_string_append_c(line, *v);
        }
    }
}

static void img_echo_create(const char *filename, const char *fmt,
                            const BlockOptDesc *list, JsonObject *opts,
                            JsonObject *raw)
{
    g_autoptr(GString) line = g_string_new(NULL);
    const BlockOptDesc *d;

    g_string_append_printf(line, "Formatting '%s', fmt=%s", filename, fmt);
    for (size_t i = 0; i < ARRAY_SIZE(img_create_echo_order); i++) {
        d = img_find_desc(list, img_create_echo_order[i]);
        if (d) {
            img_echo_opt(line, d, opts, raw, fmt);
        }
    }
    for (d = list; d->name; d++) {
        bool known = false;

        for (size_t i = 0; i < ARRAY_SIZE(img_create_echo_order); i++) {
            known |= !strcmp(d->name, img_create_echo_order[i]);
        }
        if (!known) {
            img_echo_opt(line, d, opts, raw, fmt);
        }
    }
    printf("%s\n", line->str);
}

/* A backing file name as the new image will resolve it. */
static char *img_backing_path(const char *filename, const char *backing)
{
    g_autofree char *dir = NULL;

    if (g_path_is_absolute(backing) || keyval_is_json_filename(backing) ||
        !strchr(filename, '/')) {
        return g_strdup(backing);
    }
    dir = g_path_get_dirname(filename);
    return g_build_filename(dir, backing, NULL);
}

/*
 * Open the backing file the new image will name, as qemu-img does to
 * check it and to take its size.  Returns 0, or 1 after reporting.
 */
static int img_create_check_backing(const char *filename,
                                    const char *backing_file,
                                    const char *backing_fmt,
                                    bool need_size, int64_t *size)
{
    g_autofree char *path = img_backing_path(filename, backing_file);
    g_autoptr(JsonObject) options = json_object_new();
    BlockDriverState *bs;
    GError *err = NULL;
    int64_t len;

    if (backing_fmt) {
        json_object_set_string_member(options, "driver", backing_fmt);
    }
    bs = bdrv_open(path, options, BDRV_O_NO_BACKING | BDRV_O_FORCE_SHARE,
                   &err);
    if (!bs) {
        error_report("%s: %s\nCould not open backing image.", filename,
                     err->message);
        g_error_free(err);
        return 1;
    }
    if (!backing_fmt) {
        /* qemu-img ends this message without a newline. */
        fprintf(stderr, "%s: %s: Backing file specified without backing "
                "format\nDetected format of %s.", tool_progname(), filename,
                bdrv_get_format_name(bs));
        bdrv_unref(bs);
        return 1;
    }
    if (need_size) {
        len = bdrv_getlength(bs);
        if (len < 0) {
            error_report("%s: Could not get size of '%s': %s", filename,
                         path, g_strerror(-len));
            bdrv_unref(bs);
            return 1;
        }
        *size = len;
    }
    bdrv_unref(bs);
    return 0;
}

static int img_do_create(const char *filename, const char *fmt,
                         const char *base_filename, const char *base_fmt,
                         const char *optstr, int64_t img_size, bool unsafe,
                         bool quiet)
{
    g_autoptr(JsonObject) opts = json_object_new();
    g_autoptr(JsonObject) raw = json_object_new();
    g_autofree BlockOptDesc *list = NULL;
    const char *backing_file = NULL;
    const char *backing_fmt = NULL;
    BlockDriver *drv, *proto;
    GError *err = NULL;
    int64_t size = img_size;
    int ret;

    drv = bdrv_find_format(fmt);
    if (!drv) {
        error_report("%s: Unknown file format '%s'", filename, fmt);
        return 1;
    }
    proto = bdrv_find_protocol(filename, &err);
    if (!proto) {
        error_report("%s: %s", filename, err->message);
        g_error_free(err);
        return 1;
    }
    if (!drv->create_opts || !drv->bdrv_co_create_opts) {
        error_report("%s: Format driver '%s' does not support image "
                     "creation", filename, drv->format_name);
        return 1;
    }
    if (!proto->create_opts || !proto->bdrv_co_create_opts) {
        error_report("%s: Protocol driver '%s' does not support image "
                     "creation", filename, proto->format_name);
        return 1;
    }

    list = bdrv_create_opts_list(drv, filename);
    if (!img_parse_opts_raw(list, optstr, opts, raw, &err)) {
        error_report("%s: %s", filename, err->message);
        g_error_free(err);
        return 1;
    }

    if (img_size >= 0) {
        if (json_object_has_member(opts, "size")) {
            error_report("%s: The image size must be specified only once",
                         filename);
            return 1;
        }
        json_object_set_int_member(opts, "size", img_size);
        json_object_set_string_member(raw, "size", "");
    } else if (json_object_has_member(opts, "size")) {
        size = json_object_get_int_member(opts, "size");
    }

    if (base_filename) {
        if (!img_find_desc(list, "backing_file")) {
            error_report("%s: Backing file not supported for file format "
                         "'%s'", filename, fmt);
            return 1;
        }
        json_object_set_string_member(opts, "backing_file", base_filename);
        json_object_set_string_member(raw, "backing_file", base_filename);
    }
    if (base_fmt) {
        if (!img_find_desc(list, "backing_fmt")) {
            error_report("%s: Backing file format not supported for file "
                         "format '%s'", filename, fmt);
            return 1;
        }
        json_object_set_string_member(opts, "backing_fmt", base_fmt);
        json_object_set_string_member(raw, "backing_fmt", base_fmt);
    }

    if (json_object_has_member(opts, "backing_file")) {
        backing_file = json_object_get_string_member(opts, "backing_file");
    }
    if (json_object_has_member(opts, "backing_fmt")) {
        backing_fmt = json_object_get_string_member(opts, "backing_fmt");
    }
    if (backing_file) {
        if (!strcmp(filename, backing_file)) {
            error_report("%s: Error: Trying to create an image with the "
                         "same filename as the backing file", filename);
            return 1;
        }
        if (backing_file[0] == '\0') {
            error_report("%s: Expected backing file name, got empty string",
                         filename);
            return 1;
        }
        if (unsafe && !backing_fmt) {
            error_report("%s: Backing file specified without backing "
                         "format", filename);
            return 1;
        }
        if (!unsafe) {
            if (img_create_check_backing(filename, backing_file,
                                         backing_fmt, size < 0, &size)) {
                return 1;
            }
            if (!json_object_has_member(opts, "size")) {
                json_object_set_int_member(opts, "size", size);
            }
        }
    }

    if (size < 0) {
        error_report("%s: Image creation needs a size parameter", filename);
        return 1;
    }

    if (!quiet) {
        img_echo_create(filename, fmt, list, opts, raw);
        fflush(stdout);
    }
    ret = bdrv_create(drv, filename, opts, &err);
    if (ret == -EFBIG) {
        /* qemu-img words this one itself, whatever the driver said. */
        error_report("%s: The image size is too large for file format "
                     "'%s'%s", filename, fmt,
                     json_object_has_member(raw, "cluster_size") ?
                     " (try using a larger cluster size)" : "");
        g_error_free(err);
        return 1;
    } else if (ret < 0) {
        error_report("%s: %s", filename, err->message);
        g_error_free(err);
        return 1;
    }
    return 0;
}

static int img_create_help(const char *fmt, const char *filename)
{
    BlockDriver *drv = bdrv_find_format(fmt);

    if (!drv) {
        error_report("Unknown file format '%s'", fmt);
        return 1;
    }
    if (!drv->create_opts) {
        error_report("Format driver '%s' does not support image creation",
                     fmt);
        return 1;
    }
    img_print_create_opts_help(drv, filename);
    return 0;
}

static int img_create(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, OPTION_OBJECT },
        { NULL, 0, NULL, 0 },
    };
    g_autofree char *options = NULL;
    const char *fmt = "raw";
    const char *base_fmt = NULL;
    const char *base_filename = NULL;
    const char *filename;
    bool quiet = false;
    bool unsafe = false;
    int64_t img_size = -1;
    int c;

    while ((c = getopt_long(argc, argv, ":F:b:f:ho:qu", long_options,
                            NULL)) != -1) {
        switch (c) {
        case 'h':
            return img_help();
        case 'F':
            base_fmt = optarg;
            break;
        case 'b':
            base_filename = optarg;
            break;
        case 'f':
            fmt = optarg;
            break;
        case 'o':
            if (!img_add_opts(&options, optarg)) {
                return 1;
            }
            break;
        case 'q':
            quiet = true;
            break;
        case 'u':
            unsafe = true;
            break;
        case OPTION_OBJECT:
            if (!img_object_add(optarg)) {
                return 1;
            }
            break;
        default:
            return img_opt_error(c, argv);
        }
    }

    if (img_opts_want_help(options)) {
        return img_create_help(fmt, optind < argc ? argv[optind] : NULL);
    }
    if (optind >= argc) {
        return img_usage_error("Expecting image file name");
    }
    filename = argv[optind++];

    if (optind < argc) {
        if (!img_parse_image_size(argv[optind++], &img_size)) {
            return 1;
        }
    }
    if (optind != argc) {
        return img_usage_error("Unexpected argument: %s", argv[optind]);
    }

    return img_do_create(filename, fmt, base_filename, base_fmt, options,
                         img_size, unsafe, quiet);
}

/* ---- JSON output in QEMU's pretty layout ---- */

static void img_json_string(GString *out, const char *s)
{
    const char *p = s;

    g_string_append_c(out, '"');
    while (*p) {
        gunichar c = g_utf8_get_char_validated(p, -1);

        if (c == (gunichar)-1 || c == (gunichar)-2) {
            /* Not UTF-8: one replacement character per bad byte. */
            g_string_append(out, "\\uFFFD");
            p++;
            continue;
        }
        p = g_utf8_next_char(p);
        switch (c) {
        case '"':
            g_string_append(out, "\\\"");
            break;
        case '\\':
            g_string_append(out, "\\\\");
            break;
        case '\b':
            g_string_append(out, "\\b");
            break;
        case '\f':
            g_string_append(out, "\\f");
            break;
        case '\n':
            g_string_append(out, "\\n");
            break;
        case '\r':
            g_string_append(out, "\\r");
            break;
        case '\t':
            g_string_append(out, "\\t");
            break;
        default:
            if (c >= 0x20 && c < 0x7f) {
                g_string_append_c(out, c);
            } else if (c > 0xffff) {
                /* Outside the BMP: a UTF-16 surrogate pair. */
                gunichar v = c - 0x10000;

                g_string_append_printf(out, "\\u%04X\\u%04X",
                                       0xd800 + (v >> 10),
                                       0xdc00 + (v & 0x3ff));
            } else {
                g_string_append_printf(out, "\\u%04X", c);
            }
        }
    }
    g_string_append_c(out, '"');
}

static void img_json_indent(GString *out, int level)
{
    for (int i = 0; i < level; i++) {
        g_string_append(out, "    ");
    }
}

static void img_json_node(GString *out, JsonNode *node, int level)
{
    switch (json_node_get_node_type(node)) {
    case JSON_NODE_OBJECT: {
        JsonObject *o = json_node_get_object(node);
        g_autoptr(GList) members = json_object_get_members(o);

        g_string_append(out, "{");
        for (GList *m = members; m; m = m->next) {
            g_string_append(out, m == members ? "\n" : ",\n");
            img_json_indent(out, level + 1);
            img_json_string(out, m->data);
            g_string_append(out, ": ");
            img_json_node(out, json_object_get_member(o, m->data),
                          level + 1);
        }
        g_string_append_c(out, '\n');
        img_json_indent(out, level);
        g_string_append_c(out, '}');
        break;
    }
    case JSON_NODE_ARRAY: {
        JsonArray *a = json_node_get_array(node);
        guint n = json_array_get_length(a);

        g_string_append(out, "[");
        for (guint i = 0; i < n; i++) {
            g_string_append(out, i == 0 ? "\n" : ",\n");
            img_json_indent(out, level + 1);
            img_json_node(out, json_array_get_element(a, i), level + 1);
        }
        g_string_append_c(out, '\n');
        img_json_indent(out, level);
        g_string_append_c(out, ']');
        break;
    }
    case JSON_NODE_NULL:
        g_string_append(out, "null");
        break;
    case JSON_NODE_VALUE:
        switch (json_node_get_value_type(node)) {
        case G_TYPE_BOOLEAN:
            g_string_append(out, json_node_get_boolean(node) ? "true"
                                                             : "false");
            break;
        case G_TYPE_INT64:
            g_string_append_printf(out, "%" PRId64, json_node_get_int(node));
            break;
        case G_TYPE_DOUBLE:
            g_string_append_printf(out, "%.17g", json_node_get_double(node));
            break;
        default:
            img_json_string(out, json_node_get_string(node));
            break;
        }
        break;
    }
}

/* Print @node and a newline; takes ownership of @node. */
static void img_json_print(JsonNode *node)
{
    g_autoptr(GString) out = g_string_new(NULL);

    img_json_node(out, node, 0);
    printf("%s\n", out->str);
    json_node_unref(node);
}

static JsonNode *img_json_object_node(JsonObject *o)
{
    JsonNode *node = json_node_new(JSON_NODE_OBJECT);

    json_node_take_object(node, o);
    return node;
}

/* ---- info ---- */

typedef struct ImgInfo {
    char *filename;
    char *format;
    int64_t virtual_size;
    int64_t actual_size;        /* < 0: unknown */
    int cluster_size;           /* 0: none */
    bool dirty;
    char *backing_file;         /* NULL: none */
    char *full_backing_file;    /* NULL: could not be resolved */
    char *backing_format;       /* NULL: not recorded */
} ImgInfo;

static void img_info_free(ImgInfo *info)
{
    g_free(info->filename);
    g_free(info->format);
    g_free(info->backing_file);
    g_free(info->full_backing_file);
    g_free(info->backing_format);
    g_free(info);
}

static ImgInfo *img_collect_info(BlockDriverState *bs)
{
    ImgInfo *info = g_new0(ImgInfo, 1);
    BlockDriverInfo bdi;
    GError *err = NULL;

    info->filename = g_strdup(bs->filename);
    info->format = g_strdup(bdrv_get_format_name(bs));
    info->virtual_size = bdrv_getlength(bs);
    info->actual_size = bdrv_get_allocated_file_size(bs);
    if (bdrv_get_info(bs, &bdi) == 0) {
        info->cluster_size = bdi.cluster_size;
        info->dirty = bdi.is_dirty;
    }
    if (bs->backing_file[0]) {
        info->backing_file = g_strdup(bs->backing_file);
        info->full_backing_file = bdrv_get_full_backing_filename(bs, &err);
        g_clear_error(&err);
        if (bs->backing_format[0]) {
            info->backing_format = g_strdup(bs->backing_format);
        }
    }
    return info;
}

/* Members in the order qemu-img 7.2 prints them. */
static JsonObject *img_info_to_json(ImgInfo *info)
{
    JsonObject *o = json_object_new();

    if (info->backing_format) {
        json_object_set_string_member(o, "backing-filename-format",
                                      info->backing_format);
    }
    json_object_set_int_member(o, "virtual-size", info->virtual_size);
    json_object_set_string_member(o, "filename", info->filename);
    if (info->cluster_size) {
        json_object_set_int_member(o, "cluster-size", info->cluster_size);
    }
    json_object_set_string_member(o, "format", info->format);
    if (info->actual_size >= 0) {
        json_object_set_int_member(o, "actual-size", info->actual_size);
    }
    if (info->full_backing_file) {
        json_object_set_string_member(o, "full-backing-filename",
                                      info->full_backing_file);
    }
    if (info->backing_file) {
        json_object_set_string_member(o, "backing-filename",
                                      info->backing_file);
    }
    json_object_set_boolean_member(o, "dirty-flag", info->dirty);
    return o;
}

static void img_info_print_human(ImgInfo *info)
{
    g_autofree char *vsize = size_to_str(info->virtual_size);

    printf("image: %s\n"
           "file format: %s\n"
           "virtual size: %s (%" PRId64 " bytes)\n",
           info->filename, info->format, vsize, info->virtual_size);
    if (info->actual_size >= 0) {
        g_autofree char *dsize = size_to_str(info->actual_size);

        printf("disk size: %s\n", dsize);
    } else {
        printf("disk size: unavailable\n");
    }
    if (info->cluster_size) {
        printf("cluster_size: %d\n", info->cluster_size);
    }
    if (info->dirty) {
        printf("cleanly shut down: no\n");
    }
    if (info->backing_file) {
        printf("backing file: %s", info->backing_file);
        if (!info->full_backing_file) {
            printf(" (cannot determine actual path)");
        } else if (strcmp(info->backing_file, info->full_backing_file)) {
            printf(" (actual path: %s)", info->full_backing_file);
        }
        printf("\n");
        if (info->backing_format) {
            printf("backing file format: %s\n", info->backing_format);
        }
    }
}

static int img_info(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "format", required_argument, NULL, 'f' },
        { "output", required_argument, NULL, OPTION_OUTPUT },
        { "backing-chain", no_argument, NULL, OPTION_BACKING_CHAIN },
        { "object", required_argument, NULL, OPTION_OBJECT },
        { "image-opts", no_argument, NULL, OPTION_IMAGE_OPTS },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    ImgOutputFormat ofmt = OFORMAT_HUMAN;
    g_autoptr(GPtrArray) chain = NULL;
    g_autoptr(GHashTable) seen = NULL;
    const char *fmt = NULL;
    const char *filename;
    g_autofree char *next = NULL;
    bool image_opts = false;
    bool backing_chain = false;
    int flags = BDRV_O_NO_BACKING;
    int c;

    while ((c = getopt_long(argc, argv, ":f:hU", long_options,
                            NULL)) != -1) {
        switch (c) {
        case 'h':
            return img_help();
        case 'f':
            fmt = optarg;
            break;
        case 'U':
            flags |= BDRV_O_FORCE_SHARE;
            break;
        case OPTION_OUTPUT:
            if (!img_parse_output(optarg, &ofmt)) {
                return 1;
            }
            break;
        case OPTION_BACKING_CHAIN:
            backing_chain = true;
            break;
        case OPTION_OBJECT:
            if (!img_object_add(optarg)) {
                return 1;
            }
            break;
        case OPTION_IMAGE_OPTS:
            image_opts = true;
            break;
        default:
            return img_opt_error(c, argv);
        }
    }
    if (optind != argc - 1) {
        return img_usage_error("Expecting one image file name");
    }
    filename = argv[optind];
    if (image_opts && fmt) {
        error_report("--image-opts and --format are mutually exclusive");
        return 1;
    }

    /* Gather the whole chain first: a broken link prints nothing. */
    chain = g_ptr_array_new_with_free_func((GDestroyNotify)img_info_free);
    seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    g_hash_table_add(seen, g_strdup(filename));
    while (filename) {
        BlockBackend *blk;
        ImgInfo *info;

        blk = img_open_blk(filename, fmt, NULL, image_opts, flags, false, true);
        if (!blk) {
            return 1;
        }
        info = img_collect_info(blk_bs(blk));
        blk_unref(blk);
        g_ptr_array_add(chain, info);

        if (!backing_chain || !info->backing_file) {
            break;
        }
        if (!info->full_backing_file) {
            error_report("Could not determine absolute backing filename, "
                         "but backing filename '%s' present",
                         info->backing_file);
            return 1;
        }
        if (g_hash_table_contains(seen, info->full_backing_file)) {
            error_report("Backing file '%s' creates an infinite loop.",
                         info->full_backing_file);
            return 1;
        }
        g_hash_table_add(seen, g_strdup(info->full_backing_file));
        g_free(next);
        next = g_strdup(info->full_backing_file);
        filename = next;
        fmt = info->backing_format;
        image_opts = false;
    }

    if (ofmt == OFORMAT_JSON) {
        if (backing_chain) {
            JsonArray *a = json_array_new();
            JsonNode *node = json_node_new(JSON_NODE_ARRAY);

            for (guint i = 0; i < chain->len; i++) {
                json_array_add_object_element(
                    a, img_info_to_json(g_ptr_array_index(chain, i)));
            }
            json_node_take_array(node, a);
            img_json_print(node);
        } else {
            img_json_print(img_json_object_node(
                img_info_to_json(g_ptr_array_index(chain, 0))));
        }
    } else {
        for (guint i = 0; i < chain->len; i++) {
            if (i > 0) {
                printf("\n");
            }
            img_info_print_human(g_ptr_array_index(chain, i));
        }
    }
    return 0;
}

/* ---- check ---- */

static void img_check_print_human(const BdrvCheckResult *r)
{
    const BlockFragInfo *f = &r->bfi;

    if (!r->corruptions && !r->leaks && !r->check_errors) {
        printf("No errors were found on the image.\n");
    } else {
        if (r->corruptions) {
            printf("\n%d errors were found on the image.\n"
                   "Data may be corrupted, or further writes to the image "
                   "may corrupt it.\n", r->corruptions);
        }
        if (r->leaks) {
            printf("\n%d leaked clusters were found on the image.\n"
                   "This means waste of disk space, but no harm to data.\n",
                   r->leaks);
        }
        if (r->check_errors) {
            printf("\n%d internal errors have occurred during the check.\n",
                   r->check_errors);
        }
    }
    if (f->total_clusters && f->allocated_clusters) {
        printf("%" PRIu64 "/%" PRIu64 " = %0.2f%% allocated, "
               "%0.2f%% fragmented, %0.2f%% compressed clusters\n",
               f->allocated_clusters, f->total_clusters,
               f->allocated_clusters * 100.0 / f->total_clusters,
               f->fragmented_clusters * 100.0 / f->allocated_clusters,
               f->compressed_clusters * 100.0 / f->allocated_clusters);
    }
    if (r->image_end_offset) {
        printf("Image end offset: %" PRId64 "\n", r->image_end_offset);
    }
}

/* Members in qemu-img 7.2's order; counters only when not zero. */
static void img_check_print_json(const BdrvCheckResult *r,
                                 const char *filename, const char *format)
{
    JsonObject *o = json_object_new();
    const BlockFragInfo *f = &r->bfi;

    if (r->image_end_offset) {
        json_object_set_int_member(o, "image-end-offset",
                                   r->image_end_offset);
    }
    if (f->compressed_clusters) {
        json_object_set_int_member(o, "compressed-clusters",
                                   f->compressed_clusters);
    }
    if (f->total_clusters) {
        json_object_set_int_member(o, "total-clusters", f->total_clusters);
    }
    if (r->corruptions) {
        json_object_set_int_member(o, "corruptions", r->corruptions);
    }
    if (r->corruptions_fixed) {
        json_object_set_int_member(o, "corruptions-fixed",
                                   r->corruptions_fixed);
    }
    json_object_set_int_member(o, "check-errors", r->check_errors);
    if (r->leaks) {
        json_object_set_int_member(o, "leaks", r->leaks);
    }
    if (r->leaks_fixed) {
        json_object_set_int_member(o, "leaks-fixed", r->leaks_fixed);
    }
    if (f->allocated_clusters) {
        json_object_set_int_member(o, "allocated-clusters",
                                   f->allocated_clusters);
    }
    json_object_set_string_member(o, "filename", filename);
    json_object_set_string_member(o, "format", format);
    if (f->fragmented_clusters) {
        json_object_set_int_member(o, "fragmented-clusters",
                                   f->fragmented_clusters);
    }
    img_json_print(img_json_object_node(o));
}

static int img_check(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "format", required_argument, NULL, 'f' },
        { "repair", required_argument, NULL, 'r' },
        { "output", required_argument, NULL, OPTION_OUTPUT },
        { "object", required_argument, NULL, OPTION_OBJECT },
        { "image-opts", no_argument, NULL, OPTION_IMAGE_OPTS },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    ImgOutputFormat ofmt = OFORMAT_HUMAN;
    BdrvCheckMode fix = 0;
    BdrvCheckResult res, res2;
    const char *fmt = NULL;
    const char *cache = NULL;
    const char *filename;
    BlockBackend *blk;
    BlockDriverState *bs;
    bool image_opts = false;
    bool quiet = false;
    bool writethrough = false;
    /* As qemu-img: no automatic repair at open, check reports it. */
    int flags = BDRV_O_CHECK;
    int ret, c;

    while ((c = getopt_long(argc, argv, ":hf:r:T:qU", long_options,
                            NULL)) != -1) {
        switch (c) {
        case 'h':
            return img_help();
        case 'f':
            fmt = optarg;
            break;
        case 'r':
            flags |= BDRV_O_RDWR;
            if (!strcmp(optarg, "leaks")) {
                fix = BDRV_FIX_LEAKS;
            } else if (!strcmp(optarg, "all")) {
                fix = BDRV_FIX_LEAKS | BDRV_FIX_ERRORS;
            } else {
                return img_usage_error("Unknown option value for -r "
                                       "(expecting 'leaks' or 'all'): %s",
                                       optarg);
            }
            break;
        case 'T':
            cache = optarg;
            break;
        case 'q':
            quiet = true;
            break;
        case 'U':
            flags |= BDRV_O_FORCE_SHARE;
            break;
        case OPTION_OUTPUT:
            if (!img_parse_output(optarg, &ofmt)) {
                return 1;
            }
            break;
        case OPTION_OBJECT:
            if (!img_object_add(optarg)) {
                return 1;
            }
            break;
        case OPTION_IMAGE_OPTS:
            image_opts = true;
            break;
        default:
            return img_opt_error(c, argv);
        }
    }
    if (optind != argc - 1) {
        return img_usage_error("Expecting one image file name");
    }
    filename = argv[optind];
    if (image_opts && fmt) {
        error_report("--image-opts and --format are mutually exclusive");
        return 1;
    }
    if (cache && !bdrv_parse_cache_mode(cache, &flags, &writethrough)) {
        error_report("Invalid source cache option: %s", cache);
        return 1;
    }

    blk = img_open_blk(filename, fmt, NULL, image_opts, flags, writethrough,
                       quiet);
    if (!blk) {
        return 1;
    }
    bs = blk_bs(blk);

    ret = bdrv_check(bs, &res, fix);
    if (ret == -ENOTSUP) {
        error_report("This image format does not support checks");
        blk_unref(blk);
        return 63;
    }
    if (ret < 0) {
        error_report("Check failed: %s", g_strerror(-ret));
        blk_unref(blk);
        return 1;
    }

    if (fix && (res.leaks_fixed || res.corruptions_fixed)) {
        if (ofmt == OFORMAT_HUMAN && !quiet) {
            printf("The following inconsistencies were found and "
                   "repaired:\n\n"
                   "    %d leaked clusters\n"
                   "    %d corruptions\n\n"
                   "Double checking the fixed image now...\n",
                   res.leaks_fixed, res.corruptions_fixed);
        }
        /* What is left is what the second pass finds. */
        ret = bdrv_check(bs, &res2, 0);
        if (ret < 0) {
            error_report("Check failed: %s", g_strerror(-ret));
            blk_unref(blk);
            return 1;
        }
        res2.leaks_fixed = res.leaks_fixed;
        res2.corruptions_fixed = res.corruptions_fixed;
        res = res2;
    }

    if (ofmt == OFORMAT_JSON) {
        img_check_print_json(&res, filename, bdrv_get_format_name(bs));
    } else if (!quiet) {
        img_check_print_human(&res);
    }
    blk_unref(blk);

    if (res.check_errors) {
        return 1;
    } else if (res.corruptions) {
        return 2;
    } else if (res.leaks) {
        return 3;
    }
    return 0;
}

/* ---- map ---- */

typedef struct ImgMapEntry {
    int64_t start;
    int64_t length;
    int64_t offset;
    int depth;
    bool present;
    bool zero;
    bool data;
    bool has_offset;
    const char *filename;   /* of the node holding the data, borrowed */
} ImgMapEntry;

typedef struct ImgStatusCo {
    BlockDriverState *bs;
    int64_t offset;
    int64_t bytes;
    int64_t pnum;
    int64_t map;
    BlockDriverState *file;
    int ret;
    bool done;
} ImgStatusCo;

static void coroutine_fn img_status_entry(void *opaque)
{
    ImgStatusCo *s = opaque;

    s->ret = bdrv_co_block_status(s->bs, s->offset, s->bytes, &s->pnum,
                                  &s->map, &s->file);
    s->done = true;
    aio_wait_kick();
}

/* bdrv_co_block_status() of one node, from the main loop. */
static int img_block_status(BlockDriverState *bs, int64_t offset,
                            int64_t bytes, int64_t *pnum, int64_t *map,
                            BlockDriverState **file)
{
    AioContext *ctx = bdrv_get_aio_context(bs);
    ImgStatusCo s = {
        .bs = bs, .offset = offset, .bytes = bytes,
    };
    Coroutine *co = qemu_coroutine_create(img_status_entry, &s);

    aio_co_enter(ctx, co);
    AIO_WAIT_WHILE(ctx, !s.done);
    *pnum = s.pnum;
    *map = s.map;
    *file = s.file;
    return s.ret;
}

/*
 * The status of [offset, offset + bytes) as qemu-img map reports it: the
 * first layer that provides the data, and how deep it is (0 for @bs).
 * Where no layer does, the deepest layer that covers the offset answers
 * with zeroes.
 */
static int img_map_status(BlockDriverState *bs, int64_t offset,
                          int64_t bytes, ImgMapEntry *e)
{
    BlockDriverState *file = NULL;
    int64_t pnum = 0, map = 0;
    int depth = 0;
    int ret;

    for (;;) {
        BlockDriverState *backing;
        int64_t blen;

        ret = img_block_status(bs, offset, bytes, &pnum, &map, &file);
        if (ret < 0) {
            return ret;
        }
        assert(pnum > 0);
        if (ret & (BDRV_BLOCK_DATA | BDRV_BLOCK_ZERO)) {
            break;
        }
        backing = bs->backing ? bs->backing->bs : NULL;
        blen = backing ? bdrv_getlength(backing) : 0;
        if (blen < 0) {
            return blen;
        }
        if (!backing || offset >= blen) {
            /* Nothing below: reads return zeroes. */
            ret = BDRV_BLOCK_ZERO;
            break;
        }
        bytes = MIN(pnum, blen - offset);
        bs = backing;
        depth++;
    }

    *e = (ImgMapEntry) {
        .start = offset,
        .length = pnum,
        .depth = depth,
        .present = !!(ret & BDRV_BLOCK_ALLOCATED),
        .zero = !!(ret & BDRV_BLOCK_ZERO),
        .data = !!(ret & BDRV_BLOCK_DATA),
        .has_offset = !!(ret & BDRV_BLOCK_OFFSET_VALID),
        .offset = map,
        .filename = file ? file->filename : NULL,
    };
    return 0;
}

static bool img_map_entries_mergeable(const ImgMapEntry *cur,
                                      const ImgMapEntry *next)
{
    if (cur->depth != next->depth || cur->present != next->present ||
        cur->zero != next->zero || cur->data != next->data ||
        cur->has_offset != next->has_offset ||
        g_strcmp0(cur->filename, next->filename)) {
        return false;
    }
    return !cur->has_offset || cur->offset + cur->length == next->offset;
}

static void img_map_dump(ImgOutputFormat ofmt, const ImgMapEntry *e,
                         bool last)
{
    if (ofmt == OFORMAT_HUMAN) {
        if (e->data && e->has_offset) {
            printf("%#-16" PRIx64 "%#-16" PRIx64 "%#-16" PRIx64 "%s\n",
                   e->start, e->length, e->offset,
                   e->filename ? e->filename : "");
        }
        return;
    }
    printf("{ \"start\": %" PRId64 ", \"length\": %" PRId64 ", "
           "\"depth\": %d, \"present\": %s, \"zero\": %s, \"data\": %s",
           e->start, e->length, e->depth, e->present ? "true" : "false",
           e->zero ? "true" : "false", e->data ? "true" : "false");
    if (e->has_offset) {
        printf(", \"offset\": %" PRId64, e->offset);
    }
    printf("}%s\n", last ? "]" : ",");
}

/* A map offset or length argument, with qemu-img's message on error. */
static bool img_map_parse_size(const char *str, const char *what,
                               int64_t *out)
{
    uint64_t n;
    int ret = qemu_strtosz(str, NULL, &n);

    if (ret == -ERANGE || (ret == 0 && n > INT64_MAX)) {
        error_report("Invalid %s specified. Must be between 0 and %" PRId64
                     ".", what, INT64_MAX);
        return false;
    } else if (ret < 0) {
        error_report("Invalid %s specified. You may use k, M, G, T, P or "
                     "E suffixes for", what);
        error_report("kilobytes, megabytes, gigabytes, terabytes, "
                     "petabytes and exabytes.");
        return false;
    }
    *out = n;
    return true;
}

static int img_map(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "format", required_argument, NULL, 'f' },
        { "output", required_argument, NULL, OPTION_OUTPUT },
        { "object", required_argument, NULL, OPTION_OBJECT },
        { "image-opts", no_argument, NULL, OPTION_IMAGE_OPTS },
        { "force-share", no_argument, NULL, 'U' },
        { "start-offset", required_argument, NULL, OPTION_START_OFFSET },
        { "max-length", required_argument, NULL, OPTION_MAX_LENGTH },
        { NULL, 0, NULL, 0 },
    };
    ImgOutputFormat ofmt = OFORMAT_HUMAN;
    ImgMapEntry cur;
    const char *fmt = NULL;
    const char *filename;
    BlockBackend *blk;
    BlockDriverState *bs;
    bool image_opts = false;
    int64_t start_offset = 0;
    int64_t max_length = -1;
    int64_t length, end;
    int flags = 0;
    int ret = 0;
    int c;

    while ((c = getopt_long(argc, argv, ":f:hU", long_options,
                            NULL)) != -1) {
        switch (c) {
        case 'h':
            return img_help();
        case 'f':
            fmt = optarg;
            break;
        case 'U':
            flags |= BDRV_O_FORCE_SHARE;
            break;
        case OPTION_OUTPUT:
            if (!img_parse_output(optarg, &ofmt)) {
                return 1;
            }
            break;
        case OPTION_START_OFFSET:
            if (!img_map_parse_size(optarg, "start offset", &start_offset)) {
                return 1;
            }
            break;
        case OPTION_MAX_LENGTH:
            if (!img_map_parse_size(optarg, "max length", &max_length)) {
                return 1;
            }
            break;
        case OPTION_OBJECT:
            if (!img_object_add(optarg)) {
                return 1;
            }
            break;
        case OPTION_IMAGE_OPTS:
            image_opts = true;
            break;
        default:
            return img_opt_error(c, argv);
        }
    }
    if (optind != argc - 1) {
        return img_usage_error("Expecting one image file name");
    }
    filename = argv[optind];
    if (image_opts && fmt) {
        error_report("--image-opts and --format are mutually exclusive");
        return 1;
    }

    blk = img_open_blk(filename, fmt, NULL, image_opts, flags, false, true);
    if (!blk) {
        return 1;
    }
    bs = blk_bs(blk);

    length = blk_getlength(blk);
    if (length < 0) {
        error_report("Failed to get size for '%s'", filename);
        blk_unref(blk);
        return 1;
    }
    end = length;
    if (max_length >= 0 && start_offset <= INT64_MAX - max_length) {
        end = MIN(end, start_offset + max_length);
    }

    if (ofmt == OFORMAT_HUMAN) {
        printf("%-16s%-16s%-16s%s\n", "Offset", "Length", "Mapped to",
               "File");
    } else {
        printf("[");
    }

    /* qemu-img always ends with the entry in hand, even an empty one. */
    cur = (ImgMapEntry) { .start = start_offset };
    while (cur.start + cur.length < end) {
        int64_t offset = cur.start + cur.length;
        ImgMapEntry next;

        ret = img_map_status(bs, offset,
                             MIN(end - offset, BDRV_REQUEST_MAX_BYTES),
                             &next);
        if (ret < 0) {
            /*
             * Not error_report(), which flushes stdout first: qemu-img's
             * message comes before the map output still in the buffer.
             */
            fprintf(stderr, "%s: Could not read file metadata: %s\n",
                    tool_progname(), g_strerror(-ret));
            break;
        }
        if (cur.length > 0 && img_map_entries_mergeable(&cur, &next)) {
            cur.length += next.length;
            continue;
        }
        if (cur.length > 0) {
            img_map_dump(ofmt, &cur, false);
        }
        cur = next;
    }
    if (ret == 0) {
        img_map_dump(ofmt, &cur, true);
    }
    blk_unref(blk);
    return ret < 0 ? 1 : 0;
}

/* ---- resize ---- */

static bool img_parse_prealloc(const char *s, PreallocMode *out)
{
    static const char *const names[] = {
        [PREALLOC_MODE_OFF] = "off",
        [PREALLOC_MODE_METADATA] = "metadata",
        [PREALLOC_MODE_FALLOC] = "falloc",
        [PREALLOC_MODE_FULL] = "full",
    };

    for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
        if (!strcmp(s, names[i])) {
            *out = i;
            return true;
        }
    }
    return false;
}

static int img_resize(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, OPTION_OBJECT },
        { "image-opts", no_argument, NULL, OPTION_IMAGE_OPTS },
        { "preallocation", required_argument, NULL, OPTION_PREALLOCATION },
        { "shrink", no_argument, NULL, OPTION_SHRINK },
        { NULL, 0, NULL, 0 },
    };
    PreallocMode prealloc = PREALLOC_MODE_OFF;
    const char *fmt = NULL;
    const char *size;
    const char *filename;
    BlockBackend *blk;
    GError *err = NULL;
    bool image_opts = false;
    bool quiet = false;
    bool shrink = false;
    int relative = 0;
    uint64_t n;
    int64_t current, total;
    int c, ret;

    /*
     * The size is always last.  Take it off before getopt sees it, so a
     * negative size is not mistaken for an option.
     */
    if (argc < 3) {
        return img_usage_error("Not enough arguments");
    }
    size = argv[--argc];

    while ((c = getopt_long(argc, argv, ":f:hq", long_options,
                            NULL)) != -1) {
        switch (c) {
        case 'h':
            return img_help();
        case 'f':
            fmt = optarg;
            break;
        case 'q':
            quiet = true;
            break;
        case OPTION_OBJECT:
            if (!img_object_add(optarg)) {
                return 1;
            }
            break;
        case OPTION_IMAGE_OPTS:
            image_opts = true;
            break;
        case OPTION_PREALLOCATION:
            if (!img_parse_prealloc(optarg, &prealloc)) {
                error_report("Invalid preallocation mode '%s'", optarg);
                return 1;
            }
            break;
        case OPTION_SHRINK:
            shrink = true;
            break;
        default:
            return img_opt_error(c, argv);
        }
    }
    if (optind != argc - 1) {
        return img_usage_error("Expecting image file name and size");
    }
    filename = argv[optind];
    if (image_opts && fmt) {
        error_report("--image-opts and --format are mutually exclusive");
        return 1;
    }

    if (size[0] == '+' || size[0] == '-') {
        relative = size[0] == '+' ? 1 : -1;
        size++;
    }
    /* Worded as for a "size" option, as qemu-img does. */
    if (!img_parse_size_value("size", size, &n, &err)) {
        error_report_err(err);
        return 1;
    }

    blk = img_open_blk(filename, fmt, NULL, image_opts,
                       BDRV_O_RDWR | BDRV_O_RESIZE, false, quiet);
    if (!blk) {
        return 1;
    }

    current = blk_getlength(blk);
    if (current < 0) {
        error_report("Failed to inquire current image length: %s",
                     g_strerror(-current));
        blk_unref(blk);
        return 1;
    }
    /* Wraps like qemu-img's arithmetic: 8E comes out negative. */
    if (relative) {
        total = (int64_t)((uint64_t)current + relative * n);
    } else {
        total = (int64_t)n;
    }
    if (total <= 0) {
        error_report("New image size must be positive");
        blk_unref(blk);
        return 1;
    }
    if (total < current && !shrink) {
        error_report("Use the --shrink option to perform a shrink "
                     "operation.");
        warn_report("Shrinking an image will delete all data beyond the "
                    "shrunken image's end. Before performing such an "
                    "operation, make sure there is no important data "
                    "there.");
        blk_unref(blk);
        return 1;
    }

    ret = blk_truncate(blk, total, false, prealloc, 0, &err);
    blk_unref(blk);
    if (ret < 0) {
        error_report_err(err);
        return 1;
    }
    if (!quiet) {
        printf("Image resized.\n");
    }
    return 0;
}

/* ---- snapshot ---- */

/*
 * Neither raw nor qed has internal snapshots (and Sluice has no snapshot
 * API yet), so every action gets the answer qemu-img gives for such
 * formats: an empty list, and a refusal for the rest.
 */
enum {
    SNAPSHOT_LIST = 1,
    SNAPSHOT_CREATE,
    SNAPSHOT_APPLY,
    SNAPSHOT_DELETE,
};

static void img_probed_raw_warning(const char *filename)
{
    fflush(stdout);
    fprintf(stderr, "WARNING: Image format was not specified for '%s' "
            "and probing guessed raw.\n"
            "         Automatically detecting the format is dangerous "
            "for raw images, write operations on block 0 will be "
            "restricted.\n"
            "         Specify the 'raw' format explicitly to remove the "
            "restrictions.\n", filename);
}

static int img_snapshot(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, OPTION_OBJECT },
        { "image-opts", no_argument, NULL, OPTION_IMAGE_OPTS },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    const char *name = NULL;
    const char *filename;
    BlockBackend *blk;
    bool image_opts = false;
    bool quiet = false;
    bool force_share = false;
    int action = 0;
    int flags;
    int c;

    while ((c = getopt_long(argc, argv, ":la:c:d:hqU", long_options,
                            NULL)) != -1) {
        int this_action = 0;

        switch (c) {
        case 'h':
            return img_help();
        case 'l':
            this_action = SNAPSHOT_LIST;
            break;
        case 'a':
            this_action = SNAPSHOT_APPLY;
            break;
        case 'c':
            this_action = SNAPSHOT_CREATE;
            break;
        case 'd':
            this_action = SNAPSHOT_DELETE;
            break;
        case 'q':
            quiet = true;
            break;
        case 'U':
            force_share = true;
            break;
        case OPTION_OBJECT:
            if (!img_object_add(optarg)) {
                return 1;
            }
            break;
        case OPTION_IMAGE_OPTS:
            image_opts = true;
            break;
        default:
            return img_opt_error(c, argv);
        }
        if (this_action) {
            if (action) {
                return img_usage_error("Cannot mix '-l', '-a', '-c', '-d'");
            }
            action = this_action;
            if (action != SNAPSHOT_LIST) {
                name = optarg;
            }
        }
    }
    if (optind != argc - 1) {
        return img_usage_error("Expecting one image file name");
    }
    filename = argv[optind];
    /* Only an explicit -l opens read-only, as in qemu-img. */
    flags = action == SNAPSHOT_LIST ? 0 : BDRV_O_RDWR;
    if (!action) {
        action = SNAPSHOT_LIST;
    }

    if (force_share) {
        flags |= BDRV_O_FORCE_SHARE;
    }
    blk = img_open_blk(filename, NULL, NULL, image_opts, flags, false, quiet);
    if (!blk) {
        return 1;
    }

    switch (action) {
    case SNAPSHOT_LIST:
        /* No snapshots: qemu-img prints nothing at all. */
        blk_unref(blk);
        return 0;
    case SNAPSHOT_CREATE:
        error_report("Could not create snapshot '%s': %d (%s)", name,
                     -ENOTSUP, g_strerror(ENOTSUP));
        break;
    case SNAPSHOT_APPLY:
        /* qemu-img reopens a probed raw image here, warning again. */
        if (!quiet && bdrv_is_probed_raw(blk_bs(blk))) {
            img_probed_raw_warning(filename);
        }
        error_report("Could not apply snapshot '%s': Block driver does not "
                     "support snapshots", name);
        break;
    case SNAPSHOT_DELETE:
        error_report("Could not delete snapshot '%s': snapshot not found",
                     name);
        break;
    }
    blk_unref(blk);
    return 1;
}

/* ---- amend ---- */

typedef struct ImgAmendCo {
    BlockDriverState *bs;
    JsonObject *opts;
    bool force;
    GError *err;
    int ret;
    bool done;
} ImgAmendCo;

static void coroutine_fn img_amend_entry(void *opaque)
{
    ImgAmendCo *a = opaque;

    a->ret = a->bs->drv->bdrv_co_amend(a->bs, a->opts, a->force, &a->err);
    a->done = true;
    aio_wait_kick();
}

/* The driver's amend, run in a coroutine of the node's context. */
static int img_run_amend(BlockDriverState *bs, JsonObject *opts, bool force,
                         GError **errp)
{
    AioContext *ctx = bdrv_get_aio_context(bs);
    ImgAmendCo a = { .bs = bs, .opts = opts, .force = force };

    aio_co_enter(ctx, qemu_coroutine_create(img_amend_entry, &a));
    AIO_WAIT_WHILE(ctx, !a.done);
    if (a.ret < 0) {
        if (a.err) {
            g_propagate_error(errp, a.err);
        } else {
            error_setg_errno(errp, -a.ret, "Error while amending options");
        }
    }
    return a.ret;
}

static int img_amend(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, OPTION_OBJECT },
        { "image-opts", no_argument, NULL, OPTION_IMAGE_OPTS },
        { "force", no_argument, NULL, OPTION_FORCE },
        { NULL, 0, NULL, 0 },
    };
    g_autofree char *options = NULL;
    g_autoptr(JsonObject) opts = NULL;
    const char *fmt = NULL;
    const char *cache = "writeback";
    const char *filename;
    BlockBackend *blk;
    BlockDriverState *bs;
    BlockDriver *drv;
    GError *err = NULL;
    bool image_opts = false;
    bool quiet = false;
    bool force = false;
    bool writethrough = false;
    int flags = BDRV_O_RDWR;
    int ret = 0;
    int c;

    while ((c = getopt_long(argc, argv, ":ho:f:t:pq", long_options,
                            NULL)) != -1) {
        switch (c) {
        case 'h':
            return img_help();
        case 'o':
            if (!img_add_opts(&options, optarg)) {
                return 1;
            }
            break;
        case 'f':
            fmt = optarg;
            break;
        case 't':
            cache = optarg;
            break;
        case 'p':
            /* No progress to show: amending raw or qed is refused. */
            break;
        case 'q':
            quiet = true;
            break;
        case OPTION_OBJECT:
            if (!img_object_add(optarg)) {
                return 1;
            }
            break;
        case OPTION_IMAGE_OPTS:
            image_opts = true;
            break;
        case OPTION_FORCE:
            force = true;
            break;
        default:
            return img_opt_error(c, argv);
        }
    }
    if (!options) {
        return img_usage_error("Must specify options (-o)");
    }
    if (optind != argc - 1) {
        error_report("Expecting one image file name");
        return 1;
    }
    filename = argv[optind];
    if (image_opts && fmt) {
        error_report("--image-opts and --format are mutually exclusive");
        return 1;
    }
    if (fmt && !bdrv_find_format(fmt)) {
        error_report("Unknown file format '%s'", fmt);
        return 1;
    }
    if (!bdrv_parse_cache_mode(cache, &flags, &writethrough)) {
        error_report("Invalid cache option: %s", cache);
        return 1;
    }

    blk = img_open_blk(filename, fmt, NULL, image_opts, flags, writethrough,
                       quiet);
    if (!blk) {
        return 1;
    }
    bs = blk_bs(blk);
    drv = bs->drv;

    if (!drv->amend_opts || !drv->bdrv_co_amend) {
        error_report("Format driver '%s' does not support option amendment",
                     drv->format_name);
        blk_unref(blk);
        return 1;
    }
    if (img_opts_want_help(options)) {
        img_print_opts_help(drv->amend_opts);
        blk_unref(blk);
        return 0;
    }

    opts = json_object_new();
    if (!img_parse_opts(drv->amend_opts, options, opts, &err) ||
        img_run_amend(bs, opts, force, &err) < 0) {
        error_report_err(err);
        ret = 1;
    }
    blk_unref(blk);
    return ret;
}

/* ---- measure ---- */

static int img_measure(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "image-opts", no_argument, NULL, OPTION_IMAGE_OPTS },
        { "object", required_argument, NULL, OPTION_OBJECT },
        { "output", required_argument, NULL, OPTION_OUTPUT },
        { "size", required_argument, NULL, OPTION_SIZE },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    g_autofree char *options = NULL;
    g_autofree BlockOptDesc *list = NULL;
    g_autoptr(JsonObject) opts = NULL;
    ImgOutputFormat ofmt = OFORMAT_HUMAN;
    BlockMeasureInfo *info;
    BlockBackend *blk = NULL;
    BlockDriver *drv;
    const char *fmt = NULL;
    const char *out_fmt = "raw";
    const char *snapshot = NULL;
    const char *filename = NULL;
    GError *err = NULL;
    bool image_opts = false;
    int64_t img_size = -1;
    int flags = 0;
    int ret = 1;
    int c;

    /*
     * Unlike the other commands, qemu-img's measure lets getopt complain
     * ("measure: invalid option -- 'x'") and then prints the help.
     */
    while ((c = getopt_long(argc, argv, "hf:O:o:l:U", long_options,
                            NULL)) != -1) {
        switch (c) {
        case '?':
        case 'h':
            return img_help();
        case 'f':
            fmt = optarg;
            break;
        case 'O':
            out_fmt = optarg;
            break;
        case 'o':
            if (!img_add_opts(&options, optarg)) {
                return 1;
            }
            break;
        case 'l':
            snapshot = optarg;
            break;
        case 'U':
            flags |= BDRV_O_FORCE_SHARE;
            break;
        case OPTION_OBJECT:
            if (!img_object_add(optarg)) {
                return 1;
            }
            break;
        case OPTION_IMAGE_OPTS:
            image_opts = true;
            break;
        case OPTION_OUTPUT:
            if (!img_parse_output(optarg, &ofmt)) {
                return 1;
            }
            break;
        case OPTION_SIZE:
            if (!img_parse_image_size(optarg, &img_size)) {
                return 1;
            }
            break;
        default:
            return img_opt_error(c, argv);
        }
    }

    if (argc - optind > 1) {
        error_report("At most one filename argument is allowed.");
        return 1;
    } else if (argc - optind == 1) {
        filename = argv[optind];
    }
    if (!filename && (image_opts || fmt || snapshot)) {
        error_report("--image-opts, -f, and -l require a filename "
                     "argument.");
        return 1;
    }
    if (filename && img_size != -1) {
        error_report("--size N cannot be used together with a filename.");
        return 1;
    }
    if (!filename && img_size == -1) {
        error_report("Either --size N or one filename must be specified.");
        return 1;
    }
    if (image_opts && fmt) {
        error_report("--image-opts and --format are mutually exclusive");
        return 1;
    }

    if (filename) {
        blk = img_open_blk(filename, fmt, NULL, image_opts, flags, false, true);
        if (!blk) {
            return 1;
        }
        if (snapshot) {
            error_report("Failed to load snapshot: Block format '%s' used "
                         "by device '' does not support temporarily loading "
                         "internal snapshots",
                         bdrv_get_format_name(blk_bs(blk)));
            goto out;
        }
    }

    drv = bdrv_find_format(out_fmt);
    if (!drv) {
        error_report("Unknown file format '%s'", out_fmt);
        goto out;
    }
    if (!drv->create_opts) {
        error_report("Format driver '%s' does not support image creation",
                     drv->format_name);
        goto out;
    }

    list = bdrv_create_opts_list(drv, NULL);
    opts = json_object_new();
    if (!img_parse_opts(list, options, opts, &err)) {
        error_report_err(err);
        error_report("Invalid options for file format '%s'", out_fmt);
        goto out;
    }
    if (img_size != -1) {
        json_object_set_int_member(opts, "size", img_size);
    }

    if (!drv->bdrv_measure) {
        error_report("Block driver '%s' does not support size measurement",
                     drv->format_name);
        goto out;
    }
    info = drv->bdrv_measure(opts, blk ? blk_bs(blk) : NULL, &err);
    if (!info) {
        error_report_err(err);
        goto out;
    }

    if (ofmt == OFORMAT_JSON) {
        JsonObject *o = json_object_new();

        json_object_set_int_member(o, "required", info->required);
        json_object_set_int_member(o, "fully-allocated",
                                   info->fully_allocated);
        img_json_print(img_json_object_node(o));
    } else {
        printf("required size: %" PRIu64 "\n"
               "fully allocated size: %" PRIu64 "\n",
               info->required, info->fully_allocated);
    }
    g_free(info);
    ret = 0;

out:
    if (blk) {
        blk_unref(blk);
    }
    return ret;
}
/* ---- Dispatcher ---- */

typedef struct ImgCommand {
    const char *name;
    int (*handler)(int argc, char **argv);
} ImgCommand;

static const ImgCommand img_commands[] = {
    { "amend", img_amend },
    { "bench", img_bench },
    { "check", img_check },
    { "commit", img_commit },
    { "compare", img_compare },
    { "convert", img_convert },
    { "create", img_create },
    { "dd", img_dd },
    { "info", img_info },
    { "map", img_map },
    { "measure", img_measure },
    { "snapshot", img_snapshot },
    { "rebase", img_rebase },
    { "resize", img_resize },
};

int main(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { "trace", required_argument, NULL, 'T' },
        { NULL, 0, NULL, 0 },
    };
    const char *cmd;
    int c;

    tool_init(argv[0]);

    if (argc < 2) {
        return img_usage_error("Not enough arguments");
    }

    /* '+': stop at the command name; its own options follow it. */
    while ((c = getopt_long(argc, argv, "+:hVT:", long_options,
                            NULL)) != -1) {
        switch (c) {
        case 'h':
            return img_help();
        case 'V':
            img_print_version();
            return 0;
        case 'T':
            /* Tracing is not built in; accepted so scripts keep working. */
            break;
        default:
            return img_opt_error(c, argv);
        }
    }

    if (optind >= argc) {
        return img_usage_error("Not enough arguments");
    }
    cmd = argv[optind];
    for (size_t i = 0; i < ARRAY_SIZE(img_commands); i++) {
        if (!strcmp(cmd, img_commands[i].name)) {
            int sub_argc = argc - optind;
            char **sub_argv = argv + optind;

            /* 0, not 1: glibc then resets its internal state too. */
            optind = 0;
            return img_commands[i].handler(sub_argc, sub_argv);
        }
    }
    return img_usage_error("Command not found: %s", cmd);
}
