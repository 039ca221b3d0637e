/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The NBD server and the block export layer, driven by a raw-socket NBD
 * client written here: negotiation (good and malformed), every command
 * in simple and structured mode, metadata contexts, malformed and
 * out-of-range requests, clients that vanish mid-request, many clients,
 * drain (reading stops, busy while a request is parsed, nothing reaches
 * the node), moving an export between iothreads under I/O without
 * losing a request, export deletion in safe and hard modes, and the QMP
 * argument checking of the export and server commands.
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * The server runs in this process's main loop (and iothreads); each
 * client runs in a thread of its own with blocking sockets and a receive
 * timeout, so a server that stops answering fails the test instead of
 * hanging it.  Client threads ask the main thread to act (delete an
 * export, drain) through main_call().
 */
#include "qemu/osdep.h"

#include <sys/socket.h>
#include <sys/un.h>

#include "block/aio-wait.h"
#include "block/block_int.h"
#include "block/export.h"
#include "block/nbd.h"
#include "qemu/iothread.h"
#include "qemu/main-loop.h"
#include "qemu/object.h"
#include "sysemu/block-backend.h"

#define IMG_SIZE        (4 * MiB)
#define RECV_TIMEOUT_S  20

/* ---- Byte order ---- */

static void put16(uint8_t *p, uint16_t v)
{
    v = GUINT16_TO_BE(v);
    memcpy(p, &v, 2);
}

static void put32(uint8_t *p, uint32_t v)
{
    v = GUINT32_TO_BE(v);
    memcpy(p, &v, 4);
}

static void put64(uint8_t *p, uint64_t v)
{
    v = GUINT64_TO_BE(v);
    memcpy(p, &v, 8);
}

static uint16_t get16(const uint8_t *p)
{
    uint16_t v;

    memcpy(&v, p, 2);
    return GUINT16_FROM_BE(v);
}

static uint32_t get32(const uint8_t *p)
{
    uint32_t v;

    memcpy(&v, p, 4);
    return GUINT32_FROM_BE(v);
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v;

    memcpy(&v, p, 8);
    return GUINT64_FROM_BE(v);
}

/* ---- The main thread: running client threads, and calls into it ---- */

typedef struct MainCall {
    void (*fn)(void *opaque);
    void *opaque;
    bool done;
} MainCall;

static GMutex call_lock;
static GCond call_cond;

static void main_call_bh(void *opaque)
{
    MainCall *mc = opaque;

    mc->fn(mc->opaque);
    g_mutex_lock(&call_lock);
    mc->done = true;
    g_cond_broadcast(&call_cond);
    g_mutex_unlock(&call_lock);
}

/* From a client thread: run @fn(@opaque) in the main thread and wait. */
static void main_call(void (*fn)(void *), void *opaque)
{
    MainCall mc = { .fn = fn, .opaque = opaque };

    aio_bh_schedule_oneshot(qemu_get_aio_context(), main_call_bh, &mc);
    g_mutex_lock(&call_lock);
    while (!mc.done) {
        g_cond_wait(&call_cond, &call_lock);
    }
    g_mutex_unlock(&call_lock);
}

typedef struct ClientThread {
    GThreadFunc fn;
    void *opaque;
    bool done;
    GThread *thread;
} ClientThread;

static gpointer client_thread_entry(gpointer opaque)
{
    ClientThread *ct = opaque;

    ct->fn(ct->opaque);
    qatomic_store_release(&ct->done, true);
    aio_notify(qemu_get_aio_context());
    return NULL;
}

static ClientThread *client_thread_start(GThreadFunc fn, void *opaque)
{
    ClientThread *ct = g_new0(ClientThread, 1);

    ct->fn = fn;
    ct->opaque = opaque;
    ct->thread = g_thread_new("nbd-test-client", client_thread_entry, ct);
    return ct;
}

static bool client_thread_done(ClientThread *ct)
{
    return qatomic_load_acquire(&ct->done);
}

/* Run the main loop until @ct has finished; join it. */
static void client_thread_join(ClientThread *ct)
{
    while (!client_thread_done(ct)) {
        main_loop_wait(false);
    }
    g_thread_join(ct->thread);
    g_free(ct);
}

static void run_client(GThreadFunc fn, void *opaque)
{
    client_thread_join(client_thread_start(fn, opaque));
}

/* ---- The fixture: an image, a server and an export ---- */

typedef struct Fixture {
    char *dir;
    char *sock;
    char *img;
    BlockDriverState *bs;
    BlockExport *exp;
    unsigned int deleted;
    char *last_deleted;
} Fixture;

static Fixture fx;

static void on_deleted(const char *id, void *opaque)
{
    fx.deleted++;
    g_free(fx.last_deleted);
    fx.last_deleted = g_strdup(id);
}

/* The byte at @off of the image's initial pattern. */
static uint8_t pattern_byte(uint64_t off)
{
    return (off / 512 * 7 + off) & 0xff;
}

/*
 * An image whose first MiB holds a pattern and the rest is a hole, a
 * server on a unix socket, and a writable export "img" with
 * allocation-depth (unless @extra_args says otherwise).
 */
static void fixture_setup(const char *extra_args_json, uint32_t max_conns)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonObject) opts = NULL;
    g_autoptr(JsonObject) args = NULL;
    g_autofree uint8_t *buf = g_malloc(MiB);
    NBDSocketAddress addr = { .type = NBD_SOCKET_UNIX };
    int fd;
    int i;

    memset(&fx, 0, sizeof(fx));
    fx.dir = g_dir_make_tmp("nbd-test-XXXXXX", &err);
    g_assert_no_error(err);
    fx.sock = g_build_filename(fx.dir, "s.sock", NULL);
    fx.img = g_build_filename(fx.dir, "img.raw", NULL);

    for (i = 0; i < MiB; i++) {
        buf[i] = pattern_byte(i);
    }
    fd = open(fx.img, O_CREAT | O_RDWR | O_TRUNC, 0600);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(pwrite(fd, buf, MiB, 0), ==, MiB);
    g_assert_cmpint(ftruncate(fd, IMG_SIZE), ==, 0);
    close(fd);

    opts = json_object_new();
    json_object_set_string_member(opts, "driver", "raw");
    json_object_set_string_member(opts, "node-name", "img");
    json_object_set_object_member(opts, "file", json_object_new());
    json_object_set_string_member(json_object_get_object_member(opts,
                                                                "file"),
                                  "driver", "file");
    json_object_set_string_member(json_object_get_object_member(opts,
                                                                "file"),
                                  "filename", fx.img);
    fx.bs = bdrv_open_options(opts, BDRV_O_RDWR, &err);
    g_assert_no_error(err);

    addr.path = fx.sock;
    g_assert_true(nbd_server_start(&addr, NULL, NULL, max_conns, &err));
    g_assert_no_error(err);

    args = json_object_new();
    json_object_set_string_member(args, "type", "nbd");
    json_object_set_string_member(args, "id", "e0");
    json_object_set_string_member(args, "node-name", "img");
    json_object_set_string_member(args, "name", "img");
    json_object_set_boolean_member(args, "writable", true);
    json_object_set_boolean_member(args, "allocation-depth", true);
    if (extra_args_json) {
        g_autoptr(JsonNode) extra = json_from_string(extra_args_json, &err);
        g_autoptr(GList) members = NULL;
        GList *m;

        g_assert_no_error(err);
        members = json_object_get_members(json_node_get_object(extra));
        for (m = members; m; m = m->next) {
            json_object_set_member(args, m->data,
                json_object_dup_member(json_node_get_object(extra),
                                       m->data));
        }
    }
    fx.exp = qmp_block_export_add(args, &err);
    g_assert_no_error(err);
    g_assert_nonnull(fx.exp);
    blk_exp_set_deleted_notifier(on_deleted, NULL);
}

static void fixture_remove_dir(void)
{
    rmdir(fx.dir);
    g_free(fx.img);
    g_free(fx.sock);
    g_free(fx.dir);
    g_free(fx.last_deleted);
}

/* Everything but the directory, which holds more files. */
static void fixture_teardown_keep_dir(void)
{
    g_autoptr(GError) err = NULL;

    if (nbd_server_is_running()) {
        g_assert_true(nbd_server_stop(&err));
    }
    g_assert_no_error(err);
    g_assert_cmpuint(blk_exp_count(), ==, 0);
    g_assert_cmpuint(nbd_client_count(), ==, 0);
    blk_exp_set_deleted_notifier(NULL, NULL);
    bdrv_unref(fx.bs);
    unlink(fx.img);
    unlink(fx.sock);
}

static void fixture_teardown(void)
{
    fixture_teardown_keep_dir();
    fixture_remove_dir();
}

/* Read the image file directly (what reached the host). */
static void host_pread(void *buf, size_t len, off_t off)
{
    int fd = open(fx.img, O_RDONLY);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(pread(fd, buf, len, off), ==, len);
    close(fd);
}

/* ---- The client ---- */

typedef struct Cli {
    int fd;
    bool structured;
    uint64_t size;
    uint16_t eflags;
    uint32_t min_block;
} Cli;

static Cli *cli_connect(void)
{
    struct sockaddr_un un = { .sun_family = AF_UNIX };
    struct timeval tv = { .tv_sec = RECV_TIMEOUT_S };
    Cli *c = g_new0(Cli, 1);

    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    g_assert_cmpint(c->fd, >=, 0);
    g_strlcpy(un.sun_path, fx.sock, sizeof(un.sun_path));
    g_assert_cmpint(connect(c->fd, (struct sockaddr *)&un, sizeof(un)), ==,
                    0);
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    return c;
}

static void cli_close(Cli *c)
{
    close(c->fd);
    g_free(c);
}

/* Send everything; false if the server has hung up. */
static bool cli_send(Cli *c, const void *buf, size_t len)
{
    const uint8_t *p = buf;

    while (len) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return false;
        }
        p += n;
        len -= n;
    }
    return true;
}

/* Receive exactly @len bytes; false on EOF or error. */
static bool cli_recv(Cli *c, void *buf, size_t len)
{
    uint8_t *p = buf;

    while (len) {
        ssize_t n = recv(c->fd, p, len, 0);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            g_assert_cmpint(errno, !=, EAGAIN);     /* a timeout: a hang */
            return false;
        }
        if (n == 0) {
            return false;
        }
        p += n;
        len -= n;
    }
    return true;
}

/* True if the server closed the connection (EOF, not a timeout). */
static bool cli_at_eof(Cli *c)
{
    uint8_t b;
    ssize_t n = recv(c->fd, &b, 1, 0);

    g_assert_false(n < 0 && errno == EAGAIN);
    return n <= 0;
}

static void cli_hello(Cli *c, uint32_t cflags)
{
    uint8_t buf[18];
    uint8_t f[4];

    g_assert_true(cli_recv(c, buf, sizeof(buf)));
    g_assert_cmphex(get64(buf), ==, NBD_INIT_MAGIC);
    g_assert_cmphex(get64(buf + 8), ==, NBD_OPTS_MAGIC);
    g_assert_cmphex(get16(buf + 16), ==,
                    NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
    put32(f, cflags);
    g_assert_true(cli_send(c, f, 4));
}

static bool cli_opt(Cli *c, uint32_t opt, const void *data, uint32_t len)
{
    uint8_t hdr[16];

    put64(hdr, NBD_OPTS_MAGIC);
    put32(hdr + 8, opt);
    put32(hdr + 12, len);
    return cli_send(c, hdr, sizeof(hdr)) && (!len || cli_send(c, data, len));
}

typedef struct Rep {
    uint32_t opt;
    uint32_t type;
    uint32_t len;
    uint8_t *data;
} Rep;

static bool cli_rep(Cli *c, Rep *r)
{
    uint8_t hdr[20];

    if (!cli_recv(c, hdr, sizeof(hdr))) {
        return false;
    }
    g_assert_cmphex(get64(hdr), ==, NBD_REP_MAGIC);
    r->opt = get32(hdr + 8);
    r->type = get32(hdr + 12);
    r->len = get32(hdr + 16);
    r->data = g_malloc(r->len + 1);
    r->data[r->len] = 0;
    return cli_recv(c, r->data, r->len);
}

/*
 * Read replies to @opt until the final one; return its type.  Replies
 * before it are appended to @replies (a GArray of Rep) if not NULL.
 * The final reply's data (an error message) goes to *@msg if not NULL.
 */
static uint32_t cli_reps(Cli *c, uint32_t opt, GArray *replies, char **msg)
{
    for (;;) {
        Rep r;

        g_assert_true(cli_rep(c, &r));
        g_assert_cmpuint(r.opt, ==, opt);
        if (r.type == NBD_REP_ACK || (r.type & NBD_REP_FLAG_ERROR)) {
            if (msg) {
                *msg = (char *)r.data;
            } else {
                g_free(r.data);
            }
            return r.type;
        }
        if (replies) {
            g_array_append_val(replies, r);
        } else {
            g_free(r.data);
        }
    }
}

static void reps_free(GArray *replies)
{
    guint i;

    for (i = 0; i < replies->len; i++) {
        g_free(g_array_index(replies, Rep, i).data);
    }
    g_array_unref(replies);
}

/* Data of an INFO/GO request for @name asking for @n items. */
static GByteArray *info_data(const char *name, const uint16_t *items, int n)
{
    GByteArray *b = g_byte_array_new();
    uint8_t tmp[4];
    int i;

    put32(tmp, strlen(name));
    g_byte_array_append(b, tmp, 4);
    g_byte_array_append(b, (const uint8_t *)name, strlen(name));
    put16(tmp, n);
    g_byte_array_append(b, tmp, 2);
    for (i = 0; i < n; i++) {
        put16(tmp, items[i]);
        g_byte_array_append(b, tmp, 2);
    }
    return b;
}

/* Data of a LIST/SET_META_CONTEXT for @name with the NULL-ended queries. */
static GByteArray *meta_data(const char *name, const char *const *q)
{
    GByteArray *b = g_byte_array_new();
    uint8_t tmp[4];
    int n = q ? g_strv_length((char **)q) : 0;
    int i;

    put32(tmp, strlen(name));
    g_byte_array_append(b, tmp, 4);
    g_byte_array_append(b, (const uint8_t *)name, strlen(name));
    put32(tmp, n);
    g_byte_array_append(b, tmp, 4);
    for (i = 0; i < n; i++) {
        put32(tmp, strlen(q[i]));
        g_byte_array_append(b, tmp, 4);
        g_byte_array_append(b, (const uint8_t *)q[i], strlen(q[i]));
    }
    return b;
}

/* Negotiate up to the transmission phase with export @name. */
static Cli *cli_open(const char *name, bool structured,
                     const char *const *meta)
{
    static const uint16_t items[] = { NBD_INFO_BLOCK_SIZE };
    Cli *c = cli_connect();
    g_autoptr(GByteArray) go = info_data(name, items, 1);
    g_autoptr(GArray) replies = g_array_new(FALSE, FALSE, sizeof(Rep));
    guint i;

    cli_hello(c, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    if (structured) {
        g_assert_true(cli_opt(c, NBD_OPT_STRUCTURED_REPLY, NULL, 0));
        g_assert_cmphex(cli_reps(c, NBD_OPT_STRUCTURED_REPLY, NULL, NULL),
                        ==, NBD_REP_ACK);
        c->structured = true;
    }
    if (meta) {
        g_autoptr(GByteArray) m = meta_data(name, meta);

        g_assert_true(cli_opt(c, NBD_OPT_SET_META_CONTEXT, m->data,
                              m->len));
        g_assert_cmphex(cli_reps(c, NBD_OPT_SET_META_CONTEXT, NULL, NULL),
                        ==, NBD_REP_ACK);
    }
    g_assert_true(cli_opt(c, NBD_OPT_GO, go->data, go->len));
    g_assert_cmphex(cli_reps(c, NBD_OPT_GO, replies, NULL), ==,
                    NBD_REP_ACK);
    for (i = 0; i < replies->len; i++) {
        Rep *r = &g_array_index(replies, Rep, i);

        g_assert_cmpuint(r->type, ==, NBD_REP_INFO);
        if (get16(r->data) == NBD_INFO_EXPORT) {
            g_assert_cmpuint(r->len, ==, 12);
            c->size = get64(r->data + 2);
            c->eflags = get16(r->data + 10);
        } else if (get16(r->data) == NBD_INFO_BLOCK_SIZE) {
            g_assert_cmpuint(r->len, ==, 14);
            c->min_block = get32(r->data + 2);
        }
    }
    g_assert_cmpuint(c->size, !=, 0);
    reps_free(g_steal_pointer(&replies));
    return c;
}

static bool cli_req(Cli *c, uint16_t type, uint16_t flags, uint64_t cookie,
                    uint64_t off, uint32_t len, const void *payload)
{
    uint8_t hdr[NBD_REQUEST_SIZE];

    put32(hdr, NBD_REQUEST_MAGIC);
    put16(hdr + 4, flags);
    put16(hdr + 6, type);
    put64(hdr + 8, cookie);
    put64(hdr + 16, off);
    put32(hdr + 24, len);
    return cli_send(c, hdr, sizeof(hdr)) &&
           (!payload || !len || cli_send(c, payload, len));
}

/* One reply message: a simple reply (no data read) or a chunk. */
typedef struct Msg {
    bool simple;
    uint32_t error;         /* simple */
    uint16_t flags;         /* chunk */
    uint16_t type;
    uint64_t cookie;
    uint32_t len;
    uint8_t *data;          /* chunk payload */
} Msg;

static bool cli_msg(Cli *c, Msg *m)
{
    uint8_t hdr[NBD_CHUNK_HEADER_SIZE];

    memset(m, 0, sizeof(*m));
    if (!cli_recv(c, hdr, 4)) {
        return false;
    }
    if (get32(hdr) == NBD_SIMPLE_REPLY_MAGIC) {
        if (!cli_recv(c, hdr + 4, 12)) {
            return false;
        }
        m->simple = true;
        m->error = get32(hdr + 4);
        m->cookie = get64(hdr + 8);
        return true;
    }
    g_assert_cmphex(get32(hdr), ==, NBD_STRUCTURED_REPLY_MAGIC);
    g_assert_true(c->structured);
    if (!cli_recv(c, hdr + 4, 16)) {
        return false;
    }
    m->flags = get16(hdr + 4);
    m->type = get16(hdr + 6);
    m->cookie = get64(hdr + 8);
    m->len = get32(hdr + 16);
    m->data = g_malloc(m->len + 1);
    m->data[m->len] = 0;
    return cli_recv(c, m->data, m->len);
}

/*
 * The outcome of a request without data (or any error reply): the NBD
 * error, with the error chunk's message in *@msg (may be NULL).
 */
static uint32_t cli_result(Cli *c, uint64_t cookie, char **msg)
{
    Msg m;

    g_assert_true(cli_msg(c, &m));
    g_assert_cmphex(m.cookie, ==, cookie);
    if (m.simple) {
        return m.error;
    }
    g_assert_cmpuint(m.type, ==, NBD_REPLY_TYPE_ERROR);
    g_assert_true(m.flags & NBD_REPLY_FLAG_DONE);
    g_assert_cmpuint(m.len, >=, 6);
    g_assert_cmpuint(get16(m.data + 4), ==, m.len - 6);
    if (msg) {
        *msg = g_strndup((char *)m.data + 6, m.len - 6);
    }
    m.error = get32(m.data);
    g_free(m.data);
    return m.error;
}

static uint32_t cli_cmd(Cli *c, uint16_t type, uint16_t flags, uint64_t off,
                        uint32_t len, const void *payload, char **msg)
{
    static uint64_t cookie = 1000;
    uint64_t ck = qatomic_fetch_inc(&cookie);

    g_assert_true(cli_req(c, type, flags, ck, off, len, payload));
    return cli_result(c, ck, msg);
}

/*
 * Read [@off, @off + @len) into @buf.  In structured mode the chunks
 * must tile the range exactly once, holes reading as zeroes; *@nchunks
 * (may be NULL) counts data and hole chunks.
 */
static uint32_t cli_read_flags(Cli *c, uint64_t off, uint32_t len,
                               void *buf, uint16_t flags, int *nchunks)
{
    static uint64_t cookie = 1;
    uint64_t ck = qatomic_fetch_inc(&cookie);
    g_autofree uint8_t *seen = g_malloc0(MAX(len, 1));
    uint8_t *out = buf;
    int n = 0;
    uint32_t i;

    g_assert_true(cli_req(c, NBD_CMD_READ, flags, ck, off, len, NULL));
    if (!c->structured) {
        Msg m;

        g_assert_true(cli_msg(c, &m));
        g_assert_cmphex(m.cookie, ==, ck);
        if (!m.error) {
            g_assert_true(cli_recv(c, buf, len));
        }
        return m.error;
    }
    for (;;) {
        Msg m;
        uint64_t coff;
        uint32_t clen;

        g_assert_true(cli_msg(c, &m));
        g_assert_cmphex(m.cookie, ==, ck);
        g_assert_false(m.simple);
        if (m.type == NBD_REPLY_TYPE_ERROR) {
            g_assert_true(m.flags & NBD_REPLY_FLAG_DONE);
            i = get32(m.data);
            g_free(m.data);
            return i;
        }
        if (m.type == NBD_REPLY_TYPE_NONE) {
            g_assert_cmpuint(m.len, ==, 0);
            g_assert_true(m.flags & NBD_REPLY_FLAG_DONE);
            g_free(m.data);
            break;
        }
        g_assert_cmpuint(m.len, >=, 8);
        coff = get64(m.data);
        if (m.type == NBD_REPLY_TYPE_OFFSET_DATA) {
            clen = m.len - 8;
            g_assert_cmpuint(coff, >=, off);
            g_assert_cmpuint(coff + clen, <=, off + len);
            memcpy(out + (coff - off), m.data + 8, clen);
        } else {
            g_assert_cmpuint(m.type, ==, NBD_REPLY_TYPE_OFFSET_HOLE);
            g_assert_cmpuint(m.len, ==, 12);
            clen = get32(m.data + 8);
            g_assert_cmpuint(coff, >=, off);
            g_assert_cmpuint(coff + clen, <=, off + len);
            memset(out + (coff - off), 0, clen);
        }
        for (i = 0; i < clen; i++) {
            g_assert_false(seen[coff - off + i]);
            seen[coff - off + i] = 1;
        }
        n++;
        g_free(m.data);
        if (m.flags & NBD_REPLY_FLAG_DONE) {
            break;
        }
    }
    for (i = 0; i < len; i++) {
        g_assert_true(seen[i]);
    }
    if (nchunks) {
        *nchunks = n;
    }
    return 0;
}

static uint32_t cli_read(Cli *c, uint64_t off, uint32_t len, void *buf)
{
    return cli_read_flags(c, off, len, buf, 0, NULL);
}

static void cli_disc(Cli *c)
{
    g_assert_true(cli_req(c, NBD_CMD_DISC, 0, 99, 0, 0, NULL));
    g_assert_true(cli_at_eof(c));
    cli_close(c);
}

/* ---- Negotiation ---- */

static gpointer negotiation_client(gpointer opaque)
{
    static const uint16_t all_items[] = {
        NBD_INFO_NAME, NBD_INFO_DESCRIPTION, NBD_INFO_BLOCK_SIZE,
    };
    g_autoptr(GByteArray) info = info_data("img", all_items, 3);
    g_autoptr(GByteArray) unknown = info_data("nope", NULL, 0);
    g_autoptr(GArray) replies = g_array_new(FALSE, FALSE, sizeof(Rep));
    g_autofree char *msg = NULL;
    g_autofree uint8_t *junk = g_malloc0(100 * 1024);
    Cli *c = cli_connect();
    Rep *r;

    cli_hello(c, NBD_FLAG_C_FIXED_NEWSTYLE);

    /* LIST: one export, then ACK; with data it is refused. */
    g_assert_true(cli_opt(c, NBD_OPT_LIST, NULL, 0));
    g_assert_cmphex(cli_reps(c, NBD_OPT_LIST, replies, NULL), ==,
                    NBD_REP_ACK);
    g_assert_cmpuint(replies->len, ==, 1);
    r = &g_array_index(replies, Rep, 0);
    g_assert_cmpuint(r->type, ==, NBD_REP_SERVER);
    g_assert_cmpuint(get32(r->data), ==, 3);
    g_assert_cmpmem(r->data + 4, 3, "img", 3);
    reps_free(g_steal_pointer(&replies));
    g_assert_true(cli_opt(c, NBD_OPT_LIST, "x", 1));
    g_assert_cmphex(cli_reps(c, NBD_OPT_LIST, NULL, &msg), ==,
                    NBD_REP_ERR_INVALID);
    g_assert_cmpstr(msg, ==, "option 'list' has unexpected length");
    g_clear_pointer(&msg, g_free);

    /* INFO with every item: NAME, BLOCK_SIZE, EXPORT, in that order. */
    replies = g_array_new(FALSE, FALSE, sizeof(Rep));
    g_assert_true(cli_opt(c, NBD_OPT_INFO, info->data, info->len));
    g_assert_cmphex(cli_reps(c, NBD_OPT_INFO, replies, NULL), ==,
                    NBD_REP_ACK);
    g_assert_cmpuint(replies->len, ==, 3);
    r = &g_array_index(replies, Rep, 0);
    g_assert_cmpuint(get16(r->data), ==, NBD_INFO_NAME);
    g_assert_cmpmem(r->data + 2, r->len - 2, "img", 3);
    r = &g_array_index(replies, Rep, 1);
    g_assert_cmpuint(get16(r->data), ==, NBD_INFO_BLOCK_SIZE);
    g_assert_cmpuint(get32(r->data + 2), ==, 1);
    g_assert_cmpuint(get32(r->data + 6), ==, 4096);
    g_assert_cmpuint(get32(r->data + 10), ==, NBD_MAX_BUFFER_SIZE);
    r = &g_array_index(replies, Rep, 2);
    g_assert_cmpuint(get16(r->data), ==, NBD_INFO_EXPORT);
    g_assert_cmpuint(get64(r->data + 2), ==, IMG_SIZE);
    /* Writable, multi-conn (no limit), no DF before structured replies. */
    g_assert_cmphex(get16(r->data + 10), ==, 0x0d6d);
    reps_free(g_steal_pointer(&replies));

    /* Unknown export; inconsistent lengths. */
    g_assert_true(cli_opt(c, NBD_OPT_INFO, unknown->data, unknown->len));
    g_assert_cmphex(cli_reps(c, NBD_OPT_INFO, NULL, &msg), ==,
                    NBD_REP_ERR_UNKNOWN);
    g_assert_cmpstr(msg, ==, "export 'nope' not present");
    g_clear_pointer(&msg, g_free);
    g_assert_true(cli_opt(c, NBD_OPT_GO, info->data, info->len - 1));
    g_assert_cmphex(cli_reps(c, NBD_OPT_GO, NULL, &msg), ==,
                    NBD_REP_ERR_INVALID);
    g_assert_cmpstr(msg, ==, "Inconsistent lengths in option go");
    g_clear_pointer(&msg, g_free);

    /* SET_META_CONTEXT needs structured replies; LIST does not. */
    {
        static const char *const q[] = { "base:allocation", NULL };
        g_autoptr(GByteArray) m = meta_data("img", q);
        g_autoptr(GByteArray) all = meta_data("img", NULL);

        g_assert_true(cli_opt(c, NBD_OPT_SET_META_CONTEXT, m->data,
                              m->len));
        g_assert_cmphex(cli_reps(c, NBD_OPT_SET_META_CONTEXT, NULL, NULL),
                        ==, NBD_REP_ERR_INVALID);
        replies = g_array_new(FALSE, FALSE, sizeof(Rep));
        g_assert_true(cli_opt(c, NBD_OPT_LIST_META_CONTEXT, all->data,
                              all->len));
        g_assert_cmphex(cli_reps(c, NBD_OPT_LIST_META_CONTEXT, replies,
                                 NULL), ==, NBD_REP_ACK);
        g_assert_cmpuint(replies->len, ==, 2);
        r = &g_array_index(replies, Rep, 0);
        g_assert_cmpuint(r->type, ==, NBD_REP_META_CONTEXT);
        g_assert_cmpmem(r->data + 4, r->len - 4, "base:allocation", 15);
        r = &g_array_index(replies, Rep, 1);
        g_assert_cmpmem(r->data + 4, r->len - 4, "qemu:allocation-depth",
                        21);
        reps_free(g_steal_pointer(&replies));
    }

    /* STRUCTURED_REPLY: with data, twice. */
    g_assert_true(cli_opt(c, NBD_OPT_STRUCTURED_REPLY, "x", 1));
    g_assert_cmphex(cli_reps(c, NBD_OPT_STRUCTURED_REPLY, NULL, NULL), ==,
                    NBD_REP_ERR_INVALID);
    g_assert_true(cli_opt(c, NBD_OPT_STRUCTURED_REPLY, NULL, 0));
    g_assert_cmphex(cli_reps(c, NBD_OPT_STRUCTURED_REPLY, NULL, NULL), ==,
                    NBD_REP_ACK);
    g_assert_true(cli_opt(c, NBD_OPT_STRUCTURED_REPLY, NULL, 0));
    g_assert_cmphex(cli_reps(c, NBD_OPT_STRUCTURED_REPLY, NULL, &msg), ==,
                    NBD_REP_ERR_INVALID);
    g_assert_cmpstr(msg, ==, "structured reply already negotiated");
    g_clear_pointer(&msg, g_free);

    /* Unknown options are skipped with their data, even large data. */
    g_assert_true(cli_opt(c, 11, junk, 100 * 1024));
    g_assert_cmphex(cli_reps(c, 11, NULL, &msg), ==, NBD_REP_ERR_UNSUP);
    g_assert_cmpstr(msg, ==, "Unsupported option 11 (<unknown>)");
    g_clear_pointer(&msg, g_free);
    g_assert_true(cli_opt(c, NBD_OPT_STARTTLS, NULL, 0));
    g_assert_cmphex(cli_reps(c, NBD_OPT_STARTTLS, NULL, NULL), ==,
                    NBD_REP_ERR_POLICY);

    /* ABORT: an ACK, then the server closes. */
    g_assert_true(cli_opt(c, NBD_OPT_ABORT, NULL, 0));
    g_assert_cmphex(cli_reps(c, NBD_OPT_ABORT, NULL, NULL), ==,
                    NBD_REP_ACK);
    g_assert_true(cli_at_eof(c));
    cli_close(c);

    /* Unknown client flags: the server hangs up. */
    c = cli_connect();
    cli_hello(c, NBD_FLAG_C_FIXED_NEWSTYLE | 0x100);
    g_assert_true(cli_at_eof(c));
    cli_close(c);

    /* EXPORT_NAME: 10 bytes with NO_ZEROES, 134 without. */
    c = cli_connect();
    cli_hello(c, NBD_FLAG_C_FIXED_NEWSTYLE);
    g_assert_true(cli_opt(c, NBD_OPT_EXPORT_NAME, "img", 3));
    {
        uint8_t buf[134];
        uint8_t zero[124] = { 0 };

        g_assert_true(cli_recv(c, buf, sizeof(buf)));
        g_assert_cmpuint(get64(buf), ==, IMG_SIZE);
        g_assert_cmphex(get16(buf + 8), ==, 0x0d6d);
        g_assert_cmpmem(buf + 10, 124, zero, 124);
    }
    cli_disc(c);

    /* EXPORT_NAME of an unknown export: closed. */
    c = cli_connect();
    cli_hello(c, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    g_assert_true(cli_opt(c, NBD_OPT_EXPORT_NAME, "nope", 4));
    g_assert_true(cli_at_eof(c));
    cli_close(c);

    /* Structured GO: DF appears in the flags. */
    c = cli_open("img", true, NULL);
    g_assert_cmphex(c->eflags, ==, 0x0ded);
    cli_disc(c);
    return NULL;
}

static void test_negotiation(void)
{
    fixture_setup(NULL, 0);
    run_client(negotiation_client, NULL);
    fixture_teardown();
}

/* ---- I/O ---- */

static void check_pattern(const uint8_t *buf, uint64_t off, uint32_t len)
{
    uint32_t i;

    for (i = 0; i < len; i++) {
        uint8_t want = off + i < MiB ? pattern_byte(off + i) : 0;

        if (buf[i] != want) {
            g_error("byte %" PRIu64 ": got 0x%x, want 0x%x", off + i,
                    buf[i], want);
        }
    }
}

static void io_client_mode(bool structured)
{
    g_autofree uint8_t *buf = g_malloc(2 * MiB);
    g_autofree uint8_t *wbuf = g_malloc(64 * KiB);
    Cli *c = cli_open("img", structured, NULL);
    int nchunks;

    /* The pattern, and the hole after it, in one read. */
    g_assert_cmpuint(cli_read_flags(c, MiB - 4096, 64 * KiB, buf, 0,
                                    &nchunks), ==, 0);
    check_pattern(buf, MiB - 4096, 64 * KiB);
    if (structured) {
        /* Data, then a hole. */
        g_assert_cmpint(nchunks, ==, 2);
        g_assert_cmpuint(cli_read_flags(c, MiB - 4096, 64 * KiB, buf,
                                        NBD_CMD_FLAG_DF, &nchunks), ==, 0);
        g_assert_cmpint(nchunks, ==, 1);
        check_pattern(buf, MiB - 4096, 64 * KiB);
    }
    g_assert_cmpuint(cli_read(c, 0, 2 * MiB, buf), ==, 0);
    check_pattern(buf, 0, 2 * MiB);
    g_assert_cmpuint(cli_read(c, 12345, 0, buf), ==, 0);
    g_assert_cmpuint(cli_read(c, 511, 3, buf), ==, 0);
    check_pattern(buf, 511, 3);

    /* Write, with and without FUA, and read back. */
    memset(wbuf, 0xa5, 64 * KiB);
    g_assert_cmpuint(cli_cmd(c, NBD_CMD_WRITE, 0, 2 * MiB, 64 * KiB, wbuf,
                             NULL), ==, 0);
    memset(wbuf, 0x5a, 100);
    g_assert_cmpuint(cli_cmd(c, NBD_CMD_WRITE, NBD_CMD_FLAG_FUA,
                             2 * MiB + 7, 100, wbuf, NULL), ==, 0);
    g_assert_cmpuint(cli_read(c, 2 * MiB, 64 * KiB, buf), ==, 0);
    g_assert_cmpuint(buf[6], ==, 0xa5);
    g_assert_cmpuint(buf[7], ==, 0x5a);
    g_assert_cmpuint(buf[106], ==, 0x5a);
    g_assert_cmpuint(buf[107], ==, 0xa5);
    g_assert_cmpuint(buf[64 * KiB - 1], ==, 0xa5);
    g_assert_cmpuint(cli_cmd(c, NBD_CMD_WRITE, 0, 0, 0, NULL, NULL), ==, 0);

    /* Write zeroes in its flavours, trim, flush, cache. */
    g_assert_cmpuint(cli_cmd(c, NBD_CMD_WRITE_ZEROES, 0, 2 * MiB, 4096,
                             NULL, NULL), ==, 0);
    g_assert_cmpuint(cli_cmd(c, NBD_CMD_WRITE_ZEROES,
                             NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FUA,
                             2 * MiB + 4096, 4096, NULL, NULL), ==, 0);
    g_assert_cmpuint(cli_read(c, 2 * MiB, 3 * 4096, buf), ==, 0);
    g_assert_cmpuint(buf[0], ==, 0);
    g_assert_cmpuint(buf[8191], ==, 0);
    g_assert_cmpuint(buf[8192], ==, 0xa5);
    g_assert_cmpuint(cli_cmd(c, NBD_CMD_TRIM, NBD_CMD_FLAG_FUA,
                             2 * MiB + 8192, 4096, NULL, NULL), ==, 0);
    g_assert_cmpuint(cli_cmd(c, NBD_CMD_FLUSH, 0, 0, 0, NULL, NULL), ==, 0);
    g_assert_cmpuint(cli_cmd(c, NBD_CMD_CACHE, 0, 0, MiB, NULL, NULL), ==,
                     0);

    /* Put the area back as the fixture had it. */
    g_assert_cmpuint(cli_cmd(c, NBD_CMD_WRITE_ZEROES, 0, 2 * MiB, 64 * KiB,
                             NULL, NULL), ==, 0);
    cli_disc(c);
}

static gpointer io_client(gpointer opaque)
{
    io_client_mode(false);
    io_client_mode(true);
    return NULL;
}

static void test_io(void)
{
    g_autofree uint8_t *buf = g_malloc(64 * KiB);

    fixture_setup(NULL, 0);
    run_client(io_client, NULL);
    /* What the client wrote reached the image. */
    host_pread(buf, 4096, 2 * MiB + 60 * KiB);
    g_assert_cmpuint(buf[0], ==, 0);
    fixture_teardown();
}

/* ---- Block status ---- */

typedef struct Extent {
    uint32_t len;
    uint32_t flags;
} Extent;

/*
 * BLOCK_STATUS over [@off, @off + @len): the extents of each context,
 * indexed by context id (0: base:allocation, 1: allocation depth).
 */
static void cli_block_status(Cli *c, uint64_t off, uint32_t len,
                             uint16_t flags, GArray *ext[2])
{
    static uint64_t cookie = 5000;
    uint64_t ck = cookie++;

    ext[0] = g_array_new(FALSE, FALSE, sizeof(Extent));
    ext[1] = g_array_new(FALSE, FALSE, sizeof(Extent));
    g_assert_true(cli_req(c, NBD_CMD_BLOCK_STATUS, flags, ck, off, len,
                          NULL));
    for (;;) {
        Msg m;
        uint32_t id;
        uint32_t i;

        g_assert_true(cli_msg(c, &m));
        g_assert_cmphex(m.cookie, ==, ck);
        g_assert_cmpuint(m.type, ==, NBD_REPLY_TYPE_BLOCK_STATUS);
        g_assert_cmpuint((m.len - 4) % 8, ==, 0);
        id = get32(m.data);
        g_assert_cmpuint(id, <=, 1);
        for (i = 4; i < m.len; i += 8) {
            Extent e = { get32(m.data + i), get32(m.data + i + 4) };

            g_array_append_val(ext[id], e);
        }
        g_free(m.data);
        if (m.flags & NBD_REPLY_FLAG_DONE) {
            break;
        }
    }
}

static gpointer block_status_client(gpointer opaque)
{
    static const char *const both[] = {
        "base:allocation", "qemu:allocation-depth", NULL,
    };
    static const char *const base[] = { "base:allocation", NULL };
    Cli *c = cli_open("img", true, both);
    GArray *ext[2];
    Extent *e;
    g_autofree char *msg = NULL;

    /* The pattern is data; the rest a hole that reads as zeroes. */
    cli_block_status(c, 0, IMG_SIZE, 0, ext);
    g_assert_cmpuint(ext[0]->len, ==, 2);
    e = &g_array_index(ext[0], Extent, 0);
    g_assert_cmpuint(e->len, ==, MiB);
    g_assert_cmpuint(e->flags, ==, 0);
    e = &g_array_index(ext[0], Extent, 1);
    g_assert_cmpuint(e->len, ==, IMG_SIZE - MiB);
    g_assert_cmpuint(e->flags, ==, NBD_STATE_HOLE | NBD_STATE_ZERO);
    /* A raw file: every byte comes from the top (and only) layer. */
    g_assert_cmpuint(ext[1]->len, ==, 1);
    e = &g_array_index(ext[1], Extent, 0);
    g_assert_cmpuint(e->len, ==, IMG_SIZE);
    g_assert_cmpuint(e->flags, ==, 1);
    g_array_unref(ext[0]);
    g_array_unref(ext[1]);

    /* REQ_ONE: one extent per context, within the request. */
    cli_block_status(c, MiB - 4096, 8192, NBD_CMD_FLAG_REQ_ONE, ext);
    g_assert_cmpuint(ext[0]->len, ==, 1);
    g_assert_cmpuint(g_array_index(ext[0], Extent, 0).len, ==, 4096);
    g_assert_cmpuint(ext[1]->len, ==, 1);
    g_assert_cmpuint(g_array_index(ext[1], Extent, 0).len, ==, 8192);
    g_array_unref(ext[0]);
    g_array_unref(ext[1]);

    /* Errors: zero length, past the end, a flag it does not take. */
    g_assert_cmpuint(cli_cmd(c, NBD_CMD_BLOCK_STATUS, 0, 0, 0, NULL, &msg),
                     ==, NBD_EINVAL);
    g_assert_cmpstr(msg, ==, "need non-zero length");
    g_clear_pointer(&msg, g_free);
    g_assert_cmpuint(cli_cmd(c, NBD_CMD_BLOCK_STATUS, 0, IMG_SIZE - 512,
                             1024, NULL, NULL), ==, NBD_EINVAL);
    g_assert_cmpuint(cli_cmd(c, NBD_CMD_BLOCK_STATUS, NBD_CMD_FLAG_NO_HOLE,
                             0, 512, NULL, &msg), ==, NBD_EINVAL);
    g_assert_cmpstr(msg, ==,
                    "unsupported flags for command block status (got 0x2)");
    g_clear_pointer(&msg, g_free);
    cli_disc(c);

    /* Only base:allocation selected: one chunk, context 0. */
    c = cli_open("img", true, base);
    cli_block_status(c, 0, MiB, 0, ext);
    g_assert_cmpuint(ext[0]->len, ==, 1);
    g_assert_cmpuint(ext[1]->len, ==, 0);
    g_array_unref(ext[0]);
    g_array_unref(ext[1]);
    cli_disc(c);

    /* Nothing negotiated: refused. */
    c = cli_open("img", true, NULL);
    g_assert_cmpuint(cli_cmd(c, NBD_CMD_BLOCK_STATUS, 0, 0, 512, NULL,
                             &msg), ==, NBD_EINVAL);
    g_assert_cmpstr(msg, ==, "CMD_BLOCK_STATUS not negotiated");
    cli_disc(c);
    return NULL;
}

static void test_block_status(void)
{
    fixture_setup(NULL, 0);
    run_client(block_status_client, NULL);
    fixture_teardown();
}

/* ---- Bad input ---- */

static gpointer malformed_client(gpointer opaque)
{
    g_autofree uint8_t *buf = g_malloc(64 * KiB);
    g_autofree char *msg = NULL;
    Cli *good = cli_open("img", true, NULL);
    Cli *c = cli_open("img", true, NULL);
    Cli *s;
    uint8_t hdr[NBD_REQUEST_SIZE];

    /* Past the end, for reads and writes (whose payload is consumed). */
    g_assert_cmpuint(cli_cmd(c, NBD_CMD_READ, 0, IMG_SIZE - 512, 1024,
                             NULL, &msg), ==, NBD_EINVAL);
    g_assert_cmpstr(msg, ==, "operation past EOF; From: 4193792, Len: 1024, "
                    "Size: 4194304");
    g_clear_pointer(&msg, g_free);
    g_assert_cmpuint(cli_cmd(c, NBD_CMD_WRITE, 0, IMG_SIZE - 256, 512, buf,
                             NULL), ==, NBD_EINVAL);
    g_assert_cmpuint(cli_cmd(c, NBD_CMD_TRIM, 0, UINT64_MAX - 10, 100, NULL,
                             NULL), ==, NBD_EINVAL);
    g_assert_cmpuint(cli_cmd(c, NBD_CMD_FLUSH, 0, IMG_SIZE, 1, NULL,
                             NULL), ==, NBD_EINVAL);

    /* Unknown command and flags. */
    g_assert_cmpuint(cli_cmd(c, 42, 0, 0, 0, NULL, &msg), ==, NBD_EINVAL);
    g_assert_cmpstr(msg, ==, "invalid request type (42) received");
    g_clear_pointer(&msg, g_free);
    g_assert_cmpuint(cli_cmd(c, NBD_CMD_READ, 0x40, 0, 512, NULL, &msg),
                     ==, NBD_EINVAL);
    g_assert_cmpstr(msg, ==,
                    "unsupported flags for command read (got 0x40)");
    g_clear_pointer(&msg, g_free);
    g_assert_cmpuint(cli_cmd(c, NBD_CMD_READ, NBD_CMD_FLAG_REQ_ONE, 0, 512,
                             NULL, NULL), ==, NBD_EINVAL);

    /* Too long a read: refused, and the connection goes on. */
    g_assert_cmpuint(cli_cmd(c, NBD_CMD_READ, 0, 0, 64 * MiB, NULL, &msg),
                     ==, NBD_EINVAL);
    g_assert_cmpstr(msg, ==,
                    "len (67108864 ) is larger than max len (33554432)");
    g_clear_pointer(&msg, g_free);
    g_assert_cmpuint(cli_read(c, 0, 4096, buf), ==, 0);
    check_pattern(buf, 0, 4096);

    /* Too long a write: refused, then the server hangs up. */
    g_assert_cmpuint(cli_cmd(c, NBD_CMD_WRITE, 0, 0, 64 * MiB, NULL, NULL),
                     ==, NBD_EINVAL);
    g_assert_true(cli_at_eof(c));
    cli_close(c);

    /* A bad magic: an error reply with the cookie, then hang up. */
    c = cli_open("img", false, NULL);
    put32(hdr, 0x12345678);
    put16(hdr + 4, 0);
    put16(hdr + 6, NBD_CMD_READ);
    put64(hdr + 8, 77);
    put64(hdr + 16, 0);
    put32(hdr + 24, 512);
    g_assert_true(cli_send(c, hdr, sizeof(hdr)));
    g_assert_cmpuint(cli_result(c, 77, NULL), ==, NBD_EINVAL);
    g_assert_true(cli_at_eof(c));
    cli_close(c);

    /* Simple mode: DF and BLOCK_STATUS are refused. */
    s = cli_open("img", false, NULL);
    g_assert_cmpuint(cli_read_flags(s, 0, 512, buf, NBD_CMD_FLAG_DF, NULL),
                     ==, NBD_EINVAL);
    g_assert_cmpuint(cli_cmd(s, NBD_CMD_BLOCK_STATUS, 0, 0, 512, NULL,
                             NULL), ==, NBD_EINVAL);
    g_assert_cmpuint(cli_read(s, 0, 512, buf), ==, 0);
    cli_disc(s);

    /* The well-behaved client saw nothing of all this. */
    g_assert_cmpuint(cli_read(good, 0, 64 * KiB, buf), ==, 0);
    check_pattern(buf, 0, 64 * KiB);
    cli_disc(good);
    return NULL;
}

static void test_malformed(void)
{
    fixture_setup(NULL, 0);
    run_client(malformed_client, NULL);
    fixture_teardown();
}

static gpointer readonly_client(gpointer opaque)
{
    uint8_t buf[512] = { 0 };
    g_autofree char *msg = NULL;
    Cli *c = cli_open("img", true, NULL);

    /* Read-only, multi-conn, DF: QEMU's 0x058f. */
    g_assert_cmphex(c->eflags, ==, 0x058f);
    g_assert_cmpuint(cli_cmd(c, NBD_CMD_WRITE, 0, 0, 512, buf, &msg), ==,
                     NBD_EINVAL);
    g_assert_cmpstr(msg, ==, "Export is read-only");
    g_assert_cmpuint(cli_cmd(c, NBD_CMD_TRIM, 0, 0, 512, NULL, NULL), ==,
                     NBD_EINVAL);
    g_assert_cmpuint(cli_cmd(c, NBD_CMD_WRITE_ZEROES, 0, 0, 512, NULL,
                             NULL), ==, NBD_EINVAL);
    g_assert_cmpuint(cli_cmd(c, NBD_CMD_FLUSH, 0, 0, 0, NULL, NULL), ==, 0);
    g_assert_cmpuint(cli_read(c, 0, 512, buf), ==, 0);
    check_pattern(buf, 0, 512);
    cli_disc(c);
    return NULL;
}

static void test_readonly(void)
{
    fixture_setup("{\"writable\": false}", 0);
    run_client(readonly_client, NULL);
    fixture_teardown();
}

/* Clients that go away at awkward moments. */
static gpointer vanish_client(gpointer opaque)
{
    g_autofree uint8_t *buf = g_malloc(MiB);
    Cli *good = cli_open("img", true, NULL);
    Cli *c;
    int i;

    for (i = 0; i < 6; i++) {
        c = cli_open("img", i & 1, NULL);
        switch (i / 2) {
        case 0:
            /* A write header and half its payload. */
            g_assert_true(cli_req(c, NBD_CMD_WRITE, 0, 1, 0, MiB, NULL));
            g_assert_true(cli_send(c, buf, MiB / 2));
            break;
        case 1:
            /* Half a request header. */
            g_assert_true(cli_send(c, buf, NBD_REQUEST_SIZE / 2));
            break;
        case 2:
            /* Requests whose replies nobody reads. */
            g_assert_true(cli_req(c, NBD_CMD_READ, 0, 1, 0, MiB, NULL));
            g_assert_true(cli_req(c, NBD_CMD_READ, 0, 2, 0, MiB, NULL));
            break;
        }
        cli_close(c);
    }

    /* Half-negotiated clients, too. */
    c = cli_connect();
    cli_hello(c, NBD_FLAG_C_FIXED_NEWSTYLE);
    g_assert_true(cli_send(c, buf, 7));
    cli_close(c);
    c = cli_connect();
    cli_close(c);

    g_assert_cmpuint(cli_read(good, 0, MiB, buf), ==, 0);
    check_pattern(buf, 0, MiB);
    cli_disc(good);
    return NULL;
}

static void test_vanish(void)
{
    fixture_setup(NULL, 0);
    run_client(vanish_client, NULL);
    /* Every connection is cleaned up. */
    while (nbd_client_count() > 0) {
        main_loop_wait(false);
    }
    g_assert_cmpuint(nbd_export_client_count(nbd_export_find("img")), ==, 0);
    fixture_teardown();
}

/* Several clients at once, each pipelining requests. */
#define N_CLIENTS 6
#define PIPELINE 40

static gpointer many_client(gpointer opaque)
{
    int id = GPOINTER_TO_INT(opaque);
    Cli *c = cli_open("img", id & 1, NULL);
    uint8_t wbuf[4096];
    g_autofree uint8_t *rbuf = g_malloc(4096);
    uint64_t base = 2 * MiB + id * 256 * KiB;
    int round;
    int i;

    for (round = 0; round < 5; round++) {
        /* Pipelined writes, then their replies in whatever order. */
        for (i = 0; i < PIPELINE; i++) {
            memset(wbuf, id * 16 + round + i, sizeof(wbuf));
            /* Distinct blocks: concurrent requests have no order. */
            g_assert_true(cli_req(c, NBD_CMD_WRITE, 0, i, base + i * 4096,
                                  4096, wbuf));
        }
        for (i = 0; i < PIPELINE; i++) {
            Msg m;

            g_assert_true(cli_msg(c, &m));
            g_assert_true(m.simple);
            g_assert_cmpuint(m.error, ==, 0);
            g_assert_cmpuint(m.cookie, <, PIPELINE);
        }
        for (i = 0; i < PIPELINE; i++) {
            g_assert_cmpuint(cli_read(c, base + i * 4096, 4096, rbuf), ==,
                             0);
            g_assert_cmpuint(rbuf[0], ==, (uint8_t)(id * 16 + round + i));
            g_assert_cmpuint(rbuf[4095], ==, (uint8_t)(id * 16 + round + i));
        }
    }
    cli_disc(c);
    return NULL;
}

static void test_many_clients(void)
{
    ClientThread *ct[N_CLIENTS];
    int i;

    fixture_setup(NULL, 0);
    for (i = 0; i < N_CLIENTS; i++) {
        ct[i] = client_thread_start(many_client, GINT_TO_POINTER(i));
    }
    for (i = 0; i < N_CLIENTS; i++) {
        client_thread_join(ct[i]);
    }
    fixture_teardown();
}

/* ---- Drain ---- */

typedef struct Load {
    bool stop;
    bool failed;
    unsigned int replies;
    unsigned int iterations;
    uint64_t area;
} Load;

/*
 * Keep writing a counter to 64 KiB, reading it back and checking it,
 * until told to stop: every request must be answered, correctly.
 */
static gpointer load_client(gpointer opaque)
{
    Load *l = opaque;
    Cli *c = cli_open("img", true, NULL);
    g_autofree uint8_t *buf = g_malloc(64 * KiB);
    g_autofree uint8_t *rbuf = g_malloc(64 * KiB);
    uint32_t n = 0;

    while (!qatomic_read(&l->stop)) {
        n++;
        memset(buf, n & 0xff, 64 * KiB);
        memcpy(buf, &n, sizeof(n));
        if (cli_cmd(c, NBD_CMD_WRITE, 0, l->area, 64 * KiB, buf, NULL)) {
            l->failed = true;
            break;
        }
        qatomic_inc(&l->replies);
        if (cli_read(c, l->area, 64 * KiB, rbuf) ||
            memcmp(buf, rbuf, 64 * KiB)) {
            l->failed = true;
            break;
        }
        qatomic_inc(&l->replies);
        qatomic_set(&l->iterations, n);
    }
    cli_disc(c);
    return NULL;
}

static void wait_replies(Load *l, unsigned int more)
{
    unsigned int target = qatomic_read(&l->replies) + more;

    /* The export may live in an iothread: do not sleep in the main loop. */
    while (qatomic_read(&l->replies) < target && !l->failed) {
        main_loop_wait(true);
        g_usleep(100);
    }
}

static void test_drain_stops_requests(void)
{
    Load l = { .area = 3 * MiB };
    g_autofree uint8_t *a = g_malloc(64 * KiB);
    g_autofree uint8_t *b = g_malloc(64 * KiB);
    ClientThread *ct;
    unsigned int before;
    int round;

    fixture_setup(NULL, 0);
    ct = client_thread_start(load_client, &l);
    for (round = 0; round < 20; round++) {
        wait_replies(&l, 10);
        bdrv_drained_begin(fx.bs);
        /* Nothing runs: no reply, no change on the host, nothing queued. */
        g_assert_cmpuint(aio_context_in_flight(qemu_get_aio_context()), ==,
                         0);
        before = qatomic_read(&l.replies);
        host_pread(a, 64 * KiB, l.area);
        g_usleep(20 * 1000);
        host_pread(b, 64 * KiB, l.area);
        g_assert_cmpmem(a, 64 * KiB, b, 64 * KiB);
        g_assert_cmpuint(qatomic_read(&l.replies), <=, before + 1);
        bdrv_drained_end(fx.bs);
    }
    wait_replies(&l, 10);
    qatomic_set(&l.stop, true);
    client_thread_join(ct);
    g_assert_false(l.failed);
    fixture_teardown();
}

typedef struct Partial {
    Cli *c;
    GMutex lock;
    GCond cond;
    int step;
} Partial;

static void partial_wait(Partial *p, int step)
{
    g_mutex_lock(&p->lock);
    while (p->step < step) {
        g_cond_wait(&p->cond, &p->lock);
    }
    g_mutex_unlock(&p->lock);
}

static void partial_set(Partial *p, int step)
{
    g_mutex_lock(&p->lock);
    p->step = step;
    g_cond_broadcast(&p->cond);
    g_mutex_unlock(&p->lock);
    aio_notify(qemu_get_aio_context());
}

static gpointer partial_client(gpointer opaque)
{
    Partial *p = opaque;
    g_autofree uint8_t *buf = g_malloc(256 * KiB);

    p->c = cli_open("img", false, NULL);
    memset(buf, 0xee, 256 * KiB);
    g_assert_true(cli_req(p->c, NBD_CMD_WRITE, 0, 1, 3 * MiB, 256 * KiB,
                          NULL));
    g_assert_true(cli_send(p->c, buf, 100 * KiB));
    partial_set(p, 1);
    partial_wait(p, 2);
    g_assert_true(cli_send(p->c, buf + 100 * KiB, 156 * KiB));
    partial_wait(p, 3);
    g_assert_cmpuint(cli_result(p->c, 1, NULL), ==, 0);
    cli_disc(p->c);
    return NULL;
}

/* A drain waits for a request that is mid-parse, and it stops there. */
static void test_drain_busy_while_parsing(void)
{
    Partial p = { 0 };
    AioContext *ctx = qemu_get_aio_context();
    g_autofree uint8_t *buf = g_malloc(4096);
    ClientThread *ct;
    int i;

    fixture_setup(NULL, 0);
    g_mutex_init(&p.lock);
    g_cond_init(&p.cond);
    ct = client_thread_start(partial_client, &p);
    while (qatomic_read(&p.step) < 1) {
        main_loop_wait(false);
    }
    /* Let the server read what has been sent. */
    for (i = 0; i < 20; i++) {
        aio_poll(ctx, false);
        g_usleep(1000);
    }

    aio_context_drained_begin(ctx);
    /* Mid-parse: busy, however long we poll. */
    for (i = 0; i < 20; i++) {
        aio_poll(ctx, false);
        g_usleep(1000);
        g_assert_true(aio_context_drained_busy(ctx));
    }
    partial_set(&p, 2);
    AIO_WAIT_WHILE(ctx, aio_context_drained_busy(ctx));
    /* Parsed, and held in the backend: nothing written yet. */
    host_pread(buf, 4096, 3 * MiB);
    g_assert_cmpuint(buf[0], ==, 0);
    aio_context_drained_end(ctx);

    partial_set(&p, 3);
    client_thread_join(ct);
    host_pread(buf, 4096, 3 * MiB + 252 * KiB);
    g_assert_cmpuint(buf[4095], ==, 0xee);
    g_mutex_clear(&p.lock);
    g_cond_clear(&p.cond);
    fixture_teardown();
}

/*
 * A client that stays idle while its export moves around, and only then
 * sends a request.
 */
static gpointer idle_client(gpointer opaque)
{
    Partial *p = opaque;
    uint8_t buf[4096];

    p->c = cli_open("img", true, NULL);
    /* One request, so that the server's side of us lives in io1. */
    g_assert_cmpuint(cli_read(p->c, 0, 4096, buf), ==, 0);
    partial_set(p, 1);
    partial_wait(p, 2);
    g_assert_cmpuint(cli_read(p->c, 0, 4096, buf), ==, 0);
    check_pattern(buf, 0, 4096);
    cli_disc(p->c);
    return NULL;
}

/* Move the export between iothreads while a client keeps going. */
static void test_move_iothread(void)
{
    Partial idle = { 0 };
    ClientThread *ict;
    Load l = { .area = 3 * MiB };
    Load l2 = { .area = 2 * MiB };
    g_autoptr(GError) err = NULL;
    IOThread *io1 = iothread_create("nbd-io1", &err);
    IOThread *io2 = iothread_create("nbd-io2", &err);
    AioContext *ctxs[3];
    ClientThread *ct, *ct2;
    int round;

    g_assert_no_error(err);
    ctxs[0] = iothread_get_aio_context(io1);
    ctxs[1] = iothread_get_aio_context(io2);
    ctxs[2] = qemu_get_aio_context();
    fixture_setup(NULL, 0);

    /*
     * The idle client waits for its next request in io1, which goes away
     * before the request comes: the drain must have taken the client's
     * wait out of io1.
     */
    g_mutex_init(&idle.lock);
    g_cond_init(&idle.cond);
    g_assert_true(blk_exp_set_aio_context(fx.exp, ctxs[0], &err));
    ict = client_thread_start(idle_client, &idle);
    while (qatomic_read(&idle.step) < 1) {
        main_loop_wait(true);
        g_usleep(1000);
    }
    g_usleep(50 * 1000);

    ct = client_thread_start(load_client, &l);
    ct2 = client_thread_start(load_client, &l2);
    for (round = 1; round < 30; round++) {
        AioContext *ctx = ctxs[round % 3];

        wait_replies(&l, 6);
        wait_replies(&l2, 6);
        g_assert_true(blk_exp_set_aio_context(fx.exp, ctx, &err));
        g_assert_no_error(err);
        g_assert_true(bdrv_get_aio_context(fx.bs) == ctx);
    }
    wait_replies(&l, 6);
    qatomic_set(&l.stop, true);
    qatomic_set(&l2.stop, true);
    client_thread_join(ct);
    client_thread_join(ct2);
    g_assert_false(l.failed);
    g_assert_false(l2.failed);
    g_assert_cmpuint(l.iterations, >, 30);
    g_assert_true(bdrv_get_aio_context(fx.bs) == qemu_get_aio_context());

    iothread_destroy(io1);
    partial_set(&idle, 2);
    client_thread_join(ict);
    g_mutex_clear(&idle.lock);
    g_cond_clear(&idle.cond);
    fixture_teardown();
    iothread_destroy(io2);
}

/* An export created in an iothread serves from there. */
static void test_export_in_iothread(void)
{
    Load l = { .area = 3 * MiB };
    g_autoptr(GError) err = NULL;
    ClientThread *ct;

    g_assert_true(user_creatable_add_str("iothread,id=nbd-io0", &err));
    g_assert_no_error(err);
    fixture_setup("{\"iothread\": \"nbd-io0\"}", 0);
    g_assert_true(bdrv_get_aio_context(fx.bs) != qemu_get_aio_context());
    ct = client_thread_start(load_client, &l);
    wait_replies(&l, 20);
    /* Draining from the main thread works across threads too. */
    bdrv_drained_begin(fx.bs);
    g_assert_cmpuint(aio_context_in_flight(bdrv_get_aio_context(fx.bs)),
                     ==, 0);
    bdrv_drained_end(fx.bs);
    wait_replies(&l, 20);
    qatomic_set(&l.stop, true);
    client_thread_join(ct);
    g_assert_false(l.failed);
    fixture_teardown();
    g_assert_true(user_creatable_del("nbd-io0", &err));
}

/*
 * A second export asks for an iothread: the node moves, and the first
 * export's client goes along without noticing.
 */
static void test_second_export_moves_first(void)
{
    Load l = { .area = 3 * MiB };
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonNode) args = NULL;
    AioContext *io_ctx;
    ClientThread *ct;

    g_assert_true(user_creatable_add_str("iothread,id=nbd-io9", &err));
    g_assert_no_error(err);
    fixture_setup(NULL, 0);
    ct = client_thread_start(load_client, &l);
    wait_replies(&l, 20);

    args = json_from_string("{\"type\": \"nbd\", \"id\": \"e1\", "
                            "\"node-name\": \"img\", \"name\": \"two\", "
                            "\"iothread\": \"nbd-io9\"}", &err);
    g_assert_no_error(err);
    g_assert_nonnull(qmp_block_export_add(json_node_get_object(args),
                                          &err));
    g_assert_no_error(err);
    io_ctx = bdrv_get_aio_context(fx.bs);
    g_assert_true(io_ctx != qemu_get_aio_context());
    g_assert_true(fx.exp->ctx == io_ctx);
    wait_replies(&l, 20);

    /* And back, as x-blockdev-set-iothread would do it. */
    g_assert_true(blk_exp_del("e1", BLOCK_EXPORT_REMOVE_MODE_SAFE, &err));
    g_assert_true(blk_exp_change_node_aio_context(fx.bs,
                                                  qemu_get_aio_context(),
                                                  &err));
    g_assert_no_error(err);
    g_assert_true(fx.exp->ctx == qemu_get_aio_context());
    wait_replies(&l, 20);
    qatomic_set(&l.stop, true);
    client_thread_join(ct);
    g_assert_false(l.failed);
    fixture_teardown();
    g_assert_true(user_creatable_del("nbd-io9", &err));
}

/* ---- Deleting exports ---- */

typedef struct DelState {
    GError *err;
    bool ok;
    const char *mode;
    bool shutting_down;
    GError *again_err;
} DelState;

static void del_export_main(void *opaque)
{
    DelState *d = opaque;
    g_autoptr(JsonObject) args = json_object_new();

    json_object_set_string_member(args, "id", "e0");
    if (d->mode) {
        json_object_set_string_member(args, "mode", d->mode);
    }
    g_clear_error(&d->err);
    d->ok = qmp_block_export_del(args, &d->err);
    if (d->ok && blk_exp_find("e0")) {
        /* The client has not gone yet: the export is on its way out. */
        g_autoptr(JsonArray) list = qmp_query_block_exports(NULL);

        d->shutting_down = json_object_get_boolean_member(
            json_array_get_object_element(list, 0), "shutting-down");
        g_assert_false(qmp_block_export_del(args, &d->again_err));
    }
}

static gpointer del_client(gpointer opaque)
{
    DelState d = { 0 };
    uint8_t buf[512];
    Cli *c = cli_open("img", true, NULL);

    /* Safe mode refuses while a client is connected. */
    main_call(del_export_main, &d);
    g_assert_false(d.ok);
    g_assert_cmpstr(d.err->message, ==, "export 'e0' still in use");
    g_assert_cmpuint(cli_read(c, 0, 512, buf), ==, 0);

    /* Hard mode drops it. */
    d.mode = "hard";
    main_call(del_export_main, &d);
    g_assert_true(d.ok);
    g_assert_true(d.shutting_down);
    g_assert_cmpstr(d.again_err->message, ==,
                    "Export 'e0' is already shutting down");
    g_assert_true(cli_at_eof(c));
    cli_close(c);
    g_clear_error(&d.err);
    g_clear_error(&d.again_err);
    return NULL;
}

static void test_export_del(void)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonObject) args = json_object_new();
    g_autoptr(JsonArray) list = NULL;

    fixture_setup(NULL, 0);
    list = qmp_query_block_exports(&err);
    g_assert_cmpuint(json_array_get_length(list), ==, 1);
    g_assert_cmpstr(json_object_get_string_member(
                        json_array_get_object_element(list, 0), "id"), ==,
                    "e0");
    g_assert_false(json_object_get_boolean_member(
                       json_array_get_object_element(list, 0),
                       "shutting-down"));
    run_client(del_client, NULL);
    while (blk_exp_count() > 0) {
        main_loop_wait(false);
    }
    g_assert_cmpuint(fx.deleted, ==, 1);
    g_assert_cmpstr(fx.last_deleted, ==, "e0");

    /* Unknown export; bad mode. */
    json_object_set_string_member(args, "id", "e0");
    g_assert_false(qmp_block_export_del(args, &err));
    g_assert_cmpstr(err->message, ==, "Export 'e0' is not found");
    g_clear_error(&err);
    json_object_set_string_member(args, "mode", "bogus");
    g_assert_false(qmp_block_export_del(args, &err));
    g_assert_cmpstr(err->message, ==,
                    "Parameter 'mode' does not accept value 'bogus'");
    g_clear_error(&err);

    /* Without clients, safe deletion is immediate. */
    {
        BlockExportOptions o = {
            .type = BLOCK_EXPORT_TYPE_NBD, .id = "e1", .node_name = "img",
        };

        fx.exp = blk_exp_add(&o, &err);
        g_assert_no_error(err);
        g_assert_true(blk_exp_del("e1", BLOCK_EXPORT_REMOVE_MODE_SAFE,
                                  &err));
        g_assert_cmpuint(blk_exp_count(), ==, 0);
        g_assert_cmpuint(fx.deleted, ==, 2);
    }
    fixture_teardown();
}

static void stop_server_main(void *opaque)
{
    g_autoptr(GError) err = NULL;

    g_assert_true(nbd_server_stop(&err));
}

/* nbd-server-stop with a client connected: everything goes, waited for. */
static gpointer stop_client(gpointer opaque)
{
    Cli *c = cli_open("img", true, NULL);
    Cli *half = cli_connect();

    cli_hello(half, NBD_FLAG_C_FIXED_NEWSTYLE);
    main_call(stop_server_main, NULL);
    g_assert_true(cli_at_eof(c));
    g_assert_true(cli_at_eof(half));
    cli_close(c);
    cli_close(half);
    return NULL;
}

static void test_server_stop(void)
{
    fixture_setup(NULL, 0);
    run_client(stop_client, NULL);
    g_assert_false(nbd_server_is_running());
    g_assert_cmpuint(fx.deleted, ==, 1);
    fixture_teardown();
}

/* max-connections: beyond it, clients wait in the backlog. */
static gpointer maxconn_client(gpointer opaque)
{
    Cli *a = cli_open("img", true, NULL);
    Cli *b = cli_connect();
    struct timeval tv = { .tv_usec = 200 * 1000 };
    uint8_t hello[18];

    /* max 1: no multi-conn. */
    g_assert_cmphex(a->eflags & NBD_FLAG_CAN_MULTI_CONN, ==, 0);
    setsockopt(b->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    g_assert_cmpint(recv(b->fd, hello, sizeof(hello), 0), <, 0);
    g_assert_cmpint(errno, ==, EAGAIN);
    cli_disc(a);
    tv.tv_sec = RECV_TIMEOUT_S;
    setsockopt(b->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    cli_hello(b, NBD_FLAG_C_FIXED_NEWSTYLE);
    g_assert_true(cli_opt(b, NBD_OPT_ABORT, NULL, 0));
    g_assert_cmphex(cli_reps(b, NBD_OPT_ABORT, NULL, NULL), ==,
                    NBD_REP_ACK);
    cli_close(b);
    return NULL;
}

static void test_max_connections(void)
{
    fixture_setup(NULL, 1);
    run_client(maxconn_client, NULL);
    fixture_teardown();
}

/* DISC with requests in flight: they are all answered, then the end. */
static gpointer disc_client(gpointer opaque)
{
    g_autofree uint8_t *buf = g_malloc(256 * KiB);
    Cli *c = cli_open("img", false, NULL);
    int i;

    memset(buf, 0x3c, 256 * KiB);
    for (i = 0; i < 8; i++) {
        g_assert_true(cli_req(c, NBD_CMD_WRITE, 0, i, 2 * MiB + i * 256 * KiB,
                              256 * KiB, buf));
    }
    g_assert_true(cli_req(c, NBD_CMD_DISC, 0, 99, 0, 0, NULL));
    for (i = 0; i < 8; i++) {
        Msg m;

        g_assert_true(cli_msg(c, &m));
        g_assert_cmpuint(m.error, ==, 0);
    }
    g_assert_true(cli_at_eof(c));
    cli_close(c);
    return NULL;
}

static void test_disc_in_flight(void)
{
    g_autofree uint8_t *buf = g_malloc(4096);

    fixture_setup(NULL, 0);
    run_client(disc_client, NULL);
    host_pread(buf, 4096, 4 * MiB - 4096);
    g_assert_cmpuint(buf[4095], ==, 0x3c);
    fixture_teardown();
}

/* I/O errors of the node are errors of the request, not of the link. */
static gpointer io_error_client(gpointer opaque)
{
    uint8_t buf[8192];
    g_autofree char *msg = NULL;
    Cli *c;
    int mode;

    for (mode = 0; mode < 2; mode++) {
        c = cli_open("err", mode, NULL);
        /* The first write raises the event that arms the rules. */
        g_assert_cmpuint(cli_cmd(c, NBD_CMD_WRITE, 0, 0, 512, buf, NULL), ==,
                         0);
        g_assert_cmpuint(cli_read(c, 0, 4096, buf), ==, 0);
        /* Structured: from the data path that follows block status. */
        g_assert_cmpuint(cli_read(c, 4096, 8192, buf), ==, NBD_EIO);
        g_assert_cmpuint(cli_read_flags(c, 4096, 512, buf,
                                        mode ? NBD_CMD_FLAG_DF : 0, NULL),
                         ==, NBD_EIO);
        g_assert_cmpuint(cli_cmd(c, NBD_CMD_WRITE, 0, 8192, 512, buf, &msg),
                         ==, NBD_EIO);
        if (mode) {
            g_assert_cmpstr(msg, ==, "writing to file failed");
            g_clear_pointer(&msg, g_free);
        }
        g_assert_cmpuint(cli_read(c, 0, 4096, buf), ==, 0);
        cli_disc(c);
    }
    return NULL;
}

static void test_io_error(void)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonNode) node = NULL;
    g_autofree char *path = NULL;
    g_autofree char *json = NULL;
    g_autofree uint8_t *data = g_malloc(MiB);
    BlockExportOptions o = {
        .type = BLOCK_EXPORT_TYPE_NBD, .id = "e9", .node_name = "dbg",
        .writable = true, .nbd = { .name = "err" },
    };
    BlockDriverState *bs;

    fixture_setup(NULL, 0);
    /* All data, so that structured reads take the data path. */
    path = g_build_filename(fx.dir, "err.raw", NULL);
    memset(data, 0x77, MiB);
    g_assert_true(g_file_set_contents(path, (char *)data, MiB, &err));
    json = g_strdup_printf(
        "{\"driver\": \"blkdebug\", \"node-name\": \"dbg\","
        " \"image\": {\"driver\": \"file\", \"filename\": \"%s\"},"
        " \"inject-error\": [{\"event\": \"pwritev\", \"sector\": 8,"
        "                     \"errno\": 5, \"iotype\": \"read\"},"
        "                    {\"event\": \"pwritev\", \"sector\": 16,"
        "                     \"errno\": 5, \"iotype\": \"write\"}]}",
        path);
    node = json_from_string(json, &err);
    g_assert_no_error(err);
    bs = bdrv_open_options(json_node_get_object(node), BDRV_O_RDWR, &err);
    g_assert_no_error(err);
    g_assert_nonnull(blk_exp_add(&o, &err));
    g_assert_no_error(err);
    run_client(io_error_client, NULL);
    fixture_teardown_keep_dir();
    bdrv_unref(bs);
    unlink(path);
    fixture_remove_dir();
}

static void handshake_closed(NBDClient *client, bool negotiated,
                             void *opaque)
{
    g_assert_false(negotiated);
    *(bool *)opaque = true;
}

/* A client that does not finish negotiating is dropped. */
static void test_handshake_limit(void)
{
    int sv[2];
    uint8_t buf[18];
    bool closed = false;
    int64_t start = g_get_monotonic_time();
    ssize_t n;

    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv),
                    ==, 0);
    nbd_client_new(sv[0], 1, handshake_closed, &closed);
    while (!closed) {
        main_loop_wait(false);
        g_assert_cmpint(g_get_monotonic_time() - start, <,
                        RECV_TIMEOUT_S * G_USEC_PER_SEC);
    }
    g_assert_cmpint(g_get_monotonic_time() - start, >=, 900 * 1000);
    n = recv(sv[1], buf, sizeof(buf), MSG_WAITALL);
    g_assert_cmpint(n, ==, sizeof(buf));
    g_assert_cmpint(recv(sv[1], buf, 1, 0), ==, 0);
    close(sv[1]);
    g_assert_cmpuint(nbd_client_count(), ==, 0);
}

/* ---- QMP arguments ---- */

static void check_add_error(const char *json, const char *want)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonNode) node = json_from_string(json, &err);

    g_assert_no_error(err);
    g_assert_null(qmp_block_export_add(json_node_get_object(node), &err));
    g_assert_nonnull(err);
    g_assert_cmpstr(err->message, ==, want);
}

static void check_start_error(const char *json, const char *want)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonNode) node = json_from_string(json, &err);

    g_assert_no_error(err);
    g_assert_false(qmp_nbd_server_start(json_node_get_object(node), &err));
    g_assert_nonnull(err);
    g_assert_cmpstr(err->message, ==, want);
}

static void test_qmp_args(void)
{
    g_autofree char *long_name = g_strnfill(4097, 'x');
    g_autofree char *json = NULL;
    g_autofree char *want = NULL;
    g_autoptr(GError) err = NULL;

    /* Before any server. */
    check_add_error("{\"type\": \"nbd\", \"id\": \"e0\", "
                    "\"node-name\": \"nope\"}",
                    "Cannot find device='' nor node-name='nope'");
    g_assert_false(nbd_server_stop(&err));
    g_assert_cmpstr(err->message, ==, "NBD server not running");
    g_clear_error(&err);

    check_start_error("{}", "Parameter 'addr' is missing");
    check_start_error("{\"addr\": {\"type\": \"unix\", \"path\": \"/x\"}}",
                      "Parameter 'addr.data' is missing");
    check_start_error("{\"addr\": {\"type\": \"unix\", \"data\": "
                      "{\"path\": \"/x\", \"bogus\": 1}}}",
                      "Parameter 'addr.data.bogus' is unexpected");
    check_start_error("{\"addr\": {\"type\": \"unix\", \"data\": "
                      "{\"path\": \"/nonexistent/dir/s\"}}}",
                      "Failed to bind socket to /nonexistent/dir/s: "
                      "No such file or directory");
    check_start_error("{\"addr\": {\"type\": \"fd\", \"data\": "
                      "{\"str\": \"3\"}}}",
                      "only QEMU supports file descriptor passing");
    check_start_error("{\"addr\": {\"type\": \"unix\", \"data\": "
                      "{\"path\": \"/x\"}}, \"max-connections\": -1}",
                      "Parameter 'max-connections' expects uint32_t");
    check_start_error("{\"addr\": {\"type\": \"unix\", \"data\": "
                      "{\"path\": \"/x\"}}, \"tls-creds\": \"t\"}",
                      "No TLS credentials with id 't'");
    check_start_error("{\"addr\": {\"type\": \"inet\", \"data\": "
                      "{\"host\": \"127.0.0.1\", \"port\": \"abc\"}}}",
                      "address resolution failed for 127.0.0.1:abc: "
                      "Servname not supported for ai_socktype");

    fixture_setup(NULL, 0);
    check_start_error("{\"addr\": {\"type\": \"unix\", \"data\": "
                      "{\"path\": \"/x\"}}}", "NBD server already running");
    check_add_error("{\"type\": \"nbd\", \"id\": \"e0\", "
                    "\"node-name\": \"img\"}",
                    "Block export id 'e0' is already in use");
    check_add_error("{\"type\": \"nbd\", \"id\": \"e1\", "
                    "\"node-name\": \"img\", \"name\": \"img\"}",
                    "NBD server already has export named 'img'");
    check_add_error("{\"type\": \"nbd\", \"id\": \"1e\", "
                    "\"node-name\": \"img\"}", "Invalid block export id");
    check_add_error("{\"type\": \"foo\", \"id\": \"e1\", "
                    "\"node-name\": \"img\"}",
                    "Parameter 'type' does not accept value 'foo'");
    check_add_error("{\"id\": \"e1\", \"node-name\": \"img\"}",
                    "Parameter 'type' is missing");
    check_add_error("{\"type\": \"nbd\", \"node-name\": \"img\"}",
                    "Parameter 'id' is missing");
    check_add_error("{\"type\": \"nbd\", \"id\": \"e1\"}",
                    "Parameter 'node-name' is missing");
    check_add_error("{\"type\": \"nbd\", \"id\": \"e1\", \"name\": 5, "
                    "\"node-name\": \"img\"}",
                    "Invalid parameter type for 'name', expected: string");
    check_add_error("{\"type\": \"nbd\", \"id\": \"e1\", \"writable\": "
                    "\"yes\", \"node-name\": \"img\"}",
                    "Invalid parameter type for 'writable', expected: "
                    "boolean");
    check_add_error("{\"type\": \"nbd\", \"id\": \"e1\", \"bogus\": 1, "
                    "\"node-name\": \"img\"}",
                    "Parameter 'bogus' is unexpected");
    check_add_error("{\"type\": \"nbd\", \"id\": \"e1\", \"name\": \"y\", "
                    "\"iothread\": \"nope\", \"node-name\": \"img\"}",
                    "iothread \"nope\" not found");
    check_add_error("{\"type\": \"nbd\", \"id\": \"e1\", \"name\": \"y\", "
                    "\"bitmaps\": [\"b\"], \"node-name\": \"img\"}",
                    "Bitmap 'b' is not found");
    check_add_error("{\"type\": \"vhost-user-blk\", \"id\": \"e1\", "
                    "\"node-name\": \"img\"}",
                    "Parameter 'addr' is missing");
    json = g_strdup_printf("{\"type\": \"nbd\", \"id\": \"e1\", \"name\": "
                           "\"%s\", \"node-name\": \"img\"}", long_name);
    want = g_strdup_printf("export name '%s' too long", long_name);
    check_add_error(json, want);
    g_free(json);
    g_free(want);
    json = g_strdup_printf("{\"type\": \"nbd\", \"id\": \"e1\", \"name\": "
                           "\"y\", \"description\": \"%s\", "
                           "\"node-name\": \"img\"}", long_name);
    want = g_strdup_printf("description '%s' too long", long_name);
    check_add_error(json, want);
    g_assert_cmpuint(blk_exp_count(), ==, 1);
    fixture_teardown();
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_assert_true(qemu_init_main_loop(NULL));
    signal(SIGPIPE, SIG_IGN);

    g_test_add_func("/nbd/negotiation", test_negotiation);
    g_test_add_func("/nbd/io", test_io);
    g_test_add_func("/nbd/block-status", test_block_status);
    g_test_add_func("/nbd/malformed", test_malformed);
    g_test_add_func("/nbd/read-only", test_readonly);
    g_test_add_func("/nbd/vanish", test_vanish);
    g_test_add_func("/nbd/many-clients", test_many_clients);
    g_test_add_func("/nbd/disc-in-flight", test_disc_in_flight);
    g_test_add_func("/nbd/io-error", test_io_error);
    g_test_add_func("/nbd/handshake-limit", test_handshake_limit);
    g_test_add_func("/nbd/drain/stops-requests", test_drain_stops_requests);
    g_test_add_func("/nbd/drain/busy-while-parsing",
                    test_drain_busy_while_parsing);
    g_test_add_func("/nbd/iothread/move", test_move_iothread);
    g_test_add_func("/nbd/iothread/export", test_export_in_iothread);
    g_test_add_func("/nbd/iothread/second-export",
                    test_second_export_moves_first);
    g_test_add_func("/nbd/export/del", test_export_del);
    g_test_add_func("/nbd/server/stop", test_server_stop);
    g_test_add_func("/nbd/server/max-connections", test_max_connections);
    g_test_add_func("/nbd/qmp-args", test_qmp_args);
    return g_test_run();
}
