/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tl_json.h"
#include "tl_log.h"
#include "tl_sink.h"

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

/* Indexed by enum tl_batch_codec. */
const char *const tl_batch_codec_names[] = {"none", "gzip", "lz4", NULL};

const struct tl_opt tl_batch_opts[] = {
	{.name = "rows", .type = TL_OPT_UINT, .def = "4096",
		.offset = offsetof(struct tl_batch_conf, rows), .min = 1, .max = TL_BATCH_MAX_ROWS,
		.desc = "a worker seals a batch at this many rows"},
	{.name = "bytes", .type = TL_OPT_SIZE, .def = "1MiB",
		.offset = offsetof(struct tl_batch_conf, bytes), .min = 4096, .max = 64ull << 20,
		.desc = "... or at this many uncompressed row bytes"},
	{.name = "delay", .type = TL_OPT_DURATION, .def = "200ms",
		.offset = offsetof(struct tl_batch_conf, delay_ns), .min = 1000000,
		.max = 60000000000ull, .desc = "... or when its first row is this old"},
	{.name = "compression", .type = TL_OPT_ENUM, .def = "lz4",
		.offset = offsetof(struct tl_batch_conf, compression), .enums = tl_batch_codec_names,
		.desc = "compression of spooled batches: lz4 (fast; forwarded as is), gzip, none"},
	{.name = "gzip_level", .type = TL_OPT_UINT, .def = "1",
		.offset = offsetof(struct tl_batch_conf, gzip_level), .min = 1, .max = 12,
		.desc = "libdeflate level when compression is gzip (1 fastest ... 12 smallest)"},
	{.name = NULL},
};

static int64_t
wall_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The encoders of a destination; -errno if one cannot be made. */
static int
lane_init(struct tl_sink *s, struct tl_sink_lane *l, uint32_t route)
{
	struct tl_encode_conf ec = s->ec;
	int rc;

	memset(l, 0, sizeof(*l));
	l->route = route;
	ec.route = route;
	if (s->dd != NULL) {
		unsigned li = (unsigned)(l - s->lane);

		for (int t = 0; t < TL_BATCH_DEAD_LETTER; t++)
			if (s->ids[li][t] == NULL &&
					(s->ids[li][t] = malloc((size_t)s->ec.batch_rows *
							TL_DEDUP_EVENT_ID_LEN)) == NULL)
				return -ENOMEM;
	}
	if (s->wm != NULL) {
		unsigned li = (unsigned)(l - s->lane);

		for (int t = 0; t < TL_BATCH_DEAD_LETTER; t++)
			if (s->delta[li][t] == NULL &&
					(rc = tl_rollup_delta_create(s->ru, &s->delta[li][t])) < 0)
				return rc;
	}
	for (int t = 0; t < TL_BATCH_EVENT_TABLES; t++) {
		rc = tl_encoder_create(s->schema, (enum tl_batch_table)t, &ec, &l->enc[t]);
		if (rc < 0)
			return rc;
		if (tl_encode_seal_max(l->enc[t]) > s->buffer_size) {
			TL_ERR("spool.buffer_size %llu is smaller than the largest %s batch (%zu "
			       "bytes): raise spool.buffer_size or lower batch.bytes / batch.rows",
					(unsigned long long)s->buffer_size,
					tl_batch_table_name((enum tl_batch_table)t),
					tl_encode_seal_max(l->enc[t]));
			return -EINVAL;
		}
	}
	return 0;
}

static void
lane_fini(struct tl_sink_lane *l)
{
	for (int t = 0; t < TL_BATCH_EVENT_TABLES; t++) {
		tl_encoder_free(l->enc[t]);
		l->enc[t] = NULL;
	}
}

int
tl_sink_init(struct tl_sink *s, const struct tl_schema *schema, const struct tl_batch_conf *conf,
		const char *appliance, struct tl_spool *spool, unsigned producer,
		uint64_t spool_buffer_size)
{
	int rc;

	memset(s, 0, sizeof(*s));
	snprintf(s->appliance, sizeof(s->appliance), "%s", appliance ? appliance : "");
	s->ec = (struct tl_encode_conf){
		.appliance_id = s->appliance,
		.producer = (uint16_t)producer,
		.batch_rows = (uint32_t)conf->rows,
		.batch_bytes = (uint32_t)conf->bytes,
		.codec = conf->compression,
		.gzip_level = (int)conf->gzip_level,
	};
	s->schema = schema;
	s->buffer_size = spool_buffer_size;
	s->spool = spool;
	s->producer = producer;
	s->delay_ns = conf->delay_ns;
	s->wall_ns = wall_now();
	rc = lane_init(s, &s->lane[0], 0);
	if (rc < 0) {
		tl_sink_fini(s);
		return rc;
	}
	s->n_lanes = 1;
	s->cnt.routes = 1;
	return 0;
}

void
tl_sink_fini(struct tl_sink *s)
{
	if (s == NULL)
		return;
	for (unsigned i = 0; i < TL_SINK_MAX_ROUTES; i++) {
		lane_fini(&s->lane[i]);
		for (int t = 0; t < TL_BATCH_DEAD_LETTER; t++) {
			tl_rollup_delta_free(s->delta[i][t]);
			s->delta[i][t] = NULL;
			free(s->ids[i][t]);
			s->ids[i][t] = NULL;
		}
	}
	tl_watermark_free(s->wm);
	s->wm = NULL;
	tl_dedup_events_free(s->dd);
	s->dd = NULL;
	s->n_lanes = 0;
}

int
tl_sink_set_dedup(struct tl_sink *s, const struct tl_side *side, uint32_t capacity,
		uint64_t window_ns)
{
	int rc;

	if (s == NULL || side == NULL || s->dd != NULL)
		return -EINVAL;
	rc = tl_dedup_events_create(capacity, window_ns, &s->dd);
	if (rc < 0)
		return rc;
	s->side = side;
	for (unsigned i = 0; i < s->n_lanes; i++)
		for (int t = 0; t < TL_BATCH_DEAD_LETTER; t++)
			if ((s->ids[i][t] = malloc((size_t)s->ec.batch_rows *
						     TL_DEDUP_EVENT_ID_LEN)) == NULL)
				return -ENOMEM;
	return 0;
}

int
tl_sink_set_rollup(struct tl_sink *s, const struct tl_rollup_conf *conf,
		const struct tl_side *side, int type_col, int db_col, int dur_col)
{
	int rc;

	if (s == NULL || conf == NULL || side == NULL || type_col < 0 || db_col < 0 ||
			s->wm != NULL)
		return -EINVAL;
	rc = tl_watermark_create(conf, &s->wm);
	if (rc < 0)
		return rc;
	s->ru = conf;
	s->side = side;
	s->ru_type = type_col;
	s->ru_db = db_col;
	s->ru_dur = dur_col;
	for (unsigned i = 0; i < s->n_lanes; i++)
		for (int t = 0; t < TL_BATCH_DEAD_LETTER; t++)
			if ((rc = tl_rollup_delta_create(conf, &s->delta[i][t])) < 0)
				return rc;
	return 0;
}

/*
 * A rollup key (event type, database) from a string column, decoded as the row stores it
 * (rollups group like the rows they count). Longer escaped values than the scratch holds
 * (absurd for such names) stay escaped; the key is cut at TL_ROLLUP_KEY_MAX anyway.
 */
static inline const char *
key_of(const struct tl_value *v, uint8_t *scratch, size_t *len)
{
	if (v->kind != TL_VAL_STRING) {
		*len = 0;
		return "";
	}
	if (v->escaped && v->len <= TL_SINK_KEY_SCRATCH) {
		*len = tl_json_unescape(v->ptr, v->len, scratch);
		return (const char *)scratch;
	}
	*len = v->len;
	return (const char *)v->ptr;
}

/* The rollup delta of lane @p l's pending batch of table @p t, or NULL. */
static inline struct tl_rollup_delta *
delta_of(struct tl_sink *s, const struct tl_sink_lane *l, enum tl_batch_table t)
{
	if (s->wm == NULL || t >= TL_BATCH_DEAD_LETTER)
		return NULL;
	return s->delta[l - s->lane][t];
}

bool
tl_sink_blocked(const struct tl_sink *s)
{
	for (unsigned i = 0; i < s->n_lanes; i++)
		for (int t = 0; t < TL_BATCH_EVENT_TABLES; t++)
			if (s->lane[i].blocked[t])
				return true;
	return false;
}

/* The frontier if the pending batch (@p skip, @p skip_t) were handed over now (skip NULL:
 * nothing): the highest frame none of whose rows would still be in an open batch. */
static uint64_t
frontier_without(const struct tl_sink *s, const struct tl_sink_lane *skip, int skip_t)
{
	uint64_t fr = s->frame ? s->frame - 1 : s->frames_done;

	for (unsigned i = 0; i < s->n_lanes; i++) {
		const struct tl_sink_lane *l = &s->lane[i];

		for (int t = 0; t < TL_BATCH_EVENT_TABLES; t++)
			if (l->first_frame[t] != 0 && !(l == skip && t == skip_t) &&
			    l->first_frame[t] - 1 < fr)
				fr = l->first_frame[t] - 1;
	}
	return fr > s->frontier ? fr : s->frontier;
}

/*
 * A batch with framed rows must not be dropped: its frames were admitted and their ACKs
 * are owed. The writer hands a buffer back within a commit; wait for one that long and
 * more, then give up (the writer is stuck or failed) and count the loss.
 */
#define FRAMED_WAIT_US 10000000

static struct tl_spool_buf *
framed_buf_get(struct tl_sink *s)
{
	struct tl_spool_buf *buf;

	for (unsigned waited = 0; (buf = tl_spool_buf_get(s->spool, s->producer)) == NULL;
	     waited += 50) {
		if (waited >= FRAMED_WAIT_US)
			return NULL;
		usleep(50);
	}
	return buf;
}

/* Hand the pending batch of table @p t to the spool. Returns 0, or -EAGAIN if the spool
 * cannot take it now (the batch stays pending). */
static int
seal(struct tl_sink *s, struct tl_sink_lane *l, enum tl_batch_table t)
{
	bool framed = l->first_frame[t] != 0;
	struct tl_spool_buf *buf = tl_spool_buf_get(s->spool, s->producer);
	struct tl_rollup_delta *d;
	struct tl_batch_hdr h;
	uint64_t fr = 0;
	size_t len;
	int rc;

	if (unlikely(buf == NULL) && framed)
		buf = framed_buf_get(s);
	if (unlikely(buf == NULL)) {
		s->cnt.spool_refused++;
		if (framed) {
			/* Waited FRAMED_WAIT_US: the rows are lost, their frames never ACKed
			 * as committed (the producer resends them). */
			s->framed_dropped += tl_encode_pending(l->enc[t]);
			TL_LOG_RATELIMITED(TL_LOG_ERR, 10, "sink %u: no spool buffer for %u "
					"framed rows in 10 s: the spool's writer is stuck",
					s->producer, tl_encode_pending(l->enc[t]));
		}
		l->blocked[t] = 1;
		return -EAGAIN;
	}
	rc = tl_encode_seal(l->enc[t], buf->data, buf->cap, &len);
	if (unlikely(rc < 0)) {
		tl_spool_buf_release(s->spool, s->producer, buf);
		if (rc == -ENODATA)
			return 0;
		s->cnt.encode_errors++;
		return rc;
	}
	buf->len = (uint32_t)len;
	tl_batch_hdr_read(buf->data, &h);
	buf->user = (uint64_t)h.rows << 8 | (uint64_t)t; /* for the commit callback */
	d = delta_of(s, l, t);
	if (d != NULL) {
		uint32_t cap;
		uint8_t *m = tl_side_region(s->side, buf, TL_SIDE_ROLLUP, &cap);
		long dl = m != NULL ? tl_rollup_delta_save(d, m, cap) : -ENOSPC;

		if (dl > 0)
			tl_side_set_len(s->side, buf, TL_SIDE_ROLLUP, (uint32_t)dl);
		else
			TL_LOG_RATELIMITED(TL_LOG_ERR, 10, "sink %u: a rollup delta does not "
					"fit its side region", s->producer);
		tl_rollup_delta_reset(d); /* the batch's rows leave now, stored or dropped */
	}
	if (s->dd != NULL && t < TL_BATCH_DEAD_LETTER) {
		unsigned li = (unsigned)(l - s->lane);
		uint32_t cap, il = s->n_ids[li][t] * TL_DEDUP_EVENT_ID_LEN;
		uint8_t *m = il ? tl_side_region(s->side, buf, TL_SIDE_DEDUP, &cap) : NULL;

		if (m != NULL && il <= cap) {
			memcpy(m, s->ids[li][t], il);
			tl_side_set_len(s->side, buf, TL_SIDE_DEDUP, il);
		}
		s->n_ids[li][t] = 0;
	}
	if (s->on_seal != NULL) {
		fr = frontier_without(s, l, t);
		s->on_seal(s->on_seal_arg, buf, fr);
	}
	rc = tl_spool_buf_put_flags(s->spool, s->producer, buf,
			framed ? TL_SPOOL_PUT_FORCE | TL_SPOOL_PUT_MORE : 0);
	if (unlikely(rc < 0)) {
		if (s->on_seal != NULL)
			s->on_seal(s->on_seal_arg, NULL, 0);
		/* Full under the backpressure policy: in raw mode nobody can be pushed back
		 * on, so the sealed rows are dropped, and counted. */
		s->cnt.spool_refused++;
		s->cnt.dropped_rows[t] += h.rows;
		if (framed)
			s->framed_dropped += h.rows;
		tl_spool_buf_release(s->spool, s->producer, buf);
		l->blocked[t] = 0;
		l->first_frame[t] = 0;
		return 0;
	}
	if (s->on_seal != NULL)
		s->frontier = fr;
	s->run_open |= framed;
	s->puts++;
	s->cnt.batches[t]++;
	l->blocked[t] = 0;
	l->first_frame[t] = 0;
	return 0;
}

/* The lane of destination @p route: the previous event's (the common case), a known
 * one, or a new one; NULL if none can be had. */
static struct tl_sink_lane *
lane_of(struct tl_sink *s, uint32_t route)
{
	struct tl_sink_lane *l = &s->lane[s->last];

	if (likely(l->route == route))
		return l;
	for (unsigned i = 0; i < s->n_lanes; i++)
		if (s->lane[i].route == route) {
			s->last = i;
			return &s->lane[i];
		}
	if (s->n_lanes == TL_SINK_MAX_ROUTES) {
		TL_LOG_RATELIMITED(TL_LOG_ERR, 10, "sink %u: more than %d destinations: rows "
				"for route %08x dropped", s->producer, TL_SINK_MAX_ROUTES, route);
		return NULL;
	}
	l = &s->lane[s->n_lanes];
	if (lane_init(s, l, route) < 0) {
		lane_fini(l);
		TL_LOG_RATELIMITED(TL_LOG_ERR, 10, "sink %u: no encoders for route %08x: rows "
				"dropped", s->producer, route);
		return NULL;
	}
	s->last = s->n_lanes++;
	s->cnt.routes = s->n_lanes;
	return l;
}

/*
 * End the run of framed records once no frame is half encoded: every other batch with
 * framed rows joins it, so no frame has rows both inside the run and still open.
 */
static void
close_run(struct tl_sink *s)
{
	if (likely(!s->run_open) || s->frame != 0)
		return;
	for (unsigned i = 0; i < s->n_lanes; i++) {
		struct tl_sink_lane *l = &s->lane[i];

		for (int t = 0; t < TL_BATCH_EVENT_TABLES; t++)
			if (l->first_frame[t] != 0)
				seal(s, l, (enum tl_batch_table)t);
	}
	tl_spool_publish(s->spool, s->producer);
	s->run_open = false;
}

static inline int
encode(struct tl_sink *s, struct tl_sink_lane *l, enum tl_batch_table t, const struct tl_event *ev,
		enum tl_reason verdict, bool late)
{
	if (verdict != TL_REASON_OK)
		return tl_encode_reject(l->enc[t], ev, verdict, s->wall_ns);
	if (s->meta != NULL || late) {
		struct tl_encode_meta m = s->meta ? *s->meta : (struct tl_encode_meta){0};

		m.late = late;
		return tl_encode_event_meta(l->enc[t], ev, &m, s->wall_ns);
	}
	return tl_encode_event(l->enc[t], ev, s->wall_ns);
}

void
tl_sink_event(void *arg, const struct tl_event *ev, enum tl_reason verdict)
{
	struct tl_sink *s = arg;
	enum tl_batch_table t = tl_encode_table_for(ev, verdict);
	/* A rejected event's fields may never have been read: the default route's
	 * dead_letter takes it. */
	struct tl_sink_lane *l = lane_of(s, verdict == TL_REASON_OK ? ev->route : 0);
	struct tl_rollup_delta *d;
	const char *type = "", *db = "";
	size_t type_len = 0, db_len = 0;
	uint64_t stream = 0, dur = 0;
	bool late = false, has_dur = false;
	int64_t ts = 0;
	int rc;

	if (unlikely(l == NULL)) {
		s->cnt.unroutable++;
		return;
	}
	if (unlikely(l->blocked[t]) && seal(s, l, t) < 0) {
		s->cnt.dropped_rows[t]++;
		return;
	}
	d = delta_of(s, l, t);
	if (d != NULL) {
		const struct tl_value *v;

		stream = s->meta ? s->meta->producer_id : 0;
		ts = ev->time_ns != 0 ? ev->time_ns : s->wall_ns;
		late = tl_watermark_observe(s->wm, stream, ts, s->mono_ns);
		type = key_of(&ev->col[s->ru_type], s->key_buf[0], &type_len);
		db = key_of(&ev->col[s->ru_db], s->key_buf[1], &db_len);
		if (s->ru_dur >= 0) {
			v = &ev->col[s->ru_dur];
			has_dur = (v->kind == TL_VAL_INT && v->i >= 0) || v->kind == TL_VAL_UINT ||
					(v->kind == TL_VAL_FLOAT && v->f >= 0 && v->f < 1.8e19);
			dur = v->kind == TL_VAL_INT ? (uint64_t)v->i
				: v->kind == TL_VAL_UINT ? v->u : (uint64_t)v->f;
		}
		/* A delta full of other windows, types or streams: its batch goes first. */
		if (!tl_rollup_delta_fits(d, stream, ts, type, type_len, db, db_len) &&
				tl_encode_pending(l->enc[t]) > 0 && seal(s, l, t) < 0) {
			s->cnt.dropped_rows[t]++;
			return;
		}
	}
	if (tl_encode_pending(l->enc[t]) == 0)
		l->first_mono[t] = s->mono_ns;
	rc = encode(s, l, t, ev, verdict, late);
	if (unlikely(rc == -ENOBUFS)) {
		/* The row does not fit what is left: seal, then it goes first in the next. */
		if (seal(s, l, t) < 0) {
			s->cnt.dropped_rows[t]++;
			return;
		}
		l->first_mono[t] = s->mono_ns;
		rc = encode(s, l, t, ev, verdict, late);
	}
	if (unlikely(rc < 0)) {
		s->cnt.encode_errors++;
		return;
	}
	if (s->dd != NULL && s->meta == NULL && t < TL_BATCH_DEAD_LETTER) {
		unsigned li = (unsigned)(l - s->lane);
		uint8_t id[TL_DEDUP_EVENT_ID_LEN];

		tl_encode_last_id(l->enc[t], id);
		if (tl_dedup_event_seen(s->dd, id, (uint64_t)s->wall_ns)) {
			/* Sent twice (an at-least-once producer without frames): the first
			 * copy is in this batch or an earlier one. */
			tl_encode_drop_last(l->enc[t]);
			s->dup_rows++;
			return;
		}
		if (s->n_ids[li][t] < s->ec.batch_rows)
			memcpy(s->ids[li][t] + (size_t)s->n_ids[li][t]++ * TL_DEDUP_EVENT_ID_LEN, id,
					TL_DEDUP_EVENT_ID_LEN);
	}
	if (d != NULL) {
		tl_rollup_delta_add(d, stream, ts, type, type_len, db, db_len,
				t == TL_BATCH_ERROR_EVENTS, late, has_dur, dur);
		s->late_rows += late;
	}
	if (s->frame != 0 && l->first_frame[t] == 0)
		l->first_frame[t] = s->frame;
	s->cnt.rows[t]++;
	if (rc == 1)
		seal(s, l, t);
	close_run(s);
}

/*
 * The worker is stopping: its last rows must reach the spool, so wait for the writer to
 * hand a buffer back (it does within a commit) instead of leaving them pending, where
 * they would be lost uncounted. Rows still without a buffer after FINAL_WAIT_US (the
 * writer is stuck or failed) are counted as dropped.
 */
#define FINAL_WAIT_US 10000000

static void
final_seal(struct tl_sink *s, struct tl_sink_lane *l, enum tl_batch_table t)
{
	for (unsigned waited = 0; seal(s, l, t) == -EAGAIN; waited += 100) {
		if (waited >= FINAL_WAIT_US) {
			s->cnt.dropped_rows[t] += tl_encode_pending(l->enc[t]);
			TL_ERR("sink %u: no spool buffer for the last %u %s rows: dropped",
					s->producer, tl_encode_pending(l->enc[t]),
					tl_batch_table_name((unsigned)t));
			return;
		}
		usleep(100);
	}
}

void
tl_sink_tick(void *arg, uint64_t now_ns)
{
	struct tl_sink *s = arg;

	s->wall_ns = wall_now();
	if (now_ns != UINT64_MAX)
		s->mono_ns = now_ns;
	for (unsigned i = 0; i < s->n_lanes; i++) {
		struct tl_sink_lane *l = &s->lane[i];

		for (int t = 0; t < TL_BATCH_EVENT_TABLES; t++) {
			if (tl_encode_pending(l->enc[t]) == 0)
				continue;
			if (now_ns == UINT64_MAX) {
				final_seal(s, l, (enum tl_batch_table)t);
				continue;
			}
			if (l->blocked[t] || now_ns - l->first_mono[t] >= s->delay_ns)
				seal(s, l, (enum tl_batch_table)t);
		}
	}
	close_run(s);
}

void
tl_sink_set_framed(struct tl_sink *s, tl_sink_seal_fn fn, void *arg)
{
	s->on_seal = fn;
	s->on_seal_arg = arg;
}

void
tl_sink_frame_begin(struct tl_sink *s, uint64_t frame, const struct tl_encode_meta *meta)
{
	s->frame = frame;
	s->meta = meta;
}

void
tl_sink_frame_end(struct tl_sink *s)
{
	s->frames_done = s->frame;
	s->frame = 0;
	s->meta = NULL;
	close_run(s);
}

uint64_t
tl_sink_frontier(const struct tl_sink *s)
{
	return frontier_without(s, NULL, -1);
}

void
tl_sink_seal_frames(struct tl_sink *s, uint64_t upto)
{
	for (unsigned i = 0; i < s->n_lanes; i++) {
		struct tl_sink_lane *l = &s->lane[i];

		for (int t = 0; t < TL_BATCH_EVENT_TABLES; t++)
			if (l->first_frame[t] != 0 && l->first_frame[t] <= upto)
				seal(s, l, (enum tl_batch_table)t);
	}
	close_run(s);
}
