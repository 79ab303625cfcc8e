/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "tl_capture.h"

#define TL_DEFAULT_PORT 5170

const char *const tl_capture_driver_names[] = {"dpdk", "xdp", "socket", NULL};

static int
parse_port(const char *s, uint16_t *port)
{
	char *end;
	unsigned long v;

	if (s[0] < '0' || s[0] > '9')
		return -EINVAL;
	v = strtoul(s, &end, 10);
	if (*end != '\0' || v == 0 || v > 65535)
		return -EINVAL;
	*port = (uint16_t)v;
	return 0;
}

int
tl_capture_check(const void *obj, char *msg, size_t msglen)
{
	const struct tl_capture_conf *c = obj;
	uint16_t p;

	for (uint32_t i = 0; i < c->n_ports; i++) {
		if (parse_port(c->ports[i], &p) < 0) {
			snprintf(msg, msglen, "ports: '%s' is not a UDP port (1-65535)", c->ports[i]);
			return 1;
		}
	}
	return 0;
}

const struct tl_opt tl_capture_opts[] = {
	{.name = "driver", .type = TL_OPT_ENUM, .def = "dpdk",
		.offset = offsetof(struct tl_capture_conf, driver),
		.enums = tl_capture_driver_names, .desc = "capture driver: dpdk (NIC or virtual PMD), xdp (tapline's AF_XDP program "
			"on a shared interface), socket (kernel UDP sockets)"},
	{.name = "ports", .type = TL_OPT_STRLIST, .offset = offsetof(struct tl_capture_conf, ports),
		.size = TL_CAPTURE_PORT_LEN, .count_offset = offsetof(struct tl_capture_conf, n_ports),
		.max_items = TL_CAPTURE_MAX_PORTS,
		.desc = "telemetry UDP destination ports (default [5170])"},
	{.name = "workers", .type = TL_OPT_UINT, .def = "1",
		.offset = offsetof(struct tl_capture_conf, workers), .min = 1, .max = 64,
		.desc = "RX queues, one worker lcore each"},
	{.name = "dpdk", .type = TL_OPT_SECTION, .offset = offsetof(struct tl_capture_conf, dpdk),
		.sub = tl_dpdk_opts, .desc = "DPDK driver options"},
	{.name = "xdp", .type = TL_OPT_SECTION, .offset = offsetof(struct tl_capture_conf, xdp),
		.sub = tl_xdp_opts, .desc = "native AF_XDP driver options"},
	{.name = "socket", .type = TL_OPT_SECTION,
		.offset = offsetof(struct tl_capture_conf, socket), .sub = tl_sock_opts,
		.desc = "kernel UDP socket driver options"},
	{.name = NULL},
};

int
tl_capture_ports(const struct tl_capture_conf *c, uint16_t *out)
{
	if (c->n_ports == 0) {
		out[0] = TL_DEFAULT_PORT;
		return 1;
	}
	for (uint32_t i = 0; i < c->n_ports; i++)
		if (parse_port(c->ports[i], &out[i]) < 0)
			return -EINVAL;
	return (int)c->n_ports;
}

void
tl_capture_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

int
tl_capture_parse_cpus(const char *text, const char *key, int *cpus, unsigned cap,
		unsigned *n, char *err, size_t errlen)
{
	const char *p = text;
	cpu_set_t allowed;

	*n = 0;
	if (*p == '\0')
		return 0;
	if (sched_getaffinity(0, sizeof(allowed), &allowed) < 0) {
		int rc = -errno;

		tl_capture_err(err, errlen, "%s: cannot read the CPU affinity", key);
		return rc;
	}
	for (;;) {
		unsigned long lo, hi;
		char *end;

		if (*p < '0' || *p > '9')
			goto bad;
		lo = strtoul(p, &end, 10);
		hi = lo;
		p = end;
		if (*p == '-') {
			p++;
			if (*p < '0' || *p > '9')
				goto bad;
			hi = strtoul(p, &end, 10);
			p = end;
		}
		if (hi < lo || hi >= CPU_SETSIZE)
			goto bad;
		for (unsigned long c = lo; c <= hi; c++) {
			if (!CPU_ISSET(c, &allowed)) {
				tl_capture_err(err, errlen, "%s: CPU %lu is not available to this "
						"process (offline, or outside its cgroup/affinity)",
						key, c);
				return -EINVAL;
			}
			if (*n == cap)
				goto bad;
			cpus[(*n)++] = (int)c;
		}
		if (*p == '\0')
			return 0;
		if (*p != ',')
			goto bad;
		p++;
	}
bad:
	tl_capture_err(err, errlen, "%s: '%s' is not a CPU list (e.g. \"1,3\" or \"0-3\", CPUs "
			"below %d)", key, text, CPU_SETSIZE);
	return -EINVAL;
}

int
tl_capture_busy_poll(int fd, unsigned usecs, unsigned budget)
{
	int one = 1, us = (int)usecs, b = (int)budget;

	if (setsockopt(fd, SOL_SOCKET, SO_PREFER_BUSY_POLL, &one, sizeof(one)) < 0 ||
	        setsockopt(fd, SOL_SOCKET, SO_BUSY_POLL, &us, sizeof(us)) < 0 ||
	        setsockopt(fd, SOL_SOCKET, SO_BUSY_POLL_BUDGET, &b, sizeof(b)) < 0)
		return -errno;
	return 0;
}

/* One unsigned number from /sys/class/net/IF/NAME. */
static int
read_netdev_uint(const char *ifname, const char *name, unsigned long long *v)
{
	char path[128];
	FILE *f;
	int rc;

	if (snprintf(path, sizeof(path), "/sys/class/net/%s/%s", ifname, name) >=
	        (int)sizeof(path))
		return -ENAMETOOLONG;
	f = fopen(path, "r");
	if (f == NULL)
		return -errno;
	rc = fscanf(f, "%llu", v) == 1 ? 0 : -EIO;
	fclose(f);
	return rc;
}

int
tl_capture_napi_deferred(const char *ifname)
{
	unsigned long long defer, timeout;
	int rc = read_netdev_uint(ifname, "napi_defer_hard_irqs", &defer);

	if (rc == 0)
		rc = read_netdev_uint(ifname, "gro_flush_timeout", &timeout);
	if (rc < 0)
		return rc;
	return defer > 0 && timeout > 0;
}
