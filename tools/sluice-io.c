/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * sluice-io: exercise an image with commands given by -c or typed at its
 * prompt; a drop-in for qemu-io (same options, commands, output and exit
 * status).  The commands live in tools/io-cmds.c.
 *
 * Copyright (c) 2026 The Sluice authors
 */
#include "qemu/osdep.h"

#include <getopt.h>
#include <glib-unix.h>

#include "config-host.h"
#include "qemu/main-loop.h"
#include "tools/io-cmds.h"
#include "tools/tool-common.h"

enum {
    OPTION_OBJECT = 256,
    OPTION_IMAGE_OPTS,
};

static void sio_usage(void)
{
    const char *name = tool_progname();

    printf("Usage: %s [OPTIONS]... [-c STRING]... [file]\n"
"Sluice's disk exerciser: run I/O commands on an image\n"
"\n"
"  --object OBJECTDEF   create a user-creatable object (TYPE,id=ID,...)\n"
"  --image-opts         the file argument is an option string\n"
"  -c, --cmd STRING     run this command (may be given several times;\n"
"                       without any, commands are read from stdin)\n"
"  -f, --format FMT     the image's format (default: probe)\n"
"  -r, --read-only      open the image read-only\n"
"  -n, --nocache        bypass the host page cache, the same as -t none\n"
"  -m, --misalign       give the block layer unaligned buffers\n"
"  -k, --native-aio     use Linux native AIO, the same as -i native\n"
"  -i, --aio=MODE       host I/O engine: threads, native or io_uring\n"
"  -t, --cache=MODE     cache mode: none, writeback, writethrough,\n"
"                       directsync or unsafe (default: writethrough)\n"
"  -d, --discard=MODE   discard mode: ignore (off) or unmap (on)\n"
"  -U, --force-share    share every permission with other users\n"
"  -h, --help           print this help and exit\n"
"  -V, --version        print the version and exit\n"
"\n"
"See '%s -c help' for the commands.\n", name, name);
}

/*
 * The interactive loop reads stdin through the main loop, so requests
 * started by aio_read/aio_write complete (and report) while it waits.
 */
typedef struct SioInput {
    GString *buf;
    bool eof;
} SioInput;

static gboolean sio_stdin_ready(gint fd, GIOCondition cond, gpointer opaque)
{
    SioInput *in = opaque;
    char chunk[4096];
    ssize_t n;

    n = read(fd, chunk, sizeof(chunk));
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
        return G_SOURCE_CONTINUE;
    }
    if (n <= 0) {
        in->eof = true;
        return G_SOURCE_REMOVE;
    }
    g_string_append_len(in->buf, chunk, n);
    return G_SOURCE_CONTINUE;
}

/* The next line of input without its newline, or NULL at the end. */
static char *sio_next_line(SioInput *in)
{
    guint source = 0;
    char *nl, *line;

    while (!(nl = memchr(in->buf->str, '\n', in->buf->len)) && !in->eof) {
        if (!source) {
            source = g_unix_fd_add(STDIN_FILENO,
                                   G_IO_IN | G_IO_HUP | G_IO_ERR | G_IO_NVAL,
                                   sio_stdin_ready, in);
        }
        main_loop_wait(false);
    }
    if (source && !in->eof) {
        g_source_remove(source);
    }
    if (nl) {
        line = g_strndup(in->buf->str, nl - in->buf->str);
        g_string_erase(in->buf, 0, nl - in->buf->str + 1);
        return line;
    }
    if (in->buf->len) {
        line = g_strdup(in->buf->str);
        g_string_truncate(in->buf, 0);
        return line;
    }
    return NULL;
}

/* Commands typed (or piped) at the prompt.  Returns true if any failed. */
static bool sio_interactive(void)
{
    SioInput in = { .buf = g_string_new(NULL) };
    bool failed = false;

    while (!sio_quit_requested()) {
        g_autofree char *line = NULL;

        printf("%s> ", tool_progname());
        fflush(stdout);
        line = sio_next_line(&in);
        if (!line) {
            break;
        }
        if (sio_command(line) < 0) {
            failed = true;
        }
    }
    g_string_free(in.buf, true);
    return failed;
}

int main(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { "cmd", required_argument, NULL, 'c' },
        { "format", required_argument, NULL, 'f' },
        { "read-only", no_argument, NULL, 'r' },
        { "nocache", no_argument, NULL, 'n' },
        { "misalign", no_argument, NULL, 'm' },
        { "native-aio", no_argument, NULL, 'k' },
        { "aio", required_argument, NULL, 'i' },
        { "discard", required_argument, NULL, 'd' },
        { "cache", required_argument, NULL, 't' },
        { "object", required_argument, NULL, OPTION_OBJECT },
        { "image-opts", no_argument, NULL, OPTION_IMAGE_OPTS },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    g_autoptr(GPtrArray) cmds = g_ptr_array_new();
    /* qemu-io's defaults: discard requests reach the host, writethrough. */
    int flags = BDRV_O_UNMAP;
    bool writethrough = true, read_only = false, force_share = false;
    bool image_opts = false, failed = false;
    const char *format = NULL, *aio = NULL;
    GError *err = NULL;
    guint i;
    int c;

    tool_init(argv[0]);

    while ((c = getopt_long(argc, argv, "hVc:f:rnmki:d:t:U", long_options,
                            NULL)) != -1) {
        switch (c) {
        case 'h':
            sio_usage();
            return 0;
        case 'V':
            printf("%s version %s\n"
                   "Copyright (c) 2026 The Sluice authors\n",
                   tool_progname(), SLUICE_VERSION);
            return 0;
        case 'c':
            g_ptr_array_add(cmds, optarg);
            break;
        case 'f':
            format = optarg;
            break;
        case 'r':
            read_only = true;
            break;
        case 'n':
            flags |= BDRV_O_NOCACHE;
            writethrough = false;
            break;
        case 'm':
            sio_set_misalign(true);
            break;
        case 'k':
            aio = "native";
            break;
        case 'i':
            if (!sio_parse_aio(optarg, &aio)) {
                error_report("Invalid aio option: %s", optarg);
                return 1;
            }
            break;
        case 'd':
            if (!sio_parse_discard(optarg, &flags)) {
                error_report("Invalid discard option: %s", optarg);
                return 1;
            }
            break;
        case 't':
            if (!bdrv_parse_cache_mode(optarg, &flags, &writethrough)) {
                error_report("Invalid cache option: %s", optarg);
                return 1;
            }
            break;
        case 'U':
            force_share = true;
            break;
        case OPTION_OBJECT:
            if (!tool_object_add(optarg, &err)) {
                error_report_err(err);
                return 1;
            }
            break;
        case OPTION_IMAGE_OPTS:
            image_opts = true;
            break;
        default:
            sio_usage();
            return 1;
        }
    }

    if (argc - optind > 1) {
        sio_usage();
        return 1;
    }
    if (format && image_opts) {
        error_report("--image-opts and -f are mutually exclusive");
        return 1;
    }
    sio_set_image_opts(image_opts);
    if (!read_only) {
        flags |= BDRV_O_RDWR;
    }

    if (optind < argc) {
        g_autoptr(JsonObject) opts = json_object_new();
        int ret;

        if (image_opts) {
            if (!sio_parse_opts(opts, argv[optind])) {
                return 1;
            }
            ret = sio_open(NULL, opts, flags, writethrough, force_share,
                           aio);
        } else {
            if (format) {
                json_object_set_string_member(opts, "driver", format);
            }
            ret = sio_open(argv[optind], opts, flags, writethrough,
                           force_share, aio);
        }
        if (ret < 0) {
            return 1;
        }
    }

    if (cmds->len) {
        for (i = 0; i < cmds->len && !sio_quit_requested(); i++) {
            if (sio_command(g_ptr_array_index(cmds, i)) < 0) {
                failed = true;
            }
        }
    } else {
        failed = sio_interactive();
    }

    sio_close();
    return failed ? 1 : 0;
}
