/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Option tables and the profile loader.
 *
 * Loading is three passes: defaults from the tables (through the same value parsers as
 * user text), the `extends:` chain parsed file by file and merged child over parent
 * (tl_yaml.c), then one walk of the merged tree against the tables. Every problem is
 * collected with its location and the walk goes on, so an operator fixing a profile sees
 * all of them at once; they are printed sorted by file (most derived first) and position.
 *
 * When a file is not YAML, or the chain itself is broken (missing parent, cycle, too
 * deep), the tree is not applied: half a configuration would only produce a cascade of
 * "required option not set" messages that hide the real problem.
 *
 * Conventions the header leaves open:
 *  - `def` of a STRLIST or LIST is YAML flow text ("[eth0, eth1]", "[{port: 1}]") and goes
 *    through the YAML parser; every other `def` goes straight to the value parser.
 *  - TL_OPT_INT bounds are int64_t values cast into the uint64_t min/max fields.
 *  - A YAML null (plain "", "~", "null") is the empty string for STRING, an empty mapping
 *    for SECTION (and, when merging, leaves the parent's section alone), an error for
 *    everything else ("[]" is the empty list).
 *  - Scalars are taken by text whatever their YAML style: port: "5170" is 5170.
 *  - A LIST or STRLIST in a file replaces the whole list; elements start from defaults.
 *  - Secrets are never echoed in messages, not even their length. config show prints
 *    "<secret>", which loads back as that literal string: the one value that does not
 *    round-trip.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "tl_error.h"
#include "tl_hex.h"
#include "tl_log.h"
#include "tl_opt.h"
#include "tl_yaml.h"

/* Most files in one `extends:` chain, the loaded file included. */
#define MAX_CHAIN 16
/* Problems kept for printing; beyond this they are only counted. */
#define MAX_KEPT 1000
/* Longest dotted option path shown in messages ("pipeline.reassembly.max_flows"). */
#define OPT_PATH 256

struct problem {
	int rank; /* file position in the chain, -1 for table defaults */
	uint32_t line, col;
	size_t order;
	char *text;
};

struct loader {
	struct tl_yarena *arena;
	struct problem *v;
	size_t n, cap;
	unsigned total;
	bool nomem;
	const char *files[MAX_CHAIN + 1];
	unsigned n_files;
	FILE *out; /* NULL: tl_log */
};

/* ---- problem collection ----------------------------------------------------------- */

static int
file_rank(const struct loader *l, const char *file)
{
	unsigned i;

	if (file == NULL)
		return -1;
	for (i = 0; i < l->n_files; i++)
		if (strcmp(l->files[i], file) == 0)
			return (int)i;
	return -1;
}

static void
add_problem(struct loader *l, const char *file, uint32_t line, uint32_t col, const char *msg)
{
	struct problem *p;
	char *text;
	size_t len;

	l->total++;
	if (l->n >= MAX_KEPT)
		return;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;

		p = realloc(l->v, cap * sizeof(*p));
		if (p == NULL) {
			l->nomem = true;
			return;
		}
		l->v = p;
		l->cap = cap;
	}
	len = strlen(msg) + (file ? strlen(file) : 0) + 32;
	text = malloc(len);
	if (text == NULL) {
		l->nomem = true;
		return;
	}
	if (file != NULL && line != 0)
		snprintf(text, len, "%s:%u:%u: %s", file, line, col, msg);
	else if (file != NULL)
		snprintf(text, len, "%s: %s", file, msg);
	else
		snprintf(text, len, "%s", msg);
	l->v[l->n++] = (struct problem){
	        .rank = file_rank(l, file), .line = line, .col = col, .order = l->n, .text = text};
}

static void __attribute__((format(printf, 5, 6)))
report_at(struct loader *l, const char *file, uint32_t line, uint32_t col, const char *fmt, ...)
{
	char msg[1536];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	add_problem(l, file, line, col, msg);
}

/* Location of a node; @key: prefer where its key was written (sections, entries). */
#define NODE_LOC(n, at_key)                                                                        \
	(n)->file, ((at_key) && (n)->key ? (n)->key_line : (n)->line),                             \
	        ((at_key) && (n)->key ? (n)->key_col : (n)->col)

static void
yaml_report(void *arg, const char *file, uint32_t line, uint32_t col, const char *msg)
{
	add_problem(arg, file, line, col, msg);
}

static int
problem_cmp(const void *x, const void *y)
{
	const struct problem *a = x, *b = y;

	if (a->rank != b->rank)
		return a->rank < b->rank ? -1 : 1;
	if (a->line != b->line)
		return a->line < b->line ? -1 : 1;
	if (a->col != b->col)
		return a->col < b->col ? -1 : 1;
	return a->order < b->order ? -1 : a->order > b->order;
}

static void
flush_problems(struct loader *l)
{
	size_t i;

	if (l->n > 1)
		qsort(l->v, l->n, sizeof(*l->v), problem_cmp);
	for (i = 0; i < l->n; i++) {
		if (l->out != NULL)
			fprintf(l->out, "%s\n", l->v[i].text);
		else
			TL_ERR("%s", l->v[i].text);
	}
	if (l->total > l->n) {
		if (l->out != NULL)
			fprintf(l->out, "(%u more problems not shown)\n",
			        l->total - (unsigned)l->n);
		else
			TL_ERR("(%u more problems not shown)", l->total - (unsigned)l->n);
	}
}

static int
loader_init(struct loader *l, FILE *out)
{
	memset(l, 0, sizeof(*l));
	l->out = out;
	return tl_yarena_create(&l->arena);
}

static void
loader_fini(struct loader *l)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		free(l->v[i].text);
	free(l->v);
	tl_yarena_free(l->arena);
}

/* ---- value grammar ---------------------------------------------------------------- */

int
tl_parse_bool(const char *text, bool *v)
{
	static const char *const yes[] = {"true", "yes", "on"};
	static const char *const no[] = {"false", "no", "off"};
	size_t i;

	if (text == NULL)
		return -EINVAL;
	for (i = 0; i < 3; i++) {
		if (strcasecmp(text, yes[i]) == 0) {
			*v = true;
			return 0;
		}
		if (strcasecmp(text, no[i]) == 0) {
			*v = false;
			return 0;
		}
	}
	return -EINVAL;
}

/*
 * Digits only (no sign, no blanks), decimal, or hex after "0x" when @hex. A leading zero
 * does not mean octal. @end gets the first byte after the digits; the caller decides
 * whether anything may follow. Grammar errors win over overflow.
 */
static int
scan_u64(const char *s, bool hex, uint64_t *v, const char **end)
{
	unsigned base = 10;
	uint64_t x = 0;
	bool over = false;
	const char *p = s;
	int d;

	if (hex && p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
		base = 16;
		p += 2;
	}
	if (base == 10 ? !(*p >= '0' && *p <= '9') : tl_hexval(*p) < 0)
		return -EINVAL;
	for (; (d = base == 10 ? (*p >= '0' && *p <= '9' ? *p - '0' : -1) : tl_hexval(*p)) >= 0; p++) {
		if (x > (UINT64_MAX - (uint64_t)d) / base)
			over = true;
		else
			x = x * base + (uint64_t)d;
	}
	*end = p;
	*v = x;
	return over ? -ERANGE : 0;
}

static int
parse_uint(const char *text, uint64_t *v)
{
	const char *end;
	int rc = scan_u64(text, true, v, &end);

	if (rc == -EINVAL || *end != '\0')
		return -EINVAL;
	return rc;
}

static int
parse_int(const char *text, int64_t *v)
{
	bool neg = text[0] == '-';
	uint64_t u;
	int rc = parse_uint(text + neg, &u);

	if (rc != 0)
		return rc;
	if (neg ? u > (uint64_t)INT64_MAX + 1 : u > (uint64_t)INT64_MAX)
		return -ERANGE;
	*v = neg ? (int64_t)(0 - u) : (int64_t)u;
	return 0;
}

/*
 * Sizes: a decimal byte count, optionally one space, then a unit (letters any case):
 *   B             bytes
 *   K  M  G  T  P  E   (also k, m, ...)  1024^n - bare letters are binary, as in Fluent Bit
 *   KiB MiB ... EiB                      1024^n
 *   KB  MB  ... EB                       1000^n - with "B" they are SI
 * No fractions: "1.5GiB" is rejected rather than rounded.
 */
int
tl_parse_size(const char *text, uint64_t *bytes)
{
	static const char prefixes[] = "kmgtpe";
	uint64_t n, mult = 1;
	const char *u, *pos;
	int rc, i, pow;

	if (text == NULL)
		return -EINVAL;
	rc = scan_u64(text, false, &n, &u);
	if (rc == -EINVAL)
		return rc;
	if (*u == ' ')
		u++;
	if (*u != '\0' && (u[0] == 'b' || u[0] == 'B') && u[1] == '\0') {
		u++;
	} else if (*u != '\0') {
		char c = (char)(*u | 0x20);

		pos = c >= 'a' && c <= 'z' ? strchr(prefixes, c) : NULL;
		if (pos == NULL)
			return -EINVAL;
		pow = (int)(pos - prefixes) + 1;
		u++;
		if (*u == '\0' ||
		        ((u[0] == 'i' || u[0] == 'I') && (u[1] | 0x20) == 'b' && u[2] == '\0')) {
			mult = 1ull << (10 * pow);
		} else if ((u[0] | 0x20) == 'b' && u[1] == '\0') {
			for (i = 0; i < pow; i++)
				mult *= 1000;
		} else {
			return -EINVAL;
		}
	} else if (u > text && u[-1] == ' ') {
		return -EINVAL; /* trailing blank */
	}
	if (rc != 0)
		return rc;
	if (n > UINT64_MAX / mult)
		return -ERANGE;
	*bytes = n * mult;
	return 0;
}

struct unit {
	const char *name;
	uint64_t ns;
};

/* Longest names first so "ms" is not read as "m". */
static const struct unit dur_units[] = {
        {"ns", 1ull},
        {"us", 1000ull},
        {"\xc2\xb5s", 1000ull}, /* µs */
        {"ms", 1000000ull},
        {"s", 1000000000ull},
        {"m", 60000000000ull},
        {"h", 3600000000000ull},
        {"d", 86400000000000ull},
};

/*
 * Durations: an integer with an optional decimal fraction, optionally one space, then a
 * unit: ns, us (or µs), ms, s, m (minutes), h, d. The unit is required except for a bare
 * "0". The fraction is computed exactly in integer arithmetic ("1.5s" is 1500000000 ns,
 * never 1499999999); a value that is not a whole number of nanoseconds ("1.5ns") is
 * rejected rather than rounded.
 */
int
tl_parse_duration(const char *text, uint64_t *ns)
{
	uint64_t whole, frac = 0, unit = 0;
	unsigned fdigits = 0;
	const char *p, *fstart = NULL, *fend = NULL;
	unsigned __int128 f;
	size_t i;
	int rc;

	if (text == NULL)
		return -EINVAL;
	rc = scan_u64(text, false, &whole, &p);
	if (rc == -EINVAL)
		return rc;
	if (*p == '.') {
		fstart = ++p;
		while (*p >= '0' && *p <= '9')
			p++;
		fend = p;
		if (fend == fstart)
			return -EINVAL;
	}
	if (*p == ' ' && p[1] != '\0')
		p++;
	if (*p == '\0') {
		if (!(rc == 0 && whole == 0 && fstart == NULL && p[-1] != ' '))
			return -EINVAL; /* only a bare 0 may omit the unit */
		*ns = 0;
		return 0;
	}
	for (i = 0; i < sizeof(dur_units) / sizeof(dur_units[0]); i++) {
		if (strcmp(p, dur_units[i].name) == 0) {
			unit = dur_units[i].ns;
			break;
		}
	}
	if (unit == 0)
		return -EINVAL;
	if (fstart != NULL) {
		/* Trailing zeros say nothing; beyond 19 significant digits the value can
		 * never be a whole number of ns (no unit has more than 2^16 or 5^11). */
		while (fend > fstart && fend[-1] == '0')
			fend--;
		if (fend - fstart > 19)
			return -EINVAL;
		for (p = fstart; p < fend; p++, fdigits++)
			frac = frac * 10 + (uint64_t)(*p - '0');
	}
	if (rc != 0)
		return rc;
	f = (unsigned __int128)frac * unit;
	for (i = 0; i < fdigits; i++) {
		if (f % 10 != 0)
			return -EINVAL;
		f /= 10;
	}
	if (whole > UINT64_MAX / unit)
		return -ERANGE;
	whole *= unit;
	/* f < unit <= 86400e9 here, so it fits in 64 bits. */
	if ((uint64_t)f > UINT64_MAX - whole)
		return -ERANGE;
	*ns = whole + (uint64_t)f;
	return 0;
}

/* Largest binary unit that divides exactly, so output re-parses to the same value. */
static void
format_size(char *buf, size_t len, uint64_t v)
{
	static const char units[] = "KMGTPE";
	int i;

	for (i = 5; i >= 0 && v != 0; i--) {
		unsigned shift = 10u * (unsigned)(i + 1);

		if ((v & ((1ull << shift) - 1)) == 0) {
			snprintf(buf, len, "%" PRIu64 "%ciB", v >> shift, units[i]);
			return;
		}
	}
	snprintf(buf, len, "%" PRIu64, v);
}

static void
format_duration(char *buf, size_t len, uint64_t ns)
{
	static const struct unit order[] = {
	        {"d", 86400000000000ull},
	        {"h", 3600000000000ull},
	        {"m", 60000000000ull},
	        {"s", 1000000000ull},
	        {"ms", 1000000ull},
	        {"us", 1000ull},
	};
	size_t i;

	if (ns == 0) {
		snprintf(buf, len, "0s");
		return;
	}
	for (i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		if (ns % order[i].ns == 0) {
			snprintf(buf, len, "%" PRIu64 "%s", ns / order[i].ns, order[i].name);
			return;
		}
	}
	snprintf(buf, len, "%" PRIu64 "ns", ns);
}

/* ---- applying a tree to a table --------------------------------------------------- */

static const char *
expects(const struct tl_opt *o)
{
	switch (o->type) {
	case TL_OPT_BOOL:
		return "a boolean (true or false)";
	case TL_OPT_UINT:
		return "a whole number (e.g. 42 or 0x2a)";
	case TL_OPT_INT:
		return "an integer (e.g. -5 or 42)";
	case TL_OPT_SIZE:
		return "a size (e.g. 1500, 4KiB, 64MiB)";
	case TL_OPT_DURATION:
		return "a duration (e.g. 500ms, 2s, 1m)";
	case TL_OPT_STRING:
		return "a string";
	case TL_OPT_ENUM:
		return "one of its names";
	case TL_OPT_STRLIST:
		return "a list of strings";
	case TL_OPT_SECTION:
		return "a mapping of its keys";
	case TL_OPT_LIST:
		return "a list of mappings";
	}
	return "a value";
}

static void
subpath(char *dst, const char *path, const char *name)
{
	if (path[0] == '\0')
		snprintf(dst, OPT_PATH, "%s", name);
	else
		snprintf(dst, OPT_PATH, "%s.%s", path, name);
}

/* Append @s to @buf (of @len), keeping it terminated; marks truncation with "...". */
static void
append_str(char *buf, size_t len, const char *s)
{
	size_t o = strlen(buf), n = strlen(s);

	if (o + n + 1 <= len) {
		memcpy(buf + o, s, n + 1);
	} else if (len > 4 && o + 4 < len) {
		memcpy(buf + o, "...", 4);
	}
}

static int
str_cmp(const void *x, const void *y)
{
	return strcmp(*(const char *const *)x, *(const char *const *)y);
}

/* "a, b, c": the keys of @t sorted, for "(valid: ...)". */
static void
list_keys(char *buf, size_t len, const struct tl_opt *t, bool root)
{
	const char *names[128];
	size_t n = 0, i;

	buf[0] = '\0';
	if (root)
		names[n++] = "extends";
	for (; t->name != NULL && n < 128; t++)
		names[n++] = t->name;
	qsort(names, n, sizeof(names[0]), str_cmp);
	for (i = 0; i < n; i++) {
		if (i > 0)
			append_str(buf, len, ", ");
		append_str(buf, len, names[i]);
	}
	if (n == 0)
		append_str(buf, len, "none");
}

static void
list_enums(char *buf, size_t len, const char *const *e)
{
	buf[0] = '\0';
	for (; e != NULL && *e != NULL; e++) {
		if (buf[0] != '\0')
			append_str(buf, len, ", ");
		append_str(buf, len, *e);
	}
}

/* How a value is named in messages: quoted user text, or nothing of a secret. */
static void
shown_value(char *buf, size_t len, const struct tl_opt *o, const char *path, const char *v)
{
	char tmp[96];

	if (o->flags & TL_OPT_F_SECRET) {
		snprintf(buf, len, "the value of secret %s", path);
		return;
	}
	tl_yaml_printable(tmp, sizeof(tmp), v);
	snprintf(buf, len, "'%s'", tmp);
}

static void
format_bound(char *buf, size_t len, const struct tl_opt *o, uint64_t v)
{
	if (o->type == TL_OPT_SIZE)
		format_size(buf, len, v);
	else if (o->type == TL_OPT_DURATION)
		format_duration(buf, len, v);
	else if (o->type == TL_OPT_INT)
		snprintf(buf, len, "%" PRId64, (int64_t)v);
	else
		snprintf(buf, len, "%" PRIu64, v);
}

static bool
in_range(const struct tl_opt *o, uint64_t v)
{
	if (o->max == 0)
		return true;
	/* INT bounds are int64_t values stored in the uint64_t fields. */
	if (o->type == TL_OPT_INT)
		return (int64_t)v >= (int64_t)o->min && (int64_t)v <= (int64_t)o->max;
	return v >= o->min && v <= o->max;
}

static void
too_long(struct loader *l, const struct tl_opt *o, const struct tl_ynode *n, const char *path,
        const char *what)
{
	size_t max = o->size ? o->size - 1 : 0;

	/* Not even the length of a secret is printed. */
	if (o->flags & TL_OPT_F_SECRET)
		report_at(l, NODE_LOC(n, false), "%s is too long (at most %zu bytes)", what, max);
	else
		report_at(l, NODE_LOC(n, false), "%s is too long for %s (%zu bytes, at most %zu)",
		        what, path, n->len, max);
}

static void
apply_scalar(struct loader *l, const struct tl_opt *o, void *obj, const struct tl_ynode *n,
        const char *path)
{
	char *field = (char *)obj + o->offset;
	char what[OPT_PATH + 96], lo[32], hi[32], names[512];
	const char *v = n->value;
	uint64_t u = 0;
	int64_t i64 = 0;
	bool b;
	int rc = 0, k;

	if (n->type != TL_YNODE_SCALAR) {
		report_at(l, NODE_LOC(n, false), "%s expects %s, not a %s", path, expects(o),
		        tl_ynode_kind(n));
		return;
	}
	if (n->null && o->type != TL_OPT_STRING) {
		report_at(l, NODE_LOC(n, false), "%s has no value; expected %s", path, expects(o));
		return;
	}
	shown_value(what, sizeof(what), o, path, v);
	switch (o->type) {
	case TL_OPT_BOOL:
		if (tl_parse_bool(v, &b) != 0) {
			report_at(l, NODE_LOC(n, false), "%s is not a boolean (use true or false)",
			        what);
			return;
		}
		*(bool *)field = b;
		return;
	case TL_OPT_UINT:
	case TL_OPT_SIZE:
	case TL_OPT_DURATION:
		if (o->type == TL_OPT_UINT)
			rc = parse_uint(v, &u);
		else if (o->type == TL_OPT_SIZE)
			rc = tl_parse_size(v, &u);
		else
			rc = tl_parse_duration(v, &u);
		if (rc == -ERANGE) {
			report_at(l, NODE_LOC(n, false), "%s is too large for %s", what,
			        o->type == TL_OPT_DURATION ? "a duration (at most about 584 years)"
			        : o->type == TL_OPT_SIZE   ? "a size (at most 16EiB - 1)"
			                                   : "a 64-bit number");
			return;
		}
		if (rc != 0) {
			report_at(l, NODE_LOC(n, false), "%s is not %s", what,
			        o->type == TL_OPT_UINT ? "a whole number (use e.g. 42 or 0x2a)"
			        : o->type == TL_OPT_SIZE
			                ? "a size (use e.g. 1500, 4KiB, 64MiB, 1GiB)"
			                : "a duration (use e.g. 500ms, 2s, 1m)");
			return;
		}
		break;
	case TL_OPT_INT:
		rc = parse_int(v, &i64);
		if (rc != 0) {
			report_at(l, NODE_LOC(n, false), "%s %s", what,
			        rc == -ERANGE ? "does not fit in a 64-bit integer"
			                      : "is not an integer (use e.g. -5 or 42)");
			return;
		}
		u = (uint64_t)i64;
		break;
	case TL_OPT_STRING:
		if (n->null)
			v = "";
		if (o->size == 0 || strlen(v) > o->size - 1) {
			too_long(l, o, n, path, what);
			return;
		}
		memset(field, 0, o->size);
		memcpy(field, v, strlen(v));
		return;
	case TL_OPT_ENUM:
		for (k = 0; o->enums != NULL && o->enums[k] != NULL; k++) {
			if (strcmp(o->enums[k], v) == 0) {
				*(int *)field = k;
				return;
			}
		}
		list_enums(names, sizeof(names), o->enums);
		report_at(l, NODE_LOC(n, false), "%s is not a valid value for %s (valid: %s)", what,
		        path, names);
		return;
	default:
		return;
	}
	if (!in_range(o, u)) {
		format_bound(lo, sizeof(lo), o, o->min);
		format_bound(hi, sizeof(hi), o, o->max);
		report_at(l, NODE_LOC(n, false), "%s is out of range for %s (allowed: %s to %s)",
		        what, path, lo, hi);
		return;
	}
	if (o->type == TL_OPT_INT)
		*(int64_t *)field = i64;
	else
		*(uint64_t *)field = u;
}

static void apply_table(struct loader *l, const struct tl_opt *t, void *obj,
        const struct tl_ynode *map, const struct tl_ynode *anc, const char *path, bool root);

static void
run_check(struct loader *l, tl_opt_check_fn check, const void *obj, const struct tl_ynode *at,
        bool at_key, const char *path)
{
	char msg[512] = "";

	if (check == NULL || check(obj, msg, sizeof(msg)) == 0)
		return;
	msg[sizeof(msg) - 1] = '\0';
	report_at(l, NODE_LOC(at, at_key), "%s: %s", path[0] ? path : "configuration",
	        msg[0] ? msg : "rejected by its validity check");
}

static void
apply_strlist(struct loader *l, const struct tl_opt *o, void *obj, const struct tl_ynode *n,
        const char *path)
{
	char *field = (char *)obj + o->offset;
	const struct tl_ynode *it;
	uint32_t count = 0, pos;
	char what[OPT_PATH + 96];

	memset(field, 0, o->size * o->max_items);
	*(uint32_t *)((char *)obj + o->count_offset) = 0;
	for (it = n->first, pos = 0; it != NULL; it = it->next, pos++) {
		/* Capacity counts what the operator wrote, broken entries included. */
		if (pos == o->max_items) {
			report_at(l, NODE_LOC(it, false), "%s has too many entries (at most %u)",
			        path, o->max_items);
			break;
		}
		if (it->bad)
			continue;
		if (it->type != TL_YNODE_SCALAR || it->null) {
			report_at(l, NODE_LOC(it, false), "%s entries must be strings, not a %s",
			        path, tl_ynode_kind(it));
			continue;
		}
		if (o->size == 0 || it->len > o->size - 1) {
			shown_value(what, sizeof(what), o, path, it->value);
			too_long(l, o, it, path, what);
			continue;
		}
		memcpy(field + (size_t)count * o->size, it->value, it->len);
		count++;
	}
	*(uint32_t *)((char *)obj + o->count_offset) = count;
}

static void apply_defaults(struct loader *l, const struct tl_opt *t, void *obj, const char *path);

/* The element's own location, kept past the arena for modules that validate elements
 * later (a pattern that does not compile is reported at its `-` entry). */
static void
record_loc(struct tl_opt_loc *loc, const struct tl_ynode *n)
{
	size_t len = n->file ? strlen(n->file) : 0;

	memset(loc, 0, sizeof(*loc));
	if (len < sizeof(loc->file)) {
		if (len > 0)
			memcpy(loc->file, n->file, len);
	} else {
		size_t keep = sizeof(loc->file) - 4;

		memcpy(loc->file, "...", 3);
		memcpy(loc->file + 3, n->file + len - keep, keep);
	}
	loc->line = n->line;
	loc->col = n->col;
}

static void
apply_list(struct loader *l, const struct tl_opt *o, void *obj, const struct tl_ynode *n,
        const char *path)
{
	char *field = (char *)obj + o->offset;
	const struct tl_ynode *it;
	char ipath[OPT_PATH];
	uint32_t count = 0, pos;
	unsigned before;

	memset(field, 0, o->size * o->max_items);
	*(uint32_t *)((char *)obj + o->count_offset) = 0;
	for (it = n->first, pos = 0; it != NULL; it = it->next, pos++) {
		void *elem;

		/* Capacity and the [index] in messages count what the operator wrote. */
		if (pos == o->max_items) {
			report_at(l, NODE_LOC(it, false), "%s has too many entries (at most %u)",
			        path, o->max_items);
			break;
		}
		if (it->bad)
			continue;
		snprintf(ipath, sizeof(ipath), "%s[%u]", path, pos);
		if (it->type != TL_YNODE_MAP && !(it->type == TL_YNODE_SCALAR && it->null)) {
			report_at(l, NODE_LOC(it, false),
			        "%s must be a mapping of its keys, not a %s", ipath,
			        tl_ynode_kind(it));
			continue;
		}
		elem = field + (size_t)count * o->size;
		before = l->total;
		apply_defaults(l, o->sub, elem, ipath);
		apply_table(
		        l, o->sub, elem, it->type == TL_YNODE_MAP ? it : NULL, it, ipath, false);
		if (o->flags & TL_OPT_F_LOC)
			record_loc((struct tl_opt_loc *)((char *)elem + o->loc_offset), it);
		if (l->total == before)
			run_check(l, o->check, elem, it, false, ipath);
		count++;
	}
	*(uint32_t *)((char *)obj + o->count_offset) = count;
}

static void
apply_opt(struct loader *l, const struct tl_opt *o, void *obj, const struct tl_ynode *n,
        const char *path)
{
	unsigned before;

	if (n->bad)
		return; /* already reported; counts as set */
	switch (o->type) {
	case TL_OPT_SECTION:
		if (n->type != TL_YNODE_MAP && !(n->type == TL_YNODE_SCALAR && n->null)) {
			report_at(l, NODE_LOC(n, false),
			        "%s is a section and expects a mapping of "
			        "its keys, not a %s",
			        path, tl_ynode_kind(n));
			return;
		}
		before = l->total;
		apply_table(l, o->sub, (char *)obj + o->offset, n->type == TL_YNODE_MAP ? n : NULL,
		        n, path, false);
		if (l->total == before)
			run_check(l, o->check, (char *)obj + o->offset, n, true, path);
		return;
	case TL_OPT_STRLIST:
	case TL_OPT_LIST:
		if (n->type != TL_YNODE_SEQ) {
			report_at(l, NODE_LOC(n, false), "%s expects %s, not a %s%s", path,
			        expects(o), tl_ynode_kind(n),
			        n->null ? " (write [] for an empty list)" : "");
			return;
		}
		if (o->type == TL_OPT_LIST)
			apply_list(l, o, obj, n, path);
		else
			apply_strlist(l, o, obj, n, path);
		return;
	default:
		apply_scalar(l, o, obj, n, path);
		return;
	}
}

static const struct tl_opt *
find_opt(const struct tl_opt *t, const char *name)
{
	for (; t->name != NULL; t++)
		if (strcmp(t->name, name) == 0)
			return t;
	return NULL;
}

/* A required option (or a section holding one) that no file of the chain set. */
static void
apply_missing(struct loader *l, const struct tl_opt *o, void *obj, const struct tl_ynode *anc,
        const char *path)
{
	unsigned before;

	if (o->flags & TL_OPT_F_REQUIRED) {
		report_at(l, NODE_LOC(anc, true), "required option %s is not set%s%s%s", path,
		        o->desc ? " (" : "", o->desc ? o->desc : "", o->desc ? ")" : "");
		return;
	}
	if (o->type != TL_OPT_SECTION)
		return;
	before = l->total;
	apply_table(l, o->sub, (char *)obj + o->offset, NULL, anc, path, false);
	if (l->total == before)
		run_check(l, o->check, (char *)obj + o->offset, anc, true, path);
}

static void
apply_table(struct loader *l, const struct tl_opt *t, void *obj, const struct tl_ynode *map,
        const struct tl_ynode *anc, const char *path, bool root)
{
	const struct tl_ynode *e, *n;
	const struct tl_opt *o;
	char sub[OPT_PATH], valid[768], key[96];

	for (e = map ? map->first : NULL; e != NULL; e = e->next) {
		if (find_opt(t, e->key) != NULL)
			continue;
		list_keys(valid, sizeof(valid), t, root);
		tl_yaml_printable(key, sizeof(key), e->key);
		report_at(l, NODE_LOC(e, true), "unknown key '%s' %s%s%s (valid: %s)", key,
		        path[0] ? "in " : "at the top level", path,
		        strcmp(e->key, "extends") == 0 && !root
		                ? " ('extends' is only allowed at the top level of a file)"
		                : "",
		        valid);
	}
	for (o = t; o->name != NULL; o++) {
		subpath(sub, path, o->name);
		n = tl_ynode_get(map, o->name);
		if (n != NULL)
			apply_opt(l, o, obj, n, sub);
		else
			apply_missing(l, o, obj, anc, sub);
	}
}

/* ---- defaults --------------------------------------------------------------------- */

static void
apply_default(struct loader *l, const struct tl_opt *o, void *obj, const char *path)
{
	struct tl_ynode *n = NULL;
	char name[OPT_PATH + 32];
	unsigned np;
	int rc;

	snprintf(name, sizeof(name), "default of %s", path);
	if (o->type == TL_OPT_STRLIST || o->type == TL_OPT_LIST) {
		/* Lists are written as YAML flow sequences ("[a, b]") and go through the
		 * same parser as profiles. */
		rc = tl_yaml_parse_string(
		        l->arena, name, o->def, strlen(o->def), yaml_report, l, &n, &np);
		if (rc == -ENOMEM)
			l->nomem = true;
		if (rc != 0 || n == NULL) {
			if (rc == 0)
				report_at(l, NULL, 0, 0, "%s: empty default", name);
			return;
		}
	} else {
		n = tl_ynode_new_map(l->arena, NULL, 0, 0);
		if (n == NULL) {
			l->nomem = true;
			return;
		}
		n->type = TL_YNODE_SCALAR;
		n->value = o->def;
		n->len = strlen(o->def);
		n->file = tl_yarena_strndup(l->arena, name, strlen(name));
		if (n->file == NULL) {
			l->nomem = true;
			return;
		}
	}
	apply_opt(l, o, obj, n, path);
}

static void
apply_defaults(struct loader *l, const struct tl_opt *t, void *obj, const char *path)
{
	const struct tl_opt *o;
	char sub[OPT_PATH];

	for (o = t; o->name != NULL; o++) {
		char *field = (char *)obj + o->offset;

		subpath(sub, path, o->name);
		switch (o->type) {
		case TL_OPT_SECTION:
			apply_defaults(l, o->sub, field, sub);
			continue;
		case TL_OPT_LIST:
		case TL_OPT_STRLIST:
			memset(field, 0, o->size * o->max_items);
			*(uint32_t *)((char *)obj + o->count_offset) = 0;
			break;
		case TL_OPT_STRING:
			memset(field, 0, o->size);
			break;
		case TL_OPT_BOOL:
			*(bool *)field = false;
			break;
		case TL_OPT_ENUM:
			*(int *)field = 0;
			break;
		case TL_OPT_INT:
			*(int64_t *)field = 0;
			break;
		default:
			*(uint64_t *)field = 0;
			break;
		}
		if (o->def != NULL)
			apply_default(l, o, obj, sub);
	}
}

int
tl_opt_defaults(const struct tl_opt *table, void *obj)
{
	struct loader l;
	int rc;

	if (loader_init(&l, NULL) != 0)
		return -ENOMEM;
	apply_defaults(&l, table, obj, "");
	flush_problems(&l);
	rc = l.nomem ? -ENOMEM : l.total ? TL_E_BAD_VALUE : 0;
	loader_fini(&l);
	return rc;
}

/* ---- the extends chain ------------------------------------------------------------ */

static bool
is_regular(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static bool
has_yaml_ext(const char *name)
{
	size_t n = strlen(name);

	return (n > 5 && strcmp(name + n - 5, ".yaml") == 0) ||
	       (n > 4 && strcmp(name + n - 4, ".yml") == 0);
}

/* @dir + "/" + @name (+ ".yaml"), in the arena; "." is left out so messages stay short. */
static char *
join(struct loader *l, const char *dir, const char *name, bool ext)
{
	size_t dl = strlen(dir), nl = strlen(name);
	char *p;

	if (strcmp(dir, ".") == 0)
		dl = 0;
	p = tl_yarena_alloc(l->arena, dl + nl + 8);
	if (p == NULL) {
		l->nomem = true;
		return NULL;
	}
	if (dl > 0) {
		memcpy(p, dir, dl);
		if (dir[dl - 1] != '/')
			p[dl++] = '/';
	}
	memcpy(p + dl, name, nl);
	if (ext)
		memcpy(p + dl + nl, ".yaml", 6);
	return p;
}

/* Try @dir/@name then @dir/@name.yaml. */
static char *
try_dir(struct loader *l, const char *dir, const char *name)
{
	char *p = join(l, dir, name, false);

	if (p != NULL && is_regular(p))
		return p;
	if (has_yaml_ext(name))
		return NULL;
	p = join(l, dir, name, true);
	return p != NULL && is_regular(p) ? p : NULL;
}

static char *
resolve(struct loader *l, const char *from, const struct tl_ynode *ext,
        const char *const *search_dirs)
{
	const char *name = ext->value, *slash = strrchr(from, '/');
	char looked[1024], shown[96];
	const char *dir;
	char *found;
	size_t i;

	if (slash == NULL)
		dir = ".";
	else if (slash == from)
		dir = "/";
	else
		dir = tl_yarena_strndup(l->arena, from, (size_t)(slash - from));
	if (dir == NULL) {
		l->nomem = true;
		return NULL;
	}
	looked[0] = '\0';
	if (name[0] == '/') {
		found = try_dir(l, "", name);
		append_str(looked, sizeof(looked), "no such file, with or without .yaml");
	} else {
		found = try_dir(l, dir, name);
		append_str(looked, sizeof(looked), strcmp(dir, ".") == 0 ? "./" : dir);
		if (strcmp(dir, ".") != 0 && dir[strlen(dir) - 1] != '/')
			append_str(looked, sizeof(looked), "/");
		for (i = 0; found == NULL && search_dirs != NULL && search_dirs[i] != NULL; i++) {
			found = try_dir(l, search_dirs[i], name);
			append_str(looked, sizeof(looked), ", ");
			append_str(looked, sizeof(looked), search_dirs[i]);
		}
	}
	if (found == NULL && !l->nomem) {
		tl_yaml_printable(shown, sizeof(shown), name);
		report_at(l, NODE_LOC(ext, false), "extends: profile '%s' not found (%s%s)", shown,
		        name[0] == '/' ? "" : "looked in ", looked);
	}
	return found;
}

/* "a.yaml -> b.yaml -> a.yaml" for a cycle message. */
static void
chain_text(char *buf, size_t len, const struct loader *l, const char *last)
{
	unsigned i;

	buf[0] = '\0';
	for (i = 0; i < l->n_files; i++) {
		append_str(buf, len, l->files[i]);
		append_str(buf, len, " -> ");
	}
	append_str(buf, len, last);
}

/*
 * Parse @path and every profile it extends into @trees (site first). @return true if the
 * chain is complete and every file is YAML; false after reporting why not.
 */
static bool
load_chain(struct loader *l, const char *path, const char *const *search_dirs,
        struct tl_ynode **trees, unsigned *n_trees)
{
	char *real[MAX_CHAIN] = {NULL};
	const struct tl_ynode *via = NULL;
	struct tl_ynode *root, *ext;
	char chain[2048];
	const char *cur = path;
	bool ok = false;
	unsigned depth, i, np;
	int rc;

	for (depth = 0;; depth++) {
		if (depth == MAX_CHAIN) {
			chain_text(chain, sizeof(chain), l, cur);
			report_at(l, NODE_LOC(via, false),
			        "extends: more than %d profiles in one chain (%s)", MAX_CHAIN,
			        chain);
			goto out;
		}
		real[depth] = realpath(cur, NULL);
		for (i = 0; real[depth] != NULL && i < depth; i++) {
			if (real[i] != NULL && strcmp(real[i], real[depth]) == 0) {
				chain_text(chain, sizeof(chain), l, cur);
				report_at(l, NODE_LOC(via, false), "extends: cycle: %s", chain);
				goto out;
			}
		}
		l->files[l->n_files++] = cur;
		rc = tl_yaml_parse_file(l->arena, cur, yaml_report, l, &root, &np);
		if (rc == -ENOMEM) {
			l->nomem = true;
			goto out;
		}
		if (rc == TL_E_YAML)
			goto out;
		if (rc < 0) {
			if (via != NULL)
				report_at(l, NODE_LOC(via, false), "extends: cannot read %s: %s",
				        cur, strerror(-rc));
			else
				report_at(l, cur, 0, 0, "cannot read: %s",
				        rc == -EFBIG ? "file too large" : strerror(-rc));
			goto out;
		}
		if (root == NULL || (root->type == TL_YNODE_SCALAR && root->null && !root->bad)) {
			root = tl_ynode_new_map(l->arena, cur, 1, 1);
			if (root == NULL) {
				l->nomem = true;
				goto out;
			}
		} else if (root->type != TL_YNODE_MAP) {
			if (!root->bad)
				report_at(l, NODE_LOC(root, false),
				        "the top level of a profile must be a mapping "
				        "(key: value lines), not a %s",
				        tl_ynode_kind(root));
			goto out;
		}
		trees[(*n_trees)++] = root;
		ext = tl_ynode_remove(root, "extends");
		if (ext == NULL)
			break;
		if (ext->bad)
			goto out;
		if (ext->type != TL_YNODE_SCALAR || ext->null || ext->len == 0) {
			report_at(l, NODE_LOC(ext, false),
			        "extends: expected the name of one profile, not %s",
			        ext->type == TL_YNODE_SCALAR ? "an empty value"
			        : ext->type == TL_YNODE_SEQ  ? "a sequence"
			                                     : "a mapping");
			goto out;
		}
		cur = resolve(l, cur, ext, search_dirs);
		if (cur == NULL)
			goto out;
		via = ext;
	}
	ok = true;
out:
	for (i = 0; i < MAX_CHAIN; i++)
		free(real[i]);
	return ok;
}

int
tl_config_load(const char *path, const struct tl_opt *root, void *obj,
        const char *const *search_dirs, FILE *errs, unsigned *n_errors)
{
	struct tl_ynode *trees[MAX_CHAIN], *merged;
	unsigned n_trees = 0, i;
	struct loader l;
	int rc;

	if (n_errors != NULL)
		*n_errors = 0;
	if (loader_init(&l, errs != NULL ? errs : stderr) != 0)
		return -ENOMEM;
	apply_defaults(&l, root, obj, "");
	if (load_chain(&l, path, search_dirs, trees, &n_trees) && !l.nomem) {
		merged = trees[n_trees - 1];
		for (i = n_trees - 1; i-- > 0;) {
			if (tl_yaml_merge(&merged, trees[i]) != 0) {
				l.nomem = true;
				break;
			}
		}
		if (!l.nomem)
			apply_table(&l, root, obj, merged, merged, "", true);
	}
	flush_problems(&l);
	if (n_errors != NULL)
		*n_errors = l.total;
	rc = l.nomem ? -ENOMEM : l.total ? TL_E_CONFIG : 0;
	loader_fini(&l);
	return rc;
}

/* ---- config show ------------------------------------------------------------------ */

/*
 * Plain only when any YAML reader (ours or another) reads the text back unchanged:
 * ASCII, starting with a letter, '_' or '/', no indicator sequence, nothing that reads
 * as null, a boolean or a number. Everything else is double-quoted.
 */
static bool
needs_quotes(const char *s)
{
	static const char *const words[] = {
	        "~", "null", "true", "false", "yes", "no", "on", "off", "y", "n", NULL};
	const unsigned char *p = (const unsigned char *)s;
	size_t i, len = strlen(s);

	if (len == 0 || s[len - 1] == ' ' || s[len - 1] == ':')
		return true;
	if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' || *p == '/'))
		return true;
	for (i = 0; words[i] != NULL; i++)
		if (strcasecmp(s, words[i]) == 0)
			return true;
	for (; *p != '\0'; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		        (*p >= '0' && *p <= '9'))
			continue;
		if (strchr("_./@=+-", *p) != NULL)
			continue;
		if (*p == ':' && p[1] != ' ')
			continue;
		if (*p == ' ' && p[1] != '#')
			continue;
		return true;
	}
	return false;
}

/* Decode one UTF-8 sequence at @p; @return its length, 0 if malformed. */
static size_t
utf8_decode(const unsigned char *p, uint32_t *cp)
{
	size_t n, i;

	if (p[0] < 0xc2 || p[0] > 0xf4)
		return 0;
	n = p[0] >= 0xf0 ? 4 : p[0] >= 0xe0 ? 3 : 2;
	*cp = p[0] & (0x7fu >> n);
	for (i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		*cp = (*cp << 6) | (p[i] & 0x3fu);
	}
	return n;
}

static void
put_str(FILE *out, const char *s)
{
	const unsigned char *p;
	uint32_t cp;
	size_t n;

	if (!needs_quotes(s)) {
		fputs(s, out);
		return;
	}
	fputc('"', out);
	for (p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\') {
			fprintf(out, "\\%c", *p);
		} else if (*p == '\n') {
			fputs("\\n", out);
		} else if (*p == '\t') {
			fputs("\\t", out);
		} else if (*p == '\r') {
			fputs("\\r", out);
		} else if (*p < 0x20 || *p == 0x7f) {
			fprintf(out, "\\x%02x", *p);
		} else if (*p < 0x80) {
			fputc(*p, out);
		} else if ((n = utf8_decode(p, &cp)) == 0) {
			/* Not UTF-8 (only a caller-filled struct can hold this): best effort. */
			fprintf(out, "\\x%02x", *p);
		} else {
			/* YAML reads NEL, LS, PS as line breaks and refuses C1 controls, BOM
			 * and non-characters even inside quotes: escape them by code point. */
			if (cp <= 0x9f || cp == 0x2028 || cp == 0x2029 || cp == 0xfeff ||
			        cp == 0xfffe || cp == 0xffff)
				fprintf(out, "\\u%04x", (unsigned)cp);
			else
				fwrite(p, 1, n, out);
			p += n - 1;
		}
	}
	fputc('"', out);
}

static void
put_scalar(FILE *out, const struct tl_opt *o, const void *obj)
{
	const char *field = (const char *)obj + o->offset;
	char buf[64];
	int k;

	switch (o->type) {
	case TL_OPT_BOOL:
		fputs(*(const bool *)field ? "true" : "false", out);
		break;
	case TL_OPT_UINT:
		fprintf(out, "%" PRIu64, *(const uint64_t *)field);
		break;
	case TL_OPT_INT:
		fprintf(out, "%" PRId64, *(const int64_t *)field);
		break;
	case TL_OPT_SIZE:
		format_size(buf, sizeof(buf), *(const uint64_t *)field);
		fputs(buf, out);
		break;
	case TL_OPT_DURATION:
		format_duration(buf, sizeof(buf), *(const uint64_t *)field);
		fputs(buf, out);
		break;
	case TL_OPT_STRING:
		/* The loader always terminates it; a caller-filled struct might not. */
		if (o->size > 0 && memchr(field, '\0', o->size) != NULL)
			put_str(out, field);
		else
			fputs("\"\"", out);
		break;
	case TL_OPT_ENUM:
		k = *(const int *)field;
		for (int i = 0; o->enums != NULL && o->enums[i] != NULL; i++) {
			if (i == k) {
				put_str(out, o->enums[i]);
				return;
			}
		}
		fprintf(out, "%d", k);
		break;
	default:
		break;
	}
}

static void
show_table(FILE *out, const struct tl_opt *t, const void *obj, int indent, bool dash)
{
	const struct tl_opt *o;
	bool first = true;

	for (o = t; o->name != NULL; o++, first = false) {
		const char *field = (const char *)obj + o->offset;
		uint32_t count = 0, i;

		if (dash && first)
			fprintf(out, "%*s- %s:", indent - 2, "", o->name);
		else
			fprintf(out, "%*s%s:", indent, "", o->name);
		if (o->flags & TL_OPT_F_SECRET) {
			fputs(" \"<secret>\"\n", out);
			continue;
		}
		if (o->type == TL_OPT_LIST || o->type == TL_OPT_STRLIST) {
			memcpy(&count, (const char *)obj + o->count_offset, sizeof(count));
			if (count > o->max_items)
				count = o->max_items;
		}
		switch (o->type) {
		case TL_OPT_SECTION:
			if (o->sub->name == NULL) {
				fputs(" {}\n", out);
				break;
			}
			fputc('\n', out);
			show_table(out, o->sub, field, indent + 2, false);
			break;
		case TL_OPT_STRLIST:
			if (count == 0) {
				fputs(" []\n", out);
				break;
			}
			fputc('\n', out);
			for (i = 0; i < count; i++) {
				const char *item = field + (size_t)i * o->size;

				fprintf(out, "%*s- ", indent + 2, "");
				if (memchr(item, '\0', o->size) != NULL)
					put_str(out, item);
				else
					fputs("\"\"", out);
				fputc('\n', out);
			}
			break;
		case TL_OPT_LIST:
			if (count == 0) {
				fputs(" []\n", out);
				break;
			}
			fputc('\n', out);
			for (i = 0; i < count; i++) {
				if (o->sub->name == NULL)
					fprintf(out, "%*s- {}\n", indent + 2, "");
				else
					show_table(out, o->sub, field + (size_t)i * o->size,
					        indent + 4, true);
			}
			break;
		default:
			fputc(' ', out);
			put_scalar(out, o, obj);
			fputc('\n', out);
			break;
		}
	}
}

int
tl_config_show(FILE *out, const struct tl_opt *root, const void *obj)
{
	if (root->name == NULL)
		fputs("{}\n", out);
	else
		show_table(out, root, obj, 0, false);
	if (fflush(out) != 0 || ferror(out))
		return -EIO;
	return 0;
}
