/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The "nbd" block export type and the NBD server of nbd-server-start:
 * the listening sockets, the connection limit, and the QMP / command-line
 * entry points with QEMU's argument checking.
 *
 * Copyright (c) 2026 The Sluice authors
 */
#include "qemu/osdep.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "block/aio-wait.h"
#include "block/export.h"
#include "block/export/export-args.h"
#include "block/nbd.h"
#include "qemu/main-loop.h"

/* Debian's 7.2 (a backport) and upstream since 9.1 default to 100. */
#define NBD_DEFAULT_MAX_CONNECTIONS 100

typedef struct NBDBlockExport {
    BlockExport common;
    NBDExport *nbd;
} NBDBlockExport;

typedef struct NBDServer {
    GArray *fds;                /* listening sockets */
    NBDSocketAddress *addr;
    uint32_t max_connections;
    unsigned int connections;
    bool listening;
} NBDServer;

static NBDServer *nbd_server;

/* sluice-nbd serves the exports through its own socket. */
static bool nbd_tool_serving;

/* ---- The export type ---- */

static bool nbd_exp_create(BlockExport *exp, const BlockExportOptions *opts,
                           GError **errp)
{
    NBDBlockExport *nexp = container_of(exp, NBDBlockExport, common);
    const char *name = opts->nbd.name ? opts->nbd.name : opts->node_name;

    if (!nbd_server && !nbd_tool_serving) {
        error_setg(errp, "NBD server not running");
        return false;
    }
    if (opts->nbd.bitmaps && opts->nbd.bitmaps[0]) {
        /* Sluice has no persistent dirty bitmaps (yet). */
        error_setg(errp, "Bitmap '%s' is not found", opts->nbd.bitmaps[0]);
        return false;
    }
    nexp->nbd = nbd_export_new(exp, name, opts->nbd.description,
                               opts->nbd.allocation_depth, errp);
    return nexp->nbd != NULL;
}

static void nbd_exp_request_shutdown(BlockExport *exp)
{
    NBDBlockExport *nexp = container_of(exp, NBDBlockExport, common);

    nbd_export_request_shutdown(nexp->nbd);
}

static bool nbd_exp_in_use(BlockExport *exp)
{
    NBDBlockExport *nexp = container_of(exp, NBDBlockExport, common);

    return nbd_export_client_count(nexp->nbd) > 0;
}

static void nbd_exp_set_aio_context(BlockExport *exp, AioContext *old_ctx,
                                    AioContext *new_ctx)
{
    NBDBlockExport *nexp = container_of(exp, NBDBlockExport, common);

    nbd_export_set_aio_context(nexp->nbd, old_ctx, new_ctx);
}

static void nbd_exp_delete(BlockExport *exp)
{
    NBDBlockExport *nexp = container_of(exp, NBDBlockExport, common);

    nbd_export_free(nexp->nbd);
}

static const BlockExportDriver blk_exp_nbd = {
    .type = BLOCK_EXPORT_TYPE_NBD,
    .instance_size = sizeof(NBDBlockExport),
    .create = nbd_exp_create,
    .request_shutdown = nbd_exp_request_shutdown,
    .in_use = nbd_exp_in_use,
    .set_aio_context = nbd_exp_set_aio_context,
    .delete = nbd_exp_delete,
};

static void __attribute__((constructor)) nbd_export_register(void)
{
    blk_exp_register_driver(&blk_exp_nbd);
}

void nbd_server_set_tool_serving(uint32_t max_connections)
{
    nbd_tool_serving = true;
    nbd_set_max_connections(max_connections);
}

/* ---- The server ---- */

static void nbd_server_accept(void *opaque);

static void nbd_server_set_listening(NBDServer *server, bool on)
{
    AioContext *ctx = qemu_get_aio_context();
    guint i;

    if (server->listening == on) {
        return;
    }
    server->listening = on;
    for (i = 0; i < server->fds->len; i++) {
        aio_set_fd_handler(ctx, g_array_index(server->fds, int, i),
                           on ? nbd_server_accept : NULL, NULL,
                           on ? server : NULL);
    }
}

static void nbd_server_client_closed(NBDClient *client, bool negotiated,
                                     void *opaque)
{
    NBDServer *server = opaque;

    assert(server->connections > 0);
    server->connections--;
    if (server == nbd_server && (!server->max_connections ||
                                 server->connections <
                                 server->max_connections)) {
        nbd_server_set_listening(server, true);
    }
}

static void nbd_server_accept(void *opaque)
{
    NBDServer *server = opaque;
    guint i;

    for (i = 0; i < server->fds->len; i++) {
        int fd = accept4(g_array_index(server->fds, int, i), NULL, NULL,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        int one = 1;

        if (fd < 0) {
            continue;
        }
        /* Replies are whole messages: do not hold small ones back. */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        server->connections++;
        nbd_client_new(fd, NBD_HANDSHAKE_LIMIT_SECS,
                       nbd_server_client_closed, server);
        if (server->max_connections &&
            server->connections >= server->max_connections) {
            nbd_server_set_listening(server, false);
            return;
        }
    }
}

bool nbd_server_is_running(void)
{
    return nbd_server != NULL;
}

bool nbd_server_start(const NBDSocketAddress *addr, const char *tls_creds,
                      const char *tls_authz, uint32_t max_connections,
                      GError **errp)
{
    NBDServer *server;
    GArray *fds;

    assert(qemu_in_main_thread());
    if (nbd_server) {
        error_setg(errp, "NBD server already running");
        return false;
    }
    if (tls_creds) {
        error_setg(errp, "No TLS credentials with id '%s'", tls_creds);
        return false;
    }
    fds = nbd_socket_listen(addr, SOMAXCONN, errp);
    if (!fds) {
        return false;
    }
    server = g_new0(NBDServer, 1);
    server->fds = fds;
    server->max_connections = max_connections;
    server->addr = g_new0(NBDSocketAddress, 1);
    server->addr->type = addr->type;
    server->addr->path = g_strdup(addr->path);
    nbd_server = server;
    nbd_set_max_connections(max_connections);
    nbd_server_set_listening(server, true);
    return true;
}

static bool nbd_server_busy(void *opaque)
{
    NBDServer *server = opaque;

    return server->connections > 0;
}

bool nbd_server_stop(GError **errp)
{
    NBDServer *server = nbd_server;
    guint i;

    assert(qemu_in_main_thread());
    if (!server) {
        error_setg(errp, "NBD server not running");
        return false;
    }
    nbd_server_set_listening(server, false);
    nbd_server = NULL;

    blk_exp_close_all_type(BLOCK_EXPORT_TYPE_NBD);
    /* Clients still negotiating go too. */
    nbd_client_shutdown_all();
    AIO_WAIT_WHILE(NULL, nbd_server_busy(server));

    for (i = 0; i < server->fds->len; i++) {
        close(g_array_index(server->fds, int, i));
    }
    g_array_unref(server->fds);
    if (server->addr->type == NBD_SOCKET_UNIX && server->addr->path) {
        unlink(server->addr->path);
    }
    nbd_socket_address_free(server->addr);
    g_free(server);
    return true;
}

/* ---- Argument checking and parsing ---- */

static const char *const nbd_addr_types[] = {
    "inet", "unix", "vsock", "fd", NULL,
};

static const BlkExpArgSpec nbd_addr_type_spec[] = {
    { "type", BLK_EXP_ARG_ENUM, true, nbd_addr_types },
    { NULL },
};

static const BlkExpArgSpec nbd_addr_inet_spec[] = {
    { "host", BLK_EXP_ARG_STR, true },
    { "port", BLK_EXP_ARG_STR, true },
    { "numeric", BLK_EXP_ARG_BOOL },
    { "to", BLK_EXP_ARG_UINT32 },
    { "ipv4", BLK_EXP_ARG_BOOL },
    { "ipv6", BLK_EXP_ARG_BOOL },
    { "keep-alive", BLK_EXP_ARG_BOOL },
    { "mptcp", BLK_EXP_ARG_BOOL },
    { NULL },
};

static const BlkExpArgSpec nbd_addr_unix_spec[] = {
    { "path", BLK_EXP_ARG_STR, true },
    { "abstract", BLK_EXP_ARG_BOOL },
    { "tight", BLK_EXP_ARG_BOOL },
    { NULL },
};

static const BlkExpArgSpec nbd_addr_vsock_spec[] = {
    { "cid", BLK_EXP_ARG_STR, true },
    { "port", BLK_EXP_ARG_STR, true },
    { NULL },
};

static const BlkExpArgSpec nbd_addr_fd_spec[] = {
    { "str", BLK_EXP_ARG_STR, true },
    { NULL },
};

static const BlkExpArgSpec nbd_server_tail_spec[] = {
    { "tls-creds", BLK_EXP_ARG_STR },
    { "tls-authz", BLK_EXP_ARG_STR },
    { "max-connections", BLK_EXP_ARG_UINT32 },
    { NULL },
};

/*
 * Check a socket address's type-specific members in @o (the "data" of
 * the wrapped form, or the address itself in the flat form) and fill
 * @addr.  @extra lists members @o may also hold (the flat form's type).
 */
static bool nbd_parse_addr_members(JsonObject *o, const char *type,
                                   const char *prefix, bool keyval,
                                   const BlkExpArgSpec *extra,
                                   NBDSocketAddress *addr, GError **errp)
{
    const BlkExpArgSpec *spec;
    const BlkExpArgSpec *specs[3];

    if (!strcmp(type, "inet")) {
        spec = nbd_addr_inet_spec;
        addr->type = NBD_SOCKET_INET;
    } else if (!strcmp(type, "unix")) {
        spec = nbd_addr_unix_spec;
        addr->type = NBD_SOCKET_UNIX;
    } else if (!strcmp(type, "vsock")) {
        spec = nbd_addr_vsock_spec;
    } else {
        spec = nbd_addr_fd_spec;
        addr->type = NBD_SOCKET_FD;
    }
    specs[0] = spec;
    specs[1] = extra;
    specs[2] = NULL;
    if (!blk_exp_check_args(o, spec, prefix, keyval, errp) ||
        !blk_exp_check_unexpected(o, specs, prefix, errp)) {
        return false;
    }
    if (!strcmp(type, "vsock")) {
        error_setg(errp, "Socket family 'vsock' is not supported");
        return false;
    }
    if (blk_exp_arg_bool(o, "abstract", false)) {
        error_setg(errp, "Abstract UNIX sockets are not supported");
        return false;
    }
    addr->host = blk_exp_arg_str(o, "host");
    addr->port = blk_exp_arg_str(o, "port");
    addr->path = blk_exp_arg_str(o, "path");
    addr->fd_str = blk_exp_arg_str(o, "str");
    return true;
}

/* The members after "addr", then the start itself. */
static bool nbd_server_start_tail(JsonObject *args, NBDSocketAddress *addr,
                                  bool keyval, const BlkExpArgSpec *head,
                                  GError **errp)
{
    const BlkExpArgSpec *specs[] = { head, nbd_server_tail_spec, NULL };
    g_autofree char *tls_creds = NULL;
    g_autofree char *tls_authz = NULL;

    if (!blk_exp_check_args(args, nbd_server_tail_spec, "", keyval, errp) ||
        !blk_exp_check_unexpected(args, specs, "", errp)) {
        return false;
    }
    if (nbd_server) {
        error_setg(errp, "NBD server already running");
        return false;
    }
    tls_creds = blk_exp_arg_str(args, "tls-creds");
    tls_authz = blk_exp_arg_str(args, "tls-authz");
    return nbd_server_start(addr, tls_creds, tls_authz,
                            blk_exp_arg_int(args, "max-connections",
                                            NBD_DEFAULT_MAX_CONNECTIONS),
                            errp);
}

bool qmp_nbd_server_start(JsonObject *args, GError **errp)
{
    static const BlkExpArgSpec head[] = {
        { "addr", BLK_EXP_ARG_OBJECT, true },
        { NULL },
    };
    static const BlkExpArgSpec wrapped[] = {
        { "type", BLK_EXP_ARG_ENUM, true, nbd_addr_types },
        { "data", BLK_EXP_ARG_OBJECT, true },
        { NULL },
    };
    const BlkExpArgSpec *wrapped_specs[] = { wrapped, NULL };
    g_autoptr(NBDSocketAddress) addr = g_new0(NBDSocketAddress, 1);
    g_autofree char *type = NULL;
    JsonObject *a;

    if (!blk_exp_check_args(args, head, "", false, errp)) {
        return false;
    }
    a = json_object_get_object_member(args, "addr");
    if (!blk_exp_check_args(a, wrapped, "addr.", false, errp) ||
        !blk_exp_check_unexpected(a, wrapped_specs, "addr.", errp)) {
        return false;
    }
    type = blk_exp_arg_str(a, "type");
    if (!nbd_parse_addr_members(json_object_get_object_member(a, "data"),
                                type, "addr.data.", false, NULL, addr,
                                errp)) {
        return false;
    }
    if (addr->type == NBD_SOCKET_FD) {
        /* What QEMU's storage daemon says: it has no monitor fds. */
        error_setg(errp, "only QEMU supports file descriptor passing");
        return false;
    }
    return nbd_server_start_tail(args, addr, false, head, errp);
}

bool nbd_server_start_options(JsonObject *args, GError **errp)
{
    static const BlkExpArgSpec head[] = {
        { "addr", BLK_EXP_ARG_OBJECT, true },
        { NULL },
    };
    g_autoptr(NBDSocketAddress) addr = g_new0(NBDSocketAddress, 1);
    g_autofree char *type = NULL;
    JsonObject *a;

    if (!blk_exp_check_args(args, head, "", true, errp)) {
        return false;
    }
    a = json_object_get_object_member(args, "addr");
    if (!blk_exp_check_args(a, nbd_addr_type_spec, "addr.", true, errp)) {
        return false;
    }
    type = blk_exp_arg_str(a, "type");
    if (!nbd_parse_addr_members(a, type, "addr.", true, nbd_addr_type_spec,
                                addr, errp)) {
        return false;
    }
    return nbd_server_start_tail(args, addr, true, head, errp);
}
