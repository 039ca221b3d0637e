/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Atomic operations and memory barriers, thin names over the compiler's
 * __atomic builtins.
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * Plain qatomic_read/qatomic_set are relaxed: they only stop the compiler
 * from tearing or caching the access.  Read-modify-write operations are
 * sequentially consistent, so they double as full barriers.
 */
#ifndef QEMU_ATOMIC_H
#define QEMU_ATOMIC_H

#define barrier() __atomic_signal_fence(__ATOMIC_SEQ_CST)

#define smp_mb()      __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define smp_mb_release() __atomic_thread_fence(__ATOMIC_RELEASE)
#define smp_mb_acquire() __atomic_thread_fence(__ATOMIC_ACQUIRE)
#define smp_wmb()     smp_mb_release()
#define smp_rmb()     smp_mb_acquire()

#define qatomic_read(ptr)       __atomic_load_n(ptr, __ATOMIC_RELAXED)
#define qatomic_set(ptr, v)     __atomic_store_n(ptr, v, __ATOMIC_RELAXED)
#define qatomic_load_acquire(ptr) __atomic_load_n(ptr, __ATOMIC_ACQUIRE)
#define qatomic_store_release(ptr, v) \
    __atomic_store_n(ptr, v, __ATOMIC_RELEASE)

#define qatomic_mb_read(ptr)    __atomic_load_n(ptr, __ATOMIC_SEQ_CST)
#define qatomic_mb_set(ptr, v)  __atomic_store_n(ptr, v, __ATOMIC_SEQ_CST)

#define qatomic_xchg(ptr, v)    __atomic_exchange_n(ptr, v, __ATOMIC_SEQ_CST)

/* Returns the value *ptr had before; stores new only if it was old. */
#define qatomic_cmpxchg(ptr, old, new) ({                                  \
    __typeof__(*(ptr)) expected_ = (old);                                 \
    __atomic_compare_exchange_n(ptr, &expected_, new, false,              \
                                __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);      \
    expected_;                                                            \
})

#define qatomic_fetch_add(ptr, n) __atomic_fetch_add(ptr, n, __ATOMIC_SEQ_CST)
#define qatomic_fetch_sub(ptr, n) __atomic_fetch_sub(ptr, n, __ATOMIC_SEQ_CST)
#define qatomic_fetch_inc(ptr)    qatomic_fetch_add(ptr, 1)
#define qatomic_fetch_dec(ptr)    qatomic_fetch_sub(ptr, 1)
#define qatomic_fetch_and(ptr, n) __atomic_fetch_and(ptr, n, __ATOMIC_SEQ_CST)
#define qatomic_fetch_or(ptr, n)  __atomic_fetch_or(ptr, n, __ATOMIC_SEQ_CST)

#define qatomic_add_fetch(ptr, n) __atomic_add_fetch(ptr, n, __ATOMIC_SEQ_CST)
#define qatomic_sub_fetch(ptr, n) __atomic_sub_fetch(ptr, n, __ATOMIC_SEQ_CST)
#define qatomic_inc_fetch(ptr)    qatomic_add_fetch(ptr, 1)
#define qatomic_dec_fetch(ptr)    qatomic_sub_fetch(ptr, 1)

#define qatomic_inc(ptr)    ((void)qatomic_fetch_add(ptr, 1))
#define qatomic_dec(ptr)    ((void)qatomic_fetch_sub(ptr, 1))
#define qatomic_add(ptr, n) ((void)qatomic_fetch_add(ptr, n))
#define qatomic_sub(ptr, n) ((void)qatomic_fetch_sub(ptr, n))
#define qatomic_and(ptr, n) ((void)qatomic_fetch_and(ptr, n))
#define qatomic_or(ptr, n)  ((void)qatomic_fetch_or(ptr, n))

#endif /* QEMU_ATOMIC_H */
