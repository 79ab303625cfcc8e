/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * An extracted event: typed column values that point into the packet (zero-copy).
 *
 * A struct tl_event is valid only while the buffer it was extracted from is (the
 * mbuf, the reassembly slot or the caller's buffer): the consumer must encode or copy
 * what it keeps before the worker releases the burst.
 */
#ifndef TL_EVENT_H
#define TL_EVENT_H

#include <stdbool.h>
#include <stdint.h>

#include "tl_schema.h"

#define TL_EVENT_MAX_EXTRA 64
#define TL_CLASSIFY_MAX_MATCHES 16 /**< matched ids kept per event (the rest counted) */

struct tl_classify_db;

/** What tl_classify_event() (tl_classify.h) found in one event. */
struct tl_classify_result {
	uint16_t n;       /**< ids kept in ids[] (at most TL_CLASSIFY_MAX_MATCHES) */
	uint16_t dropped; /**< patterns that matched beyond the first TL_CLASSIFY_MAX_MATCHES */
	uint8_t severity; /**< enum tl_classify_severity: highest over ALL matched patterns */
	bool error;       /**< some matched pattern (kept or dropped) has effect error */
	bool scan_failed; /**< a Hyperscan scan failed (scratch used by two threads at once, or
	                       allocated for another database): the result is partial */
	uint16_t ids[TL_CLASSIFY_MAX_MATCHES]; /**< matched pattern indices, ascending; the
	                                            lowest indices are the ones kept */
};

enum tl_val_kind {
	TL_VAL_ABSENT = 0, /**< path not present in the event */
	TL_VAL_NULL,       /**< JSON null */
	TL_VAL_STRING,     /**< ptr/len: the string's contents without quotes, still escaped */
	TL_VAL_RAW,        /**< ptr/len: a non-string JSON value verbatim (ANY columns) */
	TL_VAL_INT,        /**< i (INT64) */
	TL_VAL_UINT,       /**< u (UINT64) */
	TL_VAL_FLOAT,      /**< f (FLOAT64); ptr/len: the number as written */
	TL_VAL_BOOL,       /**< b */
	TL_VAL_TIME,       /**< ns since 1970-01-01T00:00:00Z; ptr/len: the string as written */
};

struct tl_value {
	const uint8_t *ptr;
	uint32_t len;
	uint8_t kind;    /**< enum tl_val_kind */
	uint8_t escaped; /**< STRING: contents contain backslash escapes (see tl_json_unescape) */
	union {
		int64_t i;
		uint64_t u;
		double f;
		bool b;
		int64_t ns;
	};
};

/** An unknown field kept for the `extra` column. */
struct tl_extra {
	const uint8_t *key; /**< key contents without quotes, still escaped */
	const uint8_t *val; /**< the value verbatim (with quotes if a string) */
	uint32_t key_len;
	uint32_t val_len;
	int32_t parent;     /**< -1: top level; else index of a known object path (prefix) */
};

struct tl_event {
	const uint8_t *raw; /**< the whole NDJSON line (for the dead-letter table) */
	uint32_t raw_len;
	bool is_error;      /**< error column set, non-null and not an empty string, or a
	                         pattern with effect error matched (cls) */
	uint16_t n_extra;
	int64_t time_ns;    /**< copy of the time column */
	struct tl_value col[TL_SCHEMA_MAX_COLS];
	struct tl_extra extra[TL_EVENT_MAX_EXTRA];
	/** Classification: what cls.ids index into (the patterns of the generation the worker
	 * scanned with, valid while it holds that generation), or NULL if not classified;
	 * tl_json_extract() resets both. */
	const struct tl_classify_db *cls_db;
	struct tl_classify_result cls;
	/** Destination: 0 the default route, else tl_route_id() (set by the worker when the
	 * profile routes; tl_json_extract() resets it). */
	uint32_t route;
};

#endif
