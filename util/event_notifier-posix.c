/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * EventNotifier on Linux: an eventfd in non-blocking mode.
 *
 * Copyright (c) 2026 The Sluice authors
 */
#include "qemu/osdep.h"
#include <sys/eventfd.h>

#include "qemu/event_notifier.h"

int event_notifier_init(EventNotifier *e, bool active)
{
    int fd = eventfd(active ? 1 : 0, EFD_NONBLOCK | EFD_CLOEXEC);

    if (fd < 0) {
        e->fd = -1;
        return -errno;
    }
    e->fd = fd;
    return 0;
}

void event_notifier_cleanup(EventNotifier *e)
{
    if (e->fd >= 0) {
        close(e->fd);
        e->fd = -1;
    }
}

int event_notifier_set(EventNotifier *e)
{
    uint64_t value = 1;
    ssize_t ret;

    do {
        ret = write(e->fd, &value, sizeof(value));
    } while (ret < 0 && errno == EINTR);

    /* EAGAIN: the counter is saturated, so it is set anyway. */
    if (ret < 0 && errno != EAGAIN) {
        return -errno;
    }
    return 0;
}

bool event_notifier_test_and_clear(EventNotifier *e)
{
    uint64_t value;
    ssize_t ret;

    do {
        ret = read(e->fd, &value, sizeof(value));
    } while (ret < 0 && errno == EINTR);

    return ret == sizeof(value) && value > 0;
}

int event_notifier_get_fd(const EventNotifier *e)
{
    return e->fd;
}
