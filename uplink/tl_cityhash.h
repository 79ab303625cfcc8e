/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * CityHash128 exactly as CityHash v1.0.2 defines it: the checksum of every block of
 * ClickHouse's native compressed framing (uplink/tl_chblock.h). Later CityHash versions
 * (1.0.3, 1.1) give different values, so neither a newer library nor a distribution
 * package can stand in for it. Pure, reentrant, no allocation.
 */
#ifndef TL_CITYHASH_H
#define TL_CITYHASH_H

#include <stddef.h>
#include <stdint.h>

/** A 128-bit hash as CityHash's uint128: lo is Uint128Low64, hi Uint128High64. */
struct tl_cityhash128 {
	uint64_t lo;
	uint64_t hi;
};

/**
 * CityHash128 v1.0.2 of [@p data, @p data + @p len). Reads the input as little-endian
 * words on any host.
 * @param data may be NULL when @p len is 0.
 */
struct tl_cityhash128 tl_cityhash128(const void *data, size_t len);

/**
 * CityHash128WithSeed v1.0.2 (what tl_cityhash128() reduces to); exposed for tests.
 */
struct tl_cityhash128 tl_cityhash128_seed(const void *data, size_t len, struct tl_cityhash128 seed);

#endif
