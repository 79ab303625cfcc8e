/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The framed protocol codec (tl_frame.h) against real zstd and OpenSSL: byte-exact
 * frames and ACKs (known-answer HMAC tags computed independently with `openssl dgst`),
 * round trips with and without zstd and HMAC, every reason, every truncation (copied into
 * exact-size allocations so ASan sees any read past the end), bit flips, key rotation,
 * unkeyed producers, keys file errors and key wiping (free is wrapped to look at the key
 * array just before it goes back to the allocator).
 *
 * Bodies are real NDJSON: the Spark event log in shared/data (TAPLINE_DATA).
 */
#include <errno.h>
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <zstd.h>

#include "tl_error.h"
#include "tl_frame.h"

#define PRODUCER UINT64_C(0x0102030405060708)
#define SEQUENCE UINT64_C(0x1112131415161718)

/* 32 and 64 byte keys (hex in the keys files below). */
static const uint8_t key_a[32] = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa,
        0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x0f, 0x1e, 0x2d, 0x3c, 0x4b, 0x5a, 0x69, 0x78, 0x87, 0x96,
        0xa5, 0xb4, 0xc3, 0xd2, 0xe1, 0xf0};
#define KEY_A_HEX "00112233445566778899aabbccddeeff0f1e2d3c4b5a69788796a5b4c3d2e1f0"
static const uint8_t key_b[16] = {0xde, 0xad, 0xbe, 0xef, 0xfe, 0xed, 0xfa, 0xce, 0x01, 0x23, 0x45,
        0x67, 0x89, 0xab, 0xcd, 0xef};
#define KEY_B_HEX "DEADBEEFFEEDFACE0123456789ABCDEF"

/* ---- free() is wrapped: a key array must be all zero when it is freed ---- */

void __real_free(void *p);
void __wrap_free(void *p);

static const uint8_t *watch_key; /* a key's bytes inside the array we expect to be wiped */
static size_t watch_len;
static int watch_seen, watch_wiped;

void
__wrap_free(void *p)
{
	if (watch_key != NULL && p != NULL) {
		const uint8_t *b = p;

		if (watch_key >= b && watch_key + watch_len <= b + malloc_usable_size(p)) {
			size_t i = 0;

			while (i < watch_len && watch_key[i] == 0)
				i++;
			watch_seen++;
			watch_wiped += i == watch_len;
		}
	}
	__real_free(p);
}

/* ---- helpers ---- */

static const char *
data_dir(void)
{
	const char *s = getenv("TAPLINE_DATA");

	return s && s[0] ? s : "../shared/data";
}

/* The Spark event log: real NDJSON, one JSON object per line. */
static uint8_t *spark;
static size_t spark_len;

static int
setup_spark(void **state)
{
	char path[1024];
	FILE *f;
	long size;

	(void)state;
	snprintf(path, sizeof(path), "%s/spark-eventlog/complex_dec_eventlog", data_dir());
	f = fopen(path, "rb");
	if (f == NULL) {
		fprintf(stderr, "cannot open %s (set TAPLINE_DATA)\n", path);
		return -1;
	}
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	rewind(f);
	spark = malloc((size_t)size);
	if (spark == NULL || fread(spark, 1, (size_t)size, f) != (size_t)size) {
		fclose(f);
		return -1;
	}
	fclose(f);
	spark_len = (size_t)size;
	return 0;
}

static int
teardown_spark(void **state)
{
	(void)state;
	free(spark);
	spark = NULL;
	return 0;
}

/* The first whole lines of the Spark log totalling at most @p max bytes; *count lines. */
static size_t
spark_lines(size_t max, uint32_t *count)
{
	size_t n = 0;

	*count = 0;
	while (n < spark_len) {
		const uint8_t *nl = memchr(spark + n, '\n', spark_len - n);

		assert_non_null(nl);
		if ((size_t)(nl - spark) + 1 > max)
			break;
		n = (size_t)(nl - spark) + 1;
		(*count)++;
	}
	assert_true(*count > 0);
	return n;
}

static uint8_t frame[TL_FRAME_MAX + 1024];

static size_t
encode_ok(const uint8_t *ev, size_t len, uint32_t count, int level, const uint8_t *key,
        size_t key_len, uint32_t key_id)
{
	long n = tl_frame_encode(PRODUCER, SEQUENCE, ev, len, count, level, key, key_len, key_id,
	        frame, sizeof(frame));

	if (n <= 0)
		fail_msg("tl_frame_encode: %ld", n);
	return (size_t)n;
}

/* An exact-size copy so that ASan catches any read past @p len. */
static uint8_t *
dup_exact(const uint8_t *p, size_t len)
{
	uint8_t *d = malloc(len ? len : 1);

	assert_non_null(d);
	memcpy(d, p, len);
	return d;
}

static enum tl_frame_reason
parse_copy(const uint8_t *p, size_t len, struct tl_frame_view *v)
{
	uint8_t *d = dup_exact(p, len);
	enum tl_frame_reason r = tl_frame_parse(d, len, v);

	free(d);
	return r;
}

static void
put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void
put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)(v >> 32));
	put32(p + 4, (uint32_t)v);
}

static void
hmac_ref(const uint8_t *key, size_t key_len, const uint8_t *d, size_t n, uint8_t *out)
{
	unsigned int len = 0;

	assert_non_null(HMAC(EVP_sha256(), key, (int)key_len, d, n, out, &len));
	assert_int_equal(len, 32);
}

/* Re-sign a frame whose header was patched by a test (so that only the patch is wrong). */
static void
resign(uint8_t *f, size_t len, const uint8_t *key, size_t key_len)
{
	hmac_ref(key, key_len, f, len - TL_FRAME_TAG_LEN, f + len - TL_FRAME_TAG_LEN);
}

/* A scratch folder for keys files. */
static char tmpdir[256];

static int
setup_tmp(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/tapline-test-frame.XXXXXX");
	return mkdtemp(tmpdir) != NULL ? 0 : -1;
}

static int
teardown_tmp(void **state)
{
	char cmd[512];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static const char *
write_keys(const char *name, const char *text)
{
	static char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
	assert_int_equal(fclose(f), 0);
	return path;
}

static struct tl_frame_keys *
load_keys(const char *text, bool allow_unkeyed)
{
	struct tl_frame_keys *k = NULL;
	char err[256];
	int rc = tl_frame_keys_load(write_keys("keys", text), allow_unkeyed, &k, err, sizeof(err));

	if (rc != 0)
		fail_msg("keys: %d %s", rc, err);
	assert_non_null(k);
	return k;
}

/* tl_frame_keys_load must fail with TL_E_CONFIG and exactly "<path>:<line>: <msg>". */
static void
keys_error(const char *text, unsigned line, const char *msg)
{
	struct tl_frame_keys *k = (struct tl_frame_keys *)&k;
	char err[256], want[768];
	const char *path = write_keys("bad", text);

	assert_int_equal(tl_frame_keys_load(path, false, &k, err, sizeof(err)), TL_E_CONFIG);
	assert_null(k);
	snprintf(want, sizeof(want), "%s:%u: %s", path, line, msg);
	assert_string_equal(err, want);
}

#define EV1 "{\"query_id\":\"q-1842\",\"event_type\":\"queued\"}\n"

/* ---- names ---- */

static void
test_reason_name_every_reason_distinct(void **state)
{
	(void)state;
	assert_string_equal(tl_frame_reason_name(TL_FRAME_OK), "ok");
	assert_string_equal(tl_frame_reason_name(TL_FRAME_BAD_TAG), "frame_bad_tag");
	assert_string_equal(tl_frame_reason_name(TL_FRAME_BAD_ZSTD), "frame_bad_zstd");
	assert_string_equal(tl_frame_reason_name(TL_FRAME_REASON_MAX), "?");
	assert_string_equal(tl_frame_reason_name((enum tl_frame_reason) - 1), "?");
	for (int i = 1; i < TL_FRAME_REASON_MAX; i++) {
		assert_non_null(tl_frame_reason_name(i));
		assert_memory_equal(tl_frame_reason_name(i), "frame_", 6);
		for (int j = 0; j < i; j++)
			assert_string_not_equal(tl_frame_reason_name(i), tl_frame_reason_name(j));
	}
	assert_string_equal(tl_ack_status_name(TL_ACK_COMMITTED), "committed");
	assert_string_equal(tl_ack_status_name(TL_ACK_DUPLICATE), "duplicate");
	assert_string_equal(tl_ack_status_name(TL_ACK_RETRY_LATER), "retry_later");
	assert_string_equal(tl_ack_status_name(TL_ACK_REJECTED), "rejected");
	assert_string_equal(tl_ack_status_name(TL_ACK_STATUS_MAX), "?");
}

static void
test_is_frame_magic_and_raw_distinguished(void **state)
{
	size_t n = encode_ok((const uint8_t *)EV1, strlen(EV1), 1, 0, NULL, 0, 0);

	(void)state;
	assert_true(tl_frame_is_frame(frame, n));
	assert_true(tl_frame_is_frame(frame, 4));
	assert_false(tl_frame_is_frame(frame, 3));
	assert_false(tl_frame_is_frame((const uint8_t *)EV1, strlen(EV1)));
	assert_false(tl_frame_is_frame(NULL, 0));
}

/* ---- byte-exact encoding and known answers ---- */

/*
 * Expected bytes written by hand from the layout in tl_frame.h. The tag was computed
 * independently of this code:
 *   printf '<the 84 bytes below>' > f.bin; openssl dgst -sha256 -hmac Jefe f.bin
 *   HMAC-SHA2-256(f.bin)= 19b93d85584cb9d9515ec62c4d5aff1d264ab5005c3e0bc411159afef0789f2e
 * ("Jefe" is the key of RFC 4231 test case 2; the same openssl prints that case's
 * 5bdcc146...3843 for "what do ya want for nothing?").
 */
static void
test_encode_hmac_known_answer_exact_bytes(void **state)
{
	static const uint8_t hdr[40] = {'T', 'L', 'F', '1', 1, TL_FRAME_F_HMAC, 0, 40, 1, 2, 3, 4,
	        5, 6, 7, 8, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0, 0, 0, 1, 0, 0, 0, 44,
	        0, 0, 0, 44, 0, 0, 0, 7};
	static const uint8_t tag[32] = {0x19, 0xb9, 0x3d, 0x85, 0x58, 0x4c, 0xb9, 0xd9, 0x51, 0x5e,
	        0xc6, 0x2c, 0x4d, 0x5a, 0xff, 0x1d, 0x26, 0x4a, 0xb5, 0x00, 0x5c, 0x3e, 0x0b, 0xc4,
	        0x11, 0x15, 0x9a, 0xfe, 0xf0, 0x78, 0x9f, 0x2e};
	uint8_t ref[32];
	size_t n;

	(void)state;
	assert_int_equal(strlen(EV1), 44);
	n = encode_ok((const uint8_t *)EV1, 44, 1, 0, (const uint8_t *)"Jefe", 4, 7);
	assert_int_equal(n, 40 + 44 + 32);
	assert_memory_equal(frame, hdr, 40);
	assert_memory_equal(frame + 40, EV1, 44);
	assert_memory_equal(frame + 84, tag, 32);
	/* and OpenSSL's HMAC() used directly agrees */
	hmac_ref((const uint8_t *)"Jefe", 4, frame, 84, ref);
	assert_memory_equal(ref, tag, 32);
}

static void
test_encode_plain_exact_bytes(void **state)
{
	static const uint8_t hdr[40] = {'T', 'L', 'F', '1', 1, 0, 0, 40, 1, 2, 3, 4, 5, 6, 7, 8,
	        0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0, 0, 0, 1, 0, 0, 0, 44, 0, 0, 0,
	        44, 0, 0, 0, 0};
	/* key_id is written as 0 without a key, whatever the caller passed */
	size_t n = encode_ok((const uint8_t *)EV1, 44, 1, 0, NULL, 0, 99);

	(void)state;
	assert_int_equal(n, 84);
	assert_memory_equal(frame, hdr, 40);
	assert_memory_equal(frame + 40, EV1, 44);
}

/* ---- round trips ---- */

static void
roundtrip(const uint8_t *ev, size_t len, uint32_t count, int level, const uint8_t *key,
        size_t key_len, uint32_t key_id, bool expect_zstd)
{
	struct tl_frame_inflater *z = NULL;
	struct tl_frame_keys *keys = NULL;
	struct tl_frame_view v;
	const uint8_t *body;
	size_t n, blen;
	uint8_t *d;

	n = encode_ok(ev, len, count, level, key, key_len, key_id);
	d = dup_exact(frame, n);
	assert_int_equal(tl_frame_parse(d, n, &v), TL_FRAME_OK);
	assert_int_equal(v.version, 1);
	assert_int_equal(
	        v.flags, (expect_zstd ? TL_FRAME_F_ZSTD : 0) | (key ? TL_FRAME_F_HMAC : 0));
	assert_int_equal(v.producer_id, PRODUCER);
	assert_int_equal(v.sequence, SEQUENCE);
	assert_int_equal(v.count, count);
	assert_int_equal(v.raw_len, len);
	assert_int_equal(v.key_id, key ? key_id : 0);
	assert_ptr_equal(v.body, d + 40);
	assert_ptr_equal(v.signed_bytes, d);
	assert_int_equal(v.signed_len, 40 + v.body_len);
	if (expect_zstd)
		assert_true(v.body_len < len);
	else
		assert_int_equal(v.body_len, len);
	if (key != NULL) {
		char text[256];
		int t;

		assert_ptr_equal(v.tag, d + 40 + v.body_len);
		assert_int_equal(n, 40 + v.body_len + 32);
		t = snprintf(text, sizeof(text), "%llu %u ", (unsigned long long)PRODUCER, key_id);
		for (size_t i = 0; i < key_len; i++)
			t += snprintf(text + t, sizeof(text) - (size_t)t, "%02x", key[i]);
		keys = load_keys(text, false);
	} else {
		assert_null(v.tag);
		assert_int_equal(n, 40 + v.body_len);
		keys = load_keys("", true);
	}
	assert_int_equal(tl_frame_verify(keys, &v), TL_FRAME_OK);
	assert_int_equal(tl_frame_verify(NULL, &v), TL_FRAME_OK);
	assert_int_equal(tl_frame_inflater_create(&z), 0);
	assert_int_equal(tl_frame_body(z, &v, &body, &blen), TL_FRAME_OK);
	assert_int_equal(blen, len);
	assert_memory_equal(body, ev, len);
	if (!expect_zstd)
		assert_ptr_equal(body, d + 40);
	tl_frame_inflater_free(z);
	tl_frame_keys_free(keys);
	free(d);
}

static void
test_roundtrip_plain_ok(void **state)
{
	uint32_t count;
	size_t len = spark_lines(8000, &count);

	(void)state;
	roundtrip(spark, len, count, 0, NULL, 0, 0, false);
}

static void
test_roundtrip_zstd_compressed_ok(void **state)
{
	uint32_t count;
	size_t len = spark_lines(60000, &count);

	(void)state;
	roundtrip(spark, len, count, 3, NULL, 0, 0, true);
}

static void
test_roundtrip_hmac_ok(void **state)
{
	uint32_t count;
	size_t len = spark_lines(8000, &count);

	(void)state;
	roundtrip(spark, len, count, 0, key_a, sizeof(key_a), 2, false);
	roundtrip((const uint8_t *)EV1, strlen(EV1), 1, 0, key_b, sizeof(key_b), 5, false);
}

static void
test_roundtrip_zstd_hmac_ok(void **state)
{
	uint32_t count;
	size_t len = spark_lines(30000, &count);

	(void)state;
	roundtrip(spark, len, count, 19, key_a, sizeof(key_a), 2, true);
}

/* A body larger than a datagram goes through when it compresses below one. */
static void
test_roundtrip_zstd_body_above_datagram_ok(void **state)
{
	uint32_t count;
	size_t len = spark_lines(200000, &count);

	(void)state;
	assert_true(len > TL_FRAME_MAX);
	roundtrip(spark, len, count, 3, key_a, sizeof(key_a), 2, true);
}

/* zstd that does not pay (a tiny body) is not used: the flag says so. */
static void
test_encode_zstd_not_smaller_sent_raw(void **state)
{
	(void)state;
	roundtrip((const uint8_t *)"{}\n", 3, 1, 3, NULL, 0, 0, false);
	roundtrip((const uint8_t *)EV1, strlen(EV1), 1, 22, key_b, sizeof(key_b), 5, false);
}

static void
test_encode_bad_arguments_einval(void **state)
{
	const uint8_t *e = (const uint8_t *)EV1;
	uint8_t out[256];

	(void)state;
	assert_int_equal(tl_frame_encode(1, 1, NULL, 44, 1, 0, NULL, 0, 0, out, 256), -EINVAL);
	assert_int_equal(tl_frame_encode(1, 1, e, 0, 1, 0, NULL, 0, 0, out, 256), -EINVAL);
	assert_int_equal(tl_frame_encode(1, 1, e, 44, 1, 0, NULL, 0, 0, NULL, 256), -EINVAL);
	assert_int_equal(tl_frame_encode(0, 1, e, 44, 1, 0, NULL, 0, 0, out, 256), -EINVAL);
	assert_int_equal(tl_frame_encode(1, 0, e, 44, 1, 0, NULL, 0, 0, out, 256), -EINVAL);
	assert_int_equal(tl_frame_encode(1, 1, e, 44, 0, 0, NULL, 0, 0, out, 256), -EINVAL);
	assert_int_equal(tl_frame_encode(1, 1, e, 44, 2, 0, NULL, 0, 0, out, 256), -EINVAL);
	assert_int_equal(
	        tl_frame_encode(1, 1, e, 44, TL_FRAME_MAX_EVENTS + 1, 0, NULL, 0, 0, out, 256),
	        -EINVAL);
	/* the last line has no '\n' */
	assert_int_equal(tl_frame_encode(1, 1, e, 43, 1, 0, NULL, 0, 0, out, 256), -EINVAL);
	assert_int_equal(
	        tl_frame_encode(1, 1, (const uint8_t *)"{}\n{}", 5, 1, 0, NULL, 0, 0, out, 256),
	        -EINVAL);
	assert_int_equal(tl_frame_encode(1, 1, e, 44, 1, 0, key_a, 0, 1, out, 256), -EINVAL);
	/* and the good call, for contrast */
	assert_int_equal(tl_frame_encode(1, 1, e, 44, 1, 0, key_a, 32, 1, out, 256), 116);
}

static void
test_encode_too_big_e2big(void **state)
{
	static uint8_t big[TL_FRAME_MAX_RAW + 2];
	const uint8_t *e = (const uint8_t *)EV1;
	uint8_t out[256];
	uint32_t count;
	size_t len;

	(void)state;
	assert_int_equal(tl_frame_encode(1, 1, e, 44, 1, 0, NULL, 0, 0, out, 83), -E2BIG);
	assert_int_equal(tl_frame_encode(1, 1, e, 44, 1, 0, NULL, 0, 0, out, 84), 84);
	assert_int_equal(tl_frame_encode(1, 1, e, 44, 1, 0, key_a, 32, 1, out, 115), -E2BIG);
	assert_int_equal(tl_frame_encode(1, 1, e, 44, 1, 3, key_a, 32, 1, out, 115), -E2BIG);
	assert_int_equal(tl_frame_encode(1, 1, e, 44, 1, 0, NULL, 0, 0, out, 0), -E2BIG);
	/* above TL_FRAME_MAX without compression */
	len = spark_lines(TL_FRAME_MAX + 100000, &count);
	assert_true(len > TL_FRAME_MAX - 40);
	assert_int_equal(
	        tl_frame_encode(1, 1, spark, len, count, 0, NULL, 0, 0, frame, sizeof(frame)),
	        -E2BIG);
	/* above TL_FRAME_MAX_RAW, however well it compresses: 4096 lines of 256 bytes + 2 */
	memset(big, ' ', sizeof(big));
	for (size_t i = 255; i < sizeof(big); i += 256)
		big[i] = '\n';
	big[sizeof(big) - 1] = '\n';
	assert_int_equal(
	        tl_frame_encode(1, 1, big, sizeof(big), 4097, 3, NULL, 0, 0, frame, sizeof(frame)),
	        -EINVAL);
	assert_int_equal(tl_frame_encode(1, 1, big, TL_FRAME_MAX_RAW, 4096, 3, NULL, 0, 0, frame,
	                         sizeof(frame)) > 0,
	        1);
	big[TL_FRAME_MAX_RAW - 1] = ' ';
	big[TL_FRAME_MAX_RAW] = '\n';
	assert_int_equal(tl_frame_encode(1, 1, big, TL_FRAME_MAX_RAW + 1, 4096, 3, NULL, 0, 0,
	                         frame, sizeof(frame)),
	        -E2BIG);
}

/* ---- parse: truncation, lengths, header fields ---- */

static void
truncate_all(size_t n)
{
	struct tl_frame_view v;

	for (size_t len = 0; len < n; len++) {
		memset(&v, 0xa5, sizeof(v));
		if (parse_copy(frame, len, &v) != TL_FRAME_TRUNCATED)
			fail_msg("length %zu of %zu: %s", len, n,
			        tl_frame_reason_name(parse_copy(frame, len, &v)));
		/* producer and sequence are known once the header is there */
		assert_int_equal(v.producer_id, len >= 40 ? PRODUCER : 0);
		assert_int_equal(v.sequence, len >= 40 ? SEQUENCE : 0);
	}
	assert_int_equal(parse_copy(frame, n, &v), TL_FRAME_OK);
	/* one trailing byte */
	frame[n] = '\n';
	assert_int_equal(parse_copy(frame, n + 1, &v), TL_FRAME_BAD_LENGTH);
	assert_int_equal(v.producer_id, PRODUCER);
}

static void
test_parse_every_truncation_truncated(void **state)
{
	uint32_t count;
	size_t len = spark_lines(3000, &count);

	(void)state;
	truncate_all(encode_ok(spark, len, count, 0, NULL, 0, 0));
	truncate_all(encode_ok(spark, len, count, 3, key_a, sizeof(key_a), 9));
	truncate_all(encode_ok(spark, len, count, 0, key_b, sizeof(key_b), 1));
	assert_int_equal(tl_frame_parse(NULL, 0, &(struct tl_frame_view){0}), TL_FRAME_TRUNCATED);
}

static void
test_parse_raw_ndjson_bad_magic(void **state)
{
	struct tl_frame_view v;

	(void)state;
	assert_int_equal(parse_copy((const uint8_t *)EV1, strlen(EV1), &v), TL_FRAME_BAD_MAGIC);
	assert_int_equal(parse_copy((const uint8_t *)"{", 1, &v), TL_FRAME_BAD_MAGIC);
	assert_int_equal(parse_copy((const uint8_t *)"TLF", 3, &v), TL_FRAME_TRUNCATED);
	assert_int_equal(parse_copy((const uint8_t *)"TLA1", 4, &v), TL_FRAME_BAD_MAGIC);
	assert_int_equal(parse_copy((const uint8_t *)"TLF2", 4, &v), TL_FRAME_BAD_MAGIC);
}

/* Patch one header field of a fresh plain frame and parse it. */
static enum tl_frame_reason
patched(size_t off, size_t width, uint64_t val, struct tl_frame_view *v)
{
	size_t n = encode_ok((const uint8_t *)EV1 EV1, 88, 2, 0, NULL, 0, 0);

	if (width == 1)
		frame[off] = (uint8_t)val;
	else if (width == 2)
		frame[off] = (uint8_t)(val >> 8), frame[off + 1] = (uint8_t)val;
	else if (width == 4)
		put32(frame + off, (uint32_t)val);
	else
		put64(frame + off, val);
	return parse_copy(frame, n, v);
}

static void
test_parse_bad_header_fields_each_reason(void **state)
{
	struct tl_frame_view v;

	(void)state;
	assert_int_equal(patched(4, 1, 2, &v), TL_FRAME_BAD_VERSION);
	assert_int_equal(v.producer_id, 0);
	assert_int_equal(patched(4, 1, 0, &v), TL_FRAME_BAD_VERSION);
	assert_int_equal(patched(6, 2, 44, &v), TL_FRAME_BAD_VERSION);
	assert_int_equal(patched(6, 2, 39, &v), TL_FRAME_BAD_VERSION);
	assert_int_equal(patched(5, 1, 0x04, &v), TL_FRAME_BAD_FLAGS);
	assert_int_equal(v.producer_id, PRODUCER);
	assert_int_equal(v.sequence, SEQUENCE);
	assert_int_equal(patched(5, 1, 0x80, &v), TL_FRAME_BAD_FLAGS);
	assert_int_equal(patched(36, 4, 1, &v), TL_FRAME_BAD_FLAGS); /* key id, no HMAC */
	assert_int_equal(patched(8, 8, 0, &v), TL_FRAME_BAD_PRODUCER);
	assert_int_equal(patched(16, 8, 0, &v), TL_FRAME_BAD_PRODUCER);
	assert_int_equal(v.producer_id, PRODUCER);
	assert_int_equal(patched(24, 4, 0, &v), TL_FRAME_BAD_COUNT);
	assert_int_equal(patched(24, 4, TL_FRAME_MAX_EVENTS + 1, &v), TL_FRAME_BAD_COUNT);
	assert_int_equal(patched(24, 4, 89, &v), TL_FRAME_BAD_COUNT); /* > raw_len */
	assert_int_equal(patched(24, 4, 88, &v), TL_FRAME_OK); /* the body check catches it */
	assert_int_equal(patched(28, 4, 0, &v), TL_FRAME_BAD_LENGTH);
	assert_int_equal(patched(28, 4, 87, &v), TL_FRAME_BAD_LENGTH); /* != raw_len */
	assert_int_equal(patched(32, 4, 87, &v), TL_FRAME_BAD_LENGTH);
	assert_int_equal(patched(28, 4, UINT32_MAX, &v), TL_FRAME_BAD_LENGTH);
	assert_int_equal(patched(5, 1, TL_FRAME_F_ZSTD, &v), TL_FRAME_OK); /* body check */
	/* with ZSTD raw_len may differ from body_len, within limits */
	{
		size_t n = encode_ok((const uint8_t *)EV1 EV1, 88, 2, 0, NULL, 0, 0);

		frame[5] = TL_FRAME_F_ZSTD;
		put32(frame + 32, 0);
		assert_int_equal(parse_copy(frame, n, &v), TL_FRAME_BAD_LENGTH);
		put32(frame + 32, TL_FRAME_MAX_RAW + 1);
		assert_int_equal(parse_copy(frame, n, &v), TL_FRAME_BAD_LENGTH);
		put32(frame + 32, TL_FRAME_MAX_RAW);
		assert_int_equal(parse_copy(frame, n, &v), TL_FRAME_OK);
		assert_int_equal(v.raw_len, TL_FRAME_MAX_RAW);
		/* a frame that claims more than a datagram holds */
		put32(frame + 28, TL_FRAME_MAX - 39);
		assert_int_equal(parse_copy(frame, n, &v), TL_FRAME_BAD_LENGTH);
		put32(frame + 28, TL_FRAME_MAX - 40);
		assert_int_equal(parse_copy(frame, n, &v), TL_FRAME_TRUNCATED);
	}
	/* the first problem in header order wins */
	{
		size_t n = encode_ok((const uint8_t *)EV1, 44, 1, 0, NULL, 0, 0);

		frame[5] = 0x10;
		put64(frame + 8, 0);
		put32(frame + 24, 0);
		assert_int_equal(parse_copy(frame, n, &v), TL_FRAME_BAD_FLAGS);
	}
}

/* ---- body ---- */

static enum tl_frame_reason
body_of(size_t n, struct tl_frame_inflater *z, const uint8_t **body, size_t *len)
{
	struct tl_frame_view v;

	assert_int_equal(tl_frame_parse(frame, n, &v), TL_FRAME_OK);
	return tl_frame_body(z, &v, body, len);
}

static void
test_body_line_count_mismatch_bad_count(void **state)
{
	struct tl_frame_inflater *z;
	const uint8_t *b;
	size_t n, len;

	(void)state;
	assert_int_equal(tl_frame_inflater_create(&z), 0);
	n = encode_ok((const uint8_t *)EV1 EV1 EV1, 132, 3, 0, NULL, 0, 0);
	put32(frame + 24, 2);
	assert_int_equal(body_of(n, z, &b, &len), TL_FRAME_BAD_COUNT);
	put32(frame + 24, 4);
	assert_int_equal(body_of(n, z, &b, &len), TL_FRAME_BAD_COUNT);
	put32(frame + 24, 3);
	assert_int_equal(body_of(n, z, &b, &len), TL_FRAME_OK);
	/* the last line loses its '\n' (and the count still matches the other '\n's) */
	frame[n - 1] = '}';
	put32(frame + 24, 2);
	assert_int_equal(body_of(n, z, &b, &len), TL_FRAME_BAD_COUNT);
	/* the same inside a compressed body */
	{
		static uint8_t many[40 * 44];

		for (int i = 0; i < 40; i++)
			memcpy(many + 44 * i, EV1, 44);
		many[sizeof(many) - 1] = ' ';
		many[43] = ' '; /* 39 lines end with '\n', the body does not */
		assert_true(tl_frame_encode(1, 1, many, sizeof(many), 39, 3, NULL, 0, 0, frame,
		                    sizeof(frame)) == -EINVAL);
		many[sizeof(many) - 1] = '\n';
		n = encode_ok(many, sizeof(many), 39, 3, NULL, 0, 0);
		assert_int_equal(frame[5], TL_FRAME_F_ZSTD);
		assert_int_equal(body_of(n, z, &b, &len), TL_FRAME_OK);
		put32(frame + 24, 40);
		assert_int_equal(body_of(n, z, &b, &len), TL_FRAME_BAD_COUNT);
	}
	tl_frame_inflater_free(z);
}

/* Build a ZSTD frame around @p zbody (@p zlen bytes) claiming @p raw_len. */
static size_t
zstd_frame(const uint8_t *zbody, size_t zlen, uint32_t raw_len, uint32_t count)
{
	size_t n = encode_ok((const uint8_t *)EV1, 44, 1, 0, NULL, 0, 0);

	(void)n;
	frame[5] = TL_FRAME_F_ZSTD;
	put32(frame + 24, count);
	put32(frame + 28, (uint32_t)zlen);
	put32(frame + 32, raw_len);
	memcpy(frame + 40, zbody, zlen);
	return 40 + zlen;
}

static void
test_body_hostile_zstd_bad_zstd(void **state)
{
	static const char text[] = EV1 EV1 EV1 EV1;
	struct tl_frame_inflater *z;
	uint8_t zb[512], zz[1024];
	const uint8_t *b;
	size_t zlen, zn, n, len;
	ZSTD_CCtx *cc;

	(void)state;
	assert_int_equal(tl_frame_inflater_create(&z), 0);
	zlen = ZSTD_compress(zb, sizeof(zb), text, 176, 3);
	assert_false(ZSTD_isError(zlen));

	/* the well-formed case */
	n = zstd_frame(zb, zlen, 176, 4);
	assert_int_equal(body_of(n, z, &b, &len), TL_FRAME_OK);
	assert_int_equal(len, 176);
	assert_memory_equal(b, text, 176);
	/* raw_len disagrees with the frame content size (smaller, larger) */
	n = zstd_frame(zb, zlen, 175, 4);
	assert_int_equal(body_of(n, z, &b, &len), TL_FRAME_BAD_ZSTD);
	n = zstd_frame(zb, zlen, 177, 4);
	assert_int_equal(body_of(n, z, &b, &len), TL_FRAME_BAD_ZSTD);
	/* not zstd at all */
	n = zstd_frame((const uint8_t *)text, 176, 176, 4);
	assert_int_equal(body_of(n, z, &b, &len), TL_FRAME_BAD_ZSTD);
	/* cut short */
	n = zstd_frame(zb, zlen - 1, 176, 4);
	assert_int_equal(body_of(n, z, &b, &len), TL_FRAME_BAD_ZSTD);
	/* a byte after the zstd frame */
	memcpy(zz, zb, zlen);
	zz[zlen] = 0;
	n = zstd_frame(zz, zlen + 1, 176, 4);
	assert_int_equal(body_of(n, z, &b, &len), TL_FRAME_BAD_ZSTD);
	/* two zstd frames back to back (each alone would be fine) */
	memcpy(zz + zlen, zb, zlen);
	n = zstd_frame(zz, 2 * zlen, 352, 8);
	assert_int_equal(body_of(n, z, &b, &len), TL_FRAME_BAD_ZSTD);
	/* a skippable frame before the real one */
	/* ZSTD_MAGIC_SKIPPABLE_START, little-endian on the wire, 4 bytes of content */
	zz[0] = 0x50, zz[1] = 0x2a, zz[2] = 0x4d, zz[3] = 0x18;
	zz[4] = 4, zz[5] = zz[6] = zz[7] = 0;
	memset(zz + 8, 'x', 4);
	memcpy(zz + 12, zb, zlen);
	n = zstd_frame(zz, 12 + zlen, 176, 4);
	assert_int_equal(body_of(n, z, &b, &len), TL_FRAME_BAD_ZSTD);
	/* a corrupted block (checksummed: content checksum on) */
	cc = ZSTD_createCCtx();
	assert_non_null(cc);
	assert_false(ZSTD_isError(ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, 1)));
	zn = ZSTD_compress2(cc, zz, sizeof(zz), text, 176);
	assert_false(ZSTD_isError(zn));
	zz[zn - 6] ^= 0x40;
	n = zstd_frame(zz, zn, 176, 4);
	assert_int_equal(body_of(n, z, &b, &len), TL_FRAME_BAD_ZSTD);
	/* no content size in the frame: it must still inflate to exactly raw_len */
	assert_false(ZSTD_isError(ZSTD_CCtx_reset(cc, ZSTD_reset_session_and_parameters)));
	assert_false(ZSTD_isError(ZSTD_CCtx_setParameter(cc, ZSTD_c_contentSizeFlag, 0)));
	zn = ZSTD_compress2(cc, zz, sizeof(zz), text, 176);
	assert_false(ZSTD_isError(zn));
	assert_int_equal(ZSTD_getFrameContentSize(zz, zn), ZSTD_CONTENTSIZE_UNKNOWN);
	n = zstd_frame(zz, zn, 176, 4);
	assert_int_equal(body_of(n, z, &b, &len), TL_FRAME_OK);
	assert_memory_equal(b, text, 176);
	n = zstd_frame(zz, zn, 175, 4); /* would inflate past raw_len */
	assert_int_equal(body_of(n, z, &b, &len), TL_FRAME_BAD_ZSTD);
	n = zstd_frame(zz, zn, 177, 4); /* falls short of raw_len */
	assert_int_equal(body_of(n, z, &b, &len), TL_FRAME_BAD_ZSTD);
	/* two such frames back to back: together exactly raw_len, still not one frame */
	memcpy(zz + zn, zz, zn);
	n = zstd_frame(zz, 2 * zn, 352, 8);
	assert_int_equal(body_of(n, z, &b, &len), TL_FRAME_BAD_ZSTD);
	ZSTD_freeCCtx(cc);
	/* no inflater */
	n = zstd_frame(zb, zlen, 176, 4);
	assert_int_equal(body_of(n, NULL, &b, &len), TL_FRAME_BAD_ZSTD);
	/* a bomb: 1 MiB + 1 of '\n' in a few dozen bytes, claiming TL_FRAME_MAX_RAW */
	{
		uint8_t *nl = malloc(TL_FRAME_MAX_RAW + 1);

		assert_non_null(nl);
		memset(nl, '\n', TL_FRAME_MAX_RAW + 1);
		zn = ZSTD_compress(zz, sizeof(zz), nl, TL_FRAME_MAX_RAW + 1, 3);
		assert_false(ZSTD_isError(zn));
		n = zstd_frame(zz, zn, TL_FRAME_MAX_RAW, TL_FRAME_MAX_EVENTS);
		assert_int_equal(body_of(n, z, &b, &len), TL_FRAME_BAD_ZSTD);
		/* exactly TL_FRAME_MAX_RAW inflates, but holds too many lines */
		zn = ZSTD_compress(zz, sizeof(zz), nl, TL_FRAME_MAX_RAW, 3);
		assert_false(ZSTD_isError(zn));
		n = zstd_frame(zz, zn, TL_FRAME_MAX_RAW, TL_FRAME_MAX_EVENTS);
		assert_int_equal(body_of(n, z, &b, &len), TL_FRAME_BAD_COUNT);
		free(nl);
	}
	tl_frame_inflater_free(z);
	tl_frame_inflater_free(NULL);
}

/* The inflater's buffer is reused: the second body replaces the first. */
static void
test_body_inflater_reused_second_body_ok(void **state)
{
	struct tl_frame_inflater *z;
	const uint8_t *b1, *b2;
	size_t n, l1, l2;
	uint32_t count;
	size_t len = spark_lines(20000, &count);

	(void)state;
	assert_int_equal(tl_frame_inflater_create(&z), 0);
	n = encode_ok(spark, len, count, 1, NULL, 0, 0);
	assert_int_equal(body_of(n, z, &b1, &l1), TL_FRAME_OK);
	assert_int_equal(l1, len);
	assert_memory_equal(b1, spark, len);
	len = spark_lines(5000, &count);
	n = encode_ok(spark, len, count, 1, NULL, 0, 0);
	assert_int_equal(body_of(n, z, &b2, &l2), TL_FRAME_OK);
	assert_ptr_equal(b1, b2);
	assert_int_equal(l2, len);
	assert_memory_equal(b2, spark, len);
	tl_frame_inflater_free(z);
}

/* ---- verify: keys, rotation, unkeyed ---- */

static void
test_verify_key_rotation_both_ids_ok(void **state)
{
	char text[512];
	struct tl_frame_keys *keys;
	struct tl_frame_view v;
	size_t n;

	(void)state;
	snprintf(text, sizeof(text), "# rotation: id 1 retiring, id 2 new\n%llu 1 %s\n%llu 2 %s\n",
	        (unsigned long long)PRODUCER, KEY_B_HEX, (unsigned long long)PRODUCER, KEY_A_HEX);
	keys = load_keys(text, false);
	n = encode_ok((const uint8_t *)EV1, 44, 1, 0, key_b, sizeof(key_b), 1);
	assert_int_equal(parse_copy(frame, n, &v), TL_FRAME_OK);
	n = encode_ok((const uint8_t *)EV1, 44, 1, 0, key_b, sizeof(key_b), 1);
	assert_int_equal(tl_frame_parse(frame, n, &v), TL_FRAME_OK);
	assert_int_equal(tl_frame_verify(keys, &v), TL_FRAME_OK);
	n = encode_ok((const uint8_t *)EV1, 44, 1, 3, key_a, sizeof(key_a), 2);
	assert_int_equal(tl_frame_parse(frame, n, &v), TL_FRAME_OK);
	assert_int_equal(tl_frame_verify(keys, &v), TL_FRAME_OK);
	/* the right key under the other id, and an id that does not exist */
	n = encode_ok((const uint8_t *)EV1, 44, 1, 0, key_a, sizeof(key_a), 1);
	assert_int_equal(tl_frame_parse(frame, n, &v), TL_FRAME_OK);
	assert_int_equal(tl_frame_verify(keys, &v), TL_FRAME_BAD_TAG);
	n = encode_ok((const uint8_t *)EV1, 44, 1, 0, key_a, sizeof(key_a), 3);
	assert_int_equal(tl_frame_parse(frame, n, &v), TL_FRAME_OK);
	assert_int_equal(tl_frame_verify(keys, &v), TL_FRAME_UNKNOWN_KEY);
	/* after rotation the old id is gone */
	tl_frame_keys_free(keys);
	snprintf(text, sizeof(text), "%llu 2 %s\n", (unsigned long long)PRODUCER, KEY_A_HEX);
	keys = load_keys(text, false);
	n = encode_ok((const uint8_t *)EV1, 44, 1, 0, key_b, sizeof(key_b), 1);
	assert_int_equal(tl_frame_parse(frame, n, &v), TL_FRAME_OK);
	assert_int_equal(tl_frame_verify(keys, &v), TL_FRAME_UNKNOWN_KEY);
	tl_frame_keys_free(keys);
}

static void
test_verify_unkeyed_producer_depends_on_allow(void **state)
{
	char text[512];
	struct tl_frame_keys *strict, *lax;
	struct tl_frame_view v;
	size_t n;

	(void)state;
	/* producer PRODUCER + 1 has a key; PRODUCER has none */
	snprintf(text, sizeof(text), "%llu 1 %s\n", (unsigned long long)PRODUCER + 1, KEY_A_HEX);
	strict = load_keys(text, false);
	lax = load_keys(text, true);
	n = encode_ok((const uint8_t *)EV1, 44, 1, 0, NULL, 0, 0);
	assert_int_equal(tl_frame_parse(frame, n, &v), TL_FRAME_OK);
	assert_int_equal(tl_frame_verify(strict, &v), TL_FRAME_UNKNOWN_KEY);
	assert_int_equal(tl_frame_verify(lax, &v), TL_FRAME_OK);
	assert_int_equal(tl_frame_verify(NULL, &v), TL_FRAME_OK);
	/* an unkeyed producer signing with a key nobody knows */
	n = encode_ok((const uint8_t *)EV1, 44, 1, 0, key_a, sizeof(key_a), 1);
	assert_int_equal(tl_frame_parse(frame, n, &v), TL_FRAME_OK);
	assert_int_equal(tl_frame_verify(strict, &v), TL_FRAME_UNKNOWN_KEY);
	assert_int_equal(tl_frame_verify(lax, &v), TL_FRAME_UNKNOWN_KEY);
	/* a keyed producer leaving the tag off is refused even when unkeyed ones are let in */
	n = encode_ok((const uint8_t *)EV1, 44, 1, 0, NULL, 0, 0);
	put64(frame + 8, PRODUCER + 1);
	assert_int_equal(tl_frame_parse(frame, n, &v), TL_FRAME_OK);
	assert_int_equal(tl_frame_verify(strict, &v), TL_FRAME_UNKNOWN_KEY);
	assert_int_equal(tl_frame_verify(lax, &v), TL_FRAME_UNKNOWN_KEY);
	/* ... and accepted with it */
	n = (size_t)tl_frame_encode(PRODUCER + 1, 1, (const uint8_t *)EV1, 44, 1, 0, key_a,
	        sizeof(key_a), 1, frame, sizeof(frame));
	assert_int_equal(tl_frame_parse(frame, n, &v), TL_FRAME_OK);
	assert_int_equal(tl_frame_verify(strict, &v), TL_FRAME_OK);
	assert_int_equal(tl_frame_verify(lax, &v), TL_FRAME_OK);
	tl_frame_keys_free(strict);
	tl_frame_keys_free(lax);
}

/* Without keys nothing is checked; with keys a wrong tag is caught. */
static void
test_verify_wrong_tag_bad_tag(void **state)
{
	char text[512];
	struct tl_frame_keys *keys;
	struct tl_frame_view v;
	size_t n;

	(void)state;
	snprintf(text, sizeof(text), "%llu 4 %s\n", (unsigned long long)PRODUCER, KEY_A_HEX);
	keys = load_keys(text, false);
	n = encode_ok((const uint8_t *)EV1, 44, 1, 0, key_a, sizeof(key_a), 4);
	frame[n - 1] ^= 1;
	assert_int_equal(tl_frame_parse(frame, n, &v), TL_FRAME_OK);
	assert_int_equal(tl_frame_verify(keys, &v), TL_FRAME_BAD_TAG);
	assert_int_equal(tl_frame_verify(NULL, &v), TL_FRAME_OK);
	/* a key of the right id but a different value (16 bytes of key_a) */
	n = encode_ok((const uint8_t *)EV1, 44, 1, 0, key_a, 16, 4);
	assert_int_equal(tl_frame_parse(frame, n, &v), TL_FRAME_OK);
	assert_int_equal(tl_frame_verify(keys, &v), TL_FRAME_BAD_TAG);
	tl_frame_keys_free(keys);
}

/* Every single-bit flip of a signed (and compressed) frame is refused somewhere. */
static void
test_bit_flips_signed_frame_all_refused(void **state)
{
	char text[512];
	struct tl_frame_keys *keys;
	struct tl_frame_inflater *z;
	uint32_t count;
	size_t len = spark_lines(1500, &count), n;
	unsigned refused[TL_FRAME_REASON_MAX] = {0};

	(void)state;
	snprintf(text, sizeof(text), "%llu 2 %s\n", (unsigned long long)PRODUCER, KEY_A_HEX);
	keys = load_keys(text, false);
	assert_int_equal(tl_frame_inflater_create(&z), 0);
	n = encode_ok(spark, len, count, 3, key_a, sizeof(key_a), 2);
	assert_int_equal(frame[5], TL_FRAME_F_ZSTD | TL_FRAME_F_HMAC);
	for (size_t bit = 0; bit < 8 * n; bit++) {
		struct tl_frame_view v;
		enum tl_frame_reason r;
		uint8_t *d = dup_exact(frame, n);

		d[bit / 8] ^= (uint8_t)(1u << bit % 8);
		r = tl_frame_parse(d, n, &v);
		if (r == TL_FRAME_OK)
			r = tl_frame_verify(keys, &v);
		if (r == TL_FRAME_OK) {
			const uint8_t *b;
			size_t bl;

			r = tl_frame_body(z, &v, &b, &bl);
		}
		if (r == TL_FRAME_OK)
			fail_msg("bit %zu flipped: accepted", bit);
		refused[r]++;
		free(d);
	}
	/* header bits fail in parse (or verify), body and tag bits fail the tag */
	assert_true(refused[TL_FRAME_BAD_TAG] >= 8 * (n - 40));
	assert_true(refused[TL_FRAME_BAD_MAGIC] == 32);
	assert_true(refused[TL_FRAME_UNKNOWN_KEY] > 0);
	tl_frame_inflater_free(z);
	tl_frame_keys_free(keys);
}

/* Flipping any '\n' of an unsigned body, or any byte into '\n', breaks the count. */
static void
test_bit_flips_unsigned_newlines_bad_count(void **state)
{
	struct tl_frame_view v;
	const uint8_t *b;
	size_t n, bl;
	uint32_t count;
	size_t len = spark_lines(4000, &count);
	unsigned flips = 0;

	(void)state;
	n = encode_ok(spark, len, count, 0, NULL, 0, 0);
	for (size_t i = 40; i < n; i++) {
		uint8_t orig = frame[i];

		if (orig == '\n')
			frame[i] = '\n' ^ 0x20;
		else if ((orig ^ '\n') == ((orig ^ '\n') & -(orig ^ '\n')))
			frame[i] = '\n'; /* one bit away from '\n' */
		else
			continue;
		flips++;
		assert_int_equal(tl_frame_parse(frame, n, &v), TL_FRAME_OK);
		assert_int_equal(tl_frame_body(NULL, &v, &b, &bl), TL_FRAME_BAD_COUNT);
		frame[i] = orig;
	}
	assert_true(flips >= count);
}

/* Each reason through the whole receive path (parse, verify, body). */
static void
test_reasons_every_one_reachable(void **state)
{
	char text[512];
	struct tl_frame_keys *keys;
	struct tl_frame_inflater *z;
	bool seen[TL_FRAME_REASON_MAX] = {false};

	(void)state;
	snprintf(text, sizeof(text), "%llu 1 %s\n", (unsigned long long)PRODUCER, KEY_A_HEX);
	keys = load_keys(text, false);
	assert_int_equal(tl_frame_inflater_create(&z), 0);
	for (int r = 0; r < TL_FRAME_REASON_MAX; r++) {
		struct tl_frame_view v;
		enum tl_frame_reason got;
		const uint8_t *b;
		size_t n, bl;

		n = encode_ok((const uint8_t *)EV1 EV1, 88, 2, 0, key_a, sizeof(key_a), 1);
		switch ((enum tl_frame_reason)r) {
		case TL_FRAME_OK:
			break;
		case TL_FRAME_TRUNCATED:
			n--;
			break;
		case TL_FRAME_BAD_MAGIC:
			frame[3] = '2';
			break;
		case TL_FRAME_BAD_VERSION:
			frame[4] = 2;
			break;
		case TL_FRAME_BAD_FLAGS:
			frame[5] |= 0x08;
			break;
		case TL_FRAME_BAD_LENGTH:
			frame[n++] = 0;
			break;
		case TL_FRAME_BAD_COUNT:
			put32(frame + 24, 3);
			resign(frame, n, key_a, sizeof(key_a));
			break;
		case TL_FRAME_BAD_PRODUCER:
			put64(frame + 16, 0);
			break;
		case TL_FRAME_UNKNOWN_KEY:
			put32(frame + 36, 2);
			break;
		case TL_FRAME_BAD_TAG:
			frame[45] ^= 0x01;
			break;
		case TL_FRAME_BAD_ZSTD:
			frame[5] |= TL_FRAME_F_ZSTD;
			resign(frame, n, key_a, sizeof(key_a));
			break;
		case TL_FRAME_REASON_MAX:
			break;
		}
		got = parse_copy(frame, n, &v);
		if (got == TL_FRAME_OK) {
			assert_int_equal(tl_frame_parse(frame, n, &v), TL_FRAME_OK);
			got = tl_frame_verify(keys, &v);
		}
		if (got == TL_FRAME_OK)
			got = tl_frame_body(z, &v, &b, &bl);
		if (got != (enum tl_frame_reason)r)
			fail_msg("want %s, got %s", tl_frame_reason_name(r),
			        tl_frame_reason_name(got));
		seen[got] = true;
	}
	for (int r = 0; r < TL_FRAME_REASON_MAX; r++)
		assert_true(seen[r]);
	tl_frame_inflater_free(z);
	tl_frame_keys_free(keys);
}

/* ---- keys file ---- */

static void
test_keys_load_valid_file_finds_keys(void **state)
{
	struct tl_frame_keys *keys;
	const uint8_t *k;
	size_t len = 0;
	char text[1024];

	(void)state;
	snprintf(text, sizeof(text),
	        "# tapline producer keys\n"
	        "\n"
	        "   \t\n"
	        "7 1 %s\n"
	        "\t7\t2\t%s   # rotated in 2026-11\r\n"
	        "18446744073709551615 4294967295 %s\n"
	        "42 0 %s%s",
	        KEY_A_HEX, KEY_B_HEX, KEY_B_HEX, KEY_A_HEX, KEY_A_HEX);
	keys = load_keys(text, false);
	k = tl_frame_keys_find(keys, 7, 1, &len);
	assert_non_null(k);
	assert_int_equal(len, 32);
	assert_memory_equal(k, key_a, 32);
	k = tl_frame_keys_find(keys, 7, 2, &len);
	assert_non_null(k);
	assert_int_equal(len, 16);
	assert_memory_equal(k, key_b, 16);
	k = tl_frame_keys_find(keys, UINT64_MAX, UINT32_MAX, &len);
	assert_non_null(k);
	assert_int_equal(len, 16);
	k = tl_frame_keys_find(keys, 42, 0, &len); /* 64 bytes, no final newline */
	assert_non_null(k);
	assert_int_equal(len, 64);
	assert_memory_equal(k, key_a, 32);
	assert_memory_equal(k + 32, key_a, 32);
	assert_non_null(tl_frame_keys_find(keys, 42, 0, NULL));
	assert_null(tl_frame_keys_find(keys, 7, 3, &len));
	assert_null(tl_frame_keys_find(keys, 7, 0, &len));
	assert_null(tl_frame_keys_find(keys, 8, 1, &len));
	assert_null(tl_frame_keys_find(keys, 0, 1, &len));
	assert_null(tl_frame_keys_find(NULL, 7, 1, &len));
	tl_frame_keys_free(keys);
	tl_frame_keys_free(NULL);
	/* empty files are valid: nobody has a key */
	keys = load_keys("", false);
	assert_null(tl_frame_keys_find(keys, 7, 1, &len));
	tl_frame_keys_free(keys);
	keys = load_keys("# nothing yet\n", true);
	tl_frame_keys_free(keys);
}

static void
test_keys_load_bad_lines_file_line_errors(void **state)
{
	char text[1024];

	(void)state;
	keys_error("1 1\n", 1, "expected `<producer_id> <key_id> <hex key>`");
	keys_error("# c\n\n1 1 " KEY_A_HEX " extra\n", 3,
	        "expected `<producer_id> <key_id> <hex key>`");
	keys_error("1 1 " KEY_A_HEX "\n2\n", 2, "expected `<producer_id> <key_id> <hex key>`");
	keys_error("0 1 " KEY_A_HEX "\n", 1,
	        "producer id must be a decimal number from 1 to 18446744073709551615");
	keys_error("18446744073709551616 1 " KEY_A_HEX "\n", 1,
	        "producer id must be a decimal number from 1 to 18446744073709551615");
	keys_error("-1 1 " KEY_A_HEX "\n", 1,
	        "producer id must be a decimal number from 1 to 18446744073709551615");
	keys_error("+1 1 " KEY_A_HEX "\n", 1,
	        "producer id must be a decimal number from 1 to 18446744073709551615");
	keys_error("0x10 1 " KEY_A_HEX "\n", 1,
	        "producer id must be a decimal number from 1 to 18446744073709551615");
	keys_error("1 4294967296 " KEY_A_HEX "\n", 1,
	        "key id must be a decimal number from 0 to 4294967295");
	keys_error(
	        "1 a " KEY_A_HEX "\n", 1, "key id must be a decimal number from 0 to 4294967295");
	/* 15 and 65 bytes, odd digits, not hex */
	keys_error("1 1 0011223344556677889900112233ff\n", 1,
	        "key must be 32 to 128 hex digits (16 to 64 bytes)");
	keys_error("1 1 001122334455667788990011223344\n", 1,
	        "key must be 32 to 128 hex digits (16 to 64 bytes)");
	keys_error("1 1 " KEY_A_HEX KEY_A_HEX "00\n", 1,
	        "key must be 32 to 128 hex digits (16 to 64 bytes)");
	keys_error("1 1 " KEY_A_HEX "0\n", 1, "key must be 32 to 128 hex digits (16 to 64 bytes)");
	keys_error("1 1 g0112233445566778899aabbccddeeff\n", 1, "key must be hex digits only");
	keys_error("1 1 0x112233445566778899aabbccddeeff\n", 1, "key must be hex digits only");
	/* a NUL byte is not a digit (the line is read by length, not as a C string) */
	{
		static const char nul[] = "1 1\0 " KEY_A_HEX "\n";
		const char *path = write_keys("nul", "");
		struct tl_frame_keys *k = NULL;
		char err[256], want[512];
		FILE *f = fopen(path, "wb");

		assert_non_null(f);
		assert_int_equal(fwrite(nul, 1, sizeof(nul) - 1, f), sizeof(nul) - 1);
		fclose(f);
		assert_int_equal(
		        tl_frame_keys_load(path, false, &k, err, sizeof(err)), TL_E_CONFIG);
		snprintf(want, sizeof(want),
		        "%s:1: key id must be a decimal number from 0 to "
		        "4294967295",
		        path);
		assert_string_equal(err, want);
	}
	/* duplicates: the second definition is the error, and names the first */
	snprintf(text, sizeof(text), "5 1 %s\n5 2 %s\n# again\n5 1 %s\n6 1 %s\n6 1 %s\n", KEY_A_HEX,
	        KEY_A_HEX, KEY_B_HEX, KEY_A_HEX, KEY_A_HEX);
	keys_error(text, 4, "duplicate key: producer 5 key id 1 already defined on line 1");
	snprintf(text, sizeof(text), "9 1 %s\n6 1 %s\n5 1 %s\n6 1 %s\n5 1 %s\n", KEY_A_HEX,
	        KEY_A_HEX, KEY_A_HEX, KEY_A_HEX, KEY_A_HEX);
	keys_error(text, 4, "duplicate key: producer 6 key id 1 already defined on line 2");
}

static void
test_keys_load_too_many_keys_error(void **state)
{
	size_t cap = (TL_FRAME_MAX_KEYS + 2) * 100, n = 0;
	char *text = malloc(cap);
	struct tl_frame_keys *keys;

	(void)state;
	assert_non_null(text);
	for (unsigned i = 1; i <= TL_FRAME_MAX_KEYS; i++)
		n += (size_t)snprintf(text + n, cap - n, "%u 1 %s\n", i, KEY_B_HEX);
	keys = load_keys(text, false);
	assert_non_null(tl_frame_keys_find(keys, TL_FRAME_MAX_KEYS, 1, NULL));
	assert_non_null(tl_frame_keys_find(keys, 1, 1, NULL));
	assert_null(tl_frame_keys_find(keys, TL_FRAME_MAX_KEYS + 1, 1, NULL));
	tl_frame_keys_free(keys);
	/* comments do not count, the 4097th key does */
	n += (size_t)snprintf(
	        text + n, cap - n, "# one more\n\n%u 1 %s\n", TL_FRAME_MAX_KEYS + 1, KEY_B_HEX);
	keys_error(text, TL_FRAME_MAX_KEYS + 3, "more than 4096 keys");
	free(text);
}

static void
test_keys_load_unreadable_file_errno(void **state)
{
	struct tl_frame_keys *k = (struct tl_frame_keys *)&k;
	char err[512], want[1024], path[512];

	(void)state;
	snprintf(path, sizeof(path), "%s/missing", tmpdir);
	assert_int_equal(tl_frame_keys_load(path, false, &k, err, sizeof(err)), -ENOENT);
	assert_null(k);
	snprintf(want, sizeof(want), "%s: %s", path, strerror(ENOENT));
	assert_string_equal(err, want);
	/* a folder is not a keys file */
	assert_int_equal(tl_frame_keys_load(tmpdir, false, &k, err, sizeof(err)), TL_E_CONFIG);
	snprintf(want, sizeof(want), "%s: not a regular file", tmpdir);
	assert_string_equal(err, want);
	/* no message buffer is fine */
	assert_int_equal(tl_frame_keys_load(path, false, &k, NULL, 0), -ENOENT);
	assert_int_equal(tl_frame_keys_load(NULL, false, &k, err, sizeof(err)), -EINVAL);
	/* a short buffer gets a truncated message, still terminated */
	assert_int_equal(tl_frame_keys_load(path, false, &k, err, 8), -ENOENT);
	assert_int_equal(strlen(err), 7);
}

static void
test_keys_free_wipes_key_bytes(void **state)
{
	char text[512];
	struct tl_frame_keys *keys;
	size_t len;

	(void)state;
	snprintf(text, sizeof(text), "3 1 %s\n3 2 %s\n", KEY_A_HEX, KEY_B_HEX);
	keys = load_keys(text, false);
	watch_key = tl_frame_keys_find(keys, 3, 2, &len);
	assert_non_null(watch_key);
	assert_memory_equal(watch_key, key_b, 16);
	watch_len = len;
	watch_seen = watch_wiped = 0;
	tl_frame_keys_free(keys);
	watch_key = NULL;
	assert_int_equal(watch_seen, 1);
	assert_int_equal(watch_wiped, 1);
}

/* ---- ACKs ---- */

/*
 * A committed ACK, by hand from the layout; its tag computed independently:
 *   openssl dgst -sha256 -hmac Jefe ack.bin
 *   HMAC-SHA2-256(ack.bin)= b5e885f8233881e905d41ed5a08cec3da1c8995516e0da71b9c2e080b003f9c4
 */
static void
test_ack_encode_known_answer_exact_bytes(void **state)
{
	static const uint8_t ack[32] = {'T', 'L', 'A', '1', 1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8,
	        0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0, 0, 0, 1, 0, 0, 0, 0};
	static const uint8_t tag[32] = {0xb5, 0xe8, 0x85, 0xf8, 0x23, 0x38, 0x81, 0xe9, 0x05, 0xd4,
	        0x1e, 0xd5, 0xa0, 0x8c, 0xec, 0x3d, 0xa1, 0xc8, 0x99, 0x55, 0x16, 0xe0, 0xda, 0x71,
	        0xb9, 0xc2, 0xe0, 0x80, 0xb0, 0x03, 0xf9, 0xc4};
	struct tl_ack a = {.status = TL_ACK_COMMITTED,
	        .producer_id = PRODUCER,
	        .sequence = SEQUENCE,
	        .count = 1};
	uint8_t out[TL_ACK_MAX];

	(void)state;
	assert_int_equal(tl_ack_encode(&a, NULL, 0, out, sizeof(out)), TL_ACK_LEN);
	assert_memory_equal(out, ack, 32);
	assert_int_equal(
	        tl_ack_encode(&a, (const uint8_t *)"Jefe", 4, out, sizeof(out)), TL_ACK_MAX);
	assert_memory_equal(out, ack, 32);
	assert_memory_equal(out + 32, tag, 32);
	/* a retry-later, rejected: status, reason and retry_ms in their places */
	a = (struct tl_ack){.status = TL_ACK_RETRY_LATER,
	        .producer_id = 1,
	        .sequence = 2,
	        .retry_ms = 0x01020304};
	assert_int_equal(tl_ack_encode(&a, NULL, 0, out, sizeof(out)), TL_ACK_LEN);
	assert_int_equal(out[5], TL_ACK_RETRY_LATER);
	assert_memory_equal(out + 28, "\x01\x02\x03\x04", 4);
	a = (struct tl_ack){.status = TL_ACK_REJECTED,
	        .reason = TL_FRAME_BAD_TAG,
	        .producer_id = 1,
	        .sequence = 2};
	assert_int_equal(tl_ack_encode(&a, NULL, 0, out, sizeof(out)), TL_ACK_LEN);
	assert_int_equal(out[5], TL_ACK_REJECTED);
	assert_int_equal(out[6], 0);
	assert_int_equal(out[7], TL_FRAME_BAD_TAG);
}

static void
test_ack_roundtrip_every_status_ok(void **state)
{
	const struct tl_ack acks[] = {
	        {.status = TL_ACK_COMMITTED, .producer_id = PRODUCER, .sequence = 1, .count = 7},
	        {.status = TL_ACK_DUPLICATE,
	                .producer_id = UINT64_MAX,
	                .sequence = UINT64_MAX,
	                .count = TL_FRAME_MAX_EVENTS},
	        {.status = TL_ACK_RETRY_LATER, .producer_id = 9, .sequence = 3, .retry_ms = 250},
	        {.status = TL_ACK_RETRY_LATER, .producer_id = 9, .sequence = 4},
	        {.status = TL_ACK_REJECTED,
	                .reason = TL_FRAME_BAD_ZSTD,
	                .producer_id = 9,
	                .sequence = 5},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(acks) / sizeof(acks[0]); i++) {
		uint8_t out[TL_ACK_MAX];
		struct tl_ack b;
		long n;

		n = tl_ack_encode(&acks[i], NULL, 0, out, TL_ACK_LEN);
		assert_int_equal(n, TL_ACK_LEN);
		memset(&b, 0xa5, sizeof(b));
		assert_int_equal(tl_ack_parse(out, (size_t)n, NULL, 0, &b), 0);
		assert_int_equal(b.status, acks[i].status);
		assert_int_equal(b.reason, acks[i].reason);
		assert_int_equal(b.producer_id, acks[i].producer_id);
		assert_int_equal(b.sequence, acks[i].sequence);
		assert_int_equal(b.count, acks[i].count);
		assert_int_equal(b.retry_ms, acks[i].retry_ms);
		/* the tagged ACK needs the key to parse with a key */
		n = tl_ack_encode(&acks[i], key_a, sizeof(key_a), out, TL_ACK_MAX);
		assert_int_equal(n, TL_ACK_MAX);
		memset(&b, 0xa5, sizeof(b));
		assert_int_equal(tl_ack_parse(out, (size_t)n, key_a, sizeof(key_a), &b), 0);
		assert_int_equal(b.status, acks[i].status);
		assert_int_equal(b.sequence, acks[i].sequence);
		assert_int_equal(b.retry_ms, acks[i].retry_ms);
		/* a producer without a key may read it */
		assert_int_equal(tl_ack_parse(out, (size_t)n, NULL, 0, &b), 0);
	}
}

static void
test_ack_parse_wrong_key_or_no_tag_eacces(void **state)
{
	struct tl_ack a = {.status = TL_ACK_COMMITTED, .producer_id = 5, .sequence = 6, .count = 1};
	uint8_t out[TL_ACK_MAX], d[TL_ACK_MAX];
	struct tl_ack b;

	(void)state;
	assert_int_equal(tl_ack_encode(&a, key_a, sizeof(key_a), out, sizeof(out)), TL_ACK_MAX);
	assert_int_equal(tl_ack_parse(out, TL_ACK_MAX, key_b, sizeof(key_b), &b), -EACCES);
	assert_int_equal(tl_ack_parse(out, TL_ACK_MAX, key_a, 31, &b), -EACCES);
	assert_int_equal(tl_ack_parse(out, TL_ACK_MAX, key_a, 0, &b), -EACCES);
	/* no tag at all */
	assert_int_equal(tl_ack_parse(out, TL_ACK_LEN, key_a, sizeof(key_a), &b), -EACCES);
	/* every bit of the signed ACK matters */
	for (size_t bit = 0; bit < 8 * TL_ACK_MAX; bit++) {
		int rc;

		memcpy(d, out, sizeof(d));
		d[bit / 8] ^= (uint8_t)(1u << bit % 8);
		rc = tl_ack_parse(d, TL_ACK_MAX, key_a, sizeof(key_a), &b);

		if (rc != -EACCES && rc != -EBADMSG)
			fail_msg("bit %zu: %d", bit, rc);
		/* magic and version are checked before the tag */
		if (bit >= 40)
			assert_int_equal(rc, -EACCES);
	}
	assert_int_equal(tl_ack_parse(out, TL_ACK_MAX, key_a, sizeof(key_a), &b), 0);
}

static void
test_ack_parse_malformed_ebadmsg(void **state)
{
	struct tl_ack a = {.status = TL_ACK_COMMITTED, .producer_id = 5, .sequence = 6, .count = 1};
	uint8_t out[TL_ACK_MAX + 1], d[TL_ACK_MAX + 1];
	struct tl_ack b;

	(void)state;
	assert_int_equal(tl_ack_encode(&a, key_a, sizeof(key_a), out, TL_ACK_MAX), TL_ACK_MAX);
	out[TL_ACK_MAX] = 0;
	for (size_t len = 0; len <= TL_ACK_MAX + 1; len++) {
		uint8_t *e = dup_exact(out, len);
		int rc = tl_ack_parse(e, len, NULL, 0, &b);

		assert_int_equal(rc, len == TL_ACK_LEN || len == TL_ACK_MAX ? 0 : -EBADMSG);
		free(e);
	}
	assert_int_equal(tl_ack_parse(NULL, 32, NULL, 0, &b), -EBADMSG);
	/* a frame is not an ACK */
	assert_int_equal(tl_ack_parse((const uint8_t *)"TLF1"
	                                               "\x01"
	                                               "0123456789012345678901234"
	                                               "56",
	                         32, NULL, 0, &b),
	        -EBADMSG);
	memcpy(d, out, sizeof(d));
	d[4] = 2;
	assert_int_equal(tl_ack_parse(d, TL_ACK_LEN, NULL, 0, &b), -EBADMSG);
	memcpy(d, out, sizeof(d));
	d[5] = TL_ACK_STATUS_MAX;
	assert_int_equal(tl_ack_parse(d, TL_ACK_LEN, NULL, 0, &b), -EBADMSG);
	memcpy(d, out, sizeof(d));
	d[5] = TL_ACK_REJECTED; /* rejected without a reason */
	d[24] = d[25] = d[26] = d[27] = 0;
	assert_int_equal(tl_ack_parse(d, TL_ACK_LEN, NULL, 0, &b), -EBADMSG);
	d[7] = TL_FRAME_REASON_MAX; /* a reason that does not exist */
	assert_int_equal(tl_ack_parse(d, TL_ACK_LEN, NULL, 0, &b), -EBADMSG);
	d[7] = TL_FRAME_BAD_TAG;
	assert_int_equal(tl_ack_parse(d, TL_ACK_LEN, NULL, 0, &b), 0);
	assert_int_equal(b.reason, TL_FRAME_BAD_TAG);
	d[6] = 1; /* 0x0100 + BAD_TAG */
	assert_int_equal(tl_ack_parse(d, TL_ACK_LEN, NULL, 0, &b), -EBADMSG);
	memcpy(d, out, sizeof(d));
	d[7] = TL_FRAME_BAD_TAG; /* committed with a reason */
	assert_int_equal(tl_ack_parse(d, TL_ACK_LEN, NULL, 0, &b), -EBADMSG);
	memcpy(d, out, sizeof(d));
	d[31] = 1; /* committed with a retry delay */
	assert_int_equal(tl_ack_parse(d, TL_ACK_LEN, NULL, 0, &b), -EBADMSG);
	memcpy(d, out, sizeof(d));
	d[5] = TL_ACK_RETRY_LATER; /* retry-later with a count */
	assert_int_equal(tl_ack_parse(d, TL_ACK_LEN, NULL, 0, &b), -EBADMSG);
	/* a tagged ACK parsed with the key: the malformed field is still found */
	a = (struct tl_ack){.status = TL_ACK_COMMITTED, .producer_id = 5, .sequence = 6};
	assert_int_equal(tl_ack_encode(&a, key_a, sizeof(key_a), d, TL_ACK_MAX), TL_ACK_MAX);
	d[5] = TL_ACK_STATUS_MAX;
	resign(d, TL_ACK_MAX, key_a, sizeof(key_a));
	assert_int_equal(tl_ack_parse(d, TL_ACK_MAX, key_a, sizeof(key_a), &b), -EBADMSG);
}

static void
test_ack_encode_bad_arguments_einval_e2big(void **state)
{
	struct tl_ack a = {.status = TL_ACK_COMMITTED, .producer_id = 5, .sequence = 6, .count = 1};
	uint8_t out[TL_ACK_MAX];

	(void)state;
	assert_int_equal(tl_ack_encode(NULL, NULL, 0, out, sizeof(out)), -EINVAL);
	assert_int_equal(tl_ack_encode(&a, NULL, 0, NULL, sizeof(out)), -EINVAL);
	assert_int_equal(tl_ack_encode(&a, key_a, 0, out, sizeof(out)), -EINVAL);
	assert_int_equal(tl_ack_encode(&a, NULL, 0, out, TL_ACK_LEN - 1), -E2BIG);
	assert_int_equal(tl_ack_encode(&a, key_a, 32, out, TL_ACK_MAX - 1), -E2BIG);
	a.status = TL_ACK_STATUS_MAX;
	assert_int_equal(tl_ack_encode(&a, NULL, 0, out, sizeof(out)), -EINVAL);
	a = (struct tl_ack){.status = TL_ACK_REJECTED, .producer_id = 5, .sequence = 6};
	assert_int_equal(tl_ack_encode(&a, NULL, 0, out, sizeof(out)), -EINVAL);
	a.reason = TL_FRAME_REASON_MAX;
	assert_int_equal(tl_ack_encode(&a, NULL, 0, out, sizeof(out)), -EINVAL);
	a.reason = TL_FRAME_TRUNCATED;
	assert_int_equal(tl_ack_encode(&a, NULL, 0, out, sizeof(out)), TL_ACK_LEN);
	a.count = 1;
	assert_int_equal(tl_ack_encode(&a, NULL, 0, out, sizeof(out)), -EINVAL);
	a = (struct tl_ack){.status = TL_ACK_DUPLICATE, .reason = TL_FRAME_BAD_TAG, .count = 1};
	assert_int_equal(tl_ack_encode(&a, NULL, 0, out, sizeof(out)), -EINVAL);
	a = (struct tl_ack){.status = TL_ACK_COMMITTED, .retry_ms = 5};
	assert_int_equal(tl_ack_encode(&a, NULL, 0, out, sizeof(out)), -EINVAL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_reason_name_every_reason_distinct),
	        cmocka_unit_test(test_is_frame_magic_and_raw_distinguished),
	        cmocka_unit_test(test_encode_hmac_known_answer_exact_bytes),
	        cmocka_unit_test(test_encode_plain_exact_bytes),
	        cmocka_unit_test(test_roundtrip_plain_ok),
	        cmocka_unit_test(test_roundtrip_zstd_compressed_ok),
	        cmocka_unit_test(test_roundtrip_hmac_ok),
	        cmocka_unit_test(test_roundtrip_zstd_hmac_ok),
	        cmocka_unit_test(test_roundtrip_zstd_body_above_datagram_ok),
	        cmocka_unit_test(test_encode_zstd_not_smaller_sent_raw),
	        cmocka_unit_test(test_encode_bad_arguments_einval),
	        cmocka_unit_test(test_encode_too_big_e2big),
	        cmocka_unit_test(test_parse_every_truncation_truncated),
	        cmocka_unit_test(test_parse_raw_ndjson_bad_magic),
	        cmocka_unit_test(test_parse_bad_header_fields_each_reason),
	        cmocka_unit_test(test_body_line_count_mismatch_bad_count),
	        cmocka_unit_test(test_body_hostile_zstd_bad_zstd),
	        cmocka_unit_test(test_body_inflater_reused_second_body_ok),
	        cmocka_unit_test(test_verify_key_rotation_both_ids_ok),
	        cmocka_unit_test(test_verify_unkeyed_producer_depends_on_allow),
	        cmocka_unit_test(test_verify_wrong_tag_bad_tag),
	        cmocka_unit_test(test_bit_flips_signed_frame_all_refused),
	        cmocka_unit_test(test_bit_flips_unsigned_newlines_bad_count),
	        cmocka_unit_test(test_reasons_every_one_reachable),
	        cmocka_unit_test(test_keys_load_valid_file_finds_keys),
	        cmocka_unit_test(test_keys_load_bad_lines_file_line_errors),
	        cmocka_unit_test(test_keys_load_too_many_keys_error),
	        cmocka_unit_test(test_keys_load_unreadable_file_errno),
	        cmocka_unit_test(test_keys_free_wipes_key_bytes),
	        cmocka_unit_test(test_ack_encode_known_answer_exact_bytes),
	        cmocka_unit_test(test_ack_roundtrip_every_status_ok),
	        cmocka_unit_test(test_ack_parse_wrong_key_or_no_tag_eacces),
	        cmocka_unit_test(test_ack_parse_malformed_ebadmsg),
	        cmocka_unit_test(test_ack_encode_bad_arguments_einval_e2big),
	};
	int rc;

	if (setup_spark(NULL) != 0 || setup_tmp(NULL) != 0)
		return 1;
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	teardown_spark(NULL);
	teardown_tmp(NULL);
	return rc;
}
