/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * Declarative option tables and the YAML profile loader.
 *
 * Each module declares what it can be configured with as a table of struct tl_opt
 * (name, type, default, offset into the module's config struct, description), the way
 * Fluent Bit's config maps do. The loader reads a YAML profile (libyaml), resolves
 * `extends:` inheritance (a vendor profile <- site file: mappings merge key by key,
 * scalars and sequences of the child replace the parent's), applies the merged tree to
 * the tables and reports every problem as `file:line:column: message`. Defaults are
 * strings that go through the same parser as user input.
 *
 * Value representation in the module's struct, by type:
 *  - TL_OPT_BOOL      bool            (true/false/yes/no/on/off)
 *  - TL_OPT_UINT      uint64_t        (decimal or 0x hex; range [min, max] if max != 0)
 *  - TL_OPT_INT       int64_t
 *  - TL_OPT_SIZE      uint64_t bytes  ("64MiB", "4KiB", "1G", "512k", "1500"; range as UINT)
 *  - TL_OPT_DURATION  uint64_t ns     ("500ms", "2s", "1m", "10us", "250ns"; range as UINT)
 *  - TL_OPT_STRING    char[size]      (too long is an error, never truncated)
 *  - TL_OPT_ENUM      int             (index into enums[])
 *  - TL_OPT_STRLIST   char[max_items][size], uint32_t count at count_offset
 *  - TL_OPT_SECTION   nested struct at offset, keys from sub[]
 *  - TL_OPT_LIST      array of max_items structs of `size` bytes at offset, each
 *                     configured from sub[]; uint32_t count at count_offset; with
 *                     TL_OPT_F_LOC, each element's struct tl_opt_loc at loc_offset
 *
 * Thread-safety: the loader is not reentrant for one tl_config_doc; tables are const.
 */
#ifndef TL_OPT_H
#define TL_OPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum tl_opt_type {
	TL_OPT_BOOL,
	TL_OPT_UINT,
	TL_OPT_INT,
	TL_OPT_SIZE,
	TL_OPT_DURATION,
	TL_OPT_STRING,
	TL_OPT_ENUM,
	TL_OPT_STRLIST,
	TL_OPT_SECTION,
	TL_OPT_LIST,
};

/** Option flags. */
#define TL_OPT_F_REQUIRED 0x1u /**< must be set by the profile chain (no default) */
#define TL_OPT_F_SECRET 0x2u   /**< never printed by config show or logged */
#define TL_OPT_F_LOC 0x4u      /**< LIST: record each element's location at loc_offset */

/** Longest file name kept in a struct tl_opt_loc (longer names keep their tail). */
#define TL_OPT_LOC_FILE 256

/**
 * Where a LIST element was written, for messages about it after loading (a module that
 * validates elements later, e.g. when compiling them, reports `file:line: ...`). Filled
 * by the loader for a LIST entry with TL_OPT_F_LOC (an element of a table default is
 * located in "default of <option path>"); a caller-filled struct leaves it zeroed
 * (file "", line 0: no location).
 */
struct tl_opt_loc {
	char file[TL_OPT_LOC_FILE]; /**< the file as the loader named it; a too long name is
	                                 shortened to "..." and its last bytes */
	uint32_t line;              /**< 1-based line where the element starts: its first
	                                 key, on the line of its `-` in the usual block style */
	uint32_t col;               /**< 1-based column of that first key */
};

/**
 * Semantic check run after a SECTION or LIST element is fully parsed.
 * @param obj  the section struct, or the list element.
 * @param msg  buffer for a message; the loader prefixes it with the node's location.
 * @return 0 if valid, non-zero (with @p msg filled) if not.
 */
typedef int (*tl_opt_check_fn)(const void *obj, char *msg, size_t msglen);

struct tl_opt {
	const char *name;            /**< YAML key; NULL terminates a table */
	enum tl_opt_type type;
	const char *def;             /**< default as user text; NULL: zero/empty */
	size_t offset;               /**< offsetof() in the enclosing struct */
	size_t size;                 /**< STRING/STRLIST: char buffer size; LIST: element size */
	uint64_t min, max;           /**< UINT/INT/SIZE/DURATION bounds, ignored if max == 0 */
	const char *const *enums;    /**< ENUM: NULL-terminated names */
	const struct tl_opt *sub;    /**< SECTION/LIST: nested table */
	size_t count_offset;         /**< STRLIST/LIST: offsetof() the uint32_t count */
	uint32_t max_items;          /**< STRLIST/LIST: capacity */
	uint32_t flags;              /**< TL_OPT_F_* */
	tl_opt_check_fn check;       /**< SECTION/LIST element: optional semantic check */
	const char *desc;            /**< one line for --help and docs */
	size_t loc_offset;           /**< LIST with TL_OPT_F_LOC: offsetof() a struct tl_opt_loc
	                                  in the element */
};

/**
 * Apply the defaults of @p table to @p obj (recursively for sections).
 * @return 0, or TL_E_BAD_VALUE if a default does not parse (a bug in the table).
 */
int tl_opt_defaults(const struct tl_opt *table, void *obj);

/**
 * Load a profile and everything it extends into @p obj.
 *
 * Profile names in `extends:` are resolved, in order: as a path relative to the
 * extending file's folder (with or without ".yaml"), then in each folder of
 * @p search_dirs (NULL-terminated, may be NULL). Cycles and chains deeper than 16 are
 * errors.
 *
 * @param path        the site file (or a profile) to load.
 * @param root        the root option table. The key `extends` is reserved.
 * @param obj         the root struct; defaults are applied first.
 * @param search_dirs NULL-terminated list of profile folders, or NULL.
 * @param errs        where each problem is printed as `file:line:column: message\n`
 *                    (NULL: stderr).
 * @param n_errors    out: number of problems found (all are reported, not just the first).
 * @return 0 if the profile is valid; TL_E_CONFIG if any problem was reported;
 *         -ENOMEM.
 */
int tl_config_load(const char *path, const struct tl_opt *root, void *obj,
		const char *const *search_dirs, FILE *errs, unsigned *n_errors);

/**
 * Print @p obj as YAML (the effective configuration) following @p root. Secrets print
 * as "<secret>". Output parses back through tl_config_load to the same values.
 * @return 0, or -EIO if writing failed.
 */
int tl_config_show(FILE *out, const struct tl_opt *root, const void *obj);

/**
 * Parse helpers shared with the command line (same grammar as profiles).
 * @return 0, or -EINVAL if @p text does not parse, -ERANGE if it overflows.
 */
int tl_parse_size(const char *text, uint64_t *bytes);
int tl_parse_duration(const char *text, uint64_t *ns);
int tl_parse_bool(const char *text, bool *v);

#endif
