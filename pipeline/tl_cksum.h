/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * Internet checksum (RFC 1071) helpers, used by the decoder to verify and by the
 * generator to build packets. Pure functions, inline, no state.
 */
#ifndef TL_CKSUM_H
#define TL_CKSUM_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/**
 * Add @p len bytes at @p p to a running one's-complement sum (network order). Only the
 * last chunk added to one sum may have an odd length.
 */
static inline uint64_t
tl_cksum_add(uint64_t sum, const void *p, size_t len)
{
	const uint8_t *b = p;
	uint64_t s0 = 0, s1 = 0, c0 = 0, c1 = 0;

	/* Two independent 64-bit one's-complement accumulators: a carry out of bit 63 is
	 * worth 1 (2^64 = 1 mod 0xffff), counted separately so the adds do not form one
	 * long dependency chain. */
	while (len >= 16) {
		uint64_t w0, w1;

		memcpy(&w0, b, 8);
		memcpy(&w1, b + 8, 8);
		s0 += w0;
		c0 += s0 < w0;
		s1 += w1;
		c1 += s1 < w1;
		b += 16;
		len -= 16;
	}
	if (len >= 8) {
		uint64_t w;

		memcpy(&w, b, 8);
		s0 += w;
		c0 += s0 < w;
		b += 8;
		len -= 8;
	}
	if (len) {
		uint64_t w = 0;

		/* Zero-padded tail (little-endian: the first byte is the low byte). */
		memcpy(&w, b, len);
		s1 += w;
		c1 += s1 < w;
	}
	/* Fold everything to 32 bits plus carries: no sum below can wrap. */
	return (sum & 0xffffffffu) + (sum >> 32) + (s0 & 0xffffffffu) + (s0 >> 32) +
	       (s1 & 0xffffffffu) + (s1 >> 32) + c0 + c1;
}

/** Fold a running sum to 16 bits and complement it: the value to store (network order). */
static inline uint16_t
tl_cksum_fold(uint64_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

/** Checksum of one buffer (e.g. an IPv4 header); 0 when verifying a correct header. */
static inline uint16_t
tl_cksum(const void *p, size_t len)
{
	return tl_cksum_fold(tl_cksum_add(0, p, len));
}

/**
 * UDP/TCP checksum over the IPv4 or IPv6 pseudo-header and @p l4 (with its checksum
 * field as it is). @p addr_len is 4 or 16; @p src and @p dst are network-order addresses.
 * @return 0 when verifying a correct datagram; the value to store when the field was 0.
 */
static inline uint16_t
tl_cksum_l4(const void *src, const void *dst, size_t addr_len, uint8_t proto, const void *l4,
		uint32_t l4_len)
{
	uint64_t sum = 0;
	uint8_t tail[8] = {0};

	sum = tl_cksum_add(sum, src, addr_len);
	sum = tl_cksum_add(sum, dst, addr_len);
	tail[2] = (uint8_t)(l4_len >> 8 >> 16);
	tail[3] = (uint8_t)(l4_len >> 16);
	tail[4] = (uint8_t)(l4_len >> 8);
	tail[5] = (uint8_t)l4_len;
	tail[7] = proto;
	/* IPv4 pseudo-header: zero, proto, 16-bit length; IPv6: 32-bit length, 3 zero, next.
	 * Both sum to the same 16-bit words when laid out as below. */
	sum = tl_cksum_add(sum, tail + 2, 6);
	sum = tl_cksum_add(sum, l4, l4_len);
	return tl_cksum_fold(sum);
}

#endif
