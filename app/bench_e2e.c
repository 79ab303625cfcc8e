/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * `tapline bench --clickhouse URL`: end to end into ClickHouse next to ClickHouse's own
 * ceiling (tl_bench.h says what each measures).
 *
 * The two runs alternate within each round and the figures are medians over rounds:
 * on a 2-core machine ClickHouse's speed drifts with whatever else runs, and only a
 * ratio measured side by side means anything.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tl_bench.h"
#include "tl_ch.h"
#include "tl_ddl.h"
#include "tl_encode.h"
#include "tl_error.h"
#include "tl_json.h"
#include "tl_log.h"
#include "tl_pipeline.h"
#include "tl_sink.h"
#include "tl_spool.h"
#include "tl_uplink.h"

#define DB_CEILING "tapline_bench_ceiling"
#define DB_E2E "tapline_bench_e2e"
#define SQL_MAX (64 * 1024)
#define MAX_ROUNDS 15

static uint64_t
mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double
cpu_s(const struct rusage *r)
{
	return (double)r->ru_utime.tv_sec + (double)r->ru_utime.tv_usec / 1e6 +
	       (double)r->ru_stime.tv_sec + (double)r->ru_stime.tv_usec / 1e6;
}

/* CPU seconds a process used so far (user + system), from /proc; -1 if unknown. */
static double
proc_cpu_s(int pid)
{
	char path[64], buf[1024], *p;
	unsigned long long ut, st;
	ssize_t n;
	FILE *f;

	if (pid <= 0)
		return -1;
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	n = (ssize_t)fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	/* Fields after the command name, which may hold spaces: state is field 3,
	 * utime 14 and stime 15. */
	if ((p = strrchr(buf, ')')) == NULL ||
	        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) !=
	                2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double
median(double *v, unsigned n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Statements of the benchmark, one at a time; a failure is logged with the server's
 * message. */
static int
sql(struct tl_ch *ch, const char *q, uint64_t *count)
{
	char *out = NULL;
	int rc = tl_ch_query(ch, q, &out, NULL);

	if (rc < 0)
		TL_ERR("bench e2e: %s: %s", q, tl_ch_last_error(ch)->message);
	else if (count)
		*count = strtoull(out ? out : "0", NULL, 10);
	free(out);
	return rc;
}

static int
create_tables(struct tl_ch *ch, const struct tl_schema *schema, const char *db)
{
	char *q = malloc(SQL_MAX);
	int rc;

	if (q == NULL)
		return -ENOMEM;
	snprintf(q, SQL_MAX, "DROP DATABASE IF EXISTS `%s`", db);
	rc = sql(ch, q, NULL);
	if (rc == 0 && (rc = tl_ddl_create_database(db, q, SQL_MAX)) >= 0)
		rc = sql(ch, q, NULL);
	for (int t = TL_BATCH_SINK_OUTPUT; rc >= 0 && t <= TL_BATCH_ERROR_EVENTS; t++)
		if ((rc = tl_ddl_create_table(schema, (enum tl_batch_table)t, db, q, SQL_MAX)) >= 0)
			rc = sql(ch, q, NULL);
	free(q);
	return rc < 0 ? rc : 0;
}

static int
drop_database(struct tl_ch *ch, const char *db)
{
	char q[128];

	snprintf(q, sizeof(q), "DROP DATABASE IF EXISTS `%s`", db);
	return sql(ch, q, NULL);
}

static int
count_rows(struct tl_ch *ch, const char *db, uint64_t *n)
{
	char q[256];

	snprintf(q, sizeof(q),
	        "SELECT (SELECT count() FROM `%s`.sink_output) + "
	        "(SELECT count() FROM `%s`.error_events)",
	        db, db);
	return sql(ch, q, n);
}

/* The rows of both tables, encoded uncompressed exactly as the workers encode them. */
struct rows {
	uint8_t *body[2];
	size_t len[2], cap[2];
	uint64_t n[2];
	size_t *bend[2]; /* end of each sealed batch in body: whole rows up to there */
	uint32_t nb[2], bcap[2];
};

static void
rows_free(struct rows *r)
{
	for (int t = 0; t < 2; t++) {
		free(r->body[t]);
		free(r->bend[t]);
	}
	memset(r, 0, sizeof(*r));
}

static int
rows_append(struct rows *r, int t, const uint8_t *batch, size_t len)
{
	struct tl_batch_view v;

	if (tl_batch_parse(batch, len, &v) != 0)
		return -EBADMSG;
	if (r->len[t] + v.raw_len > r->cap[t]) {
		size_t cap = r->cap[t] ? r->cap[t] : 1u << 24;
		uint8_t *b;

		while (cap < r->len[t] + v.raw_len)
			cap *= 2;
		if ((b = realloc(r->body[t], cap)) == NULL)
			return -ENOMEM;
		r->body[t] = b;
		r->cap[t] = cap;
	}
	if (r->nb[t] == r->bcap[t]) {
		uint32_t c = r->bcap[t] ? 2 * r->bcap[t] : 256;
		size_t *e = realloc(r->bend[t], c * sizeof(*e));

		if (e == NULL)
			return -ENOMEM;
		r->bend[t] = e;
		r->bcap[t] = c;
	}
	memcpy(r->body[t] + r->len[t], v.body, v.raw_len);
	r->len[t] += v.raw_len;
	r->bend[t][r->nb[t]++] = r->len[t];
	r->n[t] += v.hdr.rows;
	return 0;
}

static int
rows_build(const struct tl_app_config *cfg, const struct tl_schema *schema,
        const struct tl_bench_events *ev, uint32_t n_events, struct rows *r)
{
	struct tl_encode_conf ec = {
	        .appliance_id = cfg->appliance_id[0] ? cfg->appliance_id : "bench",
	        .batch_rows = (uint32_t)cfg->batch.rows,
	        .batch_bytes = (uint32_t)cfg->batch.bytes,
	        .codec = TL_BATCH_CODEC_NONE,
	};
	struct tl_encoder *enc[2] = {NULL, NULL};
	static struct tl_event e;
	uint8_t *batch = NULL;
	size_t cap = 0, len;
	int rc = 0;

	for (int t = 0; t < 2 && rc == 0; t++)
		rc = tl_encoder_create(schema, (enum tl_batch_table)t, &ec, &enc[t]);
	if (rc == 0) {
		cap = tl_encode_seal_max(enc[0]) > tl_encode_seal_max(enc[1])
		              ? tl_encode_seal_max(enc[0])
		              : tl_encode_seal_max(enc[1]);
		if ((batch = malloc(cap)) == NULL)
			rc = -ENOMEM;
	}
	for (uint32_t i = 0; i < n_events && rc == 0; i++) {
		uint32_t k = i % ev->n;
		int t;

		if (tl_json_extract(schema, ev->buf + ev->off[k], ev->len[k], &e) != TL_REASON_OK)
			continue;
		t = (int)tl_encode_table_for(&e, TL_REASON_OK);
		if (t > TL_BATCH_ERROR_EVENTS)
			continue;
		rc = tl_encode_event(enc[t], &e, 0);
		if (rc == -ENOBUFS) {
			if ((rc = tl_encode_seal(enc[t], batch, cap, &len)) == 0 &&
			        (rc = rows_append(r, t, batch, len)) == 0)
				rc = tl_encode_event(enc[t], &e, 0);
		}
		if (rc == 1 && (rc = tl_encode_seal(enc[t], batch, cap, &len)) == 0)
			rc = rows_append(r, t, batch, len);
		rc = rc > 0 ? 0 : rc;
	}
	for (int t = 0; t < 2 && rc == 0; t++)
		if (tl_encode_pending(enc[t]) &&
		        (rc = tl_encode_seal(enc[t], batch, cap, &len)) == 0)
			rc = rows_append(r, t, batch, len);
	free(batch);
	for (int t = 0; t < 2; t++)
		tl_encoder_free(enc[t]);
	return rc;
}

/*
 * ClickHouse's ceiling: the rows bulk-inserted straight from one client, one INSERT per
 * table (or INSERTs of @p chunk bytes), @p parallel of them at once (each table's rows cut
 * into that many INSERTs).
 */
static int
run_ceiling(struct tl_ch *ch, const struct tl_schema *schema, const struct rows *r, int ch_pid,
        size_t chunk, unsigned parallel, double *events_per_s)
{
	struct piece {
		int t;
		size_t at, len;
	} *pc = NULL;
	unsigned n = 0, cap = 0, next = 0, done = 0, inserts;
	uint64_t t0, t1, landed = 0;
	double ch0, ch1;
	int rc = create_tables(ch, schema, DB_CEILING);

	if (rc < 0)
		return rc;
	for (int t = 0; t < 2 && rc == 0; t++) {
		size_t at = 0, cut = chunk, share = (r->len[t] + parallel - 1) / parallel;

		/* Whole sealed batches: up to @p chunk bytes (0: everything at once), or about
		 * a @p parallel th of the table's rows. */
		if (parallel > 1 && (cut == 0 || cut > share))
			cut = share;
		for (uint32_t b = 0; b < r->nb[t];) {
			if (n == cap) {
				struct piece *p = realloc(pc, (cap = cap ? 2 * cap : 16) * sizeof(*p));

				if (p == NULL) {
					rc = -ENOMEM;
					break;
				}
				pc = p;
			}
			do
				b++;
			while (b < r->nb[t] &&
			        (cut == 0 || (cut == share ? r->bend[t][b - 1] - at < cut
			                                   : r->bend[t][b] - at <= cut)));
			pc[n++] = (struct piece){t, at, r->bend[t][b - 1] - at};
			at = r->bend[t][b - 1];
		}
	}
	inserts = n;
	ch0 = proc_cpu_s(ch_pid);
	t0 = mono_ns();
	while (rc == 0 && done < n) {
		struct tl_ch_result res[16];
		int got;

		while (next < n && next - done < parallel) {
			struct tl_ch_insert ins = {
			        .id = next + 1,
			        .database = DB_CEILING,
			        .table = tl_batch_table_name((unsigned)pc[next].t),
			        .format = "RowBinary",
			        .body = r->body[pc[next].t] + pc[next].at,
			        .len = pc[next].len,
			};

			if ((rc = tl_ch_submit(ch, &ins)) < 0)
				break;
			next++;
		}
		if (rc < 0 || (got = tl_ch_poll(ch, 1000, res, 16)) < 0) {
			rc = rc < 0 ? rc : got;
			break;
		}
		for (int i = 0; i < got; i++, done++)
			if (res[i].outcome != TL_CH_OK) {
				TL_ERR("bench e2e: ceiling insert: %s: %s",
				        tl_ch_outcome_name(res[i].outcome), res[i].message);
				rc = -EIO;
			}
	}
	t1 = mono_ns();
	free(pc);
	if (rc == 0 && (rc = count_rows(ch, DB_CEILING, &landed)) == 0 &&
	        landed != r->n[0] + r->n[1]) {
		TL_ERR("bench e2e: ceiling: %" PRIu64 " of %" PRIu64 " rows landed", landed,
		        r->n[0] + r->n[1]);
		rc = -EIO;
	}
	ch1 = proc_cpu_s(ch_pid);
	drop_database(ch, DB_CEILING);
	if (rc == 0) {
		*events_per_s = (double)landed / ((double)(t1 - t0) / 1e9);
		printf("#   ceiling: %" PRIu64 " rows in %.2f s, %u inserts (%u at once)", landed,
		        (double)(t1 - t0) / 1e9, inserts, parallel);
		if (ch0 >= 0 && ch1 >= 0)
			printf(", clickhouse cpu %.2f s", ch1 - ch0);
		printf("\n");
	}
	return rc;
}

static void
rm_spool_dir(const char *dir)
{
	char p[512];
	struct dirent *d;
	DIR *dh = opendir(dir);

	if (dh == NULL)
		return;
	while ((d = readdir(dh)) != NULL) {
		if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0)
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, d->d_name);
		unlink(p);
	}
	closedir(dh);
	rmdir(dir);
}


/* End to end: worker -> spool -> uplink -> ClickHouse. */
static int
run_e2e(struct tl_ch *ch, const struct tl_app_config *cfg, const struct tl_schema *schema,
        const struct tl_bench_events *ev, const struct tl_bench_e2e_conf *bc, uint64_t expect,
        double *events_per_s)
{
	struct tl_uplink_conf uc = cfg->uplink;
	struct tl_spool_conf sc = cfg->spool;
	static struct tl_pipeline_worker w;
	static struct tl_sink sink;
	struct tl_uplink_stats us;
	struct tl_uplink *up = NULL;
	struct tl_spool *sp = NULL;
	char dir[] = "/tmp/tapline-bench-e2e.XXXXXX";
	uint64_t t0, t1, t_fed, landed = 0, delivered = 0, waits = 0, deadline;
	struct rusage ru0, ru1;
	double ch0, ch1;
	uint16_t port = 5170;
	bool w_init = false, s_init = false;
	int rc;

	if ((rc = drop_database(ch, DB_E2E)) < 0)
		return rc;
	if (mkdtemp(dir) == NULL)
		return -errno;
	snprintf(sc.path, sizeof(sc.path), "%s/spool", dir);
	sc.nosync = false;
	snprintf(uc.url, sizeof(uc.url), "%s", bc->url);
	snprintf(uc.database, sizeof(uc.database), "%s", DB_E2E);
	for (int i = 0; tl_ch_compression_names[i]; i++)
		if (strcmp(tl_ch_compression_names[i],
		            bc->compression ? bc->compression : "lz4") == 0)
			uc.compression = i;

	if ((rc = tl_spool_open(&sc, 1, 0, NULL, NULL, &sp)) < 0)
		goto out;
	if ((rc = tl_sink_init(&sink, schema, &cfg->batch, "bench", sp, 0, sc.buffer_size)) < 0)
		goto out;
	s_init = true;
	if ((rc = tl_pipeline_worker_init(
	             &w, &cfg->pipeline, schema, &port, 1, tl_sink_event, &sink)) < 0)
		goto out;
	w_init = true;
	tl_pipeline_set_tick(&w, tl_sink_tick);
	if ((rc = tl_uplink_start(&uc, schema, sp, &up)) < 0)
		goto out;
	/* The clock starts once the DDL is applied and inserts can flow. */
	deadline = mono_ns() + 30ull * 1000000000u;
	do {
		tl_uplink_stats(up, &us);
		if (!us.connected)
			usleep(10000);
	} while (!us.connected && mono_ns() < deadline);
	if (!us.connected) {
		TL_ERR("bench e2e: the uplink did not connect to %s within 30 s", bc->url);
		rc = -ETIMEDOUT;
		goto out;
	}

	getrusage(RUSAGE_SELF, &ru0);
	ch0 = proc_cpu_s(bc->clickhouse_pid);
	t0 = mono_ns();
	for (uint32_t i = 0; i < bc->events; i++) {
		uint32_t k = i % ev->n;

		/* Raw mode drops what the spool cannot take yet (counted); a benchmark waits
		 * instead, so that every round delivers every event. */
		while (tl_sink_blocked(&sink)) {
			waits++;
			usleep(100);
			tl_pipeline_tick(&w, mono_ns());
		}
		tl_pipeline_datagram(&w, ev->buf + ev->off[k], ev->len[k]);
		if ((i & 255) == 255)
			tl_pipeline_tick(&w, mono_ns());
	}
	t_fed = mono_ns();
	tl_pipeline_tick(&w, UINT64_MAX);
	while (tl_sink_blocked(&sink)) {
		waits++;
		usleep(100);
		tl_pipeline_tick(&w, UINT64_MAX);
	}
	if ((rc = tl_spool_flush(sp, 60ull * 1000000000u)) < 0 ||
	        (rc = tl_uplink_drain(up, 300ull * 1000000000u)) < 0)
		goto out;
	t1 = mono_ns();
	getrusage(RUSAGE_SELF, &ru1);
	ch1 = proc_cpu_s(bc->clickhouse_pid);
	tl_uplink_stats(up, &us);
	delivered =
	        us.rows_delivered[TL_BATCH_SINK_OUTPUT] + us.rows_delivered[TL_BATCH_ERROR_EVENTS];
	for (int t = 0; t < TL_BATCH_TABLE_MAX; t++)
		if (sink.cnt.dropped_rows[t]) {
			struct tl_spool_stats ss;

			tl_spool_stats(sp, &ss);
			TL_ERR("bench e2e: %" PRIu64 " rows dropped by the sink (spool: %" PRIu64
			       " refusals, %" PRIu64 " high-water hits, map %" PRIu64
			       " bytes, used %" PRIu64 ", error %" PRId64 ")",
			        sink.cnt.dropped_rows[t], ss.backpressure, ss.high_water_hits,
			        ss.map_size, ss.used_bytes, ss.error);
			rc = -EIO;
		}
	if (rc == 0 && (rc = count_rows(ch, DB_E2E, &landed)) == 0 &&
	        (landed != expect || delivered != expect)) {
		TL_ERR("bench e2e: %" PRIu64 " rows landed, %" PRIu64 " confirmed, %" PRIu64
		       " expected",
		        landed, delivered, expect);
		rc = -EIO;
	}
	if (rc == 0) {
		*events_per_s = (double)landed / ((double)(t1 - t0) / 1e9);
		printf("#   e2e: %" PRIu64 " rows in %.2f s (fed in %.2f s), %" PRIu64
		       " inserts (%" PRIu64 " streamed), %.1f MB sent, %" PRIu64
		       " spool waits, tapline cpu %.2f s\n",
		        landed, (double)(t1 - t0) / 1e9, (double)(t_fed - t0) / 1e9, us.inserts_ok,
		        us.inserts_streamed,
		        (double)us.bytes_sent / 1e6, waits, cpu_s(&ru1) - cpu_s(&ru0));
		if (ch0 >= 0 && ch1 >= 0)
			printf("#   e2e: clickhouse cpu %.2f s\n", ch1 - ch0);
	}
out:
	tl_uplink_stop(up);
	if (w_init)
		tl_pipeline_worker_fini(&w);
	if (s_init)
		tl_sink_fini(&sink);
	tl_spool_close(sp);
	rm_spool_dir(sc.path);
	rmdir(dir);
	drop_database(ch, DB_E2E);
	return rc;
}

int
tl_bench_e2e(const struct tl_app_config *cfg, const struct tl_schema *schema,
        const struct tl_bench_events *ev, const struct tl_bench_e2e_conf *bc)
{
	struct tl_uplink_conf cc = cfg->uplink;
	double ceiling[MAX_ROUNDS], e2e[MAX_ROUNDS], c, e;
	unsigned rounds = bc->rounds < 1 ? 1 : bc->rounds > MAX_ROUNDS ? MAX_ROUNDS : bc->rounds;
	struct tl_ch *ch = NULL;
	struct rows r = {0};
	int rc;

	/* The rest of `tapline bench` runs pinned to one CPU; here the worker, the spool
	 * writer and the uplink get the CPUs the benchmark was started with (scripts/
	 * bench_e2e.sh gives ClickHouse and tapline a core each, as on separate hosts). */
	if (bc->cpus)
		sched_setaffinity(0, sizeof(*bc->cpus), bc->cpus);

	snprintf(cc.url, sizeof(cc.url), "%s", bc->url);
	snprintf(cc.database, sizeof(cc.database), "default");
	cc.compression = 0; /* "none": the ceiling sends plain RowBinary */
	cc.max_in_flight = 16;
	cc.timeout = 600ull * 1000000000u;
	if ((rc = tl_ch_open(&cc, &ch)) < 0)
		goto out;
	if ((rc = rows_build(cfg, schema, ev, bc->events, &r)) < 0)
		goto out;
	printf("# e2e: %u events per round (%" PRIu64 " sink_output + %" PRIu64
	       " error_events rows, %.1f MB RowBinary), %u rounds, uplink compression %s, "
	       "batch compression %s\n",
	        bc->events, r.n[0], r.n[1], (double)(r.len[0] + r.len[1]) / 1e6, rounds,
	        bc->compression ? bc->compression : "lz4",
	        tl_batch_codec_names[cfg->batch.compression]);
	for (unsigned i = 0; i < rounds; i++) {
		if ((rc = run_ceiling(ch, schema, &r, bc->clickhouse_pid, bc->ceiling_chunk,
		             bc->ceiling_parallel ? bc->ceiling_parallel : 1, &ceiling[i])) < 0 ||
		        (rc = run_e2e(ch, cfg, schema, ev, bc, r.n[0] + r.n[1], &e2e[i])) < 0)
			goto out;
		printf("# round %u: ceiling %.0f events/s, end to end %.0f events/s (%.2f x)\n",
		        i + 1, ceiling[i], e2e[i], e2e[i] / ceiling[i]);
	}
	c = median(ceiling, rounds);
	e = median(e2e, rounds);
	if (bc->ceiling_parallel > 1) {
		/* A second view: the ceiling with several INSERTs at once (ClickHouse parses
		 * each on its own thread), next to its own end-to-end rounds. */
		printf("figure e2e_events_per_s_vs_%u_inserts %.0f events/s\n",
		        bc->ceiling_parallel, e);
		printf("figure clickhouse_ceiling_%u_inserts_events_per_s %.0f events/s\n",
		        bc->ceiling_parallel, c);
		printf("figure e2e_vs_ceiling_%u_inserts %.2f x\n", bc->ceiling_parallel, e / c);
	} else {
		printf("figure e2e_events_per_s %.0f events/s\n", e);
		printf("figure clickhouse_ceiling_events_per_s %.0f events/s\n", c);
		printf("figure e2e_vs_ceiling %.2f x\n", e / c);
	}
out:
	if (rc < 0)
		TL_ERR("bench e2e: %s", tl_strerror(rc));
	rows_free(&r);
	tl_ch_close(ch);
	return rc;
}
