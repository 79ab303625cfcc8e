/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * Per-worker counters. Each worker owns one cache-aligned struct and is its only
 * writer (plain increments, no atomics); readers (the exit report, /metrics) sum all
 * workers' structs with relaxed loads and accept a momentarily torn total.
 */
#ifndef TL_COUNTERS_H
#define TL_COUNTERS_H

#include <stdint.h>
#include <stdio.h>

#include "tl_reason.h"

struct tl_counters {
	uint64_t rx_frames;      /**< frames seen by the pipeline */
	uint64_t rx_bytes;       /**< their bytes */
	uint64_t udp_datagrams;  /**< telemetry datagrams accepted (after reassembly) */
	uint64_t reassembled;    /**< of which reassembled from fragments */
	uint64_t events_valid;   /**< events accepted (normal + error) */
	uint64_t events_error;   /**< of which error events */
	uint64_t events_matched; /**< events some classify pattern matched (error or tag) */
	uint64_t classify_failed;/**< Hyperscan scans that failed (results partial) */
	uint64_t events_rejected;/**< events rejected, by reason in reason[] */
	uint64_t event_bytes;    /**< bytes of accepted events */
	uint64_t rx_nombuf;      /**< driver: RX mbuf allocation failures (from the NIC) */
	uint64_t rx_missed;      /**< driver: packets the NIC dropped (imissed) */
	uint64_t tx_frames, tx_dropped; /**< driver: replies sent / lost (no mbuf, queue full) */
	uint64_t reason[TL_REASON_MAX]; /**< drops/ignores/rejects by reason */
} __attribute__((aligned(64)));

/** Add @p src into @p dst field by field. */
void tl_counters_add(struct tl_counters *dst, const struct tl_counters *src);

/**
 * Print the counters as `figure <name> <value>` lines: events_valid, events_rejected,
 * error_events, frames, bytes, datagrams, reassembled, then one rejected_<reason> line
 * per reason with a non-zero count (ignored_* lines for ignored traffic).
 * @return 0, -EIO.
 */
int tl_counters_print_figures(FILE *out, const struct tl_counters *c);

#endif
