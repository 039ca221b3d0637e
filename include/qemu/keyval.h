/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The options model: every way of configuring a node ends in one JSON
 * object (json-glib).
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * blockdev-add hands over a JSON object as it is.  The dotted command-line
 * syntax ("driver=raw,file.driver=file,file.filename=x") and "json:{...}"
 * pseudo-filenames are turned into the same kind of object here, so
 * drivers read their options in one way, through the keyval_get_*()
 * getters, and report leftovers with keyval_check_unused().
 *
 * Values parsed from the dotted syntax are always JSON strings; values
 * from JSON keep their native types.  The getters accept both, so a
 * driver never cares where an option came from.
 *
 * Every function here is pure (it touches only its arguments), so any
 * thread may call it; the usual json-glib rule applies that one object is
 * not modified by two threads at once.  Error messages are worded as
 * QEMU 7.2 words them.
 */
#ifndef QEMU_KEYVAL_H
#define QEMU_KEYVAL_H

#include <json-glib/json-glib.h>

/* Longest key fragment (text between dots) keyval_parse() accepts. */
#define KEYVAL_FRAGMENT_MAX 127

/* Deepest nesting of arrays and objects keyval_json_parse() accepts. */
#define KEYVAL_JSON_MAX_NESTING 1024

/*
 * Parse the dotted syntax of -blockdev and --image-opts:
 * "key=value,key=value,...".
 *
 * - A value runs to the next single ','; ",," stands for a literal ','.
 *   A trailing ',' is allowed; "" gives an empty object.
 * - A key is one or more fragments joined by '.'.  A fragment is a name
 *   (a letter, then letters, digits, '-' or '_') or, below the top
 *   level, an index (decimal digits).  Fragments are at most
 *   KEYVAL_FRAGMENT_MAX characters.
 * - Dotted keys build nested objects: "file.driver=file" gives
 *   {"file": {"driver": "file"}}.
 * - An object whose keys are all indexes becomes an array ordered by
 *   index; the indexes must be 0..n-1 without gaps ("a.0=x,a.1=y" gives
 *   {"a": ["x", "y"]}).  Leading zeros are allowed ("a.00" is element 0);
 *   when two keys name the same element, the later one wins.
 * - If @implied_key is not NULL or "", a first element without '=' is
 *   the value of @implied_key ("qcow2,file.filename=x" with implied key
 *   "driver").  Such a value ends at the first ',' or '=' and knows no
 *   ",," escape.  Only the first element can be implied.
 * - A key given twice keeps its last value.
 * - Every value is a JSON string; typing is the consumer's job.
 *
 * Returns a new object (free with json_object_unref()), or NULL with
 * @errp set to one of:
 *   "Invalid parameter 'KEY'"
 *   "Expected '=' after parameter 'KEY'"
 *   "Parameter 'KEY' is too long"  (a key of one fragment)
 *   "Parameter fragment 'FRAG' is too long"
 *   "Parameters 'PREFIX.*' used inconsistently"  (a key is both a
 *       value and an object, or an object mixes names and indexes)
 *   "Parameter 'PREFIX.N' missing"  (an array has a gap)
 * Any thread.
 */
JsonObject *keyval_parse(const char *params, const char *implied_key,
                         GError **errp);

/*
 * Parse one JSON value as QEMU's parser does: RFC 8259 plus
 * single-quoted strings (with the same escapes; "\'" is valid in both
 * kinds), duplicate keys rejected, nesting at most
 * KEYVAL_JSON_MAX_NESTING deep, and "\u0000" kept as the two bytes
 * 0xC0 0x80 (QEMU's modified UTF-8).  Integers beyond the int64 range
 * become doubles.  Whitespace may surround the value.
 *
 * Returns a new node (json_node_unref()) or NULL with @errp set to
 * QEMU's text, e.g. "Expecting a JSON value", "Expecting at most one
 * JSON value", "JSON nesting depth limit exceeded" or "JSON parse error,
 * ..." ("premature EOI", "expecting value", "missing : in object pair",
 * "duplicate key", "stray 'TEXT'", "invalid keyword 'WORD'", ...).
 * Any thread.
 */
JsonNode *keyval_json_parse(const char *text, GError **errp);

/* True if @filename is a "json:" pseudo-filename.  Any thread. */
bool keyval_is_json_filename(const char *filename);

/*
 * Parse a "json:{...}" pseudo-filename into nested options.
 *
 * The JSON after "json:" must be an object.  Like QEMU, its keys may be
 * dotted paths, merged with the nested spelling:
 * json:{"file.driver": "file", "file": {"filename": "x"}} gives
 * {"file": {"driver": "file", "filename": "x"}}.  When both spellings
 * name the same option, the nested one wins.  Values keep their JSON
 * types.  This is keyval_flatten() followed by keyval_crumple().
 *
 * Returns a new object or NULL with @errp set: "Could not parse the JSON
 * options: DETAIL" (DETAIL from keyval_json_parse()), "Invalid JSON
 * object given" (not an object), a keyval_crumple() message when dotted
 * keys conflict, or "Filename 'X' does not start with 'json:'".
 * Any thread.
 */
JsonObject *keyval_parse_json_filename(const char *filename, GError **errp);

/*
 * Copy every leaf of @obj into @dest under its dotted path, as QEMU's
 * qdict_flatten() does: {"file": {"driver": "x"}} gives
 * {"file.driver": "x"}; array elements are named by index ("a.0").
 * Empty objects and arrays are leaves and are copied as they are.
 * Member names are joined without escaping: a name that contains '.' is
 * taken as a path of its own, which is what merges the dotted keys of
 * json: filenames.  Where two spellings give the same path, the more
 * deeply nested one wins.  @dest must not be @obj; existing members of
 * @dest with the same path are replaced.  Any thread.
 */
void keyval_flatten(JsonObject *obj, JsonObject *dest);

/*
 * The inverse of keyval_flatten(), as QEMU's qdict_crumple(): split each
 * key of @flat at its first '.' ("..": a literal '.' inside a name) and
 * nest; an object whose keys are all decimal indexes becomes an array
 * (the top level always stays an object).  Values are copied as they
 * are.
 *
 * Returns a new object or NULL with @errp set to one of:
 *   "Cannot mix scalar and non-scalar keys"
 *   "Cannot mix list and non-list keys"
 *   "List indices are not contiguous, saw N elements but M largest index"
 *   "Missing list index N"  (e.g. "a.00" without "a.0")
 * Any thread.
 */
JsonObject *keyval_crumple(JsonObject *flat, GError **errp);

/*
 * The node of option @key in @o, or NULL if it is missing.  @key is a
 * member name, or a dotted path through nested objects and arrays
 * ("cache.direct", "server.0.host").  Any thread.
 */
JsonNode *keyval_lookup(JsonObject *o, const char *key);

/*
 * Typed getters.  Each reads option @key (see keyval_lookup()) of @o.
 * A missing option or a JSON null stores @def in *@out.  A string is
 * parsed as QEMU's option parser parses it; a JSON number or boolean is
 * first written as QEMU writes it (decimal, "%.17g", "on"/"off"), so
 * json: filenames behave as they do in qemu-img.  An object or array
 * fails with "Invalid parameter type for 'KEY', expected: TYPE".
 *
 * Each returns true, or false with @errp set and *@out unchanged.
 * Any thread.
 */

/*
 * "on", "yes", "true", "y" and "off", "no", "false", "n" (case matters).
 * Error: "Parameter 'KEY' expects 'on' or 'off'".
 */
bool keyval_get_bool(JsonObject *o, const char *key, bool def, bool *out,
                     GError **errp);

/*
 * A number in C syntax (decimal, 0x hex, 0 octal, optional sign and
 * leading blanks).  Errors: "Parameter 'KEY' expects a number",
 * "Value 'V' is too large for parameter 'KEY'".
 */
bool keyval_get_int(JsonObject *o, const char *key, int64_t def,
                    int64_t *out, GError **errp);

/*
 * As keyval_get_int(), for 0..2^64-1.  Like QEMU, a negative number
 * wraps around ("-1" is 2^64-1), so drivers that keep the value in a
 * signed type can reject it themselves.
 */
bool keyval_get_uint(JsonObject *o, const char *key, uint64_t def,
                     uint64_t *out, GError **errp);

/*
 * A byte count with qemu_strtosz() syntax.  Errors: "Parameter 'KEY'
 * expects a non-negative number below 2^64", "Value 'V' is out of
 * range for parameter 'KEY'".
 */
bool keyval_get_size(JsonObject *o, const char *key, uint64_t def,
                     uint64_t *out, GError **errp);

/*
 * A string; numbers and booleans are converted as above.  *@out is a
 * new string (g_free()), or a copy of @def (NULL if @def is NULL).
 */
bool keyval_get_str(JsonObject *o, const char *key, const char *def,
                    char **out, GError **errp);

/*
 * Parse a byte count as qemu-img does: decimal digits (or 0x hex, which
 * takes no fraction), an optional decimal fraction, and an optional
 * suffix b/B (bytes), k/K, m/M, g/G, t/T, p/P, e/E (powers of 1024).
 * Without a suffix the unit is bytes, so a fraction needs a suffix of
 * k or more ("1.5G" is fine, "1.5" and "1.5b" are not); the result is
 * rounded to the nearest byte.  No sign '-' and no exponent are taken.
 *
 * If @end is NULL, the whole string must be consumed; otherwise *@end
 * is set past the suffix (to @str on failure).  Returns 0 with *@result
 * set, -EINVAL for malformed input, or -ERANGE if the value is 2^64 or
 * more.  Any thread.
 */
int qemu_strtosz(const char *str, const char **end, uint64_t *result);

/*
 * Unknown options.  A driver lists the option names it accepts (NULL
 * terminated, as BlockDriver.option_names).  A name accepts the option
 * and everything nested under it ("file" covers file.driver and
 * friends); a dotted name accepts only that leaf of a nested object
 * ("cache.direct" accepts {"cache": {"direct": ...}} but not
 * {"cache": {"foo": ...}}).  The driver reads what it wants with the
 * getters, which never modify @o, then checks once for leftovers.
 */

/*
 * The dotted path of the first member of @o (in member order) that
 * @accepted does not cover, named as QEMU names a leftover option: the
 * path down to its first leaf ("size.a", "x.0"; an empty object, empty
 * array or null is named itself).  NULL if every option is accepted;
 * otherwise free with g_free().  @accepted may be NULL (accepts
 * nothing).  Any thread.
 */
char *keyval_find_unknown(JsonObject *o, const char *const *accepted);

/*
 * Fail if @o holds an option @accepted does not cover, with QEMU's text:
 * "Block protocol 'DRIVER' doesn't support the option 'PATH'" when
 * @is_protocol, else "Block format 'DRIVER' does not support the option
 * 'PATH'".  Returns true if there is none.  Any thread.
 */
bool keyval_check_unused(JsonObject *o, const char *const *accepted,
                         const char *driver_name, bool is_protocol,
                         GError **errp);

#endif /* QEMU_KEYVAL_H */
