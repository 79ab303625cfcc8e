/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * ClickHouse's native compressed framing: what an HTTP request with `?decompress=1`
 * carries in its body and what `?compress=1` returns. A body is a sequence of blocks:
 *
 *     offset size
 *          0   16  checksum: CityHash128 v1.0.2 (tl_cityhash.h) of the next 9 + n bytes,
 *                  two little-endian uint64, low half first
 *         16    1  method: 0x82 LZ4, 0x02 none, 0x90 zstd
 *         17    4  u32 LE compressed size, the 9 header bytes included (9 + n)
 *         21    4  u32 LE uncompressed size
 *         25    n  compressed data (for LZ4, one LZ4 block)
 *
 * Blocks are a byte stream to ClickHouse: rows may span block boundaries, and a body
 * cut at a block boundary is a valid shorter stream (18.16 inserts such a prefix when a
 * client disconnects mid-body; see tl_ch.h). The server refuses a block whose
 * compressed size exceeds 1 GiB (TL_CHBLOCK_MAX_COMPRESSED).
 * This module writes LZ4 blocks of at most TL_CHBLOCK_MAX_RAW raw bytes (so an insert
 * is one block: see there) and reads LZ4 and uncompressed ones.
 *
 * Checked against ClickHouse 18.16 in tests/uplink/test_chblock.c: checksums and
 * contents of blocks the server produced, and inserts of blocks made here.
 *
 * Every function is reentrant and allocates nothing, except tl_chblock_bench().
 */
#ifndef TL_CHBLOCK_H
#define TL_CHBLOCK_H

#include <stddef.h>
#include <stdint.h>

#define TL_CHBLOCK_CHECKSUM_LEN 16
#define TL_CHBLOCK_HEADER_LEN 9
/** Bytes in front of a block's data: checksum + header. */
#define TL_CHBLOCK_OVERHEAD (TL_CHBLOCK_CHECKSUM_LEN + TL_CHBLOCK_HEADER_LEN)
/**
 * Largest raw size of one block tl_chblock_compress() writes (256 MiB): every insert the
 * uplink makes is one block. ClickHouse releases without the fix for its issue 9666
 * (18.16 among them) insert what they parsed when a request body stops early, so a body
 * of several blocks cut at a block boundary lands in part; one block cut anywhere fails
 * whole (the block is short). The server holds one block in memory while decoding it.
 */
#define TL_CHBLOCK_MAX_RAW (UINT32_C(256) << 20)
/** Largest compressed size (header included) ClickHouse accepts in one block. */
#define TL_CHBLOCK_MAX_COMPRESSED (UINT32_C(1) << 30)

#define TL_CHBLOCK_METHOD_NONE 0x02
#define TL_CHBLOCK_METHOD_LZ4 0x82
#define TL_CHBLOCK_METHOD_ZSTD 0x90

/**
 * @return bytes enough for tl_chblock_compress() of @p raw_len bytes; 0 if @p raw_len
 *         is too large to frame (beyond SIZE_MAX / 2).
 */
size_t tl_chblock_bound(size_t raw_len);

/**
 * Compress @p len bytes into LZ4 blocks of at most TL_CHBLOCK_MAX_RAW raw bytes each
 * (liblz4's LZ4_compress_default), framed and checksummed.
 * @param out  at least tl_chblock_bound(len) bytes guarantee success; must not overlap
 *             @p src.
 * @param out_len out: bytes written (0 for len 0: an empty stream).
 * @return 0; -EINVAL if @p src or @p out is NULL (with len > 0); -ENOSPC if @p cap is too
 *         small; -EOVERFLOW if @p len is beyond tl_chblock_bound()'s range.
 */
int tl_chblock_compress(const void *src, size_t len, void *out, size_t cap, size_t *out_len);

/**
 * Frame one LZ4 block compressed elsewhere (e.g. a spooled batch body, which is one
 * LZ4_compress_default block), without decompressing it: write the checksum and header
 * to @p out, then the block.
 *
 * The block is not decoded here: a corrupt block yields a well-formed frame that
 * ClickHouse refuses (code 271 CANNOT_DECOMPRESS, see tl_ch.h).
 *
 * @param lz4      the LZ4 block; may overlap @p out (it is moved first), in particular it
 *                 may already sit at out + TL_CHBLOCK_OVERHEAD, leaving only the 25
 *                 header bytes to write.
 * @param zlen     its length, > 0.
 * @param raw_len  what it decompresses to.
 * @param out      receives TL_CHBLOCK_OVERHEAD + zlen bytes.
 * @param out_len  out: TL_CHBLOCK_OVERHEAD + zlen.
 * @return 0; -EINVAL if a pointer is NULL or @p zlen is 0; -EFBIG if 9 + zlen exceeds
 *         TL_CHBLOCK_MAX_COMPRESSED or @p raw_len exceeds UINT32_MAX; -ENOSPC if @p cap
 *         is too small.
 */
int tl_chblock_wrap_lz4(
        const void *lz4, size_t zlen, size_t raw_len, void *out, size_t cap, size_t *out_len);

/**
 * Sum the uncompressed sizes of the blocks in [@p in, @p in + @p len) by walking their
 * headers (checksums are not verified): the output size tl_chblock_decode() needs.
 * @return 0 and *raw_len; the structural errors of tl_chblock_decode() (-ENODATA,
 *         -EPROTO) with *err_off set when @p err_off is not NULL.
 */
int tl_chblock_raw_size(const void *in, size_t len, size_t *raw_len, size_t *err_off);

/**
 * Decode framed blocks into their concatenated raw bytes, verifying every checksum
 * before using a block.
 * @param out      @p cap bytes; must not overlap @p in.
 * @param out_len  out: raw bytes written (valid up to the failing block on error).
 * @param err_off  NULL, or out: the offset in @p in of the block that failed.
 * @return 0 (an empty input decodes to nothing) or a named error
 *         (tl_chblock_strerror()):
 *         -ENODATA          the input ends inside a block (truncated);
 *         -EPROTO           impossible sizes in a header (compressed size below 9 or
 *                           above 1 GiB; an uncompressed block whose two sizes differ);
 *         -EBADMSG          checksum mismatch (corrupt block);
 *         -EPROTONOSUPPORT  a method other than LZ4 or none (zstd blocks are not
 *                           decoded here);
 *         -EILSEQ           the checksum matches but the LZ4 data does not decode to
 *                           the stated size;
 *         -ENOSPC           @p cap too small (see tl_chblock_raw_size());
 *         -EINVAL           a NULL pointer with a non-zero length.
 */
int tl_chblock_decode(
        const void *in, size_t len, void *out, size_t cap, size_t *out_len, size_t *err_off);

/**
 * @return a short description of an error of this module ("checksum mismatch",
 *         "truncated block", ...); tl_strerror()'s text for anything else. Static.
 */
const char *tl_chblock_strerror(int err);

/** Compression throughput of the uplink's codecs on one buffer (tl_chblock_bench()). */
struct tl_chblock_bench {
	double gzip_mb_s;  /**< libdeflate gzip level 1, raw MB/s (10^6 bytes) */
	double zstd_mb_s;  /**< libzstd level 1 (one frame) */
	double lz4_mb_s;   /**< tl_chblock_compress() (LZ4 + framing + CityHash128) */
	double gzip_ratio; /**< raw / compressed */
	double zstd_ratio;
	double lz4_ratio;
};

/**
 * Measure each codec compressing @p raw for about @p min_secs seconds (one core, single
 * thread). Allocates its buffers; not for the hot path.
 * @return 0; -EINVAL if @p len is 0; -ENOMEM; -EIO if a compressor fails.
 */
int tl_chblock_bench(const void *raw, size_t len, double min_secs, struct tl_chblock_bench *out);

#endif
