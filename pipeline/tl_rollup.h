/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * Out-of-order events and edge rollups (SPEC section 3; issue 5 item 4).
 *
 * Three single-threaded structures, all memory allocated by their create functions
 * (none afterwards, nothing on the hot path):
 *
 * - struct tl_watermark (one per worker): per stream (a producer id in framed mode, a
 *   source address hash in raw mode; 0 is a valid stream) the highest event time seen.
 *   The stream's watermark is that maximum minus the allowed lateness; an event whose
 *   time is below its stream's watermark is *late*. Late events are stored and flagged,
 *   never dropped. Bounded: when the table is full, the least recently seen stream is
 *   forgotten (counted in evicted) and the newcomer takes its slot.
 *
 * - struct tl_rollup_delta (one per spool buffer being filled): the rollup contribution
 *   of the rows of one batch, as cells keyed by (window start, event type, database),
 *   plus the highest event time per stream among those rows. The worker adds every row
 *   it encodes, then serialises the delta into the buffer's side data, so the delta is
 *   committed in the same transaction as the rows it describes (crash-exact). Bounded
 *   by cell and stream counts fixed at create; tl_rollup_delta_add() reports when it is
 *   full (the caller seals the batch and starts a new delta).
 *
 * - struct tl_rollup (one, in the spool writer's transaction hook): merges committed
 *   deltas into open cells; tracks the emission watermark = the minimum watermark over
 *   the streams active within idle_ns (per-stream max event time minus lateness, as
 *   carried by the deltas; a stream not seen for idle_ns of processing time no longer
 *   holds the watermark back); emits the cells of every window whose end is at or below
 *   it as rows; a delta cell of a window already emitted is emitted as a *correction*
 *   row (the rollup table sums rows, so corrections add up). When the open-cell table
 *   is full, the oldest window's cells are emitted early (as if the watermark had passed
 *   it; their later events then arrive as corrections): memory stays bounded and nothing
 *   is lost. Rows decided but not yet emitted (corrections, cells emitted early) wait in
 *   up to max_cells more cells for the next tl_rollup_emit(). Its state saves to and
 *   loads from a byte image, stored by the hook in the same transaction.
 *
 * Windows: start = floor(time / window_ns) * window_ns (times in ns since the epoch,
 * signed; floor, not truncation, for negative times). Duration histogram: bucket 0 counts
 * durations of 0 ms, bucket i (1..TL_ROLLUP_HIST-1) counts [2^(i-1), 2^i) ms, the last
 * bucket also everything above. Events without a duration count in @c count but in no
 * bucket and not in duration_sum_ms (dur_count says how many had one).
 *
 * Text keys (event type, database) are copied, truncated to TL_ROLLUP_KEY_MAX bytes;
 * they are compared as bytes.
 *
 * All images are little-endian, versioned, end with XXH64 (seed 0) over every byte
 * before it; loads refuse anything malformed with -EBADMSG and leave the structure
 * empty (and still usable).
 */
#ifndef TL_ROLLUP_H
#define TL_ROLLUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tl_opt.h"

#define TL_ROLLUP_HIST 32     /**< duration histogram buckets */
#define TL_ROLLUP_KEY_MAX 63  /**< bytes kept of an event type or database name */

/** The `rollup:` section of a profile (config table in tl_rollup_opts). */
struct tl_rollup_conf {
	bool enabled;          /**< rollups and late flags on (default true) */
	uint64_t window_ns;    /**< rollup window (default 10 s; 1 s..1 day) */
	uint64_t lateness_ns;  /**< allowed lateness (default 30 s; 0..7 days) */
	uint64_t idle_ns;      /**< a stream quiet this long (processing time) stops holding
	                            the emission watermark back (default 60 s) */
	uint64_t max_streams;  /**< watermark table size per worker and in the rollup (4096) */
	uint64_t max_cells;    /**< open cells in the rollup (default 4096) */
	uint64_t delta_cells;  /**< cells per batch delta (default 64) */
	uint64_t delta_streams;/**< streams per batch delta (default 16) */
	char type_column[64];     /**< schema column holding the event type ("event_type") */
	char database_column[64]; /**< schema column holding the database ("database_name") */
	char duration_column[64]; /**< schema column holding the duration in ms ("duration_ms";
	                               "" = none) */
};

/** One emitted rollup row (also what a delta cell holds). */
struct tl_rollup_row {
	int64_t window_ns;     /**< window start, ns since the epoch */
	uint64_t count;        /**< events */
	uint64_t errors;       /**< of which error events */
	uint64_t late;         /**< of which were flagged late */
	uint64_t dur_count;    /**< of which had a duration */
	uint64_t duration_sum_ms;
	uint64_t hist[TL_ROLLUP_HIST];
	bool correction;       /**< emitted after its window's first emission */
	uint8_t type_len, db_len;
	char event_type[TL_ROLLUP_KEY_MAX + 1]; /**< NUL-terminated */
	char database[TL_ROLLUP_KEY_MAX + 1];   /**< NUL-terminated */
};

/** Counters (a snapshot; all monotonic except the gauges marked). */
struct tl_rollup_stats {
	uint64_t streams;        /**< gauge: streams tracked */
	uint64_t cells;          /**< gauge: cells held (open, and rows waiting for emit) */
	uint64_t memory_bytes;   /**< gauge: bytes allocated by create */
	int64_t watermark_ns;    /**< gauge: emission watermark (INT64_MIN: none yet) */
	uint64_t merged_cells;   /**< delta cells merged */
	uint64_t rows_emitted;   /**< rows emitted (corrections included) */
	uint64_t corrections;    /**< of which corrections */
	uint64_t forced;         /**< cells emitted early because the table was full */
	uint64_t evicted;        /**< streams forgotten because the table was full */
};

extern const struct tl_opt tl_rollup_opts[];

/** Section check for `rollup:` (a tl_opt_check_fn): ranges and window/lateness sanity. */
int tl_rollup_check(const void *obj, char *msg, size_t msglen);

/* --- per-worker watermarks --- */

struct tl_watermark;

/** @return 0; -EINVAL (max_streams 0 or > 2^20); -ENOMEM. */
int tl_watermark_create(const struct tl_rollup_conf *conf, struct tl_watermark **out);
void tl_watermark_free(struct tl_watermark *wm);

/**
 * Observe an event of @p stream at @p time_ns (processing time @p now_ns, for the
 * least-recently-seen eviction).
 * @return true if the event is late: @p time_ns < (stream's max before this event) -
 *         lateness. The stream's max then becomes max(max, time_ns).
 */
bool tl_watermark_observe(struct tl_watermark *wm, uint64_t stream, int64_t time_ns,
        uint64_t now_ns);

/** Seed @p stream's max event time (restart: from tl_rollup_stream_max()). */
void tl_watermark_seed(struct tl_watermark *wm, uint64_t stream, int64_t max_ns, uint64_t now_ns);

/** Counters: streams, memory_bytes, evicted (the others stay 0). */
void tl_watermark_stats(const struct tl_watermark *wm, struct tl_rollup_stats *st);

/* --- per-batch deltas --- */

struct tl_rollup_delta;

/** @return 0; -EINVAL (delta_cells or delta_streams 0 or > 65536, window_ns 0); -ENOMEM. */
int tl_rollup_delta_create(const struct tl_rollup_conf *conf, struct tl_rollup_delta **out);
void tl_rollup_delta_free(struct tl_rollup_delta *d);

/** Empty it (start of a new batch). */
void tl_rollup_delta_reset(struct tl_rollup_delta *d);

/** Would one more row of this cell and stream fit without a new cell or stream slot?
 *  (The caller checks before encoding a row, so a batch and its delta always match.) */
bool tl_rollup_delta_fits(const struct tl_rollup_delta *d, uint64_t stream, int64_t time_ns,
        const char *type, size_t type_len, const char *db, size_t db_len);

/**
 * Add one row: its stream, event time, event type and database (bytes, truncated to
 * TL_ROLLUP_KEY_MAX), whether it is an error event, whether it was flagged late, and its
 * duration in ms (@p has_duration false: none).
 * @return 0; -ENOSPC (a new cell or stream slot was needed and none is left: nothing
 *         added).
 */
int tl_rollup_delta_add(struct tl_rollup_delta *d, uint64_t stream, int64_t time_ns,
        const char *type, size_t type_len, const char *db, size_t db_len, bool error,
        bool late, bool has_duration, uint64_t duration_ms);

/** Rows added since the last reset. */
uint64_t tl_rollup_delta_rows(const struct tl_rollup_delta *d);

/**
 * Serialise into @p buf (format 'T''L''R''D' version 1: window_ns, streams (id, max),
 * cells (window, counts, sparse histogram, keys), xxh64).
 * @return bytes written (> 0; an empty delta still serialises); -ENOSPC (@p cap too
 *         small: tl_rollup_delta_max_size() always suffices).
 */
long tl_rollup_delta_save(const struct tl_rollup_delta *d, void *buf, size_t cap);

/** Upper bound of tl_rollup_delta_save()'s size for @p conf. */
size_t tl_rollup_delta_max_size(const struct tl_rollup_conf *conf);

/* --- the rollup (spool writer side) --- */

struct tl_rollup;

/** @return 0; -EINVAL (bad conf); -ENOMEM. */
int tl_rollup_create(const struct tl_rollup_conf *conf, struct tl_rollup **out);
void tl_rollup_free(struct tl_rollup *r);

/**
 * Merge one serialised delta (from tl_rollup_delta_save()) at processing time @p now_ns.
 * Cells of windows already emitted become pending corrections. A delta with another
 * window_ns is refused.
 * @return 0; -EBADMSG (malformed: nothing merged); -ENOSPC (the rows waiting for emission
 *         leave too few free cells for this delta's new keys: nothing merged; call
 *         tl_rollup_emit() or tl_rollup_emit_all(), then merge it again).
 */
int tl_rollup_merge(struct tl_rollup *r, const void *delta, size_t len, uint64_t now_ns);

/**
 * Emit at processing time @p now_ns: pending rows (corrections, cells emitted early; even
 * with no stream active), then the cells of every window that ends at or below the
 * emission watermark, oldest window first, at most @p max rows (the rest stay for the
 * next call). Emitted cells leave the table.
 * @return rows written to @p rows (0..max).
 */
unsigned tl_rollup_emit(struct tl_rollup *r, uint64_t now_ns, struct tl_rollup_row *rows,
        unsigned max);

/** Emit everything still open (shutdown; a test's final count), like tl_rollup_emit(). */
unsigned tl_rollup_emit_all(struct tl_rollup *r, struct tl_rollup_row *rows, unsigned max);

/** @p stream's max event time as merged (false: unknown stream). */
bool tl_rollup_stream_max(const struct tl_rollup *r, uint64_t stream, int64_t *max_ns);

/** Call @p fn for every stream known (restart: seed the workers' watermarks). */
void tl_rollup_streams(const struct tl_rollup *r,
        void (*fn)(void *arg, uint64_t stream, int64_t max_ns), void *arg);

/**
 * Save the whole state (open cells, pending corrections, streams, emitted-up-to mark) to
 * @p buf (format 'T''L''R''S' version 1).
 * @return bytes written; -ENOSPC (see tl_rollup_save_size()).
 */
long tl_rollup_save(const struct tl_rollup *r, void *buf, size_t cap);

/** Bytes tl_rollup_save() needs for the current state. */
size_t tl_rollup_save_size(const struct tl_rollup *r);

/**
 * Replace the state with a saved image (from a rollup with the same window_ns).
 * @return 0; -EBADMSG (malformed, other window_ns); -ENOSPC (more cells or streams than
 *         this rollup's tables hold: nothing loaded; the caller decides).
 */
int tl_rollup_load(struct tl_rollup *r, const void *buf, size_t len);

void tl_rollup_stats(const struct tl_rollup *r, struct tl_rollup_stats *st);

/** Approximate p95 duration in ms from a histogram (upper bound of the bucket holding
 *  the 95th percentile; 0 when the histogram is empty). */
uint64_t tl_rollup_p95_ms(const uint64_t hist[TL_ROLLUP_HIST]);

#endif
