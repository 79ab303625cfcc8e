/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * Replies on the wire: where a datagram came from (struct tl_peer) and the Ethernet frame
 * that answers it (framed-protocol ACKs go back through the worker's own TX queue).
 *
 * The peer keeps the request's link header verbatim (MACs and up to two VLAN tags with
 * their TPIDs and priority bits), its IP addresses and UDP ports. The reply swaps source
 * and destination at every layer and keeps the VLAN tags as they were, so it travels back
 * on the path the request took. IPv4 replies get DF clear, TTL 64, a fresh header
 * checksum and a UDP checksum; IPv6 replies hop limit 64 and the mandatory UDP checksum.
 * Replies never fragment: a payload that does not fit one frame of @c mtu is refused.
 */
#ifndef TL_REPLY_H
#define TL_REPLY_H

#include <stddef.h>
#include <stdint.h>

#include "tl_decode.h"

#define TL_PEER_L2_MAX 22 /**< Ethernet header + two 802.1Q/802.1ad tags */

/** Where a datagram came from. */
struct tl_peer {
	uint8_t l2[TL_PEER_L2_MAX]; /**< the request's link header: dst MAC, src MAC, tags,
	                                 EtherType */
	uint8_t l2_len;             /**< 14, 18 or 22 */
	uint8_t ip_version;         /**< 4 or 6 */
	uint8_t src[16];            /**< the request's source address (first 4 bytes: IPv4) */
	uint8_t dst[16];            /**< the request's destination address */
	uint16_t sport, dport;      /**< the request's UDP ports, host order */
};

/**
 * Fill @p p from a received frame and its decoded view.
 * @param frame  the Ethernet frame as received (its link header is copied).
 * @param len    its length.
 * @param l3     tl_decode_frame()'s view of it.
 * @param sport, dport  the datagram's UDP ports.
 * @return 0; -EINVAL (the link header is not 14/18/22 bytes as @p l3 describes it).
 */
int tl_peer_from(struct tl_peer *p, const uint8_t *frame, uint32_t len,
		const struct tl_l3_view *l3, uint16_t sport, uint16_t dport);

/**
 * Build the frame that answers @p req with @p payload (UDP from req's destination
 * address and port to req's source).
 * @param out, cap  where to write it.
 * @param mtu       the largest IP packet allowed (e.g. 1500).
 * @return the frame length; -EINVAL (bad peer); -EMSGSIZE (payload does not fit @p mtu);
 *         -ENOSPC (@p cap too small).
 */
long tl_reply_build(const struct tl_peer *req, const uint8_t *payload, uint32_t len,
		uint32_t mtu, uint8_t *out, size_t cap);

#endif
