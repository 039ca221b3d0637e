/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The graph lock: request paths read the node graph (children, parents,
 * bs->file, bs->backing) while graph changes in the main thread write it.
 *
 * Writers drain what they change first and then take the write lock, so
 * the lock is rarely contended: it catches the requests a drain does not
 * stop (those of other contexts walking into a changed edge) and makes
 * the rule checkable.  Nobody drains while holding either side.
 *
 * Copyright (c) 2026 The Sluice authors
 */
#ifndef BLOCK_GRAPH_LOCK_H
#define BLOCK_GRAPH_LOCK_H

#include "qemu/coroutine.h"

/*
 * Take the graph for writing: returns once no coroutine holds a read
 * lock, after which new readers wait until bdrv_graph_wrunlock().  While
 * it waits it quiesces every context (phase 1 of a drain, ended before it
 * returns) so that readers in flight can only finish.  Main thread, not
 * nested, not inside a drained section's begin callback; the caller has
 * drained the nodes it is about to change and must not poll or drain
 * until it unlocks.  Outside coroutines it polls; from a main-thread
 * coroutine holding no read lock (image creation opens and closes nodes
 * in one) it yields to the main loop instead.  One writer at a time.
 */
void coroutine_mixed_fn bdrv_graph_wrlock(void);

/* Release the write lock and let waiting readers in.  Main thread. */
void bdrv_graph_wrunlock(void);

/*
 * Take / drop a read lock from a coroutine, in any thread.  Read locks
 * nest within a coroutine; only the outermost one can wait for a writer,
 * which is why a coroutine must take it before any CoMutex or CoRwlock
 * (asserted in debug builds): a reader waiting for the writer while
 * holding a lock another reader needs would stall the writer forever.
 */
void coroutine_fn bdrv_graph_co_rdlock(void);
void coroutine_fn bdrv_graph_co_rdunlock(void);

/* Release the read lock taken by GRAPH_RDLOCK_GUARD() at scope exit. */
static inline void bdrv_graph_rdlock_guard_release(int *unused)
{
    bdrv_graph_co_rdunlock();
}

/*
 * Hold a read lock until the end of the enclosing scope (a declaration:
 * put it first in the block).  Coroutines only.
 */
#define GRAPH_RDLOCK_GUARD() \
    int graph_rdlock_guard_ \
        __attribute__((cleanup(bdrv_graph_rdlock_guard_release), unused)) = \
        (bdrv_graph_co_rdlock(), 0)

/* Is the write lock held?  Any thread. */
bool bdrv_graph_is_write_locked(void);

/*
 * Debug builds: the caller may read the graph (a coroutine holding a read
 * lock, or the main thread outside coroutines: writers are main-thread
 * code that cannot run concurrently with it) / may change it (the main
 * thread holding the write lock).  No-ops otherwise.
 */
void assert_bdrv_graph_readable(void);
void assert_bdrv_graph_writable(void);

/*
 * Debug builds: the caller holds no side of the graph lock (drain entry
 * points check it: nobody drains under the lock).
 */
void assert_bdrv_graph_unlocked(void);

#endif /* BLOCK_GRAPH_LOCK_H */
