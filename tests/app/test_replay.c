/* SPDX-License-Identifier: BSD-3-Clause */
/* The shipped vendor profile end to end without DPDK: load it (with a site override
 * through extends:), generate a capture with the generator and the pcap writer, read it
 * back with libpcap and run every frame through the pipeline. Every counter must be what
 * the writer and the generator say it must be. */
#include <errno.h>
#include <pcap/pcap.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "tl_app.h"
#include "tl_corpus.h"
#include "tl_error.h"
#include "tl_pcapw.h"
#include "tl_pipeline.h"
#include "tl_test_schema.h"

static char tmpdir[] = "/tmp/tapline-test-replay.XXXXXX";

static const char *
src_dir(void)
{
	const char *s = getenv("TAPLINE_SRC");

	return s && s[0] ? s : ".";
}

static const char *
data_dir(void)
{
	const char *s = getenv("TAPLINE_DATA");

	return s && s[0] ? s : "../shared/data";
}

static void
test_replay_vendor_profile_loads_and_compiles(void **state)
{
	static struct tl_app_config cfg;
	struct tl_schema *s = NULL;
	char path[4096];

	(void)state;
	snprintf(path, sizeof(path), "%s/config/profiles/e6data-qpe.yaml", src_dir());
	assert_int_equal(tl_app_load(path, &cfg, &s, stderr), 0);
	assert_string_equal(cfg.name, "e6data-qpe");
	assert_int_equal(tl_schema_n_cols(s), 10);
	assert_int_equal(tl_schema_col(s, (uint32_t)tl_schema_time_col(s))->type, TL_COL_DATETIME);
	assert_string_equal(tl_schema_col(s, (uint32_t)tl_schema_error_col(s))->path,
			"metadata.error");
	assert_int_equal(cfg.capture.n_ports, 1);
	assert_int_equal(cfg.pipeline.limits.max_event_size, 60 * 1024);
	tl_schema_free(s);
}

/* tests/common/tl_test_schema.h copies the profile's schema and limits for the unit
 * tests: it must not drift from the file. */
static void
test_replay_vendor_profile_matches_test_schema(void **state)
{
	static struct tl_app_config cfg;
	static struct tl_schema_def want;
	struct tl_limits lim = tl_test_e6data_limits();
	char path[4096];

	(void)state;
	snprintf(path, sizeof(path), "%s/config/profiles/e6data-qpe.yaml", src_dir());
	assert_int_equal(tl_app_load(path, &cfg, NULL, stderr), 0);
	tl_test_e6data_def(&want);
	assert_int_equal(want.n_cols, TL_TEST_E6DATA_COLS);
	assert_int_equal(cfg.schema.n_cols, want.n_cols);
	for (uint32_t i = 0; i < want.n_cols; i++) {
		const struct tl_col_def *got = &cfg.schema.cols[i], *exp = &want.cols[i];

		assert_string_equal(got->name, exp->name);
		assert_string_equal(got->path, exp->path);
		assert_int_equal(got->type, exp->type);
		assert_int_equal(got->required, exp->required);
		assert_int_equal(got->max_len, exp->max_len);
	}
	assert_string_equal(cfg.schema.time_column, want.time_column);
	assert_string_equal(cfg.schema.error_column, want.error_column);
	assert_string_equal(cfg.schema.id_column, want.id_column);
	assert_memory_equal(&cfg.pipeline.limits, &lim, sizeof(lim));
}

static void
test_replay_site_override_missing_parent_fails(void **state)
{
	static struct tl_app_config cfg;
	char path[4096];
	FILE *f, *errs;
	char *buf = NULL;
	size_t len = 0;

	(void)state;
	snprintf(path, sizeof(path), "%s/orphan.yaml", tmpdir);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("extends: e6data-qpe-missing\n", f);
	fclose(f);
	errs = open_memstream(&buf, &len);
	assert_int_equal(tl_app_load(path, &cfg, NULL, errs), TL_E_CONFIG);
	fclose(errs);
	assert_non_null(strstr(buf, "orphan.yaml:1:10:"));
	free(buf);
}

static void
replay(const char *site, uint64_t n_events, double malformed, double faults)
{
	static struct tl_app_config cfg;
	static struct tl_pipeline_worker w[2];
	struct tl_schema *schema = NULL;
	struct tl_corpus *corpus = NULL;
	struct tl_corpus_gen *gen = NULL;
	struct tl_corpus_conf cc;
	struct tl_pcapw_conf pc;
	struct tl_pcapw *pw = NULL;
	struct tl_counters total;
	uint64_t want_valid = 0, want_rej = 0, want_reason[TL_REASON_MAX];
	uint16_t port = 5170;
	char msg[512], path[4096];
	static uint8_t dgram[TL_PCAPW_UDP_MAX];

	memset(want_reason, 0, sizeof(want_reason));
	assert_int_equal(tl_app_load(site, &cfg, &schema, stderr), 0);
	assert_int_equal(tl_corpus_load(data_dir(), &corpus, msg, sizeof(msg)), 0);
	tl_corpus_conf_defaults(&cc);
	cc.seed = 99;
	cc.malformed_share = malformed;
	cc.max_event_size = cfg.pipeline.limits.max_event_size;
	cc.max_string = cfg.pipeline.limits.max_string;
	cc.max_depth = cfg.pipeline.limits.max_depth;
	assert_int_equal(tl_corpus_gen_create(corpus, &cc, &gen), 0);
	tl_pcapw_conf_defaults(&pc);
	snprintf(path, sizeof(path), "%s/cap.pcap", tmpdir);
	pc.path = path;
	pc.shards = 2;
	pc.fault_share = faults;
	pc.seed = 5;
	assert_int_equal(tl_pcapw_open(&pc, &pw, msg, sizeof(msg)), 0);

	/* Pack events into datagrams as the writer's plan says; an event that does not fit
	 * waits for the next datagram. */
	{
		static uint8_t pending[TL_PCAPW_UDP_MAX];
		uint32_t pending_len = 0;
		enum tl_reason pending_reason = TL_REASON_OK;
		uint64_t made = 0;

		while (made < n_events || pending_len) {
			struct tl_pcapw_plan plan;
			enum tl_reason outcome[256];
			uint32_t len = 0, in = 0;

			tl_pcapw_plan(pw, &plan);
			for (;;) {
				if (pending_len == 0) {
					struct tl_corpus_event ev;

					if (made == n_events)
						break;
					assert_int_equal(tl_corpus_next(gen, &ev), 0);
					made++;
					memcpy(pending, ev.data, ev.len);
					pending_len = ev.len;
					pending_reason = ev.reason;
				}
				if (in > 0 && len + pending_len + 1 > plan.max_payload)
					break;
				memcpy(dgram + len, pending, pending_len);
				dgram[len + pending_len] = '\n';
				len += pending_len + 1;
				outcome[in++] = pending_reason;
				pending_len = 0;
				if (plan.single || in == 256)
					break;
			}
			assert_int_equal(tl_pcapw_write(pw, &plan, dgram, len, made * 1000), 0);
			if (tl_pcapw_fault_loses(plan.fault))
				continue;
			for (uint32_t i = 0; i < in; i++) {
				if (outcome[i] == TL_REASON_OK) {
					want_valid++;
				} else {
					want_rej++;
					want_reason[outcome[i]]++;
				}
			}
		}
	}
	{
		const struct tl_pcapw_stats *st = tl_pcapw_stats(pw);

		for (int r = 0; r < TL_REASON_MAX; r++)
			if (!tl_reason_is_event((enum tl_reason)r))
				want_reason[r] = st->reason[r];
		memset(&total, 0, sizeof(total));
		for (unsigned q = 0; q < 2; q++) {
			char shard[4096], eb[PCAP_ERRBUF_SIZE];
			struct pcap_pkthdr *h;
			const u_char *data;
			pcap_t *p;

			tl_pcapw_shard_path(path, 2, q, shard, sizeof(shard));
			if (q == 0)
				assert_int_equal(tl_pcapw_close(pw), 0);
			p = pcap_open_offline(shard, eb);
			assert_non_null(p);
			assert_int_equal(tl_pipeline_worker_init(&w[q], &cfg.pipeline, schema, &port, 1,
							 NULL, NULL),
					0);
			while (pcap_next_ex(p, &h, &data) == 1)
				tl_pipeline_rx(&w[q], data, h->caplen, 0, h->ts.tv_sec * 1000000000ull);
			tl_pipeline_expire(&w[q], UINT64_MAX);
			pcap_close(p);
			tl_counters_add(&total, &w[q].cnt);
			tl_pipeline_worker_fini(&w[q]);
		}
	}
	assert_int_equal(total.events_valid, want_valid);
	assert_int_equal(total.events_rejected, want_rej);
	for (int r = 1; r < TL_REASON_MAX; r++) {
		if (total.reason[r] != want_reason[r])
			print_error("reason %s: got %llu want %llu\n", tl_reason_name((enum tl_reason)r),
					(unsigned long long)total.reason[r],
					(unsigned long long)want_reason[r]);
		assert_int_equal(total.reason[r], want_reason[r]);
	}
	assert_true(total.reassembled > 0);
	tl_corpus_gen_free(gen);
	tl_corpus_free(corpus);
	tl_schema_free(schema);
}

static void
test_replay_clean_capture_all_valid(void **state)
{
	char site[4096];

	(void)state;
	snprintf(site, sizeof(site), "%s/config/profiles/e6data-qpe.yaml", src_dir());
	replay(site, 3000, 0.0, 0.0);
}

static void
test_replay_faulty_capture_every_reason_counted(void **state)
{
	char site[4096];

	(void)state;
	snprintf(site, sizeof(site), "%s/tests/integration/site-replay.yaml", src_dir());
	replay(site, 6000, 0.08, 0.03);
}

static int
setup(void **state)
{
	(void)state;
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int
teardown(void **state)
{
	char cmd[256];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_replay_vendor_profile_loads_and_compiles),
		cmocka_unit_test(test_replay_vendor_profile_matches_test_schema),
		cmocka_unit_test(test_replay_site_override_missing_parent_fails),
		cmocka_unit_test(test_replay_clean_capture_all_valid),
		cmocka_unit_test(test_replay_faulty_capture_every_reason_counted),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
