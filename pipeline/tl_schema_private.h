/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * Layout of a compiled schema, shared by tl_schema.c (which builds it) and tl_json.c
 * (which walks it on the hot path). Not part of the public interface.
 *
 * The trie has one node per distinct path prefix: the root (the event's top-level
 * object), one inner node per object path such as "metadata" (a "prefix"), and one leaf
 * per column. The children of a node are contiguous in key[], in the order the columns
 * were declared, which is usually the order producers write them in.
 */
#ifndef TL_SCHEMA_PRIVATE_H
#define TL_SCHEMA_PRIVATE_H

#include <stdint.h>

#include "tl_schema.h"

/** At most this many object paths (inner trie nodes besides the root). */
#define TL_SCHEMA_MAX_PREFIX 64
/** Root + prefixes + leaves. */
#define TL_SCHEMA_MAX_NODES (1 + TL_SCHEMA_MAX_PREFIX + TL_SCHEMA_MAX_COLS)
/** Nesting bound the extractor's skip stack is sized for (tl_limits.max_depth). */
#define TL_SCHEMA_MAX_DEPTH 1024

struct tl_schema_node {
	uint16_t first; /**< index of the first child in key[] */
	uint16_t n;     /**< number of children (0 for a leaf) */
	int16_t col;    /**< leaf: column index; else -1 */
	int16_t prefix; /**< inner node: prefix index (tl_extra.parent); root: -1 */
};

/** One child edge: a path segment. */
struct tl_schema_key {
	uint64_t head;   /**< first min(len, 8) bytes of the segment, zero padded */
	const char *str; /**< the segment (not terminated), inside def.cols[].path */
	uint32_t len;
	uint16_t node; /**< the child node */
};

struct tl_schema_prefix {
	const char *path; /**< dotted path of the object, inside def.cols[].path */
	uint32_t len;
};

struct tl_schema_trie {
	struct tl_schema_node node[TL_SCHEMA_MAX_NODES];
	struct tl_schema_key key[TL_SCHEMA_MAX_NODES];
	struct tl_schema_prefix prefix[TL_SCHEMA_MAX_PREFIX];
	uint32_t n_nodes;
	uint32_t n_prefix;
	uint32_t max_seg; /**< longest segment: longer keys cannot match */
};

struct tl_schema {
	struct tl_schema_def def;
	struct tl_limits lim;
	struct tl_schema_trie trie;
	uint64_t required;                    /**< bit i: column i is required */
	uint32_t col_max[TL_SCHEMA_MAX_COLS]; /**< effective max_len of each column */
	uint8_t col_type[TL_SCHEMA_MAX_COLS]; /**< enum tl_col_type */
	int time_col;
	int error_col;
	int id_col;
};

/** First min(len, 8) bytes of @p s as a zero-padded word (the trie's key head). */
static inline uint64_t
tl_schema_head(const void *s, uint32_t len)
{
	uint64_t v = 0;
	const uint8_t *b = s;

	for (uint32_t i = 0; i < len && i < 8; i++)
		v |= (uint64_t)b[i] << (8 * i);
	return v;
}

#endif
