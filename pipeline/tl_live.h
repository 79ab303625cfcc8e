/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * Live state published to the workers by generation, reclaimed with RCU (rte_rcu_qsbr).
 *
 * A generation (struct tl_live_gen) is everything a worker needs from the profile that
 * may change while tapline runs: the classification database, one Hyperscan scratch per
 * worker for that database, and an opaque extension (routing tables later). A generation
 * is immutable once published and shares nothing with older ones, so a reload builds the
 * next one off the hot path, tl_live_publish() swaps the current pointer and the old
 * generation is freed once every worker has passed a quiescent state.
 *
 * What a worker does (worker ids are 0 .. n_workers - 1, the index of its scratch):
 *
 * @code
 *	tl_live_worker_online(live, w);            // once, before the first burst
 *	while (running) {
 *		n = rx_burst(...);
 *		if (n == 0 && about_to_block) {
 *			tl_live_worker_offline(live, w);  // a blocked worker never delays a reload
 *			block();
 *			tl_live_worker_online(live, w);
 *			continue;
 *		}
 *		const struct tl_live_gen *g = tl_live_current(live);
 *		for (i = 0; i < n; i++)
 *			tl_classify_event(g->db, g->scratch[w], &ev[i], &res[i]);
 *		... use g (pattern ids, g->ext) for this burst only ...
 *		tl_live_quiescent(live, w);                // g must not be used after this
 *	}
 *	tl_live_worker_offline(live, w);           // before the thread exits
 * @endcode
 *
 * Rules: load the generation once per burst with tl_live_current() and use only that
 * pointer for the whole burst (never mix two generations' db and scratch); keep no pointer
 * into a generation (db, scratch, pattern strings, ext) across tl_live_quiescent() or
 * tl_live_worker_offline(); copy what must outlive the burst. Between online and offline,
 * a worker must report quiescent regularly (every burst, and at least every few
 * milliseconds when idle): a publish waits for it.
 *
 * Cost on the hot path, per burst: tl_live_current() is one acquire load (a plain load on
 * x86); tl_live_quiescent() is one acquire load of the shared token plus one release store
 * to the worker's own cache line, and the store happens only in the first burst after a
 * publish. No lock, no allocation, no system call, no shared write.
 *
 * rte_rcu_qsbr without EAL: the QSBR variable lives in memory allocated here
 * (aligned_alloc, cache-line aligned as its type requires) and rte_rcu_qsbr_init(),
 * _thread_register(), _quiescent() and _check() only touch that memory, rte_errno
 * (thread-local) and rte_log (stderr until EAL configures it). None needs rte_eal_init(),
 * so tests and `tapline bench` use this module without EAL. The defer queue
 * (rte_rcu_qsbr_dq_*) does need EAL (rte_ring/rte_malloc): it is not used; deferred frees
 * are kept on a list here.
 *
 * Thread-safety: tl_live_current/quiescent/worker_online/worker_offline are called by
 * worker w only, for its own id. tl_live_publish, tl_live_reclaim, tl_live_note_failure
 * and tl_live_stats may be called from any thread (publishers are serialized by a mutex);
 * tl_live_create/destroy by one thread when no worker runs.
 */
#ifndef TL_LIVE_H
#define TL_LIVE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <rte_rcu_qsbr.h>

#include "tl_classify.h"
#include "tl_route.h"
#include "tl_schema.h"

#define TL_LIVE_MAX_WORKERS 64 /**< workers (and scratches per generation) */
#define TL_LIVE_PATH_MAX 1024  /**< profile path kept in a generation */

/** One generation of live state. Immutable once published. */
struct tl_live_gen {
	uint64_t gen; /**< 1, 2, ...: set by tl_live_create / tl_live_publish */
	/** The classification database: never NULL in a built generation (a profile with no
	 *  patterns gets an empty database that matches nothing). */
	struct tl_classify_db *db;
	unsigned n_workers; /**< scratches allocated: scratch[0 .. n_workers - 1] */
	struct tl_classify_scratch *scratch[TL_LIVE_MAX_WORKERS]; /**< one per worker, for db */
	char db_hash[TL_CLASSIFY_HASH_HEX]; /**< tl_classify_db_hash(db): the pattern set's id */
	char path[TL_LIVE_PATH_MAX];        /**< the profile it was loaded from ("" if none): set by
	                                         the builder's caller before publishing */
	/** Routing of the profile, or NULL: every event goes to the default route. Freed with
	 *  the generation. */
	struct tl_route_set *routes;
	void *ext;                          /**< opaque extension, or NULL */
	void (*ext_free)(void *ext);        /**< called by tl_live_gen_free when ext is not NULL */

	/* private: owned by tl_live */
	uint64_t token;                    /**< QSBR token of its retirement */
	struct tl_live_gen *deferred_next; /**< on the deferred-free list */
};

/**
 * Build a generation: compile (or load from the cache) @p conf's patterns for @p schema
 * and allocate one scratch per worker for that database.
 *
 * @param conf       the `classify:` section; copied, the caller may free it afterwards.
 * @param schema     the running compiled schema (not kept).
 * @param n_workers  scratches to allocate: 1 .. TL_LIVE_MAX_WORKERS.
 * @param out        out: the generation (caller owns until it is published;
 *                   tl_live_gen_free). NULL on failure.
 * @param err        buffer for the problems (may be NULL): tl_classify_build's lines
 *                   (`file:line: pattern '<id>': <message>`), or why a scratch could not be
 *                   allocated. "" on success.
 * @param errlen     its size.
 * @return 0; TL_E_CONFIG if a pattern is invalid (reported in @p err); -ENOMEM; -ENOTSUP
 *         if Hyperscan does not support this CPU; -EINVAL if @p conf, @p schema or @p out
 *         is NULL or @p n_workers is out of range.
 */
int tl_live_gen_build(const struct tl_classify_conf *conf, const struct tl_schema *schema,
        unsigned n_workers, struct tl_live_gen **out, char *err, size_t errlen);

/** Free a generation that is not published (or that tl_live retired). NULL-safe. */
void tl_live_gen_free(struct tl_live_gen *g);

/** Counters of a struct tl_live (tl_live_stats). */
struct tl_live_stats {
	uint64_t generation;        /**< number of the current generation */
	uint64_t reloads_ok;        /**< successful publishes */
	uint64_t reloads_failed;    /**< rejected reloads (tl_live_note_failure) */
	uint64_t last_publish_ns;   /**< duration of the last publish: swap + grace period */
	uint64_t gens_pending_free; /**< retired generations not freed yet (a worker did not
	                                 report in time) */
	uint64_t publish_timeouts;  /**< publishes whose grace period timed out */
};

/**
 * The publication point. Fields are private; the hot-path inline functions below read
 * cur and qs.
 */
struct tl_live {
	/* Read by every worker per burst, written once per publish. */
	struct tl_live_gen *cur __attribute__((aligned(64)));
	struct rte_rcu_qsbr *qs;
	unsigned n_workers;

	/* Control path. */
	pthread_mutex_t lock __attribute__((aligned(64)));
	struct tl_live_gen *deferred; /**< retired, waiting for a grace period */
	uint64_t generation;          /**< cur->gen, readable without the lock */
	uint64_t reloads_ok;
	uint64_t reloads_failed;
	uint64_t last_publish_ns;
	uint64_t pending;
	uint64_t timeouts;
};

/**
 * Create the publication point with @p first as generation 1. Every worker id is
 * registered with the QSBR variable and starts offline.
 *
 * @param n_workers  1 .. TL_LIVE_MAX_WORKERS.
 * @param first      the first generation (built for at least @p n_workers workers);
 *                   owned by the live on success, still the caller's on failure.
 * @param out        out: the live (tl_live_destroy). NULL on failure.
 * @return 0; -ENOMEM; -EINVAL if @p first or @p out is NULL, @p n_workers is out of range
 *         or @p first has fewer scratches than workers.
 */
int tl_live_create(unsigned n_workers, struct tl_live_gen *first, struct tl_live **out);

/**
 * Destroy the live and free every generation it owns (current and deferred). Every
 * worker must have stopped using it (offline or exited). NULL-safe.
 */
void tl_live_destroy(struct tl_live *live);

/**
 * Publish @p next: swap it in as the current generation (release store), start a QSBR
 * grace period and wait up to @p timeout_ns for every online worker to pass a quiescent
 * state, then free the old generation. Generations retired earlier whose grace period has
 * ended are freed first.
 *
 * If a worker does not report within @p timeout_ns (stuck, or forgot to go offline) the
 * workers that did not report are logged, the old generation is kept on a deferred list
 * and freed by a later tl_live_publish/tl_live_reclaim once they report, or by
 * tl_live_destroy; @p next is published anyway and 0 returned (see gens_pending_free).
 * Offline workers are never waited for.
 *
 * @param next        a built generation with at least n_workers scratches; owned by the
 *                    live on success (its gen number is set), still the caller's on error.
 * @param timeout_ns  longest wait for the grace period (0: check once, never wait).
 * @return 0; -EINVAL if @p live or @p next is NULL, @p next is already published, or it
 *         has fewer scratches than workers.
 */
int tl_live_publish(struct tl_live *live, struct tl_live_gen *next, uint64_t timeout_ns);

/**
 * Free the deferred generations whose grace period has ended, without waiting.
 * @return how many were freed (0 if @p live is NULL).
 */
unsigned tl_live_reclaim(struct tl_live *live);

/** Count a rejected reload (the reload controller calls it). NULL-safe. */
void tl_live_note_failure(struct tl_live *live);

/** Fill @p st with the counters (zeros if @p live is NULL). Lock-free: never waits for a
 *  publish in progress. */
void tl_live_stats(struct tl_live *live, struct tl_live_stats *st);

/**
 * Hot path: the current generation. Valid until the calling worker's next
 * tl_live_quiescent() or tl_live_worker_offline(); the worker must be online.
 */
static inline const struct tl_live_gen *
tl_live_current(const struct tl_live *live)
{
	return __atomic_load_n(&live->cur, __ATOMIC_ACQUIRE);
}

/**
 * Hot path: worker @p worker holds no pointer into any generation (call between bursts).
 */
static inline void
tl_live_quiescent(struct tl_live *live, unsigned worker)
{
	rte_rcu_qsbr_quiescent(live->qs, worker);
}

/**
 * Worker @p worker starts reading generations (at start, and after a blocking wait). Not
 * for every burst: it includes a full memory barrier.
 */
static inline void
tl_live_worker_online(struct tl_live *live, unsigned worker)
{
	rte_rcu_qsbr_thread_online(live->qs, worker);
}

/**
 * Worker @p worker stops reading generations (before it blocks or exits): a publish no
 * longer waits for it. It must hold no pointer into a generation.
 */
static inline void
tl_live_worker_offline(struct tl_live *live, unsigned worker)
{
	rte_rcu_qsbr_thread_offline(live->qs, worker);
}

#endif
