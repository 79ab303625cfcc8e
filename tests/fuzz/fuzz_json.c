/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libFuzzer target for the JSON extractor.
 *
 * Build and run (seed corpus in tests/fuzz/corpus_json):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iconfig -Ipipeline -Itests/common \
 *       tests/fuzz/fuzz_json.c pipeline/tl_json.c pipeline/tl_schema.c \
 *       pipeline/tl_reason.c config/tl_error.c -lm -o /tmp/fuzz_json
 *   /tmp/fuzz_json -max_total_time=30 -max_len=4096 /tmp/corpus tests/fuzz/corpus_json
 *
 * Per input: extraction with the AVX2 and the scalar scanner must agree; an accepted
 * event must satisfy the extractor's contract (values inside the input, kinds matching
 * column types, unescaped strings valid UTF-8 and never longer, extra output that is
 * itself accepted when embedded as a value); the timestamp parser and unescaper must
 * not misbehave on arbitrary bytes.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tl_json.h"
#include "tl_json_private.h"
#include "tl_test_fuzz.h"
#include "tl_test_schema.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct tl_schema *schema;
static struct tl_schema *wrap_schema; /* one level deeper, longer strings: for extra */
static struct tl_event ev, ev2, ev3;
static uint8_t scratch[1 << 17];
static uint8_t wrapped[1 << 17];

static void
init(void)
{
	static struct tl_schema_def d;
	struct tl_limits l = {
	        .max_event_size = 65507,
	        .max_depth = 32,
	        .max_string = 4096,
	        .max_extra = 16,
	};
	char msg[256];

	/* the e6data columns without per-column caps: max_string alone bounds them */
	tl_test_e6data_def(&d);
	tl_test_clear_max_len(&d);
	/* a few more types and a deeper path, so the fuzzer reaches every converter */
	tl_test_add_col(&d, "offset", "metadata.stats.offset", TL_COL_INT64, false, 0);
	tl_test_add_col(&d, "cost", "metadata.stats.cost", TL_COL_FLOAT64, false, 0);
	tl_test_add_col(&d, "cached", "cached", TL_COL_BOOL, false, 0);
	tl_test_add_col(&d, "short", "short", TL_COL_STRING, false, 8);
	if (tl_schema_compile(&d, &l, &schema, msg, sizeof(msg)) != 0) {
		fprintf(stderr, "schema: %s\n", msg);
		abort();
	}
	/* Top-level extras move one level down inside "x", dotted keys get longer. */
	l.max_depth++;
	l.max_string += 256;
	if (tl_schema_compile(&d, &l, &wrap_schema, msg, sizeof(msg)) != 0) {
		fprintf(stderr, "schema: %s\n", msg);
		abort();
	}
}

/* Independent UTF-8 check (decode, then range-check the code point). */
static int
valid_utf8(const uint8_t *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		uint32_t cp, min;
		unsigned k;

		if (p[i] < 0x80) {
			i++;
			continue;
		}
		if ((p[i] & 0xE0) == 0xC0) {
			k = 1, cp = p[i] & 0x1F, min = 0x80;
		} else if ((p[i] & 0xF0) == 0xE0) {
			k = 2, cp = p[i] & 0x0F, min = 0x800;
		} else if ((p[i] & 0xF8) == 0xF0) {
			k = 3, cp = p[i] & 0x07, min = 0x10000;
		} else {
			return 0;
		}
		for (unsigned j = 1; j <= k; j++) {
			if (i + j >= n || (p[i + j] & 0xC0) != 0x80)
				return 0;
			cp = cp << 6 | (p[i + j] & 0x3F);
		}
		if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return 0;
		i += k + 1;
	}
	return 1;
}

static int
inside(const uint8_t *p, uint32_t len, const uint8_t *data, size_t size)
{
	return p >= data && p + len <= data + size;
}

static void
check_unescape(const uint8_t *p, uint32_t len, int escaped)
{
	size_t n = tl_json_unescape(p, len, scratch);

	TL_FUZZ_CHECK(n <= len);
	TL_FUZZ_CHECK(valid_utf8(scratch, n));
	if (!escaped) {
		TL_FUZZ_CHECK(n == len);
		TL_FUZZ_CHECK(memcmp(scratch, p, n) == 0);
	}
}

static void
check_accepted(const uint8_t *data, size_t size)
{
	const uint32_t ncols = tl_schema_n_cols(schema);
	size_t n;
	int wl;

	for (uint32_t i = 0; i < ncols; i++) {
		const struct tl_value *v = &ev.col[i];
		int type = tl_schema_col(schema, i)->type;

		switch (v->kind) {
		case TL_VAL_ABSENT:
		case TL_VAL_NULL:
			TL_FUZZ_CHECK(!tl_schema_col(schema, i)->required);
			break;
		case TL_VAL_STRING:
			TL_FUZZ_CHECK(type == TL_COL_STRING || type == TL_COL_ANY);
			TL_FUZZ_CHECK(inside(v->ptr, v->len, data, size));
			TL_FUZZ_CHECK(v->ptr[-1] == '"' && v->ptr[v->len] == '"');
			TL_FUZZ_CHECK(v->escaped == (memchr(v->ptr, '\\', v->len) != NULL));
			check_unescape(v->ptr, v->len, v->escaped);
			break;
		case TL_VAL_RAW:
			TL_FUZZ_CHECK(type == TL_COL_ANY);
			TL_FUZZ_CHECK(inside(v->ptr, v->len, data, size));
			TL_FUZZ_CHECK(v->len > 0 && v->ptr[0] != '"' && v->ptr[0] != 'n');
			break;
		case TL_VAL_INT:
			TL_FUZZ_CHECK(type == TL_COL_INT64);
			break;
		case TL_VAL_UINT:
			TL_FUZZ_CHECK(type == TL_COL_UINT64);
			break;
		case TL_VAL_FLOAT:
			TL_FUZZ_CHECK(type == TL_COL_FLOAT64);
			TL_FUZZ_CHECK(v->f - v->f == 0); /* finite */
			TL_FUZZ_CHECK(inside(v->ptr, v->len, data, size));
			break;
		case TL_VAL_BOOL:
			TL_FUZZ_CHECK(type == TL_COL_BOOL);
			TL_FUZZ_CHECK(v->len == (v->b ? 4u : 5u));
			break;
		case TL_VAL_TIME: {
			int64_t ns;

			TL_FUZZ_CHECK(type == TL_COL_DATETIME);
			TL_FUZZ_CHECK(inside(v->ptr, v->len, data, size));
			TL_FUZZ_CHECK(tl_json_parse_time(v->ptr, v->len, &ns) == 0 && ns == v->ns);
			break;
		}
		default:
			TL_FUZZ_CHECK(0);
		}
	}
	TL_FUZZ_CHECK(ev.col[tl_schema_time_col(schema)].kind == TL_VAL_TIME);
	TL_FUZZ_CHECK(ev.time_ns == ev.col[tl_schema_time_col(schema)].ns);
	TL_FUZZ_CHECK(ev.n_extra <= tl_schema_limits(schema)->max_extra);
	for (uint32_t i = 0; i < ev.n_extra; i++) {
		const struct tl_extra *x = &ev.extra[i];

		TL_FUZZ_CHECK(inside(x->key, x->key_len, data, size));
		TL_FUZZ_CHECK(inside(x->val, x->val_len, data, size));
		TL_FUZZ_CHECK(x->key[-1] == '"' && x->key[x->key_len] == '"');
		TL_FUZZ_CHECK(x->val_len > 0);
		TL_FUZZ_CHECK(x->parent >= -1);
		check_unescape(x->key, x->key_len, memchr(x->key, '\\', x->key_len) != NULL);
		if (x->val[0] == '"')
			check_unescape(x->val + 1, x->val_len - 2,
			        memchr(x->val + 1, '\\', x->val_len - 2) != NULL);
	}

	/* The extra column is valid JSON: accepted as an (unknown) value of a new event. */
	n = tl_json_format_extra(schema, &ev, scratch, sizeof(scratch));
	TL_FUZZ_CHECK(n < sizeof(scratch) - 128);
	TL_FUZZ_CHECK(tl_json_format_extra(schema, &ev, NULL, 0) == n);
	wl = snprintf((char *)wrapped, sizeof(wrapped),
	        "{\"query_id\":\"q\",\"event_type\":\"e\",\"timestamp\":\"2024-01-01T00:00:00Z\","
	        "\"x\":%.*s}",
	        (int)n, scratch);
	TL_FUZZ_CHECK(wl > 0 && (size_t)wl < sizeof(wrapped));
	if ((size_t)wl <= tl_schema_limits(wrap_schema)->max_event_size) {
		TL_FUZZ_CHECK(
		        tl_json_extract(wrap_schema, wrapped, (uint32_t)wl, &ev3) == TL_REASON_OK);
		TL_FUZZ_CHECK(ev3.n_extra == 1);
		TL_FUZZ_CHECK(ev3.extra[0].val_len == n);
		TL_FUZZ_CHECK(memcmp(ev3.extra[0].val, scratch, n) == 0);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	enum tl_reason ra, rb;
	uint8_t *copy;
	int64_t ns;

	if (schema == NULL)
		init();
	if (size > UINT32_MAX)
		return 0;
	/* An exactly-sized copy: any over-read hits ASan's redzone. */
	copy = malloc(size ? size : 1);
	if (copy == NULL)
		return 0;
	memcpy(copy, data, size);

	tl_json_force_scalar(1);
	ra = tl_json_extract(schema, copy, (uint32_t)size, &ev2);
	tl_json_force_scalar(0);
	rb = tl_json_extract(schema, copy, (uint32_t)size, &ev);
	TL_FUZZ_CHECK(ra == rb);
	TL_FUZZ_CHECK(rb < TL_REASON_MAX && (rb == TL_REASON_OK || tl_reason_is_event(rb)));
	TL_FUZZ_CHECK(ev.raw == copy && ev.raw_len == size);
	if (rb == TL_REASON_OK) {
		TL_FUZZ_CHECK(ev.n_extra == ev2.n_extra && ev.is_error == ev2.is_error);
		for (uint32_t i = 0; i < tl_schema_n_cols(schema); i++)
			TL_FUZZ_CHECK(ev.col[i].kind == ev2.col[i].kind &&
			              ev.col[i].len == ev2.col[i].len &&
			              ev.col[i].ptr == ev2.col[i].ptr);
		check_accepted(copy, size);
	}

	/* Arbitrary bytes through the helpers. */
	if (tl_json_parse_time(copy, size, &ns) == 0)
		TL_FUZZ_CHECK(size >= 20);
	if (size <= sizeof(scratch))
		TL_FUZZ_CHECK(tl_json_unescape(copy, size, scratch) <= size);
	free(copy);
	return 0;
}
