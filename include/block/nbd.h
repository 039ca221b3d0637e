/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * NBD: the wire protocol's numbers, and the server that serves block
 * exports to NBD clients (nbd/server.c, nbd/common.c).
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * The numbers are the NBD protocol's (fixed newstyle negotiation,
 * structured replies, metadata contexts); everything on the wire is
 * big-endian.  The server side is split in two: nbd/server.c speaks the
 * protocol to one client at a time and knows the NBD exports by name;
 * block/export/nbd-export.c makes those exports from block-export-add
 * arguments and runs the listening socket of nbd-server-start.
 */
#ifndef BLOCK_NBD_H
#define BLOCK_NBD_H

#include "block/aio.h"

#include <json-glib/json-glib.h>

typedef struct BlockExport BlockExport;

/* ---- Negotiation ---- */

#define NBD_INIT_MAGIC              0x4e42444d41474943ULL   /* "NBDMAGIC" */
#define NBD_OPTS_MAGIC              0x49484156454f5054ULL   /* "IHAVEOPT" */
#define NBD_REP_MAGIC               0x0003e889045565a9ULL

/* Handshake flags (server, 16 bits). */
#define NBD_FLAG_FIXED_NEWSTYLE     (1 << 0)
#define NBD_FLAG_NO_ZEROES          (1 << 1)

/* Client flags (32 bits). */
#define NBD_FLAG_C_FIXED_NEWSTYLE   (1 << 0)
#define NBD_FLAG_C_NO_ZEROES        (1 << 1)

/* Options. */
#define NBD_OPT_EXPORT_NAME         1
#define NBD_OPT_ABORT               2
#define NBD_OPT_LIST                3
#define NBD_OPT_PEEK_EXPORT         4
#define NBD_OPT_STARTTLS            5
#define NBD_OPT_INFO                6
#define NBD_OPT_GO                  7
#define NBD_OPT_STRUCTURED_REPLY    8
#define NBD_OPT_LIST_META_CONTEXT   9
#define NBD_OPT_SET_META_CONTEXT    10
#define NBD_OPT_EXTENDED_HEADERS    11

/* Option reply types; errors have bit 31 set. */
#define NBD_REP_ACK                 1
#define NBD_REP_SERVER              2
#define NBD_REP_INFO                3
#define NBD_REP_META_CONTEXT        4
#define NBD_REP_FLAG_ERROR          (1U << 31)
#define NBD_REP_ERR(n)              (NBD_REP_FLAG_ERROR | (n))
#define NBD_REP_ERR_UNSUP           NBD_REP_ERR(1)
#define NBD_REP_ERR_POLICY          NBD_REP_ERR(2)
#define NBD_REP_ERR_INVALID         NBD_REP_ERR(3)
#define NBD_REP_ERR_PLATFORM        NBD_REP_ERR(4)
#define NBD_REP_ERR_TLS_REQD        NBD_REP_ERR(5)
#define NBD_REP_ERR_UNKNOWN         NBD_REP_ERR(6)
#define NBD_REP_ERR_SHUTDOWN        NBD_REP_ERR(7)
#define NBD_REP_ERR_BLOCK_SIZE_REQD NBD_REP_ERR(8)
#define NBD_REP_ERR_TOO_BIG         NBD_REP_ERR(9)

/* Information items of NBD_OPT_INFO / NBD_OPT_GO. */
#define NBD_INFO_EXPORT             0
#define NBD_INFO_NAME               1
#define NBD_INFO_DESCRIPTION        2
#define NBD_INFO_BLOCK_SIZE         3

/* Transmission flags (16 bits), per export. */
#define NBD_FLAG_HAS_FLAGS          (1 << 0)
#define NBD_FLAG_READ_ONLY          (1 << 1)
#define NBD_FLAG_SEND_FLUSH         (1 << 2)
#define NBD_FLAG_SEND_FUA           (1 << 3)
#define NBD_FLAG_ROTATIONAL         (1 << 4)
#define NBD_FLAG_SEND_TRIM          (1 << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES  (1 << 6)
#define NBD_FLAG_SEND_DF            (1 << 7)
#define NBD_FLAG_CAN_MULTI_CONN     (1 << 8)
#define NBD_FLAG_SEND_RESIZE        (1 << 9)
#define NBD_FLAG_SEND_CACHE         (1 << 10)
#define NBD_FLAG_SEND_FAST_ZERO     (1 << 11)

/* ---- Transmission ---- */

#define NBD_REQUEST_MAGIC           0x25609513
#define NBD_SIMPLE_REPLY_MAGIC      0x67446698
#define NBD_STRUCTURED_REPLY_MAGIC  0x668e33ef

#define NBD_REQUEST_SIZE            28
#define NBD_SIMPLE_REPLY_SIZE       16
#define NBD_CHUNK_HEADER_SIZE       20

/* Commands. */
#define NBD_CMD_READ                0
#define NBD_CMD_WRITE               1
#define NBD_CMD_DISC                2
#define NBD_CMD_FLUSH               3
#define NBD_CMD_TRIM                4
#define NBD_CMD_CACHE               5
#define NBD_CMD_WRITE_ZEROES        6
#define NBD_CMD_BLOCK_STATUS        7

/* Command flags. */
#define NBD_CMD_FLAG_FUA            (1 << 0)
#define NBD_CMD_FLAG_NO_HOLE        (1 << 1)
#define NBD_CMD_FLAG_DF             (1 << 2)
#define NBD_CMD_FLAG_REQ_ONE        (1 << 3)
#define NBD_CMD_FLAG_FAST_ZERO      (1 << 4)

/* Structured reply chunks. */
#define NBD_REPLY_FLAG_DONE         (1 << 0)
#define NBD_REPLY_TYPE_NONE         0
#define NBD_REPLY_TYPE_OFFSET_DATA  1
#define NBD_REPLY_TYPE_OFFSET_HOLE  2
#define NBD_REPLY_TYPE_BLOCK_STATUS 5
#define NBD_REPLY_TYPE_ERROR        ((1 << 15) + 1)
#define NBD_REPLY_TYPE_ERROR_OFFSET ((1 << 15) + 2)

/* Error values on the wire (they happen to equal Linux's errnos). */
#define NBD_SUCCESS                 0
#define NBD_EPERM                   1
#define NBD_EIO                     5
#define NBD_ENOMEM                  12
#define NBD_EINVAL                  22
#define NBD_ENOSPC                  28
#define NBD_EOVERFLOW               75
#define NBD_ENOTSUP                 95
#define NBD_ESHUTDOWN               108

/* Metadata contexts and the flags of their extents. */
#define NBD_META_BASE_ALLOCATION    "base:allocation"
#define NBD_META_ALLOCATION_DEPTH   "qemu:allocation-depth"
#define NBD_META_ID_BASE_ALLOCATION 0
#define NBD_META_ID_ALLOCATION_DEPTH 1
#define NBD_STATE_HOLE              (1 << 0)
#define NBD_STATE_ZERO              (1 << 1)

/* Limits. */
#define NBD_MAX_STRING_SIZE         4096
#define NBD_MAX_BUFFER_SIZE         (32 * 1024 * 1024)
#define NBD_DEFAULT_PORT            10809

/* A client that has not finished negotiating by then is dropped. */
#define NBD_HANDSHAKE_LIMIT_SECS    10

/* ---- nbd/common.c ---- */

/* QEMU's names for options and commands, as error messages show them. */
const char *nbd_opt_name(uint32_t opt);
const char *nbd_cmd_name(uint16_t cmd);

/* A negative errno from the block layer as an NBD error value. */
uint32_t nbd_errno_to_wire(int err);

/*
 * Where a server listens: what the "addr" argument of nbd-server-start
 * names.  Only the members of @type are used.
 */
typedef enum NBDSocketType {
    NBD_SOCKET_INET,
    NBD_SOCKET_UNIX,
    NBD_SOCKET_FD,
} NBDSocketType;

typedef struct NBDSocketAddress {
    NBDSocketType type;
    char *host;                 /* inet; NULL or "" means any address */
    char *port;                 /* inet, a service name or number */
    char *path;                 /* unix */
    char *fd_str;               /* fd: a number or a monitor fd name */
} NBDSocketAddress;

void nbd_socket_address_free(NBDSocketAddress *addr);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(NBDSocketAddress, nbd_socket_address_free)

/*
 * Open listening sockets for @addr (non-blocking, close-on-exec).  An
 * inet address may resolve to several sockets (IPv4 and IPv6); a unix
 * socket's file is replaced if it exists.  Returns the fds in a new
 * GArray of int, or NULL with @errp set to QEMU's wording ("Failed to
 * bind socket to PATH: ...", "address resolution failed for H:P: ...").
 */
GArray *nbd_socket_listen(const NBDSocketAddress *addr, int backlog,
                          GError **errp);

/* ---- nbd/server.c: exports ---- */

typedef struct NBDExport NBDExport;
typedef struct NBDClient NBDClient;

/*
 * Make @common (a BlockExport of type nbd, with its backend in place)
 * visible to NBD clients as @name, with @description (may be NULL) and,
 * if @allocation_depth, the qemu:allocation-depth context.  Fails if the
 * name is taken ("NBD server already has export named 'X'") or a string
 * is too long.  Main thread.
 */
NBDExport *nbd_export_new(BlockExport *common, const char *name,
                          const char *description, bool allocation_depth,
                          GError **errp);

/*
 * Hide the export from new clients and disconnect the connected ones;
 * each drops its reference to the BlockExport when it has gone.  Main
 * thread; idempotent.
 */
void nbd_export_request_shutdown(NBDExport *exp);

/* Free the export once no client refers to it any more.  Main thread. */
void nbd_export_free(NBDExport *exp);

/* Connected clients (negotiated for this export).  Main thread. */
unsigned int nbd_export_client_count(NBDExport *exp);

/*
 * Move the export's connections from @old_ctx to @new_ctx.  Both
 * contexts are drained by the caller (see blk_exp_set_aio_context()).
 * Main thread.
 */
void nbd_export_set_aio_context(NBDExport *exp, AioContext *old_ctx,
                                AioContext *new_ctx);

/* The export named @name, or NULL.  Main thread. */
NBDExport *nbd_export_find(const char *name);

/*
 * The largest number of simultaneous clients the server allows (0: no
 * limit).  CAN_MULTI_CONN is advertised unless it is 1, as QEMU does
 * (qemu-nbd -e, nbd-server-start max-connections).  Main thread.
 */
void nbd_set_max_connections(uint32_t max);
uint32_t nbd_get_max_connections(void);

/* ---- nbd/server.c: clients ---- */

/*
 * Called in the main thread when a client's connection has closed and
 * its socket is released.  @negotiated says whether it reached the
 * transmission phase.
 */
typedef void NBDClientCloseFn(NBDClient *client, bool negotiated,
                              void *opaque);

/*
 * Serve the connected socket @fd (ownership passes to the server): run
 * the fixed newstyle negotiation in the main context, with a limit of
 * @handshake_max_secs (0: none), and then the transmission phase in the
 * export's context.  @close_fn(@opaque) runs once, when the client has
 * gone.  Main thread.
 */
NBDClient *nbd_client_new(int fd, uint32_t handshake_max_secs,
                          NBDClientCloseFn *close_fn, void *opaque);

/* Disconnect @client (no-op if it is already going).  Main thread. */
void nbd_client_shutdown(NBDClient *client);

/* Clients that have not closed yet, negotiating or not.  Main thread. */
unsigned int nbd_client_count(void);

/* Disconnect every client.  Main thread. */
void nbd_client_shutdown_all(void);

/* ---- The NBD server: block/export/nbd-export.c ---- */

/*
 * nbd-server-start with C arguments: listen on @addr and serve the NBD
 * exports.  @max_connections 0 means no limit.  TLS is not available:
 * @tls_creds must be NULL ("No TLS credentials with id 'X'");
 * @tls_authz is accepted and unused, as QEMU accepts it without
 * credentials.  Errors: "NBD server already running", the socket's.
 * Main thread.
 */
bool nbd_server_start(const NBDSocketAddress *addr, const char *tls_creds,
                      const char *tls_authz, uint32_t max_connections,
                      GError **errp);

/*
 * nbd-server-start with its QMP arguments: "addr" in the wrapped form
 * ({"type": "unix", "data": {"path": ...}}), "tls-creds"?, "tls-authz"?,
 * "max-connections"? (default 100).  Arguments are checked as QEMU's
 * schema checks them before anything happens.  @args is borrowed.
 */
bool qmp_nbd_server_start(JsonObject *args, GError **errp);

/*
 * The storage daemon's --nbd-server: the same with "addr" flat
 * ({"type": "unix", "path": ...}), as keyval_parse() makes it from
 * "addr.type=unix,addr.path=P".  Values may be strings (keyval).
 */
bool nbd_server_start_options(JsonObject *args, GError **errp);

/*
 * nbd-server-stop: delete every NBD export (hard; waits until they are
 * gone), drop every client and close the listening sockets.  "NBD
 * server not running" if there is none.
 */
bool nbd_server_stop(GError **errp);

bool nbd_server_is_running(void);

/*
 * For sluice-nbd, which listens itself and hands connections to
 * nbd_client_new(): allow NBD exports without nbd-server-start, and
 * advertise multi-conn as a server with @max_connections would.
 */
void nbd_server_set_tool_serving(uint32_t max_connections);

#endif /* BLOCK_NBD_H */
