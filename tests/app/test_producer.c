/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libtapline-producer against a fake appliance: a UDP socket on loopback, served by a
 * thread, that parses frames with tl_frame_parse/tl_frame_verify/tl_frame_body, commits
 * each (producer, sequence) once, answers with tl_ack_encode, and can be told to drop
 * frames, drop ACKs, answer retry-later, reject, answer duplicate, sign ACKs wrongly, or
 * go down. The fake's accounting is only read while its thread is stopped.
 *
 * Events are loghub HDFS log lines ($TAPLINE_DATA/loghub/HDFS_2k.log) wrapped in JSON,
 * each with a unique query_id, so the fake can check that every event is committed
 * exactly once. No assertion depends on timing: waits are loops bounded by generous
 * timeouts, assertions are on counts.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "tl_frame.h"
#include "tl_producer.h"

#define MAX_SEQ 8192
#define MAX_EVENTS 4096
#define WAIT_MS 30000 /* bound of every wait: generous, never reached when things work */
#define KEY_ID 7
#define HMAC_PRODUCER 4242

static char root[] = "/tmp/tapline-test-producer.XXXXXX";
static char **lines;
static size_t nlines;

/* ---- events ---- */

static size_t
make_event(uint32_t id, char *buf, size_t cap)
{
	const char *src = lines[id % nlines];
	size_t n = (size_t)snprintf(buf, cap,
	        "{\"query_id\":\"q-%u\",\"event_type\":\"log\",\"timestamp\":"
	        "\"2026-11-21T05:00:00.000Z\",\"payload\":\"",
	        id);

	for (const char *s = src; *s != '\0' && n + 8 < cap; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\') {
			buf[n++] = '\\';
			buf[n++] = (char)c;
		} else if (c < 0x20) {
			n += (size_t)snprintf(buf + n, cap - n, "\\u%04x", c);
		} else {
			buf[n++] = (char)c;
		}
	}
	n += (size_t)snprintf(buf + n, cap - n, "\"}");
	return n;
}

static int
load_lines(void **state)
{
	const char *dir = getenv("TAPLINE_DATA");
	char path[4096], buf[8192];
	FILE *f = NULL;

	(void)state;
	if (mkdtemp(root) == NULL)
		return -1;
	if (dir != NULL) {
		snprintf(path, sizeof(path), "%s/loghub/HDFS_2k.log", dir);
		f = fopen(path, "r");
	}
	lines = calloc(2000, sizeof(*lines));
	if (lines == NULL)
		return -1;
	while (f != NULL && nlines < 2000 && fgets(buf, sizeof(buf), f) != NULL) {
		buf[strcspn(buf, "\r\n")] = '\0';
		lines[nlines++] = strdup(buf);
	}
	if (f != NULL)
		fclose(f);
	if (nlines == 0) {
		/* Without the data set the tests still run, on plainer text. */
		fprintf(stderr,
		        "note: $TAPLINE_DATA/loghub/HDFS_2k.log not found, synthetic lines\n");
		for (; nlines < 64; nlines++) {
			snprintf(buf, sizeof(buf),
			        "081109 2035%02zu 148 INFO dfs.DataNode: block %zu", nlines,
			        nlines * 7919);
			lines[nlines] = strdup(buf);
		}
	}
	return 0;
}

static int
free_lines(void **state)
{
	char cmd[256];

	(void)state;
	for (size_t i = 0; i < nlines; i++)
		free(lines[i]);
	free(lines);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	return system(cmd) == 0 ? 0 : -1;
}

/* ---- the fake appliance ---- */

struct fake {
	int fd;
	int family;
	uint16_t port;
	pthread_t thread;
	atomic_bool stop;
	bool running;
	struct tl_frame_keys *keys;
	struct tl_frame_inflater *z;
	/* behaviour: each counts down over the frames it applies to */
	uint32_t drop_frames; /* ignore the next N datagrams entirely */
	uint32_t drop_acks;   /* commit the next N new frames, send no ACK */
	uint32_t retry_later; /* answer retry-later to the next N frames not committed */
	uint32_t retry_ms;
	uint32_t dup_new;    /* commit the next N new frames, answer duplicate */
	uint64_t reject_seq; /* answer rejected to this sequence (0: none) */
	uint16_t reject_reason;
	uint32_t bad_tag_acks;  /* sign the next N ACKs with a wrong key */
	uint32_t unsigned_acks; /* send the next N ACKs without a tag */
	uint32_t garbage;       /* send N non-ACK datagrams before an ACK */
	uint32_t foreign;       /* send N ACKs for another producer before an ACK */
	/* accounting */
	uint64_t producer_id;
	uint32_t producers; /* distinct producer ids seen (must stay 1) */
	uint32_t received[MAX_SEQ];
	uint64_t hash[MAX_SEQ];
	bool committed[MAX_SEQ];
	uint64_t order[MAX_SEQ]; /* sequences in the order they were committed */
	uint32_t norder;
	uint32_t seen[MAX_EVENTS];
	uint32_t frames;
	uint32_t repeats;       /* resends with the same bytes */
	uint32_t changed_bytes; /* same sequence, different bytes: must stay 0 */
	uint32_t bad_frames;    /* failed parse, verify or body: must stay 0 */
	uint32_t zstd_frames;
	uint32_t hmac_frames;
	uint32_t bad_events; /* lines without a query_id */
	uint32_t acks_sent;
	uint32_t max_seq_events[MAX_SEQ]; /* events per committed sequence */
};

static uint64_t
fnv1a(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;

	while (n--)
		h = (h ^ *p++) * 0x100000001b3ull;
	return h;
}

static uint64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void
commit_events(struct fake *f, uint64_t seq, const uint8_t *body, size_t len)
{
	const uint8_t *end = body + len;
	uint32_t n = 0;

	while (body < end) {
		const uint8_t *nl = memchr(body, '\n', (size_t)(end - body));
		const char *q = memmem(body, (size_t)(nl - body), "\"query_id\":\"q-", 14);

		if (q == NULL) {
			f->bad_events++;
		} else {
			unsigned long id = strtoul(q + 14, NULL, 10);

			if (id < MAX_EVENTS)
				f->seen[id]++;
			else
				f->bad_events++;
		}
		n++;
		body = nl + 1;
	}
	f->committed[seq] = true;
	f->max_seq_events[seq] = n;
	f->order[f->norder++] = seq;
}

static void
send_ack(struct fake *f, const struct tl_ack *a, const uint8_t *key, size_t key_len,
        const struct sockaddr *to, socklen_t tolen)
{
	uint8_t out[TL_ACK_MAX], wrong[TL_FRAME_KEY_MAX];
	long n;

	for (; f->garbage > 0; f->garbage--)
		sendto(f->fd, "not an ack", 10, 0, to, tolen);
	for (; f->foreign > 0; f->foreign--) {
		struct tl_ack o = *a;

		o.producer_id ^= 0x5555;
		n = tl_ack_encode(&o, key, key_len, out, sizeof(out));
		if (n > 0)
			sendto(f->fd, out, (size_t)n, 0, to, tolen);
	}
	if (key != NULL && f->unsigned_acks > 0) {
		f->unsigned_acks--;
		key = NULL;
	} else if (key != NULL && f->bad_tag_acks > 0) {
		f->bad_tag_acks--;
		memcpy(wrong, key, key_len);
		wrong[0] ^= 0x01;
		key = wrong;
	}
	n = tl_ack_encode(a, key, key_len, out, sizeof(out));
	if (n > 0 && sendto(f->fd, out, (size_t)n, 0, to, tolen) == n)
		f->acks_sent++;
}

static void
fake_datagram(struct fake *f, const uint8_t *buf, size_t len, const struct sockaddr *from,
        socklen_t fromlen)
{
	struct tl_frame_view v;
	struct tl_ack a = {0};
	const uint8_t *key = NULL, *body;
	size_t key_len = 0, body_len;
	uint64_t h;

	if (tl_frame_parse(buf, len, &v) != TL_FRAME_OK ||
	        tl_frame_verify(f->keys, &v) != TL_FRAME_OK) {
		f->bad_frames++;
		return;
	}
	if (f->drop_frames > 0) {
		f->drop_frames--;
		return;
	}
	if (v.sequence >= MAX_SEQ) {
		f->bad_frames++;
		return;
	}
	f->frames++;
	if (f->producer_id != v.producer_id) {
		f->producer_id = v.producer_id;
		f->producers++;
	}
	if (v.flags & TL_FRAME_F_ZSTD)
		f->zstd_frames++;
	if (v.flags & TL_FRAME_F_HMAC) {
		f->hmac_frames++;
		key = tl_frame_keys_find(f->keys, v.producer_id, v.key_id, &key_len);
	}
	h = fnv1a(buf, len);
	if (f->received[v.sequence]++ == 0)
		f->hash[v.sequence] = h;
	else if (f->hash[v.sequence] == h)
		f->repeats++;
	else
		f->changed_bytes++;

	a.producer_id = v.producer_id;
	a.sequence = v.sequence;
	if (v.sequence == f->reject_seq) {
		a.status = TL_ACK_REJECTED;
		a.reason = f->reject_reason;
	} else if (!f->committed[v.sequence] && f->retry_later > 0) {
		f->retry_later--;
		a.status = TL_ACK_RETRY_LATER;
		a.retry_ms = f->retry_ms;
	} else if (f->committed[v.sequence]) {
		a.status = TL_ACK_DUPLICATE;
		a.count = v.count;
	} else {
		if (tl_frame_body(f->z, &v, &body, &body_len) != TL_FRAME_OK) {
			f->bad_frames++;
			return;
		}
		commit_events(f, v.sequence, body, body_len);
		a.status = TL_ACK_COMMITTED;
		a.count = v.count;
		if (f->dup_new > 0) {
			f->dup_new--;
			a.status = TL_ACK_DUPLICATE;
		}
		if (f->drop_acks > 0) {
			f->drop_acks--;
			return;
		}
	}
	send_ack(f, &a, key, key_len, from, fromlen);
}

static void *
fake_main(void *arg)
{
	struct fake *f = arg;
	static _Thread_local uint8_t buf[TL_FRAME_MAX + 1];

	while (!atomic_load(&f->stop)) {
		struct pollfd pfd = {.fd = f->fd, .events = POLLIN};

		if (poll(&pfd, 1, 5) <= 0)
			continue;
		for (;;) {
			struct sockaddr_storage from;
			socklen_t fromlen = sizeof(from);
			ssize_t r = recvfrom(f->fd, buf, sizeof(buf), MSG_DONTWAIT,
			        (struct sockaddr *)&from, &fromlen);

			if (r < 0)
				break;
			fake_datagram(f, buf, (size_t)r, (struct sockaddr *)&from, fromlen);
		}
	}
	return NULL;
}

/* Bind (again, on the same port once it has one). @return 0, or -errno. */
static int
fake_bind(struct fake *f)
{
	struct sockaddr_storage ss = {0};
	socklen_t len;
	int rcvbuf = 8 << 20;

	f->fd = socket(f->family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (f->fd < 0)
		return -errno;
	setsockopt(f->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	if (f->family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;

		a->sin_family = AF_INET;
		a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		a->sin_port = htons(f->port);
		len = sizeof(*a);
	} else {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;

		a->sin6_family = AF_INET6;
		a->sin6_addr = in6addr_loopback;
		a->sin6_port = htons(f->port);
		len = sizeof(*a);
	}
	if (bind(f->fd, (struct sockaddr *)&ss, len) != 0 ||
	        getsockname(f->fd, (struct sockaddr *)&ss, &len) != 0) {
		int rc = -errno;

		close(f->fd);
		f->fd = -1;
		return rc;
	}
	f->port = ntohs(f->family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
	                                     : ((struct sockaddr_in6 *)&ss)->sin6_port);
	return 0;
}

static void
fake_start(struct fake *f)
{
	assert_false(f->running);
	atomic_store(&f->stop, false);
	assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
	f->running = true;
}

static void
fake_stop(struct fake *f)
{
	if (!f->running)
		return;
	atomic_store(&f->stop, true);
	assert_int_equal(pthread_join(f->thread, NULL), 0);
	f->running = false;
}

/* The appliance goes away: its port answers with ICMP port unreachable. */
static void
fake_down(struct fake *f)
{
	fake_stop(f);
	close(f->fd);
	f->fd = -1;
}

static void
fake_up(struct fake *f)
{
	assert_int_equal(fake_bind(f), 0);
	fake_start(f);
}

static struct fake *
fake_new(int family, const char *keys_path)
{
	struct fake *f = calloc(1, sizeof(*f));
	char err[256];

	assert_non_null(f);
	f->family = family;
	assert_int_equal(tl_frame_inflater_create(&f->z), 0);
	if (keys_path != NULL)
		assert_int_equal(
		        tl_frame_keys_load(keys_path, false, &f->keys, err, sizeof(err)), 0);
	if (fake_bind(f) != 0) {
		tl_frame_inflater_free(f->z);
		tl_frame_keys_free(f->keys);
		free(f);
		return NULL;
	}
	fake_start(f);
	return f;
}

static void
fake_free(struct fake *f)
{
	fake_stop(f);
	if (f->fd >= 0)
		close(f->fd);
	tl_frame_inflater_free(f->z);
	tl_frame_keys_free(f->keys);
	free(f);
}

/* Every event in [0, n) committed exactly once, nothing else, no sequence reused. */
static void
assert_exactly_once(const struct fake *f, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		if (f->seen[i] != 1)
			fail_msg("event %u committed %u times", i, f->seen[i]);
	}
	for (uint32_t i = n; i < MAX_EVENTS; i++)
		assert_int_equal(f->seen[i], 0);
	assert_int_equal(f->changed_bytes, 0);
	assert_int_equal(f->bad_frames, 0);
	assert_int_equal(f->bad_events, 0);
	assert_int_equal(f->producers, 1);
}

static void
assert_commit_order_increasing(const struct fake *f)
{
	for (uint32_t i = 1; i < f->norder; i++) {
		if (f->order[i] <= f->order[i - 1])
			fail_msg("sequence %" PRIu64 " committed after %" PRIu64, f->order[i],
			        f->order[i - 1]);
	}
}

/* ---- producer helpers ---- */

static void
test_conf(struct tl_producer_conf *c, const struct fake *f, const char *name, char *dir,
        size_t dirlen)
{
	snprintf(dir, dirlen, "%s/%s", root, name);
	tl_producer_conf_init(c);
	c->host = f->family == AF_INET ? "127.0.0.1" : "::1";
	c->port = f->port;
	c->spill_dir = dir;
	c->frame_bytes = 4096;
	c->linger_ms = 2;
	c->ack_timeout_ms = 20;
	c->backoff_max_ms = 80;
	c->unreachable_ms = 100;
	c->window = 4;
	c->mem_frames = 16;
	c->spill_sync_ms = 5;
}

/* Queue events [first, first + n): on -ENOBUFS poll and try again. */
static void
send_events(struct tl_producer *p, uint32_t first, uint32_t n)
{
	char buf[8192];

	for (uint32_t id = first; id < first + n; id++) {
		size_t len = make_event(id, buf, sizeof(buf));
		uint64_t start = mono_ms();
		int rc;

		while ((rc = tl_producer_send(p, buf, len)) == -ENOBUFS &&
		        mono_ms() - start < WAIT_MS)
			assert_true(tl_producer_poll(p, 5) >= 0);
		assert_int_equal(rc, 0);
		assert_true(tl_producer_poll(p, 0) >= 0);
	}
}

/* Poll until the producer is stalled and holds nothing that is only in memory. */
static void
drive_until_all_on_disk(struct tl_producer *p)
{
	struct tl_producer_stats st;
	uint64_t start = mono_ms();

	do {
		assert_true(tl_producer_poll(p, 5) >= 0);
		tl_producer_stats(p, &st);
		if (st.stalled && st.events_open == 0 && st.pending_mem_only == 0)
			return;
	} while (mono_ms() - start < WAIT_MS);
	fail_msg("never stalled with everything on disk (stalled %d, open %u, memory only %u)",
	        st.stalled, st.events_open, st.pending_mem_only);
}

static unsigned
count_segments(const char *dir)
{
	struct dirent *de;
	unsigned n = 0;
	DIR *d = opendir(dir);

	assert_non_null(d);
	while ((de = readdir(d)) != NULL)
		n += strncmp(de->d_name, "seg-", 4) == 0;
	closedir(d);
	return n;
}

/* The newest segment file (its name sorts last). */
static void
last_segment(const char *dir, char *path, size_t len)
{
	struct dirent *de;
	char best[256] = "";
	DIR *d = opendir(dir);

	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, "seg-", 4) == 0 && strcmp(de->d_name, best) > 0)
			snprintf(best, sizeof(best), "%s", de->d_name);
	}
	closedir(d);
	assert_true(best[0] != '\0');
	snprintf(path, len, "%s/%s", dir, best);
}

/* ---- tests ---- */

static void
test_producer_open_bad_conf_einval(void **state)
{
	struct tl_producer_conf c;
	struct tl_producer *p = (struct tl_producer *)&c;
	uint8_t key[TL_FRAME_KEY_MAX + 1] = {1};
	char dir[4096];

	(void)state;
	snprintf(dir, sizeof(dir), "%s/badconf", root);
	assert_int_equal(tl_producer_open(NULL, &p), -EINVAL);
	assert_null(p);
	tl_producer_conf_init(&c);
	c.host = "127.0.0.1";
	c.spill_dir = dir;
	assert_int_equal(tl_producer_open(&c, NULL), -EINVAL);
	c.host = NULL;
	assert_int_equal(tl_producer_open(&c, &p), -EINVAL);
	c.host = "localhost"; /* numeric addresses only */
	assert_int_equal(tl_producer_open(&c, &p), -EINVAL);
	c.host = "127.0.0.1:5170";
	assert_int_equal(tl_producer_open(&c, &p), -EINVAL);
	{
		struct sockaddr_in a4 = {.sin_family = AF_INET};
		struct sockaddr_un un = {.sun_family = AF_UNIX};

		c.host = NULL;
		c.addr = (const struct sockaddr *)&a4;
		c.addrlen = sizeof(a4) - 1;
		assert_int_equal(tl_producer_open(&c, &p), -EINVAL);
		c.addr = (const struct sockaddr *)&un;
		c.addrlen = sizeof(un);
		assert_int_equal(tl_producer_open(&c, &p), -EINVAL);
		c.addr = NULL;
		c.addrlen = 0;
	}
	c.host = "127.0.0.1";
	c.spill_dir = NULL;
	assert_int_equal(tl_producer_open(&c, &p), -EINVAL);
	c.spill_dir = "";
	assert_int_equal(tl_producer_open(&c, &p), -EINVAL);
	c.spill_dir = dir;
	c.key = key;
	c.key_len = 0;
	assert_int_equal(tl_producer_open(&c, &p), -EINVAL);
	c.key_len = TL_FRAME_KEY_MAX + 1;
	assert_int_equal(tl_producer_open(&c, &p), -EINVAL);
	c.key = NULL;
	c.frame_bytes = TL_PRODUCER_FRAME_BYTES_MAX + 1;
	assert_int_equal(tl_producer_open(&c, &p), -EINVAL);
	c.frame_bytes = 1;
	assert_int_equal(tl_producer_open(&c, &p), -EINVAL);
	c.frame_bytes = 0;
	c.jitter_pct = 101;
	assert_int_equal(tl_producer_open(&c, &p), -EINVAL);
	c.jitter_pct = 0;
	c.mem_frames = 4;
	c.window = 5;
	assert_int_equal(tl_producer_open(&c, &p), -EINVAL);
	c.window = 0; /* the default window is clamped to mem_frames */
	c.zstd_level = 23;
	assert_int_equal(tl_producer_open(&c, &p), -EINVAL);
	c.zstd_level = -1;
	assert_int_equal(tl_producer_open(&c, &p), -EINVAL);
	c.zstd_level = 0;
	assert_null(p);
	/* A spill directory that cannot be created. */
	c.spill_dir = "/proc/tapline-producer-cannot-exist";
	assert_true(tl_producer_open(&c, &p) < 0);
	assert_null(p);
	c.spill_dir = dir;
	assert_int_equal(tl_producer_open(&c, &p), 0);
	assert_int_equal(tl_producer_close(p, 0), 0);
	assert_int_equal(tl_producer_close(NULL, 0), 0);
}

static void
test_producer_send_bad_event_refused(void **state)
{
	struct tl_producer_conf c;
	struct tl_producer_stats st;
	struct tl_producer *p;
	struct fake *f = fake_new(AF_INET, NULL);
	char dir[4096], big[4096];

	(void)state;
	test_conf(&c, f, "badevent", dir, sizeof(dir));
	assert_int_equal(tl_producer_open(&c, &p), 0);
	assert_int_equal(tl_producer_send(p, NULL, 3), -EINVAL);
	assert_int_equal(tl_producer_send(p, "{}", 0), -EINVAL);
	assert_int_equal(tl_producer_send(p, "{}\n{}", 5), -EINVAL);
	assert_int_equal(tl_producer_send(NULL, "{}", 2), -EINVAL);
	memset(big, 'x', sizeof(big));
	assert_int_equal(tl_producer_send(p, big, sizeof(big)), -EMSGSIZE);
	/* The largest event that fits: frame_bytes including its '\n'. */
	big[0] = '"';
	big[sizeof(big) - 2] = '"';
	assert_int_equal(tl_producer_send(p, big, sizeof(big) - 1), 0);
	tl_producer_stats(p, &st);
	assert_int_equal(st.events_queued, 1);
	assert_int_equal(st.events_open, 1);
	assert_int_equal(tl_producer_flush(p, WAIT_MS), 0);
	tl_producer_stats(p, &st);
	assert_int_equal(st.frames_acked, 1);
	assert_int_equal(st.events_pending, 0);
	assert_int_equal(tl_producer_poll(NULL, 0), -EINVAL);
	assert_int_equal(tl_producer_flush(NULL, 0), -EINVAL);
	assert_int_equal(tl_producer_close(p, 0), 0);
	fake_free(f);
}

static void
delivery(const char *name, int zstd_level)
{
	struct sockaddr_in a4 = {0};
	struct tl_producer_conf c;
	struct tl_producer_stats st;
	struct tl_producer *p;
	struct fake *f = fake_new(AF_INET, NULL);
	char dir[4096];
	const uint32_t n = 600;

	test_conf(&c, f, name, dir, sizeof(dir));
	c.zstd_level = zstd_level;
	if (zstd_level == 0) {
		/* The address as getaddrinfo would give it, instead of host and port. */
		a4.sin_family = AF_INET;
		a4.sin_port = htons(f->port);
		a4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		c.host = NULL;
		c.port = 1; /* ignored */
		c.addr = (const struct sockaddr *)&a4;
		c.addrlen = sizeof(a4);
	}
	assert_int_equal(tl_producer_open(&c, &p), 0);
	assert_true(tl_producer_fd(p) >= 0);
	assert_int_equal(tl_producer_next_ms(p), -1);
	send_events(p, 0, n);
	assert_int_equal(tl_producer_flush(p, WAIT_MS), 0);
	tl_producer_stats(p, &st);
	assert_int_equal(tl_producer_next_ms(p), -1);
	assert_int_equal(st.events_queued, n);
	assert_int_equal(st.events_acked, n);
	assert_int_equal(st.events_pending, 0);
	assert_int_equal(st.pending_mem, 0);
	assert_int_equal(st.pending_disk, 0);
	assert_int_equal(st.inflight, 0);
	assert_true(st.frames_sealed > 1);
	assert_int_equal(st.frames_acked + st.frames_duplicate, st.frames_sealed);
	assert_int_equal(st.next_sequence, st.frames_sealed + 1);
	assert_int_equal(st.frames_rejected, 0);
	assert_int_equal(st.acks_invalid + st.acks_unauthenticated + st.acks_foreign, 0);
	assert_int_equal(st.oldest_pending_ms, 0);
	assert_int_equal(tl_producer_close(p, 0), 0);
	fake_stop(f);
	assert_exactly_once(f, n);
	assert_int_equal(f->norder, st.frames_sealed);
	if (zstd_level > 0)
		assert_true(f->zstd_frames > 0);
	else
		assert_int_equal(f->zstd_frames, 0);
	assert_int_equal(f->hmac_frames, 0);
	assert_int_equal(count_segments(dir), 0);
	fake_free(f);
}

static void
test_producer_delivery_plain_exactly_once(void **state)
{
	(void)state;
	delivery("plain", 0);
}

static void
test_producer_delivery_zstd_exactly_once(void **state)
{
	(void)state;
	delivery("zstd", 3);
}

static void
test_producer_frames_dropped_resent_same_sequence(void **state)
{
	struct tl_producer_conf c;
	struct tl_producer_stats st;
	struct tl_producer *p;
	struct fake *f = fake_new(AF_INET, NULL);
	char dir[4096];

	(void)state;
	fake_stop(f);
	f->drop_frames = 5;
	fake_start(f);
	test_conf(&c, f, "dropframes", dir, sizeof(dir));
	assert_int_equal(tl_producer_open(&c, &p), 0);
	send_events(p, 0, 200);
	assert_int_equal(tl_producer_flush(p, WAIT_MS), 0);
	tl_producer_stats(p, &st);
	assert_true(st.frames_resent >= 5);
	assert_int_equal(st.events_acked, 200);
	assert_int_equal(tl_producer_close(p, 0), 0);
	fake_stop(f);
	assert_int_equal(f->drop_frames, 0);
	assert_exactly_once(f, 200);
	fake_free(f);
}

static void
test_producer_ack_lost_resent_same_bytes(void **state)
{
	struct tl_producer_conf c;
	struct tl_producer_stats st;
	struct tl_producer *p;
	struct fake *f = fake_new(AF_INET, NULL);
	char dir[4096];

	(void)state;
	fake_stop(f);
	f->drop_acks = 5;
	fake_start(f);
	test_conf(&c, f, "dropacks", dir, sizeof(dir));
	c.zstd_level = 1; /* the same bytes even when compressed */
	assert_int_equal(tl_producer_open(&c, &p), 0);
	send_events(p, 0, 200);
	assert_int_equal(tl_producer_flush(p, WAIT_MS), 0);
	tl_producer_stats(p, &st);
	/* Each frame whose ACK was lost is resent and the appliance knows it already. */
	assert_true(st.frames_resent >= 5);
	assert_int_equal(st.frames_duplicate, 5);
	assert_int_equal(st.frames_acked, st.frames_sealed - 5);
	assert_int_equal(st.events_acked, 200);
	assert_int_equal(tl_producer_close(p, 0), 0);
	fake_stop(f);
	assert_int_equal(f->drop_acks, 0);
	assert_true(f->repeats >= 5);
	assert_exactly_once(f, 200);
	fake_free(f);
}

static void
test_producer_retry_later_resent_after_delay(void **state)
{
	struct tl_producer_conf c;
	struct tl_producer_stats st;
	struct tl_producer *p;
	struct fake *f = fake_new(AF_INET, NULL);
	char dir[4096];

	(void)state;
	fake_stop(f);
	f->retry_later = 1;
	f->retry_ms = 1500; /* far beyond the ACK timeout (20 ms) and the flush below */
	fake_start(f);
	test_conf(&c, f, "retrylater", dir, sizeof(dir));
	c.unreachable_ms = 60000;
	/* Long enough that the frame is not resent before the retry-later ACK is read. */
	c.ack_timeout_ms = 1000;
	c.backoff_max_ms = 1000;
	assert_int_equal(tl_producer_open(&c, &p), 0);
	send_events(p, 0, 1);
	/* The retry-later ACK arrives within this flush; the resend may not come before
	 * 1500 ms after it, so this flush cannot finish. */
	assert_int_equal(tl_producer_flush(p, 300), -ETIMEDOUT);
	fake_stop(f);
	tl_producer_stats(p, &st);
	assert_int_equal(st.retry_later, 1);
	assert_int_equal(st.frames_resent, 0);
	assert_int_equal(f->received[1], 1);
	assert_false(f->committed[1]);
	assert_int_equal(st.events_pending, 1);
	assert_true(tl_producer_next_ms(p) > 0);
	fake_start(f);
	assert_int_equal(tl_producer_flush(p, WAIT_MS), 0);
	tl_producer_stats(p, &st);
	assert_int_equal(st.frames_resent, 1);
	assert_int_equal(st.frames_acked, 1);
	assert_int_equal(tl_producer_close(p, 0), 0);
	fake_stop(f);
	assert_int_equal(f->received[1], 2);
	assert_exactly_once(f, 1);
	fake_free(f);
}

static void
test_producer_retry_later_persistent_spills(void **state)
{
	struct tl_producer_conf c;
	struct tl_producer_stats st;
	struct tl_producer *p;
	struct fake *f = fake_new(AF_INET, NULL);
	char dir[4096];

	(void)state;
	fake_stop(f);
	f->retry_later = UINT32_MAX;
	f->retry_ms = 10;
	fake_start(f);
	test_conf(&c, f, "retryspill", dir, sizeof(dir));
	assert_int_equal(tl_producer_open(&c, &p), 0);
	send_events(p, 0, 300);
	drive_until_all_on_disk(p);
	tl_producer_stats(p, &st);
	assert_true(st.retry_later > 0);
	assert_true(st.stalls >= 1);
	assert_true(st.frames_spilled > 0);
	assert_true(st.pending_disk > 0); /* memory was full: newer frames wait on disk */
	fake_stop(f);
	f->retry_later = 0;
	fake_start(f);
	assert_int_equal(tl_producer_flush(p, WAIT_MS), 0);
	tl_producer_stats(p, &st);
	assert_false(st.stalled);
	assert_int_equal(st.spill_segments, 0);
	assert_int_equal(st.spill_bytes, 0);
	assert_int_equal(tl_producer_close(p, 0), 0);
	fake_stop(f);
	assert_exactly_once(f, 300);
	assert_int_equal(count_segments(dir), 0);
	fake_free(f);
}

struct rejects {
	uint32_t calls;
	uint64_t seq;
	uint32_t count;
	enum tl_frame_reason reason;
};

static void
on_reject(void *arg, uint64_t sequence, uint32_t count, enum tl_frame_reason reason)
{
	struct rejects *r = arg;

	r->calls++;
	r->seq = sequence;
	r->count = count;
	r->reason = reason;
}

static void
test_producer_rejected_counted_not_resent(void **state)
{
	struct tl_producer_conf c;
	struct tl_producer_stats st;
	struct rejects rj = {0};
	struct tl_producer *p;
	struct fake *f = fake_new(AF_INET, NULL);
	uint64_t start;
	char dir[4096];
	uint32_t missing = 0;

	(void)state;
	fake_stop(f);
	f->reject_seq = 2;
	f->reject_reason = TL_FRAME_BAD_COUNT;
	fake_start(f);
	test_conf(&c, f, "reject", dir, sizeof(dir));
	c.on_reject = on_reject;
	c.cb_arg = &rj;
	/* Long enough that frame 2 is not resent before its rejection is read; the wait
	 * below spans several of these timeouts. */
	c.ack_timeout_ms = 400;
	c.backoff_max_ms = 400;
	assert_int_equal(tl_producer_open(&c, &p), 0);
	send_events(p, 0, 100);
	assert_int_equal(tl_producer_flush(p, WAIT_MS), 0);
	/* Several ACK timeouts more: a rejected frame must never come back. */
	start = mono_ms();
	while (mono_ms() - start < 1200)
		assert_true(tl_producer_poll(p, 10) >= 0);
	tl_producer_stats(p, &st);
	assert_int_equal(st.frames_rejected, 1);
	assert_int_equal(st.rejected[TL_FRAME_BAD_COUNT], 1);
	assert_int_equal(rj.calls, 1);
	assert_int_equal(rj.seq, 2);
	assert_int_equal(rj.reason, TL_FRAME_BAD_COUNT);
	assert_int_equal(st.events_rejected, rj.count);
	assert_int_equal(st.events_acked + st.events_rejected, 100);
	assert_int_equal(st.events_pending, 0);
	assert_int_equal(tl_producer_close(p, 0), 0);
	fake_stop(f);
	assert_int_equal(f->received[2], 1);
	assert_false(f->committed[2]);
	for (uint32_t i = 0; i < 100; i++) {
		assert_true(f->seen[i] <= 1);
		missing += f->seen[i] == 0;
	}
	assert_int_equal(missing, rj.count);
	assert_int_equal(f->changed_bytes, 0);
	fake_free(f);
}

static void
test_producer_duplicate_answer_resolved(void **state)
{
	struct tl_producer_conf c;
	struct tl_producer_stats st;
	struct tl_producer *p;
	struct fake *f = fake_new(AF_INET, NULL);
	char dir[4096];

	(void)state;
	fake_stop(f);
	f->dup_new = 3;
	fake_start(f);
	test_conf(&c, f, "duplicate", dir, sizeof(dir));
	c.ack_timeout_ms = 2000; /* no resend in this test: every frame is answered once */
	c.backoff_max_ms = 2000;
	assert_int_equal(tl_producer_open(&c, &p), 0);
	send_events(p, 0, 100);
	assert_int_equal(tl_producer_flush(p, WAIT_MS), 0);
	tl_producer_stats(p, &st);
	assert_int_equal(st.frames_duplicate, 3);
	assert_int_equal(st.frames_acked, st.frames_sealed - 3);
	assert_int_equal(st.events_acked, 100);
	assert_int_equal(tl_producer_close(p, 0), 0);
	fake_stop(f);
	assert_exactly_once(f, 100);
	fake_free(f);
}

static void
test_producer_appliance_down_spilled_replayed_in_order(void **state)
{
	struct tl_producer_conf c;
	struct tl_producer_stats st;
	struct tl_producer *p;
	struct fake *f = fake_new(AF_INET, NULL);
	char dir[4096];

	(void)state;
	test_conf(&c, f, "down", dir, sizeof(dir));
	c.window = 1; /* one frame at a time: commit order must be sequence order */
	c.mem_frames = 4;
	c.spill_segment_bytes = 8192; /* several segments */
	assert_int_equal(tl_producer_open(&c, &p), 0);
	send_events(p, 0, 40);
	assert_int_equal(tl_producer_flush(p, WAIT_MS), 0);

	fake_down(f);
	send_events(p, 40, 300);
	drive_until_all_on_disk(p);
	tl_producer_stats(p, &st);
	assert_true(st.stalled);
	assert_true(st.pending_disk > 0);
	assert_true(st.spill_segments > 1);
	assert_true(st.spill_bytes > 0);
	assert_true(st.oldest_pending_ms < 3600u * 1000);
	assert_int_equal(st.events_pending, 300);
	assert_true(count_segments(dir) > 1);

	fake_up(f);
	/* Wait for the replay to start (the appliance answered, frames still on disk), then
	 * queue newer events while it runs: they must go behind the replay, not before it.
	 * With window 1 each poll resolves at most about one frame, so this state lasts
	 * many polls. */
	for (uint64_t start = mono_ms(); mono_ms() - start < WAIT_MS;) {
		assert_true(tl_producer_poll(p, 1) >= 0);
		tl_producer_stats(p, &st);
		if (!st.stalled || st.pending_disk == 0)
			break;
	}
	assert_false(st.stalled);
	assert_true(st.pending_disk > 0);
	for (uint32_t id = 340; id < 380; id++) {
		char buf[8192];
		size_t len = make_event(id, buf, sizeof(buf));

		/* A caller busy elsewhere: by its next poll the in-flight frame's ACK is in
		 * and the event's linger has passed, so one round both frees a memory slot
		 * and seals a frame. That frame must still queue behind the disk. */
		assert_int_equal(tl_producer_send(p, buf, len), 0);
		usleep(20 * 1000);
		assert_true(tl_producer_poll(p, 0) >= 0);
	}
	assert_int_equal(tl_producer_flush(p, WAIT_MS), 0);
	tl_producer_stats(p, &st);
	assert_false(st.stalled);
	assert_true(st.frames_replayed > 0);
	assert_int_equal(st.events_acked, 380);
	assert_int_equal(st.pending_disk, 0);
	assert_int_equal(st.spill_segments, 0);
	assert_int_equal(st.spill_bytes, 0);
	assert_int_equal(tl_producer_close(p, 0), 0);
	fake_stop(f);
	assert_exactly_once(f, 380);
	assert_commit_order_increasing(f);
	assert_int_equal(count_segments(dir), 0);
	fake_free(f);
}

static void
test_producer_closed_pending_reopened_resent(void **state)
{
	struct tl_producer_conf c;
	struct tl_producer_stats a, b;
	struct tl_producer *p;
	struct fake *f = fake_new(AF_INET, NULL);
	uint64_t reopened_next;
	char dir[4096];

	(void)state;
	test_conf(&c, f, "reopen", dir, sizeof(dir));
	c.window = 1;
	c.unreachable_ms = 60000; /* no stall: the frames stay in memory until close */
	fake_down(f);
	assert_int_equal(tl_producer_open(&c, &p), 0);
	send_events(p, 0, 100);
	assert_int_equal(tl_producer_flush(p, 50), -ETIMEDOUT);
	tl_producer_stats(p, &a);
	assert_int_equal(a.events_pending, 100);
	assert_int_equal(a.events_open, 0);
	assert_false(a.stalled);
	assert_int_equal(a.frames_spilled, 0); /* memory only: close must write it out */
	assert_int_equal(count_segments(dir), 0);
	assert_int_equal(tl_producer_close(p, 0), 0);
	assert_true(count_segments(dir) >= 1);

	/* Same directory, producer_id 0: the id comes back from the state file. */
	assert_int_equal(tl_producer_open(&c, &p), 0);
	tl_producer_stats(p, &b);
	assert_int_equal(b.producer_id, a.producer_id);
	assert_int_equal(b.events_pending, 100);
	assert_int_equal(b.pending_disk + b.pending_mem, a.frames_sealed);
	assert_true(b.next_sequence > a.next_sequence);
	reopened_next = b.next_sequence;
	fake_up(f);
	send_events(p, 100, 50);
	assert_int_equal(tl_producer_flush(p, WAIT_MS), 0);
	tl_producer_stats(p, &b);
	assert_int_equal(b.events_acked, 150);
	assert_int_equal(b.spill_segments, 0);
	assert_int_equal(tl_producer_close(p, 0), 0);
	fake_stop(f);
	assert_exactly_once(f, 150);
	assert_commit_order_increasing(f);
	/* The first run's frames kept their sequences 1..n; the second run's new frames are
	 * above every sequence the first could have used. */
	assert_true(f->norder > a.frames_sealed);
	for (uint32_t i = 0; i < f->norder; i++) {
		if (i < a.frames_sealed)
			assert_int_equal(f->order[i], i + 1);
		else
			assert_true(f->order[i] >= reopened_next);
	}
	assert_int_equal(count_segments(dir), 0);
	fake_free(f);
}

static void
test_producer_restart_sequences_continue_never_repeat(void **state)
{
	struct tl_producer_conf c;
	struct tl_producer_stats st;
	struct tl_producer *p;
	struct fake *f = fake_new(AF_INET, NULL);
	uint64_t last = 0;
	char dir[4096];

	(void)state;
	test_conf(&c, f, "restart", dir, sizeof(dir));
	c.producer_id = 77;
	for (uint32_t run = 0; run < 3; run++) {
		assert_int_equal(tl_producer_open(&c, &p), 0);
		tl_producer_stats(p, &st);
		assert_int_equal(st.producer_id, 77);
		assert_true(st.next_sequence > last);
		send_events(p, run * 50, 50);
		assert_int_equal(tl_producer_flush(p, WAIT_MS), 0);
		tl_producer_stats(p, &st);
		last = st.next_sequence - 1;
		assert_int_equal(tl_producer_close(p, 0), 0);
	}
	fake_stop(f);
	assert_exactly_once(f, 150);
	assert_commit_order_increasing(f);
	assert_true(f->order[f->norder - 1] > 2 * TL_PRODUCER_SEQ_BLOCK);
	fake_free(f);
}

static void
torn(const char *name, bool corrupt_crc)
{
	struct tl_producer_conf c;
	struct tl_producer_stats a, b;
	struct tl_producer *p;
	struct fake *f = fake_new(AF_INET, NULL);
	char dir[4096], path[4400];
	uint32_t seen = 0;
	struct stat sb;
	int fd;

	test_conf(&c, f, name, dir, sizeof(dir));
	fake_down(f);
	assert_int_equal(tl_producer_open(&c, &p), 0);
	send_events(p, 0, 120);
	drive_until_all_on_disk(p);
	tl_producer_stats(p, &a);
	assert_int_equal(tl_producer_close(p, 0), 0);

	last_segment(dir, path, sizeof(path));
	fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &sb), 0);
	if (corrupt_crc) {
		/* Flip a byte of the last record's last event: its CRC no longer matches. */
		uint8_t byte;

		assert_int_equal(pread(fd, &byte, 1, sb.st_size - 3), 1);
		byte ^= 0x20;
		assert_int_equal(pwrite(fd, &byte, 1, sb.st_size - 3), 1);
	} else {
		/* A record header promising 5000 bytes, then the crash. */
		static const uint8_t tail[] = {0, 0, 0x13, 0x88, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0,
		        'T', 'L', 'F', '1', 1, 0};

		assert_int_equal(pwrite(fd, tail, sizeof(tail), sb.st_size), (ssize_t)sizeof(tail));
	}
	close(fd);

	assert_int_equal(tl_producer_open(&c, &p), 0);
	fake_up(f);
	assert_int_equal(tl_producer_flush(p, WAIT_MS), 0);
	tl_producer_stats(p, &b);
	assert_true(b.spill_torn >= 1);
	assert_int_equal(b.spill_segments, 0);
	assert_int_equal(tl_producer_close(p, 0), 0);
	fake_stop(f);
	for (uint32_t i = 0; i < 120; i++) {
		assert_true(f->seen[i] <= 1);
		seen += f->seen[i];
	}
	if (corrupt_crc) {
		/* The damaged record is lost, the others all arrive. */
		assert_true(seen < 120);
		assert_true(seen > 0);
		assert_int_equal(b.events_acked, seen);
	} else {
		assert_int_equal(seen, 120);
	}
	assert_int_equal(f->changed_bytes, 0);
	assert_int_equal(f->bad_frames, 0);
	assert_int_equal(count_segments(dir), 0);
	(void)a;
	fake_free(f);
}

static void
test_producer_torn_spill_tail_tolerated(void **state)
{
	(void)state;
	torn("torntail", false);
}

static void
test_producer_corrupt_spill_record_skipped(void **state)
{
	(void)state;
	torn("corrupt", true);
}

/* kill -9 stand-in: a child spills to disk and _exits without closing. */
static void
test_producer_crash_spilled_frames_recovered(void **state)
{
	struct tl_producer_conf c;
	struct tl_producer_stats st;
	struct tl_producer *p;
	struct fake *f = fake_new(AF_INET, NULL);
	uint64_t child_next = 0;
	int pipefd[2], status;
	char dir[4096];
	pid_t pid;

	(void)state;
	test_conf(&c, f, "crash", dir, sizeof(dir));
	fake_down(f);
	assert_int_equal(pipe(pipefd), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* No cmocka in the child: report through the exit status. */
		struct tl_producer_stats cs;
		char buf[8192];
		uint64_t start = mono_ms();

		close(pipefd[0]);
		if (tl_producer_open(&c, &p) != 0)
			_exit(2);
		for (uint32_t id = 0; id < 100; id++) {
			size_t len = make_event(id, buf, sizeof(buf));

			while (tl_producer_send(p, buf, len) == -ENOBUFS)
				tl_producer_poll(p, 5);
			tl_producer_poll(p, 0);
		}
		do {
			tl_producer_poll(p, 5);
			tl_producer_stats(p, &cs);
			if (cs.stalled && cs.events_open == 0 && cs.pending_mem_only == 0)
				break;
		} while (mono_ms() - start < WAIT_MS);
		if (write(pipefd[1], &cs.next_sequence, sizeof(cs.next_sequence)) != 8)
			_exit(3);
		_exit(cs.pending_mem_only == 0 && cs.frames_spilled == cs.frames_sealed ? 0 : 4);
	}
	close(pipefd[1]);
	assert_int_equal(read(pipefd[0], &child_next, sizeof(child_next)), 8);
	close(pipefd[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);

	assert_int_equal(tl_producer_open(&c, &p), 0);
	tl_producer_stats(p, &st);
	assert_int_equal(st.events_pending, 100);
	/* The crashed run reserved its block before using it: no sequence comes back. */
	assert_true(st.next_sequence > child_next);
	fake_up(f);
	send_events(p, 100, 10);
	assert_int_equal(tl_producer_flush(p, WAIT_MS), 0);
	assert_int_equal(tl_producer_close(p, 0), 0);
	fake_stop(f);
	assert_exactly_once(f, 110);
	assert_commit_order_increasing(f);
	fake_free(f);
}

static void
test_producer_hmac_frames_signed_bad_ack_ignored(void **state)
{
	struct tl_producer_conf c;
	struct tl_producer_stats st;
	struct tl_producer *p;
	uint8_t key[32];
	char dir[4096], keys[4400];
	struct fake *f;
	FILE *kf;

	(void)state;
	for (size_t i = 0; i < sizeof(key); i++)
		key[i] = (uint8_t)(0xa5 ^ (i * 37));
	snprintf(keys, sizeof(keys), "%s/keys", root);
	kf = fopen(keys, "w");
	assert_non_null(kf);
	fprintf(kf, "# producer key_id key\n%d %d ", HMAC_PRODUCER, KEY_ID);
	for (size_t i = 0; i < sizeof(key); i++)
		fprintf(kf, "%02x", key[i]);
	fprintf(kf, "\n");
	fclose(kf);
	f = fake_new(AF_INET, keys);
	fake_stop(f);
	f->bad_tag_acks = 3;
	f->unsigned_acks = 2;
	f->garbage = 2;
	f->foreign = 1;
	fake_start(f);

	test_conf(&c, f, "hmac", dir, sizeof(dir));
	c.producer_id = HMAC_PRODUCER;
	c.key = key;
	c.key_len = sizeof(key);
	c.key_id = KEY_ID;
	c.zstd_level = 3;
	assert_int_equal(tl_producer_open(&c, &p), 0);
	memset(key, 0, sizeof(key)); /* open copied it */
	send_events(p, 0, 200);
	assert_int_equal(tl_producer_flush(p, WAIT_MS), 0);
	tl_producer_stats(p, &st);
	assert_int_equal(st.acks_unauthenticated, 5);
	assert_int_equal(st.acks_invalid, 2);
	assert_int_equal(st.acks_foreign, 1);
	assert_true(st.frames_resent >= 5);
	assert_int_equal(st.events_acked, 200);
	assert_int_equal(tl_producer_close(p, 0), 0);
	fake_stop(f);
	assert_int_equal(f->hmac_frames, f->frames);
	assert_true(f->zstd_frames > 0);
	assert_exactly_once(f, 200);
	fake_free(f);
}

static void
test_producer_spill_full_send_enobufs(void **state)
{
	struct tl_producer_conf c;
	struct tl_producer_stats st;
	struct tl_producer *p;
	struct fake *f = fake_new(AF_INET, NULL);
	char dir[4096], buf[8192];
	uint32_t taken = 0;
	int rc = 0;

	(void)state;
	test_conf(&c, f, "spillfull", dir, sizeof(dir));
	c.mem_frames = 2;
	c.window = 1;
	c.frame_bytes = 1024;
	c.spill_max_bytes = 16384;
	fake_down(f);
	assert_int_equal(tl_producer_open(&c, &p), 0);
	for (uint64_t start = mono_ms(); taken < MAX_EVENTS && mono_ms() - start < WAIT_MS;) {
		size_t len = make_event(taken, buf, sizeof(buf));

		if (len + 1 > c.frame_bytes)
			len = (size_t)snprintf(buf, sizeof(buf), "{\"query_id\":\"q-%u\"}", taken);
		rc = tl_producer_send(p, buf, len);
		if (rc == -ENOBUFS)
			break;
		assert_int_equal(rc, 0);
		taken++;
		assert_true(tl_producer_poll(p, 1) >= 0);
	}
	assert_int_equal(rc, -ENOBUFS);
	tl_producer_stats(p, &st);
	assert_true(st.spill_bytes <= c.spill_max_bytes);
	assert_int_equal(st.events_queued, taken);
	assert_int_equal(st.events_pending, taken);
	fake_up(f);
	assert_int_equal(tl_producer_flush(p, WAIT_MS), 0);
	assert_int_equal(tl_producer_close(p, 0), 0);
	fake_stop(f);
	assert_exactly_once(f, taken);
	fake_free(f);
}

static void
test_producer_spill_dir_locked_ebusy(void **state)
{
	struct tl_producer_conf c;
	struct tl_producer *p, *q = NULL;
	struct fake *f = fake_new(AF_INET, NULL);
	char dir[4096];

	(void)state;
	test_conf(&c, f, "locked", dir, sizeof(dir));
	assert_int_equal(tl_producer_open(&c, &p), 0);
	assert_int_equal(tl_producer_open(&c, &q), -EBUSY);
	assert_null(q);
	assert_int_equal(tl_producer_close(p, 0), 0);
	assert_int_equal(tl_producer_open(&c, &q), 0);
	assert_int_equal(tl_producer_close(q, 0), 0);
	fake_free(f);
}

static void
test_producer_spill_dir_other_id_eexist(void **state)
{
	struct tl_producer_conf c;
	struct tl_producer *p = NULL;
	struct fake *f = fake_new(AF_INET, NULL);
	char dir[4096];

	(void)state;
	test_conf(&c, f, "otherid", dir, sizeof(dir));
	c.producer_id = 5;
	assert_int_equal(tl_producer_open(&c, &p), 0);
	assert_int_equal(tl_producer_close(p, 0), 0);
	c.producer_id = 6;
	assert_int_equal(tl_producer_open(&c, &p), -EEXIST);
	assert_null(p);
	c.producer_id = 0; /* "whatever the directory says" */
	assert_int_equal(tl_producer_open(&c, &p), 0);
	assert_int_equal(tl_producer_close(p, 0), 0);
	fake_free(f);
}

static void
test_producer_state_corrupt_ebadmsg(void **state)
{
	struct tl_producer_conf c;
	struct tl_producer *p = NULL;
	struct fake *f = fake_new(AF_INET, NULL);
	char dir[4096], path[4200];
	FILE *sf;

	(void)state;
	test_conf(&c, f, "corruptstate", dir, sizeof(dir));
	assert_int_equal(tl_producer_open(&c, &p), 0);
	assert_int_equal(tl_producer_close(p, 0), 0);
	snprintf(path, sizeof(path), "%s/state", dir);
	sf = fopen(path, "r+");
	assert_non_null(sf);
	fseek(sf, 17, SEEK_SET);
	fputc(0x7f, sf);
	fclose(sf);
	assert_int_equal(tl_producer_open(&c, &p), -EBADMSG);
	assert_null(p);
	sf = fopen(path, "w"); /* truncated */
	assert_non_null(sf);
	fclose(sf);
	assert_int_equal(tl_producer_open(&c, &p), -EBADMSG);
	fake_free(f);
}

static void
test_producer_ipv6_loopback_delivered(void **state)
{
	struct tl_producer_conf c;
	struct tl_producer *p;
	struct fake *f = fake_new(AF_INET6, NULL);
	char dir[4096];

	(void)state;
	if (f == NULL)
		skip(); /* no IPv6 loopback in this environment */
	test_conf(&c, f, "ipv6", dir, sizeof(dir));
	assert_int_equal(tl_producer_open(&c, &p), 0);
	send_events(p, 0, 50);
	assert_int_equal(tl_producer_flush(p, WAIT_MS), 0);
	assert_int_equal(tl_producer_close(p, 0), 0);
	fake_stop(f);
	assert_exactly_once(f, 50);
	fake_free(f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_producer_open_bad_conf_einval),
	        cmocka_unit_test(test_producer_send_bad_event_refused),
	        cmocka_unit_test(test_producer_delivery_plain_exactly_once),
	        cmocka_unit_test(test_producer_delivery_zstd_exactly_once),
	        cmocka_unit_test(test_producer_frames_dropped_resent_same_sequence),
	        cmocka_unit_test(test_producer_ack_lost_resent_same_bytes),
	        cmocka_unit_test(test_producer_retry_later_resent_after_delay),
	        cmocka_unit_test(test_producer_retry_later_persistent_spills),
	        cmocka_unit_test(test_producer_rejected_counted_not_resent),
	        cmocka_unit_test(test_producer_duplicate_answer_resolved),
	        cmocka_unit_test(test_producer_appliance_down_spilled_replayed_in_order),
	        cmocka_unit_test(test_producer_closed_pending_reopened_resent),
	        cmocka_unit_test(test_producer_restart_sequences_continue_never_repeat),
	        cmocka_unit_test(test_producer_torn_spill_tail_tolerated),
	        cmocka_unit_test(test_producer_corrupt_spill_record_skipped),
	        cmocka_unit_test(test_producer_crash_spilled_frames_recovered),
	        cmocka_unit_test(test_producer_hmac_frames_signed_bad_ack_ignored),
	        cmocka_unit_test(test_producer_spill_full_send_enobufs),
	        cmocka_unit_test(test_producer_spill_dir_locked_ebusy),
	        cmocka_unit_test(test_producer_spill_dir_other_id_eexist),
	        cmocka_unit_test(test_producer_state_corrupt_ebadmsg),
	        cmocka_unit_test(test_producer_ipv6_loopback_delivered),
	};

	return cmocka_run_group_tests(tests, load_lines, free_lines);
}
