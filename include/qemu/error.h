/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Error reporting conventions on top of GError.
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * Functions that can fail take "GError **errp" last.  Messages are what a
 * user reads after the program name, worded like QEMU's, so they carry no
 * trailing period or newline.
 */
#ifndef QEMU_ERROR_H
#define QEMU_ERROR_H

#include <glib.h>

/* Sluice's error domain; codes are SluiceErrorCode. */
#define SLUICE_ERROR sluice_error_quark()
GQuark sluice_error_quark(void);

typedef enum SluiceErrorCode {
    SLUICE_ERROR_GENERIC = 0,
    SLUICE_ERROR_NOT_SUPPORTED,
} SluiceErrorCode;

/* Set @errp to a generic error with a printf-style message. */
#define error_setg(errp, ...) \
    g_set_error((errp), SLUICE_ERROR, SLUICE_ERROR_GENERIC, __VA_ARGS__)

/*
 * Set @errp to the message followed by ": " and strerror(@os_errno), the
 * way QEMU words system errors.  @os_errno is positive.
 */
void error_setg_errno(GError **errp, int os_errno, const char *fmt, ...)
    G_GNUC_PRINTF(3, 4);

#endif /* QEMU_ERROR_H */
