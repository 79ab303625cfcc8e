/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Native AF_XDP capture: tapline's XDP program (tl_xdp.bpf.c, through its libbpf
 * skeleton) and one AF_XDP socket per RX queue (libxdp's xsk API), one worker thread each.
 *
 * Attaching. The program is attached through a BPF link (bpf_link_create(BPF_XDP)), not
 * through netlink and not under libxdp's multiprog dispatcher:
 *  - the link belongs to this process: a killed run's link is released by the kernel
 *    with its file descriptors, so a crash leaves nothing attached, and while we run
 *    nobody can replace the program by netlink (the kernel answers EBUSY);
 *  - a tapline program found attached by netlink (an older build, `ip link set xdp`,
 *    xdp-loader) is recognised by its name, tapline_xdp, and detached with
 *    XDP_FLAGS_REPLACE so that only that very program goes; one held by a link is a
 *    tapline running now and is left alone (-EBUSY);
 *  - any other program (including libxdp's xdp_dispatcher) is someone else's: -EBUSY,
 *    nothing is touched. tapline owns the interface's XDP hook or does not start.
 * Nothing is pinned, so bpffs is not needed.
 *
 * Sockets. Each worker has its own UMEM of conf.frames frames: a quarter (at most a ring's
 * worth) are reserved for transmit, the rest receive. Receive frames not in the fill ring
 * wait on a free stack; every frame handed back by the RX ring returns to it after
 * tl_pipeline_rx() and goes back to the fill ring at once. `auto` binds with
 * XDP_ZEROCOPY first and, if the driver refuses, with XDP_COPY on the same UMEM (libxdp
 * keeps the UMEM's rings across a failed bind); the socket's XDP_OPTIONS tell what we
 * got. Generic (SKB) mode always binds in copy mode.
 *
 * The worker loop is the DPDK driver's (tl_dpdk.c worker_main). Nothing in it allocates:
 * the free stacks, rings and UMEM are made at open.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <linux/ethtool.h>
#include <linux/if_link.h>
#include <linux/if_xdp.h>
#include <linux/sockios.h>
#include <net/if.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <xdp/libxdp.h>
#include <xdp/xsk.h>

#include "tl_capture.h"
#include "tl_time.h"
#include "tl_log.h"
#include "tl_pipeline.h"
#include "tl_xdp.h"
#include "tl_xdp.skel.h"

#ifndef SOL_XDP
#define SOL_XDP 283
#endif

#ifndef likely
#define likely(x) __builtin_expect(!!(x), 1)
#endif
#ifndef unlikely
#define unlikely(x) __builtin_expect(!!(x), 0)
#endif

#define PROG_NAME "tapline_xdp" /* tl_xdp.bpf.c: how a stale program is recognised */
#define MAX_WORKERS 256
#define MAX_BATCH 1024
#define MAX_QUEUE 4095
#define MAX_CPUS 256
#define DRAIN_BURSTS 1024
#define MONITOR_NS 2000000ull /* tl_xdp_run's check for idle workers */
#define BUSY_RETRIES 40       /* binds to a queue still held by a closed socket ... */
#define BUSY_WAIT_NS 25000000 /* ... every 25 ms, 1 s in all */

#define CAP_NET_ADMIN_BIT 12
#define CAP_NET_RAW_BIT 13
#define CAP_SYS_ADMIN_BIT 21
#define CAP_BPF_BIT 39

const char *const tl_xdp_mode_names[] = {"auto", "zerocopy", "copy", NULL};

/* clang-format off */
const struct tl_opt tl_xdp_opts[] = {
	{.name = "interface", .type = TL_OPT_STRING,
		.offset = offsetof(struct tl_xdp_conf, interface),
		.size = sizeof(((struct tl_xdp_conf *)0)->interface),
		.desc = "network interface to capture on (required with driver xdp)"},
	{.name = "queue", .type = TL_OPT_UINT, .def = "0",
		.offset = offsetof(struct tl_xdp_conf, queue), .min = 0, .max = MAX_QUEUE,
		.desc = "first RX queue; worker i takes queue + i"},
	{.name = "mode", .type = TL_OPT_ENUM, .def = "auto",
		.offset = offsetof(struct tl_xdp_conf, mode), .enums = tl_xdp_mode_names,
		.desc = "auto: zero-copy if the driver can, else copy; zerocopy: or fail; copy"},
	{.name = "skb_mode", .type = TL_OPT_BOOL, .def = "false",
		.offset = offsetof(struct tl_xdp_conf, skb_mode),
		.desc = "attach in generic (SKB) mode; default native, generic if refused"},
	{.name = "frames", .type = TL_OPT_UINT, .def = "4096",
		.offset = offsetof(struct tl_xdp_conf, frames), .min = 64, .max = 1u << 20,
		.desc = "UMEM frames per socket (power of two)"},
	{.name = "frame_size", .type = TL_OPT_SIZE, .def = "4096",
		.offset = offsetof(struct tl_xdp_conf, frame_size), .min = 2048, .max = 4096,
		.desc = "UMEM frame size: 2048 or 4096"},
	{.name = "ring_size", .type = TL_OPT_UINT, .def = "2048",
		.offset = offsetof(struct tl_xdp_conf, ring_size), .min = 64, .max = 65536,
		.desc = "RX/TX/fill/completion ring entries (power of two)"},
	{.name = "batch", .type = TL_OPT_UINT, .def = "64",
		.offset = offsetof(struct tl_xdp_conf, batch), .min = 1, .max = MAX_BATCH,
		.desc = "frames per RX poll"},
	{.name = "tick", .type = TL_OPT_DURATION, .def = "1ms",
		.offset = offsetof(struct tl_xdp_conf, tick), .min = 10000, .max = 1000000000ull,
		.desc = "housekeeping interval (reassembly expiry, batch flush by age)"},
	{.name = "busy_poll", .type = TL_OPT_BOOL, .def = "false",
		.offset = offsetof(struct tl_xdp_conf, busy_poll),
		.desc = "spin on the rings instead of sleeping in poll() when idle"},
	{.name = "busy_budget", .type = TL_OPT_UINT, .def = "64",
		.offset = offsetof(struct tl_xdp_conf, busy_budget), .min = 0, .max = 1024,
		.desc = "preferred NAPI busy polling: frames the kernel receives per call in the "
			"worker's own thread (full effect when the interface sets "
			"napi_defer_hard_irqs and gro_flush_timeout); 0: off"},
	{.name = "busy_usecs", .type = TL_OPT_UINT, .def = "20",
		.offset = offsetof(struct tl_xdp_conf, busy_usecs), .min = 1, .max = 1000,
		.desc = "SO_BUSY_POLL of the sockets, microseconds (with busy_budget)"},
	{.name = "cpus", .type = TL_OPT_STRING, .offset = offsetof(struct tl_xdp_conf, cpus),
		.size = sizeof(((struct tl_xdp_conf *)0)->cpus),
		.desc = "CPU list to pin workers to, e.g. \"1,3\" or \"2-5\" (empty: not pinned)"},
	{.name = NULL},
};
/* clang-format on */

/* The layout of struct tl_xdp_counters in tl_xdp.bpf.c (checked against the map's value
 * size at load). */
struct prog_counters {
	uint64_t redirected;
	uint64_t passed;
	uint64_t parse_failed;
	uint64_t redirect_failed;
};

/* One per RX queue. The rings and free stacks are touched by the worker thread only;
 * the counters have a single writer (relaxed stores) and are read by tl_xdp_stats(). */
struct worker_ctx {
	struct xsk_ring_cons rx;
	struct xsk_ring_prod fq;
	struct xsk_ring_prod tx;
	struct xsk_ring_cons cq;
	uint8_t *area;
	uint64_t area_len;
	uint64_t frame_mask;
	struct tl_pipeline_worker *pw;
	struct tl_xdp *x;
	volatile int *stop;
	int fd;
	uint32_t queue;
	uint64_t *rx_free; /* receive frames not in the fill ring */
	uint32_t n_rx_free, n_rx_frames;
	uint64_t *tx_free; /* transmit frames not in the TX or completion ring */
	uint32_t n_tx_free, n_tx_frames;
	uint32_t tx_pending;  /* written to the TX ring, not yet submitted */
	uint32_t tx_inflight; /* submitted, not yet completed */
	uint64_t tx_frames;   /* submitted to the kernel */
	uint64_t tx_dropped;  /* too long, or no frame / ring slot free */
	uint64_t last_rx_ns;  /* the monitor reads it for idle_stop_ns */
	int running;
	bool zerocopy;
	bool busy; /* preferred busy polling is on: empty receive calls run the NAPI poll */
	int zc_errno; /* auto mode: why zero-copy was refused */
	struct xsk_umem *umem;
	struct xsk_socket *xsk;
	pthread_t thread;
} __attribute__((aligned(64)));

struct tl_xdp {
	struct tl_xdp_conf conf;
	unsigned ifindex;
	unsigned n_workers;
	struct tl_xdp_bpf *skel;
	int link_fd;
	bool native;
	int native_errno; /* why native mode was refused (0: it was not tried or not refused) */
	bool zerocopy;
	int zc_errno; /* auto mode: why the driver refused zero-copy (0: not refused) */
	int busy_errno; /* why a socket refused busy polling (0: it did not) */
	int halt;     /* set by the monitor in tl_xdp_run() when every worker is idle */
	int ncpus;
	int cpus[MAX_CPUS];
	unsigned n_cpus;
	struct worker_ctx *w;
	char desc[512];
};

/* --- helpers --- */

static bool
is_pow2(uint64_t v)
{
	return v && (v & (v - 1)) == 0;
}

/* libbpf and libxdp print through these: their warnings (the verifier's log among them)
 * become debug messages, since every failure is reported by tl_xdp_open() itself. */
static void __attribute__((format(printf, 2, 0)))
lib_vlog(const char *lib, const char *fmt, va_list ap)
{
	char buf[4096];
	size_t n;

	vsnprintf(buf, sizeof(buf), fmt, ap);
	n = strlen(buf);
	while (n > 0 && buf[n - 1] == '\n')
		buf[--n] = '\0';
	if (n > 0)
		TL_DEBUG("%s: %s", lib, buf);
}

static int __attribute__((format(printf, 2, 0)))
libbpf_log(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (level != LIBBPF_DEBUG)
		lib_vlog("libbpf", fmt, ap);
	return 0;
}

static int __attribute__((format(printf, 2, 0)))
libxdp_log(enum libxdp_print_level level, const char *fmt, va_list ap)
{
	if (level != LIBXDP_DEBUG)
		lib_vlog("libxdp", fmt, ap);
	return 0;
}

static void
set_print_once(void)
{
	libbpf_set_print(libbpf_log);
	libxdp_set_print(libxdp_log);
}

/* Effective capabilities from /proc (no libcap): loading needs CAP_BPF (or
 * CAP_SYS_ADMIN), attaching CAP_NET_ADMIN, an AF_XDP socket CAP_NET_RAW. */
static int
check_caps(char *err, size_t errlen)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	unsigned long long eff = 0;
	bool found = false;

	if (f == NULL)
		return 0; /* cannot tell: let the kernel decide */
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "CapEff: %llx", &eff) == 1) {
			found = true;
			break;
		}
	fclose(f);
	if (!found)
		return 0;
	if (!(eff & (1ull << CAP_NET_ADMIN_BIT)) || !(eff & (1ull << CAP_NET_RAW_BIT)) ||
	        !(eff & ((1ull << CAP_BPF_BIT) | (1ull << CAP_SYS_ADMIN_BIT)))) {
		tl_capture_err(err, errlen,
		        "xdp: not permitted: the AF_XDP driver needs root or CAP_NET_ADMIN, "
		        "CAP_NET_RAW and CAP_BPF (or CAP_SYS_ADMIN)%s%s%s",
		        eff & (1ull << CAP_NET_ADMIN_BIT) ? "" : "; CAP_NET_ADMIN missing",
		        eff & (1ull << CAP_NET_RAW_BIT) ? "" : "; CAP_NET_RAW missing",
		        eff & ((1ull << CAP_BPF_BIT) | (1ull << CAP_SYS_ADMIN_BIT))
		                ? ""
		                : "; CAP_BPF missing");
		return -EPERM;
	}
	return 0;
}

static int
check_conf(const struct tl_xdp_conf *c, const uint16_t *ports, unsigned n_ports, unsigned n_workers,
        char *err, size_t errlen)
{
	size_t len = strnlen(c->interface, sizeof(c->interface));

	if (len == 0) {
		tl_capture_err(err, errlen, "xdp: capture.xdp.interface is not set");
		return -EINVAL;
	}
	if (len >= IFNAMSIZ) {
		tl_capture_err(err, errlen,
		        "xdp: interface name '%.*s' is longer than %d characters", (int)len,
		        c->interface, IFNAMSIZ - 1);
		return -EINVAL;
	}
	if (n_workers == 0 || n_workers > MAX_WORKERS) {
		tl_capture_err(err, errlen, "xdp: %u workers (1-%d)", n_workers, MAX_WORKERS);
		return -EINVAL;
	}
	if (ports == NULL || n_ports == 0) {
		tl_capture_err(err, errlen, "xdp: no telemetry port");
		return -EINVAL;
	}
	for (unsigned i = 0; i < n_ports; i++)
		if (ports[i] == 0) {
			tl_capture_err(err, errlen, "xdp: UDP port 0 is not a telemetry port");
			return -EINVAL;
		}
	if (c->mode < TL_XDP_MODE_AUTO || c->mode > TL_XDP_MODE_COPY) {
		tl_capture_err(err, errlen, "xdp: capture.xdp.mode %d unknown", c->mode);
		return -EINVAL;
	}
	if (!is_pow2(c->frames) || c->frames < 64 || c->frames > (1u << 20)) {
		tl_capture_err(err, errlen,
		        "xdp: capture.xdp.frames %" PRIu64 " must be a power of two, 64-1048576",
		        c->frames);
		return -EINVAL;
	}
	if (c->frame_size != 2048 && c->frame_size != 4096) {
		tl_capture_err(err, errlen,
		        "xdp: capture.xdp.frame_size %" PRIu64 " must be 2048 or 4096",
		        c->frame_size);
		return -EINVAL;
	}
	if (!is_pow2(c->ring_size) || c->ring_size < 64 || c->ring_size > 65536) {
		tl_capture_err(err, errlen,
		        "xdp: capture.xdp.ring_size %" PRIu64 " must be a power of two, 64-65536",
		        c->ring_size);
		return -EINVAL;
	}
	if (c->mode == TL_XDP_MODE_ZEROCOPY && c->skb_mode) {
		tl_capture_err(err, errlen,
		        "xdp: capture.xdp.mode zerocopy needs native mode (capture.xdp.skb_mode: "
		        "false)");
		return -EINVAL;
	}
	if (c->batch == 0 || c->batch > MAX_BATCH) {
		tl_capture_err(err, errlen, "xdp: capture.xdp.batch %" PRIu64 " (1-%d)", c->batch,
		        MAX_BATCH);
		return -EINVAL;
	}
	if (c->tick == 0) {
		tl_capture_err(err, errlen, "xdp: capture.xdp.tick must not be 0");
		return -EINVAL;
	}
	if (c->queue + n_workers > MAX_QUEUE + 1) {
		tl_capture_err(err, errlen, "xdp: queues %" PRIu64 "-%" PRIu64 " beyond %d",
		        c->queue, c->queue + n_workers - 1, MAX_QUEUE);
		return -EINVAL;
	}
	return 0;
}

/* The interface's RX queue count, if its driver reports channels; 0 if it does not. */
static unsigned
rx_queues(const char *ifname)
{
	struct ethtool_channels ch = {.cmd = ETHTOOL_GCHANNELS};
	struct ifreq ifr;
	int fd = socket(AF_LOCAL, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	unsigned n = 0;

	if (fd < 0)
		return 0;
	memset(&ifr, 0, sizeof(ifr));
	memcpy(ifr.ifr_name, ifname, strnlen(ifname, IFNAMSIZ - 1)); /* checked: < IFNAMSIZ */
	ifr.ifr_data = (void *)&ch;
	if (ioctl(fd, SIOCETHTOOL, &ifr) == 0)
		n = ch.rx_count + ch.combined_count;
	close(fd);
	return n;
}

/* --- the program --- */

static int
load_prog(struct tl_xdp *x, const uint16_t *ports, unsigned n_ports, char *err, size_t errlen)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	uint64_t *bits;
	uint32_t zero = 0;
	int rc;

	pthread_once(&once, set_print_once);
	x->skel = tl_xdp_bpf__open();
	if (x->skel == NULL) {
		rc = -errno;
		tl_capture_err(err, errlen, "xdp: cannot open the XDP program: %s", strerror(-rc));
		return rc;
	}
	rc = bpf_map__set_max_entries(
	        x->skel->maps.tl_xsks, (uint32_t)(x->conf.queue + x->n_workers));
	if (rc == 0)
		rc = tl_xdp_bpf__load(x->skel);
	if (rc < 0) {
		if (rc == -EPERM) {
			tl_capture_err(err, errlen,
			        "xdp: the kernel did not permit loading the XDP program (%s): "
			        "needs root or CAP_BPF and CAP_NET_ADMIN",
			        strerror(-rc));
			return -EPERM;
		}
		tl_capture_err(err, errlen,
		        "xdp: the kernel refused tapline's XDP program: %s (log level debug "
		        "shows the verifier's log)",
		        strerror(-rc));
		return rc;
	}
	x->ncpus = libbpf_num_possible_cpus();
	if (x->ncpus <= 0 ||
	        bpf_map__value_size(x->skel->maps.tl_counters) != sizeof(struct prog_counters)) {
		tl_capture_err(err, errlen, "xdp: counter map does not match this build");
		return -EINVAL;
	}
	bits = calloc(65536 / 64, sizeof(*bits));
	if (bits == NULL)
		return -ENOMEM;
	for (unsigned i = 0; i < n_ports; i++)
		bits[ports[i] >> 6] |= 1ull << (ports[i] & 63);
	rc = bpf_map__update_elem(x->skel->maps.tl_ports, &zero, sizeof(zero), bits,
	        (65536 / 64) * sizeof(*bits), BPF_ANY);
	free(bits);
	if (rc < 0) {
		tl_capture_err(
		        err, errlen, "xdp: cannot set the telemetry ports: %s", strerror(-rc));
		return rc;
	}
	return 0;
}

/* Name of program @p id into @p name; an fd on it, or -errno. */
static int
prog_by_id(uint32_t id, char *name, size_t len)
{
	struct bpf_prog_info info;
	uint32_t ilen = sizeof(info);
	int fd = bpf_prog_get_fd_by_id(id);

	if (fd < 0)
		return fd;
	memset(&info, 0, sizeof(info));
	if (bpf_obj_get_info_by_fd(fd, &info, &ilen) < 0) {
		int rc = -errno;

		close(fd);
		return rc;
	}
	snprintf(name, len, "%.*s", (int)sizeof(info.name), info.name);
	return fd;
}

/*
 * Make the interface's XDP hook free for us: detach a tapline program left attached by
 * netlink; refuse (-EBUSY) if the hook holds anything else or a link (a running tapline).
 */
static int
take_hook(struct tl_xdp *x, char *err, size_t errlen)
{
	LIBBPF_OPTS(bpf_xdp_query_opts, q);
	struct {
		uint32_t id;
		uint32_t flag;
		const char *mode;
	} m[3];
	int rc;

	rc = bpf_xdp_query((int)x->ifindex, 0, &q);
	if (rc < 0) {
		tl_capture_err(err, errlen, "xdp: cannot query the XDP programs of %s: %s",
		        x->conf.interface, strerror(-rc));
		return rc == -EPERM || rc == -EACCES ? -EPERM : rc;
	}
	m[0].id = q.drv_prog_id;
	m[0].flag = XDP_FLAGS_DRV_MODE;
	m[0].mode = "native";
	m[1].id = q.skb_prog_id;
	m[1].flag = XDP_FLAGS_SKB_MODE;
	m[1].mode = "generic";
	m[2].id = q.hw_prog_id;
	m[2].flag = XDP_FLAGS_HW_MODE;
	m[2].mode = "offloaded";
	for (int i = 0; i < 3; i++) {
		LIBBPF_OPTS(bpf_xdp_attach_opts, ao);
		char name[32] = "";
		int fd;

		if (m[i].id == 0)
			continue;
		fd = prog_by_id(m[i].id, name, sizeof(name));
		if (fd == -ENOENT)
			continue; /* detached meanwhile */
		if (fd < 0) {
			tl_capture_err(err, errlen, "xdp: cannot inspect XDP program %u on %s: %s",
			        m[i].id, x->conf.interface, strerror(-fd));
			return fd;
		}
		if (strcmp(name, PROG_NAME) != 0) {
			close(fd);
			tl_capture_err(err, errlen,
			        "xdp: %s already has XDP program '%s' (id %u, %s mode), which is "
			        "not tapline's: refusing to replace it (detach it with `ip link "
			        "set dev %s xdp off` or `xdp-loader unload`, or capture elsewhere)",
			        x->conf.interface, name, m[i].id, m[i].mode, x->conf.interface);
			return -EBUSY;
		}
		ao.old_prog_fd = fd;
		rc = bpf_xdp_detach((int)x->ifindex, m[i].flag | XDP_FLAGS_REPLACE, &ao);
		close(fd);
		if (rc == -EBUSY) {
			tl_capture_err(err, errlen,
			        "xdp: %s is being captured by another tapline (XDP program id %u "
			        "is held by a running process): stop it first",
			        x->conf.interface, m[i].id);
			return -EBUSY;
		}
		if (rc < 0 && rc != -EEXIST) { /* EEXIST: replaced meanwhile, query again */
			tl_capture_err(err, errlen,
			        "xdp: cannot detach the stale tapline XDP program %u from %s: %s",
			        m[i].id, x->conf.interface, strerror(-rc));
			return rc == -EACCES ? -EPERM : rc;
		}
		if (rc == 0)
			TL_WARN("xdp: %s: detached tapline XDP program %u (%s mode) left by an "
			        "earlier run",
			        x->conf.interface, m[i].id, m[i].mode);
		else
			return -EAGAIN;
	}
	return 0;
}

static int
link_attach(struct tl_xdp *x, uint32_t mode_flag)
{
	LIBBPF_OPTS(bpf_link_create_opts, lo, .flags = mode_flag);

	return bpf_link_create(
	        bpf_program__fd(x->skel->progs.tapline_xdp), (int)x->ifindex, BPF_XDP, &lo);
}

static int
attach_prog(struct tl_xdp *x, char *err, size_t errlen)
{
	int fd = -EOPNOTSUPP;

	if (!x->conf.skb_mode) {
		fd = link_attach(x, XDP_FLAGS_DRV_MODE);
		if (fd >= 0) {
			x->native = true;
		} else if (fd != -EPERM && fd != -EBUSY && fd != -EEXIST) {
			x->native_errno = -fd;
			if (x->conf.mode == TL_XDP_MODE_ZEROCOPY) {
				tl_capture_err(err, errlen,
				        "xdp: zero-copy needs native XDP, which %s refused: %s",
				        x->conf.interface, strerror(-fd));
				return -EOPNOTSUPP;
			}
			fd = link_attach(x, XDP_FLAGS_SKB_MODE);
		}
	} else {
		fd = link_attach(x, XDP_FLAGS_SKB_MODE);
	}
	if (fd >= 0) {
		x->link_fd = fd;
		return 0;
	}
	switch (fd) {
	case -EPERM:
	case -EACCES:
		tl_capture_err(err, errlen,
		        "xdp: not permitted to attach an XDP program to %s: needs root or "
		        "CAP_NET_ADMIN",
		        x->conf.interface);
		return -EPERM;
	case -EBUSY:
	case -EEXIST:
		tl_capture_err(err, errlen,
		        "xdp: another XDP program was attached to %s meanwhile: refusing to "
		        "replace it",
		        x->conf.interface);
		return -EBUSY;
	case -EOPNOTSUPP:
	case -EINVAL:
		tl_capture_err(err, errlen, "xdp: %s does not support XDP%s%s (%s)",
		        x->conf.interface, x->conf.skb_mode ? " in generic mode" : "",
		        x->native_errno ? ", neither native nor generic" : "", strerror(-fd));
		return -EOPNOTSUPP;
	default:
		tl_capture_err(err, errlen, "xdp: cannot attach the XDP program to %s: %s",
		        x->conf.interface, strerror(-fd));
		return fd;
	}
}

/* --- sockets --- */

/* Move receive frames from the free stack to the fill ring, as many as it takes. */
static inline void
refill(struct worker_ctx *w)
{
	uint32_t n = w->n_rx_free, idx;

	if (n == 0)
		return;
	n = xsk_prod_nb_free(&w->fq, n) < n ? xsk_prod_nb_free(&w->fq, n) : n;
	if (n == 0 || xsk_ring_prod__reserve(&w->fq, n, &idx) != n)
		return;
	for (uint32_t i = 0; i < n; i++)
		*xsk_ring_prod__fill_addr(&w->fq, idx + i) = w->rx_free[--w->n_rx_free];
	xsk_ring_prod__submit(&w->fq, n);
}

/*
 * Create and bind the socket of @p w with @p mode (XDP_COPY or XDP_ZEROCOPY). The kernel
 * releases a closed socket's hold on its queue asynchronously (a deferred work item), so
 * a restart right after a stop can find the queue still busy: asked again for a second.
 */
static int
bind_socket(struct worker_ctx *w, const struct tl_xdp_conf *c, struct xsk_socket_config *sc,
        uint16_t mode)
{
	int rc;

	sc->bind_flags = (uint16_t)(XDP_USE_NEED_WAKEUP | mode);
	for (int i = 0;; i++) {
		struct timespec ts = {0, BUSY_WAIT_NS};

		rc = xsk_socket__create(
		        &w->xsk, c->interface, w->queue, w->umem, &w->rx, &w->tx, sc);
		if (rc != -EBUSY || i == BUSY_RETRIES)
			break;
		nanosleep(&ts, NULL);
	}
	if (rc < 0)
		w->xsk = NULL;
	return rc;
}

static int
socket_setup(struct tl_xdp *x, struct worker_ctx *w, uint32_t queue, char *err, size_t errlen)
{
	const struct tl_xdp_conf *c = &x->conf;
	struct xsk_umem_config uc = {
	        .fill_size = (uint32_t)c->ring_size,
	        .comp_size = (uint32_t)c->ring_size,
	        .frame_size = (uint32_t)c->frame_size,
	        .frame_headroom = 0,
	        .flags = 0,
	};
	struct xsk_socket_config sc = {
	        .rx_size = (uint32_t)c->ring_size,
	        .tx_size = (uint32_t)c->ring_size,
	        .libxdp_flags = XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD,
	        .xdp_flags = 0,
	};
	struct xdp_options opt;
	socklen_t optlen = sizeof(opt);
	uint32_t n_tx;
	int rc;

	w->x = x;
	w->queue = queue;
	w->fd = -1;
	w->area_len = c->frames * c->frame_size;
	w->frame_mask = ~(c->frame_size - 1);
	w->area = mmap(NULL, w->area_len, PROT_READ | PROT_WRITE,
	        MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (w->area == MAP_FAILED) {
		w->area = NULL;
		tl_capture_err(err, errlen, "xdp: cannot map a UMEM of %" PRIu64 " bytes: %s",
		        w->area_len, strerror(errno));
		return -ENOMEM;
	}
	/* Transmit frames: replies only, a quarter at most, never more than the completion
	 * ring holds (so completions cannot overflow). */
	n_tx = (uint32_t)(c->frames / 4 < c->ring_size ? c->frames / 4 : c->ring_size);
	w->n_tx_frames = n_tx;
	w->n_rx_frames = (uint32_t)c->frames - n_tx;
	w->rx_free = calloc(w->n_rx_frames, sizeof(*w->rx_free));
	w->tx_free = calloc(n_tx, sizeof(*w->tx_free));
	if (w->rx_free == NULL || w->tx_free == NULL) {
		tl_capture_err(err, errlen, "xdp: out of memory");
		return -ENOMEM;
	}
	rc = xsk_umem__create(&w->umem, w->area, w->area_len, &w->fq, &w->cq, &uc);
	if (rc < 0) {
		w->umem = NULL;
		if (rc == -EAFNOSUPPORT) {
			tl_capture_err(err, errlen,
			        "xdp: this kernel has no AF_XDP sockets (CONFIG_XDP_SOCKETS)");
			return -EOPNOTSUPP;
		}
		if (rc == -EPERM || rc == -ENOMEM || rc == -ENOBUFS) {
			tl_capture_err(err, errlen,
			        "xdp: cannot register a UMEM of %" PRIu64 " bytes: %s (raise "
			        "RLIMIT_MEMLOCK, `ulimit -l`, or grant CAP_IPC_LOCK; or lower "
			        "capture.xdp.frames)",
			        w->area_len, strerror(-rc));
			return rc == -EPERM ? -EPERM : -ENOMEM;
		}
		tl_capture_err(err, errlen, "xdp: cannot create a UMEM: %s", strerror(-rc));
		return rc;
	}
	if (!x->native || c->mode == TL_XDP_MODE_COPY) {
		rc = bind_socket(w, c, &sc, XDP_COPY);
	} else if (c->mode == TL_XDP_MODE_ZEROCOPY) {
		rc = bind_socket(w, c, &sc, XDP_ZEROCOPY);
	} else {
		rc = bind_socket(w, c, &sc, XDP_ZEROCOPY);
		if (rc < 0 && rc != -EBUSY) {
			w->zc_errno = -rc;
			rc = bind_socket(w, c, &sc, XDP_COPY);
		}
	}
	if (rc < 0) {
		if (rc == -EOPNOTSUPP && c->mode == TL_XDP_MODE_ZEROCOPY) {
			tl_capture_err(err, errlen,
			        "xdp: %s's driver does not support AF_XDP zero-copy (set "
			        "capture.xdp.mode: auto or copy)",
			        c->interface);
			return -EOPNOTSUPP;
		}
		if (rc == -EBUSY) {
			tl_capture_err(err, errlen,
			        "xdp: queue %u of %s already has an AF_XDP socket (another "
			        "tapline, or a DPDK net_af_xdp port?)",
			        queue, c->interface);
			return -EBUSY;
		}
		if (rc == -EINVAL) {
			tl_capture_err(err, errlen,
			        "xdp: cannot bind an AF_XDP socket to queue %u of %s (does it have "
			        "that many RX queues? `ethtool -l %s`)",
			        queue, c->interface, c->interface);
			return -EINVAL;
		}
		tl_capture_err(err, errlen, "xdp: cannot create the AF_XDP socket of queue %u: %s",
		        queue, strerror(-rc));
		return rc == -EAFNOSUPPORT ? -EOPNOTSUPP : rc;
	}
	w->fd = xsk_socket__fd(w->xsk);
	if (c->busy_budget > 0) {
		rc = tl_capture_busy_poll(w->fd, (unsigned)c->busy_usecs, (unsigned)c->busy_budget);
		if (rc < 0)
			x->busy_errno = -rc;
		w->busy = rc == 0;
	}
	memset(&opt, 0, sizeof(opt));
	if (getsockopt(w->fd, SOL_XDP, XDP_OPTIONS, &opt, &optlen) == 0)
		w->zerocopy = (opt.flags & XDP_OPTIONS_ZEROCOPY) != 0;
	rc = xsk_socket__update_xskmap(w->xsk, bpf_map__fd(x->skel->maps.tl_xsks));
	if (rc < 0) {
		tl_capture_err(err, errlen, "xdp: cannot register the socket of queue %u: %s",
		        queue, strerror(rc == -1 ? errno : -rc));
		return rc == -1 ? -errno : rc;
	}
	/* Receive frames first, transmit frames after them. */
	for (uint32_t i = 0; i < w->n_rx_frames; i++)
		w->rx_free[i] = (uint64_t)(w->n_rx_frames - 1 - i) * c->frame_size;
	w->n_rx_free = w->n_rx_frames;
	for (uint32_t i = 0; i < n_tx; i++)
		w->tx_free[i] = (uint64_t)(w->n_rx_frames + i) * c->frame_size;
	w->n_tx_free = n_tx;
	refill(w);
	return 0;
}

static void
describe(struct tl_xdp *x)
{
	const struct tl_xdp_conf *c = &x->conf;
	char queues[48], mode[96], copy[96], busy[160];

	if (x->n_workers == 1)
		snprintf(queues, sizeof(queues), "queue %" PRIu64, c->queue);
	else
		snprintf(queues, sizeof(queues), "queues %" PRIu64 "-%" PRIu64, c->queue,
		        c->queue + x->n_workers - 1);
	if (x->native)
		snprintf(mode, sizeof(mode), "native mode");
	else if (x->native_errno)
		snprintf(mode, sizeof(mode), "generic (SKB) mode (native refused: %s)",
		        strerror(x->native_errno));
	else
		snprintf(mode, sizeof(mode), "generic (SKB) mode");
	if (x->zerocopy)
		snprintf(copy, sizeof(copy), "zero-copy");
	else if (c->mode == TL_XDP_MODE_COPY)
		snprintf(copy, sizeof(copy), "copy (as configured)");
	else if (!x->native)
		snprintf(copy, sizeof(copy), "copy (generic mode)");
	else if (x->zc_errno == EOPNOTSUPP || x->zc_errno == 0)
		snprintf(copy, sizeof(copy), "copy (zero-copy not supported)");
	else
		snprintf(copy, sizeof(copy), "copy (zero-copy refused: %s)", strerror(x->zc_errno));
	if (c->busy_budget == 0)
		snprintf(busy, sizeof(busy), "no busy polling");
	else if (x->busy_errno)
		snprintf(busy, sizeof(busy), "busy polling refused (%s)", strerror(x->busy_errno));
	else if (tl_capture_napi_deferred(c->interface) == 1)
		snprintf(busy, sizeof(busy), "busy polling, budget %" PRIu64, c->busy_budget);
	else
		snprintf(busy, sizeof(busy),
		        "busy polling, budget %" PRIu64 " (%s does not defer its NAPI: set "
		        "napi_defer_hard_irqs and gro_flush_timeout for the full effect)",
		        c->busy_budget, c->interface);
	snprintf(x->desc, sizeof(x->desc),
	        "xdp: %s %s, %s, %s, %" PRIu64 " frames of %" PRIu64 " B, rings %" PRIu64 ", %s",
	        c->interface, queues, mode, copy, c->frames, c->frame_size, c->ring_size, busy);
}

int
tl_xdp_open(const struct tl_xdp_conf *conf, const uint16_t *ports, unsigned n_ports,
        unsigned n_workers, struct tl_xdp **out, char *err, size_t errlen)
{
	struct tl_xdp *x = NULL;
	unsigned nq;
	int rc;

	*out = NULL;
	tl_capture_err(err, errlen, "%s", "");
	rc = check_conf(conf, ports, n_ports, n_workers, err, errlen);
	if (rc < 0)
		return rc;
	x = calloc(1, sizeof(*x));
	if (x == NULL)
		return -ENOMEM;
	x->link_fd = -1;
	x->conf = *conf;
	x->conf.interface[sizeof(x->conf.interface) - 1] = '\0';
	x->conf.cpus[sizeof(x->conf.cpus) - 1] = '\0';
	x->n_workers = n_workers;
	rc = tl_capture_parse_cpus(
	        x->conf.cpus, "capture.xdp.cpus", x->cpus, MAX_CPUS, &x->n_cpus, err, errlen);
	if (rc < 0)
		goto fail;
	x->ifindex = if_nametoindex(x->conf.interface);
	if (x->ifindex == 0) {
		tl_capture_err(err, errlen, "xdp: no such interface '%s' in this network namespace",
		        x->conf.interface);
		rc = -ENODEV;
		goto fail;
	}
	rc = check_caps(err, errlen);
	if (rc < 0)
		goto fail;
	nq = rx_queues(x->conf.interface);
	if (nq > 0 && x->conf.queue + n_workers > nq) {
		tl_capture_err(err, errlen,
		        "xdp: %s has %u RX queue%s; capture.xdp.queue (%" PRIu64 ") + "
		        "capture.workers (%u) must not exceed it (`ethtool -L %s`)",
		        x->conf.interface, nq, nq == 1 ? "" : "s", x->conf.queue, n_workers,
		        x->conf.interface);
		rc = -EINVAL;
		goto fail;
	}
	rc = load_prog(x, ports, n_ports, err, errlen);
	if (rc < 0)
		goto fail;
	/* A stale program is detached, then ours attached. take_hook() asks again if the
	 * program it meant to detach was replaced between its query and the detach. */
	for (int tries = 0; tries < 3; tries++) {
		rc = take_hook(x, err, errlen);
		if (rc != -EAGAIN)
			break;
	}
	if (rc == -EAGAIN) {
		tl_capture_err(err, errlen,
		        "xdp: the XDP programs of %s keep changing: not attaching",
		        x->conf.interface);
		rc = -EBUSY;
	}
	if (rc == 0)
		rc = attach_prog(x, err, errlen);
	if (rc < 0)
		goto fail;
	x->w = aligned_alloc(64, sizeof(*x->w) * n_workers);
	if (x->w == NULL) {
		rc = -ENOMEM;
		goto fail;
	}
	memset(x->w, 0, sizeof(*x->w) * n_workers);
	for (unsigned i = 0; i < n_workers; i++)
		x->w[i].fd = -1;
	x->zerocopy = true;
	for (unsigned i = 0; i < n_workers; i++) {
		rc = socket_setup(x, &x->w[i], (uint32_t)(x->conf.queue + i), err, errlen);
		if (rc < 0)
			goto fail;
		x->zerocopy = x->zerocopy && x->w[i].zerocopy;
		if (x->zc_errno == 0)
			x->zc_errno = x->w[i].zc_errno;
	}
	describe(x);
	*out = x;
	return 0;
fail:
	tl_xdp_close(x);
	return rc;
}

const char *
tl_xdp_describe(const struct tl_xdp *x)
{
	return x->desc;
}

bool
tl_xdp_zerocopy(const struct tl_xdp *x)
{
	return x->zerocopy;
}

/* --- the worker --- */

/* Give transmitted frames back to the free list. */
static inline void
tx_reap(struct worker_ctx *w)
{
	uint32_t idx, n;

	if (w->tx_inflight == 0)
		return;
	n = xsk_ring_cons__peek(&w->cq, w->tx_inflight, &idx);
	for (uint32_t i = 0; i < n; i++) {
		uint64_t addr = *xsk_ring_cons__comp_addr(&w->cq, idx + i);

		if (likely(w->n_tx_free < w->n_tx_frames))
			w->tx_free[w->n_tx_free++] = addr & w->frame_mask;
	}
	if (n) {
		xsk_ring_cons__release(&w->cq, n);
		w->tx_inflight -= n;
	}
}

/* Copy mode transmits only from sendto(), a bounded number of frames per call; a
 * zero-copy driver asks for a wake-up when it needs one. */
static inline void
tx_kick(struct worker_ctx *w)
{
	if (!w->zerocopy || xsk_ring_prod__needs_wakeup(&w->tx))
		(void)sendto(w->fd, NULL, 0, MSG_DONTWAIT, NULL, 0);
}

static inline void
tx_flush(struct worker_ctx *w)
{
	if (w->tx_pending) {
		xsk_ring_prod__submit(&w->tx, w->tx_pending);
		w->tx_inflight += w->tx_pending;
		tl_capture_count(&w->tx_frames, w->tx_pending);
		w->tx_pending = 0;
	}
	if (w->tx_inflight) {
		tx_kick(w);
		tx_reap(w);
	}
}

/*
 * The pipeline's tl_tx_fn: runs on the worker's thread only (the TX ring has one
 * producer). The frame is copied into a transmit frame of the UMEM now and leaves at the
 * end of the burst (or tick).
 */
static int
tx_frame(void *arg, const uint8_t *frame, uint32_t len)
{
	struct worker_ctx *w = arg;
	struct xdp_desc *d;
	uint64_t addr;
	uint32_t idx;

	if (unlikely(len > w->x->conf.frame_size)) {
		tl_capture_count(&w->tx_dropped, 1);
		return -EMSGSIZE;
	}
	if (unlikely(w->n_tx_free == 0)) {
		tx_flush(w);
		if (w->n_tx_free == 0) {
			tl_capture_count(&w->tx_dropped, 1);
			return -ENOBUFS;
		}
	}
	if (unlikely(xsk_ring_prod__reserve(&w->tx, 1, &idx) != 1)) {
		tl_capture_count(&w->tx_dropped, 1);
		return -ENOBUFS;
	}
	addr = w->tx_free[--w->n_tx_free];
	memcpy(w->area + addr, frame, len);
	d = xsk_ring_prod__tx_desc(&w->tx, idx);
	d->addr = addr;
	d->len = len;
	d->options = 0;
	w->tx_pending++;
	return 0;
}

static inline void
rx_process(struct worker_ctx *w, uint32_t idx, uint32_t n, uint64_t now)
{
	for (uint32_t i = 0; i < n; i++) {
		const struct xdp_desc *d = xsk_ring_cons__rx_desc(&w->rx, idx + i);
		uint64_t addr = d->addr;

		if (i + 1 < n)
			__builtin_prefetch(
			        w->area + xsk_ring_cons__rx_desc(&w->rx, idx + i + 1)->addr);
		/* The kernel keeps descriptors within the UMEM; a check costs nothing and
		 * keeps a bad one from becoming an out-of-bounds read. */
		if (unlikely(addr >= w->area_len || d->len > w->area_len - addr))
			continue;
		tl_pipeline_rx(w->pw, w->area + addr, d->len, 0, now);
		if (likely(w->n_rx_free < w->n_rx_frames))
			w->rx_free[w->n_rx_free++] = addr & w->frame_mask;
	}
	xsk_ring_cons__release(&w->rx, n);
	refill(w);
}

static void *
worker_main(void *arg)
{
	struct worker_ctx *w = arg;
	const struct tl_xdp_conf *c = &w->x->conf;
	const uint32_t batch = (uint32_t)c->batch;
	struct pollfd pfd = {.fd = w->fd, .events = POLLIN};
	uint64_t now = tl_mono_ns(), last_tick = now;
	uint32_t idx, n;

	TL_INFO("xdp worker polls %s queue %u", c->interface, w->queue);
	tl_pipeline_online(w->pw);
	while (!__atomic_load_n(w->stop, __ATOMIC_RELAXED) &&
	        !__atomic_load_n(&w->x->halt, __ATOMIC_RELAXED)) {
		/* The previous burst is done with its generation. */
		tl_pipeline_quiescent(w->pw);
		n = xsk_ring_cons__peek(&w->rx, batch, &idx);
		now = tl_mono_ns();
		/* Housekeeping on a clock, busy or idle (a tick can commit a batch and so
		 * acknowledge frames: flush after it). */
		if (unlikely(now - last_tick >= c->tick)) {
			tl_pipeline_tick(w->pw, now);
			tx_flush(w);
			last_tick = now;
		}
		if (n == 0) {
			/* A zero-copy driver that ran out of fill entries waits to be woken;
			 * with busy polling, the call runs the queue's NAPI poll here. */
			if (w->busy || xsk_ring_prod__needs_wakeup(&w->fq))
				(void)recvfrom(w->fd, NULL, 0, MSG_DONTWAIT, NULL, NULL);
			if (w->busy) {
				n = xsk_ring_cons__peek(&w->rx, batch, &idx);
				if (n > 0)
					goto received;
			}
			if (!c->busy_poll) {
				uint64_t left = c->tick - (now - last_tick);
				struct timespec ts = {.tv_sec = (time_t)(left / 1000000000ull),
				        .tv_nsec = (long)(left % 1000000000ull)};

				(void)ppoll(&pfd, 1, &ts, NULL);
			}
			continue;
		}
	received:
		__atomic_store_n(&w->last_rx_ns, now, __ATOMIC_RELAXED);
		rx_process(w, idx, n, now);
		tx_flush(w);
	}
	/* Drain what the ring already holds, bounded so a flood cannot keep us here. */
	for (int i = 0; i < DRAIN_BURSTS; i++) {
		n = xsk_ring_cons__peek(&w->rx, batch, &idx);
		if (n == 0)
			break;
		rx_process(w, idx, n, tl_mono_ns());
		tx_flush(w);
	}
	/* Datagrams still missing fragments can never complete now: count them; and
	 * whatever the sink still holds goes out. */
	tl_pipeline_tick(w->pw, UINT64_MAX);
	tx_flush(w);
	tl_pipeline_offline(w->pw);
	__atomic_store_n(&w->running, 0, __ATOMIC_RELEASE);
	return NULL;
}

int
tl_xdp_run(struct tl_xdp *x, struct tl_pipeline_worker *workers, uint64_t idle_stop_ns,
        volatile int *stop)
{
	unsigned started = 0;
	uint64_t t0 = tl_mono_ns();
	int rc = 0;

	__atomic_store_n(&x->halt, 0, __ATOMIC_RELAXED);
	for (unsigned i = 0; i < x->n_workers; i++) {
		struct worker_ctx *w = &x->w[i];
		pthread_attr_t attr;
		char name[16];

		w->pw = &workers[i];
		w->stop = stop;
		w->last_rx_ns = t0;
		w->running = 1;
		tl_pipeline_set_tx(w->pw, tx_frame, w);
		pthread_attr_init(&attr);
		if (x->n_cpus > 0) {
			cpu_set_t set;

			CPU_ZERO(&set);
			CPU_SET(x->cpus[i % x->n_cpus], &set);
			pthread_attr_setaffinity_np(&attr, sizeof(set), &set);
		}
		rc = -pthread_create(&w->thread, &attr, worker_main, w);
		pthread_attr_destroy(&attr);
		if (rc < 0) {
			w->running = 0;
			TL_ERR("xdp: cannot start the worker of queue %u: %s", w->queue,
			        strerror(-rc));
			__atomic_store_n(&x->halt, 1, __ATOMIC_RELAXED);
			break;
		}
		snprintf(name, sizeof(name), "tl-xdp-q%u", w->queue);
		pthread_setname_np(w->thread, name);
		started++;
	}
	/* Sleep while the workers run; with idle_stop_ns, stop them all once none has seen
	 * a frame for that long. */
	for (;;) {
		unsigned running = 0;
		uint64_t newest = 0, now;

		for (unsigned i = 0; i < started; i++) {
			uint64_t t = __atomic_load_n(&x->w[i].last_rx_ns, __ATOMIC_RELAXED);

			running += (unsigned)__atomic_load_n(&x->w[i].running, __ATOMIC_ACQUIRE);
			newest = t > newest ? t : newest;
		}
		if (running == 0)
			break;
		now = tl_mono_ns();
		if (idle_stop_ns && now > newest && now - newest >= idle_stop_ns)
			__atomic_store_n(&x->halt, 1, __ATOMIC_RELAXED);
		{
			struct timespec ts = {0, (long)MONITOR_NS};

			nanosleep(&ts, NULL);
		}
	}
	for (unsigned i = 0; i < started; i++)
		pthread_join(x->w[i].thread, NULL);
	return rc;
}

int
tl_xdp_prog_stats(const struct tl_xdp *x, struct tl_xdp_prog_stats *st)
{
	struct prog_counters *v;
	uint32_t zero = 0;
	int rc;

	memset(st, 0, sizeof(*st));
	v = calloc((size_t)x->ncpus, sizeof(*v));
	if (v == NULL)
		return -ENOMEM;
	rc = bpf_map__lookup_elem(x->skel->maps.tl_counters, &zero, sizeof(zero), v,
	        sizeof(*v) * (size_t)x->ncpus, 0);
	if (rc == 0) {
		for (int i = 0; i < x->ncpus; i++) {
			st->redirected += v[i].redirected;
			st->passed += v[i].passed;
			st->parse_failed += v[i].parse_failed;
			st->redirect_failed += v[i].redirect_failed;
		}
	}
	free(v);
	return rc;
}

void
tl_xdp_stats(struct tl_xdp *x, struct tl_counters *c)
{
	if (x == NULL || x->w == NULL)
		return;
	for (unsigned i = 0; i < x->n_workers; i++) {
		struct worker_ctx *w = &x->w[i];
		struct xdp_statistics st;
		socklen_t len = sizeof(st);

		if (w->fd >= 0 && getsockopt(w->fd, SOL_XDP, XDP_STATISTICS, &st, &len) == 0) {
			/* In copy mode a frame that found the fill ring empty is also counted in
			 * rx_dropped; only zero-copy drivers count it apart. */
			c->rx_missed += st.rx_dropped;
			if (len >= offsetof(struct xdp_statistics, rx_fill_ring_empty_descs) +
			                   sizeof(st.rx_fill_ring_empty_descs)) {
				c->rx_missed += st.rx_ring_full;
				if (w->zerocopy)
					c->rx_missed += st.rx_fill_ring_empty_descs;
			}
		}
		c->tx_frames += __atomic_load_n(&w->tx_frames, __ATOMIC_RELAXED);
		c->tx_dropped += __atomic_load_n(&w->tx_dropped, __ATOMIC_RELAXED);
	}
}

void
tl_xdp_close(struct tl_xdp *x)
{
	if (x == NULL)
		return;
	/* The link goes first: no frame is steered to a socket being closed. */
	if (x->link_fd >= 0)
		close(x->link_fd);
	for (unsigned i = 0; x->w && i < x->n_workers; i++) {
		struct worker_ctx *w = &x->w[i];

		xsk_socket__delete(w->xsk);
		xsk_umem__delete(w->umem);
		if (w->area)
			munmap(w->area, w->area_len);
		free(w->rx_free);
		free(w->tx_free);
	}
	free(x->w);
	tl_xdp_bpf__destroy(x->skel);
	free(x);
}

int
tl_xdp_probe(const struct tl_xdp_conf *conf, char *err, size_t errlen)
{
	const uint16_t port = 5170; /* any: nothing is received */
	struct tl_xdp *x = NULL;
	int rc = tl_xdp_open(conf, &port, 1, 1, &x, err, errlen);

	tl_xdp_close(x);
	return rc;
}
