/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * Edge rollups in the appliance (SPEC section 3, issue 5 item 4), exactly once.
 *
 * Workers: each sink flags rows behind their stream's watermark as late
 * (tl_watermark) and keeps, next to every pending batch of sink_output and error_events,
 * the rollup delta of that batch's rows (tl_rollup_delta). Sealing a batch writes its
 * delta into the buffer's side data (app/tl_side.h, TL_SIDE_ROLLUP).
 *
 * Spool writer: in the transaction that stores those batches, this part merges their
 * deltas into the rollup (tl_rollup), emits the rows of every window the emission
 * watermark passed (and corrections for windows emitted before) as a rollups batch
 * stored by the same transaction (tl_spool_txn_put_record), and stores the rollup's
 * state there too. So a row, its share of the rollups and the rollup rows derived from
 * it are committed together or not at all: after kill -9 nothing is counted twice or
 * lost. The rollups batches then travel like any other, through the default route's
 * uplink, exactly once by batch id, into `rollups` (summed by `rollups_summed`).
 *
 * A ticker kicks the spool (tl_spool_kick) a few times per window so windows close in a
 * quiet appliance too; tl_edge_finish() emits every open window at shutdown.
 */
#ifndef TL_EDGE_H
#define TL_EDGE_H

#include <stddef.h>
#include <stdint.h>

#include "tl_rollup.h"
#include "tl_schema.h"
#include "tl_side.h"
#include "tl_spool.h"

struct tl_edge;

/**
 * Create the writer part: the rollup (restored from the spool's state "rollup"), its
 * side region and hook in @p side (install @p side afterwards), the ticker.
 * @param err  one line on failure (a damaged stored state, a column the schema lacks).
 * @return 0; -EINVAL; -ENOMEM; a spool error; TL_E_SCHEMA.
 */
int tl_edge_create(const struct tl_rollup_conf *conf, const struct tl_schema *schema,
        const char *appliance, struct tl_spool *spool, struct tl_side *side, struct tl_edge **out,
        char *err, size_t errlen);

/**
 * The schema columns that feed the rollups (conf's type/database/duration column names).
 * @param dur  -1 when conf has no duration column.
 * @return 0; TL_E_SCHEMA with @p err naming the missing column.
 */
int tl_edge_columns(const struct tl_rollup_conf *conf, const struct tl_schema *schema, int *type,
        int *db, int *dur, char *err, size_t errlen);

/** Seed @p wm (a worker's) with every stream's max event time the rollup knows. */
void tl_edge_seed(struct tl_edge *e, struct tl_watermark *wm, uint64_t now_ns);

/**
 * Shutdown, after the workers' last batches are handed over: emit every window still
 * open and wait until that is committed.
 * @return 0; -ETIMEDOUT; the spool writer's error.
 */
int tl_edge_finish(struct tl_edge *e, uint64_t timeout_ns);

/** Counters of the rollup (thread-safe). */
void tl_edge_stats(struct tl_edge *e, struct tl_rollup_stats *st, uint64_t *batches);

/** Stop the ticker (before the spool closes). NULL-safe. */
void tl_edge_stop(struct tl_edge *e);

/** Stop the ticker and free (after the spool's writer stopped). NULL-safe. */
void tl_edge_free(struct tl_edge *e);

#endif
