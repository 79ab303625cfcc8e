/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <inttypes.h>
#include <libdeflate.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "tl_ddl.h"
#include "tl_error.h"
#include "tl_log.h"
#include "tl_uplink.h"

#define MAX_KEYS 256               /* spool records coalesced into one INSERT */
#define INSERT_BYTES (32u << 20)   /* uncompressed RowBinary per INSERT */
#define COLS_LEN 16384

enum slot_state { SLOT_FREE, SLOT_SENT, SLOT_WAIT };

struct slot {
	enum slot_state state;
	enum tl_batch_table table;
	uint32_t n_keys;
	int serial;        /* -1: all records at once; else the one record being sent alone */
	bool check_first;  /* an ambiguous send: ask ClickHouse before sending again */
	unsigned attempt;
	uint64_t due_ns;
	uint64_t keys[MAX_KEYS];
	uint64_t ids[MAX_KEYS];
	uint32_t rows[MAX_KEYS];
	uint32_t off[MAX_KEYS + 1]; /* record boundaries in body */
	uint8_t *body;
	size_t cap;
};

struct tl_uplink {
	struct tl_uplink_conf conf;
	const struct tl_schema *schema;
	struct tl_spool *spool;
	struct tl_ch *ch;
	struct libdeflate_decompressor *dec;
	pthread_t thread;
	bool started;
	int stop;
	bool need_ddl;
	unsigned ddl_attempt;
	uint64_t ddl_due;
	uint64_t cursor;
	uint64_t rng;
	unsigned n_slots;
	struct slot slots[TL_CH_MAX_IN_FLIGHT];
	char cols[TL_BATCH_TABLE_MAX][COLS_LEN];
	struct tl_uplink_stats st;
};

static uint64_t
mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t
next_rand(struct tl_uplink *u)
{
	/* xorshift64*: jitter only, not security. */
	u->rng ^= u->rng >> 12;
	u->rng ^= u->rng << 25;
	u->rng ^= u->rng >> 27;
	return u->rng * 0x2545f4914f6cdd1dull;
}

static void
add(uint64_t *c, uint64_t v)
{
	__atomic_fetch_add(c, v, __ATOMIC_RELAXED);
}

/* --- DDL --- */

static int
apply_ddl(struct tl_uplink *u)
{
	const char *db = tl_ch_database(u->ch);
	char sql[65536], msg[256];
	char *reply = NULL;
	size_t len = 0;
	int rc;

	if (tl_ddl_create_database(db, sql, sizeof(sql)) < 0)
		return -EINVAL;
	rc = tl_ch_query(u->ch, sql, NULL, NULL);
	if (rc < 0)
		return rc;
	for (int t = 0; t < TL_BATCH_TABLE_MAX; t++) {
		if (tl_ddl_columns_query((enum tl_batch_table)t, db, sql, sizeof(sql)) < 0)
			return -EINVAL;
		rc = tl_ch_query(u->ch, sql, &reply, &len);
		if (rc < 0)
			return rc;
		rc = tl_ddl_alter(u->schema, (enum tl_batch_table)t, db, reply, len, sql, sizeof(sql),
				msg, sizeof(msg));
		free(reply);
		reply = NULL;
		if (rc == -ENOENT)
			rc = tl_ddl_create_table(u->schema, (enum tl_batch_table)t, db, sql, sizeof(sql));
		if (rc < 0) {
			TL_ERR("uplink: %s.%s: %s", db, tl_batch_table_name((unsigned)t),
					rc == TL_E_SCHEMA ? msg : "cannot build the DDL");
			return rc;
		}
		if (rc > 0) {
			rc = tl_ch_query(u->ch, sql, NULL, NULL);
			if (rc < 0)
				return rc;
			TL_INFO("uplink: %s", sql);
		}
	}
	add(&u->st.ddl_runs, 1);
	return 0;
}

/* --- filling an insert from the spool --- */

static void
quarantine(struct tl_uplink *u, uint64_t key, uint32_t rows, const char *why)
{
	TL_ERR("uplink: spool record %" PRIu64 " (%u rows) quarantined: %s", key, rows, why);
	add(&u->st.records_quarantined, 1);
	add(&u->st.rows_quarantined, rows);
	tl_spool_ack(u->spool, key);
}

struct fill_ctx {
	struct tl_uplink *u;
	struct slot *sl;
};

static int
take_record(void *arg, const struct tl_spool_rec *rec)
{
	struct fill_ctx *f = arg;
	struct slot *sl = f->sl;
	struct tl_batch_view v;
	size_t at = sl->off[sl->n_keys];

	if (tl_batch_parse(rec->data, rec->len, &v) != 0) {
		quarantine(f->u, rec->key, 0, "not a valid batch");
		return 0;
	}
	if (sl->n_keys > 0 && (v.hdr.table != sl->table || at + v.raw_len > INSERT_BYTES))
		return -1; /* belongs to the next insert */
	if (at + v.raw_len > sl->cap) {
		size_t cap = sl->cap ? sl->cap : (1u << 20);
		uint8_t *b;

		while (cap < at + v.raw_len)
			cap *= 2;
		b = realloc(sl->body, cap);
		if (b == NULL)
			return -1;
		sl->body = b;
		sl->cap = cap;
	}
	if (v.hdr.flags & TL_BATCH_F_GZIP) {
		size_t got = 0;

		if (libdeflate_gzip_decompress(f->u->dec, v.body, v.hdr.body_len, sl->body + at,
				    v.raw_len, &got) != LIBDEFLATE_SUCCESS ||
				got != v.raw_len) {
			quarantine(f->u, rec->key, v.hdr.rows, "body does not decompress");
			return 0;
		}
	} else {
		memcpy(sl->body + at, v.body, v.raw_len);
	}
	sl->table = (enum tl_batch_table)v.hdr.table;
	sl->keys[sl->n_keys] = rec->key;
	sl->ids[sl->n_keys] = v.hdr.batch_id;
	sl->rows[sl->n_keys] = v.hdr.rows;
	sl->n_keys++;
	sl->off[sl->n_keys] = (uint32_t)(at + v.raw_len);
	return sl->n_keys == MAX_KEYS ? 1 : 0;
}

static void
range(const struct slot *sl, uint32_t *a, uint32_t *b)
{
	*a = sl->serial < 0 ? 0 : (uint32_t)sl->serial;
	*b = sl->serial < 0 ? sl->n_keys : (uint32_t)sl->serial + 1;
}

static int
submit(struct tl_uplink *u, struct slot *sl)
{
	struct tl_ch_insert ins;
	uint32_t a, b;
	int rc;

	range(sl, &a, &b);
	memset(&ins, 0, sizeof(ins));
	ins.id = sl->ids[a];
	ins.table = tl_batch_table_name(sl->table);
	ins.columns = u->cols[sl->table];
	ins.format = "RowBinary";
	ins.body = sl->body + sl->off[a];
	ins.len = sl->off[b] - sl->off[a];
	ins.user = sl;
	rc = tl_ch_submit(u->ch, &ins);
	if (rc < 0) {
		__atomic_store_n(&sl->state, SLOT_WAIT, __ATOMIC_RELAXED);
		sl->due_ns = mono_ns() + tl_ch_backoff_ns(&u->conf, sl->attempt++, next_rand(u));
		return rc;
	}
	__atomic_store_n(&sl->state, SLOT_SENT, __ATOMIC_RELAXED);
	add(&u->st.in_flight, 1);
	return 0;
}

static void
fill_free_slots(struct tl_uplink *u)
{
	for (unsigned i = 0; i < u->n_slots; i++) {
		struct slot *sl = &u->slots[i];
		struct fill_ctx f = {u, sl};
		uint64_t next = u->cursor;
		int n;

		if (sl->state != SLOT_FREE)
			continue;
		sl->n_keys = 0;
		sl->off[0] = 0;
		sl->serial = -1;
		sl->attempt = 0;
		sl->check_first = false;
		n = tl_spool_read(u->spool, u->cursor, MAX_KEYS, take_record, &f, &next);
		if (n <= 0 || next == u->cursor)
			return; /* nothing committed beyond what is in flight */
		u->cursor = next;
		if (sl->n_keys > 0)
			submit(u, sl);
	}
}

/* --- results --- */

static void
delivered(struct tl_uplink *u, struct slot *sl, uint32_t a, uint32_t b)
{
	for (uint32_t k = a; k < b; k++) {
		tl_spool_ack(u->spool, sl->keys[k]);
		add(&u->st.rows_delivered[sl->table], sl->rows[k]);
	}
	add(&u->st.records_delivered, b - a);
	add(&u->st.inserts_ok, 1);
}

/* Move on after records [a, b) are settled: the next record in serial mode, or done. */
static void
advance(struct tl_uplink *u, struct slot *sl)
{
	sl->attempt = 0;
	sl->check_first = false;
	if (sl->serial >= 0 && (uint32_t)++sl->serial < sl->n_keys) {
		submit(u, sl);
		return;
	}
	__atomic_store_n(&sl->state, SLOT_FREE, __ATOMIC_RELAXED);
}

/* After an ambiguous send: how many of the records' rows are in the table already?
 * @return rows found, or -1 if ClickHouse could not be asked. */
static int64_t
rows_landed(struct tl_uplink *u, struct slot *sl, uint32_t a, uint32_t b)
{
	char sql[8192], *reply = NULL;
	size_t len = 0, n;
	int64_t rows;

	const char *table = tl_batch_table_name(sl->table);

	if (table == NULL)
		return -1;
	n = (size_t)snprintf(sql, sizeof(sql), "SELECT count() FROM `%s`.`%s` WHERE batch_id IN (",
			tl_ch_database(u->ch), table);
	for (uint32_t k = a; k < b && n < sizeof(sql) - 32; k++)
		n += (size_t)snprintf(sql + n, sizeof(sql) - n, "%s%" PRIu64, k > a ? "," : "",
				sl->ids[k]);
	snprintf(sql + n, sizeof(sql) - n, ")");
	if (tl_ch_query(u->ch, sql, &reply, &len) < 0)
		return -1;
	rows = reply ? strtoll(reply, NULL, 10) : -1;
	free(reply);
	return rows;
}

static void
settle_ambiguous(struct tl_uplink *u, struct slot *sl)
{
	uint32_t a, b;
	uint64_t want = 0;
	int64_t got;

	range(sl, &a, &b);
	for (uint32_t k = a; k < b; k++)
		want += sl->rows[k];
	got = rows_landed(u, sl, a, b);
	if (got < 0) {
		sl->due_ns = mono_ns() + tl_ch_backoff_ns(&u->conf, sl->attempt++, next_rand(u));
		return; /* ask again later */
	}
	if ((uint64_t)got == want) {
		delivered(u, sl, a, b);
		advance(u, sl);
		return;
	}
	if (got != 0)
		/* One INSERT of a RowBinary body under a million rows is one block, which a
		 * MergeTree table takes whole or not at all; a partial count means something
		 * else wrote these ids. Sending again would duplicate: count it as landed. */
		TL_ERR("uplink: %" PRId64 " of %" PRIu64 " rows of batch %" PRIu64
		       " found after an ambiguous insert; not sending again",
				got, want, sl->ids[a]);
	if (got != 0) {
		delivered(u, sl, a, b);
		advance(u, sl);
		return;
	}
	sl->check_first = false;
	submit(u, sl);
}

static void
on_result(struct tl_uplink *u, const struct tl_ch_result *r)
{
	struct slot *sl = r->user;
	uint32_t a, b;

	__atomic_fetch_sub(&u->st.in_flight, 1, __ATOMIC_RELAXED);
	range(sl, &a, &b);
	add(&u->st.bytes_sent, r->bytes_sent);
	{
		unsigned bucket = 0;

		for (uint64_t l = r->latency_ns; l > 1 && bucket < 39; l >>= 1)
			bucket++;
		add(&u->st.latency_ns[bucket], 1);
	}
	switch (r->outcome) {
	case TL_CH_OK:
		delivered(u, sl, a, b);
		advance(u, sl);
		break;
	case TL_CH_RETRY:
		add(&u->st.inserts_retry, 1);
		if (r->flags & TL_CH_F_SCHEMA)
			u->need_ddl = true;
		TL_LOG_RATELIMITED(TL_LOG_WARN, 5, "uplink: %s: retrying (%s)",
				tl_batch_table_name(sl->table), r->message[0] ? r->message : "no answer");
		__atomic_store_n(&sl->state, SLOT_WAIT, __ATOMIC_RELAXED);
		sl->due_ns = mono_ns() + tl_ch_backoff_ns(&u->conf, sl->attempt++, next_rand(u));
		break;
	case TL_CH_AMBIGUOUS:
		add(&u->st.inserts_ambiguous, 1);
		__atomic_store_n(&sl->state, SLOT_WAIT, __ATOMIC_RELAXED);
		sl->check_first = true;
		sl->due_ns = mono_ns() + tl_ch_backoff_ns(&u->conf, sl->attempt++, next_rand(u));
		break;
	case TL_CH_REJECT:
	default:
		add(&u->st.inserts_rejected, 1);
		if (sl->serial < 0 && sl->n_keys > 1) {
			/* Find the bad record: send them one at a time. */
			sl->serial = 0;
			submit(u, sl);
			break;
		}
		quarantine(u, sl->keys[a], sl->rows[a], r->message);
		advance(u, sl);
		break;
	}
}

static void
retry_due(struct tl_uplink *u, uint64_t now)
{
	for (unsigned i = 0; i < u->n_slots; i++) {
		struct slot *sl = &u->slots[i];

		if (sl->state != SLOT_WAIT || now < sl->due_ns || u->need_ddl)
			continue;
		if (sl->check_first)
			settle_ambiguous(u, sl);
		else
			submit(u, sl);
	}
}

static void *
uplink_main(void *arg)
{
	struct tl_uplink *u = arg;
	struct tl_ch_result res[TL_CH_MAX_IN_FLIGHT];

	u->need_ddl = true;
	while (!__atomic_load_n(&u->stop, __ATOMIC_RELAXED)) {
		uint64_t now = mono_ns();
		int n;

		if (u->need_ddl) {
			if (now < u->ddl_due) {
				usleep(10000);
				continue;
			}
			if (apply_ddl(u) < 0) {
				const struct tl_ch_result *e = tl_ch_last_error(u->ch);

				TL_LOG_RATELIMITED(TL_LOG_WARN, 2,
						"uplink: ClickHouse not ready (%s); retrying",
						e && e->message[0] ? e->message : "no answer");
				u->ddl_due = now + tl_ch_backoff_ns(&u->conf, u->ddl_attempt++,
							   next_rand(u));
				continue;
			}
			u->need_ddl = false;
			u->ddl_attempt = 0;
			__atomic_store_n(&u->st.connected, 1, __ATOMIC_RELAXED);
		}
		retry_due(u, now);
		fill_free_slots(u);
		n = tl_ch_poll(u->ch, __atomic_load_n(&u->st.in_flight, __ATOMIC_RELAXED) ? 20 : 0,
				res, TL_CH_MAX_IN_FLIGHT);
		for (int i = 0; i < n; i++)
			on_result(u, &res[i]);
		if (n == 0 && __atomic_load_n(&u->st.in_flight, __ATOMIC_RELAXED) == 0)
			usleep(2000);
	}
	return NULL;
}

int
tl_uplink_start(const struct tl_uplink_conf *conf, const struct tl_schema *schema,
		struct tl_spool *spool, struct tl_uplink **out)
{
	struct tl_uplink *u;
	int rc;

	*out = NULL;
	if (conf == NULL || schema == NULL || spool == NULL)
		return -EINVAL;
	u = calloc(1, sizeof(*u));
	if (u == NULL)
		return -ENOMEM;
	u->conf = *conf;
	u->schema = schema;
	u->spool = spool;
	u->cursor = 1;
	u->n_slots = (unsigned)conf->max_in_flight;
	if (u->n_slots == 0 || u->n_slots > TL_CH_MAX_IN_FLIGHT)
		u->n_slots = TL_CH_MAX_IN_FLIGHT;
	if (getrandom(&u->rng, sizeof(u->rng), 0) != sizeof(u->rng) || u->rng == 0)
		u->rng = 0x9e3779b97f4a7c15ull ^ mono_ns();
	for (int t = 0; t < TL_BATCH_TABLE_MAX; t++) {
		rc = tl_ddl_insert_columns(schema, (enum tl_batch_table)t, u->cols[t], COLS_LEN);
		if (rc < 0)
			goto fail;
	}
	u->dec = libdeflate_alloc_decompressor();
	if (u->dec == NULL) {
		rc = -ENOMEM;
		goto fail;
	}
	rc = tl_ch_open(conf, &u->ch);
	if (rc < 0)
		goto fail;
	rc = pthread_create(&u->thread, NULL, uplink_main, u);
	if (rc != 0) {
		rc = -rc;
		goto fail;
	}
	u->started = true;
	*out = u;
	return 0;
fail:
	tl_uplink_stop(u);
	return rc;
}

int
tl_uplink_drain(struct tl_uplink *u, uint64_t timeout_ns)
{
	uint64_t end = mono_ns() + timeout_ns;

	for (;;) {
		struct tl_spool_stats ss;
		bool busy = false;

		tl_spool_stats(u->spool, &ss);
		for (unsigned i = 0; i < u->n_slots; i++)
			busy |= __atomic_load_n(&u->slots[i].state, __ATOMIC_RELAXED) != SLOT_FREE;
		if (ss.records == 0 && !busy)
			return 0;
		if (mono_ns() > end)
			return -ETIMEDOUT;
		usleep(5000);
	}
}

void
tl_uplink_stop(struct tl_uplink *u)
{
	if (u == NULL)
		return;
	if (u->started) {
		__atomic_store_n(&u->stop, 1, __ATOMIC_RELAXED);
		pthread_join(u->thread, NULL);
	}
	tl_ch_close(u->ch);
	if (u->dec)
		libdeflate_free_decompressor(u->dec);
	for (unsigned i = 0; i < TL_CH_MAX_IN_FLIGHT; i++)
		free(u->slots[i].body);
	free(u);
}

void
tl_uplink_stats(const struct tl_uplink *u, struct tl_uplink_stats *st)
{
	const uint64_t *s;
	uint64_t *d = (uint64_t *)st;

	memset(st, 0, sizeof(*st));
	if (u == NULL)
		return;
	s = (const uint64_t *)&u->st;
	for (size_t i = 0; i < sizeof(*st) / sizeof(uint64_t); i++)
		d[i] = __atomic_load_n(&s[i], __ATOMIC_RELAXED);
}
