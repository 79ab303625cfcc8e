/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * tl_pcapw: files re-read with libpcap (pcap_open_offline) and checked by code written
 * here, independently of the pipeline's decoder: Ethernet/VLAN/IPv4/IPv6 parsing, header
 * and UDP checksums (own RFC 1071 sum), fragment reassembly back to the datagram,
 * packet faults as announced and counted, flows kept together across shards.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <pcap/pcap.h>

#include "tl_corpus.h"
#include "tl_error.h"
#include "tl_pcapw.h"

static char tmpdir[64];

static int
group_setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/tl-pcapw-XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int
group_teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static const char *
tmp_path(const char *name)
{
	static char buf[4][256];
	static int k;

	k = (k + 1) & 3;
	snprintf(buf[k], sizeof(buf[k]), "%s/%s", tmpdir, name);
	return buf[k];
}

/* ---- an independent reader ---- */

static uint16_t
rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t
rd32(const uint8_t *p)
{
	return (uint32_t)rd16(p) << 16 | rd16(p + 2);
}

/* RFC 1071, written out plainly: big-endian 16-bit words. */
static uint32_t
sum16(uint32_t s, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i + 1 < n; i += 2)
		s += rd16(p + i);
	if (n & 1)
		s += (uint32_t)p[n - 1] << 8;
	return s;
}

static uint16_t
fold(uint32_t s)
{
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)s;
}

enum fkind { F_OTHER, F_ARP, F_LLDP, F_IP };

struct frame {
	enum fkind kind;
	int ntags;
	int ver;
	uint8_t src[16], dst[16];
	uint8_t proto;
	bool frag, more, ip_ok, has_opt, atomic;
	uint32_t id, off;
	const uint8_t *l4;
	uint32_t l4_len;
};

static void
parse_frame(const uint8_t *f, uint32_t len, struct frame *fr)
{
	uint32_t o = 12;
	uint16_t type;

	memset(fr, 0, sizeof(*fr));
	assert_true(len >= 60);
	type = rd16(f + o);
	while (type == 0x8100 || type == 0x88a8) {
		fr->ntags++;
		o += 4;
		type = rd16(f + o);
	}
	o += 2;
	if (type == 0x0806) {
		fr->kind = F_ARP;
		return;
	}
	if (type == 0x88cc) {
		fr->kind = F_LLDP;
		return;
	}
	fr->kind = F_IP;
	if (type == 0x0800) {
		const uint8_t *h = f + o;
		uint32_t ihl = (h[0] & 15u) * 4, tot = rd16(h + 2), fo = rd16(h + 6);

		assert_int_equal(h[0] >> 4, 4);
		assert_true(o + tot <= len);
		fr->ver = 4;
		fr->ip_ok = fold(sum16(0, h, ihl)) == 0xffff;
		fr->has_opt = ihl > 20;
		fr->proto = h[9];
		memcpy(fr->src, h + 12, 4);
		memcpy(fr->dst, h + 16, 4);
		fr->id = rd16(h + 4);
		fr->off = (fo & 0x1fff) * 8;
		fr->more = (fo & 0x2000) != 0;
		fr->frag = fr->off || fr->more;
		fr->l4 = h + ihl;
		fr->l4_len = tot - ihl;
		return;
	}
	assert_int_equal(type, 0x86dd);
	{
		const uint8_t *h = f + o;
		uint32_t end = 40 + rd16(h + 4), p = 40;
		uint8_t nh = h[6];

		assert_true(o + end <= len);
		fr->ver = 6;
		fr->ip_ok = true;
		memcpy(fr->src, h + 8, 16);
		memcpy(fr->dst, h + 24, 16);
		if (nh == 0) {
			fr->has_opt = true;
			nh = h[p];
			p += (h[p + 1] + 1u) * 8;
		}
		if (nh == 44) {
			uint16_t fo = rd16(h + p + 2);

			nh = h[p];
			fr->id = rd32(h + p + 4);
			fr->off = fo & 0xfff8;
			fr->more = fo & 1;
			fr->frag = fr->off || fr->more;
			fr->atomic = !fr->frag;
			p += 8;
		}
		fr->proto = nh;
		fr->l4 = h + p;
		fr->l4_len = end - p;
	}
}

static bool
udp_ok(const struct frame *fr, const uint8_t *u, uint32_t len)
{
	uint32_t s = 0;
	size_t alen = fr->ver == 4 ? 4 : 16;

	if (rd16(u + 6) == 0)
		return fr->ver == 4;
	s = sum16(s, fr->src, alen);
	s = sum16(s, fr->dst, alen);
	s += 17 + len; /* both pseudo-headers sum to proto + length for len < 65536 */
	s = sum16(s, u, len);
	return fold(s) == 0xffff;
}

/* Reassembly of one datagram at a time (the writer keeps fragments back to back). */
struct dgram {
	bool active, overlap, dup, complete, out_of_order, all_ip_bad;
	int ver, nframes;
	uint8_t src[16], dst[16];
	uint32_t id, total, last_off;
	uint8_t buf[65536];
	uint8_t have[65536 / 8];
};

struct outcome {
	uint32_t n;
	bool complete, udp_good, overlap, dup, ip_bad, fragmented, out_of_order, v6;
	uint8_t *payload; /* UDP payload of complete datagrams (malloc) */
	uint32_t len;
	uint16_t dport;
	int ntags;
	bool has_opt;
};

struct readback {
	struct outcome *out;
	uint32_t n_out, cap;
	uint64_t frames, bytes, arp, lldp, dns, tcp;
	struct dgram d;
	struct frame first;
};

static struct outcome *
new_outcome(struct readback *rb)
{
	if (rb->n_out == rb->cap) {
		rb->cap = rb->cap ? rb->cap * 2 : 256;
		rb->out = realloc(rb->out, rb->cap * sizeof(*rb->out));
		assert_non_null(rb->out);
	}
	memset(&rb->out[rb->n_out], 0, sizeof(rb->out[0]));
	return &rb->out[rb->n_out++];
}

static void
close_dgram(struct readback *rb)
{
	struct dgram *d = &rb->d;
	struct outcome *o;

	if (!d->active)
		return;
	o = new_outcome(rb);
	o->complete = d->complete;
	o->overlap = d->overlap;
	o->dup = d->dup;
	o->ip_bad = d->all_ip_bad;
	o->fragmented = true;
	o->out_of_order = d->out_of_order;
	o->v6 = d->ver == 6;
	o->n = (uint32_t)d->nframes;
	o->ntags = rb->first.ntags;
	o->has_opt = rb->first.has_opt;
	if (d->complete) {
		o->udp_good = udp_ok(&rb->first, d->buf, d->total);
		o->dport = rd16(d->buf + 2);
		assert_int_equal(rd16(d->buf + 4), d->total);
		o->len = d->total - 8;
		o->payload = malloc(o->len);
		memcpy(o->payload, d->buf + 8, o->len);
	}
	d->active = false;
}

static void
add_frame(struct readback *rb, const uint8_t *f, uint32_t len)
{
	struct frame fr;
	struct dgram *d = &rb->d;

	rb->frames++;
	rb->bytes += len;
	parse_frame(f, len, &fr);
	if (fr.kind == F_ARP || fr.kind == F_LLDP) {
		rb->arp += fr.kind == F_ARP;
		rb->lldp += fr.kind == F_LLDP;
		return;
	}
	if (fr.proto == 6) {
		rb->tcp++;
		return;
	}
	assert_int_equal(fr.proto, 17);
	if (!fr.frag) {
		struct outcome *o;

		close_dgram(rb);
		if (rd16(fr.l4 + 2) == 53) {
			assert_true(udp_ok(&fr, fr.l4, fr.l4_len));
			rb->dns++;
			return;
		}
		o = new_outcome(rb);
		o->n = 1;
		o->ip_bad = !fr.ip_ok;
		o->v6 = fr.ver == 6;
		o->ntags = fr.ntags;
		o->has_opt = fr.has_opt;
		assert_int_equal(rd16(fr.l4 + 4), fr.l4_len);
		o->complete = true;
		o->udp_good = udp_ok(&fr, fr.l4, fr.l4_len);
		o->dport = rd16(fr.l4 + 2);
		o->len = fr.l4_len - 8;
		o->payload = malloc(o->len);
		memcpy(o->payload, fr.l4 + 8, o->len);
		return;
	}
	if (d->active && (d->id != fr.id || memcmp(d->src, fr.src, 16) != 0 || d->complete))
		close_dgram(rb);
	if (!d->active) {
		memset(d, 0, sizeof(*d));
		d->active = true;
		d->all_ip_bad = true;
		d->ver = fr.ver;
		d->id = fr.id;
		memcpy(d->src, fr.src, 16);
		rb->first = fr;
	} else if (fr.off < d->last_off) {
		d->out_of_order = true;
	}
	d->nframes++;
	d->last_off = fr.off;
	d->all_ip_bad &= !fr.ip_ok;
	if (!fr.ip_ok)
		return; /* a receiver drops it */
	if (fr.off == 0)
		rb->first = fr;
	assert_true(fr.off + fr.l4_len <= 65535);
	/* Already held: an exact duplicate, or an overlap with other bytes. */
	if (d->have[fr.off / 8]) {
		if (memcmp(d->buf + fr.off, fr.l4, fr.l4_len) == 0)
			d->dup = true;
		else
			d->overlap = true;
		return;
	}
	memcpy(d->buf + fr.off, fr.l4, fr.l4_len);
	for (uint32_t b = fr.off / 8; b < (fr.off + fr.l4_len + 7) / 8; b++)
		d->have[b] = 1;
	if (!fr.more)
		d->total = fr.off + fr.l4_len;
	if (d->total && !d->overlap) {
		uint32_t b;

		for (b = 0; b < (d->total + 7) / 8 && d->have[b]; b++)
			;
		d->complete = b == (d->total + 7) / 8;
	}
}

static void
read_file(struct readback *rb, const char *path)
{
	char err[PCAP_ERRBUF_SIZE];
	pcap_t *p = pcap_open_offline(path, err);
	struct pcap_pkthdr *h;
	const u_char *data;
	int64_t last = 0;

	if (p == NULL)
		fail_msg("%s: %s", path, err);
	assert_int_equal(pcap_datalink(p), DLT_EN10MB);
	while (pcap_next_ex(p, &h, &data) == 1) {
		int64_t t = (int64_t)h->ts.tv_sec * 1000000 + h->ts.tv_usec;

		assert_int_equal(h->caplen, h->len);
		assert_true(t > last); /* timestamps increase */
		last = t;
		add_frame(rb, data, h->caplen);
	}
	close_dgram(rb);
	pcap_close(p);
}

static void
free_readback(struct readback *rb)
{
	for (uint32_t i = 0; i < rb->n_out; i++)
		free(rb->out[i].payload);
	free(rb->out);
	memset(rb, 0, sizeof(*rb));
}

/* ---- tests ---- */

static uint8_t *
make_payload(uint32_t i, uint32_t len)
{
	uint8_t *p = malloc(len);
	struct tl_corpus_rng r;

	assert_non_null(p);
	tl_corpus_rng_seed(&r, i);
	for (uint32_t k = 0; k < len; k++)
		p[k] = (uint8_t)(' ' + tl_corpus_rng_below(&r, 95));
	snprintf((char *)p, len < 12 ? len : 12, "D%u:", i);
	return p;
}

static void
test_pcapw_open_bad_conf_einval(void **state)
{
	struct tl_pcapw_conf c, bad;
	struct tl_pcapw *w = (void *)1;
	char msg[256];

	(void)state;
	tl_pcapw_conf_defaults(&c);
	assert_int_equal(tl_pcapw_open(&c, &w, msg, sizeof(msg)), -EINVAL); /* no path */
	assert_null(w);
	c.path = tmp_path("bad.pcap");
	assert_int_equal(tl_pcapw_open(NULL, &w, NULL, 0), -EINVAL);
	assert_int_equal(tl_pcapw_open(&c, NULL, NULL, 0), -EINVAL);
#define EXPECT_BAD(field, value)                                                                   \
	do {                                                                                       \
		bad = c;                                                                           \
		bad.field = value;                                                                 \
		msg[0] = '\0';                                                                     \
		assert_int_equal(tl_pcapw_open(&bad, &w, msg, sizeof(msg)), -EINVAL);              \
		assert_null(w);                                                                    \
		assert_true(msg[0] != '\0');                                                       \
	} while (0)
	EXPECT_BAD(shards, 0);
	EXPECT_BAD(shards, 65);
	EXPECT_BAD(mtu, 576);
	EXPECT_BAD(mtu, 9001);
	EXPECT_BAD(datagram_size, 100);
	EXPECT_BAD(big_size, 70000);
	EXPECT_BAD(port, 0);
	EXPECT_BAD(ipv6_share, 1.5);
	EXPECT_BAD(vlan_share, -1);
	EXPECT_BAD(fault_share, 2);
	EXPECT_BAD(noise_share, 1.01);
	EXPECT_BAD(path, "");
#undef EXPECT_BAD
	assert_int_equal(access(tmp_path("bad.pcap"), F_OK), -1);
	assert_int_equal(tl_pcapw_close(NULL), 0);
}

static void
test_pcapw_open_unwritable_path_fails(void **state)
{
	struct tl_pcapw_conf c;
	struct tl_pcapw *w = (void *)1;
	char msg[256] = "";

	(void)state;
	tl_pcapw_conf_defaults(&c);
	c.path = "/nonexistent-dir/x.pcap";
	assert_int_equal(tl_pcapw_open(&c, &w, msg, sizeof(msg)), TL_E_PCAP);
	assert_null(w);
	assert_true(msg[0] != '\0');
	/* A later shard failing closes the ones already open. */
	c.shards = 3;
	assert_int_equal(tl_pcapw_open(&c, &w, msg, sizeof(msg)), TL_E_PCAP);
}

static void
test_pcapw_shard_path_names(void **state)
{
	char b[64];

	(void)state;
	tl_pcapw_shard_path("out.pcap", 1, 0, b, sizeof(b));
	assert_string_equal(b, "out.pcap");
	tl_pcapw_shard_path("out.pcap", 4, 3, b, sizeof(b));
	assert_string_equal(b, "out-3.pcap");
	tl_pcapw_shard_path("/a.b/out", 2, 1, b, sizeof(b));
	assert_string_equal(b, "/a.b/out-1");
	tl_pcapw_shard_path("/x/.hidden", 2, 0, b, sizeof(b));
	assert_string_equal(b, "/x/.hidden-0");
	assert_int_equal(tl_pcapw_shard_path("cap.pcap", 2, 1, b, 4), (int)strlen("cap-1.pcap"));
}

static void
test_pcapw_write_bad_length_einval(void **state)
{
	struct tl_pcapw_conf c;
	struct tl_pcapw *w;
	struct tl_pcapw_plan plan;
	static uint8_t big[70000];

	(void)state;
	tl_pcapw_conf_defaults(&c);
	c.path = tmp_path("len.pcap");
	assert_int_equal(tl_pcapw_open(&c, &w, NULL, 0), 0);
	tl_pcapw_plan(w, &plan);
	assert_int_equal(tl_pcapw_write(w, &plan, big, 0, 0), -EINVAL);
	assert_int_equal(tl_pcapw_write(w, &plan, big, TL_PCAPW_UDP_MAX + 1, 0), -EINVAL);
	assert_int_equal(tl_pcapw_write(w, &plan, NULL, 10, 0), -EINVAL);
	assert_int_equal(tl_pcapw_stats(w)->frames, 0);
	assert_int_equal(tl_pcapw_write(w, &plan, big, TL_PCAPW_UDP_MAX, 0), 0);
	assert_int_equal(tl_pcapw_stats(w)->datagrams, 1);
	assert_int_equal(tl_pcapw_close(w), 0);
}

/* Many datagrams of every size, no faults: all come back byte for byte. */
static void
test_pcapw_roundtrip_checksums_and_reassembly(void **state)
{
	struct tl_pcapw_conf c;
	struct tl_pcapw *w;
	struct readback rb = {0};
	const uint32_t n = 400;
	uint32_t lens[400], multi = 0, v6 = 0, tags1 = 0, tags2 = 0, opt = 0, ooo = 0;
	struct tl_pcapw_stats stats, *st = &stats;

	(void)state;
	tl_pcapw_conf_defaults(&c);
	c.path = tmp_path("rt.pcap");
	c.ipv6_share = 0.3;
	c.vlan_share = 0.5;
	c.noise_share = 0.2;
	c.seed = 3;
	assert_int_equal(tl_pcapw_open(&c, &w, NULL, 0), 0);
	for (uint32_t i = 0; i < n; i++) {
		struct tl_pcapw_plan plan;
		uint8_t *p;

		lens[i] = i % 3 == 0 ? 20 + i * 3 : i % 3 == 1 ? 1500 + i * 20 : 9000 + i * 140;
		if (i == n - 1)
			lens[i] = TL_PCAPW_UDP_MAX;
		tl_pcapw_plan(w, &plan);
		assert_int_equal(plan.fault, TL_REASON_OK);
		p = make_payload(i, lens[i]);
		assert_int_equal(tl_pcapw_write(w, &plan, p, lens[i], 0), 0);
		free(p);
	}
	/* Closing flushes the file; keep the counters first. */
	stats = *tl_pcapw_stats(w);
	assert_int_equal(tl_pcapw_close(w), 0);
	assert_int_equal(st->written, n);
	assert_int_equal(st->datagrams, n);
	read_file(&rb, c.path);
	assert_int_equal(rb.n_out, n);
	for (uint32_t i = 0; i < n; i++) {
		struct outcome *o = &rb.out[i];
		uint8_t *p = make_payload(i, lens[i]);

		assert_true(o->complete);
		assert_true(o->udp_good);
		assert_false(o->ip_bad || o->overlap || o->dup);
		assert_int_equal(o->dport, 5170);
		assert_int_equal(o->len, lens[i]);
		assert_memory_equal(o->payload, p, lens[i]);
		free(p);
		multi += o->n > 1;
		v6 += o->v6;
		tags1 += o->ntags == 1;
		tags2 += o->ntags == 2;
		opt += o->has_opt;
		ooo += o->out_of_order;
	}
	/* Counters agree with what is in the file. */
	assert_int_equal(rb.frames, st->frames);
	assert_int_equal(rb.bytes, st->bytes);
	assert_int_equal(multi, st->reassembled);
	assert_int_equal(multi, st->fragmented);
	assert_int_equal(rb.arp + rb.lldp, st->reason[TL_REASON_IGN_NON_IP]);
	assert_int_equal(rb.dns, st->reason[TL_REASON_IGN_PORT]);
	assert_int_equal(rb.tcp, st->reason[TL_REASON_IGN_NON_UDP]);
	assert_true(rb.arp > 0 && rb.dns > 0 && rb.tcp > 0);
	/* The mix the brief asks for. */
	assert_true(multi > n / 2);
	assert_in_range(v6, n / 6, n / 2);
	assert_true(tags1 > 0 && tags2 > 0 && opt > 0 && ooo > 0);
	assert_true(rb.out[n - 1].n >= 40);
	free_readback(&rb);
}

static void
test_pcapw_big_datagram_needs_40_fragments(void **state)
{
	struct tl_pcapw_conf c;
	struct tl_pcapw *w;
	struct readback rb = {0};
	struct tl_pcapw_plan plan = {.fault = TL_REASON_OK, .max_payload = 60000};
	uint8_t *p = make_payload(1, 60000);

	(void)state;
	tl_pcapw_conf_defaults(&c);
	c.path = tmp_path("big.pcap");
	assert_int_equal(tl_pcapw_open(&c, &w, NULL, 0), 0);
	plan.v6 = false;
	assert_int_equal(tl_pcapw_write(w, &plan, p, 60000, 0), 0);
	plan.v6 = true;
	assert_int_equal(tl_pcapw_write(w, &plan, p, 60000, 0), 0);
	assert_int_equal(tl_pcapw_close(w), 0);
	read_file(&rb, c.path);
	assert_int_equal(rb.n_out, 2);
	for (int i = 0; i < 2; i++) {
		assert_true(rb.out[i].n >= 40);
		assert_true(rb.out[i].complete && rb.out[i].udp_good);
		assert_int_equal(rb.out[i].v6, i == 1);
		assert_int_equal(rb.out[i].len, 60000);
		assert_memory_equal(rb.out[i].payload, p, 60000);
	}
	free_readback(&rb);
	free(p);
}

/* Every datagram faulted: each fault shows in the file as announced and counted. */
static void
test_pcapw_faults_as_planned_and_counted(void **state)
{
	struct tl_pcapw_conf c;
	struct tl_pcapw *w;
	struct readback rb = {0};
	enum { N = 400 };
	struct tl_pcapw_plan plans[N];
	unsigned by_fault[TL_REASON_MAX] = {0};
	uint64_t ip_bad_frames = 0;
	struct tl_pcapw_stats stats, *st = &stats;

	(void)state;
	tl_pcapw_conf_defaults(&c);
	c.path = tmp_path("faults.pcap");
	c.fault_share = 1.0;
	c.noise_share = 0;
	c.ipv6_share = 0.3;
	c.seed = 11;
	assert_int_equal(tl_pcapw_open(&c, &w, NULL, 0), 0);
	for (uint32_t i = 0; i < N; i++) {
		/* Small and large single events: frag faults must fragment either way. */
		uint32_t len = i % 2 ? 300 + i : 3000 + i * 5;
		uint8_t *p = make_payload(i, len);

		tl_pcapw_plan(w, &plans[i]);
		assert_true(plans[i].single);
		assert_int_not_equal(plans[i].fault, TL_REASON_OK);
		if (plans[i].fault == TL_REASON_PKT_IPV4_BAD_CHECKSUM)
			assert_false(plans[i].v6);
		assert_int_equal(tl_pcapw_write(w, &plans[i], p, len, 0), 0);
		by_fault[plans[i].fault]++;
		free(p);
	}
	stats = *tl_pcapw_stats(w);
	assert_int_equal(tl_pcapw_close(w), 0);
	read_file(&rb, c.path);
	assert_int_equal(rb.n_out, N);
	for (uint32_t i = 0; i < N; i++) {
		struct outcome *o = &rb.out[i];

		switch (plans[i].fault) {
		case TL_REASON_PKT_UDP_BAD_CHECKSUM:
			assert_true(o->complete);
			assert_false(o->udp_good);
			assert_false(o->ip_bad || o->dup || o->overlap);
			break;
		case TL_REASON_PKT_IPV4_BAD_CHECKSUM:
			assert_true(o->ip_bad);
			ip_bad_frames += o->n;
			break;
		case TL_REASON_FRAG_OVERLAP:
			assert_true(o->overlap);
			assert_false(o->complete);
			assert_false(o->dup);
			break;
		case TL_REASON_FRAG_DUPLICATE:
			assert_true(o->dup);
			assert_true(o->complete);
			assert_true(o->udp_good);
			assert_false(o->overlap);
			break;
		default:
			fail();
		}
	}
	for (int r = 0; r < TL_REASON_MAX; r++) {
		if (r == TL_REASON_PKT_IPV4_BAD_CHECKSUM)
			assert_int_equal(st->reason[r], ip_bad_frames);
		else
			assert_int_equal(st->reason[r], by_fault[r]);
	}
	assert_true(by_fault[TL_REASON_PKT_UDP_BAD_CHECKSUM] > 50);
	assert_true(by_fault[TL_REASON_PKT_IPV4_BAD_CHECKSUM] > 50);
	assert_true(by_fault[TL_REASON_FRAG_OVERLAP] > 50);
	assert_true(by_fault[TL_REASON_FRAG_DUPLICATE] > 50);
	/* Only duplicate-fragment datagrams are still delivered. */
	assert_int_equal(st->datagrams, by_fault[TL_REASON_FRAG_DUPLICATE]);
	assert_int_equal(st->reassembled, by_fault[TL_REASON_FRAG_DUPLICATE]);
	assert_int_equal(rb.frames, st->frames);
	assert_true(tl_pcapw_fault_loses(TL_REASON_FRAG_OVERLAP));
	assert_false(tl_pcapw_fault_loses(TL_REASON_FRAG_DUPLICATE));
	assert_false(tl_pcapw_fault_loses(TL_REASON_OK));
	free_readback(&rb);
}

static void
test_pcapw_shards_keep_flows_together(void **state)
{
	struct tl_pcapw_conf c;
	struct tl_pcapw *w;
	enum { SH = 4, N = 600 };
	uint64_t frames = 0, complete = 0, want_frames;
	int owner[2][256];

	(void)state;
	memset(owner, -1, sizeof(owner));
	tl_pcapw_conf_defaults(&c);
	c.path = tmp_path("sh.pcap");
	c.shards = SH;
	c.ipv6_share = 0.3;
	c.noise_share = 0.05;
	assert_int_equal(tl_pcapw_open(&c, &w, NULL, 0), 0);
	for (uint32_t i = 0; i < N; i++) {
		struct tl_pcapw_plan plan;
		uint32_t len = 500 + i * 17;
		uint8_t *p = make_payload(i, len);

		tl_pcapw_plan(w, &plan);
		assert_int_equal(tl_pcapw_write(w, &plan, p, len, 0), 0);
		free(p);
	}
	want_frames = tl_pcapw_stats(w)->frames;
	assert_int_equal(tl_pcapw_close(w), 0);
	for (uint32_t s = 0; s < SH; s++) {
		char name[256];
		struct readback rb = {0};
		char err[PCAP_ERRBUF_SIZE];
		pcap_t *p;
		struct pcap_pkthdr *h;
		const u_char *data;

		tl_pcapw_shard_path(c.path, SH, s, name, sizeof(name));
		read_file(&rb, name);
		assert_true(rb.n_out > 0);
		/* Every datagram in this file is whole: its fragments did not stray. */
		for (uint32_t i = 0; i < rb.n_out; i++) {
			assert_true(rb.out[i].complete && rb.out[i].udp_good);
			complete++;
		}
		frames += rb.frames;
		free_readback(&rb);
		/* Each sender (last address byte, per IP version) appears in one file only. */
		p = pcap_open_offline(name, err);
		assert_non_null(p);
		while (pcap_next_ex(p, &h, &data) == 1) {
			struct frame fr;

			parse_frame(data, h->caplen, &fr);
			if (fr.kind != F_IP)
				continue;
			{
				int v = fr.ver == 6, a = fr.src[v ? 15 : 3];

				if (owner[v][a] < 0)
					owner[v][a] = (int)s;
				assert_int_equal(owner[v][a], (int)s);
			}
		}
		pcap_close(p);
	}
	assert_int_equal(frames, want_frames);
	assert_int_equal(complete, N);
}

/* A datagram whose checksum computes to zero carries 0xffff (RFC 768): over IPv6 a zero
 * would mean "no checksum", which receivers must drop. */
static void
test_pcapw_zero_checksum_sent_as_ffff(void **state)
{
	static const uint8_t src[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
	static const uint8_t dst[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
	struct tl_pcapw_plan plan = {.fault = TL_REASON_OK, .max_payload = 8192, .v6 = true};
	struct tl_pcapw_conf c;
	struct tl_pcapw *w;
	struct readback rb = {0};
	uint8_t payload[100], udp[8] = {0};
	uint32_t sum = 0;
	uint16_t adj;

	(void)state;
	memset(payload, 'x', sizeof(payload));
	payload[98] = payload[99] = 0;
	/* Sender 0 over IPv6: 2001:db8:1::1 port 40100 -> 2001:db8::1 port 5170. */
	udp[0] = 40100 >> 8;
	udp[1] = 40100 & 0xff;
	udp[2] = 5170 >> 8;
	udp[3] = 5170 & 0xff;
	udp[5] = 108;
	sum = sum16(sum16(sum16(sum16(0, src, 16), dst, 16), udp, 8), payload, sizeof(payload));
	sum += 17 + 108;
	adj = (uint16_t)(0xffff - fold(sum));
	payload[98] = (uint8_t)(adj >> 8);
	payload[99] = (uint8_t)adj;

	tl_pcapw_conf_defaults(&c);
	c.path = tmp_path("zero.pcap");
	c.noise_share = 0;
	assert_int_equal(tl_pcapw_open(&c, &w, NULL, 0), 0);
	assert_int_equal(tl_pcapw_write(w, &plan, payload, sizeof(payload), 0), 0);
	assert_int_equal(tl_pcapw_close(w), 0);
	read_file(&rb, c.path);
	assert_int_equal(rb.n_out, 1);
	assert_true(rb.out[0].v6);
	assert_true(rb.out[0].udp_good);
	assert_memory_equal(rb.out[0].payload, payload, sizeof(payload));
	free_readback(&rb);
	{
		char err[PCAP_ERRBUF_SIZE];
		pcap_t *p = pcap_open_offline(c.path, err);
		struct pcap_pkthdr *h;
		const u_char *data;
		struct frame fr;

		assert_non_null(p);
		assert_int_equal(pcap_next_ex(p, &h, &data), 1);
		parse_frame(data, h->caplen, &fr);
		assert_memory_equal(fr.src, src, 16);
		assert_int_equal(rd16(fr.l4 + 6), 0xffff);
		pcap_close(p);
	}
}

static void
file_bytes(const char *path, uint8_t **buf, long *len)
{
	FILE *f = fopen(path, "rb");

	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	*len = ftell(f);
	fseek(f, 0, SEEK_SET);
	*buf = malloc((size_t)*len);
	assert_int_equal(fread(*buf, 1, (size_t)*len, f), (size_t)*len);
	fclose(f);
}

static void
write_run(const char *path, uint64_t seed)
{
	struct tl_pcapw_conf c;
	struct tl_pcapw *w;

	tl_pcapw_conf_defaults(&c);
	c.path = path;
	c.seed = seed;
	c.fault_share = 0.2;
	c.ipv6_share = 0.4;
	assert_int_equal(tl_pcapw_open(&c, &w, NULL, 0), 0);
	for (uint32_t i = 0; i < 200; i++) {
		struct tl_pcapw_plan plan;
		uint8_t *p = make_payload(i, 100 + i * 50);

		tl_pcapw_plan(w, &plan);
		assert_int_equal(tl_pcapw_write(w, &plan, p, 100 + i * 50, 1000000000ull * i), 0);
		free(p);
	}
	assert_int_equal(tl_pcapw_close(w), 0);
}

static void
test_pcapw_same_seed_same_file(void **state)
{
	uint8_t *a, *b, *c;
	long la, lb, lc;

	(void)state;
	write_run(tmp_path("d1.pcap"), 5);
	write_run(tmp_path("d2.pcap"), 5);
	write_run(tmp_path("d3.pcap"), 6);
	file_bytes(tmp_path("d1.pcap"), &a, &la);
	file_bytes(tmp_path("d2.pcap"), &b, &lb);
	file_bytes(tmp_path("d3.pcap"), &c, &lc);
	assert_int_equal(la, lb);
	assert_memory_equal(a, b, (size_t)la);
	assert_true(la != lc || memcmp(a, c, (size_t)la) != 0);
	free(a);
	free(b);
	free(c);
}

/* Real events through the writer: every NDJSON line comes back intact. */
static void
test_pcapw_corpus_events_survive(void **state)
{
	const char *dd = getenv("TAPLINE_DATA");
	struct tl_corpus *corpus;
	struct tl_corpus_gen *g;
	struct tl_corpus_conf cf;
	struct tl_pcapw_conf c;
	struct tl_pcapw *w;
	struct readback rb = {0};
	char msg[256];
	static uint8_t buf[TL_PCAPW_UDP_MAX];
	uint32_t written = 0, seen = 0;

	(void)state;
	assert_int_equal(
	        tl_corpus_load(dd && dd[0] ? dd : "../shared/data", &corpus, msg, sizeof(msg)), 0);
	tl_corpus_conf_defaults(&cf);
	cf.malformed_share = 0;
	assert_int_equal(tl_corpus_gen_create(corpus, &cf, &g), 0);
	tl_pcapw_conf_defaults(&c);
	c.path = tmp_path("ev.pcap");
	assert_int_equal(tl_pcapw_open(&c, &w, NULL, 0), 0);
	for (int d = 0; d < 100; d++) {
		struct tl_pcapw_plan plan;
		uint32_t len = 0;

		tl_pcapw_plan(w, &plan);
		for (;;) {
			struct tl_corpus_event ev;

			assert_int_equal(tl_corpus_next(g, &ev), 0);
			memcpy(buf + len, ev.data, ev.len);
			len += ev.len;
			written++;
			if (plan.single || len + 1 + 5120 > plan.max_payload)
				break;
			buf[len++] = '\n';
		}
		assert_int_equal(tl_pcapw_write(w, &plan, buf, len, 0), 0);
	}
	assert_int_equal(tl_pcapw_close(w), 0);
	read_file(&rb, c.path);
	assert_int_equal(rb.n_out, 100);
	for (uint32_t i = 0; i < rb.n_out; i++) {
		char *p = (char *)rb.out[i].payload, *end = p + rb.out[i].len;

		assert_true(rb.out[i].udp_good);
		while (p < end) {
			char *nl = memchr(p, '\n', (size_t)(end - p));
			json_error_t err;
			json_t *j = json_loadb(p, (size_t)((nl ? nl : end) - p), 0, &err);

			assert_non_null(j);
			json_decref(j);
			seen++;
			p = nl ? nl + 1 : end;
		}
	}
	assert_int_equal(seen, written);
	free_readback(&rb);
	tl_corpus_gen_free(g);
	tl_corpus_free(corpus);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_pcapw_open_bad_conf_einval),
	        cmocka_unit_test(test_pcapw_open_unwritable_path_fails),
	        cmocka_unit_test(test_pcapw_shard_path_names),
	        cmocka_unit_test(test_pcapw_write_bad_length_einval),
	        cmocka_unit_test(test_pcapw_roundtrip_checksums_and_reassembly),
	        cmocka_unit_test(test_pcapw_big_datagram_needs_40_fragments),
	        cmocka_unit_test(test_pcapw_faults_as_planned_and_counted),
	        cmocka_unit_test(test_pcapw_shards_keep_flows_together),
	        cmocka_unit_test(test_pcapw_zero_checksum_sent_as_ffff),
	        cmocka_unit_test(test_pcapw_same_seed_same_file),
	        cmocka_unit_test(test_pcapw_corpus_events_survive),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
