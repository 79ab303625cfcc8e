/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * DDL generation, and the encoder's rows against a real ClickHouse: tables created from
 * the generated DDL, batches of realistic events POSTed as RowBinary (gzip'd and plain),
 * read back and compared column by column with the generator's truth; then the ALTER
 * path on tables created from a smaller profile.
 *
 * The ClickHouse tests skip when no server can be started (clickhouse-server missing).
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

#include <cmocka.h>
#include <curl/curl.h>
#include <jansson.h>

#include "tl_batch.h"
#include "tl_classify.h"
#include "tl_corpus.h"
#include "tl_ddl.h"
#include "tl_rollup.h"
#include "tl_encode.h"
#include "tl_error.h"
#include "tl_json.h"
#include "tl_test_ch_http.h"
#include "tl_test_clickhouse.h"
#include "tl_test_schema.h"

#define APPL "edge-7"
#define NOW0 INT64_C(1760000000000000000)

static const char e6_sink[] = "CREATE TABLE IF NOT EXISTS `telemetry`.`sink_output` (\n"
                              "\t`query_id` String,\n"
                              "\t`event_type` String,\n"
                              "\t`event_time` DateTime,\n"
                              "\t`event_time_ns` Int64,\n"
                              "\t`query_text` Nullable(String),\n"
                              "\t`user_id` Nullable(String),\n"
                              "\t`database_name` Nullable(String),\n"
                              "\t`duration_ms` Nullable(UInt64),\n"
                              "\t`rows_affected` Nullable(UInt64),\n"
                              "\t`error` Nullable(String),\n"
                              "\t`payload` Nullable(String),\n"
                              "\t`ingestion_time` DateTime,\n"
                              "\t`ingestion_time_ns` Int64,\n"
                              "\t`event_id` FixedString(16),\n"
                              "\t`producer_id` UInt64,\n"
                              "\t`sequence` UInt64,\n"
                              "\t`late` UInt8,\n"
                              "\t`appliance_id` String,\n"
                              "\t`batch_id` UInt64,\n"
                              "\t`extra` String,\n"
                              "\t`matched_patterns` Array(String),\n"
                              "\t`categories` Array(String),\n"
                              "\t`severity` Enum8('none' = 0, 'info' = 1, 'warning' = 2, "
                              "'error' = 3, 'critical' = 4)\n"
                              ") ENGINE = MergeTree() PARTITION BY toYYYYMMDD(`event_time`) "
                              "ORDER BY (`event_time`, `query_id`)";

static const char e6_cols[] =
        "`query_id`, `event_type`, `event_time`, `event_time_ns`, `query_text`, `user_id`, "
        "`database_name`, `duration_ms`, `rows_affected`, `error`, `payload`, "
        "`ingestion_time`, `ingestion_time_ns`, `event_id`, `producer_id`, `sequence`, "
        "`late`, `appliance_id`, `batch_id`, `extra`, `matched_patterns`, `categories`, "
        "`severity`";

static const char dl_table[] = "CREATE TABLE IF NOT EXISTS `db_1`.`dead_letter` (\n"
                               "\t`ingestion_time` DateTime,\n"
                               "\t`ingestion_time_ns` Int64,\n"
                               "\t`appliance_id` String,\n"
                               "\t`producer_id` UInt64,\n"
                               "\t`reason` String,\n"
                               "\t`raw` String,\n"
                               "\t`batch_id` UInt64\n"
                               ") ENGINE = MergeTree() PARTITION BY toYYYYMMDD(`ingestion_time`) "
                               "ORDER BY (`ingestion_time`)";

/* The full e6data reply of system.columns, as ClickHouse writes it (TabSeparated). */
static const char e6_reply[] = "query_id\tString\n"
                               "event_type\tString\n"
                               "event_time\tDateTime\n"
                               "event_time_ns\tInt64\n"
                               "query_text\tNullable(String)\n"
                               "user_id\tNullable(String)\n"
                               "database_name\tNullable(String)\n"
                               "duration_ms\tNullable(UInt64)\n"
                               "rows_affected\tNullable(UInt64)\n"
                               "error\tNullable(String)\n"
                               "payload\tNullable(String)\n"
                               "ingestion_time\tDateTime\n"
                               "ingestion_time_ns\tInt64\n"
                               "event_id\tFixedString(16)\n"
                               "producer_id\tUInt64\n"
                               "sequence\tUInt64\n"
                               "late\tUInt8\n"
                               "appliance_id\tString\n"
                               "batch_id\tUInt64\n"
                               "extra\tString\n"
                               "matched_patterns\tArray(String)\n"
                               "categories\tArray(String)\n"
                               "severity\tEnum8(\'none\' = 0, \'info\' = 1, \'warning\' = 2, "
                               "\'error\' = 3, \'critical\' = 4)\n";

static struct tl_schema *
compile(const struct tl_schema_def *def)
{
	struct tl_limits lim = tl_test_e6data_limits();
	struct tl_schema *s = NULL;
	char msg[256] = "";

	if (tl_schema_compile(def, &lim, &s, msg, sizeof(msg)) != 0)
		fail_msg("schema: %s", msg);
	return s;
}

static struct tl_schema *
e6data(void)
{
	struct tl_schema_def def;

	tl_test_e6data_def(&def);
	return compile(&def);
}

/* e6data without user_id, rows_affected and payload: an older profile. */
static struct tl_schema *
e6data_small(void)
{
	struct tl_schema_def full, def;

	tl_test_e6data_def(&full);
	memset(&def, 0, sizeof(def));
	for (uint32_t i = 0; i < full.n_cols; i++)
		if (strcmp(full.cols[i].name, "user_id") != 0 &&
		        strcmp(full.cols[i].name, "rows_affected") != 0 &&
		        strcmp(full.cols[i].name, "payload") != 0)
			def.cols[def.n_cols++] = full.cols[i];
	tl_test_set_roles(&def, full.time_column, full.error_column, full.id_column);
	return compile(&def);
}

/* ---- DDL strings ---- */

static void
test_ddl_e6data_create_table_exact(void **state)
{
	struct tl_schema *s = e6data();
	char buf[8192], want[8192];
	int n;

	(void)state;
	n = tl_ddl_create_table(s, TL_BATCH_SINK_OUTPUT, "telemetry", buf, sizeof(buf));
	assert_int_equal(n, (int)strlen(e6_sink));
	assert_string_equal(buf, e6_sink);
	/* error_events: the same columns and keys. */
	n = tl_ddl_create_table(s, TL_BATCH_ERROR_EVENTS, "telemetry", buf, sizeof(buf));
	assert_true(n > 0);
	snprintf(want, sizeof(want), "CREATE TABLE IF NOT EXISTS `telemetry`.`error_events`%s",
	        strchr(e6_sink, ' ') + strlen(" TABLE IF NOT EXISTS `telemetry`.`sink_output`"));
	assert_string_equal(buf, want);
	tl_schema_free(s);
}

static void
test_ddl_dead_letter_create_table_exact(void **state)
{
	struct tl_schema *s = e6data();
	char buf[4096];

	(void)state;
	assert_int_equal(tl_ddl_create_table(s, TL_BATCH_DEAD_LETTER, "db_1", buf, sizeof(buf)),
	        (int)strlen(dl_table));
	assert_string_equal(buf, dl_table);
	tl_schema_free(s);
}

static void
test_ddl_other_statements_exact(void **state)
{
	struct tl_schema *s = e6data();
	char buf[4096], want[4096];

	(void)state;
	assert_int_equal(tl_ddl_create_database("telemetry", buf, sizeof(buf)),
	        (int)strlen("CREATE DATABASE IF NOT EXISTS `telemetry`"));
	assert_string_equal(buf, "CREATE DATABASE IF NOT EXISTS `telemetry`");
	assert_int_equal(tl_ddl_insert_columns(s, TL_BATCH_SINK_OUTPUT, buf, sizeof(buf)),
	        (int)strlen(e6_cols));
	assert_string_equal(buf, e6_cols);
	snprintf(want, sizeof(want), "INSERT INTO `telemetry`.`error_events` (%s) FORMAT RowBinary",
	        e6_cols);
	assert_int_equal(tl_ddl_insert(s, TL_BATCH_ERROR_EVENTS, "telemetry", buf, sizeof(buf)),
	        (int)strlen(want));
	assert_string_equal(buf, want);
	assert_true(tl_ddl_insert(s, TL_BATCH_DEAD_LETTER, "t", buf, sizeof(buf)) > 0);
	assert_string_equal(buf, "INSERT INTO `t`.`dead_letter` (`ingestion_time`, "
	                         "`ingestion_time_ns`, `appliance_id`, `producer_id`, `reason`, "
	                         "`raw`, `batch_id`) FORMAT RowBinary");
	assert_true(tl_ddl_columns_query(TL_BATCH_ERROR_EVENTS, "Tele_1", buf, sizeof(buf)) > 0);
	assert_string_equal(buf, "SELECT name, type FROM system.columns WHERE database = 'Tele_1' "
	                         "AND table = 'error_events' FORMAT TabSeparated");
	tl_schema_free(s);
}

static void
test_ddl_bad_database_name_einval(void **state)
{
	static const char *const bad[] = {"", "1db", "a-b", "a`b", "a b", "db;DROP", "a'b",
	        "\xc3\xa9", "a\\b", "a.b",
	        "x2345678901234567890123456789012345678901234567890123456789012345"};
	struct tl_schema *s = e6data();
	char buf[8192], msg[64];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_false(tl_ddl_ident_valid(bad[i]));
		assert_int_equal(tl_ddl_create_database(bad[i], buf, sizeof(buf)), -EINVAL);
		assert_int_equal(
		        tl_ddl_create_table(s, TL_BATCH_SINK_OUTPUT, bad[i], buf, sizeof(buf)),
		        -EINVAL);
		assert_int_equal(
		        tl_ddl_insert(s, TL_BATCH_SINK_OUTPUT, bad[i], buf, sizeof(buf)), -EINVAL);
		assert_int_equal(
		        tl_ddl_columns_query(TL_BATCH_SINK_OUTPUT, bad[i], buf, sizeof(buf)),
		        -EINVAL);
		assert_int_equal(tl_ddl_alter(s, TL_BATCH_SINK_OUTPUT, bad[i], e6_reply,
		                         sizeof(e6_reply) - 1, buf, sizeof(buf), msg, sizeof(msg)),
		        -EINVAL);
	}
	assert_false(tl_ddl_ident_valid(NULL));
	assert_true(tl_ddl_ident_valid("_"));
	assert_true(tl_ddl_ident_valid(
	        "x234567890123456789012345678901234567890123456789012345678901234"));
	/* Bad table. */
	assert_int_equal(
	        tl_ddl_create_table(s, TL_BATCH_TABLE_MAX, "db", buf, sizeof(buf)), -EINVAL);
	assert_int_equal(
	        tl_ddl_insert_columns(s, (enum tl_batch_table)7, buf, sizeof(buf)), -EINVAL);
	assert_int_equal(tl_ddl_columns_query(TL_BATCH_TABLE_MAX, "db", buf, sizeof(buf)), -EINVAL);
	assert_int_equal(
	        tl_ddl_insert(NULL, TL_BATCH_SINK_OUTPUT, "db", buf, sizeof(buf)), -EINVAL);
	tl_schema_free(s);
}

static void
test_ddl_small_buffer_enospc(void **state)
{
	struct tl_schema *s = e6data();
	static char buf[8192];

	(void)state;
	for (int f = 0; f < 6; f++) {
		int full = -1;

		for (size_t cap = 0;; cap++) {
			int n = -1;

			switch (f) {
			case 0:
				n = tl_ddl_create_database("db", buf, cap);
				break;
			case 1:
				n = tl_ddl_create_table(s, TL_BATCH_SINK_OUTPUT, "db", buf, cap);
				break;
			case 2:
				n = tl_ddl_insert_columns(s, TL_BATCH_ERROR_EVENTS, buf, cap);
				break;
			case 3:
				n = tl_ddl_insert(s, TL_BATCH_DEAD_LETTER, "db", buf, cap);
				break;
			case 4:
				n = tl_ddl_columns_query(TL_BATCH_SINK_OUTPUT, "db", buf, cap);
				break;
			case 5:
				n = tl_ddl_alter(s, TL_BATCH_SINK_OUTPUT, "db",
				        "query_id\tString\n", 16, buf, cap, NULL, 0);
				break;
			}
			if (n >= 0) {
				full = n;
				assert_int_equal(cap, (size_t)n + 1); /* the first size that fits */
				assert_int_equal(strlen(buf), (size_t)n);
				break;
			}
			assert_int_equal(n, -ENOSPC);
			assert_true(cap < sizeof(buf));
		}
		assert_true(full > 0);
	}
	tl_schema_free(s);
}

static void
test_ddl_nullable_time_and_id_keys(void **state)
{
	struct tl_schema_def def;
	struct tl_schema *s;
	char buf[4096];

	(void)state;
	memset(&def, 0, sizeof(def));
	tl_test_add_col(&def, "ts", "ts", TL_COL_DATETIME, false, 0);
	tl_test_add_col(&def, "rid", "rid", TL_COL_UINT64, false, 0);
	tl_test_add_col(&def, "ok", "ok", TL_COL_BOOL, true, 0);
	tl_test_add_col(&def, "v", "v", TL_COL_FLOAT64, true, 0);
	tl_test_add_col(&def, "n", "n", TL_COL_INT64, false, 0);
	tl_test_set_roles(&def, "ts", "rid", "rid");
	s = compile(&def);
	assert_true(tl_ddl_create_table(s, TL_BATCH_SINK_OUTPUT, "d", buf, sizeof(buf)) > 0);
	assert_non_null(strstr(buf, "(\n\t`ts` Nullable(DateTime),\n\t`ts_ns` Nullable(Int64),\n"
	                            "\t`rid` Nullable(UInt64),\n\t`ok` UInt8,\n\t`v` Float64,\n"
	                            "\t`n` Nullable(Int64),\n\t`ingestion_time` DateTime,\n"));
	assert_non_null(strstr(buf, ") ENGINE = MergeTree() PARTITION BY toYYYYMMDD("
	                            "`ingestion_time`) ORDER BY (`ingestion_time`, "
	                            "assumeNotNull(`rid`))"));
	tl_schema_free(s);
}

static void
test_ddl_name_collision_schema_error(void **state)
{
	struct tl_schema_def def;
	struct tl_schema *s;
	char buf[4096];

	(void)state;
	tl_test_e6data_def(&def);
	tl_test_add_col(&def, "event_time_ns", "x", TL_COL_INT64, false, 0);
	s = compile(&def);
	assert_int_equal(
	        tl_ddl_create_table(s, TL_BATCH_SINK_OUTPUT, "d", buf, sizeof(buf)), TL_E_SCHEMA);
	assert_int_equal(
	        tl_ddl_insert(s, TL_BATCH_ERROR_EVENTS, "d", buf, sizeof(buf)), TL_E_SCHEMA);
	assert_int_equal(tl_ddl_alter(s, TL_BATCH_SINK_OUTPUT, "d", e6_reply, sizeof(e6_reply) - 1,
	                         buf, sizeof(buf), NULL, 0),
	        TL_E_SCHEMA);
	/* dead_letter does not depend on the profile. */
	assert_true(tl_ddl_create_table(s, TL_BATCH_DEAD_LETTER, "d", buf, sizeof(buf)) > 0);
	tl_schema_free(s);
}

/* ---- ALTER from a reply ---- */

static void
test_ddl_alter_missing_columns_exact(void **state)
{
	struct tl_schema *s = e6data();
	char reply[2048], buf[2048], msg[256];
	size_t n = 0;
	const char *p = e6_reply;
	int rc;

	(void)state;
	/* The reply without user_id, rows_affected, payload and extra, plus a column the
	 * profile does not know (kept), in another order, no final newline. */
	n += (size_t)snprintf(reply + n, sizeof(reply) - n, "old_col\tNullable(String)\n");
	while (*p) {
		const char *e = strchr(p, '\n');

		if (strncmp(p, "user_id\t", 8) && strncmp(p, "rows_affected\t", 14) &&
		        strncmp(p, "payload\t", 8) && strncmp(p, "extra\t", 6) &&
		        strncmp(p, "matched_patterns\t", 17) && strncmp(p, "categories\t", 11) &&
		        strncmp(p, "severity\t", 9))
			n += (size_t)snprintf(
			        reply + n, sizeof(reply) - n, "%.*s", (int)(e - p + 1), p);
		p = e + 1;
	}
	n--; /* drop the last newline */
	rc = tl_ddl_alter(
	        s, TL_BATCH_SINK_OUTPUT, "telemetry", reply, n, buf, sizeof(buf), msg, sizeof(msg));
	assert_int_equal(rc, (int)strlen(buf));
	assert_string_equal(buf,
	        "ALTER TABLE `telemetry`.`sink_output` ADD COLUMN `user_id` "
	        "Nullable(String), ADD COLUMN `rows_affected` Nullable(UInt64), "
	        "ADD COLUMN `payload` Nullable(String), ADD COLUMN `extra` String, "
	        "ADD COLUMN `matched_patterns` Array(String), ADD COLUMN `categories` "
	        "Array(String), ADD COLUMN `severity` Enum8('none' = 0, 'info' = 1, "
	        "'warning' = 2, 'error' = 3, 'critical' = 4)");
	assert_string_equal(msg, "");
	tl_schema_free(s);
}

static void
test_ddl_alter_complete_table_empty(void **state)
{
	struct tl_schema *s = e6data();
	char buf[256] = "x";

	(void)state;
	assert_int_equal(tl_ddl_alter(s, TL_BATCH_ERROR_EVENTS, "telemetry", e6_reply,
	                         sizeof(e6_reply) - 1, buf, sizeof(buf), NULL, 0),
	        0);
	assert_string_equal(buf, "");
	tl_schema_free(s);
}

static void
test_ddl_alter_type_conflict_names_column(void **state)
{
	struct tl_schema *s = e6data();
	char reply[2048], buf[2048], msg[256];
	char *at;

	(void)state;
	snprintf(reply, sizeof(reply), "%s", e6_reply);
	at = strstr(reply, "duration_ms\tNullable(UInt64)");
	memcpy(at + strlen("duration_ms\tNullable("), "Int64)\n", 8);
	memmove(at + strlen("duration_ms\tNullable(Int64)\n"), strstr(e6_reply, "rows_affected"),
	        strlen(strstr(e6_reply, "rows_affected")) + 1);
	assert_int_equal(tl_ddl_alter(s, TL_BATCH_SINK_OUTPUT, "telemetry", reply, strlen(reply),
	                         buf, sizeof(buf), msg, sizeof(msg)),
	        TL_E_SCHEMA);
	assert_string_equal(msg, "column `duration_ms` of `telemetry`.`sink_output` has type "
	                         "Nullable(Int64) on the server, the profile needs "
	                         "Nullable(UInt64)");
	/* Nullable vs not is a conflict too (RowBinary differs by the null flag). */
	assert_int_equal(
	        tl_ddl_alter(s, TL_BATCH_SINK_OUTPUT, "telemetry", "query_id\tNullable(String)\n",
	                26, buf, sizeof(buf), msg, sizeof(msg)),
	        TL_E_SCHEMA);
	assert_non_null(strstr(msg, "`query_id`"));
	assert_int_equal(
	        tl_ddl_alter(s, TL_BATCH_SINK_OUTPUT, "telemetry", "event_time\tDateTime64(3)\n",
	                25, buf, sizeof(buf), msg, sizeof(msg)),
	        TL_E_SCHEMA);
	/* NULL msg is fine. */
	assert_int_equal(tl_ddl_alter(s, TL_BATCH_SINK_OUTPUT, "telemetry", "late\tUInt16\n", 12,
	                         buf, sizeof(buf), NULL, 0),
	        TL_E_SCHEMA);
	tl_schema_free(s);
}

static void
test_ddl_alter_compatible_variants_accepted(void **state)
{
	static const char reply[] = "query_id\tLowCardinality(String)\n"
	                            "event_time\tDateTime(\\'UTC\\')\n"
	                            "database_name\tLowCardinality(Nullable(String))\n"
	                            "user_id\tNullable(LowCardinality(String))\n"
	                            "ingestion_time\tDateTime(\\'Europe/Berlin\\')\n"
	                            "we\\tird\\\\name\tString\n";
	struct tl_schema *s = e6data();
	char buf[2048], msg[256];

	(void)state;
	assert_true(tl_ddl_alter(s, TL_BATCH_SINK_OUTPUT, "d", reply, sizeof(reply) - 1, buf,
	                    sizeof(buf), msg, sizeof(msg)) > 0);
	assert_null(strstr(buf, "`query_id`"));
	assert_null(strstr(buf, "`event_time`"));
	assert_null(strstr(buf, "`database_name`"));
	assert_null(strstr(buf, "`user_id`"));
	assert_null(strstr(buf, "`ingestion_time`"));
	assert_non_null(strstr(buf, "ADD COLUMN `event_time_ns` Int64, ADD COLUMN `query_text`"));
	tl_schema_free(s);
}

static void
test_ddl_alter_no_columns_enoent(void **state)
{
	struct tl_schema *s = e6data();
	char buf[256];

	(void)state;
	assert_int_equal(
	        tl_ddl_alter(s, TL_BATCH_SINK_OUTPUT, "d", "", 0, buf, sizeof(buf), NULL, 0),
	        -ENOENT);
	assert_int_equal(
	        tl_ddl_alter(s, TL_BATCH_SINK_OUTPUT, "d", NULL, 0, buf, sizeof(buf), NULL, 0),
	        -ENOENT);
	assert_int_equal(
	        tl_ddl_alter(s, TL_BATCH_SINK_OUTPUT, "d", "\n\n", 2, buf, sizeof(buf), NULL, 0),
	        -ENOENT);
	tl_schema_free(s);
}

static void
test_ddl_alter_malformed_reply_ebadmsg(void **state)
{
	static const char *const bad[] = {
	        "query_id String\n",         /* no tab */
	        "query_id\tString\textra\n", /* three fields */
	        "query_id\tStr\\qing\n",     /* unknown escape */
	        "query_id\tString\\",        /* escape at the end */
	        "Code: 60, e.displayText() = DB::Exception: Table x doesn't exist\n",
	};
	struct tl_schema *s = e6data();
	char buf[2048], msg[256], big[600];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		msg[0] = 'x';
		assert_int_equal(tl_ddl_alter(s, TL_BATCH_SINK_OUTPUT, "d", bad[i], strlen(bad[i]),
		                         buf, sizeof(buf), msg, sizeof(msg)),
		        -EBADMSG);
		assert_non_null(strstr(msg, "unexpected line"));
	}
	/* A name longer than any column: refused, not truncated into a match. */
	memset(big, 'a', sizeof(big));
	big[400] = '\t';
	assert_int_equal(tl_ddl_alter(s, TL_BATCH_SINK_OUTPUT, "d", big, sizeof(big), buf,
	                         sizeof(buf), msg, sizeof(msg)),
	        -EBADMSG);
	/* Reply not terminated and not NUL-terminated: only reply_len bytes are read. */
	assert_int_equal(tl_ddl_alter(s, TL_BATCH_SINK_OUTPUT, "d", "late\tUInt8XXXX", 10, buf,
	                         sizeof(buf), msg, sizeof(msg)) > 0,
	        1);
	tl_schema_free(s);
}

/* ---- ClickHouse ---- */

static struct tl_test_ch ch;
static bool ch_up;
static struct tl_corpus *corpus;

/* POST through the tests' own client (tests/common/tl_test_ch_http.h). */
static long
ch_post(const char *query, const void *body, size_t len, bool gzip, struct tl_test_http *out)
{
	return tl_test_ch_post(&ch, query, body, len, gzip, out);
}

/* Run a statement; fail the test unless it succeeds. Returns the reply (caller frees). */
static char *
sql(const char *q)
{
	struct tl_test_http r;
	long code = ch_post(NULL, q, strlen(q), false, &r);

	if (code != 200)
		fail_msg("HTTP %ld for %s\n%s", code, q, r.p);
	return r.p;
}

static void
sql_free(const char *q)
{
	free(sql(q));
}

static int
ch_setup(void **state)
{
	char msg[512] = "";
	const char *d = getenv("TAPLINE_DATA");

	(void)state;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (tl_corpus_load(d && *d ? d : "../shared/data", &corpus, msg, sizeof(msg)) != 0) {
		fprintf(stderr, "corpus: %s (set TAPLINE_DATA)\n", msg);
		return -1;
	}
	ch_up = tl_test_ch_start(&ch) == 0;
	if (!ch_up)
		fprintf(stderr, "no ClickHouse server (see %s): ClickHouse tests skip\n", ch.dir);
	return 0;
}

static int
ch_teardown(void **state)
{
	(void)state;
	if (ch.dir[0])
		tl_test_ch_destroy(&ch);
	tl_corpus_free(corpus);
	curl_global_cleanup();
	return 0;
}

/* What one generated event should become. */
struct want {
	uint64_t seq;
	int table;      /* enum tl_batch_table */
	int64_t now;    /* unique per event: orders the rows read back */
	uint64_t batch; /* batch_id */
	uint8_t id[16]; /* event_id (not for dead_letter) */
	const char *reason;
	uint8_t *raw;
	uint32_t raw_len;
	json_t *truth;
};

struct run {
	const struct tl_schema *s;
	const char *db;
	struct tl_encoder *enc[TL_BATCH_EVENT_TABLES];
	uint8_t *sealed;
	size_t sealed_cap;
	struct want *w;
	size_t n;
	unsigned batches[TL_BATCH_EVENT_TABLES];
	unsigned gz_batches;
};

static void
flush(struct run *r, int t)
{
	struct tl_batch_view v;
	char q[8192];
	struct tl_test_http resp;
	size_t len;
	long code;

	if (tl_encode_pending(r->enc[t]) == 0)
		return;
	assert_int_equal(tl_encode_seal(r->enc[t], r->sealed, r->sealed_cap, &len), 0);
	assert_int_equal(tl_batch_parse(r->sealed, len, &v), 0);
	assert_int_equal(v.hdr.table, t);
	assert_true(tl_ddl_insert(r->s, (enum tl_batch_table)t, r->db, q, sizeof(q)) > 0);
	code = ch_post(q, v.body, v.hdr.body_len, (v.hdr.flags & TL_BATCH_F_GZIP) != 0, &resp);
	if (code != 200)
		fail_msg("insert into %s: HTTP %ld: %s", tl_batch_table_name((unsigned)t), code,
		        resp.p);
	free(resp.p);
	r->batches[t]++;
	r->gz_batches += (v.hdr.flags & TL_BATCH_F_GZIP) != 0;
}

/* Generate @p n events, encode them into @p db's tables, insert every batch. */
static void
run_events(struct run *r, const struct tl_schema *s, const char *db, size_t n, uint64_t seed)
{
	static const int level[TL_BATCH_EVENT_TABLES] = {6, 0, 1};
	struct tl_corpus_conf cf;
	struct tl_corpus_gen *g;
	struct tl_event *ev = calloc(1, sizeof(*ev));

	memset(r, 0, sizeof(*r));
	r->s = s;
	r->db = db;
	r->w = calloc(n, sizeof(*r->w));
	assert_non_null(r->w);
	assert_non_null(ev);
	for (int t = 0; t < TL_BATCH_EVENT_TABLES; t++) {
		struct tl_encode_conf c = {
		        .appliance_id = APPL,
		        .producer = 1,
		        .batch_rows = 64,
		        .batch_bytes = 128 * 1024,
		        .codec = level[t] ? TL_BATCH_CODEC_GZIP : TL_BATCH_CODEC_NONE,
		        .gzip_level = level[t],
		};

		assert_int_equal(tl_encoder_create(s, (enum tl_batch_table)t, &c, &r->enc[t]), 0);
		if (tl_encode_seal_max(r->enc[t]) > r->sealed_cap)
			r->sealed_cap = tl_encode_seal_max(r->enc[t]);
	}
	r->sealed = malloc(r->sealed_cap);
	assert_non_null(r->sealed);

	tl_corpus_conf_defaults(&cf);
	cf.seed = seed;
	cf.truth = true;
	cf.error_share = 0.3;
	cf.malformed_share = 0.1;
	assert_int_equal(tl_corpus_gen_create(corpus, &cf, &g), 0);
	for (size_t i = 0; i < n; i++) {
		struct tl_corpus_event ce;
		struct want *w = &r->w[i];
		enum tl_reason verdict;
		json_error_t jerr;
		int rc;

		assert_int_equal(tl_corpus_next(g, &ce), 0);
		w->seq = ce.seq;
		w->now = NOW0 + (int64_t)i * 1000003;
		w->truth = json_loadb(ce.truth, ce.truth_len, 0, &jerr);
		assert_non_null(w->truth);
		w->raw = malloc(ce.len ? ce.len : 1);
		memcpy(w->raw, ce.data, ce.len);
		w->raw_len = ce.len;
		verdict = tl_json_extract(s, w->raw, ce.len, ev);
		assert_int_equal(verdict, ce.reason);
		w->reason = tl_reason_name(verdict);
		w->table = tl_encode_table_for(ev, verdict);
		if (w->table != TL_BATCH_DEAD_LETTER)
			assert_int_equal(tl_encode_event_id(r->enc[w->table], ev, w->id), 0);
		for (int attempt = 0;; attempt++) {
			w->batch = tl_encode_batch_id(r->enc[w->table]);
			rc = w->table == TL_BATCH_DEAD_LETTER
			             ? tl_encode_reject(r->enc[w->table], ev, verdict, w->now)
			             : tl_encode_event(r->enc[w->table], ev, w->now);
			if (rc != -ENOBUFS || attempt > 0)
				break;
			flush(r, w->table);
		}
		assert_true(rc == 0 || rc == 1);
		if (rc == 1)
			flush(r, w->table);
	}
	for (int t = 0; t < TL_BATCH_EVENT_TABLES; t++)
		flush(r, t);
	r->n = n;
	tl_corpus_gen_free(g);
	free(ev);
}

static void
run_free(struct run *r)
{
	for (size_t i = 0; i < r->n; i++) {
		json_decref(r->w[i].truth);
		free(r->w[i].raw);
	}
	for (int t = 0; t < TL_BATCH_EVENT_TABLES; t++)
		tl_encoder_free(r->enc[t]);
	free(r->w);
	free(r->sealed);
}

static void
hex(const uint8_t *p, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02X", p[i]);
	out[2 * n] = '\0';
}

/* A 64-bit integer from JSONEachRow (quoted by default on every version). */
static long long
row_int(json_t *row, const char *key)
{
	json_t *v = json_object_get(row, key);

	if (json_is_integer(v))
		return json_integer_value(v);
	if (json_is_string(v))
		return strtoll(json_string_value(v), NULL, 10);
	fail_msg("column %s is not an integer", key);
	return 0;
}

static unsigned long long
row_uint(json_t *row, const char *key)
{
	json_t *v = json_object_get(row, key);

	if (json_is_integer(v))
		return (unsigned long long)json_integer_value(v);
	if (json_is_string(v))
		return strtoull(json_string_value(v), NULL, 10);
	fail_msg("column %s is not an integer", key);
	return 0;
}

/* String/any column @p col of the row equals the truth (absent/null -> NULL). */
static void
check_str(json_t *row, json_t *cols, const char *col, uint64_t seq)
{
	json_t *got = json_object_get(row, col), *exp = json_object_get(cols, col);

	assert_non_null(got);
	if (exp == NULL || json_is_null(exp)) {
		if (!json_is_null(got))
			fail_msg("event %llu: %s is '%s', expected NULL", (unsigned long long)seq,
			        col, json_string_value(got));
		return;
	}
	assert_true(json_is_string(got));
	if (json_string_length(got) != json_string_length(exp) ||
	        memcmp(json_string_value(got), json_string_value(exp), json_string_length(exp)))
		fail_msg("event %llu: %s is '%s', expected '%s'", (unsigned long long)seq, col,
		        json_string_value(got), json_string_value(exp));
}

static void
check_uint_col(json_t *row, json_t *cols, const char *col)
{
	json_t *got = json_object_get(row, col), *exp = json_object_get(cols, col);

	assert_non_null(got);
	if (exp == NULL || json_is_null(exp)) {
		assert_true(json_is_null(got));
		return;
	}
	assert_int_equal(row_uint(row, col), (unsigned long long)json_integer_value(exp));
}

/* Read table @p t of @p db back and compare every column with what was sent. */
static void
check_table(struct run *r, int t, bool small)
{
	char q[2048];
	char *reply, *line, *save = NULL;
	size_t k = 0, expect = 0;

	for (size_t i = 0; i < r->n; i++)
		expect += r->w[i].table == t;
	if (t == TL_BATCH_DEAD_LETTER)
		snprintf(q, sizeof(q),
		        "SELECT toUnixTimestamp(ingestion_time) AS it, ingestion_time_ns, "
		        "appliance_id, producer_id, reason, hex(raw) AS raw, batch_id FROM "
		        "`%s`.`%s` "
		        "ORDER BY ingestion_time_ns FORMAT JSONEachRow",
		        r->db, tl_batch_table_name((unsigned)t));
	else
		snprintf(q, sizeof(q),
		        "SELECT query_id, event_type, toUnixTimestamp(event_time) AS et, "
		        "event_time_ns, query_text, %s database_name, duration_ms, %s error, %s "
		        "toUnixTimestamp(ingestion_time) AS it, ingestion_time_ns, "
		        "hex(event_id) AS eid, producer_id, sequence, late, appliance_id, "
		        "batch_id, "
		        "extra FROM `%s`.`%s` ORDER BY ingestion_time_ns FORMAT JSONEachRow",
		        small ? "" : "user_id,", small ? "" : "rows_affected,",
		        small ? "" : "payload,", r->db, tl_batch_table_name((unsigned)t));
	reply = sql(q);
	for (line = strtok_r(reply, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		json_error_t jerr;
		json_t *row = json_loads(line, JSON_ALLOW_NUL, &jerr);
		struct want *w;
		static char h[2 * 70000 + 1];

		if (row == NULL)
			fail_msg("row not JSON: %s: %.200s", jerr.text, line);
		while (k < r->n && r->w[k].table != t)
			k++;
		assert_true(k < r->n);
		w = &r->w[k++];
		assert_int_equal(row_int(row, "ingestion_time_ns"), w->now);
		assert_int_equal(row_int(row, "it"), w->now / 1000000000);
		assert_string_equal(json_string_value(json_object_get(row, "appliance_id")), APPL);
		assert_int_equal(row_uint(row, "producer_id"), 0);
		assert_int_equal(row_uint(row, "batch_id"), w->batch);
		if (t == TL_BATCH_DEAD_LETTER) {
			assert_string_equal(
			        json_string_value(json_object_get(row, "reason")), w->reason);
			assert_string_equal(
			        json_string_value(json_object_get(w->truth, "reason")), w->reason);
			hex(w->raw, w->raw_len, h);
			assert_string_equal(json_string_value(json_object_get(row, "raw")), h);
		} else {
			json_t *cols = json_object_get(w->truth, "cols");
			json_t *x, *xt = json_object_get(w->truth, "extra"), *empty = json_object();
			long long ns = json_integer_value(json_object_get(cols, "event_time"));

			assert_true(json_is_true(json_object_get(w->truth, "valid")));
			assert_int_equal(json_is_true(json_object_get(w->truth, "is_error")),
			        t == TL_BATCH_ERROR_EVENTS);
			check_str(row, cols, "query_id", w->seq);
			check_str(row, cols, "event_type", w->seq);
			check_str(row, cols, "query_text", w->seq);
			check_str(row, cols, "database_name", w->seq);
			check_str(row, cols, "error", w->seq);
			check_uint_col(row, cols, "duration_ms");
			if (!small) {
				check_str(row, cols, "user_id", w->seq);
				check_str(row, cols, "payload", w->seq);
				check_uint_col(row, cols, "rows_affected");
			}
			assert_int_equal(row_int(row, "event_time_ns"), ns);
			assert_int_equal(row_int(row, "et"), ns / 1000000000);
			hex(w->id, 16, h);
			assert_string_equal(json_string_value(json_object_get(row, "eid")), h);
			assert_int_equal(row_uint(row, "sequence"), 0);
			assert_int_equal(row_uint(row, "late"), 0);
			x = json_loads(json_string_value(json_object_get(row, "extra")), 0, &jerr);
			assert_non_null(x);
			if (small) {
				/* The fields the old profile does not map are unknown to it. */
				const char *key;
				json_t *val;

				json_object_foreach(xt ? xt : empty, key, val)
				        assert_true(json_equal(json_object_get(x, key), val));
				if (json_object_get(cols, "user_id"))
					assert_true(
					        json_equal(json_object_get(x, "metadata.user_id"),
					                json_object_get(cols, "user_id")));
				if (json_object_get(cols, "rows_affected"))
					assert_true(json_equal(
					        json_object_get(x, "metadata.rows_affected"),
					        json_object_get(cols, "rows_affected")));
				if (json_object_get(cols, "payload"))
					assert_non_null(json_object_get(x, "payload"));
			} else if (!json_equal(x, xt ? xt : empty))
				fail_msg("event %llu: extra %s", (unsigned long long)w->seq,
				        json_string_value(json_object_get(row, "extra")));
			json_decref(x);
			json_decref(empty);
		}
		json_decref(row);
	}
	free(reply);
	while (k < r->n && r->w[k].table != t)
		k++;
	assert_int_equal(k, r->n); /* every expected row was read */
	if (expect == 0)
		fail_msg("no %s events generated", tl_batch_table_name((unsigned)t));
}

static void
create_all(const struct tl_schema *s, const char *db)
{
	static char buf[65536];

	assert_true(tl_ddl_create_database(db, buf, sizeof(buf)) > 0);
	sql_free(buf);
	for (int t = 0; t < TL_BATCH_EVENT_TABLES; t++) {
		assert_true(
		        tl_ddl_create_table(s, (enum tl_batch_table)t, db, buf, sizeof(buf)) > 0);
		sql_free(buf);
	}
}

/*
 * Rollup rows: the rollups table keeps every delta, rollups_summed adds a window's first
 * emission and its corrections up, by (window_start, event_type, database).
 */
static void
test_ddl_clickhouse_rollups_summed_adds_corrections(void **state)
{
	static char buf[65536];
	struct tl_schema *s;
	struct tl_encoder *enc;
	struct tl_encode_conf c = {
	        .appliance_id = APPL,
	        .producer = 0,
	        .batch_rows = 16,
	        .batch_bytes = 64 * 1024,
	        .codec = TL_BATCH_CODEC_NONE,
	};
	struct tl_rollup_row rows[3];
	struct tl_batch_view v;
	struct tl_test_http resp;
	uint8_t *sealed;
	size_t len;
	char *reply;
	long code;

	(void)state;
	if (!ch_up)
		skip();
	s = e6data();
	assert_true(tl_ddl_create_database("tl_ru", buf, sizeof(buf)) > 0);
	sql_free(buf);
	assert_true(tl_ddl_create_table(s, TL_BATCH_ROLLUPS, "tl_ru", buf, sizeof(buf)) > 0);
	sql_free(buf);
	assert_true(tl_ddl_rollups_view("tl_ru", buf, sizeof(buf)) > 0);
	sql_free(buf);
	/* Twice: IF NOT EXISTS. */
	sql_free(buf);
	assert_int_equal(tl_encoder_create(s, TL_BATCH_ROLLUPS, &c, &enc), 0);
	sealed = malloc(tl_encode_seal_max(enc));
	assert_non_null(sealed);
	memset(rows, 0, sizeof(rows));
	/* A window of query_end events in tpch_sf1 as first emitted, its correction (one late
	 * event), and another event type of the same window. */
	rows[0].window_ns = NOW0 / 10000000000ll * 10000000000ll;
	snprintf(rows[0].event_type, sizeof(rows[0].event_type), "query_end");
	snprintf(rows[0].database, sizeof(rows[0].database), "tpch_sf1");
	rows[0].count = 40;
	rows[0].errors = 3;
	rows[0].dur_count = 40;
	rows[0].duration_sum_ms = 40 * 120;
	rows[0].hist[7] = 40;
	rows[1] = rows[0];
	rows[1].correction = true;
	rows[1].count = 1;
	rows[1].errors = 1;
	rows[1].late = 1;
	rows[1].dur_count = 1;
	rows[1].duration_sum_ms = 9000;
	memset(rows[1].hist, 0, sizeof(rows[1].hist));
	rows[1].hist[14] = 1;
	rows[2] = rows[0];
	snprintf(rows[2].event_type, sizeof(rows[2].event_type), "query_start");
	rows[2].errors = 0;
	for (int i = 0; i < 3; i++)
		assert_int_equal(tl_encode_rollup(enc, &rows[i], NOW0), 0);
	assert_int_equal(tl_encode_seal(enc, sealed, tl_encode_seal_max(enc), &len), 0);
	assert_int_equal(tl_batch_parse(sealed, len, &v), 0);
	assert_int_equal(v.hdr.table, TL_BATCH_ROLLUPS);
	assert_int_equal(v.hdr.rows, 3);
	assert_true(tl_ddl_insert(s, TL_BATCH_ROLLUPS, "tl_ru", buf, sizeof(buf)) > 0);
	code = ch_post(buf, v.body, v.hdr.body_len, false, &resp);
	if (code != 200)
		fail_msg("insert into rollups: HTTP %ld: %s", code, resp.p);
	free(resp.p);
	reply = sql("SELECT event_type, database, sum(count), sum(errors), sum(late), "
	            "sum(with_duration), sum(duration_sum_ms), sum(h07), sum(h14) FROM "
	            "tl_ru.rollups_summed GROUP BY event_type, database ORDER BY event_type");
	assert_string_equal(reply, "query_end\ttpch_sf1\t41\t4\t1\t41\t13800\t40\t1\n"
	                           "query_start\ttpch_sf1\t40\t0\t0\t40\t4800\t40\t0\n");
	free(reply);
	/* p95 from the histogram: query_end has 40 of 41 durations in bucket 7 ([64, 128)
	 * ms) and one in bucket 14: 95 % is reached in bucket 7, upper edge 128 ms. */
	assert_true(tl_ddl_rollups_p95_view("tl_ru", buf, sizeof(buf)) > 0);
	sql_free(buf);
	reply = sql("SELECT event_type, events, p95_bucket, p95_ms FROM tl_ru.rollups_p95 ORDER "
	            "BY event_type");
	assert_string_equal(reply, "query_end\t41\t8\t128\nquery_start\t40\t8\t128\n");
	free(reply);
	/* Three deltas kept as sent, each with its own id, all of one batch. */
	reply = sql("SELECT count(), uniqExact(event_id), uniqExact(batch_id), sum(correction) "
	            "FROM tl_ru.rollups");
	assert_string_equal(reply, "3\t3\t1\t1\n");
	free(reply);
	free(sealed);
	tl_encoder_free(enc);
	tl_schema_free(s);
}

static void
test_ddl_clickhouse_roundtrip_every_column_matches(void **state)
{
	struct tl_schema *s;
	struct run r;
	char *reply;

	(void)state;
	if (!ch_up)
		skip();
	s = e6data();
	create_all(s, "tl_rt");
	/* Applying the DDL twice is harmless (IF NOT EXISTS). */
	create_all(s, "tl_rt");
	run_events(&r, s, "tl_rt", 400, 11);
	assert_true(r.batches[TL_BATCH_SINK_OUTPUT] >= 2);
	assert_true(r.gz_batches > 0 && r.batches[TL_BATCH_ERROR_EVENTS] > 0);
	for (int t = 0; t < TL_BATCH_EVENT_TABLES; t++)
		check_table(&r, t, false);
	/* The server agrees on the types: nothing to alter. */
	{
		char q[512], buf[4096];

		for (int t = 0; t < TL_BATCH_EVENT_TABLES; t++) {
			assert_true(tl_ddl_columns_query(
			                    (enum tl_batch_table)t, "tl_rt", q, sizeof(q)) > 0);
			reply = sql(q);
			assert_int_equal(tl_ddl_alter(s, (enum tl_batch_table)t, "tl_rt", reply,
			                         strlen(reply), buf, sizeof(buf), NULL, 0),
			        0);
			free(reply);
		}
	}
	run_free(&r);
	tl_schema_free(s);
}

static struct tl_classify_pattern_def *
pattern(struct tl_classify_conf *c, const char *id, const char *regex, const char *category,
        int sev, int eff, const char *cause)
{
	struct tl_classify_pattern_def *p = &c->patterns[c->n_patterns++];

	memset(p, 0, sizeof(*p));
	snprintf(p->id, sizeof(p->id), "%s", id);
	snprintf(p->regex, sizeof(p->regex), "%s", regex);
	snprintf(p->category, sizeof(p->category), "%s", category);
	snprintf(p->cause, sizeof(p->cause), "%s", cause);
	snprintf(p->action, sizeof(p->action), "act on %s", id);
	p->severity = sev - 1;
	p->effect = eff;
	return p;
}

static void
run_all(char **stmts, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		sql_free(stmts[i]);
}

static void
assert_reply(const char *q, const char *want)
{
	char *r = sql(q);

	assert_string_equal(r, want);
	free(r);
}

/*
 * error_patterns is rewritten from the patterns in use (texts with quotes, backslashes
 * and newlines survive), a pattern dropped from the profile leaves it, and an event row
 * carries its matched pattern ids, their categories and the highest severity.
 */
static void
test_ddl_clickhouse_error_patterns_and_classified_rows(void **state)
{
	static struct tl_classify_conf c;
	static struct tl_event ev;
	const char *cause = "it's a \\ path\nand a 'quote'";
	struct tl_schema *s = e6data();
	struct tl_classify_db *db = NULL;
	struct tl_encode_conf ec = {.appliance_id = APPL, .batch_rows = 8, .batch_bytes = 1 << 20};
	struct tl_encoder *enc = NULL;
	struct tl_batch_view v;
	char **stmts = NULL, err[512], q[8192], want[256];
	unsigned n = 0;
	uint8_t *sealed = malloc(1 << 20);
	const char *line = "{\"query_id\":\"q1\",\"event_type\":\"failed\","
	                   "\"timestamp\":\"2025-03-01T10:00:00Z\",\"metadata\":{\"error\":"
	                   "\"java.lang.OutOfMemoryError: Java heap space; Connection refused\"}}";
	struct tl_test_http resp;
	size_t len;

	(void)state;
	if (!ch_up)
		skip();
	assert_non_null(sealed);
	snprintf(c.fields[0], TL_SCHEMA_NAME_MAX, "error");
	c.n_fields = 1;
	pattern(&c, "jvm.oom", "OutOfMemoryError", "memory", TL_CLASSIFY_SEV_CRITICAL,
	        TL_CLASSIFY_EFFECT_ERROR, cause);
	pattern(&c, "net.refused", "Connection refused", "network", TL_CLASSIFY_SEV_ERROR,
	        TL_CLASSIFY_EFFECT_ERROR, "peer down");
	pattern(&c, "jvm.heap", "heap space", "memory", TL_CLASSIFY_SEV_WARNING,
	        TL_CLASSIFY_EFFECT_TAG, "heap");
	assert_int_equal(tl_classify_build(&c, s, &db, err, sizeof(err)), 0);
	sql_free("DROP DATABASE IF EXISTS `tl_pat`");
	sql_free("CREATE DATABASE `tl_pat`");
	assert_int_equal(tl_ddl_patterns("tl_pat", db, "spark", 1700000000, &stmts, &n), 0);
	assert_int_equal(n, 6);
	run_all(stmts, n);
	tl_ddl_stmts_free(stmts, n);
	assert_reply("SELECT count() FROM `tl_pat`.`error_patterns`", "3\n");
	snprintf(q, sizeof(q), "SELECT cause = unhex('");
	for (const char *p = cause; *p; p++)
		snprintf(q + strlen(q), sizeof(q) - strlen(q), "%02X", (unsigned char)*p);
	snprintf(q + strlen(q), sizeof(q) - strlen(q),
	        "') FROM `tl_pat`.`error_patterns` WHERE id = 'jvm.oom'");
	assert_reply(q, "1\n");
	snprintf(want, sizeof(want), "memory\tcritical\terror\tspark\t%s\t1700000000\n",
	        tl_classify_db_hash(db));
	assert_reply("SELECT category, severity, effect, profile, db_hash, toUInt32(loaded_at) "
	             "FROM `tl_pat`.`error_patterns` WHERE id = 'jvm.oom'",
	        want);
	assert_reply("SELECT effect FROM `tl_pat`.`error_patterns` WHERE id = 'jvm.heap'", "tag\n");

	/* A classified event: ids and categories of its matches, the highest severity. */
	for (int t = TL_BATCH_SINK_OUTPUT; t <= TL_BATCH_ERROR_EVENTS; t++) {
		assert_true(
		        tl_ddl_create_table(s, (enum tl_batch_table)t, "tl_pat", q, sizeof(q)) > 0);
		sql_free(q);
	}
	assert_int_equal(tl_encoder_create(s, TL_BATCH_ERROR_EVENTS, &ec, &enc), 0);
	assert_int_equal(tl_json_extract(s, (const uint8_t *)line, (uint32_t)strlen(line), &ev),
	        TL_REASON_OK);
	ev.cls_db = db;
	ev.cls.n = 3;
	ev.cls.ids[0] = 0;
	ev.cls.ids[1] = 1;
	ev.cls.ids[2] = 2;
	ev.cls.severity = TL_CLASSIFY_SEV_CRITICAL;
	assert_int_equal(tl_encode_event(enc, &ev, NOW0), 0);
	assert_int_equal(tl_encode_seal(enc, sealed, 1 << 20, &len), 0);
	assert_int_equal(tl_batch_parse(sealed, len, &v), 0);
	assert_true(tl_ddl_insert(s, TL_BATCH_ERROR_EVENTS, "tl_pat", q, sizeof(q)) > 0);
	if (ch_post(q, v.body, v.hdr.body_len, false, &resp) != 200)
		fail_msg("insert: %s", resp.p);
	free(resp.p);
	assert_reply("SELECT matched_patterns, categories, severity FROM `tl_pat`.`error_events`",
	        "['jvm.oom','net.refused','jvm.heap']\t['memory','network']\tcritical\n");
	/* The join a support engineer runs: causes of the error events' patterns. */
	assert_reply("SELECT id, category FROM `tl_pat`.`error_events` ARRAY JOIN "
	             "matched_patterns AS id ANY LEFT JOIN `tl_pat`.`error_patterns` USING id "
	             "ORDER BY id FORMAT TabSeparated",
	        "jvm.heap\tmemory\njvm.oom\tmemory\nnet.refused\tnetwork\n");
	tl_encoder_free(enc);
	tl_classify_db_free(db);

	/* A reload without net.refused: the table follows. */
	memset(&c, 0, sizeof(c));
	snprintf(c.fields[0], TL_SCHEMA_NAME_MAX, "error");
	c.n_fields = 1;
	pattern(&c, "jvm.oom", "OutOfMemoryError", "memory", TL_CLASSIFY_SEV_CRITICAL,
	        TL_CLASSIFY_EFFECT_ERROR, "new cause");
	assert_int_equal(tl_classify_build(&c, s, &db, err, sizeof(err)), 0);
	assert_int_equal(tl_ddl_patterns("tl_pat", db, "spark", 1700000100, &stmts, &n), 0);
	run_all(stmts, n);
	run_all(stmts, n); /* and again: a repeated run changes nothing */
	tl_ddl_stmts_free(stmts, n);
	assert_reply("SELECT id, cause FROM `tl_pat`.`error_patterns`", "jvm.oom\tnew cause\n");
	assert_reply("SELECT count() FROM system.tables WHERE database = 'tl_pat' AND "
	             "name LIKE 'error_patterns_%'",
	        "0\n");
	assert_int_equal(tl_ddl_patterns("bad name", db, "x", 0, &stmts, &n), -EINVAL);
	assert_int_equal(tl_ddl_patterns("tl_pat", NULL, "x", 0, &stmts, &n), -EINVAL);
	tl_classify_db_free(db);
	sql_free("DROP DATABASE `tl_pat`");
	tl_schema_free(s);
	free(sealed);
}

static void
test_ddl_clickhouse_alter_adds_columns_insert_works(void **state)
{
	struct tl_schema *small, *full;
	char q[512], buf[8192], msg[256];
	char *reply;
	struct run r;

	(void)state;
	if (!ch_up)
		skip();
	small = e6data_small();
	full = e6data();
	create_all(small, "tl_alter");

	/* Events of the old profile land in the old tables. */
	run_events(&r, small, "tl_alter", 120, 5);
	check_table(&r, TL_BATCH_SINK_OUTPUT, true);
	run_free(&r);

	for (int t = 0; t < TL_BATCH_EVENT_TABLES; t++) {
		int n;

		assert_true(
		        tl_ddl_columns_query((enum tl_batch_table)t, "tl_alter", q, sizeof(q)) > 0);
		reply = sql(q);
		n = tl_ddl_alter(full, (enum tl_batch_table)t, "tl_alter", reply, strlen(reply),
		        buf, sizeof(buf), msg, sizeof(msg));
		free(reply);
		if (t == TL_BATCH_DEAD_LETTER) {
			assert_int_equal(n, 0);
			continue;
		}
		assert_int_equal(n, (int)strlen(buf));
		snprintf(q, sizeof(q),
		        "ALTER TABLE `tl_alter`.`%s` ADD COLUMN `user_id` Nullable(String), "
		        "ADD COLUMN `rows_affected` Nullable(UInt64), ADD COLUMN `payload` "
		        "Nullable(String)",
		        tl_batch_table_name((unsigned)t));
		assert_string_equal(buf, q);
		sql_free(buf);
		/* Now complete. */
		assert_true(
		        tl_ddl_columns_query((enum tl_batch_table)t, "tl_alter", q, sizeof(q)) > 0);
		reply = sql(q);
		assert_int_equal(tl_ddl_alter(full, (enum tl_batch_table)t, "tl_alter", reply,
		                         strlen(reply), buf, sizeof(buf), msg, sizeof(msg)),
		        0);
		free(reply);
	}
	/* Drop the old rows so the comparison sees only the new profile's. */
	sql_free("TRUNCATE TABLE `tl_alter`.`sink_output`");
	sql_free("TRUNCATE TABLE `tl_alter`.`error_events`");
	sql_free("TRUNCATE TABLE `tl_alter`.`dead_letter`");
	run_events(&r, full, "tl_alter", 200, 6);
	for (int t = 0; t < TL_BATCH_EVENT_TABLES; t++)
		check_table(&r, t, false);
	run_free(&r);
	tl_schema_free(small);
	tl_schema_free(full);
}

static void
test_ddl_clickhouse_conflicts_and_compatible_types(void **state)
{
	struct tl_schema *s;
	char q[512], buf[8192], msg[256];
	char *reply;

	(void)state;
	if (!ch_up)
		skip();
	s = e6data();
	sql_free("CREATE DATABASE IF NOT EXISTS tl_conf");
	/* Hand-made tables: one with a time zone (compatible), one with a wrong type. */
	sql_free("CREATE TABLE tl_conf.sink_output (query_id String, event_time DateTime('UTC'), "
	         "ingestion_time DateTime('UTC')) ENGINE = MergeTree() "
	         "PARTITION BY toYYYYMMDD(event_time) ORDER BY (event_time, query_id)");
	sql_free("CREATE TABLE tl_conf.error_events (query_id String, event_time DateTime, "
	         "duration_ms Nullable(String)) ENGINE = MergeTree() "
	         "PARTITION BY toYYYYMMDD(event_time) ORDER BY (event_time, query_id)");
	assert_true(tl_ddl_columns_query(TL_BATCH_SINK_OUTPUT, "tl_conf", q, sizeof(q)) > 0);
	reply = sql(q);
	assert_non_null(strstr(reply, "DateTime(\\'UTC\\')"));
	assert_true(tl_ddl_alter(s, TL_BATCH_SINK_OUTPUT, "tl_conf", reply, strlen(reply), buf,
	                    sizeof(buf), msg, sizeof(msg)) > 0);
	free(reply);
	sql_free(buf);
	assert_true(tl_ddl_columns_query(TL_BATCH_ERROR_EVENTS, "tl_conf", q, sizeof(q)) > 0);
	reply = sql(q);
	assert_int_equal(tl_ddl_alter(s, TL_BATCH_ERROR_EVENTS, "tl_conf", reply, strlen(reply),
	                         buf, sizeof(buf), msg, sizeof(msg)),
	        TL_E_SCHEMA);
	assert_non_null(strstr(msg, "`duration_ms`"));
	free(reply);
	/* A table that does not exist. */
	assert_true(tl_ddl_columns_query(TL_BATCH_DEAD_LETTER, "tl_conf", q, sizeof(q)) > 0);
	reply = sql(q);
	assert_int_equal(tl_ddl_alter(s, TL_BATCH_DEAD_LETTER, "tl_conf", reply, strlen(reply), buf,
	                         sizeof(buf), msg, sizeof(msg)),
	        -ENOENT);
	free(reply);
	/* The altered DateTime('UTC') table takes batches. */
	{
		struct run r;

		sql_free("DROP TABLE IF EXISTS tl_conf.error_events");
		create_all(s, "tl_conf");
		run_events(&r, s, "tl_conf", 100, 8);
		check_table(&r, TL_BATCH_SINK_OUTPUT, false);
		run_free(&r);
	}
	tl_schema_free(s);
}

int
main(void)
{
	const struct CMUnitTest pure[] = {
	        cmocka_unit_test(test_ddl_e6data_create_table_exact),
	        cmocka_unit_test(test_ddl_dead_letter_create_table_exact),
	        cmocka_unit_test(test_ddl_other_statements_exact),
	        cmocka_unit_test(test_ddl_bad_database_name_einval),
	        cmocka_unit_test(test_ddl_small_buffer_enospc),
	        cmocka_unit_test(test_ddl_nullable_time_and_id_keys),
	        cmocka_unit_test(test_ddl_name_collision_schema_error),
	        cmocka_unit_test(test_ddl_alter_missing_columns_exact),
	        cmocka_unit_test(test_ddl_alter_complete_table_empty),
	        cmocka_unit_test(test_ddl_alter_type_conflict_names_column),
	        cmocka_unit_test(test_ddl_alter_compatible_variants_accepted),
	        cmocka_unit_test(test_ddl_alter_no_columns_enoent),
	        cmocka_unit_test(test_ddl_alter_malformed_reply_ebadmsg),
	};
	const struct CMUnitTest server[] = {
	        cmocka_unit_test(test_ddl_clickhouse_roundtrip_every_column_matches),
	        cmocka_unit_test(test_ddl_clickhouse_rollups_summed_adds_corrections),
	        cmocka_unit_test(test_ddl_clickhouse_alter_adds_columns_insert_works),
	        cmocka_unit_test(test_ddl_clickhouse_error_patterns_and_classified_rows),
	        cmocka_unit_test(test_ddl_clickhouse_conflicts_and_compatible_types),
	};
	int rc = cmocka_run_group_tests_name("ddl", pure, NULL, NULL);

	return rc | cmocka_run_group_tests_name("clickhouse", server, ch_setup, ch_teardown);
}
