/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tl_error.h"
#include "tl_event.h"
#include "tl_schema.h"
#include "tl_schema_private.h"

const char *const tl_col_type_names[] = {
        [TL_COL_STRING] = "string",
        [TL_COL_ANY] = "any",
        [TL_COL_INT64] = "int64",
        [TL_COL_UINT64] = "uint64",
        [TL_COL_FLOAT64] = "float64",
        [TL_COL_BOOL] = "bool",
        [TL_COL_DATETIME] = "datetime",
        [TL_COL_TYPE_MAX] = NULL,
};

static int col_check(const void *obj, char *msg, size_t msglen);

static const struct tl_opt col_opts[] = {
        {
                .name = "name",
                .type = TL_OPT_STRING,
                .offset = offsetof(struct tl_col_def, name),
                .size = TL_SCHEMA_NAME_MAX,
                .flags = TL_OPT_F_REQUIRED,
                .desc = "column name in the OLAP table ([a-z_][a-z0-9_]*)",
        },
        {
                .name = "path",
                .type = TL_OPT_STRING,
                .offset = offsetof(struct tl_col_def, path),
                .size = TL_SCHEMA_PATH_MAX,
                .flags = TL_OPT_F_REQUIRED,
                .desc = "dotted JSON path of the field, e.g. metadata.user_id",
        },
        {
                .name = "type",
                .type = TL_OPT_ENUM,
                .def = "string",
                .offset = offsetof(struct tl_col_def, type),
                .enums = tl_col_type_names,
                .desc = "string, any, int64, uint64, float64, bool or datetime",
        },
        {
                .name = "required",
                .type = TL_OPT_BOOL,
                .def = "false",
                .offset = offsetof(struct tl_col_def, required),
                .desc = "reject the event (missing_field) if the field is absent or null",
        },
        {
                .name = "max_len",
                .type = TL_OPT_SIZE,
                .def = "0",
                .offset = offsetof(struct tl_col_def, max_len),
                .desc = "longest value in bytes as written (0: pipeline.max_string)",
        },
        {.name = NULL},
};

const struct tl_opt tl_schema_opts[] = {
        {
                .name = "time_column",
                .type = TL_OPT_STRING,
                .offset = offsetof(struct tl_schema_def, time_column),
                .size = TL_SCHEMA_NAME_MAX,
                .flags = TL_OPT_F_REQUIRED,
                .desc = "the datetime column that holds the event time",
        },
        {
                .name = "error_column",
                .type = TL_OPT_STRING,
                .offset = offsetof(struct tl_schema_def, error_column),
                .size = TL_SCHEMA_NAME_MAX,
                .flags = TL_OPT_F_REQUIRED,
                .desc = "column that marks an error event when set, non-null and non-empty",
        },
        {
                .name = "id_column",
                .type = TL_OPT_STRING,
                .offset = offsetof(struct tl_schema_def, id_column),
                .size = TL_SCHEMA_NAME_MAX,
                .flags = TL_OPT_F_REQUIRED,
                .desc = "column that identifies the query (deduplication, grouping)",
        },
        {
                .name = "columns",
                .type = TL_OPT_LIST,
                .offset = offsetof(struct tl_schema_def, cols),
                .size = sizeof(struct tl_col_def),
                .sub = col_opts,
                .count_offset = offsetof(struct tl_schema_def, n_cols),
                .max_items = TL_SCHEMA_MAX_COLS,
                .check = col_check,
                .desc = "JSON field to column mapping",
        },
        {.name = NULL},
};

const struct tl_opt tl_limits_opts[] = {
        {
                .name = "max_event_size",
                .type = TL_OPT_SIZE,
                .def = "60KiB",
                .offset = offsetof(struct tl_limits, max_event_size),
                .min = 64,
                .max = 65507,
                .desc = "longest event (one NDJSON line) accepted",
        },
        {
                .name = "max_depth",
                .type = TL_OPT_UINT,
                .def = "32",
                .offset = offsetof(struct tl_limits, max_depth),
                .min = 2,
                .max = TL_SCHEMA_MAX_DEPTH,
                .desc = "deepest nesting of objects/arrays (the top-level object is 1)",
        },
        {
                .name = "max_string",
                .type = TL_OPT_SIZE,
                .def = "60KiB",
                .offset = offsetof(struct tl_limits, max_string),
                .desc = "longest JSON string (key or value) in bytes as written",
        },
        {
                .name = "max_extra",
                .type = TL_OPT_UINT,
                .def = "32",
                .offset = offsetof(struct tl_limits, max_extra),
                .min = 0,
                .max = 64,
                .desc = "unknown fields kept in the extra column before the event is rejected",
        },
        {.name = NULL},
};

__attribute__((format(printf, 3, 4))) static int
fail(char *msg, size_t msglen, const char *fmt, ...)
{
	va_list ap;

	if (msg != NULL && msglen > 0) {
		va_start(ap, fmt);
		vsnprintf(msg, msglen, fmt, ap);
		va_end(ap);
	}
	return TL_E_SCHEMA;
}

/* Length of a fixed-size char field, or @p cap if it is not terminated. */
static size_t
field_len(const char *s, size_t cap)
{
	return strnlen(s, cap);
}

/* Valid UTF-8 sequence at p (len bytes left)? Returns its length, 0 if invalid. */
static unsigned
utf8_seq(const unsigned char *p, size_t len)
{
	unsigned n;
	unsigned char lo = 0x80, hi = 0xBF;

	if (p[0] < 0x80)
		return 1;
	if (p[0] < 0xC2 || p[0] > 0xF4)
		return 0;
	n = p[0] < 0xE0 ? 2 : p[0] < 0xF0 ? 3 : 4;
	if (p[0] == 0xE0)
		lo = 0xA0;
	else if (p[0] == 0xED)
		hi = 0x9F;
	else if (p[0] == 0xF0)
		lo = 0x90;
	else if (p[0] == 0xF4)
		hi = 0x8F;
	if (len < n || p[1] < lo || p[1] > hi)
		return 0;
	for (unsigned i = 2; i < n; i++)
		if ((p[i] & 0xC0) != 0x80)
			return 0;
	return n;
}

/*
 * A column's own rules (no cross-column checks). The name becomes an SQL identifier,
 * hence the narrow alphabet. Path bytes are limited so that a prefix path can be written
 * into the extra column's JSON keys verbatim (no quote, backslash or control byte).
 */
static int
check_col(const struct tl_col_def *c, char *msg, size_t msglen)
{
	size_t nlen = field_len(c->name, sizeof(c->name));
	size_t plen = field_len(c->path, sizeof(c->path));
	size_t seg = 0;

	if (nlen == sizeof(c->name))
		return fail(msg, msglen, "column name is not terminated");
	if (nlen == 0)
		return fail(msg, msglen, "column name is empty");
	for (size_t i = 0; i < nlen; i++) {
		char ch = c->name[i];
		int ok = (ch >= 'a' && ch <= 'z') || ch == '_' || (i > 0 && ch >= '0' && ch <= '9');
		if (!ok)
			return fail(msg, msglen,
			        "column name '%s' is not an identifier ([a-z_][a-z0-9_]*)",
			        c->name);
	}
	if (plen == sizeof(c->path))
		return fail(msg, msglen, "column '%s': path is not terminated", c->name);
	if (plen == 0)
		return fail(msg, msglen, "column '%s': path is empty", c->name);
	for (size_t i = 0; i < plen;) {
		const unsigned char *p = (const unsigned char *)c->path + i;
		unsigned n;

		if (*p == '.') {
			if (seg == 0)
				return fail(msg, msglen,
				        "column '%s': path '%s' has an empty segment", c->name,
				        c->path);
			seg = 0;
			i++;
			continue;
		}
		if (*p < 0x20 || *p == '"' || *p == '\\')
			return fail(msg, msglen,
			        "column '%s': path has a control character, quote or backslash",
			        c->name);
		n = utf8_seq(p, plen - i);
		if (n == 0)
			return fail(msg, msglen, "column '%s': path is not valid UTF-8", c->name);
		seg += n;
		i += n;
	}
	if (seg == 0)
		return fail(msg, msglen, "column '%s': path '%s' has an empty segment", c->name,
		        c->path);
	if (c->type < 0 || c->type >= TL_COL_TYPE_MAX)
		return fail(msg, msglen, "column '%s': unknown type %d", c->name, c->type);
	return 0;
}

static int
col_check(const void *obj, char *msg, size_t msglen)
{
	return check_col(obj, msg, msglen) == 0 ? 0 : 1;
}

static int
find_col(const struct tl_schema_def *def, const char *name)
{
	for (uint32_t i = 0; i < def->n_cols; i++)
		if (strcmp(def->cols[i].name, name) == 0)
			return (int)i;
	return -1;
}

/* Child of @p parent with segment (s, len), or -1. */
static int
find_child(
        const struct tl_schema_trie *t, const uint16_t *parent, int p, const char *s, uint32_t len)
{
	for (uint32_t i = 1; i < t->n_nodes; i++)
		if (parent[i] == p && t->key[i].len == len && memcmp(t->key[i].str, s, len) == 0)
			return (int)i;
	return -1;
}

/*
 * Build the trie of @p def into @p t, checking that no path is another one's prefix and
 * no path repeats. Nodes are created in declaration order; children are then laid out
 * contiguously per parent (key[k] describes the edge into node k while building).
 */
static int
build_trie(const struct tl_schema_def *def, struct tl_schema_trie *t, char *msg, size_t msglen)
{
	uint16_t parent[TL_SCHEMA_MAX_NODES];
	struct tl_schema_key edge[TL_SCHEMA_MAX_NODES];
	int owner[TL_SCHEMA_MAX_NODES]; /* first column through each node */

	memset(t, 0, sizeof(*t));
	t->n_nodes = 1;
	t->node[0].col = -1;
	t->node[0].prefix = -1;
	parent[0] = 0;
	owner[0] = -1;
	for (uint32_t c = 0; c < def->n_cols; c++) {
		const char *path = def->cols[c].path;
		size_t plen = strlen(path);
		int cur = 0;

		for (size_t off = 0; off < plen;) {
			const char *dot = memchr(path + off, '.', plen - off);
			uint32_t slen = (uint32_t)((dot ? (size_t)(dot - path) : plen) - off);
			int last = dot == NULL;
			int n = find_child(t, parent, cur, path + off, slen);

			if (n >= 0) {
				int oc = owner[n];
				if (t->node[n].col >= 0 && last)
					return fail(msg, msglen,
					        "columns '%s' and '%s' have the same path '%s'",
					        def->cols[oc].name, def->cols[c].name, path);
				if (t->node[n].col >= 0 || last)
					return fail(msg, msglen,
					        "path '%s' of column '%s' and path '%s' of column "
					        "'%s' "
					        "conflict: one is a prefix of the other",
					        def->cols[oc].path, def->cols[oc].name, path,
					        def->cols[c].name);
			} else {
				if (t->n_nodes >= TL_SCHEMA_MAX_NODES)
					return fail(msg, msglen, "too many path segments");
				n = (int)t->n_nodes++;
				parent[n] = (uint16_t)cur;
				owner[n] = (int)c;
				edge[n].str = path + off;
				edge[n].len = slen;
				edge[n].head = tl_schema_head(path + off, slen);
				edge[n].node = (uint16_t)n;
				t->key[n] = edge[n];
				t->node[n].col = last ? (int16_t)c : -1;
				t->node[n].prefix = -1;
				if (!last) {
					if (t->n_prefix >= TL_SCHEMA_MAX_PREFIX)
						return fail(msg, msglen,
						        "more than %d object paths (column '%s')",
						        TL_SCHEMA_MAX_PREFIX, def->cols[c].name);
					t->node[n].prefix = (int16_t)t->n_prefix;
					t->prefix[t->n_prefix].path = path;
					t->prefix[t->n_prefix].len = (uint32_t)(dot - path);
					t->n_prefix++;
				}
				if (slen > t->max_seg)
					t->max_seg = slen;
			}
			cur = n;
			off += slen + 1;
		}
	}
	/* Lay the edges out contiguously per parent, in creation order. */
	uint32_t k = 0;
	for (uint32_t p = 0; p < t->n_nodes; p++) {
		t->node[p].first = (uint16_t)k;
		t->node[p].n = 0;
		for (uint32_t i = 1; i < t->n_nodes; i++) {
			if (parent[i] != p)
				continue;
			t->key[k++] = edge[i];
			t->node[p].n++;
		}
	}
	return 0;
}

/* Every rule of a schema definition; fills @p t with its trie. */
static int
check_def(const struct tl_schema_def *def, struct tl_schema_trie *t, char *msg, size_t msglen)
{
	static const struct {
		size_t off;
		const char *key;
	} special[] = {
	        {offsetof(struct tl_schema_def, time_column), "time_column"},
	        {offsetof(struct tl_schema_def, error_column), "error_column"},
	        {offsetof(struct tl_schema_def, id_column), "id_column"},
	};
	int rc;

	if (def->n_cols > TL_SCHEMA_MAX_COLS)
		return fail(msg, msglen, "more than %d columns", TL_SCHEMA_MAX_COLS);
	for (uint32_t i = 0; i < def->n_cols; i++) {
		rc = check_col(&def->cols[i], msg, msglen);
		if (rc)
			return rc;
		for (uint32_t j = 0; j < i; j++)
			if (strcmp(def->cols[i].name, def->cols[j].name) == 0)
				return fail(msg, msglen, "column name '%s' appears twice",
				        def->cols[i].name);
	}
	for (size_t i = 0; i < sizeof(special) / sizeof(special[0]); i++) {
		const char *name = (const char *)def + special[i].off;
		int c;

		if (field_len(name, TL_SCHEMA_NAME_MAX) == TL_SCHEMA_NAME_MAX)
			return fail(msg, msglen, "%s is not terminated", special[i].key);
		if (name[0] == '\0')
			return fail(msg, msglen, "%s is not set", special[i].key);
		c = find_col(def, name);
		if (c < 0)
			return fail(msg, msglen, "%s '%s' is not a column", special[i].key, name);
		if (i == 0 && def->cols[c].type != TL_COL_DATETIME)
			return fail(msg, msglen, "time_column '%s' has type %s, not datetime", name,
			        tl_col_type_names[def->cols[c].type]);
	}
	return build_trie(def, t, msg, msglen);
}

int
tl_schema_check(const void *def, char *msg, size_t msglen)
{
	struct tl_schema_trie *t = malloc(sizeof(*t));
	int rc;

	if (t == NULL)
		return fail(msg, msglen, "out of memory");
	rc = check_def(def, t, msg, msglen);
	free(t);
	return rc == 0 ? 0 : 1;
}

int
tl_schema_compile(const struct tl_schema_def *def, const struct tl_limits *lim,
        struct tl_schema **out, char *msg, size_t msglen)
{
	struct tl_schema *s;
	int rc;

	*out = NULL;
	if (lim->max_depth < 1 || lim->max_depth > TL_SCHEMA_MAX_DEPTH)
		return fail(msg, msglen, "max_depth %llu is outside 1..%d",
		        (unsigned long long)lim->max_depth, TL_SCHEMA_MAX_DEPTH);
	if (lim->max_extra > TL_EVENT_MAX_EXTRA)
		return fail(msg, msglen, "max_extra %llu is more than %d",
		        (unsigned long long)lim->max_extra, TL_EVENT_MAX_EXTRA);
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	/* The trie points into s->def, so check and build from the copy. */
	s->def = *def;
	rc = check_def(&s->def, &s->trie, msg, msglen);
	if (rc)
		goto err;
	s->lim = *lim;
	for (uint32_t i = 0; i < s->def.n_cols; i++) {
		const struct tl_col_def *c = &s->def.cols[i];
		uint64_t max = c->max_len ? c->max_len : lim->max_string;

		s->col_type[i] = (uint8_t)c->type;
		s->col_max[i] = max > UINT32_MAX ? UINT32_MAX : (uint32_t)max;
		if (c->required)
			s->required |= UINT64_C(1) << i;
	}
	s->time_col = find_col(&s->def, s->def.time_column);
	s->error_col = find_col(&s->def, s->def.error_column);
	s->id_col = find_col(&s->def, s->def.id_column);
	*out = s;
	return 0;
err:
	free(s);
	return rc;
}

void
tl_schema_free(struct tl_schema *s)
{
	free(s);
}

uint32_t
tl_schema_n_cols(const struct tl_schema *s)
{
	return s->def.n_cols;
}

const struct tl_col_def *
tl_schema_col(const struct tl_schema *s, uint32_t i)
{
	return i < s->def.n_cols ? &s->def.cols[i] : NULL;
}

int
tl_schema_col_index(const struct tl_schema *s, const char *name)
{
	return find_col(&s->def, name);
}

const struct tl_limits *
tl_schema_limits(const struct tl_schema *s)
{
	return &s->lim;
}

int
tl_schema_time_col(const struct tl_schema *s)
{
	return s->time_col;
}

int
tl_schema_error_col(const struct tl_schema *s)
{
	return s->error_col;
}

int
tl_schema_id_col(const struct tl_schema *s)
{
	return s->id_col;
}
