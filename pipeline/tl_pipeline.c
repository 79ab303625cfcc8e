/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "tl_decode.h"
#include "tl_frame.h"
#include "tl_json.h"
#include "tl_pipeline.h"
#include "tl_reply.h"

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

const struct tl_opt tl_pipeline_opts[] = {
	{.name = "limits", .type = TL_OPT_SECTION, .offset = offsetof(struct tl_pipeline_conf, limits),
		.sub = tl_limits_opts, .desc = "limits every event is held to"},
	{.name = "reassembly", .type = TL_OPT_SECTION,
		.offset = offsetof(struct tl_pipeline_conf, reasm), .sub = tl_reasm_opts,
		.desc = "IPv4/IPv6 fragment reassembly (per worker)"},
	{.name = NULL},
};

int
tl_pipeline_worker_init(struct tl_pipeline_worker *w, const struct tl_pipeline_conf *conf,
		const struct tl_schema *schema, const uint16_t *ports, unsigned n_ports,
		tl_event_sink_fn sink, void *sink_arg)
{
	int rc;

	if (w == NULL || conf == NULL || schema == NULL || ports == NULL || n_ports == 0)
		return -EINVAL;
	memset(w, 0, sizeof(*w));
	rc = tl_reasm_create(&conf->reasm, &w->reasm);
	if (rc < 0)
		return rc;
	w->schema = schema;
	w->sink = sink;
	w->sink_arg = sink_arg;
	for (unsigned i = 0; i < n_ports; i++)
		w->port_map[ports[i] >> 6] |= 1ull << (ports[i] & 63);
	return 0;
}

void
tl_pipeline_worker_fini(struct tl_pipeline_worker *w)
{
	if (w == NULL)
		return;
	tl_reasm_free(w->reasm);
	w->reasm = NULL;
}

static void
add_drops(struct tl_counters *c, const struct tl_reasm_drops *d)
{
	for (int r = 0; r < TL_REASON_MAX; r++)
		c->reason[r] += d->n[r];
}

void
tl_pipeline_datagram(struct tl_pipeline_worker *w, const uint8_t *payload, uint32_t len)
{
	w->cnt.udp_datagrams++;
	tl_pipeline_events(w, payload, len);
}

void
tl_pipeline_events(struct tl_pipeline_worker *w, const uint8_t *payload, uint32_t len)
{
	const uint8_t *p = payload, *end = payload + len;
	struct tl_counters *c = &w->cnt;
	/* One generation for the whole buffer: its db and scratch belong together, and the
	 * sink encodes each event (pattern names) before this returns. */
	const struct tl_live_gen *g = w->live ? tl_live_current(w->live) : NULL;

	/* NDJSON: a raw newline cannot occur inside a JSON string, so splitting on '\n'
	 * first is exact, and a malformed line can never swallow its neighbour. */
	while (p < end) {
		const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
		const uint8_t *eol = nl ? nl : end;
		uint32_t n = (uint32_t)(eol - p);
		enum tl_reason v;

		if (n && p[n - 1] == '\r')
			n--;
		if (n == 0) {
			p = eol + 1;
			continue;
		}
		v = tl_json_extract(w->schema, p, n, &w->ev);
		if (likely(v == TL_REASON_OK)) {
			if (g != NULL) {
				struct tl_event *ev = &w->ev;

				tl_classify_event(g->db, g->scratch[w->live_id], ev, &ev->cls);
				ev->cls_db = g->db;
				ev->is_error |= ev->cls.error;
				c->events_matched += ev->cls.n > 0;
				c->classify_failed += ev->cls.scan_failed;
				if (g->routes != NULL)
					ev->route = tl_route_set_event(
					        g->routes, w->live_id, ev, &ev->cls);
			}
			c->events_valid++;
			c->events_error += w->ev.is_error;
			c->event_bytes += n;
		} else {
			c->events_rejected++;
			c->reason[v]++;
		}
		if (w->sink)
			w->sink(w->sink_arg, &w->ev, v);
		p = eol + 1;
	}
}

static inline int
is_telemetry_port(const struct tl_pipeline_worker *w, uint16_t port)
{
	return (w->port_map[port >> 6] >> (port & 63)) & 1;
}

static void
deliver_udp(struct tl_pipeline_worker *w, const struct tl_l3_view *l3, const uint8_t *udp,
		uint32_t len, bool reassembled)
{
	struct tl_udp_view u;
	enum tl_reason v;

	/* Port first: other UDP traffic is not ours to judge, checksum or not. */
	if (len >= 8) {
		uint16_t dport = (uint16_t)(udp[2] << 8 | udp[3]);

		if (!is_telemetry_port(w, dport)) {
			w->cnt.reason[TL_REASON_IGN_PORT]++;
			return;
		}
	}
	v = tl_decode_udp(l3, udp, len, reassembled, &u);
	if (unlikely(v != TL_REASON_OK)) {
		w->cnt.reason[v]++;
		return;
	}
	w->cnt.reassembled += reassembled;
	/* A raw datagram starts with '{' (or whitespace): one compare keeps framed mode off
	 * the NDJSON path's cost. */
	if (unlikely(w->framed != NULL && tl_frame_is_frame(u.payload, u.len))) {
		struct tl_peer peer;

		w->cnt.udp_datagrams++;
		if (tl_peer_from(&peer, w->frame, w->frame_len, l3, u.sport, u.dport) < 0) {
			w->cnt.reason[TL_REASON_PKT_ETH_TRUNCATED]++;
			return;
		}
		w->framed(w->framed_arg, w, &peer, u.payload, u.len);
		return;
	}
	tl_pipeline_datagram(w, u.payload, u.len);
}

void
tl_pipeline_rx(struct tl_pipeline_worker *w, const uint8_t *frame, uint32_t len,
		uint32_t hw_flags, uint64_t now_ns)
{
	struct tl_l3_view l3;
	enum tl_reason v;

	w->cnt.rx_frames++;
	w->cnt.rx_bytes += len;
	/* Capture benchmarks: what the driver costs, without the pipeline behind it. */
	if (unlikely(w->capture_only))
		return;
	w->frame = frame;
	w->frame_len = len;
	v = tl_decode_frame(frame, len, hw_flags, &l3);
	if (unlikely(v != TL_REASON_OK)) {
		w->cnt.reason[v]++;
		return;
	}
	if (likely(!l3.is_fragment)) {
		deliver_udp(w, &l3, l3.l4, l3.l4_len, false);
	} else {
		struct tl_reasm_drops drops;
		const uint8_t *dgram = NULL;
		uint32_t dlen = 0;

		memset(drops.n, 0, sizeof(drops.n));
		v = tl_reasm_add(w->reasm, &l3, now_ns, &drops, &dgram, &dlen);
		add_drops(&w->cnt, &drops);
		if (v != TL_REASON_OK)
			w->cnt.reason[v]++;
		else if (dgram != NULL)
			deliver_udp(w, &l3, dgram, dlen, true);
	}
}

void
tl_pipeline_expire(struct tl_pipeline_worker *w, uint64_t now_ns)
{
	struct tl_reasm_drops drops;

	if (tl_reasm_in_progress(w->reasm) == 0)
		return;
	memset(drops.n, 0, sizeof(drops.n));
	tl_reasm_expire(w->reasm, now_ns, &drops);
	add_drops(&w->cnt, &drops);
}

void
tl_pipeline_set_tick(struct tl_pipeline_worker *w, tl_sink_tick_fn tick)
{
	w->tick = tick;
}

void
tl_pipeline_set_framed(struct tl_pipeline_worker *w, tl_framed_fn fn, void *arg)
{
	w->framed = fn;
	w->framed_arg = arg;
}

void
tl_pipeline_set_tx(struct tl_pipeline_worker *w, tl_tx_fn tx, void *arg)
{
	w->tx = tx;
	w->tx_arg = arg;
}

void
tl_pipeline_set_live(struct tl_pipeline_worker *w, struct tl_live *live, unsigned id)
{
	w->live = live;
	w->live_id = id;
}

void
tl_pipeline_tick(struct tl_pipeline_worker *w, uint64_t now_ns)
{
	tl_pipeline_expire(w, now_ns);
	if (w->tick)
		w->tick(w->sink_arg, now_ns);
}
