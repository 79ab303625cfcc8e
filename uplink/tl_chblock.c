/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libdeflate.h>
#include <lz4.h>
#include <zstd.h>

#include "tl_chblock.h"
#include "tl_cityhash.h"
#include "tl_error.h"

static void
put32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
	p[2] = (unsigned char)(v >> 16);
	p[3] = (unsigned char)(v >> 24);
}

static void
put64(unsigned char *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

static uint32_t
get32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t
get64(const unsigned char *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

/* Header at b[16..25) and the data after it are in place: write the checksum over them.
 * The low half goes first: checked against blocks ClickHouse 18.16 wrote. */
static void
seal(unsigned char *b, uint8_t method, uint32_t zlen, uint32_t raw)
{
	struct tl_cityhash128 h;

	b[TL_CHBLOCK_CHECKSUM_LEN] = method;
	put32(b + TL_CHBLOCK_CHECKSUM_LEN + 1, TL_CHBLOCK_HEADER_LEN + zlen);
	put32(b + TL_CHBLOCK_CHECKSUM_LEN + 5, raw);
	h = tl_cityhash128(b + TL_CHBLOCK_CHECKSUM_LEN, TL_CHBLOCK_HEADER_LEN + (size_t)zlen);
	put64(b, h.lo);
	put64(b + 8, h.hi);
}

size_t
tl_chblock_bound(size_t raw_len)
{
	size_t blocks;

	if (raw_len > SIZE_MAX / 2)
		return 0;
	blocks = (raw_len + TL_CHBLOCK_MAX_RAW - 1) / TL_CHBLOCK_MAX_RAW;
	/* LZ4_compressBound(n) = n + n / 255 + 16 per block; the sum of the n / 255 terms
	 * is at most raw_len / 255. */
	return raw_len + raw_len / 255 + blocks * (16 + TL_CHBLOCK_OVERHEAD);
}

int
tl_chblock_compress(const void *src, size_t len, void *out, size_t cap, size_t *out_len)
{
	const char *s = src;
	unsigned char *o = out;
	size_t at = 0;

	*out_len = 0;
	if (len == 0)
		return 0;
	if (src == NULL || out == NULL)
		return -EINVAL;
	if (tl_chblock_bound(len) == 0)
		return -EOVERFLOW;
	while (len > 0) {
		size_t n = len < TL_CHBLOCK_MAX_RAW ? len : TL_CHBLOCK_MAX_RAW;
		size_t room = cap - at;
		int z;

		if (room <= TL_CHBLOCK_OVERHEAD)
			return -ENOSPC;
		room -= TL_CHBLOCK_OVERHEAD;
		/* LZ4 stops (returns 0) rather than overrun a short output. */
		z = LZ4_compress_default(s, (char *)o + at + TL_CHBLOCK_OVERHEAD, (int)n,
		        room > INT_MAX ? INT_MAX : (int)room);
		if (z <= 0)
			return -ENOSPC;
		seal(o + at, TL_CHBLOCK_METHOD_LZ4, (uint32_t)z, (uint32_t)n);
		at += TL_CHBLOCK_OVERHEAD + (size_t)z;
		s += n;
		len -= n;
	}
	*out_len = at;
	return 0;
}

int
tl_chblock_wrap_lz4(
        const void *lz4, size_t zlen, size_t raw_len, void *out, size_t cap, size_t *out_len)
{
	unsigned char *o = out;

	*out_len = 0;
	if (lz4 == NULL || out == NULL || zlen == 0)
		return -EINVAL;
	if (zlen > TL_CHBLOCK_MAX_COMPRESSED - TL_CHBLOCK_HEADER_LEN || raw_len > UINT32_MAX)
		return -EFBIG;
	if (cap < TL_CHBLOCK_OVERHEAD || cap - TL_CHBLOCK_OVERHEAD < zlen)
		return -ENOSPC;
	if ((const unsigned char *)lz4 != o + TL_CHBLOCK_OVERHEAD)
		memmove(o + TL_CHBLOCK_OVERHEAD, lz4, zlen);
	seal(o, TL_CHBLOCK_METHOD_LZ4, (uint32_t)zlen, (uint32_t)raw_len);
	*out_len = TL_CHBLOCK_OVERHEAD + zlen;
	return 0;
}

/* Check the block header at in[at]. @return 0 and its sizes, or a structural error. */
static int
block_at(const unsigned char *in, size_t len, size_t at, uint8_t *method, uint32_t *zlen,
        uint32_t *raw)
{
	uint32_t c;

	if (len - at < TL_CHBLOCK_OVERHEAD)
		return -ENODATA;
	*method = in[at + TL_CHBLOCK_CHECKSUM_LEN];
	c = get32(in + at + TL_CHBLOCK_CHECKSUM_LEN + 1);
	*raw = get32(in + at + TL_CHBLOCK_CHECKSUM_LEN + 5);
	if (c < TL_CHBLOCK_HEADER_LEN || c > TL_CHBLOCK_MAX_COMPRESSED)
		return -EPROTO;
	*zlen = c - TL_CHBLOCK_HEADER_LEN;
	if (len - at - TL_CHBLOCK_OVERHEAD < *zlen)
		return -ENODATA;
	return 0;
}

int
tl_chblock_raw_size(const void *in, size_t len, size_t *raw_len, size_t *err_off)
{
	const unsigned char *p = in;
	size_t at = 0, total = 0;

	*raw_len = 0;
	if (len > 0 && in == NULL)
		return -EINVAL;
	while (at < len) {
		uint8_t method;
		uint32_t zlen, raw;
		int rc = block_at(p, len, at, &method, &zlen, &raw);

		if (rc < 0) {
			if (err_off)
				*err_off = at;
			return rc;
		}
		total += raw;
		at += TL_CHBLOCK_OVERHEAD + zlen;
	}
	*raw_len = total;
	return 0;
}

int
tl_chblock_decode(
        const void *in, size_t len, void *out, size_t cap, size_t *out_len, size_t *err_off)
{
	const unsigned char *p = in;
	unsigned char *o = out;
	size_t at = 0, w = 0;
	int rc = 0;

	*out_len = 0;
	if ((len > 0 && in == NULL) || (cap > 0 && out == NULL))
		return -EINVAL;
	while (at < len) {
		struct tl_cityhash128 h;
		uint8_t method;
		uint32_t zlen, raw;
		const unsigned char *data;

		rc = block_at(p, len, at, &method, &zlen, &raw);
		if (rc < 0)
			break;
		/* The checksum first: a flipped method or size byte is corruption too. */
		h = tl_cityhash128(p + at + TL_CHBLOCK_CHECKSUM_LEN, TL_CHBLOCK_HEADER_LEN + zlen);
		if (h.lo != get64(p + at) || h.hi != get64(p + at + 8)) {
			rc = -EBADMSG;
			break;
		}
		data = p + at + TL_CHBLOCK_OVERHEAD;
		if (method == TL_CHBLOCK_METHOD_LZ4) {
			int n;

			if (cap - w < raw) {
				rc = -ENOSPC;
				break;
			}
			if (raw > INT_MAX || zlen > INT_MAX) {
				rc = -EPROTO;
				break;
			}
			n = LZ4_decompress_safe(
			        (const char *)data, (char *)o + w, (int)zlen, (int)raw);
			if (n < 0 || (uint32_t)n != raw) {
				rc = -EILSEQ;
				break;
			}
		} else if (method == TL_CHBLOCK_METHOD_NONE) {
			if (zlen != raw) {
				rc = -EPROTO;
				break;
			}
			if (cap - w < raw) {
				rc = -ENOSPC;
				break;
			}
			memcpy(o + w, data, raw);
		} else {
			rc = -EPROTONOSUPPORT;
			break;
		}
		w += raw;
		at += TL_CHBLOCK_OVERHEAD + zlen;
	}
	*out_len = w;
	if (rc < 0 && err_off)
		*err_off = at;
	return rc;
}

const char *
tl_chblock_strerror(int err)
{
	switch (err) {
	case 0:
		return "ok";
	case -ENODATA:
		return "truncated block";
	case -EPROTO:
		return "impossible block sizes";
	case -EBADMSG:
		return "checksum mismatch";
	case -EPROTONOSUPPORT:
		return "unsupported compression method";
	case -EILSEQ:
		return "LZ4 data does not decode to the stated size";
	case -ENOSPC:
		return "output buffer too small";
	case -EFBIG:
		return "block too large for the framing";
	default:
		return tl_strerror(err);
	}
}

/* ---- bench ------------------------------------------------------------------------- */

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int
tl_chblock_bench(const void *raw, size_t len, double min_secs, struct tl_chblock_bench *out)
{
	struct libdeflate_compressor *gz = NULL;
	ZSTD_CCtx *zc = NULL;
	size_t cap, n = 0;
	unsigned char *buf = NULL;
	int rc = -ENOMEM;

	memset(out, 0, sizeof(*out));
	if (raw == NULL || len == 0 || tl_chblock_bound(len) == 0)
		return -EINVAL;
	gz = libdeflate_alloc_compressor(1);
	zc = ZSTD_createCCtx();
	if (gz == NULL || zc == NULL)
		goto done;
	cap = libdeflate_gzip_compress_bound(gz, len);
	if (ZSTD_compressBound(len) > cap)
		cap = ZSTD_compressBound(len);
	if (tl_chblock_bound(len) > cap)
		cap = tl_chblock_bound(len);
	buf = malloc(cap);
	if (buf == NULL)
		goto done;
	if (ZSTD_isError(ZSTD_CCtx_setParameter(zc, ZSTD_c_compressionLevel, 1))) {
		rc = -EIO;
		goto done;
	}
	rc = -EIO;
	for (int codec = 0; codec < 3; codec++) {
		unsigned long iters = 0;
		double t0 = now_s(), t;

		do {
			if (codec == 0) {
				n = libdeflate_gzip_compress(gz, raw, len, buf, cap);
				if (n == 0)
					goto done;
			} else if (codec == 1) {
				n = ZSTD_compress2(zc, buf, cap, raw, len);
				if (ZSTD_isError(n))
					goto done;
			} else if (tl_chblock_compress(raw, len, buf, cap, &n) < 0) {
				goto done;
			}
			iters++;
		} while ((t = now_s() - t0) < min_secs);
		double mbs = (double)len * (double)iters / t / 1e6;
		double ratio = (double)len / (double)n;

		if (codec == 0) {
			out->gzip_mb_s = mbs;
			out->gzip_ratio = ratio;
		} else if (codec == 1) {
			out->zstd_mb_s = mbs;
			out->zstd_ratio = ratio;
		} else {
			out->lz4_mb_s = mbs;
			out->lz4_ratio = ratio;
		}
	}
	rc = 0;
done:
	free(buf);
	ZSTD_freeCCtx(zc);
	libdeflate_free_compressor(gz);
	return rc;
}
