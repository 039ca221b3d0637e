/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Error helpers.
 *
 * Copyright (c) 2026 The Sluice authors
 */
#include "qemu/osdep.h"

G_DEFINE_QUARK(sluice-error-quark, sluice_error)

void error_setg_errno(GError **errp, int os_errno, const char *fmt, ...)
{
    va_list ap;
    g_autofree char *msg = NULL;

    if (!errp) {
        return;
    }
    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_set_error(errp, SLUICE_ERROR, SLUICE_ERROR_GENERIC, "%s: %s", msg,
                g_strerror(os_errno));
}
