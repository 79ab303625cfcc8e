/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * libtapline-producer: send events to a tapline appliance in framed mode (tl_frame.h,
 * docs/protocol.md "Framed mode") and keep every one of them until the appliance says it
 * is durably committed.
 *
 * Installed as `<tapline/tl_producer.h>` next to `<tapline/tl_frame.h>`; pkg-config
 * module `tapline-producer` (its Cflags add `-I${includedir}/tapline`, so
 * `#include <tl_producer.h>` works too).
 *
 * Life of an event:
 *  1. tl_producer_send() copies it (one NDJSON line, without its '\n') into the open
 *     frame. The open frame is sealed when the next event would not fit in
 *     tl_producer_conf.frame_bytes (or TL_FRAME_MAX_EVENTS events), or linger_ms after
 *     its first event (in tl_producer_poll()), or by tl_producer_flush().
 *  2. Sealing gives the frame the next sequence number and encodes it once (zstd, HMAC);
 *     from then on the frame is a fixed byte string: every resend sends the same bytes
 *     with the same sequence, so the appliance deduplicates by (producer, sequence).
 *  3. The sealed frame waits in memory (at most mem_frames of them) or, when memory is
 *     full, the appliance is stalled, or older frames are still on disk, in the spill
 *     directory. At most @c window frames are in flight (sent, not yet answered).
 *  4. ACKs: committed / duplicate resolve the frame; retry-later resends it after the
 *     ACK's retry_ms; rejected drops it for good (counted by reason, on_reject called,
 *     never resent). No ACK within the ACK timeout: the same bytes are sent again with
 *     exponential backoff (ack_timeout_ms doubling up to backoff_max_ms, +-jitter_pct).
 *     An ACK that does not verify (bad or missing HMAC tag when a key is configured),
 *     is malformed, or names another producer is ignored and counted: a forged
 *     "rejected" must not make the producer drop data.
 *  5. Stall: frames are outstanding and nothing was resolved for unreachable_ms (the
 *     appliance is down, unreachable, or keeps saying retry-later). The frames held only
 *     in memory are then written to the spill directory, and new frames go to disk until
 *     the appliance makes progress again. The head of the queue keeps being retried with
 *     backoff, which is how the producer notices that the appliance is back.
 *  6. Replay: frames come back from disk in sequence order, oldest first, before any
 *     frame sealed later (once frames are on disk, newer frames queue behind them on
 *     disk). A spill segment is deleted when all its frames are resolved.
 *
 * Spill directory (one per producer; locked with flock while open):
 *  - `state`: producer id and the highest sequence number reserved. Sequences are
 *    reserved in blocks of TL_PRODUCER_SEQ_BLOCK; the block is written and fsync'ed
 *    (write a temporary file, fsync, rename, fsync the directory) before any number of
 *    it is used, so a restarted producer, even after a crash, continues above every
 *    sequence it ever used (it skips the rest of the block). With producer_id 0 the id
 *    is a random non-zero 64-bit number created with the state file, so the producer
 *    keeps its id across restarts. Losing the directory loses this memory: a producer
 *    with a configured id must then get a new id (the appliance would take its restarted
 *    sequences for duplicates).
 *  - `seg-<first sequence, 20 digits>.tls`: append-only segments of records
 *    `u32 len | u32 crc32c | u64 sealed_ms | frame bytes` (big-endian; the CRC32C
 *    covers len, sealed_ms and the frame), after a 16-byte file header. Records are
 *    fsync'ed at least every spill_sync_ms, when a segment is closed, and at once for
 *    frames spilled from memory on a stall or on close. A torn or corrupt record (crash
 *    during a write, bad CRC, a frame that does not parse) ends its segment: it and what
 *    follows in that segment are counted in spill_torn and skipped; the other segments
 *    are read normally. On open every segment is read back and its frames resent (they
 *    keep their sequences; those the appliance already has come back as duplicates).
 *  - `lock`: the flock file.
 *
 * Durability: an event is safe from a process crash once its frame is on disk (or
 * acknowledged); frames held only in memory (at most mem_frames, plus the open frame)
 * are lost by a crash, and written to disk by tl_producer_close(). tl_producer_send()
 * never drops an event it accepted: when neither memory nor the spill (spill_max_bytes)
 * can take a frame, it refuses the event with -ENOBUFS instead (back-pressure).
 *
 * Threads: single-threaded by design. The library starts no thread and takes no lock;
 * one producer handle must be used by one thread at a time (the caller drives it with
 * tl_producer_poll(), or integrates tl_producer_fd() and tl_producer_next_ms() into its
 * own event loop). Different handles are independent.
 *
 * Memory: tl_producer_open() allocates everything (mem_frames frame buffers of about
 * frame_bytes + 72 bytes each); send and poll do not allocate, except a small
 * descriptor when a spill segment is created.
 */
#ifndef TL_PRODUCER_H
#define TL_PRODUCER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "tl_frame.h"

#define TL_PRODUCER_DEFAULT_PORT 5170
#define TL_PRODUCER_SEQ_BLOCK 1024u /**< sequence numbers reserved per state write */
#define TL_PRODUCER_FRAME_OVERHEAD (TL_FRAME_HDR_LEN + TL_FRAME_TAG_LEN)
/** Largest frame_bytes: the frame must fit in one UDP datagram even uncompressed. */
#define TL_PRODUCER_FRAME_BYTES_MAX (TL_FRAME_MAX - TL_PRODUCER_FRAME_OVERHEAD)

/**
 * Called from tl_producer_poll() for each frame the appliance rejected (its events are
 * dropped: resending the same bytes would be rejected again). @p reason is an
 * enum tl_frame_reason (tl_frame_reason_name()).
 */
typedef void (*tl_producer_reject_fn)(
        void *arg, uint64_t sequence, uint32_t count, enum tl_frame_reason reason);

/**
 * Producer configuration. Start from tl_producer_conf_init(); a field left 0 takes its
 * default (given in brackets), except where 0 has a meaning of its own.
 */
struct tl_producer_conf {
	const char *host;             /**< numeric IPv4 or IPv6 address of the appliance (no DNS) */
	uint16_t port;                /**< UDP port [TL_PRODUCER_DEFAULT_PORT] */
	const struct sockaddr *addr;  /**< or the address itself (AF_INET or AF_INET6, e.g.
	                                   from getaddrinfo); when set, host and port are
	                                   ignored */
	socklen_t addrlen;            /**< bytes at addr */
	uint64_t producer_id;         /**< [0: random, kept in the spill directory's state] */
	const uint8_t *key;           /**< HMAC-SHA256 key or NULL; copied by open */
	size_t key_len;               /**< 1..TL_FRAME_KEY_MAX when key is set */
	uint32_t key_id;              /**< the key's id in the appliance's keys file */
	int zstd_level;               /**< 0: no compression; 1..22 (a body is only sent
	                                   compressed when that makes it smaller) */
	uint32_t frame_bytes;         /**< events per frame, by NDJSON bytes [16384];
	                                   at most TL_PRODUCER_FRAME_BYTES_MAX; also the
	                                   largest event + 1 */
	uint32_t linger_ms;           /**< seal a non-empty open frame this long after its first
	                                   event [20] */
	uint32_t ack_timeout_ms;      /**< first ACK timeout, doubled per resend [500] */
	uint32_t backoff_max_ms;      /**< largest ACK timeout [10000] */
	uint32_t jitter_pct;          /**< +- this percentage of randomness on timeouts, 0..100
	                                   (0: none; tl_producer_conf_init() sets 20) */
	uint32_t window;              /**< frames in flight at once [32, or mem_frames if
	                                   smaller]; at most mem_frames */
	uint32_t mem_frames;          /**< sealed frames held in memory [128] */
	uint32_t unreachable_ms;      /**< no progress this long with frames outstanding:
	                                   stall, spill to disk [5000] */
	const char *spill_dir;        /**< required; created (mode 0700) if missing */
	uint64_t spill_max_bytes;     /**< bytes of segment files at most [1 GiB] */
	uint32_t spill_segment_bytes; /**< a segment is closed past this size [4 MiB] */
	uint32_t spill_sync_ms;       /**< fsync appended records at least this often [100] */
	tl_producer_reject_fn on_reject; /**< optional */
	void *cb_arg;                    /**< passed to on_reject */
};

/** Counters and gauges (tl_producer_stats()). */
struct tl_producer_stats {
	uint64_t producer_id;
	uint64_t next_sequence;   /**< the sequence the next sealed frame gets */
	uint64_t events_queued;   /**< events taken by tl_producer_send() (total) */
	uint64_t events_pending;  /**< in the open frame and in unresolved frames */
	uint32_t events_open;     /**< in the open frame (not sealed yet) */
	uint64_t events_acked;    /**< in frames answered committed or duplicate */
	uint64_t events_rejected; /**< in frames answered rejected (dropped) */
	uint64_t frames_sealed;
	uint64_t frames_sent;      /**< first transmissions (including replays after open) */
	uint64_t frames_resent;    /**< transmissions after an ACK timeout or retry-later */
	uint64_t frames_acked;     /**< answered committed */
	uint64_t frames_duplicate; /**< answered duplicate (committed before) */
	uint64_t frames_rejected;  /**< answered rejected: the sum of rejected[] */
	uint64_t rejected[TL_FRAME_REASON_MAX]; /**< by enum tl_frame_reason */
	uint64_t retry_later;                   /**< retry-later ACKs received */
	uint64_t acks_invalid;                  /**< datagrams that are not a well-formed ACK */
	uint64_t acks_unauthenticated;          /**< ACKs whose tag is missing or wrong (ignored) */
	uint64_t acks_foreign;                  /**< ACKs for another producer id (ignored) */
	uint64_t acks_unknown;                  /**< ACKs for no pending frame (late repeats) */
	uint64_t send_errors;       /**< send() failures other than a full socket buffer */
	uint64_t stalls;            /**< times the producer entered the stalled state */
	bool stalled;               /**< no progress for unreachable_ms: spilling */
	uint32_t pending_mem;       /**< unresolved sealed frames held in memory */
	uint32_t inflight;          /**< of those, sent and awaiting an answer */
	uint32_t pending_mem_only;  /**< of pending_mem, no copy on disk (lost in a crash) */
	uint64_t pending_disk;      /**< unresolved frames only on disk (not yet read back) */
	uint64_t oldest_pending_ms; /**< age of the oldest unresolved frame (0: none) */
	uint64_t frames_spilled;    /**< records written to the spill */
	uint64_t frames_replayed;   /**< records read back from the spill */
	uint64_t spill_torn;        /**< records lost to torn or corrupt spill tails
	                                 (a torn tail found on open counts 1) */
	uint64_t spill_errors;      /**< spill I/O errors */
	uint64_t spill_bytes;       /**< bytes in segment files now */
	uint32_t spill_segments;    /**< segment files now */
};

/** Opaque producer handle. */
struct tl_producer;

/** Fill @p conf with the defaults (host and spill_dir stay NULL). */
void tl_producer_conf_init(struct tl_producer_conf *conf);

/**
 * Open a producer: lock and read the spill directory (frames found there are queued for
 * replay, ahead of anything sent later), reserve sequence numbers, create the UDP socket
 * (non-blocking, connected to the appliance so that only its datagrams arrive).
 * @return 0 and *out; -EINVAL (a bad field: no host (nor addr) or no spill_dir, host not
 *         a numeric address, addr not AF_INET/AF_INET6 or addrlen too short, key_len, frame_bytes,
 * jitter_pct, window > mem_frames, ...); -EBUSY (another producer holds the spill directory);
 * -EEXIST (the spill directory belongs to another producer id); -EBADMSG (its state file is
 * corrupt: the last sequence used is unknown, so move the directory aside); -ENOMEM; another -errno
 * from the file system or socket().
 */
int tl_producer_open(const struct tl_producer_conf *conf, struct tl_producer **out);

/**
 * Queue one event: @p len bytes of NDJSON without the final '\n' (the library adds it).
 * The bytes are copied. May seal the open frame (and write it to the spill).
 * Does not wait and does not read ACKs: call tl_producer_poll() regularly.
 * @return 0 (taken: the producer now owns delivering it); -EINVAL (NULL, len 0, or a
 *         '\n' inside the event); -EMSGSIZE (len + 1 > frame_bytes); -ENOBUFS (memory and
 *         spill full: poll, then try again; the event was not taken); -errno when the
 *         spill or the state file cannot be written (the event was not taken).
 */
int tl_producer_send(struct tl_producer *p, const void *event, size_t len);

/**
 * Drive the producer: read ACKs, seal a lingering frame, send and resend, detect a
 * stall and spill, read frames back from the spill, fsync the spill. Waits at most
 * @p timeout_ms (0: do not wait; negative: until an ACK arrives or a timer is due) for
 * an ACK, and returns after one round.
 * @return frames resolved (answered committed, duplicate or rejected) in this call, >= 0;
 *         or a -errno from the spill (counted in spill_errors; the state stays
 *         consistent and the operation is retried on the next call).
 */
int tl_producer_poll(struct tl_producer *p, int timeout_ms);

/**
 * Seal the open frame and poll until no event is pending (all answered), or for at
 * most @p timeout_ms (negative: no limit).
 * @return 0 (nothing pending); -ETIMEDOUT (events still pending: they stay queued);
 *         a -errno from tl_producer_poll().
 */
int tl_producer_flush(struct tl_producer *p, int timeout_ms);

/** Copy the counters. @p p and @p st must not be NULL. */
void tl_producer_stats(const struct tl_producer *p, struct tl_producer_stats *st);

/** @return the UDP socket, for the caller's own poll/epoll loop (POLLIN: call poll). */
int tl_producer_fd(const struct tl_producer *p);

/**
 * @return milliseconds until the next timer is due (0: now; -1: none), for the caller's
 *         own event loop.
 */
int tl_producer_next_ms(const struct tl_producer *p);

/**
 * Close: flush for at most @p timeout_ms (0: do not wait; negative: no limit), then write every
 * unresolved frame that is only in memory (and the open frame) to the spill directory and fsync it,
 * so that the next tl_producer_open() on that directory resends them. Frees @p p in all
 * cases. NULL-safe.
 * @return 0 (nothing pending, or all of it on disk); -ENOSPC (spill_max_bytes reached:
 *         some frames could not be saved and are lost); another -errno from writing
 *         the spill (frames that could not be written are lost).
 */
int tl_producer_close(struct tl_producer *p, int timeout_ms);

#endif
