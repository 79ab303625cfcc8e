/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * `tapline bench` classification throughput: Hyperscan classification of generated
 * events on one core, reported as `figure classify_events_per_s <v> events/s`.
 */
#ifndef TL_BENCH_CLASSIFY_H
#define TL_BENCH_CLASSIFY_H

#include "tl_bench_ref.h"
#include "tl_classify.h"
#include "tl_schema.h"

/**
 * Measure tl_classify_event() on the calling thread.
 *
 * Events are extracted with @p schema in chunks of a few hundred (untimed; the chunk
 * stays in cache as a worker's burst does between extraction and classification), then
 * the chunk is classified (timed), chunk after chunk, pass after pass, until at least
 * @p min_secs of classification time are accumulated. Events the extractor rejects are
 * skipped.
 *
 * Prints a `# classify: ...` line (patterns, database hash, share of events matched and
 * made error events, scanned bytes) and `figure classify_events_per_s <v> events/s`.
 *
 * @param schema        the schema of the events.
 * @param db            the pattern database.
 * @param ev            the generated events (see tl_bench_ref.h).
 * @param min_secs      classification time to accumulate (> 0).
 * @param events_per_s  out (may be NULL): the figure.
 * @return 0; -EINVAL if no event of @p ev is accepted by the extractor or @p min_secs is
 *         not positive; -ENOMEM; -EIO if a scan failed.
 */
int tl_bench_classify_run(const struct tl_schema *schema, const struct tl_classify_db *db,
        const struct tl_bench_events *ev, double min_secs, double *events_per_s);

/**
 * Load @p profile (tl_app_load), compile its classify database (the profile's cache_dir
 * is ignored: a benchmark writes no file) and run tl_bench_classify_run() with the
 * profile's schema.
 *
 * @param profile   profile or site file with a `classify:` section (e.g. spark.yaml).
 * @param ev        the generated events.
 * @param min_secs  classification time to accumulate.
 * @return 0; TL_E_CONFIG / TL_E_SCHEMA after reporting the profile's problems on stderr;
 *         as tl_bench_classify_run().
 */
int tl_bench_classify(const char *profile, const struct tl_bench_events *ev, double min_secs);

#endif
