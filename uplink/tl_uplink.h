/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * The uplink thread: committed batches from the spool to ClickHouse, deleted from the
 * spool only once ClickHouse confirmed them.
 *
 * At start (and whenever ClickHouse reports a missing table or column) it applies the
 * DDL the profile implies: create database and tables, add the columns a profile added.
 * Then it reads committed spool records in key order, coalesces consecutive records of
 * one table into one INSERT (ClickHouse wants few, large inserts), decompresses their
 * bodies into the insert, and keeps up to `uplink.max_in_flight` inserts going. Results:
 *  - OK: the records are acked (deleted by the spool's writer);
 *  - RETRY: sent again after exponential backoff with jitter, forever (the spool bounds
 *    what waits); a schema flag re-applies the DDL first;
 *  - AMBIGUOUS (body sent, no answer): it asks ClickHouse how many rows carry the insert's
 *    batch ids; all there: acked; none: sent again;
 *  - REJECT: an insert of several records is retried record by record; a single record
 *    ClickHouse still rejects is quarantined: counted, logged with the server's message,
 *    and acked so it cannot block the queue.
 *
 * One thread; the stats are read with relaxed atomics from any thread.
 */
#ifndef TL_UPLINK_H
#define TL_UPLINK_H

#include <stdint.h>

#include "tl_batch.h"
#include "tl_ch.h"
#include "tl_schema.h"
#include "tl_spool.h"

struct tl_uplink_stats {
	uint64_t inserts_ok;
	uint64_t inserts_retry;
	uint64_t inserts_ambiguous;
	uint64_t inserts_rejected;
	uint64_t records_delivered;
	uint64_t rows_delivered[TL_BATCH_TABLE_MAX];
	uint64_t bytes_sent;
	uint64_t records_quarantined;
	uint64_t rows_quarantined;
	uint64_t ddl_runs;
	uint64_t in_flight;
	uint64_t connected;      /**< 1 once DDL succeeded and inserts flow */
	uint64_t latency_ns[40]; /**< log2 buckets of insert latency */
};

struct tl_uplink;

/**
 * Start the uplink thread.
 * @param conf    `uplink:` options (copied).
 * @param schema  compiled schema; must outlive the uplink.
 * @param spool   the open spool (read and acked from this thread).
 * @param out     out: the uplink (tl_uplink_stop).
 * @return 0; -EINVAL; -ENOMEM; the client's errors (a server that is down is not an
 *         error: the thread keeps trying).
 */
int tl_uplink_start(const struct tl_uplink_conf *conf, const struct tl_schema *schema,
		struct tl_spool *spool, struct tl_uplink **out);

/**
 * Wait until everything committed to the spool so far has been delivered (or
 * quarantined) and nothing is in flight, or @p timeout_ns passed.
 * @return 0; -ETIMEDOUT.
 */
int tl_uplink_drain(struct tl_uplink *u, uint64_t timeout_ns);

/** Stop the thread (inserts in flight are abandoned: their records stay spooled). */
void tl_uplink_stop(struct tl_uplink *u);

/** Copy the counters. NULL-safe. */
void tl_uplink_stats(const struct tl_uplink *u, struct tl_uplink_stats *st);

#endif
