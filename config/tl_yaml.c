/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

#include "tl_error.h"
#include "tl_yaml.h"

/*
 * Arena: a list of blocks, bump allocation. A config tree is built once, merged, applied
 * and thrown away as a whole, so per-node frees would only add failure paths.
 */
#define ARENA_BLOCK (64u << 10)

struct block {
	struct block *next;
	size_t used;
	size_t size;
	max_align_t data[];
};

struct tl_yarena {
	struct block *head;
};

int
tl_yarena_create(struct tl_yarena **out)
{
	struct tl_yarena *a = calloc(1, sizeof(*a));

	if (a == NULL)
		return -ENOMEM;
	*out = a;
	return 0;
}

void
tl_yarena_free(struct tl_yarena *a)
{
	struct block *b, *next;

	if (a == NULL)
		return;
	for (b = a->head; b != NULL; b = next) {
		next = b->next;
		free(b);
	}
	free(a);
}

void *
tl_yarena_alloc(struct tl_yarena *a, size_t size)
{
	const size_t align = sizeof(max_align_t);
	struct block *b = a->head;
	size_t bsize;
	void *p;

	if (size > SIZE_MAX / 2)
		return NULL;
	size = (size + align - 1) & ~(align - 1);
	if (b == NULL || b->size - b->used < size) {
		/* Big strings get a block of their own so the current block is not wasted. */
		bsize = size > ARENA_BLOCK / 4 ? size : ARENA_BLOCK;
		b = malloc(sizeof(*b) + bsize);
		if (b == NULL)
			return NULL;
		b->used = 0;
		b->size = bsize;
		if (size > ARENA_BLOCK / 4 && a->head != NULL) {
			b->next = a->head->next;
			a->head->next = b;
		} else {
			b->next = a->head;
			a->head = b;
		}
	}
	p = (char *)b->data + b->used;
	b->used += size;
	memset(p, 0, size);
	return p;
}

char *
tl_yarena_strndup(struct tl_yarena *a, const char *s, size_t len)
{
	char *d;

	if (len == SIZE_MAX)
		return NULL;
	d = tl_yarena_alloc(a, len + 1);
	if (d == NULL)
		return NULL;
	memcpy(d, s, len);
	d[len] = '\0';
	return d;
}

static struct tl_ynode *
node_new(
        struct tl_yarena *a, enum tl_ynode_type type, const char *file, uint32_t line, uint32_t col)
{
	struct tl_ynode *n = tl_yarena_alloc(a, sizeof(*n));

	if (n == NULL)
		return NULL;
	n->type = type;
	n->file = file;
	n->line = line;
	n->col = col;
	return n;
}

struct tl_ynode *
tl_ynode_new_map(struct tl_yarena *a, const char *file, uint32_t line, uint32_t col)
{
	return node_new(a, TL_YNODE_MAP, file, line, col);
}

static void
append(struct tl_ynode *parent, struct tl_ynode *n)
{
	n->next = NULL;
	if (parent->last != NULL)
		parent->last->next = n;
	else
		parent->first = n;
	parent->last = n;
	parent->count++;
}

void
tl_yaml_printable(char *dst, size_t dstlen, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0, shown = 0;

	if (dstlen == 0)
		return;
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		char esc[5];
		size_t elen;

		/* Stop on a character boundary so multi-byte UTF-8 is never cut in half. */
		if (shown >= 60 && (c & 0xc0) != 0x80) {
			if (o + 4 <= dstlen)
				memcpy(dst + o, "...", 3), o += 3;
			break;
		}
		if (c == '\n') {
			memcpy(esc, "\\n", 2), elen = 2;
		} else if (c == '\t') {
			memcpy(esc, "\\t", 2), elen = 2;
		} else if (c < 0x20 || c == 0x7f) {
			esc[0] = '\\', esc[1] = 'x', esc[2] = hex[c >> 4], esc[3] = hex[c & 15];
			elen = 4;
		} else {
			esc[0] = (char)c, elen = 1;
		}
		if (o + elen + 1 > dstlen)
			break;
		memcpy(dst + o, esc, elen);
		o += elen;
		if ((c & 0xc0) != 0x80)
			shown++;
	}
	dst[o] = '\0';
}

const char *
tl_ynode_kind(const struct tl_ynode *n)
{
	switch (n->type) {
	case TL_YNODE_MAP:
		return "mapping";
	case TL_YNODE_SEQ:
		return "sequence";
	case TL_YNODE_SCALAR:
	default:
		return n->null ? "null" : "scalar";
	}
}

struct tl_ynode *
tl_ynode_get(const struct tl_ynode *map, const char *key)
{
	struct tl_ynode *e;

	if (map == NULL || map->type != TL_YNODE_MAP)
		return NULL;
	for (e = map->first; e != NULL; e = e->next)
		if (strcmp(e->key, key) == 0)
			return e;
	return NULL;
}

struct tl_ynode *
tl_ynode_remove(struct tl_ynode *map, const char *key)
{
	struct tl_ynode *e, *prev = NULL;

	if (map == NULL || map->type != TL_YNODE_MAP)
		return NULL;
	for (e = map->first; e != NULL; prev = e, e = e->next) {
		if (strcmp(e->key, key) != 0)
			continue;
		if (prev != NULL)
			prev->next = e->next;
		else
			map->first = e->next;
		if (map->last == e)
			map->last = prev;
		map->count--;
		e->next = NULL;
		return e;
	}
	return NULL;
}

/* ---- parsing ---------------------------------------------------------------------- */

struct frame {
	struct tl_ynode *node;
	struct tl_ynode *key; /* mapping: key scalar waiting for its value, or NULL */
	bool attached;        /* false: node belongs to a dropped entry; still parsed */
};

struct parser {
	struct tl_yarena *a;
	const char *file;
	const char *text;
	size_t len;
	tl_yaml_report_fn report;
	void *arg;
	unsigned problems;
	struct frame stack[TL_YAML_MAX_DEPTH];
	int depth;
	struct tl_ynode *root;
	int docs;
	uint32_t nodes;
};

static void __attribute__((format(printf, 4, 5)))
problem(struct parser *p, uint32_t line, uint32_t col, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	p->problems++;
	if (p->report != NULL)
		p->report(p->arg, p->file, line, col, msg);
}

static uint32_t
mark_line(const yaml_mark_t *m)
{
	return m->line >= UINT32_MAX ? UINT32_MAX : (uint32_t)m->line + 1;
}

static uint32_t
mark_col(const yaml_mark_t *m)
{
	return m->column >= UINT32_MAX ? UINT32_MAX : (uint32_t)m->column + 1;
}

/* Position of byte @off for reader errors, which libyaml reports only as an offset. */
static void
offset_pos(const struct parser *p, size_t off, uint32_t *line, uint32_t *col)
{
	uint32_t l = 1, c = 1;
	size_t i;

	for (i = 0; i < off && i < p->len; i++) {
		unsigned char ch = (unsigned char)p->text[i];

		if (ch == '\n') {
			l++;
			c = 1;
		} else if ((ch & 0xc0) != 0x80) {
			c++;
		}
	}
	*line = l;
	*col = c;
}

static void
report_libyaml(struct parser *p, const yaml_parser_t *yp)
{
	const char *what = yp->problem != NULL ? yp->problem : "malformed YAML";
	const char *hint = "";
	uint32_t line, col;

	if (yp->error == YAML_MEMORY_ERROR)
		return;
	if (yp->error == YAML_READER_ERROR) {
		offset_pos(p, yp->problem_offset, &line, &col);
		if (yp->problem_value != -1)
			problem(p, line, col, "%s (byte 0x%02x); the file must be UTF-8", what,
			        (unsigned)yp->problem_value & 0xffu);
		else
			problem(p, line, col, "%s; the file must be UTF-8", what);
		return;
	}
	line = mark_line(&yp->problem_mark);
	col = mark_col(&yp->problem_mark);
	/* libyaml's wording is exact but terse; name the usual causes. */
	if (yp->problem_mark.index < p->len && p->text[yp->problem_mark.index] == '\t') {
		problem(p, line, col, "%s (a tab: YAML indents with spaces only)", what);
		return;
	}
	if (strcmp(what, "mapping values are not allowed in this context") == 0)
		hint = " (check the indentation, or quote a value that contains ': ')";
	else if (strcmp(what, "did not find expected key") == 0)
		hint = " (check the indentation)";
	if (yp->context != NULL && (yp->context_mark.line != yp->problem_mark.line ||
	                                   yp->context_mark.column != yp->problem_mark.column))
		problem(p, line, col, "%s%s (%s at line %u, column %u)", what, hint, yp->context,
		        mark_line(&yp->context_mark), mark_col(&yp->context_mark));
	else if (yp->context != NULL)
		problem(p, line, col, "%s%s (%s)", what, hint, yp->context);
	else
		problem(p, line, col, "%s%s", what, hint);
}

#define STD_TAG "tag:yaml.org,2002:"

enum tag_kind { TAG_NONE, TAG_STR, TAG_NULL, TAG_BAD };

/* Keep the tree simple: only the standard tags, and only on the kind of node they name. */
static enum tag_kind
check_tag(struct parser *p, const yaml_char_t *tag, enum tl_ynode_type type, const yaml_mark_t *m)
{
	static const char *const scalar_ok[] = {"str", "int", "float", "bool", "null", NULL};
	const char *t = (const char *)tag;
	char shown[80];
	int i;

	if (t == NULL)
		return TAG_NONE;
	if (strncmp(t, STD_TAG, strlen(STD_TAG)) == 0) {
		const char *name = t + strlen(STD_TAG);

		if (type == TL_YNODE_SCALAR) {
			for (i = 0; scalar_ok[i] != NULL; i++)
				if (strcmp(name, scalar_ok[i]) == 0)
					return i == 0 ? TAG_STR : i == 4 ? TAG_NULL : TAG_NONE;
		} else if (strcmp(name, type == TL_YNODE_MAP ? "map" : "seq") == 0) {
			return TAG_NONE;
		}
		snprintf(shown, sizeof(shown), "!!%.60s", name);
	} else {
		tl_yaml_printable(shown, sizeof(shown), t);
	}
	problem(p, mark_line(m), mark_col(m),
	        "tag '%s' is not supported here (only !!str, !!int, !!float, !!bool, "
	        "!!null on values, !!seq, !!map)",
	        shown);
	return TAG_BAD;
}

static void
check_anchor(struct parser *p, const yaml_char_t *anchor, const yaml_mark_t *m)
{
	char shown[80];

	if (anchor == NULL)
		return;
	tl_yaml_printable(shown, sizeof(shown), (const char *)anchor);
	problem(p, mark_line(m), mark_col(m),
	        "anchors ('&%s') are not supported; write the value out, or share it "
	        "through 'extends:'",
	        shown);
}

static bool
plain_null(const char *v, size_t len)
{
	return len == 0 || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
	       strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

struct idx {
	struct tl_ynode *n;
	size_t pos;
};

static int
idx_cmp(const void *x, const void *y)
{
	const struct idx *a = x, *b = y;
	int c = strcmp(a->n->key, b->n->key);

	if (c != 0)
		return c;
	return a->pos < b->pos ? -1 : a->pos > b->pos;
}

/*
 * Drop the second and later occurrences of a key, reporting each. Sorting keeps this
 * O(n log n) so a hostile file with a huge mapping cannot make loading quadratic.
 */
static int
dedupe(struct parser *p, struct tl_ynode *map)
{
	struct idx *v;
	uint32_t *first; /* per position: line of the first occurrence, 0 if not a dup */
	struct tl_ynode *e, *next;
	size_t i, n = map->count, pos, start;
	char shown[80];

	if (n < 2)
		return 0;
	v = malloc(n * sizeof(*v));
	first = calloc(n, sizeof(*first));
	if (v == NULL || first == NULL) {
		free(v);
		free(first);
		return -ENOMEM;
	}
	for (i = 0, e = map->first; e != NULL; e = e->next, i++)
		v[i] = (struct idx){e, i};
	qsort(v, n, sizeof(*v), idx_cmp);
	for (i = 1, start = 0; i < n; i++) {
		if (strcmp(v[i].n->key, v[i - 1].n->key) != 0)
			start = i; /* a new run of equal keys; v[start] is the first in the file */
		else
			first[v[i].pos] = v[start].n->key_line;
	}
	/* Report in file order, rebuild the list without the duplicates. */
	e = map->first;
	map->first = map->last = NULL;
	map->count = 0;
	for (pos = 0; e != NULL; e = next, pos++) {
		next = e->next;
		if (first[pos] == 0) {
			append(map, e);
			continue;
		}
		tl_yaml_printable(shown, sizeof(shown), e->key);
		problem(p, e->key_line, e->key_col, "duplicate key '%s' (first at line %u)", shown,
		        first[pos]);
	}
	free(v);
	free(first);
	return 0;
}

/* Link @n into the open container (or make it the root). */
static void
add_value(struct parser *p, struct tl_ynode *n, bool *attached)
{
	struct frame *f;

	*attached = true;
	if (p->depth == 0) {
		p->root = n;
		return;
	}
	f = &p->stack[p->depth - 1];
	if (f->node->type == TL_YNODE_SEQ) {
		*attached = f->attached;
		if (f->attached)
			append(f->node, n);
		return;
	}
	if (f->key == NULL) {
		/* Key position: keys must be non-empty strings. */
		if (n->type != TL_YNODE_SCALAR) {
			problem(p, n->line, n->col, "a key must be a plain name, not a %s",
			        tl_ynode_kind(n));
			n->bad = true;
		} else if (n->null && !n->bad) {
			problem(p, n->line, n->col, "a key must be a name, not empty or null");
			n->bad = true;
		}
		f->key = n;
		*attached = false;
		return;
	}
	if (f->key->bad || !f->attached) {
		*attached = false;
	} else {
		n->key = f->key->value;
		n->key_line = f->key->line;
		n->key_col = f->key->col;
		append(f->node, n);
	}
	f->key = NULL;
}

static int
count_node(struct parser *p, const yaml_event_t *ev)
{
	if (++p->nodes <= TL_YAML_MAX_NODES)
		return 0;
	problem(p, mark_line(&ev->start_mark), mark_col(&ev->start_mark),
	        "more than %u values in one file", TL_YAML_MAX_NODES);
	return TL_E_YAML;
}

static int
on_scalar(struct parser *p, const yaml_event_t *ev)
{
	const yaml_mark_t *m = &ev->start_mark;
	struct tl_ynode *n = node_new(p->a, TL_YNODE_SCALAR, p->file, mark_line(m), mark_col(m));
	const char *v = (const char *)ev->data.scalar.value;
	size_t len = ev->data.scalar.length;
	enum tag_kind tk;
	bool attached;

	if (n == NULL)
		return -ENOMEM;
	n->value = tl_yarena_strndup(p->a, v, len);
	if (n->value == NULL)
		return -ENOMEM;
	n->len = len;
	check_anchor(p, ev->data.scalar.anchor, m);
	tk = check_tag(p, ev->data.scalar.tag, TL_YNODE_SCALAR, m);
	if (tk == TAG_BAD)
		n->bad = true;
	else if (tk == TAG_NULL)
		n->null = true;
	else if (tk == TAG_NONE && ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE)
		n->null = plain_null(n->value, len);
	if (memchr(v, '\0', len) != NULL) {
		problem(p, n->line, n->col, "a NUL character (\\0) in a value is not supported");
		n->bad = true;
	}
	add_value(p, n, &attached);
	return 0;
}

static int
on_alias(struct parser *p, const yaml_event_t *ev)
{
	const yaml_mark_t *m = &ev->start_mark;
	struct tl_ynode *n = node_new(p->a, TL_YNODE_SCALAR, p->file, mark_line(m), mark_col(m));
	char shown[80];
	bool attached;

	if (n == NULL)
		return -ENOMEM;
	tl_yaml_printable(shown, sizeof(shown), (const char *)ev->data.alias.anchor);
	problem(p, n->line, n->col,
	        "aliases ('*%s') are not supported; write the value out, or share it "
	        "through 'extends:'",
	        shown);
	n->value = "";
	n->null = true;
	n->bad = true;
	add_value(p, n, &attached);
	return 0;
}

static int
on_start(struct parser *p, const yaml_event_t *ev, enum tl_ynode_type type)
{
	const yaml_mark_t *m = &ev->start_mark;
	const yaml_char_t *anchor, *tag;
	struct tl_ynode *n;
	bool attached;

	if (p->depth == TL_YAML_MAX_DEPTH) {
		problem(p, mark_line(m), mark_col(m), "nesting deeper than %d levels",
		        TL_YAML_MAX_DEPTH);
		return TL_E_YAML;
	}
	n = node_new(p->a, type, p->file, mark_line(m), mark_col(m));
	if (n == NULL)
		return -ENOMEM;
	if (type == TL_YNODE_MAP) {
		anchor = ev->data.mapping_start.anchor;
		tag = ev->data.mapping_start.tag;
	} else {
		anchor = ev->data.sequence_start.anchor;
		tag = ev->data.sequence_start.tag;
	}
	check_anchor(p, anchor, m);
	if (check_tag(p, tag, type, m) == TAG_BAD)
		n->bad = true;
	add_value(p, n, &attached);
	p->stack[p->depth++] = (struct frame){.node = n, .attached = attached};
	return 0;
}

static int
on_end(struct parser *p)
{
	struct frame *f = &p->stack[--p->depth];

	if (f->node->type == TL_YNODE_MAP)
		return dedupe(p, f->node);
	return 0;
}

static int
run(struct parser *p, yaml_parser_t *yp)
{
	yaml_event_t ev;
	bool done = false;
	int rc = 0;

	while (!done && rc == 0) {
		if (!yaml_parser_parse(yp, &ev)) {
			if (yp->error == YAML_MEMORY_ERROR)
				return -ENOMEM;
			report_libyaml(p, yp);
			return TL_E_YAML;
		}
		switch (ev.type) {
		case YAML_DOCUMENT_START_EVENT:
			if (++p->docs > 1) {
				problem(p, mark_line(&ev.start_mark), mark_col(&ev.start_mark),
				        "only one YAML document per file is supported "
				        "(remove this '---' and what follows, or move it "
				        "to its own file)");
				rc = TL_E_YAML;
			}
			break;
		case YAML_SCALAR_EVENT:
			rc = count_node(p, &ev);
			if (rc == 0)
				rc = on_scalar(p, &ev);
			break;
		case YAML_ALIAS_EVENT:
			rc = count_node(p, &ev);
			if (rc == 0)
				rc = on_alias(p, &ev);
			break;
		case YAML_SEQUENCE_START_EVENT:
		case YAML_MAPPING_START_EVENT:
			rc = count_node(p, &ev);
			if (rc == 0)
				rc = on_start(p, &ev,
				        ev.type == YAML_SEQUENCE_START_EVENT ? TL_YNODE_SEQ
				                                             : TL_YNODE_MAP);
			break;
		case YAML_SEQUENCE_END_EVENT:
		case YAML_MAPPING_END_EVENT:
			rc = on_end(p);
			break;
		case YAML_STREAM_END_EVENT:
			done = true;
			break;
		default:
			break;
		}
		yaml_event_delete(&ev);
	}
	return rc;
}

int
tl_yaml_parse_string(struct tl_yarena *a, const char *name, const char *text, size_t len,
        tl_yaml_report_fn report, void *arg, struct tl_ynode **root, unsigned *n_problems)
{
	struct parser p = {.a = a, .text = text, .len = len, .report = report, .arg = arg};
	yaml_parser_t yp;
	int rc;

	*root = NULL;
	*n_problems = 0;
	p.file = tl_yarena_strndup(a, name, strlen(name));
	if (p.file == NULL)
		return -ENOMEM;
	if (!yaml_parser_initialize(&yp))
		return -ENOMEM;
	yaml_parser_set_input_string(&yp, (const unsigned char *)text, len);
	rc = run(&p, &yp);
	yaml_parser_delete(&yp);
	*n_problems = p.problems;
	if (rc != 0)
		return rc;
	*root = p.root;
	return 0;
}

int
tl_yaml_parse_file(struct tl_yarena *a, const char *path, tl_yaml_report_fn report, void *arg,
        struct tl_ynode **root, unsigned *n_problems)
{
	size_t len = 0, cap = 0;
	char *buf = NULL, *nb;
	ssize_t r;
	int fd, rc;

	*root = NULL;
	*n_problems = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	for (;;) {
		if (len == cap) {
			if (cap > TL_YAML_MAX_FILE) {
				rc = -EFBIG;
				goto out;
			}
			cap = cap ? cap * 2 : 16384;
			nb = realloc(buf, cap);
			if (nb == NULL) {
				rc = -ENOMEM;
				goto out;
			}
			buf = nb;
		}
		r = read(fd, buf + len, cap - len);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			goto out;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	if (len > TL_YAML_MAX_FILE) {
		rc = -EFBIG;
		goto out;
	}
	rc = tl_yaml_parse_string(
	        a, path, buf != NULL ? buf : "", len, report, arg, root, n_problems);
out:
	free(buf);
	close(fd);
	return rc;
}

/* ---- inheritance ------------------------------------------------------------------ */

static int
key_cmp(const void *x, const void *y)
{
	const struct tl_ynode *const *a = x, *const *b = y;

	return strcmp((*a)->key, (*b)->key);
}

static int
bsearch_cmp(const void *key, const void *elem)
{
	const struct tl_ynode *const *e = elem;

	return strcmp(key, (*e)->key);
}

/* Put @c's content in place of @p's, keeping @p's position in its parent. */
static void
replace(struct tl_ynode *p, const struct tl_ynode *c)
{
	struct tl_ynode *next = p->next;

	*p = *c;
	p->next = next;
}

static int
merge_map(struct tl_ynode *pm, struct tl_ynode *cm)
{
	struct tl_ynode **v = NULL, **hit, *c, *next;
	size_t i, n = pm->count;
	int rc = 0;

	if (n > 0) {
		v = malloc(n * sizeof(*v));
		if (v == NULL)
			return -ENOMEM;
		for (i = 0, c = pm->first; c != NULL; c = c->next)
			v[i++] = c;
		qsort(v, n, sizeof(*v), key_cmp);
	}
	for (c = cm->first; c != NULL && rc == 0; c = next) {
		next = c->next;
		hit = n > 0 ? bsearch(c->key, v, n, sizeof(*v), bsearch_cmp) : NULL;
		if (hit == NULL)
			append(pm, c);
		else if ((*hit)->type == TL_YNODE_MAP && c->type == TL_YNODE_MAP)
			rc = merge_map(*hit, c);
		else if ((*hit)->type == TL_YNODE_MAP && c->type == TL_YNODE_SCALAR && c->null &&
		         !c->bad)
			continue;
		else
			replace(*hit, c);
	}
	free(v);
	/* Messages about the section as a whole point at the most derived file. */
	pm->file = cm->file;
	pm->line = cm->line;
	pm->col = cm->col;
	if (cm->key != NULL) {
		pm->key_line = cm->key_line;
		pm->key_col = cm->key_col;
	}
	return rc;
}

int
tl_yaml_merge(struct tl_ynode **parent, struct tl_ynode *child)
{
	struct tl_ynode *p = *parent;

	if (child == NULL)
		return 0;
	if (p == NULL) {
		*parent = child;
		return 0;
	}
	if (p->type == TL_YNODE_MAP && child->type == TL_YNODE_MAP)
		return merge_map(p, child);
	if (p->type == TL_YNODE_MAP && child->type == TL_YNODE_SCALAR && child->null && !child->bad)
		return 0;
	*parent = child;
	return 0;
}
