/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Deduplication state: per-producer anti-replay windows (framed mode) and a time window
 * of 128-bit event ids (raw mode).
 *
 * Both tables use open addressing with linear probing over a power-of-two index at most
 * half full, and backward-shift deletion (no tombstones, so probe lengths never degrade
 * under churn). The index holds record numbers, not records: records (and the per-producer
 * bitmaps) never move, only the small index entries do.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "tl_dedup.h"

#define FRAMES_MAGIC 0x46444c54u /* "TLDF" read as a little-endian u32 */
#define EVENTS_MAGIC 0x45444c54u /* "TLDE" */
#define FORMAT_VERSION 1u
#define FRAMES_HDR 16u
#define FRAMES_REC_FIXED 16u
#define EVENTS_HDR 24u
#define EVENTS_REC 24u
#define TRAILER 8u

/* murmur3's 64-bit finalizer: every input bit affects every output bit, so producer ids
 * chosen as small counters (1, 2, 3, ...) still spread over the whole index. */
static inline uint64_t
fmix64(uint64_t k)
{
	k ^= k >> 33;
	k *= UINT64_C(0xff51afd7ed558ccd);
	k ^= k >> 33;
	k *= UINT64_C(0xc4ceb9fe1a85ec53);
	k ^= k >> 33;
	return k;
}

static uint32_t
pow2_at_least(uint64_t n)
{
	uint64_t p = 1;

	while (p < n)
		p <<= 1;
	return (uint32_t)p;
}

static inline bool
is_pow2(uint64_t n)
{
	return n != 0 && (n & (n - 1)) == 0;
}

static inline void
put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline void
put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint32_t
get_le32(const uint8_t *p)
{
	uint32_t v = 0;

	for (int i = 3; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static inline uint64_t
get_le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

/* Common checks of a saved buffer: length, magic, version, checksum. */
static bool
envelope_ok(const uint8_t *buf, size_t len, size_t hdr, uint32_t magic)
{
	if (buf == NULL || len < hdr + TRAILER)
		return false;
	if (get_le32(buf) != magic || get_le32(buf + 4) != FORMAT_VERSION)
		return false;
	return XXH64(buf, len - TRAILER, 0) == get_le64(buf + len - TRAILER);
}

const char *
tl_dedup_verdict_name(enum tl_dedup_verdict v)
{
	static const char *const names[TL_DEDUP_VERDICT_MAX] = {
	        [TL_DEDUP_NEW] = "new",
	        [TL_DEDUP_PENDING] = "pending",
	        [TL_DEDUP_COMMITTED] = "committed",
	        [TL_DEDUP_OLD] = "old",
	        [TL_DEDUP_FULL] = "full",
	        [TL_DEDUP_INVALID] = "invalid",
	};

	if ((unsigned)v >= TL_DEDUP_VERDICT_MAX)
		return "?";
	return names[v];
}

/* ================================ framed mode ================================ */

struct producer {
	uint64_t id;      /* 0: record unused */
	uint64_t high;    /* highest sequence seen */
	uint64_t active;  /* d->tick at the last frame: LRU order */
	uint32_t pending; /* pending bits set in the window */
};

struct rank {
	uint64_t active;
	uint32_t r;
};

struct tl_dedup_frames {
	uint32_t max;    /* producer records */
	uint32_t used;   /* records in use (records [0, used) once filled) */
	uint32_t window; /* W */
	uint32_t words;  /* W / 64 */
	uint32_t index_mask;
	uint64_t tick;
	struct producer *rec;
	uint32_t *index;    /* record + 1, 0 empty */
	uint64_t *bits;     /* per record: committed[words], pending[words] */
	struct rank *order; /* scratch for save: records by recency */
	struct tl_dedup_frames_stats st;
};

static inline uint64_t *
committed_bits(struct tl_dedup_frames *d, uint32_t r)
{
	return d->bits + (size_t)r * 2 * d->words;
}

static inline uint64_t *
pending_bits(struct tl_dedup_frames *d, uint32_t r)
{
	return d->bits + (size_t)r * 2 * d->words + d->words;
}

static inline bool
bit_get(const uint64_t *b, uint64_t pos)
{
	return (b[pos >> 6] >> (pos & 63)) & 1;
}

static inline void
bit_set(uint64_t *b, uint64_t pos)
{
	b[pos >> 6] |= UINT64_C(1) << (pos & 63);
}

static inline void
bit_clear(uint64_t *b, uint64_t pos)
{
	b[pos >> 6] &= ~(UINT64_C(1) << (pos & 63));
}

int
tl_dedup_frames_create(uint32_t max_producers, uint32_t window, struct tl_dedup_frames **out)
{
	struct tl_dedup_frames *d;
	uint32_t isize;

	if (out == NULL || max_producers == 0 || max_producers > TL_DEDUP_PRODUCERS_MAX ||
	        !is_pow2(window) || window < TL_DEDUP_WINDOW_MIN || window > TL_DEDUP_WINDOW_MAX)
		return -EINVAL;
	d = calloc(1, sizeof(*d));
	if (d == NULL)
		return -ENOMEM;
	isize = pow2_at_least((uint64_t)max_producers * 2);
	d->max = max_producers;
	d->window = window;
	d->words = window / 64;
	d->index_mask = isize - 1;
	d->rec = calloc(max_producers, sizeof(*d->rec));
	d->index = calloc(isize, sizeof(*d->index));
	d->bits = calloc((size_t)max_producers * 2 * d->words, sizeof(*d->bits));
	d->order = calloc(max_producers, sizeof(*d->order));
	if (d->rec == NULL || d->index == NULL || d->bits == NULL || d->order == NULL)
		goto fail;
	d->st.max_producers = max_producers;
	d->st.window = window;
	d->st.memory_bytes = sizeof(*d) + (uint64_t)max_producers * sizeof(*d->rec) +
	                     (uint64_t)isize * sizeof(*d->index) +
	                     (uint64_t)max_producers * 2 * d->words * sizeof(*d->bits) +
	                     (uint64_t)max_producers * sizeof(*d->order);
	*out = d;
	return 0;
fail:
	tl_dedup_frames_free(d);
	return -ENOMEM;
}

void
tl_dedup_frames_free(struct tl_dedup_frames *d)
{
	if (d == NULL)
		return;
	free(d->rec);
	free(d->index);
	free(d->bits);
	free(d->order);
	free(d);
}

/* @return the index slot holding @p id, or the empty slot where it would go. */
static uint32_t
frames_slot(const struct tl_dedup_frames *d, uint64_t id)
{
	uint32_t i = (uint32_t)fmix64(id) & d->index_mask;

	while (d->index[i] != 0 && d->rec[d->index[i] - 1].id != id)
		i = (i + 1) & d->index_mask;
	return i;
}

/* Backward-shift deletion: pull later members of the probe run into the hole so that
 * every remaining key is still reachable from its home slot without tombstones. */
static void
frames_unindex(struct tl_dedup_frames *d, uint32_t hole)
{
	uint32_t i = hole;

	for (;;) {
		uint32_t home;

		i = (i + 1) & d->index_mask;
		if (d->index[i] == 0)
			break;
		home = (uint32_t)fmix64(d->rec[d->index[i] - 1].id) & d->index_mask;
		/* Move it if its home is not in the cyclic range (hole, i]. */
		if (((i - home) & d->index_mask) >= ((i - hole) & d->index_mask)) {
			d->index[hole] = d->index[i];
			hole = i;
		}
	}
	d->index[hole] = 0;
}

static void
frames_clear_record(struct tl_dedup_frames *d, uint32_t r)
{
	memset(&d->rec[r], 0, sizeof(d->rec[r]));
	memset(committed_bits(d, r), 0, (size_t)2 * d->words * sizeof(uint64_t));
}

/*
 * A record for a producer not in the table: a free one, else the least recently active
 * producer without pending frames (a linear scan: only paid when a new producer arrives
 * at a full table). @return the record, or UINT32_MAX.
 */
static uint32_t
frames_take_record(struct tl_dedup_frames *d)
{
	uint32_t best = UINT32_MAX;

	if (d->used < d->max)
		return d->used++;
	for (uint32_t r = 0; r < d->max; r++) {
		if (d->rec[r].pending != 0)
			continue;
		if (best == UINT32_MAX || d->rec[r].active < d->rec[best].active)
			best = r;
	}
	if (best == UINT32_MAX)
		return best;
	frames_unindex(d, frames_slot(d, d->rec[best].id));
	frames_clear_record(d, best);
	d->st.producers--;
	d->st.producers_evicted++;
	return best;
}

/*
 * Slide the window of record @p r so that it ends at @p seq (> high). The sequences that
 * leave the window, [high - W + 1, seq - W], occupy the same bit positions as the ones
 * that enter it, [high + 1, seq]: clearing those positions does both.
 * @return false (nothing changed) if a pending frame would leave the window: its
 *         outcome could no longer be recorded, and a refused frame would then be
 *         answered as a duplicate on resend.
 */
static bool
frames_advance(struct tl_dedup_frames *d, uint32_t r, uint64_t seq)
{
	struct producer *p = &d->rec[r];
	uint64_t *c = committed_bits(d, r);
	uint64_t *pe = pending_bits(d, r);
	uint64_t mask = d->window - 1;
	uint64_t n = seq - p->high;

	if (n >= d->window) {
		if (p->pending != 0)
			return false;
		memset(c, 0, (size_t)d->words * sizeof(uint64_t));
	} else {
		if (p->pending != 0) {
			for (uint64_t s = p->high + 1; s <= seq; s++)
				if (bit_get(pe, s & mask))
					return false;
		}
		for (uint64_t s = p->high + 1; s <= seq; s++)
			bit_clear(c, s & mask);
	}
	p->high = seq;
	return true;
}

enum tl_dedup_verdict
tl_dedup_frame_check(struct tl_dedup_frames *d, uint64_t producer_id, uint64_t sequence)
{
	uint64_t mask = d->window - 1;
	struct producer *p;
	uint32_t slot, r;

	if (producer_id == 0 || sequence == 0) {
		d->st.frames_invalid++;
		return TL_DEDUP_INVALID;
	}
	d->tick++;
	slot = frames_slot(d, producer_id);
	if (d->index[slot] == 0) {
		r = frames_take_record(d);
		if (r == UINT32_MAX) {
			d->st.frames_full++;
			return TL_DEDUP_FULL;
		}
		/* The eviction may have shifted index entries: find the slot again. */
		slot = frames_slot(d, producer_id);
		d->index[slot] = r + 1;
		p = &d->rec[r];
		p->id = producer_id;
		p->high = sequence;
		d->st.producers++;
	} else {
		r = d->index[slot] - 1;
		p = &d->rec[r];
		if (sequence > p->high) {
			if (!frames_advance(d, r, sequence)) {
				d->st.frames_stalled++;
				return TL_DEDUP_FULL;
			}
		} else if (p->high - sequence >= d->window) {
			p->active = d->tick;
			d->st.frames_old++;
			return TL_DEDUP_OLD;
		} else if (bit_get(committed_bits(d, r), sequence & mask)) {
			p->active = d->tick;
			d->st.frames_committed++;
			return TL_DEDUP_COMMITTED;
		} else if (bit_get(pending_bits(d, r), sequence & mask)) {
			p->active = d->tick;
			d->st.frames_pending++;
			return TL_DEDUP_PENDING;
		}
	}
	p->active = d->tick;
	bit_set(pending_bits(d, r), sequence & mask);
	p->pending++;
	d->st.frames_new++;
	return TL_DEDUP_NEW;
}

int
tl_dedup_frame_done(
        struct tl_dedup_frames *d, uint64_t producer_id, uint64_t sequence, bool committed)
{
	uint64_t mask = d->window - 1;
	struct producer *p;
	uint32_t slot, r;

	if (producer_id == 0 || sequence == 0)
		return -ENOENT;
	slot = frames_slot(d, producer_id);
	if (d->index[slot] == 0)
		return -ENOENT;
	r = d->index[slot] - 1;
	p = &d->rec[r];
	if (sequence > p->high || p->high - sequence >= d->window ||
	        !bit_get(pending_bits(d, r), sequence & mask))
		return -ENOENT;
	bit_clear(pending_bits(d, r), sequence & mask);
	p->pending--;
	if (committed)
		bit_set(committed_bits(d, r), sequence & mask);
	return 0;
}

void
tl_dedup_frames_reset(struct tl_dedup_frames *d)
{
	memset(d->rec, 0, (size_t)d->max * sizeof(*d->rec));
	memset(d->index, 0, ((size_t)d->index_mask + 1) * sizeof(*d->index));
	memset(d->bits, 0, (size_t)d->max * 2 * d->words * sizeof(*d->bits));
	d->used = 0;
	d->tick = 0;
	d->st.producers = 0;
}

size_t
tl_dedup_frames_save_size(const struct tl_dedup_frames *d)
{
	return FRAMES_HDR + (size_t)d->used * (FRAMES_REC_FIXED + d->window / 8) + TRAILER;
}

static int
by_recency(const void *a, const void *b)
{
	uint64_t x = ((const struct rank *)a)->active;
	uint64_t y = ((const struct rank *)b)->active;

	return x < y ? 1 : x > y ? -1 : 0;
}

int
tl_dedup_frames_save(struct tl_dedup_frames *d, uint8_t *buf, size_t cap, size_t *len)
{
	size_t need = tl_dedup_frames_save_size(d);
	uint8_t *p = buf;

	if (buf == NULL || cap < need)
		return -E2BIG;
	for (uint32_t r = 0; r < d->used; r++)
		d->order[r] = (struct rank){.active = d->rec[r].active, .r = r};
	/* Most recently active first, so a smaller loader keeps the ones that matter. */
	qsort(d->order, d->used, sizeof(*d->order), by_recency);
	put_le32(p, FRAMES_MAGIC);
	put_le32(p + 4, FORMAT_VERSION);
	put_le32(p + 8, d->window);
	put_le32(p + 12, d->used);
	p += FRAMES_HDR;
	for (uint32_t i = 0; i < d->used; i++) {
		uint32_t r = d->order[i].r;
		const uint64_t *c = committed_bits(d, r);

		put_le64(p, d->rec[r].id);
		put_le64(p + 8, d->rec[r].high);
		p += FRAMES_REC_FIXED;
		/* Only committed bits: pending frames were never acknowledged. */
		for (uint32_t w = 0; w < d->words; w++, p += 8)
			put_le64(p, c[w]);
	}
	put_le64(p, XXH64(buf, (size_t)(p - buf), 0));
	*len = need;
	return 0;
}

int
tl_dedup_frames_load(struct tl_dedup_frames *d, const uint8_t *buf, size_t len)
{
	uint32_t sw, count, keep;
	size_t rec_len;
	const uint8_t *p;

	tl_dedup_frames_reset(d);
	if (!envelope_ok(buf, len, FRAMES_HDR, FRAMES_MAGIC))
		return -EBADMSG;
	sw = get_le32(buf + 8);
	count = get_le32(buf + 12);
	if (!is_pow2(sw) || sw < TL_DEDUP_WINDOW_MIN || sw > TL_DEDUP_WINDOW_MAX)
		return -EBADMSG;
	rec_len = FRAMES_REC_FIXED + sw / 8;
	if ((len - FRAMES_HDR - TRAILER) / rec_len != count ||
	        (len - FRAMES_HDR - TRAILER) % rec_len != 0)
		return -EBADMSG;
	keep = count < d->max ? count : d->max;
	p = buf + FRAMES_HDR;
	for (uint32_t i = 0; i < count; i++, p += rec_len) {
		uint64_t id = get_le64(p), high = get_le64(p + 8);
		const uint8_t *sb = p + FRAMES_REC_FIXED;
		uint64_t smask = sw - 1, mask = d->window - 1;
		uint32_t slot, r = i;
		uint64_t *c;

		if (id == 0 || high == 0)
			goto bad;
		/* Bits for sequences below 1 can only come from corruption. */
		for (uint64_t s = high + 1; s <= sw; s++)
			if ((sb[(s & smask) >> 3] >> (s & 7)) & 1)
				goto bad;
		if (i >= keep)
			continue; /* validated, but no room */
		slot = frames_slot(d, id);
		if (d->index[slot] != 0)
			goto bad;
		d->index[slot] = r + 1;
		d->rec[r].id = id;
		d->rec[r].high = high;
		d->rec[r].active = count - i; /* keep the saved recency order */
		c = committed_bits(d, r);
		/* Copy the sequences both windows cover (W may have been reconfigured). */
		for (uint64_t k = 0; k < sw && k < d->window && k < high; k++) {
			uint64_t s = high - k;

			if ((sb[(s & smask) >> 3] >> (s & 7)) & 1)
				bit_set(c, s & mask);
		}
		d->used = r + 1;
	}
	d->tick = count;
	d->st.producers = d->used;
	d->st.load_dropped += count - keep;
	return 0;
bad:
	tl_dedup_frames_reset(d);
	return -EBADMSG;
}

void
tl_dedup_frames_stats(const struct tl_dedup_frames *d, struct tl_dedup_frames_stats *st)
{
	*st = d->st;
}

/* ================================= raw mode ================================== */

struct entry {
	uint64_t lo, hi; /* the event id: bytes 0..7 and 8..15, little-endian */
	uint64_t t;      /* insertion time */
	uint32_t live;   /* 0: overwritten / expired / re-inserted */
};

struct tl_dedup_events {
	uint32_t cap;  /* N */
	uint32_t head; /* ring position of the next insertion */
	uint32_t tail; /* ring position of the oldest entry */
	uint32_t fill; /* ring positions in [tail, head) */
	uint32_t live; /* live entries */
	uint32_t index_mask;
	uint64_t window_ns;
	struct entry *ring;
	uint32_t *index; /* ring position + 1, 0 empty */
	struct tl_dedup_events_stats st;
};

/* Both halves feed the hash: ids equal in their low 64 bits still spread. */
static inline uint32_t
events_home(const struct tl_dedup_events *d, uint64_t lo, uint64_t hi)
{
	return (uint32_t)fmix64(lo ^ fmix64(hi)) & d->index_mask;
}

int
tl_dedup_events_create(uint32_t capacity, uint64_t window_ns, struct tl_dedup_events **out)
{
	struct tl_dedup_events *d;

	if (out == NULL || !is_pow2(capacity) || capacity < TL_DEDUP_EVENTS_MIN ||
	        capacity > TL_DEDUP_EVENTS_MAX || window_ns == 0)
		return -EINVAL;
	d = calloc(1, sizeof(*d));
	if (d == NULL)
		return -ENOMEM;
	d->cap = capacity;
	d->window_ns = window_ns;
	d->index_mask = capacity * 2 - 1;
	d->ring = calloc(capacity, sizeof(*d->ring));
	d->index = calloc((size_t)capacity * 2, sizeof(*d->index));
	if (d->ring == NULL || d->index == NULL) {
		tl_dedup_events_free(d);
		return -ENOMEM;
	}
	d->st.capacity = capacity;
	d->st.window_ns = window_ns;
	d->st.memory_bytes = sizeof(*d) + (uint64_t)capacity * sizeof(*d->ring) +
	                     (uint64_t)capacity * 2 * sizeof(*d->index);
	*out = d;
	return 0;
}

void
tl_dedup_events_free(struct tl_dedup_events *d)
{
	if (d == NULL)
		return;
	free(d->ring);
	free(d->index);
	free(d);
}

static uint32_t
events_slot(const struct tl_dedup_events *d, uint64_t lo, uint64_t hi)
{
	uint32_t i = events_home(d, lo, hi);

	while (d->index[i] != 0) {
		const struct entry *e = &d->ring[d->index[i] - 1];

		if (e->lo == lo && e->hi == hi)
			break;
		i = (i + 1) & d->index_mask;
	}
	return i;
}

static void
events_unindex(struct tl_dedup_events *d, uint32_t hole)
{
	uint32_t i = hole;

	for (;;) {
		const struct entry *e;
		uint32_t home;

		i = (i + 1) & d->index_mask;
		if (d->index[i] == 0)
			break;
		e = &d->ring[d->index[i] - 1];
		home = events_home(d, e->lo, e->hi);
		if (((i - home) & d->index_mask) >= ((i - hole) & d->index_mask)) {
			d->index[hole] = d->index[i];
			hole = i;
		}
	}
	d->index[hole] = 0;
}

static void
events_kill(struct tl_dedup_events *d, struct entry *e)
{
	events_unindex(d, events_slot(d, e->lo, e->hi));
	e->live = 0;
	d->live--;
}

static inline bool
within(const struct tl_dedup_events *d, uint64_t t, uint64_t now)
{
	return now < t || now - t < d->window_ns;
}

/* Drop the oldest ring position (expired or not: the caller counts it). */
static void
events_pop(struct tl_dedup_events *d, uint64_t now, bool expiring)
{
	struct entry *e = &d->ring[d->tail];

	if (e->live) {
		if (expiring) {
			d->st.expired++;
		} else {
			d->st.evicted++;
			if (within(d, e->t, now))
				d->st.evicted_early++;
		}
		events_kill(d, e);
	}
	d->tail = (d->tail + 1) & (d->cap - 1);
	d->fill--;
}

static void
events_push(struct tl_dedup_events *d, uint64_t lo, uint64_t hi, uint64_t t, uint32_t slot)
{
	struct entry *e = &d->ring[d->head];

	e->lo = lo;
	e->hi = hi;
	e->t = t;
	e->live = 1;
	d->index[slot] = d->head + 1;
	d->head = (d->head + 1) & (d->cap - 1);
	d->fill++;
	d->live++;
}

bool
tl_dedup_event_seen(
        struct tl_dedup_events *d, const uint8_t id[TL_DEDUP_EVENT_ID_LEN], uint64_t now_ns)
{
	uint64_t lo = get_le64(id), hi = get_le64(id + 8);
	uint32_t slot;

	/* Expire from the oldest end first: amortised O(1), and it keeps the index sparse.
	 * Ring positions of dead entries (re-inserted ids) are reclaimed the same way. */
	while (d->fill != 0 && (!d->ring[d->tail].live || !within(d, d->ring[d->tail].t, now_ns)))
		events_pop(d, now_ns, true);
	slot = events_slot(d, lo, hi);
	if (d->index[slot] != 0) {
		struct entry *e = &d->ring[d->index[slot] - 1];

		if (within(d, e->t, now_ns)) {
			d->st.duplicates++;
			return true;
		}
		/* Seen, but longer ago than the window (an entry out of time order, e.g. after
		 * a clock step): remember it afresh at the head. */
		events_kill(d, e);
	}
	if (d->fill == d->cap)
		events_pop(d, now_ns, false);
	/* Pops may have shifted index entries. */
	slot = events_slot(d, lo, hi);
	events_push(d, lo, hi, now_ns, slot);
	d->st.inserted++;
	return false;
}

void
tl_dedup_events_reset(struct tl_dedup_events *d)
{
	memset(d->ring, 0, (size_t)d->cap * sizeof(*d->ring));
	memset(d->index, 0, ((size_t)d->index_mask + 1) * sizeof(*d->index));
	d->head = d->tail = d->fill = d->live = 0;
}

size_t
tl_dedup_events_save_size(const struct tl_dedup_events *d)
{
	return EVENTS_HDR + (size_t)d->live * EVENTS_REC + TRAILER;
}

int
tl_dedup_events_save(const struct tl_dedup_events *d, uint8_t *buf, size_t cap, size_t *len)
{
	size_t need = tl_dedup_events_save_size(d);
	uint8_t *p = buf;

	if (buf == NULL || cap < need)
		return -E2BIG;
	put_le32(p, EVENTS_MAGIC);
	put_le32(p + 4, FORMAT_VERSION);
	put_le64(p + 8, d->window_ns);
	put_le32(p + 16, d->live);
	put_le32(p + 20, 0);
	p += EVENTS_HDR;
	for (uint32_t k = 0, pos = d->tail; k < d->fill; k++, pos = (pos + 1) & (d->cap - 1)) {
		const struct entry *e = &d->ring[pos];

		if (!e->live)
			continue;
		put_le64(p, e->lo);
		put_le64(p + 8, e->hi);
		put_le64(p + 16, e->t);
		p += EVENTS_REC;
	}
	put_le64(p, XXH64(buf, (size_t)(p - buf), 0));
	*len = need;
	return 0;
}

int
tl_dedup_events_load(struct tl_dedup_events *d, const uint8_t *buf, size_t len)
{
	uint32_t count, skip;
	const uint8_t *p;

	tl_dedup_events_reset(d);
	if (!envelope_ok(buf, len, EVENTS_HDR, EVENTS_MAGIC))
		return -EBADMSG;
	count = get_le32(buf + 16);
	if (get_le32(buf + 20) != 0 || (len - EVENTS_HDR - TRAILER) % EVENTS_REC != 0 ||
	        (len - EVENTS_HDR - TRAILER) / EVENTS_REC != count)
		return -EBADMSG;
	/* Oldest first: the newest @cap are the last ones. */
	skip = count > d->cap ? count - d->cap : 0;
	p = buf + EVENTS_HDR + (size_t)skip * EVENTS_REC;
	for (uint32_t i = skip; i < count; i++, p += EVENTS_REC) {
		uint64_t lo = get_le64(p), hi = get_le64(p + 8);
		uint32_t slot = events_slot(d, lo, hi);

		if (d->index[slot] != 0) {
			tl_dedup_events_reset(d);
			return -EBADMSG;
		}
		events_push(d, lo, hi, get_le64(p + 16), slot);
	}
	d->st.load_dropped += skip;
	return 0;
}

void
tl_dedup_events_stats(const struct tl_dedup_events *d, struct tl_dedup_events_stats *st)
{
	*st = d->st;
	st->entries = d->live;
}
