/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Per-worker watermarks, per-batch rollup deltas and the spool writer's rollup state.
 *
 * Tables: every keyed table (streams by id, cells by (window, type, db)) is an array of
 * entries plus an open-addressing index with linear probing. An index slot holds the
 * entry number and 32 bits of its hash, so probes compare hashes before keys and a
 * removal can shift the following slots back (no tombstones: tables that lose entries
 * all day, like the rollup's cells, never degrade). The index has at least twice as many
 * slots as entries. Hashes are XXH3 seeded per table from getrandom(): event types and
 * stream ids come from the network, and a known seed would let a sender pick colliding
 * keys and turn every lookup into a walk over the table. Nothing observable depends on
 * hash order: emission follows a heap and a FIFO, saves follow those and the LRU list.
 *
 * Streams sit on a least-recently-seen list (doubly linked through the entries). Seen
 * times are processing times and only move forward, so the list is also ordered by seen
 * time: the streams active within idle_ns are a suffix of it, and the emission watermark
 * walks that suffix only.
 *
 * The rollup's cells live in a pool of 2 * max_cells entries in one of two states:
 *  - open: waiting for the watermark, in a binary min-heap ordered by (window, type,
 *    db) of at most max_cells cells. Emission pops the heap, so windows come out oldest
 *    first and, within a window, in key order (deterministic: tests and restarts see the
 *    same sequence).
 *  - pending: a row decided but not yet handed out (a correction, or a cell emitted early
 *    because the heap was full), in a FIFO drained first by every emit.
 * A key has at most one cell in the pool; a delta cell whose key is in the pool is added
 * to that cell whatever its state (nothing of it was emitted yet, so the sum stays
 * right). A new key whose window ends at or below the emitted-up-to mark (the highest
 * window end emitted) becomes a pending correction; any other new key opens a cell.
 *
 * Forced emission (the heap exceeds max_cells): the oldest open window's cells all move
 * to the pending FIFO and the emitted-up-to mark advances to that window's end, exactly
 * as if the watermark had passed it. Choosing the oldest window keeps a single mark
 * correct: every window at or below it has been emitted (or is being emitted), so no set
 * of forced windows has to be remembered, and later cells of a forced window become
 * corrections. Forcing frees heap room, not pool entries; the other max_cells entries of
 * the pool hold the pending rows until the next emit. A merge that finds fewer free
 * entries than the new keys it brings refuses with -ENOSPC before touching anything (the
 * caller emits and merges again), so a merge is all or nothing and nothing is ever lost.
 *
 * Byte formats (all integers little-endian, the last 8 bytes XXH64 seed 0 of all bytes
 * before them):
 *
 * Cell record (in both formats):
 *     8 window start (int64, a multiple of window_ns)
 *     8 count  8 errors  8 late  8 dur_count  8 duration_sum_ms
 *     4 hist mask (bit i: bucket i non-zero), then 8 per set bit, lowest bucket first
 *     1 flags (delta: 0; state: bit 0 correction, only for pending cells)
 *     1 type_len (<= 63)  1 db_len (<= 63)  type bytes  db bytes
 *   Checks: count >= 1; errors, late, dur_count <= count; every bucket listed is
 *   non-zero and <= dur_count; in a delta the buckets sum to dur_count exactly.
 *
 * Delta 'T''L''R''D' version 1:
 *     0 4 magic  4 4 version  8 8 window_ns  16 4 n_streams  20 4 n_cells
 *    24 n_streams x (8 stream id, 8 max event time), then n_cells cell records, xxh64
 *
 * State 'T''L''R''S' version 1:
 *     0 4 magic  4 4 version  8 8 window_ns  16 8 emitted-up-to mark (INT64_MIN: none)
 *    24 4 n_streams  28 4 n_open  32 4 n_pending  36 4 reserved (0)
 *    40 n_streams x (8 id, 8 max event time, 8 age_ns), least recently seen first
 *       n_open cell records (heap order), n_pending cell records (FIFO order), xxh64
 *   Ages are processing time since the stream was last seen, relative to the latest
 *   now_ns the saver was given: the clock does not survive a restart, so the loader
 *   rebases them on the first now_ns it is given (downtime does not count as idle).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define XXH_INLINE_ALL /* header-only: no link dependency, and the hash inlines */
#include <xxhash.h>

#include "tl_rollup.h"

#define unlikely(x) __builtin_expect(!!(x), 0)

#define NIL UINT32_MAX

#define NS_PER_MS 1000000ull
#define NS_PER_S 1000000000ull
#define NS_PER_DAY (86400ull * NS_PER_S)

/* Limits, shared by the option table, tl_rollup_check() and the create functions. */
#define WINDOW_MIN_NS NS_PER_S
#define WINDOW_MAX_NS NS_PER_DAY
#define LATENESS_MAX_NS (7 * NS_PER_DAY)
#define IDLE_MIN_NS NS_PER_MS
#define IDLE_MAX_NS (7 * NS_PER_DAY)
#define STREAMS_MAX (1u << 20)
#define CELLS_MAX (1u << 20)
#define DELTA_MAX 65536u

#define DELTA_MAGIC "TLRD"
#define STATE_MAGIC "TLRS"
#define FORMAT_VERSION 1u
#define DELTA_HDR 24u
#define STATE_HDR 40u
#define TRAILER 8u
#define DELTA_STREAM_REC 16u
#define STATE_STREAM_REC 24u
#define CELL_REC_MIN 55u /* 6 x 8 + 4 + 3 */
#define CELL_REC_MAX (CELL_REC_MIN + 8u * TL_ROLLUP_HIST + 2u * TL_ROLLUP_KEY_MAX)
#define FLAG_CORRECTION 0x1u

const struct tl_opt tl_rollup_opts[] = {
        {.name = "enabled",
                .type = TL_OPT_BOOL,
                .def = "true",
                .offset = offsetof(struct tl_rollup_conf, enabled),
                .desc = "edge rollups and late-event flags"},
        {.name = "window",
                .type = TL_OPT_DURATION,
                .def = "10s",
                .offset = offsetof(struct tl_rollup_conf, window_ns),
                .min = WINDOW_MIN_NS,
                .max = WINDOW_MAX_NS,
                .desc = "rollup window (event time), 1s..1d"},
        {.name = "lateness",
                .type = TL_OPT_DURATION,
                .def = "30s",
                .offset = offsetof(struct tl_rollup_conf, lateness_ns),
                .min = 0,
                .max = LATENESS_MAX_NS,
                .desc = "allowed lateness: events further behind their stream's newest are late"},
        {.name = "idle",
                .type = TL_OPT_DURATION,
                .def = "60s",
                .offset = offsetof(struct tl_rollup_conf, idle_ns),
                .min = IDLE_MIN_NS,
                .max = IDLE_MAX_NS,
                .desc = "a stream quiet this long (processing time) stops holding rollups back"},
        {.name = "max_streams",
                .type = TL_OPT_UINT,
                .def = "4096",
                .offset = offsetof(struct tl_rollup_conf, max_streams),
                .min = 1,
                .max = STREAMS_MAX,
                .desc = "streams tracked per worker and by the rollup (least recent forgotten)"},
        {.name = "max_cells",
                .type = TL_OPT_UINT,
                .def = "4096",
                .offset = offsetof(struct tl_rollup_conf, max_cells),
                .min = 1,
                .max = CELLS_MAX,
                .desc = "open rollup cells; when full, the oldest window is emitted early"},
        {.name = "delta_cells",
                .type = TL_OPT_UINT,
                .def = "64",
                .offset = offsetof(struct tl_rollup_conf, delta_cells),
                .min = 1,
                .max = DELTA_MAX,
                .desc = "cells per batch delta; a batch is sealed when its delta is full"},
        {.name = "delta_streams",
                .type = TL_OPT_UINT,
                .def = "16",
                .offset = offsetof(struct tl_rollup_conf, delta_streams),
                .min = 1,
                .max = DELTA_MAX,
                .desc = "streams per batch delta; a batch is sealed when its delta is full"},
        {.name = "type_column",
                .type = TL_OPT_STRING,
                .def = "event_type",
                .offset = offsetof(struct tl_rollup_conf, type_column),
                .size = sizeof(((struct tl_rollup_conf *)0)->type_column),
                .desc = "schema column whose value is a rollup's event type"},
        {.name = "database_column",
                .type = TL_OPT_STRING,
                .def = "database_name",
                .offset = offsetof(struct tl_rollup_conf, database_column),
                .size = sizeof(((struct tl_rollup_conf *)0)->database_column),
                .desc = "schema column whose value is a rollup's database"},
        {.name = "duration_column",
                .type = TL_OPT_STRING,
                .def = "duration_ms",
                .offset = offsetof(struct tl_rollup_conf, duration_column),
                .size = sizeof(((struct tl_rollup_conf *)0)->duration_column),
                .desc = "schema column holding the event's duration in ms (\"\": none)"},
        {.name = NULL},
};

static int
range(char *msg, size_t msglen, const char *name, uint64_t v, uint64_t lo, uint64_t hi)
{
	if (v >= lo && v <= hi)
		return 0;
	snprintf(msg, msglen, "%s %" PRIu64 " is outside %" PRIu64 "..%" PRIu64, name, v, lo, hi);
	return -EINVAL;
}

int
tl_rollup_check(const void *obj, char *msg, size_t msglen)
{
	const struct tl_rollup_conf *c = obj;
	int rc = 0;

	/* Hand-built confs (tests, tl_rollup_create) get the table's ranges here too. */
	rc = rc ?: range(msg, msglen, "window (ns)", c->window_ns, WINDOW_MIN_NS, WINDOW_MAX_NS);
	rc = rc ?: range(msg, msglen, "lateness (ns)", c->lateness_ns, 0, LATENESS_MAX_NS);
	rc = rc ?: range(msg, msglen, "idle (ns)", c->idle_ns, IDLE_MIN_NS, IDLE_MAX_NS);
	rc = rc ?: range(msg, msglen, "max_streams", c->max_streams, 1, STREAMS_MAX);
	rc = rc ?: range(msg, msglen, "max_cells", c->max_cells, 1, CELLS_MAX);
	rc = rc ?: range(msg, msglen, "delta_cells", c->delta_cells, 1, DELTA_MAX);
	rc = rc ?: range(msg, msglen, "delta_streams", c->delta_streams, 1, DELTA_MAX);
	if (rc != 0)
		return rc;
	/* One batch's delta must always fit in an emptied rollup, or its merge could be
	 * refused for ever. */
	if (c->delta_cells > c->max_cells) {
		snprintf(msg, msglen, "delta_cells %" PRIu64 " exceeds max_cells %" PRIu64,
		        c->delta_cells, c->max_cells);
		return -EINVAL;
	}
	return 0;
}

/* ---- arithmetic ---- */

static inline uint64_t
sat_add(uint64_t a, uint64_t b)
{
	uint64_t s;

	return __builtin_add_overflow(a, b, &s) ? UINT64_MAX : s;
}

/* time - lateness, saturated at INT64_MIN (lateness <= 7 days fits in int64). */
static inline int64_t
sat_sub_i64(int64_t t, uint64_t d)
{
	int64_t s;

	return __builtin_sub_overflow(t, (int64_t)d, &s) ? INT64_MIN : s;
}

/* floor(t / w) * w. Within one window of INT64_MIN the floor is not representable: those
 * times share the lowest representable window. */
static inline int64_t
window_start(int64_t t, uint64_t w)
{
	int64_t wi = (int64_t)w, s = t / wi * wi, f;

	if (t % wi < 0 && !__builtin_sub_overflow(s, wi, &f))
		s = f;
	return s;
}

/* start + w, saturated at INT64_MAX. */
static inline int64_t
window_end(int64_t start, uint64_t w)
{
	int64_t e;

	return __builtin_add_overflow(start, (int64_t)w, &e) ? INT64_MAX : e;
}

static inline unsigned
hist_bucket(uint64_t ms)
{
	unsigned b = ms == 0 ? 0 : 64u - (unsigned)__builtin_clzll(ms);

	return b < TL_ROLLUP_HIST ? b : TL_ROLLUP_HIST - 1;
}

static uint64_t
random_seed(const void *salt)
{
	uint64_t seed;
	struct timespec ts;

	if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) == (ssize_t)sizeof(seed))
		return seed;
	/* No entropy yet (early boot): still differs per table and per start. */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return XXH3_64bits_withSeed(&ts, sizeof(ts), (uint64_t)(uintptr_t)salt);
}

/* ---- little-endian bytes ---- */

static inline void
put_u32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline void
put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint32_t
get_u32(const uint8_t *p)
{
	uint32_t v = 0;

	for (int i = 3; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static inline uint64_t
get_u64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* Bounded reader: every read checks what is left, a short read poisons it. */
struct rd {
	const uint8_t *p;
	size_t left;
	bool bad;
};

static inline const uint8_t *
rd_take(struct rd *r, size_t n)
{
	const uint8_t *p = r->p;

	if (r->bad || n > r->left) {
		r->bad = true;
		return NULL;
	}
	r->p += n;
	r->left -= n;
	return p;
}

static inline uint64_t
rd_u64(struct rd *r)
{
	const uint8_t *p = rd_take(r, 8);

	return p ? get_u64(p) : 0;
}

static inline uint32_t
rd_u32(struct rd *r)
{
	const uint8_t *p = rd_take(r, 4);

	return p ? get_u32(p) : 0;
}

static inline uint8_t
rd_u8(struct rd *r)
{
	const uint8_t *p = rd_take(r, 1);

	return p ? p[0] : 0;
}

/* Magic, version, window, length and checksum of an image; @return a reader positioned
 * after magic and version and ending before the checksum, or bad. */
static struct rd
open_image(const void *buf, size_t len, const char *magic, size_t hdr)
{
	struct rd r = {.p = buf, .left = len, .bad = true};

	if (buf == NULL || len < hdr + TRAILER)
		return r;
	if (memcmp(buf, magic, 4) != 0 || get_u32(r.p + 4) != FORMAT_VERSION)
		return r;
	if (XXH64(buf, len - TRAILER, 0) != get_u64(r.p + len - TRAILER))
		return r;
	r.p += 8;
	r.left = len - TRAILER - 8;
	r.bad = false;
	return r;
}

/* ---- open-addressing index ---- */

struct islot {
	uint32_t e; /* entry + 1; 0: empty */
	uint32_t h;
};

struct index {
	struct islot *s;
	uint32_t mask;
};

static size_t
index_bytes(uint32_t entries)
{
	size_t n = 8;

	while (n < 2 * (size_t)entries)
		n <<= 1;
	return n * sizeof(struct islot);
}

static int
index_init(struct index *ix, uint32_t entries, size_t *mem)
{
	size_t bytes = index_bytes(entries);

	ix->s = calloc(1, bytes);
	if (ix->s == NULL)
		return -ENOMEM;
	ix->mask = (uint32_t)(bytes / sizeof(struct islot) - 1);
	*mem += bytes;
	return 0;
}

static inline uint32_t
hash32(uint64_t h)
{
	return (uint32_t)(h ^ (h >> 32));
}

static void
index_insert(struct index *ix, uint32_t h, uint32_t e)
{
	uint32_t i = h & ix->mask;

	while (ix->s[i].e != 0)
		i = (i + 1) & ix->mask;
	ix->s[i].e = e + 1;
	ix->s[i].h = h;
}

/* Remove entry @p e (present, with hash @p h); shift the cluster after it back so that
 * every entry stays reachable from its home slot. */
static void
index_remove(struct index *ix, uint32_t h, uint32_t e)
{
	uint32_t i = h & ix->mask, j, k;

	while (ix->s[i].e != e + 1)
		i = (i + 1) & ix->mask;
	ix->s[i].e = 0;
	for (j = i;;) {
		j = (j + 1) & ix->mask;
		if (ix->s[j].e == 0)
			return;
		k = ix->s[j].h & ix->mask;
		/* Leave it if its home lies cyclically in (i, j]. */
		if (i <= j ? (i < k && k <= j) : (i < k || k <= j))
			continue;
		ix->s[i] = ix->s[j];
		ix->s[j].e = 0;
		i = j;
	}
}

/* ---- streams: id -> max event time, with a least-recently-seen list ---- */

struct stream {
	uint64_t id;
	int64_t max;
	uint64_t seen; /* processing time; in a loaded rollup, the age until rebased */
	uint32_t prev, next;
	uint32_t h;
};

struct streams {
	struct stream *e;
	struct index ix;
	uint64_t seed;
	uint64_t evicted;
	uint32_t cap, n;
	uint32_t head, tail; /* least and most recently seen */
	uint32_t free;       /* stack through next */
};

static void
streams_reset(struct streams *st)
{
	memset(st->ix.s, 0, ((size_t)st->ix.mask + 1) * sizeof(*st->ix.s));
	for (uint32_t i = 0; i < st->cap; i++)
		st->e[i].next = i + 1 < st->cap ? i + 1 : NIL;
	st->free = 0;
	st->n = 0;
	st->head = st->tail = NIL;
}

static int
streams_init(struct streams *st, uint32_t cap, size_t *mem)
{
	memset(st, 0, sizeof(*st));
	st->e = calloc(cap, sizeof(*st->e));
	if (st->e == NULL)
		return -ENOMEM;
	*mem += (size_t)cap * sizeof(*st->e);
	if (index_init(&st->ix, cap, mem) != 0) {
		free(st->e);
		return -ENOMEM;
	}
	st->cap = cap;
	st->seed = random_seed(st);
	streams_reset(st);
	return 0;
}

static void
streams_fini(struct streams *st)
{
	free(st->ix.s);
	free(st->e);
}

static inline uint32_t
stream_hash(const struct streams *st, uint64_t id)
{
	return hash32(XXH3_64bits_withSeed(&id, sizeof(id), st->seed));
}

static uint32_t
streams_find(const struct streams *st, uint64_t id)
{
	uint32_t h = stream_hash(st, id), i = h & st->ix.mask;

	for (; st->ix.s[i].e != 0; i = (i + 1) & st->ix.mask) {
		uint32_t e = st->ix.s[i].e - 1;

		if (st->ix.s[i].h == h && st->e[e].id == id)
			return e;
	}
	return NIL;
}

static void
lru_unlink(struct streams *st, uint32_t i)
{
	struct stream *s = &st->e[i];

	if (s->prev != NIL)
		st->e[s->prev].next = s->next;
	else
		st->head = s->next;
	if (s->next != NIL)
		st->e[s->next].prev = s->prev;
	else
		st->tail = s->prev;
}

static void
lru_append(struct streams *st, uint32_t i)
{
	st->e[i].prev = st->tail;
	st->e[i].next = NIL;
	if (st->tail != NIL)
		st->e[st->tail].next = i;
	else
		st->head = i;
	st->tail = i;
}

static void
streams_touch(struct streams *st, uint32_t i, uint64_t now)
{
	st->e[i].seen = now;
	if (st->tail != i) {
		lru_unlink(st, i);
		lru_append(st, i);
	}
}

/* Insert @p id (absent). Full: the least recently seen stream is forgotten if @p evict,
 * else NIL. */
static uint32_t
streams_insert(struct streams *st, uint64_t id, int64_t max, uint64_t now, bool evict)
{
	uint32_t i;

	if (st->free == NIL) {
		if (!evict)
			return NIL;
		i = st->head;
		lru_unlink(st, i);
		index_remove(&st->ix, st->e[i].h, i);
		st->n--;
		st->evicted++;
	} else {
		i = st->free;
		st->free = st->e[i].next;
	}
	st->e[i].id = id;
	st->e[i].max = max;
	st->e[i].seen = now;
	st->e[i].h = stream_hash(st, id);
	index_insert(&st->ix, st->e[i].h, i);
	lru_append(st, i);
	st->n++;
	return i;
}

/* ---- watermarks ---- */

struct tl_watermark {
	struct streams st;
	uint64_t lateness_ns;
	size_t mem;
};

int
tl_watermark_create(const struct tl_rollup_conf *conf, struct tl_watermark **out)
{
	struct tl_watermark *wm;

	*out = NULL;
	if (conf == NULL || conf->max_streams == 0 || conf->max_streams > STREAMS_MAX)
		return -EINVAL;
	wm = calloc(1, sizeof(*wm));
	if (wm == NULL)
		return -ENOMEM;
	wm->mem = sizeof(*wm);
	if (streams_init(&wm->st, (uint32_t)conf->max_streams, &wm->mem) != 0) {
		free(wm);
		return -ENOMEM;
	}
	/* Kept within int64 so that max - lateness can be computed (it saturates). */
	wm->lateness_ns = conf->lateness_ns < INT64_MAX ? conf->lateness_ns : INT64_MAX;
	*out = wm;
	return 0;
}

void
tl_watermark_free(struct tl_watermark *wm)
{
	if (wm == NULL)
		return;
	streams_fini(&wm->st);
	free(wm);
}

bool
tl_watermark_observe(struct tl_watermark *wm, uint64_t stream, int64_t time_ns, uint64_t now_ns)
{
	uint32_t i = streams_find(&wm->st, stream);
	struct stream *s;
	bool late;

	if (unlikely(i == NIL)) {
		streams_insert(&wm->st, stream, time_ns, now_ns, true);
		return false;
	}
	s = &wm->st.e[i];
	late = time_ns < sat_sub_i64(s->max, wm->lateness_ns);
	if (time_ns > s->max)
		s->max = time_ns;
	streams_touch(&wm->st, i, now_ns);
	return late;
}

void
tl_watermark_seed(struct tl_watermark *wm, uint64_t stream, int64_t max_ns, uint64_t now_ns)
{
	uint32_t i = streams_find(&wm->st, stream);

	if (i == NIL) {
		streams_insert(&wm->st, stream, max_ns, now_ns, true);
		return;
	}
	if (max_ns > wm->st.e[i].max)
		wm->st.e[i].max = max_ns;
	streams_touch(&wm->st, i, now_ns);
}

void
tl_watermark_stats(const struct tl_watermark *wm, struct tl_rollup_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->streams = wm->st.n;
	st->memory_bytes = wm->mem;
	st->evicted = wm->st.evicted;
}

/* ---- cells ---- */

enum cell_state { CELL_FREE, CELL_OPEN, CELL_PENDING };

struct cell {
	int64_t window;
	uint64_t count, errors, late, dur_count, dur_sum;
	uint64_t hist[TL_ROLLUP_HIST];
	uint32_t h;
	uint32_t pos;  /* heap position while open */
	uint32_t next; /* pending FIFO or free list */
	uint8_t state;
	bool correction;
	uint8_t type_len, db_len;
	char type[TL_ROLLUP_KEY_MAX];
	char db[TL_ROLLUP_KEY_MAX];
};

/* A lookup key: the bytes hashed are window, type_len, type, db_len, db. */
struct key {
	int64_t window;
	uint8_t type_len, db_len;
	const char *type, *db;
};

static uint32_t
key_hash(const struct key *k, uint64_t seed)
{
	uint8_t b[8 + 2 + 2 * TL_ROLLUP_KEY_MAX], *p = b;

	put_u64(p, (uint64_t)k->window);
	p += 8;
	*p++ = k->type_len;
	if (k->type_len)
		memcpy(p, k->type, k->type_len);
	p += k->type_len;
	*p++ = k->db_len;
	if (k->db_len)
		memcpy(p, k->db, k->db_len);
	p += k->db_len;
	return hash32(XXH3_64bits_withSeed(b, (size_t)(p - b), seed));
}

static inline bool
key_eq(const struct cell *c, const struct key *k)
{
	return c->window == k->window && c->type_len == k->type_len && c->db_len == k->db_len &&
	       memcmp(c->type, k->type, k->type_len) == 0 && memcmp(c->db, k->db, k->db_len) == 0;
}

static uint32_t
cells_find(const struct index *ix, const struct cell *cells, const struct key *k, uint32_t h)
{
	for (uint32_t i = h & ix->mask; ix->s[i].e != 0; i = (i + 1) & ix->mask) {
		uint32_t e = ix->s[i].e - 1;

		if (ix->s[i].h == h && key_eq(&cells[e], k))
			return e;
	}
	return NIL;
}

static void
cell_init(struct cell *c, const struct key *k, uint32_t h)
{
	c->window = k->window;
	c->count = c->errors = c->late = c->dur_count = c->dur_sum = 0;
	memset(c->hist, 0, sizeof(c->hist));
	c->h = h;
	c->correction = false;
	c->type_len = k->type_len;
	c->db_len = k->db_len;
	if (k->type_len)
		memcpy(c->type, k->type, k->type_len);
	if (k->db_len)
		memcpy(c->db, k->db, k->db_len);
}

static inline struct key
cell_key(const struct cell *c)
{
	return (struct key){c->window, c->type_len, c->db_len, c->type, c->db};
}

/* Add @p src's counts to @p dst, saturating so that errors, late and dur_count stay at
 * or below count whatever is merged. */
static void
cell_add(struct cell *dst, const struct cell *src)
{
	dst->count = sat_add(dst->count, src->count);
	dst->errors = sat_add(dst->errors, src->errors);
	dst->late = sat_add(dst->late, src->late);
	dst->dur_count = sat_add(dst->dur_count, src->dur_count);
	dst->dur_sum = sat_add(dst->dur_sum, src->dur_sum);
	for (unsigned b = 0; b < TL_ROLLUP_HIST; b++)
		dst->hist[b] = sat_add(dst->hist[b], src->hist[b]);
}

static size_t
cell_rec_size(const struct cell *c)
{
	size_t n = CELL_REC_MIN + c->type_len + c->db_len;

	for (unsigned b = 0; b < TL_ROLLUP_HIST; b++)
		n += c->hist[b] != 0 ? 8 : 0;
	return n;
}

static uint8_t *
cell_put(uint8_t *p, const struct cell *c, uint8_t flags)
{
	uint32_t mask = 0;

	for (unsigned b = 0; b < TL_ROLLUP_HIST; b++)
		mask |= (c->hist[b] != 0 ? 1u : 0u) << b;
	put_u64(p, (uint64_t)c->window);
	put_u64(p + 8, c->count);
	put_u64(p + 16, c->errors);
	put_u64(p + 24, c->late);
	put_u64(p + 32, c->dur_count);
	put_u64(p + 40, c->dur_sum);
	put_u32(p + 48, mask);
	p += 52;
	for (unsigned b = 0; b < TL_ROLLUP_HIST; b++) {
		if (c->hist[b] != 0) {
			put_u64(p, c->hist[b]);
			p += 8;
		}
	}
	*p++ = flags;
	*p++ = c->type_len;
	*p++ = c->db_len;
	if (c->type_len)
		memcpy(p, c->type, c->type_len);
	p += c->type_len;
	if (c->db_len)
		memcpy(p, c->db, c->db_len);
	return p + c->db_len;
}

/* Decode and check one cell record into @p c (keys copied). @p exact: the buckets must
 * sum to dur_count (deltas; the rollup's saturating sums cannot promise it). */
static bool
cell_get(struct rd *r, struct cell *c, uint64_t window_ns, bool exact, uint8_t *flags)
{
	const uint8_t *p;
	uint32_t mask;
	unsigned __int128 sum = 0;

	c->window = (int64_t)rd_u64(r);
	c->count = rd_u64(r);
	c->errors = rd_u64(r);
	c->late = rd_u64(r);
	c->dur_count = rd_u64(r);
	c->dur_sum = rd_u64(r);
	mask = rd_u32(r);
	for (unsigned b = 0; b < TL_ROLLUP_HIST; b++) {
		c->hist[b] = mask & (1u << b) ? rd_u64(r) : 0;
		if ((mask & (1u << b)) && (c->hist[b] == 0 || c->hist[b] > c->dur_count))
			return false;
		sum += c->hist[b];
	}
	*flags = rd_u8(r);
	c->type_len = rd_u8(r);
	c->db_len = rd_u8(r);
	if (r->bad || c->type_len > TL_ROLLUP_KEY_MAX || c->db_len > TL_ROLLUP_KEY_MAX)
		return false;
	p = rd_take(r, c->type_len);
	if (p != NULL && c->type_len)
		memcpy(c->type, p, c->type_len);
	p = rd_take(r, c->db_len);
	if (p != NULL && c->db_len)
		memcpy(c->db, p, c->db_len);
	if (r->bad || c->window % (int64_t)window_ns != 0 || c->count == 0)
		return false;
	if (c->errors > c->count || c->late > c->count || c->dur_count > c->count)
		return false;
	return !exact || sum == c->dur_count;
}

static void
cell_row(const struct cell *c, struct tl_rollup_row *row)
{
	row->window_ns = c->window;
	row->count = c->count;
	row->errors = c->errors;
	row->late = c->late;
	row->dur_count = c->dur_count;
	row->duration_sum_ms = c->dur_sum;
	memcpy(row->hist, c->hist, sizeof(row->hist));
	row->correction = c->correction;
	row->type_len = c->type_len;
	row->db_len = c->db_len;
	memcpy(row->event_type, c->type, c->type_len);
	row->event_type[c->type_len] = '\0';
	memcpy(row->database, c->db, c->db_len);
	row->database[c->db_len] = '\0';
}

/* ---- deltas ---- */

struct delta_stream {
	uint64_t id;
	int64_t max;
	uint32_t h;
};

struct tl_rollup_delta {
	uint64_t window_ns;
	uint64_t rows;
	uint64_t seed;
	struct cell *cells;
	struct delta_stream *streams;
	struct index cix, six;
	uint32_t max_cells, max_streams;
	uint32_t n_cells, n_streams;
};

int
tl_rollup_delta_create(const struct tl_rollup_conf *conf, struct tl_rollup_delta **out)
{
	struct tl_rollup_delta *d;
	size_t mem = 0;

	*out = NULL;
	if (conf == NULL || conf->delta_cells == 0 || conf->delta_cells > DELTA_MAX ||
	        conf->delta_streams == 0 || conf->delta_streams > DELTA_MAX ||
	        conf->window_ns == 0 || conf->window_ns > INT64_MAX)
		return -EINVAL;
	d = calloc(1, sizeof(*d));
	if (d == NULL)
		return -ENOMEM;
	d->window_ns = conf->window_ns;
	d->max_cells = (uint32_t)conf->delta_cells;
	d->max_streams = (uint32_t)conf->delta_streams;
	d->seed = random_seed(d);
	d->cells = calloc(d->max_cells, sizeof(*d->cells));
	d->streams = calloc(d->max_streams, sizeof(*d->streams));
	if (d->cells == NULL || d->streams == NULL)
		goto fail;
	if (index_init(&d->cix, d->max_cells, &mem) != 0)
		goto fail;
	if (index_init(&d->six, d->max_streams, &mem) != 0)
		goto fail;
	*out = d;
	return 0;
fail:
	tl_rollup_delta_free(d);
	return -ENOMEM;
}

void
tl_rollup_delta_free(struct tl_rollup_delta *d)
{
	if (d == NULL)
		return;
	free(d->cix.s);
	free(d->six.s);
	free(d->cells);
	free(d->streams);
	free(d);
}

void
tl_rollup_delta_reset(struct tl_rollup_delta *d)
{
	/* Removing the entries one by one costs what the batch used, not the table size. */
	for (uint32_t i = 0; i < d->n_cells; i++)
		index_remove(&d->cix, d->cells[i].h, i);
	for (uint32_t i = 0; i < d->n_streams; i++)
		index_remove(&d->six, d->streams[i].h, i);
	d->n_cells = d->n_streams = 0;
	d->rows = 0;
}

static struct key
make_key(const struct tl_rollup_delta *d, int64_t time_ns, const char *type, size_t type_len,
        const char *db, size_t db_len)
{
	struct key k = {.window = window_start(time_ns, d->window_ns), .type = type, .db = db};

	k.type_len = (uint8_t)(type_len < TL_ROLLUP_KEY_MAX ? type_len : TL_ROLLUP_KEY_MAX);
	k.db_len = (uint8_t)(db_len < TL_ROLLUP_KEY_MAX ? db_len : TL_ROLLUP_KEY_MAX);
	if (type == NULL)
		k.type_len = 0;
	if (db == NULL)
		k.db_len = 0;
	return k;
}

static uint32_t
delta_stream_find(const struct tl_rollup_delta *d, uint64_t id, uint32_t h)
{
	for (uint32_t i = h & d->six.mask; d->six.s[i].e != 0; i = (i + 1) & d->six.mask) {
		uint32_t e = d->six.s[i].e - 1;

		if (d->six.s[i].h == h && d->streams[e].id == id)
			return e;
	}
	return NIL;
}

bool
tl_rollup_delta_fits(const struct tl_rollup_delta *d, uint64_t stream, int64_t time_ns,
        const char *type, size_t type_len, const char *db, size_t db_len)
{
	struct key k;
	uint32_t sh;

	if (d->n_cells < d->max_cells && d->n_streams < d->max_streams)
		return true;
	k = make_key(d, time_ns, type, type_len, db, db_len);
	if (d->n_cells >= d->max_cells &&
	        cells_find(&d->cix, d->cells, &k, key_hash(&k, d->seed)) == NIL)
		return false;
	sh = hash32(XXH3_64bits_withSeed(&stream, sizeof(stream), d->seed));
	return d->n_streams < d->max_streams || delta_stream_find(d, stream, sh) != NIL;
}

int
tl_rollup_delta_add(struct tl_rollup_delta *d, uint64_t stream, int64_t time_ns, const char *type,
        size_t type_len, const char *db, size_t db_len, bool error, bool late, bool has_duration,
        uint64_t duration_ms)
{
	struct key k = make_key(d, time_ns, type, type_len, db, db_len);
	uint32_t ch = key_hash(&k, d->seed);
	uint32_t sh = hash32(XXH3_64bits_withSeed(&stream, sizeof(stream), d->seed));
	uint32_t ci = cells_find(&d->cix, d->cells, &k, ch);
	uint32_t si = delta_stream_find(d, stream, sh);
	struct cell *c;

	/* Both slots are checked before either is taken: -ENOSPC adds nothing. */
	if ((ci == NIL && d->n_cells >= d->max_cells) ||
	        (si == NIL && d->n_streams >= d->max_streams))
		return -ENOSPC;
	if (ci == NIL) {
		ci = d->n_cells++;
		cell_init(&d->cells[ci], &k, ch);
		index_insert(&d->cix, ch, ci);
	}
	if (si == NIL) {
		si = d->n_streams++;
		d->streams[si] = (struct delta_stream){.id = stream, .max = time_ns, .h = sh};
		index_insert(&d->six, sh, si);
	} else if (time_ns > d->streams[si].max) {
		d->streams[si].max = time_ns;
	}
	c = &d->cells[ci];
	c->count++;
	c->errors += error;
	c->late += late;
	if (has_duration) {
		c->dur_count++;
		c->dur_sum = sat_add(c->dur_sum, duration_ms);
		c->hist[hist_bucket(duration_ms)]++;
	}
	d->rows++;
	return 0;
}

uint64_t
tl_rollup_delta_rows(const struct tl_rollup_delta *d)
{
	return d->rows;
}

size_t
tl_rollup_delta_max_size(const struct tl_rollup_conf *conf)
{
	uint64_t c = conf->delta_cells < DELTA_MAX ? conf->delta_cells : DELTA_MAX;
	uint64_t s = conf->delta_streams < DELTA_MAX ? conf->delta_streams : DELTA_MAX;

	return DELTA_HDR + s * DELTA_STREAM_REC + c * CELL_REC_MAX + TRAILER;
}

long
tl_rollup_delta_save(const struct tl_rollup_delta *d, void *buf, size_t cap)
{
	size_t need = DELTA_HDR + (size_t)d->n_streams * DELTA_STREAM_REC + TRAILER;
	uint8_t *p = buf;

	for (uint32_t i = 0; i < d->n_cells; i++)
		need += cell_rec_size(&d->cells[i]);
	if (buf == NULL || cap < need)
		return -ENOSPC;
	memcpy(p, DELTA_MAGIC, 4);
	put_u32(p + 4, FORMAT_VERSION);
	put_u64(p + 8, d->window_ns);
	put_u32(p + 16, d->n_streams);
	put_u32(p + 20, d->n_cells);
	p += DELTA_HDR;
	for (uint32_t i = 0; i < d->n_streams; i++, p += DELTA_STREAM_REC) {
		put_u64(p, d->streams[i].id);
		put_u64(p + 8, (uint64_t)d->streams[i].max);
	}
	for (uint32_t i = 0; i < d->n_cells; i++)
		p = cell_put(p, &d->cells[i], 0);
	put_u64(p, XXH64(buf, need - TRAILER, 0));
	return (long)need;
}

/* ---- the rollup ---- */

struct tl_rollup {
	struct tl_rollup_conf conf;
	struct streams st;
	struct cell *cells; /* pool of 2 * max_cells */
	struct index cix;
	uint32_t *heap; /* open cells, max_cells + 1 (one over, until forced) */
	uint64_t seed;
	uint32_t pool, free, used;
	uint32_t n_open;
	uint32_t pend_head, pend_tail, n_pend;
	int64_t mark; /* highest window end emitted; INT64_MIN: none */
	int64_t wm;   /* last emission watermark computed */
	uint64_t now_last;
	bool rebase; /* stream seen times hold ages (loaded, no now_ns given yet) */
	size_t mem;
	uint64_t merged_cells, rows_emitted, corrections, forced;
};

static void
rollup_reset(struct tl_rollup *r)
{
	streams_reset(&r->st);
	memset(r->cix.s, 0, ((size_t)r->cix.mask + 1) * sizeof(*r->cix.s));
	for (uint32_t i = 0; i < r->pool; i++) {
		r->cells[i].state = CELL_FREE;
		r->cells[i].next = i + 1 < r->pool ? i + 1 : NIL;
	}
	r->free = 0;
	r->used = r->n_open = r->n_pend = 0;
	r->pend_head = r->pend_tail = NIL;
	r->mark = INT64_MIN;
	r->wm = INT64_MIN;
	r->now_last = 0;
	r->rebase = false;
}

int
tl_rollup_create(const struct tl_rollup_conf *conf, struct tl_rollup **out)
{
	struct tl_rollup *r;
	char msg[128];

	*out = NULL;
	if (conf == NULL || tl_rollup_check(conf, msg, sizeof(msg)) != 0)
		return -EINVAL;
	r = calloc(1, sizeof(*r));
	if (r == NULL)
		return -ENOMEM;
	r->conf = *conf;
	r->mem = sizeof(*r);
	r->pool = 2 * (uint32_t)conf->max_cells;
	r->seed = random_seed(r);
	if (streams_init(&r->st, (uint32_t)conf->max_streams, &r->mem) != 0) {
		free(r);
		return -ENOMEM;
	}
	r->cells = calloc(r->pool, sizeof(*r->cells));
	r->heap = calloc((size_t)conf->max_cells + 1, sizeof(*r->heap));
	if (r->cells == NULL || r->heap == NULL)
		goto fail;
	r->mem += (size_t)r->pool * sizeof(*r->cells) + ((size_t)conf->max_cells + 1) * 4;
	if (index_init(&r->cix, r->pool, &r->mem) != 0)
		goto fail;
	rollup_reset(r);
	*out = r;
	return 0;
fail:
	tl_rollup_free(r);
	return -ENOMEM;
}

void
tl_rollup_free(struct tl_rollup *r)
{
	if (r == NULL)
		return;
	streams_fini(&r->st);
	free(r->cix.s);
	free(r->cells);
	free(r->heap);
	free(r);
}

/* Heap order: window, then type, then database, as bytes (shorter prefix first). */
static int
bytes_cmp(const char *a, unsigned al, const char *b, unsigned bl)
{
	int c = memcmp(a, b, al < bl ? al : bl);

	return c != 0 ? c : (int)al - (int)bl;
}

static bool
heap_less(const struct tl_rollup *r, uint32_t a, uint32_t b)
{
	const struct cell *x = &r->cells[a], *y = &r->cells[b];
	int c;

	if (x->window != y->window)
		return x->window < y->window;
	c = bytes_cmp(x->type, x->type_len, y->type, y->type_len);
	if (c != 0)
		return c < 0;
	return bytes_cmp(x->db, x->db_len, y->db, y->db_len) < 0;
}

static void
heap_set(struct tl_rollup *r, uint32_t pos, uint32_t e)
{
	r->heap[pos] = e;
	r->cells[e].pos = pos;
}

static void
heap_push(struct tl_rollup *r, uint32_t e)
{
	uint32_t i = r->n_open++;

	while (i > 0) {
		uint32_t parent = (i - 1) / 2;

		if (!heap_less(r, e, r->heap[parent]))
			break;
		heap_set(r, i, r->heap[parent]);
		i = parent;
	}
	heap_set(r, i, e);
	r->cells[e].state = CELL_OPEN;
}

static uint32_t
heap_pop(struct tl_rollup *r)
{
	uint32_t top = r->heap[0], e, i = 0;

	e = r->heap[--r->n_open];
	for (;;) {
		uint32_t c = 2 * i + 1;

		if (c >= r->n_open)
			break;
		if (c + 1 < r->n_open && heap_less(r, r->heap[c + 1], r->heap[c]))
			c++;
		if (!heap_less(r, r->heap[c], e))
			break;
		heap_set(r, i, r->heap[c]);
		i = c;
	}
	if (r->n_open > 0)
		heap_set(r, i, e);
	return top;
}

static void
pend_push(struct tl_rollup *r, uint32_t e)
{
	r->cells[e].state = CELL_PENDING;
	r->cells[e].next = NIL;
	if (r->pend_tail != NIL)
		r->cells[r->pend_tail].next = e;
	else
		r->pend_head = e;
	r->pend_tail = e;
	r->n_pend++;
}

static uint32_t
pend_pop(struct tl_rollup *r)
{
	uint32_t e = r->pend_head;

	r->pend_head = r->cells[e].next;
	if (r->pend_head == NIL)
		r->pend_tail = NIL;
	r->n_pend--;
	return e;
}

static uint32_t
cell_alloc(struct tl_rollup *r, const struct key *k, uint32_t h)
{
	uint32_t e = r->free;

	r->free = r->cells[e].next;
	r->used++;
	cell_init(&r->cells[e], k, h);
	index_insert(&r->cix, h, e);
	return e;
}

static void
cell_release(struct tl_rollup *r, uint32_t e)
{
	index_remove(&r->cix, r->cells[e].h, e);
	r->cells[e].state = CELL_FREE;
	r->cells[e].next = r->free;
	r->free = e;
	r->used--;
}

static void
advance_mark(struct tl_rollup *r, int64_t window)
{
	int64_t end = window_end(window, r->conf.window_ns);

	if (end > r->mark)
		r->mark = end;
}

/* The heap holds one cell too many: the oldest window goes to the pending FIFO whole. */
static void
force_oldest(struct tl_rollup *r)
{
	int64_t w = r->cells[r->heap[0]].window;

	while (r->n_open > 0 && r->cells[r->heap[0]].window == w) {
		pend_push(r, heap_pop(r));
		r->forced++;
	}
	advance_mark(r, w);
}

/* The clock is gone after a restart: saved ages become seen times relative to the first
 * now_ns given after the load. */
static void
take_now(struct tl_rollup *r, uint64_t now)
{
	if (r->rebase) {
		for (uint32_t i = r->st.head; i != NIL; i = r->st.e[i].next) {
			uint64_t age = r->st.e[i].seen;

			r->st.e[i].seen = now > age ? now - age : 0;
		}
		r->rebase = false;
	}
	if (now > r->now_last)
		r->now_last = now;
}

int
tl_rollup_merge(struct tl_rollup *r, const void *delta, size_t len, uint64_t now_ns)
{
	struct rd rd = open_image(delta, len, DELTA_MAGIC, DELTA_HDR), streams_at, cells_at;
	struct cell c;
	uint32_t n_streams, n_cells, need = 0;
	uint8_t flags;

	if (rd.bad || rd_u64(&rd) != r->conf.window_ns)
		return -EBADMSG;
	n_streams = rd_u32(&rd);
	n_cells = rd_u32(&rd);
	if ((size_t)n_streams * DELTA_STREAM_REC > rd.left)
		return -EBADMSG;
	streams_at = rd;
	rd_take(&rd, (size_t)n_streams * DELTA_STREAM_REC);
	/* First pass: check every cell and count the keys the pool lacks (a key repeated
	 * within the delta counts twice: an overestimate only refuses early). */
	cells_at = rd;
	for (uint32_t i = 0; i < n_cells; i++) {
		struct key k;

		if (!cell_get(&rd, &c, r->conf.window_ns, true, &flags) || flags != 0)
			return -EBADMSG;
		k = cell_key(&c);
		need += cells_find(&r->cix, r->cells, &k, key_hash(&k, r->seed)) == NIL;
	}
	if (rd.left != 0)
		return -EBADMSG;
	if (need > r->pool - r->used)
		return -ENOSPC;

	take_now(r, now_ns);
	rd = streams_at;
	for (uint32_t i = 0; i < n_streams; i++) {
		uint64_t id = rd_u64(&rd);
		int64_t max = (int64_t)rd_u64(&rd);
		uint32_t s = streams_find(&r->st, id);

		if (s == NIL) {
			streams_insert(&r->st, id, max, now_ns, true);
			continue;
		}
		if (max > r->st.e[s].max)
			r->st.e[s].max = max;
		streams_touch(&r->st, s, now_ns);
	}
	rd = cells_at;
	for (uint32_t i = 0; i < n_cells; i++) {
		struct key k;
		uint32_t h, e;

		cell_get(&rd, &c, r->conf.window_ns, true, &flags);
		k = cell_key(&c);
		h = key_hash(&k, r->seed);
		e = cells_find(&r->cix, r->cells, &k, h);
		if (e == NIL) {
			e = cell_alloc(r, &k, h);
			if (window_end(k.window, r->conf.window_ns) <= r->mark) {
				r->cells[e].correction = true;
				pend_push(r, e);
			} else {
				heap_push(r, e);
				if (r->n_open > r->conf.max_cells)
					force_oldest(r);
			}
		}
		cell_add(&r->cells[e], &c);
		r->merged_cells++;
	}
	return 0;
}

/* Minimum of (max - lateness) over the streams seen within idle_ns; false: none. */
static bool
emission_watermark(const struct tl_rollup *r, uint64_t now, int64_t *wm)
{
	bool any = false;

	*wm = INT64_MAX;
	for (uint32_t i = r->st.tail; i != NIL; i = r->st.e[i].prev) {
		const struct stream *s = &r->st.e[i];
		int64_t w;

		/* Seen times only grow along the list, so the first idle stream ends it. */
		if (now > s->seen && now - s->seen >= r->conf.idle_ns)
			break;
		w = sat_sub_i64(s->max, r->conf.lateness_ns);
		if (w < *wm)
			*wm = w;
		any = true;
	}
	return any;
}

static void
emit_cell(struct tl_rollup *r, uint32_t e, struct tl_rollup_row *row)
{
	cell_row(&r->cells[e], row);
	r->rows_emitted++;
	r->corrections += r->cells[e].correction;
	cell_release(r, e);
}

static unsigned
emit_pending(struct tl_rollup *r, struct tl_rollup_row *rows, unsigned max)
{
	unsigned n = 0;

	while (n < max && r->n_pend > 0)
		emit_cell(r, pend_pop(r), &rows[n++]);
	return n;
}

unsigned
tl_rollup_emit(struct tl_rollup *r, uint64_t now_ns, struct tl_rollup_row *rows, unsigned max)
{
	unsigned n;
	int64_t wm;

	take_now(r, now_ns);
	/* Pending rows are decided already: they go out even when no stream is active. */
	n = emit_pending(r, rows, max);
	if (!emission_watermark(r, now_ns, &wm)) {
		r->wm = INT64_MIN;
		return n;
	}
	r->wm = wm;
	while (n < max && r->n_open > 0) {
		const struct cell *c = &r->cells[r->heap[0]];

		if (window_end(c->window, r->conf.window_ns) > wm)
			break;
		advance_mark(r, c->window);
		emit_cell(r, heap_pop(r), &rows[n++]);
	}
	return n;
}

unsigned
tl_rollup_emit_all(struct tl_rollup *r, struct tl_rollup_row *rows, unsigned max)
{
	unsigned n = emit_pending(r, rows, max);

	while (n < max && r->n_open > 0) {
		advance_mark(r, r->cells[r->heap[0]].window);
		emit_cell(r, heap_pop(r), &rows[n++]);
	}
	return n;
}

bool
tl_rollup_stream_max(const struct tl_rollup *r, uint64_t stream, int64_t *max_ns)
{
	uint32_t i = streams_find(&r->st, stream);

	if (i == NIL)
		return false;
	*max_ns = r->st.e[i].max;
	return true;
}

void
tl_rollup_streams(const struct tl_rollup *r, void (*fn)(void *arg, uint64_t stream, int64_t max_ns),
        void *arg)
{
	for (uint32_t i = r->st.head; i != NIL; i = r->st.e[i].next)
		fn(arg, r->st.e[i].id, r->st.e[i].max);
}

size_t
tl_rollup_save_size(const struct tl_rollup *r)
{
	size_t n = STATE_HDR + (size_t)r->st.n * STATE_STREAM_REC + TRAILER;

	for (uint32_t i = 0; i < r->n_open; i++)
		n += cell_rec_size(&r->cells[r->heap[i]]);
	for (uint32_t e = r->pend_head; e != NIL; e = r->cells[e].next)
		n += cell_rec_size(&r->cells[e]);
	return n;
}

long
tl_rollup_save(const struct tl_rollup *r, void *buf, size_t cap)
{
	size_t need = tl_rollup_save_size(r);
	uint8_t *p = buf;

	if (buf == NULL || cap < need)
		return -ENOSPC;
	memcpy(p, STATE_MAGIC, 4);
	put_u32(p + 4, FORMAT_VERSION);
	put_u64(p + 8, r->conf.window_ns);
	put_u64(p + 16, (uint64_t)r->mark);
	put_u32(p + 24, r->st.n);
	put_u32(p + 28, r->n_open);
	put_u32(p + 32, r->n_pend);
	put_u32(p + 36, 0);
	p += STATE_HDR;
	for (uint32_t i = r->st.head; i != NIL; i = r->st.e[i].next, p += STATE_STREAM_REC) {
		const struct stream *s = &r->st.e[i];
		uint64_t age = r->rebase               ? s->seen
		               : r->now_last > s->seen ? r->now_last - s->seen
		                                       : 0;

		put_u64(p, s->id);
		put_u64(p + 8, (uint64_t)s->max);
		put_u64(p + 16, age);
	}
	/* Heap order: the loader's pushes in this order rebuild the same heap. */
	for (uint32_t i = 0; i < r->n_open; i++)
		p = cell_put(p, &r->cells[r->heap[i]], 0);
	for (uint32_t e = r->pend_head; e != NIL; e = r->cells[e].next)
		p = cell_put(p, &r->cells[e], r->cells[e].correction ? FLAG_CORRECTION : 0);
	put_u64(p, XXH64(buf, need - TRAILER, 0));
	return (long)need;
}

int
tl_rollup_load(struct tl_rollup *r, const void *buf, size_t len)
{
	struct rd rd = open_image(buf, len, STATE_MAGIC, STATE_HDR), body;
	uint32_t n_streams, n_open, n_pend;
	int64_t mark, w = (int64_t)r->conf.window_ns;
	struct cell c;
	uint8_t flags;

	if (rd.bad || rd_u64(&rd) != r->conf.window_ns)
		goto bad;
	mark = (int64_t)rd_u64(&rd);
	n_streams = rd_u32(&rd);
	n_open = rd_u32(&rd);
	n_pend = rd_u32(&rd);
	if (rd_u32(&rd) != 0 || (mark != INT64_MIN && mark != INT64_MAX && mark % w != 0))
		goto bad;
	if ((size_t)n_streams * STATE_STREAM_REC > rd.left)
		goto bad;
	body = rd;
	/* First pass: the whole image is checked before the state is touched. */
	rd_take(&rd, (size_t)n_streams * STATE_STREAM_REC);
	for (uint64_t i = 0; i < (uint64_t)n_open + n_pend; i++) {
		if (!cell_get(&rd, &c, r->conf.window_ns, false, &flags))
			goto bad;
		if ((flags & ~FLAG_CORRECTION) != 0 || (i < n_open && flags != 0))
			goto bad;
	}
	if (rd.left != 0)
		goto bad;
	if (n_streams > r->st.cap || n_open > r->conf.max_cells ||
	        (uint64_t)n_open + n_pend > r->pool)
		return -ENOSPC;

	rollup_reset(r);
	r->mark = mark;
	rd = body;
	for (uint32_t i = 0; i < n_streams; i++) {
		uint64_t id = rd_u64(&rd);
		int64_t max = (int64_t)rd_u64(&rd);
		uint64_t age = rd_u64(&rd);

		if (streams_find(&r->st, id) != NIL)
			goto bad; /* a duplicate id */
		streams_insert(&r->st, id, max, age, false);
	}
	r->rebase = true;
	for (uint64_t i = 0; i < (uint64_t)n_open + n_pend; i++) {
		struct key k;
		uint32_t h, e;

		cell_get(&rd, &c, r->conf.window_ns, false, &flags);
		k = cell_key(&c);
		h = key_hash(&k, r->seed);
		if (cells_find(&r->cix, r->cells, &k, h) != NIL)
			goto bad; /* a duplicate key */
		e = cell_alloc(r, &k, h);
		cell_add(&r->cells[e], &c);
		if (i < n_open) {
			heap_push(r, e);
		} else {
			r->cells[e].correction = flags & FLAG_CORRECTION;
			pend_push(r, e);
		}
	}
	return 0;
bad:
	rollup_reset(r);
	return -EBADMSG;
}

void
tl_rollup_stats(const struct tl_rollup *r, struct tl_rollup_stats *st)
{
	st->streams = r->st.n;
	st->cells = r->used;
	st->memory_bytes = r->mem;
	st->watermark_ns = r->wm;
	st->merged_cells = r->merged_cells;
	st->rows_emitted = r->rows_emitted;
	st->corrections = r->corrections;
	st->forced = r->forced;
	st->evicted = r->st.evicted;
}

uint64_t
tl_rollup_p95_ms(const uint64_t hist[TL_ROLLUP_HIST])
{
	unsigned __int128 total = 0, rank, seen = 0;
	unsigned b;

	for (b = 0; b < TL_ROLLUP_HIST; b++)
		total += hist[b];
	if (total == 0)
		return 0;
	/* The 95th percentile is the ceil(0.95 n)-th value = the (n - floor(n / 20))-th. */
	rank = total - total / 20;
	for (b = 0; b < TL_ROLLUP_HIST; b++) {
		seen += hist[b];
		if (seen >= rank)
			break;
	}
	/* Bucket b holds [2^(b-1), 2^b): its upper bound is 2^b (the last one nominally). */
	return b == 0 ? 0 : 1ull << b;
}
