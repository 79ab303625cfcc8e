/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tl_app.h"
#include "tl_bench_ref.h"
#include "tl_cksum.h"
#include "tl_cmd.h"
#include "tl_corpus.h"
#include "tl_error.h"
#include "tl_json.h"
#include "tl_log.h"
#include "tl_pipeline.h"

#ifndef TL_DATA_DIR
#define TL_DATA_DIR "../shared/data"
#endif

#define FRAME_HDR (14 + 20 + 8)

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
		"  -h, --help          this text\n");
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void
wr16(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* One Ethernet/IPv4/UDP frame per event, checksums valid: what a sender with a large
 * MTU (or the loopback) delivers. Returns the frame length. */
static uint32_t
build_frame(uint8_t *f, const uint8_t *ev, uint32_t len, uint32_t i)
{
	static const uint8_t src[4] = {198, 18, 1, 1}, dst[4] = {198, 18, 0, 1};
	uint8_t *ip = f + 14, *udp = ip + 20;
	uint16_t ck;

	memset(f, 0, FRAME_HDR);
	memcpy(f, "\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02", 12);
	wr16(f + 12, 0x0800);
	ip[0] = 0x45;
	wr16(ip + 2, 20 + 8 + len);
	wr16(ip + 4, i & 0xffff);
	ip[8] = 64;
	ip[9] = 17;
	memcpy(ip + 12, src, 4);
	memcpy(ip + 16, dst, 4);
	ck = tl_cksum(ip, 20);
	memcpy(ip + 10, &ck, 2);
	wr16(udp, 40000 + (i & 1023));
	wr16(udp + 2, 5170);
	wr16(udp + 4, 8 + len);
	memcpy(udp + 8, ev, len);
	ck = tl_cksum_l4(src, dst, 4, 17, udp, 8 + len);
	if (ck == 0)
		ck = 0xffff;
	memcpy(udp + 6, &ck, 2);
	return FRAME_HDR + len;
}

struct corpus_view {
	struct tl_bench_events ev;
	uint8_t *frames;
	uint32_t *frame_off;
	uint32_t *frame_len;
	uint64_t bytes; /* event bytes in one pass */
};

static void
report(const char *name, uint64_t events, uint64_t bytes, double secs)
{
	printf("figure %s_gbps %.3f GB/s\n", name, (double)bytes / secs / 1e9);
	printf("figure %s_events_per_s %.0f events/s\n", name, (double)events / secs);
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
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	static struct tl_app_config cfg;
	static struct tl_pipeline_worker pw;
	const char *config = NULL, *data = getenv("TAPLINE_DATA");
	char path[4096], msg[512];
	struct tl_corpus *corpus = NULL;
	struct tl_corpus_conf cc;
	struct tl_corpus_batch batch = {0};
	struct tl_schema *schema = NULL;
	struct corpus_view cv;
	uint32_t n_events = 20000;
	uint16_t port = 5170;
	double min_secs = 2.0, t0, t;
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
		case 'h':
			bench_usage(stdout);
			return TL_EXIT_OK;
		default:
			bench_usage(stderr);
			return TL_EXIT_USAGE;
		}
	}
	if (optind != argc || n_events == 0 || min_secs <= 0) {
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

	/* Events with 64 readable bytes after the last (simdjson's padding), and the
	 * same events framed. */
	{
		uint8_t *buf = malloc(batch.len + 64);
		uint32_t *off = malloc(sizeof(*off) * n_events), *len = malloc(sizeof(*len) * n_events);
		size_t fsz = batch.len + (size_t)n_events * FRAME_HDR, fo = 0;

		cv.frames = malloc(fsz);
		cv.frame_off = malloc(sizeof(uint32_t) * n_events);
		cv.frame_len = malloc(sizeof(uint32_t) * n_events);
		if (!buf || !off || !len || !cv.frames || !cv.frame_off || !cv.frame_len) {
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
			cv.frame_off[i] = (uint32_t)fo;
			cv.frame_len[i] = build_frame(cv.frames + fo, buf + off[i], len[i], i);
			fo += cv.frame_len[i];
		}
		cv.ev.buf = buf;
		cv.ev.size = batch.len;
		cv.ev.off = off;
		cv.ev.len = len;
		cv.ev.n = n_events;
	}
	rc = pin_to_one_cpu();
	printf("# corpus: %u events, %.0f bytes average, schema %s (%u columns), extractor %s, "
	       "cpu %d\n",
			n_events, (double)cv.bytes / n_events, cfg.name, tl_schema_n_cols(schema),
			tl_json_impl(), rc);
	printf("figure bench_event_bytes_avg %.0f bytes\n", (double)cv.bytes / n_events);

	/* 1. decode + extract through the real per-worker pipeline. */
	rc = tl_pipeline_worker_init(&pw, &cfg.pipeline, schema, &port, 1, NULL, NULL);
	if (rc < 0) {
		TL_ERR("pipeline: %s", tl_strerror(rc));
		goto out;
	}
	t0 = now_s();
	passes = 0;
	do {
		for (uint32_t i = 0; i < n_events; i++)
			tl_pipeline_rx(&pw, cv.frames + cv.frame_off[i], cv.frame_len[i], 0, 0);
		passes++;
	} while ((t = now_s() - t0) < min_secs);
	if (pw.cnt.events_valid != passes * n_events) {
		TL_ERR("pipeline accepted %" PRIu64 " of %" PRIu64 " events", pw.cnt.events_valid,
				passes * n_events);
		tl_pipeline_worker_fini(&pw);
		goto out;
	}
	report("extract", passes * n_events, passes * cv.bytes, t);
	tl_pipeline_worker_fini(&pw);

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
	report("jansson", accepted, passes * cv.bytes, t);

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
		report("simdjson", accepted, passes * cv.bytes, t);
	} else {
		printf("# simdjson reference skipped: CPU has no AVX2\n");
	}
	exit_code = TL_EXIT_OK;
out:
	free((void *)cv.ev.buf);
	free((void *)cv.ev.off);
	free((void *)cv.ev.len);
	free(cv.frames);
	free(cv.frame_off);
	free(cv.frame_len);
	tl_corpus_batch_free(&batch);
	tl_corpus_free(corpus);
	tl_schema_free(schema);
	return exit_code;
}
