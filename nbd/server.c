/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The NBD server: fixed newstyle negotiation, structured replies, the
 * base:allocation and qemu:allocation-depth metadata contexts, and the
 * transmission phase with one receiving coroutine per client and one
 * coroutine per request.
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * Threads.  Negotiation runs in the main context: it looks exports up by
 * name, and the export list is main-thread data.  Once a client has
 * chosen an export it moves to the export's context, registers drain
 * handlers there and does all its I/O there.  Creating and freeing
 * clients, attaching them to exports and reference counting happen in
 * the main thread.
 *
 * Drain.  A client registers an AioDrainOps with its context.  Begin
 * stops the reading of new requests; end lets them in again.  Every
 * stretch of a client's coroutines that runs between two block-layer
 * calls (parsing a request, sending a reply) is counted in the context's
 * in-flight counter under the tag "nbd-request" and passes through a gate
 * first: while the client is quiesced the gate parks the coroutine until
 * the drained section ends.  Around each blk_co_*() call the count is
 * dropped, because the BlockBackend itself queues requests while drained,
 * and a request queued there while still counted here would wait for a
 * drain that waits for it.  So once a drain has finished, none of the
 * client's coroutines runs: they are parked at a gate, queued in the
 * backend, or waiting (uncounted) for the socket or a request slot; and
 * moving the client to another context needs nothing more than updating
 * its context and drain handler.
 */
#include "qemu/osdep.h"

#include <sys/socket.h>

#include "block/aio-wait.h"
#include "block/block_int.h"
#include "block/export.h"
#include "block/nbd.h"
#include "qemu/co-lock.h"
#include "qemu/coroutine.h"
#include "qemu/main-loop.h"
#include "sysemu/block-backend.h"

/* Requests of one client being served at once. */
#define NBD_MAX_REQUESTS        32

/* Receive buffer: small requests are parsed from it without a syscall. */
#define NBD_RBUF_SIZE           (64 * KiB)

/* Known options carry at most this much data; more is refused. */
#define NBD_MAX_OPTION_SIZE     (1 * MiB)

/* Unknown options' data is read and discarded up to this size. */
#define NBD_MAX_DISCARD_SIZE    NBD_MAX_BUFFER_SIZE

/* Extents in one BLOCK_STATUS chunk; the client asks again for more. */
#define NBD_MAX_EXTENTS         8192

struct NBDExport {
    BlockExport *common;
    char *name;
    char *description;
    bool allocation_depth;
    int64_t size;
    uint32_t min_block;
    uint32_t max_block;
    /* In nbd_exports (visible to clients) until shutdown. */
    bool listed;
    unsigned int nb_clients;
    QTAILQ_HEAD(, NBDClient) clients;
    QTAILQ_ENTRY(NBDExport) next;
};

/* What SET_META_CONTEXT chose, and for which export name. */
typedef struct NBDMetaSelection {
    char *export_name;
    bool base_allocation;
    bool allocation_depth;
} NBDMetaSelection;

typedef struct NBDRequest {
    NBDClient *client;
    uint64_t cookie;
    uint64_t offset;
    uint32_t len;
    uint16_t flags;
    uint16_t type;
    void *data;                 /* WRITE payload */
    /* A request refused while parsing: reply with this error only. */
    uint32_t error;
    char *error_msg;
} NBDRequest;

struct NBDClient {
    int fd;
    NBDExport *exp;             /* set when the transmission phase starts */
    /* Where the client's coroutines run; changes only while drained. */
    AioContext *ctx;
    Coroutine *co;              /* the receiving coroutine */
    QEMUTimer *handshake_timer;
    NBDClientCloseFn *close_fn;
    void *close_opaque;
    AioDrainHandler *drain_handler;
    bool negotiated;
    bool shutdown_requested;    /* main thread */
    bool structured_reply;
    bool no_zeroes;
    NBDMetaSelection meta;
    /* Set in the transmission phase when a request is mid-parse. */
    bool parsing;

    /* Receive buffer; the receiving coroutine only. */
    uint8_t *rbuf;
    size_t rbuf_start;
    size_t rbuf_end;

    /*
     * lock protects what other threads touch: the fd handler and its
     * waiters, the quiesce state and the parked coroutines, and the
     * request accounting that wakes the receiving coroutine.
     */
    GMutex lock;
    AioContext *handler_ctx;    /* where the fd handler is registered */
    bool handler_read;
    bool handler_write;
    Coroutine *read_waiter;
    Coroutine *write_waiter;
    bool idle_waiting;          /* read_waiter waits for a new request */
    bool kicked;                /* ... and a drain took it out of there */
    AioContext *kicked_ctx;     /* where that drain counted it */
    unsigned int quiesce_counter;
    GQueue parked;
    unsigned int nb_requests;
    Coroutine *slot_waiter;
    Coroutine *teardown_waiter;

    /*
     * Replies go out one message at a time.  All coroutines touching
     * these run in ctx's thread, so a flag and a queue do; a CoMutex is
     * avoided because request coroutines also take the graph lock.
     */
    bool send_busy;
    CoQueue send_queue;
    bool send_failed;

    QTAILQ_ENTRY(NBDClient) next;       /* nbd_clients */
    QTAILQ_ENTRY(NBDClient) exp_next;   /* exp->clients */
};

static QTAILQ_HEAD(, NBDExport) nbd_exports =
    QTAILQ_HEAD_INITIALIZER(nbd_exports);
static QTAILQ_HEAD(, NBDClient) nbd_clients =
    QTAILQ_HEAD_INITIALIZER(nbd_clients);
static unsigned int nbd_nb_clients;
static uint32_t nbd_max_connections;

static AioInFlightTag nbd_request_tag(void)
{
    static gsize once;
    static AioInFlightTag tag;

    if (g_once_init_enter(&once)) {
        tag = aio_in_flight_tag("nbd-request");
        g_once_init_leave(&once, 1);
    }
    return tag;
}

/* ---- Byte order ---- */

static inline void put_be16(uint8_t *p, uint16_t v)
{
    v = GUINT16_TO_BE(v);
    memcpy(p, &v, sizeof(v));
}

static inline void put_be32(uint8_t *p, uint32_t v)
{
    v = GUINT32_TO_BE(v);
    memcpy(p, &v, sizeof(v));
}

static inline void put_be64(uint8_t *p, uint64_t v)
{
    v = GUINT64_TO_BE(v);
    memcpy(p, &v, sizeof(v));
}

static inline uint16_t get_be16(const uint8_t *p)
{
    uint16_t v;

    memcpy(&v, p, sizeof(v));
    return GUINT16_FROM_BE(v);
}

static inline uint32_t get_be32(const uint8_t *p)
{
    uint32_t v;

    memcpy(&v, p, sizeof(v));
    return GUINT32_FROM_BE(v);
}

static inline uint64_t get_be64(const uint8_t *p)
{
    uint64_t v;

    memcpy(&v, p, sizeof(v));
    return GUINT64_FROM_BE(v);
}

/* ---- Exports ---- */

void nbd_set_max_connections(uint32_t max)
{
    nbd_max_connections = max;
}

uint32_t nbd_get_max_connections(void)
{
    return nbd_max_connections;
}

NBDExport *nbd_export_find(const char *name)
{
    NBDExport *exp;

    QTAILQ_FOREACH(exp, &nbd_exports, next) {
        if (!strcmp(exp->name, name)) {
            return exp;
        }
    }
    return NULL;
}

/*
 * The smallest block size to advertise.  It is advice (unaligned requests
 * are served all the same), so it follows what QEMU advertises for the
 * same node: a protocol node's own alignment, 512 for a probed raw image
 * (whose first block is checked whole), and 1 for other formats, which
 * pass any request down to a layer that aligns it.
 */
static uint32_t nbd_export_min_block(BlockDriverState *bs)
{
    if (bs->drv->is_protocol || bdrv_is_probed_raw(bs)) {
        return MAX(bs->bl.request_alignment, 1);
    }
    return 1;
}

NBDExport *nbd_export_new(BlockExport *common, const char *name,
                          const char *description, bool allocation_depth,
                          GError **errp)
{
    BlockDriverState *bs = blk_bs(common->blk);
    NBDExport *exp;
    int64_t size;

    assert(qemu_in_main_thread());
    if (strlen(name) > NBD_MAX_STRING_SIZE) {
        error_setg(errp, "export name '%s' too long", name);
        return NULL;
    }
    if (description && strlen(description) > NBD_MAX_STRING_SIZE) {
        error_setg(errp, "description '%s' too long", description);
        return NULL;
    }
    if (nbd_export_find(name)) {
        error_setg(errp, "NBD server already has export named '%s'", name);
        return NULL;
    }
    size = blk_getlength(common->blk);
    if (size < 0) {
        error_setg_errno(errp, -size, "Failed to determine the NBD export's "
                         "length");
        return NULL;
    }

    exp = g_new0(NBDExport, 1);
    exp->common = common;
    exp->name = g_strdup(name);
    exp->description = g_strdup(description);
    exp->allocation_depth = allocation_depth;
    exp->size = size;
    exp->min_block = nbd_export_min_block(bs);
    exp->max_block = NBD_MAX_BUFFER_SIZE;
    if (bs->bl.max_transfer && bs->bl.max_transfer < exp->max_block) {
        exp->max_block = MAX(bs->bl.max_transfer, exp->min_block);
    }
    QTAILQ_INIT(&exp->clients);
    exp->listed = true;
    QTAILQ_INSERT_TAIL(&nbd_exports, exp, next);
    return exp;
}

void nbd_export_request_shutdown(NBDExport *exp)
{
    NBDClient *client, *next;

    assert(qemu_in_main_thread());
    if (exp->listed) {
        QTAILQ_REMOVE(&nbd_exports, exp, next);
        exp->listed = false;
    }
    QTAILQ_FOREACH_SAFE(client, &exp->clients, exp_next, next) {
        nbd_client_shutdown(client);
    }
}

void nbd_export_free(NBDExport *exp)
{
    assert(qemu_in_main_thread());
    assert(QTAILQ_EMPTY(&exp->clients));
    if (exp->listed) {
        QTAILQ_REMOVE(&nbd_exports, exp, next);
    }
    g_free(exp->name);
    g_free(exp->description);
    g_free(exp);
}

unsigned int nbd_export_client_count(NBDExport *exp)
{
    return exp->nb_clients;
}

/* The transmission flags for @client (after its negotiation so far). */
static uint16_t nbd_export_flags(NBDExport *exp, bool structured)
{
    uint16_t flags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH |
                     NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_CACHE;

    if (exp->common->writable) {
        flags |= NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES |
                 NBD_FLAG_SEND_FAST_ZERO;
    } else {
        flags |= NBD_FLAG_READ_ONLY;
    }
    if (nbd_max_connections != 1) {
        flags |= NBD_FLAG_CAN_MULTI_CONN;
    }
    if (structured) {
        flags |= NBD_FLAG_SEND_DF;
    }
    return flags;
}

/* ---- The socket: waiting in the client's context ---- */

static void nbd_update_fd_handler_locked(NBDClient *client);

static void nbd_fd_read_ready(void *opaque)
{
    NBDClient *client = opaque;
    Coroutine *co;

    g_mutex_lock(&client->lock);
    co = client->read_waiter;
    client->read_waiter = NULL;
    client->idle_waiting = false;
    nbd_update_fd_handler_locked(client);
    g_mutex_unlock(&client->lock);
    if (co) {
        aio_co_wake(co);
    }
}

static void nbd_fd_write_ready(void *opaque)
{
    NBDClient *client = opaque;
    Coroutine *co;

    g_mutex_lock(&client->lock);
    co = client->write_waiter;
    client->write_waiter = NULL;
    nbd_update_fd_handler_locked(client);
    g_mutex_unlock(&client->lock);
    if (co) {
        aio_co_wake(co);
    }
}

/*
 * Watch the socket for exactly what somebody waits for.  The handler is
 * registered in the context of the waiters (the client's); epoll is
 * level-triggered, so nothing may stay registered that nobody consumes.
 */
static void nbd_update_fd_handler_locked(NBDClient *client)
{
    bool want_read = client->read_waiter != NULL;
    bool want_write = client->write_waiter != NULL;
    AioContext *ctx = qatomic_read(&client->ctx);

    if (!want_read && !want_write) {
        if (client->handler_ctx) {
            aio_set_fd_handler(client->handler_ctx, client->fd, NULL, NULL,
                               NULL);
            client->handler_ctx = NULL;
        }
        client->handler_read = client->handler_write = false;
        return;
    }
    if (client->handler_ctx == ctx && client->handler_read == want_read &&
        client->handler_write == want_write) {
        return;
    }
    if (client->handler_ctx && client->handler_ctx != ctx) {
        aio_set_fd_handler(client->handler_ctx, client->fd, NULL, NULL,
                           NULL);
    }
    aio_set_fd_handler(ctx, client->fd,
                       want_read ? nbd_fd_read_ready : NULL,
                       want_write ? nbd_fd_write_ready : NULL, client);
    client->handler_ctx = ctx;
    client->handler_read = want_read;
    client->handler_write = want_write;
}

/*
 * Yield until the socket is readable (@write: writable).  @idle: the
 * receiving coroutine waits for the next request, uncounted, and a drain
 * may take it out of the wait (client->kicked).
 */
static void coroutine_fn nbd_wait_fd(NBDClient *client, bool write,
                                     bool idle)
{
    g_mutex_lock(&client->lock);
    if (idle && client->quiesce_counter) {
        /*
         * Drained already: do not wait on the socket (nothing of ours may
         * stay registered in a drained context), park at the gate as a
         * kicked waiter would.
         */
        AioContext *ctx = qatomic_read(&client->ctx);

        client->kicked = true;
        client->kicked_ctx = ctx;
        aio_context_inc_in_flight(ctx, nbd_request_tag());
        g_mutex_unlock(&client->lock);
        return;
    }
    if (write) {
        assert(!client->write_waiter);
        client->write_waiter = qemu_coroutine_self();
    } else {
        assert(!client->read_waiter);
        client->read_waiter = qemu_coroutine_self();
        client->idle_waiting = idle;
    }
    nbd_update_fd_handler_locked(client);
    g_mutex_unlock(&client->lock);
    qemu_coroutine_yield();
}

/* ---- Drain ---- */

static void nbd_drained_begin(void *opaque)
{
    NBDClient *client = opaque;
    Coroutine *kick = NULL;

    g_mutex_lock(&client->lock);
    if (client->quiesce_counter++ == 0 && client->read_waiter &&
        client->idle_waiting) {
        /*
         * Take the receiving coroutine out of its wait for the socket,
         * so that nothing of this client stays registered in the context
         * while drained; it parks at the gate.  It is counted until then,
         * and the drain waits for it.
         */
        kick = client->read_waiter;
        client->read_waiter = NULL;
        client->idle_waiting = false;
        client->kicked = true;
        client->kicked_ctx = qatomic_read(&client->ctx);
        nbd_update_fd_handler_locked(client);
        aio_context_inc_in_flight(client->kicked_ctx, nbd_request_tag());
    }
    g_mutex_unlock(&client->lock);
    if (kick) {
        /* Never enter a coroutine from a drain callback: schedule it. */
        aio_co_schedule(qemu_coroutine_get_aio_context(kick), kick);
    }
}

static void nbd_drained_end(void *opaque)
{
    NBDClient *client = opaque;
    GQueue wake = G_QUEUE_INIT;
    Coroutine *co;

    g_mutex_lock(&client->lock);
    assert(client->quiesce_counter > 0);
    if (--client->quiesce_counter == 0) {
        wake = client->parked;
        g_queue_init(&client->parked);
    }
    g_mutex_unlock(&client->lock);

    /*
     * Each continues in the thread it parked in and moves itself if the
     * client changed contexts meanwhile.
     */
    while ((co = g_queue_pop_head(&wake))) {
        aio_co_schedule(qemu_coroutine_get_aio_context(co), co);
    }
}

static bool nbd_drained_poll(void *opaque)
{
    NBDClient *client = opaque;

    return qatomic_read(&client->parsing);
}

static const AioDrainOps nbd_drain_ops = {
    .drained_begin = nbd_drained_begin,
    .drained_end = nbd_drained_end,
    .drained_poll = nbd_drained_poll,
};

/*
 * Enter a counted stretch: continue in the client's context, wait there
 * while it is quiesced, and count this coroutine as in flight.  @carried
 * is a count somebody already took for us in that context (the drain
 * that kicked us), handed back once we are parked or counted.
 */
static void coroutine_fn nbd_gate_enter(NBDClient *client,
                                        AioContext *carried)
{
    for (;;) {
        AioContext *ctx = qatomic_read(&client->ctx);

        if (ctx != qemu_get_current_aio_context()) {
            if (carried) {
                aio_context_dec_in_flight(carried, nbd_request_tag());
                carried = NULL;
            }
            aio_co_reschedule_self(ctx);
            continue;
        }
        g_mutex_lock(&client->lock);
        if (client->quiesce_counter == 0) {
            aio_context_inc_in_flight(ctx, nbd_request_tag());
            g_mutex_unlock(&client->lock);
            if (carried) {
                aio_context_dec_in_flight(carried, nbd_request_tag());
            }
            return;
        }
        g_queue_push_tail(&client->parked, qemu_coroutine_self());
        g_mutex_unlock(&client->lock);
        /*
         * The wake-up comes through this thread's context, so dropping the
         * count before the yield cannot let anyone enter us too early.
         */
        if (carried) {
            aio_context_dec_in_flight(carried, nbd_request_tag());
            carried = NULL;
        }
        qemu_coroutine_yield();
    }
}

static void coroutine_fn nbd_gate_leave(NBDClient *client)
{
    aio_context_dec_in_flight(qemu_get_current_aio_context(),
                              nbd_request_tag());
}

/* ---- Socket I/O ---- */

/*
 * Read exactly @len bytes.  Returns 0, or -EIO when the connection ended
 * or failed (the client is going away).
 */
static int coroutine_fn nbd_read(NBDClient *client, void *buf, size_t len)
{
    uint8_t *p = buf;

    while (len) {
        size_t avail = client->rbuf_end - client->rbuf_start;
        ssize_t n;

        if (avail) {
            size_t m = MIN(avail, len);

            memcpy(p, client->rbuf + client->rbuf_start, m);
            client->rbuf_start += m;
            p += m;
            len -= m;
            continue;
        }
        client->rbuf_start = client->rbuf_end = 0;
        if (len >= NBD_RBUF_SIZE / 2) {
            /* Large payloads go straight to their buffer. */
            n = recv(client->fd, p, len, 0);
            if (n > 0) {
                p += n;
                len -= n;
                continue;
            }
        } else {
            n = recv(client->fd, client->rbuf, NBD_RBUF_SIZE, 0);
            if (n > 0) {
                client->rbuf_end = n;
                continue;
            }
        }
        if (n == 0) {
            return -EIO;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            return -EIO;
        }
        nbd_wait_fd(client, false, false);
    }
    return 0;
}

/* Read and throw away @len bytes. */
static int coroutine_fn nbd_drop(NBDClient *client, uint64_t len)
{
    g_autofree uint8_t *buf = g_malloc(MIN(len, 64 * KiB));

    while (len) {
        size_t n = MIN(len, 64 * KiB);

        if (nbd_read(client, buf, n) < 0) {
            return -EIO;
        }
        len -= n;
    }
    return 0;
}

static void coroutine_fn nbd_send_lock(NBDClient *client)
{
    while (client->send_busy) {
        qemu_co_queue_wait(&client->send_queue, NULL);
    }
    client->send_busy = true;
}

static void coroutine_fn nbd_send_unlock(NBDClient *client)
{
    client->send_busy = false;
    qemu_co_queue_next(&client->send_queue);
}

/*
 * Send one message made of @iov, whole, before anybody else's.  Returns
 * 0 or -EIO; after a failure every later send fails at once and the
 * receiving side sees the socket shut down.
 */
static int coroutine_fn nbd_writev(NBDClient *client, struct iovec *iov,
                                   int niov)
{
    int ret = 0;

    nbd_send_lock(client);
    while (niov > 0) {
        struct msghdr msg = { .msg_iov = iov, .msg_iovlen = niov };
        ssize_t n;

        if (client->send_failed) {
            ret = -EIO;
            break;
        }
        n = sendmsg(client->fd, &msg, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                nbd_wait_fd(client, true, false);
                continue;
            }
            client->send_failed = true;
            shutdown(client->fd, SHUT_RDWR);
            ret = -EIO;
            break;
        }
        while (niov > 0 && (size_t)n >= iov->iov_len) {
            n -= iov->iov_len;
            iov++;
            niov--;
        }
        if (niov > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + n;
            iov->iov_len -= n;
        }
    }
    nbd_send_unlock(client);
    return ret;
}

static int coroutine_fn nbd_write(NBDClient *client, const void *buf,
                                  size_t len)
{
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };

    return nbd_writev(client, &iov, 1);
}

/* ---- Negotiation ---- */

/* One option reply: header, then @len bytes of @data. */
static int coroutine_fn nbd_send_rep(NBDClient *client, uint32_t opt,
                                     uint32_t type, const void *data,
                                     uint32_t len)
{
    uint8_t hdr[20];
    struct iovec iov[2] = {
        { .iov_base = hdr, .iov_len = sizeof(hdr) },
        { .iov_base = (void *)data, .iov_len = len },
    };

    put_be64(hdr, NBD_REP_MAGIC);
    put_be32(hdr + 8, opt);
    put_be32(hdr + 12, type);
    put_be32(hdr + 16, len);
    return nbd_writev(client, iov, len ? 2 : 1);
}

static int coroutine_fn G_GNUC_PRINTF(4, 5)
nbd_send_rep_err(NBDClient *client, uint32_t opt, uint32_t type,
                 const char *fmt, ...)
{
    g_autofree char *msg = NULL;
    va_list ap;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    return nbd_send_rep(client, opt, type, msg, strlen(msg));
}

static int coroutine_fn nbd_send_info(NBDClient *client, uint32_t opt,
                                      uint16_t info, const void *data,
                                      uint32_t len)
{
    g_autofree uint8_t *buf = g_malloc(2 + len);

    put_be16(buf, info);
    memcpy(buf + 2, data, len);
    return nbd_send_rep(client, opt, NBD_REP_INFO, buf, 2 + len);
}

/* A parser over an option's data. */
typedef struct NBDOptReader {
    const uint8_t *p;
    uint32_t left;
    bool bad;
} NBDOptReader;

static uint32_t opt_get32(NBDOptReader *r)
{
    uint32_t v;

    if (r->left < 4) {
        r->bad = true;
        r->left = 0;
        return 0;
    }
    v = get_be32(r->p);
    r->p += 4;
    r->left -= 4;
    return v;
}

static uint16_t opt_get16(NBDOptReader *r)
{
    uint16_t v;

    if (r->left < 2) {
        r->bad = true;
        r->left = 0;
        return 0;
    }
    v = get_be16(r->p);
    r->p += 2;
    r->left -= 2;
    return v;
}

/* A string of @len bytes, or NULL (and bad) if the data is shorter. */
static char *opt_get_str(NBDOptReader *r, uint32_t len)
{
    char *s;

    if (r->left < len) {
        r->bad = true;
        r->left = 0;
        return NULL;
    }
    s = g_strndup((const char *)r->p, len);
    r->p += len;
    r->left -= len;
    return s;
}

/*
 * INFO and GO.  Returns 1 when GO succeeded (transmission starts), 0 to
 * go on negotiating, -EIO to drop the client.
 */
static int coroutine_fn nbd_opt_info_go(NBDClient *client, uint32_t opt,
                                        const uint8_t *data, uint32_t len,
                                        NBDExport **pexp)
{
    NBDOptReader r = { .p = data, .left = len };
    g_autofree char *name = NULL;
    uint32_t namelen;
    uint16_t nreq;
    bool want_name = false;
    bool want_block_size = false;
    uint8_t buf[14];
    NBDExport *exp;
    uint32_t min_block;
    int i;

    namelen = opt_get32(&r);
    if (!r.bad && namelen > NBD_MAX_STRING_SIZE) {
        return nbd_send_rep_err(client, opt, NBD_REP_ERR_INVALID,
                                "name too long for option %s",
                                nbd_opt_name(opt));
    }
    name = opt_get_str(&r, namelen);
    nreq = opt_get16(&r);
    if (r.bad || r.left != (uint32_t)nreq * 2) {
        return nbd_send_rep_err(client, opt, NBD_REP_ERR_INVALID,
                                "Inconsistent lengths in option %s",
                                nbd_opt_name(opt));
    }
    for (i = 0; i < nreq; i++) {
        uint16_t req = opt_get16(&r);

        if (req == NBD_INFO_NAME) {
            want_name = true;
        } else if (req == NBD_INFO_BLOCK_SIZE) {
            want_block_size = true;
        }
    }

    exp = nbd_export_find(name);
    if (!exp) {
        return nbd_send_rep_err(client, opt, NBD_REP_ERR_UNKNOWN,
                                "export '%s' not present", name);
    }

    if (want_name &&
        nbd_send_info(client, opt, NBD_INFO_NAME, name, strlen(name)) < 0) {
        return -EIO;
    }
    if (exp->description &&
        nbd_send_info(client, opt, NBD_INFO_DESCRIPTION, exp->description,
                      strlen(exp->description)) < 0) {
        return -EIO;
    }
    /*
     * A client that does not ask may not know about block sizes: tell it
     * any size works (the block layer handles unaligned requests).
     */
    min_block = (want_block_size || opt == NBD_OPT_INFO) ?
                exp->min_block : 1;
    put_be32(buf, min_block);
    put_be32(buf + 4, MAX(4096, min_block));
    put_be32(buf + 8, exp->max_block);
    if (nbd_send_info(client, opt, NBD_INFO_BLOCK_SIZE, buf, 12) < 0) {
        return -EIO;
    }
    put_be64(buf, exp->size);
    put_be16(buf + 8, nbd_export_flags(exp, client->structured_reply));
    if (nbd_send_info(client, opt, NBD_INFO_EXPORT, buf, 10) < 0) {
        return -EIO;
    }

    if (opt == NBD_OPT_INFO && !want_block_size && exp->min_block > 1) {
        return nbd_send_rep_err(client, opt, NBD_REP_ERR_BLOCK_SIZE_REQD,
                                "request NBD_INFO_BLOCK_SIZE to use this "
                                "export");
    }
    if (nbd_send_rep(client, opt, NBD_REP_ACK, NULL, 0) < 0) {
        return -EIO;
    }
    if (opt == NBD_OPT_GO) {
        *pexp = exp;
        return 1;
    }
    return 0;
}

/* Send one META_CONTEXT reply. */
static int coroutine_fn nbd_send_meta_context(NBDClient *client,
                                              uint32_t opt, uint32_t id,
                                              const char *name)
{
    size_t len = strlen(name);
    g_autofree uint8_t *buf = g_malloc(4 + len);

    put_be32(buf, id);
    memcpy(buf + 4, name, len);
    return nbd_send_rep(client, opt, NBD_REP_META_CONTEXT, buf, 4 + len);
}

static int coroutine_fn nbd_opt_meta_context(NBDClient *client,
                                             uint32_t opt,
                                             const uint8_t *data,
                                             uint32_t len)
{
    NBDOptReader r = { .p = data, .left = len };
    bool list = opt == NBD_OPT_LIST_META_CONTEXT;
    g_autofree char *name = NULL;
    bool base = false;
    bool depth = false;
    uint32_t namelen;
    uint32_t nq;
    NBDExport *exp;
    uint32_t i;

    if (!list && !client->structured_reply) {
        return nbd_send_rep_err(client, opt, NBD_REP_ERR_INVALID,
                                "request option '%s' when structured reply "
                                "is not negotiated", nbd_opt_name(opt));
    }

    namelen = opt_get32(&r);
    if (!r.bad && namelen > NBD_MAX_STRING_SIZE) {
        return nbd_send_rep_err(client, opt, NBD_REP_ERR_INVALID,
                                "name too long for option %s",
                                nbd_opt_name(opt));
    }
    name = opt_get_str(&r, namelen);
    nq = opt_get32(&r);
    if (r.bad) {
        return nbd_send_rep_err(client, opt, NBD_REP_ERR_INVALID,
                                "Inconsistent lengths in option %s",
                                nbd_opt_name(opt));
    }
    exp = nbd_export_find(name);
    if (!exp) {
        return nbd_send_rep_err(client, opt, NBD_REP_ERR_UNKNOWN,
                                "export '%s' not present", name);
    }

    if (list && nq == 0) {
        base = true;
        depth = exp->allocation_depth;
    }
    for (i = 0; i < nq; i++) {
        uint32_t qlen = opt_get32(&r);
        g_autofree char *q = NULL;

        if (!r.bad && qlen > NBD_MAX_STRING_SIZE) {
            return nbd_send_rep_err(client, opt, NBD_REP_ERR_TOO_BIG,
                                    "query too long");
        }
        q = opt_get_str(&r, qlen);
        if (r.bad) {
            break;
        }
        /* Listing accepts a bare namespace; selecting wants full names. */
        if (!strcmp(q, NBD_META_BASE_ALLOCATION) ||
            (list && !strcmp(q, "base:"))) {
            base = true;
        } else if (exp->allocation_depth &&
                   (!strcmp(q, NBD_META_ALLOCATION_DEPTH) ||
                    (list && !strcmp(q, "qemu:")))) {
            depth = true;
        }
    }
    if (r.bad || r.left) {
        return nbd_send_rep_err(client, opt, NBD_REP_ERR_INVALID,
                                "Inconsistent lengths in option %s",
                                nbd_opt_name(opt));
    }

    if (!list) {
        g_free(client->meta.export_name);
        client->meta.export_name = g_strdup(name);
        client->meta.base_allocation = base;
        client->meta.allocation_depth = depth;
    }
    if (base &&
        nbd_send_meta_context(client, opt,
                              list ? 0 : NBD_META_ID_BASE_ALLOCATION,
                              NBD_META_BASE_ALLOCATION) < 0) {
        return -EIO;
    }
    if (depth &&
        nbd_send_meta_context(client, opt,
                              list ? 0 : NBD_META_ID_ALLOCATION_DEPTH,
                              NBD_META_ALLOCATION_DEPTH) < 0) {
        return -EIO;
    }
    return nbd_send_rep(client, opt, NBD_REP_ACK, NULL, 0);
}

static int coroutine_fn nbd_opt_list(NBDClient *client, uint32_t len)
{
    NBDExport *exp;

    if (len) {
        return nbd_send_rep_err(client, NBD_OPT_LIST, NBD_REP_ERR_INVALID,
                                "option '%s' has unexpected length",
                                nbd_opt_name(NBD_OPT_LIST));
    }
    QTAILQ_FOREACH(exp, &nbd_exports, next) {
        size_t nlen = strlen(exp->name);
        size_t dlen = exp->description ? strlen(exp->description) : 0;
        g_autofree uint8_t *buf = g_malloc(4 + nlen + dlen);

        put_be32(buf, nlen);
        memcpy(buf + 4, exp->name, nlen);
        if (dlen) {
            memcpy(buf + 4 + nlen, exp->description, dlen);
        }
        if (nbd_send_rep(client, NBD_OPT_LIST, NBD_REP_SERVER, buf,
                         4 + nlen + dlen) < 0) {
            return -EIO;
        }
    }
    return nbd_send_rep(client, NBD_OPT_LIST, NBD_REP_ACK, NULL, 0);
}

/*
 * The reply to EXPORT_NAME: no option header, size and flags, then 124
 * zero bytes unless the client agreed to go without them.
 */
static int coroutine_fn nbd_send_export_name_reply(NBDClient *client,
                                                   NBDExport *exp)
{
    uint8_t buf[8 + 2 + 124] = { 0 };

    put_be64(buf, exp->size);
    put_be16(buf + 8, nbd_export_flags(exp, client->structured_reply));
    return nbd_write(client, buf, client->no_zeroes ? 10 : sizeof(buf));
}

/*
 * Run the negotiation.  Returns the export the client chose, or NULL if
 * the client is to be dropped (it aborted, misbehaved or went away).
 */
static NBDExport *coroutine_fn nbd_negotiate(NBDClient *client)
{
    uint8_t hello[18];
    uint8_t cflags_buf[4];
    uint32_t cflags;

    put_be64(hello, NBD_INIT_MAGIC);
    put_be64(hello + 8, NBD_OPTS_MAGIC);
    put_be16(hello + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
    if (nbd_write(client, hello, sizeof(hello)) < 0 ||
        nbd_read(client, cflags_buf, sizeof(cflags_buf)) < 0) {
        return NULL;
    }
    cflags = get_be32(cflags_buf);
    if (cflags & ~(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)) {
        /* Flags we do not know: the protocol says to hang up. */
        return NULL;
    }
    client->no_zeroes = cflags & NBD_FLAG_C_NO_ZEROES;

    for (;;) {
        uint8_t hdr[16];
        g_autofree uint8_t *data = NULL;
        NBDExport *exp = NULL;
        uint32_t opt;
        uint32_t len;
        int ret;

        if (nbd_read(client, hdr, sizeof(hdr)) < 0 ||
            get_be64(hdr) != NBD_OPTS_MAGIC) {
            return NULL;
        }
        opt = get_be32(hdr + 8);
        len = get_be32(hdr + 12);

        switch (opt) {
        case NBD_OPT_EXPORT_NAME:
        case NBD_OPT_INFO:
        case NBD_OPT_GO:
        case NBD_OPT_LIST_META_CONTEXT:
        case NBD_OPT_SET_META_CONTEXT:
            if (len > NBD_MAX_OPTION_SIZE) {
                /* EXPORT_NAME has no error reply: hang up. */
                if (opt == NBD_OPT_EXPORT_NAME ||
                    nbd_drop(client, len) < 0 ||
                    nbd_send_rep_err(client, opt, NBD_REP_ERR_TOO_BIG,
                                     "option %s is too long",
                                     nbd_opt_name(opt)) < 0) {
                    return NULL;
                }
                continue;
            }
            data = g_malloc(len + 1);
            if (nbd_read(client, data, len) < 0) {
                return NULL;
            }
            data[len] = 0;
            break;
        default:
            if (len > NBD_MAX_DISCARD_SIZE) {
                return NULL;
            }
            if (nbd_drop(client, len) < 0) {
                return NULL;
            }
            break;
        }

        switch (opt) {
        case NBD_OPT_EXPORT_NAME: {
            g_autofree char *name = g_strndup((char *)data, len);

            exp = nbd_export_find(name);
            if (!exp || strlen(name) != len) {
                return NULL;
            }
            if (nbd_send_export_name_reply(client, exp) < 0) {
                return NULL;
            }
            ret = 1;
            break;
        }
        case NBD_OPT_ABORT:
            nbd_send_rep(client, opt, NBD_REP_ACK, NULL, 0);
            return NULL;
        case NBD_OPT_LIST:
            ret = nbd_opt_list(client, len);
            break;
        case NBD_OPT_STARTTLS:
            ret = nbd_send_rep_err(client, opt, NBD_REP_ERR_POLICY,
                                   "TLS not configured");
            break;
        case NBD_OPT_INFO:
        case NBD_OPT_GO:
            ret = nbd_opt_info_go(client, opt, data, len, &exp);
            break;
        case NBD_OPT_STRUCTURED_REPLY:
            if (len) {
                ret = nbd_send_rep_err(client, opt, NBD_REP_ERR_INVALID,
                                       "option '%s' has unexpected length",
                                       nbd_opt_name(opt));
            } else if (client->structured_reply) {
                ret = nbd_send_rep_err(client, opt, NBD_REP_ERR_INVALID,
                                       "structured reply already "
                                       "negotiated");
            } else {
                client->structured_reply = true;
                ret = nbd_send_rep(client, opt, NBD_REP_ACK, NULL, 0);
            }
            break;
        case NBD_OPT_LIST_META_CONTEXT:
        case NBD_OPT_SET_META_CONTEXT:
            ret = nbd_opt_meta_context(client, opt, data, len);
            break;
        default:
            ret = nbd_send_rep_err(client, opt, NBD_REP_ERR_UNSUP,
                                   "Unsupported option %" PRIu32 " (%s)",
                                   opt, nbd_opt_name(opt));
            break;
        }
        if (ret < 0) {
            return NULL;
        }
        if (ret > 0) {
            assert(exp);
            /* A context selection counts for the export it named only. */
            if (!client->meta.export_name ||
                strcmp(client->meta.export_name, exp->name)) {
                client->meta.base_allocation = false;
                client->meta.allocation_depth = false;
            }
            return exp;
        }
    }
}

/* ---- Transmission: replies ---- */

static int coroutine_fn nbd_reply_simple(NBDClient *client,
                                         NBDRequest *req, uint32_t error,
                                         void *data, size_t len)
{
    uint8_t hdr[NBD_SIMPLE_REPLY_SIZE];
    struct iovec iov[2] = {
        { .iov_base = hdr, .iov_len = sizeof(hdr) },
        { .iov_base = data, .iov_len = len },
    };

    put_be32(hdr, NBD_SIMPLE_REPLY_MAGIC);
    put_be32(hdr + 4, error);
    put_be64(hdr + 8, req->cookie);
    return nbd_writev(client, iov, len ? 2 : 1);
}

static void set_chunk_header(uint8_t *hdr, NBDRequest *req, uint16_t flags,
                             uint16_t type, uint32_t len)
{
    put_be32(hdr, NBD_STRUCTURED_REPLY_MAGIC);
    put_be16(hdr + 4, flags);
    put_be16(hdr + 6, type);
    put_be64(hdr + 8, req->cookie);
    put_be32(hdr + 16, len);
}

/* An error: an ERROR chunk with a message, or a simple reply. */
static int coroutine_fn nbd_reply_error(NBDClient *client, NBDRequest *req,
                                        uint32_t error, const char *msg)
{
    uint8_t hdr[NBD_CHUNK_HEADER_SIZE + 6];
    size_t mlen = msg ? MIN(strlen(msg), NBD_MAX_STRING_SIZE) : 0;
    struct iovec iov[2] = {
        { .iov_base = hdr, .iov_len = sizeof(hdr) },
        { .iov_base = (void *)msg, .iov_len = mlen },
    };

    assert(error);
    if (!client->structured_reply) {
        return nbd_reply_simple(client, req, error, NULL, 0);
    }
    set_chunk_header(hdr, req, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR,
                     6 + mlen);
    put_be32(hdr + NBD_CHUNK_HEADER_SIZE, error);
    put_be16(hdr + NBD_CHUNK_HEADER_SIZE + 4, mlen);
    return nbd_writev(client, iov, mlen ? 2 : 1);
}

/* The result of a request without data: 0 or a negative errno. */
static int coroutine_fn nbd_reply_status(NBDClient *client, NBDRequest *req,
                                         int ret, const char *what)
{
    if (ret < 0) {
        return nbd_reply_error(client, req, nbd_errno_to_wire(ret), what);
    }
    return nbd_reply_simple(client, req, NBD_SUCCESS, NULL, 0);
}

static int coroutine_fn nbd_send_chunk_data(NBDClient *client,
                                            NBDRequest *req, bool done,
                                            uint64_t offset, void *data,
                                            uint32_t len)
{
    uint8_t hdr[NBD_CHUNK_HEADER_SIZE + 8];
    struct iovec iov[2] = {
        { .iov_base = hdr, .iov_len = sizeof(hdr) },
        { .iov_base = data, .iov_len = len },
    };

    set_chunk_header(hdr, req, done ? NBD_REPLY_FLAG_DONE : 0,
                     NBD_REPLY_TYPE_OFFSET_DATA, 8 + len);
    put_be64(hdr + NBD_CHUNK_HEADER_SIZE, offset);
    return nbd_writev(client, iov, 2);
}

static int coroutine_fn nbd_send_chunk_hole(NBDClient *client,
                                            NBDRequest *req, bool done,
                                            uint64_t offset, uint32_t len)
{
    uint8_t buf[NBD_CHUNK_HEADER_SIZE + 12];

    set_chunk_header(buf, req, done ? NBD_REPLY_FLAG_DONE : 0,
                     NBD_REPLY_TYPE_OFFSET_HOLE, 12);
    put_be64(buf + NBD_CHUNK_HEADER_SIZE, offset);
    put_be32(buf + NBD_CHUNK_HEADER_SIZE + 8, len);
    return nbd_write(client, buf, sizeof(buf));
}

/* ---- Transmission: serving requests ---- */

/*
 * The block layer's I/O runs outside the counted stretches (see the
 * comment at the top): these wrap each call.
 */
static int coroutine_fn nbd_blk_read(NBDClient *client, uint64_t offset,
                                     uint32_t len, void *buf)
{
    QEMUIOVector qiov;
    int ret;

    qemu_iovec_init_buf(&qiov, buf, len);
    nbd_gate_leave(client);
    ret = blk_co_preadv(client->exp->common->blk, offset, len, &qiov, 0);
    nbd_gate_enter(client, NULL);
    return ret;
}

static int coroutine_fn nbd_blk_write(NBDClient *client, uint64_t offset,
                                      uint32_t len, void *buf,
                                      BdrvRequestFlags flags)
{
    QEMUIOVector qiov;
    int ret;

    qemu_iovec_init_buf(&qiov, buf, len);
    nbd_gate_leave(client);
    ret = blk_co_pwritev(client->exp->common->blk, offset, len, &qiov,
                         flags);
    nbd_gate_enter(client, NULL);
    return ret;
}

static int coroutine_fn nbd_blk_flush(NBDClient *client)
{
    int ret;

    nbd_gate_leave(client);
    ret = blk_co_flush(client->exp->common->blk);
    nbd_gate_enter(client, NULL);
    return ret;
}

/* Discard or write zeroes over a range that may exceed one request. */
static int coroutine_fn nbd_blk_zero_range(NBDClient *client, bool discard,
                                           uint64_t offset, uint64_t len,
                                           BdrvRequestFlags flags)
{
    BlockBackend *blk = client->exp->common->blk;
    int ret = 0;

    nbd_gate_leave(client);
    while (len && ret >= 0) {
        int64_t n = MIN(len, (uint64_t)BDRV_REQUEST_MAX_BYTES);

        if (discard) {
            ret = blk_co_pdiscard(blk, offset, n);
        } else {
            ret = blk_co_pwrite_zeroes(blk, offset, n, flags);
        }
        offset += n;
        len -= n;
    }
    nbd_gate_enter(client, NULL);
    return ret;
}

/*
 * Status of the export's node through its backing chain.  Called in a
 * counted stretch: it does not pass the backend's drain gate, and the
 * drain waits for it.
 */
static int coroutine_fn nbd_block_status(NBDClient *client, uint64_t offset,
                                         uint64_t len, int64_t *pnum,
                                         int *depth)
{
    BlockDriverState *bs = blk_bs(client->exp->common->blk);

    return bdrv_co_block_status_above(bs, NULL, offset, len, pnum, NULL,
                                      NULL, depth);
}

static void coroutine_fn nbd_co_read(NBDClient *client, NBDRequest *req)
{
    g_autofree uint8_t *buf = NULL;
    uint64_t pos;
    int ret;

    if (req->len == 0 && client->structured_reply) {
        uint8_t hdr[NBD_CHUNK_HEADER_SIZE];

        set_chunk_header(hdr, req, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE,
                         0);
        nbd_write(client, hdr, sizeof(hdr));
        return;
    }

    buf = g_try_malloc(MAX(req->len, 1));
    if (!buf) {
        nbd_reply_error(client, req, NBD_ENOMEM, "out of memory");
        return;
    }

    if (!client->structured_reply || (req->flags & NBD_CMD_FLAG_DF)) {
        ret = nbd_blk_read(client, req->offset, req->len, buf);
        if (ret < 0) {
            nbd_reply_error(client, req, nbd_errno_to_wire(ret),
                            "reading from file failed");
        } else if (client->structured_reply) {
            nbd_send_chunk_data(client, req, true, req->offset, buf,
                                req->len);
        } else {
            nbd_reply_simple(client, req, NBD_SUCCESS, buf, req->len);
        }
        return;
    }

    /* Structured: data and holes as the allocation map says. */
    pos = 0;
    while (pos < req->len) {
        int64_t pnum;
        bool last;

        ret = nbd_block_status(client, req->offset + pos, req->len - pos,
                               &pnum, NULL);
        if (ret < 0) {
            /* Unknown status: just read it. */
            pnum = req->len - pos;
            ret = 0;
        }
        pnum = MIN((uint64_t)pnum, req->len - pos);
        if (pnum <= 0) {
            pnum = req->len - pos;
        }
        last = pos + pnum == req->len;
        if (ret & BDRV_BLOCK_ZERO) {
            ret = nbd_send_chunk_hole(client, req, last, req->offset + pos,
                                      pnum);
        } else {
            ret = nbd_blk_read(client, req->offset + pos, pnum, buf + pos);
            if (ret < 0) {
                nbd_reply_error(client, req, nbd_errno_to_wire(ret),
                                "reading from file failed");
                return;
            }
            ret = nbd_send_chunk_data(client, req, last, req->offset + pos,
                                      buf + pos, pnum);
        }
        if (ret < 0) {
            return;
        }
        pos += pnum;
    }
}

/* One context's extents over the request's range, merged where equal. */
static int coroutine_fn nbd_collect_extents(NBDClient *client,
                                            NBDRequest *req, bool depth,
                                            GArray *extents)
{
    uint64_t end = MIN(req->offset + req->len, (uint64_t)client->exp->size);
    uint64_t pos = req->offset;
    bool one = req->flags & NBD_CMD_FLAG_REQ_ONE;

    while (pos < end) {
        int64_t pnum;
        int layer = 0;
        uint32_t flags;
        uint32_t *last;
        int ret;

        ret = nbd_block_status(client, pos, end - pos, &pnum,
                               depth ? &layer : NULL);
        if (ret < 0) {
            return ret;
        }
        if (pnum <= 0) {
            pnum = end - pos;
        }
        if (depth) {
            flags = layer;
        } else {
            flags = (ret & BDRV_BLOCK_DATA ? 0 : NBD_STATE_HOLE) |
                    (ret & BDRV_BLOCK_ZERO ? NBD_STATE_ZERO : 0);
        }
        last = extents->len ?
               &g_array_index(extents, uint32_t, extents->len - 2) : NULL;
        if (last && last[1] == flags) {
            last[0] += pnum;
        } else {
            uint32_t e[2] = { pnum, flags };

            if (one && extents->len) {
                break;
            }
            if (extents->len / 2 >= NBD_MAX_EXTENTS) {
                break;
            }
            g_array_append_vals(extents, e, 2);
        }
        pos += pnum;
    }
    return 0;
}

static void coroutine_fn nbd_co_block_status(NBDClient *client,
                                             NBDRequest *req)
{
    bool want[2] = {
        client->meta.base_allocation,
        client->meta.allocation_depth,
    };
    uint32_t ids[2] = {
        NBD_META_ID_BASE_ALLOCATION, NBD_META_ID_ALLOCATION_DEPTH,
    };
    int nctx = want[0] + want[1];
    int sent = 0;
    int i;

    for (i = 0; i < 2; i++) {
        g_autoptr(GArray) extents = NULL;
        g_autofree uint8_t *buf = NULL;
        size_t len;
        guint j;
        int ret;

        if (!want[i]) {
            continue;
        }
        extents = g_array_new(FALSE, FALSE, sizeof(uint32_t));
        ret = nbd_collect_extents(client, req, i == 1, extents);
        if (ret < 0) {
            nbd_reply_error(client, req, nbd_errno_to_wire(ret),
                            "can't get block status");
            return;
        }
        len = 4 + extents->len * 4;
        buf = g_malloc(NBD_CHUNK_HEADER_SIZE + len);
        set_chunk_header(buf, req,
                         ++sent == nctx ? NBD_REPLY_FLAG_DONE : 0,
                         NBD_REPLY_TYPE_BLOCK_STATUS, len);
        put_be32(buf + NBD_CHUNK_HEADER_SIZE, ids[i]);
        for (j = 0; j < extents->len; j++) {
            put_be32(buf + NBD_CHUNK_HEADER_SIZE + 4 + j * 4,
                     g_array_index(extents, uint32_t, j));
        }
        if (nbd_write(client, buf, NBD_CHUNK_HEADER_SIZE + len) < 0) {
            return;
        }
    }
}

static void coroutine_fn nbd_handle_request(NBDClient *client,
                                            NBDRequest *req)
{
    BdrvRequestFlags flags = 0;
    int ret;

    if (req->error) {
        nbd_reply_error(client, req, req->error, req->error_msg);
        return;
    }

    switch (req->type) {
    case NBD_CMD_READ:
        nbd_co_read(client, req);
        break;
    case NBD_CMD_WRITE:
        if (req->flags & NBD_CMD_FLAG_FUA) {
            flags |= BDRV_REQ_FUA;
        }
        ret = req->len ? nbd_blk_write(client, req->offset, req->len,
                                       req->data, flags) : 0;
        nbd_reply_status(client, req, ret, "writing to file failed");
        break;
    case NBD_CMD_FLUSH:
        ret = nbd_blk_flush(client);
        nbd_reply_status(client, req, ret, "flush failed");
        break;
    case NBD_CMD_TRIM:
        ret = nbd_blk_zero_range(client, true, req->offset, req->len, 0);
        if (ret >= 0 && (req->flags & NBD_CMD_FLAG_FUA)) {
            ret = nbd_blk_flush(client);
        }
        nbd_reply_status(client, req, ret, "discard failed");
        break;
    case NBD_CMD_WRITE_ZEROES:
        if (!(req->flags & NBD_CMD_FLAG_NO_HOLE)) {
            flags |= BDRV_REQ_MAY_UNMAP;
        }
        if (req->flags & NBD_CMD_FLAG_FAST_ZERO) {
            flags |= BDRV_REQ_NO_FALLBACK;
        }
        if (req->flags & NBD_CMD_FLAG_FUA) {
            flags |= BDRV_REQ_FUA;
        }
        ret = nbd_blk_zero_range(client, false, req->offset, req->len,
                                 flags);
        if (ret == -ENOTSUP && (flags & BDRV_REQ_NO_FALLBACK)) {
            /* A fast zero that would be slow: the client falls back. */
            nbd_reply_error(client, req, NBD_ENOTSUP,
                            "fast zero not possible");
            break;
        }
        nbd_reply_status(client, req, ret, "writing to file failed");
        break;
    case NBD_CMD_CACHE:
        /* Advisory: nothing would keep the data any closer. */
        nbd_reply_simple(client, req, NBD_SUCCESS, NULL, 0);
        break;
    case NBD_CMD_BLOCK_STATUS:
        nbd_co_block_status(client, req);
        break;
    default:
        g_assert_not_reached();
    }
}

static void nbd_request_free(NBDRequest *req)
{
    g_free(req->data);
    g_free(req->error_msg);
    g_free(req);
}

/* Runs counted; the receiving coroutine took the count for it. */
static void coroutine_fn nbd_request_co(void *opaque)
{
    NBDRequest *req = opaque;
    NBDClient *client = req->client;
    Coroutine *wake = NULL;

    nbd_handle_request(client, req);
    nbd_request_free(req);

    g_mutex_lock(&client->lock);
    client->nb_requests--;
    if (client->slot_waiter) {
        wake = client->slot_waiter;
        client->slot_waiter = NULL;
    } else if (client->teardown_waiter && client->nb_requests == 0) {
        wake = client->teardown_waiter;
        client->teardown_waiter = NULL;
    }
    g_mutex_unlock(&client->lock);
    if (wake) {
        aio_co_wake(wake);
    }
    nbd_gate_leave(client);
}

/* ---- Transmission: receiving requests ---- */

static void G_GNUC_PRINTF(3, 4)
nbd_request_set_error(NBDRequest *req, uint32_t error, const char *fmt, ...)
{
    va_list ap;

    if (req->error) {
        return;
    }
    req->error = error;
    va_start(ap, fmt);
    req->error_msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
}

/* The command flags each command takes besides FUA. */
static uint16_t nbd_valid_flags(NBDClient *client, uint16_t type)
{
    switch (type) {
    case NBD_CMD_READ:
        return NBD_CMD_FLAG_FUA |
               (client->structured_reply ? NBD_CMD_FLAG_DF : 0);
    case NBD_CMD_WRITE_ZEROES:
        return NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE |
               NBD_CMD_FLAG_FAST_ZERO;
    case NBD_CMD_BLOCK_STATUS:
        return NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_REQ_ONE;
    default:
        return NBD_CMD_FLAG_FUA;
    }
}

/*
 * Read and check one request (counted).  Returns the request to serve
 * (possibly one that only carries an error), or NULL with *@quit set
 * when the connection is to end after what is in flight, or when the
 * client went away.
 */
static NBDRequest *coroutine_fn nbd_receive_request(NBDClient *client,
                                                    bool *quit)
{
    uint8_t hdr[NBD_REQUEST_SIZE];
    NBDRequest *req;
    uint32_t magic;
    uint64_t size = client->exp->size;
    uint16_t bad_flags;

    if (nbd_read(client, hdr, sizeof(hdr)) < 0) {
        *quit = true;
        return NULL;
    }
    req = g_new0(NBDRequest, 1);
    req->client = client;
    magic = get_be32(hdr);
    req->flags = get_be16(hdr + 4);
    req->type = get_be16(hdr + 6);
    req->cookie = get_be64(hdr + 8);
    req->offset = get_be64(hdr + 16);
    req->len = get_be32(hdr + 24);

    if (magic != NBD_REQUEST_MAGIC) {
        /* We are lost in the stream: answer and hang up. */
        nbd_request_set_error(req, NBD_EINVAL, "invalid magic (got 0x%"
                              PRIx32 ")", magic);
        *quit = true;
        return req;
    }
    if (req->type == NBD_CMD_DISC) {
        nbd_request_free(req);
        *quit = true;
        return NULL;
    }
    if ((req->type == NBD_CMD_READ || req->type == NBD_CMD_WRITE) &&
        req->len > NBD_MAX_BUFFER_SIZE) {
        nbd_request_set_error(req, NBD_EINVAL, "len (%" PRIu32 " ) is "
                              "larger than max len (%u)", req->len,
                              NBD_MAX_BUFFER_SIZE);
        /* A payload we will not read leaves the stream unusable. */
        if (req->type == NBD_CMD_WRITE) {
            *quit = true;
        }
        return req;
    }
    if (req->type == NBD_CMD_WRITE && req->len) {
        req->data = g_try_malloc(req->len);
        if (!req->data) {
            nbd_request_set_error(req, NBD_ENOMEM, "out of memory");
            if (nbd_drop(client, req->len) < 0) {
                *quit = true;
            }
            return req;
        }
        if (nbd_read(client, req->data, req->len) < 0) {
            nbd_request_free(req);
            *quit = true;
            return NULL;
        }
    }

    if (!client->exp->common->writable &&
        (req->type == NBD_CMD_WRITE || req->type == NBD_CMD_TRIM ||
         req->type == NBD_CMD_WRITE_ZEROES)) {
        nbd_request_set_error(req, NBD_EINVAL, "Export is read-only");
        return req;
    }
    if (req->offset > size || req->len > size - req->offset) {
        nbd_request_set_error(req, NBD_EINVAL, "operation past EOF; From: %"
                              PRIu64 ", Len: %" PRIu32 ", Size: %" PRIu64,
                              req->offset, req->len, size);
        return req;
    }
    if ((req->flags & NBD_CMD_FLAG_DF) && !client->structured_reply &&
        req->type == NBD_CMD_READ) {
        nbd_request_set_error(req, NBD_EINVAL,
                              "DF flag used without structured reply");
        return req;
    }
    bad_flags = req->flags & ~nbd_valid_flags(client, req->type);
    if (bad_flags) {
        nbd_request_set_error(req, NBD_EINVAL, "unsupported flags for "
                              "command %s (got 0x%x)",
                              nbd_cmd_name(req->type), bad_flags);
        return req;
    }
    switch (req->type) {
    case NBD_CMD_READ:
    case NBD_CMD_WRITE:
    case NBD_CMD_FLUSH:
    case NBD_CMD_TRIM:
    case NBD_CMD_CACHE:
    case NBD_CMD_WRITE_ZEROES:
        break;
    case NBD_CMD_BLOCK_STATUS:
        if (!req->len) {
            nbd_request_set_error(req, NBD_EINVAL, "need non-zero length");
        } else if (!client->structured_reply ||
                   (!client->meta.base_allocation &&
                    !client->meta.allocation_depth)) {
            nbd_request_set_error(req, NBD_EINVAL,
                                  "CMD_BLOCK_STATUS not negotiated");
        }
        break;
    default:
        nbd_request_set_error(req, NBD_EINVAL, "invalid request type (%u) "
                              "received", req->type);
        break;
    }
    return req;
}

/* Wait (uncounted) until another request may start. */
static void coroutine_fn nbd_wait_request_slot(NBDClient *client)
{
    for (;;) {
        g_mutex_lock(&client->lock);
        if (client->nb_requests < NBD_MAX_REQUESTS) {
            g_mutex_unlock(&client->lock);
            return;
        }
        client->slot_waiter = qemu_coroutine_self();
        g_mutex_unlock(&client->lock);
        qemu_coroutine_yield();
    }
}

/*
 * Wait (uncounted) until the next request's first bytes are there.
 * Returns false when the connection has ended.  If a drain took us out of
 * the wait, *@carried is the context in which it counted us.
 */
static bool coroutine_fn nbd_wait_next_request(NBDClient *client,
                                               AioContext **carried)
{
    *carried = NULL;
    while (client->rbuf_end == client->rbuf_start) {
        ssize_t n;

        client->rbuf_start = client->rbuf_end = 0;
        n = recv(client->fd, client->rbuf, NBD_RBUF_SIZE, 0);
        if (n > 0) {
            client->rbuf_end = n;
            break;
        }
        if (n == 0) {
            return false;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            return false;
        }
        nbd_wait_fd(client, false, true);
        g_mutex_lock(&client->lock);
        if (client->kicked) {
            client->kicked = false;
            *carried = client->kicked_ctx;
            g_mutex_unlock(&client->lock);
            /* Park first; read once the drained section is over. */
            return true;
        }
        g_mutex_unlock(&client->lock);
    }
    return true;
}

static void coroutine_fn nbd_transmission(NBDClient *client)
{
    bool quit = false;

    while (!quit) {
        AioContext *carried;
        NBDRequest *req;
        Coroutine *co;

        nbd_wait_request_slot(client);
        if (!nbd_wait_next_request(client, &carried)) {
            if (carried) {
                aio_context_dec_in_flight(carried, nbd_request_tag());
            }
            break;
        }
        nbd_gate_enter(client, carried);
        if (carried) {
            /* The drain is over; look for the request afresh. */
            nbd_gate_leave(client);
            continue;
        }

        qatomic_set(&client->parsing, true);
        req = nbd_receive_request(client, &quit);
        qatomic_set(&client->parsing, false);
        if (!req) {
            nbd_gate_leave(client);
            break;
        }

        g_mutex_lock(&client->lock);
        client->nb_requests++;
        g_mutex_unlock(&client->lock);
        /* The request's own count; it drops it when it is done. */
        aio_context_inc_in_flight(qemu_get_current_aio_context(),
                                  nbd_request_tag());
        co = qemu_coroutine_create(nbd_request_co, req);
        aio_co_enter(qemu_get_current_aio_context(), co);
        nbd_gate_leave(client);
    }

    /* Let the requests in flight answer before the socket closes. */
    for (;;) {
        g_mutex_lock(&client->lock);
        if (client->nb_requests == 0) {
            g_mutex_unlock(&client->lock);
            break;
        }
        client->teardown_waiter = qemu_coroutine_self();
        g_mutex_unlock(&client->lock);
        qemu_coroutine_yield();
    }
}

/* ---- Clients ---- */

unsigned int nbd_client_count(void)
{
    return nbd_nb_clients;
}

void nbd_client_shutdown(NBDClient *client)
{
    assert(qemu_in_main_thread());
    if (!client->shutdown_requested) {
        client->shutdown_requested = true;
        /* Pending and future socket calls fail; the coroutines wind up. */
        shutdown(client->fd, SHUT_RDWR);
    }
}

void nbd_client_shutdown_all(void)
{
    NBDClient *client;

    QTAILQ_FOREACH(client, &nbd_clients, next) {
        nbd_client_shutdown(client);
    }
}

static void nbd_handshake_timeout(void *opaque)
{
    NBDClient *client = opaque;

    if (!client->negotiated) {
        nbd_client_shutdown(client);
    }
}

/* In the main thread, once the client's coroutines have all finished. */
static void nbd_client_finish_bh(void *opaque)
{
    NBDClient *client = opaque;
    NBDExport *exp = client->exp;

    if (client->handshake_timer) {
        timer_free(client->handshake_timer);
    }
    if (client->drain_handler) {
        aio_context_remove_drain_ops(client->drain_handler);
    }
    g_mutex_lock(&client->lock);
    assert(!client->read_waiter && !client->write_waiter);
    assert(g_queue_is_empty(&client->parked));
    nbd_update_fd_handler_locked(client);
    g_mutex_unlock(&client->lock);

    if (exp) {
        QTAILQ_REMOVE(&exp->clients, client, exp_next);
        exp->nb_clients--;
    }
    QTAILQ_REMOVE(&nbd_clients, client, next);
    nbd_nb_clients--;
    close(client->fd);

    if (client->close_fn) {
        client->close_fn(client, client->negotiated, client->close_opaque);
    }
    if (exp) {
        blk_exp_unref(exp->common);
    }
    g_mutex_clear(&client->lock);
    g_free(client->meta.export_name);
    g_free(client->rbuf);
    g_free(client);
}

/* Start transmission with @exp.  Main thread. */
static void nbd_client_attach(NBDClient *client, NBDExport *exp)
{
    assert(qemu_in_main_thread());
    client->exp = exp;
    client->negotiated = true;
    blk_exp_ref(exp->common);
    QTAILQ_INSERT_TAIL(&exp->clients, client, exp_next);
    exp->nb_clients++;
    qatomic_set(&client->ctx, exp->common->ctx);
    client->drain_handler = aio_context_add_drain_ops(exp->common->ctx,
                                                      &nbd_drain_ops,
                                                      client);
    if (client->handshake_timer) {
        timer_del(client->handshake_timer);
    }
}

static void coroutine_fn nbd_client_co(void *opaque)
{
    NBDClient *client = opaque;
    NBDExport *exp;

    exp = nbd_negotiate(client);
    if (exp && !client->shutdown_requested) {
        nbd_client_attach(client, exp);
        nbd_transmission(client);
    }
    aio_bh_schedule_oneshot(qemu_get_aio_context(), nbd_client_finish_bh,
                            client);
}

NBDClient *nbd_client_new(int fd, uint32_t handshake_max_secs,
                          NBDClientCloseFn *close_fn, void *opaque)
{
    NBDClient *client = g_new0(NBDClient, 1);
    AioContext *main_ctx = qemu_get_aio_context();
    int flags;

    assert(qemu_in_main_thread());
    client->fd = fd;
    client->ctx = main_ctx;
    client->close_fn = close_fn;
    client->close_opaque = opaque;
    client->rbuf = g_malloc(NBD_RBUF_SIZE);
    g_mutex_init(&client->lock);
    g_queue_init(&client->parked);
    qemu_co_queue_init(&client->send_queue);

    flags = fcntl(fd, F_GETFL);
    if (flags >= 0 && !(flags & O_NONBLOCK)) {
        fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    }
    QTAILQ_INSERT_TAIL(&nbd_clients, client, next);
    nbd_nb_clients++;

    if (handshake_max_secs) {
        client->handshake_timer = aio_timer_new(main_ctx,
                                                QEMU_CLOCK_REALTIME,
                                                SCALE_MS,
                                                nbd_handshake_timeout,
                                                client);
        timer_mod(client->handshake_timer,
                  qemu_clock_get_ms(QEMU_CLOCK_REALTIME) +
                  handshake_max_secs * 1000);
    }
    client->co = qemu_coroutine_create(nbd_client_co, client);
    aio_co_enter(main_ctx, client->co);
    return client;
}

/* ---- Moving between contexts ---- */

void nbd_export_set_aio_context(NBDExport *exp, AioContext *old_ctx,
                                AioContext *new_ctx)
{
    NBDClient *client;

    assert(qemu_in_main_thread());
    assert(aio_context_is_drained(old_ctx) && aio_context_is_drained(new_ctx));
    QTAILQ_FOREACH(client, &exp->clients, exp_next) {
        AioDrainHandler *old = client->drain_handler;

        /*
         * Both contexts are drained: the new handler begins at once, the
         * old one ends at once, and the client stays quiesced throughout.
         */
        qatomic_set(&client->ctx, new_ctx);
        g_mutex_lock(&client->lock);
        nbd_update_fd_handler_locked(client);
        g_mutex_unlock(&client->lock);
        client->drain_handler = aio_context_add_drain_ops(new_ctx,
                                                          &nbd_drain_ops,
                                                          client);
        if (old) {
            aio_context_remove_drain_ops(old);
        }
    }
}
