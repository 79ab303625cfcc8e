/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * Error classification: the profile's patterns compiled into one Hyperscan database.
 *
 * The `classify:` section of a profile lists patterns (id, regex, flags, fields, category,
 * severity, effect, cause, action). tl_classify_build() resolves each pattern's fields to
 * schema columns and compiles every pattern into ONE block-mode Hyperscan database, or
 * loads that database from the on-disk cache (keyed by a hash of the patterns, the CPU
 * platform and the Hyperscan version, verified on load). Workers then classify events
 * with tl_classify_event() using a scratch of their own: the database is immutable and
 * shared without locks, the scan allocates nothing.
 *
 * Fields: a pattern scans the mapped columns it names (STRING or ANY columns: their value
 * as written) or `raw`, the whole event line as received; a pattern that names no field
 * scans `classify.fields` (default [error]). A schema column that happens to be named
 * `raw` cannot be scanned: the name always means the event line.
 *
 * Escaped JSON: values are scanned as written in the event, still JSON-escaped. A quote
 * inside a string value is the two bytes `\"`, a backslash is `\\`, a newline is `\n`
 * (backslash, n), non-ASCII may be `\u00e9`. A regex must match that escaped form: to
 * match a literal backslash in YAML single quotes write `\\`, e.g.
 * `regex: 'C:\\\\temp'` matches the value written as "C:\\temp" in the JSON.
 *
 * Flags: caseless, dotall, multiline, utf8, ucp (needs utf8), singlematch (always on:
 * each pattern is reported at most once per event), allowempty (rejected: a pattern
 * that matches the empty string would match every event). With utf8 the scanned data
 * must be valid UTF-8 (the extractor guarantees it for events; Hyperscan's results on
 * invalid UTF-8 are undefined, never a crash).
 *
 * Thread-safety: tl_classify_build and the free functions are not reentrant for one
 * object; a built database is read-only and may be used by any number of threads at
 * once, each with its own scratch. A scratch belongs to one thread at a time.
 */
#ifndef TL_CLASSIFY_H
#define TL_CLASSIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tl_event.h"
#include "tl_opt.h"
#include "tl_schema.h"

#define TL_CLASSIFY_MAX_PATTERNS 512 /**< patterns in one profile */
#define TL_CLASSIFY_ID_MAX 64        /**< id / category buffer: 63 bytes + NUL */
#define TL_CLASSIFY_REGEX_MAX 1024   /**< regex buffer */
#define TL_CLASSIFY_TEXT_MAX 512     /**< cause / action buffer */
#define TL_CLASSIFY_MAX_FLAGS 8      /**< flags per pattern */
#define TL_CLASSIFY_FLAG_MAX 16      /**< flag name buffer */
#define TL_CLASSIFY_MAX_FIELDS 8     /**< fields per pattern (and in classify.fields) */
#define TL_CLASSIFY_PATH_MAX 256     /**< cache_dir buffer */
#define TL_CLASSIFY_HASH_HEX 33      /**< 32 hex digits + NUL */

/** Severity of a pattern; an event's severity is the highest of its matches. */
enum tl_classify_severity {
	TL_CLASSIFY_SEV_NONE = 0, /**< no pattern matched */
	TL_CLASSIFY_SEV_INFO,
	TL_CLASSIFY_SEV_WARNING,
	TL_CLASSIFY_SEV_ERROR,
	TL_CLASSIFY_SEV_CRITICAL,
	TL_CLASSIFY_SEV_MAX
};

/** What a match does to the event. */
enum tl_classify_effect {
	TL_CLASSIFY_EFFECT_ERROR = 0, /**< the event becomes an error event (and is tagged) */
	TL_CLASSIFY_EFFECT_TAG,       /**< the event is only tagged with the pattern's id */
	TL_CLASSIFY_EFFECT_MAX
};

/** "none", "info", "warning", "error", "critical", NULL (indexed by the enum). */
extern const char *const tl_classify_severity_names[];
/** "error", "tag", NULL (indexed by the enum). */
extern const char *const tl_classify_effect_names[];

/** One element of `classify.patterns` (plain data filled by the loader). */
struct tl_classify_pattern_def {
	char id[TL_CLASSIFY_ID_MAX];       /**< [a-z0-9_.-]{1,63}, unique */
	char regex[TL_CLASSIFY_REGEX_MAX]; /**< Hyperscan syntax */
	char flags[TL_CLASSIFY_MAX_FLAGS][TL_CLASSIFY_FLAG_MAX];
	uint32_t n_flags;
	char fields[TL_CLASSIFY_MAX_FIELDS][TL_SCHEMA_NAME_MAX]; /**< none: classify.fields */
	uint32_t n_fields;
	char category[TL_CLASSIFY_ID_MAX]; /**< [a-z0-9_.-]{1,63} */
	int severity; /**< enum tl_classify_severity minus one: the option spells
	                   info (0), warning, error, critical (3) */
	int effect;   /**< enum tl_classify_effect */
	char cause[TL_CLASSIFY_TEXT_MAX];
	char action[TL_CLASSIFY_TEXT_MAX];
	struct tl_opt_loc loc; /**< where the `-` entry was written (set by the loader) */
};

/** The `classify:` section of a profile. */
struct tl_classify_conf {
	char cache_dir[TL_CLASSIFY_PATH_MAX]; /**< "" = no cache */
	char fields[TL_CLASSIFY_MAX_FIELDS][TL_SCHEMA_NAME_MAX];
	uint32_t n_fields;
	struct tl_classify_pattern_def patterns[TL_CLASSIFY_MAX_PATTERNS];
	uint32_t n_patterns;
};

/** Option table of the `classify:` section (see tl_opt.h). */
extern const struct tl_opt tl_classify_opts[];

/** A built pattern database; opaque, immutable, shared by all workers. */
struct tl_classify_db;
/** Per-worker scan state; opaque. */
struct tl_classify_scratch;

/** A pattern of a built database (owned by the database, valid until it is freed). */
struct tl_classify_pattern {
	const char *id;
	const char *category;
	const char *cause;  /**< "" if the profile gave none */
	const char *action; /**< "" if the profile gave none */
	uint8_t severity;   /**< enum tl_classify_severity, never NONE */
	uint8_t effect;     /**< enum tl_classify_effect */
};

/**
 * Build the database of @p conf's patterns for @p schema.
 *
 * Every pattern problem is reported in @p err as one line `file:line: pattern '<id>':
 * <message>` (the file and line of the pattern's `-` entry; `pattern '<id>': ...` alone
 * when the conf was not loaded from a file), lines separated by '\n': an id that is empty,
 * too long, not [a-z0-9_.-] or a duplicate, a bad category, an empty regex, an unknown or
 * rejected flag, an unknown field or one that is not a string/any column, more than
 * TL_CLASSIFY_MAX_PATTERNS patterns, and a regex Hyperscan does not compile (Hyperscan's
 * message). All validation problems are reported at once; then compile errors.
 *
 * Cache (when conf->cache_dir is not ""): the file `<cache_dir>/<hash>.hsdb` where hash is
 * tl_classify_db_hash(). A valid file is loaded instead of compiling; a missing, corrupt
 * or foreign one is ignored (logged), the patterns compiled and the file (re)written
 * through a temporary file and rename(). The folder is created if missing. Failing to
 * read or write the cache is logged and never fails the build.
 *
 * @param conf    the `classify:` section; copied, the caller may free it afterwards.
 * @param schema  the compiled schema the fields are resolved against.
 * @param out     out: the database (caller owns; tl_classify_db_free). NULL on failure.
 * @param err     buffer for the problems (may be NULL); "" on success.
 * @param errlen  its size; problems that do not fit are counted in a last line
 *                "(N more problems)" when there is room for it.
 * @return 0; TL_E_CONFIG if a pattern is invalid (reported in @p err); -ENOMEM;
 *         -EINVAL if @p conf, @p schema or @p out is NULL; -ENOTSUP if Hyperscan does not
 *         support this CPU.
 */
int tl_classify_build(const struct tl_classify_conf *conf, const struct tl_schema *schema,
        struct tl_classify_db **out, char *err, size_t errlen);

/** Free a database (after every scratch made for it is done scanning). NULL-safe. */
void tl_classify_db_free(struct tl_classify_db *db);

/**
 * Allocate a scratch for @p db. Call once per worker at init, never on the hot path.
 * @param out  out: the scratch (caller owns; tl_classify_scratch_free). NULL on failure.
 * @return 0; -ENOMEM; -EINVAL if @p db or @p out is NULL.
 */
int tl_classify_scratch_alloc(const struct tl_classify_db *db, struct tl_classify_scratch **out);

/** Free a scratch. NULL-safe. */
void tl_classify_scratch_free(struct tl_classify_scratch *s);

/**
 * Classify one event: scan each field that some pattern scans and that is present in
 * @p ev (a STRING or RAW value with at least one byte; `raw` is ev->raw), keep the
 * matches of patterns that scan that field, report each pattern once.
 *
 * Hot path: no lock, no allocation, no system call.
 *
 * @param db   the database.
 * @param s    a scratch allocated for @p db, used by the calling thread only.
 * @param ev   the extracted event (its values must stay valid during the call).
 * @param out  out: the result (always fully written).
 */
void tl_classify_event(const struct tl_classify_db *db, struct tl_classify_scratch *s,
        const struct tl_event *ev, struct tl_classify_result *out);

/**
 * @return how many bytes tl_classify_event() would hand to Hyperscan for @p ev: the sum
 *         of the lengths of the scanned fields present in it. For benchmarks and metrics;
 *         no scan is done.
 */
uint64_t tl_classify_scan_bytes(const struct tl_classify_db *db, const struct tl_event *ev);

/** @return the number of patterns in @p db. */
uint32_t tl_classify_db_count(const struct tl_classify_db *db);

/**
 * @return pattern @p i of @p db (in profile order, the index tl_classify_result.ids
 *         holds), or NULL if @p i is out of range. Owned by @p db.
 */
const struct tl_classify_pattern *tl_classify_db_pattern(
        const struct tl_classify_db *db, uint32_t i);

/** @return the index of the pattern with id @p id, or -1. */
int tl_classify_db_find(const struct tl_classify_db *db, const char *id);

/**
 * @return the database's hash as 32 lowercase hex digits (XXH3-128 over the Hyperscan
 *         version, the CPU platform and every pattern's id, regex and flags in order): the
 *         cache file's name, for logs and metrics. Owned by @p db.
 */
const char *tl_classify_db_hash(const struct tl_classify_db *db);

/** @return true if the database was loaded from the cache (no compile), false if compiled. */
bool tl_classify_db_from_cache(const struct tl_classify_db *db);

/** @return the name of severity @p sev ("none" .. "critical"), "?" if out of range. */
const char *tl_classify_severity_name(unsigned sev);

/** @return the name of effect @p eff ("error" or "tag"), "?" if out of range. */
const char *tl_classify_effect_name(unsigned eff);

#endif
