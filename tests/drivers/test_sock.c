/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The kernel UDP socket capture driver over loopback (127.0.0.1 and ::1; "::" for the
 * dual-stack case, still only spoken to through loopback). Every case opens the driver
 * on a port found free just before, runs tl_sock_run() in a thread of its own, sends from
 * ordinary client sockets and checks what a real pipeline (the e6data schema) made of it.
 *
 * Events are built from real text: TPC-H queries ($TAPLINE_DATA/tpch) as query_text and
 * loghub Hadoop lines ($TAPLINE_DATA/loghub/Hadoop_2k.log) as metadata.error.
 *
 * Nothing asserts on time: waits are bounded loops ("until N events arrived, at most
 * 10 s") and the assertions are on counts. Senders keep at most one window of datagrams
 * in flight, so a small net.core.rmem_max cannot drop any (except where a test wants
 * drops).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <linux/capability.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "tl_decode.h"
#include "tl_error.h"
#include "tl_frame.h"
#include "tl_live.h"
#include "tl_log.h"
#include "tl_pipeline.h"
#include "tl_reply.h"
#include "tl_sock.h"
#include "tl_test_schema.h"

#define MAX_W 4
#define WAIT_STEP_US 5000
#define WAIT_ROUNDS 2000 /* 10 s */
#define DGRAM_MAX 65536
#define N_TPCH 22
#define MAX_ERR_LINES 256

static struct tl_schema *schema;
static struct tl_pipeline_conf pconf;
static char *tpch[N_TPCH];
static char *hadoop_err[MAX_ERR_LINES];
static unsigned n_hadoop_err;

/* ---- data ---------------------------------------------------------------------------- */

static const char *
data_dir(void)
{
	const char *s = getenv("TAPLINE_DATA");

	return s && s[0] ? s : "../shared/data";
}

static char *
read_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long n;

	if (f == NULL)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
		buf = malloc((size_t)n + 1);
		if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
			free(buf);
			buf = NULL;
		} else if (buf) {
			buf[n] = '\0';
		}
	}
	fclose(f);
	return buf;
}

/* The Hadoop lines that report a failure (ERROR, FATAL, exceptions), CRs stripped. */
static int
load_hadoop(void)
{
	char path[512];
	char *text, *line, *save = NULL;

	snprintf(path, sizeof(path), "%s/loghub/Hadoop_2k.log", data_dir());
	text = read_file(path);
	if (text == NULL)
		return -1;
	for (line = strtok_r(text, "\n", &save); line && n_hadoop_err < MAX_ERR_LINES;
	        line = strtok_r(NULL, "\n", &save)) {
		size_t n = strlen(line);

		if (n && line[n - 1] == '\r')
			line[--n] = '\0';
		if (strstr(line, " ERROR ") || strstr(line, " FATAL ") || strstr(line, "Exception"))
			hadoop_err[n_hadoop_err++] = strdup(line);
	}
	free(text);
	return n_hadoop_err >= 16 ? 0 : -1;
}

/* Append @p s as a JSON string (quoted, escaped) at @p out + *len. */
static void
json_str(char *out, size_t cap, size_t *len, const char *s)
{
	size_t n = *len;

	out[n++] = '"';
	for (; *s && n + 8 < cap; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\') {
			out[n++] = '\\';
			out[n++] = (char)c;
		} else if (c == '\n') {
			out[n++] = '\\';
			out[n++] = 'n';
		} else if (c == '\t') {
			out[n++] = '\\';
			out[n++] = 't';
		} else if (c < 0x20) {
			n += (size_t)snprintf(out + n, cap - n, "\\u%04x", c);
		} else {
			out[n++] = (char)c;
		}
	}
	out[n++] = '"';
	out[n] = '\0';
	*len = n;
}

static void __attribute__((format(printf, 4, 5)))
append(char *out, size_t cap, size_t *len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	*len += (size_t)vsnprintf(out + *len, cap - *len, fmt, ap);
	va_end(ap);
	assert_true(*len < cap);
}

static uint64_t
fnv1a(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

/* What the sender put on the wire, to compare with what the sink saw. */
struct sent {
	uint64_t events, errors, raw_sum, datagrams;
};

/*
 * One NDJSON event with query id @p qid: event @p i picks its TPC-H query, and every
 * third event is a failure with a Hadoop error line. @p pad_to > 0 pads the payload so
 * the line (with its '\n') is exactly that long.
 */
static void
add_event(char *out, size_t cap, size_t *len, const char *qid, unsigned i, size_t pad_to,
        struct sent *st)
{
	const bool failed = i % 3 == 0;
	size_t start = *len;

	append(out, cap, len, "{\"query_id\":");
	json_str(out, cap, len, qid);
	append(out, cap, len,
	        ",\"timestamp\":\"2026-03-01T10:%02u:%02u.%03uZ\",\"event_type\":\"%s\","
	        "\"query_text\":",
	        i / 60 % 60, i % 60, i % 1000, failed ? "failed" : "finished");
	json_str(out, cap, len, tpch[i % N_TPCH]);
	append(out, cap, len,
	        ",\"metadata\":{\"user_id\":\"analyst%u\",\"database\":\"tpch_sf1\","
	        "\"duration_ms\":%u,\"rows_affected\":%u,\"error\":",
	        i % 7, 10 + i * 13 % 9000, i * 31 % 5000);
	if (failed)
		json_str(out, cap, len, hadoop_err[i / 3 % n_hadoop_err]);
	else
		append(out, cap, len, "null");
	append(out, cap, len, "},\"payload\":\"");
	if (pad_to) {
		size_t used = *len - start + 3; /* "}\n after the padding */

		assert_true(pad_to >= used);
		assert_true(*len + (pad_to - used) < cap);
		memset(out + *len, 'x', pad_to - used);
		*len += pad_to - used;
	} else {
		append(out, cap, len, "row group %u", i);
	}
	append(out, cap, len, "\"}");
	if (st) {
		st->events++;
		st->errors += failed;
		st->raw_sum += fnv1a((const uint8_t *)out + start, *len - start);
	}
	append(out, cap, len, "\n");
}

/* A datagram of @p n events "<tag>-c<client>-s<seq>-e<k>". */
static size_t
make_datagram(char *out, size_t cap, const char *tag, unsigned client, unsigned seq, unsigned n,
        struct sent *st)
{
	size_t len = 0;

	for (unsigned k = 0; k < n; k++) {
		char qid[64];

		snprintf(qid, sizeof(qid), "%s-c%u-s%u-e%u", tag, client, seq, k);
		add_event(out, cap, &len, qid, client * 1000 + seq * n + k, 0, st);
	}
	if (st)
		st->datagrams++;
	return len;
}

/* ---- sink ---------------------------------------------------------------------------- */

/* One per worker; counters are read by the test thread while workers run. */
struct sink {
	struct tl_pipeline_worker *w;
	uint64_t events, valid, errors, rejected, raw_sum;
	uint64_t frames_ok, frames_bad, v4, v6;
	uint64_t ticks, final_ticks, final_tick_ns;
	uint64_t pinned_ok, pinned_bad;
	int pin_cpu;
	uint64_t marks;    /* "mark-<n>" events */
	uint64_t mark_max; /* highest n */
	/* read only after the run */
	uint8_t last_version, last_src[16], last_dst[16];
	uint16_t last_sport, last_dport;
	/* shared by all workers: seen[id] for "<tag>-c<c>-s<s>-e<k>" */
	uint32_t *seen;
	unsigned seen_seq, seen_ev, n_seen;
	/* framed */
	uint64_t framed, acks_queued, tx_failed;
};

static struct tl_pipeline_worker g_w[MAX_W];
static struct sink g_sink[MAX_W];

static inline void
inc(uint64_t *c, uint64_t n)
{
	__atomic_fetch_add(c, n, __ATOMIC_RELAXED);
}

static inline uint64_t
get(const uint64_t *c)
{
	return __atomic_load_n(c, __ATOMIC_ACQUIRE);
}

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The frame the pipeline is looking at must be a packet a decoder takes without
 * hardware help: checksums included. */
static void
check_frame(struct sink *sk)
{
	const struct tl_pipeline_worker *w = sk->w;
	struct tl_l3_view l3;
	struct tl_udp_view u;

	if (tl_decode_frame(w->frame, w->frame_len, 0, &l3) != TL_REASON_OK || l3.is_fragment ||
	        tl_decode_udp(&l3, l3.l4, l3.l4_len, false, &u) != TL_REASON_OK) {
		inc(&sk->frames_bad, 1);
		return;
	}
	inc(&sk->frames_ok, 1);
	inc(l3.ip_version == 4 ? &sk->v4 : &sk->v6, 1);
	sk->last_version = l3.ip_version;
	memcpy(sk->last_src, l3.src, 16);
	memcpy(sk->last_dst, l3.dst, 16);
	sk->last_sport = u.sport;
	sk->last_dport = u.dport;
}

static void
sink_event(void *arg, const struct tl_event *ev, enum tl_reason verdict)
{
	struct sink *sk = arg;
	char qid[64] = "";
	unsigned c, s, e, m;

	check_frame(sk);
	if (verdict != TL_REASON_OK) {
		inc(&sk->rejected, 1);
		goto out;
	}
	inc(&sk->valid, 1);
	inc(&sk->errors, ev->is_error);
	inc(&sk->raw_sum, fnv1a(ev->raw, ev->raw_len));
	if (ev->col[0].kind == TL_VAL_STRING && ev->col[0].len < sizeof(qid)) {
		memcpy(qid, ev->col[0].ptr, ev->col[0].len);
		qid[ev->col[0].len] = '\0';
	}
	if (sscanf(qid, "mark-%u", &m) == 1) {
		inc(&sk->marks, 1);
		if (m > get(&sk->mark_max))
			__atomic_store_n(&sk->mark_max, m, __ATOMIC_RELEASE);
	}
	if (sk->seen && strchr(qid, '-') &&
	        sscanf(strchr(qid, '-'), "-c%u-s%u-e%u", &c, &s, &e) == 3) {
		unsigned id = (c * sk->seen_seq + s) * sk->seen_ev + e;

		if (id < sk->n_seen)
			__atomic_fetch_add(&sk->seen[id], 1, __ATOMIC_RELAXED);
	}
out:
	/* Last, with release: a test thread that sees the count sees everything above. */
	__atomic_fetch_add(&sk->events, 1, __ATOMIC_RELEASE);
}

static void
sink_tick(void *arg, uint64_t now)
{
	struct sink *sk = arg;
	cpu_set_t set;

	if (now == UINT64_MAX) {
		inc(&sk->final_ticks, 1);
		__atomic_store_n(&sk->final_tick_ns, now_ns(), __ATOMIC_RELAXED);
		return;
	}
	inc(&sk->ticks, 1);
	if (sk->pin_cpu >= 0) {
		bool ok = pthread_getaffinity_np(pthread_self(), sizeof(set), &set) == 0 &&
		          CPU_COUNT(&set) == 1 && CPU_ISSET(sk->pin_cpu, &set);

		inc(ok ? &sk->pinned_ok : &sk->pinned_bad, 1);
	}
}

static void
workers_init(unsigned n, const uint16_t *ports, unsigned n_ports)
{
	for (unsigned i = 0; i < n; i++) {
		memset(&g_sink[i], 0, sizeof(g_sink[i]));
		g_sink[i].w = &g_w[i];
		g_sink[i].pin_cpu = -1;
		assert_int_equal(tl_pipeline_worker_init(&g_w[i], &pconf, schema, ports, n_ports,
		                         sink_event, &g_sink[i]),
		        0);
		tl_pipeline_set_tick(&g_w[i], sink_tick);
	}
}

static void
workers_fini(unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		tl_pipeline_worker_fini(&g_w[i]);
}

#define SUM(field, n)                                                                              \
	({                                                                                         \
		uint64_t s_ = 0;                                                                   \
		for (unsigned i_ = 0; i_ < (n); i_++)                                              \
			s_ += get(&g_sink[i_].field);                                              \
		s_;                                                                                \
	})

/* Wait (bounded) until the workers' sinks saw @p want events in all. */
static bool
wait_events(unsigned n, uint64_t want)
{
	for (int i = 0; i < WAIT_ROUNDS; i++) {
		if (SUM(events, n) >= want)
			return true;
		usleep(WAIT_STEP_US);
	}
	return false;
}

/* ---- driver run in a thread ---------------------------------------------------------- */

struct runner {
	struct tl_sock *s;
	unsigned n;
	uint64_t idle_ns;
	volatile int stop;
	int rc;
	int done;
	pthread_t t;
};

/* The run in progress: a failed assertion leaves the test without stopping it, and the
 * next test must not reinitialise workers a thread still uses (test_cleanup). */
static struct runner *g_active;

static void *
run_thread(void *arg)
{
	struct runner *r = arg;

	r->rc = tl_sock_run(r->s, g_w, r->idle_ns, &r->stop);
	__atomic_store_n(&r->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void
runner_start(struct runner *r, struct tl_sock *s, uint64_t idle_ns)
{
	memset(r, 0, sizeof(*r));
	r->s = s;
	r->idle_ns = idle_ns;
	assert_int_equal(pthread_create(&r->t, NULL, run_thread, r), 0);
	g_active = r;
}

/* Wait (bounded) for the run to end by itself. */
static bool
runner_wait_done(struct runner *r)
{
	for (int i = 0; i < WAIT_ROUNDS; i++) {
		if (__atomic_load_n(&r->done, __ATOMIC_ACQUIRE))
			return true;
		usleep(WAIT_STEP_US);
	}
	return false;
}

static int
runner_stop(struct runner *r)
{
	g_active = NULL;
	__atomic_store_n(&r->stop, 1, __ATOMIC_RELAXED);
	assert_int_equal(pthread_join(r->t, NULL), 0);
	return r->rc;
}

/* After every test: stop a run a failed assertion left behind. */
static int
test_cleanup(void **state)
{
	(void)state;
	if (g_active != NULL) {
		struct runner *r = g_active;

		g_active = NULL;
		__atomic_store_n(&r->stop, 1, __ATOMIC_RELAXED);
		pthread_join(r->t, NULL);
	}
	return 0;
}

/* ---- sockets ------------------------------------------------------------------------- */

static void
loopback(int family, uint16_t port, struct sockaddr_storage *ss, socklen_t *len)
{
	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)ss;

		a->sin_family = AF_INET;
		a->sin_port = htons(port);
		a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		*len = sizeof(*a);
	} else {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;

		a->sin6_family = AF_INET6;
		a->sin6_port = htons(port);
		a->sin6_addr = in6addr_loopback;
		*len = sizeof(*a);
	}
}

static uint16_t
bound_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	assert_int_equal(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
	return ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
	                                     : ((struct sockaddr_in6 *)&ss)->sin6_port);
}

/* A UDP socket bound to loopback (so its source port is known), with a receive timeout
 * for replies. */
static int
client(int family)
{
	struct sockaddr_storage ss;
	struct timeval tv = {.tv_sec = 5};
	socklen_t len;
	int fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	loopback(family, 0, &ss, &len);
	assert_int_equal(bind(fd, (struct sockaddr *)&ss, len), 0);
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	return fd;
}

static void
send_to(int fd, int family, uint16_t port, const void *buf, size_t n)
{
	struct sockaddr_storage ss;
	socklen_t len;

	loopback(family, port, &ss, &len);
	assert_int_equal(sendto(fd, buf, n, 0, (struct sockaddr *)&ss, len), (ssize_t)n);
}

/* A UDP port free on 127.0.0.1 and ::1 (the kernel's choice, checked on both). */
static uint16_t
free_port(void)
{
	for (int i = 0; i < 64; i++) {
		struct sockaddr_storage ss;
		socklen_t len;
		int fd4 = client(AF_INET), fd6 = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		uint16_t port = bound_port(fd4);
		int ok;

		assert_true(fd6 >= 0);
		loopback(AF_INET6, port, &ss, &len);
		ok = bind(fd6, (struct sockaddr *)&ss, len) == 0;
		close(fd4);
		close(fd6);
		if (ok)
			return port;
	}
	fail_msg("no UDP port free on both loopback addresses");
	return 0;
}

static void
base_conf(struct tl_sock_conf *c, const char *address)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->address, sizeof(c->address), "%s", address);
	c->rcvbuf = 4ull << 20;
	c->batch = 32;
	c->max_datagram = 65535;
	c->tick = 1000000;
}

static struct tl_sock *
open_ok(const struct tl_sock_conf *c, const uint16_t *ports, unsigned n_ports, unsigned n_w)
{
	struct tl_sock *s = NULL;
	char err[256];
	int rc = tl_sock_open(c, ports, n_ports, n_w, &s, err, sizeof(err));

	if (rc != 0)
		fail_msg("tl_sock_open: %s: %s", tl_strerror(rc), err);
	assert_non_null(s);
	return s;
}

static struct tl_counters
stats(struct tl_sock *s)
{
	struct tl_counters c;

	memset(&c, 0, sizeof(c));
	tl_sock_stats(s, &c);
	return c;
}

static char dgram[DGRAM_MAX];

/* ---- options and open errors --------------------------------------------------------- */

static void
test_sock_opts_defaults_documented_values(void **state)
{
	struct tl_sock_conf c;

	(void)state;
	memset(&c, 0xa5, sizeof(c));
	assert_int_equal(tl_opt_defaults(tl_sock_opts, &c), 0);
	assert_string_equal(c.address, "0.0.0.0");
	assert_int_equal(c.rcvbuf, 32ull << 20);
	assert_int_equal(c.batch, 64);
	assert_int_equal(c.max_datagram, 65535);
	assert_int_equal(c.tick, 1000000);
	assert_string_equal(c.cpus, "");
	assert_int_equal(c.busy_budget, 0);
	assert_int_equal(c.busy_usecs, 20);
}

static void
expect_einval(const struct tl_sock_conf *c, const uint16_t *ports, unsigned n_ports, unsigned n_w,
        const char *needle)
{
	struct tl_sock *s = (struct tl_sock *)&s; /* must come back NULL */
	char err[256] = "";

	assert_int_equal(tl_sock_open(c, ports, n_ports, n_w, &s, err, sizeof(err)), -EINVAL);
	assert_null(s);
	if (strstr(err, needle) == NULL)
		fail_msg("error '%s' does not mention '%s'", err, needle);
}

static void
test_sock_open_bad_arguments_einval(void **state)
{
	const uint16_t port = free_port(), zero = 0, dup[2] = {port, port};
	uint16_t many[17];
	struct tl_sock_conf c;

	(void)state;
	for (unsigned i = 0; i < 17; i++)
		many[i] = (uint16_t)(port + i);
	base_conf(&c, "127.0.0.1");
	expect_einval(NULL, &port, 1, 1, "no configuration");
	expect_einval(&c, NULL, 1, 1, "no ports");
	expect_einval(&c, &port, 0, 1, "telemetry ports");
	expect_einval(&c, many, 17, 1, "telemetry ports");
	expect_einval(&c, &port, 1, 0, "workers");
	expect_einval(&c, &port, 1, 1000, "workers");
	expect_einval(&c, &zero, 1, 1, "port 0");
	expect_einval(&c, dup, 2, 1, "twice");
	c.batch = 0;
	expect_einval(&c, &port, 1, 1, "batch");
	c.batch = 1025;
	expect_einval(&c, &port, 1, 1, "batch");
	base_conf(&c, "127.0.0.1");
	c.max_datagram = 0;
	expect_einval(&c, &port, 1, 1, "max_datagram");
	c.max_datagram = 65536;
	expect_einval(&c, &port, 1, 1, "max_datagram");
	base_conf(&c, "127.0.0.1");
	c.rcvbuf = 0;
	expect_einval(&c, &port, 1, 1, "rcvbuf");
	c.rcvbuf = 1ull << 31;
	expect_einval(&c, &port, 1, 1, "rcvbuf");
	base_conf(&c, "127.0.0.1");
	c.tick = 0;
	expect_einval(&c, &port, 1, 1, "tick");
	for (const char *const *a = (const char *const[]){"localhost", "1.2.3", "127.0.0.1 ",
	             "::1::2", "[::1]", "256.0.0.1", NULL};
	        *a; a++) {
		base_conf(&c, *a);
		expect_einval(&c, &port, 1, 1, "not a numeric IPv4 or IPv6 address");
	}
	base_conf(&c, "127.0.0.1");
	memset(c.address, 'a', sizeof(c.address)); /* not terminated */
	expect_einval(&c, &port, 1, 1, "not terminated");
	/* No output handle; NULL-safe close and describe. */
	base_conf(&c, "127.0.0.1");
	assert_int_equal(tl_sock_open(&c, &port, 1, 1, NULL, NULL, 0), -EINVAL);
	tl_sock_close(NULL);
	assert_string_equal(tl_sock_describe(NULL), "socket: not open");
	tl_sock_stats(NULL, NULL);
}

static void
test_sock_open_bad_cpus_einval(void **state)
{
	const uint16_t port = free_port();
	struct tl_sock_conf c;
	cpu_set_t set;
	int outside = -1;

	(void)state;
	for (const char *const *l = (const char *const[]){"a", "1-", "-1", "3-1", "0,,1", "0,",
	             "1 ,2", "99999", "0x1", NULL};
	        *l; l++) {
		base_conf(&c, "127.0.0.1");
		snprintf(c.cpus, sizeof(c.cpus), "%s", *l);
		expect_einval(&c, &port, 1, 1, "capture.socket.cpus");
	}
	/* A CPU this process may not run on (one past the allowed ones, below the limit). */
	assert_int_equal(sched_getaffinity(0, sizeof(set), &set), 0);
	for (int cpu = 0; cpu < CPU_SETSIZE && outside < 0; cpu++)
		if (!CPU_ISSET(cpu, &set))
			outside = cpu;
	assert_true(outside >= 0);
	base_conf(&c, "127.0.0.1");
	snprintf(c.cpus, sizeof(c.cpus), "%d", outside);
	expect_einval(&c, &port, 1, 1, "not available");
}

static void
test_sock_open_port_in_use_eaddrinuse(void **state)
{
	const uint16_t port = free_port();
	struct sockaddr_storage ss;
	struct tl_sock_conf c;
	struct tl_sock *s = NULL;
	char err[256], ep[64];
	socklen_t len;
	int one = 1;

	(void)state;
	snprintf(ep, sizeof(ep), "127.0.0.1:%u", port);
	loopback(AF_INET, port, &ss, &len);
	/* Another program on the port, then another tapline (SO_REUSEPORT, same user): both
	 * must be refused, not joined. */
	for (int reuse = 0; reuse < 2; reuse++) {
		int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

		assert_true(fd >= 0);
		if (reuse)
			assert_int_equal(
			        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)), 0);
		assert_int_equal(bind(fd, (struct sockaddr *)&ss, len), 0);
		base_conf(&c, "127.0.0.1");
		assert_int_equal(tl_sock_open(&c, &port, 1, 2, &s, err, sizeof(err)), -EADDRINUSE);
		assert_null(s);
		assert_non_null(strstr(err, "already in use"));
		assert_non_null(strstr(err, ep));
		assert_null(strchr(err, '\n'));
		/* The wildcard address conflicts with it too. */
		base_conf(&c, "0.0.0.0");
		assert_int_equal(tl_sock_open(&c, &port, 1, 1, &s, err, sizeof(err)), -EADDRINUSE);
		close(fd);
	}
	/* Free again: opens. */
	base_conf(&c, "127.0.0.1");
	s = open_ok(&c, &port, 1, 2);
	tl_sock_close(s);
}

static void
test_sock_open_foreign_address_eaddrnotavail(void **state)
{
	const uint16_t port = free_port();
	struct tl_sock_conf c;
	struct tl_sock *s = NULL;
	char err[256];
	int rc;

	(void)state;
	/* TEST-NET-1 (RFC 5737): never configured on a host; only bound, never sent to. */
	base_conf(&c, "192.0.2.1");
	rc = tl_sock_open(&c, &port, 1, 1, &s, err, sizeof(err));
	if (rc == 0) {
		tl_sock_close(s);
		skip(); /* this host does have the address */
	}
	assert_int_equal(rc, -EADDRNOTAVAIL);
	assert_null(s);
	assert_non_null(strstr(err, "192.0.2.1 is not an address of this host"));
}

static void
test_sock_describe_workers_ports_rcvbuf(void **state)
{
	const uint16_t p1 = free_port();
	uint16_t ports[2] = {p1, 0};
	struct tl_sock_conf c;
	struct tl_sock *s;
	char want[128];

	(void)state;
	ports[1] = free_port();
	if (ports[1] == p1)
		skip();
	base_conf(&c, "127.0.0.1");
	c.rcvbuf = 64 << 10; /* below any rmem_max: always obtained */
	s = open_ok(&c, ports, 2, 3);
	snprintf(want, sizeof(want),
	        "socket: 3 workers x 2 ports on 127.0.0.1, rcvbuf 64 KiB, ports %u,%u, batch 32, "
	        "max_datagram 65535, not pinned",
	        ports[0], ports[1]);
	if (strncmp(tl_sock_describe(s), want, strlen(want)) != 0)
		fail_msg("'%s' does not start with '%s'", tl_sock_describe(s), want);
	tl_sock_close(s);
	base_conf(&c, "::1");
	c.rcvbuf = 64 << 10;
	s = open_ok(&c, ports, 1, 1);
	snprintf(want, sizeof(want), "socket: 1 worker x 1 port on ::1, rcvbuf 64 KiB, ports %u,",
	        ports[0]);
	if (strncmp(tl_sock_describe(s), want, strlen(want)) != 0)
		fail_msg("'%s' does not start with '%s'", tl_sock_describe(s), want);
	tl_sock_close(s);
}

/*
 * Set or clear CAP_NET_ADMIN in this thread's effective set (SO_RCVBUFFORCE and busy
 * polling need it). Only a capability that is permitted can be set again.
 * @return 1 it was there before, 0 it was not, -errno.
 */
static int
net_admin_set(bool on)
{
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct d[2];
	const unsigned i = CAP_NET_ADMIN / 32, bit = 1u << (CAP_NET_ADMIN % 32);
	int had;

	if (syscall(SYS_capget, &h, d) < 0)
		return -errno;
	had = (d[i].effective & bit) != 0;
	if (had == (int)on)
		return had;
	if (on)
		d[i].effective |= bit;
	else
		d[i].effective &= ~bit;
	return syscall(SYS_capset, &h, d) < 0 ? -errno : had;
}

static void
test_sock_rcvbuf_capped_describes_warning(void **state)
{
	const uint16_t port = free_port();
	struct tl_sock_conf c;
	struct tl_sock *s;
	unsigned long rmem_max = 0;
	bool had_admin;
	int rc;
	FILE *f = fopen("/proc/sys/net/core/rmem_max", "r");

	(void)state;
	assert_non_null(f);
	assert_int_equal(fscanf(f, "%lu", &rmem_max), 1);
	fclose(f);
	if (rmem_max + (1ul << 20) > (unsigned long)INT32_MAX / 2)
		skip(); /* no size above the cap is accepted by the driver */
	/* Without CAP_NET_ADMIN, SO_RCVBUF is capped at net.core.rmem_max. */
	rc = net_admin_set(false);
	assert_true(rc >= 0);
	had_admin = rc == 1;
	base_conf(&c, "127.0.0.1");
	c.rcvbuf = rmem_max + (1ul << 20);
	s = open_ok(&c, &port, 1, 1);
	if (had_admin)
		assert_int_equal(net_admin_set(true), 0);
	assert_non_null(strstr(tl_sock_describe(s), "WARNING"));
	assert_non_null(strstr(tl_sock_describe(s), "rmem_max"));
	tl_sock_close(s);
	/* With it, SO_RCVBUFFORCE gets the size asked. */
	if (had_admin) {
		s = open_ok(&c, &port, 1, 1);
		assert_null(strstr(tl_sock_describe(s), "WARNING"));
		tl_sock_close(s);
	}
}

/* ---- receive ------------------------------------------------------------------------- */

/* Preferred busy polling: granted with CAP_NET_ADMIN (SO_BUSY_POLL and its budget need it), refused
 * without, and either way every datagram still arrives. */
static void
test_sock_busy_poll_granted_or_refused_events_flow(void **state)
{
	uint16_t port = free_port();
	struct tl_sock_conf c;
	struct tl_sock *s;
	static struct runner r; /* outlives a failed assertion: see g_active */
	struct sent sent = {0};
	int fd = client(AF_INET), rc;
	bool had_admin;

	(void)state;
	base_conf(&c, "127.0.0.1");
	c.busy_budget = 64;
	c.busy_usecs = 20;
	rc = net_admin_set(false);
	assert_true(rc >= 0);
	had_admin = rc == 1;
	s = open_ok(&c, &port, 1, 1);
	if (had_admin)
		assert_int_equal(net_admin_set(true), 0);
	if (strstr(tl_sock_describe(s), "busy polling refused") == NULL)
		fail_msg("without CAP_NET_ADMIN: '%s'", tl_sock_describe(s));
	tl_sock_close(s);
	if (!had_admin) {
		close(fd);
		skip();
	}
	s = open_ok(&c, &port, 1, 1);
	if (strstr(tl_sock_describe(s), "busy polling, budget 64") == NULL)
		fail_msg("with CAP_NET_ADMIN: '%s'", tl_sock_describe(s));
	workers_init(1, &port, 1);
	runner_start(&r, s, 0);
	for (unsigned seq = 0; seq < 20; seq++) {
		size_t n = make_datagram(dgram, sizeof(dgram), "bp", 0, seq, 3, &sent);

		send_to(fd, AF_INET, port, dgram, n);
	}
	assert_true(wait_events(1, sent.events));
	assert_int_equal(runner_stop(&r), 0);
	assert_int_equal(g_sink[0].valid, sent.events);
	assert_int_equal(g_sink[0].raw_sum, sent.raw_sum);
	workers_fini(1);
	tl_sock_close(s);
	close(fd);
}

static void
test_sock_ipv4_ndjson_events_reach_sink(void **state)
{
	uint16_t ports[2] = {free_port(), 0};
	struct tl_sock_conf c;
	struct tl_sock *s;
	static struct runner r; /* outlives a failed assertion: see g_active */
	struct sent sent = {0};
	struct tl_counters tot;
	int fd = client(AF_INET);
	uint64_t per_port[2] = {0, 0};

	(void)state;
	ports[1] = free_port();
	if (ports[1] == ports[0])
		skip();
	base_conf(&c, "127.0.0.1");
	s = open_ok(&c, ports, 2, 1);
	workers_init(1, ports, 2);
	runner_start(&r, s, 0);
	for (unsigned seq = 0; seq < 40; seq++) {
		size_t n = make_datagram(dgram, sizeof(dgram), "v4", 0, seq, 3, &sent);

		send_to(fd, AF_INET, ports[seq % 2], dgram, n);
		if (!wait_events(1, sent.events))
			break;
		per_port[seq % 2]++;
		/* The synthetic header carries the datagram's real addresses and ports. */
		assert_int_equal(g_sink[0].last_dport, ports[seq % 2]);
	}
	assert_int_equal(runner_stop(&r), 0);
	assert_int_equal(per_port[0], 20);
	assert_int_equal(per_port[1], 20);
	assert_int_equal(g_sink[0].valid, sent.events);
	assert_int_equal(g_sink[0].rejected, 0);
	assert_int_equal(g_sink[0].errors, sent.errors);
	assert_true(sent.errors > 0);
	assert_int_equal(g_sink[0].raw_sum, sent.raw_sum); /* byte for byte */
	assert_int_equal(g_sink[0].frames_bad, 0);
	assert_int_equal(g_sink[0].v4, sent.events);
	assert_int_equal(g_sink[0].last_sport, bound_port(fd));
	assert_memory_equal(g_sink[0].last_src, "\x7f\x00\x00\x01", 4);
	assert_memory_equal(g_sink[0].last_dst, "\x7f\x00\x00\x01", 4);
	assert_int_equal(g_w[0].cnt.rx_frames, 40);
	assert_int_equal(g_w[0].cnt.udp_datagrams, 40);
	assert_int_equal(g_w[0].cnt.events_valid, sent.events);
	assert_int_equal(g_sink[0].final_ticks, 1);
	tot = stats(s);
	assert_int_equal(tot.rx_missed, 0);
	assert_int_equal(tot.tx_frames, 0);
	workers_fini(1);
	tl_sock_close(s);
	close(fd);
}

static void
test_sock_reuseport_two_workers_each_datagram_once(void **state)
{
	enum { CLIENTS = 32, ROUNDS = 12, EV = 2 };
	const uint16_t port = free_port();
	static uint32_t seen[CLIENTS * ROUNDS * EV];
	struct tl_sock_conf c;
	struct tl_sock *s;
	static struct runner r; /* outlives a failed assertion: see g_active */
	struct sent sent = {0};
	int fds[CLIENTS];

	(void)state;
	memset(seen, 0, sizeof(seen));
	for (unsigned i = 0; i < CLIENTS; i++)
		fds[i] = client(AF_INET);
	base_conf(&c, "127.0.0.1");
	s = open_ok(&c, &port, 1, 2);
	workers_init(2, &port, 1);
	for (unsigned w = 0; w < 2; w++) {
		g_sink[w].seen = seen;
		g_sink[w].seen_seq = ROUNDS;
		g_sink[w].seen_ev = EV;
		g_sink[w].n_seen = CLIENTS * ROUNDS * EV;
	}
	runner_start(&r, s, 0);
	for (unsigned seq = 0; seq < ROUNDS; seq++) {
		for (unsigned cl = 0; cl < CLIENTS; cl++) {
			size_t n = make_datagram(dgram, sizeof(dgram), "rp", cl, seq, EV, &sent);

			send_to(fds[cl], AF_INET, port, dgram, n);
		}
		if (!wait_events(2, sent.events))
			break;
	}
	assert_int_equal(runner_stop(&r), 0);
	for (unsigned i = 0; i < CLIENTS * ROUNDS * EV; i++)
		if (seen[i] != 1)
			fail_msg("event %u seen %u times", i, seen[i]);
	assert_int_equal(SUM(valid, 2), sent.events);
	assert_int_equal(SUM(raw_sum, 2), sent.raw_sum);
	assert_int_equal(SUM(errors, 2), sent.errors);
	/* 32 flows hashed over 2 sockets: both workers got some (2^-31 odds otherwise). */
	assert_true(g_sink[0].valid > 0);
	assert_true(g_sink[1].valid > 0);
	assert_int_equal(g_w[0].cnt.udp_datagrams + g_w[1].cnt.udp_datagrams, sent.datagrams);
	assert_int_equal(g_sink[0].final_ticks + g_sink[1].final_ticks, 2);
	workers_fini(2);
	tl_sock_close(s);
	for (unsigned i = 0; i < CLIENTS; i++)
		close(fds[i]);
}

static void
test_sock_ipv6_loopback_events_reach_sink(void **state)
{
	const uint16_t port = free_port();
	struct tl_sock_conf c;
	struct tl_sock *s;
	static struct runner r; /* outlives a failed assertion: see g_active */
	struct sent sent = {0};
	int fd = client(AF_INET6);

	(void)state;
	base_conf(&c, "::1");
	s = open_ok(&c, &port, 1, 1);
	workers_init(1, &port, 1);
	runner_start(&r, s, 0);
	for (unsigned seq = 0; seq < 20; seq++) {
		size_t n = make_datagram(dgram, sizeof(dgram), "v6", 0, seq, 2, &sent);

		send_to(fd, AF_INET6, port, dgram, n);
		if (!wait_events(1, sent.events))
			break;
	}
	assert_int_equal(runner_stop(&r), 0);
	assert_int_equal(g_sink[0].valid, sent.events);
	assert_int_equal(g_sink[0].raw_sum, sent.raw_sum);
	/* IPv6 frames with a correct UDP checksum (checked by decoding without flags). */
	assert_int_equal(g_sink[0].v6, sent.events);
	assert_int_equal(g_sink[0].frames_bad, 0);
	assert_memory_equal(g_sink[0].last_src, in6addr_loopback.s6_addr, 16);
	assert_memory_equal(g_sink[0].last_dst, in6addr_loopback.s6_addr, 16);
	assert_int_equal(g_sink[0].last_sport, bound_port(fd));
	assert_int_equal(g_sink[0].last_dport, port);
	workers_fini(1);
	tl_sock_close(s);
	close(fd);
}

static void
test_sock_dual_stack_ipv4_client_gets_ipv4_frame(void **state)
{
	const uint16_t port = free_port();
	struct tl_sock_conf c;
	struct tl_sock *s;
	static struct runner r; /* outlives a failed assertion: see g_active */
	struct sent sent = {0};
	int fd4 = client(AF_INET), fd6 = client(AF_INET6);
	size_t n;

	(void)state;
	base_conf(&c, "::");
	s = open_ok(&c, &port, 1, 1);
	workers_init(1, &port, 1);
	runner_start(&r, s, 0);
	n = make_datagram(dgram, sizeof(dgram), "ds4", 0, 0, 2, &sent);
	send_to(fd4, AF_INET, port, dgram, n);
	assert_true(wait_events(1, sent.events));
	/* v4-mapped on the socket, an IPv4 frame for the pipeline. */
	assert_int_equal(g_sink[0].last_version, 4);
	assert_memory_equal(g_sink[0].last_src, "\x7f\x00\x00\x01", 4);
	assert_memory_equal(g_sink[0].last_dst, "\x7f\x00\x00\x01", 4);
	assert_int_equal(g_sink[0].last_sport, bound_port(fd4));
	n = make_datagram(dgram, sizeof(dgram), "ds6", 1, 0, 2, &sent);
	send_to(fd6, AF_INET6, port, dgram, n);
	assert_true(wait_events(1, sent.events));
	assert_int_equal(runner_stop(&r), 0);
	assert_int_equal(g_sink[0].last_version, 6);
	assert_memory_equal(g_sink[0].last_src, in6addr_loopback.s6_addr, 16);
	assert_int_equal(g_sink[0].v4, 2);
	assert_int_equal(g_sink[0].v6, 2);
	assert_int_equal(g_sink[0].frames_bad, 0);
	assert_int_equal(g_sink[0].valid, sent.events);
	assert_int_equal(g_sink[0].raw_sum, sent.raw_sum);
	workers_fini(1);
	tl_sock_close(s);
	close(fd4);
	close(fd6);
}

static void
test_sock_oversized_datagram_truncated_counted(void **state)
{
	const uint16_t port = free_port();
	struct tl_sock_conf c;
	struct tl_sock *s;
	static struct runner r; /* outlives a failed assertion: see g_active */
	struct sent sent = {0};
	int fd = client(AF_INET);
	size_t n = 0;

	(void)state;
	base_conf(&c, "127.0.0.1");
	c.max_datagram = 4096;
	s = open_ok(&c, &port, 1, 1);
	workers_init(1, &port, 1);
	runner_start(&r, s, 0);
	/* One byte too many: cut by the kernel, counted, never parsed. */
	add_event(dgram, sizeof(dgram), &n, "trunc-long", 1, 4097, NULL);
	assert_int_equal(n, 4097);
	send_to(fd, AF_INET, port, dgram, n);
	/* Exactly max_datagram: whole. */
	n = 0;
	add_event(dgram, sizeof(dgram), &n, "trunc-exact", 2, 4096, &sent);
	assert_int_equal(n, 4096);
	send_to(fd, AF_INET, port, dgram, n);
	n = make_datagram(dgram, sizeof(dgram), "trunc-small", 0, 0, 1, &sent);
	send_to(fd, AF_INET, port, dgram, n);
	assert_true(wait_events(1, 2));
	assert_int_equal(runner_stop(&r), 0);
	assert_int_equal(g_sink[0].valid, 2);
	assert_int_equal(g_sink[0].rejected, 0);
	assert_int_equal(g_sink[0].raw_sum, sent.raw_sum);
	assert_int_equal(g_w[0].cnt.rx_frames, 2);
	assert_int_equal(stats(s).rx_missed, 1);
	workers_fini(1);
	tl_sock_close(s);
	close(fd);
}

/* ---- replies ------------------------------------------------------------------------- */

/* The framed-mode handler of these tests: take the frame's events, answer "committed"
 * at once through the driver (a real appliance answers after the spool commit). */
static void
framed_ack(void *arg, struct tl_pipeline_worker *w, const struct tl_peer *peer,
        const uint8_t *payload, uint32_t len)
{
	struct sink *sk = arg;
	struct tl_frame_view v;
	struct tl_ack a;
	uint8_t ack[TL_ACK_MAX], frame[256];
	long n, f;

	inc(&sk->framed, 1);
	if (tl_frame_parse(payload, len, &v) != TL_FRAME_OK || v.flags != 0) {
		inc(&sk->tx_failed, 1);
		return;
	}
	tl_pipeline_events(w, v.body, v.body_len);
	memset(&a, 0, sizeof(a));
	a.status = TL_ACK_COMMITTED;
	a.producer_id = v.producer_id;
	a.sequence = v.sequence;
	a.count = v.count;
	n = tl_ack_encode(&a, NULL, 0, ack, sizeof(ack));
	f = n > 0 ? tl_reply_build(peer, ack, (uint32_t)n, 1500, frame, sizeof(frame)) : -1;
	if (f <= 0 || w->tx == NULL || w->tx(w->tx_arg, frame, (uint32_t)f) != 0)
		inc(&sk->tx_failed, 1);
	else
		inc(&sk->acks_queued, 1);
}

/* Send frames from a @p family client to @p port of a driver bound to @p address and
 * check every ACK comes back from the telemetry port of the address written to. */
static void
framed_roundtrip(const char *address, int family, unsigned n_ports)
{
	uint16_t ports[2] = {free_port(), 0};
	struct tl_sock_conf c;
	struct tl_sock *s;
	static struct runner r; /* outlives a failed assertion: see g_active */
	struct sent sent = {0};
	int fd = client(family);
	const uint64_t producer = 0x7a11e5;

	ports[1] = n_ports > 1 ? free_port() : 0;
	if (n_ports > 1 && ports[1] == ports[0])
		skip();
	base_conf(&c, address);
	s = open_ok(&c, ports, n_ports, 1);
	workers_init(1, ports, n_ports);
	tl_pipeline_set_framed(&g_w[0], framed_ack, &g_sink[0]);
	runner_start(&r, s, 0);
	for (unsigned seq = 1; seq <= 10; seq++) {
		static uint8_t frame[DGRAM_MAX];
		const uint16_t to = ports[seq % n_ports];
		size_t ev_len = make_datagram(dgram, sizeof(dgram), "fr", 0, seq, 2, &sent);
		long flen = tl_frame_encode(producer, seq, (const uint8_t *)dgram, ev_len, 2, 0,
		        NULL, 0, 0, frame, sizeof(frame));
		struct sockaddr_storage from;
		socklen_t from_len = sizeof(from);
		uint8_t ack[TL_ACK_MAX + 1];
		struct tl_ack a;
		ssize_t got;

		assert_true(flen > 0);
		send_to(fd, family, to, frame, (size_t)flen);
		got = recvfrom(fd, ack, sizeof(ack), 0, (struct sockaddr *)&from, &from_len);
		assert_int_equal(got, TL_ACK_LEN);
		assert_int_equal(tl_ack_parse(ack, (size_t)got, NULL, 0, &a), 0);
		assert_int_equal(a.status, TL_ACK_COMMITTED);
		assert_int_equal(a.producer_id, producer);
		assert_int_equal(a.sequence, seq);
		assert_int_equal(a.count, 2);
		/* From the telemetry port, of the loopback address the frame went to. */
		assert_int_equal(from.ss_family, family);
		if (family == AF_INET) {
			const struct sockaddr_in *sin = (const struct sockaddr_in *)&from;

			assert_int_equal(ntohs(sin->sin_port), to);
			assert_int_equal(ntohl(sin->sin_addr.s_addr), INADDR_LOOPBACK);
		} else {
			const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&from;

			assert_int_equal(ntohs(sin6->sin6_port), to);
			assert_memory_equal(sin6->sin6_addr.s6_addr, in6addr_loopback.s6_addr, 16);
		}
	}
	assert_int_equal(runner_stop(&r), 0);
	assert_int_equal(g_sink[0].framed, 10);
	assert_int_equal(g_sink[0].acks_queued, 10);
	assert_int_equal(g_sink[0].tx_failed, 0);
	assert_int_equal(g_sink[0].valid, sent.events);
	assert_int_equal(g_sink[0].raw_sum, sent.raw_sum);
	assert_int_equal(stats(s).tx_frames, 10);
	assert_int_equal(stats(s).tx_dropped, 0);
	workers_fini(1);
	tl_sock_close(s);
	close(fd);
}

static void
test_sock_framed_ipv4_ack_from_telemetry_port(void **state)
{
	(void)state;
	framed_roundtrip("127.0.0.1", AF_INET, 2);
}

static void
test_sock_framed_ipv6_ack_from_telemetry_port(void **state)
{
	(void)state;
	framed_roundtrip("::1", AF_INET6, 1);
}

static void
test_sock_framed_dual_stack_ipv4_ack_from_telemetry_port(void **state)
{
	(void)state;
	framed_roundtrip("::", AF_INET, 2);
}

/* A reply frame from @p req's destination to its source, built like the pipeline does. */
static long
reply_frame(int version, uint16_t from_port, uint8_t *out, size_t cap)
{
	struct tl_peer p;

	memset(&p, 0, sizeof(p));
	p.l2_len = 14;
	p.l2[12] = version == 4 ? 0x08 : 0x86;
	p.l2[13] = version == 4 ? 0x00 : 0xdd;
	p.ip_version = (uint8_t)version;
	if (version == 4) {
		memcpy(p.src, "\x7f\x00\x00\x01", 4);
		memcpy(p.dst, "\x7f\x00\x00\x01", 4);
	} else {
		memcpy(p.src, in6addr_loopback.s6_addr, 16);
		memcpy(p.dst, in6addr_loopback.s6_addr, 16);
	}
	p.sport = 40000;
	p.dport = from_port;
	return tl_reply_build(&p, (const uint8_t *)"TLA1", 4, 9000, out, cap);
}

static void
test_sock_tx_unsendable_frames_dropped(void **state)
{
	const uint16_t port = free_port();
	static uint8_t big[4096];
	uint8_t f[128];
	struct tl_sock_conf c;
	struct tl_sock *s;
	long n;

	(void)state;
	base_conf(&c, "127.0.0.1");
	s = open_ok(&c, &port, 1, 1);
	workers_init(1, &port, 1);
	{
		volatile int stop = 1;

		/* A run that ends at once still installs the sender. */
		assert_int_equal(tl_sock_run(s, g_w, 0, &stop), 0);
	}
	assert_non_null(g_w[0].tx);
	/* Larger than a reply slot. */
	memset(big, 0, sizeof(big));
	assert_int_equal(g_w[0].tx(g_w[0].tx_arg, big, sizeof(big)), -EMSGSIZE);
	/* Not an IP/UDP frame. */
	assert_int_equal(g_w[0].tx(g_w[0].tx_arg, big, 60), -ENOTSUP);
	assert_int_equal(g_w[0].tx(g_w[0].tx_arg, big, 3), -ENOTSUP);
	/* From a port that is not a telemetry port: no socket to send it from. */
	n = reply_frame(4, (uint16_t)(port + 1), f, sizeof(f));
	assert_true(n > 0);
	assert_int_equal(g_w[0].tx(g_w[0].tx_arg, f, (uint32_t)n), -ENOTSUP);
	/* IPv6 through an IPv4 socket. */
	n = reply_frame(6, port, f, sizeof(f));
	assert_true(n > 0);
	assert_int_equal(g_w[0].tx(g_w[0].tx_arg, f, (uint32_t)n), -ENOTSUP);
	/* Cut short: the UDP length no longer matches. */
	n = reply_frame(4, port, f, sizeof(f));
	assert_int_equal(g_w[0].tx(g_w[0].tx_arg, f, (uint32_t)n - 1), -ENOTSUP);
	assert_int_equal(stats(s).tx_dropped, 6);
	assert_int_equal(stats(s).tx_frames, 0);
	workers_fini(1);
	tl_sock_close(s);
}

/* ---- stopping ------------------------------------------------------------------------ */

static void
test_sock_stop_flag_drains_queued_datagrams(void **state)
{
	const uint16_t port = free_port();
	struct tl_sock_conf c;
	struct tl_sock *s;
	struct sent sent = {0};
	volatile int stop = 1;
	int fd = client(AF_INET);

	(void)state;
	base_conf(&c, "127.0.0.1");
	s = open_ok(&c, &port, 1, 1);
	workers_init(1, &port, 1);
	/* Queued before the run; the run is told to stop before it starts: the bounded
	 * drain still takes them, then the final tick. */
	for (unsigned seq = 0; seq < 8; seq++) {
		size_t n = make_datagram(dgram, sizeof(dgram), "drain", 0, seq, 2, &sent);

		send_to(fd, AF_INET, port, dgram, n);
	}
	assert_int_equal(tl_sock_run(s, g_w, 0, &stop), 0);
	assert_int_equal(g_sink[0].valid, sent.events);
	assert_int_equal(g_sink[0].raw_sum, sent.raw_sum);
	assert_int_equal(g_sink[0].final_ticks, 1);
	/* The stop flag set while running ends the run too (run again on the same driver). */
	{
		static struct runner r; /* outlives a failed assertion: see g_active */

		runner_start(&r, s, 0);
		assert_int_equal(runner_stop(&r), 0);
		assert_int_equal(g_sink[0].final_ticks, 2);
	}
	workers_fini(1);
	tl_sock_close(s);
	close(fd);
}

static void
test_sock_idle_stop_waits_for_every_worker(void **state)
{
	const uint16_t port = free_port();
	const uint64_t idle = 200000000ull; /* 200 ms */
	struct tl_sock_conf c;
	struct tl_sock *s;
	static struct runner r; /* outlives a failed assertion: see g_active */
	struct sent sent = {0};
	uint64_t last_send;
	int fd = client(AF_INET);

	(void)state;
	base_conf(&c, "127.0.0.1");
	s = open_ok(&c, &port, 1, 2);
	workers_init(2, &port, 1);
	/* Nothing arrives: the run ends by itself. */
	runner_start(&r, s, idle);
	assert_true(runner_wait_done(&r));
	assert_int_equal(runner_stop(&r), 0);
	assert_int_equal(g_sink[0].final_ticks + g_sink[1].final_ticks, 2);
	assert_true(g_sink[0].ticks > 0); /* housekeeping ran while idle */
	/* One flow (one worker) busy for longer than idle_stop_ns: the other worker, idle
	 * all along, must not stop before the busy one has been idle that long too. */
	runner_start(&r, s, idle);
	for (unsigned seq = 0; seq < 12; seq++) {
		size_t n = make_datagram(dgram, sizeof(dgram), "idle", 0, seq, 1, &sent);

		send_to(fd, AF_INET, port, dgram, n);
		usleep(50000);
	}
	last_send = now_ns();
	assert_true(runner_wait_done(&r));
	assert_int_equal(runner_stop(&r), 0);
	assert_int_equal(SUM(valid, 2), sent.events);
	assert_int_equal(g_sink[0].final_ticks + g_sink[1].final_ticks, 4);
	assert_true(g_sink[0].final_tick_ns >= last_send);
	assert_true(g_sink[1].final_tick_ns >= last_send);
	workers_fini(2);
	tl_sock_close(s);
	close(fd);
}

/* ---- drops --------------------------------------------------------------------------- */

static void
test_sock_rxq_overflow_counted_as_missed(void **state)
{
	const uint16_t port = free_port();
	struct tl_sock_conf c;
	struct tl_sock *s;
	static struct runner r; /* outlives a failed assertion: see g_active */
	int fd = client(AF_INET);
	uint64_t sent = 0, mark;
	struct tl_counters tot;

	(void)state;
	base_conf(&c, "127.0.0.1");
	c.rcvbuf = 8192; /* a few datagrams; the kernel's minimum applies */
	s = open_ok(&c, &port, 1, 1);
	workers_init(1, &port, 1);
	/* No worker runs: the socket fills and the kernel drops the rest. */
	for (unsigned seq = 0; seq < 200; seq++) {
		size_t n = make_datagram(dgram, sizeof(dgram), "flood", 0, seq, 1, NULL);

		send_to(fd, AF_INET, port, dgram, n);
		sent++;
	}
	runner_start(&r, s, 0);
	/* The drop count rides on the next datagram queued: send markers until the last one
	 * sent is the last one seen; then nothing was sent after the one that told. */
	for (mark = 1; mark <= 100; mark++) {
		char line[512];
		size_t n = 0;

		snprintf(line, sizeof(line), "mark-%" PRIu64, mark);
		add_event(dgram, sizeof(dgram), &n, line, (unsigned)mark, 0, NULL);
		send_to(fd, AF_INET, port, dgram, n);
		sent++;
		for (int i = 0; i < 100 && get(&g_sink[0].mark_max) != mark; i++)
			usleep(WAIT_STEP_US);
		if (get(&g_sink[0].mark_max) == mark)
			break;
	}
	assert_int_equal(runner_stop(&r), 0);
	assert_true(mark <= 100);
	tot = stats(s);
	assert_true(tot.rx_missed > 0);
	assert_int_equal(g_sink[0].valid + tot.rx_missed, sent);
	assert_int_equal(g_w[0].cnt.rx_frames, g_sink[0].valid);
	workers_fini(1);
	tl_sock_close(s);
	close(fd);
}

/* ---- pinning ------------------------------------------------------------------------- */

static void
test_sock_cpus_pin_each_worker(void **state)
{
	const uint16_t port = free_port();
	struct tl_sock_conf c;
	struct tl_sock *s;
	static struct runner r; /* outlives a failed assertion: see g_active */
	cpu_set_t set;
	int cpus[2], n = 0;

	(void)state;
	assert_int_equal(sched_getaffinity(0, sizeof(set), &set), 0);
	for (int cpu = 0; cpu < CPU_SETSIZE && n < 2; cpu++)
		if (CPU_ISSET(cpu, &set))
			cpus[n++] = cpu;
	base_conf(&c, "127.0.0.1");
	if (n == 2)
		snprintf(c.cpus, sizeof(c.cpus), "%d,%d", cpus[0], cpus[1]);
	else
		snprintf(c.cpus, sizeof(c.cpus), "%d-%d", cpus[0], cpus[0]);
	s = open_ok(&c, &port, 1, 2);
	assert_non_null(strstr(tl_sock_describe(s), c.cpus));
	workers_init(2, &port, 1);
	g_sink[0].pin_cpu = cpus[0];
	g_sink[1].pin_cpu = cpus[n - 1];
	runner_start(&r, s, 50000000ull);
	assert_true(runner_wait_done(&r));
	assert_int_equal(runner_stop(&r), 0);
	assert_true(g_sink[0].pinned_ok > 0);
	assert_true(g_sink[1].pinned_ok > 0);
	assert_int_equal(g_sink[0].pinned_bad + g_sink[1].pinned_bad, 0);
	workers_fini(2);
	tl_sock_close(s);
}

/* ---- live classification ------------------------------------------------------------- */

static struct tl_live_gen *
gen_exceptions(unsigned n_workers)
{
	struct tl_classify_conf *cc = calloc(1, sizeof(*cc));
	struct tl_classify_pattern_def *p;
	struct tl_live_gen *g = NULL;
	char err[1024];
	int rc;

	assert_non_null(cc);
	snprintf(cc->fields[0], TL_SCHEMA_NAME_MAX, "error");
	cc->n_fields = 1;
	p = &cc->patterns[cc->n_patterns++];
	snprintf(p->id, sizeof(p->id), "hadoop.exception");
	snprintf(p->regex, sizeof(p->regex), "Exception");
	snprintf(p->category, sizeof(p->category), "runtime");
	p->severity = TL_CLASSIFY_SEV_ERROR - 1;
	p->effect = TL_CLASSIFY_EFFECT_TAG;
	rc = tl_live_gen_build(cc, schema, n_workers, &g, err, sizeof(err));
	free(cc);
	if (rc != 0)
		fail_msg("tl_live_gen_build: %s: %s", tl_strerror(rc), err);
	return g;
}

/* Events whose error line (every third event) has "Exception", for add_event's i. */
static uint64_t
expected_matches(unsigned i)
{
	return i % 3 == 0 && strstr(hadoop_err[i / 3 % n_hadoop_err], "Exception") != NULL;
}

static void
test_sock_live_classifies_and_reloads_while_running(void **state)
{
	const uint16_t port = free_port();
	struct tl_sock_conf c;
	struct tl_sock *s;
	static struct runner r; /* outlives a failed assertion: see g_active */
	struct sent sent = {0};
	struct tl_live *live = NULL;
	struct tl_live_gen *g;
	struct tl_live_stats ls;
	uint64_t want_matched = 0;
	int fd = client(AF_INET);

	(void)state;
	base_conf(&c, "127.0.0.1");
	s = open_ok(&c, &port, 1, 2);
	workers_init(2, &port, 1);
	g = gen_exceptions(2);
	assert_int_equal(tl_live_create(2, g, &live), 0);
	for (unsigned w = 0; w < 2; w++)
		tl_pipeline_set_live(&g_w[w], live, w);
	runner_start(&r, s, 0);
	for (unsigned seq = 0; seq < 60; seq++) {
		size_t n;

		if (seq == 30) {
			/* A reload while the workers run (mostly asleep in poll: offline). */
			assert_int_equal(
			        tl_live_publish(live, gen_exceptions(2), 5000000000ull), 0);
		}
		n = make_datagram(dgram, sizeof(dgram), "live", 0, seq, 3, &sent);
		for (unsigned k = 0; k < 3; k++)
			want_matched += expected_matches(seq * 3 + k);
		send_to(fd, AF_INET, port, dgram, n);
		assert_true(wait_events(2, sent.events));
	}
	assert_int_equal(runner_stop(&r), 0);
	tl_live_stats(live, &ls);
	assert_int_equal(ls.generation, 2);
	assert_int_equal(ls.publish_timeouts, 0);
	assert_int_equal(ls.gens_pending_free, 0);
	assert_true(want_matched > 0);
	assert_int_equal(g_w[0].cnt.events_matched + g_w[1].cnt.events_matched, want_matched);
	assert_int_equal(SUM(valid, 2), sent.events);
	workers_fini(2);
	tl_live_destroy(live);
	tl_sock_close(s);
	close(fd);
}

/*
 * A sleeping worker is offline: a reload that does not wait at all (timeout 0) finds no
 * worker behind. The worker sleeps up to a whole second here (tick 1 s), so a worker
 * that stayed online in poll() would fail nearly every such publish; an offline one is
 * online only for the instants it works.
 */
static void
test_sock_sleeping_worker_offline_reload_not_delayed(void **state)
{
	enum { PUBLISHES = 10 };
	const uint16_t port = free_port();
	struct tl_sock_conf c;
	struct tl_sock *s;
	static struct runner r; /* outlives a failed assertion: see g_active */
	struct sent sent = {0};
	struct tl_live *live = NULL;
	struct tl_live_stats ls;
	int fd = client(AF_INET);
	size_t n;

	(void)state;
	base_conf(&c, "127.0.0.1");
	c.tick = 1000000000ull;
	s = open_ok(&c, &port, 1, 1);
	workers_init(1, &port, 1);
	assert_int_equal(tl_live_create(1, gen_exceptions(1), &live), 0);
	tl_pipeline_set_live(&g_w[0], live, 0);
	runner_start(&r, s, 0);
	/* The worker has been online (it processed this) and gone back to sleep. */
	n = make_datagram(dgram, sizeof(dgram), "rcu", 0, 0, 1, &sent);
	send_to(fd, AF_INET, port, dgram, n);
	assert_true(wait_events(1, sent.events));
	for (int i = 0; i < PUBLISHES; i++) {
		usleep(20000);
		assert_int_equal(tl_live_publish(live, gen_exceptions(1), 0), 0);
	}
	assert_int_equal(runner_stop(&r), 0);
	tl_live_stats(live, &ls);
	assert_int_equal(ls.generation, 1 + PUBLISHES);
	if (ls.publish_timeouts > PUBLISHES / 2)
		fail_msg("%" PRIu64 " of %d publishes found the sleeping worker online",
		        ls.publish_timeouts, PUBLISHES);
	workers_fini(1);
	tl_live_destroy(live);
	tl_sock_close(s);
	close(fd);
}

/* ---- throughput (informational) ------------------------------------------------------ */

/* Not a test of speed: it prints what loopback gave, for the report. Windowed like the
 * others, so the figure includes the sender's waits. */
static void
test_sock_loopback_throughput_counts_all(void **state)
{
	enum { WINDOW = 32, ROUNDS = 200, EV = 4 };
	const uint16_t port = free_port();
	static char win[WINDOW][16384];
	size_t len[WINDOW];
	struct sent one[WINDOW], sent = {0};
	struct tl_sock_conf c;
	struct tl_sock *s;
	static struct runner r; /* outlives a failed assertion: see g_active */
	int fd = client(AF_INET);
	uint64_t t0, t1;

	(void)state;
	/* The datagrams are built once: the loop below only sends. */
	for (unsigned k = 0; k < WINDOW; k++) {
		memset(&one[k], 0, sizeof(one[k]));
		len[k] = make_datagram(win[k], sizeof(win[k]), "tp", 0, k, EV, &one[k]);
	}
	base_conf(&c, "127.0.0.1");
	s = open_ok(&c, &port, 1, 1);
	workers_init(1, &port, 1);
	runner_start(&r, s, 0);
	t0 = now_ns();
	for (unsigned round = 0; round < ROUNDS; round++) {
		for (unsigned k = 0; k < WINDOW; k++) {
			send_to(fd, AF_INET, port, win[k], len[k]);
			sent.events += one[k].events;
			sent.raw_sum += one[k].raw_sum;
			sent.datagrams++;
		}
		/* A short poll here: the figure should be the driver's, not the test's sleep. */
		for (int i = 0; i < 100000 && get(&g_sink[0].events) < sent.events; i++)
			usleep(100);
		if (get(&g_sink[0].events) < sent.events)
			break;
	}
	t1 = now_ns();
	assert_int_equal(runner_stop(&r), 0);
	assert_int_equal(g_sink[0].valid, sent.events);
	assert_int_equal(g_sink[0].raw_sum, sent.raw_sum);
	assert_int_equal(stats(s).rx_missed, 0);
	printf("# loopback, 1 worker: %" PRIu64 " events in %" PRIu64 " datagrams, %.0f events/s\n",
	        sent.events, sent.datagrams, (double)sent.events * 1e9 / (double)(t1 - t0));
	workers_fini(1);
	tl_sock_close(s);
	close(fd);
}

/* ---- main ---------------------------------------------------------------------------- */

static int
setup(void **state)
{
	static struct tl_schema_def def;
	char msg[256], path[512];

	(void)state;
	tl_log_set_level(TL_LOG_WARN);
	for (int i = 0; i < N_TPCH; i++) {
		snprintf(path, sizeof(path), "%s/tpch/q%02d.sql", data_dir(), i + 1);
		tpch[i] = read_file(path);
		if (tpch[i] == NULL) {
			fprintf(stderr, "cannot read %s (set TAPLINE_DATA)\n", path);
			return -1;
		}
	}
	if (load_hadoop() < 0) {
		fprintf(stderr,
		        "cannot read Hadoop error lines from %s/loghub (set TAPLINE_DATA)\n",
		        data_dir());
		return -1;
	}
	tl_test_e6data_def(&def);
	pconf.limits = tl_test_e6data_limits();
	pconf.reasm = (struct tl_reasm_conf){64, 64, 1000000000ull};
	if (tl_schema_compile(&def, &pconf.limits, &schema, msg, sizeof(msg)) != 0) {
		fprintf(stderr, "schema: %s\n", msg);
		return -1;
	}
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	tl_schema_free(schema);
	for (int i = 0; i < N_TPCH; i++)
		free(tpch[i]);
	for (unsigned i = 0; i < n_hadoop_err; i++)
		free(hadoop_err[i]);
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_teardown(test_sock_opts_defaults_documented_values, test_cleanup),
	        cmocka_unit_test_teardown(test_sock_open_bad_arguments_einval, test_cleanup),
	        cmocka_unit_test_teardown(test_sock_open_bad_cpus_einval, test_cleanup),
	        cmocka_unit_test_teardown(test_sock_open_port_in_use_eaddrinuse, test_cleanup),
	        cmocka_unit_test_teardown(
	                test_sock_open_foreign_address_eaddrnotavail, test_cleanup),
	        cmocka_unit_test_teardown(test_sock_describe_workers_ports_rcvbuf, test_cleanup),
	        cmocka_unit_test_teardown(test_sock_rcvbuf_capped_describes_warning, test_cleanup),
	        cmocka_unit_test_teardown(test_sock_ipv4_ndjson_events_reach_sink, test_cleanup),
	        cmocka_unit_test_teardown(
	                test_sock_busy_poll_granted_or_refused_events_flow, test_cleanup),
	        cmocka_unit_test_teardown(
	                test_sock_reuseport_two_workers_each_datagram_once, test_cleanup),
	        cmocka_unit_test_teardown(test_sock_ipv6_loopback_events_reach_sink, test_cleanup),
	        cmocka_unit_test_teardown(
	                test_sock_dual_stack_ipv4_client_gets_ipv4_frame, test_cleanup),
	        cmocka_unit_test_teardown(
	                test_sock_oversized_datagram_truncated_counted, test_cleanup),
	        cmocka_unit_test_teardown(
	                test_sock_framed_ipv4_ack_from_telemetry_port, test_cleanup),
	        cmocka_unit_test_teardown(
	                test_sock_framed_ipv6_ack_from_telemetry_port, test_cleanup),
	        cmocka_unit_test_teardown(
	                test_sock_framed_dual_stack_ipv4_ack_from_telemetry_port, test_cleanup),
	        cmocka_unit_test_teardown(test_sock_tx_unsendable_frames_dropped, test_cleanup),
	        cmocka_unit_test_teardown(
	                test_sock_stop_flag_drains_queued_datagrams, test_cleanup),
	        cmocka_unit_test_teardown(test_sock_idle_stop_waits_for_every_worker, test_cleanup),
	        cmocka_unit_test_teardown(test_sock_rxq_overflow_counted_as_missed, test_cleanup),
	        cmocka_unit_test_teardown(test_sock_cpus_pin_each_worker, test_cleanup),
	        cmocka_unit_test_teardown(
	                test_sock_live_classifies_and_reloads_while_running, test_cleanup),
	        cmocka_unit_test_teardown(
	                test_sock_sleeping_worker_offline_reload_not_delayed, test_cleanup),
	        cmocka_unit_test_teardown(test_sock_loopback_throughput_counts_all, test_cleanup),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
