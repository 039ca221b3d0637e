/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * IOThread: a thread dedicated to one AioContext.
 *
 * Copyright (c) 2026 The Sluice authors
 */
#include "qemu/osdep.h"

#include "qemu/iothread.h"
#include "qemu/keyval.h"
#include "qemu/object.h"

struct IOThread {
    char *id;
    GThread *thread;
    AioContext *ctx;
    /* Set by the stop BH in the iothread itself; read by its loop. */
    bool stopping;
    /* Start-up hand-shake: the creator waits until the loop runs. */
    GMutex init_lock;
    GCond init_cond;
    bool running;
};

static gpointer iothread_run(gpointer opaque)
{
    IOThread *iothread = opaque;

    aio_context_set_home_thread(iothread->ctx);

    g_mutex_lock(&iothread->init_lock);
    iothread->running = true;
    g_cond_signal(&iothread->init_cond);
    g_mutex_unlock(&iothread->init_lock);

    while (!iothread->stopping) {
        aio_poll(iothread->ctx, true);
    }
    return NULL;
}

static void iothread_stop_bh(void *opaque)
{
    IOThread *iothread = opaque;

    iothread->stopping = true;
}

IOThread *iothread_create(const char *id, GError **errp)
{
    IOThread *iothread = g_new0(IOThread, 1);
    g_autofree char *name = g_strdup_printf("IO %s", id);

    iothread->ctx = aio_context_new(errp);
    if (!iothread->ctx) {
        g_free(iothread);
        return NULL;
    }
    iothread->id = g_strdup(id);
    g_mutex_init(&iothread->init_lock);
    g_cond_init(&iothread->init_cond);

    iothread->thread = g_thread_try_new(name, iothread_run, iothread, errp);
    if (!iothread->thread) {
        aio_context_unref(iothread->ctx);
        g_mutex_clear(&iothread->init_lock);
        g_cond_clear(&iothread->init_cond);
        g_free(iothread->id);
        g_free(iothread);
        return NULL;
    }

    g_mutex_lock(&iothread->init_lock);
    while (!iothread->running) {
        g_cond_wait(&iothread->init_cond, &iothread->init_lock);
    }
    g_mutex_unlock(&iothread->init_lock);
    return iothread;
}

AioContext *iothread_get_aio_context(IOThread *iothread)
{
    return iothread->ctx;
}

const char *iothread_get_id(IOThread *iothread)
{
    return iothread->id;
}

void iothread_destroy(IOThread *iothread)
{
    assert(g_thread_self() != iothread->thread);

    /* Stopping from inside the loop needs no locking of the flag. */
    aio_bh_schedule_oneshot(iothread->ctx, iothread_stop_bh, iothread);
    g_thread_join(iothread->thread);

    aio_context_unref(iothread->ctx);
    g_mutex_clear(&iothread->init_lock);
    g_cond_clear(&iothread->init_cond);
    g_free(iothread->id);
    g_free(iothread);
}

/* ---- The "iothread" user-creatable object ---- */

/*
 * QEMU's polling and thread-pool tuning properties.  They are validated
 * and accepted so that command lines written for QEMU work; Sluice's
 * event loop does not busy-poll, and its pools size themselves.
 */
static const char *const iothread_props[] = {
    "poll-max-ns", "poll-grow", "poll-shrink", "aio-max-batch",
    "thread-pool-min", "thread-pool-max", NULL,
};

static void *iothread_object_create(const char *id, JsonObject *props,
                                    GError **errp)
{
    g_autofree char *unknown = keyval_find_unknown(props, iothread_props);
    int i;

    if (unknown) {
        error_setg(errp, "Parameter '%s' is unexpected", unknown);
        return NULL;
    }
    for (i = 0; iothread_props[i]; i++) {
        int64_t v;

        if (!keyval_get_int(props, iothread_props[i], 0, &v, errp)) {
            return NULL;
        }
        if (v < 0) {
            error_setg(errp, "%s must not be negative", iothread_props[i]);
            return NULL;
        }
    }
    return iothread_create(id, errp);
}

static void iothread_object_destroy(void *obj)
{
    iothread_destroy(obj);
}

static const UserCreatableType iothread_type = {
    .name = "iothread",
    .create = iothread_object_create,
    .destroy = iothread_object_destroy,
};

static void __attribute__((constructor)) iothread_type_init(void)
{
    user_creatable_register(&iothread_type);
}
