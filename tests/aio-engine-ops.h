/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The two host I/O engines behind one table, for the engine tests and
 * benchmarks that run the same code on each.
 *
 * Copyright (c) 2026 The Sluice authors
 */
#ifndef TESTS_AIO_ENGINE_OPS_H
#define TESTS_AIO_ENGINE_OPS_H

#include "config-host.h"
#include "block/raw-aio.h"

typedef struct AioEngineOps {
    const char *name;
    const char *fio_engine;     /* fio's ioengine= for the same engine */
    bool built;                 /* false: this build lacks the engine */
    bool has_flush;
    void *(*init)(GError **errp);
    void (*cleanup)(void *s);
    void (*attach)(void *s, AioContext *ctx);
    void (*detach)(void *s, AioContext *ctx);
    int coroutine_fn (*submit)(void *s, int fd, uint64_t offset,
                               QEMUIOVector *qiov, int type);
    void (*plug)(void *s);
    void (*unplug)(void *s);
} AioEngineOps;

#ifdef CONFIG_LINUX_AIO
static void *laio_ops_init(GError **errp)
{
    return laio_init(errp);
}

static void laio_ops_cleanup(void *s)
{
    laio_cleanup(s);
}

static void laio_ops_attach(void *s, AioContext *ctx)
{
    laio_attach_aio_context(s, ctx);
}

static void laio_ops_detach(void *s, AioContext *ctx)
{
    laio_detach_aio_context(s, ctx);
}

static int coroutine_fn laio_ops_submit(void *s, int fd, uint64_t offset,
                                        QEMUIOVector *qiov, int type)
{
    return laio_co_submit(s, fd, offset, qiov, type);
}

static void laio_ops_plug(void *s)
{
    laio_io_plug(s);
}

static void laio_ops_unplug(void *s)
{
    laio_io_unplug(s);
}

static const AioEngineOps engine_laio = {
    .name = "linux-aio", .fio_engine = "libaio", .built = true,
    .has_flush = false,
    .init = laio_ops_init, .cleanup = laio_ops_cleanup,
    .attach = laio_ops_attach, .detach = laio_ops_detach,
    .submit = laio_ops_submit, .plug = laio_ops_plug,
    .unplug = laio_ops_unplug,
};
#else
static const AioEngineOps engine_laio = {
    .name = "linux-aio", .fio_engine = "libaio",
};
#endif

#ifdef CONFIG_LINUX_IO_URING
static void *luring_ops_init(GError **errp)
{
    return luring_init(errp);
}

static void luring_ops_cleanup(void *s)
{
    luring_cleanup(s);
}

static void luring_ops_attach(void *s, AioContext *ctx)
{
    luring_attach_aio_context(s, ctx);
}

static void luring_ops_detach(void *s, AioContext *ctx)
{
    luring_detach_aio_context(s, ctx);
}

static int coroutine_fn luring_ops_submit(void *s, int fd, uint64_t offset,
                                          QEMUIOVector *qiov, int type)
{
    return luring_co_submit(s, fd, offset, qiov, type);
}

static void luring_ops_plug(void *s)
{
    luring_io_plug(s);
}

static void luring_ops_unplug(void *s)
{
    luring_io_unplug(s);
}

static const AioEngineOps engine_luring = {
    .name = "io_uring", .fio_engine = "io_uring", .built = true,
    .has_flush = true,
    .init = luring_ops_init, .cleanup = luring_ops_cleanup,
    .attach = luring_ops_attach, .detach = luring_ops_detach,
    .submit = luring_ops_submit, .plug = luring_ops_plug,
    .unplug = luring_ops_unplug,
};
#else
static const AioEngineOps engine_luring = {
    .name = "io_uring", .fio_engine = "io_uring",
};
#endif

#endif /* TESTS_AIO_ENGINE_OPS_H */
