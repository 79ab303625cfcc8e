/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * Freshness probes for `tapline gen --probe`: ordinary valid events with a recognisable
 * query id, sent in the load like any other; a poller thread asks ClickHouse every
 * 50 ms which of them are visible in sink_output and records when each first appeared.
 * Freshness = visible time - generation time (the event's own timestamp), so it covers
 * the whole path: wire, pipeline, spool commit, uplink batching, the INSERT, and
 * ClickHouse making the part visible.
 */
#ifndef TL_PROBE_H
#define TL_PROBE_H

#include <stdint.h>
#include <stdio.h>

struct tl_probe;

/**
 * Start the poller.
 * @param url  ClickHouse URL, optionally with ?database= (default "telemetry").
 * @param max  most probes (memory is allocated once).
 * @param netns name of a network namespace (as `ip netns` names it) the poller should
 *              reach ClickHouse from, or NULL for the caller's: the load may leave from
 *              one namespace while the appliance and its ClickHouse live in another.
 * @return 0; -ENOMEM; -EINVAL; the HTTP client's errors.
 */
int tl_probe_start(const char *url, uint32_t max, const char *netns, struct tl_probe **out);

/**
 * Write the next probe event (one NDJSON line, no newline) into @p buf.
 * @return its length; 0 if @p max probes were made already or @p cap is too small.
 */
uint32_t tl_probe_make(struct tl_probe *p, char *buf, uint32_t cap);

/**
 * Wait up to @p wait_ns for every probe to be visible, stop the poller, and print
 * `figure freshness_p50_s`, `_p95_s`, `_p99_s`, `_max_s` and `figure freshness_probes
 * <seen>/<sent>` to @p out. Frees @p p. NULL-safe.
 * @return 0 if every probe was seen, -ETIMEDOUT otherwise.
 */
int tl_probe_finish(struct tl_probe *p, uint64_t wait_ns, FILE *out);

#endif
