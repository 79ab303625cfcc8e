/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * ClickHouse DDL for tapline's tables, generated from the profile's compiled schema.
 *
 * The column list of each table is the encoder's (tl_encode_columns()): same names, same
 * order, same types, so a batch's RowBinary body always matches the INSERT that carries
 * it. Statements use only what ClickHouse 18.16 understands and current releases still
 * accept: MergeTree() with PARTITION BY / ORDER BY, Nullable, FixedString, DateTime (no
 * DateTime64, Map or LowCardinality). Identifiers are validated and quoted with
 * backquotes.
 *
 * Tables: sink_output and error_events PARTITION BY toYYYYMMDD(time) ORDER BY (time, id)
 * where time is the profile's time_column (ingestion_time if that column is not
 * required: a sorting key cannot be Nullable) and id its id_column (wrapped in
 * assumeNotNull() if not required); dead_letter PARTITION BY toYYYYMMDD(ingestion_time)
 * ORDER BY (ingestion_time).
 *
 * Every function writes one NUL-terminated statement into a caller buffer and returns
 * its length (>= 0), or a negative error: -ENOSPC if @p cap is too small (the buffer
 * then holds a truncated, unusable string), -EINVAL for an invalid database name or
 * table, TL_E_SCHEMA if the schema's columns collide (see tl_encode_columns()).
 *
 * Thread-safety: reentrant; nothing is allocated except tl_ddl_alter()'s scratch.
 */
#ifndef TL_DDL_H
#define TL_DDL_H

#include <stddef.h>

#include "tl_batch.h"
#include "tl_classify.h"
#include "tl_schema.h"

/** Longest database name accepted. */
#define TL_DDL_IDENT_MAX 64

/**
 * @return 1 if @p name is a valid database name for tapline: 1..TL_DDL_IDENT_MAX bytes
 *         of [A-Za-z0-9_], not starting with a digit; else 0.
 */
int tl_ddl_ident_valid(const char *name);

/**
 * The materialized view `rollups_summed` of database @p db: a SummingMergeTree keyed by
 * (window_start, event_type, database) that adds up every row inserted into `rollups`
 * (windows as first emitted, and their corrections). Query it with sum() and GROUP BY
 * (merges are eventual).
 * @return the statement's length; -EINVAL (bad name); -ENOSPC (@p cap too small).
 */
int tl_ddl_rollups_view(const char *db, char *buf, size_t cap);

/**
 * The view `rollups_p95` of database @p db over `rollups_summed`: per window, event type
 * and database the summed counters (events, error_events, late_events, durations,
 * duration_total_ms), the duration histogram as an array (`hist`) and
 * `p95_ms`, the upper edge of the log2 bucket where 95 % of the durations are reached
 * (an approximation within a factor of two; 0 when every duration was 0 ms).
 * @return the statement's length; -EINVAL; -ENOSPC.
 */
int tl_ddl_rollups_p95_view(const char *db, char *buf, size_t cap);

/** "CREATE DATABASE IF NOT EXISTS `db`". */
int tl_ddl_create_database(const char *db, char *buf, size_t cap);

/** "CREATE TABLE IF NOT EXISTS `db`.`table` (...) ENGINE = MergeTree() ...". */
int tl_ddl_create_table(
        const struct tl_schema *s, enum tl_batch_table t, const char *db, char *buf, size_t cap);

/** The INSERT column list: "`c1`, `c2`, ..." in the encoder's order. */
int tl_ddl_insert_columns(const struct tl_schema *s, enum tl_batch_table t, char *buf, size_t cap);

/** "INSERT INTO `db`.`table` (`c1`, ...) FORMAT RowBinary": a batch body follows it. */
int tl_ddl_insert(
        const struct tl_schema *s, enum tl_batch_table t, const char *db, char *buf, size_t cap);

/**
 * The query whose TabSeparated reply tl_ddl_alter() reads:
 * "SELECT name, type FROM system.columns WHERE database = 'db' AND table = 'table'
 * FORMAT TabSeparated".
 */
int tl_ddl_columns_query(enum tl_batch_table t, const char *db, char *buf, size_t cap);

/**
 * The ALTER that brings an existing table up to the profile: one
 * "ALTER TABLE `db`.`table` ADD COLUMN `c` T, ADD COLUMN ..." with every column the
 * encoder writes that the table lacks, in encoder order. Columns the table has and the
 * profile does not are left alone (never dropped: the INSERT names its columns).
 *
 * A type is compatible when it is the same, or differs only in ways RowBinary does not
 * see: DateTime with a time zone ("DateTime('UTC')") for DateTime, and LowCardinality(T)
 * for T (an operator may optimise a column by hand).
 *
 * @param reply      the server's TabSeparated reply to tl_ddl_columns_query() (name TAB
 *                   type per line; TSV escapes are decoded); need not be terminated.
 * @param reply_len  its length.
 * @param msg        buffer for a human-readable reason on TL_E_SCHEMA / -EBADMSG (may be
 *                   NULL).
 * @return the statement's length; 0 (and "" in @p buf) if nothing is missing; -ENOENT if
 *         the reply lists no column (the table does not exist: create it); TL_E_SCHEMA if
 *         a column exists with an incompatible type (@p msg names the column and both
 *         types); -EBADMSG if the reply is not name TAB type lines; -ENOSPC; -EINVAL;
 *         -ENOMEM.
 */
int tl_ddl_alter(const struct tl_schema *s, enum tl_batch_table t, const char *db,
        const char *reply, size_t reply_len, char *buf, size_t cap, char *msg, size_t msglen);

/**
 * tl_ddl_create_table(), tl_ddl_insert(), tl_ddl_columns_query() and tl_ddl_alter() for
 * a table named @p table instead of its own name (a route's main table; NULL: its own
 * name). @return as those; -EINVAL also if @p table is not a valid identifier.
 */
int tl_ddl_create_table_named(const struct tl_schema *s, enum tl_batch_table t, const char *db,
        const char *table, char *buf, size_t cap);
int tl_ddl_insert_named(const struct tl_schema *s, enum tl_batch_table t, const char *db,
        const char *table, char *buf, size_t cap);
int tl_ddl_columns_query_named(
        enum tl_batch_table t, const char *db, const char *table, char *buf, size_t cap);
int tl_ddl_alter_named(const struct tl_schema *s, enum tl_batch_table t, const char *db,
        const char *table, const char *reply, size_t reply_len, char *buf, size_t cap, char *msg,
        size_t msglen);

/**
 * The statements that (re)write the dimension table `error_patterns` of @p db from the
 * patterns of @p cdb: one row per pattern (id, category, severity, effect, cause, action,
 * profile, db_hash, loaded_at), so queries can join error_events.matched_patterns
 * (ARRAY JOIN) with causes and actions. The table is built as error_patterns_new and
 * swapped in with one RENAME: readers never see it half filled, and patterns a new
 * profile dropped disappear. Run them in order; a failed run can simply be repeated.
 * @param profile    the profile's name, stored in every row.
 * @param loaded_at  unix seconds, stored in every row.
 * @param out        out: malloc'd array of malloc'd statements (tl_ddl_stmts_free).
 * @param n_out      out: their number.
 * @return 0; -EINVAL if @p db is not a valid identifier or @p cdb is NULL; -ENOMEM;
 *         -ENOSPC (cannot happen with the pattern limits of tl_classify.h).
 */
int tl_ddl_patterns(const char *db, const struct tl_classify_db *cdb, const char *profile,
        uint32_t loaded_at, char ***out, unsigned *n_out);

/** Free what tl_ddl_patterns() returned. NULL-safe. */
void tl_ddl_stmts_free(char **stmts, unsigned n);

#endif
