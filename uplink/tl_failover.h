/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * Failover between ClickHouse targets (SPEC section 4; issue 5 item 6).
 *
 * An ordered list of targets (`uplink.url` first, then `uplink.failover.targets`, e.g. a
 * cloud-side ClickHouse and an on-prem one). Every target has its own uplinks (one per
 * route), so its own connections, slots and spool cursor: a dead target never stalls a
 * live one. This object is what they share:
 *
 * - a circuit breaker per target: CLOSED until `failures` consecutive failures (failed
 *   inserts, failed health checks), then OPEN; an open target is probed with a health
 *   check every `health_interval` and closes again on the first success;
 * - a policy per table: FIRST_HEALTHY (each batch is delivered to one target: the first
 *   whose breaker is closed when the batch is first sent) or ALL (to every target; the
 *   spool record is deleted once the last one has it);
 * - claims, for FIRST_HEALTHY: before a target sends a batch for the first time it
 *   claims the spool record, atomically against the other targets, and the claim is
 *   made durable in the spool (tl_spool_claim) before the batch goes out. A claimed
 *   record is only ever sent to its claimant, which resolves an ambiguous send by
 *   asking its own ClickHouse when it is back: exactly once, even across kill -9, and
 *   without waiting on a dead target for batches it never had;
 * - a preference epoch: it changes whenever the first healthy target changes, so the
 *   uplink that becomes preferred re-reads the spool for records nobody has claimed.
 *
 * Thread-safe (one mutex; nothing here is on a worker's path).
 */
#ifndef TL_FAILOVER_H
#define TL_FAILOVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tl_batch.h"
#include "tl_opt.h"

#define TL_FAILOVER_MAX_TARGETS 8
#define TL_FAILOVER_URL_LEN 512

enum tl_failover_policy {
	TL_FAILOVER_FIRST_HEALTHY, /**< one target: the first healthy one */
	TL_FAILOVER_ALL,           /**< every target */
};

extern const char *const tl_failover_policy_names[];

/** The `uplink.failover:` section. */
struct tl_failover_conf {
	char targets[TL_FAILOVER_MAX_TARGETS - 1][TL_FAILOVER_URL_LEN]; /**< after uplink.url */
	uint32_t n_targets;
	int policy[TL_BATCH_TABLE_MAX]; /**< enum tl_failover_policy, per table */
	uint64_t health_interval;       /**< ns between health checks of a target */
	uint64_t health_timeout;        /**< ns a health check may take */
	uint64_t failures;              /**< consecutive failures that open the breaker */
};

extern const struct tl_opt tl_failover_opts[];

/** Section check (a tl_opt_check_fn): URLs are http(s), health_timeout <= interval. */
int tl_failover_check(const void *obj, char *msg, size_t msglen);

enum tl_failover_state {
	TL_FAILOVER_CLOSED, /**< healthy: takes batches */
	TL_FAILOVER_OPEN,   /**< failed: takes no new batch; probed */
};

struct tl_failover_target_stats {
	int state;         /**< enum tl_failover_state */
	uint64_t failures; /**< failures counted (inserts and checks) */
	uint64_t checks;   /**< health checks run */
	uint64_t checks_failed;
	uint64_t opened;  /**< times the breaker opened */
	uint64_t claimed; /**< records claimed */
};

struct tl_failover;

/**
 * @param n_targets  1 + conf->n_targets (1: no failover; everything still works).
 * @return 0; -EINVAL; -ENOMEM.
 */
int tl_failover_create(
        const struct tl_failover_conf *conf, unsigned n_targets, struct tl_failover **out);
void tl_failover_free(struct tl_failover *fo);

unsigned tl_failover_targets(const struct tl_failover *fo);

/** The policy of table @p t. */
enum tl_failover_policy tl_failover_policy(const struct tl_failover *fo, unsigned t);

/** Does table @p t need claims (FIRST_HEALTHY with more than one target)? */
bool tl_failover_claims(const struct tl_failover *fo, unsigned t);

/** The first target whose breaker is closed (0 if every one is open: the first keeps
 *  trying), and the current preference epoch. */
unsigned tl_failover_preferred(struct tl_failover *fo, uint64_t *epoch);

enum tl_failover_take {
	TL_FAILOVER_TAKE, /**< send it (a new claim: make it durable first) */
	TL_FAILOVER_SKIP, /**< another target's, or not for this target now */
};

/**
 * May @p target send record @p key (table @p t)? @p owner is the durable claim read with
 * the record (-1: none). With claims: the owner's; an unclaimed record is claimed by
 * @p target if it is the preferred one (*@p new_claim set). Without: always TAKE.
 */
enum tl_failover_take tl_failover_take(struct tl_failover *fo, unsigned target, unsigned t,
        uint64_t key, int owner, bool *new_claim);

/**
 * @p target delivered record @p key of table @p t.
 * @return true when the record may be deleted from the spool (FIRST_HEALTHY: now; ALL:
 *         once every target has delivered it).
 */
bool tl_failover_delivered(struct tl_failover *fo, unsigned target, unsigned t, uint64_t key);

/** A new claim was not sent after all (the spool could not make it durable). */
void tl_failover_unclaim(struct tl_failover *fo, unsigned target, uint64_t key);

/** Outcome of an insert or a health check at @p target (@p ok false: a failure). */
void tl_failover_report(struct tl_failover *fo, unsigned target, bool ok, uint64_t now_ns);

/** Is a health check of @p target due at @p now_ns? (Takes the slot: one checker.) */
bool tl_failover_check_due(struct tl_failover *fo, unsigned target, uint64_t now_ns);

/** Record a health check's outcome (also counts it). */
void tl_failover_checked(struct tl_failover *fo, unsigned target, bool ok, uint64_t now_ns);

bool tl_failover_open(const struct tl_failover *fo, unsigned target);

void tl_failover_stats(
        const struct tl_failover *fo, unsigned target, struct tl_failover_target_stats *st);

#endif
