/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * The spool sink: what a worker does with each event the pipeline hands it. Accepted
 * events are encoded into ClickHouse rows for sink_output or error_events, rejected ones
 * into dead_letter rows (reason and raw bytes); a batch is sealed into a spool buffer when
 * it is full (rows or bytes) or when its first row is `batch.delay` old, and handed to
 * the spool's writer, which commits it durably.
 *
 * Runs on the worker: no locks, no allocation, no syscalls per event (the wall clock for
 * ingestion_time is refreshed by the tick, 1 ms resolution). When the spool cannot take
 * a batch (its buffers all wait for commits, or it is full under the backpressure
 * policy), the batch stays pending and new rows for that table are dropped and counted
 * until it can be handed over: raw mode has no one to push back on.
 *
 * Routing: each destination (struct tl_event.route: 0 the default route, else a route id)
 * has its own batches, stamped with the id, so one batch never mixes tenants. The default
 * route's encoders are made at init, another route's when its first event arrives (one
 * allocation per route and worker); beyond TL_SINK_MAX_ROUTES destinations events are
 * dropped and counted (unroutable) rather than sent to another tenant's tables.
 */
#ifndef TL_SINK_H
#define TL_SINK_H

#include <stdbool.h>
#include <stdint.h>

#include "tl_batch.h"
#include "tl_dedup.h"
#include "tl_encode.h"
#include "tl_event.h"
#include "tl_opt.h"
#include "tl_reason.h"
#include "tl_rollup.h"
#include "tl_side.h"
#include "tl_spool.h"

/** The `batch:` section of a profile. */
struct tl_batch_conf {
	uint64_t rows;       /**< a batch is sealed at this many rows */
	uint64_t bytes;      /**< ... or this many uncompressed body bytes */
	uint64_t delay_ns;   /**< ... or when its first row is this old */
	int compression;     /**< enum tl_batch_codec */
	uint64_t gzip_level; /**< GZIP: libdeflate level 1..12 */
};

/** Names of enum tl_batch_codec ("none", "gzip", "lz4"), NULL-terminated. */
extern const char *const tl_batch_codec_names[];

extern const struct tl_opt tl_batch_opts[];

/** Per-worker sink counters (single writer: the worker). */
#define TL_SINK_MAX_ROUTES 64 /**< destinations one worker batches for */
#define TL_SINK_KEY_SCRATCH 512 /**< longest escaped rollup key decoded */

/** Per-worker sink counters (single writer: the worker). */
struct tl_sink_counters {
	uint64_t rows[TL_BATCH_TABLE_MAX];         /**< rows encoded, by table */
	uint64_t batches[TL_BATCH_TABLE_MAX];      /**< batches handed to the spool */
	uint64_t dropped_rows[TL_BATCH_TABLE_MAX]; /**< rows dropped: spool could not take more */
	uint64_t spool_refused;                    /**< hand-overs refused (full or no buffer) */
	uint64_t encode_errors;                    /**< rows the encoder could not write */
	uint64_t unroutable;                       /**< rows for a route beyond TL_SINK_MAX_ROUTES,
	                                                or whose encoders could not be made */
	uint64_t routes;                           /**< destinations with encoders */
};

/**
 * Framed mode: called for every record just before it is handed to the spool, with the
 * record's frontier (every frame up to it has all its rows in this record or earlier
 * ones); the callee fills the buffer's side data and cookie. Called again with @p buf
 * NULL if that record was then refused: undo the last call.
 */
typedef void (*tl_sink_seal_fn)(void *arg, struct tl_spool_buf *buf, uint64_t frontier);

/** One destination's batches, one per table. */
struct tl_sink_lane {
	uint32_t route;                          /**< route id (0: default) */
	uint64_t first_mono[TL_BATCH_EVENT_TABLES]; /**< when the pending batch got a row */
	uint8_t blocked[TL_BATCH_EVENT_TABLES];     /**< a full batch waits for a buffer */
	uint64_t first_frame[TL_BATCH_EVENT_TABLES]; /**< framed mode: the first frame with a row
	                                               in the pending batch, 0: none */
	struct tl_encoder *enc[TL_BATCH_EVENT_TABLES];
};

struct tl_sink {
	struct tl_spool *spool;
	unsigned producer;
	uint64_t delay_ns;
	int64_t wall_ns;                            /**< CLOCK_REALTIME, refreshed per tick */
	struct tl_sink_lane lane[TL_SINK_MAX_ROUTES]; /**< [0]: the default route */
	unsigned n_lanes;
	unsigned last;                              /**< lane of the previous event */
	const struct tl_schema *schema;             /**< for the encoders of new lanes */
	struct tl_encode_conf ec;
	char appliance[256];
	uint64_t buffer_size;
	struct tl_sink_counters cnt;
	uint64_t mono_ns;                           /**< the worker's clock at the last tick */
	/* framed mode (app/tl_framed.h) */
	uint64_t frame;                             /**< frame being encoded, 0: none */
	uint64_t frames_done;                       /**< last frame whose rows are all encoded */
	uint64_t frontier;                          /**< frontier of the last record handed over */
	uint64_t puts;                              /**< records handed over since init */
	uint64_t framed_dropped;                    /**< framed rows lost: no buffer in time */
	bool run_open;                              /**< framed records put with MORE, the run
	                                                 not ended yet */
	const struct tl_encode_meta *meta;          /**< the frame's source, or NULL */
	tl_sink_seal_fn on_seal;
	void *on_seal_arg;
	/* edge rollups (app/tl_edge.h), all NULL when off */
	const struct tl_side *side;
	struct tl_watermark *wm;
	const struct tl_rollup_conf *ru;
	int ru_type, ru_db, ru_dur;                 /**< schema columns feeding them */
	uint64_t late_rows;                         /**< rows flagged late */
	uint8_t key_buf[2][TL_SINK_KEY_SCRATCH];   /**< decoded rollup keys */
	struct tl_rollup_delta *delta[TL_SINK_MAX_ROUTES][TL_BATCH_DEAD_LETTER];
	/* raw-mode dedup (app/tl_rawdedup.h), NULL when off */
	struct tl_dedup_events *dd;
	uint8_t *ids[TL_SINK_MAX_ROUTES][TL_BATCH_DEAD_LETTER]; /**< pending batches' ids */
	uint32_t n_ids[TL_SINK_MAX_ROUTES][TL_BATCH_DEAD_LETTER];
	uint64_t dup_rows;                          /**< raw rows dropped as duplicates */
} __attribute__((aligned(64)));

/**
 * Set up a worker's sink.
 * @param s         the sink (caller's storage, e.g. next to the pipeline worker).
 * @param schema    compiled schema; must outlive the sink.
 * @param conf      batch settings.
 * @param appliance appliance id written into every row.
 * @param spool     the open spool; @p producer is this worker's producer index.
 * @return 0; -EINVAL (the spool's buffer_size is smaller than the largest sealed batch:
 *         the message says what to set); -ENOMEM; the encoder's errors.
 */
int tl_sink_init(struct tl_sink *s, const struct tl_schema *schema,
		const struct tl_batch_conf *conf, const char *appliance, struct tl_spool *spool,
		unsigned producer, uint64_t spool_buffer_size);

/** Free the encoders (pending rows are lost: tick with UINT64_MAX first). NULL-safe. */
void tl_sink_fini(struct tl_sink *s);

/**
 * Turn on late flags and rollup deltas (app/tl_edge.h): a watermark per stream (the
 * frame's producer, or 0 for raw datagrams) flags late rows; every pending batch of
 * sink_output and error_events keeps its rows' rollup delta, written into the buffer's
 * side region TL_SIDE_ROLLUP when it is sealed (a batch is sealed early when its delta
 * is full). @p conf and @p side must outlive the sink. Before the first event.
 * @return 0; -EINVAL; -ENOMEM.
 */
/**
 * Turn on raw-mode deduplication (app/tl_rawdedup.h): a raw event whose event_id this
 * sink accepted within @p window_ns (a table of @p capacity ids) is taken back out of its
 * batch and counted in dup_rows; the ids of every sealed batch go into the buffer's side
 * region TL_SIDE_DEDUP. Framed events are not checked (their frames are). Before the
 * first event. @return 0; -EINVAL; -ENOMEM.
 */
int tl_sink_set_dedup(struct tl_sink *s, const struct tl_side *side, uint32_t capacity,
		uint64_t window_ns);

int tl_sink_set_rollup(struct tl_sink *s, const struct tl_rollup_conf *conf,
		const struct tl_side *side, int type_col, int db_col, int dur_col);

/** Whether some batch waits for a spool buffer (new rows for it are being dropped). */
bool tl_sink_blocked(const struct tl_sink *s);

/** A tl_event_sink_fn; @p arg is a struct tl_sink. */
void tl_sink_event(void *arg, const struct tl_event *ev, enum tl_reason verdict);

/** A tl_sink_tick_fn: seal batches by age; UINT64_MAX seals everything pending. */
void tl_sink_tick(void *arg, uint64_t now_ns);

/**
 * Framed mode on: every record handed over gets a frontier (see tl_sink_seal_fn);
 * batches holding framed rows are never dropped for want of a buffer (the worker waits
 * for one) and are handed over even above the spool's high-water mark
 * (TL_SPOOL_PUT_FORCE): the frame was admitted below it and its ACK is owed.
 * A frame's rows are never committed in part: when a batch with framed rows is sealed,
 * every other batch with framed rows is sealed with it, and they go to the spool as one
 * run (TL_SPOOL_PUT_MORE) that ends only once no frame is half encoded; the spool
 * commits a run in one transaction. Otherwise a crash between two commits would leave
 * part of a frame stored that its resend would store again.
 */
void tl_sink_set_framed(struct tl_sink *s, tl_sink_seal_fn fn, void *arg);

/** The events that follow until tl_sink_frame_end() belong to frame @p frame (> every
 * earlier one), sent by @p meta's producer (pointer kept until the end). */
void tl_sink_frame_begin(struct tl_sink *s, uint64_t frame, const struct tl_encode_meta *meta);

/** The frame's rows are all encoded. */
void tl_sink_frame_end(struct tl_sink *s);

/** The frontier if nothing more were sealed: frames up to it have no row in an open batch. */
uint64_t tl_sink_frontier(const struct tl_sink *s);

/** Seal every pending batch holding a row of a frame <= @p upto. */
void tl_sink_seal_frames(struct tl_sink *s, uint64_t upto);

#endif
