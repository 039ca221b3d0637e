/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests for util/keyval.c: the dotted option syntax, the JSON
 * parser behind json: filenames, flatten/crumple, the typed getters,
 * qemu_strtosz() and the unknown-option check.
 *
 * Copyright (c) 2026 The Sluice authors
 *
 * Every error text expected here was taken from QEMU 7.2 (Debian 12's
 * qemu-img, qemu-io and qemu-storage-daemon) for the same input.
 */
#include "qemu/osdep.h"
#include "qemu/keyval.h"

#include <math.h>

/* ---- Helpers ---- */

static char *obj_to_string(JsonObject *o)
{
    g_autoptr(JsonNode) node = json_node_new(JSON_NODE_OBJECT);

    json_node_set_object(node, o);
    return json_to_string(node, false);
}

/* A JSON object from test text, parsed by json-glib as a reference. */
static JsonObject *obj_from_json(const char *json)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonNode) node = json_from_string(json, &err);

    g_assert_no_error(err);
    g_assert_true(JSON_NODE_HOLDS_OBJECT(node));
    return json_object_ref(json_node_get_object(node));
}

/* Check that @o equals the object in @json (member order aside). */
static void assert_obj_eq(JsonObject *o, const char *json)
{
    g_autoptr(JsonObject) want = obj_from_json(json);
    g_autoptr(JsonNode) a = json_node_new(JSON_NODE_OBJECT);
    g_autoptr(JsonNode) b = json_node_new(JSON_NODE_OBJECT);

    g_assert_nonnull(o);
    json_node_set_object(a, o);
    json_node_set_object(b, want);
    if (!json_node_equal(a, b)) {
        g_autofree char *got = obj_to_string(o);

        g_test_message("got %s, want %s", got, json);
        g_test_fail();
    }
}

/* The member names of @o in order, joined by ','. */
static char *member_order(JsonObject *o)
{
    GList *members = json_object_get_members(o);
    GString *s = g_string_new(NULL);
    GList *l;

    for (l = members; l; l = l->next) {
        g_string_append_printf(s, "%s%s", s->len ? "," : "",
                               (char *)l->data);
    }
    g_list_free(members);
    return g_string_free(s, false);
}

static void check_parse(const char *params, const char *implied,
                        const char *want)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonObject) o = keyval_parse(params, implied, &err);

    g_assert_no_error(err);
    assert_obj_eq(o, want);
}

static void check_parse_error(const char *params, const char *implied,
                              const char *msg)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonObject) o = keyval_parse(params, implied, &err);

    g_assert_null(o);
    g_assert_error(err, SLUICE_ERROR, SLUICE_ERROR_GENERIC);
    g_assert_cmpstr(err->message, ==, msg);
}

/* ---- keyval_parse ---- */

static void test_parse_basic(void)
{
    g_autoptr(JsonObject) o = NULL;
    g_autofree char *order = NULL;

    check_parse("", NULL, "{}");
    check_parse("a=1", NULL, "{\"a\": \"1\"}");
    check_parse("a=1,b=two,c=", NULL,
                "{\"a\": \"1\", \"b\": \"two\", \"c\": \"\"}");
    /* A trailing comma is fine; '=' and '.' may appear in values. */
    check_parse("a=1,", NULL, "{\"a\": \"1\"}");
    check_parse("a=b=c,d=x.y", NULL, "{\"a\": \"b=c\", \"d\": \"x.y\"}");
    /* Key characters: letters, digits, '-' and '_' after a letter. */
    check_parse("A_b-9=x,node-name=n", NULL,
                "{\"A_b-9\": \"x\", \"node-name\": \"n\"}");
    /* A repeated key keeps its last value (QEMU: size=abc,size=1024). */
    check_parse("a=1,a=2", NULL, "{\"a\": \"2\"}");
    check_parse("a.b=1,a.b=2", NULL, "{\"a\": {\"b\": \"2\"}}");

    /* Values stay strings; member order follows the input. */
    o = keyval_parse("z=1,a=true,m=0x10", NULL, NULL);
    g_assert_nonnull(o);
    order = member_order(o);
    g_assert_cmpstr(order, ==, "z,a,m");
    g_assert_cmpint(json_node_get_value_type(
                        json_object_get_member(o, "a")), ==, G_TYPE_STRING);
}

static void test_parse_escapes(void)
{
    check_parse("a=1,,2", NULL, "{\"a\": \"1,2\"}");
    check_parse("a=,,", NULL, "{\"a\": \",\"}");
    check_parse("a=,,,,b", NULL, "{\"a\": \",,b\"}");
    check_parse("a=x,,,b=y", NULL, "{\"a\": \"x,\", \"b\": \"y\"}");
    check_parse("a=1,,2,b=,c=,,", NULL,
                "{\"a\": \"1,2\", \"b\": \"\", \"c\": \",\"}");
    check_parse("path=/a,,b/c,,,,d", NULL, "{\"path\": \"/a,b/c,,d\"}");
}

static void test_parse_nesting(void)
{
    check_parse("driver=raw,file.driver=file,file.filename=x", NULL,
                "{\"driver\": \"raw\", \"file\": {\"driver\": \"file\", "
                "\"filename\": \"x\"}}");
    check_parse("a.b.c=1,a.b.d=2,a.e=3", NULL,
                "{\"a\": {\"b\": {\"c\": \"1\", \"d\": \"2\"}, "
                "\"e\": \"3\"}}");
    check_parse("file.file.file.x=deep", NULL,
                "{\"file\": {\"file\": {\"file\": {\"x\": \"deep\"}}}}");
}

static void test_parse_arrays(void)
{
    check_parse("a.0=x,a.1=y", NULL, "{\"a\": [\"x\", \"y\"]}");
    /* Order comes from the index, not from the input. */
    check_parse("a.1=y,a.0=x", NULL, "{\"a\": [\"x\", \"y\"]}");
    check_parse("a.2=c,a.0=a,a.1=b", NULL, "{\"a\": [\"a\", \"b\", \"c\"]}");
    /* Arrays of objects and arrays of arrays. */
    check_parse("s.0.host=h,s.0.port=1,s.1.host=k", NULL,
                "{\"s\": [{\"host\": \"h\", \"port\": \"1\"}, "
                "{\"host\": \"k\"}]}");
    check_parse("m.0.0=a,m.0.1=b,m.1.0=c", NULL,
                "{\"m\": [[\"a\", \"b\"], [\"c\"]]}");
    check_parse("a.e.0.f=3,a.e.1=4", NULL,
                "{\"a\": {\"e\": [{\"f\": \"3\"}, \"4\"]}}");
    /* Leading zeros name the same element; the later key wins. */
    check_parse("a.00=x", NULL, "{\"a\": [\"x\"]}");
    check_parse("a.0=x,a.00=y,a.1=z", NULL, "{\"a\": [\"y\", \"z\"]}");
    check_parse("a.00=y,a.0=x", NULL, "{\"a\": [\"x\"]}");
    /* Gaps, from QEMU's "children.2=..." and friends. */
    check_parse_error("x.0=1,x.2=2", NULL, "Parameter 'x.1' missing");
    check_parse_error("x.1=1", NULL, "Parameter 'x.0' missing");
    check_parse_error("x.01=1", NULL, "Parameter 'x.0' missing");
    check_parse_error("c.0=a,c.1=b,c.3=c", NULL, "Parameter 'c.2' missing");
    check_parse_error("x.99999999999999999999=1", NULL,
                      "Parameter 'x.0' missing");
    check_parse_error("x.2147483647=1", NULL, "Parameter 'x.0' missing");
    check_parse_error("a.b.1=1", NULL, "Parameter 'a.b.0' missing");
    check_parse_error("x.0=1,x.a=2", NULL,
                      "Parameters 'x.*' used inconsistently");
    check_parse_error("x.a=1,x.0=2", NULL,
                      "Parameters 'x.*' used inconsistently");
    check_parse_error("y.x.a=1,y.x.0=2", NULL,
                      "Parameters 'y.x.*' used inconsistently");
}

static void test_parse_implied(void)
{
    check_parse("null-co,node-name=a", "driver",
                "{\"driver\": \"null-co\", \"node-name\": \"a\"}");
    check_parse("qcow2", "driver", "{\"driver\": \"qcow2\"}");
    check_parse("a.b", "driver", "{\"driver\": \"a.b\"}");
    /* "key=" is an explicit key even with an implied key around. */
    check_parse("null-co=,x=1", "driver",
                "{\"null-co\": \"\", \"x\": \"1\"}");
    check_parse("driver=raw", "driver", "{\"driver\": \"raw\"}");
    /* The implied key may be a path; explicit keys may override it. */
    check_parse("f,file.x=1", "file.driver",
                "{\"file\": {\"driver\": \"f\", \"x\": \"1\"}}");
    check_parse("raw,driver=qcow2", "driver", "{\"driver\": \"qcow2\"}");
    /* The implied value has no ",," escape (QEMU's val-no-key). */
    check_parse_error("null-co,,x,node-name=a", "driver",
                      "Invalid parameter ''");
    /* Only the first element can be implied. */
    check_parse_error("node-name=a,null-co", "driver",
                      "Expected '=' after parameter 'null-co'");
    check_parse_error(",driver=null-co", "driver", "Invalid parameter ''");
    check_parse_error("=null-co", "driver", "Invalid parameter ''");
    /* Without an implied key, a bare word is an error. */
    check_parse_error("null-co", NULL,
                      "Expected '=' after parameter 'null-co'");
    check_parse_error("null-co", "", "Expected '=' after parameter 'null-co'");
}

static void test_parse_errors(void)
{
    static const struct {
        const char *in;
        const char *msg;
    } cases[] = {
        { "driver=null-co,foo", "Expected '=' after parameter 'foo'" },
        { "a.b", "Expected '=' after parameter 'a.b'" },
        { "a=1,x.y,b=2", "Expected '=' after parameter 'x.y'" },
        { "=x", "Invalid parameter ''" },
        { "driver=null-co,=x", "Invalid parameter ''" },
        { ",a=1", "Invalid parameter ''" },
        { "a=1,,,=2", "Invalid parameter ''" },
        { "a.=x", "Invalid parameter 'a.'" },
        { ".a=x", "Invalid parameter '.a'" },
        { "a..b=x", "Invalid parameter 'a..b'" },
        { "1a=x", "Invalid parameter '1a'" },
        { "_a=x", "Invalid parameter '_a'" },
        { "-a=x", "Invalid parameter '-a'" },
        { "a.1b=x", "Invalid parameter 'a.1b'" },
        { "a b=c", "Invalid parameter 'a b'" },
        { "a b", "Invalid parameter 'a b'" },
        { "0=1", "Invalid parameter '0'" },
        { "x.-1=1", "Invalid parameter 'x.-1'" },
        { "x.+1=1", "Invalid parameter 'x.+1'" },
        { "x.a_b.=1", "Invalid parameter 'x.a_b.'" },
        { "file=x,file.driver=y", "Parameters 'file.*' used inconsistently" },
        { "file.driver=y,file=x", "Parameters 'file.*' used inconsistently" },
        { "x.0=1,x.0.b=2", "Parameters 'x.0.*' used inconsistently" },
        { "a.b.c=1,a.b=2", "Parameters 'a.b.*' used inconsistently" },
        { "a.b=1,a.b.c.d=2", "Parameters 'a.b.*' used inconsistently" },
    };
    size_t i;

    for (i = 0; i < ARRAY_SIZE(cases); i++) {
        g_test_message("input %s", cases[i].in);
        check_parse_error(cases[i].in, NULL, cases[i].msg);
    }
}

static void test_parse_too_long(void)
{
    g_autofree char *k127 = g_strnfill(127, 'k');
    g_autofree char *k128 = g_strnfill(128, 'k');
    g_autofree char *d127 = g_strnfill(127, '7');
    g_autofree char *d128 = g_strnfill(128, '7');
    g_autofree char *in = NULL;
    g_autofree char *want = NULL;
    g_autofree char *msg = NULL;
    g_autoptr(JsonObject) o = NULL;

    in = g_strdup_printf("%s=1", k127);
    want = g_strdup_printf("{\"%s\": \"1\"}", k127);
    check_parse(in, NULL, want);

    g_free(in);
    in = g_strdup_printf("%s=1", k128);
    msg = g_strdup_printf("Parameter '%s' is too long", k128);
    check_parse_error(in, NULL, msg);
    /* The length is checked before the '='. */
    g_free(in);
    in = g_strdup_printf("a=1,%s,y=1", k128);
    check_parse_error(in, NULL, msg);

    g_free(in);
    g_free(msg);
    in = g_strdup_printf("x.%s.y=1", k128);
    msg = g_strdup_printf("Parameter fragment '%s' is too long", k128);
    check_parse_error(in, NULL, msg);
    g_free(in);
    in = g_strdup_printf("%s.y=1", k128);
    check_parse_error(in, NULL, msg);
    g_free(in);
    in = g_strdup_printf("x.%s=1", k128);
    check_parse_error(in, NULL, msg);

    /* Index fragments have the same limit. */
    g_free(in);
    g_free(msg);
    in = g_strdup_printf("x.%s=1", d128);
    msg = g_strdup_printf("Parameter fragment '%s' is too long", d128);
    check_parse_error(in, NULL, msg);
    g_free(in);
    in = g_strdup_printf("x.%s=1", d127);
    check_parse_error(in, NULL, "Parameter 'x.0' missing");

    /* Only fragments are limited, not whole keys. */
    g_free(in);
    in = g_strdup_printf("%s.%s=1", k127, k127);
    o = keyval_parse(in, NULL, NULL);
    g_assert_nonnull(o);
    in[strlen(in) - 2] = '\0';
    g_assert_cmpstr(json_node_get_string(keyval_lookup(o, in)), ==, "1");
}

/* ---- The JSON parser ---- */

static JsonNode *parse_json_ok(const char *text)
{
    g_autoptr(GError) err = NULL;
    JsonNode *node = keyval_json_parse(text, &err);

    g_assert_no_error(err);
    g_assert_nonnull(node);
    return node;
}

static void test_json_values(void)
{
    g_autoptr(JsonNode) n = NULL;
    JsonObject *o;
    JsonArray *a;

    n = parse_json_ok(" {\"s\": \"x\", \"i\": -42, \"d\": 1.5, \"t\": true, "
                      "\"f\": false, \"z\": null, \"a\": [1, [], {}], "
                      "\"o\": {\"k\": 'v'}}\n");
    o = json_node_get_object(n);
    g_assert_cmpstr(json_object_get_string_member(o, "s"), ==, "x");
    g_assert_cmpint(json_object_get_int_member(o, "i"), ==, -42);
    g_assert_cmpfloat(json_object_get_double_member(o, "d"), ==, 1.5);
    g_assert_true(json_object_get_boolean_member(o, "t"));
    g_assert_false(json_object_get_boolean_member(o, "f"));
    g_assert_true(json_object_get_null_member(o, "z"));
    a = json_object_get_array_member(o, "a");
    g_assert_cmpint(json_array_get_length(a), ==, 3);
    g_assert_cmpint(json_array_get_int_element(a, 0), ==, 1);
    g_assert_true(JSON_NODE_HOLDS_ARRAY(json_array_get_element(a, 1)));
    g_assert_true(JSON_NODE_HOLDS_OBJECT(json_array_get_element(a, 2)));
    g_assert_cmpstr(json_object_get_string_member(
                        json_object_get_object_member(o, "o"), "k"), ==, "v");
    json_node_unref(g_steal_pointer(&n));

    /* Top-level scalars are values too (json: rejects them later). */
    n = parse_json_ok("\"x\"");
    g_assert_cmpstr(json_node_get_string(n), ==, "x");
    json_node_unref(g_steal_pointer(&n));
    n = parse_json_ok("[1]");
    g_assert_true(JSON_NODE_HOLDS_ARRAY(n));
    json_node_unref(g_steal_pointer(&n));

    /* Number forms and ranges. */
    n = parse_json_ok("[-0.0e-0, 1E+2, 9223372036854775807, "
                      "-9223372036854775808, 9223372036854775808, "
                      "99999999999999999999, 1.5e999, 0, -0]");
    a = json_node_get_array(n);
    g_assert_cmpint(json_node_get_value_type(json_array_get_element(a, 0)),
                    ==, G_TYPE_DOUBLE);
    g_assert_cmpfloat(json_array_get_double_element(a, 1), ==, 100.0);
    g_assert_cmpint(json_array_get_int_element(a, 2), ==, INT64_MAX);
    g_assert_cmpint(json_array_get_int_element(a, 3), ==, INT64_MIN);
    g_assert_cmpint(json_node_get_value_type(json_array_get_element(a, 4)),
                    ==, G_TYPE_DOUBLE);
    g_assert_cmpfloat(json_array_get_double_element(a, 4), ==, 0x1p63);
    g_assert_cmpfloat(json_array_get_double_element(a, 5), ==, 1e20);
    g_assert_true(isinf(json_array_get_double_element(a, 6)));
    g_assert_cmpint(json_array_get_int_element(a, 7), ==, 0);
    g_assert_cmpint(json_array_get_int_element(a, 8), ==, 0);
}

static void test_json_strings(void)
{
    g_autoptr(JsonNode) n = NULL;
    JsonObject *o;

    n = parse_json_ok("{\"esc\": \"\\/\\b\\f\\n\\r\\t\\\\\\\"\\'\", "
                      "'sq': 'd\"\\'e', "
                      "\"u\": \"\\u0041\\u00e9\\u20ac\", "
                      "\"pair\": \"\\ud83d\\ude00\", "
                      "\"nul\": \"a\\u0000b\", "
                      "\"raw\": \"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\", "
                      "\"qnul\": \"\xc0\x80\", \"del\": \"\x7f\"}");
    o = json_node_get_object(n);
    g_assert_cmpstr(json_object_get_string_member(o, "esc"), ==,
                    "/\b\f\n\r\t\\\"'");
    g_assert_cmpstr(json_object_get_string_member(o, "sq"), ==, "d\"'e");
    g_assert_cmpstr(json_object_get_string_member(o, "u"), ==,
                    "A\xc3\xa9\xe2\x82\xac");
    g_assert_cmpstr(json_object_get_string_member(o, "pair"), ==,
                    "\xf0\x9f\x98\x80");
    /* NUL is kept in QEMU's two-byte form, so C strings survive. */
    g_assert_cmpstr(json_object_get_string_member(o, "nul"), ==,
                    "a\xc0\x80" "b");
    g_assert_cmpstr(json_object_get_string_member(o, "raw"), ==,
                    "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
    g_assert_cmpstr(json_object_get_string_member(o, "qnul"), ==,
                    "\xc0\x80");
    g_assert_cmpstr(json_object_get_string_member(o, "del"), ==, "\x7f");
}

static void test_json_errors(void)
{
    /* Each verified against "qemu-img info 'json:TEXT'" of QEMU 7.2. */
    static const struct {
        const char *in;
        const char *msg;
    } cases[] = {
        { "", "Expecting a JSON value" },
        { " \n\t\r ", "Expecting a JSON value" },
        { "{} {}", "Expecting at most one JSON value" },
        { "{\"a\":1}x", "Expecting at most one JSON value" },
        { "  {\"a\":1}  x", "Expecting at most one JSON value" },
        { "{\"a\":1}}", "Expecting at most one JSON value" },
        { "{\"a\":1}{", "Expecting at most one JSON value" },
        { "{\"a\":1}\"x", "Expecting at most one JSON value" },
        { "{\"a\": 1} /*c*/", "Expecting at most one JSON value" },
        { "[1]x", "Expecting at most one JSON value" },
        { "\"a\"}", "Expecting at most one JSON value" },
        { "{", "JSON parse error, premature EOI" },
        { "[", "JSON parse error, premature EOI" },
        { "{\"a\"", "JSON parse error, premature EOI" },
        { "{\"a\":", "JSON parse error, premature EOI" },
        { "{\"a\":1", "JSON parse error, premature EOI" },
        { "{\"a\":1,", "JSON parse error, premature EOI" },
        { "{\"a\":{\"b\":1}", "JSON parse error, premature EOI" },
        { "{\"a\":[1,2", "JSON parse error, premature EOI" },
        { "{\"a\":}", "JSON parse error, expecting value" },
        { "{\"a\":1,,}", "JSON parse error, expecting value" },
        { "{\"driver\":\"null-co\",}", "JSON parse error, expecting value" },
        { "{\"a\":[1,]}", "JSON parse error, expecting value" },
        { "{\"a\":[,]}", "JSON parse error, expecting value" },
        { "{,}", "JSON parse error, expecting value" },
        { "{:1}", "JSON parse error, expecting value" },
        { "[}", "JSON parse error, expecting value" },
        { "}", "JSON parse error, expecting value" },
        { "]", "JSON parse error, expecting value" },
        { "{\"a\" 1}", "JSON parse error, missing : in object pair" },
        { "{\"a\",}", "JSON parse error, missing : in object pair" },
        { "{\"a\" \"b\"}", "JSON parse error, missing : in object pair" },
        { "{\"a\":1,\"b\"}", "JSON parse error, missing : in object pair" },
        { "{1:2}", "JSON parse error, key is not a string in object" },
        { "{\"a\":1 \"b\":2}", "JSON parse error, expected separator in dict" },
        { "{\"a\":1]", "JSON parse error, expected separator in dict" },
        { "{\"a\":[1]]}", "JSON parse error, expected separator in dict" },
        { "{\"a\":\"x\"y}", "JSON parse error, expected separator in dict" },
        { "{\"a\":123abc}", "JSON parse error, expected separator in dict" },
        { "{\"a\":0x10}", "JSON parse error, expected separator in dict" },
        { "{\"a\":[1 2]}", "JSON parse error, expected separator in list" },
        { "{\"a\":tru}", "JSON parse error, invalid keyword 'tru'" },
        { "{\"a\":truex}", "JSON parse error, invalid keyword 'truex'" },
        { "{\"a\":nul}", "JSON parse error, invalid keyword 'nul'" },
        { "{a:1}", "JSON parse error, invalid keyword 'a'" },
        { "{\"a\":nulL}", "JSON parse error, stray 'L'" },
        { "{\"a\":tRue}", "JSON parse error, stray 'R'" },
        { "{\"a\":NaN}", "JSON parse error, stray 'N'" },
        { "{\"a\":%d}", "JSON parse error, stray '%'" },
        { "{\"a\":+1}", "JSON parse error, stray '+'" },
        { "{\"a\":.5}", "JSON parse error, stray '.'" },
        { "{\"a\":01}", "JSON parse error, stray '01'" },
        { "{\"a\":-01}", "JSON parse error, stray '-01'" },
        { "{\"a\":1.}", "JSON parse error, stray '1.}'" },
        { "{\"a\":-}", "JSON parse error, stray '-}'" },
        { "{\"a\":1e}", "JSON parse error, stray '1e}'" },
        { "{\"a\":1e+}", "JSON parse error, stray '1e+}'" },
        { "-", "JSON parse error, stray '-'" },
        { "{\"a\":\"b", "JSON parse error, stray '\"b'" },
        { "\"\\u12", "JSON parse error, stray '\"\\u12'" },
        { "{\"a\":\"b\"'}", "JSON parse error, stray ''}'" },
        { "{\"a\":\"x\ty\"}", "JSON parse error, stray '\"x\t'" },
        { "{\"a\":\"x\001y\"}", "JSON parse error, stray '\"x\001'" },
        { "{\"a\":\"x\377y\"}", "JSON parse error, stray '\"x\377'" },
        { "{\"a\":\"\\\001\"}", "JSON parse error, stray '\"\\\001'" },
        { "{\f\"a\":1}", "JSON parse error, stray '\f'" },
        { "{\v\"a\":1}", "JSON parse error, stray '\v'" },
        { "\xc3\xa9", "JSON parse error, stray '\xc3'" },
        /* A lexical error wins over a grammar error in the same value. */
        { "{1:2, \"a\":-}", "JSON parse error, stray '-}'" },
        { "{\"a\":1,\"a\":x}", "JSON parse error, invalid keyword 'x'" },
        { "{\"a\":true,\"a\":false}", "JSON parse error, duplicate key" },
        { "{\"a\":{\"b\":1,\"b\":2}}", "JSON parse error, duplicate key" },
        { "{\"a\":1,'a':2}", "JSON parse error, duplicate key" },
        { "{\"a\":\"\\x\"}",
          "JSON parse error, invalid escape sequence in string" },
        { "{\"a\":\"\\U0041\"}",
          "JSON parse error, invalid escape sequence in string" },
        { "{\"a\":\"\\u\"}",
          "JSON parse error, \\u\" is not a valid Unicode character" },
        { "{\"a\":\"\\u12\"}",
          "JSON parse error, \\u12\" is not a valid Unicode character" },
        { "{\"a\":\"\\uzzzz\"}",
          "JSON parse error, \\uzzzz is not a valid Unicode character" },
        { "{\"a\":\"\\ud800\"}",
          "JSON parse error, \\ud800 is not a valid Unicode character" },
        { "{\"a\":\"\\ud800x\"}",
          "JSON parse error, \\ud800 is not a valid Unicode character" },
        { "{\"a\":\"\\ud800\\ud800\"}",
          "JSON parse error, \\ud800 is not a valid Unicode character" },
        { "{\"a\":\"\\ud800\\u0041\"}",
          "JSON parse error, \\ud800 is not a valid Unicode character" },
        { "{\"a\":\"\\udc00\"}",
          "JSON parse error, \\udc00 is not a valid Unicode character" },
        { "{\"a\":\"\\uffff\"}",
          "JSON parse error, \\uffff is not a valid Unicode character" },
        { "{\"a\":\"\\ufffe\"}",
          "JSON parse error, \\ufffe is not a valid Unicode character" },
        { "{\"a\":\"\\ufdd0\"}",
          "JSON parse error, \\ufdd0 is not a valid Unicode character" },
        { "{\"a\":\"\\ud83f\\udfff\"}", "JSON parse error, "
          "\\ud83f\\udfff is not a valid Unicode character" },
        { "{\"a\":\"\\udbff\\udfff\"}", "JSON parse error, "
          "\\udbff\\udfff is not a valid Unicode character" },
        { "{\"a\":\"x\200y\"}",
          "JSON parse error, invalid UTF-8 sequence in string" },
        { "{\"a\":\"x\303\"}",
          "JSON parse error, invalid UTF-8 sequence in string" },
        { "{\"a\":\"x\375\"}",
          "JSON parse error, invalid UTF-8 sequence in string" },
        { "{\"a\":\"x\355\240\200\"}",
          "JSON parse error, invalid UTF-8 sequence in string" },
        { "{\"a\":\"x\364\220\200\200\"}",
          "JSON parse error, invalid UTF-8 sequence in string" },
        { "{\"a\":\"\340\200\200\"}",
          "JSON parse error, invalid UTF-8 sequence in string" },
        { "{\"a\":\"\300\201\"}",
          "JSON parse error, invalid UTF-8 sequence in string" },
        { "{\"a\":\"\357\277\277\"}",
          "JSON parse error, invalid UTF-8 sequence in string" },
        { "{\"a\200\":1}",
          "JSON parse error, invalid UTF-8 sequence in string" },
    };
    size_t i;

    for (i = 0; i < ARRAY_SIZE(cases); i++) {
        g_autoptr(GError) err = NULL;
        g_autoptr(JsonNode) n = keyval_json_parse(cases[i].in, &err);
        g_autofree char *shown = g_strescape(cases[i].in, NULL);

        g_test_message("input %s", shown);
        g_assert_null(n);
        g_assert_nonnull(err);
        g_assert_cmpstr(err->message, ==, cases[i].msg);
    }
}

static void test_json_nesting(void)
{
    g_autoptr(GString) ok = g_string_new("{\"a\":");
    g_autoptr(GString) deep = NULL;
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonNode) n = NULL;
    int i;

    /* One object plus 1023 arrays is the deepest QEMU takes. */
    for (i = 0; i < KEYVAL_JSON_MAX_NESTING - 1; i++) {
        g_string_append_c(ok, '[');
    }
    deep = g_string_new(ok->str);
    g_string_append_c(deep, '[');
    for (i = 0; i < KEYVAL_JSON_MAX_NESTING - 1; i++) {
        g_string_append_c(ok, ']');
        g_string_append_c(deep, ']');
    }
    g_string_append_c(ok, '}');
    g_string_append(deep, "]}");

    n = keyval_json_parse(ok->str, &err);
    g_assert_no_error(err);
    g_assert_nonnull(n);

    g_assert_null(keyval_json_parse(deep->str, &err));
    g_assert_cmpstr(err->message, ==, "JSON nesting depth limit exceeded");
}

/* ---- json: filenames ---- */

static void check_json_filename(const char *filename, const char *want)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonObject) o = keyval_parse_json_filename(filename, &err);

    g_assert_no_error(err);
    assert_obj_eq(o, want);
}

static void check_json_filename_error(const char *filename, const char *msg)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonObject) o = keyval_parse_json_filename(filename, &err);

    g_assert_null(o);
    g_assert_nonnull(err);
    g_assert_cmpstr(err->message, ==, msg);
}

static void test_json_filename(void)
{
    g_assert_true(keyval_is_json_filename("json:{}"));
    g_assert_false(keyval_is_json_filename("JSON:{}"));
    g_assert_false(keyval_is_json_filename("/tmp/json:{}"));

    check_json_filename("json:{}", "{}");
    check_json_filename("json: {\"driver\":\"null-co\"} ",
                        "{\"driver\": \"null-co\"}");
    check_json_filename("json:{'driver':'null-co'}",
                        "{\"driver\": \"null-co\"}");
    /* Native types survive. */
    check_json_filename("json:{\"size\": 2048, \"ro\": true, \"n\": null, "
                        "\"d\": 1.5}",
                        "{\"size\": 2048, \"ro\": true, \"n\": null, "
                        "\"d\": 1.5}");

    /* Dotted keys merge with nested ones, as in qemu-img. */
    check_json_filename("json:{\"driver\":\"raw\",\"file.driver\":\"null-co\","
                        "\"file.size\":\"1k\"}",
                        "{\"driver\": \"raw\", \"file\": "
                        "{\"driver\": \"null-co\", \"size\": \"1k\"}}");
    check_json_filename("json:{\"driver\":\"raw\","
                        "\"file\":{\"driver\":\"null-co\"},"
                        "\"file.size\":\"1k\"}",
                        "{\"driver\": \"raw\", \"file\": "
                        "{\"driver\": \"null-co\", \"size\": \"1k\"}}");
    /* The nested spelling wins, whatever the order (qemu-img: 2k, 5). */
    check_json_filename("json:{\"driver\":\"raw\","
                        "\"file\":{\"driver\":\"null-co\",\"size\":\"2k\"},"
                        "\"file.size\":\"1k\"}",
                        "{\"driver\": \"raw\", \"file\": "
                        "{\"driver\": \"null-co\", \"size\": \"2k\"}}");
    check_json_filename("json:{\"driver\":\"raw\",\"file.driver\":\"null-co\","
                        "\"file.size\":\"1k\", \"file\": {\"size\": 5}}",
                        "{\"driver\": \"raw\", \"file\": "
                        "{\"driver\": \"null-co\", \"size\": 5}}");
    /* Arrays, in both spellings. */
    check_json_filename("json:{\"x.0\":\"a\",\"x.1\":\"b\"}",
                        "{\"x\": [\"a\", \"b\"]}");
    check_json_filename("json:{\"x\":{\"0\":\"a\"}}", "{\"x\": [\"a\"]}");
    check_json_filename("json:{\"x\":[{\"a\":1},[2,3]], \"x.0.b\": 4}",
                        "{\"x\": [{\"a\": 1, \"b\": 4}, [2, 3]]}");
    /* ".." escapes a dot inside a name; empty containers stay. */
    check_json_filename("json:{\"a..b\":\"x\", \"e\": {}, \"l\": []}",
                        "{\"a.b\": \"x\", \"e\": {}, \"l\": []}");

    check_json_filename_error("json:",
        "Could not parse the JSON options: Expecting a JSON value");
    check_json_filename_error("json:{",
        "Could not parse the JSON options: JSON parse error, premature EOI");
    check_json_filename_error("json:{} {}",
        "Could not parse the JSON options: Expecting at most one JSON value");
    check_json_filename_error("json:{\"driver\":\"null-co\","
                              "\"driver\":\"raw\"}",
        "Could not parse the JSON options: JSON parse error, duplicate key");
    check_json_filename_error("json:[1]", "Invalid JSON object given");
    check_json_filename_error("json:1", "Invalid JSON object given");
    check_json_filename_error("json:\"x\"", "Invalid JSON object given");
    check_json_filename_error("json:null", "Invalid JSON object given");
    /* Conflicting spellings, with qdict_crumple()'s texts. */
    check_json_filename_error("json:{\"file\":\"x\",\"file.size\":\"1k\"}",
                              "Cannot mix scalar and non-scalar keys");
    check_json_filename_error("json:{\"s.h.0\":\"x\",\"s.h.a\":\"y\"}",
                              "Cannot mix list and non-list keys");
    check_json_filename_error("/tmp/x.img",
        "Filename '/tmp/x.img' does not start with 'json:'");
}

/* ---- Flatten and crumple ---- */

static void test_flatten(void)
{
    g_autoptr(JsonObject) src = obj_from_json(
        "{\"driver\": \"raw\", \"file\": {\"driver\": \"file\", "
        "\"cache\": {\"direct\": true}}, \"l\": [1, {\"a\": \"x\"}, [2]], "
        "\"e\": {}, \"el\": [], \"n\": null}");
    g_autoptr(JsonObject) flat = json_object_new();
    g_autoptr(JsonObject) dest = obj_from_json("{\"keep\": 1, "
                                               "\"driver\": \"old\"}");
    g_autofree char *before = obj_to_string(src);
    g_autofree char *after = NULL;

    keyval_flatten(src, flat);
    assert_obj_eq(flat, "{\"driver\": \"raw\", \"file.driver\": \"file\", "
                  "\"file.cache.direct\": true, \"l.0\": 1, \"l.1.a\": \"x\", "
                  "\"l.2.0\": 2, \"e\": {}, \"el\": [], \"n\": null}");
    after = obj_to_string(src);
    g_assert_cmpstr(before, ==, after);

    /* Copies are deep: changing the result leaves the source alone. */
    json_object_set_int_member(json_object_get_object_member(flat, "e"),
                               "new", 1);
    g_assert_cmpint(json_object_get_size(
                        json_object_get_object_member(src, "e")), ==, 0);

    /* Existing members of @dest are replaced, others kept. */
    keyval_flatten(src, dest);
    g_assert_cmpint(json_object_get_int_member(dest, "keep"), ==, 1);
    g_assert_cmpstr(json_object_get_string_member(dest, "driver"), ==,
                    "raw");
}

static void test_flatten_merge(void)
{
    g_autoptr(JsonObject) src = obj_from_json(
        "{\"a\": {\"b.c\": 1, \"b\": {\"c\": 2}}, \"x.y\": 3, "
        "\"x\": {\"y\": 4, \"z\": 5}}");
    g_autoptr(JsonObject) flat = json_object_new();

    /* The more deeply nested spelling wins at every level. */
    keyval_flatten(src, flat);
    assert_obj_eq(flat, "{\"a.b.c\": 2, \"x.y\": 4, \"x.z\": 5}");
}

static void check_crumple(const char *flat_json, const char *want)
{
    g_autoptr(JsonObject) flat = obj_from_json(flat_json);
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonObject) o = keyval_crumple(flat, &err);

    g_assert_no_error(err);
    assert_obj_eq(o, want);
}

static void check_crumple_error(const char *flat_json, const char *msg)
{
    g_autoptr(JsonObject) flat = obj_from_json(flat_json);
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonObject) o = keyval_crumple(flat, &err);

    g_assert_null(o);
    g_assert_nonnull(err);
    g_assert_cmpstr(err->message, ==, msg);
}

static void test_crumple(void)
{
    check_crumple("{}", "{}");
    check_crumple("{\"a\": 1, \"b\": \"x\"}", "{\"a\": 1, \"b\": \"x\"}");
    check_crumple("{\"file.driver\": \"f\", \"file.x.y\": true}",
                  "{\"file\": {\"driver\": \"f\", \"x\": {\"y\": true}}}");
    check_crumple("{\"l.1\": \"b\", \"l.0\": \"a\"}",
                  "{\"l\": [\"a\", \"b\"]}");
    check_crumple("{\"l.0.a\": 1, \"l.1.0\": 2, \"l.1.1\": 3}",
                  "{\"l\": [{\"a\": 1}, [2, 3]]}");
    /* The top level stays an object even with index keys. */
    check_crumple("{\"0\": \"a\"}", "{\"0\": \"a\"}");
    /* ".." is a literal dot; a trailing dot makes an empty name. */
    check_crumple("{\"a..b\": 1, \"c...d\": 2, \"e.\": 3}",
                  "{\"a.b\": 1, \"c.\": {\"d\": 2}, \"e\": {\"\": 3}}");
    /* Non-scalar values are leaves. */
    check_crumple("{\"a.b\": {}, \"c\": [1]}",
                  "{\"a\": {\"b\": {}}, \"c\": [1]}");

    check_crumple_error("{\"s.h\": \"x\", \"s.h.a\": \"y\"}",
                        "Cannot mix scalar and non-scalar keys");
    check_crumple_error("{\"s.h.a\": \"y\", \"s.h\": \"x\"}",
                        "Cannot mix scalar and non-scalar keys");
    check_crumple_error("{\"a\": {}, \"a.b\": 1}",
                        "Cannot mix scalar and non-scalar keys");
    check_crumple_error("{\"s.h.0\": \"x\", \"s.h.a\": \"y\"}",
                        "Cannot mix list and non-list keys");
    check_crumple_error("{\"s.h.1\": \"x\"}",
                        "List indices are not contiguous, saw 1 elements "
                        "but 1 largest index");
    check_crumple_error("{\"s.h.0\": \"x\", \"s.h.2\": \"y\"}",
                        "List indices are not contiguous, saw 2 elements "
                        "but 2 largest index");
    check_crumple_error("{\"s.h.0\": \"x\", \"s.h.00\": \"y\"}",
                        "List indices are not contiguous, saw 2 elements "
                        "but 0 largest index");
    check_crumple_error("{\"s.h.00\": \"x\"}", "Missing list index 0");
}

static void check_round_trip(const char *json)
{
    g_autoptr(JsonObject) src = obj_from_json(json);
    g_autoptr(JsonObject) flat = json_object_new();
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonObject) back = NULL;

    keyval_flatten(src, flat);
    back = keyval_crumple(flat, &err);
    g_assert_no_error(err);
    assert_obj_eq(back, json);
}

static void test_round_trip(void)
{
    g_autoptr(JsonObject) parsed = NULL;
    g_autoptr(JsonObject) flat = json_object_new();
    g_autoptr(JsonObject) back = NULL;
    g_autofree char *text = NULL;

    check_round_trip("{}");
    check_round_trip("{\"driver\": \"qcow2\", \"file\": {\"driver\": "
                     "\"file\", \"filename\": \"/x\", \"aio\": \"native\"}, "
                     "\"backing\": null, \"cache\": {\"direct\": true, "
                     "\"no-flush\": false}, \"size\": 1073741824}");
    check_round_trip("{\"children\": [{\"driver\": \"null-co\"}, \"node1\", "
                     "[1, 2, [3]]], \"e\": {}, \"l\": [], "
                     "\"deep\": {\"a\": {\"b\": {\"c\": {\"d\": 1.25}}}}}");

    /* Dotted syntax -> flat -> nested gives the parser's own result. */
    parsed = keyval_parse("driver=quorum,children.0.driver=null-co,"
                          "children.1=n1,vote-threshold=1", NULL, NULL);
    g_assert_nonnull(parsed);
    keyval_flatten(parsed, flat);
    assert_obj_eq(flat, "{\"driver\": \"quorum\", "
                  "\"children.0.driver\": \"null-co\", "
                  "\"children.1\": \"n1\", \"vote-threshold\": \"1\"}");
    back = keyval_crumple(flat, NULL);
    text = obj_to_string(parsed);
    assert_obj_eq(back, text);
}

/* ---- Getters ---- */

static void test_lookup(void)
{
    g_autoptr(JsonObject) o = obj_from_json(
        "{\"cache\": {\"direct\": true}, \"s\": [{\"host\": \"h\"}, 7], "
        "\"lit.eral\": 1, \"x\": 5}");

    g_assert_true(json_node_get_boolean(keyval_lookup(o, "cache.direct")));
    g_assert_cmpstr(json_node_get_string(keyval_lookup(o, "s.0.host")), ==,
                    "h");
    g_assert_cmpint(json_node_get_int(keyval_lookup(o, "s.1")), ==, 7);
    g_assert_cmpint(json_node_get_int(keyval_lookup(o, "lit.eral")), ==, 1);
    g_assert_true(JSON_NODE_HOLDS_OBJECT(keyval_lookup(o, "cache")));
    g_assert_null(keyval_lookup(o, "missing"));
    g_assert_null(keyval_lookup(o, "cache.missing"));
    g_assert_null(keyval_lookup(o, "s.2"));
    g_assert_null(keyval_lookup(o, "s.x"));
    g_assert_null(keyval_lookup(o, "x.y"));
    g_assert_null(keyval_lookup(o, "cache.direct.z"));
}

static void test_get_bool(void)
{
    static const char *const yes[] = { "on", "yes", "true", "y" };
    static const char *const no[] = { "off", "no", "false", "n" };
    static const char *const bad[] = { "ON", "True", "1", "0", "", "xx",
                                       " on", "on " };
    g_autoptr(JsonObject) o = obj_from_json(
        "{\"t\": true, \"f\": false, \"i\": 1, \"d\": 0.0, \"n\": null, "
        "\"o\": {}, \"a\": [], \"c\": {\"x\": \"on\"}}");
    g_autoptr(GError) err = NULL;
    bool v;
    size_t i;

    for (i = 0; i < ARRAY_SIZE(yes); i++) {
        json_object_set_string_member(o, "s", yes[i]);
        v = false;
        g_assert_true(keyval_get_bool(o, "s", false, &v, &err));
        g_assert_no_error(err);
        g_assert_true(v);
    }
    for (i = 0; i < ARRAY_SIZE(no); i++) {
        json_object_set_string_member(o, "s", no[i]);
        v = true;
        g_assert_true(keyval_get_bool(o, "s", true, &v, NULL));
        g_assert_false(v);
    }
    for (i = 0; i < ARRAY_SIZE(bad); i++) {
        json_object_set_string_member(o, "s", bad[i]);
        v = true;
        g_assert_false(keyval_get_bool(o, "s", false, &v, &err));
        g_assert_cmpstr(err->message, ==, "Parameter 's' expects 'on' or "
                        "'off'");
        g_assert_true(v);
        g_clear_error(&err);
    }

    g_assert_true(keyval_get_bool(o, "t", false, &v, NULL));
    g_assert_true(v);
    g_assert_true(keyval_get_bool(o, "f", true, &v, NULL));
    g_assert_false(v);
    g_assert_true(keyval_get_bool(o, "c.x", false, &v, NULL));
    g_assert_true(v);
    /* Missing and null give the default. */
    g_assert_true(keyval_get_bool(o, "missing", true, &v, NULL));
    g_assert_true(v);
    g_assert_true(keyval_get_bool(o, "n", false, &v, NULL));
    g_assert_false(v);

    /* qemu-img: json:{"read-zeroes": 1} */
    g_assert_false(keyval_get_bool(o, "i", false, &v, &err));
    g_assert_cmpstr(err->message, ==, "Parameter 'i' expects 'on' or 'off'");
    g_clear_error(&err);
    g_assert_false(keyval_get_bool(o, "d", false, &v, &err));
    g_clear_error(&err);
    g_assert_false(keyval_get_bool(o, "o", false, &v, &err));
    g_assert_cmpstr(err->message, ==, "Invalid parameter type for 'o', "
                    "expected: boolean");
    g_clear_error(&err);
    g_assert_false(keyval_get_bool(o, "a", false, &v, &err));
    g_assert_cmpstr(err->message, ==, "Invalid parameter type for 'a', "
                    "expected: boolean");
}

typedef struct NumCase {
    const char *in;
    bool ok;
    uint64_t val;
} NumCase;

static void test_get_uint(void)
{
    /* Strings as qemu-img's latency-ns=... parses them. */
    static const NumCase cases[] = {
        { "0", true, 0 },
        { "42", true, 42 },
        { "0x10", true, 16 },
        { "0X1f", true, 31 },
        { "010", true, 8 },
        { " 5", true, 5 },
        { "+5", true, 5 },
        { "-5", true, UINT64_MAX - 4 },
        { "-1", true, UINT64_MAX },
        { "18446744073709551615", true, UINT64_MAX },
        { "08", false, 0 },
        { "10 ", false, 0 },
        { "", false, 0 },
        { "abc", false, 0 },
        { "1e3", false, 0 },
        { "1.5", false, 0 },
        { "1k", false, 0 },
        { "0x", false, 0 },
        { "-", false, 0 },
    };
    g_autoptr(JsonObject) o = obj_from_json(
        "{\"i\": 7, \"neg\": -5, \"d\": 1e3, \"frac\": 0.1, \"b\": true, "
        "\"n\": null, \"a\": [1], \"o\": {\"k\": \"0x20\"}}");
    g_autoptr(GError) err = NULL;
    uint64_t v;
    size_t i;

    for (i = 0; i < ARRAY_SIZE(cases); i++) {
        g_test_message("input '%s'", cases[i].in);
        json_object_set_string_member(o, "latency-ns", cases[i].in);
        v = 12345;
        if (cases[i].ok) {
            g_assert_true(keyval_get_uint(o, "latency-ns", 0, &v, &err));
            g_assert_no_error(err);
            g_assert_cmpuint(v, ==, cases[i].val);
        } else {
            g_assert_false(keyval_get_uint(o, "latency-ns", 0, &v, &err));
            g_assert_cmpstr(err->message, ==,
                            "Parameter 'latency-ns' expects a number");
            g_assert_cmpuint(v, ==, 12345);
            g_clear_error(&err);
        }
    }

    json_object_set_string_member(o, "big", "18446744073709551616");
    g_assert_false(keyval_get_uint(o, "big", 0, &v, &err));
    g_assert_cmpstr(err->message, ==, "Value '18446744073709551616' is too "
                    "large for parameter 'big'");
    g_clear_error(&err);
    json_object_set_string_member(o, "big", "-99999999999999999999");
    g_assert_false(keyval_get_uint(o, "big", 0, &v, &err));
    g_assert_cmpstr(err->message, ==, "Value '-99999999999999999999' is too "
                    "large for parameter 'big'");
    g_clear_error(&err);

    /* Native JSON values, converted as QEMU writes them. */
    g_assert_true(keyval_get_uint(o, "i", 0, &v, NULL));
    g_assert_cmpuint(v, ==, 7);
    g_assert_true(keyval_get_uint(o, "neg", 0, &v, NULL));
    g_assert_cmpuint(v, ==, UINT64_MAX - 4);
    g_assert_true(keyval_get_uint(o, "d", 0, &v, NULL));
    g_assert_cmpuint(v, ==, 1000);
    g_assert_true(keyval_get_uint(o, "o.k", 0, &v, NULL));
    g_assert_cmpuint(v, ==, 32);
    g_assert_false(keyval_get_uint(o, "frac", 0, &v, &err));
    g_assert_cmpstr(err->message, ==, "Parameter 'frac' expects a number");
    g_clear_error(&err);
    g_assert_false(keyval_get_uint(o, "b", 0, &v, &err));
    g_assert_cmpstr(err->message, ==, "Parameter 'b' expects a number");
    g_clear_error(&err);
    g_assert_false(keyval_get_uint(o, "a", 0, &v, &err));
    g_assert_cmpstr(err->message, ==, "Invalid parameter type for 'a', "
                    "expected: integer");
    g_clear_error(&err);
    g_assert_true(keyval_get_uint(o, "n", 99, &v, NULL));
    g_assert_cmpuint(v, ==, 99);
    g_assert_true(keyval_get_uint(o, "missing", 98, &v, NULL));
    g_assert_cmpuint(v, ==, 98);
}

static void test_get_int(void)
{
    g_autoptr(JsonObject) o = obj_from_json(
        "{\"s\": \"-0x10\", \"i\": -9223372036854775808, \"d\": -2.0, "
        "\"o\": {}, \"big\": \"9223372036854775808\", "
        "\"small\": \"-9223372036854775809\", \"bad\": \"1x\", "
        "\"max\": \"9223372036854775807\"}");
    g_autoptr(GError) err = NULL;
    int64_t v;

    g_assert_true(keyval_get_int(o, "s", 0, &v, NULL));
    g_assert_cmpint(v, ==, -16);
    g_assert_true(keyval_get_int(o, "i", 0, &v, NULL));
    g_assert_cmpint(v, ==, INT64_MIN);
    g_assert_true(keyval_get_int(o, "d", 0, &v, NULL));
    g_assert_cmpint(v, ==, -2);
    g_assert_true(keyval_get_int(o, "max", 0, &v, NULL));
    g_assert_cmpint(v, ==, INT64_MAX);
    g_assert_true(keyval_get_int(o, "missing", -3, &v, NULL));
    g_assert_cmpint(v, ==, -3);

    v = 77;
    g_assert_false(keyval_get_int(o, "big", 0, &v, &err));
    g_assert_cmpstr(err->message, ==, "Value '9223372036854775808' is too "
                    "large for parameter 'big'");
    g_clear_error(&err);
    g_assert_false(keyval_get_int(o, "small", 0, &v, &err));
    g_assert_cmpstr(err->message, ==, "Value '-9223372036854775809' is too "
                    "large for parameter 'small'");
    g_clear_error(&err);
    g_assert_false(keyval_get_int(o, "bad", 0, &v, &err));
    g_assert_cmpstr(err->message, ==, "Parameter 'bad' expects a number");
    g_clear_error(&err);
    g_assert_false(keyval_get_int(o, "o", 0, &v, &err));
    g_assert_cmpstr(err->message, ==, "Invalid parameter type for 'o', "
                    "expected: integer");
    g_assert_cmpint(v, ==, 77);
}

static void test_get_size(void)
{
    g_autoptr(JsonObject) o = keyval_parse(
        "a=1.5G,b=1k,c=512,d=0x10,e=16E,f=abc,g=-1,h=1.5,"
        "i=99999999999999999999,j=17179869184G,k=1.5M,"
        "l=99999999999999999999k", NULL, NULL);
    g_autoptr(JsonObject) n = obj_from_json(
        "{\"i\": 2048, \"neg\": -1, \"d\": 1024.0, \"e\": 1e3, "
        "\"frac\": 1.5, \"b\": true, \"z\": null, \"o\": {\"a\": 1}}");
    g_autoptr(GError) err = NULL;
    uint64_t v;

    g_assert_nonnull(o);
    g_assert_true(keyval_get_size(o, "a", 0, &v, NULL));
    g_assert_cmpuint(v, ==, 1610612736);
    g_assert_true(keyval_get_size(o, "b", 0, &v, NULL));
    g_assert_cmpuint(v, ==, 1024);
    g_assert_true(keyval_get_size(o, "c", 0, &v, NULL));
    g_assert_cmpuint(v, ==, 512);
    g_assert_true(keyval_get_size(o, "d", 0, &v, NULL));
    g_assert_cmpuint(v, ==, 16);
    g_assert_true(keyval_get_size(o, "k", 0, &v, NULL));
    g_assert_cmpuint(v, ==, 1572864);
    g_assert_true(keyval_get_size(o, "missing", 4096, &v, NULL));
    g_assert_cmpuint(v, ==, 4096);

    /* qemu-img info --image-opts driver=null-co,size=... */
    g_assert_false(keyval_get_size(o, "e", 0, &v, &err));
    g_assert_cmpstr(err->message, ==, "Value '16E' is out of range for "
                    "parameter 'e'");
    g_clear_error(&err);
    g_assert_false(keyval_get_size(o, "i", 0, &v, &err));
    g_assert_cmpstr(err->message, ==, "Value '99999999999999999999' is out "
                    "of range for parameter 'i'");
    g_clear_error(&err);
    g_assert_false(keyval_get_size(o, "j", 0, &v, &err));
    g_assert_cmpstr(err->message, ==, "Value '17179869184G' is out of range "
                    "for parameter 'j'");
    g_clear_error(&err);
    g_assert_false(keyval_get_size(o, "f", 0, &v, &err));
    g_assert_cmpstr(err->message, ==, "Parameter 'f' expects a non-negative "
                    "number below 2^64");
    g_clear_error(&err);
    g_assert_false(keyval_get_size(o, "g", 0, &v, &err));
    g_assert_cmpstr(err->message, ==, "Parameter 'g' expects a non-negative "
                    "number below 2^64");
    g_clear_error(&err);
    g_assert_false(keyval_get_size(o, "h", 0, &v, &err));
    g_assert_cmpstr(err->message, ==, "Parameter 'h' expects a non-negative "
                    "number below 2^64");
    g_clear_error(&err);
    g_assert_false(keyval_get_size(o, "l", 0, &v, &err));
    g_assert_cmpstr(err->message, ==, "Parameter 'l' expects a non-negative "
                    "number below 2^64");
    g_clear_error(&err);

    /* qemu-img info 'json:{"driver":"null-co","size":...}' */
    g_assert_true(keyval_get_size(n, "i", 0, &v, NULL));
    g_assert_cmpuint(v, ==, 2048);
    g_assert_true(keyval_get_size(n, "d", 0, &v, NULL));
    g_assert_cmpuint(v, ==, 1024);
    g_assert_true(keyval_get_size(n, "e", 0, &v, NULL));
    g_assert_cmpuint(v, ==, 1000);
    g_assert_true(keyval_get_size(n, "z", 7, &v, NULL));
    g_assert_cmpuint(v, ==, 7);
    g_assert_false(keyval_get_size(n, "neg", 0, &v, &err));
    g_assert_cmpstr(err->message, ==, "Parameter 'neg' expects a "
                    "non-negative number below 2^64");
    g_clear_error(&err);
    g_assert_false(keyval_get_size(n, "frac", 0, &v, &err));
    g_assert_cmpstr(err->message, ==, "Parameter 'frac' expects a "
                    "non-negative number below 2^64");
    g_clear_error(&err);
    g_assert_false(keyval_get_size(n, "b", 0, &v, &err));
    g_assert_cmpstr(err->message, ==, "Parameter 'b' expects a "
                    "non-negative number below 2^64");
    g_clear_error(&err);
    g_assert_false(keyval_get_size(n, "o", 0, &v, &err));
    g_assert_cmpstr(err->message, ==, "Invalid parameter type for 'o', "
                    "expected: integer");
}

static void test_get_str(void)
{
    g_autoptr(JsonObject) o = obj_from_json(
        "{\"s\": \"x,y\", \"i\": 42, \"neg\": -1, \"t\": true, \"f\": false, "
        "\"d\": 0.1, \"z\": null, \"a\": [\"x\"], \"o\": {\"p\": \"q\"}}");
    g_autoptr(GError) err = NULL;
    char *v = NULL;

    g_assert_true(keyval_get_str(o, "s", NULL, &v, NULL));
    g_assert_cmpstr(v, ==, "x,y");
    g_free(v);
    g_assert_true(keyval_get_str(o, "i", NULL, &v, NULL));
    g_assert_cmpstr(v, ==, "42");
    g_free(v);
    g_assert_true(keyval_get_str(o, "neg", NULL, &v, NULL));
    g_assert_cmpstr(v, ==, "-1");
    g_free(v);
    g_assert_true(keyval_get_str(o, "t", NULL, &v, NULL));
    g_assert_cmpstr(v, ==, "on");
    g_free(v);
    g_assert_true(keyval_get_str(o, "f", NULL, &v, NULL));
    g_assert_cmpstr(v, ==, "off");
    g_free(v);
    g_assert_true(keyval_get_str(o, "d", NULL, &v, NULL));
    g_assert_cmpstr(v, ==, "0.10000000000000001");
    g_free(v);
    g_assert_true(keyval_get_str(o, "o.p", NULL, &v, NULL));
    g_assert_cmpstr(v, ==, "q");
    g_free(v);

    g_assert_true(keyval_get_str(o, "z", "dflt", &v, NULL));
    g_assert_cmpstr(v, ==, "dflt");
    g_free(v);
    g_assert_true(keyval_get_str(o, "missing", "dflt", &v, NULL));
    g_assert_cmpstr(v, ==, "dflt");
    g_free(v);
    v = (char *)"unchanged";
    g_assert_true(keyval_get_str(o, "missing", NULL, &v, NULL));
    g_assert_null(v);

    v = (char *)"unchanged";
    g_assert_false(keyval_get_str(o, "a", NULL, &v, &err));
    g_assert_cmpstr(err->message, ==, "Invalid parameter type for 'a', "
                    "expected: string");
    g_assert_cmpstr(v, ==, "unchanged");
    g_clear_error(&err);
    g_assert_false(keyval_get_str(o, "o", NULL, &v, &err));
    g_assert_cmpstr(err->message, ==, "Invalid parameter type for 'o', "
                    "expected: string");
}

/* ---- qemu_strtosz ---- */

static void test_strtosz(void)
{
    /*
     * Results as QEMU 7.2 gives them: "qemu-io -c 'read SIZE 1'" for the
     * exact values, --image-opts size=SIZE for the errors.
     */
    static const struct {
        const char *in;
        int ret;
        uint64_t val;
    } cases[] = {
        { "0", 0, 0 },
        { "16", 0, 16 },
        { "1b", 0, 1 },
        { "1B", 0, 1 },
        { "1k", 0, 1024 },
        { "1K", 0, 1024 },
        { "2m", 0, 2 << 20 },
        { "2M", 0, 2 << 20 },
        { "3g", 0, 3ULL << 30 },
        { "3G", 0, 3ULL << 30 },
        { "4t", 0, 4ULL << 40 },
        { "4T", 0, 4ULL << 40 },
        { "5p", 0, 5ULL << 50 },
        { "5P", 0, 5ULL << 50 },
        { "6e", 0, 6ULL << 60 },
        { "6E", 0, 6ULL << 60 },
        { "1.5k", 0, 1536 },
        { "1.5M", 0, 1572864 },
        { "1.5g", 0, 1610612736 },
        { "1.5t", 0, 1649267441664ULL },
        { "1.5p", 0, 1688849860263936ULL },
        { "1.5E", 0, 1729382256910270464ULL },
        { "1.5e", 0, 1729382256910270464ULL },
        { "0.5k", 0, 512 },
        { "0.1k", 0, 102 },
        { "0.7k", 0, 717 },
        { "2.5m", 0, 2621440 },
        { "0.3333333333333333333333k", 0, 341 },
        { "1.0000000001k", 0, 1024 },
        { "1.9999999999k", 0, 2048 },
        { "0.000000001k", 0, 0 },
        { "0.0000000000000000001E", 0, 0 },
        { "1.00000000000000000001E", 0, 1ULL << 60 },
        { "6.9999999999999999E", 0, 8070450532247928704ULL },
        { "0.00048828125k", 0, 1 },
        { "0.000244140625k", 0, 0 },
        { "1.", 0, 1 },
        { "1.k", 0, 1024 },
        { "1.0", 0, 1 },
        { "1.0b", 0, 1 },
        { "0.0b", 0, 0 },
        { "00.5k", 0, 512 },
        { "0x10", 0, 16 },
        { "0X1F", 0, 31 },
        { "0x1e", 0, 30 },
        { "0x10k", 0, 16384 },
        { "0xffffffffffffffff", 0, UINT64_MAX },
        { "010", 0, 10 },
        { "08", 0, 8 },
        { "+1", 0, 1 },
        { " 10", 0, 10 },
        { "\t1", 0, 1 },
        { "15E", 0, 15ULL << 60 },
        { "5.9E", 0, 6802236877180397184ULL },
        { "15.9E", 0, 18331451923248866944ULL },
        { "17179869183G", 0, 17179869183ULL << 30 },
        { "18446744073709551615", 0, UINT64_MAX },
        { "", -EINVAL, 0 },
        { "k", -EINVAL, 0 },
        { "1.5", -EINVAL, 0 },
        { "1.5b", -EINVAL, 0 },
        { "1.5B", -EINVAL, 0 },
        { "1.25b", -EINVAL, 0 },
        { "0.5b", -EINVAL, 0 },
        { "1.1b", -EINVAL, 0 },
        { "0x1.8k", -EINVAL, 0 },
        { "0x0.k", -EINVAL, 0 },
        { "0x", -EINVAL, 0 },
        { "0xk", -EINVAL, 0 },
        { "10 ", -EINVAL, 0 },
        { "10 k", -EINVAL, 0 },
        { "1e3", -EINVAL, 0 },
        { "1.e5", -EINVAL, 0 },
        { "1.5e1k", -EINVAL, 0 },
        { "1.5e+1k", -EINVAL, 0 },
        { "1.5e-1k", -EINVAL, 0 },
        { "1kb", -EINVAL, 0 },
        { "1KiB", -EINVAL, 0 },
        { "1x", -EINVAL, 0 },
        { "1.5kx", -EINVAL, 0 },
        { "1.5.k", -EINVAL, 0 },
        { "-0", -EINVAL, 0 },
        { "-1", -EINVAL, 0 },
        { "+-1", -EINVAL, 0 },
        { "- 1", -EINVAL, 0 },
        { ".5k", -EINVAL, 0 },
        { "nan", -EINVAL, 0 },
        { "inf", -EINVAL, 0 },
        { "2.2250738585072014e-308", -EINVAL, 0 },
        { "99999999999999999999k", -EINVAL, 0 },
        { "16E", -ERANGE, 0 },
        { "16.0E", -ERANGE, 0 },
        { "17179869184G", -ERANGE, 0 },
        { "18446744073709551616", -ERANGE, 0 },
        { "99999999999999999999", -ERANGE, 0 },
        { "0x10000000000000000", -ERANGE, 0 },
    };
    size_t i;

    for (i = 0; i < ARRAY_SIZE(cases); i++) {
        uint64_t v = 0xdeadbeef;
        int ret = qemu_strtosz(cases[i].in, NULL, &v);

        uint64_t want = cases[i].ret ? 0xdeadbeef : cases[i].val;

        g_test_message("input '%s'", cases[i].in);
        g_assert_cmpint(ret, ==, cases[i].ret);
        g_assert_cmpuint(v, ==, want);
    }
    g_assert_cmpint(qemu_strtosz(NULL, NULL, &(uint64_t){0}), ==, -EINVAL);
}

static void test_strtosz_end(void)
{
    const char *end = NULL;
    uint64_t v = 0;
    static const char *const text[] = { "1.5kx", "12,rest", "3M", "7",
                                        "1e3", "0x10k!" };
    static const size_t consumed[] = { 4, 2, 2, 1, 2, 5 };
    static const uint64_t val[] = { 1536, 12, 3 << 20, 7, 1ULL << 60,
                                    16384 };
    size_t i;

    for (i = 0; i < ARRAY_SIZE(text); i++) {
        g_assert_cmpint(qemu_strtosz(text[i], &end, &v), ==, 0);
        g_assert_cmpuint(v, ==, val[i]);
        g_assert_true(end == text[i] + consumed[i]);
    }
    /* On failure *end is the start of the string. */
    {
        const char *bad = "x";

        g_assert_cmpint(qemu_strtosz(bad, &end, &v), ==, -EINVAL);
        g_assert_true(end == bad);
        bad = "1.5b";

        g_assert_cmpint(qemu_strtosz(bad, &end, &v), ==, -EINVAL);
        g_assert_true(end == bad);
        bad = "16Ex";
        g_assert_cmpint(qemu_strtosz(bad, &end, &v), ==, -ERANGE);
        g_assert_true(end == bad);
        /* With @end, junk after an overflowing number stays ERANGE. */
        bad = "99999999999999999999k";
        g_assert_cmpint(qemu_strtosz(bad, &end, &v), ==, -ERANGE);
    }
}

/* ---- Unknown options ---- */

static void test_find_unknown(void)
{
    static const char *const null_co[] = { "size", "latency-ns",
                                           "read-zeroes", NULL };
    static const char *const raw[] = { "file", "offset", "cache.direct",
                                       "cache.no-flush", NULL };
    g_autoptr(JsonObject) o = NULL;
    char *u;

    o = keyval_parse("size=1k,read-zeroes=on", NULL, NULL);
    g_assert_null(keyval_find_unknown(o, null_co));
    json_object_unref(o);

    o = keyval_parse("size=1k,bogus=1,other=2", NULL, NULL);
    u = keyval_find_unknown(o, null_co);
    g_assert_cmpstr(u, ==, "bogus");
    g_free(u);
    /* A NULL list accepts nothing; an empty object has nothing. */
    u = keyval_find_unknown(o, NULL);
    g_assert_cmpstr(u, ==, "size");
    g_free(u);
    json_object_unref(o);
    o = json_object_new();
    g_assert_null(keyval_find_unknown(o, NULL));
    json_object_unref(o);

    /* A name covers its whole subtree; dotted names only their leaf. */
    o = keyval_parse("file.driver=null-co,file.bogus=1,cache.direct=on,"
                     "cache.no-flush=off", NULL, NULL);
    g_assert_null(keyval_find_unknown(o, raw));
    json_object_set_string_member(json_object_get_object_member(o, "cache"),
                                  "writeback", "on");
    u = keyval_find_unknown(o, raw);
    g_assert_cmpstr(u, ==, "cache.writeback");
    g_free(u);
    json_object_unref(o);
    o = keyval_parse("cache=x", NULL, NULL);
    u = keyval_find_unknown(o, raw);
    g_assert_cmpstr(u, ==, "cache");
    g_free(u);
    json_object_unref(o);

    /* Leftovers are named down to a leaf, as QEMU flattens them. */
    o = obj_from_json("{\"size\": 1, \"bogus\": {\"a\": {\"b\": 1}}}");
    u = keyval_find_unknown(o, null_co);
    g_assert_cmpstr(u, ==, "bogus.a.b");
    g_free(u);
    json_object_unref(o);
    o = obj_from_json("{\"x\": [[\"a\"], 2]}");
    u = keyval_find_unknown(o, null_co);
    g_assert_cmpstr(u, ==, "x.0.0");
    g_free(u);
    json_object_unref(o);
    o = obj_from_json("{\"bogus\": null}");
    u = keyval_find_unknown(o, null_co);
    g_assert_cmpstr(u, ==, "bogus");
    g_free(u);
    json_object_unref(o);
    o = obj_from_json("{\"bogus\": {}}");
    u = keyval_find_unknown(o, null_co);
    g_assert_cmpstr(u, ==, "bogus");
    g_free(u);
    json_object_unref(o);
    o = obj_from_json("{\"bogus\": []}");
    u = keyval_find_unknown(o, null_co);
    g_assert_cmpstr(u, ==, "bogus");
    g_free(u);
    json_object_unref(g_steal_pointer(&o));
}

static void test_check_unused(void)
{
    static const char *const null_co[] = { "size", "latency-ns",
                                           "read-zeroes", NULL };
    static const char *const raw[] = { "file", "offset", NULL };
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonObject) o = NULL;
    JsonObject *file;

    o = keyval_parse("size=1k", NULL, NULL);
    g_assert_true(keyval_check_unused(o, null_co, "null-co", true, &err));
    g_assert_no_error(err);
    json_object_unref(o);

    /* qemu-img info --image-opts driver=null-co,bogus=1 */
    o = keyval_parse("bogus=1", NULL, NULL);
    g_assert_false(keyval_check_unused(o, null_co, "null-co", true, &err));
    g_assert_cmpstr(err->message, ==, "Block protocol 'null-co' doesn't "
                    "support the option 'bogus'");
    g_clear_error(&err);
    json_object_unref(o);

    /* ... driver=raw,file.driver=null-co,bogus=1 */
    o = keyval_parse("file.driver=null-co,bogus=1", NULL, NULL);
    g_assert_false(keyval_check_unused(o, raw, "raw", false, &err));
    g_assert_cmpstr(err->message, ==, "Block format 'raw' does not support "
                    "the option 'bogus'");
    g_clear_error(&err);
    json_object_unref(o);

    /* ... driver=raw,file.driver=null-co,file.bogus=1: the child names it. */
    o = keyval_parse("file.driver=null-co,file.bogus=1", NULL, NULL);
    g_assert_true(keyval_check_unused(o, raw, "raw", false, &err));
    file = json_object_get_object_member(o, "file");
    json_object_remove_member(file, "driver");
    g_assert_false(keyval_check_unused(file, null_co, "null-co", true,
                                       &err));
    g_assert_cmpstr(err->message, ==, "Block protocol 'null-co' doesn't "
                    "support the option 'bogus'");
    g_clear_error(&err);
    json_object_unref(o);

    /* qemu-img info 'json:{"driver":"null-co","size":{"a":1}}' */
    o = keyval_parse_json_filename("json:{\"x\":[1]}", NULL);
    g_assert_nonnull(o);
    g_assert_false(keyval_check_unused(o, null_co, "null-co", true, &err));
    g_assert_cmpstr(err->message, ==, "Block protocol 'null-co' doesn't "
                    "support the option 'x.0'");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    g_test_add_func("/keyval/parse/basic", test_parse_basic);
    g_test_add_func("/keyval/parse/escapes", test_parse_escapes);
    g_test_add_func("/keyval/parse/nesting", test_parse_nesting);
    g_test_add_func("/keyval/parse/arrays", test_parse_arrays);
    g_test_add_func("/keyval/parse/implied", test_parse_implied);
    g_test_add_func("/keyval/parse/errors", test_parse_errors);
    g_test_add_func("/keyval/parse/too-long", test_parse_too_long);
    g_test_add_func("/keyval/json/values", test_json_values);
    g_test_add_func("/keyval/json/strings", test_json_strings);
    g_test_add_func("/keyval/json/errors", test_json_errors);
    g_test_add_func("/keyval/json/nesting", test_json_nesting);
    g_test_add_func("/keyval/json/filename", test_json_filename);
    g_test_add_func("/keyval/flatten/basic", test_flatten);
    g_test_add_func("/keyval/flatten/merge", test_flatten_merge);
    g_test_add_func("/keyval/crumple", test_crumple);
    g_test_add_func("/keyval/round-trip", test_round_trip);
    g_test_add_func("/keyval/get/lookup", test_lookup);
    g_test_add_func("/keyval/get/bool", test_get_bool);
    g_test_add_func("/keyval/get/uint", test_get_uint);
    g_test_add_func("/keyval/get/int", test_get_int);
    g_test_add_func("/keyval/get/size", test_get_size);
    g_test_add_func("/keyval/get/str", test_get_str);
    g_test_add_func("/keyval/strtosz/values", test_strtosz);
    g_test_add_func("/keyval/strtosz/end", test_strtosz_end);
    g_test_add_func("/keyval/unused/find", test_find_unknown);
    g_test_add_func("/keyval/unused/check", test_check_unused);

    return g_test_run();
}
