/* SPDX-License-Identifier: BSD-3-Clause */
/* Failover targets: circuit breakers, preference, claims, per-table policies. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "tl_failover.h"

#define SEC 1000000000ull

static struct tl_failover_conf
conf3(void)
{
	struct tl_failover_conf c;

	memset(&c, 0, sizeof(c));
	snprintf(c.targets[0], sizeof(c.targets[0]), "http://127.0.0.1:8124/");
	snprintf(c.targets[1], sizeof(c.targets[1]), "http://127.0.0.1:8125/");
	c.n_targets = 2;
	c.policy[TL_BATCH_SINK_OUTPUT] = TL_FAILOVER_FIRST_HEALTHY;
	c.policy[TL_BATCH_ERROR_EVENTS] = TL_FAILOVER_ALL;
	c.policy[TL_BATCH_DEAD_LETTER] = TL_FAILOVER_FIRST_HEALTHY;
	c.health_interval = SEC;
	c.health_timeout = SEC / 2;
	c.failures = 3;
	return c;
}

static struct tl_failover *
make(const struct tl_failover_conf *c, unsigned n)
{
	struct tl_failover *fo = NULL;

	assert_int_equal(tl_failover_create(c, n, &fo), 0);
	assert_non_null(fo);
	return fo;
}

static void
test_failover_create_bad_args_einval(void **state)
{
	struct tl_failover_conf c = conf3();
	struct tl_failover *fo = (void *)1;

	(void)state;
	assert_int_equal(tl_failover_create(NULL, 1, &fo), -EINVAL);
	assert_null(fo);
	assert_int_equal(tl_failover_create(&c, 0, &fo), -EINVAL);
	assert_int_equal(tl_failover_create(&c, TL_FAILOVER_MAX_TARGETS + 1, &fo), -EINVAL);
	c.policy[1] = 7;
	assert_int_equal(tl_failover_create(&c, 3, &fo), -EINVAL);
	c = conf3();
	c.failures = 0;
	assert_int_equal(tl_failover_create(&c, 3, &fo), -EINVAL);
	assert_int_equal(tl_failover_create(&c, 3, NULL), -EINVAL);
	tl_failover_free(NULL);
}

static void
test_failover_check_urls_and_timeouts(void **state)
{
	struct tl_failover_conf c = conf3();
	char msg[160];

	(void)state;
	assert_int_equal(tl_failover_check(&c, msg, sizeof(msg)), 0);
	snprintf(c.targets[1], sizeof(c.targets[1]), "ftp://127.0.0.1/");
	assert_int_equal(tl_failover_check(&c, msg, sizeof(msg)), 1);
	assert_non_null(strstr(msg, "ftp://127.0.0.1/"));
	c = conf3();
	c.health_timeout = 2 * SEC;
	assert_int_equal(tl_failover_check(&c, msg, sizeof(msg)), 1);
	assert_non_null(strstr(msg, "health_timeout"));
}

static void
test_failover_breaker_opens_after_failures_closes_on_success(void **state)
{
	struct tl_failover_conf c = conf3();
	struct tl_failover *fo = make(&c, 3);
	struct tl_failover_target_stats st;
	uint64_t e0, e1, e2;

	(void)state;
	assert_int_equal(tl_failover_preferred(fo, &e0), 0);
	/* Two failures, then a success: the count starts again. */
	tl_failover_report(fo, 0, false, 1);
	tl_failover_report(fo, 0, false, 2);
	tl_failover_report(fo, 0, true, 3);
	tl_failover_report(fo, 0, false, 4);
	tl_failover_report(fo, 0, false, 5);
	assert_false(tl_failover_open(fo, 0));
	assert_int_equal(tl_failover_preferred(fo, &e1), 0);
	assert_int_equal(e1, e0);
	tl_failover_report(fo, 0, false, 6);
	assert_true(tl_failover_open(fo, 0));
	assert_int_equal(tl_failover_preferred(fo, &e1), 1);
	assert_true(e1 != e0);
	/* Target 1 fails too: 2 is preferred; all three open: 0 keeps trying. */
	for (int i = 0; i < 3; i++)
		tl_failover_report(fo, 1, false, 7);
	assert_int_equal(tl_failover_preferred(fo, NULL), 2);
	for (int i = 0; i < 3; i++)
		tl_failover_report(fo, 2, false, 8);
	assert_int_equal(tl_failover_preferred(fo, NULL), 0);
	/* A success of target 1 closes it: preferred again, a new epoch. */
	tl_failover_report(fo, 1, true, 9);
	assert_int_equal(tl_failover_preferred(fo, &e2), 1);
	assert_true(e2 != e1);
	tl_failover_stats(fo, 0, &st);
	assert_int_equal(st.state, TL_FAILOVER_OPEN);
	assert_int_equal(st.failures, 5);
	assert_int_equal(st.opened, 1);
	tl_failover_free(fo);
}

static void
test_failover_claims_exclusive_owner_wins(void **state)
{
	struct tl_failover_conf c = conf3();
	struct tl_failover *fo = make(&c, 3);
	struct tl_failover_target_stats st;
	bool nc;

	(void)state;
	assert_true(tl_failover_claims(fo, TL_BATCH_SINK_OUTPUT));
	assert_false(tl_failover_claims(fo, TL_BATCH_ERROR_EVENTS));
	/* Not preferred: skip an unclaimed record; preferred: claim it. */
	assert_int_equal(
	        tl_failover_take(fo, 1, TL_BATCH_SINK_OUTPUT, 10, -1, &nc), TL_FAILOVER_SKIP);
	assert_false(nc);
	assert_int_equal(
	        tl_failover_take(fo, 0, TL_BATCH_SINK_OUTPUT, 10, -1, &nc), TL_FAILOVER_TAKE);
	assert_true(nc);
	/* Taken again by its claimant: no new claim. Another target never gets it, even
	 * after the claimant's breaker opened. */
	assert_int_equal(
	        tl_failover_take(fo, 0, TL_BATCH_SINK_OUTPUT, 10, -1, &nc), TL_FAILOVER_TAKE);
	assert_false(nc);
	for (int i = 0; i < 3; i++)
		tl_failover_report(fo, 0, false, 1);
	assert_int_equal(
	        tl_failover_take(fo, 1, TL_BATCH_SINK_OUTPUT, 10, -1, &nc), TL_FAILOVER_SKIP);
	assert_int_equal(
	        tl_failover_take(fo, 1, TL_BATCH_SINK_OUTPUT, 11, -1, &nc), TL_FAILOVER_TAKE);
	assert_true(nc);
	/* A durable claim read from the spool decides, whoever is preferred. */
	assert_int_equal(
	        tl_failover_take(fo, 2, TL_BATCH_SINK_OUTPUT, 12, 2, &nc), TL_FAILOVER_TAKE);
	assert_false(nc);
	assert_int_equal(
	        tl_failover_take(fo, 1, TL_BATCH_SINK_OUTPUT, 12, 2, &nc), TL_FAILOVER_SKIP);
	/* Delivered: forgotten; unclaimed: free for the preferred one. */
	assert_true(tl_failover_delivered(fo, 1, TL_BATCH_SINK_OUTPUT, 11));
	tl_failover_unclaim(fo, 2, 10); /* not 2's: no effect */
	assert_int_equal(
	        tl_failover_take(fo, 1, TL_BATCH_SINK_OUTPUT, 10, -1, &nc), TL_FAILOVER_SKIP);
	tl_failover_unclaim(fo, 0, 10);
	assert_int_equal(
	        tl_failover_take(fo, 1, TL_BATCH_SINK_OUTPUT, 10, -1, &nc), TL_FAILOVER_TAKE);
	assert_true(nc);
	tl_failover_stats(fo, 1, &st);
	assert_int_equal(st.claimed, 2);
	tl_failover_free(fo);
}

static void
test_failover_all_policy_deletes_after_every_target(void **state)
{
	struct tl_failover_conf c = conf3();
	struct tl_failover *fo = make(&c, 3);
	bool nc;

	(void)state;
	for (unsigned t = 0; t < 3; t++)
		assert_int_equal(tl_failover_take(fo, t, TL_BATCH_ERROR_EVENTS, 5, -1, &nc),
		        TL_FAILOVER_TAKE);
	assert_false(tl_failover_delivered(fo, 2, TL_BATCH_ERROR_EVENTS, 5));
	/* The same target twice (a repair) does not count as another. */
	assert_false(tl_failover_delivered(fo, 2, TL_BATCH_ERROR_EVENTS, 5));
	assert_false(tl_failover_delivered(fo, 0, TL_BATCH_ERROR_EVENTS, 5));
	assert_true(tl_failover_delivered(fo, 1, TL_BATCH_ERROR_EVENTS, 5));
	/* Forgotten once complete: a later record with another key starts from nothing. */
	assert_false(tl_failover_delivered(fo, 1, TL_BATCH_ERROR_EVENTS, 6));
	tl_failover_free(fo);
}

/* Thousands of records in flight at once: the maps grow and shrink without losing any. */
static void
test_failover_many_records_maps_grow_and_shrink(void **state)
{
	struct tl_failover_conf c = conf3();
	struct tl_failover *fo = make(&c, 2);
	bool nc;

	(void)state;
	for (uint64_t k = 1; k <= 20000; k++) {
		assert_int_equal(tl_failover_take(fo, 0, TL_BATCH_SINK_OUTPUT, k, -1, &nc),
		        TL_FAILOVER_TAKE);
		assert_true(nc);
		assert_false(tl_failover_delivered(fo, 1, TL_BATCH_ERROR_EVENTS, k));
	}
	for (uint64_t k = 1; k <= 20000; k += 2) {
		assert_true(tl_failover_delivered(fo, 0, TL_BATCH_SINK_OUTPUT, k));
		assert_true(tl_failover_delivered(fo, 0, TL_BATCH_ERROR_EVENTS, k));
	}
	/* The odd ones were forgotten: target 1, now preferred, may claim them; the even
	 * ones are still target 0's. */
	for (int i = 0; i < 3; i++)
		tl_failover_report(fo, 0, false, 1);
	for (uint64_t k = 1; k <= 20000; k++) {
		enum tl_failover_take r = tl_failover_take(fo, 1, TL_BATCH_SINK_OUTPUT, k, -1, &nc);

		assert_int_equal(r, (k & 1) ? TL_FAILOVER_TAKE : TL_FAILOVER_SKIP);
		if ((k & 1) == 0)
			assert_true(tl_failover_delivered(fo, 0, TL_BATCH_ERROR_EVENTS, k));
	}
	tl_failover_free(fo);
}

static void
test_failover_single_target_takes_everything(void **state)
{
	struct tl_failover_conf c = conf3();
	struct tl_failover *fo = make(&c, 1);
	bool nc;

	(void)state;
	assert_false(tl_failover_claims(fo, TL_BATCH_SINK_OUTPUT));
	assert_int_equal(
	        tl_failover_take(fo, 0, TL_BATCH_SINK_OUTPUT, 1, 3, &nc), TL_FAILOVER_TAKE);
	assert_true(tl_failover_delivered(fo, 0, TL_BATCH_ERROR_EVENTS, 1));
	assert_false(tl_failover_check_due(fo, 0, 0));
	assert_int_equal(tl_failover_targets(NULL), 1);
	assert_true(tl_failover_delivered(NULL, 0, 0, 1));
	tl_failover_free(fo);
}

static void
test_failover_health_checks_one_at_a_time_on_interval(void **state)
{
	struct tl_failover_conf c = conf3();
	struct tl_failover *fo = make(&c, 2);
	struct tl_failover_target_stats st;

	(void)state;
	assert_true(tl_failover_check_due(fo, 1, 100));
	/* Taken: nobody else checks until it is recorded. */
	assert_false(tl_failover_check_due(fo, 1, 100 + 5 * SEC));
	tl_failover_checked(fo, 1, false, 200);
	assert_false(tl_failover_check_due(fo, 1, 200 + SEC - 1));
	assert_true(tl_failover_check_due(fo, 1, 200 + SEC));
	tl_failover_checked(fo, 1, false, 300);
	assert_true(tl_failover_check_due(fo, 1, 300 + SEC));
	tl_failover_checked(fo, 1, false, 400);
	assert_true(tl_failover_open(fo, 1));
	assert_true(tl_failover_check_due(fo, 1, 400 + SEC));
	tl_failover_checked(fo, 1, true, 500);
	assert_false(tl_failover_open(fo, 1));
	tl_failover_stats(fo, 1, &st);
	assert_int_equal(st.checks, 4);
	assert_int_equal(st.checks_failed, 3);
	assert_int_equal(st.state, TL_FAILOVER_CLOSED);
	tl_failover_free(fo);
}

/* Two targets' uplinks race for the same records while the breaker flips: every record
 * is claimed by exactly one of them. */
struct racer {
	struct tl_failover *fo;
	unsigned target;
	uint8_t *won; /* per key: bit per target */
};

static void *
race(void *arg)
{
	struct racer *r = arg;
	bool nc;

	for (uint64_t k = 1; k <= 50000; k++) {
		if (tl_failover_take(r->fo, r->target, TL_BATCH_SINK_OUTPUT, k, -1, &nc) ==
		                TL_FAILOVER_TAKE &&
		        nc)
			__atomic_fetch_or(&r->won[k], (uint8_t)(1u << r->target), __ATOMIC_RELAXED);
		if (k % 997 == 0)
			tl_failover_report(r->fo, 0, r->target == 1, 1);
	}
	return NULL;
}

static void
test_failover_claims_race_each_record_once(void **state)
{
	struct tl_failover_conf c = conf3();
	struct tl_failover *fo;
	static uint8_t won[50001];
	struct racer r[2];
	pthread_t th[2];

	(void)state;
	c.failures = 1;
	fo = make(&c, 2);
	memset(won, 0, sizeof(won));
	for (unsigned t = 0; t < 2; t++) {
		r[t] = (struct racer){.fo = fo, .target = t, .won = won};
		assert_int_equal(pthread_create(&th[t], NULL, race, &r[t]), 0);
	}
	for (unsigned t = 0; t < 2; t++)
		pthread_join(th[t], NULL);
	for (int k = 1; k <= 50000; k++)
		assert_true(won[k] != 3);
	tl_failover_free(fo);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_failover_create_bad_args_einval),
	        cmocka_unit_test(test_failover_check_urls_and_timeouts),
	        cmocka_unit_test(test_failover_breaker_opens_after_failures_closes_on_success),
	        cmocka_unit_test(test_failover_claims_exclusive_owner_wins),
	        cmocka_unit_test(test_failover_all_policy_deletes_after_every_target),
	        cmocka_unit_test(test_failover_many_records_maps_grow_and_shrink),
	        cmocka_unit_test(test_failover_single_target_takes_everything),
	        cmocka_unit_test(test_failover_health_checks_one_at_a_time_on_interval),
	        cmocka_unit_test(test_failover_claims_race_each_record_once),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
