/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * sluice-img commit: commit an image's changes into its backing file,
 * with qemu-img 7.2's options, output, messages and exit codes.
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * The work is an active commit job (block/commit.c), run from the main
 * loop until it is ready and then completed, as qemu-img does; the
 * image's backend ends up on the base.
 */
#include "qemu/osdep.h"

#include <getopt.h>

#include "block/blockjob.h"
#include "block/graph-ops.h"
#include "qemu/keyval.h"
#include "qemu/main-loop.h"
#include "tools/sluice-img.h"

enum {
    OPTION_OBJECT = 256,
    OPTION_IMAGE_OPTS,
};

/* ---- Progress, printed the way qemu-img prints it ---- */

typedef struct CommitProgress {
    bool on;
    float current;
    float last_print;
    float min_skip;
} CommitProgress;

static void commit_progress_print(CommitProgress *p, float value)
{
    if (!p->on) {
        return;
    }
    p->current = MIN(value, 100.0f);
    /* The ends are always printed, the rest every min_skip percent. */
    if (p->current > p->last_print + p->min_skip ||
        p->current < p->last_print - p->min_skip ||
        p->current == 0 || p->current == 100) {
        p->last_print = p->current;
        printf("    (%3.2f/100%%)\r", p->current);
        fflush(stdout);
    }
}

static void commit_progress_end(CommitProgress *p)
{
    if (p->on) {
        printf("\n");
        fflush(stdout);
        p->on = false;
    }
}

/* ---- The job ---- */

typedef struct CommitResult {
    int ret;
    bool done;
} CommitResult;

static void img_commit_cb(void *opaque, int ret)
{
    CommitResult *r = opaque;

    r->ret = ret;
    r->done = true;
}

/*
 * Poll until the job is ready (then complete it) or over, printing
 * progress at every turn of the loop.  Returns the job's result.
 */
static int img_commit_run(Job *job, CommitProgress *progress,
                          GError **errp)
{
    AioContext *ctx = job_get_aio_context(job);
    int ret;

    job_ref(job);
    do {
        float pct = 0.0f;

        aio_poll(ctx, true);
        job_lock();
        if (job->progress_total) {
            pct = (float)job->progress_current / job->progress_total * 100.f;
        }
        job_unlock();
        commit_progress_print(progress, pct);
    } while (!job_is_ready(job) && !job_is_completed(job));

    if (!job_is_completed(job)) {
        ret = job_complete_sync(job, errp);
    } else {
        ret = job->ret;
    }
    job_unref(job);
    /* The full bar only for a job that worked, as qemu-img prints it. */
    if (ret == 0) {
        commit_progress_print(progress, 100.0f);
    }
    return ret;
}

/* qemu-img's -r: a byte count with suffixes, at most INT64_MAX. */
static bool img_commit_rate(const char *value, int64_t *out)
{
    uint64_t n;
    int ret = qemu_strtosz(value, NULL, &n);

    if (ret == -ERANGE || (ret == 0 && n > INT64_MAX)) {
        error_report("Invalid rate limit specified. Must be between 0 and "
                     "%" PRId64 ".", INT64_MAX);
        return false;
    }
    if (ret < 0) {
        error_report("Invalid rate limit specified. You may use k, M, G, "
                     "T, P or E suffixes for");
        error_report("kilobytes, megabytes, gigabytes, terabytes, "
                     "petabytes and exabytes.");
        return false;
    }
    *out = n;
    return true;
}

int img_commit(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, OPTION_OBJECT },
        { "image-opts", no_argument, NULL, OPTION_IMAGE_OPTS },
        { NULL, 0, NULL, 0 },
    };
    CommitProgress progress = { .min_skip = 1.0f };
    CommitResult result = { 0 };
    const char *fmt = NULL, *cache = "writeback", *base = NULL;
    const char *filename;
    BlockDriverState *bs, *base_bs;
    BlockBackend *blk;
    BlockJob *bjob;
    GError *err = NULL;
    bool image_opts = false, quiet = false, drop = false, progress_on = false;
    bool writethrough;
    int64_t rate_limit = 0;
    int flags;
    int c;

    while ((c = getopt_long(argc, argv, ":f:ht:b:dpqr:", long_options,
                            NULL)) != -1) {
        switch (c) {
        case 'h':
            return img_help();
        case 'f':
            fmt = optarg;
            break;
        case 't':
            cache = optarg;
            break;
        case 'b':
            base = optarg;
            /* The layers in between become invalid: keep the top as is. */
            drop = true;
            break;
        case 'd':
            drop = true;
            break;
        case 'p':
            progress_on = true;
            break;
        case 'q':
            quiet = true;
            break;
        case 'r':
            if (!img_commit_rate(optarg, &rate_limit)) {
                return 1;
            }
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
            return img_opt_error(c, argv);
        }
    }

    if (quiet) {
        progress_on = false;
    }
    if (optind != argc - 1) {
        return img_usage_error("Expecting one image file name");
    }
    filename = argv[optind];

    flags = BDRV_O_RDWR | BDRV_O_UNMAP;
    if (!bdrv_parse_cache_mode(cache, &flags, &writethrough)) {
        error_report("Invalid cache option: %s", cache);
        return 1;
    }
    if (image_opts && fmt) {
        error_report("--image-opts and --format are mutually exclusive");
        return 1;
    }
    blk = img_open_blk(filename, fmt, NULL, image_opts, flags, writethrough,
                       quiet);
    if (!blk) {
        return 1;
    }

    progress.on = progress_on;
    commit_progress_print(&progress, 0.0f);

    bs = blk_bs(blk);
    if (base) {
        base_bs = bdrv_find_backing_image(bs, base);
        if (!base_bs) {
            error_setg(&err, "Did not find '%s' in the backing chain of "
                       "'%s'", base, filename);
            goto done;
        }
    } else {
        /* qemu-img's habit: the immediate backing file, not the bottom. */
        base_bs = bdrv_backing_bs(bs);
        if (!base_bs) {
            error_setg(&err, "Image does not have a backing file");
            goto done;
        }
    }

    bjob = commit_active_start("commit", bs, base_bs, JOB_DEFAULT,
                               rate_limit, BLOCKDEV_ON_ERROR_REPORT,
                               img_commit_cb, &result, &err);
    if (!bjob) {
        goto done;
    }
    /*
     * The backend moves to the base; the old top stays ours to empty.
     * Sluice's formats cannot be emptied (QEMU's QED cannot either, and
     * qemu-img then leaves the image as it is), so it is only kept alive
     * for the length of the job.
     */
    if (!drop) {
        bdrv_ref(bs);
    }
    img_commit_run(&bjob->job, &progress, NULL);
    if (result.done && result.ret < 0) {
        error_setg(&err, "Block job failed: %s", g_strerror(-result.ret));
    }
    if (!drop) {
        bdrv_unref(bs);
    }

done:
    commit_progress_end(&progress);
    blk_unref(blk);
    if (err) {
        error_report_err(err);
        return 1;
    }
    if (!quiet) {
        printf("Image committed.\n");
    }
    return 0;
}
