/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * Native AF_XDP capture driver (`capture.driver: xdp`) with tapline's own XDP program.
 *
 * For sites where telemetry shares a port with management traffic: the XDP program
 * (drivers/xdp/tl_xdp.bpf.c, compiled with clang -target bpf, loaded through a libbpf
 * skeleton and attached with libxdp) parses Ethernet, up to two VLAN tags, IPv4 (with
 * options and fragments) and IPv6 (with extension headers and fragments) and UDP, and
 * redirects only datagrams to the configured telemetry ports (and every IP fragment
 * that may belong to one: non-first fragments carry no port) into the AF_XDP socket of
 * the receive queue. Everything else (ARP, ICMP, SSH, other ports) is passed to the
 * kernel untouched. Per-CPU counters in a BPF map: redirected, passed, parse failures
 * (and redirect failures), read into tapline's metrics by tl_xdp_stats().
 *
 * One AF_XDP socket per RX queue, one worker thread per socket. Zero-copy is tried first
 * where the driver supports it and copy mode otherwise (`capture.xdp.mode: auto`), and
 * the mode obtained is reported by tl_xdp_describe(). The program is detached on close;
 * a program left by a killed run (found attached to the interface at open) is replaced.
 *
 * The worker loop is the DPDK one (see tl_sock.h): frames from the RX ring go to
 * tl_pipeline_rx() as they are (no copy), ACK frames from tl_tx_fn go out through the
 * socket's TX ring (UMEM frames reserved for TX).
 */
#ifndef TL_XDP_H
#define TL_XDP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tl_counters.h"
#include "tl_opt.h"

enum tl_xdp_mode {
	TL_XDP_MODE_AUTO,     /**< zero-copy if the driver can, else copy */
	TL_XDP_MODE_ZEROCOPY, /**< zero-copy or fail */
	TL_XDP_MODE_COPY,     /**< copy mode */
};

extern const char *const tl_xdp_mode_names[];

/** The `capture.xdp:` section. */
struct tl_xdp_conf {
	char interface[32]; /**< network interface (required) */
	uint64_t queue;     /**< first RX queue; workers take queue, queue+1, … (default 0) */
	int mode;           /**< enum tl_xdp_mode (default auto) */
	bool skb_mode;      /**< attach in generic (SKB) mode instead of native driver mode
	                         (default false: native, falling back to generic if refused) */
	uint64_t frames;    /**< UMEM frames per socket (default 4096, power of two) */
	uint64_t frame_size;/**< UMEM frame size (default 4096: 2048 or 4096) */
	uint64_t ring_size; /**< RX/TX/fill/completion ring entries (default 2048) */
	uint64_t batch;     /**< frames per RX poll (default 64) */
	uint64_t tick;      /**< housekeeping interval, ns (default 1 ms) */
	bool busy_poll;     /**< spin on the rings (true) or sleep in poll() when idle */
	uint64_t busy_budget; /**< preferred NAPI busy polling: frames the kernel receives
	                           per call in the worker's thread (default 64; 0 = off) */
	uint64_t busy_usecs;  /**< SO_BUSY_POLL of the sockets, µs (default 20) */
	char cpus[128];     /**< CPU list to pin workers to ("" = not pinned) */
};

extern const struct tl_opt tl_xdp_opts[];

/** Counters of the XDP program (sum over CPUs). */
struct tl_xdp_prog_stats {
	uint64_t redirected;   /**< frames sent to an AF_XDP socket */
	uint64_t passed;       /**< frames passed to the kernel */
	uint64_t parse_failed; /**< frames it could not parse (passed to the kernel) */
	uint64_t redirect_failed; /**< matched, but no socket on that queue (passed) */
};

struct tl_xdp;
struct tl_pipeline_worker;

/**
 * Load and attach the program (replacing a stale tapline program), configure its ports,
 * create one socket per worker.
 * @param err  a one-line reason on failure (no such interface, no CAP_NET_ADMIN /
 *             CAP_BPF, XDP not supported by the driver, zero-copy refused, …).
 * @return 0; -EINVAL; -ENODEV; -EPERM; -EOPNOTSUPP; -errno; -ENOMEM.
 */
int tl_xdp_open(const struct tl_xdp_conf *conf, const uint16_t *ports, unsigned n_ports,
        unsigned n_workers, struct tl_xdp **out, char *err, size_t errlen);

/** One line ("xdp: veth1 queues 0-1, native mode, copy (zero-copy not supported)"). */
const char *tl_xdp_describe(const struct tl_xdp *x);

/** Was zero-copy obtained? */
bool tl_xdp_zerocopy(const struct tl_xdp *x);

/** Like tl_sock_run(). */
int tl_xdp_run(struct tl_xdp *x, struct tl_pipeline_worker *workers, uint64_t idle_stop_ns,
        volatile int *stop);

/** The program's counters. @return 0; -errno (map read failed). */
int tl_xdp_prog_stats(const struct tl_xdp *x, struct tl_xdp_prog_stats *st);

/** Add the driver's counters to @p c (rx_missed: socket rx_dropped + RX ring full, + fill-ring
 *  empty in zero-copy mode (copy mode counts it in rx_dropped); tx_frames, tx_dropped). */
void tl_xdp_stats(struct tl_xdp *x, struct tl_counters *c);

/** Detach the program, close the sockets, free the UMEM. NULL-safe. */
void tl_xdp_close(struct tl_xdp *x);

/**
 * Probe only (for `tapline run --check`): can the program be loaded and attached to
 * @p ifname here? Detaches again.
 * @return 0; the errors of tl_xdp_open with @p err filled.
 */
int tl_xdp_probe(const struct tl_xdp_conf *conf, char *err, size_t errlen);

#endif
