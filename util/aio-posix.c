/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * fd handlers and aio_poll() on Linux, with epoll.
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * One epoll instance per context watches every handler's fd plus the
 * context's own notifier (registered with a NULL data pointer, so a wake-up
 * is told apart from a handler without a lookup and never counts as
 * progress).  The notifier is drained when epoll reports it, before the
 * bottom halves run, so work announced by a write is always seen.
 */
#include "qemu/osdep.h"
#include <sys/epoll.h>
#include <time.h>

#include "block/aio.h"
#include "block/aio-wait.h"
#include "util/aio-internal.h"

#define AIO_MAX_EVENTS 128

struct AioHandler {
    int fd;
    IOHandler *io_read;
    IOHandler *io_write;
    EventNotifierHandler *io_notify;    /* instead of io_read for notifiers */
    void *opaque;
    /* Atomic: set under list_lock, read by the dispatcher without it. */
    bool deleted;
    QTAILQ_ENTRY(AioHandler) node;
};

bool aio_context_setup(AioContext *ctx, GError **errp)
{
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };

    ctx->epollfd = epoll_create1(EPOLL_CLOEXEC);
    if (ctx->epollfd < 0) {
        error_setg_errno(errp, errno, "Failed to create epoll instance");
        return false;
    }
    if (epoll_ctl(ctx->epollfd, EPOLL_CTL_ADD,
                  event_notifier_get_fd(&ctx->notifier), &ev) < 0) {
        error_setg_errno(errp, errno, "Failed to watch event notifier");
        return false;
    }
    /* GLib polls the epoll fd itself when the context is a GSource. */
    ctx->epoll_tag = g_source_add_unix_fd(&ctx->source, ctx->epollfd,
                                          G_IO_IN);
    return true;
}

void aio_context_destroy(AioContext *ctx)
{
    AioHandler *h, *next;

    QTAILQ_FOREACH_SAFE(h, &ctx->handlers, node, next) {
        QTAILQ_REMOVE(&ctx->handlers, h, node);
        g_free(h);
    }
    QTAILQ_FOREACH_SAFE(h, &ctx->deleted_handlers, node, next) {
        QTAILQ_REMOVE(&ctx->deleted_handlers, h, node);
        g_free(h);
    }
    if (ctx->epollfd >= 0) {
        close(ctx->epollfd);
        ctx->epollfd = -1;
    }
}

static AioHandler *find_aio_handler(AioContext *ctx, int fd)
{
    AioHandler *h;

    QTAILQ_FOREACH(h, &ctx->handlers, node) {
        if (h->fd == fd) {
            return h;
        }
    }
    return NULL;
}

/* Unlink @h; free it now or when the last walker leaves.  list_lock held. */
static void aio_handler_retire_locked(AioContext *ctx, AioHandler *h)
{
    QTAILQ_REMOVE(&ctx->handlers, h, node);
    qatomic_set(&h->deleted, true);
    if (ctx->list_walkers) {
        QTAILQ_INSERT_TAIL(&ctx->deleted_handlers, h, node);
    } else {
        g_free(h);
    }
}

static void aio_set_handler(AioContext *ctx, int fd, IOHandler *io_read,
                            IOHandler *io_write,
                            EventNotifierHandler *io_notify, void *opaque)
{
    AioHandler *old;
    AioHandler *new = NULL;
    struct epoll_event ev;
    int op;

    if (io_read || io_write || io_notify) {
        new = g_new0(AioHandler, 1);
        new->fd = fd;
        new->io_read = io_read;
        new->io_write = io_write;
        new->io_notify = io_notify;
        new->opaque = opaque;
    }

    g_mutex_lock(&ctx->list_lock);
    old = find_aio_handler(ctx, fd);

    /*
     * Replacing a handler swaps in a new struct rather than editing the
     * old one, which the home thread may be dispatching right now.
     */
    if (new) {
        ev.events = ((io_read || io_notify) ? EPOLLIN : 0) |
                    (io_write ? EPOLLOUT : 0);
        ev.data.ptr = new;
        op = old ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
        if (epoll_ctl(ctx->epollfd, op, fd, &ev) < 0) {
            /* Regular files cannot be watched: a caller's mistake. */
            g_critical("aio_set_fd_handler: cannot watch fd %d: %s",
                       fd, g_strerror(errno));
            g_free(new);
            new = NULL;
            if (old) {
                epoll_ctl(ctx->epollfd, EPOLL_CTL_DEL, fd, NULL);
            }
        } else {
            QTAILQ_INSERT_TAIL(&ctx->handlers, new, node);
        }
    } else if (old) {
        epoll_ctl(ctx->epollfd, EPOLL_CTL_DEL, fd, NULL);
    }
    if (old) {
        aio_handler_retire_locked(ctx, old);
    }
    g_mutex_unlock(&ctx->list_lock);
}

void aio_set_fd_handler(AioContext *ctx, int fd, IOHandler *io_read,
                        IOHandler *io_write, void *opaque)
{
    aio_set_handler(ctx, fd, io_read, io_write, NULL, opaque);
}

void aio_set_event_notifier(AioContext *ctx, EventNotifier *e,
                            EventNotifierHandler *io_read)
{
    aio_set_handler(ctx, event_notifier_get_fd(e), NULL, NULL, io_read, e);
}

static void aio_list_walk_begin(AioContext *ctx)
{
    g_mutex_lock(&ctx->list_lock);
    ctx->list_walkers++;
    g_mutex_unlock(&ctx->list_lock);
}

static void aio_list_walk_end(AioContext *ctx)
{
    AioHandler *h, *next;

    g_mutex_lock(&ctx->list_lock);
    if (--ctx->list_walkers == 0) {
        QTAILQ_FOREACH_SAFE(h, &ctx->deleted_handlers, node, next) {
            QTAILQ_REMOVE(&ctx->deleted_handlers, h, node);
            g_free(h);
        }
    }
    g_mutex_unlock(&ctx->list_lock);
}

static int aio_epoll_wait(AioContext *ctx, struct epoll_event *events,
                          int64_t timeout_ns)
{
    struct timespec ts;
    int ret;

    if (timeout_ns >= 0) {
        ts.tv_sec = timeout_ns / NANOSECONDS_PER_SECOND;
        ts.tv_nsec = timeout_ns % NANOSECONDS_PER_SECOND;
    }
    ret = epoll_pwait2(ctx->epollfd, events, AIO_MAX_EVENTS,
                       timeout_ns >= 0 ? &ts : NULL, NULL);
    if (ret < 0 && errno == ENOSYS) {
        /* Kernels before 5.11: millisecond resolution, rounded up. */
        int ms = timeout_ns < 0 ? -1 :
                 (int)MIN(DIV_ROUND_UP(timeout_ns, SCALE_MS),
                          (int64_t)INT_MAX);
        ret = epoll_wait(ctx->epollfd, events, AIO_MAX_EVENTS, ms);
    }
    return ret < 0 ? 0 : ret;   /* EINTR: just an early return */
}

static bool aio_dispatch_events(AioContext *ctx, struct epoll_event *events,
                                int n)
{
    bool progress = false;
    int i;

    for (i = 0; i < n; i++) {
        AioHandler *h = events[i].data.ptr;
        uint32_t ev = events[i].events;

        if (!h) {
            /* The context's own notifier: a wake-up, not progress. */
            event_notifier_test_and_clear(&ctx->notifier);
            continue;
        }
        if (!qatomic_read(&h->deleted) &&
            (ev & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
            if (h->io_notify) {
                h->io_notify(h->opaque);
                progress = true;
            } else if (h->io_read) {
                h->io_read(h->opaque);
                progress = true;
            }
        }
        /* io_read may have removed its own handler. */
        if (!qatomic_read(&h->deleted) && h->io_write &&
            (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR))) {
            h->io_write(h->opaque);
            progress = true;
        }
    }
    return progress;
}

bool aio_poll(AioContext *ctx, bool blocking)
{
    struct epoll_event events[AIO_MAX_EVENTS];
    AioContext *saved;
    int64_t timeout = 0;
    bool progress;
    int type;
    int n;

    /* Registry rule 6: a drain callback must never poll. */
    g_assert(aio_drain_callback_depth() == 0);

    aio_context_enter_poll(ctx, &saved);

    if (blocking) {
        qatomic_add(&ctx->notify_me, 2);
        smp_mb();   /* pairs with aio_notify(): raise, then look for work */
        timeout = aio_compute_timeout(ctx);
    }

    aio_list_walk_begin(ctx);
    n = aio_epoll_wait(ctx, events, timeout);
    if (blocking) {
        qatomic_sub(&ctx->notify_me, 2);
    }

    progress = aio_dispatch_events(ctx, events, n);
    aio_list_walk_end(ctx);

    progress |= aio_bh_poll(ctx);
    for (type = 0; type < QEMU_CLOCK_MAX; type++) {
        progress |= timerlist_run_timers(ctx->tlg[type]);
    }

    aio_context_leave_poll(ctx, saved);
    return progress;
}
