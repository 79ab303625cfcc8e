/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tl_error.h"
#include "tl_framed.h"
#include "tl_log.h"

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

#define STATE_NAME "dedup.frames"
#define PAIR_LEN 16 /* producer id, sequence: side data of a record, per frame it completes */

const struct tl_opt tl_framed_opts[] = {
	{.name = "enabled", .type = TL_OPT_BOOL, .def = "true",
		.offset = offsetof(struct tl_framed_conf, enabled),
		.desc = "take framed-protocol datagrams (acknowledged, deduplicated)"},
	{.name = "keys_file", .type = TL_OPT_STRING, .def = "",
		.offset = offsetof(struct tl_framed_conf, keys_file),
		.size = sizeof(((struct tl_framed_conf *)0)->keys_file),
		.desc = "HMAC-SHA256 keys: lines `<producer_id> <key_id> <hex key>`; \"\" = none"},
	{.name = "allow_unkeyed", .type = TL_OPT_BOOL, .def = "true",
		.offset = offsetof(struct tl_framed_conf, allow_unkeyed),
		.desc = "producers without a key in keys_file may send unsigned frames"},
	{.name = "window", .type = TL_OPT_UINT, .def = "1024",
		.offset = offsetof(struct tl_framed_conf, window), .min = TL_DEDUP_WINDOW_MIN,
		.max = TL_DEDUP_WINDOW_MAX,
		.desc = "anti-replay window per producer, in sequences (a power of two)"},
	{.name = "max_producers", .type = TL_OPT_UINT, .def = "4096",
		.offset = offsetof(struct tl_framed_conf, max_producers), .min = 1,
		.max = TL_DEDUP_PRODUCERS_MAX,
		.desc = "producers the dedup table holds (idle ones are evicted beyond)"},
	{.name = "in_flight", .type = TL_OPT_UINT, .def = "4096",
		.offset = offsetof(struct tl_framed_conf, in_flight), .min = 16, .max = 1 << 20,
		.desc = "frames per worker awaiting their commit; beyond, retry-later"},
	{.name = "ack_delay", .type = TL_OPT_DURATION, .def = "10ms",
		.offset = offsetof(struct tl_framed_conf, ack_delay_ns), .min = 100000,
		.max = 10000000000ull,
		.desc = "a batch holding a frame this old is sealed, so its ACK can go out"},
	{.name = "retry_ms", .type = TL_OPT_UINT, .def = "500",
		.offset = offsetof(struct tl_framed_conf, retry_ms), .min = 1, .max = 600000,
		.desc = "how long retry-later ACKs ask producers to wait"},
	{.name = "mtu", .type = TL_OPT_UINT, .def = "1500",
		.offset = offsetof(struct tl_framed_conf, mtu), .min = 576, .max = 9000,
		.desc = "largest IP packet an ACK may use"},
	{.name = NULL},
};

int
tl_framed_check(const void *obj, char *msg, size_t msglen)
{
	const struct tl_framed_conf *c = obj;

	if ((c->window & (c->window - 1)) != 0) {
		snprintf(msg, msglen, "window %llu is not a power of two",
				(unsigned long long)c->window);
		return -EINVAL;
	}
	return 0;
}

/* A frame processed by this worker whose ACK is not sent yet. */
struct pending {
	uint64_t num;       /* the worker's frame number */
	uint64_t producer;
	uint64_t sequence;
	uint64_t arrived_ns;
	uint32_t count;
	uint32_t key_id;
	struct tl_peer peer;
};

/* Commits reported by the spool's writer: single producer (the writer), single consumer
 * (the worker). At most `buffers` records are in flight per producer, and the ring is
 * larger, so a push never finds it full. */
struct commit {
	uint64_t frontier;
	int64_t status;
};

struct commit_ring {
	_Atomic uint64_t head; /* written by the worker */
	char pad0[56];
	_Atomic uint64_t tail; /* written by the writer */
	char pad1[56];
	uint64_t mask;
	struct commit *e;
};

struct tl_framed_worker {
	struct tl_framed *f;
	unsigned id;
	struct tl_pipeline_worker *w;
	struct tl_sink *sink;
	struct tl_frame_inflater *z;
	struct pending *q; /* in_flight entries, a ring indexed by frame number */
	uint64_t cap;
	uint64_t head;     /* oldest unACKed frame number */
	uint64_t tail;     /* next frame number (frames head..tail-1 are in q) */
	uint64_t listed;   /* frames below this were named in a record's side data */
	uint64_t listed_undo;
	uint64_t committed; /* frontier of the last record committed */
	uint64_t commits;   /* records whose commit was reported */
	bool failed;        /* a commit failed: the spool is broken */
	struct tl_encode_meta meta;
	struct commit_ring ring;
	struct tl_framed_counters cnt;
	uint8_t ack[TL_ACK_MAX];
	uint8_t out[2048];
};

struct tl_framed {
	struct tl_framed_conf conf;
	struct tl_spool *spool;
	const struct tl_side *side; /* where its pairs go in a buffer's side area */
	struct tl_frame_keys *keys;
	pthread_mutex_t lock; /* dedup and image */
	struct tl_dedup_frames *dedup;
	uint8_t *image;
	size_t image_cap;
	struct tl_framed_worker **workers;
	unsigned n_workers;
	uint64_t spool_buffers;
	_Atomic bool failed;
};

static inline struct pending *
slot(struct tl_framed_worker *fw, uint64_t num)
{
	return &fw->q[num & (fw->cap - 1)];
}

static uint64_t
pow2_at_least(uint64_t v)
{
	uint64_t p = 1;

	while (p < v)
		p <<= 1;
	return p;
}

/* ---- the spool's writer thread ---- */

/* Inside the transaction: the frames these records complete are committed with them, and
 * the dedup windows that say so are stored in the same transaction. */
static int
on_txn(void *arg, struct tl_spool_txn *txn, const struct tl_spool_buf *const *bufs, unsigned n)
{
	struct tl_framed *f = arg;
	bool any = false;
	size_t need, len;
	int rc;

	for (unsigned i = 0; i < n; i++) {
		uint32_t ml;

		any |= tl_side_get(f->side, bufs[i], TL_SIDE_FRAMED, &ml) != NULL;
	}
	if (!any)
		return 0;
	pthread_mutex_lock(&f->lock);
	for (unsigned i = 0; i < n; i++) {
		uint32_t ml;
		const uint8_t *m = tl_side_get(f->side, bufs[i], TL_SIDE_FRAMED, &ml);

		for (uint32_t o = 0; m != NULL && o + PAIR_LEN <= ml; o += PAIR_LEN) {
			uint64_t p, s;

			memcpy(&p, m + o, 8);
			memcpy(&s, m + o + 8, 8);
			tl_dedup_frame_done(f->dedup, p, s, true);
		}
	}
	need = tl_dedup_frames_save_size(f->dedup);
	if (need > f->image_cap) {
		/* Grows with the producers seen; the writer thread, not a worker. */
		uint8_t *b = realloc(f->image, need * 2);

		if (b == NULL) {
			pthread_mutex_unlock(&f->lock);
			return -ENOMEM;
		}
		f->image = b;
		f->image_cap = need * 2;
	}
	rc = tl_dedup_frames_save(f->dedup, f->image, f->image_cap, &len);
	if (rc == 0)
		rc = tl_spool_txn_state_put(txn, STATE_NAME, f->image, len);
	pthread_mutex_unlock(&f->lock);
	return rc;
}

void
tl_framed_on_commit(void *arg, unsigned producer, uint64_t user, uint64_t key, int status)
{
	struct tl_framed *f = arg;
	struct tl_framed_worker *fw;
	struct commit_ring *r;
	uint64_t t;

	(void)key;
	if (producer >= f->n_workers || (fw = f->workers[producer]) == NULL)
		return;
	if (status != 0)
		atomic_store_explicit(&f->failed, true, memory_order_relaxed);
	r = &fw->ring;
	t = atomic_load_explicit(&r->tail, memory_order_relaxed);
	r->e[t & r->mask] = (struct commit){.frontier = user, .status = status};
	atomic_store_explicit(&r->tail, t + 1, memory_order_release);
}

/* ---- the worker ---- */

/* Side data of a record about to be handed over: the frames up to @p frontier that no
 * earlier record named. */
static void
on_seal(void *arg, struct tl_spool_buf *buf, uint64_t frontier)
{
	struct tl_framed_worker *fw = arg;
	uint32_t o = 0, cap = 0;
	uint8_t *m;

	if (buf == NULL) {
		fw->listed = fw->listed_undo;
		return;
	}
	fw->listed_undo = fw->listed;
	if (fw->listed < fw->head)
		fw->listed = fw->head;
	m = tl_side_region(fw->f->side, buf, TL_SIDE_FRAMED, &cap);
	while (m != NULL && fw->listed < fw->tail && fw->listed <= frontier &&
	       o + PAIR_LEN <= cap) {
		const struct pending *p = slot(fw, fw->listed);

		memcpy(m + o, &p->producer, 8);
		memcpy(m + o + 8, &p->sequence, 8);
		o += PAIR_LEN;
		fw->listed++;
	}
	if (m != NULL)
		tl_side_set_len(fw->f->side, buf, TL_SIDE_FRAMED, o);
	buf->user = frontier;
}

static void
send_ack(struct tl_framed_worker *fw, const struct tl_peer *peer, uint64_t producer,
		uint64_t sequence, uint32_t count, uint32_t key_id, enum tl_ack_status st,
		enum tl_frame_reason why, bool sign)
{
	struct tl_ack a = {
		.status = (uint8_t)st,
		.reason = (uint16_t)why,
		.producer_id = producer,
		.sequence = sequence,
		.count = st == TL_ACK_COMMITTED || st == TL_ACK_DUPLICATE ? count : 0,
		.retry_ms = st == TL_ACK_RETRY_LATER ? (uint32_t)fw->f->conf.retry_ms : 0,
	};
	const uint8_t *key = NULL;
	size_t key_len = 0;
	long n, fl;

	if (sign && fw->f->keys != NULL)
		key = tl_frame_keys_find(fw->f->keys, producer, key_id, &key_len);
	n = tl_ack_encode(&a, key, key_len, fw->ack, sizeof(fw->ack));
	if (n < 0)
		goto fail;
	fl = tl_reply_build(peer, fw->ack, (uint32_t)n, (uint32_t)fw->f->conf.mtu, fw->out,
			sizeof(fw->out));
	if (fl < 0 || fw->w->tx == NULL || fw->w->tx(fw->w->tx_arg, fw->out, (uint32_t)fl) < 0)
		goto fail;
	fw->cnt.acks[st]++;
	return;
fail:
	fw->cnt.ack_send_failed++;
}

static bool
in_flight_here(struct tl_framed_worker *fw, uint64_t producer, uint64_t sequence)
{
	for (uint64_t n = fw->head; n < fw->tail; n++) {
		const struct pending *p = slot(fw, n);

		if (p->producer == producer && p->sequence == sequence)
			return true;
	}
	return false;
}

static void
on_frame(void *arg, struct tl_pipeline_worker *w, const struct tl_peer *peer,
		const uint8_t *payload, uint32_t len)
{
	struct tl_framed_worker *fw = arg;
	struct tl_framed *f = fw->f;
	struct tl_frame_view v;
	enum tl_frame_reason why;
	enum tl_dedup_verdict dv;
	const uint8_t *body;
	size_t body_len;
	struct pending *p;

	fw->cnt.frames++;
	why = tl_frame_parse(payload, len, &v);
	if (why == TL_FRAME_OK)
		why = tl_frame_verify(f->keys, &v);
	if (unlikely(why != TL_FRAME_OK)) {
		fw->cnt.rejected[why]++;
		/* Unsigned: the frame did not authenticate, and a signed answer to anyone who
		 * names a producer would let them make it drop data. A producer that has a
		 * key ignores it and resends; one without a key learns the reason. */
		if (v.producer_id != 0 && v.sequence != 0)
			send_ack(fw, peer, v.producer_id, v.sequence, 0, 0, TL_ACK_REJECTED, why,
					false);
		return;
	}
	if (unlikely(tl_spool_admit(f->spool) != 0 || fw->failed ||
	             atomic_load_explicit(&f->failed, memory_order_relaxed))) {
		fw->cnt.retry_spool_full++;
		send_ack(fw, peer, v.producer_id, v.sequence, v.count, v.key_id,
				TL_ACK_RETRY_LATER, TL_FRAME_OK, true);
		return;
	}
	if (unlikely(fw->tail - fw->head >= fw->cap)) {
		fw->cnt.retry_in_flight_full++;
		send_ack(fw, peer, v.producer_id, v.sequence, v.count, v.key_id,
				TL_ACK_RETRY_LATER, TL_FRAME_OK, true);
		return;
	}
	pthread_mutex_lock(&f->lock);
	dv = tl_dedup_frame_check(f->dedup, v.producer_id, v.sequence);
	pthread_mutex_unlock(&f->lock);
	switch (dv) {
	case TL_DEDUP_NEW:
		break;
	case TL_DEDUP_COMMITTED:
	case TL_DEDUP_OLD:
		/* Marked committed inside the transaction, before it was durable: if it is
		 * still in flight here, its ACK follows the commit. */
		if (in_flight_here(fw, v.producer_id, v.sequence)) {
			fw->cnt.resends_pending++;
			return;
		}
		send_ack(fw, peer, v.producer_id, v.sequence, v.count, v.key_id,
				TL_ACK_DUPLICATE, TL_FRAME_OK, true);
		return;
	case TL_DEDUP_PENDING:
		fw->cnt.resends_pending++;
		return;
	case TL_DEDUP_FULL:
		fw->cnt.retry_dedup_full++;
		send_ack(fw, peer, v.producer_id, v.sequence, v.count, v.key_id,
				TL_ACK_RETRY_LATER, TL_FRAME_OK, true);
		return;
	default:
		fw->cnt.rejected[TL_FRAME_BAD_PRODUCER]++;
		send_ack(fw, peer, v.producer_id, v.sequence, v.count, v.key_id,
				TL_ACK_REJECTED, TL_FRAME_BAD_PRODUCER, true);
		return;
	}
	why = tl_frame_body(fw->z, &v, &body, &body_len);
	if (unlikely(why != TL_FRAME_OK)) {
		pthread_mutex_lock(&f->lock);
		tl_dedup_frame_done(f->dedup, v.producer_id, v.sequence, false);
		pthread_mutex_unlock(&f->lock);
		fw->cnt.rejected[why]++;
		send_ack(fw, peer, v.producer_id, v.sequence, v.count, v.key_id, TL_ACK_REJECTED,
				why, true);
		return;
	}
	p = slot(fw, fw->tail);
	*p = (struct pending){
		.num = fw->tail,
		.producer = v.producer_id,
		.sequence = v.sequence,
		.arrived_ns = fw->sink->mono_ns,
		.count = v.count,
		.key_id = v.key_id,
		.peer = *peer,
	};
	fw->meta = (struct tl_encode_meta){.producer_id = v.producer_id, .sequence = v.sequence};
	tl_sink_frame_begin(fw->sink, fw->tail, &fw->meta);
	tl_pipeline_events(w, body, (uint32_t)body_len);
	tl_sink_frame_end(fw->sink);
	fw->tail++;
	fw->cnt.frames_accepted++;
	fw->cnt.frame_events += v.count;
}

static unsigned
log2_bucket(uint64_t v)
{
	return v ? (unsigned)(63 - __builtin_clzll(v)) : 0;
}

void
tl_framed_worker_tick(struct tl_framed_worker *fw, uint64_t now_ns)
{
	struct commit_ring *r = &fw->ring;
	uint64_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
	uint64_t t = atomic_load_explicit(&r->tail, memory_order_acquire);
	uint64_t ackable, failed_upto = 0;
	bool failed = false;

	for (; h != t; h++) {
		const struct commit *c = &r->e[h & r->mask];

		fw->commits++;
		if (c->status == 0) {
			if (c->frontier > fw->committed)
				fw->committed = c->frontier;
		} else {
			failed = true;
			if (c->frontier > failed_upto)
				failed_upto = c->frontier;
		}
	}
	atomic_store_explicit(&r->head, h, memory_order_release);
	if (unlikely(failed))
		fw->failed = true;
	/* Frames that wait too long make their batches go now. */
	if (fw->head < fw->tail && now_ns != UINT64_MAX && !fw->failed) {
		uint64_t upto = fw->head;

		while (upto + 1 < fw->tail &&
		       now_ns - slot(fw, upto + 1)->arrived_ns >= fw->f->conf.ack_delay_ns)
			upto++;
		if (now_ns - slot(fw, fw->head)->arrived_ns >= fw->f->conf.ack_delay_ns)
			tl_sink_seal_frames(fw->sink, upto);
	}
	ackable = fw->committed;
	if (fw->commits == fw->sink->puts && !fw->failed) {
		/* Nothing in flight: frames whose rows all left the open batches are durable
		 * (a frame with no rows at all, or one whose last row filled a batch). */
		uint64_t fr = tl_sink_frontier(fw->sink);

		if (fr > ackable)
			ackable = fr;
	}
	while (fw->head < fw->tail && fw->head <= ackable) {
		struct pending *p = slot(fw, fw->head);

		if (fw->head >= fw->listed) {
			/* Named by no record: the transaction hook did not mark it. */
			pthread_mutex_lock(&fw->f->lock);
			tl_dedup_frame_done(fw->f->dedup, p->producer, p->sequence, true);
			pthread_mutex_unlock(&fw->f->lock);
			fw->listed = fw->head + 1;
		}
		send_ack(fw, &p->peer, p->producer, p->sequence, p->count, p->key_id,
				TL_ACK_COMMITTED, TL_FRAME_OK, true);
		if (now_ns != UINT64_MAX && p->arrived_ns != 0 && now_ns >= p->arrived_ns) {
			unsigned b = log2_bucket(now_ns - p->arrived_ns);

			fw->cnt.ack_latency_ns[b < 40 ? b : 39]++;
		}
		fw->head++;
	}
	if (unlikely(failed)) {
		/* The spool's writer failed: what it did not commit is not ACKed as such, and
		 * nothing new is taken (the dedup windows in memory may now claim frames the
		 * spool lost; the stored ones do not). */
		while (fw->head < fw->tail && fw->head <= failed_upto) {
			struct pending *p = slot(fw, fw->head);

			fw->cnt.retry_failed++;
			send_ack(fw, &p->peer, p->producer, p->sequence, p->count, p->key_id,
					TL_ACK_RETRY_LATER, TL_FRAME_OK, true);
			fw->head++;
		}
	}
}

/* ---- setup ---- */

int
tl_framed_create(const struct tl_framed_conf *conf, struct tl_spool *spool,
		struct tl_side *side, uint64_t spool_buffers, unsigned n_workers,
		struct tl_framed **out, char *err, size_t errlen)
{
	struct tl_framed *f;
	void *img = NULL;
	size_t img_len = 0;
	int rc;

	*out = NULL;
	if (conf == NULL || spool == NULL || side == NULL || n_workers == 0 ||
	    (conf->window & (conf->window - 1)) != 0) {
		snprintf(err, errlen, "framed.window must be a power of two");
		return -EINVAL;
	}
	f = calloc(1, sizeof(*f));
	if (f == NULL)
		return -ENOMEM;
	f->conf = *conf;
	f->spool = spool;
	f->spool_buffers = spool_buffers;
	f->n_workers = n_workers;
	pthread_mutex_init(&f->lock, NULL);
	f->workers = calloc(n_workers, sizeof(*f->workers));
	if (f->workers == NULL) {
		rc = -ENOMEM;
		goto fail;
	}
	if (conf->keys_file[0] != '\0') {
		rc = tl_frame_keys_load(conf->keys_file, conf->allow_unkeyed, &f->keys, err,
				errlen);
		if (rc < 0)
			goto fail;
	}
	rc = tl_dedup_frames_create((uint32_t)conf->max_producers, (uint32_t)conf->window,
			&f->dedup);
	if (rc < 0) {
		snprintf(err, errlen, "dedup windows: %s", tl_strerror(rc));
		goto fail;
	}
	rc = tl_spool_state_get(spool, STATE_NAME, &img, &img_len);
	if (rc < 0) {
		snprintf(err, errlen, "reading the stored dedup windows: %s", tl_strerror(rc));
		goto fail;
	}
	if (img != NULL) {
		struct tl_dedup_frames_stats ds;

		rc = tl_dedup_frames_load(f->dedup, img, img_len);
		free(img);
		if (rc < 0) {
			/* Forgetting them would let resent frames through twice: refuse. */
			snprintf(err, errlen, "the stored dedup windows are damaged (%s); move "
					"the spool aside to start without them",
					tl_strerror(rc));
			goto fail;
		}
		tl_dedup_frames_stats(f->dedup, &ds);
		TL_INFO("framed: dedup windows of %llu producers restored from the spool",
				(unsigned long long)ds.producers);
	}
	rc = tl_side_add(side, TL_SIDE_FRAMED,
			(uint32_t)(pow2_at_least(conf->in_flight) * PAIR_LEN), on_txn, f);
	if (rc < 0) {
		snprintf(err, errlen, "spool side data: %s", tl_strerror(rc));
		goto fail;
	}
	f->side = side;
	*out = f;
	return 0;
fail:
	tl_framed_free(f);
	return rc;
}

void
tl_framed_free(struct tl_framed *f)
{
	if (f == NULL)
		return;
	tl_dedup_frames_free(f->dedup);
	tl_frame_keys_free(f->keys);
	free(f->image);
	free(f->workers);
	pthread_mutex_destroy(&f->lock);
	free(f);
}

int
tl_framed_worker_create(struct tl_framed *f, unsigned id, struct tl_pipeline_worker *w,
		struct tl_sink *sink, struct tl_framed_worker **out)
{
	struct tl_framed_worker *fw;
	uint64_t ring = 1;
	int rc;

	*out = NULL;
	if (f == NULL || id >= f->n_workers || w == NULL || sink == NULL)
		return -EINVAL;
	fw = aligned_alloc(64, (sizeof(*fw) + 63) & ~(size_t)63);
	if (fw == NULL)
		return -ENOMEM;
	memset(fw, 0, sizeof(*fw));
	fw->f = f;
	fw->id = id;
	fw->w = w;
	fw->sink = sink;
	fw->cap = pow2_at_least(f->conf.in_flight);
	fw->head = fw->tail = fw->listed = fw->listed_undo = 1;
	fw->q = calloc(fw->cap, sizeof(*fw->q));
	/* More slots than spool buffers a producer can have in flight. */
	while (ring < f->spool_buffers * 2)
		ring <<= 1;
	fw->ring.mask = ring - 1;
	fw->ring.e = calloc(ring, sizeof(*fw->ring.e));
	if (fw->q == NULL || fw->ring.e == NULL) {
		rc = -ENOMEM;
		goto fail;
	}
	rc = tl_frame_inflater_create(&fw->z);
	if (rc < 0)
		goto fail;
	tl_sink_set_framed(sink, on_seal, fw);
	tl_pipeline_set_framed(w, on_frame, fw);
	f->workers[id] = fw;
	*out = fw;
	return 0;
fail:
	tl_framed_worker_free(fw);
	return rc;
}

void
tl_framed_worker_free(struct tl_framed_worker *fw)
{
	if (fw == NULL)
		return;
	if (fw->f != NULL && fw->f->workers[fw->id] == fw)
		fw->f->workers[fw->id] = NULL;
	tl_frame_inflater_free(fw->z);
	free(fw->q);
	free(fw->ring.e);
	free(fw);
}

const struct tl_framed_counters *
tl_framed_worker_counters(const struct tl_framed_worker *fw)
{
	return &fw->cnt;
}

uint64_t
tl_framed_worker_in_flight(const struct tl_framed_worker *fw)
{
	return fw->tail - fw->head;
}

void
tl_framed_dedup_stats(struct tl_framed *f, struct tl_dedup_frames_stats *st)
{
	pthread_mutex_lock(&f->lock);
	tl_dedup_frames_stats(f->dedup, st);
	pthread_mutex_unlock(&f->lock);
}
