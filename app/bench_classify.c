/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Classification throughput for `tapline bench`.
 *
 * Only tl_classify_event() is timed. Extraction runs untimed just before, a chunk at a
 * time, because that is how the worker runs them: classify right after extract, on event
 * bytes that are still in cache. Timing whole passes of extract + classify and subtracting
 * an extract-only pass would be noisier than the figure itself; timing each event would
 * cost as much as a short scan. A chunk of 128 events (about 300 KiB of event text and
 * 450 KiB of struct tl_event) is a few hundred microseconds of scanning: clock reads are
 * noise at that scale.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_classify.h"
#include "tl_app.h"
#include "tl_error.h"
#include "tl_json.h"
#include "tl_log.h"

#define CHUNK 128

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int
tl_bench_classify_run(const struct tl_schema *schema, const struct tl_classify_db *db,
        const struct tl_bench_events *ev, double min_secs, double *events_per_s)
{
	struct tl_classify_scratch *s = NULL;
	struct tl_classify_result r;
	struct tl_event *chunk = NULL;
	uint64_t events = 0, matched = 0, errors = 0, bytes = 0, pass_events = 0;
	double secs = 0;
	int rc;

	if (min_secs <= 0 || ev == NULL || ev->n == 0)
		return -EINVAL;
	rc = tl_classify_scratch_alloc(db, &s);
	if (rc < 0)
		return rc;
	chunk = calloc(CHUNK, sizeof(*chunk));
	if (chunk == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	for (uint64_t pass = 0; secs < min_secs; pass++) {
		uint32_t i = 0;

		while (i < ev->n) {
			uint32_t k = 0;
			double t0;

			for (; i < ev->n && k < CHUNK; i++)
				if (tl_json_extract(schema, ev->buf + ev->off[i], ev->len[i],
				            &chunk[k]) == TL_REASON_OK)
					k++;
			t0 = now_s();
			for (uint32_t j = 0; j < k; j++) {
				tl_classify_event(db, s, &chunk[j], &r);
				matched += r.n > 0;
				errors += r.error;
				if (__builtin_expect(r.scan_failed, 0))
					rc = -EIO;
			}
			secs += now_s() - t0;
			events += k;
			if (pass == 0) {
				pass_events += k;
				/* What the database is asked to scan, from the first pass. */
				for (uint32_t j = 0; j < k; j++)
					bytes += tl_classify_scan_bytes(db, &chunk[j]);
			}
		}
		if (pass_events == 0) {
			TL_ERR("bench classify: the extractor accepted none of the %u events",
			        ev->n);
			rc = -EINVAL;
			goto out;
		}
	}
	if (rc < 0) {
		TL_ERR("bench classify: a Hyperscan scan failed");
		goto out;
	}
	printf("# classify: %u patterns (db %s%s), %.1f%% of events matched, %.1f%% made error "
	       "events, %.0f bytes scanned per event, %.2f GB/s scanned\n",
	        tl_classify_db_count(db), tl_classify_db_hash(db),
	        tl_classify_db_from_cache(db) ? ", from cache" : "",
	        100.0 * (double)matched / (double)events, 100.0 * (double)errors / (double)events,
	        (double)bytes / (double)pass_events,
	        (double)bytes / (double)pass_events * (double)events / secs / 1e9);
	printf("figure classify_events_per_s %.0f events/s\n", (double)events / secs);
	fflush(stdout);
	if (events_per_s != NULL)
		*events_per_s = (double)events / secs;
out:
	free(chunk);
	tl_classify_scratch_free(s);
	return rc;
}

int
tl_bench_classify(const char *profile, const struct tl_bench_events *ev, double min_secs)
{
	static struct tl_app_config cfg;
	struct tl_schema *schema = NULL;
	struct tl_classify_db *db = NULL;
	char err[8192];
	double t0;
	int rc;

	rc = tl_app_load(profile, &cfg, &schema, stderr);
	if (rc < 0)
		return rc;
	/* A benchmark leaves no files behind: the compile is timed and printed instead. */
	cfg.classify.cache_dir[0] = '\0';
	t0 = now_s();
	rc = tl_classify_build(&cfg.classify, schema, &db, err, sizeof(err));
	if (rc < 0) {
		TL_ERR("%s", err[0] ? err : tl_strerror(rc));
		goto out;
	}
	printf("# classify: profile %s, %u patterns compiled in %.0f ms\n", profile,
	        tl_classify_db_count(db), (now_s() - t0) * 1e3);
	rc = tl_bench_classify_run(schema, db, ev, min_secs, NULL);
out:
	tl_classify_db_free(db);
	tl_schema_free(schema);
	return rc;
}
