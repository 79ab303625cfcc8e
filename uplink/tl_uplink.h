/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * The uplink thread: committed batches from the spool to ClickHouse, deleted from the
 * spool only once ClickHouse confirmed them.
 *
 * At start (and whenever ClickHouse reports a missing table or column) it applies the
 * DDL the profile implies: create database and tables, add the columns a profile added.
 * Then it reads committed spool records in key order, coalesces consecutive records of
 * one table into one INSERT (ClickHouse wants few, large inserts; at most
 * TL_BATCH_MAX_ROWS rows so that the INSERT is one block, written whole or not at all),
 * decompresses their bodies into the insert, and keeps up to `uplink.max_in_flight`
 * inserts going. Results:
 *  - OK: the records are acked (deleted by the spool's writer);
 *  - RETRY: sent again after exponential backoff with jitter, forever (the spool bounds
 *    what waits); a schema flag re-applies the DDL first; a retry flagged
 *    TL_CH_F_MAYBE_DATA is treated as REJECT from its third time on;
 *  - AMBIGUOUS (body sent, no answer): it asks ClickHouse how many rows carry each
 *    record's batch id; records that are all there are acked, the others sent again;
 *  - REJECT: an insert of several records is retried record by record; a single record
 *    ClickHouse still rejects is bisected by rows (the batch's row ends, tl_batch.h).
 *
 * Bisection of a rejected record: halves of its rows are inserted into a probe table
 * (`_tapline_probe_<table>`, `ENGINE = Null` with the table's columns, created on first
 * need: ClickHouse parses what a Null table gets and keeps nothing) until every row the
 * server refuses is isolated; then the accepted rows go to the table in one insert and
 * each refused row becomes one dead_letter row (reason "uplink_rejected: " and the
 * server's message, raw = the row's RowBinary bytes, batch_id = the batch's id) in a
 * second one; the record is acked only when both are confirmed. Both inserts are
 * preceded by a count of the batch id in their table, so an appliance that died half way
 * through a bisection neither loses nor repeats rows. At most 2 x rows - 1 probes per
 * record, one at a time per slot; other slots go on meanwhile. If the probe table cannot
 * be created (no grant), or the table refuses what the probe table took, the halves go
 * to the table itself and accepted halves are delivered as they are found (at most
 * 2 x rows more inserts; a crash in the middle of such a bisection may repeat rows). A
 * dead_letter insert that fails is retried forever, whatever the answer: a row is never
 * dropped silently.
 *
 * After a restart the records that were in the spool before the uplink started may have
 * been delivered by the previous process just before it died (the ack not yet durable):
 * the first insert of such records is preceded by the same count: records found
 * complete in ClickHouse are acked without being sent again, records found in part
 * (a bisection cut short) are bisected again. Counts are synchronous queries
 * (`batch_id IN (...)`, a scan of that column): they happen only after a restart, an
 * ambiguous answer or a bisection.
 *
 * dead_letter rows written here carry producer_id 0 and the appliance id given to
 * tl_uplink_set_appliance_id() (the host name until then).
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
	uint64_t statements_run; /**< runs of the tl_uplink_set_statements() set */
	uint64_t inserts_ok;
	uint64_t inserts_streamed; /**< of inserts_ok: streamed (uplink.stream) */
	uint64_t inserts_retry;
	uint64_t inserts_ambiguous;
	uint64_t inserts_rejected;
	uint64_t records_delivered; /**< records whose every row was delivered */
	uint64_t records_repaired;  /**< found in part: only their missing rows were sent */
	uint64_t rows_delivered[TL_BATCH_TABLE_MAX]; /**< confirmed: sent, or found there */
	uint64_t bytes_sent;
	uint64_t records_quarantined; /**< records with at least one row quarantined */
	uint64_t rows_quarantined;    /**< rows dead-lettered (or of records unreadable) */
	uint64_t records_bisected;    /**< rejected records split by rows */
	uint64_t rows_invalid;        /**< rows found not to be rows of their table before
	                                   sending (dead-lettered; also in rows_quarantined) */
	uint64_t bisect_inserts;      /**< probe inserts of the bisections */
	uint64_t checks;              /**< "already there?" counts asked of ClickHouse */
	uint64_t rows_found;          /**< rows such a count found landed: not sent again */
	uint64_t ddl_runs;
	uint64_t in_flight;
	uint64_t connected;      /**< 1 once DDL succeeded and inserts flow */
	uint64_t claims;         /**< failover: records claimed before their first send */
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

/** Where one route's batches go (tl_uplink_start_route). */
struct tl_uplink_route {
	uint32_t id;          /**< batches whose header route is this (0: the default route) */
	const char *database; /**< its database; NULL: uplink.database (or the URL's) */
	const char *table;    /**< its main table (sink_output's name); NULL: sink_output */
};

/**
 * tl_uplink_start() for the batches of one route only: several uplinks read one spool,
 * each takes the records of its route (by the batch header's route id) and leaves the
 * others to theirs; its DDL, inserts and checks go to the route's database and table.
 * The default route's uplink also quarantines records that are not batches at all.
 * @return as tl_uplink_start(); -EINVAL also for an invalid database or table name.
 */
int tl_uplink_start_route(const struct tl_uplink_conf *conf, const struct tl_schema *schema,
        struct tl_spool *spool, const struct tl_uplink_route *route, struct tl_uplink **out);

/**
 * tl_uplink_start_route() for one target of a failover set (uplink/tl_failover.h):
 * @p conf's url is that target's; the uplink takes only the records @p fo lets it take
 * (policy per table, claims), reports its inserts' outcomes to the target's circuit
 * breaker and, for the default route, runs the target's health checks. @p fo NULL or
 * with one target: the same as tl_uplink_start_route(). @p fo must outlive the uplink.
 * @return as tl_uplink_start_route(); -EINVAL for a target index out of range.
 */
struct tl_failover;
int tl_uplink_start_target(const struct tl_uplink_conf *conf, const struct tl_schema *schema,
        struct tl_spool *spool, const struct tl_uplink_route *route, struct tl_failover *fo,
        unsigned target, struct tl_uplink **out);

/**
 * Set the appliance_id written into the dead_letter rows of rejected rows (default: the
 * host name). Thread-safe; @p id is copied (at most 255 bytes are kept).
 * @return 0; -EINVAL if @p u or @p id is NULL.
 */
int tl_uplink_set_appliance_id(struct tl_uplink *u, const char *id);

/** The database the tables are in (uplink.database, or the URL's ?database=). */
const char *tl_uplink_database(const struct tl_uplink *u);

/**
 * Statements to run after the tables' DDL, in order: now (as soon as the server is
 * reachable), and again whenever the DDL is applied again (a new server). A failure is
 * retried with backoff, all of them from the first. Replaces the previous set (e.g. the
 * error_patterns dimension table after a profile reload). Thread-safe; copied.
 * @return 0; -EINVAL; -ENOMEM.
 */
int tl_uplink_set_statements(struct tl_uplink *u, const char *const *sql, unsigned n);

/**
 * Wait until everything committed to the spool so far has been delivered (or
 * quarantined) and nothing is in flight, or @p timeout_ns passed. Open streamed INSERTs end
 * as soon as they have what is committed, without waiting for more.
 * @return 0; -ETIMEDOUT.
 */
int tl_uplink_drain(struct tl_uplink *u, uint64_t timeout_ns);

/** Stop the thread (inserts in flight are abandoned: their records stay spooled). */
void tl_uplink_stop(struct tl_uplink *u);

/** Copy the counters. NULL-safe (zeroes @p st). */
void tl_uplink_stats(const struct tl_uplink *u, struct tl_uplink_stats *st);

#endif
