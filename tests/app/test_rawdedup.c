/* SPDX-License-Identifier: BSD-3-Clause */
/* Raw-mode dedup: a sink drops events it accepted before, and the ids of committed rows
 * (only those) are remembered by the spool across a restart. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tl_json.h"
#include "tl_rawdedup.h"
#include "tl_sink.h"
#include "tl_spool.h"
#include "tl_test_schema.h"

#define SEC 1000000000ull

static struct tl_schema *schema;
static char dir[] = "/tmp/tapline-test-rawdedup.XXXXXX";

/* One appliance: spool, side data, the dedup writer part, one worker's sink. */
struct rig {
	struct tl_spool *sp;
	struct tl_side side;
	struct tl_rawdedup *rd;
	struct tl_sink sink;
	uint64_t committed;
};

static void
on_commit(void *arg, unsigned producer, uint64_t user, uint64_t key, int status)
{
	struct rig *r = arg;

	(void)producer;
	(void)key;
	if (status == 0)
		r->committed += user >> 8;
}

static void
rig_open(struct rig *r, const char *name, uint64_t capacity)
{
	struct tl_rawdedup_conf dc = {
	        .enabled = true, .window_ns = 600 * SEC, .capacity = capacity};
	struct tl_batch_conf bc = {
	        .rows = 8, .bytes = 1 << 20, .delay_ns = SEC, .compression = TL_BATCH_CODEC_LZ4};
	struct tl_spool_conf sc;
	char err[256];

	memset(r, 0, sizeof(*r));
	assert_int_equal(tl_opt_defaults(tl_spool_opts, &sc), 0);
	snprintf(sc.path, sizeof(sc.path), "%s/%s", dir, name);
	sc.nosync = true;
	sc.buffer_size = 2 << 20;
	assert_int_equal(tl_spool_open(&sc, 1, 0, on_commit, r, &r->sp), 0);
	tl_side_init(&r->side);
	assert_int_equal(tl_rawdedup_create(&dc, 1, (uint32_t)bc.rows, r->sp, &r->side, &r->rd, err,
	                         sizeof(err)),
	        0);
	assert_int_equal(tl_side_install(&r->side, r->sp), 0);
	assert_int_equal(tl_sink_init(&r->sink, schema, &bc, "a1", r->sp, 0, sc.buffer_size), 0);
	assert_int_equal(
	        tl_sink_set_dedup(&r->sink, &r->side, (uint32_t)capacity, dc.window_ns), 0);
	tl_rawdedup_restore(r->rd, r->sink.dd);
	tl_sink_tick(&r->sink, 1);
}

/* Shut down; @p seal false: as a crash would, the pending rows never reach the spool. */
static void
rig_close(struct rig *r, bool seal)
{
	if (seal) {
		tl_sink_tick(&r->sink, UINT64_MAX);
		assert_int_equal(tl_spool_flush(r->sp, 5 * SEC), 0);
	}
	tl_sink_fini(&r->sink);
	tl_spool_close(r->sp);
	tl_rawdedup_free(r->rd);
}

/* Hadoop log lines as the events' errors: distinct per @p i. */
static void
feed(struct rig *r, int i)
{
	static const char *const lines[] = {
	        "java.net.NoRouteToHostException: No Route to Host from MININT-FNANLI5/127.0.0.1",
	        "org.apache.hadoop.hdfs.BlockMissingException: Could not obtain block",
	        "java.io.IOException: Bad connect ack with firstBadLink as 10.190.173.170:50010",
	};
	static struct tl_event ev;
	char buf[512];
	enum tl_reason v;

	snprintf(buf, sizeof(buf),
	        "{\"query_id\":\"q%d\",\"event_type\":\"failed\",\"timestamp\":"
	        "\"2026-11-21T05:%02d:%02d.123Z\",\"metadata\":{\"error\":\"%s\"}}",
	        i, (i / 60) % 60, i % 60, lines[i % 3]);
	v = tl_json_extract(schema, (const uint8_t *)buf, (uint32_t)strlen(buf), &ev);
	assert_int_equal(v, TL_REASON_OK);
	tl_sink_event(&r->sink, &ev, v);
}

static uint64_t
rows(const struct rig *r)
{
	uint64_t n = 0;

	for (int t = 0; t < TL_BATCH_EVENT_TABLES; t++)
		n += r->sink.cnt.rows[t];
	return n;
}

static void
test_rawdedup_second_copy_dropped_and_counted(void **state)
{
	struct rig r;

	(void)state;
	rig_open(&r, "a", 1024);
	for (int i = 0; i < 20; i++)
		feed(&r, i);
	/* Sent again: some still in the pending batch, some in batches already sealed. */
	for (int i = 0; i < 10; i++)
		feed(&r, i);
	for (int i = 20; i < 25; i++)
		feed(&r, i);
	assert_int_equal(r.sink.dup_rows, 10);
	assert_int_equal(rows(&r), 25);
	rig_close(&r, true);
	assert_int_equal(r.committed, 25);
}

static void
test_rawdedup_committed_ids_survive_restart(void **state)
{
	struct rig r;

	(void)state;
	rig_open(&r, "b", 1024);
	for (int i = 0; i < 20; i++)
		feed(&r, i);
	rig_close(&r, true);
	assert_int_equal(r.committed, 20);
	rig_open(&r, "b", 1024);
	assert_int_equal(tl_rawdedup_stored(r.rd), 20);
	for (int i = 0; i < 20; i++)
		feed(&r, i);
	assert_int_equal(r.sink.dup_rows, 20);
	feed(&r, 20);
	assert_int_equal(rows(&r), 1);
	rig_close(&r, true);
	assert_int_equal(r.committed, 1);
}

/* Rows that never reached the spool were never accepted: their resend is new. */
static void
test_rawdedup_uncommitted_ids_forgotten(void **state)
{
	struct rig r;

	(void)state;
	rig_open(&r, "c", 1024);
	for (int i = 0; i < 8; i++) /* one full batch: committed */
		feed(&r, i);
	for (int i = 8; i < 12; i++) /* pending when the process dies */
		feed(&r, i);
	assert_int_equal(tl_spool_flush(r.sp, 5 * SEC), 0);
	rig_close(&r, false);
	assert_int_equal(r.committed, 8);
	rig_open(&r, "c", 1024);
	for (int i = 0; i < 12; i++)
		feed(&r, i);
	assert_int_equal(r.sink.dup_rows, 8);
	assert_int_equal(rows(&r), 4);
	rig_close(&r, true);
}

/* What the spool keeps is bounded by the workers' capacity, not by the traffic. */
static void
test_rawdedup_stored_ids_bounded(void **state)
{
	struct rig r;

	(void)state;
	rig_open(&r, "d", 16);
	for (int i = 0; i < 400; i++) {
		feed(&r, i);
		if (i % 8 == 7)
			assert_int_equal(tl_spool_flush(r.sp, 5 * SEC), 0);
	}
	rig_close(&r, true);
	assert_int_equal(r.committed, 400);
	rig_open(&r, "d", 16);
	/* At most the capacity plus the newest piece (one batch of 8). */
	assert_true(tl_rawdedup_stored(r.rd) <= 16 + 8);
	assert_true(tl_rawdedup_stored(r.rd) >= 16);
	/* The newest are remembered, the oldest are not. */
	feed(&r, 399);
	assert_int_equal(r.sink.dup_rows, 1);
	feed(&r, 0);
	assert_int_equal(r.sink.dup_rows, 1);
	rig_close(&r, true);
}

static void
test_rawdedup_conf_check(void **state)
{
	struct tl_rawdedup_conf c;
	char msg[128];

	(void)state;
	assert_int_equal(tl_opt_defaults(tl_rawdedup_opts, &c), 0);
	assert_int_equal(tl_rawdedup_check(&c, msg, sizeof(msg)), 0);
	c.capacity = 1000;
	assert_int_equal(tl_rawdedup_check(&c, msg, sizeof(msg)), 1);
	assert_non_null(strstr(msg, "power of two"));
}

static int
setup(void **state)
{
	(void)state;
	return tl_test_e6data_setup(dir, &schema);
}

static int
teardown(void **state)
{
	(void)state;
	return tl_test_e6data_teardown(dir, schema);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_rawdedup_second_copy_dropped_and_counted),
	        cmocka_unit_test(test_rawdedup_committed_ids_survive_restart),
	        cmocka_unit_test(test_rawdedup_uncommitted_ids_forgotten),
	        cmocka_unit_test(test_rawdedup_stored_ids_bounded),
	        cmocka_unit_test(test_rawdedup_conf_check),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
