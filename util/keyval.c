/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The options model: dotted key=value syntax, json: filenames,
 * flattening, typed getters and the unknown-option check.
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * Messages follow QEMU 7.2 word for word, because users and test
 * suites compare them; see include/qemu/keyval.h for the contracts.
 */
#include "qemu/osdep.h"
#include "qemu/keyval.h"

/* ---- Small helpers ---- */

/*
 * A private copy of @obj's member names.  json-glib hands out its own
 * key strings and frees them when a member is replaced, so loops that
 * replace members must not hold on to those.
 */
static char **keyval_member_names(JsonObject *obj)
{
    GList *members = json_object_get_members(obj);
    char **names = g_new0(char *, g_list_length(members) + 1);
    GList *l;
    size_t i = 0;

    for (l = members; l; l = l->next) {
        names[i++] = g_strdup(l->data);
    }
    g_list_free(members);
    return names;
}

/* True if @s is one or more decimal digits. */
static bool keyval_is_index(const char *s, size_t len)
{
    size_t i;

    if (len == 0) {
        return false;
    }
    for (i = 0; i < len; i++) {
        if (!g_ascii_isdigit(s[i])) {
            return false;
        }
    }
    return true;
}

/* The value of index @s; huge indexes saturate, they only mean "gap". */
static uint64_t keyval_index_value(const char *s)
{
    uint64_t v = 0;

    for (; *s; s++) {
        unsigned d = *s - '0';

        if (v > (UINT64_MAX - d) / 10) {
            return UINT64_MAX;
        }
        v = v * 10 + d;
    }
    return v;
}

static bool keyval_node_is_container(JsonNode *node)
{
    return JSON_NODE_HOLDS_OBJECT(node) || JSON_NODE_HOLDS_ARRAY(node);
}

static bool keyval_node_is_empty_container(JsonNode *node)
{
    if (JSON_NODE_HOLDS_OBJECT(node)) {
        return json_object_get_size(json_node_get_object(node)) == 0;
    }
    if (JSON_NODE_HOLDS_ARRAY(node)) {
        return json_array_get_length(json_node_get_array(node)) == 0;
    }
    return false;
}

/* A node that takes over our reference to @array (init_array adds one). */
static JsonNode *keyval_node_take_array(JsonArray *array)
{
    JsonNode *node = json_node_new(JSON_NODE_ARRAY);

    json_node_take_array(node, array);
    return node;
}

/*
 * A copy of @node that shares nothing with it; json_node_copy() shares
 * objects and arrays, and callers may go on to modify either side.
 */
static JsonNode *keyval_node_deep_copy(JsonNode *node)
{
    if (JSON_NODE_HOLDS_OBJECT(node)) {
        JsonObject *src = json_node_get_object(node);
        JsonObject *copy = json_object_new();
        GList *members = json_object_get_members(src);
        GList *l;
        JsonNode *ret;

        for (l = members; l; l = l->next) {
            json_object_set_member(copy, l->data,
                keyval_node_deep_copy(json_object_get_member(src, l->data)));
        }
        g_list_free(members);
        ret = json_node_new(JSON_NODE_OBJECT);
        json_node_take_object(ret, copy);
        return ret;
    }
    if (JSON_NODE_HOLDS_ARRAY(node)) {
        JsonArray *src = json_node_get_array(node);
        JsonArray *copy = json_array_new();
        guint i;

        for (i = 0; i < json_array_get_length(src); i++) {
            json_array_add_element(copy,
                keyval_node_deep_copy(json_array_get_element(src, i)));
        }
        return keyval_node_take_array(copy);
    }
    return json_node_copy(node);
}

static char *keyval_join(const char *prefix, const char *name)
{
    if (!prefix) {
        return g_strdup(name);
    }
    return g_strconcat(prefix, ".", name, NULL);
}

/* ---- keyval_parse ---- */

/*
 * Check the key @key[0..@len).  The fragment scan stops at the first
 * character that cannot continue the fragment; anything but a '.' or
 * the end of the key there makes the whole key invalid.
 */
static bool keyval_check_key(const char *key, size_t len, GError **errp)
{
    const char *end = key + len;
    const char *p = key;
    bool single = memchr(key, '.', len) == NULL;
    bool top = true;

    for (;;) {
        size_t n = 0;

        if (p < end && g_ascii_isalpha(*p)) {
            while (p + n < end && (g_ascii_isalnum(p[n]) || p[n] == '-' ||
                                   p[n] == '_')) {
                n++;
            }
        } else if (!top && p < end && g_ascii_isdigit(*p)) {
            while (p + n < end && g_ascii_isdigit(p[n])) {
                n++;
            }
        }
        if (n > KEYVAL_FRAGMENT_MAX) {
            if (single) {
                error_setg(errp, "Parameter '%.*s' is too long", (int)n, p);
            } else {
                error_setg(errp, "Parameter fragment '%.*s' is too long",
                           (int)n, p);
            }
            return false;
        }
        if (n == 0 || (p + n < end && p[n] != '.')) {
            error_setg(errp, "Invalid parameter '%.*s'", (int)len, key);
            return false;
        }
        if (p + n == end) {
            return true;
        }
        p += n + 1;
        top = false;
    }
}

/* Store @value under the dotted @key[0..@len) of @root. */
static bool keyval_insert(JsonObject *root, const char *key, size_t len,
                          const char *value, GError **errp)
{
    const char *end = key + len;
    const char *p = key;
    JsonObject *cur = root;

    for (;;) {
        const char *dot = memchr(p, '.', end - p);
        const char *frag_end = dot ? dot : end;
        g_autofree char *frag = g_strndup(p, frag_end - p);
        JsonNode *old = json_object_get_member(cur, frag);

        if (!dot) {
            if (old && JSON_NODE_HOLDS_OBJECT(old)) {
                error_setg(errp, "Parameters '%.*s.*' used inconsistently",
                           (int)len, key);
                return false;
            }
            /* A repeated key simply takes the newer value. */
            json_object_set_string_member(cur, frag, value);
            return true;
        }
        if (old && !JSON_NODE_HOLDS_OBJECT(old)) {
            error_setg(errp, "Parameters '%.*s.*' used inconsistently",
                       (int)(dot - key), key);
            return false;
        }
        if (!old) {
            JsonObject *child = json_object_new();

            json_object_set_object_member(cur, frag, child);
            cur = child;
        } else {
            cur = json_node_get_object(old);
        }
        p = dot + 1;
    }
}

/*
 * Turn the objects under @obj whose keys are all indexes into arrays,
 * innermost first.  @path names @obj in messages.  Returns a new node
 * holding @obj or the array made of it.
 */
static JsonNode *keyval_listify(JsonObject *obj, const char *path,
                                GError **errp)
{
    g_auto(GStrv) names = keyval_member_names(obj);
    size_t count = 0, n_index = 0, i;
    uint64_t max = 0;
    g_autofree JsonNode **slots = NULL;
    JsonArray *array;

    for (i = 0; names[i]; i++) {
        JsonNode *node = json_object_get_member(obj, names[i]);

        count++;
        if (keyval_is_index(names[i], strlen(names[i]))) {
            n_index++;
        }
        if (JSON_NODE_HOLDS_OBJECT(node)) {
            g_autofree char *sub = keyval_join(path, names[i]);
            JsonNode *conv = keyval_listify(json_node_get_object(node), sub,
                                            errp);

            if (!conv) {
                return NULL;
            }
            json_object_set_member(obj, names[i], conv);
        }
    }

    if (n_index == 0) {
        return json_node_init_object(json_node_alloc(), obj);
    }
    if (n_index != count) {
        error_setg(errp, "Parameters '%s.*' used inconsistently", path);
        return NULL;
    }

    /*
     * Only indexes below the member count can be part of a gap-free
     * array, so the slots never outnumber the members.
     */
    slots = g_new0(JsonNode *, count);
    for (i = 0; names[i]; i++) {
        uint64_t idx = keyval_index_value(names[i]);

        max = MAX(max, idx);
        if (idx < count) {
            slots[idx] = json_object_get_member(obj, names[i]);
        }
    }
    for (i = 0; i < count && (max >= count || i <= max); i++) {
        if (!slots[i]) {
            error_setg(errp, "Parameter '%s.%zu' missing", path, i);
            return NULL;
        }
    }
    array = json_array_new();
    for (i = 0; i <= max; i++) {
        json_array_add_element(array, json_node_ref(slots[i]));
    }
    return keyval_node_take_array(array);
}

JsonObject *keyval_parse(const char *params, const char *implied_key,
                         GError **errp)
{
    g_autoptr(JsonObject) root = json_object_new();
    g_autoptr(GString) value = g_string_new(NULL);
    const char *s = params;
    bool first = true;
    size_t i;

    while (*s) {
        size_t klen = strcspn(s, "=,");

        if (first && implied_key && *implied_key && klen > 0 &&
            s[klen] != '=') {
            /* The implied value stops at ',' or '=' and has no escapes. */
            g_autofree char *val = g_strndup(s, klen);

            if (!keyval_insert(root, implied_key, strlen(implied_key), val,
                               errp)) {
                return NULL;
            }
            s += klen;
        } else {
            const char *key = s;

            if (!keyval_check_key(key, klen, errp)) {
                return NULL;
            }
            if (s[klen] != '=') {
                error_setg(errp, "Expected '=' after parameter '%.*s'",
                           (int)klen, key);
                return NULL;
            }
            s += klen + 1;
            g_string_truncate(value, 0);
            for (;;) {
                if (*s == ',') {
                    if (s[1] != ',') {
                        break;
                    }
                    s++;
                } else if (!*s) {
                    break;
                }
                g_string_append_c(value, *s);
                s++;
            }
            if (!keyval_insert(root, key, klen, value->str, errp)) {
                return NULL;
            }
        }
        first = false;
        if (*s == ',') {
            s++;
        }
    }

    /* The top level is never an array: its keys cannot be indexes. */
    {
        g_auto(GStrv) names = keyval_member_names(root);

        for (i = 0; names[i]; i++) {
            JsonNode *node = json_object_get_member(root, names[i]);
            JsonNode *conv;

            if (!JSON_NODE_HOLDS_OBJECT(node)) {
                continue;
            }
            conv = keyval_listify(json_node_get_object(node), names[i],
                                  errp);
            if (!conv) {
                return NULL;
            }
            json_object_set_member(root, names[i], conv);
        }
    }
    return g_steal_pointer(&root);
}

/* ---- JSON parser ---- */

typedef enum JsonTokenType {
    JT_LCURLY,
    JT_RCURLY,
    JT_LSQUARE,
    JT_RSQUARE,
    JT_COLON,
    JT_COMMA,
    JT_STRING,
    JT_INTEGER,
    JT_FLOAT,
    JT_KEYWORD,
} JsonTokenType;

typedef struct JsonToken {
    JsonTokenType type;
    const char *text;
    size_t len;
} JsonToken;

typedef struct JsonParseCtx {
    JsonToken *tokens;
    size_t count;
    size_t pos;
    GError **errp;
} JsonParseCtx;

static bool json_is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* A lexer error: the text of the token so far, up to @bad inclusive. */
static int json_lex_stray(const char *start, const char *bad, GError **errp)
{
    size_t len = bad - start + (*bad ? 1 : 0);

    error_setg(errp, "JSON parse error, stray '%.*s'", (int)len, start);
    return -1;
}

/*
 * Scan one token at *@pp.  Returns 1 with @tok filled and *@pp moved
 * past it, 0 at the end of the input, or -1 with @errp set.
 */
static int json_lex(const char **pp, JsonToken *tok, GError **errp)
{
    const char *p = *pp;
    const char *start;
    unsigned char c;

    while (json_is_blank(*p)) {
        p++;
    }
    start = p;
    c = *p;
    if (!c) {
        *pp = p;
        return 0;
    }

    switch (c) {
    case '{':
        tok->type = JT_LCURLY;
        p++;
        break;
    case '}':
        tok->type = JT_RCURLY;
        p++;
        break;
    case '[':
        tok->type = JT_LSQUARE;
        p++;
        break;
    case ']':
        tok->type = JT_RSQUARE;
        p++;
        break;
    case ':':
        tok->type = JT_COLON;
        p++;
        break;
    case ',':
        tok->type = JT_COMMA;
        p++;
        break;
    case '"':
    case '\'':
        /* Escapes are checked by the parser; the lexer only skips them. */
        for (p++; *p != (char)c; p++) {
            unsigned char d = *p;

            if (!d) {
                return json_lex_stray(start, p, errp);
            }
            if (d == '\\') {
                p++;
                d = *p;
                if (!d) {
                    return json_lex_stray(start, p, errp);
                }
            }
            if (d < 0x20 || d >= 0xfe) {
                return json_lex_stray(start, p, errp);
            }
        }
        p++;
        tok->type = JT_STRING;
        break;
    default:
        if (c == '-' || g_ascii_isdigit(c)) {
            bool is_float = false;

            if (*p == '-') {
                p++;
            }
            if (*p == '0') {
                p++;
                if (g_ascii_isdigit(*p)) {
                    return json_lex_stray(start, p, errp);
                }
            } else if (g_ascii_isdigit(*p)) {
                while (g_ascii_isdigit(*p)) {
                    p++;
                }
            } else {
                return json_lex_stray(start, p, errp);
            }
            if (*p == '.') {
                is_float = true;
                p++;
                if (!g_ascii_isdigit(*p)) {
                    return json_lex_stray(start, p, errp);
                }
                while (g_ascii_isdigit(*p)) {
                    p++;
                }
            }
            if (*p == 'e' || *p == 'E') {
                is_float = true;
                p++;
                if (*p == '+' || *p == '-') {
                    p++;
                }
                if (!g_ascii_isdigit(*p)) {
                    return json_lex_stray(start, p, errp);
                }
                while (g_ascii_isdigit(*p)) {
                    p++;
                }
            }
            tok->type = is_float ? JT_FLOAT : JT_INTEGER;
        } else if (c >= 'a' && c <= 'z') {
            while (*p >= 'a' && *p <= 'z') {
                p++;
            }
            tok->type = JT_KEYWORD;
        } else {
            return json_lex_stray(start, p, errp);
        }
        break;
    }
    tok->text = start;
    tok->len = p - start;
    *pp = p;
    return 1;
}

static JsonToken *json_next(JsonParseCtx *ctx)
{
    if (ctx->pos >= ctx->count) {
        return NULL;
    }
    return &ctx->tokens[ctx->pos++];
}

static JsonToken *json_peek(JsonParseCtx *ctx)
{
    if (ctx->pos >= ctx->count) {
        return NULL;
    }
    return &ctx->tokens[ctx->pos];
}

static void json_premature_eoi(JsonParseCtx *ctx)
{
    error_setg(ctx->errp, "JSON parse error, premature EOI");
}

static bool json_hex4(const char *p, const char *end, unsigned *out)
{
    unsigned v = 0;
    int i;

    if (end - p < 4) {
        return false;
    }
    for (i = 0; i < 4; i++) {
        int d = g_ascii_xdigit_value(p[i]);

        if (d < 0) {
            return false;
        }
        v = v * 16 + d;
    }
    *out = v;
    return true;
}

/* Characters Unicode reserves as never assigned. */
static bool json_is_noncharacter(gunichar cp)
{
    return (cp >= 0xfdd0 && cp <= 0xfdef) || (cp & 0xfffe) == 0xfffe;
}

/*
 * Decode one UTF-8 sequence at @p (before @end).  Returns its length, or
 * 0 if it is not a valid scalar value that JSON text may carry.
 * QEMU's encoding of NUL, 0xC0 0x80, is let through.
 */
static size_t json_utf8_len(const unsigned char *p, const unsigned char *end)
{
    size_t len, i;
    gunichar cp, min;

    if (p[0] < 0x80) {
        return 1;
    }
    if (end - p >= 2 && p[0] == 0xc0 && p[1] == 0x80) {
        return 2;
    }
    if ((p[0] & 0xe0) == 0xc0) {
        len = 2;
        cp = p[0] & 0x1f;
        min = 0x80;
    } else if ((p[0] & 0xf0) == 0xe0) {
        len = 3;
        cp = p[0] & 0x0f;
        min = 0x800;
    } else if ((p[0] & 0xf8) == 0xf0) {
        len = 4;
        cp = p[0] & 0x07;
        min = 0x10000;
    } else {
        return 0;
    }
    if ((size_t)(end - p) < len) {
        return 0;
    }
    for (i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80) {
            return 0;
        }
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) ||
        json_is_noncharacter(cp)) {
        return 0;
    }
    return len;
}

/* The contents of string token @tok, or NULL with an error. */
static char *json_decode_string(JsonParseCtx *ctx, JsonToken *tok)
{
    const char *p = tok->text + 1;
    const char *body_end = tok->text + tok->len - 1;
    const char *tok_end = tok->text + tok->len;
    g_autoptr(GString) s = g_string_new(NULL);

    while (p < body_end) {
        unsigned char c = *p;

        if (c != '\\') {
            size_t n = json_utf8_len((const unsigned char *)p,
                                     (const unsigned char *)body_end);

            if (!n) {
                error_setg(ctx->errp, "JSON parse error, invalid UTF-8 "
                           "sequence in string");
                return NULL;
            }
            g_string_append_len(s, p, n);
            p += n;
            continue;
        }

        switch (p[1]) {
        case '"':
        case '\'':
        case '\\':
        case '/':
            g_string_append_c(s, p[1]);
            break;
        case 'b':
            g_string_append_c(s, '\b');
            break;
        case 'f':
            g_string_append_c(s, '\f');
            break;
        case 'n':
            g_string_append_c(s, '\n');
            break;
        case 'r':
            g_string_append_c(s, '\r');
            break;
        case 't':
            g_string_append_c(s, '\t');
            break;
        case 'u': {
            unsigned hi, lo;
            gunichar cp;
            int shown = 6;

            if (!json_hex4(p + 2, body_end, &hi)) {
                goto bad_unicode;
            }
            cp = hi;
            if (hi >= 0xd800 && hi <= 0xdbff) {
                if (p + 12 > body_end || p[6] != '\\' || p[7] != 'u' ||
                    !json_hex4(p + 8, body_end, &lo) ||
                    lo < 0xdc00 || lo > 0xdfff) {
                    goto bad_unicode;
                }
                cp = 0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00);
                shown = 12;
            } else if (hi >= 0xdc00 && hi <= 0xdfff) {
                goto bad_unicode;
            }
            if (json_is_noncharacter(cp)) {
                goto bad_unicode;
            }
            if (cp == 0) {
                g_string_append_len(s, "\xc0\x80", 2);
            } else {
                g_string_append_unichar(s, cp);
            }
            p += shown;
            continue;

        bad_unicode:
            error_setg(ctx->errp, "JSON parse error, %.*s is not a valid "
                       "Unicode character",
                       (int)MIN(shown, tok_end - p), p);
            return NULL;
        }
        default:
            error_setg(ctx->errp, "JSON parse error, invalid escape "
                       "sequence in string");
            return NULL;
        }
        p += 2;
    }
    return g_string_free(g_steal_pointer(&s), false);
}

static JsonNode *json_parse_value(JsonParseCtx *ctx);

static JsonNode *json_parse_object(JsonParseCtx *ctx)
{
    g_autoptr(JsonObject) obj = json_object_new();
    JsonToken *tok = json_peek(ctx);

    if (tok && tok->type == JT_RCURLY) {
        ctx->pos++;
        return json_node_init_object(json_node_alloc(), obj);
    }
    for (;;) {
        g_autoptr(JsonNode) key = json_parse_value(ctx);
        g_autoptr(JsonNode) value = NULL;
        const char *name;

        if (!key) {
            return NULL;
        }
        if (!JSON_NODE_HOLDS_VALUE(key) ||
            json_node_get_value_type(key) != G_TYPE_STRING) {
            error_setg(ctx->errp, "JSON parse error, key is not a string "
                       "in object");
            return NULL;
        }
        tok = json_next(ctx);
        if (!tok) {
            json_premature_eoi(ctx);
            return NULL;
        }
        if (tok->type != JT_COLON) {
            error_setg(ctx->errp, "JSON parse error, missing : in object "
                       "pair");
            return NULL;
        }
        value = json_parse_value(ctx);
        if (!value) {
            return NULL;
        }
        name = json_node_get_string(key);
        if (json_object_has_member(obj, name)) {
            error_setg(ctx->errp, "JSON parse error, duplicate key");
            return NULL;
        }
        json_object_set_member(obj, name, g_steal_pointer(&value));

        tok = json_next(ctx);
        if (!tok) {
            json_premature_eoi(ctx);
            return NULL;
        }
        if (tok->type == JT_RCURLY) {
            return json_node_init_object(json_node_alloc(), obj);
        }
        if (tok->type != JT_COMMA) {
            error_setg(ctx->errp, "JSON parse error, expected separator in "
                       "dict");
            return NULL;
        }
    }
}

static JsonNode *json_parse_array(JsonParseCtx *ctx)
{
    g_autoptr(JsonArray) array = json_array_new();
    JsonToken *tok = json_peek(ctx);

    if (tok && tok->type == JT_RSQUARE) {
        ctx->pos++;
        return json_node_init_array(json_node_alloc(), array);
    }
    for (;;) {
        JsonNode *elem = json_parse_value(ctx);

        if (!elem) {
            return NULL;
        }
        json_array_add_element(array, elem);

        tok = json_next(ctx);
        if (!tok) {
            json_premature_eoi(ctx);
            return NULL;
        }
        if (tok->type == JT_RSQUARE) {
            return json_node_init_array(json_node_alloc(), array);
        }
        if (tok->type != JT_COMMA) {
            error_setg(ctx->errp, "JSON parse error, expected separator in "
                       "list");
            return NULL;
        }
    }
}

static JsonNode *json_parse_number(JsonToken *tok)
{
    g_autofree char *text = g_strndup(tok->text, tok->len);
    JsonNode *node = json_node_alloc();

    if (tok->type == JT_INTEGER) {
        gint64 v;

        errno = 0;
        v = g_ascii_strtoll(text, NULL, 10);
        if (errno == 0) {
            return json_node_init_int(node, v);
        }
        /* Out of the int64 range: JsonNode has no wider integer. */
    }
    return json_node_init_double(node, g_ascii_strtod(text, NULL));
}

static JsonNode *json_parse_value(JsonParseCtx *ctx)
{
    JsonToken *tok = json_next(ctx);
    g_autofree char *str = NULL;

    if (!tok) {
        json_premature_eoi(ctx);
        return NULL;
    }
    switch (tok->type) {
    case JT_LCURLY:
        return json_parse_object(ctx);
    case JT_LSQUARE:
        return json_parse_array(ctx);
    case JT_STRING:
        str = json_decode_string(ctx, tok);
        if (!str) {
            return NULL;
        }
        return json_node_init_string(json_node_alloc(), str);
    case JT_INTEGER:
    case JT_FLOAT:
        return json_parse_number(tok);
    case JT_KEYWORD:
        if (tok->len == 4 && !strncmp(tok->text, "true", 4)) {
            return json_node_init_boolean(json_node_alloc(), true);
        }
        if (tok->len == 5 && !strncmp(tok->text, "false", 5)) {
            return json_node_init_boolean(json_node_alloc(), false);
        }
        if (tok->len == 4 && !strncmp(tok->text, "null", 4)) {
            return json_node_init_null(json_node_alloc());
        }
        error_setg(ctx->errp, "JSON parse error, invalid keyword '%.*s'",
                   (int)tok->len, tok->text);
        return NULL;
    default:
        error_setg(ctx->errp, "JSON parse error, expecting value");
        return NULL;
    }
}

/*
 * Like QEMU, tokens are gathered until a whole top-level value is seen
 * (or a closing bracket has no opener), and only then parsed.  So within
 * one value a lexical error wins over a grammar error, and anything at
 * all after the first value, even a stray character, is reported as a
 * second value.
 */
JsonNode *keyval_json_parse(const char *text, GError **errp)
{
    g_autoptr(GArray) tokens = g_array_new(false, false, sizeof(JsonToken));
    g_autoptr(JsonNode) result = NULL;
    const char *p = text;
    int braces = 0, brackets = 0;
    JsonParseCtx ctx;

    for (;;) {
        JsonToken tok;
        g_autoptr(GError) lex_err = NULL;
        int r = json_lex(&p, &tok, &lex_err);

        if (r != 0 && result) {
            error_setg(errp, "Expecting at most one JSON value");
            return NULL;
        }
        if (r < 0) {
            g_propagate_error(errp, g_steal_pointer(&lex_err));
            return NULL;
        }
        if (r == 0) {
            break;
        }
        g_array_append_val(tokens, tok);
        switch (tok.type) {
        case JT_LCURLY:
            braces++;
            break;
        case JT_RCURLY:
            braces--;
            break;
        case JT_LSQUARE:
            brackets++;
            break;
        case JT_RSQUARE:
            brackets--;
            break;
        default:
            break;
        }
        if (braces + brackets > KEYVAL_JSON_MAX_NESTING) {
            error_setg(errp, "JSON nesting depth limit exceeded");
            return NULL;
        }
        if (braces < 0 || brackets < 0 || (braces == 0 && brackets == 0)) {
            ctx = (JsonParseCtx) {
                .tokens = (JsonToken *)tokens->data,
                .count = tokens->len,
                .errp = errp,
            };
            result = json_parse_value(&ctx);
            if (!result) {
                return NULL;
            }
            /* Leftover tokens of this batch start a second value. */
            if (ctx.pos < ctx.count) {
                error_setg(errp, "Expecting at most one JSON value");
                return NULL;
            }
            g_array_set_size(tokens, 0);
        }
    }

    if (tokens->len) {
        /* Unbalanced at the end: the parser reports where it ran out. */
        ctx = (JsonParseCtx) {
            .tokens = (JsonToken *)tokens->data,
            .count = tokens->len,
            .errp = errp,
        };
        result = json_parse_value(&ctx);
        if (!result) {
            return NULL;
        }
        json_premature_eoi(&ctx);
        return NULL;
    }
    if (!result) {
        error_setg(errp, "Expecting a JSON value");
        return NULL;
    }
    return g_steal_pointer(&result);
}

/* ---- json: filenames ---- */

bool keyval_is_json_filename(const char *filename)
{
    return g_str_has_prefix(filename, "json:");
}

JsonObject *keyval_parse_json_filename(const char *filename, GError **errp)
{
    g_autoptr(GError) local_err = NULL;
    g_autoptr(JsonNode) node = NULL;
    g_autoptr(JsonObject) flat = NULL;

    if (!keyval_is_json_filename(filename)) {
        error_setg(errp, "Filename '%s' does not start with 'json:'",
                   filename);
        return NULL;
    }
    node = keyval_json_parse(filename + strlen("json:"), &local_err);
    if (!node) {
        error_setg(errp, "Could not parse the JSON options: %s",
                   local_err->message);
        return NULL;
    }
    if (!JSON_NODE_HOLDS_OBJECT(node)) {
        error_setg(errp, "Invalid JSON object given");
        return NULL;
    }
    flat = json_object_new();
    keyval_flatten(json_node_get_object(node), flat);
    return keyval_crumple(flat, errp);
}

/* ---- Flatten and crumple ---- */

static void keyval_flatten_object(JsonObject *obj, const char *prefix,
                                  JsonObject *dest);
static void keyval_flatten_array(JsonArray *array, const char *prefix,
                                 JsonObject *dest);

static void keyval_flatten_node(JsonNode *node, const char *path,
                                JsonObject *dest)
{
    if (JSON_NODE_HOLDS_OBJECT(node) &&
        !keyval_node_is_empty_container(node)) {
        keyval_flatten_object(json_node_get_object(node), path, dest);
    } else if (JSON_NODE_HOLDS_ARRAY(node) &&
               !keyval_node_is_empty_container(node)) {
        keyval_flatten_array(json_node_get_array(node), path, dest);
    } else {
        json_object_set_member(dest, path, keyval_node_deep_copy(node));
    }
}

/*
 * Leaves of one level go in before its containers are expanded, so the
 * nested spelling of a path overrides a dotted key given next to it,
 * whatever the member order.
 */
static void keyval_flatten_object(JsonObject *obj, const char *prefix,
                                  JsonObject *dest)
{
    g_auto(GStrv) names = keyval_member_names(obj);
    size_t i;
    int pass;

    for (pass = 0; pass < 2; pass++) {
        for (i = 0; names[i]; i++) {
            JsonNode *node = json_object_get_member(obj, names[i]);
            bool expand = keyval_node_is_container(node) &&
                          !keyval_node_is_empty_container(node);
            g_autofree char *path = NULL;

            if (expand != (pass == 1)) {
                continue;
            }
            path = keyval_join(prefix, names[i]);
            keyval_flatten_node(node, path, dest);
        }
    }
}

static void keyval_flatten_array(JsonArray *array, const char *prefix,
                                 JsonObject *dest)
{
    guint len = json_array_get_length(array);
    guint i;

    for (i = 0; i < len; i++) {
        g_autofree char *path = g_strdup_printf("%s.%u", prefix, i);

        keyval_flatten_node(json_array_get_element(array, i), path, dest);
    }
}

void keyval_flatten(JsonObject *obj, JsonObject *dest)
{
    g_assert(obj != dest);
    keyval_flatten_object(obj, NULL, dest);
}

/*
 * Split @key at its first '.' that is not part of a ".." pair.  Returns
 * the unescaped first component; *@rest is the remainder (still
 * escaped), or NULL if @key has no separator.
 */
static char *keyval_split_key(const char *key, const char **rest)
{
    GString *first = g_string_new(NULL);
    const char *p = key;

    *rest = NULL;
    while (*p) {
        if (*p == '.') {
            if (p[1] != '.') {
                *rest = p + 1;
                break;
            }
            p++;
        }
        g_string_append_c(first, *p);
        p++;
    }
    return g_string_free(first, false);
}

/* Convert a crumpled object to an array if its keys are all indexes. */
static JsonNode *keyval_crumple_listify(JsonObject *obj, GError **errp)
{
    g_auto(GStrv) names = keyval_member_names(obj);
    size_t count = 0, n_index = 0, i;
    uint64_t max = 0;
    JsonArray *array;

    for (i = 0; names[i]; i++) {
        count++;
        if (keyval_is_index(names[i], strlen(names[i]))) {
            n_index++;
            max = MAX(max, keyval_index_value(names[i]));
        }
    }
    if (n_index == 0) {
        return json_node_init_object(json_node_alloc(), obj);
    }
    if (n_index != count) {
        error_setg(errp, "Cannot mix list and non-list keys");
        return NULL;
    }
    if (max != count - 1) {
        error_setg(errp, "List indices are not contiguous, saw %zu elements "
                   "but %" PRIu64 " largest index", count, max);
        return NULL;
    }
    array = json_array_new();
    for (i = 0; i < count; i++) {
        g_autofree char *key = g_strdup_printf("%zu", i);
        JsonNode *elem = json_object_get_member(obj, key);

        if (!elem) {
            error_setg(errp, "Missing list index %zu", i);
            json_array_unref(array);
            return NULL;
        }
        json_array_add_element(array, json_node_ref(elem));
    }
    return keyval_node_take_array(array);
}

JsonObject *keyval_crumple(JsonObject *flat, GError **errp)
{
    g_auto(GStrv) names = keyval_member_names(flat);
    g_autoptr(JsonObject) result = json_object_new();
    /* Names in @result whose value is still a flat object to crumple. */
    g_autoptr(GHashTable) pending = g_hash_table_new_full(g_str_hash,
                                                          g_str_equal,
                                                          g_free, NULL);
    size_t i;

    for (i = 0; names[i]; i++) {
        JsonNode *value = json_object_get_member(flat, names[i]);
        const char *rest;
        g_autofree char *first = keyval_split_key(names[i], &rest);
        JsonNode *have = json_object_get_member(result, first);
        bool have_pending = g_hash_table_contains(pending, first);

        if (!rest) {
            if (have) {
                error_setg(errp, "Cannot mix scalar and non-scalar keys");
                return NULL;
            }
            json_object_set_member(result, first,
                                   keyval_node_deep_copy(value));
            continue;
        }
        if (have && !have_pending) {
            error_setg(errp, "Cannot mix scalar and non-scalar keys");
            return NULL;
        }
        if (!have) {
            json_object_set_object_member(result, first, json_object_new());
            have = json_object_get_member(result, first);
            g_hash_table_add(pending, g_strdup(first));
        }
        json_object_set_member(json_node_get_object(have), rest,
                               keyval_node_deep_copy(value));
    }

    for (i = 0; names[i]; i++) {
        const char *rest;
        g_autofree char *first = keyval_split_key(names[i], &rest);
        g_autoptr(JsonObject) sub = NULL;
        JsonNode *conv;

        if (!g_hash_table_remove(pending, first)) {
            continue;
        }
        sub = keyval_crumple(
            json_node_get_object(json_object_get_member(result, first)),
            errp);
        if (!sub) {
            return NULL;
        }
        conv = keyval_crumple_listify(sub, errp);
        if (!conv) {
            return NULL;
        }
        json_object_set_member(result, first, conv);
    }
    return g_steal_pointer(&result);
}

/* ---- Typed getters ---- */

JsonNode *keyval_lookup(JsonObject *o, const char *key)
{
    g_auto(GStrv) parts = NULL;
    JsonNode *node = NULL;
    size_t i;

    if (json_object_has_member(o, key)) {
        return json_object_get_member(o, key);
    }
    if (!strchr(key, '.')) {
        return NULL;
    }
    parts = g_strsplit(key, ".", -1);
    for (i = 0; parts[i]; i++) {
        if (i == 0) {
            node = json_object_get_member(o, parts[i]);
        } else if (JSON_NODE_HOLDS_OBJECT(node)) {
            node = json_object_get_member(json_node_get_object(node),
                                          parts[i]);
        } else if (JSON_NODE_HOLDS_ARRAY(node) &&
                   keyval_is_index(parts[i], strlen(parts[i]))) {
            JsonArray *array = json_node_get_array(node);
            uint64_t idx = keyval_index_value(parts[i]);

            node = idx < json_array_get_length(array) ?
                   json_array_get_element(array, idx) : NULL;
        } else {
            node = NULL;
        }
        if (!node) {
            return NULL;
        }
    }
    return node;
}

/*
 * Find option @key and give its text, as QEMU's option code sees a JSON
 * value: numbers in decimal or "%.17g", booleans as "on"/"off".
 * Returns true with *@text NULL if the option is missing or null.
 */
static bool keyval_get_text(JsonObject *o, const char *key,
                            const char *type, char **text, GError **errp)
{
    JsonNode *node = keyval_lookup(o, key);
    char buf[G_ASCII_DTOSTR_BUF_SIZE];

    *text = NULL;
    if (!node || JSON_NODE_HOLDS_NULL(node)) {
        return true;
    }
    if (!JSON_NODE_HOLDS_VALUE(node)) {
        error_setg(errp, "Invalid parameter type for '%s', expected: %s",
                   key, type);
        return false;
    }
    switch (json_node_get_value_type(node)) {
    case G_TYPE_STRING:
        *text = g_strdup(json_node_get_string(node));
        break;
    case G_TYPE_INT64:
        *text = g_strdup_printf("%" PRId64, json_node_get_int(node));
        break;
    case G_TYPE_DOUBLE:
        g_ascii_formatd(buf, sizeof(buf), "%.17g",
                        json_node_get_double(node));
        *text = g_strdup(buf);
        break;
    case G_TYPE_BOOLEAN:
        *text = g_strdup(json_node_get_boolean(node) ? "on" : "off");
        break;
    default:
        g_assert_not_reached();
    }
    return true;
}

bool keyval_get_bool(JsonObject *o, const char *key, bool def, bool *out,
                     GError **errp)
{
    g_autofree char *text = NULL;
    static const char *const yes[] = { "on", "yes", "true", "y", NULL };
    static const char *const no[] = { "off", "no", "false", "n", NULL };

    if (!keyval_get_text(o, key, "boolean", &text, errp)) {
        return false;
    }
    if (!text) {
        *out = def;
        return true;
    }
    if (g_strv_contains(yes, text)) {
        *out = true;
        return true;
    }
    if (g_strv_contains(no, text)) {
        *out = false;
        return true;
    }
    error_setg(errp, "Parameter '%s' expects 'on' or 'off'", key);
    return false;
}

/*
 * Parse a C-syntax number into *@out (as unsigned, negative numbers
 * wrapping) or *@sout (signed).  Returns 0, -EINVAL or -ERANGE.
 */
static int keyval_parse_number(const char *text, bool is_signed,
                               uint64_t *out, int64_t *sout)
{
    char *end;

    errno = 0;
    if (is_signed) {
        *sout = g_ascii_strtoll(text, &end, 0);
    } else {
        *out = g_ascii_strtoull(text, &end, 0);
    }
    if (errno == ERANGE) {
        return -ERANGE;
    }
    if (end == text || *end) {
        return -EINVAL;
    }
    return 0;
}

static bool keyval_get_number(JsonObject *o, const char *key,
                              bool is_signed, bool *found, uint64_t *out,
                              int64_t *sout, GError **errp)
{
    g_autofree char *text = NULL;
    int ret;

    if (!keyval_get_text(o, key, "integer", &text, errp)) {
        return false;
    }
    *found = text != NULL;
    if (!text) {
        return true;
    }
    ret = keyval_parse_number(text, is_signed, out, sout);
    if (ret == -ERANGE) {
        error_setg(errp, "Value '%s' is too large for parameter '%s'",
                   text, key);
        return false;
    }
    if (ret < 0) {
        error_setg(errp, "Parameter '%s' expects a number", key);
        return false;
    }
    return true;
}

bool keyval_get_int(JsonObject *o, const char *key, int64_t def,
                    int64_t *out, GError **errp)
{
    bool found;
    uint64_t unused;
    int64_t v;

    if (!keyval_get_number(o, key, true, &found, &unused, &v, errp)) {
        return false;
    }
    *out = found ? v : def;
    return true;
}

bool keyval_get_uint(JsonObject *o, const char *key, uint64_t def,
                     uint64_t *out, GError **errp)
{
    bool found;
    uint64_t v;
    int64_t unused;

    if (!keyval_get_number(o, key, false, &found, &v, &unused, errp)) {
        return false;
    }
    *out = found ? v : def;
    return true;
}

bool keyval_get_size(JsonObject *o, const char *key, uint64_t def,
                     uint64_t *out, GError **errp)
{
    g_autofree char *text = NULL;
    uint64_t v;
    int ret;

    if (!keyval_get_text(o, key, "integer", &text, errp)) {
        return false;
    }
    if (!text) {
        *out = def;
        return true;
    }
    ret = qemu_strtosz(text, NULL, &v);
    if (ret == -ERANGE) {
        error_setg(errp, "Value '%s' is out of range for parameter '%s'",
                   text, key);
        return false;
    }
    if (ret < 0) {
        error_setg(errp, "Parameter '%s' expects a non-negative number "
                   "below 2^64", key);
        return false;
    }
    *out = v;
    return true;
}

bool keyval_get_str(JsonObject *o, const char *key, const char *def,
                    char **out, GError **errp)
{
    char *text;

    if (!keyval_get_text(o, key, "string", &text, errp)) {
        return false;
    }
    *out = text ? text : g_strdup(def);
    return true;
}

/* ---- Sizes ---- */

static uint64_t qemu_size_suffix(char c)
{
    switch (g_ascii_tolower(c)) {
    case 'b':
        return 1;
    case 'k':
        return 1ULL << 10;
    case 'm':
        return 1ULL << 20;
    case 'g':
        return 1ULL << 30;
    case 't':
        return 1ULL << 40;
    case 'p':
        return 1ULL << 50;
    case 'e':
        return 1ULL << 60;
    default:
        return 0;
    }
}

int qemu_strtosz(const char *str, const char **end, uint64_t *result)
{
    const char *p;
    char *endp;
    uint64_t val, mul;
    /* The fraction in 0.64 fixed point. */
    uint64_t frac = 0;
    unsigned __int128 total;
    int ret = -EINVAL;

    if (!str) {
        goto fail;
    }
    errno = 0;
    val = g_ascii_strtoull(str, &endp, 10);
    if (endp == str) {
        goto fail;
    }
    if (errno == ERANGE) {
        /* As in QEMU, junk after the digits makes it malformed instead. */
        ret = (!end && *endp) ? -EINVAL : -ERANGE;
        goto fail;
    }
    if (memchr(str, '-', endp - str)) {
        goto fail;
    }
    p = endp;

    if (val == 0 && (*p == 'x' || *p == 'X')) {
        errno = 0;
        val = g_ascii_strtoull(str, &endp, 16);
        if (errno == ERANGE) {
            ret = (!end && *endp) ? -EINVAL : -ERANGE;
            goto fail;
        }
        p = endp;
        if (*p == '.') {
            goto fail;
        }
    } else if (*p == '.') {
        const char *digits = p + 1;
        const char *q = digits;

        while (g_ascii_isdigit(*q)) {
            q++;
        }
        if (q > digits) {
            g_autofree char *text = g_strndup(p, q - p);
            double f;

            /*
             * A fraction followed by an exponent is a float, not a size
             * ("1.5e3"); a lone 'e' after it is the exabyte suffix.
             */
            if ((*q == 'e' || *q == 'E') &&
                (g_ascii_isdigit(q[1]) ||
                 ((q[1] == '+' || q[1] == '-') && g_ascii_isdigit(q[2])))) {
                goto fail;
            }
            f = g_ascii_strtod(text, NULL);
            /* 0x1p64 does not fit: digits that round up to 1 saturate. */
            frac = f >= 1.0 ? UINT64_MAX : (uint64_t)(f * 0x1p64);
        }
        p = q;
    }

    mul = qemu_size_suffix(*p);
    if (mul) {
        p++;
    } else {
        mul = 1;
    }
    if (mul == 1 && frac != 0) {
        /* Fractions of a byte make no sense. */
        goto fail;
    }
    if (!end && *p) {
        goto fail;
    }

    /* Exact 64.64 x 64 product, rounding the fraction half up. */
    total = (unsigned __int128)val * mul +
            (((unsigned __int128)frac * mul + (1ULL << 63)) >> 64);
    if (total > UINT64_MAX) {
        ret = -ERANGE;
        goto fail;
    }
    *result = (uint64_t)total;
    if (end) {
        *end = p;
    }
    return 0;

fail:
    if (end) {
        *end = str;
    }
    return ret;
}

/* ---- Unknown options ---- */

/* Name an unknown option down to its first leaf, as QEMU flattens it. */
static char *keyval_leaf_name(const char *path, JsonNode *node)
{
    if (JSON_NODE_HOLDS_OBJECT(node) &&
        !keyval_node_is_empty_container(node)) {
        JsonObject *obj = json_node_get_object(node);
        GList *members = json_object_get_members(obj);
        g_autofree char *sub = keyval_join(path, members->data);
        char *ret = keyval_leaf_name(sub,
                                     json_object_get_member(obj,
                                                            members->data));

        g_list_free(members);
        return ret;
    }
    if (JSON_NODE_HOLDS_ARRAY(node) &&
        !keyval_node_is_empty_container(node)) {
        g_autofree char *sub = g_strconcat(path, ".0", NULL);

        return keyval_leaf_name(sub,
                                json_array_get_element(
                                    json_node_get_array(node), 0));
    }
    return g_strdup(path);
}

static char *keyval_find_unknown_in(JsonObject *o, GPtrArray *accepted,
                                    const char *prefix)
{
    g_auto(GStrv) names = keyval_member_names(o);
    size_t i;
    guint j;

    for (i = 0; names[i]; i++) {
        JsonNode *node = json_object_get_member(o, names[i]);
        size_t nlen = strlen(names[i]);
        g_autoptr(GPtrArray) sub = g_ptr_array_new();
        g_autofree char *path = keyval_join(prefix, names[i]);
        bool whole = false;
        char *unknown;

        for (j = 0; j < accepted->len; j++) {
            const char *a = g_ptr_array_index(accepted, j);

            if (!strcmp(a, names[i])) {
                whole = true;
                break;
            }
            if (!strncmp(a, names[i], nlen) && a[nlen] == '.') {
                g_ptr_array_add(sub, (gpointer)(a + nlen + 1));
            }
        }
        if (whole) {
            continue;
        }
        if (sub->len == 0 || !JSON_NODE_HOLDS_OBJECT(node)) {
            return keyval_leaf_name(path, node);
        }
        unknown = keyval_find_unknown_in(json_node_get_object(node), sub,
                                         path);
        if (unknown) {
            return unknown;
        }
    }
    return NULL;
}

char *keyval_find_unknown(JsonObject *o, const char *const *accepted)
{
    g_autoptr(GPtrArray) list = g_ptr_array_new();

    for (; accepted && *accepted; accepted++) {
        g_ptr_array_add(list, (gpointer)*accepted);
    }
    return keyval_find_unknown_in(o, list, NULL);
}

bool keyval_check_unused(JsonObject *o, const char *const *accepted,
                         const char *driver_name, bool is_protocol,
                         GError **errp)
{
    g_autofree char *unknown = keyval_find_unknown(o, accepted);

    if (!unknown) {
        return true;
    }
    if (is_protocol) {
        error_setg(errp, "Block protocol '%s' doesn't support the option "
                   "'%s'", driver_name, unknown);
    } else {
        error_setg(errp, "Block format '%s' does not support the option "
                   "'%s'", driver_name, unknown);
    }
    return false;
}
