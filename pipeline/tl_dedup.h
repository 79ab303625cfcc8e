/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * Deduplication state (SPEC section 3, "Deduplication").
 *
 * Two independent structures, one instance of each per worker (single-threaded, no locks,
 * all memory allocated by the create functions, none afterwards):
 *
 * - struct tl_dedup_frames (framed mode): per producer a sliding anti-replay window of
 *   W sequences ending at the highest sequence seen. Each sequence of the window is in
 *   one of three states: unseen, pending (being committed, no ACK sent yet) or
 *   committed. The worker calls tl_dedup_frame_check() when a frame arrives and
 *   tl_dedup_frame_done() when the spool has committed (or refused) it.
 *
 * - struct tl_dedup_events (raw mode): the 128-bit event ids (struct tl_event's
 *   event_id, 16 bytes) seen within a time window, in an insertion ring of N entries
 *   with a hash index. The full 128 bits are compared: no false positives.
 *
 * Both save to and load from a byte buffer so the state can be stored with the spool
 * and survive a restart. All integers are little-endian. XXH64 is seed 0 over every
 * byte before it.
 *
 * Frames format (version 1):
 *
 *     offset  size  field
 *          0     4  magic        'T' 'L' 'D' 'F'
 *          4     4  version      1
 *          8     4  window       W of the saver (a power of two)
 *         12     4  count        producer records that follow
 *         16     …  records      count times, most recently active first:
 *                                  8  producer_id   non-zero, unique in the buffer
 *                                  8  high          highest sequence seen, non-zero
 *                                W/8  committed     bit (seq % W) set if seq committed, for
 *                                                   seq in [max(1, high - W + 1), high]
 *                                                   (bits for seq < 1 must be 0)
 *        end-8     8  xxh64
 *
 * Pending frames are saved as not committed: they were never acknowledged, so the
 * producer's resend must be processed after a restart. A loader with another W keeps
 * the bits of the sequences both windows cover; a loader with fewer producer slots keeps
 * the most recently active producers (the rest are counted in load_dropped).
 *
 * Events format (version 1):
 *
 *     offset  size  field
 *          0     4  magic        'T' 'L' 'D' 'E'
 *          4     4  version      1
 *          8     8  window_ns    of the saver (informational)
 *         16     4  count        entries that follow
 *         20     4  reserved     0
 *         24     …  entries      count times, oldest insertion first:
 *                                  16  event_id   unique in the buffer
 *                                   8  time_ns    when it was inserted
 *        end-8     8  xxh64
 *
 * A loader with a smaller capacity keeps the newest entries (the rest: load_dropped).
 * Entries are kept even if older than the window (the next tl_dedup_event_seen() expires
 * them).
 *
 * Loads refuse anything malformed (bad magic, version, window, length, checksum, zero
 * producer id or high, bits for sequences below 1, a duplicate producer or event id
 * among the records kept) with -EBADMSG and leave the structure empty.
 */
#ifndef TL_DEDUP_H
#define TL_DEDUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TL_DEDUP_EVENT_ID_LEN 16
#define TL_DEDUP_WINDOW_MIN 64u           /**< smallest framed window W */
#define TL_DEDUP_WINDOW_MAX (1u << 20)    /**< largest framed window W */
#define TL_DEDUP_PRODUCERS_MAX (1u << 20) /**< largest producer table */
#define TL_DEDUP_EVENTS_MIN 16u           /**< smallest raw capacity N */
#define TL_DEDUP_EVENTS_MAX (1u << 26)    /**< largest raw capacity N */

/** Verdict of tl_dedup_frame_check(). */
enum tl_dedup_verdict {
	TL_DEDUP_NEW = 0,   /**< first sight: process it; now pending until tl_dedup_frame_done() */
	TL_DEDUP_PENDING,   /**< a resend of a frame still being committed: drop it, no ACK yet */
	TL_DEDUP_COMMITTED, /**< committed before: ACK duplicate */
	TL_DEDUP_OLD,       /**< below the window: ACK duplicate (counted apart) */
	TL_DEDUP_FULL,      /**< no room (producer table full of producers with pending frames,
	                         or accepting it would slide a pending frame out of the
	                         window): ACK retry-later */
	TL_DEDUP_INVALID,   /**< producer id 0 or sequence 0 (tl_frame_parse() rejects these) */
	TL_DEDUP_VERDICT_MAX
};

/** @return "new", "pending", "committed", "old", "full", "invalid" or "?"; static. */
const char *tl_dedup_verdict_name(enum tl_dedup_verdict v);

/* ---- framed mode ---- */

struct tl_dedup_frames;

struct tl_dedup_frames_stats {
	uint64_t producers;         /**< producers in the table now */
	uint64_t max_producers;     /**< the bound */
	uint64_t window;            /**< W */
	uint64_t frames_new;        /**< TL_DEDUP_NEW verdicts */
	uint64_t frames_pending;    /**< TL_DEDUP_PENDING verdicts (resends while pending) */
	uint64_t frames_committed;  /**< TL_DEDUP_COMMITTED verdicts (duplicates) */
	uint64_t frames_old;        /**< TL_DEDUP_OLD verdicts */
	uint64_t frames_full;       /**< TL_DEDUP_FULL verdicts: producer table full */
	uint64_t frames_stalled;    /**< TL_DEDUP_FULL verdicts: a pending frame held the window */
	uint64_t frames_invalid;    /**< TL_DEDUP_INVALID verdicts */
	uint64_t producers_evicted; /**< idle producers evicted to make room */
	uint64_t load_dropped;      /**< producers of a loaded buffer that did not fit */
	uint64_t memory_bytes;      /**< bytes allocated by tl_dedup_frames_create() */
};

/**
 * Create a framed-mode table.
 * @param max_producers  1..TL_DEDUP_PRODUCERS_MAX producers tracked at once.
 * @param window         W: a power of two in [TL_DEDUP_WINDOW_MIN, TL_DEDUP_WINDOW_MAX].
 * @return 0 with *out set (caller owns; tl_dedup_frames_free); -EINVAL; -ENOMEM.
 */
int tl_dedup_frames_create(uint32_t max_producers, uint32_t window, struct tl_dedup_frames **out);

/** NULL-safe. */
void tl_dedup_frames_free(struct tl_dedup_frames *d);

/**
 * Classify an arriving frame and, when TL_DEDUP_NEW, mark it pending. A producer not in
 * the table is added; when the table is full, the least recently active producer that
 * has no pending frame is evicted (its history is forgotten), else TL_DEDUP_FULL. A new
 * sequence above the highest one slides the window forward, unless that would push a
 * pending frame out of it (TL_DEDUP_FULL: the producer retries once it is committed).
 * Arrival order within the window does not matter.
 */
enum tl_dedup_verdict tl_dedup_frame_check(
        struct tl_dedup_frames *d, uint64_t producer_id, uint64_t sequence);

/**
 * A pending frame is finished: @p committed true moves it to committed (later resends are
 * duplicates); false (the spool refused it) forgets it so a resend is processed again.
 * @return 0; -ENOENT if (@p producer_id, @p sequence) is not pending.
 */
int tl_dedup_frame_done(
        struct tl_dedup_frames *d, uint64_t producer_id, uint64_t sequence, bool committed);

/** Forget everything (the statistics are kept). */
void tl_dedup_frames_reset(struct tl_dedup_frames *d);

/** @return bytes tl_dedup_frames_save() needs for the current state. */
size_t tl_dedup_frames_save_size(const struct tl_dedup_frames *d);

/**
 * Serialise the state (format in the file comment) into @p buf.
 * @return 0 and *len; -E2BIG if @p cap < tl_dedup_frames_save_size().
 */
int tl_dedup_frames_save(struct tl_dedup_frames *d, uint8_t *buf, size_t cap, size_t *len);

/**
 * Replace the state by a saved one. Safe on any input.
 * @return 0; -EBADMSG (malformed: the table is left empty).
 */
int tl_dedup_frames_load(struct tl_dedup_frames *d, const uint8_t *buf, size_t len);

/** Fill @p st. */
void tl_dedup_frames_stats(const struct tl_dedup_frames *d, struct tl_dedup_frames_stats *st);

/* ---- raw mode ---- */

struct tl_dedup_events;

struct tl_dedup_events_stats {
	uint64_t entries;       /**< ids held now */
	uint64_t capacity;      /**< N */
	uint64_t window_ns;     /**< the time window */
	uint64_t inserted;      /**< new ids */
	uint64_t duplicates;    /**< ids seen again within the window */
	uint64_t expired;       /**< ids dropped because older than the window */
	uint64_t evicted;       /**< ids dropped because the ring was full */
	uint64_t evicted_early; /**< of those, younger than the window: N too small for the
	                             rate, duplicates may pass */
	uint64_t load_dropped;  /**< entries of a loaded buffer that did not fit */
	uint64_t memory_bytes;  /**< bytes allocated by tl_dedup_events_create() */
};

/**
 * Create a raw-mode table.
 * @param capacity   N: a power of two in [TL_DEDUP_EVENTS_MIN, TL_DEDUP_EVENTS_MAX].
 * @param window_ns  how long an id is remembered; > 0.
 * @return 0 with *out set (caller owns; tl_dedup_events_free); -EINVAL; -ENOMEM.
 */
int tl_dedup_events_create(uint32_t capacity, uint64_t window_ns, struct tl_dedup_events **out);

/** NULL-safe. */
void tl_dedup_events_free(struct tl_dedup_events *d);

/**
 * Has this event id been seen within the window? If not, remember it (time @p now_ns).
 * @p now_ns must be a clock that survives restarts when the state is persisted
 * (CLOCK_REALTIME in ns); an entry whose time is after @p now_ns (the clock stepped back)
 * counts as within the window. A duplicate does not refresh the entry's time: the window
 * runs from the first sighting.
 * @return true: a duplicate (drop it, count it); false: new (now remembered).
 */
bool tl_dedup_event_seen(
        struct tl_dedup_events *d, const uint8_t id[TL_DEDUP_EVENT_ID_LEN], uint64_t now_ns);

/** Forget everything (the statistics are kept). */
void tl_dedup_events_reset(struct tl_dedup_events *d);

/** @return bytes tl_dedup_events_save() needs for the current state. */
size_t tl_dedup_events_save_size(const struct tl_dedup_events *d);

/**
 * Serialise the state (format in the file comment) into @p buf.
 * @return 0 and *len; -E2BIG if @p cap < tl_dedup_events_save_size().
 */
int tl_dedup_events_save(const struct tl_dedup_events *d, uint8_t *buf, size_t cap, size_t *len);

/**
 * Replace the state by a saved one. Safe on any input.
 * @return 0; -EBADMSG (malformed: the table is left empty).
 */
int tl_dedup_events_load(struct tl_dedup_events *d, const uint8_t *buf, size_t len);

/** Fill @p st. */
void tl_dedup_events_stats(const struct tl_dedup_events *d, struct tl_dedup_events_stats *st);

#endif
