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

#include "tl_chblock.h"
#include "tl_ddl.h"
#include "tl_encode.h"
#include "tl_error.h"
#include "tl_failover.h"
#include "tl_log.h"
#include "tl_uplink.h"

#define MAX_KEYS 256                    /* spool records coalesced into one INSERT */
#define INSERT_MIN_DELAY_NS 50000000ull /* ... and how long it waits for company when idle */
#define STREAM_IDLE_NS 20000000ull      /* a streamed INSERT ends after this long without rows */
#define STREAM_IDLE_MAX_NS 200000000ull /* ... or this long while the spool is committing */
#define STREAM_POLL_MS 2                /* how often an open stream looks for new records */
#define MS_NS 1000000ull
#define STREAM_SPLIT (8u << 20)       /* another stream opens when this much waits in the others */
#define STREAM_STOP_NS 5000000000ull  /* how long a stop waits for streams to be answered */
#define INSERT_ROWS TL_BATCH_MAX_ROWS /* below max_insert_block_size: one block */
#define COLS_LEN 16384
#define MAYBE_DATA_TRIES 3 /* TL_CH_F_MAYBE_DATA retries before it counts as a reject */
#define STACK_MAX 48       /* bisection depth: log2(TL_BATCH_MAX_ROWS) + 1 suffices */
#define APPLIANCE_MAX 255
#define REASON_PREFIX "uplink_rejected: "
#define PROBE_PREFIX "_tapline_probe_"
#define SQL_LEN (MAX_KEYS * 22 + 512)

/*
 * FILLING: records are being coalesced into the slot's insert, not sent yet (see
 * fill_slots). SENT: in flight. WAIT: due again at due_ns (backoff, or a check first).
 */
enum slot_state { SLOT_FREE, SLOT_FILLING, SLOT_SENT, SLOT_WAIT };

/* What the slot's insert carries. */
enum slot_mode {
	MODE_RECORDS, /* records as stored: all of them, or the one of serial mode */
	MODE_PROBE,   /* bisection: rows [lo, hi) of the source, into the probe table */
	MODE_GOOD,    /* bisection done: the rows the probes accepted, into the table */
	MODE_DEAD,    /* the rows refused, as dead_letter rows */
};

/* The bisection of one record (allocated when it starts: a rare path). */
struct bisect {
	uint32_t rec;        /* the record in its slot */
	uint64_t batch_id;   /* its batch id: in its rows and in the dead_letter rows */
	bool direct;         /* probes go to the table itself: accepted rows land at once */
	const uint8_t *src;  /* the rows being bisected: the record's, or own[] */
	const uint32_t *end; /* their row ends, relative to src */
	uint32_t n;          /* their count */
	uint8_t *own;        /* after a fallback to direct: the accepted rows, copied */
	uint32_t *own_end;
	uint32_t lo, hi; /* rows of the probe in flight (or waiting) */
	uint32_t depth;  /* ranges still to probe */
	uint32_t stack[STACK_MAX][2];
	uint8_t *good; /* rows the probes accepted, in order */
	uint32_t *good_end;
	size_t good_len;
	uint32_t n_good;
	uint8_t *dead; /* dead_letter rows of the rows refused */
	size_t dead_len, dead_cap;
	uint32_t n_bad;
	uint64_t landed; /* rows with batch_id already confirmed in the table */
};

struct slot {
	enum slot_state state;
	enum slot_mode mode;
	enum tl_batch_table table;
	uint32_t n_keys;
	uint32_t n_rows;  /* rows of all its records */
	int serial;       /* -1: all records at once; else the one record being sent alone */
	bool check_first; /* ask ClickHouse what landed before sending (again) */
	bool invalid;     /* its one record has rows that are not rows of the table */
	/* A streamed INSERT (uplink.stream): submitted with its first record, it takes
	 * records while it is u->filling[table] and ends when stream_end is set. */
	bool streaming;
	/* body holds each record as ClickHouse's LZ4 block, made from the spooled batch's
	 * own LZ4 block without decompressing it (codec lz4); else the rows themselves */
	bool framed;
	uint64_t raw;  /* uncompressed bytes of its records */
	size_t pulled; /* streamed: body bytes the transfer has taken */
	bool stream_end;
	bool stream_eof;                  /* the whole body was pulled: an OK covers every record */
	bool stream_more;                 /* records were added since the transfer last pulled */
	char qid[TL_CH_QUERY_ID_MAX + 1]; /* query id of its last insert ("": none yet) */
	unsigned attempt;
	unsigned maybe_data; /* consecutive retries flagged TL_CH_F_MAYBE_DATA */
	uint64_t due_ns;
	uint64_t fill_ns; /* FILLING: when it took its first record */
	uint64_t keys[MAX_KEYS];
	uint64_t ids[MAX_KEYS];
	uint32_t rows[MAX_KEYS];
	bool partial[MAX_KEYS];        /* some of its rows are in ClickHouse: bisect it */
	uint32_t off[MAX_KEYS + 1];    /* record boundaries in body */
	uint32_t row_at[MAX_KEYS + 1]; /* first row end of each record in row_end */
	uint8_t *body;
	size_t cap;
	uint32_t *row_end; /* every record's row ends, relative to the record's start */
	size_t row_cap;
	struct bisect *bis;
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
	uint64_t check_below; /* records below this key may have been sent by a past process */
	uint64_t rng;
	unsigned n_slots;
	struct slot *filling[TL_BATCH_TABLE_MAX]; /* the slot coalescing each table, or NULL */
	struct slot *ready[TL_CH_MAX_IN_FLIGHT];  /* filled during a read, sent after it */
	bool stream_ok;                           /* uplink.stream and the codec allows it */
	bool pass_lz4;  /* codec lz4: LZ4 batches go out as they are stored */
	uint8_t *check; /* rows of a framed record, decompressed to check them */
	size_t check_cap;
	uint64_t stream_max_ns; /* a stream ends this old */
	uint64_t last_take_ns;  /* when a record was last taken */
	int draining;           /* callers in tl_uplink_drain() */
	unsigned n_ready;
	bool probe_ready[TL_BATCH_TABLE_MAX];
	pthread_mutex_t lock; /* appliance, stmts */
	char appliance[APPLIANCE_MAX + 1];
	char **stmts; /* tl_uplink_set_statements: run after the DDL */
	unsigned n_stmts;
	int stmts_due; /* 1: to run (again) */
	uint64_t stmts_retry_ns;
	unsigned stmts_attempt;
	struct slot slots[TL_CH_MAX_IN_FLIGHT];
	char cols[TL_BATCH_TABLE_MAX][COLS_LEN];
	uint8_t layout[TL_BATCH_TABLE_MAX][TL_ENCODE_MAX_COLS]; /* COL_* | COL_NULLABLE */
	uint32_t n_layout[TL_BATCH_TABLE_MAX];
	int id_col[TL_BATCH_TABLE_MAX]; /* column event_id FixedString(16), or -1 */
	char probe[TL_BATCH_TABLE_MAX][96];
	char tables[TL_BATCH_TABLE_MAX][TL_DDL_IDENT_MAX + 1]; /* names in ClickHouse */
	uint32_t route; /* takes the batches of this route (struct tl_batch_hdr.route) */
	/* Failover (NULL: the only target). */
	struct tl_failover *fo;
	unsigned target; /* this uplink's target index */
	bool prober;     /* it runs the target's health checks (the default route's uplink) */
	uint64_t fo_health_timeout;
	uint64_t epoch;            /* the preference epoch it last acted on */
	uint64_t rescan_end;       /* re-reading records below this for unclaimed ones (0: not) */
	uint64_t claims[MAX_KEYS]; /* claimed during the current read, to make durable */
	unsigned n_claims;
	struct tl_uplink_stats st;
};

/* The name table @p t has in ClickHouse for this uplink (a route may rename the main one). */
static inline const char *
tname(const struct tl_uplink *u, unsigned t)
{
	return t < TL_BATCH_TABLE_MAX ? u->tables[t] : "?";
}

static uint64_t
mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int64_t
wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
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

static void
set_state(struct slot *sl, enum slot_state s)
{
	__atomic_store_n(&sl->state, s, __ATOMIC_RELAXED);
}

static void
wait_backoff(struct tl_uplink *u, struct slot *sl)
{
	set_state(sl, SLOT_WAIT);
	sl->due_ns = mono_ns() + tl_ch_backoff_ns(&u->conf, sl->attempt++, next_rand(u));
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

	/* Probe tables copy the tables' columns: made again after any change. */
	memset(u->probe_ready, 0, sizeof(u->probe_ready));
	if (tl_ddl_create_database(db, sql, sizeof(sql)) < 0)
		return -EINVAL;
	rc = tl_ch_query(u->ch, sql, NULL, NULL);
	if (rc < 0)
		return rc;
	for (int t = 0; t < TL_BATCH_TABLE_MAX; t++) {
		if (t == TL_BATCH_ROLLUPS && u->route != 0)
			continue; /* rollups live in the default route's database */
		if (tl_ddl_columns_query_named(
		            (enum tl_batch_table)t, db, tname(u, t), sql, sizeof(sql)) < 0)
			return -EINVAL;
		rc = tl_ch_query(u->ch, sql, &reply, &len);
		if (rc < 0)
			return rc;
		rc = tl_ddl_alter_named(u->schema, (enum tl_batch_table)t, db, tname(u, t), reply,
		        len, sql, sizeof(sql), msg, sizeof(msg));
		free(reply);
		reply = NULL;
		if (rc == -ENOENT)
			rc = tl_ddl_create_table_named(u->schema, (enum tl_batch_table)t, db,
			        tname(u, t), sql, sizeof(sql));
		if (rc < 0) {
			TL_ERR("uplink: %s.%s: %s", db, tname(u, t),
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
	if (u->route == 0) {
		if (tl_ddl_rollups_view(db, sql, sizeof(sql)) < 0)
			return -EINVAL;
		rc = tl_ch_query(u->ch, sql, NULL, NULL);
		if (rc < 0)
			return rc;
		if (tl_ddl_rollups_p95_view(db, sql, sizeof(sql)) < 0)
			return -EINVAL;
		rc = tl_ch_query(u->ch, sql, NULL, NULL);
		if (rc < 0)
			return rc;
	}
	add(&u->st.ddl_runs, 1);
	return 0;
}

/*
 * The probe table of @p t: a Null-engine copy of its columns. ClickHouse parses and
 * converts every row inserted into it, then keeps nothing, so a probe tells whether the
 * table would take the rows without writing them.
 * @return 0 ready; -EAGAIN ClickHouse could not be asked (try later); -EPERM it
 *         answered an error (no grant, ...): bisect against the table itself.
 */
static int
ensure_probe(struct tl_uplink *u, enum tl_batch_table t)
{
	const char *db = tl_ch_database(u->ch);
	char sql[512];
	int rc;

	if (u->probe_ready[t])
		return 0;
	snprintf(sql, sizeof(sql), "DROP TABLE IF EXISTS `%s`.`%s`", db, u->probe[t]);
	rc = tl_ch_query(u->ch, sql, NULL, NULL);
	if (rc == 0) {
		snprintf(sql, sizeof(sql), "CREATE TABLE `%s`.`%s` AS `%s`.`%s` ENGINE = Null", db,
		        u->probe[t], db, tname(u, t));
		rc = tl_ch_query(u->ch, sql, NULL, NULL);
	}
	if (rc == -EREMOTEIO || rc == -EACCES) {
		const struct tl_ch_result *e = tl_ch_last_error(u->ch);

		TL_WARN("uplink: no probe table %s.%s (%s): bisecting against %s itself", db,
		        u->probe[t], e->message, tname(u, t));
		return -EPERM;
	}
	if (rc < 0)
		return -EAGAIN;
	u->probe_ready[t] = true;
	return 0;
}

/* --- "is it there already?" --- */

/*
 * Count the rows of each of @p n batch ids in table @p t.
 * @return 0 and got[] set; -1 if ClickHouse could not be asked.
 */
static int
count_rows(
        struct tl_uplink *u, enum tl_batch_table t, const uint64_t *ids, uint32_t n, uint64_t *got)
{
	char sql[SQL_LEN], *reply = NULL, *p, *e;
	size_t len = 0, at;

	add(&u->st.checks, 1);
	at = (size_t)snprintf(sql, sizeof(sql),
	        "SELECT batch_id, count() FROM `%s`.`%s` WHERE batch_id IN (",
	        tl_ch_database(u->ch), tname(u, t));
	for (uint32_t k = 0; k < n; k++) {
		got[k] = 0;
		at += (size_t)snprintf(
		        sql + at, sizeof(sql) - at, "%s%" PRIu64, k ? "," : "", ids[k]);
	}
	snprintf(sql + at, sizeof(sql) - at, ") GROUP BY batch_id FORMAT TabSeparated");
	if (tl_ch_query(u->ch, sql, &reply, &len) < 0)
		return -1;
	for (p = reply; p && p < reply + len; p = e + 1) {
		uint64_t id, c;
		char *tab;

		e = memchr(p, '\n', (size_t)(reply + len - p));
		if (e == NULL)
			e = reply + len;
		id = strtoull(p, &tab, 10);
		if (tab == p || *tab != '\t')
			continue;
		c = strtoull(tab + 1, NULL, 10);
		for (uint32_t k = 0; k < n; k++)
			if (ids[k] == id)
				got[k] = c;
	}
	free(reply);
	return 0;
}

/* --- filling an insert from the spool --- */

static void
quarantine(struct tl_uplink *u, uint64_t key, uint32_t rows, const char *why)
{
	TL_ERR("uplink: spool record %" PRIu64 " (%u rows) quarantined: %s", key, rows, why);
	add(&u->st.records_quarantined, 1);
	add(&u->st.rows_quarantined, rows);
	/* Kept in the spool's quarantine (spool dump --quarantine), never just deleted. */
	if (tl_spool_quarantine(u->spool, key) < 0)
		tl_spool_ack(u->spool, key);
}

static int
grow(void **buf, size_t *cap, size_t need, size_t elem, size_t first)
{
	size_t c = *cap ? *cap : first;
	void *b;

	if (need <= *cap)
		return 0;
	while (c < need)
		c *= 2;
	b = realloc(*buf, c * elem);
	if (b == NULL)
		return -ENOMEM;
	*buf = b;
	*cap = c;
	return 0;
}

/*
 * Row layouts. RowBinary has no framing: a row whose string length is wrong swallows
 * the rows after it, and if what follows happens to parse, ClickHouse takes the insert
 * with rows silently merged away. So every row is walked against the table's column
 * types before it is coalesced; a record with a row that does not end exactly at its
 * recorded end is never sent with others (see take_record, start_bisect).
 */
enum {
	COL_FIXED1 = 1,
	COL_FIXED4,
	COL_FIXED8,
	COL_FIXED16,
	COL_STRING,
	COL_STRINGS, /* Array(String): a count, then that many strings */
	COL_NULLABLE = 0x80
};

static int
layout_of(const char *type, uint8_t *code)
{
	static const struct {
		const char *name;
		uint8_t code;
	} map[] = {
	        {"String", COL_STRING},
	        {"UInt8", COL_FIXED1},
	        {"Int8", COL_FIXED1},
	        {"DateTime", COL_FIXED4},
	        {"UInt32", COL_FIXED4},
	        {"Int32", COL_FIXED4},
	        {"Int64", COL_FIXED8},
	        {"UInt64", COL_FIXED8},
	        {"Float64", COL_FIXED8},
	        {"FixedString(16)", COL_FIXED16},
	        {"Array(String)", COL_STRINGS},
	        {TL_ENCODE_SEVERITY_TYPE, COL_FIXED1},
	};
	uint8_t null = 0;
	size_t l = strlen(type);

	if (strncmp(type, "Nullable(", 9) == 0 && l > 10 && type[l - 1] == ')') {
		null = COL_NULLABLE;
		type += 9;
		l -= 10;
	}
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strlen(map[i].name) == l && strncmp(map[i].name, type, l) == 0) {
			*code = map[i].code | null;
			return 0;
		}
	return -EINVAL;
}

static int
build_layouts(struct tl_uplink *u)
{
	struct tl_encode_col *cols = calloc(TL_ENCODE_MAX_COLS, sizeof(*cols));
	int rc = cols ? 0 : -ENOMEM;

	for (int t = 0; t < TL_BATCH_TABLE_MAX && rc == 0; t++) {
		rc = tl_encode_columns(u->schema, (enum tl_batch_table)t, cols, TL_ENCODE_MAX_COLS,
		        &u->n_layout[t]);
		u->id_col[t] = -1;
		for (uint32_t i = 0; i < u->n_layout[t] && rc == 0; i++) {
			if ((rc = layout_of(cols[i].type, &u->layout[t][i])) < 0)
				TL_ERR("uplink: no row layout for column type %s", cols[i].type);
			if (strcmp(cols[i].name, "event_id") == 0 && u->layout[t][i] == COL_FIXED16)
				u->id_col[t] = (int)i;
		}
	}
	free(cols);
	return rc;
}

/* A LEB128 length of at most 5 bytes (ClickHouse's sizes fit in 32 bits here). */
static inline bool
get_leb(const uint8_t **pp, const uint8_t *e, uint64_t *v)
{
	const uint8_t *p = *pp;

	*v = 0;
	for (unsigned sh = 0;; sh += 7) {
		if (p >= e || sh > 28)
			return false;
		*v |= (uint64_t)(*p & 0x7f) << sh;
		if (!(*p++ & 0x80))
			break;
	}
	*pp = p;
	return true;
}

/*
 * Walk the row [p, p + len) of table @p t column by column. @p stop < 0: @return whether
 * it is exactly one row. Else @return whether column @p stop is reached, with *at set to
 * its bytes (the value after a Nullable's flag).
 */
static bool
row_walk(const struct tl_uplink *u, unsigned t, const uint8_t *p, uint32_t len, int stop,
        const uint8_t **at)
{
	const uint8_t *e = p + len;

	for (uint32_t c = 0; c < u->n_layout[t]; c++) {
		if ((int)c == stop) {
			*at = p;
			return true;
		}
		uint8_t code = u->layout[t][c];
		uint64_t n = 0;

		if (code & COL_NULLABLE) {
			if (p >= e || *p > 1)
				return false;
			if (*p++ == 1)
				continue;
			code &= (uint8_t)~COL_NULLABLE;
		}
		switch (code) {
		case COL_FIXED1:
			n = 1;
			break;
		case COL_FIXED4:
			n = 4;
			break;
		case COL_FIXED8:
			n = 8;
			break;
		case COL_FIXED16:
			n = 16;
			break;
		case COL_STRINGS: {
			uint64_t k;

			/* Each string at least one byte: a count beyond the row is no row. */
			if (!get_leb(&p, e, &k) || k > (uint64_t)(e - p))
				return false;
			for (; k > 0; k--)
				if (!get_leb(&p, e, &n) || n > (uint64_t)(e - p))
					return false;
				else
					p += n;
			n = 0;
			break;
		}
		default: /* COL_STRING: LEB128 length, then the bytes */
			if (!get_leb(&p, e, &n))
				return false;
			break;
		}
		if (n > (uint64_t)(e - p))
			return false;
		p += n;
	}
	return stop < 0 && p == e;
}

/* @return true if the row [p, p + len) is exactly one row of table @p t. */
static bool
row_valid(const struct tl_uplink *u, unsigned t, const uint8_t *p, uint32_t len)
{
	return row_walk(u, t, p, len, -1, NULL);
}

static struct slot *
free_slot(struct tl_uplink *u)
{
	for (unsigned i = 0; i < u->n_slots; i++)
		if (u->slots[i].state == SLOT_FREE)
			return &u->slots[i];
	return NULL;
}

/* A filling slot is complete: it is sent once the read transaction has ended. */
static void
seal_slot(struct tl_uplink *u, struct slot *sl)
{
	if (u->filling[sl->table] == sl)
		u->filling[sl->table] = NULL;
	u->ready[u->n_ready++] = sl;
	set_state(sl, SLOT_WAIT); /* not FREE, not FILLING: nobody else takes it */
}

/* No more records for a streamed INSERT: its body ends once the transfer has the rest. */
static void
end_stream(struct tl_uplink *u, struct slot *sl)
{
	if (u->filling[sl->table] == sl)
		u->filling[sl->table] = NULL;
	sl->stream_end = true;
	sl->stream_more = true;
}

static bool
stream_open(const struct slot *sl)
{
	return sl->streaming && !sl->stream_end;
}

/* The filling slot takes no more records: seal it, or end its stream. */
static void
close_filling(struct tl_uplink *u, struct slot *sl)
{
	if (sl->streaming)
		end_stream(u, sl);
	else
		seal_slot(u, sl);
}

/* tl_ch_pull_fn of a streamed INSERT: the records taken so far, then the end. */
static long
stream_pull(void *user, size_t off, const uint8_t **data)
{
	struct slot *sl = user;
	size_t have = sl->off[sl->n_keys];

	sl->pulled = off;
	if (off < have) {
		*data = sl->body + off;
		return (long)(have - off);
	}
	if (!sl->stream_end)
		return -EAGAIN;
	sl->stream_eof = true;
	return 0;
}

static bool
fits(const struct slot *sl, const struct tl_batch_view *v, uint64_t insert_bytes)
{
	return sl->n_keys < MAX_KEYS && sl->raw + v->raw_len <= insert_bytes &&
	       sl->n_rows + v->hdr.rows <= INSERT_ROWS;
}

/* Uncompressed bytes a stream holds that its transfer has not taken yet. */
static uint64_t
stream_backlog(const struct slot *sl)
{
	size_t have = sl->off[sl->n_keys];

	return have > sl->pulled
	               ? (uint64_t)((double)(have - sl->pulled) / (double)have * (double)sl->raw)
	               : 0;
}

/*
 * The open stream of the record's table that takes it: the emptiest one that fits (ended
 * are those it does not fit), or NULL to open another one. ClickHouse parses each INSERT
 * on one thread: when the server falls behind one stream (STREAM_SPLIT bytes wait in
 * it), up to uplink.streams run side by side, each still one part.
 */
static struct slot *
pick_stream(struct tl_uplink *u, const struct tl_batch_view *v, bool pass)
{
	enum tl_batch_table t = (enum tl_batch_table)v->hdr.table;
	struct slot *best = NULL;
	unsigned open = 0;

	for (unsigned i = 0; i < u->n_slots; i++) {
		struct slot *sl = &u->slots[i];

		if (!stream_open(sl) || sl->table != t || sl->mode != MODE_RECORDS)
			continue;
		if (sl->framed != pass || !fits(sl, v, u->conf.insert_bytes)) {
			end_stream(u, sl);
			continue;
		}
		open++;
		if (best == NULL || sl->raw < best->raw)
			best = sl;
	}
	if (best != NULL && (open >= u->conf.streams || stream_backlog(best) < STREAM_SPLIT ||
	                            free_slot(u) == NULL)) {
		u->filling[t] = best;
		return best;
	}
	u->filling[t] = NULL;
	return NULL;
}

/* Is record @p key in one of the slots (being sent, or waiting to be)? */
static bool
held(const struct tl_uplink *u, uint64_t key)
{
	for (unsigned i = 0; i < u->n_slots; i++) {
		const struct slot *sl = &u->slots[i];

		if (sl->state == SLOT_FREE)
			continue;
		for (uint32_t k = 0; k < sl->n_keys; k++)
			if (sl->keys[k] == key)
				return true;
	}
	return false;
}

/*
 * tl_spool_read callback: append the record to the filling slot of its table (taking a
 * free slot if there is none, sealing the current one if the record does not fit).
 * Records of the tables interleave in the spool; a slot per table keeps each insert
 * large. No free slot: stop here, the record is read again later.
 */
static int
take_record(void *arg, const struct tl_spool_rec *rec)
{
	struct tl_uplink *u = arg;
	struct tl_batch_view v;
	const uint8_t *rows;
	struct slot *sl;
	size_t at, len;
	uint32_t r0;
	bool pass;

	if (tl_batch_parse(rec->data, rec->len, &v) != 0) {
		/* Only the default route's uplink: one of them says so, once. */
		if (u->route == 0)
			quarantine(u, rec->key, 0, "not a valid batch");
		return 0;
	}
	if (v.hdr.route != u->route)
		return 0; /* another route's uplink sends it */
	if (u->fo != NULL) {
		bool claim = false;

		if (rec->key < u->rescan_end &&
		        (!tl_failover_claims(u->fo, v.hdr.table) || held(u, rec->key)))
			return 0; /* a re-read: only records nobody has claimed are new */
		if (tl_failover_take(u->fo, u->target, v.hdr.table, rec->key, rec->owner, &claim) !=
		        TL_FAILOVER_TAKE)
			return 0;
		if (claim) {
			if (u->n_claims == MAX_KEYS) {
				tl_failover_unclaim(u->fo, u->target, rec->key);
				return -1;
			}
			u->claims[u->n_claims++] = rec->key;
		}
	}
	pass = u->pass_lz4 && (v.hdr.flags & TL_BATCH_F_LZ4);
	sl = u->filling[v.hdr.table];
	if (sl != NULL && sl->streaming) {
		sl = pick_stream(u, &v, pass);
	} else if (sl != NULL && (sl->framed != pass || !fits(sl, &v, u->conf.insert_bytes))) {
		close_filling(u, sl);
		sl = NULL;
	}
	if (sl == NULL) {
		if ((sl = free_slot(u)) == NULL)
			return -1;
		sl->invalid = false;
		sl->mode = MODE_RECORDS;
		sl->table = (enum tl_batch_table)v.hdr.table;
		sl->n_keys = 0;
		sl->n_rows = 0;
		sl->off[0] = 0;
		sl->row_at[0] = 0;
		sl->serial = -1;
		sl->fill_ns = mono_ns();
		sl->streaming = false;
		sl->framed = pass;
		sl->raw = 0;
		sl->pulled = 0;
		memset(sl->partial, 0, sizeof(sl->partial));
		set_state(sl, SLOT_FILLING);
		u->filling[sl->table] = sl;
	}
	at = sl->off[sl->n_keys];
	r0 = sl->row_at[sl->n_keys];
	len = pass ? TL_CHBLOCK_OVERHEAD + (size_t)v.hdr.body_len : v.raw_len;
	if (grow((void **)&sl->body, &sl->cap, at + len, 1, 1u << 20) < 0 ||
	        grow((void **)&sl->row_end, &sl->row_cap, (size_t)r0 + v.hdr.rows, sizeof(uint32_t),
	                4096) < 0)
		return -1;
	if (pass) {
		/* As stored, behind ClickHouse's block header and checksum. The rows are only
		 * decompressed to be checked. */
		rows = NULL;
		if (tl_chblock_wrap_lz4(v.body, v.hdr.body_len, v.raw_len, sl->body + at,
		            sl->cap - at, &len) != 0 ||
		        (u->conf.verify_rows && (grow((void **)&u->check, &u->check_cap, v.raw_len,
		                                         1, 1u << 20) < 0 ||
		                                        tl_batch_inflate_with(u->dec, &v, u->check,
		                                                v.raw_len, &rows) != 0))) {
			quarantine(u, rec->key, v.hdr.rows, "body does not decompress");
			return 0;
		}
	} else if (v.hdr.flags & TL_BATCH_F_COMPRESSED) {
		if (tl_batch_inflate_with(u->dec, &v, sl->body + at, v.raw_len, &rows) != 0) {
			quarantine(u, rec->key, v.hdr.rows, "body does not decompress");
			return 0;
		}
	} else {
		memcpy(sl->body + at, v.body, v.raw_len);
		rows = sl->body + at;
	}
	/* Row ends stay with the record: a record ClickHouse refuses is split by rows. */
	for (uint32_t i = 0; i < v.hdr.rows; i++) {
		uint32_t st = tl_batch_row_start(&v, i), en = tl_batch_row_end(&v, i);

		sl->row_end[r0 + i] = en;
		if (u->conf.verify_rows && !sl->invalid &&
		        !row_valid(u, v.hdr.table, rows + st, en - st)) {
			if (sl->n_keys > 0) {
				/* Not with the others: they go now, this one alone later. */
				close_filling(u, sl);
				return -1;
			}
			sl->invalid = true;
		}
	}
	sl->keys[sl->n_keys] = rec->key;
	sl->ids[sl->n_keys] = v.hdr.batch_id;
	sl->rows[sl->n_keys] = v.hdr.rows;
	sl->n_rows += v.hdr.rows;
	sl->n_keys++;
	sl->off[sl->n_keys] = (uint32_t)(at + len);
	sl->row_at[sl->n_keys] = r0 + v.hdr.rows;
	sl->raw += v.raw_len;
	u->last_take_ns = mono_ns();
	if (sl->streaming) {
		sl->stream_more = true;
	} else if (sl->n_keys == 1 && !sl->invalid && u->stream_ok && rec->key >= u->check_below) {
		/* Streamed: submitted after this read, it takes the records that follow. */
		sl->streaming = true;
		sl->stream_end = sl->stream_eof = false;
		u->ready[u->n_ready++] = sl;
	}
	if (sl->n_keys == MAX_KEYS || sl->invalid)
		close_filling(u, sl);
	return u->n_ready == TL_CH_MAX_IN_FLIGHT ? 1 : 0;
}

static void
range(const struct slot *sl, uint32_t *a, uint32_t *b)
{
	*a = sl->serial < 0 ? 0 : (uint32_t)sl->serial;
	*b = sl->serial < 0 ? sl->n_keys : (uint32_t)sl->serial + 1;
}

static uint32_t
row_start(const uint32_t *end, uint32_t i)
{
	return i == 0 ? 0 : end[i - 1];
}

static int
submit(struct tl_uplink *u, struct slot *sl)
{
	struct bisect *b = sl->bis;
	struct tl_ch_insert ins;
	uint32_t a = 0, e = 0;
	int rc;

	memset(&ins, 0, sizeof(ins));
	ins.table = tname(u, sl->table);
	ins.columns = u->cols[sl->table];
	ins.format = "RowBinary";
	ins.user = sl;
	switch (sl->mode) {
	case MODE_RECORDS:
		range(sl, &a, &e);
		ins.id = sl->ids[a];
		ins.body = sl->body + sl->off[a];
		ins.len = sl->off[e] - sl->off[a];
		if (sl->framed)
			ins.kind = TL_CH_BODY_CHLZ4;
		if (sl->streaming) {
			ins.pull = stream_pull;
			a = e = 0; /* its query id: "S0-0" */
		}
		break;
	case MODE_PROBE:
		if (!b->direct) {
			rc = ensure_probe(u, sl->table);
			if (rc == -EAGAIN) {
				wait_backoff(u, sl);
				return rc;
			}
			if (rc < 0)
				b->direct = true;
			else
				ins.table = u->probe[sl->table];
		}
		ins.id = b->batch_id;
		ins.body = b->src + row_start(b->end, b->lo);
		ins.len = b->end[b->hi - 1] - row_start(b->end, b->lo);
		add(&u->st.bisect_inserts, 1);
		break;
	case MODE_GOOD:
		ins.id = b->batch_id;
		ins.body = b->good;
		ins.len = b->good_len;
		break;
	case MODE_DEAD:
		ins.id = b->batch_id;
		ins.table = tname(u, TL_BATCH_DEAD_LETTER);
		ins.columns = u->cols[TL_BATCH_DEAD_LETTER];
		ins.body = b->dead;
		ins.len = b->dead_len;
		break;
	}
	/* Stable for the same rows: a resend while the first attempt still runs is refused
	 * by the server (code 216) instead of landing twice. */
	snprintf(sl->qid, sizeof(sl->qid), "tapline-%016" PRIx64 "-%c%u-%u", ins.id,
	        sl->streaming ? 'S' : "RPGD"[sl->mode],
	        sl -> mode == MODE_RECORDS ? (unsigned)a : (unsigned)(b ? b->lo : 0),
	        sl -> mode == MODE_RECORDS ? (unsigned)e : (unsigned)(b ? b->hi : 0));
	ins.query_id = sl->qid;
	rc = tl_ch_submit(u->ch, &ins);
	if (rc < 0 && sl->streaming) {
		/* Sent whole later, with the records it has by then. */
		if (u->filling[sl->table] == sl)
			u->filling[sl->table] = NULL;
		sl->streaming = false;
	}
	if (rc < 0) {
		wait_backoff(u, sl);
		return rc;
	}
	set_state(sl, SLOT_SENT);
	add(&u->st.in_flight, 1);
	return 0;
}

/* Send now, or first ask what landed (startup, after an ambiguous answer). */
static void
send_or_check(struct tl_uplink *u, struct slot *sl, bool check)
{
	sl->attempt = 0;
	sl->maybe_data = 0;
	sl->check_first = check;
	if (!check) {
		submit(u, sl);
		return;
	}
	set_state(sl, SLOT_WAIT);
	sl->due_ns = 0;
}

/*
 * Coalesce committed records into inserts and send them. ClickHouse wants few, large
 * inserts (every insert is a part to write and later merge), while freshness wants
 * records sent at once. So: when nothing is in flight, whatever is committed goes now;
 * while inserts are in flight, a partly filled insert waits for more records until it is
 * full or its first record has waited uplink.insert_delay (and an idle uplink waits
 * INSERT_MIN_DELAY_NS for company). Under load inserts grow to uplink.insert_bytes (few
 * parts for ClickHouse to write and merge); at low rates every record goes out within
 * tens of milliseconds of its commit.
 */
static void start_bisect(
        struct tl_uplink *u, struct slot *sl, uint32_t rec, const char *why, bool refused_whole);

/*
 * The first healthy target changed. If it is now this one, read the spool again from
 * the start for records nobody claimed (skipped while another target was preferred);
 * they may have been sent by nobody, but a check costs one count: ask first.
 */
static void
check_preference(struct tl_uplink *u)
{
	uint64_t epoch;
	unsigned p = tl_failover_preferred(u->fo, &epoch);

	if (epoch == u->epoch)
		return;
	u->epoch = epoch;
	if (p != u->target || u->cursor <= 1)
		return;
	if (u->cursor > u->rescan_end)
		u->rescan_end = u->cursor;
	if (u->cursor > u->check_below)
		u->check_below = u->cursor;
	u->cursor = 1;
	TL_INFO("uplink: target %u preferred now: looking for batches nobody sent", u->target);
}

/*
 * A batch is claimed before it is first sent, and the claim is durable before any of
 * its bytes leave: after a crash the batch goes only to the target that may have it.
 */
static void
make_claims_durable(struct tl_uplink *u)
{
	int rc = 0;

	for (unsigned i = 0; i < u->n_claims && rc == 0; i++)
		rc = tl_spool_claim(u->spool, u->claims[i], u->target);
	if (rc == 0 && u->n_claims > 0)
		rc = tl_spool_sync_acks(u->spool, 10ull * 1000000000ull);
	if (rc < 0)
		/* A failed spool writer stops the appliance's intake too; the batches still go
		 * out, only a crash before they are acked could send them twice. */
		TL_LOG_RATELIMITED(TL_LOG_ERR, 5, "uplink: claims not stored: %s", tl_strerror(rc));
	add(&u->st.claims, u->n_claims);
	u->n_claims = 0;
}

static void
fill_slots(struct tl_uplink *u)
{
	bool idle = __atomic_load_n(&u->st.in_flight, __ATOMIC_RELAXED) == 0, writing;
	uint64_t now, idle_ns, idle_min;
	int n;

	if (u->fo != NULL)
		check_preference(u);
	do {
		uint64_t next = u->cursor;

		u->n_ready = 0;
		u->n_claims = 0;
		n = tl_spool_read(u->spool, u->cursor, MAX_KEYS, take_record, u, &next);
		if (n > 0)
			u->cursor = next;
		if (u->rescan_end != 0 && u->cursor >= u->rescan_end)
			u->rescan_end = 0;
		make_claims_durable(u);
		for (unsigned i = 0; i < u->n_ready; i++) {
			struct slot *sl = u->ready[i];

			if (sl->streaming && sl->state == SLOT_FILLING)
				submit(u, sl);
			else if (sl->streaming)
				continue; /* ended during the same read: already submitted */
			else if (sl->invalid)
				start_bisect(
				        u, sl, 0, "rows do not match the table's columns", false);
			else
				send_or_check(u, sl, sl->keys[0] < u->check_below);
		}
	} while (n > 0 && (u->n_ready > 0 || n == MAX_KEYS));
	now = mono_ns();
	idle_ns = now - u->last_take_ns;
	/* Someone waits in tl_uplink_drain() for what is committed: no company is coming. */
	idle_min = __atomic_load_n(&u->draining, __ATOMIC_RELAXED) ? STREAM_POLL_MS * MS_NS
	                                                           : STREAM_IDLE_NS;
	/* A commit under way (an fsync can take tens of milliseconds) brings more. */
	writing = idle_ns >= idle_min && tl_spool_writing(u->spool);
	for (unsigned i = 0; i < u->n_slots; i++) {
		struct slot *sl = &u->slots[i];

		/* Idle means no record for any table: under load, a table with few rows
		 * (error_events) keeps its stream open rather than making a part per record. */
		if (stream_open(sl) &&
		        (now - sl->fill_ns >= u->stream_max_ns || idle_ns >= STREAM_IDLE_MAX_NS ||
		                (idle_ns >= idle_min && !writing)))
			end_stream(u, sl);
	}
	for (unsigned i = 0; i < u->n_slots; i++) {
		struct slot *sl = &u->slots[i];

		if (sl->streaming && sl->stream_more && sl->state == SLOT_SENT) {
			sl->stream_more = false;
			tl_ch_resume(u->ch, sl);
		}
	}
	for (int t = 0; t < TL_BATCH_TABLE_MAX; t++) {
		struct slot *sl = u->filling[t];

		if (sl == NULL || sl->streaming ||
		        !((idle && now - sl->fill_ns >= INSERT_MIN_DELAY_NS) ||
		                now - sl->fill_ns >= u->conf.insert_delay))
			continue;
		u->filling[t] = NULL;
		send_or_check(u, sl, sl->keys[0] < u->check_below);
	}
}

/* --- dead_letter rows --- */

static uint8_t *
put_leb(uint8_t *p, uint64_t v)
{
	while (v >= 0x80) {
		*p++ = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	*p++ = (uint8_t)v;
	return p;
}

static uint8_t *
put_str(uint8_t *p, const void *s, size_t len)
{
	p = put_leb(p, len);
	memcpy(p, s, len);
	return p + len;
}

/*
 * Append a dead_letter row for a refused row, in the column order of
 * tl_encode_columns(TL_BATCH_DEAD_LETTER) (checked at start): ingestion_time DateTime,
 * ingestion_time_ns Int64, appliance_id String, producer_id UInt64, reason String,
 * raw String, batch_id UInt64.
 */
static int
add_dead_row(struct tl_uplink *u, struct bisect *b, const uint8_t *raw, uint32_t raw_len,
        const char *why)
{
	char reason[sizeof(REASON_PREFIX) + TL_CH_MSG_LEN];
	char appl[APPLIANCE_MAX + 1];
	int64_t now = wall_ns(), secs;
	size_t rl, al, need;
	uint8_t *p;

	rl = (size_t)snprintf(reason, sizeof(reason), REASON_PREFIX "%s", why);
	if (rl >= sizeof(reason))
		rl = sizeof(reason) - 1;
	pthread_mutex_lock(&u->lock);
	memcpy(appl, u->appliance, sizeof(appl));
	pthread_mutex_unlock(&u->lock);
	al = strlen(appl);
	need = b->dead_len + 4 + 8 + 10 + al + 8 + 10 + rl + 10 + raw_len + 8;
	if (grow((void **)&b->dead, &b->dead_cap, need, 1, 4096) < 0)
		return -ENOMEM;
	secs = now <= 0 ? 0 : now / 1000000000 > UINT32_MAX ? UINT32_MAX : now / 1000000000;
	p = b->dead + b->dead_len;
	tl_batch_put32(p, (uint32_t)secs);
	tl_batch_put64(p + 4, (uint64_t)now);
	p = put_str(p + 12, appl, al);
	tl_batch_put64(p, 0); /* producer_id: not known here */
	p = put_str(p + 8, reason, rl);
	p = put_str(p, raw, raw_len);
	tl_batch_put64(p, b->batch_id);
	b->dead_len = (size_t)(p + 8 - b->dead);
	b->n_bad++;
	return 0;
}

/* The dead_letter columns the rows above are written in. */
static int
check_dead_letter_columns(void)
{
	static const char *const want[][2] = {
	        {"ingestion_time", "DateTime"},
	        {"ingestion_time_ns", "Int64"},
	        {"appliance_id", "String"},
	        {"producer_id", "UInt64"},
	        {"reason", "String"},
	        {"raw", "String"},
	        {"batch_id", "UInt64"},
	};
	struct tl_encode_col cols[16];
	uint32_t n = 0;

	if (tl_encode_columns(NULL, TL_BATCH_DEAD_LETTER, cols, 16, &n) < 0 ||
	        n != sizeof(want) / sizeof(want[0]))
		return -EINVAL;
	for (uint32_t i = 0; i < n; i++)
		if (strcmp(cols[i].name, want[i][0]) || strcmp(cols[i].type, want[i][1]))
			return -EINVAL;
	return 0;
}

/* --- bisection --- */

static void free_bisect(struct bisect *b);

static void
push(struct bisect *b, uint32_t lo, uint32_t hi)
{
	/* Depth-first, lower half first: at most one pending sibling per level. */
	b->stack[b->depth][0] = lo;
	b->stack[b->depth][1] = hi;
	b->depth++;
}

/* Rows [lo, hi) were refused with @p why: split them, or dead-letter the one row. */
static int
refused(struct tl_uplink *u, struct bisect *b, uint32_t lo, uint32_t hi, const char *why)
{
	uint32_t mid = lo + (hi - lo) / 2;

	if (hi - lo == 1) {
		uint32_t s = row_start(b->end, lo);

		TL_LOG_RATELIMITED(TL_LOG_WARN, 10,
		        "uplink: row %u of batch %" PRIu64 " refused, dead-lettered: %s", lo,
		        b->batch_id, why);
		return add_dead_row(u, b, b->src + s, b->end[lo] - s, why);
	}
	if (b->depth + 2 > STACK_MAX)
		return -E2BIG; /* cannot happen for rows <= TL_BATCH_MAX_ROWS */
	push(b, mid, hi);
	push(b, lo, mid);
	return 0;
}

/* Rows [lo, hi) were taken by the probe table: keep them for the final insert. */
static void
accepted(struct bisect *b, uint32_t lo, uint32_t hi)
{
	uint32_t s = row_start(b->end, lo), len = b->end[hi - 1] - s;

	memcpy(b->good + b->good_len, b->src + s, len);
	for (uint32_t i = lo; i < hi; i++)
		b->good_end[b->n_good++] = (uint32_t)b->good_len + b->end[i] - s;
	b->good_len += len;
}

static void finish_bisect(struct tl_uplink *u, struct slot *sl);

/* Next probe, or the final inserts once every range is settled. */
static void
bisect_next(struct tl_uplink *u, struct slot *sl)
{
	struct bisect *b = sl->bis;

	sl->attempt = 0;
	sl->maybe_data = 0;
	sl->check_first = false;
	if (b->depth > 0) {
		b->depth--;
		b->lo = b->stack[b->depth][0];
		b->hi = b->stack[b->depth][1];
		sl->mode = MODE_PROBE;
		submit(u, sl);
		return;
	}
	/* Both final inserts are counted first: a previous process may have made them. */
	if (b->n_good > 0 && sl->mode != MODE_GOOD && sl->mode != MODE_DEAD) {
		sl->mode = MODE_GOOD;
		send_or_check(u, sl, true);
		return;
	}
	if (b->n_bad > 0 && sl->mode != MODE_DEAD) {
		sl->mode = MODE_DEAD;
		send_or_check(u, sl, true);
		return;
	}
	finish_bisect(u, sl);
}

/* No memory for a dead row: drop the bisection, the record is retried as a whole. */
static void
abandon_bisect(struct tl_uplink *u, struct slot *sl)
{
	wait_backoff(u, sl);
	free_bisect(sl->bis);
	sl->bis = NULL;
	sl->mode = MODE_RECORDS;
}

/* Uncompressed bytes of record @p rec. */
static uint32_t
record_raw_len(const struct slot *sl, uint32_t rec)
{
	return sl->row_end[sl->row_at[rec] + sl->rows[rec] - 1];
}

/*
 * The rows of record @p rec: in the body, or (a framed record) decompressed into *own,
 * which the caller frees. @return them, or NULL (no memory, or a block that does not
 * decode: the record is retried later).
 */
static const uint8_t *
record_rows(const struct slot *sl, uint32_t rec, uint8_t **own)
{
	uint32_t raw = record_raw_len(sl, rec);
	size_t got = 0, err_off;

	*own = NULL;
	if (!sl->framed)
		return sl->body + sl->off[rec];
	if ((*own = malloc(raw)) == NULL ||
	        tl_chblock_decode(sl->body + sl->off[rec], sl->off[rec + 1] - sl->off[rec], *own,
	                raw, &got, &err_off) != 0 ||
	        got != raw) {
		free(*own);
		*own = NULL;
		return NULL;
	}
	return *own;
}

/*
 * Split record @p rec of the slot by rows: it was refused as a whole (@p refused_whole),
 * or some of its rows were found in ClickHouse (a previous process bisected it).
 */
static void
start_bisect(
        struct tl_uplink *u, struct slot *sl, uint32_t rec, const char *why, bool refused_whole)
{
	struct bisect *b = calloc(1, sizeof(*b));
	uint32_t n = sl->rows[rec];

	if (b != NULL) {
		b->good = malloc(record_raw_len(sl, rec));
		b->good_end = malloc(sizeof(uint32_t) * n);
		b->src = record_rows(sl, rec, &b->own);
	}
	if (b == NULL || b->good == NULL || b->good_end == NULL || b->src == NULL) {
		/* Try again later: the record stays in the spool meanwhile. A record found in
		 * part is counted again first, never sent whole. */
		free_bisect(b);
		TL_LOG_RATELIMITED(TL_LOG_ERR, 5, "uplink: no memory to bisect a batch");
		sl->check_first = !refused_whole;
		wait_backoff(u, sl);
		return;
	}
	b->rec = rec;
	b->batch_id = sl->ids[rec];
	b->end = sl->row_end + sl->row_at[rec];
	b->n = n;
	sl->bis = b;
	sl->mode = MODE_PROBE;
	add(&u->st.records_bisected, 1);
	TL_WARN("uplink: %s: batch %" PRIu64 " (%u rows): bisecting (%s)", tname(u, sl->table),
	        b->batch_id, n, why);
	if (sl->invalid) {
		/* Rows that are not rows of the table die here; the others are taken as the
		 * probe table would take them and go in the final insert. */
		for (uint32_t i = 0, run = 0; i <= n; i++) {
			uint32_t st = i < n ? row_start(b->end, i) : 0;

			if (i < n && row_valid(u, sl->table, b->src + st, b->end[i] - st))
				continue;
			if (i > run)
				accepted(b, run, i);
			run = i + 1;
			if (i == n)
				break;
			add(&u->st.rows_invalid, 1);
			TL_LOG_RATELIMITED(TL_LOG_WARN, 10,
			        "uplink: row %u of batch %" PRIu64
			        " is not a row of %s: dead-lettered",
			        i, b->batch_id, tname(u, sl->table));
			if (add_dead_row(u, b, b->src + st, b->end[i] - st,
			            "row does not match the columns of its table") < 0) {
				abandon_bisect(u, sl);
				return;
			}
		}
	} else if (!refused_whole)
		push(b, 0, n);
	else if (refused(u, b, 0, n, why) < 0) {
		abandon_bisect(u, sl);
		return;
	}
	bisect_next(u, sl);
}

/*
 * The table refused the rows the probe table took: go on against the table itself,
 * over those rows.
 * @return 0; -ENOMEM (nothing changed: the good rows are sent again later).
 */
static int
fall_back_direct(struct tl_uplink *u, struct slot *sl, const char *why)
{
	struct bisect *b = sl->bis;
	uint8_t *good = malloc(b->good_len);
	uint32_t *good_end = malloc(sizeof(uint32_t) * b->n_good);

	if (good == NULL || good_end == NULL) {
		free(good);
		free(good_end);
		return -ENOMEM;
	}
	TL_WARN("uplink: %s refused rows its probe table took (%s): bisecting against it",
	        tname(u, sl->table), why);
	free(b->own);
	free(b->own_end);
	b->own = b->good;
	b->own_end = b->good_end;
	b->src = b->own;
	b->end = b->own_end;
	b->n = b->n_good;
	b->good = good;
	b->good_end = good_end;
	b->good_len = 0;
	b->n_good = 0;
	b->direct = true;
	if (refused(u, b, 0, b->n, why) < 0)
		push(b, 0, b->n); /* no memory for the dead row: probe the row again */
	return 0;
}

/* --- results --- */

/* Record @p key of table @p t is in this target: deleted once every target that must
 * have it does. */
static void
ack(struct tl_uplink *u, unsigned t, uint64_t key)
{
	if (u->fo == NULL || tl_failover_delivered(u->fo, u->target, t, key))
		tl_spool_ack(u->spool, key);
}

static void
delivered(struct tl_uplink *u, struct slot *sl, uint32_t a, uint32_t b)
{
	for (uint32_t k = a; k < b; k++) {
		ack(u, sl->table, sl->keys[k]);
		add(&u->st.rows_delivered[sl->table], sl->rows[k]);
	}
	add(&u->st.records_delivered, b - a);
}

static int
cmp_id(const void *a, const void *b)
{
	return memcmp(a, b, 16);
}

/*
 * The event ids of batch @p id in table @p t, sorted: 16 bytes each.
 * @return 0 and *ids (malloc'd) and *n; -1 if ClickHouse could not be asked or answered
 *         something that is not a list of ids.
 */
static int
landed_ids(struct tl_uplink *u, enum tl_batch_table t, uint64_t id, uint8_t **ids, uint64_t *n)
{
	char sql[512], *reply = NULL;
	size_t len = 0, cap;
	uint8_t *v;
	uint64_t k = 0;

	add(&u->st.checks, 1);
	snprintf(sql, sizeof(sql),
	        "SELECT hex(event_id) FROM `%s`.`%s` WHERE batch_id = %" PRIu64
	        " FORMAT TabSeparated",
	        tl_ch_database(u->ch), tname(u, t), id);
	if (tl_ch_query(u->ch, sql, &reply, &len) < 0)
		return -1;
	cap = len / 33 + 1; /* 32 hex digits and a newline per id */
	if ((v = malloc(cap * 16)) == NULL) {
		free(reply);
		return -1;
	}
	for (size_t at = 0; at + 32 <= len && k < cap; at += 33, k++) {
		for (unsigned i = 0; i < 16; i++) {
			unsigned x;

			if (sscanf(reply + at + 2 * i, "%2x", &x) != 1)
				goto bad;
			v[k * 16 + i] = (uint8_t)x;
		}
		if (at + 32 < len && reply[at + 32] != '\n')
			goto bad;
	}
	free(reply);
	qsort(v, k, 16, cmp_id);
	*ids = v;
	*n = k;
	return 0;
bad:
	free(reply);
	free(v);
	return -1;
}

/*
 * Record @p rec was found in part: a previous attempt was cut short and 18.16 kept the
 * rows it had (ClickHouse issue 9666), or a previous process was bisecting it. Send only
 * the rows whose event id is not there, straight into the table (bisected as usual if
 * refused). Tables without event ids (dead_letter) are bisected as a whole.
 */
static void
start_repair(struct tl_uplink *u, struct slot *sl, uint32_t rec)
{
	const uint8_t *src;
	const uint32_t *end = sl->row_end + sl->row_at[rec];
	uint32_t n = sl->rows[rec], m = 0;
	struct bisect *b = NULL;
	uint8_t *ids = NULL, *own = NULL;
	uint64_t n_ids = 0;
	size_t at = 0;

	if (u->id_col[sl->table] < 0) {
		start_bisect(u, sl, rec, "some of its rows are in ClickHouse already", false);
		return;
	}
	if ((src = record_rows(sl, rec, &own)) == NULL ||
	        landed_ids(u, sl->table, sl->ids[rec], &ids, &n_ids) < 0)
		goto later;
	if ((b = calloc(1, sizeof(*b))) == NULL ||
	        (b->own = malloc(record_raw_len(sl, rec))) == NULL ||
	        (b->own_end = malloc(sizeof(uint32_t) * n)) == NULL ||
	        (b->good = malloc(1)) == NULL || (b->good_end = malloc(sizeof(uint32_t))) == NULL)
		goto later;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t st = row_start(end, i);
		const uint8_t *id = NULL;

		if (row_walk(u, sl->table, src + st, end[i] - st, u->id_col[sl->table], &id) &&
		        bsearch(id, ids, n_ids, 16, cmp_id) != NULL)
			continue;
		memcpy(b->own + at, src + st, end[i] - st);
		at += end[i] - st;
		b->own_end[m++] = (uint32_t)at;
	}
	free(ids);
	free(own);
	add(&u->st.records_repaired, 1);
	add(&u->st.rows_found, n_ids);
	add(&u->st.rows_delivered[sl->table], n_ids);
	TL_WARN("uplink: %s: batch %" PRIu64 ": %" PRIu64 " of its %u rows found in ClickHouse; "
	        "sending the other %u",
	        tname(u, sl->table), sl->ids[rec], n_ids, n, m);
	b->rec = rec;
	b->batch_id = sl->ids[rec];
	b->direct = true;
	b->landed = n_ids;
	b->src = b->own;
	b->end = b->own_end;
	b->n = m;
	sl->bis = b;
	sl->mode = MODE_PROBE;
	if (m > 0)
		push(b, 0, m);
	bisect_next(u, sl);
	return;
later:
	free(ids);
	free(own);
	free_bisect(b);
	sl->partial[rec] = true;
	sl->check_first = true; /* counted again first, never sent whole */
	wait_backoff(u, sl);
}

/* Serial mode: send the current record alone, or repair it if it is partly there. */
static void
send_serial(struct tl_uplink *u, struct slot *sl)
{
	uint32_t k = (uint32_t)sl->serial;

	if (sl->partial[k]) {
		sl->partial[k] = false;
		sl->attempt = 0;
		sl->check_first = false;
		start_repair(u, sl, k);
		return;
	}
	send_or_check(u, sl, false);
}

/* Move on after records [a, b) are settled: the next record in serial mode, or done. */
static void
advance(struct tl_uplink *u, struct slot *sl)
{
	sl->mode = MODE_RECORDS;
	if (sl->serial >= 0 && (uint32_t)++sl->serial < sl->n_keys) {
		send_serial(u, sl);
		return;
	}
	set_state(sl, SLOT_FREE);
}

static void
free_bisect(struct bisect *b)
{
	if (b == NULL)
		return;
	free(b->own);
	free(b->own_end);
	free(b->good);
	free(b->good_end);
	free(b->dead);
	free(b);
}

static void
finish_bisect(struct tl_uplink *u, struct slot *sl)
{
	struct bisect *b = sl->bis;

	TL_WARN("uplink: batch %" PRIu64 " settled: %" PRIu64 " rows delivered, %u dead-lettered",
	        b->batch_id, b->landed, b->n_bad);
	ack(u, sl->table, sl->keys[b->rec]);
	add(b->n_bad ? &u->st.records_quarantined : &u->st.records_delivered, 1);
	free_bisect(b);
	sl->bis = NULL;
	advance(u, sl);
}

/* The slot's current insert is confirmed (answered OK, or found by a count). */
static void
confirmed(struct tl_uplink *u, struct slot *sl)
{
	struct bisect *b = sl->bis;
	uint32_t a, e;

	switch (sl->mode) {
	case MODE_RECORDS:
		range(sl, &a, &e);
		delivered(u, sl, a, e);
		advance(u, sl);
		return;
	case MODE_PROBE:
		if (b->direct) {
			b->landed += b->hi - b->lo;
			add(&u->st.rows_delivered[sl->table], b->hi - b->lo);
		} else {
			accepted(b, b->lo, b->hi);
		}
		break;
	case MODE_GOOD:
		b->landed += b->n_good;
		add(&u->st.rows_delivered[sl->table], b->n_good);
		b->n_good = 0;
		break;
	case MODE_DEAD:
		add(&u->st.rows_quarantined, b->n_bad);
		break;
	}
	bisect_next(u, sl);
}

/* Keep only the records of the slot whose flag in @p keep is set. */
static void
compact(struct slot *sl, const bool *keep)
{
	uint32_t w = 0, at = 0, rw = 0;

	for (uint32_t k = 0; k < sl->n_keys; k++) {
		uint32_t len = sl->off[k + 1] - sl->off[k], r0 = sl->row_at[k];

		if (!keep[k])
			continue;
		memmove(sl->body + at, sl->body + sl->off[k], len);
		memmove(sl->row_end + rw, sl->row_end + r0, sizeof(uint32_t) * sl->rows[k]);
		sl->keys[w] = sl->keys[k];
		sl->ids[w] = sl->ids[k];
		sl->rows[w] = sl->rows[k];
		sl->partial[w] = sl->partial[k];
		sl->off[w] = at;
		sl->row_at[w] = rw;
		at += len;
		rw += sl->rows[w];
		w++;
	}
	sl->n_keys = w;
	sl->n_rows = rw;
	sl->off[w] = at;
	sl->row_at[w] = rw;
}

/*
 * Records [a, b): ack those ClickHouse has completely, send the others. A record found
 * in part was being bisected by a process that died: bisect it again (its accepted rows
 * will be found, its refused ones dead-lettered).
 */
static void
settle_records(struct tl_uplink *u, struct slot *sl)
{
	uint64_t got[MAX_KEYS];
	bool keep[MAX_KEYS];
	uint32_t a, e, n_keep = 0, n_partial = 0;

	range(sl, &a, &e);
	if (count_rows(u, sl->table, sl->ids + a, e - a, got + a) < 0) {
		wait_backoff(u, sl); /* ask again later */
		return;
	}
	for (uint32_t k = 0; k < sl->n_keys; k++)
		keep[k] = false;
	for (uint32_t k = a; k < e; k++) {
		if (got[k] == 0 || got[k] < sl->rows[k]) {
			keep[k] = true;
			sl->partial[k] = got[k] > 0;
			n_partial += got[k] > 0;
			n_keep++;
			continue;
		}
		if (got[k] != sl->rows[k])
			/* More rows than the batch has: something else wrote this id. Sending
			 * again would add more. */
			TL_ERR("uplink: %" PRIu64 " rows of batch %" PRIu64 " (%u rows) found in "
			       "ClickHouse; not sending it again",
			        got[k], sl->ids[k], sl->rows[k]);
		add(&u->st.rows_found, got[k]);
		delivered(u, sl, k, k + 1);
	}
	sl->check_first = false;
	sl->attempt = 0;
	if (n_keep == 0) {
		advance(u, sl);
		return;
	}
	if (sl->serial < 0 && n_keep < sl->n_keys)
		compact(sl, keep);
	if (n_partial > 0 || sl->serial >= 0) {
		if (sl->serial < 0)
			sl->serial = 0;
		send_serial(u, sl);
		return;
	}
	submit(u, sl);
}

/*
 * A bisection's insert with the batch's id into a table that held @p base such rows
 * before it: landed if the count is @p base + its rows.
 */
static void
settle_bisect(struct tl_uplink *u, struct slot *sl)
{
	struct bisect *b = sl->bis;
	enum tl_batch_table t = sl->mode == MODE_DEAD ? TL_BATCH_DEAD_LETTER : sl->table;
	uint64_t base = 0, rows, got;

	switch (sl->mode) {
	case MODE_PROBE:
		base = b->landed;
		rows = b->hi - b->lo;
		break;
	case MODE_GOOD:
		base = b->landed;
		rows = b->n_good;
		break;
	default:
		/* dead_letter rows carry the batch's id; so do its own rows if it is one. */
		base = sl->table == TL_BATCH_DEAD_LETTER ? b->landed : 0;
		rows = b->n_bad;
		break;
	}
	if (count_rows(u, t, &b->batch_id, 1, &got) < 0) {
		wait_backoff(u, sl);
		return;
	}
	sl->check_first = false;
	if (got == base) {
		sl->attempt = 0;
		submit(u, sl);
		return;
	}
	/* A dead_letter batch's own rows and its refused rows share the id and table. */
	if (got != base + rows && !(sl->mode == MODE_GOOD && t == TL_BATCH_DEAD_LETTER &&
	                                  got == base + rows + b->n_bad))
		TL_ERR("uplink: %" PRIu64 " rows of batch %" PRIu64 " in %s, expected %" PRIu64
		       " or %" PRIu64 "; not sending them again",
		        got, b->batch_id, tname(u, t), base, base + rows);
	add(&u->st.rows_found, rows);
	confirmed(u, sl);
}

static void
rejected(struct tl_uplink *u, struct slot *sl, const char *why)
{
	struct bisect *b = sl->bis;
	uint32_t a, e;
	int rc = 0;

	switch (sl->mode) {
	case MODE_RECORDS:
		range(sl, &a, &e);
		if (e - a > 1) {
			/* Find the bad record: send them one at a time. */
			sl->serial = 0;
			send_serial(u, sl);
			return;
		}
		start_bisect(u, sl, a, why, true);
		return;
	case MODE_PROBE:
		rc = refused(u, b, b->lo, b->hi, why);
		break;
	case MODE_GOOD:
		rc = fall_back_direct(u, sl, why);
		break;
	case MODE_DEAD:
		/* Rows written here; a refusal is a bug or a changed table. Never drop. */
		TL_LOG_RATELIMITED(TL_LOG_ERR, 5,
		        "uplink: dead_letter refused %u rows of batch %" PRIu64 ": %s; retrying",
		        b->n_bad, b->batch_id, why);
		wait_backoff(u, sl);
		return;
	}
	if (rc < 0) {
		/* No memory: the same insert is made (and refused) again later. */
		TL_LOG_RATELIMITED(TL_LOG_ERR, 5, "uplink: bisection of batch %" PRIu64 ": %s",
		        b->batch_id, tl_strerror(rc));
		wait_backoff(u, sl);
		return;
	}
	bisect_next(u, sl);
}

static void
on_result(struct tl_uplink *u, const struct tl_ch_result *r)
{
	struct slot *sl = r->user;
	enum tl_ch_outcome outcome = r->outcome;

	__atomic_fetch_sub(&u->st.in_flight, 1, __ATOMIC_RELAXED);
	add(&u->st.bytes_sent, r->bytes_sent);
	if (sl->streaming) {
		/* Whatever the answer, the records it has are all it gets; a resend is whole. */
		if (u->filling[sl->table] == sl)
			u->filling[sl->table] = NULL;
		sl->streaming = false;
		if (outcome == TL_CH_OK && !sl->stream_eof)
			/* An answer before the body ended: not a confirmation of every record. */
			outcome = TL_CH_AMBIGUOUS;
		else if (outcome == TL_CH_OK)
			add(&u->st.inserts_streamed, 1);
	}
	{
		unsigned bucket = 0;

		for (uint64_t l = r->latency_ns; l > 1 && bucket < 39; l >>= 1)
			bucket++;
		add(&u->st.latency_ns[bucket], 1);
	}
	/* 18.16 answers a RowBinary string length of 4 GiB or more with "memory limit
	 * exceeded": retryable by its code, but it follows the body. */
	if (outcome == TL_CH_RETRY && (r->flags & TL_CH_F_MAYBE_DATA) &&
	        ++sl->maybe_data >= MAYBE_DATA_TRIES && sl->mode != MODE_DEAD)
		outcome = TL_CH_REJECT;
	else if (outcome != TL_CH_RETRY)
		sl->maybe_data = 0;
	if (u->fo != NULL && (outcome == TL_CH_OK || outcome == TL_CH_AMBIGUOUS ||
	                             (outcome == TL_CH_RETRY && (r->flags & TL_CH_F_TRANSPORT))))
		tl_failover_report(u->fo, u->target, outcome == TL_CH_OK, mono_ns());
	switch (outcome) {
	case TL_CH_OK:
		add(&u->st.inserts_ok, 1);
		sl->attempt = 0;
		confirmed(u, sl);
		break;
	case TL_CH_RETRY:
		add(&u->st.inserts_retry, 1);
		if (r->flags & TL_CH_F_SCHEMA)
			u->need_ddl = true;
		if ((r->flags & TL_CH_F_ENCODING) && r->ch_code == 89)
			u->need_ddl = true; /* the server changed: negotiate again */
		if (r->flags & TL_CH_F_QUERY_RUNNING)
			/* The same rows are still being written by an earlier attempt. */
			sl->check_first = !(sl->mode == MODE_PROBE && !sl->bis->direct);
		TL_LOG_RATELIMITED(TL_LOG_WARN, 5, "uplink: %s: retrying (%s)", tname(u, sl->table),
		        r->message[0] ? r->message : "no answer");
		wait_backoff(u, sl);
		break;
	case TL_CH_AMBIGUOUS:
		add(&u->st.inserts_ambiguous, 1);
		/* A probe table keeps nothing: only inserts into real tables are counted. */
		sl->check_first = !(sl->mode == MODE_PROBE && !sl->bis->direct);
		wait_backoff(u, sl);
		break;
	case TL_CH_REJECT:
	default:
		add(&u->st.inserts_rejected, 1);
		if (sl->mode != MODE_DEAD)
			sl->attempt = 0;
		rejected(u, sl, r->message[0] ? r->message : "refused");
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
		if (!sl->check_first) {
			submit(u, sl);
			continue;
		}
		/* An insert whose answer was lost may still be running: counting now could
		 * miss rows it is about to write, and sending again would repeat them. */
		if (sl->qid[0]) {
			bool running = true;

			if (tl_ch_query_running(u->ch, sl->qid, &running) < 0 || running) {
				wait_backoff(u, sl);
				continue;
			}
		}
		if (sl->mode == MODE_RECORDS)
			settle_records(u, sl);
		else
			settle_bisect(u, sl);
	}
}

/* The caller's statements, in order; on a failure all of them again later. */
static void
run_statements(struct tl_uplink *u, uint64_t now)
{
	int rc = 0;

	if (!__atomic_load_n(&u->stmts_due, __ATOMIC_ACQUIRE) || now < u->stmts_retry_ns)
		return;
	pthread_mutex_lock(&u->lock);
	__atomic_store_n(&u->stmts_due, 0, __ATOMIC_RELAXED);
	for (unsigned i = 0; i < u->n_stmts && rc == 0; i++) {
		char *reply = NULL;

		rc = tl_ch_query(u->ch, u->stmts[i], &reply, NULL);
		free(reply);
		if (rc < 0)
			TL_LOG_RATELIMITED(TL_LOG_WARN, 5,
			        "uplink: statement %u of %u failed (%s); "
			        "retrying",
			        i + 1, u->n_stmts, tl_ch_last_error(u->ch)->message);
	}
	if (rc < 0) {
		__atomic_store_n(&u->stmts_due, 1, __ATOMIC_RELAXED);
		u->stmts_retry_ns =
		        now + tl_ch_backoff_ns(&u->conf, u->stmts_attempt++, next_rand(u));
	} else {
		u->stmts_attempt = 0;
		add(&u->st.statements_run, 1);
	}
	pthread_mutex_unlock(&u->lock);
}

static bool
streams_open(const struct tl_uplink *u)
{
	for (unsigned i = 0; i < u->n_slots; i++)
		if (stream_open(&u->slots[i]))
			return true;
	return false;
}

/*
 * At stop, end open streams and wait a little for their answers: a streamed body cut
 * off by closing the connection is taken by 18.16 as complete up to the last whole row
 * (ClickHouse issue 9666), and its records would then be counted as partly landed at the
 * next start. Whatever is not answered in time is settled at the next start.
 */
static void
end_streams(struct tl_uplink *u, struct tl_ch_result *res)
{
	uint64_t deadline = mono_ns() + STREAM_STOP_NS;
	bool any = false;

	for (unsigned i = 0; i < u->n_slots; i++) {
		struct slot *sl = &u->slots[i];

		if (sl->streaming && sl->state == SLOT_SENT) {
			end_stream(u, sl);
			tl_ch_resume(u->ch, sl);
			any = true;
		}
	}
	while (any && mono_ns() < deadline) {
		int n = tl_ch_poll(u->ch, 10, res, TL_CH_MAX_IN_FLIGHT);

		any = false;
		for (int i = 0; i < n; i++)
			on_result(u, &res[i]);
		for (unsigned i = 0; i < u->n_slots; i++)
			any |= u->slots[i].streaming && u->slots[i].state == SLOT_SENT;
		if (n < 0)
			break;
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

		if (u->prober && tl_failover_check_due(u->fo, u->target, now)) {
			bool ok = tl_ch_ping(u->ch, u->fo_health_timeout) == 0;

			tl_failover_checked(u->fo, u->target, ok, mono_ns());
			if (!ok)
				TL_LOG_RATELIMITED(TL_LOG_WARN, 5,
				        "uplink: target %u failed its health check", u->target);
		}
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
			/* The wire codec (uplink.compression); a failed probe keeps gzip. */
			tl_ch_negotiate(u->ch, NULL);
			u->stream_ok = u->conf.stream && tl_ch_can_stream(u->ch);
			u->pass_lz4 = tl_ch_compression(u->ch) == TL_CH_COMPRESS_LZ4;
			/* The server may be a new one: its statements again too. */
			__atomic_store_n(&u->stmts_due, 1, __ATOMIC_RELEASE);
			u->need_ddl = false;
			u->ddl_attempt = 0;
			__atomic_store_n(&u->st.connected, 1, __ATOMIC_RELAXED);
		}
		run_statements(u, now);
		retry_due(u, now);
		fill_slots(u);
		n = tl_ch_poll(u->ch,
		        streams_open(u)                                       ? STREAM_POLL_MS
		        : __atomic_load_n(&u->st.in_flight, __ATOMIC_RELAXED) ? 20
		                                                              : 0,
		        res, TL_CH_MAX_IN_FLIGHT);
		for (int i = 0; i < n; i++)
			on_result(u, &res[i]);
		if (n == 0 && __atomic_load_n(&u->st.in_flight, __ATOMIC_RELAXED) == 0)
			usleep(2000);
	}
	end_streams(u, res);
	return NULL;
}

int
tl_uplink_start(const struct tl_uplink_conf *conf, const struct tl_schema *schema,
        struct tl_spool *spool, struct tl_uplink **out)
{
	return tl_uplink_start_route(conf, schema, spool, NULL, out);
}

int
tl_uplink_start_route(const struct tl_uplink_conf *conf, const struct tl_schema *schema,
        struct tl_spool *spool, const struct tl_uplink_route *route, struct tl_uplink **out)
{
	return tl_uplink_start_target(conf, schema, spool, route, NULL, 0, out);
}

int
tl_uplink_start_target(const struct tl_uplink_conf *conf, const struct tl_schema *schema,
        struct tl_spool *spool, const struct tl_uplink_route *route, struct tl_failover *fo,
        unsigned target, struct tl_uplink **out)
{
	struct tl_spool_stats ss;
	struct tl_uplink *u;
	int rc;

	*out = NULL;
	if (conf == NULL || schema == NULL || spool == NULL ||
	        (route && ((route->database && !tl_ddl_ident_valid(route->database)) ||
	                          (route->table && !tl_ddl_ident_valid(route->table)))))
		return -EINVAL;
	rc = check_dead_letter_columns();
	if (rc < 0) {
		TL_ERR("uplink: the dead_letter columns are not the ones it writes");
		return rc;
	}
	u = calloc(1, sizeof(*u));
	if (u == NULL)
		return -ENOMEM;
	pthread_mutex_init(&u->lock, NULL);
	u->conf = *conf;
	u->route = route ? route->id : 0;
	if (fo != NULL && target >= tl_failover_targets(fo)) {
		rc = -EINVAL;
		goto fail;
	}
	u->fo = fo != NULL && tl_failover_targets(fo) > 1 ? fo : NULL;
	u->target = target;
	u->prober = u->fo != NULL && u->route == 0;
	u->fo_health_timeout = conf->failover.health_timeout;
	for (int t = 0; t < TL_BATCH_TABLE_MAX; t++)
		snprintf(u->tables[t], sizeof(u->tables[t]), "%s",
		        t == TL_BATCH_SINK_OUTPUT && route && route->table
		                ? route->table
		                : tl_batch_table_name((unsigned)t));
	u->schema = schema;
	u->spool = spool;
	u->cursor = 1;
	/* Records already committed may have reached ClickHouse through a process that died
	 * before their acks were durable. */
	tl_spool_stats(spool, &ss);
	u->check_below = ss.next_key;
	if (gethostname(u->appliance, APPLIANCE_MAX) != 0 || u->appliance[0] == '\0')
		snprintf(u->appliance, sizeof(u->appliance), "tapline");
	/* A stream must end well before the request's own timeout cuts it. */
	u->stream_max_ns =
	        conf->insert_delay < conf->timeout / 2 ? conf->insert_delay : conf->timeout / 2;
	u->n_slots = (unsigned)conf->max_in_flight;
	if (u->n_slots == 0 || u->n_slots > TL_CH_MAX_IN_FLIGHT)
		u->n_slots = TL_CH_MAX_IN_FLIGHT;
	if (getrandom(&u->rng, sizeof(u->rng), 0) != sizeof(u->rng) || u->rng == 0)
		u->rng = 0x9e3779b97f4a7c15ull ^ mono_ns();
	rc = build_layouts(u);
	if (rc < 0)
		goto fail;
	for (int t = 0; t < TL_BATCH_TABLE_MAX; t++) {
		rc = tl_ddl_insert_columns(schema, (enum tl_batch_table)t, u->cols[t], COLS_LEN);
		if (rc < 0)
			goto fail;
		snprintf(u->probe[t], sizeof(u->probe[t]), PROBE_PREFIX "%s", tname(u, t));
	}
	u->dec = libdeflate_alloc_decompressor();
	if (u->dec == NULL) {
		rc = -ENOMEM;
		goto fail;
	}
	rc = tl_ch_open(conf, &u->ch);
	if (rc == 0 && route && route->database)
		rc = tl_ch_set_database(u->ch, route->database);
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
tl_uplink_set_appliance_id(struct tl_uplink *u, const char *id)
{
	if (u == NULL || id == NULL)
		return -EINVAL;
	pthread_mutex_lock(&u->lock);
	snprintf(u->appliance, sizeof(u->appliance), "%s", id);
	pthread_mutex_unlock(&u->lock);
	return 0;
}

const char *
tl_uplink_database(const struct tl_uplink *u)
{
	return u ? tl_ch_database(u->ch) : NULL;
}

int
tl_uplink_set_statements(struct tl_uplink *u, const char *const *sql, unsigned n)
{
	char **c, **old;
	unsigned n_old;

	if (u == NULL || (n > 0 && sql == NULL))
		return -EINVAL;
	if ((c = calloc(n ? n : 1, sizeof(*c))) == NULL)
		return -ENOMEM;
	for (unsigned i = 0; i < n; i++)
		if (sql[i] == NULL || (c[i] = strdup(sql[i])) == NULL) {
			tl_ddl_stmts_free(c, i);
			return sql[i] == NULL ? -EINVAL : -ENOMEM;
		}
	pthread_mutex_lock(&u->lock);
	old = u->stmts;
	n_old = u->n_stmts;
	u->stmts = c;
	u->n_stmts = n;
	u->stmts_attempt = 0;
	u->stmts_retry_ns = 0;
	__atomic_store_n(&u->stmts_due, 1, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&u->lock);
	tl_ddl_stmts_free(old, n_old);
	return 0;
}

int
tl_uplink_drain(struct tl_uplink *u, uint64_t timeout_ns)
{
	uint64_t end = mono_ns() + timeout_ns;
	int rc;

	__atomic_add_fetch(&u->draining, 1, __ATOMIC_RELAXED);
	for (;;) {
		struct tl_spool_stats ss;
		bool busy = false;

		tl_spool_stats(u->spool, &ss);
		for (unsigned i = 0; i < u->n_slots; i++)
			busy |= __atomic_load_n(&u->slots[i].state, __ATOMIC_RELAXED) != SLOT_FREE;
		if (ss.records == 0 && !busy) {
			rc = 0;
			break;
		}
		if (mono_ns() > end) {
			rc = -ETIMEDOUT;
			break;
		}
		usleep(1000);
	}
	__atomic_sub_fetch(&u->draining, 1, __ATOMIC_RELAXED);
	return rc;
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
	free(u->check);
	for (unsigned i = 0; i < TL_CH_MAX_IN_FLIGHT; i++) {
		free_bisect(u->slots[i].bis);
		free(u->slots[i].body);
		free(u->slots[i].row_end);
	}
	tl_ddl_stmts_free(u->stmts, u->n_stmts);
	pthread_mutex_destroy(&u->lock);
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
