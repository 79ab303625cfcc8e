/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * L2-L4 decoding: Ethernet, 802.1Q / 802.1ad (QinQ, at most two tags), IPv4 (options),
 * IPv6 (hop-by-hop, routing, destination-options and fragment extension headers), UDP.
 *
 * Pure functions over a byte view of one frame: no allocation, no state, reentrant.
 * Checksums are verified in software unless the caller says the NIC already did.
 */
#ifndef TL_DECODE_H
#define TL_DECODE_H

#include <stdbool.h>
#include <stdint.h>

#include "tl_reason.h"

/** Flags the driver passes in from hardware offloads. */
#define TL_HW_IP_CKSUM_GOOD 0x1u  /**< NIC verified the IPv4 header checksum */
#define TL_HW_L4_CKSUM_GOOD 0x2u  /**< NIC verified the UDP checksum */

/** What tl_decode_frame() found: an IP packet carrying UDP (or a fragment of one). */
struct tl_l3_view {
	uint8_t ip_version;   /**< 4 or 6 */
	uint8_t is_fragment;  /**< 1 if this is a fragment (then udp fields are not set) */
	uint8_t more_frags;   /**< fragment: MF bit */
	uint8_t hw_flags;     /**< copied from the caller */
	uint32_t frag_id;     /**< fragment: IPv4 identification or IPv6 fragment id */
	uint32_t frag_off;    /**< fragment: offset in bytes */
	uint8_t src[16];      /**< source address (first 4 bytes for IPv4) */
	uint8_t dst[16];      /**< destination address */
	uint16_t vlan[2];     /**< VLAN ids, outer first; 0 if absent */
	const uint8_t *l4;    /**< IP payload: UDP header (unfragmented) or fragment data */
	uint32_t l4_len;      /**< its length per the IP header (link padding excluded) */
};

/** A validated UDP datagram. */
struct tl_udp_view {
	uint16_t sport, dport;
	const uint8_t *payload;
	uint32_t len;
};

/**
 * Decode Ethernet/VLAN/IP of one frame.
 * @param frame, len  the frame as received (FCS not included).
 * @param hw_flags    TL_HW_* flags from the NIC.
 * @param out         filled on TL_REASON_OK.
 * @return TL_REASON_OK for a UDP packet or a fragment of a UDP datagram;
 *         IGN_NON_IP / IGN_NON_UDP for other traffic; a PKT_* reason for malformed frames;
 *         FRAG_BAD for a non-last fragment whose length is zero or not a multiple of 8.
 */
enum tl_reason tl_decode_frame(const uint8_t *frame, uint32_t len, uint32_t hw_flags,
		struct tl_l3_view *out);

/**
 * Validate a whole UDP datagram (unfragmented, or reassembled) against @p l3's addresses:
 * header length, UDP length vs IP payload length, checksum (zero allowed over IPv4 only;
 * skipped if l3->hw_flags has TL_HW_L4_CKSUM_GOOD and the datagram was not reassembled).
 * @param l3       addresses and version.
 * @param udp, len the datagram (UDP header + payload).
 * @param reassembled true if @p udp came from the reassembly table.
 * @param out      filled on TL_REASON_OK.
 * @return TL_REASON_OK or PKT_UDP_TRUNCATED / PKT_UDP_BAD_LENGTH / PKT_UDP_BAD_CHECKSUM.
 */
enum tl_reason tl_decode_udp(const struct tl_l3_view *l3, const uint8_t *udp, uint32_t len,
		bool reassembled, struct tl_udp_view *out);

#endif
