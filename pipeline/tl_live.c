/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Generations of live state and their RCU publication (see tl_live.h).
 *
 * The QSBR variable is plain memory: rte_rcu_qsbr_init() and friends need no EAL, so
 * this module works in tests and benchmarks that never call rte_eal_init(). The DPDK
 * defer queue would need EAL (it is an rte_ring in rte_malloc memory), hence the small
 * deferred list of our own.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tl_error.h"
#include "tl_live.h"
#include "tl_log.h"

/* How long the publisher sleeps between two checks of the grace period. Workers report
 * every burst (microseconds), so a short sleep keeps reloads fast without spinning a core
 * that the workers may need. */
#define POLL_NS 20000ull

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- generations -------------------------------------------------------------------- */

int
tl_live_gen_build(const struct tl_classify_conf *conf, const struct tl_schema *schema,
        unsigned n_workers, struct tl_live_gen **out, char *err, size_t errlen)
{
	struct tl_live_gen *g;
	int rc;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (out == NULL)
		return -EINVAL;
	*out = NULL;
	if (conf == NULL || schema == NULL || n_workers == 0 || n_workers > TL_LIVE_MAX_WORKERS)
		return -EINVAL;
	g = calloc(1, sizeof(*g));
	if (g == NULL)
		return -ENOMEM;
	rc = tl_classify_build(conf, schema, &g->db, err, errlen);
	if (rc < 0)
		goto fail;
	/* Each generation gets scratches of its own: a scratch is sized for one database,
	 * and a worker still scanning with the old generation keeps using the old one. */
	for (unsigned w = 0; w < n_workers; w++) {
		rc = tl_classify_scratch_alloc(g->db, &g->scratch[w]);
		if (rc < 0) {
			if (err != NULL && errlen > 0)
				snprintf(err, errlen,
				        "classify: cannot allocate the scratch of worker %u: %s", w,
				        tl_strerror(rc));
			goto fail;
		}
		g->n_workers = w + 1;
	}
	snprintf(g->db_hash, sizeof(g->db_hash), "%s", tl_classify_db_hash(g->db));
	*out = g;
	return 0;

fail:
	tl_live_gen_free(g);
	return rc;
}

void
tl_live_gen_free(struct tl_live_gen *g)
{
	if (g == NULL)
		return;
	if (g->ext != NULL && g->ext_free != NULL)
		g->ext_free(g->ext);
	tl_route_set_free(g->routes);
	for (unsigned w = 0; w < g->n_workers; w++)
		tl_classify_scratch_free(g->scratch[w]);
	tl_classify_db_free(g->db);
	free(g);
}

/* ---- the publication point ------------------------------------------------------------ */

int
tl_live_create(unsigned n_workers, struct tl_live_gen *first, struct tl_live **out)
{
	struct tl_live *live;
	size_t sz;

	if (out == NULL)
		return -EINVAL;
	*out = NULL;
	if (first == NULL || n_workers == 0 || n_workers > TL_LIVE_MAX_WORKERS ||
	        first->n_workers < n_workers)
		return -EINVAL;
	live = aligned_alloc(64, sizeof(*live));
	if (live == NULL)
		return -ENOMEM;
	memset(live, 0, sizeof(*live));
	/* struct rte_rcu_qsbr is cache-line aligned: malloc's 16 bytes would be undefined
	 * behaviour (and UBSan says so). aligned_alloc wants a multiple of the alignment. */
	sz = rte_rcu_qsbr_get_memsize(n_workers);
	sz = (sz + RTE_CACHE_LINE_SIZE - 1) & ~(size_t)(RTE_CACHE_LINE_SIZE - 1);
	live->qs = aligned_alloc(RTE_CACHE_LINE_SIZE, sz);
	if (live->qs == NULL)
		goto nomem;
	if (rte_rcu_qsbr_init(live->qs, n_workers) != 0)
		goto inval;
	/* Registered once for good: an offline worker (counter 0) is skipped by the check,
	 * so workers only go online/offline, which is cheaper and needs no atomic RMW. */
	for (unsigned w = 0; w < n_workers; w++)
		if (rte_rcu_qsbr_thread_register(live->qs, w) != 0)
			goto inval;
	if (pthread_mutex_init(&live->lock, NULL) != 0)
		goto nomem;
	live->n_workers = n_workers;
	first->gen = 1;
	first->deferred_next = NULL;
	live->generation = 1;
	__atomic_store_n(&live->cur, first, __ATOMIC_RELEASE);
	*out = live;
	return 0;

inval:
	free(live->qs);
	free(live);
	return -EINVAL;
nomem:
	free(live->qs);
	free(live);
	return -ENOMEM;
}

/* Free the deferred generations whose token every worker has passed. Lock held. */
static unsigned
reclaim_locked(struct tl_live *live)
{
	struct tl_live_gen **pp = &live->deferred;
	unsigned n = 0;

	while (*pp != NULL) {
		struct tl_live_gen *g = *pp;

		if (rte_rcu_qsbr_check(live->qs, g->token, false) == 1) {
			*pp = g->deferred_next;
			TL_INFO("live: generation %" PRIu64 " freed after a late grace period",
			        g->gen);
			tl_live_gen_free(g);
			n++;
		} else {
			pp = &g->deferred_next;
		}
	}
	__atomic_fetch_sub(&live->pending, n, __ATOMIC_RELAXED);
	return n;
}

/* Log the online workers whose counter is still behind @p token. */
static void
log_late_workers(const struct tl_live *live, uint64_t token, uint64_t old_gen, uint64_t timeout_ns)
{
	char ids[256];
	size_t len = 0;

	ids[0] = '\0';
	for (unsigned w = 0; w < live->n_workers && len < sizeof(ids) - 8; w++) {
		uint64_t c = __atomic_load_n(&live->qs->qsbr_cnt[w].cnt, __ATOMIC_ACQUIRE);

		/* 0 is offline; a counter at or past the token has reported. */
		if (c != 0 && c < token)
			len += (size_t)snprintf(
			        ids + len, sizeof(ids) - len, "%s%u", len ? "," : "", w);
	}
	TL_WARN("live: worker(s) %s did not report a quiescent state within %" PRIu64
	        " ms; generation %" PRIu64 " is kept and freed later",
	        ids[0] ? ids : "?", timeout_ns / 1000000, old_gen);
}

int
tl_live_publish(struct tl_live *live, struct tl_live_gen *next, uint64_t timeout_ns)
{
	struct tl_live_gen *old;
	uint64_t t0, deadline, token;
	int done;

	if (live == NULL || next == NULL || next->n_workers < live->n_workers)
		return -EINVAL;
	pthread_mutex_lock(&live->lock);
	old = live->cur;
	if (next == old) {
		pthread_mutex_unlock(&live->lock);
		return -EINVAL;
	}
	for (struct tl_live_gen *g = live->deferred; g != NULL; g = g->deferred_next) {
		if (g == next) {
			pthread_mutex_unlock(&live->lock);
			return -EINVAL;
		}
	}
	t0 = now_ns();
	reclaim_locked(live);
	next->gen = old->gen + 1;
	next->deferred_next = NULL;
	/* The swap must be visible before the token moves: a worker that acknowledges the
	 * new token (acquire in rte_rcu_qsbr_quiescent) then loads the new generation. */
	__atomic_store_n(&live->cur, next, __ATOMIC_RELEASE);
	__atomic_store_n(&live->generation, next->gen, __ATOMIC_RELAXED);
	token = rte_rcu_qsbr_start(live->qs);
	deadline = t0 + timeout_ns;
	for (;;) {
		done = rte_rcu_qsbr_check(live->qs, token, false);
		if (done == 1 || now_ns() >= deadline)
			break;
		nanosleep(&(struct timespec){.tv_nsec = POLL_NS}, NULL);
	}
	if (done == 1) {
		tl_live_gen_free(old);
	} else {
		log_late_workers(live, token, old->gen, timeout_ns);
		old->token = token;
		old->deferred_next = live->deferred;
		live->deferred = old;
		__atomic_fetch_add(&live->pending, 1, __ATOMIC_RELAXED);
		__atomic_fetch_add(&live->timeouts, 1, __ATOMIC_RELAXED);
	}
	__atomic_store_n(&live->last_publish_ns, now_ns() - t0, __ATOMIC_RELAXED);
	__atomic_fetch_add(&live->reloads_ok, 1, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&live->lock);
	return 0;
}

unsigned
tl_live_reclaim(struct tl_live *live)
{
	unsigned n;

	if (live == NULL)
		return 0;
	/* Cheap test first: the reload thread calls this periodically. */
	if (__atomic_load_n(&live->pending, __ATOMIC_RELAXED) == 0)
		return 0;
	pthread_mutex_lock(&live->lock);
	n = reclaim_locked(live);
	pthread_mutex_unlock(&live->lock);
	return n;
}

void
tl_live_note_failure(struct tl_live *live)
{
	if (live != NULL)
		__atomic_fetch_add(&live->reloads_failed, 1, __ATOMIC_RELAXED);
}

void
tl_live_stats(struct tl_live *live, struct tl_live_stats *st)
{
	if (st == NULL)
		return;
	memset(st, 0, sizeof(*st));
	if (live == NULL)
		return;
	/* Counters only, no lock: a metrics scrape never waits for a grace period. */
	st->generation = __atomic_load_n(&live->generation, __ATOMIC_RELAXED);
	st->reloads_ok = __atomic_load_n(&live->reloads_ok, __ATOMIC_RELAXED);
	st->reloads_failed = __atomic_load_n(&live->reloads_failed, __ATOMIC_RELAXED);
	st->last_publish_ns = __atomic_load_n(&live->last_publish_ns, __ATOMIC_RELAXED);
	st->gens_pending_free = __atomic_load_n(&live->pending, __ATOMIC_RELAXED);
	st->publish_timeouts = __atomic_load_n(&live->timeouts, __ATOMIC_RELAXED);
}

void
tl_live_destroy(struct tl_live *live)
{
	struct tl_live_gen *g, *next;

	if (live == NULL)
		return;
	for (g = live->deferred; g != NULL; g = next) {
		next = g->deferred_next;
		/* The caller promises every worker stopped; one still online that never
		 * reported is a bug worth a line in the log. */
		if (rte_rcu_qsbr_check(live->qs, g->token, false) != 1)
			TL_WARN("live: generation %" PRIu64
			        " freed at destroy while a worker never reported",
			        g->gen);
		tl_live_gen_free(g);
	}
	tl_live_gen_free(live->cur);
	pthread_mutex_destroy(&live->lock);
	free(live->qs);
	free(live);
}
