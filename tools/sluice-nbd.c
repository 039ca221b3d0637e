/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * sluice-nbd: serve a disk image over NBD, a drop-in for qemu-nbd's
 * server mode (the kernel client, -c/-d, is not provided).
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * The image is opened as the other tools open it, exported through the
 * generic block export layer (one NBD export, id "sluice-nbd-export"),
 * and served on a unix or TCP socket this program listens on itself: it
 * counts its clients so that it can stop accepting at the -e limit and
 * exit after the last one unless -t.
 */
#include "qemu/osdep.h"

#include <getopt.h>
#include <glib-unix.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "config-host.h"
#include "block/aio-wait.h"
#include "block/block_int.h"
#include "block/export.h"
#include "block/nbd.h"
#include "qemu/keyval.h"
#include "qemu/main-loop.h"
#include "qemu/object.h"
#include "tools/tool-common.h"

#define SLUICE_NBD_EXPORT_ID "sluice-nbd-export"

enum {
    OPT_OBJECT = 256,
    OPT_TLSCREDS,
    OPT_IMAGE_OPTS,
    OPT_FORK,
    OPT_TLSAUTHZ,
    OPT_PID_FILE,
    OPT_SELINUX_LABEL,
    OPT_CACHE,
    OPT_AIO,
    OPT_DISCARD,
    OPT_DETECT_ZEROES,
};

typedef enum {
    RUNNING,
    TERMINATE,
} ServerState;

static ServerState state = RUNNING;
static bool persistent;
static int shared = 1;
static unsigned int nb_clients;
static GArray *listen_fds;
static bool listening;

static void usage(void)
{
    const char *name = tool_progname();

    printf(
"Usage: %s [OPTIONS] FILE\n"
"  or:  %s -L [OPTIONS]\n"
"Serve a disk image over NBD (command-line compatible with qemu-nbd)\n"
"\n"
"  -h, --help                print this text and exit\n"
"  -V, --version             print the version and exit\n"
"\n"
"Where to listen:\n"
"  -p, --port=PORT           TCP port (default %d)\n"
"  -b, --bind=IFACE          address to bind (default 0.0.0.0)\n"
"  -k, --socket=PATH         listen on this unix socket instead of TCP\n"
"  -e, --shared=NUM          serve up to NUM clients at once; 0: no limit\n"
"                            (default 1)\n"
"  -t, --persistent          keep running after the last client leaves\n"
"  -v, --verbose             accepted; the server has nothing more to say\n"
"  -x, --export-name=NAME    the export's name (default: the empty name)\n"
"  -D, --description=TEXT    a description clients can read\n"
"\n"
"What to export:\n"
"  -o, --offset=OFFSET       start the export at this byte of the image\n"
"  -A, --allocation-depth    offer the qemu:allocation-depth context\n"
"  -B, --bitmap=NAME         offer a dirty bitmap (none exist in Sluice)\n"
"\n"
"Other options:\n"
"  -L, --list                list another server's exports (not "
"supported)\n"
"  --object type,id=ID,...   create an object (e.g. an iothread)\n"
"  --tls-creds=ID            TLS credentials (not supported)\n"
"  --tls-authz=ID            TLS authorization (not supported)\n"
"  -T, --trace [[enable=]<pattern>][,events=<file>][,file=<file>]\n"
"                            accepted for compatibility; tracing is not "
"built in\n"
"  --fork                    run in the background once serving\n"
"  --pid-file=PATH           write the server's process id to PATH\n"
"  --selinux-label=LABEL     not supported\n"
"\n"
"Kernel NBD client (not supported: use nbd-client):\n"
"  -c, --connect=DEV         attach FILE to the kernel's NBD device DEV\n"
"  -d, --disconnect          detach the given device\n"
"\n"
"How to open the image:\n"
"  -f, --format=FORMAT       the image format (raw, qed, ...)\n"
"  -r, --read-only           export read-only\n"
"  -s, --snapshot            write to a temporary overlay (not supported)\n"
"  -l, --load-snapshot=SNAPSHOT_PARAM\n"
"                            export an internal snapshot (not supported)\n"
"  -n, --nocache             the same as --cache=none\n"
"      --cache=MODE          none, writeback (default), writethrough,\n"
"                            directsync or unsafe\n"
"      --aio=MODE            threads, native or io_uring\n"
"      --discard=MODE        ignore or unmap\n"
"      --detect-zeroes=MODE  off, on or unmap\n"
"      --image-opts          FILE is a set of image options\n",
        name, name, NBD_DEFAULT_PORT);
}

static void version(void)
{
    printf("%s version %s (compatible with qemu-nbd 7.2)\n"
           "Copyright (c) 2026 The Sluice authors\n",
           tool_progname(), SLUICE_VERSION);
}

static void try_help(void)
{
    error_report("Try `%s --help' for more information.", tool_progname());
}

/* ---- Serving ---- */

static void nbd_accept(void *opaque);

static void nbd_update_listening(void)
{
    bool want = state == RUNNING &&
                (shared == 0 || nb_clients < (unsigned int)shared);
    guint i;

    if (want == listening) {
        return;
    }
    listening = want;
    for (i = 0; i < listen_fds->len; i++) {
        aio_set_fd_handler(qemu_get_aio_context(),
                           g_array_index(listen_fds, int, i),
                           want ? nbd_accept : NULL, NULL, NULL);
    }
}

static void nbd_client_closed(NBDClient *client, bool negotiated,
                              void *opaque)
{
    nb_clients--;
    if (nb_clients == 0 && !persistent && state == RUNNING) {
        state = TERMINATE;
    }
    nbd_update_listening();
    /* Make the main loop look at the state again. */
    aio_notify(qemu_get_aio_context());
}

static void nbd_accept(void *opaque)
{
    guint i;

    for (i = 0; i < listen_fds->len && listening; i++) {
        int fd = accept4(g_array_index(listen_fds, int, i), NULL, NULL,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        int one = 1;

        if (fd < 0) {
            continue;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        nb_clients++;
        nbd_client_new(fd, NBD_HANDSHAKE_LIMIT_SECS, nbd_client_closed,
                       NULL);
        nbd_update_listening();
    }
}

static gboolean nbd_terminate_signal(gpointer opaque)
{
    state = TERMINATE;
    return G_SOURCE_CONTINUE;
}

/* ---- Option helpers ---- */

static bool parse_aio(const char *mode)
{
    return !strcmp(mode, "threads") || !strcmp(mode, "native") ||
           !strcmp(mode, "io_uring");
}

/* Write the pid file as QEMU does: locked, mode 0600 in practice. */
static bool write_pidfile(const char *path, GError **errp)
{
    g_autofree char *content = g_strdup_printf("%d\n", (int)getpid());
    int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);

    if (fd < 0) {
        error_setg_errno(errp, errno, "Cannot open pid file");
        return false;
    }
    if (lockf(fd, F_TLOCK, 0) < 0) {
        error_setg_errno(errp, errno, "Cannot lock pid file");
        close(fd);
        return false;
    }
    if (ftruncate(fd, 0) < 0 ||
        write(fd, content, strlen(content)) != (ssize_t)strlen(content)) {
        error_setg_errno(errp, errno, "Failed to write pid file");
        close(fd);
        return false;
    }
    /* The descriptor stays open: the lock lives as long as we do. */
    return true;
}

/*
 * --fork: the parent waits until the child is serving (one byte on
 * @pipe) and exits 0, or 1 if the child died first.  Returns in the
 * child only.
 */
static int fork_server(void)
{
    int pfd[2];
    pid_t pid;
    char c;
    ssize_t n;

    if (pipe(pfd) < 0) {
        error_report("Failed to create pipe: %s", g_strerror(errno));
        exit(EXIT_FAILURE);
    }
    pid = fork();
    if (pid < 0) {
        error_report("Failed to fork: %s", g_strerror(errno));
        exit(EXIT_FAILURE);
    }
    if (pid == 0) {
        close(pfd[0]);
        return pfd[1];
    }
    close(pfd[1]);
    do {
        n = read(pfd[0], &c, 1);
    } while (n < 0 && errno == EINTR);
    exit(n == 1 ? EXIT_SUCCESS : EXIT_FAILURE);
}

/* The child is serving: release the parent and detach from its stdio. */
static void fork_ready(int fd)
{
    int devnull = open("/dev/null", O_RDWR);
    char c = 0;

    setsid();
    if (devnull >= 0) {
        dup2(devnull, STDIN_FILENO);
        dup2(devnull, STDOUT_FILENO);
        dup2(devnull, STDERR_FILENO);
        close(devnull);
    }
    if (write(fd, &c, 1) != 1) {
        /* The parent has gone; nothing to tell. */
    }
    close(fd);
}

/* Open FILE, possibly a window of it at @offset, as qemu-nbd does. */
static BlockDriverState *open_image(const char *shown, const char *filename,
                                    const char *fmt,
                                    JsonObject *extra, bool image_opts,
                                    int flags, bool writethrough,
                                    const char *offset, BlockBackend **pblk)
{
    g_autoptr(GError) err = NULL;
    BlockDriverState *bs;
    BlockBackend *blk;

    blk = tool_open(filename, fmt, extra, image_opts, flags, writethrough,
                    false, &err);
    if (!blk) {
        error_report("Failed to blk_new_open '%s': %s", shown, err->message);
        return NULL;
    }
    bs = blk_bs(blk);
    if (offset) {
        g_autoptr(JsonObject) o = json_object_new();
        BlockDriverState *win;

        /* The raw driver checks it (and words the errors) as QEMU's. */
        json_object_set_string_member(o, "driver", "raw");
        json_object_set_string_member(o, "file", bdrv_get_node_name(bs));
        json_object_set_string_member(o, "offset", offset);
        if (!(flags & BDRV_O_RDWR)) {
            json_object_set_boolean_member(o, "read-only", true);
        }
        win = bdrv_open_options(o, flags, &err);
        if (!win) {
            error_report("%s", err->message);
            blk_unref(blk);
            return NULL;
        }
        bs = win;
    } else {
        bdrv_ref(bs);
    }
    *pblk = blk;
    return bs;
}

int main(int argc, char **argv)
{
    static const char sopt[] = "hVb:o:p:rsnc:dvk:e:f:tl:x:T:D:AB:L";
    static const struct option lopt[] = {
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { "bind", required_argument, NULL, 'b' },
        { "port", required_argument, NULL, 'p' },
        { "socket", required_argument, NULL, 'k' },
        { "offset", required_argument, NULL, 'o' },
        { "read-only", no_argument, NULL, 'r' },
        { "allocation-depth", no_argument, NULL, 'A' },
        { "bitmap", required_argument, NULL, 'B' },
        { "connect", required_argument, NULL, 'c' },
        { "disconnect", no_argument, NULL, 'd' },
        { "list", no_argument, NULL, 'L' },
        { "snapshot", no_argument, NULL, 's' },
        { "load-snapshot", required_argument, NULL, 'l' },
        { "nocache", no_argument, NULL, 'n' },
        { "cache", required_argument, NULL, OPT_CACHE },
        { "aio", required_argument, NULL, OPT_AIO },
        { "discard", required_argument, NULL, OPT_DISCARD },
        { "detect-zeroes", required_argument, NULL, OPT_DETECT_ZEROES },
        { "shared", required_argument, NULL, 'e' },
        { "format", required_argument, NULL, 'f' },
        { "persistent", no_argument, NULL, 't' },
        { "verbose", no_argument, NULL, 'v' },
        { "object", required_argument, NULL, OPT_OBJECT },
        { "export-name", required_argument, NULL, 'x' },
        { "description", required_argument, NULL, 'D' },
        { "tls-creds", required_argument, NULL, OPT_TLSCREDS },
        { "tls-authz", required_argument, NULL, OPT_TLSAUTHZ },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { "trace", required_argument, NULL, 'T' },
        { "fork", no_argument, NULL, OPT_FORK },
        { "pid-file", required_argument, NULL, OPT_PID_FILE },
        { "selinux-label", required_argument, NULL, OPT_SELINUX_LABEL },
        { NULL, 0, NULL, 0 },
    };
    g_autoptr(JsonObject) extra = json_object_new();
    g_autoptr(GError) err = NULL;
    g_autoptr(GPtrArray) objects = g_ptr_array_new();
    g_autoptr(GPtrArray) traces = g_ptr_array_new();
    const char *bindto = NULL;
    const char *port = NULL;
    const char *sockpath = NULL;
    const char *fmt = NULL;
    const char *export_name = NULL;
    const char *export_description = NULL;
    const char *bitmap = NULL;
    const char *tls_creds = NULL;
    const char *tls_authz = NULL;
    const char *pid_file = NULL;
    const char *selinux_label = NULL;
    const char *snapshot_param = NULL;
    const char *discard = NULL;
    const char *detect_zeroes = NULL;
    const char *aio = NULL;
    g_autofree char *image_opts_filename = NULL;
    const char *filename;
    const char *open_name;
    BlockExportOptions eopts = { 0 };
    NBDSocketAddress addr = { 0 };
    BlockDriverState *bs;
    BlockBackend *blk = NULL;
    BlockExport *exp;
    bool readonly = false;
    bool image_opts = false;
    bool fork_process = false;
    bool list = false;
    bool snapshot = false;
    bool allocation_depth = false;
    bool writethrough = false;
    bool seen_cache = false;
    bool seen_aio = false;
    bool seen_discard = false;
    bool seen_detect_zeroes = false;
    const char *dev_offset = NULL;
    int flags = BDRV_O_RDWR;
    int ready_fd = -1;
    int ch;
    guint i;

    tool_init(argv[0]);
    /* getopt's own messages start with argv[0]: make it the short name. */
    argv[0] = (char *)tool_progname();
    signal(SIGPIPE, SIG_IGN);

    while ((ch = getopt_long(argc, argv, sopt, lopt, NULL)) != -1) {
        switch (ch) {
        case 's':
            snapshot = true;
            break;
        case 'n':
            optarg = (char *)"none";
            /* fall through */
        case OPT_CACHE:
            if (seen_cache) {
                error_report("-n and --cache can only be specified once");
                exit(EXIT_FAILURE);
            }
            seen_cache = true;
            flags &= ~(BDRV_O_NOCACHE | BDRV_O_NO_FLUSH);
            if (!bdrv_parse_cache_mode(optarg, &flags, &writethrough)) {
                error_report("Invalid cache mode `%s'", optarg);
                exit(EXIT_FAILURE);
            }
            break;
        case OPT_AIO:
            if (seen_aio) {
                error_report("--aio can only be specified once");
                exit(EXIT_FAILURE);
            }
            seen_aio = true;
            if (!parse_aio(optarg)) {
                error_report("Invalid aio mode '%s'", optarg);
                exit(EXIT_FAILURE);
            }
            aio = optarg;
            break;
        case OPT_DISCARD:
            if (seen_discard) {
                error_report("--discard can only be specified once");
                exit(EXIT_FAILURE);
            }
            seen_discard = true;
            if (!strcmp(optarg, "unmap") || !strcmp(optarg, "on")) {
                flags |= BDRV_O_UNMAP;
                discard = "unmap";
            } else if (!strcmp(optarg, "ignore") || !strcmp(optarg, "off")) {
                flags &= ~BDRV_O_UNMAP;
                discard = "ignore";
            } else {
                error_report("Invalid discard mode `%s'", optarg);
                exit(EXIT_FAILURE);
            }
            break;
        case OPT_DETECT_ZEROES:
            seen_detect_zeroes = true;
            if (strcmp(optarg, "off") && strcmp(optarg, "on") &&
                strcmp(optarg, "unmap")) {
                error_report("Failed to parse detect_zeroes mode: invalid "
                             "parameter value: %s", optarg);
                exit(EXIT_FAILURE);
            }
            detect_zeroes = optarg;
            break;
        case 'b':
            bindto = optarg;
            break;
        case 'p':
            port = optarg;
            break;
        case 'o': {
            char *end;

            /* A C number; the raw driver refuses what is out of range. */
            errno = 0;
            g_ascii_strtoull(optarg, &end, 0);
            if (errno || end == optarg || *end) {
                error_report("Invalid offset '%s'", optarg);
                exit(EXIT_FAILURE);
            }
            dev_offset = optarg;
            break;
        }
        case 'l':
            snapshot_param = optarg;
            break;
        case 'r':
            readonly = true;
            flags &= ~BDRV_O_RDWR;
            break;
        case 'A':
            allocation_depth = true;
            break;
        case 'B':
            bitmap = optarg;
            break;
        case 'k':
            sockpath = optarg;
            break;
        case 'd':
        case 'c':
            error_report("%s is not supported: %s serves NBD, it cannot "
                         "attach the kernel's NBD client",
                         ch == 'c' ? "--connect (-c)" : "--disconnect (-d)",
                         tool_progname());
            exit(EXIT_FAILURE);
        case 'e': {
            char *end;
            long v;

            errno = 0;
            v = strtol(optarg, &end, 0);
            if (errno || end == optarg || *end || v < 0 || v > INT_MAX) {
                error_report("Invalid shared device number '%s'", optarg);
                exit(EXIT_FAILURE);
            }
            shared = v;
            break;
        }
        case 'f':
            fmt = optarg;
            break;
        case 't':
            persistent = true;
            break;
        case 'x':
            export_name = optarg;
            if (strlen(export_name) > NBD_MAX_STRING_SIZE) {
                error_report("export name '%s' too long", export_name);
                exit(EXIT_FAILURE);
            }
            break;
        case 'D':
            export_description = optarg;
            if (strlen(export_description) > NBD_MAX_STRING_SIZE) {
                error_report("export description '%s' too long",
                             export_description);
                exit(EXIT_FAILURE);
            }
            break;
        case 'v':
            /* Nothing more to say in server mode, as in qemu-nbd. */
            break;
        case 'V':
            version();
            exit(EXIT_SUCCESS);
        case 'h':
            usage();
            exit(EXIT_SUCCESS);
        case '?':
            try_help();
            exit(EXIT_FAILURE);
        case OPT_OBJECT:
            g_ptr_array_add(objects, optarg);
            break;
        case OPT_TLSCREDS:
            tls_creds = optarg;
            break;
        case OPT_TLSAUTHZ:
            tls_authz = optarg;
            break;
        case OPT_IMAGE_OPTS:
            image_opts = true;
            break;
        case 'T':
            g_ptr_array_add(traces, optarg);
            break;
        case 'L':
            list = true;
            break;
        case OPT_FORK:
            fork_process = true;
            break;
        case OPT_PID_FILE:
            pid_file = optarg;
            break;
        case OPT_SELINUX_LABEL:
            selinux_label = optarg;
            break;
        }
    }

    if (list) {
        if (argc != optind) {
            error_report("List mode is incompatible with a file name");
            exit(EXIT_FAILURE);
        }
        if (export_name || export_description || dev_offset || bitmap ||
            allocation_depth || readonly || snapshot || snapshot_param ||
            fmt || image_opts || seen_cache || seen_aio || seen_discard ||
            seen_detect_zeroes) {
            error_report("List mode is incompatible with per-device "
                         "settings");
            exit(EXIT_FAILURE);
        }
        error_report("List mode (-L) is not supported");
        exit(EXIT_FAILURE);
    }
    if (argc - optind != 1) {
        error_report("Invalid number of arguments");
        fprintf(stderr, "Try `%s --help' for more information.\n",
                tool_progname());
        exit(EXIT_FAILURE);
    }
    filename = open_name = argv[optind];

    for (i = 0; i < objects->len; i++) {
        if (!tool_object_add(g_ptr_array_index(objects, i), &err)) {
            error_report_err(g_steal_pointer(&err));
            exit(EXIT_FAILURE);
        }
    }
    if (tls_creds) {
        error_report("Failed to get TLS creds: No TLS credentials with id "
                     "'%s'", tls_creds);
        exit(EXIT_FAILURE);
    }
    if (tls_authz) {
        error_report("--tls-authz is not permitted without --tls-creds");
        exit(EXIT_FAILURE);
    }
    if (selinux_label) {
        if (!sockpath) {
            error_report("--selinux-label is not permitted without "
                         "--socket");
        } else {
            error_report("SELinux support not enabled in this binary");
        }
        exit(EXIT_FAILURE);
    }
    if (image_opts && fmt) {
        error_report("--image-opts and -f are mutually exclusive");
        exit(EXIT_FAILURE);
    }
    if (detect_zeroes && !strcmp(detect_zeroes, "unmap") &&
        !(flags & BDRV_O_UNMAP)) {
        error_report("setting detect-zeroes to unmap is not allowed without "
                     "setting discard operation to unmap");
        exit(EXIT_FAILURE);
    }
    if (snapshot) {
        error_report("Snapshot mode (-s) is not supported");
        exit(EXIT_FAILURE);
    }
    for (i = 0; i < traces->len; i++) {
        const char *t = g_ptr_array_index(traces, i);

        /* No trace events exist; a plain name cannot match any. */
        if (!strpbrk(t, "*?=,")) {
            warn_report("trace event '%s' does not exist", t);
        }
    }

    if (fork_process) {
        ready_fd = fork_server();
    }

    if (discard) {
        json_object_set_string_member(extra, "discard", discard);
    }
    if (detect_zeroes) {
        json_object_set_string_member(extra, "detect-zeroes", detect_zeroes);
    }
    if (aio && strcmp(aio, "threads")) {
        /*
         * QEMU hands the engine down to the protocol node: name it in
         * the options of the node that is (or will be) the file.
         */
        if (image_opts) {
            g_autoptr(JsonObject) o = keyval_parse(filename, NULL, NULL);
            const char *drv = o && json_object_has_member(o, "driver") ?
                json_object_get_string_member(o, "driver") : "";

            open_name = image_opts_filename =
                g_strdup_printf("%s,%saio=%s", filename,
                                strcmp(drv, "file") ? "file." : "", aio);
        } else if (!g_strcmp0(fmt, "file")) {
            json_object_set_string_member(extra, "aio", aio);
        } else if (!keyval_is_json_filename(filename)) {
            JsonObject *file = json_object_new();

            json_object_set_string_member(file, "driver", "file");
            json_object_set_string_member(file, "filename", filename);
            json_object_set_string_member(file, "aio", aio);
            json_object_set_object_member(extra, "file", file);
        }
    }

    bs = open_image(filename, open_name, fmt, extra, image_opts, flags,
                    writethrough, dev_offset, &blk);
    if (!bs) {
        exit(EXIT_FAILURE);
    }
    if (snapshot_param) {
        error_report("Failed to load snapshot: Block format '%s' used by "
                     "device '' does not support temporarily loading "
                     "internal snapshots", bdrv_get_format_name(bs));
        exit(EXIT_FAILURE);
    }

    nbd_server_set_tool_serving(shared);
    eopts.type = BLOCK_EXPORT_TYPE_NBD;
    eopts.id = SLUICE_NBD_EXPORT_ID;
    eopts.node_name = bdrv_get_node_name(bs);
    eopts.writable = !readonly;
    eopts.writethrough = writethrough;
    eopts.nbd.name = export_name ? export_name : "";
    eopts.nbd.description = export_description;
    eopts.nbd.allocation_depth = allocation_depth;
    if (bitmap) {
        static const char *bitmaps[2];

        bitmaps[0] = bitmap;
        eopts.nbd.bitmaps = bitmaps;
    }
    exp = blk_exp_add(&eopts, &err);
    if (!exp) {
        error_report_err(g_steal_pointer(&err));
        exit(EXIT_FAILURE);
    }
    /* The export's backend holds the node now. */
    bdrv_unref(bs);
    blk_unref(blk);

    if (sockpath) {
        addr.type = NBD_SOCKET_UNIX;
        addr.path = (char *)sockpath;
    } else {
        addr.type = NBD_SOCKET_INET;
        addr.host = (char *)(bindto ? bindto : "0.0.0.0");
        addr.port = port ? (char *)port :
                    g_strdup_printf("%d", NBD_DEFAULT_PORT);
    }
    listen_fds = nbd_socket_listen(&addr, SOMAXCONN, &err);
    if (!listen_fds) {
        error_report_err(g_steal_pointer(&err));
        exit(EXIT_FAILURE);
    }
    if (pid_file && !write_pidfile(pid_file, &err)) {
        error_report("Failed to write PID file: %s", err->message);
        exit(EXIT_FAILURE);
    }

    g_unix_signal_add(SIGTERM, nbd_terminate_signal, NULL);
    g_unix_signal_add(SIGINT, nbd_terminate_signal, NULL);
    g_unix_signal_add(SIGHUP, nbd_terminate_signal, NULL);

    nbd_update_listening();
    if (fork_process) {
        fork_ready(ready_fd);
    }

    while (state == RUNNING) {
        main_loop_wait(false);
    }

    /* Orderly: stop listening, drop the clients, close the export. */
    nbd_update_listening();
    for (i = 0; i < listen_fds->len; i++) {
        close(g_array_index(listen_fds, int, i));
    }
    g_array_unref(listen_fds);
    if (sockpath) {
        unlink(sockpath);
    }
    nbd_client_shutdown_all();
    blk_exp_close_all();
    AIO_WAIT_WHILE(NULL, nbd_client_count() > 0);
    user_creatable_cleanup();
    return EXIT_SUCCESS;
}
