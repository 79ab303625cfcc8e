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
