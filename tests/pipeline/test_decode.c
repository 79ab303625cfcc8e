/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Tests for tl_decode_frame() / tl_decode_udp(). Frames are built here with correct
 * checksums and then damaged one field at a time. Truncation tests copy each prefix into
 * an exact-size heap buffer so that ASan reports any read past frame + len.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tl_cksum.h"
#include "tl_decode.h"

#define MAX_FRAME 4096

static const uint8_t src4[4] = {192, 0, 2, 1};
static const uint8_t dst4[4] = {198, 51, 100, 7};
static const uint8_t src6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x11};
static const uint8_t dst6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x22};

/* ---- frame builder ---- */

struct tb {
	uint8_t b[MAX_FRAME];
	uint32_t len; /* frame length */
	uint32_t l3;  /* offset of the IP header */
	uint32_t l4;  /* offset of the UDP header / fragment data */
};

static void
wr16(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void
wr32(uint8_t *p, uint32_t v)
{
	wr16(p, v >> 16);
	wr16(p + 2, v);
}

/* Ethernet header plus @p ntags VLAN tags (TPIDs from @p tpids, VIDs 100, 200, 300). */
static void
put_eth(struct tb *t, unsigned ntags, const uint16_t *tpids, uint16_t ethertype)
{
	static const uint16_t def_tpids[3] = {0x88a8, 0x8100, 0x8100};
	uint32_t o = 12;

	memset(t, 0, sizeof(*t));
	memcpy(t->b, "\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02", 12);
	for (unsigned i = 0; i < ntags; i++) {
		wr16(t->b + o, tpids ? tpids[i] : def_tpids[i]);
		wr16(t->b + o + 2, (0x2u << 13) | (100u * (i + 1))); /* PCP 2, VID */
		o += 4;
	}
	wr16(t->b + o, ethertype);
	t->l3 = o + 2;
}

static uint32_t
put_udp(uint8_t *p, uint16_t sport, uint16_t dport, const uint8_t *payload, uint32_t plen)
{
	wr16(p, sport);
	wr16(p + 2, dport);
	wr16(p + 4, 8 + plen);
	wr16(p + 6, 0);
	memcpy(p + 8, payload, plen);
	return 8 + plen;
}

static void
udp_fix_cksum(uint8_t *udp, uint32_t len, const uint8_t *src, const uint8_t *dst, size_t alen)
{
	uint16_t c;

	wr16(udp + 6, 0);
	c = tl_cksum_l4(src, dst, alen, 17, udp, len);
	if (c == 0)
		c = 0xffff;     /* RFC 768: a computed zero is sent as all ones */
	memcpy(udp + 6, &c, 2); /* already in network order */
}

static void
ipv4_fix_cksum(uint8_t *ip)
{
	uint16_t c;

	wr16(ip + 10, 0);
	c = tl_cksum(ip, (ip[0] & 0xfu) * 4);
	memcpy(ip + 10, &c, 2);
}

/* IPv4 header with @p optlen bytes of options (NOPs), checksum set. */
static void
put_ipv4(uint8_t *ip, uint32_t optlen, uint32_t l4len, uint16_t id, uint16_t frag, uint8_t proto)
{
	uint32_t ihl = 20 + optlen;

	ip[0] = (uint8_t)(0x40 | (ihl / 4));
	ip[1] = 0;
	wr16(ip + 2, ihl + l4len);
	wr16(ip + 4, id);
	wr16(ip + 6, frag);
	ip[8] = 64;
	ip[9] = proto;
	memcpy(ip + 12, src4, 4);
	memcpy(ip + 16, dst4, 4);
	memset(ip + 20, 1, optlen);
	ipv4_fix_cksum(ip);
}

static void
fill_payload(uint8_t *p, uint32_t n, uint32_t seed)
{
	for (uint32_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		p[i] = (uint8_t)(seed >> 16);
	}
}

/* Untagged or tagged IPv4/UDP frame with a @p plen byte payload. */
static void
build_v4(struct tb *t, unsigned ntags, uint32_t optlen, uint32_t plen)
{
	uint8_t payload[MAX_FRAME];
	uint32_t ulen;

	fill_payload(payload, plen, plen + 7);
	put_eth(t, ntags, NULL, 0x0800);
	t->l4 = t->l3 + 20 + optlen;
	ulen = put_udp(t->b + t->l4, 40000, 5170, payload, plen);
	udp_fix_cksum(t->b + t->l4, ulen, src4, dst4, 4);
	put_ipv4(t->b + t->l3, optlen, ulen, 0x1234, 0x4000 /* DF */, 17);
	t->len = t->l4 + ulen;
}

/*
 * IPv6 frame: the IPv6 header, then @p ext (already-formed extension headers whose
 * chain ends in UDP), then a UDP datagram. @p first_nh is the IPv6 Next Header.
 */
static void
build_v6(struct tb *t, unsigned ntags, uint8_t first_nh, const uint8_t *ext, uint32_t extlen,
        uint32_t plen)
{
	uint8_t payload[MAX_FRAME];
	uint8_t *ip;
	uint32_t ulen;

	fill_payload(payload, plen, plen + 11);
	put_eth(t, ntags, NULL, 0x86dd);
	ip = t->b + t->l3;
	ip[0] = 0x60;
	ip[1] = 0x0a; /* traffic class / flow label: must be ignored */
	ip[6] = first_nh;
	ip[7] = 64;
	memcpy(ip + 8, src6, 16);
	memcpy(ip + 24, dst6, 16);
	if (extlen)
		memcpy(ip + 40, ext, extlen);
	t->l4 = t->l3 + 40 + extlen;
	ulen = put_udp(t->b + t->l4, 40000, 5170, payload, plen);
	udp_fix_cksum(t->b + t->l4, ulen, src6, dst6, 16);
	wr16(ip + 4, extlen + ulen);
	t->len = t->l4 + ulen;
}

/* Generic extension header of @p len bytes (multiple of 8) with next header @p nh. */
static uint32_t
put_ext(uint8_t *p, uint8_t nh, uint32_t len)
{
	memset(p, 0, len);
	p[0] = nh;
	p[1] = (uint8_t)(len / 8 - 1);
	if (len >= 8)
		p[2] = 1; /* PadN option type / routing type: contents are not interpreted */
	return len;
}

static uint32_t
put_frag6(uint8_t *p, uint8_t nh, uint32_t off, bool more, uint32_t id)
{
	p[0] = nh;
	p[1] = 0;
	wr16(p + 2, off | (more ? 1u : 0u));
	wr32(p + 4, id);
	return 8;
}

/* Decode @p len bytes of @p t from an exact-size heap copy. */
static enum tl_reason
decode_exact(const struct tb *t, uint32_t len, uint32_t hw, struct tl_l3_view *v)
{
	uint8_t *copy = malloc(len ? len : 1);
	enum tl_reason rc;

	assert_non_null(copy);
	memcpy(copy, t->b, len);
	rc = tl_decode_frame(copy, len, hw, v);
	free(copy);
	return rc;
}

static enum tl_reason
decode(const struct tb *t, uint32_t hw, struct tl_l3_view *v)
{
	return tl_decode_frame(t->b, t->len, hw, v);
}

static enum tl_reason
decode_full(const struct tb *t, uint32_t hw, struct tl_l3_view *v, struct tl_udp_view *u)
{
	enum tl_reason rc = decode(t, hw, v);

	if (rc != TL_REASON_OK)
		return rc;
	return tl_decode_udp(v, v->l4, v->l4_len, false, u);
}

/* ---- Ethernet / VLAN ---- */

static void
test_decode_ipv4_udp_untagged_ok(void **state)
{
	struct tl_l3_view v;
	struct tl_udp_view u;
	struct tb t;

	(void)state;
	build_v4(&t, 0, 0, 100);
	memset(&v, 0xaa, sizeof(v));
	assert_int_equal(decode_full(&t, 0, &v, &u), TL_REASON_OK);
	assert_int_equal(v.ip_version, 4);
	assert_int_equal(v.is_fragment, 0);
	assert_int_equal(v.more_frags, 0);
	assert_int_equal(v.frag_off, 0);
	assert_int_equal(v.hw_flags, 0);
	assert_int_equal(v.vlan[0], 0);
	assert_int_equal(v.vlan[1], 0);
	assert_memory_equal(v.src, src4, 4);
	assert_memory_equal(v.dst, dst4, 4);
	for (int i = 4; i < 16; i++) {
		assert_int_equal(v.src[i], 0);
		assert_int_equal(v.dst[i], 0);
	}
	assert_ptr_equal(v.l4, t.b + 34);
	assert_int_equal(v.l4_len, 108);
	assert_int_equal(u.sport, 40000);
	assert_int_equal(u.dport, 5170);
	assert_ptr_equal(u.payload, t.b + 42);
	assert_int_equal(u.len, 100);
}

static void
test_decode_vlan_zero_to_two_tags_ok(void **state)
{
	static const uint16_t tpid_sets[3][2] = {
	        {0x8100, 0x8100}, {0x88a8, 0x8100}, {0x9100, 0x8100}};

	(void)state;
	for (unsigned ntags = 0; ntags <= 2; ntags++) {
		for (unsigned s = 0; s < 3; s++) {
			struct tl_l3_view v;
			struct tl_udp_view u;
			struct tb t;
			uint8_t payload[64];

			fill_payload(payload, sizeof(payload), 3);
			put_eth(&t, ntags, tpid_sets[s], 0x0800);
			t.l4 = t.l3 + 20;
			t.len = t.l4 + put_udp(t.b + t.l4, 1, 5170, payload, sizeof(payload));
			udp_fix_cksum(t.b + t.l4, t.len - t.l4, src4, dst4, 4);
			put_ipv4(t.b + t.l3, 0, t.len - t.l4, 1, 0, 17);
			assert_int_equal(decode_full(&t, 0, &v, &u), TL_REASON_OK);
			assert_int_equal(v.vlan[0], ntags >= 1 ? 100 : 0);
			assert_int_equal(v.vlan[1], ntags >= 2 ? 200 : 0);
			assert_ptr_equal(v.l4, t.b + 14 + 4 * ntags + 20);
			assert_int_equal(u.len, sizeof(payload));
		}
	}
}

static void
test_decode_vlan_single_tag_each_tpid_ok(void **state)
{
	static const uint16_t tpids[] = {0x8100, 0x88a8, 0x9100};

	(void)state;
	for (unsigned i = 0; i < 3; i++) {
		struct tl_l3_view v;
		struct tb t;

		build_v4(&t, 1, 0, 10);
		wr16(t.b + 12, tpids[i]);
		assert_int_equal(decode(&t, 0, &v), TL_REASON_OK);
		assert_int_equal(v.vlan[0], 100);
	}
}

static void
test_decode_vlan_three_tags_too_deep(void **state)
{
	static const uint16_t tpids[3] = {0x88a8, 0x8100, 0x8100};
	struct tl_l3_view v;
	struct tb t;
	uint8_t payload[16] = {0};

	(void)state;
	put_eth(&t, 3, tpids, 0x0800);
	t.l4 = t.l3 + 20;
	t.len = t.l4 + put_udp(t.b + t.l4, 1, 2, payload, sizeof(payload));
	put_ipv4(t.b + t.l3, 0, t.len - t.l4, 1, 0, 17);
	assert_int_equal(decode(&t, 0, &v), TL_REASON_PKT_VLAN_TOO_DEEP);
	/* Even when the frame ends right after the third TPID. */
	assert_int_equal(decode_exact(&t, 14 + 8, 0, &v), TL_REASON_PKT_VLAN_TOO_DEEP);
}

static void
test_decode_non_ip_ethertypes_ignored(void **state)
{
	static const uint16_t types[] = {0x0806 /* ARP */, 0x88cc /* LLDP */, 0x8035, 0x0042,
	        0x05dc /* 802.3 length */, 0x8847 /* MPLS */};
	struct tl_l3_view v;
	struct tb t;

	(void)state;
	for (unsigned i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		for (unsigned ntags = 0; ntags <= 2; ntags++) {
			put_eth(&t, ntags, NULL, types[i]);
			t.len = t.l3 + 28; /* an ARP body's worth */
			assert_int_equal(decode(&t, 0, &v), TL_REASON_IGN_NON_IP);
		}
	}
	/* ARP with just the Ethernet header is still ARP. */
	put_eth(&t, 0, NULL, 0x0806);
	assert_int_equal(decode_exact(&t, 14, 0, &v), TL_REASON_IGN_NON_IP);
}

/* ---- truncation at every byte ---- */

static enum tl_reason
expected_trunc_v4(uint32_t cut, unsigned ntags)
{
	if (cut < 14)
		return TL_REASON_PKT_ETH_TRUNCATED;
	if (cut < 14 + 4 * ntags)
		return TL_REASON_PKT_VLAN_TRUNCATED;
	return TL_REASON_PKT_IPV4_TRUNCATED;
}

static void
test_decode_ipv4_truncated_every_byte_truncated(void **state)
{
	(void)state;
	for (unsigned ntags = 0; ntags <= 2; ntags++) {
		for (uint32_t optlen = 0; optlen <= 8; optlen += 8) {
			struct tl_l3_view v;
			struct tb t;

			build_v4(&t, ntags, optlen, 37);
			for (uint32_t cut = 0; cut < t.len; cut++)
				assert_int_equal(decode_exact(&t, cut, 0, &v),
				        expected_trunc_v4(cut, ntags));
			assert_int_equal(decode_exact(&t, t.len, 0, &v), TL_REASON_OK);
		}
	}
}

static void
test_decode_ipv6_truncated_every_byte_truncated(void **state)
{
	uint8_t ext[64];
	uint32_t n = 0;

	(void)state;
	n += put_ext(ext + n, 60, 8);  /* hop-by-hop -> dstopts */
	n += put_ext(ext + n, 43, 16); /* dstopts -> routing */
	n += put_ext(ext + n, 17, 8);  /* routing -> UDP */
	for (unsigned ntags = 0; ntags <= 2; ntags++) {
		struct tl_l3_view v;
		struct tb t;

		build_v6(&t, ntags, 0, ext, n, 21);
		for (uint32_t cut = 0; cut < t.len; cut++) {
			enum tl_reason want = cut < 14               ? TL_REASON_PKT_ETH_TRUNCATED
			                      : cut < 14 + 4 * ntags ? TL_REASON_PKT_VLAN_TRUNCATED
			                                             : TL_REASON_PKT_IPV6_TRUNCATED;

			assert_int_equal(decode_exact(&t, cut, 0, &v), want);
		}
		assert_int_equal(decode_exact(&t, t.len, 0, &v), TL_REASON_OK);
		assert_int_equal(v.l4_len, 8 + 21);
	}
}

/* ---- IPv4 header ---- */

static void
test_decode_ipv4_bad_version_bad_header(void **state)
{
	static const uint8_t versions[] = {0, 5, 6, 15};
	struct tl_l3_view v;
	struct tb t;

	(void)state;
	for (unsigned i = 0; i < sizeof(versions); i++) {
		build_v4(&t, 0, 0, 20);
		t.b[t.l3] = (uint8_t)(versions[i] << 4 | 5);
		ipv4_fix_cksum(t.b + t.l3);
		assert_int_equal(decode(&t, 0, &v), TL_REASON_PKT_IPV4_BAD_HEADER);
	}
}

static void
test_decode_ipv4_ihl_below_five_bad_header(void **state)
{
	struct tl_l3_view v;
	struct tb t;

	(void)state;
	for (uint8_t ihl = 0; ihl < 5; ihl++) {
		build_v4(&t, 0, 0, 20);
		t.b[t.l3] = (uint8_t)(0x40 | ihl);
		assert_int_equal(decode(&t, 0, &v), TL_REASON_PKT_IPV4_BAD_HEADER);
		assert_int_equal(
		        decode(&t, TL_HW_IP_CKSUM_GOOD, &v), TL_REASON_PKT_IPV4_BAD_HEADER);
	}
}

static void
test_decode_ipv4_ihl_past_frame_truncated(void **state)
{
	struct tl_l3_view v;
	struct tb t;

	(void)state;
	build_v4(&t, 0, 0, 0); /* 20 + 8 bytes of IP */
	t.b[t.l3] = 0x4f;      /* 60-byte header in a 28-byte packet */
	assert_int_equal(decode(&t, 0, &v), TL_REASON_PKT_IPV4_TRUNCATED);
}

static void
test_decode_ipv4_options_skipped_ok(void **state)
{
	(void)state;
	for (uint32_t optlen = 4; optlen <= 40; optlen += 4) {
		struct tl_l3_view v;
		struct tl_udp_view u;
		struct tb t;

		build_v4(&t, 1, optlen, 50);
		assert_int_equal(decode_full(&t, 0, &v, &u), TL_REASON_OK);
		assert_ptr_equal(v.l4, t.b + 18 + 20 + optlen);
		assert_int_equal(v.l4_len, 58);
		assert_int_equal(u.len, 50);
	}
}

static void
test_decode_ipv4_total_length_below_header_bad_header(void **state)
{
	struct tl_l3_view v;
	struct tb t;

	(void)state;
	for (uint32_t tot = 0; tot < 24; tot++) {
		build_v4(&t, 0, 4, 10);
		wr16(t.b + t.l3 + 2, tot);
		ipv4_fix_cksum(t.b + t.l3);
		assert_int_equal(decode(&t, 0, &v), TL_REASON_PKT_IPV4_BAD_HEADER);
	}
}

static void
test_decode_ipv4_total_length_past_frame_truncated(void **state)
{
	struct tl_l3_view v;
	struct tb t;

	(void)state;
	build_v4(&t, 0, 0, 10);
	wr16(t.b + t.l3 + 2, t.len - t.l3 + 1);
	ipv4_fix_cksum(t.b + t.l3);
	assert_int_equal(decode(&t, 0, &v), TL_REASON_PKT_IPV4_TRUNCATED);
	wr16(t.b + t.l3 + 2, 0xffff);
	ipv4_fix_cksum(t.b + t.l3);
	assert_int_equal(decode(&t, 0, &v), TL_REASON_PKT_IPV4_TRUNCATED);
}

static void
test_decode_ipv4_link_padding_ignored_ok(void **state)
{
	struct tl_l3_view v;
	struct tl_udp_view u;
	struct tb t;

	(void)state;
	build_v4(&t, 0, 0, 2); /* 44-byte frame: padded to the 60-byte minimum */
	memset(t.b + t.len, 0xee, 60 - t.len);
	t.len = 60;
	assert_int_equal(decode_full(&t, 0, &v, &u), TL_REASON_OK);
	assert_int_equal(v.l4_len, 10);
	assert_int_equal(u.len, 2);
}

static void
test_decode_ipv4_bad_checksum_rejected(void **state)
{
	struct tl_l3_view v;
	struct tb t;

	(void)state;
	build_v4(&t, 0, 0, 20);
	t.b[t.l3 + 8] ^= 0x01; /* TTL changed, checksum not updated */
	assert_int_equal(decode(&t, 0, &v), TL_REASON_PKT_IPV4_BAD_CHECKSUM);
	build_v4(&t, 0, 12, 20);
	t.b[t.l3 + 30] ^= 0x80; /* inside the options */
	assert_int_equal(decode(&t, 0, &v), TL_REASON_PKT_IPV4_BAD_CHECKSUM);
	build_v4(&t, 0, 0, 20);
	t.b[t.l3 + 11] ^= 0xff; /* the checksum itself */
	assert_int_equal(decode(&t, 0, &v), TL_REASON_PKT_IPV4_BAD_CHECKSUM);
}

static void
test_decode_ipv4_hw_cksum_flag_skips_check_ok(void **state)
{
	struct tl_l3_view v;
	struct tb t;

	(void)state;
	build_v4(&t, 0, 0, 20);
	t.b[t.l3 + 10] ^= 0x55;
	assert_int_equal(decode(&t, TL_HW_IP_CKSUM_GOOD, &v), TL_REASON_OK);
	assert_int_equal(v.hw_flags, TL_HW_IP_CKSUM_GOOD);
	/* The L4 flag alone does not vouch for the IP header. */
	assert_int_equal(decode(&t, TL_HW_L4_CKSUM_GOOD, &v), TL_REASON_PKT_IPV4_BAD_CHECKSUM);
}

static void
test_decode_ipv4_tcp_and_icmp_ignored(void **state)
{
	static const uint8_t protos[] = {1, 6, 47, 50, 132, 255, 0};
	struct tl_l3_view v;
	struct tb t;

	(void)state;
	for (unsigned i = 0; i < sizeof(protos); i++) {
		build_v4(&t, 0, 0, 20);
		t.b[t.l3 + 9] = protos[i];
		ipv4_fix_cksum(t.b + t.l3);
		assert_int_equal(decode(&t, 0, &v), TL_REASON_IGN_NON_UDP);
		/* Also when fragmented. */
		wr16(t.b + t.l3 + 6, 0x2000);
		ipv4_fix_cksum(t.b + t.l3);
		assert_int_equal(decode(&t, 0, &v), TL_REASON_IGN_NON_UDP);
	}
}

/* ---- IPv4 fragments ---- */

static void
set_v4_frag(struct tb *t, uint16_t id, uint32_t off, bool more, uint32_t datalen)
{
	uint8_t *ip = t->b + t->l3;

	wr16(ip + 2, 20 + datalen);
	wr16(ip + 4, id);
	wr16(ip + 6, (more ? 0x2000u : 0u) | (off / 8));
	ipv4_fix_cksum(ip);
	t->len = t->l3 + 20 + datalen;
}

static void
test_decode_ipv4_fragments_fields_ok(void **state)
{
	struct tl_l3_view v;
	struct tb t;

	(void)state;
	build_v4(&t, 0, 0, 200);
	set_v4_frag(&t, 0xbeef, 0, true, 64);
	assert_int_equal(decode(&t, 0, &v), TL_REASON_OK);
	assert_int_equal(v.is_fragment, 1);
	assert_int_equal(v.more_frags, 1);
	assert_int_equal(v.frag_id, 0xbeef);
	assert_int_equal(v.frag_off, 0);
	assert_int_equal(v.l4_len, 64);
	assert_ptr_equal(v.l4, t.b + 34);

	set_v4_frag(&t, 0xbeef, 64, true, 128);
	assert_int_equal(decode(&t, 0, &v), TL_REASON_OK);
	assert_int_equal(v.frag_off, 64);
	assert_int_equal(v.more_frags, 1);

	set_v4_frag(&t, 0xbeef, 8191 * 8, false, 13);
	assert_int_equal(decode(&t, 0, &v), TL_REASON_OK);
	assert_int_equal(v.is_fragment, 1);
	assert_int_equal(v.more_frags, 0);
	assert_int_equal(v.frag_off, 65528);
	assert_int_equal(v.l4_len, 13);

	/* DF with the reserved bit set and no MF/offset is not a fragment. */
	build_v4(&t, 0, 0, 20);
	wr16(t.b + t.l3 + 6, 0xc000);
	ipv4_fix_cksum(t.b + t.l3);
	assert_int_equal(decode(&t, 0, &v), TL_REASON_OK);
	assert_int_equal(v.is_fragment, 0);
}

static void
test_decode_ipv4_fragment_unaligned_length_frag_bad(void **state)
{
	struct tl_l3_view v;
	struct tb t;

	(void)state;
	build_v4(&t, 0, 0, 200);
	for (uint32_t len = 0; len < 64; len++) {
		set_v4_frag(&t, 7, 8, true, len);
		assert_int_equal(
		        decode(&t, 0, &v), len && len % 8 == 0 ? TL_REASON_OK : TL_REASON_FRAG_BAD);
		/* The last fragment may have any length, even zero. */
		set_v4_frag(&t, 7, 8, false, len);
		assert_int_equal(decode(&t, 0, &v), TL_REASON_OK);
	}
}

/* ---- IPv6 ---- */

static void
test_decode_ipv6_udp_plain_ok(void **state)
{
	struct tl_l3_view v;
	struct tl_udp_view u;
	struct tb t;

	(void)state;
	for (unsigned ntags = 0; ntags <= 2; ntags++) {
		build_v6(&t, ntags, 17, NULL, 0, 77);
		memset(&v, 0x55, sizeof(v));
		assert_int_equal(decode_full(&t, 0, &v, &u), TL_REASON_OK);
		assert_int_equal(v.ip_version, 6);
		assert_int_equal(v.is_fragment, 0);
		assert_int_equal(v.frag_id, 0);
		assert_memory_equal(v.src, src6, 16);
		assert_memory_equal(v.dst, dst6, 16);
		assert_ptr_equal(v.l4, t.b + t.l3 + 40);
		assert_int_equal(v.l4_len, 85);
		assert_int_equal(u.len, 77);
		assert_int_equal(u.dport, 5170);
	}
}

static void
test_decode_ipv6_each_extension_header_ok(void **state)
{
	static const uint8_t types[] = {0, 43, 60};

	(void)state;
	for (unsigned i = 0; i < 3; i++) {
		for (uint32_t len = 8; len <= 2048; len *= 4) {
			struct tl_l3_view v;
			struct tl_udp_view u;
			struct tb t;
			uint8_t ext[2048];
			uint32_t n = put_ext(ext, 17, len);

			build_v6(&t, 0, types[i], ext, n, 30);
			assert_int_equal(decode_full(&t, 0, &v, &u), TL_REASON_OK);
			assert_ptr_equal(v.l4, t.b + t.l3 + 40 + len);
			assert_int_equal(u.len, 30);
		}
	}
}

static void
test_decode_ipv6_atomic_fragment_whole_packet_ok(void **state)
{
	struct tl_l3_view v;
	struct tl_udp_view u;
	uint8_t ext[8];
	struct tb t;

	(void)state;
	put_frag6(ext, 17, 0, false, 0xdeadbeef);
	build_v6(&t, 0, 44, ext, 8, 40);
	assert_int_equal(decode_full(&t, 0, &v, &u), TL_REASON_OK);
	assert_int_equal(v.is_fragment, 0);
	assert_ptr_equal(v.l4, t.b + t.l3 + 48);
	assert_int_equal(u.len, 40);
}

static void
test_decode_ipv6_extension_chain_ok(void **state)
{
	struct tl_l3_view v;
	uint8_t ext[128];
	uint32_t n = 0;
	struct tb t;

	(void)state;
	/* HBH, DST, RT, DST, FRAG(first, more) -> UDP */
	n += put_ext(ext + n, 60, 8);
	n += put_ext(ext + n, 43, 16);
	n += put_ext(ext + n, 60, 24);
	n += put_ext(ext + n, 44, 8);
	n += put_frag6(ext + n, 17, 0, true, 0x01020304);
	build_v6(&t, 2, 0, ext, n, 32);
	assert_int_equal(decode(&t, 0, &v), TL_REASON_OK);
	assert_int_equal(v.is_fragment, 1);
	assert_int_equal(v.more_frags, 1);
	assert_int_equal(v.frag_id, 0x01020304);
	assert_int_equal(v.frag_off, 0);
	assert_ptr_equal(v.l4, t.b + t.l4);
	assert_int_equal(v.l4_len, 40);
}

static void
test_decode_ipv6_fragment_fields_ok(void **state)
{
	struct tl_l3_view v;
	uint8_t ext[8];
	struct tb t;

	(void)state;
	put_frag6(ext, 17, 65528, false, 0xfffffffe);
	build_v6(&t, 0, 44, ext, 8, 0); /* 8 bytes of data: the "UDP header" */
	assert_int_equal(decode(&t, 0, &v), TL_REASON_OK);
	assert_int_equal(v.is_fragment, 1);
	assert_int_equal(v.more_frags, 0);
	assert_int_equal(v.frag_off, 65528);
	assert_int_equal(v.frag_id, 0xfffffffe);
	assert_int_equal(v.l4_len, 8);

	/* Reserved bits (0x6) in the offset word are ignored. */
	put_frag6(ext, 17, 1024, true, 5);
	ext[3] |= 0x6;
	build_v6(&t, 0, 44, ext, 8, 8);
	assert_int_equal(decode(&t, 0, &v), TL_REASON_OK);
	assert_int_equal(v.frag_off, 1024);
	assert_int_equal(v.more_frags, 1);
}

static void
test_decode_ipv6_fragment_unaligned_length_frag_bad(void **state)
{
	struct tl_l3_view v;
	uint8_t ext[8];
	struct tb t;

	(void)state;
	put_frag6(ext, 17, 8, true, 9);
	build_v6(&t, 0, 44, ext, 8, 5); /* 13 bytes, not the last */
	assert_int_equal(decode(&t, 0, &v), TL_REASON_FRAG_BAD);
	put_frag6(ext, 17, 8, false, 9);
	build_v6(&t, 0, 44, ext, 8, 5);
	assert_int_equal(decode(&t, 0, &v), TL_REASON_OK);
	/* Empty non-last fragment. */
	put_frag6(ext, 17, 8, true, 9);
	build_v6(&t, 0, 44, ext, 8, 0);
	t.len -= 8;
	wr16(t.b + t.l3 + 4, 8);
	assert_int_equal(decode(&t, 0, &v), TL_REASON_FRAG_BAD);
}

static void
test_decode_ipv6_fragmentable_part_not_udp_ignored(void **state)
{
	struct tl_l3_view v;
	uint8_t ext[16];
	struct tb t;

	(void)state;
	put_frag6(ext, 60, 0, true, 1);
	put_ext(ext + 8, 17, 8);
	build_v6(&t, 0, 44, ext, 16, 24);
	assert_int_equal(decode(&t, 0, &v), TL_REASON_IGN_NON_UDP);
	put_frag6(ext, 6, 64, false, 1);
	build_v6(&t, 0, 44, ext, 8, 24);
	assert_int_equal(decode(&t, 0, &v), TL_REASON_IGN_NON_UDP);
	put_frag6(ext, 44, 64, false, 1); /* two fragment headers */
	build_v6(&t, 0, 44, ext, 8, 24);
	assert_int_equal(decode(&t, 0, &v), TL_REASON_IGN_NON_UDP);
}

static void
test_decode_ipv6_bad_version_bad_header(void **state)
{
	struct tl_l3_view v;
	struct tb t;

	(void)state;
	build_v6(&t, 0, 17, NULL, 0, 10);
	t.b[t.l3] = 0x40;
	assert_int_equal(decode(&t, 0, &v), TL_REASON_PKT_IPV6_BAD_HEADER);
	t.b[t.l3] = 0x70;
	assert_int_equal(decode(&t, 0, &v), TL_REASON_PKT_IPV6_BAD_HEADER);
}

static void
test_decode_ipv6_payload_length_past_frame_truncated(void **state)
{
	struct tl_l3_view v;
	struct tl_udp_view u;
	struct tb t;

	(void)state;
	build_v6(&t, 0, 17, NULL, 0, 10);
	wr16(t.b + t.l3 + 4, 19);
	assert_int_equal(decode(&t, 0, &v), TL_REASON_PKT_IPV6_TRUNCATED);
	wr16(t.b + t.l3 + 4, 0xffff);
	assert_int_equal(decode(&t, 0, &v), TL_REASON_PKT_IPV6_TRUNCATED);
	/* Padding after the payload is ignored. */
	wr16(t.b + t.l3 + 4, 18);
	t.len += 6;
	assert_int_equal(decode_full(&t, 0, &v, &u), TL_REASON_OK);
	assert_int_equal(v.l4_len, 18);
}

static void
test_decode_ipv6_extension_length_past_payload_bad_header(void **state)
{
	static const uint8_t types[] = {0, 43, 60};

	(void)state;
	for (unsigned i = 0; i < 3; i++) {
		struct tl_l3_view v;
		uint8_t ext[16];
		struct tb t;

		/* Header says 16 bytes; payload has 8 + 8 (UDP header, empty payload)... */
		put_ext(ext, 17, 8);
		build_v6(&t, 0, types[i], ext, 8, 0);
		t.b[t.l4 - 8 + 1] = 2; /* claims 24 bytes, 16 remain */
		assert_int_equal(decode(&t, 0, &v), TL_REASON_PKT_IPV6_BAD_HEADER);
		t.b[t.l4 - 8 + 1] = 255; /* claims 2048 bytes */
		assert_int_equal(decode(&t, 0, &v), TL_REASON_PKT_IPV6_BAD_HEADER);

		/* Fewer than 8 bytes left for the extension header at all. */
		build_v6(&t, 0, types[i], NULL, 0, 0);
		wr16(t.b + t.l3 + 4, 4);
		assert_int_equal(decode(&t, 0, &v), TL_REASON_PKT_IPV6_BAD_HEADER);
		wr16(t.b + t.l3 + 4, 0); /* jumbogram marker without a jumbo option */
		assert_int_equal(decode(&t, 0, &v), TL_REASON_PKT_IPV6_BAD_HEADER);
	}
	{
		struct tl_l3_view v;
		uint8_t ext[8];
		struct tb t;

		/* Fragment header cut short by the payload length. */
		put_frag6(ext, 17, 0, true, 1);
		build_v6(&t, 0, 44, ext, 8, 0);
		wr16(t.b + t.l3 + 4, 7);
		assert_int_equal(decode(&t, 0, &v), TL_REASON_PKT_IPV6_BAD_HEADER);
	}
}

static void
test_decode_ipv6_hop_by_hop_not_first_bad_header(void **state)
{
	struct tl_l3_view v;
	uint8_t ext[16];
	struct tb t;

	(void)state;
	put_ext(ext, 0, 8);
	put_ext(ext + 8, 17, 8);
	build_v6(&t, 0, 60, ext, 16, 10);
	assert_int_equal(decode(&t, 0, &v), TL_REASON_PKT_IPV6_BAD_HEADER);
}

static void
test_decode_ipv6_extension_chain_limit_bad_header(void **state)
{
	uint8_t ext[128];

	(void)state;
	for (unsigned count = 7; count <= 9; count++) {
		struct tl_l3_view v;
		uint32_t n = 0;
		struct tb t;

		for (unsigned i = 0; i < count; i++)
			n += put_ext(ext + n, i + 1 < count ? 60 : 17, 8);
		build_v6(&t, 0, 60, ext, n, 4);
		assert_int_equal(decode(&t, 0, &v),
		        count <= 8 ? TL_REASON_OK : TL_REASON_PKT_IPV6_BAD_HEADER);
	}
}

static void
test_decode_ipv6_non_udp_ignored(void **state)
{
	static const uint8_t nhs[] = {6, 58, 59, 50, 51, 135, 139};
	uint8_t ext[8];

	(void)state;
	for (unsigned i = 0; i < sizeof(nhs); i++) {
		struct tl_l3_view v;
		struct tb t;

		build_v6(&t, 0, nhs[i], NULL, 0, 20);
		assert_int_equal(decode(&t, 0, &v), TL_REASON_IGN_NON_UDP);
		put_ext(ext, nhs[i], 8); /* after a destination-options header */
		build_v6(&t, 1, 60, ext, 8, 20);
		assert_int_equal(decode(&t, 0, &v), TL_REASON_IGN_NON_UDP);
	}
}

/* ---- UDP ---- */

static void
test_decode_udp_bad_checksum_rejected(void **state)
{
	struct tl_l3_view v;
	struct tl_udp_view u;
	struct tb t;

	(void)state;
	build_v4(&t, 0, 0, 300);
	t.b[t.len - 1] ^= 0x10;
	assert_int_equal(decode_full(&t, 0, &v, &u), TL_REASON_PKT_UDP_BAD_CHECKSUM);
	build_v6(&t, 0, 17, NULL, 0, 301);
	t.b[t.l4 + 8] ^= 0x01;
	assert_int_equal(decode_full(&t, 0, &v, &u), TL_REASON_PKT_UDP_BAD_CHECKSUM);
	/* A wrong address is caught through the pseudo-header. */
	build_v4(&t, 0, 0, 10);
	t.b[t.l3 + 15] ^= 1;
	ipv4_fix_cksum(t.b + t.l3);
	assert_int_equal(decode_full(&t, 0, &v, &u), TL_REASON_PKT_UDP_BAD_CHECKSUM);
}

static void
test_decode_udp_hw_cksum_flag_skips_check_ok(void **state)
{
	struct tl_l3_view v;
	struct tl_udp_view u;
	struct tb t;

	(void)state;
	build_v4(&t, 0, 0, 100);
	t.b[t.len - 1] ^= 0x10;
	assert_int_equal(decode_full(&t, TL_HW_L4_CKSUM_GOOD, &v, &u), TL_REASON_OK);
	assert_int_equal(
	        decode_full(&t, TL_HW_IP_CKSUM_GOOD, &v, &u), TL_REASON_PKT_UDP_BAD_CHECKSUM);
	/* The NIC's verdict does not cover a reassembled datagram. */
	assert_int_equal(decode(&t, TL_HW_L4_CKSUM_GOOD, &v), TL_REASON_OK);
	assert_int_equal(
	        tl_decode_udp(&v, v.l4, v.l4_len, true, &u), TL_REASON_PKT_UDP_BAD_CHECKSUM);
	t.b[t.len - 1] ^= 0x10;
	assert_int_equal(tl_decode_udp(&v, v.l4, v.l4_len, true, &u), TL_REASON_OK);
}

static void
test_decode_udp_zero_checksum_v4_ok_v6_rejected(void **state)
{
	struct tl_l3_view v;
	struct tl_udp_view u;
	struct tb t;

	(void)state;
	build_v4(&t, 0, 0, 64);
	wr16(t.b + t.l4 + 6, 0);
	assert_int_equal(decode_full(&t, 0, &v, &u), TL_REASON_OK);
	assert_int_equal(u.len, 64);
	build_v6(&t, 0, 17, NULL, 0, 64);
	wr16(t.b + t.l4 + 6, 0);
	assert_int_equal(decode_full(&t, 0, &v, &u), TL_REASON_PKT_UDP_BAD_CHECKSUM);
	assert_int_equal(
	        decode_full(&t, TL_HW_L4_CKSUM_GOOD, &v, &u), TL_REASON_PKT_UDP_BAD_CHECKSUM);
}

static void
test_decode_udp_all_ones_checksum_ok(void **state)
{
	struct tl_l3_view v;
	struct tl_udp_view u;
	uint16_t c;
	struct tb t;

	(void)state;
	/* Choose the last payload word so that the computed checksum is 0, which goes on
	 * the wire as 0xffff and must verify. */
	for (int ver = 4; ver <= 6; ver += 2) {
		if (ver == 4)
			build_v4(&t, 0, 0, 32);
		else
			build_v6(&t, 0, 17, NULL, 0, 32);
		wr16(t.b + t.len - 2, 0);
		wr16(t.b + t.l4 + 6, 0);
		c = ver == 4 ? tl_cksum_l4(src4, dst4, 4, 17, t.b + t.l4, 40)
		             : tl_cksum_l4(src6, dst6, 16, 17, t.b + t.l4, 40);
		memcpy(t.b + t.len - 2, &c, 2);
		udp_fix_cksum(t.b + t.l4, 40, ver == 4 ? src4 : src6, ver == 4 ? dst4 : dst6,
		        ver == 4 ? 4 : 16);
		assert_int_equal(t.b[t.l4 + 6], 0xff);
		assert_int_equal(t.b[t.l4 + 7], 0xff);
		assert_int_equal(decode_full(&t, 0, &v, &u), TL_REASON_OK);
	}
}

static void
test_decode_udp_length_mismatch_bad_length(void **state)
{
	struct tl_l3_view v;
	struct tl_udp_view u;
	struct tb t;

	(void)state;
	for (int ver = 4; ver <= 6; ver += 2) {
		static const int32_t deltas[] = {-1, -8, +1, +100};

		for (unsigned d = 0; d < 4; d++) {
			uint32_t ulen;

			if (ver == 4)
				build_v4(&t, 0, 0, 50);
			else
				build_v6(&t, 0, 17, NULL, 0, 50);
			ulen = (uint32_t)(58 + deltas[d]);
			wr16(t.b + t.l4 + 4, ulen);
			/* Correct checksum over the claimed length would not help: the length
			 * check comes first. */
			assert_int_equal(decode_full(&t, 0, &v, &u), TL_REASON_PKT_UDP_BAD_LENGTH);
			assert_int_equal(decode_full(&t, TL_HW_L4_CKSUM_GOOD, &v, &u),
			        TL_REASON_PKT_UDP_BAD_LENGTH);
		}
		/* UDP length below the header size. */
		wr16(t.b + t.l4 + 4, 7);
		assert_int_equal(decode_full(&t, 0, &v, &u), TL_REASON_PKT_UDP_BAD_LENGTH);
		wr16(t.b + t.l4 + 4, 0);
		assert_int_equal(decode_full(&t, 0, &v, &u), TL_REASON_PKT_UDP_BAD_LENGTH);
	}
}

static void
test_decode_udp_short_ip_payload_udp_truncated(void **state)
{
	struct tl_l3_view v;
	struct tl_udp_view u;
	struct tb t;

	(void)state;
	for (uint32_t l4len = 0; l4len < 8; l4len++) {
		build_v4(&t, 0, 0, 0);
		wr16(t.b + t.l3 + 2, 20 + l4len);
		ipv4_fix_cksum(t.b + t.l3);
		assert_int_equal(decode_full(&t, 0, &v, &u), TL_REASON_PKT_UDP_TRUNCATED);
		build_v6(&t, 0, 17, NULL, 0, 0);
		wr16(t.b + t.l3 + 4, l4len);
		assert_int_equal(decode_full(&t, 0, &v, &u), TL_REASON_PKT_UDP_TRUNCATED);
	}
}

static void
test_decode_udp_empty_payload_ok(void **state)
{
	struct tl_l3_view v;
	struct tl_udp_view u;
	struct tb t;

	(void)state;
	build_v4(&t, 0, 0, 0);
	assert_int_equal(decode_full(&t, 0, &v, &u), TL_REASON_OK);
	assert_int_equal(u.len, 0);
	assert_ptr_equal(u.payload, t.b + t.len);
}

/* ---- hostile input ---- */

static void
test_decode_random_bytes_never_overread(void **state)
{
	uint32_t seed = 12345;

	(void)state;
	/* Random frames, half of them starting from a valid header so the deeper layers
	 * are reached; the verdict must be a PKT/IGN/FRAG reason and any OK view must lie
	 * inside the frame. ASan checks the reads. */
	for (int iter = 0; iter < 20000; iter++) {
		struct tl_l3_view v;
		struct tl_udp_view u;
		struct tb t;
		uint32_t len, nflip;
		enum tl_reason rc;
		uint8_t *copy;

		seed = seed * 1103515245u + 12345u;
		switch ((seed >> 16) % 4) {
		case 0:
			build_v4(&t, (seed >> 20) % 3, ((seed >> 22) % 3) * 4, (seed >> 8) % 200);
			break;
		case 1: {
			uint8_t ext[24];

			put_ext(ext, 44, 16);
			put_frag6(ext + 16, 17, (seed >> 4) % 4 * 8, seed & 1, seed);
			build_v6(&t, (seed >> 20) % 3, 60, ext, 24, (seed >> 8) % 200);
			break;
		}
		case 2:
			build_v6(&t, (seed >> 20) % 3, 17, NULL, 0, (seed >> 8) % 200);
			break;
		default:
			fill_payload(t.b, 300, seed);
			t.len = 300;
			wr16(t.b + 12, seed & 0x10000 ? 0x86dd : 0x0800);
			break;
		}
		nflip = (seed >> 24) % 4;
		for (uint32_t k = 0; k < nflip; k++) {
			seed = seed * 1103515245u + 12345u;
			t.b[(seed >> 8) % t.len] ^= (uint8_t)(1u << ((seed >> 4) & 7));
		}
		seed = seed * 1103515245u + 12345u;
		len = (seed >> 8) % (t.len + 1);
		copy = malloc(len ? len : 1);
		assert_non_null(copy);
		memcpy(copy, t.b, len);
		rc = tl_decode_frame(copy, len, 0, &v);
		assert_true(rc == TL_REASON_OK || tl_reason_is_ignored(rc) ||
		            (rc >= TL_REASON_PKT_ETH_TRUNCATED && rc <= TL_REASON_FRAG_BAD));
		if (rc == TL_REASON_OK) {
			assert_true(v.l4 >= copy && v.l4 + v.l4_len <= copy + len);
			if (!v.is_fragment)
				(void)tl_decode_udp(&v, v.l4, v.l4_len, false, &u);
		}
		free(copy);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_decode_ipv4_udp_untagged_ok),
	        cmocka_unit_test(test_decode_vlan_zero_to_two_tags_ok),
	        cmocka_unit_test(test_decode_vlan_single_tag_each_tpid_ok),
	        cmocka_unit_test(test_decode_vlan_three_tags_too_deep),
	        cmocka_unit_test(test_decode_non_ip_ethertypes_ignored),
	        cmocka_unit_test(test_decode_ipv4_truncated_every_byte_truncated),
	        cmocka_unit_test(test_decode_ipv6_truncated_every_byte_truncated),
	        cmocka_unit_test(test_decode_ipv4_bad_version_bad_header),
	        cmocka_unit_test(test_decode_ipv4_ihl_below_five_bad_header),
	        cmocka_unit_test(test_decode_ipv4_ihl_past_frame_truncated),
	        cmocka_unit_test(test_decode_ipv4_options_skipped_ok),
	        cmocka_unit_test(test_decode_ipv4_total_length_below_header_bad_header),
	        cmocka_unit_test(test_decode_ipv4_total_length_past_frame_truncated),
	        cmocka_unit_test(test_decode_ipv4_link_padding_ignored_ok),
	        cmocka_unit_test(test_decode_ipv4_bad_checksum_rejected),
	        cmocka_unit_test(test_decode_ipv4_hw_cksum_flag_skips_check_ok),
	        cmocka_unit_test(test_decode_ipv4_tcp_and_icmp_ignored),
	        cmocka_unit_test(test_decode_ipv4_fragments_fields_ok),
	        cmocka_unit_test(test_decode_ipv4_fragment_unaligned_length_frag_bad),
	        cmocka_unit_test(test_decode_ipv6_udp_plain_ok),
	        cmocka_unit_test(test_decode_ipv6_each_extension_header_ok),
	        cmocka_unit_test(test_decode_ipv6_atomic_fragment_whole_packet_ok),
	        cmocka_unit_test(test_decode_ipv6_extension_chain_ok),
	        cmocka_unit_test(test_decode_ipv6_fragment_fields_ok),
	        cmocka_unit_test(test_decode_ipv6_fragment_unaligned_length_frag_bad),
	        cmocka_unit_test(test_decode_ipv6_fragmentable_part_not_udp_ignored),
	        cmocka_unit_test(test_decode_ipv6_bad_version_bad_header),
	        cmocka_unit_test(test_decode_ipv6_payload_length_past_frame_truncated),
	        cmocka_unit_test(test_decode_ipv6_extension_length_past_payload_bad_header),
	        cmocka_unit_test(test_decode_ipv6_hop_by_hop_not_first_bad_header),
	        cmocka_unit_test(test_decode_ipv6_extension_chain_limit_bad_header),
	        cmocka_unit_test(test_decode_ipv6_non_udp_ignored),
	        cmocka_unit_test(test_decode_udp_bad_checksum_rejected),
	        cmocka_unit_test(test_decode_udp_hw_cksum_flag_skips_check_ok),
	        cmocka_unit_test(test_decode_udp_zero_checksum_v4_ok_v6_rejected),
	        cmocka_unit_test(test_decode_udp_all_ones_checksum_ok),
	        cmocka_unit_test(test_decode_udp_length_mismatch_bad_length),
	        cmocka_unit_test(test_decode_udp_short_ip_payload_udp_truncated),
	        cmocka_unit_test(test_decode_udp_empty_payload_ok),
	        cmocka_unit_test(test_decode_random_bytes_never_overread),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
