/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Routing rules.
 *
 * "First match wins" is "the lowest matching rule index wins", which lets the hot path
 * look at fields instead of rules: each kind of rule is indexed by what it reads and
 * every index answers with the lowest rule that matches, so the cost depends on the
 * number of distinct fields, not on the number of rules.
 *
 *  - equals/in: one sorted array per field of (value, lowest rule with that value),
 *    ordered by (length, bytes); a binary search answers in log2(values) comparisons,
 *    most of them a length compare. A sorted array rather than a hash set: no hash to
 *    compute over the event's value, no collisions a hostile producer could aim at, no
 *    load factor to tune, compact and read-only; with at most 256 x 64 values the search
 *    is ~14 comparisons.
 *  - pattern: an array indexed by classify pattern index -> lowest rule, walked over the
 *    at most 16 ids of the classify result.
 *  - matches: every regex of every rule in ONE block-mode Hyperscan database (expression
 *    id = rule index, HS_FLAG_SINGLEMATCH); each field that some matches rule reads is
 *    scanned once with the whole database and the callback keeps rules of that field
 *    only (a slot per field, like tl_classify). A scan is skipped when no matches rule
 *    of that field comes before the best rule already found, and stopped as soon as the
 *    field's first matches rule fires (nothing lower can follow).
 *
 * Escaped strings are decoded into the scratch's buffer (sized for the longest value the
 * extractor lets through for any routed field) before being compared or scanned; see the
 * header for why.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <hs/hs.h>
#include <xxhash.h>

#include "tl_error.h"
#include "tl_json.h"
#include "tl_report.h"
#include "tl_route.h"

/* Room kept at the end of the error buffer for "(N more problems)". */
#define NO_RULE UINT16_MAX

const char *const tl_route_access_names[] = {
        [TL_ROUTE_ACCESS_READ] = "read",
        [TL_ROUTE_ACCESS_WRITE] = "write",
        [TL_ROUTE_ACCESS_MAX] = NULL,
};

/* clang-format off */
static const struct tl_opt rule_opts[] = {
	{.name = "name", .type = TL_OPT_STRING,
		.offset = offsetof(struct tl_route_rule_def, name), .size = TL_ROUTE_NAME_MAX,
		.flags = TL_OPT_F_REQUIRED,
		.desc = "unique name of the rule ([a-z0-9_.-], at most 63 characters)"},
	{.name = "field", .type = TL_OPT_STRING,
		.offset = offsetof(struct tl_route_rule_def, field), .size = TL_SCHEMA_NAME_MAX,
		.desc = "mapped column whose value equals/in/matches test (none with pattern)"},
	{.name = "equals", .type = TL_OPT_STRING,
		.offset = offsetof(struct tl_route_rule_def, equals), .size = TL_ROUTE_VALUE_MAX,
		.desc = "match kind: the value is exactly this (strings compared decoded)"},
	{.name = "in", .type = TL_OPT_STRLIST,
		.offset = offsetof(struct tl_route_rule_def, in), .size = TL_ROUTE_VALUE_MAX,
		.max_items = TL_ROUTE_MAX_IN,
		.count_offset = offsetof(struct tl_route_rule_def, n_in),
		.desc = "match kind: the value is one of these (strings compared decoded)"},
	{.name = "matches", .type = TL_OPT_STRING,
		.offset = offsetof(struct tl_route_rule_def, matches), .size = TL_ROUTE_REGEX_MAX,
		.desc = "match kind: a Hyperscan regex matches within the value (^...$: whole value)"},
	{.name = "pattern", .type = TL_OPT_STRING,
		.offset = offsetof(struct tl_route_rule_def, pattern), .size = TL_CLASSIFY_ID_MAX,
		.desc = "match kind: this classify pattern id matched the event"},
	{.name = "database", .type = TL_OPT_STRING,
		.offset = offsetof(struct tl_route_rule_def, database), .size = TL_ROUTE_IDENT_MAX,
		.flags = TL_OPT_F_REQUIRED,
		.desc = "target ClickHouse database ([A-Za-z0-9_], not starting with a digit)"},
	{.name = "table", .type = TL_OPT_STRING, .def = TL_ROUTE_DEFAULT_TABLE,
		.offset = offsetof(struct tl_route_rule_def, table), .size = TL_ROUTE_IDENT_MAX,
		.desc = "main table in that database; error_events and dead_letter keep their names"},
	{.name = NULL},
};

static const struct tl_opt user_opts[] = {
	{.name = "name", .type = TL_OPT_STRING,
		.offset = offsetof(struct tl_route_user_def, name), .size = TL_ROUTE_NAME_MAX,
		.flags = TL_OPT_F_REQUIRED,
		.desc = "ClickHouse user name ([A-Za-z0-9_], not starting with a digit, not default)"},
	{.name = "password_sha256", .type = TL_OPT_STRING,
		.offset = offsetof(struct tl_route_user_def, password_sha256),
		.size = TL_ROUTE_SHA256_HEX, .flags = TL_OPT_F_SECRET,
		.desc = "SHA-256 of the password, 64 hex digits (one of the three password sources)"},
	{.name = "password_file", .type = TL_OPT_STRING,
		.offset = offsetof(struct tl_route_user_def, password_file),
		.size = TL_ROUTE_PATH_MAX,
		.desc = "file holding the password (trailing newline ignored), hashed when generating"},
	{.name = "password_env", .type = TL_OPT_STRING,
		.offset = offsetof(struct tl_route_user_def, password_env),
		.size = TL_ROUTE_ENV_MAX,
		.desc = "environment variable holding the password, hashed when generating"},
	{.name = "databases", .type = TL_OPT_STRLIST,
		.offset = offsetof(struct tl_route_user_def, databases),
		.size = TL_ROUTE_IDENT_MAX, .max_items = TL_ROUTE_USER_MAX_DBS,
		.count_offset = offsetof(struct tl_route_user_def, n_databases),
		.desc = "databases the user may use: each one a rule or the default route produces"},
	{.name = "networks", .type = TL_OPT_STRLIST, .def = "[\"::/0\"]",
		.offset = offsetof(struct tl_route_user_def, networks),
		.size = TL_ROUTE_NETWORK_MAX, .max_items = TL_ROUTE_MAX_NETWORKS,
		.count_offset = offsetof(struct tl_route_user_def, n_networks),
		.desc = "client addresses allowed to log in (IP or CIDR; ::/0: anywhere)"},
	{.name = "access", .type = TL_OPT_ENUM, .def = "read",
		.offset = offsetof(struct tl_route_user_def, access),
		.enums = tl_route_access_names,
		.desc = "read: SELECT only (read-only profile); write: INSERT and SELECT"},
	{.name = NULL},
};

const struct tl_opt tl_route_opts[] = {
	{.name = "rules", .type = TL_OPT_LIST,
		.offset = offsetof(struct tl_route_conf, rules),
		.size = sizeof(struct tl_route_rule_def), .sub = rule_opts,
		.count_offset = offsetof(struct tl_route_conf, n_rules),
		.max_items = TL_ROUTE_MAX_RULES, .flags = TL_OPT_F_LOC,
		.loc_offset = offsetof(struct tl_route_rule_def, loc),
		.desc = "ordered routing rules: the first that matches chooses the database; "
			"unmatched events go to uplink.database"},
	{.name = "users", .type = TL_OPT_LIST,
		.offset = offsetof(struct tl_route_conf, users),
		.size = sizeof(struct tl_route_user_def), .sub = user_opts,
		.count_offset = offsetof(struct tl_route_conf, n_users),
		.max_items = TL_ROUTE_MAX_USERS, .flags = TL_OPT_F_LOC,
		.loc_offset = offsetof(struct tl_route_user_def, loc),
		.desc = "ClickHouse users of the routed databases (tapline schema users)"},
	{.name = NULL},
};
/* clang-format on */

/* A value of an equals/in rule; points into the table's string block. */
struct kv {
	const uint8_t *val;
	uint32_t len;
	uint16_t rule;
};

/* A field read by equals/in rules. */
struct eq_field {
	struct kv *kv; /* sorted by (len, bytes), one entry per distinct value */
	uint32_t n;
	int16_t col;
	uint16_t min_rule; /* lowest equals/in rule on this field */
};

/* A field read by matches rules (its slot is its index in the table's re[]). */
struct re_field {
	int16_t col;
	uint16_t min_rule; /* lowest matches rule on this field */
};

struct tl_route_table {
	hs_database_t *hs; /* NULL when no rule uses matches */
	uint32_t n_rules;
	uint32_t n_routes;
	uint32_t n_eq;
	uint32_t n_re;
	uint32_t n_pat;       /* entries of pat_rule (classify patterns) */
	uint16_t min_pat;     /* lowest pattern rule, NO_RULE if none */
	size_t buf_len;       /* decode buffer of a scratch */
	uint16_t *rule_route; /* [n_rules] */
	uint8_t *rule_slot;   /* [n_rules] matches rules: their field's slot */
	uint16_t *pat_rule;   /* [n_pat] lowest rule per classify pattern, NO_RULE */
	struct eq_field eq[TL_SCHEMA_MAX_COLS];
	struct re_field re[TL_SCHEMA_MAX_COLS];
	struct kv *kv_all; /* every eq_field's entries, one block */
	uint8_t *values;   /* the literal bytes kv points to */
	char (*route_db)[TL_ROUTE_IDENT_MAX];
	char (*route_tbl)[TL_ROUTE_IDENT_MAX];
	char (*rule_name)[TL_ROUTE_NAME_MAX];
};

struct tl_route_scratch {
	hs_scratch_t *hs;
	uint8_t *buf; /* decoded value */
	size_t buf_len;
	uint64_t failures;
} __attribute__((aligned(64)));

/* ---- problem reporting ------------------------------------------------------------ */

/* One problem about the element routing @p what '@p name' written at @p loc (@p what
 * NULL: a problem of the section as a whole). */
static void __attribute__((format(printf, 5, 6))) problem(struct tl_report *r, const char *what,
        const char *name, const struct tl_opt_loc *loc, const char *fmt, ...)
{
	char kind[32];
	va_list ap;

	if (what != NULL)
		snprintf(kind, sizeof(kind), "routing %s", what);
	va_start(ap, fmt);
	tl_report_vadd(r, what ? kind : NULL, name, loc, fmt, ap);
	va_end(ap);
}

#define rule_problem(r, d, ...) problem((r), "rule", (d)->name, &(d)->loc, __VA_ARGS__)
#define user_problem(r, u, ...) problem((r), "user", (u)->name, &(u)->loc, __VA_ARGS__)

/* ---- names ------------------------------------------------------------------------ */

static bool
valid_rule_name(const char *s)
{
	size_t n = 0;

	for (; s[n] != '\0'; n++) {
		char c = s[n];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
		            c == '-'))
			return false;
	}
	return n >= 1 && n <= TL_ROUTE_NAME_MAX - 1;
}

int
tl_route_ident_valid(const char *name)
{
	size_t n;

	if (name == NULL || name[0] == '\0' || (name[0] >= '0' && name[0] <= '9'))
		return 0;
	for (n = 0; name[n] != '\0'; n++) {
		char c = name[n];

		if (n >= TL_ROUTE_IDENT_MAX - 1)
			return 0;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		            c == '_'))
			return 0;
	}
	return 1;
}

int
tl_route_user_name_valid(const char *name)
{
	return tl_route_ident_valid(name) && strcmp(name, "default") != 0;
}

static bool
reserved_database(const char *db)
{
	return strcmp(db, "system") == 0 || strcasecmp(db, "information_schema") == 0;
}

static bool
reserved_table(const char *t)
{
	return strcmp(t, "error_events") == 0 || strcmp(t, "dead_letter") == 0;
}

static bool
valid_hex64(const char *s)
{
	size_t n = 0;

	for (; s[n] != '\0'; n++)
		if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f') ||
		            (s[n] >= 'A' && s[n] <= 'F')))
			return false;
	return n == 64;
}

int
tl_route_network_valid(const char *s)
{
	char addr[TL_ROUTE_NETWORK_MAX];
	const char *slash = s ? strchr(s, '/') : NULL;
	size_t alen;
	unsigned char bin[16];
	bool v6;
	unsigned long prefix = 0;
	char *end;

	if (s == NULL)
		return 0;
	alen = slash ? (size_t)(slash - s) : strlen(s);
	if (alen == 0 || alen >= sizeof(addr))
		return 0;
	memcpy(addr, s, alen);
	addr[alen] = '\0';
	v6 = strchr(addr, ':') != NULL;
	if (inet_pton(v6 ? AF_INET6 : AF_INET, addr, bin) != 1)
		return 0;
	if (slash == NULL)
		return 1;
	if (slash[1] < '0' || slash[1] > '9' || strlen(slash + 1) > 3)
		return 0;
	prefix = strtoul(slash + 1, &end, 10);
	return *end == '\0' && prefix <= (v6 ? 128u : 32u);
}

/* "query_id, event_type, ...": the columns a rule may read, for messages. */
static void
column_list(char *buf, size_t len, const struct tl_schema *schema)
{
	size_t o = 0;

	buf[0] = '\0';
	for (uint32_t i = 0; i < tl_schema_n_cols(schema) && o < len; i++)
		o += (size_t)snprintf(
		        buf + o, len - o, "%s%s", i ? ", " : "", tl_schema_col(schema, i)->name);
}

/* ---- build ------------------------------------------------------------------------ */

enum kind { K_EQUALS, K_IN, K_MATCHES, K_PATTERN, K_MAX };
static const char *const kind_names[K_MAX] = {"equals", "in", "matches", "pattern"};

/* What one rule resolved to. */
struct resolved {
	int kind; /* enum kind, -1 if invalid */
	int col;  /* column, -1 for pattern */
	int pat;  /* classify pattern index (pattern rules) */
};

static int
rule_kind(struct tl_report *r, const struct tl_route_rule_def *d)
{
	bool set[K_MAX] = {
	        d->equals[0] != '\0', d->n_in > 0, d->matches[0] != '\0', d->pattern[0] != '\0'};
	char which[64] = "";
	int n = 0, k = -1;

	for (int i = 0; i < K_MAX; i++) {
		if (!set[i])
			continue;
		snprintf(which + strlen(which), sizeof(which) - strlen(which), "%s%s",
		        n ? " and " : "", kind_names[i]);
		n++;
		k = i;
	}
	if (n == 0) {
		rule_problem(r, d, "no match kind: set one of equals, in, matches, pattern");
		return -1;
	}
	if (n > 1) {
		rule_problem(r, d,
		        "set only one of equals, in, matches, pattern (this rule sets %s)", which);
		return -1;
	}
	return k;
}

static void
validate_rule(struct tl_report *r, const struct tl_route_conf *conf, uint32_t i,
        const struct tl_schema *schema, const struct tl_classify_db *classify, struct resolved *out)
{
	const struct tl_route_rule_def *d = &conf->rules[i];
	char shown[160], cols[1024];
	bool ok = true;

	out->kind = -1;
	out->col = -1;
	out->pat = -1;
	if (!valid_rule_name(d->name))
		rule_problem(r, d, "name must be 1 to 63 characters of a-z, 0-9, '_', '.', '-'");
	for (uint32_t j = 0; j < i; j++) {
		if (strcmp(conf->rules[j].name, d->name) != 0)
			continue;
		if (conf->rules[j].loc.line != 0)
			rule_problem(r, d, "duplicate name (first defined at %s:%u)",
			        conf->rules[j].loc.file, conf->rules[j].loc.line);
		else
			rule_problem(r, d, "duplicate name (also rule %u)", j);
		break;
	}
	tl_report_printable(shown, sizeof(shown), d->database);
	if (!tl_route_ident_valid(d->database)) {
		rule_problem(r, d,
		        "database '%s' is not a valid name: 1 to 63 letters, digits or '_', not "
		        "starting with a digit",
		        shown);
		ok = false;
	} else if (reserved_database(d->database)) {
		rule_problem(r, d, "database '%s' is reserved by ClickHouse", shown);
		ok = false;
	}
	tl_report_printable(shown, sizeof(shown), d->table);
	if (!tl_route_ident_valid(d->table)) {
		rule_problem(r, d,
		        "table '%s' is not a valid name: 1 to 63 letters, digits or '_', not "
		        "starting with a digit",
		        shown);
		ok = false;
	} else if (reserved_table(d->table)) {
		rule_problem(r, d,
		        "table '%s' is reserved: error_events and dead_letter keep their names in "
		        "every database",
		        shown);
		ok = false;
	}
	for (uint32_t v = 0; v < d->n_in && v < TL_ROUTE_MAX_IN; v++) {
		if (d->in[v][0] == '\0') {
			rule_problem(r, d, "in: value %u is empty (an empty string never matches)",
			        v + 1);
			ok = false;
		}
	}
	if (d->n_in > TL_ROUTE_MAX_IN) {
		rule_problem(r, d, "in: more than %d values", TL_ROUTE_MAX_IN);
		ok = false;
	}
	out->kind = rule_kind(r, d);
	if (out->kind < 0)
		return;
	if (out->kind == K_PATTERN) {
		tl_report_printable(shown, sizeof(shown), d->pattern);
		if (d->field[0] != '\0') {
			rule_problem(r, d,
			        "field has no meaning with pattern (the pattern's own fields are "
			        "scanned): remove it");
			ok = false;
		}
		if (classify == NULL) {
			rule_problem(r, d,
			        "pattern '%s': no classify database to resolve pattern ids against",
			        shown);
			ok = false;
		} else if ((out->pat = tl_classify_db_find(classify, d->pattern)) < 0) {
			rule_problem(r, d, "unknown classify pattern id '%s'", shown);
			ok = false;
		}
	} else if (d->field[0] == '\0') {
		rule_problem(r, d, "field is required with %s", kind_names[out->kind]);
		ok = false;
	} else if ((out->col = tl_schema_col_index(schema, d->field)) < 0) {
		tl_report_printable(shown, sizeof(shown), d->field);
		column_list(cols, sizeof(cols), schema);
		rule_problem(r, d, "unknown field '%s' (valid: %s)", shown, cols);
		ok = false;
	}
	if (!ok)
		out->kind = -1;
}

/* Is @p db produced by the default route or a rule? */
static bool
produced(const struct tl_route_conf *conf, const char *defdb, const char *db)
{
	if (strcmp(defdb, db) == 0)
		return true;
	for (uint32_t i = 0; i < conf->n_rules; i++)
		if (strcmp(conf->rules[i].database, db) == 0)
			return true;
	return false;
}

/* Does @p u list its database @p d earlier too? */
static bool
listed(const struct tl_route_user_def *u, uint32_t d)
{
	for (uint32_t k = 0; k < d; k++)
		if (strcmp(u->databases[k], u->databases[d]) == 0)
			return true;
	return false;
}

static void
validate_user(struct tl_report *r, const struct tl_route_conf *conf, const char *defdb, uint32_t i)
{
	const struct tl_route_user_def *u = &conf->users[i];
	char shown[160];
	int sources = (u->password_sha256[0] != '\0') + (u->password_file[0] != '\0') +
	              (u->password_env[0] != '\0');

	if (!tl_route_user_name_valid(u->name))
		user_problem(r, u,
		        strcmp(u->name, "default") == 0
		                ? "name 'default' is the server's own user: choose another"
		                : "name must be 1 to 63 letters, digits or '_', not starting "
		                  "with a digit");
	for (uint32_t j = 0; j < i; j++) {
		if (strcmp(conf->users[j].name, u->name) != 0)
			continue;
		if (conf->users[j].loc.line != 0)
			user_problem(r, u, "duplicate name (first defined at %s:%u)",
			        conf->users[j].loc.file, conf->users[j].loc.line);
		else
			user_problem(r, u, "duplicate name (also user %u)", j);
		break;
	}
	if (sources == 0)
		user_problem(
		        r, u, "no password: set password_sha256, password_file or password_env");
	else if (sources > 1)
		user_problem(
		        r, u, "set only one of password_sha256, password_file and password_env");
	if (u->password_sha256[0] != '\0' && !valid_hex64(u->password_sha256))
		user_problem(r, u,
		        "password_sha256 must be 64 hex digits (the SHA-256 of the "
		        "password, e.g. from sha256sum)");
	if (u->n_databases == 0)
		user_problem(r, u, "no databases: list the databases the user may use");
	for (uint32_t d = 0; d < u->n_databases && d < TL_ROUTE_USER_MAX_DBS; d++) {
		tl_report_printable(shown, sizeof(shown), u->databases[d]);
		if (!tl_route_ident_valid(u->databases[d]))
			user_problem(r, u, "database '%s' is not a valid name", shown);
		else if (d > 0 && listed(u, d))
			user_problem(r, u, "database '%s' is listed twice", shown);
		else if (!produced(conf, defdb, u->databases[d]))
			user_problem(r, u,
			        "database '%s' is produced by no rule and is not the default "
			        "database '%s'",
			        shown, defdb);
	}
	for (uint32_t n = 0; n < u->n_networks && n < TL_ROUTE_MAX_NETWORKS; n++) {
		if (tl_route_network_valid(u->networks[n]))
			continue;
		tl_report_printable(shown, sizeof(shown), u->networks[n]);
		user_problem(r, u, "network '%s' is not an IP address or CIDR block", shown);
	}
	if (u->access < 0 || u->access >= TL_ROUTE_ACCESS_MAX)
		user_problem(r, u, "access %d out of range", u->access);
}

static int
kv_cmp(const void *a, const void *b)
{
	const struct kv *x = a, *y = b;
	int c;

	if (x->len != y->len)
		return x->len < y->len ? -1 : 1;
	c = memcmp(x->val, y->val, x->len);
	if (c != 0)
		return c;
	return x->rule < y->rule ? -1 : x->rule > y->rule;
}

static int
eq_field_cmp(const void *a, const void *b)
{
	const struct eq_field *x = a, *y = b;

	return x->min_rule < y->min_rule ? -1 : x->min_rule > y->min_rule;
}

/* The routes: 0 = default, then each distinct (database, table) in rule order. */
static int
make_routes(struct tl_route_table *t, const struct tl_route_conf *conf, const char *defdb)
{
	uint32_t n = conf->n_rules;

	t->route_db = calloc(n + 1, sizeof(*t->route_db));
	t->route_tbl = calloc(n + 1, sizeof(*t->route_tbl));
	t->rule_route = calloc(n ? n : 1, sizeof(*t->rule_route));
	t->rule_name = calloc(n ? n : 1, sizeof(*t->rule_name));
	if (t->route_db == NULL || t->route_tbl == NULL || t->rule_route == NULL ||
	        t->rule_name == NULL)
		return -ENOMEM;
	snprintf(t->route_db[0], TL_ROUTE_IDENT_MAX, "%s", defdb);
	snprintf(t->route_tbl[0], TL_ROUTE_IDENT_MAX, "%s", TL_ROUTE_DEFAULT_TABLE);
	t->n_routes = 1;
	for (uint32_t i = 0; i < n; i++) {
		const struct tl_route_rule_def *d = &conf->rules[i];
		uint32_t k;

		snprintf(t->rule_name[i], TL_ROUTE_NAME_MAX, "%s", d->name);
		for (k = 0; k < t->n_routes; k++)
			if (strcmp(t->route_db[k], d->database) == 0 &&
			        strcmp(t->route_tbl[k], d->table) == 0)
				break;
		if (k == t->n_routes) {
			snprintf(t->route_db[k], TL_ROUTE_IDENT_MAX, "%s", d->database);
			snprintf(t->route_tbl[k], TL_ROUTE_IDENT_MAX, "%s", d->table);
			t->n_routes++;
		}
		t->rule_route[i] = (uint16_t)k;
	}
	return 0;
}

/* The equals/in index: one sorted, de-duplicated array per field. */
static int
make_eq(struct tl_route_table *t, const struct tl_route_conf *conf, const struct resolved *res,
        const struct tl_schema *schema)
{
	const struct tl_limits *lim = tl_schema_limits(schema);
	size_t n_vals = 0, bytes = 0, o = 0, k = 0;
	int slot_of[TL_SCHEMA_MAX_COLS];

	for (uint32_t i = 0; i < conf->n_rules; i++) {
		const struct tl_route_rule_def *d = &conf->rules[i];

		if (res[i].kind == K_EQUALS) {
			n_vals++;
			bytes += strlen(d->equals);
		} else if (res[i].kind == K_IN) {
			for (uint32_t v = 0; v < d->n_in; v++)
				bytes += strlen(d->in[v]);
			n_vals += d->n_in;
		}
	}
	if (n_vals == 0)
		return 0;
	t->kv_all = calloc(n_vals, sizeof(*t->kv_all));
	t->values = malloc(bytes ? bytes : 1);
	if (t->kv_all == NULL || t->values == NULL)
		return -ENOMEM;
	for (int c = 0; c < TL_SCHEMA_MAX_COLS; c++)
		slot_of[c] = -1;
	/* Count values per field first so each field's entries are contiguous. */
	for (uint32_t i = 0; i < conf->n_rules; i++) {
		int kd = res[i].kind, c = res[i].col;

		if (kd != K_EQUALS && kd != K_IN)
			continue;
		if (slot_of[c] < 0) {
			const struct tl_col_def *cd = tl_schema_col(schema, (uint32_t)c);
			size_t max = cd->max_len ? cd->max_len : lim->max_string;

			slot_of[c] = (int)t->n_eq;
			t->eq[t->n_eq].col = (int16_t)c;
			t->eq[t->n_eq].min_rule = (uint16_t)i;
			t->n_eq++;
			if (max > t->buf_len)
				t->buf_len = max;
		}
		t->eq[slot_of[c]].n += kd == K_EQUALS ? 1 : conf->rules[i].n_in;
	}
	for (uint32_t f = 0; f < t->n_eq; f++) {
		t->eq[f].kv = t->kv_all + k;
		k += t->eq[f].n;
		t->eq[f].n = 0;
	}
	for (uint32_t i = 0; i < conf->n_rules; i++) {
		const struct tl_route_rule_def *d = &conf->rules[i];
		int kd = res[i].kind;
		uint32_t nv;

		if (kd != K_EQUALS && kd != K_IN)
			continue;
		nv = kd == K_EQUALS ? 1 : d->n_in;
		for (uint32_t v = 0; v < nv; v++) {
			const char *s = kd == K_EQUALS ? d->equals : d->in[v];
			struct eq_field *f = &t->eq[slot_of[res[i].col]];
			size_t len = strlen(s);

			memcpy(t->values + o, s, len);
			f->kv[f->n].val = t->values + o;
			f->kv[f->n].len = (uint32_t)len;
			f->kv[f->n].rule = (uint16_t)i;
			f->n++;
			o += len;
		}
	}
	for (uint32_t fi = 0; fi < t->n_eq; fi++) {
		struct eq_field *f = &t->eq[fi];
		uint32_t w = 0;

		/* Sorted by (len, bytes, rule): the first of equal values has the lowest
		 * rule, which is the one that must win. */
		qsort(f->kv, f->n, sizeof(*f->kv), kv_cmp);
		for (uint32_t r = 0; r < f->n; r++)
			if (w == 0 || f->kv[r].len != f->kv[w - 1].len ||
			        memcmp(f->kv[r].val, f->kv[w - 1].val, f->kv[r].len) != 0)
				f->kv[w++] = f->kv[r];
		f->n = w;
	}
	/* Fields whose first rule comes early are looked up first: they prune most. */
	qsort(t->eq, t->n_eq, sizeof(t->eq[0]), eq_field_cmp);
	return 0;
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
 * The matches index: field slots and one Hyperscan database of every regex. Each regex
 * is first checked alone (hs_expression_info) so an operator sees every bad one at once,
 * including those that match the empty string (which would route every event whose
 * field is present: Hyperscan only refuses them when compiling, one at a time); the
 * compile itself can then only fail on the set as a whole.
 */
static int
make_re(struct tl_report *r, struct tl_route_table *t, const struct tl_route_conf *conf,
        const struct resolved *res, const struct tl_schema *schema)
{
	const struct tl_limits *lim = tl_schema_limits(schema);
	const char **expr = NULL;
	unsigned *flags = NULL, *ids = NULL;
	hs_compile_error_t *cerr = NULL;
	uint32_t n = 0;
	int slot_of[TL_SCHEMA_MAX_COLS];
	hs_error_t e;
	int rc = 0;

	for (int c = 0; c < TL_SCHEMA_MAX_COLS; c++)
		slot_of[c] = -1;
	for (uint32_t i = 0; i < conf->n_rules; i++) {
		int c = res[i].col;

		if (res[i].kind != K_MATCHES)
			continue;
		n++;
		if (slot_of[c] < 0) {
			const struct tl_col_def *cd = tl_schema_col(schema, (uint32_t)c);
			size_t max = cd->max_len ? cd->max_len : lim->max_string;

			slot_of[c] = (int)t->n_re;
			t->re[t->n_re].col = (int16_t)c;
			t->re[t->n_re].min_rule = (uint16_t)i;
			t->n_re++;
			if (max > t->buf_len)
				t->buf_len = max;
		}
		t->rule_slot[i] = (uint8_t)slot_of[c];
	}
	if (n == 0)
		return 0;
	if (hs_valid_platform() != HS_SUCCESS)
		return -ENOTSUP;
	expr = calloc(n, sizeof(*expr));
	flags = calloc(n, sizeof(*flags));
	ids = calloc(n, sizeof(*ids));
	if (expr == NULL || flags == NULL || ids == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	n = 0;
	for (uint32_t i = 0; i < conf->n_rules; i++) {
		if (res[i].kind != K_MATCHES)
			continue;
		expr[n] = conf->rules[i].matches;
		flags[n] = HS_FLAG_SINGLEMATCH;
		ids[n] = i;
		n++;
	}
	for (uint32_t k = 0; k < n; k++) {
		const struct tl_route_rule_def *d = &conf->rules[ids[k]];
		hs_expr_info_t *info = NULL;
		hs_compile_error_t *ierr = NULL;

		if (hs_expression_info(expr[k], flags[k], &info, &ierr) != HS_SUCCESS) {
			rule_problem(r, d, "matches does not compile: %s",
			        ierr != NULL ? ierr->message : "Hyperscan error");
			rc = TL_E_CONFIG;
		} else if (info != NULL && info->min_width == 0) {
			rule_problem(r, d,
			        "matches can match the empty string: it would match every value");
			rc = TL_E_CONFIG;
		}
		free(info);
		hs_free_compile_error(ierr);
	}
	if (rc != 0)
		goto out;
	e = hs_compile_multi(expr, flags, ids, n, HS_MODE_BLOCK, NULL, &t->hs, &cerr);
	if (e == HS_SUCCESS)
		goto out;
	if (e != HS_COMPILER_ERROR || cerr == NULL) {
		rc = hs_errno(e);
		goto out;
	}
	rc = TL_E_CONFIG;
	if (cerr->expression >= 0 && (uint32_t)cerr->expression < n)
		rule_problem(r, &conf->rules[ids[cerr->expression]], "matches does not compile: %s",
		        cerr->message);
	else
		problem(r, NULL, NULL, NULL, "routing: the %u regexes do not compile together: %s",
		        n, cerr->message);
out:
	hs_free_compile_error(cerr);
	free(expr);
	free(flags);
	free(ids);
	return rc;
}

static int
make_pat(struct tl_route_table *t, const struct tl_route_conf *conf, const struct resolved *res,
        const struct tl_classify_db *classify)
{
	t->min_pat = NO_RULE;
	if (classify == NULL)
		return 0;
	for (uint32_t i = 0; i < conf->n_rules; i++) {
		if (res[i].kind != K_PATTERN)
			continue;
		if (t->pat_rule == NULL) {
			t->n_pat = tl_classify_db_count(classify);
			t->pat_rule = malloc(t->n_pat * sizeof(*t->pat_rule));
			if (t->pat_rule == NULL)
				return -ENOMEM;
			for (uint32_t p = 0; p < t->n_pat; p++)
				t->pat_rule[p] = NO_RULE;
			t->min_pat = (uint16_t)i;
		}
		if (t->pat_rule[res[i].pat] == NO_RULE)
			t->pat_rule[res[i].pat] = (uint16_t)i;
	}
	return 0;
}

int
tl_route_build(const struct tl_route_conf *conf, const char *defdb,
        const struct tl_schema *schema, const struct tl_classify_db *classify,
        struct tl_route_table **out, char *err, size_t errlen)
{
	struct tl_report r = {.buf = err, .len = errlen};
	struct tl_route_table *t = NULL;
	struct resolved *res = NULL;
	char shown[160];
	uint32_t n;
	int rc;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (out == NULL || conf == NULL || defdb == NULL || schema == NULL)
		return -EINVAL;
	*out = NULL;
	n = conf->n_rules;
	if (n > TL_ROUTE_MAX_RULES || conf->n_users > TL_ROUTE_MAX_USERS) {
		problem(&r, NULL, NULL, NULL, "routing: %u rules and %u users, at most %d and %d",
		        n, conf->n_users, TL_ROUTE_MAX_RULES, TL_ROUTE_MAX_USERS);
		tl_report_finish(&r);
		return TL_E_CONFIG;
	}
	if (!tl_route_ident_valid(defdb)) {
		tl_report_printable(shown, sizeof(shown), defdb);
		problem(&r, NULL, NULL, NULL,
		        "routing: the default database '%s' (uplink.database) is not a valid name",
		        shown);
	}
	res = calloc(n ? n : 1, sizeof(*res));
	t = calloc(1, sizeof(*t));
	rc = -ENOMEM;
	if (res == NULL || t == NULL)
		goto fail;
	t->n_rules = n;
	t->rule_slot = calloc(n ? n : 1, sizeof(*t->rule_slot));
	if (t->rule_slot == NULL)
		goto fail;
	for (uint32_t i = 0; i < n; i++)
		validate_rule(&r, conf, i, schema, classify, &res[i]);
	for (uint32_t i = 0; i < conf->n_users; i++)
		validate_user(&r, conf, defdb, i);
	rc = TL_E_CONFIG;
	if (r.n > 0)
		goto fail;
	if ((rc = make_routes(t, conf, defdb)) < 0 || (rc = make_eq(t, conf, res, schema)) < 0 ||
	        (rc = make_pat(t, conf, res, classify)) < 0 ||
	        (rc = make_re(&r, t, conf, res, schema)) != 0)
		goto fail;
	free(res);
	*out = t;
	return 0;
fail:
	tl_report_finish(&r);
	free(res);
	tl_route_table_free(t);
	return rc;
}

void
tl_route_table_free(struct tl_route_table *t)
{
	if (t == NULL)
		return;
	hs_free_database(t->hs);
	free(t->rule_route);
	free(t->rule_slot);
	free(t->pat_rule);
	free(t->kv_all);
	free(t->values);
	free(t->route_db);
	free(t->route_tbl);
	free(t->rule_name);
	free(t);
}

int
tl_route_scratch_alloc(const struct tl_route_table *t, struct tl_route_scratch **out)
{
	struct tl_route_scratch *s;
	hs_error_t e;

	if (out == NULL)
		return -EINVAL;
	*out = NULL;
	if (t == NULL)
		return -EINVAL;
	s = aligned_alloc(64, sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	memset(s, 0, sizeof(*s));
	s->buf_len = t->buf_len;
	if (s->buf_len > 0) {
		s->buf = malloc(s->buf_len);
		if (s->buf == NULL) {
			free(s);
			return -ENOMEM;
		}
	}
	if (t->hs != NULL) {
		e = hs_alloc_scratch(t->hs, &s->hs);
		if (e != HS_SUCCESS) {
			free(s->buf);
			free(s);
			return hs_errno(e);
		}
	}
	*out = s;
	return 0;
}

void
tl_route_scratch_free(struct tl_route_scratch *s)
{
	if (s == NULL)
		return;
	hs_free_scratch(s->hs);
	free(s->buf);
	free(s);
}

/* ---- hot path --------------------------------------------------------------------- */

/*
 * The bytes rules compare for column @p col of @p ev: decoded into @p s->buf when the
 * value is an escaped string. @return NULL if the value is absent, null, empty, or too
 * long to have come from the extractor (it cannot fit the buffer).
 */
static inline const uint8_t *
value_of(struct tl_route_scratch *s, const struct tl_event *ev, int col, uint32_t *len)
{
	const struct tl_value *v = &ev->col[col];

	if (v->kind == TL_VAL_ABSENT || v->kind == TL_VAL_NULL || v->ptr == NULL || v->len == 0)
		return NULL;
	if (v->kind == TL_VAL_STRING && v->escaped) {
		if (__builtin_expect(v->len > s->buf_len, 0))
			return NULL;
		*len = (uint32_t)tl_json_unescape(v->ptr, v->len, s->buf);
		return *len > 0 ? s->buf : NULL;
	}
	*len = v->len;
	return v->ptr;
}

static inline uint16_t
eq_lookup(const struct eq_field *f, const uint8_t *p, uint32_t len)
{
	uint32_t lo = 0, hi = f->n;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		const struct kv *k = &f->kv[mid];
		int c = k->len != len ? (k->len < len ? -1 : 1) : memcmp(k->val, p, len);

		if (c == 0)
			return k->rule;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NO_RULE;
}

struct scan_ctx {
	const uint8_t *rule_slot;
	uint32_t slot;
	uint32_t best;
	uint32_t floor; /* the field's first matches rule: nothing lower can fire */
};

static int
on_match(unsigned int id, unsigned long long from, unsigned long long to, unsigned int flags,
        void *arg)
{
	struct scan_ctx *c = arg;

	(void)from;
	(void)to;
	(void)flags;
	if (c->rule_slot[id] != c->slot || id >= c->best)
		return 0;
	c->best = id;
	return id == c->floor; /* non-zero stops the scan: nothing can beat it */
}

uint16_t
tl_route_event(const struct tl_route_table *t, struct tl_route_scratch *s,
        const struct tl_event *ev, const struct tl_classify_result *cr)
{
	struct scan_ctx ctx = {.rule_slot = t->rule_slot};
	uint32_t best = NO_RULE;
	const uint8_t *p;
	uint32_t len = 0;

	for (uint32_t f = 0; f < t->n_eq; f++) {
		uint16_t r;

		/* Sorted by first rule: once one cannot win, no later one can. */
		if (t->eq[f].min_rule >= best)
			break;
		p = value_of(s, ev, t->eq[f].col, &len);
		if (p == NULL)
			continue;
		r = eq_lookup(&t->eq[f], p, len);
		if (r < best)
			best = r;
	}
	if (cr != NULL && t->min_pat < best) {
		for (uint32_t i = 0; i < cr->n && i < TL_CLASSIFY_MAX_MATCHES; i++) {
			uint16_t id = cr->ids[i];

			if (id < t->n_pat && t->pat_rule[id] < best)
				best = t->pat_rule[id];
		}
	}
	for (uint32_t f = 0; f < t->n_re; f++) {
		hs_error_t e;

		if (t->re[f].min_rule >= best)
			continue;
		p = value_of(s, ev, t->re[f].col, &len);
		if (p == NULL)
			continue;
		ctx.slot = f;
		ctx.best = best;
		ctx.floor = t->re[f].min_rule;
		e = hs_scan(t->hs, (const char *)p, len, 0, s->hs, on_match, &ctx);
		if (__builtin_expect(e != HS_SUCCESS && e != HS_SCAN_TERMINATED, 0)) {
			s->failures++;
			continue;
		}
		best = ctx.best;
	}
	return best == NO_RULE ? 0 : t->rule_route[best];
}

/* ---- accessors -------------------------------------------------------------------- */

uint64_t
tl_route_scratch_failures(const struct tl_route_scratch *s)
{
	return s->failures;
}

uint32_t
tl_route_count(const struct tl_route_table *t)
{
	return t->n_routes;
}

const char *
tl_route_database(const struct tl_route_table *t, uint32_t i)
{
	return i < t->n_routes ? t->route_db[i] : NULL;
}

const char *
tl_route_main_table(const struct tl_route_table *t, uint32_t i)
{
	return i < t->n_routes ? t->route_tbl[i] : NULL;
}

uint32_t
tl_route_rule_count(const struct tl_route_table *t)
{
	return t->n_rules;
}

const char *
tl_route_rule_name(const struct tl_route_table *t, uint32_t i)
{
	return i < t->n_rules ? t->rule_name[i] : NULL;
}

uint16_t
tl_route_rule_route(const struct tl_route_table *t, uint32_t i)
{
	return i < t->n_rules ? t->rule_route[i] : TL_ROUTE_NONE;
}

/* ---- route sets ------------------------------------------------------------------------ */

uint32_t
tl_route_id(const char *database, const char *table)
{
	char key[2 * TL_ROUTE_IDENT_MAX + 2];
	int n = snprintf(key, sizeof(key), "%s.%s", database ? database : "", table ? table : "");
	uint32_t h = XXH32(key, n < 0 ? 0 : (size_t)n < sizeof(key) ? (size_t)n : sizeof(key) - 1, 0);

	return h ? h : 1;
}

void
tl_route_set_free(struct tl_route_set *set)
{
	if (set == NULL)
		return;
	for (unsigned w = 0; w < set->n_workers; w++)
		tl_route_scratch_free(set->scratch[w]);
	tl_route_table_free(set->table);
	free(set);
}

int
tl_route_set_build(const struct tl_route_conf *conf, const char *defdb,
        const struct tl_schema *schema, const struct tl_classify_db *cdb, unsigned n_workers,
        struct tl_route_set **out, char *err, size_t errlen)
{
	struct tl_route_set *set;
	int rc;

	if (out == NULL)
		return -EINVAL;
	*out = NULL;
	if (n_workers == 0 || n_workers > TL_ROUTE_MAX_WORKERS)
		return -EINVAL;
	if ((set = calloc(1, sizeof(*set))) == NULL)
		return -ENOMEM;
	rc = tl_route_build(conf, defdb, schema, cdb, &set->table, err, errlen);
	for (unsigned w = 0; rc == 0 && w < n_workers; w++) {
		rc = tl_route_scratch_alloc(set->table, &set->scratch[w]);
		set->n_workers = w + (rc == 0);
	}
	if (rc != 0) {
		tl_route_set_free(set);
		return rc;
	}
	for (uint32_t i = 0; i < tl_route_count(set->table); i++)
		set->id[i] = i == 0 ? 0
		                    : tl_route_id(tl_route_database(set->table, i),
		                              tl_route_main_table(set->table, i));
	*out = set;
	return 0;
}
