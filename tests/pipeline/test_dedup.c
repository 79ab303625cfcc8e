/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Tests for the deduplication state: framed anti-replay windows, the raw event-id window,
 * their persistence, statistics and memory figures. Clocks are synthetic numbers.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <xxhash.h>

#include "tl_dedup.h"

#define W 64u
#define SEC 1000000000ull
#define T0 (1700000000ull * SEC)

/* ---- helpers ---- */

static struct tl_dedup_frames *
frames(uint32_t max, uint32_t window)
{
	struct tl_dedup_frames *d = NULL;

	assert_int_equal(tl_dedup_frames_create(max, window, &d), 0);
	assert_non_null(d);
	return d;
}

static struct tl_dedup_events *
events(uint32_t cap, uint64_t window_ns)
{
	struct tl_dedup_events *d = NULL;

	assert_int_equal(tl_dedup_events_create(cap, window_ns, &d), 0);
	assert_non_null(d);
	return d;
}

/* check + done(committed): a frame accepted and committed. */
static void
commit(struct tl_dedup_frames *d, uint64_t p, uint64_t s)
{
	assert_int_equal(tl_dedup_frame_check(d, p, s), TL_DEDUP_NEW);
	assert_int_equal(tl_dedup_frame_done(d, p, s, true), 0);
}

static void
make_id(uint8_t id[16], uint64_t lo, uint64_t hi)
{
	for (int i = 0; i < 8; i++) {
		id[i] = (uint8_t)(lo >> (8 * i));
		id[8 + i] = (uint8_t)(hi >> (8 * i));
	}
}

static void
put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void
put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* Re-seal a tampered buffer so the checks behind the checksum are reached. */
static void
reseal(uint8_t *buf, size_t len)
{
	put64(buf + len - 8, XXH64(buf, len - 8, 0));
}

static uint64_t
frames_producers(const struct tl_dedup_frames *d)
{
	struct tl_dedup_frames_stats st;

	tl_dedup_frames_stats(d, &st);
	return st.producers;
}

static uint64_t
events_entries(const struct tl_dedup_events *d)
{
	struct tl_dedup_events_stats st;

	tl_dedup_events_stats(d, &st);
	return st.entries;
}

/* ---- framed mode ---- */

static void
test_frames_create_bad_args_einval(void **state)
{
	struct tl_dedup_frames *d = NULL;

	(void)state;
	assert_int_equal(tl_dedup_frames_create(0, 4096, &d), -EINVAL);
	assert_int_equal(tl_dedup_frames_create(TL_DEDUP_PRODUCERS_MAX + 1, 4096, &d), -EINVAL);
	assert_int_equal(tl_dedup_frames_create(8, 4095, &d), -EINVAL);
	assert_int_equal(tl_dedup_frames_create(8, 32, &d), -EINVAL);
	assert_int_equal(tl_dedup_frames_create(8, TL_DEDUP_WINDOW_MAX * 2, &d), -EINVAL);
	assert_int_equal(tl_dedup_frames_create(8, 4096, NULL), -EINVAL);
	assert_null(d);
	tl_dedup_frames_free(NULL);
}

static void
test_frames_in_order_resend_committed(void **state)
{
	struct tl_dedup_frames *d = frames(4, 4096);
	struct tl_dedup_frames_stats st;

	(void)state;
	for (uint64_t s = 1; s <= 10000; s++)
		commit(d, 7, s);
	/* The last W are remembered as committed, the ones before are old. */
	assert_int_equal(tl_dedup_frame_check(d, 7, 10000), TL_DEDUP_COMMITTED);
	assert_int_equal(tl_dedup_frame_check(d, 7, 10000 - 4095), TL_DEDUP_COMMITTED);
	assert_int_equal(tl_dedup_frame_check(d, 7, 10000 - 4096), TL_DEDUP_OLD);
	assert_int_equal(tl_dedup_frame_check(d, 7, 1), TL_DEDUP_OLD);
	assert_int_equal(tl_dedup_frame_check(d, 7, 10001), TL_DEDUP_NEW);
	tl_dedup_frames_stats(d, &st);
	assert_int_equal(st.frames_new, 10001);
	assert_int_equal(st.frames_committed, 2);
	assert_int_equal(st.frames_old, 2);
	assert_int_equal(st.producers, 1);
	tl_dedup_frames_free(d);
}

static void
test_frames_out_of_order_within_window_each_once(void **state)
{
	struct tl_dedup_frames *d = frames(4, W);
	/* A permutation of 1..40 (stride 7 mod 41), then every one again. */
	uint64_t seen[41] = {0};

	(void)state;
	for (uint64_t k = 1; k <= 40; k++) {
		uint64_t s = (k * 7) % 41;

		commit(d, 1, s);
		seen[s]++;
	}
	for (uint64_t s = 1; s <= 40; s++) {
		assert_int_equal(seen[s], 1);
		assert_int_equal(tl_dedup_frame_check(d, 1, s), TL_DEDUP_COMMITTED);
	}
	/* A gap stays open: 41..50 with 45 missing, 45 arrives late. */
	for (uint64_t s = 41; s <= 50; s++)
		if (s != 45)
			commit(d, 1, s);
	assert_int_equal(tl_dedup_frame_check(d, 1, 45), TL_DEDUP_NEW);
	tl_dedup_frames_free(d);
}

static void
test_frames_slide_reused_bit_position_new(void **state)
{
	struct tl_dedup_frames *d = frames(4, W);

	(void)state;
	/* s and s + W share a bit position: sliding must clear the stale committed bit. */
	commit(d, 1, 3);
	commit(d, 1, 5);
	assert_int_equal(tl_dedup_frame_check(d, 1, 3 + W), TL_DEDUP_NEW);
	assert_int_equal(tl_dedup_frame_check(d, 1, 3), TL_DEDUP_OLD);
	/* 5 is still inside [3 + W - W + 1, 3 + W]. */
	assert_int_equal(tl_dedup_frame_check(d, 1, 5), TL_DEDUP_COMMITTED);
	assert_int_equal(tl_dedup_frame_check(d, 1, 5 + W - 1), TL_DEDUP_NEW);
	tl_dedup_frames_free(d);
}

static void
test_frames_far_ahead_window_jumps(void **state)
{
	struct tl_dedup_frames *d = frames(4, W);
	uint64_t far = 1000000;

	(void)state;
	for (uint64_t s = 1; s <= 10; s++)
		commit(d, 9, s);
	commit(d, 9, far);
	assert_int_equal(tl_dedup_frame_check(d, 9, 5), TL_DEDUP_OLD);
	assert_int_equal(tl_dedup_frame_check(d, 9, far - W), TL_DEDUP_OLD);
	/* The lowest sequence of the new window was never seen. */
	assert_int_equal(tl_dedup_frame_check(d, 9, far - W + 1), TL_DEDUP_NEW);
	/* Every old bit is gone: sequences congruent to 1..10 are new. */
	for (uint64_t s = far - W + 2; s < far; s++)
		assert_int_equal(tl_dedup_frame_check(d, 9, s), TL_DEDUP_NEW);
	assert_int_equal(tl_dedup_frame_check(d, 9, far), TL_DEDUP_COMMITTED);
	/* UINT64_MAX is a valid sequence; nothing overflows. */
	for (uint64_t s = far - W + 1; s < far; s++)
		assert_int_equal(tl_dedup_frame_done(d, 9, s, true), 0);
	commit(d, 9, UINT64_MAX);
	assert_int_equal(tl_dedup_frame_check(d, 9, UINT64_MAX), TL_DEDUP_COMMITTED);
	assert_int_equal(tl_dedup_frame_check(d, 9, UINT64_MAX - W), TL_DEDUP_OLD);
	tl_dedup_frames_free(d);
}

static void
test_frames_first_frame_not_one_window_below_old(void **state)
{
	struct tl_dedup_frames *d = frames(4, W);

	(void)state;
	commit(d, 2, 500);
	assert_int_equal(tl_dedup_frame_check(d, 2, 500 - W + 1), TL_DEDUP_NEW);
	assert_int_equal(tl_dedup_frame_check(d, 2, 500 - W), TL_DEDUP_OLD);
	tl_dedup_frames_free(d);
}

static void
test_frames_pending_resend_pending_then_committed(void **state)
{
	struct tl_dedup_frames *d = frames(4, W);
	struct tl_dedup_frames_stats st;

	(void)state;
	assert_int_equal(tl_dedup_frame_check(d, 3, 1), TL_DEDUP_NEW);
	assert_int_equal(tl_dedup_frame_check(d, 3, 1), TL_DEDUP_PENDING);
	assert_int_equal(tl_dedup_frame_check(d, 3, 1), TL_DEDUP_PENDING);
	assert_int_equal(tl_dedup_frame_done(d, 3, 1, true), 0);
	assert_int_equal(tl_dedup_frame_check(d, 3, 1), TL_DEDUP_COMMITTED);
	/* Done twice: no longer pending. */
	assert_int_equal(tl_dedup_frame_done(d, 3, 1, true), -ENOENT);
	tl_dedup_frames_stats(d, &st);
	assert_int_equal(st.frames_new, 1);
	assert_int_equal(st.frames_pending, 2);
	assert_int_equal(st.frames_committed, 1);
	tl_dedup_frames_free(d);
}

static void
test_frames_refused_then_resend_new(void **state)
{
	struct tl_dedup_frames *d = frames(4, W);

	(void)state;
	assert_int_equal(tl_dedup_frame_check(d, 3, 8), TL_DEDUP_NEW);
	assert_int_equal(tl_dedup_frame_done(d, 3, 8, false), 0);
	assert_int_equal(tl_dedup_frame_check(d, 3, 8), TL_DEDUP_NEW);
	assert_int_equal(tl_dedup_frame_done(d, 3, 8, true), 0);
	assert_int_equal(tl_dedup_frame_check(d, 3, 8), TL_DEDUP_COMMITTED);
	tl_dedup_frames_free(d);
}

static void
test_frames_done_not_pending_enoent(void **state)
{
	struct tl_dedup_frames *d = frames(4, W);

	(void)state;
	assert_int_equal(tl_dedup_frame_done(d, 3, 1, true), -ENOENT); /* unknown producer */
	commit(d, 3, 100);
	assert_int_equal(tl_dedup_frame_done(d, 3, 99, true), -ENOENT);  /* never seen */
	assert_int_equal(tl_dedup_frame_done(d, 3, 101, true), -ENOENT); /* above high */
	assert_int_equal(tl_dedup_frame_done(d, 3, 1, true), -ENOENT);   /* below window */
	assert_int_equal(tl_dedup_frame_done(d, 0, 1, true), -ENOENT);
	assert_int_equal(tl_dedup_frame_done(d, 3, 0, true), -ENOENT);
	/* None of these touched the state. */
	assert_int_equal(tl_dedup_frame_check(d, 3, 99), TL_DEDUP_NEW);
	assert_int_equal(tl_dedup_frame_check(d, 3, 100), TL_DEDUP_COMMITTED);
	tl_dedup_frames_free(d);
}

static void
test_frames_zero_producer_or_sequence_invalid(void **state)
{
	struct tl_dedup_frames *d = frames(4, W);
	struct tl_dedup_frames_stats st;

	(void)state;
	assert_int_equal(tl_dedup_frame_check(d, 0, 1), TL_DEDUP_INVALID);
	assert_int_equal(tl_dedup_frame_check(d, 1, 0), TL_DEDUP_INVALID);
	tl_dedup_frames_stats(d, &st);
	assert_int_equal(st.frames_invalid, 2);
	assert_int_equal(st.producers, 0);
	tl_dedup_frames_free(d);
}

static void
test_frames_pending_leaving_window_stalled_full(void **state)
{
	struct tl_dedup_frames *d = frames(4, W);
	struct tl_dedup_frames_stats st;

	(void)state;
	assert_int_equal(tl_dedup_frame_check(d, 5, 10), TL_DEDUP_NEW); /* pending */
	for (uint64_t s = 11; s < 10 + W; s++)
		commit(d, 5, s);
	/* 10 + W would push pending 10 out; so would any jump. */
	assert_int_equal(tl_dedup_frame_check(d, 5, 10 + W), TL_DEDUP_FULL);
	assert_int_equal(tl_dedup_frame_check(d, 5, 10 + 100 * W), TL_DEDUP_FULL);
	tl_dedup_frames_stats(d, &st);
	assert_int_equal(st.frames_stalled, 2);
	assert_int_equal(st.frames_full, 0);
	/* Refused: 10 may be forgotten, the window moves on. */
	assert_int_equal(tl_dedup_frame_done(d, 5, 10, false), 0);
	assert_int_equal(tl_dedup_frame_check(d, 5, 10 + W), TL_DEDUP_NEW);
	assert_int_equal(tl_dedup_frame_check(d, 5, 10 + 100 * W), TL_DEDUP_FULL);
	assert_int_equal(tl_dedup_frame_done(d, 5, 10 + W, true), 0);
	assert_int_equal(tl_dedup_frame_check(d, 5, 10 + 100 * W), TL_DEDUP_NEW);
	tl_dedup_frames_free(d);
}

static void
test_frames_table_full_of_pending_full(void **state)
{
	struct tl_dedup_frames *d = frames(8, W);
	struct tl_dedup_frames_stats st;

	(void)state;
	for (uint64_t p = 1; p <= 8; p++)
		assert_int_equal(tl_dedup_frame_check(d, p, 1), TL_DEDUP_NEW);
	assert_int_equal(tl_dedup_frame_check(d, 9, 1), TL_DEDUP_FULL);
	/* Known producers are still served. */
	assert_int_equal(tl_dedup_frame_check(d, 4, 2), TL_DEDUP_NEW);
	tl_dedup_frames_stats(d, &st);
	assert_int_equal(st.frames_full, 1);
	assert_int_equal(st.producers, 8);
	assert_int_equal(st.producers_evicted, 0);
	/* Producer 6 has nothing pending after this: the only one that may go. */
	assert_int_equal(tl_dedup_frame_done(d, 6, 1, true), 0);
	assert_int_equal(tl_dedup_frame_check(d, 9, 1), TL_DEDUP_NEW);
	tl_dedup_frames_stats(d, &st);
	assert_int_equal(st.producers_evicted, 1);
	assert_int_equal(st.producers, 8);
	/* 6's history is gone (the cost of eviction); 1..5, 7, 8 are intact. */
	assert_int_equal(tl_dedup_frame_check(d, 10, 1), TL_DEDUP_FULL);
	for (uint64_t p = 1; p <= 8; p++)
		if (p != 6)
			assert_int_equal(tl_dedup_frame_check(d, p, 1), TL_DEDUP_PENDING);
	tl_dedup_frames_free(d);
}

static void
test_frames_eviction_least_recent_evicted(void **state)
{
	struct tl_dedup_frames *d = frames(4, W);

	(void)state;
	for (uint64_t p = 1; p <= 4; p++)
		commit(d, p, 1);
	/* Activity order now: 2, 4, 1 (duplicates count as activity), 3 least recent. */
	commit(d, 2, 2);
	commit(d, 4, 2);
	assert_int_equal(tl_dedup_frame_check(d, 1, 1), TL_DEDUP_COMMITTED);
	commit(d, 5, 1); /* evicts 3 */
	assert_int_equal(tl_dedup_frame_check(d, 1, 1), TL_DEDUP_COMMITTED);
	assert_int_equal(tl_dedup_frame_check(d, 2, 1), TL_DEDUP_COMMITTED);
	assert_int_equal(tl_dedup_frame_check(d, 4, 1), TL_DEDUP_COMMITTED);
	assert_int_equal(tl_dedup_frame_check(d, 5, 1), TL_DEDUP_COMMITTED);
	/* 3 comes back as a stranger: evicts the least recent now, which is 1. */
	assert_int_equal(tl_dedup_frame_check(d, 3, 1), TL_DEDUP_NEW);
	assert_int_equal(tl_dedup_frame_done(d, 3, 1, true), 0);
	assert_int_equal(tl_dedup_frame_check(d, 2, 2), TL_DEDUP_COMMITTED);
	assert_int_equal(tl_dedup_frame_check(d, 1, 1), TL_DEDUP_NEW);
	tl_dedup_frames_free(d);
}

static void
test_frames_churn_many_producers_index_consistent(void **state)
{
	struct tl_dedup_frames *d = frames(64, W);
	struct tl_dedup_frames_stats st;

	(void)state;
	/* 5000 producers through 64 records: eviction and backward-shift deletion on every
	 * insertion. Ids share low bits (multiples of 1024) to crowd the probe runs. */
	for (uint64_t p = 1; p <= 5000; p++) {
		commit(d, p << 10, p);
		if (p >= 64) {
			/* The 64 most recent are all still there, with their sequence. Checked
			 * oldest first, so the recency order (and the next victim) is unchanged. */
			for (uint64_t q = p - 63; q <= p; q++)
				assert_int_equal(
				        tl_dedup_frame_check(d, q << 10, q), TL_DEDUP_COMMITTED);
		}
	}
	tl_dedup_frames_stats(d, &st);
	assert_int_equal(st.producers, 64);
	assert_int_equal(st.producers_evicted, 5000 - 64);
	tl_dedup_frames_free(d);
}

static void
test_frames_save_load_round_trip_pending_not_committed(void **state)
{
	struct tl_dedup_frames *a = frames(16, 4096), *b = frames(16, 4096);
	size_t len = 0, need;
	uint8_t *buf;

	(void)state;
	for (uint64_t s = 1; s <= 5000; s++)
		if (s % 3 != 0)
			commit(a, 11, s);
	commit(a, 12, 7);
	assert_int_equal(tl_dedup_frame_check(a, 12, 8), TL_DEDUP_NEW); /* pending */
	need = tl_dedup_frames_save_size(a);
	assert_int_equal(need, 16 + 2 * (16 + 4096 / 8) + 8);
	buf = malloc(need);
	assert_non_null(buf);
	assert_int_equal(tl_dedup_frames_save(a, buf, need - 1, &len), -E2BIG);
	assert_int_equal(tl_dedup_frames_save(a, buf, need, &len), 0);
	assert_int_equal(len, need);
	assert_memory_equal(buf, "TLDF", 4);
	commit(b, 99, 1); /* replaced by the load */
	assert_int_equal(tl_dedup_frames_load(b, buf, len), 0);
	assert_int_equal(frames_producers(b), 2);
	assert_int_equal(tl_dedup_frame_check(b, 99, 1), TL_DEDUP_NEW);
	assert_int_equal(tl_dedup_frame_check(b, 11, 5000), TL_DEDUP_COMMITTED);
	assert_int_equal(tl_dedup_frame_check(b, 11, 4999), TL_DEDUP_COMMITTED);
	assert_int_equal(tl_dedup_frame_check(b, 11, 4998), TL_DEDUP_NEW); /* 4998 % 3 == 0 */
	assert_int_equal(tl_dedup_frame_check(b, 11, 5000 - 4095), TL_DEDUP_COMMITTED);
	assert_int_equal(tl_dedup_frame_check(b, 11, 5000 - 4096), TL_DEDUP_OLD);
	assert_int_equal(tl_dedup_frame_check(b, 12, 7), TL_DEDUP_COMMITTED);
	/* Pending before the restart: never acknowledged, so processed again. */
	assert_int_equal(tl_dedup_frame_check(b, 12, 8), TL_DEDUP_NEW);
	free(buf);
	tl_dedup_frames_free(a);
	tl_dedup_frames_free(b);
}

static void
test_frames_load_smaller_table_keeps_most_recent(void **state)
{
	struct tl_dedup_frames *a = frames(16, 256), *b = frames(2, 64);
	struct tl_dedup_frames_stats st;
	uint8_t buf[16 + 4 * (16 + 32) + 8];
	size_t len = 0;

	(void)state;
	for (uint64_t p = 1; p <= 4; p++)
		for (uint64_t s = 1; s <= 200; s++)
			commit(a, p, s);
	/* Recency: 2 then 4 most recent. */
	assert_int_equal(tl_dedup_frame_check(a, 4, 1), TL_DEDUP_COMMITTED);
	assert_int_equal(tl_dedup_frame_check(a, 2, 1), TL_DEDUP_COMMITTED);
	assert_int_equal(tl_dedup_frames_save(a, buf, sizeof(buf), &len), 0);
	assert_int_equal(len, sizeof(buf));
	assert_int_equal(tl_dedup_frames_load(b, buf, len), 0);
	tl_dedup_frames_stats(b, &st);
	assert_int_equal(st.producers, 2);
	assert_int_equal(st.load_dropped, 2);
	/* Window narrowed to 64: 137..200 kept, 136 old. */
	assert_int_equal(tl_dedup_frame_check(b, 2, 200), TL_DEDUP_COMMITTED);
	assert_int_equal(tl_dedup_frame_check(b, 4, 137), TL_DEDUP_COMMITTED);
	assert_int_equal(tl_dedup_frame_check(b, 4, 136), TL_DEDUP_OLD);
	/* 1 and 3 did not fit; the table is full of committed producers: 1 evicts one. */
	assert_int_equal(tl_dedup_frame_check(b, 1, 200), TL_DEDUP_NEW);
	tl_dedup_frames_free(a);
	tl_dedup_frames_free(b);
}

static void
test_frames_load_wider_window_keeps_saved_bits(void **state)
{
	struct tl_dedup_frames *a = frames(2, 64), *b = frames(2, 1024);
	uint8_t buf[16 + (16 + 8) + 8];
	size_t len = 0;

	(void)state;
	for (uint64_t s = 1; s <= 100; s += 2)
		commit(a, 1, s);
	assert_int_equal(tl_dedup_frames_save(a, buf, sizeof(buf), &len), 0);
	assert_int_equal(tl_dedup_frames_load(b, buf, len), 0);
	assert_int_equal(tl_dedup_frame_check(b, 1, 99), TL_DEDUP_COMMITTED);
	assert_int_equal(tl_dedup_frame_check(b, 1, 37), TL_DEDUP_COMMITTED);
	assert_int_equal(tl_dedup_frame_check(b, 1, 98), TL_DEDUP_NEW);
	/* Below the saver's window: unknown, so new (not old) in the wider window. */
	assert_int_equal(tl_dedup_frame_check(b, 1, 35), TL_DEDUP_NEW);
	tl_dedup_frames_free(a);
	tl_dedup_frames_free(b);
}

static void
test_frames_load_empty_round_trip_ok(void **state)
{
	struct tl_dedup_frames *a = frames(2, 64);
	uint8_t buf[24];
	size_t len = 0;

	(void)state;
	assert_int_equal(tl_dedup_frames_save(a, buf, sizeof(buf), &len), 0);
	assert_int_equal(len, 24);
	assert_int_equal(tl_dedup_frames_load(a, buf, len), 0);
	assert_int_equal(frames_producers(a), 0);
	tl_dedup_frames_free(a);
}

/* A saved buffer of producers 1 (high 70) and 2 (high 5), W = 64. */
static size_t
frames_sample(uint8_t *buf, size_t cap)
{
	struct tl_dedup_frames *a = frames(4, 64);
	size_t len = 0;

	for (uint64_t s = 1; s <= 70; s++)
		commit(a, 1, s);
	commit(a, 2, 5);
	assert_int_equal(tl_dedup_frames_save(a, buf, cap, &len), 0);
	tl_dedup_frames_free(a);
	return len;
}

static void
expect_frames_refused(struct tl_dedup_frames *b, const uint8_t *buf, size_t len)
{
	commit(b, 77, 1);
	assert_int_equal(tl_dedup_frames_load(b, buf, len), -EBADMSG);
	assert_int_equal(frames_producers(b), 0);
	assert_int_equal(tl_dedup_frame_check(b, 77, 1), TL_DEDUP_NEW);
	assert_int_equal(tl_dedup_frame_done(b, 77, 1, false), 0);
}

static void
test_frames_load_truncated_or_flipped_ebadmsg(void **state)
{
	struct tl_dedup_frames *b = frames(4, 64);
	uint8_t buf[256], bad[256];
	size_t len = frames_sample(buf, sizeof(buf));

	(void)state;
	assert_int_equal(len, 16 + 2 * 24 + 8);
	assert_int_equal(tl_dedup_frames_load(b, NULL, 0), -EBADMSG);
	for (size_t n = 0; n < len; n++)
		expect_frames_refused(b, buf, n);
	for (size_t i = 0; i < len; i++) {
		for (int bit = 0; bit < 8; bit += 3) {
			memcpy(bad, buf, len);
			bad[i] ^= (uint8_t)(1u << bit);
			expect_frames_refused(b, bad, len);
		}
	}
	/* Trailing bytes. */
	memcpy(bad, buf, len);
	bad[len] = 0;
	expect_frames_refused(b, bad, len + 1);
	/* And the original still loads. */
	assert_int_equal(tl_dedup_frames_load(b, buf, len), 0);
	assert_int_equal(frames_producers(b), 2);
	tl_dedup_frames_free(b);
}

static void
test_frames_load_resealed_bad_content_ebadmsg(void **state)
{
	struct tl_dedup_frames *b = frames(4, 64);
	uint8_t buf[256], bad[256];
	size_t len = frames_sample(buf, sizeof(buf));
	size_t r1 = 16, r2 = 16 + 24; /* records: most recent (producer 2) first */

	(void)state;
	assert_int_equal(buf[r1], 2);
	/* Another version. */
	memcpy(bad, buf, len);
	put32(bad + 4, 2);
	reseal(bad, len);
	expect_frames_refused(b, bad, len);
	/* Window not a power of two, or out of range. */
	memcpy(bad, buf, len);
	put32(bad + 8, 96);
	reseal(bad, len);
	expect_frames_refused(b, bad, len);
	memcpy(bad, buf, len);
	put32(bad + 8, 32);
	reseal(bad, len);
	expect_frames_refused(b, bad, len);
	/* Count disagrees with the length. */
	memcpy(bad, buf, len);
	put32(bad + 12, 3);
	reseal(bad, len);
	expect_frames_refused(b, bad, len);
	memcpy(bad, buf, len);
	put32(bad + 12, 0xffffffffu);
	reseal(bad, len);
	expect_frames_refused(b, bad, len);
	/* Producer id 0, high 0. */
	memcpy(bad, buf, len);
	put64(bad + r2, 0);
	reseal(bad, len);
	expect_frames_refused(b, bad, len);
	memcpy(bad, buf, len);
	put64(bad + r1 + 8, 0);
	reseal(bad, len);
	expect_frames_refused(b, bad, len);
	/* Duplicate producer. */
	memcpy(bad, buf, len);
	put64(bad + r2, 2);
	reseal(bad, len);
	expect_frames_refused(b, bad, len);
	/* Producer 2 has high 5: bit position 6 would be sequence 6 - 64 < 1. */
	memcpy(bad, buf, len);
	bad[r1 + 16] |= 1u << 6;
	reseal(bad, len);
	expect_frames_refused(b, bad, len);
	/* Sanity: a resealed untouched buffer loads. */
	memcpy(bad, buf, len);
	reseal(bad, len);
	assert_int_equal(tl_dedup_frames_load(b, bad, len), 0);
	assert_int_equal(tl_dedup_frame_check(b, 2, 5), TL_DEDUP_COMMITTED);
	assert_int_equal(tl_dedup_frame_check(b, 1, 7), TL_DEDUP_COMMITTED);
	assert_int_equal(tl_dedup_frame_check(b, 1, 6), TL_DEDUP_OLD);
	tl_dedup_frames_free(b);
}

static void
test_frames_memory_figures_bounded(void **state)
{
	struct tl_dedup_frames *d = frames(1000, 4096);
	struct tl_dedup_frames_stats st;
	uint64_t bitmaps = 1000ull * 2 * 4096 / 8;

	(void)state;
	tl_dedup_frames_stats(d, &st);
	assert_int_equal(st.max_producers, 1000);
	assert_int_equal(st.window, 4096);
	/* Two bitmaps per producer, plus records and a 2048-slot index: under 1.2x. */
	assert_true(st.memory_bytes >= bitmaps + 2048 * 4);
	assert_true(st.memory_bytes <= bitmaps + bitmaps / 5);
	/* Does not grow with use. */
	for (uint64_t p = 1; p <= 3000; p++)
		commit(d, p, p);
	{
		struct tl_dedup_frames_stats st2;

		tl_dedup_frames_stats(d, &st2);
		assert_int_equal(st2.memory_bytes, st.memory_bytes);
		assert_int_equal(st2.producers, 1000);
	}
	tl_dedup_frames_free(d);
}

static void
test_frames_reset_forgets_keeps_stats(void **state)
{
	struct tl_dedup_frames *d = frames(4, W);
	struct tl_dedup_frames_stats st;

	(void)state;
	commit(d, 1, 1);
	tl_dedup_frames_reset(d);
	assert_int_equal(tl_dedup_frame_check(d, 1, 1), TL_DEDUP_NEW);
	tl_dedup_frames_stats(d, &st);
	assert_int_equal(st.frames_new, 2);
	assert_int_equal(st.producers, 1);
	tl_dedup_frames_free(d);
}

static void
test_verdict_name_all_named(void **state)
{
	(void)state;
	assert_string_equal(tl_dedup_verdict_name(TL_DEDUP_NEW), "new");
	assert_string_equal(tl_dedup_verdict_name(TL_DEDUP_PENDING), "pending");
	assert_string_equal(tl_dedup_verdict_name(TL_DEDUP_COMMITTED), "committed");
	assert_string_equal(tl_dedup_verdict_name(TL_DEDUP_OLD), "old");
	assert_string_equal(tl_dedup_verdict_name(TL_DEDUP_FULL), "full");
	assert_string_equal(tl_dedup_verdict_name(TL_DEDUP_INVALID), "invalid");
	assert_string_equal(tl_dedup_verdict_name(TL_DEDUP_VERDICT_MAX), "?");
	assert_string_equal(tl_dedup_verdict_name((enum tl_dedup_verdict) - 1), "?");
}

/* ---- raw mode ---- */

static void
test_events_create_bad_args_einval(void **state)
{
	struct tl_dedup_events *d = NULL;

	(void)state;
	assert_int_equal(tl_dedup_events_create(0, SEC, &d), -EINVAL);
	assert_int_equal(tl_dedup_events_create(100, SEC, &d), -EINVAL);
	assert_int_equal(tl_dedup_events_create(8, SEC, &d), -EINVAL);
	assert_int_equal(tl_dedup_events_create(TL_DEDUP_EVENTS_MAX * 2, SEC, &d), -EINVAL);
	assert_int_equal(tl_dedup_events_create(1024, 0, &d), -EINVAL);
	assert_int_equal(tl_dedup_events_create(1024, SEC, NULL), -EINVAL);
	assert_null(d);
	tl_dedup_events_free(NULL);
}

static void
test_events_duplicate_within_window_true(void **state)
{
	struct tl_dedup_events *d = events(1024, 10 * SEC);
	struct tl_dedup_events_stats st;
	uint8_t a[16], b[16];

	(void)state;
	make_id(a, 0x1111, 0x2222);
	make_id(b, 0x3333, 0x4444);
	assert_false(tl_dedup_event_seen(d, a, T0));
	assert_false(tl_dedup_event_seen(d, b, T0 + 1));
	assert_true(tl_dedup_event_seen(d, a, T0 + 5 * SEC));
	assert_true(tl_dedup_event_seen(d, b, T0 + 10 * SEC));
	/* The window runs from the first sighting, not the last duplicate. */
	assert_false(tl_dedup_event_seen(d, a, T0 + 10 * SEC));
	tl_dedup_events_stats(d, &st);
	assert_int_equal(st.inserted, 3);
	assert_int_equal(st.duplicates, 2);
	assert_int_equal(st.expired, 1);
	assert_int_equal(st.entries, 2);
	tl_dedup_events_free(d);
}

static void
test_events_beyond_window_new_and_expired(void **state)
{
	struct tl_dedup_events *d = events(1024, 10 * SEC);
	struct tl_dedup_events_stats st;
	uint8_t id[16];

	(void)state;
	for (uint64_t i = 0; i < 100; i++) {
		make_id(id, i, ~i);
		assert_false(tl_dedup_event_seen(d, id, T0 + i * (SEC / 10)));
	}
	/* At T0 + 15 s, ids inserted before T0 + 5 s are gone. */
	make_id(id, 49, ~49ull);
	assert_false(tl_dedup_event_seen(d, id, T0 + 15 * SEC));
	make_id(id, 51, ~51ull);
	assert_true(tl_dedup_event_seen(d, id, T0 + 15 * SEC));
	tl_dedup_events_stats(d, &st);
	assert_int_equal(st.expired, 51); /* 0..50 (inserted at or before T0 + 5 s) */
	assert_int_equal(st.entries, 50); /* 51..99 and 49 again */
	assert_int_equal(st.evicted, 0);
	tl_dedup_events_free(d);
}

static void
test_events_full_ring_oldest_evicted_early(void **state)
{
	struct tl_dedup_events *d = events(16, 3600 * SEC);
	struct tl_dedup_events_stats st;
	uint8_t id[16];

	(void)state;
	for (uint64_t i = 0; i < 20; i++) {
		make_id(id, i + 1, 0);
		assert_false(tl_dedup_event_seen(d, id, T0 + i));
	}
	tl_dedup_events_stats(d, &st);
	assert_int_equal(st.entries, 16);
	assert_int_equal(st.evicted, 4);
	assert_int_equal(st.evicted_early, 4);
	/* 1..4 went first; 5..20 are remembered. */
	for (uint64_t i = 5; i <= 20; i++) {
		make_id(id, i, 0);
		assert_true(tl_dedup_event_seen(d, id, T0 + 100));
	}
	make_id(id, 1, 0);
	assert_false(tl_dedup_event_seen(d, id, T0 + 100));
	tl_dedup_events_free(d);
}

static void
test_events_low_64_bits_collide_not_duplicate(void **state)
{
	struct tl_dedup_events *d = events(64, 10 * SEC);
	uint8_t a[16], b[16], c[16];

	(void)state;
	make_id(a, 0xdeadbeefcafef00dull, 1);
	make_id(b, 0xdeadbeefcafef00dull, 2);
	make_id(c, 0x0123456789abcdefull, 1);
	assert_false(tl_dedup_event_seen(d, a, T0));
	assert_false(tl_dedup_event_seen(d, b, T0));
	assert_false(tl_dedup_event_seen(d, c, T0));
	assert_true(tl_dedup_event_seen(d, a, T0));
	assert_true(tl_dedup_event_seen(d, b, T0));
	assert_true(tl_dedup_event_seen(d, c, T0));
	/* Many ids sharing the low half all coexist. */
	for (uint64_t i = 3; i < 40; i++) {
		make_id(a, 0xdeadbeefcafef00dull, i);
		assert_false(tl_dedup_event_seen(d, a, T0));
	}
	for (uint64_t i = 1; i < 40; i++) {
		make_id(a, 0xdeadbeefcafef00dull, i);
		assert_true(tl_dedup_event_seen(d, a, T0));
	}
	tl_dedup_events_free(d);
}

static void
test_events_clock_stepped_back_duplicate(void **state)
{
	struct tl_dedup_events *d = events(64, 10 * SEC);
	uint8_t a[16];

	(void)state;
	make_id(a, 5, 6);
	assert_false(tl_dedup_event_seen(d, a, T0));
	assert_true(tl_dedup_event_seen(d, a, T0 - 3600 * SEC));
	tl_dedup_events_free(d);
}

static uint32_t rng_state;

static uint32_t
rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 17;
	rng_state ^= rng_state << 5;
	return rng_state;
}

static void
test_events_churn_matches_model(void **state)
{
	/* 20000 ids from a pool of 300, one per ms, window 100 ms, capacity 128: compare
	 * every verdict with a direct model (last insertion time per id). */
	struct tl_dedup_events *d = events(128, 100 * 1000000ull);
	static uint64_t last[300];
	struct tl_dedup_events_stats st;
	uint8_t id[16];

	(void)state;
	rng_state = 12345;
	memset(last, 0, sizeof(last));
	for (uint64_t i = 1; i <= 20000; i++) {
		uint32_t k = rng() % 300;
		uint64_t now = T0 + i * 1000000ull;
		bool dup = last[k] != 0 && now - last[k] < 100 * 1000000ull;

		make_id(id, k * 0x9e3779b97f4a7c15ull, k);
		assert_int_equal(tl_dedup_event_seen(d, id, now), dup);
		if (!dup)
			last[k] = now;
	}
	tl_dedup_events_stats(d, &st);
	/* 100 ms at 1 per ms fits in 128: nothing went early. */
	assert_int_equal(st.evicted_early, 0);
	assert_true(st.entries <= 100);
	assert_int_equal(st.inserted + st.duplicates, 20000);
	tl_dedup_events_free(d);
}

static void
test_events_save_load_round_trip_duplicates(void **state)
{
	/* The saver remembers an hour, the loader a minute. */
	struct tl_dedup_events *a = events(256, 3600 * SEC), *b = events(256, 60 * SEC);
	struct tl_dedup_events_stats st;
	uint8_t id[16], *buf;
	size_t len = 0, need;

	(void)state;
	for (uint64_t i = 0; i < 200; i++) {
		make_id(id, i, i * 7);
		assert_false(tl_dedup_event_seen(a, id, T0 + i * SEC));
	}
	need = tl_dedup_events_save_size(a);
	assert_int_equal(need, 24 + 200 * 24 + 8);
	buf = malloc(need);
	assert_non_null(buf);
	assert_int_equal(tl_dedup_events_save(a, buf, need - 1, &len), -E2BIG);
	assert_int_equal(tl_dedup_events_save(a, buf, need, &len), 0);
	assert_int_equal(len, need);
	assert_memory_equal(buf, "TLDE", 4);
	assert_int_equal(tl_dedup_events_load(b, buf, len), 0);
	assert_int_equal(events_entries(b), 200);
	/* After the restart, at T0 + 200 s: ids from T0 + 141 s on are duplicates. */
	for (uint64_t i = 199; i >= 141; i--) {
		make_id(id, i, i * 7);
		assert_true(tl_dedup_event_seen(b, id, T0 + 200 * SEC));
	}
	make_id(id, 140, 140 * 7);
	assert_false(tl_dedup_event_seen(b, id, T0 + 200 * SEC));
	tl_dedup_events_stats(b, &st);
	assert_int_equal(st.expired, 141);
	free(buf);
	tl_dedup_events_free(a);
	tl_dedup_events_free(b);
}

static void
test_events_load_smaller_keeps_newest(void **state)
{
	struct tl_dedup_events *a = events(64, 3600 * SEC), *b = events(16, 3600 * SEC);
	struct tl_dedup_events_stats st;
	uint8_t id[16], buf[24 + 40 * 24 + 8];
	size_t len = 0;

	(void)state;
	for (uint64_t i = 0; i < 40; i++) {
		make_id(id, i + 100, 0);
		assert_false(tl_dedup_event_seen(a, id, T0 + i));
	}
	assert_int_equal(tl_dedup_events_save(a, buf, sizeof(buf), &len), 0);
	assert_int_equal(tl_dedup_events_load(b, buf, len), 0);
	tl_dedup_events_stats(b, &st);
	assert_int_equal(st.entries, 16);
	assert_int_equal(st.load_dropped, 24);
	make_id(id, 139, 0);
	assert_true(tl_dedup_event_seen(b, id, T0 + 50));
	make_id(id, 124, 0);
	assert_true(tl_dedup_event_seen(b, id, T0 + 50));
	make_id(id, 123, 0);
	assert_false(tl_dedup_event_seen(b, id, T0 + 50));
	tl_dedup_events_free(a);
	tl_dedup_events_free(b);
}

static void
test_events_reinserted_id_saved_once(void **state)
{
	struct tl_dedup_events *a = events(16, 10 * SEC), *b = events(16, 10 * SEC);
	uint8_t id[16], other[16], buf[24 + 16 * 24 + 8];
	size_t len = 0;

	(void)state;
	/* An entry stamped in the future (clock stepped back, then forward again past it)
	 * blocks the tail, so the older re-seen id is killed in the middle of the ring. */
	make_id(other, 1, 1);
	make_id(id, 2, 2);
	assert_false(tl_dedup_event_seen(a, other, T0 + 100 * SEC));
	assert_false(tl_dedup_event_seen(a, id, T0));
	assert_false(tl_dedup_event_seen(a, id, T0 + 20 * SEC)); /* expired: re-inserted */
	assert_int_equal(events_entries(a), 2);
	assert_int_equal(tl_dedup_events_save_size(a), 24 + 2 * 24 + 8);
	assert_int_equal(tl_dedup_events_save(a, buf, sizeof(buf), &len), 0);
	assert_int_equal(tl_dedup_events_load(b, buf, len), 0);
	assert_true(tl_dedup_event_seen(b, id, T0 + 21 * SEC));
	assert_true(tl_dedup_event_seen(b, other, T0 + 21 * SEC));
	tl_dedup_events_free(a);
	tl_dedup_events_free(b);
}

static size_t
events_sample(uint8_t *buf, size_t cap)
{
	struct tl_dedup_events *a = events(16, 10 * SEC);
	uint8_t id[16];
	size_t len = 0;

	for (uint64_t i = 0; i < 3; i++) {
		make_id(id, i + 1, i + 10);
		assert_false(tl_dedup_event_seen(a, id, T0 + i));
	}
	assert_int_equal(tl_dedup_events_save(a, buf, cap, &len), 0);
	tl_dedup_events_free(a);
	return len;
}

static void
expect_events_refused(struct tl_dedup_events *b, const uint8_t *buf, size_t len)
{
	uint8_t id[16];

	make_id(id, 999, 999);
	(void)tl_dedup_event_seen(b, id, T0);
	assert_int_equal(tl_dedup_events_load(b, buf, len), -EBADMSG);
	assert_int_equal(events_entries(b), 0);
	assert_false(tl_dedup_event_seen(b, id, T0));
	tl_dedup_events_reset(b);
}

static void
test_events_load_malformed_ebadmsg(void **state)
{
	struct tl_dedup_events *b = events(16, 10 * SEC);
	uint8_t buf[256], bad[256];
	size_t len = events_sample(buf, sizeof(buf));

	(void)state;
	assert_int_equal(len, 24 + 3 * 24 + 8);
	assert_int_equal(tl_dedup_events_load(b, NULL, 0), -EBADMSG);
	for (size_t n = 0; n < len; n++)
		expect_events_refused(b, buf, n);
	for (size_t i = 0; i < len; i++) {
		for (int bit = 1; bit < 8; bit += 3) {
			memcpy(bad, buf, len);
			bad[i] ^= (uint8_t)(1u << bit);
			expect_events_refused(b, bad, len);
		}
	}
	memcpy(bad, buf, len);
	put32(bad + 4, 2); /* another version */
	reseal(bad, len);
	expect_events_refused(b, bad, len);
	memcpy(bad, buf, len);
	put32(bad + 16, 4); /* count */
	reseal(bad, len);
	expect_events_refused(b, bad, len);
	memcpy(bad, buf, len);
	put32(bad + 20, 1); /* reserved */
	reseal(bad, len);
	expect_events_refused(b, bad, len);
	memcpy(bad, buf, len);
	memcpy(bad + 24 + 24, bad + 24, 16); /* duplicate id */
	reseal(bad, len);
	expect_events_refused(b, bad, len);
	memcpy(bad, buf, len);
	put32(bad, 0x46444c54u); /* a frames buffer is not an events buffer */
	reseal(bad, len);
	expect_events_refused(b, bad, len);
	assert_int_equal(tl_dedup_events_load(b, buf, len), 0);
	assert_int_equal(events_entries(b), 3);
	tl_dedup_events_free(b);
}

static void
test_events_memory_figures_bounded(void **state)
{
	struct tl_dedup_events *d = events(1u << 16, 60 * SEC);
	struct tl_dedup_events_stats st, st2;
	uint8_t id[16];

	(void)state;
	tl_dedup_events_stats(d, &st);
	assert_int_equal(st.capacity, 1u << 16);
	assert_int_equal(st.window_ns, 60 * SEC);
	/* 16 bytes of id + 8 of time per entry, a 2N index of 4-byte slots. */
	assert_true(st.memory_bytes >= (1ull << 16) * (24 + 8));
	assert_true(st.memory_bytes <= (1ull << 16) * (32 + 8) + 4096);
	for (uint64_t i = 0; i < 100000; i++) {
		make_id(id, i, 0);
		(void)tl_dedup_event_seen(d, id, T0);
	}
	tl_dedup_events_stats(d, &st2);
	assert_int_equal(st2.memory_bytes, st.memory_bytes);
	assert_int_equal(st2.entries, 1u << 16);
	assert_int_equal(st2.evicted_early, 100000 - (1u << 16));
	tl_dedup_events_free(d);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_frames_create_bad_args_einval),
	        cmocka_unit_test(test_frames_in_order_resend_committed),
	        cmocka_unit_test(test_frames_out_of_order_within_window_each_once),
	        cmocka_unit_test(test_frames_slide_reused_bit_position_new),
	        cmocka_unit_test(test_frames_far_ahead_window_jumps),
	        cmocka_unit_test(test_frames_first_frame_not_one_window_below_old),
	        cmocka_unit_test(test_frames_pending_resend_pending_then_committed),
	        cmocka_unit_test(test_frames_refused_then_resend_new),
	        cmocka_unit_test(test_frames_done_not_pending_enoent),
	        cmocka_unit_test(test_frames_zero_producer_or_sequence_invalid),
	        cmocka_unit_test(test_frames_pending_leaving_window_stalled_full),
	        cmocka_unit_test(test_frames_table_full_of_pending_full),
	        cmocka_unit_test(test_frames_eviction_least_recent_evicted),
	        cmocka_unit_test(test_frames_churn_many_producers_index_consistent),
	        cmocka_unit_test(test_frames_save_load_round_trip_pending_not_committed),
	        cmocka_unit_test(test_frames_load_smaller_table_keeps_most_recent),
	        cmocka_unit_test(test_frames_load_wider_window_keeps_saved_bits),
	        cmocka_unit_test(test_frames_load_empty_round_trip_ok),
	        cmocka_unit_test(test_frames_load_truncated_or_flipped_ebadmsg),
	        cmocka_unit_test(test_frames_load_resealed_bad_content_ebadmsg),
	        cmocka_unit_test(test_frames_memory_figures_bounded),
	        cmocka_unit_test(test_frames_reset_forgets_keeps_stats),
	        cmocka_unit_test(test_verdict_name_all_named),
	        cmocka_unit_test(test_events_create_bad_args_einval),
	        cmocka_unit_test(test_events_duplicate_within_window_true),
	        cmocka_unit_test(test_events_beyond_window_new_and_expired),
	        cmocka_unit_test(test_events_full_ring_oldest_evicted_early),
	        cmocka_unit_test(test_events_low_64_bits_collide_not_duplicate),
	        cmocka_unit_test(test_events_clock_stepped_back_duplicate),
	        cmocka_unit_test(test_events_churn_matches_model),
	        cmocka_unit_test(test_events_save_load_round_trip_duplicates),
	        cmocka_unit_test(test_events_load_smaller_keeps_newest),
	        cmocka_unit_test(test_events_reinserted_id_saved_once),
	        cmocka_unit_test(test_events_load_malformed_ebadmsg),
	        cmocka_unit_test(test_events_memory_figures_bounded),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
