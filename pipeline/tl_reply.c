/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Replies on the wire. The link layer is walked exactly as tl_decode_frame() walks it
 * (the same three TPIDs, at most two tags), so every frame the decoder accepts gives a
 * peer. Multi-byte fields are written byte by byte: VLAN tags put the IP header at any
 * even offset in @c out, so casting to header structs would be misaligned.
 */
#include <errno.h>
#include <string.h>

#include "tl_cksum.h"
#include "tl_reply.h"
#include "tl_wire.h"

#define ETH_ALEN 6

#define IPV4_HDR_LEN 20
#define IPV6_HDR_LEN 40
#define UDP_HDR_LEN 8
#define NH_UDP 17
#define REPLY_TTL 64
/* Largest IPv4 total length, IPv6 payload length and UDP length alike. */
#define LEN16_MAX 65535u

static inline uint16_t
rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline void
wr16(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline int
is_vlan_tpid(uint16_t t)
{
	return t == ETHERTYPE_8021Q || t == ETHERTYPE_8021AD || t == ETHERTYPE_QINQ_LEGACY;
}

static inline uint16_t
ethertype_of(uint8_t ip_version)
{
	return ip_version == 4 ? ETHERTYPE_IPV4 : ETHERTYPE_IPV6;
}

int
tl_peer_from(struct tl_peer *p, const uint8_t *frame, uint32_t len, const struct tl_l3_view *l3,
        uint16_t sport, uint16_t dport)
{
	uint32_t off = ETH_HDR_LEN, addr_off, alen;
	unsigned tags = 0;
	uint16_t type;

	if (p == NULL || frame == NULL || l3 == NULL || len < ETH_HDR_LEN)
		return -EINVAL;
	if (l3->ip_version != 4 && l3->ip_version != 6)
		return -EINVAL;
	type = rd16(frame + 12);
	while (is_vlan_tpid(type)) {
		if (tags == VLAN_MAX_TAGS || len - off < VLAN_TAG_LEN)
			return -EINVAL;
		/* The view must describe this frame: a VID that differs means it does not
		 * (VID 0, a priority tag, is a tag all the same). */
		if ((rd16(frame + off) & 0x0fff) != l3->vlan[tags])
			return -EINVAL;
		type = rd16(frame + off + 2);
		off += VLAN_TAG_LEN;
		tags++;
	}
	if (type != ethertype_of(l3->ip_version))
		return -EINVAL;
	for (; tags < VLAN_MAX_TAGS; tags++)
		if (l3->vlan[tags] != 0)
			return -EINVAL;
	/* The IP source address sits right after the link header: finding @p l3's there
	 * proves the header length is the one the decoder used. */
	alen = l3->ip_version == 4 ? 4 : 16;
	addr_off = off + (l3->ip_version == 4 ? 12 : 8);
	if (len < addr_off + alen || (frame[off] >> 4) != l3->ip_version ||
	        memcmp(frame + addr_off, l3->src, alen) != 0)
		return -EINVAL;

	memcpy(p->l2, frame, off);
	memset(p->l2 + off, 0, sizeof(p->l2) - off);
	p->l2_len = (uint8_t)off;
	p->ip_version = l3->ip_version;
	memcpy(p->src, l3->src, sizeof(p->src));
	memcpy(p->dst, l3->dst, sizeof(p->dst));
	p->sport = sport;
	p->dport = dport;
	return 0;
}

/* A peer that did not come from tl_peer_from() (or was damaged since) is refused rather
 * than sent: a wrong EtherType or TPID would put garbage on the wire. */
static int
peer_valid(const struct tl_peer *p)
{
	unsigned tags;

	if (p->ip_version != 4 && p->ip_version != 6)
		return 0;
	if (p->l2_len != ETH_HDR_LEN && p->l2_len != ETH_HDR_LEN + VLAN_TAG_LEN &&
	        p->l2_len != ETH_HDR_LEN + VLAN_MAX_TAGS * VLAN_TAG_LEN)
		return 0;
	tags = (p->l2_len - ETH_HDR_LEN) / VLAN_TAG_LEN;
	for (unsigned i = 0; i < tags; i++)
		if (!is_vlan_tpid(rd16(p->l2 + 12 + i * VLAN_TAG_LEN)))
			return 0;
	return rd16(p->l2 + p->l2_len - 2) == ethertype_of(p->ip_version);
}

long
tl_reply_build(const struct tl_peer *req, const uint8_t *payload, uint32_t len, uint32_t mtu,
        uint8_t *out, size_t cap)
{
	uint32_t l3_hdr, alen;
	uint64_t ip_len, frame_len;
	uint8_t *ip, *udp;
	uint16_t c;

	if (req == NULL || out == NULL || (payload == NULL && len != 0) || !peer_valid(req))
		return -EINVAL;
	l3_hdr = req->ip_version == 4 ? IPV4_HDR_LEN : IPV6_HDR_LEN;
	alen = req->ip_version == 4 ? 4 : 16;
	/* 64-bit sums: len near UINT32_MAX must not wrap into a small, "fitting" size. */
	ip_len = (uint64_t)l3_hdr + UDP_HDR_LEN + len;
	if ((uint64_t)UDP_HDR_LEN + len > LEN16_MAX || ip_len > mtu ||
	        (req->ip_version == 4 && ip_len > LEN16_MAX))
		return -EMSGSIZE;
	frame_len = req->l2_len + ip_len;
	if (frame_len > cap)
		return -ENOSPC;

	/* The request's source MAC is the reply's destination; tags and EtherType stay. */
	memcpy(out, req->l2 + ETH_ALEN, ETH_ALEN);
	memcpy(out + ETH_ALEN, req->l2, ETH_ALEN);
	memcpy(out + 2 * ETH_ALEN, req->l2 + 2 * ETH_ALEN, req->l2_len - 2 * ETH_ALEN);

	ip = out + req->l2_len;
	udp = ip + l3_hdr;
	/* memmove: a caller may have built the payload in place, where it belongs. */
	if (len != 0)
		memmove(udp + UDP_HDR_LEN, payload, len);
	wr16(udp, req->dport);
	wr16(udp + 2, req->sport);
	wr16(udp + 4, UDP_HDR_LEN + len);
	wr16(udp + 6, 0);

	if (req->ip_version == 4) {
		ip[0] = 0x45; /* version 4, IHL 5: no options */
		ip[1] = 0;
		wr16(ip + 2, (uint32_t)ip_len);
		wr16(ip + 4, 0); /* id */
		wr16(ip + 6, 0); /* DF clear, no fragment offset */
		ip[8] = REPLY_TTL;
		ip[9] = NH_UDP;
		wr16(ip + 10, 0);
		memcpy(ip + 12, req->dst, 4);
		memcpy(ip + 16, req->src, 4);
		c = tl_cksum(ip, IPV4_HDR_LEN);
		memcpy(ip + 10, &c, 2); /* already in network order */
	} else {
		ip[0] = 0x60; /* version 6, traffic class and flow label 0 */
		ip[1] = 0;
		ip[2] = 0;
		ip[3] = 0;
		wr16(ip + 4, UDP_HDR_LEN + len);
		ip[6] = NH_UDP;
		ip[7] = REPLY_TTL;
		memcpy(ip + 8, req->dst, 16);
		memcpy(ip + 24, req->src, 16);
	}
	/* Always checksummed, IPv4 included: an ACK that is corrupted in flight would
	 * acknowledge the wrong frame. A computed 0 is sent as all ones (RFC 768), since 0
	 * means "none" over IPv4 and is invalid over IPv6. */
	/* Both IP headers end with the source and destination addresses. */
	c = tl_cksum_l4(
	        ip + l3_hdr - 2 * alen, ip + l3_hdr - alen, alen, NH_UDP, udp, UDP_HDR_LEN + len);
	if (c == 0)
		c = 0xffff;
	memcpy(udp + 6, &c, 2);
	return (long)frame_len;
}
