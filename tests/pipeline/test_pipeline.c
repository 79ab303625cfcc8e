/* SPDX-License-Identifier: BSD-3-Clause */
/* The per-worker pipeline glue: frames in, events and counters out. Decode, reassembly
 * and extraction have their own tests; these check how the pieces are joined. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tl_cksum.h"
#include "tl_pipeline.h"
#include "tl_test_schema.h"

static const uint8_t src4[4] = {198, 18, 1, 1}, dst4[4] = {198, 18, 0, 1};

static struct tl_schema *schema;
static struct tl_pipeline_conf conf;

struct seen {
	unsigned n;
	enum tl_reason verdict[64];
	char raw[64][128];
	bool is_error[64];
	char ids[64][128]; /* matched pattern ids, comma-joined, as the sink saw them */
	uint8_t severity[64];
};

static void
sink(void *arg, const struct tl_event *ev, enum tl_reason v)
{
	struct seen *s = arg;

	if (s->n < 64) {
		s->verdict[s->n] = v;
		s->is_error[s->n] = ev->is_error;
		snprintf(s->raw[s->n], sizeof(s->raw[0]), "%.*s", (int)ev->raw_len,
				(const char *)ev->raw);
		s->ids[s->n][0] = '\0';
		s->severity[s->n] = ev->cls_db ? ev->cls.severity : 0xff;
		for (unsigned i = 0; ev->cls_db && i < ev->cls.n; i++) {
			const struct tl_classify_pattern *p =
					tl_classify_db_pattern(ev->cls_db, ev->cls.ids[i]);
			size_t l = strlen(s->ids[s->n]);

			snprintf(s->ids[s->n] + l, sizeof(s->ids[0]) - l, "%s%s", i ? "," : "",
					p->id);
		}
	}
	s->n++;
}

static void
wr16(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* Ethernet + IPv4 + (part of) a UDP datagram. @p frag_off in bytes; @p more: MF. */
static uint32_t
ipv4_frame(uint8_t *f, const uint8_t *l4, uint32_t l4_len, uint16_t id, uint32_t frag_off,
		bool more)
{
	uint8_t *ip = f + 14;
	uint16_t ck;

	memset(f, 0, 34);
	wr16(f + 12, 0x0800);
	ip[0] = 0x45;
	wr16(ip + 2, 20 + l4_len);
	wr16(ip + 4, id);
	wr16(ip + 6, (more ? 0x2000 : 0) | (frag_off / 8));
	ip[8] = 64;
	ip[9] = 17;
	memcpy(ip + 12, src4, 4);
	memcpy(ip + 16, dst4, 4);
	ck = tl_cksum(ip, 20);
	memcpy(ip + 10, &ck, 2);
	memcpy(ip + 20, l4, l4_len);
	return 34 + l4_len;
}

/* A whole UDP datagram (header + payload) with a valid checksum. */
static uint32_t
udp_datagram(uint8_t *u, uint16_t dport, const char *payload)
{
	uint32_t len = (uint32_t)strlen(payload);
	uint16_t ck;

	wr16(u, 40000);
	wr16(u + 2, dport);
	wr16(u + 4, 8 + len);
	u[6] = u[7] = 0;
	memcpy(u + 8, payload, len);
	ck = tl_cksum_l4(src4, dst4, 4, 17, u, 8 + len);
	if (ck == 0)
		ck = 0xffff;
	memcpy(u + 6, &ck, 2);
	return 8 + len;
}

static int
setup(void **state)
{
	static struct tl_schema_def def;
	char msg[256];

	(void)state;
	/* just the columns the glue looks at: the event's identity, time and error */
	memset(&def, 0, sizeof(def));
	tl_test_add_col(&def, "query_id", "query_id", TL_COL_STRING, true, 0);
	tl_test_add_col(&def, "event_time", "timestamp", TL_COL_DATETIME, true, 0);
	tl_test_add_col(&def, "error", "metadata.error", TL_COL_ANY, false, 0);
	tl_test_set_roles(&def, "event_time", "error", "query_id");
	conf.limits.max_event_size = 4096;
	conf.limits.max_depth = 8;
	conf.limits.max_string = 1024;
	conf.limits.max_extra = 8;
	conf.reasm.max_flows = 4;
	conf.reasm.max_frags = 64;
	conf.reasm.timeout_ns = 1000000000ull;
	return tl_schema_compile(&def, &conf.limits, &schema, msg, sizeof(msg));
}

static int
teardown(void **state)
{
	(void)state;
	tl_schema_free(schema);
	return 0;
}

#define EV_OK "{\"query_id\":\"q1\",\"timestamp\":\"2026-11-21T05:00:00.123Z\"}"
#define EV_ERR                                                                                 \
	"{\"query_id\":\"q2\",\"timestamp\":\"2026-11-21T05:00:01Z\",\"metadata\":{\"error\":"   \
	"\"java.io.IOException: Could not read footer\"}}"
#define EV_NOID "{\"timestamp\":\"2026-11-21T05:00:00Z\"}"

static void
test_pipeline_init_bad_args_einval(void **state)
{
	static struct tl_pipeline_worker w;
	uint16_t port = 5170;

	(void)state;
	assert_int_equal(tl_pipeline_worker_init(NULL, &conf, schema, &port, 1, NULL, NULL), -EINVAL);
	assert_int_equal(tl_pipeline_worker_init(&w, &conf, NULL, &port, 1, NULL, NULL), -EINVAL);
	assert_int_equal(tl_pipeline_worker_init(&w, &conf, schema, &port, 0, NULL, NULL), -EINVAL);
	tl_pipeline_worker_fini(NULL);
}

static void
test_pipeline_ndjson_lines_each_judged(void **state)
{
	static struct tl_pipeline_worker w;
	static uint8_t udp[8192], frame[9000];
	struct seen s = {0};
	uint16_t port = 5170;
	uint32_t n;

	(void)state;
	assert_int_equal(tl_pipeline_worker_init(&w, &conf, schema, &port, 1, sink, &s), 0);
	/* CRLF line ends, blank lines and a missing final newline are all fine. */
	n = udp_datagram(udp, 5170, EV_OK "\r\n\n" EV_ERR "\n" EV_NOID "\n\n{\"query_id\":" "\n" EV_OK);
	n = ipv4_frame(frame, udp, n, 1, 0, false);
	tl_pipeline_rx(&w, frame, n, 0, 1);
	assert_int_equal(s.n, 5);
	assert_int_equal(s.verdict[0], TL_REASON_OK);
	assert_false(s.is_error[0]);
	assert_int_equal(s.verdict[1], TL_REASON_OK);
	assert_true(s.is_error[1]);
	assert_int_equal(s.verdict[2], TL_REASON_EV_MISSING_FIELD);
	assert_string_equal(s.raw[2], EV_NOID); /* raw bytes kept for the dead-letter table */
	assert_int_equal(s.verdict[3], TL_REASON_EV_JSON_SYNTAX);
	assert_string_equal(s.raw[3], "{\"query_id\":");
	assert_int_equal(s.verdict[4], TL_REASON_OK);
	assert_int_equal(w.cnt.rx_frames, 1);
	assert_int_equal(w.cnt.rx_bytes, n);
	assert_int_equal(w.cnt.udp_datagrams, 1);
	assert_int_equal(w.cnt.events_valid, 3);
	assert_int_equal(w.cnt.events_error, 1);
	assert_int_equal(w.cnt.events_rejected, 2);
	assert_int_equal(w.cnt.reason[TL_REASON_EV_MISSING_FIELD], 1);
	assert_int_equal(w.cnt.reason[TL_REASON_EV_JSON_SYNTAX], 1);
	assert_int_equal(w.cnt.event_bytes, 2 * strlen(EV_OK) + strlen(EV_ERR));
	tl_pipeline_worker_fini(&w);
}

static struct tl_classify_pattern_def *
pattern(struct tl_classify_conf *c, const char *id, const char *regex, const char *field,
		enum tl_classify_severity sev, enum tl_classify_effect eff)
{
	struct tl_classify_pattern_def *p = &c->patterns[c->n_patterns++];

	memset(p, 0, sizeof(*p));
	snprintf(p->id, sizeof(p->id), "%s", id);
	snprintf(p->regex, sizeof(p->regex), "%s", regex);
	snprintf(p->category, sizeof(p->category), "c");
	snprintf(p->fields[0], sizeof(p->fields[0]), "%s", field);
	p->n_fields = 1;
	p->severity = (int)sev - 1;
	p->effect = (int)eff;
	return p;
}

/*
 * With a live generation every accepted event is classified: its pattern ids and
 * severity reach the sink, a pattern with effect error makes an event an error event
 * (here one whose error column is empty), a tag does not, and rejected lines are not
 * scanned.
 */
static void
test_pipeline_classified_with_live_generation(void **state)
{
	static struct tl_pipeline_worker w;
	static struct tl_classify_conf c;
	static uint8_t udp[8192], frame[9000];
	struct tl_live_gen *g = NULL;
	struct tl_live *live = NULL;
	struct seen s = {0};
	uint16_t port = 5170;
	char err[256];
	uint32_t n;

	(void)state;
	pattern(&c, "io.footer", "Could not read footer", "error", TL_CLASSIFY_SEV_ERROR,
			TL_CLASSIFY_EFFECT_ERROR);
	pattern(&c, "id.slow", "^slow-", "query_id", TL_CLASSIFY_SEV_WARNING, TL_CLASSIFY_EFFECT_TAG);
	pattern(&c, "id.kill", "^killed-", "query_id", TL_CLASSIFY_SEV_CRITICAL,
			TL_CLASSIFY_EFFECT_ERROR);
	assert_int_equal(tl_live_gen_build(&c, schema, 1, &g, err, sizeof(err)), 0);
	assert_int_equal(tl_live_create(1, g, &live), 0);
	assert_int_equal(tl_pipeline_worker_init(&w, &conf, schema, &port, 1, sink, &s), 0);
	tl_pipeline_set_live(&w, live, 0);
	tl_pipeline_online(&w);
	n = udp_datagram(udp, 5170,
			EV_OK "\n" EV_ERR "\n"
			"{\"query_id\":\"slow-1\",\"timestamp\":\"2026-11-21T05:00:02Z\"}\n"
			"{\"query_id\":\"killed-1\",\"timestamp\":\"2026-11-21T05:00:03Z\"}\n"
			EV_NOID "\n");
	n = ipv4_frame(frame, udp, n, 1, 0, false);
	tl_pipeline_rx(&w, frame, n, 0, 1);
	tl_pipeline_quiescent(&w);
	assert_int_equal(s.n, 5);
	assert_string_equal(s.ids[0], "");
	assert_int_equal(s.severity[0], TL_CLASSIFY_SEV_NONE);
	assert_false(s.is_error[0]);
	assert_string_equal(s.ids[1], "io.footer");
	assert_int_equal(s.severity[1], TL_CLASSIFY_SEV_ERROR);
	assert_true(s.is_error[1]);
	assert_string_equal(s.ids[2], "id.slow"); /* a tag: not an error event */
	assert_int_equal(s.severity[2], TL_CLASSIFY_SEV_WARNING);
	assert_false(s.is_error[2]);
	assert_string_equal(s.ids[3], "id.kill"); /* no error column, but an error pattern */
	assert_true(s.is_error[3]);
	assert_int_equal(s.verdict[4], TL_REASON_EV_MISSING_FIELD);
	assert_int_equal(s.severity[4], 0xff); /* rejected: never classified */
	assert_int_equal(w.cnt.events_valid, 4);
	assert_int_equal(w.cnt.events_error, 2);
	assert_int_equal(w.cnt.events_matched, 3);
	assert_int_equal(w.cnt.classify_failed, 0);
	tl_pipeline_offline(&w);
	tl_pipeline_worker_fini(&w);
	tl_live_destroy(live);
}

static void
test_pipeline_other_port_ignored_not_parsed(void **state)
{
	static struct tl_pipeline_worker w;
	static uint8_t udp[512], frame[600];
	struct seen s = {0};
	uint16_t ports[2] = {5170, 6000};
	uint32_t n;

	(void)state;
	assert_int_equal(tl_pipeline_worker_init(&w, &conf, schema, ports, 2, sink, &s), 0);
	n = ipv4_frame(frame, udp, udp_datagram(udp, 53, EV_OK), 2, 0, false);
	tl_pipeline_rx(&w, frame, n, 0, 1);
	n = ipv4_frame(frame, udp, udp_datagram(udp, 6000, EV_OK), 3, 0, false);
	tl_pipeline_rx(&w, frame, n, 0, 1);
	assert_int_equal(w.cnt.reason[TL_REASON_IGN_PORT], 1);
	assert_int_equal(s.n, 1); /* only the second port's event */
	assert_int_equal(w.cnt.events_valid, 1);
	tl_pipeline_worker_fini(&w);
}

static void
test_pipeline_bad_udp_checksum_counted_no_events(void **state)
{
	static struct tl_pipeline_worker w;
	static uint8_t udp[512], frame[600];
	struct seen s = {0};
	uint16_t port = 5170;
	uint32_t n;

	(void)state;
	assert_int_equal(tl_pipeline_worker_init(&w, &conf, schema, &port, 1, sink, &s), 0);
	n = udp_datagram(udp, 5170, EV_OK);
	udp[6] ^= 0x5a;
	n = ipv4_frame(frame, udp, n, 4, 0, false);
	tl_pipeline_rx(&w, frame, n, 0, 1);
	assert_int_equal(w.cnt.reason[TL_REASON_PKT_UDP_BAD_CHECKSUM], 1);
	assert_int_equal(s.n, 0);
	/* The NIC's word is taken for unfragmented datagrams. */
	tl_pipeline_rx(&w, frame, n, TL_HW_IP_CKSUM_GOOD | TL_HW_L4_CKSUM_GOOD, 1);
	assert_int_equal(s.n, 1);
	/* A truncated frame is counted by its reason. */
	tl_pipeline_rx(&w, frame, 20, 0, 1);
	assert_int_equal(w.cnt.reason[TL_REASON_PKT_IPV4_TRUNCATED], 1);
	assert_int_equal(w.cnt.rx_frames, 3);
	tl_pipeline_worker_fini(&w);
}

static void
test_pipeline_fragments_reassembled_then_parsed(void **state)
{
	static struct tl_pipeline_worker w;
	static uint8_t udp[4096], frame[2000];
	static char payload[3000];
	struct seen s = {0};
	uint16_t port = 5170;
	uint32_t n, off;
	size_t p = 0;

	(void)state;
	assert_int_equal(tl_pipeline_worker_init(&w, &conf, schema, &port, 1, sink, &s), 0);
	/* Three events in one 2.5 KB datagram, sent as 1480-byte fragments, last first. */
	for (int i = 0; i < 3; i++)
		p += (size_t)snprintf(payload + p, sizeof(payload) - p,
				"{\"query_id\":\"q%d\",\"timestamp\":\"2026-11-21T05:00:00Z\","
				"\"pad\":\"%0700d\"}\n",
				i, i);
	n = udp_datagram(udp, 5170, payload);
	off = 1480;
	tl_pipeline_rx(&w, frame, ipv4_frame(frame, udp + off, n - off, 9, off, false), 0, 10);
	assert_int_equal(s.n, 0);
	assert_int_equal(tl_reasm_in_progress(w.reasm), 1);
	tl_pipeline_rx(&w, frame, ipv4_frame(frame, udp, off, 9, 0, true), 0, 11);
	assert_int_equal(s.n, 3);
	assert_int_equal(w.cnt.events_valid, 3);
	assert_int_equal(w.cnt.reassembled, 1);
	assert_int_equal(w.cnt.udp_datagrams, 1);

	/* A datagram whose tail never comes is counted when it expires. */
	tl_pipeline_rx(&w, frame, ipv4_frame(frame, udp, off, 10, 0, true), 0, 20);
	tl_pipeline_expire(&w, 30); /* not yet */
	assert_int_equal(w.cnt.reason[TL_REASON_FRAG_TIMEOUT], 0);
	tl_pipeline_expire(&w, UINT64_MAX);
	assert_int_equal(w.cnt.reason[TL_REASON_FRAG_TIMEOUT], 1);
	assert_int_equal(s.n, 3);
	tl_pipeline_worker_fini(&w);
}

struct ticks {
	unsigned n;
	uint64_t last;
};

static void
count_tick(void *arg, uint64_t now)
{
	struct ticks *t = arg;

	t->n++;
	t->last = now;
}

static void
test_pipeline_tick_expires_then_reaches_sink(void **state)
{
	static struct tl_pipeline_worker w;
	static uint8_t udp[4096], frame[2000];
	struct ticks t = {0};
	uint16_t port = 5170;
	uint32_t n;

	(void)state;
	assert_int_equal(tl_pipeline_worker_init(&w, &conf, schema, &port, 1, NULL, &t), 0);
	tl_pipeline_tick(&w, 5); /* no tick callback yet: only expiry */
	assert_int_equal(t.n, 0);
	tl_pipeline_set_tick(&w, count_tick);
	n = udp_datagram(udp, 5170, EV_OK "\n" EV_OK "\n" EV_OK "\n" EV_OK "\n" EV_OK "\n" EV_OK
			"\n" EV_OK "\n" EV_OK "\n" EV_OK "\n" EV_OK "\n" EV_OK "\n" EV_OK "\n" EV_OK
			"\n" EV_OK "\n" EV_OK "\n" EV_OK "\n" EV_OK "\n" EV_OK "\n" EV_OK "\n" EV_OK
			"\n" EV_OK "\n" EV_OK "\n" EV_OK "\n" EV_OK "\n" EV_OK "\n" EV_OK);
	assert_true(n > 1480);
	/* first fragment only: still in progress */
	tl_pipeline_rx(&w, frame, ipv4_frame(frame, udp, 1480, 77, 0, true), 0, 100);
	tl_pipeline_tick(&w, 200);
	assert_int_equal(t.n, 1);
	assert_int_equal(t.last, 200);
	assert_int_equal(w.cnt.reason[TL_REASON_FRAG_TIMEOUT], 0);
	tl_pipeline_tick(&w, 100 + conf.reasm.timeout_ns + 1);
	assert_int_equal(w.cnt.reason[TL_REASON_FRAG_TIMEOUT], 1);
	tl_pipeline_tick(&w, UINT64_MAX); /* shutdown: the sink is told to flush everything */
	assert_int_equal(t.n, 3);
	assert_true(t.last == UINT64_MAX);
	tl_pipeline_worker_fini(&w);
}

static void
test_pipeline_counters_add_and_print_every_reason(void **state)
{
	struct tl_counters a, b;
	char line[128], *buf = NULL;
	size_t len = 0;
	FILE *f;

	(void)state;
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	a.events_valid = 2;
	a.reason[TL_REASON_EV_JSON_UTF8] = 3;
	b.events_valid = 5;
	b.rx_missed = 7;
	b.reason[TL_REASON_MAX - 1] += 4; /* the last reason: summed like the rest */
	tl_counters_add(&a, &b);
	assert_int_equal(a.events_valid, 7);
	assert_int_equal(a.rx_missed, 7);
	assert_int_equal(a.reason[TL_REASON_MAX - 1], 4);
	f = open_memstream(&buf, &len);
	assert_non_null(f);
	assert_int_equal(tl_counters_print_figures(f, &a), 0);
	fclose(f);
	assert_non_null(strstr(buf, "figure events_valid 7\n"));
	assert_non_null(strstr(buf, "figure rejected_json_utf8 3\n"));
	snprintf(line, sizeof(line), "figure rejected_%s 4\n",
			tl_reason_name((enum tl_reason)(TL_REASON_MAX - 1)));
	assert_non_null(strstr(buf, line));
	assert_non_null(strstr(buf, "figure rejected_frag_timeout 0\n"));
	assert_non_null(strstr(buf, "figure ignored_port 0\n"));
	assert_null(strstr(buf, "rejected_ok"));
	free(buf);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pipeline_init_bad_args_einval),
		cmocka_unit_test(test_pipeline_ndjson_lines_each_judged),
		cmocka_unit_test(test_pipeline_other_port_ignored_not_parsed),
		cmocka_unit_test(test_pipeline_classified_with_live_generation),
		cmocka_unit_test(test_pipeline_bad_udp_checksum_counted_no_events),
		cmocka_unit_test(test_pipeline_fragments_reassembled_then_parsed),
		cmocka_unit_test(test_pipeline_tick_expires_then_reaches_sink),
		cmocka_unit_test(test_pipeline_counters_add_and_print_every_reason),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
