/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Helpers shared by the QED tests: scratch images, options, I/O with
 * pattern checks, raw access to the image file, the QEMU 7.2 corpus and
 * Debian's qemu-img.
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * Every helper asserts on failure unless it returns the error.
 */
#ifndef TESTS_UNIT_TEST_QED_UTIL_H
#define TESTS_UNIT_TEST_QED_UTIL_H

#include "block/block_int.h"
#include "block/qed.h"
#include "qemu/main-loop.h"
#include "sysemu/block-backend.h"

/* Main loop, scratch directory, quiet blkdebug.  First thing in main(). */
void qt_init(void);
/* Remove the scratch directory. */
void qt_cleanup(void);

/* @name in the scratch directory.  g_free() it. */
char *qt_path(const char *name);

/*
 * Create a QED image with creation options "k=v,..." (may be NULL):
 * cluster_size and table_size as numbers, backing_file and backing_fmt
 * as strings.  Returns 0 or -errno (the message goes to *@errp).
 */
int qt_create_err(const char *path, uint64_t size, const char *opts,
                  GError **errp);
int qt_create(const char *path, uint64_t size, const char *opts);

/* Open @path as QED with @flags; asserts success. */
BlockBackend *qt_open(const char *path, int flags);
/* The same, returning NULL with @errp set; @no_backing adds the flag. */
BlockBackend *qt_open_opts(const char *path, int flags, bool no_backing,
                           GError **errp);
/* QED over blkdebug over the file, for breakpoints. */
BlockBackend *qt_open_debug(const char *path, int flags);

/* Synchronous pattern I/O. */
void qt_write(BlockBackend *blk, int pattern, int64_t offset, int64_t len);
void qt_check_pattern(BlockBackend *blk, int pattern, int64_t offset,
                      int64_t len);

/*
 * A write (of zeroes if @pattern < 0) in a coroutine of the main
 * context, running in the background; poll with qt_wait_flag().
 */
typedef struct QtAsyncWrite {
    BlockBackend *blk;
    int pattern;
    int64_t offset;
    int64_t len;
    BdrvRequestFlags flags;
    bool done;
    int ret;
} QtAsyncWrite;

void qt_start_write(QtAsyncWrite *w, BlockBackend *blk, int pattern,
                    int64_t offset, int64_t len);
/* Poll the main context until *@flag, or fail after @timeout_ms. */
void qt_wait_flag(bool *flag, int timeout_ms);
/* Poll the main context for @ms milliseconds. */
void qt_poll_for(int ms);

/* Raw access to the image file. */
uint64_t qt_file_size(const char *path);
void qt_read(const char *path, uint64_t offset, void *buf, size_t len);
uint64_t qt_peek(const char *path, uint64_t offset, int width);
void qt_poke(const char *path, uint64_t offset, int width, uint64_t value);
void qt_read_header(const char *path, QEDHeader *h);
void qt_copy(const char *src, const char *dst);
void qt_assert_same_files(const char *a, const char *b);
/* A raw file of @size bytes, the first @pattern_len of them @pattern. */
void qt_make_raw(const char *path, uint64_t size, int pattern,
                 uint64_t pattern_len);

/* The QEMU 7.2 corpus directory (with images/), or NULL if absent. */
const char *qt_corpus_dir(void);
/* Copy corpus image @name to @dst (writable); the corpus must exist. */
void qt_copy_corpus(const char *name, const char *dst);
/* Compare with corpus image @name if the corpus is there. */
void qt_assert_same_as_corpus(const char *path, const char *name);

/* Debian's qemu-img, for interoperability checks. */
bool qt_have_qemu_img(void);
/* Run "qemu-img @args @path"; returns its exit status, output dropped. */
int qt_qemu_img(const char *args, const char *path);

#endif /* TESTS_UNIT_TEST_QED_UTIL_H */
