/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Encoder and batch format: byte-exact RowBinary for hand-written events, batch limits,
 * sealing with and without gzip, and tl_batch_parse()/tl_batch_inflate() on valid and
 * hostile batches (every truncation is copied into an exact-size allocation so ASan
 * sees any read past the end).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <libdeflate.h>
#include <xxhash.h>

#include "tl_batch.h"
#include "tl_encode.h"
#include "tl_error.h"
#include "tl_json.h"
#include "tl_test_schema.h"

#define NOW INT64_C(1700000000123456789)
#define APPL "app-1"

/* ---- expected bytes, written out by hand per test ---- */

struct exp {
	uint8_t b[1 << 17];
	size_t n;
};

static void
x_u8(struct exp *x, uint8_t v)
{
	x->b[x->n++] = v;
}

static void
x_bytes(struct exp *x, const void *p, size_t n)
{
	memcpy(x->b + x->n, p, n);
	x->n += n;
}

static void
x_le(struct exp *x, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		x_u8(x, (uint8_t)(v >> (8 * i)));
}

/* A String: LEB128 length (written here by hand for < 128 and < 16384) and bytes. */
static void
x_str(struct exp *x, const void *p, size_t n)
{
	assert_true(n < 16384);
	if (n < 128) {
		x_u8(x, (uint8_t)n);
	} else {
		x_u8(x, (uint8_t)(0x80 | (n & 0x7f)));
		x_u8(x, (uint8_t)(n >> 7));
	}
	x_bytes(x, p, n);
}

static void
x_cstr(struct exp *x, const char *s)
{
	x_str(x, s, strlen(s));
}

/* The tapline columns of an event row after its profile columns [start, x->n). */
static void
x_tail(struct exp *x, size_t start, int64_t now, uint64_t batch_id, const char *extra)
{
	XXH128_canonical_t c;

	XXH128_canonicalFromHash(&c, XXH3_128bits(x->b + start, x->n - start));
	x_le(x, (uint64_t)(now / 1000000000), 4);
	x_le(x, (uint64_t)now, 8);
	x_bytes(x, c.digest, 16);
	x_le(x, 0, 8); /* producer_id */
	x_le(x, 0, 8); /* sequence */
	x_u8(x, 0);    /* late */
	x_cstr(x, APPL);
	x_le(x, batch_id, 8);
	x_cstr(x, extra);
	x_u8(x, 0); /* matched_patterns: [] (not classified) */
	x_u8(x, 0); /* categories: [] */
	x_u8(x, 0); /* severity: none */
}

/* ---- fixtures ---- */

/*
 * Every type. Columns: 0 id string req, 1 s string, 2 a any, 3 i int64 (m.i),
 * 4 u uint64 (m.u), 5 f float64, 6 b bool, 7 t datetime req (time), 8 t2 datetime,
 * 9 ri int64 req. error a, id id.
 */
static struct tl_schema *
all_types_schema(void)
{
	struct tl_schema_def def;
	struct tl_limits lim = tl_test_e6data_limits();
	struct tl_schema *s = NULL;
	char msg[256];

	memset(&def, 0, sizeof(def));
	tl_test_add_col(&def, "id", "id", TL_COL_STRING, true, 0);
	tl_test_add_col(&def, "s", "s", TL_COL_STRING, false, 0);
	tl_test_add_col(&def, "a", "a", TL_COL_ANY, false, 0);
	tl_test_add_col(&def, "i", "m.i", TL_COL_INT64, false, 0);
	tl_test_add_col(&def, "u", "m.u", TL_COL_UINT64, false, 0);
	tl_test_add_col(&def, "f", "f", TL_COL_FLOAT64, false, 0);
	tl_test_add_col(&def, "b", "b", TL_COL_BOOL, false, 0);
	tl_test_add_col(&def, "t", "t", TL_COL_DATETIME, true, 0);
	tl_test_add_col(&def, "t2", "t2", TL_COL_DATETIME, false, 0);
	tl_test_add_col(&def, "ri", "ri", TL_COL_INT64, true, 0);
	tl_test_set_roles(&def, "t", "a", "id");
	assert_int_equal(tl_schema_compile(&def, &lim, &s, msg, sizeof(msg)), 0);
	return s;
}

struct fx {
	struct tl_schema *s;
	struct tl_encoder *enc;
	struct tl_event ev;
	uint8_t line[1 << 17];
};

/* level: 0 stores plainly, 1..12 gzips at that level, LZ4 (-1) uses LZ4. */
#define LZ4 (-1)

static struct tl_encode_conf
conf_of(uint32_t rows, uint32_t bytes, int level)
{
	struct tl_encode_conf c = {
	        .appliance_id = APPL,
	        .producer = 3,
	        .batch_rows = rows,
	        .batch_bytes = bytes,
	        .codec = level == LZ4 ? TL_BATCH_CODEC_LZ4
	                 : level > 0  ? TL_BATCH_CODEC_GZIP
	                              : TL_BATCH_CODEC_NONE,
	        .gzip_level = level > 0 ? level : 0,
	        .schema_gen = 9,
	};

	return c;
}

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct tl_encode_conf c = conf_of(100, 1 << 20, 0);

	assert_non_null(f);
	f->s = all_types_schema();
	assert_int_equal(tl_encoder_create(f->s, TL_BATCH_SINK_OUTPUT, &c, &f->enc), 0);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;

	tl_encoder_free(f->enc);
	tl_schema_free(f->s);
	free(f);
	return 0;
}

/* Extract @p json into f->ev (kept in f->line so the event's pointers stay valid). */
static void
extract(struct fx *f, const char *json)
{
	size_t n = strlen(json);

	assert_true(n < sizeof(f->line));
	memcpy(f->line, json, n);
	assert_int_equal(tl_json_extract(f->s, f->line, (uint32_t)n, &f->ev), TL_REASON_OK);
}

/* The body of the only pending batch, sealed without gzip. */
static size_t
seal_plain(struct tl_encoder *enc, uint8_t *out, size_t cap, struct tl_batch_view *v)
{
	size_t len;

	assert_int_equal(tl_encode_seal(enc, out, cap, &len), 0);
	assert_int_equal(tl_batch_parse(out, len, v), 0);
	return len;
}

static uint8_t sealed[1 << 21];

static void
assert_single_row(struct fx *f, const struct exp *x)
{
	struct tl_batch_view v;

	assert_int_equal(tl_encode_pending(f->enc), 1);
	seal_plain(f->enc, sealed, sizeof(sealed), &v);
	assert_int_equal(v.hdr.rows, 1);
	assert_int_equal(v.raw_len, x->n);
	assert_int_equal(tl_batch_row_end(&v, 0), x->n);
	assert_memory_equal(v.body, x->b, x->n);
}

/* ---- rows ---- */

static void
test_encode_every_type_value_exact(void **state)
{
	struct fx *f = *state;
	static struct exp x;
	uint64_t bid = tl_encode_batch_id(f->enc);

	extract(f, "{\"id\":\"q1\",\"s\":\"x\\\"y\\u00e9\\n\",\"a\":{\"k\": [1,2]},"
	           "\"m\":{\"i\":-5,\"u\":18446744073709551615,\"zz\":1},\"f\":1.5,\"b\":true,"
	           "\"t\":\"2024-01-02T03:04:05.123456789Z\",\"t2\":\"1969-12-31T23:59:59.5Z\","
	           "\"ri\":7,\"unk\":\"v\"}");
	assert_int_equal(tl_encode_event(f->enc, &f->ev, NOW), 0);

	x.n = 0;
	x_cstr(&x, "q1"); /* id String */
	x_u8(&x, 0);      /* s Nullable(String) */
	x_str(&x, "x\"y\xc3\xa9\n", 6);
	x_u8(&x, 0); /* a: verbatim JSON */
	x_cstr(&x, "{\"k\": [1,2]}");
	x_u8(&x, 0); /* i */
	x_bytes(&x, "\xfb\xff\xff\xff\xff\xff\xff\xff", 8);
	x_u8(&x, 0); /* u */
	x_bytes(&x, "\xff\xff\xff\xff\xff\xff\xff\xff", 8);
	x_u8(&x, 0); /* f = 1.5 */
	x_bytes(&x, "\x00\x00\x00\x00\x00\x00\xf8\x3f", 8);
	x_u8(&x, 0); /* b */
	x_u8(&x, 1);
	x_le(&x, 1704164645, 4);                    /* t DateTime */
	x_le(&x, UINT64_C(1704164645123456789), 8); /* t_ns */
	x_u8(&x, 0);                                /* t2: before 1970 */
	x_le(&x, 0, 4);
	x_u8(&x, 0);
	x_le(&x, (uint64_t)INT64_C(-500000000), 8);
	x_le(&x, 7, 8); /* ri Int64 */
	x_tail(&x, 0, NOW, bid, "{\"m.zz\":1,\"unk\":\"v\"}");
	assert_single_row(f, &x);
}

static void
test_encode_absent_and_null_both_null(void **state)
{
	struct fx *f = *state;
	static struct exp x, x2;
	uint64_t bid = tl_encode_batch_id(f->enc);
	struct tl_batch_view v;

	extract(f, "{\"id\":\"q\",\"t\":\"2024-01-02T03:04:05Z\",\"ri\":0}");
	assert_int_equal(tl_encode_event(f->enc, &f->ev, NOW), 0);
	extract(f, "{\"id\":\"q\",\"s\":null,\"a\":null,\"m\":{\"i\":null,\"u\":null},\"f\":null,"
	           "\"b\":null,\"t\":\"2024-01-02T03:04:05Z\",\"t2\":null,\"ri\":0}");
	assert_int_equal(tl_encode_event(f->enc, &f->ev, NOW), 0);

	x.n = 0;
	x_cstr(&x, "q");
	for (int i = 0; i < 6; i++)
		x_u8(&x, 1); /* s a i u f b: NULL, nothing follows */
	x_le(&x, 1704164645, 4);
	x_le(&x, UINT64_C(1704164645000000000), 8);
	x_u8(&x, 1); /* t2 NULL */
	x_u8(&x, 1); /* t2_ns NULL */
	x_le(&x, 0, 8);
	x_tail(&x, 0, NOW, bid, "{}");
	/* Both rows are identical, event_id included: null == absent. */
	memcpy(&x2, &x, sizeof(x));
	x_bytes(&x2, x.b, x.n);

	seal_plain(f->enc, sealed, sizeof(sealed), &v);
	assert_int_equal(v.hdr.rows, 2);
	assert_int_equal(tl_batch_row_end(&v, 0), x.n);
	assert_int_equal(tl_batch_row_end(&v, 1), 2 * x.n);
	assert_memory_equal(v.body, x2.b, x2.n);
}

static void
test_encode_escapes_and_non_ascii_decoded(void **state)
{
	struct fx *f = *state;
	static struct exp x;
	static char json[70000];
	static uint8_t dec[40000];
	static const char s_dec[] = "\"\\/\b\f\n\r\t\0\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"
	                            "\xce\xa9\xe2\x82\xac\xf0\x9f\x98\x80";
	uint64_t bid = tl_encode_batch_id(f->enc);
	size_t dn = 0, o;
	struct tl_batch_view v;
	uint32_t off;

	/* s: every escape and raw UTF-8 (2, 3, 4 bytes); a: a string with escapes whose
	 * escaped length needs a 2-byte LEB128 and whose decoded length needs 1 (so the
	 * encoder must close the gap). */
	o = (size_t)snprintf(json, sizeof(json),
	        "{\"id\":\"\\u0071\\/\",\"s\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u0000\\u00e9"
	        "\\u20ac\\ud83d\\ude00\xce\xa9\xe2\x82\xac\xf0\x9f\x98\x80\",\"a\":\"");
	for (int i = 0; i < 30; i++)
		o += (size_t)snprintf(json + o, sizeof(json) - o, "\\u00e9");
	o += (size_t)snprintf(
	        json + o, sizeof(json) - o, "\",\"t\":\"2024-01-02T03:04:05Z\",\"ri\":1}");
	extract(f, json);
	assert_int_equal(tl_encode_event(f->enc, &f->ev, NOW), 0);

	x.n = 0;
	x_cstr(&x, "q/");
	x_u8(&x, 0);
	x_str(&x, s_dec, sizeof(s_dec) - 1);
	x_u8(&x, 0);
	for (int i = 0; i < 30; i++) {
		dec[dn++] = 0xc3;
		dec[dn++] = 0xa9;
	}
	x_str(&x, dec, dn); /* 60 < 128: a one-byte length */
	for (int i = 0; i < 4; i++)
		x_u8(&x, 1);
	x_le(&x, 1704164645, 4);
	x_le(&x, UINT64_C(1704164645000000000), 8);
	x_u8(&x, 1);
	x_u8(&x, 1);
	x_le(&x, 1, 8);
	x_tail(&x, 0, NOW, bid, "{}");
	assert_single_row(f, &x);

	/* 20000 bytes of escapes decoding to 10000 (LEB128: 3 bytes reserved, 2 used). */
	bid = tl_encode_batch_id(f->enc);
	o = (size_t)snprintf(json, sizeof(json), "{\"id\":\"q\",\"s\":\"");
	for (int i = 0; i < 10000; i++) {
		json[o++] = '\\';
		json[o++] = 'n';
	}
	o += (size_t)snprintf(json + o, sizeof(json) - o,
	        "\",\"t\":\"2024-01-02T03:04:05Z\","
	        "\"ri\":1}");
	extract(f, json);
	assert_int_equal(tl_encode_event(f->enc, &f->ev, NOW), 0);
	seal_plain(f->enc, sealed, sizeof(sealed), &v);
	off = 2; /* after "q": s's NULL flag, LEB128, bytes */
	assert_int_equal(v.body[off], 0);
	assert_int_equal(v.body[off + 1], 0x80 | (10000 & 0x7f));
	assert_int_equal(v.body[off + 2], 10000 >> 7);
	for (uint32_t i = 0; i < 10000; i++)
		if (v.body[off + 3 + i] != '\n')
			fail_msg("byte %u is %02x", i, v.body[off + 3 + i]);
	/* Right after the string: a (absent) NULL flag. */
	assert_int_equal(v.body[off + 3 + 10000], 1);
	assert_int_equal(v.hdr.batch_id, bid);
}

static void
test_encode_datetime_out_of_range_clamped_ns_exact(void **state)
{
	struct fx *f = *state;
	static const struct {
		const char *ts;
		uint32_t secs;
		int64_t ns;
	} cases[] = {
	        {"1900-01-01T00:00:00Z", 0, INT64_C(-2208988800) * 1000000000},
	        {"1969-12-31T23:59:59.999999999Z", 0, -1},
	        {"1970-01-01T00:00:00Z", 0, 0},
	        {"2106-02-07T06:28:15.999Z", UINT32_MAX, INT64_C(4294967295999000000)},
	        {"2106-02-07T06:28:16Z", UINT32_MAX, INT64_C(4294967296) * 1000000000},
	        {"2200-01-01T00:00:00+01:00", UINT32_MAX, INT64_C(7258114800) * 1000000000},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char json[256];
		struct tl_batch_view v;
		const uint8_t *p;

		snprintf(json, sizeof(json), "{\"id\":\"q\",\"t\":\"%s\",\"t2\":\"%s\",\"ri\":1}",
		        cases[i].ts, cases[i].ts);
		extract(f, json);
		assert_int_equal(tl_encode_event(f->enc, &f->ev, NOW), 0);
		seal_plain(f->enc, sealed, sizeof(sealed), &v);
		p = v.body + 2 + 6; /* id "q", six NULL flags */
		assert_int_equal(tl_batch_le32(p), cases[i].secs);
		assert_int_equal((int64_t)tl_batch_le64(p + 4), cases[i].ns);
		assert_int_equal(p[12], 0); /* t2 not NULL */
		assert_int_equal(tl_batch_le32(p + 13), cases[i].secs);
		assert_int_equal(p[17], 0);
		assert_int_equal((int64_t)tl_batch_le64(p + 18), cases[i].ns);
		assert_int_equal(v.hdr.min_event_ns, cases[i].ns);
		assert_int_equal(v.hdr.max_event_ns, cases[i].ns);
	}
}

static void
test_encode_ingestion_time_before_1970_clamped(void **state)
{
	struct fx *f = *state;
	struct tl_batch_view v;
	const uint8_t *p;

	extract(f, "{\"id\":\"q\",\"t\":\"2024-01-02T03:04:05Z\",\"ri\":1}");
	assert_int_equal(tl_encode_event(f->enc, &f->ev, -1500000000), 0);
	seal_plain(f->enc, sealed, sizeof(sealed), &v);
	p = v.body + 2 + 6 + 12 + 2 + 8;
	assert_int_equal(tl_batch_le32(p), 0);
	assert_int_equal((int64_t)tl_batch_le64(p + 4), -1500000000);
	assert_int_equal((int64_t)v.hdr.created_ns, -1500000000);
}

static void
test_encode_meta_written(void **state)
{
	struct fx *f = *state;
	struct tl_encode_meta m = {.producer_id = 0x1122334455667788ull, .sequence = 42, .late = 1};
	struct tl_batch_view v;
	const uint8_t *p;

	extract(f, "{\"id\":\"q\",\"t\":\"2024-01-02T03:04:05Z\",\"ri\":1}");
	assert_int_equal(tl_encode_event_meta(f->enc, &f->ev, &m, NOW), 0);
	seal_plain(f->enc, sealed, sizeof(sealed), &v);
	p = v.body + 2 + 6 + 12 + 2 + 8 + 4 + 8 + 16;
	assert_int_equal(tl_batch_le64(p), 0x1122334455667788ull);
	assert_int_equal(tl_batch_le64(p + 8), 42);
	assert_int_equal(p[16], 1);
}

static void
test_encode_event_id_canonical_same_for_respelled_event(void **state)
{
	struct fx *f = *state;
	uint8_t a[16], b[16], c[16], d[16];
	struct tl_batch_view v;

	extract(f, "{\"id\":\"q1\",\"t\":\"2024-01-02T03:04:05Z\",\"ri\":1,\"a\":{\"x\":1},"
	           "\"m\":{\"u\":5}}");
	assert_int_equal(tl_encode_event_id(f->enc, &f->ev, a), 0);
	/* Same event: other key order, whitespace, escapes, zone, unknown field. */
	extract(f, "{ \"m\" : {\"u\":5} , "
	           "\"a\":{\"x\":1},\"ri\":1,\"t\":\"2024-01-02T05:04:05+02:00\","
	           "\"id\":\"\\u0071\\u0031\",\"new\":true}");
	assert_int_equal(tl_encode_event_id(f->enc, &f->ev, b), 0);
	assert_memory_equal(a, b, 16);
	/* The id written into the row is the same. */
	assert_int_equal(tl_encode_event(f->enc, &f->ev, NOW), 0);
	seal_plain(f->enc, sealed, sizeof(sealed), &v);
	assert_memory_equal(
	        v.body + tl_batch_row_end(&v, 0) - (16 + 8 + 8 + 1 + 6 + 8 + 13 + 3), a, 16);
	/* A different payload (a) or time gives another id. */
	extract(f, "{\"id\":\"q1\",\"t\":\"2024-01-02T03:04:05Z\",\"ri\":1,\"a\":{\"x\":2},"
	           "\"m\":{\"u\":5}}");
	assert_int_equal(tl_encode_event_id(f->enc, &f->ev, c), 0);
	assert_memory_not_equal(a, c, 16);
	extract(f, "{\"id\":\"q1\",\"t\":\"2024-01-02T03:04:05.000000001Z\",\"ri\":1,"
	           "\"a\":{\"x\":1},\"m\":{\"u\":5}}");
	assert_int_equal(tl_encode_event_id(f->enc, &f->ev, d), 0);
	assert_memory_not_equal(a, d, 16);
	/* event_id does not touch the pending batch. */
	assert_int_equal(tl_encode_pending(f->enc), 0);
}

/* A row taken back (a duplicate found once its id is known) leaves the batch as before. */
static void
test_encode_drop_last_restores_batch(void **state)
{
	struct fx *f = *state;
	uint8_t id1[16], last[16];
	struct tl_batch_view v;

	assert_int_equal(tl_encode_drop_last(f->enc), -EINVAL);
	extract(f, "{\"id\":\"q1\",\"t\":\"2024-01-02T03:04:05Z\",\"ri\":1}");
	assert_int_equal(tl_encode_event_id(f->enc, &f->ev, id1), 0);
	assert_int_equal(tl_encode_event(f->enc, &f->ev, NOW), 0);
	tl_encode_last_id(f->enc, last);
	assert_memory_equal(last, id1, 16);
	extract(f, "{\"id\":\"q2\",\"t\":\"2024-01-02T03:04:06Z\",\"ri\":2}");
	assert_int_equal(tl_encode_event(f->enc, &f->ev, NOW), 0);
	tl_encode_last_id(f->enc, last);
	assert_memory_not_equal(last, id1, 16);
	assert_int_equal(tl_encode_pending(f->enc), 2);
	assert_int_equal(tl_encode_drop_last(f->enc), 0);
	assert_int_equal(tl_encode_pending(f->enc), 1);
	seal_plain(f->enc, sealed, sizeof(sealed), &v);
	assert_int_equal(v.hdr.rows, 1);
	assert_int_equal(tl_batch_row_end(&v, 0), v.raw_len);
	/* The row kept is the first one, id and all. */
	assert_non_null(memmem(v.body, v.raw_len, id1, 16));
}

static void
test_encode_table_for_routes(void **state)
{
	struct fx *f = *state;

	extract(f, "{\"id\":\"q\",\"t\":\"2024-01-02T03:04:05Z\",\"ri\":1}");
	assert_int_equal(tl_encode_table_for(&f->ev, TL_REASON_OK), TL_BATCH_SINK_OUTPUT);
	assert_int_equal(
	        tl_encode_table_for(&f->ev, TL_REASON_EV_JSON_SYNTAX), TL_BATCH_DEAD_LETTER);
	extract(f, "{\"id\":\"q\",\"t\":\"2024-01-02T03:04:05Z\",\"ri\":1,\"a\":\"boom\"}");
	assert_int_equal(tl_encode_table_for(&f->ev, TL_REASON_OK), TL_BATCH_ERROR_EVENTS);
	extract(f, "{\"id\":\"q\",\"t\":\"2024-01-02T03:04:05Z\",\"ri\":1,\"a\":\"\"}");
	assert_int_equal(tl_encode_table_for(&f->ev, TL_REASON_OK), TL_BATCH_SINK_OUTPUT);
}

/* ---- dead letter ---- */

static void
test_encode_reject_row_exact_and_raw_truncated(void **state)
{
	struct fx *f = *state;
	struct tl_encode_conf c = conf_of(10, 1 << 20, 0);
	struct tl_encoder *dl;
	static struct exp x;
	static uint8_t big[70000];
	struct tl_batch_view v;
	uint64_t bid;
	uint32_t rmax;

	assert_int_equal(tl_encoder_create(f->s, TL_BATCH_DEAD_LETTER, &c, &dl), 0);
	bid = tl_encode_batch_id(dl);
	rmax = tl_encode_raw_max(dl);
	assert_int_equal(rmax, 65535); /* max_event_size is 60 KiB */

	memcpy(f->line, "{\"id\":", 6);
	assert_int_equal(tl_json_extract(f->s, f->line, 6, &f->ev), TL_REASON_EV_JSON_SYNTAX);
	assert_int_equal(tl_encode_reject(dl, &f->ev, TL_REASON_EV_JSON_SYNTAX, NOW), 0);
	memset(big, 'z', sizeof(big));
	f->ev.raw = big;
	f->ev.raw_len = sizeof(big);
	assert_int_equal(tl_encode_reject(dl, &f->ev, TL_REASON_EV_TOO_LARGE, NOW + 1), 0);

	x.n = 0;
	x_le(&x, 1700000000, 4);
	x_le(&x, (uint64_t)NOW, 8);
	x_cstr(&x, APPL);
	x_le(&x, 0, 8);
	x_cstr(&x, "json_syntax");
	x_cstr(&x, "{\"id\":");
	x_le(&x, bid, 8);
	seal_plain(dl, sealed, sizeof(sealed), &v);
	assert_int_equal(v.hdr.table, TL_BATCH_DEAD_LETTER);
	assert_int_equal(v.hdr.rows, 2);
	assert_int_equal(tl_batch_row_end(&v, 0), x.n);
	assert_memory_equal(v.body, x.b, x.n);
	/* Second row: raw cut at raw_max (LEB128 ff ff 03). */
	{
		const uint8_t *p = v.body + x.n + 4 + 8 + 6 + 8;

		assert_int_equal(p[0], 15);
		assert_memory_equal(p + 1, "event_too_large", 15);
		p += 16;
		assert_int_equal(p[0], 0xff);
		assert_int_equal(p[1], 0xff);
		assert_int_equal(p[2], 0x03);
		assert_int_equal(p[3], 'z');
		assert_int_equal(p[3 + rmax - 1], 'z');
		assert_int_equal(tl_batch_le64(p + 3 + rmax), bid);
		assert_int_equal(v.body + v.raw_len, p + 3 + rmax + 8);
	}
	assert_int_equal(v.hdr.min_event_ns, NOW);
	assert_int_equal(v.hdr.max_event_ns, NOW + 1);
	tl_encoder_free(dl);
}

static void
test_encode_wrong_table_or_verdict_einval(void **state)
{
	struct fx *f = *state;
	struct tl_encode_conf c = conf_of(10, 1 << 20, 0);
	struct tl_encoder *dl;
	uint8_t id[16];

	assert_int_equal(tl_encoder_create(f->s, TL_BATCH_DEAD_LETTER, &c, &dl), 0);
	extract(f, "{\"id\":\"q\",\"t\":\"2024-01-02T03:04:05Z\",\"ri\":1}");
	assert_int_equal(tl_encode_event(dl, &f->ev, NOW), -EINVAL);
	assert_int_equal(tl_encode_event_id(dl, &f->ev, id), -EINVAL);
	assert_int_equal(tl_encode_reject(f->enc, &f->ev, TL_REASON_EV_JSON_SYNTAX, NOW), -EINVAL);
	assert_int_equal(tl_encode_reject(dl, &f->ev, TL_REASON_OK, NOW), -EINVAL);
	assert_int_equal(tl_encode_reject(dl, &f->ev, TL_REASON_MAX, NOW), -EINVAL);
	assert_int_equal(tl_encode_reject(dl, &f->ev, (enum tl_reason) - 1, NOW), -EINVAL);
	assert_int_equal(tl_encode_pending(dl), 0);
	assert_int_equal(tl_encode_pending(f->enc), 0);
	tl_encoder_free(dl);
}

/* ---- limits ---- */

static void
test_encode_full_by_rows_then_enobufs(void **state)
{
	struct fx *f = *state;
	struct tl_encode_conf c = conf_of(3, 1 << 20, 0);
	struct tl_encoder *e;
	struct tl_batch_view v;
	uint64_t bid;

	assert_int_equal(tl_encoder_create(f->s, TL_BATCH_SINK_OUTPUT, &c, &e), 0);
	extract(f, "{\"id\":\"q\",\"t\":\"2024-01-02T03:04:05Z\",\"ri\":1}");
	bid = tl_encode_batch_id(e);
	assert_int_equal(tl_encode_event(e, &f->ev, NOW), 0);
	assert_int_equal(tl_encode_event(e, &f->ev, NOW + 5), 0);
	assert_int_equal(tl_encode_event(e, &f->ev, NOW + 9), 1);
	assert_int_equal(tl_encode_event(e, &f->ev, NOW), -ENOBUFS);
	assert_int_equal(tl_encode_pending(e), 3);
	assert_int_equal(tl_encode_first_ns(e), NOW);
	seal_plain(e, sealed, sizeof(sealed), &v);
	assert_int_equal(v.hdr.rows, 3);
	assert_int_equal(v.hdr.batch_id, bid);
	assert_int_equal((int64_t)v.hdr.created_ns, NOW);
	/* The next batch has the next id, in its header and its rows. */
	assert_int_equal(tl_encode_batch_id(e), bid + 1);
	assert_int_equal(tl_encode_pending(e), 0);
	assert_int_equal(tl_encode_event(e, &f->ev, NOW), 0);
	seal_plain(e, sealed, sizeof(sealed), &v);
	assert_int_equal(v.hdr.batch_id, bid + 1);
	assert_int_equal(tl_batch_le64(v.body + v.raw_len - 8 - 3 - 3), bid + 1);
	tl_encoder_free(e);
}

static void
test_encode_full_by_bytes(void **state)
{
	struct fx *f = *state;
	struct tl_encode_conf c = conf_of(1000, 1, 0);
	struct tl_encoder *e;
	struct tl_batch_view v;
	uint32_t row;

	/* batch_bytes 1: every row fills the batch. */
	assert_int_equal(tl_encoder_create(f->s, TL_BATCH_SINK_OUTPUT, &c, &e), 0);
	extract(f, "{\"id\":\"q\",\"t\":\"2024-01-02T03:04:05Z\",\"ri\":1}");
	assert_int_equal(tl_encode_event(e, &f->ev, NOW), 1);
	seal_plain(e, sealed, sizeof(sealed), &v);
	row = v.raw_len;
	tl_encoder_free(e);

	/* Full when the body reaches batch_bytes: at the third row of 2.5 rows' worth. */
	c.batch_bytes = row * 2 + row / 2;
	assert_int_equal(tl_encoder_create(f->s, TL_BATCH_SINK_OUTPUT, &c, &e), 0);
	assert_int_equal(tl_encode_event(e, &f->ev, NOW), 0);
	assert_int_equal(tl_encode_event(e, &f->ev, NOW), 0);
	assert_int_equal(tl_encode_event(e, &f->ev, NOW), 1);
	tl_encoder_free(e);
	/* Exactly two rows' worth: full at the second. */
	c.batch_bytes = row * 2;
	assert_int_equal(tl_encoder_create(f->s, TL_BATCH_SINK_OUTPUT, &c, &e), 0);
	assert_int_equal(tl_encode_event(e, &f->ev, NOW), 0);
	assert_int_equal(tl_encode_event(e, &f->ev, NOW), 1);
	tl_encoder_free(e);
}

static void
test_encode_oversized_handmade_event_e2big_enobufs(void **state)
{
	struct fx *f = *state;
	struct tl_encode_conf c = conf_of(1000, 1000, 0);
	struct tl_encoder *e;
	static uint8_t big[200000];
	struct tl_event *ev = &f->ev;
	uint8_t id[16];

	assert_int_equal(tl_encoder_create(f->s, TL_BATCH_SINK_OUTPUT, &c, &e), 0);
	extract(f, "{\"id\":\"q\",\"t\":\"2024-01-02T03:04:05Z\",\"ri\":1}");
	assert_int_equal(tl_encode_event(e, ev, NOW), 0);
	/* A value longer than any event the schema allows: it can never fit. */
	memset(big, 'x', sizeof(big));
	ev->col[1].kind = TL_VAL_STRING;
	ev->col[1].ptr = big;
	ev->col[1].len = sizeof(big);
	assert_int_equal(tl_encode_event(e, ev, NOW), -E2BIG);
	assert_int_equal(tl_encode_event_id(e, ev, id), -E2BIG);
	/* One that fits an empty batch but not what remains of this one. */
	ev->col[1].len = 60000;
	assert_int_equal(tl_encode_event(e, ev, NOW), 1);
	assert_int_equal(tl_encode_pending(e), 2);
	ev->col[1].len = 10000;
	assert_int_equal(tl_encode_event(e, ev, NOW), -ENOBUFS);
	assert_int_equal(tl_encode_pending(e), 2);
	tl_encoder_free(e);

	/* Many long unknown fields (hand-made): bounded too. */
	c.batch_bytes = 10;
	assert_int_equal(tl_encoder_create(f->s, TL_BATCH_SINK_OUTPUT, &c, &e), 0);
	extract(f, "{\"id\":\"q\",\"t\":\"2024-01-02T03:04:05Z\",\"ri\":1}");
	ev->n_extra = TL_EVENT_MAX_EXTRA;
	for (int i = 0; i < TL_EVENT_MAX_EXTRA; i++) {
		ev->extra[i].key = big;
		ev->extra[i].key_len = 3000;
		ev->extra[i].val = big;
		ev->extra[i].val_len = 3000;
		ev->extra[i].parent = -1;
	}
	assert_int_equal(tl_encode_event(e, ev, NOW), -E2BIG);
	ev->n_extra = TL_EVENT_MAX_EXTRA + 1;
	assert_int_equal(tl_encode_event(e, ev, NOW), -EINVAL);
	ev->n_extra = 4;
	assert_int_equal(tl_encode_event(e, ev, NOW), 1);
	tl_encoder_free(e);
}

static void
test_encoder_create_bad_conf_einval(void **state)
{
	struct fx *f = *state;
	struct tl_encoder *e = (struct tl_encoder *)1;
	struct tl_encode_conf c;
	char longid[300];

	c = conf_of(0, 100, 0);
	assert_int_equal(tl_encoder_create(f->s, TL_BATCH_SINK_OUTPUT, &c, &e), -EINVAL);
	assert_null(e);
	c = conf_of(TL_BATCH_MAX_ROWS + 1, 100, 0);
	assert_int_equal(tl_encoder_create(f->s, TL_BATCH_SINK_OUTPUT, &c, &e), -EINVAL);
	c = conf_of(10, 0, 0);
	assert_int_equal(tl_encoder_create(f->s, TL_BATCH_SINK_OUTPUT, &c, &e), -EINVAL);
	c = conf_of(10, TL_BATCH_MAX_BODY, 0);
	assert_int_equal(tl_encoder_create(f->s, TL_BATCH_SINK_OUTPUT, &c, &e), -EINVAL);
	c = conf_of(10, 100, 13);
	assert_int_equal(tl_encoder_create(f->s, TL_BATCH_SINK_OUTPUT, &c, &e), -EINVAL);
	c = conf_of(10, 100, 0);
	c.codec = -1;
	assert_int_equal(tl_encoder_create(f->s, TL_BATCH_SINK_OUTPUT, &c, &e), -EINVAL);
	c = conf_of(10, 100, 0);
	c.appliance_id = NULL;
	assert_int_equal(tl_encoder_create(f->s, TL_BATCH_SINK_OUTPUT, &c, &e), -EINVAL);
	memset(longid, 'a', sizeof(longid));
	longid[TL_ENCODE_APPLIANCE_MAX + 1] = '\0';
	c.appliance_id = longid;
	assert_int_equal(tl_encoder_create(f->s, TL_BATCH_SINK_OUTPUT, &c, &e), -EINVAL);
	longid[TL_ENCODE_APPLIANCE_MAX] = '\0';
	assert_int_equal(tl_encoder_create(f->s, TL_BATCH_SINK_OUTPUT, &c, &e), 0);
	tl_encoder_free(e);
	c = conf_of(10, 100, 0);
	assert_int_equal(tl_encoder_create(f->s, TL_BATCH_TABLE_MAX, &c, &e), -EINVAL);
	assert_int_equal(tl_encoder_create(NULL, TL_BATCH_SINK_OUTPUT, &c, &e), -EINVAL);
	assert_int_equal(tl_encoder_create(f->s, TL_BATCH_SINK_OUTPUT, NULL, &e), -EINVAL);
	tl_encoder_free(NULL);
}

static void
test_encode_columns_name_collision_schema_error(void **state)
{
	static const char *const clash[][2] = {{"extra", "x"}, {"batch_id", "x"}, {"t_ns", "x"}};
	struct tl_encode_conf c = conf_of(10, 100, 0);
	struct tl_limits lim = tl_test_e6data_limits();
	struct tl_encode_col cols[TL_ENCODE_MAX_COLS];
	uint32_t n;

	(void)state;
	for (size_t i = 0; i < sizeof(clash) / sizeof(clash[0]); i++) {
		struct tl_schema_def def;
		struct tl_schema *s;
		struct tl_encoder *e;

		memset(&def, 0, sizeof(def));
		tl_test_add_col(&def, "id", "id", TL_COL_STRING, true, 0);
		tl_test_add_col(&def, "t", "t", TL_COL_DATETIME, true, 0);
		tl_test_add_col(&def, clash[i][0], clash[i][1], TL_COL_STRING, false, 0);
		tl_test_set_roles(&def, "t", "id", "id");
		assert_int_equal(tl_schema_compile(&def, &lim, &s, NULL, 0), 0);
		assert_int_equal(
		        tl_encode_columns(s, TL_BATCH_SINK_OUTPUT, cols, TL_ENCODE_MAX_COLS, &n),
		        TL_E_SCHEMA);
		assert_int_equal(tl_encoder_create(s, TL_BATCH_ERROR_EVENTS, &c, &e), TL_E_SCHEMA);
		/* dead_letter has no profile columns: fine. */
		assert_int_equal(tl_encode_columns(s, TL_BATCH_DEAD_LETTER, cols, 7, &n), 0);
		assert_int_equal(n, 7);
		tl_schema_free(s);
	}
}

static void
test_encode_columns_e6data_order_and_types(void **state)
{
	static const char *const want[][2] = {
	        {"query_id", "String"},
	        {"event_type", "String"},
	        {"event_time", "DateTime"},
	        {"event_time_ns", "Int64"},
	        {"query_text", "Nullable(String)"},
	        {"user_id", "Nullable(String)"},
	        {"database_name", "Nullable(String)"},
	        {"duration_ms", "Nullable(UInt64)"},
	        {"rows_affected", "Nullable(UInt64)"},
	        {"error", "Nullable(String)"},
	        {"payload", "Nullable(String)"},
	        {"ingestion_time", "DateTime"},
	        {"ingestion_time_ns", "Int64"},
	        {"event_id", "FixedString(16)"},
	        {"producer_id", "UInt64"},
	        {"sequence", "UInt64"},
	        {"late", "UInt8"},
	        {"appliance_id", "String"},
	        {"batch_id", "UInt64"},
	        {"extra", "String"},
	        {"matched_patterns", "Array(String)"},
	        {"categories", "Array(String)"},
	        {"severity", "Enum8('none' = 0, 'info' = 1, 'warning' = 2, 'error' = 3, "
	                     "'critical' = 4)"},
	};
	struct tl_schema_def def;
	struct tl_limits lim = tl_test_e6data_limits();
	struct tl_encode_col cols[TL_ENCODE_MAX_COLS];
	struct tl_schema *s;
	uint32_t n;

	(void)state;
	tl_test_e6data_def(&def);
	assert_int_equal(tl_schema_compile(&def, &lim, &s, NULL, 0), 0);
	assert_int_equal(
	        tl_encode_columns(s, TL_BATCH_ERROR_EVENTS, cols, TL_ENCODE_MAX_COLS, &n), 0);
	assert_int_equal(n, sizeof(want) / sizeof(want[0]));
	for (uint32_t i = 0; i < n; i++) {
		assert_string_equal(cols[i].name, want[i][0]);
		assert_string_equal(cols[i].type, want[i][1]);
	}
	assert_int_equal(tl_encode_columns(s, TL_BATCH_SINK_OUTPUT, cols, 5, &n), -ENOSPC);
	assert_int_equal(
	        tl_encode_columns(s, TL_BATCH_TABLE_MAX, cols, TL_ENCODE_MAX_COLS, &n), -EINVAL);
	assert_int_equal(
	        tl_encode_columns(NULL, TL_BATCH_SINK_OUTPUT, cols, TL_ENCODE_MAX_COLS, &n),
	        -EINVAL);
	assert_int_equal(
	        tl_encode_columns(NULL, TL_BATCH_DEAD_LETTER, cols, TL_ENCODE_MAX_COLS, &n), 0);
	assert_int_equal(n, 7);
	tl_schema_free(s);
}

/* ---- sealing ---- */

/* Append a few varied events to @p e; return the uncompressed rows expected. */
static void
append_mix(struct fx *f, struct tl_encoder *e, int n)
{
	for (int i = 0; i < n; i++) {
		char json[512];

		snprintf(json, sizeof(json),
		        "{\"id\":\"q%d\",\"s\":\"text %d text text "
		        "text\",\"t\":\"2024-01-02T03:04:%02dZ\","
		        "\"ri\":%d,\"m\":{\"u\":%d},\"x%d\":[%d]}",
		        i, i, i % 60, i, i * 7, i % 3, i);
		extract(f, json);
		assert_true(tl_encode_event(e, &f->ev, NOW + i) >= 0);
	}
}

/*
 * The @p n rows of append_mix() in @p body (a decompressed body) equal the plain batch
 * @p v0's but for batch_id, which sits right before extra ({"x<i%3>":[<i>]}) and the
 * classification (two empty arrays and severity none).
 */
static void
same_rows_but_batch_id(const struct tl_batch_view *v0, const uint8_t *body, uint64_t id, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		uint32_t st = tl_batch_row_start(v0, i), len = tl_batch_row_end(v0, i) - st;
		const uint8_t *r0 = v0->body + st, *r1 = body + st;
		char xs[64];
		size_t xl = (size_t)snprintf(xs, sizeof(xs), "{\"x%u\":[%u]}", i % 3, i);
		size_t id_at = len - 3 - xl - 1 - 8; /* before extra and the 3 classify bytes */

		assert_memory_equal(r0 + len - 3 - xl, xs, xl);
		assert_int_equal(r0[len - 3 - xl - 1], xl);
		assert_memory_equal(r0 + len - 3, "\0\0\0", 3);
		assert_int_equal(tl_batch_le64(r0 + id_at), v0->hdr.batch_id);
		assert_int_equal(tl_batch_le64(r1 + id_at), id);
		assert_memory_equal(r0, r1, id_at);
		assert_memory_equal(r0 + id_at + 8, r1 + id_at + 8, len - id_at - 8);
	}
}

static void
test_encode_seal_gzip_inflates_to_plain_body(void **state)
{
	struct fx *f = *state;
	static uint8_t plain[1 << 20], gz[1 << 20], out[1 << 20];
	struct tl_encode_conf c0 = conf_of(1000, 1 << 20, 0), c6 = conf_of(1000, 1 << 20, 6);
	struct tl_encoder *e0, *e6;
	struct tl_batch_view v0, v6;
	const uint8_t *body;
	size_t l0, l6;

	assert_int_equal(tl_encoder_create(f->s, TL_BATCH_SINK_OUTPUT, &c0, &e0), 0);
	assert_int_equal(tl_encoder_create(f->s, TL_BATCH_SINK_OUTPUT, &c6, &e6), 0);
	append_mix(f, e0, 200);
	append_mix(f, e6, 200);
	assert_int_equal(tl_encode_seal(e0, plain, sizeof(plain), &l0), 0);
	assert_true(tl_encode_seal_max(e6) >= 64 + 4 * 1000);
	assert_int_equal(tl_encode_seal(e6, gz, sizeof(gz), &l6), 0);
	assert_int_equal(tl_batch_parse(plain, l0, &v0), 0);
	assert_int_equal(tl_batch_parse(gz, l6, &v6), 0);
	assert_int_equal(v0.hdr.flags, 0);
	assert_int_equal(v6.hdr.flags, TL_BATCH_F_GZIP);
	assert_true(v6.hdr.body_len < v0.hdr.body_len / 3);
	assert_int_equal(v6.raw_len, v0.raw_len);
	assert_memory_equal(v6.row_end, v0.row_end, 4 * 200);
	/* Plain body: returned in place. */
	assert_int_equal(tl_batch_inflate(&v0, NULL, 0, &body), 0);
	assert_ptr_equal(body, v0.body);
	assert_int_equal(tl_batch_inflate(&v6, out, v6.raw_len - 1, &body), -ENOSPC);
	assert_int_equal(tl_batch_inflate(&v6, out, sizeof(out), &body), 0);
	assert_ptr_equal(body, out);
	same_rows_but_batch_id(&v0, out, v6.hdr.batch_id, 200);
	/* The header's other fields. */
	assert_int_equal(v6.hdr.producer, 3);
	assert_int_equal(v6.hdr.schema_gen, 9);
	assert_int_equal(v6.hdr.table, TL_BATCH_SINK_OUTPUT);
	assert_int_equal(
	        v6.hdr.min_event_ns, INT64_C(1704164645000000000) - 5 * INT64_C(1000000000));
	assert_int_equal(
	        v6.hdr.max_event_ns, INT64_C(1704164645000000000) + 54 * INT64_C(1000000000));
	tl_encoder_free(e0);
	tl_encoder_free(e6);
}

static void
test_encode_seal_header_bytes_exact(void **state)
{
	struct fx *f = *state;
	uint8_t h[TL_BATCH_HDR_LEN];
	size_t len;
	uint64_t bid = tl_encode_batch_id(f->enc);
	struct tl_batch_view v;

	append_mix(f, f->enc, 2);
	assert_int_equal(tl_encode_seal(f->enc, sealed, sizeof(sealed), &len), 0);
	assert_int_equal(tl_batch_parse(sealed, len, &v), 0);
	memcpy(h, "TLB1\x01\x00\x00\x00\x00\x00\x03\x00\x02\x00\x00\x00", 16);
	tl_batch_put32(h + 16, v.raw_len);
	memcpy(h + 20, "\x08\x00\x00\x00", 4);
	tl_batch_put64(h + 24, bid);
	tl_batch_put64(h + 32, (uint64_t)NOW);
	tl_batch_put64(h + 40, (uint64_t)INT64_C(1704164640000000000));
	tl_batch_put64(h + 48, (uint64_t)INT64_C(1704164641000000000));
	memcpy(h + 56, "\x09\x00\x00\x00\x00\x00\x00\x00", 8);
	assert_memory_equal(sealed, h, sizeof(h));
	assert_int_equal(len, TL_BATCH_HDR_LEN + 8 + v.raw_len);
}

static void
test_encode_seal_small_buffer_enospc_keeps_batch(void **state)
{
	struct fx *f = *state;
	struct tl_encode_conf c = conf_of(1000, 1 << 20, 1);
	struct tl_encoder *e;
	size_t len = 99, full;
	struct tl_batch_view v;

	assert_int_equal(tl_encode_seal(f->enc, sealed, sizeof(sealed), &len), -ENODATA);
	assert_int_equal(len, 0);
	append_mix(f, f->enc, 3);
	assert_int_equal(tl_encode_seal(f->enc, sealed, 10, &len), -ENOSPC);
	assert_int_equal(tl_encode_seal(f->enc, sealed, TL_BATCH_HDR_LEN + 12, &len), -ENOSPC);
	assert_int_equal(tl_encode_pending(f->enc), 3);
	assert_int_equal(tl_encode_seal(f->enc, sealed, sizeof(sealed), &full), 0);
	tl_encoder_free(f->enc);
	f->enc = NULL;

	assert_int_equal(tl_encoder_create(f->s, TL_BATCH_SINK_OUTPUT, &c, &e), 0);
	append_mix(f, e, 3);
	assert_int_equal(tl_encode_seal(e, sealed, TL_BATCH_HDR_LEN + 12 + 20, &len), -ENOSPC);
	assert_int_equal(tl_encode_pending(e), 3);
	assert_int_equal(tl_encode_seal(e, sealed, sizeof(sealed), &len), 0);
	assert_int_equal(tl_batch_parse(sealed, len, &v), 0);
	assert_int_equal(v.hdr.rows, 3);
	tl_encoder_free(e);
}

/* ---- tl_batch_parse on hostile input ---- */

static size_t
valid_batch(struct fx *f, int level, uint8_t *out, size_t cap)
{
	struct tl_encode_conf c = conf_of(1000, 1 << 20, level);
	struct tl_encoder *e;
	size_t len;

	assert_int_equal(tl_encoder_create(f->s, TL_BATCH_SINK_OUTPUT, &c, &e), 0);
	append_mix(f, e, 5);
	assert_int_equal(tl_encode_seal(e, out, cap, &len), 0);
	tl_encoder_free(e);
	return len;
}

/* Parse a copy of buf[0, len) in an exact-size allocation; also inflate if it parses. */
static int
parse_copy(const uint8_t *buf, size_t len)
{
	uint8_t *copy = malloc(len ? len : 1);
	struct tl_batch_view v;
	int rc;

	assert_non_null(copy);
	memcpy(copy, buf, len);
	rc = tl_batch_parse(copy, len, &v);
	if (rc == 0) {
		uint8_t *out = malloc(v.raw_len ? v.raw_len : 1);
		const uint8_t *body;

		assert_non_null(out);
		if (tl_batch_inflate(&v, out, v.raw_len, &body) == 0) {
			/* Every row span lies inside the body. */
			for (uint32_t i = 0; i < v.hdr.rows; i++)
				assert_true(tl_batch_row_end(&v, i) <= v.raw_len);
			volatile uint8_t sink = 0;

			if (v.raw_len)
				sink = (uint8_t)(body[0] + body[v.raw_len - 1]);
			(void)sink;
		}
		free(out);
	}
	free(copy);
	return rc;
}

static void
test_batch_parse_truncated_every_byte_ebadmsg(void **state)
{
	struct fx *f = *state;
	static uint8_t b[1 << 16];

	for (int level = 0; level <= 6; level += 6) {
		size_t len = valid_batch(f, level, b, sizeof(b));

		assert_int_equal(parse_copy(b, len), 0);
		for (size_t n = 0; n < len; n++)
			assert_int_equal(parse_copy(b, n), -EBADMSG);
		assert_int_equal(tl_batch_parse(NULL, 100, NULL), -EBADMSG);
	}
}

static void
test_batch_parse_bad_fields_rejected(void **state)
{
	struct fx *f = *state;
	static uint8_t b[1 << 16], m[1 << 16];
	size_t len = valid_batch(f, 0, b, sizeof(b));
	struct tl_batch_view v;

	assert_int_equal(tl_batch_parse(b, len, &v), 0);
	assert_int_equal(v.hdr.rows, 5);
#define MUT(stmt, want)                                                                            \
	do {                                                                                       \
		memcpy(m, b, len);                                                                 \
		stmt;                                                                              \
		assert_int_equal(parse_copy(m, len), want);                                        \
	} while (0)
	MUT(m[0] = 'X', -EBADMSG);       /* magic */
	MUT(m[4] = 2, -EPROTONOSUPPORT); /* version */
	MUT(m[4] = 0, -EPROTONOSUPPORT);
	MUT(m[6] = 4, -EPROTONOSUPPORT); /* unknown flag */
	MUT(m[7] = 0x80, -EPROTONOSUPPORT);
	MUT(m[8] = TL_BATCH_TABLE_MAX, -EBADMSG);          /* table */
	MUT(tl_batch_put32(m + 12, 0), -EBADMSG);          /* rows 0 */
	MUT(tl_batch_put32(m + 12, 4), -EBADMSG);          /* rows != offsets_len/4 */
	MUT(tl_batch_put32(m + 12, 0x40000005), -EBADMSG); /* 4*rows wraps to 20 */
	MUT(tl_batch_put32(m + 12, TL_BATCH_MAX_ROWS + 1), -EBADMSG);
	MUT(tl_batch_put32(m + 16, 0xffffffff), -EBADMSG); /* body_len */
	MUT(tl_batch_put32(m + 16, tl_batch_le32(b + 16) - 1), -EBADMSG);
	MUT(tl_batch_put32(m + 20, 0xfffffffc), -EBADMSG); /* offsets_len */
	MUT(tl_batch_put32(m + 20, 16), -EBADMSG);
	MUT(tl_batch_put64(m + 40, (uint64_t)INT64_MAX), -EBADMSG);   /* min > max */
	MUT(tl_batch_put32(m + 64, 0), -EBADMSG);                     /* first end 0 */
	MUT(tl_batch_put32(m + 68, tl_batch_le32(b + 64)), -EBADMSG); /* not increasing */
	MUT(tl_batch_put32(m + 68, tl_batch_le32(b + 64) - 1), -EBADMSG);
	MUT(tl_batch_put32(m + 80, tl_batch_le32(b + 80) + 1), -EBADMSG); /* last != body */
	MUT(tl_batch_put32(m + 80, tl_batch_le32(b + 80) - 1), -EBADMSG);
	/* Harmless fields: producer, batch id, created, schema_gen. */
	MUT((m[10] = 0xff, tl_batch_put64(m + 24, 1), tl_batch_put64(m + 32, 0),
	            tl_batch_put32(m + 56, 0xffffffff)),
	        0);
#undef MUT
}

static void
test_batch_inflate_corrupt_gzip_ebadmsg(void **state)
{
	struct fx *f = *state;
	static uint8_t b[1 << 16], m[1 << 16], out[1 << 17];
	size_t len = valid_batch(f, 6, b, sizeof(b));
	struct tl_batch_view v;
	const uint8_t *body;
	size_t body_at;

	assert_int_equal(tl_batch_parse(b, len, &v), 0);
	body_at = (size_t)(v.body - b);
	/* A row end claiming more than the member inflates to. */
	memcpy(m, b, len);
	tl_batch_put32(m + 80, tl_batch_le32(b + 80) + 1);
	assert_int_equal(tl_batch_parse(m, len, &v), 0);
	assert_int_equal(tl_batch_inflate(&v, out, sizeof(out), &body), -EBADMSG);
	/* ... or less. */
	tl_batch_put32(m + 80, tl_batch_le32(b + 80) - 1);
	assert_int_equal(tl_batch_parse(m, len, &v), 0);
	assert_int_equal(tl_batch_inflate(&v, out, sizeof(out), &body), -EBADMSG);
	/* A last row end past TL_BATCH_MAX_BODY is refused before any allocation. */
	tl_batch_put32(m + 80, TL_BATCH_MAX_BODY + 1);
	assert_int_equal(tl_batch_parse(m, len, &v), -EBADMSG);
	/* Damaged member: bad header byte, flipped payload bit, bad trailer. */
	for (size_t at = body_at; at < len; at += (len - body_at) / 7 + 1) {
		memcpy(m, b, len);
		m[at] ^= 0x5a;
		assert_int_equal(tl_batch_parse(m, len, &v), 0);
		assert_int_equal(tl_batch_inflate(&v, out, sizeof(out), &body), -EBADMSG);
	}
	memcpy(m, b, len);
	m[len - 1] ^= 1; /* ISIZE */
	assert_int_equal(tl_batch_parse(m, len, &v), 0);
	assert_int_equal(tl_batch_inflate(&v, out, sizeof(out), &body), -EBADMSG);
}

static void
test_encode_seal_lz4_inflates_to_plain_body(void **state)
{
	struct fx *f = *state;
	static uint8_t plain[1 << 20], lz[1 << 20], out[1 << 20];
	struct tl_encode_conf c0 = conf_of(1000, 1 << 20, 0), cl = conf_of(1000, 1 << 20, LZ4);
	struct tl_encoder *e0, *el;
	struct tl_batch_view v0, vl;
	const uint8_t *body;
	size_t l0, ll;

	assert_int_equal(tl_encoder_create(f->s, TL_BATCH_SINK_OUTPUT, &c0, &e0), 0);
	assert_int_equal(tl_encoder_create(f->s, TL_BATCH_SINK_OUTPUT, &cl, &el), 0);
	append_mix(f, e0, 300);
	append_mix(f, el, 300);
	assert_int_equal(tl_encode_seal(e0, plain, sizeof(plain), &l0), 0);
	assert_int_equal(tl_encode_seal(el, lz, sizeof(lz), &ll), 0);
	assert_int_equal(tl_batch_parse(plain, l0, &v0), 0);
	assert_int_equal(tl_batch_parse(lz, ll, &vl), 0);
	assert_int_equal(vl.hdr.flags, TL_BATCH_F_LZ4);
	assert_true(vl.hdr.body_len < v0.hdr.body_len / 2);
	assert_int_equal(vl.raw_len, v0.raw_len);
	assert_memory_equal(vl.row_end, v0.row_end, 4 * 300);
	assert_int_equal(tl_batch_inflate(&vl, out, vl.raw_len - 1, &body), -ENOSPC);
	assert_int_equal(tl_batch_inflate(&vl, out, sizeof(out), &body), 0);
	assert_ptr_equal(body, out);
	same_rows_but_batch_id(&v0, out, vl.hdr.batch_id, 300);
	tl_encoder_free(e0);
	tl_encoder_free(el);
}

static void
test_batch_inflate_corrupt_lz4_ebadmsg(void **state)
{
	struct fx *f = *state;
	static uint8_t b[1 << 16], m[1 << 16], out[1 << 17];
	size_t len = valid_batch(f, LZ4, b, sizeof(b));
	struct tl_batch_view v;
	const uint8_t *body;
	size_t body_at;
	unsigned bad = 0, n = 0;

	assert_int_equal(tl_batch_parse(b, len, &v), 0);
	assert_int_equal(v.hdr.flags, TL_BATCH_F_LZ4);
	body_at = (size_t)(v.body - b);
	/* Row ends that disagree with what the block decodes to. */
	memcpy(m, b, len);
	tl_batch_put32(m + 80, tl_batch_le32(b + 80) + 1);
	assert_int_equal(tl_batch_parse(m, len, &v), 0);
	assert_int_equal(tl_batch_inflate(&v, out, sizeof(out), &body), -EBADMSG);
	tl_batch_put32(m + 80, tl_batch_le32(b + 80) - 1);
	assert_int_equal(tl_batch_parse(m, len, &v), 0);
	assert_int_equal(tl_batch_inflate(&v, out, sizeof(out), &body), -EBADMSG);
	/* A truncated block (the record shortened, body_len with it). */
	memcpy(m, b, len);
	tl_batch_put32(m + 16, tl_batch_le32(b + 16) - 7);
	assert_int_equal(tl_batch_parse(m, len - 7, &v), 0);
	assert_int_equal(tl_batch_inflate(&v, out, sizeof(out), &body), -EBADMSG);
	/* Both compression flags at once is not a batch. */
	memcpy(m, b, len);
	m[6] |= TL_BATCH_F_GZIP;
	assert_int_equal(tl_batch_parse(m, len, &v), -EBADMSG);
	/* Damaged bytes: LZ4 has no checksum, so some flips decode to other bytes of the
	 * same length (the spool's own checksum catches those); none may crash or overrun,
	 * and the token/offset damage that changes the length must be refused. */
	for (size_t at = body_at; at < len; at++, n++) {
		memcpy(m, b, len);
		m[at] ^= 0x5a;
		assert_int_equal(tl_batch_parse(m, len, &v), 0);
		bad += tl_batch_inflate(&v, out, v.raw_len, &body) == -EBADMSG;
	}
	assert_true(bad > 0);
	assert_true(bad <= n);
}

static void
test_encode_create_bad_codec_einval(void **state)
{
	struct fx *f = *state;
	struct tl_encode_conf c = conf_of(10, 1 << 20, 0);
	struct tl_encoder *e = (struct tl_encoder *)1;

	c.codec = 3;
	assert_int_equal(tl_encoder_create(f->s, TL_BATCH_SINK_OUTPUT, &c, &e), -EINVAL);
	assert_null(e);
	c.codec = TL_BATCH_CODEC_GZIP;
	c.gzip_level = 0;
	assert_int_equal(tl_encoder_create(f->s, TL_BATCH_SINK_OUTPUT, &c, &e), -EINVAL);
	c.gzip_level = 13;
	assert_int_equal(tl_encoder_create(f->s, TL_BATCH_SINK_OUTPUT, &c, &e), -EINVAL);
}

static void
test_batch_parse_random_flips_never_crash(void **state)
{
	struct fx *f = *state;
	static uint8_t b[1 << 16], m[1 << 16];
	uint64_t r = 0x9e3779b97f4a7c15ull;
	int ok = 0;

	for (int level = 0; level <= 1; level++) {
		size_t len = valid_batch(f, level, b, sizeof(b));

		for (int it = 0; it < 3000; it++) {
			size_t n = len;

			memcpy(m, b, len);
			for (int k = 0; k < 1 + it % 4; k++) {
				r = r * 6364136223846793005ull + 1442695040888963407ull;
				m[(r >> 33) % len] ^= (uint8_t)(1u << ((r >> 20) & 7));
			}
			if (it % 5 == 0)
				n = (size_t)((r >> 40) % len);
			ok += parse_copy(m, n) == 0;
		}
	}
	/* Flips in the body of a plain batch leave it well-formed: some must pass. */
	assert_true(ok > 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(
	                test_encode_every_type_value_exact, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_encode_absent_and_null_both_null, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_encode_escapes_and_non_ascii_decoded, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_encode_datetime_out_of_range_clamped_ns_exact, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_encode_ingestion_time_before_1970_clamped, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_encode_meta_written, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_encode_event_id_canonical_same_for_respelled_event, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_encode_drop_last_restores_batch, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_encode_table_for_routes, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_encode_reject_row_exact_and_raw_truncated, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_encode_wrong_table_or_verdict_einval, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_encode_full_by_rows_then_enobufs, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_encode_full_by_bytes, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_encode_oversized_handmade_event_e2big_enobufs, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_encoder_create_bad_conf_einval, setup, teardown),
	        cmocka_unit_test(test_encode_columns_name_collision_schema_error),
	        cmocka_unit_test(test_encode_columns_e6data_order_and_types),
	        cmocka_unit_test_setup_teardown(
	                test_encode_seal_gzip_inflates_to_plain_body, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_encode_seal_header_bytes_exact, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_encode_seal_small_buffer_enospc_keeps_batch, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_batch_parse_truncated_every_byte_ebadmsg, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_batch_parse_bad_fields_rejected, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_batch_inflate_corrupt_gzip_ebadmsg, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_batch_parse_random_flips_never_crash, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_encode_seal_lz4_inflates_to_plain_body, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_batch_inflate_corrupt_lz4_ebadmsg, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_encode_create_bad_codec_einval, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
