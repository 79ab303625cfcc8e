/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * The appliance side of the framed protocol (docs/protocol.md "Framed mode"): frames are
 * parsed, verified, deduplicated, their events go through the ordinary pipeline into the
 * worker's sink, and an ACK goes back through the worker's TX queue once every row of the
 * frame is durably in the spool.
 *
 * Commit tracking. Frames are numbered per worker (1, 2, ...). Each open batch of the
 * sink remembers the first frame that put a row in it; when a batch is sealed, the
 * worker's *frontier* is the highest frame number none of whose rows is still in an open
 * batch. Because the spool commits one producer's records in order, every frame up to a
 * record's frontier is durable once that record commits. So a sealed record carries its
 * frontier in its cookie and, as side data, the (producer, sequence) of the frames it
 * completes. The spool's transaction hook marks those frames committed in the shared
 * dedup windows and stores the windows in the same LMDB transaction as the records: a
 * restart never forgets a committed frame nor remembers one that was lost. The commit
 * callback passes the frontier back to the worker through a single-producer ring; the
 * worker then sends the ACKs. Frames older than `framed.ack_delay` make the worker seal
 * the batches that hold them, so an ACK waits for at most about ack_delay plus a commit.
 *
 * Statuses (enum tl_ack_status): committed; duplicate (a resend of a committed frame, or
 * one below the window); retry-later (the spool is over its high-water mark or has
 * failed, the worker's table of frames in flight is full, the dedup table is full);
 * rejected with the tl_frame_reason (malformed, unknown key, bad tag, body that does not
 * decompress). A resend of a frame still being committed gets no answer: its ACK follows
 * the commit.
 *
 * Threads: one struct tl_framed per appliance (keys, dedup windows, lock); one struct
 * tl_framed_worker per pipeline worker, used only by that worker, except for the commit
 * ring which the spool's writer fills.
 */
#ifndef TL_FRAMED_H
#define TL_FRAMED_H

#include <stdbool.h>
#include <stdint.h>

#include "tl_dedup.h"
#include "tl_frame.h"
#include "tl_opt.h"
#include "tl_pipeline.h"
#include "tl_reply.h"
#include "tl_side.h"
#include "tl_sink.h"
#include "tl_spool.h"

#define TL_FRAMED_PATH_LEN 256

/** The `framed:` section of a profile. */
struct tl_framed_conf {
	bool enabled;                          /**< take frames (else they are not JSON) */
	char keys_file[TL_FRAMED_PATH_LEN];    /**< HMAC keys, "" = none */
	bool allow_unkeyed;                    /**< producers without a key may send */
	uint64_t window;                       /**< anti-replay window W (sequences) */
	uint64_t max_producers;                /**< producers the dedup table holds */
	uint64_t in_flight;                    /**< frames awaiting their commit, per worker */
	uint64_t ack_delay_ns;                 /**< seal batches holding a frame this old */
	uint64_t retry_ms;                     /**< hint in retry-later ACKs */
	uint64_t mtu;                          /**< largest IP packet an ACK may use */
};

extern const struct tl_opt tl_framed_opts[];

/** Section check for `framed:` (a tl_opt_check_fn): window a power of two. */
int tl_framed_check(const void *obj, char *msg, size_t msglen);

/** Counters of one worker (single writer: the worker). */
struct tl_framed_counters {
	uint64_t frames;                               /**< framed datagrams seen */
	uint64_t frames_accepted;                      /**< new frames processed */
	uint64_t frame_events;                         /**< events of those frames */
	uint64_t rejected[TL_FRAME_REASON_MAX];        /**< by tl_frame_reason */
	uint64_t acks[TL_ACK_STATUS_MAX];              /**< ACKs sent, by status */
	uint64_t ack_send_failed;                      /**< no TX (queue full, no driver) */
	uint64_t resends_pending;                      /**< resends of frames in flight */
	uint64_t retry_spool_full;                     /**< retry-later: spool over high water */
	uint64_t retry_in_flight_full;                 /**< retry-later: in_flight table full */
	uint64_t retry_dedup_full;                     /**< retry-later: dedup table full */
	uint64_t retry_failed;                         /**< retry-later: the commit failed */
	uint64_t ack_latency_ns[40];                   /**< arrival -> ACK, log2 buckets */
};

struct tl_framed;
struct tl_framed_worker;

/**
 * Create the appliance-wide state: load the keys file, create the dedup windows and
 * restore them from the spool, add its part to the spool's side data (@p side, installed
 * by the caller with tl_side_install() before any worker takes a spool buffer).
 * @param spool_buffers  the spool's buffers per producer (records in flight).
 * @param n_workers  workers that will call tl_framed_worker_create().
 * @param err        a message on failure (file:line of a bad keys file).
 * @return 0; -EINVAL; -ENOMEM; a keys-file or spool error.
 */
int tl_framed_create(const struct tl_framed_conf *conf, struct tl_spool *spool,
		struct tl_side *side, uint64_t spool_buffers, unsigned n_workers,
		struct tl_framed **out, char *err, size_t errlen);

/** Free (after the workers and the spool's writer have stopped). NULL-safe. */
void tl_framed_free(struct tl_framed *f);

/**
 * Per-worker state for pipeline worker @p id, whose sink is @p sink (spool producer
 * @p id). Installs itself as @p w's framed handler.
 */
int tl_framed_worker_create(struct tl_framed *f, unsigned id, struct tl_pipeline_worker *w,
		struct tl_sink *sink, struct tl_framed_worker **out);

/** NULL-safe. */
void tl_framed_worker_free(struct tl_framed_worker *fw);

/**
 * Housekeeping from the worker's tick (after the sink's): seal batches that hold frames
 * older than ack_delay, take the commits the writer reported, send the ACKs.
 * UINT64_MAX: the worker stops; ACK what has committed (the sink sealed everything).
 */
void tl_framed_worker_tick(struct tl_framed_worker *fw, uint64_t now_ns);

/** The spool's commit callback (a tl_spool_commit_fn; @p arg is the struct tl_framed). */
void tl_framed_on_commit(void *arg, unsigned producer, uint64_t user, uint64_t key, int status);

/** This worker's counters. */
const struct tl_framed_counters *tl_framed_worker_counters(const struct tl_framed_worker *fw);

/** Frames in flight on this worker (processed, not yet ACKed). */
uint64_t tl_framed_worker_in_flight(const struct tl_framed_worker *fw);

/** Dedup statistics (takes the lock). */
void tl_framed_dedup_stats(struct tl_framed *f, struct tl_dedup_frames_stats *st);

#endif
