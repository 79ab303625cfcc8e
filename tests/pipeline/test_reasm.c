/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Tests for the reassembly table. Most tests feed struct tl_l3_view fragments directly;
 * the 64 KiB and IPv6 tests go through real frames and tl_decode_frame() /
 * tl_decode_udp() so the whole receive path is covered. Clocks are synthetic.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tl_cksum.h"
#include "tl_decode.h"
#include "tl_reasm.h"

#define MS 1000000ull
#define SEC 1000000000ull
#define T0 (1000 * SEC)

static const uint8_t addr_a[16] = {10, 0, 0, 1};
static const uint8_t addr_b[16] = {10, 0, 0, 2};

/* ---- helpers ---- */

static uint32_t rng_state;

static uint32_t
rng(void)
{
	/* xorshift32: fixed seed per test, reproducible. */
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 17;
	rng_state ^= rng_state << 5;
	return rng_state;
}

static void
fill_random(uint8_t *p, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		p[i] = (uint8_t)rng();
}

static struct tl_reasm *
make_table(uint64_t flows, uint64_t frags, uint64_t timeout_ns)
{
	struct tl_reasm_conf c = {.max_flows = flows, .max_frags = frags, .timeout_ns = timeout_ns};
	struct tl_reasm *r = NULL;

	assert_int_equal(tl_reasm_create(&c, &r), 0);
	assert_non_null(r);
	return r;
}

static struct tl_l3_view
frag(uint8_t ver, uint32_t id, const uint8_t *src, const uint8_t *data, uint32_t off, uint32_t len,
        bool more)
{
	struct tl_l3_view v;

	memset(&v, 0, sizeof(v));
	v.ip_version = ver;
	v.is_fragment = 1;
	v.more_frags = more;
	v.frag_id = id;
	v.frag_off = off;
	memcpy(v.src, src, ver == 4 ? 4 : 16);
	memcpy(v.dst, addr_b, ver == 4 ? 4 : 16);
	v.l4 = data + off;
	v.l4_len = len;
	return v;
}

struct out {
	const uint8_t *p;
	uint32_t len;
};

/* Add fragment [off, off+len) of @p data. */
static enum tl_reason
add(struct tl_reasm *r, uint8_t ver, uint32_t id, const uint8_t *src, const uint8_t *data,
        uint32_t off, uint32_t len, bool more, uint64_t now, struct tl_reasm_drops *d,
        struct out *o)
{
	struct tl_l3_view v = frag(ver, id, src, data, off, len, more);

	o->p = (const uint8_t *)1; /* must be overwritten */
	o->len = 12345;
	return tl_reasm_add(r, &v, now, d, &o->p, &o->len);
}

/* Split @p len bytes into pieces of @p step (multiple of 8): pieces written to offs/lens. */
static uint32_t
split(uint32_t len, uint32_t step, uint32_t *offs, uint32_t *lens)
{
	uint32_t n = 0;

	for (uint32_t o = 0; o < len; o += step, n++) {
		offs[n] = o;
		lens[n] = len - o < step ? len - o : step;
	}
	return n;
}

static void
shuffle(uint32_t *idx, uint32_t n)
{
	for (uint32_t i = n; i > 1; i--) {
		uint32_t j = rng() % i, t = idx[i - 1];

		idx[i - 1] = idx[j];
		idx[j] = t;
	}
}

/* Feed the pieces in the order of @p order; expect completion at the last one. */
static void
feed_expect_complete(struct tl_reasm *r, uint8_t ver, uint32_t id, const uint8_t *data,
        uint32_t len, const uint32_t *offs, const uint32_t *lens, const uint32_t *order, uint32_t n)
{
	struct tl_reasm_drops d = {0};
	struct out o;

	for (uint32_t k = 0; k < n; k++) {
		uint32_t i = order[k];
		bool last = offs[i] + lens[i] == len;

		assert_int_equal(add(r, ver, id, addr_a, data, offs[i], lens[i], !last, T0, &d, &o),
		        TL_REASON_OK);
		if (k + 1 < n) {
			assert_null(o.p);
			assert_int_equal(o.len, 0);
			assert_int_equal(tl_reasm_in_progress(r), 1);
		}
	}
	assert_non_null(o.p);
	assert_int_equal(o.len, len);
	assert_memory_equal(o.p, data, len);
	assert_int_equal(tl_reasm_in_progress(r), 0);
	for (int i = 0; i < TL_REASON_MAX; i++)
		assert_int_equal(d.n[i], 0);
}

/* ---- create / options ---- */

static void
test_reasm_create_bad_args_einval(void **state)
{
	struct tl_reasm_conf ok = {.max_flows = 4, .max_frags = 8, .timeout_ns = SEC};
	struct tl_reasm_conf c;
	struct tl_reasm *r = (struct tl_reasm *)&ok; /* sentinel: failures must clear it */

	(void)state;
	assert_int_equal(tl_reasm_create(NULL, &r), -EINVAL);
	assert_int_equal(tl_reasm_create(&ok, NULL), -EINVAL);
	c = ok;
	c.max_flows = 0;
	assert_int_equal(tl_reasm_create(&c, &r), -EINVAL);
	assert_null(r);
	c.max_flows = 65537;
	assert_int_equal(tl_reasm_create(&c, &r), -EINVAL);
	c = ok;
	c.max_frags = 1;
	assert_int_equal(tl_reasm_create(&c, &r), -EINVAL);
	c.max_frags = 8193;
	assert_int_equal(tl_reasm_create(&c, &r), -EINVAL);
	c = ok;
	c.timeout_ns = MS - 1;
	assert_int_equal(tl_reasm_create(&c, &r), -EINVAL);
	c.timeout_ns = 60 * SEC + 1;
	assert_int_equal(tl_reasm_create(&c, &r), -EINVAL);
	assert_null(r);

	c = ok;
	c.max_flows = 1;
	c.max_frags = 2;
	c.timeout_ns = MS;
	assert_int_equal(tl_reasm_create(&c, &r), 0);
	assert_non_null(r);
	assert_int_equal(tl_reasm_in_progress(r), 0);
	tl_reasm_free(r);
	tl_reasm_free(NULL);
}

static const struct tl_opt *
find_opt(const char *name)
{
	for (const struct tl_opt *o = tl_reasm_opts; o->name; o++)
		if (strcmp(o->name, name) == 0)
			return o;
	return NULL;
}

static void
test_reasm_opts_table_matches_conf(void **state)
{
	const struct tl_opt *o;
	unsigned n = 0;

	(void)state;
	for (o = tl_reasm_opts; o->name; o++) {
		assert_non_null(o->desc);
		n++;
	}
	assert_int_equal(n, 3);

	o = find_opt("max_flows");
	assert_non_null(o);
	assert_int_equal(o->type, TL_OPT_UINT);
	assert_string_equal(o->def, "256");
	assert_int_equal(o->offset, offsetof(struct tl_reasm_conf, max_flows));
	assert_int_equal(o->min, 1);
	assert_int_equal(o->max, 65536);

	o = find_opt("max_frags");
	assert_non_null(o);
	assert_int_equal(o->type, TL_OPT_UINT);
	assert_string_equal(o->def, "64");
	assert_int_equal(o->offset, offsetof(struct tl_reasm_conf, max_frags));
	assert_int_equal(o->min, 2);
	assert_int_equal(o->max, 8192);

	o = find_opt("timeout");
	assert_non_null(o);
	assert_int_equal(o->type, TL_OPT_DURATION);
	assert_string_equal(o->def, "2s");
	assert_int_equal(o->offset, offsetof(struct tl_reasm_conf, timeout_ns));
	assert_int_equal(o->min, MS);
	assert_int_equal(o->max, 60 * SEC);
}

/* ---- ordering ---- */

static void
test_reasm_in_order_complete(void **state)
{
	uint8_t data[5000];
	uint32_t offs[64], lens[64], order[64], n;
	struct tl_reasm *r = make_table(4, 64, SEC);

	(void)state;
	rng_state = 1;
	fill_random(data, sizeof(data));
	n = split(sizeof(data), 1480, offs, lens);
	for (uint32_t i = 0; i < n; i++)
		order[i] = i;
	feed_expect_complete(r, 4, 1, data, sizeof(data), offs, lens, order, n);
	tl_reasm_free(r);
}

static void
test_reasm_reverse_order_complete(void **state)
{
	uint8_t data[5003];
	uint32_t offs[64], lens[64], order[64], n;
	struct tl_reasm *r = make_table(4, 64, SEC);

	(void)state;
	rng_state = 2;
	fill_random(data, sizeof(data));
	n = split(sizeof(data), 1000, offs, lens);
	for (uint32_t i = 0; i < n; i++)
		order[i] = n - 1 - i;
	feed_expect_complete(r, 4, 2, data, sizeof(data), offs, lens, order, n);
	tl_reasm_free(r);
}

static void
test_reasm_random_order_complete(void **state)
{
	static uint8_t data[20001];
	uint32_t offs[512], lens[512], order[512], n;
	struct tl_reasm *r = make_table(4, 512, SEC);

	(void)state;
	rng_state = 3;
	for (int round = 0; round < 20; round++) {
		uint32_t len = 16 + rng() % (sizeof(data) - 16);

		fill_random(data, len);
		n = split(len, 8 * (16 + rng() % 128), offs, lens);
		if (n < 2)
			continue;
		for (uint32_t i = 0; i < n; i++)
			order[i] = i;
		shuffle(order, n);
		feed_expect_complete(
		        r, round & 1 ? 6 : 4, (uint32_t)round, data, len, offs, lens, order, n);
	}
	tl_reasm_free(r);
}

/* ---- the full receive path with frames ---- */

struct frame {
	uint8_t b[1600];
	uint32_t len;
};

static void
wr16(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* UDP datagram (header + payload, checksum set) in @p dg; @return its length. */
static uint32_t
make_udp(uint8_t *dg, uint32_t plen, const uint8_t *src, const uint8_t *dst, size_t alen)
{
	uint16_t c;

	fill_random(dg + 8, plen);
	wr16(dg, 33333);
	wr16(dg + 2, 5170);
	wr16(dg + 4, 8 + plen);
	wr16(dg + 6, 0);
	c = tl_cksum_l4(src, dst, alen, 17, dg, 8 + plen);
	if (c == 0)
		c = 0xffff;
	memcpy(dg + 6, &c, 2);
	return 8 + plen;
}

static uint32_t
ipv4_fragment_frame(
        struct frame *f, const uint8_t *dg, uint32_t off, uint32_t len, bool more, uint16_t id)
{
	uint8_t *ip = f->b + 14;
	uint16_t c;

	memset(f->b, 0, 34);
	wr16(f->b + 12, 0x0800);
	ip[0] = 0x45;
	wr16(ip + 2, 20 + len);
	wr16(ip + 4, id);
	wr16(ip + 6, (more ? 0x2000u : 0u) | off / 8);
	ip[8] = 64;
	ip[9] = 17;
	memcpy(ip + 12, addr_a, 4);
	memcpy(ip + 16, addr_b, 4);
	c = tl_cksum(ip, 20);
	memcpy(ip + 10, &c, 2);
	memcpy(ip + 20, dg + off, len);
	f->len = 34 + len;
	return f->len;
}

static const uint8_t v6a[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
static const uint8_t v6b[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2};

static uint32_t
ipv6_fragment_frame(
        struct frame *f, const uint8_t *dg, uint32_t off, uint32_t len, bool more, uint32_t id)
{
	uint8_t *ip = f->b + 18;

	memset(f->b, 0, 18 + 48);
	wr16(f->b + 12, 0x8100); /* one VLAN tag, to shift alignment */
	wr16(f->b + 14, 42);
	wr16(f->b + 16, 0x86dd);
	ip[0] = 0x60;
	wr16(ip + 4, 8 + len);
	ip[6] = 44;
	ip[7] = 64;
	memcpy(ip + 8, v6a, 16);
	memcpy(ip + 24, v6b, 16);
	ip[40] = 17;
	wr16(ip + 42, off | (more ? 1u : 0u));
	wr16(ip + 44, id >> 16);
	wr16(ip + 46, id);
	memcpy(ip + 48, dg + off, len);
	f->len = 18 + 48 + len;
	return f->len;
}

static void
test_reasm_ipv4_64k_datagram_45_fragments_complete(void **state)
{
	static uint8_t dg[65515];
	struct tl_reasm *r = make_table(2, 45, 2 * SEC);
	struct tl_reasm_drops d = {0};
	uint32_t dlen, nfr = 0, order[64];
	struct frame f;
	const uint8_t *out = NULL;
	uint32_t out_len = 0;
	struct tl_udp_view u;

	(void)state;
	rng_state = 45;
	/* The largest UDP datagram IPv4 can carry: 65535 - 20 (IP) - 8 (UDP) of payload. */
	dlen = make_udp(dg, 65507, addr_a, addr_b, 4);
	assert_int_equal(dlen, 65515);
	nfr = (dlen + 1479) / 1480;
	assert_int_equal(nfr, 45);
	for (uint32_t i = 0; i < nfr; i++)
		order[i] = i;
	shuffle(order, nfr);
	for (uint32_t k = 0; k < nfr; k++) {
		uint32_t off = order[k] * 1480, len = dlen - off < 1480 ? dlen - off : 1480;
		struct tl_l3_view v;
		enum tl_reason rc;

		ipv4_fragment_frame(&f, dg, off, len, off + len < dlen, 0x4242);
		assert_int_equal(tl_decode_frame(f.b, f.len, 0, &v), TL_REASON_OK);
		assert_int_equal(v.is_fragment, 1);
		rc = tl_reasm_add(r, &v, T0 + k * MS, &d, &out, &out_len);
		assert_int_equal(rc, TL_REASON_OK);
		if (k + 1 < nfr)
			assert_null(out);
	}
	assert_non_null(out);
	assert_int_equal(out_len, dlen);
	assert_memory_equal(out, dg, dlen);
	{
		struct tl_l3_view v;

		/* Addresses from any fragment; the checksum must be verified in software
		 * even if the NIC vouched for the last fragment. */
		ipv4_fragment_frame(&f, dg, 0, 1480, true, 0x4242);
		assert_int_equal(
		        tl_decode_frame(f.b, f.len, TL_HW_L4_CKSUM_GOOD, &v), TL_REASON_OK);
		assert_int_equal(tl_decode_udp(&v, out, out_len, true, &u), TL_REASON_OK);
		assert_int_equal(u.len, 65507);
		assert_int_equal(u.dport, 5170);
		assert_ptr_equal(u.payload, out + 8);
	}
	tl_reasm_free(r);
}

static void
test_reasm_ipv4_64k_datagram_46th_fragment_too_many(void **state)
{
	static uint8_t dg[65515];
	struct tl_reasm *r = make_table(2, 45, 2 * SEC);
	uint32_t dlen;
	struct out o;

	(void)state;
	rng_state = 46;
	dlen = make_udp(dg, 65507, addr_a, addr_b, 4);
	/* 46 fragments of 1424 bytes: the 46th distinct one exceeds max_frags (45). */
	for (uint32_t i = 0; i < 46; i++) {
		uint32_t off = i * 1424, len = dlen - off < 1424 ? dlen - off : 1424;

		assert_int_equal(add(r, 4, 1, addr_a, dg, off, len, off + len < dlen, T0, NULL, &o),
		        i < 45 ? TL_REASON_OK : TL_REASON_FRAG_TOO_MANY);
		assert_null(o.p);
	}
	assert_int_equal(tl_reasm_in_progress(r), 0);
	tl_reasm_free(r);
}

static void
test_reasm_ipv6_fragments_frames_complete(void **state)
{
	static uint8_t dg[9000];
	struct tl_reasm *r = make_table(4, 16, SEC);
	struct tl_reasm_drops d = {0};
	const uint8_t *out = NULL;
	uint32_t out_len = 0, dlen;
	uint32_t order[] = {3, 0, 6, 2, 5, 1, 4};
	struct tl_l3_view v;
	struct tl_udp_view u;
	struct frame f;

	(void)state;
	rng_state = 6;
	dlen = make_udp(dg, 8983, v6a, v6b, 16); /* 8991 bytes: 7 fragments */
	for (uint32_t k = 0; k < 7; k++) {
		uint32_t off = order[k] * 1448, len = dlen - off < 1448 ? dlen - off : 1448;

		ipv6_fragment_frame(&f, dg, off, len, off + len < dlen, 0xa1b2c3d4);
		assert_int_equal(tl_decode_frame(f.b, f.len, 0, &v), TL_REASON_OK);
		assert_int_equal(v.ip_version, 6);
		assert_int_equal(v.frag_id, 0xa1b2c3d4);
		assert_int_equal(v.vlan[0], 42);
		assert_int_equal(tl_reasm_add(r, &v, T0, &d, &out, &out_len), TL_REASON_OK);
	}
	assert_non_null(out);
	assert_int_equal(out_len, dlen);
	assert_memory_equal(out, dg, dlen);
	assert_int_equal(tl_decode_udp(&v, out, out_len, true, &u), TL_REASON_OK);
	assert_int_equal(u.len, dlen - 8);
	tl_reasm_free(r);
}

/* ---- timeouts ---- */

static void
test_reasm_missing_fragment_expire_timeout(void **state)
{
	uint8_t data[3000];
	struct tl_reasm *r = make_table(4, 8, 2 * SEC);
	struct tl_reasm_drops d = {0};
	struct out o;

	(void)state;
	rng_state = 7;
	fill_random(data, sizeof(data));
	assert_int_equal(add(r, 4, 9, addr_a, data, 0, 1000, true, T0, &d, &o), TL_REASON_OK);
	/* 1000..2000 never arrives */
	assert_int_equal(
	        add(r, 4, 9, addr_a, data, 2000, 1000, false, T0 + SEC, &d, &o), TL_REASON_OK);
	assert_null(o.p);
	assert_int_equal(tl_reasm_in_progress(r), 1);
	assert_int_equal(tl_reasm_expire(r, T0 + 2 * SEC - 1, &d), 0);
	assert_int_equal(tl_reasm_in_progress(r), 1);
	assert_int_equal(d.n[TL_REASON_FRAG_TIMEOUT], 0);
	/* The timer runs from the first fragment, not the latest. */
	assert_int_equal(tl_reasm_expire(r, T0 + 2 * SEC, &d), 1);
	assert_int_equal(d.n[TL_REASON_FRAG_TIMEOUT], 1);
	assert_int_equal(tl_reasm_in_progress(r), 0);
	assert_int_equal(tl_reasm_expire(r, T0 + 10 * SEC, &d), 0);
	assert_int_equal(d.n[TL_REASON_FRAG_TIMEOUT], 1);

	/* The late fragment starts a new datagram rather than completing the old one. */
	assert_int_equal(
	        add(r, 4, 9, addr_a, data, 1000, 1000, true, T0 + 3 * SEC, &d, &o), TL_REASON_OK);
	assert_null(o.p);
	assert_int_equal(tl_reasm_in_progress(r), 1);
	tl_reasm_free(r);
}

static void
test_reasm_expired_on_add_counted_timeout(void **state)
{
	uint8_t data[64];
	struct tl_reasm *r = make_table(8, 8, SEC);
	struct tl_reasm_drops d = {0};
	struct out o;

	(void)state;
	memset(data, 7, sizeof(data));
	for (uint32_t id = 0; id < 3; id++)
		assert_int_equal(add(r, 4, id, addr_a, data, 0, 8, true, T0 + id * MS, &d, &o),
		        TL_REASON_OK);
	/* Datagram 0 and 1 are past their deadline when the next fragment arrives; the
	 * new datagram with id 0 must not join the expired one. */
	assert_int_equal(
	        add(r, 4, 0, addr_a, data, 8, 8, false, T0 + SEC + MS, &d, &o), TL_REASON_OK);
	assert_null(o.p);
	assert_int_equal(d.n[TL_REASON_FRAG_TIMEOUT], 2);
	assert_int_equal(tl_reasm_in_progress(r), 2);
	tl_reasm_free(r);
}

static void
test_reasm_expire_max_at_shutdown_all_timeout(void **state)
{
	uint8_t data[64];
	struct tl_reasm *r = make_table(16, 8, 60 * SEC);
	struct tl_reasm_drops d = {0};
	struct out o;

	(void)state;
	memset(data, 1, sizeof(data));
	for (uint32_t id = 0; id < 10; id++)
		assert_int_equal(add(r, id & 1 ? 6 : 4, id, addr_a, data, 8, 8, true,
		                         UINT64_MAX - 5 * SEC + id, &d, &o),
		        TL_REASON_OK);
	assert_int_equal(tl_reasm_in_progress(r), 10);
	assert_int_equal(tl_reasm_expire(r, UINT64_MAX - 1, &d), 0);
	assert_int_equal(tl_reasm_expire(r, UINT64_MAX, &d), 10);
	assert_int_equal(d.n[TL_REASON_FRAG_TIMEOUT], 10);
	assert_int_equal(tl_reasm_in_progress(r), 0);
	assert_int_equal(tl_reasm_expire(r, UINT64_MAX, NULL), 0);
	tl_reasm_free(r);
}

/* ---- duplicates and overlaps ---- */

static void
test_reasm_duplicate_fragment_ignored_counted(void **state)
{
	uint8_t data[4000];
	struct tl_reasm *r = make_table(4, 4, SEC);
	struct tl_reasm_drops d = {0};
	struct out o;

	(void)state;
	rng_state = 8;
	fill_random(data, sizeof(data));
	assert_int_equal(add(r, 4, 1, addr_a, data, 0, 1000, true, T0, &d, &o), TL_REASON_OK);
	/* Many duplicates must not count towards max_frags (4). */
	for (int i = 0; i < 10; i++)
		assert_int_equal(add(r, 4, 1, addr_a, data, 0, 1000, true, T0, &d, &o),
		        TL_REASON_FRAG_DUPLICATE);
	assert_int_equal(add(r, 4, 1, addr_a, data, 3000, 1000, false, T0, &d, &o), TL_REASON_OK);
	assert_int_equal(add(r, 4, 1, addr_a, data, 3000, 1000, false, T0, &d, &o),
	        TL_REASON_FRAG_DUPLICATE);
	/* A fragment inside data already held, with the same bytes, is a duplicate too. */
	assert_int_equal(
	        add(r, 4, 1, addr_a, data, 8, 16, true, T0, &d, &o), TL_REASON_FRAG_DUPLICATE);
	assert_int_equal(add(r, 4, 1, addr_a, data, 1000, 1000, true, T0, &d, &o), TL_REASON_OK);
	assert_int_equal(add(r, 4, 1, addr_a, data, 2000, 1000, true, T0, &d, &o), TL_REASON_OK);
	assert_non_null(o.p);
	assert_int_equal(o.len, 4000);
	assert_memory_equal(o.p, data, 4000);
	for (int i = 0; i < TL_REASON_MAX; i++)
		assert_int_equal(d.n[i], 0);
	tl_reasm_free(r);
}

static void
test_reasm_overlap_same_bytes_accepted(void **state)
{
	uint8_t data[3001];
	struct tl_reasm *r = make_table(4, 8, SEC);
	struct out o;

	(void)state;
	rng_state = 9;
	fill_random(data, sizeof(data));
	assert_int_equal(add(r, 4, 1, addr_a, data, 0, 1000, true, T0, NULL, &o), TL_REASON_OK);
	assert_int_equal(add(r, 4, 1, addr_a, data, 1600, 1401, false, T0, NULL, &o), TL_REASON_OK);
	/* Overlaps both neighbours and fills the hole between them. */
	assert_int_equal(add(r, 4, 1, addr_a, data, 800, 1000, true, T0, NULL, &o), TL_REASON_OK);
	assert_non_null(o.p);
	assert_int_equal(o.len, 3001);
	assert_memory_equal(o.p, data, 3001);

	/* An overlapping last fragment that ends on the total, identical bytes. */
	assert_int_equal(add(r, 6, 2, addr_a, data, 0, 2000, true, T0, NULL, &o), TL_REASON_OK);
	assert_int_equal(add(r, 6, 2, addr_a, data, 1000, 2001, false, T0, NULL, &o), TL_REASON_OK);
	assert_non_null(o.p);
	assert_memory_equal(o.p, data, 3001);
	tl_reasm_free(r);
}

static void
test_reasm_overlap_different_bytes_dropped(void **state)
{
	uint8_t data[3000], evil[3000];
	struct tl_reasm *r = make_table(4, 8, SEC);
	struct tl_reasm_drops d = {0};
	struct out o;

	(void)state;
	rng_state = 10;
	fill_random(data, sizeof(data));
	memcpy(evil, data, sizeof(evil));
	evil[1500] ^= 0x20; /* one byte differs, inside the overlap */

	assert_int_equal(add(r, 4, 1, addr_a, data, 0, 1504, true, T0, &d, &o), TL_REASON_OK);
	assert_int_equal(
	        add(r, 4, 1, addr_a, evil, 1496, 1504, false, T0, &d, &o), TL_REASON_FRAG_OVERLAP);
	assert_null(o.p);
	assert_int_equal(tl_reasm_in_progress(r), 0);
	/* The rest of the original datagram no longer completes. */
	assert_int_equal(add(r, 4, 1, addr_a, data, 1504, 1496, false, T0, &d, &o), TL_REASON_OK);
	assert_null(o.p);
	assert_int_equal(tl_reasm_in_progress(r), 1);

	/* A different byte in the partial tail block of the last fragment is caught too. */
	memcpy(evil, data, sizeof(evil));
	evil[2002] = (uint8_t)(data[2002] ^ 1);
	assert_int_equal(add(r, 6, 2, addr_a, data, 1000, 1003, false, T0, &d, &o), TL_REASON_OK);
	assert_int_equal(tl_reasm_in_progress(r), 2);
	assert_int_equal(
	        add(r, 6, 2, addr_a, evil, 1000, 1003, false, T0, &d, &o), TL_REASON_FRAG_OVERLAP);
	assert_int_equal(tl_reasm_in_progress(r), 1);

	/* Partial overlap: new bytes plus one changed old byte. */
	assert_int_equal(add(r, 4, 3, addr_a, data, 0, 800, true, T0, &d, &o), TL_REASON_OK);
	assert_int_equal(add(r, 4, 3, addr_a, data, 1600, 800, true, T0, &d, &o), TL_REASON_OK);
	memcpy(evil, data, sizeof(evil));
	evil[1700] = (uint8_t)(data[1700] ^ 0x80);
	assert_int_equal(
	        add(r, 4, 3, addr_a, evil, 400, 1600, true, T0, &d, &o), TL_REASON_FRAG_OVERLAP);
	assert_int_equal(tl_reasm_in_progress(r), 1);
	for (int i = 0; i < TL_REASON_MAX; i++)
		assert_int_equal(d.n[i], 0);
	tl_reasm_free(r);
}

/* ---- limits and malformed fragments ---- */

static void
test_reasm_past_65535_too_big(void **state)
{
	static uint8_t data[65536 + 2000];
	struct tl_reasm *r = make_table(4, 64, SEC);
	struct out o;

	(void)state;
	memset(data, 3, sizeof(data));
	/* 65528 + 8 = 65536: one byte too many. */
	assert_int_equal(add(r, 4, 1, addr_a, data, 0, 1000, true, T0, NULL, &o), TL_REASON_OK);
	assert_int_equal(
	        add(r, 4, 1, addr_a, data, 65528, 8, false, T0, NULL, &o), TL_REASON_FRAG_TOO_BIG);
	assert_int_equal(tl_reasm_in_progress(r), 0);
	/* Without a datagram in progress, nothing is created. */
	assert_int_equal(add(r, 6, 1, addr_a, data, 64000, 1600, true, T0, NULL, &o),
	        TL_REASON_FRAG_TOO_BIG);
	assert_int_equal(tl_reasm_in_progress(r), 0);
	/* Exactly 65535 is fine. */
	assert_int_equal(add(r, 4, 2, addr_a, data, 65528, 7, false, T0, NULL, &o), TL_REASON_OK);
	assert_int_equal(add(r, 4, 2, addr_a, data, 0, 65528, true, T0, NULL, &o), TL_REASON_OK);
	assert_non_null(o.p);
	assert_int_equal(o.len, 65535);
	tl_reasm_free(r);
}

static void
test_reasm_more_than_max_frags_too_many(void **state)
{
	uint8_t data[256];
	struct tl_reasm *r = make_table(4, 4, SEC);
	struct tl_reasm_drops d = {0};
	struct out o;

	(void)state;
	memset(data, 5, sizeof(data));
	for (uint32_t i = 0; i < 4; i++)
		assert_int_equal(
		        add(r, 4, 1, addr_a, data, i * 16, 8, true, T0, &d, &o), TL_REASON_OK);
	assert_int_equal(
	        add(r, 4, 1, addr_a, data, 200, 8, true, T0, &d, &o), TL_REASON_FRAG_TOO_MANY);
	assert_int_equal(tl_reasm_in_progress(r), 0);

	/* Exactly max_frags fragments complete a datagram. */
	for (uint32_t i = 0; i < 4; i++)
		assert_int_equal(
		        add(r, 4, 2, addr_a, data, i * 16, 16, i < 3, T0, &d, &o), TL_REASON_OK);
	assert_non_null(o.p);
	assert_int_equal(o.len, 64);
	tl_reasm_free(r);
}

static void
test_reasm_conflicting_last_fragment_frag_bad(void **state)
{
	uint8_t data[4000];
	struct tl_reasm *r = make_table(4, 8, SEC);
	struct out o;

	(void)state;
	memset(data, 9, sizeof(data));
	/* Two different ends. */
	assert_int_equal(add(r, 4, 1, addr_a, data, 1000, 1000, false, T0, NULL, &o), TL_REASON_OK);
	assert_int_equal(
	        add(r, 4, 1, addr_a, data, 1000, 1008, false, T0, NULL, &o), TL_REASON_FRAG_BAD);
	assert_int_equal(tl_reasm_in_progress(r), 0);
	/* Data beyond the known end. */
	assert_int_equal(add(r, 4, 2, addr_a, data, 1000, 1000, false, T0, NULL, &o), TL_REASON_OK);
	assert_int_equal(
	        add(r, 4, 2, addr_a, data, 1600, 1000, true, T0, NULL, &o), TL_REASON_FRAG_BAD);
	assert_int_equal(tl_reasm_in_progress(r), 0);
	/* An end before data already received. */
	assert_int_equal(add(r, 4, 3, addr_a, data, 2000, 1000, true, T0, NULL, &o), TL_REASON_OK);
	assert_int_equal(
	        add(r, 4, 3, addr_a, data, 1000, 500, false, T0, NULL, &o), TL_REASON_FRAG_BAD);
	assert_int_equal(tl_reasm_in_progress(r), 0);
	tl_reasm_free(r);
}

static void
test_reasm_malformed_fragment_frag_bad(void **state)
{
	uint8_t data[64] = {0};
	struct tl_reasm *r = make_table(4, 8, SEC);
	struct tl_reasm_drops d = {0};
	struct tl_l3_view v;
	const uint8_t *p;
	uint32_t len;

	(void)state;
	v = frag(4, 1, addr_a, data, 4, 8, true); /* offset not a multiple of 8 */
	assert_int_equal(tl_reasm_add(r, &v, T0, &d, &p, &len), TL_REASON_FRAG_BAD);
	v = frag(4, 1, addr_a, data, 8, 12, true); /* non-last length not a multiple of 8 */
	assert_int_equal(tl_reasm_add(r, &v, T0, &d, &p, &len), TL_REASON_FRAG_BAD);
	v = frag(4, 1, addr_a, data, 8, 0, true); /* empty non-last */
	assert_int_equal(tl_reasm_add(r, &v, T0, &d, &p, &len), TL_REASON_FRAG_BAD);
	v = frag(4, 1, addr_a, data, 0, 40, false); /* offset 0 and last: not a fragment */
	assert_int_equal(tl_reasm_add(r, &v, T0, &d, &p, &len), TL_REASON_FRAG_BAD);
	v = frag(4, 1, addr_a, data, 8, 8, true);
	v.is_fragment = 0;
	assert_int_equal(tl_reasm_add(r, &v, T0, &d, &p, &len), TL_REASON_FRAG_BAD);
	v = frag(4, 1, addr_a, data, 8, 8, true);
	v.ip_version = 5;
	assert_int_equal(tl_reasm_add(r, &v, T0, &d, &p, &len), TL_REASON_FRAG_BAD);
	assert_null(p);
	assert_int_equal(len, 0);
	assert_int_equal(tl_reasm_in_progress(r), 0);
	tl_reasm_free(r);
}

static void
test_reasm_empty_last_fragment_complete(void **state)
{
	uint8_t data[64];
	struct tl_reasm *r = make_table(4, 8, SEC);
	struct out o;

	(void)state;
	rng_state = 11;
	fill_random(data, sizeof(data));
	assert_int_equal(add(r, 4, 1, addr_a, data, 0, 32, true, T0, NULL, &o), TL_REASON_OK);
	assert_int_equal(add(r, 4, 1, addr_a, data, 32, 0, false, T0, NULL, &o), TL_REASON_OK);
	assert_non_null(o.p);
	assert_int_equal(o.len, 32);
	assert_memory_equal(o.p, data, 32);
	/* A last fragment that brings no new bytes but tells where the end is. */
	assert_int_equal(add(r, 4, 2, addr_a, data, 0, 48, true, T0, NULL, &o), TL_REASON_OK);
	assert_int_equal(add(r, 4, 2, addr_a, data, 40, 8, false, T0, NULL, &o), TL_REASON_OK);
	assert_non_null(o.p);
	assert_int_equal(o.len, 48);
	/* Repeated empty last fragment: duplicate. */
	assert_int_equal(add(r, 4, 3, addr_a, data, 48, 0, false, T0, NULL, &o), TL_REASON_OK);
	assert_int_equal(
	        add(r, 4, 3, addr_a, data, 48, 0, false, T0, NULL, &o), TL_REASON_FRAG_DUPLICATE);
	tl_reasm_free(r);
}

/* ---- table capacity and flows ---- */

static void
test_reasm_table_full_dropped(void **state)
{
	uint8_t data[64];
	struct tl_reasm *r = make_table(2, 8, SEC);
	struct tl_reasm_drops d = {0};
	struct out o;

	(void)state;
	memset(data, 4, sizeof(data));
	assert_int_equal(add(r, 4, 1, addr_a, data, 0, 8, true, T0, &d, &o), TL_REASON_OK);
	assert_int_equal(add(r, 4, 2, addr_a, data, 0, 8, true, T0 + MS, &d, &o), TL_REASON_OK);
	assert_int_equal(add(r, 4, 3, addr_a, data, 0, 8, true, T0 + 2 * MS, &d, &o),
	        TL_REASON_FRAG_TABLE_FULL);
	assert_int_equal(tl_reasm_in_progress(r), 2);
	/* Fragments of datagrams in progress are still accepted when full. */
	assert_int_equal(
	        add(r, 4, 1, addr_a, data, 8, 8, false, T0 + 3 * MS, &d, &o), TL_REASON_OK);
	assert_non_null(o.p);
	/* The completed slot is free again. */
	assert_int_equal(add(r, 4, 3, addr_a, data, 0, 8, true, T0 + 4 * MS, &d, &o), TL_REASON_OK);
	assert_int_equal(add(r, 4, 4, addr_a, data, 0, 8, true, T0 + 5 * MS, &d, &o),
	        TL_REASON_FRAG_TABLE_FULL);
	assert_int_equal(d.n[TL_REASON_FRAG_TIMEOUT], 0);
	/* Once the oldest has expired, it is evicted (counted) for the newcomer. */
	assert_int_equal(
	        add(r, 4, 4, addr_a, data, 0, 8, true, T0 + MS + SEC, &d, &o), TL_REASON_OK);
	assert_int_equal(d.n[TL_REASON_FRAG_TIMEOUT], 1);
	assert_int_equal(tl_reasm_in_progress(r), 2);
	tl_reasm_free(r);
}

static void
test_reasm_interleaved_flows_complete(void **state)
{
	enum { NFLOW = 12, LEN = 6001, STEP = 1000 };
	static uint8_t data[NFLOW][LEN];
	uint8_t srcs[NFLOW][16];
	uint32_t offs[16], lens[16], n;
	struct tl_reasm *r = make_table(NFLOW, 16, SEC);
	struct tl_reasm_drops d = {0};
	unsigned done[NFLOW] = {0};
	struct out o;

	(void)state;
	rng_state = 12;
	n = split(LEN, STEP, offs, lens);
	for (int f = 0; f < NFLOW; f++) {
		fill_random(data[f], LEN);
		memset(srcs[f], 0, 16);
		/* Flows share ids and sources in pairs: only the full key tells them apart.
		 * Flows 0/1 have the same id and the same address bytes, IPv4 vs IPv6. */
		srcs[f][0] = 10;
		srcs[f][3] = (uint8_t)(f / 4);
	}
	for (uint32_t k = 0; k < n; k++) {
		for (int f = 0; f < NFLOW; f++) {
			uint32_t i = (k + (uint32_t)f) % n; /* a different order per flow */
			uint8_t ver = f % 2 ? 6 : 4;
			uint32_t id = (uint32_t)(f % 4 < 2 ? 77 : f);

			assert_int_equal(add(r, ver, id, srcs[f], data[f], offs[i], lens[i],
			                         offs[i] + lens[i] < LEN, T0, &d, &o),
			        TL_REASON_OK);
			if (o.p) {
				assert_int_equal(k, n - 1);
				assert_int_equal(o.len, LEN);
				assert_memory_equal(o.p, data[f], LEN);
				done[f]++;
			}
		}
	}
	for (int f = 0; f < NFLOW; f++)
		assert_int_equal(done[f], 1);
	assert_int_equal(tl_reasm_in_progress(r), 0);
	tl_reasm_free(r);
}

static void
test_reasm_slot_reuse_after_completion_ok(void **state)
{
	uint8_t a[2000], b[2000];
	struct tl_reasm *r = make_table(1, 4, SEC);
	struct tl_reasm_drops d = {0};
	const uint8_t *first;
	struct out o;

	(void)state;
	rng_state = 13;
	fill_random(a, sizeof(a));
	fill_random(b, sizeof(b));
	for (int round = 0; round < 50; round++) {
		const uint8_t *src = round & 1 ? b : a;

		assert_int_equal(
		        add(r, 4, 1, addr_a, src, 1000, 1000, false, T0, &d, &o), TL_REASON_OK);
		assert_int_equal(
		        add(r, 4, 1, addr_a, src, 0, 1000, true, T0, &d, &o), TL_REASON_OK);
		assert_non_null(o.p);
		first = o.p;
		/* Valid until the next call: reading it now is fine and still intact. */
		assert_int_equal(tl_reasm_in_progress(r), 0);
		assert_memory_equal(first, src, 2000);
	}
	/* The only slot is busy with a different datagram: table full. */
	assert_int_equal(add(r, 4, 1, addr_a, a, 0, 1000, true, T0, &d, &o), TL_REASON_OK);
	assert_int_equal(
	        add(r, 4, 2, addr_a, a, 0, 1000, true, T0, &d, &o), TL_REASON_FRAG_TABLE_FULL);
	/* Same id again after completion: a new datagram, not a duplicate. */
	assert_int_equal(add(r, 4, 1, addr_a, a, 1000, 1000, false, T0, &d, &o), TL_REASON_OK);
	assert_non_null(o.p);
	assert_int_equal(add(r, 4, 1, addr_a, a, 1000, 1000, false, T0, &d, &o), TL_REASON_OK);
	assert_null(o.p);
	assert_int_equal(tl_reasm_in_progress(r), 1);
	assert_int_equal(tl_reasm_expire(r, UINT64_MAX, &d), 1);
	tl_reasm_free(r);
}

/* ---- randomized property test ---- */

struct pfrag {
	uint16_t dg;
	uint32_t off, len;
	bool more;
	bool extra; /* duplicate or re-split copy */
};

static void
test_reasm_random_fragments_each_datagram_once(void **state)
{
	enum { NDG = 48, ROUNDS = 6, MAXF = 8192 };
	static uint8_t data[NDG][65535];
	static struct pfrag per[NDG][1024];
	static struct pfrag all[NDG * 1024];
	static uint8_t cov[NDG][65535];
	uint32_t ncov[NDG];
	bool has_last[NDG];
	uint32_t dlen[NDG], nper[NDG], cursor[NDG], ntotal;
	unsigned done[NDG];
	uint8_t srcs[NDG][16];
	struct tl_reasm *r = make_table(NDG, MAXF, 5 * SEC);
	struct tl_reasm_drops d = {0};
	uint64_t dups = 0, dup_expected = 0;

	(void)state;
	rng_state = 0x5eed;
	for (int round = 0; round < ROUNDS; round++) {
		ntotal = 0;
		for (uint32_t g = 0; g < NDG; g++) {
			uint32_t len = 16 + rng() % (65535 - 15), off = 0, n = 0, last_pos;
			struct pfrag *p = per[g];

			dlen[g] = len;
			fill_random(data[g], len);
			memset(srcs[g], 0, 16);
			srcs[g][0] = (uint8_t)round;
			srcs[g][1] = (uint8_t)g;
			/* Random fragment sizes (multiples of 8), at least two fragments. */
			while (off < len) {
				uint32_t sz = 8 * (1 + rng() % 256);

				if (off == 0 && sz >= len)
					sz = (len - 1) / 8 * 8;
				if (off + sz >= len)
					sz = len - off;
				p[n++] =
				        (struct pfrag){(uint16_t)g, off, sz, off + sz < len, false};
				off += sz;
			}
			/* Shuffle the originals. */
			for (uint32_t i = n; i > 1; i--) {
				uint32_t j = rng() % i;
				struct pfrag t = p[i - 1];

				p[i - 1] = p[j];
				p[j] = t;
			}
			/*
			 * Extras go strictly before the last original, so completion happens
			 * exactly there: exact duplicates of an original already sent, and
			 * re-split copies (identical bytes) that do not touch the last
			 * original's bytes.
			 */
			last_pos = n - 1;
			for (uint32_t e = rng() % 6; e > 0 && last_pos > 0; e--) {
				uint32_t at = 1 + rng() % last_pos; /* insert before index `at` */
				struct pfrag x;

				if (rng() % 2) {
					x = p[rng() % at];
					dup_expected++;
				} else {
					const struct pfrag *lastf = &p[last_pos];
					uint32_t lo = 8 * (rng() % ((len + 7) / 8));
					uint32_t hi = lo + 8 * (1 + rng() % 64);

					if (hi > len)
						hi = len;
					/* Keep clear of the last original's bytes. */
					if (lo < lastf->off + lastf->len && hi > lastf->off)
						continue;
					x = (struct pfrag){
					        (uint16_t)g, lo, hi - lo, hi < len, false};
					if (x.more && x.len % 8)
						continue;
					if (x.off == 0 && !x.more)
						continue;
				}
				x.extra = true;
				memmove(&p[at + 1], &p[at], (n - at) * sizeof(*p));
				p[at] = x;
				n++;
				last_pos++;
			}
			assert_true(n < 1024);
			nper[g] = n;
			cursor[g] = 0;
			done[g] = 0;
		}
		/* Random merge of the per-datagram sequences (each keeps its order). */
		for (;;) {
			uint32_t live = 0, pick, g;

			for (g = 0; g < NDG; g++)
				live += cursor[g] < nper[g];
			if (!live)
				break;
			pick = rng() % live;
			for (g = 0; g < NDG; g++) {
				if (cursor[g] < nper[g] && pick-- == 0)
					break;
			}
			all[ntotal++] = per[g][cursor[g]++];
		}
		for (uint32_t g = 0; g < NDG; g++) {
			memset(cov[g], 0, dlen[g]);
			ncov[g] = 0;
			has_last[g] = false;
		}
		for (uint32_t k = 0; k < ntotal; k++) {
			const struct pfrag *f = &all[k];
			uint8_t ver = f->dg % 3 ? 4 : 6, *c = cov[f->dg];
			uint32_t fresh = 0;
			bool dup, complete;
			struct out o;
			enum tl_reason rc;

			/* Byte-level model: nothing new (and no news about the end) is a
			 * duplicate; completion is full coverage plus a known end. */
			for (uint32_t b = f->off; b < f->off + f->len; b++)
				fresh += !c[b];
			dup = fresh == 0 && (f->more || has_last[f->dg]);
			if (!dup) {
				memset(c + f->off, 1, f->len);
				ncov[f->dg] += fresh;
				has_last[f->dg] |= !f->more;
			}
			complete = !dup && has_last[f->dg] && ncov[f->dg] == dlen[f->dg];

			rc = add(r, ver, 1000u + f->dg, srcs[f->dg], data[f->dg], f->off, f->len,
			        f->more, T0 + (uint64_t)round * SEC, &d, &o);
			assert_int_equal(rc, dup ? TL_REASON_FRAG_DUPLICATE : TL_REASON_OK);
			dups += dup;
			assert_int_equal(o.p != NULL, complete);
			if (o.p) {
				assert_false(f->extra);
				assert_int_equal(o.len, dlen[f->dg]);
				assert_memory_equal(o.p, data[f->dg], o.len);
				done[f->dg]++;
			}
		}
		for (uint32_t g = 0; g < NDG; g++)
			assert_int_equal(done[g], 1);
		assert_int_equal(tl_reasm_in_progress(r), 0);
	}
	/* Every exact duplicate was reported (re-split copies may also be). */
	assert_true(dups >= dup_expected);
	assert_true(dup_expected > 0);
	assert_int_equal(tl_reasm_expire(r, UINT64_MAX, &d), 0);
	for (int i = 0; i < TL_REASON_MAX; i++)
		assert_int_equal(d.n[i], 0);
	tl_reasm_free(r);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_reasm_create_bad_args_einval),
	        cmocka_unit_test(test_reasm_opts_table_matches_conf),
	        cmocka_unit_test(test_reasm_in_order_complete),
	        cmocka_unit_test(test_reasm_reverse_order_complete),
	        cmocka_unit_test(test_reasm_random_order_complete),
	        cmocka_unit_test(test_reasm_ipv4_64k_datagram_45_fragments_complete),
	        cmocka_unit_test(test_reasm_ipv4_64k_datagram_46th_fragment_too_many),
	        cmocka_unit_test(test_reasm_ipv6_fragments_frames_complete),
	        cmocka_unit_test(test_reasm_missing_fragment_expire_timeout),
	        cmocka_unit_test(test_reasm_expired_on_add_counted_timeout),
	        cmocka_unit_test(test_reasm_expire_max_at_shutdown_all_timeout),
	        cmocka_unit_test(test_reasm_duplicate_fragment_ignored_counted),
	        cmocka_unit_test(test_reasm_overlap_same_bytes_accepted),
	        cmocka_unit_test(test_reasm_overlap_different_bytes_dropped),
	        cmocka_unit_test(test_reasm_past_65535_too_big),
	        cmocka_unit_test(test_reasm_more_than_max_frags_too_many),
	        cmocka_unit_test(test_reasm_conflicting_last_fragment_frag_bad),
	        cmocka_unit_test(test_reasm_malformed_fragment_frag_bad),
	        cmocka_unit_test(test_reasm_empty_last_fragment_complete),
	        cmocka_unit_test(test_reasm_table_full_dropped),
	        cmocka_unit_test(test_reasm_interleaved_flows_complete),
	        cmocka_unit_test(test_reasm_slot_reuse_after_completion_ok),
	        cmocka_unit_test(test_reasm_random_fragments_each_datagram_once),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
