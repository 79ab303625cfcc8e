/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * tl_corpus: determinism, sizes, query life cycles, error share, every malformed kind
 * with its reason, and every valid event checked against its truth line with jansson
 * (an independent JSON parser) and against the pipeline's own extractor.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "tl_corpus.h"
#include "tl_error.h"
#include "tl_json.h"
#include "tl_reason.h"
#include "tl_schema.h"
#include "tl_test_schema.h"

static struct tl_corpus *corpus;

static const char *
data_dir(void)
{
	const char *d = getenv("TAPLINE_DATA");

	return d && d[0] ? d : "../shared/data";
}

static int
group_setup(void **state)
{
	char msg[512] = "";
	int rc = tl_corpus_load(data_dir(), &corpus, msg, sizeof(msg));

	(void)state;
	if (rc != 0)
		fprintf(stderr, "corpus: %s (set TAPLINE_DATA)\n", msg);
	return rc;
}

static int
group_teardown(void **state)
{
	(void)state;
	tl_corpus_free(corpus);
	return 0;
}

static struct tl_corpus_gen *
make_gen(const struct tl_corpus_conf *cf)
{
	struct tl_corpus_gen *g = NULL;

	assert_int_equal(tl_corpus_gen_create(corpus, cf, &g), 0);
	assert_non_null(g);
	return g;
}

static void
small_limits(struct tl_corpus_conf *cf)
{
	/* The integration site's limits: every fault kind is possible. */
	cf->max_event_size = 16 * 1024;
	cf->max_string = 12 * 1024;
}

/* ---- helpers: the e6data schema, as the vendor profile declares it ---- */

static struct tl_schema *
e6data_schema(const struct tl_corpus_conf *cf)
{
	struct tl_schema_def *d = calloc(1, sizeof(*d));
	struct tl_limits lim = {.max_event_size = cf->max_event_size,
	        .max_depth = cf->max_depth,
	        .max_string = cf->max_string,
	        .max_extra = 32};
	struct tl_schema *s = NULL;
	char msg[256];

	assert_non_null(d);
	tl_test_e6data_def(d);
	assert_int_equal(tl_schema_compile(d, &lim, &s, msg, sizeof(msg)), 0);
	free(d);
	return s;
}

/* Event time from an ISO-8601 timestamp with milliseconds and a zone. */
static int64_t
iso_ns(const char *s)
{
	struct tm tm = {0};
	int y, mo, d, h, mi, se, ms, zh = 0, zm = 0, n = 0;
	char z;
	int64_t t;

	assert_int_equal(
	        sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d.%3d%n", &y, &mo, &d, &h, &mi, &se, &ms, &n), 7);
	z = s[n];
	if (z != 'Z')
		assert_int_equal(sscanf(s + n + 1, "%2d:%2d", &zh, &zm), 2);
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = se;
	t = (int64_t)timegm(&tm);
	if (z == '+')
		t -= zh * 3600 + zm * 60;
	else if (z == '-')
		t += zh * 3600 + zm * 60;
	return t * 1000000000ll + (int64_t)ms * 1000000ll;
}

/* ---- loading ---- */

static void
test_corpus_load_missing_dir_fails(void **state)
{
	struct tl_corpus *c = (void *)1;
	char msg[256] = "";

	(void)state;
	assert_int_equal(
	        tl_corpus_load("/nonexistent/tapline-data", &c, msg, sizeof(msg)), TL_E_DATA);
	assert_null(c);
	assert_non_null(strstr(msg, "/nonexistent/tapline-data/"));
	assert_int_equal(tl_corpus_load(NULL, &c, NULL, 0), -EINVAL);
	assert_int_equal(tl_corpus_load(data_dir(), NULL, NULL, 0), -EINVAL);
	tl_corpus_free(NULL);
}

static void
test_corpus_load_dir_without_logs_fails(void **state)
{
	char dir[] = "/tmp/tl-corpus-XXXXXX", path[256], msg[256] = "";
	struct tl_corpus *c = NULL;
	FILE *f;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/tpch", dir);
	assert_int_equal(mkdir(path, 0700), 0);
	for (int i = 1; i <= 22; i++) {
		snprintf(path, sizeof(path), "%s/tpch/q%02d.sql", dir, i);
		f = fopen(path, "w");
		assert_non_null(f);
		fputs("SELECT 1;\n", f);
		fclose(f);
	}
	/* Queries present, logs missing: a clear error naming the file. */
	assert_int_equal(tl_corpus_load(dir, &c, msg, sizeof(msg)), TL_E_DATA);
	assert_null(c);
	assert_non_null(strstr(msg, "Hadoop_2k.log"));
	for (int i = 1; i <= 22; i++) {
		snprintf(path, sizeof(path), "%s/tpch/q%02d.sql", dir, i);
		unlink(path);
	}
	snprintf(path, sizeof(path), "%s/tpch", dir);
	rmdir(path);
	rmdir(dir);
}

/* ---- configuration ---- */

static void
test_corpus_gen_create_bad_conf_einval(void **state)
{
	struct tl_corpus_conf cf, bad;
	struct tl_corpus_gen *g = (void *)1;

	(void)state;
	tl_corpus_conf_defaults(&cf);
	assert_int_equal(tl_corpus_gen_create(NULL, &cf, &g), -EINVAL);
	assert_null(g);
	assert_int_equal(tl_corpus_gen_create(corpus, NULL, &g), -EINVAL);
	assert_int_equal(tl_corpus_gen_create(corpus, &cf, NULL), -EINVAL);

#define EXPECT_BAD(field, value)                                                                   \
	do {                                                                                       \
		bad = cf;                                                                          \
		bad.field = value;                                                                 \
		assert_int_equal(tl_corpus_gen_create(corpus, &bad, &g), -EINVAL);                 \
		assert_null(g);                                                                    \
	} while (0)
	EXPECT_BAD(error_share, 1.5);
	EXPECT_BAD(error_share, -0.1);
	EXPECT_BAD(malformed_share, 2.0);
	EXPECT_BAD(min_size, 6000);
	EXPECT_BAD(max_size, 512);
	EXPECT_BAD(max_string, 1000);
	EXPECT_BAD(max_depth, 4);
	EXPECT_BAD(max_depth, 5000);
	EXPECT_BAD(max_event_size, 4096);
	EXPECT_BAD(max_event_size, 2u << 20);
#undef EXPECT_BAD
	/* Only an impossible fault kind allowed, and faults wanted. */
	bad = cf;
	bad.id_max_len = 0;
	bad.fault_mask = 1u << TL_FAULT_STRING_LONG;
	assert_int_equal(tl_corpus_gen_create(corpus, &bad, &g), -EINVAL);
	bad.malformed_share = 0;
	assert_int_equal(tl_corpus_gen_create(corpus, &bad, &g), 0);
	tl_corpus_gen_free(g);
	tl_corpus_gen_free(NULL);
}

static void
test_corpus_gen_faults_infeasible_excluded(void **state)
{
	struct tl_corpus_conf cf;
	struct tl_corpus_gen *g;

	(void)state;
	tl_corpus_conf_defaults(&cf);
	/* 60 KiB strings in 60 KiB events: only the query_id route is left. */
	g = make_gen(&cf);
	assert_true(tl_corpus_gen_faults(g) & (1u << TL_FAULT_STRING_LONG));
	assert_true(tl_corpus_gen_faults(g) & (1u << TL_FAULT_TOO_LARGE));
	tl_corpus_gen_free(g);
	cf.id_max_len = 0;
	g = make_gen(&cf);
	assert_false(tl_corpus_gen_faults(g) & (1u << TL_FAULT_STRING_LONG));
	tl_corpus_gen_free(g);
	/* No room above max_event_size inside one UDP datagram. */
	cf.max_event_size = 65500;
	g = make_gen(&cf);
	assert_false(tl_corpus_gen_faults(g) & (1u << TL_FAULT_TOO_LARGE));
	assert_false(tl_corpus_gen_faults(g) & (1u << TL_FAULT_NONE));
	assert_true(tl_corpus_gen_faults(g) & (1u << TL_FAULT_DEPTH));
	tl_corpus_gen_free(g);
	assert_int_equal(tl_corpus_gen_faults(NULL), 0);
}

/* ---- determinism ---- */

static void
test_corpus_same_seed_same_bytes(void **state)
{
	struct tl_corpus_conf cf;
	struct tl_corpus_gen *a, *b, *c;
	struct tl_corpus_event ea, eb, ec;
	unsigned differ = 0;

	(void)state;
	tl_corpus_conf_defaults(&cf);
	small_limits(&cf);
	cf.truth = true;
	cf.malformed_share = 0.2;
	cf.seed = 1234;
	a = make_gen(&cf);
	b = make_gen(&cf);
	cf.seed = 1235;
	c = make_gen(&cf);
	for (int i = 0; i < 3000; i++) {
		assert_int_equal(tl_corpus_next(a, &ea), 0);
		assert_int_equal(tl_corpus_next(b, &eb), 0);
		assert_int_equal(tl_corpus_next(c, &ec), 0);
		assert_int_equal(ea.len, eb.len);
		assert_memory_equal(ea.data, eb.data, ea.len);
		assert_int_equal(ea.truth_len, eb.truth_len);
		assert_memory_equal(ea.truth, eb.truth, ea.truth_len);
		assert_int_equal(ea.reason, eb.reason);
		assert_int_equal(ea.seq, (uint64_t)i);
		differ += ea.len != ec.len || memcmp(ea.data, ec.data, ea.len) != 0;
	}
	assert_true(differ > 2900);
	tl_corpus_gen_free(a);
	tl_corpus_gen_free(b);
	tl_corpus_gen_free(c);
}

/* ---- shape of the workload ---- */

static void
test_corpus_valid_sizes_within_1_to_5_kb(void **state)
{
	struct tl_corpus_conf cf;
	struct tl_corpus_gen *g;
	struct tl_corpus_event ev;
	unsigned bucket[4] = {0};
	uint64_t total = 0;
	const int n = 20000;

	(void)state;
	tl_corpus_conf_defaults(&cf);
	cf.malformed_share = 0;
	g = make_gen(&cf);
	for (int i = 0; i < n; i++) {
		assert_int_equal(tl_corpus_next(g, &ev), 0);
		assert_int_equal(ev.reason, TL_REASON_OK);
		assert_in_range(ev.len, 1024, 5120);
		assert_null(memchr(ev.data, '\n', ev.len));
		bucket[(ev.len - 1024) * 4 / 4097]++;
		total += ev.len;
	}
	/* Uniform-ish: every quarter of the range holds a fair share. */
	for (int i = 0; i < 4; i++)
		assert_in_range(bucket[i], n / 8, n / 2);
	assert_in_range(total / n, 2600, 3500);
	tl_corpus_gen_free(g);
}

static void
test_corpus_queries_have_about_five_events(void **state)
{
	struct tl_corpus_conf cf;
	struct tl_corpus_gen *g;
	struct tl_corpus_event ev;
	enum { NQ = 600 };
	unsigned n_ev[NQ] = {0};
	int64_t last_ns[NQ] = {0};
	char last_type[NQ][16];
	unsigned total = 0, interleaved = 0;
	uint64_t prev_q = UINT64_MAX;

	(void)state;
	tl_corpus_conf_defaults(&cf);
	cf.malformed_share = 0;
	cf.max_queries = NQ;
	cf.truth = true;
	g = make_gen(&cf);
	while (tl_corpus_next(g, &ev) == 0) {
		json_error_t err;
		json_t *t = json_loadb(ev.truth, ev.truth_len, 0, &err), *cols;
		const char *type;
		int64_t ns;

		assert_non_null(t);
		cols = json_object_get(t, "cols");
		type = json_string_value(json_object_get(cols, "event_type"));
		ns = json_integer_value(json_object_get(cols, "event_time"));
		assert_non_null(type);
		assert_true(ev.query < NQ);
		if (n_ev[ev.query] == 0) {
			assert_string_equal(type, "queued");
		} else {
			/* Strictly later than the previous event of the same query. */
			assert_true(ns > last_ns[ev.query]);
			assert_string_not_equal(last_type[ev.query], "finished");
			assert_string_not_equal(last_type[ev.query], "failed");
			assert_string_not_equal(last_type[ev.query], "cancelled");
		}
		if (n_ev[ev.query] == 1)
			assert_string_equal(type, "planning");
		n_ev[ev.query]++;
		last_ns[ev.query] = ns;
		snprintf(last_type[ev.query], sizeof(last_type[0]), "%s", type);
		interleaved += prev_q != UINT64_MAX && prev_q != ev.query;
		prev_q = ev.query;
		total++;
		json_decref(t);
	}
	assert_int_equal(tl_corpus_next(g, &ev), -ENODATA);
	for (int q = 0; q < NQ; q++) {
		assert_in_range(n_ev[q], 4, 6);
		assert_true(strcmp(last_type[q], "finished") == 0 ||
		            strcmp(last_type[q], "failed") == 0 ||
		            strcmp(last_type[q], "cancelled") == 0);
	}
	assert_in_range(total * 100 / NQ, 470, 530);
	/* Several queries in flight: their events interleave. */
	assert_true(interleaved > total / 2);
	tl_corpus_gen_free(g);
}

static void
test_corpus_error_share_within_tolerance(void **state)
{
	static const double shares[] = {0.0, 0.1, 0.5, 1.0};
	struct tl_corpus_conf cf;
	struct tl_corpus_event ev;

	(void)state;
	for (size_t k = 0; k < sizeof(shares) / sizeof(shares[0]); k++) {
		struct tl_corpus_gen *g;
		unsigned errors = 0;
		const unsigned nq = 3000;

		tl_corpus_conf_defaults(&cf);
		cf.malformed_share = 0;
		cf.error_share = shares[k];
		cf.max_queries = nq;
		g = make_gen(&cf);
		while (tl_corpus_next(g, &ev) == 0)
			errors += ev.is_error;
		/* One failed event per failing query. */
		if (shares[k] == 0.0)
			assert_int_equal(errors, 0);
		else if (shares[k] == 1.0)
			assert_int_equal(errors, nq);
		else
			assert_in_range(errors, (unsigned)(nq * shares[k] * 0.8),
			        (unsigned)(nq * shares[k] * 1.2));
		tl_corpus_gen_free(g);
	}
}

/* ---- malformed events ---- */

/* Longest string in a raw event, bytes as written (escapes count as written). */
static size_t
max_raw_string(const uint8_t *p, size_t n)
{
	size_t best = 0;

	for (size_t i = 0; i < n; i++) {
		size_t j;

		if (p[i] != '"')
			continue;
		for (j = i + 1; j < n && p[j] != '"'; j += p[j] == '\\' ? 2 : 1)
			;
		if (j - i - 1 > best)
			best = j - i - 1;
		i = j;
	}
	return best;
}

static int
depth_of(json_t *v)
{
	int d = 0, c;
	size_t i;
	const char *k;
	json_t *x;

	if (json_is_array(v)) {
		json_array_foreach(v, i, x) if ((c = depth_of(x)) > d) d = c;
		return d + 1;
	}
	if (json_is_object(v)) {
		json_object_foreach(v, k, x) if ((c = depth_of(x)) > d) d = c;
		return d + 1;
	}
	return 0;
}

/* What jansson (a second opinion) says about each kind of fault. */
static void
check_fault_with_jansson(const struct tl_corpus_conf *cf, const struct tl_corpus_event *ev)
{
	json_error_t err;
	json_t *j = json_loadb((const char *)ev->data, ev->len, JSON_REJECT_DUPLICATES, &err);
	json_t *loose = json_loadb((const char *)ev->data, ev->len, 0, &err);
	json_t *meta = j ? json_object_get(j, "metadata") : NULL;
	const char *ts;

	switch (ev->fault) {
	case TL_FAULT_SYNTAX_CUT:
	case TL_FAULT_SYNTAX_COMMA:
	case TL_FAULT_SYNTAX_TRAILING:
	case TL_FAULT_UTF8_BYTE:
	case TL_FAULT_UTF8_OVERLONG:
	case TL_FAULT_UTF8_SURROGATE:
		assert_null(loose);
		break;
	case TL_FAULT_NUMBER_RANGE:
		/* jansson refuses integers past its range. */
		assert_null(loose);
		assert_true(memmem(ev->data, ev->len, "184467440737095516160", 21) ||
		            memmem(ev->data, ev->len, "99999999999999999999", 20));
		break;
	case TL_FAULT_DUP_KEY:
		assert_null(j);
		assert_non_null(loose);
		break;
	case TL_FAULT_NOT_OBJECT:
		assert_true(json_is_array(j));
		assert_true(json_is_object(json_array_get(j, 0)));
		break;
	case TL_FAULT_DEPTH:
		assert_non_null(j);
		assert_true(depth_of(j) > (int)cf->max_depth);
		assert_in_range(ev->len, 1, cf->max_event_size);
		break;
	case TL_FAULT_STRING_LONG:
		assert_non_null(j);
		assert_in_range(ev->len, 1, cf->max_event_size);
		assert_true(max_raw_string(ev->data, ev->len) > cf->max_string ||
		            json_string_length(json_object_get(j, "query_id")) > cf->id_max_len);
		break;
	case TL_FAULT_TOO_LARGE:
		assert_non_null(j);
		assert_true(ev->len > cf->max_event_size);
		assert_true(ev->len <= 65507);
		break;
	case TL_FAULT_TYPE_STRING:
		assert_true(json_is_string(json_object_get(meta, "duration_ms")));
		break;
	case TL_FAULT_TYPE_FLOAT:
		assert_true(json_is_real(json_object_get(meta, "duration_ms")));
		break;
	case TL_FAULT_TS_FEB29:
		ts = json_string_value(json_object_get(j, "timestamp"));
		assert_non_null(ts);
		assert_memory_equal(ts, "2023-02-29T", 11);
		break;
	case TL_FAULT_TS_NOZONE:
		ts = json_string_value(json_object_get(j, "timestamp"));
		assert_non_null(ts);
		assert_int_equal(strlen(ts), 23); /* YYYY-MM-DDThh:mm:ss.mmm */
		break;
	case TL_FAULT_MISSING_ID:
		assert_non_null(j);
		assert_null(json_object_get(j, "query_id"));
		break;
	case TL_FAULT_NULL_TYPE:
		assert_true(json_is_null(json_object_get(j, "event_type")));
		break;
	default:
		fail_msg("unexpected fault %d", ev->fault);
	}
	json_decref(j);
	json_decref(loose);
}

static void
test_corpus_every_fault_present_with_reason(void **state)
{
	struct tl_corpus_conf cf;
	struct tl_corpus_gen *g;
	struct tl_corpus_event ev;
	struct tl_schema *s;
	struct tl_event *pev = malloc(sizeof(*pev));
	unsigned seen[TL_FAULT_MAX] = {0}, mismatches = 0;

	(void)state;
	assert_non_null(pev);
	tl_corpus_conf_defaults(&cf);
	small_limits(&cf);
	cf.malformed_share = 1.0;
	cf.truth = true;
	cf.seed = 99;
	g = make_gen(&cf);
	s = e6data_schema(&cf);
	assert_int_equal(tl_corpus_gen_faults(g), ((1u << TL_FAULT_MAX) - 1) & ~1u);
	for (int i = 0; i < 4000; i++) {
		char want[128];
		enum tl_reason got;

		assert_int_equal(tl_corpus_next(g, &ev), 0);
		assert_int_not_equal(ev.fault, TL_FAULT_NONE);
		assert_int_equal(ev.reason, tl_corpus_fault_reason(ev.fault));
		assert_false(ev.is_error);
		assert_null(memchr(ev.data, '\n', ev.len));
		snprintf(want, sizeof(want), "{\"seq\":%d,\"valid\":false,\"reason\":\"%s\"}", i,
		        tl_reason_name(ev.reason));
		assert_int_equal(ev.truth_len, strlen(want));
		assert_memory_equal(ev.truth, want, ev.truth_len);
		check_fault_with_jansson(&cf, &ev);
		/* The pipeline's extractor must give the same verdict. */
		got = tl_json_extract(s, ev.data, ev.len, pev);
		if (got != ev.reason && mismatches++ < 5)
			fprintf(stderr, "fault %s: extractor says %s, expected %s: %.200s\n",
			        tl_corpus_fault_name(ev.fault), tl_reason_name(got),
			        tl_reason_name(ev.reason), (const char *)ev.data);
		seen[ev.fault]++;
	}
	assert_int_equal(mismatches, 0);
	for (int f = 1; f < TL_FAULT_MAX; f++) {
		if (seen[f] < 50)
			fprintf(stderr, "fault %s seen %u times\n",
			        tl_corpus_fault_name((enum tl_corpus_fault)f), seen[f]);
		assert_true(seen[f] >= 50);
	}
	tl_schema_free(s);
	free(pev);
	tl_corpus_gen_free(g);
}

static void
test_corpus_fault_names_and_reasons_stable(void **state)
{
	(void)state;
	assert_int_equal(tl_corpus_fault_reason(TL_FAULT_NONE), TL_REASON_OK);
	assert_int_equal(tl_corpus_fault_reason(TL_FAULT_SYNTAX_CUT), TL_REASON_EV_JSON_SYNTAX);
	assert_int_equal(tl_corpus_fault_reason(TL_FAULT_UTF8_SURROGATE), TL_REASON_EV_JSON_UTF8);
	assert_int_equal(tl_corpus_fault_reason(TL_FAULT_TOO_LARGE), TL_REASON_EV_TOO_LARGE);
	assert_int_equal(tl_corpus_fault_reason(TL_FAULT_NULL_TYPE), TL_REASON_EV_MISSING_FIELD);
	assert_int_equal(tl_corpus_fault_reason(TL_FAULT_MAX), TL_REASON_OK);
	assert_string_equal(tl_corpus_fault_name(TL_FAULT_DEPTH), "depth");
	assert_string_equal(tl_corpus_fault_name(TL_FAULT_MAX), "invalid");
	for (int f = 1; f < TL_FAULT_MAX; f++)
		assert_true(tl_reason_is_event(tl_corpus_fault_reason((enum tl_corpus_fault)f)));
}

static void
test_corpus_fault_mask_restricts_kinds(void **state)
{
	struct tl_corpus_conf cf;
	struct tl_corpus_gen *g;
	struct tl_corpus_event ev;
	unsigned depth = 0;

	(void)state;
	tl_corpus_conf_defaults(&cf);
	cf.malformed_share = 0.5;
	cf.fault_mask = 1u << TL_FAULT_DEPTH;
	g = make_gen(&cf);
	assert_int_equal(tl_corpus_gen_faults(g), 1u << TL_FAULT_DEPTH);
	for (int i = 0; i < 1000; i++) {
		assert_int_equal(tl_corpus_next(g, &ev), 0);
		assert_true(ev.fault == TL_FAULT_NONE || ev.fault == TL_FAULT_DEPTH);
		depth += ev.fault == TL_FAULT_DEPTH;
	}
	assert_in_range(depth, 400, 600);
	tl_corpus_gen_free(g);
}

static void
test_corpus_truth_lost_format(void **state)
{
	char buf[128], tiny[8];

	(void)state;
	assert_int_equal(tl_corpus_truth_lost(7, TL_REASON_FRAG_OVERLAP, buf, sizeof(buf)),
	        strlen("{\"seq\":7,\"valid\":false,\"reason\":\"frag_overlap\"}"));
	assert_string_equal(buf, "{\"seq\":7,\"valid\":false,\"reason\":\"frag_overlap\"}");
	/* Too small: truncated, but the needed length is returned. */
	assert_int_equal(
	        tl_corpus_truth_lost(7, TL_REASON_FRAG_OVERLAP, tiny, sizeof(tiny)), strlen(buf));
	assert_int_equal(tiny[7], '\0');
}

/* ---- valid events against their truth ---- */

struct coverage {
	unsigned non_ascii_user, escaped_user, zone[4], engine, cluster, trace, payload_obj,
	        payload_str, err_null, err_absent, err_empty, err_obj, err_spark, err_loghub,
	        query_tabs, spaced;
};

static const char *const col_paths[][2] = {
        {"query_id", "query_id"},
        {"event_type", "event_type"},
        {"event_time", "timestamp"},
        {"query_text", "query_text"},
        {"user_id", "metadata.user_id"},
        {"database_name", "metadata.database"},
        {"duration_ms", "metadata.duration_ms"},
        {"rows_affected", "metadata.rows_affected"},
        {"error", "metadata.error"},
        {"payload", "payload"},
};

static json_t *
get_path(json_t *o, const char *path)
{
	const char *dot = strchr(path, '.');

	if (dot == NULL)
		return json_object_get(o, path);
	return json_object_get(json_object_get(o, "metadata"), dot + 1);
}

static void
check_valid_event(const struct tl_corpus_event *ev, struct coverage *cov)
{
	json_error_t err;
	json_t *j = json_loadb((const char *)ev->data, ev->len, JSON_REJECT_DUPLICATES, &err);
	json_t *t = json_loadb(ev->truth, ev->truth_len, 0, &err);
	json_t *cols, *extra, *want_extra = json_object(), *v;
	const char *k;
	int is_error;

	if (j == NULL)
		fail_msg("event %llu is not JSON: %s: %.300s", (unsigned long long)ev->seq,
		        err.text, (const char *)ev->data);
	assert_non_null(t);
	assert_true(json_is_object(j));
	assert_true(json_is_true(json_object_get(t, "valid")));
	assert_string_equal(json_string_value(json_object_get(t, "reason")), "ok");
	assert_int_equal(json_integer_value(json_object_get(t, "seq")), (json_int_t)ev->seq);
	cols = json_object_get(t, "cols");
	extra = json_object_get(t, "extra");
	assert_true(json_is_object(cols));
	assert_true(json_is_object(extra));

	for (size_t i = 0; i < sizeof(col_paths) / sizeof(col_paths[0]); i++) {
		json_t *want = json_object_get(cols, col_paths[i][0]);
		json_t *have = get_path(j, col_paths[i][1]);

		if (have == NULL) {
			assert_null(want);
			continue;
		}
		assert_non_null(want);
		if (i == 2) {
			assert_true(json_is_string(have));
			assert_int_equal(json_integer_value(want), iso_ns(json_string_value(have)));
		} else if ((i == 8 || i == 9) && !json_is_string(have) && !json_is_null(have)) {
			/* any column, non-string value: the exact text as written. */
			const char *txt = json_string_value(want);
			json_t *back;

			assert_non_null(txt);
			assert_non_null(memmem(ev->data, ev->len, txt, strlen(txt)));
			back = json_loads(txt, 0, &err);
			assert_non_null(back);
			assert_true(json_equal(back, have));
			json_decref(back);
			if (i == 9)
				cov->payload_obj++;
			else
				cov->err_obj++;
		} else {
			assert_true(json_equal(want, have));
			if (i == 9)
				cov->payload_str++;
		}
	}
	/* Unknown fields, with dotted keys. */
	json_object_foreach(j, k, v)
	{
		static const char *const known[] = {
		        "query_id", "timestamp", "event_type", "query_text", "metadata", "payload"};
		int is_known = 0;

		for (size_t i = 0; i < 6; i++)
			is_known |= strcmp(k, known[i]) == 0;
		if (!is_known)
			json_object_set(want_extra, k, v);
	}
	json_object_foreach(json_object_get(j, "metadata"), k, v)
	{
		char dotted[128];

		if (strcmp(k, "user_id") && strcmp(k, "database") && strcmp(k, "duration_ms") &&
		        strcmp(k, "rows_affected") && strcmp(k, "error")) {
			snprintf(dotted, sizeof(dotted), "metadata.%s", k);
			json_object_set(want_extra, dotted, v);
		}
	}
	assert_true(json_equal(want_extra, extra));

	v = get_path(j, "metadata.error");
	is_error = v && !json_is_null(v) && !(json_is_string(v) && json_string_length(v) == 0);
	assert_int_equal(json_is_true(json_object_get(t, "is_error")), is_error);
	assert_int_equal(ev->is_error, is_error);

	/* Coverage of what the workload is meant to exercise. */
	{
		const char *u = json_string_value(get_path(j, "metadata.user_id"));
		const char *ts = json_string_value(json_object_get(j, "timestamp"));
		size_t tl = strlen(ts);

		for (const char *p = u; *p; p++)
			if ((unsigned char)*p >= 0x80) {
				cov->non_ascii_user++;
				break;
			}
		cov->escaped_user += memmem(ev->data, ev->len, "\"user_id\":\"", 11) &&
		                     memmem(ev->data, ev->len, "\\u", 2) != NULL;
		cov->zone[0] += ts[tl - 1] == 'Z';
		cov->zone[1] += tl > 6 && strcmp(ts + tl - 6, "+05:30") == 0;
		cov->zone[2] += tl > 6 && strcmp(ts + tl - 6, "-08:00") == 0;
		cov->zone[3] += tl > 6 && strcmp(ts + tl - 6, "+00:00") == 0;
		cov->engine += json_object_get(extra, "engine_version") != NULL;
		cov->cluster += json_object_get(extra, "metadata.cluster") != NULL;
		cov->trace += json_object_get(extra, "trace") != NULL;
		cov->err_null += v && json_is_null(v);
		cov->err_absent += v == NULL;
		cov->err_empty += v && json_is_string(v) && json_string_length(v) == 0;
		if (is_error) {
			const char *e = json_is_string(v)
			                        ? json_string_value(v)
			                        : json_string_value(json_object_get(v, "message"));

			assert_non_null(e);
			if (strstr(e, "org.apache.spark") || strstr(e, "Job aborted") ||
			        strstr(e, "Caused by:"))
				cov->err_spark++;
			else if (strstr(e, " ERROR ") || strstr(e, " WARN ") ||
			         strstr(e, " FATAL ") || strstr(e, "xception"))
				cov->err_loghub++;
			else
				fail_msg("error text from nowhere: %s", e);
		}
		cov->query_tabs +=
		        strchr(json_string_value(json_object_get(j, "query_text")), '\t') != NULL;
		cov->spaced += memmem(ev->data, ev->len, "\", \"", 4) != NULL;
	}
	json_decref(want_extra);
	json_decref(j);
	json_decref(t);
}

static void
run_valid_check(uint64_t seed, const struct tl_corpus_conf *base, int n, bool with_extractor)
{
	struct tl_corpus_conf cf = *base;
	struct tl_corpus_gen *g;
	struct tl_corpus_event ev;
	struct coverage cov = {0};
	struct tl_schema *s = NULL;
	struct tl_event *pev = malloc(sizeof(*pev));
	int valid = 0;

	assert_non_null(pev);
	cf.seed = seed;
	cf.truth = true;
	g = make_gen(&cf);
	if (with_extractor)
		s = e6data_schema(&cf);
	for (int i = 0; i < n; i++) {
		assert_int_equal(tl_corpus_next(g, &ev), 0);
		if (ev.reason != TL_REASON_OK)
			continue;
		valid++;
		check_valid_event(&ev, &cov);
		if (s) {
			enum tl_reason got = tl_json_extract(s, ev.data, ev.len, pev);

			if (got != TL_REASON_OK)
				fail_msg("extractor rejects a valid event (%s): %.300s",
				        tl_reason_name(got), (const char *)ev.data);
			assert_int_equal(pev->is_error, ev.is_error);
		}
	}
	assert_true(valid > n / 2);
	assert_true(cov.non_ascii_user > 0);
	assert_true(cov.escaped_user > 0);
	for (int z = 0; z < 4; z++)
		assert_true(cov.zone[z] > 0);
	assert_true(cov.engine > 0 && cov.cluster > 0 && cov.trace > 0);
	assert_true(cov.payload_obj > 0 && cov.payload_str > cov.payload_obj);
	assert_true(cov.err_null > 0 && cov.err_absent > 0 && cov.err_empty > 0);
	assert_true(cov.err_obj > 0 && cov.err_spark > 0 && cov.err_loghub > 0);
	assert_true(cov.query_tabs > 0 && cov.spaced > 0);
	tl_schema_free(s);
	free(pev);
	tl_corpus_gen_free(g);
}

static void
test_corpus_valid_events_match_truth(void **state)
{
	struct tl_corpus_conf cf;

	(void)state;
	tl_corpus_conf_defaults(&cf);
	run_valid_check(1, &cf, 6000, true);
	cf.malformed_share = 0.3;
	small_limits(&cf);
	run_valid_check(77, &cf, 6000, true);
	/* Tight limits: every valid value still fits. */
	cf.max_string = 2048;
	cf.max_event_size = 8192;
	cf.max_depth = 12;
	run_valid_check(5, &cf, 4000, true);
}

/* ---- batches ---- */

static void
test_corpus_batch_build_contiguous_valid(void **state)
{
	struct tl_corpus_conf cf;
	struct tl_corpus_batch b, b2;
	const uint32_t n = 400;

	(void)state;
	tl_corpus_conf_defaults(&cf);
	cf.malformed_share = 1.0; /* ignored: batches are valid events */
	assert_int_equal(tl_corpus_batch_build(corpus, &cf, n, &b), 0);
	assert_int_equal(b.n, n);
	assert_int_equal(b.off[0], 0);
	assert_int_equal(b.off[n], b.len);
	for (uint32_t i = 0; i < n; i++) {
		json_error_t err;
		size_t len = b.off[i + 1] - b.off[i] - 1;
		json_t *j;

		assert_true(b.off[i + 1] > b.off[i]);
		assert_int_equal(b.buf[b.off[i + 1] - 1], '\n');
		assert_in_range(len, 1024, 5120);
		j = json_loadb((const char *)b.buf + b.off[i], len, JSON_REJECT_DUPLICATES, &err);
		assert_non_null(j);
		json_decref(j);
	}
	/* Deterministic too. */
	assert_int_equal(tl_corpus_batch_build(corpus, &cf, n, &b2), 0);
	assert_int_equal(b2.len, b.len);
	assert_memory_equal(b2.buf, b.buf, b.len);
	tl_corpus_batch_free(&b);
	tl_corpus_batch_free(&b2);
	assert_null(b.buf);
	tl_corpus_batch_free(NULL);

	assert_int_equal(tl_corpus_batch_build(corpus, &cf, 0, &b), -EINVAL);
	assert_int_equal(tl_corpus_batch_build(NULL, &cf, 1, &b), -EINVAL);
	assert_int_equal(tl_corpus_batch_build(corpus, &cf, 1, NULL), -EINVAL);
	cf.max_depth = 2;
	assert_int_equal(tl_corpus_batch_build(corpus, &cf, 1, &b), -EINVAL);
	assert_null(b.buf);
}

static void
test_corpus_rng_below_in_range_and_spread(void **state)
{
	struct tl_corpus_rng r;
	unsigned hist[10] = {0};

	(void)state;
	tl_corpus_rng_seed(&r, 0);
	for (int i = 0; i < 100000; i++) {
		uint32_t v = tl_corpus_rng_below(&r, 10);
		double u = tl_corpus_rng_unit(&r);

		assert_true(v < 10);
		assert_true(u >= 0 && u < 1);
		hist[v]++;
	}
	for (int i = 0; i < 10; i++)
		assert_in_range(hist[i], 9000, 11000);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_corpus_load_missing_dir_fails),
	        cmocka_unit_test(test_corpus_load_dir_without_logs_fails),
	        cmocka_unit_test(test_corpus_gen_create_bad_conf_einval),
	        cmocka_unit_test(test_corpus_gen_faults_infeasible_excluded),
	        cmocka_unit_test(test_corpus_same_seed_same_bytes),
	        cmocka_unit_test(test_corpus_valid_sizes_within_1_to_5_kb),
	        cmocka_unit_test(test_corpus_queries_have_about_five_events),
	        cmocka_unit_test(test_corpus_error_share_within_tolerance),
	        cmocka_unit_test(test_corpus_every_fault_present_with_reason),
	        cmocka_unit_test(test_corpus_fault_names_and_reasons_stable),
	        cmocka_unit_test(test_corpus_fault_mask_restricts_kinds),
	        cmocka_unit_test(test_corpus_truth_lost_format),
	        cmocka_unit_test(test_corpus_valid_events_match_truth),
	        cmocka_unit_test(test_corpus_batch_build_contiguous_valid),
	        cmocka_unit_test(test_corpus_rng_below_in_range_and_spread),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
