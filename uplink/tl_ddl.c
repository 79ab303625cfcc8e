/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * DDL generation. The column list comes from the encoder so the two cannot drift; this
 * file only formats statements and compares the server's columns with the encoder's.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tl_ddl.h"
#include "tl_rollup.h"
#include "tl_encode.h"
#include "tl_error.h"

/* Statement builder: like snprintf, remembers whether anything did not fit. */
struct sb {
	char *buf;
	size_t cap;
	size_t len;
	bool full;
};

static void
sb_init(struct sb *b, char *buf, size_t cap)
{
	b->buf = buf;
	b->cap = cap;
	b->len = 0;
	b->full = cap == 0;
	if (cap)
		buf[0] = '\0';
}

__attribute__((format(printf, 2, 3))) static void
sb_add(struct sb *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->full)
		return;
	va_start(ap, fmt);
	n = vsnprintf(b->buf + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= b->cap - b->len) {
		b->full = true;
		return;
	}
	b->len += (size_t)n;
}

static int
sb_done(const struct sb *b)
{
	return b->full ? -ENOSPC : (int)b->len;
}

/* Callers validated t; never NULL for the compiler's sake either. */
static const char *
tname(enum tl_batch_table t)
{
	const char *n = tl_batch_table_name((unsigned)t);

	return n ? n : "?";
}

int
tl_ddl_ident_valid(const char *name)
{
	size_t n;

	if (name == NULL || name[0] == '\0' || (name[0] >= '0' && name[0] <= '9'))
		return 0;
	for (n = 0; name[n]; n++) {
		char c = name[n];

		if (n >= TL_DDL_IDENT_MAX)
			return 0;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		            c == '_'))
			return 0;
	}
	return 1;
}

/* Column names come from the schema ([a-z_][a-z0-9_]*, checked by the schema compiler)
 * and from tapline's fixed list; checked again here since they are spliced into SQL. */
static int
col_ident_valid(const char *name)
{
	for (const char *p = name; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		            (*p >= '0' && *p <= '9') || *p == '_'))
			return 0;
	return name[0] != '\0';
}

/* The encoder's columns of table t, validated; *cols is the caller's to free. */
static int
get_cols(const struct tl_schema *s, enum tl_batch_table t, struct tl_encode_col **cols, uint32_t *n)
{
	int rc;

	*cols = NULL;
	if ((unsigned)t >= TL_BATCH_TABLE_MAX ||
	        (s == NULL && t != TL_BATCH_DEAD_LETTER && t != TL_BATCH_ROLLUPS))
		return -EINVAL;
	*cols = calloc(TL_ENCODE_MAX_COLS, sizeof(**cols));
	if (*cols == NULL)
		return -ENOMEM;
	rc = tl_encode_columns(s, t, *cols, TL_ENCODE_MAX_COLS, n);
	if (rc == 0)
		for (uint32_t i = 0; i < *n; i++)
			if (!col_ident_valid((*cols)[i].name))
				rc = TL_E_SCHEMA;
	if (rc) {
		free(*cols);
		*cols = NULL;
	}
	return rc;
}

int
tl_ddl_rollups_view(const char *db, char *buf, size_t cap)
{
	struct sb b;

	if (!tl_ddl_ident_valid(db))
		return -EINVAL;
	sb_init(&b, buf, cap);
	sb_add(&b,
	        "CREATE MATERIALIZED VIEW IF NOT EXISTS `%s`.`rollups_summed` ENGINE = "
	        "SummingMergeTree() PARTITION BY toYYYYMM(`window_start`) ORDER BY "
	        "(`window_start`, `event_type`, `database`) AS SELECT `window_start`, "
	        "`event_type`, `database`, `count`, `errors`, `late`, `with_duration`, "
	        "`duration_sum_ms`",
	        db);
	for (int i = 0; i < TL_ROLLUP_HIST; i++)
		sb_add(&b, ", `h%02d`", i);
	sb_add(&b, " FROM `%s`.`rollups`", db);
	return sb_done(&b);
}

int
tl_ddl_rollups_p95_view(const char *db, char *buf, size_t cap)
{
	struct sb b;

	if (!tl_ddl_ident_valid(db))
		return -EINVAL;
	sb_init(&b, buf, cap);
	sb_add(&b,
	        "CREATE VIEW IF NOT EXISTS `%s`.`rollups_p95` AS SELECT `window_start`, "
	        "`event_type`, `database`, sum(`count`) AS `events`, sum(`errors`) AS "
	        "`error_events`, sum(`late`) AS `late_events`, sum(`with_duration`) AS "
	        "`durations`, sum(`duration_sum_ms`) AS `duration_total_ms`, [",
	        db);
	for (int i = 0; i < TL_ROLLUP_HIST; i++)
		sb_add(&b, "%ssum(`h%02d`)", i ? ", " : "", i);
	/* The upper edge of the bucket where the running count reaches 95 %: bucket i
	 * (1-based b = i + 1) holds [2^(i-1), 2^i) ms, bucket 0 holds 0 ms. The total goes
	 * into the lambda as an array, not captured: ClickHouse 18.16 prunes a column only a
	 * lambda uses when a query selects some of the view's columns. */
	sb_add(&b,
	        "] AS `hist`, arrayFirstIndex((c, t) -> c * 100 >= t * 95, "
	        "arrayCumSum(`hist`), arrayResize([`durations`], %d, `durations`)) AS "
	        "`p95_bucket`, if(`p95_bucket` <= 1, 0, ",
	        TL_ROLLUP_HIST);
	sb_add(&b,
	        "bitShiftLeft(toUInt64(1), `p95_bucket` - 1)) AS `p95_ms` FROM "
	        "`%s`.`rollups_summed` GROUP BY `window_start`, `event_type`, `database`",
	        db);
	return sb_done(&b);
}

int
tl_ddl_create_database(const char *db, char *buf, size_t cap)
{
	struct sb b;

	if (!tl_ddl_ident_valid(db))
		return -EINVAL;
	sb_init(&b, buf, cap);
	sb_add(&b, "CREATE DATABASE IF NOT EXISTS `%s`", db);
	return sb_done(&b);
}

/* The name of table @p t: @p table if given (a route's main table), else its own. */
static const char *
name_of(enum tl_batch_table t, const char *table)
{
	return table ? table : tname(t);
}

int
tl_ddl_create_table(
        const struct tl_schema *s, enum tl_batch_table t, const char *db, char *buf, size_t cap)
{
	return tl_ddl_create_table_named(s, t, db, NULL, buf, cap);
}

int
tl_ddl_create_table_named(const struct tl_schema *s, enum tl_batch_table t, const char *db,
        const char *table, char *buf, size_t cap)
{
	struct tl_encode_col *cols;
	const struct tl_col_def *tc, *ic;
	const char *time;
	struct sb b;
	uint32_t n;
	int rc;

	if (!tl_ddl_ident_valid(db) || (table && !tl_ddl_ident_valid(table)))
		return -EINVAL;
	if ((rc = get_cols(s, t, &cols, &n)))
		return rc;
	sb_init(&b, buf, cap);
	sb_add(&b, "CREATE TABLE IF NOT EXISTS `%s`.`%s` (\n", db, name_of(t, table));
	for (uint32_t i = 0; i < n; i++)
		sb_add(&b, "\t`%s` %s%s\n", cols[i].name, cols[i].type, i + 1 < n ? "," : "");
	sb_add(&b, ") ENGINE = MergeTree()");
	if (t == TL_BATCH_DEAD_LETTER) {
		sb_add(&b,
		        " PARTITION BY toYYYYMMDD(`ingestion_time`) ORDER BY (`ingestion_time`)");
	} else if (t == TL_BATCH_ROLLUPS) {
		/* Every delta as delivered (exactly once, by batch id like the events);
		 * rollups_summed adds them up. */
		sb_add(&b, " PARTITION BY toYYYYMM(`window_start`) ORDER BY (`window_start`, "
		           "`event_type`, `database`)");
	} else {
		/* Sorting and partition keys cannot be Nullable. */
		tc = tl_schema_col(s, (uint32_t)tl_schema_time_col(s));
		ic = tl_schema_col(s, (uint32_t)tl_schema_id_col(s));
		time = tc->required ? tc->name : "ingestion_time";
		sb_add(&b, " PARTITION BY toYYYYMMDD(`%s`) ORDER BY (`%s`, ", time, time);
		if (ic->required)
			sb_add(&b, "`%s`)", ic->name);
		else
			sb_add(&b, "assumeNotNull(`%s`))", ic->name);
	}
	free(cols);
	return sb_done(&b);
}

static void
add_col_list(struct sb *b, const struct tl_encode_col *cols, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		sb_add(b, "%s`%s`", i ? ", " : "", cols[i].name);
}

int
tl_ddl_insert_columns(const struct tl_schema *s, enum tl_batch_table t, char *buf, size_t cap)
{
	struct tl_encode_col *cols;
	struct sb b;
	uint32_t n;
	int rc;

	if ((rc = get_cols(s, t, &cols, &n)))
		return rc;
	sb_init(&b, buf, cap);
	add_col_list(&b, cols, n);
	free(cols);
	return sb_done(&b);
}

int
tl_ddl_insert(
        const struct tl_schema *s, enum tl_batch_table t, const char *db, char *buf, size_t cap)
{
	return tl_ddl_insert_named(s, t, db, NULL, buf, cap);
}

int
tl_ddl_insert_named(const struct tl_schema *s, enum tl_batch_table t, const char *db,
        const char *table, char *buf, size_t cap)
{
	struct tl_encode_col *cols;
	struct sb b;
	uint32_t n;
	int rc;

	if (!tl_ddl_ident_valid(db) || (table && !tl_ddl_ident_valid(table)))
		return -EINVAL;
	if ((rc = get_cols(s, t, &cols, &n)))
		return rc;
	sb_init(&b, buf, cap);
	sb_add(&b, "INSERT INTO `%s`.`%s` (", db, name_of(t, table));
	add_col_list(&b, cols, n);
	sb_add(&b, ") FORMAT RowBinary");
	free(cols);
	return sb_done(&b);
}

int
tl_ddl_columns_query(enum tl_batch_table t, const char *db, char *buf, size_t cap)
{
	return tl_ddl_columns_query_named(t, db, NULL, buf, cap);
}

int
tl_ddl_columns_query_named(
        enum tl_batch_table t, const char *db, const char *table, char *buf, size_t cap)
{
	struct sb b;

	if (!tl_ddl_ident_valid(db) || (unsigned)t >= TL_BATCH_TABLE_MAX ||
	        (table && !tl_ddl_ident_valid(table)))
		return -EINVAL;
	sb_init(&b, buf, cap);
	/* Both names are [A-Za-z0-9_]: safe inside quotes. */
	sb_add(&b,
	        "SELECT name, type FROM system.columns WHERE database = '%s' AND table = '%s' "
	        "FORMAT TabSeparated",
	        db, name_of(t, table));
	return sb_done(&b);
}

/* ---- ALTER ---- */

/* Decode one TSV field [p, end) into out (cap bytes, NUL-terminated). -1 if too long
 * or a bad escape. */
static int
tsv_field(const char *p, const char *end, char *out, size_t cap)
{
	size_t n = 0;

	for (; p < end; p++) {
		char c = *p;

		if (c == '\\') {
			if (++p == end)
				return -1;
			switch (*p) {
			case 't':
				c = '\t';
				break;
			case 'n':
				c = '\n';
				break;
			case 'r':
				c = '\r';
				break;
			case 'b':
				c = '\b';
				break;
			case 'f':
				c = '\f';
				break;
			case '0':
				c = '\0';
				break;
			case '\\':
				c = '\\';
				break;
			case '\'':
				c = '\'';
				break;
			default:
				return -1;
			}
		}
		if (n + 1 >= cap)
			return -1;
		out[n++] = c;
	}
	out[n] = '\0';
	return 0;
}

/* Strip what RowBinary does not see: LowCardinality(T) -> T, DateTime('tz') -> DateTime,
 * inside Nullable(...) too. Writes the normalised type of t[0, len) and a NUL into out;
 * returns its length, or -1 if it does not fit (such a type matches nothing we write). */
static int
norm_type(const char *t, size_t len, char *out, size_t cap)
{
	static const char lc[] = "LowCardinality(", nl[] = "Nullable(", dt[] = "DateTime(";
	int n;

	if (len > sizeof(lc) && memcmp(t, lc, sizeof(lc) - 1) == 0 && t[len - 1] == ')')
		return norm_type(t + sizeof(lc) - 1, len - sizeof(lc), out, cap);
	if (len > sizeof(nl) && memcmp(t, nl, sizeof(nl) - 1) == 0 && t[len - 1] == ')') {
		if (cap < sizeof(nl) + 1)
			return -1;
		memcpy(out, nl, sizeof(nl) - 1);
		n = norm_type(t + sizeof(nl) - 1, len - sizeof(nl), out + sizeof(nl) - 1,
		        cap - sizeof(nl));
		if (n < 0)
			return -1;
		out[sizeof(nl) - 1 + (size_t)n] = ')';
		out[sizeof(nl) + (size_t)n] = '\0';
		return (int)sizeof(nl) + n;
	}
	if (len > sizeof(dt) && memcmp(t, dt, sizeof(dt) - 1) == 0 && t[len - 1] == ')') {
		t = "DateTime";
		len = 8;
	}
	if (len + 1 > cap)
		return -1;
	memcpy(out, t, len);
	out[len] = '\0';
	return (int)len;
}

static int
types_compatible(const char *want, const char *have)
{
	char a[128], b[128];

	if (strcmp(want, have) == 0)
		return 1;
	return norm_type(want, strlen(want), a, sizeof(a)) >= 0 &&
	       norm_type(have, strlen(have), b, sizeof(b)) >= 0 && strcmp(a, b) == 0;
}

static void set_msg(char *msg, size_t msglen, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void
set_msg(char *msg, size_t msglen, const char *fmt, ...)
{
	va_list ap;

	if (msg == NULL || msglen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, msglen, fmt, ap);
	va_end(ap);
}

int
tl_ddl_alter(const struct tl_schema *s, enum tl_batch_table t, const char *db, const char *reply,
        size_t reply_len, char *buf, size_t cap, char *msg, size_t msglen)
{
	return tl_ddl_alter_named(s, t, db, NULL, reply, reply_len, buf, cap, msg, msglen);
}

int
tl_ddl_alter_named(const struct tl_schema *s, enum tl_batch_table t, const char *db,
        const char *table, const char *reply, size_t reply_len, char *buf, size_t cap, char *msg,
        size_t msglen)
{
	struct tl_encode_col *cols;
	const char *p = reply, *end = reply ? reply + reply_len : reply;
	bool *have = NULL;
	uint32_t n, n_server = 0, n_add = 0;
	struct sb b;
	int rc;

	if (msg && msglen)
		msg[0] = '\0';
	if (cap)
		buf[0] = '\0';
	if (!tl_ddl_ident_valid(db) || (reply == NULL && reply_len > 0))
		return -EINVAL;
	if ((rc = get_cols(s, t, &cols, &n)))
		return rc;
	have = calloc(n, sizeof(*have));
	if (have == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;
		const char *tab = memchr(p, '\t', (size_t)(le - p));
		char name[256], type[256];

		if (le == p) { /* empty line (a trailing one) */
			p = le + 1;
			continue;
		}
		if (tab == NULL || memchr(tab + 1, '\t', (size_t)(le - tab - 1)) != NULL ||
		        tsv_field(p, tab, name, sizeof(name)) != 0 ||
		        tsv_field(tab + 1, le, type, sizeof(type)) != 0) {
			set_msg(msg, msglen, "unexpected line in the server's column list: '%.*s'",
			        (int)(le - p > 80 ? 80 : le - p), p);
			rc = -EBADMSG;
			goto out;
		}
		n_server++;
		for (uint32_t i = 0; i < n; i++) {
			if (strcmp(cols[i].name, name) != 0)
				continue;
			if (!types_compatible(cols[i].type, type)) {
				set_msg(msg, msglen,
				        "column `%s` of `%s`.`%s` has type %s on the server, the "
				        "profile needs %s",
				        name, db, name_of(t, table), type, cols[i].type);
				rc = TL_E_SCHEMA;
				goto out;
			}
			have[i] = true;
		}
		p = nl ? nl + 1 : end;
	}
	if (n_server == 0) {
		rc = -ENOENT;
		goto out;
	}
	sb_init(&b, buf, cap);
	for (uint32_t i = 0; i < n; i++) {
		if (have[i])
			continue;
		if (n_add++ == 0)
			sb_add(&b, "ALTER TABLE `%s`.`%s`", db, name_of(t, table));
		sb_add(&b, "%s ADD COLUMN `%s` %s", n_add > 1 ? "," : "", cols[i].name,
		        cols[i].type);
	}
	rc = sb_done(&b);
out:
	free(have);
	free(cols);
	return rc;
}

/* ---- error_patterns: the classification patterns as a table ------------------------ */

/* A ClickHouse string literal: quotes and backslashes escaped, control bytes as \xHH. */
static void
sb_quote(struct sb *b, const char *s)
{
	sb_add(b, "'");
	for (; *s && !b->full; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '\'' || c == '\\')
			sb_add(b, "\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			sb_add(b, "\\x%02x", c);
		else
			sb_add(b, "%c", c);
	}
	sb_add(b, "'");
}

#define PATTERNS_COLS                                                                              \
	"`id` String, `category` String, `severity` " TL_ENCODE_SEVERITY_TYPE ", "                 \
	"`effect` Enum8('error' = 0, 'tag' = 1), `cause` String, `action` String, "                \
	"`profile` String, `db_hash` String, `loaded_at` DateTime"

void
tl_ddl_stmts_free(char **stmts, unsigned n)
{
	if (stmts == NULL)
		return;
	for (unsigned i = 0; i < n; i++)
		free(stmts[i]);
	free(stmts);
}

int
tl_ddl_patterns(const char *db, const struct tl_classify_db *cdb, const char *profile,
        uint32_t loaded_at, char ***out, unsigned *n_out)
{
	enum { N = 6 };
	uint32_t np;
	size_t cap;
	char **s;
	unsigned k = 0;
	int rc = 0;

	*out = NULL;
	*n_out = 0;
	if (!tl_ddl_ident_valid(db) || cdb == NULL)
		return -EINVAL;
	/* Every text at most 4 bytes per byte once escaped. */
	np = tl_classify_db_count(cdb);
	cap = 4096 + (size_t)np * (4 * (2 * TL_CLASSIFY_TEXT_MAX + 2 * TL_CLASSIFY_ID_MAX) + 200) +
	      (size_t)np * 4 * strlen(profile ? profile : "");
	if ((s = calloc(N, sizeof(*s))) == NULL)
		return -ENOMEM;
	/* Built aside and swapped in by one RENAME, so a join never sees it half filled,
	 * and patterns removed from the profile leave the table with the next load. */
	for (unsigned i = 0; i < N && rc == 0; i++)
		if ((s[i] = malloc(i == 2 ? cap : 1024)) == NULL)
			rc = -ENOMEM;
	if (rc == 0) {
		struct sb b;

		sb_init(&b, s[k++], 1024);
		sb_add(&b, "DROP TABLE IF EXISTS `%s`.`error_patterns_new`", db);
		sb_init(&b, s[k++], 1024);
		sb_add(&b,
		        "CREATE TABLE `%s`.`error_patterns_new` (" PATTERNS_COLS
		        ") ENGINE = MergeTree() ORDER BY `id`",
		        db);
		if (b.full)
			rc = -ENOSPC;
		if (np > 0) {
			sb_init(&b, s[k++], cap);
			sb_add(&b, "INSERT INTO `%s`.`error_patterns_new` VALUES ", db);
			for (uint32_t i = 0; i < np; i++) {
				const struct tl_classify_pattern *p =
				        tl_classify_db_pattern(cdb, i);

				sb_add(&b, "%s(", i ? ", " : "");
				sb_quote(&b, p->id);
				sb_add(&b, ", ");
				sb_quote(&b, p->category);
				/* Enum values by name: 18.16 takes no number for an Enum8 in
				 * VALUES. */
				sb_add(&b, ", '%s', '%s', ", tl_classify_severity_name(p->severity),
				        tl_classify_effect_name(p->effect));
				sb_quote(&b, p->cause);
				sb_add(&b, ", ");
				sb_quote(&b, p->action);
				sb_add(&b, ", ");
				sb_quote(&b, profile ? profile : "");
				sb_add(&b, ", '%s', %" PRIu32 ")", tl_classify_db_hash(cdb),
				        loaded_at);
			}
			if (b.full)
				rc = -ENOSPC;
		}
		sb_init(&b, s[k++], 1024);
		sb_add(&b,
		        "CREATE TABLE IF NOT EXISTS `%s`.`error_patterns` AS "
		        "`%s`.`error_patterns_new`",
		        db, db);
		sb_init(&b, s[k++], 1024);
		sb_add(&b,
		        "RENAME TABLE `%s`.`error_patterns` TO `%s`.`error_patterns_old`, "
		        "`%s`.`error_patterns_new` TO `%s`.`error_patterns`",
		        db, db, db, db);
		sb_init(&b, s[k++], 1024);
		sb_add(&b, "DROP TABLE IF EXISTS `%s`.`error_patterns_old`", db);
	}
	if (rc < 0) {
		tl_ddl_stmts_free(s, N);
		return rc;
	}
	for (unsigned i = k; i < N; i++)
		free(s[i]);
	*out = s;
	*n_out = k;
	return 0;
}
