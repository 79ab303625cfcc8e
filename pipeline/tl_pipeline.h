/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * The per-worker pipeline: frame -> L2-L4 decode -> reassembly -> UDP -> NDJSON split ->
 * JSON extraction -> verdict, handed to a sink.
 *
 * Drivers (DPDK, AF_XDP, socket) own the packets and call tl_pipeline_rx() for each
 * frame (or tl_pipeline_datagram() for a UDP payload the kernel already decoded). A
 * worker is single-threaded: one per RX queue, nothing shared but the read-only schema.
 * The sink is called synchronously for every event, accepted or rejected; the event's
 * pointers are valid only during the call.
 */
#ifndef TL_PIPELINE_H
#define TL_PIPELINE_H

#include <stdbool.h>
#include <stdint.h>

#include "tl_counters.h"
#include "tl_event.h"
#include "tl_live.h"
#include "tl_opt.h"
#include "tl_reasm.h"
#include "tl_schema.h"

/** The `pipeline:` section of a profile. */
struct tl_pipeline_conf {
	struct tl_limits limits;     /**< `pipeline.limits` */
	struct tl_reasm_conf reasm;  /**< `pipeline.reassembly` */
};

extern const struct tl_opt tl_pipeline_opts[];

/**
 * Receives every event the pipeline extracted.
 * @param arg     the sink argument given at init.
 * @param ev      the event; valid only during the call. On rejection only ev->raw and
 *                ev->raw_len are meaningful.
 * @param verdict TL_REASON_OK, or the EV_* reason it was rejected for.
 */
typedef void (*tl_event_sink_fn)(void *arg, const struct tl_event *ev, enum tl_reason verdict);

/**
 * Housekeeping for the sink, called from the worker's loop now and then (about every
 * `capture.dpdk.tick`, busy or idle) with the worker's monotonic clock, so the sink can
 * flush batches by age. @p now_ns == UINT64_MAX: the worker is stopping, flush all.
 */
typedef void (*tl_sink_tick_fn)(void *arg, uint64_t now_ns);

struct tl_peer;
struct tl_pipeline_worker;

/**
 * Sends one Ethernet frame out of the worker's own TX queue; set by the driver that runs
 * the worker (NULL: this driver cannot send). The frame is copied before the call
 * returns; sending may be deferred to the end of the current burst.
 * @return 0; -ENOBUFS (no buffer or the queue is full: dropped and counted by the
 *         driver); -EMSGSIZE (larger than the driver's transmit buffers); -ENOTSUP.
 */
typedef int (*tl_tx_fn)(void *arg, const uint8_t *frame, uint32_t len);

/**
 * Takes a telemetry datagram whose payload is a framed-protocol frame (tl_frame.h), in
 * place of the NDJSON path. @p peer says where it came from (for the reply); both
 * pointers are valid only during the call. The handler feeds the frame's events back
 * with tl_pipeline_events().
 */
typedef void (*tl_framed_fn)(void *arg, struct tl_pipeline_worker *w, const struct tl_peer *peer,
		const uint8_t *payload, uint32_t len);

struct tl_pipeline_worker {
	struct tl_counters cnt;          /**< single writer: this worker */
	const struct tl_schema *schema;
	struct tl_reasm *reasm;
	tl_event_sink_fn sink;
	tl_sink_tick_fn tick;
	void *sink_arg;
	uint64_t port_map[65536 / 64];   /**< telemetry UDP destination ports */
	struct tl_live *live;            /**< classification generations, or NULL: none */
	unsigned live_id;                /**< this worker's id in @c live */
	tl_framed_fn framed;             /**< framed-protocol handler, or NULL (all NDJSON) */
	void *framed_arg;
	tl_tx_fn tx;                     /**< the driver's sender, or NULL */
	void *tx_arg;
	bool capture_only;               /**< benchmark: count frames, process none */
	const uint8_t *frame;            /**< the Ethernet frame being processed (for peers) */
	uint32_t frame_len;
	struct tl_event ev;              /**< scratch, reused for every event */
} __attribute__((aligned(64)));

/**
 * Initialise a worker (allocates its reassembly table).
 * @param w       the worker struct, owned by the caller (cache-aligned storage).
 * @param conf    pipeline options.
 * @param schema  compiled schema; must outlive the worker.
 * @param ports   telemetry UDP ports, @p n_ports of them (at least one).
 * @param sink    event consumer (NULL: events are only counted).
 * @return 0, -EINVAL, -ENOMEM.
 */
int tl_pipeline_worker_init(struct tl_pipeline_worker *w, const struct tl_pipeline_conf *conf,
		const struct tl_schema *schema, const uint16_t *ports, unsigned n_ports,
		tl_event_sink_fn sink, void *sink_arg);

/**
 * Classify events with the generations published in @p live (tl_live.h), as worker
 * @p id of it. Call before the worker runs. The thread that runs the worker then calls
 * tl_pipeline_online() before its first burst, tl_pipeline_quiescent() after every burst
 * (and when idle), and tl_pipeline_offline() before it blocks or exits.
 */
void tl_pipeline_set_live(struct tl_pipeline_worker *w, struct tl_live *live, unsigned id);

/** The worker's thread starts using generations (no-op without tl_pipeline_set_live). */
static inline void
tl_pipeline_online(struct tl_pipeline_worker *w)
{
	if (w->live)
		tl_live_worker_online(w->live, w->live_id);
}

/** The worker holds no generation now: a reload may free the one it used. */
static inline void
tl_pipeline_quiescent(struct tl_pipeline_worker *w)
{
	if (w->live)
		tl_live_quiescent(w->live, w->live_id);
}

/** The worker's thread blocks or exits: reloads stop waiting for it. */
static inline void
tl_pipeline_offline(struct tl_pipeline_worker *w)
{
	if (w->live)
		tl_live_worker_offline(w->live, w->live_id);
}

/** Release what init allocated. NULL-safe; the struct itself stays the caller's. */
void tl_pipeline_worker_fini(struct tl_pipeline_worker *w);

/**
 * Process one Ethernet frame.
 * @param hw_flags TL_HW_* checksum flags from the NIC.
 * @param now_ns   monotonic clock (reassembly timers).
 */
void tl_pipeline_rx(struct tl_pipeline_worker *w, const uint8_t *frame, uint32_t len,
		uint32_t hw_flags, uint64_t now_ns);

/** Process one telemetry UDP payload (NDJSON) that was decoded elsewhere. */
void tl_pipeline_datagram(struct tl_pipeline_worker *w, const uint8_t *payload, uint32_t len);

/**
 * Extract, classify and hand to the sink every event of an NDJSON buffer (the body of a
 * datagram or of a frame). Counts events, not datagrams.
 */
void tl_pipeline_events(struct tl_pipeline_worker *w, const uint8_t *ndjson, uint32_t len);

/**
 * Send framed payloads to @p fn instead of the NDJSON path (NULL: none). Call before the
 * worker runs.
 */
void tl_pipeline_set_framed(struct tl_pipeline_worker *w, tl_framed_fn fn, void *arg);

/** The driver's sender for this worker (drivers call it before the worker runs). */
void tl_pipeline_set_tx(struct tl_pipeline_worker *w, tl_tx_fn tx, void *arg);

/** Expire stale reassembly state. UINT64_MAX: all (at shutdown). */
void tl_pipeline_expire(struct tl_pipeline_worker *w, uint64_t now_ns);

/** Set the sink's housekeeping callback (called with the sink argument). */
void tl_pipeline_set_tick(struct tl_pipeline_worker *w, tl_sink_tick_fn tick);

/**
 * Housekeeping: expire reassembly state, then let the sink flush by age. Drivers call it
 * about every tick interval from the worker; UINT64_MAX at shutdown expires and flushes
 * everything, after the last frame.
 */
void tl_pipeline_tick(struct tl_pipeline_worker *w, uint64_t now_ns);

#endif
