/* SPDX-License-Identifier: BSD-3-Clause */
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tl_error.h"
#include "tl_log.h"
#include "tl_rawdedup.h"
#include "tl_time.h"

#define PREFIX "dedup.e."
#define PIECE_HDR 12 /* u64 time_ns, u32 ids, little-endian */
#define ID_LEN TL_DEDUP_EVENT_ID_LEN

const struct tl_opt tl_rawdedup_opts[] = {
        {.name = "enabled",
                .type = TL_OPT_BOOL,
                .def = "true",
                .offset = offsetof(struct tl_rawdedup_conf, enabled),
                .desc = "drop raw-mode events whose event_id was accepted within the window"},
        {.name = "window",
                .type = TL_OPT_DURATION,
                .def = "10m",
                .offset = offsetof(struct tl_rawdedup_conf, window_ns),
                .min = 1000000000ull,
                .max = 7ull * 86400 * 1000000000ull,
                .desc = "how long an accepted event id is remembered (kept across restarts)"},
        {.name = "capacity",
                .type = TL_OPT_UINT,
                .def = "262144",
                .offset = offsetof(struct tl_rawdedup_conf, capacity),
                .min = TL_DEDUP_EVENTS_MIN,
                .max = TL_DEDUP_EVENTS_MAX,
                .desc = "event ids remembered per worker (a power of two; about 40 bytes "
                        "each); more within the window: the oldest go first"},
        {.name = NULL},
};

int
tl_rawdedup_check(const void *obj, char *msg, size_t msglen)
{
	const struct tl_rawdedup_conf *c = obj;

	if (c->capacity & (c->capacity - 1)) {
		snprintf(msg, msglen, "capacity %" PRIu64 " is not a power of two", c->capacity);
		return 1;
	}
	return 0;
}

/* One stored piece: the ids of one transaction. */
struct piece {
	uint64_t seq;
	uint64_t time_ns;
	uint32_t n;
};

struct tl_rawdedup {
	struct tl_rawdedup_conf conf;
	struct tl_spool *spool;
	const struct tl_side *side;
	uint64_t cap_total; /* ids of all workers together */
	pthread_mutex_t lock;
	struct piece *q; /* pieces stored, oldest first: q[head .. tail) */
	size_t head, tail, cap;
	uint64_t total; /* ids in q */
	uint64_t next_seq;
	struct {
		size_t head, tail;
		uint64_t total, next_seq;
	} undo; /* before this transaction's first hook run */
	uint8_t *blob;
	size_t blob_cap;
	uint8_t *restore; /* every stored id and time, read at create: [time u64][id] */
	size_t restore_n;
};

static void
piece_name(char *buf, size_t len, uint64_t seq)
{
	snprintf(buf, len, PREFIX "%016" PRIx64, seq);
}

static int
push(struct tl_rawdedup *r, uint64_t seq, uint64_t time_ns, uint32_t n)
{
	if (r->tail == r->cap) {
		/* Only grows here (indices stay valid for an undo); compact() makes room. */
		size_t cap = r->cap ? r->cap * 2 : 1024;
		struct piece *q = realloc(r->q, cap * sizeof(*q));

		if (q == NULL)
			return -ENOMEM;
		r->q = q;
		r->cap = cap;
	}
	r->q[r->tail++] = (struct piece){.seq = seq, .time_ns = time_ns, .n = n};
	r->total += n;
	return 0;
}

/* Forgotten pieces at the front: reuse their room (only before an undo point is taken). */
static void
compact(struct tl_rawdedup *r)
{
	if (r->head == 0 || r->head < r->cap / 2)
		return;
	memmove(r->q, r->q + r->head, (r->tail - r->head) * sizeof(*r->q));
	r->tail -= r->head;
	r->head = 0;
}

static int
on_txn(void *arg, struct tl_spool_txn *txn, const struct tl_spool_buf *const *bufs, unsigned n)
{
	struct tl_rawdedup *r = arg;
	uint64_t now = (uint64_t)tl_wall_ns(), ids = 0, t64;
	char name[TL_SPOOL_STATE_NAME_MAX + 1];
	size_t at = PIECE_HDR;
	uint32_t n32;
	int rc = 0;

	pthread_mutex_lock(&r->lock);
	if (tl_spool_txn_attempt(txn) > 0) {
		/* The try before was not stored: nothing it added or deleted happened. */
		r->head = r->undo.head;
		r->tail = r->undo.tail;
		r->total = r->undo.total;
		r->next_seq = r->undo.next_seq;
	} else {
		compact(r);
		r->undo.head = r->head;
		r->undo.tail = r->tail;
		r->undo.total = r->total;
		r->undo.next_seq = r->next_seq;
	}
	for (unsigned i = 0; i < n; i++) {
		uint32_t len;

		if (tl_side_get(r->side, bufs[i], TL_SIDE_DEDUP, &len) != NULL)
			ids += len / ID_LEN;
	}
	if (ids > 0) {
		size_t need = PIECE_HDR + ids * ID_LEN;

		if (need > r->blob_cap) {
			uint8_t *b = realloc(r->blob, need * 2);

			if (b == NULL) {
				rc = -ENOMEM;
				goto out;
			}
			r->blob = b;
			r->blob_cap = need * 2;
		}
		for (unsigned i = 0; i < n; i++) {
			uint32_t len;
			const uint8_t *d = tl_side_get(r->side, bufs[i], TL_SIDE_DEDUP, &len);

			if (d == NULL)
				continue;
			len -= len % ID_LEN;
			memcpy(r->blob + at, d, len);
			at += len;
		}
		t64 = htole64(now);
		n32 = htole32((uint32_t)ids);
		memcpy(r->blob, &t64, 8);
		memcpy(r->blob + 8, &n32, 4);
		piece_name(name, sizeof(name), r->next_seq);
		rc = tl_spool_txn_state_put(txn, name, r->blob, at);
		if (rc < 0 || (rc = push(r, r->next_seq, now, (uint32_t)ids)) < 0)
			goto out;
		r->next_seq++;
	}
	/* Older than the window, or more than every worker can hold: forgotten here too. */
	while (r->head < r->tail && (r->q[r->head].time_ns + r->conf.window_ns < now ||
	                                    r->total - r->q[r->head].n >= r->cap_total)) {
		piece_name(name, sizeof(name), r->q[r->head].seq);
		rc = tl_spool_txn_state_del(txn, name);
		if (rc < 0)
			goto out;
		r->total -= r->q[r->head].n;
		r->head++;
	}
out:
	pthread_mutex_unlock(&r->lock);
	return rc;
}

/* tl_spool_state_scan callback at create: queue the piece and keep its ids. */
static int
load_piece(void *arg, const char *name, const void *val, size_t len)
{
	struct tl_rawdedup *r = arg;
	const uint8_t *p = val;
	uint64_t seq, t;
	uint32_t n;
	uint8_t *m;

	if (sscanf(name + strlen(PREFIX), "%16" SCNx64, &seq) != 1 || len < PIECE_HDR)
		return 0; /* not one of ours: ignored */
	memcpy(&t, p, 8);
	memcpy(&n, p + 8, 4);
	t = le64toh(t);
	n = le32toh(n);
	if ((uint64_t)n * ID_LEN != len - PIECE_HDR) {
		TL_WARN("dedup: stored piece %s is malformed: ignored", name);
		return 0;
	}
	m = realloc(r->restore, (r->restore_n + n) * (8 + ID_LEN));
	if (m == NULL)
		return -1;
	r->restore = m;
	for (uint32_t i = 0; i < n; i++) {
		memcpy(m + (r->restore_n + i) * (8 + ID_LEN), &t, 8);
		memcpy(m + (r->restore_n + i) * (8 + ID_LEN) + 8, p + PIECE_HDR + i * ID_LEN,
		        ID_LEN);
	}
	r->restore_n += n;
	if (push(r, seq, t, n) < 0)
		return -1;
	if (seq >= r->next_seq)
		r->next_seq = seq + 1;
	return 0;
}

int
tl_rawdedup_create(const struct tl_rawdedup_conf *conf, unsigned n_workers, uint32_t batch_rows,
        struct tl_spool *spool, struct tl_side *side, struct tl_rawdedup **out, char *err,
        size_t errlen)
{
	struct tl_rawdedup *r;
	int rc;

	*out = NULL;
	if (conf == NULL || spool == NULL || side == NULL || n_workers == 0 || batch_rows == 0)
		return -EINVAL;
	r = calloc(1, sizeof(*r));
	if (r == NULL)
		return -ENOMEM;
	r->conf = *conf;
	r->spool = spool;
	r->side = side;
	r->cap_total = conf->capacity * n_workers;
	r->next_seq = 1;
	pthread_mutex_init(&r->lock, NULL);
	rc = tl_spool_state_scan(spool, PREFIX, load_piece, r);
	if (rc < 0) {
		snprintf(err, errlen, "dedup: reading the stored event ids: %s", tl_strerror(rc));
		goto fail;
	}
	if (r->restore_n > 0)
		TL_INFO("dedup: %zu raw-mode event ids restored from the spool", r->restore_n);
	rc = tl_side_add(side, TL_SIDE_DEDUP, batch_rows * ID_LEN, on_txn, r);
	if (rc < 0) {
		snprintf(err, errlen, "dedup: spool side data: %s", tl_strerror(rc));
		goto fail;
	}
	*out = r;
	return 0;
fail:
	tl_rawdedup_free(r);
	return rc;
}

uint64_t
tl_rawdedup_restore(struct tl_rawdedup *r, struct tl_dedup_events *d)
{
	uint64_t n = 0;

	if (r == NULL || d == NULL)
		return 0;
	for (size_t i = 0; i < r->restore_n; i++) {
		const uint8_t *e = r->restore + i * (8 + ID_LEN);
		uint64_t t;

		memcpy(&t, e, 8);
		n += !tl_dedup_event_seen(d, e + 8, t);
	}
	return n;
}

void
tl_rawdedup_restored(struct tl_rawdedup *r)
{
	if (r == NULL)
		return;
	free(r->restore);
	r->restore = NULL;
	r->restore_n = 0;
}

uint64_t
tl_rawdedup_stored(struct tl_rawdedup *r)
{
	uint64_t n;

	if (r == NULL)
		return 0;
	pthread_mutex_lock(&r->lock);
	n = r->total;
	pthread_mutex_unlock(&r->lock);
	return n;
}

void
tl_rawdedup_free(struct tl_rawdedup *r)
{
	if (r == NULL)
		return;
	pthread_mutex_destroy(&r->lock);
	free(r->q);
	free(r->blob);
	free(r->restore);
	free(r);
}
