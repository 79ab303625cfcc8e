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

/** Add @p len bytes at @p p to a 32-bit running one's-complement sum (network order). */
static inline uint64_t
tl_cksum_add(uint64_t sum, const void *p, size_t len)
{
	const uint8_t *b = p;

	/* 8 bytes at a time into a 64-bit accumulator; carries fold at the end. */
	while (len >= 8) {
		uint64_t w;
		uint32_t hi, lo;

		memcpy(&w, b, 8);
		lo = (uint32_t)w;
		hi = (uint32_t)(w >> 32);
		sum += (uint64_t)lo + hi;
		b += 8;
		len -= 8;
	}
	while (len >= 2) {
		uint16_t w;

		memcpy(&w, b, 2);
		sum += w;
		b += 2;
		len -= 2;
	}
	if (len) {
		uint16_t w = 0;

		memcpy(&w, b, 1);
		sum += w;
	}
	return sum;
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
