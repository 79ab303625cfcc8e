/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * DPDK ethdev capture driver.
 *
 * Initialises the EAL from the profile, sets up one port (a PCI NIC bound to a DPDK
 * driver or any virtual PMD: net_pcap, net_af_xdp, net_tap, net_ring, net_null) with one
 * RX queue per worker and RSS over them, a mempool on the port's NUMA node, and runs one
 * worker lcore per queue to completion: rx_burst -> tl_pipeline_rx -> free, with no
 * locks. The main lcore only waits and handles signals.
 *
 * Replies (framed-protocol ACKs): each worker also gets its own TX queue, when the port
 * has that many (workers past the port's last TX queue cannot reply: a warning at open),
 * and copies each reply into an mbuf of a separate small TX mempool; replies are batched
 * and flushed after every RX burst, at every tick and when the worker stops.
 *
 * Lifetime: tl_dpdk_open() once per process (the EAL cannot be initialised twice),
 * tl_dpdk_run() once, tl_dpdk_close() once.
 */
#ifndef TL_DPDK_H
#define TL_DPDK_H

#include <stdbool.h>
#include <stdint.h>

#include "tl_counters.h"
#include "tl_opt.h"

#define TL_DPDK_MAX_VDEVS 8
#define TL_DPDK_MAX_PCI 8
#define TL_DPDK_MAX_EAL_ARGS 16

/** The `capture.dpdk:` section. */
struct tl_dpdk_conf {
	char lcores[128];                        /**< EAL --lcores; "" = main on the first CPU,
						   workers spread over the allowed CPUs */
	char vdevs[TL_DPDK_MAX_VDEVS][512];      /**< --vdev arguments */
	uint32_t n_vdevs;
	char pci[TL_DPDK_MAX_PCI][32];           /**< -a allow-listed PCI addresses */
	uint32_t n_pci;
	bool no_huge;                            /**< --no-huge (anonymous memory) */
	uint64_t memory;                         /**< -m, bytes */
	uint64_t mbufs;                          /**< mempool size per port */
	uint64_t mbuf_cache;                     /**< per-lcore mempool cache */
	uint64_t rx_desc;                        /**< RX descriptors per queue */
	uint64_t burst;                          /**< rx_burst size */
	uint64_t tick;                           /**< housekeeping interval (ns) */
	char log_level[32];                      /**< EAL --log-level */
	char eal_args[TL_DPDK_MAX_EAL_ARGS][128];/**< anything else for the EAL, verbatim */
	uint32_t n_eal_args;
};

extern const struct tl_opt tl_dpdk_opts[];

struct tl_dpdk;
struct tl_pipeline_worker;

/**
 * Initialise the EAL and the port.
 * @param conf      driver options.
 * @param n_queues  RX queues = worker lcores wanted.
 * @param prog      argv[0] for the EAL.
 * @param out       out: the driver (tl_dpdk_close).
 * @return 0; TL_E_NOHUGE (hugepages wanted, none free), -EPERM (not privileged),
 *         TL_E_NODEV (no port), TL_E_DPDK (EAL/ethdev failure; the reason was logged),
 *         -EINVAL (more queues than lcores or than the port supports), -ENOMEM.
 *         Every failure logs a message that says what to do.
 */
int tl_dpdk_open(const struct tl_dpdk_conf *conf, unsigned n_queues, const char *prog,
		struct tl_dpdk **out);

/** @return the NUMA socket of the port (for allocating worker state), or -1. */
int tl_dpdk_socket(const struct tl_dpdk *d);

/** @return a one-line description of the port (driver name, queues, RSS, offloads). */
const char *tl_dpdk_describe(const struct tl_dpdk *d);

/**
 * Run the workers until @p stop becomes non-zero, or - when @p expect is given - until
 * queue i has received expect[i] frames (a replayed capture file is consumed), or no
 * frame arrived for @p idle_stop_ns after that was due. On the way out each worker
 * drains its queue and expires its reassembly table, so every event has left the
 * pipeline when this returns.
 * @param workers  n_queues initialised pipeline workers, one per queue.
 * @param expect   NULL, or frames expected per queue.
 * @param stop     set by the signal handler; read with relaxed atomics.
 * @return 0, or TL_E_DPDK if the port could not be started.
 */
int tl_dpdk_run(struct tl_dpdk *d, struct tl_pipeline_worker *workers, const uint64_t *expect,
		uint64_t idle_stop_ns, volatile int *stop);

/**
 * Add the NIC's own counters (imissed, rx_nombuf) and the driver's reply counters
 * (tx_frames: handed to the NIC; tx_dropped: no mbuf, too long, or TX queue full) to @p c.
 * Callable while the workers run (relaxed reads).
 */
void tl_dpdk_stats(struct tl_dpdk *d, struct tl_counters *c);

/** Stop and close the port and clean up the EAL. NULL-safe. */
void tl_dpdk_close(struct tl_dpdk *d);

#endif
