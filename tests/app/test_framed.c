/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The appliance side of framed mode: frames in through the pipeline, rows into a real
 * spool (LMDB, nosync), ACKs out through a captured TX function, decoded like a producer
 * would: ACK only after commit, duplicates, resends in flight, rejections, keys, dedup
 * windows that survive a restart, raw datagrams beside frames.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tl_framed.h"
#include "tl_opt.h"
#include "tl_pipeline.h"
#include "tl_reply.h"
#include "tl_sink.h"
#include "tl_spool.h"
#include "tl_test_schema.h"

#define SEC 1000000000ull

static struct tl_schema *schema;
static char dir[] = "/tmp/tapline-test-framed.XXXXXX";

/* What went out of the TX queue, decoded. */
#define MAX_ACKS 256
struct sent {
	struct tl_ack a[MAX_ACKS];
	int signed_ok[MAX_ACKS]; /* verified with the producer's key (1), unsigned (0) */
	unsigned n;
	int fail_tx;
};

static const uint8_t key7[32] = "0123456789abcdef0123456789abcdef";

struct rig {
	struct tl_spool *spool;
	struct tl_framed *framed;
	struct tl_side side;
	struct tl_framed_worker *fw;
	struct tl_pipeline_worker w;
	struct tl_sink sink;
	struct sent sent;
	uint64_t now;
	char keys[200];
};

static int
capture_tx(void *arg, const uint8_t *frame, uint32_t len)
{
	struct sent *s = arg;
	struct tl_l3_view l3;
	struct tl_udp_view u;
	struct tl_ack a;

	if (s->fail_tx)
		return -ENOBUFS;
	assert_int_equal(tl_decode_frame(frame, len, 0, &l3), TL_REASON_OK);
	assert_int_equal(tl_decode_udp(&l3, l3.l4, l3.l4_len, false, &u), TL_REASON_OK);
	/* back to the producer's address and port */
	assert_int_equal(u.dport, 40000);
	assert_int_equal(l3.dst[0], 198);
	assert_int_equal(l3.dst[3], 2);
	assert_true(s->n < MAX_ACKS);
	if (tl_ack_parse(u.payload, u.len, key7, sizeof(key7), &a) == 0) {
		s->signed_ok[s->n] = 1;
	} else {
		assert_int_equal(tl_ack_parse(u.payload, u.len, NULL, 0, &a), 0);
		s->signed_ok[s->n] = 0;
	}
	s->a[s->n++] = a;
	return 0;
}

static void
sink_event(void *arg, const struct tl_event *ev, enum tl_reason verdict)
{
	tl_sink_event(arg, ev, verdict);
}

static void
on_commit(void *arg, unsigned producer, uint64_t user, uint64_t key, int status)
{
	struct rig *r = arg;

	if (r->framed != NULL)
		tl_framed_on_commit(r->framed, producer, user, key, status);
}

static void
rig_open(struct rig *r, const char *name, bool with_keys, bool allow_unkeyed)
{
	struct tl_spool_conf sc;
	struct tl_framed_conf fc;
	struct tl_batch_conf bc;
	struct tl_pipeline_conf pc;
	uint16_t port = 5170;
	char err[512];

	memset(r, 0, sizeof(*r));
	assert_int_equal(tl_opt_defaults(tl_spool_opts, &sc), 0);
	snprintf(sc.path, sizeof(sc.path), "%s/%s", dir, name);
	sc.nosync = true;
	assert_int_equal(tl_spool_open(&sc, 1, 0, on_commit, r, &r->spool), 0);
	assert_int_equal(tl_opt_defaults(tl_framed_opts, &fc), 0);
	fc.in_flight = 64;
	if (with_keys) {
		FILE *k;

		snprintf(r->keys, sizeof(r->keys), "%s/keys.txt", dir);
		k = fopen(r->keys, "w");
		assert_non_null(k);
		fprintf(k, "# producer key_id key\n7 1 ");
		for (size_t i = 0; i < sizeof(key7); i++)
			fprintf(k, "%02x", key7[i]);
		fprintf(k, "\n");
		fclose(k);
		snprintf(fc.keys_file, sizeof(fc.keys_file), "%s", r->keys);
		fc.allow_unkeyed = allow_unkeyed;
	}
	tl_side_init(&r->side);
	assert_int_equal(tl_framed_create(&fc, r->spool, &r->side, sc.buffers, 1, &r->framed,
					 err, sizeof(err)),
			0);
	assert_int_equal(tl_side_install(&r->side, r->spool), 0);
	assert_int_equal(tl_opt_defaults(tl_batch_opts, &bc), 0);
	assert_int_equal(tl_sink_init(&r->sink, schema, &bc, "a1", r->spool, 0, sc.buffer_size), 0);
	memset(&pc, 0, sizeof(pc));
	pc.limits = tl_test_e6data_limits();
	pc.reasm = (struct tl_reasm_conf){4, 64, SEC};
	assert_int_equal(tl_pipeline_worker_init(&r->w, &pc, schema, &port, 1, sink_event,
					 &r->sink),
			0);
	tl_pipeline_set_tick(&r->w, tl_sink_tick);
	tl_pipeline_set_tx(&r->w, capture_tx, &r->sent);
	assert_int_equal(tl_framed_worker_create(r->framed, 0, &r->w, &r->sink, &r->fw), 0);
	r->now = SEC;
	tl_pipeline_tick(&r->w, r->now);
}

static void
rig_close(struct rig *r)
{
	tl_pipeline_tick(&r->w, UINT64_MAX);
	tl_spool_close(r->spool);
	tl_framed_worker_free(r->fw);
	tl_framed_free(r->framed);
	tl_sink_fini(&r->sink);
	tl_pipeline_worker_fini(&r->w);
}

/* The producer 198.18.0.2:40000 sends @p payload to the appliance 198.18.0.1:5170. */
static void
deliver(struct rig *r, const uint8_t *payload, size_t len)
{
	/* Built as the "reply" to a datagram the appliance would have sent the producer. */
	struct tl_peer back = {
		.l2 = {2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00},
		.l2_len = 14,
		.ip_version = 4,
		.src = {198, 18, 0, 1},
		.dst = {198, 18, 0, 2},
		.sport = 5170,
		.dport = 40000,
	};
	static uint8_t frame[70000];
	long n = tl_reply_build(&back, payload, (uint32_t)len, 9000, frame, sizeof(frame));

	assert_true(n > 0);
	tl_pipeline_rx(&r->w, frame, (uint32_t)n, 0, r->now);
}

static char *
events(int first, int count, size_t *len)
{
	static char buf[16384];
	size_t o = 0;

	for (int i = first; i < first + count; i++)
		o += (size_t)snprintf(buf + o, sizeof(buf) - o,
				"{\"query_id\":\"q%d\",\"event_type\":\"%s\",\"timestamp\":"
				"\"2026-11-21T05:00:%02d.123Z\",\"metadata\":{\"error\":%s}}\n",
				i, i % 3 ? "finished" : "failed", i % 60,
				i % 3 ? "null" : "\"java.io.IOException: Could not read footer\"");
	*len = o;
	return buf;
}

static void
send_frame(struct rig *r, uint64_t producer, uint64_t seq, int first, int count, bool sign,
		int zstd)
{
	static uint8_t f[TL_FRAME_MAX];
	size_t el;
	const char *ev = events(first, count, &el);
	long n = tl_frame_encode(producer, seq, (const uint8_t *)ev, el, (uint32_t)count, zstd,
			sign ? key7 : NULL, sign ? sizeof(key7) : 0, sign ? 1 : 0, f, sizeof(f));

	assert_true(n > 0);
	deliver(r, f, (size_t)n);
}

/* Time passes (ack_delay seals), the spool commits, the worker ticks. */
static void
settle(struct rig *r)
{
	r->now += SEC / 10;
	tl_pipeline_tick(&r->w, r->now);
	tl_framed_worker_tick(r->fw, r->now);
	assert_int_equal(tl_spool_flush(r->spool, 5 * SEC), 0);
	r->now += SEC / 1000;
	tl_pipeline_tick(&r->w, r->now);
	tl_framed_worker_tick(r->fw, r->now);
}

static void
test_framed_ack_only_after_commit(void **state)
{
	struct rig r;
	struct tl_spool_stats st;

	(void)state;
	rig_open(&r, "commit", false, true);
	send_frame(&r, 7, 1, 0, 5, false, 0);
	send_frame(&r, 7, 2, 5, 4, false, 3);
	/* nothing sealed yet: no ACK */
	tl_framed_worker_tick(r.fw, r.now);
	assert_int_equal(r.sent.n, 0);
	assert_int_equal(tl_framed_worker_in_flight(r.fw), 2);
	settle(&r);
	assert_int_equal(r.sent.n, 2);
	for (unsigned i = 0; i < 2; i++) {
		assert_int_equal(r.sent.a[i].status, TL_ACK_COMMITTED);
		assert_int_equal(r.sent.a[i].producer_id, 7);
		assert_int_equal(r.sent.a[i].sequence, i + 1);
	}
	assert_int_equal(r.sent.a[0].count, 5);
	assert_int_equal(r.sent.a[1].count, 4);
	assert_int_equal(tl_framed_worker_in_flight(r.fw), 0);
	/* every event became a row: 9 events, 3 of them errors */
	assert_int_equal(r.sink.cnt.rows[TL_BATCH_SINK_OUTPUT], 6);
	assert_int_equal(r.sink.cnt.rows[TL_BATCH_ERROR_EVENTS], 3);
	tl_spool_stats(r.spool, &st);
	assert_true(st.records >= 2);
	assert_int_equal(tl_framed_worker_counters(r.fw)->frame_events, 9);
	rig_close(&r);
}

static void
test_framed_resends_duplicate_or_silent(void **state)
{
	struct rig r;

	(void)state;
	rig_open(&r, "resend", false, true);
	send_frame(&r, 9, 1, 0, 3, false, 0);
	/* a resend while its commit is pending: no answer, not processed twice */
	send_frame(&r, 9, 1, 0, 3, false, 0);
	assert_int_equal(r.sent.n, 0);
	assert_int_equal(tl_framed_worker_counters(r.fw)->resends_pending, 1);
	settle(&r);
	assert_int_equal(r.sent.n, 1);
	assert_int_equal(r.sent.a[0].status, TL_ACK_COMMITTED);
	/* after the commit: duplicate, no new rows */
	send_frame(&r, 9, 1, 0, 3, false, 0);
	assert_int_equal(r.sent.n, 2);
	assert_int_equal(r.sent.a[1].status, TL_ACK_DUPLICATE);
	assert_int_equal(r.sent.a[1].sequence, 1);
	assert_int_equal(r.sink.cnt.rows[TL_BATCH_SINK_OUTPUT] +
					 r.sink.cnt.rows[TL_BATCH_ERROR_EVENTS],
			3);
	rig_close(&r);
}

static void
test_framed_dedup_survives_restart(void **state)
{
	struct rig r;
	void *img = NULL;
	size_t len = 0;

	(void)state;
	rig_open(&r, "restart", false, true);
	for (uint64_t s = 1; s <= 5; s++)
		send_frame(&r, 11, s, (int)s * 10, 2, false, 0);
	settle(&r);
	assert_int_equal(r.sent.n, 5);
	/* the windows are stored with the records */
	assert_int_equal(tl_spool_state_get(r.spool, "dedup.frames", &img, &len), 0);
	assert_non_null(img);
	assert_true(len > 16);
	free(img);
	rig_close(&r);

	rig_open(&r, "restart", false, true);
	send_frame(&r, 11, 3, 30, 2, false, 0); /* committed before the restart */
	assert_int_equal(r.sent.n, 1);
	assert_int_equal(r.sent.a[0].status, TL_ACK_DUPLICATE);
	send_frame(&r, 11, 6, 60, 2, false, 0); /* new */
	settle(&r);
	assert_int_equal(r.sent.n, 2);
	assert_int_equal(r.sent.a[1].status, TL_ACK_COMMITTED);
	assert_int_equal(r.sent.a[1].sequence, 6);
	rig_close(&r);
}

static void
test_framed_malformed_rejected_with_reason(void **state)
{
	struct rig r;
	static uint8_t f[TL_FRAME_MAX];
	size_t el;
	const char *ev = events(0, 2, &el);
	long n;

	(void)state;
	rig_open(&r, "reject", false, true);
	n = tl_frame_encode(5, 1, (const uint8_t *)ev, el, 2, 0, NULL, 0, 0, f, sizeof(f));
	assert_true(n > 0);
	/* a body one byte short of its header's length */
	deliver(&r, f, (size_t)n - 1);
	assert_int_equal(r.sent.n, 1);
	assert_int_equal(r.sent.a[0].status, TL_ACK_REJECTED);
	assert_int_equal(r.sent.a[0].reason, TL_FRAME_TRUNCATED);
	assert_int_equal(r.sent.a[0].producer_id, 5);
	assert_int_equal(tl_framed_worker_counters(r.fw)->rejected[TL_FRAME_TRUNCATED], 1);
	/* a frame whose count disagrees with its lines */
	n = tl_frame_encode(5, 2, (const uint8_t *)ev, el, 3, 0, NULL, 0, 0, f, sizeof(f));
	if (n > 0) {
		deliver(&r, f, (size_t)n);
		assert_int_equal(r.sent.n, 2);
		assert_int_equal(r.sent.a[1].status, TL_ACK_REJECTED);
		assert_int_equal(r.sent.a[1].reason, TL_FRAME_BAD_COUNT);
	}
	/* a zstd body that does not decompress: refused after the dedup check, which
	 * must then forget the sequence */
	n = tl_frame_encode(5, 1, (const uint8_t *)ev, el, 2, 3, NULL, 0, 0, f, sizeof(f));
	assert_true(n > TL_FRAME_HDR_LEN + 4);
	assert_true(f[5] & TL_FRAME_F_ZSTD);
	f[TL_FRAME_HDR_LEN] ^= 0xff; /* the zstd magic */
	deliver(&r, f, (size_t)n);
	assert_int_equal(r.sent.a[r.sent.n - 1].status, TL_ACK_REJECTED);
	assert_int_equal(r.sent.a[r.sent.n - 1].reason, TL_FRAME_BAD_ZSTD);
	assert_int_equal(tl_framed_worker_counters(r.fw)->rejected[TL_FRAME_BAD_ZSTD], 1);
	assert_int_equal(tl_framed_worker_in_flight(r.fw), 0);
	/* nothing of them was stored; the sequence can still be sent right */
	settle(&r);
	assert_int_equal(r.sink.cnt.rows[TL_BATCH_SINK_OUTPUT] + r.sink.cnt.rows[TL_BATCH_ERROR_EVENTS],
			0);
	send_frame(&r, 5, 1, 0, 2, false, 0);
	settle(&r);
	assert_int_equal(r.sent.a[r.sent.n - 1].status, TL_ACK_COMMITTED);
	rig_close(&r);
}

static void
test_framed_keys_sign_and_refuse(void **state)
{
	struct rig r;

	(void)state;
	rig_open(&r, "keys", true, false);
	/* producer 7 has a key: a signed frame is taken, its ACK signed with that key */
	send_frame(&r, 7, 1, 0, 2, true, 0);
	settle(&r);
	assert_int_equal(r.sent.n, 1);
	assert_int_equal(r.sent.a[0].status, TL_ACK_COMMITTED);
	assert_int_equal(r.sent.signed_ok[0], 1);
	/* unsigned from a producer that has a key: refused, unsigned answer */
	send_frame(&r, 7, 2, 2, 2, false, 0);
	assert_int_equal(r.sent.n, 2);
	assert_int_equal(r.sent.a[1].status, TL_ACK_REJECTED);
	assert_int_equal(r.sent.a[1].reason, TL_FRAME_UNKNOWN_KEY);
	assert_int_equal(r.sent.signed_ok[1], 0);
	/* a producer without a key while unkeyed producers are not allowed */
	send_frame(&r, 8, 1, 0, 2, false, 0);
	assert_int_equal(r.sent.n, 3);
	assert_int_equal(r.sent.a[2].status, TL_ACK_REJECTED);
	assert_int_equal(r.sent.a[2].reason, TL_FRAME_UNKNOWN_KEY);
	settle(&r);
	assert_int_equal(r.sink.cnt.rows[TL_BATCH_SINK_OUTPUT] + r.sink.cnt.rows[TL_BATCH_ERROR_EVENTS],
			2);
	rig_close(&r);
}

static void
test_framed_raw_datagrams_beside_frames(void **state)
{
	struct rig r;
	size_t el;
	const char *ev;

	(void)state;
	rig_open(&r, "mixed", false, true);
	send_frame(&r, 3, 1, 0, 3, false, 0);
	ev = events(100, 4, &el);
	deliver(&r, (const uint8_t *)ev, el); /* raw NDJSON: no ACK */
	send_frame(&r, 3, 2, 3, 3, false, 0);
	settle(&r);
	assert_int_equal(r.sent.n, 2);
	assert_int_equal(r.sent.a[0].sequence, 1);
	assert_int_equal(r.sent.a[1].sequence, 2);
	assert_int_equal(r.sink.cnt.rows[TL_BATCH_SINK_OUTPUT] + r.sink.cnt.rows[TL_BATCH_ERROR_EVENTS],
			10);
	rig_close(&r);
}

/* Many frames across several batches: each ACK only once all its rows committed, in
 * order, none lost, none twice. */
static void
test_framed_many_frames_each_acked_once(void **state)
{
	struct rig r;
	uint64_t seen[200] = {0};

	(void)state;
	rig_open(&r, "many", false, true);
	for (uint64_t s = 1; s <= 150; s++) {
		send_frame(&r, 21, s, (int)s * 7, 7, false, (int)(s % 2));
		if (s % 40 == 0)
			settle(&r);
	}
	settle(&r);
	assert_int_equal(r.sent.n, 150);
	for (unsigned i = 0; i < r.sent.n; i++) {
		assert_int_equal(r.sent.a[i].status, TL_ACK_COMMITTED);
		assert_true(r.sent.a[i].sequence >= 1 && r.sent.a[i].sequence <= 150);
		seen[r.sent.a[i].sequence]++;
		if (i)
			assert_true(r.sent.a[i].sequence > r.sent.a[i - 1].sequence);
	}
	for (unsigned s = 1; s <= 150; s++)
		assert_int_equal(seen[s], 1);
	assert_int_equal(r.sink.cnt.rows[TL_BATCH_SINK_OUTPUT] + r.sink.cnt.rows[TL_BATCH_ERROR_EVENTS],
			150 * 7);
	rig_close(&r);
}

static void
test_framed_in_flight_full_retry_later(void **state)
{
	struct rig r;

	(void)state;
	rig_open(&r, "inflight", false, true);
	/* in_flight 64: the 65th frame without a commit in between is asked to come back */
	for (uint64_t s = 1; s <= 65; s++)
		send_frame(&r, 30, s, 0, 1, false, 0);
	assert_int_equal(r.sent.n, 1);
	assert_int_equal(r.sent.a[0].status, TL_ACK_RETRY_LATER);
	assert_int_equal(r.sent.a[0].sequence, 65);
	assert_true(r.sent.a[0].retry_ms > 0);
	settle(&r);
	assert_int_equal(r.sent.n, 65);
	/* it was not marked: the resend is taken */
	send_frame(&r, 30, 65, 0, 1, false, 0);
	settle(&r);
	assert_int_equal(r.sent.n, 66);
	assert_int_equal(r.sent.a[65].status, TL_ACK_COMMITTED);
	assert_int_equal(r.sent.a[65].sequence, 65);
	rig_close(&r);
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
		cmocka_unit_test(test_framed_ack_only_after_commit),
		cmocka_unit_test(test_framed_resends_duplicate_or_silent),
		cmocka_unit_test(test_framed_dedup_survives_restart),
		cmocka_unit_test(test_framed_malformed_rejected_with_reason),
		cmocka_unit_test(test_framed_keys_sign_and_refuse),
		cmocka_unit_test(test_framed_raw_datagrams_beside_frames),
		cmocka_unit_test(test_framed_many_frames_each_acked_once),
		cmocka_unit_test(test_framed_in_flight_full_retry_later),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
