/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * Private to config/: YAML files as a small tree of mappings, sequences and scalars.
 *
 * libyaml does the parsing; this layer keeps only what the option loader needs: every
 * node remembers the file, line and column (1-based, as an editor shows them) where it
 * was written, so that problems can be reported as `file:line:column: message` even
 * after trees from several files were merged for `extends:` inheritance.
 *
 * Deliberately unsupported, reported as problems: anchors and aliases, tags other than
 * the standard ones (!!str, !!int, !!float, !!bool, !!null, !!seq, !!map), duplicate
 * keys, non-scalar keys, more than one document per file, nesting deeper than
 * TL_YAML_MAX_DEPTH, more than TL_YAML_MAX_NODES values, NUL characters in scalars.
 *
 * Memory: every node and string lives in a struct tl_yarena and is freed with it; trees
 * are never freed node by node. Merging moves nodes between trees of the same arena.
 * Not thread-safe; one arena per loader.
 */
#ifndef TL_YAML_H
#define TL_YAML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Deepest nesting of mappings/sequences accepted (config files are shallow). */
#define TL_YAML_MAX_DEPTH 64

/** Largest file accepted by tl_yaml_parse_file(). */
#define TL_YAML_MAX_FILE (16u << 20)

/** Most nodes in one file: bounds memory (about 128 bytes a node) on hostile input. */
#define TL_YAML_MAX_NODES (1u << 19)

enum tl_ynode_type {
	TL_YNODE_SCALAR,
	TL_YNODE_SEQ,
	TL_YNODE_MAP,
};

struct tl_ynode {
	enum tl_ynode_type type;
	bool null;          /**< scalar is YAML null: plain "", "~", "null", or !!null */
	bool bad;           /**< a problem with this node was already reported */
	const char *file;   /**< arena string: where the node was written */
	uint32_t line, col; /**< 1-based position of the node's first character */
	/* Set when the node is the value of a mapping entry. */
	const char *key;   /**< the entry's key (NUL-terminated) */
	uint32_t key_line; /**< 1-based position of the key (same file as the node) */
	uint32_t key_col;
	/* TL_YNODE_SCALAR */
	const char *value; /**< NUL-terminated; contains no NUL (rejected) */
	size_t len;
	/* TL_YNODE_SEQ items, TL_YNODE_MAP entry values (in file order) */
	struct tl_ynode *first;
	struct tl_ynode *last;
	uint32_t count;
	struct tl_ynode *next; /**< next sibling in the parent */
};

struct tl_yarena;

/**
 * Receives each problem found while parsing.
 * @param line  1-based, or 0 if the problem has no position (file-level).
 * @param msg   the message without location and without newline.
 */
typedef void (*tl_yaml_report_fn)(
        void *arg, const char *file, uint32_t line, uint32_t col, const char *msg);

/** Create an empty arena. @return 0 or -ENOMEM. */
int tl_yarena_create(struct tl_yarena **out);

/** Free an arena and every node and string in it. NULL-safe. */
void tl_yarena_free(struct tl_yarena *a);

/** @p size zeroed bytes from the arena, aligned for any type. @return NULL if out of memory. */
void *tl_yarena_alloc(struct tl_yarena *a, size_t size);

/** Copy @p len bytes of @p s into the arena, NUL-terminated. @return NULL if out of memory. */
char *tl_yarena_strndup(struct tl_yarena *a, const char *s, size_t len);

/** A new empty mapping node located at @p file:@p line:@p col. @return NULL if out of memory. */
struct tl_ynode *tl_ynode_new_map(
        struct tl_yarena *a, const char *file, uint32_t line, uint32_t col);

/**
 * Parse a YAML buffer into a tree.
 *
 * @param name  file name used in locations (copied into the arena).
 * @param root  out: the document's root node, or NULL if the stream holds no document.
 *              Left NULL when the text is not well-formed YAML.
 * @param n_problems out: number of problems reported through @p report.
 * @return 0 when the tree is usable (problems such as a duplicate key or an alias may still
 *         have been reported: such nodes are dropped or marked bad), TL_E_YAML when the text
 *         is not YAML (reported; *root is NULL), -ENOMEM.
 */
int tl_yaml_parse_string(struct tl_yarena *a, const char *name, const char *text, size_t len,
        tl_yaml_report_fn report, void *arg, struct tl_ynode **root, unsigned *n_problems);

/**
 * Read @p path and parse it as tl_yaml_parse_string() does.
 * @return as tl_yaml_parse_string(), or -errno if the file cannot be read (not reported:
 *         the caller knows best how to phrase it), -EFBIG above TL_YAML_MAX_FILE.
 */
int tl_yaml_parse_file(struct tl_yarena *a, const char *path, tl_yaml_report_fn report, void *arg,
        struct tl_ynode **root, unsigned *n_problems);

/** The value of @p key in mapping @p map, or NULL (also when @p map is not a mapping). */
struct tl_ynode *tl_ynode_get(const struct tl_ynode *map, const char *key);

/** Remove the entry @p key from mapping @p map. @return the removed value node, or NULL. */
struct tl_ynode *tl_ynode_remove(struct tl_ynode *map, const char *key);

/**
 * Copy @p s into @p dst for use inside a message: control characters escaped, cut to
 * about 60 characters with "..." so one bad value cannot flood a terminal.
 */
void tl_yaml_printable(char *dst, size_t dstlen, const char *s);

/** "mapping", "sequence", "null" or "scalar", for messages. */
const char *tl_ynode_kind(const struct tl_ynode *n);

/**
 * Merge @p child over @p parent for inheritance.
 *
 * Two mappings merge key by key, recursively; any other child value replaces the parent's,
 * except that a null child over a parent mapping keeps the parent's mapping (an empty
 * section in an override says nothing). The merged tree reuses the nodes of both inputs,
 * which must come from the same arena and must not be used afterwards; each node keeps
 * its own location, a merged mapping takes the child's location.
 *
 * @param parent in: the parent tree; out: the merged tree.
 * @return 0, or -ENOMEM (then *parent is unusable, the arena is still freed normally).
 */
int tl_yaml_merge(struct tl_ynode **parent, struct tl_ynode *child);

#endif
