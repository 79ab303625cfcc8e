/* SPDX-License-Identifier: BSD-3-Clause */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "tl_counters.h"
#include "tl_log.h"
#include "tl_metrics.h"

#define MAX_COLLECTORS 16

const struct tl_opt tl_metrics_opts[] = {
	{.name = "enabled", .type = TL_OPT_BOOL, .def = "true",
		.offset = offsetof(struct tl_metrics_conf, enabled),
		.desc = "serve /metrics and /healthz"},
	{.name = "listen", .type = TL_OPT_STRING, .def = "127.0.0.1:9170",
		.offset = offsetof(struct tl_metrics_conf, listen),
		.size = sizeof(((struct tl_metrics_conf *)0)->listen),
		.desc = "loopback address and port of the HTTP endpoint (port 0: any free port)"},
	{.name = NULL},
};

struct tl_metrics {
	struct tl_metrics_conf conf;
	struct sockaddr_storage addr;
	struct MHD_Daemon *daemon;
	struct {
		tl_metrics_collect_fn fn;
		void *arg;
	} coll[MAX_COLLECTORS];
	unsigned n_coll;
	pthread_mutex_t health_lock;
	bool healthy;
	char why[256];
};

/* "127.0.0.1:9170", "[::1]:9170": loopback only, by design (SPEC: a loopback port). */
static int
parse_listen(const char *s, struct sockaddr_storage *ss, char *msg, size_t msglen)
{
	char host[64];
	const char *colon = strrchr(s, ':');
	char *end;
	unsigned long port;
	size_t hl;

	memset(ss, 0, sizeof(*ss));
	if (colon == NULL || colon == s)
		goto bad;
	port = strtoul(colon + 1, &end, 10);
	if (*end || colon[1] == '\0' || port > 65535)
		goto bad;
	hl = (size_t)(colon - s);
	if (s[0] == '[') {
		if (hl < 3 || s[hl - 1] != ']')
			goto bad;
		memcpy(host, s + 1, hl - 2);
		host[hl - 2] = '\0';
	} else {
		if (hl >= sizeof(host))
			goto bad;
		memcpy(host, s, hl);
		host[hl] = '\0';
	}
	if (inet_pton(AF_INET, host, &((struct sockaddr_in *)ss)->sin_addr) == 1) {
		struct sockaddr_in *in = (struct sockaddr_in *)ss;

		in->sin_family = AF_INET;
		in->sin_port = htons((uint16_t)port);
		if ((ntohl(in->sin_addr.s_addr) >> 24) != 127) {
			snprintf(msg, msglen, "listen: %s is not a loopback address (127.0.0.0/8 or ::1)",
					host);
			return -EINVAL;
		}
		return 0;
	}
	if (inet_pton(AF_INET6, host, &((struct sockaddr_in6 *)ss)->sin6_addr) == 1) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		if (!IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr)) {
			snprintf(msg, msglen, "listen: %s is not a loopback address (127.0.0.0/8 or ::1)",
					host);
			return -EINVAL;
		}
		return 0;
	}
bad:
	snprintf(msg, msglen, "listen: '%s' is not ADDRESS:PORT (e.g. 127.0.0.1:9170)", s);
	return -EINVAL;
}

int
tl_metrics_check(const void *obj, char *msg, size_t msglen)
{
	const struct tl_metrics_conf *c = obj;
	struct sockaddr_storage ss;

	return c->enabled && parse_listen(c->listen, &ss, msg, msglen) < 0;
}

void
tl_metrics_printf(struct tl_metrics_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->failed)
		return;
	for (;;) {
		size_t room = b->cap - b->len;

		va_start(ap, fmt);
		n = vsnprintf(b->data ? b->data + b->len : NULL, room, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->failed = true;
			return;
		}
		if ((size_t)n < room) {
			b->len += (size_t)n;
			return;
		}
		{
			size_t cap = b->cap ? b->cap * 2 : 16384;
			char *d;

			while (cap - b->len <= (size_t)n)
				cap *= 2;
			d = realloc(b->data, cap);
			if (d == NULL) {
				b->failed = true;
				return;
			}
			b->data = d;
			b->cap = cap;
		}
	}
}

void
tl_metrics_family(struct tl_metrics_buf *b, const char *name, const char *type, const char *help)
{
	tl_metrics_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static uint64_t
rd(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

void
tl_metrics_pipeline(struct tl_metrics_buf *b, const struct tl_counters *const *w, unsigned n,
		const struct tl_counters *nic)
{
	static const struct {
		const char *name, *help;
		size_t off;
	} per_worker[] = {
		{"tapline_rx_frames_total", "Frames taken off the wire, per worker.",
			offsetof(struct tl_counters, rx_frames)},
		{"tapline_rx_bytes_total", "Bytes of those frames, per worker.",
			offsetof(struct tl_counters, rx_bytes)},
		{"tapline_datagrams_total", "Telemetry UDP datagrams accepted, per worker.",
			offsetof(struct tl_counters, udp_datagrams)},
		{"tapline_reassembled_total", "Datagrams reassembled from IP fragments, per worker.",
			offsetof(struct tl_counters, reassembled)},
	};
	struct tl_counters sum;

	memset(&sum, 0, sizeof(sum));
	for (unsigned i = 0; i < n; i++)
		tl_counters_add(&sum, w[i]);
	if (nic)
		tl_counters_add(&sum, nic);
	for (size_t k = 0; k < sizeof(per_worker) / sizeof(per_worker[0]); k++) {
		tl_metrics_family(b, per_worker[k].name, "counter", per_worker[k].help);
		for (unsigned i = 0; i < n; i++)
			tl_metrics_printf(b, "%s{worker=\"%u\"} %llu\n", per_worker[k].name, i,
					(unsigned long long)rd((const uint64_t *)((const char *)w[i] +
							per_worker[k].off)));
	}
	tl_metrics_family(b, "tapline_events_total", "counter",
			"Events judged by the pipeline, by verdict.");
	tl_metrics_printf(b, "tapline_events_total{verdict=\"valid\"} %llu\n",
			(unsigned long long)sum.events_valid);
	tl_metrics_printf(b, "tapline_events_total{verdict=\"rejected\"} %llu\n",
			(unsigned long long)sum.events_rejected);
	tl_metrics_family(b, "tapline_error_events_total", "counter",
			"Accepted events that carry an error.");
	tl_metrics_printf(b, "tapline_error_events_total %llu\n",
			(unsigned long long)sum.events_error);
	tl_metrics_family(b, "tapline_events_matched_total", "counter",
			"Accepted events a classify pattern matched (error or tag).");
	tl_metrics_printf(b, "tapline_events_matched_total %llu\n",
			(unsigned long long)sum.events_matched);
	tl_metrics_family(b, "tapline_classify_failed_total", "counter",
			"Hyperscan scans that failed (the event's matches are partial).");
	tl_metrics_printf(b, "tapline_classify_failed_total %llu\n",
			(unsigned long long)sum.classify_failed);
	tl_metrics_family(b, "tapline_event_bytes_total", "counter", "Bytes of accepted events.");
	tl_metrics_printf(b, "tapline_event_bytes_total %llu\n", (unsigned long long)sum.event_bytes);
	tl_metrics_family(b, "tapline_nic_missed_total", "counter",
			"Frames the NIC dropped for lack of RX descriptors.");
	tl_metrics_printf(b, "tapline_nic_missed_total %llu\n", (unsigned long long)sum.rx_missed);
	tl_metrics_family(b, "tapline_nic_nombuf_total", "counter",
			"RX mbuf allocation failures.");
	tl_metrics_printf(b, "tapline_nic_nombuf_total %llu\n", (unsigned long long)sum.rx_nombuf);
	tl_metrics_family(b, "tapline_ignored_frames_total", "counter",
			"Frames that are not telemetry, by reason.");
	for (int r = 1; r < TL_REASON_MAX; r++)
		if (tl_reason_is_ignored((enum tl_reason)r))
			tl_metrics_printf(b, "tapline_ignored_frames_total{reason=\"%s\"} %llu\n",
					tl_reason_name((enum tl_reason)r),
					(unsigned long long)sum.reason[r]);
	tl_metrics_family(b, "tapline_dropped_total", "counter",
			"Frames, fragments or datagrams dropped before parsing, by reason.");
	for (int r = 1; r < TL_REASON_MAX; r++)
		if (!tl_reason_is_ignored((enum tl_reason)r) && !tl_reason_is_event((enum tl_reason)r))
			tl_metrics_printf(b, "tapline_dropped_total{reason=\"%s\"} %llu\n",
					tl_reason_name((enum tl_reason)r),
					(unsigned long long)sum.reason[r]);
	tl_metrics_family(b, "tapline_rejected_events_total", "counter",
			"Events rejected, by reason.");
	for (int r = 1; r < TL_REASON_MAX; r++)
		if (tl_reason_is_event((enum tl_reason)r))
			tl_metrics_printf(b, "tapline_rejected_events_total{reason=\"%s\"} %llu\n",
					tl_reason_name((enum tl_reason)r),
					(unsigned long long)sum.reason[r]);
}

static enum MHD_Result
answer(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
		const char *version, const char *upload, size_t *upload_len, void **con_cls)
{
	struct tl_metrics *m = cls;
	struct MHD_Response *r;
	enum MHD_Result ret;
	unsigned status;

	(void)version;
	(void)upload;
	(void)upload_len;
	(void)con_cls;
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
		static const char text[] = "method not allowed\n";

		r = MHD_create_response_from_buffer(sizeof(text) - 1, (void *)text,
				MHD_RESPMEM_PERSISTENT);
		status = MHD_HTTP_METHOD_NOT_ALLOWED;
	} else if (strcmp(url, "/metrics") == 0) {
		struct tl_metrics_buf b = {0};

		for (unsigned i = 0; i < m->n_coll; i++)
			m->coll[i].fn(m->coll[i].arg, &b);
		if (b.failed) {
			free(b.data);
			return MHD_NO;
		}
		r = MHD_create_response_from_buffer(b.len, b.data ? b.data : (void *)"",
				b.data ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
		if (r)
			MHD_add_response_header(r, "Content-Type",
					"text/plain; version=0.0.4; charset=utf-8");
		status = MHD_HTTP_OK;
	} else if (strcmp(url, "/healthz") == 0) {
		char text[300];
		size_t n;

		pthread_mutex_lock(&m->health_lock);
		status = m->healthy ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE;
		n = (size_t)snprintf(text, sizeof(text), "%s\n", m->healthy ? "ok" : m->why);
		pthread_mutex_unlock(&m->health_lock);
		r = MHD_create_response_from_buffer(n < sizeof(text) ? n : sizeof(text) - 1, text,
				MHD_RESPMEM_MUST_COPY);
	} else {
		static const char text[] = "not found: try /metrics or /healthz\n";

		r = MHD_create_response_from_buffer(sizeof(text) - 1, (void *)text,
				MHD_RESPMEM_PERSISTENT);
		status = MHD_HTTP_NOT_FOUND;
	}
	if (r == NULL)
		return MHD_NO;
	ret = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ret;
}

int
tl_metrics_create(const struct tl_metrics_conf *conf, struct tl_metrics **out)
{
	struct tl_metrics *m;
	char msg[160];
	int rc;

	*out = NULL;
	m = calloc(1, sizeof(*m));
	if (m == NULL)
		return -ENOMEM;
	m->conf = *conf;
	rc = parse_listen(conf->listen, &m->addr, msg, sizeof(msg));
	if (rc < 0) {
		TL_ERR("metrics: %s", msg);
		free(m);
		return rc;
	}
	pthread_mutex_init(&m->health_lock, NULL);
	m->healthy = false;
	snprintf(m->why, sizeof(m->why), "starting");
	*out = m;
	return 0;
}

int
tl_metrics_add(struct tl_metrics *m, tl_metrics_collect_fn fn, void *arg)
{
	if (m->daemon || m->n_coll == MAX_COLLECTORS)
		return -ENOSPC;
	m->coll[m->n_coll].fn = fn;
	m->coll[m->n_coll].arg = arg;
	m->n_coll++;
	return 0;
}

int
tl_metrics_start(struct tl_metrics *m)
{
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;

	if (m->addr.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	m->daemon = MHD_start_daemon(flags, 0, NULL, NULL, answer, m, MHD_OPTION_SOCK_ADDR,
			(struct sockaddr *)&m->addr, MHD_OPTION_CONNECTION_LIMIT, 16u,
			MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
	if (m->daemon == NULL) {
		int e = errno ? errno : EADDRINUSE;

		TL_ERR("metrics: cannot listen on %s: %s", m->conf.listen, strerror(e));
		return -e;
	}
	return 0;
}

uint16_t
tl_metrics_port(const struct tl_metrics *m)
{
	const union MHD_DaemonInfo *i;

	if (m == NULL || m->daemon == NULL)
		return 0;
	i = MHD_get_daemon_info(m->daemon, MHD_DAEMON_INFO_BIND_PORT);
	return i ? i->port : 0;
}

void
tl_metrics_set_health(struct tl_metrics *m, bool healthy, const char *why)
{
	if (m == NULL)
		return;
	pthread_mutex_lock(&m->health_lock);
	m->healthy = healthy;
	snprintf(m->why, sizeof(m->why), "%s", why ? why : "");
	pthread_mutex_unlock(&m->health_lock);
}

void
tl_metrics_stop(struct tl_metrics *m)
{
	if (m == NULL)
		return;
	if (m->daemon)
		MHD_stop_daemon(m->daemon);
	pthread_mutex_destroy(&m->health_lock);
	free(m);
}
