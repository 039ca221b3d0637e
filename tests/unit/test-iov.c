/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests for util/iov.c: every operation is checked against a flat
 * reference buffer holding the bytes the vector should contain.
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * Each entry of a test vector is a separate allocation, so a copy that
 * strays past an entry is caught by ASan rather than landing in the next
 * entry's bytes.  Random cases use g_test_rand_*(), so a failure is
 * reproduced with the --seed printed by the test run.
 */
#include "qemu/osdep.h"
#include "qemu/iov.h"

typedef struct TestVec {
    struct iovec *iov;
    unsigned int cnt;
    size_t size;
} TestVec;

/* A vector with the given entry lengths, each entry its own allocation. */
static void testvec_init_lens(TestVec *tv, const size_t *lens,
                              unsigned int cnt)
{
    unsigned int i;

    tv->iov = g_new0(struct iovec, MAX(cnt, 1));
    tv->cnt = cnt;
    tv->size = 0;
    for (i = 0; i < cnt; i++) {
        /* malloc(0) may return NULL; keep a valid pointer anyway. */
        tv->iov[i].iov_base = g_malloc(MAX(lens[i], 1));
        tv->iov[i].iov_len = lens[i];
        tv->size += lens[i];
    }
}

/*
 * A vector of @size bytes cut at random places into at most @max_cnt
 * entries; some entries have length zero.
 */
static void testvec_init_random(TestVec *tv, size_t size,
                                unsigned int max_cnt)
{
    unsigned int cnt = g_test_rand_int_range(1, max_cnt + 1);
    g_autofree size_t *lens = g_new0(size_t, cnt);
    size_t left = size;
    unsigned int i;

    for (i = 0; i + 1 < cnt; i++) {
        /* One entry in five is empty, the rest take a random share. */
        if (left == 0 || g_test_rand_int_range(0, 5) == 0) {
            lens[i] = 0;
        } else {
            lens[i] = g_test_rand_int_range(0, left + 1);
        }
        left -= lens[i];
    }
    lens[cnt - 1] = left;
    testvec_init_lens(tv, lens, cnt);
}

static void testvec_destroy(TestVec *tv)
{
    unsigned int i;

    for (i = 0; i < tv->cnt; i++) {
        g_free(tv->iov[i].iov_base);
    }
    g_free(tv->iov);
}

static void fill_random(void *buf, size_t len)
{
    uint8_t *p = buf;
    size_t i;

    for (i = 0; i < len; i++) {
        p[i] = g_test_rand_int_range(0, 256);
    }
}

/* The whole vector equals @ref, checked entry by entry. */
static void assert_vec_equals(const struct iovec *iov, unsigned int cnt,
                              const uint8_t *ref, size_t size)
{
    size_t pos = 0;
    unsigned int i;

    for (i = 0; i < cnt; i++) {
        g_assert_cmpuint(pos + iov[i].iov_len, <=, size);
        g_assert_cmpmem(iov[i].iov_base, iov[i].iov_len,
                        ref + pos, iov[i].iov_len);
        pos += iov[i].iov_len;
    }
    g_assert_cmpuint(pos, ==, size);
}

/* Bytes an operation at @offset for @bytes may touch in @size bytes. */
static size_t expected_count(size_t size, size_t offset, size_t bytes)
{
    if (offset >= size) {
        return 0;
    }
    return MIN(bytes, size - offset);
}

#define GUARD 0xa5

/*
 * iov_to_buf(), iov_from_buf() and iov_memset() at one offset and length,
 * compared with the reference; @ref is updated with what should change.
 */
static void check_copy_ops(TestVec *tv, uint8_t *ref, size_t offset,
                           size_t bytes)
{
    size_t want = expected_count(tv->size, offset, bytes);
    g_autofree uint8_t *buf = g_malloc(bytes + 1);
    size_t n;
    int fillc;

    /* to_buf: the copied prefix matches, the rest of buf is untouched. */
    memset(buf, GUARD, bytes + 1);
    n = iov_to_buf(tv->iov, tv->cnt, offset, buf, bytes);
    g_assert_cmpuint(n, ==, want);
    if (n > 0) {
        g_assert_cmpmem(buf, n, ref + offset, n);
    }
    for (size_t i = n; i < bytes + 1; i++) {
        g_assert_cmpuint(buf[i], ==, GUARD);
    }

    /* from_buf: exactly the covered bytes change. */
    fill_random(buf, bytes);
    n = iov_from_buf(tv->iov, tv->cnt, offset, buf, bytes);
    g_assert_cmpuint(n, ==, want);
    if (n > 0) {
        memcpy(ref + offset, buf, n);
    }
    assert_vec_equals(tv->iov, tv->cnt, ref, tv->size);

    /* memset likewise. */
    fillc = g_test_rand_int_range(0, 256);
    n = iov_memset(tv->iov, tv->cnt, offset, fillc, bytes);
    g_assert_cmpuint(n, ==, want);
    if (n > 0) {
        memset(ref + offset, fillc, n);
    }
    assert_vec_equals(tv->iov, tv->cnt, ref, tv->size);
}

static void test_iov_size(void)
{
    static const size_t lens[] = { 0, 7, 0, 0, 4096, 1, 3 };
    TestVec tv;

    testvec_init_lens(&tv, lens, ARRAY_SIZE(lens));
    g_assert_cmpuint(iov_size(tv.iov, tv.cnt), ==, 4107);
    g_assert_cmpuint(iov_size(tv.iov, 0), ==, 0);
    g_assert_cmpuint(iov_size(tv.iov, 2), ==, 7);
    testvec_destroy(&tv);
}

/*
 * Every offset and length (including ones past the end) on a small vector
 * with empty entries at the start, the middle and the end.
 */
static void test_copy_exhaustive(void)
{
    static const size_t lens[] = { 0, 1, 3, 0, 0, 7, 2, 1, 0 };
    TestVec tv;
    g_autofree uint8_t *ref = NULL;
    size_t offset, bytes;

    testvec_init_lens(&tv, lens, ARRAY_SIZE(lens));
    ref = g_malloc(tv.size + 8);
    fill_random(ref, tv.size);
    g_assert_cmpuint(iov_from_buf(tv.iov, tv.cnt, 0, ref, tv.size), ==,
                     tv.size);
    assert_vec_equals(tv.iov, tv.cnt, ref, tv.size);

    for (offset = 0; offset <= tv.size + 2; offset++) {
        for (bytes = 0; bytes <= tv.size + 3; bytes++) {
            check_copy_ops(&tv, ref, offset, bytes);
        }
    }
    testvec_destroy(&tv);
}

/* Random vectors, offsets and lengths. */
static void test_copy_random(void)
{
    int iter;

    for (iter = 0; iter < 200; iter++) {
        size_t size = g_test_rand_int_range(0, 20000);
        g_autofree uint8_t *ref = g_malloc(size + 1);
        TestVec tv;
        int op;

        testvec_init_random(&tv, size, 40);
        g_assert_cmpuint(iov_size(tv.iov, tv.cnt), ==, size);
        fill_random(ref, size);
        iov_from_buf(tv.iov, tv.cnt, 0, ref, size);
        assert_vec_equals(tv.iov, tv.cnt, ref, size);

        for (op = 0; op < 20; op++) {
            size_t offset = g_test_rand_int_range(0, size + 100);
            size_t bytes = g_test_rand_int_range(0, size + 100);

            check_copy_ops(&tv, ref, offset, bytes);
        }
        testvec_destroy(&tv);
    }
}

/* Offsets and lengths that start or end exactly at entry boundaries. */
static void test_copy_boundaries(void)
{
    static const size_t lens[] = { 512, 0, 4096, 1, 511, 0, 8192 };
    TestVec tv;
    g_autofree uint8_t *ref = NULL;
    size_t bounds[ARRAY_SIZE(lens) + 1];
    unsigned int i, j;

    testvec_init_lens(&tv, lens, ARRAY_SIZE(lens));
    ref = g_malloc(tv.size);
    fill_random(ref, tv.size);
    iov_from_buf(tv.iov, tv.cnt, 0, ref, tv.size);

    bounds[0] = 0;
    for (i = 0; i < ARRAY_SIZE(lens); i++) {
        bounds[i + 1] = bounds[i] + lens[i];
    }
    for (i = 0; i < ARRAY_SIZE(bounds); i++) {
        for (j = i; j < ARRAY_SIZE(bounds); j++) {
            int ds, de;

            /* Each boundary and its neighbours on both sides. */
            for (ds = -1; ds <= 1; ds++) {
                for (de = -1; de <= 1; de++) {
                    size_t start = bounds[i] + ds;
                    size_t end = bounds[j] + de;

                    if ((ds < 0 && bounds[i] == 0) || end < start ||
                        (de < 0 && bounds[j] == 0)) {
                        continue;
                    }
                    check_copy_ops(&tv, ref, start, end - start);
                }
            }
        }
    }
    testvec_destroy(&tv);
}

static void test_qiov_init_add(void)
{
    QEMUIOVector qiov;
    g_autofree uint8_t *buf = g_malloc(1000);
    struct iovec *first;
    size_t size = 0;
    int i;

    qemu_iovec_init(&qiov, 0);
    g_assert_cmpint(qiov.niov, ==, 0);
    g_assert_cmpuint(qiov.size, ==, 0);
    g_assert_cmpint(qiov.nalloc, ==, 0);

    /* Growing from nothing keeps every entry in order. */
    for (i = 0; i < 40; i++) {
        qemu_iovec_add(&qiov, buf + i * 20, i % 7);
        size += i % 7;
        g_assert_cmpint(qiov.niov, ==, i + 1);
        g_assert_cmpint(qiov.nalloc, >=, qiov.niov);
        g_assert_cmpuint(qiov.size, ==, size);
    }
    for (i = 0; i < 40; i++) {
        g_assert(qiov.iov[i].iov_base == buf + i * 20);
        g_assert_cmpuint(qiov.iov[i].iov_len, ==, i % 7);
    }
    g_assert_cmpuint(iov_size(qiov.iov, qiov.niov), ==, qiov.size);

    /* reset forgets entries but keeps the array. */
    first = qiov.iov;
    i = qiov.nalloc;
    qemu_iovec_reset(&qiov);
    g_assert_cmpint(qiov.niov, ==, 0);
    g_assert_cmpuint(qiov.size, ==, 0);
    g_assert(qiov.iov == first);
    g_assert_cmpint(qiov.nalloc, ==, i);
    qemu_iovec_add(&qiov, buf, 1000);
    g_assert(qiov.iov == first);
    g_assert_cmpuint(qiov.size, ==, 1000);

    qemu_iovec_destroy(&qiov);
    g_assert(qiov.iov == NULL);
    g_assert_cmpint(qiov.niov, ==, 0);
    g_assert_cmpuint(qiov.size, ==, 0);

    /* A hint pre-allocates; adding within it does not reallocate. */
    qemu_iovec_init(&qiov, 8);
    g_assert_cmpint(qiov.nalloc, ==, 8);
    first = qiov.iov;
    for (i = 0; i < 8; i++) {
        qemu_iovec_add(&qiov, buf, 1);
    }
    g_assert(qiov.iov == first);
    qemu_iovec_add(&qiov, buf, 1);
    g_assert_cmpint(qiov.niov, ==, 9);
    g_assert_cmpuint(qiov.size, ==, 9);
    qemu_iovec_destroy(&qiov);
}

static void test_qiov_external(void)
{
    uint8_t a[10], b[20], out[30], ref[30];
    struct iovec iov[] = {
        { .iov_base = a, .iov_len = sizeof(a) },
        { .iov_base = NULL, .iov_len = 0 },
        { .iov_base = b, .iov_len = sizeof(b) },
    };
    QEMUIOVector qiov;

    qemu_iovec_init_external(&qiov, iov, ARRAY_SIZE(iov));
    g_assert(qiov.iov == iov);
    g_assert_cmpint(qiov.niov, ==, 3);
    g_assert_cmpint(qiov.nalloc, ==, -1);
    g_assert_cmpuint(qiov.size, ==, 30);

    fill_random(ref, sizeof(ref));
    g_assert_cmpuint(qemu_iovec_from_buf(&qiov, 0, ref, 30), ==, 30);
    g_assert_cmpmem(a, 10, ref, 10);
    g_assert_cmpmem(b, 20, ref + 10, 20);
    g_assert_cmpuint(qemu_iovec_to_buf(&qiov, 5, out, 100), ==, 25);
    g_assert_cmpmem(out, 25, ref + 5, 25);
    g_assert_cmpuint(qemu_iovec_memset(&qiov, 8, 0, 4), ==, 4);
    memset(ref + 8, 0, 4);
    assert_vec_equals(qiov.iov, qiov.niov, ref, 30);

    /* The array is on our stack: destroy must not free it. */
    qemu_iovec_destroy(&qiov);
    g_assert_cmpint(qiov.niov, ==, 0);
    g_assert_cmpuint(qiov.size, ==, 0);
    g_assert_cmpuint(iov[2].iov_len, ==, 20);
}

static void test_qiov_buf(void)
{
    g_autofree uint8_t *buf = g_malloc(4096);
    uint8_t ref[4096];
    QEMUIOVector qiov;

    qemu_iovec_init_buf(&qiov, buf, 4096);
    g_assert(qiov.iov == &qiov.local_iov);
    g_assert_cmpint(qiov.niov, ==, 1);
    g_assert_cmpint(qiov.nalloc, ==, -1);
    g_assert_cmpuint(qiov.size, ==, 4096);
    g_assert(qiov.iov[0].iov_base == buf);

    fill_random(ref, sizeof(ref));
    g_assert_cmpuint(qemu_iovec_from_buf(&qiov, 0, ref, 4096), ==, 4096);
    g_assert_cmpmem(buf, 4096, ref, 4096);
    qemu_iovec_destroy(&qiov);

    /* A zero-length buffer is a valid empty vector. */
    qemu_iovec_init_buf(&qiov, buf, 0);
    g_assert_cmpuint(qiov.size, ==, 0);
    g_assert_cmpuint(qemu_iovec_to_buf(&qiov, 0, ref, 10), ==, 0);
    qemu_iovec_destroy(&qiov);
}

/* @qiov's bytes equal @ref[0..size). */
static void assert_qiov_equals(QEMUIOVector *qiov, const uint8_t *ref,
                               size_t size)
{
    g_autofree uint8_t *out = g_malloc(size + 1);

    g_assert_cmpuint(qiov->size, ==, size);
    g_assert_cmpuint(iov_size(qiov->iov, qiov->niov), ==, size);
    g_assert_cmpuint(qemu_iovec_to_buf(qiov, 0, out, size + 1), ==, size);
    g_assert_cmpmem(out, size, ref, size);
}

static void test_qiov_concat(void)
{
    int iter;

    for (iter = 0; iter < 200; iter++) {
        size_t size = g_test_rand_int_range(1, 5000);
        g_autofree uint8_t *ref = g_malloc(size);
        g_autofree uint8_t *head = g_malloc(16);
        g_autofree uint8_t *expect = NULL;
        size_t soffset = g_test_rand_int_range(0, size + 1);
        size_t bytes = g_test_rand_int_range(0, size - soffset + 1);
        QEMUIOVector src, dst;
        TestVec tv;
        int i;

        testvec_init_random(&tv, size, 20);
        fill_random(ref, size);
        iov_from_buf(tv.iov, tv.cnt, 0, ref, size);
        qemu_iovec_init_external(&src, tv.iov, tv.cnt);

        /* dst already holds an entry; concat appends after it. */
        fill_random(head, 16);
        qemu_iovec_init(&dst, 1);
        qemu_iovec_add(&dst, head, 16);
        qemu_iovec_concat(&dst, &src, soffset, bytes);

        expect = g_malloc(16 + bytes);
        memcpy(expect, head, 16);
        memcpy(expect + 16, ref + soffset, bytes);
        assert_qiov_equals(&dst, expect, 16 + bytes);

        /* Empty source entries are not carried over. */
        for (i = 1; i < dst.niov; i++) {
            g_assert_cmpuint(dst.iov[i].iov_len, >, 0);
        }

        /* Entries are references: writing through dst changes src. */
        if (bytes > 0) {
            uint8_t x = ~ref[soffset];

            qemu_iovec_from_buf(&dst, 16, &x, 1);
            ref[soffset] = x;
            assert_vec_equals(tv.iov, tv.cnt, ref, size);
        }

        qemu_iovec_destroy(&dst);
        testvec_destroy(&tv);
    }
}

static void test_qiov_concat_iov(void)
{
    static const size_t lens[] = { 3, 0, 5, 8 };
    uint8_t ref[16];
    QEMUIOVector dst;
    TestVec tv;
    size_t n;

    testvec_init_lens(&tv, lens, ARRAY_SIZE(lens));
    fill_random(ref, sizeof(ref));
    iov_from_buf(tv.iov, tv.cnt, 0, ref, sizeof(ref));

    /* Asking for more than the source has returns what was added. */
    qemu_iovec_init(&dst, 0);
    n = qemu_iovec_concat_iov(&dst, tv.iov, tv.cnt, 2, 100);
    g_assert_cmpuint(n, ==, 14);
    assert_qiov_equals(&dst, ref + 2, 14);
    g_assert_cmpint(dst.niov, ==, 3);
    g_assert(dst.iov[0].iov_base == (uint8_t *)tv.iov[0].iov_base + 2);
    g_assert_cmpuint(dst.iov[0].iov_len, ==, 1);

    /* Starting exactly at an entry boundary, ending inside the last one. */
    qemu_iovec_reset(&dst);
    n = qemu_iovec_concat_iov(&dst, tv.iov, tv.cnt, 3, 6);
    g_assert_cmpuint(n, ==, 6);
    assert_qiov_equals(&dst, ref + 3, 6);
    g_assert_cmpint(dst.niov, ==, 2);
    g_assert(dst.iov[0].iov_base == tv.iov[2].iov_base);

    /* Nothing at or past the end, and nothing for zero bytes. */
    qemu_iovec_reset(&dst);
    g_assert_cmpuint(qemu_iovec_concat_iov(&dst, tv.iov, tv.cnt, 16, 4),
                     ==, 0);
    g_assert_cmpuint(qemu_iovec_concat_iov(&dst, tv.iov, tv.cnt, 40, 4),
                     ==, 0);
    g_assert_cmpuint(qemu_iovec_concat_iov(&dst, tv.iov, tv.cnt, 4, 0),
                     ==, 0);
    g_assert_cmpint(dst.niov, ==, 0);

    qemu_iovec_destroy(&dst);
    testvec_destroy(&tv);
}

static void test_qiov_slice(void)
{
    int iter;

    for (iter = 0; iter < 300; iter++) {
        size_t size = g_test_rand_int_range(0, 5000);
        g_autofree uint8_t *ref = g_malloc(size + 1);
        size_t offset = g_test_rand_int_range(0, size + 1);
        size_t bytes = g_test_rand_int_range(0, size - offset + 1);
        QEMUIOVector src, slice;
        uint8_t extra = 0x5a;
        g_autofree uint8_t *expect = NULL;
        TestVec tv;

        testvec_init_random(&tv, size, 20);
        fill_random(ref, size);
        iov_from_buf(tv.iov, tv.cnt, 0, ref, size);
        qemu_iovec_init_external(&src, tv.iov, tv.cnt);

        qemu_iovec_init_slice(&slice, &src, offset, bytes);
        assert_qiov_equals(&slice, ref + offset, bytes);
        g_assert_cmpint(slice.nalloc, !=, -1);

        /* A slice is an ordinary growable vector. */
        qemu_iovec_add(&slice, &extra, 1);
        expect = g_malloc(bytes + 1);
        memcpy(expect, ref + offset, bytes);
        expect[bytes] = extra;
        assert_qiov_equals(&slice, expect, bytes + 1);

        /* A slice of the slice. */
        if (bytes > 2) {
            QEMUIOVector inner;

            qemu_iovec_init_slice(&inner, &slice, 1, bytes - 2);
            assert_qiov_equals(&inner, ref + offset + 1, bytes - 2);
            qemu_iovec_destroy(&inner);
        }

        qemu_iovec_destroy(&slice);
        testvec_destroy(&tv);
    }
}

/* Every range of a small vector against a single non-zero byte. */
static void test_qiov_is_zero(void)
{
    static const size_t lens[] = { 0, 5, 1, 0, 9, 3 };
    QEMUIOVector qiov;
    TestVec tv;
    size_t pos, offset, bytes;

    testvec_init_lens(&tv, lens, ARRAY_SIZE(lens));
    qemu_iovec_init_external(&qiov, tv.iov, tv.cnt);

    qemu_iovec_memset(&qiov, 0, 0, qiov.size);
    g_assert(qemu_iovec_is_zero(&qiov, 0, qiov.size));

    for (pos = 0; pos < qiov.size; pos++) {
        uint8_t one = g_test_rand_int_range(1, 256);

        qemu_iovec_from_buf(&qiov, pos, &one, 1);
        for (offset = 0; offset <= qiov.size; offset++) {
            for (bytes = 0; bytes <= qiov.size - offset; bytes++) {
                bool want = pos < offset || pos >= offset + bytes;

                g_assert_cmpint(qemu_iovec_is_zero(&qiov, offset, bytes),
                                ==, want);
            }
        }
        qemu_iovec_memset(&qiov, pos, 0, 1);
    }
    testvec_destroy(&tv);
}

/* Large entries, so the fast path of the zero check is exercised. */
static void test_qiov_is_zero_large(void)
{
    QEMUIOVector qiov;
    TestVec tv;
    int iter;

    for (iter = 0; iter < 50; iter++) {
        size_t size = g_test_rand_int_range(1, 1 << 20);
        size_t pos = g_test_rand_int_range(0, size);
        uint8_t one = 1;

        testvec_init_random(&tv, size, 8);
        qemu_iovec_init_external(&qiov, tv.iov, tv.cnt);
        qemu_iovec_memset(&qiov, 0, 0, size);
        g_assert(qemu_iovec_is_zero(&qiov, 0, size));
        qemu_iovec_from_buf(&qiov, pos, &one, 1);
        g_assert_false(qemu_iovec_is_zero(&qiov, 0, size));
        g_assert(qemu_iovec_is_zero(&qiov, 0, pos));
        g_assert(qemu_iovec_is_zero(&qiov, pos + 1, size - pos - 1));
        testvec_destroy(&tv);
    }
}

static void test_qiov_compare(void)
{
    int iter;

    for (iter = 0; iter < 300; iter++) {
        size_t size = g_test_rand_int_range(0, 3000);
        g_autofree uint8_t *ref = g_malloc(size + 1);
        QEMUIOVector qa, qb;
        TestVec ta, tb;

        /* The same bytes cut differently compare equal. */
        testvec_init_random(&ta, size, 15);
        testvec_init_random(&tb, size, 15);
        fill_random(ref, size);
        iov_from_buf(ta.iov, ta.cnt, 0, ref, size);
        iov_from_buf(tb.iov, tb.cnt, 0, ref, size);
        qemu_iovec_init_external(&qa, ta.iov, ta.cnt);
        qemu_iovec_init_external(&qb, tb.iov, tb.cnt);
        g_assert_cmpint(qemu_iovec_compare(&qa, &qb), ==, -1);
        g_assert_cmpint(qemu_iovec_compare(&qb, &qa), ==, -1);

        if (size > 0) {
            size_t p1 = g_test_rand_int_range(0, size);
            size_t p2 = g_test_rand_int_range(0, size);
            uint8_t x;

            /* One difference is found at its offset, from either side. */
            x = ref[p1] ^ (1 << g_test_rand_int_range(0, 8));
            qemu_iovec_from_buf(&qb, p1, &x, 1);
            g_assert_cmpint(qemu_iovec_compare(&qa, &qb), ==, p1);
            g_assert_cmpint(qemu_iovec_compare(&qb, &qa), ==, p1);

            /*
             * With two, the first one wins.  Invert b's byte, so a
             * differs from b at p2 even when p2 == p1.
             */
            qemu_iovec_to_buf(&qb, p2, &x, 1);
            x = ~x;
            qemu_iovec_from_buf(&qa, p2, &x, 1);
            g_assert_cmpint(qemu_iovec_compare(&qa, &qb), ==, MIN(p1, p2));
        }
        testvec_destroy(&ta);
        testvec_destroy(&tb);
    }
}

static void test_qiov_compare_edges(void)
{
    uint8_t a[8] = { 0 }, b[8] = { 0 };
    struct iovec ia[] = {
        { .iov_base = a, .iov_len = 0 },
        { .iov_base = a, .iov_len = 8 },
        { .iov_base = a, .iov_len = 0 },
    };
    struct iovec ib[] = {
        { .iov_base = b, .iov_len = 4 },
        { .iov_base = b + 4, .iov_len = 4 },
    };
    QEMUIOVector qa, qb, e1, e2;

    qemu_iovec_init_external(&qa, ia, ARRAY_SIZE(ia));
    qemu_iovec_init_external(&qb, ib, ARRAY_SIZE(ib));
    g_assert_cmpint(qemu_iovec_compare(&qa, &qb), ==, -1);
    b[7] = 1;
    g_assert_cmpint(qemu_iovec_compare(&qa, &qb), ==, 7);
    b[4] = 1;
    g_assert_cmpint(qemu_iovec_compare(&qa, &qb), ==, 4);
    b[0] = 1;
    g_assert_cmpint(qemu_iovec_compare(&qa, &qb), ==, 0);

    /* Two empty vectors are equal. */
    qemu_iovec_init(&e1, 0);
    qemu_iovec_init_external(&e2, ia, 1);
    g_assert_cmpint(qemu_iovec_compare(&e1, &e2), ==, -1);
    qemu_iovec_destroy(&e1);
}

static void test_qiov_is_aligned(void)
{
    static uint8_t buf[8192] __attribute__((aligned(4096)));
    QEMUIOVector qiov;

    qemu_iovec_init(&qiov, 0);
    g_assert(qemu_iovec_is_aligned(&qiov, 512));

    qemu_iovec_add(&qiov, buf, 512);
    qemu_iovec_add(&qiov, buf + 4096, 1024);
    g_assert(qemu_iovec_is_aligned(&qiov, 512));
    g_assert(qemu_iovec_is_aligned(&qiov, 1));
    g_assert_false(qemu_iovec_is_aligned(&qiov, 1024));
    g_assert_false(qemu_iovec_is_aligned(&qiov, 4096));

    /* A misaligned base fails even with an aligned length. */
    qemu_iovec_add(&qiov, buf + 100, 512);
    g_assert_false(qemu_iovec_is_aligned(&qiov, 512));
    g_assert(qemu_iovec_is_aligned(&qiov, 4));

    /* A misaligned length fails even with an aligned base. */
    qemu_iovec_reset(&qiov);
    qemu_iovec_add(&qiov, buf, 513);
    g_assert_false(qemu_iovec_is_aligned(&qiov, 512));
    qemu_iovec_destroy(&qiov);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    g_test_add_func("/iov/size", test_iov_size);
    g_test_add_func("/iov/copy/exhaustive", test_copy_exhaustive);
    g_test_add_func("/iov/copy/random", test_copy_random);
    g_test_add_func("/iov/copy/boundaries", test_copy_boundaries);
    g_test_add_func("/iov/qiov/init-add", test_qiov_init_add);
    g_test_add_func("/iov/qiov/external", test_qiov_external);
    g_test_add_func("/iov/qiov/buf", test_qiov_buf);
    g_test_add_func("/iov/qiov/concat", test_qiov_concat);
    g_test_add_func("/iov/qiov/concat-iov", test_qiov_concat_iov);
    g_test_add_func("/iov/qiov/slice", test_qiov_slice);
    g_test_add_func("/iov/qiov/is-zero", test_qiov_is_zero);
    g_test_add_func("/iov/qiov/is-zero-large", test_qiov_is_zero_large);
    g_test_add_func("/iov/qiov/compare", test_qiov_compare);
    g_test_add_func("/iov/qiov/compare-edges", test_qiov_compare_edges);
    g_test_add_func("/iov/qiov/is-aligned", test_qiov_is_aligned);

    return g_test_run();
}
