/* SPDX-License-Identifier: BSD-3-Clause */
/* ClickHouse's compressed framing (uplink/tl_chblock.c) and CityHash128 v1.0.2
 * (uplink/tl_cityhash.c): locally against blocks ClickHouse 18.16 wrote (kept below as
 * test vectors) and hostile inputs, then against a real clickhouse-server started by the
 * test (skipped with 77 when none can start): the server's compressed answers decode and
 * their checksums match, and the server accepts blocks made here of every length class
 * CityHash distinguishes.
 *
 * Also prints the compression throughput of gzip level 1, zstd level 1 and this framing
 * on ~2 MB of sink_output RowBinary rows encoded from corpus events (figure lines; no
 * assertion on speed). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <lz4.h>

#include "tl_batch.h"
#include "tl_chblock.h"
#include "tl_cityhash.h"
#include "tl_corpus.h"
#include "tl_encode.h"
#include "tl_json.h"
#include "tl_test_ch_http.h"
#include "tl_test_clickhouse.h"
#include "tl_test_schema.h"

#define MIB (1u << 20)

static struct tl_test_ch srv;
static struct tl_schema *schema;
static struct tl_corpus *corpus;

/* ---- blocks ClickHouse 18.16 wrote (?compress=1): the last block of each answer ----
 * u8_1: 1 raw byte, CityHash128 over 11 bytes (the 8..15 branch);
 * r16: 16 bytes of cityHash64 values, 27 hashed (16 + 11: CityMurmur, short);
 * r96: 107 hashed (CityMurmur, long); r240: 251 hashed (the 128-byte loop once and a
 * four-chunk tail); r512: 524 hashed (loop three times, tail). */
static const unsigned char blk_u8_1[] =
        "\x03\x16\x4f\x72\x9c\xca\x2d\x7e\x60\xb1\x1e\xc6\xbc\x29\x5a\xfa\x82\x0b\x00\x00\x00\x01"
        "\x00\x00\x00\x10\x95";

static const unsigned char blk_r16[] =
        "\x02\x6f\xfc\xd5\x59\xb4\xfa\xbf\xfe\xb2\x4b\xfb\xfa\xce\xd6\x1a\x82\x1b\x00\x00\x00\x10"
        "\x00\x00\x00\xf0\x01\xde\x46\xbd\xee\x5a\x74\x33\x0e\xc0\x03\xb2\x3e\x81\x75\x42\x47";

static const unsigned char blk_r96[] =
        "\x1d\x6e\x7b\xda\x14\xde\xd0\x77\x69\xf7\x90\xea\xdb\x62\xb8\x50\x82\x6b\x00\x00\x00\x60"
        "\x00\x00\x00\xf0\x51\xde\x46\xbd\xee\x5a\x74\x33\x0e\xc0\x03\xb2\x3e\x81\x75\x42\x47\xe3"
        "\x12\x2f\x6f\xf4\x71\x24\x0a\x7e\xc7\x5a\xe4\x31\x36\x13\xda\x24\x2b\xbc\xb2\x37\x2c\xb4"
        "\xa7\x7d\x2c\xbd\xd2\xd2\x3d\xb4\x46\x3e\x2c\xf5\xb9\xb7\x36\x50\x4d\x07\xae\xe0\x23\x9a"
        "\x4d\xd2\xfc\x3e\xc3\x7f\x23\x8b\x24\x25\xc8\x1e\xd0\x2b\x1d\x0c\x01\xff\x00\x13\x12\x82"
        "\xe4\xc5\x54\xa8\x9e\xeb\x89\x37\x98\xca\xa4\x41\xa4";

static const unsigned char blk_r240[] =
        "\x80\x96\x0d\x1f\x52\xf8\x8e\xe6\x1a\x8d\x18\xf7\x80\x36\xd7\xfd\x82\xfb\x00\x00\x00\xf0"
        "\x00\x00\x00\xf0\xe1\xde\x46\xbd\xee\x5a\x74\x33\x0e\xc0\x03\xb2\x3e\x81\x75\x42\x47\xe3"
        "\x12\x2f\x6f\xf4\x71\x24\x0a\x7e\xc7\x5a\xe4\x31\x36\x13\xda\x24\x2b\xbc\xb2\x37\x2c\xb4"
        "\xa7\x7d\x2c\xbd\xd2\xd2\x3d\xb4\x46\x3e\x2c\xf5\xb9\xb7\x36\x50\x4d\x07\xae\xe0\x23\x9a"
        "\x4d\xd2\xfc\x3e\xc3\x7f\x23\x8b\x24\x25\xc8\x1e\xd0\x2b\x1d\x0c\x01\xff\x00\x13\x12\x82"
        "\xe4\xc5\x54\xa8\x9e\xeb\x89\x37\x98\xca\xa4\x41\xa4\xf8\xd7\x8f\x35\x3f\xd0\x30\x60\xd8"
        "\x38\x41\xab\x28\xf8\xc6\xae\x68\x3a\x55\x9a\xab\xa0\x20\xa0\xb3\xc4\x66\x65\x03\xb4\x06"
        "\xab\xac\xd5\xf3\x06\x1f\x36\x28\x98\xcc\x91\x38\xc3\xf8\x97\x8b\xb6\x65\x27\x51\xaf\x58"
        "\x25\xf8\xad\x16\x02\x9f\x31\x41\xba\x7f\x82\x93\xc3\xa7\xa9\xb8\x31\xa9\xf8\x06\xcb\xb6"
        "\xfd\xc4\xd0\xe7\xb6\x12\x11\x44\x8d\x4e\xb9\x09\x32\x19\xc9\x99\x86\xc6\x10\x4e\x1d\xd1"
        "\x11\x1c\x32\xb7\xa4\x13\xcf\x64\xf3\x3c\x26\x03\x3c\x5f\xb9\xdf\xa2\x39\x60\x57\x5e\xf8"
        "\xeb\x6b\x5c\x32\x8c\xa8\x48\x5c\x14\x87\x5b\xb8\xad\x73\xca\xec\x05\x9d\xd1\xc5\xee\x83"
        "\x8f\x87\x64";

static const unsigned char blk_r512[] =
        "\xa3\x12\xbf\x82\x76\xfc\x61\xbf\x84\x8f\x01\x43\xd0\x1a\x35\xd7\x82\x0c\x02\x00\x00\x00"
        "\x02\x00\x00\xf0\xff\xf2\xde\x46\xbd\xee\x5a\x74\x33\x0e\xc0\x03\xb2\x3e\x81\x75\x42\x47"
        "\xe3\x12\x2f\x6f\xf4\x71\x24\x0a\x7e\xc7\x5a\xe4\x31\x36\x13\xda\x24\x2b\xbc\xb2\x37\x2c"
        "\xb4\xa7\x7d\x2c\xbd\xd2\xd2\x3d\xb4\x46\x3e\x2c\xf5\xb9\xb7\x36\x50\x4d\x07\xae\xe0\x23"
        "\x9a\x4d\xd2\xfc\x3e\xc3\x7f\x23\x8b\x24\x25\xc8\x1e\xd0\x2b\x1d\x0c\x01\xff\x00\x13\x12"
        "\x82\xe4\xc5\x54\xa8\x9e\xeb\x89\x37\x98\xca\xa4\x41\xa4\xf8\xd7\x8f\x35\x3f\xd0\x30\x60"
        "\xd8\x38\x41\xab\x28\xf8\xc6\xae\x68\x3a\x55\x9a\xab\xa0\x20\xa0\xb3\xc4\x66\x65\x03\xb4"
        "\x06\xab\xac\xd5\xf3\x06\x1f\x36\x28\x98\xcc\x91\x38\xc3\xf8\x97\x8b\xb6\x65\x27\x51\xaf"
        "\x58\x25\xf8\xad\x16\x02\x9f\x31\x41\xba\x7f\x82\x93\xc3\xa7\xa9\xb8\x31\xa9\xf8\x06\xcb"
        "\xb6\xfd\xc4\xd0\xe7\xb6\x12\x11\x44\x8d\x4e\xb9\x09\x32\x19\xc9\x99\x86\xc6\x10\x4e\x1d"
        "\xd1\x11\x1c\x32\xb7\xa4\x13\xcf\x64\xf3\x3c\x26\x03\x3c\x5f\xb9\xdf\xa2\x39\x60\x57\x5e"
        "\xf8\xeb\x6b\x5c\x32\x8c\xa8\x48\x5c\x14\x87\x5b\xb8\xad\x73\xca\xec\x05\x9d\xd1\xc5\xee"
        "\x83\x8f\x87\x64\x77\xc2\x2f\xc2\xff\xe0\xf0\x97\xe4\x18\x54\xd4\x7f\x47\x35\x5b\xcb\x49"
        "\x3c\xf9\x17\x69\xaa\xa8\x62\x8a\x34\xf6\xa3\xb7\x9d\xe4\x7d\xb8\x84\xc5\xb7\x70\x14\xe1"
        "\x88\xcb\x36\xf2\x23\x59\xef\x19\xfa\x86\xe8\xd0\xff\x94\xb3\x27\xc7\x9e\xb0\xe5\xba\x44"
        "\x4d\xba\x62\xca\xd8\xff\x21\xd3\x15\x21\x0b\x92\x94\xbe\x6c\x1c\x30\xbe\xea\xae\xdf\xbe"
        "\xc5\x6e\x56\x77\xf9\x5e\xb1\xcc\xe4\x26\x3a\xc2\xae\x0c\xc4\x80\x21\x18\x8d\x11\xfb\xb2"
        "\xc7\x21\xf4\xd6\x75\x9d\x13\x61\xf4\xad\xcf\x3b\xca\x17\x9a\xc0\x27\xc3\x4a\xd7\x58\x50"
        "\x8f\x6d\x66\x3c\x0a\xd4\x44\x43\x49\x0d\x7a\x32\x59\x88\x6f\x48\x45\x0d\xb2\xd8\x6a\xf5"
        "\x56\xe8\xe5\x0f\xcc\x28\x0c\x2e\x25\x5c\x0c\xac\xf0\x37\xb5\xee\xa9\x9a\xad\x1c\xa5\xa4"
        "\x89\xcf\x5c\x12\x63\xe2\x96\x91\xff\x03\x41\x6f\x23\xc3\xe7\x47\x69\x48\xca\xce\x0f\x78"
        "\x61\x8e\x9b\x51\x09\xc7\xeb\xea\x33\x61\x0c\xef\xbe\xe7\x5e\x10\x0c\x03\x2b\x64\x30\x04"
        "\xda\x46\xed\xad\xc2\xb3\xb5\x2e\xfa\x8a\xc4\xd8\x77\xdd\x72\xeb\x54\x6c\x47\xa0\x55\xd4"
        "\xbe\x31\x48\x6a\x63\x38\x19\xcd\xea\x80\xbb\x9e\xe4\xbb\xe9\xe7\xc5\x90\x51\x67\x9a\x48"
        "\x96\xc0\x3e\x71\xa5\xef\x22\x58\x61\xab\x10\xf2";

static const struct {
	const unsigned char *b;
	size_t len;
	uint32_t raw;
} server_blocks[] = {
        {blk_u8_1, sizeof(blk_u8_1) - 1, 1},
        {blk_r16, sizeof(blk_r16) - 1, 16},
        {blk_r96, sizeof(blk_r96) - 1, 96},
        {blk_r240, sizeof(blk_r240) - 1, 240},
        {blk_r512, sizeof(blk_r512) - 1, 512},
};

/* ---- helpers ---- */

static uint64_t
le64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint32_t
le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void
wr32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

/* Recompute a block's checksum after editing its header or data. */
static void
reseal(unsigned char *b)
{
	uint32_t c = le32(b + 17);
	struct tl_cityhash128 h = tl_cityhash128(b + 16, c);

	for (int i = 0; i < 8; i++) {
		b[i] = (unsigned char)(h.lo >> (8 * i));
		b[8 + i] = (unsigned char)(h.hi >> (8 * i));
	}
}

static uint64_t rng_state = 0x1234567;

static uint64_t
rnd(void)
{
	uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

/* Real text (loghub Hadoop) repeated up to @p len bytes, or random bytes if @p random. */
static unsigned char *
sample(size_t len, bool random)
{
	unsigned char *p = malloc(len ? len : 1);
	const char *dd = getenv("TAPLINE_DATA");
	char path[512];
	FILE *f;
	size_t got = 0;

	assert_non_null(p);
	if (random) {
		for (size_t i = 0; i < len; i++)
			p[i] = (unsigned char)rnd();
		return p;
	}
	snprintf(path, sizeof(path), "%s/loghub/Hadoop_2k.log", dd && *dd ? dd : "../shared/data");
	f = fopen(path, "rb");
	if (f) {
		got = fread(p, 1, len, f);
		fclose(f);
	}
	if (got == 0) {
		for (size_t i = 0; i < len; i++)
			p[i] = (unsigned char)("generated log line 0123456789\n"[i % 30]);
		got = len;
	}
	for (size_t i = got; i < len; i++)
		p[i] = p[i % got];
	return p;
}

/* Compress, check the block layout, decode, compare. */
static void
roundtrip(const unsigned char *src, size_t len)
{
	size_t bound = tl_chblock_bound(len);
	unsigned char *z = malloc(bound ? bound : 1);
	unsigned char *back = malloc(len ? len : 1);
	size_t zl = 99, bl = 99, raw = 99, at = 0, blocks = 0;

	assert_non_null(z);
	assert_non_null(back);
	assert_int_equal(tl_chblock_compress(src, len, z, bound, &zl), 0);
	assert_true(zl <= bound);
	while (at < zl) {
		uint32_t c = le32(z + at + 17), r = le32(z + at + 21);

		assert_int_equal(z[at + 16], TL_CHBLOCK_METHOD_LZ4);
		assert_true(r <= TL_CHBLOCK_MAX_RAW && r > 0);
		/* every block but the last is full */
		if (at + 16 + c < zl)
			assert_int_equal(r, TL_CHBLOCK_MAX_RAW);
		at += 16 + c;
		blocks++;
	}
	assert_int_equal(at, zl);
	assert_int_equal(blocks, (len + TL_CHBLOCK_MAX_RAW - 1) / TL_CHBLOCK_MAX_RAW);
	assert_int_equal(tl_chblock_raw_size(z, zl, &raw, NULL), 0);
	assert_int_equal(raw, len);
	assert_int_equal(tl_chblock_decode(z, zl, back, len, &bl, NULL), 0);
	assert_int_equal(bl, len);
	if (len)
		assert_memory_equal(back, src, len);
	/* exactly the output size is enough; one byte less is not */
	if (len) {
		assert_int_equal(tl_chblock_compress(src, len, z, zl, &bl), 0);
		assert_int_equal(bl, zl);
		assert_int_equal(tl_chblock_compress(src, len, z, zl - 1, &bl), -ENOSPC);
		assert_int_equal(bl, 0);
	}
	free(z);
	free(back);
}

/* ---- CityHash128 ---- */

static void
test_cityhash_server_blocks_match(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(server_blocks) / sizeof(server_blocks[0]); i++) {
		const unsigned char *b = server_blocks[i].b;
		uint32_t c = le32(b + 17);
		struct tl_cityhash128 h;
		unsigned char out[600];
		size_t n = 0;

		assert_int_equal(c + 16, server_blocks[i].len);
		h = tl_cityhash128(b + 16, c);
		/* low half first, then high */
		assert_int_equal(h.lo, le64(b));
		assert_int_equal(h.hi, le64(b + 8));
		assert_int_equal(
		        tl_chblock_decode(b, server_blocks[i].len, out, sizeof(out), &n, NULL), 0);
		assert_int_equal(n, server_blocks[i].raw);
	}
	assert_int_equal(blk_u8_1[25 + 1], 0x95); /* 1048576 % 251 */
}

static void
test_cityhash_seed_and_lengths_consistent(void **state)
{
	unsigned char *p = sample(4096, true);
	struct tl_cityhash128 a, b, prev = {0, 0};

	(void)state;
	/* the 0..15 byte branches reduce to the seeded form as documented */
	a = tl_cityhash128(NULL, 0);
	b = tl_cityhash128_seed(NULL, 0,
	        (struct tl_cityhash128){
	                UINT64_C(0xc3a5c85c97cb3127), UINT64_C(0xb492b66fbe98f273)});
	assert_int_equal(a.lo, b.lo);
	assert_int_equal(a.hi, b.hi);
	a = tl_cityhash128(p, 100);
	b = tl_cityhash128_seed(p + 16, 84,
	        (struct tl_cityhash128){le64(p) ^ UINT64_C(0xc949d7c7509e6557), le64(p + 8)});
	assert_int_equal(a.lo, b.lo);
	assert_int_equal(a.hi, b.hi);
	/* every length gives a different value, deterministic, and depends on the last byte */
	for (size_t n = 0; n < 600; n++) {
		struct tl_cityhash128 h = tl_cityhash128(p, n), h2 = tl_cityhash128(p, n);

		assert_int_equal(h.lo, h2.lo);
		assert_int_equal(h.hi, h2.hi);
		assert_false(h.lo == prev.lo && h.hi == prev.hi);
		prev = h;
		if (n > 0) {
			p[n - 1] ^= 1;
			h2 = tl_cityhash128(p, n);
			p[n - 1] ^= 1;
			assert_false(h.lo == h2.lo && h.hi == h2.hi);
		}
	}
	/* unaligned input gives the same value as aligned */
	{
		unsigned char *q = malloc(1000);

		assert_non_null(q);
		memcpy(q + 3, p, 700);
		a = tl_cityhash128(p, 700);
		b = tl_cityhash128(q + 3, 700);
		assert_int_equal(a.lo, b.lo);
		assert_int_equal(a.hi, b.hi);
		free(q);
	}
	free(p);
}

/* ---- compress, wrap, decode ---- */

static void
test_chblock_compress_decode_roundtrip_sizes(void **state)
{
	static const size_t sizes[] = {
	        0, 1, 2, 15, 16, 100, 4096, MIB - 1, MIB, MIB + 1, 3 * MIB + MIB / 2};

	(void)state;
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		unsigned char *t = sample(sizes[i], false);
		unsigned char *r = sample(sizes[i], true);

		roundtrip(t, sizes[i]);
		roundtrip(r, sizes[i]);
		free(t);
		free(r);
	}
}

static void
test_chblock_bad_arguments_errors(void **state)
{
	unsigned char buf[256], src[16] = "0123456789abcdef";
	size_t n = 77, raw = 77;

	(void)state;
	assert_int_equal(tl_chblock_bound(0), 0);
	assert_int_equal(tl_chblock_bound(SIZE_MAX), 0);
	assert_true(tl_chblock_bound(1) >= 1 + TL_CHBLOCK_OVERHEAD + 16);
	assert_true(tl_chblock_bound(MIB + 1) >=
	            (size_t)LZ4_compressBound(MIB + 1) + TL_CHBLOCK_OVERHEAD);
	assert_true(tl_chblock_bound(TL_CHBLOCK_MAX_RAW + 1) >=
	            (size_t)LZ4_compressBound(TL_CHBLOCK_MAX_RAW) + (size_t)LZ4_compressBound(1) +
	                    2 * TL_CHBLOCK_OVERHEAD);
	assert_int_equal(tl_chblock_compress(NULL, 4, buf, sizeof(buf), &n), -EINVAL);
	assert_int_equal(tl_chblock_compress(src, 4, NULL, sizeof(buf), &n), -EINVAL);
	assert_int_equal(tl_chblock_compress(src, SIZE_MAX, buf, sizeof(buf), &n), -EOVERFLOW);
	assert_int_equal(tl_chblock_compress(src, 16, buf, TL_CHBLOCK_OVERHEAD, &n), -ENOSPC);
	assert_int_equal(tl_chblock_compress(src, 16, buf, 0, &n), -ENOSPC);
	assert_int_equal(n, 0);
	assert_int_equal(tl_chblock_compress(NULL, 0, NULL, 0, &n), 0);
	assert_int_equal(n, 0);

	assert_int_equal(tl_chblock_wrap_lz4(NULL, 4, 4, buf, sizeof(buf), &n), -EINVAL);
	assert_int_equal(tl_chblock_wrap_lz4(src, 4, 4, NULL, sizeof(buf), &n), -EINVAL);
	assert_int_equal(tl_chblock_wrap_lz4(src, 0, 4, buf, sizeof(buf), &n), -EINVAL);
	/* sizes are checked before anything is read or written */
	assert_int_equal(
	        tl_chblock_wrap_lz4(src, TL_CHBLOCK_MAX_COMPRESSED - 8, 4, buf, sizeof(buf), &n),
	        -EFBIG);
	assert_int_equal(
	        tl_chblock_wrap_lz4(src, 4, (size_t)UINT32_MAX + 1, buf, sizeof(buf), &n), -EFBIG);
	assert_int_equal(
	        tl_chblock_wrap_lz4(src, 16, 16, buf, TL_CHBLOCK_OVERHEAD + 15, &n), -ENOSPC);
	assert_int_equal(tl_chblock_wrap_lz4(src, 16, 16, buf, 3, &n), -ENOSPC);
	assert_int_equal(n, 0);

	assert_int_equal(tl_chblock_decode(NULL, 5, buf, sizeof(buf), &n, NULL), -EINVAL);
	assert_int_equal(tl_chblock_decode(src, 5, NULL, 5, &n, NULL), -EINVAL);
	assert_int_equal(tl_chblock_decode(NULL, 0, NULL, 0, &n, NULL), 0);
	assert_int_equal(n, 0);
	assert_int_equal(tl_chblock_raw_size(NULL, 3, &raw, NULL), -EINVAL);
	assert_int_equal(tl_chblock_raw_size(NULL, 0, &raw, NULL), 0);
	assert_int_equal(raw, 0);
}

/* A spooled batch body is one LZ4 block: framed as is, in place or copied. */
static void
test_chblock_wrap_lz4_in_place_and_copied(void **state)
{
	size_t len = 300000, n = 0, back_len = 0;
	unsigned char *src = sample(len, false);
	int zcap = LZ4_compressBound((int)len);
	unsigned char *z = malloc((size_t)zcap);
	unsigned char *frame = malloc((size_t)zcap + TL_CHBLOCK_OVERHEAD + 8);
	unsigned char *frame2 = malloc((size_t)zcap + TL_CHBLOCK_OVERHEAD);
	unsigned char *back = malloc(len);
	int zl;

	(void)state;
	assert_non_null(z);
	assert_non_null(frame);
	assert_non_null(frame2);
	assert_non_null(back);
	zl = LZ4_compress_default((const char *)src, (char *)z, (int)len, zcap);
	assert_true(zl > 0);
	/* copied */
	assert_int_equal(tl_chblock_wrap_lz4(
	                         z, (size_t)zl, len, frame2, (size_t)zl + TL_CHBLOCK_OVERHEAD, &n),
	        0);
	assert_int_equal(n, (size_t)zl + TL_CHBLOCK_OVERHEAD);
	assert_int_equal(tl_chblock_decode(frame2, n, back, len, &back_len, NULL), 0);
	assert_int_equal(back_len, len);
	assert_memory_equal(back, src, len);
	/* already in place: only the header is written; same bytes */
	memcpy(frame + TL_CHBLOCK_OVERHEAD, z, (size_t)zl);
	assert_int_equal(tl_chblock_wrap_lz4(frame + TL_CHBLOCK_OVERHEAD, (size_t)zl, len, frame,
	                         (size_t)zl + TL_CHBLOCK_OVERHEAD, &n),
	        0);
	assert_memory_equal(frame, frame2, n);
	/* overlapping from a few bytes in (moved, not corrupted) */
	memcpy(frame + 3, z, (size_t)zl);
	assert_int_equal(tl_chblock_wrap_lz4(frame + 3, (size_t)zl, len, frame,
	                         (size_t)zl + TL_CHBLOCK_OVERHEAD, &n),
	        0);
	assert_memory_equal(frame, frame2, n);
	/* the header names the sizes */
	assert_int_equal(frame[16], 0x82);
	assert_int_equal(le32(frame + 17), (uint32_t)zl + 9);
	assert_int_equal(le32(frame + 21), len);
	/* a wrong raw length is caught by decode, not by wrap */
	assert_int_equal(tl_chblock_wrap_lz4(z, (size_t)zl, len - 1, frame2,
	                         (size_t)zl + TL_CHBLOCK_OVERHEAD, &n),
	        0);
	assert_int_equal(tl_chblock_decode(frame2, n, back, len, &back_len, NULL), -EILSEQ);
	free(src);
	free(z);
	free(frame);
	free(frame2);
	free(back);
}

static void
test_chblock_decode_hostile_named_errors(void **state)
{
	unsigned char *src = sample(3000, false);
	unsigned char two[8192], bad[8192], out[8192];
	size_t zl = 0, first, n = 0, off = 0;

	(void)state;
	/* two blocks: 3000 text bytes and 16 more */
	assert_int_equal(tl_chblock_compress(src, 3000, two, sizeof(two), &first), 0);
	assert_int_equal(tl_chblock_compress(src, 16, two + first, sizeof(two) - first, &zl), 0);
	zl += first;
	assert_int_equal(tl_chblock_decode(two, zl, out, sizeof(out), &n, &off), 0);
	assert_int_equal(n, 3016);

	/* every truncation: inside a block is -ENODATA, at the block boundary fine */
	for (size_t cut = 0; cut < zl; cut++) {
		int rc = tl_chblock_decode(two, cut, out, sizeof(out), &n, &off);

		if (cut == 0 || cut == first) {
			assert_int_equal(rc, 0);
		} else {
			assert_int_equal(rc, -ENODATA);
			assert_int_equal(off, cut < first ? 0 : first);
			assert_int_equal(n, cut < first ? 0 : 3000);
		}
	}
	/* every single bit flip of the second block is caught, never decoded */
	for (size_t i = first; i < zl; i++) {
		for (int bit = 0; bit < 8; bit++) {
			int rc;

			memcpy(bad, two, zl);
			bad[i] ^= (unsigned char)(1u << bit);
			rc = tl_chblock_decode(bad, zl, out, sizeof(out), &n, &off);
			assert_true(rc == -EBADMSG || rc == -ENODATA || rc == -EPROTO);
			assert_int_equal(off, first);
			assert_int_equal(n, 3000);
			/* checksum, method, raw size and data flips are checksum errors */
			if (i - first < 17 || i - first >= 21)
				assert_int_equal(rc, -EBADMSG);
		}
	}
	/* compressed size below the header, above 1 GiB */
	memcpy(bad, two, zl);
	wr32(bad + 17, 8);
	assert_int_equal(tl_chblock_decode(bad, zl, out, sizeof(out), &n, &off), -EPROTO);
	assert_int_equal(tl_chblock_raw_size(bad, zl, &n, &off), -EPROTO);
	assert_int_equal(off, 0);
	wr32(bad + 17, TL_CHBLOCK_MAX_COMPRESSED + 1);
	assert_int_equal(tl_chblock_decode(bad, zl, out, sizeof(out), &n, &off), -EPROTO);
	/* a correct checksum over an unknown method: zstd blocks are not decoded here */
	memcpy(bad, two, zl);
	bad[16] = TL_CHBLOCK_METHOD_ZSTD;
	reseal(bad);
	assert_int_equal(tl_chblock_decode(bad, zl, out, sizeof(out), &n, &off), -EPROTONOSUPPORT);
	/* a correct checksum over a wrong raw size */
	memcpy(bad, two, zl);
	wr32(bad + 21, 2999);
	reseal(bad);
	assert_int_equal(tl_chblock_decode(bad, zl, out, sizeof(out), &n, &off), -EILSEQ);
	wr32(bad + 21, 0x7fffffff);
	reseal(bad);
	assert_int_equal(tl_chblock_decode(bad, zl, out, sizeof(out), &n, &off), -ENOSPC);
	/* a correct checksum over garbage LZ4 data */
	memcpy(bad, two, zl);
	memset(bad + 25, 0xff, 20);
	reseal(bad);
	assert_int_equal(tl_chblock_decode(bad, zl, out, sizeof(out), &n, &off), -EILSEQ);
	/* uncompressed blocks (method 0x02): fine when both sizes agree */
	memcpy(bad + 25, "hello, world", 12);
	bad[16] = TL_CHBLOCK_METHOD_NONE;
	wr32(bad + 17, 9 + 12);
	wr32(bad + 21, 12);
	reseal(bad);
	assert_int_equal(tl_chblock_decode(bad, 37, out, sizeof(out), &n, &off), 0);
	assert_int_equal(n, 12);
	assert_memory_equal(out, "hello, world", 12);
	assert_int_equal(tl_chblock_decode(bad, 37, out, 11, &n, &off), -ENOSPC);
	wr32(bad + 21, 11);
	reseal(bad);
	assert_int_equal(tl_chblock_decode(bad, 37, out, sizeof(out), &n, &off), -EPROTO);
	/* output too small, in the second block */
	assert_int_equal(tl_chblock_decode(two, zl, out, 3010, &n, &off), -ENOSPC);
	assert_int_equal(off, first);
	assert_int_equal(n, 3000);
	/* names */
	assert_string_equal(tl_chblock_strerror(-EBADMSG), "checksum mismatch");
	assert_string_equal(tl_chblock_strerror(-ENODATA), "truncated block");
	assert_string_equal(tl_chblock_strerror(-EPROTO), "impossible block sizes");
	assert_string_equal(
	        tl_chblock_strerror(-EPROTONOSUPPORT), "unsupported compression method");
	assert_non_null(strstr(tl_chblock_strerror(-EILSEQ), "LZ4"));
	assert_string_equal(tl_chblock_strerror(0), "ok");
	assert_non_null(tl_chblock_strerror(-ENOMEM));
	free(src);
}

/* ---- bench: the codecs on real rows ---- */

/* ~2 MB of sink_output RowBinary rows: corpus events through the real encoder. */
static unsigned char *
corpus_rows(size_t want, size_t *len)
{
	struct tl_encode_conf ec = {.appliance_id = "bench-edge-01",
	        .batch_rows = 100000,
	        .batch_bytes = (uint32_t)want,
	        .codec = TL_BATCH_CODEC_NONE};
	struct tl_corpus_conf cf;
	struct tl_corpus_gen *g = NULL;
	struct tl_encoder *enc = NULL;
	struct tl_event *ev = calloc(1, sizeof(*ev));
	struct tl_batch_view v;
	unsigned char *sealed, *rows;
	size_t sl = 0;
	int64_t now = 1760000000000000000ll;

	assert_non_null(ev);
	assert_int_equal(tl_encoder_create(schema, TL_BATCH_SINK_OUTPUT, &ec, &enc), 0);
	tl_corpus_conf_defaults(&cf);
	cf.seed = 11;
	assert_int_equal(tl_corpus_gen_create(corpus, &cf, &g), 0);
	for (;;) {
		struct tl_corpus_event ce;
		int rc;

		assert_int_equal(tl_corpus_next(g, &ce), 0);
		if (tl_json_extract(schema, ce.data, ce.len, ev) != TL_REASON_OK || ev->is_error)
			continue;
		rc = tl_encode_event(enc, ev, now++);
		if (rc != 0)
			break;
	}
	sealed = malloc(tl_encode_seal_max(enc));
	assert_non_null(sealed);
	assert_int_equal(tl_encode_seal(enc, sealed, tl_encode_seal_max(enc), &sl), 0);
	assert_int_equal(tl_batch_parse(sealed, sl, &v), 0);
	rows = malloc(v.raw_len);
	assert_non_null(rows);
	memcpy(rows, v.body, v.raw_len);
	*len = v.raw_len;
	free(sealed);
	free(ev);
	tl_encoder_free(enc);
	tl_corpus_gen_free(g);
	return rows;
}

static void
test_bench_codecs_on_corpus_rows(void **state)
{
	struct tl_chblock_bench b;
	size_t len = 0;
	unsigned char *rows;

	(void)state;
	if (schema == NULL || corpus == NULL)
		skip();
	rows = corpus_rows(2 * 1000 * 1000, &len);
	assert_true(len > 1900000);
	assert_int_equal(tl_chblock_bench(rows, len, 0.5, &b), 0);
	assert_true(b.gzip_mb_s > 0 && b.zstd_mb_s > 0 && b.lz4_mb_s > 0);
	assert_true(b.gzip_ratio > 1 && b.zstd_ratio > 1 && b.lz4_ratio > 1);
	printf("# %zu bytes of sink_output RowBinary (corpus events), one core\n", len);
	printf("figure compress_gzip1_mb_per_s %.0f MB/s\n", b.gzip_mb_s);
	printf("figure compress_zstd1_mb_per_s %.0f MB/s\n", b.zstd_mb_s);
	printf("figure compress_chlz4_mb_per_s %.0f MB/s\n", b.lz4_mb_s);
	printf("figure compress_gzip1_ratio %.2f x\n", b.gzip_ratio);
	printf("figure compress_zstd1_ratio %.2f x\n", b.zstd_ratio);
	printf("figure compress_chlz4_ratio %.2f x\n", b.lz4_ratio);
	fflush(stdout);
	assert_int_equal(tl_chblock_bench(rows, 0, 0.1, &b), -EINVAL);
	assert_int_equal(tl_chblock_bench(NULL, 10, 0.1, &b), -EINVAL);
	free(rows);
}

/* ---- against a real ClickHouse ---- */

/* POST @p body to the test server with URL parameters @p params ("a=1&b=2"). */
static long
post(const char *params, const void *body, size_t len, struct tl_test_http *out)
{
	char url[4096];

	snprintf(url, sizeof(url), "%s?%s", srv.url, params);
	return tl_test_http_post(url, body, len,
	        curl_slist_append(NULL, "Content-Type: application/octet-stream"), out);
}

static void
sql_ok(const char *sql)
{
	struct tl_test_http r;
	long code = post("", sql, strlen(sql), &r);

	if (code != 200)
		print_error("%s: %ld %s\n", sql, code, r.p);
	assert_int_equal(code, 200);
	free(r.p);
}

/*
 * Every block of the server's compressed answer has the checksum we compute and decodes
 * to what the same query answers uncompressed. 18.16 sends nothing at all with
 * compress=1 when the whole answer fits in its first 1 MiB buffer (a server bug), so the
 * queries here answer more than that.
 */
static void
test_server_compressed_answers_decode(void **state)
{
	static const char *const queries[] = {
	        "SELECT number FROM system.numbers LIMIT 1000000 FORMAT RowBinary",
	        "SELECT cityHash64(number) FROM system.numbers LIMIT 131147 FORMAT RowBinary",
	        "SELECT toUInt8(number % 7) FROM system.numbers LIMIT 1048579 FORMAT RowBinary",
	        ("SELECT concat(line, toString(n)) FROM tl_chb.logs ARRAY JOIN range(40) AS n "
	         "FORMAT RowBinary"),
	};
	unsigned char *text = sample(200000, false);
	struct tl_test_http r;
	size_t total_blocks = 0;

	(void)state;
	sql_ok("CREATE DATABASE IF NOT EXISTS tl_chb");
	sql_ok("CREATE TABLE IF NOT EXISTS tl_chb.logs (line String) ENGINE = Memory");
	{
		/* real log lines as TSV (no tab, backslash or CR in them) */
		for (size_t i = 0; i < 200000; i++)
			if (text[i] == '\t' || text[i] == '\\' || text[i] == '\r')
				text[i] = ' ';
		long code =
		        post("query=INSERT%20INTO%20tl_chb.logs%20FORMAT%20TSV", text, 200000, &r);

		if (code != 200)
			print_error("insert: %s\n", r.p);
		assert_int_equal(code, 200);
		free(r.p);
	}
	for (size_t q = 0; q < sizeof(queries) / sizeof(queries[0]); q++) {
		struct tl_test_http plain, z;
		char params[600];
		char *esc;
		CURL *c = curl_easy_init();
		size_t raw = 0, n = 0, at = 0, off = 0;
		unsigned char *dec;

		esc = curl_easy_escape(c, queries[q], 0);
		snprintf(params, sizeof(params), "query=%s", esc);
		assert_int_equal(post(params, "", 0, &plain), 200);
		snprintf(params, sizeof(params), "compress=1&query=%s", esc);
		assert_int_equal(post(params, "", 0, &z), 200);
		curl_free(esc);
		curl_easy_cleanup(c);
		assert_true(plain.n > MIB);
		assert_int_equal(tl_chblock_raw_size(z.p, z.n, &raw, &off), 0);
		assert_int_equal(raw, plain.n);
		/* each block's checksum, by hand, low half first */
		while (at < z.n) {
			const unsigned char *b = (const unsigned char *)z.p + at;
			struct tl_cityhash128 h = tl_cityhash128(b + 16, le32(b + 17));

			assert_int_equal(b[16], TL_CHBLOCK_METHOD_LZ4);
			assert_int_equal(h.lo, le64(b));
			assert_int_equal(h.hi, le64(b + 8));
			at += 16 + le32(b + 17);
			total_blocks++;
		}
		dec = malloc(raw);
		assert_non_null(dec);
		assert_int_equal(tl_chblock_decode(z.p, z.n, dec, raw, &n, &off), 0);
		assert_int_equal(n, plain.n);
		assert_memory_equal(dec, plain.p, n);
		print_message("%s: %zu bytes in %zu compressed\n", queries[q], plain.n, z.n);
		free(dec);
		free(plain.p);
		free(z.p);
	}
	assert_true(total_blocks >= 10);
	free(text);
}

/*
 * The server verifies blocks made here: RowBinary rows cut into blocks of every length
 * from 1 to 400 raw bytes (each CityHash length branch and every tail size), then large
 * ones, inserted with decompress=1 and read back byte for byte.
 */
static void
test_server_accepts_framed_blocks_every_size(void **state)
{
	size_t text_len = 700000, rows_len = 0, body_len = 0, at = 0, step = 1;
	unsigned char *text = sample(text_len, false);
	unsigned char *rows = malloc(text_len + 200000);
	unsigned char *body, *lz;
	struct tl_test_http r;
	uint32_t id = 0;
	size_t blocks = 0;
	char *nl;
	long code;

	(void)state;
	assert_non_null(rows);
	/* (id UInt32, line String) rows from the log lines */
	for (unsigned char *p = text;
	        p < text + text_len && (nl = memchr(p, '\n', (size_t)(text + text_len - p)));
	        p = (unsigned char *)nl + 1) {
		size_t n = (size_t)((unsigned char *)nl - p);

		memcpy(rows + rows_len, &id, 4); /* little-endian host */
		rows_len += 4;
		id++;
		assert_true(n < 16384);
		rows[rows_len++] = (unsigned char)((n & 0x7f) | (n > 0x7f ? 0x80 : 0));
		if (n > 0x7f)
			rows[rows_len++] = (unsigned char)(n >> 7);
		memcpy(rows + rows_len, p, n);
		rows_len += n;
	}
	body = malloc(tl_chblock_bound(rows_len) * 2 + 400 * 64);
	lz = malloc((size_t)LZ4_compressBound((int)rows_len));
	assert_non_null(body);
	assert_non_null(lz);
	while (at < rows_len) {
		size_t n = step <= 400 ? step : step <= 420 ? 16384 : MIB;
		int zl;
		size_t fl = 0;

		if (n > rows_len - at)
			n = rows_len - at;
		zl = LZ4_compress_default((const char *)rows + at, (char *)lz, (int)n,
		        LZ4_compressBound((int)rows_len));
		assert_true(zl > 0);
		assert_int_equal(tl_chblock_wrap_lz4(lz, (size_t)zl, n, body + body_len,
		                         (size_t)zl + TL_CHBLOCK_OVERHEAD, &fl),
		        0);
		body_len += fl;
		at += n;
		step++;
		blocks++;
	}
	assert_true(blocks > 420);
	sql_ok("CREATE DATABASE IF NOT EXISTS tl_chb");
	sql_ok("CREATE TABLE tl_chb.fr (id UInt32, line String) ENGINE = MergeTree ORDER BY id");
	code = post("decompress=1&query=INSERT%20INTO%20tl_chb.fr%20FORMAT%20RowBinary", body,
	        body_len, &r);
	if (code != 200)
		print_error("insert: %s\n", r.p);
	assert_int_equal(code, 200);
	free(r.p);
	/* the same rows once more, in 1 MiB blocks from tl_chblock_compress */
	assert_int_equal(
	        tl_chblock_compress(rows, rows_len, body, tl_chblock_bound(rows_len), &body_len),
	        0);
	assert_int_equal(post("decompress=1&query=INSERT%20INTO%20tl_chb.fr%20FORMAT%20RowBinary",
	                         body, body_len, &r),
	        200);
	free(r.p);
	assert_int_equal(post("query=SELECT%20id%2C%20line%20FROM%20tl_chb.fr%20ORDER%20BY%20id"
	                      "%20LIMIT%201%20BY%20id%20FORMAT%20RowBinary",
	                         "", 0, &r),
	        200);
	assert_int_equal(r.n, rows_len);
	assert_memory_equal(r.p, rows, rows_len);
	free(r.p);
	assert_int_equal(post("query=SELECT%20count()%20FROM%20tl_chb.fr", "", 0, &r), 200);
	assert_int_equal(strtoul(r.p, NULL, 10), 2 * id);
	free(r.p);
	print_message(
	        "%u rows in %zu blocks of 1..400 bytes, 16 KiB and 1 MiB: accepted\n", id, blocks);
	free(text);
	free(rows);
	free(body);
	free(lz);
}

/* ---- main ---- */

static void
load_globals(void)
{
	struct tl_schema_def def;
	struct tl_limits lim = tl_test_e6data_limits();
	const char *d = getenv("TAPLINE_DATA");
	char msg[512] = "";

	tl_test_e6data_def(&def);
	if (tl_schema_compile(&def, &lim, &schema, msg, sizeof(msg)) != 0) {
		fprintf(stderr, "schema: %s\n", msg);
		schema = NULL;
	}
	if (tl_corpus_load(d && *d ? d : "../shared/data", &corpus, msg, sizeof(msg)) != 0) {
		fprintf(stderr, "corpus: %s (set TAPLINE_DATA): bench skipped\n", msg);
		corpus = NULL;
	}
}

int
main(void)
{
	const struct CMUnitTest local[] = {
	        cmocka_unit_test(test_cityhash_server_blocks_match),
	        cmocka_unit_test(test_cityhash_seed_and_lengths_consistent),
	        cmocka_unit_test(test_chblock_compress_decode_roundtrip_sizes),
	        cmocka_unit_test(test_chblock_bad_arguments_errors),
	        cmocka_unit_test(test_chblock_wrap_lz4_in_place_and_copied),
	        cmocka_unit_test(test_chblock_decode_hostile_named_errors),
	        cmocka_unit_test(test_bench_codecs_on_corpus_rows),
	};
	const struct CMUnitTest server[] = {
	        cmocka_unit_test(test_server_compressed_answers_decode),
	        cmocka_unit_test(test_server_accepts_framed_blocks_every_size),
	};
	int rc;

	load_globals();
	curl_global_init(CURL_GLOBAL_DEFAULT);
	rc = cmocka_run_group_tests_name("uplink/chblock", local, NULL, NULL);
	if (tl_test_ch_start(&srv) != 0) {
		fprintf(stderr, "no ClickHouse server (see %s): skipping the server tests\n",
		        srv.dir);
		tl_test_ch_destroy(&srv);
		rc = rc ? rc : 77;
	} else {
		rc |= cmocka_run_group_tests_name(
		        "uplink/chblock (clickhouse-server)", server, NULL, NULL);
		tl_test_ch_destroy(&srv);
	}
	tl_corpus_free(corpus);
	tl_schema_free(schema);
	curl_global_cleanup();
	return rc;
}
