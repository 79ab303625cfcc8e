/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * L2-L4 decoding. Every read is preceded by a bounds check against the bytes left in
 * the frame, and multi-byte fields are read byte by byte: frames arrive at any
 * alignment (VLAN tags shift the IP header by 4), so casting to header structs would be
 * undefined behaviour. The compiler turns the byte reads into single loads plus bswap.
 */
#include <string.h>

#include "tl_cksum.h"
#include "tl_decode.h"
#include "tl_wire.h"

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)


#define IPV4_MIN_HDR 20
#define IPV4_MF 0x2000
#define IPV4_OFF_MASK 0x1fff

#define IPV6_HDR_LEN 40
#define IPV6_FRAG_HDR_LEN 8
#define IPV6_OFF_MASK 0xfff8
#define IPV6_M 0x0001
/* Extension headers walked before giving up: real stacks send at most a few; a long
 * chain is an evasion attempt, not telemetry. */
#define IPV6_MAX_EXT_HDRS 8

#define NH_HOPOPTS 0
#define NH_UDP 17
#define NH_ROUTING 43
#define NH_FRAGMENT 44
#define NH_DSTOPTS 60

#define UDP_HDR_LEN 8

static inline uint16_t
rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t
rd32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline int
is_vlan_tpid(uint16_t t)
{
	return t == ETHERTYPE_8021Q || t == ETHERTYPE_8021AD || t == ETHERTYPE_QINQ_LEGACY;
}

/*
 * Checks that only the fragment itself can fail. Every fragment but the last carries a
 * multiple of 8 bytes (the offset unit); an empty non-last fragment adds nothing but
 * would still use up a reassembly fragment slot, so it is refused as well. Offsets past
 * 65535 are left to the reassembly table, which must drop the whole datagram for them.
 */
static inline enum tl_reason
check_fragment(const struct tl_l3_view *v)
{
	if (v->more_frags && (v->l4_len == 0 || (v->l4_len & 7u) != 0))
		return TL_REASON_FRAG_BAD;
	return TL_REASON_OK;
}

static enum tl_reason
decode_ipv4(const uint8_t *b, uint32_t left, uint32_t hw_flags, struct tl_l3_view *out)
{
	uint32_t ihl, tot;
	uint16_t fo;

	if (unlikely(left < IPV4_MIN_HDR))
		return TL_REASON_PKT_IPV4_TRUNCATED;
	if (unlikely((b[0] >> 4) != 4))
		return TL_REASON_PKT_IPV4_BAD_HEADER;
	ihl = (b[0] & 0xfu) * 4;
	if (unlikely(ihl < IPV4_MIN_HDR))
		return TL_REASON_PKT_IPV4_BAD_HEADER;
	if (unlikely(ihl > left))
		return TL_REASON_PKT_IPV4_TRUNCATED;
	/* Verify before trusting total length: a corrupted length is a checksum error. */
	if (!(hw_flags & TL_HW_IP_CKSUM_GOOD) && unlikely(tl_cksum(b, ihl) != 0))
		return TL_REASON_PKT_IPV4_BAD_CHECKSUM;
	tot = rd16(b + 2);
	if (unlikely(tot < ihl))
		return TL_REASON_PKT_IPV4_BAD_HEADER;
	/* Bytes after tot are Ethernet padding (minimum frame size) and are ignored. */
	if (unlikely(tot > left))
		return TL_REASON_PKT_IPV4_TRUNCATED;
	if (unlikely(b[9] != NH_UDP))
		return TL_REASON_IGN_NON_UDP;

	out->ip_version = 4;
	memcpy(out->src, b + 12, 4);
	memset(out->src + 4, 0, 12);
	memcpy(out->dst, b + 16, 4);
	memset(out->dst + 4, 0, 12);
	out->l4 = b + ihl;
	out->l4_len = tot - ihl;

	/* DF (0x4000) and the reserved bit are irrelevant to a receiver. */
	fo = rd16(b + 6);
	if (likely((fo & (IPV4_MF | IPV4_OFF_MASK)) == 0)) {
		out->is_fragment = 0;
		out->more_frags = 0;
		out->frag_id = 0;
		out->frag_off = 0;
		return TL_REASON_OK;
	}
	out->is_fragment = 1;
	out->more_frags = (fo & IPV4_MF) != 0;
	out->frag_id = rd16(b + 4);
	out->frag_off = (uint32_t)(fo & IPV4_OFF_MASK) * 8;
	return check_fragment(out);
}

static enum tl_reason
decode_ipv6(const uint8_t *b, uint32_t left, struct tl_l3_view *out)
{
	uint32_t end, pos, hlen;
	uint8_t nh;

	if (unlikely(left < IPV6_HDR_LEN))
		return TL_REASON_PKT_IPV6_TRUNCATED;
	if (unlikely((b[0] >> 4) != 6))
		return TL_REASON_PKT_IPV6_BAD_HEADER;
	/* A zero payload length means a jumbogram (RFC 2675): its hop-by-hop header then
	 * fails the walk below as longer than the payload, which is the right verdict for a
	 * link that cannot carry one. */
	end = IPV6_HDR_LEN + rd16(b + 4);
	if (unlikely(end > left))
		return TL_REASON_PKT_IPV6_TRUNCATED;

	out->ip_version = 6;
	memcpy(out->src, b + 8, 16);
	memcpy(out->dst, b + 24, 16);
	out->is_fragment = 0;
	out->more_frags = 0;
	out->frag_id = 0;
	out->frag_off = 0;

	/*
	 * Walk the extension headers. The payload length was checked against the frame, so
	 * a header that runs past it is inconsistent (bad header), not truncated. Routing
	 * headers are skipped without being processed: a packet that reached us has
	 * segments-left 0, so the header's destination field is the final one that the UDP
	 * pseudo-header uses.
	 */
	pos = IPV6_HDR_LEN;
	nh = b[6];
	for (unsigned n = 0; nh != NH_UDP; n++) {
		if (unlikely(n == IPV6_MAX_EXT_HDRS))
			return TL_REASON_PKT_IPV6_BAD_HEADER;
		switch (nh) {
		case NH_HOPOPTS:
			/* RFC 8200 4.1: only allowed right after the IPv6 header. */
			if (n != 0)
				return TL_REASON_PKT_IPV6_BAD_HEADER;
			/* fall through */
		case NH_ROUTING:
		case NH_DSTOPTS:
			if (end - pos < 8)
				return TL_REASON_PKT_IPV6_BAD_HEADER;
			hlen = ((uint32_t)b[pos + 1] + 1) * 8;
			if (hlen > end - pos)
				return TL_REASON_PKT_IPV6_BAD_HEADER;
			nh = b[pos];
			pos += hlen;
			break;
		case NH_FRAGMENT: {
			uint16_t fo;

			if (end - pos < IPV6_FRAG_HDR_LEN)
				return TL_REASON_PKT_IPV6_BAD_HEADER;
			nh = b[pos];
			fo = rd16(b + pos + 2);
			out->frag_id = rd32(b + pos + 4);
			pos += IPV6_FRAG_HDR_LEN;
			/*
			 * What follows is the fragmentable part: only the first fragment
			 * could be parsed further, so every fragment of a datagram gets the
			 * same verdict from the Next Header field alone. Datagrams whose
			 * fragmentable part starts with another extension header are not
			 * reassembled (the output must start with the UDP header).
			 */
			if (nh != NH_UDP)
				return TL_REASON_IGN_NON_UDP;
			out->l4 = b + pos;
			out->l4_len = end - pos;
			if ((fo & (IPV6_OFF_MASK | IPV6_M)) == 0)
				return TL_REASON_OK; /* atomic fragment (RFC 6946): whole packet */
			out->is_fragment = 1;
			out->more_frags = (fo & IPV6_M) != 0;
			out->frag_off = fo & IPV6_OFF_MASK;
			return check_fragment(out);
		}
		default:
			return TL_REASON_IGN_NON_UDP;
		}
	}
	out->l4 = b + pos;
	out->l4_len = end - pos;
	return TL_REASON_OK;
}

enum tl_reason
tl_decode_frame(const uint8_t *frame, uint32_t len, uint32_t hw_flags, struct tl_l3_view *out)
{
	uint32_t off = ETH_HDR_LEN;
	uint16_t type;

	if (unlikely(len < ETH_HDR_LEN))
		return TL_REASON_PKT_ETH_TRUNCATED;
	type = rd16(frame + 12);
	out->hw_flags = (uint8_t)hw_flags;
	out->vlan[0] = 0;
	out->vlan[1] = 0;
	if (likely(type == ETHERTYPE_IPV4))
		return decode_ipv4(frame + off, len - off, hw_flags, out);

	for (unsigned tags = 0; is_vlan_tpid(type); tags++) {
		if (unlikely(tags == VLAN_MAX_TAGS))
			return TL_REASON_PKT_VLAN_TOO_DEEP;
		if (unlikely(len - off < VLAN_TAG_LEN))
			return TL_REASON_PKT_VLAN_TRUNCATED;
		out->vlan[tags] = rd16(frame + off) & 0x0fff;
		type = rd16(frame + off + 2);
		off += VLAN_TAG_LEN;
	}
	if (likely(type == ETHERTYPE_IPV4))
		return decode_ipv4(frame + off, len - off, hw_flags, out);
	if (type == ETHERTYPE_IPV6)
		return decode_ipv6(frame + off, len - off, out);
	return TL_REASON_IGN_NON_IP;
}

enum tl_reason
tl_decode_udp(const struct tl_l3_view *l3, const uint8_t *udp, uint32_t len, bool reassembled,
        struct tl_udp_view *out)
{
	uint16_t cksum;

	if (unlikely(len < UDP_HDR_LEN))
		return TL_REASON_PKT_UDP_TRUNCATED;
	/* Equal, not merely <=: bytes after the UDP length inside the IP payload are a
	 * smuggling channel, and a longer UDP length means the datagram was cut. */
	if (unlikely(rd16(udp + 4) != len))
		return TL_REASON_PKT_UDP_BAD_LENGTH;
	cksum = rd16(udp + 6);
	if (cksum == 0) {
		/* "No checksum" exists only over IPv4 (RFC 8200 8.1); the rule is about the
		 * field's value, so it applies even when the NIC vouched for the packet. */
		if (l3->ip_version != 4)
			return TL_REASON_PKT_UDP_BAD_CHECKSUM;
	} else if (reassembled || !(l3->hw_flags & TL_HW_L4_CKSUM_GOOD)) {
		/* The NIC saw only one fragment: its verdict never covers a reassembly. */
		size_t alen = l3->ip_version == 4 ? 4 : 16;

		if (unlikely(tl_cksum_l4(l3->src, l3->dst, alen, NH_UDP, udp, len) != 0))
			return TL_REASON_PKT_UDP_BAD_CHECKSUM;
	}
	out->sport = rd16(udp);
	out->dport = rd16(udp + 2);
	out->payload = udp + UDP_HDR_LEN;
	out->len = len - UDP_HDR_LEN;
	return TL_REASON_OK;
}
