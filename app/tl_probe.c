/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tl_ch.h"
#include "tl_probe.h"

struct tl_probe {
	struct tl_ch *ch;
	pthread_t thread;
	int stop;
	uint32_t max;
	uint32_t made;  /* written by the generator thread, read by the poller */
	uint32_t seen;
	unsigned tag;   /* distinguishes this run's probes from earlier ones */
	int netns_fd;   /* -1, or the namespace the poller thread joins */
	int64_t *sent_ns;
	int64_t *seen_ns;
};

static int64_t
wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void
poll_once(struct tl_probe *p)
{
	char sql[256], *reply = NULL, *line, *save = NULL;
	size_t len = 0;
	int64_t now;

	snprintf(sql, sizeof(sql),
			"SELECT query_id FROM `%s`.`sink_output` WHERE query_id LIKE 'probe-%u-%%' "
			"FORMAT TabSeparated",
			tl_ch_database(p->ch), p->tag);
	if (tl_ch_query(p->ch, sql, &reply, &len) < 0 || reply == NULL) {
		free(reply);
		return;
	}
	now = wall_ns();
	for (line = strtok_r(reply, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		unsigned tag;
		uint32_t n;

		if (sscanf(line, "probe-%u-%" SCNu32, &tag, &n) == 2 && tag == p->tag && n < p->max &&
				p->seen_ns[n] == 0) {
			p->seen_ns[n] = now;
			__atomic_fetch_add(&p->seen, 1, __ATOMIC_RELAXED);
		}
	}
	free(reply);
}

static void *
poller(void *arg)
{
	struct tl_probe *p = arg;

	/* setns() moves only this thread: the generator keeps sending from its own. */
	if (p->netns_fd >= 0 && setns(p->netns_fd, CLONE_NEWNET) != 0)
		fprintf(stderr, "gen: probe: cannot enter the network namespace: %s\n",
				strerror(errno));
	while (!__atomic_load_n(&p->stop, __ATOMIC_RELAXED)) {
		if (__atomic_load_n(&p->seen, __ATOMIC_RELAXED) <
				__atomic_load_n(&p->made, __ATOMIC_ACQUIRE))
			poll_once(p);
		usleep(50000);
	}
	return NULL;
}

int
tl_probe_start(const char *url, uint32_t max, const char *netns, struct tl_probe **out)
{
	struct tl_uplink_conf conf;
	struct tl_probe *p;
	int rc;

	*out = NULL;
	if (url == NULL || max == 0)
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (p == NULL)
		return -ENOMEM;
	p->max = max;
	p->netns_fd = -1;
	if (netns) {
		char path[256];

		snprintf(path, sizeof(path), "/var/run/netns/%s", netns);
		p->netns_fd = open(path, O_RDONLY | O_CLOEXEC);
		if (p->netns_fd < 0) {
			rc = -errno;
			free(p);
			return rc;
		}
	}
	p->tag = (unsigned)(wall_ns() / 1000000 % 1000000000);
	p->sent_ns = calloc(max, sizeof(*p->sent_ns));
	p->seen_ns = calloc(max, sizeof(*p->seen_ns));
	rc = -ENOMEM;
	if (p->sent_ns == NULL || p->seen_ns == NULL)
		goto fail;
	rc = tl_opt_defaults(tl_uplink_opts, &conf);
	if (rc < 0)
		goto fail;
	snprintf(conf.url, sizeof(conf.url), "%s", url);
	conf.compression = TL_CH_COMPRESS_NONE;
	rc = tl_ch_open(&conf, &p->ch);
	if (rc < 0)
		goto fail;
	rc = pthread_create(&p->thread, NULL, poller, p);
	if (rc != 0) {
		rc = -rc;
		goto fail;
	}
	*out = p;
	return 0;
fail:
	if (p->netns_fd >= 0)
		close(p->netns_fd);
	tl_ch_close(p->ch);
	free(p->sent_ns);
	free(p->seen_ns);
	free(p);
	return rc;
}

uint32_t
tl_probe_make(struct tl_probe *p, char *buf, uint32_t cap)
{
	uint32_t n = p->made;
	int64_t now = wall_ns();
	time_t secs = (time_t)(now / 1000000000);
	struct tm tm;
	char ts[64];
	int len;

	if (n >= p->max)
		return 0;
	gmtime_r(&secs, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	len = snprintf(buf, cap,
			"{\"query_id\":\"probe-%u-%" PRIu32 "\",\"timestamp\":\"%s.%03dZ\","
			"\"event_type\":\"probe\",\"query_text\":\"select 1\",\"metadata\":{"
			"\"user_id\":\"tapline-gen\",\"database\":\"probe\",\"duration_ms\":0,"
			"\"rows_affected\":0,\"error\":null},\"payload\":\"freshness probe\"}",
			p->tag, n, ts, (int)(now / 1000000 % 1000));
	if (len < 0 || (uint32_t)len >= cap)
		return 0;
	p->sent_ns[n] = now;
	__atomic_store_n(&p->made, n + 1, __ATOMIC_RELEASE);
	return (uint32_t)len;
}

static int
cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

int
tl_probe_finish(struct tl_probe *p, uint64_t wait_ns, FILE *out)
{
	int64_t end;
	int64_t *lat;
	uint32_t made, seen, n = 0;
	int rc;

	if (p == NULL)
		return 0;
	end = wall_ns() + (int64_t)wait_ns;
	made = __atomic_load_n(&p->made, __ATOMIC_ACQUIRE);
	while (__atomic_load_n(&p->seen, __ATOMIC_RELAXED) < made && wall_ns() < end)
		usleep(20000);
	__atomic_store_n(&p->stop, 1, __ATOMIC_RELAXED);
	pthread_join(p->thread, NULL);
	seen = __atomic_load_n(&p->seen, __ATOMIC_RELAXED);
	lat = calloc(made ? made : 1, sizeof(*lat));
	if (lat) {
		for (uint32_t i = 0; i < made; i++)
			if (p->seen_ns[i])
				lat[n++] = p->seen_ns[i] - p->sent_ns[i];
		qsort(lat, n, sizeof(*lat), cmp_i64);
	}
	if (n) {
		static const struct {
			const char *name;
			double q;
		} qs[] = {{"p50", 0.50}, {"p95", 0.95}, {"p99", 0.99}, {"max", 1.0}};

		for (size_t k = 0; k < sizeof(qs) / sizeof(qs[0]); k++) {
			uint32_t i = (uint32_t)(qs[k].q * (n - 1) + 0.5);

			fprintf(out, "figure freshness_%s_s %.3f s\n", qs[k].name, (double)lat[i] * 1e-9);
		}
	}
	fprintf(out, "figure freshness_probes %u/%u\n", seen, made);
	rc = seen == made ? 0 : -ETIMEDOUT;
	free(lat);
	if (p->netns_fd >= 0)
		close(p->netns_fd);
	tl_ch_close(p->ch);
	free(p->sent_ns);
	free(p->seen_ns);
	free(p);
	return rc;
}
