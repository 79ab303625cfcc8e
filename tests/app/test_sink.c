/* SPDX-License-Identifier: BSD-3-Clause */
/* The worker's spool sink: events -> encoded batches -> a real spool (LMDB, nosync). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tl_batch.h"
#include "tl_json.h"
#include "tl_sink.h"
#include "tl_spool.h"
#include "tl_test_schema.h"

static struct tl_schema *schema;
static char dir[] = "/tmp/tapline-test-sink.XXXXXX";

struct committed {
	uint64_t rows[TL_BATCH_EVENT_TABLES];
	uint64_t records;
	uint64_t dropped;
};

static void
on_commit(void *arg, unsigned producer, uint64_t user, uint64_t key, int status)
{
	struct committed *c = arg;

	(void)producer;
	(void)key;
	if (status != 0) {
		c->dropped += user >> 8;
		return;
	}
	c->rows[user & 0xff] += user >> 8;
	c->records++;
}

static struct tl_spool *
open_spool(const char *name, struct committed *c, uint64_t buffer_size, uint64_t max_size)
{
	struct tl_spool_conf sc;
	struct tl_spool *sp = NULL;

	assert_int_equal(tl_opt_defaults(tl_spool_opts, &sc), 0);
	snprintf(sc.path, sizeof(sc.path), "%s/%s", dir, name);
	sc.nosync = true;
	sc.buffer_size = buffer_size;
	sc.initial_size = max_size;
	sc.max_size = max_size;
	assert_int_equal(tl_spool_open(&sc, 1, 0, on_commit, c, &sp), 0);
	return sp;
}

static void
feed(struct tl_sink *s, const char *json)
{
	static struct tl_event ev;
	enum tl_reason v = tl_json_extract(schema, (const uint8_t *)json, (uint32_t)strlen(json), &ev);

	tl_sink_event(s, &ev, v);
}

static char *
event(int i, bool error)
{
	static char buf[512];

	snprintf(buf, sizeof(buf),
			"{\"query_id\":\"q%d\",\"event_type\":\"%s\",\"timestamp\":"
			"\"2026-11-21T05:00:%02d.123Z\",\"metadata\":{\"error\":%s}}",
			i, error ? "failed" : "finished", i % 60,
			error ? "\"java.io.IOException: Could not read footer\"" : "null");
	return buf;
}

static void
test_sink_batches_by_rows_and_age_then_flush(void **state)
{
	static struct tl_sink s;
	struct tl_batch_conf bc = {.rows = 10, .bytes = 1 << 20, .delay_ns = 1000, .compression = TL_BATCH_CODEC_GZIP, .gzip_level = 1};
	struct committed c = {0};
	struct tl_spool *sp = open_spool("a", &c, 2 << 20, 64 << 20);

	(void)state;
	assert_int_equal(tl_sink_init(&s, schema, &bc, "test-appliance", sp, 0, 2 << 20), 0);
	tl_sink_tick(&s, 100);
	for (int i = 0; i < 25; i++)
		feed(&s, event(i, false));
	for (int i = 0; i < 3; i++)
		feed(&s, event(i, true));
	feed(&s, "{\"query_id\":1}"); /* rejected: dead_letter */
	/* two full sink_output batches went at once; 5 rows and the others wait */
	assert_int_equal(s.cnt.batches[TL_BATCH_SINK_OUTPUT], 2);
	assert_int_equal(s.cnt.rows[TL_BATCH_SINK_OUTPUT], 25);
	assert_int_equal(s.cnt.rows[TL_BATCH_ERROR_EVENTS], 3);
	assert_int_equal(s.cnt.rows[TL_BATCH_DEAD_LETTER], 1);
	tl_sink_tick(&s, 100 + 999); /* younger than the delay: nothing sealed */
	assert_int_equal(s.cnt.batches[TL_BATCH_ERROR_EVENTS], 0);
	tl_sink_tick(&s, 100 + 1000); /* now they are old enough */
	assert_int_equal(s.cnt.batches[TL_BATCH_SINK_OUTPUT], 3);
	assert_int_equal(s.cnt.batches[TL_BATCH_ERROR_EVENTS], 1);
	assert_int_equal(s.cnt.batches[TL_BATCH_DEAD_LETTER], 1);
	feed(&s, event(99, false));
	tl_sink_tick(&s, UINT64_MAX); /* shutdown: everything pending goes */
	assert_int_equal(s.cnt.batches[TL_BATCH_SINK_OUTPUT], 4);
	assert_int_equal(tl_spool_flush(sp, 5000000000ull), 0);
	assert_int_equal(c.rows[TL_BATCH_SINK_OUTPUT], 26);
	assert_int_equal(c.rows[TL_BATCH_ERROR_EVENTS], 3);
	assert_int_equal(c.rows[TL_BATCH_DEAD_LETTER], 1);
	assert_int_equal(c.records, 6);
	tl_sink_fini(&s);
	tl_spool_close(sp);
}

struct check {
	unsigned records;
	uint64_t rows;
	int bad;
};

static int
check_record(void *arg, const struct tl_spool_rec *rec)
{
	struct check *k = arg;
	struct tl_batch_view v;

	if (tl_batch_parse(rec->data, rec->len, &v) != 0)
		k->bad++;
	else
		k->rows += v.hdr.rows;
	k->records++;
	return 0;
}

static void
test_sink_spooled_records_are_valid_batches(void **state)
{
	static struct tl_sink s;
	struct tl_batch_conf bc = {.rows = 7, .bytes = 1 << 20, .delay_ns = 1000000, .compression = TL_BATCH_CODEC_NONE};
	struct committed c = {0};
	struct tl_spool *sp = open_spool("b", &c, 2 << 20, 64 << 20);
	struct check k = {0};

	(void)state;
	assert_int_equal(tl_sink_init(&s, schema, &bc, "a1", sp, 0, 2 << 20), 0);
	for (int i = 0; i < 50; i++)
		feed(&s, event(i, i % 5 == 0));
	tl_sink_tick(&s, UINT64_MAX);
	assert_int_equal(tl_spool_flush(sp, 5000000000ull), 0);
	assert_true(tl_spool_read(sp, 1, 1000, check_record, &k, NULL) > 0);
	assert_int_equal(k.bad, 0);
	assert_int_equal(k.rows, 50);
	tl_sink_fini(&s);
	tl_spool_close(sp);
}

/* Per route: rows and the route ids in the batch headers, and no batch with two routes. */
struct by_route {
	uint32_t id[8];
	uint64_t rows[8];
	unsigned n;
	unsigned bad;
};

static int
count_route(void *arg, const struct tl_spool_rec *rec)
{
	struct by_route *r = arg;
	struct tl_batch_view v;
	unsigned k = 0;

	if (tl_batch_parse(rec->data, rec->len, &v) != 0) {
		r->bad++;
		return 0;
	}
	while (k < r->n && r->id[k] != v.hdr.route)
		k++;
	if (k == r->n && r->n < 8)
		r->id[r->n++] = v.hdr.route;
	if (k < 8)
		r->rows[k] += v.hdr.rows;
	return 0;
}

/*
 * Events of three destinations interleaved: each gets its own batches, stamped with its
 * route id; a rejected event goes to the default route whatever its route; a destination
 * beyond TL_SINK_MAX_ROUTES is dropped and counted, never mixed into another's batch.
 */
static void
test_sink_routes_batched_apart_and_stamped(void **state)
{
	static struct tl_sink s;
	static struct tl_event ev;
	struct tl_batch_conf bc = {.rows = 5, .bytes = 1 << 20, .delay_ns = 1000000, .compression = TL_BATCH_CODEC_LZ4};
	struct committed c = {0};
	struct tl_spool *sp = open_spool("r", &c, 2 << 20, 64 << 20);
	struct by_route r = {0};
	const uint32_t routes[3] = {0, 0x1234, 0xbeef};
	uint64_t want[3] = {0};

	(void)state;
	assert_int_equal(tl_sink_init(&s, schema, &bc, "a1", sp, 0, 2 << 20), 0);
	for (int i = 0; i < 60; i++) {
		const char *j = event(i, i % 7 == 0);

		assert_int_equal(tl_json_extract(schema, (const uint8_t *)j, (uint32_t)strlen(j), &ev),
				TL_REASON_OK);
		ev.route = routes[i % 3];
		tl_sink_event(&s, &ev, TL_REASON_OK);
		want[i % 3]++;
		if (i % 10 == 9) /* buffers back from the writer: nothing dropped */
			assert_int_equal(tl_spool_flush(sp, 5000000000ull), 0);
	}
	/* A rejected event of route 0xbeef: dead_letter of the default route. */
	ev.route = 0xbeef;
	tl_sink_event(&s, &ev, TL_REASON_EV_JSON_SYNTAX);
	want[0]++;
	assert_int_equal(s.cnt.routes, 3);
	/* More destinations than a sink batches for: dropped, counted. */
	for (uint32_t k = 0; k < TL_SINK_MAX_ROUTES; k++) {
		ev.route = 0x10000 + k;
		tl_sink_event(&s, &ev, TL_REASON_OK);
	}
	assert_int_equal(s.cnt.routes, TL_SINK_MAX_ROUTES);
	assert_int_equal(s.cnt.unroutable, 3);
	tl_sink_tick(&s, UINT64_MAX);
	assert_int_equal(tl_spool_flush(sp, 5000000000ull), 0);
	assert_true(tl_spool_read(sp, 1, 1000, count_route, &r, NULL) > 0);
	assert_int_equal(r.bad, 0);
	for (int t = 0; t < TL_BATCH_EVENT_TABLES; t++)
		assert_int_equal(s.cnt.dropped_rows[t], 0);
	for (int i = 0; i < 3; i++) {
		unsigned k = 0;

		while (k < r.n && r.id[k] != routes[i])
			k++;
		assert_true(k < r.n);
		assert_int_equal(r.rows[k], want[i]);
	}
	tl_sink_fini(&s);
	tl_spool_close(sp);
}

static void
test_sink_buffer_too_small_einval(void **state)
{
	static struct tl_sink s;
	struct tl_batch_conf bc = {.rows = 4096, .bytes = 1 << 20, .delay_ns = 1000000, .compression = TL_BATCH_CODEC_GZIP, .gzip_level = 1};
	struct committed c = {0};
	struct tl_spool *sp = open_spool("c", &c, 64 << 10, 64 << 20);

	(void)state;
	assert_int_equal(tl_sink_init(&s, schema, &bc, "a1", sp, 0, 64 << 10), -EINVAL);
	tl_sink_fini(&s); /* safe after a failed init */
	tl_spool_close(sp);
}

static void
test_sink_full_spool_rows_dropped_and_counted(void **state)
{
	static struct tl_sink s;
	struct tl_batch_conf bc = {.rows = 50, .bytes = 1 << 20, .delay_ns = 1000000, .compression = TL_BATCH_CODEC_NONE};
	struct committed c = {0};
	struct tl_spool *sp = open_spool("d", &c, 2 << 20, 16 << 20); /* 16 MiB: fills fast */
	static char big[8192];
	uint64_t fed = 0, lost;

	(void)state;
	assert_int_equal(tl_sink_init(&s, schema, &bc, "a1", sp, 0, 2 << 20), 0);
	memset(big, 'x', sizeof(big) - 200);
	for (int i = 0; i < 4000; i++) {
		char ev[9000];

		snprintf(ev, sizeof(ev),
				"{\"query_id\":\"q%d\",\"event_type\":\"x\",\"timestamp\":"
				"\"2026-11-21T05:00:00Z\",\"payload\":\"%.7000s\"}",
				i, big);
		feed(&s, ev);
		fed++;
		if (i % 50 == 0)
			tl_spool_flush(sp, 1000000000ull);
	}
	tl_sink_tick(&s, UINT64_MAX);
	tl_spool_flush(sp, 5000000000ull);
	lost = s.cnt.dropped_rows[TL_BATCH_SINK_OUTPUT];
	/* nothing vanishes: every row is either committed or counted as dropped */
	assert_true(lost > 0);
	assert_int_equal(c.rows[TL_BATCH_SINK_OUTPUT] + lost + c.dropped, fed);
	tl_sink_fini(&s);
	tl_spool_close(sp);
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
		cmocka_unit_test(test_sink_batches_by_rows_and_age_then_flush),
		cmocka_unit_test(test_sink_spooled_records_are_valid_batches),
		cmocka_unit_test(test_sink_buffer_too_small_einval),
		cmocka_unit_test(test_sink_routes_batched_apart_and_stamped),
		cmocka_unit_test(test_sink_full_spool_rows_dropped_and_counted),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
