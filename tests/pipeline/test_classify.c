/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Unit tests of pipeline/tl_classify: pattern validation and its messages, flags, fields,
 * result rules (dedup, the 16-id cap, severity, effect), the compiled-database cache and
 * concurrent scans.
 *
 * Inputs are real log lines from ../shared/data/loghub (Hadoop and HDFS samples). The
 * binary is linked with -Wl,--wrap=hs_compile_multi,--wrap=hs_alloc_scratch,--wrap=hs_scan:
 * the wrappers count compiles (a cache hit must not compile) and inject failures that a
 * real Hyperscan cannot be made to produce on demand.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <hs/hs.h>
#include <xxhash.h>

#include "tl_classify.h"
#include "tl_error.h"
#include "tl_opt.h"
#include "tl_schema.h"
#include "tl_test_schema.h"

/* e6data columns (tl_test_e6data_def). */
#define COL_QUERY_TEXT 3
#define COL_ERROR 8
#define COL_PAYLOAD 9

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

static unsigned compile_calls;
static bool fail_compile_global; /* report an error that names no expression */
static bool fail_scratch;
static bool fail_scan;

hs_error_t
__wrap_hs_compile_multi(const char *const *expressions, const unsigned int *flags,
        const unsigned int *ids, unsigned int elements, unsigned int mode,
        const hs_platform_info_t *platform, hs_database_t **db, hs_compile_error_t **error)
{
	compile_calls++;
	if (fail_compile_global) {
		hs_compile_error_t *e = malloc(sizeof(*e));

		/* Freed by hs_free_compile_error(), which uses free() by default. */
		assert_non_null(e);
		e->message = strdup("Pattern set too large for Hyperscan");
		e->expression = -1;
		*db = NULL;
		*error = e;
		return HS_COMPILER_ERROR;
	}
	return __real_hs_compile_multi(
	        expressions, flags, ids, elements, mode, platform, db, error);
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
	if (fail_scan)
		return HS_INVALID;
	return __real_hs_scan(db, data, length, flags, scratch, on_event, context);
}

/* ---- fixtures ---------------------------------------------------------------------- */

struct root {
	struct tl_classify_conf classify;
};

static const struct tl_opt root_opts[] = {
        {
                .name = "classify",
                .type = TL_OPT_SECTION,
                .offset = offsetof(struct root, classify),
                .sub = tl_classify_opts,
        },
        {.name = NULL},
};

static struct root g_root;
static struct tl_classify_conf g_conf;
static struct tl_schema *g_schema;
static char g_err[8192];

static const char *
src_dir(void)
{
	const char *s = getenv("TAPLINE_SRC");

	return s && s[0] ? s : ".";
}

static const char *
data_dir(void)
{
	const char *s = getenv("TAPLINE_DATA");

	return s && s[0] ? s : "../shared/data";
}

/* The fixture's path as the loader names it (messages carry it). */
static const char *
fixture(const char *name)
{
	static char path[1024];

	snprintf(path, sizeof(path), "%s/tests/pipeline/data/%s", src_dir(), name);
	return path;
}

/* Load @p name into g_root; @return the loader's result; its messages go to @p msgs. */
static int
load(const char *name, char *msgs, size_t len)
{
	unsigned n_err = 0;
	FILE *f = fmemopen(msgs, len, "w");
	int rc;

	assert_non_null(f);
	memset(msgs, 0, len);
	rc = tl_config_load(fixture(name), root_opts, &g_root, NULL, f, &n_err);
	fclose(f);
	return rc;
}

static void
load_ok(const char *name)
{
	char msgs[2048];

	if (load(name, msgs, sizeof(msgs)) != 0)
		fail_msg("%s: %s", name, msgs);
}

/* Every line of a loghub file, each a NUL-terminated string. */
struct lines {
	char *buf;
	char **line;
	size_t n;
};

static void
lines_read(const char *name, struct lines *l)
{
	char path[1024];
	FILE *f;
	long size;
	size_t cap = 4096;

	snprintf(path, sizeof(path), "%s/loghub/%s", data_dir(), name);
	f = fopen(path, "rb");
	if (f == NULL)
		fail_msg("cannot open %s (set TAPLINE_DATA)", path);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	size = ftell(f);
	assert_true(size > 0);
	rewind(f);
	l->buf = malloc((size_t)size + 1);
	l->line = malloc(cap * sizeof(*l->line));
	assert_non_null(l->buf);
	assert_non_null(l->line);
	assert_int_equal(fread(l->buf, 1, (size_t)size, f), (size_t)size);
	fclose(f);
	l->buf[size] = '\0';
	l->n = 0;
	for (char *p = l->buf; *p != '\0';) {
		char *nl = strchr(p, '\n');

		if (l->n == cap) {
			cap *= 2;
			l->line = realloc(l->line, cap * sizeof(*l->line));
			assert_non_null(l->line);
		}
		l->line[l->n++] = p;
		if (nl == NULL)
			break;
		*nl = '\0';
		if (nl > p && nl[-1] == '\r')
			nl[-1] = '\0';
		p = nl + 1;
	}
}

static void
lines_free(struct lines *l)
{
	free(l->buf);
	free(l->line);
	memset(l, 0, sizeof(*l));
}

/* The first line of @p l containing @p needle. */
static const char *
line_with(const struct lines *l, const char *needle)
{
	for (size_t i = 0; i < l->n; i++)
		if (strstr(l->line[i], needle) != NULL)
			return l->line[i];
	fail_msg("no line contains '%s'", needle);
	return NULL;
}

static void
set_str(struct tl_event *ev, int col, const char *s)
{
	ev->col[col].kind = TL_VAL_STRING;
	ev->col[col].ptr = (const uint8_t *)s;
	ev->col[col].len = (uint32_t)strlen(s);
}

static void
event_reset(struct tl_event *ev)
{
	memset(ev, 0, sizeof(*ev));
}

/* Append a pattern to @p c built in code (no file location). */
static struct tl_classify_pattern_def *
add_pattern(struct tl_classify_conf *c, const char *id, const char *regex, const char *category,
        enum tl_classify_severity sev, enum tl_classify_effect eff)
{
	struct tl_classify_pattern_def *p = &c->patterns[c->n_patterns++];

	memset(p, 0, sizeof(*p));
	snprintf(p->id, sizeof(p->id), "%s", id);
	snprintf(p->regex, sizeof(p->regex), "%s", regex);
	snprintf(p->category, sizeof(p->category), "%s", category);
	p->severity = (int)sev - 1;
	p->effect = (int)eff;
	return p;
}

static void
add_flag(struct tl_classify_pattern_def *p, const char *flag)
{
	snprintf(p->flags[p->n_flags++], TL_CLASSIFY_FLAG_MAX, "%s", flag);
}

static void
add_field(struct tl_classify_pattern_def *p, const char *field)
{
	snprintf(p->fields[p->n_fields++], TL_SCHEMA_NAME_MAX, "%s", field);
}

/* g_conf reset to no cache, default fields [error], no pattern. */
static struct tl_classify_conf *
conf_reset(void)
{
	memset(&g_conf, 0, sizeof(g_conf));
	snprintf(g_conf.fields[0], TL_SCHEMA_NAME_MAX, "error");
	g_conf.n_fields = 1;
	return &g_conf;
}

static struct tl_classify_db *
build_ok(const struct tl_classify_conf *c)
{
	struct tl_classify_db *db = NULL;
	int rc = tl_classify_build(c, g_schema, &db, g_err, sizeof(g_err));

	if (rc != 0)
		fail_msg("build: %s: %s", tl_strerror(rc), g_err);
	assert_non_null(db);
	assert_string_equal(g_err, "");
	return db;
}

/* Build expecting failure; @return the error text (g_err). */
static const char *
build_fails(const struct tl_classify_conf *c, int expect_rc)
{
	struct tl_classify_db *db = (struct tl_classify_db *)&db;
	int rc = tl_classify_build(c, g_schema, &db, g_err, sizeof(g_err));

	assert_int_equal(rc, expect_rc);
	assert_null(db);
	return g_err;
}

static unsigned
count_lines(const char *s)
{
	unsigned n = s[0] != '\0';

	for (; *s != '\0'; s++)
		n += *s == '\n';
	return n;
}

/* "file:line: pattern 'id': " for a fixture. */
static void
expect_problem(const char *err, const char *file, unsigned line, const char *id, const char *msg)
{
	char want[2600];

	snprintf(want, sizeof(want), "%s:%u: pattern '%s': %s", fixture(file), line, id, msg);
	if (strstr(err, want) == NULL)
		fail_msg("expected \"%s\" in:\n%s", want, err);
}

static int
group_setup(void **state)
{
	struct tl_schema_def def;
	struct tl_limits lim = tl_test_e6data_limits();
	char msg[256];

	(void)state;
	tl_test_e6data_def(&def);
	if (tl_schema_compile(&def, &lim, &g_schema, msg, sizeof(msg)) != 0) {
		fprintf(stderr, "schema: %s\n", msg);
		return -1;
	}
	return 0;
}

static int
group_teardown(void **state)
{
	(void)state;
	tl_schema_free(g_schema);
	return 0;
}

static int
test_setup(void **state)
{
	(void)state;
	compile_calls = 0;
	fail_compile_global = false;
	fail_scratch = false;
	fail_scan = false;
	g_err[0] = '\0';
	return 0;
}

/* Classify @p ev with a fresh scratch. */
static void
classify(const struct tl_classify_db *db, const struct tl_event *ev, struct tl_classify_result *r)
{
	struct tl_classify_scratch *s = NULL;

	assert_int_equal(tl_classify_scratch_alloc(db, &s), 0);
	assert_non_null(s);
	tl_classify_event(db, s, ev, r);
	tl_classify_scratch_free(s);
}

static bool
has_id(const struct tl_classify_db *db, const struct tl_classify_result *r, const char *id)
{
	int k = tl_classify_db_find(db, id);

	assert_true(k >= 0);
	for (unsigned i = 0; i < r->n; i++)
		if (r->ids[i] == k)
			return true;
	return false;
}

/* ---- loading and building a profile -------------------------------------------------- */

static void
test_build_profile_accessors_match_yaml(void **state)
{
	const struct tl_classify_pattern *p;
	struct tl_classify_db *db;
	const char *h;

	(void)state;
	load_ok("classify_basic.yaml");
	assert_int_equal(g_root.classify.n_patterns, 7);
	/* The loader recorded where each `-` entry is. */
	assert_string_equal(g_root.classify.patterns[0].loc.file, fixture("classify_basic.yaml"));
	assert_int_equal(g_root.classify.patterns[0].loc.line, 7);
	assert_int_equal(g_root.classify.patterns[6].loc.line, 43);

	db = build_ok(&g_root.classify);
	assert_int_equal(tl_classify_db_count(db), 7);
	assert_false(tl_classify_db_from_cache(db));
	assert_int_equal(compile_calls, 1);
	assert_int_equal(tl_classify_db_find(db, "hadoop.rm_contact"), 1);
	assert_int_equal(tl_classify_db_find(db, "no.such"), -1);
	p = tl_classify_db_pattern(db, 0);
	assert_non_null(p);
	assert_string_equal(p->id, "hadoop.no_route");
	assert_string_equal(p->category, "network");
	assert_int_equal(p->severity, TL_CLASSIFY_SEV_CRITICAL);
	assert_int_equal(p->effect, TL_CLASSIFY_EFFECT_ERROR);
	assert_string_equal(
	        p->cause, "A node could not route to the NameNode or ResourceManager host");
	assert_string_equal(p->action, "Check the host's network interfaces, routes and firewall");
	p = tl_classify_db_pattern(db, 2);
	assert_string_equal(p->id, "hadoop.lease_renew");
	assert_int_equal(p->severity, TL_CLASSIFY_SEV_WARNING);
	assert_int_equal(p->effect, TL_CLASSIFY_EFFECT_TAG);
	assert_string_equal(p->cause, "");
	assert_null(tl_classify_db_pattern(db, 7));
	h = tl_classify_db_hash(db);
	assert_int_equal(strlen(h), 32);
	assert_int_equal(strspn(h, "0123456789abcdef"), 32);
	tl_classify_db_free(db);
}

static void
test_build_same_patterns_same_hash_changed_regex_new_hash(void **state)
{
	struct tl_classify_db *a, *b, *c;
	char ha[TL_CLASSIFY_HASH_HEX];

	(void)state;
	load_ok("classify_basic.yaml");
	a = build_ok(&g_root.classify);
	b = build_ok(&g_root.classify);
	snprintf(ha, sizeof(ha), "%s", tl_classify_db_hash(a));
	assert_string_equal(ha, tl_classify_db_hash(b));
	/* cause/action are not compiled: they do not change the database. */
	snprintf(g_root.classify.patterns[0].cause, TL_CLASSIFY_TEXT_MAX, "other text");
	tl_classify_db_free(b);
	b = build_ok(&g_root.classify);
	assert_string_equal(ha, tl_classify_db_hash(b));
	snprintf(g_root.classify.patterns[1].regex, TL_CLASSIFY_REGEX_MAX, "ERROR IN CONTACTING");
	c = build_ok(&g_root.classify);
	assert_string_not_equal(ha, tl_classify_db_hash(c));
	tl_classify_db_free(a);
	tl_classify_db_free(b);
	tl_classify_db_free(c);
}

static void
test_build_child_profile_replaces_patterns_located_in_child(void **state)
{
	struct tl_classify_db *db;

	(void)state;
	load_ok("classify_child.yaml");
	assert_int_equal(g_root.classify.n_patterns, 1);
	assert_string_equal(g_root.classify.patterns[0].loc.file, fixture("classify_child.yaml"));
	assert_int_equal(g_root.classify.patterns[0].loc.line, 5);
	/* Inherited from the parent: */
	assert_string_equal(g_root.classify.cache_dir, "");
	db = build_ok(&g_root.classify);
	assert_int_equal(tl_classify_db_count(db), 1);
	tl_classify_db_free(db);
}

static void
test_build_bad_regex_reports_every_id_and_line(void **state)
{
	const char *err;

	(void)state;
	load_ok("classify_bad_regex.yaml");
	err = build_fails(&g_root.classify, TL_E_CONFIG);
	expect_problem(err, "classify_bad_regex.yaml", 9, "bad.paren", "does not compile: ");
	expect_problem(err, "classify_bad_regex.yaml", 16, "bad.backref", "does not compile: ");
	assert_int_equal(count_lines(err), 2);
	assert_null(strstr(err, "hadoop.rm_contact"));
	assert_null(strstr(err, "hdfs.serving_block"));
}

static void
test_build_bad_flags_reported(void **state)
{
	const char *err;

	(void)state;
	load_ok("classify_bad_flags.yaml");
	err = build_fails(&g_root.classify, TL_E_CONFIG);
	expect_problem(err, "classify_bad_flags.yaml", 5, "flag.unknown", "unknown flag 'nocase'");
	expect_problem(err, "classify_bad_flags.yaml", 9, "flag.allowempty",
	        "flag 'allowempty' is not allowed");
	expect_problem(err, "classify_bad_flags.yaml", 13, "flag.ucp_alone",
	        "flag 'ucp' needs flag 'utf8'");
	assert_int_equal(count_lines(err), 3);
	/* Validation stops the build before Hyperscan is asked. */
	assert_int_equal(compile_calls, 0);
}

static void
test_build_bad_fields_reported(void **state)
{
	const char *err;

	(void)state;
	load_ok("classify_bad_fields.yaml");
	err = build_fails(&g_root.classify, TL_E_CONFIG);
	expect_problem(err, "classify_bad_fields.yaml", 5, "field.unknown",
	        "unknown field 'stacktrace' (valid: raw, query_id, event_type, query_text, "
	        "user_id, database_name, error, payload)");
	expect_problem(err, "classify_bad_fields.yaml", 9, "field.number",
	        "field 'duration_ms' is a uint64 column");
	assert_int_equal(count_lines(err), 2);
}

static void
test_build_duplicate_id_reports_both_lines(void **state)
{
	const char *err;

	(void)state;
	load_ok("classify_dup.yaml");
	err = build_fails(&g_root.classify, TL_E_CONFIG);
	{
		char first[1100];

		snprintf(first, sizeof(first), "duplicate id (first defined at %s:5)",
		        fixture("classify_dup.yaml"));
		expect_problem(err, "classify_dup.yaml", 8, "hdfs.serving_block", first);
	}
	assert_int_equal(count_lines(err), 1);
}

static void
test_load_unknown_key_in_pattern_located(void **state)
{
	char msgs[2048], want[1200];

	(void)state;
	assert_int_equal(load("classify_unknown_key.yaml", msgs, sizeof(msgs)), TL_E_CONFIG);
	snprintf(want, sizeof(want), "%s:5:7: unknown key 'regx' in classify.patterns[0]",
	        fixture("classify_unknown_key.yaml"));
	if (strstr(msgs, want) == NULL)
		fail_msg("expected \"%s\" in:\n%s", want, msgs);
	assert_non_null(strstr(msgs, "required option classify.patterns[0].regex is not set"));
}

static void
test_build_in_code_bad_names_reported_without_location(void **state)
{
	struct tl_classify_conf *c = conf_reset();
	const char *err;

	(void)state;
	add_pattern(c, "Bad ID", "ERROR IN CONTACTING RM", "scheduler", TL_CLASSIFY_SEV_ERROR,
	        TL_CLASSIFY_EFFECT_ERROR);
	add_pattern(
	        c, "ok.id", "", "Bad Category", TL_CLASSIFY_SEV_ERROR, TL_CLASSIFY_EFFECT_ERROR);
	add_pattern(
	        c, "", "DataXceiver", "storage", TL_CLASSIFY_SEV_ERROR, TL_CLASSIFY_EFFECT_ERROR);
	add_pattern(c, "ok.id", "DataXceiver", "storage", TL_CLASSIFY_SEV_ERROR,
	        TL_CLASSIFY_EFFECT_ERROR);
	err = build_fails(c, TL_E_CONFIG);
	assert_non_null(strstr(err, "pattern 'Bad ID': id must be 1 to 63 characters"));
	assert_non_null(strstr(err, "pattern 'ok.id': category 'Bad Category' must be"));
	assert_non_null(strstr(err, "pattern 'ok.id': regex is empty"));
	assert_non_null(strstr(err, "pattern '': id must be"));
	assert_non_null(strstr(err, "pattern 'ok.id': duplicate id (also pattern 1)"));
	assert_int_equal(count_lines(err), 5);
	assert_null(strstr(err, ":0:"));
}

static void
test_build_no_default_fields_reported(void **state)
{
	struct tl_classify_conf *c = conf_reset();
	const char *err;

	(void)state;
	c->n_fields = 0;
	add_pattern(c, "hadoop.rm_contact", "ERROR IN CONTACTING RM", "scheduler",
	        TL_CLASSIFY_SEV_ERROR, TL_CLASSIFY_EFFECT_ERROR);
	err = build_fails(c, TL_E_CONFIG);
	assert_non_null(strstr(err, "pattern 'hadoop.rm_contact': no field to scan"));

	conf_reset();
	snprintf(c->fields[0], TL_SCHEMA_NAME_MAX, "rows_affected");
	add_pattern(c, "hadoop.rm_contact", "ERROR IN CONTACTING RM", "scheduler",
	        TL_CLASSIFY_SEV_ERROR, TL_CLASSIFY_EFFECT_ERROR);
	add_pattern(c, "hdfs.serving_block", "DataXceiver", "storage", TL_CLASSIFY_SEV_ERROR,
	        TL_CLASSIFY_EFFECT_ERROR);
	err = build_fails(c, TL_E_CONFIG);
	/* Reported once, against the section, not once per pattern. */
	assert_non_null(strstr(err, "classify.fields: field 'rows_affected' is a uint64 column"));
	assert_int_equal(count_lines(err), 1);

	/* Only checked when some pattern relies on it. */
	conf_reset();
	snprintf(c->fields[0], TL_SCHEMA_NAME_MAX, "rows_affected");
	add_field(add_pattern(c, "hadoop.rm_contact", "ERROR IN CONTACTING RM", "scheduler",
	                  TL_CLASSIFY_SEV_ERROR, TL_CLASSIFY_EFFECT_ERROR),
	        "error");
	tl_classify_db_free(build_ok(c));
}

static void
test_build_hostile_id_printed_escaped(void **state)
{
	struct tl_classify_conf *c = conf_reset();
	const char *err;

	(void)state;
	add_pattern(c, "x'\n\x1b[31m", "DataXceiver", "storage", TL_CLASSIFY_SEV_ERROR,
	        TL_CLASSIFY_EFFECT_ERROR);
	err = build_fails(c, TL_E_CONFIG);
	assert_non_null(strstr(err, "pattern 'x\\x27\\x0a\\x1b[31m': id must be"));
	assert_int_equal(count_lines(err), 1);
}

static void
test_build_too_many_patterns_rejected(void **state)
{
	struct tl_classify_conf *c = conf_reset();

	(void)state;
	c->n_patterns = TL_CLASSIFY_MAX_PATTERNS + 1;
	assert_non_null(strstr(build_fails(c, TL_E_CONFIG), "at most 512"));
}

static void
test_build_small_error_buffer_counts_the_rest(void **state)
{
	struct tl_classify_conf *c = conf_reset();
	struct tl_classify_db *db = NULL;
	char small[200];
	int rc;

	(void)state;
	for (int i = 0; i < 20; i++) {
		char id[32];

		snprintf(id, sizeof(id), "p%d", i);
		add_flag(add_pattern(c, id, "DataXceiver", "storage", TL_CLASSIFY_SEV_ERROR,
		                 TL_CLASSIFY_EFFECT_ERROR),
		        "bogus");
	}
	rc = tl_classify_build(c, g_schema, &db, small, sizeof(small));
	assert_int_equal(rc, TL_E_CONFIG);
	assert_null(db);
	assert_true(strlen(small) < sizeof(small));
	assert_non_null(strstr(small, "pattern 'p0': unknown flag 'bogus'"));
	assert_non_null(strstr(small, " more problems)"));
	/* No buffer at all is fine too. */
	assert_int_equal(tl_classify_build(c, g_schema, &db, NULL, 0), TL_E_CONFIG);
}

static void
test_build_global_compile_error_reported(void **state)
{
	struct tl_classify_conf *c = conf_reset();

	(void)state;
	add_pattern(c, "hadoop.rm_contact", "ERROR IN CONTACTING RM", "scheduler",
	        TL_CLASSIFY_SEV_ERROR, TL_CLASSIFY_EFFECT_ERROR);
	fail_compile_global = true;
	assert_non_null(strstr(build_fails(c, TL_E_CONFIG),
	        "the 1 patterns do not compile together: Pattern set too large"));
}

static void
test_build_null_arguments_einval(void **state)
{
	struct tl_classify_db *db = NULL;

	(void)state;
	conf_reset();
	assert_int_equal(tl_classify_build(NULL, g_schema, &db, g_err, sizeof(g_err)), -EINVAL);
	assert_int_equal(tl_classify_build(&g_conf, NULL, &db, g_err, sizeof(g_err)), -EINVAL);
	assert_int_equal(tl_classify_build(&g_conf, g_schema, NULL, g_err, sizeof(g_err)), -EINVAL);
	assert_int_equal(tl_classify_scratch_alloc(NULL, NULL), -EINVAL);
	tl_classify_db_free(NULL);
	tl_classify_scratch_free(NULL);
}

static void
test_scratch_alloc_failure_enomem(void **state)
{
	struct tl_classify_conf *c = conf_reset();
	struct tl_classify_scratch *s = (struct tl_classify_scratch *)&s;
	struct tl_classify_db *db;

	(void)state;
	add_pattern(c, "hadoop.rm_contact", "ERROR IN CONTACTING RM", "scheduler",
	        TL_CLASSIFY_SEV_ERROR, TL_CLASSIFY_EFFECT_ERROR);
	db = build_ok(c);
	fail_scratch = true;
	assert_int_equal(tl_classify_scratch_alloc(db, &s), -ENOMEM);
	assert_null(s);
	tl_classify_db_free(db);
}

static void
test_names_cover_every_value(void **state)
{
	(void)state;
	assert_string_equal(tl_classify_severity_name(TL_CLASSIFY_SEV_NONE), "none");
	assert_string_equal(tl_classify_severity_name(TL_CLASSIFY_SEV_INFO), "info");
	assert_string_equal(tl_classify_severity_name(TL_CLASSIFY_SEV_WARNING), "warning");
	assert_string_equal(tl_classify_severity_name(TL_CLASSIFY_SEV_ERROR), "error");
	assert_string_equal(tl_classify_severity_name(TL_CLASSIFY_SEV_CRITICAL), "critical");
	assert_string_equal(tl_classify_severity_name(TL_CLASSIFY_SEV_MAX), "?");
	assert_string_equal(tl_classify_effect_name(TL_CLASSIFY_EFFECT_ERROR), "error");
	assert_string_equal(tl_classify_effect_name(TL_CLASSIFY_EFFECT_TAG), "tag");
	assert_string_equal(tl_classify_effect_name(99), "?");
}

/* ---- classification of real log lines ---------------------------------------------- */

static void
test_classify_hadoop_error_lines_counted_per_pattern(void **state)
{
	static struct tl_event ev;
	struct tl_classify_scratch *s = NULL;
	struct tl_classify_result r;
	struct tl_classify_db *db;
	struct lines hadoop, hdfs;
	unsigned got[7] = {0}, want_rm = 0, want_route = 0, want_lease = 0, want_serving = 0;

	(void)state;
	load_ok("classify_basic.yaml");
	db = build_ok(&g_root.classify);
	assert_int_equal(tl_classify_scratch_alloc(db, &s), 0);
	lines_read("Hadoop_2k.log", &hadoop);
	lines_read("HDFS_2k.log", &hdfs);
	for (int f = 0; f < 2; f++) {
		const struct lines *l = f == 0 ? &hadoop : &hdfs;

		for (size_t i = 0; i < l->n; i++) {
			const char *line = l->line[i];

			event_reset(&ev);
			set_str(&ev, COL_ERROR, line);
			tl_classify_event(db, s, &ev, &r);
			assert_false(r.scan_failed);
			for (unsigned k = 0; k < r.n; k++)
				got[r.ids[k]]++;
			/* Independent truth: plain substring search. */
			want_rm += strstr(line, "ERROR IN CONTACTING RM") != NULL;
			want_route += strstr(line, "java.net.NoRouteToHostException") != NULL;
			want_lease += strstr(line, "Failed to renew lease for [") != NULL;
			want_serving += strstr(line, "Got exception while serving blk_") != NULL;
		}
	}
	assert_int_equal(want_rm, 147);
	assert_int_equal(got[0], want_route);
	assert_int_equal(got[1], want_rm);
	assert_int_equal(got[2], want_lease);
	assert_int_equal(got[3], want_serving);
	assert_int_equal(want_serving, 80);
	/* Scans `error` only: query_text and raw are not set. */
	assert_int_equal(got[5], 0);
	assert_int_equal(got[6], 0);
	lines_free(&hadoop);
	lines_free(&hdfs);
	tl_classify_scratch_free(s);
	tl_classify_db_free(db);
}

static void
test_classify_severity_max_and_effect(void **state)
{
	static struct tl_event ev;
	struct tl_classify_result r;
	struct tl_classify_db *db;
	struct lines hadoop, hdfs;

	(void)state;
	load_ok("classify_basic.yaml");
	db = build_ok(&g_root.classify);
	lines_read("Hadoop_2k.log", &hadoop);
	lines_read("HDFS_2k.log", &hdfs);

	/* A FATAL NoRouteToHost line: no_route (critical, error) + any.exception (info, tag). */
	event_reset(&ev);
	set_str(&ev, COL_ERROR, line_with(&hadoop, "FATAL [IPC Server handler"));
	classify(db, &ev, &r);
	assert_int_equal(r.n, 2);
	assert_int_equal(r.ids[0], 0);
	assert_int_equal(r.ids[1], 4);
	assert_int_equal(r.severity, TL_CLASSIFY_SEV_CRITICAL);
	assert_true(r.error);
	assert_int_equal(r.dropped, 0);

	/* An HDFS serving-block warning: tag patterns only (warning + info). */
	event_reset(&ev);
	set_str(&ev, COL_ERROR, line_with(&hdfs, "Got exception while serving"));
	classify(db, &ev, &r);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.ids[0], 3);
	assert_int_equal(r.severity, TL_CLASSIFY_SEV_WARNING);
	assert_false(r.error);

	/* Lease renewal: caseless pattern, tag only. */
	event_reset(&ev);
	set_str(&ev, COL_ERROR, line_with(&hadoop, "Failed to renew lease"));
	classify(db, &ev, &r);
	assert_int_equal(r.n, 1);
	assert_true(has_id(db, &r, "hadoop.lease_renew"));
	assert_int_equal(r.severity, TL_CLASSIFY_SEV_WARNING);
	assert_false(r.error);

	/* A plain INFO line: nothing. */
	event_reset(&ev);
	set_str(&ev, COL_ERROR, hadoop.line[0]);
	classify(db, &ev, &r);
	assert_int_equal(r.n, 0);
	assert_int_equal(r.severity, TL_CLASSIFY_SEV_NONE);
	assert_false(r.error);
	lines_free(&hadoop);
	lines_free(&hdfs);
	tl_classify_db_free(db);
}

static void
test_classify_pattern_only_fires_on_its_fields(void **state)
{
	static struct tl_event ev;
	struct tl_classify_result r;
	struct tl_classify_db *db;
	struct lines hadoop;
	const char *rm, *fatal;
	char raw[4096];

	(void)state;
	load_ok("classify_basic.yaml");
	db = build_ok(&g_root.classify);
	lines_read("Hadoop_2k.log", &hadoop);
	rm = line_with(&hadoop, "ERROR IN CONTACTING RM");
	fatal = line_with(&hadoop, "FATAL [IPC Server handler");

	/* hadoop.rm_contact scans `error`: the same text in query_text does not fire. */
	event_reset(&ev);
	set_str(&ev, COL_QUERY_TEXT, rm);
	classify(db, &ev, &r);
	assert_int_equal(r.n, 0);
	assert_false(r.error);
	event_reset(&ev);
	set_str(&ev, COL_ERROR, rm);
	classify(db, &ev, &r);
	assert_int_equal(r.n, 1);
	assert_true(has_id(db, &r, "hadoop.rm_contact"));

	/* sql.drop_table scans query_text only. */
	event_reset(&ev);
	set_str(&ev, COL_ERROR, "DROP TABLE lineitem");
	classify(db, &ev, &r);
	assert_int_equal(r.n, 0);
	set_str(&ev, COL_QUERY_TEXT, "drop   table lineitem");
	classify(db, &ev, &r);
	assert_int_equal(r.n, 1);
	assert_true(has_id(db, &r, "sql.drop_table"));

	/* any.exception scans error and payload: fires on payload alone. */
	event_reset(&ev);
	set_str(&ev, COL_PAYLOAD, fatal);
	classify(db, &ev, &r);
	assert_int_equal(r.n, 1);
	assert_true(has_id(db, &r, "any.exception"));
	assert_false(r.error);

	/* raw.fatal scans the event line: FATAL in the error value alone does not fire it,
	 * the same line as the raw event does. */
	event_reset(&ev);
	set_str(&ev, COL_ERROR, fatal);
	classify(db, &ev, &r);
	assert_false(has_id(db, &r, "raw.fatal"));
	snprintf(raw, sizeof(raw), "{\"error\":\"%s\"}", fatal);
	ev.raw = (const uint8_t *)raw;
	ev.raw_len = (uint32_t)strlen(raw);
	classify(db, &ev, &r);
	assert_true(has_id(db, &r, "raw.fatal"));
	assert_true(has_id(db, &r, "hadoop.no_route"));
	assert_int_equal(r.severity, TL_CLASSIFY_SEV_CRITICAL);

	/* Values that are not strings, empty or absent are not scanned. */
	event_reset(&ev);
	ev.col[COL_ERROR].kind = TL_VAL_NULL;
	ev.col[COL_ERROR].ptr = (const uint8_t *)rm; /* must be ignored */
	ev.col[COL_ERROR].len = (uint32_t)strlen(rm);
	classify(db, &ev, &r);
	assert_int_equal(r.n, 0);
	event_reset(&ev);
	set_str(&ev, COL_ERROR, "");
	classify(db, &ev, &r);
	assert_int_equal(r.n, 0);
	/* A RAW (non-string JSON) value is scanned as written. */
	event_reset(&ev);
	ev.col[COL_ERROR].kind = TL_VAL_RAW;
	ev.col[COL_ERROR].ptr = (const uint8_t *)rm;
	ev.col[COL_ERROR].len = (uint32_t)strlen(rm);
	classify(db, &ev, &r);
	assert_int_equal(r.n, 1);
	lines_free(&hadoop);
	tl_classify_db_free(db);
}

static void
test_scan_bytes_counts_scanned_fields_only(void **state)
{
	static struct tl_event ev;
	struct tl_classify_db *db, *empty;
	const char *raw = "{\"query_text\":\"drop table t\"}";

	(void)state;
	load_ok("classify_basic.yaml");
	db = build_ok(&g_root.classify);
	/* classify_basic scans error, payload, query_text and raw; not user_id. */
	event_reset(&ev);
	assert_int_equal(tl_classify_scan_bytes(db, &ev), 0);
	set_str(&ev, COL_ERROR, "ERROR IN CONTACTING RM");
	set_str(&ev, COL_PAYLOAD, "DataXceiver");
	set_str(&ev, COL_QUERY_TEXT, "drop table t");
	set_str(&ev, 4 /* user_id */, "msrabi");
	ev.raw = (const uint8_t *)raw;
	ev.raw_len = (uint32_t)strlen(raw);
	assert_int_equal(tl_classify_scan_bytes(db, &ev), 22 + 11 + 12 + strlen(raw));
	ev.col[COL_PAYLOAD].kind = TL_VAL_NULL;
	assert_int_equal(tl_classify_scan_bytes(db, &ev), 22 + 12 + strlen(raw));
	conf_reset();
	empty = build_ok(&g_conf);
	assert_int_equal(tl_classify_scan_bytes(empty, &ev), 0);
	tl_classify_db_free(empty);
	tl_classify_db_free(db);
}

static void
test_classify_match_in_two_fields_reported_once(void **state)
{
	static struct tl_event ev;
	struct tl_classify_result r;
	struct tl_classify_db *db;
	struct lines hdfs;

	(void)state;
	load_ok("classify_basic.yaml");
	db = build_ok(&g_root.classify);
	lines_read("HDFS_2k.log", &hdfs);
	event_reset(&ev);
	set_str(&ev, COL_ERROR, "java.io.IOException: Connection reset by peer");
	set_str(&ev, COL_PAYLOAD, "java.io.EOFException at DataXceiver");
	classify(db, &ev, &r);
	assert_int_equal(r.n, 1);
	assert_true(has_id(db, &r, "any.exception"));
	assert_int_equal(r.dropped, 0);
	lines_free(&hdfs);
	tl_classify_db_free(db);
}

static void
test_classify_more_than_16_matches_keeps_lowest_ids(void **state)
{
	struct tl_classify_conf *c = conf_reset();
	static struct tl_event ev;
	struct tl_classify_result r;
	struct tl_classify_db *db;
	struct lines hdfs;

	(void)state;
	/* 20 patterns that all match one HDFS line; the last (dropped) one is the only
	 * critical one and the only one whose effect is error. */
	for (int i = 0; i < 20; i++) {
		char id[32];

		snprintf(id, sizeof(id), "hdfs.p%02d", i);
		add_pattern(c, id, i % 2 ? "DataXceiver" : "serving blk_", "storage",
		        i == 19 ? TL_CLASSIFY_SEV_CRITICAL : TL_CLASSIFY_SEV_INFO,
		        i == 19 ? TL_CLASSIFY_EFFECT_ERROR : TL_CLASSIFY_EFFECT_TAG);
	}
	db = build_ok(c);
	lines_read("HDFS_2k.log", &hdfs);
	event_reset(&ev);
	set_str(&ev, COL_ERROR, line_with(&hdfs, "Got exception while serving"));
	classify(db, &ev, &r);
	assert_int_equal(r.n, TL_CLASSIFY_MAX_MATCHES);
	assert_int_equal(r.dropped, 4);
	for (int i = 0; i < TL_CLASSIFY_MAX_MATCHES; i++)
		assert_int_equal(r.ids[i], i);
	assert_int_equal(r.severity, TL_CLASSIFY_SEV_CRITICAL);
	assert_true(r.error);
	lines_free(&hdfs);
	tl_classify_db_free(db);
}

/* @p n patterns "blk.pNNN" matching block ids blk_1000 + NNN. */
static void
add_block_patterns(struct tl_classify_conf *c, int n, enum tl_classify_severity sev,
        enum tl_classify_effect eff)
{
	char id[32], re[64];

	for (int i = 0; i < n; i++) {
		snprintf(id, sizeof(id), "blk.p%03d", i);
		snprintf(re, sizeof(re), "blk_%04d\\b", 1000 + i);
		add_pattern(c, id, re, "storage", sev, eff);
	}
}

static void
test_classify_patterns_beyond_64_use_every_bitmap_word(void **state)
{
	struct tl_classify_conf *c = conf_reset();
	static struct tl_event ev;
	struct tl_classify_result r;
	struct tl_classify_db *db;

	(void)state;
	/* 300 distinct patterns; the event matches 3 of them, one in each bitmap word. */
	add_block_patterns(c, 300, TL_CLASSIFY_SEV_INFO, TL_CLASSIFY_EFFECT_TAG);
	db = build_ok(c);
	event_reset(&ev);
	set_str(&ev, COL_ERROR, "Receiving blk_1005 src; deleting blk_1130 and blk_1299 now");
	classify(db, &ev, &r);
	assert_int_equal(r.n, 3);
	assert_int_equal(r.ids[0], 5);
	assert_int_equal(r.ids[1], 130);
	assert_int_equal(r.ids[2], 299);
	assert_false(r.error);
	tl_classify_db_free(db);
}

/*
 * Large profiles compile one hidden expression besides their patterns (it caps Hyperscan's
 * literal stride; see STRIDE_CAP_EXPR in tl_classify.c). Its match must never be reported,
 * not even for an event that holds exactly the bytes it looks for.
 */
static void
test_classify_hidden_stride_cap_never_reported(void **state)
{
	struct tl_classify_conf *c = conf_reset();
	static struct tl_event ev;
	struct tl_classify_result r;
	struct tl_classify_db *db;

	(void)state;
	add_block_patterns(c, 40, TL_CLASSIFY_SEV_WARNING, TL_CLASSIFY_EFFECT_ERROR);
	db = build_ok(c);
	event_reset(&ev);
	set_str(&ev, COL_ERROR, "control \x01\x02\x03 bytes only");
	classify(db, &ev, &r);
	assert_int_equal(r.n, 0);
	assert_false(r.error);

	event_reset(&ev);
	set_str(&ev, COL_ERROR, "\x01\x02\x03 deleting blk_1039 \x01\x02\x03");
	classify(db, &ev, &r);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.ids[0], 39);
	assert_true(r.error);
	assert_int_equal(r.severity, TL_CLASSIFY_SEV_WARNING);
	tl_classify_db_free(db);
}

/* One pattern with @p flags (comma-separated) against @p text. */
static bool
matches(const char *regex, const char *flags, const char *text)
{
	struct tl_classify_conf *c = conf_reset();
	struct tl_classify_pattern_def *p;
	static struct tl_event ev;
	struct tl_classify_result r;
	struct tl_classify_db *db;
	char buf[128], *save = NULL;

	p = add_pattern(
	        c, "t.flag", regex, "test", TL_CLASSIFY_SEV_ERROR, TL_CLASSIFY_EFFECT_ERROR);
	snprintf(buf, sizeof(buf), "%s", flags);
	for (char *f = strtok_r(buf, ",", &save); f != NULL; f = strtok_r(NULL, ",", &save))
		add_flag(p, f);
	db = build_ok(c);
	event_reset(&ev);
	set_str(&ev, COL_ERROR, text);
	classify(db, &ev, &r);
	tl_classify_db_free(db);
	assert_true(r.n <= 1);
	return r.n == 1;
}

static void
test_flags_change_matching(void **state)
{
	struct lines hadoop;
	const char *route, *rm;
	char two[8192];

	(void)state;
	lines_read("Hadoop_2k.log", &hadoop);
	route = line_with(&hadoop, "java.net.NoRouteToHostException");
	rm = line_with(&hadoop, "ERROR IN CONTACTING RM");

	/* caseless */
	assert_false(matches("noroutetohostexception", "", route));
	assert_true(matches("noroutetohostexception", "caseless", route));
	assert_true(matches("NoRouteToHostException", "", route));
	/* singlematch is accepted (always on). */
	assert_true(matches("NoRouteToHostException", "singlematch", route));

	/* Two real lines joined by a newline (as a RAW value could carry them). */
	snprintf(two, sizeof(two), "%s\n%s", rm, route);
	/* dotall: `.` crosses the newline only with it. */
	assert_false(matches("CONTACTING RM.*NoRouteToHost", "", two));
	assert_true(matches("CONTACTING RM.*NoRouteToHost", "dotall", two));
	/* multiline: `^` after the newline only with it. */
	assert_false(matches("^2015-10-18 18:06:26,029 FATAL", "", two));
	assert_true(matches("^2015-10-18 18:06:26,029 FATAL", "multiline", two));
	assert_true(matches("^2015-10-18 18:06:\\d\\d,\\d+ ERROR", "", two));

	/* utf8: `.` is one code point instead of one byte. */
	assert_false(matches("^caf.$", "", "caf\xc3\xa9"));
	assert_true(matches("^caf.$", "utf8", "caf\xc3\xa9"));
	assert_true(matches("^caf..$", "", "caf\xc3\xa9"));
	/* ucp: \w covers non-ASCII letters. */
	assert_false(matches("^caf\\w$", "utf8", "caf\xc3\xa9"));
	assert_true(matches("^caf\\w$", "utf8,ucp", "caf\xc3\xa9"));
	lines_free(&hadoop);
}

static void
test_classify_empty_profile_matches_nothing(void **state)
{
	static struct tl_event ev;
	struct tl_classify_result r;
	struct tl_classify_db *db;

	(void)state;
	conf_reset();
	db = build_ok(&g_conf);
	assert_int_equal(tl_classify_db_count(db), 0);
	assert_int_equal(compile_calls, 0);
	event_reset(&ev);
	set_str(&ev, COL_ERROR, "java.lang.OutOfMemoryError: Java heap space");
	classify(db, &ev, &r);
	assert_int_equal(r.n, 0);
	assert_int_equal(r.severity, 0);
	tl_classify_db_free(db);
}

static void
test_classify_scan_failure_flagged(void **state)
{
	static struct tl_event ev;
	struct tl_classify_result r;
	struct tl_classify_db *db;

	(void)state;
	load_ok("classify_basic.yaml");
	db = build_ok(&g_root.classify);
	event_reset(&ev);
	set_str(&ev, COL_ERROR, "ERROR IN CONTACTING RM");
	fail_scan = true;
	classify(db, &ev, &r);
	assert_true(r.scan_failed);
	assert_int_equal(r.n, 0);
	fail_scan = false;
	classify(db, &ev, &r);
	assert_false(r.scan_failed);
	assert_int_equal(r.n, 1);
	tl_classify_db_free(db);
}

/* ---- cache ------------------------------------------------------------------------- */

static char g_cache[128];

static int
cache_setup(void **state)
{
	test_setup(state);
	snprintf(g_cache, sizeof(g_cache), "%s/tl-classify-test.XXXXXX",
	        getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (mkdtemp(g_cache) == NULL)
		return -1;
	return 0;
}

static int
cache_teardown(void **state)
{
	char cmd[512];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_cache);
	return system(cmd) == 0 ? 0 : -1;
}

static void
cache_path(const struct tl_classify_db *db, char *path, size_t len)
{
	snprintf(path, len, "%s/sub/dir/%s.hsdb", g_cache, tl_classify_db_hash(db));
}

/* classify_basic.yaml with its cache in g_cache/sub/dir (created by the build). */
static const struct tl_classify_conf *
cached_conf(void)
{
	load_ok("classify_basic.yaml");
	snprintf(g_root.classify.cache_dir, TL_CLASSIFY_PATH_MAX, "%s/sub/dir", g_cache);
	return &g_root.classify;
}

static bool
file_exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0;
}

/* The same verdicts on a few real lines from two databases. */
static void
expect_same_results(const struct tl_classify_db *a, const struct tl_classify_db *b)
{
	static struct tl_event ev;
	struct tl_classify_result ra, rb;
	struct lines hadoop;
	unsigned matched = 0;

	lines_read("Hadoop_2k.log", &hadoop);
	for (size_t i = 0; i < hadoop.n; i += 7) {
		event_reset(&ev);
		set_str(&ev, COL_ERROR, hadoop.line[i]);
		classify(a, &ev, &ra);
		classify(b, &ev, &rb);
		assert_memory_equal(&ra, &rb, sizeof(ra));
		matched += ra.n > 0;
	}
	assert_true(matched > 10);
	lines_free(&hadoop);
}

static void
test_cache_second_build_loads_without_compiling(void **state)
{
	const struct tl_classify_conf *c;
	struct tl_classify_db *a, *b;
	char path[512];

	(void)state;
	c = cached_conf();
	a = build_ok(c);
	assert_false(tl_classify_db_from_cache(a));
	assert_int_equal(compile_calls, 1);
	cache_path(a, path, sizeof(path));
	assert_true(file_exists(path));

	b = build_ok(c);
	assert_true(tl_classify_db_from_cache(b));
	assert_int_equal(compile_calls, 1); /* no second compile */
	assert_string_equal(tl_classify_db_hash(a), tl_classify_db_hash(b));
	assert_int_equal(tl_classify_db_count(b), 7);
	expect_same_results(a, b);
	tl_classify_db_free(a);
	tl_classify_db_free(b);
}

/* Damage the cache file with @p damage, then expect a recompile and a good rewrite. */
static void
expect_recompiled_after(void (*damage)(const char *path, const char *other))
{
	const struct tl_classify_conf *c = cached_conf();
	struct tl_classify_db *a, *b, *d, *other;
	char path[512], other_path[512];
	struct tl_classify_conf *oc = conf_reset();

	/* A valid cache file for other patterns, in the same folder. */
	snprintf(oc->cache_dir, TL_CLASSIFY_PATH_MAX, "%s/sub/dir", g_cache);
	add_pattern(oc, "hadoop.rm_contact", "ERROR IN CONTACTING RM", "scheduler",
	        TL_CLASSIFY_SEV_ERROR, TL_CLASSIFY_EFFECT_ERROR);
	other = build_ok(oc);
	cache_path(other, other_path, sizeof(other_path));

	a = build_ok(c);
	cache_path(a, path, sizeof(path));
	assert_true(file_exists(path));
	damage(path, other_path);
	compile_calls = 0;
	b = build_ok(c);
	assert_false(tl_classify_db_from_cache(b));
	assert_int_equal(compile_calls, 1);
	expect_same_results(a, b);
	/* Rewritten: the next build loads it. */
	d = build_ok(c);
	assert_true(tl_classify_db_from_cache(d));
	assert_int_equal(compile_calls, 1);
	tl_classify_db_free(a);
	tl_classify_db_free(b);
	tl_classify_db_free(d);
	tl_classify_db_free(other);
}

static void
flip_payload_byte(const char *path, const char *other)
{
	struct stat st;
	unsigned char b;
	int fd = open(path, O_RDWR);

	(void)other;
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(pread(fd, &b, 1, st.st_size / 2), 1);
	b ^= 0x40;
	assert_int_equal(pwrite(fd, &b, 1, st.st_size / 2), 1);
	close(fd);
}

static void
truncate_file(const char *path, const char *other)
{
	struct stat st;

	(void)other;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(truncate(path, st.st_size - 100), 0);
}

static void
empty_file(const char *path, const char *other)
{
	(void)other;
	assert_int_equal(truncate(path, 0), 0);
}

static void
foreign_file(const char *path, const char *other)
{
	struct stat st;
	FILE *f;

	(void)other;
	assert_int_equal(stat(path, &st), 0);
	f = fopen(path, "wb");
	assert_non_null(f);
	/* The same size, Hadoop log text instead of a database. */
	for (off_t i = 0; i < st.st_size; i++)
		fputc("2015-10-18 18:06:26,029 FATAL [IPC Server handler 13 on 62270]\n"[i % 64],
		        f);
	fclose(f);
}

static void
other_patterns_file(const char *path, const char *other)
{
	assert_int_equal(rename(other, path), 0);
}

/*
 * Replace the payload of a cache file and fix its header so that every check of ours
 * passes and only Hyperscan's can refuse it. White-box: the layout of tl_classify.c's
 * struct cache_hdr is magic[8], version, n_patterns (u32 each), key[16], payload length
 * (u64 at 32), XXH3-64 of the payload (u64 at 40), payload at 48.
 */
static void
replace_payload(const char *path, const void *payload, size_t len)
{
	unsigned char hdr[48];
	uint64_t l = len, sum = XXH3_64bits(payload, len);
	FILE *f = fopen(path, "rb");

	assert_non_null(f);
	assert_int_equal(fread(hdr, 1, sizeof(hdr), f), sizeof(hdr));
	fclose(f);
	memcpy(hdr + 32, &l, 8);
	memcpy(hdr + 40, &sum, 8);
	f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(hdr, 1, sizeof(hdr), f), sizeof(hdr));
	assert_int_equal(fwrite(payload, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

/* Not a Hyperscan database at all, with a valid checksum. */
static void
garbage_payload(const char *path, const char *other)
{
	static const char text[] = "2015-10-18 18:06:26,029 FATAL [IPC Server handler 13 on "
	                           "62270] org.apache.hadoop.mapred.TaskAttemptListenerImpl";

	(void)other;
	replace_payload(path, text, sizeof(text));
}

/* A genuine Hyperscan database, but streaming mode: Hyperscan reads it, we refuse it. */
static void
streaming_payload(const char *path, const char *other)
{
	hs_compile_error_t *cerr = NULL;
	hs_database_t *db = NULL;
	char *bytes = NULL;
	size_t len = 0;

	(void)other;
	assert_int_equal(hs_compile("ERROR IN CONTACTING RM", HS_FLAG_SINGLEMATCH, HS_MODE_STREAM,
	                         NULL, &db, &cerr),
	        HS_SUCCESS);
	assert_int_equal(hs_serialize_database(db, &bytes, &len), HS_SUCCESS);
	replace_payload(path, bytes, len);
	free(bytes);
	hs_free_database(db);
}

/* A block-mode database of the right shape whose bytes Hyperscan's own check refuses:
 * its version field damaged (the checksum is ours, fixed up). */
static void
hs_version_damaged(const char *path, const char *other)
{
	hs_compile_error_t *cerr = NULL;
	hs_database_t *db = NULL;
	char *bytes = NULL;
	size_t len = 0;

	(void)other;
	assert_int_equal(hs_compile("ERROR IN CONTACTING RM", HS_FLAG_SINGLEMATCH, HS_MODE_BLOCK,
	                         NULL, &db, &cerr),
	        HS_SUCCESS);
	assert_int_equal(hs_serialize_database(db, &bytes, &len), HS_SUCCESS);
	/* Serialised layout: magic (u32), then the version (u32). */
	bytes[4] ^= 0x55;
	replace_payload(path, bytes, len);
	free(bytes);
	hs_free_database(db);
}

static void
test_cache_corrupt_file_recompiled(void **state)
{
	(void)state;
	expect_recompiled_after(flip_payload_byte);
}

static void
test_cache_truncated_file_recompiled(void **state)
{
	(void)state;
	expect_recompiled_after(truncate_file);
}

static void
test_cache_empty_file_recompiled(void **state)
{
	(void)state;
	expect_recompiled_after(empty_file);
}

static void
test_cache_foreign_file_recompiled(void **state)
{
	(void)state;
	expect_recompiled_after(foreign_file);
}

static void
test_cache_file_of_other_patterns_recompiled(void **state)
{
	(void)state;
	expect_recompiled_after(other_patterns_file);
}

static void
test_cache_garbage_payload_recompiled(void **state)
{
	(void)state;
	expect_recompiled_after(garbage_payload);
}

static void
test_cache_streaming_database_recompiled(void **state)
{
	(void)state;
	expect_recompiled_after(streaming_payload);
}

static void
test_cache_hyperscan_version_mismatch_recompiled(void **state)
{
	(void)state;
	expect_recompiled_after(hs_version_damaged);
}

static void
test_cache_dir_unusable_still_builds(void **state)
{
	struct tl_classify_conf *c;
	struct tl_classify_db *a, *b;
	char file[200];
	FILE *f;

	(void)state;
	c = (struct tl_classify_conf *)cached_conf();
	/* The cache folder's parent is a regular file: it cannot be created. */
	snprintf(file, sizeof(file), "%s/plainfile", g_cache);
	f = fopen(file, "w");
	assert_non_null(f);
	fclose(f);
	snprintf(c->cache_dir, TL_CLASSIFY_PATH_MAX, "%s/sub", file);
	a = build_ok(c);
	assert_false(tl_classify_db_from_cache(a));
	b = build_ok(c);
	assert_false(tl_classify_db_from_cache(b));
	assert_int_equal(compile_calls, 2);
	/* A cache file name that is a folder is ignored as well. */
	snprintf(c->cache_dir, TL_CLASSIFY_PATH_MAX, "%s/d", g_cache);
	snprintf(file, sizeof(file), "%s/d/%s.hsdb", g_cache, tl_classify_db_hash(a));
	assert_int_equal(mkdir(c->cache_dir, 0755), 0);
	assert_int_equal(mkdir(file, 0755), 0);
	tl_classify_db_free(b);
	b = build_ok(c);
	assert_false(tl_classify_db_from_cache(b));
	assert_int_equal(compile_calls, 3);
	tl_classify_db_free(a);
	tl_classify_db_free(b);
}

/* ---- concurrency ------------------------------------------------------------------- */

#define CONC_EVENTS 64
#define CONC_ROUNDS 300

struct conc {
	const struct tl_classify_db *db;
	struct tl_classify_scratch *s;
	const struct tl_event *ev;             /* [CONC_EVENTS] */
	const struct tl_classify_result *want; /* [CONC_EVENTS] */
	pthread_barrier_t *start;
	unsigned mismatches;
	unsigned matched;
};

static void *
conc_worker(void *arg)
{
	struct conc *c = arg;
	struct tl_classify_result r;

	pthread_barrier_wait(c->start);
	for (int round = 0; round < CONC_ROUNDS; round++) {
		for (int i = 0; i < CONC_EVENTS; i++) {
			tl_classify_event(c->db, c->s, &c->ev[i], &r);
			if (memcmp(&r, &c->want[i], sizeof(r)) != 0)
				c->mismatches++;
			c->matched += r.n;
		}
	}
	return NULL;
}

static void
test_classify_two_threads_two_scratches_concurrently(void **state)
{
	static struct tl_event ev[CONC_EVENTS];
	static struct tl_classify_result want[CONC_EVENTS];
	struct tl_classify_scratch *s1 = NULL, *s2 = NULL;
	pthread_barrier_t start;
	pthread_t t1, t2;
	struct tl_classify_db *db;
	struct lines hadoop, hdfs;
	struct conc c1, c2;
	unsigned want_matched = 0;

	(void)state;
	load_ok("classify_basic.yaml");
	db = build_ok(&g_root.classify);
	lines_read("Hadoop_2k.log", &hadoop);
	lines_read("HDFS_2k.log", &hdfs);
	/* Every 30th line of each log, the error lines among them included. */
	for (int i = 0; i < CONC_EVENTS; i++) {
		const struct lines *l = i % 2 ? &hdfs : &hadoop;
		const char *line = l->line[((size_t)i * 61 + 900) % l->n];

		event_reset(&ev[i]);
		set_str(&ev[i], COL_ERROR, line);
		set_str(&ev[i], COL_PAYLOAD, l->line[(size_t)i * 31 % l->n]);
		classify(db, &ev[i], &want[i]);
		want_matched += want[i].n;
	}
	assert_true(want_matched > 0);
	assert_int_equal(tl_classify_scratch_alloc(db, &s1), 0);
	assert_int_equal(tl_classify_scratch_alloc(db, &s2), 0);
	assert_int_equal(pthread_barrier_init(&start, NULL, 2), 0);
	c1 = (struct conc){.db = db, .s = s1, .ev = ev, .want = want, .start = &start};
	c2 = (struct conc){.db = db, .s = s2, .ev = ev, .want = want, .start = &start};
	assert_int_equal(pthread_create(&t1, NULL, conc_worker, &c1), 0);
	assert_int_equal(pthread_create(&t2, NULL, conc_worker, &c2), 0);
	pthread_join(t1, NULL);
	pthread_join(t2, NULL);
	pthread_barrier_destroy(&start);
	assert_int_equal(c1.mismatches, 0);
	assert_int_equal(c2.mismatches, 0);
	assert_int_equal(c1.matched, want_matched * CONC_ROUNDS);
	assert_int_equal(c2.matched, want_matched * CONC_ROUNDS);
	tl_classify_scratch_free(s1);
	tl_classify_scratch_free(s2);
	lines_free(&hadoop);
	lines_free(&hdfs);
	tl_classify_db_free(db);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup(test_build_profile_accessors_match_yaml, test_setup),
	        cmocka_unit_test_setup(
	                test_build_same_patterns_same_hash_changed_regex_new_hash, test_setup),
	        cmocka_unit_test_setup(
	                test_build_child_profile_replaces_patterns_located_in_child, test_setup),
	        cmocka_unit_test_setup(test_build_bad_regex_reports_every_id_and_line, test_setup),
	        cmocka_unit_test_setup(test_build_bad_flags_reported, test_setup),
	        cmocka_unit_test_setup(test_build_bad_fields_reported, test_setup),
	        cmocka_unit_test_setup(test_build_duplicate_id_reports_both_lines, test_setup),
	        cmocka_unit_test_setup(test_load_unknown_key_in_pattern_located, test_setup),
	        cmocka_unit_test_setup(
	                test_build_in_code_bad_names_reported_without_location, test_setup),
	        cmocka_unit_test_setup(test_build_no_default_fields_reported, test_setup),
	        cmocka_unit_test_setup(test_build_hostile_id_printed_escaped, test_setup),
	        cmocka_unit_test_setup(test_build_too_many_patterns_rejected, test_setup),
	        cmocka_unit_test_setup(test_build_small_error_buffer_counts_the_rest, test_setup),
	        cmocka_unit_test_setup(test_build_global_compile_error_reported, test_setup),
	        cmocka_unit_test_setup(test_build_null_arguments_einval, test_setup),
	        cmocka_unit_test_setup(test_scratch_alloc_failure_enomem, test_setup),
	        cmocka_unit_test_setup(test_names_cover_every_value, test_setup),
	        cmocka_unit_test_setup(
	                test_classify_hadoop_error_lines_counted_per_pattern, test_setup),
	        cmocka_unit_test_setup(test_classify_severity_max_and_effect, test_setup),
	        cmocka_unit_test_setup(test_classify_pattern_only_fires_on_its_fields, test_setup),
	        cmocka_unit_test_setup(test_scan_bytes_counts_scanned_fields_only, test_setup),
	        cmocka_unit_test_setup(test_classify_match_in_two_fields_reported_once, test_setup),
	        cmocka_unit_test_setup(
	                test_classify_more_than_16_matches_keeps_lowest_ids, test_setup),
	        cmocka_unit_test_setup(
	                test_classify_patterns_beyond_64_use_every_bitmap_word, test_setup),
	        cmocka_unit_test_setup(test_classify_hidden_stride_cap_never_reported, test_setup),
	        cmocka_unit_test_setup(test_flags_change_matching, test_setup),
	        cmocka_unit_test_setup(test_classify_empty_profile_matches_nothing, test_setup),
	        cmocka_unit_test_setup(test_classify_scan_failure_flagged, test_setup),
	        cmocka_unit_test_setup_teardown(test_cache_second_build_loads_without_compiling,
	                cache_setup, cache_teardown),
	        cmocka_unit_test_setup_teardown(
	                test_cache_corrupt_file_recompiled, cache_setup, cache_teardown),
	        cmocka_unit_test_setup_teardown(
	                test_cache_truncated_file_recompiled, cache_setup, cache_teardown),
	        cmocka_unit_test_setup_teardown(
	                test_cache_empty_file_recompiled, cache_setup, cache_teardown),
	        cmocka_unit_test_setup_teardown(
	                test_cache_foreign_file_recompiled, cache_setup, cache_teardown),
	        cmocka_unit_test_setup_teardown(
	                test_cache_file_of_other_patterns_recompiled, cache_setup, cache_teardown),
	        cmocka_unit_test_setup_teardown(
	                test_cache_garbage_payload_recompiled, cache_setup, cache_teardown),
	        cmocka_unit_test_setup_teardown(
	                test_cache_streaming_database_recompiled, cache_setup, cache_teardown),
	        cmocka_unit_test_setup_teardown(test_cache_hyperscan_version_mismatch_recompiled,
	                cache_setup, cache_teardown),
	        cmocka_unit_test_setup_teardown(
	                test_cache_dir_unusable_still_builds, cache_setup, cache_teardown),
	        cmocka_unit_test_setup(
	                test_classify_two_threads_two_scratches_concurrently, test_setup),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
