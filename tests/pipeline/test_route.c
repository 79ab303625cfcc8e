/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Unit tests of pipeline/tl_route: every match kind, rule order across kinds, the default
 * route, absent/null/empty values, escaped strings, values of non-string columns, route
 * sharing and accessors, validation messages (from a YAML profile through the loader,
 * with file:line), Hyperscan compile errors, pruning of scans, scan failures and hostile
 * events.
 *
 * Events are extracted from real JSON lines by tl_json_extract (the escapes and value
 * kinds are the extractor's, not the test's idea of them), except where a test builds a
 * hostile event the extractor would never produce. The binary is linked with
 * -Wl,--wrap=hs_compile_multi,--wrap=hs_alloc_scratch,--wrap=hs_scan: the wrappers count
 * scans (a pruned scan must not happen) and inject the failures a real Hyperscan gives
 * only under memory pressure, with a set too large, or when a scratch is misused.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <hs/hs.h>

#include "tl_classify.h"
#include "tl_error.h"
#include "tl_json.h"
#include "tl_opt.h"
#include "tl_route.h"
#include "tl_schema.h"
#include "tl_test_schema.h"

/* Columns appended to the e6data schema (tl_test_e6data_def). */
#define COL_DATABASE 5
#define COL_ERROR 8
#define COL_TENANT 10
#define COL_TENANT_ID 11
#define COL_FLAG 12

/* ---- Hyperscan wrappers ------------------------------------------------------------ */

hs_error_t __real_hs_compile_multi(const char *const *expressions, const unsigned int *flags,
        const unsigned int *ids, unsigned int elements, unsigned int mode,
        const hs_platform_info_t *platform, hs_database_t **db, hs_compile_error_t **error);
hs_error_t __wrap_hs_compile_multi(const char *const *expressions, const unsigned int *flags,
        const unsigned int *ids, unsigned int elements, unsigned int mode,
        const hs_platform_info_t *platform, hs_database_t **db, hs_compile_error_t **error);
hs_error_t __real_hs_alloc_scratch(const hs_database_t *db, hs_scratch_t **scratch);
hs_error_t __wrap_hs_alloc_scratch(const hs_database_t *db, hs_scratch_t **scratch);
hs_error_t __real_hs_scan(const hs_database_t *db, const char *data, unsigned int length,
        unsigned int flags, hs_scratch_t *scratch, match_event_handler on_event, void *context);
hs_error_t __wrap_hs_scan(const hs_database_t *db, const char *data, unsigned int length,
        unsigned int flags, hs_scratch_t *scratch, match_event_handler on_event, void *context);

/* The default route's database (normally uplink.database). */
static char g_defdb[64] = "telemetry";

static unsigned scan_calls;
static bool fail_scan;
static bool fail_scratch;
static hs_error_t fail_compile; /* HS_SUCCESS: compile for real */
static int fail_compile_expr;   /* HS_COMPILER_ERROR: the expression index reported */

hs_error_t
__wrap_hs_compile_multi(const char *const *expressions, const unsigned int *flags,
        const unsigned int *ids, unsigned int elements, unsigned int mode,
        const hs_platform_info_t *platform, hs_database_t **db, hs_compile_error_t **error)
{
	hs_compile_error_t *e;

	if (fail_compile == HS_SUCCESS)
		return __real_hs_compile_multi(
		        expressions, flags, ids, elements, mode, platform, db, error);
	*db = NULL;
	*error = NULL;
	if (fail_compile != HS_COMPILER_ERROR)
		return fail_compile;
	/* Freed by hs_free_compile_error(), which uses free() by default. */
	e = malloc(sizeof(*e));
	assert_non_null(e);
	e->message = strdup("Pattern set too large for Hyperscan");
	e->expression = fail_compile_expr;
	*error = e;
	return HS_COMPILER_ERROR;
}

hs_error_t
__wrap_hs_alloc_scratch(const hs_database_t *db, hs_scratch_t **scratch)
{
	if (fail_scratch)
		return HS_NOMEM;
	return __real_hs_alloc_scratch(db, scratch);
}

hs_error_t
__wrap_hs_scan(const hs_database_t *db, const char *data, unsigned int length, unsigned int flags,
        hs_scratch_t *scratch, match_event_handler on_event, void *context)
{
	__atomic_fetch_add(&scan_calls, 1, __ATOMIC_RELAXED);
	if (fail_scan)
		return HS_INVALID;
	return __real_hs_scan(db, data, length, flags, scratch, on_event, context);
}

/* ---- fixtures ---------------------------------------------------------------------- */

struct root {
	struct tl_route_conf routing;
};

static const struct tl_opt root_opts[] = {
        {
                .name = "routing",
                .type = TL_OPT_SECTION,
                .offset = offsetof(struct root, routing),
                .sub = tl_route_opts,
        },
        {.name = NULL},
};

static struct root g_root;
static struct tl_route_conf g_conf;
static struct tl_classify_conf g_cconf;
static struct tl_schema *g_schema;
static char g_err[16384];
static char g_tmp_dir[512];

static int
group_setup(void **state)
{
	struct tl_schema_def def;
	struct tl_limits lim = tl_test_e6data_limits();
	char msg[256];

	(void)state;
	tl_test_e6data_def(&def);
	tl_test_add_col(&def, "tenant", "tenant", TL_COL_STRING, false, 64);
	tl_test_add_col(&def, "tenant_id", "tenant_id", TL_COL_UINT64, false, 0);
	tl_test_add_col(&def, "flag", "flag", TL_COL_BOOL, false, 0);
	if (tl_schema_compile(&def, &lim, &g_schema, msg, sizeof(msg)) != 0) {
		fprintf(stderr, "schema: %s\n", msg);
		return -1;
	}
	snprintf(g_tmp_dir, sizeof(g_tmp_dir), "%s/tl_route_test.XXXXXX",
	        getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (mkdtemp(g_tmp_dir) == NULL) {
		perror("mkdtemp");
		return -1;
	}
	return 0;
}

static int
group_teardown(void **state)
{
	(void)state;
	tl_schema_free(g_schema);
	rmdir(g_tmp_dir);
	return 0;
}

static int
test_setup(void **state)
{
	(void)state;
	scan_calls = 0;
	fail_scan = false;
	fail_scratch = false;
	fail_compile = HS_SUCCESS;
	fail_compile_expr = -1;
	g_err[0] = '\0';
	memset(&g_conf, 0, sizeof(g_conf));
	snprintf(g_defdb, sizeof(g_defdb), "telemetry");
	return 0;
}

/* Append a rule built in code (no file location); @p kind is equals, matches or pattern. */
static struct tl_route_rule_def *
add_rule(struct tl_route_conf *c, const char *name, const char *field, const char *kind,
        const char *value, const char *db)
{
	struct tl_route_rule_def *r = &c->rules[c->n_rules++];

	memset(r, 0, sizeof(*r));
	snprintf(r->name, sizeof(r->name), "%s", name);
	snprintf(r->field, sizeof(r->field), "%s", field ? field : "");
	if (strcmp(kind, "equals") == 0)
		snprintf(r->equals, sizeof(r->equals), "%s", value);
	else if (strcmp(kind, "matches") == 0)
		snprintf(r->matches, sizeof(r->matches), "%s", value);
	else if (strcmp(kind, "pattern") == 0)
		snprintf(r->pattern, sizeof(r->pattern), "%s", value);
	else
		fail_msg("kind %s", kind);
	snprintf(r->database, sizeof(r->database), "%s", db);
	snprintf(r->table, sizeof(r->table), "%s", TL_ROUTE_DEFAULT_TABLE);
	return r;
}

static struct tl_route_rule_def *
add_in_rule(struct tl_route_conf *c, const char *name, const char *field, const char *const *values,
        uint32_t n, const char *db)
{
	struct tl_route_rule_def *r = &c->rules[c->n_rules++];

	memset(r, 0, sizeof(*r));
	snprintf(r->name, sizeof(r->name), "%s", name);
	snprintf(r->field, sizeof(r->field), "%s", field);
	for (uint32_t i = 0; i < n; i++)
		snprintf(r->in[i], TL_ROUTE_VALUE_MAX, "%s", values[i]);
	r->n_in = n;
	snprintf(r->database, sizeof(r->database), "%s", db);
	snprintf(r->table, sizeof(r->table), "%s", TL_ROUTE_DEFAULT_TABLE);
	return r;
}

static struct tl_route_user_def *
add_user(struct tl_route_conf *c, const char *name, const char *db)
{
	struct tl_route_user_def *u = &c->users[c->n_users++];

	memset(u, 0, sizeof(*u));
	snprintf(u->name, sizeof(u->name), "%s", name);
	snprintf(u->password_sha256, sizeof(u->password_sha256), "%064d", 0);
	snprintf(u->databases[0], TL_ROUTE_IDENT_MAX, "%s", db);
	u->n_databases = 1;
	snprintf(u->networks[0], TL_ROUTE_NETWORK_MAX, "::/0");
	u->n_networks = 1;
	return u;
}

static struct tl_route_table *
build_ok_with(const struct tl_route_conf *c, const struct tl_classify_db *cdb)
{
	struct tl_route_table *t = NULL;
	int rc = tl_route_build(c, g_defdb, g_schema, cdb, &t, g_err, sizeof(g_err));

	if (rc != 0)
		fail_msg("build: %s: %s", tl_strerror(rc), g_err);
	assert_non_null(t);
	assert_string_equal(g_err, "");
	return t;
}

static struct tl_route_table *
build_ok(const struct tl_route_conf *c)
{
	return build_ok_with(c, NULL);
}

/* Build expecting failure; @return the error text (g_err). */
static const char *
build_fails_with(const struct tl_route_conf *c, const struct tl_classify_db *cdb, int expect_rc)
{
	struct tl_route_table *t = (struct tl_route_table *)&t;
	int rc = tl_route_build(c, g_defdb, g_schema, cdb, &t, g_err, sizeof(g_err));

	assert_int_equal(rc, expect_rc);
	assert_null(t);
	return g_err;
}

static const char *
build_fails(const struct tl_route_conf *c)
{
	return build_fails_with(c, NULL, TL_E_CONFIG);
}

static unsigned
count_lines(const char *s)
{
	unsigned n = s[0] != '\0';

	for (; *s != '\0'; s++)
		n += *s == '\n';
	return n;
}

/* @p line must be one whole line of @p err. */
static void
expect_line(const char *err, const char *line)
{
	size_t n = strlen(line);

	for (const char *p = err; (p = strstr(p, line)) != NULL; p++)
		if ((p == err || p[-1] == '\n') && (p[n] == '\n' || p[n] == '\0'))
			return;
	fail_msg("expected the line\n  %s\nin:\n%s", line, err);
}

/* An event extracted from @p json (which must be accepted). */
static void
extract(const char *json, struct tl_event *ev)
{
	enum tl_reason r =
	        tl_json_extract(g_schema, (const uint8_t *)json, (uint32_t)strlen(json), ev);

	if (r != TL_REASON_OK)
		fail_msg("extract %s: %s", json, tl_reason_name(r));
}

/* The route of a JSON event, with a fresh scratch. */
static uint16_t
route_json_cr(const struct tl_route_table *t, const char *json, const struct tl_classify_result *cr)
{
	struct tl_route_scratch *s = NULL;
	struct tl_event ev;
	uint16_t r;

	extract(json, &ev);
	assert_int_equal(tl_route_scratch_alloc(t, &s), 0);
	assert_non_null(s);
	r = tl_route_event(t, s, &ev, cr);
	assert_int_equal(tl_route_scratch_failures(s), 0);
	tl_route_scratch_free(s);
	assert_true(r < tl_route_count(t));
	return r;
}

static uint16_t
route_json(const struct tl_route_table *t, const char *json)
{
	return route_json_cr(t, json, NULL);
}

/* A JSON event of tenant @p tenant (raw JSON text, may hold escapes) and database @p db. */
static const char *
ev_json(const char *tenant, const char *db)
{
	static char buf[2048];
	int o;

	o = snprintf(buf, sizeof(buf),
	        "{\"query_id\":\"q-1\",\"event_type\":\"finished\","
	        "\"timestamp\":\"2026-11-21T05:00:00.123+00:00\"");
	if (tenant != NULL)
		o += snprintf(buf + o, sizeof(buf) - (size_t)o, ",\"tenant\":\"%s\"", tenant);
	if (db != NULL)
		o += snprintf(buf + o, sizeof(buf) - (size_t)o,
		        ",\"metadata\":{\"database\":\"%s\"}", db);
	snprintf(buf + o, sizeof(buf) - (size_t)o, "}");
	return buf;
}

/* Route of the route's database (checks the accessor agrees with the expectation). */
static void
assert_route_db(const struct tl_route_table *t, uint16_t r, const char *db)
{
	assert_non_null(tl_route_database(t, r));
	assert_string_equal(tl_route_database(t, r), db);
}

/* ---- match kinds ------------------------------------------------------------------- */

static void
test_route_equals_value_routes_to_its_database(void **state)
{
	struct tl_route_table *t;

	(void)state;
	add_rule(&g_conf, "acme", "tenant", "equals", "acme", "tenant_acme");
	t = build_ok(&g_conf);
	assert_int_equal(tl_route_count(t), 2);
	assert_int_equal(route_json(t, ev_json("acme", NULL)), 1);
	assert_route_db(t, 1, "tenant_acme");
	assert_string_equal(tl_route_main_table(t, 1), "sink_output");
	/* Exact bytes: case, prefix, suffix and a longer value do not match. */
	assert_int_equal(route_json(t, ev_json("Acme", NULL)), 0);
	assert_int_equal(route_json(t, ev_json("acm", NULL)), 0);
	assert_int_equal(route_json(t, ev_json("acme ", NULL)), 0);
	assert_int_equal(route_json(t, ev_json("acmeacme", NULL)), 0);
	assert_route_db(t, 0, "telemetry");
	assert_string_equal(tl_route_main_table(t, 0), "sink_output");
	tl_route_table_free(t);
}

static void
test_route_in_list_each_value_found_near_misses_not(void **state)
{
	static const char *vals[TL_ROUTE_MAX_IN];
	static char buf[TL_ROUTE_MAX_IN][16];
	struct tl_route_table *t;
	char v[32];

	(void)state;
	for (int i = 0; i < TL_ROUTE_MAX_IN; i++) {
		/* Values of several lengths so the (length, bytes) order is exercised. */
		snprintf(buf[i], sizeof(buf[i]), "t%0*dz", 1 + i % 5, i);
		vals[i] = buf[i];
	}
	add_in_rule(&g_conf, "many", "tenant", vals, TL_ROUTE_MAX_IN, "tenant_many");
	t = build_ok(&g_conf);
	for (int i = 0; i < TL_ROUTE_MAX_IN; i++) {
		assert_int_equal(route_json(t, ev_json(vals[i], NULL)), 1);
		snprintf(v, sizeof(v), "%sx", vals[i]);
		assert_int_equal(route_json(t, ev_json(v, NULL)), 0);
		snprintf(v, sizeof(v), "%.*s", (int)strlen(vals[i]) - 1, vals[i]);
		assert_int_equal(route_json(t, ev_json(v, NULL)), 0);
	}
	assert_int_equal(route_json(t, ev_json("u00", NULL)), 0);
	tl_route_table_free(t);
}

static void
test_route_matches_regex_on_decoded_value(void **state)
{
	struct tl_route_table *t;

	(void)state;
	add_rule(&g_conf, "globex", "database_name", "matches", "^tpch_sf[0-9]+$", "tenant_globex");
	t = build_ok(&g_conf);
	assert_int_equal(route_json(t, ev_json(NULL, "tpch_sf1")), 1);
	assert_int_equal(route_json(t, ev_json(NULL, "tpch_sf100")), 1);
	/* Escaped spelling of the same value: t = \u0074. */
	assert_int_equal(route_json(t, ev_json(NULL, "\\u0074pch_sf1")), 1);
	assert_int_equal(route_json(t, ev_json(NULL, "xtpch_sf1")), 0);
	assert_int_equal(route_json(t, ev_json(NULL, "tpch_sf1x")), 0);
	assert_int_equal(route_json(t, ev_json(NULL, "sales")), 0);
	tl_route_table_free(t);

	/* Inline flags: (?i) makes one regex caseless. */
	test_setup(NULL);
	add_rule(&g_conf, "acme", "tenant", "matches", "(?i)^acme$", "tenant_acme");
	t = build_ok(&g_conf);
	assert_int_equal(route_json(t, ev_json("ACME", NULL)), 1);
	assert_int_equal(route_json(t, ev_json("aCmE", NULL)), 1);
	assert_int_equal(route_json(t, ev_json("acmex", NULL)), 0);
	tl_route_table_free(t);
}

/* A classify database of the Hadoop OOM line and another pattern, both on `error`. */
static struct tl_classify_db *
classify_db(void)
{
	struct tl_classify_db *db = NULL;
	struct tl_classify_pattern_def *p;

	memset(&g_cconf, 0, sizeof(g_cconf));
	snprintf(g_cconf.fields[0], TL_SCHEMA_NAME_MAX, "error");
	g_cconf.n_fields = 1;
	p = &g_cconf.patterns[g_cconf.n_patterns++];
	snprintf(p->id, sizeof(p->id), "jvm.oom");
	snprintf(p->regex, sizeof(p->regex), "OutOfMemoryError");
	snprintf(p->category, sizeof(p->category), "memory");
	p = &g_cconf.patterns[g_cconf.n_patterns++];
	snprintf(p->id, sizeof(p->id), "net.refused");
	snprintf(p->regex, sizeof(p->regex), "Connection refused");
	snprintf(p->category, sizeof(p->category), "network");
	assert_int_equal(tl_classify_build(&g_cconf, g_schema, &db, g_err, sizeof(g_err)), 0);
	return db;
}

static void
classify_json(const struct tl_classify_db *db, const char *json, struct tl_classify_result *r)
{
	struct tl_classify_scratch *s = NULL;
	struct tl_event ev;

	extract(json, &ev);
	assert_int_equal(tl_classify_scratch_alloc(db, &s), 0);
	tl_classify_event(db, s, &ev, r);
	tl_classify_scratch_free(s);
}

static void
test_route_pattern_rule_follows_classify_result(void **state)
{
	/* A real line of loghub's Hadoop sample, as the `error` value. */
	static const char oom[] = "{\"query_id\":\"q\",\"event_type\":\"failed\","
	                          "\"timestamp\":\"2026-11-21T05:00:00Z\",\"metadata\":{\"error\":"
	                          "\"Error: java.lang.OutOfMemoryError: Java heap space\"}}";
	static const char refused[] =
	        "{\"query_id\":\"q\",\"event_type\":\"failed\","
	        "\"timestamp\":\"2026-11-21T05:00:00Z\",\"metadata\":{\"error\":"
	        "\"java.net.ConnectException: Connection refused\"}}";
	struct tl_classify_db *cdb = classify_db();
	struct tl_classify_result cr;
	struct tl_route_table *t;

	(void)state;
	add_rule(&g_conf, "oom", NULL, "pattern", "jvm.oom", "ops_memory");
	t = build_ok_with(&g_conf, cdb);
	classify_json(cdb, oom, &cr);
	assert_int_equal(cr.n, 1);
	assert_int_equal(route_json_cr(t, oom, &cr), 1);
	assert_route_db(t, 1, "ops_memory");
	/* The same event without its classification, and another pattern's event. */
	assert_int_equal(route_json_cr(t, oom, NULL), 0);
	classify_json(cdb, refused, &cr);
	assert_int_equal(cr.n, 1);
	assert_int_equal(route_json_cr(t, refused, &cr), 0);
	/* A hand-made result with an index beyond the database is ignored. */
	memset(&cr, 0, sizeof(cr));
	cr.n = 2;
	cr.ids[0] = 1;
	cr.ids[1] = 999;
	assert_int_equal(route_json_cr(t, refused, &cr), 0);
	/* Only the ids kept in the result count: a full result without jvm.oom (index 0)
	 * does not route, whatever `dropped` says. */
	memset(&cr, 0, sizeof(cr));
	cr.n = TL_CLASSIFY_MAX_MATCHES;
	cr.dropped = 3;
	for (int i = 0; i < TL_CLASSIFY_MAX_MATCHES; i++)
		cr.ids[i] = 1;
	assert_int_equal(route_json_cr(t, oom, &cr), 0);
	tl_route_table_free(t);
	tl_classify_db_free(cdb);
}

/* ---- order, default, sharing ------------------------------------------------------- */

static void
test_route_order_first_rule_wins_across_kinds(void **state)
{
	static const char *ab[] = {"acme", "other"};
	struct tl_classify_db *cdb = classify_db();
	struct tl_classify_result cr;
	struct tl_route_table *t;
	char json[512];

	(void)state;
	/* 0: matches on tenant, 1: equals on tenant, 2: pattern, 3: in on database. */
	add_rule(&g_conf, "by-regex", "tenant", "matches", "^ac", "db_regex");
	add_rule(&g_conf, "by-equals", "tenant", "equals", "acme", "db_equals");
	add_rule(&g_conf, "by-pattern", NULL, "pattern", "jvm.oom", "db_pattern");
	add_in_rule(&g_conf, "by-in", "database_name", ab, 2, "db_in");
	t = build_ok_with(&g_conf, cdb);
	assert_int_equal(tl_route_count(t), 5);
	for (uint32_t i = 0; i < 4; i++)
		assert_int_equal(tl_route_rule_route(t, i), i + 1);
	assert_int_equal(tl_route_rule_route(t, 4), TL_ROUTE_NONE);
	assert_string_equal(tl_route_rule_name(t, 2), "by-pattern");
	assert_null(tl_route_rule_name(t, 4));
	assert_int_equal(tl_route_rule_count(t), 4);

	/* Everything matches: rule 0 (a regex) beats the equals rule listed after it. */
	snprintf(json, sizeof(json),
	        "{\"query_id\":\"q\",\"event_type\":\"failed\",\"tenant\":\"acme\","
	        "\"timestamp\":\"2026-11-21T05:00:00Z\",\"metadata\":{\"database\":\"acme\","
	        "\"error\":\"OutOfMemoryError\"}}");
	classify_json(cdb, json, &cr);
	assert_int_equal(route_json_cr(t, json, &cr), 1);
	/* "acmx" fails the equals but matches ^ac: still rule 0. */
	assert_int_equal(route_json(t, ev_json("acmx", "acme")), 1);
	/* Tenant "zz": the pattern (rule 2) beats the in rule (3). */
	snprintf(json, sizeof(json),
	        "{\"query_id\":\"q\",\"event_type\":\"failed\",\"tenant\":\"zz\","
	        "\"timestamp\":\"2026-11-21T05:00:00Z\",\"metadata\":{\"database\":\"acme\","
	        "\"error\":\"OutOfMemoryError\"}}");
	classify_json(cdb, json, &cr);
	assert_int_equal(route_json_cr(t, json, &cr), 3);
	assert_int_equal(route_json_cr(t, json, NULL), 4);
	tl_route_table_free(t);

	/* The same rules with the equals rule first: it wins over the regex now. */
	test_setup(NULL);
	add_rule(&g_conf, "by-equals", "tenant", "equals", "acme", "db_equals");
	add_rule(&g_conf, "by-regex", "tenant", "matches", "^ac", "db_regex");
	t = build_ok(&g_conf);
	assert_int_equal(route_json(t, ev_json("acme", NULL)), 1);
	assert_int_equal(route_json(t, ev_json("acmx", NULL)), 2);
	tl_route_table_free(t);
	tl_classify_db_free(cdb);
}

static void
test_route_regex_rules_lowest_index_wins_within_one_scan(void **state)
{
	struct tl_route_table *t;

	(void)state;
	/* Both regexes match the same value; the later one matches earlier in it. */
	add_rule(&g_conf, "late-in-value", "tenant", "matches", "corp$", "db_a");
	add_rule(&g_conf, "early-in-value", "tenant", "matches", "^acme", "db_b");
	t = build_ok(&g_conf);
	assert_int_equal(route_json(t, ev_json("acme-corp", NULL)), 1);
	assert_int_equal(route_json(t, ev_json("acme-inc", NULL)), 2);
	assert_int_equal(scan_calls, 2);
	tl_route_table_free(t);
}

static void
test_route_no_rule_matches_default_route(void **state)
{
	struct tl_route_table *t;

	(void)state;
	/* No rule at all: one route, the default. */
	t = build_ok(&g_conf);
	assert_int_equal(tl_route_count(t), 1);
	assert_int_equal(tl_route_rule_count(t), 0);
	assert_int_equal(route_json(t, ev_json("acme", "sales")), 0);
	assert_route_db(t, 0, "telemetry");
	assert_null(tl_route_database(t, 1));
	assert_null(tl_route_main_table(t, 1));
	tl_route_table_free(t);

	add_rule(&g_conf, "acme", "tenant", "equals", "acme", "tenant_acme");
	add_rule(&g_conf, "globex", "database_name", "matches", "^tpch", "tenant_globex");
	t = build_ok(&g_conf);
	assert_int_equal(route_json(t, ev_json("initech", "sales")), 0);
	tl_route_table_free(t);
}

static void
test_route_same_target_shares_a_route(void **state)
{
	static const char *eu[] = {"finance_eu", "sales"};
	struct tl_route_table *t;
	struct tl_route_rule_def *r;

	(void)state;
	add_rule(&g_conf, "acme-a", "tenant", "equals", "acme", "tenant_acme");
	add_in_rule(&g_conf, "acme-b", "database_name", eu, 2, "tenant_acme");
	r = add_rule(&g_conf, "acme-audit", "tenant", "equals", "acme-audit", "tenant_acme");
	snprintf(r->table, sizeof(r->table), "audit_output");
	add_rule(&g_conf, "back-home", "tenant", "equals", "internal", "telemetry");
	t = build_ok(&g_conf);
	assert_int_equal(tl_route_count(t), 3);
	assert_int_equal(tl_route_rule_route(t, 0), 1);
	assert_int_equal(tl_route_rule_route(t, 1), 1);
	assert_int_equal(tl_route_rule_route(t, 2), 2);
	assert_int_equal(tl_route_rule_route(t, 3), 0);
	assert_route_db(t, 2, "tenant_acme");
	assert_string_equal(tl_route_main_table(t, 2), "audit_output");
	assert_int_equal(route_json(t, ev_json("x", "sales")), 1);
	assert_int_equal(route_json(t, ev_json("acme-audit", NULL)), 2);
	assert_int_equal(route_json(t, ev_json("internal", NULL)), 0);
	tl_route_table_free(t);
}

/* ---- values ------------------------------------------------------------------------ */

static void
test_route_absent_null_empty_values_match_nothing(void **state)
{
	struct tl_route_table *t;

	(void)state;
	add_rule(&g_conf, "acme", "tenant", "equals", "acme", "tenant_acme");
	add_rule(&g_conf, "any", "tenant", "matches", ".", "tenant_any");
	add_rule(&g_conf, "db", "database_name", "matches", "x*y", "tenant_db");
	t = build_ok(&g_conf);
	assert_int_equal(route_json(t, ev_json(NULL, NULL)), 0);
	assert_int_equal(route_json(t, "{\"query_id\":\"q\",\"event_type\":\"e\",\"timestamp\":"
	                               "\"2026-11-21T05:00:00Z\",\"tenant\":null,\"metadata\":{"
	                               "\"database\":null}}"),
	        0);
	assert_int_equal(route_json(t, ev_json("", "")), 0);
	/* Nothing was scanned: no value was there to scan. */
	assert_int_equal(scan_calls, 0);
	assert_int_equal(route_json(t, ev_json("b", NULL)), 2);
	tl_route_table_free(t);
}

static void
test_route_escaped_strings_compared_decoded(void **state)
{
	static const char *dbs[] = {"m\xc3\xbcnchen_dw", "a\"b", "C:\\temp", "tab\there"};
	struct tl_route_table *t;

	(void)state;
	add_rule(&g_conf, "acme", "tenant", "equals", "acme", "tenant_acme");
	add_in_rule(&g_conf, "odd", "database_name", dbs, 4, "tenant_odd");
	add_rule(&g_conf, "quote", "tenant", "matches", "^x\"y$", "tenant_quote");
	t = build_ok(&g_conf);
	/* The same value spelled with escapes. */
	assert_int_equal(route_json(t, ev_json("acm\\u0065", NULL)), 1);
	assert_int_equal(route_json(t, ev_json("\\u0061\\u0063\\u006d\\u0065", NULL)), 1);
	assert_int_equal(route_json(t, ev_json(NULL, "m\xc3\xbcnchen_dw")), 2);
	assert_int_equal(route_json(t, ev_json(NULL, "m\\u00fcnchen_dw")), 2);
	assert_int_equal(route_json(t, ev_json(NULL, "m\\u00FCnchen_dw")), 2);
	assert_int_equal(route_json(t, ev_json(NULL, "a\\\"b")), 2);
	assert_int_equal(route_json(t, ev_json(NULL, "a\\u0022b")), 2);
	assert_int_equal(route_json(t, ev_json(NULL, "C:\\\\temp")), 2);
	assert_int_equal(route_json(t, ev_json(NULL, "tab\\there")), 2);
	assert_int_equal(route_json(t, ev_json("x\\\"y", NULL)), 3);
	/* The escaped spelling is not the value: a backslash-u text is something else. */
	assert_int_equal(route_json(t, ev_json("acm\\\\u0065", NULL)), 0);
	assert_int_equal(route_json(t, ev_json(NULL, "tab\\\\there")), 0);
	tl_route_table_free(t);
}

static void
test_route_non_string_values_compared_as_written(void **state)
{
	struct tl_route_table *t;
	char json[512];

	(void)state;
	add_rule(&g_conf, "id42", "tenant_id", "equals", "42", "tenant_42");
	add_rule(&g_conf, "flagged", "flag", "equals", "true", "tenant_flag");
	add_rule(&g_conf, "payload-obj", "payload", "matches", "^\\{\"tenant\":", "tenant_obj");
	t = build_ok(&g_conf);
#define EV(extra)                                                                                  \
	(snprintf(json, sizeof(json),                                                              \
	         "{\"query_id\":\"q\",\"event_type\":\"e\",\"timestamp\":"                         \
	         "\"2026-11-21T05:00:00Z\"," extra "}"),                                           \
	        json)
	assert_int_equal(route_json(t, EV("\"tenant_id\":42")), 1);
	assert_int_equal(route_json(t, EV("\"tenant_id\":420")), 0);
	assert_int_equal(route_json(t, EV("\"tenant_id\":4")), 0);
	assert_int_equal(route_json(t, EV("\"flag\":true")), 2);
	assert_int_equal(route_json(t, EV("\"flag\":false")), 0);
	assert_int_equal(route_json(t, EV("\"payload\":{\"tenant\":\"acme\"}")), 3);
	/* A string payload is compared by its contents, which do not start with '{'. */
	assert_int_equal(route_json(t, EV("\"payload\":\"tenant\"")), 0);
#undef EV
	tl_route_table_free(t);
}

/* ---- pruning and failures ---------------------------------------------------------- */

static void
test_route_scan_skipped_when_earlier_rule_matched(void **state)
{
	struct tl_route_table *t;

	(void)state;
	add_rule(&g_conf, "acme", "tenant", "equals", "acme", "tenant_acme");
	add_rule(&g_conf, "tpch", "database_name", "matches", "^tpch", "tenant_globex");
	t = build_ok(&g_conf);
	assert_int_equal(route_json(t, ev_json("acme", "tpch_sf1")), 1);
	assert_int_equal(scan_calls, 0);
	assert_int_equal(route_json(t, ev_json("other", "tpch_sf1")), 2);
	assert_int_equal(scan_calls, 1);
	tl_route_table_free(t);
}

static void
test_route_scan_failure_counted_and_matches_nothing(void **state)
{
	struct tl_route_scratch *s = NULL;
	struct tl_route_table *t;
	struct tl_event ev;

	(void)state;
	add_rule(&g_conf, "tpch", "database_name", "matches", "^tpch", "tenant_globex");
	add_rule(&g_conf, "acme", "tenant", "equals", "acme", "tenant_acme");
	t = build_ok(&g_conf);
	assert_int_equal(tl_route_scratch_alloc(t, &s), 0);
	extract(ev_json("acme", "tpch_sf1"), &ev);
	fail_scan = true;
	assert_int_equal(tl_route_event(t, s, &ev, NULL), 2);
	assert_int_equal(tl_route_scratch_failures(s), 1);
	fail_scan = false;
	assert_int_equal(tl_route_event(t, s, &ev, NULL), 1);
	assert_int_equal(tl_route_scratch_failures(s), 1);
	tl_route_scratch_free(s);
	tl_route_table_free(t);
}

static void
test_route_hostile_events_do_not_crash_or_match(void **state)
{
	static uint8_t big[1 << 16];
	struct tl_route_scratch *s = NULL;
	struct tl_route_table *t;
	struct tl_event ev;

	(void)state;
	add_rule(&g_conf, "acme", "tenant", "equals", "acme", "tenant_acme");
	add_rule(&g_conf, "bs", "tenant", "equals", "\\", "tenant_bs");
	add_rule(&g_conf, "tpch", "tenant", "matches", "^tpch", "tenant_globex");
	t = build_ok(&g_conf);
	assert_int_equal(tl_route_scratch_alloc(t, &s), 0);

	/* A value longer than the column allows (64): the extractor never hands one over;
	 * an escaped one does not fit the decode buffer and matches nothing. */
	memset(&ev, 0, sizeof(ev));
	memset(big, 'a', sizeof(big));
	memcpy(big, "tpch\\u0041", 10);
	ev.col[COL_TENANT].kind = TL_VAL_STRING;
	ev.col[COL_TENANT].ptr = big;
	ev.col[COL_TENANT].len = sizeof(big);
	ev.col[COL_TENANT].escaped = 1;
	assert_int_equal(tl_route_event(t, s, &ev, NULL), 0);
	/* Not escaped: compared and scanned as is, whatever its length. */
	ev.col[COL_TENANT].escaped = 0;
	assert_int_equal(tl_route_event(t, s, &ev, NULL), 3);

	/* Broken escapes the extractor would have rejected: a lone trailing backslash, a
	 * truncated \u, a lone surrogate. */
	ev.col[COL_TENANT].ptr = (const uint8_t *)"\\";
	ev.col[COL_TENANT].len = 1;
	ev.col[COL_TENANT].escaped = 1;
	assert_int_equal(tl_route_event(t, s, &ev, NULL), 2);
	ev.col[COL_TENANT].ptr = (const uint8_t *)"acme\\u00";
	ev.col[COL_TENANT].len = 8;
	assert_int_equal(tl_route_event(t, s, &ev, NULL), 0);
	ev.col[COL_TENANT].ptr = (const uint8_t *)"\\ud800";
	ev.col[COL_TENANT].len = 6;
	assert_int_equal(tl_route_event(t, s, &ev, NULL), 0);

	/* NUL and control bytes inside a value; a NULL pointer with a length. */
	ev.col[COL_TENANT].ptr = (const uint8_t *)"acme\0x";
	ev.col[COL_TENANT].len = 6;
	ev.col[COL_TENANT].escaped = 0;
	assert_int_equal(tl_route_event(t, s, &ev, NULL), 0);
	ev.col[COL_TENANT].len = 4;
	assert_int_equal(tl_route_event(t, s, &ev, NULL), 1);
	ev.col[COL_TENANT].ptr = NULL;
	ev.col[COL_TENANT].len = 4;
	assert_int_equal(tl_route_event(t, s, &ev, NULL), 0);
	/* An unknown kind with no pointer. */
	ev.col[COL_TENANT].kind = 0xff;
	assert_int_equal(tl_route_event(t, s, &ev, NULL), 0);
	assert_int_equal(tl_route_scratch_failures(s), 0);
	tl_route_scratch_free(s);
	tl_route_table_free(t);
}

struct worker {
	const struct tl_route_table *t;
	struct tl_event ev[2];
	unsigned wrong;
};

static void *
worker_run(void *arg)
{
	struct worker *w = arg;
	struct tl_route_scratch *s = NULL;

	if (tl_route_scratch_alloc(w->t, &s) != 0) {
		w->wrong = 1u << 30;
		return NULL;
	}
	for (int i = 0; i < 20000; i++) {
		w->wrong += tl_route_event(w->t, s, &w->ev[0], NULL) != 1;
		w->wrong += tl_route_event(w->t, s, &w->ev[1], NULL) != 2;
	}
	tl_route_scratch_free(s);
	return NULL;
}

static void
test_route_two_threads_two_scratches_concurrently(void **state)
{
	static char j0[512], j1[512];
	struct worker w[2];
	pthread_t th[2];
	struct tl_route_table *t;

	(void)state;
	add_rule(&g_conf, "tpch", "database_name", "matches", "^tpch", "tenant_globex");
	add_rule(&g_conf, "acme", "tenant", "matches", "^acme", "tenant_acme");
	t = build_ok(&g_conf);
	snprintf(j0, sizeof(j0), "%s", ev_json(NULL, "tpch_sf1"));
	snprintf(j1, sizeof(j1), "%s", ev_json("acme", "sales"));
	for (int i = 0; i < 2; i++) {
		memset(&w[i], 0, sizeof(w[i]));
		w[i].t = t;
		extract(j0, &w[i].ev[0]);
		extract(j1, &w[i].ev[1]);
		assert_int_equal(pthread_create(&th[i], NULL, worker_run, &w[i]), 0);
	}
	for (int i = 0; i < 2; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		assert_int_equal(w[i].wrong, 0);
	}
	tl_route_table_free(t);
}

/* ---- build errors ------------------------------------------------------------------ */

static void
test_build_bad_regexes_reported_with_rule_names(void **state)
{
	const char *err;

	(void)state;
	add_rule(&g_conf, "good", "tenant", "matches", "^ok", "db_ok");
	add_rule(&g_conf, "open-paren", "tenant", "matches", "(abc", "db_a");
	add_rule(&g_conf, "backref", "database_name", "matches", "(a)\\1", "db_b");
	add_rule(&g_conf, "empty-match", "tenant", "matches", "x*", "db_c");
	err = build_fails(&g_conf);
	assert_int_equal(count_lines(err), 3);
	assert_non_null(strstr(err, "routing rule 'open-paren': matches does not compile: "));
	assert_non_null(strstr(err, "routing rule 'backref': matches does not compile: "));
	expect_line(err, "routing rule 'empty-match': matches can match the empty string: it would "
	                 "match every value");
	assert_null(strstr(err, "'good'"));
}

static void
test_build_hyperscan_failures_reported(void **state)
{
	struct tl_route_scratch *s = (struct tl_route_scratch *)&s;
	struct tl_route_table *t = NULL;
	const char *err;

	(void)state;
	add_rule(&g_conf, "acme", "tenant", "matches", "^acme", "tenant_acme");
	add_rule(&g_conf, "globex", "database_name", "matches", "^tpch", "tenant_globex");
	/* The set fails as a whole, naming no expression. */
	fail_compile = HS_COMPILER_ERROR;
	err = build_fails(&g_conf);
	assert_string_equal(err, "routing: the 2 regexes do not compile together: Pattern set "
	                         "too large for Hyperscan");
	/* ... or naming one: the rule is found from the expression's index. */
	fail_compile_expr = 1;
	err = build_fails(&g_conf);
	assert_string_equal(err, "routing rule 'globex': matches does not compile: Pattern set "
	                         "too large for Hyperscan");
	/* Out of memory is an error code, not a problem of the profile. */
	fail_compile = HS_NOMEM;
	err = build_fails_with(&g_conf, NULL, -ENOMEM);
	assert_string_equal(err, "");
	fail_compile = HS_SUCCESS;

	t = build_ok(&g_conf);
	fail_scratch = true;
	assert_int_equal(tl_route_scratch_alloc(t, &s), -ENOMEM);
	assert_null(s);
	fail_scratch = false;
	assert_int_equal(tl_route_scratch_alloc(t, &s), 0);
	tl_route_scratch_free(s);
	tl_route_table_free(t);

	/* Without a matches rule Hyperscan is never involved. */
	test_setup(NULL);
	add_rule(&g_conf, "acme", "tenant", "equals", "acme", "tenant_acme");
	fail_compile = HS_NOMEM;
	fail_scratch = true;
	t = build_ok(&g_conf);
	assert_int_equal(tl_route_scratch_alloc(t, &s), 0);
	tl_route_scratch_free(s);
	tl_route_table_free(t);
}

static void
test_build_rule_problems_in_code_built_conf(void **state)
{
	struct tl_route_rule_def *r;
	const char *err;

	(void)state;
	/* A hostile name is shown escaped, never raw. */
	add_rule(&g_conf, "a'b\x01\\", "tenant", "equals", "x", "db_x");
	add_rule(&g_conf, "pat", "tenant", "pattern", "jvm.oom", "db_p");
	add_rule(&g_conf, "nofield", NULL, "equals", "x", "db_nf");
	r = add_rule(&g_conf, "tbl", "tenant", "equals", "y", "db_t");
	snprintf(r->table, sizeof(r->table), "dead_letter");
	r = add_rule(&g_conf, "badtbl", "tenant", "equals", "z", "db_t");
	snprintf(r->table, sizeof(r->table), "sink-output");
	r = add_in_rule(&g_conf, "emptyin", "tenant", (const char *const[]){"a", ""}, 2, "db_e");
	add_rule(&g_conf, "info", "tenant", "equals", "i", "INFORMATION_SCHEMA");
	r = add_rule(&g_conf, "three", "tenant", "equals", "a", "db_3");
	snprintf(r->matches, sizeof(r->matches), "a");
	snprintf(r->in[0], TL_ROUTE_VALUE_MAX, "a");
	r->n_in = 1;
	err = build_fails(&g_conf);
	expect_line(err,
	        "routing rule 'a\\x27b\\x01\\x5c': name must be 1 to 63 characters of a-z, "
	        "0-9, '_', '.', '-'");
	expect_line(err, "routing rule 'pat': field has no meaning with pattern (the pattern's "
	                 "own fields are scanned): remove it");
	expect_line(err, "routing rule 'pat': pattern 'jvm.oom': no classify database to resolve "
	                 "pattern ids against");
	expect_line(err, "routing rule 'nofield': field is required with equals");
	expect_line(err, "routing rule 'tbl': table 'dead_letter' is reserved: error_events and "
	                 "dead_letter keep their names in every database");
	expect_line(err, "routing rule 'badtbl': table 'sink-output' is not a valid name: 1 to 63 "
	                 "letters, digits or '_', not starting with a digit");
	expect_line(err, "routing rule 'emptyin': in: value 2 is empty (an empty string never "
	                 "matches)");
	expect_line(err, "routing rule 'info': database 'INFORMATION_SCHEMA' is reserved by "
	                 "ClickHouse");
	expect_line(err, "routing rule 'three': set only one of equals, in, matches, pattern (this "
	                 "rule sets equals and in and matches)");
	assert_int_equal(count_lines(err), 9);
}

static void
test_build_user_problems_in_code_built_conf(void **state)
{
	struct tl_route_user_def *u;
	const char *err;

	(void)state;
	add_rule(&g_conf, "acme", "tenant", "equals", "acme", "tenant_acme");
	add_user(&g_conf, "ok_user", "tenant_acme");
	add_user(&g_conf, "home", "telemetry"); /* the default database is produced too */
	u = add_user(&g_conf, "two_dbs", "tenant_acme");
	snprintf(u->databases[1], TL_ROUTE_IDENT_MAX, "tenant_acme");
	u->n_databases = 2;
	u = add_user(&g_conf, "hex", "tenant_acme");
	snprintf(u->password_sha256, sizeof(u->password_sha256), "%063d", 0);
	u = add_user(&g_conf, "nethost", "tenant_acme");
	snprintf(u->networks[0], TL_ROUTE_NETWORK_MAX, "localhost");
	snprintf(u->networks[1], TL_ROUTE_NETWORK_MAX, "10.1.2.0/24");
	snprintf(u->networks[2], TL_ROUTE_NETWORK_MAX, "fe80::/129");
	snprintf(u->networks[3], TL_ROUTE_NETWORK_MAX, "1.2.3.4/");
	snprintf(u->networks[4], TL_ROUTE_NETWORK_MAX, "1.2.3.4/8</ip>");
	u->n_networks = 5;
	u = add_user(&g_conf, "9lives", "tenant_acme");
	u = add_user(&g_conf, "x<y", "tenant_acme");
	u = add_user(&g_conf, "acc", "tenant_acme");
	u->access = 7;
	err = build_fails(&g_conf);
	expect_line(err, "routing user 'two_dbs': database 'tenant_acme' is listed twice");
	expect_line(err, "routing user 'hex': password_sha256 must be 64 hex digits (the SHA-256 "
	                 "of the password, e.g. from sha256sum)");
	expect_line(err, "routing user 'nethost': network 'localhost' is not an IP address or CIDR "
	                 "block");
	expect_line(err, "routing user 'nethost': network 'fe80::/129' is not an IP address or "
	                 "CIDR block");
	expect_line(err, "routing user 'nethost': network '1.2.3.4/' is not an IP address or CIDR "
	                 "block");
	expect_line(err, "routing user 'nethost': network '1.2.3.4/8</ip>' is not an IP address or "
	                 "CIDR block");
	expect_line(err, "routing user '9lives': name must be 1 to 63 letters, digits or '_', not "
	                 "starting with a digit");
	expect_line(err, "routing user 'x<y': name must be 1 to 63 letters, digits or '_', not "
	                 "starting with a digit");
	expect_line(err, "routing user 'acc': access 7 out of range");
	assert_int_equal(count_lines(err), 9);
}

/* Write @p text to a file in the test's folder; @return its path. */
static const char *
write_tmp(const char *name, const char *text)
{
	static char path[1024];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", g_tmp_dir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
	assert_int_equal(fclose(f), 0);
	return path;
}

/* Load @p path into g_root; @return the loader's result (messages in @p msgs). */
static int
load(const char *path, char *msgs, size_t len)
{
	unsigned n_err = 0;
	FILE *f = fmemopen(msgs, len, "w");
	int rc;

	assert_non_null(f);
	memset(msgs, 0, len);
	rc = tl_config_load(path, root_opts, &g_root, NULL, f, &n_err);
	fclose(f);
	return rc;
}

static const char bad_yaml[] =
        "routing:\n"                       /* 1 */
        "  rules:\n"                       /* 2 */
        "    - name: acme\n"               /* 3 */
        "      field: tenant\n"            /* 4 */
        "      equals: acme\n"             /* 5 */
        "      database: tenant_acme\n"    /* 6 */
        "    - name: nofield\n"            /* 7 */
        "      field: tenant_name\n"       /* 8 */
        "      equals: x\n"                /* 9 */
        "      database: tenant_x\n"       /* 10 */
        "    - name: two\n"                /* 11 */
        "      field: tenant\n"            /* 12 */
        "      equals: a\n"                /* 13 */
        "      matches: '^a'\n"            /* 14 */
        "      database: tenant_two\n"     /* 15 */
        "    - name: baddb\n"              /* 16 */
        "      field: tenant\n"            /* 17 */
        "      equals: b\n"                /* 18 */
        "      database: 9tenant-b\n"      /* 19 */
        "    - name: nopat\n"              /* 20 */
        "      pattern: no.such.pattern\n" /* 21 */
        "      database: tenant_p\n"       /* 22 */
        "    - name: acme\n"               /* 23 */
        "      field: tenant\n"            /* 24 */
        "      in: [c, d]\n"               /* 25 */
        "      database: tenant_acme\n"    /* 26 */
        "    - name: none\n"               /* 27 */
        "      field: tenant\n"            /* 28 */
        "      database: tenant_none\n"    /* 29 */
        "    - name: sys\n"                /* 30 */
        "      field: tenant\n"            /* 31 */
        "      equals: s\n"                /* 32 */
        "      database: system\n"         /* 33 */
        "      table: error_events\n"      /* 34 */
        "  users:\n"                       /* 35 */
        "    - name: acme_reader\n"        /* 36 */
        "      password_sha256: "
        "68cd9b2b22382530393ca0cbe8f2d0fd06d904703b400f968cf3a3077aeae4a3\n" /* 37 */
        "      databases: [tenant_acme, tenant_globex]\n"                    /* 38 */
        "    - name: acme_reader\n"                                          /* 39 */
        "      password_env: X\n"                                            /* 40 */
        "      password_file: /x\n"                                          /* 41 */
        "      databases: [tenant_acme]\n"                                   /* 42 */
        "      networks: [10.0.0.0/33]\n"                                    /* 43 */
        "    - name: default\n"                                              /* 44 */
        "      databases: []\n";                                             /* 45 */

static void
test_build_profile_problems_reported_with_file_and_line(void **state)
{
	struct tl_classify_db *cdb = classify_db();
	char msgs[2048], want[2048], cols[512];
	const char *path = write_tmp("bad.yaml", bad_yaml);
	const char *err;

	(void)state;
	if (load(path, msgs, sizeof(msgs)) != 0)
		fail_msg("load: %s", msgs);
	assert_int_equal(g_root.routing.n_rules, 8);
	assert_int_equal(g_root.routing.n_users, 3);
	snprintf(g_defdb, sizeof(g_defdb), "telemetry");
	err = build_fails_with(&g_root.routing, cdb, TL_E_CONFIG);

	snprintf(cols, sizeof(cols),
	        "query_id, event_type, event_time, query_text, user_id, database_name, "
	        "duration_ms, rows_affected, error, payload, tenant, tenant_id, flag");
#define WANT(line, fmt, ...)                                                                       \
	do {                                                                                       \
		snprintf(want, sizeof(want), "%s:%d: " fmt, path, line, __VA_ARGS__);              \
		expect_line(err, want);                                                            \
	} while (0)
	WANT(7, "routing rule 'nofield': unknown field 'tenant_name' (valid: %s)", cols);
	WANT(11, "routing rule 'two': %s",
	        "set only one of equals, in, matches, pattern (this rule sets equals and matches)");
	WANT(16, "routing rule 'baddb': %s",
	        "database '9tenant-b' is not a valid name: 1 to 63 letters, digits or '_', not "
	        "starting with a digit");
	WANT(20, "routing rule 'nopat': %s", "unknown classify pattern id 'no.such.pattern'");
	WANT(23, "routing rule 'acme': duplicate name (first defined at %s:3)", path);
	WANT(27, "routing rule 'none': %s",
	        "no match kind: set one of equals, in, matches, pattern");
	WANT(30, "routing rule 'sys': %s", "database 'system' is reserved by ClickHouse");
	WANT(30, "routing rule 'sys': %s",
	        "table 'error_events' is reserved: error_events and dead_letter keep their names "
	        "in every database");
	WANT(36, "routing user 'acme_reader': %s",
	        "database 'tenant_globex' is produced by no rule and is not the default database "
	        "'telemetry'");
	WANT(39, "routing user 'acme_reader': duplicate name (first defined at %s:36)", path);
	WANT(39, "routing user 'acme_reader': %s",
	        "set only one of password_sha256, password_file and password_env");
	WANT(39, "routing user 'acme_reader': %s",
	        "network '10.0.0.0/33' is not an IP address or CIDR block");
	WANT(44, "routing user 'default': %s",
	        "name 'default' is the server's own user: choose another");
	WANT(44, "routing user 'default': %s",
	        "no password: set password_sha256, password_file or password_env");
	WANT(44, "routing user 'default': %s", "no databases: list the databases the user may use");
#undef WANT
	assert_int_equal(count_lines(err), 15);
	unlink(path);
	tl_classify_db_free(cdb);
}

static void
test_build_profile_defaults_and_locations(void **state)
{
	static const char text[] = "routing:\n"
	                           "  rules:\n"
	                           "    - name: acme\n"
	                           "      field: database_name\n"
	                           "      in: [sales, 'm\xc3\xbcnchen_dw']\n"
	                           "      database: tenant_acme\n"
	                           "    - name: globex\n"
	                           "      field: database_name\n"
	                           "      matches: '^tpch_'\n"
	                           "      database: tenant_globex\n"
	                           "      table: globex_events\n"
	                           "  users:\n"
	                           "    - name: acme_reader\n"
	                           "      password_env: ACME_PW\n"
	                           "      databases: [tenant_acme]\n"
	                           "    - name: globex_writer\n"
	                           "      password_file: /run/secrets/globex\n"
	                           "      databases: [tenant_globex, telemetry]\n"
	                           "      networks: ['10.0.0.0/8', '::1']\n"
	                           "      access: write\n";
	const char *path = write_tmp("good.yaml", text);
	const struct tl_route_conf *c = &g_root.routing;
	struct tl_route_table *t;
	char msgs[2048];

	(void)state;
	if (load(path, msgs, sizeof(msgs)) != 0)
		fail_msg("load: %s", msgs);
	assert_int_equal(c->n_rules, 2);
	assert_string_equal(c->rules[0].loc.file, path);
	assert_int_equal(c->rules[0].loc.line, 3);
	assert_int_equal(c->rules[1].loc.line, 7);
	assert_string_equal(c->rules[0].table, "sink_output");
	assert_string_equal(c->rules[1].table, "globex_events");
	assert_int_equal(c->rules[0].n_in, 2);
	assert_string_equal(c->rules[0].in[1], "m\xc3\xbcnchen_dw");
	assert_int_equal(c->n_users, 2);
	assert_int_equal(c->users[0].loc.line, 13);
	assert_int_equal(c->users[0].access, TL_ROUTE_ACCESS_READ);
	assert_int_equal(c->users[0].n_networks, 1);
	assert_string_equal(c->users[0].networks[0], "::/0");
	assert_int_equal(c->users[1].access, TL_ROUTE_ACCESS_WRITE);
	assert_int_equal(c->users[1].n_networks, 2);
	assert_string_equal(c->users[1].networks[1], "::1");
	snprintf(g_defdb, sizeof(g_defdb), "telemetry");
	t = build_ok(&g_root.routing);
	assert_int_equal(tl_route_count(t), 3);
	assert_int_equal(route_json(t, ev_json(NULL, "m\\u00fcnchen_dw")), 1);
	assert_int_equal(route_json(t, ev_json(NULL, "tpch_sf100")), 2);
	assert_string_equal(tl_route_main_table(t, 2), "globex_events");
	tl_route_table_free(t);
	unlink(path);
}

static void
test_build_unknown_key_and_bad_access_rejected_by_loader(void **state)
{
	static const char text[] = "routing:\n"
	                           "  rules:\n"
	                           "    - name: acme\n"
	                           "      field: tenant\n"
	                           "      equal: acme\n"
	                           "      database: tenant_acme\n"
	                           "  users:\n"
	                           "    - name: u\n"
	                           "      password_env: X\n"
	                           "      databases: [tenant_acme]\n"
	                           "      access: admin\n";
	const char *path = write_tmp("keys.yaml", text);
	char msgs[2048], want[1024];

	(void)state;
	assert_int_equal(load(path, msgs, sizeof(msgs)), TL_E_CONFIG);
	snprintf(want, sizeof(want), "%s:5:", path);
	assert_non_null(strstr(msgs, want));
	assert_non_null(strstr(msgs, "equal"));
	snprintf(want, sizeof(want), "%s:11:", path);
	assert_non_null(strstr(msgs, want));
	assert_non_null(strstr(msgs, "admin"));
	unlink(path);
}

static void
test_build_limits_and_arguments(void **state)
{
	struct tl_route_table *t = (struct tl_route_table *)&t;
	struct tl_route_scratch *s = (struct tl_route_scratch *)&s;
	char small[120];
	const char *err;

	(void)state;
	assert_int_equal(
	        tl_route_build(NULL, g_defdb, g_schema, NULL, &t, g_err, sizeof(g_err)), -EINVAL);
	assert_int_equal(
	        tl_route_build(&g_conf, g_defdb, NULL, NULL, &t, g_err, sizeof(g_err)), -EINVAL);
	assert_int_equal(
	        tl_route_build(&g_conf, NULL, g_schema, NULL, &t, g_err, sizeof(g_err)), -EINVAL);
	assert_int_equal(
	        tl_route_build(&g_conf, g_defdb, g_schema, NULL, NULL, g_err, sizeof(g_err)),
	        -EINVAL);
	assert_int_equal(tl_route_scratch_alloc(NULL, &s), -EINVAL);
	assert_null(s);
	assert_int_equal(
	        tl_route_scratch_alloc((const struct tl_route_table *)&g_conf, NULL), -EINVAL);
	tl_route_table_free(NULL);
	tl_route_scratch_free(NULL);

	/* More rules than the table holds (only a conf built in code can have them). */
	g_conf.n_rules = TL_ROUTE_MAX_RULES + 1;
	err = build_fails(&g_conf);
	assert_string_equal(err, "routing: 257 rules and 0 users, at most 256 and 64");

	/* The default database must be a valid name too. */
	test_setup(NULL);
	snprintf(g_defdb, sizeof(g_defdb), "tele-metry");
	err = build_fails(&g_conf);
	assert_string_equal(err, "routing: the default database 'tele-metry' (uplink.database) is "
	                         "not a valid name");

	/* Many problems, a small buffer: the rest is counted, the buffer never overrun. */
	test_setup(NULL);
	for (int i = 0; i < 20; i++)
		add_rule(&g_conf, "dup", "tenant", "equals", "x", "db");
	memset(small, 'Z', sizeof(small));
	assert_int_equal(
	        tl_route_build(&g_conf, g_defdb, g_schema, NULL, &t, small, 100), TL_E_CONFIG);
	assert_null(t);
	assert_true(strlen(small) < 100);
	assert_non_null(strstr(small, "more problems)"));
	assert_int_equal(small[100], 'Z');
	/* No buffer at all. */
	assert_int_equal(
	        tl_route_build(&g_conf, g_defdb, g_schema, NULL, &t, NULL, 0), TL_E_CONFIG);
}

static void
test_names_valid_only_in_whitelist(void **state)
{
	char name[80];

	(void)state;
	assert_true(tl_route_ident_valid("tenant_acme"));
	assert_true(tl_route_ident_valid("_x9"));
	assert_false(tl_route_ident_valid(NULL));
	assert_false(tl_route_ident_valid(""));
	assert_false(tl_route_ident_valid("9x"));
	assert_false(tl_route_ident_valid("a-b"));
	assert_false(tl_route_ident_valid("a.b"));
	assert_false(tl_route_ident_valid("a`b"));
	assert_false(tl_route_ident_valid("a b"));
	assert_false(tl_route_ident_valid("\xc3\xa9"));
	memset(name, 'a', 63);
	name[63] = '\0';
	assert_true(tl_route_ident_valid(name));
	name[63] = 'a';
	name[64] = '\0';
	assert_false(tl_route_ident_valid(name));
	assert_true(tl_route_user_name_valid("acme_reader"));
	assert_false(tl_route_user_name_valid("default"));
	assert_true(tl_route_user_name_valid("Default"));
	assert_false(tl_route_user_name_valid("a'b"));
	assert_true(tl_route_network_valid("::/0"));
	assert_true(tl_route_network_valid("10.1.2.3"));
	assert_true(tl_route_network_valid("10.0.0.0/0"));
	assert_true(tl_route_network_valid("10.0.0.0/32"));
	assert_true(tl_route_network_valid("2001:db8::/128"));
	assert_true(tl_route_network_valid("::ffff:10.0.0.1"));
	assert_false(tl_route_network_valid(NULL));
	assert_false(tl_route_network_valid(""));
	assert_false(tl_route_network_valid("/8"));
	assert_false(tl_route_network_valid("10.0.0.0/33"));
	assert_false(tl_route_network_valid("2001:db8::/129"));
	assert_false(tl_route_network_valid("10.0.0.0/-1"));
	assert_false(tl_route_network_valid("10.0.0.0/8 "));
	assert_false(tl_route_network_valid("10.0.0.0/0008"));
	assert_false(tl_route_network_valid("10.0.0"));
	assert_false(tl_route_network_valid("host.example"));
	assert_false(tl_route_network_valid("10.0.0.1'"));
	assert_string_equal(tl_route_access_names[TL_ROUTE_ACCESS_READ], "read");
	assert_string_equal(tl_route_access_names[TL_ROUTE_ACCESS_WRITE], "write");
	assert_null(tl_route_access_names[TL_ROUTE_ACCESS_MAX]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup(test_route_equals_value_routes_to_its_database, test_setup),
	        cmocka_unit_test_setup(
	                test_route_in_list_each_value_found_near_misses_not, test_setup),
	        cmocka_unit_test_setup(test_route_matches_regex_on_decoded_value, test_setup),
	        cmocka_unit_test_setup(test_route_pattern_rule_follows_classify_result, test_setup),
	        cmocka_unit_test_setup(test_route_order_first_rule_wins_across_kinds, test_setup),
	        cmocka_unit_test_setup(
	                test_route_regex_rules_lowest_index_wins_within_one_scan, test_setup),
	        cmocka_unit_test_setup(test_route_no_rule_matches_default_route, test_setup),
	        cmocka_unit_test_setup(test_route_same_target_shares_a_route, test_setup),
	        cmocka_unit_test_setup(
	                test_route_absent_null_empty_values_match_nothing, test_setup),
	        cmocka_unit_test_setup(test_route_escaped_strings_compared_decoded, test_setup),
	        cmocka_unit_test_setup(
	                test_route_non_string_values_compared_as_written, test_setup),
	        cmocka_unit_test_setup(
	                test_route_scan_skipped_when_earlier_rule_matched, test_setup),
	        cmocka_unit_test_setup(
	                test_route_scan_failure_counted_and_matches_nothing, test_setup),
	        cmocka_unit_test_setup(test_route_hostile_events_do_not_crash_or_match, test_setup),
	        cmocka_unit_test_setup(
	                test_route_two_threads_two_scratches_concurrently, test_setup),
	        cmocka_unit_test_setup(test_build_bad_regexes_reported_with_rule_names, test_setup),
	        cmocka_unit_test_setup(test_build_hyperscan_failures_reported, test_setup),
	        cmocka_unit_test_setup(test_build_rule_problems_in_code_built_conf, test_setup),
	        cmocka_unit_test_setup(test_build_user_problems_in_code_built_conf, test_setup),
	        cmocka_unit_test_setup(
	                test_build_profile_problems_reported_with_file_and_line, test_setup),
	        cmocka_unit_test_setup(test_build_profile_defaults_and_locations, test_setup),
	        cmocka_unit_test_setup(
	                test_build_unknown_key_and_bad_access_rejected_by_loader, test_setup),
	        cmocka_unit_test_setup(test_build_limits_and_arguments, test_setup),
	        cmocka_unit_test_setup(test_names_valid_only_in_whitelist, test_setup),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
