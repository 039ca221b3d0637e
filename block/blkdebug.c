/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * blkdebug: a filter that injects errors into the requests passing
 * through it and holds requests at breakpoints, so tests can reach the
 * rare paths of the layers above.
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * Rules come from a config file ("config") in QEMU's INI-like syntax and
 * from inline options ("inject-error", "set-state" arrays).  A rule is
 * tied to a debug event (include/block/blkdebug.h).  When the event is
 * raised and the rule's state matches the node's state:
 *
 * - inject-error rules become the node's active rules, replacing those
 *   of an earlier event.  Each request then fails with the errno of the
 *   first active rule that covers its I/O type and (if the rule names a
 *   sector) the start of that sector.  A "once" rule is deleted when it
 *   fires; an "immediately" rule fails without a trip through the event
 *   loop.
 * - set-state rules change the node's state (1 at open) once every rule
 *   of the event has looked at the old one.
 * - breakpoints (set by tools, never by options) suspend the request
 *   that raised the event until resumed.
 *
 * Options, defaults and messages follow QEMU 7.2's blkdebug.
 */
#include "qemu/osdep.h"

#include "block/blkdebug.h"
#include "block/block_int.h"
#include "qemu/coroutine.h"
#include "qemu/keyval.h"

/* The size of the unit a rule's "sector" counts in. */
#define BLKDEBUG_SECTOR_SIZE 512

/* A rule's offset that no request can contain. */
#define BLKDEBUG_NO_OFFSET INT64_MAX

typedef enum BlkdebugIOType {
    BLKDEBUG_IO_TYPE_READ,
    BLKDEBUG_IO_TYPE_WRITE,
    BLKDEBUG_IO_TYPE_WRITE_ZEROES,
    BLKDEBUG_IO_TYPE_DISCARD,
    BLKDEBUG_IO_TYPE_FLUSH,
    BLKDEBUG_IO_TYPE_BLOCK_STATUS,
    BLKDEBUG_IO_TYPE__MAX,
} BlkdebugIOType;

static const char *const blkdebug_iotype_names[] = {
    [BLKDEBUG_IO_TYPE_READ] = "read",
    [BLKDEBUG_IO_TYPE_WRITE] = "write",
    [BLKDEBUG_IO_TYPE_WRITE_ZEROES] = "write-zeroes",
    [BLKDEBUG_IO_TYPE_DISCARD] = "discard",
    [BLKDEBUG_IO_TYPE_FLUSH] = "flush",
    [BLKDEBUG_IO_TYPE_BLOCK_STATUS] = "block-status",
};

/* Without "iotype", a rule covers every request but block status. */
#define BLKDEBUG_IOTYPE_DEFAULT_MASK \
    (((1u << BLKDEBUG_IO_TYPE__MAX) - 1) & \
     ~(1u << BLKDEBUG_IO_TYPE_BLOCK_STATUS))

static const char *const blkdebug_event_names[BLKDBG__MAX] = {
    [BLKDBG_L1_UPDATE] = "l1_update",
    [BLKDBG_L1_GROW_ALLOC_TABLE] = "l1_grow_alloc_table",
    [BLKDBG_L1_GROW_WRITE_TABLE] = "l1_grow_write_table",
    [BLKDBG_L1_GROW_ACTIVATE_TABLE] = "l1_grow_activate_table",
    [BLKDBG_L2_LOAD] = "l2_load",
    [BLKDBG_L2_UPDATE] = "l2_update",
    [BLKDBG_L2_UPDATE_COMPRESSED] = "l2_update_compressed",
    [BLKDBG_L2_ALLOC_COW_READ] = "l2_alloc_cow_read",
    [BLKDBG_L2_ALLOC_WRITE] = "l2_alloc_write",
    [BLKDBG_READ_AIO] = "read_aio",
    [BLKDBG_READ_BACKING_AIO] = "read_backing_aio",
    [BLKDBG_READ_COMPRESSED] = "read_compressed",
    [BLKDBG_WRITE_AIO] = "write_aio",
    [BLKDBG_WRITE_COMPRESSED] = "write_compressed",
    [BLKDBG_VMSTATE_LOAD] = "vmstate_load",
    [BLKDBG_VMSTATE_SAVE] = "vmstate_save",
    [BLKDBG_COW_READ] = "cow_read",
    [BLKDBG_COW_WRITE] = "cow_write",
    [BLKDBG_REFTABLE_LOAD] = "reftable_load",
    [BLKDBG_REFTABLE_GROW] = "reftable_grow",
    [BLKDBG_REFTABLE_UPDATE] = "reftable_update",
    [BLKDBG_REFBLOCK_LOAD] = "refblock_load",
    [BLKDBG_REFBLOCK_UPDATE] = "refblock_update",
    [BLKDBG_REFBLOCK_UPDATE_PART] = "refblock_update_part",
    [BLKDBG_REFBLOCK_ALLOC] = "refblock_alloc",
    [BLKDBG_REFBLOCK_ALLOC_HOOKUP] = "refblock_alloc_hookup",
    [BLKDBG_REFBLOCK_ALLOC_WRITE] = "refblock_alloc_write",
    [BLKDBG_REFBLOCK_ALLOC_WRITE_BLOCKS] = "refblock_alloc_write_blocks",
    [BLKDBG_REFBLOCK_ALLOC_WRITE_TABLE] = "refblock_alloc_write_table",
    [BLKDBG_REFBLOCK_ALLOC_SWITCH_TABLE] = "refblock_alloc_switch_table",
    [BLKDBG_CLUSTER_ALLOC] = "cluster_alloc",
    [BLKDBG_CLUSTER_ALLOC_BYTES] = "cluster_alloc_bytes",
    [BLKDBG_CLUSTER_FREE] = "cluster_free",
    [BLKDBG_FLUSH_TO_OS] = "flush_to_os",
    [BLKDBG_FLUSH_TO_DISK] = "flush_to_disk",
    [BLKDBG_PWRITEV_RMW_HEAD] = "pwritev_rmw_head",
    [BLKDBG_PWRITEV_RMW_AFTER_HEAD] = "pwritev_rmw_after_head",
    [BLKDBG_PWRITEV_RMW_TAIL] = "pwritev_rmw_tail",
    [BLKDBG_PWRITEV_RMW_AFTER_TAIL] = "pwritev_rmw_after_tail",
    [BLKDBG_PWRITEV] = "pwritev",
    [BLKDBG_PWRITEV_ZERO] = "pwritev_zero",
    [BLKDBG_PWRITEV_DONE] = "pwritev_done",
    [BLKDBG_EMPTY_IMAGE_PREPARE] = "empty_image_prepare",
    [BLKDBG_L1_SHRINK_WRITE_TABLE] = "l1_shrink_write_table",
    [BLKDBG_L1_SHRINK_FREE_L2_CLUSTERS] = "l1_shrink_free_l2_clusters",
    [BLKDBG_COR_WRITE] = "cor_write",
    [BLKDBG_CLUSTER_ALLOC_SPACE] = "cluster_alloc_space",
    [BLKDBG_NONE] = "none",
};

/* Permission names for take-child-perms and unshare-child-perms. */
static const struct {
    const char *name;
    uint64_t perm;
} blkdebug_perm_names[] = {
    { "consistent-read", BLK_PERM_CONSISTENT_READ },
    { "write", BLK_PERM_WRITE },
    { "write-unchanged", BLK_PERM_WRITE_UNCHANGED },
    { "resize", BLK_PERM_RESIZE },
    { "graph-mod", BLK_PERM_GRAPH_MOD },
};

typedef enum BlkdebugAction {
    BLKDEBUG_ACTION_INJECT_ERROR,
    BLKDEBUG_ACTION_SET_STATE,
    BLKDEBUG_ACTION_SUSPEND,
} BlkdebugAction;

typedef struct BlkdebugRule {
    BlkdebugEvent event;
    BlkdebugAction action;
    int64_t state;              /* the state it applies in; 0: any */
    union {
        struct {
            int error;          /* errno to fail with; <= 0: none */
            int64_t offset;     /* a sector's first byte; -1: any */
            bool once;
            bool immediately;
            unsigned int iotype_mask;
        } inject;
        struct {
            int64_t new_state;
        } set_state;
        struct {
            char *tag;
        } suspend;
    };
    QTAILQ_ENTRY(BlkdebugRule) next;
} BlkdebugRule;

/* A request suspended at breakpoints, on its coroutine's stack. */
typedef struct BlkdebugWaiter {
    Coroutine *co;
    unsigned int pending;       /* breakpoints not resumed yet; s->lock */
} BlkdebugWaiter;

/* One breakpoint hit by a waiting request. */
typedef struct BlkdebugSuspended {
    char *tag;
    BlkdebugWaiter *waiter;
    QLIST_ENTRY(BlkdebugSuspended) next;
} BlkdebugSuspended;

typedef struct BDRVBlkdebugState {
    /*
     * Rules, state and suspended requests.  Requests use them in the
     * node's home thread, tools in the main thread.  Never held across
     * a yield.
     */
    GMutex lock;
    int64_t state;
    QTAILQ_HEAD(, BlkdebugRule) rules[BLKDBG__MAX];
    GPtrArray *active;          /* inject-error rules, first match wins */
    QLIST_HEAD(, BlkdebugSuspended) suspended;  /* newest first */

    uint64_t align;
    uint64_t max_transfer;
    uint64_t opt_write_zero;
    uint64_t max_write_zero;
    uint64_t opt_discard;
    uint64_t max_discard;
    uint64_t take_perms;
    uint64_t unshare_perms;
} BDRVBlkdebugState;

static BlockDriver bdrv_blkdebug;

static bool blkdebug_quiet;

static const char *const blkdebug_option_names[] = {
    "config", "image", "align", "max-transfer", "opt-write-zero",
    "max-write-zero", "opt-discard", "max-discard", "inject-error",
    "set-state", "take-child-perms", "unshare-child-perms", NULL,
};

/* ---- Names ---- */

const char *blkdebug_event_name(BlkdebugEvent event)
{
    if ((unsigned int)event >= BLKDBG__MAX) {
        return NULL;
    }
    return blkdebug_event_names[event];
}

int blkdebug_event_lookup(const char *name)
{
    int i;

    for (i = 0; i < BLKDBG__MAX; i++) {
        if (strcmp(blkdebug_event_names[i], name) == 0) {
            return i;
        }
    }
    return -1;
}

void blkdebug_set_quiet(bool quiet)
{
    qatomic_set(&blkdebug_quiet, quiet);
}

static void blkdebug_print(const char *what, const char *tag)
{
    if (!qatomic_read(&blkdebug_quiet)) {
        printf("blkdebug: %s request '%s'\n", what, tag);
        fflush(stdout);
    }
}

/* ---- Rule specifications, as read from options and config files ---- */

typedef enum BlkdebugOptType {
    BLKDEBUG_OPT_STRING,
    BLKDEBUG_OPT_NUMBER,
    BLKDEBUG_OPT_BOOL,
} BlkdebugOptType;

typedef struct BlkdebugOptDesc {
    const char *name;
    BlkdebugOptType type;
} BlkdebugOptDesc;

static const BlkdebugOptDesc blkdebug_inject_opts[] = {
    { "event", BLKDEBUG_OPT_STRING },
    { "state", BLKDEBUG_OPT_NUMBER },
    { "iotype", BLKDEBUG_OPT_STRING },
    { "errno", BLKDEBUG_OPT_NUMBER },
    { "sector", BLKDEBUG_OPT_NUMBER },
    { "once", BLKDEBUG_OPT_BOOL },
    { "immediately", BLKDEBUG_OPT_BOOL },
    { NULL },
};

static const BlkdebugOptDesc blkdebug_set_state_opts[] = {
    { "event", BLKDEBUG_OPT_STRING },
    { "state", BLKDEBUG_OPT_NUMBER },
    { "new_state", BLKDEBUG_OPT_NUMBER },
    { NULL },
};

typedef enum BlkdebugSection {
    BLKDEBUG_SECTION_INJECT_ERROR,
    BLKDEBUG_SECTION_SET_STATE,
    BLKDEBUG_SECTION__MAX,
} BlkdebugSection;

static const struct {
    const char *name;
    const BlkdebugOptDesc *opts;
} blkdebug_sections[BLKDEBUG_SECTION__MAX] = {
    [BLKDEBUG_SECTION_INJECT_ERROR] = {
        "inject-error", blkdebug_inject_opts,
    },
    [BLKDEBUG_SECTION_SET_STATE] = {
        "set-state", blkdebug_set_state_opts,
    },
};

/* A rule before it is checked against the event names. */
typedef struct BlkdebugRuleSpec {
    BlkdebugSection section;
    JsonObject *opts;
} BlkdebugRuleSpec;

static void blkdebug_rule_spec_free(gpointer p)
{
    BlkdebugRuleSpec *spec = p;

    json_object_unref(spec->opts);
    g_free(spec);
}

static BlkdebugRuleSpec *blkdebug_rule_spec_new(BlkdebugSection section,
                                                JsonObject *opts)
{
    BlkdebugRuleSpec *spec = g_new0(BlkdebugRuleSpec, 1);

    spec->section = section;
    spec->opts = opts ? json_object_ref(opts) : json_object_new();
    return spec;
}

static const BlkdebugOptDesc *blkdebug_find_opt(BlkdebugSection section,
                                                const char *name)
{
    const BlkdebugOptDesc *d;

    for (d = blkdebug_sections[section].opts; d->name; d++) {
        if (strcmp(d->name, name) == 0) {
            return d;
        }
    }
    return NULL;
}

/* Parse option @d of @o as its type says, only to check it. */
static bool blkdebug_check_opt(JsonObject *o, const BlkdebugOptDesc *d,
                               GError **errp)
{
    g_autofree char *str = NULL;
    uint64_t num;
    bool b;

    switch (d->type) {
    case BLKDEBUG_OPT_NUMBER:
        return keyval_get_uint(o, d->name, 0, &num, errp);
    case BLKDEBUG_OPT_BOOL:
        return keyval_get_bool(o, d->name, false, &b, errp);
    default:
        return keyval_get_str(o, d->name, NULL, &str, errp);
    }
}

static bool blkdebug_node_is_scalar(JsonNode *node)
{
    return node && !JSON_NODE_HOLDS_OBJECT(node) &&
           !JSON_NODE_HOLDS_ARRAY(node);
}

/*
 * Check one inline rule: the values first, then the names, which is
 * the order in which QEMU reports them.
 */
static bool blkdebug_check_inline_rule(BlkdebugSection section,
                                       JsonObject *o, GError **errp)
{
    const BlkdebugOptDesc *d;
    g_autoptr(GList) members = NULL;
    GList *m;

    for (d = blkdebug_sections[section].opts; d->name; d++) {
        JsonNode *node = json_object_get_member(o, d->name);

        if (blkdebug_node_is_scalar(node) &&
            !blkdebug_check_opt(o, d, errp)) {
            return false;
        }
    }

    members = json_object_get_members(o);
    for (m = members; m; m = m->next) {
        const char *name = m->data;
        JsonNode *node = json_object_get_member(o, name);

        if (!blkdebug_find_opt(section, name) ||
            !blkdebug_node_is_scalar(node)) {
            g_autoptr(JsonObject) one = json_object_new();
            g_autofree char *path = NULL;

            /* Name a nested value by the path to its first leaf. */
            json_object_set_member(one, name, json_node_copy(node));
            path = keyval_find_unknown(one, NULL);
            error_setg(errp, "[%s] section doesn't support the option '%s'",
                       blkdebug_sections[section].name, path);
            return false;
        }
    }
    return true;
}

/* Collect the rules of inline option @section (an array of objects). */
static bool blkdebug_collect_inline(JsonObject *options,
                                    BlkdebugSection section,
                                    GPtrArray *specs, GError **errp)
{
    const char *name = blkdebug_sections[section].name;
    JsonNode *node = json_object_get_member(options, name);
    JsonArray *array;
    guint i;

    if (!node || JSON_NODE_HOLDS_NULL(node)) {
        return true;
    }
    if (JSON_NODE_HOLDS_OBJECT(node)) {
        /* "inject-error.event=x" without an index: a single rule. */
        JsonObject *o = json_node_get_object(node);

        if (!blkdebug_check_inline_rule(section, o, errp)) {
            return false;
        }
        g_ptr_array_add(specs, blkdebug_rule_spec_new(section, o));
        return true;
    }
    if (!JSON_NODE_HOLDS_ARRAY(node)) {
        error_setg(errp, "Block protocol 'blkdebug' doesn't support the "
                   "option '%s'", name);
        return false;
    }

    array = json_node_get_array(node);
    for (i = 0; i < json_array_get_length(array); i++) {
        JsonNode *elem = json_array_get_element(array, i);
        JsonObject *o;

        if (!JSON_NODE_HOLDS_OBJECT(elem)) {
            error_setg(errp, "[%s] section (index %u) does not consist of "
                       "keys", name, i);
            return false;
        }
        o = json_node_get_object(elem);
        if (!blkdebug_check_inline_rule(section, o, errp)) {
            return false;
        }
        g_ptr_array_add(specs, blkdebug_rule_spec_new(section, o));
    }
    return true;
}

/* ---- The config file ---- */

static const char *blkdebug_skip_space(const char *p)
{
    while (*p && g_ascii_isspace(*p)) {
        p++;
    }
    return p;
}

/*
 * A section header: "[NAME]" or "[NAME "ID"]" (the id is ignored).
 * Returns the name.
 */
static char *blkdebug_config_group(const char *line)
{
    const char *p = line + 1;
    const char *end = p;
    const char *q;

    /* The quoted-id form: NAME, blanks, "ID", ']'. */
    while (*end && !g_ascii_isspace(*end)) {
        end++;
    }
    q = blkdebug_skip_space(end);
    if (end > p && *q == '"') {
        const char *close = strchr(q + 1, '"');

        if (close && close > q + 1 && close[1] == ']') {
            return g_strndup(p, end - p);
        }
    }

    /* Otherwise everything up to ']'. */
    end = strchr(p, ']');
    return end ? g_strndup(p, end - p) : g_strdup(p);
}

/*
 * One "name = "value"" line.  As in QEMU, a name followed by anything
 * else sets the option to the empty string.  Returns false for a line
 * of nothing but blanks.
 */
static bool blkdebug_config_pair(const char *line, char **name,
                                 char **value)
{
    const char *p = blkdebug_skip_space(line);
    const char *start = p;

    if (!*p) {
        return false;
    }
    while (*p && !g_ascii_isspace(*p)) {
        p++;
    }
    *name = g_strndup(start, p - start);

    p = blkdebug_skip_space(p);
    if (*p == '=') {
        p = blkdebug_skip_space(p + 1);
        if (*p == '"') {
            const char *close = strchr(p + 1, '"');

            *value = close ? g_strndup(p + 1, close - p - 1) : g_strdup(p + 1);
            return true;
        }
    }
    *value = g_strdup("");
    return true;
}

static bool blkdebug_config_line(const char *line, GPtrArray *specs,
                                 BlkdebugRuleSpec **cur, GError **errp)
{
    g_autofree char *name = NULL;
    g_autofree char *value = NULL;
    const BlkdebugOptDesc *d;
    int i;

    if (line[0] == '\0' || line[0] == '#') {
        return true;
    }

    if (line[0] == '[') {
        g_autofree char *group = blkdebug_config_group(line);

        for (i = 0; i < BLKDEBUG_SECTION__MAX; i++) {
            if (strcmp(group, blkdebug_sections[i].name) == 0) {
                *cur = blkdebug_rule_spec_new(i, NULL);
                g_ptr_array_add(specs, *cur);
                return true;
            }
        }
        error_setg(errp, "There is no option group '%s'", group);
        return false;
    }

    if (!blkdebug_config_pair(line, &name, &value)) {
        error_setg(errp, "parse error");
        return false;
    }
    if (!*cur) {
        error_setg(errp, "no group defined");
        return false;
    }
    d = blkdebug_find_opt((*cur)->section, name);
    if (!d) {
        error_setg(errp, "Invalid parameter '%s'", name);
        return false;
    }
    json_object_set_string_member((*cur)->opts, name, value);
    return blkdebug_check_opt((*cur)->opts, d, errp);
}

static bool blkdebug_read_config(const char *filename, GPtrArray *specs,
                                 GError **errp)
{
    BlkdebugRuleSpec *cur = NULL;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    bool ok = true;
    FILE *f;

    f = fopen(filename, "r");
    if (!f) {
        error_setg_errno(errp, errno, "Could not read blkdebug config file");
        return false;
    }
    while (ok && (len = getline(&line, &cap, f)) != -1) {
        if (len > 0 && line[len - 1] == '\n') {
            line[len - 1] = '\0';
        }
        ok = blkdebug_config_line(line, specs, &cur, errp);
    }
    if (ok && ferror(f)) {
        error_setg_errno(errp, EIO, "Could not read blkdebug config file");
        ok = false;
    }
    free(line);
    fclose(f);
    return ok;
}

/* ---- Rules ---- */

static void blkdebug_rule_free(BlkdebugRule *rule)
{
    if (rule->action == BLKDEBUG_ACTION_SUSPEND) {
        g_free(rule->suspend.tag);
    }
    g_free(rule);
}

/* Unlink and free @rule.  s->lock held (or the node not yet shared). */
static void blkdebug_remove_rule(BDRVBlkdebugState *s, BlkdebugRule *rule)
{
    QTAILQ_REMOVE(&s->rules[rule->event], rule, next);
    g_ptr_array_remove(s->active, rule);
    blkdebug_rule_free(rule);
}

static bool blkdebug_get_iotype(JsonObject *o, unsigned int *mask,
                                GError **errp)
{
    g_autofree char *str = NULL;
    int i;

    if (!keyval_get_str(o, "iotype", NULL, &str, errp)) {
        return false;
    }
    if (!str) {
        *mask = BLKDEBUG_IOTYPE_DEFAULT_MASK;
        return true;
    }
    for (i = 0; i < BLKDEBUG_IO_TYPE__MAX; i++) {
        if (strcmp(str, blkdebug_iotype_names[i]) == 0) {
            *mask = 1u << i;
            return true;
        }
    }
    error_setg(errp, "invalid parameter value: %s", str);
    return false;
}

/* Turn @spec into a rule of @s. */
static bool blkdebug_add_rule(BDRVBlkdebugState *s, BlkdebugRuleSpec *spec,
                              GError **errp)
{
    JsonObject *o = spec->opts;
    g_autofree char *event_name = NULL;
    g_autofree BlkdebugRule *rule = g_new0(BlkdebugRule, 1);
    uint64_t state, num;
    int event;

    if (!keyval_get_str(o, "event", NULL, &event_name, errp)) {
        return false;
    }
    if (!event_name) {
        error_setg(errp, "Missing event name for rule");
        return false;
    }
    event = blkdebug_event_lookup(event_name);
    if (event < 0) {
        error_setg(errp, "invalid parameter value: %s", event_name);
        return false;
    }
    /* Like QEMU, numbers wrap: "-1" is a state no rule reaches. */
    if (!keyval_get_uint(o, "state", 0, &state, errp)) {
        return false;
    }
    rule->event = event;
    rule->state = (int64_t)state;

    if (spec->section == BLKDEBUG_SECTION_INJECT_ERROR) {
        int64_t sector;

        rule->action = BLKDEBUG_ACTION_INJECT_ERROR;
        if (!blkdebug_get_iotype(o, &rule->inject.iotype_mask, errp) ||
            !keyval_get_uint(o, "errno", EIO, &num, errp)) {
            return false;
        }
        /* QEMU keeps errno in an int, dropping the high bits. */
        rule->inject.error = (int)(uint32_t)num;
        if (!keyval_get_uint(o, "sector", UINT64_MAX, &num, errp) ||
            !keyval_get_bool(o, "once", false, &rule->inject.once, errp) ||
            !keyval_get_bool(o, "immediately", false,
                             &rule->inject.immediately, errp)) {
            return false;
        }
        sector = (int64_t)num;
        if (sector == -1) {
            rule->inject.offset = -1;
        } else if (sector < 0 ||
                   sector > BDRV_MAX_LENGTH / BLKDEBUG_SECTOR_SIZE) {
            rule->inject.offset = BLKDEBUG_NO_OFFSET;
        } else {
            rule->inject.offset = sector * BLKDEBUG_SECTOR_SIZE;
        }
    } else {
        rule->action = BLKDEBUG_ACTION_SET_STATE;
        if (!keyval_get_uint(o, "new_state", 0, &num, errp)) {
            return false;
        }
        rule->set_state.new_state = (int64_t)num;
    }

    QTAILQ_INSERT_TAIL(&s->rules[event], rule, next);
    rule = NULL;
    return true;
}

/* ---- Open and close ---- */

static bool blkdebug_get_perms(JsonObject *options, const char *name,
                               uint64_t *perms, GError **errp)
{
    JsonNode *node = json_object_get_member(options, name);
    JsonArray *array;
    guint i;

    *perms = 0;
    if (!node || JSON_NODE_HOLDS_NULL(node)) {
        return true;
    }
    if (!JSON_NODE_HOLDS_ARRAY(node)) {
        error_setg(errp, "Block protocol 'blkdebug' doesn't support the "
                   "option '%s'", name);
        return false;
    }
    array = json_node_get_array(node);
    for (i = 0; i < json_array_get_length(array); i++) {
        JsonNode *elem = json_array_get_element(array, i);
        const char *str = NULL;
        size_t j;

        if (JSON_NODE_HOLDS_VALUE(elem) &&
            json_node_get_value_type(elem) == G_TYPE_STRING) {
            str = json_node_get_string(elem);
        }
        for (j = 0; str && j < G_N_ELEMENTS(blkdebug_perm_names); j++) {
            if (strcmp(str, blkdebug_perm_names[j].name) == 0) {
                *perms |= blkdebug_perm_names[j].perm;
                break;
            }
        }
        if (!str || j == G_N_ELEMENTS(blkdebug_perm_names)) {
            /* QEMU 7.2's text, 'null' included. */
            error_setg(errp, "Parameter 'null' does not accept value '%s'",
                       str ? str : "");
            return false;
        }
    }
    return true;
}

/* A limit must be below INT_MAX and a multiple of @unit (if non-zero). */
static bool blkdebug_check_limit(const char *name, uint64_t value,
                                 uint64_t unit, GError **errp)
{
    if (value && (value >= INT_MAX || value % MAX(unit, 1))) {
        error_setg(errp, "Cannot meet constraints with %s %" PRIu64, name,
                   value);
        return false;
    }
    return true;
}

static bool blkdebug_check_limits(BDRVBlkdebugState *s, GError **errp)
{
    if (s->align && (s->align >= INT_MAX || !is_power_of_2(s->align))) {
        error_setg(errp, "Cannot meet constraints with align %" PRIu64,
                   s->align);
        return false;
    }
    return blkdebug_check_limit("max-transfer", s->max_transfer, s->align,
                                errp) &&
           blkdebug_check_limit("opt-write-zero", s->opt_write_zero,
                                s->align, errp) &&
           blkdebug_check_limit("max-write-zero", s->max_write_zero,
                                MAX(s->opt_write_zero, s->align), errp) &&
           blkdebug_check_limit("opt-discard", s->opt_discard, s->align,
                                errp) &&
           blkdebug_check_limit("max-discard", s->max_discard,
                                MAX(s->opt_discard, s->align), errp);
}

static void blkdebug_free_rules(BDRVBlkdebugState *s)
{
    int i;

    for (i = 0; i < BLKDBG__MAX; i++) {
        BlkdebugRule *rule, *tmp;

        QTAILQ_FOREACH_SAFE(rule, &s->rules[i], next, tmp) {
            blkdebug_remove_rule(s, rule);
        }
    }
}

static void blkdebug_state_destroy(BDRVBlkdebugState *s)
{
    blkdebug_free_rules(s);
    g_ptr_array_unref(s->active);
    g_mutex_clear(&s->lock);
}

static int blkdebug_open(BlockDriverState *bs, JsonObject *options,
                         int flags, GError **errp)
{
    BDRVBlkdebugState *s = bs->opaque;
    g_autoptr(GPtrArray) specs =
        g_ptr_array_new_with_free_func(blkdebug_rule_spec_free);
    g_autofree char *config = NULL;
    BdrvChild *image;
    guint i;
    int j;

    g_mutex_init(&s->lock);
    s->state = 1;
    s->active = g_ptr_array_new();
    for (j = 0; j < BLKDBG__MAX; j++) {
        QTAILQ_INIT(&s->rules[j]);
    }
    QLIST_INIT(&s->suspended);

    /* The order of the checks is QEMU's, so the first error matches. */
    if (!keyval_get_str(options, "config", NULL, &config, errp) ||
        !keyval_get_size(options, "align", 0, &s->align, errp) ||
        !keyval_get_size(options, "max-transfer", 0, &s->max_transfer,
                         errp) ||
        !keyval_get_size(options, "opt-write-zero", 0, &s->opt_write_zero,
                         errp) ||
        !keyval_get_size(options, "max-write-zero", 0, &s->max_write_zero,
                         errp) ||
        !keyval_get_size(options, "opt-discard", 0, &s->opt_discard,
                         errp) ||
        !keyval_get_size(options, "max-discard", 0, &s->max_discard,
                         errp)) {
        goto fail;
    }

    /* Rules from the file come first, so they win over inline ones. */
    if (config && !blkdebug_read_config(config, specs, errp)) {
        goto fail;
    }
    if (!blkdebug_collect_inline(options, BLKDEBUG_SECTION_INJECT_ERROR,
                                 specs, errp) ||
        !blkdebug_collect_inline(options, BLKDEBUG_SECTION_SET_STATE,
                                 specs, errp)) {
        goto fail;
    }
    for (i = 0; i < specs->len; i++) {
        if (!blkdebug_add_rule(s, g_ptr_array_index(specs, i), errp)) {
            goto fail;
        }
    }

    if (!blkdebug_get_perms(options, "take-child-perms", &s->take_perms,
                            errp) ||
        !blkdebug_get_perms(options, "unshare-child-perms",
                            &s->unshare_perms, errp)) {
        goto fail;
    }

    image = bdrv_open_child(bs, options, "image",
                            BDRV_CHILD_FILTERED | BDRV_CHILD_PRIMARY, false,
                            errp);
    if (!image) {
        goto fail;
    }
    /* QEMU names the edge "image" but uses it as the node's file. */
    bs->file = image;

    if (!blkdebug_check_limits(s, errp)) {
        /* The core frees a node whose open failed without closing it. */
        bdrv_unref_child(bs, image);
        goto fail;
    }
    return 0;

fail:
    blkdebug_state_destroy(s);
    return -EINVAL;
}

static void blkdebug_close(BlockDriverState *bs)
{
    BDRVBlkdebugState *s = bs->opaque;

    /* Drained: a suspended request would still be in flight. */
    assert(QLIST_EMPTY(&s->suspended));
    blkdebug_state_destroy(s);
}

static void blkdebug_refresh_limits(BlockDriverState *bs, GError **errp)
{
    BDRVBlkdebugState *s = bs->opaque;
    BlockDriverState *child = bs->file->bs;

    /* A filter's requests are its child's: start from its limits. */
    bs->bl.request_alignment = MAX(bs->bl.request_alignment,
                                   child->bl.request_alignment);
    bs->bl.max_transfer = child->bl.max_transfer;
    bs->bl.pwrite_zeroes_alignment = child->bl.pwrite_zeroes_alignment;
    bs->bl.pdiscard_alignment = child->bl.pdiscard_alignment;
    bs->bl.max_pwrite_zeroes = child->bl.max_pwrite_zeroes;

    if (s->align) {
        bs->bl.request_alignment = s->align;
    }
    if (s->max_transfer) {
        bs->bl.max_transfer = s->max_transfer;
    }
    if (s->opt_write_zero) {
        bs->bl.pwrite_zeroes_alignment = s->opt_write_zero;
    }
    if (s->max_write_zero) {
        bs->bl.max_pwrite_zeroes = s->max_write_zero;
    }
    if (s->opt_discard) {
        bs->bl.pdiscard_alignment = s->opt_discard;
    }
}

static void blkdebug_child_perm(BlockDriverState *bs, BdrvChild *c,
                                unsigned int role, uint64_t parent_perm,
                                uint64_t parent_shared, uint64_t *nperm,
                                uint64_t *nshared)
{
    BDRVBlkdebugState *s = bs->opaque;

    bdrv_default_perms(bs, c, role, parent_perm, parent_shared, nperm,
                       nshared);
    *nperm |= s->take_perms;
    *nshared &= ~s->unshare_perms;
}

/* ---- Events and breakpoints ---- */

void coroutine_fn bdrv_debug_event(BlockDriverState *bs,
                                   BlkdebugEvent event)
{
    BDRVBlkdebugState *s;
    BlkdebugWaiter waiter = { 0 };
    BlkdebugRule *rule, *tmp;
    bool in_co = qemu_in_coroutine();
    bool reset_active = false;
    int64_t new_state;

    if (!bs || bs->drv != &bdrv_blkdebug) {
        return;
    }
    assert((unsigned int)event < BLKDBG__MAX);
    s = bs->opaque;

    g_mutex_lock(&s->lock);
    new_state = s->state;
    QTAILQ_FOREACH_SAFE(rule, &s->rules[event], next, tmp) {
        if (rule->state && rule->state != s->state) {
            continue;
        }
        switch (rule->action) {
        case BLKDEBUG_ACTION_INJECT_ERROR:
            /* This event's rules replace those of the previous one. */
            if (!reset_active) {
                g_ptr_array_set_size(s->active, 0);
                reset_active = true;
            }
            g_ptr_array_add(s->active, rule);
            break;
        case BLKDEBUG_ACTION_SET_STATE:
            new_state = rule->set_state.new_state;
            break;
        case BLKDEBUG_ACTION_SUSPEND:
            /* Only a coroutine can wait; a breakpoint stays for one. */
            if (in_co) {
                BlkdebugSuspended *sus = g_new0(BlkdebugSuspended, 1);

                sus->tag = g_steal_pointer(&rule->suspend.tag);
                sus->waiter = &waiter;
                QLIST_INSERT_HEAD(&s->suspended, sus, next);
                waiter.pending++;
                blkdebug_print("Suspended", sus->tag);
                blkdebug_remove_rule(s, rule);
            }
            break;
        }
    }
    s->state = new_state;

    if (waiter.pending) {
        waiter.co = qemu_coroutine_self();
        g_mutex_unlock(&s->lock);
        /* The last resume wakes us exactly once. */
        qemu_coroutine_yield();
        g_mutex_lock(&s->lock);
        assert(waiter.pending == 0);
    }
    g_mutex_unlock(&s->lock);
}

/* The first blkdebug node from @bs down through "file" children. */
static BlockDriverState *blkdebug_find(BlockDriverState *bs)
{
    while (bs && bs->drv != &bdrv_blkdebug) {
        bs = bs->file ? bs->file->bs : NULL;
    }
    return bs;
}

int blkdebug_debug_breakpoint(BlockDriverState *bs, const char *event,
                              const char *tag)
{
    BDRVBlkdebugState *s;
    BlkdebugRule *rule;
    int ev;

    bs = blkdebug_find(bs);
    if (!bs) {
        return -ENOTSUP;
    }
    ev = blkdebug_event_lookup(event);
    if (ev < 0) {
        return -ENOENT;
    }
    s = bs->opaque;

    rule = g_new0(BlkdebugRule, 1);
    rule->event = ev;
    rule->action = BLKDEBUG_ACTION_SUSPEND;
    rule->suspend.tag = g_strdup(tag);

    /* The newest breakpoint on an event fires first, as in QEMU. */
    g_mutex_lock(&s->lock);
    QTAILQ_INSERT_HEAD(&s->rules[ev], rule, next);
    g_mutex_unlock(&s->lock);
    return 0;
}

/*
 * Take @sus off the list; returns its coroutine if that was the last
 * breakpoint it waited for.  s->lock held.
 */
static Coroutine *blkdebug_unsuspend(BlkdebugSuspended *sus)
{
    BlkdebugWaiter *w = sus->waiter;

    QLIST_REMOVE(sus, next);
    assert(w->pending > 0);
    return --w->pending == 0 ? w->co : NULL;
}

int blkdebug_debug_resume(BlockDriverState *bs, const char *tag)
{
    BDRVBlkdebugState *s;
    BlkdebugSuspended *sus;
    Coroutine *co = NULL;
    bool found = false;

    bs = blkdebug_find(bs);
    if (!bs) {
        return -ENOTSUP;
    }
    s = bs->opaque;

    g_mutex_lock(&s->lock);
    QLIST_FOREACH(sus, &s->suspended, next) {
        if (strcmp(sus->tag, tag) == 0) {
            co = blkdebug_unsuspend(sus);
            found = true;
            break;
        }
    }
    g_mutex_unlock(&s->lock);

    if (!found) {
        return -ENOENT;
    }
    blkdebug_print("Resuming", sus->tag);
    g_free(sus->tag);
    g_free(sus);
    if (co) {
        aio_co_wake(co);
    }
    return 0;
}

int blkdebug_debug_remove_breakpoint(BlockDriverState *bs, const char *tag)
{
    BDRVBlkdebugState *s;
    BlkdebugSuspended *sus, *next_sus;
    g_autoptr(GPtrArray) wake = g_ptr_array_new();
    g_autoptr(GPtrArray) resumed = g_ptr_array_new();
    bool found = false;
    guint i;
    int ev;

    bs = blkdebug_find(bs);
    if (!bs) {
        return -ENOTSUP;
    }
    s = bs->opaque;

    g_mutex_lock(&s->lock);
    for (ev = 0; ev < BLKDBG__MAX; ev++) {
        BlkdebugRule *rule, *tmp;

        QTAILQ_FOREACH_SAFE(rule, &s->rules[ev], next, tmp) {
            if (rule->action == BLKDEBUG_ACTION_SUSPEND &&
                strcmp(rule->suspend.tag, tag) == 0) {
                blkdebug_remove_rule(s, rule);
                found = true;
            }
        }
    }
    QLIST_FOREACH_SAFE(sus, &s->suspended, next, next_sus) {
        if (strcmp(sus->tag, tag) == 0) {
            Coroutine *co = blkdebug_unsuspend(sus);

            g_ptr_array_add(resumed, sus);
            if (co) {
                g_ptr_array_add(wake, co);
            }
        }
    }
    g_mutex_unlock(&s->lock);

    for (i = 0; i < resumed->len; i++) {
        sus = g_ptr_array_index(resumed, i);
        blkdebug_print("Resuming", sus->tag);
        g_free(sus->tag);
        g_free(sus);
    }
    for (i = 0; i < wake->len; i++) {
        aio_co_wake(g_ptr_array_index(wake, i));
    }
    return found ? 0 : -ENOENT;
}

bool blkdebug_debug_is_suspended(BlockDriverState *bs, const char *tag)
{
    BDRVBlkdebugState *s;
    BlkdebugSuspended *sus;
    bool found = false;

    bs = blkdebug_find(bs);
    if (!bs) {
        return false;
    }
    s = bs->opaque;

    g_mutex_lock(&s->lock);
    QLIST_FOREACH(sus, &s->suspended, next) {
        if (strcmp(sus->tag, tag) == 0) {
            found = true;
            break;
        }
    }
    g_mutex_unlock(&s->lock);
    return found;
}

/* ---- Requests ---- */

static void blkdebug_wake_bh(void *opaque)
{
    aio_co_wake(opaque);
}

/*
 * The error the active rules inject into a request of @iotype on
 * [offset, offset + bytes), or 0.  A rule that names a sector covers a
 * request that contains the sector's first byte.
 */
static int coroutine_fn blkdebug_rule_check(BlockDriverState *bs,
                                            int64_t offset, int64_t bytes,
                                            BlkdebugIOType iotype)
{
    BDRVBlkdebugState *s = bs->opaque;
    BlkdebugRule *rule = NULL;
    bool immediately;
    int error;
    guint i;

    g_mutex_lock(&s->lock);
    for (i = 0; i < s->active->len; i++) {
        BlkdebugRule *r = g_ptr_array_index(s->active, i);
        int64_t at = r->inject.offset;

        if (!(r->inject.iotype_mask & (1u << iotype))) {
            continue;
        }
        if (at != -1 && !(bytes && at >= offset && at - offset < bytes)) {
            continue;
        }
        rule = r;
        break;
    }
    if (!rule || rule->inject.error <= 0) {
        g_mutex_unlock(&s->lock);
        return 0;
    }
    error = rule->inject.error;
    immediately = rule->inject.immediately;
    if (rule->inject.once) {
        blkdebug_remove_rule(s, rule);
    }
    g_mutex_unlock(&s->lock);

    if (!immediately) {
        /* Fail from the event loop, as a real completion would. */
        aio_bh_schedule_oneshot(bdrv_get_aio_context(bs), blkdebug_wake_bh,
                                qemu_coroutine_self());
        qemu_coroutine_yield();
    }
    return -error;
}

/* The block layer promised this; blkdebug exists to catch it lying. */
static void blkdebug_assert_aligned(BlockDriverState *bs, int64_t offset,
                                    int64_t bytes)
{
    assert(QEMU_IS_ALIGNED(offset, bs->bl.request_alignment));
    assert(QEMU_IS_ALIGNED(bytes, bs->bl.request_alignment));
    if (bs->bl.max_transfer) {
        assert(bytes <= (int64_t)bs->bl.max_transfer);
    }
}

static int coroutine_fn blkdebug_co_preadv(BlockDriverState *bs,
                                           int64_t offset, int64_t bytes,
                                           QEMUIOVector *qiov,
                                           BdrvRequestFlags flags)
{
    int ret;

    blkdebug_assert_aligned(bs, offset, bytes);
    ret = blkdebug_rule_check(bs, offset, bytes, BLKDEBUG_IO_TYPE_READ);
    if (ret < 0) {
        return ret;
    }
    return bdrv_co_preadv(bs->file, offset, bytes, qiov, flags);
}

/* block/io.c raises the pwritev events around this, as QEMU's does. */
static int coroutine_fn blkdebug_co_pwritev(BlockDriverState *bs,
                                            int64_t offset, int64_t bytes,
                                            QEMUIOVector *qiov,
                                            BdrvRequestFlags flags)
{
    int ret;

    blkdebug_assert_aligned(bs, offset, bytes);
    ret = blkdebug_rule_check(bs, offset, bytes, BLKDEBUG_IO_TYPE_WRITE);
    if (ret == 0) {
        ret = bdrv_co_pwritev(bs->file, offset, bytes, qiov, flags);
    }
    return ret;
}

static int coroutine_fn blkdebug_co_pwrite_zeroes(BlockDriverState *bs,
                                                  int64_t offset,
                                                  int64_t bytes,
                                                  BdrvRequestFlags flags)
{
    BDRVBlkdebugState *s = bs->opaque;
    uint32_t align = MAX(bs->bl.request_alignment,
                         bs->bl.pwrite_zeroes_alignment);
    uint64_t max = s->max_write_zero ?: BDRV_REQUEST_MAX_BYTES;
    int64_t done = 0;
    int ret;

    /*
     * Leave what is not aligned to opt-write-zero to the block layer's
     * fallback, so that tests reach it.
     */
    if (offset % align || bytes % align) {
        return -ENOTSUP;
    }
    bdrv_debug_event(bs, BLKDBG_PWRITEV_ZERO);
    ret = blkdebug_rule_check(bs, offset, bytes,
                              BLKDEBUG_IO_TYPE_WRITE_ZEROES);
    max = MAX(QEMU_ALIGN_DOWN(MIN(max, (uint64_t)BDRV_REQUEST_MAX_BYTES),
                              align), align);
    while (ret == 0 && done < bytes) {
        int64_t chunk = MIN((uint64_t)(bytes - done), max);

        ret = bdrv_co_pwrite_zeroes(bs->file, offset + done, chunk, flags);
        done += chunk;
    }
    bdrv_debug_event(bs, BLKDBG_PWRITEV_DONE);
    return ret;
}

static int coroutine_fn blkdebug_co_pdiscard(BlockDriverState *bs,
                                             int64_t offset, int64_t bytes)
{
    BDRVBlkdebugState *s = bs->opaque;
    uint64_t align = MAX(bs->bl.request_alignment,
                         bs->bl.pdiscard_alignment);
    uint64_t max = s->max_discard ?: BDRV_REQUEST_MAX_BYTES;
    int64_t done = 0;
    int ret;

    ret = blkdebug_rule_check(bs, offset, bytes, BLKDEBUG_IO_TYPE_DISCARD);
    /* The core has no max-discard: split here. */
    max = MAX(QEMU_ALIGN_DOWN(MIN(max, (uint64_t)BDRV_REQUEST_MAX_BYTES),
                              align), align);
    while (ret == 0 && done < bytes) {
        int64_t chunk = MIN((uint64_t)(bytes - done), max);

        ret = bdrv_co_pdiscard(bs->file, offset + done, chunk);
        done += chunk;
    }
    return ret;
}

/* The block layer flushes the child afterwards. */
static int coroutine_fn blkdebug_co_flush_to_disk(BlockDriverState *bs)
{
    return blkdebug_rule_check(bs, 0, 0, BLKDEBUG_IO_TYPE_FLUSH);
}

static int64_t coroutine_fn blkdebug_co_getlength(BlockDriverState *bs)
{
    return bdrv_co_getlength(bs->file->bs);
}

static int coroutine_fn blkdebug_co_block_status(BlockDriverState *bs,
                                                 int64_t offset,
                                                 int64_t bytes,
                                                 int64_t *pnum,
                                                 int64_t *map,
                                                 BlockDriverState **file)
{
    int ret;

    ret = blkdebug_rule_check(bs, offset, bytes,
                              BLKDEBUG_IO_TYPE_BLOCK_STATUS);
    if (ret < 0) {
        return ret;
    }
    /* A filter reports its child's status of the same bytes. */
    ret = bdrv_co_block_status(bs->file->bs, offset, bytes, pnum, map,
                               file);
    if (ret < 0) {
        return ret;
    }
    if (*pnum == 0) {
        return -EIO;
    }
    return ret & ~BDRV_BLOCK_EOF;
}

static int coroutine_fn blkdebug_co_truncate(BlockDriverState *bs,
                                             int64_t offset, bool exact,
                                             PreallocMode prealloc,
                                             BdrvRequestFlags flags,
                                             GError **errp)
{
    return bdrv_co_truncate(bs->file, offset, exact, prealloc, flags, errp);
}

/* What its child says, as QEMU's blkdebug does. */
static int coroutine_fn blkdebug_co_get_info(BlockDriverState *bs,
                                             BlockDriverInfo *bdi)
{
    return bdrv_co_get_info(bs->file->bs, bdi);
}

static BlockDriver bdrv_blkdebug = {
    .format_name = "blkdebug",
    .instance_size = sizeof(BDRVBlkdebugState),
    /* QEMU's blkdebug is a protocol ("blkdebug:" file names). */
    .is_protocol = true,
    .bdrv_open = blkdebug_open,
    .bdrv_close = blkdebug_close,
    .bdrv_refresh_limits = blkdebug_refresh_limits,
    .bdrv_child_perm = blkdebug_child_perm,
    .bdrv_co_preadv = blkdebug_co_preadv,
    .bdrv_co_pwritev = blkdebug_co_pwritev,
    .bdrv_co_pwrite_zeroes = blkdebug_co_pwrite_zeroes,
    .bdrv_co_pdiscard = blkdebug_co_pdiscard,
    .bdrv_co_flush_to_disk = blkdebug_co_flush_to_disk,
    .bdrv_co_getlength = blkdebug_co_getlength,
    .bdrv_co_block_status = blkdebug_co_block_status,
    .bdrv_co_truncate = blkdebug_co_truncate,
    .option_names = blkdebug_option_names,
    .bdrv_co_get_info = blkdebug_co_get_info,
};

static void __attribute__((constructor)) bdrv_blkdebug_init(void)
{
    bdrv_register(&bdrv_blkdebug);
}
