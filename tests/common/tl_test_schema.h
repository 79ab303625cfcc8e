/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * Schema definitions for tests, built in code.
 *
 * Tests that need a compiled schema build its struct tl_schema_def here instead of going
 * through the profile loader, so a loader bug cannot hide behind (or cause) a failure of
 * the unit under test. tl_test_e6data_def() is the one copy of the shipped profile
 * config/profiles/e6data-qpe.yaml's `schema:` section; a test that needs other columns
 * builds them with tl_test_add_col() and tl_test_set_roles().
 *
 * Header-only (static inline) and free of CMocka, so unit tests and libFuzzer targets
 * can both include it. Nothing here allocates; all functions write into a caller-owned
 * definition. Not thread-safe for one definition (plain data).
 */
#ifndef TL_TEST_SCHEMA_H
#define TL_TEST_SCHEMA_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tl_schema.h"

/**
 * Append a column to @p def.
 *
 * @param def       the definition; its n_cols grows by one.
 * @param name      column name (truncated to TL_SCHEMA_NAME_MAX - 1 bytes).
 * @param path      dotted JSON path (truncated to TL_SCHEMA_PATH_MAX - 1 bytes).
 * @param type      an enum tl_col_type (not checked: tests feed bad types on purpose).
 * @param required  absent or null value -> missing_field.
 * @param max_len   bytes of the raw value; 0 = pipeline.max_string.
 * @return the new column, or NULL (and @p def unchanged) if it already holds
 *         TL_SCHEMA_MAX_COLS columns.
 */
static inline struct tl_col_def *
tl_test_add_col(struct tl_schema_def *def, const char *name, const char *path, int type,
        bool required, uint64_t max_len)
{
	struct tl_col_def *c;

	if (def->n_cols >= TL_SCHEMA_MAX_COLS)
		return NULL;
	c = &def->cols[def->n_cols++];
	snprintf(c->name, sizeof(c->name), "%s", name);
	snprintf(c->path, sizeof(c->path), "%s", path);
	c->type = type;
	c->required = required;
	c->max_len = max_len;
	return c;
}

/**
 * Name the special columns of @p def (each name truncated to TL_SCHEMA_NAME_MAX - 1
 * bytes). Whether they exist and have the right type is the compiler's business.
 *
 * @param def    the definition.
 * @param time   time_column: a DATETIME column, the event time.
 * @param error  error_column: set, non-null and non-empty -> error event.
 * @param id     id_column: identity of the query.
 */
static inline void
tl_test_set_roles(struct tl_schema_def *def, const char *time, const char *error, const char *id)
{
	snprintf(def->time_column, sizeof(def->time_column), "%s", time);
	snprintf(def->error_column, sizeof(def->error_column), "%s", error);
	snprintf(def->id_column, sizeof(def->id_column), "%s", id);
}

/** Number of columns tl_test_e6data_def() declares. */
#define TL_TEST_E6DATA_COLS 10

/**
 * Reset @p def to exactly the `schema:` section of config/profiles/e6data-qpe.yaml.
 *
 * Columns, in this order (index: name <- path, type, required, max_len):
 * 0 query_id <- query_id (string, required, 256);
 * 1 event_type <- event_type (string, required, 64);
 * 2 event_time <- timestamp (datetime, required);
 * 3 query_text <- query_text (string);
 * 4 user_id <- metadata.user_id (string, 256);
 * 5 database_name <- metadata.database (string, 256);
 * 6 duration_ms <- metadata.duration_ms (uint64);
 * 7 rows_affected <- metadata.rows_affected (uint64);
 * 8 error <- metadata.error (any);
 * 9 payload <- payload (any).
 * time_column event_time, error_column error, id_column query_id.
 * A change to the profile's columns must be made here too.
 *
 * @param def  the definition; zeroed first, so columns may be appended afterwards.
 */
static inline void
tl_test_e6data_def(struct tl_schema_def *def)
{
	memset(def, 0, sizeof(*def));
	tl_test_add_col(def, "query_id", "query_id", TL_COL_STRING, true, 256);
	tl_test_add_col(def, "event_type", "event_type", TL_COL_STRING, true, 64);
	tl_test_add_col(def, "event_time", "timestamp", TL_COL_DATETIME, true, 0);
	tl_test_add_col(def, "query_text", "query_text", TL_COL_STRING, false, 0);
	tl_test_add_col(def, "user_id", "metadata.user_id", TL_COL_STRING, false, 256);
	tl_test_add_col(def, "database_name", "metadata.database", TL_COL_STRING, false, 256);
	tl_test_add_col(def, "duration_ms", "metadata.duration_ms", TL_COL_UINT64, false, 0);
	tl_test_add_col(def, "rows_affected", "metadata.rows_affected", TL_COL_UINT64, false, 0);
	tl_test_add_col(def, "error", "metadata.error", TL_COL_ANY, false, 0);
	tl_test_add_col(def, "payload", "payload", TL_COL_ANY, false, 0);
	tl_test_set_roles(def, "event_time", "error", "query_id");
}

/**
 * Drop every per-column max_len of @p def (set it to 0), so that only
 * pipeline.max_string bounds a value. For tests whose inputs were written against the
 * e6data columns without per-column caps.
 *
 * @param def  the definition.
 */
static inline void
tl_test_clear_max_len(struct tl_schema_def *def)
{
	for (uint32_t i = 0; i < def->n_cols && i < TL_SCHEMA_MAX_COLS; i++)
		def->cols[i].max_len = 0;
}

/**
 * The `pipeline.limits` of config/profiles/e6data-qpe.yaml, which are also the defaults
 * of tl_limits_opts: max_event_size 60 KiB, max_depth 32, max_string 60 KiB,
 * max_extra 32.
 *
 * @return the limits, by value.
 */
static inline struct tl_limits
tl_test_e6data_limits(void)
{
	struct tl_limits l = {
	        .max_event_size = 60 * 1024,
	        .max_depth = 32,
	        .max_string = 60 * 1024,
	        .max_extra = 32,
	};

	return l;
}

/**
 * Group set-up of tests that spool into a scratch folder: create @p dir (a mkdtemp()
 * template, rewritten in place) and compile the e6data schema into *@p schema.
 * @return 0, or -1 (the folder or the schema could not be made).
 */
static inline int
tl_test_e6data_setup(char *dir, struct tl_schema **schema)
{
	static struct tl_schema_def def;
	struct tl_limits lim = tl_test_e6data_limits();
	char msg[256];

	if (mkdtemp(dir) == NULL)
		return -1;
	tl_test_e6data_def(&def);
	return tl_schema_compile(&def, &lim, schema, msg, sizeof(msg)) == 0 ? 0 : -1;
}

/** Undo tl_test_e6data_setup(): free the schema, remove the folder. @return 0, -1. */
static inline int
tl_test_e6data_teardown(const char *dir, struct tl_schema *schema)
{
	char cmd[300];

	tl_schema_free(schema);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

#endif /* TL_TEST_SCHEMA_H */
