/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * EventNotifier: a wake-up flag that can be waited for with poll/epoll,
 * backed by an eventfd.
 *
 * Copyright (c) 2026 The Sluice authors
 */
#ifndef QEMU_EVENT_NOTIFIER_H
#define QEMU_EVENT_NOTIFIER_H

#include "qemu/osdep.h"

typedef struct EventNotifier {
    int fd;             /* eventfd, or -1 before init / after cleanup */
} EventNotifier;

typedef void EventNotifierHandler(EventNotifier *e);

/*
 * Create the eventfd, set if @active.  Returns 0 or a negative errno.
 * Safe from any thread.
 */
int event_notifier_init(EventNotifier *e, bool active);

/* Close the eventfd.  The notifier must not be registered with a context. */
void event_notifier_cleanup(EventNotifier *e);

/*
 * Make the notifier readable.  Safe from any thread, async-signal-safe.
 * Returns 0 or a negative errno.
 */
int event_notifier_set(EventNotifier *e);

/*
 * Clear the notifier.  Returns true if it was set.  Call it from the
 * handler before acting, so a set that races with the handler is not lost.
 */
bool event_notifier_test_and_clear(EventNotifier *e);

/* The fd to poll for readability. */
int event_notifier_get_fd(const EventNotifier *e);

#endif /* QEMU_EVENT_NOTIFIER_H */
