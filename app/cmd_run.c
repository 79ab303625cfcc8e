/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pcap/pcap.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <rte_malloc.h>

#include "tl_app.h"
#include "tl_cmd.h"
#include "tl_capture.h"
#include "tl_dpdk.h"
#include "tl_dump.h"
#include "tl_error.h"
#include "tl_edge.h"
#include "tl_failover.h"
#include "tl_rawdedup.h"
#include "tl_json.h"
#include "tl_ddl.h"
#include "tl_live.h"
#include "tl_log.h"
#include "tl_metrics.h"
#include "tl_reload.h"
#include "tl_opt.h"
#include "tl_sink.h"
#include "tl_time.h"
#include "tl_uplink.h"

#define MAX_PCAP_FILES 16

static volatile int stop_flag;
static struct tl_reload *reload_ctl;

static void
on_signal(int sig)
{
	(void)sig;
	__atomic_store_n(&stop_flag, 1, __ATOMIC_RELAXED);
}

/* SIGHUP: load the profile again (tl_reload_request is async-signal-safe). */
static void
on_hup(int sig)
{
	struct tl_reload *ctl = __atomic_load_n(&reload_ctl, __ATOMIC_RELAXED);

	(void)sig;
	if (ctl)
		tl_reload_request(ctl);
}

#define MAX_UPLINKS 64
/* A plain stop waits this long for the uplinks to deliver what the spool holds. */
#define STOP_DELIVER_NS 5000000000ull

/*
 * The uplinks: [0] takes the default route's batches, one more per routed destination
 * (started at start, and by a reload that adds one; never stopped before exit, since
 * the spool may still hold the batches of a route a reload removed).
 */
struct uplinks {
	pthread_mutex_t lock;
	unsigned n;
	struct tl_uplink *u[MAX_UPLINKS];
	uint32_t route[MAX_UPLINKS];
	unsigned target[MAX_UPLINKS];
	struct tl_failover *fo; /* the targets (uplink.url, then uplink.failover.targets) */
	/* how to start one */
	const struct tl_uplink_conf *conf;
	const struct tl_schema *schema;
	struct tl_spool *spool;
	const char *appliance;
};

/* One uplink per target for route @p r (NULL: the default route); under the lock. */
static int
uplinks_start(struct uplinks *ups, const struct tl_uplink_route *r)
{
	unsigned n_t = tl_failover_targets(ups->fo);
	struct tl_uplink_conf c = *ups->conf;
	int rc;

	if (ups->n + n_t > MAX_UPLINKS) {
		TL_ERR("uplink: more than %d destinations x targets", MAX_UPLINKS);
		return -ENOSPC;
	}
	for (unsigned t = 0; t < n_t; t++) {
		if (t > 0)
			snprintf(c.url, sizeof(c.url), "%s", ups->conf->failover.targets[t - 1]);
		rc = tl_uplink_start_target(&c, ups->schema, ups->spool, r, ups->fo, t,
				&ups->u[ups->n]);
		if (rc < 0)
			return rc;
		tl_uplink_set_appliance_id(ups->u[ups->n], ups->appliance);
		ups->route[ups->n] = r ? r->id : 0;
		ups->target[ups->n++] = t;
	}
	return 0;
}

/* Start the uplinks of the routes of @p set that have none yet. */
static int
uplinks_ensure(struct uplinks *ups, const struct tl_route_set *set)
{
	int rc = 0;

	if (set == NULL || ups->n == 0)
		return 0;
	pthread_mutex_lock(&ups->lock);
	for (uint32_t i = 1; i < tl_route_count(set->table) && rc == 0; i++) {
		struct tl_uplink_route r = {
			.id = set->id[i],
			.database = tl_route_database(set->table, i),
			.table = tl_route_main_table(set->table, i),
		};
		unsigned k = 0;

		while (k < ups->n && ups->route[k] != r.id)
			k++;
		if (k < ups->n)
			continue;
		rc = uplinks_start(ups, &r);
		if (rc < 0) {
			TL_ERR("uplink for %s.%s: %s", r.database, r.table, tl_strerror(rc));
			break;
		}
		TL_INFO("uplink: route %08x to %s.%s", r.id, r.database, r.table);
	}
	pthread_mutex_unlock(&ups->lock);
	return rc;
}

/* The counters of every uplink, added (connected: how many are). */
static unsigned
uplinks_stats(struct uplinks *ups, struct tl_uplink_stats *sum)
{
	unsigned n;

	_Static_assert(sizeof(*sum) % sizeof(uint64_t) == 0, "uplink stats are u64");
	memset(sum, 0, sizeof(*sum));
	pthread_mutex_lock(&ups->lock);
	n = ups->n;
	for (unsigned i = 0; i < n; i++) {
		struct tl_uplink_stats st;
		uint64_t *d = (uint64_t *)sum;
		const uint64_t *v = (const uint64_t *)&st;

		tl_uplink_stats(ups->u[i], &st);
		for (size_t k = 0; k < sizeof(st) / sizeof(uint64_t); k++)
			d[k] += v[k];
	}
	pthread_mutex_unlock(&ups->lock);
	return n;
}

/* What a published generation changes outside the workers. */
struct live_out {
	struct uplinks *ups;
	const char *database; /* the default route's */
	const char *profile;
	unsigned n_workers;
	const struct tl_schema *schema;
};

/* The error_patterns dimension table follows the patterns in use. */
static void
publish_patterns(struct live_out *lo, const struct tl_live_gen *g)
{
	char **sql = NULL;
	unsigned n = 0;
	int rc;

	if (lo->ups->n == 0)
		return;
	rc = tl_ddl_patterns(lo->database, g->db, lo->profile, (uint32_t)time(NULL), &sql, &n);
	/* Every target has the default route's uplink, and that one runs the statements. */
	for (unsigned i = 0; rc == 0 && i < lo->ups->n; i++)
		if (lo->ups->route[i] == 0)
			rc = tl_uplink_set_statements(lo->ups->u[i], (const char *const *)sql, n);
	if (rc < 0)
		TL_ERR("error_patterns: %s", tl_strerror(rc));
	tl_ddl_stmts_free(sql, n);
}

static void
on_publish(void *arg, const struct tl_live_gen *g)
{
	struct live_out *lo = arg;

	TL_INFO("profile reloaded: generation %" PRIu64 ", %u patterns (%s), %u routes", g->gen,
			tl_classify_db_count(g->db), g->db_hash,
			g->routes ? tl_route_count(g->routes->table) : 1);
	publish_patterns(lo, g);
	uplinks_ensure(lo->ups, g->routes);
}

/* The routing of @p cfg for generation @p g (NULL routes when the profile has none). */
static int
build_routes(const struct live_out *lo, const struct tl_app_config *cfg,
		const struct tl_schema *schema, struct tl_live_gen *g, char *err, size_t errlen)
{
	if (cfg->routing.n_rules == 0)
		return 0;
	return tl_route_set_build(&cfg->routing, lo->database, schema, g->db, lo->n_workers,
			&g->routes, err, errlen);
}

/* tl_reload_conf.prepare: a reloaded profile's routing goes with its patterns. */
static int
prepare(void *arg, const struct tl_app_config *cfg, struct tl_live_gen *gen, char *err,
		size_t errlen)
{
	struct live_out *lo = arg;

	return build_routes(lo, cfg, lo->schema, gen, err, errlen);
}

static void
run_usage(FILE *f)
{
	fprintf(f,
		"usage: tapline run --config PROFILE [options]\n"
		"\n"
		"Capture telemetry with the profile's driver and run it through the pipeline.\n"
		"Final counters are printed as 'figure <name> <value>' lines on exit.\n"
		"\n"
		"  -c, --config FILE        profile or site file (required)\n"
		"      --pcap FILE[,FILE]   replay capture files through DPDK net_pcap, one RX\n"
		"                           queue and worker per file (replaces capture.dpdk.vdevs)\n"
		"      --once               with --pcap: exit when every file is consumed and every\n"
		"                           event is delivered to ClickHouse (or quarantined)\n"
		"      --idle-timeout DUR   with --once: give up if frames stop arriving (default 10s)\n"
		"      --vdev ARGS          a DPDK virtual device (repeatable; replaces the profile's)\n"
		"      --workers N          RX queues / worker lcores (overrides capture.workers)\n"
		"      --no-huge            run DPDK without hugepages\n"
		"      --dump-events PREFIX write every event as canonical JSON to PREFIX.<worker>\n"
		"      --clickhouse URL     deliver to this ClickHouse (overrides uplink.url), e.g.\n"
		"                           http://127.0.0.1:8123/?database=telemetry\n"
		"      --spool DIR          the spool's folder (overrides spool.path)\n"
		"      --no-uplink          spool only; deliver nothing (replay tests, staging)\n"
		"      --capture-only       benchmark the capture driver: count frames, drop them\n"
		"                           (nothing is decoded, stored or delivered)\n"
		"      --check              load the profile, compile the patterns and probe the\n"
		"                           capture driver (attach, bind, open the port), then\n"
		"                           stop: exit 0 if tapline could run here\n"
		"      --deliver-timeout D  with --once: longest wait for delivery (default 300s)\n"
		"  -v, --verbose            debug logging\n"
		"  -h, --help               this text\n"
		"\n"
		"Stops on SIGINT/SIGTERM: drains the queues, then prints the counters.\n"
		"Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error.\n");
}

/* Frames in a capture file, so --once knows when a queue is done. */
static int
count_frames(const char *path, uint64_t *n)
{
	char errbuf[PCAP_ERRBUF_SIZE];
	struct pcap_pkthdr *h;
	const u_char *data;
	pcap_t *p = pcap_open_offline(path, errbuf);
	int rc;

	if (p == NULL) {
		TL_ERR("%s: %s", path, errbuf);
		return TL_E_PCAP;
	}
	*n = 0;
	while ((rc = pcap_next_ex(p, &h, &data)) == 1)
		(*n)++;
	if (rc == PCAP_ERROR) {
		TL_ERR("%s: %s", path, pcap_geterr(p));
		pcap_close(p);
		return TL_E_PCAP;
	}
	pcap_close(p);
	return 0;
}

/* Where a worker's events go: the spool sink, and an optional dump beside it. */
struct worker_out {
	struct tl_sink sink;
	struct tl_dump *dump;
	struct tl_framed_worker *fw;
	bool spooling;
} __attribute__((aligned(64)));

static void
out_event(void *arg, const struct tl_event *ev, enum tl_reason verdict)
{
	struct worker_out *w = arg;

	if (w->dump)
		tl_dump_event(w->dump, ev, verdict);
	if (w->spooling)
		tl_sink_event(&w->sink, ev, verdict);
}

static void
out_tick(void *arg, uint64_t now_ns)
{
	struct worker_out *w = arg;

	if (w->spooling)
		tl_sink_tick(&w->sink, now_ns);
	if (w->fw)
		tl_framed_worker_tick(w->fw, now_ns);
}

/* The spool's commit callback: framed mode's, once it exists (records are handed over
 * only after the workers start, by then it does). */
static void
on_commit(void *arg, unsigned producer, uint64_t user, uint64_t key, int status)
{
	struct tl_framed *f = __atomic_load_n((struct tl_framed *const *)arg, __ATOMIC_ACQUIRE);

	if (f != NULL)
		tl_framed_on_commit(f, producer, user, key, status);
}

/*
 * The capture driver chosen by capture.driver: DPDK, or tapline's own AF_XDP driver. Both
 * feed the same pipeline workers; only opening, running and their counters differ.
 */
struct capture {
	int kind; /* enum tl_capture_driver */
	struct tl_dpdk *dpdk;
	struct tl_xdp *xdp;
	struct tl_sock *sock;
};

static int
capture_open(struct capture *c, const struct tl_capture_conf *conf, const uint16_t *ports,
		unsigned n_ports, unsigned n_workers)
{
	char err[512];
	int rc;

	c->kind = conf->driver;
	if (c->kind == TL_CAPTURE_DPDK) {
		rc = tl_dpdk_open(&conf->dpdk, n_workers, "tapline", &c->dpdk);
		if (rc == 0)
			TL_INFO("%s; json extractor %s", tl_dpdk_describe(c->dpdk), tl_json_impl());
		return rc;
	}
	if (c->kind == TL_CAPTURE_SOCKET) {
		rc = tl_sock_open(&conf->socket, ports, n_ports, n_workers, &c->sock, err,
				sizeof(err));
		if (rc < 0) {
			TL_ERR("capture: %s", err);
			return rc;
		}
		TL_INFO("%s; json extractor %s", tl_sock_describe(c->sock), tl_json_impl());
		return 0;
	}
	rc = tl_xdp_open(&conf->xdp, ports, n_ports, n_workers, &c->xdp, err, sizeof(err));
	if (rc < 0) {
		TL_ERR("capture: %s", err);
		return rc;
	}
	TL_INFO("%s; json extractor %s", tl_xdp_describe(c->xdp), tl_json_impl());
	return 0;
}

/* Zeroed, cache-aligned memory for the workers: on the port's NUMA node with DPDK. */
static void *
capture_zalloc(const struct capture *c, const char *what, size_t size)
{
	void *p;

	if (c->kind == TL_CAPTURE_DPDK)
		return rte_zmalloc_socket(what, size, RTE_CACHE_LINE_SIZE, tl_dpdk_socket(c->dpdk));
	p = aligned_alloc(64, (size + 63) & ~(size_t)63);
	if (p != NULL)
		memset(p, 0, size);
	return p;
}

static void
capture_free(const struct capture *c, void *p)
{
	if (c->kind == TL_CAPTURE_DPDK)
		rte_free(p);
	else
		free(p);
}

static int
capture_run(struct capture *c, struct tl_pipeline_worker *workers, const uint64_t *expect,
		uint64_t idle_stop_ns, volatile int *stop)
{
	if (c->kind == TL_CAPTURE_DPDK)
		return tl_dpdk_run(c->dpdk, workers, expect, idle_stop_ns, stop);
	if (c->kind == TL_CAPTURE_SOCKET)
		return tl_sock_run(c->sock, workers, idle_stop_ns, stop);
	return tl_xdp_run(c->xdp, workers, idle_stop_ns, stop);
}

static void
capture_stats(struct capture *c, struct tl_counters *nic)
{
	if (c->kind == TL_CAPTURE_DPDK)
		tl_dpdk_stats(c->dpdk, nic);
	else if (c->kind == TL_CAPTURE_SOCKET)
		tl_sock_stats(c->sock, nic);
	else
		tl_xdp_stats(c->xdp, nic);
}

static void
capture_close(struct capture *c)
{
	tl_dpdk_close(c->dpdk);
	tl_xdp_close(c->xdp);
	tl_sock_close(c->sock);
	c->dpdk = NULL;
	c->xdp = NULL;
	c->sock = NULL;
}

/* run --check: could the driver start here? Opens it (XDP: attach and detach) and closes. */
static int
capture_check(const struct tl_capture_conf *conf, const uint16_t *ports, unsigned n_ports,
		unsigned n_workers, const char *profile)
{
	const char *name = tl_capture_driver_names[conf->driver];
	struct capture c = {0};
	char err[512];
	int rc;

	if (conf->driver == TL_CAPTURE_XDP) {
		rc = tl_xdp_probe(&conf->xdp, err, sizeof(err));
		if (rc < 0)
			TL_ERR("capture: %s", err);
	} else {
		rc = capture_open(&c, conf, ports, n_ports, n_workers);
		capture_close(&c);
	}
	if (rc < 0) {
		printf("check %s: capture driver %s cannot start here: %s\n", profile, name,
				tl_strerror(rc));
		return TL_EXIT_FAIL;
	}
	printf("check %s: capture driver %s can start with %u worker%s\n", profile, name,
			n_workers, n_workers == 1 ? "" : "s");
	return TL_EXIT_OK;
}

/* What a scrape reads: the workers' counters and the NIC's, the sinks, spool, uplink. */
struct scrape {
	const struct tl_counters *w[64];
	unsigned n;
	struct capture *cap;
	const struct worker_out *outs;
	struct tl_spool *spool;
	struct uplinks *ups;
	struct tl_live *live;
	struct tl_reload *reload;
	struct tl_framed *framed;
	struct tl_edge *edge;
	struct tl_rawdedup *rawdedup;
};

/* Late rows, edge rollups and raw-mode dedup. */
static void
collect_edge(struct scrape *s, struct tl_metrics_buf *b)
{
	uint64_t late = 0, dups = 0, mem = 0, batches = 0;
	struct tl_rollup_stats st;

	for (unsigned i = 0; i < s->n; i++) {
		late += __atomic_load_n(&s->outs[i].sink.late_rows, __ATOMIC_RELAXED);
		dups += __atomic_load_n(&s->outs[i].sink.dup_rows, __ATOMIC_RELAXED);
		if (s->outs[i].sink.dd != NULL) {
			struct tl_dedup_events_stats ds;

			/* memory_bytes is fixed at create: no race with the worker. */
			tl_dedup_events_stats(s->outs[i].sink.dd, &ds);
			mem += ds.memory_bytes;
		}
	}
	tl_metrics_family(b, "tapline_late_rows_total", "counter",
			"Rows stored with late = 1 (behind their stream's watermark).");
	tl_metrics_printf(b, "tapline_late_rows_total %" PRIu64 "\n", late);
	if (s->rawdedup != NULL) {
		tl_metrics_family(b, "tapline_dedup_raw_duplicates_total", "counter",
				"Raw-mode events dropped: their event_id was accepted within the window.");
		tl_metrics_printf(b, "tapline_dedup_raw_duplicates_total %" PRIu64 "\n", dups);
		tl_metrics_family(b, "tapline_dedup_raw_memory_bytes", "gauge",
				"Memory of the workers' raw-mode dedup tables.");
		tl_metrics_printf(b, "tapline_dedup_raw_memory_bytes %" PRIu64 "\n", mem);
		tl_metrics_family(b, "tapline_dedup_raw_stored_ids", "gauge",
				"Event ids the spool keeps for the next start.");
		tl_metrics_printf(b, "tapline_dedup_raw_stored_ids %" PRIu64 "\n",
				tl_rawdedup_stored(s->rawdedup));
	}
	if (s->edge == NULL)
		return;
	tl_edge_stats(s->edge, &st, &batches);
	tl_metrics_family(b, "tapline_rollup_rows_total", "counter",
			"Rollup rows emitted, by kind (first emission of a window, or correction).");
	tl_metrics_printf(b, "tapline_rollup_rows_total{kind=\"window\"} %" PRIu64 "\n",
			st.rows_emitted - st.corrections);
	tl_metrics_printf(b, "tapline_rollup_rows_total{kind=\"correction\"} %" PRIu64 "\n",
			st.corrections);
	tl_metrics_family(b, "tapline_rollup_forced_total", "counter",
			"Rollup cells emitted early because the table of open cells was full.");
	tl_metrics_printf(b, "tapline_rollup_forced_total %" PRIu64 "\n", st.forced);
	tl_metrics_family(b, "tapline_rollup_cells", "gauge", "Rollup cells held.");
	tl_metrics_printf(b, "tapline_rollup_cells %" PRIu64 "\n", st.cells);
	tl_metrics_family(b, "tapline_rollup_streams", "gauge", "Streams the rollup tracks.");
	tl_metrics_printf(b, "tapline_rollup_streams %" PRIu64 "\n", st.streams);
	tl_metrics_family(b, "tapline_rollup_memory_bytes", "gauge", "Memory of the rollup.");
	tl_metrics_printf(b, "tapline_rollup_memory_bytes %" PRIu64 "\n", st.memory_bytes);
	tl_metrics_family(b, "tapline_rollup_batches_total", "counter",
			"Rollups batches stored in the spool.");
	tl_metrics_printf(b, "tapline_rollup_batches_total %" PRIu64 "\n", batches);
}

/* A log2-bucketed ns histogram as a Prometheus histogram in seconds. */
static void
histogram(struct tl_metrics_buf *b, const char *name, const char *help, const uint64_t *bucket,
		unsigned n)
{
	uint64_t cum = 0;

	tl_metrics_family(b, name, "histogram", help);
	for (unsigned i = 0; i < n; i++) {
		cum += bucket[i];
		if (i >= 10) /* below ~1 us nothing is interesting */
			tl_metrics_printf(b, "%s_bucket{le=\"%.9g\"} %" PRIu64 "\n", name,
					(double)(2ull << i) * 1e-9, cum);
	}
	tl_metrics_printf(b, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n%s_count %" PRIu64 "\n", name, cum,
			name, cum);
}

/* Sum of one framed counter over the workers. */
#define FRAMED_SUM(s, field)                                                                     \
	({                                                                                         \
		uint64_t v_ = 0;                                                                   \
		for (unsigned i_ = 0; i_ < (s)->n; i_++)                                           \
			if ((s)->outs[i_].fw)                                                      \
				v_ += __atomic_load_n(                                             \
				        &tl_framed_worker_counters((s)->outs[i_].fw)->field,      \
				        __ATOMIC_RELAXED);                                         \
		v_;                                                                                \
	})

static void
collect_framed(struct scrape *s, struct tl_metrics_buf *b)
{
	struct tl_dedup_frames_stats ds;
	uint64_t lat[40] = {0}, in_flight = 0;

	tl_metrics_family(b, "tapline_framed_frames_total", "counter",
			"Framed datagrams, by outcome (accepted: new frames processed).");
	tl_metrics_printf(b, "tapline_framed_frames_total{outcome=\"seen\"} %" PRIu64 "\n",
			FRAMED_SUM(s, frames));
	tl_metrics_printf(b, "tapline_framed_frames_total{outcome=\"accepted\"} %" PRIu64 "\n",
			FRAMED_SUM(s, frames_accepted));
	tl_metrics_printf(b, "tapline_framed_frames_total{outcome=\"resend_in_flight\"} %" PRIu64
			"\n", FRAMED_SUM(s, resends_pending));
	tl_metrics_family(b, "tapline_framed_events_total", "counter", "Events of accepted frames.");
	tl_metrics_printf(b, "tapline_framed_events_total %" PRIu64 "\n", FRAMED_SUM(s, frame_events));
	tl_metrics_family(b, "tapline_framed_rejected_total", "counter",
			"Frames rejected, by reason.");
	for (int r = 1; r < TL_FRAME_REASON_MAX; r++)
		tl_metrics_printf(b, "tapline_framed_rejected_total{reason=\"%s\"} %" PRIu64 "\n",
				tl_frame_reason_name((enum tl_frame_reason)r),
				FRAMED_SUM(s, rejected[r]));
	tl_metrics_family(b, "tapline_framed_acks_total", "counter", "ACKs sent, by status.");
	for (int a = 0; a < TL_ACK_STATUS_MAX; a++)
		tl_metrics_printf(b, "tapline_framed_acks_total{status=\"%s\"} %" PRIu64 "\n",
				tl_ack_status_name((enum tl_ack_status)a), FRAMED_SUM(s, acks[a]));
	tl_metrics_family(b, "tapline_framed_ack_send_failed_total", "counter",
			"ACKs that could not be sent (no TX buffer or queue).");
	tl_metrics_printf(b, "tapline_framed_ack_send_failed_total %" PRIu64 "\n",
			FRAMED_SUM(s, ack_send_failed));
	tl_metrics_family(b, "tapline_framed_retry_later_total", "counter",
			"retry-later answers, by cause.");
	tl_metrics_printf(b, "tapline_framed_retry_later_total{cause=\"spool_full\"} %" PRIu64 "\n",
			FRAMED_SUM(s, retry_spool_full));
	tl_metrics_printf(b, "tapline_framed_retry_later_total{cause=\"in_flight_full\"} %" PRIu64
			"\n", FRAMED_SUM(s, retry_in_flight_full));
	tl_metrics_printf(b, "tapline_framed_retry_later_total{cause=\"dedup_full\"} %" PRIu64 "\n",
			FRAMED_SUM(s, retry_dedup_full));
	tl_metrics_printf(b, "tapline_framed_retry_later_total{cause=\"commit_failed\"} %" PRIu64
			"\n", FRAMED_SUM(s, retry_failed));
	for (unsigned i = 0; i < s->n; i++) {
		if (s->outs[i].fw == NULL)
			continue;
		in_flight += tl_framed_worker_in_flight(s->outs[i].fw);
		for (int k = 0; k < 40; k++)
			lat[k] += __atomic_load_n(
			        &tl_framed_worker_counters(s->outs[i].fw)->ack_latency_ns[k],
			        __ATOMIC_RELAXED);
	}
	tl_metrics_family(b, "tapline_framed_in_flight", "gauge",
			"Frames processed whose ACK waits for their commit.");
	tl_metrics_printf(b, "tapline_framed_in_flight %" PRIu64 "\n", in_flight);
	histogram(b, "tapline_framed_ack_seconds", "Frame arrival to committed ACK.", lat, 40);
	tl_framed_dedup_stats(s->framed, &ds);
	tl_metrics_family(b, "tapline_dedup_producers", "gauge", "Producers in the dedup table.");
	tl_metrics_printf(b, "tapline_dedup_producers %" PRIu64 "\n", ds.producers);
	tl_metrics_family(b, "tapline_dedup_memory_bytes", "gauge",
			"Memory of the framed dedup windows.");
	tl_metrics_printf(b, "tapline_dedup_memory_bytes %" PRIu64 "\n", ds.memory_bytes);
	tl_metrics_family(b, "tapline_dedup_frames_total", "counter", "Dedup verdicts.");
	tl_metrics_printf(b, "tapline_dedup_frames_total{verdict=\"new\"} %" PRIu64 "\n",
			ds.frames_new);
	tl_metrics_printf(b, "tapline_dedup_frames_total{verdict=\"duplicate\"} %" PRIu64 "\n",
			ds.frames_committed);
	tl_metrics_printf(b, "tapline_dedup_frames_total{verdict=\"old\"} %" PRIu64 "\n",
			ds.frames_old);
	tl_metrics_printf(b, "tapline_dedup_frames_total{verdict=\"pending\"} %" PRIu64 "\n",
			ds.frames_pending);
	tl_metrics_printf(b, "tapline_dedup_frames_total{verdict=\"full\"} %" PRIu64 "\n",
			ds.frames_full + ds.frames_stalled);
	tl_metrics_family(b, "tapline_dedup_evicted_total", "counter",
			"Idle producers evicted from the dedup table.");
	tl_metrics_printf(b, "tapline_dedup_evicted_total %" PRIu64 "\n", ds.producers_evicted);
}

static void
collect(void *arg, struct tl_metrics_buf *b)
{
	struct scrape *s = arg;
	struct tl_counters nic;
	struct tl_spool_stats ss;
	struct tl_uplink_stats us;

	memset(&nic, 0, sizeof(nic));
	capture_stats(s->cap, &nic);
	tl_metrics_pipeline(b, s->w, s->n, &nic);
	if (s->cap->xdp != NULL) {
		struct tl_xdp_prog_stats xs;

		if (tl_xdp_prog_stats(s->cap->xdp, &xs) == 0) {
			tl_metrics_family(b, "tapline_xdp_frames_total", "counter",
					"Frames seen by tapline's XDP program, by what it did with them.");
			tl_metrics_printf(b, "tapline_xdp_frames_total{action=\"redirected\"} %" PRIu64
					"\n", xs.redirected);
			tl_metrics_printf(b, "tapline_xdp_frames_total{action=\"passed\"} %" PRIu64
					"\n", xs.passed);
			tl_metrics_printf(b, "tapline_xdp_frames_total{action=\"parse_failed\"} %"
					PRIu64 "\n", xs.parse_failed);
			tl_metrics_printf(b, "tapline_xdp_frames_total{action=\"redirect_failed\"} %"
					PRIu64 "\n", xs.redirect_failed);
		}
	}

	collect_edge(s, b);
	tl_metrics_family(b, "tapline_spooled_rows_total", "counter",
			"Rows encoded by the workers for the spool, by table.");
	for (int t = 0; t < TL_BATCH_TABLE_MAX; t++) {
		uint64_t v = 0;

		for (unsigned i = 0; i < s->n; i++)
			v += __atomic_load_n(&s->outs[i].sink.cnt.rows[t], __ATOMIC_RELAXED);
		tl_metrics_printf(b, "tapline_spooled_rows_total{table=\"%s\"} %" PRIu64 "\n",
				tl_batch_table_name((unsigned)t), v);
	}
	tl_metrics_family(b, "tapline_sink_dropped_rows_total", "counter",
			"Rows dropped because the spool could not take their batch, by table.");
	for (int t = 0; t < TL_BATCH_TABLE_MAX; t++) {
		uint64_t v = 0;

		for (unsigned i = 0; i < s->n; i++)
			v += __atomic_load_n(&s->outs[i].sink.cnt.dropped_rows[t], __ATOMIC_RELAXED);
		tl_metrics_printf(b, "tapline_sink_dropped_rows_total{table=\"%s\"} %" PRIu64 "\n",
				tl_batch_table_name((unsigned)t), v);
	}

	if (s->live) {
		struct tl_live_stats ls;
		struct tl_reload_status rs;

		tl_live_stats(s->live, &ls);
		tl_metrics_family(b, "tapline_profile_generation", "gauge",
				"Generation of the classification patterns in use (1 at start).");
		tl_metrics_printf(b, "tapline_profile_generation %" PRIu64 "\n", ls.generation);
		tl_metrics_family(b, "tapline_profile_reloads_total", "counter",
				"Profile reloads, by result (failed: rejected, the old one kept).");
		memset(&rs, 0, sizeof(rs));
		if (s->reload)
			tl_reload_status(s->reload, &rs);
		tl_metrics_printf(b, "tapline_profile_reloads_total{result=\"ok\"} %" PRIu64 "\n",
				rs.reloads_ok);
		tl_metrics_printf(b, "tapline_profile_reloads_total{result=\"failed\"} %" PRIu64 "\n",
				rs.reloads_failed);
		tl_metrics_family(b, "tapline_profile_generations_pending_free", "gauge",
				"Retired generations a worker may still use.");
		tl_metrics_printf(b, "tapline_profile_generations_pending_free %" PRIu64 "\n",
				ls.gens_pending_free);
	}
	if (s->framed)
		collect_framed(s, b);
	tl_spool_stats(s->spool, &ss);
	tl_metrics_family(b, "tapline_spool_records", "gauge", "Batches in the spool, not yet delivered.");
	tl_metrics_printf(b, "tapline_spool_records %" PRIu64 "\n", ss.records);
	tl_metrics_family(b, "tapline_spool_bytes", "gauge", "Bytes of those batches.");
	tl_metrics_printf(b, "tapline_spool_bytes %" PRIu64 "\n", ss.bytes);
	tl_metrics_family(b, "tapline_spool_oldest_age_seconds", "gauge",
			"Age of the oldest undelivered batch.");
	tl_metrics_printf(b, "tapline_spool_oldest_age_seconds %.3f\n", (double)ss.oldest_age_ns * 1e-9);
	tl_metrics_family(b, "tapline_spool_used_bytes", "gauge", "LMDB pages in use.");
	tl_metrics_printf(b, "tapline_spool_used_bytes %" PRIu64 "\n", ss.used_bytes);
	tl_metrics_family(b, "tapline_spool_max_bytes", "gauge", "spool.max_size.");
	tl_metrics_printf(b, "tapline_spool_max_bytes %" PRIu64 "\n", ss.max_size);
	tl_metrics_family(b, "tapline_spool_full", "gauge", "1 while the spool is at its high-water mark.");
	tl_metrics_printf(b, "tapline_spool_full %" PRIu64 "\n", ss.full);
	tl_metrics_family(b, "tapline_spool_commits_total", "counter", "Durable group commits.");
	tl_metrics_printf(b, "tapline_spool_commits_total %" PRIu64 "\n", ss.commits);
	tl_metrics_family(b, "tapline_spool_dropped_total", "counter",
			"Batches the full policy dropped, by which end.");
	tl_metrics_printf(b, "tapline_spool_dropped_total{end=\"newest\"} %" PRIu64 "\n", ss.dropped_newest);
	tl_metrics_printf(b, "tapline_spool_dropped_total{end=\"oldest\"} %" PRIu64 "\n", ss.dropped_oldest);
	tl_metrics_family(b, "tapline_spool_backpressure_total", "counter",
			"Hand-overs refused at the high-water mark.");
	tl_metrics_printf(b, "tapline_spool_backpressure_total %" PRIu64 "\n", ss.backpressure);
	tl_metrics_family(b, "tapline_spool_quarantined_total", "counter",
			"Damaged records moved to quarantine.");
	tl_metrics_printf(b, "tapline_spool_quarantined_total %" PRIu64 "\n", ss.quarantined);
	histogram(b, "tapline_spool_commit_seconds", "Group commit latency (begin to durable).",
			ss.commit_ns, TL_SPOOL_HIST);

	if (s->ups->n == 0)
		return;
	tl_metrics_family(b, "tapline_uplinks", "gauge",
			"Uplinks: one for the default route and one per routed destination.");
	tl_metrics_printf(b, "tapline_uplinks %u\n", uplinks_stats(s->ups, &us));
	tl_metrics_family(b, "tapline_uplink_rows_total", "counter",
			"Rows ClickHouse confirmed, by table.");
	for (int t = 0; t < TL_BATCH_TABLE_MAX; t++)
		tl_metrics_printf(b, "tapline_uplink_rows_total{table=\"%s\"} %" PRIu64 "\n",
				tl_batch_table_name((unsigned)t), us.rows_delivered[t]);
	tl_metrics_family(b, "tapline_uplink_inserts_total", "counter", "Inserts by outcome.");
	tl_metrics_printf(b, "tapline_uplink_inserts_total{outcome=\"ok\"} %" PRIu64 "\n", us.inserts_ok);
	tl_metrics_printf(b, "tapline_uplink_inserts_total{outcome=\"retry\"} %" PRIu64 "\n",
			us.inserts_retry);
	tl_metrics_printf(b, "tapline_uplink_inserts_total{outcome=\"ambiguous\"} %" PRIu64 "\n",
			us.inserts_ambiguous);
	tl_metrics_printf(b, "tapline_uplink_inserts_total{outcome=\"rejected\"} %" PRIu64 "\n",
			us.inserts_rejected);
	tl_metrics_family(b, "tapline_uplink_in_flight", "gauge", "Inserts in flight.");
	tl_metrics_printf(b, "tapline_uplink_in_flight %" PRIu64 "\n", us.in_flight);
	tl_metrics_family(b, "tapline_uplink_connected", "gauge",
			"Uplinks whose DDL is applied and whose inserts flow.");
	tl_metrics_printf(b, "tapline_uplink_connected %" PRIu64 "\n", us.connected);
	tl_metrics_family(b, "tapline_uplink_quarantined_rows_total", "counter",
			"Rows ClickHouse refused, quarantined.");
	tl_metrics_printf(b, "tapline_uplink_quarantined_rows_total %" PRIu64 "\n", us.rows_quarantined);
	tl_metrics_family(b, "tapline_uplink_bytes_total", "counter", "Body bytes sent.");
	tl_metrics_printf(b, "tapline_uplink_bytes_total %" PRIu64 "\n", us.bytes_sent);
	histogram(b, "tapline_uplink_insert_seconds", "Insert latency (submit to answer).",
			us.latency_ns, 40);
}

struct run_opts {
	const char *config;
	char *pcap;
	bool once;
	uint64_t idle_timeout;
	const char *vdevs[TL_DPDK_MAX_VDEVS];
	unsigned n_vdevs;
	uint64_t workers;
	bool no_huge;
	const char *dump_prefix;
	const char *clickhouse;
	const char *spool_dir;
	bool no_uplink;
	bool check;
	bool capture_only;
	uint64_t deliver_timeout;
};

static int
parse_run_opts(int argc, char **argv, struct run_opts *o)
{
	static const struct option lo[] = {
		{"config", required_argument, NULL, 'c'},
		{"pcap", required_argument, NULL, 'p'},
		{"once", no_argument, NULL, 'o'},
		{"idle-timeout", required_argument, NULL, 'i'},
		{"vdev", required_argument, NULL, 'V'},
		{"workers", required_argument, NULL, 'w'},
		{"no-huge", no_argument, NULL, 'H'},
		{"dump-events", required_argument, NULL, 'd'},
		{"clickhouse", required_argument, NULL, 'C'},
		{"spool", required_argument, NULL, 'S'},
		{"no-uplink", no_argument, NULL, 'N'},
		{"check", no_argument, NULL, 'K'},
		{"capture-only", no_argument, NULL, 'Q'},
		{"deliver-timeout", required_argument, NULL, 'T'},
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int c;

	memset(o, 0, sizeof(*o));
	o->idle_timeout = 10ull * 1000000000ull;
	o->deliver_timeout = 300ull * 1000000000ull;
	optind = 1;
	while ((c = getopt_long(argc, argv, "c:vh", lo, NULL)) != -1) {
		switch (c) {
		case 'c':
			o->config = optarg;
			break;
		case 'p':
			o->pcap = optarg;
			break;
		case 'o':
			o->once = true;
			break;
		case 'i':
			if (tl_parse_duration(optarg, &o->idle_timeout) < 0) {
				fprintf(stderr, "tapline run: --idle-timeout: '%s' is not a duration\n",
						optarg);
				return -EINVAL;
			}
			break;
		case 'V':
			if (o->n_vdevs == TL_DPDK_MAX_VDEVS) {
				fprintf(stderr, "tapline run: at most %d --vdev\n", TL_DPDK_MAX_VDEVS);
				return -EINVAL;
			}
			o->vdevs[o->n_vdevs++] = optarg;
			break;
		case 'w': {
			char *end;

			o->workers = strtoull(optarg, &end, 10);
			if (*end || o->workers == 0 || o->workers > 64) {
				fprintf(stderr, "tapline run: --workers takes 1-64\n");
				return -EINVAL;
			}
			break;
		}
		case 'H':
			o->no_huge = true;
			break;
		case 'd':
			o->dump_prefix = optarg;
			break;
		case 'C':
			o->clickhouse = optarg;
			break;
		case 'S':
			o->spool_dir = optarg;
			break;
		case 'N':
			o->no_uplink = true;
			break;
		case 'K':
			o->check = true;
			break;
		case 'Q':
			o->capture_only = true;
			break;
		case 'T':
			if (tl_parse_duration(optarg, &o->deliver_timeout) < 0) {
				fprintf(stderr, "tapline run: --deliver-timeout: '%s' is not a duration\n",
						optarg);
				return -EINVAL;
			}
			break;
		case 'v':
			tl_log_set_level(TL_LOG_DEBUG);
			break;
		case 'h':
			run_usage(stdout);
			return 1;
		default:
			run_usage(stderr);
			return -EINVAL;
		}
	}
	if (optind != argc || o->config == NULL) {
		fprintf(stderr, "tapline run: %s\n",
				o->config ? "unexpected argument" : "--config is required");
		run_usage(stderr);
		return -EINVAL;
	}
	if (o->once && o->pcap == NULL) {
		fprintf(stderr, "tapline run: --once needs --pcap\n");
		return -EINVAL;
	}
	return 0;
}

/* --pcap a,b -> one net_pcap vdev with one RX queue per file. */
static int
pcap_vdev(struct tl_app_config *cfg, char *list, uint64_t *expect, unsigned *n_files)
{
	struct tl_dpdk_conf *d = &cfg->capture.dpdk;
	char *save = NULL, *f;
	size_t len;
	int rc;

	len = (size_t)snprintf(d->vdevs[0], sizeof(d->vdevs[0]), "net_pcap_tl0");
	*n_files = 0;
	for (f = strtok_r(list, ",", &save); f; f = strtok_r(NULL, ",", &save)) {
		if (*n_files == MAX_PCAP_FILES) {
			TL_ERR("--pcap: at most %d files", MAX_PCAP_FILES);
			return -EINVAL;
		}
		rc = count_frames(f, &expect[*n_files]);
		if (rc < 0)
			return rc;
		len += (size_t)snprintf(d->vdevs[0] + len,
				len < sizeof(d->vdevs[0]) ? sizeof(d->vdevs[0]) - len : 0,
				",rx_pcap=%s", f);
		(*n_files)++;
	}
	if (*n_files == 0 || len >= sizeof(d->vdevs[0])) {
		TL_ERR("--pcap: %s", *n_files ? "file names too long" : "no file given");
		return -EINVAL;
	}
	d->n_vdevs = 1;
	d->n_pci = 0;
	cfg->capture.workers = *n_files;
	return 0;
}

int
tl_cmd_run(int argc, char **argv)
{
	static struct tl_app_config cfg;
	struct tl_app_config *loaded = NULL;
	struct tl_live *live = NULL;
	struct tl_live_gen *gen = NULL;
	static struct live_out lo;
	struct run_opts o;
	struct tl_schema *schema = NULL;
	static struct capture cap;
	struct tl_pipeline_worker *workers = NULL;
	struct worker_out *outs = NULL;
	struct tl_spool *spool = NULL;
	struct tl_framed *framed = NULL;
	static struct tl_side side;
	struct tl_edge *edge = NULL;
	struct tl_rawdedup *rawdedup = NULL;
	static struct uplinks ups = {.lock = PTHREAD_MUTEX_INITIALIZER};
	struct tl_metrics *metrics = NULL;
	static struct scrape scrape;
	struct tl_counters total;
	uint64_t expect[MAX_PCAP_FILES];
	uint16_t ports[TL_CAPTURE_MAX_PORTS];
	unsigned n_workers = 0, n_files = 0, n_init = 0;
	int n_ports, rc, exit_code = TL_EXIT_FAIL;

	rc = parse_run_opts(argc, argv, &o);
	if (rc != 0)
		return rc > 0 ? TL_EXIT_OK : TL_EXIT_USAGE;
	rc = tl_app_load(o.config, &cfg, &schema, stderr);
	if (rc < 0) {
		if (rc != TL_E_CONFIG && rc != TL_E_SCHEMA)
			TL_ERR("%s: %s", o.config, tl_strerror(rc));
		return TL_EXIT_USAGE;
	}
	/* As loaded, before the command line changes it: a reload compares with this. */
	if ((loaded = malloc(sizeof(*loaded))) == NULL) {
		TL_ERR("out of memory");
		goto out;
	}
	memcpy(loaded, &cfg, sizeof(*loaded));
	if (o.n_vdevs) {
		for (unsigned i = 0; i < o.n_vdevs; i++)
			snprintf(cfg.capture.dpdk.vdevs[i], sizeof(cfg.capture.dpdk.vdevs[i]), "%s",
					o.vdevs[i]);
		cfg.capture.dpdk.n_vdevs = o.n_vdevs;
	}
	if (o.workers)
		cfg.capture.workers = o.workers;
	if (o.no_huge)
		cfg.capture.dpdk.no_huge = true;
	if (o.pcap) {
		rc = pcap_vdev(&cfg, o.pcap, expect, &n_files);
		if (rc < 0) {
			exit_code = TL_EXIT_USAGE;
			goto out;
		}
	}
	n_workers = (unsigned)cfg.capture.workers;
	n_ports = tl_capture_ports(&cfg.capture, ports);
	if (n_ports < 0) {
		exit_code = TL_EXIT_USAGE;
		goto out;
	}

	{
		char err[2048];

		/* The patterns are compiled (or loaded from their cache) before capture starts:
		 * a bad pattern stops here with its file:line. */
		rc = tl_live_gen_build(&cfg.classify, schema, n_workers, &gen, err, sizeof(err));
		if (rc < 0) {
			TL_ERR("%s", err);
			exit_code = TL_EXIT_USAGE;
			goto out;
		}
		snprintf(gen->path, sizeof(gen->path), "%s", o.config);
	}
	if (o.check) {
		exit_code = capture_check(&cfg.capture, ports, (unsigned)n_ports, n_workers, o.config);
		goto out;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	/* A peer closing an HTTP connection must not kill the appliance. */
	signal(SIGPIPE, SIG_IGN);
	if (o.pcap && cfg.capture.driver != TL_CAPTURE_DPDK) {
		TL_ERR("--pcap replays through DPDK net_pcap: needs capture.driver dpdk");
		exit_code = TL_EXIT_USAGE;
		goto out;
	}
	rc = capture_open(&cap, &cfg.capture, ports, (unsigned)n_ports, n_workers);
	if (rc < 0)
		goto out;

	/* Worker state on the port's NUMA node, one cache-aligned struct per queue. */
	workers = capture_zalloc(&cap, "tl_pipeline", sizeof(*workers) * n_workers);
	if (workers == NULL) {
		TL_ERR("cannot allocate %u pipeline workers", n_workers);
		goto out;
	}
	outs = capture_zalloc(&cap, "tl_outs", sizeof(*outs) * n_workers);
	if (outs == NULL) {
		TL_ERR("cannot allocate %u worker outputs", n_workers);
		goto out;
	}
	if (o.spool_dir)
		snprintf(cfg.spool.path, sizeof(cfg.spool.path), "%s", o.spool_dir);
	tl_side_init(&side);
	rc = tl_spool_open(&cfg.spool, n_workers, 0, on_commit, &framed, &spool);
	if (rc < 0) {
		TL_ERR("spool %s: %s", cfg.spool.path, tl_strerror(rc));
		goto out;
	}
	if (cfg.framed.enabled) {
		char err[1024];

		rc = tl_framed_create(&cfg.framed, spool, &side, cfg.spool.buffers, n_workers,
				&framed, err, sizeof(err));
		if (rc < 0) {
			TL_ERR("framed: %s", err);
			goto out;
		}
	}
	if (cfg.appliance_id[0] == '\0' &&
			gethostname(cfg.appliance_id, sizeof(cfg.appliance_id) - 1) != 0)
		snprintf(cfg.appliance_id, sizeof(cfg.appliance_id), "tapline");
	if (cfg.rollup.enabled) {
		char err[512];

		rc = tl_edge_create(&cfg.rollup, schema, cfg.appliance_id, spool, &side, &edge, err,
				sizeof(err));
		if (rc < 0) {
			TL_ERR("%s", err);
			exit_code = TL_EXIT_USAGE;
			goto out;
		}
	}
	if (cfg.dedup.enabled) {
		char err[512];

		rc = tl_rawdedup_create(&cfg.dedup, n_workers, (uint32_t)cfg.batch.rows, spool,
				&side, &rawdedup, err, sizeof(err));
		if (rc < 0) {
			TL_ERR("%s", err);
			goto out;
		}
	}
	rc = tl_side_install(&side, spool);
	if (rc < 0) {
		TL_ERR("spool hooks: %s", tl_strerror(rc));
		goto out;
	}
	for (n_init = 0; n_init < n_workers; n_init++) {
		struct worker_out *w = &outs[n_init];

		if (o.dump_prefix) {
			char path[4096];

			snprintf(path, sizeof(path), "%s.%u", o.dump_prefix, n_init);
			rc = tl_dump_open(path, schema, &w->dump);
			if (rc < 0) {
				TL_ERR("%s: %s", path, tl_strerror(rc));
				goto out;
			}
		}
		rc = tl_sink_init(&w->sink, schema, &cfg.batch, cfg.appliance_id, spool, n_init,
				cfg.spool.buffer_size);
		if (rc < 0)
			goto out;
		w->spooling = true;
		if (rawdedup != NULL) {
			rc = tl_sink_set_dedup(&w->sink, &side, (uint32_t)cfg.dedup.capacity,
					cfg.dedup.window_ns);
			if (rc < 0) {
				TL_ERR("worker %u: dedup: %s", n_init, tl_strerror(rc));
				goto out;
			}
			tl_rawdedup_restore(rawdedup, w->sink.dd);
		}
		if (edge != NULL) {
			char err[512];
			int ct, cd, cu;

			rc = tl_edge_columns(&cfg.rollup, schema, &ct, &cd, &cu, err, sizeof(err));
			if (rc == 0)
				rc = tl_sink_set_rollup(&w->sink, &cfg.rollup, &side, ct, cd, cu);
			if (rc < 0) {
				TL_ERR("worker %u: rollups: %s", n_init, tl_strerror(rc));
				goto out;
			}
			tl_edge_seed(edge, w->sink.wm, 0);
		}
		rc = tl_pipeline_worker_init(&workers[n_init], &cfg.pipeline, schema, ports,
				(unsigned)n_ports, out_event, w);
		if (rc < 0) {
			TL_ERR("worker %u: %s", n_init, tl_strerror(rc));
			goto out;
		}
		tl_pipeline_set_tick(&workers[n_init], out_tick);
		if (framed != NULL) {
			rc = tl_framed_worker_create(framed, n_init, &workers[n_init], &w->sink,
					&w->fw);
			if (rc < 0) {
				TL_ERR("worker %u: framed mode: %s", n_init, tl_strerror(rc));
				goto out;
			}
		}
	}
	tl_rawdedup_restored(rawdedup);
	if (!o.no_uplink) {
		if (o.clickhouse)
			snprintf(cfg.uplink.url, sizeof(cfg.uplink.url), "%s", o.clickhouse);
		ups.conf = &cfg.uplink;
		ups.schema = schema;
		ups.spool = spool;
		ups.appliance = cfg.appliance_id;
		rc = tl_failover_create(&cfg.uplink.failover, 1 + cfg.uplink.failover.n_targets,
				&ups.fo);
		if (rc == 0)
			rc = uplinks_start(&ups, NULL);
		if (rc < 0) {
			TL_ERR("uplink: %s", tl_strerror(rc));
			goto out;
		}
		if (ups.n > 1)
			TL_INFO("uplink: %u targets (failover)", ups.n);
	}
	ups.conf = &cfg.uplink;
	ups.schema = schema;
	ups.spool = spool;
	ups.appliance = cfg.appliance_id;
	lo.ups = &ups;
	lo.database = ups.n ? tl_uplink_database(ups.u[0]) : cfg.uplink.database;
	lo.profile = cfg.name;
	lo.n_workers = n_workers;
	lo.schema = schema;
	{
		char err[2048];

		/* Routes name databases: the default one is known once the uplink is. */
		rc = build_routes(&lo, &cfg, schema, gen, err, sizeof(err));
		if (rc < 0) {
			TL_ERR("%s", err);
			exit_code = TL_EXIT_USAGE;
			goto out;
		}
		if ((rc = tl_live_create(n_workers, gen, &live)) < 0) {
			TL_ERR("classification: %s", tl_strerror(rc));
			goto out;
		}
		gen = NULL; /* the live's now */
	}
	for (unsigned i = 0; i < n_workers; i++) {
		tl_pipeline_set_live(&workers[i], live, i);
		workers[i].capture_only = o.capture_only;
	}
	if (uplinks_ensure(&ups, tl_live_current(live)->routes) < 0)
		goto out;
	publish_patterns(&lo, tl_live_current(live));
	{
		struct tl_reload_conf rc_conf = {
			.profile = o.config,
			.loaded = loaded,
			.schema = schema,
			.live = live,
			.prepare = prepare,
			.on_publish = on_publish,
			.arg = &lo,
		};
		struct sigaction sa;

		rc = tl_reload_create(&rc_conf, &reload_ctl);
		if (rc < 0) {
			TL_ERR("profile reload: %s", tl_strerror(rc));
			goto out;
		}
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_hup;
		sa.sa_flags = SA_RESTART;
		sigaction(SIGHUP, &sa, NULL);
	}

	if (cfg.metrics.enabled) {
		scrape.n = n_workers;
		scrape.cap = &cap;
		scrape.outs = outs;
		scrape.spool = spool;
		scrape.ups = &ups;
		scrape.live = live;
		scrape.reload = reload_ctl;
		scrape.framed = framed;
		scrape.edge = edge;
		scrape.rawdedup = rawdedup;
		for (unsigned i = 0; i < n_workers; i++)
			scrape.w[i] = &workers[i].cnt;
		if (tl_metrics_create(&cfg.metrics, &metrics) < 0 ||
				tl_metrics_add(metrics, collect, &scrape) < 0 ||
				tl_metrics_start(metrics) < 0)
			goto out;
		TL_INFO("metrics on http://%s/metrics (port %u)", cfg.metrics.listen,
				tl_metrics_port(metrics));
	}
	tl_metrics_set_health(metrics, true, NULL);
	rc = capture_run(&cap, workers, o.once ? expect : NULL, o.once ? o.idle_timeout : 0,
			&stop_flag);
	tl_metrics_set_health(metrics, false, "stopping");
	if (rc < 0)
		goto out;
	signal(SIGHUP, SIG_IGN);

	/* Every worker has sealed what it held; wait for the spool to commit it, and with
	 * --once for the uplink to deliver it. */
	rc = tl_spool_flush(spool, 60ull * 1000000000ull);
	if (rc < 0)
		TL_ERR("spool: final commit: %s", tl_strerror(rc));
	/* Every window still open goes out now, with the state that says so. */
	rc = tl_edge_finish(edge, 30ull * 1000000000ull);
	if (rc < 0)
		TL_ERR("rollup: final windows: %s", tl_strerror(rc));
	{
		/* --once: deliver everything. A plain stop: what the last batches and the final
		 * rollup windows need is a moment; what does not make it (a target down) waits
		 * in the spool for the next start. */
		uint64_t deadline = tl_mono_ns() + (o.once ? o.deliver_timeout : STOP_DELIVER_NS);
		struct tl_uplink *u[MAX_UPLINKS];
		unsigned n;

		/* A reload may be adding one meanwhile. */
		pthread_mutex_lock(&ups.lock);
		n = ups.n;
		memcpy(u, ups.u, sizeof(u[0]) * n);
		pthread_mutex_unlock(&ups.lock);
		for (unsigned i = 0; i < n; i++) {
			uint64_t now = tl_mono_ns();

			if (now >= deadline || tl_uplink_drain(u[i], deadline - now) < 0) {
				if (o.once)
					TL_ERR("uplink: not everything was delivered within "
							"--deliver-timeout");
				else
					TL_INFO("stop: undelivered batches stay in the spool");
				break;
			}
		}
	}
	memset(&total, 0, sizeof(total));
	for (unsigned i = 0; i < n_workers; i++)
		tl_counters_add(&total, &workers[i].cnt);
	capture_stats(&cap, &total);
	TL_INFO("%" PRIu64 " frames, %" PRIu64 " events valid (%" PRIu64 " error), %" PRIu64
		" rejected",
			total.rx_frames, total.events_valid, total.events_error, total.events_rejected);
	tl_counters_print_figures(stdout, &total);
	{
		uint64_t rows[TL_BATCH_TABLE_MAX] = {0}, dropped = 0;
		struct tl_spool_stats ss;
		struct tl_uplink_stats us;

		for (unsigned i = 0; i < n_workers; i++)
			for (int t = 0; t < TL_BATCH_TABLE_MAX; t++) {
				rows[t] += outs[i].sink.cnt.rows[t];
				dropped += outs[i].sink.cnt.dropped_rows[t];
			}
		for (int t = 0; t < TL_BATCH_TABLE_MAX; t++)
			printf("figure spooled_rows_%s %" PRIu64 "\n",
					tl_batch_table_name((unsigned)t), rows[t]);
		printf("figure spool_dropped_rows %" PRIu64 "\n", dropped);
		tl_spool_stats(spool, &ss);
		printf("figure spool_records %" PRIu64 "\n", ss.records);
		uplinks_stats(&ups, &us);
		for (int t = 0; t < TL_BATCH_TABLE_MAX; t++)
			printf("figure delivered_rows_%s %" PRIu64 "\n",
					tl_batch_table_name((unsigned)t), us.rows_delivered[t]);
		printf("figure quarantined_rows %" PRIu64 "\n", us.rows_quarantined);
		printf("figure uplink_retries %" PRIu64 "\n", us.inserts_retry);
	}
	fflush(stdout);
	exit_code = TL_EXIT_OK;
out:
	signal(SIGHUP, SIG_IGN);
	/* No publish after this; the workers have stopped (or never ran). */
	tl_reload_destroy(__atomic_exchange_n(&reload_ctl, NULL, __ATOMIC_RELAXED));
	for (unsigned i = 0; i < ups.n; i++)
		tl_uplink_stop(ups.u[i]);
	ups.n = 0;
	tl_failover_free(ups.fo);
	ups.fo = NULL;
	tl_edge_stop(edge);
	tl_spool_close(spool);
	tl_edge_free(edge);
	tl_rawdedup_free(rawdedup);
	if (outs) {
		for (unsigned i = 0; i < n_workers; i++) {
			tl_framed_worker_free(outs[i].fw);
			tl_sink_fini(&outs[i].sink);
			if (tl_dump_close(outs[i].dump) < 0) {
				TL_ERR("event dump %u could not be written completely", i);
				exit_code = TL_EXIT_FAIL;
			}
		}
		capture_free(&cap, outs);
	}
	tl_metrics_stop(metrics);
	if (workers) {
		for (unsigned i = 0; i < n_init; i++)
			tl_pipeline_worker_fini(&workers[i]);
		capture_free(&cap, workers);
	}
	tl_framed_free(framed);
	tl_live_destroy(live);
	tl_live_gen_free(gen);
	free(loaded);
	capture_close(&cap);
	tl_schema_free(schema);
	return exit_code;
}
