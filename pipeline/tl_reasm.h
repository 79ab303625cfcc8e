/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * IPv4 and IPv6 fragment reassembly for datagrams up to 65535 bytes.
 *
 * One table per worker (single-threaded, no locks). All memory is allocated by
 * tl_reasm_create(): max_flows slots of 64 KiB each plus a hash index; the hot path
 * never allocates. A datagram is keyed by (version, src, dst, id, protocol). Rules:
 *  - exact duplicate fragments are ignored and counted (FRAG_DUPLICATE);
 *  - overlapping fragments with different bytes drop the whole datagram (FRAG_OVERLAP,
 *    as RFC 5722 requires for IPv6; applied to IPv4 too: overlap is an attack signature);
 *  - a datagram incomplete after `timeout` is dropped (FRAG_TIMEOUT);
 *  - data past 65535 bytes drops the datagram (FRAG_TOO_BIG);
 *  - more than max_frags fragments drops the datagram (FRAG_TOO_MANY);
 *  - no free slot: the oldest in-progress datagram is evicted and counted as FRAG_TIMEOUT
 *    only if it has expired, otherwise the new fragment is dropped (FRAG_TABLE_FULL).
 */
#ifndef TL_REASM_H
#define TL_REASM_H

#include <stdint.h>

#include "tl_decode.h"
#include "tl_opt.h"
#include "tl_reason.h"

struct tl_reasm_conf {
	uint64_t max_flows;  /**< datagrams in progress at once per worker */
	uint64_t max_frags;  /**< fragments per datagram */
	uint64_t timeout_ns; /**< reassembly timer */
};

/** Option table for `pipeline.reassembly:`. */
extern const struct tl_opt tl_reasm_opts[];

struct tl_reasm;

/** Reasons counted while expiring or dropping; the caller adds them to its counters. */
struct tl_reasm_drops {
	uint64_t n[TL_REASON_MAX];
};

/**
 * Create a table. @return 0 with *out set (caller owns; tl_reasm_free), -EINVAL, -ENOMEM.
 */
int tl_reasm_create(const struct tl_reasm_conf *conf, struct tl_reasm **out);

/** Free a table. NULL-safe. */
void tl_reasm_free(struct tl_reasm *r);

/**
 * Add one fragment.
 * @param r       the table.
 * @param l3      a fragment from tl_decode_frame() (is_fragment == 1).
 * @param now_ns  a monotonic clock in ns.
 * @param drops   reasons counted as a side effect (expired datagrams found on the way).
 * @param dgram   out on completion: the reassembled IP payload (UDP header + data).
 *                Valid until the next tl_reasm_* call on @p r.
 * @param dgram_len out on completion.
 * @return TL_REASON_OK with *dgram set when the datagram is complete; TL_REASON_OK
 *         with *dgram == NULL when the fragment was stored; a FRAG_* reason when the
 *         fragment (or its whole datagram) was dropped.
 */
enum tl_reason tl_reasm_add(struct tl_reasm *r, const struct tl_l3_view *l3, uint64_t now_ns,
		struct tl_reasm_drops *drops, const uint8_t **dgram, uint32_t *dgram_len);

/**
 * Expire datagrams older than the timeout (call now and then, e.g. once per idle poll).
 * @param now_ns  monotonic clock; UINT64_MAX expires everything (at shutdown).
 * @return the number expired; each is counted as FRAG_TIMEOUT in @p drops.
 */
uint32_t tl_reasm_expire(struct tl_reasm *r, uint64_t now_ns, struct tl_reasm_drops *drops);

/** @return datagrams currently in progress. */
uint32_t tl_reasm_in_progress(const struct tl_reasm *r);

#endif
