/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * NBD helpers shared by the server and the tools: names of options and
 * commands as messages print them, errno translation, and listening
 * sockets.
 *
 * Copyright (c) 2026 The Sluice authors
 */
#include "qemu/osdep.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "block/nbd.h"

const char *nbd_opt_name(uint32_t opt)
{
    switch (opt) {
    case NBD_OPT_EXPORT_NAME:
        return "export name";
    case NBD_OPT_ABORT:
        return "abort";
    case NBD_OPT_LIST:
        return "list";
    case NBD_OPT_PEEK_EXPORT:
        return "peek export";
    case NBD_OPT_STARTTLS:
        return "starttls";
    case NBD_OPT_INFO:
        return "info";
    case NBD_OPT_GO:
        return "go";
    case NBD_OPT_STRUCTURED_REPLY:
        return "structured reply";
    case NBD_OPT_LIST_META_CONTEXT:
        return "list meta context";
    case NBD_OPT_SET_META_CONTEXT:
        return "set meta context";
    default:
        /* 7.2 does not know extended headers (11) either. */
        return "<unknown>";
    }
}

const char *nbd_cmd_name(uint16_t cmd)
{
    switch (cmd) {
    case NBD_CMD_READ:
        return "read";
    case NBD_CMD_WRITE:
        return "write";
    case NBD_CMD_DISC:
        return "disconnect";
    case NBD_CMD_FLUSH:
        return "flush";
    case NBD_CMD_TRIM:
        return "trim";
    case NBD_CMD_CACHE:
        return "cache";
    case NBD_CMD_WRITE_ZEROES:
        return "write zeroes";
    case NBD_CMD_BLOCK_STATUS:
        return "block status";
    default:
        return "<unknown>";
    }
}

uint32_t nbd_errno_to_wire(int err)
{
    switch (-err) {
    case 0:
        return NBD_SUCCESS;
    case EPERM:
    case EROFS:
        return NBD_EPERM;
    case EIO:
        return NBD_EIO;
    case ENOMEM:
        return NBD_ENOMEM;
#ifdef EDQUOT
    case EDQUOT:
#endif
    case EFBIG:
    case ENOSPC:
        return NBD_ENOSPC;
    case EOVERFLOW:
        return NBD_EOVERFLOW;
    case ENOTSUP:
#if EOPNOTSUPP != ENOTSUP
    case EOPNOTSUPP:
#endif
        return NBD_ENOTSUP;
    case ESHUTDOWN:
        return NBD_ESHUTDOWN;
    default:
        /* The protocol has no better word for the rest. */
        return NBD_EINVAL;
    }
}

void nbd_socket_address_free(NBDSocketAddress *addr)
{
    if (addr) {
        g_free(addr->host);
        g_free(addr->port);
        g_free(addr->path);
        g_free(addr->fd_str);
        g_free(addr);
    }
}

static void nbd_close_fds(GArray *fds)
{
    guint i;

    for (i = 0; i < fds->len; i++) {
        close(g_array_index(fds, int, i));
    }
    g_array_unref(fds);
}

static int nbd_listen_unix(const char *path, int backlog, GError **errp)
{
    struct sockaddr_un un = { .sun_family = AF_UNIX };
    int fd;

    if (strlen(path) >= sizeof(un.sun_path)) {
        error_setg(errp, "UNIX socket path '%s' is too long", path);
        return -1;
    }
    memcpy(un.sun_path, path, strlen(path) + 1);

    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        error_setg_errno(errp, errno, "Failed to create Unix socket");
        return -1;
    }
    /* A stale socket file from an earlier run is replaced, as QEMU does. */
    if (unlink(path) < 0 && errno != ENOENT) {
        error_setg_errno(errp, errno, "Failed to unlink socket %s", path);
        close(fd);
        return -1;
    }
    if (bind(fd, (struct sockaddr *)&un, sizeof(un)) < 0) {
        error_setg_errno(errp, errno, "Failed to bind socket to %s", path);
        close(fd);
        return -1;
    }
    if (listen(fd, backlog) < 0) {
        error_setg_errno(errp, errno, "Failed to listen on socket");
        unlink(path);
        close(fd);
        return -1;
    }
    return fd;
}

static int nbd_listen_inet(const char *host, const char *port, int backlog,
                           GError **errp)
{
    struct addrinfo hints = {
        .ai_flags = AI_PASSIVE,
        .ai_family = AF_UNSPEC,
        .ai_socktype = SOCK_STREAM,
    };
    struct addrinfo *res, *e;
    int saved_errno = 0;
    int ret;
    int fd = -1;

    if (!host || !*host) {
        host = NULL;
    }
    ret = getaddrinfo(host, port, &hints, &res);
    if (ret != 0) {
        error_setg(errp, "address resolution failed for %s:%s: %s",
                   host ? host : "", port, gai_strerror(ret));
        return -1;
    }
    /* The first address that can be bound wins, as in QEMU. */
    for (e = res; e; e = e->ai_next) {
        int on = 1;

        fd = socket(e->ai_family, e->ai_socktype | SOCK_NONBLOCK |
                    SOCK_CLOEXEC, e->ai_protocol);
        if (fd < 0) {
            saved_errno = errno;
            continue;
        }
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
        if (e->ai_family == AF_INET6) {
            int off = 0;

            /* "::" serves IPv4 clients too. */
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
        }
        if (bind(fd, e->ai_addr, e->ai_addrlen) == 0 &&
            listen(fd, backlog) == 0) {
            break;
        }
        saved_errno = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        error_setg_errno(errp, saved_errno ? saved_errno : EINVAL,
                         "Failed to bind socket");
    }
    return fd;
}

static int nbd_listen_fd(const char *str, GError **errp)
{
    char *end;
    long fd;
    int type;
    socklen_t len = sizeof(type);

    errno = 0;
    fd = strtol(str, &end, 10);
    if (!*str || *end || errno || fd < 0 || fd > INT_MAX) {
        error_setg(errp, "Invalid file descriptor number '%s'", str);
        return -1;
    }
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 ||
        type != SOCK_STREAM) {
        error_setg(errp, "File descriptor '%s' is not a stream socket",
                   str);
        return -1;
    }
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) {
        error_setg_errno(errp, errno, "Failed to make fd %ld non-blocking",
                         fd);
        return -1;
    }
    return fd;
}

GArray *nbd_socket_listen(const NBDSocketAddress *addr, int backlog,
                          GError **errp)
{
    GArray *fds = g_array_new(FALSE, FALSE, sizeof(int));
    int fd = -1;

    switch (addr->type) {
    case NBD_SOCKET_UNIX:
        fd = nbd_listen_unix(addr->path, backlog, errp);
        break;
    case NBD_SOCKET_INET:
        fd = nbd_listen_inet(addr->host, addr->port, backlog, errp);
        break;
    case NBD_SOCKET_FD:
        fd = nbd_listen_fd(addr->fd_str, errp);
        break;
    }
    if (fd < 0) {
        nbd_close_fds(fds);
        return NULL;
    }
    g_array_append_val(fds, fd);
    return fds;
}
