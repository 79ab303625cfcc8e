/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Tests for tl_peer_from() / tl_reply_build(). Requests are built here, decoded by the
 * real decoder, turned into a peer and a reply, and the reply is decoded again with
 * software checksum verification (hw_flags 0), so a reply the decoder would drop fails.
 * Payloads are pseudo-random bytes rather than text: every byte value reaches the
 * checksum. Replies are written to exact-size heap buffers so ASan catches an overrun.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tl_cksum.h"
#include "tl_decode.h"
#include "tl_reply.h"

#define MAX_FRAME 2048
#define BIG_FRAME (65535 + 64)
#define SPORT 40001
#define DPORT 5170

static const uint8_t mac_dst[6] = {0x02, 0x00, 0x00, 0x00, 0x00, 0x01}; /* tapline */
static const uint8_t mac_src[6] = {0x02, 0x00, 0x00, 0x00, 0x00, 0x02}; /* producer */
static const uint8_t src4[4] = {192, 0, 2, 1};
static const uint8_t dst4[4] = {198, 51, 100, 7};
static const uint8_t src6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x11};
static const uint8_t dst6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x22};

/* ---- request builder ---- */

struct req {
	uint8_t b[MAX_FRAME];
	uint32_t len;
	uint32_t l2_len;
};

static void
wr16(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static uint16_t
rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static void
fill_payload(uint8_t *p, uint32_t n, uint32_t seed)
{
	for (uint32_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		p[i] = (uint8_t)(seed >> 16);
	}
}

/*
 * A UDP request from the producer (src4/src6, SPORT) to tapline (dst4/dst6, DPORT) with
 * @p ntags tags: TPIDs from @p tpids, TCIs from @p tcis. Checksums correct.
 */
static void
build_req(struct req *r, int ipv, unsigned ntags, const uint16_t *tpids, const uint16_t *tcis,
        const uint8_t *payload, uint32_t plen)
{
	uint32_t o = 12, alen = ipv == 4 ? 4 : 16, ulen = 8 + plen;
	uint8_t *ip, *udp;
	uint16_t c;

	memset(r, 0, sizeof(*r));
	memcpy(r->b, mac_dst, 6);
	memcpy(r->b + 6, mac_src, 6);
	for (unsigned i = 0; i < ntags; i++) {
		wr16(r->b + o, tpids[i]);
		wr16(r->b + o + 2, tcis[i]);
		o += 4;
	}
	wr16(r->b + o, ipv == 4 ? 0x0800 : 0x86dd);
	r->l2_len = o + 2;
	ip = r->b + r->l2_len;
	udp = ip + (ipv == 4 ? 20 : 40);
	wr16(udp, SPORT);
	wr16(udp + 2, DPORT);
	wr16(udp + 4, ulen);
	memcpy(udp + 8, payload, plen);
	if (ipv == 4) {
		ip[0] = 0x45;
		wr16(ip + 2, 20 + ulen);
		wr16(ip + 4, 0x4321);
		wr16(ip + 6, 0x4000); /* DF: the reply must clear it */
		ip[8] = 3;            /* a low TTL: the reply must not copy it */
		ip[9] = 17;
		memcpy(ip + 12, src4, 4);
		memcpy(ip + 16, dst4, 4);
		c = tl_cksum(ip, 20);
		memcpy(ip + 10, &c, 2);
	} else {
		ip[0] = 0x6b; /* traffic class / flow label set: the reply must not copy them */
		ip[1] = 0xcd;
		wr16(ip + 4, ulen);
		ip[6] = 17;
		ip[7] = 3;
		memcpy(ip + 8, src6, 16);
		memcpy(ip + 24, dst6, 16);
	}
	c = tl_cksum_l4(ipv == 4 ? src4 : src6, ipv == 4 ? dst4 : dst6, alen, 17, udp, ulen);
	if (c == 0)
		c = 0xffff;
	memcpy(udp + 6, &c, 2);
	r->len = (uint32_t)(udp - r->b) + ulen;
}

/* Decode @p r as the pipeline does and make its peer. */
static void
peer_of(const struct req *r, struct tl_peer *p)
{
	struct tl_l3_view l3;
	struct tl_udp_view u;

	assert_int_equal(tl_decode_frame(r->b, r->len, 0, &l3), TL_REASON_OK);
	assert_int_equal(tl_decode_udp(&l3, l3.l4, l3.l4_len, false, &u), TL_REASON_OK);
	assert_int_equal(tl_peer_from(p, r->b, r->len, &l3, u.sport, u.dport), 0);
}

/*
 * Build the reply to @p p in an exact-size heap buffer, decode it with software
 * checksums and check every swapped field and the payload. @return the frame length.
 */
static long
reply_check(const struct tl_peer *p, const uint8_t *payload, uint32_t plen)
{
	const uint32_t ipv = p->ip_version, alen = ipv == 4 ? 4 : 16;
	const size_t cap = (size_t)p->l2_len + (ipv == 4 ? 20 : 40) + 8 + plen;
	uint8_t *out = malloc(cap);
	struct tl_l3_view l3;
	struct tl_udp_view u;
	const uint8_t *ip;
	long n;

	assert_non_null(out);
	n = tl_reply_build(p, payload, plen, 65535, out, cap);
	assert_int_equal(n, (long)cap);
	assert_int_equal(tl_decode_frame(out, (uint32_t)n, 0, &l3), TL_REASON_OK);
	assert_int_equal(l3.ip_version, ipv);
	assert_int_equal(l3.is_fragment, 0);
	assert_memory_equal(l3.src, ipv == 4 ? dst4 : dst6, alen);
	assert_memory_equal(l3.dst, ipv == 4 ? src4 : src6, alen);
	assert_int_equal(tl_decode_udp(&l3, l3.l4, l3.l4_len, false, &u), TL_REASON_OK);
	assert_int_equal(u.sport, DPORT);
	assert_int_equal(u.dport, SPORT);
	assert_int_equal(u.len, plen);
	if (plen)
		assert_memory_equal(u.payload, payload, plen);
	/* Never "no checksum", over IPv4 either. */
	assert_int_not_equal(rd16(l3.l4 + 6), 0);

	/* Link layer: MACs swapped, tags and EtherType byte for byte. */
	assert_memory_equal(out, p->l2 + 6, 6);
	assert_memory_equal(out + 6, p->l2, 6);
	assert_memory_equal(out + 12, p->l2 + 12, p->l2_len - 12u);

	ip = out + p->l2_len;
	if (ipv == 4) {
		assert_int_equal(ip[0], 0x45);
		assert_int_equal(ip[1], 0);
		assert_int_equal(rd16(ip + 4), 0); /* id */
		assert_int_equal(rd16(ip + 6), 0); /* DF clear */
		assert_int_equal(ip[8], 64);       /* TTL */
		assert_int_equal(ip[9], 17);
		assert_int_equal(tl_cksum(ip, 20), 0); /* header checksum verifies */
	} else {
		assert_int_equal(ip[0], 0x60);
		assert_int_equal(ip[1] | ip[2] | ip[3], 0);
		assert_int_equal(ip[6], 17);
		assert_int_equal(ip[7], 64); /* hop limit */
	}
	free(out);
	return n;
}

static void
round_trip(int ipv, unsigned ntags, const uint16_t *tpids, const uint16_t *tcis, uint32_t plen)
{
	uint8_t payload[1500], ack[64];
	struct req r;
	struct tl_peer p;

	fill_payload(payload, plen, plen * 31u + (uint32_t)ipv);
	fill_payload(ack, sizeof(ack), 7);
	build_req(&r, ipv, ntags, tpids, tcis, payload, plen);
	peer_of(&r, &p);
	assert_int_equal(p.l2_len, r.l2_len);
	assert_memory_equal(p.l2, r.b, r.l2_len);
	assert_int_equal(p.ip_version, ipv);
	assert_int_equal(p.sport, SPORT);
	assert_int_equal(p.dport, DPORT);
	assert_memory_equal(p.src, ipv == 4 ? src4 : src6, ipv == 4 ? 4 : 16);
	assert_memory_equal(p.dst, ipv == 4 ? dst4 : dst6, ipv == 4 ? 4 : 16);
	reply_check(&p, ack, sizeof(ack));
}

/* ---- round trips ---- */

static void
test_reply_ipv4_untagged_swapped(void **state)
{
	(void)state;
	round_trip(4, 0, NULL, NULL, 300);
}

static void
test_reply_ipv6_untagged_swapped(void **state)
{
	(void)state;
	round_trip(6, 0, NULL, NULL, 300);
}

static void
test_reply_ipv4_single_vlan_tag_kept(void **state)
{
	static const uint16_t tpid[1] = {0x8100}, tci[1] = {(5u << 13) | (1u << 12) | 100};

	(void)state;
	round_trip(4, 1, tpid, tci, 120);
}

static void
test_reply_ipv6_single_vlan_tag_kept(void **state)
{
	static const uint16_t tpid[1] = {0x8100}, tci[1] = {(3u << 13) | 4094};

	(void)state;
	round_trip(6, 1, tpid, tci, 120);
}

static void
test_reply_ipv4_qinq_tags_kept(void **state)
{
	static const uint16_t tpid[2] = {0x88a8, 0x8100};
	static const uint16_t tci[2] = {(6u << 13) | 10, (2u << 13) | 200};

	(void)state;
	round_trip(4, 2, tpid, tci, 77);
}

static void
test_reply_ipv6_qinq_tags_kept(void **state)
{
	static const uint16_t tpid[2] = {0x88a8, 0x8100};
	static const uint16_t tci[2] = {(7u << 13) | 1, (1u << 13) | 4000};

	(void)state;
	round_trip(6, 2, tpid, tci, 77);
}

/* The decoder takes the legacy 0x9100 TPID too; such a peer must not be refused. */
static void
test_reply_legacy_qinq_tpid_kept(void **state)
{
	static const uint16_t tpid[2] = {0x9100, 0x8100}, tci[2] = {30, 40};

	(void)state;
	round_trip(4, 2, tpid, tci, 10);
	round_trip(6, 2, tpid, tci, 10);
}

/* VID 0 (a priority tag) is still a tag: the header is 18 bytes, not 14. */
static void
test_peer_priority_tag_vid0_kept(void **state)
{
	static const uint16_t tpid[1] = {0x8100}, tci[1] = {6u << 13};
	uint8_t payload[16] = {0};
	struct req r;
	struct tl_peer p;

	(void)state;
	build_req(&r, 4, 1, tpid, tci, payload, sizeof(payload));
	peer_of(&r, &p);
	assert_int_equal(p.l2_len, 18);
	assert_int_equal(rd16(p.l2 + 14), 6u << 13);
	reply_check(&p, payload, sizeof(payload));
}

/* The reply to the reply carries the request's link header again. */
static void
test_reply_of_reply_restores_request_header(void **state)
{
	static const uint16_t tpid[2] = {0x88a8, 0x8100}, tci[2] = {(6u << 13) | 10, 200};
	uint8_t payload[40], out[256], out2[256];
	struct tl_peer p, p2;
	struct tl_l3_view l3;
	struct tl_udp_view u;
	struct req r;
	long n, n2;

	(void)state;
	fill_payload(payload, sizeof(payload), 3);
	build_req(&r, 6, 2, tpid, tci, payload, sizeof(payload));
	peer_of(&r, &p);
	n = tl_reply_build(&p, payload, sizeof(payload), 1500, out, sizeof(out));
	assert_true(n > 0);
	assert_int_equal(tl_decode_frame(out, (uint32_t)n, 0, &l3), TL_REASON_OK);
	assert_int_equal(tl_decode_udp(&l3, l3.l4, l3.l4_len, false, &u), TL_REASON_OK);
	assert_int_equal(tl_peer_from(&p2, out, (uint32_t)n, &l3, u.sport, u.dport), 0);
	n2 = tl_reply_build(&p2, payload, sizeof(payload), 1500, out2, sizeof(out2));
	assert_int_equal(n2, n);
	assert_memory_equal(out2, r.b, r.l2_len);
	assert_memory_equal(p2.src, dst6, 16);
	assert_int_equal(p2.sport, DPORT);
}

/* ---- payload lengths ---- */

static void
test_reply_odd_and_even_payload_lengths_checksum_valid(void **state)
{
	static const uint16_t tpid[1] = {0x8100}, tci[1] = {100};
	uint8_t payload[1500] = {0};
	struct req r;
	struct tl_peer p4, p6, p4t;

	(void)state;
	build_req(&r, 4, 0, NULL, NULL, payload, 0);
	peer_of(&r, &p4);
	build_req(&r, 6, 0, NULL, NULL, payload, 0);
	peer_of(&r, &p6);
	build_req(&r, 4, 1, tpid, tci, payload, 0);
	peer_of(&r, &p4t);
	/* Every length up to 70 covers each tail size of the checksum's 16/8-byte loop. */
	for (uint32_t n = 1; n <= 70; n++) {
		fill_payload(payload, n, n);
		reply_check(&p4, payload, n);
		reply_check(&p6, payload, n);
		reply_check(&p4t, payload, n);
	}
	fill_payload(payload, 1471, 1471);
	reply_check(&p4, payload, 1471);
	reply_check(&p6, payload, 1451);
}

static void
test_reply_zero_length_payload_valid(void **state)
{
	uint8_t dummy = 0xee;
	struct req r;
	struct tl_peer p;

	(void)state;
	build_req(&r, 4, 0, NULL, NULL, &dummy, 1);
	peer_of(&r, &p);
	assert_int_equal(reply_check(&p, NULL, 0), 14 + 20 + 8);
	assert_int_equal(reply_check(&p, &dummy, 0), 14 + 20 + 8);
	build_req(&r, 6, 0, NULL, NULL, &dummy, 1);
	peer_of(&r, &p);
	assert_int_equal(reply_check(&p, NULL, 0), 14 + 40 + 8);
}

/*
 * A datagram whose checksum computes to 0 is sent with 0xffff. The first reply's checksum
 * c, put into a 2-byte payload that was 0, turns the sum into 0xffff (one's complement
 * x + ~x): the second reply's checksum computes to 0.
 */
static void
zero_checksum_case(int ipv)
{
	uint8_t payload[2] = {0, 0}, out[128];
	struct tl_peer p;
	struct req r;
	uint32_t off;
	long n;

	build_req(&r, ipv, 0, NULL, NULL, payload, sizeof(payload));
	peer_of(&r, &p);
	off = 14 + (ipv == 4 ? 20 : 40);
	n = tl_reply_build(&p, payload, sizeof(payload), 1500, out, sizeof(out));
	assert_int_equal(n, off + 10);
	memcpy(payload, out + off + 6, 2);
	reply_check(&p, payload, sizeof(payload));
	n = tl_reply_build(&p, payload, sizeof(payload), 1500, out, sizeof(out));
	assert_int_equal(n, off + 10);
	assert_int_equal(rd16(out + off + 6), 0xffff);
}

static void
test_reply_checksum_computing_zero_sent_as_ffff(void **state)
{
	(void)state;
	zero_checksum_case(4);
	zero_checksum_case(6);
}

/* A payload already in place in @c out (zero-copy building) survives. */
static void
test_reply_payload_in_place_kept(void **state)
{
	uint8_t out[256], payload[100] = {0};
	struct tl_peer p;
	struct req r;
	long n;

	(void)state;
	build_req(&r, 4, 0, NULL, NULL, payload, 4);
	peer_of(&r, &p);
	fill_payload(payload, sizeof(payload), 99);
	memcpy(out + 14 + 20 + 8, payload, sizeof(payload));
	n = tl_reply_build(&p, out + 14 + 20 + 8, sizeof(payload), 1500, out, sizeof(out));
	assert_int_equal(n, 14 + 20 + 8 + 100);
	assert_memory_equal(out + 42, payload, sizeof(payload));
	assert_int_equal(reply_check(&p, payload, sizeof(payload)), n);
}

/* ---- size limits ---- */

static void
test_reply_mtu_exact_fits_one_more_emsgsize(void **state)
{
	uint8_t *payload = calloc(1, 1500), *out = malloc(MAX_FRAME);
	struct tl_peer p4, p6;
	struct req r;

	(void)state;
	assert_non_null(payload);
	assert_non_null(out);
	build_req(&r, 4, 0, NULL, NULL, payload, 1);
	peer_of(&r, &p4);
	build_req(&r, 6, 0, NULL, NULL, payload, 1);
	peer_of(&r, &p6);
	assert_int_equal(tl_reply_build(&p4, payload, 1472, 1500, out, MAX_FRAME), 14 + 1500);
	assert_int_equal(tl_reply_build(&p4, payload, 1473, 1500, out, MAX_FRAME), -EMSGSIZE);
	assert_int_equal(tl_reply_build(&p6, payload, 1452, 1500, out, MAX_FRAME), 14 + 1500);
	assert_int_equal(tl_reply_build(&p6, payload, 1453, 1500, out, MAX_FRAME), -EMSGSIZE);
	/* An MTU below the bare headers fits nothing, not even an empty datagram. */
	assert_int_equal(tl_reply_build(&p4, NULL, 0, 27, out, MAX_FRAME), -EMSGSIZE);
	assert_int_equal(tl_reply_build(&p4, NULL, 0, 28, out, MAX_FRAME), 14 + 28);
	assert_int_equal(tl_reply_build(&p6, NULL, 0, 47, out, MAX_FRAME), -EMSGSIZE);
	assert_int_equal(tl_reply_build(&p4, NULL, 0, 0, out, MAX_FRAME), -EMSGSIZE);
	/* Too big takes precedence over too small a buffer: the caller cannot fix it. */
	assert_int_equal(tl_reply_build(&p4, payload, 1473, 1500, out, 10), -EMSGSIZE);
	free(payload);
	free(out);
}

/* Length fields are 16 bits: a large MTU does not let a datagram overflow them. */
static void
test_reply_length_fields_limit_emsgsize(void **state)
{
	uint8_t *payload = calloc(1, 65536), *out = malloc(BIG_FRAME);
	struct tl_peer p4, p6;
	struct tl_l3_view l3;
	struct tl_udp_view u;
	struct req r;
	long n;

	(void)state;
	assert_non_null(payload);
	assert_non_null(out);
	fill_payload(payload, 65536, 5);
	build_req(&r, 4, 0, NULL, NULL, payload, 1);
	peer_of(&r, &p4);
	build_req(&r, 6, 0, NULL, NULL, payload, 1);
	peer_of(&r, &p6);
	/* IPv4 total length 65535 is the largest. */
	n = tl_reply_build(&p4, payload, 65535 - 28, UINT32_MAX, out, BIG_FRAME);
	assert_int_equal(n, 14 + 65535);
	assert_int_equal(tl_decode_frame(out, (uint32_t)n, 0, &l3), TL_REASON_OK);
	assert_int_equal(tl_decode_udp(&l3, l3.l4, l3.l4_len, false, &u), TL_REASON_OK);
	assert_int_equal(u.len, 65535 - 28);
	assert_int_equal(
	        tl_reply_build(&p4, payload, 65535 - 27, UINT32_MAX, out, BIG_FRAME), -EMSGSIZE);
	/* IPv6: the UDP length (= payload length) is the limit. */
	n = tl_reply_build(&p6, payload, 65535 - 8, UINT32_MAX, out, BIG_FRAME);
	assert_int_equal(n, 14 + 40 + 65535);
	assert_int_equal(tl_decode_frame(out, (uint32_t)n, 0, &l3), TL_REASON_OK);
	assert_int_equal(tl_decode_udp(&l3, l3.l4, l3.l4_len, false, &u), TL_REASON_OK);
	assert_int_equal(u.len, 65535 - 8);
	assert_int_equal(
	        tl_reply_build(&p6, payload, 65535 - 7, UINT32_MAX, out, BIG_FRAME), -EMSGSIZE);
	/* A length near 2^32 must not wrap into something that fits (never read). */
	assert_int_equal(
	        tl_reply_build(&p4, payload, UINT32_MAX, UINT32_MAX, out, BIG_FRAME), -EMSGSIZE);
	assert_int_equal(tl_reply_build(&p6, payload, UINT32_MAX - 20, UINT32_MAX, out, BIG_FRAME),
	        -EMSGSIZE);
	free(payload);
	free(out);
}

static void
test_reply_buffer_one_short_enospc(void **state)
{
	static const uint16_t tpid[2] = {0x88a8, 0x8100}, tci[2] = {1, 2};
	uint8_t payload[33];
	struct tl_peer p;
	struct req r;
	size_t need = 22 + 40 + 8 + sizeof(payload);
	uint8_t *out = malloc(need);

	(void)state;
	assert_non_null(out);
	fill_payload(payload, sizeof(payload), 1);
	build_req(&r, 6, 2, tpid, tci, payload, 1);
	peer_of(&r, &p);
	/* The exact size works, in an exact-size buffer (ASan: no byte written past it). */
	assert_int_equal(tl_reply_build(&p, payload, sizeof(payload), 1500, out, need), (long)need);
	memset(out, 0x5a, need);
	assert_int_equal(
	        tl_reply_build(&p, payload, sizeof(payload), 1500, out, need - 1), -ENOSPC);
	assert_int_equal(tl_reply_build(&p, payload, sizeof(payload), 1500, out, 0), -ENOSPC);
	/* Refused means untouched. */
	for (size_t i = 0; i < need; i++)
		assert_int_equal(out[i], 0x5a);
	free(out);
}

/* ---- bad peers and arguments ---- */

static void
good_peer(struct tl_peer *p, int ipv, unsigned ntags)
{
	static const uint16_t tpid[2] = {0x88a8, 0x8100}, tci[2] = {11, 22};
	uint8_t payload[4] = {1, 2, 3, 4};
	struct req r;

	build_req(&r, ipv, ntags, tpid, tci, payload, sizeof(payload));
	peer_of(&r, p);
}

static void
test_reply_bad_l2_len_einval(void **state)
{
	static const uint8_t bad[] = {0, 1, 12, 13, 15, 16, 17, 19, 20, 21, 23, 26, 255};
	uint8_t out[256];
	struct tl_peer p;

	(void)state;
	for (size_t i = 0; i < sizeof(bad); i++) {
		good_peer(&p, 4, 0);
		p.l2_len = bad[i];
		assert_int_equal(tl_reply_build(&p, NULL, 0, 1500, out, sizeof(out)), -EINVAL);
	}
	/* 14 with a tag's bytes behind it: the EtherType slot now holds a TPID. */
	good_peer(&p, 4, 1);
	p.l2_len = 14;
	assert_int_equal(tl_reply_build(&p, NULL, 0, 1500, out, sizeof(out)), -EINVAL);
	/* 22 claimed for a one-tag header: the second "tag" is the EtherType. */
	good_peer(&p, 4, 1);
	p.l2_len = 22;
	assert_int_equal(tl_reply_build(&p, NULL, 0, 1500, out, sizeof(out)), -EINVAL);
}

static void
test_reply_bad_ip_version_einval(void **state)
{
	static const uint8_t bad[] = {0, 1, 5, 7, 46, 255};
	uint8_t out[256];
	struct tl_peer p;

	(void)state;
	for (size_t i = 0; i < sizeof(bad); i++) {
		good_peer(&p, 4, 0);
		p.ip_version = bad[i];
		assert_int_equal(tl_reply_build(&p, NULL, 0, 1500, out, sizeof(out)), -EINVAL);
	}
	/* Version and EtherType must agree. */
	good_peer(&p, 4, 2);
	p.ip_version = 6;
	assert_int_equal(tl_reply_build(&p, NULL, 0, 1500, out, sizeof(out)), -EINVAL);
	good_peer(&p, 6, 0);
	p.ip_version = 4;
	assert_int_equal(tl_reply_build(&p, NULL, 0, 1500, out, sizeof(out)), -EINVAL);
}

static void
test_reply_bad_tag_or_ethertype_einval(void **state)
{
	uint8_t out[256];
	struct tl_peer p;

	(void)state;
	good_peer(&p, 4, 2);
	wr16(p.l2 + 12, 0x0800); /* outer TPID damaged */
	assert_int_equal(tl_reply_build(&p, NULL, 0, 1500, out, sizeof(out)), -EINVAL);
	good_peer(&p, 6, 2);
	wr16(p.l2 + 16, 0x86dd); /* inner TPID damaged */
	assert_int_equal(tl_reply_build(&p, NULL, 0, 1500, out, sizeof(out)), -EINVAL);
	good_peer(&p, 4, 0);
	wr16(p.l2 + 12, 0x0806); /* ARP */
	assert_int_equal(tl_reply_build(&p, NULL, 0, 1500, out, sizeof(out)), -EINVAL);
}

static void
test_reply_null_args_einval(void **state)
{
	uint8_t out[256], payload[4] = {0};
	struct tl_peer p;

	(void)state;
	good_peer(&p, 4, 0);
	assert_int_equal(tl_reply_build(NULL, payload, 4, 1500, out, sizeof(out)), -EINVAL);
	assert_int_equal(tl_reply_build(&p, payload, 4, 1500, NULL, sizeof(out)), -EINVAL);
	assert_int_equal(tl_reply_build(&p, NULL, 4, 1500, out, sizeof(out)), -EINVAL);
	/* Arguments are judged before sizes. */
	p.l2_len = 0;
	assert_int_equal(tl_reply_build(&p, payload, 4, 0, out, 0), -EINVAL);
}

/* ---- tl_peer_from() refusals ---- */

static void
decode_req(struct req *r, int ipv, unsigned ntags, struct tl_l3_view *l3)
{
	static const uint16_t tpid[2] = {0x88a8, 0x8100}, tci[2] = {(1u << 13) | 11, 22};
	uint8_t payload[8] = {0};

	build_req(r, ipv, ntags, tpid, tci, payload, sizeof(payload));
	assert_int_equal(tl_decode_frame(r->b, r->len, 0, l3), TL_REASON_OK);
}

static void
test_peer_from_null_or_short_einval(void **state)
{
	struct tl_l3_view l3;
	struct tl_peer p;
	struct req r;

	(void)state;
	decode_req(&r, 4, 0, &l3);
	assert_int_equal(tl_peer_from(NULL, r.b, r.len, &l3, 1, 2), -EINVAL);
	assert_int_equal(tl_peer_from(&p, NULL, r.len, &l3, 1, 2), -EINVAL);
	assert_int_equal(tl_peer_from(&p, r.b, r.len, NULL, 1, 2), -EINVAL);
	for (uint32_t len = 0; len < 14 + 16; len++) {
		/* Exact-size copies: ASan reports any read past the length given. */
		uint8_t *copy = malloc(len ? len : 1);

		assert_non_null(copy);
		memcpy(copy, r.b, len);
		assert_int_equal(tl_peer_from(&p, copy, len, &l3, 1, 2), -EINVAL);
		free(copy);
	}
	assert_int_equal(tl_peer_from(&p, r.b, 14 + 20, &l3, 1, 2), 0);
}

static void
test_peer_from_truncated_tags_einval(void **state)
{
	struct tl_l3_view l3;
	struct tl_peer p;
	struct req r;

	(void)state;
	decode_req(&r, 6, 2, &l3);
	for (uint32_t len = 14; len < 22 + 24; len++) {
		uint8_t *copy = malloc(len);

		assert_non_null(copy);
		memcpy(copy, r.b, len);
		assert_int_equal(tl_peer_from(&p, copy, len, &l3, 1, 2), -EINVAL);
		free(copy);
	}
	assert_int_equal(tl_peer_from(&p, r.b, 22 + 24, &l3, 1, 2), 0);
	assert_int_equal(p.l2_len, 22);
}

static void
test_peer_from_three_tags_einval(void **state)
{
	struct tl_l3_view l3;
	struct tl_peer p;
	struct req r;

	(void)state;
	decode_req(&r, 4, 2, &l3);
	/* A third tag in front: more than the decoder ever accepts. */
	memmove(r.b + 16, r.b + 12, r.len - 12);
	wr16(r.b + 12, 0x8100);
	wr16(r.b + 14, 33);
	r.len += 4;
	assert_int_equal(tl_peer_from(&p, r.b, r.len, &l3, 1, 2), -EINVAL);
}

/* A view that does not describe this frame (another frame's, or altered) is refused. */
static void
test_peer_from_view_of_other_frame_einval(void **state)
{
	struct tl_l3_view l3_4, l3_6, l3_t, l3;
	struct req r4, r6, rt;
	struct tl_peer p;

	(void)state;
	decode_req(&r4, 4, 0, &l3_4);
	decode_req(&r6, 6, 0, &l3_6);
	decode_req(&rt, 4, 1, &l3_t);
	/* EtherType vs version. */
	assert_int_equal(tl_peer_from(&p, r4.b, r4.len, &l3_6, 1, 2), -EINVAL);
	assert_int_equal(tl_peer_from(&p, r6.b, r6.len, &l3_4, 1, 2), -EINVAL);
	/* Tag count: untagged view for a tagged frame and the other way round. */
	assert_int_equal(tl_peer_from(&p, rt.b, rt.len, &l3_4, 1, 2), -EINVAL);
	assert_int_equal(tl_peer_from(&p, r4.b, r4.len, &l3_t, 1, 2), -EINVAL);
	/* Another VID. */
	l3 = l3_t;
	l3.vlan[0] = 12;
	assert_int_equal(tl_peer_from(&p, rt.b, rt.len, &l3, 1, 2), -EINVAL);
	/* Another source address. */
	l3 = l3_4;
	l3.src[3] ^= 1;
	assert_int_equal(tl_peer_from(&p, r4.b, r4.len, &l3, 1, 2), -EINVAL);
	/* A bad version. */
	l3 = l3_4;
	l3.ip_version = 5;
	assert_int_equal(tl_peer_from(&p, r4.b, r4.len, &l3, 1, 2), -EINVAL);
	/* IP version nibble in the frame disagrees. */
	r4.b[14] = 0x65;
	assert_int_equal(tl_peer_from(&p, r4.b, r4.len, &l3_4, 1, 2), -EINVAL);
}

static void
test_peer_from_ports_kept_as_given(void **state)
{
	struct tl_l3_view l3;
	struct tl_peer p;
	struct req r;

	(void)state;
	decode_req(&r, 6, 1, &l3);
	memset(&p, 0xa5, sizeof(p));
	assert_int_equal(tl_peer_from(&p, r.b, r.len, &l3, 0xfffe, 1), 0);
	assert_int_equal(p.sport, 0xfffe);
	assert_int_equal(p.dport, 1);
	assert_int_equal(p.l2_len, 18);
	/* Bytes past the header are cleared, not left from before. */
	for (size_t i = 18; i < TL_PEER_L2_MAX; i++)
		assert_int_equal(p.l2[i], 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_reply_ipv4_untagged_swapped),
	        cmocka_unit_test(test_reply_ipv6_untagged_swapped),
	        cmocka_unit_test(test_reply_ipv4_single_vlan_tag_kept),
	        cmocka_unit_test(test_reply_ipv6_single_vlan_tag_kept),
	        cmocka_unit_test(test_reply_ipv4_qinq_tags_kept),
	        cmocka_unit_test(test_reply_ipv6_qinq_tags_kept),
	        cmocka_unit_test(test_reply_legacy_qinq_tpid_kept),
	        cmocka_unit_test(test_peer_priority_tag_vid0_kept),
	        cmocka_unit_test(test_reply_of_reply_restores_request_header),
	        cmocka_unit_test(test_reply_odd_and_even_payload_lengths_checksum_valid),
	        cmocka_unit_test(test_reply_zero_length_payload_valid),
	        cmocka_unit_test(test_reply_checksum_computing_zero_sent_as_ffff),
	        cmocka_unit_test(test_reply_payload_in_place_kept),
	        cmocka_unit_test(test_reply_mtu_exact_fits_one_more_emsgsize),
	        cmocka_unit_test(test_reply_length_fields_limit_emsgsize),
	        cmocka_unit_test(test_reply_buffer_one_short_enospc),
	        cmocka_unit_test(test_reply_bad_l2_len_einval),
	        cmocka_unit_test(test_reply_bad_ip_version_einval),
	        cmocka_unit_test(test_reply_bad_tag_or_ethertype_einval),
	        cmocka_unit_test(test_reply_null_args_einval),
	        cmocka_unit_test(test_peer_from_null_or_short_einval),
	        cmocka_unit_test(test_peer_from_truncated_tags_einval),
	        cmocka_unit_test(test_peer_from_three_tags_einval),
	        cmocka_unit_test(test_peer_from_view_of_other_frame_einval),
	        cmocka_unit_test(test_peer_from_ports_kept_as_given),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
