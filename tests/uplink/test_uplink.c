/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The uplink thread against a real ClickHouse: events encoded by the real encoder
 * (realistic ones from the corpus, short hand-written ones where a test needs to know
 * every byte), committed to a real spool (nosync, in a mkdtemp folder), drained by
 * tl_uplink and counted in ClickHouse by table, batch id and event id.
 *
 * Faults: tables missing or short of a column; a batch whose rows were corrupted after
 * sealing (a String length prefix pointing past the end of the batch: ClickHouse answers
 * code 33 for any range of rows that holds it), which must be bisected; a batch found in
 * ClickHouse already (delivered by a process that died before its ack was durable, or
 * half way through a bisection); ClickHouse stopped while records wait.
 *
 * Exits 77 (skip) when no ClickHouse server can be started.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "tl_batch.h"
#include "tl_corpus.h"
#include "tl_ddl.h"
#include "tl_encode.h"
#include "tl_error.h"
#include "tl_json.h"
#include "tl_opt.h"
#include "tl_spool.h"
#include "tl_test_ch_http.h"
#include "tl_test_clickhouse.h"
#include "tl_test_schema.h"
#include "tl_uplink.h"

#define APPL "edge-up"
#define MS 1000000ull
#define SEC 1000000000ull
#define DRAIN (180 * SEC)
/* A two-byte LEB128 length: 16383, longer than any batch the poisoning tests make. */
#define POISON_LEN 2097151u

static struct tl_test_ch ch;
static struct tl_corpus *corpus;
static struct tl_schema *schema;

/* ---- ClickHouse over plain HTTP (the test's own client, not the one under test) ---- */

/* POST through the tests' own client (tests/common/tl_test_ch_http.h). */
static long
ch_post(const char *query, const void *body, size_t len, struct tl_test_http *out)
{
	return tl_test_ch_post(&ch, query, body, len, false, out);
}

/* Run a statement; fail unless it succeeds. Returns the reply (caller frees). */
static char *sql(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *
sql(const char *fmt, ...)
{
	char q[8192];
	struct tl_test_http r;
	va_list ap;
	long code;

	va_start(ap, fmt);
	vsnprintf(q, sizeof(q), fmt, ap);
	va_end(ap);
	code = ch_post(NULL, q, strlen(q), &r);
	if (code != 200)
		fail_msg("HTTP %ld for %s\n%s", code, q, r.p);
	return r.p;
}

static uint64_t sql_u64(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static uint64_t
sql_u64(const char *fmt, ...)
{
	char q[8192], *r;
	uint64_t v;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(q, sizeof(q), fmt, ap);
	va_end(ap);
	r = sql("%s", q);
	v = strtoull(r, NULL, 10);
	free(r);
	return v;
}

static void
hex(const uint8_t *p, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02X", p[i]);
	out[2 * n] = '\0';
}

/* ---- sealed batches ---- */

struct batch {
	uint8_t *data;
	size_t len;
	int table;
	uint32_t rows;
	uint64_t id;
};

struct batches {
	struct batch *b;
	size_t n, cap;
	uint64_t rows[TL_BATCH_EVENT_TABLES];
};

/* One encoder per table, as a worker has. */
struct enc {
	struct tl_encoder *e[TL_BATCH_EVENT_TABLES];
	uint8_t *buf;
	size_t cap;
	struct tl_event *ev;
	int64_t now;
};

/* The route stamped into test batches (0: the default route). */
static uint32_t batch_route;

static void
enc_init(struct enc *x, uint32_t batch_rows, int codec)
{
	memset(x, 0, sizeof(*x));
	for (int t = 0; t < TL_BATCH_EVENT_TABLES; t++) {
		struct tl_encode_conf c = {
		        .appliance_id = APPL,
		        .producer = 0,
		        .batch_rows = batch_rows,
		        .batch_bytes = 256 * 1024,
		        .codec = codec,
		        .gzip_level = 1,
		        .route = batch_route,
		};

		assert_int_equal(
		        tl_encoder_create(schema, (enum tl_batch_table)t, &c, &x->e[t]), 0);
		if (tl_encode_seal_max(x->e[t]) > x->cap)
			x->cap = tl_encode_seal_max(x->e[t]);
	}
	x->buf = malloc(x->cap);
	x->ev = calloc(1, sizeof(*x->ev));
	assert_non_null(x->buf);
	assert_non_null(x->ev);
	x->now = 1760000000000000000ll;
}

static void
enc_seal(struct enc *x, int t, struct batches *out)
{
	struct tl_batch_view v;
	struct batch *b;
	size_t len;

	if (tl_encode_pending(x->e[t]) == 0)
		return;
	assert_int_equal(tl_encode_seal(x->e[t], x->buf, x->cap, &len), 0);
	assert_int_equal(tl_batch_parse(x->buf, len, &v), 0);
	if (out->n == out->cap) {
		out->cap = out->cap ? 2 * out->cap : 64;
		out->b = realloc(out->b, out->cap * sizeof(*out->b));
		assert_non_null(out->b);
	}
	b = &out->b[out->n++];
	b->data = malloc(len);
	assert_non_null(b->data);
	memcpy(b->data, x->buf, len);
	b->len = len;
	b->table = t;
	b->rows = v.hdr.rows;
	b->id = v.hdr.batch_id;
	out->rows[t] += v.hdr.rows;
}

/* Extract and encode one NDJSON line; seal the batch it fills. */
static void
enc_add(struct enc *x, const uint8_t *line, uint32_t len, struct batches *out)
{
	enum tl_reason verdict = tl_json_extract(schema, line, len, x->ev);
	int t = tl_encode_table_for(x->ev, verdict);
	int rc;

	x->now += 1000003;
	for (int attempt = 0;; attempt++) {
		rc = t == TL_BATCH_DEAD_LETTER ? tl_encode_reject(x->e[t], x->ev, verdict, x->now)
		                               : tl_encode_event(x->e[t], x->ev, x->now);
		if (rc != -ENOBUFS || attempt > 0)
			break;
		enc_seal(x, t, out);
	}
	assert_true(rc == 0 || rc == 1);
	if (rc == 1)
		enc_seal(x, t, out);
}

static void
enc_flush(struct enc *x, struct batches *out)
{
	for (int t = 0; t < TL_BATCH_EVENT_TABLES; t++)
		enc_seal(x, t, out);
}

static void
enc_free(struct enc *x)
{
	for (int t = 0; t < TL_BATCH_EVENT_TABLES; t++)
		tl_encoder_free(x->e[t]);
	free(x->buf);
	free(x->ev);
}

static void
batches_free(struct batches *bs)
{
	for (size_t i = 0; i < bs->n; i++)
		free(bs->b[i].data);
	free(bs->b);
	memset(bs, 0, sizeof(*bs));
}

/* How test batches are stored: corpus batches gzip'd, hand-written ones as they are. */
static int corpus_codec = TL_BATCH_CODEC_GZIP;
static int hand_codec = TL_BATCH_CODEC_NONE;


/* @p n realistic events (30 % of queries fail, 10 % malformed) in batches of 64 rows. */
static void
corpus_batches(size_t n, uint64_t seed, struct batches *out)
{
	struct tl_corpus_conf cf;
	struct tl_corpus_gen *g;
	struct enc x;

	enc_init(&x, 64, corpus_codec);
	tl_corpus_conf_defaults(&cf);
	cf.seed = seed;
	cf.error_share = 0.3;
	cf.malformed_share = 0.1;
	assert_int_equal(tl_corpus_gen_create(corpus, &cf, &g), 0);
	for (size_t i = 0; i < n; i++) {
		struct tl_corpus_event ce;

		assert_int_equal(tl_corpus_next(g, &ce), 0);
		enc_add(&x, ce.data, ce.len, out);
	}
	enc_flush(&x, out);
	tl_corpus_gen_free(g);
	enc_free(&x);
}

/*
 * One uncompressed batch of @p rows short hand-written events for @p table (dead_letter:
 * malformed lines), query ids "<tag>-<row>". @return its index in @p out.
 */
static size_t
hand_batch(int table, uint32_t rows, const char *tag, struct batches *out)
{
	struct enc x;
	char line[512];

	enc_init(&x, rows, hand_codec);
	for (uint32_t i = 0; i < rows; i++) {
		int n;

		if (table == TL_BATCH_DEAD_LETTER)
			n = snprintf(line, sizeof(line),
			        "{\"query_id\":\"%s-%03u\",\"event_type\":", tag, i);
		else
			n = snprintf(line, sizeof(line),
			        "{\"query_id\":\"%s-%03u\",\"event_type\":\"query_end\","
			        "\"timestamp\":\"2025-03-01T10:%02u:%02u.%03uZ\",\"metadata\":{"
			        "\"duration_ms\":%u%s}}",
			        tag, i, i / 60, i % 60, i, 10 * i,
			        table == TL_BATCH_ERROR_EVENTS ? ",\"error\":\"boom\"" : "");
		enc_add(&x, (const uint8_t *)line, (uint32_t)n, out);
	}
	enc_flush(&x, out);
	enc_free(&x);
	assert_int_equal(out->b[out->n - 1].table, table);
	assert_int_equal(out->b[out->n - 1].rows, rows);
	return out->n - 1;
}

/* The uncompressed body of a batch (must not be gzip'd) and its row bounds. */
static uint8_t *
body_of(struct batch *b, struct tl_batch_view *v)
{
	assert_int_equal(tl_batch_parse(b->data, b->len, v), 0);
	assert_int_equal(v->hdr.flags & TL_BATCH_F_GZIP, 0);
	return b->data + (v->body - b->data);
}

/*
 * Corrupt row @p row of @p b: the LEB128 length of the String at @p at bytes into the
 * row (one byte long) and the two bytes after it become 0xFF 0xFF 0x7F (POISON_LEN,
 * 2 MiB), which runs past the end of everything a test spools, so any insert that holds
 * this row is refused ("Cannot read all data") however many records share it: a shorter
 * bad length could swallow the rows after it and parse (rows silently gone). The batch's bytes stay the same length and no checksum is
 * recomputed: the spool record carries them as they are.
 * @param raw  out: hex of the corrupted row (what dead_letter.raw must hold).
 */
static void
poison(struct batch *b, uint32_t row, uint32_t at, char *raw)
{
	struct tl_batch_view v;
	uint8_t *body = body_of(b, &v);
	uint32_t s = tl_batch_row_start(&v, row), e = tl_batch_row_end(&v, row);

	assert_true(body[s + at] < 0x80 && s + at + 3 < e);
	body[s + at] = 0xFF;
	body[s + at + 1] = 0xFF;
	body[s + at + 2] = 0x7F;
	hex(body + s, e - s, raw);
}

/* ---- spool ---- */

struct sp {
	char dir[64];
	struct tl_spool_conf conf;
	struct tl_spool *sp;
};

static void
spool_open(struct sp *x)
{
	memset(x, 0, sizeof(*x));
	snprintf(x->dir, sizeof(x->dir), "/tmp/tl_uplink_XXXXXX");
	assert_non_null(mkdtemp(x->dir));
	assert_int_equal(tl_opt_defaults(tl_spool_opts, &x->conf), 0);
	snprintf(x->conf.path, sizeof(x->conf.path), "%s", x->dir);
	x->conf.initial_size = 8 << 20;
	x->conf.max_size = 256 << 20;
	x->conf.buffer_size = 1 << 20;
	x->conf.buffers = 16;
	x->conf.commit_interval_ns = 1 * MS;
	x->conf.nosync = true;
	assert_int_equal(tl_spool_open(&x->conf, 1, 0, NULL, NULL, &x->sp), 0);
}

static void
spool_put(struct sp *x, const struct batch *b)
{
	struct tl_spool_buf *buf;

	while ((buf = tl_spool_buf_get(x->sp, 0)) == NULL)
		assert_int_equal(tl_spool_flush(x->sp, 30 * SEC), 0);
	assert_true(b->len <= buf->cap);
	memcpy(buf->data, b->data, b->len);
	buf->len = (uint32_t)b->len;
	assert_int_equal(tl_spool_buf_put(x->sp, 0, buf), 0);
}

static void
spool_put_all(struct sp *x, const struct batches *bs)
{
	for (size_t i = 0; i < bs->n; i++)
		spool_put(x, &bs->b[i]);
	assert_int_equal(tl_spool_flush(x->sp, 30 * SEC), 0);
}

static uint64_t
spool_records(struct sp *x)
{
	struct tl_spool_stats ss;

	assert_int_equal(tl_spool_flush(x->sp, 30 * SEC), 0);
	tl_spool_stats(x->sp, &ss);
	return ss.records;
}

static void
spool_close(struct sp *x)
{
	char f[128];

	tl_spool_close(x->sp);
	x->sp = NULL;
	snprintf(f, sizeof(f), "%s/data.mdb", x->dir);
	unlink(f);
	snprintf(f, sizeof(f), "%s/lock.mdb", x->dir);
	unlink(f);
	snprintf(f, sizeof(f), "%s/writer.lock", x->dir);
	unlink(f);
	rmdir(x->dir);
}

/* ---- uplink ---- */

/* false: corrupt rows reach ClickHouse, so its refusals and the bisection are tested. */
static bool verify_rows = true;
/* The wire codec: auto (gzip on 18.16: whole INSERTs) or none / lz4 (streamed INSERTs). */
static int codec = TL_CH_COMPRESS_AUTO;

static void
up_conf(struct tl_uplink_conf *c, const char *db)
{
	assert_int_equal(tl_opt_defaults(tl_uplink_opts, c), 0);
	snprintf(c->url, sizeof(c->url), "%s?database=%s", ch.url, db);
	c->backoff_initial = 20 * MS;
	c->backoff_max = 300 * MS;
	c->max_in_flight = 4;
	c->connect_timeout = 2 * SEC;
	c->timeout = 30 * SEC;
	c->verify_rows = verify_rows;
	c->compression = codec;
}

static struct tl_uplink *
up_start(const char *db, struct sp *x)
{
	struct tl_uplink_conf c;
	struct tl_uplink *u = NULL;

	up_conf(&c, db);
	assert_int_equal(tl_uplink_start(&c, schema, x->sp, &u), 0);
	assert_int_equal(tl_uplink_set_appliance_id(u, APPL), 0);
	return u;
}

static void
wait_connected(struct tl_uplink *u)
{
	struct tl_uplink_stats st;

	for (int i = 0; i < 6000; i++) {
		tl_uplink_stats(u, &st);
		if (st.connected)
			return;
		usleep(10000);
	}
	fail_msg("the uplink never applied its DDL");
}

static uint64_t
rows_in(const char *db, int t)
{
	return sql_u64("SELECT count() FROM `%s`.`%s`", db, tl_batch_table_name((unsigned)t));
}

/* Every table holds @p want rows, and no event id is there twice. */
static void
check_tables(const char *db, const uint64_t *want)
{
	uint64_t n[TL_BATCH_EVENT_TABLES], uniq;

	for (int t = 0; t < TL_BATCH_EVENT_TABLES; t++) {
		n[t] = rows_in(db, t);
		if (n[t] != want[t])
			fail_msg("%s.%s: %llu rows, expected %llu", db,
			        tl_batch_table_name((unsigned)t), (unsigned long long)n[t],
			        (unsigned long long)want[t]);
	}
	uniq = sql_u64("SELECT uniqExact(event_id) FROM (SELECT event_id FROM `%s`.sink_output "
	               "UNION ALL SELECT event_id FROM `%s`.error_events)",
	        db, db);
	assert_int_equal(uniq, n[TL_BATCH_SINK_OUTPUT] + n[TL_BATCH_ERROR_EVENTS]);
}

static uint64_t
batch_rows_in(const char *db, int t, uint64_t id)
{
	return sql_u64("SELECT count() FROM `%s`.`%s` WHERE batch_id = %llu", db,
	        tl_batch_table_name((unsigned)t), (unsigned long long)id);
}

/* Insert some of @p b's rows straight into its table, as a previous process would have. */
static void
pre_insert(const char *db, struct batch *b, const bool *skip)
{
	struct tl_batch_view v;
	uint8_t *raw = NULL, *out;
	const uint8_t *body;
	char q[16384];
	struct tl_test_http r;
	size_t len = 0;

	assert_int_equal(tl_batch_parse(b->data, b->len, &v), 0);
	raw = malloc(v.raw_len);
	out = malloc(v.raw_len);
	assert_non_null(raw);
	assert_non_null(out);
	assert_int_equal(tl_batch_inflate(&v, raw, v.raw_len, &body), 0);
	for (uint32_t i = 0; i < v.hdr.rows; i++) {
		uint32_t s = tl_batch_row_start(&v, i), e = tl_batch_row_end(&v, i);

		if (skip && skip[i])
			continue;
		memcpy(out + len, body + s, e - s);
		len += e - s;
	}
	assert_true(tl_ddl_insert(schema, (enum tl_batch_table)b->table, db, q, sizeof(q)) > 0);
	if (ch_post(q, out, len, &r) != 200)
		fail_msg("pre-insert: %s", r.p);
	free(r.p);
	free(out);
	free(raw);
}

/* ---- tests without a server ---- */

static void
test_uplink_bad_arguments_einval(void **state)
{
	struct tl_uplink_conf c;
	struct tl_uplink_stats st;
	struct tl_uplink *u = (void *)1;
	struct sp x;

	(void)state;
	spool_open(&x);
	assert_int_equal(tl_opt_defaults(tl_uplink_opts, &c), 0);
	assert_int_equal(tl_uplink_start(NULL, schema, x.sp, &u), -EINVAL);
	assert_null(u);
	assert_int_equal(tl_uplink_start(&c, NULL, x.sp, &u), -EINVAL);
	assert_int_equal(tl_uplink_start(&c, schema, NULL, &u), -EINVAL);
	/* A URL the client refuses (credentials in it). */
	snprintf(c.url, sizeof(c.url), "http://user:secret@127.0.0.1:1/");
	assert_int_equal(tl_uplink_start(&c, schema, x.sp, &u), -EINVAL);
	assert_null(u);
	assert_int_equal(tl_uplink_set_appliance_id(NULL, "x"), -EINVAL);
	assert_int_equal(tl_uplink_set_statements(NULL, NULL, 0), -EINVAL);
	assert_null(tl_uplink_database(NULL));
	memset(&st, 0xab, sizeof(st));
	tl_uplink_stats(NULL, &st);
	assert_int_equal(st.inserts_ok, 0);
	assert_int_equal(st.latency_ns[39], 0);
	tl_uplink_stop(NULL);
	spool_close(&x);
}

/*
 * Statements run after the DDL, in order; one that fails (its table does not exist yet)
 * is retried with the whole set until it succeeds; a new set replaces the old one.
 */
static void
test_uplink_statements_retried_until_they_succeed(void **state)
{
	const char *first[] = {
	        "INSERT INTO tl_up_stmt_b.t VALUES (1)",
	        "INSERT INTO tl_up_stmt_b.t VALUES (2)",
	};
	const char *bad[] = {"SELECT 1", NULL};
	struct tl_uplink_stats st;
	struct tl_uplink *u;
	struct sp x;
	int i;

	(void)state;
	free(sql("DROP DATABASE IF EXISTS tl_up_stmt_b"));
	spool_open(&x);
	u = up_start("tl_up_stmt", &x);
	assert_int_equal(tl_uplink_set_statements(u, bad, 2), -EINVAL);
	assert_int_equal(tl_uplink_set_statements(u, NULL, 1), -EINVAL);
	assert_int_equal(tl_uplink_set_statements(u, first, 2), 0);
	wait_connected(u);
	/* It keeps failing: the table is not there. */
	for (i = 0; i < 6000; i++) {
		tl_uplink_stats(u, &st);
		if (st.statements_run == 0 && i > 50)
			break;
		usleep(10000);
	}
	tl_uplink_stats(u, &st);
	assert_int_equal(st.statements_run, 0);
	free(sql("CREATE DATABASE tl_up_stmt_b"));
	free(sql("CREATE TABLE tl_up_stmt_b.t (x UInt8) ENGINE = Memory"));
	for (i = 0; i < 6000; i++) {
		tl_uplink_stats(u, &st);
		if (st.statements_run >= 1)
			break;
		usleep(10000);
	}
	assert_int_equal(st.statements_run, 1);
	assert_int_equal(sql_u64("SELECT sum(x) FROM tl_up_stmt_b.t"), 3);
	/* A new set: run once more, in order. */
	assert_int_equal(tl_uplink_set_statements(u, first + 1, 1), 0);
	for (i = 0; i < 6000; i++) {
		tl_uplink_stats(u, &st);
		if (st.statements_run >= 2)
			break;
		usleep(10000);
	}
	assert_int_equal(st.statements_run, 2);
	assert_int_equal(sql_u64("SELECT sum(x) FROM tl_up_stmt_b.t"), 5);
	tl_uplink_stop(u);
	spool_close(&x);
	free(sql("DROP DATABASE tl_up_stmt_b"));
}

static void
test_uplink_server_down_at_start_nothing_acked(void **state)
{
	struct tl_uplink_conf c;
	struct tl_uplink_stats st;
	struct tl_uplink *u;
	struct batches bs = {0};
	struct sp x;

	(void)state;
	spool_open(&x);
	(void)hand_batch(TL_BATCH_SINK_OUTPUT, 5, "down", &bs);
	spool_put_all(&x, &bs);
	assert_int_equal(tl_opt_defaults(tl_uplink_opts, &c), 0);
	/* Port 1 on loopback: connection refused. */
	snprintf(c.url, sizeof(c.url), "http://127.0.0.1:1/?database=x");
	c.backoff_initial = 1 * MS;
	c.backoff_max = 5 * MS;
	assert_int_equal(tl_uplink_start(&c, schema, x.sp, &u), 0);
	assert_int_equal(tl_uplink_drain(u, 200 * MS), -ETIMEDOUT);
	tl_uplink_stats(u, &st);
	assert_int_equal(st.connected, 0);
	assert_int_equal(st.inserts_ok, 0);
	assert_int_equal(st.ddl_runs, 0);
	tl_uplink_stop(u);
	assert_int_equal(spool_records(&x), 1);
	spool_close(&x);
	batches_free(&bs);
}

/* ---- tests against ClickHouse ---- */

static void
test_uplink_tables_missing_created_every_row_lands_once(void **state)
{
	const char *db = "tl_up_fresh";
	struct batches a = {0}, b = {0};
	uint64_t want[TL_BATCH_EVENT_TABLES];
	struct tl_uplink_stats st;
	struct tl_uplink *u;
	struct sp x;

	(void)state;
	spool_open(&x);
	corpus_batches(600, 3, &a);
	assert_true(a.rows[TL_BATCH_SINK_OUTPUT] > 0 && a.rows[TL_BATCH_ERROR_EVENTS] > 0 &&
	            a.rows[TL_BATCH_DEAD_LETTER] > 0);
	/* Committed before the uplink starts: checked in ClickHouse before being sent. */
	spool_put_all(&x, &a);
	u = up_start(db, &x);
	assert_int_equal(tl_uplink_drain(u, DRAIN), 0);
	check_tables(db, a.rows);
	tl_uplink_stats(u, &st);
	for (int t = 0; t < TL_BATCH_EVENT_TABLES; t++)
		assert_int_equal(st.rows_delivered[t], a.rows[t]);
	assert_int_equal(st.records_delivered, a.n);
	assert_true(st.ddl_runs >= 1);
	assert_int_equal(st.connected, 1);
	assert_true(st.checks >= 1);
	assert_int_equal(st.rows_found, 0);
	assert_int_equal(st.rows_quarantined, 0);
	assert_int_equal(st.records_bisected, 0);
	assert_int_equal(st.inserts_rejected, 0);
	assert_int_equal(st.in_flight, 0);
	assert_true(st.bytes_sent > 0);

	/* Committed while it runs: sent without a check. */
	corpus_batches(400, 4, &b);
	spool_put_all(&x, &b);
	assert_int_equal(tl_uplink_drain(u, DRAIN), 0);
	for (int t = 0; t < TL_BATCH_EVENT_TABLES; t++)
		want[t] = a.rows[t] + b.rows[t];
	check_tables(db, want);
	tl_uplink_stats(u, &st);
	assert_int_equal(st.records_delivered, a.n + b.n);
	assert_int_equal(spool_records(&x), 0);
	/* No bisection, no probe table. */
	assert_int_equal(sql_u64("SELECT count() FROM system.tables WHERE database = '%s' AND "
	                         "name LIKE '\\\\_tapline%%'",
	                         db),
	        0);
	tl_uplink_stop(u);
	spool_close(&x);
	batches_free(&a);
	batches_free(&b);
}

struct dead {
	char raw[2 * 4096 + 1];
	uint64_t id;
};

/* The dead_letter rows the uplink wrote: exactly @p want (raw, batch id), with reason. */
static void
check_dead(const char *db, const struct dead *want, size_t n)
{
	char *r = sql("SELECT hex(raw), batch_id, appliance_id, producer_id, reason FROM "
	              "`%s`.dead_letter WHERE startsWith(reason, 'uplink_rejected') ORDER BY "
	              "batch_id, raw FORMAT TabSeparated",
	        db);
	size_t lines = 0;

	for (char *p = r; *p; p++)
		lines += *p == '\n';
	assert_int_equal(lines, n);
	for (size_t i = 0; i < n; i++) {
		char line[2 * 4096 + 256];
		char *at;

		snprintf(line, sizeof(line),
		        "%s\t%llu\t" APPL "\t0\tuplink_rejected: ", want[i].raw,
		        (unsigned long long)want[i].id);
		at = strstr(r, line);
		if (at == NULL)
			fail_msg("no dead_letter row for batch %llu raw %.40s...\n%s",
			        (unsigned long long)want[i].id, want[i].raw, r);
		/* The server's own message follows: a short read of the string (code 33);
		 * or the uplink's, when it found the row corrupt before sending. */
		at += strlen(line);
		if (verify_rows)
			assert_true(strncmp(at, "row does not match the columns of its table", 43) == 0);
		else
			assert_true(strncmp(at, "Code: 33", 8) == 0 ||
			            strstr(at, "CANNOT_READ_ALL_DATA"));
	}
	free(r);
}

static void
poisoned(bool verify)
{
	const char *db = verify ? "tl_up_corrupt" : "tl_up_poison";
	struct batches bs = {0};
	struct dead *dead = calloc(8, sizeof(*dead));
	uint64_t want[TL_BATCH_EVENT_TABLES];
	struct tl_uplink_stats st;
	struct batch *sink, *err, *dl;
	size_t i_sink, i_err, i_dl;
	struct tl_uplink *u;
	struct sp x;
	size_t nd = 0;

	verify_rows = verify;
	assert_non_null(dead);
	spool_open(&x);
	corpus_batches(200, 5, &bs);
	/* sink_output: rows 5 and 41 of 64 refused (query_id's length is the row's first
	 * byte), between two good batches it is sent with in one insert; error_events: all 3
	 * rows refused; dead_letter: row 2 of 9 refused (its appliance_id's length is at
	 * offset 12). */
	hand_batch(TL_BATCH_SINK_OUTPUT, 30, "c1", &bs);
	i_sink = hand_batch(TL_BATCH_SINK_OUTPUT, 64, "ps", &bs);
	hand_batch(TL_BATCH_SINK_OUTPUT, 30, "c2", &bs);
	i_err = hand_batch(TL_BATCH_ERROR_EVENTS, 3, "pe", &bs);
	i_dl = hand_batch(TL_BATCH_DEAD_LETTER, 9, "pd", &bs);
	corpus_batches(200, 6, &bs);
	sink = &bs.b[i_sink];
	err = &bs.b[i_err];
	dl = &bs.b[i_dl];
	poison(sink, 5, 0, dead[nd].raw);
	dead[nd++].id = sink->id;
	poison(sink, 41, 0, dead[nd].raw);
	dead[nd++].id = sink->id;
	for (uint32_t i = 0; i < 3; i++) {
		poison(err, i, 0, dead[nd].raw);
		dead[nd++].id = err->id;
	}
	poison(dl, 2, 12, dead[nd].raw);
	dead[nd++].id = dl->id;
	/* All committed before the start: same-table neighbours share an insert. */
	spool_put_all(&x, &bs);
	u = up_start(db, &x);
	assert_int_equal(tl_uplink_drain(u, DRAIN), 0);

	for (int t = 0; t < TL_BATCH_EVENT_TABLES; t++)
		want[t] = bs.rows[t];
	want[TL_BATCH_SINK_OUTPUT] -= 2;
	want[TL_BATCH_ERROR_EVENTS] -= 3;
	want[TL_BATCH_DEAD_LETTER] += 2 + 3; /* 9 rows of dl: 8 as they were, 1 refused */
	check_tables(db, want);
	assert_int_equal(batch_rows_in(db, TL_BATCH_SINK_OUTPUT, sink->id), 62);
	assert_int_equal(sql_u64("SELECT count() FROM `%s`.sink_output WHERE query_id LIKE 'ps-%%' "
	                         "AND query_id NOT IN ('ps-005', 'ps-041')",
	                         db),
	        62);
	assert_int_equal(
	        sql_u64("SELECT count() FROM `%s`.sink_output WHERE query_id LIKE 'c_-%%'", db),
	        60);
	assert_int_equal(batch_rows_in(db, TL_BATCH_ERROR_EVENTS, err->id), 0);
	assert_int_equal(batch_rows_in(db, TL_BATCH_DEAD_LETTER, dl->id), 9);
	assert_int_equal(batch_rows_in(db, TL_BATCH_DEAD_LETTER, sink->id), 2);
	assert_int_equal(batch_rows_in(db, TL_BATCH_DEAD_LETTER, err->id), 3);
	check_dead(db, dead, nd);

	tl_uplink_stats(u, &st);
	assert_int_equal(st.rows_quarantined, nd);
	assert_int_equal(st.records_quarantined, 3);
	assert_int_equal(st.records_bisected, 3);
	assert_int_equal(st.records_delivered, bs.n - 3);
	for (int t = 0; t < TL_BATCH_EVENT_TABLES; t++)
		assert_int_equal(
		        st.rows_delivered[t], want[t] - (t == TL_BATCH_DEAD_LETTER ? nd : 0));
	assert_int_equal(st.rows_found, 0);
	assert_int_equal(spool_records(&x), 0);
	if (verify) {
		/* Found before sending: ClickHouse never saw them, nothing was probed. */
		assert_int_equal(st.rows_invalid, nd);
		assert_int_equal(st.bisect_inserts, 0);
		assert_int_equal(st.inserts_rejected, 0);
	} else {
		/* Bounded: at most 2 x rows - 2 probes per bad batch. */
		assert_int_equal(st.rows_invalid, 0);
		assert_true(st.bisect_inserts > 0);
		assert_true(st.bisect_inserts <= 2 * (64 + 3 + 9) - 6);
		assert_true(st.inserts_rejected >= 3);
		/* The probe table is a Null engine: it kept nothing. */
		assert_int_equal(sql_u64("SELECT count() FROM system.tables WHERE database = '%s' "
		                         "AND name = '_tapline_probe_sink_output' AND engine = "
		                         "'Null'",
		                         db),
		        1);
		assert_int_equal(
		        sql_u64("SELECT count() FROM `%s`._tapline_probe_sink_output", db), 0);
	}
	tl_uplink_stop(u);
	spool_close(&x);
	batches_free(&bs);
	free(dead);
	verify_rows = true;
}

static void
test_uplink_poisoned_batch_bisected_rest_delivered(void **state)
{
	(void)state;
	poisoned(false);
}

/* The same corrupt rows, checked by the uplink itself (the default): dead-lettered
 * without a round trip, and never sent with their neighbours, which a wrong string
 * length would swallow. */
static void
test_uplink_corrupt_rows_dead_lettered_before_sending(void **state)
{
	(void)state;
	poisoned(true);
}

/*
 * A String length of 4 GiB - 1: ClickHouse 18.16 answers "memory limit exceeded" (code
 * 241, retryable but flagged as possibly caused by the body), current releases a data
 * error. Either way the row ends in dead_letter and the others land.
 */
static void
test_uplink_absurd_string_length_bisected(void **state)
{
	const char *db = "tl_up_huge";
	struct batches bs = {0};
	struct tl_uplink_stats st;
	struct tl_batch_view v;
	struct tl_uplink *u;
	struct batch *b;
	uint8_t *body;
	uint32_t s, e;
	size_t i;
	char raw[1024], *r;
	uint64_t want[TL_BATCH_EVENT_TABLES] = {0};
	struct sp x;

	(void)state;
	verify_rows = false; /* the server's answer to it is what this tests */
	spool_open(&x);
	i = hand_batch(TL_BATCH_SINK_OUTPUT, 16, "hg", &bs);
	b = &bs.b[i];
	body = body_of(b, &v);
	s = tl_batch_row_start(&v, 9);
	e = tl_batch_row_end(&v, 9);
	assert_int_equal(body[s], 6); /* "hg-009" */
	memcpy(body + s, "\xff\xff\xff\xff\x0f", 5);
	hex(body + s, e - s, raw);
	spool_put_all(&x, &bs);
	u = up_start(db, &x);
	assert_int_equal(tl_uplink_drain(u, DRAIN), 0);
	want[TL_BATCH_SINK_OUTPUT] = 15;
	want[TL_BATCH_DEAD_LETTER] = 1;
	check_tables(db, want);
	r = sql("SELECT hex(raw), batch_id FROM `%s`.dead_letter WHERE startsWith(reason, "
	        "'uplink_rejected: Code: ') FORMAT TabSeparated",
	        db);
	assert_true(strncmp(r, raw, strlen(raw)) == 0);
	assert_int_equal(strtoull(r + strlen(raw) + 1, NULL, 10), b->id);
	free(r);
	tl_uplink_stats(u, &st);
	assert_int_equal(st.rows_quarantined, 1);
	assert_int_equal(st.rows_delivered[TL_BATCH_SINK_OUTPUT], 15);
	assert_true(st.bisect_inserts <= 2 * 16 - 2);
	assert_int_equal(spool_records(&x), 0);
	tl_uplink_stop(u);
	spool_close(&x);
	batches_free(&bs);
	verify_rows = true;
}

static void
test_uplink_already_landed_not_sent_again(void **state)
{
	const char *db = "tl_up_landed";
	struct batches bs = {0};
	struct dead dead[2];
	struct batch *w1, *z, *w2, *p;
	size_t i_w1, i_z, i_w2, i_p;
	struct tl_uplink_stats st;
	struct tl_uplink *u;
	bool skip[32] = {false};
	struct sp x;
	uint64_t want[TL_BATCH_EVENT_TABLES] = {0};

	(void)state;
	verify_rows = false; /* a bisection by the server, cut short, is what this tests */
	spool_open(&x);
	/* The tables exist (an earlier run made them). */
	u = up_start(db, &x);
	wait_connected(u);
	tl_uplink_stop(u);

	i_w1 = hand_batch(TL_BATCH_SINK_OUTPUT, 10, "w1", &bs);
	i_z = hand_batch(TL_BATCH_SINK_OUTPUT, 12, "z", &bs);
	i_w2 = hand_batch(TL_BATCH_SINK_OUTPUT, 7, "w2", &bs);
	i_p = hand_batch(TL_BATCH_SINK_OUTPUT, 20, "p", &bs);
	w1 = &bs.b[i_w1];
	z = &bs.b[i_z];
	w2 = &bs.b[i_w2];
	p = &bs.b[i_p];
	poison(p, 3, 0, dead[0].raw);
	dead[0].id = p->id;
	poison(p, 17, 0, dead[1].raw);
	dead[1].id = p->id;
	/* The previous process delivered z but died before its ack was durable, and got
	 * half way through bisecting p: its accepted rows landed, its dead rows did not. */
	pre_insert(db, z, NULL);
	skip[3] = skip[17] = true;
	pre_insert(db, p, skip);
	spool_put_all(&x, &bs);

	u = up_start(db, &x);
	assert_int_equal(tl_uplink_drain(u, DRAIN), 0);
	assert_int_equal(batch_rows_in(db, TL_BATCH_SINK_OUTPUT, w1->id), 10);
	assert_int_equal(batch_rows_in(db, TL_BATCH_SINK_OUTPUT, z->id), 12);
	assert_int_equal(batch_rows_in(db, TL_BATCH_SINK_OUTPUT, w2->id), 7);
	assert_int_equal(batch_rows_in(db, TL_BATCH_SINK_OUTPUT, p->id), 18);
	want[TL_BATCH_SINK_OUTPUT] = 10 + 12 + 7 + 18;
	want[TL_BATCH_DEAD_LETTER] = 2;
	check_tables(db, want);
	check_dead(db, dead, 2);
	tl_uplink_stats(u, &st);
	assert_int_equal(st.rows_found, 12 + 18);
	/* z was taken out of the insert, w1 and w2 sent, p bisected again: its accepted rows
	 * were found and only its dead rows inserted. */
	assert_int_equal(st.rows_delivered[TL_BATCH_SINK_OUTPUT], 10 + 7 + 12 + 18);
	assert_int_equal(st.rows_quarantined, 2);
	assert_int_equal(st.records_delivered, 3);
	assert_int_equal(st.records_quarantined, 1);
	assert_int_equal(spool_records(&x), 0);
	tl_uplink_stop(u);

	/* Restarted on an empty spool: nothing more is sent. */
	u = up_start(db, &x);
	assert_int_equal(tl_uplink_drain(u, DRAIN), 0);
	tl_uplink_stats(u, &st);
	assert_int_equal(st.inserts_ok, 0);
	tl_uplink_stop(u);
	check_tables(db, want);
	spool_close(&x);
	batches_free(&bs);
	verify_rows = true;
}

/*
 * A record a stream that was cut short left in part (18.16 keeps the whole rows it got,
 * ClickHouse issue 9666): only its missing rows are sent, found by event id.
 */
static void
prefix_landed(const char *db)
{
	struct batches bs = {0};
	struct tl_uplink_stats st;
	struct tl_uplink *u;
	bool skip[32] = {false};
	struct sp x;
	uint64_t want[TL_BATCH_EVENT_TABLES] = {0};
	size_t i_q, i_e;

	spool_open(&x);
	u = up_start(db, &x);
	wait_connected(u);
	tl_uplink_stop(u);

	i_q = hand_batch(TL_BATCH_SINK_OUTPUT, 20, "q", &bs);
	i_e = hand_batch(TL_BATCH_ERROR_EVENTS, 9, "e", &bs);
	for (int i = 8; i < 20; i++)
		skip[i] = true;
	pre_insert(db, &bs.b[i_q], skip); /* rows 0-7 of q */
	memset(skip, 0, sizeof(skip));
	skip[0] = skip[4] = true;
	pre_insert(db, &bs.b[i_e], skip); /* e without rows 0 and 4 */
	spool_put_all(&x, &bs);

	u = up_start(db, &x);
	assert_int_equal(tl_uplink_drain(u, DRAIN), 0);
	assert_int_equal(batch_rows_in(db, TL_BATCH_SINK_OUTPUT, bs.b[i_q].id), 20);
	assert_int_equal(batch_rows_in(db, TL_BATCH_ERROR_EVENTS, bs.b[i_e].id), 9);
	want[TL_BATCH_SINK_OUTPUT] = 20;
	want[TL_BATCH_ERROR_EVENTS] = 9;
	check_tables(db, want); /* and no event id twice */
	tl_uplink_stats(u, &st);
	assert_int_equal(st.records_repaired, 2);
	assert_int_equal(st.rows_found, 8 + 7);
	assert_int_equal(st.rows_delivered[TL_BATCH_SINK_OUTPUT], 20);
	assert_int_equal(st.rows_delivered[TL_BATCH_ERROR_EVENTS], 9);
	assert_int_equal(st.rows_quarantined, 0);
	assert_int_equal(spool_records(&x), 0);
	tl_uplink_stop(u);
	spool_close(&x);
	batches_free(&bs);
}

static void
test_uplink_prefix_landed_only_missing_rows_sent(void **state)
{
	(void)state;
	prefix_landed("tl_up_prefix");
}

/* The same with LZ4 batches forwarded as they are stored (codec lz4). */
static void
test_uplink_prefix_landed_framed_only_missing_rows_sent(void **state)
{
	(void)state;
	codec = TL_CH_COMPRESS_LZ4;
	hand_codec = TL_BATCH_CODEC_LZ4;
	prefix_landed("tl_up_prefix_lz4");
	hand_codec = TL_BATCH_CODEC_NONE;
	codec = TL_CH_COMPRESS_AUTO;
}

/*
 * Streamed INSERTs (codec none, and LZ4 framing per piece): records committed while a
 * stream is open join it; every row lands once and few INSERTs carry many records.
 */
static void
streamed(const char *db, int with, int batches)
{
	struct batches a = {0}, b = {0};
	uint64_t want[TL_BATCH_EVENT_TABLES];
	struct tl_uplink_stats st;
	struct tl_uplink *u;
	struct sp x;

	codec = with;
	corpus_codec = batches;
	spool_open(&x);
	u = up_start(db, &x);
	wait_connected(u);
	corpus_batches(3000, 21, &a);
	/* In a trickle, so that records arrive while streams are open. */
	for (size_t i = 0; i < a.n; i++) {
		spool_put(&x, &a.b[i]);
		if (i % 8 == 7)
			usleep(2000);
	}
	assert_int_equal(tl_uplink_drain(u, DRAIN), 0);
	check_tables(db, a.rows);
	tl_uplink_stats(u, &st);
	for (int t = 0; t < TL_BATCH_EVENT_TABLES; t++)
		assert_int_equal(st.rows_delivered[t], a.rows[t]);
	assert_int_equal(st.records_delivered, a.n);
	assert_true(st.inserts_streamed >= 1);
	assert_int_equal(st.inserts_streamed, st.inserts_ok);
	assert_true(st.inserts_ok < a.n); /* records shared INSERTs */
	assert_int_equal(st.rows_quarantined, 0);
	assert_int_equal(st.inserts_ambiguous, 0);

	/* A stop with a stream open ends it cleanly: nothing left in part. */
	corpus_batches(400, 22, &b);
	for (size_t i = 0; i < b.n; i++)
		spool_put(&x, &b.b[i]);
	tl_uplink_stop(u);
	u = up_start(db, &x);
	assert_int_equal(tl_uplink_drain(u, DRAIN), 0);
	for (int t = 0; t < TL_BATCH_EVENT_TABLES; t++)
		want[t] = a.rows[t] + b.rows[t];
	check_tables(db, want);
	tl_uplink_stats(u, &st);
	assert_int_equal(st.records_repaired, 0);
	assert_int_equal(spool_records(&x), 0);
	tl_uplink_stop(u);
	spool_close(&x);
	batches_free(&a);
	batches_free(&b);
	codec = TL_CH_COMPRESS_AUTO;
	corpus_codec = TL_BATCH_CODEC_GZIP;
}

static void
test_uplink_streamed_plain_every_row_once(void **state)
{
	(void)state;
	streamed("tl_up_stream", TL_CH_COMPRESS_NONE, TL_BATCH_CODEC_GZIP);
}

static void
test_uplink_streamed_lz4_every_row_once(void **state)
{
	(void)state;
	streamed("tl_up_stream_lz4", TL_CH_COMPRESS_LZ4, TL_BATCH_CODEC_GZIP);
}

/* LZ4 batches with codec lz4: forwarded as stored, never decompressed but to check. */
static void
test_uplink_streamed_lz4_batches_forwarded_as_stored(void **state)
{
	(void)state;
	streamed("tl_up_stream_pass", TL_CH_COMPRESS_LZ4, TL_BATCH_CODEC_LZ4);
}

static void
clickhouse_down(const char *db)
{
	struct batches a = {0}, b = {0}, c = {0};
	uint64_t want[TL_BATCH_EVENT_TABLES], delivered = 0;
	struct tl_uplink_stats st;
	struct tl_uplink *u;
	struct sp x;
	int i;

	spool_open(&x);
	u = up_start(db, &x);
	corpus_batches(300, 7, &a);
	spool_put_all(&x, &a);
	assert_int_equal(tl_uplink_drain(u, DRAIN), 0);
	check_tables(db, a.rows);

	assert_int_equal(tl_test_ch_stop(&ch), 0);
	corpus_batches(300, 8, &b);
	spool_put_all(&x, &b);
	/* Wait for the uplink to have tried (and failed) a few times. */
	for (i = 0; i < 6000; i++) {
		tl_uplink_stats(u, &st);
		if (st.inserts_retry >= 3)
			break;
		usleep(10000);
	}
	assert_true(st.inserts_retry >= 3);
	for (int t = 0; t < TL_BATCH_EVENT_TABLES; t++)
		delivered += st.rows_delivered[t];
	assert_int_equal(delivered, a.rows[0] + a.rows[1] + a.rows[2]);
	assert_int_equal(spool_records(&x), b.n); /* nothing acked */
	assert_int_equal(tl_uplink_drain(u, 100 * MS), -ETIMEDOUT);
	/* More load while it is down. */
	corpus_batches(200, 9, &c);
	spool_put_all(&x, &c);

	assert_int_equal(tl_test_ch_restart(&ch), 0);
	assert_int_equal(tl_uplink_drain(u, DRAIN), 0);
	for (int t = 0; t < TL_BATCH_EVENT_TABLES; t++)
		want[t] = a.rows[t] + b.rows[t] + c.rows[t];
	check_tables(db, want);
	tl_uplink_stats(u, &st);
	for (int t = 0; t < TL_BATCH_EVENT_TABLES; t++)
		assert_int_equal(st.rows_delivered[t], want[t]);
	assert_int_equal(st.records_delivered, a.n + b.n + c.n);
	assert_int_equal(st.rows_quarantined, 0);
	assert_int_equal(spool_records(&x), 0);
	tl_uplink_stop(u);
	spool_close(&x);
	batches_free(&a);
	batches_free(&b);
	batches_free(&c);
}

static void
test_uplink_clickhouse_down_nothing_acked_then_exactly_once(void **state)
{
	(void)state;
	clickhouse_down("tl_up_down");
}

/*
 * Two uplinks on one spool: the default route's and a route's (its own database, its
 * main table renamed). Each takes only its route's batches and makes its own tables.
 */
static void
test_uplink_routes_each_to_its_database(void **state)
{
	struct tl_uplink_route r = {.id = 0xabc, .database = "tl_up_route_b", .table = "events"};
	struct batches a = {0}, b = {0};
	struct tl_uplink_conf c;
	struct tl_uplink *u0, *u1 = NULL;
	struct tl_uplink_stats s0, s1;
	struct sp x;

	(void)state;
	free(sql("DROP DATABASE IF EXISTS tl_up_route_b"));
	spool_open(&x);
	corpus_batches(300, 31, &a);
	batch_route = r.id;
	corpus_batches(200, 32, &b);
	batch_route = 0;
	/* interleaved in the spool */
	for (size_t i = 0; i < a.n || i < b.n; i++) {
		if (i < a.n)
			spool_put(&x, &a.b[i]);
		if (i < b.n)
			spool_put(&x, &b.b[i]);
	}
	assert_int_equal(tl_spool_flush(x.sp, 30 * SEC), 0);
	u0 = up_start("tl_up_route_a", &x);
	up_conf(&c, "tl_up_route_a");
	assert_int_equal(tl_uplink_start_route(&c, schema, x.sp, &r, &u1), 0);
	assert_int_equal(tl_uplink_drain(u0, DRAIN), 0);
	assert_int_equal(tl_uplink_drain(u1, DRAIN), 0);
	check_tables("tl_up_route_a", a.rows);
	assert_int_equal(sql_u64("SELECT count() FROM tl_up_route_b.events"),
	        b.rows[TL_BATCH_SINK_OUTPUT]);
	assert_int_equal(sql_u64("SELECT count() FROM tl_up_route_b.error_events"),
	        b.rows[TL_BATCH_ERROR_EVENTS]);
	assert_int_equal(sql_u64("SELECT count() FROM tl_up_route_b.dead_letter"),
	        b.rows[TL_BATCH_DEAD_LETTER]);
	assert_int_equal(sql_u64("SELECT count() FROM system.tables WHERE database = "
	                         "'tl_up_route_b' AND name = 'sink_output'"),
	        0);
	tl_uplink_stats(u0, &s0);
	tl_uplink_stats(u1, &s1);
	assert_int_equal(s0.records_delivered, a.n);
	assert_int_equal(s1.records_delivered, b.n);
	assert_int_equal(spool_records(&x), 0);
	assert_string_equal(tl_uplink_database(u1), "tl_up_route_b");
	tl_uplink_stop(u0);
	tl_uplink_stop(u1);
	/* bad names */
	r.table = "no good";
	assert_int_equal(tl_uplink_start_route(&c, schema, x.sp, &r, &u1), -EINVAL);
	spool_close(&x);
	batches_free(&a);
	batches_free(&b);
}

static void
test_uplink_clickhouse_down_streamed_exactly_once(void **state)
{
	(void)state;
	codec = TL_CH_COMPRESS_NONE;
	clickhouse_down("tl_up_down_stream");
	codec = TL_CH_COMPRESS_AUTO;
}

static void
test_uplink_missing_columns_added_dropped_column_restored(void **state)
{
	const char *db = "tl_up_alter";
	struct tl_schema_def full, def;
	struct tl_schema *small = NULL;
	struct tl_limits lim = tl_test_e6data_limits();
	struct batches a = {0}, b = {0};
	uint64_t want[TL_BATCH_EVENT_TABLES];
	struct tl_uplink_stats st;
	struct tl_uplink *u;
	static char ddl[65536];
	char msg[256];
	struct sp x;

	(void)state;
	/* Tables made by an older profile without user_id, rows_affected and payload. */
	tl_test_e6data_def(&full);
	memset(&def, 0, sizeof(def));
	for (uint32_t i = 0; i < full.n_cols; i++)
		if (strcmp(full.cols[i].name, "user_id") &&
		        strcmp(full.cols[i].name, "rows_affected") &&
		        strcmp(full.cols[i].name, "payload"))
			def.cols[def.n_cols++] = full.cols[i];
	tl_test_set_roles(&def, full.time_column, full.error_column, full.id_column);
	assert_int_equal(tl_schema_compile(&def, &lim, &small, msg, sizeof(msg)), 0);
	free(sql("CREATE DATABASE IF NOT EXISTS %s", db));
	for (int t = 0; t < TL_BATCH_EVENT_TABLES; t++) {
		assert_true(tl_ddl_create_table(
		                    small, (enum tl_batch_table)t, db, ddl, sizeof(ddl)) > 0);
		free(sql("%s", ddl));
	}
	assert_int_equal(sql_u64("SELECT count() FROM system.columns WHERE database = '%s' AND "
	                         "table = 'sink_output' AND name = 'payload'",
	                         db),
	        0);

	spool_open(&x);
	corpus_batches(300, 10, &a);
	spool_put_all(&x, &a);
	u = up_start(db, &x);
	assert_int_equal(tl_uplink_drain(u, DRAIN), 0);
	check_tables(db, a.rows);
	for (int t = 0; t < 2; t++)
		assert_int_equal(
		        sql_u64("SELECT count() FROM system.columns WHERE database = '%s' "
		                "AND table = '%s' AND name IN ('user_id', 'rows_affected', "
		                "'payload')",
		                db, tl_batch_table_name((unsigned)t)),
		        3);
	assert_true(sql_u64("SELECT countIf(payload IS NOT NULL) FROM `%s`.sink_output", db) > 0);

	/* Someone drops a column while it runs: the insert fails for a missing column, the
	 * DDL is applied again, the rows land. */
	free(sql("ALTER TABLE `%s`.sink_output DROP COLUMN payload", db));
	corpus_batches(300, 11, &b);
	spool_put_all(&x, &b);
	assert_int_equal(tl_uplink_drain(u, DRAIN), 0);
	for (int t = 0; t < TL_BATCH_EVENT_TABLES; t++)
		want[t] = a.rows[t] + b.rows[t];
	check_tables(db, want);
	assert_true(sql_u64("SELECT countIf(payload IS NOT NULL) FROM `%s`.sink_output", db) > 0);
	tl_uplink_stats(u, &st);
	assert_true(st.ddl_runs >= 2);
	assert_true(st.inserts_retry >= 1);
	assert_int_equal(st.rows_quarantined, 0);
	tl_uplink_stop(u);
	spool_close(&x);
	batches_free(&a);
	batches_free(&b);
	tl_schema_free(small);
}

/* ---- setup ---- */

static int
load_globals(void)
{
	struct tl_schema_def def;
	struct tl_limits lim = tl_test_e6data_limits();
	const char *d = getenv("TAPLINE_DATA");
	char msg[512] = "";

	tl_test_e6data_def(&def);
	if (tl_schema_compile(&def, &lim, &schema, msg, sizeof(msg)) != 0) {
		fprintf(stderr, "schema: %s\n", msg);
		return -1;
	}
	if (tl_corpus_load(d && *d ? d : "../shared/data", &corpus, msg, sizeof(msg)) != 0) {
		fprintf(stderr, "corpus: %s (set TAPLINE_DATA)\n", msg);
		return -1;
	}
	return 0;
}

int
main(void)
{
	const struct CMUnitTest local[] = {
	        cmocka_unit_test(test_uplink_bad_arguments_einval),
	        cmocka_unit_test(test_uplink_server_down_at_start_nothing_acked),
	};
	const struct CMUnitTest server[] = {
	        cmocka_unit_test(test_uplink_statements_retried_until_they_succeed),
	        cmocka_unit_test(test_uplink_tables_missing_created_every_row_lands_once),
	        cmocka_unit_test(test_uplink_poisoned_batch_bisected_rest_delivered),
	        cmocka_unit_test(test_uplink_corrupt_rows_dead_lettered_before_sending),
	        cmocka_unit_test(test_uplink_absurd_string_length_bisected),
	        cmocka_unit_test(test_uplink_already_landed_not_sent_again),
	        cmocka_unit_test(test_uplink_clickhouse_down_nothing_acked_then_exactly_once),
	        cmocka_unit_test(test_uplink_clickhouse_down_streamed_exactly_once),
	        cmocka_unit_test(test_uplink_routes_each_to_its_database),
	        cmocka_unit_test(test_uplink_prefix_landed_only_missing_rows_sent),
	        cmocka_unit_test(test_uplink_streamed_plain_every_row_once),
	        cmocka_unit_test(test_uplink_streamed_lz4_every_row_once),
	        cmocka_unit_test(test_uplink_streamed_lz4_batches_forwarded_as_stored),
	        cmocka_unit_test(test_uplink_prefix_landed_framed_only_missing_rows_sent),
	        cmocka_unit_test(test_uplink_missing_columns_added_dropped_column_restored),
	};
	int rc;

	if (load_globals() < 0)
		return 1;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	rc = cmocka_run_group_tests_name("uplink", local, NULL, NULL);
	if (tl_test_ch_start(&ch) != 0) {
		fprintf(stderr, "no ClickHouse server (see %s): skipping the server tests\n",
		        ch.dir);
		tl_test_ch_destroy(&ch);
		rc = rc ? rc : 77;
	} else {
		rc |= cmocka_run_group_tests_name("uplink_clickhouse", server, NULL, NULL);
		tl_test_ch_destroy(&ch);
	}
	tl_corpus_free(corpus);
	tl_schema_free(schema);
	curl_global_cleanup();
	return rc;
}
