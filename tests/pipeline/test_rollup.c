/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Unit tests for tl_rollup: per-worker watermarks, batch deltas, the writer's rollup.
 *
 * Most tests drive the three structures the way the pipeline does (a "sim": the worker
 * observes each event in its watermark, adds it to a delta, seals the delta when it is
 * full; the writer merges the serialised delta and emits), with event types taken from
 * the Spark event log in shared/data and TPC-H table names as databases. One test replays
 * that event log with its real timestamps.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "tl_rollup.h"

#define SEC 1000000000LL
#define MS 1000000LL

/* ---- helpers ---- */

static const char *
data_dir(void)
{
	const char *s = getenv("TAPLINE_DATA");

	return s && s[0] ? s : "../shared/data";
}

/* Spark listener events, as named in shared/data/spark-eventlog/complex_dec_eventlog. */
static const char *const spark_types[] = {
        "SparkListenerJobStart",
        "SparkListenerJobEnd",
        "SparkListenerStageSubmitted",
        "SparkListenerStageCompleted",
        "SparkListenerTaskStart",
        "SparkListenerTaskEnd",
        "org.apache.spark.sql.execution.ui.SparkListenerSQLExecutionStart",
};
#define N_TYPES (sizeof(spark_types) / sizeof(spark_types[0]))

/* TPC-H tables, standing in for database names. */
static const char *const tpch_dbs[] = {"lineitem", "orders", "customer", "partsupp"};
#define N_DBS (sizeof(tpch_dbs) / sizeof(tpch_dbs[0]))

static uint64_t rng_state;

static uint64_t
rnd(void)
{
	uint64_t x = rng_state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	rng_state = x;
	return x * 0x2545F4914F6CDD1Dull;
}

static uint64_t
rnd_below(uint64_t n)
{
	return rnd() % n;
}

static struct tl_rollup_conf
conf_make(int64_t window_s, int64_t lateness_s, int64_t idle_s)
{
	struct tl_rollup_conf c;

	assert_int_equal(tl_opt_defaults(tl_rollup_opts, &c), 0);
	c.window_ns = (uint64_t)(window_s * SEC);
	c.lateness_ns = (uint64_t)(lateness_s * SEC);
	c.idle_ns = (uint64_t)(idle_s * SEC);
	return c;
}

static void
reseal(uint8_t *buf, size_t len)
{
	uint64_t h = XXH64(buf, len - 8, 0);

	for (int i = 0; i < 8; i++)
		buf[len - 8 + i] = (uint8_t)(h >> (8 * i));
}

static uint64_t
get64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

struct rowset {
	struct tl_rollup_row *v;
	size_t n, cap;
};

static void
rows_push(struct rowset *rs, const struct tl_rollup_row *rows, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		if (rs->n == rs->cap) {
			rs->cap = rs->cap ? 2 * rs->cap : 64;
			rs->v = realloc(rs->v, rs->cap * sizeof(*rs->v));
			assert_non_null(rs->v);
		}
		rs->v[rs->n++] = rows[i];
	}
}

static bool
row_eq(const struct tl_rollup_row *a, const struct tl_rollup_row *b)
{
	return a->window_ns == b->window_ns && a->count == b->count && a->errors == b->errors &&
	       a->late == b->late && a->dur_count == b->dur_count &&
	       a->duration_sum_ms == b->duration_sum_ms &&
	       memcmp(a->hist, b->hist, sizeof(a->hist)) == 0 && a->correction == b->correction &&
	       a->type_len == b->type_len && a->db_len == b->db_len &&
	       strcmp(a->event_type, b->event_type) == 0 && strcmp(a->database, b->database) == 0;
}

/* The pipeline in miniature: one worker (watermark + delta), the writer's rollup. */
struct sim {
	struct tl_rollup_conf conf;
	struct tl_watermark *wm;
	struct tl_rollup_delta *d;
	struct tl_rollup *r;
	uint8_t *buf;
	size_t cap;
	uint64_t now;
	unsigned emit_max;
	struct rowset out;
	uint64_t enospc;
	uint64_t late;
};

static void
sim_init(struct sim *s, const struct tl_rollup_conf *c, unsigned emit_max)
{
	memset(s, 0, sizeof(*s));
	s->conf = *c;
	s->emit_max = emit_max;
	s->now = 1000 * SEC;
	assert_int_equal(tl_watermark_create(c, &s->wm), 0);
	assert_int_equal(tl_rollup_delta_create(c, &s->d), 0);
	assert_int_equal(tl_rollup_create(c, &s->r), 0);
	s->cap = tl_rollup_delta_max_size(c);
	s->buf = malloc(s->cap);
	assert_non_null(s->buf);
}

static void
sim_free(struct sim *s)
{
	tl_watermark_free(s->wm);
	tl_rollup_delta_free(s->d);
	tl_rollup_free(s->r);
	free(s->buf);
	free(s->out.v);
}

static unsigned
sim_emit(struct sim *s)
{
	struct tl_rollup_row rows[16];
	unsigned n, total = 0;

	assert_true(s->emit_max <= 16);
	do {
		n = tl_rollup_emit(s->r, s->now, rows, s->emit_max);
		rows_push(&s->out, rows, n);
		total += n;
	} while (n == s->emit_max);
	return total;
}

static void
sim_flush(struct sim *s)
{
	long len = tl_rollup_delta_save(s->d, s->buf, s->cap);
	int rc;

	assert_true(len > 0);
	while ((rc = tl_rollup_merge(s->r, s->buf, (size_t)len, s->now)) == -ENOSPC) {
		struct tl_rollup_row rows[16];
		unsigned n = tl_rollup_emit(s->r, s->now, rows, s->emit_max);

		/* Refused for room: the rows waiting must make progress. */
		assert_true(n > 0);
		rows_push(&s->out, rows, n);
		s->enospc++;
	}
	assert_int_equal(rc, 0);
	tl_rollup_delta_reset(s->d);
	assert_int_equal(tl_rollup_delta_rows(s->d), 0);
}

static bool
sim_event(struct sim *s, uint64_t stream, int64_t t, const char *type, const char *db, bool error,
        bool has_dur, uint64_t dur)
{
	bool late = tl_watermark_observe(s->wm, stream, t, s->now);

	s->late += late;
	if (!tl_rollup_delta_fits(s->d, stream, t, type, strlen(type), db, strlen(db)))
		sim_flush(s);
	assert_int_equal(tl_rollup_delta_add(s->d, stream, t, type, strlen(type), db, strlen(db),
	                         error, late, has_dur, dur),
	        0);
	return late;
}

static void
sim_finish(struct sim *s)
{
	struct tl_rollup_row rows[16];
	unsigned n;

	sim_flush(s);
	while ((n = tl_rollup_emit_all(s->r, rows, s->emit_max)) > 0)
		rows_push(&s->out, rows, n);
}

static uint64_t
sum_count(const struct rowset *rs, int64_t window, bool correction)
{
	uint64_t n = 0;

	for (size_t i = 0; i < rs->n; i++)
		if (rs->v[i].window_ns == window && rs->v[i].correction == correction)
			n += rs->v[i].count;
	return n;
}

/* ---- configuration ---- */

static void
test_conf_defaults_as_documented(void **state)
{
	struct tl_rollup_conf c;
	char msg[128];

	(void)state;
	memset(&c, 0xa5, sizeof(c));
	assert_int_equal(tl_opt_defaults(tl_rollup_opts, &c), 0);
	assert_true(c.enabled);
	assert_int_equal(c.window_ns, 10 * SEC);
	assert_int_equal(c.lateness_ns, 30 * SEC);
	assert_int_equal(c.idle_ns, 60 * SEC);
	assert_int_equal(c.max_streams, 4096);
	assert_int_equal(c.max_cells, 4096);
	assert_int_equal(c.delta_cells, 64);
	assert_int_equal(c.delta_streams, 16);
	assert_int_equal(tl_rollup_check(&c, msg, sizeof(msg)), 0);
}

static void
test_check_out_of_range_rejected(void **state)
{
	struct tl_rollup_conf good = conf_make(10, 30, 60), c;
	char msg[128];

	(void)state;
	c = good;
	c.window_ns = 999 * MS;
	assert_int_not_equal(tl_rollup_check(&c, msg, sizeof(msg)), 0);
	assert_non_null(strstr(msg, "window"));
	c = good;
	c.window_ns = 86400 * SEC + 1;
	assert_int_not_equal(tl_rollup_check(&c, msg, sizeof(msg)), 0);
	c = good;
	c.window_ns = 86400 * SEC;
	assert_int_equal(tl_rollup_check(&c, msg, sizeof(msg)), 0);
	c = good;
	c.lateness_ns = 7 * 86400 * SEC + 1;
	assert_int_not_equal(tl_rollup_check(&c, msg, sizeof(msg)), 0);
	assert_non_null(strstr(msg, "lateness"));
	c = good;
	c.lateness_ns = 0;
	assert_int_equal(tl_rollup_check(&c, msg, sizeof(msg)), 0);
	c = good;
	c.idle_ns = 0;
	assert_int_not_equal(tl_rollup_check(&c, msg, sizeof(msg)), 0);
	c = good;
	c.max_streams = 0;
	assert_int_not_equal(tl_rollup_check(&c, msg, sizeof(msg)), 0);
	c = good;
	c.max_streams = (1u << 20) + 1;
	assert_int_not_equal(tl_rollup_check(&c, msg, sizeof(msg)), 0);
	c = good;
	c.max_cells = 0;
	assert_int_not_equal(tl_rollup_check(&c, msg, sizeof(msg)), 0);
	c = good;
	c.delta_cells = 65537;
	assert_int_not_equal(tl_rollup_check(&c, msg, sizeof(msg)), 0);
	c = good;
	c.delta_streams = 0;
	assert_int_not_equal(tl_rollup_check(&c, msg, sizeof(msg)), 0);
	c = good;
	c.max_cells = 8;
	c.delta_cells = 9;
	assert_int_not_equal(tl_rollup_check(&c, msg, sizeof(msg)), 0);
	assert_non_null(strstr(msg, "delta_cells"));
}

static void
test_create_bad_conf_einval(void **state)
{
	struct tl_rollup_conf good = conf_make(10, 30, 60), c;
	struct tl_watermark *wm = (void *)1;
	struct tl_rollup_delta *d = (void *)1;
	struct tl_rollup *r = (void *)1;

	(void)state;
	c = good;
	c.max_streams = 0;
	assert_int_equal(tl_watermark_create(&c, &wm), -EINVAL);
	assert_null(wm);
	c.max_streams = (1u << 20) + 1;
	assert_int_equal(tl_watermark_create(&c, &wm), -EINVAL);
	assert_int_equal(tl_rollup_create(&c, &r), -EINVAL);
	assert_null(r);
	c = good;
	c.delta_cells = 0;
	assert_int_equal(tl_rollup_delta_create(&c, &d), -EINVAL);
	assert_null(d);
	c.delta_cells = 65537;
	assert_int_equal(tl_rollup_delta_create(&c, &d), -EINVAL);
	c = good;
	c.delta_streams = 65537;
	assert_int_equal(tl_rollup_delta_create(&c, &d), -EINVAL);
	c = good;
	c.window_ns = 0;
	assert_int_equal(tl_rollup_delta_create(&c, &d), -EINVAL);
	assert_int_equal(tl_rollup_create(&c, &r), -EINVAL);
	/* every free is NULL-safe */
	tl_watermark_free(NULL);
	tl_rollup_delta_free(NULL);
	tl_rollup_free(NULL);
}

/* ---- watermarks ---- */

static void
test_watermark_behind_lateness_flagged_late(void **state)
{
	struct tl_rollup_conf c = conf_make(10, 30, 60);
	struct tl_watermark *wm;

	(void)state;
	assert_int_equal(tl_watermark_create(&c, &wm), 0);
	assert_false(tl_watermark_observe(wm, 1, 100 * SEC, 1));
	assert_false(tl_watermark_observe(wm, 1, 70 * SEC, 2));    /* exactly max - lateness */
	assert_true(tl_watermark_observe(wm, 1, 70 * SEC - 1, 3)); /* one ns beyond */
	assert_false(tl_watermark_observe(wm, 1, 200 * SEC, 4));
	assert_true(tl_watermark_observe(wm, 1, 169 * SEC, 5));
	assert_false(tl_watermark_observe(wm, 1, 170 * SEC, 6));
	/* streams are independent; 0 is a valid stream */
	assert_false(tl_watermark_observe(wm, 0, 1 * SEC, 7));
	assert_false(tl_watermark_observe(wm, 2, -5 * SEC, 8));
	assert_true(tl_watermark_observe(wm, 2, -36 * SEC, 9));
	/* extreme times saturate instead of overflowing */
	assert_false(tl_watermark_observe(wm, 3, INT64_MIN, 10));
	assert_false(tl_watermark_observe(wm, 3, INT64_MIN, 11));
	assert_false(tl_watermark_observe(wm, 3, INT64_MAX, 12));
	assert_true(tl_watermark_observe(wm, 3, INT64_MIN, 13));
	tl_watermark_free(wm);
}

static void
test_watermark_table_full_least_recent_evicted(void **state)
{
	struct tl_rollup_conf c = conf_make(10, 30, 60);
	struct tl_rollup_stats st;
	struct tl_watermark *wm;

	(void)state;
	c.max_streams = 2;
	assert_int_equal(tl_watermark_create(&c, &wm), 0);
	tl_watermark_observe(wm, 1, 100 * SEC, 1);
	tl_watermark_observe(wm, 2, 100 * SEC, 2);
	tl_watermark_observe(wm, 1, 101 * SEC, 3); /* 2 is now the least recently seen */
	tl_watermark_observe(wm, 3, 100 * SEC, 4); /* full: 2 goes */
	tl_watermark_stats(wm, &st);
	assert_int_equal(st.streams, 2);
	assert_int_equal(st.evicted, 1);
	assert_true(st.memory_bytes > 0);
	assert_int_equal(st.cells, 0);
	assert_int_equal(st.watermark_ns, 0);
	/* 1 is remembered (late still detected); 2 was forgotten (a new stream: not late) */
	assert_true(tl_watermark_observe(wm, 1, 0, 5));
	assert_false(tl_watermark_observe(wm, 2, 0, 6)); /* evicts 3 */
	assert_false(tl_watermark_observe(wm, 3, 0, 7)); /* 3 was forgotten, evicts 1 */
	tl_watermark_stats(wm, &st);
	assert_int_equal(st.evicted, 3);
	tl_watermark_free(wm);
}

static void
test_watermark_seed_known_max_late_detected(void **state)
{
	struct tl_rollup_conf c = conf_make(10, 30, 60);
	struct tl_watermark *wm;

	(void)state;
	assert_int_equal(tl_watermark_create(&c, &wm), 0);
	tl_watermark_seed(wm, 7, 500 * SEC, 1);
	assert_true(tl_watermark_observe(wm, 7, 400 * SEC, 2));
	/* seeding never lowers a known max */
	tl_watermark_seed(wm, 7, 10 * SEC, 3);
	assert_true(tl_watermark_observe(wm, 7, 400 * SEC, 4));
	tl_watermark_seed(wm, 7, 900 * SEC, 5);
	assert_true(tl_watermark_observe(wm, 7, 800 * SEC, 6));
	tl_watermark_free(wm);
}

/* ---- deltas ---- */

static void
test_delta_full_enospc_fits_agrees(void **state)
{
	struct tl_rollup_conf c = conf_make(10, 30, 60);
	struct tl_rollup_delta *d;
	const char *ty = spark_types[0], *db = tpch_dbs[0];

	(void)state;
	c.delta_cells = 2;
	c.delta_streams = 1;
	assert_int_equal(tl_rollup_delta_create(&c, &d), 0);
	assert_true(tl_rollup_delta_fits(d, 1, 0, ty, strlen(ty), db, strlen(db)));
	assert_int_equal(tl_rollup_delta_add(
	                         d, 1, 0, ty, strlen(ty), db, strlen(db), false, false, false, 0),
	        0);
	assert_int_equal(tl_rollup_delta_add(d, 1, 10 * SEC, ty, strlen(ty), db, strlen(db), false,
	                         false, false, 0),
	        0);
	/* a third cell: no room */
	assert_false(tl_rollup_delta_fits(d, 1, 20 * SEC, ty, strlen(ty), db, strlen(db)));
	assert_int_equal(tl_rollup_delta_add(d, 1, 20 * SEC, ty, strlen(ty), db, strlen(db), false,
	                         false, false, 0),
	        -ENOSPC);
	/* the same window, another type: a new cell too */
	assert_false(tl_rollup_delta_fits(d, 1, 5 * SEC, "x", 1, db, strlen(db)));
	assert_int_equal(
	        tl_rollup_delta_add(d, 1, 5 * SEC, "x", 1, db, strlen(db), false, false, false, 0),
	        -ENOSPC);
	/* a new stream on an existing cell: no stream slot */
	assert_false(tl_rollup_delta_fits(d, 2, 5 * SEC, ty, strlen(ty), db, strlen(db)));
	assert_int_equal(tl_rollup_delta_add(d, 2, 5 * SEC, ty, strlen(ty), db, strlen(db), true,
	                         false, false, 0),
	        -ENOSPC);
	assert_int_equal(tl_rollup_delta_rows(d), 2);
	/* an existing cell and stream still fit */
	assert_true(tl_rollup_delta_fits(d, 1, 9 * SEC, ty, strlen(ty), db, strlen(db)));
	assert_int_equal(tl_rollup_delta_add(d, 1, 9 * SEC, ty, strlen(ty), db, strlen(db), true,
	                         false, false, 0),
	        0);
	assert_int_equal(tl_rollup_delta_rows(d), 3);
	tl_rollup_delta_reset(d);
	assert_int_equal(tl_rollup_delta_rows(d), 0);
	assert_true(tl_rollup_delta_fits(d, 2, 20 * SEC, ty, strlen(ty), db, strlen(db)));
	tl_rollup_delta_free(d);
}

static void
test_delta_long_keys_truncated(void **state)
{
	struct tl_rollup_conf c = conf_make(10, 30, 60);
	struct sim s;
	char a[100], b[100], db[80];

	(void)state;
	memset(a, 'a', sizeof(a) - 1);
	a[sizeof(a) - 1] = '\0';
	memcpy(b, a, sizeof(b));
	b[70] = 'b'; /* differs beyond the 63 bytes kept: the same key */
	memset(db, 'd', sizeof(db) - 1);
	db[sizeof(db) - 1] = '\0';
	sim_init(&s, &c, 4);
	sim_event(&s, 1, 1 * SEC, a, db, false, false, 0);
	sim_event(&s, 1, 2 * SEC, b, db, false, false, 0);
	sim_event(&s, 1, 3 * SEC, "", "", false, false, 0);
	sim_finish(&s);
	assert_int_equal(s.out.n, 2);
	/* key order: "" before "aaa..." */
	assert_int_equal(s.out.v[0].type_len, 0);
	assert_string_equal(s.out.v[0].event_type, "");
	assert_int_equal(s.out.v[1].type_len, TL_ROLLUP_KEY_MAX);
	assert_int_equal(s.out.v[1].db_len, TL_ROLLUP_KEY_MAX);
	assert_int_equal(strlen(s.out.v[1].event_type), TL_ROLLUP_KEY_MAX);
	assert_int_equal(strlen(s.out.v[1].database), TL_ROLLUP_KEY_MAX);
	assert_memory_equal(s.out.v[1].event_type, a, TL_ROLLUP_KEY_MAX);
	assert_int_equal(s.out.v[1].count, 2);
	sim_free(&s);
}

static void
test_delta_save_small_buffer_enospc(void **state)
{
	struct tl_rollup_conf c = conf_make(10, 30, 60);
	struct tl_rollup_delta *d;
	size_t max;
	uint8_t *buf;
	long len;
	char ty[64];

	(void)state;
	c.delta_cells = 8;
	c.delta_streams = 4;
	max = tl_rollup_delta_max_size(&c);
	buf = malloc(max);
	assert_non_null(buf);
	assert_int_equal(tl_rollup_delta_create(&c, &d), 0);
	/* an empty delta still serialises */
	len = tl_rollup_delta_save(d, buf, max);
	assert_int_equal(len, 24 + 8);
	/* the largest delta: every cell with the longest keys and every bucket */
	memset(ty, 'k', sizeof(ty));
	for (int i = 0; i < 8; i++) {
		for (unsigned b = 0; b < TL_ROLLUP_HIST; b++)
			assert_int_equal(tl_rollup_delta_add(d, (uint64_t)(i % 4), i * 10 * SEC, ty,
			                         sizeof(ty), ty, sizeof(ty), false, false, true,
			                         b == 0 ? 0 : 1ull << (b - 1)),
			        0);
	}
	len = tl_rollup_delta_save(d, buf, max);
	assert_true(len > 0);
	assert_true((size_t)len <= max);
	assert_int_equal(tl_rollup_delta_save(d, buf, (size_t)len - 1), -ENOSPC);
	assert_int_equal(tl_rollup_delta_save(d, buf, 0), -ENOSPC);
	assert_int_equal(tl_rollup_delta_save(d, buf, (size_t)len), len);
	tl_rollup_delta_free(d);
	free(buf);
}

/* ---- windows and histograms ---- */

static void
test_window_negative_times_floored(void **state)
{
	struct tl_rollup_conf c = conf_make(10, 30, 60);
	const char *ty = spark_types[1], *db = tpch_dbs[1];
	struct sim s;

	(void)state;
	sim_init(&s, &c, 16);
	sim_event(&s, 1, -1, ty, db, false, false, 0);            /* [-10 s, 0) */
	sim_event(&s, 1, -10 * SEC, ty, db, false, false, 0);     /* [-10 s, 0) */
	sim_event(&s, 1, -10 * SEC - 1, ty, db, false, false, 0); /* [-20 s, -10 s) */
	sim_event(&s, 1, 0, ty, db, false, false, 0);             /* [0, 10 s) */
	sim_event(&s, 1, 10 * SEC - 1, ty, db, false, false, 0);  /* [0, 10 s) */
	sim_event(&s, 2, INT64_MIN, ty, db, false, false, 0);     /* lowest window */
	sim_event(&s, 2, INT64_MIN + 1, ty, db, false, false, 0); /* the same */
	sim_event(&s, 3, INT64_MAX, ty, db, false, false, 0);     /* highest window */
	sim_finish(&s);
	assert_int_equal(s.out.n, 5);
	/* oldest window first */
	assert_true(s.out.v[0].window_ns <= INT64_MIN + 10 * SEC);
	assert_int_equal(s.out.v[0].window_ns % (10 * SEC), 0);
	assert_int_equal(s.out.v[0].count, 2);
	assert_int_equal(s.out.v[1].window_ns, -20 * SEC);
	assert_int_equal(s.out.v[1].count, 1);
	assert_int_equal(s.out.v[2].window_ns, -10 * SEC);
	assert_int_equal(s.out.v[2].count, 2);
	assert_int_equal(s.out.v[3].window_ns, 0);
	assert_int_equal(s.out.v[3].count, 2);
	assert_int_equal(s.out.v[4].window_ns, INT64_MAX / (10 * SEC) * (10 * SEC));
	sim_free(&s);
}

static void
test_hist_bucket_edges_counted(void **state)
{
	struct tl_rollup_conf c = conf_make(10, 30, 60);
	static const struct {
		uint64_t ms;
		unsigned bucket;
	} cases[] = {
	        {0, 0},
	        {1, 1},
	        {2, 2},
	        {3, 2},
	        {4, 3},
	        {7, 3},
	        {8, 4},
	        {1023, 10},
	        {1024, 11},
	        {(1ull << 30) - 1, 30},
	        {1ull << 30, 31},
	        {1ull << 31, 31},
	        {UINT64_MAX, 31},
	};
	const size_t n = sizeof(cases) / sizeof(cases[0]);
	uint64_t want[TL_ROLLUP_HIST] = {0}, sum = 0;
	struct sim s;

	(void)state;
	sim_init(&s, &c, 4);
	for (size_t i = 0; i < n; i++) {
		sim_event(&s, 1, SEC, spark_types[5], tpch_dbs[0], false, true, cases[i].ms);
		want[cases[i].bucket]++;
		sum = sum + cases[i].ms < sum ? UINT64_MAX : sum + cases[i].ms;
	}
	/* no duration: counted, in no bucket */
	sim_event(&s, 1, SEC, spark_types[5], tpch_dbs[0], false, false, 12345);
	sim_finish(&s);
	assert_int_equal(s.out.n, 1);
	assert_int_equal(s.out.v[0].count, n + 1);
	assert_int_equal(s.out.v[0].dur_count, n);
	assert_int_equal(s.out.v[0].duration_sum_ms, sum); /* saturated by UINT64_MAX */
	assert_memory_equal(s.out.v[0].hist, want, sizeof(want));
	sim_free(&s);
}

static void
test_p95_histogram_upper_bound(void **state)
{
	uint64_t h[TL_ROLLUP_HIST] = {0};

	(void)state;
	assert_int_equal(tl_rollup_p95_ms(h), 0);
	h[0] = 100; /* all 0 ms */
	assert_int_equal(tl_rollup_p95_ms(h), 0);
	memset(h, 0, sizeof(h));
	h[1] = 95; /* 95 at 1 ms, 5 at [512, 1024) ms: the 95th value is 1 ms */
	h[10] = 5;
	assert_int_equal(tl_rollup_p95_ms(h), 2);
	h[1] = 94; /* now the 95th value is in [512, 1024) */
	h[10] = 6;
	assert_int_equal(tl_rollup_p95_ms(h), 1024);
	memset(h, 0, sizeof(h));
	h[3] = 1; /* one value: it is the p95 */
	assert_int_equal(tl_rollup_p95_ms(h), 8);
	memset(h, 0, sizeof(h));
	h[TL_ROLLUP_HIST - 1] = 1;
	assert_int_equal(tl_rollup_p95_ms(h), 1ull << (TL_ROLLUP_HIST - 1));
	/* sums beyond 64 bits do not overflow */
	h[0] = UINT64_MAX;
	h[1] = UINT64_MAX;
	assert_int_equal(tl_rollup_p95_ms(h), 2);
}

/* ---- the rollup ---- */

static void
test_rollup_in_order_window_emitted_once(void **state)
{
	struct tl_rollup_conf c = conf_make(10, 5, 60);
	struct tl_rollup_stats st;
	int64_t t;
	struct sim s;
	size_t before;

	(void)state;
	sim_init(&s, &c, 16);
	/* one event per second, a flush and an emit every 5 */
	for (t = 0; t < 60; t++) {
		sim_event(&s, 1, t * SEC, spark_types[t % 3], tpch_dbs[0], t % 7 == 0, true,
		        (uint64_t)t);
		if (t % 5 == 4) {
			sim_flush(&s);
			before = s.out.n;
			s.now += SEC;
			sim_emit(&s);
			/* watermark = t - 5 s: windows ending at or below it are out, once */
			for (size_t i = before; i < s.out.n; i++) {
				assert_true(s.out.v[i].window_ns + 10 * SEC <= t * SEC - 5 * SEC);
				assert_false(s.out.v[i].correction);
			}
			tl_rollup_stats(s.r, &st);
			assert_int_equal(st.watermark_ns, t * SEC - 5 * SEC);
		}
	}
	/* windows [0,10) .. [40,50) are out (watermark 54 s), each with its 3 types */
	assert_int_equal(s.out.n, 5 * 3);
	for (int64_t w = 0; w < 50; w += 10)
		assert_int_equal(sum_count(&s.out, w * SEC, false), 10);
	/* nothing more before the watermark moves */
	assert_int_equal(sim_emit(&s), 0);
	sim_finish(&s);
	assert_int_equal(s.out.n, 6 * 3);
	assert_int_equal(sum_count(&s.out, 50 * SEC, false), 10);
	tl_rollup_stats(s.r, &st);
	assert_int_equal(st.corrections, 0);
	assert_int_equal(st.rows_emitted, 18);
	assert_int_equal(st.cells, 0);
	assert_int_equal(s.late, 0);
	sim_free(&s);
}

static void
test_rollup_late_events_rows_corrections(void **state)
{
	struct tl_rollup_conf c = conf_make(10, 5, 60);
	const char *ty = spark_types[5], *db = tpch_dbs[2];
	struct tl_rollup_stats st;
	struct sim s;
	uint64_t count = 0, late = 0, errors = 0;

	(void)state;
	sim_init(&s, &c, 16);
	for (int64_t t = 0; t < 30; t++)
		sim_event(&s, 1, t * SEC, ty, db, false, false, 0);
	sim_flush(&s);
	sim_emit(&s); /* watermark 24 s: [0,10) and [10,20) out */
	assert_int_equal(s.out.n, 2);
	assert_int_equal(sum_count(&s.out, 0, false), 10);
	/* late: behind 29 - 5 s, in windows already emitted */
	assert_true(sim_event(&s, 1, 3 * SEC, ty, db, true, false, 0));
	assert_true(sim_event(&s, 1, 4 * SEC, ty, db, false, false, 0));
	assert_true(sim_event(&s, 1, 12 * SEC, ty, db, false, false, 0));
	/* late but its window [20,30) is still open: counted late, no correction */
	assert_true(sim_event(&s, 1, 23 * SEC, ty, db, false, false, 0));
	/* a new key in an emitted window: a correction too */
	assert_true(sim_event(&s, 1, 5 * SEC, spark_types[0], db, false, false, 0));
	sim_flush(&s);
	sim_emit(&s);
	tl_rollup_stats(s.r, &st);
	assert_int_equal(st.corrections, 3);
	assert_int_equal(sum_count(&s.out, 0, true), 3);
	assert_int_equal(sum_count(&s.out, 10 * SEC, true), 1);
	for (size_t i = 0; i < s.out.n; i++) {
		if (!s.out.v[i].correction)
			continue;
		/* every event of a correction row here was late */
		assert_int_equal(s.out.v[i].late, s.out.v[i].count);
		late += s.out.v[i].late;
		errors += s.out.v[i].errors;
	}
	assert_int_equal(late, 4);
	assert_int_equal(errors, 1);
	sim_finish(&s);
	assert_int_equal(sum_count(&s.out, 20 * SEC, false), 11);
	for (size_t i = 0; i < s.out.n; i++)
		count += s.out.v[i].count;
	assert_int_equal(count, 35);
	assert_int_equal(s.late, 5);
	sim_free(&s);
}

static void
test_rollup_slow_stream_holds_watermark_until_idle(void **state)
{
	struct tl_rollup_conf c = conf_make(10, 0, 60);
	const char *ty = spark_types[2], *db = tpch_dbs[3];
	struct tl_rollup_stats st;
	struct sim s;

	(void)state;
	sim_init(&s, &c, 16);
	s.now = 0;
	sim_event(&s, 2, 5 * SEC, ty, db, false, false, 0); /* the slow stream */
	sim_flush(&s);
	s.now = 30 * SEC;
	for (int64_t t = 0; t < 100; t++)
		sim_event(&s, 1, t * SEC, ty, db, false, false, 0);
	sim_flush(&s);
	s.now = 59 * SEC;
	assert_int_equal(sim_emit(&s), 0); /* held back at 5 s */
	tl_rollup_stats(s.r, &st);
	assert_int_equal(st.watermark_ns, 5 * SEC);
	s.now = 60 * SEC; /* stream 2 idle: only stream 1 (99 s) counts */
	assert_int_equal(sim_emit(&s), 9);
	tl_rollup_stats(s.r, &st);
	assert_int_equal(st.watermark_ns, 99 * SEC);
	assert_int_equal(sum_count(&s.out, 0, false), 11);
	/* the slow stream comes back: its event of an emitted window is a correction and
	 * it holds the watermark again */
	s.now = 61 * SEC;
	sim_event(&s, 2, 7 * SEC, ty, db, false, false, 0);
	sim_flush(&s);
	assert_int_equal(sim_emit(&s), 1);
	assert_true(s.out.v[s.out.n - 1].correction);
	assert_int_equal(s.out.v[s.out.n - 1].window_ns, 0);
	tl_rollup_stats(s.r, &st);
	assert_int_equal(st.watermark_ns, 7 * SEC);
	/* everything idle: no watermark, nothing emitted, until emit_all */
	s.now = 200 * SEC;
	assert_int_equal(sim_emit(&s), 0);
	tl_rollup_stats(s.r, &st);
	assert_int_equal(st.watermark_ns, INT64_MIN);
	assert_int_equal(st.cells, 1);
	sim_finish(&s);
	assert_int_equal(sum_count(&s.out, 90 * SEC, false), 10);
	tl_rollup_stats(s.r, &st);
	assert_int_equal(st.cells, 0);
	sim_free(&s);
}

static void
test_rollup_emit_max_rows_rest_next_call(void **state)
{
	struct tl_rollup_conf c = conf_make(10, 0, 60);
	struct tl_rollup_row row;
	struct sim s;

	(void)state;
	sim_init(&s, &c, 1);
	for (unsigned i = 0; i < 3; i++)
		sim_event(&s, 1, 15 * SEC, spark_types[i], tpch_dbs[0], false, false, 0);
	sim_event(&s, 1, 5 * SEC, spark_types[0], tpch_dbs[1], false, false, 0);
	sim_event(&s, 1, 5 * SEC, spark_types[0], tpch_dbs[0], false, false, 0);
	sim_event(&s, 1, 30 * SEC, spark_types[0], tpch_dbs[0], false, false, 0);
	sim_flush(&s);
	/* one row per call: window order, then type, then database, as bytes */
	assert_int_equal(tl_rollup_emit(s.r, s.now, &row, 1), 1);
	assert_int_equal(row.window_ns, 0);
	assert_string_equal(row.database, "lineitem");
	assert_int_equal(tl_rollup_emit(s.r, s.now, &row, 1), 1);
	assert_string_equal(row.database, "orders");
	assert_int_equal(tl_rollup_emit(s.r, s.now, &row, 1), 1);
	assert_int_equal(row.window_ns, 10 * SEC);
	assert_string_equal(row.event_type, "SparkListenerJobEnd");
	assert_int_equal(tl_rollup_emit(s.r, s.now, &row, 0), 0);
	/* a new key in the half-emitted window [10,20) is a correction; a known key of it
	 * still merges into its pending cell */
	sim_event(&s, 1, 11 * SEC, "late", tpch_dbs[0], false, false, 0);
	sim_event(&s, 1, 12 * SEC, spark_types[0], tpch_dbs[0], false, false, 0);
	sim_flush(&s);
	sim_emit(&s);
	assert_int_equal(s.out.n, 3);
	assert_true(s.out.v[0].correction);
	assert_string_equal(s.out.v[0].event_type, "late");
	assert_false(s.out.v[1].correction);
	assert_string_equal(s.out.v[1].event_type, "SparkListenerJobStart");
	assert_int_equal(s.out.v[1].count, 2);
	assert_false(s.out.v[2].correction);
	sim_free(&s);
}

static void
test_rollup_table_full_oldest_forced_then_corrections(void **state)
{
	struct tl_rollup_conf c = conf_make(10, 600, 60);
	const char *db = tpch_dbs[0];
	struct tl_rollup_stats st;
	struct sim s;

	(void)state;
	c.max_cells = 2;
	c.delta_cells = 1;
	sim_init(&s, &c, 16);
	sim_event(&s, 1, 25 * SEC, "a", db, false, false, 0);
	sim_event(&s, 1, 5 * SEC, "a", db, false, false, 0);
	sim_event(&s, 1, 6 * SEC, "a", db, false, false, 0);
	sim_event(&s, 1, 15 * SEC, "a", db, false, false, 0); /* third open cell: force [0,10) */
	sim_flush(&s);
	tl_rollup_stats(s.r, &st);
	assert_int_equal(st.forced, 1);
	assert_int_equal(st.cells, 3);
	sim_event(&s, 1, 7 * SEC, "b", db, false, false, 0); /* forced window: a correction */
	sim_event(&s, 1, 8 * SEC, "a", db, false, false, 0); /* still pending: merged into it */
	sim_flush(&s);
	/* the watermark (25 - 600 s) passes nothing, the pending rows go out */
	assert_int_equal(sim_emit(&s), 2);
	assert_false(s.out.v[0].correction);
	assert_int_equal(s.out.v[0].window_ns, 0);
	assert_int_equal(s.out.v[0].count, 3);
	assert_true(s.out.v[1].correction);
	assert_string_equal(s.out.v[1].event_type, "b");
	sim_event(&s, 1, 9 * SEC, "a", db, false, false, 0); /* now a correction */
	sim_flush(&s);
	sim_finish(&s);
	assert_int_equal(s.out.n, 5);
	assert_true(s.out.v[2].correction);
	assert_int_equal(s.out.v[2].window_ns, 0);
	assert_int_equal(sum_count(&s.out, 0, false) + sum_count(&s.out, 0, true), 5);
	tl_rollup_stats(s.r, &st);
	assert_int_equal(st.corrections, 2);
	sim_free(&s);
}

static void
test_rollup_pending_rows_fill_table_merge_enospc(void **state)
{
	struct tl_rollup_conf c = conf_make(10, 600, 60);
	struct tl_rollup_delta *d;
	struct tl_rollup *r;
	struct tl_rollup_stats st;
	struct tl_rollup_row rows[4];
	uint8_t buf[1024];
	long len[3];

	(void)state;
	c.max_cells = 1;
	c.delta_cells = 1;
	assert_int_equal(tl_rollup_create(&c, &r), 0);
	assert_int_equal(tl_rollup_delta_create(&c, &d), 0);
	for (int i = 0; i < 3; i++) {
		tl_rollup_delta_reset(d);
		assert_int_equal(tl_rollup_delta_add(d, 1, i * 10 * SEC, "q", 1, "tpch", 4, false,
		                         false, false, 0),
		        0);
		len[i] = tl_rollup_delta_save(d, buf + i * 300, 300);
		assert_true(len[i] > 0);
	}
	assert_int_equal(tl_rollup_merge(r, buf, (size_t)len[0], 1), 0);
	assert_int_equal(tl_rollup_merge(r, buf + 300, (size_t)len[1], 1), 0); /* forces [0,10) */
	tl_rollup_stats(r, &st);
	assert_int_equal(st.cells, 2);
	assert_int_equal(st.forced, 1);
	assert_int_equal(st.merged_cells, 2);
	/* the table (2 x max_cells) is full of a pending row and an open cell */
	assert_int_equal(tl_rollup_merge(r, buf + 600, (size_t)len[2], 1), -ENOSPC);
	tl_rollup_stats(r, &st);
	assert_int_equal(st.merged_cells, 2);
	assert_int_equal(st.cells, 2);
	assert_int_equal(tl_rollup_emit(r, 2, rows, 4), 1);
	assert_int_equal(tl_rollup_merge(r, buf + 600, (size_t)len[2], 2), 0);
	assert_int_equal(tl_rollup_emit_all(r, rows, 4), 2);
	assert_int_equal(rows[0].window_ns, 10 * SEC);
	assert_int_equal(rows[1].window_ns, 20 * SEC);
	tl_rollup_delta_free(d);
	tl_rollup_free(r);
}

/*
 * Property: random events over many windows, types, databases and streams, some late,
 * for several table sizes down to one cell; the rows emitted add up, key by key, to what
 * was added, and no key gets more than one non-correction row.
 */
#define P_WIN_LO (-5)
#define P_WIN_N 120
#define P_KEYS (P_WIN_N * N_TYPES * N_DBS)

struct ref {
	uint64_t count, errors, late, dur_count, dur_sum, firsts;
	uint64_t hist[TL_ROLLUP_HIST];
};

static size_t
ref_index(int64_t window, const char *type, const char *db)
{
	int64_t w = window / (10 * SEC) - P_WIN_LO;
	size_t ti = N_TYPES, di = N_DBS;

	/* the SQL execution event's name is 64 bytes: rows carry its first 63 */
	for (size_t i = 0; i < N_TYPES; i++)
		if (strncmp(type, spark_types[i], TL_ROLLUP_KEY_MAX) == 0)
			ti = i;
	for (size_t i = 0; i < N_DBS; i++)
		if (strcmp(db, tpch_dbs[i]) == 0)
			di = i;
	assert_true(w >= 0 && w < P_WIN_N && ti < N_TYPES && di < N_DBS);
	return ((size_t)w * N_TYPES + ti) * N_DBS + di;
}

static void
property_run(uint64_t max_cells, uint64_t delta_cells, uint64_t delta_streams, unsigned emit_max,
        uint64_t seed)
{
	struct tl_rollup_conf c = conf_make(10, 20, 30);
	struct ref *want = calloc(P_KEYS, sizeof(*want)), *got = calloc(P_KEYS, sizeof(*got));
	int64_t clock[4] = {0, 0, 0, 0};
	struct tl_rollup_stats st;
	struct sim s;
	uint64_t corrections = 0;

	assert_non_null(want);
	assert_non_null(got);
	c.max_cells = max_cells;
	c.delta_cells = delta_cells;
	c.delta_streams = delta_streams;
	c.max_streams = 3; /* four streams: the rollup and the workers evict */
	sim_init(&s, &c, emit_max);
	rng_state = seed;
	for (int i = 0; i < 1500; i++) {
		uint64_t stream = rnd_below(4);
		int64_t t;
		const char *ty = spark_types[rnd_below(N_TYPES)], *db = tpch_dbs[rnd_below(N_DBS)];
		bool err = rnd_below(10) == 0, has_dur = rnd_below(3) != 0, late;
		uint64_t dur = rnd_below(5000);
		struct ref *w;

		if (stream == 3 && rnd_below(4) != 0)
			continue; /* a quiet stream: often idle */
		clock[stream] += (int64_t)rnd_below(2 * SEC);
		t = clock[stream] - 40 * SEC + (int64_t)rnd_below(40 * SEC) -
		    (int64_t)rnd_below(SEC);
		if (rnd_below(20) == 0)
			t -= 60 * SEC; /* quite late */
		if (t < (P_WIN_LO + 1) * 10 * SEC)
			t = (P_WIN_LO + 1) * 10 * SEC;
		assert_true(t < (P_WIN_N + P_WIN_LO) * 10 * SEC);
		late = sim_event(&s, stream, t, ty, db, err, has_dur, dur);
		w = &want[ref_index(t >= 0 ? t / (10 * SEC) * (10 * SEC)
		                           : -((-t + 10 * SEC - 1) / (10 * SEC)) * (10 * SEC),
		        ty, db)];
		w->count++;
		w->errors += err;
		w->late += late;
		if (has_dur) {
			w->dur_count++;
			w->dur_sum += dur;
			w->hist[dur == 0 ? 0 : 64 - __builtin_clzll(dur)]++;
		}
		s.now += rnd_below(200 * MS);
		if (rnd_below(8) == 0)
			sim_flush(&s);
		if (rnd_below(5) == 0)
			sim_emit(&s);
	}
	sim_finish(&s);
	for (size_t i = 0; i < s.out.n; i++) {
		const struct tl_rollup_row *r = &s.out.v[i];
		struct ref *g = &got[ref_index(r->window_ns, r->event_type, r->database)];

		assert_int_equal(r->window_ns % (10 * SEC), 0);
		g->count += r->count;
		g->errors += r->errors;
		g->late += r->late;
		g->dur_count += r->dur_count;
		g->dur_sum += r->duration_sum_ms;
		for (unsigned b = 0; b < TL_ROLLUP_HIST; b++)
			g->hist[b] += r->hist[b];
		g->firsts += !r->correction;
		corrections += r->correction;
	}
	for (size_t k = 0; k < P_KEYS; k++) {
		assert_int_equal(got[k].count, want[k].count);
		assert_int_equal(got[k].errors, want[k].errors);
		assert_int_equal(got[k].late, want[k].late);
		assert_int_equal(got[k].dur_count, want[k].dur_count);
		assert_int_equal(got[k].dur_sum, want[k].dur_sum);
		assert_memory_equal(got[k].hist, want[k].hist, sizeof(got[k].hist));
		assert_true(got[k].firsts <= 1);
	}
	tl_rollup_stats(s.r, &st);
	assert_int_equal(st.rows_emitted, s.out.n);
	assert_int_equal(st.corrections, corrections);
	assert_int_equal(st.cells, 0);
	assert_true(st.streams <= 3);
	if (max_cells <= 4)
		assert_true(st.forced > 0);
	assert_true(s.late > 0);
	sim_free(&s);
	free(want);
	free(got);
}

static void
test_rollup_random_events_any_table_size_totals_equal(void **state)
{
	static const struct {
		uint64_t max_cells, delta_cells, delta_streams;
		unsigned emit_max;
	} sizes[] = {
	        {1, 1, 1, 1},
	        {2, 1, 1, 3},
	        {2, 2, 4, 16},
	        {3, 3, 2, 2},
	        {5, 4, 1, 7},
	        {16, 8, 4, 5},
	        {64, 16, 16, 16},
	        {4096, 64, 16, 16},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		for (uint64_t seed = 1; seed <= 3; seed++)
			property_run(sizes[i].max_cells, sizes[i].delta_cells,
			        sizes[i].delta_streams, sizes[i].emit_max,
			        seed * 0x9E3779B97F4A7C15ull);
}

/* Seed a restarted worker's watermark from the rollup (as the app does). */
static void
seed_wm(void *arg, uint64_t stream, int64_t max_ns)
{
	struct sim *s = arg;

	tl_watermark_seed(s->wm, stream, max_ns, s->now);
}

static void
restart_run(bool restart, uint64_t max_cells, struct rowset *out)
{
	struct tl_rollup_conf c = conf_make(10, 15, 20);
	int64_t clock[3] = {0, 0, 0};
	uint64_t offset = 0;
	bool restarted = false;
	struct sim s;

	c.max_cells = max_cells;
	c.delta_cells = 4;
	sim_init(&s, &c, 3);
	rng_state = 42;
	for (int i = 0; i < 1200; i++) {
		uint64_t stream = rnd_below(3);
		int64_t t;

		if (i == 590) { /* stream 2 has been idle for a while: its age matters */
			sim_flush(&s);
			sim_emit(&s);
			if (restart) {
				size_t need = tl_rollup_save_size(s.r);
				uint8_t *img = malloc(need);
				struct tl_rollup_stats st;

				assert_non_null(img);
				assert_int_equal(tl_rollup_save(s.r, img, need - 1), -ENOSPC);
				assert_int_equal(tl_rollup_save(s.r, img, need), (long)need);
				tl_rollup_stats(s.r, &st);
				assert_true(st.cells > 0); /* a restart with open cells */
				assert_int_equal(st.streams, 3);
				tl_rollup_free(s.r);
				tl_watermark_free(s.wm);
				assert_int_equal(tl_rollup_create(&c, &s.r), 0);
				assert_int_equal(tl_watermark_create(&c, &s.wm), 0);
				assert_int_equal(tl_rollup_load(s.r, img, need), 0);
				free(img);
				/* an hour of downtime: processing time jumps, idleness does not */
				offset = 3600 * SEC;
				s.now += offset;
				tl_rollup_streams(s.r, seed_wm, &s);
				restarted = true;
			}
			sim_emit(&s);
		}
		if (stream == 2 && i >= 300 && i < 800)
			continue; /* idle across the restart */
		clock[stream] += (int64_t)rnd_below(SEC);
		t = clock[stream] - (int64_t)rnd_below(30 * SEC);
		sim_event(&s, stream, t, spark_types[rnd_below(N_TYPES)],
		        tpch_dbs[rnd_below(N_DBS)], rnd_below(7) == 0, rnd_below(2) == 0,
		        rnd_below(100000));
		s.now += rnd_below(300 * MS);
		if (rnd_below(6) == 0)
			sim_flush(&s);
		if (rnd_below(4) == 0)
			sim_emit(&s);
	}
	assert_true(restarted == restart);
	sim_finish(&s);
	*out = s.out;
	s.out.v = NULL;
	sim_free(&s);
}

static void
test_rollup_restart_mid_stream_same_rows(void **state)
{
	/* 128 cells: the watermark decides; 8: forced emission, pending rows in the image */
	static const uint64_t sizes[] = {128, 8};

	(void)state;
	for (size_t k = 0; k < 2; k++) {
		struct rowset a, b;
		uint64_t corrections = 0;

		restart_run(false, sizes[k], &a);
		restart_run(true, sizes[k], &b);
		assert_int_equal(a.n, b.n);
		for (size_t i = 0; i < a.n; i++) {
			assert_true(row_eq(&a.v[i], &b.v[i]));
			corrections += a.v[i].correction;
		}
		assert_true(corrections > 0); /* the run exercised corrections */
		free(a.v);
		free(b.v);
	}
}

/* An edit of an image: @p width bytes little-endian at @p off. */
struct edit {
	size_t off;
	unsigned width;
	uint64_t val;
};

static void
apply(uint8_t *buf, const struct edit *e)
{
	for (unsigned i = 0; i < e->width; i++)
		buf[e->off + i] = (uint8_t)(e->val >> (8 * i));
}

/*
 * A small valid state: streams 6 then 5 (least recently seen first), open cells
 * (20 s, JobEnd, orders) and (30 s, JobEnd, orders), 67 bytes each, then the pending
 * correction (0, Task, lineitem).
 */
static size_t
state_image(uint8_t *img, size_t cap, struct tl_rollup_conf *c)
{
	struct tl_rollup_row row;
	struct sim s;
	long len;

	*c = conf_make(10, 0, 60);
	sim_init(&s, c, 16);
	sim_event(&s, 5, 3 * SEC, "JobEnd", "lineitem", true, true, 40);
	sim_event(&s, 6, 25 * SEC, "JobEnd", "orders", false, false, 0);
	sim_event(&s, 6, 35 * SEC, "JobEnd", "orders", false, false, 0);
	sim_flush(&s);
	assert_int_equal(sim_emit(&s), 0); /* watermark 3 s */
	/* one row out, so that [0,10) is emitted and the mark set */
	assert_int_equal(tl_rollup_emit_all(s.r, &row, 1), 1);
	assert_int_equal(row.window_ns, 0);
	sim_event(&s, 5, 4 * SEC, "Task", "lineitem", false, false, 0); /* a correction */
	sim_flush(&s);
	len = tl_rollup_save(s.r, img, cap);
	assert_true(len > 0);
	sim_free(&s);
	return (size_t)len;
}

static void
assert_empty_and_usable(struct tl_rollup *r, const struct tl_rollup_conf *c)
{
	struct tl_rollup_stats st;
	struct tl_rollup_delta *d;
	struct tl_rollup_row rows[4];
	uint8_t buf[512];
	long len;

	tl_rollup_stats(r, &st);
	assert_int_equal(st.cells, 0);
	assert_int_equal(st.streams, 0);
	assert_int_equal(tl_rollup_emit_all(r, rows, 4), 0);
	assert_int_equal(tl_rollup_delta_create(c, &d), 0);
	assert_int_equal(tl_rollup_delta_add(d, 9, 0, "x", 1, "y", 1, false, false, false, 0), 0);
	len = tl_rollup_delta_save(d, buf, sizeof(buf));
	assert_int_equal(tl_rollup_merge(r, buf, (size_t)len, 1), 0);
	assert_int_equal(tl_rollup_emit_all(r, rows, 4), 1);
	assert_int_equal(rows[0].count, 1);
	tl_rollup_delta_free(d);
}

static void
test_rollup_load_malformed_ebadmsg_still_usable(void **state)
{
	struct tl_rollup_conf c, other;
	uint8_t img[2048], bad[2048];
	struct tl_rollup *r, *r2;
	size_t len, cell0;
	struct tl_rollup_row rows[4];

	(void)state;
	len = state_image(img, sizeof(img), &c);
	assert_int_equal(tl_rollup_create(&c, &r), 0);
	assert_int_equal(tl_rollup_load(r, img, len), 0);
	assert_int_equal(tl_rollup_emit_all(r, rows, 4), 3);
	assert_true(rows[0].correction); /* the pending correction first */
	assert_string_equal(rows[0].event_type, "Task");
	assert_int_equal(rows[1].window_ns, 20 * SEC);
	assert_int_equal(rows[2].window_ns, 30 * SEC);
	/* documented layout: header, 2 streams of 24 bytes, then cells */
	assert_memory_equal(img, "TLRS", 4);
	assert_int_equal(get64(img + 8), 10 * SEC);
	assert_int_equal(get64(img + 16), 10 * SEC); /* the mark: [0,10) was emitted */
	cell0 = 40 + 2 * 24;
	assert_int_equal(get64(img + cell0), 20 * SEC);
	assert_int_equal(tl_rollup_load(r, NULL, 0), -EBADMSG);
	for (size_t n = 0; n < len; n++) {
		assert_int_equal(tl_rollup_load(r, img, n), -EBADMSG);
		assert_empty_and_usable(r, &c);
	}
	for (size_t i = 0; i < len; i++) {
		memcpy(bad, img, len);
		bad[i] ^= 0x5a;
		assert_int_equal(tl_rollup_load(r, bad, len), -EBADMSG);
	}
	assert_empty_and_usable(r, &c);
	/* well sealed but wrong: each edit below is resealed */
	const size_t cell1 = cell0 + 67, cell2 = cell1 + 67;
	const struct edit edits[] = {
	        {4, 4, 2},                /* version */
	        {16, 8, 1},               /* mark not a window end */
	        {36, 4, 1},               /* reserved */
	        {24, 4, 3},               /* n_streams: a cell read as a stream */
	        {28, 4, 3},               /* n_open: one record more than there is */
	        {32, 4, 0},               /* n_pending: bytes left over */
	        {cell0, 8, 20 * SEC + 1}, /* window not aligned */
	        {cell0 + 8, 8, 0},        /* count 0 */
	        {cell0 + 16, 8, 9},       /* errors > count */
	        {cell0 + 24, 8, 9},       /* late > count */
	        {cell0 + 32, 8, 9},       /* dur_count > count */
	        {cell0 + 48, 4, 1},       /* a bucket listed: it eats the keys */
	        {cell0 + 52, 1, 1},       /* correction flag on an open cell */
	        {cell0 + 53, 1, 64},      /* type_len over the maximum */
	        {cell2 + 52, 1, 3},       /* unknown flag on a pending cell */
	        {40, 8, 5},               /* stream 6 -> 5: a duplicate id */
	        {cell1, 8, 20 * SEC},     /* the first cell's key again */
	};
	assert_int_equal(len, cell2 + 55 + 4 + 8 + 8);
	assert_int_equal(img[cell2 + 52], 1);
	for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
		memcpy(bad, img, len);
		apply(bad, &edits[i]);
		assert_memory_not_equal(bad, img, len); /* the edit changes something */
		reseal(bad, len);
		assert_int_equal(tl_rollup_load(r, bad, len), -EBADMSG);
		assert_empty_and_usable(r, &c);
	}
	/* one byte appended */
	memcpy(bad, img, len);
	bad[len] = 0;
	reseal(bad, len + 1);
	assert_int_equal(tl_rollup_load(r, bad, len + 1), -EBADMSG);
	/* another window */
	other = c;
	other.window_ns = 20 * SEC;
	assert_int_equal(tl_rollup_create(&other, &r2), 0);
	assert_int_equal(tl_rollup_load(r2, img, len), -EBADMSG);
	tl_rollup_free(r2);
	/* a delta is not a state */
	memcpy(bad, img, len);
	memcpy(bad, "TLRD", 4);
	reseal(bad, len);
	assert_int_equal(tl_rollup_load(r, bad, len), -EBADMSG);
	tl_rollup_free(r);
}

static void
test_rollup_load_larger_than_tables_enospc_unchanged(void **state)
{
	struct tl_rollup_conf c, small;
	uint8_t img[2048];
	struct tl_rollup *r;
	struct tl_rollup_stats st;
	struct tl_rollup_row rows[4];
	size_t len;
	struct sim s;

	(void)state;
	len = state_image(img, sizeof(img), &c); /* 2 streams, 2 open, 1 pending */
	small = c;
	small.max_cells = 1;
	small.delta_cells = 1;
	sim_init(&s, &small, 4);
	sim_event(&s, 1, 0, "keep", "me", false, false, 0);
	sim_flush(&s);
	assert_int_equal(tl_rollup_load(s.r, img, len), -ENOSPC);
	tl_rollup_stats(s.r, &st);
	assert_int_equal(st.cells, 1);
	assert_int_equal(st.streams, 1);
	assert_int_equal(tl_rollup_emit_all(s.r, rows, 4), 1);
	assert_string_equal(rows[0].event_type, "keep");
	sim_free(&s);
	small = c;
	small.max_streams = 1;
	assert_int_equal(tl_rollup_create(&small, &r), 0);
	assert_int_equal(tl_rollup_load(r, img, len), -ENOSPC);
	tl_rollup_free(r);
	small = c;
	small.max_cells = 2; /* 2 open fit, and the pending one in the other half */
	small.delta_cells = 2;
	assert_int_equal(tl_rollup_create(&small, &r), 0);
	assert_int_equal(tl_rollup_load(r, img, len), 0);
	tl_rollup_free(r);
}

/* A delta of 2 streams and 2 cells; the first cell has durations in buckets 1 and 6. */
static size_t
delta_image(uint8_t *buf, size_t cap, const struct tl_rollup_conf *c)
{
	struct tl_rollup_delta *d;
	long len;

	assert_int_equal(tl_rollup_delta_create(c, &d), 0);
	assert_int_equal(
	        tl_rollup_delta_add(d, 5, 3 * SEC, "JobEnd", 6, "orders", 6, true, false, true, 1),
	        0);
	assert_int_equal(
	        tl_rollup_delta_add(d, 5, 4 * SEC, "JobEnd", 6, "orders", 6, false, true, true, 40),
	        0);
	assert_int_equal(tl_rollup_delta_add(
	                         d, 6, 14 * SEC, "JobEnd", 6, "orders", 6, false, false, false, 0),
	        0);
	len = tl_rollup_delta_save(d, buf, cap);
	assert_true(len > 0);
	tl_rollup_delta_free(d);
	return (size_t)len;
}

static void
test_rollup_merge_malformed_ebadmsg_nothing_merged(void **state)
{
	struct tl_rollup_conf c = conf_make(10, 0, 60), other;
	uint8_t img[2048], bad[2048];
	struct tl_rollup *r, *r2;
	struct tl_rollup_stats st;
	struct tl_rollup_row rows[4];
	size_t len, cell0 = 24 + 2 * 16;

	(void)state;
	len = delta_image(img, sizeof(img), &c);
	/* documented layout */
	assert_memory_equal(img, "TLRD", 4);
	assert_int_equal(get64(img + 8), 10 * SEC);
	assert_int_equal(get64(img + 24), 5);
	assert_int_equal(get64(img + 32), 4 * SEC);
	assert_int_equal(get64(img + cell0 + 8), 2);
	assert_int_equal(img[cell0 + 48], (1u << 1) | (1u << 6));
	assert_int_equal(len, cell0 + (55 + 16 + 12) + (55 + 12) + 8);
	assert_int_equal(tl_rollup_create(&c, &r), 0);
	for (size_t n = 0; n < len; n++)
		assert_int_equal(tl_rollup_merge(r, img, n, 1), -EBADMSG);
	for (size_t i = 0; i < len; i++) {
		memcpy(bad, img, len);
		bad[i] ^= 0x01;
		assert_int_equal(tl_rollup_merge(r, bad, len, 1), -EBADMSG);
	}
	const struct edit edits[] = {
	        {4, 4, 2},            /* version */
	        {16, 4, 3},           /* n_streams: a cell read as streams */
	        {16, 4, 0xffffffffu}, /* n_streams beyond the buffer */
	        {20, 4, 3},           /* n_cells: one more than there is */
	        {20, 4, 1},           /* n_cells: bytes left over */
	        {cell0, 8, 3 * SEC},  /* window not aligned */
	        {cell0 + 8, 8, 0},    /* count 0 */
	        {cell0 + 16, 8, 3},   /* errors > count */
	        {cell0 + 24, 8, 3},   /* late > count */
	        {cell0 + 32, 8, 3},   /* dur_count > count */
	        {cell0 + 32, 8, 1},   /* buckets do not sum to dur_count */
	        {cell0 + 52, 8, 0},   /* a listed bucket of 0 */
	        {cell0 + 52, 8, 2},   /* buckets sum above dur_count */
	        {cell0 + 68, 1, 1},   /* flags in a delta */
	        {cell0 + 69, 1, 64},  /* type_len over the maximum */
	};
	for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
		memcpy(bad, img, len);
		apply(bad, &edits[i]);
		assert_memory_not_equal(bad, img, len); /* the edit changes something */
		reseal(bad, len);
		assert_int_equal(tl_rollup_merge(r, bad, len, 1), -EBADMSG);
	}
	memcpy(bad, img, len);
	bad[len] = 0;
	reseal(bad, len + 1);
	assert_int_equal(tl_rollup_merge(r, bad, len + 1, 1), -EBADMSG);
	memcpy(bad, img, len);
	memcpy(bad, "TLRS", 4);
	reseal(bad, len);
	assert_int_equal(tl_rollup_merge(r, bad, len, 1), -EBADMSG);
	assert_int_equal(tl_rollup_merge(r, NULL, 0, 1), -EBADMSG);
	tl_rollup_stats(r, &st);
	assert_int_equal(st.merged_cells, 0);
	assert_int_equal(st.cells, 0);
	assert_int_equal(st.streams, 0);
	/* another window is refused */
	other = c;
	other.window_ns = 20 * SEC;
	assert_int_equal(tl_rollup_create(&other, &r2), 0);
	assert_int_equal(tl_rollup_merge(r2, img, len, 1), -EBADMSG);
	tl_rollup_free(r2);
	/* the original merges */
	assert_int_equal(tl_rollup_merge(r, img, len, 1), 0);
	assert_int_equal(tl_rollup_emit_all(r, rows, 4), 2);
	assert_int_equal(rows[0].count, 2);
	assert_int_equal(rows[0].errors, 1);
	assert_int_equal(rows[0].late, 1);
	assert_int_equal(rows[0].duration_sum_ms, 41);
	assert_int_equal(rows[0].hist[1], 1);
	assert_int_equal(rows[0].hist[6], 1);
	tl_rollup_free(r);
}

static void
collect_stream(void *arg, uint64_t stream, int64_t max_ns)
{
	uint64_t *v = arg;

	v[v[0] * 2 + 1] = stream;
	v[v[0] * 2 + 2] = (uint64_t)max_ns;
	v[0]++;
}

static void
test_rollup_streams_full_least_recent_evicted(void **state)
{
	struct tl_rollup_conf c = conf_make(10, 0, 60);
	struct tl_rollup_stats st;
	uint64_t seen[16] = {0};
	int64_t max;
	struct sim s;

	(void)state;
	c.max_streams = 2;
	sim_init(&s, &c, 4);
	sim_event(&s, 1, 10 * SEC, "a", "b", false, false, 0);
	sim_flush(&s);
	sim_event(&s, 2, 20 * SEC, "a", "b", false, false, 0);
	sim_flush(&s);
	sim_event(&s, 1, 11 * SEC, "a", "b", false, false, 0);
	sim_flush(&s); /* 2 is the least recent */
	sim_event(&s, 3, 30 * SEC, "a", "b", false, false, 0);
	sim_flush(&s);
	tl_rollup_stats(s.r, &st);
	assert_int_equal(st.streams, 2);
	assert_int_equal(st.evicted, 1);
	assert_false(tl_rollup_stream_max(s.r, 2, &max));
	assert_true(tl_rollup_stream_max(s.r, 1, &max));
	assert_int_equal(max, 11 * SEC);
	assert_true(tl_rollup_stream_max(s.r, 3, &max));
	assert_int_equal(max, 30 * SEC);
	/* least recently seen first */
	tl_rollup_streams(s.r, collect_stream, seen);
	assert_int_equal(seen[0], 2);
	assert_int_equal(seen[1], 1);
	assert_int_equal(seen[2], 11 * SEC);
	assert_int_equal(seen[3], 3);
	assert_int_equal(seen[4], 30 * SEC);
	/* the watermark is the minimum of the streams kept: 11 s */
	sim_emit(&s);
	tl_rollup_stats(s.r, &st);
	assert_int_equal(st.watermark_ns, 11 * SEC);
	sim_free(&s);
}

static void
test_rollup_stats_counts_as_documented(void **state)
{
	struct tl_rollup_conf c = conf_make(10, 0, 60);
	struct tl_rollup_stats st;
	struct sim s;

	(void)state;
	c.max_cells = 2;
	c.delta_cells = 2;
	sim_init(&s, &c, 16);
	tl_rollup_stats(s.r, &st);
	assert_int_equal(st.streams, 0);
	assert_int_equal(st.cells, 0);
	assert_int_equal(st.watermark_ns, INT64_MIN);
	assert_true(st.memory_bytes >= 4 * sizeof(struct tl_rollup_row)); /* 2 x 2 cells */
	assert_int_equal(st.merged_cells + st.rows_emitted + st.corrections + st.forced, 0);
	sim_event(&s, 1, 1 * SEC, "a", "x", false, false, 0);
	sim_event(&s, 1, 2 * SEC, "b", "x", false, false, 0);
	sim_flush(&s);
	sim_event(&s, 2, 15 * SEC, "a", "x", false, false, 0); /* forces [0,10): 2 cells */
	sim_event(&s, 2, 3 * SEC, "c", "x", false, false, 0);  /* a correction */
	sim_flush(&s);
	tl_rollup_stats(s.r, &st);
	assert_int_equal(st.streams, 2);
	assert_int_equal(st.cells, 4);
	assert_int_equal(st.merged_cells, 4);
	assert_int_equal(st.forced, 2);
	assert_int_equal(sim_emit(&s), 3); /* watermark 2 s: only the pending rows */
	tl_rollup_stats(s.r, &st);
	assert_int_equal(st.watermark_ns, 2 * SEC);
	assert_int_equal(st.rows_emitted, 3);
	assert_int_equal(st.corrections, 1);
	assert_int_equal(st.cells, 1);
	assert_int_equal(st.evicted, 0);
	sim_free(&s);
}

/* The Spark event log in shared/data as one stream with its own timestamps. */
static bool
json_num(const char *line, const char *key, int64_t *v)
{
	const char *p = strstr(line, key);

	if (p == NULL)
		return false;
	*v = strtoll(p + strlen(key), NULL, 10);
	return true;
}

static void
test_rollup_spark_event_log_totals_no_corrections(void **state)
{
	struct tl_rollup_conf c = conf_make(10, 30, 60);
	char path[1024], *line = NULL, type[128];
	size_t line_cap = 0;
	struct tl_rollup_stats st;
	int64_t t = 0, v = 0, launch = 0;
	uint64_t events = 0, errors = 0, durs = 0, dur_sum = 0, got_errors = 0, got_dur = 0;
	uint64_t got = 0, got_sum = 0;
	FILE *f;
	struct sim s;

	(void)state;
	snprintf(path, sizeof(path), "%s/spark-eventlog/complex_dec_eventlog", data_dir());
	f = fopen(path, "r");
	if (f == NULL)
		fail_msg("cannot open %s (set TAPLINE_DATA)", path);
	c.delta_cells = 8;
	sim_init(&s, &c, 16);
	while (getline(&line, &line_cap, f) > 0) {
		const char *p = strstr(line, "\"Event\":\"");
		bool is_task_end, err, has_dur;
		size_t n;

		assert_non_null(p);
		p += 9;
		n = strcspn(p, "\"");
		assert_true(n < sizeof(type));
		memcpy(type, p, n);
		type[n] = '\0';
		is_task_end = strcmp(type, "SparkListenerTaskEnd") == 0;
		/* event time in ms: the field that says when this event happened */
		if ((is_task_end && json_num(line, "\"Finish Time\":", &v)) ||
		        json_num(line, "\"Launch Time\":", &v) ||
		        json_num(line, "\"Completion Time\":", &v) ||
		        json_num(line, "\"Submission Time\":", &v) ||
		        json_num(line, "\"Timestamp\":", &v) || json_num(line, "\"time\":", &v))
			t = v * MS;
		err = (is_task_end && strstr(line, "\"Reason\":\"Success\"") == NULL) ||
		      strstr(line, "\"Result\":\"JobFailed\"") != NULL;
		has_dur = is_task_end && json_num(line, "\"Launch Time\":", &launch);
		sim_event(&s, 77, t, type, "default", err, has_dur,
		        has_dur ? (uint64_t)(v - launch) : 0);
		events++;
		errors += err;
		durs += has_dur;
		dur_sum += has_dur ? (uint64_t)(v - launch) : 0;
		s.now += 10 * MS;
		if (events % 16 == 0)
			sim_emit(&s);
	}
	fclose(f);
	free(line);
	sim_finish(&s);
	/* README: 187 events; job 17 fails (one failed task, one failed job) */
	assert_int_equal(events, 187);
	assert_int_equal(errors, 2);
	assert_int_equal(durs, 36);
	assert_int_equal(s.late, 0);
	for (size_t i = 0; i < s.out.n; i++) {
		const struct tl_rollup_row *r = &s.out.v[i];

		assert_false(r->correction);
		assert_string_equal(r->database, "default");
		got += r->count;
		got_errors += r->errors;
		got_dur += r->dur_count;
		got_sum += r->duration_sum_ms;
		/* each (window, type) once */
		for (size_t j = 0; j < i; j++)
			assert_false(s.out.v[j].window_ns == r->window_ns &&
			             strcmp(s.out.v[j].event_type, r->event_type) == 0);
	}
	assert_int_equal(got, events);
	assert_int_equal(got_errors, errors);
	assert_int_equal(got_dur, durs);
	assert_int_equal(got_sum, dur_sum);
	tl_rollup_stats(s.r, &st);
	assert_int_equal(st.corrections, 0);
	assert_int_equal(st.forced, 0);
	sim_free(&s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_conf_defaults_as_documented),
	        cmocka_unit_test(test_check_out_of_range_rejected),
	        cmocka_unit_test(test_create_bad_conf_einval),
	        cmocka_unit_test(test_watermark_behind_lateness_flagged_late),
	        cmocka_unit_test(test_watermark_table_full_least_recent_evicted),
	        cmocka_unit_test(test_watermark_seed_known_max_late_detected),
	        cmocka_unit_test(test_delta_full_enospc_fits_agrees),
	        cmocka_unit_test(test_delta_long_keys_truncated),
	        cmocka_unit_test(test_delta_save_small_buffer_enospc),
	        cmocka_unit_test(test_window_negative_times_floored),
	        cmocka_unit_test(test_hist_bucket_edges_counted),
	        cmocka_unit_test(test_p95_histogram_upper_bound),
	        cmocka_unit_test(test_rollup_in_order_window_emitted_once),
	        cmocka_unit_test(test_rollup_late_events_rows_corrections),
	        cmocka_unit_test(test_rollup_slow_stream_holds_watermark_until_idle),
	        cmocka_unit_test(test_rollup_emit_max_rows_rest_next_call),
	        cmocka_unit_test(test_rollup_table_full_oldest_forced_then_corrections),
	        cmocka_unit_test(test_rollup_pending_rows_fill_table_merge_enospc),
	        cmocka_unit_test(test_rollup_random_events_any_table_size_totals_equal),
	        cmocka_unit_test(test_rollup_restart_mid_stream_same_rows),
	        cmocka_unit_test(test_rollup_load_malformed_ebadmsg_still_usable),
	        cmocka_unit_test(test_rollup_load_larger_than_tables_enospc_unchanged),
	        cmocka_unit_test(test_rollup_merge_malformed_ebadmsg_nothing_merged),
	        cmocka_unit_test(test_rollup_streams_full_least_recent_evicted),
	        cmocka_unit_test(test_rollup_stats_counts_as_documented),
	        cmocka_unit_test(test_rollup_spark_event_log_totals_no_corrections),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
