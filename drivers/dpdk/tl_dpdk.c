/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rte_common.h>
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_prefetch.h>

#include "tl_decode.h"
#include "tl_dpdk.h"
#include "tl_error.h"
#include "tl_log.h"
#include "tl_pipeline.h"

#define MAX_BURST 256
#define MAX_QUEUES RTE_MAX_LCORE
#define LINEAR_BUF 16384 /* a multi-segment frame is copied here; jumbo frames fit */
/* Replies: frames are copied into mbufs of their own pool (the RX pool's mbufs belong to
 * the NIC's receive rings; draining it for ACKs would drop telemetry) and queued in a
 * per-worker buffer that goes out in one tx_burst per rx burst or tick. */
#define TX_BUFFER_SIZE 32
#define TX_DATA_ROOM 2048 /* a reply is one non-fragmented datagram: 1522 bytes at MTU 1500 */
#define TX_POOL_MIN 4095  /* 2^n - 1: the mempool ring's best size */
#define TX_POOL_CACHE 32

const struct tl_opt tl_dpdk_opts[] = {
	{.name = "lcores", .type = TL_OPT_STRING, .offset = offsetof(struct tl_dpdk_conf, lcores),
		.size = sizeof(((struct tl_dpdk_conf *)0)->lcores),
		.desc = "EAL --lcores map; empty: main lcore on the first CPU, workers spread"},
	{.name = "vdevs", .type = TL_OPT_STRLIST, .offset = offsetof(struct tl_dpdk_conf, vdevs),
		.size = sizeof(((struct tl_dpdk_conf *)0)->vdevs[0]),
		.count_offset = offsetof(struct tl_dpdk_conf, n_vdevs), .max_items = TL_DPDK_MAX_VDEVS,
		.desc = "virtual devices, e.g. net_af_xdp0,iface=eth1,queue_count=2"},
	{.name = "pci", .type = TL_OPT_STRLIST, .offset = offsetof(struct tl_dpdk_conf, pci),
		.size = sizeof(((struct tl_dpdk_conf *)0)->pci[0]),
		.count_offset = offsetof(struct tl_dpdk_conf, n_pci), .max_items = TL_DPDK_MAX_PCI,
		.desc = "PCI addresses of NICs bound to a DPDK driver (none: PCI bus not scanned)"},
	{.name = "no_huge", .type = TL_OPT_BOOL, .def = "false",
		.offset = offsetof(struct tl_dpdk_conf, no_huge),
		.desc = "use anonymous memory instead of hugepages (tests, small sites)"},
	{.name = "memory", .type = TL_OPT_SIZE, .def = "512MiB",
		.offset = offsetof(struct tl_dpdk_conf, memory), .min = 64ull << 20,
		.max = 1ull << 40, .desc = "EAL memory to reserve"},
	{.name = "mbufs", .type = TL_OPT_UINT, .def = "16383",
		.offset = offsetof(struct tl_dpdk_conf, mbufs), .min = 1023, .max = 1u << 24,
		.desc = "packet buffers in the port's mempool"},
	{.name = "mbuf_cache", .type = TL_OPT_UINT, .def = "256",
		.offset = offsetof(struct tl_dpdk_conf, mbuf_cache), .min = 0,
		.max = RTE_MEMPOOL_CACHE_MAX_SIZE, .desc = "per-lcore mempool cache"},
	{.name = "rx_desc", .type = TL_OPT_UINT, .def = "2048",
		.offset = offsetof(struct tl_dpdk_conf, rx_desc), .min = 64, .max = 65536,
		.desc = "RX descriptors per queue"},
	{.name = "burst", .type = TL_OPT_UINT, .def = "64",
		.offset = offsetof(struct tl_dpdk_conf, burst), .min = 1, .max = MAX_BURST,
		.desc = "frames per rx_burst"},
	{.name = "tick", .type = TL_OPT_DURATION, .def = "1ms",
		.offset = offsetof(struct tl_dpdk_conf, tick), .min = 10000,
		.max = 1000000000ull,
		.desc = "how often a worker does housekeeping (reassembly expiry, batch flush by age)"},
	{.name = "log_level", .type = TL_OPT_STRING, .def = "notice",
		.offset = offsetof(struct tl_dpdk_conf, log_level),
		.size = sizeof(((struct tl_dpdk_conf *)0)->log_level), .desc = "EAL --log-level"},
	{.name = "eal_args", .type = TL_OPT_STRLIST,
		.offset = offsetof(struct tl_dpdk_conf, eal_args),
		.size = sizeof(((struct tl_dpdk_conf *)0)->eal_args[0]),
		.count_offset = offsetof(struct tl_dpdk_conf, n_eal_args),
		.max_items = TL_DPDK_MAX_EAL_ARGS, .desc = "further EAL arguments, verbatim"},
	{.name = NULL},
};

/* One per worker lcore; written only by that lcore while running. */
struct worker_ctx {
	struct tl_dpdk *d;
	struct tl_pipeline_worker *pw;
	uint16_t queue;
	uint64_t expect;        /* 0: run until stopped */
	uint64_t received;
	uint64_t idle_stop_ns;
	volatile int *stop;
	uint8_t *linear;        /* LINEAR_BUF bytes on the port's socket */
	struct rte_eth_dev_tx_buffer *txb; /* NULL: the port has no TX queue for this worker */
	/* Single writer (this worker, relaxed stores); tl_dpdk_stats() reads them. */
	uint64_t tx_frames;     /* handed to the NIC */
	uint64_t tx_dropped;    /* no mbuf, too long, or the TX queue was full */
	int result;
} __rte_cache_aligned;

struct tl_dpdk {
	struct tl_dpdk_conf conf;
	uint16_t port;
	uint16_t n_queues;
	uint16_t n_tx;          /* TX queues: n_queues, or fewer if the port has fewer */
	int socket;
	bool started;
	bool eal_up;
	bool have_port;
	bool hw_cksum;
	struct rte_mempool *pool;
	struct rte_mempool *tx_pool; /* replies; NULL when n_tx is 0 */
	struct worker_ctx *ctx;
	char desc[256];
};

/* --- EAL arguments --- */

struct argv_buf {
	char *argv[96];
	int argc;
	char store[8192];
	size_t used;
};

static int
arg_add(struct argv_buf *a, const char *s)
{
	size_t n = strlen(s) + 1;

	if (a->argc >= (int)RTE_DIM(a->argv) - 1 || a->used + n > sizeof(a->store))
		return -E2BIG;
	memcpy(a->store + a->used, s, n);
	a->argv[a->argc++] = a->store + a->used;
	a->argv[a->argc] = NULL;
	a->used += n;
	return 0;
}

/* Main lcore on the first allowed CPU; worker i on the next CPUs in turn. Workers
 * spin, so on a machine with fewer CPUs than workers + 1 the main lcore (which only
 * sleeps in rte_eal_mp_wait_lcore) shares a CPU rather than a worker. */
static int
auto_lcores(unsigned n_workers, char *out, size_t cap)
{
	cpu_set_t set;
	int cpus[CPU_SETSIZE], n = 0;
	size_t len;

	if (sched_getaffinity(0, sizeof(set), &set) < 0)
		return -errno;
	for (int c = 0; c < CPU_SETSIZE; c++)
		if (CPU_ISSET(c, &set))
			cpus[n++] = c;
	if (n == 0)
		return -ENODEV;
	len = (size_t)snprintf(out, cap, "0@%d", cpus[0]);
	for (unsigned w = 1; w <= n_workers; w++) {
		int cpu = cpus[n > 1 ? 1 + (int)((w - 1) % (unsigned)(n - 1)) : 0];

		len += (size_t)snprintf(out + len, len < cap ? cap - len : 0, ",%u@%d", w, cpu);
	}
	return len < cap ? 0 : -E2BIG;
}

static uint64_t
hugepages_free(void)
{
	FILE *f = fopen("/proc/meminfo", "r");
	char line[256];
	uint64_t v = 0;

	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "HugePages_Free: %" SCNu64, &v) == 1)
			break;
	fclose(f);
	return v;
}

static int
build_eal_args(const struct tl_dpdk_conf *c, unsigned n_queues, const char *prog,
		struct argv_buf *a)
{
	char buf[512];
	int rc = 0;

	rc |= arg_add(a, prog);
	/* No shared runtime files: several instances (and tests) coexist, and nothing
	 * stale is left behind by a killed run. --in-memory also unlinks hugepage files
	 * but is refused together with --no-huge (which implies legacy memory). */
	rc |= arg_add(a, c->no_huge ? "--no-shconf" : "--in-memory");
	snprintf(buf, sizeof(buf), "tapline-%d", (int)getpid());
	rc |= arg_add(a, "--file-prefix");
	rc |= arg_add(a, buf);
	if (c->no_huge)
		rc |= arg_add(a, "--no-huge");
	snprintf(buf, sizeof(buf), "%" PRIu64, c->memory >> 20);
	rc |= arg_add(a, "-m");
	rc |= arg_add(a, buf);
	if (c->lcores[0] == '\0') {
		int r = auto_lcores(n_queues, buf, sizeof(buf));

		if (r < 0)
			return r;
	} else {
		snprintf(buf, sizeof(buf), "%s", c->lcores);
	}
	rc |= arg_add(a, "--lcores");
	rc |= arg_add(a, buf);
	for (uint32_t i = 0; i < c->n_vdevs; i++) {
		rc |= arg_add(a, "--vdev");
		rc |= arg_add(a, c->vdevs[i]);
	}
	if (c->n_pci == 0)
		rc |= arg_add(a, "--no-pci");
	for (uint32_t i = 0; i < c->n_pci; i++) {
		rc |= arg_add(a, "-a");
		rc |= arg_add(a, c->pci[i]);
	}
	if (c->log_level[0]) {
		rc |= arg_add(a, "--log-level");
		rc |= arg_add(a, c->log_level);
	}
	for (uint32_t i = 0; i < c->n_eal_args; i++)
		rc |= arg_add(a, c->eal_args[i]);
	return rc ? -E2BIG : 0;
}

/* --- port --- */

/* Most "invalid argument" failures of an unprivileged run are really permissions. */
static const char *
priv_hint(void)
{
	return geteuid() != 0 ? " (not running as root: AF_XDP and PCI devices need "
				"CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF, CAP_SYS_ADMIN)"
			      : "";
}

static int
port_setup(struct tl_dpdk *d)
{
	struct rte_eth_conf pc;
	struct rte_eth_dev_info info;
	struct rte_eth_rxconf rxq;
	uint16_t nb_rxd = (uint16_t)d->conf.rx_desc, nb_txd = 512, nb_tx;
	char name[RTE_MEMPOOL_NAMESIZE];
	int rc;

	rc = rte_eth_dev_info_get(d->port, &info);
	if (rc != 0) {
		TL_ERR("port %u: cannot read device info: %s", d->port, rte_strerror(-rc));
		return TL_E_DPDK;
	}
	if (d->n_queues > info.max_rx_queues) {
		TL_ERR("port %u (%s) has at most %u RX queues; set capture.workers <= %u "
		       "(or give the virtual device more queues)",
				d->port, info.driver_name, info.max_rx_queues, info.max_rx_queues);
		return -EINVAL;
	}
	memset(&pc, 0, sizeof(pc));
	if (d->n_queues > 1 && info.flow_type_rss_offloads) {
		/* IP fragments hash on addresses only, so a datagram's fragments meet on
		 * one queue and reassembly needs no cross-worker state. */
		pc.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
		pc.rx_adv_conf.rss_conf.rss_hf =
				(RTE_ETH_RSS_IP | RTE_ETH_RSS_UDP) & info.flow_type_rss_offloads;
	} else if (d->n_queues > 1) {
		TL_INFO("port %u (%s) has no RSS: each queue gets what the PMD gives it", d->port,
				info.driver_name);
	}
	if ((info.rx_offload_capa & RTE_ETH_RX_OFFLOAD_IPV4_CKSUM) &&
			(info.rx_offload_capa & RTE_ETH_RX_OFFLOAD_UDP_CKSUM)) {
		pc.rxmode.offloads |= RTE_ETH_RX_OFFLOAD_IPV4_CKSUM | RTE_ETH_RX_OFFLOAD_UDP_CKSUM;
		d->hw_cksum = true;
	}
	/* One TX queue per worker: replies need no lock. A port with fewer gets no sharing
	 * either; the workers past its last TX queue simply cannot reply. */
	nb_tx = RTE_MIN(d->n_queues, info.max_tx_queues);
	if (nb_tx < d->n_queues)
		TL_WARN("port %u (%s) has %u TX queues for %u workers: framed-protocol ACKs "
			"cannot be sent from RX queues %u-%u (give the device more queues, or "
			"set capture.workers <= %u)",
				d->port, info.driver_name, nb_tx, d->n_queues, nb_tx,
				d->n_queues - 1, nb_tx);
	d->n_tx = nb_tx;
	rc = rte_eth_dev_configure(d->port, d->n_queues, nb_tx, &pc);
	if (rc != 0) {
		TL_ERR("port %u (%s): configure with %u RX queues failed: %s%s", d->port,
				info.driver_name, d->n_queues, rte_strerror(-rc), priv_hint());
		return TL_E_DPDK;
	}
	rc = rte_eth_dev_adjust_nb_rx_tx_desc(d->port, &nb_rxd, &nb_txd);
	if (rc != 0) {
		TL_ERR("port %u: descriptor counts rejected: %s", d->port, rte_strerror(-rc));
		return TL_E_DPDK;
	}
	d->socket = rte_eth_dev_socket_id(d->port);
	if (d->socket < 0)
		d->socket = (int)rte_socket_id();
	snprintf(name, sizeof(name), "tl_mbuf_p%u", d->port);
	d->pool = rte_pktmbuf_pool_create(name, (unsigned)d->conf.mbufs,
			(unsigned)d->conf.mbuf_cache, 0, RTE_MBUF_DEFAULT_BUF_SIZE, d->socket);
	if (d->pool == NULL) {
		TL_ERR("cannot create a mempool of %" PRIu64 " mbufs on socket %d: %s "
		       "(raise capture.dpdk.memory or reserve more hugepages)",
				d->conf.mbufs, d->socket, rte_strerror(rte_errno));
		return -ENOMEM;
	}
	rxq = info.default_rxconf;
	rxq.offloads = pc.rxmode.offloads;
	for (uint16_t q = 0; q < d->n_queues; q++) {
		rc = rte_eth_rx_queue_setup(d->port, q, nb_rxd, (unsigned)d->socket, &rxq, d->pool);
		if (rc != 0) {
			TL_ERR("port %u: RX queue %u setup failed: %s%s", d->port, q, rte_strerror(-rc),
					priv_hint());
			return TL_E_DPDK;
		}
	}
	for (uint16_t q = 0; q < nb_tx; q++) {
		rc = rte_eth_tx_queue_setup(d->port, q, nb_txd, (unsigned)d->socket, NULL);
		if (rc != 0) {
			TL_ERR("port %u: TX queue %u setup failed: %s", d->port, q, rte_strerror(-rc));
			return TL_E_DPDK;
		}
	}
	if (nb_tx > 0) {
		/* Enough for every TX ring full of sent-but-not-completed mbufs plus every
		 * worker's buffer and cache, so a busy ring alone never starves the others. */
		unsigned n = RTE_MAX((unsigned)TX_POOL_MIN,
				nb_tx * ((unsigned)nb_txd + TX_BUFFER_SIZE + TX_POOL_CACHE));

		snprintf(name, sizeof(name), "tl_tx_p%u", d->port);
		d->tx_pool = rte_pktmbuf_pool_create(name, n, TX_POOL_CACHE, 0,
				RTE_PKTMBUF_HEADROOM + TX_DATA_ROOM, d->socket);
		if (d->tx_pool == NULL) {
			TL_ERR("cannot create a TX mempool of %u mbufs on socket %d: %s "
			       "(raise capture.dpdk.memory or reserve more hugepages)",
					n, d->socket, rte_strerror(rte_errno));
			return -ENOMEM;
		}
	}
	snprintf(d->desc, sizeof(d->desc),
			"port %u driver %s socket %d rx_queues %u rx_desc %u tx_queues %u rss %s "
			"hw_cksum %s",
			d->port, info.driver_name, d->socket, d->n_queues, nb_rxd, nb_tx,
			pc.rxmode.mq_mode == RTE_ETH_MQ_RX_RSS ? "on" : "off",
			d->hw_cksum ? "on" : "off");
	return 0;
}

/* --- replies --- */

/* Single writer: a plain read, a relaxed store, so the scrape thread never sees a torn
 * value. */
static inline void
count_add(uint64_t *c, uint64_t n)
{
	__atomic_store_n(c, *c + n, __ATOMIC_RELAXED);
}

/* What tx_burst did not take (the queue was full) is dropped: an ACK that waits is
 * worth no more than one the producer will ask for again. */
static void
tx_unsent(struct rte_mbuf **unsent, uint16_t count, void *userdata)
{
	struct worker_ctx *wc = userdata;

	count_add(&wc->tx_dropped, count);
	rte_pktmbuf_free_bulk(unsent, count);
}

static int
tx_buffer_init(struct worker_ctx *wc, int socket)
{
	wc->txb = rte_zmalloc_socket("tl_txbuf", RTE_ETH_TX_BUFFER_SIZE(TX_BUFFER_SIZE), 0,
			socket);
	if (wc->txb == NULL)
		return -ENOMEM;
	if (rte_eth_tx_buffer_init(wc->txb, TX_BUFFER_SIZE) != 0 ||
			rte_eth_tx_buffer_set_err_callback(wc->txb, tx_unsent, wc) != 0)
		return -EINVAL;
	return 0;
}

/*
 * The pipeline's tl_tx_fn: runs on the worker's lcore only (its TX queue has no lock).
 * The frame is copied now; it leaves when the buffer fills or at the next flush.
 */
static int
tx_frame(void *arg, const uint8_t *frame, uint32_t len)
{
	struct worker_ctx *wc = arg;
	struct rte_mbuf *m;
	uint16_t sent;
	char *p;

	if (unlikely(len > TX_DATA_ROOM)) {
		count_add(&wc->tx_dropped, 1);
		return -EMSGSIZE;
	}
	m = rte_pktmbuf_alloc(wc->d->tx_pool);
	if (unlikely(m == NULL)) {
		count_add(&wc->tx_dropped, 1);
		return -ENOBUFS;
	}
	p = rte_pktmbuf_append(m, (uint16_t)len);
	if (unlikely(p == NULL)) { /* a PMD reserving more headroom than asked */
		rte_pktmbuf_free(m);
		count_add(&wc->tx_dropped, 1);
		return -EMSGSIZE;
	}
	memcpy(p, frame, len);
	sent = rte_eth_tx_buffer(wc->d->port, wc->queue, wc->txb, m);
	if (sent)
		count_add(&wc->tx_frames, sent);
	return 0;
}

static inline void
tx_flush(struct worker_ctx *wc)
{
	uint16_t sent;

	if (wc->txb == NULL)
		return;
	sent = rte_eth_tx_buffer_flush(wc->d->port, wc->queue, wc->txb);
	if (sent)
		count_add(&wc->tx_frames, sent);
}

int
tl_dpdk_open(const struct tl_dpdk_conf *conf, unsigned n_queues, const char *prog,
		struct tl_dpdk **out)
{
	struct argv_buf *a = NULL;
	struct tl_dpdk *d;
	uint16_t port, n_ports = 0;
	int rc;

	*out = NULL;
	if (n_queues == 0 || n_queues > MAX_QUEUES)
		return -EINVAL;
	if (!conf->no_huge && hugepages_free() == 0) {
		TL_ERR("no free hugepages: reserve some (echo 512 > /proc/sys/vm/nr_hugepages, "
		       "see docs/operations.md) or set capture.dpdk.no_huge: true");
		return TL_E_NOHUGE;
	}
	d = calloc(1, sizeof(*d));
	a = calloc(1, sizeof(*a));
	if (d == NULL || a == NULL) {
		rc = -ENOMEM;
		goto fail;
	}
	d->conf = *conf;
	d->n_queues = (uint16_t)n_queues;
	rc = build_eal_args(conf, n_queues, prog, a);
	if (rc < 0) {
		TL_ERR("EAL arguments too long or lcores unavailable: %s", tl_strerror(rc));
		goto fail;
	}
	if (rte_eal_init(a->argc, a->argv) < 0) {
		int e = rte_errno;

		if (e == EACCES || e == EPERM || geteuid() != 0) {
			TL_ERR("DPDK EAL init failed: %s: tapline needs root (or CAP_SYS_ADMIN, "
			       "CAP_NET_ADMIN, CAP_NET_RAW, CAP_IPC_LOCK) for kernel-bypass capture",
					rte_strerror(e));
			rc = -EPERM;
		} else {
			TL_ERR("DPDK EAL init failed: %s (check capture.dpdk.vdevs/pci/lcores)",
					rte_strerror(e));
			rc = TL_E_DPDK;
		}
		goto fail;
	}
	d->eal_up = true;
	if (rte_lcore_count() < n_queues + 1) {
		TL_ERR("%u workers need %u lcores, the EAL has %u (capture.dpdk.lcores)", n_queues,
				n_queues + 1, rte_lcore_count());
		rc = -EINVAL;
		goto fail;
	}
	RTE_ETH_FOREACH_DEV(port) {
		if (n_ports++ == 0) {
			d->port = port;
			d->have_port = true;
		}
	}
	if (n_ports == 0) {
		if (conf->n_vdevs == 0 && conf->n_pci == 0)
			TL_ERR("no DPDK port: set capture.dpdk.vdevs (e.g. net_af_xdp0,iface=eth1) "
			       "or bind a NIC to vfio-pci and list it in capture.dpdk.pci");
		else
			TL_ERR("no DPDK port came up from capture.dpdk.vdevs/pci (%s%s): the EAL "
			       "messages above say why; check the interface or PCI address exists%s",
					conf->n_vdevs ? conf->vdevs[0] : conf->pci[0],
					conf->n_vdevs + conf->n_pci > 1 ? ", ..." : "", priv_hint());
		rc = TL_E_NODEV;
		goto fail;
	}
	if (n_ports > 1)
		TL_WARN("%u DPDK ports found; capturing on port %u only", n_ports, d->port);
	rc = port_setup(d);
	if (rc < 0)
		goto fail;
	d->ctx = rte_zmalloc_socket("tl_workers", sizeof(*d->ctx) * n_queues, RTE_CACHE_LINE_SIZE,
			d->socket);
	if (d->ctx == NULL) {
		rc = -ENOMEM;
		goto fail;
	}
	for (unsigned q = 0; q < n_queues; q++) {
		d->ctx[q].linear = rte_malloc_socket("tl_linear", LINEAR_BUF, RTE_CACHE_LINE_SIZE,
				d->socket);
		if (d->ctx[q].linear == NULL) {
			rc = -ENOMEM;
			goto fail;
		}
	}
	for (unsigned q = 0; q < d->n_tx; q++) {
		rc = tx_buffer_init(&d->ctx[q], d->socket);
		if (rc < 0)
			goto fail;
	}
	free(a);
	*out = d;
	return 0;
fail:
	free(a);
	tl_dpdk_close(d);
	return rc;
}

int
tl_dpdk_socket(const struct tl_dpdk *d)
{
	return d ? d->socket : -1;
}

const char *
tl_dpdk_describe(const struct tl_dpdk *d)
{
	return d->desc;
}

/* --- workers --- */

static inline uint32_t
hw_flags(const struct rte_mbuf *m)
{
	uint32_t f = 0;

	if ((m->ol_flags & RTE_MBUF_F_RX_IP_CKSUM_MASK) == RTE_MBUF_F_RX_IP_CKSUM_GOOD)
		f |= TL_HW_IP_CKSUM_GOOD;
	if ((m->ol_flags & RTE_MBUF_F_RX_L4_CKSUM_MASK) == RTE_MBUF_F_RX_L4_CKSUM_GOOD)
		f |= TL_HW_L4_CKSUM_GOOD;
	return f;
}

static inline uint64_t
now_ns(uint64_t tsc, double ns_per_tsc)
{
	return (uint64_t)((double)tsc * ns_per_tsc);
}

static void
process_burst(struct worker_ctx *wc, struct rte_mbuf **pkts, uint16_t n, uint64_t now)
{
	for (uint16_t i = 0; i < n; i++) {
		struct rte_mbuf *m = pkts[i];

		if (i + 1 < n)
			rte_prefetch0(rte_pktmbuf_mtod(pkts[i + 1], void *));
		if (likely(m->nb_segs == 1)) {
			tl_pipeline_rx(wc->pw, rte_pktmbuf_mtod(m, const uint8_t *), m->data_len,
					wc->d->hw_cksum ? hw_flags(m) : 0, now);
		} else {
			/* Scattered (jumbo) frames are rare: copy into one buffer rather than
			 * teach every decoder about segments. */
			uint32_t len = RTE_MIN(m->pkt_len, (uint32_t)LINEAR_BUF);
			const uint8_t *p = rte_pktmbuf_read(m, 0, len, wc->linear);

			tl_pipeline_rx(wc->pw, p, len, wc->d->hw_cksum ? hw_flags(m) : 0, now);
		}
	}
	rte_pktmbuf_free_bulk(pkts, n);
}

static int
worker_main(void *arg)
{
	struct worker_ctx *wc = arg;
	struct tl_dpdk *d = wc->d;
	struct rte_mbuf *pkts[MAX_BURST];
	const uint16_t burst = (uint16_t)d->conf.burst;
	const double ns_per_tsc = 1e9 / (double)rte_get_tsc_hz();
	const uint64_t tick_tsc = (uint64_t)((double)d->conf.tick / ns_per_tsc);
	const uint64_t idle_stop_tsc = (uint64_t)((double)wc->idle_stop_ns / ns_per_tsc);
	uint64_t last_rx = rte_rdtsc(), last_tick = last_rx;
	uint16_t n;

	TL_INFO("worker lcore %u polls port %u queue %u", rte_lcore_id(), d->port, wc->queue);
	tl_pipeline_online(wc->pw);
	while (!__atomic_load_n(wc->stop, __ATOMIC_RELAXED)) {
		uint64_t tsc;

		/* The previous burst is done with its generation (one load when nothing
		 * was published since). */
		tl_pipeline_quiescent(wc->pw);
		n = rte_eth_rx_burst(d->port, wc->queue, pkts, burst);
		tsc = rte_rdtsc();
		/* Housekeeping on a clock, busy or idle: a steady trickle must not hold a
		 * batch back any more than silence does. One compare per burst. */
		if (unlikely(tsc - last_tick > tick_tsc)) {
			tl_pipeline_tick(wc->pw, now_ns(tsc, ns_per_tsc));
			/* A tick can commit a batch and so acknowledge frames. */
			tx_flush(wc);
			last_tick = tsc;
		}
		if (unlikely(n == 0)) {
			if (wc->expect && idle_stop_tsc && tsc - last_rx > idle_stop_tsc) {
				TL_WARN("queue %u: %" PRIu64 " of %" PRIu64
					" expected frames arrived; giving up after idle timeout",
						wc->queue, wc->received, wc->expect);
				break;
			}
			continue;
		}
		last_rx = tsc;
		process_burst(wc, pkts, n, now_ns(tsc, ns_per_tsc));
		tx_flush(wc);
		wc->received += n;
		if (wc->expect && wc->received >= wc->expect)
			break;
	}
	/* Drain what the NIC already holds, bounded so a flood cannot keep us here. */
	for (int i = 0; i < 1024; i++) {
		n = rte_eth_rx_burst(d->port, wc->queue, pkts, burst);
		if (n == 0)
			break;
		process_burst(wc, pkts, n, now_ns(rte_rdtsc(), ns_per_tsc));
		tx_flush(wc);
		wc->received += n;
	}
	/* Datagrams still missing fragments can never complete now: count them; and
	 * whatever the sink still holds goes out. */
	tl_pipeline_tick(wc->pw, UINT64_MAX);
	tx_flush(wc);
	tl_pipeline_offline(wc->pw);
	return 0;
}

int
tl_dpdk_run(struct tl_dpdk *d, struct tl_pipeline_worker *workers, const uint64_t *expect,
		uint64_t idle_stop_ns, volatile int *stop)
{
	unsigned lcore, q = 0;
	int rc;

	rc = rte_eth_dev_start(d->port);
	if (rc != 0) {
		TL_ERR("port %u: start failed: %s", d->port, rte_strerror(-rc));
		return TL_E_DPDK;
	}
	d->started = true;
	rc = rte_eth_promiscuous_enable(d->port);
	if (rc != 0 && rc != -ENOTSUP)
		TL_WARN("port %u: promiscuous mode not enabled: %s", d->port, rte_strerror(-rc));
	RTE_LCORE_FOREACH_WORKER(lcore) {
		struct worker_ctx *wc;

		if (q == d->n_queues)
			break;
		wc = &d->ctx[q];
		wc->d = d;
		wc->pw = &workers[q];
		wc->queue = (uint16_t)q;
		wc->expect = expect ? expect[q] : 0;
		wc->idle_stop_ns = idle_stop_ns;
		wc->stop = stop;
		tl_pipeline_set_tx(wc->pw, wc->txb ? tx_frame : NULL, wc->txb ? wc : NULL);
		rc = rte_eal_remote_launch(worker_main, wc, lcore);
		if (rc != 0) {
			TL_ERR("cannot launch worker on lcore %u: %s", lcore, rte_strerror(-rc));
			__atomic_store_n(stop, 1, __ATOMIC_RELAXED);
			break;
		}
		q++;
	}
	/* rte_eal_mp_wait_lcore() spins: on a small appliance that is a whole core taken
	 * from the spool writer, the uplink and a local ClickHouse. Sleep instead until
	 * every worker is back in WAIT, then collect them (which no longer spins). */
	for (;;) {
		unsigned running = 0;

		RTE_LCORE_FOREACH_WORKER(lcore)
			running += rte_eal_get_lcore_state(lcore) == RUNNING;
		if (running == 0)
			break;
		usleep(5000);
	}
	rte_eal_mp_wait_lcore();
	return rc ? TL_E_DPDK : 0;
}

void
tl_dpdk_stats(struct tl_dpdk *d, struct tl_counters *c)
{
	struct rte_eth_stats st;

	if (d == NULL)
		return;
	if (rte_eth_stats_get(d->port, &st) == 0) {
		c->rx_missed += st.imissed;
		c->rx_nombuf += st.rx_nombuf;
	}
	for (unsigned q = 0; d->ctx && q < d->n_queues; q++) {
		c->tx_frames += __atomic_load_n(&d->ctx[q].tx_frames, __ATOMIC_RELAXED);
		c->tx_dropped += __atomic_load_n(&d->ctx[q].tx_dropped, __ATOMIC_RELAXED);
	}
}

void
tl_dpdk_close(struct tl_dpdk *d)
{
	if (d == NULL)
		return;
	if (d->started)
		rte_eth_dev_stop(d->port);
	if (d->eal_up) {
		if (d->ctx) {
			for (unsigned q = 0; q < d->n_queues; q++) {
				rte_free(d->ctx[q].linear);
				rte_free(d->ctx[q].txb);
			}
			rte_free(d->ctx);
		}
		if (d->have_port)
			rte_eth_dev_close(d->port);
		rte_mempool_free(d->pool);
		rte_mempool_free(d->tx_pool);
		rte_eal_cleanup();
	}
	free(d);
}
