/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * linux-aio engine: Linux native AIO (io_submit) driven from coroutines,
 * completed through an eventfd watched by the engine's AioContext.
 *
 * Copyright (c) 2026 The Sluice authors
 */
#include "qemu/osdep.h"
#include "config-host.h"

#include <libaio.h>

#include "block/aio.h"
#include "block/raw-aio.h"
#include "qemu/coroutine.h"
#include "qemu/error.h"
#include "qemu/event_notifier.h"
#include "qemu/iov.h"

/*
 * Kernel ring size.  It bounds how many requests may be in the kernel at
 * once; more wait in the engine's queue until completions free slots.
 */
#define LAIO_MAX_EVENTS 256

/* Largest batch handed to one io_submit(). */
#define LAIO_MAX_BATCH 128

/*
 * The completion ring the kernel maps at the io_context_t address.  Its
 * layout is kernel ABI; reading it directly saves an io_getevents()
 * system call per batch of completions.
 */
#define LAIO_RING_MAGIC 0xa10a10a1

struct laio_ring {
    unsigned int id;
    unsigned int nr;
    unsigned int head;
    unsigned int tail;
    unsigned int magic;
    unsigned int compat_features;
    unsigned int incompat_features;
    unsigned int header_length;
    struct io_event io_events[];
};

typedef struct LaioRequest {
    Coroutine *co;
    struct iocb iocb;
    /* -EINPROGRESS until the kernel (or io_submit) gives a result. */
    ssize_t ret;
    QSIMPLEQ_ENTRY(LaioRequest) next;
} LaioRequest;

struct LinuxAioState {
    AioContext *aio_context;
    io_context_t ctx;
    EventNotifier e;

    /*
     * Runs the completion loop again from a nested aio_poll(): a coroutine
     * woken by the loop may poll its context while the outer loop still
     * holds reaped completions it has not delivered.
     */
    QEMUBH *completion_bh;

    /* Requests not yet accepted by io_submit(), in submission order. */
    QSIMPLEQ_HEAD(, LaioRequest) pending;
    unsigned int n_pending;
    /* Requests the kernel has accepted and not yet completed. */
    unsigned int in_flight;
    /* Nesting of laio_io_plug(). */
    unsigned int plugged;
    /*
     * Nesting of the completion loop; the BH stays scheduled until the
     * outermost run ends.  Requests issued by the coroutines it wakes are
     * submitted at once, not held to its end: a steady stream keeps the
     * device busier than waves of the same size (measured on virtio-blk).
     */
    unsigned int completing;

    /* Reaped completions not yet delivered: events[event_idx..event_max). */
    int event_idx;
    int event_max;
    struct io_event events[LAIO_MAX_EVENTS];
};

/*
 * Take completed events from the kernel into s->events.  Returns how many
 * were taken (0 if none are ready).  Never blocks.
 */
static int laio_reap(LinuxAioState *s)
{
    struct laio_ring *ring = (struct laio_ring *)s->ctx;
    unsigned int head, tail, nr, n = 0;

    if (ring->magic != LAIO_RING_MAGIC || ring->incompat_features != 0) {
        struct timespec zero = { 0, 0 };
        int ret = io_getevents(s->ctx, 0, LAIO_MAX_EVENTS, s->events, &zero);

        /* An error here (EINTR) just means "try again next time". */
        return ret > 0 ? ret : 0;
    }

    nr = ring->nr;
    head = ring->head;
    /* Pairs with the kernel's barrier before it publishes tail. */
    tail = qatomic_load_acquire(&ring->tail);
    if (head >= nr || tail >= nr) {
        return 0;
    }
    while (head != tail && n < LAIO_MAX_EVENTS) {
        s->events[n++] = ring->io_events[head];
        head = head + 1 == nr ? 0 : head + 1;
    }
    /* The event copies must be done before the kernel may reuse slots. */
    qatomic_store_release(&ring->head, head);
    return n;
}

static void laio_complete(LaioRequest *req, ssize_t ret)
{
    req->ret = ret;
    /*
     * A request can fail inside io_submit() called by its own coroutine
     * before that coroutine yields; it sees req->ret itself.
     */
    if (req->co != qemu_coroutine_self()) {
        aio_co_wake(req->co);
    }
}

static void laio_submit_pending(LinuxAioState *s)
{
    struct iocb *iocbs[LAIO_MAX_BATCH];

    while (!QSIMPLEQ_EMPTY(&s->pending) && s->in_flight < LAIO_MAX_EVENTS) {
        unsigned int room = LAIO_MAX_EVENTS - s->in_flight;
        unsigned int n = 0;
        LaioRequest *req;
        int ret;

        if (room > LAIO_MAX_BATCH) {
            room = LAIO_MAX_BATCH;
        }
        QSIMPLEQ_FOREACH(req, &s->pending, next) {
            if (n == room) {
                break;
            }
            iocbs[n++] = &req->iocb;
        }

        ret = io_submit(s->ctx, n, iocbs);
        if (ret == -EAGAIN) {
            if (s->in_flight > 0) {
                /* Completions will free kernel resources; retry then. */
                return;
            }
            /* Nothing will ever free them: the caller gets the error. */
            req = QSIMPLEQ_FIRST(&s->pending);
            QSIMPLEQ_REMOVE_HEAD(&s->pending, next);
            s->n_pending--;
            laio_complete(req, -EAGAIN);
            continue;
        }
        if (ret < 0) {
            /*
             * io_submit() reports the first iocb's own error (EBADF,
             * EINVAL) this way; that request fails, the rest go on.
             */
            req = QSIMPLEQ_FIRST(&s->pending);
            QSIMPLEQ_REMOVE_HEAD(&s->pending, next);
            s->n_pending--;
            laio_complete(req, ret);
            continue;
        }

        /* Accepted requests leave the queue; a partial batch is retried. */
        for (int i = 0; i < ret; i++) {
            QSIMPLEQ_REMOVE_HEAD(&s->pending, next);
        }
        s->n_pending -= ret;
        s->in_flight += ret;
        if (ret == 0) {
            /* Should not happen; do not spin. */
            return;
        }
    }
}

/* Send queued requests unless a plug holds them. */
static void laio_maybe_submit(LinuxAioState *s)
{
    if (!s->plugged) {
        laio_submit_pending(s);
    }
}

static void laio_process_completions(LinuxAioState *s)
{
    s->completing++;
    qemu_bh_schedule(s->completion_bh);

    for (;;) {
        struct io_event *ev;
        LaioRequest *req;

        if (s->event_idx == s->event_max) {
            s->event_idx = 0;
            s->event_max = laio_reap(s);
            if (s->event_max == 0) {
                break;
            }
        }
        /* Advance first: delivering may re-enter this loop. */
        ev = &s->events[s->event_idx++];
        req = container_of(ev->obj, LaioRequest, iocb);
        s->in_flight--;
        laio_complete(req, (ssize_t)(long)ev->res);
    }

    s->completing--;
    if (!s->completing) {
        qemu_bh_cancel(s->completion_bh);
    }
    /* Completions made room for requests waiting in the queue. */
    if (!s->plugged) {
        laio_submit_pending(s);
    }
}

static void laio_completion_bh(void *opaque)
{
    laio_process_completions(opaque);
}

static void laio_completion_cb(EventNotifier *e)
{
    LinuxAioState *s = container_of(e, LinuxAioState, e);

    if (event_notifier_test_and_clear(e)) {
        laio_process_completions(s);
    }
}

LinuxAioState *laio_init(GError **errp)
{
    LinuxAioState *s = g_new0(LinuxAioState, 1);
    int ret;

    ret = event_notifier_init(&s->e, false);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "linux-aio: cannot create eventfd");
        g_free(s);
        return NULL;
    }

    ret = io_setup(LAIO_MAX_EVENTS, &s->ctx);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "linux-aio: io_setup failed");
        event_notifier_cleanup(&s->e);
        g_free(s);
        return NULL;
    }

    QSIMPLEQ_INIT(&s->pending);
    return s;
}

void laio_cleanup(LinuxAioState *s)
{
    if (!s) {
        return;
    }
    g_assert(!s->aio_context);
    g_assert(s->in_flight == 0 && QSIMPLEQ_EMPTY(&s->pending));
    io_destroy(s->ctx);
    event_notifier_cleanup(&s->e);
    g_free(s);
}

void laio_attach_aio_context(LinuxAioState *s, AioContext *ctx)
{
    g_assert(!s->aio_context);
    s->aio_context = ctx;
    s->completion_bh = aio_bh_new(ctx, laio_completion_bh, s);
    aio_set_event_notifier(ctx, &s->e, laio_completion_cb);
}

void laio_detach_aio_context(LinuxAioState *s, AioContext *ctx)
{
    g_assert(s->aio_context == ctx);
    g_assert(s->in_flight == 0 && QSIMPLEQ_EMPTY(&s->pending));
    aio_set_event_notifier(ctx, &s->e, NULL);
    qemu_bh_delete(s->completion_bh);
    s->completion_bh = NULL;
    s->aio_context = NULL;
}

void laio_io_plug(LinuxAioState *s)
{
    s->plugged++;
}

void laio_io_unplug(LinuxAioState *s)
{
    g_assert(s->plugged > 0);
    if (--s->plugged == 0) {
        laio_maybe_submit(s);
    }
}

/* One io_submit() round trip for @iov; a RawAioTransferFunc. */
static int coroutine_fn laio_co_rw(void *opaque, int fd, uint64_t offset,
                                   struct iovec *iov, int niov, int type)
{
    LinuxAioState *s = opaque;
    LaioRequest req = {
        .co = qemu_coroutine_self(),
        .ret = -EINPROGRESS,
    };

    /* The single-buffer commands skip the kernel's iovec copy. */
    if (type == QEMU_AIO_READ) {
        if (niov == 1) {
            io_prep_pread(&req.iocb, fd, iov[0].iov_base, iov[0].iov_len,
                          offset);
        } else {
            io_prep_preadv(&req.iocb, fd, iov, niov, offset);
        }
    } else {
        if (niov == 1) {
            io_prep_pwrite(&req.iocb, fd, iov[0].iov_base, iov[0].iov_len,
                           offset);
        } else {
            io_prep_pwritev(&req.iocb, fd, iov, niov, offset);
        }
    }
    io_set_eventfd(&req.iocb, event_notifier_get_fd(&s->e));

    QSIMPLEQ_INSERT_TAIL(&s->pending, &req, next);
    s->n_pending++;
    if (s->n_pending >= LAIO_MAX_BATCH) {
        /* A full batch is worth a system call even while plugged. */
        laio_submit_pending(s);
    } else {
        laio_maybe_submit(s);
    }

    if (req.ret == -EINPROGRESS) {
        qemu_coroutine_yield();
    }
    return req.ret;
}

int coroutine_fn laio_co_submit(LinuxAioState *s, int fd, uint64_t offset,
                                QEMUIOVector *qiov, int type)
{
    g_assert(s->aio_context);
    if (type == QEMU_AIO_FLUSH) {
        return -ENOTSUP;
    }
    return raw_aio_co_transfer(s, laio_co_rw, fd, offset, qiov, type);
}
