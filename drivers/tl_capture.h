/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * The `capture:` section of a profile: which driver takes packets off the wire, on
 * which UDP port(s) telemetry arrives, and how many worker cores run the pipeline.
 */
#ifndef TL_CAPTURE_H
#define TL_CAPTURE_H

#include <stddef.h>
#include <stdint.h>

#include "tl_dpdk.h"
#include "tl_sock.h"
#include "tl_xdp.h"
#include "tl_opt.h"

enum tl_capture_driver {
	TL_CAPTURE_DPDK, /**< DPDK ethdev: physical NICs and virtual PMDs */
	TL_CAPTURE_XDP,  /**< native AF_XDP with tapline's XDP program (drivers/xdp) */
	TL_CAPTURE_SOCKET, /**< kernel UDP sockets (drivers/socket) */
};

extern const char *const tl_capture_driver_names[];

#define TL_CAPTURE_MAX_PORTS 8
#define TL_CAPTURE_PORT_LEN 8

struct tl_capture_conf {
	int driver;                                          /**< enum tl_capture_driver */
	char ports[TL_CAPTURE_MAX_PORTS][TL_CAPTURE_PORT_LEN]; /**< telemetry UDP ports */
	uint32_t n_ports;
	uint64_t workers;                                    /**< RX queues = worker cores */
	struct tl_dpdk_conf dpdk;
	struct tl_xdp_conf xdp;
	struct tl_sock_conf socket;
};

extern const struct tl_opt tl_capture_opts[];

/** Section check for `capture:` (a tl_opt_check_fn): ports must be 1-65535. */
int tl_capture_check(const void *obj, char *msg, size_t msglen);

/**
 * Convert the configured port strings to numbers.
 * @return the number of ports written to @p out (at most TL_CAPTURE_MAX_PORTS; a
 *         profile without ports yields the default 5170), or -EINVAL.
 */
int tl_capture_ports(const struct tl_capture_conf *c, uint16_t *out);

/**
 * A CPU list for pinning workers: items separated by ',', each a CPU or an inclusive
 * range "a-b". Every CPU must be one this process may run on (pinning elsewhere would
 * fail only when a worker starts, with a less helpful message). "" is an empty list.
 * @param key  the option's name, for the message ("capture.xdp.cpus").
 * @return 0 with *@p n CPUs in @p cpus; -EINVAL (with @p err); -errno.
 */
int tl_capture_parse_cpus(const char *text, const char *key, int *cpus, unsigned cap,
		unsigned *n, char *err, size_t errlen);

/**
 * Preferred busy polling on a receive socket: SO_PREFER_BUSY_POLL, SO_BUSY_POLL @p usecs
 * and SO_BUSY_POLL_BUDGET @p budget. A receive call that finds the socket empty then runs
 * the device queue's NAPI poll (up to @p budget frames) itself, in the worker's thread on
 * its core, instead of a softirq or NAPI thread doing that work and waking the worker.
 * The kernel keeps its own processing away only while the interface defers it
 * (napi_defer_hard_irqs and gro_flush_timeout non-zero: tl_capture_napi_deferred()).
 * @return 0; -errno of the first option refused (it needs CAP_NET_ADMIN).
 */
int tl_capture_busy_poll(int fd, unsigned usecs, unsigned budget);

/**
 * Whether @p ifname defers its NAPI processing for busy pollers (sysfs
 * napi_defer_hard_irqs and gro_flush_timeout both non-zero).
 * @return 1; 0; -errno if they cannot be read.
 */
int tl_capture_napi_deferred(const char *ifname);

/** snprintf into a driver's error buffer (NULL or 0 bytes: nothing). */
void tl_capture_err(char *err, size_t errlen, const char *fmt, ...)
		__attribute__((format(printf, 3, 4)));

/** A counter with one writer (a worker) read by others: never torn. */
static inline void
tl_capture_count(uint64_t *c, uint64_t n)
{
	__atomic_store_n(c, *c + n, __ATOMIC_RELAXED);
}

#endif
