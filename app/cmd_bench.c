/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pcap/pcap.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tl_app.h"
#include "bench_classify.h"
#include "tl_bench.h"
#include "tl_bench_ref.h"
#include "tl_cmd.h"
#include "tl_corpus.h"
#include "tl_error.h"
#include "tl_json.h"
#include "tl_log.h"
#include "tl_pcapw.h"
#include "tl_pipeline.h"
#include "tl_encode.h"
#include "tl_sink.h"
#include "tl_spool.h"

#ifndef TL_DATA_DIR
#define TL_DATA_DIR "../shared/data"
#endif


static void
bench_usage(FILE *f)
{
	fprintf(f,
		"usage: tapline bench [options]\n"
		"\n"
		"Measure, on one core, the pipeline over a generated corpus of realistic events\n"
		"(TPC-H query texts, real Hadoop/HDFS/Spark error lines, 1-5 KB each):\n"
		"  extract   frame decode + UDP checksum + NDJSON split + full extraction\n"
		"  json      tl_json_extract alone\n"
		"  jansson   the same extraction with jansson (reference)\n"
		"  simdjson  the same extraction with simdjson On-Demand (reference)\n"
		"Figures print as 'figure <name> <value> <unit>'.\n"
		"\n"
		"  -c, --config FILE   profile whose schema is extracted (default e6data-qpe)\n"
		"      --data DIR      shared data folder (default $TAPLINE_DATA or the source tree's)\n"
		"  -n, --events N      corpus size (default 20000)\n"
		"  -t, --seconds S     minimum time per measurement (default 2)\n"
		"      --seed N        corpus seed (default 1)\n"
		"      --clickhouse URL  also measure end to end into this ClickHouse next to its\n"
		"                      own ceiling (e.g. http://127.0.0.1:8123/; databases\n"
		"                      tapline_bench_* are created and dropped)\n"
		"      --e2e-events N  events per end-to-end round (default 100000)\n"
		"      --rounds N      end-to-end rounds; figures are medians (default 3)\n"
		"      --e2e-compression C  uplink wire compression for it (default lz4: LZ4\n"
		"                      batches go out as stored, as to a ClickHouse in the same rack)\n"
		"      --e2e-only      run only the end-to-end benchmark\n"
		"      --clickhouse-pid P  report that server's CPU time per run\n"
		"      --ceiling-chunk B   ceiling INSERTs of B bytes (default: one per table)\n"
		"      --ceiling-parallel N  N ceiling INSERTs at once, each table's rows cut in N\n"
		"  -h, --help          this text\n");
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Frames of a capture held in memory. */
struct frames {
	uint8_t *buf;
	uint32_t *off, *len;
	uint32_t n, cap;
	size_t used, size;
};

static void
frames_free(struct frames *f)
{
	free(f->buf);
	free(f->off);
	free(f->len);
	memset(f, 0, sizeof(*f));
}

static int
frames_load(const char *path, struct frames *f)
{
	char errbuf[PCAP_ERRBUF_SIZE];
	struct pcap_pkthdr *h;
	const u_char *data;
	pcap_t *p = pcap_open_offline(path, errbuf);
	int rc = 0;

	if (p == NULL) {
		TL_ERR("%s: %s", path, errbuf);
		return TL_E_PCAP;
	}
	while (pcap_next_ex(p, &h, &data) == 1) {
		if (f->n == f->cap) {
			uint32_t cap = f->cap ? f->cap * 2 : 4096;
			uint32_t *o = realloc(f->off, cap * sizeof(*o));
			uint32_t *l = o ? realloc(f->len, cap * sizeof(*l)) : NULL;

			if (o)
				f->off = o;
			if (l == NULL) {
				rc = -ENOMEM;
				break;
			}
			f->len = l;
			f->cap = cap;
		}
		if (f->used + h->caplen > f->size) {
			size_t size = f->size ? f->size * 2 : 1 << 24;
			uint8_t *b = realloc(f->buf, size);

			if (b == NULL) {
				rc = -ENOMEM;
				break;
			}
			f->buf = b;
			f->size = size;
		}
		memcpy(f->buf + f->used, data, h->caplen);
		f->off[f->n] = (uint32_t)f->used;
		f->len[f->n++] = h->caplen;
		f->used += h->caplen;
	}
	pcap_close(p);
	return rc;
}

/* The bench's events as the wire carries them: packed into datagrams and framed by the
 * generator's pcap writer (IPv4 and IPv6, VLAN tags, fragments past @p mtu), read back. */
static int
frame_events(const struct tl_bench_events *ev, uint32_t mtu, struct frames *out)
{
	static uint8_t dgram[TL_PCAPW_UDP_MAX];
	char path[] = "/tmp/tapline-bench-XXXXXX";
	struct tl_pcapw_conf pc;
	struct tl_pcapw *pw = NULL;
	char msg[256];
	uint32_t i = 0;
	int fd, rc;

	fd = mkstemp(path);
	if (fd < 0)
		return -errno;
	close(fd);
	tl_pcapw_conf_defaults(&pc);
	pc.path = path;
	pc.mtu = mtu;
	pc.noise_share = 0;
	rc = tl_pcapw_open(&pc, &pw, msg, sizeof(msg));
	if (rc < 0) {
		TL_ERR("bench capture: %s", msg);
		goto out;
	}
	while (i < ev->n && rc == 0) {
		struct tl_pcapw_plan plan;
		uint32_t len = 0;

		tl_pcapw_plan(pw, &plan);
		do {
			memcpy(dgram + len, ev->buf + ev->off[i], ev->len[i]);
			dgram[len + ev->len[i]] = '\n';
			len += ev->len[i] + 1;
			i++;
		} while (!plan.single && i < ev->n && len + ev->len[i] + 1 <= plan.max_payload);
		rc = tl_pcapw_write(pw, &plan, dgram, len, (uint64_t)i * 1000);
	}
	if (tl_pcapw_close(pw) < 0 && rc == 0)
		rc = TL_E_PCAP;
	if (rc == 0)
		rc = frames_load(path, out);
out:
	unlink(path);
	return rc;
}

struct corpus_view {
	struct tl_bench_events ev;
	uint64_t bytes; /* event bytes in one pass */
};

/* Print a measurement's two figures; @return its GB/s. */
static double
report(const char *name, uint64_t events, uint64_t bytes, double secs)
{
	double gbps = (double)bytes / secs / 1e9;

	printf("figure %s_gbps %.3f GB/s\n", name, gbps);
	printf("figure %s_events_per_s %.0f events/s\n", name, (double)events / secs);
	fflush(stdout);
	return gbps;
}

static int
bench_pipeline(const char *name, const struct tl_app_config *cfg, const struct tl_schema *schema,
		const struct frames *f, uint32_t n_events, uint64_t bytes, double min_secs,
		double *gbps)
{
	static struct tl_pipeline_worker pw;
	uint16_t ports[TL_CAPTURE_MAX_PORTS];
	int n_ports = tl_capture_ports(&cfg->capture, ports);
	uint64_t passes = 0, now = 0;
	double t0, t;
	int rc;

	rc = tl_pipeline_worker_init(&pw, &cfg->pipeline, schema, ports, (unsigned)n_ports, NULL,
			NULL);
	if (rc < 0) {
		TL_ERR("pipeline: %s", tl_strerror(rc));
		return rc;
	}
	t0 = now_s();
	do {
		for (uint32_t i = 0; i < f->n; i++)
			tl_pipeline_rx(&pw, f->buf + f->off[i], f->len[i], 0, now);
		/* Each pass reuses IP ids: let the previous pass's datagrams finish first. */
		now += 10ull * 1000000000ull;
		passes++;
	} while ((t = now_s() - t0) < min_secs);
	tl_pipeline_expire(&pw, UINT64_MAX);
	if (pw.cnt.events_valid != passes * n_events) {
		TL_ERR("%s: pipeline accepted %" PRIu64 " of %" PRIu64 " events", name,
				pw.cnt.events_valid, passes * n_events);
		rc = -EPROTO;
	} else {
		printf("# %s: %u frames per pass, %" PRIu64 " datagrams reassembled per pass\n", name,
				f->n, pw.cnt.reassembled / passes);
		*gbps = report(name, passes * n_events, passes * bytes, t);
	}
	tl_pipeline_worker_fini(&pw);
	return rc;
}

/* What a worker spends to turn events into sealed batches with @p codec: extract +
 * encode + compress, one core. */
static int
bench_encode(const struct tl_app_config *cfg, const struct tl_schema *schema,
		const struct corpus_view *cv, int codec, double min_secs, double *events_per_s)
{
	struct tl_encode_conf ec = {
		.appliance_id = "bench",
		.batch_rows = (uint32_t)cfg->batch.rows,
		.batch_bytes = (uint32_t)cfg->batch.bytes,
		.codec = codec,
		.gzip_level = (int)cfg->batch.gzip_level,
	};
	struct tl_encoder *enc = NULL;
	static struct tl_event ev;
	uint64_t n = 0, bytes = 0, stored = 0, raw = 0;
	uint8_t *batch = NULL;
	char name[64];
	double t0, t;
	size_t l;
	int rc;

	rc = tl_encoder_create(schema, TL_BATCH_SINK_OUTPUT, &ec, &enc);
	if (rc < 0)
		return rc;
	batch = malloc(tl_encode_seal_max(enc));
	if (batch == NULL) {
		tl_encoder_free(enc);
		return -ENOMEM;
	}
	t0 = now_s();
	do {
		for (uint32_t i = 0; i < cv->ev.n; i++) {
			if (tl_json_extract(schema, cv->ev.buf + cv->ev.off[i], cv->ev.len[i], &ev) !=
					TL_REASON_OK)
				continue;
			rc = tl_encode_event(enc, &ev, 0);
			if (rc == -ENOBUFS || rc == 1) {
				struct tl_batch_view v;

				if (tl_encode_seal(enc, batch, tl_encode_seal_max(enc), &l) == 0 &&
						tl_batch_parse(batch, l, &v) == 0) {
					stored += v.hdr.body_len;
					raw += v.raw_len;
				}
				if (rc == -ENOBUFS)
					tl_encode_event(enc, &ev, 0);
			}
			n++;
			bytes += cv->ev.len[i];
		}
	} while ((t = now_s() - t0) < min_secs);
	snprintf(name, sizeof(name), "extract_encode_%s", tl_batch_codec_names[codec]);
	*events_per_s = (double)n / t;
	report(name, n, bytes, t);
	if (raw)
		printf("figure batch_ratio_%s %.2f x\n", tl_batch_codec_names[codec],
				(double)raw / (double)stored);
	free(batch);
	tl_encoder_free(enc);
	return 0;
}

static int
bench_spool(const struct tl_app_config *cfg, const struct tl_schema *schema,
		const struct corpus_view *cv, double min_secs)
{
	struct tl_encode_conf ec = {
		.appliance_id = "bench",
		.batch_rows = (uint32_t)cfg->batch.rows,
		.batch_bytes = (uint32_t)cfg->batch.bytes,
		.codec = cfg->batch.compression,
		.gzip_level = (int)cfg->batch.gzip_level,
	};
	struct tl_spool_bench_result r;
	struct tl_spool_conf sc = cfg->spool;
	struct tl_encoder *enc = NULL;
	static struct tl_event ev;
	char dir[] = "/tmp/tapline-bench-spool.XXXXXX";
	double rate[3] = {0};
	uint8_t *batch = NULL;
	uint32_t rows = 0;
	size_t len = 0;
	int rc;

	/* The three codecs side by side, then the profile's under its historical name. */
	for (int c = TL_BATCH_CODEC_NONE; c <= TL_BATCH_CODEC_LZ4; c++)
		if ((rc = bench_encode(cfg, schema, cv, c, min_secs / 2, &rate[c])) < 0)
			return rc;
	printf("figure extract_encode_events_per_s %.0f events/s\n", rate[cfg->batch.compression]);
	printf("figure encode_lz4_vs_gzip %.2f x\n", rate[TL_BATCH_CODEC_LZ4] /
			rate[TL_BATCH_CODEC_GZIP]);

	rc = tl_encoder_create(schema, TL_BATCH_SINK_OUTPUT, &ec, &enc);
	if (rc < 0)
		goto done;
	batch = malloc(tl_encode_seal_max(enc));
	rc = batch ? 0 : -ENOMEM;
	for (uint32_t i = 0; rc == 0; i = (i + 1) % cv->ev.n) {
		if (tl_json_extract(schema, cv->ev.buf + cv->ev.off[i], cv->ev.len[i], &ev) !=
				TL_REASON_OK)
			continue;
		rc = tl_encode_event(enc, &ev, 0);
		if (rc == -ENOBUFS)
			break;
		if (rc < 0)
			goto done;
		rows++;
		if (rc == 1)
			break;
		rc = 0;
	}
	rc = tl_encode_seal(enc, batch, tl_encode_seal_max(enc), &len);
	if (rc < 0)
		goto done;
	if (mkdtemp(dir) == NULL) {
		rc = -errno;
		goto done;
	}
	snprintf(sc.path, sizeof(sc.path), "%s/spool", dir);
	sc.nosync = false;
	if (sc.buffer_size < len)
		sc.buffer_size = len;
	rc = tl_spool_bench(&sc, batch, (uint32_t)len, rows, (uint64_t)(min_secs * 1e9), &r);
	rmdir(sc.path);
	rmdir(dir);
	if (rc < 0)
		goto done;
	printf("# spool: batches of %u events, %zu bytes stored (%s), fsync per "
	       "commit, %llu commits, commit p99 <= %.1f ms\n",
			rows, len, tl_batch_codec_names[cfg->batch.compression],
			(unsigned long long)r.commits, r.commit_p99_ns / 1e6);
	printf("figure spool_events_per_s %.0f events/s\n", r.events_per_s);
	printf("figure spool_mb_per_s %.1f MB/s\n", r.mb_per_s);
	printf("figure spool_event_mb_per_s %.1f MB/s\n",
			r.events_per_s * (double)cv->bytes / cv->ev.n / 1e6);
done:
	if (rc < 0)
		TL_ERR("spool bench: %s", tl_strerror(rc));
	free(batch);
	tl_encoder_free(enc);
	return rc;
}

static int
pin_to_one_cpu(void)
{
	cpu_set_t set;
	int cpu = sched_getcpu();

	if (cpu < 0)
		return -errno;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(0, sizeof(set), &set) < 0 ? -errno : cpu;
}

int
tl_cmd_bench(int argc, char **argv)
{
	static const struct option lo[] = {
		{"config", required_argument, NULL, 'c'},
		{"data", required_argument, NULL, 'D'},
		{"events", required_argument, NULL, 'n'},
		{"seconds", required_argument, NULL, 't'},
		{"seed", required_argument, NULL, 'S'},
		{"clickhouse", required_argument, NULL, 'C'},
		{"e2e-events", required_argument, NULL, 'E'},
		{"rounds", required_argument, NULL, 'R'},
		{"e2e-compression", required_argument, NULL, 'Z'},
		{"e2e-only", no_argument, NULL, 'O'},
		{"clickhouse-pid", required_argument, NULL, 'P'},
		{"ceiling-chunk", required_argument, NULL, 'K'},
		{"ceiling-parallel", required_argument, NULL, 'J'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct tl_bench_e2e_conf e2e = {.events = 100000, .rounds = 3};
	cpu_set_t cpus;
	bool e2e_only = false;
	static struct tl_app_config cfg;
	static struct frames jumbo, mtu1500;
	const char *config = NULL, *data = getenv("TAPLINE_DATA");
	char path[4096], msg[512];
	struct tl_corpus *corpus = NULL;
	struct tl_corpus_conf cc;
	struct tl_corpus_batch batch = {0};
	struct tl_schema *schema = NULL;
	struct corpus_view cv;
	uint32_t n_events = 20000;
	double extract_gbps = 0, ref_gbps = 0, min_secs = 2.0, t0, t;
	uint64_t passes, seed = 1, accepted;
	int c, rc, exit_code = TL_EXIT_FAIL;

	memset(&cv, 0, sizeof(cv));
	optind = 1;
	while ((c = getopt_long(argc, argv, "c:n:t:h", lo, NULL)) != -1) {
		switch (c) {
		case 'c':
			config = optarg;
			break;
		case 'D':
			data = optarg;
			break;
		case 'n':
			n_events = (uint32_t)strtoul(optarg, NULL, 10);
			break;
		case 't':
			min_secs = strtod(optarg, NULL);
			break;
		case 'S':
			seed = strtoull(optarg, NULL, 10);
			break;
		case 'C':
			e2e.url = optarg;
			break;
		case 'E':
			e2e.events = (uint32_t)strtoul(optarg, NULL, 10);
			break;
		case 'R':
			e2e.rounds = (uint32_t)strtoul(optarg, NULL, 10);
			break;
		case 'Z':
			e2e.compression = optarg;
			break;
		case 'O':
			e2e_only = true;
			break;
		case 'P':
			e2e.clickhouse_pid = atoi(optarg);
			break;
		case 'K':
			e2e.ceiling_chunk = (size_t)strtoull(optarg, NULL, 10);
			break;
		case 'J':
			e2e.ceiling_parallel = (unsigned)strtoul(optarg, NULL, 10);
			if (e2e.ceiling_parallel < 1 || e2e.ceiling_parallel > 8) {
				fprintf(stderr, "tapline bench: --ceiling-parallel takes 1 to 8\n");
				return TL_EXIT_USAGE;
			}
			break;
		case 'h':
			bench_usage(stdout);
			return TL_EXIT_OK;
		default:
			bench_usage(stderr);
			return TL_EXIT_USAGE;
		}
	}
	if (optind != argc || n_events == 0 || min_secs <= 0 || e2e.events == 0 ||
			(e2e_only && e2e.url == NULL)) {
		bench_usage(stderr);
		return TL_EXIT_USAGE;
	}
	if (config == NULL) {
		const char *const *dirs = tl_app_profile_dirs();

		snprintf(path, sizeof(path), "%s/e6data-qpe.yaml", dirs[0]);
		for (int i = 0; dirs[i] && access(path, R_OK) != 0; i++)
			snprintf(path, sizeof(path), "%s/e6data-qpe.yaml", dirs[i]);
		config = path;
	}
	if (data == NULL || data[0] == '\0')
		data = TL_DATA_DIR;
	rc = tl_app_load(config, &cfg, &schema, stderr);
	if (rc < 0)
		return TL_EXIT_USAGE;
	rc = tl_corpus_load(data, &corpus, msg, sizeof(msg));
	if (rc < 0) {
		TL_ERR("corpus: %s", msg);
		goto out;
	}
	tl_corpus_conf_defaults(&cc);
	cc.seed = seed;
	cc.max_event_size = cfg.pipeline.limits.max_event_size;
	cc.max_string = cfg.pipeline.limits.max_string;
	cc.max_depth = cfg.pipeline.limits.max_depth;
	rc = tl_corpus_batch_build(corpus, &cc, n_events, &batch);
	if (rc < 0) {
		TL_ERR("corpus: cannot build %u events: %s", n_events, tl_strerror(rc));
		goto out;
	}

	/* Events with 64 readable bytes after the last (simdjson's padding). */
	{
		uint8_t *buf = malloc(batch.len + 64);
		uint32_t *off = malloc(sizeof(*off) * n_events), *len = malloc(sizeof(*len) * n_events);

		if (!buf || !off || !len) {
			free(buf);
			free(off);
			free(len);
			TL_ERR("out of memory");
			goto out;
		}
		memcpy(buf, batch.buf, batch.len);
		memset(buf + batch.len, ' ', 64);
		for (uint32_t i = 0; i < n_events; i++) {
			off[i] = (uint32_t)batch.off[i];
			len[i] = (uint32_t)(batch.off[i + 1] - batch.off[i] - 1);
			cv.bytes += len[i];
		}
		cv.ev.buf = buf;
		cv.ev.size = batch.len;
		cv.ev.off = off;
		cv.ev.len = len;
		cv.ev.n = n_events;
	}
	if (e2e_only) {
		sched_getaffinity(0, sizeof(cpus), &cpus);
		e2e.cpus = &cpus;
		goto e2e;
	}
	rc = frame_events(&cv.ev, 9000, &jumbo);
	if (rc == 0)
		rc = frame_events(&cv.ev, 1500, &mtu1500);
	if (rc < 0) {
		TL_ERR("cannot frame the corpus: %s", tl_strerror(rc));
		goto out;
	}
	sched_getaffinity(0, sizeof(cpus), &cpus);
	e2e.cpus = &cpus;
	rc = pin_to_one_cpu();
	printf("# corpus: %u events, %.0f bytes average, schema %s (%u columns), extractor %s, "
	       "cpu %d\n",
			n_events, (double)cv.bytes / n_events, cfg.name, tl_schema_n_cols(schema),
			tl_json_impl(), rc);
	printf("figure bench_event_bytes_avg %.0f bytes\n", (double)cv.bytes / n_events);

	/* 1. decode + extract through the real per-worker pipeline, software checksums:
	 * jumbo frames (few fragments), then a 1500-byte MTU (nearly every datagram
	 * reassembled). */
	if (bench_pipeline("extract", &cfg, schema, &jumbo, n_events, cv.bytes, min_secs,
			    &extract_gbps) < 0 ||
			bench_pipeline("extract_mtu1500", &cfg, schema, &mtu1500, n_events, cv.bytes,
					min_secs, &ref_gbps) < 0)
		goto out;

	/* 2. the extractor alone. */
	{
		static struct tl_event ev;

		t0 = now_s();
		passes = 0;
		accepted = 0;
		do {
			for (uint32_t i = 0; i < n_events; i++)
				accepted += tl_json_extract(schema, cv.ev.buf + cv.ev.off[i], cv.ev.len[i],
							    &ev) == TL_REASON_OK;
			passes++;
		} while ((t = now_s() - t0) < min_secs);
		report("json_extract", accepted, passes * cv.bytes, t);
	}

	/* 3. references. */
	t0 = now_s();
	passes = 0;
	accepted = 0;
	do {
		accepted += tl_bench_jansson(schema, &cv.ev);
		passes++;
	} while ((t = now_s() - t0) < min_secs);
	if (accepted != passes * n_events)
		TL_WARN("jansson accepted %" PRIu64 " of %" PRIu64, accepted, passes * n_events);
	ref_gbps = report("jansson", accepted, passes * cv.bytes, t);
	printf("figure extract_vs_jansson %.1f x\n", extract_gbps / ref_gbps);

	if (__builtin_cpu_supports("avx2")) {
		t0 = now_s();
		passes = 0;
		accepted = 0;
		do {
			accepted += tl_bench_simdjson(schema, &cv.ev);
			passes++;
		} while ((t = now_s() - t0) < min_secs);
		if (accepted != passes * n_events)
			TL_WARN("simdjson accepted %" PRIu64 " of %" PRIu64, accepted,
					passes * n_events);
		ref_gbps = report("simdjson", accepted, passes * cv.bytes, t);
		printf("figure extract_vs_simdjson %.2f x\n", extract_gbps / ref_gbps);
	} else {
		printf("# simdjson reference skipped: CPU has no AVX2\n");
	}
	/* 4. the durable spool: the same events encoded as the workers encode them (the
	 * profile's batch settings), committed with fsync, in the spool's steady state. */
	if (bench_spool(&cfg, schema, &cv, min_secs) < 0)
		goto out;
	/* 5. error classification with the Spark profile's patterns. */
	{
		const char *const *dirs = tl_app_profile_dirs();
		char spark[4096];

		snprintf(spark, sizeof(spark), "%s/spark.yaml", dirs[0]);
		for (int i = 0; dirs[i] && access(spark, R_OK) != 0; i++)
			snprintf(spark, sizeof(spark), "%s/spark.yaml", dirs[i]);
		if (tl_bench_classify(spark, &cv.ev, min_secs) < 0)
			goto out;
	}
e2e:
	/* 6. end to end into ClickHouse, next to ClickHouse's own ceiling. */
	if (e2e.url) {
		if (tl_bench_e2e(&cfg, schema, &cv.ev, &e2e) < 0)
			goto out;
	}
	exit_code = TL_EXIT_OK;
out:
	free((void *)cv.ev.buf);
	free((void *)cv.ev.off);
	free((void *)cv.ev.len);
	frames_free(&jumbo);
	frames_free(&mtu1500);
	tl_corpus_batch_free(&batch);
	tl_corpus_free(corpus);
	tl_schema_free(schema);
	return exit_code;
}
