/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * Kernel UDP socket capture driver (`capture.driver: socket`): for laptops, CI without
 * privileges and small sites. No capability, hugepage or NIC is needed.
 *
 * Every worker owns one socket per telemetry port, all bound with SO_REUSEPORT to the
 * same address, so the kernel spreads flows over the workers by their 4-tuple (one
 * producer's datagrams stay on one worker, as with RSS). Each socket has a large receive
 * buffer (SO_RCVBUFFORCE when privileged, else SO_RCVBUF, and the size obtained is
 * reported) and SO_RXQ_OVFL, whose per-datagram drop count feeds rx_missed.
 *
 * Datagrams are read with recvmmsg() straight into per-worker buffers that keep
 * TL_SOCK_HEADROOM bytes in front of each payload. The driver writes a synthetic
 * Ethernet + IPv4/IPv6 + UDP header there (the kernel already verified the checksums:
 * hw_flags TL_HW_IP_CKSUM_GOOD | TL_HW_L4_CKSUM_GOOD) and hands the frame to
 * tl_pipeline_rx(), so decoding, framed mode, events, classification and the sink are
 * exactly the DPDK path's: no pipeline code exists twice. Replies (framed ACKs) built by
 * the pipeline with tl_reply_build() go to the driver's tl_tx_fn, which reads the
 * destination back from the reply frame's headers and sends its UDP payload from the
 * socket of that port (so the source port is the telemetry port) and the frame's source
 * address, batched with sendmmsg() after each burst and tick.
 *
 * The worker loop is the DPDK one: tl_pipeline_online(); per burst
 * tl_pipeline_quiescent(), receive, tl_pipeline_rx() each datagram; tl_pipeline_tick()
 * every `tick` ns busy or idle; at stop a bounded drain, tl_pipeline_tick(UINT64_MAX),
 * tl_pipeline_offline(). An idle worker sleeps in poll() for at most `tick`, not spins.
 */
#ifndef TL_SOCK_H
#define TL_SOCK_H

#include <stddef.h>
#include <stdint.h>

#include "tl_counters.h"
#include "tl_opt.h"

#define TL_SOCK_HEADROOM 64 /**< bytes before each payload for the synthetic header */

/** The `capture.socket:` section. */
struct tl_sock_conf {
	char address[64];  /**< local address to bind ("0.0.0.0", "::" = dual stack,
	                        "127.0.0.1", …; default "0.0.0.0") */
	uint64_t rcvbuf;   /**< receive buffer per socket, bytes (default 32 MiB) */
	uint64_t batch;    /**< datagrams per recvmmsg() (default 64, 1..1024) */
	uint64_t max_datagram; /**< largest datagram accepted whole (default 65535); larger
	                            ones arrive truncated and are counted, not processed */
	uint64_t tick;     /**< housekeeping interval, ns (default 1 ms) */
	char cpus[128];    /**< CPU list to pin workers to ("" = not pinned), e.g. "1,3" */
	uint64_t busy_budget; /**< preferred NAPI busy polling: frames the kernel receives per
	                           empty recvmmsg() in the worker's thread (default 0 = off) */
	uint64_t busy_usecs;  /**< SO_BUSY_POLL of the sockets, µs (default 20) */
};

extern const struct tl_opt tl_sock_opts[];

struct tl_sock;
struct tl_pipeline_worker;

/**
 * Create and bind every worker's sockets.
 * @param ports, n_ports  telemetry UDP ports (host order).
 * @param err  a one-line reason on failure (address in use, address not local, …).
 * @return 0; -EINVAL; -errno of socket()/bind()/setsockopt(); -ENOMEM.
 */
int tl_sock_open(const struct tl_sock_conf *conf, const uint16_t *ports, unsigned n_ports,
        unsigned n_workers, struct tl_sock **out, char *err, size_t errlen);

/** One line describing it ("socket: 2 workers x 1 port on 0.0.0.0, rcvbuf 32 MiB"). */
const char *tl_sock_describe(const struct tl_sock *s);

/**
 * Run one thread per worker (pinned to conf.cpus if given) until *@p stop becomes
 * non-zero, or, with @p idle_stop_ns non-zero, until every worker has been idle that
 * long. Sets each worker's tl_tx_fn. Returns when every thread has stopped.
 * @return 0; -errno (a thread could not start: the others are stopped).
 */
int tl_sock_run(struct tl_sock *s, struct tl_pipeline_worker *workers, uint64_t idle_stop_ns,
        volatile int *stop);

/** Add the driver's counters to @p c: rx_missed (SO_RXQ_OVFL drops, plus datagrams longer
 *  than max_datagram, which arrive truncated and are dropped), tx_frames, tx_dropped.
 *  Thread-safe against running workers (relaxed loads). */
void tl_sock_stats(struct tl_sock *s, struct tl_counters *c);

/** Close every socket. NULL-safe. */
void tl_sock_close(struct tl_sock *s);

#endif
