/* SPDX-License-Identifier: BSD-3-Clause */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tl_capture.h"
#include "tl_time.h"
#include "tl_cksum.h"
#include "tl_decode.h"
#include "tl_error.h"
#include "tl_log.h"
#include "tl_pipeline.h"
#include "tl_sock.h"
#include "tl_wire.h"

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

#define MAX_PORTS 16
#define MAX_WORKERS 256
#define MAX_BATCH 1024
#define MAX_DATAGRAM 65535
/* The kernel doubles SO_RCVBUF(FORCE) values and keeps them in an int. */
#define RCVBUF_MAX (INT_MAX / 2)
/* Bursts read per socket when stopping: what the kernel already queued is processed,
 * but a flood cannot keep the worker from stopping. */
#define DRAIN_ROUNDS 1024
/* Replies are copied into per-worker slots and leave with one sendmmsg() per socket at
 * the end of every burst and tick: ACKs come in bunches (a commit acknowledges many
 * frames), and one system call per ACK would cost more than the frames they answer. */
#define TX_BATCH 32
#define TX_FRAME_MAX 2048 /* as the DPDK driver: a reply is one small datagram */

#define IPV4_HDR_LEN 20
#define IPV6_HDR_LEN 40
#define UDP_HDR_LEN 8
#define NH_UDP 17
#define SYNTH_TTL 64
#define V4_FRAME_HDR (ETH_HDR_LEN + IPV4_HDR_LEN + UDP_HDR_LEN)
#define V6_FRAME_HDR (ETH_HDR_LEN + IPV6_HDR_LEN + UDP_HDR_LEN)

_Static_assert(V6_FRAME_HDR <= TL_SOCK_HEADROOM, "headroom too small for Ethernet+IPv6+UDP");

/* Control data of one received datagram: the drop counter and the destination. */
#define RX_CTRL_LEN                                                                                \
	(CMSG_SPACE(sizeof(uint32_t)) + CMSG_SPACE(sizeof(struct in6_pktinfo)) +                   \
	        CMSG_SPACE(sizeof(struct in_pktinfo)))
#define TX_CTRL_LEN CMSG_SPACE(sizeof(struct in6_pktinfo))

union rx_ctrl {
	struct cmsghdr align;
	uint8_t b[RX_CTRL_LEN];
};

union tx_ctrl {
	struct cmsghdr align;
	uint8_t b[TX_CTRL_LEN];
};

union sockname {
	struct sockaddr sa;
	struct sockaddr_in in;
	struct sockaddr_in6 in6;
};

/* clang-format off */
const struct tl_opt tl_sock_opts[] = {
	{.name = "address", .type = TL_OPT_STRING, .def = "0.0.0.0",
		.offset = offsetof(struct tl_sock_conf, address),
		.size = sizeof(((struct tl_sock_conf *)0)->address),
		.desc = "local address to bind: 0.0.0.0 (all IPv4), :: (all IPv6 and IPv4), or "
			"one numeric address"},
	{.name = "rcvbuf", .type = TL_OPT_SIZE, .def = "32MiB",
		.offset = offsetof(struct tl_sock_conf, rcvbuf), .min = 64ull << 10,
		.max = 512ull << 20,
		.desc = "receive buffer per socket (above net.core.rmem_max only with "
			"CAP_NET_ADMIN)"},
	{.name = "batch", .type = TL_OPT_UINT, .def = "64",
		.offset = offsetof(struct tl_sock_conf, batch), .min = 1, .max = MAX_BATCH,
		.desc = "datagrams per recvmmsg()"},
	{.name = "max_datagram", .type = TL_OPT_SIZE, .def = "65535",
		.offset = offsetof(struct tl_sock_conf, max_datagram), .min = 512,
		.max = MAX_DATAGRAM,
		.desc = "largest datagram taken whole; longer ones are dropped and counted "
			"(rx_missed)"},
	{.name = "tick", .type = TL_OPT_DURATION, .def = "1ms",
		.offset = offsetof(struct tl_sock_conf, tick), .min = 10000,
		.max = 1000000000ull,
		.desc = "housekeeping interval (reassembly expiry, batch flush by age); also "
			"the longest an idle worker sleeps"},
	{.name = "cpus", .type = TL_OPT_STRING, .def = "",
		.offset = offsetof(struct tl_sock_conf, cpus),
		.size = sizeof(((struct tl_sock_conf *)0)->cpus),
		.desc = "CPUs to pin workers to, in turn, e.g. 1,3 or 2-5 (empty: not pinned)"},
	{.name = "busy_budget", .type = TL_OPT_UINT, .def = "0",
		.offset = offsetof(struct tl_sock_conf, busy_budget), .min = 0, .max = 1024,
		.desc = "preferred NAPI busy polling: frames the kernel receives per empty "
			"recvmmsg() in the worker's own thread (full effect when the interface "
			"sets napi_defer_hard_irqs and gro_flush_timeout; needs "
			"CAP_NET_ADMIN); 0: off"},
	{.name = "busy_usecs", .type = TL_OPT_UINT, .def = "20",
		.offset = offsetof(struct tl_sock_conf, busy_usecs), .min = 1, .max = 1000,
		.desc = "SO_BUSY_POLL of the sockets, microseconds (with busy_budget)"},
	{.name = NULL},
};
/* clang-format on */

/* One per worker thread; written only by that thread while it runs. */
struct worker_ctx {
	struct tl_sock *s;
	struct tl_pipeline_worker *pw;
	unsigned id;
	int cpu; /* -1: not pinned */
	uint64_t idle_stop_ns;
	volatile int *stop;
	pthread_t thread;
	int fd[MAX_PORTS]; /* one socket per telemetry port, same order as s->ports */
	struct pollfd pfd[MAX_PORTS];
	uint32_t ovfl_seen[MAX_PORTS]; /* last SO_RXQ_OVFL value per socket (cumulative) */

	/* receive: batch slots of s->stride bytes, payload at TL_SOCK_HEADROOM */
	uint8_t *rx_buf;
	struct mmsghdr *rx_msgs;
	struct iovec *rx_iov;
	union sockname *rx_name;
	union rx_ctrl *rx_ctrl;

	/* replies waiting for tx_flush() */
	unsigned tx_n;
	uint8_t *tx_data; /* TX_BATCH x TX_FRAME_MAX */
	uint8_t tx_port[TX_BATCH];
	struct mmsghdr tx_msgs[TX_BATCH];
	struct iovec tx_iov[TX_BATCH];
	union sockname tx_name[TX_BATCH];
	union tx_ctrl tx_ctrl[TX_BATCH];

	/* Single writer (this worker, relaxed stores); tl_sock_stats() and the other
	 * workers (last_rx_ns) read them. */
	uint64_t rx_dropped;   /* SO_RXQ_OVFL: the kernel had no room */
	uint64_t rx_truncated; /* longer than max_datagram */
	uint64_t tx_frames;
	uint64_t tx_dropped;
	uint64_t last_rx_ns;
} __attribute__((aligned(64)));

struct tl_sock {
	struct tl_sock_conf conf;
	int family;
	union sockname addr; /* bind address, port 0 */
	socklen_t addr_len;
	uint16_t ports[MAX_PORTS];
	unsigned n_ports;
	unsigned n_workers;
	size_t stride;       /* bytes per receive slot */
	uint64_t rcvbuf_got; /* smallest receive buffer the kernel gave a socket */
	int busy_errno;      /* why a socket refused busy polling (0: none did) */
	int halt;            /* every worker was idle for idle_stop_ns, or a thread failed */
	struct worker_ctx *ctx;
	char desc[400];
};

/* --- helpers --- */

static inline void
wr16(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void
fmt_size(uint64_t v, char *buf, size_t cap)
{
	if (v >= (1ull << 20) && v % (1ull << 20) == 0)
		snprintf(buf, cap, "%" PRIu64 " MiB", v >> 20);
	else if (v >= 1024 && v % 1024 == 0)
		snprintf(buf, cap, "%" PRIu64 " KiB", v >> 10);
	else
		snprintf(buf, cap, "%" PRIu64 " bytes", v);
}

/* "127.0.0.1:5170" or "[::1]:5170", as an operator would type it. */
static void
fmt_endpoint(const struct tl_sock *s, uint16_t port, char *buf, size_t cap)
{
	snprintf(buf, cap, s->family == AF_INET6 ? "[%s]:%u" : "%s:%u", s->conf.address, port);
}

/* --- configuration --- */

static int
parse_address(struct tl_sock *s, char *err, size_t errlen)
{
	struct addrinfo hints, *res = NULL;
	const char *text = s->conf.address[0] ? s->conf.address : "0.0.0.0";
	int rc = -1;

	if (strchr(text, ':') == NULL) {
		/* inet_pton: strict dotted quad ("1.2.3" is refused, not read as 1.2.0.3). */
		memset(&s->addr, 0, sizeof(s->addr));
		s->addr.in.sin_family = AF_INET;
		if (inet_pton(AF_INET, text, &s->addr.in.sin_addr) == 1) {
			s->family = AF_INET;
			s->addr_len = sizeof(s->addr.in);
			rc = 0;
		}
	} else {
		memset(&hints, 0, sizeof(hints));
		hints.ai_family = AF_INET6;
		hints.ai_socktype = SOCK_DGRAM;
		hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
		/* getaddrinfo, not inet_pton: it takes scoped addresses ("fe80::1%eth0"). */
		if (getaddrinfo(text, "0", &hints, &res) == 0 && res != NULL &&
		        res->ai_family == AF_INET6 && res->ai_addrlen == sizeof(s->addr.in6)) {
			s->family = AF_INET6;
			memcpy(&s->addr.in6, res->ai_addr, sizeof(s->addr.in6));
			s->addr_len = sizeof(s->addr.in6);
			rc = 0;
		}
		if (res)
			freeaddrinfo(res);
	}
	if (rc < 0) {
		tl_capture_err(err, errlen,
		        "capture.socket.address: '%s' is not a numeric IPv4 or IPv6 address", text);
		return -EINVAL;
	}
	if (s->conf.address[0] == '\0') /* described as bound */
		snprintf(s->conf.address, sizeof(s->conf.address), "%s", text);
	return 0;
}

static int
check_conf(const struct tl_sock_conf *c, const uint16_t *ports, unsigned n_ports,
        unsigned n_workers, char *err, size_t errlen)
{
	if (c == NULL || ports == NULL) {
		tl_capture_err(err, errlen, "capture.socket: no configuration or no ports");
		return -EINVAL;
	}
	if (n_ports == 0 || n_ports > MAX_PORTS) {
		tl_capture_err(err, errlen, "capture.socket: %u telemetry ports (1 to %d)", n_ports,
		        MAX_PORTS);
		return -EINVAL;
	}
	if (n_workers == 0 || n_workers > MAX_WORKERS) {
		tl_capture_err(err, errlen, "capture.socket: %u workers (1 to %d)", n_workers,
		        MAX_WORKERS);
		return -EINVAL;
	}
	for (unsigned i = 0; i < n_ports; i++) {
		if (ports[i] == 0) {
			tl_capture_err(
			        err, errlen, "capture.socket: port 0 is not a telemetry port");
			return -EINVAL;
		}
		for (unsigned j = 0; j < i; j++) {
			if (ports[j] == ports[i]) {
				tl_capture_err(err, errlen,
				        "capture.socket: port %u is listed twice", ports[i]);
				return -EINVAL;
			}
		}
	}
	if (c->batch == 0 || c->batch > MAX_BATCH) {
		tl_capture_err(err, errlen, "capture.socket.batch: %" PRIu64 " (1 to %d)", c->batch,
		        MAX_BATCH);
		return -EINVAL;
	}
	if (c->max_datagram == 0 || c->max_datagram > MAX_DATAGRAM) {
		tl_capture_err(err, errlen, "capture.socket.max_datagram: %" PRIu64 " (1 to %d)",
		        c->max_datagram, MAX_DATAGRAM);
		return -EINVAL;
	}
	if (c->rcvbuf == 0 || c->rcvbuf > RCVBUF_MAX) {
		tl_capture_err(err, errlen, "capture.socket.rcvbuf: %" PRIu64 " bytes (1 to %d)",
		        c->rcvbuf, RCVBUF_MAX);
		return -EINVAL;
	}
	if (c->tick == 0) {
		tl_capture_err(err, errlen, "capture.socket.tick: must not be 0");
		return -EINVAL;
	}
	if (memchr(c->address, '\0', sizeof(c->address)) == NULL ||
	        memchr(c->cpus, '\0', sizeof(c->cpus)) == NULL) {
		tl_capture_err(err, errlen, "capture.socket: address or cpus not terminated");
		return -EINVAL;
	}
	return 0;
}

/* --- sockets --- */

static int
bind_error(const struct tl_sock *s, uint16_t port, int rc, char *err, size_t errlen)
{
	char ep[96];

	fmt_endpoint(s, port, ep, sizeof(ep));
	switch (-rc) {
	case EADDRINUSE:
		tl_capture_err(err, errlen,
		        "capture.socket: UDP %s is already in use (another tapline or another "
		        "program has it: stop it, or change capture.ports / "
		        "capture.socket.address)",
		        ep);
		break;
	case EADDRNOTAVAIL:
		tl_capture_err(err, errlen,
		        "capture.socket: cannot bind UDP %s: %s is not an address of this host "
		        "(capture.socket.address)",
		        ep, s->conf.address);
		break;
	case EACCES:
		tl_capture_err(err, errlen,
		        "capture.socket: cannot bind UDP %s: ports below 1024 need root or "
		        "CAP_NET_BIND_SERVICE",
		        ep);
		break;
	default:
		tl_capture_err(
		        err, errlen, "capture.socket: cannot bind UDP %s: %s", ep, tl_strerror(rc));
		break;
	}
	return rc;
}

static int
bind_port(const struct tl_sock *s, int fd, uint16_t port)
{
	union sockname a = s->addr;

	if (s->family == AF_INET)
		a.in.sin_port = htons(port);
	else
		a.in6.sin6_port = htons(port);
	return bind(fd, &a.sa, s->addr_len) < 0 ? -errno : 0;
}

static int
new_socket(const struct tl_sock *s, char *err, size_t errlen)
{
	int fd = socket(s->family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_UDP);
	int zero = 0;

	if (fd < 0) {
		int rc = -errno;

		tl_capture_err(err, errlen, "capture.socket: socket(%s, UDP): %s",
		        s->family == AF_INET ? "IPv4" : "IPv6", tl_strerror(rc));
		return rc;
	}
	/* "::" takes IPv4 as well whatever net.ipv6.bindv6only says: that is what the
	 * profile documents. */
	if (s->family == AF_INET6 &&
	        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) < 0) {
		int rc = -errno;

		close(fd);
		tl_capture_err(err, errlen, "capture.socket: IPV6_V6ONLY: %s", tl_strerror(rc));
		return rc;
	}
	return fd;
}

/*
 * SO_REUSEPORT lets any process of the same user join the group later and silently take
 * a share of the flows. A socket bound without it conflicts with any socket already on
 * the port, reuseport or not, so binding one first and closing it turns "someone is on
 * this port" into a clean EADDRINUSE. (A process binding in the instant between the
 * probe and our first socket is not caught: that race needs two starts at once.)
 */
static int
probe_port(const struct tl_sock *s, uint16_t port, char *err, size_t errlen)
{
	int fd = new_socket(s, err, errlen), rc;

	if (fd < 0)
		return fd;
	rc = bind_port(s, fd, port);
	close(fd);
	return rc < 0 ? bind_error(s, port, rc, err, errlen) : 0;
}

static int
sockopt_error(int fd, const char *what, char *err, size_t errlen)
{
	int rc = -errno;

	close(fd);
	tl_capture_err(err, errlen, "capture.socket: setsockopt(%s): %s", what, tl_strerror(rc));
	return rc;
}

static int
open_socket(struct tl_sock *s, struct worker_ctx *wc, unsigned p, char *err, size_t errlen)
{
	int fd = new_socket(s, err, errlen), one = 1, val, rc;
	socklen_t len = sizeof(val);

	if (fd < 0)
		return fd;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
		return sockopt_error(fd, "SO_REUSEPORT", err, errlen);
	if (setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof(one)) < 0)
		return sockopt_error(fd, "SO_RXQ_OVFL", err, errlen);
	/* The destination address of each datagram, for the synthetic IP header (a
	 * wildcard bind says nothing about it). On "::", IPv4 datagrams report it too,
	 * v4-mapped. */
	if (s->family == AF_INET6) {
		if (setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one)) < 0)
			return sockopt_error(fd, "IPV6_RECVPKTINFO", err, errlen);
	} else if (setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one)) < 0) {
		return sockopt_error(fd, "IP_PKTINFO", err, errlen);
	}
	/* FORCE ignores net.core.rmem_max but needs CAP_NET_ADMIN; without it the kernel
	 * silently caps SO_RCVBUF, so what was obtained is read back and reported. */
	val = (int)s->conf.rcvbuf;
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &val, sizeof(val)) < 0 &&
	        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &val, sizeof(val)) < 0)
		return sockopt_error(fd, "SO_RCVBUF", err, errlen);
	if (getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &val, &len) == 0 && val > 0) {
		/* The kernel reports twice what it accounts payload against. */
		uint64_t got = (uint64_t)val / 2;

		if (s->rcvbuf_got == 0 || got < s->rcvbuf_got)
			s->rcvbuf_got = got;
	}
	/* Not fatal: without it the kernel's softirq does the same work. */
	if (s->conf.busy_budget > 0) {
		rc = tl_capture_busy_poll(
		        fd, (unsigned)s->conf.busy_usecs, (unsigned)s->conf.busy_budget);
		if (rc < 0)
			s->busy_errno = -rc;
	}
	rc = bind_port(s, fd, s->ports[p]);
	if (rc < 0) {
		close(fd);
		return bind_error(s, s->ports[p], rc, err, errlen);
	}
	wc->fd[p] = fd;
	wc->pfd[p].fd = fd;
	wc->pfd[p].events = POLLIN;
	return 0;
}

static int
alloc_worker(struct tl_sock *s, struct worker_ctx *wc)
{
	const unsigned batch = (unsigned)s->conf.batch;

	wc->rx_buf = aligned_alloc(64, batch * s->stride);
	wc->rx_msgs = calloc(batch, sizeof(*wc->rx_msgs));
	wc->rx_iov = calloc(batch, sizeof(*wc->rx_iov));
	wc->rx_name = calloc(batch, sizeof(*wc->rx_name));
	wc->rx_ctrl = calloc(batch, sizeof(*wc->rx_ctrl));
	wc->tx_data = malloc(TX_BATCH * TX_FRAME_MAX);
	if (wc->rx_buf == NULL || wc->rx_msgs == NULL || wc->rx_iov == NULL ||
	        wc->rx_name == NULL || wc->rx_ctrl == NULL || wc->tx_data == NULL)
		return -ENOMEM;
	for (unsigned i = 0; i < batch; i++) {
		struct msghdr *mh = &wc->rx_msgs[i].msg_hdr;

		wc->rx_iov[i].iov_base = wc->rx_buf + i * s->stride + TL_SOCK_HEADROOM;
		wc->rx_iov[i].iov_len = (size_t)s->conf.max_datagram;
		mh->msg_name = &wc->rx_name[i];
		mh->msg_namelen = sizeof(wc->rx_name[i]);
		mh->msg_iov = &wc->rx_iov[i];
		mh->msg_iovlen = 1;
		mh->msg_control = wc->rx_ctrl[i].b;
		mh->msg_controllen = sizeof(wc->rx_ctrl[i].b);
	}
	for (unsigned i = 0; i < TX_BATCH; i++) {
		struct msghdr *mh = &wc->tx_msgs[i].msg_hdr;

		wc->tx_iov[i].iov_base = wc->tx_data + i * TX_FRAME_MAX;
		mh->msg_name = &wc->tx_name[i];
		mh->msg_iov = &wc->tx_iov[i];
		mh->msg_iovlen = 1;
		mh->msg_control = wc->tx_ctrl[i].b;
	}
	return 0;
}

static void
describe(struct tl_sock *s)
{
	char want[32], got[32], ports[MAX_PORTS * 6 + 1] = "";
	size_t len = 0;

	for (unsigned i = 0; i < s->n_ports && len < sizeof(ports); i++)
		len += (size_t)snprintf(
		        ports + len, sizeof(ports) - len, "%s%u", i ? "," : "", s->ports[i]);
	fmt_size(s->conf.rcvbuf, want, sizeof(want));
	fmt_size(s->rcvbuf_got, got, sizeof(got));
	len = (size_t)snprintf(s->desc, sizeof(s->desc),
	        "socket: %u worker%s x %u port%s on %s, rcvbuf %s", s->n_workers,
	        s->n_workers == 1 ? "" : "s", s->n_ports, s->n_ports == 1 ? "" : "s",
	        s->conf.address, got);
	if (s->rcvbuf_got < s->conf.rcvbuf && len < sizeof(s->desc))
		len += (size_t)snprintf(s->desc + len, sizeof(s->desc) - len,
		        " (WARNING: %s asked; raise net.core.rmem_max or grant CAP_NET_ADMIN)",
		        want);
	if (len < sizeof(s->desc))
		len += (size_t)snprintf(s->desc + len, sizeof(s->desc) - len,
		        ", ports %s, batch %" PRIu64 ", max_datagram %" PRIu64 ", %s%s", ports,
		        s->conf.batch, s->conf.max_datagram,
		        s->conf.cpus[0] ? "cpus " : "not pinned", s->conf.cpus);
	if (s->conf.busy_budget > 0 && len < sizeof(s->desc)) {
		if (s->busy_errno)
			snprintf(s->desc + len, sizeof(s->desc) - len,
			        ", busy polling refused (%s)", tl_strerror(-s->busy_errno));
		else
			snprintf(s->desc + len, sizeof(s->desc) - len,
			        ", busy polling, budget %" PRIu64, s->conf.busy_budget);
	}
}

int
tl_sock_open(const struct tl_sock_conf *conf, const uint16_t *ports, unsigned n_ports,
        unsigned n_workers, struct tl_sock **out, char *err, size_t errlen)
{
	int cpus[CPU_SETSIZE];
	unsigned n_cpus = 0;
	struct tl_sock *s;
	int rc;

	tl_capture_err(err, errlen, "%s", "");
	if (out == NULL) {
		tl_capture_err(err, errlen, "capture.socket: no output handle");
		return -EINVAL;
	}
	*out = NULL;
	rc = check_conf(conf, ports, n_ports, n_workers, err, errlen);
	if (rc < 0)
		return rc;
	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		tl_capture_err(err, errlen, "capture.socket: out of memory");
		return -ENOMEM;
	}
	s->conf = *conf;
	s->n_ports = n_ports;
	s->n_workers = n_workers;
	memcpy(s->ports, ports, n_ports * sizeof(*ports));
	/* Slots on cache lines: every payload starts 64-byte aligned for the JSON scan. */
	s->stride = (TL_SOCK_HEADROOM + (size_t)conf->max_datagram + 63) & ~(size_t)63;
	rc = parse_address(s, err, errlen);
	if (rc < 0)
		goto fail;
	rc = tl_capture_parse_cpus(
	        conf->cpus, "capture.socket.cpus", cpus, CPU_SETSIZE, &n_cpus, err, errlen);
	if (rc < 0)
		goto fail;
	s->ctx = aligned_alloc(64, n_workers * sizeof(*s->ctx));
	if (s->ctx == NULL) {
		rc = -ENOMEM;
		goto fail;
	}
	memset(s->ctx, 0, n_workers * sizeof(*s->ctx));
	for (unsigned w = 0; w < n_workers; w++) {
		struct worker_ctx *wc = &s->ctx[w];

		wc->s = s;
		wc->id = w;
		wc->cpu = n_cpus ? cpus[w % n_cpus] : -1;
		for (unsigned p = 0; p < MAX_PORTS; p++)
			wc->fd[p] = -1;
	}
	for (unsigned w = 0; w < n_workers; w++) {
		rc = alloc_worker(s, &s->ctx[w]);
		if (rc < 0) {
			tl_capture_err(err, errlen,
			        "capture.socket: no memory for %" PRIu64
			        " receive slots of %zu bytes per worker",
			        conf->batch, s->stride);
			goto fail;
		}
	}
	for (unsigned p = 0; p < n_ports; p++) {
		rc = probe_port(s, ports[p], err, errlen);
		if (rc < 0)
			goto fail;
		for (unsigned w = 0; w < n_workers; w++) {
			rc = open_socket(s, &s->ctx[w], p, err, errlen);
			if (rc < 0)
				goto fail;
		}
	}
	describe(s);
	*out = s;
	return 0;
fail:
	tl_sock_close(s);
	return rc;
}

const char *
tl_sock_describe(const struct tl_sock *s)
{
	return s ? s->desc : "socket: not open";
}

/* --- receive --- */

/* The datagram's addresses as the synthetic header needs them. */
struct dgram_addr {
	uint8_t version;
	uint8_t src[16];
	uint8_t dst[16];
	uint16_t sport;
};

static const uint8_t v4_mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/*
 * Read the control messages (every datagram's, truncated ones included: the drop count
 * rides on whatever datagram comes next) and the source address.
 */
static void
read_meta(struct worker_ctx *wc, unsigned p, struct msghdr *mh, struct dgram_addr *a)
{
	const struct tl_sock *s = wc->s;
	const union sockname *from = mh->msg_name;
	bool have_dst = false;

	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c != NULL; c = CMSG_NXTHDR(mh, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL &&
		        c->cmsg_len >= CMSG_LEN(sizeof(uint32_t))) {
			uint32_t v;

			/* sk_drops when the datagram was queued: cumulative, 32 bits. The
			 * cmsg is absent while the count is still 0. */
			memcpy(&v, CMSG_DATA(c), sizeof(v));
			tl_capture_count(&wc->rx_dropped, (uint32_t)(v - wc->ovfl_seen[p]));
			wc->ovfl_seen[p] = v;
		} else if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO &&
		           c->cmsg_len >= CMSG_LEN(sizeof(struct in_pktinfo))) {
			struct in_pktinfo pi;

			memcpy(&pi, CMSG_DATA(c), sizeof(pi));
			memcpy(a->dst, &pi.ipi_addr, 4);
			have_dst = true;
		} else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO &&
		           c->cmsg_len >= CMSG_LEN(sizeof(struct in6_pktinfo))) {
			struct in6_pktinfo pi;

			memcpy(&pi, CMSG_DATA(c), sizeof(pi));
			memcpy(a->dst, &pi.ipi6_addr, 16);
			have_dst = true;
		}
	}
	if (!have_dst) /* not expected: the bound address is the best guess */
		memcpy(a->dst,
		        s->family == AF_INET ? (const void *)&s->addr.in.sin_addr
		                             : (const void *)&s->addr.in6.sin6_addr,
		        s->family == AF_INET ? 4 : 16);
	if (s->family == AF_INET) {
		a->version = 4;
		memcpy(a->src, &from->in.sin_addr, 4);
		a->sport = ntohs(from->in.sin_port);
		return;
	}
	a->sport = ntohs(from->in6.sin6_port);
	if (memcmp(from->in6.sin6_addr.s6_addr, v4_mapped_prefix, 12) == 0) {
		/* IPv4 through a dual-stack socket: an IPv4 frame, as the wire had it. */
		a->version = 4;
		memcpy(a->src, from->in6.sin6_addr.s6_addr + 12, 4);
		if (memcmp(a->dst, v4_mapped_prefix, 12) == 0)
			memmove(a->dst, a->dst + 12, 4);
		else
			memset(a->dst, 0, 4);
	} else {
		a->version = 6;
		memcpy(a->src, from->in6.sin6_addr.s6_addr, 16);
	}
}

/*
 * Write Ethernet + IP + UDP in front of @p payload (TL_SOCK_HEADROOM bytes are there)
 * and return the frame length, or 0 if the datagram cannot be described by one IP
 * packet (only possible with max_datagram above 65507).
 *
 * The frame is a valid packet in its own right, so nothing downstream depends on the
 * hardware flags to accept it: IPv4 gets its header checksum and UDP checksum 0 ("none",
 * legal over IPv4); IPv6 forbids 0, so its UDP checksum is computed (one pass over a
 * payload the copy from the kernel just brought into cache).
 */
static inline uint32_t
synth_frame(
        uint8_t *payload, uint32_t len, const struct dgram_addr *a, uint16_t dport, uint8_t **frame)
{
	uint8_t *f, *ip, *udp;
	uint16_t c;

	if (a->version == 4) {
		if (unlikely(len > 65535u - IPV4_HDR_LEN - UDP_HDR_LEN))
			return 0;
		f = payload - V4_FRAME_HDR;
		ip = f + ETH_HDR_LEN;
		udp = ip + IPV4_HDR_LEN;
		memset(f, 0, 12); /* MACs: no link layer here */
		wr16(f + 12, ETHERTYPE_IPV4);
		ip[0] = 0x45;
		ip[1] = 0;
		wr16(ip + 2, IPV4_HDR_LEN + UDP_HDR_LEN + len);
		wr16(ip + 4, 0);      /* id: never fragmented */
		wr16(ip + 6, 0x4000); /* DF */
		ip[8] = SYNTH_TTL;
		ip[9] = NH_UDP;
		wr16(ip + 10, 0);
		memcpy(ip + 12, a->src, 4);
		memcpy(ip + 16, a->dst, 4);
		c = tl_cksum(ip, IPV4_HDR_LEN);
		memcpy(ip + 10, &c, 2); /* already in network order */
		wr16(udp, a->sport);
		wr16(udp + 2, dport);
		wr16(udp + 4, UDP_HDR_LEN + len);
		wr16(udp + 6, 0);
		*frame = f;
		return V4_FRAME_HDR + len;
	}
	if (unlikely(len > 65535u - UDP_HDR_LEN))
		return 0;
	f = payload - V6_FRAME_HDR;
	ip = f + ETH_HDR_LEN;
	udp = ip + IPV6_HDR_LEN;
	memset(f, 0, 12);
	wr16(f + 12, ETHERTYPE_IPV6);
	ip[0] = 0x60;
	ip[1] = 0;
	ip[2] = 0;
	ip[3] = 0;
	wr16(ip + 4, UDP_HDR_LEN + len);
	ip[6] = NH_UDP;
	ip[7] = SYNTH_TTL;
	memcpy(ip + 8, a->src, 16);
	memcpy(ip + 24, a->dst, 16);
	wr16(udp, a->sport);
	wr16(udp + 2, dport);
	wr16(udp + 4, UDP_HDR_LEN + len);
	wr16(udp + 6, 0);
	c = tl_cksum_l4(a->src, a->dst, 16, NH_UDP, udp, UDP_HDR_LEN + len);
	if (c == 0)
		c = 0xffff; /* RFC 768: a computed 0 is sent as all ones */
	memcpy(udp + 6, &c, 2);
	*frame = f;
	return V6_FRAME_HDR + len;
}

/* One recvmmsg() on the socket of port index @p p; every datagram goes down the pipeline.
 * @return datagrams received (truncated ones included). */
static unsigned
rx_socket(struct worker_ctx *wc, unsigned p, uint64_t now)
{
	const struct tl_sock *s = wc->s;
	const uint16_t dport = s->ports[p];
	int n = recvmmsg(wc->fd[p], wc->rx_msgs, (unsigned)s->conf.batch, MSG_DONTWAIT, NULL);

	if (n <= 0) {
		int e = errno;

		if (n < 0 && e != EAGAIN && e != EWOULDBLOCK && e != EINTR)
			TL_LOG_RATELIMITED(TL_LOG_WARN, 1,
			        "socket worker %u: recvmmsg on port %u: %s", wc->id, dport,
			        tl_strerror(-e));
		return 0;
	}
	for (int i = 0; i < n; i++) {
		struct msghdr *mh = &wc->rx_msgs[i].msg_hdr;
		uint8_t *payload = wc->rx_iov[i].iov_base, *frame = NULL;
		struct dgram_addr a;
		uint32_t flen = 0;

		read_meta(wc, p, mh, &a);
		if (likely(!(mh->msg_flags & MSG_TRUNC)))
			flen = synth_frame(payload, wc->rx_msgs[i].msg_len, &a, dport, &frame);
		if (likely(flen != 0))
			tl_pipeline_rx(wc->pw, frame, flen,
			        TL_HW_IP_CKSUM_GOOD | TL_HW_L4_CKSUM_GOOD, now);
		else
			tl_capture_count(&wc->rx_truncated, 1);
		/* The kernel wrote the lengths back: reset them for the next call. */
		mh->msg_namelen = sizeof(wc->rx_name[i]);
		mh->msg_controllen = sizeof(wc->rx_ctrl[i].b);
		mh->msg_flags = 0;
	}
	return (unsigned)n;
}

static unsigned
rx_all(struct worker_ctx *wc, uint64_t now)
{
	unsigned n = 0;

	for (unsigned p = 0; p < wc->s->n_ports; p++)
		n += rx_socket(wc, p, now);
	return n;
}

/* --- replies --- */

static void
tx_flush(struct worker_ctx *wc)
{
	unsigned i = 0, n = wc->tx_n;

	/* One sendmmsg() per run of replies from the same socket (usually all of them). */
	while (i < n) {
		unsigned p = wc->tx_port[i], run = 1;
		int r, e;

		while (i + run < n && wc->tx_port[i + run] == p)
			run++;
		r = sendmmsg(wc->fd[p], &wc->tx_msgs[i], run, MSG_DONTWAIT);
		e = errno;
		if (r > 0) {
			tl_capture_count(&wc->tx_frames, (uint64_t)r);
			i += (unsigned)r;
		} else if (e == EAGAIN || e == EWOULDBLOCK || e == ENOBUFS) {
			/* Send buffer full: as with a full TX queue, an ACK that waits is worth no
			 * more than the one the producer will ask for again. */
			tl_capture_count(&wc->tx_dropped, run);
			i += run;
		} else {
			/* This reply alone is refused (no route, ...): skip it. */
			TL_LOG_RATELIMITED(TL_LOG_WARN, 1,
			        "socket worker %u: reply from port %u: %s", wc->id, wc->s->ports[p],
			        tl_strerror(-e));
			tl_capture_count(&wc->tx_dropped, 1);
			i++;
		}
	}
	wc->tx_n = 0;
}

/*
 * The pipeline's tl_tx_fn: runs on the worker's thread only. The reply frame (from
 * tl_reply_build()) is read back with the pipeline's own decoder; its UDP payload goes to
 * the frame's destination from the socket bound to the frame's source port, and with the
 * frame's source address (IP_PKTINFO / IPV6_PKTINFO), so a multi-homed host answers from
 * the address the producer wrote to. The kernel computes the real checksums.
 */
static int
tx_frame(void *arg, const uint8_t *frame, uint32_t len)
{
	struct worker_ctx *wc = arg;
	const struct tl_sock *s = wc->s;
	struct tl_l3_view l3;
	struct tl_udp_view u;
	struct msghdr *mh;
	struct cmsghdr *c;
	unsigned p, slot;

	if (unlikely(len > TX_FRAME_MAX)) {
		tl_capture_count(&wc->tx_dropped, 1);
		return -EMSGSIZE;
	}
	if (tl_decode_frame(frame, len, TL_HW_IP_CKSUM_GOOD | TL_HW_L4_CKSUM_GOOD, &l3) !=
	                TL_REASON_OK ||
	        l3.is_fragment || tl_decode_udp(&l3, l3.l4, l3.l4_len, false, &u) != TL_REASON_OK)
		goto unsupported;
	for (p = 0; p < s->n_ports && s->ports[p] != u.sport; p++)
		;
	/* Not from a telemetry port, or IPv6 on an IPv4 socket: no socket can send it. */
	if (p == s->n_ports || (l3.ip_version == 6 && s->family == AF_INET))
		goto unsupported;
	if (wc->tx_n == TX_BATCH)
		tx_flush(wc);
	slot = wc->tx_n;
	mh = &wc->tx_msgs[slot].msg_hdr;
	memcpy(wc->tx_iov[slot].iov_base, u.payload, u.len);
	wc->tx_iov[slot].iov_len = u.len;
	memset(&wc->tx_name[slot], 0, sizeof(wc->tx_name[slot]));
	memset(&wc->tx_ctrl[slot], 0, sizeof(wc->tx_ctrl[slot]));
	c = (struct cmsghdr *)wc->tx_ctrl[slot].b;
	if (s->family == AF_INET) {
		struct sockaddr_in *to = &wc->tx_name[slot].in;
		struct in_pktinfo pi;

		to->sin_family = AF_INET;
		to->sin_port = htons(u.dport);
		memcpy(&to->sin_addr, l3.dst, 4);
		mh->msg_namelen = sizeof(*to);
		memset(&pi, 0, sizeof(pi));
		memcpy(&pi.ipi_spec_dst, l3.src, 4);
		c->cmsg_level = IPPROTO_IP;
		c->cmsg_type = IP_PKTINFO;
		c->cmsg_len = CMSG_LEN(sizeof(pi));
		memcpy(CMSG_DATA(c), &pi, sizeof(pi));
		mh->msg_controllen = CMSG_SPACE(sizeof(pi));
	} else {
		struct sockaddr_in6 *to = &wc->tx_name[slot].in6;
		struct in6_pktinfo pi;

		/* IPv4 from a dual-stack socket: both addresses v4-mapped (the kernel takes
		 * a v4-mapped IPV6_PKTINFO as the IPv4 source). */
		to->sin6_family = AF_INET6;
		to->sin6_port = htons(u.dport);
		memset(&pi, 0, sizeof(pi));
		if (l3.ip_version == 4) {
			memcpy(to->sin6_addr.s6_addr, v4_mapped_prefix, 12);
			memcpy(to->sin6_addr.s6_addr + 12, l3.dst, 4);
			memcpy(pi.ipi6_addr.s6_addr, v4_mapped_prefix, 12);
			memcpy(pi.ipi6_addr.s6_addr + 12, l3.src, 4);
		} else {
			memcpy(to->sin6_addr.s6_addr, l3.dst, 16);
			memcpy(pi.ipi6_addr.s6_addr, l3.src, 16);
		}
		/* A link-local producer is reachable only through a socket bound to a
		 * scoped address: the frame carries no interface. */
		to->sin6_scope_id = s->addr.in6.sin6_scope_id;
		mh->msg_namelen = sizeof(*to);
		c->cmsg_level = IPPROTO_IPV6;
		c->cmsg_type = IPV6_PKTINFO;
		c->cmsg_len = CMSG_LEN(sizeof(pi));
		memcpy(CMSG_DATA(c), &pi, sizeof(pi));
		mh->msg_controllen = CMSG_SPACE(sizeof(pi));
	}
	mh->msg_flags = 0;
	wc->tx_port[slot] = (uint8_t)p;
	wc->tx_n++;
	return 0;
unsupported:
	tl_capture_count(&wc->tx_dropped, 1);
	return -ENOTSUP;
}

/* --- workers --- */

static inline bool
stopping(const struct worker_ctx *wc)
{
	return (wc->stop != NULL && __atomic_load_n(wc->stop, __ATOMIC_RELAXED)) ||
	       __atomic_load_n(&wc->s->halt, __ATOMIC_RELAXED);
}

/* Every worker has received nothing for @p idle ns (their clocks are one clock). */
static bool
all_idle(const struct tl_sock *s, uint64_t now, uint64_t idle)
{
	for (unsigned w = 0; w < s->n_workers; w++) {
		uint64_t last = __atomic_load_n(&s->ctx[w].last_rx_ns, __ATOMIC_RELAXED);

		/* Another worker may have read the clock after this one did. */
		if (last > now || now - last < idle)
			return false;
	}
	return true;
}

/* Sleep until a socket is readable or @p ns passed. Offline meanwhile: a reload never
 * waits for a sleeping worker. */
static void
sleep_idle(struct worker_ctx *wc, uint64_t ns)
{
	struct timespec ts = {
	        .tv_sec = (time_t)(ns / 1000000000ull), .tv_nsec = (long)(ns % 1000000000ull)};

	tl_pipeline_offline(wc->pw);
	if (ppoll(wc->pfd, wc->s->n_ports, &ts, NULL) < 0) {
		int e = errno;

		if (e != EINTR)
			TL_LOG_RATELIMITED(TL_LOG_WARN, 1, "socket worker %u: poll: %s", wc->id,
			        tl_strerror(-e));
	}
	tl_pipeline_online(wc->pw);
}

static void *
worker_main(void *arg)
{
	struct worker_ctx *wc = arg;
	const struct tl_sock *s = wc->s;
	const uint64_t tick = s->conf.tick;
	uint64_t now = tl_mono_ns(), last_rx = now, last_tick = now;
	unsigned n;

	TL_INFO("socket worker %u reads %u port%s on %s%s", wc->id, s->n_ports,
	        s->n_ports == 1 ? "" : "s", s->conf.address, wc->cpu >= 0 ? " (pinned)" : "");
	tl_pipeline_online(wc->pw);
	while (!stopping(wc)) {
		/* The previous burst is done with its generation. */
		tl_pipeline_quiescent(wc->pw);
		n = rx_all(wc, now);
		now = tl_mono_ns();
		/* Housekeeping on a clock, busy or idle, as in the DPDK loop. */
		if (unlikely(now - last_tick >= tick)) {
			tl_pipeline_tick(wc->pw, now);
			tx_flush(wc); /* a tick can commit a batch and so acknowledge frames */
			last_tick = now;
		}
		if (n == 0) {
			if (wc->idle_stop_ns && now - last_rx >= wc->idle_stop_ns &&
			        all_idle(s, now, wc->idle_stop_ns)) {
				__atomic_store_n(&wc->s->halt, 1, __ATOMIC_RELAXED);
				break;
			}
			/* Until the next tick at most: now - last_tick < tick here. */
			sleep_idle(wc, last_tick + tick - now);
			now = tl_mono_ns();
			continue;
		}
		last_rx = now;
		__atomic_store_n(&wc->last_rx_ns, now, __ATOMIC_RELAXED);
		tx_flush(wc);
	}
	/* Drain what the kernel already queued, bounded so a flood cannot keep us here. */
	for (int i = 0; i < DRAIN_ROUNDS; i++) {
		tl_pipeline_quiescent(wc->pw);
		n = rx_all(wc, tl_mono_ns());
		tx_flush(wc);
		if (n == 0)
			break;
	}
	/* Datagrams still missing fragments never complete now, and whatever the sink
	 * still holds goes out. */
	tl_pipeline_tick(wc->pw, UINT64_MAX);
	tx_flush(wc);
	tl_pipeline_offline(wc->pw);
	return NULL;
}

int
tl_sock_run(struct tl_sock *s, struct tl_pipeline_worker *workers, uint64_t idle_stop_ns,
        volatile int *stop)
{
	const uint64_t now = tl_mono_ns();
	unsigned started = 0;
	int rc = 0;

	if (s == NULL || workers == NULL)
		return -EINVAL;
	__atomic_store_n(&s->halt, 0, __ATOMIC_RELAXED);
	for (unsigned w = 0; w < s->n_workers; w++) {
		struct worker_ctx *wc = &s->ctx[w];

		wc->pw = &workers[w];
		wc->idle_stop_ns = idle_stop_ns;
		wc->stop = stop;
		/* Idle time counts from now, not from a previous run. */
		__atomic_store_n(&wc->last_rx_ns, now, __ATOMIC_RELAXED);
		tl_pipeline_set_tx(wc->pw, tx_frame, wc);
	}
	for (unsigned w = 0; w < s->n_workers; w++) {
		struct worker_ctx *wc = &s->ctx[w];
		pthread_attr_t attr;
		char name[32];

		rc = pthread_attr_init(&attr);
		if (rc == 0 && wc->cpu >= 0) {
			cpu_set_t set;

			/* Pinned before it runs: its first allocation lands on its node. */
			CPU_ZERO(&set);
			CPU_SET(wc->cpu, &set);
			rc = pthread_attr_setaffinity_np(&attr, sizeof(set), &set);
		}
		if (rc == 0)
			rc = pthread_create(&wc->thread, &attr, worker_main, wc);
		pthread_attr_destroy(&attr);
		if (rc != 0) {
			TL_ERR("capture.socket: cannot start worker %u%s: %s", w,
			        wc->cpu >= 0 ? " (pinned, capture.socket.cpus)" : "",
			        tl_strerror(-rc));
			__atomic_store_n(&s->halt, 1, __ATOMIC_RELAXED);
			rc = -rc;
			break;
		}
		snprintf(name, sizeof(name), "tl-sock-%u", w);
		name[15] = '\0'; /* the kernel's limit for thread names */
		pthread_setname_np(wc->thread, name);
		started++;
	}
	for (unsigned w = 0; w < started; w++)
		pthread_join(s->ctx[w].thread, NULL);
	return rc;
}

void
tl_sock_stats(struct tl_sock *s, struct tl_counters *c)
{
	if (s == NULL || c == NULL)
		return;
	for (unsigned w = 0; s->ctx && w < s->n_workers; w++) {
		const struct worker_ctx *wc = &s->ctx[w];

		c->rx_missed += __atomic_load_n(&wc->rx_dropped, __ATOMIC_RELAXED) +
		                __atomic_load_n(&wc->rx_truncated, __ATOMIC_RELAXED);
		c->tx_frames += __atomic_load_n(&wc->tx_frames, __ATOMIC_RELAXED);
		c->tx_dropped += __atomic_load_n(&wc->tx_dropped, __ATOMIC_RELAXED);
	}
}

void
tl_sock_close(struct tl_sock *s)
{
	if (s == NULL)
		return;
	for (unsigned w = 0; s->ctx && w < s->n_workers; w++) {
		struct worker_ctx *wc = &s->ctx[w];

		for (unsigned p = 0; p < MAX_PORTS; p++)
			if (wc->fd[p] >= 0)
				close(wc->fd[p]);
		free(wc->rx_buf);
		free(wc->rx_msgs);
		free(wc->rx_iov);
		free(wc->rx_name);
		free(wc->rx_ctrl);
		free(wc->tx_data);
	}
	free(s->ctx);
	free(s);
}
