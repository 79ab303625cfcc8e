/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * `tapline gen --framed`: the real tapline binary (next to this test in the build tree,
 * ../app/tapline, or $TAPLINE_BIN) sends the generator's events through
 * libtapline-producer to a fake appliance: a UDP socket on loopback served by a thread
 * that parses frames with tl_frame_parse/tl_frame_verify/tl_frame_body, keeps the events
 * of each (producer, sequence) once, and answers with tl_ack_encode (committed, or
 * retry-later for the first frames when told to).
 *
 * What must hold: every generated event arrives exactly once, in generation order across
 * the frames' sequences, and matches the --truth line of its position (the truth and the
 * summary are the same as those of a run without --framed); the figures and the exit
 * status say so. With nobody answering, gen exits 3 and the spill directory holds every
 * event, which a later producer on that directory delivers. Usage errors exit 2.
 *
 * No assertion depends on timing: waits are bounded by generous limits only.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "tl_frame.h"
#include "tl_producer.h"

#define MAX_SEQ 4096
#define RUN_LIMIT_S 240 /* a gen run that lasts longer has hung: kill it, fail */
#define KEY_HEX "00112233445566778899aabbccddeeff0f1e2d3c4b5a69788796a5b4c3d2e1f0"

static char root[] = "/tmp/tapline-test-gen-framed.XXXXXX";
static char tapline[PATH_MAX];

/* ---- running tapline gen ---- */

/* Run `tapline gen ARGS...` (NULL-terminated), stdout to @p out, stderr to @p err.
 * @return the exit status, or -1 if it died of a signal or had to be killed. */
static int
run_gen(const char *out, const char *err, ...)
{
	const char *argv[64];
	int n = 0, status, fd;
	va_list ap;
	pid_t pid;

	argv[n++] = tapline;
	argv[n++] = "gen";
	va_start(ap, err);
	while (n < 63 && (argv[n] = va_arg(ap, const char *)) != NULL)
		n++;
	va_end(ap);
	argv[n] = NULL;

	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* Only async-signal-safe calls: the fake's thread runs in the parent. */
		fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0 || dup2(fd, 1) < 0)
			_exit(126);
		fd = open(err, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0 || dup2(fd, 2) < 0)
			_exit(126);
		execv(tapline, (char *const *)argv);
		_exit(127);
	}
	for (int i = 0; i < RUN_LIMIT_S * 20; i++) {
		struct timespec ts = {0, 50 * 1000 * 1000};
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid)
			return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
		assert_int_equal(r, 0);
		nanosleep(&ts, NULL);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	return -1;
}

static char *
slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long n;

	if (f == NULL)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
		buf = malloc((size_t)n + 1);
		if (buf != NULL && fread(buf, 1, (size_t)n, f) == (size_t)n) {
			buf[n] = '\0';
			if (len != NULL)
				*len = (size_t)n;
		} else {
			free(buf);
			buf = NULL;
		}
	}
	fclose(f);
	return buf;
}

/* Run gen and require exit status @p want; on a mismatch show what it wrote to stderr. */
#define GEN_EXPECT(want, out, err, ...)                                                            \
	do {                                                                                       \
		int st_ = run_gen(out, err, __VA_ARGS__, (const char *)NULL);                      \
		if (st_ != (want)) {                                                               \
			char *e_ = slurp(err, NULL);                                               \
			print_error("gen exit %d, expected %d; stderr:\n%s\n", st_, (want),        \
			        e_ ? e_ : "(none)");                                               \
			free(e_);                                                                  \
		}                                                                                  \
		assert_int_equal(st_, (want));                                                     \
	} while (0)

/* @return the value of `figure NAME V ...` in @p text; fails the test if absent. */
static uint64_t
figure(const char *text, const char *name)
{
	char key[128];
	const char *p = text;
	size_t kl;

	kl = (size_t)snprintf(key, sizeof(key), "figure %s ", name);
	while ((p = strstr(p, key)) != NULL) {
		if (p == text || p[-1] == '\n')
			return strtoull(p + kl, NULL, 10);
		p += kl;
	}
	print_error("no 'figure %s' in:\n%s\n", name, text);
	fail();
	return 0;
}

static void
path_in(char *buf, size_t cap, const char *name)
{
	snprintf(buf, cap, "%s/%s", root, name);
}

/* ---- the fake appliance ---- */

struct fake {
	int fd;
	uint16_t port;
	pthread_t thread;
	atomic_bool stop;
	bool running;
	struct tl_frame_keys *keys;
	struct tl_frame_inflater *z;
	uint32_t retry_later; /* answer retry-later to the next N frames not committed */
	/* accounting (read only while the thread is stopped) */
	uint64_t producer_id;
	uint32_t producers;     /* distinct producer ids (must stay 1) */
	uint32_t bad_frames;    /* failed parse, verify or body: must stay 0 */
	uint32_t changed_bytes; /* same sequence, different bytes: must stay 0 */
	uint32_t frames, hmac_frames, zstd_frames, retries_sent;
	uint64_t hash[MAX_SEQ];
	char *body[MAX_SEQ]; /* the events of a committed sequence, '\n'-terminated */
	size_t body_len[MAX_SEQ];
	uint32_t count[MAX_SEQ];
};

static uint64_t
fnv1a(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;

	while (n--)
		h = (h ^ *p++) * 0x100000001b3ull;
	return h;
}

static void
fake_datagram(struct fake *f, const uint8_t *buf, size_t len, const struct sockaddr *from,
        socklen_t fromlen)
{
	struct tl_frame_view v;
	struct tl_ack a = {0};
	const uint8_t *key = NULL, *body;
	size_t key_len = 0, body_len;
	uint8_t out[TL_ACK_MAX];
	uint64_t h = fnv1a(buf, len);
	long n;

	if (tl_frame_parse(buf, len, &v) != TL_FRAME_OK ||
	        tl_frame_verify(f->keys, &v) != TL_FRAME_OK || v.sequence >= MAX_SEQ) {
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
	if (f->hash[v.sequence] != 0 && f->hash[v.sequence] != h)
		f->changed_bytes++;
	f->hash[v.sequence] = h;
	a.producer_id = v.producer_id;
	a.sequence = v.sequence;
	if (f->body[v.sequence] != NULL) {
		a.status = TL_ACK_DUPLICATE;
		a.count = v.count;
	} else if (f->retry_later > 0) {
		f->retry_later--;
		f->retries_sent++;
		a.status = TL_ACK_RETRY_LATER;
		a.retry_ms = 20;
	} else {
		if (tl_frame_body(f->z, &v, &body, &body_len) != TL_FRAME_OK) {
			f->bad_frames++;
			return;
		}
		f->body[v.sequence] = malloc(body_len);
		if (f->body[v.sequence] == NULL) {
			f->bad_frames++;
			return;
		}
		memcpy(f->body[v.sequence], body, body_len);
		f->body_len[v.sequence] = body_len;
		f->count[v.sequence] = v.count;
		a.status = TL_ACK_COMMITTED;
		a.count = v.count;
	}
	n = tl_ack_encode(&a, key, key_len, out, sizeof(out));
	if (n > 0)
		(void)sendto(f->fd, out, (size_t)n, 0, from, fromlen);
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

/* A fake on 127.0.0.1; @p serve false: bound but never read (nobody answers). */
static struct fake *
fake_new(const char *keys_path, uint32_t retry_later, bool serve)
{
	struct fake *f = calloc(1, sizeof(*f));
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t len = sizeof(a);
	int rcvbuf = 4 << 20;
	char err[256];

	assert_non_null(f);
	f->retry_later = retry_later;
	assert_int_equal(tl_frame_inflater_create(&f->z), 0);
	if (keys_path != NULL)
		assert_int_equal(
		        tl_frame_keys_load(keys_path, false, &f->keys, err, sizeof(err)), 0);
	f->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(f->fd >= 0);
	/* A window of 64 KiB frames arrives in one burst. */
	(void)setsockopt(f->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(f->fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(f->fd, (struct sockaddr *)&a, &len), 0);
	f->port = ntohs(a.sin_port);
	if (serve) {
		atomic_store(&f->stop, false);
		assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
		f->running = true;
	}
	return f;
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

static void
fake_free(struct fake *f)
{
	if (f == NULL)
		return;
	fake_stop(f);
	close(f->fd);
	for (int i = 0; i < MAX_SEQ; i++)
		free(f->body[i]);
	tl_frame_inflater_free(f->z);
	tl_frame_keys_free(f->keys);
	free(f);
}

static const char *
fake_udp(const struct fake *f, char *buf, size_t cap)
{
	snprintf(buf, cap, "127.0.0.1:%u", (unsigned)f->port);
	return buf;
}

/* ---- checks ---- */

struct events {
	char *buf;
	size_t len;
	uint64_t n;
};

/* The committed events in sequence order; sequences must be 1..N without a gap. */
static void
fake_events(const struct fake *f, struct events *ev)
{
	uint32_t last = 0;

	memset(ev, 0, sizeof(*ev));
	for (uint32_t s = 1; s < MAX_SEQ; s++)
		if (f->body[s] != NULL) {
			ev->len += f->body_len[s];
			last = s;
		}
	ev->buf = malloc(ev->len + 1);
	assert_non_null(ev->buf);
	ev->len = 0;
	for (uint32_t s = 1; s <= last; s++) {
		if (f->body[s] == NULL) {
			print_error("sequence %u missing (last %u)\n", s, last);
			fail();
		}
		memcpy(ev->buf + ev->len, f->body[s], f->body_len[s]);
		ev->len += f->body_len[s];
		ev->n += f->count[s];
	}
	ev->buf[ev->len] = '\0';
}

/*
 * Line i of @p ev is the event of truth line i: same count, the truth's seq is the line's
 * position (with @p skipped_ok, seqs may jump over events left out), and valid events
 * carry the truth's query_id and event_type.
 */
static void
check_against_truth(const struct events *ev, const char *truth_path, bool skipped_ok)
{
	char *truth = slurp(truth_path, NULL);
	char *tp, *ep = ev->buf;
	uint64_t i = 0, valid = 0, last_seq = 0;

	assert_non_null(truth);
	tp = truth;
	while (*tp != '\0') {
		char *tnl = strchr(tp, '\n'), *enl;
		json_error_t jerr;
		json_t *t, *e;
		uint64_t seq;

		assert_non_null(tnl);
		enl = strchr(ep, '\n');
		if (enl == NULL) {
			print_error("truth line %" PRIu64 " has no event\n", i);
			fail();
		}
		t = json_loadb(tp, (size_t)(tnl - tp), 0, &jerr);
		assert_non_null(t);
		seq = (uint64_t)json_integer_value(json_object_get(t, "seq"));
		if (skipped_ok)
			assert_true(seq >= i && (i == 0 || seq > last_seq));
		else
			assert_int_equal(seq, i);
		last_seq = seq;
		if (json_is_true(json_object_get(t, "valid"))) {
			json_t *cols = json_object_get(t, "cols");

			e = json_loadb(ep, (size_t)(enl - ep), 0, &jerr);
			if (e == NULL) {
				print_error("event %" PRIu64 " is not JSON: %s\n", i, jerr.text);
				fail();
			}
			assert_string_equal(json_string_value(json_object_get(e, "query_id")),
			        json_string_value(json_object_get(cols, "query_id")));
			if (json_object_get(cols, "event_type") != NULL)
				assert_string_equal(
				        json_string_value(json_object_get(e, "event_type")),
				        json_string_value(json_object_get(cols, "event_type")));
			json_decref(e);
			valid++;
		}
		json_decref(t);
		i++;
		tp = tnl + 1;
		ep = enl + 1;
	}
	assert_int_equal(i, ev->n);
	assert_true(ep == ev->buf + ev->len);
	assert_true(valid > 0);
	free(truth);
}

static void
assert_same_file(const char *a, const char *b)
{
	size_t la = 0, lb = 0;
	char *x = slurp(a, &la), *y = slurp(b, &lb);

	assert_non_null(x);
	assert_non_null(y);
	assert_true(la > 0);
	assert_int_equal(la, lb);
	assert_memory_equal(x, y, la);
	free(x);
	free(y);
}

static int
is_segment(const struct dirent *d)
{
	return strncmp(d->d_name, "seg-", 4) == 0;
}

/* Every frame in the spill directory's segments (oldest first): events into @p ev. */
static uint64_t
spill_events(const char *dir, struct events *ev)
{
	struct tl_frame_inflater *z;
	struct dirent **names;
	uint64_t frames = 0;
	int nseg = scandir(dir, &names, is_segment, alphasort);

	assert_true(nseg >= 0);
	assert_int_equal(tl_frame_inflater_create(&z), 0);
	memset(ev, 0, sizeof(*ev));
	for (int k = 0; k < nseg; k++) {
		char path[PATH_MAX];
		size_t len, off = 16; /* segment header */
		uint8_t *seg;

		snprintf(path, sizeof(path), "%s/%s", dir, names[k]->d_name);
		free(names[k]);
		seg = (uint8_t *)slurp(path, &len);
		assert_non_null(seg);
		assert_memory_equal(seg, "TLS1", 4);
		while (off + 16 <= len) {
			uint32_t flen = (uint32_t)seg[off] << 24 | (uint32_t)seg[off + 1] << 16 |
			                (uint32_t)seg[off + 2] << 8 | seg[off + 3];
			struct tl_frame_view v;
			const uint8_t *body;
			size_t blen;

			off += 16;
			assert_true(off + flen <= len);
			assert_int_equal(tl_frame_parse(seg + off, flen, &v), TL_FRAME_OK);
			assert_int_equal(tl_frame_body(z, &v, &body, &blen), TL_FRAME_OK);
			ev->buf = realloc(ev->buf, ev->len + blen + 1);
			assert_non_null(ev->buf);
			memcpy(ev->buf + ev->len, body, blen);
			ev->len += blen;
			ev->buf[ev->len] = '\0';
			ev->n += v.count;
			frames++;
			off += flen;
		}
		assert_int_equal(off, len);
		free(seg);
	}
	free(names);
	tl_frame_inflater_free(z);
	return frames;
}

/* ---- tests ---- */

static void
test_gen_framed_all_acked_each_event_once_matches_truth(void **state)
{
	char out[PATH_MAX], err[PATH_MAX], truth[PATH_MAX], sum[PATH_MAX], spill[PATH_MAX];
	char rtruth[PATH_MAX], rsum[PATH_MAX], udp[64];
	struct fake *f = fake_new(NULL, 0, true);
	struct events ev;
	char *text;

	(void)state;
	path_in(out, sizeof(out), "all.out");
	path_in(err, sizeof(err), "all.err");
	path_in(truth, sizeof(truth), "all.truth");
	path_in(sum, sizeof(sum), "all.summary");
	path_in(spill, sizeof(spill), "all.spill");
	path_in(rtruth, sizeof(rtruth), "raw.truth");
	path_in(rsum, sizeof(rsum), "raw.summary");
	GEN_EXPECT(0, out, err, "--framed", "--udp", fake_udp(f, udp, sizeof(udp)), "--spill-dir",
	        spill, "--count", "600", "--seed", "11", "--truth", truth, "--summary", sum);
	fake_stop(f);
	assert_int_equal(f->bad_frames, 0);
	assert_int_equal(f->changed_bytes, 0);
	assert_int_equal(f->producers, 1);
	assert_int_equal(f->producer_id, 1); /* the default --producer-id */
	assert_int_equal(f->hmac_frames, 0);
	assert_int_equal(f->zstd_frames, 0);
	fake_events(f, &ev);
	assert_int_equal(ev.n, 600);
	check_against_truth(&ev, truth, false);

	text = slurp(out, NULL);
	assert_non_null(text);
	assert_int_equal(figure(text, "gen_events"), 600);
	assert_int_equal(figure(text, "gen_framed_sent"), 600);
	assert_int_equal(figure(text, "gen_framed_acked"), 600);
	assert_int_equal(figure(text, "gen_framed_pending"), 0);
	assert_int_equal(figure(text, "gen_framed_rejected"), 0);
	assert_int_equal(figure(text, "gen_framed_unsent"), 0);
	assert_int_equal(figure(text, "gen_framed_producer_id"), 1);
	assert_int_equal(figure(text, "gen_bytes"), ev.len);
	/* Frames: each committed once; several events per frame. */
	assert_true(figure(text, "gen_framed_frames") < 600);
	assert_int_equal(figure(text, "gen_datagrams"), figure(text, "gen_framed_frames"));
	(void)figure(text, "gen_framed_retry_later");
	(void)figure(text, "gen_framed_spilled");
	(void)figure(text, "gen_framed_duplicate");
	free(text);

	/* Same seed, same events: the truth and the summary of a run without --framed. */
	GEN_EXPECT(0, out, err, "--count", "600", "--seed", "11", "--truth", rtruth, "--summary",
	        rsum);
	assert_same_file(truth, rtruth);
	assert_same_file(sum, rsum);
	free(ev.buf);
	fake_free(f);
}

static void
test_gen_framed_retry_later_first_frames_all_delivered(void **state)
{
	char out[PATH_MAX], err[PATH_MAX], truth[PATH_MAX], spill[PATH_MAX], udp[64];
	struct fake *f = fake_new(NULL, 4, true);
	struct events ev;
	char *text;

	(void)state;
	path_in(out, sizeof(out), "retry.out");
	path_in(err, sizeof(err), "retry.err");
	path_in(truth, sizeof(truth), "retry.truth");
	path_in(spill, sizeof(spill), "retry.spill");
	GEN_EXPECT(0, out, err, "--framed", "--udp", fake_udp(f, udp, sizeof(udp)), "--spill-dir",
	        spill, "-n", "300", "--seed", "5", "--truth", truth, "--producer-id", "77",
	        "--rate", "20000");
	fake_stop(f);
	assert_int_equal(f->retries_sent, 4);
	assert_int_equal(f->bad_frames, 0);
	assert_int_equal(f->changed_bytes, 0);
	assert_int_equal(f->producer_id, 77);
	fake_events(f, &ev);
	assert_int_equal(ev.n, 300);
	check_against_truth(&ev, truth, false);
	text = slurp(out, NULL);
	assert_non_null(text);
	assert_int_equal(figure(text, "gen_framed_retry_later"), 4);
	assert_true(figure(text, "gen_framed_resent") >= 4);
	assert_int_equal(figure(text, "gen_framed_acked"), 300);
	assert_int_equal(figure(text, "gen_framed_pending"), 0);
	assert_int_equal(figure(text, "gen_framed_producer_id"), 77);
	free(text);
	free(ev.buf);
	fake_free(f);
}

static void
test_gen_framed_hmac_zstd_verified_and_acked(void **state)
{
	char out[PATH_MAX], err[PATH_MAX], truth[PATH_MAX], spill[PATH_MAX], keys[PATH_MAX];
	char udp[64];
	struct fake *f;
	struct events ev;
	FILE *kf;
	char *text;

	(void)state;
	path_in(keys, sizeof(keys), "keys");
	kf = fopen(keys, "w");
	assert_non_null(kf);
	fprintf(kf, "# producer key-id key\n9 3 %s\n9 4 %s\n", KEY_HEX, KEY_HEX "00");
	assert_int_equal(fclose(kf), 0);
	f = fake_new(keys, 0, true);
	path_in(out, sizeof(out), "hmac.out");
	path_in(err, sizeof(err), "hmac.err");
	path_in(truth, sizeof(truth), "hmac.truth");
	path_in(spill, sizeof(spill), "hmac.spill");
	GEN_EXPECT(0, out, err, "--framed", "--udp", fake_udp(f, udp, sizeof(udp)), "--spill-dir",
	        spill, "-n", "300", "--seed", "3", "--truth", truth, "--producer-id", "9",
	        "--key-file", keys, "--key-id", "3", "--zstd-level", "3");
	fake_stop(f);
	/* The fake verifies every tag (keys loaded, unkeyed producers refused). */
	assert_int_equal(f->bad_frames, 0);
	assert_true(f->frames > 0);
	assert_int_equal(f->hmac_frames, f->frames);
	assert_int_equal(f->zstd_frames, f->frames);
	fake_events(f, &ev);
	assert_int_equal(ev.n, 300);
	check_against_truth(&ev, truth, false);
	text = slurp(out, NULL);
	assert_non_null(text);
	/* The ACKs were signed with the key: the producer took them. */
	assert_int_equal(figure(text, "gen_framed_acked"), 300);
	assert_null(strstr(text, "gen_framed_acks_unauthenticated"));
	free(text);
	free(ev.buf);
	fake_free(f);

	/* A key id the file lacks for this producer: usage error, nothing sent. */
	path_in(spill, sizeof(spill), "hmac2.spill");
	GEN_EXPECT(2, out, err, "--framed", "--udp", "127.0.0.1:9", "--spill-dir", spill, "-n",
	        "10", "--producer-id", "9", "--key-file", keys, "--key-id", "5");
	text = slurp(err, NULL);
	assert_non_null(strstr(text, "no key for producer 9 key id 5"));
	free(text);
	/* A keys file that does not load: usage error with its file:line. */
	kf = fopen(keys, "w");
	assert_non_null(kf);
	fprintf(kf, "9 3 nothex\n");
	assert_int_equal(fclose(kf), 0);
	GEN_EXPECT(2, out, err, "--framed", "--udp", "127.0.0.1:9", "--spill-dir", spill, "-n",
	        "10", "--producer-id", "9", "--key-file", keys, "--key-id", "3");
	text = slurp(err, NULL);
	assert_non_null(strstr(text, ":1:"));
	free(text);
}

static void
test_gen_framed_no_answer_exits_3_spill_holds_every_event(void **state)
{
	char out[PATH_MAX], err[PATH_MAX], truth[PATH_MAX], spill[PATH_MAX], udp[64];
	struct fake *silent = fake_new(NULL, 0, false), *f;
	struct tl_producer_conf pc;
	struct tl_producer *p;
	struct events ev, got, rest;
	uint64_t frames;
	char *text;

	(void)state;
	path_in(out, sizeof(out), "silent.out");
	path_in(err, sizeof(err), "silent.err");
	path_in(truth, sizeof(truth), "silent.truth");
	path_in(spill, sizeof(spill), "silent.spill");
	GEN_EXPECT(3, out, err, "--framed", "--udp", fake_udp(silent, udp, sizeof(udp)),
	        "--spill-dir", spill, "-n", "250", "--seed", "8", "--truth", truth, "--ack-wait",
	        "0.3");
	text = slurp(out, NULL);
	assert_non_null(text);
	assert_int_equal(figure(text, "gen_framed_sent"), 250);
	assert_int_equal(figure(text, "gen_framed_acked"), 0);
	assert_int_equal(figure(text, "gen_framed_pending"), 250);
	frames = figure(text, "gen_framed_frames");
	assert_int_equal(figure(text, "gen_framed_spilled"), frames);
	free(text);
	text = slurp(err, NULL);
	assert_non_null(strstr(text, "250 events not acknowledged"));
	free(text);

	/* Every event is on disk, in order, in frames that parse. */
	assert_int_equal(spill_events(spill, &ev), frames);
	assert_int_equal(ev.n, 250);
	check_against_truth(&ev, truth, false);

	/* A later producer on that directory delivers them, same sequences and bytes. */
	f = fake_new(NULL, 0, true);
	tl_producer_conf_init(&pc);
	pc.host = "127.0.0.1";
	pc.port = f->port;
	pc.producer_id = 1;
	pc.spill_dir = spill;
	assert_int_equal(tl_producer_open(&pc, &p), 0);
	assert_int_equal(tl_producer_flush(p, 60000), 0);
	assert_int_equal(tl_producer_close(p, 0), 0);
	fake_stop(f);
	assert_int_equal(f->bad_frames, 0);
	fake_events(f, &got);
	assert_int_equal(got.n, 250);
	assert_int_equal(got.len, ev.len);
	assert_memory_equal(got.buf, ev.buf, ev.len);
	/* All answered: the segments are gone. */
	assert_int_equal(spill_events(spill, &rest), 0);
	assert_int_equal(rest.n, 0);
	free(rest.buf);

	/* The directory is producer 1's now: another id is refused. */
	GEN_EXPECT(2, out, err, "--framed", "--udp", "127.0.0.1:9", "--spill-dir", spill, "-n",
	        "10", "--producer-id", "2");
	text = slurp(err, NULL);
	assert_non_null(strstr(text, "belongs to another producer id"));
	free(text);
	free(got.buf);
	free(ev.buf);
	fake_free(f);
	fake_free(silent);
}

static void
test_gen_framed_event_larger_than_frame_skipped_counted(void **state)
{
	char out[PATH_MAX], err[PATH_MAX], truth[PATH_MAX], spill[PATH_MAX], udp[64];
	struct fake *f = fake_new(NULL, 0, true);
	struct events ev;
	uint64_t unsent;
	char *text;

	(void)state;
	path_in(out, sizeof(out), "small.out");
	path_in(err, sizeof(err), "small.err");
	path_in(truth, sizeof(truth), "small.truth");
	path_in(spill, sizeof(spill), "small.spill");
	/* Half the events malformed: event_too_large ones (> 60 KiB) cannot fit 8 KiB frames. */
	GEN_EXPECT(0, out, err, "--framed", "--udp", fake_udp(f, udp, sizeof(udp)), "--spill-dir",
	        spill, "-n", "200", "--seed", "2", "--truth", truth, "--malformed-share", "0.5",
	        "--frame-size", "8KiB");
	fake_stop(f);
	assert_int_equal(f->bad_frames, 0);
	fake_events(f, &ev);
	text = slurp(out, NULL);
	assert_non_null(text);
	unsent = figure(text, "gen_framed_unsent");
	assert_true(unsent > 0);
	assert_int_equal(figure(text, "gen_events"), 200);
	assert_int_equal(ev.n + unsent, 200);
	assert_int_equal(figure(text, "gen_framed_acked"), ev.n);
	free(text);
	/* The truth lists exactly what was sent (seq jumps over the skipped events). */
	check_against_truth(&ev, truth, true);
	for (size_t i = 0, start = 0; i < ev.len; i++)
		if (ev.buf[i] == '\n') {
			assert_true(i - start + 1 <= 8192);
			start = i + 1;
		}
	free(ev.buf);
	fake_free(f);
}

static void
test_gen_framed_bad_options_usage_error(void **state)
{
	char out[PATH_MAX], err[PATH_MAX], spill[PATH_MAX];
	struct stat st;
	static const char *const cases[][8] = {
	        {"--framed", "--udp", "127.0.0.1:9", NULL},                 /* no --spill-dir */
	        {"--framed", "--pcap", "x.pcap", "--spill-dir", "S", NULL}, /* with --pcap */
	        {"--framed", "--udp", "127.0.0.1:9", "--spill-dir", "S", "--probe",
	                "http://127.0.0.1:9/", NULL},               /* with --probe */
	        {"--framed", "--spill-dir", "S", NULL},             /* no --udp */
	        {"--udp", "127.0.0.1:9", "--spill-dir", "S", NULL}, /* no --framed */
	        {"--udp", "127.0.0.1:9", "--ack-wait", "1", NULL},  /* no --framed */
	        {"--framed", "--udp", "127.0.0.1:9", "--spill-dir", "S", "--producer-id", "0",
	                NULL},
	        {"--framed", "--udp", "127.0.0.1:9", "--spill-dir", "S", "--zstd-level", "23",
	                NULL},
	        {"--framed", "--udp", "127.0.0.1:9", "--spill-dir", "S", "--frame-size", "64KiB",
	                NULL},
	        {"--framed", "--udp", "127.0.0.1:9", "--spill-dir", "S", "--ack-wait", "-1", NULL},
	        {"--framed", "--udp", "127.0.0.1:9", "--spill-dir", "S", "--key-id", "x", NULL},
	        {"--framed", "--udp", "8.8.8.8:5170", "--spill-dir", "S", NULL}, /* not allowed */
	        {"--framed", "--udp", "127.0.0.1", "--spill-dir", "S", NULL},    /* no port */
	};

	(void)state;
	path_in(out, sizeof(out), "usage.out");
	path_in(err, sizeof(err), "usage.err");
	path_in(spill, sizeof(spill), "usage.spill");
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		const char *a[8];

		for (int i = 0; i < 8; i++)
			a[i] = cases[c][i] != NULL && strcmp(cases[c][i], "S") == 0 ? spill
			                                                            : cases[c][i];
		GEN_EXPECT(2, out, err, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]);
		/* Refused before anything was created or sent. */
		assert_int_not_equal(stat(spill, &st), 0);
	}
}

/* ---- main ---- */

static int
setup(void **state)
{
	const char *bin = getenv("TAPLINE_BIN");
	char self[PATH_MAX];
	ssize_t n;

	(void)state;
	if (mkdtemp(root) == NULL)
		return -1;
	if (bin != NULL && bin[0] != '\0') {
		snprintf(tapline, sizeof(tapline), "%s", bin);
	} else {
		/* build/tests/test_gen_framed -> build/app/tapline */
		n = readlink("/proc/self/exe", self, sizeof(self) - 1);
		if (n <= 0)
			return -1;
		self[n] = '\0';
		*strrchr(self, '/') = '\0';
		if (strlen(self) + sizeof("/../app/tapline") > sizeof(tapline))
			return -1;
		memcpy(tapline, self, strlen(self));
		strcpy(tapline + strlen(self), "/../app/tapline");
	}
	if (access(tapline, X_OK) != 0) {
		fprintf(stderr, "%s: not found (build it, or set TAPLINE_BIN)\n", tapline);
		return -1;
	}
	return 0;
}

static int
teardown(void **state)
{
	char cmd[PATH_MAX + 16];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	return system(cmd) == 0 ? 0 : -1;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_gen_framed_all_acked_each_event_once_matches_truth),
	        cmocka_unit_test(test_gen_framed_retry_later_first_frames_all_delivered),
	        cmocka_unit_test(test_gen_framed_hmac_zstd_verified_and_acked),
	        cmocka_unit_test(test_gen_framed_no_answer_exits_3_spill_holds_every_event),
	        cmocka_unit_test(test_gen_framed_event_larger_than_frame_skipped_counted),
	        cmocka_unit_test(test_gen_framed_bad_options_usage_error),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
