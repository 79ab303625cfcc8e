/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Hyperscan classification.
 *
 * One block-mode database holds every pattern of the profile, whatever fields they scan:
 * each distinct field is scanned once with the whole database and the match callback
 * keeps a match only when the pattern scans that field (a 64-bit mask of "slots" per
 * pattern, one slot per distinct scanned field). One database keeps one scratch per
 * worker and one cache file; one database per field set would scan a field only with
 * its own patterns but multiply scratches, cache files and reload work, for patterns
 * that mostly all scan the same `error` field anyway.
 *
 * HS_FLAG_SINGLEMATCH makes Hyperscan report a pattern at most once per scan; a pattern
 * that scans two fields can still fire twice per event, so matches land in a per-event
 * bitmap in the scratch (one bit per pattern) which also sorts them for free: the result
 * is read back in ascending pattern order.
 *
 * Cache file `<cache_dir>/<hash>.hsdb`: a header of our own (magic, format version,
 * pattern count, the 128-bit key, payload length, XXH3-64 of the payload) in front of
 * hs_serialize_database()'s bytes. The key in the name alone would trust whatever sits at
 * that path; the header check catches truncated, damaged and foreign files before
 * Hyperscan sees them, and Hyperscan's own checks (version, platform, mode) come after.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <hs/hs.h>
#include <xxhash.h>

#include "tl_classify.h"
#include "tl_error.h"
#include "tl_log.h"
#include "tl_report.h"

/* Field key of `raw` (column indices are 0 .. TL_SCHEMA_MAX_COLS - 1). */
#define FIELD_RAW TL_SCHEMA_MAX_COLS
/* Distinct scanned fields: one bit each in a pattern's mask. */
#define MAX_SLOTS 64
#define SEEN_WORDS (TL_CLASSIFY_MAX_PATTERNS / 64)

#define CACHE_MAGIC "TLHSDB\r\n"
#define CACHE_VERSION 1u
/* A database of 512 patterns is a few MiB; anything far larger is not ours. */
#define CACHE_MAX_FILE (1ull << 30)
/* Room kept at the end of the error buffer for "(N more problems)". */

/*
 * Stride cap. Hyperscan 5.x's FDR literal matcher, which a database uses once it holds more
 * than about a hundred literal fragments, takes its stride from the shortest one: with
 * every literal 4 bytes or longer and fewer than 250 of them it strides 4 bytes, and on log
 * text (words, spaces, digits) that lets so many false positives through that the Spark
 * profile scans at 1.2-1.4 GB/s instead of 1.8-2.4 GB/s at stride 2 (and which stride a
 * profile gets flips with its literal count, so a one-pattern edit could halve the rate).
 * A 3-byte literal of control characters, which no JSON value or event line contains,
 * caps the stride at 2 whatever the count. It is compiled with id n, one past the last
 * pattern; fmask[n] is 0, so on_match drops it. Small sets are left alone: they use Teddy
 * or a single-literal scanner, which an extra literal only slows down.
 */
#define STRIDE_CAP_EXPR "\\x01\\x02\\x03"
#define STRIDE_CAP_MIN_PATTERNS 32

struct cache_hdr {
	char magic[8];
	uint32_t version;
	uint32_t n_patterns;
	uint8_t key[16];
	uint64_t len; /* payload bytes */
	uint64_t sum; /* XXH3-64 of the payload */
};

struct tl_classify_db {
	hs_database_t *hs; /* NULL when the profile has no pattern */
	uint32_t n;
	uint32_t n_slots;
	uint32_t n_words;                /* bitmap words in use: ceil(n / 64) */
	int16_t slot_col[MAX_SLOTS];     /* column index, or -1 for raw */
	uint64_t err_mask[SEEN_WORDS];   /* patterns whose effect is error */
	uint64_t *fmask;                 /* [n]: slots each pattern scans */
	uint8_t *sev;                    /* [n]: enum tl_classify_severity */
	struct tl_classify_pattern *pat; /* [n]: strings in one block */
	char *strings;
	char hash[TL_CLASSIFY_HASH_HEX];
	bool from_cache;
};

struct tl_classify_scratch {
	uint64_t seen[SEEN_WORDS]; /* first: the hot bitmap starts the cache line */
	hs_scratch_t *hs;
} __attribute__((aligned(64)));

const char *const tl_classify_severity_names[] = {
        [TL_CLASSIFY_SEV_NONE] = "none",
        [TL_CLASSIFY_SEV_INFO] = "info",
        [TL_CLASSIFY_SEV_WARNING] = "warning",
        [TL_CLASSIFY_SEV_ERROR] = "error",
        [TL_CLASSIFY_SEV_CRITICAL] = "critical",
        [TL_CLASSIFY_SEV_MAX] = NULL,
};

const char *const tl_classify_effect_names[] = {
        [TL_CLASSIFY_EFFECT_ERROR] = "error",
        [TL_CLASSIFY_EFFECT_TAG] = "tag",
        [TL_CLASSIFY_EFFECT_MAX] = NULL,
};

/* clang-format off */
static const struct tl_opt pattern_opts[] = {
	{.name = "id", .type = TL_OPT_STRING,
		.offset = offsetof(struct tl_classify_pattern_def, id), .size = TL_CLASSIFY_ID_MAX,
		.flags = TL_OPT_F_REQUIRED,
		.desc = "unique name of the pattern ([a-z0-9_.-], at most 63 characters)"},
	{.name = "regex", .type = TL_OPT_STRING,
		.offset = offsetof(struct tl_classify_pattern_def, regex),
		.size = TL_CLASSIFY_REGEX_MAX, .flags = TL_OPT_F_REQUIRED,
		.desc = "Hyperscan regular expression, matched against values as written (JSON-escaped)"},
	{.name = "flags", .type = TL_OPT_STRLIST,
		.offset = offsetof(struct tl_classify_pattern_def, flags),
		.size = TL_CLASSIFY_FLAG_MAX, .max_items = TL_CLASSIFY_MAX_FLAGS,
		.count_offset = offsetof(struct tl_classify_pattern_def, n_flags),
		.desc = "caseless, dotall, multiline, utf8, ucp, singlematch (always on)"},
	{.name = "fields", .type = TL_OPT_STRLIST,
		.offset = offsetof(struct tl_classify_pattern_def, fields),
		.size = TL_SCHEMA_NAME_MAX, .max_items = TL_CLASSIFY_MAX_FIELDS,
		.count_offset = offsetof(struct tl_classify_pattern_def, n_fields),
		.desc = "string/any columns to scan, or raw (the event line); [] = classify.fields"},
	{.name = "category", .type = TL_OPT_STRING,
		.offset = offsetof(struct tl_classify_pattern_def, category),
		.size = TL_CLASSIFY_ID_MAX, .flags = TL_OPT_F_REQUIRED,
		.desc = "category stored with matching events ([a-z0-9_.-])"},
	{.name = "severity", .type = TL_OPT_ENUM, .def = "error",
		.offset = offsetof(struct tl_classify_pattern_def, severity),
		.enums = tl_classify_severity_names + 1,
		.desc = "info, warning, error or critical"},
	{.name = "effect", .type = TL_OPT_ENUM, .def = "error",
		.offset = offsetof(struct tl_classify_pattern_def, effect),
		.enums = tl_classify_effect_names,
		.desc = "error: a match makes the event an error event; tag: only records the id"},
	{.name = "cause", .type = TL_OPT_STRING,
		.offset = offsetof(struct tl_classify_pattern_def, cause),
		.size = TL_CLASSIFY_TEXT_MAX, .desc = "likely cause, for the error_patterns table"},
	{.name = "action", .type = TL_OPT_STRING,
		.offset = offsetof(struct tl_classify_pattern_def, action),
		.size = TL_CLASSIFY_TEXT_MAX, .desc = "recommended action, for the error_patterns table"},
	{.name = NULL},
};

const struct tl_opt tl_classify_opts[] = {
	{.name = "cache_dir", .type = TL_OPT_STRING, .def = "/var/lib/tapline/hscache",
		.offset = offsetof(struct tl_classify_conf, cache_dir),
		.size = TL_CLASSIFY_PATH_MAX,
		.desc = "compiled pattern databases are cached here (\"\": no cache)"},
	{.name = "fields", .type = TL_OPT_STRLIST, .def = "[error]",
		.offset = offsetof(struct tl_classify_conf, fields), .size = TL_SCHEMA_NAME_MAX,
		.max_items = TL_CLASSIFY_MAX_FIELDS,
		.count_offset = offsetof(struct tl_classify_conf, n_fields),
		.desc = "fields scanned by a pattern that lists none"},
	{.name = "patterns", .type = TL_OPT_LIST,
		.offset = offsetof(struct tl_classify_conf, patterns),
		.size = sizeof(struct tl_classify_pattern_def), .sub = pattern_opts,
		.count_offset = offsetof(struct tl_classify_conf, n_patterns),
		.max_items = TL_CLASSIFY_MAX_PATTERNS, .flags = TL_OPT_F_LOC,
		.loc_offset = offsetof(struct tl_classify_pattern_def, loc),
		.desc = "error patterns, compiled into one Hyperscan database"},
	{.name = NULL},
};
/* clang-format on */

static const struct {
	const char *name;
	unsigned hs;
} flag_map[] = {
        {"caseless", HS_FLAG_CASELESS},
        {"dotall", HS_FLAG_DOTALL},
        {"multiline", HS_FLAG_MULTILINE},
        {"utf8", HS_FLAG_UTF8},
        {"ucp", HS_FLAG_UCP},
        {"singlematch", HS_FLAG_SINGLEMATCH},
};

/* ---- problem reporting ------------------------------------------------------------ */

/* A problem of pattern @p p (NULL: of the section as a whole). */
static void __attribute__((format(printf, 3, 4)))
problem(struct tl_report *r, const struct tl_classify_pattern_def *p, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	tl_report_vadd(r, p ? "pattern" : NULL, p ? p->id : NULL, p ? &p->loc : NULL, fmt, ap);
	va_end(ap);
}

/* ---- validation ------------------------------------------------------------------- */

static bool
valid_name(const char *s)
{
	size_t n = 0;

	for (; s[n] != '\0'; n++) {
		char c = s[n];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
		            c == '-'))
			return false;
	}
	return n >= 1 && n <= TL_CLASSIFY_ID_MAX - 1;
}

/* "raw, query_id, error, ...": what a pattern may scan, for messages. */
static void
scannable_fields(char *buf, size_t len, const struct tl_schema *schema)
{
	size_t o = (size_t)snprintf(buf, len, "raw");

	for (uint32_t i = 0; i < tl_schema_n_cols(schema) && o < len; i++) {
		const struct tl_col_def *c = tl_schema_col(schema, i);

		if (c->type == TL_COL_STRING || c->type == TL_COL_ANY)
			o += (size_t)snprintf(buf + o, len - o, ", %s", c->name);
	}
}

/*
 * Resolve one field name to its key (column index or FIELD_RAW). @return the key, or -1
 * after reporting against @p p (or against `classify.fields` when @p p is NULL).
 */
static int
resolve_field(struct tl_report *r, const struct tl_classify_pattern_def *p,
        const struct tl_schema *schema, const char *name)
{
	char shown[128], valid[1024];
	const char *where = p == NULL ? "classify.fields: " : "";
	int c;

	if (strcmp(name, "raw") == 0)
		return FIELD_RAW;
	tl_report_printable(shown, sizeof(shown), name);
	c = tl_schema_col_index(schema, name);
	if (c < 0) {
		scannable_fields(valid, sizeof(valid), schema);
		problem(r, p, "%sunknown field '%s' (valid: %s)", where, shown, valid);
		return -1;
	}
	if (tl_schema_col(schema, (uint32_t)c)->type != TL_COL_STRING &&
	        tl_schema_col(schema, (uint32_t)c)->type != TL_COL_ANY) {
		problem(r, p,
		        "%sfield '%s' is a %s column: only string and any columns, or raw, "
		        "can be scanned",
		        where, shown, tl_col_type_names[tl_schema_col(schema, (uint32_t)c)->type]);
		return -1;
	}
	return c;
}

/* Hyperscan flags of @p p, or report what is wrong. @return false if a flag is bad. */
static bool
pattern_flags(struct tl_report *r, const struct tl_classify_pattern_def *p, unsigned *out)
{
	unsigned f = HS_FLAG_SINGLEMATCH;
	char shown[64];
	bool ok = true;

	for (uint32_t i = 0; i < p->n_flags; i++) {
		size_t k;

		for (k = 0; k < sizeof(flag_map) / sizeof(flag_map[0]); k++)
			if (strcmp(p->flags[i], flag_map[k].name) == 0)
				break;
		if (k < sizeof(flag_map) / sizeof(flag_map[0])) {
			f |= flag_map[k].hs;
			continue;
		}
		ok = false;
		if (strcmp(p->flags[i], "allowempty") == 0) {
			problem(r, p,
			        "flag 'allowempty' is not allowed: a pattern that matches the "
			        "empty string would match every event");
			continue;
		}
		tl_report_printable(shown, sizeof(shown), p->flags[i]);
		problem(r, p,
		        "unknown flag '%s' (valid: caseless, dotall, multiline, utf8, ucp, "
		        "singlematch)",
		        shown);
	}
	if ((f & HS_FLAG_UCP) && !(f & HS_FLAG_UTF8)) {
		problem(r, p, "flag 'ucp' needs flag 'utf8'");
		ok = false;
	}
	*out = f;
	return ok;
}

/* ---- hashing ---------------------------------------------------------------------- */

static void
hash_str(XXH3_state_t *st, const char *s)
{
	uint32_t n = (uint32_t)strlen(s);

	/* Length first: ("ab","c") and ("a","bc") must not hash alike. */
	XXH3_128bits_update(st, &n, sizeof(n));
	XXH3_128bits_update(st, s, n);
}

static int
hash_patterns(const struct tl_classify_conf *conf, const unsigned *flags, uint8_t key[16])
{
	static const char domain[] = "tapline.classify.hsdb.v1";
	XXH3_state_t *st = XXH3_createState();
	hs_platform_info_t plat;
	XXH128_canonical_t canon;
	uint32_t n = conf->n_patterns;

	if (st == NULL)
		return -ENOMEM;
	memset(&plat, 0, sizeof(plat));
	if (hs_populate_platform(&plat) != HS_SUCCESS) {
		XXH3_freeState(st);
		return -ENOTSUP;
	}
	XXH3_128bits_reset(st);
	hash_str(st, domain);
	hash_str(st, hs_version());
	XXH3_128bits_update(st, &plat.tune, sizeof(plat.tune));
	XXH3_128bits_update(st, &plat.cpu_features, sizeof(plat.cpu_features));
	XXH3_128bits_update(st, &n, sizeof(n));
	for (uint32_t i = 0; i < n; i++) {
		uint32_t f = flags[i];

		hash_str(st, conf->patterns[i].id);
		hash_str(st, conf->patterns[i].regex);
		XXH3_128bits_update(st, &f, sizeof(f));
	}
	/* The expressions compiled besides the patterns are part of what the file holds. */
	hash_str(st, n >= STRIDE_CAP_MIN_PATTERNS ? STRIDE_CAP_EXPR : "");
	XXH128_canonicalFromHash(&canon, XXH3_128bits_digest(st));
	XXH3_freeState(st);
	memcpy(key, canon.digest, 16);
	return 0;
}

/* ---- cache ------------------------------------------------------------------------ */

static int
mkdir_p(const char *dir)
{
	char path[TL_CLASSIFY_PATH_MAX];
	size_t n = strlen(dir);

	if (n == 0 || n >= sizeof(path))
		return -ENAMETOOLONG;
	memcpy(path, dir, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (path[i] != '/' && path[i] != '\0')
			continue;
		path[i] = '\0';
		if (mkdir(path, 0755) != 0 && errno != EEXIST)
			return -errno;
		path[i] = dir[i];
	}
	return 0;
}

static int
read_all(int fd, void *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t r = read(fd, (char *)buf + done, len - done);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -EIO; /* shorter than fstat said: changed under us */
		done += (size_t)r;
	}
	return 0;
}

static int
write_all(int fd, const void *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t w = write(fd, (const char *)buf + done, len - done);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		done += (size_t)w;
	}
	return 0;
}

/*
 * Load @p path if it is a valid cache file for @p key. @return 0 with *out set; -ENOENT
 * if there is no file or folder (not worth a message); any other negative value with
 * @p why filled.
 */
static int
cache_load(const char *path, const uint8_t key[16], uint32_t n_patterns, hs_database_t **out,
        char *why, size_t whylen)
{
	struct cache_hdr hdr;
	hs_database_t *hs = NULL;
	char *bytes = NULL, *info = NULL;
	struct stat st;
	int fd, rc;

	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		/* No file, or no folder yet: the first build; cache_store says the rest. */
		if (rc == -ENOTDIR)
			rc = -ENOENT;
		if (rc != -ENOENT)
			snprintf(why, whylen, "cannot open: %s", strerror(-rc));
		return rc;
	}
	if (fstat(fd, &st) != 0) {
		rc = -errno;
		snprintf(why, whylen, "cannot stat: %s", strerror(-rc));
		goto out;
	}
	rc = -EBADMSG;
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size < sizeof(hdr) ||
	        (uint64_t)st.st_size > CACHE_MAX_FILE) {
		snprintf(why, whylen, "not a cache file (%lld bytes)", (long long)st.st_size);
		goto out;
	}
	rc = read_all(fd, &hdr, sizeof(hdr));
	if (rc < 0) {
		snprintf(why, whylen, "cannot read: %s", strerror(-rc));
		goto out;
	}
	rc = -EBADMSG;
	if (memcmp(hdr.magic, CACHE_MAGIC, sizeof(hdr.magic)) != 0 ||
	        hdr.version != CACHE_VERSION) {
		snprintf(why, whylen, "not a tapline cache file (bad magic or version)");
		goto out;
	}
	if (memcmp(hdr.key, key, 16) != 0 || hdr.n_patterns != n_patterns) {
		snprintf(why, whylen, "made for other patterns (key mismatch)");
		goto out;
	}
	if (hdr.len == 0 || hdr.len != (uint64_t)st.st_size - sizeof(hdr)) {
		snprintf(why, whylen, "truncated or padded (%llu payload bytes, file holds %llu)",
		        (unsigned long long)hdr.len,
		        (unsigned long long)((uint64_t)st.st_size - sizeof(hdr)));
		goto out;
	}
	bytes = malloc(hdr.len);
	if (bytes == NULL) {
		rc = -ENOMEM;
		snprintf(why, whylen, "out of memory");
		goto out;
	}
	rc = read_all(fd, bytes, hdr.len);
	if (rc < 0) {
		snprintf(why, whylen, "cannot read: %s", strerror(-rc));
		goto out;
	}
	rc = -EBADMSG;
	if (XXH3_64bits(bytes, hdr.len) != hdr.sum) {
		snprintf(why, whylen, "checksum mismatch (damaged)");
		goto out;
	}
	if (hs_serialized_database_info(bytes, hdr.len, &info) != HS_SUCCESS) {
		snprintf(why, whylen, "not a Hyperscan database this library can read");
		goto out;
	}
	if (strstr(info, "BLOCK") == NULL) {
		snprintf(why, whylen, "not a block-mode database (%s)", info);
		goto out;
	}
	if (hs_deserialize_database(bytes, hdr.len, &hs) != HS_SUCCESS) {
		snprintf(why, whylen, "Hyperscan rejected it (%s)", info);
		goto out;
	}
	*out = hs;
	rc = 0;
out:
	free(info);
	free(bytes);
	close(fd);
	return rc;
}

/* Write @p hs to @p path atomically (temporary file + rename). @return 0 or -errno. */
static int
cache_store(const char *dir, const char *path, const uint8_t key[16], uint32_t n_patterns,
        const hs_database_t *hs, char *why, size_t whylen)
{
	struct cache_hdr hdr;
	char tmp[TL_CLASSIFY_PATH_MAX + 64];
	char *bytes = NULL;
	size_t len = 0;
	int fd = -1, rc;

	rc = mkdir_p(dir);
	if (rc < 0) {
		snprintf(why, whylen, "cannot create %s: %s", dir, strerror(-rc));
		return rc;
	}
	if (hs_serialize_database(hs, &bytes, &len) != HS_SUCCESS) {
		snprintf(why, whylen, "Hyperscan could not serialise the database");
		return -ENOMEM;
	}
	memset(&hdr, 0, sizeof(hdr));
	memcpy(hdr.magic, CACHE_MAGIC, sizeof(hdr.magic));
	hdr.version = CACHE_VERSION;
	hdr.n_patterns = n_patterns;
	memcpy(hdr.key, key, 16);
	hdr.len = len;
	hdr.sum = XXH3_64bits(bytes, len);
	snprintf(tmp, sizeof(tmp), "%s/.hsdb.tmp.XXXXXX", dir);
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		snprintf(why, whylen, "cannot create a file in %s: %s", dir, strerror(-rc));
		goto out;
	}
	rc = write_all(fd, &hdr, sizeof(hdr));
	if (rc == 0)
		rc = write_all(fd, bytes, len);
	/* The data must be on disk before the name is: a crash leaves the old file or
	 * none, never a named half-written one (which the checksum would catch anyway). */
	if (rc == 0 && fsync(fd) != 0)
		rc = -errno;
	if (close(fd) != 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, path) != 0)
		rc = -errno;
	if (rc < 0) {
		snprintf(why, whylen, "cannot write %s: %s", path, strerror(-rc));
		unlink(tmp);
	}
out:
	free(bytes);
	return rc;
}

/* ---- build ------------------------------------------------------------------------ */

static const char *
hs_message(hs_error_t e)
{
	switch (e) {
	case HS_NOMEM:
		return "out of memory";
	case HS_ARCH_ERROR:
		return "CPU not supported by Hyperscan (needs SSSE3)";
	case HS_INVALID:
		return "invalid argument";
	default:
		return "Hyperscan error";
	}
}

static int
hs_errno(hs_error_t e)
{
	switch (e) {
	case HS_NOMEM:
		return -ENOMEM;
	case HS_ARCH_ERROR:
		return -ENOTSUP;
	default:
		return -EINVAL;
	}
}

/*
 * Compile every pattern. A bad expression fails the whole compile with that one index;
 * the others are then checked on their own (parse only) so an operator sees every bad
 * regex in one go.
 */
static int
compile(struct tl_report *r, const struct tl_classify_conf *conf, const unsigned *flags,
        hs_database_t **out)
{
	uint32_t n = conf->n_patterns, total = n;
	const char **expr = calloc(n + 1, sizeof(*expr));
	unsigned *ids = calloc(n + 1, sizeof(*ids));
	unsigned *fl = calloc(n + 1, sizeof(*fl));
	hs_compile_error_t *cerr = NULL;
	hs_error_t e;
	int rc = 0;

	if (expr == NULL || ids == NULL || fl == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	for (uint32_t i = 0; i < n; i++) {
		expr[i] = conf->patterns[i].regex;
		fl[i] = flags[i];
		ids[i] = i;
	}
	if (n >= STRIDE_CAP_MIN_PATTERNS) {
		expr[total] = STRIDE_CAP_EXPR;
		fl[total] = HS_FLAG_SINGLEMATCH;
		ids[total] = n;
		total++;
	}
	e = hs_compile_multi(expr, fl, ids, total, HS_MODE_BLOCK, NULL, out, &cerr);
	if (e == HS_SUCCESS)
		goto out;
	if (e != HS_COMPILER_ERROR || cerr == NULL) {
		rc = hs_errno(e);
		goto out;
	}
	rc = TL_E_CONFIG;
	if (cerr->expression < 0 || (uint32_t)cerr->expression >= n) {
		problem(r, NULL, "classify: the %u patterns do not compile together: %s", n,
		        cerr->message);
		goto out;
	}
	problem(r, &conf->patterns[cerr->expression], "does not compile: %s", cerr->message);
	for (uint32_t i = 0; i < n; i++) {
		hs_expr_info_t *info = NULL;
		hs_compile_error_t *ierr = NULL;

		if (i == (uint32_t)cerr->expression)
			continue;
		if (hs_expression_info(expr[i], flags[i], &info, &ierr) != HS_SUCCESS &&
		        ierr != NULL)
			problem(r, &conf->patterns[i], "does not compile: %s", ierr->message);
		free(info);
		hs_free_compile_error(ierr);
	}
out:
	hs_free_compile_error(cerr);
	free(expr);
	free(ids);
	free(fl);
	return rc;
}

/* Copy ids, categories, causes and actions into one block owned by @p db. */
static int
copy_strings(struct tl_classify_db *db, const struct tl_classify_conf *conf)
{
	size_t total = 0, o = 0;

	for (uint32_t i = 0; i < db->n; i++) {
		const struct tl_classify_pattern_def *p = &conf->patterns[i];

		total += strlen(p->id) + strlen(p->category) + strlen(p->cause) +
		         strlen(p->action) + 4;
	}
	db->strings = malloc(total ? total : 1);
	if (db->strings == NULL)
		return -ENOMEM;
	for (uint32_t i = 0; i < db->n; i++) {
		const struct tl_classify_pattern_def *p = &conf->patterns[i];
		const char *src[4] = {p->id, p->category, p->cause, p->action};
		const char **dst[4] = {&db->pat[i].id, &db->pat[i].category, &db->pat[i].cause,
		        &db->pat[i].action};

		for (int k = 0; k < 4; k++) {
			size_t len = strlen(src[k]) + 1;

			memcpy(db->strings + o, src[k], len);
			*dst[k] = db->strings + o;
			o += len;
		}
		db->pat[i].severity = (uint8_t)(p->severity + 1);
		db->pat[i].effect = (uint8_t)p->effect;
	}
	return 0;
}

/* Validate @p conf, resolve fields to slots and fill the per-pattern tables of @p db. */
static void
validate(struct tl_report *r, const struct tl_classify_conf *conf, const struct tl_schema *schema,
        struct tl_classify_db *db, unsigned *flags)
{
	int slot_of[FIELD_RAW + 1];
	int def_keys[TL_CLASSIFY_MAX_FIELDS];
	uint32_t n_def = 0;
	bool def_checked = false, def_ok = true;
	char shown[128];

	for (int k = 0; k <= FIELD_RAW; k++)
		slot_of[k] = -1;
	for (uint32_t i = 0; i < conf->n_patterns; i++) {
		const struct tl_classify_pattern_def *p = &conf->patterns[i];
		int keys[TL_CLASSIFY_MAX_FIELDS];
		uint32_t nk = 0;

		if (!valid_name(p->id))
			problem(r, p, "id must be 1 to 63 characters of a-z, 0-9, '_', '.', '-'");
		for (uint32_t j = 0; j < i; j++) {
			if (strcmp(conf->patterns[j].id, p->id) == 0) {
				if (conf->patterns[j].loc.line != 0)
					problem(r, p, "duplicate id (first defined at %s:%u)",
					        conf->patterns[j].loc.file,
					        conf->patterns[j].loc.line);
				else
					problem(r, p, "duplicate id (also pattern %u)", j);
				break;
			}
		}
		if (!valid_name(p->category)) {
			tl_report_printable(shown, sizeof(shown), p->category);
			problem(r, p,
			        "category '%s' must be 1 to 63 characters of a-z, 0-9, '_', '.', "
			        "'-'",
			        shown);
		}
		if (p->regex[0] == '\0')
			problem(r, p, "regex is empty");
		if (p->severity < 0 || p->severity + 1 >= TL_CLASSIFY_SEV_MAX)
			problem(r, p, "severity %d out of range", p->severity);
		if (p->effect < 0 || p->effect >= TL_CLASSIFY_EFFECT_MAX)
			problem(r, p, "effect %d out of range", p->effect);
		pattern_flags(r, p, &flags[i]);
		if (p->n_fields > TL_CLASSIFY_MAX_FIELDS ||
		        conf->n_fields > TL_CLASSIFY_MAX_FIELDS) {
			problem(r, p, "more than %d fields", TL_CLASSIFY_MAX_FIELDS);
			continue;
		}
		if (p->n_fields > 0) {
			for (uint32_t f = 0; f < p->n_fields; f++) {
				int k = resolve_field(r, p, schema, p->fields[f]);

				if (k >= 0)
					keys[nk++] = k;
			}
		} else {
			if (!def_checked) {
				def_checked = true;
				for (uint32_t f = 0; f < conf->n_fields; f++) {
					int k = resolve_field(r, NULL, schema, conf->fields[f]);

					if (k >= 0)
						def_keys[n_def++] = k;
					else
						def_ok = false;
				}
			}
			if (conf->n_fields == 0)
				problem(r, p,
				        "no field to scan (set its fields, or classify.fields)");
			if (!def_ok)
				continue;
			memcpy(keys, def_keys, n_def * sizeof(keys[0]));
			nk = n_def;
		}
		for (uint32_t f = 0; f < nk; f++) {
			if (slot_of[keys[f]] < 0) {
				if (db->n_slots == MAX_SLOTS) {
					problem(r, p, "more than %d distinct fields are scanned",
					        MAX_SLOTS);
					break;
				}
				slot_of[keys[f]] = (int)db->n_slots;
				db->slot_col[db->n_slots++] =
				        (int16_t)(keys[f] == FIELD_RAW ? -1 : keys[f]);
			}
			db->fmask[i] |= 1ull << slot_of[keys[f]];
		}
	}
}

int
tl_classify_build(const struct tl_classify_conf *conf, const struct tl_schema *schema,
        struct tl_classify_db **out, char *err, size_t errlen)
{
	struct tl_report r = {.buf = err, .len = errlen};
	struct tl_classify_db *db = NULL;
	char path[TL_CLASSIFY_PATH_MAX + 64], why[512];
	unsigned *flags = NULL;
	uint8_t key[16];
	uint32_t n;
	int rc;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (out == NULL || conf == NULL || schema == NULL)
		return -EINVAL;
	*out = NULL;
	if (hs_valid_platform() != HS_SUCCESS)
		return -ENOTSUP;
	n = conf->n_patterns;
	if (n > TL_CLASSIFY_MAX_PATTERNS) {
		problem(&r, NULL, "classify: %u patterns, at most %d", n, TL_CLASSIFY_MAX_PATTERNS);
		tl_report_finish(&r);
		return TL_E_CONFIG;
	}
	db = calloc(1, sizeof(*db));
	if (db == NULL)
		return -ENOMEM;
	db->n = n;
	db->n_words = (n + 63) / 64;
	/* One more, left 0: the stride-cap expression's id (see STRIDE_CAP_EXPR). */
	db->fmask = calloc(n + 1, sizeof(*db->fmask));
	db->sev = calloc(n ? n : 1, sizeof(*db->sev));
	db->pat = calloc(n ? n : 1, sizeof(*db->pat));
	flags = calloc(n ? n : 1, sizeof(*flags));
	rc = -ENOMEM;
	if (db->fmask == NULL || db->sev == NULL || db->pat == NULL || flags == NULL)
		goto fail;
	validate(&r, conf, schema, db, flags);
	rc = TL_E_CONFIG;
	if (r.n > 0)
		goto fail;
	rc = copy_strings(db, conf);
	if (rc < 0)
		goto fail;
	for (uint32_t i = 0; i < n; i++) {
		db->sev[i] = db->pat[i].severity;
		if (db->pat[i].effect == TL_CLASSIFY_EFFECT_ERROR)
			db->err_mask[i / 64] |= 1ull << (i % 64);
	}
	rc = hash_patterns(conf, flags, key);
	if (rc < 0)
		goto fail;
	for (int i = 0; i < 16; i++)
		snprintf(db->hash + 2 * i, 3, "%02x", key[i]);
	if (n == 0)
		goto done; /* nothing to scan: every event classifies as no match */

	path[0] = '\0';
	if (conf->cache_dir[0] != '\0') {
		snprintf(path, sizeof(path), "%s/%s.hsdb", conf->cache_dir, db->hash);
		why[0] = '\0';
		rc = cache_load(path, key, n, &db->hs, why, sizeof(why));
		if (rc == 0) {
			db->from_cache = true;
			TL_DEBUG("classify: %u patterns loaded from %s", n, path);
			goto done;
		}
		if (rc != -ENOENT)
			TL_WARN("classify: ignoring cache file %s: %s; recompiling", path, why);
	}
	rc = compile(&r, conf, flags, &db->hs);
	if (rc < 0)
		goto fail;
	if (path[0] != '\0') {
		why[0] = '\0';
		if (cache_store(conf->cache_dir, path, key, n, db->hs, why, sizeof(why)) < 0)
			TL_WARN("classify: cannot cache the compiled patterns: %s", why);
	}
done:
	free(flags);
	*out = db;
	return 0;
fail:
	tl_report_finish(&r);
	free(flags);
	tl_classify_db_free(db);
	return rc;
}

void
tl_classify_db_free(struct tl_classify_db *db)
{
	if (db == NULL)
		return;
	hs_free_database(db->hs);
	free(db->fmask);
	free(db->sev);
	free(db->pat);
	free(db->strings);
	free(db);
}

int
tl_classify_scratch_alloc(const struct tl_classify_db *db, struct tl_classify_scratch **out)
{
	struct tl_classify_scratch *s;
	hs_error_t e;

	if (out == NULL)
		return -EINVAL;
	*out = NULL;
	if (db == NULL)
		return -EINVAL;
	s = aligned_alloc(64, sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	memset(s, 0, sizeof(*s));
	if (db->hs != NULL) {
		e = hs_alloc_scratch(db->hs, &s->hs);
		if (e != HS_SUCCESS) {
			TL_ERR("classify: cannot allocate a scratch: %s", hs_message(e));
			free(s);
			return hs_errno(e);
		}
	}
	*out = s;
	return 0;
}

void
tl_classify_scratch_free(struct tl_classify_scratch *s)
{
	if (s == NULL)
		return;
	hs_free_scratch(s->hs);
	free(s);
}

/* ---- hot path --------------------------------------------------------------------- */

struct scan_ctx {
	const uint64_t *fmask;
	uint64_t *seen;
	uint64_t bit; /* the slot being scanned */
};

static int
on_match(unsigned int id, unsigned long long from, unsigned long long to, unsigned int flags,
        void *arg)
{
	struct scan_ctx *c = arg;

	(void)from;
	(void)to;
	(void)flags;
	if (c->fmask[id] & c->bit)
		c->seen[id >> 6] |= 1ull << (id & 63);
	return 0;
}

/* The bytes of field @p slot in @p ev, or NULL if it is not scanned in this event. */
static inline const uint8_t *
slot_value(const struct tl_classify_db *db, uint32_t slot, const struct tl_event *ev, uint32_t *len)
{
	int col = db->slot_col[slot];
	const struct tl_value *v;

	if (col < 0) {
		*len = ev->raw_len;
		return ev->raw_len > 0 ? ev->raw : NULL;
	}
	v = &ev->col[col];
	if ((v->kind != TL_VAL_STRING && v->kind != TL_VAL_RAW) || v->len == 0)
		return NULL;
	*len = v->len;
	return v->ptr;
}

void
tl_classify_event(const struct tl_classify_db *db, struct tl_classify_scratch *s,
        const struct tl_event *ev, struct tl_classify_result *out)
{
	struct scan_ctx ctx = {.fmask = db->fmask, .seen = s->seen};
	uint8_t sev = 0;
	bool scanned = false;

	memset(out, 0, sizeof(*out));
	if (__builtin_expect(db->hs == NULL, 0))
		return;
	for (uint32_t slot = 0; slot < db->n_slots; slot++) {
		uint32_t len = 0;
		const uint8_t *p = slot_value(db, slot, ev, &len);

		if (p == NULL)
			continue;
		if (!scanned) {
			/* Cleared only for events that have something to scan: most events
			 * carry no error value at all. */
			memset(s->seen, 0, db->n_words * sizeof(s->seen[0]));
			scanned = true;
		}
		ctx.bit = 1ull << slot;
		if (__builtin_expect(hs_scan(db->hs, (const char *)p, len, 0, s->hs, on_match,
		                             &ctx) != HS_SUCCESS,
		            0))
			out->scan_failed = true;
	}
	if (!scanned)
		return;
	for (uint32_t w = 0; w < db->n_words; w++) {
		uint64_t m = s->seen[w];

		if (m == 0)
			continue;
		if (m & db->err_mask[w])
			out->error = true;
		while (m != 0) {
			uint32_t i = w * 64 + (uint32_t)__builtin_ctzll(m);

			m &= m - 1;
			if (db->sev[i] > sev)
				sev = db->sev[i];
			if (out->n < TL_CLASSIFY_MAX_MATCHES)
				out->ids[out->n++] = (uint16_t)i;
			else
				out->dropped++;
		}
	}
	out->severity = sev;
}

/* ---- accessors -------------------------------------------------------------------- */

uint64_t
tl_classify_scan_bytes(const struct tl_classify_db *db, const struct tl_event *ev)
{
	uint64_t n = 0;

	for (uint32_t slot = 0; db->hs != NULL && slot < db->n_slots; slot++) {
		uint32_t len = 0;

		if (slot_value(db, slot, ev, &len) != NULL)
			n += len;
	}
	return n;
}

uint32_t
tl_classify_db_count(const struct tl_classify_db *db)
{
	return db->n;
}

const struct tl_classify_pattern *
tl_classify_db_pattern(const struct tl_classify_db *db, uint32_t i)
{
	return i < db->n ? &db->pat[i] : NULL;
}

int
tl_classify_db_find(const struct tl_classify_db *db, const char *id)
{
	for (uint32_t i = 0; i < db->n; i++)
		if (strcmp(db->pat[i].id, id) == 0)
			return (int)i;
	return -1;
}

const char *
tl_classify_db_hash(const struct tl_classify_db *db)
{
	return db->hash;
}

bool
tl_classify_db_from_cache(const struct tl_classify_db *db)
{
	return db->from_cache;
}

const char *
tl_classify_severity_name(unsigned sev)
{
	return sev < TL_CLASSIFY_SEV_MAX ? tl_classify_severity_names[sev] : "?";
}

const char *
tl_classify_effect_name(unsigned eff)
{
	return eff < TL_CLASSIFY_EFFECT_MAX ? tl_classify_effect_names[eff] : "?";
}
