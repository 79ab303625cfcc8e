/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The native AF_XDP driver (drivers/xdp) on real veth pairs between two network
 * namespaces of the test's own (tests/drivers/xdp_netns.sh: tlx-rx-PID holds the driver's
 * ends, tlx-tx-PID the sender's; addresses from 198.18.0.0/15, nothing routed out), and
 * its XDP program against crafted frames through BPF_PROG_TEST_RUN.
 *
 * Telemetry is NDJSON built from real text (TPC-H queries and Hadoop log lines from
 * shared/data, TAPLINE_DATA); events are counted by a sink on real pipeline workers.
 * Every send loop is bounded in count; every wait is bounded in time and followed by an
 * assertion on counts, never on time. Failures the kernel will not produce on a veth
 * (native XDP refused, UMEM refused, a queue held, a thread that cannot start) are
 * injected by linking with -Wl,--wrap=bpf_link_create,--wrap=xsk_umem__create,
 * --wrap=xsk_socket__create,--wrap=pthread_create.
 *
 * Needs root (namespaces, CAP_BPF, CAP_NET_ADMIN); skipped (77) otherwise.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip_icmp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/bpf.h>
#include <linux/if_link.h>
#include <net/if.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <xdp/xsk.h>

#include <cmocka.h>

#include "tl_decode.h"
#include "tl_pipeline.h"
#include "tl_reply.h"
#include "tl_test_schema.h"
#include "tl_xdp.h"
#include "tl_xdp.skel.h"

#define TELEMETRY_PORT 5170
#define OTHER_PORT 5171
#define TCP_PORT 7070
#define RX_ADDR "198.18.7.1" /* driver's end, one queue (tlxaPID) */
#define TX_ADDR "198.18.7.2"
#define RX2_ADDR "198.18.7.5" /* driver's end, two queues (tlxcPID) */
#define TX2_ADDR "198.18.7.6"
#define MAX_EVENTS 4096
#define WAIT_NS 10000000000ull /* how long a test waits for frames it sent */
#define ACK_PAYLOAD "tapline-ack"

static int tag;
static char rxns[32], txns[32], if_a[IFNAMSIZ], if_c[IFNAMSIZ];
static int root_fd = -1, rx_fd = -1, tx_fd = -1;
static bool ns_up;
static char script[512];
static struct tl_schema *schema;
static struct tl_pipeline_conf pconf;

/* Real text for the events. */
#define MAX_TEXTS 64
static char *queries[MAX_TEXTS], *errors[MAX_TEXTS];
static unsigned n_queries, n_errors;

/* --- helpers --- */

static uint64_t
mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void
nap_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};

	nanosleep(&ts, NULL);
}

static void
enter(int fd)
{
	assert_int_equal(setns(fd, CLONE_NEWNET), 0);
}

static int
ns_socket(int ns, int domain, int type, int proto)
{
	int fd;

	enter(ns);
	fd = socket(domain, type | SOCK_CLOEXEC, proto);
	enter(root_fd);
	assert_true(fd >= 0);
	return fd;
}

static struct sockaddr_in
addr4(const char *ip, uint16_t port)
{
	struct sockaddr_in a;

	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons(port);
	assert_int_equal(inet_pton(AF_INET, ip, &a.sin_addr), 1);
	return a;
}

static void
set_timeout(int fd, int opt, unsigned ms)
{
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (long)(ms % 1000) * 1000};

	assert_int_equal(setsockopt(fd, SOL_SOCKET, opt, &tv, sizeof(tv)), 0);
}

/* A UDP socket in @p ns bound to @p ip:@p port (0: any port). */
static int
udp_bound(int ns, const char *ip, uint16_t port)
{
	int fd = ns_socket(ns, AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in a = addr4(ip, port);

	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return fd;
}

static char *
read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	if (f == NULL)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	if (buf) {
		buf[n] = '\0';
		*len = (size_t)n;
	}
	return buf;
}

static const char *
data_dir(void)
{
	const char *s = getenv("TAPLINE_DATA");

	return s && s[0] ? s : "../shared/data";
}

static int
load_texts(void)
{
	char path[512];
	size_t len;
	char *log;

	for (unsigned i = 1; i <= 22 && n_queries < MAX_TEXTS; i++) {
		snprintf(path, sizeof(path), "%s/tpch/q%02u.sql", data_dir(), i);
		queries[n_queries] = read_file(path, &len);
		if (queries[n_queries])
			n_queries++;
	}
	snprintf(path, sizeof(path), "%s/loghub/Hadoop_2k.log", data_dir());
	log = read_file(path, &len);
	if (log) {
		for (char *line = strtok(log, "\n"); line && n_errors < MAX_TEXTS;
		        line = strtok(NULL, "\n"))
			if (strstr(line, " ERROR ") || strstr(line, " WARN "))
				errors[n_errors++] = strdup(line);
		free(log);
	}
	if (n_queries == 0 || n_errors == 0) {
		fprintf(stderr, "no test data under %s (set TAPLINE_DATA)\n", data_dir());
		return -1;
	}
	return 0;
}

/* JSON string contents of @p s into @p out; the bytes written. */
static size_t
json_escape(const char *s, char *out, size_t cap)
{
	size_t n = 0;

	for (; *s && n + 7 < cap; s++) {
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
	return n;
}

/*
 * One NDJSON event for query id @p id: a TPC-H query's text; every fifth one failed with
 * a Hadoop log line as its error. Appended at @p out; the bytes written.
 */
static size_t
event_json(unsigned id, char *out, size_t cap, bool *is_error)
{
	static char esc_q[16384], esc_e[2048];
	const char *q = queries[id % n_queries];
	bool failed = id % 5 == 4;
	size_t n;

	esc_q[json_escape(q, esc_q, sizeof(esc_q))] = '\0';
	if (failed)
		esc_e[json_escape(errors[id % n_errors], esc_e, sizeof(esc_e))] = '\0';
	n = (size_t)snprintf(out, cap,
	        "{\"query_id\":\"xdp-%u\",\"event_type\":\"%s\","
	        "\"timestamp\":\"2026-11-21T05:%02u:%02u.%03uZ\",\"query_text\":\"%s\","
	        "\"metadata\":{\"user_id\":\"analyst%u\",\"database\":\"tpch\","
	        "\"duration_ms\":%u,\"rows_affected\":%u,\"error\":%s%s%s},"
	        "\"payload\":{\"stage\":%u}}\n",
	        id, failed ? "failed" : "finished", (id / 60) % 60, id % 60, id % 1000, esc_q,
	        id % 7, id * 13 % 100000, id * 3, failed ? "\"" : "", failed ? esc_e : "null",
	        failed ? "\"" : "", id % 4);
	assert_true(n < cap);
	*is_error = failed;
	return n;
}

/* --- capture runs --- */

struct sink_ctx {
	struct tl_pipeline_worker *w;
	bool ack;
	int ack_rc; /* the last tx call's result */
	uint64_t acks;
};

static struct {
	uint64_t ok, errors, rejected, dups, unknown;
	uint8_t seen[MAX_EVENTS];
} got;

static unsigned
event_id(const struct tl_event *ev)
{
	const struct tl_value *v = &ev->col[0]; /* query_id, "xdp-N" */
	unsigned id = 0;

	if (v->ptr == NULL || v->len < 5 || v->len > 12 || memcmp(v->ptr, "xdp-", 4) != 0)
		return UINT32_MAX;
	for (uint32_t i = 4; i < v->len; i++) {
		if (v->ptr[i] < '0' || v->ptr[i] > '9')
			return UINT32_MAX;
		id = id * 10 + (unsigned)(v->ptr[i] - '0');
	}
	return id;
}

/* Answer the datagram being processed the way a framed-protocol ACK would. */
static int
send_ack(struct tl_pipeline_worker *w)
{
	struct tl_l3_view l3;
	struct tl_udp_view u;
	struct tl_peer peer;
	uint8_t frame[256];
	long n;

	static uint8_t jumbo[9000];

	if (w->tx == NULL)
		return -ENOTSUP;
	/* Larger than a UMEM frame: refused and counted as dropped. */
	if (w->tx(w->tx_arg, jumbo, sizeof(jumbo)) != -EMSGSIZE)
		return -1000;
	if (tl_decode_frame(w->frame, w->frame_len, 0, &l3) != TL_REASON_OK || l3.is_fragment ||
	        tl_decode_udp(&l3, l3.l4, l3.l4_len, false, &u) != TL_REASON_OK ||
	        tl_peer_from(&peer, w->frame, w->frame_len, &l3, u.sport, u.dport) < 0)
		return -EINVAL;
	n = tl_reply_build(&peer, (const uint8_t *)ACK_PAYLOAD, sizeof(ACK_PAYLOAD) - 1, 1500,
	        frame, sizeof(frame));
	if (n < 0)
		return (int)n;
	return w->tx(w->tx_arg, frame, (uint32_t)n);
}

/* Runs on the worker threads. */
static void
sink(void *arg, const struct tl_event *ev, enum tl_reason verdict)
{
	struct sink_ctx *s = arg;
	unsigned id;

	if (verdict != TL_REASON_OK) {
		__atomic_add_fetch(&got.rejected, 1, __ATOMIC_RELAXED);
		return;
	}
	id = event_id(ev);
	if (id >= MAX_EVENTS) {
		__atomic_add_fetch(&got.unknown, 1, __ATOMIC_RELAXED);
		return;
	}
	if (__atomic_fetch_add(&got.seen[id], 1, __ATOMIC_RELAXED) != 0)
		__atomic_add_fetch(&got.dups, 1, __ATOMIC_RELAXED);
	if (ev->is_error)
		__atomic_add_fetch(&got.errors, 1, __ATOMIC_RELAXED);
	if (s->ack) {
		s->ack_rc = send_ack(s->w);
		s->acks++;
	}
	__atomic_add_fetch(&got.ok, 1, __ATOMIC_RELEASE);
}

struct run {
	struct tl_xdp *x;
	unsigned n_workers;
	struct sink_ctx sc[2];
	pthread_t thread;
	volatile int stop;
	int rc;
	bool running;
	char err[256];
};

static struct tl_pipeline_worker workers[2];
/* The run of the current test: a global, so that a failed assertion (which leaves the
 * test function) cannot leave workers running on a dead stack frame; run_teardown()
 * stops and closes it after every test. */
static struct run run_g;

static void
xdp_conf(struct tl_xdp_conf *c, const char *ifname)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->interface, sizeof(c->interface), "%s", ifname);
	c->mode = TL_XDP_MODE_AUTO;
	c->frames = 1024;
	c->frame_size = 4096;
	c->ring_size = 512;
	c->batch = 64;
	c->tick = 1000000;
	c->busy_budget = 64; /* the defaults: preferred busy polling */
	c->busy_usecs = 20;
}

/* Open @p c in the driver's namespace. */
static int
open_in_rx(const struct tl_xdp_conf *c, unsigned n_workers, struct tl_xdp **x, char *err,
        size_t errlen)
{
	const uint16_t port = TELEMETRY_PORT;
	int rc;

	enter(rx_fd);
	rc = tl_xdp_open(c, &port, 1, n_workers, x, err, errlen);
	enter(root_fd);
	return rc;
}

static void *
run_main(void *arg)
{
	struct run *r = arg;

	r->rc = tl_xdp_run(r->x, workers, 0, &r->stop);
	return NULL;
}

static void
run_start(struct run *r, const struct tl_xdp_conf *c, unsigned n_workers, bool ack)
{
	const uint16_t port = TELEMETRY_PORT;

	memset(r, 0, sizeof(*r));
	memset(&got, 0, sizeof(got));
	r->n_workers = n_workers;
	for (unsigned i = 0; i < n_workers; i++) {
		r->sc[i].w = &workers[i];
		r->sc[i].ack = ack;
		assert_int_equal(tl_pipeline_worker_init(
		                         &workers[i], &pconf, schema, &port, 1, sink, &r->sc[i]),
		        0);
	}
	if (open_in_rx(c, n_workers, &r->x, r->err, sizeof(r->err)) != 0)
		fail_msg("open: %s", r->err);
	assert_int_equal(pthread_create(&r->thread, NULL, run_main, r), 0);
	r->running = true;
}

static void
run_stop(struct run *r)
{
	if (!r->running)
		return;
	__atomic_store_n(&r->stop, 1, __ATOMIC_RELAXED);
	pthread_join(r->thread, NULL);
	r->running = false;
}

static void
run_close(struct run *r)
{
	run_stop(r);
	tl_xdp_close(r->x);
	r->x = NULL;
	for (unsigned i = 0; i < r->n_workers; i++)
		tl_pipeline_worker_fini(&workers[i]);
	r->n_workers = 0;
}

/* Wait (bounded) until the sinks counted @p n accepted events. */
static void
wait_events(uint64_t n)
{
	uint64_t deadline = mono_ns() + WAIT_NS;

	while (__atomic_load_n(&got.ok, __ATOMIC_ACQUIRE) < n && mono_ns() < deadline)
		nap_ms(5);
}

struct sent {
	unsigned datagrams, events, errors;
	unsigned fragmented; /* datagrams longer than one 1500-byte IPv4 packet */
};

/*
 * Send @p n datagrams from @p fd to @p dst: even ones hold one event, odd ones several
 * TPC-H-sized events (several KiB, so the kernel fragments them). Event ids continue from
 * s->events. Paced (1 ms per datagram) so the single copy-mode worker keeps up.
 */
static void
send_telemetry(int fd, const struct sockaddr_in *dst, unsigned n, struct sent *s)
{
	static char buf[65000];

	for (unsigned i = 0; i < n; i++) {
		unsigned k = i % 2 ? 4 : 1;
		size_t len = 0;

		for (unsigned j = 0; j < k && s->events < MAX_EVENTS; j++) {
			bool err;

			len += event_json(s->events, buf + len, sizeof(buf) - len, &err);
			s->events++;
			s->errors += err;
		}
		assert_int_equal(
		        sendto(fd, buf, len, 0, (const struct sockaddr *)dst, sizeof(*dst)),
		        (ssize_t)len);
		s->datagrams++;
		s->fragmented += len > 1500 - 20 - 8;
		nap_ms(1);
	}
}

static void
assert_every_event_once(const struct sent *s)
{
	unsigned missing = 0;

	for (unsigned i = 0; i < s->events; i++)
		missing += got.seen[i] == 0;
	if (missing || got.dups || got.unknown || got.rejected)
		fprintf(stderr,
		        "events: sent %u, ok %lu, missing %u, dups %lu, unknown %lu, "
		        "rejected %lu\n",
		        s->events, (unsigned long)got.ok, missing, (unsigned long)got.dups,
		        (unsigned long)got.unknown, (unsigned long)got.rejected);
	assert_int_equal(missing, 0);
	assert_int_equal(got.ok, s->events);
	assert_int_equal(got.errors, s->errors);
	assert_int_equal(got.dups, 0);
	assert_int_equal(got.unknown, 0);
	assert_int_equal(got.rejected, 0);
}

/* The id of the XDP program attached to @p ifname in the driver's namespace (0: none),
 * and its name. */
static uint32_t
attached_prog(const char *ifname, char *name, size_t len)
{
	struct bpf_prog_info info;
	uint32_t id = 0, ilen = sizeof(info);
	unsigned ifindex;
	int fd;

	enter(rx_fd); /* the query is a netlink request: it must be made in that namespace */
	ifindex = if_nametoindex(ifname);
	if (ifindex > 0 && bpf_xdp_query_id((int)ifindex, 0, &id) != 0)
		ifindex = 0;
	enter(root_fd);
	assert_true(ifindex > 0);
	if (name)
		name[0] = '\0';
	if (id == 0 || name == NULL)
		return id;
	fd = bpf_prog_get_fd_by_id(id);
	assert_true(fd >= 0);
	memset(&info, 0, sizeof(info));
	assert_int_equal(bpf_obj_get_info_by_fd(fd, &info, &ilen), 0);
	snprintf(name, len, "%.*s", (int)sizeof(info.name), info.name);
	close(fd);
	return id;
}

static unsigned
rx_ifindex(const char *ifname)
{
	unsigned i;

	enter(rx_fd);
	i = if_nametoindex(ifname);
	enter(root_fd);
	assert_true(i > 0);
	return i;
}

static uint16_t
icmp_cksum(const void *p, size_t n)
{
	const uint8_t *b = p;
	uint32_t s = 0;

	for (size_t i = 0; i + 1 < n; i += 2)
		s += (uint32_t)(b[i] << 8 | b[i + 1]);
	if (n & 1)
		s += (uint32_t)b[n - 1] << 8;
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return htons((uint16_t)~s);
}

/* Echo requests from the sender's namespace to @p ip; the number of replies. */
static unsigned
ping(const char *ip, unsigned count)
{
	int fd = ns_socket(tx_fd, AF_INET, SOCK_RAW, IPPROTO_ICMP);
	struct sockaddr_in dst = addr4(ip, 0);
	uint16_t ident = (uint16_t)tag;
	unsigned replies = 0;

	set_timeout(fd, SO_RCVTIMEO, 1000);
	for (unsigned seq = 1; seq <= count; seq++) {
		uint8_t pkt[64], in[256];
		struct icmphdr *h = (struct icmphdr *)pkt;

		memset(pkt, 0, sizeof(pkt));
		h->type = ICMP_ECHO;
		h->un.echo.id = htons(ident);
		h->un.echo.sequence = htons((uint16_t)seq);
		memcpy(pkt + sizeof(*h), "tapline ping", 12);
		h->checksum = icmp_cksum(pkt, sizeof(pkt));
		assert_int_equal(
		        sendto(fd, pkt, sizeof(pkt), 0, (struct sockaddr *)&dst, sizeof(dst)),
		        (ssize_t)sizeof(pkt));
		/* Other ICMP may arrive on a raw socket: read until ours, at most 8. */
		for (int tries = 0; tries < 8; tries++) {
			ssize_t n = recv(fd, in, sizeof(in), 0);
			const struct iphdr *ih = (const struct iphdr *)in;
			const struct icmphdr *r;

			if (n < (ssize_t)sizeof(*ih))
				break;
			if (n < ih->ihl * 4 + (ssize_t)sizeof(*r))
				continue;
			r = (const struct icmphdr *)(in + ih->ihl * 4);
			if (r->type == ICMP_ECHOREPLY && r->un.echo.id == htons(ident) &&
			        r->un.echo.sequence == htons((uint16_t)seq)) {
				replies++;
				break;
			}
		}
	}
	close(fd);
	return replies;
}

static void *
echo_main(void *arg)
{
	int lfd = *(int *)arg, c;
	struct pollfd p = {.fd = lfd, .events = POLLIN};
	char buf[256];
	ssize_t n;

	if (poll(&p, 1, 3000) != 1)
		return NULL;
	c = accept(lfd, NULL, NULL);
	if (c < 0)
		return NULL;
	set_timeout(c, SO_RCVTIMEO, 3000);
	n = recv(c, buf, sizeof(buf), 0);
	if (n > 0)
		(void)send(c, buf, (size_t)n, MSG_NOSIGNAL);
	close(c);
	return NULL;
}

/* A TCP round trip from the sender to a server in the driver's namespace. */
static bool
tcp_echo(const char *ip)
{
	static const char msg[] = "tapline tcp echo through the XDP program";
	int lfd = ns_socket(rx_fd, AF_INET, SOCK_STREAM, 0);
	int cfd = ns_socket(tx_fd, AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = addr4(ip, TCP_PORT);
	char buf[256];
	pthread_t t;
	ssize_t n = -1;
	int one = 1;

	assert_int_equal(setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)), 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(lfd, 1), 0);
	assert_int_equal(pthread_create(&t, NULL, echo_main, &lfd), 0);
	set_timeout(cfd, SO_SNDTIMEO, 3000);
	set_timeout(cfd, SO_RCVTIMEO, 3000);
	if (connect(cfd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	        send(cfd, msg, sizeof(msg), MSG_NOSIGNAL) == (ssize_t)sizeof(msg))
		n = recv(cfd, buf, sizeof(buf), MSG_WAITALL);
	close(cfd);
	pthread_join(t, NULL);
	close(lfd);
	return n == (ssize_t)sizeof(msg) && memcmp(buf, msg, sizeof(msg)) == 0;
}

/* Datagrams to a kernel socket on another port of the driver's address; how many arrived. */
static unsigned
udp_other_port(const char *rx_ip, const char *tx_ip, unsigned count)
{
	int rfd = udp_bound(rx_fd, rx_ip, OTHER_PORT);
	int sfd = udp_bound(tx_fd, tx_ip, 0);
	struct sockaddr_in dst = addr4(rx_ip, OTHER_PORT);
	unsigned n = 0;
	char buf[128];

	set_timeout(rfd, SO_RCVTIMEO, 2000);
	for (unsigned i = 0; i < count; i++)
		assert_int_equal(
		        sendto(sfd, "not telemetry", 13, 0, (struct sockaddr *)&dst, sizeof(dst)),
		        13);
	for (unsigned i = 0; i < count; i++)
		if (recv(rfd, buf, sizeof(buf), 0) == 13 && memcmp(buf, "not telemetry", 13) == 0)
			n++;
	close(rfd);
	close(sfd);
	return n;
}

/* --- the XDP program on crafted frames (BPF_PROG_TEST_RUN) --- */

enum { L_END, L_ETH, L_VLAN, L_IP4, L_IP6, L_EXT, L_FRAG6, L_UDP, L_TCP, L_RAW, L_CUT };
enum { E_TELEMETRY, E_PASS, E_BAD };

struct layer {
	int kind;
	uint32_t a, b, c;
};

struct frame_case {
	const char *name;
	int expect;
	struct layer l[12];
};

static void
be16(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/*
 * Layers, each with the "next protocol" value it carries: ETH a=EtherType; VLAN a=inner
 * EtherType; IP4 a=IHL b=protocol c=flags+offset field; IP6 a=next header; EXT a=next
 * header b=length (8-byte units beyond the first 8); FRAG6 a=next header b=offset field;
 * UDP a=destination port; TCP a=destination port; RAW a=bytes of payload; CUT a=total
 * length to truncate the frame to.
 */
static size_t
build_frame(const struct layer *l, uint8_t *f, size_t cap)
{
	size_t n = 0;

	memset(f, 0, cap);
	for (; l->kind != L_END; l++) {
		uint8_t *p = f + n;

		switch (l->kind) {
		case L_ETH:
			memcpy(p, "\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02", 12);
			be16(p + 12, l->a);
			n += 14;
			break;
		case L_VLAN:
			be16(p, 100);
			be16(p + 2, l->a);
			n += 4;
			break;
		case L_IP4:
			p[0] = (uint8_t)(0x40 | (l->a & 0xf));
			p[8] = 64;
			p[9] = (uint8_t)l->b;
			be16(p + 6, l->c);
			memcpy(p + 12, "\xc6\x12\x07\x02\xc6\x12\x07\x01", 8);
			for (uint32_t i = 20; i < l->a * 4; i++)
				p[i] = 1; /* NOP options */
			n += l->a < 5 ? 20 : l->a * 4;
			break;
		case L_IP6:
			p[0] = 0x60;
			p[6] = (uint8_t)l->a;
			p[7] = 64;
			p[23] = 2;
			p[39] = 1;
			n += 40;
			break;
		case L_EXT:
			p[0] = (uint8_t)l->a;
			p[1] = (uint8_t)l->b;
			n += (l->b + 1) * 8;
			break;
		case L_FRAG6:
			p[0] = (uint8_t)l->a;
			be16(p + 2, l->b);
			n += 8;
			break;
		case L_UDP:
			be16(p, 40000);
			be16(p + 2, l->a);
			be16(p + 4, 24);
			n += 8;
			break;
		case L_TCP:
			be16(p, 40000);
			be16(p + 2, l->a);
			p[12] = 0x50;
			n += 20;
			break;
		case L_RAW:
			memset(p, 'x', l->a);
			n += l->a;
			break;
		case L_CUT:
			n = l->a;
			break;
		}
		assert_true(n <= cap);
	}
	return n;
}

#define ETH(t)                                                                                     \
	{                                                                                          \
		L_ETH, t                                                                           \
	}
#define VLAN(t)                                                                                    \
	{                                                                                          \
		L_VLAN, t                                                                          \
	}
#define IP4(ihl, proto, frag)                                                                      \
	{                                                                                          \
		L_IP4, ihl, proto, frag                                                            \
	}
#define UDP(p)                                                                                     \
	{                                                                                          \
		L_UDP, p                                                                           \
	}
#define RAW(n)                                                                                     \
	{                                                                                          \
		L_RAW, n                                                                           \
	}
#define T_UDP 17
#define T_TCP 6

static const struct frame_case frame_cases[] = {
        {"ipv4 udp telemetry port", E_TELEMETRY,
                {ETH(0x0800), IP4(5, T_UDP, 0), UDP(5170), RAW(16)}},
        {"ipv4 udp highest configured port", E_TELEMETRY,
                {ETH(0x0800), IP4(5, T_UDP, 0), UDP(65535), RAW(16)}},
        {"ipv4 udp other port", E_PASS, {ETH(0x0800), IP4(5, T_UDP, 0), UDP(5171), RAW(16)}},
        {"ipv4 udp port 0", E_PASS, {ETH(0x0800), IP4(5, T_UDP, 0), UDP(0), RAW(16)}},
        {"ipv4 tcp telemetry port", E_PASS,
                {ETH(0x0800), IP4(5, T_TCP, 0), {L_TCP, 5170}, RAW(16)}},
        {"ipv4 icmp", E_PASS, {ETH(0x0800), IP4(5, 1, 0), RAW(16)}},
        {"ipv4 options", E_TELEMETRY, {ETH(0x0800), IP4(7, T_UDP, 0), UDP(5170), RAW(16)}},
        {"ipv4 full options", E_TELEMETRY, {ETH(0x0800), IP4(15, T_UDP, 0), UDP(5170), RAW(4)}},
        {"ipv4 options beyond frame", E_BAD, {ETH(0x0800), IP4(15, T_UDP, 0), {L_CUT, 60}}},
        {"ipv4 ihl below 5", E_BAD, {ETH(0x0800), IP4(4, T_UDP, 0), UDP(5170), RAW(16)}},
        {"ipv4 truncated header", E_BAD, {ETH(0x0800), IP4(5, T_UDP, 0), {L_CUT, 30}}},
        {"ipv4 udp header truncated", E_BAD, {ETH(0x0800), IP4(5, T_UDP, 0), {L_CUT, 38}}},
        {"ipv4 version 6 under 0x0800", E_BAD, {ETH(0x0800), {L_IP6, T_UDP}, UDP(5170), RAW(8)}},
        {"ipv4 first fragment telemetry", E_TELEMETRY,
                {ETH(0x0800), IP4(5, T_UDP, 0x2000), UDP(5170), RAW(16)}},
        {"ipv4 first fragment other port", E_PASS,
                {ETH(0x0800), IP4(5, T_UDP, 0x2000), UDP(53), RAW(16)}},
        {"ipv4 middle fragment udp", E_TELEMETRY,
                {ETH(0x0800), IP4(5, T_UDP, 0x2000 | 185), RAW(64)}},
        {"ipv4 last fragment udp", E_TELEMETRY, {ETH(0x0800), IP4(5, T_UDP, 370), RAW(8)}},
        {"ipv4 non-first fragment tcp", E_PASS, {ETH(0x0800), IP4(5, T_TCP, 185), RAW(64)}},
        {"vlan ipv4 telemetry", E_TELEMETRY,
                {ETH(0x8100), VLAN(0x0800), IP4(5, T_UDP, 0), UDP(5170), RAW(16)}},
        {"qinq ipv4 telemetry", E_TELEMETRY,
                {ETH(0x88a8), VLAN(0x8100), VLAN(0x0800), IP4(5, T_UDP, 0), UDP(5170), RAW(16)}},
        {"qinq 8100 8100 ipv6 telemetry", E_TELEMETRY,
                {ETH(0x8100), VLAN(0x8100), VLAN(0x86dd), {L_IP6, T_UDP}, UDP(5170), RAW(16)}},
        {"three vlan tags", E_BAD,
                {ETH(0x8100), VLAN(0x8100), VLAN(0x8100), VLAN(0x0800), IP4(5, T_UDP, 0),
                        UDP(5170)}},
        {"vlan tag truncated", E_BAD, {ETH(0x8100), {L_CUT, 16}}},
        {"vlan arp", E_PASS, {ETH(0x8100), VLAN(0x0806), RAW(28)}},
        {"arp", E_PASS, {ETH(0x0806), RAW(28)}},
        {"lldp", E_PASS, {ETH(0x88cc), RAW(32)}},
        {"ethernet header only", E_BAD, {ETH(0x0800), {L_CUT, 14}}},
        {"ipv6 udp telemetry", E_TELEMETRY, {ETH(0x86dd), {L_IP6, T_UDP}, UDP(5170), RAW(16)}},
        {"ipv6 udp other port", E_PASS, {ETH(0x86dd), {L_IP6, T_UDP}, UDP(5171), RAW(16)}},
        {"ipv6 icmpv6", E_PASS, {ETH(0x86dd), {L_IP6, 58}, RAW(16)}},
        {"ipv6 truncated", E_BAD, {ETH(0x86dd), {L_IP6, T_UDP}, {L_CUT, 40}}},
        {"ipv6 version 4 under 0x86dd", E_BAD, {ETH(0x86dd), IP4(5, T_UDP, 0), RAW(40)}},
        {"ipv6 hop-by-hop dest-opts routing", E_TELEMETRY,
                {ETH(0x86dd), {L_IP6, 0}, {L_EXT, 60, 0}, {L_EXT, 43, 1}, {L_EXT, T_UDP, 2},
                        UDP(5170), RAW(16)}},
        {"ipv6 first fragment telemetry", E_TELEMETRY,
                {ETH(0x86dd), {L_IP6, 44}, {L_FRAG6, T_UDP, 0x0001}, UDP(5170), RAW(16)}},
        {"ipv6 first fragment other port", E_PASS,
                {ETH(0x86dd), {L_IP6, 44}, {L_FRAG6, T_UDP, 0x0001}, UDP(5171), RAW(16)}},
        {"ipv6 non-first fragment udp", E_TELEMETRY,
                {ETH(0x86dd), {L_IP6, 44}, {L_FRAG6, T_UDP, 0x05a8}, RAW(64)}},
        {"ipv6 hop-by-hop then non-first fragment udp", E_TELEMETRY,
                {ETH(0x86dd), {L_IP6, 0}, {L_EXT, 44, 0}, {L_FRAG6, T_UDP, 0x05a8}, RAW(64)}},
        {"ipv6 non-first fragment tcp", E_PASS,
                {ETH(0x86dd), {L_IP6, 44}, {L_FRAG6, T_TCP, 0x05a8}, RAW(64)}},
        {"ipv6 eight extension headers", E_TELEMETRY,
                {ETH(0x86dd), {L_IP6, 60}, {L_EXT, 60}, {L_EXT, 60}, {L_EXT, 60}, {L_EXT, 60},
                        {L_EXT, 60}, {L_EXT, 60}, {L_EXT, 60}, {L_EXT, T_UDP}, UDP(5170)}},
        {"ipv6 nine extension headers", E_BAD,
                {ETH(0x86dd), {L_IP6, 60}, {L_EXT, 60}, {L_EXT, 60}, {L_EXT, 60}, {L_EXT, 60},
                        {L_EXT, 60}, {L_EXT, 60}, {L_EXT, 60}, {L_EXT, 60}, {L_EXT, T_UDP}}},
        {"ipv6 extension header beyond frame", E_BAD,
                {ETH(0x86dd), {L_IP6, 60}, {L_EXT, T_UDP, 255}, {L_CUT, 70}}},
        {"ipv6 extension header length past frame end", E_BAD,
                {ETH(0x86dd), {L_IP6, 60}, {L_EXT, T_UDP, 200}, {L_CUT, 62}, UDP(5170)}},
        {"ipv6 fragment header truncated", E_BAD, {ETH(0x86dd), {L_IP6, 44}, {L_CUT, 58}}},
        {"ipv6 udp header truncated", E_BAD, {ETH(0x86dd), {L_IP6, T_UDP}, {L_CUT, 60}}},
};

static struct tl_prog_fixture {
	struct tl_xdp_bpf *skel;
	int ncpus;
} pf;

static void
prog_counters(struct tl_xdp_prog_stats *st)
{
	uint64_t v[1024][4];
	uint32_t zero = 0;

	assert_true(pf.ncpus > 0 && pf.ncpus <= 1024);
	memset(st, 0, sizeof(*st));
	assert_int_equal(bpf_map__lookup_elem(pf.skel->maps.tl_counters, &zero, sizeof(zero), v,
	                         sizeof(v[0]) * (size_t)pf.ncpus, 0),
	        0);
	for (int i = 0; i < pf.ncpus; i++) {
		st->redirected += v[i][0];
		st->passed += v[i][1];
		st->parse_failed += v[i][2];
		st->redirect_failed += v[i][3];
	}
}

static void
test_xdp_prog_crafted_frames_classified(void **state)
{
	static uint8_t frame[4096];
	unsigned failures = 0;

	(void)state;
	for (size_t i = 0; i < sizeof(frame_cases) / sizeof(frame_cases[0]); i++) {
		const struct frame_case *fc = &frame_cases[i];
		struct tl_xdp_prog_stats a, b;
		LIBBPF_OPTS(bpf_test_run_opts, o);
		uint64_t dt, dp, dbad;

		o.data_in = frame;
		o.data_size_in = (uint32_t)build_frame(fc->l, frame, sizeof(frame));
		o.repeat = 1;
		prog_counters(&a);
		assert_int_equal(
		        bpf_prog_test_run_opts(bpf_program__fd(pf.skel->progs.tapline_xdp), &o), 0);
		prog_counters(&b);
		/* No socket in the map: telemetry is passed too, counted as redirect_failed. */
		dt = b.redirect_failed - a.redirect_failed;
		dp = b.passed - a.passed;
		dbad = b.parse_failed - a.parse_failed;
		if (o.retval != XDP_PASS || dp != 1 || b.redirected != a.redirected ||
		        dt != (fc->expect == E_TELEMETRY) || dbad != (fc->expect == E_BAD)) {
			fprintf(stderr,
			        "frame '%s' (%u bytes): retval %u, telemetry %lu, bad %lu\n",
			        fc->name, o.data_size_in, o.retval, (unsigned long)dt,
			        (unsigned long)dbad);
			failures++;
		}
	}
	assert_int_equal(failures, 0);
}

/* --- faults injected into the libraries (linked with -Wl,--wrap=...) --- */

static int fail_link_drv, fail_link_skb; /* errno for bpf_link_create() per mode; 0: none */
static int fail_umem;                    /* errno for xsk_umem__create() */
static int busy_binds;                   /* xsk_socket__create() calls to answer -EBUSY */
static int fail_thread_at;               /* pthread_create() call (1-based) to fail; 0: none */

int __real_bpf_link_create(int prog_fd, int target_fd, enum bpf_attach_type type,
        const struct bpf_link_create_opts *opts);
int __wrap_bpf_link_create(int prog_fd, int target_fd, enum bpf_attach_type type,
        const struct bpf_link_create_opts *opts);
int __real_xsk_umem__create(struct xsk_umem **umem, void *area, __u64 size,
        struct xsk_ring_prod *fill, struct xsk_ring_cons *comp,
        const struct xsk_umem_config *config);
int __wrap_xsk_umem__create(struct xsk_umem **umem, void *area, __u64 size,
        struct xsk_ring_prod *fill, struct xsk_ring_cons *comp,
        const struct xsk_umem_config *config);
int __real_xsk_socket__create(struct xsk_socket **xsk, const char *ifname, __u32 queue,
        struct xsk_umem *umem, struct xsk_ring_cons *rx, struct xsk_ring_prod *tx,
        const struct xsk_socket_config *config);
int __wrap_xsk_socket__create(struct xsk_socket **xsk, const char *ifname, __u32 queue,
        struct xsk_umem *umem, struct xsk_ring_cons *rx, struct xsk_ring_prod *tx,
        const struct xsk_socket_config *config);
int __real_pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg);
int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg);

int
__wrap_bpf_link_create(int prog_fd, int target_fd, enum bpf_attach_type type,
        const struct bpf_link_create_opts *opts)
{
	uint32_t flags = opts ? opts->flags : 0;

	if ((flags & XDP_FLAGS_DRV_MODE) && fail_link_drv)
		return -fail_link_drv;
	if ((flags & XDP_FLAGS_SKB_MODE) && fail_link_skb)
		return -fail_link_skb;
	return __real_bpf_link_create(prog_fd, target_fd, type, opts);
}

int
__wrap_xsk_umem__create(struct xsk_umem **umem, void *area, __u64 size, struct xsk_ring_prod *fill,
        struct xsk_ring_cons *comp, const struct xsk_umem_config *config)
{
	if (fail_umem)
		return -fail_umem;
	return __real_xsk_umem__create(umem, area, size, fill, comp, config);
}

int
__wrap_xsk_socket__create(struct xsk_socket **xsk, const char *ifname, __u32 queue,
        struct xsk_umem *umem, struct xsk_ring_cons *rx, struct xsk_ring_prod *tx,
        const struct xsk_socket_config *config)
{
	if (busy_binds > 0) {
		busy_binds--;
		return -EBUSY;
	}
	return __real_xsk_socket__create(xsk, ifname, queue, umem, rx, tx, config);
}

int
__wrap_pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg)
{
	if (fail_thread_at > 0 && --fail_thread_at == 0)
		return EAGAIN;
	return __real_pthread_create(t, attr, fn, arg);
}

static void
faults_clear(void)
{
	fail_link_drv = fail_link_skb = fail_umem = busy_binds = fail_thread_at = 0;
}

/* --- driver tests without traffic --- */

static void
test_xdp_open_unknown_interface_enodev(void **state)
{
	static char sentinel;
	struct tl_xdp_conf c;
	struct tl_xdp *x = (struct tl_xdp *)&sentinel; /* open must clear it */
	char err[256];

	(void)state;
	xdp_conf(&c, "tlxnosuch0");
	assert_int_equal(open_in_rx(&c, 1, &x, err, sizeof(err)), -ENODEV);
	assert_null(x);
	assert_non_null(strstr(err, "no such interface 'tlxnosuch0'"));
}

static void
test_xdp_probe_unknown_interface_enodev(void **state)
{
	struct tl_xdp_conf c;
	char err[256];

	(void)state;
	xdp_conf(&c, "tlxnosuch0");
	assert_int_equal(tl_xdp_probe(&c, err, sizeof(err)), -ENODEV);
	assert_non_null(strstr(err, "no such interface"));
}

static void
test_xdp_open_bad_conf_einval(void **state)
{
	static const uint16_t port = TELEMETRY_PORT, port0 = 0;
	struct tl_xdp_conf c;
	struct tl_xdp *x = NULL;
	char err[256];

	(void)state;
	enter(rx_fd);
	xdp_conf(&c, "");
	assert_int_equal(tl_xdp_open(&c, &port, 1, 1, &x, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "interface is not set"));
	xdp_conf(&c, "tlx-much-too-long-name");
	assert_int_equal(tl_xdp_open(&c, &port, 1, 1, &x, err, sizeof(err)), -EINVAL);
	xdp_conf(&c, if_a);
	assert_int_equal(tl_xdp_open(&c, &port, 1, 0, &x, err, sizeof(err)), -EINVAL);
	assert_int_equal(tl_xdp_open(&c, &port, 0, 1, &x, err, sizeof(err)), -EINVAL);
	assert_int_equal(tl_xdp_open(&c, NULL, 1, 1, &x, err, sizeof(err)), -EINVAL);
	assert_int_equal(tl_xdp_open(&c, &port0, 1, 1, &x, err, sizeof(err)), -EINVAL);
	c.frames = 1000;
	assert_int_equal(tl_xdp_open(&c, &port, 1, 1, &x, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "frames"));
	xdp_conf(&c, if_a);
	c.frame_size = 3000;
	assert_int_equal(tl_xdp_open(&c, &port, 1, 1, &x, err, sizeof(err)), -EINVAL);
	xdp_conf(&c, if_a);
	c.ring_size = 100;
	assert_int_equal(tl_xdp_open(&c, &port, 1, 1, &x, err, sizeof(err)), -EINVAL);
	xdp_conf(&c, if_a);
	c.batch = 0;
	assert_int_equal(tl_xdp_open(&c, &port, 1, 1, &x, err, sizeof(err)), -EINVAL);
	xdp_conf(&c, if_a);
	c.mode = 7;
	assert_int_equal(tl_xdp_open(&c, &port, 1, 1, &x, err, sizeof(err)), -EINVAL);
	xdp_conf(&c, if_a);
	c.mode = TL_XDP_MODE_ZEROCOPY;
	c.skb_mode = true;
	assert_int_equal(tl_xdp_open(&c, &port, 1, 1, &x, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "native"));
	xdp_conf(&c, if_a);
	snprintf(c.cpus, sizeof(c.cpus), "1,x");
	assert_int_equal(tl_xdp_open(&c, &port, 1, 1, &x, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "cpus"));
	xdp_conf(&c, if_a);
	c.queue = 4095;
	assert_int_equal(tl_xdp_open(&c, &port, 1, 2, &x, err, sizeof(err)), -EINVAL);
	enter(root_fd);
	assert_null(x);
	/* None of them touched the interface. */
	assert_int_equal(attached_prog(if_a, NULL, 0), 0);
}

static void
test_xdp_more_workers_than_queues_einval(void **state)
{
	struct tl_xdp_conf c;
	struct tl_xdp *x = NULL;
	char err[256];

	(void)state;
	xdp_conf(&c, if_a); /* one RX queue */
	assert_int_equal(open_in_rx(&c, 2, &x, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "1 RX queue"));
	c.queue = 1;
	assert_int_equal(open_in_rx(&c, 1, &x, err, sizeof(err)), -EINVAL);
	assert_int_equal(attached_prog(if_a, NULL, 0), 0);
}

static int
child_unprivileged(void)
{
	struct tl_xdp_conf c;
	struct tl_xdp *x = NULL;
	const uint16_t port = TELEMETRY_PORT;
	char err[256];
	int rc;

	if (setresgid(65534, 65534, 65534) != 0 || setresuid(65534, 65534, 65534) != 0)
		return 2;
	xdp_conf(&c, "lo");
	rc = tl_xdp_open(&c, &port, 1, 1, &x, err, sizeof(err));
	tl_xdp_close(x);
	if (rc != -EPERM || strstr(err, "CAP_NET_ADMIN") == NULL) {
		fprintf(stderr, "unprivileged open: %d %s\n", rc, err);
		return 1;
	}
	rc = tl_xdp_probe(&c, err, sizeof(err));
	return rc == -EPERM ? 0 : 3;
}

static void
test_xdp_open_unprivileged_eperm(void **state)
{
	pid_t pid;
	int st;

	(void)state;
	fflush(NULL);
	pid = fork();
	if (pid == 0)
		_exit(child_unprivileged());
	assert_true(pid > 0);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

static void
test_xdp_close_stats_null_safe(void **state)
{
	struct tl_counters c;

	(void)state;
	memset(&c, 0, sizeof(c));
	tl_xdp_close(NULL);
	tl_xdp_stats(NULL, &c);
	assert_int_equal(c.rx_missed, 0);
}

static void
test_xdp_opts_defaults_valid(void **state)
{
	struct tl_xdp_conf c;

	(void)state;
	memset(&c, 0xa5, sizeof(c));
	assert_int_equal(tl_opt_defaults(tl_xdp_opts, &c), 0);
	assert_int_equal(c.interface[0], '\0');
	assert_int_equal(c.queue, 0);
	assert_int_equal(c.mode, TL_XDP_MODE_AUTO);
	assert_false(c.skb_mode);
	assert_int_equal(c.frames, 4096);
	assert_int_equal(c.frame_size, 4096);
	assert_int_equal(c.ring_size, 2048);
	assert_int_equal(c.batch, 64);
	assert_int_equal(c.tick, 1000000);
	assert_false(c.busy_poll);
	assert_int_equal(c.busy_budget, 64);
	assert_int_equal(c.busy_usecs, 20);
	assert_int_equal(c.cpus[0], '\0');
	assert_string_equal(tl_xdp_mode_names[c.mode], "auto");
	assert_string_equal(tl_xdp_mode_names[TL_XDP_MODE_ZEROCOPY], "zerocopy");
	assert_string_equal(tl_xdp_mode_names[TL_XDP_MODE_COPY], "copy");
	assert_null(tl_xdp_mode_names[3]);
}

static void
test_xdp_probe_free_interface_ok_detached(void **state)
{
	struct tl_xdp_conf c;
	char err[256];
	int rc;

	(void)state;
	xdp_conf(&c, if_a);
	enter(rx_fd);
	rc = tl_xdp_probe(&c, err, sizeof(err));
	enter(root_fd);
	if (rc != 0)
		fprintf(stderr, "probe: %s\n", err);
	assert_int_equal(rc, 0);
	assert_int_equal(attached_prog(if_a, NULL, 0), 0);
}

/* --- capture --- */

static void
test_xdp_capture_telemetry_kernel_traffic_passes(void **state)
{
	struct tl_xdp_conf c;
	struct tl_xdp_prog_stats ps;
	struct tl_counters dc;
	struct sockaddr_in dst = addr4(RX_ADDR, TELEMETRY_PORT);
	struct sent s = {0};
	char name[32];
	struct run *r = &run_g;
	unsigned pings, others;
	bool echoed;
	int sfd;

	(void)state;
	xdp_conf(&c, if_a);
	run_start(r, &c, 1, false);
	printf("        %s\n", tl_xdp_describe(r->x));
	assert_non_null(strstr(tl_xdp_describe(r->x), if_a));
	assert_non_null(
	        strstr(tl_xdp_describe(r->x), tl_xdp_zerocopy(r->x) ? "zero-copy" : "copy"));
	/* Busy polling is on by default; the test veth does not defer its NAPI, and the
	 * start-up line says how to make it. */
	assert_non_null(strstr(tl_xdp_describe(r->x), "busy polling, budget 64"));
	assert_non_null(strstr(tl_xdp_describe(r->x), "napi_defer_hard_irqs"));
	assert_int_equal(attached_prog(if_a, name, sizeof(name)) != 0, 1);
	assert_string_equal(name, "tapline_xdp");

	sfd = udp_bound(tx_fd, TX_ADDR, 0);
	send_telemetry(sfd, &dst, 40, &s);
	/* Kernel traffic to the same address keeps working: ARP (the driver's side has no
	 * static entry for the sender), ICMP, TCP, UDP to another port. */
	pings = ping(RX_ADDR, 3);
	echoed = tcp_echo(RX_ADDR);
	others = udp_other_port(RX_ADDR, TX_ADDR, 3);
	send_telemetry(sfd, &dst, 20, &s);
	close(sfd);
	wait_events(s.events);
	run_stop(r);

	assert_int_equal(tl_xdp_prog_stats(r->x, &ps), 0);
	memset(&dc, 0, sizeof(dc));
	tl_xdp_stats(r->x, &dc);
	printf("        sent %u datagrams, %u events; frames %lu (reassembled %lu); prog: "
	       "redirected %lu passed %lu parse_failed %lu redirect_failed %lu\n",
	        s.datagrams, s.events, (unsigned long)workers[0].cnt.rx_frames,
	        (unsigned long)workers[0].cnt.reassembled, (unsigned long)ps.redirected,
	        (unsigned long)ps.passed, (unsigned long)ps.parse_failed,
	        (unsigned long)ps.redirect_failed);
	assert_int_equal(pings, 3);
	assert_true(echoed);
	assert_int_equal(others, 3);
	assert_every_event_once(&s);
	assert_int_equal(r->rc, 0);
	/* The long datagrams were fragmented by the sender and reassembled by the pipeline. */
	assert_int_equal(workers[0].cnt.udp_datagrams, s.datagrams);
	assert_true(s.fragmented >= s.datagrams / 2);
	assert_int_equal(workers[0].cnt.reassembled, s.fragmented);
	/* Counters add up: what the program redirected is what the pipeline saw. */
	assert_int_equal(ps.redirected, workers[0].cnt.rx_frames);
	assert_true(ps.redirected > s.datagrams);
	/* 3 echo requests + 3 UDP + at least SYN, ACK, data + the ARP reply. */
	assert_true(ps.passed >= 3 + 3 + 3 + 1);
	assert_int_equal(ps.parse_failed, 0);
	assert_int_equal(ps.redirect_failed, 0);
	assert_int_equal(dc.rx_missed, 0);
	assert_int_equal(dc.tx_frames, 0);
	run_close(r);
	/* Detached on close. */
	assert_int_equal(attached_prog(if_a, NULL, 0), 0);
}

static void
test_xdp_tx_ack_reaches_sender(void **state)
{
	struct tl_xdp_conf c;
	struct sockaddr_in dst = addr4(RX_ADDR, TELEMETRY_PORT), from;
	struct tl_counters dc;
	struct sent s = {0};
	struct run *r = &run_g;
	unsigned acks = 0;
	char buf[256];
	int sfd;

	(void)state;
	xdp_conf(&c, if_a);
	run_start(r, &c, 1, true);
	sfd = udp_bound(tx_fd, TX_ADDR, 40002);
	set_timeout(sfd, SO_RCVTIMEO, 3000);
	for (unsigned i = 0; i < 3; i++) {
		socklen_t fl = sizeof(from);
		ssize_t n;

		send_telemetry(sfd, &dst, 1, &s); /* one event each */
		n = recvfrom(sfd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl);
		if (n == (ssize_t)sizeof(ACK_PAYLOAD) - 1 &&
		        memcmp(buf, ACK_PAYLOAD, sizeof(ACK_PAYLOAD) - 1) == 0 &&
		        from.sin_port == htons(TELEMETRY_PORT) &&
		        from.sin_addr.s_addr == dst.sin_addr.s_addr)
			acks++;
	}
	close(sfd);
	wait_events(s.events);
	run_stop(r);
	memset(&dc, 0, sizeof(dc));
	tl_xdp_stats(r->x, &dc);
	assert_int_equal(r->sc[0].ack_rc, 0);
	assert_int_equal(r->sc[0].acks, 3);
	assert_int_equal(acks, 3);
	assert_int_equal(dc.tx_frames, 3);
	assert_int_equal(dc.tx_dropped, 3); /* the jumbo frames */
	run_close(r);
}

static void
test_xdp_skb_mode_captures_events(void **state)
{
	struct tl_xdp_conf c;
	struct tl_xdp_prog_stats ps;
	struct sockaddr_in dst = addr4(RX_ADDR, TELEMETRY_PORT);
	struct sent s = {0};
	struct run *r = &run_g;
	int sfd;

	(void)state;
	xdp_conf(&c, if_a);
	c.skb_mode = true;
	c.mode = TL_XDP_MODE_COPY;
	c.frame_size = 2048;
	c.busy_poll = true; /* spins: the run below is short */
	c.busy_budget = 0;
	snprintf(c.cpus, sizeof(c.cpus), "0-1");
	run_start(r, &c, 1, false);
	printf("        %s\n", tl_xdp_describe(r->x));
	assert_non_null(strstr(tl_xdp_describe(r->x), "no busy polling"));
	assert_non_null(strstr(tl_xdp_describe(r->x), "generic (SKB) mode"));
	assert_non_null(strstr(tl_xdp_describe(r->x), "copy (as configured)"));
	assert_false(tl_xdp_zerocopy(r->x));
	sfd = udp_bound(tx_fd, TX_ADDR, 0);
	send_telemetry(sfd, &dst, 10, &s);
	close(sfd);
	wait_events(s.events);
	run_stop(r);
	assert_int_equal(tl_xdp_prog_stats(r->x, &ps), 0);
	assert_every_event_once(&s);
	assert_int_equal(ps.redirected, workers[0].cnt.rx_frames);
	assert_int_equal(ps.redirect_failed, 0);
	run_close(r);
	assert_int_equal(attached_prog(if_a, NULL, 0), 0);
}

static void
test_xdp_two_queues_capture_every_event(void **state)
{
	struct tl_xdp_conf c;
	struct tl_xdp_prog_stats ps;
	struct sockaddr_in dst = addr4(RX2_ADDR, TELEMETRY_PORT);
	struct sent s = {0};
	struct run *r = &run_g;

	(void)state;
	xdp_conf(&c, if_c);
	run_start(r, &c, 2, false);
	printf("        %s\n", tl_xdp_describe(r->x));
	assert_non_null(strstr(tl_xdp_describe(r->x), "queues 0-1"));
	/* Several source ports: the sender's queue choice spreads them (or not: either way
	 * every event must arrive once). */
	for (unsigned p = 0; p < 8; p++) {
		int sfd = udp_bound(tx_fd, TX2_ADDR, (uint16_t)(41000 + p));

		send_telemetry(sfd, &dst, 4, &s);
		close(sfd);
	}
	wait_events(s.events);
	run_stop(r);
	assert_int_equal(tl_xdp_prog_stats(r->x, &ps), 0);
	printf("        queue 0: %lu frames, queue 1: %lu frames\n",
	        (unsigned long)workers[0].cnt.rx_frames, (unsigned long)workers[1].cnt.rx_frames);
	assert_every_event_once(&s);
	assert_int_equal(ps.redirected, workers[0].cnt.rx_frames + workers[1].cnt.rx_frames);
	assert_int_equal(ps.redirect_failed, 0);
	assert_int_equal(ps.parse_failed, 0);
	run_close(r);
}

static void
test_xdp_zerocopy_mode_obtained_or_eopnotsupp(void **state)
{
	struct tl_xdp_conf c;
	struct tl_xdp *x = NULL;
	char err[256];
	int rc;

	(void)state;
	xdp_conf(&c, if_a);
	c.mode = TL_XDP_MODE_ZEROCOPY;
	rc = open_in_rx(&c, 1, &x, err, sizeof(err));
	printf("        zerocopy mode on veth: %s\n", rc == 0 ? tl_xdp_describe(x) : err);
	if (rc == 0) {
		assert_true(tl_xdp_zerocopy(x));
		tl_xdp_close(x);
	} else {
		assert_int_equal(rc, -EOPNOTSUPP);
		assert_non_null(strstr(err, "zero-copy"));
		assert_null(x);
	}
	assert_int_equal(attached_prog(if_a, NULL, 0), 0);
}

static void
test_xdp_native_refused_generic_fallback(void **state)
{
	struct tl_xdp_conf c;
	struct tl_xdp_prog_stats ps;
	struct sockaddr_in dst = addr4(RX_ADDR, TELEMETRY_PORT);
	struct sent s = {0};
	struct run *r = &run_g;
	int sfd;

	(void)state;
	fail_link_drv = EOPNOTSUPP; /* a driver without native XDP */
	xdp_conf(&c, if_a);
	run_start(r, &c, 1, false);
	printf("        %s\n", tl_xdp_describe(r->x));
	assert_non_null(strstr(tl_xdp_describe(r->x),
	        "generic (SKB) mode (native refused: Operation not supported)"));
	assert_non_null(strstr(tl_xdp_describe(r->x), "copy (generic mode)"));
	sfd = udp_bound(tx_fd, TX_ADDR, 0);
	send_telemetry(sfd, &dst, 4, &s);
	close(sfd);
	wait_events(s.events);
	run_stop(r);
	assert_int_equal(tl_xdp_prog_stats(r->x, &ps), 0);
	assert_every_event_once(&s);
	assert_int_equal(ps.redirected, workers[0].cnt.rx_frames);
	run_close(r);
	assert_int_equal(attached_prog(if_a, NULL, 0), 0);
}

/* Attach failures: each maps to its documented error, and nothing stays attached. */
static void
test_xdp_attach_refused_mapped_errors(void **state)
{
	static const struct {
		int drv, skb, mode, rc;
		const char *msg;
	} cases[] = {
	        {EOPNOTSUPP, EOPNOTSUPP, TL_XDP_MODE_AUTO, -EOPNOTSUPP, "does not support XDP"},
	        {EINVAL, EINVAL, TL_XDP_MODE_AUTO, -EOPNOTSUPP, "does not support XDP"},
	        {EOPNOTSUPP, 0, TL_XDP_MODE_ZEROCOPY, -EOPNOTSUPP, "zero-copy needs native XDP"},
	        {EPERM, 0, TL_XDP_MODE_AUTO, -EPERM, "not permitted"},
	        {EBUSY, 0, TL_XDP_MODE_AUTO, -EBUSY, "meanwhile"},
	        {ENOMEM, ENOMEM, TL_XDP_MODE_AUTO, -ENOMEM, "cannot attach"},
	};
	struct tl_xdp_conf c;
	char err[512];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct tl_xdp *x = NULL;
		int rc;

		fail_link_drv = cases[i].drv;
		fail_link_skb = cases[i].skb;
		xdp_conf(&c, if_a);
		c.mode = cases[i].mode;
		rc = open_in_rx(&c, 1, &x, err, sizeof(err));
		tl_xdp_close(x);
		if (rc != cases[i].rc || strstr(err, cases[i].msg) == NULL)
			fail_msg("case %zu: %d '%s'", i, rc, err);
		assert_null(x);
		assert_int_equal(attached_prog(if_a, NULL, 0), 0);
	}
}

static void
test_xdp_umem_refused_enomem_eopnotsupp(void **state)
{
	struct tl_xdp_conf c;
	struct tl_xdp *x = NULL;
	char err[512];

	(void)state;
	xdp_conf(&c, if_a);
	fail_umem = ENOMEM; /* RLIMIT_MEMLOCK without CAP_IPC_LOCK */
	assert_int_equal(open_in_rx(&c, 1, &x, err, sizeof(err)), -ENOMEM);
	assert_non_null(strstr(err, "RLIMIT_MEMLOCK"));
	assert_int_equal(attached_prog(if_a, NULL, 0), 0); /* detached again */
	fail_umem = EAFNOSUPPORT;                          /* a kernel without AF_XDP */
	assert_int_equal(open_in_rx(&c, 1, &x, err, sizeof(err)), -EOPNOTSUPP);
	assert_non_null(strstr(err, "AF_XDP"));
	assert_null(x);
	assert_int_equal(attached_prog(if_a, NULL, 0), 0);
}

/* A queue still held by a socket closed a moment ago is waited for; one held for good
 * is an error after a second. */
static void
test_xdp_queue_busy_retried_then_ebusy(void **state)
{
	struct tl_xdp_conf c;
	struct tl_xdp *x = NULL;
	char err[512];

	(void)state;
	xdp_conf(&c, if_a);
	busy_binds = 3;
	assert_int_equal(open_in_rx(&c, 1, &x, err, sizeof(err)), 0);
	assert_int_equal(busy_binds, 0);
	tl_xdp_close(x);
	x = NULL;
	busy_binds = 1000;
	assert_int_equal(open_in_rx(&c, 1, &x, err, sizeof(err)), -EBUSY);
	assert_non_null(strstr(err, "already has an AF_XDP socket"));
	assert_null(x);
	assert_int_equal(attached_prog(if_a, NULL, 0), 0);
}

/* Two workers on if_c's two queues, opened but not running (the run is the test's). */
static void
open_two_workers(struct run *r, struct tl_xdp_conf *c)
{
	const uint16_t port = TELEMETRY_PORT;

	memset(r, 0, sizeof(*r));
	xdp_conf(c, if_c);
	r->n_workers = 2;
	for (unsigned i = 0; i < 2; i++)
		assert_int_equal(
		        tl_pipeline_worker_init(&workers[i], &pconf, schema, &port, 1, NULL, NULL),
		        0);
	assert_int_equal(open_in_rx(c, 2, &r->x, r->err, sizeof(r->err)), 0);
}

/* The second worker's thread cannot start: the first is stopped and the run fails. */
static void
test_xdp_worker_thread_fails_run_eagain(void **state)
{
	struct tl_xdp_conf c;
	struct run *r = &run_g;
	int rc;

	(void)state;
	open_two_workers(r, &c);
	fail_thread_at = 2;
	rc = tl_xdp_run(r->x, workers, 0, &r->stop); /* returns without the stop flag */
	assert_int_equal(rc, -EAGAIN);
	assert_int_equal(fail_thread_at, 0);
	run_close(r);
}

static volatile int watchdog_fired;

static void *
watchdog(void *arg)
{
	volatile int *stop = arg;

	for (int i = 0; i < 1000 && !__atomic_load_n(stop, __ATOMIC_RELAXED); i++)
		nap_ms(10);
	if (!__atomic_load_n(stop, __ATOMIC_RELAXED)) {
		watchdog_fired = 1;
		__atomic_store_n(stop, 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

/* With idle_stop_ns, the run ends by itself once no worker has seen a frame that long. */
static void
test_xdp_run_idle_stop_returns(void **state)
{
	struct tl_xdp_conf c;
	struct run *r = &run_g;
	pthread_t t;
	int rc;

	(void)state;
	open_two_workers(r, &c);
	watchdog_fired = 0;
	assert_int_equal(pthread_create(&t, NULL, watchdog, (void *)&r->stop), 0);
	rc = tl_xdp_run(r->x, workers, 50000000ull, &r->stop);
	__atomic_store_n(&r->stop, 1, __ATOMIC_RELAXED); /* let the watchdog go */
	pthread_join(t, NULL);
	assert_int_equal(rc, 0);
	assert_int_equal(watchdog_fired, 0);
	assert_int_equal(workers[0].cnt.rx_frames + workers[1].cnt.rx_frames, 0);
	run_close(r);
}

/* A tapline killed while capturing (SIGKILL: no close): the next open must succeed. */
static void
test_xdp_open_after_killed_run_succeeds(void **state)
{
	struct tl_xdp_conf c;
	struct sockaddr_in dst = addr4(RX_ADDR, TELEMETRY_PORT);
	struct sent s = {0};
	struct run *r = &run_g;
	char name[32];
	uint32_t old_id, new_id;
	int p[2], child_rc = -1, st, sfd;
	pid_t pid;

	(void)state;
	xdp_conf(&c, if_a);
	assert_int_equal(pipe(p), 0);
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		struct tl_xdp *x = NULL;
		char err[256];
		int rc = open_in_rx(&c, 1, &x, err, sizeof(err));

		if (write(p[1], &rc, sizeof(rc)) != sizeof(rc))
			_exit(1);
		for (;;)
			pause(); /* killed here, attached and bound */
	}
	assert_true(pid > 0);
	close(p[1]);
	assert_int_equal(read(p[0], &child_rc, sizeof(child_rc)), sizeof(child_rc));
	close(p[0]);
	old_id = attached_prog(if_a, name, sizeof(name));
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_int_equal(child_rc, 0);
	assert_true(old_id != 0);
	assert_string_equal(name, "tapline_xdp");

	run_start(r, &c, 1, false);
	new_id = attached_prog(if_a, name, sizeof(name));
	sfd = udp_bound(tx_fd, TX_ADDR, 0);
	send_telemetry(sfd, &dst, 4, &s);
	close(sfd);
	wait_events(s.events);
	run_close(r);
	assert_true(new_id != 0 && new_id != old_id);
	assert_string_equal(name, "tapline_xdp");
	assert_every_event_once(&s);
	assert_int_equal(attached_prog(if_a, NULL, 0), 0);
}

/* A tapline program attached by netlink (an older build, `ip link set xdp`) and left
 * behind is replaced. */
static void
test_xdp_stale_netlink_program_replaced(void **state)
{
	struct tl_xdp_conf c;
	struct sockaddr_in dst = addr4(RX_ADDR, TELEMETRY_PORT);
	struct tl_xdp_bpf *skel;
	struct sent s = {0};
	struct run *r = &run_g;
	char name[32];
	uint32_t old_id, new_id;
	int rc, sfd;

	(void)state;
	skel = tl_xdp_bpf__open_and_load();
	assert_non_null(skel);
	enter(rx_fd); /* netlink: in the driver's namespace */
	rc = bpf_xdp_attach((int)if_nametoindex(if_a), bpf_program__fd(skel->progs.tapline_xdp),
	        XDP_FLAGS_SKB_MODE, NULL);
	enter(root_fd);
	tl_xdp_bpf__destroy(skel); /* the attachment outlives our descriptors */
	assert_int_equal(rc, 0);
	old_id = attached_prog(if_a, name, sizeof(name));
	assert_true(old_id != 0);

	xdp_conf(&c, if_a);
	run_start(r, &c, 1, false);
	new_id = attached_prog(if_a, name, sizeof(name));
	sfd = udp_bound(tx_fd, TX_ADDR, 0);
	send_telemetry(sfd, &dst, 4, &s);
	close(sfd);
	wait_events(s.events);
	run_close(r);
	assert_true(new_id != 0 && new_id != old_id);
	assert_string_equal(name, "tapline_xdp");
	assert_every_event_once(&s);
	assert_int_equal(attached_prog(if_a, NULL, 0), 0);
}

static void
test_xdp_foreign_program_not_replaced_ebusy(void **state)
{
	/* r0 = XDP_PASS; exit */
	const struct bpf_insn insns[] = {
	        {.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = XDP_PASS},
	        {.code = BPF_JMP | BPF_EXIT},
	};
	LIBBPF_OPTS(bpf_prog_load_opts, lo);
	struct tl_xdp_conf c;
	struct tl_xdp *x = NULL;
	unsigned ifindex = rx_ifindex(if_a);
	uint32_t foreign_id, after_id;
	char err[512], name[32];
	int fd, rc;

	(void)state;
	fd = bpf_prog_load(BPF_PROG_TYPE_XDP, "other_xdp", "GPL", insns, 2, &lo);
	assert_true(fd >= 0);
	enter(rx_fd); /* netlink: in the driver's namespace */
	rc = bpf_xdp_attach((int)ifindex, fd, XDP_FLAGS_SKB_MODE, NULL);
	enter(root_fd);
	assert_int_equal(rc, 0);
	foreign_id = attached_prog(if_a, NULL, 0);
	xdp_conf(&c, if_a);
	rc = open_in_rx(&c, 1, &x, err, sizeof(err));
	after_id = attached_prog(if_a, name, sizeof(name));
	/* Clean up before asserting. */
	tl_xdp_close(x);
	enter(rx_fd);
	bpf_xdp_detach((int)ifindex, XDP_FLAGS_SKB_MODE, NULL);
	enter(root_fd);
	close(fd);
	assert_int_equal(rc, -EBUSY);
	assert_null(x);
	assert_non_null(strstr(err, "'other_xdp'"));
	assert_int_equal(after_id, foreign_id);
	assert_string_equal(name, "other_xdp");
	assert_int_equal(attached_prog(if_a, NULL, 0), 0);
}

static void
test_xdp_open_while_running_ebusy(void **state)
{
	struct tl_xdp_conf c;
	struct tl_xdp *x1 = NULL, *x2 = NULL;
	char err[512];
	uint32_t id1, id2;
	int rc;

	(void)state;
	xdp_conf(&c, if_a);
	assert_int_equal(open_in_rx(&c, 1, &x1, err, sizeof(err)), 0);
	id1 = attached_prog(if_a, NULL, 0);
	rc = open_in_rx(&c, 1, &x2, err, sizeof(err));
	id2 = attached_prog(if_a, NULL, 0);
	tl_xdp_close(x2);
	tl_xdp_close(x1);
	assert_int_equal(rc, -EBUSY);
	assert_non_null(strstr(err, "another tapline"));
	assert_null(x2);
	assert_int_equal(id1, id2); /* the running one's program stayed */
	assert_int_equal(attached_prog(if_a, NULL, 0), 0);
}

/* --- fixtures --- */

/* After every test: whatever a failed assertion left running is stopped and closed. */
static int
run_teardown(void **state)
{
	(void)state;
	faults_clear();
	if (root_fd >= 0)
		enter(root_fd);
	run_close(&run_g);
	return 0;
}

static int
netns_cmd(const char *what)
{
	char cmd[1024];

	snprintf(cmd, sizeof(cmd), "bash '%s' %s %d", script, what, tag);
	return system(cmd);
}

static int
setup(void **state)
{
	static struct tl_schema_def def;
	const char *src = getenv("TAPLINE_SRC");
	char path[64], msg[256];

	(void)state;
	tag = (int)getpid();
	snprintf(
	        script, sizeof(script), "%s/tests/drivers/xdp_netns.sh", src && src[0] ? src : ".");
	snprintf(rxns, sizeof(rxns), "tlx-rx-%d", tag);
	snprintf(txns, sizeof(txns), "tlx-tx-%d", tag);
	snprintf(if_a, sizeof(if_a), "tlxa%d", tag);
	snprintf(if_c, sizeof(if_c), "tlxc%d", tag);
	if (load_texts() < 0)
		return -1;
	root_fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	if (root_fd < 0)
		return -1;
	ns_up = true; /* from here on, teardown removes them, whatever happens next */
	if (netns_cmd("up") != 0) {
		fprintf(stderr, "cannot create the test namespaces (%s)\n", script);
		return -1;
	}
	snprintf(path, sizeof(path), "/run/netns/%s", rxns);
	rx_fd = open(path, O_RDONLY | O_CLOEXEC);
	snprintf(path, sizeof(path), "/run/netns/%s", txns);
	tx_fd = open(path, O_RDONLY | O_CLOEXEC);
	if (rx_fd < 0 || tx_fd < 0)
		return -1;
	tl_test_e6data_def(&def);
	pconf.limits = tl_test_e6data_limits();
	pconf.reasm = (struct tl_reasm_conf){256, 64, 2000000000ull};
	if (tl_schema_compile(&def, &pconf.limits, &schema, msg, sizeof(msg)) != 0) {
		fprintf(stderr, "schema: %s\n", msg);
		return -1;
	}
	/* The program alone, for the crafted-frame cases: telemetry ports 5170 and 65535. */
	pf.skel = tl_xdp_bpf__open_and_load();
	if (pf.skel == NULL)
		return -1;
	pf.ncpus = libbpf_num_possible_cpus();
	{
		static uint64_t bits[1024];
		uint32_t zero = 0;

		bits[5170 >> 6] |= 1ull << (5170 & 63);
		bits[65535 >> 6] |= 1ull << (65535 & 63);
		if (bpf_map__update_elem(pf.skel->maps.tl_ports, &zero, sizeof(zero), bits,
		            sizeof(bits), BPF_ANY) != 0)
			return -1;
	}
	return 0;
}

static int
teardown(void **state)
{
	int rc = 0;

	(void)state;
	if (root_fd >= 0)
		enter(root_fd);
	if (rx_fd >= 0)
		close(rx_fd);
	if (tx_fd >= 0)
		close(tx_fd);
	if (ns_up && netns_cmd("down") != 0)
		rc = -1;
	if (root_fd >= 0)
		close(root_fd);
	tl_xdp_bpf__destroy(pf.skel);
	tl_schema_free(schema);
	for (unsigned i = 0; i < n_queries; i++)
		free(queries[i]);
	for (unsigned i = 0; i < n_errors; i++)
		free(errors[i]);
	return rc;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_teardown(test_xdp_opts_defaults_valid, run_teardown),
	        cmocka_unit_test_teardown(test_xdp_close_stats_null_safe, run_teardown),
	        cmocka_unit_test_teardown(test_xdp_prog_crafted_frames_classified, run_teardown),
	        cmocka_unit_test_teardown(test_xdp_open_unknown_interface_enodev, run_teardown),
	        cmocka_unit_test_teardown(test_xdp_probe_unknown_interface_enodev, run_teardown),
	        cmocka_unit_test_teardown(test_xdp_open_bad_conf_einval, run_teardown),
	        cmocka_unit_test_teardown(test_xdp_more_workers_than_queues_einval, run_teardown),
	        cmocka_unit_test_teardown(test_xdp_open_unprivileged_eperm, run_teardown),
	        cmocka_unit_test_teardown(test_xdp_probe_free_interface_ok_detached, run_teardown),
	        cmocka_unit_test_teardown(
	                test_xdp_capture_telemetry_kernel_traffic_passes, run_teardown),
	        cmocka_unit_test_teardown(test_xdp_tx_ack_reaches_sender, run_teardown),
	        cmocka_unit_test_teardown(test_xdp_skb_mode_captures_events, run_teardown),
	        cmocka_unit_test_teardown(test_xdp_two_queues_capture_every_event, run_teardown),
	        cmocka_unit_test_teardown(
	                test_xdp_zerocopy_mode_obtained_or_eopnotsupp, run_teardown),
	        cmocka_unit_test_teardown(test_xdp_native_refused_generic_fallback, run_teardown),
	        cmocka_unit_test_teardown(test_xdp_attach_refused_mapped_errors, run_teardown),
	        cmocka_unit_test_teardown(test_xdp_umem_refused_enomem_eopnotsupp, run_teardown),
	        cmocka_unit_test_teardown(test_xdp_queue_busy_retried_then_ebusy, run_teardown),
	        cmocka_unit_test_teardown(test_xdp_worker_thread_fails_run_eagain, run_teardown),
	        cmocka_unit_test_teardown(test_xdp_run_idle_stop_returns, run_teardown),
	        cmocka_unit_test_teardown(test_xdp_open_after_killed_run_succeeds, run_teardown),
	        cmocka_unit_test_teardown(test_xdp_stale_netlink_program_replaced, run_teardown),
	        cmocka_unit_test_teardown(
	                test_xdp_foreign_program_not_replaced_ebusy, run_teardown),
	        cmocka_unit_test_teardown(test_xdp_open_while_running_ebusy, run_teardown),
	};

	if (geteuid() != 0) {
		printf("SKIP: needs root (network namespaces, CAP_BPF, CAP_NET_ADMIN)\n");
		return 77;
	}
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, setup, teardown);
}
