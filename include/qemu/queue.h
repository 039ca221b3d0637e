/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Intrusive lists: the link lives inside the element, so queueing a
 * coroutine or a request never allocates.
 *
 * Copyright (c) 2026 The Sluice authors
 *
 *   QSLIST   singly linked, LIFO; has a lock-free push for producers on
 *            other threads and an atomic "take all" for the consumer.
 *   QSIMPLEQ singly linked with a tail pointer: FIFO queues.
 *   QLIST    doubly linked, head only: O(1) removal without the head.
 *   QTAILQ   doubly linked with head and tail: O(1) removal anywhere and
 *            walks in both directions.
 *
 * None of them locks; the owner of a list says what protects it.
 */
#ifndef QEMU_QUEUE_H
#define QEMU_QUEUE_H

/* ---- QSLIST ---- */

#define QSLIST_HEAD(name, type) struct name { struct type *slh_first; }
#define QSLIST_HEAD_INITIALIZER { NULL }
#define QSLIST_ENTRY(type) struct { struct type *sle_next; }

#define QSLIST_INIT(head) ((head)->slh_first = NULL)
#define QSLIST_EMPTY(head) ((head)->slh_first == NULL)
#define QSLIST_FIRST(head) ((head)->slh_first)
#define QSLIST_NEXT(elm, field) ((elm)->field.sle_next)

#define QSLIST_INSERT_HEAD(head, elm, field) do {                          \
    (elm)->field.sle_next = (head)->slh_first;                            \
    (head)->slh_first = (elm);                                            \
} while (0)

/* Push from any thread; pairs with QSLIST_MOVE_ATOMIC in the consumer. */
#define QSLIST_INSERT_HEAD_ATOMIC(head, elm, field) do {                   \
    __typeof__(elm) old_head_;                                            \
    do {                                                                  \
        old_head_ = qatomic_read(&(head)->slh_first);                     \
        (elm)->field.sle_next = old_head_;                                \
    } while (qatomic_cmpxchg(&(head)->slh_first, old_head_, (elm)) !=     \
             old_head_);                                                  \
} while (0)

/* Take every element pushed so far into dest, leaving src empty. */
#define QSLIST_MOVE_ATOMIC(dest, src) \
    ((dest)->slh_first = qatomic_xchg(&(src)->slh_first, NULL))

#define QSLIST_REMOVE_HEAD(head, field) \
    ((head)->slh_first = (head)->slh_first->field.sle_next)

#define QSLIST_FOREACH(var, head, field)                                   \
    for ((var) = (head)->slh_first; (var); (var) = (var)->field.sle_next)

#define QSLIST_FOREACH_SAFE(var, head, field, next_var)                    \
    for ((var) = (head)->slh_first;                                       \
         (var) && ((next_var) = (var)->field.sle_next, 1);                \
         (var) = (next_var))

/* ---- QSIMPLEQ ---- */

#define QSIMPLEQ_HEAD(name, type)                                          \
    struct name { struct type *sqh_first; struct type **sqh_last; }
#define QSIMPLEQ_HEAD_INITIALIZER(head) { NULL, &(head).sqh_first }
#define QSIMPLEQ_ENTRY(type) struct { struct type *sqe_next; }

#define QSIMPLEQ_INIT(head) do {                                           \
    (head)->sqh_first = NULL;                                             \
    (head)->sqh_last = &(head)->sqh_first;                                \
} while (0)

#define QSIMPLEQ_EMPTY(head) ((head)->sqh_first == NULL)
#define QSIMPLEQ_FIRST(head) ((head)->sqh_first)
#define QSIMPLEQ_NEXT(elm, field) ((elm)->field.sqe_next)

#define QSIMPLEQ_INSERT_TAIL(head, elm, field) do {                        \
    (elm)->field.sqe_next = NULL;                                         \
    *(head)->sqh_last = (elm);                                            \
    (head)->sqh_last = &(elm)->field.sqe_next;                            \
} while (0)

#define QSIMPLEQ_INSERT_HEAD(head, elm, field) do {                        \
    (elm)->field.sqe_next = (head)->sqh_first;                            \
    if ((elm)->field.sqe_next == NULL) {                                  \
        (head)->sqh_last = &(elm)->field.sqe_next;                        \
    }                                                                     \
    (head)->sqh_first = (elm);                                            \
} while (0)

#define QSIMPLEQ_REMOVE_HEAD(head, field) do {                             \
    (head)->sqh_first = (head)->sqh_first->field.sqe_next;                \
    if ((head)->sqh_first == NULL) {                                      \
        (head)->sqh_last = &(head)->sqh_first;                            \
    }                                                                     \
} while (0)

/* Append all of src to dest and leave src empty. */
#define QSIMPLEQ_CONCAT(dest, src) do {                                    \
    if (!QSIMPLEQ_EMPTY(src)) {                                           \
        *(dest)->sqh_last = (src)->sqh_first;                             \
        (dest)->sqh_last = (src)->sqh_last;                               \
        QSIMPLEQ_INIT(src);                                               \
    }                                                                     \
} while (0)

#define QSIMPLEQ_FOREACH(var, head, field)                                 \
    for ((var) = (head)->sqh_first; (var); (var) = (var)->field.sqe_next)

#define QSIMPLEQ_FOREACH_SAFE(var, head, field, next_var)                  \
    for ((var) = (head)->sqh_first;                                       \
         (var) && ((next_var) = (var)->field.sqe_next, 1);                \
         (var) = (next_var))

/* ---- QLIST ---- */

/*
 * Doubly linked with only a head: O(1) removal without knowing the head,
 * because each element points at the pointer that points at it.
 */
#define QLIST_HEAD(name, type) struct name { struct type *lh_first; }
#define QLIST_HEAD_INITIALIZER(head) { NULL }
#define QLIST_ENTRY(type)                                                  \
    struct { struct type *le_next; struct type **le_prev; }

#define QLIST_INIT(head) ((head)->lh_first = NULL)
#define QLIST_EMPTY(head) ((head)->lh_first == NULL)
#define QLIST_FIRST(head) ((head)->lh_first)
#define QLIST_NEXT(elm, field) ((elm)->field.le_next)

/* True while @elm is on a list (QLIST_REMOVE clears it). */
#define QLIST_IS_INSERTED(elm, field) ((elm)->field.le_prev != NULL)

#define QLIST_INSERT_HEAD(head, elm, field) do {                           \
    (elm)->field.le_next = (head)->lh_first;                              \
    if ((elm)->field.le_next) {                                           \
        (head)->lh_first->field.le_prev = &(elm)->field.le_next;          \
    }                                                                     \
    (head)->lh_first = (elm);                                             \
    (elm)->field.le_prev = &(head)->lh_first;                             \
} while (0)

#define QLIST_REMOVE(elm, field) do {                                      \
    if ((elm)->field.le_next) {                                           \
        (elm)->field.le_next->field.le_prev = (elm)->field.le_prev;       \
    }                                                                     \
    *(elm)->field.le_prev = (elm)->field.le_next;                         \
    (elm)->field.le_next = NULL;                                          \
    (elm)->field.le_prev = NULL;                                          \
} while (0)

#define QLIST_FOREACH(var, head, field)                                    \
    for ((var) = (head)->lh_first; (var); (var) = (var)->field.le_next)

#define QLIST_FOREACH_SAFE(var, head, field, next_var)                     \
    for ((var) = (head)->lh_first;                                        \
         (var) && ((next_var) = (var)->field.le_next, 1);                 \
         (var) = (next_var))

/* ---- QTAILQ ---- */

#define QTAILQ_HEAD(name, type)                                            \
    struct name { struct type *tqh_first; struct type *tqh_last; }
#define QTAILQ_HEAD_INITIALIZER(head) { NULL, NULL }
#define QTAILQ_ENTRY(type)                                                 \
    struct { struct type *tqe_next; struct type *tqe_prev; }

#define QTAILQ_INIT(head) do {                                             \
    (head)->tqh_first = NULL;                                             \
    (head)->tqh_last = NULL;                                              \
} while (0)

#define QTAILQ_EMPTY(head) ((head)->tqh_first == NULL)
#define QTAILQ_FIRST(head) ((head)->tqh_first)
#define QTAILQ_LAST(head) ((head)->tqh_last)
#define QTAILQ_NEXT(elm, field) ((elm)->field.tqe_next)
#define QTAILQ_PREV(elm, field) ((elm)->field.tqe_prev)

#define QTAILQ_INSERT_TAIL(head, elm, field) do {                          \
    (elm)->field.tqe_next = NULL;                                         \
    (elm)->field.tqe_prev = (head)->tqh_last;                             \
    if ((head)->tqh_last) {                                               \
        (head)->tqh_last->field.tqe_next = (elm);                         \
    } else {                                                              \
        (head)->tqh_first = (elm);                                        \
    }                                                                     \
    (head)->tqh_last = (elm);                                             \
} while (0)

#define QTAILQ_INSERT_HEAD(head, elm, field) do {                          \
    (elm)->field.tqe_prev = NULL;                                         \
    (elm)->field.tqe_next = (head)->tqh_first;                            \
    if ((head)->tqh_first) {                                              \
        (head)->tqh_first->field.tqe_prev = (elm);                        \
    } else {                                                              \
        (head)->tqh_last = (elm);                                         \
    }                                                                     \
    (head)->tqh_first = (elm);                                            \
} while (0)

#define QTAILQ_REMOVE(head, elm, field) do {                               \
    if ((elm)->field.tqe_next) {                                          \
        (elm)->field.tqe_next->field.tqe_prev = (elm)->field.tqe_prev;    \
    } else {                                                              \
        (head)->tqh_last = (elm)->field.tqe_prev;                         \
    }                                                                     \
    if ((elm)->field.tqe_prev) {                                          \
        (elm)->field.tqe_prev->field.tqe_next = (elm)->field.tqe_next;    \
    } else {                                                              \
        (head)->tqh_first = (elm)->field.tqe_next;                        \
    }                                                                     \
    (elm)->field.tqe_next = NULL;                                         \
    (elm)->field.tqe_prev = NULL;                                         \
} while (0)

#define QTAILQ_FOREACH(var, head, field)                                   \
    for ((var) = (head)->tqh_first; (var); (var) = (var)->field.tqe_next)

#define QTAILQ_FOREACH_SAFE(var, head, field, next_var)                    \
    for ((var) = (head)->tqh_first;                                       \
         (var) && ((next_var) = (var)->field.tqe_next, 1);                \
         (var) = (next_var))

#define QTAILQ_FOREACH_REVERSE(var, head, field)                           \
    for ((var) = (head)->tqh_last; (var); (var) = (var)->field.tqe_prev)

#endif /* QEMU_QUEUE_H */
