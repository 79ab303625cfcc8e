/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pcap/pcap.h>

#include "tl_cksum.h"
#include "tl_corpus.h"
#include "tl_error.h"
#include "tl_pcapw.h"

#define N_V4 48
#define N_V6 16
#define ETH_HDR 14
#define MAX_L2 (ETH_HDR + 8) /* two VLAN tags */
#define MIN_FRAME 60         /* Ethernet minimum without FCS */
#define MAX_FRAGS 256
#define IPPROTO_UDP_ 17
#define IPPROTO_TCP_ 6
#define NH_HOPOPTS_ 0
#define NH_FRAGMENT_ 44

struct sender {
	uint8_t mac[6];
	uint8_t addr[16]; /* IPv4: first 4 bytes */
	uint8_t vlan;     /* 0 untagged, 1 802.1Q, 2 QinQ (802.1ad outer + 802.1Q inner) */
	uint8_t opt;      /* IPv4: router-alert option; IPv6: hop-by-hop header */
	uint8_t df;       /* IPv4: DF set on unfragmented packets */
	uint8_t shard;
	uint16_t vid[2];
	uint16_t sport;
	uint32_t next_id;
};

struct tl_pcapw {
	struct tl_pcapw_conf conf;
	char *path;
	struct tl_corpus_rng rng;
	pcap_t *dead;
	pcap_dumper_t *dump[TL_PCAPW_MAX_SHARDS];
	struct sender v4[N_V4], v6[N_V6];
	uint8_t dst4[4], dst6[16], dst_mac[6];
	uint8_t *udp;   /* the datagram being written: UDP header + payload */
	uint8_t *frame; /* one frame */
	uint64_t last_us;
	struct tl_pcapw_stats st;
};

void
tl_pcapw_conf_defaults(struct tl_pcapw_conf *conf)
{
	*conf = (struct tl_pcapw_conf){
	        .shards = 1,
	        .port = 5170,
	        .mtu = 1500,
	        .datagram_size = 8192,
	        .big_size = 60000,
	        .ipv6_share = 0.1,
	        .vlan_share = 0.2,
	        .fault_share = 0,
	        .noise_share = 0.01,
	        .seed = 1,
	        .start_ns = 1710028800ull * 1000000000ull,
	};
}

static inline void
wr16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void
wr32(uint8_t *p, uint32_t v)
{
	wr16(p, (uint16_t)(v >> 16));
	wr16(p + 2, (uint16_t)v);
}

int
tl_pcapw_shard_path(const char *path, uint32_t shards, uint32_t i, char *buf, size_t cap)
{
	const char *slash, *dot;

	if (shards <= 1)
		return snprintf(buf, cap, "%s", path);
	slash = strrchr(path, '/');
	dot = strrchr(path, '.');
	if (dot == NULL || (slash && dot < slash) || dot == path || (slash && dot == slash + 1))
		return snprintf(buf, cap, "%s-%u", path, i);
	return snprintf(buf, cap, "%.*s-%u%s", (int)(dot - path), path, i, dot);
}

/* RSS-like: a hash of the addresses only, so fragments follow their datagram. */
static uint8_t
shard_of(const uint8_t *src, const uint8_t *dst, size_t alen, uint32_t shards)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < alen; i++)
		h = (h ^ src[i]) * 16777619u;
	for (size_t i = 0; i < alen; i++)
		h = (h ^ dst[i]) * 16777619u;
	return (uint8_t)(h % shards);
}

static void
init_sender(struct tl_pcapw *w, struct sender *s, uint32_t i, bool v6)
{
	struct tl_corpus_rng *r = &w->rng;

	memset(s, 0, sizeof(*s));
	s->mac[0] = 0x02; /* locally administered */
	s->mac[1] = 0x00;
	s->mac[2] = 0xc6;
	s->mac[3] = 0x12;
	s->mac[4] = v6 ? 0x06 : 0x04;
	s->mac[5] = (uint8_t)(i + 1);
	if (v6) {
		/* 2001:db8:1::<i+1> */
		s->addr[0] = 0x20;
		s->addr[1] = 0x01;
		s->addr[2] = 0x0d;
		s->addr[3] = 0xb8;
		s->addr[5] = 0x01;
		s->addr[15] = (uint8_t)(i + 1);
		s->shard = shard_of(s->addr, w->dst6, 16, w->conf.shards);
	} else {
		/* 198.18.1.<i+1> */
		s->addr[0] = 198;
		s->addr[1] = 18;
		s->addr[2] = 1;
		s->addr[3] = (uint8_t)(i + 1);
		s->shard = shard_of(s->addr, w->dst4, 4, w->conf.shards);
	}
	if (tl_corpus_rng_chance(r, w->conf.vlan_share)) {
		s->vlan = tl_corpus_rng_below(r, 3) == 0 ? 2 : 1;
		s->vid[0] = (uint16_t)(100 + tl_corpus_rng_below(r, 50));
		s->vid[1] = (uint16_t)(1000 + tl_corpus_rng_below(r, 3000));
	}
	s->opt = tl_corpus_rng_chance(r, v6 ? 0.15 : 0.1);
	s->df = tl_corpus_rng_chance(r, 0.5);
	s->sport = (uint16_t)(40000 + i + (v6 ? 100 : 0));
	s->next_id = (uint32_t)tl_corpus_rng_next(r);
}

static int
fail(char *msg, size_t msglen, int rc, const char *text, const char *arg)
{
	if (msg && msglen)
		snprintf(msg, msglen, "%s%s%s", arg ? arg : "", arg ? ": " : "", text);
	return rc;
}

int
tl_pcapw_open(const struct tl_pcapw_conf *conf, struct tl_pcapw **out, char *msg, size_t msglen)
{
	struct tl_pcapw *w;
	int rc = -ENOMEM;

	if (out == NULL)
		return -EINVAL;
	*out = NULL;
	if (conf == NULL || conf->path == NULL || conf->path[0] == '\0')
		return fail(msg, msglen, -EINVAL, "no pcap file name", NULL);
	if (conf->shards < 1 || conf->shards > TL_PCAPW_MAX_SHARDS)
		return fail(msg, msglen, -EINVAL, "shards must be 1..64", NULL);
	if (conf->mtu < 1280 || conf->mtu > 9000)
		return fail(msg, msglen, -EINVAL, "mtu must be 1280..9000", NULL);
	if (conf->datagram_size < 256 || conf->datagram_size > TL_PCAPW_UDP_MAX ||
	        conf->big_size < 256 || conf->big_size > TL_PCAPW_UDP_MAX)
		return fail(msg, msglen, -EINVAL, "datagram sizes must be 256..65507", NULL);
	if (conf->port == 0)
		return fail(msg, msglen, -EINVAL, "port must be 1..65535", NULL);
	if (!(conf->ipv6_share >= 0 && conf->ipv6_share <= 1) ||
	        !(conf->vlan_share >= 0 && conf->vlan_share <= 1) ||
	        !(conf->fault_share >= 0 && conf->fault_share <= 1) ||
	        !(conf->noise_share >= 0 && conf->noise_share <= 1))
		return fail(msg, msglen, -EINVAL, "shares must be within [0, 1]", NULL);

	w = calloc(1, sizeof(*w));
	if (w == NULL)
		return -ENOMEM;
	w->conf = *conf;
	w->path = strdup(conf->path);
	w->udp = malloc(65536 + 16);
	w->frame = malloc(MAX_L2 + 9000 + 64);
	if (w->path == NULL || w->udp == NULL || w->frame == NULL)
		goto err;
	w->conf.path = w->path;
	tl_corpus_rng_seed(&w->rng, conf->seed ^ 0x7063617077ull);
	w->last_us = conf->start_ns / 1000;

	memcpy(w->dst4, (const uint8_t[]){198, 18, 0, 1}, 4);
	memcpy(w->dst6,
	        (const uint8_t[]){0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 16);
	memcpy(w->dst_mac, (const uint8_t[]){0x02, 0x00, 0x00, 0x00, 0x00, 0x01}, 6);
	for (uint32_t i = 0; i < N_V4; i++)
		init_sender(w, &w->v4[i], i, false);
	for (uint32_t i = 0; i < N_V6; i++)
		init_sender(w, &w->v6[i], i, true);

	w->dead = pcap_open_dead(DLT_EN10MB, 65535);
	if (w->dead == NULL)
		goto err;
	for (uint32_t i = 0; i < conf->shards; i++) {
		char name[4096];

		if ((size_t)tl_pcapw_shard_path(conf->path, conf->shards, i, name, sizeof(name)) >=
		        sizeof(name)) {
			rc = fail(msg, msglen, -EINVAL, "path too long", NULL);
			goto err;
		}
		w->dump[i] = pcap_dump_open(w->dead, name);
		if (w->dump[i] == NULL) {
			rc = fail(msg, msglen, TL_E_PCAP, pcap_geterr(w->dead), NULL);
			goto err;
		}
	}
	*out = w;
	return 0;
err:
	tl_pcapw_close(w);
	return rc;
}

int
tl_pcapw_close(struct tl_pcapw *w)
{
	int rc = 0;

	if (w == NULL)
		return 0;
	for (uint32_t i = 0; i < TL_PCAPW_MAX_SHARDS; i++) {
		if (w->dump[i] == NULL)
			continue;
		if (pcap_dump_flush(w->dump[i]) != 0 || ferror(pcap_dump_file(w->dump[i])))
			rc = TL_E_PCAP;
		pcap_dump_close(w->dump[i]);
	}
	if (w->dead)
		pcap_close(w->dead);
	free(w->path);
	free(w->udp);
	free(w->frame);
	free(w);
	return rc;
}

const struct tl_pcapw_stats *
tl_pcapw_stats(const struct tl_pcapw *w)
{
	return &w->st;
}

void
tl_pcapw_plan(struct tl_pcapw *w, struct tl_pcapw_plan *plan)
{
	static const enum tl_reason fault_kinds[] = {
	        TL_REASON_PKT_UDP_BAD_CHECKSUM,
	        TL_REASON_PKT_IPV4_BAD_CHECKSUM,
	        TL_REASON_FRAG_OVERLAP,
	        TL_REASON_FRAG_DUPLICATE,
	};
	struct tl_corpus_rng *r = &w->rng;
	uint32_t shape;

	memset(plan, 0, sizeof(*plan));
	plan->fault = TL_REASON_OK;
	if (w->conf.fault_share > 0 && tl_corpus_rng_chance(r, w->conf.fault_share))
		plan->fault = fault_kinds[tl_corpus_rng_below(r, 4)];
	plan->v6 = plan->fault != TL_REASON_PKT_IPV4_BAD_CHECKSUM &&
	           tl_corpus_rng_chance(r, w->conf.ipv6_share);
	plan->sender = tl_corpus_rng_below(r, plan->v6 ? N_V6 : N_V4);
	shape = tl_corpus_rng_below(r, 100);
	if (plan->fault != TL_REASON_OK || shape < 15) {
		/* One event alone: faults must cost exactly one event. */
		plan->single = true;
		plan->max_payload = TL_PCAPW_UDP_MAX;
	} else if (shape < 18) {
		plan->max_payload = w->conf.big_size;
	} else {
		plan->max_payload = w->conf.datagram_size;
	}
	if (w->conf.noise_share > 0 && tl_corpus_rng_chance(r, w->conf.noise_share))
		plan->noise = (uint8_t)(1 + tl_corpus_rng_below(r, 3));
}

/* ---- frame assembly ---- */

static uint32_t
put_l2(const struct tl_pcapw *w, const struct sender *s, const uint8_t *dst_mac, uint16_t type,
        uint8_t *f)
{
	uint32_t o = 12;

	memcpy(f, dst_mac ? dst_mac : w->dst_mac, 6);
	memcpy(f + 6, s->mac, 6);
	if (s->vlan == 2) {
		wr16(f + o, 0x88a8);
		wr16(f + o + 2, s->vid[0]);
		o += 4;
	}
	if (s->vlan) {
		wr16(f + o, 0x8100);
		wr16(f + o + 2, (uint16_t)(s->vlan == 2 ? s->vid[1] : s->vid[0]));
		o += 4;
	}
	wr16(f + o, type);
	return o + 2;
}

/* IPv4 header (20 bytes, or 24 with a router-alert option) with its checksum. */
static uint32_t
put_ip4(const struct sender *s, const uint8_t *dst, uint8_t proto, uint16_t id, uint16_t fo,
        uint32_t l4_len, bool bad_cksum, uint8_t *h)
{
	uint32_t hl = s->opt ? 24 : 20;
	uint16_t ck;

	h[0] = (uint8_t)(0x40 | (hl / 4));
	h[1] = 0;
	wr16(h + 2, (uint16_t)(hl + l4_len));
	wr16(h + 4, id);
	wr16(h + 6, fo);
	h[8] = 64;
	h[9] = proto;
	h[10] = h[11] = 0;
	memcpy(h + 12, s->addr, 4);
	memcpy(h + 16, dst, 4);
	if (s->opt) {
		/* RFC 2113 router alert: copied flag set, so every fragment carries it. */
		h[20] = 0x94;
		h[21] = 0x04;
		h[22] = h[23] = 0;
	}
	ck = tl_cksum(h, hl);
	if (bad_cksum)
		ck ^= 0x5a5a; /* never equivalent to the right value in one's complement */
	memcpy(h + 10, &ck, 2);
	return hl;
}

/* IPv6 header, optional hop-by-hop header, optional fragment header. */
static uint32_t
put_ip6(const struct sender *s, const uint8_t *dst, uint8_t proto, uint32_t l4_len, bool frag,
        uint32_t frag_off, bool more, uint32_t id, uint8_t *h)
{
	uint32_t o = 40, ext = (s->opt ? 8u : 0u) + (frag ? 8u : 0u);
	uint8_t *nh = h + 6;

	wr32(h, 0x60000000u | ((uint32_t)s->sport * 2654435761u & 0xfffff));
	wr16(h + 4, (uint16_t)(ext + l4_len));
	h[7] = 64;
	memcpy(h + 8, s->addr, 16);
	memcpy(h + 24, dst, 16);
	if (s->opt) {
		*nh = NH_HOPOPTS_;
		nh = h + o;
		h[o + 1] = 0; /* 8 bytes */
		h[o + 2] = 1; /* PadN */
		h[o + 3] = 4;
		memset(h + o + 4, 0, 4);
		o += 8;
	}
	if (frag) {
		*nh = NH_FRAGMENT_;
		nh = h + o;
		h[o + 1] = 0;
		wr16(h + o + 2, (uint16_t)(frag_off | (more ? 1 : 0)));
		wr32(h + o + 4, id);
		o += 8;
	}
	*nh = proto;
	return o;
}

static void
emit(struct tl_pcapw *w, uint8_t shard, uint32_t len)
{
	struct pcap_pkthdr ph;

	if (len < MIN_FRAME) {
		memset(w->frame + len, 0, MIN_FRAME - len);
		len = MIN_FRAME;
	}
	w->last_us++;
	ph.ts.tv_sec = (time_t)(w->last_us / 1000000);
	ph.ts.tv_usec = (suseconds_t)(w->last_us % 1000000);
	ph.caplen = ph.len = len;
	pcap_dump((u_char *)w->dump[shard], &ph, w->frame);
	w->st.frames++;
	w->st.bytes += len;
}

/* One IP packet (or fragment) of @p s carrying @p data as its payload. */
static void
emit_ip(struct tl_pcapw *w, const struct sender *s, bool v6, uint8_t proto, const uint8_t *data,
        uint32_t len, bool frag, uint32_t off, bool more, uint32_t id, bool bad_ip_cksum,
        const uint8_t *dst)
{
	uint8_t *f = w->frame;
	uint32_t o;

	o = put_l2(w, s, NULL, v6 ? 0x86dd : 0x0800, f);
	if (v6) {
		o += put_ip6(s, dst ? dst : w->dst6, proto, len, frag, off, more, id, f + o);
	} else {
		uint16_t fo = (uint16_t)((off / 8) | (more ? 0x2000 : 0));

		if (!frag && s->df)
			fo |= 0x4000;
		o += put_ip4(
		        s, dst ? dst : w->dst4, proto, (uint16_t)id, fo, len, bad_ip_cksum, f + o);
	}
	memcpy(f + o, data, len);
	emit(w, s->shard, o + len);
}

static void
l4_cksum(const struct sender *s, bool v6, const uint8_t *dst, uint8_t proto, uint8_t *l4,
        uint32_t len, uint32_t ck_off)
{
	uint16_t ck;

	l4[ck_off] = l4[ck_off + 1] = 0;
	ck = tl_cksum_l4(s->addr, dst, v6 ? 16 : 4, proto, l4, len);
	if (ck == 0)
		ck = 0xffff; /* RFC 768: a computed zero is sent as all ones */
	memcpy(l4 + ck_off, &ck, 2);
}

/* ARP/LLDP (non-IP), DNS query (UDP port 53) or TCP SYN (not UDP), from sender @p s. */
static void
emit_noise(struct tl_pcapw *w, const struct sender *s, bool v6, uint8_t kind)
{
	static const uint8_t dns_q[] = {0x0a, 'c', 'l', 'i', 'c', 'k', 'h', 'o', 'u', 's', 'e',
	        0x07, 't', 'a', 'p', 'l', 'i', 'n', 'e', 0x08, 'i', 'n', 't', 'e', 'r', 'n', 'a',
	        'l', 0x00};
	static const uint8_t dns4[4] = {198, 18, 0, 53};
	static const uint8_t dns6[16] = {
	        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x53};
	uint8_t l4[128];
	uint32_t o, n;

	if (kind == 1 && !v6) {
		static const uint8_t bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
		uint8_t *f = w->frame;

		o = put_l2(w, s, bcast, 0x0806, f);
		wr16(f + o, 1);          /* Ethernet */
		wr16(f + o + 2, 0x0800); /* IPv4 */
		f[o + 4] = 6;
		f[o + 5] = 4;
		wr16(f + o + 6, 1); /* request */
		memcpy(f + o + 8, s->mac, 6);
		memcpy(f + o + 14, s->addr, 4);
		memset(f + o + 18, 0, 6);
		memcpy(f + o + 24, w->dst4, 4);
		emit(w, s->shard, o + 28);
		w->st.reason[TL_REASON_IGN_NON_IP]++;
		return;
	}
	if (kind == 1) {
		static const uint8_t lldp_mac[6] = {0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e};
		uint8_t *f = w->frame;

		o = put_l2(w, s, lldp_mac, 0x88cc, f);
		wr16(f + o, (1 << 9) | 7); /* chassis id: MAC */
		f[o + 2] = 4;
		memcpy(f + o + 3, s->mac, 6);
		wr16(f + o + 9, (2 << 9) | 7); /* port id: MAC */
		f[o + 11] = 3;
		memcpy(f + o + 12, s->mac, 6);
		wr16(f + o + 18, (3 << 9) | 2); /* TTL */
		wr16(f + o + 20, 120);
		wr16(f + o + 22, 0); /* end */
		emit(w, s->shard, o + 24);
		w->st.reason[TL_REASON_IGN_NON_IP]++;
		return;
	}
	if (kind == 2) {
		/* DNS query for clickhouse.tapline.internal (A, or AAAA over IPv6). */
		n = 8 + 12 + sizeof(dns_q) + 4;
		wr16(l4, (uint16_t)(53000 + (s->sport % 1000)));
		wr16(l4 + 2, 53);
		wr16(l4 + 4, (uint16_t)n);
		wr16(l4 + 8, (uint16_t)tl_corpus_rng_next(&w->rng));
		wr16(l4 + 10, 0x0100); /* recursion desired */
		wr16(l4 + 12, 1);
		memset(l4 + 14, 0, 6);
		memcpy(l4 + 20, dns_q, sizeof(dns_q));
		wr16(l4 + 20 + sizeof(dns_q), v6 ? 28 : 1);
		wr16(l4 + 22 + sizeof(dns_q), 1);
		l4_cksum(s, v6, v6 ? dns6 : dns4, IPPROTO_UDP_, l4, n, 6);
		emit_ip(w, s, v6, IPPROTO_UDP_, l4, n, false, 0, false, s->sport, false,
		        v6 ? dns6 : dns4);
		w->st.reason[TL_REASON_IGN_PORT]++;
		return;
	}
	/* TCP SYN to ClickHouse's HTTP port. */
	n = 20;
	memset(l4, 0, n);
	wr16(l4, (uint16_t)(50000 + (s->sport % 1000)));
	wr16(l4 + 2, 8123);
	wr32(l4 + 4, (uint32_t)tl_corpus_rng_next(&w->rng));
	l4[12] = 5 << 4;
	l4[13] = 0x02;
	wr16(l4 + 14, 64240);
	l4_cksum(s, v6, v6 ? w->dst6 : w->dst4, IPPROTO_TCP_, l4, n, 16);
	emit_ip(w, s, v6, IPPROTO_TCP_, l4, n, false, 0, false, s->sport, false, NULL);
	w->st.reason[TL_REASON_IGN_NON_UDP]++;
}

int
tl_pcapw_write(struct tl_pcapw *w, const struct tl_pcapw_plan *plan, const uint8_t *payload,
        uint32_t len, uint64_t ts_ns)
{
	struct tl_corpus_rng *r = &w->rng;
	const struct sender *s;
	struct sender *ms;
	bool v6 = plan->v6, frag_fault, bad_ip = false;
	uint32_t ulen = len + 8, hdr, fs, nfr, id, nseq = 0;
	uint16_t off_of[MAX_FRAGS];
	uint16_t seq[MAX_FRAGS + 2];
	uint8_t alter[MAX_FRAGS + 2];
	uint64_t frames0 = w->st.frames;

	if (w == NULL || plan == NULL || payload == NULL || len == 0 || len > TL_PCAPW_UDP_MAX)
		return -EINVAL;
	ms = v6 ? &w->v6[plan->sender % N_V6] : &w->v4[plan->sender % N_V4];
	s = ms;
	if (ts_ns / 1000 > w->last_us)
		w->last_us = ts_ns / 1000;
	if (plan->noise)
		emit_noise(w, s, v6, plan->noise);

	/* The UDP datagram. */
	wr16(w->udp, s->sport);
	wr16(w->udp + 2, w->conf.port);
	wr16(w->udp + 4, (uint16_t)ulen);
	memcpy(w->udp + 8, payload, len);
	l4_cksum(s, v6, v6 ? w->dst6 : w->dst4, IPPROTO_UDP_, w->udp, ulen, 6);
	if (plan->fault == TL_REASON_PKT_UDP_BAD_CHECKSUM) {
		uint16_t ck;

		memcpy(&ck, w->udp + 6, 2);
		if (v6 && tl_corpus_rng_chance(r, 0.5))
			ck = 0; /* no checksum: not allowed over IPv6 */
		else
			ck = (ck ^ 0x5a5a) ? ck ^ 0x5a5a : ck ^ 0x1111;
		memcpy(w->udp + 6, &ck, 2);
	}
	bad_ip = plan->fault == TL_REASON_PKT_IPV4_BAD_CHECKSUM && !v6;
	frag_fault =
	        plan->fault == TL_REASON_FRAG_OVERLAP || plan->fault == TL_REASON_FRAG_DUPLICATE;

	id = ms->next_id++;
	if (!v6)
		id &= 0xffff;
	hdr = v6 ? 40u + (s->opt ? 8u : 0u) : (s->opt ? 24u : 20u);
	w->st.written++;

	if (!frag_fault && hdr + ulen <= w->conf.mtu) {
		if (v6 && hdr + 8 + ulen <= w->conf.mtu && tl_corpus_rng_chance(r, 0.05)) {
			/* An atomic fragment (RFC 6946): a fragment header, offset 0, no M. */
			emit_ip(w, s, true, IPPROTO_UDP_, w->udp, ulen, true, 0, false, id, false,
			        NULL);
		} else {
			emit_ip(w, s, v6, IPPROTO_UDP_, w->udp, ulen, false, 0, false, id, bad_ip,
			        NULL);
		}
		nfr = 1;
	} else {
		fs = (w->conf.mtu - hdr - (v6 ? 8 : 0)) & ~7u;
		if (frag_fault && fs >= ulen)
			fs = (ulen / 2 + 7) & ~7u; /* a fault needs at least two fragments */
		nfr = (ulen + fs - 1) / fs;
		if (nfr > MAX_FRAGS)
			return -EINVAL;
		memset(alter, 0, sizeof(alter));
		for (uint32_t i = 0; i < nfr; i++) {
			off_of[i] = (uint16_t)(i * fs / 8);
			seq[i] = (uint16_t)i;
		}
		nseq = nfr;
		/* Out of order now and then: reversed, or shuffled. */
		if (tl_corpus_rng_chance(r, 0.2)) {
			if (tl_corpus_rng_chance(r, 0.5)) {
				for (uint32_t i = 0; i < nfr / 2; i++) {
					uint16_t t = seq[i];

					seq[i] = seq[nfr - 1 - i];
					seq[nfr - 1 - i] = t;
				}
			} else {
				for (uint32_t i = nfr - 1; i > 0; i--) {
					uint32_t j = tl_corpus_rng_below(r, i + 1);
					uint16_t t = seq[i];

					seq[i] = seq[j];
					seq[j] = t;
				}
			}
		}
		if (plan->fault == TL_REASON_FRAG_DUPLICATE) {
			/* Repeat a fragment right after itself, before the datagram completes. */
			uint32_t j = tl_corpus_rng_below(r, nfr - 1);

			memmove(seq + j + 2, seq + j + 1, (nfr - j - 1) * sizeof(seq[0]));
			seq[j + 1] = seq[j];
			nseq = nfr + 1;
		} else if (plan->fault == TL_REASON_FRAG_OVERLAP) {
			/* All but the last, then the first again with other bytes: the
			 * datagram is dropped while still incomplete, and nothing of it
			 * arrives afterwards. */
			seq[nfr - 1] = seq[0];
			alter[nfr - 1] = 1;
		}
		for (uint32_t k = 0; k < nseq; k++) {
			uint32_t i = seq[k], off = off_of[i] * 8u;
			uint32_t n = off + fs <= ulen ? fs : ulen - off;
			bool more = off + n < ulen;
			const uint8_t *data = w->udp + off;
			uint8_t tmp[9000];

			if (alter[k]) {
				memcpy(tmp, data, n);
				tmp[n / 2] ^= 0x20;
				data = tmp;
			}
			emit_ip(w, s, v6, IPPROTO_UDP_, data, n, true, off, more, id, bad_ip, NULL);
		}
		w->st.fragmented++;
	}

	switch (plan->fault) {
	case TL_REASON_OK:
		w->st.datagrams++;
		w->st.reassembled += nfr > 1;
		break;
	case TL_REASON_FRAG_DUPLICATE:
		w->st.datagrams++;
		w->st.reassembled++;
		w->st.reason[TL_REASON_FRAG_DUPLICATE]++;
		break;
	case TL_REASON_PKT_IPV4_BAD_CHECKSUM:
		/* Every frame of the datagram fails the header check. */
		w->st.reason[plan->fault] += w->st.frames - frames0 - (plan->noise ? 1 : 0);
		break;
	default:
		w->st.reason[plan->fault]++;
	}
	return 0;
}
