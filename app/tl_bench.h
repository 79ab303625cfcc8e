/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * Benchmarks of `tapline bench` that need more than one function of cmd_bench.c.
 * Each prints `figure <name> <value> <unit>` lines (and `#` comment lines) to stdout.
 */
#ifndef TL_BENCH_H
#define TL_BENCH_H

#include <sched.h>
#include <stdint.h>

#include "tl_app.h"
#include "tl_bench_ref.h"
#include "tl_schema.h"

/** Settings of the end-to-end benchmark. */
struct tl_bench_e2e_conf {
	const char *url;         /**< ClickHouse, e.g. "http://127.0.0.1:8123/" (no database) */
	uint32_t events;         /**< events per round (the corpus repeated as needed) */
	uint32_t rounds;         /**< rounds; each runs the ceiling, then end to end */
	const char *compression; /**< uplink wire compression name; NULL: "none" */
	int clickhouse_pid;      /**< > 0: report the server's CPU seconds per run */
	size_t ceiling_chunk;    /**< ceiling INSERT size, bytes; 0: one INSERT per table */
	unsigned ceiling_parallel; /**< ceiling INSERTs at once (0 or 1: one after another) */
	const cpu_set_t *cpus;   /**< CPUs for the end-to-end run's threads (NULL: as is) */
};

/**
 * End-to-end throughput into ClickHouse next to ClickHouse's own ceiling, side by side.
 *
 * Each round first measures the ceiling: the events encoded as RowBinary rows (exactly
 * the rows tapline delivers), bulk-inserted by one client straight into a fresh database
 * (one INSERT per table, uncompressed over loopback). Then end to end: the same events
 * as UDP payloads through a pipeline worker (extraction, encoding, LZ4 or the profile's
 * batch compression), the durable spool (fsync per group commit) and the uplink thread,
 * into another fresh database; the clock runs from the first event until ClickHouse has
 * confirmed the last row. The NIC is not in this path (`tapline run` measures capture).
 * Both databases are dropped after each round, so neither run pays for the other's
 * merges. Row counts are checked in ClickHouse after each run: a mismatch fails the
 * benchmark.
 *
 * Prints per round `# ...` lines, then the medians: `figure e2e_events_per_s`,
 * `figure clickhouse_ceiling_events_per_s` and `figure e2e_vs_ceiling`.
 *
 * @return 0; a negative error (ClickHouse unreachable, rows missing, spool errors).
 */
int tl_bench_e2e(const struct tl_app_config *cfg, const struct tl_schema *schema,
        const struct tl_bench_events *ev, const struct tl_bench_e2e_conf *bc);

#endif
