/* SPDX-License-Identifier: BSD-3-Clause */
#include <jansson.h>
#include <string.h>

#include "tl_bench_ref.h"
#include "tl_json.h"

/* Walk a dotted path; jansson has no path API. */
static json_t *
lookup(json_t *root, const char *path)
{
	char seg[TL_SCHEMA_PATH_MAX];
	const char *p = path;

	while (root && *p) {
		const char *dot = strchr(p, '.');
		size_t n = dot ? (size_t)(dot - p) : strlen(p);

		memcpy(seg, p, n);
		seg[n] = '\0';
		if (!json_is_object(root))
			return NULL;
		root = json_object_get(root, seg);
		p += n + (dot ? 1 : 0);
	}
	return root;
}

static int
extract_one(const struct tl_schema *s, json_t *doc)
{
	uint32_t n = tl_schema_n_cols(s);
	volatile uint64_t sink = 0;

	if (!json_is_object(doc))
		return 0;
	for (uint32_t i = 0; i < n; i++) {
		const struct tl_col_def *c = tl_schema_col(s, i);
		json_t *v = lookup(doc, c->path);
		int64_t ns;

		if (v == NULL || json_is_null(v)) {
			if (c->required)
				return 0;
			continue;
		}
		switch (c->type) {
		case TL_COL_STRING:
			if (!json_is_string(v))
				return 0;
			sink += json_string_length(v);
			break;
		case TL_COL_ANY:
			if (json_is_string(v)) {
				sink += json_string_length(v);
			} else {
				/* The reference keeps non-string values verbatim too. */
				char *txt = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);

				if (txt == NULL)
					return 0;
				sink += strlen(txt);
				free(txt);
			}
			break;
		case TL_COL_INT64:
		case TL_COL_UINT64:
			if (!json_is_integer(v))
				return 0;
			sink += (uint64_t)json_integer_value(v);
			break;
		case TL_COL_FLOAT64:
			if (!json_is_number(v))
				return 0;
			sink += (uint64_t)json_number_value(v);
			break;
		case TL_COL_BOOL:
			if (!json_is_boolean(v))
				return 0;
			sink += json_is_true(v);
			break;
		case TL_COL_DATETIME:
			if (!json_is_string(v) || tl_json_parse_time((const uint8_t *)json_string_value(v),
							  json_string_length(v), &ns) != 0)
				return 0;
			sink += (uint64_t)ns;
			break;
		default:
			return 0;
		}
	}
	(void)sink;
	return 1;
}

uint64_t
tl_bench_jansson(const struct tl_schema *s, const struct tl_bench_events *ev)
{
	uint64_t ok = 0;

	for (uint32_t i = 0; i < ev->n; i++) {
		json_error_t err;
		json_t *doc = json_loadb((const char *)ev->buf + ev->off[i], ev->len[i],
				JSON_REJECT_DUPLICATES, &err);

		if (doc == NULL)
			continue;
		ok += (uint64_t)extract_one(s, doc);
		json_decref(doc);
	}
	return ok;
}
