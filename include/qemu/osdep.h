/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Common definitions included first by every Sluice source file.
 *
 * Copyright (c) 2026 The Sluice authors
 */
#ifndef QEMU_OSDEP_H
#define QEMU_OSDEP_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include <glib.h>

#include "qemu/atomic.h"
#include "qemu/error.h"
#include "qemu/queue.h"

/*
 * Marks a function that may yield, so it must only be called from a
 * coroutine.  It documents the contract; nothing checks it at build time.
 */
#define coroutine_fn

/*
 * Marks a function that may be called both inside and outside coroutine
 * context and behaves correctly in both.
 */
#define coroutine_mixed_fn

#define QEMU_NORETURN __attribute__((noreturn))
#define QEMU_WARN_UNUSED_RESULT __attribute__((warn_unused_result))
#define QEMU_ALWAYS_INLINE __attribute__((always_inline))
#define QEMU_NOINLINE __attribute__((noinline))
#define QEMU_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))

#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

#ifndef ARRAY_SIZE
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#endif

/* Round n down/up to a multiple of m (any m > 0). */
#define QEMU_ALIGN_DOWN(n, m) ((n) / (m) * (m))
/* Binary size units. */
#define KiB     (INT64_C(1) << 10)
#define MiB     (INT64_C(1) << 20)
#define GiB     (INT64_C(1) << 30)
#define TiB     (INT64_C(1) << 40)

#define QEMU_ALIGN_UP(n, m) QEMU_ALIGN_DOWN((n) + (m) - 1, (m))
#define QEMU_IS_ALIGNED(n, m) (((n) % (m)) == 0)
#define DIV_ROUND_UP(n, d) (((n) + (d) - 1) / (d))

#define QEMU_PTR_IS_ALIGNED(p, n) QEMU_IS_ALIGNED((uintptr_t)(p), (n))

static inline bool is_power_of_2(uint64_t value)
{
    return value && !(value & (value - 1));
}

#ifndef container_of
#define container_of(ptr, type, member) \
    ((type *)((char *)(ptr) - offsetof(type, member)))
#endif

/*
 * Debug builds (configure --enable-debug) define CONFIG_DEBUG and turn on
 * the checks that are too costly for the request path of a release build.
 */
#ifdef CONFIG_DEBUG
#define QEMU_DEBUG_BUILD 1
#else
#define QEMU_DEBUG_BUILD 0
#endif

/* Sanitizer builds need coroutine stack switches announced to ASan. */
#if defined(__SANITIZE_ADDRESS__)
#define CONFIG_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CONFIG_ASAN 1
#endif
#endif

#endif /* QEMU_OSDEP_H */
