/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Tests of the JSON extractor. Every test runs twice: once with the AVX2 string scanner
 * (when the CPU has it) and once with the scalar one.
 *
 * Inputs are copied into exactly-sized heap buffers before extraction, so ASan catches
 * any read past the end. The real event carries TPC-H Q19 (DuckDB's copy, shared/data/
 * tpch/q19.sql) as query_text and line 1020 of loghub's Hadoop_2k.log as error.
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

#include "tl_json.h"
#include "tl_json_private.h"
#include "tl_test_schema.h"

static const char real_event[] =
        "{\"query_id\":\"3f2a9c1e-7b4d-4e11-9a0c-5d2e8f6b1a47\",\"timestamp\":\"2015-10-18T18"
        ":06:26.029+08:00\",\"event_type\":\"failed\",\"query_text\":\"SELECT\\n    sum(l_ext"
        "endedprice * (1 - l_discount)) AS revenue\\nFROM\\n    lineitem,\\n    part\\nWHERE "
        "(p_partkey = l_partkey\\n    AND p_brand = 'Brand#12'\\n    AND p_container IN ('SM "
        "CASE', 'SM BOX', 'SM PACK', 'SM PKG')\\n    AND l_quantity >= 1\\n    AND l_quantity"
        " <= 1 + 10\\n    AND p_size BETWEEN 1 AND 5\\n    AND l_shipmode IN ('AIR', 'AIR REG"
        "')\\n    AND l_shipinstruct = 'DELIVER IN PERSON')\\n    OR (p_partkey = l_partkey\\"
        "n        AND p_brand = 'Brand#23'\\n        AND p_container IN ('MED BAG', 'MED BOX'"
        ", 'MED PKG', 'MED PACK')\\n        AND l_quantity >= 10\\n        AND l_quantity <= "
        "10 + 10\\n        AND p_size BETWEEN 1 AND 10\\n        AND l_shipmode IN ('AIR', 'A"
        "IR REG')\\n        AND l_shipinstruct = 'DELIVER IN PERSON')\\n    OR (p_partkey = l"
        "_partkey\\n        AND p_brand = 'Brand#34'\\n        AND p_container IN ('LG CASE',"
        " 'LG BOX', 'LG PACK', 'LG PKG')\\n        AND l_quantity >= 20\\n        AND l_quant"
        "ity <= 20 + 10\\n        AND p_size BETWEEN 1 AND 15\\n        AND l_shipmode IN ('A"
        "IR', 'AIR REG')\\n        AND l_shipinstruct = 'DELIVER IN PERSON');\\n\",\"metadata"
        "\":{\"user_id\":\"msrabi\",\"database\":\"tpch_sf10\",\"duration_ms\":65020,\"rows_a"
        "ffected\":0,\"error\":\"2015-10-18 18:06:26,029 FATAL [IPC Server handler 13 on 6227"
        "0] org.apache.hadoop.mapred.TaskAttemptListenerImpl: Task: attempt_1445144423722_002"
        "0_m_000002_0 - exited : java.net.NoRouteToHostException: No Route to Host from  MINI"
        "NT-FNANLI5/127.0.0.1 to msra-sa-41:9000 failed on socket timeout exception: java.net"
        ".NoRouteToHostException: No route to host: no further information; For more details "
        "see:  http://wiki.apache.org/hadoop/NoRouteToHost\",\"engine\":\"e6data-2.1\"},\"pay"
        "load\":{\"stage\":\"execute\",\"attempt\":\"attempt_1445144423722_0020_m_000002_0\","
        "\"host\":\"MININT-FNANLI5\",\"retry\":true,\"spilled_bytes\":0,\"progress\":0.85},\""
        "tenant\":\"msra\"}";

/* Line 1020 of loghub Hadoop_2k.log, verbatim. */
static const char real_error[] =
        "2015-10-18 18:06:26,029 FATAL [IPC Server handler 13 on 62270] "
        "org.apache.hadoop.mapred.TaskAttemptListenerImpl: Task: "
        "attempt_1445144423722_0020_m_000002_0 - exited : java.net.NoRouteToHostException: No "
        "Route to Host from  MININT-FNANLI5/127.0.0.1 to msra-sa-41:9000 failed on socket "
        "timeout exception: java.net.NoRouteToHostException: No route to host: no further "
        "information; For more details see:  http://wiki.apache.org/hadoop/NoRouteToHost";

#define TS "\"timestamp\":\"2024-01-01T00:00:00Z\""
#define BASE "\"query_id\":\"q1\",\"event_type\":\"running\"," TS

enum {
	C_QUERY_ID,
	C_EVENT_TYPE,
	C_EVENT_TIME,
	C_QUERY_TEXT,
	C_USER_ID,
	C_DATABASE,
	C_DURATION,
	C_ROWS,
	C_ERROR,
	C_PAYLOAD
};

static struct tl_schema *e6;    /* the e6data schema, default limits */
static struct tl_schema *types; /* one column of each type */
static struct tl_event ev;
static uint8_t *cur; /* the current input, exactly sized */
static int want_scalar;

/* The e6data columns without their per-column max_len: the inputs below were written
 * against columns bounded by pipeline.max_string alone (test_extract_column_max_len_*
 * sets its own caps). */
static void
e6data_def(struct tl_schema_def *d)
{
	tl_test_e6data_def(d);
	tl_test_clear_max_len(d);
}

static struct tl_schema *
compile(const struct tl_schema_def *d, const struct tl_limits *l)
{
	struct tl_schema *s = NULL;
	char msg[256] = "";
	int rc = tl_schema_compile(d, l, &s, msg, sizeof(msg));

	if (rc != 0)
		fail_msg("compile: %d %s", rc, msg);
	return s;
}

static struct tl_schema *
compile_e6(const struct tl_limits *l)
{
	struct tl_schema_def d;

	e6data_def(&d);
	return compile(&d, l);
}

static enum tl_reason
extract_n(const struct tl_schema *s, const void *json, size_t len)
{
	free(cur);
	cur = malloc(len ? len : 1);
	assert_non_null(cur);
	memcpy(cur, json, len);
	return tl_json_extract(s, cur, (uint32_t)len, &ev);
}

static enum tl_reason
extract_s(const struct tl_schema *s, const char *json)
{
	return extract_n(s, json, strlen(json));
}

static enum tl_reason
ex(const char *json)
{
	return extract_s(e6, json);
}

/* An e6data event with the three required fields and @p more members appended. */
__attribute__((format(printf, 1, 2))) static enum tl_reason
exf(const char *fmt, ...)
{
	static char buf[1 << 17];
	char more[1 << 16];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(more, sizeof(more), fmt, ap);
	va_end(ap);
	snprintf(buf, sizeof(buf), "{" BASE "%s%s}", more[0] ? "," : "", more);
	return ex(buf);
}

#define assert_reason(got, want)                                                                   \
	do {                                                                                       \
		enum tl_reason got_ = (got), want_ = (want);                                       \
		if (got_ != want_)                                                                 \
			fail_msg("%s:%d: got %s, want %s", __FILE__, __LINE__,                     \
			        tl_reason_name(got_), tl_reason_name(want_));                      \
	} while (0)

static void
assert_str(const struct tl_value *v, const char *want)
{
	assert_int_equal(v->kind, TL_VAL_STRING);
	assert_int_equal(v->len, strlen(want));
	assert_memory_equal(v->ptr, want, v->len);
}

/* Unescaped contents of a string value, into a static buffer. */
static const char *
unesc(const struct tl_value *v)
{
	static char out[1 << 17];
	size_t n = tl_json_unescape(v->ptr, v->len, (uint8_t *)out);

	assert_true(n <= v->len);
	out[n] = '\0';
	return out;
}

static char *
read_file_or_null(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *b;

	if (f == NULL)
		return NULL;
	b = malloc(1 << 20);
	*len = fread(b, 1, (1 << 20) - 1, f);
	b[*len] = '\0';
	fclose(f);
	return b;
}

/* ---------------------------------------------------------------- real event */

static void
test_extract_real_event_all_columns_ok(void **state)
{
	const char *qt;
	char *sql;
	size_t sql_len;

	(void)state;
	assert_reason(ex(real_event), TL_REASON_OK);
	assert_ptr_equal(ev.raw, cur);
	assert_int_equal(ev.raw_len, strlen(real_event));
	assert_str(&ev.col[C_QUERY_ID], "3f2a9c1e-7b4d-4e11-9a0c-5d2e8f6b1a47");
	assert_str(&ev.col[C_EVENT_TYPE], "failed");
	assert_int_equal(ev.col[C_EVENT_TIME].kind, TL_VAL_TIME);
	assert_int_equal(ev.col[C_EVENT_TIME].ns, 1445162786029000000LL);
	assert_int_equal(ev.time_ns, 1445162786029000000LL);
	assert_int_equal(ev.col[C_EVENT_TIME].len, strlen("2015-10-18T18:06:26.029+08:00"));
	assert_int_equal(ev.col[C_QUERY_TEXT].kind, TL_VAL_STRING);
	assert_int_equal(ev.col[C_QUERY_TEXT].escaped, 1);
	qt = unesc(&ev.col[C_QUERY_TEXT]);
	assert_int_equal(strlen(qt), 1043);
	assert_true(strncmp(qt, "SELECT\n    sum(l_extendedprice", 30) == 0);
	assert_string_equal(qt + 1043 - 22, "'DELIVER IN PERSON');\n");
	/* When the shared data is at hand, compare with the file byte for byte. */
	{
		const char *dir = getenv("TAPLINE_DATA");
		char path[512];

		snprintf(path, sizeof(path), "%s/tpch/q19.sql", dir ? dir : "/work/shared/data");
		sql = read_file_or_null(path, &sql_len);
	}
	if (sql != NULL) {
		assert_int_equal(sql_len, 1043);
		assert_memory_equal(qt, sql, sql_len);
		free(sql);
	}
	assert_str(&ev.col[C_USER_ID], "msrabi");
	assert_str(&ev.col[C_DATABASE], "tpch_sf10");
	assert_int_equal(ev.col[C_DURATION].kind, TL_VAL_UINT);
	assert_int_equal(ev.col[C_DURATION].u, 65020);
	assert_int_equal(ev.col[C_ROWS].kind, TL_VAL_UINT);
	assert_int_equal(ev.col[C_ROWS].u, 0);
	assert_str(&ev.col[C_ERROR], real_error);
	assert_int_equal(ev.col[C_ERROR].escaped, 0);
	assert_int_equal(ev.col[C_PAYLOAD].kind, TL_VAL_RAW);
	assert_int_equal(ev.col[C_PAYLOAD].ptr[0], '{');
	assert_int_equal(ev.col[C_PAYLOAD].ptr[ev.col[C_PAYLOAD].len - 1], '}');
	assert_true(ev.is_error);
	assert_int_equal(ev.n_extra, 2);
	assert_int_equal(ev.extra[0].parent, 0); /* metadata */
	assert_int_equal(ev.extra[0].key_len, 6);
	assert_memory_equal(ev.extra[0].key, "engine", 6);
	assert_int_equal(ev.extra[0].val_len, 12);
	assert_memory_equal(ev.extra[0].val, "\"e6data-2.1\"", 12);
	assert_int_equal(ev.extra[1].parent, -1);
	assert_memory_equal(ev.extra[1].key, "tenant", 6);
	assert_memory_equal(ev.extra[1].val, "\"msra\"", 6);
}

/* The real event re-written with whitespace (incl. \r, \t, \n) around every token. */
static char *
pretty(const char *json, const char *ws)
{
	size_t n = strlen(json), wl = strlen(ws), o = 0;
	char *out = malloc(n * (1 + 2 * wl) + 2 * wl + 1);
	int in_str = 0;

	o += (size_t)sprintf(out, "%s", ws);
	for (size_t i = 0; i < n; i++) {
		char ch = json[i];

		if (in_str) {
			out[o++] = ch;
			if (ch == '\\')
				out[o++] = json[++i];
			else if (ch == '"')
				in_str = 0;
			continue;
		}
		if (ch == '"')
			in_str = 1;
		if (strchr("{}[]:,", ch)) {
			memcpy(out + o, ws, wl);
			o += wl;
			out[o++] = ch;
			memcpy(out + o, ws, wl);
			o += wl;
		} else {
			out[o++] = ch;
		}
	}
	memcpy(out + o, ws, wl);
	o += wl;
	out[o] = '\0';
	return out;
}

static void
test_extract_whitespace_everywhere_same_values(void **state)
{
	static const char *const wss[] = {" ", "\r\n", "\t", " \n\t\r "};

	(void)state;
	for (size_t w = 0; w < sizeof(wss) / sizeof(wss[0]); w++) {
		char *p = pretty(real_event, wss[w]);

		assert_reason(ex(p), TL_REASON_OK);
		assert_str(&ev.col[C_QUERY_ID], "3f2a9c1e-7b4d-4e11-9a0c-5d2e8f6b1a47");
		assert_int_equal(ev.col[C_DURATION].u, 65020);
		assert_int_equal(ev.time_ns, 1445162786029000000LL);
		assert_str(&ev.col[C_ERROR], real_error);
		assert_int_equal(ev.n_extra, 2);
		assert_int_equal(ev.col[C_PAYLOAD].ptr[0], '{');
		assert_int_equal(ev.col[C_PAYLOAD].ptr[ev.col[C_PAYLOAD].len - 1], '}');
		free(p);
	}
}

static void
test_extract_truncated_every_offset_syntax(void **state)
{
	char *p = pretty(real_event, " ");
	size_t n = strlen(real_event), pn = strlen(p);

	(void)state;
	for (size_t i = 0; i < n; i++) {
		enum tl_reason r = extract_n(e6, real_event, i);

		if (r != TL_REASON_EV_JSON_SYNTAX)
			fail_msg("truncated at %zu: %s", i, tl_reason_name(r));
		assert_ptr_equal(ev.raw, cur);
		assert_int_equal(ev.raw_len, i);
	}
	/* The pretty form ends in blanks after its last '}': only cuts among them are valid. */
	for (size_t i = 0; i < pn; i++) {
		enum tl_reason r = extract_n(e6, p, i);
		enum tl_reason want =
		        i > (size_t)(strrchr(p, '}') - p) ? TL_REASON_OK : TL_REASON_EV_JSON_SYNTAX;

		if (r != want)
			fail_msg("pretty truncated at %zu: %s", i, tl_reason_name(r));
	}
	free(p);
}

/* ---------------------------------------------------------------- UTF-8 */

struct u8case {
	const char *bytes;
	enum tl_reason want;
};

static const struct u8case u8cases[] = {
        /* valid boundaries */
        {"\x7f", TL_REASON_OK},
        {"\xc2\x80", TL_REASON_OK},
        {"\xdf\xbf", TL_REASON_OK},
        {"\xe0\xa0\x80", TL_REASON_OK},
        {"\xed\x9f\xbf", TL_REASON_OK},
        {"\xee\x80\x80", TL_REASON_OK},
        {"\xef\xbf\xbf", TL_REASON_OK},
        {"\xf0\x90\x80\x80", TL_REASON_OK},
        {"\xf4\x8f\xbf\xbf", TL_REASON_OK},
        {"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", TL_REASON_OK},
        /* overlongs */
        {"\xc0\x80", TL_REASON_EV_JSON_UTF8},
        {"\xc1\xbf", TL_REASON_EV_JSON_UTF8},
        {"\xe0\x80\x80", TL_REASON_EV_JSON_UTF8},
        {"\xe0\x9f\xbf", TL_REASON_EV_JSON_UTF8},
        {"\xf0\x80\x80\x80", TL_REASON_EV_JSON_UTF8},
        {"\xf0\x8f\xbf\xbf", TL_REASON_EV_JSON_UTF8},
        /* surrogates encoded directly */
        {"\xed\xa0\x80", TL_REASON_EV_JSON_UTF8},
        {"\xed\xbf\xbf", TL_REASON_EV_JSON_UTF8},
        /* past U+10FFFF and bytes never valid */
        {"\xf4\x90\x80\x80", TL_REASON_EV_JSON_UTF8},
        {"\xf5\x80\x80\x80", TL_REASON_EV_JSON_UTF8},
        {"\xf8\x88\x80\x80\x80", TL_REASON_EV_JSON_UTF8},
        {"\xfe", TL_REASON_EV_JSON_UTF8},
        {"\xff", TL_REASON_EV_JSON_UTF8},
        /* stray continuation, truncated sequences */
        {"\x80", TL_REASON_EV_JSON_UTF8},
        {"\xbf", TL_REASON_EV_JSON_UTF8},
        {"\xc3", TL_REASON_EV_JSON_UTF8},
        {"\xe2\x82", TL_REASON_EV_JSON_UTF8},
        {"\xf0\x9f\x98", TL_REASON_EV_JSON_UTF8},
        {"\xc3x", TL_REASON_EV_JSON_UTF8},
        {"\xe2\x82x", TL_REASON_EV_JSON_UTF8},
        {"\xc3\xa9\xa9", TL_REASON_EV_JSON_UTF8},
        /* \u escapes */
        {"\\u00e9", TL_REASON_OK},
        {"\\u0000", TL_REASON_OK},
        {"\\uFFFF", TL_REASON_OK},
        {"\\ud83d\\ude00", TL_REASON_OK},
        {"\\uDBFF\\uDFFF", TL_REASON_OK},
        {"\\uD800", TL_REASON_EV_JSON_UTF8},
        {"\\uDBFF", TL_REASON_EV_JSON_UTF8},
        {"\\uDC00", TL_REASON_EV_JSON_UTF8},
        {"\\uDFFF", TL_REASON_EV_JSON_UTF8},
        {"\\uDC00\\uD800", TL_REASON_EV_JSON_UTF8},
        {"\\uDC00\\uDC00", TL_REASON_EV_JSON_UTF8},
        {"\\uDFFF\\uDFFF", TL_REASON_EV_JSON_UTF8},
        {"\\uD800\\uD800", TL_REASON_EV_JSON_UTF8},
        {"\\uD800\\u0041", TL_REASON_EV_JSON_UTF8},
        {"\\uD800\\n", TL_REASON_EV_JSON_UTF8},
        {"\\uD800x", TL_REASON_EV_JSON_UTF8},
        {"\\uD800\\uZZZZ", TL_REASON_EV_JSON_SYNTAX},
};

static void
test_extract_utf8_table_every_context(void **state)
{
	/* The same bytes in a mapped value, a top-level unknown key, an unknown value
	 * nested in arrays, a key inside a skipped object, and an ANY column. */
	static const char *const ctx[][2] = {
	        {"\"query_text\":\"a", "b\""},
	        {"\"k", "\":1"},
	        {"\"x\":[1,[\"", "\"]]"},
	        {"\"x\":{\"y\":{\"", "\":null}}"},
	        {"\"payload\":{\"z\":[\"", "\"]}"},
	        {"\"metadata\":{\"user_id\":\"", "\"}"},
	        {"\"metadata\":{\"error\":\"", "\"}"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(u8cases) / sizeof(u8cases[0]); i++)
		for (size_t j = 0; j < sizeof(ctx) / sizeof(ctx[0]); j++) {
			char member[256];
			enum tl_reason r;

			snprintf(member, sizeof(member), "%s%s%s", ctx[j][0], u8cases[i].bytes,
			        ctx[j][1]);
			r = exf("%s", member);
			if (r != u8cases[i].want)
				fail_msg("case %zu context %zu: got %s want %s", i, j,
				        tl_reason_name(r), tl_reason_name(u8cases[i].want));
		}
}

static void
test_extract_non_ascii_outside_string_syntax(void **state)
{
	(void)state;
	assert_reason(exf("\"x\":\xc3\xa9"), TL_REASON_EV_JSON_SYNTAX);
	assert_reason(ex("\xef\xbb\xbf{" BASE "}"), TL_REASON_EV_JSON_SYNTAX); /* BOM */
	assert_reason(exf("\"x\":1\xa0"), TL_REASON_EV_JSON_SYNTAX);
}

/*
 * Every position of a special sequence in strings of every length up to 100, with the
 * string right before the end of the buffer: covers the 32/64-byte loop, the overlapping
 * tail load and the scalar tail.
 */
static void
test_extract_specials_every_alignment(void **state)
{
	static const struct u8case sp[] = {
	        {"\xc3\xa9", TL_REASON_OK},
	        {"\xf0\x9f\x98\x80", TL_REASON_OK},
	        {"\\n", TL_REASON_OK},
	        {"\\ud83d\\ude00", TL_REASON_OK},
	        {"\\\"", TL_REASON_OK},
	        {"\x01", TL_REASON_EV_JSON_SYNTAX},
	        {"\x1f", TL_REASON_EV_JSON_SYNTAX},
	        {"\xff", TL_REASON_EV_JSON_UTF8},
	        {"\xe2\x82", TL_REASON_EV_JSON_UTF8},
	        {"\\x", TL_REASON_EV_JSON_SYNTAX},
	        {"\\uD800", TL_REASON_EV_JSON_UTF8},
	};
	char s[256], body[512];

	(void)state;
	for (size_t k = 0; k < sizeof(sp) / sizeof(sp[0]); k++)
		for (size_t len = 0; len <= 100; len++)
			for (size_t pos = 0; pos <= len; pos++) {
				size_t sl = strlen(sp[k].bytes);
				enum tl_reason r;

				memset(s, 'a', len);
				memcpy(s + pos, sp[k].bytes, sl);
				memset(s + pos + sl, 'b', len - pos);
				s[len + sl] = '\0';
				snprintf(body, sizeof(body), "{" BASE ",\"query_text\":\"%s\"}", s);
				r = ex(body);
				if (r != sp[k].want)
					fail_msg("special %zu len %zu pos %zu: got %s", k, len, pos,
					        tl_reason_name(r));
				if (r == TL_REASON_OK) {
					assert_int_equal(ev.col[C_QUERY_TEXT].len, len + sl);
					assert_int_equal(ev.col[C_QUERY_TEXT].escaped,
					        sp[k].bytes[0] == '\\');
				}
			}
}

/* Plain ASCII strings of every length at every distance from the end of the buffer. */
static void
test_extract_string_lengths_near_end_ok(void **state)
{
	char body[512], s[200];

	(void)state;
	for (size_t len = 0; len < 150; len++) {
		for (size_t i = 0; i < len; i++)
			s[i] = (char)('A' + i % 26);
		s[len] = '\0';
		snprintf(body, sizeof(body), "{" BASE ",\"x\":\"%s\"}", s);
		assert_reason(ex(body), TL_REASON_OK);
		assert_int_equal(ev.extra[0].val_len, len + 2);
		/* Unterminated: ends inside the string. */
		snprintf(body, sizeof(body), "{" BASE ",\"x\":\"%s", s);
		assert_reason(ex(body), TL_REASON_EV_JSON_SYNTAX);
		/* Short whole events too (scalar path when the buffer is < 32 bytes). */
		snprintf(body, sizeof(body), "\"%s\"", s);
		assert_reason(ex(body), TL_REASON_EV_JSON_NOT_OBJECT);
	}
}

static void
test_extract_control_chars_in_strings_syntax(void **state)
{
	char member[64];

	(void)state;
	for (int ch = 0; ch < 0x20; ch++) {
		snprintf(member, sizeof(member), "\"query_text\":\"ab%ccd\"", ch ? ch : 1);
		if (ch == 0) {
			/* NUL cannot go through snprintf: place it by hand. */
			char buf[128];
			int n = snprintf(buf, sizeof(buf), "{" BASE ",\"query_text\":\"abXcd\"}");
			char *x = memchr(buf, 'X', (size_t)n);

			*x = '\0';
			assert_reason(extract_n(e6, buf, (size_t)n), TL_REASON_EV_JSON_SYNTAX);
			continue;
		}
		assert_reason(exf("%s", member), TL_REASON_EV_JSON_SYNTAX);
		snprintf(member, sizeof(member), "\"k%c\":1", ch);
		assert_reason(exf("%s", member), TL_REASON_EV_JSON_SYNTAX);
	}
	assert_reason(exf("\"query_text\":\"a\x7f\""), TL_REASON_OK); /* DEL is allowed */
}

/* ---------------------------------------------------------------- depth */

static char *
nest(size_t n, const char *open, const char *inner, const char *close)
{
	size_t ol = strlen(open), il = strlen(inner), cl = strlen(close);
	char *b = malloc(n * (ol + cl) + il + 1), *p = b;

	for (size_t i = 0; i < n; i++, p += ol)
		memcpy(p, open, ol);
	memcpy(p, inner, il);
	p += il;
	for (size_t i = 0; i < n; i++, p += cl)
		memcpy(p, close, cl);
	*p = '\0';
	return b;
}

static void
test_extract_nesting_10000_levels_depth(void **state)
{
	char *arr = nest(10000, "[", "1", "]");
	char *obj = nest(10000, "{\"a\":", "1", "}");
	char *open_only = nest(10000, "[", "", "");
	char *buf = malloc(200000);

	(void)state;
	snprintf(buf, 200000, "{" BASE ",\"payload\":%s}", arr);
	assert_reason(ex(buf), TL_REASON_EV_JSON_DEPTH);
	snprintf(buf, 200000, "{" BASE ",\"x\":%s}", obj);
	assert_reason(ex(buf), TL_REASON_EV_JSON_DEPTH);
	snprintf(buf, 200000, "{" BASE ",\"x\":%s", open_only);
	assert_reason(ex(buf), TL_REASON_EV_JSON_DEPTH);
	/* Top-level array bomb: not an object, whatever its depth. */
	assert_reason(ex(arr), TL_REASON_EV_JSON_NOT_OBJECT);
	free(arr);
	free(obj);
	free(open_only);
	free(buf);
}

static void
test_extract_depth_at_limit_ok_past_limit_depth(void **state)
{
	struct tl_limits l = tl_test_e6data_limits();
	struct tl_schema *s;
	char buf[4096];

	(void)state;
	for (uint64_t max = 2; max <= 40; max++) {
		l.max_depth = max;
		s = compile_e6(&l);
		/* Top-level object is depth 1: an unknown value may open max - 1 levels. */
		for (uint64_t d = max - 1; d <= max; d++) {
			char *a = nest((size_t)d, "[", "", "]");
			char *o = nest((size_t)d, "{\"k\":", "0", "}");
			enum tl_reason want = d < max ? TL_REASON_OK : TL_REASON_EV_JSON_DEPTH;

			snprintf(buf, sizeof(buf), "{" BASE ",\"x\":%s}", a);
			assert_reason(extract_s(s, buf), want);
			snprintf(buf, sizeof(buf), "{" BASE ",\"payload\":%s}", o);
			assert_reason(extract_s(s, buf), want);
			free(a);
			free(o);
		}
		/* metadata is depth 2, so a value inside it may open max - 2 levels. */
		{
			char *a = nest((size_t)max - 2, "[", "", "]");
			char *b = nest((size_t)max - 1, "[", "", "]");

			snprintf(buf, sizeof(buf), "{" BASE ",\"metadata\":{\"error\":%s}}",
			        max > 2 ? a : "1");
			assert_reason(extract_s(s, buf), TL_REASON_OK);
			snprintf(buf, sizeof(buf), "{" BASE ",\"metadata\":{\"error\":%s}}", b);
			assert_reason(extract_s(s, buf), TL_REASON_EV_JSON_DEPTH);
			free(a);
			free(b);
		}
		tl_schema_free(s);
	}
	/* max_depth 1: the metadata object itself is too deep. */
	l.max_depth = 1;
	s = compile_e6(&l);
	assert_reason(extract_s(s, "{" BASE ",\"metadata\":{}}"), TL_REASON_EV_JSON_DEPTH);
	assert_reason(extract_s(s, "{" BASE ",\"x\":[]}"), TL_REASON_EV_JSON_DEPTH);
	assert_reason(extract_s(s, "{" BASE "}"), TL_REASON_OK);
	tl_schema_free(s);
}

/* ---------------------------------------------------------------- sizes */

static void
test_extract_string_limits_too_long(void **state)
{
	struct tl_limits l = tl_test_e6data_limits();
	struct tl_schema *s;
	char buf[1024], str[256];

	(void)state;
	l.max_string = 100;
	s = compile_e6(&l);
	memset(str, 'x', sizeof(str));
	/* value of exactly max_string bytes (as written, escapes counted raw) */
	snprintf(buf, sizeof(buf), "{" BASE ",\"query_text\":\"%.100s\"}", str);
	assert_reason(extract_s(s, buf), TL_REASON_OK);
	snprintf(buf, sizeof(buf), "{" BASE ",\"query_text\":\"%.101s\"}", str);
	assert_reason(extract_s(s, buf), TL_REASON_EV_JSON_STRING_TOO_LONG);
	snprintf(buf, sizeof(buf), "{" BASE ",\"query_text\":\"\\n%.98s\"}", str);
	assert_reason(extract_s(s, buf), TL_REASON_OK);
	snprintf(buf, sizeof(buf), "{" BASE ",\"query_text\":\"\\n%.99s\"}", str);
	assert_reason(extract_s(s, buf), TL_REASON_EV_JSON_STRING_TOO_LONG);
	/* keys and skipped strings too */
	snprintf(buf, sizeof(buf), "{" BASE ",\"%.101s\":1}", str);
	assert_reason(extract_s(s, buf), TL_REASON_EV_JSON_STRING_TOO_LONG);
	snprintf(buf, sizeof(buf), "{" BASE ",\"x\":[\"%.101s\"]}", str);
	assert_reason(extract_s(s, buf), TL_REASON_EV_JSON_STRING_TOO_LONG);
	/* an error past the limit is reported as too long (met later in the document) */
	snprintf(buf, sizeof(buf), "{" BASE ",\"query_text\":\"%.120s\xff\"}", str);
	assert_reason(extract_s(s, buf), TL_REASON_EV_JSON_STRING_TOO_LONG);
	snprintf(buf, sizeof(buf), "{" BASE ",\"query_text\":\"%.50s\xff%.100s\"}", str, str);
	assert_reason(extract_s(s, buf), TL_REASON_EV_JSON_UTF8);
	snprintf(buf, sizeof(buf), "{" BASE ",\"query_text\":\"%.150s", str);
	assert_reason(extract_s(s, buf), TL_REASON_EV_JSON_STRING_TOO_LONG);
	tl_schema_free(s);
}

static void
test_extract_column_max_len_too_long(void **state)
{
	struct tl_schema_def d;
	struct tl_limits l = tl_test_e6data_limits();
	struct tl_schema *s;

	(void)state;
	e6data_def(&d);
	d.cols[C_USER_ID].max_len = 8;
	d.cols[C_PAYLOAD].max_len = 10;
	s = compile(&d, &l);
	assert_reason(
	        extract_s(s, "{" BASE ",\"metadata\":{\"user_id\":\"12345678\"}}"), TL_REASON_OK);
	assert_reason(extract_s(s, "{" BASE ",\"metadata\":{\"user_id\":\"123456789\"}}"),
	        TL_REASON_EV_JSON_STRING_TOO_LONG);
	/* ANY: raw values are measured as written */
	assert_reason(extract_s(s, "{" BASE ",\"payload\":[1,2,3,45]}"), TL_REASON_OK);
	assert_reason(extract_s(s, "{" BASE ",\"payload\":[1,2,3,456]}"),
	        TL_REASON_EV_JSON_STRING_TOO_LONG);
	assert_reason(extract_s(s, "{" BASE ",\"payload\":\"0123456789\"}"), TL_REASON_OK);
	assert_reason(extract_s(s, "{" BASE ",\"payload\":\"0123456789a\"}"),
	        TL_REASON_EV_JSON_STRING_TOO_LONG);
	/* the limit is the column's, not the event's: other strings are unaffected */
	assert_reason(extract_s(s, "{" BASE ",\"query_text\":\"0123456789abcdef\"}"), TL_REASON_OK);
	tl_schema_free(s);
}

static void
test_extract_huge_string_ok(void **state)
{
	size_t n = 60 * 1024 - 200;
	char *buf = malloc(n + 256);
	int off;

	(void)state;
	off = snprintf(buf, 256, "{" BASE ",\"query_text\":\"");
	memset(buf + off, 'q', n - (size_t)off - 2);
	buf[n - 2] = '"';
	buf[n - 1] = '}';
	assert_reason(extract_n(e6, buf, n), TL_REASON_OK);
	assert_int_equal(ev.col[C_QUERY_TEXT].len, n - (size_t)off - 2);
	free(buf);
}

static void
test_extract_event_too_large_checked_first(void **state)
{
	struct tl_limits l = tl_test_e6data_limits();
	struct tl_schema *s;
	char buf[300];

	(void)state;
	l.max_event_size = 100;
	s = compile_e6(&l);
	memset(buf, ' ', sizeof(buf));
	memcpy(buf, "{" BASE "}", strlen("{" BASE "}"));
	assert_reason(extract_n(s, buf, 100), TL_REASON_OK);
	assert_reason(extract_n(s, buf, 101), TL_REASON_EV_TOO_LARGE);
	/* invalid JSON, but too large is checked before anything else */
	assert_reason(extract_n(s, "\xff\xff garbage", 10), TL_REASON_EV_JSON_SYNTAX);
	memset(buf, 0xff, sizeof(buf));
	assert_reason(extract_n(s, buf, 101), TL_REASON_EV_TOO_LARGE);
	assert_ptr_equal(ev.raw, cur);
	assert_int_equal(ev.raw_len, 101);
	tl_schema_free(s);
}

/* ---------------------------------------------------------------- duplicates */

static void
test_extract_duplicate_keys_rejected(void **state)
{
	(void)state;
	/* mapped top-level key */
	assert_reason(ex("{" BASE ",\"query_id\":\"q2\"}"), TL_REASON_EV_JSON_DUPLICATE_KEY);
	assert_reason(ex("{" BASE ",\"event_type\":null}"), TL_REASON_EV_JSON_DUPLICATE_KEY);
	/* unknown top-level key */
	assert_reason(exf("\"x\":1,\"y\":2,\"x\":1"), TL_REASON_EV_JSON_DUPLICATE_KEY);
	/* same key spelled with an escape */
	assert_reason(exf("\"x\":1,\"\\u0078\":1"), TL_REASON_EV_JSON_DUPLICATE_KEY);
	assert_reason(ex("{" BASE ",\"query\\u005fid\":\"q2\"}"), TL_REASON_EV_JSON_DUPLICATE_KEY);
	assert_reason(exf("\"\\u00e9\":1,\"\xc3\xa9\":2"), TL_REASON_EV_JSON_DUPLICATE_KEY);
	/* prefix object twice */
	assert_reason(exf("\"metadata\":{\"user_id\":\"a\"},\"metadata\":{\"database\":\"b\"}"),
	        TL_REASON_EV_JSON_DUPLICATE_KEY);
	assert_reason(exf("\"metadata\":{},\"metadata\":{}"), TL_REASON_EV_JSON_DUPLICATE_KEY);
	/* mapped key inside a prefix object */
	assert_reason(exf("\"metadata\":{\"user_id\":\"a\",\"user_id\":\"a\"}"),
	        TL_REASON_EV_JSON_DUPLICATE_KEY);
	/* unknown key inside a prefix object */
	assert_reason(exf("\"metadata\":{\"engine\":\"a\",\"engine\":\"b\"}"),
	        TL_REASON_EV_JSON_DUPLICATE_KEY);
	/* same unknown name at different levels is fine */
	assert_reason(exf("\"engine\":1,\"metadata\":{\"engine\":2}"), TL_REASON_OK);
	assert_int_equal(ev.n_extra, 2);
	/* inside unknown or ANY values nothing is checked */
	assert_reason(exf("\"x\":{\"a\":1,\"a\":2},\"payload\":{\"b\":1,\"b\":1}"), TL_REASON_OK);
	/* keys that differ only after the first 8 bytes, or in length */
	assert_reason(exf("\"abcdefgh1\":1,\"abcdefgh2\":1,\"abcdefgh\":1"), TL_REASON_OK);
	assert_int_equal(ev.n_extra, 3);
}

/* ---------------------------------------------------------------- numbers */

struct numcase {
	const char *text;
	enum tl_reason want;
	int64_t i;
	uint64_t u;
};

static void
test_extract_int64_limits(void **state)
{
	static const struct numcase c[] = {
	        {"0", TL_REASON_OK, 0, 0},
	        {"-0", TL_REASON_OK, 0, 0},
	        {"7", TL_REASON_OK, 7, 0},
	        {"-42", TL_REASON_OK, -42, 0},
	        {"9223372036854775807", TL_REASON_OK, INT64_MAX, 0},
	        {"-9223372036854775808", TL_REASON_OK, INT64_MIN, 0},
	        {"9223372036854775808", TL_REASON_EV_NUMBER_RANGE, 0, 0},
	        {"-9223372036854775809", TL_REASON_EV_NUMBER_RANGE, 0, 0},
	        {"18446744073709551616", TL_REASON_EV_NUMBER_RANGE, 0, 0},
	        {"99999999999999999999999999", TL_REASON_EV_NUMBER_RANGE, 0, 0},
	        {"1.0", TL_REASON_EV_FIELD_TYPE, 0, 0},
	        {"1e2", TL_REASON_EV_FIELD_TYPE, 0, 0},
	        {"-0.0", TL_REASON_EV_FIELD_TYPE, 0, 0},
	        {"1E+2", TL_REASON_EV_FIELD_TYPE, 0, 0},
	        {"\"1\"", TL_REASON_EV_FIELD_TYPE, 0, 0},
	        {"true", TL_REASON_EV_FIELD_TYPE, 0, 0},
	        {"[1]", TL_REASON_EV_FIELD_TYPE, 0, 0},
	        {"{}", TL_REASON_EV_FIELD_TYPE, 0, 0},
	        {"null", TL_REASON_OK, 0, 0},
	};
	char buf[256];

	(void)state;
	for (size_t k = 0; k < sizeof(c) / sizeof(c[0]); k++) {
		enum tl_reason r;

		snprintf(buf, sizeof(buf), "{\"id\":\"a\",\"t\":\"2024-01-01T00:00:00Z\",\"i\":%s}",
		        c[k].text);
		r = extract_s(types, buf);
		if (r != c[k].want)
			fail_msg("%s: got %s", c[k].text, tl_reason_name(r));
		if (r == TL_REASON_OK && strcmp(c[k].text, "null") != 0) {
			assert_int_equal(ev.col[0].kind, TL_VAL_INT);
			assert_true(ev.col[0].i == c[k].i);
			assert_int_equal(ev.col[0].len, strlen(c[k].text));
		}
		if (r == TL_REASON_OK && strcmp(c[k].text, "null") == 0)
			assert_int_equal(ev.col[0].kind, TL_VAL_NULL);
	}
}

static void
test_extract_uint64_limits(void **state)
{
	static const struct numcase c[] = {
	        {"0", TL_REASON_OK, 0, 0},
	        {"-0", TL_REASON_OK, 0, 0},
	        {"18446744073709551615", TL_REASON_OK, 0, UINT64_MAX},
	        {"18446744073709551616", TL_REASON_EV_NUMBER_RANGE, 0, 0},
	        {"184467440737095516150", TL_REASON_EV_NUMBER_RANGE, 0, 0},
	        {"-1", TL_REASON_EV_NUMBER_RANGE, 0, 0},
	        {"-18446744073709551615", TL_REASON_EV_NUMBER_RANGE, 0, 0},
	        {"9223372036854775808", TL_REASON_OK, 0, UINT64_C(9223372036854775808)},
	        {"1.5", TL_REASON_EV_FIELD_TYPE, 0, 0},
	        {"1e400", TL_REASON_EV_FIELD_TYPE, 0, 0},
	        {"false", TL_REASON_EV_FIELD_TYPE, 0, 0},
	};
	char buf[256];

	(void)state;
	for (size_t k = 0; k < sizeof(c) / sizeof(c[0]); k++) {
		enum tl_reason r;

		snprintf(buf, sizeof(buf), "{\"id\":\"a\",\"t\":\"2024-01-01T00:00:00Z\",\"u\":%s}",
		        c[k].text);
		r = extract_s(types, buf);
		if (r != c[k].want)
			fail_msg("%s: got %s", c[k].text, tl_reason_name(r));
		if (r == TL_REASON_OK) {
			assert_int_equal(ev.col[1].kind, TL_VAL_UINT);
			assert_true(ev.col[1].u == c[k].u);
		}
	}
	/* duration_ms of the e6data schema is uint64 */
	assert_reason(exf("\"metadata\":{\"duration_ms\":-1}"), TL_REASON_EV_NUMBER_RANGE);
	assert_reason(exf("\"metadata\":{\"duration_ms\":12.5}"), TL_REASON_EV_FIELD_TYPE);
	assert_reason(exf("\"metadata\":{\"duration_ms\":\"12\"}"), TL_REASON_EV_FIELD_TYPE);
}

static void
test_extract_float64_values(void **state)
{
	static const struct {
		const char *text;
		enum tl_reason want;
		double f;
	} c[] = {
	        {"0", TL_REASON_OK, 0.0},
	        {"-0", TL_REASON_OK, -0.0},
	        {"0.1", TL_REASON_OK, 0.1},
	        {"-2.5e-3", TL_REASON_OK, -2.5e-3},
	        {"1E10", TL_REASON_OK, 1e10},
	        {"1e+10", TL_REASON_OK, 1e10},
	        {"1.7976931348623157e308", TL_REASON_OK, 1.7976931348623157e308},
	        {"4.9406564584124654e-324", TL_REASON_OK, 4.9406564584124654e-324},
	        {"1e-400", TL_REASON_OK, 0.0},
	        {"18446744073709551617", TL_REASON_OK, 18446744073709551617.0},
	        {"1e400", TL_REASON_EV_NUMBER_RANGE, 0},
	        {"-1e400", TL_REASON_EV_NUMBER_RANGE, 0},
	        {"1.8e308", TL_REASON_EV_NUMBER_RANGE, 0},
	        {"\"1.5\"", TL_REASON_EV_FIELD_TYPE, 0},
	        {"true", TL_REASON_EV_FIELD_TYPE, 0},
	};
	char buf[1024];

	(void)state;
	for (size_t k = 0; k < sizeof(c) / sizeof(c[0]); k++) {
		enum tl_reason r;

		snprintf(buf, sizeof(buf), "{\"id\":\"a\",\"t\":\"2024-01-01T00:00:00Z\",\"f\":%s}",
		        c[k].text);
		r = extract_s(types, buf);
		if (r != c[k].want)
			fail_msg("%s: got %s", c[k].text, tl_reason_name(r));
		if (r == TL_REASON_OK) {
			assert_int_equal(ev.col[2].kind, TL_VAL_FLOAT);
			assert_memory_equal(&ev.col[2].f, &c[k].f, sizeof(double));
			assert_int_equal(ev.col[2].len, strlen(c[k].text));
		}
	}
	/* a 400-digit number (longer than the stack copy) is still exact */
	{
		char num[401];

		memset(num, '0', 400);
		num[0] = '1';
		num[400] = '\0';
		snprintf(buf, sizeof(buf), "{\"id\":\"a\",\"t\":\"2024-01-01T00:00:00Z\",\"f\":%s}",
		        num);
		assert_reason(extract_s(types, buf), TL_REASON_EV_NUMBER_RANGE);
		num[300] = '\0';
		snprintf(buf, sizeof(buf), "{\"id\":\"a\",\"t\":\"2024-01-01T00:00:00Z\",\"f\":%s}",
		        num);
		assert_reason(extract_s(types, buf), TL_REASON_OK);
		assert_true(ev.col[2].f == 1e299);
		snprintf(buf, sizeof(buf),
		        "{\"id\":\"a\",\"t\":\"2024-01-01T00:00:00Z\",\"f\":0.%s1}", num + 1);
		assert_reason(extract_s(types, buf), TL_REASON_OK);
		assert_true(ev.col[2].f == 1e-300);
	}
}

static void
test_extract_number_grammar_syntax(void **state)
{
	static const char *const bad[] = {
	        "01",
	        "-01",
	        "00",
	        "1.",
	        "-",
	        "-a",
	        ".5",
	        "+1",
	        "1e",
	        "1e+",
	        "1E-",
	        "1.e5",
	        "0x10",
	        "NaN",
	        "-NaN",
	        "Infinity",
	        "-Infinity",
	        "1..2",
	        "1e5.5",
	        "--1",
	        "1 2",
	        "tru",
	        "nul",
	        "falsey",
	        "True",
	        "NULL",
	        "'a'",
	};
	char buf[256];

	(void)state;
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		enum tl_reason r;

		/* in an ANY column and in an unknown field: both must reject */
		snprintf(buf, sizeof(buf), "{" BASE ",\"payload\":%s}", bad[k]);
		r = ex(buf);
		if (r != TL_REASON_EV_JSON_SYNTAX)
			fail_msg("payload %s: got %s", bad[k], tl_reason_name(r));
		snprintf(buf, sizeof(buf), "{" BASE ",\"x\":[%s]}", bad[k]);
		r = ex(buf);
		if (r != TL_REASON_EV_JSON_SYNTAX)
			fail_msg("x %s: got %s", bad[k], tl_reason_name(r));
	}
	assert_reason(
	        exf("\"x\":[0,-0,0.0,-0.5e-0,1E+00,123456789012345678901234567890]"), TL_REASON_OK);
}

/* ---------------------------------------------------------------- timestamps */

static int
pt(const char *s, int64_t *ns)
{
	return tl_json_parse_time((const uint8_t *)s, strlen(s), ns);
}

static void
test_parse_time_valid_values(void **state)
{
	static const struct {
		const char *s;
		int64_t ns;
	} c[] = {
	        {"1970-01-01T00:00:00Z", 0},
	        {"1970-01-01T00:00:00.000000001Z", 1},
	        {"1969-12-31T23:59:59.999999999Z", -1},
	        {"2024-02-29T12:34:56Z", 1709210096000000000LL},
	        {"2000-02-29T00:00:00Z", 951782400000000000LL},
	        {"2024-03-15T12:34:56.789Z", 1710506096789000000LL},
	        {"2024-03-15t12:34:56.789z", 1710506096789000000LL},
	        {"2024-03-15 12:34:56.789+00:00", 1710506096789000000LL},
	        {"2024-03-15T12:34:56.789-00:00", 1710506096789000000LL},
	        {"2024-01-01T00:00:00+05:30", 1704047400000000000LL},
	        {"2024-01-01T00:00:00+0530", 1704047400000000000LL},
	        {"2024-01-01T00:00:00-08:00", 1704096000000000000LL},
	        {"2024-01-01T00:00:00-0800", 1704096000000000000LL},
	        {"2024-01-01T00:00:00-08", 1704096000000000000LL},
	        {"2024-01-01T00:00:00+23:59", 1703980860000000000LL},
	        {"2024-01-01T00:00:00-23:59", 1704153540000000000LL},
	        {"2015-10-18T18:06:26.029+08:00", 1445162786029000000LL},
	        {"1678-01-01T00:00:00Z", -9214560000000000000LL},
	        {"1678-01-01T00:00:00+23:59", -9214646340000000000LL},
	        {"2261-12-31T23:59:59Z", 9214646399000000000LL},
	        {"2261-12-31T23:59:59.999999999-23:59", 9214732739999999999LL},
	        {"2023-12-31T23:59:59Z", 1704067199000000000LL},
	};

	(void)state;
	for (size_t k = 0; k < sizeof(c) / sizeof(c[0]); k++) {
		int64_t ns = 42;

		if (pt(c[k].s, &ns) != 0)
			fail_msg("%s rejected", c[k].s);
		if (ns != c[k].ns)
			fail_msg("%s: %lld != %lld", c[k].s, (long long)ns, (long long)c[k].ns);
	}
}

static void
test_parse_time_fraction_digits_padded(void **state)
{
	char s[64];
	int64_t ns, want = 0;

	(void)state;
	for (int n = 1; n <= 9; n++) {
		want = want * 10 + n;
		snprintf(s, sizeof(s), "1970-01-01T00:00:00.%.*sZ", n, "123456789");
		assert_int_equal(pt(s, &ns), 0);
		{
			int64_t w = want;
			for (int k = n; k < 9; k++)
				w *= 10;
			assert_true(ns == w);
		}
	}
	assert_int_equal(pt("1970-01-01T00:00:00.1234567890Z", &ns), -EINVAL);
	assert_int_equal(pt("1970-01-01T00:00:00.Z", &ns), -EINVAL);
	assert_int_equal(pt("1970-01-01T00:00:00.5", &ns), -EINVAL);
}

static void
test_parse_time_invalid_rejected(void **state)
{
	static const char *const bad[] = {
	        "",
	        "2024-01-01T00:00:00",     /* no zone */
	        "2024-01-01T00:00:00.123", /* no zone */
	        "2023-02-29T00:00:00Z",    /* not a leap year */
	        "1900-02-29T00:00:00Z",    /* century, not leap */
	        "2024-02-30T00:00:00Z",
	        "2024-04-31T00:00:00Z",
	        "2024-06-31T00:00:00Z",
	        "2024-09-31T00:00:00Z",
	        "2024-11-31T00:00:00Z",
	        "2024-01-32T00:00:00Z",
	        "2024-00-10T00:00:00Z",
	        "2024-13-10T00:00:00Z",
	        "2024-01-00T00:00:00Z",
	        "2024-01-01T24:00:00Z",
	        "2024-01-01T23:60:00Z",
	        "2024-01-01T23:59:60Z", /* leap seconds are not accepted */
	        "2024-01-01T00:00:00+24:00",
	        "2024-01-01T00:00:00+00:60",
	        "2024-01-01T00:00:00+5:30",
	        "2024-01-01T00:00:00+05:3",
	        "2024-01-01T00:00:00+05:300",
	        "2024-01-01T00:00:00+053",
	        "2024-01-01T00:00:00+0",
	        "2024-01-01T00:00:00+",
	        "2024-01-01T00:00:00ZZ",
	        "2024-01-01T00:00:00Z ",
	        "2024-01-01T00:00:00 Z",
	        "2024-01-01X00:00:00Z",
	        "2024/01/01T00:00:00Z",
	        "2024-1-01T00:00:00Z",
	        "24-01-01T00:00:00Z",
	        "2024-01-01T00:00Z",
	        "2024-01-01",
	        "1677-12-31T23:59:59Z",
	        "2262-01-01T00:00:00Z",
	        "0000-01-01T00:00:00Z",
	        "9999-12-31T23:59:59Z",
	        "2024-01-01T00:00:00.-1Z",
	        "+2024-01-01T00:00:00Z",
	        "2024-01-01T0a:00:00Z",
	        "2024-01-1:T00:00:00Z", /* ':' - '0' == 10: not a digit */
	        "2024-01-01T00:00:0;Z",
	        "2024-0:-01T00:00:00Z",
	        "2024-01-01T00:00:00+0:",
	        "2024-01-01T00:00:00EST",
	};
	int64_t ns = 42;

	(void)state;
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++)
		if (pt(bad[k], &ns) != -EINVAL)
			fail_msg("%s accepted", bad[k]);
	assert_int_equal(ns, 42);
}

static void
test_extract_timestamp_column_rules(void **state)
{
	(void)state;
	assert_reason(ex("{\"query_id\":\"q\",\"event_type\":\"e\",\"timestamp\":\"2023-02-29T00:"
	                 "00:00Z\"}"),
	        TL_REASON_EV_TIMESTAMP);
	/* escapes in a timestamp are not decoded: rejected */
	assert_reason(ex("{\"query_id\":\"q\",\"event_type\":\"e\",\"timestamp\":\"2024-01-01T00:"
	                 "00:00\\u005a\"}"),
	        TL_REASON_EV_TIMESTAMP);
	assert_reason(ex("{\"query_id\":\"q\",\"event_type\":\"e\",\"timestamp\":1704067200}"),
	        TL_REASON_EV_FIELD_TYPE);
	assert_reason(ex("{\"query_id\":\"q\",\"event_type\":\"e\",\"timestamp\":null}"),
	        TL_REASON_EV_MISSING_FIELD);
	assert_reason(ex("{\"query_id\":\"q\",\"event_type\":\"e\",\"timestamp\":\"\"}"),
	        TL_REASON_EV_TIMESTAMP);
	assert_reason(ex("{\"query_id\":\"q\",\"event_type\":\"e\",\"timestamp\":\"2024-02-29 "
	                 "23:59:59.5-01\"}"),
	        TL_REASON_OK);
	assert_int_equal(ev.time_ns, 1709254799500000000LL);
	assert_int_equal(ev.col[C_EVENT_TIME].kind, TL_VAL_TIME);
}

/* ---------------------------------------------------------------- escapes */

static void
test_extract_escapes_valid_and_invalid(void **state)
{
	static const char *const bad[] = {"\\x", "\\'", "\\a", "\\0", "\\U0041", "\\u12", "\\u12G4",
	        "\\u-123", "\\ ", "\\\xc3\xa9", "\\"};

	(void)state;
	assert_reason(exf("\"query_text\":\"\\\"\\\\\\/"
	                  "\\b\\f\\n\\r\\t\\u0041\\u00e9\\u20ac\\ud83d\\ude00\""),
	        TL_REASON_OK);
	assert_int_equal(ev.col[C_QUERY_TEXT].escaped, 1);
	assert_string_equal(unesc(&ev.col[C_QUERY_TEXT]),
	        "\"\\/\b\f\n\r\tA\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
	assert_reason(exf("\"query_text\":\"plain\""), TL_REASON_OK);
	assert_int_equal(ev.col[C_QUERY_TEXT].escaped, 0);
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		enum tl_reason r = exf("\"query_text\":\"a%s\"", bad[k]);

		if (r != TL_REASON_EV_JSON_SYNTAX)
			fail_msg("%s: got %s", bad[k], tl_reason_name(r));
	}
}

static void
test_unescape_decodes_and_never_grows(void **state)
{
	static const struct {
		const char *in;
		const char *out;
		size_t out_len;
	} c[] = {
	        {"", "", 0},
	        {"abc", "abc", 3},
	        {"a\\nb", "a\nb", 3},
	        {"\\u0000", "\0", 1},
	        {"\\u007f\\u0080\\u07ff\\u0800\\uffff",
	                "\x7f\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf", 11},
	        {"\\uD83D\\uDE00x", "\xf0\x9f\x98\x80x", 5},
	        {"\\udbff\\udfff", "\xf4\x8f\xbf\xbf", 4},
	        {"\\\\u0041", "\\u0041", 6},
	        {"\\/\\\"", "/\"", 2},
	};
	uint8_t out[64], inplace[64];

	(void)state;
	for (size_t k = 0; k < sizeof(c) / sizeof(c[0]); k++) {
		size_t il = strlen(c[k].in);
		size_t n = tl_json_unescape((const uint8_t *)c[k].in, il, out);

		assert_int_equal(n, c[k].out_len);
		assert_memory_equal(out, c[k].out, n);
		assert_true(n <= il);
		memcpy(inplace, c[k].in, il);
		assert_int_equal(tl_json_unescape(inplace, il, inplace), c[k].out_len);
		assert_memory_equal(inplace, c[k].out, n);
	}
}

/* ---------------------------------------------------------------- syntax */

static void
test_extract_syntax_errors_rejected(void **state)
{
	static const struct {
		const char *json;
		enum tl_reason want;
	} c[] = {
	        {"", TL_REASON_EV_JSON_SYNTAX},
	        {"   \r\n\t", TL_REASON_EV_JSON_SYNTAX},
	        {"{", TL_REASON_EV_JSON_SYNTAX},
	        {"}", TL_REASON_EV_JSON_SYNTAX},
	        {"[]", TL_REASON_EV_JSON_NOT_OBJECT},
	        {"[1,2]", TL_REASON_EV_JSON_NOT_OBJECT},
	        {"\"str\"", TL_REASON_EV_JSON_NOT_OBJECT},
	        {"42", TL_REASON_EV_JSON_NOT_OBJECT},
	        {"-1", TL_REASON_EV_JSON_NOT_OBJECT},
	        {"true", TL_REASON_EV_JSON_NOT_OBJECT},
	        {"false", TL_REASON_EV_JSON_NOT_OBJECT},
	        {"null", TL_REASON_EV_JSON_NOT_OBJECT},
	        {"hello", TL_REASON_EV_JSON_SYNTAX},
	        {"'a'", TL_REASON_EV_JSON_SYNTAX},
	        {"{" BASE ",}", TL_REASON_EV_JSON_SYNTAX},
	        {"{," BASE "}", TL_REASON_EV_JSON_SYNTAX},
	        {"{" BASE ",,\"x\":1}", TL_REASON_EV_JSON_SYNTAX},
	        {"{" BASE ",\"x\":[1,]}", TL_REASON_EV_JSON_SYNTAX},
	        {"{" BASE ",\"x\":[,1]}", TL_REASON_EV_JSON_SYNTAX},
	        {"{" BASE ",\"x\":[1 2]}", TL_REASON_EV_JSON_SYNTAX},
	        {"{" BASE ",\"x\":{\"a\":1,}}", TL_REASON_EV_JSON_SYNTAX},
	        {"{" BASE ",\"x\":{\"a\"}}", TL_REASON_EV_JSON_SYNTAX},
	        {"{" BASE ",\"x\":{\"a\":}}", TL_REASON_EV_JSON_SYNTAX},
	        {"{" BASE ",\"x\":{1:2}}", TL_REASON_EV_JSON_SYNTAX},
	        {"{" BASE ",\"x\":[}", TL_REASON_EV_JSON_SYNTAX},
	        {"{" BASE ",\"x\":{]}", TL_REASON_EV_JSON_SYNTAX},
	        {"{" BASE ",\"x\":1]", TL_REASON_EV_JSON_SYNTAX},
	        {"{" BASE " \"x\":1}", TL_REASON_EV_JSON_SYNTAX},
	        {"{" BASE ",\"x\" 1}", TL_REASON_EV_JSON_SYNTAX},
	        {"{" BASE ",\"x\"::1}", TL_REASON_EV_JSON_SYNTAX},
	        {"{" BASE ",x:1}", TL_REASON_EV_JSON_SYNTAX},
	        {"{" BASE ",'x':1}", TL_REASON_EV_JSON_SYNTAX},
	        {"{" BASE ",\"x\":'a'}", TL_REASON_EV_JSON_SYNTAX},
	        {"{" BASE ",\"x\":NaN}", TL_REASON_EV_JSON_SYNTAX},
	        {"{" BASE ",\"x\":undefined}", TL_REASON_EV_JSON_SYNTAX},
	        {"{" BASE "/* c */}", TL_REASON_EV_JSON_SYNTAX},
	        {"{" BASE "// c\n}", TL_REASON_EV_JSON_SYNTAX},
	        {"{" BASE ",# c\n\"x\":1}", TL_REASON_EV_JSON_SYNTAX},
	        {"{" BASE "}x", TL_REASON_EV_JSON_SYNTAX},
	        {"{" BASE "}{}", TL_REASON_EV_JSON_SYNTAX},
	        {"{" BASE "},", TL_REASON_EV_JSON_SYNTAX},
	        {"{" BASE "}\n{}", TL_REASON_EV_JSON_SYNTAX},
	        {"{" BASE "}\v", TL_REASON_EV_JSON_SYNTAX},
	        {"{" BASE "}\f", TL_REASON_EV_JSON_SYNTAX},
	        {"{" BASE "}\xc2\xa0", TL_REASON_EV_JSON_SYNTAX},
	        {"{" BASE ",\"x\":\v1}", TL_REASON_EV_JSON_SYNTAX},
	        {"{" BASE "} \r\n\t ", TL_REASON_OK},
	        {" \r\n\t{" BASE "}", TL_REASON_OK},
	        {"{" BASE ",\"x\":[ ]}", TL_REASON_OK},
	        {"{" BASE ",\"x\":{ }}", TL_REASON_OK},
	        {"{" BASE ",\"x\":[[],{},\"\",0,true,false,null]}", TL_REASON_OK},
	};

	(void)state;
	for (size_t k = 0; k < sizeof(c) / sizeof(c[0]); k++) {
		enum tl_reason r = ex(c[k].json);

		if (r != c[k].want)
			fail_msg("%s: got %s, want %s", c[k].json, tl_reason_name(r),
			        tl_reason_name(c[k].want));
	}
}

/* ---------------------------------------------------------------- required / order */

static void
test_extract_missing_required_field(void **state)
{
	(void)state;
	assert_reason(ex("{}"), TL_REASON_EV_MISSING_FIELD);
	assert_reason(ex("{\"event_type\":\"e\"," TS "}"), TL_REASON_EV_MISSING_FIELD);
	assert_reason(
	        ex("{\"query_id\":null,\"event_type\":\"e\"," TS "}"), TL_REASON_EV_MISSING_FIELD);
	assert_reason(ex("{\"query_id\":\"q\",\"event_type\":\"e\"}"), TL_REASON_EV_MISSING_FIELD);
	/* an empty string is present */
	assert_reason(ex("{\"query_id\":\"\",\"event_type\":\"e\"," TS "}"), TL_REASON_OK);
	/* optional columns may be absent or null */
	assert_reason(
	        exf("\"query_text\":null,\"metadata\":{\"user_id\":null,\"duration_ms\":null}"),
	        TL_REASON_OK);
	assert_int_equal(ev.col[C_QUERY_TEXT].kind, TL_VAL_NULL);
	assert_int_equal(ev.col[C_USER_ID].kind, TL_VAL_NULL);
	assert_int_equal(ev.col[C_DURATION].kind, TL_VAL_NULL);
	assert_int_equal(ev.col[C_DATABASE].kind, TL_VAL_ABSENT);
	assert_int_equal(ev.col[C_PAYLOAD].kind, TL_VAL_ABSENT);
}

static void
test_extract_first_reason_in_document_order(void **state)
{
	(void)state;
	/* missing_field only when everything else is fine */
	assert_reason(ex("{\"event_type\":\"e\",\"x\":[1,]}"), TL_REASON_EV_JSON_SYNTAX);
	assert_reason(ex("{\"event_type\":5}"), TL_REASON_EV_FIELD_TYPE);
	assert_reason(ex("{\"event_type\":\"e\",\"x\":\"\xff\"}"), TL_REASON_EV_JSON_UTF8);
	/* type before a later syntax error, syntax before a later type error */
	assert_reason(
	        exf("\"metadata\":{\"duration_ms\":\"x\"},\"y\":tru"), TL_REASON_EV_FIELD_TYPE);
	assert_reason(
	        exf("\"y\":tru,\"metadata\":{\"duration_ms\":\"x\"}"), TL_REASON_EV_JSON_SYNTAX);
	/* range before a later UTF-8 error, and the other way round */
	assert_reason(exf("\"metadata\":{\"duration_ms\":-5},\"y\":\"\xc0\x80\""),
	        TL_REASON_EV_NUMBER_RANGE);
	assert_reason(exf("\"y\":\"\xc0\x80\",\"metadata\":{\"duration_ms\":-5}"),
	        TL_REASON_EV_JSON_UTF8);
	/* duplicate before a later depth problem */
	assert_reason(exf("\"x\":1,\"x\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]"
	                  "]]]]]]]]]]]"),
	        TL_REASON_EV_JSON_DUPLICATE_KEY);
	assert_reason(exf("\"z\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"
	                  "]]],\"x\":1,\"x\":1"),
	        TL_REASON_EV_JSON_DEPTH);
	/* a wrongly typed value is still validated first */
	assert_reason(exf("\"metadata\":{\"duration_ms\":[1,]}"), TL_REASON_EV_JSON_SYNTAX);
	assert_reason(exf("\"metadata\":{\"duration_ms\":\"\xff\"}"), TL_REASON_EV_JSON_UTF8);
}

/* ---------------------------------------------------------------- is_error */

static void
test_extract_is_error_cases(void **state)
{
	static const struct {
		const char *member;
		bool is_error;
	} c[] = {
	        {"", false},
	        {"\"metadata\":{}", false},
	        {"\"metadata\":{\"error\":null}", false},
	        {"\"metadata\":{\"error\":\"\"}", false},
	        {"\"metadata\":{\"error\":\"OutOfMemoryError\"}", true},
	        {"\"metadata\":{\"error\":\" \"}", true},
	        {"\"metadata\":{\"error\":{\"code\":42}}", true},
	        {"\"metadata\":{\"error\":false}", true},
	        {"\"metadata\":{\"error\":0}", true},
	        {"\"error\":\"top-level error is unknown\"", false},
	};

	(void)state;
	for (size_t k = 0; k < sizeof(c) / sizeof(c[0]); k++) {
		assert_reason(exf("%s", c[k].member), TL_REASON_OK);
		if (ev.is_error != c[k].is_error)
			fail_msg("%s: is_error %d", c[k].member, ev.is_error);
	}
	assert_int_equal(ev.time_ns, 1704067200000000000LL);
}

/* ---------------------------------------------------------------- extra */

static void
check_extra_round_trip(const struct tl_schema *s)
{
	static uint8_t out[1 << 17], wrapped[(1 << 17) + 64];
	size_t n = tl_json_format_extra(s, &ev, out, sizeof(out));
	int wl;

	assert_true(n < sizeof(out));
	wl = snprintf((char *)wrapped, sizeof(wrapped), "{" BASE ",\"x\":%.*s}", (int)n, out);
	assert_reason(extract_s(e6, (const char *)wrapped), TL_REASON_OK);
	assert_int_equal(ev.n_extra, 1);
	assert_int_equal(ev.extra[0].val_len, n);
	assert_true(wl > 0 && (size_t)wl < sizeof(wrapped));
}

static void
test_extract_extra_fields_format_round_trip(void **state)
{
	uint8_t out[512];
	const char *want = "{\"metadata.engine\":\"x\",\"tags\":{\"a\":1},\"k\\u00e9\":[1, 2],"
	                   "\"metadata.n\":-1.5e3}";
	size_t n;

	(void)state;
	assert_reason(exf("\"metadata\":{\"engine\":\"x\",\"user_id\":\"u\"},\"tags\":{\"a\":1},"
	                  "\"k\\u00e9\":[1, 2]"),
	        TL_REASON_OK);
	assert_int_equal(ev.n_extra, 3);
	/* out of document order on purpose: format keeps the order of the array */
	{
		struct tl_extra x = ev.extra[2];
		static const char val[] = "-1.5e3";

		ev.extra[3] = x;
		ev.extra[3].key = (const uint8_t *)"n";
		ev.extra[3].key_len = 1;
		ev.extra[3].val = (const uint8_t *)val;
		ev.extra[3].val_len = 6;
		ev.extra[3].parent = 0;
		ev.n_extra = 4;
	}
	n = tl_json_format_extra(e6, &ev, out, sizeof(out));
	assert_int_equal(n, strlen(want));
	assert_memory_equal(out, want, n);
	ev.n_extra = 3;
	check_extra_round_trip(e6);
	/* the real event's extras */
	assert_reason(ex(real_event), TL_REASON_OK);
	n = tl_json_format_extra(e6, &ev, out, sizeof(out));
	assert_int_equal(n, strlen("{\"metadata.engine\":\"e6data-2.1\",\"tenant\":\"msra\"}"));
	assert_memory_equal(out, "{\"metadata.engine\":\"e6data-2.1\",\"tenant\":\"msra\"}", n);
	check_extra_round_trip(e6);
	/* none */
	assert_reason(ex("{" BASE "}"), TL_REASON_OK);
	assert_int_equal(tl_json_format_extra(e6, &ev, out, sizeof(out)), 2);
	assert_memory_equal(out, "{}", 2);
}

static void
test_format_extra_small_cap_truncates_like_snprintf(void **state)
{
	uint8_t full[256], out[256];
	size_t n;

	(void)state;
	assert_reason(exf("\"a\":1,\"metadata\":{\"bb\":\"x\"},\"c\":[true]"), TL_REASON_OK);
	n = tl_json_format_extra(e6, &ev, full, sizeof(full));
	assert_int_equal(n, strlen("{\"a\":1,\"metadata.bb\":\"x\",\"c\":[true]}"));
	for (size_t cap = 0; cap <= n + 1; cap++) {
		memset(out, 0xAA, sizeof(out));
		assert_int_equal(tl_json_format_extra(e6, &ev, cap ? out : NULL, cap), n);
		if (cap)
			assert_memory_equal(out, full, cap < n ? cap : n);
		assert_int_equal(out[cap], 0xAA);
	}
}

static void
test_extract_too_many_unknown_fields(void **state)
{
	struct tl_limits l = tl_test_e6data_limits();
	struct tl_schema *s;
	char buf[4096];
	int off;

	(void)state;
	for (uint64_t max = 0; max <= 64; max += 8) {
		l.max_extra = max;
		s = compile_e6(&l);
		for (uint64_t n = max; n <= max + 1; n++) {
			/* every other one lives in metadata: only one metadata object allowed */
			off = snprintf(
			        buf, sizeof(buf), "{" BASE ",\"metadata\":{\"user_id\":\"u\"");
			for (uint64_t i = 0; i < n; i += 2)
				off += snprintf(buf + off, sizeof(buf) - (size_t)off,
				        ",\"m%llu\":%llu", (unsigned long long)i,
				        (unsigned long long)i);
			off += snprintf(buf + off, sizeof(buf) - (size_t)off, "}");
			for (uint64_t i = 1; i < n; i += 2)
				off += snprintf(buf + off, sizeof(buf) - (size_t)off,
				        ",\"t%llu\":[%llu]", (unsigned long long)i,
				        (unsigned long long)i);
			snprintf(buf + off, sizeof(buf) - (size_t)off, "}");
			assert_reason(extract_s(s, buf),
			        n <= max ? TL_REASON_OK : TL_REASON_EV_JSON_TOO_MANY_FIELDS);
			if (n <= max) {
				assert_int_equal(ev.n_extra, n);
				check_extra_round_trip(s);
			}
		}
		tl_schema_free(s);
	}
}

static void
test_extract_prefix_not_object_field_type(void **state)
{
	static const char *const bad[] = {"\"x\"", "[]", "[{}]", "0", "true"};

	(void)state;
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		enum tl_reason r = exf("\"metadata\":%s", bad[k]);

		if (r != TL_REASON_EV_FIELD_TYPE)
			fail_msg("metadata %s: got %s", bad[k], tl_reason_name(r));
	}
	/* invalid as JSON first */
	assert_reason(exf("\"metadata\":[1,]"), TL_REASON_EV_JSON_SYNTAX);
}

static void
test_extract_prefix_null_columns_absent(void **state)
{
	(void)state;
	/* null stands for "no such object": its columns are absent, the event is fine */
	assert_reason(exf("\"metadata\":null"), TL_REASON_OK);
	assert_int_equal(ev.col[tl_schema_col_index(e6, "user_id")].kind, TL_VAL_ABSENT);
	assert_int_equal(ev.col[tl_schema_col_index(e6, "error")].kind, TL_VAL_ABSENT);
	assert_false(ev.is_error);
	/* ...and it still counts as the object's one appearance */
	assert_reason(exf("\"metadata\":null,\"metadata\":{}"), TL_REASON_EV_JSON_DUPLICATE_KEY);
	assert_reason(exf("\"metadata\":nul"), TL_REASON_EV_JSON_SYNTAX);
}

/* ---------------------------------------------------------------- types */

static void
test_extract_types_matrix(void **state)
{
	/* columns of the types schema: i u f b s a t e id */
	static const struct {
		const char *member;
		int col;
		enum tl_reason want;
		int kind;
	} c[] = {
	        {"\"b\":true", 3, TL_REASON_OK, TL_VAL_BOOL},
	        {"\"b\":false", 3, TL_REASON_OK, TL_VAL_BOOL},
	        {"\"b\":null", 3, TL_REASON_OK, TL_VAL_NULL},
	        {"\"b\":1", 3, TL_REASON_EV_FIELD_TYPE, 0},
	        {"\"b\":\"true\"", 3, TL_REASON_EV_FIELD_TYPE, 0},
	        {"\"s\":\"x\"", 4, TL_REASON_OK, TL_VAL_STRING},
	        {"\"s\":null", 4, TL_REASON_OK, TL_VAL_NULL},
	        {"\"s\":1", 4, TL_REASON_EV_FIELD_TYPE, 0},
	        {"\"s\":true", 4, TL_REASON_EV_FIELD_TYPE, 0},
	        {"\"s\":{}", 4, TL_REASON_EV_FIELD_TYPE, 0},
	        {"\"s\":[\"x\"]", 4, TL_REASON_EV_FIELD_TYPE, 0},
	        {"\"a\":\"x\\ny\"", 5, TL_REASON_OK, TL_VAL_STRING},
	        {"\"a\":null", 5, TL_REASON_OK, TL_VAL_NULL},
	        {"\"a\":true", 5, TL_REASON_OK, TL_VAL_RAW},
	        {"\"a\":-1.5e3", 5, TL_REASON_OK, TL_VAL_RAW},
	        {"\"a\":[1, {\"k\": [null]}]", 5, TL_REASON_OK, TL_VAL_RAW},
	        {"\"a\":{}", 5, TL_REASON_OK, TL_VAL_RAW},
	        {"\"f\":null", 2, TL_REASON_OK, TL_VAL_NULL},
	        {"\"f\":false", 2, TL_REASON_EV_FIELD_TYPE, 0},
	        {"\"i\":\"1\"", 0, TL_REASON_EV_FIELD_TYPE, 0},
	        {"\"e\":7", 7, TL_REASON_EV_FIELD_TYPE, 0},
	};
	char buf[256];

	(void)state;
	for (size_t k = 0; k < sizeof(c) / sizeof(c[0]); k++) {
		enum tl_reason r;

		snprintf(buf, sizeof(buf), "{\"id\":\"a\",\"t\":\"2024-01-01T00:00:00Z\",%s}",
		        c[k].member);
		r = extract_s(types, buf);
		if (r != c[k].want)
			fail_msg("%s: got %s", c[k].member, tl_reason_name(r));
		if (r == TL_REASON_OK) {
			const struct tl_value *v = &ev.col[c[k].col];
			const char *val = strchr(c[k].member, ':') + 1;

			assert_int_equal(v->kind, c[k].kind);
			if (v->kind == TL_VAL_RAW) {
				assert_int_equal(v->len, strlen(val));
				assert_memory_equal(v->ptr, val, v->len);
			}
			if (v->kind == TL_VAL_BOOL)
				assert_int_equal(v->b, val[0] == 't');
			if (v->kind == TL_VAL_STRING) {
				assert_int_equal(v->len, strlen(val) - 2);
				assert_memory_equal(v->ptr, val + 1, v->len);
			}
		}
	}
}

static void
test_extract_escaped_key_matches_column(void **state)
{
	(void)state;
	assert_reason(ex("{\"query\\u005fid\":\"q\",\"event_type\":\"e\"," TS
	                 ",\"\\u006detadata\":{\"user\\u005Fid\":\"u\"}}"),
	        TL_REASON_OK);
	assert_str(&ev.col[C_QUERY_ID], "q");
	assert_str(&ev.col[C_USER_ID], "u");
	assert_int_equal(ev.n_extra, 0);
	/* an escape that decodes to something longer than any segment: unknown */
	assert_reason(exf("\"\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\":1"),
	        TL_REASON_OK);
	assert_int_equal(ev.n_extra, 1);
	/* prefixes of mapped names, and names with a mapped prefix, are unknown */
	assert_reason(exf("\"query\":1,\"query_idx\":2,\"metadat\":3,\"metadata.user_id\":4"),
	        TL_REASON_OK);
	assert_int_equal(ev.n_extra, 4);
	assert_int_equal(ev.col[C_USER_ID].kind, TL_VAL_ABSENT);
}

static void
test_extract_values_point_into_input(void **state)
{
	(void)state;
	assert_reason(ex(real_event), TL_REASON_OK);
	for (uint32_t i = 0; i < tl_schema_n_cols(e6); i++) {
		const struct tl_value *v = &ev.col[i];

		if (v->ptr == NULL)
			continue;
		assert_true(v->ptr >= cur && v->ptr + v->len <= cur + ev.raw_len);
	}
	for (uint32_t i = 0; i < ev.n_extra; i++) {
		assert_true(ev.extra[i].key >= cur);
		assert_true(ev.extra[i].val + ev.extra[i].val_len <= cur + ev.raw_len);
	}
	/* a second extraction re-initialises every column */
	assert_reason(ex("{" BASE "}"), TL_REASON_OK);
	assert_int_equal(ev.col[C_QUERY_TEXT].kind, TL_VAL_ABSENT);
	assert_null(ev.col[C_QUERY_TEXT].ptr);
	assert_int_equal(ev.n_extra, 0);
	assert_false(ev.is_error);
	/* and so does a rejection */
	assert_reason(ex(real_event), TL_REASON_OK);
	assert_reason(ex("{"), TL_REASON_EV_JSON_SYNTAX);
	assert_int_equal(ev.col[C_QUERY_ID].kind, TL_VAL_ABSENT);
	assert_int_equal(ev.time_ns, 0);
	assert_int_equal(ev.n_extra, 0);
}

/* ---------------------------------------------------------------- scalar vs AVX2 */

static uint64_t rng = 0x9E3779B97F4A7C15ull;

static uint64_t
next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void
test_extract_scalar_and_avx2_agree_on_mutations(void **state)
{
	static const char alphabet[] =
	        "{}[]\":,\\ \t\nu0189eE.-+tfnl\x01\x80\xbf\xc3\xe2\xed\xf0\xff";
	size_t n = strlen(real_event);
	uint8_t *m = malloc(n + 64);
	struct tl_event a;

	(void)state;
	for (int iter = 0; iter < 4000; iter++) {
		size_t len = n;
		enum tl_reason ra, rb;

		memcpy(m, real_event, n);
		for (int k = 0, nm = 1 + (int)(next_rand() % 3); k < nm; k++) {
			size_t pos = next_rand() % len;
			uint8_t ch = (uint8_t)alphabet[next_rand() % (sizeof(alphabet) - 1)];

			switch (next_rand() % 3) {
			case 0:
				m[pos] = ch;
				break;
			case 1:
				memmove(m + pos, m + pos + 1, len - pos - 1);
				len--;
				break;
			default:
				memmove(m + pos + 1, m + pos, len - pos);
				m[pos] = ch;
				len++;
				break;
			}
		}
		tl_json_force_scalar(1);
		ra = extract_n(e6, m, len);
		a = ev;
		tl_json_force_scalar(0);
		rb = extract_n(e6, m, len);
		if (ra != rb)
			fail_msg("iteration %d: scalar %s, avx2 %s", iter, tl_reason_name(ra),
			        tl_reason_name(rb));
		if (ra == TL_REASON_OK) {
			assert_int_equal(a.n_extra, ev.n_extra);
			assert_int_equal(a.is_error, ev.is_error);
			for (uint32_t i = 0; i < tl_schema_n_cols(e6); i++) {
				assert_int_equal(a.col[i].kind, ev.col[i].kind);
				assert_int_equal(a.col[i].len, ev.col[i].len);
			}
		}
	}
	tl_json_force_scalar(want_scalar);
	free(m);
}

static void
test_impl_reports_scanner(void **state)
{
	(void)state;
	if (want_scalar)
		assert_string_equal(tl_json_impl(), "scalar");
#if defined(__x86_64__)
	else if (__builtin_cpu_supports("avx2"))
		assert_string_equal(tl_json_impl(), "avx2");
#endif
	else
		assert_string_equal(tl_json_impl(), "scalar");
}

/* ---------------------------------------------------------------- setup */

static int
setup_common(void)
{
	struct tl_limits l = tl_test_e6data_limits();
	struct tl_schema_def d;

	e6 = compile_e6(&l);
	memset(&d, 0, sizeof(d));
	tl_test_add_col(&d, "i", "i", TL_COL_INT64, false, 0);
	tl_test_add_col(&d, "u", "u", TL_COL_UINT64, false, 0);
	tl_test_add_col(&d, "f", "f", TL_COL_FLOAT64, false, 0);
	tl_test_add_col(&d, "b", "b", TL_COL_BOOL, false, 0);
	tl_test_add_col(&d, "s", "s", TL_COL_STRING, false, 0);
	tl_test_add_col(&d, "a", "a", TL_COL_ANY, false, 0);
	tl_test_add_col(&d, "t", "t", TL_COL_DATETIME, true, 0);
	tl_test_add_col(&d, "e", "e", TL_COL_BOOL, false, 0);
	tl_test_add_col(&d, "id", "id", TL_COL_STRING, true, 0);
	tl_test_set_roles(&d, "t", "e", "id");
	types = compile(&d, &l);
	tl_json_force_scalar(want_scalar);
	return 0;
}

static int
setup_avx2(void **state)
{
	(void)state;
	want_scalar = 0;
	return setup_common();
}

static int
setup_scalar(void **state)
{
	(void)state;
	want_scalar = 1;
	return setup_common();
}

static int
teardown(void **state)
{
	(void)state;
	tl_schema_free(e6);
	tl_schema_free(types);
	free(cur);
	cur = NULL;
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_impl_reports_scanner),
	        cmocka_unit_test(test_extract_real_event_all_columns_ok),
	        cmocka_unit_test(test_extract_whitespace_everywhere_same_values),
	        cmocka_unit_test(test_extract_truncated_every_offset_syntax),
	        cmocka_unit_test(test_extract_utf8_table_every_context),
	        cmocka_unit_test(test_extract_non_ascii_outside_string_syntax),
	        cmocka_unit_test(test_extract_specials_every_alignment),
	        cmocka_unit_test(test_extract_string_lengths_near_end_ok),
	        cmocka_unit_test(test_extract_control_chars_in_strings_syntax),
	        cmocka_unit_test(test_extract_nesting_10000_levels_depth),
	        cmocka_unit_test(test_extract_depth_at_limit_ok_past_limit_depth),
	        cmocka_unit_test(test_extract_string_limits_too_long),
	        cmocka_unit_test(test_extract_column_max_len_too_long),
	        cmocka_unit_test(test_extract_huge_string_ok),
	        cmocka_unit_test(test_extract_event_too_large_checked_first),
	        cmocka_unit_test(test_extract_duplicate_keys_rejected),
	        cmocka_unit_test(test_extract_int64_limits),
	        cmocka_unit_test(test_extract_uint64_limits),
	        cmocka_unit_test(test_extract_float64_values),
	        cmocka_unit_test(test_extract_number_grammar_syntax),
	        cmocka_unit_test(test_parse_time_valid_values),
	        cmocka_unit_test(test_parse_time_fraction_digits_padded),
	        cmocka_unit_test(test_parse_time_invalid_rejected),
	        cmocka_unit_test(test_extract_timestamp_column_rules),
	        cmocka_unit_test(test_extract_escapes_valid_and_invalid),
	        cmocka_unit_test(test_unescape_decodes_and_never_grows),
	        cmocka_unit_test(test_extract_syntax_errors_rejected),
	        cmocka_unit_test(test_extract_missing_required_field),
	        cmocka_unit_test(test_extract_first_reason_in_document_order),
	        cmocka_unit_test(test_extract_is_error_cases),
	        cmocka_unit_test(test_extract_extra_fields_format_round_trip),
	        cmocka_unit_test(test_format_extra_small_cap_truncates_like_snprintf),
	        cmocka_unit_test(test_extract_too_many_unknown_fields),
	        cmocka_unit_test(test_extract_prefix_not_object_field_type),
	        cmocka_unit_test(test_extract_prefix_null_columns_absent),
	        cmocka_unit_test(test_extract_types_matrix),
	        cmocka_unit_test(test_extract_escaped_key_matches_column),
	        cmocka_unit_test(test_extract_values_point_into_input),
	        cmocka_unit_test(test_extract_scalar_and_avx2_agree_on_mutations),
	};
	int fails = 0;

	fails += cmocka_run_group_tests_name("json_avx2", tests, setup_avx2, teardown);
	fails += cmocka_run_group_tests_name("json_scalar", tests, setup_scalar, teardown);
	return fails;
}
