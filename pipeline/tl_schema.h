/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * Event schema: which JSON paths become which typed columns.
 *
 * The definition (struct tl_schema_def) is plain data filled from the profile's
 * `schema:` section through tl_schema_opts. tl_schema_compile() turns it into the
 * read-only lookup structure the extractor walks (a trie of path segments). A compiled
 * schema is immutable and may be shared by any number of workers without locks.
 */
#ifndef TL_SCHEMA_H
#define TL_SCHEMA_H

#include <stdbool.h>
#include <stdint.h>

#include "tl_opt.h"

#define TL_SCHEMA_MAX_COLS 64
#define TL_SCHEMA_NAME_MAX 64
#define TL_SCHEMA_PATH_MAX 256

/** Column types (the profile spells them as the names in tl_col_type_names). */
enum tl_col_type {
	TL_COL_STRING,   /**< JSON string (or null if not required) */
	TL_COL_ANY,      /**< any JSON value: a string's contents, or other values verbatim */
	TL_COL_INT64,    /**< JSON integer in [INT64_MIN, INT64_MAX], no fraction/exponent */
	TL_COL_UINT64,   /**< JSON integer in [0, UINT64_MAX] */
	TL_COL_FLOAT64,  /**< any JSON number, finite as a double */
	TL_COL_BOOL,     /**< true / false */
	TL_COL_DATETIME, /**< ISO-8601 string with zone, fraction up to 9 digits -> ns UTC */
	TL_COL_TYPE_MAX
};

/** NULL-terminated names of enum tl_col_type, for the option table. */
extern const char *const tl_col_type_names[];

/** One column of the profile. */
struct tl_col_def {
	char name[TL_SCHEMA_NAME_MAX]; /**< column name in the OLAP table */
	char path[TL_SCHEMA_PATH_MAX]; /**< dotted JSON path, e.g. "metadata.user_id" */
	int type;                      /**< enum tl_col_type */
	bool required;                 /**< absent or null -> missing_field */
	uint64_t max_len;              /**< bytes of the raw value; 0 = pipeline.max_string */
};

/** The `schema:` section of a profile. */
struct tl_schema_def {
	struct tl_col_def cols[TL_SCHEMA_MAX_COLS];
	uint32_t n_cols;
	char time_column[TL_SCHEMA_NAME_MAX];  /**< a DATETIME column: the event time */
	char error_column[TL_SCHEMA_NAME_MAX]; /**< set and non-null/non-empty -> error event */
	char id_column[TL_SCHEMA_NAME_MAX];    /**< identity of the query (dedup, grouping) */
};

/** The `pipeline:` limits the extractor enforces. */
struct tl_limits {
	uint64_t max_event_size; /**< bytes of one NDJSON line */
	uint64_t max_depth;      /**< nesting of objects/arrays, top-level object = 1 */
	uint64_t max_string;     /**< bytes of one raw string (escapes counted as written) */
	uint64_t max_extra;      /**< unknown fields kept per event */
};

/** Option tables for `schema:` and the limits part of `pipeline:` (see tl_opt.h). */
extern const struct tl_opt tl_schema_opts[];
extern const struct tl_opt tl_limits_opts[];

/**
 * Semantic check of a whole `schema:` section (a tl_opt_check_fn for the SECTION entry
 * that holds tl_schema_opts): the same rules as tl_schema_compile() for the columns.
 * @param def  a struct tl_schema_def.
 * @return 0 if consistent, 1 with @p msg filled if not.
 */
int tl_schema_check(const void *def, char *msg, size_t msglen);

/** Compiled schema; opaque. */
struct tl_schema;

/**
 * Compile a definition.
 * @param def    the columns; copied, the caller may free it afterwards.
 * @param lim    limits; copied.
 * @param out    out: the compiled schema, owned by the caller (tl_schema_free).
 * @param msg    buffer for a human-readable reason on failure (may be NULL).
 * @return 0; TL_E_SCHEMA (with @p msg) if paths conflict (one column's path is a
 *         prefix of another's), names repeat, or time/error/id columns are missing
 *         or of the wrong type, or @p lim is out of range (max_depth 1..1024,
 *         max_extra <= TL_EVENT_MAX_EXTRA); -ENOMEM. On failure *out is NULL.
 */
int tl_schema_compile(const struct tl_schema_def *def, const struct tl_limits *lim,
		struct tl_schema **out, char *msg, size_t msglen);

/** Free a compiled schema. NULL-safe. */
void tl_schema_free(struct tl_schema *s);

/** @return the number of columns. */
uint32_t tl_schema_n_cols(const struct tl_schema *s);

/** @return the definition of column @p i (owned by @p s, valid until tl_schema_free). */
const struct tl_col_def *tl_schema_col(const struct tl_schema *s, uint32_t i);

/** @return the index of the column named @p name, or -1. */
int tl_schema_col_index(const struct tl_schema *s, const char *name);

/** @return the limits the schema was compiled with (owned by @p s). */
const struct tl_limits *tl_schema_limits(const struct tl_schema *s);

/** Indices of the special columns (always valid in a compiled schema). */
int tl_schema_time_col(const struct tl_schema *s);
int tl_schema_error_col(const struct tl_schema *s);
int tl_schema_id_col(const struct tl_schema *s);

#endif
