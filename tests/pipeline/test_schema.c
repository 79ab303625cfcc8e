/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Tests of the schema compiler and its option tables: every rule of a definition is
 * rejected by tl_schema_compile() and by the `schema:` section check alike, the trie
 * finds every column whatever the key order, and the tables' defaults parse.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "tl_error.h"
#include "tl_json.h"
#include "tl_opt.h"
#include "tl_schema.h"
#include "tl_test_schema.h"

static struct tl_event ev;

/* The e6data columns without their per-column max_len, as these tests have always
 * compiled them (the accessor test sets one cap of its own). */
static void
e6data_def(struct tl_schema_def *d)
{
	tl_test_e6data_def(d);
	tl_test_clear_max_len(d);
}

/* The e6data columns plus one optional string column @p name at @p path. */
static struct tl_schema_def *
e6data_plus(struct tl_schema_def *d, const char *name, const char *path)
{
	e6data_def(d);
	tl_test_add_col(d, name, path, TL_COL_STRING, false, 0);
	return d;
}

/* A single column "t" (datetime, required) that plays every special role. */
static void
one_col_def(struct tl_schema_def *d)
{
	memset(d, 0, sizeof(*d));
	tl_test_add_col(d, "t", "t", TL_COL_DATETIME, true, 0);
	tl_test_set_roles(d, "t", "t", "t");
}

/* Expect @p d to be rejected by both the compiler and the section check, with a message
 * that contains @p needle. */
static void
expect_bad(const struct tl_schema_def *d, const char *needle)
{
	struct tl_limits l = tl_test_e6data_limits();
	struct tl_schema *s = (struct tl_schema *)&s;
	char msg[256] = "", msg2[256] = "";
	int rc = tl_schema_compile(d, &l, &s, msg, sizeof(msg));

	if (rc != TL_E_SCHEMA)
		fail_msg("compile returned %d (%s), want TL_E_SCHEMA for '%s'", rc, msg, needle);
	assert_null(s);
	if (strstr(msg, needle) == NULL)
		fail_msg("message '%s' lacks '%s'", msg, needle);
	assert_int_equal(tl_schema_check(d, msg2, sizeof(msg2)), 1);
	assert_string_equal(msg, msg2);
	/* no message buffer: same verdict */
	assert_int_equal(tl_schema_compile(d, &l, &s, NULL, 0), TL_E_SCHEMA);
}

static struct tl_schema *
expect_good(const struct tl_schema_def *d)
{
	struct tl_limits l = tl_test_e6data_limits();
	struct tl_schema *s = NULL;
	char msg[256] = "";
	int rc = tl_schema_compile(d, &l, &s, msg, sizeof(msg));

	if (rc != 0)
		fail_msg("compile: %d %s", rc, msg);
	assert_non_null(s);
	assert_int_equal(tl_schema_check(d, msg, sizeof(msg)), 0);
	return s;
}

static void
test_schema_compile_e6data_accessors(void **state)
{
	struct tl_schema_def d;
	struct tl_limits l = tl_test_e6data_limits();
	struct tl_schema *s;

	(void)state;
	e6data_def(&d);
	d.cols[3].max_len = 4096;
	s = expect_good(&d);
	/* the definition is copied */
	memset(&d, 0xEE, sizeof(d));
	assert_int_equal(tl_schema_n_cols(s), 10);
	assert_string_equal(tl_schema_col(s, 4)->name, "user_id");
	assert_string_equal(tl_schema_col(s, 4)->path, "metadata.user_id");
	assert_int_equal(tl_schema_col(s, 6)->type, TL_COL_UINT64);
	assert_true(tl_schema_col(s, 0)->required);
	assert_int_equal(tl_schema_col(s, 3)->max_len, 4096);
	assert_null(tl_schema_col(s, 10));
	assert_int_equal(tl_schema_col_index(s, "payload"), 9);
	assert_int_equal(tl_schema_col_index(s, "query_id"), 0);
	assert_int_equal(tl_schema_col_index(s, "nope"), -1);
	assert_int_equal(tl_schema_time_col(s), 2);
	assert_int_equal(tl_schema_error_col(s), 8);
	assert_int_equal(tl_schema_id_col(s), 0);
	assert_memory_equal(tl_schema_limits(s), &l, sizeof(l));
	tl_schema_free(s);
	tl_schema_free(NULL);
}

static void
test_schema_compile_path_prefix_conflict_rejected(void **state)
{
	struct tl_schema_def d;

	(void)state;
	/* a column on an object path that other columns go through, in both orders */
	e6data_def(&d);
	tl_test_add_col(&d, "meta", "metadata", TL_COL_ANY, false, 0);
	expect_bad(&d, "prefix");
	e6data_def(&d);
	memmove(&d.cols[1], &d.cols[0], sizeof(d.cols[0]) * d.n_cols);
	d.n_cols++;
	snprintf(d.cols[0].name, sizeof(d.cols[0].name), "meta");
	snprintf(d.cols[0].path, sizeof(d.cols[0].path), "metadata");
	expect_bad(&d, "prefix");
	/* deeper */
	e6data_def(&d);
	tl_test_add_col(&d, "a", "x.y", TL_COL_STRING, false, 0);
	tl_test_add_col(&d, "b", "x.y.z", TL_COL_STRING, false, 0);
	expect_bad(&d, "prefix");
	/* sharing a prefix is fine; so is a string prefix that is not a path prefix */
	e6data_def(&d);
	tl_test_add_col(&d, "a", "x.y", TL_COL_STRING, false, 0);
	tl_test_add_col(&d, "b", "x.yz", TL_COL_STRING, false, 0);
	tl_test_add_col(&d, "c", "x.z.w", TL_COL_STRING, false, 0);
	tl_test_add_col(&d, "d", "query_idx", TL_COL_STRING, false, 0);
	tl_schema_free(expect_good(&d));
}

static void
test_schema_compile_duplicates_rejected(void **state)
{
	struct tl_schema_def d;

	(void)state;
	expect_bad(e6data_plus(&d, "query_id", "other"), "appears twice");
	expect_bad(e6data_plus(&d, "user2", "metadata.user_id"), "same path");
	expect_bad(e6data_plus(&d, "qid", "query_id"), "same path");
}

static void
test_schema_compile_special_columns_rejected(void **state)
{
	struct tl_schema_def d;

	(void)state;
	e6data_def(&d);
	strcpy(d.time_column, "nope");
	expect_bad(&d, "time_column 'nope' is not a column");
	e6data_def(&d);
	strcpy(d.error_column, "nope");
	expect_bad(&d, "error_column");
	e6data_def(&d);
	strcpy(d.id_column, "nope");
	expect_bad(&d, "id_column");
	e6data_def(&d);
	d.time_column[0] = '\0';
	expect_bad(&d, "time_column is not set");
	e6data_def(&d);
	d.error_column[0] = '\0';
	expect_bad(&d, "error_column is not set");
	e6data_def(&d);
	d.id_column[0] = '\0';
	expect_bad(&d, "id_column is not set");
	e6data_def(&d);
	strcpy(d.time_column, "query_text");
	expect_bad(&d, "not datetime");
	e6data_def(&d);
	memset(d.id_column, 'a', sizeof(d.id_column));
	expect_bad(&d, "not terminated");
	/* no columns at all */
	memset(&d, 0, sizeof(d));
	tl_test_set_roles(&d, "t", "t", "t");
	expect_bad(&d, "not a column");
	/* one column may play every role */
	tl_test_add_col(&d, "t", "t", TL_COL_DATETIME, true, 0);
	tl_schema_free(expect_good(&d));
}

static void
test_schema_compile_bad_names_rejected(void **state)
{
	static const char *const bad[] = {
	        "", "Query", "1abc", "a-b", "a b", "\xc3\xa9", "a.b", "a$"};
	static const char *const good[] = {"_", "_x", "a1_", "abc_def_9"};
	struct tl_schema_def d;

	(void)state;
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++)
		expect_bad(e6data_plus(&d, bad[k], "p"),
		        bad[k][0] ? "not an identifier" : "name is empty");
	for (size_t k = 0; k < sizeof(good) / sizeof(good[0]); k++)
		tl_schema_free(expect_good(e6data_plus(&d, good[k], "p")));
	e6data_def(&d);
	memset(d.cols[3].name, 'a', sizeof(d.cols[3].name));
	expect_bad(&d, "not terminated");
}

static void
test_schema_compile_bad_paths_rejected(void **state)
{
	static const struct {
		const char *path;
		const char *needle;
	} bad[] = {
	        {"", "path is empty"},
	        {".", "empty segment"},
	        {"a.", "empty segment"},
	        {".a", "empty segment"},
	        {"a..b", "empty segment"},
	        {"a\"b", "quote"},
	        {"a\\b", "backslash"},
	        {"a\tb", "control"},
	        {"a\x01", "control"},
	        {"\xff", "UTF-8"},
	        {"a.\xc3", "UTF-8"},
	        {"\xed\xa0\x80", "UTF-8"},
	        {"\xc0\xaf", "UTF-8"},
	};
	static const char *const good[] = {
	        "a b", "\xe6\x97\xa5.\xe8\xaa\x9e", "a-b.c$d", "x.y.z.w"};
	struct tl_schema_def d;

	(void)state;
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++)
		expect_bad(e6data_plus(&d, "c", bad[k].path), bad[k].needle);
	for (size_t k = 0; k < sizeof(good) / sizeof(good[0]); k++)
		tl_schema_free(expect_good(e6data_plus(&d, "c", good[k])));
	e6data_def(&d);
	memset(d.cols[3].path, 'a', sizeof(d.cols[3].path));
	expect_bad(&d, "not terminated");
}

static void
test_schema_compile_bad_type_rejected(void **state)
{
	struct tl_schema_def d;

	(void)state;
	e6data_def(&d);
	d.cols[3].type = TL_COL_TYPE_MAX;
	expect_bad(&d, "unknown type");
	d.cols[3].type = -1;
	expect_bad(&d, "unknown type");
}

static void
test_schema_compile_capacity_limits(void **state)
{
	struct tl_schema_def d;
	struct tl_limits l = tl_test_e6data_limits();
	struct tl_schema *s = NULL;
	char name[32], path[64];

	(void)state;
	/* 64 columns each behind two private object paths: 128 prefixes > 64 */
	one_col_def(&d);
	for (int i = 1; i < TL_SCHEMA_MAX_COLS; i++) {
		snprintf(name, sizeof(name), "c%d", i);
		snprintf(path, sizeof(path), "p%d.q%d.v", i, i);
		tl_test_add_col(&d, name, path, TL_COL_STRING, false, 0);
	}
	expect_bad(&d, "object paths");
	/* more columns than the table holds */
	d.n_cols = TL_SCHEMA_MAX_COLS + 1;
	expect_bad(&d, "more than 64 columns");
	/* limits out of range */
	e6data_def(&d);
	l.max_depth = 0;
	assert_int_equal(tl_schema_compile(&d, &l, &s, NULL, 0), TL_E_SCHEMA);
	l.max_depth = 1025;
	assert_int_equal(tl_schema_compile(&d, &l, &s, NULL, 0), TL_E_SCHEMA);
	l = tl_test_e6data_limits();
	l.max_extra = TL_EVENT_MAX_EXTRA + 1;
	assert_int_equal(tl_schema_compile(&d, &l, &s, NULL, 0), TL_E_SCHEMA);
	assert_null(s);
	l.max_extra = TL_EVENT_MAX_EXTRA;
	l.max_depth = 1024;
	assert_int_equal(tl_schema_compile(&d, &l, &s, NULL, 0), 0);
	tl_schema_free(s);
}

/*
 * The trie: 64 top-level siblings (names sharing their first 8 bytes, or differing only
 * in length) and 3-level paths, fed in reverse order, each value lands in its column.
 */
static void
test_schema_trie_finds_every_column_any_order(void **state)
{
	struct tl_schema_def d;
	struct tl_schema *s;
	char name[32], path[64], *buf = malloc(1 << 16);
	int off, ncols;

	(void)state;
	one_col_def(&d);
	for (int i = 1; i < 40; i++) {
		snprintf(name, sizeof(name), "c%d", i);
		snprintf(path, sizeof(path), i % 3 ? "abcdefgh%d" : "abcdefgh%dxyzxyzxyz", i);
		tl_test_add_col(&d, name, path, TL_COL_UINT64, false, 0);
	}
	for (int i = 40; i < TL_SCHEMA_MAX_COLS; i++) {
		snprintf(name, sizeof(name), "c%d", i);
		snprintf(path, sizeof(path), "o%d.mid.k%d", i % 4, i);
		tl_test_add_col(&d, name, path, TL_COL_UINT64, false, 0);
	}
	ncols = (int)d.n_cols;
	s = expect_good(&d);
	off = snprintf(buf, 1 << 16, "{\"t\":\"2024-01-01T00:00:00Z\"");
	for (int i = 39; i >= 1; i--)
		off += snprintf(buf + off, (1 << 16) - (size_t)off,
		        i % 3 ? ",\"abcdefgh%d\":%d" : ",\"abcdefgh%dxyzxyzxyz\":%d", i, i * 7);
	for (int o = 3; o >= 0; o--) {
		off += snprintf(buf + off, (1 << 16) - (size_t)off, ",\"o%d\":{\"mid\":{", o);
		for (int i = ncols - 1, first = 1; i >= 40; i--) {
			if (i % 4 != o)
				continue;
			off += snprintf(buf + off, (1 << 16) - (size_t)off, "%s\"k%d\":%d",
			        first ? "" : ",", i, i * 7);
			first = 0;
		}
		off += snprintf(buf + off, (1 << 16) - (size_t)off, "}}");
	}
	/* near misses of mapped names are unknown fields */
	off += snprintf(buf + off, (1 << 16) - (size_t)off,
	        ",\"abcdefgh\":1,\"abcdefgh1x\":1,\"abcdefgh3xyzxyzxy\":1}");
	assert_int_equal(
	        tl_json_extract(s, (const uint8_t *)buf, (uint32_t)off, &ev), TL_REASON_OK);
	for (int i = 1; i < ncols; i++) {
		if (ev.col[i].kind != TL_VAL_UINT || ev.col[i].u != (uint64_t)i * 7)
			fail_msg("column %d: kind %d value %llu", i, ev.col[i].kind,
			        (unsigned long long)ev.col[i].u);
	}
	assert_int_equal(ev.n_extra, 3);
	tl_schema_free(s);
	free(buf);
}

/* ---------------------------------------------------------------- option tables */

static const struct tl_opt *
find_opt(const struct tl_opt *t, const char *name)
{
	for (; t->name != NULL; t++)
		if (strcmp(t->name, name) == 0)
			return t;
	return NULL;
}

static void
test_schema_opts_tables_shape(void **state)
{
	const struct tl_opt *o, *cols, *sub;
	size_t n = 0;

	(void)state;
	while (tl_col_type_names[n] != NULL)
		n++;
	assert_int_equal(n, TL_COL_TYPE_MAX);
	assert_string_equal(tl_col_type_names[TL_COL_DATETIME], "datetime");
	assert_string_equal(tl_col_type_names[TL_COL_UINT64], "uint64");

	o = find_opt(tl_schema_opts, "time_column");
	assert_non_null(o);
	assert_int_equal(o->type, TL_OPT_STRING);
	assert_int_equal(o->offset, offsetof(struct tl_schema_def, time_column));
	assert_int_equal(o->size, TL_SCHEMA_NAME_MAX);
	assert_true(o->flags & TL_OPT_F_REQUIRED);
	assert_true(find_opt(tl_schema_opts, "error_column")->flags & TL_OPT_F_REQUIRED);
	assert_true(find_opt(tl_schema_opts, "id_column")->flags & TL_OPT_F_REQUIRED);
	cols = find_opt(tl_schema_opts, "columns");
	assert_non_null(cols);
	assert_int_equal(cols->type, TL_OPT_LIST);
	assert_int_equal(cols->offset, offsetof(struct tl_schema_def, cols));
	assert_int_equal(cols->size, sizeof(struct tl_col_def));
	assert_int_equal(cols->count_offset, offsetof(struct tl_schema_def, n_cols));
	assert_int_equal(cols->max_items, TL_SCHEMA_MAX_COLS);
	assert_non_null(cols->check);
	sub = find_opt(cols->sub, "name");
	assert_true(sub->flags & TL_OPT_F_REQUIRED);
	assert_int_equal(sub->size, TL_SCHEMA_NAME_MAX);
	sub = find_opt(cols->sub, "path");
	assert_true(sub->flags & TL_OPT_F_REQUIRED);
	assert_int_equal(sub->size, TL_SCHEMA_PATH_MAX);
	sub = find_opt(cols->sub, "type");
	assert_int_equal(sub->type, TL_OPT_ENUM);
	assert_ptr_equal(sub->enums, tl_col_type_names);
	assert_string_equal(sub->def, "string");
	assert_string_equal(find_opt(cols->sub, "required")->def, "false");
	assert_int_equal(find_opt(cols->sub, "max_len")->type, TL_OPT_SIZE);

	o = find_opt(tl_limits_opts, "max_event_size");
	assert_int_equal(o->min, 64);
	assert_int_equal(o->max, 65507);
	o = find_opt(tl_limits_opts, "max_depth");
	assert_int_equal(o->min, 2);
	assert_int_equal(o->max, 1024);
	o = find_opt(tl_limits_opts, "max_extra");
	assert_int_equal(o->max, TL_EVENT_MAX_EXTRA);
	assert_non_null(find_opt(tl_limits_opts, "max_string"));
	for (o = tl_limits_opts; o->name != NULL; o++)
		assert_non_null(o->desc);
}

static void
test_schema_opts_defaults_parse(void **state)
{
	struct tl_limits l;
	struct tl_col_def c;

	(void)state;
	memset(&l, 0xAB, sizeof(l));
	assert_int_equal(tl_opt_defaults(tl_limits_opts, &l), 0);
	assert_int_equal(l.max_event_size, 61440);
	assert_int_equal(l.max_depth, 32);
	assert_int_equal(l.max_string, 61440);
	assert_int_equal(l.max_extra, 32);
	memset(&c, 0xAB, sizeof(c));
	assert_int_equal(tl_opt_defaults(find_opt(tl_schema_opts, "columns")->sub, &c), 0);
	assert_int_equal(c.type, TL_COL_STRING);
	assert_false(c.required);
	assert_int_equal(c.max_len, 0);
}

static void
test_schema_column_check_callback(void **state)
{
	const struct tl_opt *cols = find_opt(tl_schema_opts, "columns");
	struct tl_col_def c;
	char msg[128];

	(void)state;
	memset(&c, 0, sizeof(c));
	strcpy(c.name, "user_id");
	strcpy(c.path, "metadata.user_id");
	assert_int_equal(cols->check(&c, msg, sizeof(msg)), 0);
	strcpy(c.name, "UserId");
	msg[0] = '\0';
	assert_int_not_equal(cols->check(&c, msg, sizeof(msg)), 0);
	assert_non_null(strstr(msg, "identifier"));
	strcpy(c.name, "user_id");
	strcpy(c.path, "metadata..user_id");
	assert_int_not_equal(cols->check(&c, msg, sizeof(msg)), 0);
	assert_non_null(strstr(msg, "empty segment"));
	strcpy(c.path, "metadata.user_id");
	c.type = 99;
	assert_int_not_equal(cols->check(&c, msg, sizeof(msg)), 0);
	/* a tiny message buffer is not overrun */
	msg[4] = 'Z';
	assert_int_not_equal(cols->check(&c, msg, 4), 0);
	assert_int_equal(msg[3], '\0');
	assert_int_equal(msg[4], 'Z');
}

/* Through the real loader: a profile's schema section, checked with the tables above. */
struct root {
	struct tl_schema_def schema;
	struct tl_limits limits;
};

static const struct tl_opt root_opts[] = {
        {.name = "schema",
                .type = TL_OPT_SECTION,
                .offset = offsetof(struct root, schema),
                .sub = tl_schema_opts,
                .check = tl_schema_check,
                .desc = "schema"},
        {.name = "limits",
                .type = TL_OPT_SECTION,
                .offset = offsetof(struct root, limits),
                .sub = tl_limits_opts,
                .desc = "limits"},
        {.name = NULL},
};

static unsigned
load_yaml(const char *yaml, struct root *r, char *errs, size_t errlen)
{
	char path[] = "/tmp/test_schema_XXXXXX";
	int fd = mkstemp(path);
	FILE *ef = fmemopen(errs, errlen, "w");
	unsigned n = 0;

	assert_true(fd >= 0);
	assert_int_equal(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
	close(fd);
	memset(errs, 0, errlen);
	memset(r, 0, sizeof(*r));
	tl_config_load(path, root_opts, r, NULL, ef, &n);
	fclose(ef);
	unlink(path);
	return n;
}

static void
test_schema_opts_load_profile(void **state)
{
	static const char good[] =
	        "schema:\n"
	        "  time_column: event_time\n"
	        "  error_column: error\n"
	        "  id_column: query_id\n"
	        "  columns:\n"
	        "    - {name: query_id, path: query_id, required: true}\n"
	        "    - {name: event_time, path: timestamp, type: datetime, required: true}\n"
	        "    - {name: user_id, path: metadata.user_id, max_len: 1KiB}\n"
	        "    - {name: duration_ms, path: metadata.duration_ms, type: uint64}\n"
	        "    - {name: error, path: metadata.error, type: any}\n"
	        "limits:\n"
	        "  max_depth: 64\n";
	static const char bad[] = "schema:\n"
	                          "  time_column: event_time\n"
	                          "  error_column: error\n"
	                          "  id_column: query_id\n"
	                          "  columns:\n"
	                          "    - {name: query_id, path: query_id}\n"
	                          "    - {name: event_time, path: timestamp, type: datetime}\n"
	                          "    - {name: Error, path: metadata..error, type: any}\n"
	                          "limits:\n"
	                          "  max_depth: 2000\n";
	struct root r;
	char errs[2048];
	struct tl_schema *s = NULL;

	(void)state;
	if (load_yaml(good, &r, errs, sizeof(errs)) != 0)
		fail_msg("good profile rejected: %s", errs);
	assert_int_equal(r.schema.n_cols, 5);
	assert_int_equal(r.schema.cols[1].type, TL_COL_DATETIME);
	assert_true(r.schema.cols[1].required);
	assert_int_equal(r.schema.cols[2].max_len, 1024);
	assert_int_equal(r.schema.cols[2].type, TL_COL_STRING);
	assert_false(r.schema.cols[2].required);
	assert_int_equal(r.limits.max_depth, 64);
	assert_int_equal(r.limits.max_extra, 32);
	assert_int_equal(tl_schema_compile(&r.schema, &r.limits, &s, NULL, 0), 0);
	tl_schema_free(s);

	assert_true(load_yaml(bad, &r, errs, sizeof(errs)) >= 2);
	assert_non_null(strstr(errs, "identifier"));
	assert_non_null(strstr(errs, "max_depth"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_schema_compile_e6data_accessors),
	        cmocka_unit_test(test_schema_compile_path_prefix_conflict_rejected),
	        cmocka_unit_test(test_schema_compile_duplicates_rejected),
	        cmocka_unit_test(test_schema_compile_special_columns_rejected),
	        cmocka_unit_test(test_schema_compile_bad_names_rejected),
	        cmocka_unit_test(test_schema_compile_bad_paths_rejected),
	        cmocka_unit_test(test_schema_compile_bad_type_rejected),
	        cmocka_unit_test(test_schema_compile_capacity_limits),
	        cmocka_unit_test(test_schema_trie_finds_every_column_any_order),
	        cmocka_unit_test(test_schema_opts_tables_shape),
	        cmocka_unit_test(test_schema_opts_defaults_parse),
	        cmocka_unit_test(test_schema_column_check_callback),
	        cmocka_unit_test(test_schema_opts_load_profile),
	};

	return cmocka_run_group_tests_name("schema", tests, NULL, NULL);
}
