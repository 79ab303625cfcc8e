/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libFuzzer target for the whole per-frame path: decode, reassembly, UDP, NDJSON split
 * and extraction, through tl_pipeline_rx exactly as a driver calls it.
 *
 * Input: one byte of TL_HW_* flags, then frames as [u16 little-endian length][bytes],
 * each followed by one byte that advances the clock (so reassembly timers fire). With
 * hardware flags set, unfragmented datagrams skip checksum checks and the fuzzer reaches
 * the JSON extractor; fragments are always checked in software.
 *
 * Invariants: every event handed to the sink is either accepted with all its values
 * inside its own raw bytes, or rejected with an event-level reason; the counters agree
 * with what the sink saw; after expiring everything, no datagram is left in progress.
 *
 * Run: build-asan/tests/fuzz_frame -max_total_time=60 tests/fuzz/corpus_frame
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tl_pipeline.h"
#include "tl_test_fuzz.h"
#include "tl_test_schema.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct tl_schema *schema;
static struct tl_pipeline_conf conf;
static struct tl_pipeline_worker worker;
static uint64_t sink_ok, sink_rejected;

static void
init(void)
{
	static struct tl_schema_def d;
	char msg[256];

	/* seven of the ten e6data columns, without per-column caps */
	tl_test_add_col(&d, "query_id", "query_id", TL_COL_STRING, true, 0);
	tl_test_add_col(&d, "event_type", "event_type", TL_COL_STRING, true, 0);
	tl_test_add_col(&d, "event_time", "timestamp", TL_COL_DATETIME, true, 0);
	tl_test_add_col(&d, "user_id", "metadata.user_id", TL_COL_STRING, false, 0);
	tl_test_add_col(&d, "duration_ms", "metadata.duration_ms", TL_COL_UINT64, false, 0);
	tl_test_add_col(&d, "error", "metadata.error", TL_COL_ANY, false, 0);
	tl_test_add_col(&d, "payload", "payload", TL_COL_ANY, false, 0);
	tl_test_set_roles(&d, "event_time", "error", "query_id");
	conf.limits.max_event_size = 8192;
	conf.limits.max_depth = 16;
	conf.limits.max_string = 4096;
	conf.limits.max_extra = 8;
	conf.reasm.max_flows = 4; /* small, so table-full and eviction paths are reached */
	conf.reasm.max_frags = 16;
	conf.reasm.timeout_ns = 1000000; /* the smallest the table accepts */
	if (tl_schema_compile(&d, &conf.limits, &schema, msg, sizeof(msg)) != 0) {
		fprintf(stderr, "schema: %s\n", msg);
		abort();
	}
}

static void
sink(void *arg, const struct tl_event *ev, enum tl_reason v)
{
	(void)arg;
	if (v != TL_REASON_OK) {
		TL_FUZZ_CHECK(tl_reason_is_event(v));
		sink_rejected++;
		return;
	}
	sink_ok++;
	for (uint32_t i = 0; i < tl_schema_n_cols(schema); i++) {
		const struct tl_value *val = &ev->col[i];

		if (val->kind == TL_VAL_STRING || val->kind == TL_VAL_RAW) {
			TL_FUZZ_CHECK(val->ptr >= ev->raw);
			TL_FUZZ_CHECK(val->ptr + val->len <= ev->raw + ev->raw_len);
		}
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t frame[65536];
	uint16_t port = 5170;
	uint64_t now = 0;
	uint32_t hw;

	if (schema == NULL)
		init();
	if (size < 1)
		return 0;
	hw = data[0] & (TL_HW_IP_CKSUM_GOOD | TL_HW_L4_CKSUM_GOOD);
	data++;
	size--;
	sink_ok = sink_rejected = 0;
	TL_FUZZ_CHECK(tl_pipeline_worker_init(&worker, &conf, schema, &port, 1, sink, NULL) == 0);
	while (size >= 2) {
		uint32_t len = (uint32_t)data[0] | (uint32_t)data[1] << 8;

		data += 2;
		size -= 2;
		if (len > size)
			len = (uint32_t)size;
		/* A private copy: the pipeline must not depend on bytes past the frame. */
		memcpy(frame, data, len);
		tl_pipeline_rx(&worker, frame, len, hw, now);
		data += len;
		size -= len;
		if (size) {
			now += data[0] * 20000ull; /* 255 ticks: 5 ms, past the timeout */
			data++;
			size--;
		}
	}
	tl_pipeline_expire(&worker, UINT64_MAX);
	TL_FUZZ_CHECK(tl_reasm_in_progress(worker.reasm) == 0);
	TL_FUZZ_CHECK(worker.cnt.events_valid == sink_ok);
	TL_FUZZ_CHECK(worker.cnt.events_rejected == sink_rejected);
	TL_FUZZ_CHECK(worker.cnt.events_error <= worker.cnt.events_valid);
	tl_pipeline_worker_fini(&worker);
	return 0;
}
