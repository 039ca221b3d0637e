/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Coroutine switch backend: stacks mapped with a guard page, prepared once
 * with makecontext(), then switched with a hand-written register save on
 * x86_64 and aarch64 (_setjmp()/_longjmp() on other hosts).
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * docs/devel/coroutines.md has the measurements behind the choice of
 * switch.  The other candidates stay buildable (-DCO_SWITCH=...) so the
 * numbers can be reproduced.
 */

/*
 * Fortified longjmp refuses to jump to a lower stack pointer on another
 * stack, which is exactly what a coroutine switch does.
 */
#ifdef _FORTIFY_SOURCE
#undef _FORTIFY_SOURCE
#endif
#include "qemu/osdep.h"

#include <pthread.h>
#include <setjmp.h>
#include <sys/mman.h>
#include <ucontext.h>

#include "qemu/coroutine_int.h"

#ifdef CONFIG_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

/* The switch candidates; see docs/devel/coroutines.md. */
#define CO_SWITCH_ASM           1
#define CO_SWITCH_SETJMP        2
#define CO_SWITCH_SIGSETJMP     3
#define CO_SWITCH_SWAPCONTEXT   4

#if defined(__x86_64__) || defined(__aarch64__)
#define CO_HAVE_ASM 1
#else
#define CO_HAVE_ASM 0
#endif

#ifndef CO_SWITCH
#if CO_HAVE_ASM
#define CO_SWITCH CO_SWITCH_ASM
#else
#define CO_SWITCH CO_SWITCH_SETJMP
#endif
#endif

#if CO_SWITCH == CO_SWITCH_ASM && !CO_HAVE_ASM
#error "CO_SWITCH_ASM is only written for x86_64 and aarch64"
#endif

#if CO_SWITCH == CO_SWITCH_SETJMP
#define CO_JMP_BUF jmp_buf
#define co_setjmp(env) _setjmp(env)
#define co_longjmp(env, v) _longjmp(env, v)
#elif CO_SWITCH == CO_SWITCH_SIGSETJMP
/* savemask 0: the signal mask is per thread, not per coroutine. */
#define CO_JMP_BUF sigjmp_buf
#define co_setjmp(env) sigsetjmp(env, 0)
#define co_longjmp(env, v) siglongjmp(env, v)
#endif

/* Usable stack per coroutine, not counting the guard page. */
#define COROUTINE_STACK_SIZE (1 << 20)

typedef struct CoroutineUContext {
    Coroutine base;

    /* Lowest usable byte; the guard page sits right below it. */
    void *stack;
    size_t stack_size;
    bool is_leader;

#if CO_SWITCH == CO_SWITCH_ASM
    /* Where sluice_co_switch() left our registers. */
    void *sp;
    /* Creation only: the creator's saved stack pointer. */
    void *boot_sp;
#elif CO_SWITCH == CO_SWITCH_SWAPCONTEXT
    ucontext_t uc;
    CoroutineAction action;
#else
    CO_JMP_BUF env;
    /* Creation only: the creator's jump buffer. */
    CO_JMP_BUF *boot_env;
#endif

#ifdef CONFIG_ASAN
    /* ASan's fake stack of this coroutine while it is switched out. */
    void *fake_stack;
#endif
} CoroutineUContext;

/* Coroutines allocated and not yet deleted, process-wide.  Atomic. */
static unsigned int co_allocated;

/*
 * Per-thread state.  A coroutine can yield in one thread and be entered
 * from another, so code that runs after a switch must not reuse a TLS
 * address computed before it: every access goes through a noinline
 * function, which computes the address afresh.
 */
static __thread Coroutine *co_current;
static __thread CoroutineUContext co_leader;

static QEMU_NOINLINE void co_set_current(Coroutine *co)
{
    co_current = co;
}

static QEMU_NOINLINE Coroutine *co_get_current(void)
{
    return co_current;
}

#ifdef CONFIG_ASAN
static void co_asan_get_thread_stack(void **bottom, size_t *size)
{
    pthread_attr_t attr;

    *bottom = NULL;
    *size = 0;
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
        pthread_attr_getstack(&attr, bottom, size);
        pthread_attr_destroy(&attr);
    }
}
#endif

static QEMU_NOINLINE CoroutineUContext *co_get_leader(void)
{
    CoroutineUContext *leader = &co_leader;

    if (!leader->is_leader) {
        leader->is_leader = true;
#ifdef CONFIG_ASAN
        co_asan_get_thread_stack(&leader->stack, &leader->stack_size);
#endif
    }
    return leader;
}

/* Whoever runs now: a coroutine, or the thread's own stack. */
static CoroutineUContext *co_running(void)
{
    Coroutine *co = co_get_current();

    return co ? container_of(co, CoroutineUContext, base) : co_get_leader();
}

/*
 * ASan tracks one stack per thread; tell it before each switch which
 * stack comes next and after it which one we are on, or it takes the
 * other stack's frames for overflows.  @fake_save keeps the fake stack
 * (detect_stack_use_after_return) of the coroutine being left.  It is
 * kept even on termination: a pooled coroutine goes on running the same
 * trampoline frame, which may live in that fake stack.  A deleted
 * coroutine's fake stack is not reclaimed; only that ASan option uses one.
 */
static inline void co_asan_start(void **fake_save, CoroutineUContext *to)
{
#ifdef CONFIG_ASAN
    __sanitizer_start_switch_fiber(fake_save, to->stack, to->stack_size);
#endif
}

static inline void co_asan_finish(CoroutineUContext *self)
{
#ifdef CONFIG_ASAN
    __sanitizer_finish_switch_fiber(self ? self->fake_stack : NULL,
                                    NULL, NULL);
#endif
}

#ifdef CONFIG_ASAN
#define CO_FAKE_STACK(cu) (&(cu)->fake_stack)
#else
#define CO_FAKE_STACK(cu) NULL
#endif

#if CO_SWITCH == CO_SWITCH_ASM
/*
 * sluice_co_switch(save, load, value): push the callee-saved registers,
 * store the stack pointer in *save, adopt @load (a stack pointer stored
 * by an earlier call), pop the registers found there and return @value
 * to that earlier call.  Only registers the ABI says a call preserves are
 * kept: everything else is already dead across the call.  The FP control
 * registers are not saved, as with setjmp(): coroutines do not change them.
 *
 * sluice_co_boot(save, uc): the same save, then setcontext(uc) to start
 * a stack made by makecontext(); a later sluice_co_switch() to *save
 * returns from sluice_co_boot().
 */
long sluice_co_switch(void **save, void *load, long value);
long sluice_co_boot(void **save, const ucontext_t *uc);

#if defined(__x86_64__)
__asm__(
    "    .text\n"
    "    .p2align 4\n"
    "    .globl sluice_co_switch\n"
    "    .hidden sluice_co_switch\n"
    "    .type sluice_co_switch, @function\n"
    "sluice_co_switch:\n"
    "    pushq %rbp\n"
    "    pushq %rbx\n"
    "    pushq %r12\n"
    "    pushq %r13\n"
    "    pushq %r14\n"
    "    pushq %r15\n"
    "    movq %rsp, (%rdi)\n"
    "    movq %rsi, %rsp\n"
    "    popq %r15\n"
    "    popq %r14\n"
    "    popq %r13\n"
    "    popq %r12\n"
    "    popq %rbx\n"
    "    popq %rbp\n"
    "    movq %rdx, %rax\n"
    "    ret\n"
    "    .size sluice_co_switch, .-sluice_co_switch\n"
    "\n"
    "    .p2align 4\n"
    "    .globl sluice_co_boot\n"
    "    .hidden sluice_co_boot\n"
    "    .type sluice_co_boot, @function\n"
    "sluice_co_boot:\n"
    "    pushq %rbp\n"
    "    pushq %rbx\n"
    "    pushq %r12\n"
    "    pushq %r13\n"
    "    pushq %r14\n"
    "    pushq %r15\n"
    "    movq %rsp, (%rdi)\n"
    "    movq %rsi, %rdi\n"
    /* Six pushes left %rsp 8 bytes off the 16-byte call alignment. */
    "    subq $8, %rsp\n"
    "    call setcontext@PLT\n"
    "    ud2\n"
    "    .size sluice_co_boot, .-sluice_co_boot\n"
);
#elif defined(__aarch64__)
/* x19-x30 and the low halves of v8-v15, in a 16-byte aligned frame. */
#define CO_A64_SAVE                                                        \
    "    sub sp, sp, #160\n"                                               \
    "    stp x19, x20, [sp, #0]\n"                                         \
    "    stp x21, x22, [sp, #16]\n"                                        \
    "    stp x23, x24, [sp, #32]\n"                                        \
    "    stp x25, x26, [sp, #48]\n"                                        \
    "    stp x27, x28, [sp, #64]\n"                                        \
    "    stp x29, x30, [sp, #80]\n"                                        \
    "    stp d8, d9, [sp, #96]\n"                                          \
    "    stp d10, d11, [sp, #112]\n"                                       \
    "    stp d12, d13, [sp, #128]\n"                                       \
    "    stp d14, d15, [sp, #144]\n"                                       \
    "    mov x9, sp\n"                                                     \
    "    str x9, [x0]\n"

__asm__(
    "    .text\n"
    "    .p2align 4\n"
    "    .globl sluice_co_switch\n"
    "    .hidden sluice_co_switch\n"
    "    .type sluice_co_switch, %function\n"
    "sluice_co_switch:\n"
    CO_A64_SAVE
    "    mov sp, x1\n"
    "    ldp x19, x20, [sp, #0]\n"
    "    ldp x21, x22, [sp, #16]\n"
    "    ldp x23, x24, [sp, #32]\n"
    "    ldp x25, x26, [sp, #48]\n"
    "    ldp x27, x28, [sp, #64]\n"
    "    ldp x29, x30, [sp, #80]\n"
    "    ldp d8, d9, [sp, #96]\n"
    "    ldp d10, d11, [sp, #112]\n"
    "    ldp d12, d13, [sp, #128]\n"
    "    ldp d14, d15, [sp, #144]\n"
    "    add sp, sp, #160\n"
    "    mov x0, x2\n"
    "    ret\n"
    "    .size sluice_co_switch, .-sluice_co_switch\n"
    "\n"
    "    .p2align 4\n"
    "    .globl sluice_co_boot\n"
    "    .hidden sluice_co_boot\n"
    "    .type sluice_co_boot, %function\n"
    "sluice_co_boot:\n"
    CO_A64_SAVE
    "    mov x0, x1\n"
    "    bl setcontext\n"
    "    brk #0\n"
    "    .size sluice_co_boot, .-sluice_co_boot\n"
);
#endif
#endif /* CO_SWITCH_ASM */

/*
 * The first code on a new stack.  makecontext() passes int arguments
 * only, so the pointer comes in two halves.
 */
static void coroutine_trampoline(int lo, int hi)
{
    uintptr_t addr = (uintptr_t)(unsigned int)lo;
    CoroutineUContext *self;
    Coroutine *co;

#if UINTPTR_MAX > UINT32_MAX
    addr |= (uintptr_t)(unsigned int)hi << 32;
#endif
    self = (CoroutineUContext *)addr;
    co = &self->base;

#if CO_SWITCH != CO_SWITCH_SWAPCONTEXT
    /*
     * We were started by qemu_coroutine_new() only to record a resume
     * point here; go back to it.  The first real enter continues below.
     */
    co_asan_finish(NULL);
    co_asan_start(CO_FAKE_STACK(self), co_running());
#if CO_SWITCH == CO_SWITCH_ASM
    sluice_co_switch(&self->sp, self->boot_sp, 0);
#else
    if (!co_setjmp(self->env)) {
        co_longjmp(*self->boot_env, 1);
    }
#endif
#endif
    co_asan_finish(self);

    /*
     * A pooled coroutine keeps this frame: terminating parks it at the
     * switch below, and reuse continues the loop with the new entry.
     */
    for (;;) {
        co->entry(co->entry_arg);
        qemu_coroutine_switch(co, co->caller, COROUTINE_TERMINATE);
    }
}

static size_t co_page_size(void)
{
    /* Threads racing here all store the same value. */
    static size_t page_size;
    size_t size = qatomic_read(&page_size);

    if (!size) {
        size = sysconf(_SC_PAGESIZE);
        qatomic_set(&page_size, size);
    }
    return size;
}

/* Map a stack with an inaccessible page below it, so overflow faults. */
static void *co_stack_alloc(size_t size)
{
    size_t guard = co_page_size();
    char *map;

    map = mmap(NULL, size + guard, PROT_READ | PROT_WRITE,
               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK,
               -1, 0);
    if (map == MAP_FAILED) {
        return NULL;
    }
    if (mprotect(map, guard, PROT_NONE) < 0) {
        munmap(map, size + guard);
        return NULL;
    }
#ifdef CONFIG_ASAN
    /* The range may have held another coroutine's poisoned frames. */
    __asan_unpoison_memory_region(map + guard, size);
#endif
    return map + guard;
}

static void co_stack_free(void *stack, size_t size)
{
    size_t guard = co_page_size();

#ifdef CONFIG_ASAN
    __asan_unpoison_memory_region(stack, size);
#endif
    munmap((char *)stack - guard, size + guard);
}

Coroutine *qemu_coroutine_new(void)
{
    CoroutineUContext *cu = g_new0(CoroutineUContext, 1);
    uintptr_t addr = (uintptr_t)cu;
    CoroutineUContext *creator;
    ucontext_t *uc;
    ucontext_t uc_local;

    cu->stack_size = COROUTINE_STACK_SIZE;
    cu->stack = co_stack_alloc(cu->stack_size);
    /*
     * Without a stack there is no coroutine, and callers have no way to
     * cope: this is memory exhaustion, not bad input.
     */
    g_assert(cu->stack);
    qatomic_inc(&co_allocated);

#if CO_SWITCH == CO_SWITCH_SWAPCONTEXT
    uc = &cu->uc;
#else
    uc = &uc_local;
#endif
    if (getcontext(uc) < 0) {
        g_error("getcontext: %s", g_strerror(errno));
    }
    uc->uc_link = NULL;
    uc->uc_stack.ss_sp = cu->stack;
    uc->uc_stack.ss_size = cu->stack_size;
    uc->uc_stack.ss_flags = 0;
    makecontext(uc, (void (*)(void))coroutine_trampoline, 2,
                (int)(unsigned int)addr,
                (int)(unsigned int)(addr >> 16 >> 16));

#if CO_SWITCH == CO_SWITCH_ASM
    creator = co_running();
    co_asan_start(CO_FAKE_STACK(creator), cu);
    sluice_co_boot(&cu->boot_sp, uc);
    co_asan_finish(creator);
#elif CO_SWITCH != CO_SWITCH_SWAPCONTEXT
    {
        CO_JMP_BUF boot_env;

        creator = co_running();
        cu->boot_env = &boot_env;
        co_asan_start(CO_FAKE_STACK(creator), cu);
        if (!co_setjmp(boot_env)) {
            setcontext(uc);
        }
        co_asan_finish(creator);
        cu->boot_env = NULL;
    }
#else
    (void)uc_local;
    (void)creator;
#endif
    return &cu->base;
}

void qemu_coroutine_delete(Coroutine *co)
{
    CoroutineUContext *cu = container_of(co, CoroutineUContext, base);

    co_stack_free(cu->stack, cu->stack_size);
    g_free(cu);
    qatomic_dec(&co_allocated);
}

unsigned int qemu_coroutine_allocated(void)
{
    return qatomic_read(&co_allocated);
}

CoroutineAction qemu_coroutine_switch(Coroutine *from_, Coroutine *to_,
                                      CoroutineAction action)
{
    CoroutineUContext *from = container_of(from_, CoroutineUContext, base);
    CoroutineUContext *to = container_of(to_, CoroutineUContext, base);
    CoroutineAction ret;

    co_set_current(to->is_leader ? NULL : to_);
    co_asan_start(CO_FAKE_STACK(from), to);
#if CO_SWITCH == CO_SWITCH_ASM
    ret = sluice_co_switch(&from->sp, to->sp, action);
#elif CO_SWITCH == CO_SWITCH_SWAPCONTEXT
    to->action = action;
    swapcontext(&from->uc, &to->uc);
    ret = from->action;
#else
    ret = co_setjmp(from->env);
    if (!ret) {
        co_longjmp(to->env, action);
    }
#endif
    co_asan_finish(from);
    return ret;
}

Coroutine *qemu_coroutine_current(void)
{
    return &co_running()->base;
}

Coroutine *qemu_coroutine_self(void)
{
    return co_get_current();
}

bool qemu_in_coroutine(void)
{
    return co_get_current() != NULL;
}

const char *qemu_coroutine_backend_name(void)
{
#if CO_SWITCH == CO_SWITCH_ASM
#if defined(__x86_64__)
    return "asm-x86_64";
#else
    return "asm-aarch64";
#endif
#elif CO_SWITCH == CO_SWITCH_SETJMP
    return "_setjmp";
#elif CO_SWITCH == CO_SWITCH_SIGSETJMP
    return "sigsetjmp";
#else
    return "swapcontext";
#endif
}
