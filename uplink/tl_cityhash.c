/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * CityHash128 v1.0.2, written for tapline from the published algorithm.
 *
 * CityHash is by Geoff Pike and Jyrki Alakuijala (Google, 2011, MIT licence). ClickHouse
 * checksums every block of its compressed framing with version 1.0.2 and keeps that
 * version frozen in its source tree (contrib/cityhash102) because 1.0.3 and 1.1 changed
 * the output. No Debian package ships CityHash 1.0.2 (ClickHouse's packages link their
 * copy in statically), hence this file. Verified against ClickHouse 18.16 itself:
 * tests/uplink/test_chblock.c checks the checksums of blocks the server compresses and has the
 * server verify blocks this file checksums, covering every branch a block reaches (a checksum
 * covers at least 10 bytes: 9 of header and one of data); the branches for 0..9 bytes follow the
 * same published code but no server ever checks them.
 *
 * Only the 128-bit function and what it needs are here. Words are read little-endian
 * whatever the host (ClickHouse runs little-endian; its checksums are defined by that).
 */
#include <string.h>

#include "tl_cityhash.h"

static const uint64_t k0 = 0xc3a5c85c97cb3127ULL;
static const uint64_t k1 = 0xb492b66fbe98f273ULL;
static const uint64_t k2 = 0x9ae16a3b2f90404fULL;
static const uint64_t k3 = 0xc949d7c7509e6557ULL;

static inline uint64_t
fetch64(const unsigned char *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap64(v);
#endif
	return v;
}

static inline uint32_t
fetch32(const unsigned char *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap32(v);
#endif
	return v;
}

/* Right rotation; a shift of 0 must not shift by 64 (undefined in C). */
static inline uint64_t
rot(uint64_t v, unsigned s)
{
	return s == 0 ? v : (v >> s) | (v << (64 - s));
}

static inline uint64_t
shift_mix(uint64_t v)
{
	return v ^ (v >> 47);
}

/* Hash128to64: Murmur-inspired mix of two words. */
static inline uint64_t
hash16(uint64_t u, uint64_t v)
{
	const uint64_t mul = 0x9ddfea08eb382d69ULL;
	uint64_t a = (u ^ v) * mul;
	uint64_t b;

	a ^= a >> 47;
	b = (v ^ a) * mul;
	b ^= b >> 47;
	return b * mul;
}

/* v1.0.2's HashLen0to16 (1.0.3 changed the 4..8 and 9..16 cases). */
static uint64_t
hash_len_0_to_16(const unsigned char *s, size_t len)
{
	if (len > 8) {
		uint64_t a = fetch64(s);
		uint64_t b = fetch64(s + len - 8);

		/* len is 9..16 here: the rotation is never by 0 */
		return hash16(a, rot(b + len, (unsigned)len)) ^ b;
	}
	if (len >= 4) {
		uint64_t a = fetch32(s);

		return hash16(len + (a << 3), fetch32(s + len - 4));
	}
	if (len > 0) {
		uint8_t a = s[0], b = s[len >> 1], c = s[len - 1];
		uint32_t y = (uint32_t)a + ((uint32_t)b << 8);
		uint32_t z = (uint32_t)len + ((uint32_t)c << 2);

		return shift_mix(y * k2 ^ z * k3) * k2;
	}
	return k2;
}

struct pair {
	uint64_t first, second;
};

/* WeakHashLen32WithSeeds over the 32 bytes at @p s. */
static inline struct pair
weak32(const unsigned char *s, uint64_t a, uint64_t b)
{
	uint64_t w = fetch64(s), x = fetch64(s + 8), y = fetch64(s + 16), z = fetch64(s + 24);
	uint64_t c;

	a += w;
	b = rot(b + a + z, 21);
	c = a;
	a += x;
	a += y;
	b += rot(a, 44);
	return (struct pair){a + z, b + c};
}

/* CityMurmur: inputs shorter than 128 bytes. */
static struct tl_cityhash128
city_murmur(const unsigned char *s, size_t len, struct tl_cityhash128 seed)
{
	uint64_t a = seed.lo, b = seed.hi, c, d;

	if (len <= 16) {
		a = shift_mix(a * k1) * k1;
		c = b * k1 + hash_len_0_to_16(s, len);
		d = shift_mix(a + (len >= 8 ? fetch64(s) : c));
	} else {
		/* 16-byte steps from the start while more than 16 bytes remain; the last
		 * 16 bytes were folded in through c and d. */
		size_t left = len - 16;

		c = hash16(fetch64(s + len - 8) + k1, a);
		d = hash16(b + len, c + fetch64(s + len - 16));
		a += d;
		for (;;) {
			a ^= shift_mix(fetch64(s) * k1) * k1;
			a *= k1;
			b ^= a;
			c ^= shift_mix(fetch64(s + 8) * k1) * k1;
			c *= k1;
			d ^= c;
			s += 16;
			if (left <= 16)
				break;
			left -= 16;
		}
	}
	a = hash16(a, c);
	b = hash16(d, b);
	return (struct tl_cityhash128){a ^ b, hash16(b, a)};
}

/* One 64-byte round of the long-input loop. */
static inline void
round64(const unsigned char *s, uint64_t *x, uint64_t *y, uint64_t *z, struct pair *v,
        struct pair *w)
{
	uint64_t t;

	*x = rot(*x + *y + v->first + fetch64(s + 16), 37) * k1;
	*y = rot(*y + v->second + fetch64(s + 48), 42) * k1;
	*x ^= w->second;
	*y ^= v->first;
	*z = rot(*z ^ w->first, 33);
	*v = weak32(s, v->second * k1, *x + w->first);
	*w = weak32(s + 32, *z + w->second, *y);
	t = *z;
	*z = *x;
	*x = t;
}

struct tl_cityhash128
tl_cityhash128_seed(const void *data, size_t len, struct tl_cityhash128 seed)
{
	const unsigned char *s = data;
	struct pair v, w;
	uint64_t x, y, z;

	if (len < 128)
		return city_murmur(s, len, seed);
	x = seed.lo;
	y = seed.hi;
	z = len * k1;
	v.first = rot(y ^ k1, 49) * k1 + fetch64(s);
	v.second = rot(v.first, 42) * k1 + fetch64(s + 8);
	w.first = rot(y + z, 35) * k1 + x;
	w.second = rot(x + fetch64(s + 88), 53) * k1;
	do {
		round64(s, &x, &y, &z, &v, &w);
		s += 64;
		round64(s, &x, &y, &z, &v, &w);
		s += 64;
		len -= 128;
	} while (len >= 128);
	y += rot(w.first, 37) * k0 + z;
	x += rot(v.first + z, 49) * k0;
	/* 0..127 bytes left: up to four 32-byte chunks taken back from the end. In 1.0.2 the
	 * chunks may reach before s (already hashed bytes), which is what makes the tail
	 * read in bounds: len >= 128 held at the start. */
	for (size_t done = 0; done < len;) {
		done += 32;
		y = rot(y - x, 42) * k0 + v.second;
		w.first += fetch64(s + len - done + 16);
		x = rot(x, 49) * k0 + w.first;
		w.first += v.first;
		v = weak32(s + len - done, v.first, v.second);
	}
	x = hash16(x, v.first);
	y = hash16(y, w.first);
	return (struct tl_cityhash128){
	        hash16(x + v.second, w.second) + y, hash16(x + w.second, y + v.second)};
}

struct tl_cityhash128
tl_cityhash128(const void *data, size_t len)
{
	const unsigned char *s = data;

	if (len >= 16)
		return tl_cityhash128_seed(
		        s + 16, len - 16, (struct tl_cityhash128){fetch64(s) ^ k3, fetch64(s + 8)});
	if (len >= 8)
		return tl_cityhash128_seed(NULL, 0,
		        (struct tl_cityhash128){
		                fetch64(s) ^ (len * k0), fetch64(s + len - 8) ^ k1});
	return tl_cityhash128_seed(s, len, (struct tl_cityhash128){k0, k1});
}
