/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * Raw-mode deduplication that survives a restart (SPEC section 3, issue 5 item 3).
 *
 * Raw datagrams carry no sequence numbers, so a producer that sends an event twice
 * (at-least-once, no framing) is caught by the event's identity: the 128-bit event_id
 * of its columns (query id, event type, time, payload, ...). Each worker's sink keeps
 * the ids it accepted within `dedup.window` in a bounded table (pipeline/tl_dedup.h,
 * `dedup.capacity` ids) and takes a row back out of its batch when its id is there.
 *
 * Persistence: the ids of a batch travel in its buffer's side region TL_SIDE_DEDUP; in
 * the transaction that stores the batches, this part stores them as one small state
 * "dedup.e.<seq>" (time, ids) and deletes the pieces older than the window (or beyond
 * the capacity of all workers together). So the ids of committed rows, and only those,
 * are remembered across kill -9; at start every worker's table is refilled from them.
 * Framed mode has its own (producer, sequence) windows and does not use this.
 */
#ifndef TL_RAWDEDUP_H
#define TL_RAWDEDUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tl_dedup.h"
#include "tl_opt.h"
#include "tl_side.h"
#include "tl_spool.h"

/** The `dedup:` section. */
struct tl_rawdedup_conf {
	bool enabled;       /**< raw-mode deduplication on (default true) */
	uint64_t window_ns; /**< how long an event id is remembered (default 10 min) */
	uint64_t capacity;  /**< ids per worker, a power of two (default 262144) */
};

extern const struct tl_opt tl_rawdedup_opts[];

/** Section check: capacity a power of two in range. */
int tl_rawdedup_check(const void *obj, char *msg, size_t msglen);

struct tl_rawdedup;

/**
 * The writer part: its region (@p batch_rows ids) and hook in @p side; reads what the
 * spool holds of earlier runs.
 * @return 0; -EINVAL; -ENOMEM; a spool error (with @p err).
 */
int tl_rawdedup_create(const struct tl_rawdedup_conf *conf, unsigned n_workers, uint32_t batch_rows,
        struct tl_spool *spool, struct tl_side *side, struct tl_rawdedup **out, char *err,
        size_t errlen);

/** Fill a worker's table with the ids the spool remembers. @return ids loaded. */
uint64_t tl_rawdedup_restore(struct tl_rawdedup *r, struct tl_dedup_events *d);

/** Every worker is restored: free the copy of the stored ids read at create. */
void tl_rawdedup_restored(struct tl_rawdedup *r);

/** Ids held in the spool now (pieces not yet expired). */
uint64_t tl_rawdedup_stored(struct tl_rawdedup *r);

/** NULL-safe; after the spool's writer stopped. */
void tl_rawdedup_free(struct tl_rawdedup *r);

#endif
