/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * pcap writer for `tapline gen --pcap`: telemetry datagrams as Ethernet frames
 * (DLT_EN10MB, written with libpcap's pcap_open_dead() + pcap_dump_open()).
 *
 * Frames: IPv4/UDP mostly, IPv6/UDP on a configurable share, 802.1Q and QinQ (802.1ad
 * outer tag) on a configurable share of senders, some IPv4 senders with a header option
 * (router alert) and some IPv6 senders with a hop-by-hop header. IPv4 header and UDP
 * checksums are correct (tl_cksum.h) unless a fault says otherwise. Datagrams larger
 * than the MTU are split into IPv4 fragments or IPv6 fragment headers, sent out of order
 * now and then; all fragments of a datagram are written back to back.
 *
 * Addresses: senders 198.18.1.1-198.18.1.48 -> 198.18.0.1 and 2001:db8:1::1-2001:db8:1::10
 * -> 2001:db8::1 (benchmark and documentation ranges), source port 40000 + sender,
 * destination port conf.port.
 *
 * Sharding (conf.shards > 1): frames go to "<stem>-<i><ext>" (out.pcap -> out-0.pcap,
 * out-1.pcap, ...) by a hash of the source and destination addresses only, the way NIC
 * RSS hashes fragments, so every fragment of a datagram (and every datagram of a
 * sender) lands in the same file.
 *
 * Packet-level faults on conf.fault_share of datagrams (such a datagram carries exactly
 * one event; the caller packs by the plan): udp_bad_checksum (wrong, or zero over IPv6),
 * ipv4_bad_checksum (every frame of the datagram), frag_overlap (all fragments but the
 * last, then the first one again with different bytes: the datagram is dropped),
 * frag_duplicate (one fragment twice before the datagram completes: the event is still
 * delivered). Non-telemetry frames are added on conf.noise_share of datagrams: ARP or
 * LLDP (ignored_non_ip), DNS to UDP port 53 (ignored_port), TCP SYN (ignored_non_udp).
 *
 * The stats count what the pipeline must count for the frames written (struct
 * tl_counters names): frames, bytes, accepted datagrams, reassembled datagrams, and per
 * reason the frames (PKT_*), datagrams or fragments (FRAG_*) and ignored frames.
 *
 * Thread-safety: one writer per thread. Deterministic for a given seed and call sequence.
 */
#ifndef TL_PCAPW_H
#define TL_PCAPW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tl_reason.h"

#define TL_PCAPW_MAX_SHARDS 64
#define TL_PCAPW_UDP_MAX 65507 /**< largest UDP payload over IPv4 (and used for IPv6) */

struct tl_pcapw_conf {
	const char *path;       /**< output file (the stem of the shards' names) */
	uint32_t shards;        /**< 1..TL_PCAPW_MAX_SHARDS (1) */
	uint16_t port;          /**< telemetry destination UDP port (5170) */
	uint32_t mtu;           /**< IP MTU, 1280..9000 (1500) */
	uint32_t datagram_size; /**< NDJSON bytes per ordinary datagram, 256..65507 (8192) */
	uint32_t big_size;      /**< NDJSON bytes per big datagram, 40+ fragments (60000) */
	double ipv6_share;      /**< share of datagrams sent over IPv6 (0.1) */
	double vlan_share;      /**< share of senders behind VLAN tags, 1/3 QinQ (0.2) */
	double fault_share;     /**< share of datagrams with a packet-level fault (0) */
	double noise_share;     /**< non-telemetry frames per datagram (0.01) */
	uint64_t seed;          /**< (1) */
	uint64_t start_ns;      /**< time of the first frame, ns since the epoch */
};

/** Fill @p conf with the defaults above (path NULL, start_ns 2024-03-10T00:00:00Z). */
void tl_pcapw_conf_defaults(struct tl_pcapw_conf *conf);

/** The shape of the next datagram, chosen by the writer. */
struct tl_pcapw_plan {
	enum tl_reason fault; /**< TL_REASON_OK or the packet fault it will carry */
	uint32_t max_payload; /**< NDJSON bytes it should carry (one larger event may go alone) */
	bool single;          /**< carry exactly one event */
	bool v6;              /**< sent over IPv6 */
	uint32_t sender;      /**< sending flow (index among the IPv4 or IPv6 senders) */
	uint8_t noise;        /**< non-telemetry frame written before it: 0 none, else a kind */
};

/** @return 1 if the events of a datagram with @p fault never reach the parser. */
static inline int
tl_pcapw_fault_loses(enum tl_reason fault)
{
	return fault != TL_REASON_OK && fault != TL_REASON_FRAG_DUPLICATE;
}

/** Expected pipeline counters for everything written so far. */
struct tl_pcapw_stats {
	uint64_t frames;                /**< frames written (all files) */
	uint64_t bytes;                 /**< their bytes */
	uint64_t datagrams;             /**< telemetry datagrams the pipeline accepts */
	uint64_t reassembled;           /**< of which arrived in fragments */
	uint64_t written;               /**< telemetry datagrams written, faulted ones included */
	uint64_t fragmented;            /**< of which were split into fragments */
	uint64_t reason[TL_REASON_MAX]; /**< per reason, as the pipeline counts it */
};

struct tl_pcapw;

/**
 * Open the output file(s).
 * @param conf  settings; copied (the path too).
 * @param out   out: the writer (caller owns; tl_pcapw_close).
 * @param msg   buffer for a human-readable reason on failure (may be NULL).
 * @return 0; -EINVAL (bad conf, with @p msg); TL_E_PCAP (a file could not be created,
 *         with @p msg); -ENOMEM.
 */
int tl_pcapw_open(
        const struct tl_pcapw_conf *conf, struct tl_pcapw **out, char *msg, size_t msglen);

/** Choose the shape of the next datagram (advances the writer's random state). */
void tl_pcapw_plan(struct tl_pcapw *w, struct tl_pcapw_plan *plan);

/**
 * Write one telemetry datagram as frames, as @p plan says (fault, sender, fragments).
 * @param w        the writer.
 * @param plan     from tl_pcapw_plan().
 * @param payload  the NDJSON bytes, 1..TL_PCAPW_UDP_MAX.
 * @param ts_ns    capture time of its first frame (kept monotonic by the writer).
 * @return 0; -EINVAL (length out of range).
 */
int tl_pcapw_write(struct tl_pcapw *w, const struct tl_pcapw_plan *plan, const uint8_t *payload,
        uint32_t len, uint64_t ts_ns);

/** @return the counters so far (owned by @p w, valid until tl_pcapw_close). */
const struct tl_pcapw_stats *tl_pcapw_stats(const struct tl_pcapw *w);

/**
 * Shard file name @p i for @p path with @p shards shards ("out.pcap" -> "out-1.pcap";
 * @p path itself when shards == 1).
 * @return the length written (snprintf semantics).
 */
int tl_pcapw_shard_path(const char *path, uint32_t shards, uint32_t i, char *buf, size_t cap);

/**
 * Flush and close every file, free the writer. NULL-safe.
 * @return 0, or TL_E_PCAP if anything could not be written.
 */
int tl_pcapw_close(struct tl_pcapw *w);

#endif
